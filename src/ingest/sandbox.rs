//! Runs `engram-extract` on one file in a child process — its own process group, a clean
//! environment, memory and CPU limits (applied by the child to itself), a wall-clock timeout and
//! a cap on its output — and turns whatever happens into pages or a reason a person can act on.

use std::os::unix::process::ExitStatusExt as _;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use serde::Deserialize;
use tokio::io::{AsyncRead, AsyncReadExt as _};
use tokio::process::Command;

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

#[derive(Debug, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase")]
enum Line {
    Document { kind: String },
    Page(ExtractedPage),
    Done {},
    Error { kind: String, message: String },
}

/// Extracts one file.
pub async fn extract(sandbox: &Sandbox, path: &Path) -> Result<Extracted, ExtractError> {
    let mut command = Command::new(&sandbox.program);
    command
        .arg("--memory-bytes")
        .arg(sandbox.memory_bytes.to_string())
        .arg("--cpu-seconds")
        .arg(sandbox.timeout.as_secs().max(1).to_string())
        .arg("--max-pages")
        .arg(sandbox.max_pages.to_string())
        .arg("--max-file-bytes")
        .arg(sandbox.max_file_bytes.to_string())
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
    let stdout = child.stdout.take().expect("stdout is piped");
    let stderr = child.stderr.take().expect("stderr is piped");
    let run = async {
        let (output, error_output, status) = tokio::join!(
            read_capped(stdout, sandbox.max_output_bytes),
            read_capped(stderr, STDERR_CAP),
            child.wait()
        );
        (output, error_output, status)
    };
    let (output, error_output, status) = match tokio::time::timeout(sandbox.timeout, run).await {
        Ok(finished) => finished,
        Err(_) => {
            kill_group(pid).await;
            return Err(ExtractError::Crashed(format!(
                "reading the file took longer than {} s (ingest.extract_timeout_ms); it was stopped",
                sandbox.timeout.as_secs()
            )));
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
        return Err(ExtractError::Refused {
            kind: "too_large".into(),
            message: format!(
                "the file holds more than {} MiB of text; split it into smaller files",
                sandbox.max_output_bytes / (1024 * 1024)
            ),
        });
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
            Ok(Line::Document { kind: detected }) => kind = detected,
            Ok(Line::Page(page)) => pages.push(page),
            Ok(Line::Done {}) => done = true,
            Ok(Line::Error { kind, message }) => {
                return Err(ExtractError::Refused { kind, message })
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

/// Reads at most `cap` bytes; returns them and whether there was more.
async fn read_capped(
    mut reader: impl AsyncRead + Unpin,
    cap: usize,
) -> std::io::Result<(Vec<u8>, bool)> {
    let mut kept = Vec::new();
    let mut buffer = vec![0u8; 64 * 1024];
    loop {
        let n = reader.read(&mut buffer).await?;
        if n == 0 {
            return Ok((kept, false));
        }
        if kept.len() + n > cap {
            return Ok((kept, true));
        }
        kept.extend_from_slice(&buffer[..n]);
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
}
