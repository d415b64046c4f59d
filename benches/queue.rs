//! Job-queue benchmark: throughput of 8 workers draining no-op jobs, and enqueue-to-claim
//! latency with idle workers, on SQLite and on PostgreSQL.
//!
//! ```text
//! ENGRAM_TEST_POSTGRES_URL=$(scripts/postgres.sh) cargo bench --bench queue
//! cargo bench --bench queue -- --store sqlite --jobs 20000 --samples 2000
//! ```
//! PostgreSQL runs in a fresh database created (and dropped) on the server named by
//! `ENGRAM_TEST_POSTGRES_URL`. Results are recorded in `benches/RESULTS.md`.
#![allow(clippy::print_stdout)]

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use engram::config::{StoreConfig, StoreUrl};
use engram::jobs::{Job, JobKind, JobState, NewJob, RetryPolicy};
use engram::store::{self, Store};
use engram::telemetry::Metrics;
use engram::worker::{self, JobFailure, JobHandler, Shutdown, WorkerOptions};
use serde_json::json;
use sqlx::Connection as _;
use tokio::sync::mpsc;

const WORKERS: usize = 8;

struct Args {
    stores: Vec<String>,
    jobs: usize,
    samples: usize,
}

fn parse_args() -> Args {
    let mut args = Args {
        stores: vec!["sqlite".into(), "postgres".into()],
        jobs: 10_000,
        samples: 1_000,
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--store" => args.stores = vec![it.next().expect("--store sqlite|postgres")],
            "--jobs" => args.jobs = it.next().and_then(|n| n.parse().ok()).expect("--jobs N"),
            "--samples" => {
                args.samples = it.next().and_then(|n| n.parse().ok()).expect("--samples N")
            }
            // cargo bench passes --bench; ignore anything else it adds.
            _ => {}
        }
    }
    args
}

/// Counts runs and reports each job's sequence number the moment a worker starts it.
struct Probe {
    runs: AtomicUsize,
    started: mpsc::UnboundedSender<(u64, Instant)>,
}

#[async_trait]
impl JobHandler for Probe {
    async fn run(&self, job: &Job) -> Result<(), JobFailure> {
        let now = Instant::now();
        self.runs.fetch_add(1, Ordering::Relaxed);
        if let Some(seq) = job.payload["seq"].as_u64() {
            let _ = self.started.send((seq, now));
        }
        Ok(())
    }
}

fn options() -> WorkerOptions {
    WorkerOptions {
        kind: JobKind::Ingest,
        concurrency: 1,
        lease: Duration::from_secs(30),
        retry: RetryPolicy {
            base: Duration::from_secs(1),
            max: Duration::from_secs(60),
        },
        name: "bench".into(),
        idle_recheck: Duration::from_secs(60),
    }
}

fn start_workers(
    store: &Arc<dyn Store>,
    probe: Arc<Probe>,
) -> (Shutdown, Vec<tokio::task::JoinHandle<()>>) {
    let shutdown = Shutdown::default();
    let tasks = (0..WORKERS)
        .map(|w| {
            let mut opts = options();
            opts.name = format!("bench{w}");
            tokio::spawn(worker::run(
                store.clone(),
                probe.clone(),
                opts,
                shutdown.clone(),
                Arc::new(Metrics::default()),
            ))
        })
        .collect();
    (shutdown, tasks)
}

async fn stop(shutdown: Shutdown, tasks: Vec<tokio::task::JoinHandle<()>>) {
    shutdown.stop_claiming.cancel();
    shutdown.abandon.cancel();
    for task in tasks {
        let _ = task.await;
    }
}

async fn done_count(store: &Arc<dyn Store>) -> u64 {
    store
        .queue_depths()
        .await
        .unwrap()
        .iter()
        .filter(|d| d.state == JobState::Done)
        .map(|d| d.count)
        .sum()
}

/// Pre-fills the queue, then lets 8 workers drain it. Returns (enqueue/s, jobs/s).
async fn throughput(store: &Arc<dyn Store>, jobs: usize) -> (f64, f64) {
    let started = Instant::now();
    for n in 0..jobs {
        store
            .enqueue(&NewJob::new(JobKind::Ingest, json!({ "n": n }), 3))
            .await
            .unwrap();
    }
    let enqueue_rate = jobs as f64 / started.elapsed().as_secs_f64();

    let (tx, _rx) = mpsc::unbounded_channel();
    let probe = Arc::new(Probe {
        runs: AtomicUsize::new(0),
        started: tx,
    });
    let started = Instant::now();
    let (shutdown, tasks) = start_workers(store, probe.clone());
    while done_count(store).await < jobs as u64 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let elapsed = started.elapsed();
    stop(shutdown, tasks).await;
    assert_eq!(
        probe.runs.load(Ordering::Relaxed),
        jobs,
        "every job ran once"
    );
    (enqueue_rate, jobs as f64 / elapsed.as_secs_f64())
}

/// With 8 idle workers, enqueues one job at a time and measures until a worker starts it.
async fn latency(store: &Arc<dyn Store>, samples: usize) -> Vec<Duration> {
    let (tx, mut rx) = mpsc::unbounded_channel();
    let probe = Arc::new(Probe {
        runs: AtomicUsize::new(0),
        started: tx,
    });
    let (shutdown, tasks) = start_workers(store, probe);
    // Let every worker reach its idle wait (and PostgreSQL's LISTEN take effect).
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut latencies = Vec::with_capacity(samples);
    for seq in 0..samples as u64 {
        let before = Instant::now();
        store
            .enqueue(&NewJob::new(JobKind::Ingest, json!({ "seq": seq }), 3))
            .await
            .unwrap();
        let (got, at) = tokio::time::timeout(Duration::from_secs(30), rx.recv())
            .await
            .expect("a worker picked the job up")
            .unwrap();
        assert_eq!(got, seq);
        latencies.push(at - before);
        // Let the worker finish and go idle again before the next sample.
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    stop(shutdown, tasks).await;
    latencies.sort();
    latencies
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index]
}

async fn bench(label: &str, store: Arc<dyn Store>, args: &Args) {
    let (enqueue_rate, rate) = throughput(&store, args.jobs).await;
    let latencies = latency(&store, args.samples).await;
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!(
        "| {label} | {} | {enqueue_rate:.0} | {rate:.0} | {:.2} | {:.2} | {:.2} |",
        args.jobs,
        ms(percentile(&latencies, 0.50)),
        ms(percentile(&latencies, 0.99)),
        ms(*latencies.last().unwrap()),
    );
}

fn store_config(url: &str) -> StoreConfig {
    StoreConfig {
        url: StoreUrl::new(url),
        max_connections: 16,
        busy_timeout_ms: 5000,
    }
}

#[allow(
    clippy::disallowed_methods,
    reason = "benchmarks are configured by the environment, as the tests are"
)]
fn main() {
    let args = parse_args();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        println!(
            "| store | jobs | enqueue/s (1 client) | drain jobs/s ({WORKERS} workers) | \
             enqueue→claim p50 ms | p99 ms | max ms |"
        );
        println!("|---|---|---|---|---|---|---|");
        for kind in &args.stores {
            match kind.as_str() {
                "sqlite" => {
                    let dir = tempfile::tempdir().unwrap();
                    let url = format!("sqlite://{}/bench.db", dir.path().display());
                    let store = store::open(&store_config(&url)).await.unwrap();
                    bench("SQLite", store, &args).await;
                }
                "postgres" => {
                    let admin = std::env::var("ENGRAM_TEST_POSTGRES_URL").expect(
                        "set ENGRAM_TEST_POSTGRES_URL (scripts/postgres.sh prints one), \
                         or pass --store sqlite",
                    );
                    let name = format!("engram_bench_{}", std::process::id());
                    let mut admin_conn = sqlx::PgConnection::connect(&admin).await.unwrap();
                    sqlx::query(&format!("CREATE DATABASE {name}"))
                        .execute(&mut admin_conn)
                        .await
                        .unwrap();
                    let base = admin.rsplit_once('/').unwrap().0;
                    let store = store::open(&store_config(&format!("{base}/{name}")))
                        .await
                        .unwrap();
                    bench("PostgreSQL", store.clone(), &args).await;
                    store.close().await;
                    drop(store);
                    sqlx::query(&format!("DROP DATABASE {name} WITH (FORCE)"))
                        .execute(&mut admin_conn)
                        .await
                        .unwrap();
                }
                other => panic!("unknown store `{other}` (sqlite or postgres)"),
            }
        }
    });
}
