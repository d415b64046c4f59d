//! `engram ingest` (files and folders into a brain, with a progress bar and a result line per
//! file) and `engram extract` (what engram reads from one file).

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context as _};
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::json;
use tokio_util::sync::CancellationToken;

use crate::app;
use crate::brain::{BrainName, Document, DocumentStatus, TenantKey};
use crate::config::Config;
use crate::ingest::sandbox::{self, Sandbox};
use crate::ingest::{self, NewFile, SubmitError, Submitted};
use crate::jobs::{JobId, JobKind, JobState, RetryPolicy};
use crate::store::Store;
use crate::telemetry::Metrics;
use crate::worker::{self, Shutdown, WorkerOptions};

use super::output::{self, outln};
use super::walk;

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

fn file_name(path: &Path) -> String {
    path.file_name()
        .map(|name| name.to_string_lossy().into_owned())
        .unwrap_or_else(|| path.display().to_string())
}

/// The command was stopped by Ctrl-C or SIGTERM after cleaning up; `main` exits with
/// 128 + the signal's number and prints nothing more (the command said what it did).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Interrupted {
    signal: i32,
}

impl Interrupted {
    const INTERRUPT: i32 = 2;
    const TERMINATE: i32 = 15;

    /// 130 after Ctrl-C, 143 after SIGTERM, as shells report a command killed by them.
    pub fn exit_status(&self) -> u8 {
        u8::try_from(128 + self.signal).unwrap_or(1)
    }
}

impl std::fmt::Display for Interrupted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("interrupted")
    }
}

impl std::error::Error for Interrupted {}

/// Ctrl-C and SIGTERM, caught from the moment of `listen`: `stopped` is cancelled at the first
/// one, and `signal` says which it was.
pub(super) struct StopOnSignal {
    pub(super) stopped: CancellationToken,
    signal: Arc<AtomicI32>,
    task: tokio::task::JoinHandle<()>,
}

impl StopOnSignal {
    pub(super) fn listen() -> anyhow::Result<Self> {
        use tokio::signal::unix::{signal, SignalKind};
        let mut interrupt = signal(SignalKind::interrupt()).context("cannot listen for Ctrl-C")?;
        let mut terminate = signal(SignalKind::terminate()).context("cannot listen for SIGTERM")?;
        let stopped = CancellationToken::new();
        let which = Arc::new(AtomicI32::new(0));
        let task = tokio::spawn({
            let (stopped, which) = (stopped.clone(), which.clone());
            async move {
                let number = tokio::select! {
                    _ = interrupt.recv() => Interrupted::INTERRUPT,
                    _ = terminate.recv() => Interrupted::TERMINATE,
                };
                which.store(number, Ordering::SeqCst);
                stopped.cancel();
                // Cleaning up takes a moment; a second Ctrl-C does not wait for it.
                tokio::select! {
                    _ = interrupt.recv() => {}
                    _ = terminate.recv() => {}
                }
                eprintln!("engram: interrupted again; stopping without cleaning up");
                std::process::exit(128 + number);
            }
        });
        Ok(Self {
            stopped,
            signal: which,
            task,
        })
    }

    pub(super) fn interrupted(&self) -> Interrupted {
        Interrupted {
            signal: match self.signal.load(Ordering::SeqCst) {
                0 => Interrupted::INTERRUPT,
                number => number,
            },
        }
    }
}

impl Drop for StopOnSignal {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Ingest workers in this process (`ingest.workers` of them, named after `name`) for a
/// command that runs its own jobs; stopped through the returned `Shutdown`.
pub(super) fn ingest_workers(
    config: &Config,
    store: Arc<dyn Store>,
    pipeline: ingest::Pipeline,
    name: &str,
) -> (Shutdown, tokio::task::JoinHandle<()>) {
    let shutdown = Shutdown::default();
    let workers = tokio::spawn(worker::run(
        store,
        Arc::new(pipeline),
        WorkerOptions {
            kind: JobKind::Ingest,
            concurrency: usize::try_from(config.ingest.workers).unwrap_or(1),
            lease: config.jobs.lease(),
            retry: RetryPolicy::from(&config.jobs),
            name: worker::worker_name(name),
            idle_recheck: Duration::from_secs(1),
        },
        shutdown.clone(),
        Arc::new(Metrics::default()),
    ));
    (shutdown, workers)
}

/// How `engram ingest` ended, for its exit status: 0 when every file taken was ingested or
/// already known; 1 when a file failed, a named path could not be read, or there was nothing
/// to ingest at all; 130 (Ctrl-C) or 143 (SIGTERM) when stopped.
pub async fn ingest_command(config: &Config, args: IngestArgs) -> anyhow::Result<()> {
    let store = app::open_existing_store(config).await?;
    let brain = super::find_brain(store.as_ref(), &args.tenant, &args.brain).await?;
    let pipeline = app::ingest_pipeline(config, store.clone()).await?;
    let stop = StopOnSignal::listen()?;
    let walk = walk::collect(&args.paths);
    for problem in &walk.problems {
        eprintln!("engram: {problem}");
    }
    for note in walk.notes.iter().chain(&walk.empty_folders) {
        eprintln!("engram: {note}");
    }
    if let Some(note) = walk.unsupported_note() {
        eprintln!("engram: {note}");
    }
    let files = walk.files;
    if files.is_empty() {
        bail!("nothing to ingest");
    }

    let bar = ProgressBar::new(files.len() as u64);
    bar.set_style(
        ProgressStyle::with_template("{bar:30} {pos}/{len} files  {elapsed}  {msg}")
            .expect("valid template"),
    );
    // Log lines are written above the bar instead of over it.
    let _logs_above = crate::telemetry::LogsAboveBar::new(&bar);
    let print = |result: &FileResult| -> anyhow::Result<()> {
        let line = result.render(args.json);
        bar.suspend(|| output::line(format_args!("{line}")))?;
        bar.inc(1);
        Ok(())
    };

    let mut failures = 0usize;
    let mut waiting: Vec<(String, JobId)> = Vec::new();
    for path in &files {
        if stop.stopped.is_cancelled() {
            break;
        }
        let label = path.display().to_string();
        bar.set_message(format!("reading {}", file_name(path)));
        let bytes = match tokio::fs::read(path).await {
            Ok(bytes) => bytes,
            Err(error) => {
                failures += 1;
                print(&FileResult::failed(
                    label,
                    format!("cannot read the file: {error}"),
                ))?;
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
                print(&FileResult::from_document(label, &document, "known"))?
            }
            Ok(Submitted::Queued { job, .. }) => waiting.push((label, job)),
            Err(SubmitError::Store(error)) => return Err(error.into()),
            Err(refused) => {
                failures += 1;
                print(&FileResult::failed(label, refused.to_string()))?;
            }
        }
    }

    let (shutdown, workers) = ingest_workers(config, store.clone(), pipeline, "cli-ingest");
    // However this ends (done, Ctrl-C, an error, a closed stdout), the workers stop: jobs in
    // flight are abandoned and their leases released at once, their extractors killed and their
    // staged copies removed, so the next run starts where this one stopped.
    let stop_workers = || async {
        shutdown.stop_claiming.cancel();
        shutdown.abandon.cancel();
        let _ = workers.await;
    };
    bar.set_message("extracting and indexing");
    let waited = wait_for_jobs(store.as_ref(), waiting, &stop.stopped, &print).await;
    stop_workers().await;
    // Read before the bar is finished, which moves it to the end.
    let done = bar.position();
    bar.finish_and_clear();
    failures += waited?;
    if stop.stopped.is_cancelled() {
        eprintln!(
            "engram: interrupted: {done} of {} files done, run again to continue",
            files.len()
        );
        return Err(stop.interrupted().into());
    }
    let unreadable = walk.problems.len();
    match (failures, unreadable) {
        (0, 0) => Ok(()),
        (0, _) => bail!(
            "{unreadable} path{} could not be read (see above); the other files were ingested",
            if unreadable == 1 { "" } else { "s" }
        ),
        _ => bail!(
            "{failures} of {} files failed (see the reasons above)",
            files.len()
        ),
    }
}

/// Waits until each job in `waiting` has ended, printing its file's result, or until `stop`.
/// Returns how many failed.
async fn wait_for_jobs(
    store: &dyn Store,
    mut waiting: Vec<(String, JobId)>,
    stop: &CancellationToken,
    print: &impl Fn(&FileResult) -> anyhow::Result<()>,
) -> anyhow::Result<usize> {
    let mut failures = 0;
    while !waiting.is_empty() {
        let mut still = Vec::new();
        for (label, job_id) in waiting {
            match finished(store, job_id).await? {
                Some(Ok(document)) => {
                    print(&FileResult::from_document(label, &document, "ingested"))?
                }
                Some(Err(reason)) => {
                    failures += 1;
                    print(&FileResult::failed(label, reason))?;
                }
                None => still.push((label, job_id)),
            }
        }
        waiting = still;
        if !waiting.is_empty() {
            tokio::select! {
                () = stop.cancelled() => break,
                () = tokio::time::sleep(Duration::from_millis(100)) => {}
            }
        }
    }
    Ok(failures)
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
    let stop = StopOnSignal::listen()?;
    // Stopped, the extraction is dropped, which kills the extractor's process group.
    let extracted = tokio::select! {
        extracted = sandbox::extract(&sandbox, &args.path) => extracted,
        () = stop.stopped.cancelled() => return Err(stop.interrupted().into()),
    };
    let extracted =
        extracted.map_err(|error| anyhow::anyhow!("{}: {error}", args.path.display()))?;
    for page in &extracted.pages {
        if args.json {
            outln!(
                "{}",
                json!({"page": page.page, "text": page.text, "ocr": page.ocr, "warning": page.warning})
            );
            continue;
        }
        let how = if page.ocr { "OCR" } else { "text layer" };
        outln!("── page {} · {how} ──", page.page);
        if let Some(warning) = &page.warning {
            outln!("(skipped: {warning})");
        }
        if !page.text.trim().is_empty() {
            outln!("{}", page.text.trim_end());
        }
        outln!();
    }
    if !args.json {
        outln!(
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
