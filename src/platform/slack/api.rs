//! Slack's Web API as engram's `ChatPlatform`, through slack-morphism's client pointed at
//! `slack.api_url` for every call: messages in threads (`chat.postMessage` / `chat.update`,
//! text in a section block so a part never passes the block's 3,000 characters), reactions,
//! `url_private` downloads with the bot token, and the per-workspace tier budgets every call
//! takes from and every 429 pushes back. Native streaming lives in `stream`.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use slack_morphism::errors::SlackClientError;
use slack_morphism::prelude::*;
use tokio::sync::watch;

use super::budget::{Budgets, Tier};
use crate::chat::feedback::{AnswerId, VoteButton};
use crate::chat::streamer::StreamOptions;
use crate::chat::{ChannelKey, ChatPlatform, MessageRef, PlatformError};
use crate::config::{Secret, SlackConfig};
use crate::render::{neutralise_mass_mentions, Limits};

/// The HTTP connector: https, or plain http where `slack.api_url` names a local server.
pub type Connector = SlackClientHyperConnector<HttpsConnector<HttpConnector>>;
pub type Client = SlackClient<Connector>;

const REQUEST_TIMEOUT: Duration = Duration::from_secs(15);
const DOWNLOAD_TIMEOUT: Duration = Duration::from_secs(120);
/// Tries of a write that Slack rate-limits, before the caller is told.
const RATE_LIMIT_TRIES: u32 = 4;

/// slack-morphism's client for `slack.api_url` (which it uses for every Web API call).
pub fn client(api_url: &str) -> Result<Client, PlatformError> {
    // Socket Mode's WebSocket client takes the process's default provider.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let https = hyper_rustls::HttpsConnectorBuilder::new()
        .with_provider_and_native_roots(rustls::crypto::ring::default_provider())
        .map_err(|error| PlatformError::Other(format!("no TLS root certificates: {error}")))?
        .https_or_http()
        .enable_http1()
        .build();
    let connector = SlackClientHyperConnector::with_connector(https)
        .with_slack_api_url(api_url.trim_end_matches('/'));
    Ok(SlackClient::new(connector))
}

/// `slack:<team>:<channel>`.
pub fn channel_key(team: &str, channel: &str) -> ChannelKey {
    ChannelKey(format!("slack:{team}:{channel}"))
}

/// The team and channel of a `slack:<team>:<channel>` key.
pub fn team_and_channel(channel: &ChannelKey) -> Result<(&str, &str), PlatformError> {
    let valid = |id: &str| !id.is_empty() && id.bytes().all(|b| b.is_ascii_alphanumeric());
    channel
        .0
        .strip_prefix("slack:")
        .and_then(|rest| rest.split_once(':'))
        .filter(|(team, channel)| valid(team) && valid(channel))
        .ok_or_else(|| PlatformError::Other(format!("`{channel}` is not a Slack channel")))
}

/// A message's id: its `ts`, with `/<thread ts>` when it is a reply in a thread.
pub fn message_id(ts: &str, thread: Option<&str>) -> String {
    match thread {
        Some(thread) if thread != ts => format!("{ts}/{thread}"),
        _ => ts.to_string(),
    }
}

/// The `ts` of a message, and the thread it is in (its own `ts` when it starts one).
pub fn ts_and_thread(message: &MessageRef) -> (&str, &str) {
    match message.id.split_once('/') {
        Some((ts, thread)) => (ts, thread),
        None => (&message.id, &message.id),
    }
}

/// Slack's name of an emoji engram reacts with.
fn reaction_name(emoji: &str) -> &str {
    match emoji {
        "⏳" => "hourglass_flowing_sand",
        "✅" => "white_check_mark",
        "❌" => "x",
        other => other.trim_matches(':'),
    }
}

/// Slack's Web API with the bot token.
pub struct SlackApi {
    pub(super) client: Client,
    pub(super) token: SlackApiToken,
    pub(super) budgets: Budgets,
    /// Workspaces where `chat.startStream` failed: answers there are edited instead.
    pub(super) no_streaming: Mutex<HashSet<String>>,
    api_host: Option<String>,
    downloads: reqwest::Client,
    bot_token: Secret,
    /// Who the bot is and where its workspace lives, once asked (`auth.test`).
    identity: tokio::sync::OnceCell<Identity>,
    /// People's names by user id (`users.info`, asked once per person).
    names: Mutex<std::collections::HashMap<String, String>>,
}

/// The bot's own user id and its workspace's URL (`https://<team>.slack.com/`), for knowing its
/// own messages and writing permalinks.
#[derive(Debug, Clone)]
pub struct Identity {
    pub bot_user: String,
    pub team_url: String,
}

/// People's names remembered at most (then forgotten all at once and asked again).
const REMEMBERED_NAMES: usize = 10_000;

impl std::fmt::Debug for SlackApi {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SlackApi").finish_non_exhaustive()
    }
}

impl SlackApi {
    pub fn new(config: &SlackConfig) -> Result<Self, PlatformError> {
        let downloads = crate::platform::http_client(DOWNLOAD_TIMEOUT)?;
        Ok(Self {
            client: client(&config.api_url)?,
            token: SlackApiToken::new(config.bot_token.expose().to_string().into()),
            budgets: Budgets::default(),
            no_streaming: Mutex::new(HashSet::new()),
            api_host: host_of(&config.api_url),
            downloads,
            bot_token: config.bot_token.clone(),
            identity: tokio::sync::OnceCell::new(),
            names: Mutex::default(),
        })
    }

    pub(super) fn session(&self) -> SlackClientSession<'_, Connector> {
        self.client.open_session(&self.token)
    }

    /// Runs one Web API call within its budget; a 429 pushes the budget back and the call is
    /// tried again, up to `RATE_LIMIT_TRIES` times.
    pub(super) async fn call<T, F, Fut>(
        &self,
        tier: Tier,
        team: &str,
        channel: &str,
        call: F,
    ) -> Result<T, PlatformError>
    where
        F: Fn() -> Fut,
        Fut: std::future::Future<Output = ClientResult<T>>,
    {
        let (budget, key) = self.budgets.of(tier, team, channel);
        let mut tries = 0;
        loop {
            tries += 1;
            budget.acquire(&key).await;
            let result = match tokio::time::timeout(REQUEST_TIMEOUT, call()).await {
                Ok(result) => result.map_err(platform_error),
                Err(_) => Err(PlatformError::Other("Slack did not answer in time".into())),
            };
            match result {
                Err(PlatformError::RateLimited { retry_after }) => {
                    budget.push_back(&key, retry_after);
                    if tries >= RATE_LIMIT_TRIES {
                        tracing::warn!(
                            ?retry_after,
                            ?tier,
                            tries,
                            "Slack: still rate limited; giving up on this call"
                        );
                        return Err(PlatformError::RateLimited { retry_after });
                    }
                    tracing::info!(
                        ?retry_after,
                        ?tier,
                        "Slack: rate limited; waiting as Slack asks, then calling again"
                    );
                }
                other => return other,
            }
        }
    }

    /// Who the bot is: (bot user id, team id).
    pub async fn whoami(&self) -> Result<(String, String), PlatformError> {
        let session = self.session();
        let response = tokio::time::timeout(REQUEST_TIMEOUT, session.auth_test())
            .await
            .map_err(|_| PlatformError::Other("Slack did not answer in time".into()))?
            .map_err(platform_error)?;
        Ok((response.user_id.0, response.team_id.0))
    }

    /// Who the bot is and its workspace's URL (`auth.test`, asked once).
    pub async fn identity(&self) -> Result<Identity, PlatformError> {
        self.identity
            .get_or_try_init(|| async {
                let session = self.session();
                let response = tokio::time::timeout(REQUEST_TIMEOUT, session.auth_test())
                    .await
                    .map_err(|_| PlatformError::Other("Slack did not answer in time".into()))?
                    .map_err(platform_error)?;
                Ok(Identity {
                    bot_user: response.user_id.0,
                    team_url: response.url.0.to_string(),
                })
            })
            .await
            .cloned()
    }

    /// The name people know a user by, asked of Slack once per person; the user id when Slack
    /// cannot say.
    pub async fn known_name(&self, team: &str, user: &str) -> String {
        if let Some(name) = self
            .names
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(user)
        {
            return name.clone();
        }
        match self.user_name(team, user).await {
            Ok(name) => {
                let mut names = self.names.lock().unwrap_or_else(|p| p.into_inner());
                if names.len() >= REMEMBERED_NAMES {
                    names.clear();
                }
                names.insert(user.to_string(), name.clone());
                name
            }
            Err(error) => {
                tracing::debug!(%error, "Slack: cannot look up a user's name");
                user.to_string()
            }
        }
    }

    /// The name people know a user by (`users.info`: display name, real name, or handle).
    pub async fn user_name(&self, team: &str, user: &str) -> Result<String, PlatformError> {
        let request = SlackApiUsersInfoRequest::new(user.to_string().into());
        let session = self.session();
        let response = self
            .call(Tier::Four, team, "", || session.users_info(&request))
            .await?;
        let user = response.user;
        let profile = user.profile.as_ref();
        let name = [
            profile.and_then(|p| p.display_name.clone()),
            profile.and_then(|p| p.real_name.clone()),
            user.real_name.clone(),
            user.name.clone(),
        ]
        .into_iter()
        .flatten()
        .find(|name| !name.trim().is_empty())
        .unwrap_or(user.id.0);
        Ok(name)
    }

    /// Is the user a workspace admin or owner (`users.info`)?
    pub async fn is_admin(&self, team: &str, user: &str) -> Result<bool, PlatformError> {
        let request = SlackApiUsersInfoRequest::new(user.to_string().into());
        let session = self.session();
        let response = self
            .call(Tier::Four, team, "", || session.users_info(&request))
            .await?;
        let flags = &response.user.flags;
        Ok([flags.is_admin, flags.is_owner, flags.is_primary_owner].contains(&Some(true)))
    }

    /// Posts `text` in `channel`, in `thread` when given; returns the message.
    pub async fn post_in(
        &self,
        channel: &ChannelKey,
        text: &str,
        thread: Option<&str>,
    ) -> Result<MessageRef, PlatformError> {
        let (team, channel_id) = team_and_channel(channel)?;
        let mut request =
            SlackApiChatPostMessageRequest::new(channel_id.to_string().into(), content(text))
                .with_unfurl_links(false)
                .with_unfurl_media(false);
        if let Some(thread) = thread {
            request = request.with_thread_ts(thread.to_string().into());
        }
        let session = self.session();
        let posted = self
            .call(Tier::PostMessage, team, channel_id, || {
                session.chat_post_message(&request)
            })
            .await?;
        Ok(MessageRef {
            channel: channel.clone(),
            id: message_id(&posted.ts.0, thread),
        })
    }

    /// Shows `text` to `user` alone in `channel` (in `thread` when given):
    /// `chat.postEphemeral`.
    pub async fn post_ephemeral(
        &self,
        channel: &ChannelKey,
        user: &str,
        text: &str,
        thread: Option<&str>,
    ) -> Result<(), PlatformError> {
        let (team, channel_id) = team_and_channel(channel)?;
        let mut request = SlackApiChatPostEphemeralRequest::new(
            channel_id.to_string().into(),
            user.to_string().into(),
            content(text),
        );
        if let Some(thread) = thread {
            request = request.with_thread_ts(thread.to_string().into());
        }
        let session = self.session();
        self.call(Tier::Four, team, channel_id, || {
            session.chat_post_ephemeral(&request)
        })
        .await
        .map(drop)
    }

    /// Deletes a message the bot posted.
    pub async fn delete(&self, message: &MessageRef) -> Result<(), PlatformError> {
        let (team, channel) = team_and_channel(&message.channel)?;
        let (ts, _) = ts_and_thread(message);
        let request =
            SlackApiChatDeleteRequest::new(channel.to_string().into(), ts.to_string().into());
        let session = self.session();
        self.call(Tier::Three, team, channel, || session.chat_delete(&request))
            .await
            .map(drop)
    }

    /// Replies privately through a slash command's `response_url` (not the Web API, so no
    /// tier budget; a 429 is still waited out and the reply sent again).
    pub async fn respond(
        &self,
        response_url: &SlackResponseUrl,
        text: &str,
    ) -> Result<(), PlatformError> {
        let request = SlackApiPostWebhookMessageRequest::new(
            SlackMessageContent::new().with_text(text.to_string()),
        );
        let mut tries = 0;
        loop {
            tries += 1;
            let result = tokio::time::timeout(
                REQUEST_TIMEOUT,
                self.client.respond_to_event(response_url, &request),
            )
            .await
            .map_err(|_| PlatformError::Other("Slack did not answer in time".into()))?
            .map(drop)
            .map_err(platform_error);
            match result {
                Err(PlatformError::RateLimited { retry_after }) if tries < RATE_LIMIT_TRIES => {
                    tracing::info!(
                        ?retry_after,
                        "Slack: a command's reply was rate limited; waiting"
                    );
                    tokio::time::sleep(retry_after).await;
                }
                other => return other,
            }
        }
    }

    /// Is `url` Slack's (or `slack.api_url`'s host), so the bot token may go with it?
    fn trusted(&self, url: &str) -> bool {
        let Some(host) = host_of(url) else {
            return false;
        };
        let host = host
            .split(':')
            .next()
            .unwrap_or_default()
            .to_ascii_lowercase();
        let slack = ["slack.com", "slack-gov.com"]
            .iter()
            .any(|domain| host == *domain || host.ends_with(&format!(".{domain}")));
        slack || self.api_host.as_deref() == Some(host_of(url).unwrap_or_default().as_str())
    }
}

/// `host[:port]` of an http(s) URL.
fn host_of(url: &str) -> Option<String> {
    let rest = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"))?;
    let authority = rest.split(['/', '?', '#']).next()?;
    let authority = authority.rsplit('@').next()?;
    (!authority.is_empty()).then(|| authority.to_ascii_lowercase())
}

/// A message's content: the text in a section block (≤ 3,000 characters, the renderer's
/// Slack limit) and as the notification text, unable to ping a channel whatever it quotes.
fn content(text: &str) -> SlackMessageContent {
    let text = &neutralise_mass_mentions(text);
    let section = SlackSectionBlock::new().with_text(SlackBlockText::MarkDown(
        SlackBlockMarkDownText::new(text.to_string()),
    ));
    SlackMessageContent::new()
        .with_text(text.to_string())
        .with_blocks(vec![section.into()])
}

/// The 👍/👎 buttons under an answer: an `actions` block of two buttons whose `action_id`
/// names the vote and whose `value` is the answer.
pub(super) fn vote_buttons(answer: i64) -> SlackBlock {
    let buttons = VoteButton::BOTH
        .into_iter()
        .map(|vote| {
            SlackActionBlockElement::Button(
                SlackBlockButtonElement::new(SlackBlockPlainTextOnly::from(vote.emoji()))
                    .with_action_id(VoteButton::action_id(vote).into())
                    .with_value(answer.to_string()),
            )
        })
        .collect();
    SlackActionsBlock::new(buttons).into()
}

/// What engram acts on in a Web API error. Only Slack's error code is kept: never a token.
pub(super) fn platform_error(error: SlackClientError) -> PlatformError {
    match error {
        SlackClientError::RateLimitError(limited) => PlatformError::RateLimited {
            retry_after: limited.retry_after.unwrap_or(Duration::from_secs(1)),
        },
        SlackClientError::ApiError(api) => match api.code.as_str() {
            "channel_not_found"
            | "message_not_found"
            | "thread_not_found"
            | "not_in_channel"
            | "is_archived"
            | "cant_update_message"
            | "invalid_auth"
            | "not_authed"
            | "account_inactive"
            | "token_revoked"
            | "missing_scope"
            | "restricted_action" => PlatformError::Gone(format!("Slack answered `{}`", api.code)),
            code => PlatformError::Other(format!("Slack answered `{code}`")),
        },
        SlackClientError::HttpError(http) => {
            PlatformError::Other(format!("Slack answered HTTP {}", http.status_code))
        }
        other => PlatformError::Other(format!("Slack is unreachable: {}", short(&other))),
    }
}

/// An error's kind, without bodies or URLs.
fn short(error: &SlackClientError) -> &'static str {
    match error {
        SlackClientError::HttpProtocolError(_) => "HTTP protocol error",
        SlackClientError::EndOfStream(_) => "connection closed",
        SlackClientError::SystemError(_) => "system error",
        SlackClientError::ProtocolError(_) => "unexpected response",
        SlackClientError::SocketModeProtocolError(_) => "Socket Mode protocol error",
        _ => "error",
    }
}

/// The Slack error code of a failed call, if Slack gave one.
pub(super) fn error_code(error: &SlackClientError) -> Option<&str> {
    match error {
        SlackClientError::ApiError(api) => Some(api.code.as_str()),
        _ => None,
    }
}

#[async_trait]
impl ChatPlatform for SlackApi {
    fn limits(&self) -> Limits {
        Limits::SLACK
    }

    async fn post(
        &self,
        channel: &ChannelKey,
        text: &str,
        reply_to: Option<&MessageRef>,
    ) -> Result<MessageRef, PlatformError> {
        // A reply goes in the thread of the message it answers (Slack threads are one level).
        let thread = reply_to.map(|message| ts_and_thread(message).1.to_string());
        self.post_in(channel, text, thread.as_deref()).await
    }

    async fn edit(&self, message: &MessageRef, text: &str) -> Result<(), PlatformError> {
        let (team, channel) = team_and_channel(&message.channel)?;
        let (ts, _) = ts_and_thread(message);
        let request = SlackApiChatUpdateRequest::new(
            channel.to_string().into(),
            content(text),
            ts.to_string().into(),
        );
        let session = self.session();
        self.call(Tier::Three, team, channel, || session.chat_update(&request))
            .await
            .map(drop)
    }

    async fn edit_with_votes(
        &self,
        message: &MessageRef,
        text: &str,
        answer: i64,
    ) -> Result<(), PlatformError> {
        let (team, channel) = team_and_channel(&message.channel)?;
        let (ts, _) = ts_and_thread(message);
        let mut content = content(text);
        if let Some(blocks) = content.blocks.as_mut() {
            blocks.push(vote_buttons(answer));
        }
        let request = SlackApiChatUpdateRequest::new(
            channel.to_string().into(),
            content,
            ts.to_string().into(),
        );
        let session = self.session();
        self.call(Tier::Three, team, channel, || session.chat_update(&request))
            .await
            .map(drop)
    }

    async fn react(&self, message: &MessageRef, emoji: &str) -> Result<(), PlatformError> {
        let (team, channel) = team_and_channel(&message.channel)?;
        let (ts, _) = ts_and_thread(message);
        let request = SlackApiReactionsAddRequest::new(
            channel.to_string().into(),
            reaction_name(emoji).to_string().into(),
            ts.to_string().into(),
        );
        let session = self.session();
        match self
            .call(Tier::Three, team, channel, || {
                session.reactions_add(&request)
            })
            .await
        {
            Err(PlatformError::Other(reason)) if reason.contains("already_reacted") => Ok(()),
            other => other.map(drop),
        }
    }

    async fn unreact(&self, message: &MessageRef, emoji: &str) -> Result<(), PlatformError> {
        let (team, channel) = team_and_channel(&message.channel)?;
        let (ts, _) = ts_and_thread(message);
        let request = SlackApiReactionsRemoveRequest::new(reaction_name(emoji).to_string().into())
            .with_channel(channel.to_string().into())
            .with_timestamp(ts.to_string().into());
        let session = self.session();
        match self
            .call(Tier::Three, team, channel, || {
                session.reactions_remove(&request)
            })
            .await
        {
            Err(PlatformError::Other(reason)) if reason.contains("no_reaction") => Ok(()),
            other => other.map(drop),
        }
    }

    async fn history(
        &self,
        _tenant: &crate::brain::TenantKey,
        channel: &ChannelKey,
        source: &crate::chat::history::HistorySource,
        cursor: Option<&str>,
        since_ms: i64,
    ) -> Result<crate::chat::history::PastPage, PlatformError> {
        self.history_page(channel, source, cursor, since_ms).await
    }

    async fn download(&self, url: &str, max_bytes: u64) -> Result<Vec<u8>, PlatformError> {
        if !self.trusted(url) {
            return Err(PlatformError::Other(
                "the file's link is not on Slack; it was not downloaded".into(),
            ));
        }
        let request = self.downloads.get(url).header(
            "Authorization",
            format!("Bearer {}", self.bot_token.expose()),
        );
        crate::platform::download_capped(
            request,
            max_bytes,
            "does the app have the files:read scope?",
        )
        .await
    }

    async fn stream_natively(
        &self,
        placeholder: &MessageRef,
        asker: &str,
        text: &mut watch::Receiver<String>,
        options: StreamOptions,
        answer: &AnswerId,
    ) -> Option<Result<Vec<MessageRef>, PlatformError>> {
        super::stream::stream(self, placeholder, asker, text, options, answer).await
    }
}

/// A shareable handle (the outlet and the adapter hold the same budgets).
pub type Shared = Arc<SlackApi>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_and_ids_round_trip() {
        let key = channel_key("T1", "C2");
        assert_eq!(team_and_channel(&key).unwrap(), ("T1", "C2"));
        assert!(team_and_channel(&ChannelKey("discord:1".into())).is_err());
        assert!(team_and_channel(&ChannelKey("slack:T1:../x".into())).is_err());
        let reply = MessageRef {
            channel: key.clone(),
            id: message_id("2.0", Some("1.0")),
        };
        assert_eq!(ts_and_thread(&reply), ("2.0", "1.0"));
        let root = MessageRef {
            channel: key,
            id: message_id("1.0", Some("1.0")),
        };
        assert_eq!(ts_and_thread(&root), ("1.0", "1.0"));
    }

    #[test]
    fn the_bot_token_goes_only_to_slack() {
        let config = SlackConfig {
            bot_token: Secret::new("xoxb-test"),
            app_token: Secret::default(),
            signing_secret: Secret::default(),
            mode: crate::config::SlackMode::Http,
            api_url: "http://127.0.0.1:9/api".into(),
            admins: Vec::new(),
        };
        let api = SlackApi::new(&config).unwrap();
        assert!(api.trusted("https://files.slack.com/files-pri/T1-F1/a.pdf"));
        assert!(api.trusted("http://127.0.0.1:9/files/a.pdf"));
        assert!(!api.trusted("https://evil.example/slack.com/a.pdf"));
        assert!(!api.trusted("https://notslack.com/a.pdf"));
    }
}
