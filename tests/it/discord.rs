//! engram on Discord, end to end: `app::start` (what `engram serve` runs) with the gateway,
//! chat and ingest roles, its real serenity client and REST calls against the local fake
//! Discord (REST + gateway), answers from the fake OpenAI server, files read by the real
//! extractor.

use std::time::Duration;

use engram::app::{self, Role, Running};
use engram::chat::service::Outlets;
use engram::config::{Config, DiscordShards, Secret, StoreUrl};
use serde_json::json;

use crate::fakes::discord::{
    self as fake_discord, FakeDiscord, Options, SlashCommand, UserMessage, ALICE_ID, BOB_ID,
    BOT_ID, GENERAL_ID, GUILD_ID, RANDOM_ID, THREAD_ID,
};
use crate::fakes::openai::{self as fake_openai, Behaviour, FakeOpenAi};

pub(crate) const REPLY: &str = "Visitors park on level two [1].";

/// The fakes run on their own runtime; engram runs on its own, as in production.
pub(crate) struct Harness {
    /// Runs the fakes' servers; dropped last.
    pub(crate) fakes: tokio::runtime::Runtime,
    pub(crate) discord: FakeDiscord,
    pub(crate) llm: FakeOpenAi,
    engram: Option<Running>,
    /// engram's store, for looking at what it recorded.
    pub(crate) store: engram::config::StoreConfig,
    /// engram's configuration, for starting it again.
    config: Config,
    _dir: tempfile::TempDir,
}

impl Harness {
    fn start(options: Options, behaviour: Behaviour) -> Self {
        Self::start_with(options, behaviour, |_| {})
    }

    /// As `start`, with `configure` changing engram's configuration first.
    pub(crate) fn start_with(
        options: Options,
        behaviour: Behaviour,
        configure: impl FnOnce(&mut Config),
    ) -> Self {
        Self::start_at(
            options,
            behaviour,
            configure,
            "127.0.0.1:0".parse().unwrap(),
            |_| {},
        )
    }

    /// As `start_with`, with Discord at `addr`; `before_discord` runs once engram is started
    /// and before the fake Discord is (with `addr` a free port, Discord is unreachable until
    /// then).
    fn start_at(
        options: Options,
        behaviour: Behaviour,
        configure: impl FnOnce(&mut Config),
        addr: std::net::SocketAddr,
        before_discord: impl FnOnce(&Running),
    ) -> Self {
        let fakes = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let early = addr.port() != 0;
        let discord = (!early).then(|| fakes.block_on(FakeDiscord::start(options.clone())));
        let llm = fakes.block_on(fake_openai::start(behaviour));
        let dir = tempfile::tempdir().unwrap();
        let mut config = Config::defaults();
        config.store.url = StoreUrl::new(format!("sqlite://{}/engram.db", dir.path().display()));
        config.discord.token = Secret::new(options.token.clone());
        config.discord.proxy_url = discord
            .as_ref()
            .map_or_else(|| format!("http://{addr}"), FakeDiscord::rest_url);
        config.llm.base_url = llm.base_url();
        config.llm.model = "fake-model".into();
        config.chat.edit_interval_ms = 200;
        config.ingest.extractor = crate::ingest::extractor().display().to_string();
        configure(&mut config);
        let mut roles = vec![Role::Gateway, Role::Chat, Role::Ingest];
        if early {
            roles.push(Role::Api);
        }
        let engram = app::start(&config, &roles, Outlets::default()).expect("engram starts");
        before_discord(&engram);
        let discord =
            discord.unwrap_or_else(|| fakes.block_on(FakeDiscord::start_at(options, addr)));
        let harness = Self {
            fakes,
            discord,
            llm,
            engram: Some(engram),
            store: config.store.clone(),
            config,
            _dir: dir,
        };
        // READY handled: the slash commands are registered.
        harness.wait(
            "the slash commands registered",
            Duration::from_secs(60),
            |h| (!h.discord.commands(None).is_empty()).then_some(()),
        );
        harness
    }

    /// Stops engram (its jobs in flight given back once `jobs.shutdown_grace_ms` is over) and
    /// starts it again on the same store and the same Discord.
    pub(crate) fn restart(&mut self) {
        if let Some(engram) = self.engram.take() {
            engram.stop().expect("engram stops");
        }
        let roles = [Role::Gateway, Role::Chat, Role::Ingest];
        let engram =
            app::start(&self.config, &roles, Outlets::default()).expect("engram starts again");
        self.engram = Some(engram);
    }

    pub(crate) fn wait<T>(
        &self,
        what: &str,
        limit: Duration,
        mut check: impl FnMut(&Self) -> Option<T>,
    ) -> T {
        let deadline = std::time::Instant::now() + limit;
        loop {
            if let Some(found) = check(self) {
                return found;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "timed out waiting for {what}; requests: {:#?}",
                self.discord
                    .requests()
                    .iter()
                    .map(|r| format!("{} {} → {}", r.method, r.path, r.status))
                    .collect::<Vec<_>>()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Sends a slash command; returns the content of the response engram gave.
    pub(crate) fn command(&self, command: SlashCommand) -> (String, bool) {
        let event = self.discord.interaction_create(&command);
        let id: u64 = event["id"].as_str().unwrap().parse().unwrap();
        self.discord.dispatch("INTERACTION_CREATE", event);
        self.wait("the command's response", Duration::from_secs(10), |h| {
            let record = h.discord.interaction(id)?;
            let (_, callback) = record.callbacks.first()?;
            let content = callback["data"]["content"].as_str()?.to_string();
            let ephemeral = callback["data"]["flags"].as_u64().unwrap_or(0) & 64 != 0;
            Some((content, ephemeral))
        })
    }

    /// Dispatches a user message; returns its id.
    pub(crate) fn say(&self, message: &UserMessage) -> u64 {
        let event = self.discord.message_create(message);
        let id = event["id"].as_str().unwrap().parse().unwrap();
        self.discord.dispatch("MESSAGE_CREATE", event);
        id
    }

    /// The bot's messages replying to `message`.
    fn replies_to(&self, channel: u64, message: u64) -> Vec<fake_discord::StoredMessage> {
        self.discord
            .messages(channel)
            .into_iter()
            .filter(|m| {
                m.author_id == BOT_ID
                    && m.json["message_reference"]["message_id"].as_str()
                        == Some(&message.to_string())
            })
            .collect()
    }

    /// The bot's answer to `question` in `channel`, once it ends with its sources.
    pub(crate) fn answer_to(&self, channel: u64, question: u64) -> fake_discord::StoredMessage {
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        loop {
            let replies = self.replies_to(channel, question);
            if let Some(answer) = replies.iter().find(|m| m.content().contains("**Sources**")) {
                return answer.clone();
            }
            let shown: Vec<&str> = replies.iter().map(|m| m.content()).collect();
            assert!(
                std::time::Instant::now() < deadline,
                "timed out waiting for the answer to {question}; replies so far: {shown:?}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The conversation engram recorded the bot's message `message` in `channel` as part of.
    fn answer_conversation(&self, channel: u64, message: u64) -> Option<String> {
        self.fakes.block_on(async {
            let store = engram::store::connect(&self.store).await.unwrap();
            let tenant = engram::brain::TenantKey::parse(&format!("discord:{GUILD_ID}")).unwrap();
            let tenant = store.find_tenant(&tenant).await.unwrap()?;
            let found = store
                .answer_conversation(tenant, &format!("discord:{channel}"), &message.to_string())
                .await
                .unwrap();
            store.close().await;
            found
        })
    }

    /// Each recorded answer's 👍 and 👎 counts, oldest answer first.
    fn votes(&self) -> Vec<(u64, u64)> {
        self.fakes.block_on(crate::support::votes(&self.store))
    }

    /// Clicks `custom_id` on the bot's message `message` as `user` (from `guild`, or the
    /// message's own guild); returns the response engram gave and whether it is private.
    fn click(
        &self,
        message: u64,
        user: u64,
        custom_id: &str,
        guild: Option<u64>,
    ) -> (u64, bool, String) {
        let event = self.discord.click(message, user, custom_id, guild);
        let id: u64 = event["id"].as_str().unwrap().parse().unwrap();
        self.discord.dispatch("INTERACTION_CREATE", event);
        self.wait("the click's response", Duration::from_secs(10), |h| {
            let record = h.discord.interaction(id)?;
            let (_, callback) = record.callbacks.first()?;
            let kind = callback["type"].as_u64()?;
            let ephemeral = callback["data"]["flags"].as_u64().unwrap_or(0) & 64 != 0;
            let content = callback["data"]["content"]
                .as_str()
                .unwrap_or("")
                .to_string();
            Some((kind, ephemeral, content))
        })
    }

    /// The prompts' messages the LLM has been sent so far, every request's in order.
    fn llm_inputs(&self) -> Vec<String> {
        self.llm.inputs.lock().unwrap().clone()
    }

    /// Nothing the bot wrote in `channels` could ping anyone, and nothing unexpected was
    /// called.
    fn assert_no_pings_and_nothing_unexpected(&self, channels: &[u64]) {
        for &channel in channels {
            for message in self.discord.messages(channel) {
                if message.author_id == BOT_ID {
                    assert!(no_pings(&message), "{:#?}", message.versions);
                }
            }
        }
        assert!(
            self.discord.unexpected_requests().is_empty(),
            "{:#?}",
            self.discord.unexpected_requests()
        );
    }

    pub(crate) fn link_general(&self) {
        self.link(GENERAL_ID);
    }

    /// Creates the brain `handbook` in `channel`'s guild and links `channel` to it.
    pub(crate) fn link(&self, channel: u64) {
        let (created, _) = self.command(
            SlashCommand::new(channel, ALICE_ID, "brain")
                .subcommand("create")
                .option("name", "handbook"),
        );
        assert!(
            created.contains("Created the brain `handbook`"),
            "{created}"
        );
        let (linked, _) = self.command(
            SlashCommand::new(channel, ALICE_ID, "brain")
                .subcommand("link")
                .option("name", "handbook")
                .option("mode", "both"),
        );
        assert!(linked.contains("now uses the brain `handbook`"), "{linked}");
    }

    /// Posts the parking notes and waits for ✅.
    pub(crate) fn teach_parking(&self) -> u64 {
        let (attachment, _) = self.discord.add_attachment(
            "parking.md",
            b"# Parking\n\nVisitors park on level two of the garage.\n",
        );
        let posted = self.say(
            &UserMessage::new(GENERAL_ID, ALICE_ID, "our parking rules")
                .with_attachment(attachment),
        );
        self.wait("✅ on the file", Duration::from_secs(30), |h| {
            h.discord
                .reactions(posted)
                .contains(&"✅".to_string())
                .then_some(())
        });
        posted
    }
}

impl Drop for Harness {
    fn drop(&mut self) {
        if let Some(engram) = self.engram.take() {
            let _ = engram.stop();
        }
    }
}

/// Every version of the message was sent with `allowed_mentions` allowing nothing.
fn no_pings(message: &fake_discord::StoredMessage) -> bool {
    let empty = |value: &serde_json::Value, key: &str| {
        value
            .get(key)
            .is_none_or(|list| list.as_array().is_some_and(Vec::is_empty))
    };
    message.versions.iter().all(|version| {
        version.allowed_mentions.as_ref().is_some_and(|allowed| {
            allowed.get("parse") == Some(&json!([]))
                && empty(allowed, "users")
                && empty(allowed, "roles")
                && allowed.get("replied_user") != Some(&json!(true))
        })
    })
}

/// The `custom_id`s of a message's buttons.
fn vote_buttons(message: &fake_discord::StoredMessage) -> Vec<String> {
    message.json["components"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|row| row["components"].as_array().cloned().unwrap_or_default())
        .filter_map(|button| button["custom_id"].as_str().map(str::to_string))
        .collect()
}

pub(crate) fn quick_llm() -> Behaviour {
    Behaviour {
        reply: REPLY.into(),
        token_interval: Duration::from_millis(20),
        ..Behaviour::default()
    }
}

#[test]
fn files_commands_and_a_mention_end_to_end() {
    let h = Harness::start(Options::default(), quick_llm());

    // Management needs Manage Server.
    let (refused, ephemeral) = h.command(
        SlashCommand::new(GENERAL_ID, BOB_ID, "brain")
            .subcommand("create")
            .option("name", "handbook"),
    );
    assert!(ephemeral && refused.contains("manage"), "{refused}");
    h.link_general();

    // A file: ⏳ at once, then ✅ and a one-line summary.
    let posted = h.teach_parking();
    let summary = h.wait("the summary", Duration::from_secs(10), |h| {
        h.replies_to(GENERAL_ID, posted)
            .first()
            .map(|m| m.content().to_string())
    });
    assert_eq!(summary, "📚 Learned parking.md: 1 page, 1 chunk.");
    // The same file again: already known. An unsupported file: ❌ with the reason.
    let (same, _) = h.discord.add_attachment(
        "parking-copy.md",
        b"# Parking\n\nVisitors park on level two of the garage.\n",
    );
    let again = h.say(&UserMessage::new(GENERAL_ID, ALICE_ID, "again").with_attachment(same));
    let (blob, _) = h
        .discord
        .add_attachment("data.bin", &[0, 0x9f, 0x13, 0x37, 0, 0xff]);
    let refused_file = h.say(&UserMessage::new(GENERAL_ID, ALICE_ID, "blob").with_attachment(blob));
    let known = h.wait("already known", Duration::from_secs(20), |h| {
        h.replies_to(GENERAL_ID, again)
            .first()
            .map(|m| m.content().to_string())
    });
    assert!(known.contains("already known"), "{known}");
    let reason = h.wait("the refusal", Duration::from_secs(20), |h| {
        h.replies_to(GENERAL_ID, refused_file)
            .first()
            .map(|m| m.content().to_string())
    });
    assert!(
        reason.starts_with("❌ I couldn't learn data.bin"),
        "{reason}"
    );
    h.wait("❌ on the refused file", Duration::from_secs(5), |h| {
        h.discord
            .reactions(refused_file)
            .contains(&"❌".to_string())
            .then_some(())
    });

    // A mention: a placeholder reply at once, grown by edits into the answer with sources.
    let question =
        h.say(&UserMessage::new(GENERAL_ID, BOB_ID, "where do visitors park?").mentioning(BOT_ID));
    let answer = h.wait("the answer", Duration::from_secs(20), |h| {
        h.replies_to(GENERAL_ID, question)
            .into_iter()
            .find(|m| m.content().contains("**Sources**"))
    });
    let link = format!("https://discord.com/channels/{GUILD_ID}/{GENERAL_ID}/{posted}");
    assert_eq!(
        answer.content(),
        format!("{REPLY}\n\n**Sources**\n[1] [parking.md](<{link}>) — Parking")
    );
    assert_eq!(answer.versions[0].content, "💭 Thinking…");
    assert!(answer.versions.len() >= 2, "grown by edits");
    for pair in answer.edit_times().windows(2) {
        assert!(pair[1] - pair[0] >= Duration::from_millis(190));
    }
    // A reply to the answer continues the conversation, without a mention.
    let follow_up = h.say(
        &UserMessage::new(
            GENERAL_ID,
            BOB_ID,
            "and do visitors park there on weekends?",
        )
        .replying_to(answer.id),
    );
    h.wait("the follow-up's answer", Duration::from_secs(20), |h| {
        h.replies_to(GENERAL_ID, follow_up)
            .into_iter()
            .find(|m| m.content().contains("**Sources**"))
    });
    let inputs = h.llm.inputs.lock().unwrap().clone();
    assert!(
        inputs
            .iter()
            .any(|input| input == "where do visitors park?"),
        "the follow-up's prompt has the first question: {inputs:#?}"
    );

    // A mention where no brain is linked gets the hint.
    let elsewhere = h.say(&UserMessage::new(RANDOM_ID, BOB_ID, "hello?").mentioning(BOT_ID));
    let hint = h.wait("the hint", Duration::from_secs(10), |h| {
        h.replies_to(RANDOM_ID, elsewhere)
            .first()
            .map(|m| m.content().to_string())
    });
    assert!(hint.contains("/brain link"), "{hint}");
    assert!(
        h.discord.typing(GENERAL_ID) >= 1,
        "typing shown while answering"
    );

    h.assert_no_pings_and_nothing_unexpected(&[GENERAL_ID, RANDOM_ID]);
    assert_eq!(h.discord.rate_limited(GENERAL_ID), 0, "no 429 caused");
}

#[test]
fn a_dropped_gateway_mid_answer_still_answers_exactly_once() {
    let h = Harness::start(
        Options::default(),
        Behaviour {
            reply: "Visitors park on level two of the garage, next to the lifts [1].".into(),
            token_interval: Duration::from_millis(120),
            ..Behaviour::default()
        },
    );
    h.link_general();
    h.teach_parking();
    let message =
        UserMessage::new(GENERAL_ID, BOB_ID, "where do visitors park?").mentioning(BOT_ID);
    let event = h.discord.message_create(&message);
    let question: u64 = event["id"].as_str().unwrap().parse().unwrap();
    h.discord.dispatch("MESSAGE_CREATE", event.clone());
    h.wait("the first edit", Duration::from_secs(20), |h| {
        h.replies_to(GENERAL_ID, question)
            .first()
            .filter(|m| m.versions.len() >= 2)
            .map(|_| ())
    });
    assert!(h.discord.drop_connections() >= 1);
    h.wait("a resumed session", Duration::from_secs(20), |h| {
        (h.discord.resumes() >= 1 && h.discord.live_connections() >= 1).then_some(())
    });
    // The same event delivered again (a replay) is not answered twice.
    h.discord.dispatch("MESSAGE_CREATE", event);
    let answer = h.wait("the answer", Duration::from_secs(30), |h| {
        h.replies_to(GENERAL_ID, question)
            .into_iter()
            .find(|m| m.content().contains("**Sources**"))
    });
    assert!(answer.content().starts_with("Visitors park on level two"));
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(
        h.replies_to(GENERAL_ID, question).len(),
        1,
        "one answer, however often the question arrived"
    );
}

#[test]
fn rate_limited_edits_back_off_and_the_final_text_lands() {
    let options = Options {
        message_limit: Some(fake_discord::RateLimit {
            requests: 2,
            per: Duration::from_secs(2),
        }),
        ..Options::default()
    };
    let h = Harness::start(
        options,
        Behaviour {
            reply: "Visitors park on level two of the garage, next to the lifts, all day [1]."
                .into(),
            // Long enough for several edits after the placeholder, which shares the bucket.
            token_interval: Duration::from_millis(200),
            ..Behaviour::default()
        },
    );
    h.link_general();
    h.teach_parking();
    let question =
        h.say(&UserMessage::new(GENERAL_ID, BOB_ID, "where do visitors park?").mentioning(BOT_ID));
    let answer = h.wait("the answer", Duration::from_secs(40), |h| {
        h.replies_to(GENERAL_ID, question)
            .into_iter()
            .find(|m| m.content().contains("**Sources**"))
    });
    assert!(answer
        .content()
        .starts_with("Visitors park on level two of the garage, next to the lifts, all day [1]."));
    // The fake allows 2 edits per 2 s, looser than nothing and tighter than engram's own
    // budget (5 per 5 s): only the rate-limit headers can keep engram within it.
    assert_eq!(
        h.discord.rate_limited(GENERAL_ID),
        0,
        "the headers were obeyed: no 429 caused"
    );
    let edits = answer.edit_times();
    assert!(edits.len() >= 3, "{edits:?}");
    for window in edits.windows(3) {
        assert!(
            window[2] - window[0] >= Duration::from_millis(1_000),
            "never 3 edits within one 2 s window: {edits:?}"
        );
    }
}

/// A burst in one channel against Discord's documented limits (the fake's defaults: messages
/// 5 per 5 s per channel, creates and edits alike; reactions 1 per 0.25 s; typing 5 per 5 s;
/// 50 requests a second in all): every question is answered once, with its sources, every
/// file ends ✅ with ⏳ gone, and no write that got a 429 was dropped.
#[test]
fn a_burst_in_one_channel_queues_behind_the_limits_and_loses_nothing() {
    let h = Harness::start(Options::default(), quick_llm());
    h.link_general();
    h.teach_parking();
    let files: Vec<u64> = (0..3)
        .map(|n| {
            let (attachment, _) = h.discord.add_attachment(
                &format!("floor-{n}.md"),
                format!("# Floor {n}\n\nDesks on floor {n} are booked at the front desk.\n")
                    .as_bytes(),
            );
            h.say(
                &UserMessage::new(GENERAL_ID, ALICE_ID, "floor notes").with_attachment(attachment),
            )
        })
        .collect();
    let askers = [
        ALICE_ID,
        BOB_ID,
        1_210_000_000_000_000_311,
        1_210_000_000_000_000_312,
    ];
    let questions: Vec<u64> = (0..12)
        .map(|n| {
            let text = format!("where do visitors park? ({n})");
            h.say(&UserMessage::new(GENERAL_ID, askers[n % askers.len()], &text).mentioning(BOT_ID))
        })
        .collect();

    for &question in &questions {
        let answer = h.wait("every answer", Duration::from_secs(180), |h| {
            h.replies_to(GENERAL_ID, question)
                .into_iter()
                .find(|m| m.content().contains("**Sources**"))
        });
        assert!(answer.content().starts_with(REPLY), "{}", answer.content());
        assert_eq!(
            h.replies_to(GENERAL_ID, question).len(),
            1,
            "one answer message per question"
        );
    }
    for &file in &files {
        h.wait("✅ on every file", Duration::from_secs(60), |h| {
            let reactions = h.discord.reactions(file);
            (reactions == ["✅"]).then_some(())
        });
        assert_eq!(
            h.replies_to(GENERAL_ID, file).len(),
            1,
            "one summary per file"
        );
    }
    assert!(
        h.discord.unretried_429s().is_empty(),
        "writes dropped after a 429: {:#?}",
        h.discord.unretried_429s()
    );
    let typing_429s = h
        .discord
        .rate_limited_requests()
        .into_iter()
        .filter(|request| request.path.ends_with("/typing"))
        .count();
    assert_eq!(
        typing_429s, 0,
        "the typing indicator is skipped, never sent into a 429"
    );
    assert_eq!(h.discord.globally_limited(), 0);
    // Only a route's first request cannot know what its bucket holds: at most one 429 per
    // route engram writes to here (messages, edits, adding and removing reactions).
    let served: Vec<String> = h
        .discord
        .rate_limited_requests()
        .iter()
        .map(|request| format!("{} {}", request.method, request.path))
        .collect();
    assert!(
        served.len() <= 4,
        "429s a client obeying the headers would not meet: {served:#?}"
    );
    h.assert_no_pings_and_nothing_unexpected(&[GENERAL_ID]);
}

/// Discord failing the placeholder (an outage at its edge) does not lose the question: the
/// answer job posts the placeholder itself, retried with the job, and the answer lands.
#[test]
fn a_question_whose_placeholder_fails_is_still_answered() {
    let h = Harness::start(Options::default(), quick_llm());
    h.link_general();
    h.teach_parking();
    // The placeholder, and the answer job's first try at it.
    h.discord.fail_creates(GENERAL_ID, 2);
    let question =
        h.say(&UserMessage::new(GENERAL_ID, BOB_ID, "where do visitors park?").mentioning(BOT_ID));
    let answer = h.wait("the answer", Duration::from_secs(60), |h| {
        h.replies_to(GENERAL_ID, question)
            .into_iter()
            .find(|m| m.content().contains("**Sources**"))
    });
    assert!(answer.content().starts_with(REPLY), "{}", answer.content());
    assert_eq!(h.replies_to(GENERAL_ID, question).len(), 1);
    let failed = h
        .discord
        .requests()
        .into_iter()
        .filter(|request| request.status == 502)
        .count();
    assert_eq!(failed, 2, "both failures were met");
    // A reply to the answer continues the question's conversation.
    let conversation = h.answer_conversation(GENERAL_ID, answer.id);
    assert!(conversation.is_some(), "the answer message is recorded");
}

/// Discord unreachable when engram starts is a fault, not a silence: `/readyz` is 503 naming
/// Discord and the connection metric is 0 while engram keeps trying (with backoff); when
/// Discord answers, engram connects, is ready, and answers.
#[test]
fn discord_unreachable_at_start_is_a_fault_until_it_answers() {
    let free = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let api = std::sync::Mutex::new(None);
    let h = Harness::start_at(
        Options::default(),
        quick_llm(),
        |config| config.http.listen = "127.0.0.1:0".parse().unwrap(),
        free,
        |engram| {
            let addr = engram.api_addr().expect("the api role listens");
            *api.lock().unwrap() = Some(addr);
            let deadline = std::time::Instant::now() + Duration::from_secs(20);
            loop {
                let (status, body) = crate::support::http_get(addr, "/readyz");
                assert_eq!(status, 503, "{body}");
                let reason: serde_json::Value = serde_json::from_str(&body).unwrap();
                // Connecting at first; then the failure itself.
                let reason = reason["reason"].as_str().unwrap().to_string();
                assert!(reason.starts_with("discord: "), "{reason}");
                if reason != "discord: connecting" {
                    break;
                }
                assert!(std::time::Instant::now() < deadline, "still {reason}");
                std::thread::sleep(Duration::from_millis(50));
            }
            let (_, metrics) = crate::support::http_get(addr, "/metrics");
            assert!(
                metrics.contains("engram_adapter_connected{platform=\"discord\"} 0"),
                "{metrics}"
            );
        },
    );
    let api = api.lock().unwrap().unwrap();
    h.wait(
        "ready once Discord answers",
        Duration::from_secs(60),
        |_| (crate::support::http_get(api, "/readyz").0 == 200).then_some(()),
    );
    let (_, metrics) = crate::support::http_get(api, "/metrics");
    assert!(
        metrics.contains("engram_adapter_connected{platform=\"discord\"} 1"),
        "{metrics}"
    );
    h.link_general();
    h.teach_parking();
    let question =
        h.say(&UserMessage::new(GENERAL_ID, BOB_ID, "where do visitors park?").mentioning(BOT_ID));
    let answer = h.answer_to(GENERAL_ID, question);
    assert!(answer.content().starts_with(REPLY), "{}", answer.content());
}

#[test]
fn a_long_answer_continues_in_a_new_message_with_fences_balanced() {
    let code: String = (0..60)
        .map(|n| format!("let visitor_{n} = park(level_two);\n"))
        .collect();
    let reply = format!(
        "Visitors park on level two [1]. {}\n\n```rust\n{code}```\nThat is all.",
        "The garage has many levels and the lifts are by bay twelve. ".repeat(8)
    );
    let h = Harness::start(
        Options::default(),
        Behaviour {
            reply: reply.clone(),
            token_interval: Duration::from_millis(1),
            ..Behaviour::default()
        },
    );
    h.link_general();
    h.teach_parking();
    let question =
        h.say(&UserMessage::new(GENERAL_ID, BOB_ID, "where do visitors park?").mentioning(BOT_ID));
    let first = h.wait("the answer's first message", Duration::from_secs(30), |h| {
        h.replies_to(GENERAL_ID, question).into_iter().next()
    });
    let continuation = h.wait("the continuation", Duration::from_secs(30), |h| {
        h.replies_to(GENERAL_ID, first.id)
            .into_iter()
            .find(|m| m.content().contains("**Sources**"))
    });
    let first = h.discord.message(first.id).unwrap();
    // The 👍/👎 buttons sit on the answer's last message only, and came with its final text.
    let continuation = h.wait(
        "the buttons on the last message",
        Duration::from_secs(30),
        |h| {
            h.discord
                .message(continuation.id)
                .filter(|m| !vote_buttons(m).is_empty())
        },
    );
    assert_eq!(vote_buttons(&continuation).len(), 2);
    assert!(vote_buttons(&first).is_empty(), "{:#?}", first.json);
    for message in [&first, &continuation] {
        let text = message.content();
        assert!(
            text.chars().count() <= 2000,
            "{} characters",
            text.chars().count()
        );
        assert_eq!(
            text.matches("```").count() % 2,
            0,
            "fences balanced: {text}"
        );
        assert!(no_pings(message));
    }
    let joined = format!("{}{}", first.content(), continuation.content());
    for n in 0..60 {
        assert!(
            joined.contains(&format!("let visitor_{n} = park(level_two);")),
            "line {n} kept"
        );
    }
    assert!(joined.contains("That is all."));

    // Both messages are the answer's: a reply to the continuation continues the conversation.
    let conversation = h.wait("the continuation recorded", Duration::from_secs(10), |h| {
        h.answer_conversation(GENERAL_ID, continuation.id)
    });
    assert_eq!(
        Some(conversation),
        h.answer_conversation(GENERAL_ID, first.id)
    );
    let follow_up = h.say(
        &UserMessage::new(GENERAL_ID, BOB_ID, "do visitors park there on weekends?")
            .replying_to(continuation.id),
    );
    h.wait(
        "the follow-up's answer growing",
        Duration::from_secs(30),
        |h| {
            h.replies_to(GENERAL_ID, follow_up)
                .into_iter()
                .find(|m| m.versions.len() >= 2)
        },
    );
    let inputs = h.llm_inputs();
    assert!(
        inputs
            .iter()
            .any(|input| input == "where do visitors park?"),
        "the follow-up's prompt has the first question: {inputs:#?}"
    );
}

#[test]
fn two_guilds_never_see_each_others_brains_or_knowledge() {
    const OTHER_GUILD: u64 = 1_210_000_000_000_000_900;
    const OTHER_CHANNEL: u64 = 1_210_000_000_000_000_901;
    let mut options = Options::default();
    let mut other = options.guilds[0].clone();
    other.id = OTHER_GUILD;
    other.name = "Other Guild".into();
    other.channels = vec![fake_discord::FakeChannel::text(OTHER_CHANNEL, "general")];
    options.guilds.push(other);
    let h = Harness::start(options, quick_llm());
    h.link_general();
    h.teach_parking();

    let link = |channel| {
        SlashCommand::new(channel, ALICE_ID, "brain")
            .subcommand("link")
            .option("name", "handbook")
    };
    let (refused, _) = h.command(link(OTHER_CHANNEL));
    assert!(
        refused.contains("There is no brain `handbook` here"),
        "another guild's brain cannot be linked: {refused}"
    );
    let (created, _) = h.command(
        SlashCommand::new(OTHER_CHANNEL, ALICE_ID, "brain")
            .subcommand("create")
            .option("name", "handbook"),
    );
    assert!(created.contains("Created"), "{created}");
    let (linked, _) = h.command(link(OTHER_CHANNEL));
    assert!(linked.contains("now uses the brain `handbook`"), "{linked}");

    let question = h.say(
        &UserMessage::new(OTHER_CHANNEL, BOB_ID, "where do visitors park?").mentioning(BOT_ID),
    );
    let answer = h.wait("the other guild's answer", Duration::from_secs(20), |h| {
        h.replies_to(OTHER_CHANNEL, question)
            .into_iter()
            .find(|m| m.versions.len() >= 2)
    });
    assert!(
        answer.content().contains("found nothing") && !answer.content().contains("parking.md"),
        "the other guild's documents are never cited: {}",
        answer.content()
    );
}

/// A slash command that outlasts Discord's 3 s (here another process holds the store's write
/// lock) is acknowledged as deferred in time, then its reply is edited in.
#[test]
fn a_slow_command_is_deferred_in_time_then_answered() {
    let h = Harness::start(Options::default(), Behaviour::default());
    let db = h._dir.path().join("engram.db");
    let (locked, is_locked) = std::sync::mpsc::channel();
    let locker = std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async {
            use sqlx::Connection as _;
            let url = format!("sqlite://{}", db.display());
            let mut other = sqlx::SqliteConnection::connect(&url).await.unwrap();
            sqlx::query("BEGIN IMMEDIATE")
                .execute(&mut other)
                .await
                .unwrap();
            locked.send(()).unwrap();
            tokio::time::sleep(Duration::from_millis(3_500)).await;
            sqlx::query("ROLLBACK").execute(&mut other).await.unwrap();
        });
    });
    is_locked.recv().unwrap();

    let event = h.discord.interaction_create(
        &SlashCommand::new(GENERAL_ID, ALICE_ID, "brain")
            .subcommand("create")
            .option("name", "slow"),
    );
    let id: u64 = event["id"].as_str().unwrap().parse().unwrap();
    h.discord.dispatch("INTERACTION_CREATE", event);
    let original = h.wait("the edited reply", Duration::from_secs(15), |h| {
        let record = h.discord.interaction(id)?;
        let message = h.discord.message(record.original_message?)?;
        message
            .content()
            .contains("Created the brain `slow`")
            .then_some((record, message))
    });
    locker.join().unwrap();

    let (record, message) = original;
    assert_eq!(record.callbacks.len(), 1, "{:?}", record.callbacks);
    let (answered_at, callback) = &record.callbacks[0];
    assert_eq!(
        callback["type"], 5,
        "a deferred acknowledgement: {callback}"
    );
    assert_ne!(
        callback["data"]["flags"].as_u64().unwrap_or(0) & 64,
        0,
        "only the caller sees the placeholder: {callback}"
    );
    assert!(
        *answered_at - record.created < fake_discord::INTERACTION_ACK_LIMIT,
        "acknowledged after {:?}",
        *answered_at - record.created
    );
    assert!(message.versions.len() >= 2, "the reply was edited in");
}

/// The parking answer with its source, as the bot ends it.
fn parking_answer(posted: u64) -> String {
    let link = format!("https://discord.com/channels/{GUILD_ID}/{GENERAL_ID}/{posted}");
    format!("{REPLY}\n\n**Sources**\n[1] [parking.md](<{link}>) — Parking")
}

#[test]
fn replies_continue_the_conversation_however_deep_the_chain() {
    let h = Harness::start(Options::default(), quick_llm());
    h.link_general();
    let posted = h.teach_parking();
    let first =
        h.say(&UserMessage::new(GENERAL_ID, BOB_ID, "where do visitors park?").mentioning(BOT_ID));
    let answer = h.answer_to(GENERAL_ID, first);
    let second = h.say(
        &UserMessage::new(GENERAL_ID, BOB_ID, "do visitors park there on weekends?")
            .replying_to(answer.id),
    );
    let answer = h.answer_to(GENERAL_ID, second);
    // A reply to the second answer (which replied to a reply, not to the first question), by
    // someone else, still continues the first question's conversation.
    let third = h.say(
        &UserMessage::new(
            GENERAL_ID,
            ALICE_ID,
            "and do visitors with bicycles park there?",
        )
        .replying_to(answer.id),
    );
    let answer = h.answer_to(GENERAL_ID, third);
    assert_eq!(answer.content(), parking_answer(posted));
    // Earlier questions reach the LLM verbatim only as history turns of the conversation.
    let inputs = h.llm_inputs();
    let count = |text: &str| inputs.iter().filter(|input| *input == text).count();
    assert_eq!(
        count("where do visitors park?"),
        2,
        "the first question is history for the second and the third: {inputs:#?}"
    );
    assert_eq!(
        count("do visitors park there on weekends?"),
        1,
        "the second question is history for the third: {inputs:#?}"
    );
}

#[test]
fn a_thread_opened_on_an_answer_continues_its_conversation_without_a_mention() {
    let h = Harness::start(Options::default(), quick_llm());
    h.link_general();
    let posted = h.teach_parking();
    let question =
        h.say(&UserMessage::new(GENERAL_ID, BOB_ID, "where do visitors park?").mentioning(BOT_ID));
    let answer = h.answer_to(GENERAL_ID, question);

    // Alice opens a thread on the answer: the thread has the answer's id.
    let thread = answer.id;
    let created = h.discord.open_thread(answer.id, ALICE_ID, "parking");
    assert_eq!(h.discord.dispatch("THREAD_CREATE", created), 1);
    let in_thread = h.say(&UserMessage::new(
        thread,
        ALICE_ID,
        "do visitors park there on weekends?",
    ));
    let reply = h.answer_to(thread, in_thread);
    assert_eq!(reply.channel_id, thread, "answered in the thread");
    assert_eq!(reply.content(), parking_answer(posted));
    let inputs = h.llm_inputs();
    assert!(
        inputs
            .iter()
            .any(|input| input == "where do visitors park?"),
        "the thread continues the answer's conversation: {inputs:#?}"
    );
    let again = h.say(&UserMessage::new(
        thread,
        BOB_ID,
        "and do visitors with bicycles park there?",
    ));
    h.answer_to(thread, again);
    let inputs = h.llm_inputs();
    assert!(
        inputs
            .iter()
            .any(|input| input == "do visitors park there on weekends?"),
        "every message in the thread is a turn of it: {inputs:#?}"
    );
    // `/ask` in the thread continues it too.
    let asked_before = |h: &Harness| {
        h.llm_inputs()
            .iter()
            .filter(|input| *input == "where do visitors park?")
            .count()
    };
    let before = asked_before(&h);
    let (acknowledged, _) = h.command(
        SlashCommand::new(thread, BOB_ID, "ask")
            .option("question", "do visitors park there at night?"),
    );
    assert!(acknowledged.contains("asked"), "{acknowledged}");
    h.wait("the /ask answer's prompt", Duration::from_secs(30), |h| {
        (asked_before(h) > before).then_some(())
    });

    // A thread opened on someone's message, which the bot was never told of (it asks Discord
    // what the channel is): talk there is not for the bot, a mention is answered from the
    // brain of the channel the thread belongs to.
    let lunch = h.say(&UserMessage::new(GENERAL_ID, BOB_ID, "lunch, anyone?"));
    h.discord.open_thread(lunch, BOB_ID, "lunch");
    let chatter = h.say(&UserMessage::new(lunch, ALICE_ID, "pizza?"));
    let asked =
        h.say(&UserMessage::new(lunch, ALICE_ID, "where do visitors park?").mentioning(BOT_ID));
    let answer = h.answer_to(lunch, asked);
    assert_eq!(answer.content(), parking_answer(posted));
    assert!(
        h.replies_to(lunch, chatter).is_empty(),
        "no mention, no answer in a thread opened on a person's message"
    );
    assert!(h.replies_to(GENERAL_ID, lunch).is_empty());
    // A thread known from GUILD_CREATE: a mention there is answered from its channel's brain.
    let known =
        h.say(&UserMessage::new(THREAD_ID, BOB_ID, "where do visitors park?").mentioning(BOT_ID));
    assert_eq!(
        h.answer_to(THREAD_ID, known).content(),
        parking_answer(posted)
    );
    let looked_up = |channel: u64| {
        let path = format!("/api/v10/channels/{channel}");
        h.discord
            .requests()
            .iter()
            .any(|r| r.method == "GET" && r.path == path)
    };
    assert!(looked_up(lunch), "the unannounced thread was looked up");
    assert!(!looked_up(THREAD_ID), "known threads are not looked up");
    assert!(!looked_up(GENERAL_ID), "nor are known channels");

    h.assert_no_pings_and_nothing_unexpected(&[GENERAL_ID, thread, lunch, THREAD_ID]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn doctor_reports_what_the_bot_lacks_in_each_guild_and_how_to_grant_it() {
    use serenity::model::Permissions;
    let mut options = Options::default();
    let base = options.guilds[0].clone();
    let guild =
        |id: u64, name: &str, everyone: Permissions, bot: Permissions| fake_discord::FakeGuild {
            id,
            name: name.into(),
            everyone_permissions: everyone.bits(),
            bot_permissions: bot.bits(),
            channels: vec![fake_discord::FakeChannel::text(id + 1, "general")],
            ..base.clone()
        };
    let talk =
        Permissions::VIEW_CHANNEL | Permissions::SEND_MESSAGES | Permissions::READ_MESSAGE_HISTORY;
    options.guilds.extend([
        guild(
            1_210_000_000_000_000_900,
            "No Threads",
            talk,
            Permissions::empty(),
        ),
        guild(
            1_210_000_000_000_000_910,
            "Muted",
            Permissions::VIEW_CHANNEL,
            Permissions::ADD_REACTIONS,
        ),
        guild(
            1_210_000_000_000_000_920,
            "Admins",
            Permissions::empty(),
            Permissions::ADMINISTRATOR,
        ),
    ]);
    let discord = FakeDiscord::start(options).await;
    let dir = tempfile::tempdir().unwrap();
    let mut config = Config::defaults();
    config.store.url = StoreUrl::new(format!("sqlite://{}/engram.db", dir.path().display()));
    config.discord.token = Secret::new(discord.token());
    config.discord.proxy_url = discord.rest_url();

    let report = engram::doctor::run(&config).await;
    let text = report.render();
    let line = |server: &str| {
        text.lines()
            .find(|line| line.contains(&format!("server `{server}`")))
            .unwrap_or_else(|| panic!("no line for {server}: {text}"))
            .to_string()
    };
    assert!(
        text.contains("[ok  ] discord     token works (bot `engram`); Message Content intent"),
        "{text}"
    );
    for server in ["Test Guild", "Admins"] {
        let line = line(server);
        assert!(
            line.starts_with("[ok  ]") && line.contains("every permission engram uses"),
            "{line}"
        );
    }
    let no_threads = line("No Threads");
    assert!(no_threads.starts_with("[WARN]"), "{no_threads}");
    assert!(
        no_threads.contains("lacks Send Messages in Threads (")
            && no_threads.contains("Add Reactions (")
            && !no_threads.contains("Read Message History"),
        "{no_threads}"
    );
    let muted = line("Muted");
    assert!(muted.starts_with("[FAIL]"), "{muted}");
    for lacking in [
        "Send Messages (to answer)",
        "Read Message History (",
        "Send Messages in Threads (",
    ] {
        assert!(muted.contains(lacking), "{lacking}: {muted}");
    }
    assert!(
        !muted.contains("Add Reactions") && !muted.contains("View Channels"),
        "{muted}"
    );
    let needed = (talk | Permissions::SEND_MESSAGES_IN_THREADS | Permissions::ADD_REACTIONS).bits();
    let invite = format!(
        "https://discord.com/oauth2/authorize?client_id={}&scope=bot%20applications.commands\
         &permissions={needed}",
        fake_discord::APPLICATION_ID
    );
    assert!(muted.contains(&invite), "{muted}");
    assert!(report.has_failures());
    assert!(!text.contains(&discord.token()), "{text}");
    assert!(
        discord.unexpected_requests().is_empty(),
        "{:#?}",
        discord.unexpected_requests()
    );
}

#[test]
fn a_429_on_edits_is_waited_out_and_the_final_text_with_sources_lands() {
    let reply = "Visitors park on level two of the garage, next to the lifts, all day [1].";
    let h = Harness::start(
        Options::default(),
        Behaviour {
            reply: reply.into(),
            token_interval: Duration::from_millis(60),
            ..Behaviour::default()
        },
    );
    h.link_general();
    let posted = h.teach_parking();
    // Two edits in a row are refused, as when something else used up the channel's budget.
    let retry_after = Duration::from_millis(1_200);
    h.discord.refuse_edits(GENERAL_ID, 2, retry_after);
    let question =
        h.say(&UserMessage::new(GENERAL_ID, BOB_ID, "where do visitors park?").mentioning(BOT_ID));
    let answer = h.answer_to(GENERAL_ID, question);
    let link = format!("https://discord.com/channels/{GUILD_ID}/{GENERAL_ID}/{posted}");
    assert_eq!(
        answer.content(),
        format!("{reply}\n\n**Sources**\n[1] [parking.md](<{link}>) — Parking")
    );
    assert_eq!(
        h.discord.refusals(GENERAL_ID).len(),
        2,
        "both 429s were met"
    );
    // After each 429, nothing is written to the channel before its retry_after has passed.
    let messages = format!("/api/v10/channels/{GENERAL_ID}/messages");
    let writes: Vec<_> = h
        .discord
        .requests()
        .into_iter()
        .filter(|r| matches!(r.method.as_str(), "PATCH" | "POST") && r.path.starts_with(&messages))
        .collect();
    let refused: Vec<usize> = (0..writes.len())
        .filter(|&i| writes[i].status == 429)
        .collect();
    assert_eq!(refused.len(), 2);
    for i in refused {
        let next = writes.get(i + 1).expect("written again after the 429");
        let waited = next.at - writes[i].at;
        assert!(
            waited >= retry_after,
            "{} {} came {waited:?} after a 429 saying retry after {retry_after:?}",
            next.method,
            next.path
        );
    }
    assert_eq!(
        h.discord.rate_limited(GENERAL_ID),
        0,
        "no further 429 was caused"
    );
    assert!(no_pings(&answer));
}

/// `discord.shards` splits the guilds between gateway processes: "auto" runs every shard
/// Discord recommends here; a range runs only those shards, and Discord sends this process
/// only their guilds' events.
#[test]
fn shards_split_the_guilds_between_gateway_processes() {
    // A second guild whose id falls on shard 1 of 2 (`(id >> 22) % 2`); GUILD_ID is on shard 0.
    const SHARD1_GUILD: u64 = GUILD_ID + (1 << 22);
    const SHARD1_CHANNEL: u64 = SHARD1_GUILD + 1;
    assert_eq!(((GUILD_ID >> 22) % 2, (SHARD1_GUILD >> 22) % 2), (0, 1));
    let world = || {
        let mut options = Options {
            shards: 2,
            ..Options::default()
        };
        let mut other = options.guilds[0].clone();
        other.id = SHARD1_GUILD;
        other.name = "Shard One".into();
        other.channels = vec![fake_discord::FakeChannel::text(SHARD1_CHANNEL, "general")];
        options.guilds.push(other);
        options
    };
    let answered = |h: &Harness, channel: u64| {
        let question =
            h.say(&UserMessage::new(channel, BOB_ID, "where do visitors park?").mentioning(BOT_ID));
        h.wait("an answer", Duration::from_secs(20), |h| {
            h.replies_to(channel, question)
                .into_iter()
                .find(|m| m.versions.len() >= 2)
        });
        assert_eq!(h.replies_to(channel, question).len(), 1, "answered once");
    };

    let all = Harness::start_with(world(), quick_llm(), |config| {
        config.discord.shards = DiscordShards::Auto;
    });
    // serenity starts one shard every 5 s (Discord's identify spacing).
    let mut shards = all.wait("both shards identified", Duration::from_secs(20), |h| {
        let shards = h.discord.identify_shards();
        (shards.len() >= 2).then_some(shards)
    });
    shards.sort_unstable();
    assert_eq!(
        shards,
        [(0, 2), (1, 2)],
        "auto: both recommended shards here"
    );
    for channel in [GENERAL_ID, SHARD1_CHANNEL] {
        all.link(channel);
        answered(&all, channel);
    }
    drop(all);

    let second = Harness::start_with(world(), quick_llm(), |config| {
        config.discord.shards = "1/2".parse().unwrap();
    });
    assert_eq!(second.discord.identify_shards(), [(1, 2)]);
    second.link(SHARD1_CHANNEL);
    answered(&second, SHARD1_CHANNEL);
    let elsewhere = second
        .discord
        .message_create(&UserMessage::new(GENERAL_ID, BOB_ID, "anyone?").mentioning(BOT_ID));
    assert_eq!(
        second.discord.dispatch("MESSAGE_CREATE", elsewhere),
        0,
        "shard 0's guild is another process's"
    );
}

/// Posts `name` with `bytes` in `channel` and waits for the bot's one-line summary.
fn teach(h: &Harness, channel: u64, name: &str, bytes: &[u8]) -> String {
    let (attachment, _) = h.discord.add_attachment(name, bytes);
    let posted = h.say(&UserMessage::new(channel, ALICE_ID, "notes").with_attachment(attachment));
    h.wait("the file's summary", Duration::from_secs(60), |h| {
        h.replies_to(channel, posted)
            .first()
            .map(|m| m.content().to_string())
    })
}

/// A file posted again in the same channel under the same name with new content replaces the
/// earlier version once it is read: answers see only the new text, `/brain info` shows the
/// version, the history keeps who posted which bytes. In another channel the same name is
/// another document; `/brain forget` in a channel forgets that channel's file.
#[test]
fn a_file_posted_again_with_new_content_replaces_its_old_version() {
    let h = Harness::start(Options::default(), quick_llm());
    h.link_general();
    let (linked, _) = h.command(
        SlashCommand::new(RANDOM_ID, ALICE_ID, "brain")
            .subcommand("link")
            .option("name", "handbook")
            .option("mode", "both"),
    );
    assert!(linked.contains("now uses the brain `handbook`"), "{linked}");

    let first = teach(
        &h,
        GENERAL_ID,
        "vacation.md",
        b"# Vacation\n\nEveryone gets two weeks of vacation per year.\n",
    );
    assert_eq!(first, "📚 Learned vacation.md: 1 page, 1 chunk.");
    let second = teach(
        &h,
        GENERAL_ID,
        "vacation.md",
        b"# Vacation\n\nEveryone gets four weeks of vacation per year.\n",
    );
    assert_eq!(
        second,
        "📚 Learned vacation.md (version 2, replacing the earlier one): 1 page, 1 chunk."
    );
    // The same bytes again are known.
    let again = teach(
        &h,
        GENERAL_ID,
        "vacation.md",
        b"# Vacation\n\nEveryone gets four weeks of vacation per year.\n",
    );
    assert!(again.contains("already known"), "{again}");
    // Another channel: a document of its own, version 1.
    let other = teach(
        &h,
        RANDOM_ID,
        "vacation.md",
        b"# Vacation\n\nInterns get ten days of vacation per year.\n",
    );
    assert_eq!(other, "📚 Learned vacation.md: 1 page, 1 chunk.");

    let question = h.say(
        &UserMessage::new(GENERAL_ID, BOB_ID, "how many weeks of vacation do we get?")
            .mentioning(BOT_ID),
    );
    h.answer_to(GENERAL_ID, question);
    let prompt = h.llm_inputs().join("\n");
    assert!(prompt.contains("four weeks"), "{prompt}");
    assert!(
        !prompt.contains("two weeks"),
        "the old version is gone: {prompt}"
    );

    let (info, _) = h.command(SlashCommand::new(GENERAL_ID, ALICE_ID, "brain").subcommand("info"));
    assert!(
        info.contains("Documents with earlier versions: 1."),
        "{info}"
    );
    assert!(info.contains("vacation.md — version 2"), "{info}");

    let (documents, history) = h.fakes.block_on(async {
        let store = engram::store::connect(&h.store).await.unwrap();
        let tenant = engram::brain::TenantKey::parse(&format!("discord:{GUILD_ID}")).unwrap();
        let tenant = store.find_tenant(&tenant).await.unwrap().unwrap();
        let brain = store
            .brain_by_name(
                tenant,
                &engram::brain::BrainName::parse("handbook").unwrap(),
            )
            .await
            .unwrap()
            .unwrap();
        let documents = store.documents(brain.id).await.unwrap();
        let history = store.document_history(brain.id).await.unwrap();
        store.close().await;
        (documents, history)
    });
    // The files (the words posted with them are a conversation of their own).
    let documents: Vec<_> = documents
        .into_iter()
        .filter(|d| !d.scope.starts_with("conversation:"))
        .collect();
    let history: Vec<_> = history
        .into_iter()
        .filter(|v| !v.scope.starts_with("conversation:"))
        .collect();
    let shown: Vec<(String, u32, String)> = documents
        .iter()
        .map(|d| (d.scope.clone(), d.version, d.file_name.clone()))
        .collect();
    assert_eq!(
        shown,
        vec![
            (
                format!("discord:{GENERAL_ID}"),
                2,
                "vacation.md".to_string()
            ),
            (format!("discord:{RANDOM_ID}"), 1, "vacation.md".to_string()),
        ]
    );
    assert_eq!(history.len(), 1, "{history:?}");
    assert_eq!(history[0].version, 1);
    assert_eq!(
        history[0].added_by.as_deref(),
        Some(ALICE_ID.to_string().as_str())
    );
    assert_eq!(history[0].replaced_by, documents[0].id);

    // Forgetting in the general channel forgets its file (every version), not the other one.
    let (forgot, _) = h.command(
        SlashCommand::new(GENERAL_ID, ALICE_ID, "brain")
            .subcommand("forget")
            .option("document", "vacation.md"),
    );
    assert!(forgot.starts_with("Forgot vacation.md"), "{forgot}");
    let before = h.llm_inputs().len();
    let question = h.say(
        &UserMessage::new(GENERAL_ID, BOB_ID, "how much vacation do interns get?")
            .mentioning(BOT_ID),
    );
    h.answer_to(GENERAL_ID, question);
    let prompt = h.llm_inputs()[before..].join("\n");
    assert!(prompt.contains("ten days"), "{prompt}");
    assert!(!prompt.contains("four weeks"), "forgotten: {prompt}");
    h.assert_no_pings_and_nothing_unexpected(&[GENERAL_ID, RANDOM_ID]);
}

/// Renames the `brains` table under a running engram, so every brain lookup fails with the
/// driver's "no such table" error.
fn break_the_brains_table(db: &std::path::Path) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        use sqlx::Connection as _;
        let url = format!("sqlite://{}", db.display());
        let mut other = sqlx::SqliteConnection::connect(&url).await.unwrap();
        sqlx::query("ALTER TABLE brains RENAME TO brains_gone")
            .execute(&mut other)
            .await
            .unwrap();
    });
}

/// A command the store fails is answered with what happened and what to do, never with the
/// store's own error text.
#[test]
fn a_failed_command_is_answered_without_the_error_text() {
    let h = Harness::start(Options::default(), Behaviour::default());
    break_the_brains_table(&h._dir.path().join("engram.db"));
    let (reply, private) =
        h.command(SlashCommand::new(GENERAL_ID, ALICE_ID, "brain").subcommand("list"));
    let expected =
        engram::gateway::GatewayError::Store(engram::store::StoreError::Unavailable(String::new()))
            .user_message();
    assert_eq!(reply, expected);
    assert!(private, "only the person who ran it is told");
    assert!(!reply.contains("no such table") && !reply.contains("brains"));
}

#[test]
fn an_answer_carries_vote_buttons_and_a_click_records_one_changeable_vote() {
    let h = Harness::start(Options::default(), quick_llm());
    h.link_general();
    h.teach_parking();
    let question =
        h.say(&UserMessage::new(GENERAL_ID, BOB_ID, "where do visitors park?").mentioning(BOT_ID));
    let answer = h.answer_to(GENERAL_ID, question);
    let answer = h.wait("the answer's buttons", Duration::from_secs(30), |h| {
        h.discord
            .message(answer.id)
            .filter(|m| !vote_buttons(m).is_empty())
    });
    // Streaming was not cut short by the buttons: the text grew in edits, then the final
    // write put the buttons under the full text.
    assert!(answer.versions.len() >= 2, "{:#?}", answer.versions);
    assert!(answer.content().contains(REPLY.trim_end_matches(" [1].")));
    let buttons = vote_buttons(&answer);
    assert_eq!(buttons.len(), 2, "{buttons:?}");
    let (up, down) = (&buttons[0], &buttons[1]);
    assert!(up.starts_with("engram:vote:up:") && down.starts_with("engram:vote:down:"));
    assert_eq!(h.votes(), [(0, 0)]);

    // A click is answered privately (the fake refuses a first response after Discord's 3 s),
    // and recorded once.
    let (kind, private, text) = h.click(answer.id, BOB_ID, up, None);
    assert_eq!((kind, private), (4, true));
    assert!(text.contains("vote is recorded"), "{text}");
    assert_eq!(h.votes(), [(1, 0)]);
    h.click(answer.id, BOB_ID, up, None);
    assert_eq!(h.votes(), [(1, 0)], "the same click twice is one vote");
    // A second click changes the vote; another person's is their own.
    h.click(answer.id, BOB_ID, down, None);
    assert_eq!(h.votes(), [(0, 1)]);
    h.click(answer.id, ALICE_ID, up, None);
    assert_eq!(h.votes(), [(1, 1)]);

    // A click claiming another server's guild refers to no answer of that server.
    const OTHER_GUILD: u64 = 1_210_000_000_000_000_900;
    let (kind, private, text) = h.click(answer.id, BOB_ID, up, Some(OTHER_GUILD));
    assert_eq!((kind, private), (4, true));
    assert!(text.contains("not recorded"), "{text}");
    assert_eq!(h.votes(), [(1, 1)]);

    h.assert_no_pings_and_nothing_unexpected(&[GENERAL_ID]);
}

impl Harness {
    /// What the brain `handbook` learned from conversations, once nothing is left to learn and
    /// it holds `messages` messages.
    pub(crate) fn learned(&self, messages: u64) -> engram::store::conversations::ConversationStats {
        self.wait("the conversations learned", Duration::from_secs(30), |h| {
            let stats = h.fakes.block_on(crate::support::handbook_conversations(
                &h.store,
                &format!("discord:{GUILD_ID}"),
            ));
            (stats.changed == 0 && stats.messages == messages).then_some(stats)
        })
    }

    /// Asks the brain with a mention and waits for the answer; returns what the LLM was sent
    /// for it (every message of its prompt).
    pub(crate) fn prompt_for(&self, question: &str) -> String {
        self.prompt_in(GENERAL_ID, ALICE_ID, question)
    }

    /// `prompt_for`, asked by `user` in `channel`.
    fn prompt_in(&self, channel: u64, user: u64, question: &str) -> String {
        let before = self.llm_inputs().len();
        let asked = self.say(&UserMessage::new(channel, user, question).mentioning(BOT_ID));
        // Finished (with or without sources): its last message has the buttons.
        self.wait("the answer finished", Duration::from_secs(30), |h| {
            h.replies_to(channel, asked)
                .into_iter()
                .find(|m| !vote_buttons(m).is_empty())
        });
        self.llm_inputs()[before..].join("\n")
    }
}

#[test]
fn what_people_say_is_learned_with_threads_edits_and_deletions_followed() {
    let h = Harness::start(Options::default(), quick_llm());
    h.command(
        SlashCommand::new(GENERAL_ID, ALICE_ID, "brain")
            .subcommand("create")
            .option("name", "handbook"),
    );
    let (linked, private) = h.command(
        SlashCommand::new(GENERAL_ID, ALICE_ID, "brain")
            .subcommand("link")
            .option("name", "handbook")
            .option("mode", "both"),
    );
    assert!(!private, "the notice is for the channel");
    assert!(
        linked.contains("remembers what people say in this channel"),
        "{linked}"
    );
    // #random uses the same brain for questions, with its messages off.
    let (random, _) = h.command(
        SlashCommand::new(RANDOM_ID, ALICE_ID, "brain")
            .subcommand("link")
            .option("name", "handbook")
            .option("mode", "both")
            .option("messages", "off"),
    );
    assert!(!random.contains("remembers what people say"), "{random}");

    h.say(&UserMessage::new(
        RANDOM_ID,
        BOB_ID,
        "The staging database password rotates every Friday.",
    ));
    let window = h.say(&UserMessage::new(
        GENERAL_ID,
        ALICE_ID,
        "Heads up: the payments deploy window is Tuesday 14:00 UTC.",
    ));
    let in_thread = h.say(&UserMessage::new(
        THREAD_ID,
        BOB_ID,
        "Rollbacks of payments need a second approver.",
    ));
    h.say(&UserMessage::new(
        THREAD_ID,
        ALICE_ID,
        "And that approver must be on the SRE rota.",
    ));
    // A message deleted at once: the delete may be handled before the message; it is never
    // learned either way (every count below would be one more).
    let early = h.discord.message_create(&UserMessage::new(
        GENERAL_ID,
        BOB_ID,
        "A secret posted and deleted at once.",
    ));
    h.discord.dispatch(
        "MESSAGE_DELETE",
        json!({
            "id": early["id"], "channel_id": GENERAL_ID.to_string(),
            "guild_id": GUILD_ID.to_string(),
        }),
    );
    h.discord.dispatch("MESSAGE_CREATE", early);
    let stats = h.learned(3);
    assert_eq!((stats.units, stats.threads), (2, 1), "{stats:?}");

    // Both units answer; the thread is one unit, so both of its messages come together.
    let prompt = h.prompt_for("when is the payments deploy window?");
    assert!(prompt.contains("Tuesday 14:00 UTC"), "{prompt}");
    let prompt = h.prompt_for("who approves a payments rollback?");
    assert!(
        prompt.contains("second approver") && prompt.contains("on the SRE rota"),
        "{prompt}"
    );
    // Questions to engram and #random (messages off) were not learned.
    assert_eq!(h.learned(3).messages, 3);
    let prompt = h.prompt_for("when does the staging database password rotate?");
    assert!(!prompt.contains("every Friday"), "{prompt}");

    // An edit (Discord sends only what changed) replaces the old text.
    h.discord.dispatch(
        "MESSAGE_UPDATE",
        json!({
            "id": window.to_string(), "channel_id": GENERAL_ID.to_string(),
            "guild_id": GUILD_ID.to_string(),
            "content": "Heads up: the payments deploy window is Thursday 09:00 UTC.",
            "edited_timestamp": "2026-12-07T12:00:00.000000+00:00",
        }),
    );
    h.wait("the edit learned", Duration::from_secs(30), |h| {
        let prompt = h.prompt_for("when is the payments deploy window?");
        (prompt.contains("Thursday 09:00 UTC") && !prompt.contains("Tuesday 14:00")).then_some(())
    });

    // Forgetting one message of a thread by its link forgets the whole thread.
    let (forgot, _) = h.command(
        SlashCommand::new(GENERAL_ID, ALICE_ID, "brain")
            .subcommand("forget")
            .option(
                "document",
                format!("https://discord.com/channels/{GUILD_ID}/{THREAD_ID}/{in_thread}"),
            ),
    );
    assert!(
        forgot.contains("Forgot that conversation (2 messages)"),
        "{forgot}"
    );
    h.learned(1);
    let prompt = h.prompt_for("who approves a payments rollback?");
    assert!(!prompt.contains("second approver"), "{prompt}");

    // A deleted message and a deleted thread are forgotten.
    h.discord.dispatch(
        "MESSAGE_DELETE",
        json!({
            "id": window.to_string(), "channel_id": GENERAL_ID.to_string(),
            "guild_id": GUILD_ID.to_string(),
        }),
    );
    h.discord.dispatch(
        "THREAD_DELETE",
        json!({
            "id": THREAD_ID.to_string(), "guild_id": GUILD_ID.to_string(),
            "parent_id": GENERAL_ID.to_string(), "type": 11,
        }),
    );
    let stats = h.learned(0);
    assert_eq!(stats.units, 0, "{stats:?}");
    let prompt = h.prompt_for("when is the payments deploy window, and who approves rollbacks?");
    assert!(
        !prompt.contains("Thursday 09:00") && !prompt.contains("second approver"),
        "{prompt}"
    );
    h.assert_no_pings_and_nothing_unexpected(&[GENERAL_ID]);
}

#[test]
fn what_a_private_channel_learned_answers_only_there() {
    const LEADS_ID: u64 = 1_210_000_000_000_000_203;
    let mut options = Options::default();
    let allow = fake_discord::member_permissions();
    let view = 1 << 10;
    options.guilds[0].channels.push(fake_discord::FakeChannel {
        overwrites: vec![
            fake_discord::Overwrite {
                id: GUILD_ID,
                member: false,
                allow: 0,
                deny: view,
            },
            fake_discord::Overwrite {
                id: ALICE_ID,
                member: true,
                allow,
                deny: 0,
            },
            fake_discord::Overwrite {
                id: BOT_ID,
                member: true,
                allow,
                deny: 0,
            },
        ],
        ..fake_discord::FakeChannel::text(LEADS_ID, "leads")
    });
    let h = Harness::start(options, quick_llm());
    h.link_general();
    h.command(
        SlashCommand::new(LEADS_ID, ALICE_ID, "brain")
            .subcommand("link")
            .option("name", "handbook")
            .option("mode", "both"),
    );
    h.say(&UserMessage::new(
        LEADS_ID,
        ALICE_ID,
        "The acquisition of Contoso closes on March 3.",
    ));
    let (attachment, _) = h.discord.add_attachment(
        "deal.md",
        b"# Deal\n\nThe Contoso acquisition price is 40 million.\n",
    );
    let posted =
        h.say(&UserMessage::new(LEADS_ID, ALICE_ID, "the deal").with_attachment(attachment));
    h.wait("✅ on the file", Duration::from_secs(30), |h| {
        h.discord
            .reactions(posted)
            .contains(&"✅".to_string())
            .then_some(())
    });
    h.say(&UserMessage::new(
        GENERAL_ID,
        BOB_ID,
        "The cafeteria about Contoso opens at 8.",
    ));
    h.learned(3);

    // Asked in #general: neither the message nor the file of #leads is searched.
    let prompt = h.prompt_in(
        GENERAL_ID,
        BOB_ID,
        "when does the Contoso acquisition close, and at what price?",
    );
    assert!(
        !prompt.contains("March 3") && !prompt.contains("40 million"),
        "{prompt}"
    );
    // Asked in #leads: both answer.
    let prompt = h.prompt_in(
        LEADS_ID,
        ALICE_ID,
        "when does the Contoso acquisition close, and at what price?",
    );
    assert!(
        prompt.contains("March 3") && prompt.contains("40 million"),
        "{prompt}"
    );
}
