//! Learning conversations (the ingest role): a loop takes the changed conversation unit that
//! waited longest (`Store::claim_unit`, leased), writes its messages out as one text, and
//! indexes it as the next version of the unit's document — so a unit is re-learned as it
//! grows or changes, and replaced, never duplicated — or, with no message left (all deleted),
//! forgets the document. Nothing here runs the extractor: message text is text.

use std::sync::Arc;
use std::time::Duration;

use super::chunk::{chunk_pages, PageText};
use super::{record_embedding, sha256_hex, Pipeline};
use crate::brain::{AddedDocument, DocumentStatus, NewDocument};
use crate::index::IndexedDocument;
use crate::store::conversations::{UnitMessage, UnitToLearn};
use crate::worker::Shutdown;

/// How long a process holds a unit while it learns it.
const LEASE: Duration = Duration::from_secs(60);
/// How often an idle learner looks for changed units (on SQLite a change also wakes it).
const IDLE_POLL: Duration = Duration::from_millis(250);
/// A unit that failed is tried again this much later (doubling, at most `MAX_BACKOFF`).
const FIRST_BACKOFF: Duration = Duration::from_secs(2);
const MAX_BACKOFF: Duration = Duration::from_secs(300);

/// Learns changed units until `shutdown` stops claiming.
pub async fn run(pipeline: Arc<Pipeline>, worker: String, shutdown: Shutdown) {
    let wakeups = pipeline.store.wakeups();
    loop {
        if shutdown.stop_claiming.is_cancelled() {
            return;
        }
        let claimed = pipeline.store.claim_unit(&worker, LEASE).await;
        match claimed {
            Ok(Some(unit)) => learn_claimed(&pipeline, &worker, unit).await,
            Ok(None) => {
                tokio::select! {
                    () = shutdown.stop_claiming.cancelled() => return,
                    () = wakeups.notified() => {}
                    () = tokio::time::sleep(IDLE_POLL) => {}
                }
            }
            Err(error) => {
                tracing::warn!(%error, "cannot look for conversations to learn");
                tokio::select! {
                    () = shutdown.stop_claiming.cancelled() => return,
                    () = tokio::time::sleep(FIRST_BACKOFF) => {}
                }
            }
        }
    }
}

async fn learn_claimed(pipeline: &Pipeline, worker: &str, unit: UnitToLearn) {
    let (id, revision) = (unit.id, unit.revision);
    match learn(pipeline, &unit).await {
        Ok(document) => {
            match pipeline
                .store
                .unit_learned(id, worker, revision, document)
                .await
            {
                Ok(true) => {}
                Ok(false) => tracing::info!(unit = id, "a conversation's lease ran out meanwhile"),
                Err(error) => {
                    tracing::warn!(%error, unit = id, "cannot record a conversation learned")
                }
            }
        }
        Err(error) => {
            let doublings = unit.attempts.saturating_sub(1).min(8);
            let backoff = FIRST_BACKOFF
                .saturating_mul(1 << doublings)
                .min(MAX_BACKOFF);
            let retry_at = crate::clock::now_ms()
                .saturating_add(i64::try_from(backoff.as_millis()).unwrap_or(i64::MAX));
            tracing::warn!(%error, unit = id, ?backoff, "cannot learn a conversation; trying again later");
            if let Err(error) = pipeline
                .store
                .unit_failed(id, worker, &error, retry_at)
                .await
            {
                tracing::warn!(%error, unit = id, "cannot record a conversation's failure");
            }
        }
    }
}

/// Indexes the unit's messages as the next version of its document; returns the document
/// that holds it now (`None`: nothing left, the old document forgotten).
async fn learn(
    pipeline: &Pipeline,
    unit: &UnitToLearn,
) -> Result<Option<crate::brain::DocumentId>, String> {
    let store = pipeline.store.as_ref();
    if unit.messages.is_empty() {
        if let Some(document) = unit.document {
            forget(pipeline, unit, document).await?;
        }
        return Ok(None);
    }
    let text = render(unit);
    // The unit's key is hashed with its text: two units that say the same are two documents.
    let sha256 = sha256_hex(format!("{}\n{text}", unit.key).as_bytes());
    let added = store
        .add_document(&NewDocument {
            brain: unit.brain,
            sha256,
            file_name: unit.title.clone(),
            source_link: unit.link.clone(),
            scope: scope(&unit.key),
            added_by: None,
        })
        .await
        .map_err(|error| error.to_string())?;
    let document = match added {
        AddedDocument::Known(document) if document.status == DocumentStatus::Indexed => {
            return Ok(Some(document.id));
        }
        AddedDocument::Known(document) | AddedDocument::Pending(document) => document,
    };
    let chunks = chunk_pages(
        &[PageText {
            page: None,
            text: text.clone(),
        }],
        &pipeline.chunking,
    );
    let vectors = match &pipeline.embedder {
        Some(embedder) => {
            let texts: Vec<String> = chunks.iter().map(|chunk| chunk.text.clone()).collect();
            Some(
                embedder
                    .embed(&texts)
                    .await
                    .map_err(|error| error.to_string())?,
            )
        }
        None => None,
    };
    pipeline
        .index
        .index_document(IndexedDocument {
            brain: unit.brain,
            document: document.id,
            pages: 1,
            ocr_pages: 0,
            chunks: &chunks,
            vectors: vectors.as_deref(),
        })
        .await
        .map_err(|error| error.to_string())?;
    if let (Some(embedder), Some(_)) = (&pipeline.embedder, &vectors) {
        record_embedding(store, embedder, document.id).await;
    }
    tracing::info!(
        unit = unit.id,
        document = document.id.0,
        messages = unit.messages.len(),
        chunks = chunks.len(),
        "conversation learned"
    );
    Ok(Some(document.id))
}

/// Forgets the document of a unit that has no message left.
async fn forget(
    pipeline: &Pipeline,
    unit: &UnitToLearn,
    document: crate::brain::DocumentId,
) -> Result<(), String> {
    match pipeline.index.forget_document(unit.brain, document).await {
        Ok(()) | Err(crate::index::IndexError::UnknownDocument { .. }) => {}
        Err(error) => return Err(error.to_string()),
    }
    tracing::info!(
        unit = unit.id,
        document = document.0,
        "conversation forgotten"
    );
    Ok(())
}

/// Where a unit's versions are kept apart from every other document's.
pub fn scope(unit_key: &str) -> String {
    format!("conversation:{unit_key}")
}

/// The unit as one text: a line per message, who and when, oldest first.
pub fn render(unit: &UnitToLearn) -> String {
    let mut text = format!("Conversation: {}\n\n", unit.title);
    for message in &unit.messages {
        text.push_str(&line(message));
        text.push('\n');
    }
    text
}

fn line(message: &UnitMessage) -> String {
    let when = crate::clock::format_utc_minute(message.posted_at);
    let edited = if message.edited { " (edited)" } else { "" };
    format!(
        "{} ({when}){edited}: {}",
        message.author,
        message.text.trim()
    )
}
