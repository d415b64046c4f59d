//! A local stand-in for Slack (what sits across the network): the Web API methods engram
//! calls (messages, streams, reactions, users, auth, Socket Mode's `apps.connections.open`),
//! `url_private` file downloads that demand the bot token, slash commands' `response_url`,
//! a Socket Mode WebSocket that sends `hello` and envelopes and records acks, `block_actions`
//! payloads for button clicks, and requests signed as Slack signs them. Blocks are checked as
//! Slack checks them (`invalid_blocks`). Rate limits can be enforced per method (429 + `Retry-After`).
//! Channels have a past (`seed_message`) that `conversations.history` and
//! `conversations.replies` page through with Slack's cursors.

use std::collections::{HashMap, HashSet};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get, post};
use axum::{Json, Router};
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use tokio::sync::mpsc;

pub const TEAM: &str = "T0ENGRAM";
pub const BOT: &str = "U0BOT";
pub const ALICE: &str = "U0ALICE";
pub const BOB: &str = "U0BOB";
pub const GENERAL: &str = "C0GENERAL";
pub const BOT_TOKEN: &str = "xoxb-fake-bot-token";
pub const APP_TOKEN: &str = "xapp-fake-app-token";
pub const SIGNING_SECRET: &str = "fake-signing-secret";

/// How the fake behaves.
#[derive(Debug, Clone)]
pub struct Options {
    /// `chat.startStream` works (else it answers `unknown_method`).
    pub streaming: bool,
    /// Per method: at most this many calls per window (per channel for `chat.postMessage`);
    /// more get 429 with `Retry-After`.
    pub limits: HashMap<&'static str, (usize, Duration)>,
    /// Per method: the first this-many calls get 429 with `Retry-After: 1`.
    pub force_429: HashMap<&'static str, usize>,
    /// Users `users.info` calls admins.
    pub admins: HashSet<&'static str>,
}

/// Slack's published limits for the methods engram calls, per workspace (Tier 2 20 a minute,
/// Tier 3 50, Tier 4 100) and `chat.postMessage`'s one a second per channel.
pub fn tier_limits() -> HashMap<&'static str, (usize, Duration)> {
    let minute = Duration::from_secs(60);
    let mut limits: HashMap<&'static str, (usize, Duration)> = [
        ("chat.startStream", 20),
        ("chat.stopStream", 20),
        ("chat.update", 50),
        ("chat.delete", 50),
        ("reactions.add", 50),
        ("reactions.remove", 50),
        ("conversations.history", 50),
        ("conversations.replies", 50),
        ("conversations.info", 50),
        ("chat.appendStream", 100),
        ("chat.postEphemeral", 100),
        ("users.info", 100),
    ]
    .into_iter()
    .map(|(method, calls)| (method, (calls, minute)))
    .collect();
    limits.insert("chat.postMessage", (1, Duration::from_secs(1)));
    limits
}

impl Default for Options {
    /// Streaming works, Alice is an admin, and Slack's tier limits are enforced.
    fn default() -> Self {
        Self {
            streaming: true,
            limits: tier_limits(),
            force_429: HashMap::new(),
            admins: [ALICE].into_iter().collect(),
        }
    }
}

/// A message as Slack holds it.
#[derive(Debug, Clone)]
pub struct Message {
    pub channel: String,
    pub ts: String,
    pub thread_ts: Option<String>,
    pub user: String,
    /// Every text it had, first to last.
    pub versions: Vec<String>,
    /// Made with `chat.startStream`.
    pub streamed: bool,
    /// A stream still open.
    pub streaming: bool,
    pub deleted: bool,
    /// The blocks it shows now (`chat.postMessage`/`chat.update`'s, or those
    /// `chat.stopStream` put under a streamed message).
    pub blocks: Vec<Value>,
    /// Files shared with it (Slack file objects).
    pub files: Vec<Value>,
}

impl Message {
    pub fn text(&self) -> &str {
        self.versions.last().map_or("", String::as_str)
    }

    /// The buttons of its `actions` blocks: (`action_id`, `value`).
    pub fn buttons(&self) -> Vec<(String, String)> {
        self.blocks
            .iter()
            .filter(|block| block["type"] == "actions")
            .flat_map(|block| block["elements"].as_array().cloned().unwrap_or_default())
            .filter(|element| element["type"] == "button")
            .map(|button| {
                let field = |key: &str| button[key].as_str().unwrap_or("").to_string();
                (field("action_id"), field("value"))
            })
            .collect()
    }
}

/// One Web API call.
#[derive(Debug, Clone)]
pub struct Call {
    pub method: String,
    pub at: Instant,
    pub status: u16,
    pub body: Value,
}

/// A message shown to one person (`chat.postEphemeral`).
#[derive(Debug, Clone)]
pub struct Ephemeral {
    pub channel: String,
    pub user: String,
    pub text: String,
    pub thread_ts: Option<String>,
}

#[derive(Debug, Default)]
struct Inner {
    messages: Vec<Message>,
    ephemerals: Vec<Ephemeral>,
    reactions: HashMap<String, Vec<String>>,
    calls: Vec<Call>,
    responses: Vec<Value>,
    files: HashMap<String, Vec<u8>>,
    next_ts: u64,
    sockets: Vec<mpsc::UnboundedSender<String>>,
    acks: Vec<String>,
    forced: HashMap<String, usize>,
    /// Messages seeded so far ([`FakeSlack::seed_message`]).
    seeded: u64,
}

#[derive(Clone)]
struct Shared {
    inner: Arc<Mutex<Inner>>,
    options: Arc<Options>,
    addr: SocketAddr,
    ws_addr: SocketAddr,
}

#[derive(Clone)]
pub struct FakeSlack {
    shared: Shared,
}

impl std::fmt::Debug for FakeSlack {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FakeSlack")
            .field("addr", &self.shared.addr)
            .finish()
    }
}

impl FakeSlack {
    pub async fn start(options: Options) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let ws_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let shared = Shared {
            inner: Arc::new(Mutex::new(Inner {
                next_ts: 1_700_000_000,
                ..Inner::default()
            })),
            options: Arc::new(options),
            addr: listener.local_addr().unwrap(),
            ws_addr: ws_listener.local_addr().unwrap(),
        };
        let router = Router::new()
            .route("/api/{method}", any(web_api))
            .route("/files/{name}", get(file))
            .route("/respond/{id}", post(respond))
            .with_state(shared.clone());
        tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
        let sockets = shared.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = ws_listener.accept().await {
                tokio::spawn(socket(stream, sockets.clone()));
            }
        });
        Self { shared }
    }

    pub fn api_url(&self) -> String {
        format!("http://{}/api", self.shared.addr)
    }

    /// Serves a file at a `url_private`; returns the URL.
    pub fn add_file(&self, name: &str, bytes: &[u8]) -> String {
        self.inner().files.insert(name.to_string(), bytes.to_vec());
        format!("http://{}/files/{name}", self.shared.addr)
    }

    /// A `response_url` for a slash command.
    pub fn response_url(&self, id: &str) -> String {
        format!("http://{}/respond/{id}", self.shared.addr)
    }

    fn inner(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.shared.inner.lock().unwrap()
    }

    pub fn messages(&self) -> Vec<Message> {
        self.inner().messages.clone()
    }

    /// The bot's messages in a thread, oldest first.
    pub fn thread(&self, thread_ts: &str) -> Vec<Message> {
        self.messages()
            .into_iter()
            .filter(|m| m.thread_ts.as_deref() == Some(thread_ts) && m.user == BOT)
            .collect()
    }

    pub fn reactions(&self, ts: &str) -> Vec<String> {
        self.inner().reactions.get(ts).cloned().unwrap_or_default()
    }

    pub fn calls(&self) -> Vec<Call> {
        self.inner().calls.clone()
    }

    pub fn calls_of(&self, method: &str) -> Vec<Call> {
        self.calls()
            .into_iter()
            .filter(|call| call.method == method)
            .collect()
    }

    /// 429s the fake answered that it was not told to force.
    pub fn rate_limited_unforced(&self) -> usize {
        let inner = self.inner();
        let forced: usize = self.shared.options.force_429.values().sum();
        let limited = inner.calls.iter().filter(|c| c.status == 429).count();
        limited.saturating_sub(forced)
    }

    /// Messages shown to one person, oldest first.
    pub fn ephemerals(&self) -> Vec<Ephemeral> {
        self.inner().ephemerals.clone()
    }

    /// Texts posted to `response_url`s.
    pub fn responses(&self) -> Vec<Value> {
        self.inner().responses.clone()
    }

    /// Socket Mode: sends an envelope to the first connection; returns its id.
    pub fn send_envelope(&self, kind: &str, payload: Value) -> String {
        let id = format!("env-{}", self.next_ts());
        let envelope = json!({
            "envelope_id": id,
            "type": kind,
            "accepts_response_payload": kind == "slash_commands",
            "payload": payload,
        });
        let inner = self.inner();
        let socket = inner
            .sockets
            .iter()
            .find(|s| !s.is_closed())
            .expect("a connection");
        socket.send(envelope.to_string()).unwrap();
        id
    }

    pub fn live_sockets(&self) -> usize {
        self.inner()
            .sockets
            .iter()
            .filter(|s| !s.is_closed())
            .count()
    }

    pub fn acked(&self, envelope: &str) -> bool {
        self.inner().acks.iter().any(|id| id == envelope)
    }

    pub fn next_ts(&self) -> String {
        next_ts(&mut self.inner())
    }

    /// A person's message from before the bot was asked to read history (no event is sent),
    /// posted at `unix_seconds` (its `ts`), in `thread` when given, with the files of
    /// [`Self::add_file`] named in `files`; returns its `ts`.
    pub fn seed_message(
        &self,
        channel: &str,
        user: &str,
        text: &str,
        unix_seconds: u64,
        thread: Option<&str>,
        files: &[&str],
    ) -> String {
        let mut inner = self.inner();
        // Unique per second: the micro part counts the messages seeded.
        inner.seeded += 1;
        let ts = format!("{unix_seconds}.{:06}", inner.seeded % 1_000_000);
        let files = files
            .iter()
            .map(|name| {
                let size = inner.files.get(*name).map_or(0, Vec::len);
                let url = format!("http://{}/files/{name}", self.shared.addr);
                json!({"id": format!("F{}", name.len()), "name": name, "title": name,
                       "size": size, "url_private": url, "url_private_download": url,
                       "mimetype": "text/plain"})
            })
            .collect();
        inner.messages.push(Message {
            channel: channel.to_string(),
            ts: ts.clone(),
            thread_ts: thread.map(str::to_string),
            user: user.to_string(),
            versions: vec![text.to_string()],
            streamed: false,
            streaming: false,
            deleted: false,
            blocks: Vec::new(),
            files,
        });
        ts
    }
}

/// A message as `conversations.history` and `conversations.replies` return it.
fn history_json(message: &Message, replies: usize) -> Value {
    let mut json = json!({"type": "message", "ts": message.ts, "user": message.user,
                          "text": message.text()});
    if message.user == BOT {
        json["bot_id"] = json!("B0BOT");
    }
    if let Some(thread) = &message.thread_ts {
        json["thread_ts"] = json!(thread);
    }
    if replies > 0 {
        json["thread_ts"] = json!(message.ts);
        json["reply_count"] = json!(replies);
    }
    if !message.files.is_empty() {
        json["subtype"] = json!("file_share");
        json["files"] = json!(message.files);
    }
    json
}

/// `ts` as a number, for ordering and `oldest`.
fn ts_number(ts: &str) -> f64 {
    ts.parse().unwrap_or(0.0)
}

/// One page of `conversations.history` (newest first, top-level messages) or
/// `conversations.replies` (the thread's first message, then its replies, oldest first), with
/// Slack's cursor pagination: `limit` (default 100, at most 999), `cursor` from the last page's
/// `response_metadata.next_cursor`, `oldest` (exclusive).
fn history_page(inner: &Inner, args: &Value, thread: Option<&str>) -> Value {
    let channel = args["channel"].as_str().unwrap_or("");
    if channel.is_empty() {
        return json!({"ok": false, "error": "channel_not_found"});
    }
    let number = |key: &str| -> Option<u64> {
        args[key]
            .as_u64()
            .or_else(|| args[key].as_str().and_then(|v| v.parse().ok()))
    };
    let limit = number("limit").unwrap_or(100).clamp(1, 999) as usize;
    let oldest = args["oldest"].as_str().map_or(0.0, ts_number);
    let live: Vec<&Message> = inner
        .messages
        .iter()
        .filter(|m| m.channel == channel && !m.deleted)
        .collect();
    let replies_to = |ts: &str| {
        live.iter()
            .filter(|m| m.thread_ts.as_deref() == Some(ts) && m.ts != ts)
            .count()
    };
    let mut selected: Vec<&Message> = match thread {
        None => live
            .iter()
            .copied()
            .filter(|m| m.thread_ts.as_deref().is_none_or(|t| t == m.ts))
            .filter(|m| ts_number(&m.ts) > oldest)
            .collect(),
        Some(thread) => live
            .iter()
            .copied()
            .filter(|m| m.ts == thread || m.thread_ts.as_deref() == Some(thread))
            .collect(),
    };
    if thread.is_some() && selected.is_empty() {
        return json!({"ok": false, "error": "thread_not_found"});
    }
    selected.sort_by(|a, b| ts_number(&a.ts).total_cmp(&ts_number(&b.ts)));
    if thread.is_none() {
        selected.reverse();
    }
    let start = match args["cursor"].as_str().filter(|c| !c.is_empty()) {
        None => 0,
        Some(cursor) => match cursor.strip_prefix("bmV4dF90czo") {
            Some(offset) => match offset.parse::<usize>() {
                Ok(offset) => offset,
                Err(_) => return json!({"ok": false, "error": "invalid_cursor"}),
            },
            None => return json!({"ok": false, "error": "invalid_cursor"}),
        },
    };
    let page: Vec<Value> = selected
        .iter()
        .skip(start)
        .take(limit)
        .map(|m| {
            history_json(
                m,
                if thread.is_none() {
                    replies_to(&m.ts)
                } else {
                    0
                },
            )
        })
        .collect();
    let more = start + limit < selected.len();
    let next = if more {
        format!("bmV4dF90czo{}", start + limit)
    } else {
        String::new()
    };
    json!({"ok": true, "messages": page, "has_more": more,
           "response_metadata": {"next_cursor": next}})
}

fn next_ts(inner: &mut Inner) -> String {
    inner.next_ts += 1;
    format!("{}.000100", inner.next_ts)
}

/// A plain HTTP/1.1 POST to engram (Slack's side of the HTTP transport); returns status, body and the time to the answer.
pub fn http_post(
    addr: SocketAddr,
    path: &str,
    headers: &[(&str, String)],
    body: &str,
) -> (u16, String, Duration) {
    let started = Instant::now();
    let mut stream = TcpStream::connect(addr).expect("connect to engram");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut request = format!(
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str("\r\n");
    request.push_str(body);
    stream.write_all(request.as_bytes()).unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let took = started.elapsed();
    let status = response
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("not an HTTP response: {response:?}"));
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, body)| body.to_string())
        .unwrap_or_default();
    (status, body, took)
}

/// An `event_callback` as the Events API delivers it.
pub fn event_callback(event_id: &str, event: Value) -> Value {
    json!({
        "token": "unused",
        "team_id": TEAM,
        "api_app_id": "A0ENGRAM",
        "event": event,
        "type": "event_callback",
        "event_id": event_id,
        "event_time": 1_700_000_000,
    })
}

/// A slash command's fields.
pub fn command(fake: &FakeSlack, user: &str, name: &str, text: &str) -> Vec<(String, String)> {
    let trigger = fake.next_ts();
    vec![
        ("token".into(), "unused".into()),
        ("team_id".into(), TEAM.into()),
        ("team_domain".into(), "engram".into()),
        ("channel_id".into(), GENERAL.into()),
        ("channel_name".into(), "general".into()),
        ("user_id".into(), user.into()),
        ("user_name".into(), user.to_lowercase()),
        ("command".into(), name.into()),
        ("text".into(), text.into()),
        ("api_app_id".into(), "A0ENGRAM".into()),
        ("response_url".into(), fake.response_url(&trigger)),
        ("trigger_id".into(), format!("trigger-{trigger}")),
    ]
}

/// `X-Slack-Signature` for `body` at `timestamp`, as Slack computes it.
pub fn signature(secret: &str, timestamp: &str, body: &str) -> String {
    let message = format!("v0:{timestamp}:{body}");
    let mac = hmac_sha256(secret.as_bytes(), message.as_bytes());
    format!(
        "v0={}",
        mac.iter().map(|b| format!("{b:02x}")).collect::<String>()
    )
}

fn hmac_sha256(key: &[u8], message: &[u8]) -> Vec<u8> {
    let mut block = [0u8; 64];
    if key.len() > 64 {
        block[..32].copy_from_slice(&Sha256::digest(key));
    } else {
        block[..key.len()].copy_from_slice(key);
    }
    let pad = |byte: u8| block.iter().map(|b| b ^ byte).collect::<Vec<u8>>();
    let inner = Sha256::new()
        .chain_update(pad(0x36))
        .chain_update(message)
        .finalize();
    Sha256::new()
        .chain_update(pad(0x5c))
        .chain_update(inner)
        .finalize()
        .to_vec()
}

/// The call's arguments: its query, its JSON or form body.
fn arguments(query: Option<String>, body: &Bytes) -> Value {
    if let Ok(value) = serde_json::from_slice::<Value>(body) {
        return value;
    }
    let text = if body.is_empty() {
        query.unwrap_or_default()
    } else {
        String::from_utf8_lossy(body).to_string()
    };
    let pairs: Vec<(String, String)> = serde_urlencoded::from_str(&text).unwrap_or_default();
    Value::Object(
        pairs
            .into_iter()
            .map(|(key, value)| (key, Value::String(value)))
            .collect(),
    )
}

async fn web_api(
    State(shared): State<Shared>,
    Path(method): Path<String>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let args = arguments(query, &body);
    let token = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    let mut inner = shared.inner.lock().unwrap();
    let now = Instant::now();
    // Rate limits: forced ones first, then the window.
    let mut limited: Option<u64> = None;
    if let Some(&count) = shared.options.force_429.get(method.as_str()) {
        let forced = inner.forced.entry(method.clone()).or_insert(0);
        if *forced < count {
            *forced += 1;
            limited = Some(1);
        }
    }
    if limited.is_none() {
        if let Some(&(requests, per)) = shared.options.limits.get(method.as_str()) {
            let recent: Vec<Instant> = inner
                .calls
                .iter()
                .filter(|c| c.method == method && c.status != 429 && now - c.at < per)
                // chat.postMessage is limited per channel, the other methods per workspace.
                .filter(|c| method != "chat.postMessage" || c.body["channel"] == args["channel"])
                .map(|c| c.at)
                .collect();
            if recent.len() >= requests {
                let oldest = recent.iter().min().copied().unwrap();
                limited = Some((per - (now - oldest)).as_secs_f64().ceil().max(1.0) as u64);
            }
        }
    }
    let record = |inner: &mut Inner, status: u16| {
        inner.calls.push(Call {
            method: method.clone(),
            at: now,
            status,
            body: args.clone(),
        })
    };
    if let Some(retry_after) = limited {
        record(&mut inner, 429);
        return (
            StatusCode::TOO_MANY_REQUESTS,
            [("retry-after", retry_after.to_string())],
            Json(json!({"ok": false, "error": "ratelimited"})),
        )
            .into_response();
    }
    record(&mut inner, 200);
    let expected = if method == "apps.connections.open" {
        format!("Bearer {APP_TOKEN}")
    } else {
        format!("Bearer {BOT_TOKEN}")
    };
    if token != expected {
        return Json(json!({"ok": false, "error": "invalid_auth"})).into_response();
    }
    let text = |key: &str| args[key].as_str().unwrap_or("").to_string();
    let blocks = match blocks_of(&args) {
        Ok(blocks) => blocks,
        Err(error) => return Json(json!({"ok": false, "error": error})).into_response(),
    };
    let reply = match method.as_str() {
        "auth.test" => json!({
            "ok": true, "url": "https://engram.slack.com/", "team": "Engram", "user": "engram",
            "team_id": TEAM, "user_id": BOT, "bot_id": "B0BOT",
        }),
        "users.info" => {
            let user = text("user");
            json!({"ok": true, "user": {
                "id": user, "team_id": TEAM, "name": user.to_lowercase(),
                "is_admin": shared.options.admins.contains(user.as_str()),
            }})
        }
        "apps.connections.open" => {
            json!({"ok": true, "url": format!("ws://{}/link", shared.ws_addr)})
        }
        "chat.postMessage" => {
            let ts = next_ts(&mut inner);
            let thread = args["thread_ts"].as_str().map(str::to_string);
            inner.messages.push(Message {
                channel: text("channel"),
                ts: ts.clone(),
                thread_ts: thread,
                user: BOT.into(),
                versions: vec![text("text")],
                streamed: false,
                streaming: false,
                deleted: false,
                blocks: blocks.unwrap_or_default(),
                files: Vec::new(),
            });
            json!({"ok": true, "channel": text("channel"), "ts": ts,
                   "message": {"type": "message", "ts": ts, "text": text("text"), "user": BOT}})
        }
        "chat.postEphemeral" => {
            let (channel, user) = (text("channel"), text("user"));
            if channel.is_empty() || user.is_empty() {
                return Json(json!({"ok": false, "error": "invalid_arguments"})).into_response();
            }
            let ts = next_ts(&mut inner);
            inner.ephemerals.push(Ephemeral {
                channel,
                user,
                text: text("text"),
                thread_ts: args["thread_ts"].as_str().map(str::to_string),
            });
            json!({"ok": true, "message_ts": ts})
        }
        "chat.startStream" if !shared.options.streaming => {
            json!({"ok": false, "error": "unknown_method"})
        }
        "chat.startStream" => {
            let ts = next_ts(&mut inner);
            inner.messages.push(Message {
                channel: text("channel"),
                ts: ts.clone(),
                thread_ts: args["thread_ts"].as_str().map(str::to_string),
                user: BOT.into(),
                versions: vec![text("markdown_text")],
                streamed: true,
                streaming: true,
                deleted: false,
                blocks: Vec::new(),
                files: Vec::new(),
            });
            json!({"ok": true, "channel": text("channel"), "ts": ts})
        }
        "chat.update" | "chat.appendStream" | "chat.stopStream" | "chat.delete" => {
            let (channel, ts) = (text("channel"), text("ts"));
            let Some(message) = inner
                .messages
                .iter_mut()
                .find(|m| m.channel == channel && m.ts == ts && !m.deleted)
            else {
                return Json(json!({"ok": false, "error": "message_not_found"})).into_response();
            };
            match method.as_str() {
                "chat.update" => {
                    message.versions.push(text("text"));
                    message.blocks = blocks.unwrap_or_default();
                }
                "chat.delete" => message.deleted = true,
                "chat.appendStream" if message.streaming => {
                    let grown = format!("{}{}", message.text(), text("markdown_text"));
                    message.versions.push(grown);
                }
                "chat.stopStream" if message.streaming => {
                    message.streaming = false;
                    message.blocks = blocks.unwrap_or_default();
                }
                _ => {
                    return Json(json!({"ok": false, "error": "message_not_in_streaming_state"}))
                        .into_response()
                }
            }
            json!({"ok": true, "channel": channel, "ts": ts})
        }
        "reactions.add" | "reactions.remove" => {
            let (ts, name) = (text("timestamp"), text("name"));
            let reactions = inner.reactions.entry(ts).or_default();
            if method == "reactions.add" {
                if reactions.contains(&name) {
                    return Json(json!({"ok": false, "error": "already_reacted"})).into_response();
                }
                reactions.push(name);
            } else {
                reactions.retain(|r| *r != name);
            }
            json!({"ok": true})
        }
        "conversations.history" => history_page(&inner, &args, None),
        "conversations.replies" => {
            let thread = text("ts");
            if thread.is_empty() {
                json!({"ok": false, "error": "thread_not_found"})
            } else {
                history_page(&inner, &args, Some(&thread))
            }
        }
        _ => json!({"ok": false, "error": "unknown_method"}),
    };
    Json(reply).into_response()
}

/// A call's `blocks` (a JSON array, or its text in a form-encoded call) as Slack checks them:
/// at most 50 blocks of known types; a section's text at most 3,000 characters; an `actions`
/// block 1–25 elements; a button's `plain_text` text at most 75 characters, its `action_id`
/// at most 255 and unique in the message, its `value` at most 2,000. Anything else is
/// `invalid_blocks`.
fn blocks_of(args: &Value) -> Result<Option<Vec<Value>>, &'static str> {
    let blocks = match &args["blocks"] {
        Value::Null => return Ok(None),
        Value::String(text) => serde_json::from_str(text).map_err(|_| "invalid_blocks_format")?,
        other => other.clone(),
    };
    let blocks = blocks.as_array().ok_or("invalid_blocks_format")?.clone();
    if blocks.len() > 50 {
        return Err("invalid_blocks");
    }
    let mut action_ids = HashSet::new();
    for block in &blocks {
        match block["type"].as_str().unwrap_or("") {
            "section" => {
                let text = &block["text"];
                let kind_ok = matches!(text["type"].as_str(), Some("mrkdwn" | "plain_text"));
                let length = text["text"].as_str().map(|t| t.chars().count());
                if !kind_ok || length.is_none_or(|n| n == 0 || n > 3000) {
                    return Err("invalid_blocks");
                }
            }
            "actions" => {
                let elements = block["elements"].as_array().ok_or("invalid_blocks")?;
                if elements.is_empty() || elements.len() > 25 {
                    return Err("invalid_blocks");
                }
                for element in elements {
                    if element["type"] != "button" {
                        continue;
                    }
                    let label = &element["text"];
                    let label_ok = label["type"] == "plain_text"
                        && label["text"]
                            .as_str()
                            .is_some_and(|t| !t.is_empty() && t.chars().count() <= 75);
                    let value_ok = element["value"]
                        .as_str()
                        .is_none_or(|v| v.chars().count() <= 2000);
                    let id_ok = match element["action_id"].as_str() {
                        Some(id) => id.len() <= 255 && action_ids.insert(id.to_string()),
                        None => true,
                    };
                    if !(label_ok && value_ok && id_ok) {
                        return Err("invalid_blocks");
                    }
                }
            }
            "context" | "divider" | "header" | "image" | "markdown" | "rich_text" => {}
            _ => return Err("invalid_blocks"),
        }
    }
    Ok(Some(blocks))
}

/// A `block_actions` payload for `user` clicking the button `action_id` on the bot's message
/// `ts`, as Slack sends it to the Interactivity URL or in an `interactive` envelope, with a
/// fresh `response_url`. With `team`, the click claims to come from that workspace.
pub fn block_actions(
    fake: &FakeSlack,
    user: &str,
    ts: &str,
    action_id: &str,
    team: Option<&str>,
) -> Value {
    let message = fake
        .messages()
        .into_iter()
        .find(|m| m.ts == ts && !m.deleted)
        .expect("a message");
    let (_, value) = message
        .buttons()
        .into_iter()
        .find(|(id, _)| id == action_id)
        .unwrap_or_else(|| panic!("no button {action_id} on {ts}: {:?}", message.blocks));
    let trigger = fake.next_ts();
    let team = team.unwrap_or(TEAM);
    let button = message
        .blocks
        .iter()
        .flat_map(|block| block["elements"].as_array().cloned().unwrap_or_default())
        .find(|element| element["action_id"] == action_id)
        .unwrap();
    json!({
        "type": "block_actions",
        "user": {"id": user, "username": user.to_lowercase(), "name": user.to_lowercase(), "team_id": team},
        "api_app_id": "A0ENGRAM",
        "token": "unused",
        "container": {
            "type": "message", "message_ts": ts, "channel_id": message.channel,
            "is_ephemeral": false, "thread_ts": message.thread_ts,
        },
        "trigger_id": format!("trigger-{trigger}"),
        "team": {"id": team, "domain": "engram"},
        "enterprise": null,
        "is_enterprise_install": false,
        "channel": {"id": message.channel, "name": "general"},
        "message": {
            "type": "message", "user": BOT, "ts": ts, "bot_id": "B0BOT", "app_id": "A0ENGRAM",
            "text": message.text(), "team": TEAM, "blocks": message.blocks,
            "thread_ts": message.thread_ts,
        },
        "state": {"values": {}},
        "response_url": fake.response_url(&trigger),
        "actions": [{
            "action_id": action_id,
            "block_id": "votes",
            "text": button["text"],
            "value": value,
            "type": "button",
            "action_ts": format!("{trigger}.5"),
        }],
    })
}

async fn file(
    State(shared): State<Shared>,
    Path(name): Path<String>,
    headers: HeaderMap,
) -> Response {
    let authorized = headers.get("authorization").and_then(|v| v.to_str().ok())
        == Some(&format!("Bearer {BOT_TOKEN}"));
    if !authorized {
        return StatusCode::FORBIDDEN.into_response();
    }
    match shared.inner.lock().unwrap().files.get(&name) {
        Some(bytes) => bytes.clone().into_response(),
        None => StatusCode::NOT_FOUND.into_response(),
    }
}

async fn respond(State(shared): State<Shared>, body: Bytes) -> Response {
    let value: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    shared.inner.lock().unwrap().responses.push(value);
    Json(json!({"ok": true})).into_response()
}

/// One Socket Mode connection: `hello`, then envelopes; acks are recorded.
async fn socket(stream: tokio::net::TcpStream, shared: Shared) {
    let Ok(ws) = tokio_tungstenite::accept_async(stream).await else {
        return;
    };
    let (mut write, mut read) = ws.split();
    let (sender, mut outgoing) = mpsc::unbounded_channel::<String>();
    let hello = json!({
        "type": "hello", "num_connections": 1,
        "debug_info": {"host": "fake-slack"}, "connection_info": {"app_id": "A0ENGRAM"},
    });
    if write
        .send(tokio_tungstenite::tungstenite::Message::Text(
            hello.to_string(),
        ))
        .await
        .is_err()
    {
        return;
    }
    shared.inner.lock().unwrap().sockets.push(sender);
    loop {
        tokio::select! {
            Some(text) = outgoing.recv() => {
                if write.send(tokio_tungstenite::tungstenite::Message::Text(text)).await.is_err() {
                    return;
                }
            }
            frame = read.next() => match frame {
                Some(Ok(tokio_tungstenite::tungstenite::Message::Text(text))) => {
                    if let Ok(ack) = serde_json::from_str::<Value>(&text) {
                        if let Some(id) = ack["envelope_id"].as_str() {
                            shared.inner.lock().unwrap().acks.push(id.to_string());
                        }
                    }
                }
                Some(Ok(tokio_tungstenite::tungstenite::Message::Ping(data))) => {
                    let _ = write.send(tokio_tungstenite::tungstenite::Message::Pong(data)).await;
                }
                Some(Ok(_)) => {}
                _ => return,
            }
        }
    }
}
