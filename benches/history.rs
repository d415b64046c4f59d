//! Conversation knowledge, history: how fast `/brain history` reads a server's past, and what
//! it costs. `engram serve` (the release binary, its own process, SQLite and the embedded
//! index, every role) against the local fake Discord enforcing its documented limits (a
//! channel's messages 5 reads per 5 s, 50 requests a second in all), then against the fake
//! Slack enforcing Tier 3 (50 calls a minute per method per workspace). Each holds 20,000
//! messages across 10 channels — 2,000 of them in 100 threads — and 20 files; a manager runs
//! `/brain history` in every channel at once. Measured: the wall time until every channel's
//! summary is posted (and until every conversation unit is learned), messages a second, 429s
//! served (and whether each was sent again), and engram's peak RSS (`VmHWM`).
//!
//! ```text
//! cargo build --release --workspace
//! cargo bench --bench history
//! ```
//! Results are recorded in `benches/RESULTS.md`.
#![allow(clippy::print_stdout)]

#[allow(dead_code)] // the binary helpers are for the other benchmarks.
mod support;

#[path = "../tests/it/fakes/mod.rs"]
#[allow(dead_code)]
mod fakes;

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use engram::brain::{BindingMode, BrainName, TenantKey};
use engram::config::StoreConfig;
use engram::store;

use fakes::discord::{
    FakeChannel, FakeDiscord, Options, SlashCommand, UserMessage, ALICE_ID, BOB_ID, BOT_ID,
    GUILD_ID,
};
use fakes::slack::{self as fake_slack, FakeSlack};

const CHANNELS: u64 = 10;
/// Per channel: 1,800 messages of chatter and 10 threads of 20 replies (2,000 in all).
const CHATTER: u64 = 1_800;
const THREADS: u64 = 10;
const REPLIES: u64 = 20;
const FILES: u64 = 2;
const FIRST_CHANNEL: u64 = 1_210_000_000_000_002_000;

fn main() {
    let fakes = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let extractor = support::release_binary("engram-extract");
    let engram = support::release_binary("engram");
    println!(
        "## History read: 20,000 messages (2,000 in 100 threads) and 20 files in 10 channels\n"
    );
    println!("| platform | summaries posted | all learned | messages/s (read) | 429s served / not sent again | engram peak RSS |");
    println!("|---|---|---|---|---|---|");
    discord(&fakes, &engram, &extractor);
    slack(&fakes, &engram, &extractor);
}

/// The text of chatter message `n` of a channel: a few words, one of them its own.
fn chatter(channel: u64, n: u64) -> String {
    format!("Channel {channel} note {n}: the deploy checklist item zq{channel}x{n} is done.")
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn discord(fakes: &tokio::runtime::Runtime, engram: &Path, extractor: &Path) {
    let mut options = Options::default();
    options.guilds[0].channels = (0..CHANNELS)
        .map(|c| FakeChannel::text(FIRST_CHANNEL + c, &format!("team-{c}")))
        .collect();
    let discord = fakes.block_on(FakeDiscord::start(options));
    // Oldest first, over the last 30 days.
    let total = CHATTER + THREADS * (REPLIES + 1);
    for c in 0..CHANNELS {
        let channel = FIRST_CHANNEL + c;
        let step = Duration::from_secs(30 * 86_400 / total);
        let mut age = Duration::from_secs(30 * 86_400);
        for n in 0..CHATTER {
            age -= step;
            let mut message = UserMessage::new(
                channel,
                if n % 2 == 0 { ALICE_ID } else { BOB_ID },
                &chatter(c, n),
            );
            if n < FILES {
                let (attachment, _) = discord.add_attachment(
                    &format!("notes-{c}-{n}.md"),
                    format!(
                        "# Notes {c}-{n}\n\nThe on-call rota for team {c} changes on day {n}.\n"
                    )
                    .as_bytes(),
                );
                message = message.with_attachment(attachment);
            }
            let id = discord.seed_message(&message, age);
            if n % (CHATTER / THREADS) == 7 {
                discord.open_thread(id, ALICE_ID, "discussion");
                for r in 0..REPLIES {
                    age -= step;
                    let text = format!("Reply {r} in thread {id}: agreed, zq{c}t{n}r{r}.");
                    discord.seed_message(&UserMessage::new(id, BOB_ID, &text), age);
                }
            }
        }
    }
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("engram.db");
    let channels: Vec<String> = (0..CHANNELS)
        .map(|c| format!("discord:{}", FIRST_CHANNEL + c))
        .collect();
    fakes.block_on(bind(&db, &format!("discord:{GUILD_ID}"), &channels));
    let config = format!(
        "[store]\nurl = \"sqlite://{db}\"\n\n[discord]\ntoken = \"{token}\"\nproxy_url = \"{rest}\"\n\n\
         [ingest]\nextractor = \"{extractor}\"\n\n[http]\nlisten = \"127.0.0.1:0\"\n\n[log]\nformat = \"text\"\n",
        db = db.display(),
        token = discord.token(),
        rest = discord.rest_url(),
        extractor = extractor.display(),
    );
    let mut child = serve(engram, dir.path(), &config);
    let ready_by = Instant::now() + Duration::from_secs(60);
    while discord.commands(None).is_empty() {
        assert!(
            Instant::now() < ready_by,
            "engram never connected to the fake Discord"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    for c in 0..CHANNELS {
        let command = SlashCommand::new(FIRST_CHANNEL + c, ALICE_ID, "brain").subcommand("history");
        discord.dispatch("INTERACTION_CREATE", discord.interaction_create(&command));
    }
    let summaries = || {
        (0..CHANNELS)
            .filter(|c| {
                discord.messages(FIRST_CHANNEL + c).iter().any(|m| {
                    m.author_id == BOT_ID && m.content().contains("Read this channel's history")
                })
            })
            .count() as u64
    };
    let read = wait_for(
        &mut child,
        "every summary",
        Duration::from_secs(1800),
        || summaries() == CHANNELS,
    );
    let learned = wait_learned(&mut child, fakes, &db, &format!("discord:{GUILD_ID}"));
    let peak = peak_rss(&child);
    let served = discord.rate_limited_requests().len();
    let unretried = discord.unretried_429s().len();
    stop(child);
    report("Discord", read, learned, served, unretried, &peak);
}

fn slack(fakes: &tokio::runtime::Runtime, engram: &Path, extractor: &Path) {
    let slack = fakes.block_on(FakeSlack::start(fake_slack::Options::default()));
    let now = unix_now();
    let total = CHATTER + THREADS * (REPLIES + 1);
    let channel_id = |c: u64| format!("C0TEAM{c}");
    for c in 0..CHANNELS {
        let channel = channel_id(c);
        let mut at = now - 30 * 86_400;
        let step = 30 * 86_400 / total;
        for n in 0..CHATTER {
            at += step;
            let user = if n % 2 == 0 {
                fake_slack::ALICE
            } else {
                fake_slack::BOB
            };
            let files: Vec<String> = if n < FILES {
                let name = format!("notes-{c}-{n}.md");
                slack.add_file(
                    &name,
                    format!(
                        "# Notes {c}-{n}\n\nThe on-call rota for team {c} changes on day {n}.\n"
                    )
                    .as_bytes(),
                );
                vec![name]
            } else {
                Vec::new()
            };
            let files: Vec<&str> = files.iter().map(String::as_str).collect();
            let ts = slack.seed_message(&channel, user, &chatter(c, n), at, None, &files);
            if n % (CHATTER / THREADS) == 7 {
                for r in 0..REPLIES {
                    at += step;
                    let text = format!("Reply {r} in thread {ts}: agreed, zq{c}t{n}r{r}.");
                    slack.seed_message(&channel, fake_slack::BOB, &text, at, Some(&ts), &[]);
                }
            }
        }
    }
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("engram.db");
    let team = fake_slack::TEAM;
    let channels: Vec<String> = (0..CHANNELS)
        .map(|c| format!("slack:{team}:{}", channel_id(c)))
        .collect();
    fakes.block_on(bind(&db, &format!("slack:{team}"), &channels));
    let api: SocketAddr = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|probe| probe.local_addr())
        .unwrap();
    let config = format!(
        "[store]\nurl = \"sqlite://{db}\"\n\n[slack]\nbot_token = \"{token}\"\nsigning_secret = \"{secret}\"\n\
         api_url = \"{url}\"\nmode = \"http\"\n\n[ingest]\nextractor = \"{extractor}\"\n\n\
         [http]\nlisten = \"{api}\"\n\n[log]\nformat = \"text\"\n",
        db = db.display(),
        token = fake_slack::BOT_TOKEN,
        secret = fake_slack::SIGNING_SECRET,
        url = slack.api_url(),
        extractor = extractor.display(),
    );
    let mut child = serve(engram, dir.path(), &config);
    wait_for(&mut child, "engram's API", Duration::from_secs(60), || {
        std::net::TcpStream::connect(api).is_ok()
    });
    for c in 0..CHANNELS {
        let mut fields = fake_slack::command(&slack, fake_slack::ALICE, "/brain", "history");
        for (key, value) in &mut fields {
            if key == "channel_id" {
                *value = channel_id(c);
            }
        }
        let body = serde_urlencoded::to_string(&fields).unwrap();
        let timestamp = unix_now().to_string();
        let headers = [
            (
                "Content-Type",
                "application/x-www-form-urlencoded".to_string(),
            ),
            ("X-Slack-Request-Timestamp", timestamp.clone()),
            (
                "X-Slack-Signature",
                fake_slack::signature(fake_slack::SIGNING_SECRET, &timestamp, &body),
            ),
        ];
        let (status, _, _) = fake_slack::http_post(api, "/slack/commands", &headers, &body);
        assert_eq!(status, 200, "the command is acknowledged");
    }
    let summaries = || {
        slack
            .messages()
            .iter()
            .filter(|m| {
                m.user == fake_slack::BOT && m.text().contains("Read this channel's history")
            })
            .count() as u64
    };
    let read = wait_for(
        &mut child,
        "every summary",
        Duration::from_secs(1800),
        || summaries() == CHANNELS,
    );
    let learned = wait_learned(&mut child, fakes, &db, &format!("slack:{team}"));
    let peak = peak_rss(&child);
    let served = slack.rate_limited_unforced();
    stop(child);
    report("Slack (Tier 3)", read, learned, served, 0, &peak);
}

/// The brain `handbook` of `tenant`, bound to `channels` with their messages learned.
async fn bind(db: &Path, tenant: &str, channels: &[String]) {
    let config = store_config(db);
    let store = store::open(&config).await.expect("store");
    let tenant = store
        .ensure_tenant(&TenantKey::parse(tenant).unwrap())
        .await
        .unwrap();
    let brain = store
        .create_brain(tenant, &BrainName::parse("handbook").unwrap())
        .await
        .unwrap();
    for channel in channels {
        store
            .bind_channel(tenant, channel, brain.id, BindingMode::Both)
            .await
            .unwrap();
        store
            .set_channel_messages(tenant, channel, true)
            .await
            .unwrap();
    }
    store.close().await;
}

fn serve(engram: &Path, dir: &Path, config: &str) -> Child {
    let path = dir.join("engram.toml");
    std::fs::write(&path, config).unwrap();
    let log = std::fs::File::create(dir.join("engram.log")).unwrap();
    Command::new(engram)
        .arg("serve")
        .arg("--config")
        .arg(&path)
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("engram serve starts")
}

/// Waits for `done`, failing if engram exits first; returns how long it took.
fn wait_for(
    child: &mut Child,
    what: &str,
    limit: Duration,
    mut done: impl FnMut() -> bool,
) -> Duration {
    let started = Instant::now();
    while !done() {
        assert!(started.elapsed() < limit, "timed out waiting for {what}");
        if let Ok(Some(status)) = child.try_wait() {
            panic!("engram exited ({status}) while waiting for {what}");
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    started.elapsed()
}

/// Waits until every conversation unit of the tenant's brain is learned; returns when.
fn wait_learned(
    child: &mut Child,
    fakes: &tokio::runtime::Runtime,
    db: &Path,
    tenant: &str,
) -> (Duration, u64) {
    let config = store_config(db);
    let store = fakes.block_on(store::connect(&config)).expect("store");
    let tenant = TenantKey::parse(tenant).unwrap();
    let mut messages = 0;
    let took = wait_for(
        child,
        "every unit learned",
        Duration::from_secs(1800),
        || {
            let stats = fakes.block_on(async {
                let tenant = store.find_tenant(&tenant).await.ok()??;
                let brain = store
                    .brain_by_name(tenant, &BrainName::parse("handbook").unwrap())
                    .await
                    .ok()??;
                store.conversation_stats(brain.id).await.ok()
            });
            stats.is_some_and(|stats| {
                messages = stats.messages;
                stats.changed == 0 && stats.messages > 0
            })
        },
    );
    (took, messages)
}

fn store_config(db: &Path) -> StoreConfig {
    let mut config = engram::config::Config::defaults().store;
    config.url = engram::config::StoreUrl::new(format!("sqlite://{}", db.display()));
    config
}

/// engram's peak resident memory, from `/proc/<pid>/status`.
fn peak_rss(child: &Child) -> String {
    std::fs::read_to_string(format!("/proc/{}/status", child.id()))
        .unwrap_or_default()
        .lines()
        .find_map(|line| {
            line.strip_prefix("VmHWM:")
                .map(str::trim)
                .map(str::to_string)
        })
        .unwrap_or_default()
}

fn stop(mut child: Child) {
    // SIGTERM: a graceful stop.
    let _ = Command::new("kill").arg(child.id().to_string()).status();
    let _ = child.wait();
}

fn report(
    platform: &str,
    read: Duration,
    learned: (Duration, u64),
    served: usize,
    unretried: usize,
    peak: &str,
) {
    let (learned, messages) = learned;
    println!(
        "| {platform} | {:.1} s | {:.1} s ({messages} messages) | {:.0} | {served} / {unretried} | {peak} |",
        read.as_secs_f64(),
        learned.as_secs_f64(),
        messages as f64 / read.as_secs_f64(),
    );
}
