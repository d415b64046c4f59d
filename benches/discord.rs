//! Discord under a burst, against the local fake Discord enforcing Discord's documented limits
//! with its headers and 429s (messages 5 per 5 s per channel, creates and edits alike;
//! reactions 1 per 0.25 s per channel; typing 5 per 5 s; 50 requests a second in all), with
//! engram (`app::start` with the gateway, chat, ingest and api roles, its real serenity client
//! and REST calls) and a fake LLM streaming 20 tokens/s. Two bursts:
//!
//! - 30 questions at once from 5 people in one channel, with 3 files posted among them;
//! - 100 questions at once across 10 channels (10 people), with 10 files (one per channel).
//!
//! Reports for each: answers complete (each question answered by exactly one message, with
//! its sources), files ✅ (and ⏳ left), 429s served and how many were never sent again,
//! MESSAGE_CREATE → placeholder latency, edits, time to the last answer, `/healthz` latency
//! polled every 10 ms meanwhile.
//!
//! ```text
//! cargo build --release --workspace   # the extractor the ingest role runs
//! cargo bench --bench discord
//! ```
//! Results are recorded in `benches/RESULTS.md`.
#![allow(clippy::print_stdout)]

#[allow(dead_code)] // the binary helpers are for the other benchmarks.
mod support;

#[path = "../tests/it/fakes/mod.rs"]
#[allow(dead_code)]
mod fakes;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use engram::app::{self, Role};
use engram::brain::{BindingMode, TenantKey};
use engram::chat::service::Outlets;
use engram::config::{Config, Secret, StoreUrl};
use engram::index::EmbeddedIndex;
use engram::store;

use fakes::discord::{FakeChannel, FakeDiscord, Options, UserMessage, ALICE_ID, BOT_ID, GUILD_ID};
use fakes::openai::Behaviour;

const EDIT_INTERVAL_MS: u64 = 1000;
const NOTES: &str = "Visitors park on level two of the garage. The lifts are next to bay 12.";
const REPLY: &str = "Visitors park on level two of the garage, next to the lifts by bay \
                     twelve; the entrance is on the north side and the barrier opens for \
                     visitors who pressed the intercom and gave their host's name at the \
                     desk [1].";

fn channel_id(n: u64) -> u64 {
    1_210_000_000_000_001_000 + n
}

fn person(n: usize) -> u64 {
    1_210_000_000_000_002_000 + n as u64
}

struct Burst {
    title: &'static str,
    channels: u64,
    questions: usize,
    people: usize,
    files: usize,
}

fn main() {
    for burst in [
        Burst {
            title: "30 questions from 5 people in one channel, 3 files among them",
            channels: 1,
            questions: 30,
            people: 5,
            files: 3,
        },
        Burst {
            title: "100 questions across 10 channels from 10 people, 10 files",
            channels: 10,
            questions: 100,
            people: 10,
            files: 10,
        },
    ] {
        run(&burst);
    }
}

fn run(burst: &Burst) {
    let fakes = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let mut options = Options::default();
    let channels = burst.channels;
    options.guilds[0].channels = (0..channels)
        .map(|n| FakeChannel::text(channel_id(n), &format!("team-{n}")))
        .collect();
    let discord = fakes.block_on(FakeDiscord::start(options));
    let llm = fakes.block_on(fakes::openai::start(Behaviour {
        reply: REPLY.into(),
        first_token_delay: Duration::from_millis(300),
        token_interval: Duration::from_millis(50),
        ..Behaviour::default()
    }));

    let dir = tempfile::tempdir().unwrap();
    let mut config = Config::defaults();
    config.store.url = StoreUrl::new(format!("sqlite://{}/bench.db", dir.path().display()));
    config.discord.token = Secret::new(discord.token());
    config.discord.proxy_url = discord.rest_url();
    config.llm.base_url = llm.base_url();
    config.llm.model = "bench-model".into();
    config.chat.edit_interval_ms = EDIT_INTERVAL_MS;
    config.http.listen = "127.0.0.1:0".parse().unwrap();
    config.ingest.extractor = support::release_binary("engram-extract")
        .display()
        .to_string();
    fakes.block_on(prepare(&config, channels));

    let engram = app::start(
        &config,
        &[Role::Gateway, Role::Chat, Role::Ingest, Role::Api],
        Outlets::default(),
    )
    .expect("engram starts");
    let ready_by = Instant::now() + Duration::from_secs(30);
    while discord.commands(None).is_empty() {
        assert!(Instant::now() < ready_by, "engram never connected");
        std::thread::sleep(Duration::from_millis(20));
    }
    let stop_polling = Arc::new(AtomicBool::new(false));
    let health = support::spawn_health_poller(
        engram.api_addr().expect("the api role listens"),
        stop_polling.clone(),
    );

    // Files first in each channel's share of the burst, questions among them.
    let started = Instant::now();
    let mut files = Vec::new();
    for n in 0..burst.files {
        let channel = channel_id(n as u64 % channels);
        let (attachment, _) = discord.add_attachment(
            &format!("desk-{n}.md"),
            format!("# Desks {n}\n\nDesks on floor {n} are booked at the front desk.\n").as_bytes(),
        );
        let event = discord.message_create(
            &UserMessage::new(channel, ALICE_ID, "desk notes").with_attachment(attachment),
        );
        files.push(event["id"].as_str().unwrap().parse::<u64>().unwrap());
        discord.dispatch("MESSAGE_CREATE", event);
    }
    let mut asked: Vec<(u64, Instant)> = Vec::new();
    for n in 0..burst.questions {
        let channel = channel_id(n as u64 % channels);
        let event = discord.message_create(
            &UserMessage::new(channel, person(n % burst.people), "where do visitors park?")
                .mentioning(BOT_ID),
        );
        let id: u64 = event["id"].as_str().unwrap().parse().unwrap();
        let at = Instant::now();
        discord.dispatch("MESSAGE_CREATE", event);
        asked.push((id, at));
    }

    // The bot's messages replying to each message, by the message they reply to.
    let replies = |discord: &FakeDiscord| -> HashMap<u64, Vec<fakes::discord::StoredMessage>> {
        let mut found: HashMap<u64, Vec<_>> = HashMap::new();
        for n in 0..channels {
            for message in discord.messages(channel_id(n)) {
                if message.author_id != BOT_ID {
                    continue;
                }
                if let Some(question) = message.json["message_reference"]["message_id"]
                    .as_str()
                    .and_then(|id| id.parse::<u64>().ok())
                {
                    found.entry(question).or_default().push(message);
                }
            }
        }
        found
    };
    let file_done = |discord: &FakeDiscord, file: u64| discord.reactions(file) == ["✅"];
    let deadline = Instant::now() + Duration::from_secs(900);
    let mut last_answer = None;
    loop {
        let found = replies(&discord);
        let answered = asked
            .iter()
            .filter(|(q, _)| {
                found
                    .get(q)
                    .is_some_and(|m| m.iter().any(|m| m.content().contains("**Sources**")))
            })
            .count();
        if answered == asked.len() && last_answer.is_none() {
            last_answer = Some(started.elapsed());
        }
        let files_done = files.iter().filter(|f| file_done(&discord, **f)).count();
        if (answered == asked.len() && files_done == files.len()) || Instant::now() > deadline {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let all_done = started.elapsed();
    stop_polling.store(true, Ordering::Relaxed);
    let mut healthz = health.join().expect("the poller");
    healthz.sort();
    let found = replies(&discord);
    engram.stop().expect("engram stops");

    let expected = format!("{REPLY}\n\n**Sources**\n[1] notes.md — Parking");
    let mut placeholder_latency = Vec::new();
    let (mut complete, mut exact, mut more_than_one) = (0, 0, 0);
    let mut least_gap = Duration::MAX;
    let mut edits_per_answer = Vec::new();
    for (question, at) in &asked {
        let Some(messages) = found.get(question) else {
            continue;
        };
        if messages.len() > 1 {
            more_than_one += 1;
        }
        let Some(message) = messages
            .iter()
            .find(|m| m.content().contains("**Sources**"))
        else {
            continue;
        };
        complete += 1;
        placeholder_latency.push(message.versions[0].at.saturating_duration_since(*at));
        if message.content() == expected {
            exact += 1;
        }
        let edits = message.edit_times();
        edits_per_answer.push(edits.len());
        for pair in edits.windows(2) {
            least_gap = least_gap.min(pair[1] - pair[0]);
        }
    }
    placeholder_latency.sort();
    edits_per_answer.sort();
    let files_ok = files.iter().filter(|f| file_done(&discord, **f)).count();
    let hourglass_left = files
        .iter()
        .filter(|f| discord.reactions(**f).iter().any(|r| r == "⏳"))
        .count();
    let served = discord.rate_limited_requests();
    let typing_429s = served
        .iter()
        .filter(|r| r.path.ends_with("/typing"))
        .count();
    let unretried = discord.unretried_429s().len();
    let mut by_route: HashMap<String, usize> = HashMap::new();
    for request in &served {
        // The route's shape: ids and emoji hidden.
        let shape: Vec<&str> = request
            .path
            .split('/')
            .map(|part| {
                if part.bytes().all(|b| b.is_ascii_digit()) && !part.is_empty() {
                    "{id}"
                } else if !part.is_ascii() {
                    "{emoji}"
                } else {
                    part
                }
            })
            .collect();
        *by_route
            .entry(format!("{} {}", request.method, shape.join("/")))
            .or_default() += 1;
    }
    let mut by_route: Vec<_> = by_route.into_iter().collect();
    by_route.sort();
    let typing_sent: usize = (0..channels).map(|n| discord.typing(channel_id(n))).sum();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    let q = burst.questions;
    println!("## Discord burst: {}\n", burst.title);
    println!("| figure | result |");
    println!("|---|---|");
    println!("| answers complete, with sources | {complete} / {q} ({exact} exact) |");
    println!("| questions with more than one answer message | {more_than_one} |");
    println!(
        "| files ✅ / ⏳ left | {files_ok} / {} , {hourglass_left} |",
        files.len()
    );
    println!(
        "| 429s served (typing, global) / never sent again | {} ({typing_429s}, {}) / {unretried} |",
        served.len(),
        discord.globally_limited()
    );
    for (route, count) in &by_route {
        println!("| 429s on `{route}` | {count} |");
    }
    println!("| typing indicators sent | {typing_sent} |");
    println!(
        "| MESSAGE_CREATE → placeholder p50 / p99 / max | {:.0} / {:.0} / {:.0} ms |",
        ms(support::percentile(&placeholder_latency, 0.50)),
        ms(support::percentile(&placeholder_latency, 0.99)),
        ms(*placeholder_latency.last().unwrap_or(&Duration::ZERO))
    );
    println!(
        "| edits per answer: min / median / max | {} / {} / {} |",
        edits_per_answer.first().unwrap_or(&0),
        edits_per_answer
            .get(edits_per_answer.len() / 2)
            .unwrap_or(&0),
        edits_per_answer.last().unwrap_or(&0)
    );
    println!(
        "| least time between two edits of one message | {:.0} ms (edit_interval_ms = {EDIT_INTERVAL_MS}) |",
        ms(least_gap)
    );
    println!(
        "| last answer complete after / everything done after | {:.1} s / {:.1} s |",
        last_answer.unwrap_or(all_done).as_secs_f64(),
        all_done.as_secs_f64()
    );
    println!(
        "| /healthz p50 / p99 / max ({} polls) | {:.2} / {:.2} / {:.2} ms |\n",
        healthz.len(),
        ms(support::percentile(&healthz, 0.50)),
        ms(support::percentile(&healthz, 0.99)),
        ms(*healthz.last().unwrap_or(&Duration::ZERO))
    );
}

/// One guild's brain with the parking notes, bound to every channel (questions and files).
async fn prepare(config: &Config, channels: u64) {
    let store = store::open(&config.store).await.expect("store");
    let index = EmbeddedIndex::open(&config.store, None)
        .await
        .expect("index");
    let tenant = store
        .ensure_tenant(&TenantKey::parse(&format!("discord:{GUILD_ID}")).unwrap())
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
    for n in 0..channels {
        store
            .bind_channel(
                tenant,
                &format!("discord:{}", channel_id(n)),
                brain,
                BindingMode::Both,
            )
            .await
            .unwrap();
    }
    store.close().await;
}
