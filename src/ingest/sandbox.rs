//! Runs `engram-extract` on one file in child processes — each in its own process group, with a
//! clean environment, memory and CPU limits (applied by the child to itself) and a cap on its
//! output, the file as a whole under a wall-clock timeout — and turns whatever happens into
//! pages or a reason a person can act on. At most one child per ingest worker runs at a time;
//! the scanned pages of a PDF spread over free ones.

use std::borrow::Cow;
use std::os::unix::process::ExitStatusExt as _;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::sync::Arc;
use std::time::Duration;

use engram_extract_protocol::Line;
use serde::Deserialize;
use tokio::io::{AsyncRead, AsyncReadExt as _};
use tokio::process::Command;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio::time::Instant;

use crate::config::IngestConfig;

/// Exit status with which the extractor reports a per-file error on its last line.
const EXIT_FILE_ERROR: i32 = 2;
/// How much of the extractor's stderr is kept for the log.
const STDERR_CAP: usize = 16 * 1024;

/// How to run the extractor.
#[derive(Debug, Clone)]
pub struct Sandbox {
    pub program: PathBuf,
    pub timeout: Duration,
    pub memory_bytes: u64,
    pub max_pages: u32,
    pub max_file_bytes: u64,
    /// Text beyond this is refused (a file cannot make engram hold unbounded text).
    pub max_output_bytes: usize,
    /// Extractor runs allowed at once among all users of this sandbox: one per ingest worker,
    /// so CPU and memory stay what `ingest.workers` says while a scanned PDF's pages spread
    /// over the slots other files leave free.
    pub slots: Arc<Semaphore>,
}

impl Sandbox {
    pub fn from_config(config: &IngestConfig) -> Self {
        Self {
            program: locate_extractor(&config.extractor),
            timeout: Duration::from_millis(config.extract_timeout_ms),
            memory_bytes: config.extract_memory_bytes,
            max_pages: config.max_pages,
            max_file_bytes: config.max_file_bytes,
            max_output_bytes: 64 * 1024 * 1024,
            slots: Arc::new(Semaphore::new(
                usize::try_from(config.workers).unwrap_or(1).max(1),
            )),
        }
    }
}

/// `ingest.extractor` if set; else `engram-extract` beside the running binary; else `$PATH`.
pub fn locate_extractor(configured: &str) -> PathBuf {
    if !configured.is_empty() {
        return PathBuf::from(configured);
    }
    std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().map(|dir| dir.join("engram-extract")))
        .filter(|candidate| candidate.is_file())
        .unwrap_or_else(|| PathBuf::from("engram-extract"))
}

/// One page as the extractor read it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct ExtractedPage {
    pub page: u32,
    pub text: String,
    pub ocr: bool,
    pub warning: Option<String>,
}

/// Everything read from one file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Extracted {
    /// The type detected from the content (`pdf`, `png`, `docx`, …).
    pub kind: String,
    pub pages: Vec<ExtractedPage>,
}

impl Extracted {
    pub fn ocr_pages(&self) -> u32 {
        u32::try_from(self.pages.iter().filter(|page| page.ocr).count()).unwrap_or(u32::MAX)
    }
}

/// Why a file could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ExtractError {
    /// The file itself is the problem (unsupported, damaged, too large, no text): permanent.
    #[error("{message}")]
    Refused { kind: String, message: String },
    /// The extractor hit a limit or crashed on this file: permanent.
    #[error("{0}")]
    Crashed(String),
    /// Killed from outside, or could not be started: worth another attempt.
    #[error("{0}")]
    Interrupted(String),
}

impl ExtractError {
    pub fn is_transient(&self) -> bool {
        matches!(self, ExtractError::Interrupted(_))
    }
}

impl crate::worker::Transience for ExtractError {
    fn is_transient(&self) -> bool {
        ExtractError::is_transient(self)
    }
}

/// Which part of a file one extractor run reads.
#[derive(Debug, Clone, Copy)]
enum Scope {
    /// The whole file, except the scanned pages of a PDF after its first: those are listed in
    /// the `document` line as deferred.
    Document,
    /// One page of a PDF.
    Page(u32),
}

/// Extracts one file. The first run reads the whole file but the scanned pages of a PDF after
/// the first; each of those gets a run of its own, started as soon as the first run names it
/// and a slot is free. The whole file must be read within `sandbox.timeout`.
pub async fn extract(sandbox: &Sandbox, path: &Path) -> Result<Extracted, ExtractError> {
    let deadline = Instant::now() + sandbox.timeout;
    // Dropping the set (on any error) aborts the page runs, which kills their children.
    let mut page_runs = JoinSet::new();
    let mut extracted = run(sandbox, path, Scope::Document, deadline, |deferred| {
        for &page in deferred {
            let (sandbox, path) = (sandbox.clone(), path.to_path_buf());
            page_runs.spawn(async move {
                run(&sandbox, &path, Scope::Page(page), deadline, |_| {}).await
            });
        }
    })
    .await?;
    if page_runs.is_empty() {
        return Ok(extracted);
    }
    let mut text_bytes: usize = extracted.pages.iter().map(|page| page.text.len()).sum();
    while let Some(joined) = page_runs.join_next().await {
        let pages = joined
            .map_err(|error| ExtractError::Interrupted(format!("a page run stopped: {error}")))??
            .pages;
        text_bytes += pages.iter().map(|page| page.text.len()).sum::<usize>();
        if text_bytes > sandbox.max_output_bytes {
            return Err(too_much_text(sandbox));
        }
        extracted.pages.extend(pages);
    }
    extracted.pages.sort_by_key(|page| page.page);
    // The runs that read part of a PDF leave this check to us.
    if extracted.pages.iter().all(|page| page.text.is_empty()) {
        return Err(ExtractError::Refused {
            kind: "no_text".into(),
            message: "no text could be extracted from the document".into(),
        });
    }
    Ok(extracted)
}

fn too_much_text(sandbox: &Sandbox) -> ExtractError {
    ExtractError::Refused {
        kind: "too_large".into(),
        message: format!(
            "the file holds more than {} MiB of text; split it into smaller files",
            sandbox.max_output_bytes / (1024 * 1024)
        ),
    }
}

fn timed_out(sandbox: &Sandbox) -> ExtractError {
    ExtractError::Crashed(format!(
        "reading the file took longer than {} s (ingest.extract_timeout_ms); it was stopped",
        sandbox.timeout.as_secs()
    ))
}

/// One extractor run, in a slot. `on_deferred` hears the pages the run leaves for runs of
/// their own as soon as the run names them (before it OCRs anything).
#[allow(
    clippy::disallowed_methods,
    reason = "the extractor child inherits only PATH and TESSDATA_PREFIX, passed through"
)]
async fn run(
    sandbox: &Sandbox,
    path: &Path,
    scope: Scope,
    deadline: Instant,
    mut on_deferred: impl FnMut(&[u32]),
) -> Result<Extracted, ExtractError> {
    let _slot = tokio::time::timeout_at(deadline, sandbox.slots.acquire())
        .await
        .map_err(|_| timed_out(sandbox))?
        .map_err(|_| ExtractError::Interrupted("the extractor slots were closed".into()))?;
    let mut command = Command::new(&sandbox.program);
    command
        .arg("--memory-bytes")
        .arg(sandbox.memory_bytes.to_string())
        .arg("--cpu-seconds")
        .arg(sandbox.timeout.as_secs().max(1).to_string())
        .arg("--max-pages")
        .arg(sandbox.max_pages.to_string())
        .arg("--max-file-bytes")
        .arg(sandbox.max_file_bytes.to_string());
    match scope {
        Scope::Document => command.arg("--defer-ocr"),
        Scope::Page(page) => command.arg("--page").arg(page.to_string()),
    };
    command
        .arg(path)
        // Nothing of engram's environment (tokens, keys) reaches the parser.
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("OMP_THREAD_LIMIT", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true);
    if let Some(tessdata) = std::env::var_os("TESSDATA_PREFIX") {
        command.env("TESSDATA_PREFIX", tessdata);
    }
    let mut child = command.spawn().map_err(|error| {
        ExtractError::Interrupted(format!(
            "cannot start the extractor {}: {error} (install engram-extract beside engram, or \
             set ingest.extractor)",
            sandbox.program.display()
        ))
    })?;
    let pid = child.id();
    // If this run is dropped half-way (an interrupted `engram ingest`, a shutdown that abandons
    // the job), the extractor and whatever it started die with it.
    let mut group = GroupGuard(pid);
    let stdout = child.stdout.take().expect("stdout is piped");
    let stderr = child.stderr.take().expect("stderr is piped");
    let on_first_line = |line: &[u8]| {
        if let Ok(Line::Document { deferred, .. }) = serde_json::from_slice::<Line>(line) {
            on_deferred(&deferred);
        }
    };
    let run = async {
        let (output, error_output, status) = tokio::join!(
            read_capped(stdout, sandbox.max_output_bytes, on_first_line),
            read_capped(stderr, STDERR_CAP, |_| {}),
            child.wait()
        );
        (output, error_output, status)
    };
    let (output, error_output, status) = match tokio::time::timeout_at(deadline, run).await {
        Ok(finished) => {
            // Reaped: its id may be reused from here on, so it is not signalled again.
            group.0 = None;
            finished
        }
        Err(_) => {
            kill_group(pid).await;
            return Err(timed_out(sandbox));
        }
    };
    let status = status.map_err(|error| ExtractError::Interrupted(error.to_string()))?;
    let (output, overflowed) =
        output.map_err(|error| ExtractError::Interrupted(error.to_string()))?;
    let stderr_text = error_output
        .map(|(bytes, _)| String::from_utf8_lossy(&bytes).into_owned())
        .unwrap_or_default();
    if overflowed {
        kill_group(pid).await;
        return Err(too_much_text(sandbox));
    }
    parse_output(&output, status, &stderr_text, sandbox)
}

fn parse_output(
    output: &[u8],
    status: ExitStatus,
    stderr_text: &str,
    sandbox: &Sandbox,
) -> Result<Extracted, ExtractError> {
    let mut kind = String::new();
    let mut pages = Vec::new();
    let mut done = false;
    for line in output
        .split(|&byte| byte == b'\n')
        .filter(|line| !line.is_empty())
    {
        match serde_json::from_slice::<Line>(line) {
            Ok(Line::Document { kind: detected, .. }) => kind = detected.into_owned(),
            Ok(Line::Page(page)) => pages.push(ExtractedPage {
                page: page.page,
                text: page.text.into_owned(),
                ocr: page.ocr,
                warning: page.warning.map(Cow::into_owned),
            }),
            Ok(Line::Done { .. }) => done = true,
            Ok(Line::Error { kind, message }) => {
                return Err(ExtractError::Refused {
                    kind: kind.into_owned(),
                    message: message.into_owned(),
                })
            }
            Err(error) => {
                tracing::warn!(%error, "unreadable line from the extractor");
            }
        }
    }
    if status.success() && done {
        return Ok(Extracted { kind, pages });
    }
    if !stderr_text.trim().is_empty() {
        tracing::warn!(stderr = %last_line(stderr_text), "extractor stderr");
    }
    Err(describe_failure(status, stderr_text, sandbox))
}

/// A reason for an extractor that ended without a result.
fn describe_failure(status: ExitStatus, stderr_text: &str, sandbox: &Sandbox) -> ExtractError {
    let memory_mib = sandbox.memory_bytes / (1024 * 1024);
    match (status.code(), status.signal()) {
        // SIGKILL from outside engram (an operator, the OOM killer): the file may be fine.
        (_, Some(9)) => ExtractError::Interrupted(
            "the extractor was killed from outside while reading the file".into(),
        ),
        // SIGXCPU: RLIMIT_CPU reached.
        (_, Some(24)) => ExtractError::Crashed(format!(
            "reading the file used more than {} s of CPU; it was stopped",
            sandbox.timeout.as_secs()
        )),
        // SIGABRT / SIGSEGV / SIGBUS: allocation failure under RLIMIT_AS, or a parser crash.
        (_, Some(6 | 7 | 11)) => ExtractError::Crashed(format!(
            "the file made the extractor run out of memory (limit {memory_mib} MiB, \
             ingest.extract_memory_bytes) or crash; it may be damaged or hostile"
        )),
        (_, Some(signal)) => {
            ExtractError::Interrupted(format!("the extractor was stopped by signal {signal}"))
        }
        (Some(EXIT_FILE_ERROR), _) => ExtractError::Crashed(format!(
            "the extractor refused the file without a reason ({})",
            last_line(stderr_text)
        )),
        (Some(_), _) if stderr_text.contains("memory allocation") => {
            ExtractError::Crashed(format!(
                "the file made the extractor run out of memory (limit {memory_mib} MiB, \
             ingest.extract_memory_bytes); it may be damaged or hostile"
            ))
        }
        (code, _) => ExtractError::Crashed(format!(
            "the extractor failed (exit {}): {}",
            code.map_or_else(|| "?".to_string(), |c| c.to_string()),
            last_line(stderr_text)
        )),
    }
}

fn last_line(text: &str) -> String {
    let line = text
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("no output");
    line.chars().take(300).collect()
}

/// Reads at most `cap` bytes; returns them and whether there was more. `on_first_line` gets
/// the first line (without its newline) as soon as it is complete.
async fn read_capped(
    mut reader: impl AsyncRead + Unpin,
    cap: usize,
    mut on_first_line: impl FnMut(&[u8]),
) -> std::io::Result<(Vec<u8>, bool)> {
    let mut kept = Vec::new();
    let mut buffer = vec![0u8; 64 * 1024];
    let mut first_line_seen = false;
    loop {
        let n = reader.read(&mut buffer).await?;
        if n == 0 {
            return Ok((kept, false));
        }
        if kept.len() + n > cap {
            return Ok((kept, true));
        }
        let start = kept.len();
        kept.extend_from_slice(&buffer[..n]);
        if !first_line_seen {
            if let Some(end) = buffer[..n].iter().position(|&byte| byte == b'\n') {
                first_line_seen = true;
                on_first_line(&kept[..start + end]);
            }
        }
    }
}

/// Kills the extractor's process group when dropped, unless the run finished (`None`).
struct GroupGuard(Option<u32>);

impl Drop for GroupGuard {
    fn drop(&mut self) {
        let Some(pid) = self.0.and_then(|pid| i32::try_from(pid).ok()) else {
            return;
        };
        if let Some(pgid) = rustix::process::Pid::from_raw(pid) {
            let _ = rustix::process::kill_process_group(pgid, rustix::process::Signal::KILL);
        }
    }
}

/// Kills the extractor and anything it started (its process group).
async fn kill_group(pid: Option<u32>) {
    let Some(pid) = pid else { return };
    let _ = Command::new("kill")
        .args(kill_group_args(pid))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .await;
}

/// `kill` arguments that signal process group `pgid`. The `--` matters: procps-ng's `kill`
/// reads `-KILL -12345` as `kill(-1, SIGKILL)`, every process the caller may signal.
fn kill_group_args(pgid: u32) -> [String; 4] {
    ["-s".into(), "KILL".into(), "--".into(), format!("-{pgid}")]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_group_kill_names_the_group_after_the_options() {
        assert_eq!(kill_group_args(12345), ["-s", "KILL", "--", "-12345"]);
    }

    fn sandbox() -> Sandbox {
        Sandbox {
            program: PathBuf::from("engram-extract"),
            timeout: Duration::from_secs(120),
            memory_bytes: 1 << 30,
            max_pages: 2000,
            max_file_bytes: 1 << 20,
            max_output_bytes: 1 << 20,
            slots: Arc::new(Semaphore::new(1)),
        }
    }

    /// A wait status: exit code `code`, or killed by `signal`.
    fn status(code: i32, signal: i32) -> ExitStatus {
        ExitStatus::from_raw(if signal != 0 { signal } else { code << 8 })
    }

    #[test]
    fn a_finished_run_gives_its_pages() {
        let output = concat!(
            r#"{"type":"document","kind":"pdf","pages":2}"#,
            "\n",
            r#"{"type":"page","page":1,"text":"Hello","ocr":false,"warning":null}"#,
            "\n",
            r#"{"type":"page","page":2,"text":"","ocr":true,"warning":"page 2: OCR found almost no text"}"#,
            "\n",
            r#"{"type":"done","pages":2,"ocr_pages":1,"chars":5}"#,
            "\n",
        );
        let extracted = parse_output(output.as_bytes(), status(0, 0), "", &sandbox()).unwrap();
        assert_eq!(extracted.kind, "pdf");
        assert_eq!(extracted.pages.len(), 2);
        assert_eq!(extracted.ocr_pages(), 1);
        assert_eq!(extracted.pages[0].text, "Hello");
    }

    #[test]
    fn a_refused_file_keeps_the_extractors_reason() {
        let output = r#"{"type":"error","kind":"unsupported","message":"unsupported file type: ZIP archive (not a DOCX)"}"#;
        let error = parse_output(output.as_bytes(), status(2, 0), "", &sandbox()).unwrap_err();
        assert_eq!(
            error.to_string(),
            "unsupported file type: ZIP archive (not a DOCX)"
        );
        assert!(!error.is_transient());
    }

    #[test]
    fn deaths_by_signal_become_reasons() {
        let killed = parse_output(b"", status(0, 9), "", &sandbox()).unwrap_err();
        assert!(killed.is_transient(), "killed from outside: try again");
        let cpu = parse_output(b"", status(0, 24), "", &sandbox()).unwrap_err();
        assert!(!cpu.is_transient());
        assert!(cpu.to_string().contains("CPU"), "{cpu}");
        let memory = parse_output(b"", status(0, 6), "", &sandbox()).unwrap_err();
        assert!(memory.to_string().contains("1024 MiB"), "{memory}");
        let truncated = r#"{"type":"document","kind":"pdf","pages":2}"#;
        let no_done = parse_output(truncated.as_bytes(), status(1, 0), "boom\n", &sandbox());
        assert!(no_done.unwrap_err().to_string().contains("boom"));
    }

    /// A stand-in extractor: a PDF of three pages whose pages 2 and 3 are deferred scans. Each
    /// run logs its scope and when it started and ended; `blank.pdf` has no text at all.
    fn fake_extractor(dir: &Path) -> Sandbox {
        let program = dir.join("fake-extract");
        std::fs::write(
            &program,
            r#"#!/bin/sh
for last in "$@"; do :; done
log="$(dirname "$0")/runs.log"
case " $* " in
  *" --defer-ocr "*) scope=document; page=1
    echo '{"type":"document","kind":"pdf","pages":3,"deferred":[2,3]}' ;;
  *" --page "*) scope=page; page=$(echo "$*" | sed 's/.*--page \([0-9]*\).*/\1/')
    echo '{"type":"document","kind":"pdf","pages":3}' ;;
esac
echo "start $scope $page" >> "$log"
text=$([ "$(basename "$last")" = blank.pdf ] || echo "found$page")
sleep 0.2
echo "{\"type\":\"page\",\"page\":$page,\"text\":\"$text\",\"ocr\":true,\"warning\":null}"
echo "end $scope $page" >> "$log"
echo '{"type":"done","pages":1,"ocr_pages":1,"chars":1}'
"#,
        )
        .unwrap();
        std::fs::set_permissions(
            &program,
            std::os::unix::fs::PermissionsExt::from_mode(0o755),
        )
        .unwrap();
        Sandbox {
            program,
            slots: Arc::new(Semaphore::new(2)),
            ..sandbox()
        }
    }

    #[tokio::test]
    async fn deferred_pages_run_in_free_slots_and_come_back_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let sandbox = fake_extractor(dir.path());
        let extracted = extract(&sandbox, &dir.path().join("scan.pdf"))
            .await
            .unwrap();
        let pages: Vec<(u32, &str)> = extracted
            .pages
            .iter()
            .map(|page| (page.page, page.text.as_str()))
            .collect();
        assert_eq!(pages, [(1, "found1"), (2, "found2"), (3, "found3")]);
        assert_eq!(extracted.ocr_pages(), 3);
        // Two slots: page 2 starts while the first run still reads page 1; page 3 waits.
        let log = std::fs::read_to_string(dir.path().join("runs.log")).unwrap();
        let lines: Vec<&str> = log.lines().collect();
        assert_eq!(lines.len(), 6, "{log}");
        let position = |line: &str| lines.iter().position(|l| *l == line).unwrap();
        assert!(
            position("start page 2") < position("end document 1"),
            "{log}"
        );
        let first_end = position("end document 1").min(position("end page 2"));
        assert!(position("start page 3") > first_end, "{log}");
    }

    #[tokio::test]
    async fn one_slot_runs_the_pages_one_after_another() {
        let dir = tempfile::tempdir().unwrap();
        let sandbox = Sandbox {
            slots: Arc::new(Semaphore::new(1)),
            ..fake_extractor(dir.path())
        };
        let extracted = extract(&sandbox, &dir.path().join("scan.pdf"))
            .await
            .unwrap();
        assert_eq!(extracted.pages.len(), 3);
        let log = std::fs::read_to_string(dir.path().join("runs.log")).unwrap();
        for pair in log.lines().collect::<Vec<_>>().chunks(2) {
            assert_eq!(pair[0].replace("start", "end"), pair[1], "{log}");
        }
    }

    #[tokio::test]
    async fn split_runs_share_one_deadline_and_the_no_text_verdict() {
        let dir = tempfile::tempdir().unwrap();
        let blank = extract(&fake_extractor(dir.path()), &dir.path().join("blank.pdf")).await;
        assert!(
            matches!(&blank, Err(ExtractError::Refused { kind, .. }) if kind == "no_text"),
            "{blank:?}"
        );
        // One slot and 0.2 s a run: the third run cannot start within 0.5 s.
        let sandbox = Sandbox {
            slots: Arc::new(Semaphore::new(1)),
            timeout: Duration::from_millis(500),
            ..fake_extractor(dir.path())
        };
        let late = extract(&sandbox, &dir.path().join("scan.pdf")).await;
        assert!(
            matches!(&late, Err(ExtractError::Crashed(reason)) if reason.contains("longer than")),
            "{late:?}"
        );
    }

    #[tokio::test]
    async fn the_first_line_is_seen_before_the_output_ends() {
        let (mut writer, reader) = tokio::io::duplex(64);
        let mut first = Vec::new();
        let reading = read_capped(reader, 1024, |line| first = line.to_vec());
        let writing = async move {
            tokio::io::AsyncWriteExt::write_all(&mut writer, b"one\ntwo\n")
                .await
                .unwrap();
        };
        let ((kept, overflowed), ()) = tokio::join!(async { reading.await.unwrap() }, writing);
        assert_eq!((kept.as_slice(), overflowed), (&b"one\ntwo\n"[..], false));
        assert_eq!(first, b"one");
    }
}
