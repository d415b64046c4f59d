//! Corpus ingestion benchmark: the release `engram ingest` on every file of the shared corpus
//! with 2 ingest workers, keyword-only — or, with `--local-model DIR`, embedding every chunk
//! with that local model. Reports wall time, CPU time (engram and its extractor children),
//! peak RSS of all engram processes together and of the `engram` process alone (sampled from
//! /proc every 5 ms), chunks, and the OCR character error rate of every scanned page against
//! the ground truth.
//!
//! ```text
//! cargo build --release --workspace && cargo bench --bench ingest [-- --local-model "$(scripts/model.sh)"]
//! ```
//! Results are recorded in `benches/RESULTS.md`.
#![allow(clippy::print_stdout)]

#[allow(dead_code)] // `brain_knowing` is for the answer benchmarks.
mod support;

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

fn corpus() -> PathBuf {
    support::crate_dir().join("../shared/corpus")
}

/// Resident set size of `pid` and all its descendants, in KiB.
fn tree_rss_kib(root: u32) -> u64 {
    let mut parents: HashMap<u32, u32> = HashMap::new();
    let mut rss: HashMap<u32, u64> = HashMap::new();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return 0;
    };
    for entry in entries.flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(status) = std::fs::read_to_string(format!("/proc/{pid}/status")) else {
            continue;
        };
        for line in status.lines() {
            if let Some(value) = line.strip_prefix("PPid:") {
                parents.insert(pid, value.trim().parse().unwrap_or(0));
            } else if let Some(value) = line.strip_prefix("VmRSS:") {
                let kib = value
                    .trim()
                    .trim_end_matches("kB")
                    .trim()
                    .parse()
                    .unwrap_or(0);
                rss.insert(pid, kib);
            }
        }
    }
    let in_tree = |mut pid: u32| {
        for _ in 0..64 {
            if pid == root {
                return true;
            }
            match parents.get(&pid) {
                Some(&parent) if parent != 0 => pid = parent,
                _ => return false,
            }
        }
        false
    };
    rss.iter()
        .filter(|(pid, _)| in_tree(**pid))
        .map(|(_, kib)| kib)
        .sum()
}

/// Peak resident set size (VmHWM) of `root`'s child process (the `engram` that GNU time runs),
/// in KiB; 0 before it exists.
fn child_peak_kib(root: u32) -> u64 {
    let Ok(children) = std::fs::read_to_string(format!("/proc/{root}/task/{root}/children")) else {
        return 0;
    };
    children
        .split_whitespace()
        .filter_map(|pid| std::fs::read_to_string(format!("/proc/{pid}/status")).ok())
        .filter_map(|status| {
            status.lines().find_map(|line| {
                line.strip_prefix("VmHWM:")
                    .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            })
        })
        .max()
        .unwrap_or(0)
}

fn levenshtein(a: &[char], b: &[char]) -> usize {
    let mut previous: Vec<usize> = (0..=b.len()).collect();
    let mut current = vec![0; b.len() + 1];
    for (i, ca) in a.iter().enumerate() {
        current[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let substitution = previous[j] + usize::from(ca != cb);
            current[j + 1] = substitution.min(previous[j + 1] + 1).min(current[j] + 1);
        }
        std::mem::swap(&mut previous, &mut current);
    }
    previous[b.len()]
}

fn normalise(text: &str) -> Vec<char> {
    text.split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .chars()
        .collect()
}

fn main() {
    let engram = support::release_binary("engram");
    let extractor = support::release_binary("engram-extract");
    let args: Vec<String> = std::env::args().collect();
    let local_model = args
        .iter()
        .position(|arg| arg == "--local-model")
        .and_then(|i| args.get(i + 1))
        .cloned();
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("engram.toml");
    let embeddings = local_model
        .as_ref()
        .map(|model| format!("[embeddings]\nlocal_model = \"{model}\"\n"))
        .unwrap_or_default();
    std::fs::write(
        &config,
        format!(
            "[store]\nurl = \"sqlite://{}/bench.db\"\n[ingest]\nworkers = 2\nextractor = \"{}\"\n{embeddings}",
            dir.path().display(),
            extractor.display()
        ),
    )
    .unwrap();
    let run = |args: &[&str]| {
        Command::new(&engram)
            .arg("--config")
            .arg(&config)
            .args(args)
            .current_dir(dir.path())
            .output()
            .unwrap()
    };
    assert!(run(&["brain", "create", "corpus"]).status.success());

    let files = corpus().join("files");
    let started = Instant::now();
    let child = Command::new("/usr/bin/time")
        .args(["-f", "cpu %U %S"])
        .arg(&engram)
        .arg("--config")
        .arg(&config)
        .args(["ingest", "--json", "corpus"])
        .arg(&files)
        .current_dir(dir.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("GNU time (apt-get install time) and the release build");
    let root = child.id();
    let peak = Arc::new(AtomicU64::new(0));
    let engram_peak = Arc::new(AtomicU64::new(0));
    let done = Arc::new(AtomicBool::new(false));
    let sampler = {
        let (peak, engram_peak, done) = (peak.clone(), engram_peak.clone(), done.clone());
        std::thread::spawn(move || {
            while !done.load(Ordering::Relaxed) {
                peak.fetch_max(tree_rss_kib(root), Ordering::Relaxed);
                engram_peak.fetch_max(child_peak_kib(root), Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(5));
            }
        })
    };
    let output = child.wait_with_output().unwrap();
    let wall = started.elapsed();
    done.store(true, Ordering::Relaxed);
    sampler.join().unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );

    let stderr = String::from_utf8_lossy(&output.stderr);
    let cpu: f64 = stderr
        .lines()
        .find_map(|line| line.strip_prefix("cpu "))
        .map(|times| times.split(' ').filter_map(|t| t.parse::<f64>().ok()).sum())
        .unwrap_or(f64::NAN);
    let mut chunks = 0;
    let mut ingested = 0;
    for line in String::from_utf8_lossy(&output.stdout).lines() {
        let result: serde_json::Value = serde_json::from_str(line).unwrap();
        ingested += usize::from(result["status"] == "ingested");
        chunks += result["chunks"].as_u64().unwrap_or(0);
    }

    println!(
        "embeddings: {}\n",
        local_model
            .as_deref()
            .map_or("none (keyword only)".to_string(), |model| format!(
                "local model {model}"
            ))
    );
    println!("| figure | engram |");
    println!("|---|---|");
    println!("| files ingested | {ingested} |");
    println!("| wall time | {:.2} s |", wall.as_secs_f64());
    println!("| CPU time (user + system, incl. extractor children) | {cpu:.2} s |");
    println!(
        "| peak RSS, all engram processes together | {:.1} MiB |",
        peak.load(Ordering::Relaxed) as f64 / 1024.0
    );
    println!(
        "| peak RSS of the `engram` process alone (VmHWM) | {:.1} MiB |",
        engram_peak.load(Ordering::Relaxed) as f64 / 1024.0
    );
    println!("| chunks | {chunks} |");

    // OCR quality: what the extractor reads from each scanned page.
    let truth = corpus().join("groundtruth");
    let mut total_errors = 0;
    let mut total_chars = 0;
    println!("\n| scanned page | CER |");
    println!("|---|---|");
    for (file, pages) in [
        ("05_scanned_gpl2.pdf", 2u32),
        ("06_scan_gpl3_p1.png", 1),
        ("07_scan_gpl3_p2.png", 1),
        ("08_scan_gpl3_p3.png", 1),
    ] {
        let output = run(&["extract", "--json", files.join(file).to_str().unwrap()]);
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        let texts: Vec<String> = String::from_utf8_lossy(&output.stdout)
            .lines()
            .map(|line| {
                let page: serde_json::Value = serde_json::from_str(line).unwrap();
                page["text"].as_str().unwrap_or_default().to_string()
            })
            .collect();
        for page in 1..=pages {
            let reference_name = if pages > 1 {
                format!("{file}.p{page}.txt")
            } else {
                format!("{file}.txt")
            };
            let reference =
                normalise(&std::fs::read_to_string(truth.join(&reference_name)).unwrap());
            let read = normalise(&texts[page as usize - 1]);
            let errors = levenshtein(&read, &reference);
            total_errors += errors;
            total_chars += reference.len();
            println!(
                "| {reference_name} | {:.2}% |",
                100.0 * errors as f64 / reference.len() as f64
            );
        }
    }
    println!(
        "| overall | {:.2}% |",
        100.0 * total_errors as f64 / total_chars as f64
    );
}
