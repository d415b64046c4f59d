//! Discord's REST API for everything engram writes — messages, placeholders, edits,
//! reactions, the typing indicator, interaction responses, slash-command registration — and
//! file downloads, as engram's `ChatPlatform`. engram makes these calls itself (not through
//! serenity's `Http`), all through one path ([`DiscordRest::call`]) that waits for the route's
//! bucket and the global limit ([`super::ratelimit`]), waits out a 429 as Discord says and
//! sends again; the typing indicator is skipped rather than delayed. Every message sets
//! `allowed_mentions` to parse nothing, so bot output never pings.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use super::ratelimit::{Answered, Limiter, Route, Ticket};
use crate::chat::budget::RateBudget;
use crate::chat::feedback::VoteButton;
use crate::chat::{ChannelKey, ChatPlatform, MessageRef, PlatformError};
use crate::config::Secret;
use crate::render::Limits;

/// Discord's API version.
const API: &str = "/api/v10";
const REQUEST_TIMEOUT: Duration = Duration::from_secs(15);
const DOWNLOAD_TIMEOUT: Duration = Duration::from_secs(120);
/// How many times a request is sent while Discord answers 429 (each time after waiting as it
/// asks) before giving up.
const RATE_LIMITED_TRIES: u32 = 6;

/// `discord:<channel id>` ↔ the channel id.
pub fn channel_key(channel_id: u64) -> ChannelKey {
    ChannelKey(format!("discord:{channel_id}"))
}

fn channel_id(channel: &ChannelKey) -> Result<&str, PlatformError> {
    channel
        .0
        .strip_prefix("discord:")
        .filter(|id| !id.is_empty() && id.bytes().all(|b| b.is_ascii_digit()))
        .ok_or_else(|| PlatformError::Other(format!("`{channel}` is not a Discord channel")))
}

/// Discord's REST API with the bot's token.
#[derive(Clone)]
pub struct DiscordRest {
    client: reqwest::Client,
    /// `https://discord.com`, or `discord.proxy_url`.
    base: String,
    token: Secret,
    budget: Arc<RateBudget>,
    /// The token's rate limits, shared by every clone.
    limiter: Arc<Limiter>,
    /// The bot's own user id, once asked (`GET /users/@me`).
    bot: Arc<tokio::sync::OnceCell<u64>>,
}

impl std::fmt::Debug for DiscordRest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DiscordRest")
            .field("base", &self.base)
            .finish_non_exhaustive()
    }
}

impl DiscordRest {
    pub fn new(base: &str, token: Secret, budget: Arc<RateBudget>) -> Result<Self, PlatformError> {
        let client = crate::platform::http_client(REQUEST_TIMEOUT)?;
        Ok(Self {
            client,
            base: base.trim_end_matches('/').to_string(),
            token,
            budget,
            limiter: Limiter::new(),
            bot: Arc::default(),
        })
    }

    /// Shows "engram is typing…" in a channel for a few seconds, when its bucket allows it
    /// now (a typing indicator sent late is worth nothing).
    pub async fn typing(&self, channel: &ChannelKey) -> Result<(), PlatformError> {
        let id = channel_id(channel)?;
        self.call_if_free(Method::POST, &format!("/channels/{id}/typing"))
            .await
            .map(drop)
    }

    /// The channel a thread belongs to (`GET /channels/{id}`); `None` when `channel_id` is not
    /// a thread.
    pub async fn thread_parent(&self, channel_id: u64) -> Result<Option<u64>, PlatformError> {
        let channel = self
            .call(Method::GET, &format!("/channels/{channel_id}"), None, None)
            .await?
            .unwrap_or(Value::Null);
        Ok(thread_parent(&channel))
    }

    /// Answers an interaction (`POST /interactions/{id}/{token}/callback`): a message, or
    /// "thinking…" for a reply edited in later.
    pub async fn respond_to_interaction(
        &self,
        id: u64,
        token: &str,
        response: Value,
    ) -> Result<(), PlatformError> {
        let path = format!("/interactions/{id}/{token}/callback");
        self.call(Method::POST, &path, None, Some(response))
            .await
            .map(drop)
    }

    /// Replaces an interaction's first response (`PATCH
    /// /webhooks/{application}/{token}/messages/@original`).
    pub async fn edit_interaction_response(
        &self,
        application_id: u64,
        token: &str,
        text: &str,
    ) -> Result<(), PlatformError> {
        let path = format!("/webhooks/{application_id}/{token}/messages/@original");
        let body = json!({"content": text, "allowed_mentions": {"parse": []}});
        self.call(Method::PATCH, &path, None, Some(body))
            .await
            .map(drop)
    }

    /// Registers the application's global slash commands (`PUT
    /// /applications/{id}/commands`), replacing the ones registered before.
    pub async fn register_commands(
        &self,
        application_id: u64,
        commands: Value,
    ) -> Result<(), PlatformError> {
        let path = format!("/applications/{application_id}/commands");
        self.call(Method::PUT, &path, None, Some(commands))
            .await
            .map(drop)
    }

    /// The bot's own user id (`GET /users/@me`, asked once).
    pub async fn bot_id(&self) -> Result<u64, PlatformError> {
        self.bot
            .get_or_try_init(|| async {
                let me = self
                    .call(Method::GET, "/users/@me", None, None)
                    .await?
                    .unwrap_or(Value::Null);
                me["id"]
                    .as_str()
                    .and_then(|id| id.parse().ok())
                    .ok_or_else(|| {
                        PlatformError::Other("Discord did not say who the bot is".into())
                    })
            })
            .await
            .copied()
    }

    /// The per-channel budget this client's responses feed.
    pub fn budget(&self) -> Arc<RateBudget> {
        self.budget.clone()
    }

    /// Sends one request through the rate limits: it waits for its bucket and the global
    /// limit, and a 429 is waited out as Discord says and the request sent again (up to
    /// `RATE_LIMITED_TRIES` times, each wait logged). The headers also feed the channel's
    /// `RateBudget`, which paces answers' edits.
    pub(super) async fn call(
        &self,
        method: Method,
        path: &str,
        channel: Option<&ChannelKey>,
        body: Option<Value>,
    ) -> Result<Option<Value>, PlatformError> {
        let route = Route::of(method.as_str(), path);
        let mut tries = 0;
        loop {
            tries += 1;
            let ticket = self.limiter.acquire(&route).await;
            match self
                .send(ticket, method.clone(), path, channel, body.as_ref())
                .await
            {
                Err(PlatformError::RateLimited { retry_after }) if tries < RATE_LIMITED_TRIES => {
                    tracing::info!(
                        route = %route.shape,
                        ?retry_after,
                        tries,
                        "Discord: rate limited; waiting as Discord asks, then sending again"
                    );
                }
                Err(PlatformError::RateLimited { retry_after }) => {
                    tracing::warn!(
                        route = %route.shape,
                        ?retry_after,
                        tries,
                        "Discord: still rate limited; giving up on this request"
                    );
                    return Err(PlatformError::RateLimited { retry_after });
                }
                other => {
                    if tries > 1 {
                        tracing::info!(route = %route.shape, tries, "Discord: sent after waiting out a 429");
                    }
                    return other;
                }
            }
        }
    }

    /// Sends a request that is only worth sending now (the typing indicator): skipped, with
    /// `Ok(None)`, when its bucket or the global limit would make it wait; never retried.
    async fn call_if_free(
        &self,
        method: Method,
        path: &str,
    ) -> Result<Option<Value>, PlatformError> {
        let route = Route::of(method.as_str(), path);
        match self.limiter.try_acquire(&route).await {
            Some(ticket) => self.send(ticket, method, path, None, None).await,
            None => Ok(None),
        }
    }

    /// Sends one request in `ticket`'s turn and settles the turn with the answer's headers.
    async fn send(
        &self,
        ticket: Ticket,
        method: Method,
        path: &str,
        channel: Option<&ChannelKey>,
        body: Option<&Value>,
    ) -> Result<Option<Value>, PlatformError> {
        let mut request = self
            .client
            .request(method, format!("{}{API}{path}", self.base))
            .header("Authorization", format!("Bot {}", self.token.expose()))
            .header("User-Agent", "DiscordBot (https://github.com/engram, 0.1)");
        if let Some(body) = body {
            request = request
                .header("Content-Type", "application/json")
                .body(body.to_string());
        }
        let response = match request.send().await {
            Ok(response) => response,
            Err(error) => {
                self.limiter.settle(ticket, &Answered::default());
                return Err(PlatformError::Other(format!(
                    "Discord is unreachable: {}",
                    error.without_url()
                )));
            }
        };
        let status = response.status();
        let headers = response.headers().clone();
        let header = |name: &str| {
            headers
                .get(name)
                .and_then(|value| value.to_str().ok())
                .map(str::trim)
        };
        let number = |name: &str| header(name).and_then(|value| value.parse::<f64>().ok());
        let seconds = |value: f64| Duration::from_secs_f64(value.clamp(0.0, 3600.0));
        let mut answered = Answered {
            bucket: header("x-ratelimit-bucket").map(str::to_string),
            remaining: number("x-ratelimit-remaining").map(|n| n.max(0.0) as u32),
            reset_after: number("x-ratelimit-reset-after").map(seconds),
            retry_after: None,
            global: header("x-ratelimit-global").is_some_and(|v| v.eq_ignore_ascii_case("true"))
                || header("x-ratelimit-scope") == Some("global"),
        };
        if let (Some(channel), Some(remaining), Some(reset_after)) =
            (channel, answered.remaining, answered.reset_after)
        {
            self.budget.observe(channel, remaining, reset_after);
        }
        let text = response.text().await.unwrap_or_default();
        if status == StatusCode::TOO_MANY_REQUESTS {
            let body: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
            let retry_after = seconds(
                body["retry_after"]
                    .as_f64()
                    .or_else(|| number("retry-after"))
                    .unwrap_or(1.0),
            );
            answered.retry_after = Some(retry_after);
            answered.global |= body["global"].as_bool() == Some(true);
            self.limiter.settle(ticket, &answered);
            return Err(PlatformError::RateLimited { retry_after });
        }
        self.limiter.settle(ticket, &answered);
        if matches!(
            status,
            StatusCode::NOT_FOUND | StatusCode::FORBIDDEN | StatusCode::UNAUTHORIZED
        ) {
            return Err(PlatformError::Gone(format!(
                "Discord answered {status}: {}",
                discord_message(&text)
            )));
        }
        if !status.is_success() {
            return Err(PlatformError::Other(format!(
                "Discord answered {status}: {}",
                discord_message(&text)
            )));
        }
        Ok(serde_json::from_str(&text).ok())
    }
}

/// Discord's thread channel types: announcement, public and private threads.
const THREAD_TYPES: [u64; 3] = [10, 11, 12];

/// A channel object's parent when it is a thread (a text channel's `parent_id` is its
/// category, not a channel whose binding applies).
fn thread_parent(channel: &Value) -> Option<u64> {
    let kind = channel["type"].as_u64()?;
    if !THREAD_TYPES.contains(&kind) {
        return None;
    }
    channel["parent_id"].as_str()?.parse().ok()
}

/// The `message` of a Discord error body, or the body's start.
fn discord_message(body: &str) -> String {
    serde_json::from_str::<Value>(body)
        .ok()
        .and_then(|value| value["message"].as_str().map(str::to_string))
        .unwrap_or_else(|| body.chars().take(200).collect())
}

/// Emoji in a reaction path: percent-encoded UTF-8.
fn encode_emoji(emoji: &str) -> String {
    emoji.bytes().map(|byte| format!("%{byte:02X}")).collect()
}

#[async_trait]
impl ChatPlatform for DiscordRest {
    fn limits(&self) -> Limits {
        Limits::DISCORD
    }

    async fn post(
        &self,
        channel: &ChannelKey,
        text: &str,
        reply_to: Option<&MessageRef>,
    ) -> Result<MessageRef, PlatformError> {
        let id = channel_id(channel)?;
        let mut body = json!({"content": text, "allowed_mentions": {"parse": []}});
        if let Some(reply_to) = reply_to {
            body["message_reference"] =
                json!({"message_id": reply_to.id, "fail_if_not_exists": false});
            // The same reply to the same message is made once: Discord returns the message
            // already created with this nonce (within a few minutes) instead of a second one,
            // so a gateway taking over an event from one that died after posting, or a request
            // sent again after its answer was lost, does not post it twice.
            body["nonce"] = json!(reply_nonce(&reply_to.id, text));
            body["enforce_nonce"] = json!(true);
        }
        let created = self
            .call(
                Method::POST,
                &format!("/channels/{id}/messages"),
                Some(channel),
                Some(body),
            )
            .await?
            .unwrap_or(Value::Null);
        let message_id = created["id"]
            .as_str()
            .ok_or_else(|| PlatformError::Other("Discord returned no message id".into()))?;
        Ok(MessageRef {
            channel: channel.clone(),
            id: message_id.to_string(),
        })
    }

    async fn edit(&self, message: &MessageRef, text: &str) -> Result<(), PlatformError> {
        let id = channel_id(&message.channel)?;
        self.call(
            Method::PATCH,
            &format!("/channels/{id}/messages/{}", message.id),
            Some(&message.channel),
            Some(json!({"content": text, "allowed_mentions": {"parse": []}})),
        )
        .await
        .map(drop)
    }

    async fn edit_with_votes(
        &self,
        message: &MessageRef,
        text: &str,
        answer: i64,
    ) -> Result<(), PlatformError> {
        let id = channel_id(&message.channel)?;
        let body = json!({
            "content": text,
            "allowed_mentions": {"parse": []},
            "components": vote_buttons(answer),
        });
        self.call(
            Method::PATCH,
            &format!("/channels/{id}/messages/{}", message.id),
            Some(&message.channel),
            Some(body),
        )
        .await
        .map(drop)
    }

    async fn react(&self, message: &MessageRef, emoji: &str) -> Result<(), PlatformError> {
        let id = channel_id(&message.channel)?;
        let path = format!(
            "/channels/{id}/messages/{}/reactions/{}/@me",
            message.id,
            encode_emoji(emoji)
        );
        self.call(Method::PUT, &path, Some(&message.channel), None)
            .await
            .map(drop)
    }

    async fn unreact(&self, message: &MessageRef, emoji: &str) -> Result<(), PlatformError> {
        let id = channel_id(&message.channel)?;
        let path = format!(
            "/channels/{id}/messages/{}/reactions/{}/@me",
            message.id,
            encode_emoji(emoji)
        );
        self.call(Method::DELETE, &path, Some(&message.channel), None)
            .await
            .map(drop)
    }

    async fn history(
        &self,
        tenant: &crate::brain::TenantKey,
        channel: &ChannelKey,
        source: &crate::chat::history::HistorySource,
        cursor: Option<&str>,
        since_ms: i64,
    ) -> Result<crate::chat::history::PastPage, PlatformError> {
        self.history_page(tenant, channel, source, cursor, since_ms)
            .await
    }

    async fn download(&self, url: &str, max_bytes: u64) -> Result<Vec<u8>, PlatformError> {
        // Attachment links are public and signed; the bot token never goes to the CDN.
        let request = self.client.get(url).timeout(DOWNLOAD_TIMEOUT);
        crate::platform::download_capped(request, max_bytes, "links expire; post the file again")
            .await
    }
}

/// The 👍/👎 buttons under an answer: one action row (component type 1) of two grey buttons
/// (type 2, style 2) whose `custom_id`s name the vote and the answer.
fn vote_buttons(answer: i64) -> Value {
    let buttons: Vec<Value> = VoteButton::BOTH
        .into_iter()
        .map(|vote| {
            json!({
                "type": 2,
                "style": 2,
                "emoji": {"name": vote.emoji()},
                "custom_id": VoteButton { vote, answer }.custom_id(),
            })
        })
        .collect();
    json!([{"type": 1, "components": buttons}])
}

/// A reply's nonce: 16 hex digits (Discord allows 25 characters) of FNV-1a over the message
/// replied to and the text.
fn reply_nonce(reply_to: &str, text: &str) -> String {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in reply_to.bytes().chain([0]).chain(text.bytes()) {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    format!("{hash:016x}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn channel_keys_round_trip() {
        assert_eq!(channel_id(&channel_key(42)).unwrap(), "42");
        assert!(channel_id(&ChannelKey("slack:T1:C1".into())).is_err());
        assert!(channel_id(&ChannelKey("discord:../x".into())).is_err());
    }

    #[test]
    fn only_threads_have_a_parent_whose_binding_applies() {
        let thread = json!({"id": "5", "type": 11, "parent_id": "4"});
        let text = json!({"id": "4", "type": 0, "parent_id": "3"});
        assert_eq!(thread_parent(&thread), Some(4));
        assert_eq!(
            thread_parent(&text),
            None,
            "a category is no binding's channel"
        );
        assert_eq!(thread_parent(&Value::Null), None);
    }

    #[test]
    fn a_reply_nonce_is_the_same_for_the_same_reply_only() {
        let nonce = reply_nonce("123", "💭 Thinking…");
        assert_eq!(nonce.len(), 16);
        assert_eq!(nonce, reply_nonce("123", "💭 Thinking…"));
        assert_ne!(nonce, reply_nonce("124", "💭 Thinking…"));
        assert_ne!(nonce, reply_nonce("123", "📚 Learned a.md"));
        assert_ne!(reply_nonce("12", "3x"), reply_nonce("123", "x"));
    }

    #[test]
    fn emoji_are_percent_encoded() {
        assert_eq!(encode_emoji("✅"), "%E2%9C%85");
    }
}
