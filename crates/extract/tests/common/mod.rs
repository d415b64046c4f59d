//! Shared helpers for the integration tests: run the real `engram-extract` binary and parse
//! its JSON-lines output.

#![allow(dead_code)]

pub mod office;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;

/// This package's folder, read when the program runs (cargo sets it for tests and benches)
/// rather than baked in at compile time, so a build shared between checkouts never reads
/// another checkout's files.
#[allow(
    clippy::disallowed_methods,
    reason = "the test finds its fixtures from cargo's environment"
)]
pub fn crate_dir() -> PathBuf {
    PathBuf::from(
        std::env::var_os("CARGO_MANIFEST_DIR")
            .expect("run under cargo: CARGO_MANIFEST_DIR is not set"),
    )
}

/// The shared corpus (beside the repository clone in CI and on dev machines).
pub fn corpus_dir() -> PathBuf {
    crate_dir().join("../../../shared/corpus")
}

/// What one run of the extractor produced.
#[derive(Debug)]
pub struct Run {
    pub status: Option<i32>,
    pub lines: Vec<Value>,
    pub stderr: String,
    pub elapsed: Duration,
}

impl Run {
    pub fn document(&self) -> &Value {
        self.lines
            .iter()
            .find(|l| l["type"] == "document")
            .unwrap_or_else(|| panic!("no document line in {:?}", self.lines))
    }

    pub fn pages(&self) -> Vec<&Value> {
        self.lines.iter().filter(|l| l["type"] == "page").collect()
    }

    pub fn page_text(&self, page: u64) -> String {
        self.pages()
            .into_iter()
            .find(|p| p["page"] == page)
            .and_then(|p| p["text"].as_str())
            .unwrap_or_else(|| panic!("no page {page} in {:?}", self.lines))
            .to_owned()
    }

    pub fn last(&self) -> &Value {
        self.lines.last().expect("no output at all")
    }

    /// Assert a clean per-file failure: exit status 2 and a final `error` line of `kind`.
    /// Returns the message.
    pub fn expect_error(&self, kind: &str) -> String {
        assert_eq!(
            self.status,
            Some(2),
            "status; output: {:?} {}",
            self.lines,
            self.stderr
        );
        let last = self.last();
        assert_eq!(last["type"], "error", "last line: {last}");
        assert_eq!(last["kind"], kind, "kind; line: {last}");
        let message = last["message"].as_str().expect("message").to_owned();
        assert!(
            !message.is_empty() && message.len() < 300,
            "message: {message:?}"
        );
        assert!(
            !message.chars().any(|c| c.is_control() || c == '\u{fffd}'),
            "message has raw bytes: {message:?}"
        );
        message
    }

    /// Assert success: exit 0, `document` first, `done` last with consistent totals.
    pub fn expect_ok(&self) {
        assert_eq!(
            self.status,
            Some(0),
            "status; output: {:?} {}",
            self.lines,
            self.stderr
        );
        assert_eq!(self.lines[0]["type"], "document", "first line");
        let done = self.last();
        assert_eq!(done["type"], "done", "last line: {done}");
        let pages = self.pages();
        assert_eq!(done["pages"], pages.len() as u64);
        assert_eq!(self.document()["pages"], pages.len() as u64);
        for (i, p) in pages.iter().enumerate() {
            assert_eq!(p["page"], i as u64 + 1, "pages in order");
        }
        let chars: usize = pages
            .iter()
            .map(|p| p["text"].as_str().unwrap().chars().count())
            .sum();
        assert_eq!(done["chars"], chars as u64);
        let ocr = pages.iter().filter(|p| p["ocr"] == true).count();
        assert_eq!(done["ocr_pages"], ocr as u64);
    }
}

/// Run the extractor on `path` with extra `args`.
pub fn extract(path: &Path, args: &[&str]) -> Run {
    let start = Instant::now();
    let output = Command::new(env!("CARGO_BIN_EXE_engram-extract"))
        .args(args)
        .arg(path)
        .output()
        .expect("run engram-extract");
    let elapsed = start.elapsed();
    let stdout = String::from_utf8(output.stdout).expect("stdout is UTF-8");
    let lines = stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("bad JSON line {l:?}: {e}")))
        .collect();
    Run {
        status: output.status.code(),
        lines,
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        elapsed,
    }
}

/// Levenshtein distance over characters, O(min) memory.
pub fn levenshtein(a: &[char], b: &[char]) -> usize {
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    let mut cur = vec![0; b.len() + 1];
    for (i, ca) in a.iter().enumerate() {
        cur[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let cost = usize::from(ca != cb);
            cur[j + 1] = (prev[j] + cost).min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        std::mem::swap(&mut prev, &mut cur);
    }
    prev[b.len()]
}

/// Whitespace runs to single spaces, trimmed.
pub fn normalize_ws(s: &str) -> Vec<char> {
    s.split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .chars()
        .collect()
}

/// (edit distance, reference length) after whitespace normalisation.
pub fn cer_parts(hypothesis: &str, reference: &str) -> (usize, usize) {
    let h = normalize_ws(hypothesis);
    let r = normalize_ws(reference);
    (levenshtein(&h, &r), r.len())
}
