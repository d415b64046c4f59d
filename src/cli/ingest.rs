//! `engram ingest` (files and folders into a brain, with a progress bar and a result line per
//! file) and `engram extract` (what engram reads from one file).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context as _};
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::json;

use crate::app;
use crate::brain::{BrainName, Document, DocumentStatus, TenantKey};
use crate::config::Config;
use crate::ingest::sandbox::{self, Sandbox};
use crate::ingest::{self, NewFile, SubmitError, Submitted};
use crate::jobs::{JobId, JobKind, JobState, RetryPolicy};
use crate::store::Store;
use crate::telemetry::Metrics;
use crate::worker::{self, Shutdown, WorkerOptions};

#[derive(Debug, Args)]
pub struct IngestArgs {
    /// The brain to add to (see `engram brain list`).
    #[arg(value_parser = BrainName::parse)]
    pub brain: BrainName,
    /// Files or folders (searched recursively).
    #[arg(required = true)]
    pub paths: Vec<PathBuf>,
    /// Tenant that owns the brain.
    #[arg(long, default_value = "local", value_parser = TenantKey::parse)]
    pub tenant: TenantKey,
    /// One JSON object per file on stdout.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct ExtractArgs {
    /// The file to read.
    pub path: PathBuf,
    /// One JSON object per page: {"page": 1, "text": "…", "ocr": true}.
    #[arg(long)]
    pub json: bool,
}

/// The outcome of one file, as printed.
struct FileResult {
    file: String,
    status: &'static str,
    pages: u32,
    chunks: u32,
    ocr_pages: u32,
    error: Option<String>,
}

impl FileResult {
    fn from_document(file: String, document: &Document, status: &'static str) -> Self {
        Self {
            file,
            status,
            pages: document.pages,
            chunks: document.chunks,
            ocr_pages: document.ocr_pages,
            error: None,
        }
    }

    fn failed(file: String, reason: impl Into<String>) -> Self {
        Self {
            file,
            status: "failed",
            pages: 0,
            chunks: 0,
            ocr_pages: 0,
            error: Some(reason.into()),
        }
    }

    fn render(&self, as_json: bool) -> String {
        if as_json {
            return json!({
                "file": self.file, "status": self.status, "pages": self.pages,
                "chunks": self.chunks, "ocr_pages": self.ocr_pages, "error": self.error,
            })
            .to_string();
        }
        let detail = match self.status {
            "failed" => self.error.clone().unwrap_or_default(),
            "known" => "already known: the same file is in this brain".to_string(),
            _ => {
                let mut detail = format!(
                    "{} page{}, {} chunk{}",
                    self.pages,
                    plural(self.pages),
                    self.chunks,
                    plural(self.chunks)
                );
                if self.ocr_pages > 0 {
                    detail.push_str(&format!(", {} OCR'd", self.ocr_pages));
                }
                detail
            }
        };
        format!("{:<8}  {}  {detail}", self.status, self.file)
    }
}

fn plural(n: u32) -> &'static str {
    if n == 1 {
        ""
    } else {
        "s"
    }
}

/// Regular files under the given paths, folders searched recursively, largest first (then by
/// path). Jobs are claimed in the order they are queued, and the large files (scans) are the
/// slow ones: started first, they do not leave one worker finishing a long file while the
/// others have nothing left to do.
fn collect_files(paths: &[PathBuf]) -> anyhow::Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    for path in paths {
        let metadata =
            std::fs::metadata(path).with_context(|| format!("cannot read {}", path.display()))?;
        if metadata.is_dir() {
            let mut stack = vec![path.clone()];
            while let Some(dir) = stack.pop() {
                let mut entries: Vec<PathBuf> = std::fs::read_dir(&dir)
                    .with_context(|| format!("cannot list {}", dir.display()))?
                    .filter_map(|entry| entry.ok().map(|e| e.path()))
                    .collect();
                entries.sort();
                for entry in entries.into_iter().rev() {
                    if entry.is_dir() {
                        stack.push(entry);
                    } else if entry.is_file() {
                        files.push(entry);
                    }
                }
            }
        } else {
            files.push(path.clone());
        }
    }
    files.sort();
    files.dedup();
    files.sort_by_cached_key(|path| {
        std::cmp::Reverse(std::fs::metadata(path).map_or(0, |metadata| metadata.len()))
    });
    Ok(files)
}

fn file_name(path: &Path) -> String {
    path.file_name()
        .map(|name| name.to_string_lossy().into_owned())
        .unwrap_or_else(|| path.display().to_string())
}

pub async fn ingest_command(config: &Config, args: IngestArgs) -> anyhow::Result<()> {
    let store = app::open_store(config).await?;
    let brain = super::find_brain(store.as_ref(), &args.tenant, &args.brain).await?;
    let pipeline = app::ingest_pipeline(config, store.clone()).await?;
    let files = collect_files(&args.paths)?;

    let bar = ProgressBar::new(files.len() as u64);
    bar.set_style(
        ProgressStyle::with_template("{bar:30} {pos}/{len} files  {elapsed}  {msg}")
            .expect("valid template"),
    );
    let print = |result: &FileResult| {
        bar.suspend(|| println!("{}", result.render(args.json)));
        bar.inc(1);
    };

    let mut failures = 0usize;
    let mut waiting: Vec<(String, JobId)> = Vec::new();
    for path in &files {
        let label = path.display().to_string();
        bar.set_message(format!("reading {}", file_name(path)));
        let bytes = match tokio::fs::read(path).await {
            Ok(bytes) => bytes,
            Err(error) => {
                failures += 1;
                print(&FileResult::failed(
                    label,
                    format!("cannot read the file: {error}"),
                ));
                continue;
            }
        };
        let submitted = ingest::submit(
            store.as_ref(),
            &config.ingest,
            config.jobs.max_attempts,
            NewFile::new(brain.id, &file_name(path), &bytes),
        )
        .await;
        match submitted {
            Ok(Submitted::Known(document)) => {
                print(&FileResult::from_document(label, &document, "known"))
            }
            Ok(Submitted::Queued { job, .. }) => waiting.push((label, job)),
            Err(SubmitError::Store(error)) => return Err(error.into()),
            Err(refused) => {
                failures += 1;
                print(&FileResult::failed(label, refused.to_string()));
            }
        }
    }

    let shutdown = Shutdown::default();
    let workers = tokio::spawn(worker::run(
        store.clone(),
        Arc::new(pipeline),
        WorkerOptions {
            kind: JobKind::Ingest,
            concurrency: usize::try_from(config.ingest.workers).unwrap_or(1),
            lease: config.jobs.lease(),
            retry: RetryPolicy::from(&config.jobs),
            name: worker::worker_name("cli-ingest"),
            idle_recheck: Duration::from_secs(1),
        },
        shutdown.clone(),
        Arc::new(Metrics::default()),
    ));
    bar.set_message("extracting and indexing");
    while !waiting.is_empty() {
        let mut still = Vec::new();
        for (label, job_id) in waiting {
            match finished(store.as_ref(), job_id).await? {
                Some(Ok(document)) => {
                    print(&FileResult::from_document(label, &document, "ingested"))
                }
                Some(Err(reason)) => {
                    failures += 1;
                    print(&FileResult::failed(label, reason));
                }
                None => still.push((label, job_id)),
            }
        }
        waiting = still;
        if !waiting.is_empty() {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    shutdown.stop_claiming.cancel();
    shutdown.abandon.cancel();
    let _ = workers.await;
    bar.finish_and_clear();
    if failures > 0 {
        bail!(
            "{failures} of {} files failed (see the reasons above)",
            files.len()
        );
    }
    Ok(())
}

/// `None` while the job is still going; else the indexed document or the reason it failed.
async fn finished(
    store: &dyn Store,
    job_id: JobId,
) -> anyhow::Result<Option<Result<Document, String>>> {
    let Some(job) = store.job(job_id).await? else {
        return Ok(Some(Err("the ingest job disappeared".into())));
    };
    let payload: ingest::IngestPayload = serde_json::from_value(job.payload.clone())?;
    let document = store
        .document(crate::brain::DocumentId(payload.document_id))
        .await?;
    Ok(match (job.state, document) {
        (JobState::Done, Some(document)) if document.status == DocumentStatus::Indexed => {
            Some(Ok(document))
        }
        (JobState::Done | JobState::Dead, Some(document)) => Some(Err(document
            .error
            .or(job.last_error)
            .unwrap_or_else(|| "ingestion ended without a result".into()))),
        (JobState::Done | JobState::Dead, None) => Some(Err(
            "the document was deleted while it was being ingested".into(),
        )),
        _ => None,
    })
}

pub async fn extract_command(config: &Config, args: ExtractArgs) -> anyhow::Result<()> {
    let sandbox = Sandbox::from_config(&config.ingest);
    let extracted = sandbox::extract(&sandbox, &args.path)
        .await
        .map_err(|error| anyhow::anyhow!("{}: {error}", args.path.display()))?;
    for page in &extracted.pages {
        if args.json {
            println!(
                "{}",
                json!({"page": page.page, "text": page.text, "ocr": page.ocr, "warning": page.warning})
            );
            continue;
        }
        let how = if page.ocr { "OCR" } else { "text layer" };
        println!("── page {} · {how} ──", page.page);
        if let Some(warning) = &page.warning {
            println!("(skipped: {warning})");
        }
        if !page.text.trim().is_empty() {
            println!("{}", page.text.trim_end());
        }
        println!();
    }
    if !args.json {
        println!(
            "{}: {}, {} page{}, {} OCR'd",
            args.path.display(),
            extracted.kind,
            extracted.pages.len(),
            if extracted.pages.len() == 1 { "" } else { "s" },
            extracted.ocr_pages()
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_are_collected_largest_first() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("sub")).unwrap();
        for (name, size) in [
            ("a.txt", 10),
            ("b.txt", 30),
            ("sub/c.txt", 20),
            ("d.txt", 10),
        ] {
            std::fs::write(dir.path().join(name), vec![b'x'; size]).unwrap();
        }
        let found = collect_files(&[dir.path().to_path_buf(), dir.path().join("a.txt")]).unwrap();
        let names: Vec<String> = found
            .iter()
            .map(|path| path.strip_prefix(dir.path()).unwrap().display().to_string())
            .collect();
        assert_eq!(names, ["b.txt", "sub/c.txt", "a.txt", "d.txt"]);
    }
}
