//! Slack under load: 50 questions (`app_mention` events, signed, over HTTP mode) at once in one
//! workspace, spread over 10 channels, answered by engram (`app::start` with the gateway, chat
//! and api roles, its real slack-morphism client) against the local fake Slack, which enforces
//! Slack's tier limits per workspace (Tier 2 20/min for `chat.startStream`/`stopStream`,
//! Tier 3 50/min for `chat.update`/`chat.delete`, Tier 4 100/min for `chat.appendStream`,
//! `chat.postMessage` 1/s per channel) with 429 + `Retry-After`, and a fake LLM streaming
//! 20 tokens/s.
//!
//! Reports: event → HTTP acknowledgement latency, answers complete and exact, 429s caused,
//! how many answers streamed natively, and how long the last answer took.
//!
//! ```text
//! cargo bench --bench slack
//! ```
//! Results are recorded in `benches/RESULTS.md`.
#![allow(clippy::print_stdout)]

#[allow(dead_code)] // the binary helpers are for the other benchmarks.
mod support;

#[path = "../tests/it/fakes/mod.rs"]
#[allow(dead_code)]
mod fakes;

use std::time::{Duration, Instant};

use engram::app::{self, Role};
use engram::brain::{BindingMode, TenantKey};
use engram::chat::service::Outlets;
use engram::config::{Config, Secret, SlackMode, StoreUrl};
use engram::index::EmbeddedIndex;
use engram::store;
use serde_json::json;

use fakes::openai::Behaviour;
use fakes::slack::{FakeSlack, Options, BOB, BOT, BOT_TOKEN, SIGNING_SECRET, TEAM};

const CHANNELS: usize = 10;
const QUESTIONS: usize = 50;
const EDIT_INTERVAL_MS: u64 = 1000;
const NOTES: &str = "Visitors park on level two of the garage. The lifts are next to bay 12.";
const REPLY: &str = "Visitors park on level two of the garage, next to the lifts by bay \
                     twelve; the entrance is on the north side and the barrier opens for \
                     visitors who pressed the intercom and gave their host's name at the \
                     desk [1].";

fn channel(n: usize) -> String {
    format!("C0BENCH{n}")
}

fn main() {
    let fakes = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    // The fake enforces Slack's tier limits by default.
    let options = Options::default();
    let slack = fakes.block_on(FakeSlack::start(options));
    let llm = fakes.block_on(fakes::openai::start(Behaviour {
        reply: REPLY.into(),
        first_token_delay: Duration::from_millis(300),
        token_interval: Duration::from_millis(50),
        ..Behaviour::default()
    }));

    let dir = tempfile::tempdir().unwrap();
    let mut config = Config::defaults();
    config.store.url = StoreUrl::new(format!("sqlite://{}/bench.db", dir.path().display()));
    config.slack.bot_token = Secret::new(BOT_TOKEN);
    config.slack.signing_secret = Secret::new(SIGNING_SECRET);
    config.slack.mode = SlackMode::Http;
    config.slack.api_url = slack.api_url();
    config.http.listen = "127.0.0.1:0".parse().unwrap();
    config.llm.base_url = llm.base_url();
    config.llm.model = "bench-model".into();
    config.chat.edit_interval_ms = EDIT_INTERVAL_MS;
    config.chat.user_questions_per_minute = 0;
    fakes.block_on(prepare(&config));

    let engram = app::start(
        &config,
        &[Role::Gateway, Role::Chat, Role::Api],
        Outlets::default(),
    )
    .expect("engram starts");
    let addr = engram.api_addr().unwrap();

    // All questions at once: one thread per question delivers its signed event.
    let started = Instant::now();
    let threads: Vec<_> = (0..QUESTIONS)
        .map(|n| {
            let ts = slack.next_ts();
            let event = fakes::slack::event_callback(
                &format!("Ev-bench-{n}"),
                json!({
                    "type": "app_mention", "user": BOB, "channel": channel(n % CHANNELS),
                    "ts": ts, "text": format!("<@{BOT}> where do visitors park?"),
                }),
            )
            .to_string();
            std::thread::spawn(move || {
                let timestamp = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .unwrap()
                    .as_secs()
                    .to_string();
                let signature = fakes::slack::signature(SIGNING_SECRET, &timestamp, &event);
                let headers = [
                    ("Content-Type", "application/json".to_string()),
                    ("X-Slack-Request-Timestamp", timestamp),
                    ("X-Slack-Signature", signature),
                ];
                let (status, _, took) =
                    fakes::slack::http_post(addr, "/slack/events", &headers, &event);
                assert_eq!(status, 200);
                (ts, took)
            })
        })
        .collect();
    let mut asked = Vec::new();
    let mut acks = Vec::new();
    for thread in threads {
        let (ts, took) = thread.join().unwrap();
        asked.push(ts);
        acks.push(took);
    }

    let answer = |slack: &FakeSlack, ts: &str| {
        slack
            .thread(ts)
            .into_iter()
            .find(|m| !m.deleted && !m.streaming && m.text().contains("Sources"))
    };
    let deadline = Instant::now() + Duration::from_secs(900);
    let finished = loop {
        let done = asked
            .iter()
            .filter(|ts| answer(&slack, ts).is_some())
            .count();
        if done >= QUESTIONS || Instant::now() > deadline {
            break done;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    let all_done_after = started.elapsed();
    let answers: Vec<_> = asked.iter().filter_map(|ts| answer(&slack, ts)).collect();
    engram.stop().expect("engram stops");

    let streamed_text = format!("{REPLY}\n\n*Sources*\n[1] notes.md — Parking");
    let exact = answers.iter().filter(|m| m.text() == streamed_text).count();
    let streamed = answers.iter().filter(|m| m.streamed).count();
    let limited = slack.calls().iter().filter(|c| c.status == 429).count();
    acks.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    let pct = |p: f64| {
        let i = ((acks.len() as f64 * p).ceil() as usize).clamp(1, acks.len()) - 1;
        acks[i]
    };
    println!("## Slack: {QUESTIONS} questions in one workspace ({CHANNELS} channels)\n");
    println!("| figure | result |");
    println!("|---|---|");
    println!("| answers complete | {finished} / {QUESTIONS} ({exact} exact) |");
    println!(
        "| event → HTTP ack p50 / p99 / max | {:.1} / {:.1} / {:.1} ms |",
        ms(pct(0.50)),
        ms(pct(0.99)),
        ms(*acks.last().unwrap())
    );
    println!("| 429s caused | {limited} |");
    println!(
        "| streamed natively / edited with chat.update | {streamed} / {} |",
        answers.len() - streamed
    );
    println!(
        "| Web API calls | {} |",
        slack.calls().iter().filter(|c| c.status != 429).count()
    );
    println!(
        "| last answer complete after | {:.1} s |",
        all_done_after.as_secs_f64()
    );
}

/// The workspace's brain with the parking notes, bound to every channel.
async fn prepare(config: &Config) {
    let store = store::open(&config.store).await.expect("store");
    let index = EmbeddedIndex::open(&config.store, None)
        .await
        .expect("index");
    let tenant = store
        .ensure_tenant(&TenantKey::parse(&format!("slack:{TEAM}")).unwrap())
        .await
        .unwrap();
    let brain = support::brain_knowing(
        store.as_ref(),
        &index,
        tenant,
        "handbook",
        "notes.md",
        "Parking",
        NOTES,
    )
    .await;
    for n in 0..CHANNELS {
        store
            .bind_channel(
                tenant,
                &format!("slack:{TEAM}:{}", channel(n)),
                brain,
                BindingMode::Ask,
            )
            .await
            .unwrap();
    }
    store.close().await;
}
