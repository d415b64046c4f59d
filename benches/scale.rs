//! Scale-out on PostgreSQL: engram's roles as separate `engram serve --roles …` processes (the
//! release binary) sharing a real PostgreSQL and a real Qdrant (the server named by
//! `ENGRAM_TEST_QDRANT_URL`, a fresh collection per run, deleted afterwards), with the fake
//! Discord and fake LLM in this process.
//!
//! 1. **Ingest throughput**: the corpus's 11 files submitted to 4 brains (44 `ingest` jobs) in
//!    one go, read by 1 and then by 2 ingest processes; wall time from the first submission
//!    until every job is done, files/s and the scaling factor. Run with `ingest.workers` = 2
//!    (the default) and = 1 per process.
//! 2. **Question → first edit through the PostgreSQL queue**: a gateway process and a chat
//!    process; 100 @mentions, one every 250 ms across 20 channels; the fake LLM's first token
//!    comes 300 ms after its request. Overhead = first edit with answer text − the question's
//!    MESSAGE_CREATE − 300 ms: the gateway's placeholder, the job through PostgreSQL
//!    (`LISTEN/NOTIFY` wake-up), retrieval, the LLM request and the edit.
//!
//! ```text
//! cargo build --release --workspace
//! export ENGRAM_TEST_POSTGRES_URL=$(scripts/postgres.sh) ENGRAM_TEST_QDRANT_URL=$(scripts/qdrant.sh)
//! cargo bench --bench scale
//! cargo bench --bench scale -- answers  # part 2 only
//! cargo bench --bench scale -- answers --no-discord-limits  # the fake Discord without limits
//! ```
//! Results are recorded in `benches/RESULTS.md`.
#![allow(clippy::print_stdout)]

#[allow(dead_code)] // `brain_knowing` is for the answer benchmarks.
mod support;

#[path = "../tests/it/cluster.rs"]
#[allow(dead_code)]
mod cluster;
#[path = "../tests/it/fakes/mod.rs"]
#[allow(dead_code)]
mod fakes;
#[path = "../tests/it/qdrant_server.rs"]
#[allow(dead_code)] // The private servers are for the tests' faults.
mod qdrant_server;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use engram::brain::{BindingMode, BrainName, TenantKey};
use engram::config::{StoreConfig, StoreUrl};
use engram::ingest::{self, Submitted};
use engram::jobs::{JobKind, JobState};
use engram::store::{self, Store};
use sqlx::Connection;

use cluster::Processes;
use fakes::discord::{FakeChannel, FakeDiscord, Options, UserMessage, ALICE_ID, BOT_ID, GUILD_ID};
use fakes::openai::Behaviour;
use qdrant_server::TestCollection;

const BRAINS: usize = 4;
const QUESTIONS: usize = 100;
const CHANNELS: u64 = 20;
const QUESTION_EVERY: Duration = Duration::from_millis(250);
const FIRST_TOKEN: Duration = Duration::from_millis(300);
const NOTES: &[u8] = b"# Parking\n\nVisitors park on level two of the garage.\n";

fn channel_id(n: u64) -> u64 {
    1_210_000_000_000_003_000 + n
}

/// A new database on the benchmark server; dropped by [`drop_database`].
async fn new_database(admin: &str, tag: &str) -> String {
    let name = format!("engram_bench_{}_{tag}", std::process::id());
    let mut connection = sqlx::PgConnection::connect(admin).await.unwrap();
    sqlx::query(&format!("CREATE DATABASE {name}"))
        .execute(&mut connection)
        .await
        .unwrap();
    let (base, _) = admin.rsplit_once('/').unwrap();
    format!("{base}/{name}")
}

async fn drop_database(admin: &str, url: &str) {
    let name = url.rsplit_once('/').unwrap().1;
    let mut connection = sqlx::PgConnection::connect(admin).await.unwrap();
    sqlx::query(&format!("DROP DATABASE {name} WITH (FORCE)"))
        .execute(&mut connection)
        .await
        .unwrap();
}

async fn open_store(url: &str) -> std::sync::Arc<dyn Store> {
    store::open(&StoreConfig {
        url: StoreUrl::new(url),
        max_connections: 4,
        busy_timeout_ms: 5000,
    })
    .await
    .unwrap()
}

/// The config every process of one run shares: `workers` ingest workers per process, then
/// `extra` sections.
fn write_config(
    dir: &Path,
    database: &str,
    qdrant: &TestCollection,
    workers: usize,
    extra: &str,
) -> PathBuf {
    let path = dir.join("engram.toml");
    std::fs::write(
        &path,
        format!(
            "[store]\nurl = \"{database}\"\nmax_connections = 4\n\n\
             [index]\nkind = \"qdrant\"\nqdrant_url = \"{}\"\ncollection = \"{}\"\n\n\
             [ingest]\nextractor = \"{}\"\nworkers = {workers}\n\n{extra}",
            qdrant.url,
            qdrant.name,
            support::release_binary("engram-extract").display()
        ),
    )
    .unwrap();
    path
}

/// Seconds from submitting `BRAINS` × the corpus until every ingest job is done, with
/// `processes` ingest processes of `workers` workers each; and how many files were read.
fn ingest_run(
    fakes: &tokio::runtime::Runtime,
    admin: &str,
    processes: usize,
    workers: usize,
) -> (f64, usize) {
    let qdrant = TestCollection::shared("bench_ingest");
    let database = fakes.block_on(new_database(
        admin,
        &format!("ingest_{processes}_{workers}"),
    ));
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), &database, &qdrant, workers, "");

    let corpus = support::crate_dir().join("../shared/corpus/files");
    let mut files: Vec<(String, Vec<u8>)> = std::fs::read_dir(&corpus)
        .unwrap()
        .map(|entry| {
            let path = entry.unwrap().path();
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            (name, std::fs::read(&path).unwrap())
        })
        .collect();
    files.sort();

    let mut cluster = Processes::new(config, dir.path().to_path_buf());
    for n in 0..processes {
        cluster.spawn(&format!("ingest-{n}"), "ingest");
    }
    for n in 0..processes {
        cluster.wait_running(&format!("ingest-{n}"), Duration::from_secs(30));
    }
    let (elapsed, count) = fakes.block_on(async {
        let store = open_store(&database).await;
        let tenant = store
            .ensure_tenant(&TenantKey::parse("discord:1").unwrap())
            .await
            .unwrap();
        let ingest_config = engram::config::Config::defaults().ingest;
        let started = Instant::now();
        let mut jobs = Vec::new();
        for b in 0..BRAINS {
            let brain = store
                .create_brain(tenant, &BrainName::parse(&format!("brain-{b}")).unwrap())
                .await
                .unwrap();
            for (name, bytes) in &files {
                match ingest::submit(
                    store.as_ref(),
                    &ingest_config,
                    5,
                    ingest::NewFile::new(brain.id, name, bytes),
                )
                .await
                .unwrap()
                {
                    Submitted::Queued { job, .. } => jobs.push(job),
                    Submitted::Known(_) => panic!("{name} already known in a new brain"),
                }
            }
        }
        // Every job ends done: one query for the counts per state, not one per job.
        loop {
            let depths = store.queue_depths().await.unwrap();
            let count = |state: JobState| {
                depths
                    .iter()
                    .filter(|d| d.kind == JobKind::Ingest && d.state == state)
                    .map(|d| d.count)
                    .sum::<u64>()
            };
            assert_eq!(count(JobState::Dead), 0, "an ingest job died");
            if count(JobState::Done) == jobs.len() as u64 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let elapsed = started.elapsed().as_secs_f64();
        store.close().await;
        (elapsed, jobs.len())
    });
    cluster.stop();
    fakes.block_on(drop_database(admin, &database));
    (elapsed, count)
}

/// Question → first edit overheads (beyond the LLM's first token) through a gateway process
/// and a chat process on PostgreSQL.
fn first_edit_run(fakes: &tokio::runtime::Runtime, admin: &str) -> (Vec<Duration>, usize) {
    let mut options = Options::default();
    options.guilds[0].channels = (0..CHANNELS)
        .map(|n| FakeChannel::text(channel_id(n), &format!("team-{n}")))
        .collect();
    // `--no-discord-limits`: the fake Discord enforces no rate limit, to tell the rate
    // limits' share of the overhead from the rest.
    if std::env::args().any(|arg| arg == "--no-discord-limits") {
        options.message_limit = None;
        options.global_limit = None;
        options.typing_limit = None;
        options.reaction_limit = None;
    }
    let discord = fakes.block_on(FakeDiscord::start(options));
    let llm = fakes.block_on(fakes::openai::start(Behaviour {
        reply: "Visitors park on level two of the garage [1].".into(),
        first_token_delay: FIRST_TOKEN,
        token_interval: Duration::from_millis(50),
        ..Behaviour::default()
    }));
    let qdrant = TestCollection::shared("bench_answers");
    let database = fakes.block_on(new_database(admin, "answers"));
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(
        dir.path(),
        &database,
        &qdrant,
        2,
        &format!(
            "[llm]\nbase_url = \"{}\"\nmodel = \"bench-model\"\n\n\
             [discord]\ntoken = \"{}\"\nproxy_url = \"{}\"\n\n\
             [chat]\nedit_interval_ms = 1000\nuser_questions_per_minute = 0\n",
            llm.base_url(),
            discord.token(),
            discord.rest_url()
        ),
    );

    let mut cluster = Processes::new(config, dir.path().to_path_buf());
    cluster.spawn("gateway", "gateway");
    cluster.spawn("chat", "chat");
    cluster.spawn("ingest", "ingest");
    let ready_by = Instant::now() + Duration::from_secs(30);
    while discord.commands(None).is_empty() {
        assert!(
            Instant::now() < ready_by,
            "the gateway never connected\n{}",
            cluster.logs()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    cluster.wait_running("chat", Duration::from_secs(30));

    // The brain, bound to every channel, learns the notes through the ingest process.
    fakes.block_on(async {
        let store = open_store(&database).await;
        let channels = (0..CHANNELS).map(|n| (channel_id(n), BindingMode::Both));
        cluster::handbook_bound_to(store.as_ref(), GUILD_ID, channels).await;
        store.close().await;
    });
    let (notes, _) = discord.add_attachment("notes.md", NOTES);
    let event = discord
        .message_create(&UserMessage::new(channel_id(0), ALICE_ID, "notes").with_attachment(notes));
    let posted: u64 = event["id"].as_str().unwrap().parse().unwrap();
    discord.dispatch("MESSAGE_CREATE", event);
    let learned_by = Instant::now() + Duration::from_secs(60);
    while !discord.reactions(posted).contains(&"✅".to_string()) {
        assert!(
            Instant::now() < learned_by,
            "the notes were never learned\n{}",
            cluster.logs()
        );
        std::thread::sleep(Duration::from_millis(20));
    }

    let mut asked = Vec::new();
    let mut next = Instant::now();
    for n in 0..QUESTIONS {
        while Instant::now() < next {
            std::thread::sleep(Duration::from_millis(1));
        }
        next += QUESTION_EVERY;
        let channel = channel_id(n as u64 % CHANNELS);
        let event = discord.message_create(
            &UserMessage::new(channel, ALICE_ID, "where do visitors park?").mentioning(BOT_ID),
        );
        let id: u64 = event["id"].as_str().unwrap().parse().unwrap();
        let at = Instant::now();
        discord.dispatch("MESSAGE_CREATE", event);
        asked.push((channel, id, at));
    }
    let finished_by = Instant::now() + Duration::from_secs(120);
    let overheads = loop {
        let mut overheads = Vec::new();
        for (channel, question, at) in &asked {
            let first_text = discord.messages(*channel).into_iter().find_map(|m| {
                let replies = m.json["message_reference"]["message_id"].as_str()
                    == Some(&question.to_string());
                if m.author_id != BOT_ID || !replies {
                    return None;
                }
                m.versions
                    .iter()
                    .find(|v| v.content.starts_with("Visitors"))
                    .map(|v| v.at)
            });
            if let Some(first) = first_text {
                overheads.push(first.saturating_duration_since(*at + FIRST_TOKEN));
            }
        }
        if overheads.len() == QUESTIONS || Instant::now() > finished_by {
            break overheads;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let rate_limited = (0..CHANNELS)
        .map(|n| discord.rate_limited(channel_id(n)))
        .sum();
    cluster.stop();
    fakes.block_on(drop_database(admin, &database));
    let mut overheads = overheads;
    overheads.sort();
    (overheads, rate_limited)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len().max(1)) - 1;
    sorted.get(i).copied().unwrap_or_default()
}

#[allow(
    clippy::disallowed_methods,
    reason = "benchmarks are configured by the environment, as the tests are"
)]
fn main() {
    let admin = std::env::var("ENGRAM_TEST_POSTGRES_URL")
        .expect("set ENGRAM_TEST_POSTGRES_URL (scripts/postgres.sh prints one)");
    let fakes = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();

    // `ingest` or `answers` runs that part only.
    let only: Option<String> = std::env::args().skip(1).find(|a| !a.starts_with('-'));
    let runs = |part: &str| only.as_deref().is_none_or(|only| only == part);

    println!("## Scale-out on PostgreSQL\n");
    if runs("ingest") {
        ingest_table(&fakes, &admin);
    }
    if runs("answers") {
        answers_table(&fakes, &admin);
    }
}

fn ingest_table(fakes: &tokio::runtime::Runtime, admin: &str) {
    println!("| ingest processes × workers | files | wall | files/s | vs 1 process |");
    println!("|---|---|---|---|---|");
    for workers in [2, 1] {
        let (one, files) = ingest_run(fakes, admin, 1, workers);
        let (two, _) = ingest_run(fakes, admin, 2, workers);
        println!(
            "| 1 × {workers} | {files} | {one:.2} s | {:.2} | 1.00 |",
            files as f64 / one
        );
        println!(
            "| 2 × {workers} | {files} | {two:.2} s | {:.2} | {:.2} |",
            files as f64 / two,
            one / two
        );
    }

    println!();
}

fn answers_table(fakes: &tokio::runtime::Runtime, admin: &str) {
    let (overheads, rate_limited) = first_edit_run(fakes, admin);
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!("| figure | result |");
    println!("|---|---|");
    println!("| questions answered | {} / {QUESTIONS} |", overheads.len());
    println!(
        "| question → first edit beyond the LLM's first token, p50 / p99 / max | {:.1} / {:.1} / {:.1} ms |",
        ms(percentile(&overheads, 0.50)),
        ms(percentile(&overheads, 0.99)),
        ms(overheads.last().copied().unwrap_or_default())
    );
    println!("| 429s caused | {rate_limited} |");
}
