//! The knowledge pipeline: a file's bytes → sandboxed extraction → chunks → embeddings → index.
//! `submit` turns a file into a pending document and an `ingest` job; `Pipeline` runs the job;
//! `conversations` learns the units of what people say in channels that learn messages.

pub mod chunk;
pub mod conversations;
pub mod documents;
pub mod sandbox;

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use crate::brain::{AddedDocument, BrainId, Document, DocumentId, DocumentStatus, NewDocument};
use crate::config::IngestConfig;
use crate::index::{Index, IndexError, IndexedDocument};
use crate::jobs::{Enqueued, JobId, JobKind, JobState, NewJob};
use crate::llm::Embedder;
use crate::store::{Store, StoreError};
use crate::worker::{JobFailure, JobHandler};

use self::chunk::{chunk_pages, ChunkOptions, PageText};
use self::sandbox::{ExtractError, Extracted, Sandbox};
use crate::text::ChunkDraft;

/// The payload of an `ingest` job.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct IngestPayload {
    pub document_id: i64,
    /// Where the result is reported when the file came from a chat message.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub report: Option<ReportTo>,
    /// Re-embed the indexed document from its stored chunks (`engram brain reindex`) instead
    /// of reading the file.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub reindex: bool,
}

/// The chat message a file was posted in, whose channel hears how its ingestion ended. Kept in
/// the job, so any gateway (a restarted one, another replica) can report it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReportTo {
    pub platform: String,
    pub channel: String,
    pub message: String,
    pub file_name: String,
}

/// What `submit` did with a file.
#[derive(Debug, Clone)]
pub enum Submitted {
    /// Queued (or already queued) for ingestion by this job.
    Queued { document: Document, job: JobId },
    /// The same bytes are already in the brain.
    Known(Document),
}

/// Why a file was not accepted.
#[derive(Debug, thiserror::Error)]
pub enum SubmitError {
    #[error("the file is {size} bytes; the limit is {limit} bytes (ingest.max_file_bytes)")]
    TooLarge { size: u64, limit: u64 },
    #[error("the file is empty")]
    Empty,
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The sha256 of a file's bytes, in hex: a document's identity within a brain.
pub fn sha256_hex(bytes: &[u8]) -> String {
    let digest = Sha256::digest(bytes);
    digest.iter().map(|byte| format!("{byte:02x}")).collect()
}

/// A file to add to a brain.
#[derive(Debug, Clone)]
pub struct NewFile<'a> {
    pub brain: BrainId,
    pub file_name: &'a str,
    /// A link to where it was posted, for citing it.
    pub source_link: Option<&'a str>,
    /// Where its name is unique (see `Document::scope`): `""` from the shell, the channel in
    /// chat. A file with the name of a document in the same scope but other bytes is a new
    /// version of it.
    pub scope: &'a str,
    /// Who added it: the platform user, or `local` from the shell.
    pub added_by: &'a str,
    pub bytes: &'a [u8],
    /// The chat message to report the result to (the first submitter's, when the same file is
    /// posted twice while it is being read).
    pub report: Option<ReportTo>,
}

impl<'a> NewFile<'a> {
    /// `bytes` named `file_name`, for `brain`, from the shell: no link, no report.
    pub fn new(brain: BrainId, file_name: &'a str, bytes: &'a [u8]) -> Self {
        NewFile {
            brain,
            file_name,
            source_link: None,
            scope: "",
            added_by: "local",
            bytes,
            report: None,
        }
    }
}

/// Adds a file to a brain: keeps its bytes in the store and queues an `ingest` job, unless the
/// same bytes are already there. Safe to call again with the same file.
pub async fn submit(
    store: &dyn Store,
    config: &IngestConfig,
    max_attempts: u32,
    file: NewFile<'_>,
) -> Result<Submitted, SubmitError> {
    let NewFile {
        brain,
        file_name,
        source_link,
        scope,
        added_by,
        bytes,
        report,
    } = file;
    let size = bytes.len() as u64;
    if size == 0 {
        return Err(SubmitError::Empty);
    }
    if size > config.max_file_bytes {
        return Err(SubmitError::TooLarge {
            size,
            limit: config.max_file_bytes,
        });
    }
    let sha256 = sha256_hex(bytes);
    let added = store
        .add_document(&NewDocument {
            brain,
            sha256: sha256.clone(),
            file_name: file_name.to_string(),
            source_link: source_link.map(str::to_string),
            scope: scope.to_string(),
            added_by: Some(added_by.to_string()),
        })
        .await?;
    let document = match added {
        AddedDocument::Pending(document) => document,
        AddedDocument::Known(document) if document.status != DocumentStatus::Pending => {
            return Ok(Submitted::Known(document));
        }
        AddedDocument::Known(document) => {
            // Pending: if its job is still alive, wait for that one; if the job ended without
            // finishing the document (a crash on the last attempt), queue a new one.
            if let Some(job_id) = document.job_id {
                if let Some(job) = store.job(job_id).await? {
                    if matches!(
                        job.state,
                        JobState::Queued | JobState::Running | JobState::Failed
                    ) {
                        return Ok(Submitted::Queued {
                            document,
                            job: job_id,
                        });
                    }
                }
            }
            document
        }
    };
    store.put_file(&sha256, bytes).await?;
    let payload = serde_json::to_value(IngestPayload {
        document_id: document.id.0,
        report,
        reindex: false,
    })
    .expect("payload serializes");
    let job = store
        .enqueue(&NewJob::new(JobKind::Ingest, payload, max_attempts))
        .await?
        .id();
    store.set_document_job(document.id, job).await?;
    Ok(Submitted::Queued { document, job })
}

/// Records, after a document's vectors were written, which model made them (and, with it, the
/// brain's model). A failure only leaves the document looking stale, so it is logged: the
/// document is then searched by keywords only until it is embedded again.
pub async fn record_embedding(store: &dyn Store, embedder: &Embedder, document: DocumentId) {
    let dimensions = u32::try_from(embedder.dimensions()).unwrap_or(u32::MAX);
    if let Err(error) = store
        .record_embedding(document, &embedder.identity(), dimensions)
        .await
    {
        tracing::warn!(%error, document = document.0, "cannot record the embedding model");
    }
}

/// Queues re-embedding for every indexed document whose vectors are of another model than
/// `embedder`'s (in `brain`, or in every brain): one `ingest` job per document, its payload
/// `{"document_id": …, "reindex": true}` — the job that embeds a document's stored chunks
/// again. At most one such job per document and model. Returns how many were queued now.
/// Until a document is embedded again, searches use its chunks by keywords only.
pub async fn queue_reembedding(
    store: &dyn Store,
    embedder: &Embedder,
    brain: Option<BrainId>,
    max_attempts: u32,
) -> Result<usize, StoreError> {
    let model = embedder.identity();
    let mut queued = 0;
    for document in store.stale_embeddings(brain, &model).await? {
        let payload = serde_json::json!({ "document_id": document.0, "reindex": true });
        let job = NewJob::new(JobKind::Ingest, payload, max_attempts)
            .with_dedupe_key(format!("reembed:{}:{model}", document.0));
        if matches!(store.enqueue(&job).await?, Enqueued::New(_)) {
            queued += 1;
        }
    }
    if queued > 0 {
        tracing::info!(queued, %model, "re-embedding queued for documents of another model");
    }
    Ok(queued)
}

/// A file's text, read in the sandbox and chunked.
#[derive(Debug, Clone)]
pub struct ReadFile {
    pub extracted: Extracted,
    pub chunks: Vec<ChunkDraft>,
}

/// Why a file's text could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// The bytes could not be written to a temporary file for the extractor (worth another
    /// try).
    #[error("cannot stage the file: {0}")]
    Stage(std::io::Error),
    #[error(transparent)]
    Extract(#[from] ExtractError),
}

/// Reads a file's bytes as chunks: staged in a temporary file (the bytes are dropped once
/// written), extracted by `engram-extract` in `sandbox` (its limits, its slots), split into pages
/// and chunked. What the ingest pipeline does with every file, and the chat role with a file
/// attached to a question. No chunks means no readable text.
pub async fn read_file(
    sandbox: &Sandbox,
    chunking: &ChunkOptions,
    bytes: Vec<u8>,
) -> Result<ReadFile, ReadError> {
    let staged = tempfile::Builder::new()
        .prefix("engram-ingest-")
        .tempfile()
        .map_err(ReadError::Stage)?;
    tokio::fs::write(staged.path(), &bytes)
        .await
        .map_err(ReadError::Stage)?;
    drop(bytes);
    let extracted = sandbox::extract(sandbox, staged.path()).await?;
    drop(staged);
    let pages: Vec<PageText> = extracted
        .pages
        .iter()
        .map(|page| PageText {
            page: (extracted.pages.len() > 1 || extracted.kind == "pdf").then_some(page.page),
            text: page.text.clone(),
        })
        .collect();
    let chunks = chunk_pages(&pages, chunking);
    Ok(ReadFile { extracted, chunks })
}

/// Runs `ingest` jobs.
#[derive(Debug, Clone)]
pub struct Pipeline {
    pub store: Arc<dyn Store>,
    pub index: Arc<dyn Index>,
    pub embedder: Option<Embedder>,
    pub sandbox: Sandbox,
    pub chunking: ChunkOptions,
    /// `ingest.kept_failed_bytes`: how many bytes of failed files are kept for retries.
    pub kept_failed_bytes: u64,
}

impl Pipeline {
    /// Ends a document that cannot be ingested: the reason is kept on the document (for the
    /// channel and `brain info`). Its bytes stay, so `engram jobs retry` can run the job again
    /// (after a fix: an extractor installed, an endpoint back); they go when the document is
    /// indexed or deleted. Past `ingest.kept_failed_bytes` of failed files in all, they go now,
    /// and the reason says so.
    async fn give_up(&self, document: &Document, reason: &str) {
        let kept = match self.store.failed_file_bytes().await {
            Ok(kept) => kept,
            Err(error) => {
                tracing::warn!(%error, "cannot count the bytes kept for failed files");
                0
            }
        };
        let size = self
            .store
            .file_size(&document.sha256)
            .await
            .ok()
            .flatten()
            .unwrap_or(0);
        // A retried document that failed before is in `kept` already: counted twice at worst,
        // which errs towards dropping.
        let over = kept.saturating_add(size) > self.kept_failed_bytes;
        let reason = if over {
            format!(
                "{reason} (its bytes were not kept for a retry: failed files already keep \
                 {} MB, ingest.kept_failed_bytes; post it again)",
                kept / 1_000_000
            )
        } else {
            reason.to_string()
        };
        if let Err(error) = self.store.fail_document(document.id, &reason).await {
            tracing::warn!(%error, document = document.id.0, "cannot record the failure");
        }
        if over {
            if let Err(error) = self.store.drop_file_bytes(&document.sha256).await {
                tracing::warn!(%error, "cannot drop the file's bytes");
            }
        }
    }

    async fn ingest(&self, document: &Document) -> Result<(), JobFailure> {
        let started = Instant::now();
        let bytes = self
            .store
            .file(&document.sha256)
            .await
            .map_err(|error| JobFailure::from_error(&error))?
            .ok_or_else(|| {
                // Keep the reason it failed the first time: that is what needs fixing.
                let before = document
                    .error
                    .as_deref()
                    .map(|reason| format!(" (it failed before: {reason})"))
                    .unwrap_or_default();
                JobFailure::permanent(format!(
                    "the file's bytes are no longer stored; post it again{before}"
                ))
            })?;
        let ReadFile { extracted, chunks } = read_file(&self.sandbox, &self.chunking, bytes)
            .await
            .map_err(|error| match error {
                ReadError::Stage(_) => JobFailure::transient(error.to_string()),
                ReadError::Extract(error) => JobFailure::from_error(&error),
            })?;
        let extracted_at = Instant::now();
        if chunks.is_empty() {
            return Err(JobFailure::permanent(format!(
                "no readable text in this {} ({} page{}); if it is a scan, a sharper one may work",
                extracted.kind,
                extracted.pages.len(),
                if extracted.pages.len() == 1 { "" } else { "s" }
            )));
        }
        let vectors = match &self.embedder {
            Some(embedder) => {
                let texts: Vec<String> = chunks.iter().map(|chunk| chunk.text.clone()).collect();
                Some(
                    embedder
                        .embed(&texts)
                        .await
                        .map_err(|error| JobFailure::from_error(&error))?,
                )
            }
            None => None,
        };
        self.index
            .index_document(IndexedDocument {
                brain: document.brain,
                document: document.id,
                pages: u32::try_from(extracted.pages.len()).unwrap_or(u32::MAX),
                ocr_pages: extracted.ocr_pages(),
                chunks: &chunks,
                vectors: vectors.as_deref(),
            })
            .await
            .map_err(|error| JobFailure::from_error(&error))?;
        if let (Some(embedder), Some(_)) = (&self.embedder, &vectors) {
            record_embedding(self.store.as_ref(), embedder, document.id).await;
        }
        if let Err(error) = self.store.release_file(&document.sha256).await {
            tracing::warn!(%error, "cannot drop the file's bytes");
        }
        tracing::info!(
            document = document.id.0,
            file = %document.file_name,
            kind = %extracted.kind,
            pages = extracted.pages.len(),
            ocr_pages = extracted.ocr_pages(),
            chunks = chunks.len(),
            stage_and_extract_ms = millis(extracted_at - started),
            index_ms = millis(extracted_at.elapsed()),
            "document indexed"
        );
        Ok(())
    }
}

impl Pipeline {
    /// Embeds an indexed document's stored chunks again and writes them back in place:
    /// searches keep finding it meanwhile (the embedded index swaps its chunks in one
    /// transaction, Qdrant overwrites the same points).
    async fn reembed(&self, document: &Document) -> Result<(), JobFailure> {
        if document.status != DocumentStatus::Indexed {
            // Pending: its own job indexes it with the current model. Failed: nothing to redo.
            return Ok(());
        }
        let Some(embedder) = &self.embedder else {
            // Without embeddings there is nothing to re-embed, and writing the chunks back
            // without vectors would only take them away.
            tracing::info!(
                document = document.id.0,
                "no embeddings configured: not re-embedded"
            );
            return Ok(());
        };
        let chunks = self
            .index
            .document_chunks(document.brain, document.id)
            .await
            .map_err(|error| JobFailure::from_error(&error))?;
        if chunks.is_empty() {
            return Ok(());
        }
        let texts: Vec<String> = chunks.iter().map(|chunk| chunk.text.clone()).collect();
        let vectors = embedder
            .embed(&texts)
            .await
            .map_err(|error| JobFailure::from_error(&error))?;
        match self
            .index
            .index_document(IndexedDocument {
                brain: document.brain,
                document: document.id,
                pages: document.pages,
                ocr_pages: document.ocr_pages,
                chunks: &chunks,
                vectors: Some(&vectors),
            })
            .await
        {
            // Replaced or forgotten meanwhile: nothing left to re-embed.
            Err(IndexError::UnknownDocument { .. }) => Ok(()),
            result => result.map_err(|error| JobFailure::from_error(&error)),
        }?;
        record_embedding(self.store.as_ref(), embedder, document.id).await;
        tracing::info!(
            document = document.id.0,
            file = %document.file_name,
            chunks = chunks.len(),
            "document re-embedded"
        );
        Ok(())
    }
}

fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

#[async_trait]
impl JobHandler for Pipeline {
    async fn run(&self, job: &crate::jobs::Job) -> Result<(), JobFailure> {
        let payload: IngestPayload = serde_json::from_value(job.payload.clone())
            .map_err(|error| JobFailure::permanent(format!("bad ingest job payload: {error}")))?;
        let Some(document) = self
            .store
            .document(DocumentId(payload.document_id))
            .await
            .map_err(|error| JobFailure::from_error(&error))?
        else {
            // The brain or the document was deleted meanwhile: nothing left to do.
            return Ok(());
        };
        if payload.reindex {
            return self.reembed(&document).await;
        }
        if document.status == DocumentStatus::Indexed {
            // Indexed by an earlier attempt that may have stopped before the versions it
            // replaced were deleted from an index outside the store.
            return self
                .index
                .purge_replaced(document.brain)
                .await
                .map_err(|error| JobFailure::from_error(&error));
        }
        let mut result = self.ingest(&document).await;
        if result.is_err() && matches!(self.store.document(document.id).await, Ok(None)) {
            // Replaced by a newer version, or forgotten, while it was read: nothing to do.
            result = Ok(());
        }
        if let Err(failure) = &result {
            let last_attempt = job.attempts >= job.max_attempts;
            if !failure.transient || last_attempt {
                self.give_up(&document, &failure.reason).await;
            }
        }
        result
    }
}
