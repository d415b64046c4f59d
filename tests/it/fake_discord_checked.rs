//! The fake Discord proven against the real serenity client: gateway handshake, dispatches,
//! REST calls, rate limits, interactions, resume, and the payloads' fit to serenity's models.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use serenity::all::{
    ApplicationFlags, ChannelId, Client, ClientBuilder, CommandDataOptionValue, CommandInteraction,
    CommandOptionType, Context, CreateAllowedMentions, CreateCommand, CreateCommandOption,
    CreateMessage, EditInteractionResponse, EditMessage, EventHandler, GatewayIntents, Guild,
    GuildId, Http, HttpBuilder, Interaction, Message, MessageId, Permissions, ReactionType, Ready,
    ResumedEvent,
};
use serenity::http::HttpError;

use crate::fakes::discord::{
    wait_for, FakeDiscord, Options, Overwrite, RateLimit, SlashCommand, UserMessage, ALICE_ID,
    APPLICATION_ID, BOB_ID, BOT_ID, GENERAL_ID, GUILD_ID, THREAD_ID,
};

const WAIT: Duration = Duration::from_secs(10);

fn engram_intents() -> GatewayIntents {
    GatewayIntents::GUILDS | GatewayIntents::GUILD_MESSAGES | GatewayIntents::MESSAGE_CONTENT
}

/// What an `EventHandler` saw; answers slash commands by deferring, then editing.
#[derive(Default)]
struct Recorder {
    readies: Mutex<Vec<Ready>>,
    guilds: Mutex<Vec<Guild>>,
    messages: Mutex<Vec<Message>>,
    commands: Mutex<Vec<CommandInteraction>>,
    resumes: AtomicUsize,
    response_errors: Mutex<Vec<String>>,
}

#[serenity::async_trait]
impl EventHandler for Recorder {
    async fn ready(&self, _ctx: Context, ready: Ready) {
        self.readies.lock().unwrap().push(ready);
    }

    async fn guild_create(&self, _ctx: Context, guild: Guild, _is_new: Option<bool>) {
        self.guilds.lock().unwrap().push(guild);
    }

    async fn message(&self, _ctx: Context, message: Message) {
        self.messages.lock().unwrap().push(message);
    }

    async fn resume(&self, _ctx: Context, _event: ResumedEvent) {
        self.resumes.fetch_add(1, Ordering::SeqCst);
    }

    async fn interaction_create(&self, ctx: Context, interaction: Interaction) {
        let Interaction::Command(command) = interaction else {
            return;
        };
        self.commands.lock().unwrap().push(command.clone());
        let answered = async {
            command.defer(&ctx.http).await?;
            let answer =
                EditInteractionResponse::new().content(format!("answer to /{}", command.data.name));
            command.edit_response(&ctx.http, answer).await
        };
        if let Err(error) = answered.await {
            self.response_errors.lock().unwrap().push(error.to_string());
        }
    }
}

impl Recorder {
    fn message_ids(&self) -> Vec<MessageId> {
        self.messages.lock().unwrap().iter().map(|m| m.id).collect()
    }
}

/// serenity's HTTP client pointed at the fake: with `proxy`, requests go to
/// `{rest_url}/api/v10/...`; the ratelimiter must be disabled (it ignores the proxy).
fn http_for(fake: &FakeDiscord, token: &str) -> Http {
    HttpBuilder::new(token)
        .proxy(fake.rest_url())
        .ratelimiter_disabled(true)
        .build()
}

struct Running {
    http: Arc<Http>,
    shards: Arc<serenity::gateway::ShardManager>,
    client: tokio::task::JoinHandle<serenity::Result<()>>,
}

/// Builds a serenity `Client` against the fake and starts it. serenity learns the gateway URL
/// from `GET /api/v10/gateway` while building, so the proxy alone points it at the fake.
async fn start_client(
    fake: &FakeDiscord,
    intents: GatewayIntents,
    handler: Arc<Recorder>,
) -> Running {
    let http = http_for(fake, &fake.token());
    let mut client: Client = ClientBuilder::new_with_http(http, intents)
        .event_handler_arc(handler)
        .await
        .expect("serenity client");
    assert_eq!(*client.ws_url.lock().await, fake.gateway_url());
    let (http, shards) = (client.http.clone(), client.shard_manager.clone());
    let client = tokio::spawn(async move { client.start().await });
    Running {
        http,
        shards,
        client,
    }
}

async fn ready(fake: &FakeDiscord, intents: GatewayIntents) -> (Arc<Recorder>, Running) {
    let recorder = Arc::new(Recorder::default());
    let running = start_client(fake, intents, recorder.clone()).await;
    wait_for("READY", WAIT, || {
        (!recorder.readies.lock().unwrap().is_empty()).then_some(())
    })
    .await;
    (recorder, running)
}

async fn wait_for_message(recorder: &Recorder, id: MessageId) -> Message {
    wait_for("a message event", WAIT, || {
        recorder
            .messages
            .lock()
            .unwrap()
            .iter()
            .find(|m| m.id == id)
            .cloned()
    })
    .await
}

fn id_of(payload: &Value) -> u64 {
    payload["id"].as_str().unwrap().parse().unwrap()
}

fn serenity_error_status(error: &serenity::Error) -> Option<(u16, isize)> {
    match error {
        serenity::Error::Http(HttpError::UnsuccessfulRequest(response)) => {
            Some((response.status_code.as_u16(), response.error.code))
        }
        _ => None,
    }
}

#[tokio::test]
async fn discord_builders_deserialize_into_serenity_models() {
    let fake = FakeDiscord::start(Options::default()).await;
    let (file, url) = fake.add_attachment("notes.md", b"# Notes\n");
    let question = fake.message_create(&UserMessage::new(
        GENERAL_ID,
        BOB_ID,
        "where are the notes?",
    ));
    fake.dispatch("MESSAGE_CREATE", question.clone());
    let reply = fake.message_create(
        &UserMessage::new(THREAD_ID, ALICE_ID, "here")
            .mentioning(BOT_ID)
            .with_attachment(file)
            .replying_to(id_of(&question)),
    );
    let message: Message = serde_path_to_error::deserialize(&reply).expect("a serenity Message");
    assert_eq!(message.channel_id, ChannelId::new(THREAD_ID));
    assert_eq!(message.guild_id, Some(GuildId::new(GUILD_ID)));
    assert!(message.content.ends_with("here"));
    assert!(message.mentions_user_id(BOT_ID));
    assert_eq!(message.attachments[0].url, url);
    assert_eq!(message.attachments[0].size, 8);
    let referenced = message.referenced_message.expect("the replied-to message");
    assert_eq!(referenced.content, "where are the notes?");
    assert_eq!(
        message.message_reference.unwrap().message_id,
        Some(referenced.id)
    );

    let ask = fake.interaction_create(
        &SlashCommand::new(GENERAL_ID, BOB_ID, "ask").option("question", "why?"),
    );
    let Interaction::Command(ask) = serde_path_to_error::deserialize(&ask).expect("an Interaction")
    else {
        panic!("not a command interaction");
    };
    assert_eq!(ask.data.name, "ask");
    assert_eq!(
        ask.data.options[0].value,
        CommandDataOptionValue::String("why?".into())
    );
    let member = ask.member.expect("guild member");
    assert_eq!(member.user.id.get(), BOB_ID);
    assert!(!member.permissions.unwrap().manage_guild());

    let create = fake.interaction_create(
        &SlashCommand::new(GENERAL_ID, ALICE_ID, "brain")
            .subcommand("create")
            .option("name", "research"),
    );
    let Interaction::Command(create) =
        serde_path_to_error::deserialize(&create).expect("an Interaction")
    else {
        panic!("not a command interaction");
    };
    let CommandDataOptionValue::SubCommand(options) = &create.data.options[0].value else {
        panic!("a subcommand: {:?}", create.data.options);
    };
    assert_eq!(create.data.options[0].name, "create");
    assert_eq!(
        options[0].value,
        CommandDataOptionValue::String("research".into())
    );
    assert!(create.member.unwrap().permissions.unwrap().manage_guild());
}

#[tokio::test]
async fn discord_client_connects_and_receives_ready_guild_and_messages() {
    let fake = FakeDiscord::start(Options::default()).await;
    let (recorder, running) = ready(&fake, engram_intents()).await;

    let ready = recorder.readies.lock().unwrap()[0].clone();
    assert_eq!(ready.user.id.get(), BOT_ID);
    assert_eq!(ready.application.id.get(), APPLICATION_ID);
    assert_eq!(ready.guilds.len(), 1);
    assert!(ready.guilds[0].unavailable);
    assert_eq!(fake.identify_intents(), vec![engram_intents().bits()]);
    // serenity takes the application id from READY; interaction responses need it.
    assert_eq!(
        running.http.application_id().map(|id| id.get()),
        Some(APPLICATION_ID)
    );

    let guild = wait_for("GUILD_CREATE", WAIT, || {
        recorder.guilds.lock().unwrap().first().cloned()
    })
    .await;
    assert_eq!(guild.id.get(), GUILD_ID);
    assert_eq!(guild.name, "Test Guild");
    assert!(
        guild.channels.contains_key(&ChannelId::new(GENERAL_ID)),
        "channels: {:?}",
        guild.channels
    );
    assert_eq!(guild.threads[0].id.get(), THREAD_ID);
    assert_eq!(guild.members.len(), 3);
    let alice = &guild.members[&serenity::all::UserId::new(ALICE_ID)];
    let alice_role = &guild.roles[&alice.roles[0]];
    assert!(alice_role.permissions.manage_guild());

    let (file, url) = fake.add_attachment("report.txt", b"quarterly numbers");
    let payload = fake.message_create(
        &UserMessage::new(GENERAL_ID, ALICE_ID, "remember this")
            .mentioning(BOT_ID)
            .with_attachment(file),
    );
    assert_eq!(fake.dispatch("MESSAGE_CREATE", payload.clone()), 1);
    let seen = wait_for_message(&recorder, MessageId::new(id_of(&payload))).await;
    assert_eq!(seen.content, format!("<@{BOT_ID}> remember this"));
    assert_eq!(seen.author.id.get(), ALICE_ID);
    assert_eq!(seen.attachments[0].filename, "report.txt");
    assert_eq!(seen.attachments[0].url, url);

    // The CDN serves the bytes without the bot token; an expired link answers 404.
    let cdn = reqwest::Client::new();
    let fetched = cdn.get(&url).send().await.unwrap();
    assert_eq!(fetched.status().as_u16(), 200);
    assert_eq!(
        fetched.bytes().await.unwrap().as_ref(),
        b"quarterly numbers"
    );
    fake.set_attachment_status(file, 404);
    assert_eq!(cdn.get(&url).send().await.unwrap().status().as_u16(), 404);
    let fetches: Vec<_> = fake
        .requests()
        .into_iter()
        .filter(|r| r.path.starts_with("/attachments/"))
        .collect();
    assert_eq!(fetches.len(), 2);
    assert!(fetches
        .iter()
        .all(|r| !r.bot_auth && r.query.as_deref().is_some_and(|q| q.starts_with("ex="))));

    let requests = fake.requests();
    let gateway = requests
        .iter()
        .find(|r| r.path == "/api/v10/gateway")
        .expect("GET /gateway");
    assert!(gateway.bot_auth && gateway.method == "GET");
    assert!(
        fake.unexpected_requests().is_empty(),
        "{:?}",
        fake.unexpected_requests()
    );
    running.client.abort();
}

#[tokio::test]
async fn discord_http_create_edit_react_are_recorded() {
    // What is recorded, not the limits: serenity's client here has no rate limiter.
    let fake = FakeDiscord::start(Options {
        reaction_limit: None,
        ..Options::default()
    })
    .await;
    let http = http_for(&fake, &fake.token());
    let channel = ChannelId::new(GENERAL_ID);
    let question = fake.message_create(&UserMessage::new(GENERAL_ID, BOB_ID, "what's new?"));
    fake.dispatch("MESSAGE_CREATE", question.clone());

    let quiet = CreateAllowedMentions::new();
    let sent = channel
        .send_message(
            &http,
            CreateMessage::new()
                .content("working on it <@302>")
                .allowed_mentions(quiet.clone())
                .reference_message((channel, MessageId::new(id_of(&question)))),
        )
        .await
        .expect("message created");
    assert_eq!(sent.author.id.get(), BOT_ID);
    assert_eq!(
        sent.referenced_message.as_ref().unwrap().content,
        "what's new?"
    );
    let edited = channel
        .edit_message(
            &http,
            sent.id,
            EditMessage::new().content("done").allowed_mentions(quiet),
        )
        .await
        .expect("message edited");
    assert_eq!(edited.content, "done");
    assert!(edited.edited_timestamp.is_some());
    channel
        .create_reaction(&http, sent.id, ReactionType::Unicode("👀".into()))
        .await
        .unwrap();
    channel
        .create_reaction(&http, sent.id, ReactionType::Unicode("✅".into()))
        .await
        .unwrap();
    channel
        .delete_reaction(&http, sent.id, None, ReactionType::Unicode("👀".into()))
        .await
        .unwrap();
    channel.broadcast_typing(&http).await.unwrap();

    let stored = fake.message(sent.id.get()).expect("stored");
    assert_eq!(stored.content(), "done");
    let contents: Vec<&str> = stored.versions.iter().map(|v| v.content.as_str()).collect();
    assert_eq!(contents, ["working on it <@302>", "done"]);
    let no_pings = json!({"parse": [], "users": [], "roles": []});
    assert!(stored
        .versions
        .iter()
        .all(|v| v.allowed_mentions.as_ref() == Some(&no_pings)));
    assert_eq!(stored.edit_times().len(), 1);
    assert_eq!(fake.reactions(sent.id.get()), ["✅"]);
    assert_eq!(fake.typing(GENERAL_ID), 1);
    assert_eq!(fake.messages(GENERAL_ID).len(), 2);

    let paths: Vec<String> = fake
        .requests()
        .iter()
        .map(|r| format!("{} {}", r.method, r.path))
        .collect();
    let message = format!("/api/v10/channels/{GENERAL_ID}/messages/{}", sent.id);
    assert_eq!(
        paths,
        [
            format!("POST /api/v10/channels/{GENERAL_ID}/messages"),
            format!("PATCH {message}"),
            format!("PUT {message}/reactions/👀/@me"),
            format!("PUT {message}/reactions/✅/@me"),
            format!("DELETE {message}/reactions/👀/@me"),
            format!("POST /api/v10/channels/{GENERAL_ID}/typing"),
        ]
    );
    let requests = fake.requests();
    assert!(requests.iter().all(|r| r.bot_auth && r.status < 300));
    assert!(requests.windows(2).all(|pair| pair[0].at <= pair[1].at));
    let create = requests[0].body.as_ref().expect("a JSON body");
    assert_eq!(create["content"], "working on it <@302>");
    assert_eq!(create["message_reference"]["message_id"], question["id"]);
}

#[tokio::test]
async fn discord_edits_beyond_the_limit_get_a_429_with_discord_headers() {
    let window = Duration::from_secs(3);
    // Creates and edits share the channel's bucket: the first message and two edits fill it.
    let options = Options {
        message_limit: Some(RateLimit {
            requests: 3,
            per: window,
        }),
        ..Options::default()
    };
    let fake = FakeDiscord::start(options).await;
    let http = http_for(&fake, &fake.token());
    let channel = ChannelId::new(GENERAL_ID);
    let sent = channel
        .send_message(&http, CreateMessage::new().content("v0"))
        .await
        .unwrap();
    let edit = |content: &str| EditMessage::new().content(content);

    channel
        .edit_message(&http, sent.id, edit("v1"))
        .await
        .expect("first edit");
    // With the ratelimiter disabled, serenity's typed calls drop the response headers; a
    // caller that needs them sends the request itself.
    let raw = reqwest::Client::new();
    let url = format!(
        "{}/api/v10/channels/{GENERAL_ID}/messages/{}",
        fake.rest_url(),
        sent.id
    );
    let raw_edit = |content: &str| {
        raw.patch(&url)
            .header("Authorization", format!("Bot {}", fake.token()))
            .header("Content-Type", "application/json")
            .body(json!({"content": content}).to_string())
            .send()
    };
    let second = raw_edit("v2").await.unwrap();
    assert_eq!(second.status().as_u16(), 200);
    let header = |response: &reqwest::Response, name: &str| {
        response.headers()[name].to_str().unwrap().to_string()
    };
    assert_eq!(header(&second, "x-ratelimit-limit"), "3");
    assert_eq!(header(&second, "x-ratelimit-remaining"), "0");
    let reset_after: f64 = header(&second, "x-ratelimit-reset-after").parse().unwrap();
    assert!(reset_after > 0.0 && reset_after <= window.as_secs_f64());
    assert!(header(&second, "x-ratelimit-reset").parse::<f64>().unwrap() > 1.7e9);
    assert!(!header(&second, "x-ratelimit-bucket").is_empty());

    // serenity surfaces the 429 as an error with the status, but cannot decode Discord's 429
    // body (it has no `code`), so `retry_after` is lost: code -1.
    let error = channel
        .edit_message(&http, sent.id, edit("v3"))
        .await
        .unwrap_err();
    assert_eq!(serenity_error_status(&error), Some((429, -1)), "{error:?}");

    let limited = raw_edit("v4").await.unwrap();
    assert_eq!(limited.status().as_u16(), 429);
    assert_eq!(header(&limited, "x-ratelimit-remaining"), "0");
    let retry_header: u64 = header(&limited, "retry-after").parse().unwrap();
    assert!((1..=3).contains(&retry_header));
    let body: Value = serde_json::from_str(&limited.text().await.unwrap()).unwrap();
    assert_eq!(body["message"], "You are being rate limited.");
    assert_eq!(body["global"], false);
    let retry_after = body["retry_after"].as_f64().unwrap();
    assert!(
        retry_after > 0.0 && retry_after <= window.as_secs_f64(),
        "{retry_after}"
    );
    assert_eq!(fake.rate_limited(GENERAL_ID), 2);

    tokio::time::sleep(Duration::from_secs_f64(retry_after)).await;
    channel
        .edit_message(&http, sent.id, edit("v5"))
        .await
        .expect("edit after the window");
    let contents: Vec<String> = fake
        .message(sent.id.get())
        .unwrap()
        .versions
        .into_iter()
        .map(|v| v.content)
        .collect();
    assert_eq!(contents, ["v0", "v1", "v2", "v5"]);
    assert_eq!(fake.rate_limited(GENERAL_ID), 2);
    assert_eq!(fake.rate_limited(THREAD_ID), 0);
}

#[tokio::test]
async fn discord_slash_command_is_deferred_then_edited() {
    let fake = FakeDiscord::start(Options::default()).await;
    let (recorder, running) = ready(&fake, engram_intents()).await;

    let ask = CreateCommand::new("ask")
        .description("Ask your brain")
        .add_option(
            CreateCommandOption::new(CommandOptionType::String, "question", "What to ask")
                .required(true),
        );
    let registered = GuildId::new(GUILD_ID)
        .set_commands(&running.http, vec![ask])
        .await
        .unwrap();
    assert_eq!(registered[0].name, "ask");
    assert_eq!(registered[0].options[0].name, "question");
    assert_eq!(fake.commands(Some(GUILD_ID)).len(), 1);

    let payload = fake.interaction_create(
        &SlashCommand::new(GENERAL_ID, BOB_ID, "ask").option("question", "what is X?"),
    );
    fake.dispatch("INTERACTION_CREATE", payload.clone());
    let id = id_of(&payload);
    let record = wait_for("the response edit", WAIT, || {
        let record = fake.interaction(id)?;
        let original = fake.message(record.original_message?)?;
        (original.versions.len() == 2).then_some((record, original))
    })
    .await;
    let (record, original) = record;
    assert_eq!(
        (record.guild_id, record.channel_id, record.user_id),
        (GUILD_ID, GENERAL_ID, BOB_ID)
    );
    assert_eq!(record.callbacks.len(), 1);
    assert_eq!(
        record.callbacks[0].1["type"], 5,
        "deferred: {:?}",
        record.callbacks
    );
    assert_eq!(original.versions[0].content, "");
    assert_eq!(original.content(), "answer to /ask");
    assert_eq!(original.json["flags"], 0, "no longer 'thinking'");
    assert_eq!(original.channel_id, GENERAL_ID);
    assert!(recorder.response_errors.lock().unwrap().is_empty());

    let command = recorder.commands.lock().unwrap()[0].clone();
    assert_eq!(
        command.data.options[0].value,
        CommandDataOptionValue::String("what is X?".into())
    );
    let webhook = format!(
        "/api/v10/webhooks/{APPLICATION_ID}/{}/messages/@original",
        record.token
    );
    let paths: Vec<String> = fake
        .requests()
        .iter()
        .map(|r| format!("{} {}", r.method, r.path))
        .collect();
    assert!(paths.contains(&format!(
        "POST /api/v10/interactions/{id}/{}/callback",
        record.token
    )));
    assert!(paths.contains(&format!("PATCH {webhook}")));

    // A second acknowledgement is refused the way Discord refuses it.
    let again = command.defer(&running.http).await.unwrap_err();
    assert_eq!(serenity_error_status(&again), Some((400, 40060)));
    running.client.abort();
}

#[tokio::test]
async fn discord_dropped_connection_resumes_and_replays_missed_events_once() {
    let options = Options {
        heartbeat_interval: Duration::from_secs(30),
        ..Options::default()
    };
    let fake = FakeDiscord::start(options).await;
    let (recorder, running) = ready(&fake, engram_intents()).await;
    let send = |text: &str| {
        let payload = fake.message_create(&UserMessage::new(GENERAL_ID, ALICE_ID, text));
        fake.dispatch("MESSAGE_CREATE", payload.clone());
        MessageId::new(id_of(&payload))
    };

    let first = send("before");
    wait_for_message(&recorder, first).await;
    assert_eq!(fake.drop_connections(), 1);
    let missed = [send("while away 1"), send("while away 2")];
    wait_for_message(&recorder, missed[1]).await;
    let last = send("after");
    wait_for_message(&recorder, last).await;

    let mut seen = recorder.message_ids();
    seen.sort();
    assert_eq!(seen, [first, missed[0], missed[1], last]);
    assert_eq!(fake.identifies(), 1);
    assert_eq!(fake.resumes(), 1);
    assert_eq!(fake.replayed_events(), 2);
    assert_eq!(recorder.resumes.load(Ordering::SeqCst), 1);
    assert_eq!(recorder.readies.lock().unwrap().len(), 1);
    running.client.abort();
}

#[tokio::test]
async fn discord_unknown_session_is_invalidated_and_serenity_identifies_again() {
    let options = Options {
        heartbeat_interval: Duration::from_secs(30),
        ..Options::default()
    };
    let fake = FakeDiscord::start(options).await;
    let (recorder, running) = ready(&fake, engram_intents()).await;
    fake.forget_sessions();
    fake.drop_connections();
    // serenity waits 5 s between IDENTIFYs of a shard.
    let wait = Duration::from_secs(15);
    wait_for("a second READY", wait, || {
        (recorder.readies.lock().unwrap().len() == 2).then_some(())
    })
    .await;
    assert_eq!(fake.resumes(), 1);
    assert_eq!(fake.invalid_sessions(), 1);
    assert_eq!(fake.identifies(), 2);
    let readies = recorder.readies.lock().unwrap().clone();
    assert_ne!(readies[0].session_id, readies[1].session_id);
    running.client.abort();
}

#[tokio::test]
async fn discord_heartbeats_are_acknowledged() {
    let options = Options {
        heartbeat_interval: Duration::from_millis(200),
        ..Options::default()
    };
    let fake = FakeDiscord::start(options).await;
    let (_recorder, running) = ready(&fake, engram_intents()).await;
    wait_for("heartbeats", WAIT, || {
        (fake.heartbeats() >= 3).then_some(())
    })
    .await;
    // serenity reconnects when a heartbeat goes unacknowledged; it never had to.
    assert_eq!((fake.identifies(), fake.resumes()), (1, 0));
    assert_eq!(fake.live_connections(), 1);

    // A clean shutdown: serenity sends a close frame and waits for the fake's.
    tokio::time::timeout(WAIT, running.shards.shutdown_all())
        .await
        .expect("shutdown completes");
    let ended = tokio::time::timeout(WAIT, running.client)
        .await
        .expect("client ends")
        .unwrap();
    assert!(ended.is_ok(), "{ended:?}");
    wait_for("the socket to close", WAIT, || {
        (fake.live_connections() == 0).then_some(())
    })
    .await;
}

#[tokio::test]
async fn discord_without_the_content_intent_messages_arrive_empty() {
    let options = Options {
        application_flags: 0,
        ..Options::default()
    };
    let fake = FakeDiscord::start(options).await;
    // Asking for a privileged intent the application lacks: close 4014, which ends the client.
    let refused = start_client(&fake, engram_intents(), Arc::new(Recorder::default())).await;
    let ended = tokio::time::timeout(WAIT, refused.client)
        .await
        .expect("client ends")
        .unwrap();
    let error = ended.expect_err("disallowed intents");
    assert!(
        matches!(
            error,
            serenity::Error::Gateway(serenity::gateway::GatewayError::DisallowedGatewayIntents)
        ),
        "{error:?}"
    );

    let intents = GatewayIntents::GUILDS | GatewayIntents::GUILD_MESSAGES;
    let (recorder, running) = ready(&fake, intents).await;
    let (file, _) = fake.add_attachment("a.txt", b"a");
    let plain =
        fake.message_create(&UserMessage::new(GENERAL_ID, BOB_ID, "secret").with_attachment(file));
    let mention =
        fake.message_create(&UserMessage::new(GENERAL_ID, BOB_ID, "hello").mentioning(BOT_ID));
    fake.dispatch("MESSAGE_CREATE", plain.clone());
    fake.dispatch("MESSAGE_CREATE", mention.clone());
    let plain = wait_for_message(&recorder, MessageId::new(id_of(&plain))).await;
    let mention = wait_for_message(&recorder, MessageId::new(id_of(&mention))).await;
    assert_eq!((plain.content.as_str(), plain.attachments.len()), ("", 0));
    assert_eq!(mention.content, format!("<@{BOT_ID}> hello"));
    running.client.abort();
}

#[tokio::test]
async fn discord_reads_for_setup_checks_and_unknown_routes() {
    let mut options = Options {
        application_flags: 0,
        ..Options::default()
    };
    // The bot may not write in #general (an @everyone overwrite), though it may elsewhere.
    options.guilds[0].channels[0].overwrites.push(Overwrite {
        id: GUILD_ID,
        member: false,
        allow: 0,
        deny: Permissions::SEND_MESSAGES.bits(),
    });
    let fake = FakeDiscord::start(options).await;
    let http = http_for(&fake, &fake.token());

    assert_eq!(http.get_current_user().await.unwrap().id.get(), BOT_ID);
    let application = http.get_current_application_info().await.unwrap();
    assert_eq!(application.id.get(), APPLICATION_ID);
    let content_flags = ApplicationFlags::GATEWAY_MESSAGE_CONTENT
        | ApplicationFlags::GATEWAY_MESSAGE_CONTENT_LIMITED;
    assert!(!application.flags.unwrap().intersects(content_flags));
    fake.set_application_flags(ApplicationFlags::GATEWAY_MESSAGE_CONTENT_LIMITED.bits());
    let application = http.get_current_application_info().await.unwrap();
    assert!(application.flags.unwrap().intersects(content_flags));
    let guild = http.get_guild(GuildId::new(GUILD_ID)).await.unwrap();
    let bob = http
        .get_member(GuildId::new(GUILD_ID), BOB_ID.into())
        .await
        .unwrap();
    let alice = http
        .get_member(GuildId::new(GUILD_ID), ALICE_ID.into())
        .await
        .unwrap();
    let role_permissions = |roles: &[serenity::all::RoleId]| {
        roles
            .iter()
            .fold(Permissions::empty(), |p, r| p | guild.roles[r].permissions)
    };
    assert!(role_permissions(&alice.roles).manage_guild());
    assert!(!role_permissions(&bob.roles).manage_guild());
    let general = http
        .get_channel(ChannelId::new(GENERAL_ID))
        .await
        .unwrap()
        .guild()
        .unwrap();
    assert_eq!(general.permission_overwrites.len(), 1);

    let refused = ChannelId::new(GENERAL_ID)
        .send_message(&http, CreateMessage::new().content("hi"))
        .await
        .unwrap_err();
    assert_eq!(serenity_error_status(&refused), Some((403, 50013)));
    // serenity's builders refuse over-long content before sending; its raw call does not.
    let requests = fake.requests().len();
    let too_long = ChannelId::new(THREAD_ID)
        .send_message(&http, CreateMessage::new().content("x".repeat(2001)))
        .await
        .unwrap_err();
    assert!(
        matches!(too_long, serenity::Error::Model(_)),
        "{too_long:?}"
    );
    assert_eq!(fake.requests().len(), requests);
    let body = json!({"content": "x".repeat(2001)});
    let too_long = http
        .send_message(ChannelId::new(THREAD_ID), vec![], &body)
        .await
        .unwrap_err();
    assert_eq!(serenity_error_status(&too_long), Some((400, 50035)));
    ChannelId::new(THREAD_ID)
        .say(&http, "in the thread")
        .await
        .expect("threads allow it");

    let missing = http
        .get_guild_roles(GuildId::new(GUILD_ID))
        .await
        .unwrap_err();
    assert_eq!(
        serenity_error_status(&missing).map(|(status, _)| status),
        Some(404)
    );
    let unexpected = fake.unexpected_requests();
    assert_eq!(unexpected.len(), 1);
    assert_eq!(
        unexpected[0].path,
        format!("/api/v10/guilds/{GUILD_ID}/roles")
    );

    let stranger = http_for(&fake, "not-the-token");
    let unauthorized = stranger.get_current_user().await.unwrap_err();
    assert_eq!(serenity_error_status(&unauthorized), Some((401, 0)));
    assert!(!fake.requests().last().unwrap().bot_auth);
    let started = Instant::now();
    let bad = HttpBuilder::new("not-the-token")
        .proxy(fake.rest_url())
        .ratelimiter_disabled(true)
        .build();
    let mut client = ClientBuilder::new_with_http(bad, GatewayIntents::GUILDS)
        .await
        .unwrap();
    let error = tokio::time::timeout(WAIT, client.start())
        .await
        .expect("client ends")
        .unwrap_err();
    assert!(
        matches!(
            error,
            serenity::Error::Gateway(serenity::gateway::GatewayError::InvalidAuthentication)
        ),
        "{error:?}"
    );
    assert!(started.elapsed() < WAIT);
}
