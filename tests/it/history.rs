//! `/brain history` end to end: engram (`app::start`, the gateway, chat and ingest roles) reads
//! a channel's past from the fake Discord (`GET /channels/{id}/messages`, 100 a page, its
//! rate-limit bucket enforced) and the fake Slack (`conversations.history` /
//! `conversations.replies`, cursors, Tier 3 limits), with threads and files; a restart in the
//! middle continues from the checkpoint without duplicates, and a second read adds only what
//! is new.

use std::time::Duration;

use crate::discord::{quick_llm, Harness};
use crate::fakes::discord::{
    self as fake_discord, Options, RateLimit, SlashCommand, UserMessage, ALICE_ID, BOB_ID, BOT_ID,
    GENERAL_ID,
};

const DAY: Duration = Duration::from_secs(86_400);

/// The bot's messages in `channel` that say `what`, for everyone (not the private replies to
/// commands).
fn bot_messages(h: &Harness, channel: u64, what: &str) -> Vec<fake_discord::StoredMessage> {
    h.discord
        .messages(channel)
        .into_iter()
        .filter(|m| m.author_id == BOT_ID && m.content().contains(what))
        .filter(|m| m.json["flags"].as_u64().unwrap_or(0) & (1 << 6) == 0)
        .collect()
}

/// A member's message from `age` ago, from before engram reads the channel.
fn seed(h: &Harness, channel: u64, author: u64, text: &str, age: Duration) -> u64 {
    h.discord
        .seed_message(&UserMessage::new(channel, author, text), age)
}

/// GETs of `channel`'s messages so far.
fn history_requests(h: &Harness, channel: u64) -> usize {
    let path = format!("/api/v10/channels/{channel}/messages");
    h.discord
        .requests()
        .iter()
        .filter(|r| r.method == "GET" && r.path == path)
        .count()
}

#[test]
fn discord_history_is_read_once_across_a_restart_with_threads_and_files() {
    // One page a second at most: slow enough to stop engram in the middle of the read.
    let options = Options {
        history_limit: Some(RateLimit {
            requests: 1,
            per: Duration::from_millis(800),
        }),
        ..Options::default()
    };
    let mut h = Harness::start_with(options, quick_llm(), |config| {
        config.jobs.shutdown_grace_ms = 200;
    });
    // The channel's past, oldest first: an old fact outside the period read, 250 messages of
    // chatter with a fact among them, a question to the bot and the bot's answer (not
    // knowledge), a thread, a file.
    seed(
        &h,
        GENERAL_ID,
        ALICE_ID,
        "The legacy VPN was retired in March.",
        DAY * 40,
    );
    for i in 0..250u32 {
        let age = DAY * 10 - Duration::from_secs(u64::from(i) * 600);
        let text = if i == 40 {
            "The office wifi password is taped under the fridge.".to_string()
        } else {
            format!("Standup note {i}: nothing blocking.")
        };
        let author = if i % 3 == 0 { BOB_ID } else { ALICE_ID };
        seed(&h, GENERAL_ID, author, &text, age);
    }
    h.discord.seed_message(
        &UserMessage::new(GENERAL_ID, BOB_ID, "where is the wifi password?").mentioning(BOT_ID),
        DAY * 5,
    );
    seed(
        &h,
        GENERAL_ID,
        BOT_ID,
        "The wifi password is in the lobby.",
        DAY * 5,
    );
    let opener = seed(
        &h,
        GENERAL_ID,
        ALICE_ID,
        "Payroll questions go here.",
        DAY * 4,
    );
    h.discord.open_thread(opener, ALICE_ID, "payroll");
    seed(
        &h,
        opener,
        BOB_ID,
        "When does payroll run?",
        DAY * 4 - Duration::from_secs(60),
    );
    seed(
        &h,
        opener,
        ALICE_ID,
        "Payroll runs on the 25th, or the Friday before.",
        DAY * 4 - Duration::from_secs(120),
    );
    let (attachment, _) = h.discord.add_attachment(
        "visitors.md",
        b"# Visitors\n\nVisitors park on level two.\n",
    );
    h.discord.seed_message(
        &UserMessage::new(GENERAL_ID, ALICE_ID, "The visitor notes").with_attachment(attachment),
        DAY * 2,
    );
    h.link(GENERAL_ID);

    let (refused, _) =
        h.command(SlashCommand::new(GENERAL_ID, BOB_ID, "brain").subcommand("history"));
    assert!(refused.contains("Only people who can manage"), "{refused}");
    let (started, private) = h.command(
        SlashCommand::new(GENERAL_ID, ALICE_ID, "brain")
            .subcommand("history")
            .option("days", 30),
    );
    assert!(private, "the start is told to the person who asked");
    assert!(started.contains("the last 30 days"), "{started}");
    let (again, _) =
        h.command(SlashCommand::new(GENERAL_ID, ALICE_ID, "brain").subcommand("history"));
    assert!(again.contains("already reading"), "{again}");

    // Stopped after two pages, started again: the read goes on from its checkpoint.
    h.wait("two pages read", Duration::from_secs(60), |h| {
        (history_requests(h, GENERAL_ID) >= 2).then_some(())
    });
    h.restart();
    let summary = h.wait("the summary", Duration::from_secs(120), |h| {
        bot_messages(h, GENERAL_ID, "Read this channel's history")
            .into_iter()
            .next()
    });
    // 250 notes, the thread's opener and its two replies, the file's words.
    let expected = 250 + 3 + 1;
    assert!(
        summary
            .content()
            .contains(&format!("{expected} new messages")),
        "{}",
        summary.content()
    );
    assert!(
        summary.content().contains("1 file learned"),
        "{}",
        summary.content()
    );
    assert_eq!(
        bot_messages(&h, GENERAL_ID, "📚").len(),
        1,
        "one progress message, edited to its end"
    );
    let stats = h.learned(expected);
    assert_eq!(stats.threads, 1, "{stats:?}");
    assert!(
        h.discord.unretried_429s().is_empty(),
        "every 429 was waited out"
    );

    let prompt = h.prompt_for("where is the office wifi password?");
    assert!(prompt.contains("under the fridge"), "{prompt}");
    assert!(
        !prompt.contains("in the lobby"),
        "the bot's own words are not knowledge: {prompt}"
    );
    let prompt = h.prompt_for("when does payroll run?");
    assert!(
        prompt.contains("on the 25th") && prompt.contains("Payroll questions go here"),
        "{prompt}"
    );
    let prompt = h.prompt_for("when was the legacy VPN retired?");
    assert!(
        !prompt.contains("retired in March"),
        "older than 30 days: {prompt}"
    );
    let prompt = h.prompt_for("where do visitors park?");
    assert!(prompt.contains("level two"), "{prompt}");

    // A second read adds only what is new, and stops where the first began.
    seed(
        &h,
        GENERAL_ID,
        BOB_ID,
        "The new coffee machine is on floor three.",
        Duration::from_secs(30),
    );
    let requests = history_requests(&h, GENERAL_ID);
    let limited = h.discord.rate_limited(GENERAL_ID);
    let (started, _) = h.command(
        SlashCommand::new(GENERAL_ID, ALICE_ID, "brain")
            .subcommand("history")
            .option("days", 30),
    );
    assert!(started.contains("the last 30 days"), "{started}");
    h.wait("the second summary", Duration::from_secs(60), |h| {
        let summaries = bot_messages(h, GENERAL_ID, "Read this channel's history");
        summaries
            .iter()
            .any(|m| m.content().contains("1 new message "))
            .then_some(())
    });
    assert_eq!(
        history_requests(&h, GENERAL_ID) - requests,
        1,
        "one page reaches what was read"
    );
    assert_eq!(
        h.discord.rate_limited(GENERAL_ID),
        limited,
        "no 429 the headers foretold"
    );
    h.learned(expected + 1);

    // All of it: what the first read left out (older than 30 days) too, and nothing twice.
    let (started, _) =
        h.command(SlashCommand::new(GENERAL_ID, ALICE_ID, "brain").subcommand("history"));
    assert!(started.contains("all of it"), "{started}");
    h.wait("the third summary", Duration::from_secs(60), |h| {
        bot_messages(h, GENERAL_ID, "Read this channel's history")
            .iter()
            .any(|m| {
                m.content().contains("1 new message ") && m.content().contains("1 already known")
            })
            .then_some(())
    });
    h.learned(expected + 2);
    let prompt = h.prompt_for("when was the legacy VPN retired?");
    assert!(prompt.contains("retired in March"), "{prompt}");
}

/// The text of the private replies Slack commands got so far.
fn slack_replies(h: &crate::slack::Harness) -> Vec<String> {
    h.slack
        .responses()
        .iter()
        .map(|r| r["text"].as_str().unwrap_or_default().to_string())
        .collect()
}

/// The bot's channel messages on Slack that say `what`.
fn slack_posted(h: &crate::slack::Harness, what: &str) -> Vec<crate::fakes::slack::Message> {
    use crate::fakes::slack::BOT;
    h.slack
        .messages()
        .into_iter()
        .filter(|m| m.user == BOT && m.thread_ts.is_none() && m.text().contains(what))
        .collect()
}

#[test]
fn slack_history_is_read_once_across_a_restart_with_threads_and_files() {
    use crate::fakes::slack::{ALICE, BOB, BOT, GENERAL};
    use crate::slack::{answer_with_buttons, learned, mention, prompt_for, Harness};

    let mut h = Harness::http();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let day = 86_400;
    let seed = |h: &Harness, user: &str, text: &str, at: u64, thread: Option<&str>| {
        h.slack.seed_message(GENERAL, user, text, at, thread, &[])
    };
    seed(
        &h,
        ALICE,
        "The legacy VPN was retired in March.",
        now - 40 * day,
        None,
    );
    // 450 messages: three pages of 200.
    for i in 0..450u64 {
        let text = if i == 100 {
            "The office wifi password is taped under the fridge.".to_string()
        } else {
            format!("Standup note {i}: nothing blocking.")
        };
        let user = if i % 3 == 0 { BOB } else { ALICE };
        seed(&h, user, &text, now - 10 * day + i * 600, None);
    }
    seed(
        &h,
        BOB,
        &format!("<@{BOT}> where is the wifi password?"),
        now - 5 * day,
        None,
    );
    seed(
        &h,
        BOT,
        "The wifi password is in the lobby.",
        now - 5 * day + 1,
        None,
    );
    let opener = seed(&h, ALICE, "Payroll questions go here.", now - 4 * day, None);
    seed(
        &h,
        BOB,
        "When does payroll run?",
        now - 4 * day + 60,
        Some(&opener),
    );
    seed(
        &h,
        ALICE,
        "Payroll runs on the 25th, or the Friday before.",
        now - 4 * day + 120,
        Some(&opener),
    );
    h.slack.add_file(
        "visitors.md",
        b"# Visitors\n\nVisitors park on level two.\n",
    );
    h.slack.seed_message(
        GENERAL,
        ALICE,
        "The visitor notes",
        now - 2 * day,
        None,
        &["visitors.md"],
    );
    h.link_general();

    h.command(BOB, "/brain", "history");
    h.wait("the refusal", Duration::from_secs(20), |h| {
        slack_replies(h)
            .iter()
            .any(|r| r.contains("Only people who can manage"))
            .then_some(())
    });
    h.command(ALICE, "/brain", "history 30");
    h.wait("the start", Duration::from_secs(20), |h| {
        slack_replies(h)
            .iter()
            .any(|r| r.contains("the last 30 days"))
            .then_some(())
    });
    h.wait("a page read", Duration::from_secs(60), |h| {
        (!h.slack.calls_of("conversations.history").is_empty()).then_some(())
    });
    h.restart();
    let summary = h.wait("the summary", Duration::from_secs(120), |h| {
        slack_posted(h, "Read this channel's history")
            .into_iter()
            .next()
    });
    // 450 notes, the thread's opener and its two replies, the file's words.
    let expected = 450 + 3 + 1;
    assert!(
        summary.text().contains(&format!("{expected} new messages")),
        "{}",
        summary.text()
    );
    assert!(
        summary.text().contains("1 file learned"),
        "{}",
        summary.text()
    );
    assert_eq!(slack_posted(&h, "📚").len(), 1, "one progress message");
    let stats = learned(&h, expected);
    assert_eq!(stats.threads, 1, "{stats:?}");
    assert_eq!(h.slack.rate_limited_unforced(), 0, "no 429 at Tier 3");

    let prompt = prompt_for(&h, "where is the office wifi password?");
    assert!(prompt.contains("under the fridge"), "{prompt}");
    assert!(!prompt.contains("in the lobby"), "{prompt}");
    let prompt = prompt_for(&h, "when does payroll run?");
    assert!(prompt.contains("on the 25th"), "{prompt}");
    let prompt = prompt_for(&h, "when was the legacy VPN retired?");
    assert!(!prompt.contains("retired in March"), "{prompt}");
    // Citations link to the messages (Slack permalinks).
    let ts = h.slack.next_ts();
    h.slack.next_ts();
    crate::slack::over_http(
        &h,
        &format!("Ev-cite-{ts}"),
        mention(&ts, BOB, "when does payroll run?"),
    );
    let answer = answer_with_buttons(&h, &ts);
    assert!(
        answer
            .text()
            .contains("https://engram.slack.com/archives/C0GENERAL/p"),
        "{}",
        answer.text()
    );

    // A second read adds only what is new.
    seed(
        &h,
        BOB,
        "The new coffee machine is on floor three.",
        now + 1,
        None,
    );
    let calls = h.slack.calls_of("conversations.history").len();
    h.command(ALICE, "/brain", "history 30");
    h.wait("the second summary", Duration::from_secs(60), |h| {
        slack_posted(h, "Read this channel's history")
            .iter()
            .any(|m| m.text().contains("1 new message "))
            .then_some(())
    });
    assert_eq!(h.slack.calls_of("conversations.history").len() - calls, 1);
    learned(&h, expected + 1);
}
