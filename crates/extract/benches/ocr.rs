//! OCR quality benchmark: the character error rate of every raster page of the shared corpus
//! (`../shared/corpus`) and of the generated test pages (`tests/pages/`), read by the release
//! `engram-extract` and by the tesseract CLI on the raw page (`tesseract PAGE stdout`, `eng`,
//! default page segmentation, `OMP_THREAD_LIMIT=1`), side by side, page by page.
//!
//! ```text
//! cargo bench -p engram-extract --bench ocr
//! ```
//! The raw page of a scanned PDF is its embedded scan (`pdfimages -all`). CER = Levenshtein
//! distance / reference length, after folding whitespace runs to one space on both sides.
//! Fails (exit 1) unless every page reads within 0.5 percentage points of the CLI and the
//! overall CER is at most the CLI's. Results are recorded in `benches/RESULTS.md`.
#![allow(clippy::print_stdout)]

#[path = "../tests/common/mod.rs"]
mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::time::Instant;

use common::{cer_parts, corpus_dir, crate_dir, extract};

/// One raster page and its ground truth.
struct Page {
    /// The file engram reads.
    file: PathBuf,
    /// 1-based page in `file`.
    page: u64,
    truth: PathBuf,
    label: String,
}

/// The corpus's raster pages are those with ground truth: `<file>.txt`, or `<file>.pN.txt`
/// for a PDF's page N; the test pages likewise, `<file>.txt` beside each.
fn pages() -> Vec<Page> {
    let mut pages = Vec::new();
    for (dir, files) in [
        (corpus_dir().join("groundtruth"), corpus_dir().join("files")),
        (
            crate_dir().join("tests/pages"),
            crate_dir().join("tests/pages"),
        ),
    ] {
        let mut names: Vec<String> = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
            .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|name| name.ends_with(".txt"))
            .collect();
        names.sort();
        for name in names {
            let stem = name.strip_suffix(".txt").unwrap();
            let (file, page) = match stem.rsplit_once(".p") {
                Some((file, n)) if n.parse::<u64>().is_ok() => (file, n.parse().unwrap()),
                _ => (stem, 1),
            };
            pages.push(Page {
                file: files.join(file),
                page,
                truth: dir.join(&name),
                label: if page > 1 || stem != file {
                    format!("{file} p{page}")
                } else {
                    file.to_owned()
                },
            });
        }
    }
    pages
}

/// The raw page the CLI reads: the file itself, or a PDF page's embedded scan (the largest
/// image on the page).
fn raw_page(page: &Page, scratch: &Path) -> PathBuf {
    if page.file.extension().is_none_or(|e| e != "pdf") {
        return page.file.clone();
    }
    let prefix = scratch.join(format!("p{}", page.page));
    let n = page.page.to_string();
    let status = Command::new("pdfimages")
        .args(["-all", "-f", &n, "-l", &n])
        .arg(&page.file)
        .arg(&prefix)
        .status()
        .expect("pdfimages (poppler-utils)");
    assert!(status.success(), "pdfimages failed on {}", page.label);
    std::fs::read_dir(scratch)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            p.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with(&format!("p{}-", page.page))
        })
        .max_by_key(|p| std::fs::metadata(p).map(|m| m.len()).unwrap_or(0))
        .unwrap_or_else(|| panic!("no image on {}", page.label))
}

fn tesseract_cli(image: &Path) -> String {
    let output = Command::new("tesseract")
        .arg(image)
        .arg("stdout")
        .args(["-l", "eng"])
        .env("OMP_THREAD_LIMIT", "1")
        .output()
        .expect("tesseract (tesseract-ocr)");
    assert!(output.status.success(), "tesseract failed on {image:?}");
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// The passes `--ocr-report` listed for `page`, e.g. "cleaned, osd".
fn passes(stderr: &str, page: u64) -> String {
    let prefix = format!("ocr page {page}: ");
    stderr
        .lines()
        .filter_map(|l| l.strip_prefix(&prefix))
        .filter(|l| !l.starts_with("glyphs"))
        .map(|l| {
            let kind = if l.starts_with("Raw") {
                "raw"
            } else {
                "cleaned"
            };
            let osd = if l.contains("+osd") { "+osd" } else { "" };
            let conf = l
                .split_once("conf ")
                .and_then(|(_, rest)| rest.split(' ').next())
                .unwrap_or("?");
            format!("{kind}{osd} {conf}")
        })
        .collect::<Vec<_>>()
        .join(", ")
}

fn main() -> ExitCode {
    let scratch = tempfile::tempdir().unwrap();
    let (mut ours_total, mut cli_total, mut chars_total) = (0, 0, 0);
    let (mut ours_secs, mut cli_secs) = (0.0, 0.0);
    let mut worse = Vec::new();
    println!(
        "| page | tesseract CLI | engram | engram − CLI | passes (confidence) | CLI s | engram s |"
    );
    println!("|---|---|---|---|---|---|---|");
    for page in pages() {
        let reference = std::fs::read_to_string(&page.truth).unwrap();
        let raw = raw_page(&page, scratch.path());
        let started = Instant::now();
        let cli_text = tesseract_cli(&raw);
        let cli_time = started.elapsed().as_secs_f64();

        let mut args = vec!["--ocr-report".to_owned()];
        if page.file.extension().is_some_and(|e| e == "pdf") {
            args.extend(["--page".to_owned(), page.page.to_string()]);
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let run = extract(&page.file, &args);
        assert_eq!(run.status, Some(0), "{}: {}", page.label, run.stderr);
        let ours_text = run.page_text(page.page);

        let (cli_dist, len) = cer_parts(&cli_text, &reference);
        let (ours_dist, _) = cer_parts(&ours_text, &reference);
        let (cli, ours) = (cli_dist as f64 / len as f64, ours_dist as f64 / len as f64);
        let delta = 100.0 * (ours - cli);
        println!(
            "| {} | {:.2}% | {:.2}% | {}{:.2} | {} | {:.1} | {:.1} |",
            page.label,
            100.0 * cli,
            100.0 * ours,
            if delta >= 0.0 { "+" } else { "−" },
            delta.abs(),
            passes(&run.stderr, page.page),
            cli_time,
            run.elapsed.as_secs_f64()
        );
        if ours > cli + 0.005 {
            worse.push(page.label.clone());
        }
        ours_total += ours_dist;
        cli_total += cli_dist;
        chars_total += len;
        ours_secs += run.elapsed.as_secs_f64();
        cli_secs += cli_time;
    }
    let (cli, ours) = (
        cli_total as f64 / chars_total as f64,
        ours_total as f64 / chars_total as f64,
    );
    println!(
        "| **overall** ({chars_total} characters) | **{:.2}%** | **{:.2}%** | | | {cli_secs:.1} | {ours_secs:.1} |",
        100.0 * cli,
        100.0 * ours
    );
    let mut failed = false;
    if !worse.is_empty() {
        println!("\nmore than 0.5 points worse than the CLI: {worse:?}");
        failed = true;
    }
    if ours > cli {
        println!("\noverall CER above the CLI's");
        failed = true;
    }
    if failed {
        ExitCode::FAILURE
    } else {
        println!("\nevery page within 0.5 points of the CLI, overall at most the CLI's: met");
        ExitCode::SUCCESS
    }
}
