//! A brain's documents as people manage them: forgetting a file (every version, from the store
//! and the index) and queueing a brain's re-embedding as `ingest` jobs.

use crate::brain::{BrainId, Document, DocumentStatus};
use crate::index::{Index, IndexError};
use crate::jobs::{JobId, JobKind, NewJob};
use crate::store::{Store, StoreError};

use super::IngestPayload;

/// Why forgetting or re-indexing failed.
#[derive(Debug, thiserror::Error)]
pub enum DocumentsError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Index(#[from] IndexError),
}

/// What `forget` removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Forgotten {
    /// Documents (current versions, or newer ones being read) removed with their chunks.
    pub documents: usize,
    /// Earlier versions removed from the history.
    pub earlier_versions: u64,
}

/// Forgets the file `file_name` of `brain`: every version of it, in `scope` (see
/// `Document::scope`) or in every scope when `None`. Chunks go from the index first (the
/// replaced versions' leftovers too), then the history; running it again after a failure
/// finishes the job.
pub async fn forget(
    store: &dyn Store,
    index: &dyn Index,
    brain: BrainId,
    scope: Option<&str>,
    file_name: &str,
) -> Result<Forgotten, DocumentsError> {
    index.purge_replaced(brain).await?;
    let documents: Vec<Document> = store
        .documents(brain)
        .await?
        .into_iter()
        .filter(|document| {
            document.file_name == file_name && scope.is_none_or(|scope| document.scope == scope)
        })
        .collect();
    for document in &documents {
        index.forget_document(brain, document.id).await?;
    }
    let earlier_versions = store.forget_history(brain, scope, file_name).await?;
    Ok(Forgotten {
        documents: documents.len(),
        earlier_versions,
    })
}

/// Queues one `ingest` job per indexed document of `brain` that embeds its stored chunks
/// again (what a change of embedding model needs); searches keep working meanwhile. Returns
/// the jobs queued.
pub async fn queue_reindex(
    store: &dyn Store,
    brain: BrainId,
    max_attempts: u32,
) -> Result<Vec<JobId>, DocumentsError> {
    let mut queued = Vec::new();
    for document in store.documents(brain).await? {
        if document.status != DocumentStatus::Indexed {
            continue;
        }
        let payload = serde_json::to_value(IngestPayload {
            document_id: document.id.0,
            report: None,
            reindex: true,
        })
        .expect("payload serializes");
        let job = store
            .enqueue(&NewJob::new(JobKind::Ingest, payload, max_attempts))
            .await?;
        queued.push(job.id());
    }
    Ok(queued)
}
