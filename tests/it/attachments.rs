//! Files attached to a question, end to end through `app::start` with its real serenity and
//! slack-morphism clients against the fake Discord and Slack, and the real extractor: the
//! file is read for that answer (in the prompt, or quoted without an LLM, and in the sources
//! as `attachment: <name>`), learned only where the channel learns files, and a file that
//! cannot be read is named in one line while the answer still comes from the brain.

use std::time::Duration;

use engram::config::{SlackMode, StoreConfig};
use serde_json::json;

use crate::discord::{quick_llm as discord_llm, Harness as DiscordHarness, REPLY as DISCORD_REPLY};
use crate::fakes::discord::{
    Options as DiscordOptions, SlashCommand, StoredMessage, UserMessage, ALICE_ID, BOB_ID, BOT_ID,
    GENERAL_ID, GUILD_ID, RANDOM_ID,
};
use crate::fakes::slack::{Options as SlackOptions, ALICE, BOB, BOT, GENERAL};
use crate::slack::{over_http, quick_llm as slack_llm, Harness as SlackHarness};

/// A file whose fact no brain holds.
const BADGES: &[u8] =
    b"# Visitors\n\nVisitor badges are collected at the east desk on floor three.\n";
const BADGES_QUESTION: &str = "where are visitor badges collected?";

/// The names of the documents the brain `handbook` of `tenant` holds, in the store at `store`.
fn handbook_documents(store: &StoreConfig, tenant: &str) -> Vec<String> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let store = engram::store::connect(store).await.unwrap();
        let tenant = engram::brain::TenantKey::parse(tenant).unwrap();
        let tenant = store.find_tenant(&tenant).await.unwrap().unwrap();
        let name = engram::brain::BrainName::parse("handbook").unwrap();
        let brain = store.brain_by_name(tenant, &name).await.unwrap().unwrap();
        let documents = store.documents(brain.id).await.unwrap();
        store.close().await;
        documents.into_iter().map(|d| d.file_name).collect()
    })
}

/// The bot's messages replying to `message` in `channel`.
fn bot_replies(h: &DiscordHarness, channel: u64, message: u64) -> Vec<StoredMessage> {
    h.discord
        .messages(channel)
        .into_iter()
        .filter(|m| {
            m.author_id == BOT_ID
                && m.json["message_reference"]["message_id"].as_str() == Some(&message.to_string())
        })
        .collect()
}

/// Creates the brain `handbook` (once) and links `channel` to it in `mode`.
fn discord_link(h: &DiscordHarness, channel: u64, mode: &str, create: bool) {
    if create {
        let (created, _) = h.command(
            SlashCommand::new(channel, ALICE_ID, "brain")
                .subcommand("create")
                .option("name", "handbook"),
        );
        assert!(created.contains("Created the brain"), "{created}");
    }
    let (linked, _) = h.command(
        SlashCommand::new(channel, ALICE_ID, "brain")
            .subcommand("link")
            .option("name", "handbook")
            .option("mode", mode),
    );
    assert!(linked.contains("now uses the brain `handbook`"), "{linked}");
}

fn message_link(channel: u64, message: u64) -> String {
    format!("https://discord.com/channels/{GUILD_ID}/{channel}/{message}")
}

#[test]
fn discord_a_file_attached_to_a_question_in_an_ask_channel_answers_it_and_is_not_learned() {
    let h = DiscordHarness::start_with(DiscordOptions::default(), discord_llm(), |_| {});
    discord_link(&h, GENERAL_ID, "ask", true);

    let (badges, _) = h.discord.add_attachment("visitors.md", BADGES);
    let asked = h.say(
        &UserMessage::new(GENERAL_ID, BOB_ID, BADGES_QUESTION)
            .mentioning(BOT_ID)
            .with_attachment(badges),
    );
    let answer = h.answer_to(GENERAL_ID, asked);
    assert_eq!(
        answer.content(),
        format!(
            "{DISCORD_REPLY}\n\n**Sources**\n[1] [attachment: visitors.md](<{}>) — Visitors",
            message_link(GENERAL_ID, asked)
        )
    );
    // The file was in the prompt, framed as a numbered source like the brain's passages.
    let inputs = h.llm.inputs.lock().unwrap().clone();
    let prompt = inputs
        .iter()
        .find(|input| input.contains("Question: where are visitor badges collected?"))
        .unwrap_or_else(|| panic!("the question's prompt: {inputs:#?}"));
    assert!(
        prompt.contains(
            "[1] attachment: visitors.md — Visitors\n<<<\n# Visitors\n\nVisitor badges are \
             collected at the east desk on floor three.\n>>>"
        ),
        "{prompt}"
    );

    // An ask-only channel does not learn it: no ⏳ / ✅, no document; asked again without the
    // file, the brain knows nothing of badges (and no LLM call is made for nothing).
    assert!(h.discord.reactions(asked).is_empty());
    assert!(handbook_documents(&h.store, &format!("discord:{GUILD_ID}")).is_empty());
    let calls = h.llm.inputs.lock().unwrap().len();
    let again = h.say(&UserMessage::new(GENERAL_ID, BOB_ID, BADGES_QUESTION).mentioning(BOT_ID));
    let nothing = h.wait("the second answer", Duration::from_secs(30), |h| {
        bot_replies(h, GENERAL_ID, again)
            .into_iter()
            .find(|m| m.content().contains("found nothing"))
    });
    assert!(
        !nothing.content().contains("badges"),
        "{}",
        nothing.content()
    );
    assert_eq!(h.llm.inputs.lock().unwrap().len(), calls);
}

#[test]
fn discord_a_file_attached_to_a_question_in_a_both_channel_is_read_and_learned() {
    let h = DiscordHarness::start_with(DiscordOptions::default(), discord_llm(), |_| {});
    discord_link(&h, GENERAL_ID, "both", true);

    let (badges, _) = h.discord.add_attachment("visitors.md", BADGES);
    let asked = h.say(
        &UserMessage::new(GENERAL_ID, BOB_ID, BADGES_QUESTION)
            .mentioning(BOT_ID)
            .with_attachment(badges),
    );
    let answer = h.answer_to(GENERAL_ID, asked);
    let link = message_link(GENERAL_ID, asked);
    assert_eq!(
        answer.content(),
        format!(
            "{DISCORD_REPLY}\n\n**Sources**\n[1] [attachment: visitors.md](<{link}>) — Visitors"
        )
    );
    // Learned as well: ✅, and a later question without the file finds it in the brain.
    h.wait("✅ on the question's file", Duration::from_secs(30), |h| {
        h.discord
            .reactions(asked)
            .contains(&"✅".to_string())
            .then_some(())
    });
    assert_eq!(
        handbook_documents(&h.store, &format!("discord:{GUILD_ID}")),
        ["visitors.md"]
    );
    let again = h.say(&UserMessage::new(GENERAL_ID, ALICE_ID, BADGES_QUESTION).mentioning(BOT_ID));
    let from_brain = h.answer_to(GENERAL_ID, again);
    assert_eq!(
        from_brain.content(),
        format!("{DISCORD_REPLY}\n\n**Sources**\n[1] [visitors.md](<{link}>) — Visitors")
    );
}

#[test]
fn discord_attachments_that_cannot_be_read_are_named_and_the_brain_still_answers() {
    let h = DiscordHarness::start_with(DiscordOptions::default(), discord_llm(), |config| {
        config.ingest.max_file_bytes = 2048;
    });
    // The brain learns the parking notes in #random; #general only asks it.
    discord_link(&h, RANDOM_ID, "both", true);
    discord_link(&h, GENERAL_ID, "ask", false);
    let (parking, _) = h.discord.add_attachment(
        "parking.md",
        b"# Parking\n\nVisitors park on level two of the garage.\n",
    );
    let taught =
        h.say(&UserMessage::new(RANDOM_ID, ALICE_ID, "parking rules").with_attachment(parking));
    h.wait("✅ on the parking notes", Duration::from_secs(30), |h| {
        h.discord
            .reactions(taught)
            .contains(&"✅".to_string())
            .then_some(())
    });

    // A link that no longer answers, a file of no readable kind, one over the size limit.
    let (gone, _) = h
        .discord
        .add_attachment("gone.md", b"# Gone\n\nNever read.\n");
    h.discord.set_attachment_status(gone, 404);
    let (blob, _) = h
        .discord
        .add_attachment("data.bin", &[0, 0x9f, 0x13, 0x37, 0, 0xff]);
    let (huge, _) = h.discord.add_attachment("huge.md", &[b'a'; 4096]);
    let asked = h.say(
        &UserMessage::new(GENERAL_ID, BOB_ID, "where do visitors park?")
            .mentioning(BOT_ID)
            .with_attachment(gone)
            .with_attachment(blob)
            .with_attachment(huge),
    );
    let answer = h.answer_to(GENERAL_ID, asked);
    assert_eq!(
        answer.content(),
        format!(
            "⚠️ I couldn't read the attachment `gone.md`: I couldn't download it; please attach \
             it again.\n\
             ⚠️ I couldn't read the attachment `data.bin`: I can't read this kind of file.\n\
             ⚠️ I couldn't read the attachment `huge.md`: it is larger than 2 KB, the most I \
             read.\n\n\
             {DISCORD_REPLY}\n\n**Sources**\n[1] [parking.md](<{}>) — Parking",
            message_link(RANDOM_ID, taught)
        )
    );
    // Nothing of the failures' own words (statuses, addresses, the extractor's) is shown.
    for version in &answer.versions {
        for internal in [
            "404",
            "Not Found",
            "127.0.0.1",
            "extractor",
            "max_file_bytes",
        ] {
            assert!(!version.content.contains(internal), "{}", version.content);
        }
    }
    // The ask-only channel learned none of them.
    let documents = handbook_documents(&h.store, &format!("discord:{GUILD_ID}"));
    assert!(
        documents.contains(&"parking.md".to_string()),
        "{documents:?}"
    );
    for name in ["gone.md", "data.bin", "huge.md"] {
        assert!(!documents.contains(&name.to_string()), "{documents:?}");
    }
}

/// An `app_mention` of the bot by `user` with `files` (name, URL), as Slack sends it.
fn slack_mention_with_files(
    ts: &str,
    user: &str,
    text: &str,
    files: &[(&str, &str)],
) -> serde_json::Value {
    json!({
        "type": "app_mention", "user": user, "channel": GENERAL, "ts": ts,
        "text": format!("<@{BOT}> {text}"),
        "files": slack_files(files),
    })
}

fn slack_files(files: &[(&str, &str)]) -> serde_json::Value {
    files
        .iter()
        .map(|(name, url)| {
            json!({
                "id": format!("F0{}", name.to_uppercase().replace('.', "")),
                "name": name, "mimetype": "text/markdown",
                "url_private": url, "url_private_download": url,
                "permalink": format!("https://engram.slack.com/files/{BOB}/{name}"),
            })
        })
        .collect()
}

/// The finished answer in `thread` (no longer streaming) whose text holds `contains`.
fn slack_answer(h: &SlackHarness, thread: &str, contains: &str) -> crate::fakes::slack::Message {
    h.wait("the answer", Duration::from_secs(30), |h| {
        h.slack
            .thread(thread)
            .into_iter()
            .find(|m| m.user == BOT && !m.deleted && !m.streaming && m.text().contains(contains))
    })
}

#[test]
fn slack_a_file_attached_to_a_mention_is_quoted_without_an_llm_and_not_learned_in_an_ask_channel() {
    let h = SlackHarness::start_with(
        SlackMode::Http,
        SlackOptions::default(),
        slack_llm(),
        |config| {
            config.llm.base_url = String::new();
        },
    );
    h.command(ALICE, "/brain", "create handbook");
    h.posted("the brain created", "Created the brain `handbook`");
    h.command(ALICE, "/brain", "link handbook ask");
    h.posted("the channel linked", "now uses the brain `handbook`");

    // One post: Slack sends the `file_share` message and the `app_mention`.
    let url = h.slack.add_file("visitors.md", BADGES);
    let ts = h.slack.next_ts();
    over_http(
        &h,
        &format!("Ev-share-{ts}"),
        json!({
            "type": "message", "subtype": "file_share", "channel": GENERAL, "user": BOB,
            "text": format!("<@{BOT}> {BADGES_QUESTION}"), "ts": ts, "channel_type": "channel",
            "files": slack_files(&[("visitors.md", &url)]),
        }),
    );
    over_http(
        &h,
        &format!("Ev-mention-{ts}"),
        slack_mention_with_files(&ts, BOB, BADGES_QUESTION, &[("visitors.md", &url)]),
    );
    let answer = slack_answer(&h, &ts, "Sources");
    let permalink = format!("https://engram.slack.com/files/{BOB}/visitors.md");
    assert_eq!(
        answer.text(),
        format!(
            "No LLM is configured, so here is what the documents say:\n\n> Visitor badges are \
             collected at the east desk on floor three. [1]\n\n*Sources*\n[1] \
             [attachment: visitors.md]({permalink}) — Visitors"
        )
    );
    // Not learned in an ask channel.
    assert!(h.slack.reactions(&ts).is_empty());
    assert!(handbook_documents(
        &h.config.store,
        &format!("slack:{}", crate::fakes::slack::TEAM)
    )
    .is_empty());

    // A file whose link does not answer: named in one line; the brain (empty) still answers.
    let missing = format!("{}missing.md", url.trim_end_matches("visitors.md"));
    let ts = h.slack.next_ts();
    over_http(
        &h,
        &format!("Ev-mention-{ts}"),
        slack_mention_with_files(&ts, BOB, BADGES_QUESTION, &[("missing.md", &missing)]),
    );
    let answer = slack_answer(&h, &ts, "found nothing");
    assert_eq!(
        answer.text().lines().next(),
        Some("⚠️ I couldn't read the attachment `missing.md`: I couldn't download it; please attach it again."),
        "{}",
        answer.text()
    );
    assert!(!answer.text().contains("404"), "{}", answer.text());
}

/// The gateway core, as both adapters hand it a question with files: the files travel in the
/// `answer` job, from a mention and from a message in a thread opened on an answer alike.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_questions_files_travel_in_its_answer_job() {
    use engram::brain::{BindingMode, TenantKey};
    use engram::chat::{ChannelKey, MessageRef};
    use engram::gateway::{ChatEvent, Gateway, Handled, Origin, PostedFile};

    let world = crate::answers::World::new().await;
    let (tenant, brain) = world.tenant("discord:1").await;
    world
        .store
        .bind_channel(tenant, "discord:10", brain, BindingMode::Ask)
        .await
        .unwrap();
    let config = engram::config::Config::defaults();
    let gateway = Gateway {
        store: world.store.clone(),
        index: world.index.clone(),
        outlet: world.outlet.clone(),
        ingest: config.ingest,
        max_attempts: 3,
        metrics: Default::default(),
        learn_messages: true,
        budgets: config.budgets,
    };
    let origin = |event: &str, channel: &str, parent: Option<&str>| Origin {
        platform: "test".into(),
        event_id: event.into(),
        tenant: TenantKey::parse("discord:1").unwrap(),
        channel: ChannelKey(channel.into()),
        parent: parent.map(|parent| ChannelKey(parent.into())),
        message: Some(MessageRef {
            channel: ChannelKey(channel.into()),
            id: format!("msg-{event}"),
        }),
        user: "ann".into(),
    };
    let file = |name: &str| PostedFile {
        name: name.into(),
        size: 42,
        url: format!("https://cdn.example/{name}"),
        link: Some(format!("https://discord.com/channels/1/10/{name}")),
    };
    let attachments_of = |handled: Handled| {
        let store = world.store.clone();
        async move {
            let Handled::Asked {
                job,
                placeholder: Some(placeholder),
            } = handled
            else {
                panic!("expected an answer job, got {handled:?}");
            };
            let job = store.job(job).await.unwrap().unwrap();
            (job.payload["attachments"].clone(), placeholder)
        }
    };

    let (sent, answer) = attachments_of(
        gateway
            .handle(ChatEvent::Question {
                origin: origin("e1", "discord:10", None),
                text: "What does the memo say?".into(),
                conversation: None,
                continues: None,
                attachments: vec![file("memo.md"), file("table.xlsx")],
            })
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(
        sent,
        json!([
            {"name": "memo.md", "size": 42, "url": "https://cdn.example/memo.md",
             "link": "https://discord.com/channels/1/10/memo.md"},
            {"name": "table.xlsx", "size": 42, "url": "https://cdn.example/table.xlsx",
             "link": "https://discord.com/channels/1/10/table.xlsx"},
        ])
    );

    // A message in a thread opened on that answer is a question with its files too.
    let thread = format!("discord:{}", answer.id);
    let (sent, _) = attachments_of(
        gateway
            .handle(ChatEvent::InThread {
                origin: origin("e2", &thread, Some("discord:10")),
                text: "And this one?".into(),
                opened_on: answer.clone(),
                attachments: vec![file("second.md")],
            })
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(sent[0]["name"], "second.md");
    assert_eq!(sent.as_array().map(Vec::len), Some(1));

    // Without files the payload is what it always was.
    let (sent, _) = attachments_of(
        gateway
            .handle(ChatEvent::Question {
                origin: origin("e3", "discord:10", None),
                text: "Anything else?".into(),
                conversation: None,
                continues: None,
                attachments: Vec::new(),
            })
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(sent, serde_json::Value::Null);
}
