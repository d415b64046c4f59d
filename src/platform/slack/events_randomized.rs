//! Randomized input tests of what turns Slack's payloads into engram's values: Events API
//! bodies and slash-command forms, parsed as the HTTP transport parses them (Socket Mode
//! hands over the same models), then the adapter's own steps — the team's tenant, keys of
//! channels, messages and conversations, the question without the bot's mention, the files
//! of a message, and `/brain` arguments.

use serde_json::{json, Value};

use super::*;
use crate::platform::slack::api::{team_and_channel, ts_and_thread};
use crate::randomized::{check, mutate_json, mutate_text, Rng};

fn seeds() -> Vec<Value> {
    let callback = |event: Value| {
        json!({
            "token": "unused", "team_id": "T0ENGRAM", "api_app_id": "A0ENGRAM",
            "event": event, "type": "event_callback", "event_id": "Ev0001",
            "event_time": 1_700_000_000,
        })
    };
    vec![
        callback(json!({
            "type": "app_mention", "user": "U0ALICE", "channel": "C0GENERAL",
            "ts": "1700000000.000100", "text": "<@U0BOT> where do visitors park?",
        })),
        callback(json!({
            "type": "app_mention", "user": "U0ALICE", "channel": "C0GENERAL",
            "ts": "1700000000.000300", "thread_ts": "1700000000.000100",
            "text": "and <@U0BOT> on weekends?",
        })),
        callback(json!({
            "type": "message", "subtype": "file_share", "channel": "C0GENERAL",
            "user": "U0ALICE", "text": "our parking rules", "ts": "1700000000.000200",
            "channel_type": "channel",
            "files": [{
                "id": "F0PARKING", "name": "parking.md", "title": "Parking",
                "mimetype": "text/markdown",
                "url_private": "https://files.slack.com/files-pri/T0/F0PARKING/parking.md",
                "url_private_download": "https://files.slack.com/files-pri/T0/download/parking.md",
                "permalink": "https://engram.slack.com/files/U0ALICE/F0PARKING/parking.md",
            }, {"id": "F0NOURL", "name": "no-url.pdf"}],
        })),
        callback(json!({
            "type": "message", "channel": "C0GENERAL", "user": "U0BOB",
            "text": "and for visitors?", "ts": "1700000000.000400",
            "thread_ts": "1700000000.000100",
        })),
        callback(json!({
            "type": "message", "subtype": "message_changed", "channel": "C0GENERAL",
            "ts": "1700000000.000500", "hidden": true,
        })),
        json!({"token": "unused", "challenge": "3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P", "type": "url_verification"}),
        json!({"token": "unused", "team_id": "T0ENGRAM", "minute_rate_limited": 1_518_467_820, "api_app_id": "A0ENGRAM", "type": "app_rate_limited"}),
    ]
}

/// The adapter's pure steps on a parsed event, with their promises.
fn check_event(callback: SlackPushEventCallback) {
    let team = callback.team_id.0.clone();
    let Some(tenant_key) = workspace(&team) else {
        return; // Dropped where it arrives: nothing below may see such a team id.
    };
    assert_eq!(tenant(&team), tenant_key);
    match callback.event {
        SlackEventCallbackBody::AppMention(mention) => {
            for bot in [Some("U0BOT"), None] {
                check_question(mention.content.text.as_deref(), bot);
            }
            let (channel, ts) = (mention.channel.0, mention.origin.ts.0);
            let thread = mention.origin.thread_ts.map(|t| t.0);
            check_keys(&team, &channel, &ts, thread.as_deref());
        }
        SlackEventCallbackBody::Message(message) => {
            let content = message.content.unwrap_or_else(SlackMessageContent::new);
            let declared = content.files.as_ref().map_or(0, Vec::len);
            let files = posted_files(content.files.unwrap_or_default());
            assert!(files.len() <= declared);
            for file in &files {
                // Only files with a download link, which the event's URL type checked.
                assert!(file.url.contains("://"), "{}", file.url);
                assert_eq!(
                    file.size, 0,
                    "the event says no size; the download is bounded"
                );
            }
            check_question(content.text.as_deref(), Some("U0BOT"));
            if let Some(channel) = message.origin.channel {
                let thread = message.origin.thread_ts.map(|t| t.0);
                check_keys(&team, &channel.0, &message.origin.ts.0, thread.as_deref());
            }
        }
        _ => {}
    }
}

fn check_question(text: Option<&str>, bot: Option<&str>) {
    let Some(question) = question_text(text, bot) else {
        return;
    };
    let text = text.unwrap_or_default();
    assert!(
        !question.is_empty() && question == question.trim(),
        "{question:?}"
    );
    assert!(question.len() <= text.len());
    if !text.contains("<@") {
        assert_eq!(question, text.trim(), "only a mention is ever taken out");
    }
}

fn check_keys(team: &str, channel: &str, ts: &str, thread: Option<&str>) {
    let key = channel_key(team, channel);
    match team_and_channel(&key) {
        Ok(parts) => assert_eq!(parts, (team, channel)),
        Err(_) => assert!(
            [team, channel]
                .iter()
                .any(|id| id.is_empty() || !id.bytes().all(|b| b.is_ascii_alphanumeric())),
            "{key} refused"
        ),
    }
    if !ts.contains('/') && !thread.is_some_and(|t| t.contains('/')) {
        let message = crate::chat::MessageRef {
            channel: key,
            id: message_id(ts, thread),
        };
        assert_eq!(ts_and_thread(&message), (ts, thread.unwrap_or(ts)));
    }
    let conversation = conversation_key(team, channel, thread.unwrap_or(ts));
    assert!(conversation.starts_with("slack:"));
}

#[test]
fn event_payloads_parse_or_are_refused_cleanly() {
    let seeds = seeds();
    check("slack events", 2500, move |rng| {
        let seed = rng.pick(&seeds);
        let body = if rng.percent(75) {
            mutate_json(rng, seed).to_string()
        } else {
            let text = seed.to_string();
            mutate_text(
                rng,
                &text,
                &text,
                &["\"", "{", "}", "[", "\\u0000", "null", ","],
            )
        };
        // What `http::events` does with a verified body.
        if let Ok(SlackPushEvent::EventCallback(callback)) = serde_json::from_str(&body) {
            check_event(callback);
        }
    });
}

fn form(rng: &mut Rng) -> String {
    let mut fields: Vec<(String, String)> = vec![
        ("token".into(), "unused".into()),
        ("team_id".into(), "T0ENGRAM".into()),
        ("team_domain".into(), "engram".into()),
        ("channel_id".into(), "C0GENERAL".into()),
        ("channel_name".into(), "general".into()),
        ("user_id".into(), "U0ALICE".into()),
        ("user_name".into(), "alice".into()),
        (
            "command".into(),
            (rng.choose(&["/brain", "/ask", "/other", "brain"])).into(),
        ),
        ("text".into(), command_text(rng)),
        ("api_app_id".into(), "A0ENGRAM".into()),
        (
            "response_url".into(),
            "https://hooks.slack.com/commands/T0/1/x".into(),
        ),
        ("trigger_id".into(), "1.2.abc".into()),
    ];
    for _ in 0..rng.range(0, 3) {
        let i = rng.below(fields.len());
        match rng.below(4) {
            0 => {
                fields.remove(i);
            }
            1 => {
                let len = rng.length(80);
                fields[i].1 = rng.string(len);
            }
            2 => {
                let field = fields[i].clone();
                fields.push(field);
            }
            _ => fields[i].1 = "x".repeat(rng.range(1000, 50_000)),
        }
    }
    let body = serde_urlencoded::to_string(&fields).unwrap_or_default();
    if rng.percent(20) {
        mutate_text(
            rng,
            &body,
            &body,
            &["%", "%zz", "&", "=", "+", "%00", "%FF"],
        )
    } else {
        body
    }
}

fn command_text(rng: &mut Rng) -> String {
    let verb = rng.choose(&[
        "create", "CREATE", "link", "Link", "unlink", "list", "info", "forget", "prompt", "usage",
        "budget", "Budget", "", "bogus", "créer",
    ]);
    let mut text = verb.to_string();
    for _ in 0..rng.length(6) {
        text.push(rng.choose(&[' ', ' ', '\t', '\n', '\u{a0}', '\u{3000}']));
        let word = if rng.percent(60) {
            (rng.choose(&[
                "handbook",
                "Handbook",
                "hand-book_2",
                "ask",
                "knowledge",
                "both",
                "KNOWLEDGE",
                "the",
                "file.pdf",
                "a/b",
                "x",
                "12.50",
                "$5",
                "-3",
                "0",
                "0.004",
                "99999999",
            ]))
            .to_string()
        } else {
            let len = rng.length(70);
            rng.string(len)
        };
        text.push_str(&word);
    }
    text
}

#[test]
fn slash_command_forms_parse_or_are_refused_cleanly() {
    check("slack commands", 2500, |rng| {
        let body = form(rng);
        // What `http::commands` does with a verified body.
        let Ok(command) = serde_urlencoded::from_str::<SlackCommandEvent>(&body) else {
            return;
        };
        if workspace(&command.team_id.0).is_none() {
            return;
        }
        let text = command.text.as_deref().unwrap_or("").trim();
        check_keys(&command.team_id.0, &command.channel_id.0, "1.1", None);
        check_brain(text);
    });
}

fn check_brain(text: &str) {
    match parse_brain(text) {
        Ok(BrainCommand::Create { name }) | Ok(BrainCommand::Link { name, .. }) => {
            // A parsed name is one the brain type accepts, taken from the words given.
            assert_eq!(BrainName::parse(name.as_str()), Ok(name.clone()));
            assert!(
                text.split_whitespace().any(|w| w == name.as_str()),
                "{text:?}"
            );
        }
        Ok(BrainCommand::Forget { file }) => {
            assert!(!file.is_empty() && file == file.trim() && text.contains(&file));
        }
        Ok(BrainCommand::Prompt { text: prompt }) => {
            assert!(prompt == prompt.trim() && text.contains(&prompt));
        }
        Ok(BrainCommand::Budget {
            micros: Some(micros),
        }) => {
            // Whole cents, never negative, never over the largest budget.
            assert!(micros % 10_000 == 0 && micros >= 0, "{text:?}: {micros}");
            assert!(
                micros as f64 <= crate::gateway::MAX_BUDGET_USD * 1e6,
                "{text:?}"
            );
        }
        Ok(_) => {}
        Err(help) => assert!(!help.is_empty()),
    }
    // The verb is not case-sensitive.
    let verb = text.split(char::is_whitespace).next().unwrap_or_default();
    let upper = format!("{}{}", verb.to_ascii_uppercase(), &text[verb.len()..]);
    assert_eq!(parse_brain(&upper), parse_brain(text));
}

#[test]
fn brain_arguments_of_any_text_parse_or_get_the_help() {
    check("slack brain text", 3000, |rng| {
        let text = if rng.percent(50) {
            command_text(rng)
        } else {
            let len = rng.length(300);
            rng.string(len)
        };
        check_brain(text.trim());
    });
}

#[test]
fn team_ids_slack_never_sends_are_dropped_not_panicked_on() {
    check("slack team ids", 3000, |rng| {
        let len = rng.length(100);
        let team = if rng.percent(30) {
            "T".repeat(len)
        } else {
            rng.string(len)
        };
        let valid =
            !team.is_empty() && team.len() <= 64 && team.bytes().all(|b| b.is_ascii_alphanumeric());
        assert_eq!(workspace(&team).is_some(), valid, "{team:?}");
        if valid {
            assert_eq!(tenant(&team).as_str(), format!("slack:{team}"));
        }
    });
}

/// Found by the randomized tests: an event whose team id is not a Slack id (here empty, or
/// with a space) reached `tenant`, which panicked the task handling the event.
#[test]
fn an_event_with_a_malformed_team_id_is_refused_before_tenant() {
    for team in ["", "T0 ENGRAM", &"T".repeat(65)] {
        let mut body = seeds()[0].clone();
        body["team_id"] = json!(team);
        let event: SlackPushEvent = serde_json::from_value(body).expect("a valid event");
        let SlackPushEvent::EventCallback(callback) = event else {
            panic!("an event callback");
        };
        assert!(workspace(&callback.team_id.0).is_none());
        check_event(callback);
    }
}
