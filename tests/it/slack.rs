//! engram on Slack, end to end: `app::start` (what `engram serve` runs) with its real
//! slack-morphism client against the local fake Slack (Web API, files, Socket Mode), answers
//! from the fake OpenAI server, files read by the real extractor. HTTP mode requests are
//! signed here exactly as Slack signs them.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use engram::app::{self, Role, Running};
use engram::chat::service::Outlets;
use engram::config::{Config, Secret, SlackMode, StoreUrl};
use serde_json::{json, Value};

use crate::fakes::openai::{self as fake_openai, Behaviour, FakeOpenAi};
use crate::fakes::slack::{
    self as fake_slack, event_callback, http_post as post, FakeSlack, Options, ALICE, APP_TOKEN,
    BOB, BOT, BOT_TOKEN, GENERAL, SIGNING_SECRET, TEAM,
};

pub(crate) const REPLY: &str = "Visitors park on level two of the garage [1].";

pub(crate) struct Harness {
    _fakes: tokio::runtime::Runtime,
    pub(crate) slack: FakeSlack,
    pub(crate) llm: FakeOpenAi,
    engram: Option<Running>,
    addr: Option<SocketAddr>,
    /// engram's configuration, to start it again on the same store.
    pub(crate) config: Config,
    _dir: tempfile::TempDir,
}

impl Harness {
    fn start(mode: SlackMode, options: Options, behaviour: Behaviour) -> Self {
        Self::start_with(mode, options, behaviour, |_| {})
    }

    /// As `start`, with `configure` changing engram's configuration first.
    pub(crate) fn start_with(
        mode: SlackMode,
        options: Options,
        behaviour: Behaviour,
        configure: impl FnOnce(&mut Config),
    ) -> Self {
        let fakes = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let slack = fakes.block_on(FakeSlack::start(options));
        let llm = fakes.block_on(fake_openai::start(behaviour));
        let dir = tempfile::tempdir().unwrap();
        let mut config = Config::defaults();
        config.store.url = StoreUrl::new(format!("sqlite://{}/engram.db", dir.path().display()));
        config.slack.bot_token = Secret::new(BOT_TOKEN);
        config.slack.api_url = slack.api_url();
        config.slack.mode = mode;
        match mode {
            SlackMode::Http => config.slack.signing_secret = Secret::new(SIGNING_SECRET),
            SlackMode::Socket => config.slack.app_token = Secret::new(APP_TOKEN),
        }
        config.http.listen = "127.0.0.1:0".parse().unwrap();
        config.llm.base_url = llm.base_url();
        config.llm.model = "fake-model".into();
        config.chat.edit_interval_ms = 200;
        config.ingest.extractor = crate::ingest::extractor().display().to_string();
        configure(&mut config);
        let engram = app::start(&config, &Role::ALL, Outlets::default()).expect("engram starts");
        let addr = engram.api_addr();
        Self {
            _fakes: fakes,
            slack,
            llm,
            engram: Some(engram),
            addr,
            config,
            _dir: dir,
        }
    }

    /// Stops engram and starts it again on the same store: nothing is kept in memory.
    pub(crate) fn restart(&mut self) {
        if let Some(engram) = self.engram.take() {
            engram.stop().expect("engram stops");
        }
        let engram =
            app::start(&self.config, &Role::ALL, Outlets::default()).expect("engram starts again");
        self.addr = engram.api_addr();
        self.engram = Some(engram);
    }

    pub(crate) fn http() -> Self {
        Self::start(SlackMode::Http, Options::default(), quick_llm())
    }

    pub(crate) fn wait<T>(
        &self,
        what: &str,
        limit: Duration,
        mut check: impl FnMut(&Self) -> Option<T>,
    ) -> T {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(found) = check(self) {
                return found;
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}; calls: {:#?}",
                self.slack
                    .calls()
                    .iter()
                    .map(|c| format!("{} → {}", c.method, c.status))
                    .collect::<Vec<_>>()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// POSTs a body signed as Slack signs it; returns status, body and how long the answer took.
    fn signed(&self, path: &str, content_type: &str, body: &str) -> (u16, String, Duration) {
        let timestamp = unix_now().to_string();
        let signature = fake_slack::signature(SIGNING_SECRET, &timestamp, body);
        let headers = [
            ("Content-Type", content_type.to_string()),
            ("X-Slack-Request-Timestamp", timestamp),
            ("X-Slack-Signature", signature),
        ];
        post(self.addr.unwrap(), path, &headers, body)
    }

    /// Delivers an event over HTTP; it must be acknowledged with 200.
    fn event(&self, event_id: &str, event: Value) {
        let body = event_callback(event_id, event).to_string();
        let (status, _, _) = self.signed("/slack/events", "application/json", &body);
        assert_eq!(status, 200);
    }

    /// Runs a slash command over HTTP; returns how long the acknowledgement took.
    pub(crate) fn command(&self, user: &str, name: &str, text: &str) -> Duration {
        let fields = fake_slack::command(&self.slack, user, name, text);
        let body = serde_urlencoded::to_string(&fields).unwrap();
        let (status, _, took) = self.signed(
            "/slack/commands",
            "application/x-www-form-urlencoded",
            &body,
        );
        assert_eq!(status, 200, "the command is acknowledged");
        took
    }

    /// The bot's top-level message with this text, once posted.
    pub(crate) fn posted(&self, what: &str, contains: &str) -> fake_slack::Message {
        self.wait(what, Duration::from_secs(20), |h| {
            h.slack
                .messages()
                .into_iter()
                .find(|m| m.thread_ts.is_none() && m.user == BOT && m.text().contains(contains))
        })
    }

    pub(crate) fn link_general(&self) {
        self.command(ALICE, "/brain", "create handbook");
        self.posted("the brain created", "Created the brain `handbook`");
        self.command(ALICE, "/brain", "link handbook both");
        self.posted("the channel linked", "now uses the brain `handbook`");
    }

    /// Shares the parking notes in #general; waits for ✅; returns the message's ts.
    pub(crate) fn teach_parking(&self, deliver: impl Fn(&Self, &str, Value)) -> String {
        let url = self.slack.add_file(
            "parking.md",
            b"# Parking\n\nVisitors park on level two of the garage.\n",
        );
        let ts = self.slack.next_ts();
        let event = json!({
            "type": "message", "subtype": "file_share", "channel": GENERAL, "user": ALICE,
            "text": "our parking rules", "ts": ts, "channel_type": "channel",
            "files": [{
                "id": "F0PARKING", "name": "parking.md", "mimetype": "text/markdown",
                "url_private": url, "url_private_download": url,
                "permalink": "https://engram.slack.com/files/U0ALICE/F0PARKING/parking.md",
            }],
        });
        deliver(self, &format!("Ev{ts}"), event);
        self.wait("✅ on the file", Duration::from_secs(30), |h| {
            h.slack
                .reactions(&ts)
                .contains(&"white_check_mark".to_string())
                .then_some(())
        });
        ts
    }

    /// The answer streamed (or edited) in `thread`, once it carries the sources.
    pub(crate) fn answer_in(&self, thread: &str) -> fake_slack::Message {
        self.wait("the answer", Duration::from_secs(30), |h| {
            h.slack
                .thread(thread)
                .into_iter()
                .find(|m| !m.deleted && !m.streaming && m.text().contains("Sources"))
        })
    }
}

impl Drop for Harness {
    fn drop(&mut self) {
        if let Some(engram) = self.engram.take() {
            let _ = engram.stop();
        }
    }
}

pub(crate) fn quick_llm() -> Behaviour {
    Behaviour {
        reply: REPLY.into(),
        token_interval: Duration::from_millis(40),
        ..Behaviour::default()
    }
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

pub(crate) fn over_http(h: &Harness, event_id: &str, event: Value) {
    h.event(event_id, event);
}

pub(crate) fn mention(ts: &str, user: &str, text: &str) -> Value {
    json!({
        "type": "app_mention", "user": user, "channel": GENERAL, "ts": ts,
        "text": format!("<@{BOT}> {text}"),
    })
}

#[test]
fn slack_http_commands_files_and_a_streamed_answer_with_sources() {
    let h = Harness::http();
    // Management needs a workspace admin (or slack.admins): told privately.
    h.command(BOB, "/brain", "create handbook");
    let refusal = h.wait("the refusal", Duration::from_secs(10), |h| {
        h.slack.responses().into_iter().next()
    });
    assert!(
        refusal["text"].as_str().unwrap().contains("manage"),
        "{refusal}"
    );
    h.link_general();

    // A file: ⏳ then ✅ and a summary in its thread.
    let file = h.teach_parking(over_http);
    let summary = h.wait("the summary", Duration::from_secs(10), |h| {
        h.slack.thread(&file).into_iter().next()
    });
    assert_eq!(summary.text(), "📚 Learned parking.md: 1 page, 1 chunk.");
    let reacted: Vec<String> = h
        .slack
        .calls_of("reactions.add")
        .iter()
        .map(|c| c.body["name"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(reacted, ["hourglass_flowing_sand", "white_check_mark"]);
    assert!(!h
        .slack
        .reactions(&file)
        .contains(&"hourglass_flowing_sand".into()));

    // /ask: acknowledged at once, the question shown, the answer streamed in its thread.
    let took = h.command(BOB, "/ask", "where do visitors park?");
    assert!(took < Duration::from_secs(3), "acked in {took:?}");
    let asked = h.posted("the question shown", "asked: where do visitors park?");
    let answer = h.answer_in(&asked.ts);
    assert!(answer.streamed, "streamed with chat.startStream");
    assert_eq!(
        answer.text(),
        format!(
            "{REPLY}\n\n*Sources*\n[1] [parking.md](https://engram.slack.com/files/U0ALICE/F0PARKING/parking.md) — Parking"
        )
    );
    assert!(
        answer.versions.len() >= 2,
        "grown by appends: {:?}",
        answer.versions
    );
    let starts = h.slack.calls_of("chat.startStream");
    assert_eq!(starts[0].body["recipient_user_id"], BOB);
    assert_eq!(starts[0].body["recipient_team_id"], TEAM);
    let thread = h.slack.thread(&asked.ts);
    assert!(
        thread.iter().filter(|m| !m.deleted).count() == 1,
        "the placeholder gave way to the stream: {thread:#?}"
    );

    // A reply in the answer's thread continues the conversation without a mention.
    let follow_up = h.slack.next_ts();
    h.event(
        "Ev-follow-up",
        json!({
            "type": "message", "channel": GENERAL, "user": BOB, "ts": follow_up,
            "thread_ts": asked.ts, "text": "and do visitors park there on weekends?", "channel_type": "channel",
        }),
    );
    h.wait("the follow-up's answer", Duration::from_secs(30), |h| {
        (h.slack
            .thread(&asked.ts)
            .iter()
            .filter(|m| !m.deleted && m.text().contains("Sources"))
            .count()
            == 2)
            .then_some(())
    });
    let inputs = h.llm.inputs.lock().unwrap().clone();
    assert!(
        inputs
            .iter()
            .any(|input| input == "where do visitors park?"),
        "the follow-up's prompt has the first question: {inputs:#?}"
    );
    assert_eq!(h.slack.rate_limited_unforced(), 0, "no 429 caused");
}

#[test]
fn slack_http_the_same_event_twice_is_answered_once() {
    let h = Harness::http();
    h.link_general();
    h.teach_parking(over_http);
    let ts = h.slack.next_ts();
    let event = mention(&ts, BOB, "where do visitors park?");
    h.event("Ev-twice", event.clone());
    h.event("Ev-twice", event);
    h.answer_in(&ts);
    // A later question is answered too, so both deliveries have long been handled.
    let later = h.slack.next_ts();
    h.event(
        "Ev-later",
        mention(&later, BOB, "where do visitors park on weekends?"),
    );
    h.answer_in(&later);
    let answers = h.slack.thread(&ts);
    assert_eq!(
        answers.iter().filter(|m| !m.deleted).count(),
        1,
        "one answer, however often the event arrived: {answers:#?}"
    );
    assert_eq!(
        answers
            .iter()
            .filter(|m| m.versions[0] == "💭 Thinking…")
            .count(),
        1,
        "and only one placeholder was ever posted: {answers:#?}"
    );
}

#[test]
fn slack_http_without_streaming_falls_back_to_chat_update() {
    let h = Harness::start(
        SlackMode::Http,
        Options {
            streaming: false,
            ..Options::default()
        },
        Behaviour {
            reply: format!("{REPLY} <!here>"),
            token_interval: Duration::from_millis(40),
            ..Behaviour::default()
        },
    );
    h.link_general();
    h.teach_parking(over_http);
    let questions = [
        "where do visitors park?",
        "where do visitors park at night?",
    ];
    for (n, question) in questions.iter().enumerate() {
        let ts = h.slack.next_ts();
        h.event(&format!("Ev-q{n}"), mention(&ts, BOB, question));
        let answer = h.answer_in(&ts);
        assert!(!answer.streamed);
        assert_eq!(answer.versions[0], "💭 Thinking…");
        assert!(answer.versions.len() >= 2, "grown by chat.update");
        assert!(answer.text().starts_with(REPLY), "{}", answer.text());
        assert!(
            answer.versions.iter().all(|text| !text.contains("<!here")),
            "never pings: {:?}",
            answer.versions
        );
        assert!(
            answer.text().contains(
                "*Sources*\n[1] <https://engram.slack.com/files/U0ALICE/F0PARKING/parking.md|parking.md>"
            ),
            "{}",
            answer.text()
        );
    }
    assert_eq!(
        h.slack.calls_of("chat.startStream").len(),
        1,
        "the workspace's missing streaming is remembered"
    );
    assert!(h.slack.calls_of("chat.update").len() >= 4);
}

#[test]
fn slack_http_refuses_unsigned_forged_and_stale_requests_without_doing_anything() {
    let h = Harness::http();
    let addr = h.addr.unwrap();
    let body =
        event_callback("Ev-forged", mention("1.1", BOB, "where do visitors park?")).to_string();
    let now = unix_now().to_string();
    let stale = (unix_now() - 600).to_string();
    let cases: Vec<(&str, Vec<(&str, String)>)> = vec![
        ("no headers", vec![]),
        (
            "no signature",
            vec![("X-Slack-Request-Timestamp", now.clone())],
        ),
        (
            "a forged signature",
            vec![
                ("X-Slack-Request-Timestamp", now.clone()),
                (
                    "X-Slack-Signature",
                    fake_slack::signature("not-the-secret", &now, &body),
                ),
            ],
        ),
        (
            "a stale timestamp",
            vec![
                ("X-Slack-Request-Timestamp", stale.clone()),
                (
                    "X-Slack-Signature",
                    fake_slack::signature(SIGNING_SECRET, &stale, &body),
                ),
            ],
        ),
    ];
    for path in ["/slack/events", "/slack/commands", "/slack/interactions"] {
        for (case, headers) in &cases {
            let (status, _, _) = post(addr, path, headers, &body);
            assert_eq!(status, 401, "{case} at {path}");
        }
    }
    // The body signed for another timestamp does not pass either.
    let (status, _, _) = post(
        addr,
        "/slack/events",
        &[
            ("X-Slack-Request-Timestamp", now.clone()),
            (
                "X-Slack-Signature",
                fake_slack::signature(SIGNING_SECRET, &stale, &body),
            ),
        ],
        &body,
    );
    assert_eq!(status, 401);
    // A signed URL verification is answered with its challenge.
    let challenge = json!({"type": "url_verification", "token": "x", "challenge": "c-123"});
    let (status, answer, _) = h.signed("/slack/events", "application/json", &challenge.to_string());
    assert_eq!(status, 200);
    assert_eq!(
        serde_json::from_str::<Value>(&answer).unwrap()["challenge"],
        "c-123"
    );
    std::thread::sleep(Duration::from_millis(300));
    // `auth.test` is engram checking its own connection (for `/readyz`), not work.
    let work: Vec<_> = h
        .slack
        .calls()
        .into_iter()
        .filter(|call| call.method != "auth.test")
        .collect();
    assert!(work.is_empty(), "no work was done: {work:#?}");
}

#[test]
fn slack_http_rate_limits_are_waited_out_and_the_answer_completes() {
    let mut options = Options::default();
    options.force_429.insert("chat.appendStream", 2);
    options.force_429.insert("reactions.add", 1);
    let h = Harness::start(
        SlackMode::Http,
        options,
        Behaviour {
            reply: REPLY.into(),
            token_interval: Duration::from_millis(80),
            ..Behaviour::default()
        },
    );
    h.link_general();
    h.teach_parking(over_http);
    let ts = h.slack.next_ts();
    h.event("Ev-limited", mention(&ts, BOB, "where do visitors park?"));
    let answer = h.answer_in(&ts);
    assert!(answer.text().starts_with(REPLY), "{}", answer.text());
    for method in ["chat.appendStream", "reactions.add"] {
        let calls = h.slack.calls_of(method);
        let limited = calls.iter().position(|c| c.status == 429).unwrap();
        let next = &calls[limited + 1];
        assert!(
            next.at - calls[limited].at >= Duration::from_millis(950),
            "{method}: Retry-After waited out"
        );
    }
    assert_eq!(h.slack.rate_limited_unforced(), 0, "no further 429 caused");
}

#[test]
fn slack_socket_mode_answers_a_mention_end_to_end() {
    // Generated text tries to ping the channel: streamed, it must not.
    let reply = format!("{REPLY} <!channel> <!here|here> <!everyone>");
    let h = Harness::start(
        SlackMode::Socket,
        Options::default(),
        Behaviour {
            reply: reply.clone(),
            token_interval: Duration::from_millis(40),
            ..Behaviour::default()
        },
    );
    h.wait("a Socket Mode connection", Duration::from_secs(20), |h| {
        (h.slack.live_sockets() >= 1).then_some(())
    });
    let command = |text: &str| {
        let fields: serde_json::Map<String, Value> =
            fake_slack::command(&h.slack, ALICE, "/brain", text)
                .into_iter()
                .map(|(k, v)| (k, Value::String(v)))
                .collect();
        let id = h
            .slack
            .send_envelope("slash_commands", Value::Object(fields));
        h.wait("the command acked", Duration::from_secs(10), |h| {
            h.slack.acked(&id).then_some(())
        });
    };
    command("create handbook");
    h.posted("the brain created", "Created the brain `handbook`");
    command("link handbook both");
    h.posted("the channel linked", "now uses the brain `handbook`");
    let over_socket = |h: &Harness, event_id: &str, event: Value| {
        let id = h
            .slack
            .send_envelope("events_api", event_callback(event_id, event));
        h.wait("the event acked", Duration::from_secs(10), |h| {
            h.slack.acked(&id).then_some(())
        });
    };
    h.teach_parking(over_socket);
    let ts = h.slack.next_ts();
    over_socket(
        &h,
        "Ev-socket",
        mention(&ts, BOB, "where do visitors park?"),
    );
    let answer = h.answer_in(&ts);
    assert!(answer.streamed);
    assert!(answer.text().starts_with(REPLY), "{}", answer.text());
    assert!(answer.text().contains("[parking.md]"), "{}", answer.text());
    for mention in ["<!channel", "<!here", "<!everyone"] {
        assert!(!answer.text().contains(mention), "{}", answer.text());
    }
    assert!(
        answer.text().contains("\u{200B}!channel"),
        "{}",
        answer.text()
    );
}

/// A reply in a thread engram answered in is a question even after a restart: whether engram
/// answered there comes from the store, not only from memory.
#[test]
fn slack_http_a_thread_reply_after_a_restart_still_continues_the_conversation() {
    let mut h = Harness::http();
    h.link_general();
    h.teach_parking(over_http);
    let asked = h.slack.next_ts();
    h.event("Ev-ask", mention(&asked, BOB, "where do visitors park?"));
    h.wait("the answer", Duration::from_secs(30), |h| {
        (answers_in(h, &asked) == 1).then_some(())
    });

    h.restart();
    let follow_up = h.slack.next_ts();
    h.event(
        "Ev-after-restart",
        json!({
            "type": "message", "channel": GENERAL, "user": BOB, "ts": follow_up,
            "thread_ts": asked, "text": "and do visitors park there on weekends?", "channel_type": "channel",
        }),
    );
    h.wait("the follow-up's answer", Duration::from_secs(30), |h| {
        (answers_in(h, &asked) == 2).then_some(())
    });
    let inputs = h.llm.inputs.lock().unwrap().clone();
    assert!(
        inputs
            .iter()
            .any(|input| input == "where do visitors park?"),
        "the follow-up's prompt has the first question: {inputs:#?}"
    );

    // A thread engram never answered in stays quiet without a mention.
    let other = h.slack.next_ts();
    let calls = h.slack.calls_of("chat.postMessage").len();
    h.event(
        "Ev-unrelated",
        json!({
            "type": "message", "channel": GENERAL, "user": BOB, "ts": h.slack.next_ts(),
            "thread_ts": other, "text": "lunch?", "channel_type": "channel",
        }),
    );
    let later = h.slack.next_ts();
    h.event("Ev-later", mention(&later, BOB, "who parks where?"));
    h.wait("the later answer", Duration::from_secs(30), |h| {
        (answers_in(h, &later) == 1).then_some(())
    });
    assert_eq!(
        h.slack.calls_of("chat.postMessage").len(),
        calls + 1,
        "only the mention got a placeholder"
    );
}

/// The bot's finished answers in `thread`.
fn answers_in(h: &Harness, thread: &str) -> usize {
    h.slack
        .thread(thread)
        .iter()
        .filter(|m| m.user == BOT && !m.deleted && !m.streaming && !m.text().contains("Thinking"))
        .count()
}

/// A command the store fails is answered with what happened and what to do, never with the
/// store's own error text.
#[test]
fn a_failed_command_is_answered_without_the_error_text() {
    let h = Harness::http();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        use sqlx::Connection as _;
        let url = format!("sqlite://{}", h._dir.path().join("engram.db").display());
        let mut other = sqlx::SqliteConnection::connect(&url).await.unwrap();
        // Every brain lookup now fails with the driver's "no such table" error.
        sqlx::query("ALTER TABLE brains RENAME TO brains_gone")
            .execute(&mut other)
            .await
            .unwrap();
    });
    h.command(BOB, "/brain", "list");
    let reply = h.wait("the reply", Duration::from_secs(10), |h| {
        h.slack.responses().into_iter().next()
    });
    let text = reply["text"].as_str().unwrap();
    let expected =
        engram::gateway::GatewayError::Store(engram::store::StoreError::Unavailable(String::new()))
            .user_message();
    assert_eq!(text, expected, "{reply}");
    assert!(!text.contains("no such table") && !text.contains("brains"));
}

/// Each recorded answer's 👍 and 👎 counts, oldest answer first.
fn votes(h: &Harness) -> Vec<(u64, u64)> {
    h._fakes.block_on(crate::support::votes(&h.config.store))
}

/// The answer in `thread` once its last message carries the 👍/👎 buttons.
pub(crate) fn answer_with_buttons(h: &Harness, thread: &str) -> fake_slack::Message {
    h.wait("the answer's buttons", Duration::from_secs(30), |h| {
        h.slack
            .thread(thread)
            .into_iter()
            .find(|m| !m.deleted && !m.buttons().is_empty())
    })
}

/// The reply engram showed the clicker alone, once shown (`before` were there already): in
/// the answer's channel and thread.
fn click_reply(h: &Harness, before: usize, user: &str, thread: &str) -> String {
    h.wait("the click's reply", Duration::from_secs(10), |h| {
        h.slack.ephemerals().get(before).map(|shown| {
            assert_eq!(shown.user, user);
            assert_eq!(shown.channel, GENERAL);
            assert_eq!(shown.thread_ts.as_deref(), Some(thread));
            shown.text.clone()
        })
    })
}

#[test]
fn slack_answers_carry_vote_buttons_and_a_click_over_http_records_one_changeable_vote() {
    let h = Harness::http();
    h.link_general();
    h.teach_parking(over_http);
    let ts = h.slack.next_ts();
    h.event("Ev-vote", mention(&ts, BOB, "where do visitors park?"));
    let answer = answer_with_buttons(&h, &ts);
    // Streamed, and the buttons came with the stream's end.
    assert!(answer.streamed && !answer.streaming);
    assert!(answer.text().starts_with(REPLY), "{}", answer.text());
    let buttons = answer.buttons();
    assert_eq!(
        buttons
            .iter()
            .map(|(id, _)| id.as_str())
            .collect::<Vec<_>>(),
        ["engram_vote_up", "engram_vote_down"]
    );
    let stops = h.slack.calls_of("chat.stopStream");
    assert_eq!(stops.len(), 1, "one stream, stopped once");
    assert_eq!(votes(&h), [(0, 0)]);

    let click = |user: &str, action: &str, team: Option<&str>| {
        let before = h.slack.ephemerals().len();
        let payload = fake_slack::block_actions(&h.slack, user, &answer.ts, action, team);
        let body = serde_urlencoded::to_string([("payload", payload.to_string())]).unwrap();
        let (status, _, _) = h.signed(
            "/slack/interactions",
            "application/x-www-form-urlencoded",
            &body,
        );
        assert_eq!(status, 200, "the click is acknowledged");
        click_reply(&h, before, user, &ts)
    };
    assert!(click(BOB, "engram_vote_up", None).contains("vote is recorded"));
    assert_eq!(votes(&h), [(1, 0)]);
    click(BOB, "engram_vote_up", None);
    assert_eq!(votes(&h), [(1, 0)], "the same click twice is one vote");
    click(BOB, "engram_vote_down", None);
    assert_eq!(votes(&h), [(0, 1)], "a second click changes the vote");
    click(ALICE, "engram_vote_up", None);
    assert_eq!(votes(&h), [(1, 1)]);
    // A click claiming another workspace refers to none of its answers.
    let refused = click(BOB, "engram_vote_up", Some("T0OTHER"));
    assert!(refused.contains("not recorded"), "{refused}");
    assert_eq!(votes(&h), [(1, 1)]);

    // An unsigned click does nothing.
    let payload = fake_slack::block_actions(&h.slack, BOB, &answer.ts, "engram_vote_up", None);
    let body = serde_urlencoded::to_string([("payload", payload.to_string())]).unwrap();
    let (status, _, _) = post(
        h.addr.unwrap(),
        "/slack/interactions",
        &[(
            "Content-Type",
            "application/x-www-form-urlencoded".to_string(),
        )],
        &body,
    );
    assert_eq!(status, 401);
    assert_eq!(votes(&h), [(1, 1)]);
}

#[test]
fn slack_socket_mode_clicks_are_votes_and_edited_answers_carry_the_buttons_too() {
    let h = Harness::start(
        SlackMode::Socket,
        Options {
            streaming: false,
            ..Options::default()
        },
        quick_llm(),
    );
    h.wait("a Socket Mode connection", Duration::from_secs(20), |h| {
        (h.slack.live_sockets() >= 1).then_some(())
    });
    let deliver = |h: &Harness, kind: &str, payload: Value| {
        let id = h.slack.send_envelope(kind, payload);
        h.wait("the envelope acked", Duration::from_secs(10), |h| {
            h.slack.acked(&id).then_some(())
        });
    };
    for text in ["create handbook", "link handbook both"] {
        let fields: serde_json::Map<String, Value> =
            fake_slack::command(&h.slack, ALICE, "/brain", text)
                .into_iter()
                .map(|(k, v)| (k, Value::String(v)))
                .collect();
        deliver(&h, "slash_commands", Value::Object(fields));
    }
    h.posted("the channel linked", "now uses the brain `handbook`");
    h.teach_parking(|h, event_id, event| {
        deliver(h, "events_api", event_callback(event_id, event));
    });
    let ts = h.slack.next_ts();
    deliver(
        &h,
        "events_api",
        event_callback(
            "Ev-socket-vote",
            mention(&ts, BOB, "where do visitors park?"),
        ),
    );
    let answer = answer_with_buttons(&h, &ts);
    // Grown by chat.update; the last update put the buttons under the full text.
    assert!(!answer.streamed);
    assert!(answer.versions.len() >= 2, "{:?}", answer.versions);
    assert!(answer.text().starts_with(REPLY), "{}", answer.text());
    assert!(answer.text().contains("Sources"), "{}", answer.text());
    assert_eq!(answer.buttons().len(), 2);

    let before = h.slack.ephemerals().len();
    deliver(
        &h,
        "interactive",
        fake_slack::block_actions(&h.slack, BOB, &answer.ts, "engram_vote_down", None),
    );
    assert!(click_reply(&h, before, BOB, &ts).contains("vote is recorded"));
    assert_eq!(votes(&h), [(0, 1)]);
}

/// What the brain `handbook` learned from conversations, once nothing is left to learn and it
/// holds `messages` messages.
pub(crate) fn learned(
    h: &Harness,
    messages: u64,
) -> engram::store::conversations::ConversationStats {
    h.wait("the conversations learned", Duration::from_secs(30), |h| {
        let stats = h._fakes.block_on(crate::support::handbook_conversations(
            &h.config.store,
            &format!("slack:{TEAM}"),
        ));
        (stats.changed == 0 && stats.messages == messages).then_some(stats)
    })
}

/// Asks with a mention and waits for the answer; returns what the LLM was sent for it.
pub(crate) fn prompt_for(h: &Harness, question: &str) -> String {
    let before = h.llm.inputs.lock().unwrap().len();
    let ts = h.slack.next_ts();
    h.event(&format!("Ev-ask-{ts}"), mention(&ts, BOB, question));
    // Finished (with or without sources): its last message has the buttons.
    answer_with_buttons(h, &ts);
    h.llm.inputs.lock().unwrap()[before..].join("\n")
}

#[test]
fn slack_messages_threads_edits_and_deletions_are_learned_and_forgotten() {
    let h = Harness::http();
    h.link_general();
    let notice = h.posted("the consent notice", "remembers what people say");
    assert!(notice.text().contains("`handbook`"), "{}", notice.text());
    let said = |ts: &str, user: &str, text: &str, thread: Option<&str>| {
        let mut event = json!({
            "type": "message", "channel": GENERAL, "user": user, "text": text, "ts": ts,
            "channel_type": "channel",
        });
        if let Some(thread) = thread {
            event["thread_ts"] = json!(thread);
        }
        h.event(&format!("Ev-said-{ts}"), event);
    };
    let window = h.slack.next_ts();
    said(
        &window,
        ALICE,
        "The payments deploy window is Tuesday 14:00 UTC.",
        None,
    );
    let parent = h.slack.next_ts();
    said(&parent, BOB, "Question about payments rollbacks.", None);
    said(
        &h.slack.next_ts(),
        BOB,
        "Rollbacks of payments need a second approver.",
        Some(&parent),
    );
    said(
        &h.slack.next_ts(),
        ALICE,
        "And that approver must be on the SRE rota.",
        Some(&parent),
    );
    let stats = learned(&h, 4);
    assert_eq!(stats.threads, 1, "{stats:?}");
    let prompt = prompt_for(&h, "who approves a payments rollback?");
    assert!(
        prompt.contains("second approver") && prompt.contains("on the SRE rota"),
        "{prompt}"
    );
    // Authors are named as people know them (users.info), never as a mention that pings.
    assert!(!prompt.contains("<@U0ALICE>"), "{prompt}");

    // message_changed, then message_deleted.
    h.event(
        "Ev-edit",
        json!({
            "type": "message", "subtype": "message_changed", "channel": GENERAL,
            "hidden": true, "ts": h.slack.next_ts(),
            "message": {
                "type": "message", "user": ALICE, "ts": window,
                "text": "The payments deploy window is Thursday 09:00 UTC.",
                "edited": {"user": ALICE, "ts": h.slack.next_ts()},
            },
            "previous_message": {
                "type": "message", "user": ALICE, "ts": window,
                "text": "The payments deploy window is Tuesday 14:00 UTC.",
            },
        }),
    );
    h.wait("the edit learned", Duration::from_secs(30), |h| {
        let prompt = prompt_for(h, "when is the payments deploy window?");
        (prompt.contains("Thursday 09:00 UTC") && !prompt.contains("Tuesday 14:00")).then_some(())
    });
    h.event(
        "Ev-delete",
        json!({
            "type": "message", "subtype": "message_deleted", "channel": GENERAL,
            "hidden": true, "ts": h.slack.next_ts(), "deleted_ts": window,
            "previous_message": {"type": "message", "user": ALICE, "ts": window, "text": "…"},
        }),
    );
    learned(&h, 3);
    let prompt = prompt_for(&h, "when is the payments deploy window?");
    assert!(!prompt.contains("Thursday 09:00"), "{prompt}");
}
