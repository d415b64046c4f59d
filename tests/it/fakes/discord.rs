//! A local stand-in for Discord (what sits across the network): the REST API under `/api/v10`,
//! the gateway WebSocket at `/gateway` and a CDN for attachments, all on one 127.0.0.1 port, so
//! the real serenity client can run against it.
//!
//! It keeps what a test asserts on (every request, messages with their edit history,
//! reactions, interaction responses, registered commands, 429s served) and behaves like Discord
//! where engram depends on it: `Authorization: Bot <token>` checked, per-channel rate limits with
//! Discord's headers and 429 body, Discord's JSON error codes, privileged intents checked against
//! the application's flags (close 4014), message content withheld from sessions without the
//! message-content intent, and sessions that can be resumed with their missed events replayed.
//!
//! Snowflakes, timestamps and permission bits are Discord's formats; payload shapes follow
//! Discord's docs and are checked against serenity's models by `fake_discord_checked.rs`.

use std::collections::{HashMap, HashSet};
use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{header, HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::Router;
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use serenity::model::application::ApplicationFlags;
use serenity::model::gateway::GatewayIntents;
use serenity::model::{Permissions, Timestamp};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::Message as WsMessage;
use tokio_util::sync::CancellationToken;

/// The default world's ids: one guild with two text channels, a thread in the first, and two
/// members.
pub const BOT_ID: u64 = 1_210_000_000_000_000_001;
pub const APPLICATION_ID: u64 = 1_210_000_000_000_000_001;
pub const GUILD_ID: u64 = 1_210_000_000_000_000_100;
pub const GENERAL_ID: u64 = 1_210_000_000_000_000_200;
pub const THREAD_ID: u64 = 1_210_000_000_000_000_201;
/// A second text channel, which tests leave unbound.
pub const RANDOM_ID: u64 = 1_210_000_000_000_000_202;
/// A member with MANAGE_GUILD.
pub const ALICE_ID: u64 = 1_210_000_000_000_000_301;
/// A member without it.
pub const BOB_ID: u64 = 1_210_000_000_000_000_302;
pub const TOKEN: &str = "fake-bot-token.engram.tests";

/// Discord's epoch (2015-01-01) in Unix milliseconds, for snowflakes.
const DISCORD_EPOCH_MS: u64 = 1_420_070_400_000;
const JOINED_AT: &str = "2024-01-01T00:00:00.000000+00:00";
const MAX_CONTENT: usize = 2000;
/// How long Discord remembers a message's nonce for `enforce_nonce` ("the past few minutes").
const NONCE_WINDOW: Duration = Duration::from_secs(5 * 60);

#[derive(Debug, Clone)]
pub struct FakeUser {
    pub id: u64,
    pub name: String,
}

impl FakeUser {
    pub fn new(id: u64, name: &str) -> Self {
        Self {
            id,
            name: name.to_string(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChannelKind {
    Text,
    /// A public thread; permissions come from its parent.
    PublicThread {
        parent: u64,
    },
}

/// A channel permission overwrite: for a member (`member: true`) or a role (the guild id is the
/// `@everyone` role).
#[derive(Debug, Clone, Copy)]
pub struct Overwrite {
    pub id: u64,
    pub member: bool,
    pub allow: u64,
    pub deny: u64,
}

#[derive(Debug, Clone)]
pub struct FakeChannel {
    pub id: u64,
    pub name: String,
    pub kind: ChannelKind,
    pub overwrites: Vec<Overwrite>,
}

impl FakeChannel {
    pub fn text(id: u64, name: &str) -> Self {
        Self {
            id,
            name: name.to_string(),
            kind: ChannelKind::Text,
            overwrites: Vec::new(),
        }
    }

    pub fn thread(id: u64, name: &str, parent: u64) -> Self {
        Self {
            kind: ChannelKind::PublicThread { parent },
            ..Self::text(id, name)
        }
    }
}

/// A guild member; `permissions` are granted through a role of their own, on top of
/// `@everyone`.
#[derive(Debug, Clone)]
pub struct FakeMember {
    pub user: FakeUser,
    pub permissions: u64,
}

#[derive(Debug, Clone)]
pub struct FakeGuild {
    pub id: u64,
    pub name: String,
    pub owner_id: u64,
    /// The `@everyone` role's permissions.
    pub everyone_permissions: u64,
    /// The bot's own role (the bot is always a member).
    pub bot_permissions: u64,
    pub channels: Vec<FakeChannel>,
    pub members: Vec<FakeMember>,
}

/// `requests` per `per`, counted in fixed windows from the first request (Discord's buckets).
#[derive(Debug, Clone, Copy)]
pub struct RateLimit {
    pub requests: u32,
    pub per: Duration,
}

#[derive(Debug, Clone)]
pub struct Options {
    /// The bot token without the `Bot ` prefix.
    pub token: String,
    pub bot: FakeUser,
    pub application_id: u64,
    /// Application flags as READY and `/oauth2/applications/@me` report them: whether the
    /// message-content (and members, presence) intents are enabled.
    pub application_flags: u64,
    pub guilds: Vec<FakeGuild>,
    pub heartbeat_interval: Duration,
    /// Per channel, one bucket for `POST /channels/{c}/messages` and `PATCH` of its messages
    /// (creates and edits share it, as measured on Discord), and per interaction on edits of
    /// its responses. Default 5 per 5 s.
    pub message_limit: Option<RateLimit>,
    /// Per channel, on adding and removing reactions. Default 1 per 0.25 s.
    pub reaction_limit: Option<RateLimit>,
    /// Per channel, on `POST /channels/{c}/typing`. Default 5 per 5 s.
    pub typing_limit: Option<RateLimit>,
    /// Per channel, on reading its messages (`GET /channels/{c}/messages`). Default 5 per 5 s.
    pub history_limit: Option<RateLimit>,
    /// Every request with the bot's token, whatever the route (a global 429 carries
    /// `X-RateLimit-Global`). Default 50 per s.
    pub global_limit: Option<RateLimit>,
    /// The shard count `GET /gateway/bot` recommends. Default 1.
    pub shards: u64,
}

/// What a bot usually has: read, write, react, attach, use threads.
pub fn member_permissions() -> u64 {
    (Permissions::VIEW_CHANNEL
        | Permissions::SEND_MESSAGES
        | Permissions::READ_MESSAGE_HISTORY
        | Permissions::ADD_REACTIONS
        | Permissions::ATTACH_FILES
        | Permissions::EMBED_LINKS
        | Permissions::USE_APPLICATION_COMMANDS
        | Permissions::SEND_MESSAGES_IN_THREADS
        | Permissions::CREATE_PUBLIC_THREADS)
        .bits()
}

impl Default for Options {
    /// The standard world: the bot in one guild with `#general`, a thread in it and `#random`; Alice can
    /// manage the guild, Bob cannot; the message-content intent is enabled.
    fn default() -> Self {
        let everyone = member_permissions();
        Self {
            token: TOKEN.to_string(),
            bot: FakeUser::new(BOT_ID, "engram"),
            application_id: APPLICATION_ID,
            application_flags: ApplicationFlags::GATEWAY_MESSAGE_CONTENT.bits(),
            guilds: vec![FakeGuild {
                id: GUILD_ID,
                name: "Test Guild".to_string(),
                owner_id: 1_210_000_000_000_000_399,
                everyone_permissions: everyone,
                bot_permissions: everyone,
                channels: vec![
                    FakeChannel::text(GENERAL_ID, "general"),
                    FakeChannel::thread(THREAD_ID, "notes", GENERAL_ID),
                    FakeChannel::text(RANDOM_ID, "random"),
                ],
                members: vec![
                    FakeMember {
                        user: FakeUser::new(ALICE_ID, "alice"),
                        permissions: Permissions::MANAGE_GUILD.bits(),
                    },
                    FakeMember {
                        user: FakeUser::new(BOB_ID, "bob"),
                        permissions: 0,
                    },
                ],
            }],
            heartbeat_interval: Duration::from_millis(1_000),
            message_limit: Some(RateLimit {
                requests: 5,
                per: Duration::from_secs(5),
            }),
            reaction_limit: Some(RateLimit {
                requests: 1,
                per: Duration::from_millis(250),
            }),
            typing_limit: Some(RateLimit {
                requests: 5,
                per: Duration::from_secs(5),
            }),
            history_limit: Some(RateLimit {
                requests: 5,
                per: Duration::from_secs(5),
            }),
            global_limit: Some(RateLimit {
                requests: 50,
                per: Duration::from_secs(1),
            }),
            shards: 1,
        }
    }
}

/// One HTTP request as the fake saw it.
#[derive(Debug, Clone)]
pub struct RecordedRequest {
    pub at: Instant,
    pub method: String,
    /// Percent-decoded, e.g. `/api/v10/channels/1/messages/2/reactions/👍/@me`.
    pub path: String,
    pub query: Option<String>,
    /// The JSON body; a string describing it when it was not JSON.
    pub body: Option<Value>,
    /// `Authorization: Bot <the configured token>` was sent.
    pub bot_auth: bool,
    pub status: u16,
    /// False for routes the fake does not implement (answered 404).
    pub known_route: bool,
}

/// A message's content at creation or after an edit.
#[derive(Debug, Clone)]
pub struct MessageVersion {
    pub at: Instant,
    pub content: String,
    /// `allowed_mentions` as the request carried it (`None`: absent, or a gateway message).
    pub allowed_mentions: Option<Value>,
}

#[derive(Debug, Clone)]
pub struct StoredMessage {
    pub id: u64,
    pub channel_id: u64,
    pub author_id: u64,
    /// The message object as Discord would return it now.
    pub json: Value,
    /// Creation first, then one per edit.
    pub versions: Vec<MessageVersion>,
    /// Emoji the bot has reacted with, in order.
    pub reactions: Vec<String>,
}

impl StoredMessage {
    pub fn content(&self) -> &str {
        self.json["content"].as_str().unwrap_or_default()
    }

    pub fn edit_times(&self) -> Vec<Instant> {
        self.versions.iter().skip(1).map(|v| v.at).collect()
    }
}

/// An interaction the fake handed out, and what the bot answered.
#[derive(Debug, Clone)]
pub struct InteractionRecord {
    pub id: u64,
    pub token: String,
    pub guild_id: u64,
    pub channel_id: u64,
    pub user_id: u64,
    /// When the interaction was made: Discord refuses a first response after 3 s.
    pub created: Instant,
    /// Bodies of `POST /interactions/{id}/{token}/callback`, in order.
    pub callbacks: Vec<(Instant, Value)>,
    /// The message the callback created (deferred or not); its edits are in its versions.
    pub original_message: Option<u64>,
    pub followups: Vec<u64>,
}

/// A slash command invocation for [`FakeDiscord::interaction_create`].
#[derive(Debug, Clone)]
pub struct SlashCommand {
    pub channel_id: u64,
    pub user_id: u64,
    pub name: String,
    pub subcommand: Option<String>,
    pub options: Vec<(String, Value)>,
}

impl SlashCommand {
    pub fn new(channel_id: u64, user_id: u64, name: &str) -> Self {
        Self {
            channel_id,
            user_id,
            name: name.to_string(),
            subcommand: None,
            options: Vec::new(),
        }
    }

    pub fn subcommand(mut self, name: &str) -> Self {
        self.subcommand = Some(name.to_string());
        self
    }

    pub fn option(mut self, name: &str, value: impl Into<Value>) -> Self {
        self.options.push((name.to_string(), value.into()));
        self
    }
}

/// A user's message for [`FakeDiscord::message_create`].
#[derive(Debug, Clone)]
pub struct UserMessage {
    pub channel_id: u64,
    pub author_id: u64,
    pub content: String,
    pub mentions: Vec<u64>,
    /// Ids from [`FakeDiscord::add_attachment`].
    pub attachments: Vec<u64>,
    pub reply_to: Option<u64>,
}

impl UserMessage {
    pub fn new(channel_id: u64, author_id: u64, content: &str) -> Self {
        Self {
            channel_id,
            author_id,
            content: content.to_string(),
            mentions: Vec::new(),
            attachments: Vec::new(),
            reply_to: None,
        }
    }

    /// Mentions `user` (adds `<@id>` to the content, as a client would).
    pub fn mentioning(mut self, user: u64) -> Self {
        self.content = format!("<@{user}> {}", self.content);
        self.mentions.push(user);
        self
    }

    pub fn with_attachment(mut self, attachment_id: u64) -> Self {
        self.attachments.push(attachment_id);
        self
    }

    pub fn replying_to(mut self, message_id: u64) -> Self {
        self.reply_to = Some(message_id);
        self
    }
}

/// The running fake; dropping it stops nothing (tests are short-lived processes).
#[derive(Debug, Clone)]
pub struct FakeDiscord {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    base_url: String,
    state: Mutex<St>,
}

#[derive(Debug)]
struct CdnFile {
    name: String,
    bytes: Vec<u8>,
    status: u16,
}

#[derive(Debug, Default)]
struct Bucket {
    window_end: Option<Instant>,
    used: u32,
}

#[derive(Debug)]
struct Session {
    id: String,
    intents: u64,
    /// `[shard_id, num_shards]` from IDENTIFY: the session only hears its shard's guilds.
    shard: (u64, u64),
    seq: u64,
    events: Vec<(u64, String)>,
    live: Option<(u64, mpsc::UnboundedSender<String>)>,
}

#[derive(Debug)]
struct St {
    options: Options,
    last_snowflake: u64,
    role_ids: HashMap<(u64, u64), u64>,
    requests: Vec<RecordedRequest>,
    messages: Vec<StoredMessage>,
    interactions: Vec<InteractionRecord>,
    global_commands: Vec<Value>,
    guild_commands: HashMap<u64, Vec<Value>>,
    command_ids: HashMap<(Option<u64>, String), u64>,
    files: HashMap<u64, CdnFile>,
    buckets: HashMap<(&'static str, u64), Bucket>,
    global_bucket: Option<Bucket>,
    global_limited: usize,
    rate_limited: HashMap<u64, usize>,
    /// Per channel: how many more message edits to refuse with a 429, and its `retry_after`.
    refused_edits: HashMap<u64, (usize, Duration)>,
    /// Per channel: how many more message creates to answer with a 502.
    failed_creates: HashMap<u64, usize>,
    /// The 429s served because of `refused_edits`: channel and when.
    refusals: Vec<(u64, Instant)>,
    typing: HashMap<u64, usize>,
    sessions: Vec<Session>,
    connections: HashMap<u64, CancellationToken>,
    next_connection: u64,
    identifies: usize,
    identify_intents: Vec<u64>,
    identify_shards: Vec<(u64, u64)>,
    resumes: usize,
    invalid_sessions: usize,
    replayed_events: usize,
    /// Message creates answered with the message an earlier create made with its nonce.
    nonce_hits: usize,
    heartbeats: usize,
}

/// One REST answer, built under the state lock.
struct Reply {
    status: u16,
    body: ReplyBody,
    headers: Vec<(&'static str, String)>,
    known_route: bool,
}

enum ReplyBody {
    Json(Value),
    Bytes(Vec<u8>, String),
    Empty,
}

impl Reply {
    fn json(status: u16, value: Value) -> Self {
        Self {
            status,
            body: ReplyBody::Json(value),
            headers: Vec::new(),
            known_route: true,
        }
    }

    fn no_content() -> Self {
        Self {
            status: 204,
            body: ReplyBody::Empty,
            headers: Vec::new(),
            known_route: true,
        }
    }

    /// Discord's error body: `{"message": .., "code": ..}`.
    fn error(status: u16, code: u32, message: &str) -> Self {
        Self::json(status, json!({"message": message, "code": code}))
    }

    fn with_headers(mut self, headers: Vec<(&'static str, String)>) -> Self {
        self.headers.extend(headers);
        self
    }
}

impl FakeDiscord {
    /// Binds 127.0.0.1:0 and serves REST, the gateway and the CDN on it.
    pub async fn start(options: Options) -> FakeDiscord {
        Self::start_at(options, "127.0.0.1:0".parse().unwrap()).await
    }

    /// As [`Self::start`], on a given address (e.g. one engram was told about before Discord
    /// "came back").
    pub async fn start_at(options: Options, addr: SocketAddr) -> FakeDiscord {
        let listener = TcpListener::bind(addr).await.expect("bind fake Discord");
        let addr = listener.local_addr().expect("fake Discord address");
        let mut state = St {
            options,
            last_snowflake: 0,
            role_ids: HashMap::new(),
            requests: Vec::new(),
            messages: Vec::new(),
            interactions: Vec::new(),
            global_commands: Vec::new(),
            guild_commands: HashMap::new(),
            command_ids: HashMap::new(),
            files: HashMap::new(),
            buckets: HashMap::new(),
            global_bucket: None,
            global_limited: 0,
            rate_limited: HashMap::new(),
            refused_edits: HashMap::new(),
            failed_creates: HashMap::new(),
            refusals: Vec::new(),
            typing: HashMap::new(),
            sessions: Vec::new(),
            connections: HashMap::new(),
            next_connection: 0,
            identifies: 0,
            identify_intents: Vec::new(),
            identify_shards: Vec::new(),
            resumes: 0,
            invalid_sessions: 0,
            replayed_events: 0,
            nonce_hits: 0,
            heartbeats: 0,
        };
        let pairs: Vec<(u64, u64)> = state
            .options
            .guilds
            .iter()
            .flat_map(|g| g.members.iter().map(move |m| (g.id, m.user.id)))
            .chain(
                state
                    .options
                    .guilds
                    .iter()
                    .map(|g| (g.id, state.options.bot.id)),
            )
            .collect();
        for pair in pairs {
            let id = state.snowflake();
            state.role_ids.insert(pair, id);
        }
        let inner = Arc::new(Inner {
            base_url: format!("http://{addr}"),
            state: Mutex::new(state),
        });

        let (http_tx, http_rx) = mpsc::channel(64);
        let app = Router::new().fallback(rest).with_state(inner.clone());
        tokio::spawn(async move {
            axum::serve(Handoff { rx: http_rx, addr }, app)
                .await
                .expect("fake Discord HTTP")
        });
        let accept_inner = inner.clone();
        tokio::spawn(async move {
            loop {
                let Ok((stream, peer)) = listener.accept().await else {
                    continue;
                };
                let inner = accept_inner.clone();
                let http_tx = http_tx.clone();
                tokio::spawn(async move {
                    if is_gateway_request(&stream).await {
                        serve_gateway(inner, stream).await;
                    } else {
                        let _ = http_tx.send((stream, peer)).await;
                    }
                });
            }
        });
        FakeDiscord { inner }
    }

    /// What serenity's `HttpBuilder::proxy` takes: requests then go to `{rest_url}/api/v10/...`.
    pub fn rest_url(&self) -> String {
        self.inner.base_url.clone()
    }

    /// The gateway, as `GET /api/v10/gateway` and `/gateway/bot` report it.
    pub fn gateway_url(&self) -> String {
        self.inner.gateway_url()
    }

    pub fn token(&self) -> String {
        self.lock().options.token.clone()
    }

    /// Changes what READY and `/oauth2/applications/@me` report from now on.
    pub fn set_application_flags(&self, flags: u64) {
        self.lock().options.application_flags = flags;
    }

    /// Serves `bytes` on the CDN; returns the attachment id and its URL.
    pub fn add_attachment(&self, name: &str, bytes: &[u8]) -> (u64, String) {
        let mut st = self.lock();
        let id = st.snowflake();
        st.files.insert(
            id,
            CdnFile {
                name: name.to_string(),
                bytes: bytes.to_vec(),
                status: 200,
            },
        );
        let url = cdn_url(&self.inner.base_url, id, name);
        (id, url)
    }

    /// Makes an attachment's URL answer `status` from now on (403 or 404: an expired link).
    pub fn set_attachment_status(&self, id: u64, status: u16) {
        if let Some(file) = self.lock().files.get_mut(&id) {
            file.status = status;
        }
    }

    /// Sends a dispatch (op 0) to every identified session, with that session's next sequence
    /// number; kept for replay on RESUME. A session without a live connection only keeps it.
    /// `MESSAGE_CREATE` messages are stored; `INTERACTION_CREATE` tokens become valid. Returns
    /// how many sessions got the event (intents filter guild messages).
    pub fn dispatch(&self, event: &str, data: Value) -> usize {
        let mut st = self.lock();
        st.observe_dispatch(event, &data);
        let bot_id = st.options.bot.id;
        let mut reached = 0;
        let guild = data["guild_id"].as_str().and_then(|id| id.parse().ok());
        for session in &mut st.sessions {
            if !shard_owns(session.shard, guild) {
                continue;
            }
            if let Some(data) = for_session(event, &data, session.intents, bot_id) {
                session.emit(event, data);
                reached += 1;
            }
        }
        reached
    }

    /// Closes every gateway socket abruptly (no close frame); sessions stay resumable.
    pub fn drop_connections(&self) -> usize {
        let mut st = self.lock();
        for session in &mut st.sessions {
            session.live = None;
        }
        let connections: Vec<_> = st.connections.drain().collect();
        for (_, cancel) in &connections {
            cancel.cancel();
        }
        connections.len()
    }

    /// Forgets every session: a RESUME then gets INVALID_SESSION (op 9, not resumable).
    pub fn forget_sessions(&self) {
        self.lock().sessions.clear();
    }

    pub fn identifies(&self) -> usize {
        self.lock().identifies
    }

    /// The `intents` of every IDENTIFY, in order.
    pub fn identify_intents(&self) -> Vec<u64> {
        self.lock().identify_intents.clone()
    }

    /// The `[shard_id, num_shards]` of every IDENTIFY, in order.
    pub fn identify_shards(&self) -> Vec<(u64, u64)> {
        self.lock().identify_shards.clone()
    }

    /// RESUMEs received (answered with a replay or with INVALID_SESSION).
    pub fn resumes(&self) -> usize {
        self.lock().resumes
    }

    pub fn invalid_sessions(&self) -> usize {
        self.lock().invalid_sessions
    }

    /// Message creates answered with the message an earlier one made with the same nonce.
    pub fn nonce_hits(&self) -> usize {
        self.lock().nonce_hits
    }

    /// Dispatches sent again because a RESUME asked for them.
    pub fn replayed_events(&self) -> usize {
        self.lock().replayed_events
    }

    pub fn heartbeats(&self) -> usize {
        self.lock().heartbeats
    }

    pub fn live_connections(&self) -> usize {
        self.lock().connections.len()
    }

    /// A user opens a public thread on message `message_id` (Discord: the thread gets the
    /// message's id, its parent is the message's channel, and the message gets the `HAS_THREAD`
    /// flag and a `thread` field). The thread exists from now on (REST, messages in it); the
    /// returned `THREAD_CREATE` payload is for [`Self::dispatch`] — a test may also withhold
    /// it, as when the bot misses the event.
    pub fn open_thread(&self, message_id: u64, owner: u64, name: &str) -> Value {
        let mut st = self.lock();
        let parent = st.message(message_id).expect("a known message").channel_id;
        let guild_id = st.channel(parent).expect("a known channel").0.id;
        let thread = FakeChannel::thread(message_id, name, parent);
        let mut json = st.channel_json(guild_id, &thread);
        json["owner_id"] = id_string(owner);
        st.options
            .guilds
            .iter_mut()
            .find(|g| g.id == guild_id)
            .expect("the guild")
            .channels
            .push(thread);
        let starter = st.message_mut(message_id).expect("checked above");
        let flags = starter.json["flags"].as_u64().unwrap_or(0) | 1 << 5;
        starter.json["flags"] = json!(flags);
        starter.json["thread"] = json.clone();
        json["newly_created"] = json!(true);
        json
    }

    /// A `MESSAGE_CREATE` payload from a guild member, with a fresh id; pass it to
    /// [`Self::dispatch`].
    pub fn message_create(&self, message: &UserMessage) -> Value {
        let mut st = self.lock();
        let (guild_id, _) = st
            .channel(message.channel_id)
            .expect("message in a known channel");
        let guild_id = guild_id.id;
        let id = st.snowflake();
        let author = st.user_json(message.author_id);
        let member = st.partial_member_json(guild_id, message.author_id);
        let mentions: Vec<Value> = message
            .mentions
            .iter()
            .map(|user| {
                let mut json = st.user_json(*user);
                json["member"] = st.partial_member_json(guild_id, *user);
                json
            })
            .collect();
        let attachments: Vec<Value> = message
            .attachments
            .iter()
            .map(|file| st.attachment_json(&self.inner.base_url, *file))
            .collect();
        let referenced = message.reply_to.map(|reply| {
            st.message(reply)
                .map(|m| m.json.clone())
                .expect("reply to a known message")
        });
        let mut json = json!({
            "id": id.to_string(),
            "channel_id": message.channel_id.to_string(),
            "guild_id": guild_id.to_string(),
            "author": author,
            "member": member,
            "content": message.content,
            "timestamp": snowflake_time(id),
            "edited_timestamp": null,
            "tts": false,
            "mention_everyone": false,
            "mentions": mentions,
            "mention_roles": [],
            "attachments": attachments,
            "embeds": [],
            "components": [],
            "pinned": false,
            "type": 0,
            "flags": 0,
            "nonce": id.to_string(),
        });
        if let (Some(reply), Some(referenced)) = (message.reply_to, referenced) {
            json["type"] = json!(19);
            json["message_reference"] = json!({
                "type": 0,
                "message_id": reply.to_string(),
                "channel_id": message.channel_id.to_string(),
                "guild_id": guild_id.to_string(),
            });
            json["referenced_message"] = referenced;
        }
        json
    }

    /// A member's message from before engram was asked to read history: stored as Discord
    /// holds it (no event is sent), posted `age` ago; returns its id. Seed oldest first.
    pub fn seed_message(&self, message: &UserMessage, age: Duration) -> u64 {
        let mut json = self.message_create(message);
        let mut st = self.lock();
        let fresh: u64 = json["id"]
            .as_str()
            .and_then(|id| id.parse().ok())
            .expect("an id");
        let at = unix_ms().saturating_sub(age.as_millis() as u64);
        // A snowflake of that time, unique by the fresh one's low bits.
        let id = ((at.saturating_sub(DISCORD_EPOCH_MS)) << 22) | (fresh & 0x3F_FFFF);
        json["id"] = json!(id.to_string());
        json["timestamp"] = json!(snowflake_time(id));
        json["nonce"] = Value::Null;
        st.observe_dispatch("MESSAGE_CREATE", &json);
        id
    }

    /// An `INTERACTION_CREATE` payload for a slash command, with the member's permissions in the
    /// channel and a fresh id and token (valid for callbacks from now on).
    pub fn interaction_create(&self, command: &SlashCommand) -> Value {
        let mut st = self.lock();
        let (guild, channel) = st.channel(command.channel_id).expect("a known channel");
        let (guild_id, channel) = (guild.id, channel.clone());
        let permissions = st.permissions(guild_id, command.user_id, command.channel_id);
        let bot_permissions = st.permissions(guild_id, st.options.bot.id, command.channel_id);
        let id = st.snowflake();
        let token = format!("aW50ZXJhY3Rpb246{id}:fake");
        let command_id = match st.command_ids.get(&(Some(guild_id), command.name.clone())) {
            Some(id) => *id,
            None => match st.command_ids.get(&(None, command.name.clone())) {
                Some(id) => *id,
                None => st.snowflake(),
            },
        };
        let options: Vec<Value> = command
            .options
            .iter()
            .map(|(name, value)| {
                let kind = match value {
                    Value::Bool(_) => 5,
                    Value::Number(n) if n.is_i64() || n.is_u64() => 4,
                    Value::Number(_) => 10,
                    _ => 3,
                };
                json!({"name": name, "type": kind, "value": value})
            })
            .collect();
        let options = match &command.subcommand {
            Some(sub) => vec![json!({"name": sub, "type": 1, "options": options})],
            None => options,
        };
        let mut member = st.partial_member_json(guild_id, command.user_id);
        member["user"] = st.user_json(command.user_id);
        member["permissions"] = json!(permissions.to_string());
        let mut channel_json = st.channel_json(guild_id, &channel);
        channel_json["permissions"] = json!(permissions.to_string());
        st.interactions.push(InteractionRecord {
            id,
            token: token.clone(),
            guild_id,
            channel_id: command.channel_id,
            user_id: command.user_id,
            created: Instant::now(),
            callbacks: Vec::new(),
            original_message: None,
            followups: Vec::new(),
        });
        json!({
            "id": id.to_string(),
            "application_id": st.options.application_id.to_string(),
            "type": 2,
            "data": {
                "id": command_id.to_string(),
                "name": command.name,
                "type": 1,
                "options": options,
                "guild_id": guild_id.to_string(),
            },
            "guild_id": guild_id.to_string(),
            "guild": {"id": guild_id.to_string(), "locale": "en-US", "features": []},
            "channel_id": command.channel_id.to_string(),
            "channel": channel_json,
            "member": member,
            "token": token,
            "version": 1,
            "app_permissions": bot_permissions.to_string(),
            "locale": "en-US",
            "guild_locale": "en-US",
            "entitlements": [],
            "authorizing_integration_owners": {"0": guild_id.to_string()},
            "context": 0,
            "attachment_size_limit": 10_485_760,
        })
    }

    /// An `INTERACTION_CREATE` payload (type 3, a message component) for `user_id` clicking
    /// the button `custom_id` on the bot's message `message_id`, as Discord sends it: the
    /// message, the member, and a fresh id and token (valid for callbacks from now on). With
    /// `from_guild`, the click claims to come from that guild instead of the message's.
    pub fn click(
        &self,
        message_id: u64,
        user_id: u64,
        custom_id: &str,
        from_guild: Option<u64>,
    ) -> Value {
        let mut st = self.lock();
        let message = st.message(message_id).expect("a known message").clone();
        let channel_id = message.channel_id;
        let home = st.channel(channel_id).expect("a known channel").0.id;
        let guild_id = from_guild.unwrap_or(home);
        let permissions = st.permissions(home, user_id, channel_id);
        let has_button = message.json["components"]
            .as_array()
            .into_iter()
            .flatten()
            .flat_map(|row| row["components"].as_array().cloned().unwrap_or_default())
            .any(|button| button["custom_id"].as_str() == Some(custom_id));
        assert!(has_button, "no button {custom_id} on message {message_id}");
        let id = st.snowflake();
        let token = format!("aW50ZXJhY3Rpb246{id}:fake");
        let mut member = st.partial_member_json(home, user_id);
        member["user"] = st.user_json(user_id);
        member["permissions"] = json!(permissions.to_string());
        st.interactions.push(InteractionRecord {
            id,
            token: token.clone(),
            guild_id,
            channel_id,
            user_id,
            created: Instant::now(),
            callbacks: Vec::new(),
            original_message: None,
            followups: Vec::new(),
        });
        json!({
            "id": id.to_string(),
            "application_id": st.options.application_id.to_string(),
            "type": 3,
            "data": {"custom_id": custom_id, "component_type": 2},
            "guild_id": guild_id.to_string(),
            "channel_id": channel_id.to_string(),
            "message": message.json,
            "member": member,
            "token": token,
            "version": 1,
            "app_permissions": "0",
            "locale": "en-US",
            "guild_locale": "en-US",
            "entitlements": [],
            "authorizing_integration_owners": {"0": guild_id.to_string()},
            "context": 0,
            "attachment_size_limit": 10_485_760,
        })
    }

    /// Every request so far, in arrival order.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.lock().requests.clone()
    }

    /// Requests to routes the fake does not implement.
    pub fn unexpected_requests(&self) -> Vec<RecordedRequest> {
        self.lock()
            .requests
            .iter()
            .filter(|r| !r.known_route)
            .cloned()
            .collect()
    }

    /// Messages in a channel (the bot's and dispatched users'), oldest first.
    pub fn messages(&self, channel_id: u64) -> Vec<StoredMessage> {
        self.lock()
            .messages
            .iter()
            .filter(|m| m.channel_id == channel_id)
            .cloned()
            .collect()
    }

    pub fn message(&self, id: u64) -> Option<StoredMessage> {
        self.lock().message(id).cloned()
    }

    /// The bot's reactions on a message.
    pub fn reactions(&self, message_id: u64) -> Vec<String> {
        self.message(message_id)
            .map(|m| m.reactions)
            .unwrap_or_default()
    }

    pub fn interaction(&self, id: u64) -> Option<InteractionRecord> {
        self.lock()
            .interactions
            .iter()
            .find(|i| i.id == id)
            .cloned()
    }

    /// Commands as last bulk-overwritten: global (`None`) or for a guild.
    pub fn commands(&self, guild_id: Option<u64>) -> Vec<Value> {
        let st = self.lock();
        match guild_id {
            None => st.global_commands.clone(),
            Some(guild) => st.guild_commands.get(&guild).cloned().unwrap_or_default(),
        }
    }

    /// Global 429s served (more than `global_limit` requests in a window).
    pub fn globally_limited(&self) -> usize {
        self.lock().global_limited
    }

    /// Every 429 served.
    pub fn rate_limited_requests(&self) -> Vec<RecordedRequest> {
        self.requests()
            .into_iter()
            .filter(|request| request.status == 429)
            .collect()
    }

    /// The 429s that no later request with the same method, path and body got past: writes
    /// that were dropped rather than sent again.
    pub fn unretried_429s(&self) -> Vec<RecordedRequest> {
        let requests = self.requests();
        requests
            .iter()
            .enumerate()
            .filter(|(_, request)| request.status == 429)
            .filter(|(i, limited)| {
                !requests[i + 1..].iter().any(|later| {
                    later.status != 429
                        && later.method == limited.method
                        && later.path == limited.path
                        && later.body == limited.body
                })
            })
            .map(|(_, request)| request.clone())
            .collect()
    }

    /// 429s served for a channel's buckets (messages, reactions, typing, interaction edits).
    pub fn rate_limited(&self, channel_id: u64) -> usize {
        self.lock()
            .rate_limited
            .get(&channel_id)
            .copied()
            .unwrap_or(0)
    }

    /// Answers the next `count` message edits in `channel_id` with a 429 as Discord sends it
    /// (`Retry-After`, `X-RateLimit-*` with nothing remaining until `retry_after`, and the JSON
    /// body's `retry_after`), whatever the bucket says — as when another bot or a moderator
    /// used up the channel's budget.
    pub fn refuse_edits(&self, channel_id: u64, count: usize, retry_after: Duration) {
        self.lock()
            .refused_edits
            .insert(channel_id, (count, retry_after));
    }

    /// Answers the next `count` message creates in `channel_id` with a 502 (Discord's edge
    /// failing), as happens in an outage.
    pub fn fail_creates(&self, channel_id: u64, count: usize) {
        self.lock().failed_creates.insert(channel_id, count);
    }

    /// When the 429s of [`Self::refuse_edits`] were served, per channel.
    pub fn refusals(&self, channel_id: u64) -> Vec<Instant> {
        self.lock()
            .refusals
            .iter()
            .filter(|(channel, _)| *channel == channel_id)
            .map(|(_, at)| *at)
            .collect()
    }

    /// `POST /channels/{id}/typing` calls.
    pub fn typing(&self, channel_id: u64) -> usize {
        self.lock().typing.get(&channel_id).copied().unwrap_or(0)
    }

    fn lock(&self) -> MutexGuard<'_, St> {
        self.inner.lock()
    }
}

/// Polls `check` every 10 ms until it yields a value; panics naming `what` after `timeout`.
pub async fn wait_for<T>(what: &str, timeout: Duration, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = check() {
            return value;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

impl Inner {
    fn lock(&self) -> MutexGuard<'_, St> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn gateway_url(&self) -> String {
        format!("{}/gateway", self.base_url.replacen("http://", "ws://", 1))
    }
}

fn cdn_url(base: &str, id: u64, name: &str) -> String {
    // Discord's CDN links are signed and expire: `ex` (expiry), `is` (issued), `hm` (hash).
    let issued = unix_ms() / 1000;
    format!(
        "{base}/attachments/{id}/{name}?ex={:x}&is={issued:x}&hm={:016x}",
        issued + 86_400,
        id.wrapping_mul(0x9e37_79b9_7f4a_7c15)
    )
}

fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

fn timestamp(unix_ms: u64) -> String {
    Timestamp::from_millis(unix_ms as i64)
        .expect("valid time")
        .to_rfc3339()
        .expect("formattable time")
}

/// When a snowflake was made, as an ISO 8601 timestamp.
fn snowflake_time(id: u64) -> String {
    timestamp((id >> 22) + DISCORD_EPOCH_MS)
}

fn id_string(id: u64) -> Value {
    json!(id.to_string())
}

impl St {
    fn snowflake(&mut self) -> u64 {
        let candidate = (unix_ms().saturating_sub(DISCORD_EPOCH_MS)) << 22;
        self.last_snowflake = candidate.max(self.last_snowflake + 1);
        self.last_snowflake
    }

    fn guild(&self, id: u64) -> Option<&FakeGuild> {
        self.options.guilds.iter().find(|g| g.id == id)
    }

    fn channel(&self, id: u64) -> Option<(&FakeGuild, &FakeChannel)> {
        self.options
            .guilds
            .iter()
            .find_map(|g| g.channels.iter().find(|c| c.id == id).map(|c| (g, c)))
    }

    fn message(&self, id: u64) -> Option<&StoredMessage> {
        self.messages.iter().find(|m| m.id == id)
    }

    fn message_mut(&mut self, id: u64) -> Option<&mut StoredMessage> {
        self.messages.iter_mut().find(|m| m.id == id)
    }

    /// A member's role permissions (their own role), or the bot's.
    fn member_role(&self, guild: &FakeGuild, user: u64) -> Option<(u64, u64)> {
        let role = *self.role_ids.get(&(guild.id, user))?;
        if user == self.options.bot.id {
            return Some((role, guild.bot_permissions));
        }
        let member = guild.members.iter().find(|m| m.user.id == user)?;
        Some((role, member.permissions))
    }

    /// Discord's computation: owner and administrators get everything; otherwise `@everyone`
    /// plus roles, then the channel's (or the thread parent's) overwrites: `@everyone`, roles,
    /// member.
    fn permissions(&self, guild_id: u64, user: u64, channel_id: u64) -> u64 {
        let all = Permissions::all().bits();
        let Some(guild) = self.guild(guild_id) else {
            return 0;
        };
        if user == guild.owner_id {
            return all;
        }
        let role = self.member_role(guild, user);
        let mut permissions = guild.everyone_permissions | role.map_or(0, |(_, p)| p);
        if permissions & Permissions::ADMINISTRATOR.bits() != 0 {
            return all;
        }
        let channel = match self.channel(channel_id) {
            Some((_, channel)) => match channel.kind {
                ChannelKind::PublicThread { parent } => {
                    self.channel(parent).map(|(_, c)| c).unwrap_or(channel)
                }
                ChannelKind::Text => channel,
            },
            None => return permissions,
        };
        let apply = |permissions: u64, o: &Overwrite| (permissions & !o.deny) | o.allow;
        for o in channel
            .overwrites
            .iter()
            .filter(|o| !o.member && o.id == guild.id)
        {
            permissions = apply(permissions, o);
        }
        let (mut allow, mut deny) = (0, 0);
        for o in &channel.overwrites {
            if !o.member && Some(o.id) == role.map(|(id, _)| id) {
                allow |= o.allow;
                deny |= o.deny;
            }
        }
        permissions = (permissions & !deny) | allow;
        for o in channel
            .overwrites
            .iter()
            .filter(|o| o.member && o.id == user)
        {
            permissions = apply(permissions, o);
        }
        permissions
    }

    fn user_json(&self, user: u64) -> Value {
        let bot = user == self.options.bot.id;
        let name = if bot {
            self.options.bot.name.clone()
        } else {
            self.options
                .guilds
                .iter()
                .flat_map(|g| &g.members)
                .find(|m| m.user.id == user)
                .map(|m| m.user.name.clone())
                .unwrap_or_else(|| format!("user{user}"))
        };
        json!({
            "id": user.to_string(),
            "username": name,
            "discriminator": "0",
            "global_name": if bot { Value::Null } else { json!(name) },
            "avatar": null,
            "bot": bot,
            "public_flags": 0,
            "flags": 0,
            "banner": null,
            "accent_color": null,
            "avatar_decoration_data": null,
        })
    }

    /// A member object without `user` (as in `MESSAGE_CREATE.member`).
    fn partial_member_json(&self, guild_id: u64, user: u64) -> Value {
        let roles: Vec<Value> = self
            .guild(guild_id)
            .and_then(|g| self.member_role(g, user))
            .map(|(role, _)| vec![id_string(role)])
            .unwrap_or_default();
        json!({
            "roles": roles,
            "nick": null,
            "avatar": null,
            "banner": null,
            "joined_at": JOINED_AT,
            "premium_since": null,
            "deaf": false,
            "mute": false,
            "flags": 0,
            "pending": false,
            "communication_disabled_until": null,
        })
    }

    fn member_json(&self, guild_id: u64, user: u64) -> Value {
        let mut member = self.partial_member_json(guild_id, user);
        member["user"] = self.user_json(user);
        member
    }

    fn members(&self, guild: &FakeGuild) -> Vec<u64> {
        guild
            .members
            .iter()
            .map(|m| m.user.id)
            .chain([self.options.bot.id])
            .collect()
    }

    fn roles_json(&self, guild: &FakeGuild) -> Vec<Value> {
        let role = |id: u64, name: &str, permissions: u64, position: u32| {
            json!({
                "id": id.to_string(),
                "name": name,
                "color": 0,
                "colors": {"primary_color": 0, "secondary_color": null, "tertiary_color": null},
                "hoist": false,
                "icon": null,
                "unicode_emoji": null,
                "position": position,
                "permissions": permissions.to_string(),
                "managed": false,
                "mentionable": false,
                "flags": 0,
            })
        };
        let mut roles = vec![role(guild.id, "@everyone", guild.everyone_permissions, 0)];
        for (position, user) in self.members(guild).into_iter().enumerate() {
            if let Some((id, permissions)) = self.member_role(guild, user) {
                let name = format!("role-{user}");
                roles.push(role(id, &name, permissions, position as u32 + 1));
            }
        }
        roles
    }

    fn channel_json(&self, guild_id: u64, channel: &FakeChannel) -> Value {
        let overwrites: Vec<Value> = channel
            .overwrites
            .iter()
            .map(|o| {
                json!({
                    "id": o.id.to_string(),
                    "type": u8::from(o.member),
                    "allow": o.allow.to_string(),
                    "deny": o.deny.to_string(),
                })
            })
            .collect();
        let mut json = json!({
            "id": channel.id.to_string(),
            "guild_id": guild_id.to_string(),
            "name": channel.name,
            "last_message_id": null,
            "rate_limit_per_user": 0,
            "flags": 0,
            "nsfw": false,
        });
        match channel.kind {
            ChannelKind::Text => {
                json["type"] = json!(0);
                json["position"] = json!(0);
                json["permission_overwrites"] = json!(overwrites);
                json["topic"] = Value::Null;
                json["parent_id"] = Value::Null;
            }
            ChannelKind::PublicThread { parent } => {
                json["type"] = json!(11);
                json["parent_id"] = id_string(parent);
                json["owner_id"] = id_string(self.options.bot.id);
                json["message_count"] = json!(0);
                json["member_count"] = json!(1);
                json["total_message_sent"] = json!(0);
                json["thread_metadata"] = json!({
                    "archived": false,
                    "auto_archive_duration": 1440,
                    "archive_timestamp": JOINED_AT,
                    "locked": false,
                    "create_timestamp": JOINED_AT,
                });
            }
        }
        json
    }

    /// `GET /users/@me/guilds`: the bot's guilds as partial guilds, ordered by id, paged by
    /// `after` and `limit` (default 200) as Discord does.
    fn my_guilds_json(&self, query: Option<&str>) -> Value {
        let param = |name: &str| {
            query?
                .split('&')
                .find_map(|pair| pair.strip_prefix(name)?.strip_prefix('='))
                .and_then(|value| value.parse::<u64>().ok())
        };
        let after = param("after").unwrap_or(0);
        let limit = param("limit").unwrap_or(200).clamp(1, 200) as usize;
        let mut guilds: Vec<&FakeGuild> = self
            .options
            .guilds
            .iter()
            .filter(|g| g.id > after)
            .collect();
        guilds.sort_by_key(|g| g.id);
        let bot = self.options.bot.id;
        let listed: Vec<Value> = guilds
            .into_iter()
            .take(limit)
            .map(|g| {
                json!({
                    "id": g.id.to_string(),
                    "name": g.name,
                    "icon": null,
                    "banner": null,
                    "owner": g.owner_id == bot,
                    "permissions": self.permissions(g.id, bot, 0).to_string(),
                    "features": [],
                })
            })
            .collect();
        json!(listed)
    }

    /// `GET /guilds/{id}`: the guild without the GUILD_CREATE extras.
    fn guild_json(&self, guild: &FakeGuild) -> Value {
        json!({
            "id": guild.id.to_string(),
            "name": guild.name,
            "icon": null,
            "icon_hash": null,
            "splash": null,
            "discovery_splash": null,
            "owner_id": guild.owner_id.to_string(),
            "afk_channel_id": null,
            "afk_timeout": 300,
            "widget_enabled": false,
            "widget_channel_id": null,
            "verification_level": 0,
            "default_message_notifications": 0,
            "explicit_content_filter": 0,
            "roles": self.roles_json(guild),
            "emojis": [],
            "features": [],
            "mfa_level": 0,
            "application_id": null,
            "system_channel_id": null,
            "system_channel_flags": 0,
            "rules_channel_id": null,
            "max_presences": null,
            "max_members": 500_000,
            "vanity_url_code": null,
            "description": null,
            "banner": null,
            "premium_tier": 0,
            "premium_subscription_count": 0,
            "preferred_locale": "en-US",
            "public_updates_channel_id": null,
            "max_video_channel_users": 25,
            "max_stage_video_channel_users": 50,
            "nsfw_level": 0,
            "stickers": [],
            "premium_progress_bar_enabled": false,
            "safety_alerts_channel_id": null,
            "incidents_data": null,
        })
    }

    fn guild_create_json(&self, guild: &FakeGuild) -> Value {
        let members: Vec<Value> = self
            .members(guild)
            .into_iter()
            .map(|user| self.member_json(guild.id, user))
            .collect();
        let (threads, channels): (Vec<&FakeChannel>, Vec<&FakeChannel>) = guild
            .channels
            .iter()
            .partition(|c| matches!(c.kind, ChannelKind::PublicThread { .. }));
        let mut json = self.guild_json(guild);
        let extra = json!({
            "joined_at": JOINED_AT,
            "large": false,
            "unavailable": false,
            "member_count": members.len(),
            "voice_states": [],
            "members": members,
            "channels": channels.iter().map(|c| self.channel_json(guild.id, c)).collect::<Vec<_>>(),
            "threads": threads.iter().map(|c| self.channel_json(guild.id, c)).collect::<Vec<_>>(),
            "presences": [],
            "stage_instances": [],
            "guild_scheduled_events": [],
            "soundboard_sounds": [],
            "embedded_activities": [],
            "lazy": true,
        });
        for (key, value) in extra.as_object().expect("object") {
            json[key] = value.clone();
        }
        json
    }

    fn attachment_json(&self, base: &str, id: u64) -> Value {
        let file = self
            .files
            .get(&id)
            .expect("an attachment added with add_attachment");
        let url = cdn_url(base, id, &file.name);
        json!({
            "id": id.to_string(),
            "filename": file.name,
            "size": file.bytes.len(),
            "url": url,
            "proxy_url": url,
            "content_type": content_type(&file.name),
        })
    }

    fn application_json(&self) -> Value {
        json!({
            "id": self.options.application_id.to_string(),
            "name": self.options.bot.name,
            "icon": null,
            "description": "",
            "rpc_origins": [],
            "bot_public": false,
            "bot_require_code_grant": false,
            "bot": self.user_json(self.options.bot.id),
            "owner": self.user_json(1_210_000_000_000_000_399),
            "verify_key": "0".repeat(64),
            "team": null,
            "flags": self.options.application_flags,
            "tags": [],
            "redirect_uris": [],
            "interactions_endpoint_url": null,
            "role_connections_verification_url": null,
            "approximate_guild_count": self.options.guilds.len(),
        })
    }

    /// Side effects of a test's dispatch: users' messages are stored, interactions registered.
    fn observe_dispatch(&mut self, event: &str, data: &Value) {
        let id = |v: &Value| v.as_str().and_then(|s| s.parse::<u64>().ok());
        if event == "MESSAGE_CREATE" {
            if let (Some(mid), Some(channel), Some(author)) = (
                id(&data["id"]),
                id(&data["channel_id"]),
                id(&data["author"]["id"]),
            ) {
                self.messages.push(StoredMessage {
                    id: mid,
                    channel_id: channel,
                    author_id: author,
                    json: data.clone(),
                    versions: vec![MessageVersion {
                        at: Instant::now(),
                        content: data["content"].as_str().unwrap_or_default().to_string(),
                        allowed_mentions: None,
                    }],
                    reactions: Vec::new(),
                });
            }
        }
    }

    /// A message the bot creates (REST or interaction response).
    fn bot_message(&mut self, channel_id: u64, body: &Value, kind: u8, webhook: bool) -> u64 {
        let id = self.snowflake();
        let bot = self.options.bot.id;
        let mut json = json!({
            "id": id.to_string(),
            "channel_id": channel_id.to_string(),
            "author": self.user_json(bot),
            "content": "",
            "timestamp": snowflake_time(id),
            "edited_timestamp": null,
            "tts": false,
            "mention_everyone": false,
            "mentions": [],
            "mention_roles": [],
            "attachments": [],
            "embeds": [],
            "components": [],
            "pinned": false,
            "type": kind,
            "flags": 0,
        });
        if webhook {
            json["webhook_id"] = id_string(self.options.application_id);
            json["application_id"] = id_string(self.options.application_id);
        }
        apply_fields(&mut json, body);
        if let Some(nonce) = body.get("nonce") {
            json["nonce"] = nonce.clone();
        }
        let content = json["content"].as_str().unwrap_or_default().to_string();
        self.messages.push(StoredMessage {
            id,
            channel_id,
            author_id: bot,
            json,
            versions: vec![MessageVersion {
                at: Instant::now(),
                content,
                allowed_mentions: body.get("allowed_mentions").cloned(),
            }],
            reactions: Vec::new(),
        });
        id
    }

    fn edit_message(&mut self, id: u64, body: &Value) -> Value {
        let message = self.message_mut(id).expect("message checked by the caller");
        apply_fields(&mut message.json, body);
        message.json["edited_timestamp"] = json!(timestamp(unix_ms()));
        let content = message.content().to_string();
        message.versions.push(MessageVersion {
            at: Instant::now(),
            content,
            allowed_mentions: body.get("allowed_mentions").cloned(),
        });
        message.json.clone()
    }

    /// The 429 for an edit in `channel` while [`FakeDiscord::refuse_edits`] asks for one.
    fn refuse_edit(&mut self, channel: u64) -> Result<(), Reply> {
        let Some((left, retry_after)) = self.refused_edits.get_mut(&channel) else {
            return Ok(());
        };
        if *left == 0 {
            return Ok(());
        }
        *left -= 1;
        let retry_after = retry_after.as_secs_f64();
        self.refusals.push((channel, Instant::now()));
        let reset_at = unix_ms() as f64 / 1000.0 + retry_after;
        let headers = vec![
            ("retry-after", (retry_after.ceil() as u64).to_string()),
            ("x-ratelimit-limit", "5".to_string()),
            ("x-ratelimit-remaining", "0".to_string()),
            ("x-ratelimit-reset", format!("{reset_at:.3}")),
            ("x-ratelimit-reset-after", format!("{retry_after:.3}")),
            ("x-ratelimit-bucket", bucket_hash("messages")),
            ("x-ratelimit-scope", "shared".to_string()),
        ];
        let body = json!({
            "message": "You are being rate limited.",
            "retry_after": retry_after,
            "global": false,
            "code": 0,
        });
        Err(Reply::json(429, body).with_headers(headers))
    }

    /// Counts a request with the bot's token against the global limit; `Err` is the global 429
    /// to answer.
    fn take_global(&mut self, bot_auth: bool) -> Result<(), Reply> {
        let Some(limit) = self.options.global_limit.filter(|_| bot_auth) else {
            return Ok(());
        };
        let now = Instant::now();
        let state = self.global_bucket.get_or_insert_with(Bucket::default);
        let window_end = match state.window_end {
            Some(end) if end > now => end,
            _ => {
                state.used = 0;
                *state.window_end.insert(now + limit.per)
            }
        };
        if state.used < limit.requests {
            state.used += 1;
            return Ok(());
        }
        self.global_limited += 1;
        let retry_after = ((window_end - now).as_secs_f64() * 1000.0).ceil() / 1000.0;
        let headers = vec![
            ("retry-after", (retry_after.ceil() as u64).to_string()),
            ("x-ratelimit-global", "true".to_string()),
            ("x-ratelimit-scope", "global".to_string()),
        ];
        let body = json!({
            "message": "You are being rate limited.",
            "retry_after": retry_after,
            "global": true,
        });
        Err(Reply::json(429, body).with_headers(headers))
    }

    /// Counts a request against a bucket; `Err` is the 429 to answer.
    fn take(
        &mut self,
        bucket: &'static str,
        key: u64,
        channel: u64,
        limit: Option<RateLimit>,
    ) -> Result<Vec<(&'static str, String)>, Reply> {
        let Some(limit) = limit else {
            return Ok(Vec::new());
        };
        let now = Instant::now();
        let state = self.buckets.entry((bucket, key)).or_default();
        let window_end = match state.window_end {
            Some(end) if end > now => end,
            _ => {
                state.used = 0;
                *state.window_end.insert(now + limit.per)
            }
        };
        let reset_after = window_end - now;
        let limited = state.used >= limit.requests;
        if !limited {
            state.used += 1;
        }
        let remaining = limit.requests.saturating_sub(state.used);
        let reset_at = (unix_ms() as f64 + reset_after.as_secs_f64() * 1000.0) / 1000.0;
        let mut headers = vec![
            ("x-ratelimit-limit", limit.requests.to_string()),
            ("x-ratelimit-remaining", remaining.to_string()),
            ("x-ratelimit-reset", format!("{reset_at:.3}")),
            (
                "x-ratelimit-reset-after",
                format!("{:.3}", reset_after.as_secs_f64()),
            ),
            ("x-ratelimit-bucket", bucket_hash(bucket)),
        ];
        if !limited {
            return Ok(headers);
        }
        *self.rate_limited.entry(channel).or_default() += 1;
        let retry_after = (reset_after.as_secs_f64() * 1000.0).ceil() / 1000.0;
        headers.push(("retry-after", (retry_after.ceil() as u64).to_string()));
        headers.push(("x-ratelimit-scope", "user".to_string()));
        let body = json!({
            "message": "You are being rate limited.",
            "retry_after": retry_after,
            "global": false,
        });
        Err(Reply::json(429, body).with_headers(headers))
    }
}

/// Discord's bucket ids are opaque hashes, one per route shape.
fn bucket_hash(bucket: &str) -> String {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in bucket.bytes() {
        hash = (hash ^ u64::from(byte)).wrapping_mul(0x100_0000_01b3);
    }
    format!("{hash:016x}")
}

fn content_type(name: &str) -> Value {
    let ext = name
        .rsplit('.')
        .next()
        .unwrap_or_default()
        .to_ascii_lowercase();
    let mime = match ext.as_str() {
        "txt" => "text/plain; charset=utf-8",
        "md" => "text/markdown; charset=utf-8",
        "pdf" => "application/pdf",
        "json" => "application/json; charset=utf-8",
        "zip" => "application/zip",
        "png" => "image/png",
        "jpg" | "jpeg" => "image/jpeg",
        "html" => "text/html; charset=utf-8",
        _ => return Value::Null,
    };
    json!(mime)
}

/// Copies the fields a create or edit body sets onto a message object.
fn apply_fields(message: &mut Value, body: &Value) {
    for key in ["content", "embeds", "components", "flags", "tts"] {
        match body.get(key) {
            Some(Value::Null) if key == "content" => message[key] = json!(""),
            Some(Value::Null) => {}
            Some(value) => message[key] = value.clone(),
            None => {}
        }
    }
}

/// What one session gets of a dispatch: guild messages need GUILD_MESSAGES; without
/// MESSAGE_CONTENT, content, attachments and embeds are emptied unless the bot is mentioned
/// or wrote it (Discord's rule).
fn for_session(event: &str, data: &Value, intents: u64, bot_id: u64) -> Option<Value> {
    let is_message = matches!(event, "MESSAGE_CREATE" | "MESSAGE_UPDATE");
    if !is_message {
        return Some(data.clone());
    }
    if intents & GatewayIntents::GUILD_MESSAGES.bits() == 0 && data.get("guild_id").is_some() {
        return None;
    }
    let bot = bot_id.to_string();
    let by_bot = data["author"]["id"].as_str() == Some(bot.as_str());
    let mentions_bot = data["mentions"]
        .as_array()
        .is_some_and(|m| m.iter().any(|u| u["id"].as_str() == Some(bot.as_str())));
    if intents & GatewayIntents::MESSAGE_CONTENT.bits() != 0 || by_bot || mentions_bot {
        return Some(data.clone());
    }
    let mut data = data.clone();
    data["content"] = json!("");
    for key in ["attachments", "embeds", "components"] {
        data[key] = json!([]);
    }
    Some(data)
}

impl Session {
    fn emit(&mut self, event: &str, data: Value) {
        self.seq += 1;
        let frame = json!({"op": 0, "s": self.seq, "t": event, "d": data}).to_string();
        if let Some((_, live)) = &self.live {
            let _ = live.send(frame.clone());
        }
        self.events.push((self.seq, frame));
    }
}

/// Hands the HTTP (non-gateway) connections to axum.
struct Handoff {
    rx: mpsc::Receiver<(TcpStream, SocketAddr)>,
    addr: SocketAddr,
}

impl axum::serve::Listener for Handoff {
    type Io = TcpStream;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (TcpStream, SocketAddr) {
        match self.rx.recv().await {
            Some(connection) => connection,
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        Ok(self.addr)
    }
}

/// Whether a new connection opens with `GET /gateway` (the WebSocket), by peeking.
async fn is_gateway_request(stream: &TcpStream) -> bool {
    const PREFIX: &[u8] = b"GET /gateway";
    let mut buf = [0u8; 13];
    for _ in 0..500 {
        match stream.peek(&mut buf).await {
            Ok(0) | Err(_) => return false,
            Ok(n) if n >= buf.len() => {
                return buf.starts_with(PREFIX) && matches!(buf[12], b' ' | b'?' | b'/');
            }
            Ok(n) => {
                if !PREFIX.starts_with(&buf[..n]) {
                    return false;
                }
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        }
    }
    false
}

async fn serve_gateway(inner: Arc<Inner>, stream: TcpStream) {
    let Ok(socket) = tokio_tungstenite::accept_async(stream).await else {
        return;
    };
    let (mut sink, mut source) = socket.split();
    let (tx, mut rx) = mpsc::unbounded_channel::<String>();
    let cancel = CancellationToken::new();
    let (connection, heartbeat_interval) = {
        let mut st = inner.lock();
        st.next_connection += 1;
        let id = st.next_connection;
        st.connections.insert(id, cancel.clone());
        (id, st.options.heartbeat_interval)
    };
    let hello = json!({"op": 10, "s": null, "t": null,
                       "d": {"heartbeat_interval": heartbeat_interval.as_millis() as u64}});
    let _ = tx.send(hello.to_string());
    loop {
        tokio::select! {
            biased;
            _ = cancel.cancelled() => break,
            Some(frame) = rx.recv() => {
                if sink.send(WsMessage::Text(frame)).await.is_err() {
                    break;
                }
            }
            incoming = source.next() => match incoming {
                Some(Ok(WsMessage::Text(text))) => {
                    if let Some((code, reason)) = gateway_op(&inner, connection, &tx, &text) {
                        let frame = CloseFrame { code: CloseCode::from(code), reason: reason.into() };
                        let _ = sink.send(WsMessage::Close(Some(frame))).await;
                        break;
                    }
                }
                Some(Ok(WsMessage::Close(_))) => {
                    // Completes the closing handshake (serenity's shutdown waits for it).
                    let _ = sink.close().await;
                    break;
                }
                Some(Err(_)) | None => break,
                Some(Ok(_)) => {}
            },
        }
    }
    let mut st = inner.lock();
    st.connections.remove(&connection);
    for session in &mut st.sessions {
        if session
            .live
            .as_ref()
            .is_some_and(|(id, _)| *id == connection)
        {
            session.live = None;
        }
    }
}

/// Handles one client payload; `Some` closes the socket with that code.
fn gateway_op(
    inner: &Inner,
    connection: u64,
    tx: &mpsc::UnboundedSender<String>,
    text: &str,
) -> Option<(u16, &'static str)> {
    let Ok(payload) = serde_json::from_str::<Value>(text) else {
        return Some((4002, "Error while decoding payload."));
    };
    let d = &payload["d"];
    let mut st = inner.lock();
    let token_ok = |st: &St| {
        let token = d["token"].as_str().unwrap_or_default();
        token.strip_prefix("Bot ").unwrap_or(token) == st.options.token
    };
    match payload["op"].as_u64() {
        Some(1) => {
            st.heartbeats += 1;
            let _ = tx.send(json!({"op": 11, "s": null, "t": null, "d": null}).to_string());
        }
        Some(2) => {
            if !token_ok(&st) {
                return Some((4004, "Authentication failed."));
            }
            let intents = d["intents"].as_u64().unwrap_or(0);
            st.identifies += 1;
            st.identify_intents.push(intents);
            let shard = match d["shard"].as_array().map(Vec::as_slice) {
                Some([id, total]) => (id.as_u64().unwrap_or(0), total.as_u64().unwrap_or(1)),
                _ => (0, 1),
            };
            st.identify_shards.push(shard);
            if !privileged_intents_allowed(intents, st.options.application_flags) {
                return Some((4014, "Disallowed intent(s)."));
            }
            let session_id = format!("{:032x}", st.snowflake());
            let mut user = st.user_json(st.options.bot.id);
            user["verified"] = json!(true);
            user["mfa_enabled"] = json!(false);
            let ready = json!({
                "v": 10,
                "user": user,
                "user_settings": {},
                "guilds": st.options.guilds.iter()
                    .map(|g| json!({"id": g.id.to_string(), "unavailable": true}))
                    .collect::<Vec<_>>(),
                "session_id": session_id,
                "session_type": "normal",
                "resume_gateway_url": inner.gateway_url(),
                "shard": d.get("shard").cloned().unwrap_or(json!([0, 1])),
                "application": {
                    "id": st.options.application_id.to_string(),
                    "flags": st.options.application_flags,
                },
                "private_channels": [],
                "relationships": [],
                "presences": [],
                "guild_join_requests": [],
                "geo_ordered_rtc_regions": ["fake"],
                "auth": {},
                "_trace": ["[\"fake-discord\"]"],
            });
            let guilds: Vec<Value> = st
                .options
                .guilds
                .iter()
                .filter(|g| shard_owns(shard, Some(g.id)))
                .map(|g| st.guild_create_json(g))
                .collect();
            let mut session = Session {
                id: session_id,
                intents,
                shard,
                seq: 0,
                events: Vec::new(),
                live: Some((connection, tx.clone())),
            };
            session.emit("READY", ready);
            if intents & GatewayIntents::GUILDS.bits() != 0 {
                for guild in guilds {
                    session.emit("GUILD_CREATE", guild);
                }
            }
            st.sessions.push(session);
        }
        Some(6) => {
            st.resumes += 1;
            let session_id = d["session_id"].as_str().unwrap_or_default().to_string();
            let after = d["seq"].as_u64().unwrap_or(0);
            let known = token_ok(&st) && st.sessions.iter().any(|s| s.id == session_id);
            if !known {
                st.invalid_sessions += 1;
                let _ = tx.send(json!({"op": 9, "s": null, "t": null, "d": false}).to_string());
                return None;
            }
            let session = st
                .sessions
                .iter_mut()
                .find(|s| s.id == session_id)
                .expect("checked above");
            let mut replayed = 0;
            for (seq, frame) in &session.events {
                if *seq > after {
                    let _ = tx.send(frame.clone());
                    replayed += 1;
                }
            }
            session.live = Some((connection, tx.clone()));
            session.emit("RESUMED", json!({"_trace": ["[\"fake-discord\"]"]}));
            st.replayed_events += replayed;
        }
        _ => {}
    }
    None
}

/// Privileged intents need the application flag (or its `_LIMITED` twin); else close 4014.
fn privileged_intents_allowed(intents: u64, flags: u64) -> bool {
    let needs = [
        (
            GatewayIntents::MESSAGE_CONTENT,
            ApplicationFlags::GATEWAY_MESSAGE_CONTENT
                | ApplicationFlags::GATEWAY_MESSAGE_CONTENT_LIMITED,
        ),
        (
            GatewayIntents::GUILD_MEMBERS,
            ApplicationFlags::GATEWAY_GUILD_MEMBERS
                | ApplicationFlags::GATEWAY_GUILD_MEMBERS_LIMITED,
        ),
        (
            GatewayIntents::GUILD_PRESENCES,
            ApplicationFlags::GATEWAY_PRESENCE | ApplicationFlags::GATEWAY_PRESENCE_LIMITED,
        ),
    ];
    needs
        .iter()
        .all(|(intent, flag)| intents & intent.bits() == 0 || flags & flag.bits() != 0)
}

fn percent_decode(segment: &str) -> String {
    let hex = |b: u8| (b as char).to_digit(16);
    let bytes = segment.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            if let (Some(high), Some(low)) = (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                out.push((high * 16 + low) as u8);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

async fn rest(
    State(inner): State<Arc<Inner>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let segments: Vec<String> = uri
        .path()
        .split('/')
        .filter(|s| !s.is_empty())
        .map(percent_decode)
        .collect();
    let body = if body.is_empty() {
        None
    } else {
        Some(
            serde_json::from_slice::<Value>(&body)
                .unwrap_or_else(|_| json!(format!("<{} bytes, not JSON>", body.len()))),
        )
    };
    let mut st = inner.lock();
    let expected = format!("Bot {}", st.options.token);
    let bot_auth = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v == expected);
    let segments: Vec<&str> = segments.iter().map(String::as_str).collect();
    let reply = match st.take_global(bot_auth) {
        Ok(()) => route(
            &inner,
            &mut st,
            &method,
            &segments,
            uri.query(),
            body.as_ref(),
            bot_auth,
        ),
        Err(limited) => limited,
    };
    st.requests.push(RecordedRequest {
        at: Instant::now(),
        method: method.to_string(),
        path: format!("/{}", segments.join("/")),
        query: uri.query().map(str::to_string),
        body,
        bot_auth,
        status: reply.status,
        known_route: reply.known_route,
    });
    drop(st);
    let status = StatusCode::from_u16(reply.status).expect("valid status");
    let mut response = match reply.body {
        ReplyBody::Json(value) => (status, axum::Json(value)).into_response(),
        ReplyBody::Bytes(bytes, mime) => {
            (status, [(header::CONTENT_TYPE, mime)], Body::from(bytes)).into_response()
        }
        ReplyBody::Empty => status.into_response(),
    };
    for (name, value) in reply.headers {
        if let Ok(value) = value.parse() {
            response.headers_mut().insert(name, value);
        }
    }
    response
}

fn parse_id(segment: &str) -> Result<u64, Reply> {
    segment.parse::<u64>().map_err(|_| {
        Reply::json(
            400,
            json!({"message": "Invalid Form Body", "code": 50035,
                   "errors": {"_errors": [{"code": "NUMBER_TYPE_COERCE",
                                           "message": format!("Value \"{segment}\" is not snowflake.")}]}}),
        )
    })
}

fn route(
    inner: &Inner,
    st: &mut St,
    method: &Method,
    segments: &[&str],
    query: Option<&str>,
    body: Option<&Value>,
    bot_auth: bool,
) -> Reply {
    let result = (|| -> Result<Reply, Reply> {
        if let ["attachments", id, _name] = segments {
            if method == Method::GET {
                return Ok(cdn(st, parse_id(id)?));
            }
        }
        let ["api", "v10", rest @ ..] = segments else {
            return Err(unknown_route());
        };
        let empty = Value::Null;
        let body = body.unwrap_or(&empty);
        let gateway = json!({"url": inner.gateway_url()});
        match (method.as_str(), rest) {
            ("GET", ["gateway"]) => return Ok(Reply::json(200, gateway)),
            ("GET", ["gateway", "bot"]) if bot_auth => {
                let mut bot = gateway;
                bot["shards"] = json!(st.options.shards);
                bot["session_start_limit"] = json!({"total": 1000, "remaining": 999,
                                                     "reset_after": 14_400_000, "max_concurrency": 1});
                return Ok(Reply::json(200, bot));
            }
            _ => {}
        }
        if !bot_auth {
            let known = route_known(method, rest);
            let mut reply = Reply::error(401, 0, "401: Unauthorized");
            reply.known_route = known;
            return Err(reply);
        }
        match (method.as_str(), rest) {
            ("GET", ["users", "@me"]) => {
                let mut user = st.user_json(st.options.bot.id);
                user["verified"] = json!(true);
                user["mfa_enabled"] = json!(false);
                Ok(Reply::json(200, user))
            }
            ("GET", ["oauth2", "applications", "@me"] | ["applications", "@me"]) => {
                Ok(Reply::json(200, st.application_json()))
            }
            ("GET", ["users", "@me", "guilds"]) => Ok(Reply::json(200, st.my_guilds_json(query))),
            ("GET", ["guilds", guild]) => {
                let guild = st.guild(parse_id(guild)?).ok_or_else(unknown_guild)?;
                Ok(Reply::json(200, st.guild_json(guild)))
            }
            ("GET", ["guilds", guild, "channels"]) => {
                let guild = st.guild(parse_id(guild)?).ok_or_else(unknown_guild)?;
                let channels: Vec<Value> = guild
                    .channels
                    .iter()
                    .filter(|c| c.kind == ChannelKind::Text)
                    .map(|c| st.channel_json(guild.id, c))
                    .collect();
                Ok(Reply::json(200, json!(channels)))
            }
            ("GET", ["guilds", guild, "members", user]) => {
                let guild = st.guild(parse_id(guild)?).ok_or_else(unknown_guild)?;
                let user = parse_id(user)?;
                if !st.members(guild).contains(&user) {
                    return Err(Reply::error(404, 10007, "Unknown Member"));
                }
                Ok(Reply::json(200, st.member_json(guild.id, user)))
            }
            ("GET", ["channels", channel]) => {
                let (guild, channel) =
                    st.channel(parse_id(channel)?).ok_or_else(unknown_channel)?;
                Ok(Reply::json(200, st.channel_json(guild.id, channel)))
            }
            ("POST", ["channels", channel, "typing"]) => {
                let channel = parse_id(channel)?;
                st.channel(channel).ok_or_else(unknown_channel)?;
                let limit = st.options.typing_limit;
                let headers = st.take("typing", channel, channel, limit)?;
                *st.typing.entry(channel).or_default() += 1;
                Ok(Reply::no_content().with_headers(headers))
            }
            ("POST", ["channels", channel, "messages"]) => {
                create_message(st, parse_id(channel)?, body)
            }
            ("GET", ["channels", channel, "messages"]) => {
                let channel = parse_id(channel)?;
                let (guild, _) = st.channel(channel).ok_or_else(unknown_channel)?;
                let guild = guild.id;
                let limit = st.options.history_limit;
                let headers = st.take("history", channel, channel, limit)?;
                let needed = (Permissions::VIEW_CHANNEL | Permissions::READ_MESSAGE_HISTORY).bits();
                if st.permissions(guild, st.options.bot.id, channel) & needed != needed {
                    return Err(Reply::error(403, 50001, "Missing Access").with_headers(headers));
                }
                let page = history_page(st, channel, query)
                    .map_err(|r| r.with_headers(headers.clone()))?;
                Ok(Reply::json(200, page).with_headers(headers))
            }
            ("GET", ["channels", channel, "messages", message]) => {
                let (channel, message) = (parse_id(channel)?, parse_id(message)?);
                match st.message(message) {
                    Some(m) if m.channel_id == channel => Ok(Reply::json(200, m.json.clone())),
                    _ => Err(unknown_message()),
                }
            }
            ("PATCH", ["channels", channel, "messages", message]) => {
                let (channel, message) = (parse_id(channel)?, parse_id(message)?);
                st.refuse_edit(channel)?;
                let limit = st.options.message_limit;
                let headers = st.take("messages", channel, channel, limit)?;
                match st.message(message) {
                    Some(m) if m.channel_id == channel => {
                        if m.author_id != st.options.bot.id {
                            return Err(Reply::error(
                                403,
                                50005,
                                "Cannot edit a message authored by another user",
                            )
                            .with_headers(headers));
                        }
                    }
                    _ => return Err(unknown_message().with_headers(headers)),
                }
                check_content(body).map_err(|r| r.with_headers(headers.clone()))?;
                let json = st.edit_message(message, body);
                Ok(Reply::json(200, json).with_headers(headers))
            }
            (
                "PUT" | "DELETE",
                ["channels", channel, "messages", message, "reactions", emoji, "@me"],
            ) => {
                let (channel, message) = (parse_id(channel)?, parse_id(message)?);
                let (guild, _) = st.channel(channel).ok_or_else(unknown_channel)?;
                let guild = guild.id;
                let limit = st.options.reaction_limit;
                let headers = st.take("reactions", channel, channel, limit)?;
                if method == Method::PUT {
                    let permissions = st.permissions(guild, st.options.bot.id, channel);
                    if permissions & Permissions::ADD_REACTIONS.bits() == 0 {
                        return Err(missing_permissions().with_headers(headers));
                    }
                }
                let stored = match st.message_mut(message) {
                    Some(m) if m.channel_id == channel => m,
                    _ => return Err(unknown_message().with_headers(headers)),
                };
                let emoji = emoji.to_string();
                if method == Method::PUT {
                    if !stored.reactions.contains(&emoji) {
                        stored.reactions.push(emoji);
                    }
                } else {
                    stored.reactions.retain(|e| *e != emoji);
                }
                Ok(Reply::no_content().with_headers(headers))
            }
            ("PUT", ["applications", app, "commands"]) => {
                check_application(st, app)?;
                let commands = register_commands(st, None, body);
                st.global_commands = commands.clone();
                Ok(Reply::json(200, json!(commands)))
            }
            ("GET", ["applications", app, "commands"]) => {
                check_application(st, app)?;
                Ok(Reply::json(200, json!(st.global_commands)))
            }
            ("PUT", ["applications", app, "guilds", guild, "commands"]) => {
                check_application(st, app)?;
                let guild = parse_id(guild)?;
                st.guild(guild).ok_or_else(unknown_guild)?;
                let commands = register_commands(st, Some(guild), body);
                st.guild_commands.insert(guild, commands.clone());
                Ok(Reply::json(200, json!(commands)))
            }
            ("GET", ["applications", app, "guilds", guild, "commands"]) => {
                check_application(st, app)?;
                let guild = parse_id(guild)?;
                let commands = st.guild_commands.get(&guild).cloned().unwrap_or_default();
                Ok(Reply::json(200, json!(commands)))
            }
            ("POST", ["interactions", id, token, "callback"]) => {
                interaction_callback(st, parse_id(id)?, token, body)
            }
            ("GET" | "PATCH", ["webhooks", app, token, "messages", message]) => {
                check_webhook(st, app)?;
                let index = st
                    .interactions
                    .iter()
                    .position(|i| i.token == *token)
                    .ok_or_else(unknown_webhook)?;
                let interaction = &st.interactions[index];
                let (channel, interaction_id) = (interaction.channel_id, interaction.id);
                let message = if *message == "@original" {
                    interaction.original_message.ok_or_else(unknown_message)?
                } else {
                    let id = parse_id(message)?;
                    if !interaction.followups.contains(&id) {
                        return Err(unknown_message());
                    }
                    id
                };
                if method == Method::GET {
                    let json = st
                        .message(message)
                        .map(|m| m.json.clone())
                        .ok_or_else(unknown_message)?;
                    return Ok(Reply::json(200, json));
                }
                let limit = st.options.message_limit;
                let headers = st.take("webhook-edit", interaction_id, channel, limit)?;
                check_content(body).map_err(|r| r.with_headers(headers.clone()))?;
                let mut body = body.clone();
                if let Some(stored) = st.message(message) {
                    // The "thinking…" state ends with the first edit.
                    let flags = stored.json["flags"].as_u64().unwrap_or(0) & !128;
                    if body.get("flags").is_none() {
                        body["flags"] = json!(flags);
                    }
                }
                let json = st.edit_message(message, &body);
                Ok(Reply::json(200, json).with_headers(headers))
            }
            ("POST", ["webhooks", app, token]) => {
                check_webhook(st, app)?;
                let index = st
                    .interactions
                    .iter()
                    .position(|i| i.token == *token)
                    .ok_or_else(unknown_webhook)?;
                if st.interactions[index].callbacks.is_empty() {
                    return Err(Reply::error(400, 10015, "Unknown Webhook"));
                }
                check_content(body)?;
                let channel = st.interactions[index].channel_id;
                let id = st.bot_message(channel, body, 20, true);
                st.interactions[index].followups.push(id);
                let json = st.message(id).map(|m| m.json.clone()).expect("just stored");
                Ok(Reply::json(200, json))
            }
            _ => Err(unknown_route()),
        }
    })();
    result.unwrap_or_else(|reply| reply)
}

/// `GET /channels/{c}/messages`: at most `limit` (1–100, default 50) of the channel's messages,
/// newest first, `before` / `after` a message id (`around` is not used by engram and refused).
fn history_page(st: &St, channel: u64, query: Option<&str>) -> Result<Value, Reply> {
    let pairs: Vec<(String, String)> = query
        .map(|q| serde_urlencoded::from_str(q).unwrap_or_default())
        .unwrap_or_default();
    let get = |key: &str| {
        pairs
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    };
    let number = |key: &str| -> Result<Option<u64>, Reply> {
        get(key)
            .map(|v| {
                v.parse::<u64>().map_err(|_| {
                    invalid_form(
                        key,
                        "NUMBER_TYPE_COERCE",
                        &format!("Value \"{v}\" is not int."),
                    )
                })
            })
            .transpose()
    };
    let limit = number("limit")?.unwrap_or(50);
    if !(1..=100).contains(&limit) {
        return Err(invalid_form(
            "limit",
            "NUMBER_TYPE_MAX",
            "int value should be less than or equal to 100.",
        ));
    }
    if get("around").is_some() {
        return Err(invalid_form(
            "around",
            "UNSUPPORTED",
            "not supported by the fake",
        ));
    }
    let before = number("before")?;
    let after = number("after")?;
    let mut messages: Vec<&StoredMessage> = st
        .messages
        .iter()
        .filter(|m| m.channel_id == channel)
        .filter(|m| before.is_none_or(|b| m.id < b) && after.is_none_or(|a| m.id > a))
        .collect();
    messages.sort_by_key(|m| std::cmp::Reverse(m.id));
    if after.is_some() && before.is_none() {
        // Discord returns the messages just after `after`, still newest first.
        let skip = messages.len().saturating_sub(limit as usize);
        messages.drain(..skip);
    } else {
        messages.truncate(limit as usize);
    }
    Ok(json!(messages
        .iter()
        .map(|m| m.json.clone())
        .collect::<Vec<_>>()))
}

/// Whether the fake implements a route (for requests refused before routing).
fn route_known(method: &Method, rest: &[&str]) -> bool {
    matches!(
        (method.as_str(), rest),
        ("GET", ["users", "@me"] | ["users", "@me", "guilds"])
            | (
                "GET",
                ["oauth2", "applications", "@me"] | ["applications", "@me"]
            )
            | ("GET", ["guilds", ..])
            | ("GET" | "POST", ["channels", ..])
            | ("PATCH" | "PUT" | "DELETE", ["channels", ..])
            | ("GET" | "PUT", ["applications", ..])
            | ("POST", ["interactions", ..])
            | ("GET" | "PATCH" | "POST", ["webhooks", ..])
            | ("GET", ["gateway", "bot"])
    )
}

fn unknown_route() -> Reply {
    let mut reply = Reply::error(404, 0, "404: Not Found");
    reply.known_route = false;
    reply
}

fn unknown_guild() -> Reply {
    Reply::error(404, 10004, "Unknown Guild")
}

fn unknown_channel() -> Reply {
    Reply::error(404, 10003, "Unknown Channel")
}

fn unknown_message() -> Reply {
    Reply::error(404, 10008, "Unknown Message")
}

fn unknown_webhook() -> Reply {
    Reply::error(404, 10015, "Unknown Webhook")
}

fn missing_permissions() -> Reply {
    Reply::error(403, 50013, "Missing Permissions")
}

fn invalid_form(field: &str, code: &str, message: &str) -> Reply {
    Reply::json(
        400,
        json!({"message": "Invalid Form Body", "code": 50035,
               "errors": {field: {"_errors": [{"code": code, "message": message}]}}}),
    )
}

fn check_content(body: &Value) -> Result<(), Reply> {
    let length = body["content"].as_str().map_or(0, |c| c.chars().count());
    if length > MAX_CONTENT {
        return Err(invalid_form(
            "content",
            "BASE_TYPE_MAX_LENGTH",
            "Must be 2000 or fewer in length.",
        ));
    }
    check_components(body)
}

/// Message components as Discord checks them: at most 5 action rows (type 1) of 1–5
/// buttons (type 2); a button has a label (≤ 80 characters) or an emoji; styles 1–4 need a
/// `custom_id` of 1–100 characters, unique in the message, and no `url`; style 5 (link) needs
/// a `url` and no `custom_id`.
fn check_components(body: &Value) -> Result<(), Reply> {
    let Some(rows) = body.get("components").filter(|c| !c.is_null()) else {
        return Ok(());
    };
    let invalid =
        |field: String, code: &str, message: &str| Err(invalid_form(&field, code, message));
    let Some(rows) = rows.as_array() else {
        return invalid("components".into(), "BASE_TYPE_ARRAY", "Must be an array.");
    };
    if rows.len() > 5 {
        return invalid(
            "components".into(),
            "BASE_TYPE_BAD_LENGTH",
            "Must be between 0 and 5 in length.",
        );
    }
    let mut ids = HashSet::new();
    for (r, row) in rows.iter().enumerate() {
        let at = format!("components.{r}");
        if row["type"].as_u64() != Some(1) {
            return invalid(
                format!("{at}.type"),
                "UNION_TYPE_CHOICES",
                "Value of field \"type\" must be one of (1,).",
            );
        }
        let buttons = row["components"].as_array().cloned().unwrap_or_default();
        if buttons.is_empty() || buttons.len() > 5 {
            return invalid(
                format!("{at}.components"),
                "BASE_TYPE_BAD_LENGTH",
                "Must be between 1 and 5 in length.",
            );
        }
        for (b, button) in buttons.iter().enumerate() {
            let at = format!("{at}.components.{b}");
            if button["type"].as_u64() != Some(2) {
                return invalid(
                    format!("{at}.type"),
                    "COMPONENT_TYPE_INVALID",
                    "This component type is not supported here.",
                );
            }
            let style = button["style"].as_u64().unwrap_or(0);
            if !(1..=5).contains(&style) {
                return invalid(
                    format!("{at}.style"),
                    "BASE_TYPE_CHOICES",
                    "Value must be one of {1, 2, 3, 4, 5}.",
                );
            }
            let label = button["label"].as_str().map(|l| l.chars().count());
            if label.is_some_and(|n| n > 80) {
                return invalid(
                    format!("{at}.label"),
                    "BASE_TYPE_MAX_LENGTH",
                    "Must be 80 or fewer in length.",
                );
            }
            let emoji = button["emoji"]["name"].as_str().is_some()
                || button["emoji"]["id"].as_str().is_some();
            if label.unwrap_or(0) == 0 && !emoji {
                return invalid(
                    at,
                    "BUTTON_COMPONENT_LABEL_OR_EMOJI_REQUIRED",
                    "A label or an emoji is required.",
                );
            }
            let custom_id = button["custom_id"].as_str();
            if style == 5 {
                if button["url"].as_str().is_none() || custom_id.is_some() {
                    return invalid(
                        at,
                        "BUTTON_COMPONENT_URL_REQUIRED",
                        "A link button needs a url and no custom_id.",
                    );
                }
                continue;
            }
            let Some(custom_id) = custom_id else {
                return invalid(
                    format!("{at}.custom_id"),
                    "BASE_TYPE_REQUIRED",
                    "This field is required",
                );
            };
            if custom_id.is_empty() || custom_id.chars().count() > 100 {
                return invalid(
                    format!("{at}.custom_id"),
                    "BASE_TYPE_BAD_LENGTH",
                    "Must be between 1 and 100 in length.",
                );
            }
            if button.get("url").is_some_and(|u| !u.is_null()) {
                return invalid(
                    format!("{at}.url"),
                    "BUTTON_COMPONENT_URL_NOT_ALLOWED",
                    "A button with a custom_id cannot have a url.",
                );
            }
            if !ids.insert(custom_id.to_string()) {
                return invalid(
                    format!("{at}.custom_id"),
                    "COMPONENT_CUSTOM_ID_DUPLICATED",
                    "Component custom id cannot be duplicated",
                );
            }
        }
    }
    Ok(())
}

fn check_application(st: &St, app: &str) -> Result<(), Reply> {
    if parse_id(app)? != st.options.application_id {
        return Err(Reply::error(403, 50001, "Missing Access"));
    }
    Ok(())
}

fn check_webhook(st: &St, app: &str) -> Result<(), Reply> {
    if parse_id(app)? != st.options.application_id {
        return Err(unknown_webhook());
    }
    Ok(())
}

fn cdn(st: &St, id: u64) -> Reply {
    match st.files.get(&id) {
        Some(file) if file.status == 200 => Reply {
            status: 200,
            body: ReplyBody::Bytes(
                file.bytes.clone(),
                content_type(&file.name)
                    .as_str()
                    .unwrap_or("application/octet-stream")
                    .to_string(),
            ),
            headers: Vec::new(),
            known_route: true,
        },
        Some(file) => Reply {
            status: file.status,
            body: ReplyBody::Bytes(
                b"This content is no longer available.".to_vec(),
                "text/plain".to_string(),
            ),
            headers: Vec::new(),
            known_route: true,
        },
        None => Reply {
            status: 404,
            body: ReplyBody::Bytes(b"Not Found".to_vec(), "text/plain".to_string()),
            headers: Vec::new(),
            known_route: true,
        },
    }
}

fn create_message(st: &mut St, channel: u64, body: &Value) -> Result<Reply, Reply> {
    if let Some(left) = st
        .failed_creates
        .get_mut(&channel)
        .filter(|left| **left > 0)
    {
        *left -= 1;
        return Err(Reply::error(502, 0, "502: Bad Gateway"));
    }
    let limit = st.options.message_limit;
    let headers = st.take("messages", channel, channel, limit)?;
    let with = |reply: Reply| reply.with_headers(headers.clone());
    let (guild, target) = st.channel(channel).ok_or_else(|| with(unknown_channel()))?;
    let needed = match target.kind {
        ChannelKind::Text => Permissions::SEND_MESSAGES,
        ChannelKind::PublicThread { .. } => Permissions::SEND_MESSAGES_IN_THREADS,
    } | Permissions::VIEW_CHANNEL;
    let guild = guild.id;
    let permissions = st.permissions(guild, st.options.bot.id, channel);
    if permissions & needed.bits() != needed.bits() {
        return Err(with(missing_permissions()));
    }
    let content = body["content"].as_str().unwrap_or_default();
    let has_embeds = body["embeds"].as_array().is_some_and(|e| !e.is_empty());
    if content.is_empty() && !has_embeds && body.get("sticker_ids").is_none() {
        return Err(with(Reply::error(
            400,
            50006,
            "Cannot send an empty message",
        )));
    }
    check_content(body).map_err(with)?;
    let reference = body
        .get("message_reference")
        .filter(|r| !r.is_null())
        .and_then(|r| {
            let id = r["message_id"]
                .as_str()
                .and_then(|s| s.parse::<u64>().ok())
                .or(r["message_id"].as_u64());
            Some((id?, r["fail_if_not_exists"].as_bool().unwrap_or(true)))
        });
    let referenced = match reference {
        Some((id, fail)) => match st.message(id) {
            Some(m) if m.channel_id == channel => Some((id, m.json.clone())),
            _ if fail => {
                return Err(with(invalid_form(
                    "message_reference",
                    "REPLIES_UNKNOWN_MESSAGE",
                    "Unknown message",
                )))
            }
            _ => None,
        },
        None => None,
    };
    // A nonce is an integer or a string of at most 25 characters; with `enforce_nonce`, a
    // message the same author created with the same nonce in the past few minutes is
    // returned instead of creating another.
    if let Some(nonce) = body.get("nonce").filter(|nonce| !nonce.is_null()) {
        let valid = nonce.is_u64() || nonce.as_str().is_some_and(|n| n.chars().count() <= 25);
        if !valid {
            return Err(with(invalid_form(
                "nonce",
                "BASE_TYPE_MAX_LENGTH",
                "Must be 25 or fewer in length.",
            )));
        }
        if body["enforce_nonce"].as_bool() == Some(true) {
            let bot = st.options.bot.id;
            if let Some(existing) = st.messages.iter().find(|m| {
                m.author_id == bot
                    && m.json.get("nonce") == Some(nonce)
                    && m.versions[0].at.elapsed() < NONCE_WINDOW
            }) {
                st.nonce_hits += 1;
                return Ok(Reply::json(200, existing.json.clone()).with_headers(headers));
            }
        }
    }
    let kind = if referenced.is_some() { 19 } else { 0 };
    let id = st.bot_message(channel, body, kind, false);
    let message = st.message_mut(id).expect("just stored");
    if let Some((reply, json)) = referenced {
        message.json["message_reference"] = json!({
            "type": 0,
            "message_id": reply.to_string(),
            "channel_id": channel.to_string(),
            "guild_id": guild.to_string(),
        });
        message.json["referenced_message"] = json;
    }
    Ok(Reply::json(200, message.json.clone()).with_headers(headers))
}

fn register_commands(st: &mut St, guild: Option<u64>, body: &Value) -> Vec<Value> {
    let definitions = body.as_array().cloned().unwrap_or_default();
    let mut commands = Vec::new();
    for definition in definitions {
        let name = definition["name"].as_str().unwrap_or_default().to_string();
        let key = (guild, name.clone());
        let id = match st.command_ids.get(&key) {
            Some(id) => *id,
            None => {
                let id = st.snowflake();
                st.command_ids.insert(key, id);
                id
            }
        };
        let version = st.snowflake();
        let mut command = json!({
            "id": id.to_string(),
            "type": definition.get("type").cloned().unwrap_or(json!(1)),
            "application_id": st.options.application_id.to_string(),
            "name": name,
            "description": definition.get("description").cloned().unwrap_or(json!("")),
            "options": definition.get("options").cloned().unwrap_or(json!([])),
            "default_member_permissions": definition.get("default_member_permissions").cloned().unwrap_or(Value::Null),
            "nsfw": definition.get("nsfw").cloned().unwrap_or(json!(false)),
            "integration_types": [0],
            "contexts": definition.get("contexts").cloned().unwrap_or(Value::Null),
            "version": version.to_string(),
        });
        if let Some(guild) = guild {
            command["guild_id"] = id_string(guild);
        }
        commands.push(command);
    }
    commands
}

/// How long Discord waits for an interaction's first response.
pub const INTERACTION_ACK_LIMIT: Duration = Duration::from_secs(3);

/// Whether a session on `shard` hears events of `guild`: Discord's rule is
/// `(guild_id >> 22) % num_shards == shard_id`; events of no guild go to shard 0.
fn shard_owns((id, total): (u64, u64), guild: Option<u64>) -> bool {
    match guild {
        Some(guild) => (guild >> 22) % total.max(1) == id,
        None => id == 0,
    }
}

fn interaction_callback(st: &mut St, id: u64, token: &str, body: &Value) -> Result<Reply, Reply> {
    let index = st
        .interactions
        .iter()
        .position(|i| i.id == id && i.token == token)
        .ok_or_else(|| Reply::error(404, 10062, "Unknown interaction"))?;
    if !st.interactions[index].callbacks.is_empty() {
        return Err(Reply::error(
            400,
            40060,
            "Interaction has already been acknowledged.",
        ));
    }
    if st.interactions[index].created.elapsed() > INTERACTION_ACK_LIMIT {
        // Too late: the user saw "The application did not respond".
        return Err(Reply::error(404, 10062, "Unknown interaction"));
    }
    let channel = st.interactions[index].channel_id;
    let data = body.get("data").cloned().unwrap_or(json!({}));
    let original = match body["type"].as_u64() {
        Some(4) => {
            check_content(&data)?;
            Some(st.bot_message(channel, &data, 20, true))
        }
        Some(5) => {
            // Deferred: Discord shows "thinking…" (LOADING) until the response is edited.
            let flags = data["flags"].as_u64().unwrap_or(0) | 128;
            Some(st.bot_message(channel, &json!({"flags": flags}), 20, true))
        }
        Some(1 | 6 | 7 | 9) => None,
        _ => {
            return Err(invalid_form(
                "type",
                "BASE_TYPE_CHOICES",
                "Value must be one of {1, 4, 5, 6, 7, 8, 9, 10, 12}.",
            ))
        }
    };
    let interaction = &mut st.interactions[index];
    interaction.callbacks.push((Instant::now(), body.clone()));
    interaction.original_message = original;
    Ok(Reply::no_content())
}
