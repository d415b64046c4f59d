//! Conversation knowledge, freshness: how long from a Discord event to what a question would
//! search. engram (`app::start` with the gateway, chat, ingest and api roles on SQLite and the
//! embedded index, its real serenity client) against the local fake Discord enforcing its
//! documented limits and a fake LLM streaming 20 tokens/s, in one channel that learns its
//! messages. While 50 questions are answered (streamed), 200 events arrive at 20 a second:
//! 120 new messages, 50 edits of them and 30 deletions. Each message carries a word of its
//! own; a poller searches the brain through the index the chat role searches (`open_index`:
//! one per process, shared by its roles) every 20 ms and records, per event, when the message is
//! searchable (timed for the messages no later event changes), when an edit's new word is
//! found and its old one gone, and when a deleted message is gone (a message deleted before it
//! was ever searchable counts as gone at once).
//!
//! ```text
//! cargo build --release --workspace   # the extractor the ingest role runs
//! cargo bench --bench freshness
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
use engram::brain::{BindingMode, BrainId, TenantKey};
use engram::chat::service::Outlets;
use engram::config::{Config, Secret, StoreUrl};
use engram::index::{EmbeddedIndex, SearchQuery};
use engram::store;
use serde_json::json;

use fakes::discord::{FakeChannel, FakeDiscord, Options, UserMessage, ALICE_ID, BOT_ID, GUILD_ID};
use fakes::openai::Behaviour;

const CHANNEL: u64 = 1_210_000_000_000_001_000;
const QUESTIONS: usize = 50;
const MESSAGES: usize = 120;
const EDITS: usize = 50;
const DELETES: usize = 30;
const EVENT_GAP: Duration = Duration::from_millis(50);
const REPLY: &str = "Visitors park on level two of the garage, next to the lifts by bay \
                     twelve; the entrance is on the north side [1].";

/// What a pending event waits for.
enum Wait {
    /// The word is found.
    Found(String),
    /// The new word is found and the old one is not.
    Replaced { new: String, old: String },
    /// The word is not found.
    Gone(String),
}

fn main() {
    let fakes = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let mut options = Options::default();
    options.guilds[0].channels = vec![FakeChannel::text(CHANNEL, "ops")];
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
    config.http.listen = "127.0.0.1:0".parse().unwrap();
    config.ingest.extractor = support::release_binary("engram-extract")
        .display()
        .to_string();
    let brain = fakes.block_on(prepare(&config));
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
    // The index the chat role searches (one per process, shared by its roles).
    let index = fakes
        .block_on(async {
            let store = store::open(&config.store).await.expect("store");
            app::open_index(&config, store, None).await
        })
        .expect("index");

    // The questions first, so the events arrive while their answers stream.
    let mut asked = Vec::new();
    for n in 0..QUESTIONS {
        let event = discord.message_create(
            &UserMessage::new(CHANNEL, ALICE_ID, &format!("where do visitors park? ({n})"))
                .mentioning(BOT_ID),
        );
        asked.push(event["id"].as_str().unwrap().parse::<u64>().unwrap());
        discord.dispatch("MESSAGE_CREATE", event);
    }
    // The events, with what each waits for and when it was sent.
    let word = |n: usize, version: u32| format!("zq{n}v{version}marker");
    let mut pending: Vec<(&'static str, Instant, Wait)> = Vec::new();
    let mut posted: Vec<u64> = Vec::new();
    let started = Instant::now();
    let search = |text: &str| -> bool {
        let query = SearchQuery {
            text: text.to_string(),
            vector: None,
            limit: 5,
            hidden: Vec::new(),
        };
        let hits = fakes.block_on(index.search(brain, &query)).expect("search");
        hits.iter().any(|hit| hit.text.contains(text))
    };
    let mut results: Vec<(&'static str, Duration)> = Vec::new();
    let mut poll = |pending: &mut Vec<(&'static str, Instant, Wait)>| {
        pending.retain(|(kind, at, wait)| {
            let done = match wait {
                Wait::Found(word) => search(word),
                Wait::Replaced { new, old } => search(new) && !search(old),
                Wait::Gone(word) => !search(word),
            };
            if done {
                results.push((kind, at.elapsed()));
            }
            !done
        });
    };
    let mut next = Instant::now();
    for n in 0..(MESSAGES + EDITS + DELETES) {
        let at = Instant::now();
        if n < MESSAGES {
            let text = format!("Ops note {n}: the runbook keyword is {}.", word(n, 1));
            let event = discord.message_create(&UserMessage::new(CHANNEL, ALICE_ID, &text));
            posted.push(event["id"].as_str().unwrap().parse().unwrap());
            discord.dispatch("MESSAGE_CREATE", event);
            // Timed only for the messages no later event changes.
            if !touched(n) {
                pending.push(("message", at, Wait::Found(word(n, 1))));
            }
        } else if n < MESSAGES + EDITS {
            let m = (n - MESSAGES) * 2; // every other message is edited
            discord.dispatch(
                "MESSAGE_UPDATE",
                json!({
                    "id": posted[m].to_string(), "channel_id": CHANNEL.to_string(),
                    "guild_id": GUILD_ID.to_string(),
                    "content": format!("Ops note {m}: the runbook keyword is {}.", word(m, 2)),
                    "edited_timestamp": "2026-12-07T12:00:00.000000+00:00",
                }),
            );
            pending.push((
                "edit",
                at,
                Wait::Replaced {
                    new: word(m, 2),
                    old: word(m, 1),
                },
            ));
        } else {
            let m = (n - MESSAGES - EDITS) * 2 + 1; // and some of the others deleted
            discord.dispatch(
                "MESSAGE_DELETE",
                json!({
                    "id": posted[m].to_string(), "channel_id": CHANNEL.to_string(),
                    "guild_id": GUILD_ID.to_string(),
                }),
            );
            pending.push(("delete", at, Wait::Gone(word(m, 1))));
        }
        next += EVENT_GAP;
        while Instant::now() < next {
            poll(&mut pending);
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    let deadline = Instant::now() + Duration::from_secs(120);
    while !pending.is_empty() && Instant::now() < deadline {
        poll(&mut pending);
        std::thread::sleep(Duration::from_millis(20));
    }
    let events_done = started.elapsed();
    // The answers, streamed meanwhile.
    let answered_by = Instant::now() + Duration::from_secs(300);
    let answered = loop {
        let messages = discord.messages(CHANNEL);
        let answered = asked
            .iter()
            .filter(|q| {
                messages.iter().any(|m| {
                    m.author_id == BOT_ID
                        && m.json["message_reference"]["message_id"].as_str()
                            == Some(&q.to_string())
                        && m.content().contains("**Sources**")
                })
            })
            .count();
        if answered == QUESTIONS || Instant::now() > answered_by {
            break answered;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let rss = std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find_map(|line| {
            line.strip_prefix("VmRSS:")
                .map(str::trim)
                .map(str::to_string)
        })
        .unwrap_or_default();
    let rate_limited = discord.rate_limited_requests().len();
    let unretried = discord.unretried_429s().len();
    engram.stop().expect("engram stops");

    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!("## Conversation freshness: 200 events while 50 answers stream\n");
    println!("| figure | result |");
    println!("|---|---|");
    for kind in ["message", "edit", "delete"] {
        let mut times: Vec<Duration> = results
            .iter()
            .filter(|(k, _)| *k == kind)
            .map(|(_, d)| *d)
            .collect();
        times.sort();
        println!(
            "| {kind}: settled / timed | {} / {} |",
            times.len(),
            match kind {
                "message" => MESSAGES,
                "edit" => EDITS,
                _ => DELETES,
            }
        );
        println!(
            "| {kind} → searchable (or gone) p50 / p99 / max | {:.0} / {:.0} / {:.0} ms |",
            ms(support::percentile(&times, 0.50)),
            ms(support::percentile(&times, 0.99)),
            ms(*times.last().unwrap_or(&Duration::ZERO))
        );
    }
    let mut all: Vec<Duration> = results.iter().map(|(_, d)| *d).collect();
    all.sort();
    println!(
        "| every event: p99 | {:.0} ms (target ≤ 5,000 ms) |",
        ms(support::percentile(&all, 0.99))
    );
    println!(
        "| events not settled within 120 s of the last | {} |",
        pending.len()
    );
    println!("| answers complete, with sources | {answered} / {QUESTIONS} |");
    println!("| 429s served / never sent again | {rate_limited} / {unretried} |");
    println!(
        "| events sent over / all settled after | {:.1} s / {:.1} s |",
        (EVENT_GAP * (MESSAGES + EDITS + DELETES) as u32).as_secs_f64(),
        events_done.as_secs_f64()
    );
    println!("| bench process RSS (engram and the fakes in one process) | {rss} |\n");
}

/// Whether a later event edits (even messages before `2 * EDITS`) or deletes (odd ones
/// before `2 * DELETES`) message `n`.
fn touched(n: usize) -> bool {
    (n % 2 == 0 && n < 2 * EDITS) || (n % 2 == 1 && n < 2 * DELETES)
}

/// The guild's brain with a parking note, bound to the channel with its messages learned.
async fn prepare(config: &Config) -> BrainId {
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
        "Visitors park on level two of the garage. The lifts are next to bay 12.",
    )
    .await;
    let channel = format!("discord:{CHANNEL}");
    store
        .bind_channel(tenant, &channel, brain, BindingMode::Both)
        .await
        .unwrap();
    store
        .set_channel_messages(tenant, &channel, true)
        .await
        .unwrap();
    store.close().await;
    brain
}
