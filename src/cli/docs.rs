//! `engram brain docs` (a brain's documents with their versions), `engram brain forget` (one
//! file, every version) and `engram brain reindex` (re-embedding a brain as `ingest` jobs).

use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context as _};
use serde_json::json;

use super::output::outln;
use crate::app;
use crate::brain::{Brain, Document, DocumentVersion};
use crate::clock::format_utc;
use crate::config::Config;
use crate::ingest::documents;
use crate::jobs::JobState;
use crate::llm::Embedder;
use crate::store::Store;

/// Where a document's name is unique, as people read it.
fn scope_label(scope: &str) -> &str {
    if scope.is_empty() {
        "shell"
    } else {
        scope
    }
}

fn version_json(version: &DocumentVersion) -> serde_json::Value {
    json!({
        "version": version.version,
        "sha256": version.sha256,
        "added_by": version.added_by,
        "added_at": format_utc(version.added_at),
        "replaced_at": format_utc(version.replaced_at),
        "status": version.status,
        "pages": version.pages,
        "chunks": version.chunks,
    })
}

/// Lists the brain's documents: one line (or JSON object) each, with its earlier versions.
pub async fn docs(store: &dyn Store, brain: &Brain, json: bool) -> anyhow::Result<()> {
    let documents = store.documents(brain.id).await?;
    let history = store.document_history(brain.id).await?;
    let earlier = |document: &Document| -> Vec<&DocumentVersion> {
        history
            .iter()
            .filter(|version| {
                version.file_name == document.file_name && version.scope == document.scope
            })
            .collect()
    };
    if json {
        for document in &documents {
            let versions: Vec<serde_json::Value> =
                earlier(document).into_iter().map(version_json).collect();
            outln!(
                "{}",
                json!({
                    "file": document.file_name,
                    "version": document.version,
                    "pages": document.pages,
                    "chunks": document.chunks,
                    "status": document.status,
                    "when": format_utc(document.created_at),
                    "updated_at": format_utc(document.updated_at),
                    "added_by": document.added_by,
                    "scope": document.scope,
                    "sha256": document.sha256,
                    "error": document.error,
                    "earlier_versions": versions,
                })
            );
        }
        return Ok(());
    }
    if documents.is_empty() {
        outln!(
            "brain `{}` has no documents yet: add some with `engram ingest {} PATH`",
            brain.name,
            brain.name
        );
        return Ok(());
    }
    outln!(
        "{:<32} {:>7} {:>5} {:>6}  {:<8} {:<20}  FROM",
        "FILE",
        "VERSION",
        "PAGES",
        "CHUNKS",
        "STATUS",
        "WHEN"
    );
    for document in &documents {
        let earlier = earlier(document).len();
        let version = if earlier > 0 {
            format!("{} (+{earlier})", document.version)
        } else {
            document.version.to_string()
        };
        outln!(
            "{:<32} {:>7} {:>5} {:>6}  {:<8} {:<20}  {}",
            document.file_name,
            version,
            document.pages,
            document.chunks,
            document.status.as_str(),
            format_utc(document.created_at),
            scope_label(&document.scope)
        );
        if let Some(error) = &document.error {
            outln!("    {}", error.replace('\n', " "));
        }
    }
    Ok(())
}

/// Forgets every version of `file` in the brain, from the store and the index.
pub async fn forget(
    config: &Config,
    store: Arc<dyn Store>,
    brain: &Brain,
    file: &str,
) -> anyhow::Result<()> {
    let pipeline = app::ingest_pipeline(config, store.clone()).await?;
    let forgotten = documents::forget(
        store.as_ref(),
        pipeline.index.as_ref(),
        brain.id,
        None,
        file,
    )
    .await
    .context("cannot forget it; running the command again finishes what was started")?;
    if forgotten.documents == 0 && forgotten.earlier_versions == 0 {
        bail!(
            "brain `{}` has no file `{file}` (see `engram brain docs {}`)",
            brain.name,
            brain.name
        );
    }
    outln!(
        "forgot {file} from brain `{}`: {} document{}, {} earlier version{}",
        brain.name,
        forgotten.documents,
        if forgotten.documents == 1 { "" } else { "s" },
        forgotten.earlier_versions,
        if forgotten.earlier_versions == 1 {
            ""
        } else {
            "s"
        }
    );
    Ok(())
}

/// Queues the brain's re-embedding (refused when embeddings are off); with `wait`, runs the
/// jobs in this process until they end.
pub async fn reindex(
    config: &Config,
    store: Arc<dyn Store>,
    brain: &Brain,
    wait: bool,
) -> anyhow::Result<()> {
    if Embedder::from_config(&config.embeddings)?.is_none() {
        bail!(
            "embeddings are off (neither `embeddings.base_url` nor `embeddings.local_model` \
             is set), so there is nothing to re-embed: searches use keywords only, which need \
             no re-indexing"
        );
    }
    let jobs = documents::queue_reindex(store.as_ref(), brain.id, config.jobs.max_attempts).await?;
    outln!(
        "queued {} document{} of brain `{}` for re-indexing; searches keep working meanwhile",
        jobs.len(),
        if jobs.len() == 1 { "" } else { "s" },
        brain.name
    );
    if !wait {
        outln!("the ingest role of `engram serve` runs them; `engram jobs` shows them");
        return Ok(());
    }
    let pipeline = app::ingest_pipeline(config, store.clone()).await?;
    let (shutdown, workers) =
        super::ingest::ingest_workers(config, store.clone(), pipeline, "cli-reindex");
    let mut failed = 0;
    for job in &jobs {
        loop {
            let state = store.job(*job).await?.map(|job| job.state);
            match state {
                Some(JobState::Done) | None => break,
                Some(JobState::Dead) => {
                    failed += 1;
                    break;
                }
                _ => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
    }
    shutdown.stop_claiming.cancel();
    shutdown.abandon.cancel();
    let _ = workers.await;
    if failed > 0 {
        bail!(
            "{failed} of {} documents could not be re-indexed (`engram jobs --state dead` says why)",
            jobs.len()
        );
    }
    outln!(
        "re-indexed {} document{}",
        jobs.len(),
        if jobs.len() == 1 { "" } else { "s" }
    );
    Ok(())
}
