//! Local embedding model benchmark (`embeddings.local_model`, all-MiniLM-L6-v2 from
//! `scripts/model.sh`): the time to embed a 20-word question (p50/p90/p99 over 300, after a
//! warm-up), ingestion's throughput in chunk-sized batches, the RSS of an idle
//! `engram serve --roles chat` with and without the model loaded, and the corpus ingested with
//! and without the model by the `engram` beside this benchmark (wall time, peak RSS of the
//! `engram` process alone).
//!
//! ```text
//! cargo build --workspace && cargo bench --profile dev --bench local_model -- "$(scripts/model.sh)" [--query-only]
//! ```
//! (or a release build and plain `cargo bench`). In the dev profile the model's crates (candle,
//! gemm, tokenizers) are optimised anyway (Cargo.toml); engram's own code is not. Results:
//! `benches/RESULTS.md`.
#![allow(clippy::print_stdout)]

#[allow(dead_code)]
mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use engram::config::{EmbeddingsConfig, Secret};
use engram::llm::Embedder;

/// 20-word questions, asked in turn.
const QUESTIONS: [&str; 4] = [
    "How many days of paid vacation does a new employee get in the first year and how are they requested?",
    "What should I do when my laptop is stolen on a business trip and it held customer data on it?",
    "Who approves a hardware purchase above the yearly limit and how long does the finance team usually take?",
    "Can I get my money back for a taxi ride to the airport if I lost the paper receipt?",
];

/// The binary of the profile this benchmark was built with.
fn sibling_binary(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("own path");
    let path = exe
        .parent()
        .and_then(Path::parent)
        .expect("target/<profile>/deps/…")
        .join(name);
    assert!(
        path.is_file(),
        "{} is missing: run `cargo build --workspace` (same profile) first",
        path.display()
    );
    path
}

fn status_kib(pid: u32, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|status| {
            status.lines().find_map(|line| {
                line.strip_prefix(field)
                    .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            })
        })
        .unwrap_or(0)
}

fn mib(kib: u64) -> String {
    format!("{:.1} MiB", kib as f64 / 1024.0)
}

fn ms(duration: Duration) -> String {
    format!("{:.1} ms", duration.as_secs_f64() * 1000.0)
}

#[allow(
    clippy::disallowed_methods,
    reason = "benchmarks are configured by the environment, as the tests are"
)]
fn main() {
    let model = std::env::args()
        .skip(1)
        .find(|arg| !arg.starts_with("--"))
        .or_else(|| std::env::var("ENGRAM_TEST_MODEL_DIR").ok())
        .expect("the model directory: cargo bench --bench local_model -- \"$(scripts/model.sh)\"");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(embedding(&model));
    if std::env::args().any(|arg| arg == "--query-only") {
        return;
    }
    chat_rss(&model);
    ingest(&model);
}

async fn embedding(model: &str) {
    let embedder = Embedder::from_config(&EmbeddingsConfig {
        base_url: String::new(),
        api_key: Secret::new(""),
        model: String::new(),
        dimensions: 1,
        local_model: model.to_string(),
    })
    .unwrap()
    .unwrap();
    let started = Instant::now();
    embedder.embed_question("warm up").await.unwrap();
    let load = started.elapsed();
    for question in QUESTIONS {
        embedder.embed_question(question).await.unwrap();
    }
    let mut times = Vec::new();
    for n in 0..300 {
        let started = Instant::now();
        embedder
            .embed_question(QUESTIONS[n % QUESTIONS.len()])
            .await
            .unwrap();
        times.push(started.elapsed());
    }
    times.sort();
    println!(
        "Query embedding, a 20-word question, one at a time, 300 runs (first load: {}):\n",
        ms(load)
    );
    println!("| p50 | p90 | p99 | max |");
    println!("|---|---|---|---|");
    println!(
        "| {} | {} | {} | {} |",
        ms(support::percentile(&times, 0.5)),
        ms(support::percentile(&times, 0.9)),
        ms(support::percentile(&times, 0.99)),
        ms(*times.last().unwrap())
    );

    // Ingestion's shape: chunks of about 200 words, 16 per forward pass.
    let chunk = QUESTIONS.join(" ").repeat(3);
    let words = chunk.split_whitespace().count();
    let texts: Vec<String> = (0..64).map(|n| format!("{n} {chunk}")).collect();
    let started = Instant::now();
    embedder.embed(&texts).await.unwrap();
    let took = started.elapsed();
    println!(
        "\nIngestion: 64 chunks of {words} words (cut at 256 tokens) in {:.2} s: {:.1} chunks/s\n",
        took.as_secs_f64(),
        64.0 / took.as_secs_f64()
    );
}

/// An idle `engram serve --roles chat`: RSS once it has started (and, with the model, once the
/// model has loaded), then after 5 s more of idling.
fn chat_rss(model: &str) {
    let engram = sibling_binary("engram");
    println!("| chat process, idle | RSS at ready | RSS after 5 s more | peak (VmHWM) |");
    println!("|---|---|---|---|");
    for with_model in [false, true] {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("engram.toml");
        let embeddings = if with_model {
            format!("[embeddings]\nlocal_model = \"{model}\"\n")
        } else {
            String::new()
        };
        std::fs::write(
            &config,
            format!(
                "[store]\nurl = \"sqlite://{}/engram.db\"\n[http]\nlisten = \"127.0.0.1:0\"\n{embeddings}",
                dir.path().display()
            ),
        )
        .unwrap();
        let mut child = Command::new(&engram)
            .arg("--config")
            .arg(&config)
            .args(["serve", "--roles", "chat"])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let pid = child.id();
        // Ready: the log line that the model loaded (with the model), or the role started.
        let wanted = if with_model {
            "local embedding model loaded"
        } else {
            "engram is running"
        };
        let stderr = child.stderr.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            use std::io::BufRead as _;
            let mut tx = Some(tx);
            for line in std::io::BufReader::new(stderr)
                .lines()
                .map_while(Result::ok)
            {
                if line.contains(wanted) {
                    if let Some(tx) = tx.take() {
                        let _ = tx.send(());
                    }
                }
            }
        });
        let ready = rx.recv_timeout(Duration::from_secs(60)).is_ok();
        let at_ready = status_kib(pid, "VmRSS:");
        std::thread::sleep(Duration::from_secs(5));
        let idle = status_kib(pid, "VmRSS:");
        let peak = status_kib(pid, "VmHWM:");
        let _ = Command::new("kill").arg(pid.to_string()).status();
        let _ = child.wait();
        println!(
            "| {}{} | {} | {} | {} |",
            if with_model {
                "with the local model"
            } else {
                "keyword only"
            },
            if ready { "" } else { " (never said ready)" },
            mib(at_ready),
            mib(idle),
            mib(peak)
        );
    }
    println!();
}

/// The shared corpus ingested by `engram ingest` (2 workers), without and with the model.
fn ingest(model: &str) {
    let engram = sibling_binary("engram");
    let extractor = sibling_binary("engram-extract");
    let files = support::crate_dir().join("../shared/corpus/files");
    println!("| corpus ingest (2 workers) | wall | peak RSS of `engram` (VmHWM) | chunks |");
    println!("|---|---|---|---|");
    for with_model in [false, true] {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("engram.toml");
        let embeddings = if with_model {
            format!("[embeddings]\nlocal_model = \"{model}\"\n")
        } else {
            String::new()
        };
        std::fs::write(
            &config,
            format!(
                "[store]\nurl = \"sqlite://{}/engram.db\"\n[ingest]\nworkers = 2\nextractor = \"{}\"\n{embeddings}",
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
                .output()
                .unwrap()
        };
        assert!(run(&["brain", "create", "corpus"]).status.success());
        let started = Instant::now();
        let child = Command::new(&engram)
            .arg("--config")
            .arg(&config)
            .args(["ingest", "--json", "corpus"])
            .arg(&files)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let pid = child.id();
        let peak = Arc::new(AtomicU64::new(0));
        let done = Arc::new(AtomicBool::new(false));
        let sampler = {
            let (peak, done) = (peak.clone(), done.clone());
            std::thread::spawn(move || {
                while !done.load(Ordering::Relaxed) {
                    peak.fetch_max(status_kib(pid, "VmHWM:"), Ordering::Relaxed);
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
        let chunks: u64 = String::from_utf8_lossy(&output.stdout)
            .lines()
            .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
            .filter_map(|result| result["chunks"].as_u64())
            .sum();
        println!(
            "| {} | {:.2} s | {} | {chunks} |",
            if with_model {
                "with the local model"
            } else {
                "keyword only"
            },
            wall.as_secs_f64(),
            mib(peak.load(Ordering::Relaxed))
        );
    }
}
