//! Discord under load: 100 questions (@mentions) at once across 10 channels of one guild,
//! answered by engram (`app::start` with the gateway and chat roles, its real serenity client
//! and REST calls) against the local fake Discord, which enforces 5 message edits per 5 s per
//! channel with Discord's headers and 429s, and a fake LLM streaming 20 tokens/s.
//!
//! Reports: MESSAGE_CREATE → placeholder latency, answers complete and exact, 429s caused, the
//! least time between two edits of one message, and how long the last answer took.
//!
//! ```text
//! cargo bench --bench discord
//! ```
//! Results are recorded in `benches/RESULTS.md`.
#![allow(clippy::print_stdout)]

#[allow(dead_code)] // the binary helpers are for the other benchmarks.
mod support;

#[allow(dead_code)]
#[path = "../tests/it/fake_discord.rs"]
mod fake_discord;
#[allow(dead_code)]
#[path = "../tests/it/fake_openai.rs"]
mod fake_openai;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use engram::app::{self, Role};
use engram::brain::{BindingMode, TenantKey};
use engram::chat::service::Outlets;
use engram::config::{Config, Secret, StoreUrl};
use engram::index::EmbeddedIndex;
use engram::store;

use fake_discord::{
    FakeChannel, FakeDiscord, Options, RateLimit, UserMessage, ALICE_ID, BOT_ID, GUILD_ID,
};
use fake_openai::Behaviour;

const CHANNELS: u64 = 10;
const QUESTIONS: usize = 100;
const EDIT_INTERVAL_MS: u64 = 1000;
const NOTES: &str = "Visitors park on level two of the garage. The lifts are next to bay 12.";
const REPLY: &str = "Visitors park on level two of the garage, next to the lifts by bay \
                     twelve; the entrance is on the north side and the barrier opens for \
                     visitors who pressed the intercom and gave their host's name at the \
                     desk [1].";

fn channel_id(n: u64) -> u64 {
    1_210_000_000_000_001_000 + n
}

fn main() {
    let fakes = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let mut options = Options::default();
    options.guilds[0].channels = (0..CHANNELS)
        .map(|n| FakeChannel::text(channel_id(n), &format!("team-{n}")))
        .collect();
    options.message_limit = Some(RateLimit {
        requests: 5,
        per: Duration::from_secs(5),
    });
    let discord = fakes.block_on(FakeDiscord::start(options));
    let llm = fakes.block_on(fake_openai::start(Behaviour {
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
    config.chat.user_questions_per_minute = 0;
    fakes.block_on(prepare(&config));

    let engram = app::start(&config, &[Role::Gateway, Role::Chat], Outlets::default())
        .expect("engram starts");
    let ready_by = Instant::now() + Duration::from_secs(30);
    while discord.commands(None).is_empty() {
        assert!(Instant::now() < ready_by, "engram never connected");
        std::thread::sleep(Duration::from_millis(20));
    }

    let started = Instant::now();
    let mut asked: Vec<(u64, u64, Instant)> = Vec::new();
    for n in 0..QUESTIONS {
        let channel = channel_id(n as u64 % CHANNELS);
        let event = discord.message_create(
            &UserMessage::new(channel, ALICE_ID, "where do visitors park?").mentioning(BOT_ID),
        );
        let id: u64 = event["id"].as_str().unwrap().parse().unwrap();
        let at = Instant::now();
        discord.dispatch("MESSAGE_CREATE", event);
        asked.push((channel, id, at));
    }

    // Every answer's message, by the question it replies to.
    let answers = |discord: &FakeDiscord| -> HashMap<u64, fake_discord::StoredMessage> {
        let mut found = HashMap::new();
        for n in 0..CHANNELS {
            for message in discord.messages(channel_id(n)) {
                if message.author_id != BOT_ID {
                    continue;
                }
                if let Some(question) = message.json["message_reference"]["message_id"]
                    .as_str()
                    .and_then(|id| id.parse::<u64>().ok())
                {
                    found.insert(question, message);
                }
            }
        }
        found
    };
    let deadline = Instant::now() + Duration::from_secs(600);
    let finished = loop {
        let done = answers(&discord)
            .values()
            .filter(|m| m.content().contains("**Sources**"))
            .count();
        if done >= QUESTIONS || Instant::now() > deadline {
            break done;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let all_done_after = started.elapsed();
    let found = answers(&discord);
    engram.stop().expect("engram stops");

    let expected = format!("{REPLY}\n\n**Sources**\n[1] notes.md — Parking");
    let mut placeholder_latency = Vec::new();
    let mut exact = 0;
    let mut least_gap = Duration::MAX;
    let mut most_edits = 0;
    for (_, question, at) in &asked {
        let Some(message) = found.get(question) else {
            continue;
        };
        placeholder_latency.push(message.versions[0].at.saturating_duration_since(*at));
        if message.content() == expected {
            exact += 1;
        }
        let edits = message.edit_times();
        most_edits = most_edits.max(edits.len());
        for pair in edits.windows(2) {
            least_gap = least_gap.min(pair[1] - pair[0]);
        }
    }
    placeholder_latency.sort();
    let rate_limited: usize = (0..CHANNELS)
        .map(|n| discord.rate_limited(channel_id(n)))
        .sum();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    let pct = |p: f64| {
        let i = ((placeholder_latency.len() as f64 * p).ceil() as usize)
            .clamp(1, placeholder_latency.len().max(1))
            - 1;
        placeholder_latency.get(i).copied().unwrap_or_default()
    };
    println!("## Discord: 100 questions across 10 channels\n");
    println!("| figure | result |");
    println!("|---|---|");
    println!("| answers complete | {finished} / {QUESTIONS} ({exact} exact) |");
    println!(
        "| MESSAGE_CREATE → placeholder p50 / p99 / max | {:.1} / {:.1} / {:.1} ms |",
        ms(pct(0.50)),
        ms(pct(0.99)),
        ms(*placeholder_latency.last().unwrap_or(&Duration::ZERO))
    );
    println!("| 429s caused | {rate_limited} |");
    println!(
        "| least time between two edits of one message | {:.0} ms (edit_interval_ms = {EDIT_INTERVAL_MS}) |",
        ms(least_gap)
    );
    println!("| most edits of one message | {most_edits} |");
    println!(
        "| last answer complete after | {:.1} s |",
        all_done_after.as_secs_f64()
    );
}

/// One guild's brain with the parking notes, bound to every channel.
async fn prepare(config: &Config) {
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
    for n in 0..CHANNELS {
        store
            .bind_channel(
                tenant,
                &format!("discord:{}", channel_id(n)),
                brain,
                BindingMode::Ask,
            )
            .await
            .unwrap();
    }
    store.close().await;
}
