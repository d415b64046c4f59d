//! The 1,000-answer benchmark: the failure engram exists to avoid. engram's chat, ingest and
//! API roles run in this process (`app::start`, the code `engram serve` runs) on a SQLite
//! store. 1,000 questions arrive over 4 s, each in its own channel, through the gateway path
//! (`gateway::ask`: placeholder, then an `answer` job). A fake OpenAI-compatible server
//! in a child process streams every answer for about 12 s (first token after 300 ms, then 20
//! tokens/s). A fake platform in this process enforces Discord-like per-channel limits (5
//! writes per 5 s) with 30 ms per call. Meanwhile `/healthz` is polled every 10 ms and one
//! OCR ingest job runs (compared with the same job on an idle process).
//!
//! Budgets and metrics are on: every answer reserves and settles its cost against a tenant and
//! a brain cap (set high enough never to be reached) and is counted in `/metrics` with
//! per-brain labels. `ENGRAM_BENCH_LOCAL_MODEL=DIR` embeds with the local model.
//! `ENGRAM_BENCH_HTTP_LISTEN=127.0.0.1:PORT` fixes the API's address and
//! `ENGRAM_BENCH_HOLD_SECS=N` keeps it serving N s after the answers, for a Prometheus to
//! scrape (deploy/grafana/README.md).
//!
//! Reports: `/healthz` latency, ingest duration idle vs loaded, this process's RSS idle and
//! with 1,000 answers in flight, question-to-first-edit overhead beyond the LLM's first token,
//! 429s caused, edit spacing, and whether every answer arrived complete.
//!
//! ```text
//! cargo build --release --workspace && cargo bench --bench answers
//! ```
//! Results are recorded in `benches/RESULTS.md`.
#![allow(clippy::print_stdout)]

#[allow(dead_code)] // each benchmark uses some of the helpers.
mod support;

use std::collections::{HashMap, VecDeque};
use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use engram::app::{self, Role};
use engram::brain::{BrainName, TenantKey};
use engram::chat::budget::RateBudget;
use engram::chat::service::{Outlet, Outlets, THINKING};
use engram::chat::{ChannelKey, ChatPlatform, MessageRef, PlatformError};
use engram::config::{Config, StoreUrl};
use engram::gateway::{ask, NewQuestion};
use engram::index::EmbeddedIndex;
use engram::ingest::{self, Submitted};
use engram::jobs::{JobId, JobState};
use engram::render::Limits;
use engram::store::{self, Store};
use tokio::time::Instant;

const QUESTIONS: usize = 1000;
const TENANTS: usize = 100;
const RAMP: Duration = Duration::from_secs(4);
const FIRST_TOKEN: Duration = Duration::from_millis(300);
const TOKEN_INTERVAL: Duration = Duration::from_millis(50);
const TOKENS: usize = 240;
const EDIT_INTERVAL_MS: u64 = 1000;
/// Discord: about 5 message writes per 5 s per channel.
const CHANNEL_WRITES: usize = 5;
const CHANNEL_WINDOW: Duration = Duration::from_secs(5);
const PLATFORM_LATENCY: Duration = Duration::from_millis(30);
const FAKE_LLM_ENV: &str = "ENGRAM_BENCH_FAKE_LLM";

const HANDBOOK: &str = "Vacation requests go through the HR portal at least two weeks \
                        ahead. Your manager approves them within three working days.";

/// The answer every question gets: TOKENS words, the last citing the source.
fn reply_tokens() -> Vec<String> {
    let words = [
        "Vacation", "requests", "go", "through", "the", "HR", "portal", "and", "need", "two",
        "weeks", "notice", "before", "your", "manager", "approves", "them",
    ];
    let mut tokens: Vec<String> = (0..TOKENS - 1)
        .map(|i| format!("{} ", words[i % words.len()]))
        .collect();
    tokens.push("[1].".into());
    tokens
}

#[allow(
    clippy::disallowed_methods,
    reason = "benchmarks are configured by the environment, as the tests are"
)]
fn main() {
    if std::env::var_os(FAKE_LLM_ENV).is_some() {
        fake_llm();
        return;
    }
    // The ingest role's "document indexed" lines (with their stage/extract and index times)
    // on stderr, to see where a slower loaded ingest job spends it.
    tracing_subscriber::fmt()
        .with_env_filter("engram::ingest=info")
        .with_writer(std::io::stderr)
        .init();
    let (mut llm_child, llm_addr) = spawn_fake_llm();
    let llm_pid = llm_child.id();
    let result = std::panic::catch_unwind(|| run(llm_addr, llm_pid));
    let _ = llm_child.kill();
    let _ = llm_child.wait();
    if let Err(panic) = result {
        std::panic::resume_unwind(panic);
    }
}

/// CPU time (user + system) a process has used so far, from /proc/PID/stat.
fn cpu_seconds(pid: &str) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name (which is in parentheses and may hold spaces).
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest.split_whitespace().collect())
        .unwrap_or_default();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    // utime and stime are fields 14 and 15 of stat, 12 and 13 after the name; 100 ticks/s.
    (ticks(11) + ticks(12)) / 100.0
}

#[allow(
    clippy::disallowed_methods,
    reason = "benchmarks are configured by the environment, as the tests are"
)]
fn run(llm_addr: SocketAddr, llm_pid: u32) {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut config = Config::defaults();
    config.store.url = StoreUrl::new(format!("sqlite://{}/bench.db", dir.path().display()));
    config.llm.base_url = format!("http://{llm_addr}/v1");
    config.llm.model = "bench-model".into();
    config.llm.prices.push(engram::config::Price {
        model: "bench-model".into(),
        prompt_usd_per_mtok: 0.15,
        completion_usd_per_mtok: 0.60,
    });
    config.chat.max_concurrent_answers = QUESTIONS as u32;
    config.chat.max_waiting_answers = 100;
    config.chat.edit_interval_ms = EDIT_INTERVAL_MS;
    config.chat.user_questions_per_minute = 0;
    config.http.listen = std::env::var("ENGRAM_BENCH_HTTP_LISTEN")
        .unwrap_or_else(|_| "127.0.0.1:0".into())
        .parse()
        .expect("ENGRAM_BENCH_HTTP_LISTEN is an address");
    // `ENGRAM_BENCH_NO_BUDGETS=1`: the same run without caps (nothing reserved), to compare.
    if std::env::var_os("ENGRAM_BENCH_NO_BUDGETS").is_none() {
        config.budgets.monthly_usd_per_tenant = 1000.0;
        config.budgets.monthly_usd_per_brain = 500.0;
    }
    // `ENGRAM_BENCH_LOCAL_MODEL=DIR`: questions embedded by the local model (hybrid retrieval),
    // for the chat process's memory with the model loaded and 1,000 answers in flight.
    if let Some(model) = std::env::var_os("ENGRAM_BENCH_LOCAL_MODEL") {
        config.embeddings.local_model = model.to_string_lossy().into_owned();
    }
    config.metrics.per_brain_labels = true;
    config.ingest.workers = 1;
    config.ingest.extractor = support::release_binary("engram-extract")
        .display()
        .to_string();

    let setup = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let brains = setup.block_on(prepare(&config));
    drop(setup);

    let platform = Arc::new(FakePlatform::default());
    let outlet = Outlet {
        platform: platform.clone(),
        budget: Arc::new(RateBudget::new(CHANNEL_WRITES as u32, CHANNEL_WINDOW)),
    };
    let mut outlets = Outlets::default();
    outlets.insert("discord", outlet.clone());
    let engram = app::start(&config, &[Role::Chat, Role::Ingest, Role::Api], outlets)
        .expect("engram starts");
    let api = engram.api_addr().expect("the API role listens");
    let store = engram.store();
    // The benchmark's own "gateway" and bookkeeping run here, off engram's runtimes.
    let gateway = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();

    std::thread::sleep(Duration::from_secs(2));
    let idle_rss = rss_kib();
    let scan =
        std::fs::read(support::crate_dir().join("demo/oncall-scan.png")).expect("the demo scan");
    let idle_ingest = gateway.block_on(ingest_runs(&store, &config, &brains.idle, &scan));
    std::thread::sleep(Duration::from_secs(1));
    let idle_rss_after_ingest = rss_kib();

    // Probes for the whole loaded phase.
    let stop = Arc::new(AtomicBool::new(false));
    let health = support::spawn_health_poller(api, stop.clone());
    let peak_rss = Arc::new(AtomicU64::new(0));
    let peak_rss_all_in_flight = Arc::new(AtomicU64::new(0));
    let max_in_flight = Arc::new(AtomicUsize::new(0));
    let sampler = {
        let (stop, platform) = (stop.clone(), platform.clone());
        let (peak, peak_full, max_in_flight) = (
            peak_rss.clone(),
            peak_rss_all_in_flight.clone(),
            max_in_flight.clone(),
        );
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                let rss = rss_kib();
                let in_flight = platform.in_flight();
                peak.fetch_max(rss, Ordering::Relaxed);
                max_in_flight.fetch_max(in_flight, Ordering::Relaxed);
                if in_flight >= QUESTIONS {
                    peak_full.fetch_max(rss, Ordering::Relaxed);
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        })
    };

    let load_started = std::time::Instant::now();
    let cpu_at_start = (cpu_seconds("self"), cpu_seconds(&llm_pid.to_string()));
    let asked: Vec<(JobId, String, Instant)> = gateway.block_on(async {
        let mut tasks = Vec::new();
        for n in 0..QUESTIONS {
            let at = RAMP * n as u32 / QUESTIONS as u32;
            let (store, outlet, brains) = (store.clone(), outlet.clone(), brains.tenants.clone());
            tasks.push(tokio::spawn(async move {
                tokio::time::sleep(at).await;
                let (tenant, brain) = brains[n % TENANTS];
                let channel = ChannelKey(format!("discord:channel-{n}"));
                let question = NewQuestion {
                    bound_channel: None,
                    platform: "discord".into(),
                    tenant,
                    brain,
                    channel: channel.clone(),
                    reply_to: Some(MessageRef {
                        channel,
                        id: format!("question-{n}"),
                    }),
                    conversation: None,
                    user: format!("user-{n}"),
                    text: "How do I request vacation?".into(),
                    attachments: Vec::new(),
                };
                let asked = ask(store.as_ref(), &outlet, question, 3)
                    .await
                    .expect("question queued");
                (
                    asked.job,
                    asked.placeholder.expect("a placeholder").id,
                    Instant::now(),
                )
            }));
        }
        let mut asked = Vec::new();
        for task in tasks {
            asked.push(task.await.unwrap());
        }
        asked
    });
    // All questions are in; the ingest job runs while every answer streams.
    let loaded_ingest = gateway.block_on(ingest_runs(&store, &config, &brains.loaded, &scan));
    let all_done = gateway.block_on(async {
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            if platform.finished() >= QUESTIONS {
                return true;
            }
            if Instant::now() > deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    });
    let load_seconds = load_started.elapsed().as_secs_f64();
    let cpu_engram = cpu_seconds("self") - cpu_at_start.0;
    let cpu_llm = cpu_seconds(&llm_pid.to_string()) - cpu_at_start.1;
    stop.store(true, Ordering::Relaxed);
    let health = health.join().unwrap();
    sampler.join().unwrap();
    let answer_states = gateway.block_on(async {
        let mut states: HashMap<JobState, usize> = HashMap::new();
        for (job, _, _) in &asked {
            let state = store.job(*job).await.unwrap().unwrap().state;
            *states.entry(state).or_default() += 1;
        }
        states
    });
    if let Some(hold) = std::env::var("ENGRAM_BENCH_HOLD_SECS")
        .ok()
        .and_then(|secs| secs.parse().ok())
    {
        println!("holding the API for {hold} s");
        std::thread::sleep(Duration::from_secs(hold));
    }
    engram.stop().expect("engram stops");

    // What the platform saw.
    let expected = format!(
        "{}\n\n**Sources**\n[1] handbook.md — Time off",
        reply_tokens().concat()
    );
    let messages = platform.messages.lock().unwrap();
    let mut overheads = Vec::new();
    let mut complete = 0;
    let mut min_gap = Duration::MAX;
    for (_, placeholder, enqueued) in &asked {
        let message = &messages[placeholder];
        if message.text == expected {
            complete += 1;
        }
        if let Some(first) = message.first_text_edit {
            overheads.push(first.saturating_duration_since(*enqueued + FIRST_TOKEN));
        }
        for pair in message.edits.windows(2) {
            min_gap = min_gap.min(pair[1] - pair[0]);
        }
    }
    drop(messages);
    overheads.sort();
    let mut health = health;
    health.sort();

    println!("## 1,000 concurrent answers\n");
    println!("| figure | result |");
    println!("|---|---|");
    println!(
        "| answers complete and exact | {complete} / {QUESTIONS} (job states: {answer_states:?}; all finished: {all_done}) |"
    );
    println!(
        "| most answers in flight at once | {} |",
        max_in_flight.load(Ordering::Relaxed)
    );
    println!("| load phase | {load_seconds:.1} s |");
    println!(
        "| CPU during the load phase: engram (+ fake platform) / fake LLM | {cpu_engram:.1} / {cpu_llm:.1} s ({:.2} / {:.2} cores) |",
        cpu_engram / load_seconds,
        cpu_llm / load_seconds
    );
    println!(
        "| /healthz p50 / p99 / max ({} polls) | {:.2} / {:.2} / {:.2} ms |",
        health.len(),
        ms(percentile(&health, 0.50)),
        ms(percentile(&health, 0.99)),
        ms(*health.last().unwrap_or(&Duration::ZERO)),
    );
    println!(
        "| ingest job (OCR of demo/oncall-scan.png), median of {INGEST_RUNS}, idle / loaded | {:.2} / {:.2} s ({:+.1}%) |",
        idle_ingest.as_secs_f64(),
        loaded_ingest.as_secs_f64(),
        (loaded_ingest.as_secs_f64() / idle_ingest.as_secs_f64() - 1.0) * 100.0
    );
    println!(
        "| RSS idle / idle after one ingest | {:.1} / {:.1} MiB |",
        mib(idle_rss),
        mib(idle_rss_after_ingest)
    );
    println!(
        "| RSS peak with {QUESTIONS} answers in flight / whole load phase | {:.1} / {:.1} MiB |",
        mib(peak_rss_all_in_flight.load(Ordering::Relaxed)),
        mib(peak_rss.load(Ordering::Relaxed))
    );
    println!(
        "| question → first edit, beyond the LLM's first token: p50 / p99 / max | {:.1} / {:.1} / {:.1} ms |",
        ms(percentile(&overheads, 0.50)),
        ms(percentile(&overheads, 0.99)),
        ms(*overheads.last().unwrap_or(&Duration::ZERO)),
    );
    println!(
        "| 429s caused | {} |",
        platform.rate_limited.load(Ordering::Relaxed)
    );
    println!(
        "| least time between two edits of one message | {:.0} ms (edit_interval_ms = {EDIT_INTERVAL_MS}) |",
        ms(min_gap)
    );
}

/// Ingest runs per phase; the median is reported.
const INGEST_RUNS: usize = 5;

/// Brains: one per tenant holding the handbook, and one per ingest run.
struct Brains {
    tenants: Arc<Vec<(engram::brain::TenantId, engram::brain::BrainId)>>,
    idle: Vec<engram::brain::BrainId>,
    loaded: Vec<engram::brain::BrainId>,
}

async fn prepare(config: &Config) -> Brains {
    let store = store::open(&config.store).await.expect("store");
    let index = EmbeddedIndex::open(&config.store, None)
        .await
        .expect("index");
    let mut tenants = Vec::new();
    for t in 0..TENANTS {
        let tenant = store
            .ensure_tenant(&TenantKey::parse(&format!("discord:{}", 1000 + t)).unwrap())
            .await
            .unwrap();
        let brain = support::brain_knowing(
            store.as_ref(),
            &index,
            tenant,
            "handbook",
            "handbook.md",
            "Time off",
            HANDBOOK,
        )
        .await;
        tenants.push((tenant, brain));
    }
    let local = store.ensure_tenant(&TenantKey::local()).await.unwrap();
    let mut idle = Vec::new();
    let mut loaded = Vec::new();
    for n in 0..INGEST_RUNS {
        for (prefix, brains) in [("idle", &mut idle), ("loaded", &mut loaded)] {
            let name = BrainName::parse(&format!("{prefix}-{n}")).unwrap();
            brains.push(store.create_brain(local, &name).await.unwrap().id);
        }
    }
    store.close().await;
    Brains {
        tenants: Arc::new(tenants),
        idle,
        loaded,
    }
}

/// Ingests the scan into each brain in turn; returns the median time from queueing to done.
async fn ingest_runs(
    store: &Arc<dyn Store>,
    config: &Config,
    brains: &[engram::brain::BrainId],
    bytes: &[u8],
) -> Duration {
    let mut times = Vec::new();
    for brain in brains {
        times.push(ingest_once(store, config, *brain, bytes).await);
    }
    times.sort();
    times[times.len() / 2]
}

/// Queues the scan for ingestion into `brain` and waits for the job; returns how long it took
/// from queueing to done.
async fn ingest_once(
    store: &Arc<dyn Store>,
    config: &Config,
    brain: engram::brain::BrainId,
    bytes: &[u8],
) -> Duration {
    let started = Instant::now();
    let submitted = ingest::submit(
        store.as_ref(),
        &config.ingest,
        3,
        ingest::NewFile::new(brain, "oncall-scan.png", bytes),
    )
    .await
    .expect("submitted");
    let Submitted::Queued { job, .. } = submitted else {
        panic!("the scan was already known")
    };
    loop {
        let state = store.job(job).await.unwrap().unwrap().state;
        match state {
            JobState::Done => return started.elapsed(),
            JobState::Dead => panic!("the ingest job failed"),
            _ => tokio::time::sleep(Duration::from_millis(10)).await,
        }
    }
}

/// One message as the platform holds it.
#[derive(Debug, Default)]
struct Message {
    text: String,
    edits: Vec<Instant>,
    /// The first edit showing answer text (not the placeholder or a status line).
    first_text_edit: Option<Instant>,
    finished: bool,
}

/// A chat platform with per-channel write limits (sliding window), a fixed latency per call,
/// and a count of the writes it had to refuse.
#[derive(Debug, Default)]
struct FakePlatform {
    messages: Mutex<HashMap<String, Message>>,
    channels: Mutex<HashMap<ChannelKey, VecDeque<Instant>>>,
    rate_limited: AtomicUsize,
    next_id: AtomicUsize,
    started: AtomicUsize,
    finished: AtomicUsize,
}

impl FakePlatform {
    fn in_flight(&self) -> usize {
        self.started.load(Ordering::Relaxed) - self.finished.load(Ordering::Relaxed)
    }

    fn finished(&self) -> usize {
        self.finished.load(Ordering::Relaxed)
    }

    /// Admits a write to `channel`, or says how long until it would be admitted.
    fn admit(&self, channel: &ChannelKey) -> Result<(), PlatformError> {
        let now = Instant::now();
        let mut channels = self.channels.lock().unwrap();
        let writes = channels.entry(channel.clone()).or_default();
        while writes.front().is_some_and(|&at| now - at >= CHANNEL_WINDOW) {
            writes.pop_front();
        }
        if writes.len() >= CHANNEL_WRITES {
            self.rate_limited.fetch_add(1, Ordering::Relaxed);
            let retry_after = CHANNEL_WINDOW - (now - writes[0]);
            return Err(PlatformError::RateLimited { retry_after });
        }
        writes.push_back(now);
        Ok(())
    }
}

#[async_trait]
impl ChatPlatform for FakePlatform {
    fn limits(&self) -> Limits {
        Limits::DISCORD
    }

    async fn post(
        &self,
        channel: &ChannelKey,
        text: &str,
        _reply_to: Option<&MessageRef>,
    ) -> Result<MessageRef, PlatformError> {
        // Creating messages is its own bucket on Discord; only edits are limited here.
        tokio::time::sleep(PLATFORM_LATENCY).await;
        let id = format!("m{}", self.next_id.fetch_add(1, Ordering::Relaxed));
        self.messages.lock().unwrap().insert(
            id.clone(),
            Message {
                text: text.into(),
                ..Message::default()
            },
        );
        Ok(MessageRef {
            channel: channel.clone(),
            id,
        })
    }

    async fn edit(&self, message: &MessageRef, text: &str) -> Result<(), PlatformError> {
        let at = Instant::now();
        self.admit(&message.channel)?;
        {
            let mut messages = self.messages.lock().unwrap();
            let stored = messages.entry(message.id.clone()).or_default();
            stored.text = text.into();
            stored.edits.push(at);
            let is_answer_text = text != THINKING && !text.starts_with('⏳');
            if is_answer_text && stored.first_text_edit.is_none() {
                stored.first_text_edit = Some(at);
                self.started.fetch_add(1, Ordering::Relaxed);
            }
        }
        tokio::time::sleep(PLATFORM_LATENCY).await;
        Ok(())
    }

    /// An answer's final write: its full text with the 👍/👎 buttons.
    async fn edit_with_votes(
        &self,
        message: &MessageRef,
        text: &str,
        _answer: i64,
    ) -> Result<(), PlatformError> {
        self.edit(message, text).await?;
        let mut messages = self.messages.lock().unwrap();
        let stored = messages.entry(message.id.clone()).or_default();
        if !stored.finished {
            stored.finished = true;
            self.finished.fetch_add(1, Ordering::Relaxed);
        }
        Ok(())
    }

    async fn react(&self, _message: &MessageRef, _emoji: &str) -> Result<(), PlatformError> {
        Ok(())
    }

    async fn unreact(&self, _message: &MessageRef, _emoji: &str) -> Result<(), PlatformError> {
        Ok(())
    }

    async fn download(&self, _url: &str, _max_bytes: u64) -> Result<Vec<u8>, PlatformError> {
        Err(PlatformError::Other("the benchmark posts no files".into()))
    }
}

/// This process's resident set size, in KiB.
fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|value| value.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

fn ms(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1000.0
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let index = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[index]
}

/// Starts this benchmark again as the fake LLM server; returns it and its address.
fn spawn_fake_llm() -> (Child, SocketAddr) {
    let mut child = Command::new(std::env::current_exe().unwrap())
        .env(FAKE_LLM_ENV, "1")
        .stdout(Stdio::piped())
        .spawn()
        .expect("start the fake LLM");
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .expect("the fake LLM's address");
    let addr = line.trim().parse().expect("an address");
    (child, addr)
}

/// The fake OpenAI-compatible server: every chat completion streams `reply_tokens()`, the
/// first after FIRST_TOKEN, the rest every TOKEN_INTERVAL, then the usage.
fn fake_llm() {
    use axum::body::{Body, Bytes};
    use axum::routing::post;
    use axum::Router;

    // The LLM is another machine in production: here it yields the CPU to engram (to the
    // ingest job above all) rather than competing with it as an equal. Set before the
    // runtime starts, so every thread of this process has it.
    rustix::process::setpriority_process(None, 5).expect("lower the fake LLM's priority");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let tokens = Arc::new(reply_tokens());
        let app = Router::new().route(
            "/v1/chat/completions",
            post(move || {
                let tokens = tokens.clone();
                async move {
                    let stream = futures_util::stream::unfold(0usize, move |i| {
                        let tokens = tokens.clone();
                        async move {
                            let delay = if i == 0 { FIRST_TOKEN } else { TOKEN_INTERVAL };
                            let event = if i < tokens.len() {
                                tokio::time::sleep(delay).await;
                                serde_json::json!({
                                    "id": "chatcmpl-bench", "object": "chat.completion.chunk",
                                    "created": 0, "model": "bench-model",
                                    "choices": [{"index": 0, "delta": {"content": tokens[i]},
                                                 "finish_reason": null}]
                                })
                                .to_string()
                            } else if i == tokens.len() {
                                serde_json::json!({
                                    "id": "chatcmpl-bench", "object": "chat.completion.chunk",
                                    "created": 0, "model": "bench-model", "choices": [],
                                    "usage": {"prompt_tokens": 200, "completion_tokens": TOKENS,
                                              "total_tokens": 200 + TOKENS}
                                })
                                .to_string()
                            } else if i == tokens.len() + 1 {
                                "[DONE]".to_string()
                            } else {
                                return None;
                            };
                            let bytes = Bytes::from(format!("data: {event}\n\n"));
                            Some((Ok::<_, std::io::Error>(bytes), i + 1))
                        }
                    });
                    axum::response::Response::builder()
                        .header("content-type", "text/event-stream")
                        .body(Body::from_stream(stream))
                        .unwrap()
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        println!("{}", listener.local_addr().unwrap());
        std::io::stdout().flush().unwrap();
        axum::serve(listener, app).await.unwrap();
    });
}
