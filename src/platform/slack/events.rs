//! Slack events and slash commands → the gateway core, whichever transport brought them
//! (HTTP or Socket Mode): `app_mention`s (with the files shared with them) and replies in the
//! bot's threads become questions, files shared in a channel become `ChatEvent::Files`, `/ask`
//! and `/brain` become questions and `BrainCommand`s, 👍/👎 clicks become votes, and what
//! people say elsewhere (with edits and deletions) becomes `Said` / `Edited` / `Deleted` for conversation knowledge. The transports acknowledge first and hand the work here on a task.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex};

use slack_morphism::prelude::*;
use tokio::sync::OnceCell;

use super::api::{channel_key, message_id, SlackApi};
use super::PLATFORM;
use crate::brain::{BindingMode, BrainName, TenantKey};
use crate::chat::feedback::VoteButton;
use crate::chat::MessageRef;
use crate::gateway::{
    BrainCommand, ChatEvent, Gateway, GatewayError, Gone, Handled, Origin, PostedFile, Reply, Said,
};
use crate::store::conversations::UnitHint;

/// Threads remembered as the bot's (where a reply continues the conversation without a
/// mention); the oldest are forgotten first.
const REMEMBERED_THREADS: usize = 10_000;

/// The Slack side of the gateway, shared by both transports.
#[derive(Debug)]
pub struct Adapter {
    pub gateway: Gateway,
    pub api: Arc<SlackApi>,
    /// `slack.admins`: user ids that may manage brains besides workspace admins.
    pub admins: Vec<String>,
    /// The bot's own user id (`auth.test`), to strip its mention and skip its messages.
    bot: OnceCell<String>,
    threads: Mutex<Threads>,
    /// Which channels are restricted (private), as last recorded.
    restricted: Mutex<HashMap<String, bool>>,
}

#[derive(Debug, Default)]
struct Threads {
    known: HashSet<(String, String)>,
    order: VecDeque<(String, String)>,
}

impl Adapter {
    pub fn new(gateway: Gateway, api: Arc<SlackApi>, admins: Vec<String>) -> Self {
        Self {
            gateway,
            api,
            admins,
            bot: OnceCell::new(),
            threads: Mutex::new(Threads::default()),
            restricted: Mutex::default(),
        }
    }

    /// The bot's user id, asked of Slack once.
    async fn bot(&self) -> Option<&str> {
        self.bot
            .get_or_try_init(|| async { self.api.whoami().await.map(|(user, _)| user) })
            .await
            .map_err(|error| tracing::warn!(%error, "Slack: auth.test failed"))
            .ok()
            .map(String::as_str)
    }

    fn remember_thread(&self, channel: &str, thread: &str) {
        let mut threads = self.threads.lock().unwrap_or_else(|p| p.into_inner());
        let key = (channel.to_string(), thread.to_string());
        if threads.known.insert(key.clone()) {
            threads.order.push_back(key);
            if threads.order.len() > REMEMBERED_THREADS {
                if let Some(oldest) = threads.order.pop_front() {
                    threads.known.remove(&oldest);
                }
            }
        }
    }

    /// Whether engram has answered in `thread`: remembered here, or (after a restart, or on
    /// another gateway replica) known from the conversation's turns in the store.
    async fn is_bot_thread(&self, team: &str, channel: &str, thread: &str) -> bool {
        let remembered = {
            let threads = self.threads.lock().unwrap_or_else(|p| p.into_inner());
            threads
                .known
                .contains(&(channel.to_string(), thread.to_string()))
        };
        if remembered {
            return true;
        }
        let store = &self.gateway.store;
        let answered = match store.find_tenant(&tenant(team)).await {
            Ok(Some(tenant)) => store
                .recent_turns(tenant, &conversation_key(team, channel, thread), 1)
                .await
                .map(|turns| !turns.is_empty()),
            Ok(None) => Ok(false),
            Err(error) => Err(error),
        };
        match answered {
            Ok(true) => {
                self.remember_thread(channel, thread);
                true
            }
            Ok(false) => false,
            Err(error) => {
                tracing::warn!(%error, "Slack: cannot tell whether engram answered in a thread");
                false
            }
        }
    }

    /// One Events API event.
    pub async fn on_event(&self, callback: SlackPushEventCallback) {
        let team = callback.team_id.0.clone();
        if workspace(&team).is_none() {
            tracing::warn!("Slack: an event with a malformed team id was ignored");
            return;
        }
        let event_id = callback.event_id.0.clone();
        let bot = self.bot().await.map(str::to_string);
        match callback.event {
            SlackEventCallbackBody::AppMention(mention) => {
                let Some(text) = question_text(mention.content.text.as_deref(), bot.as_deref())
                else {
                    return;
                };
                let channel = mention.channel.0;
                let ts = mention.origin.ts.0;
                let thread = mention
                    .origin
                    .thread_ts
                    .map(|ts| ts.0)
                    .unwrap_or_else(|| ts.clone());
                // Files shared with the mention are read for its answer (the `file_share`
                // message of the same post learns them where the channel learns files).
                let attachments = posted_files(mention.content.files.unwrap_or_default());
                self.ask(
                    &team,
                    &channel,
                    &ts,
                    &thread,
                    &mention.user.0,
                    &event_id,
                    text,
                    attachments,
                )
                .await;
            }
            SlackEventCallbackBody::Message(message) => {
                self.on_message(&team, &event_id, bot.as_deref(), message)
                    .await;
            }
            SlackEventCallbackBody::ChannelDeleted(deleted) => {
                self.handle(ChatEvent::Deleted {
                    tenant: tenant(&team),
                    gone: Gone::Channel(channel_key(&team, &deleted.channel.0)),
                })
                .await;
            }
            _ => {}
        }
    }

    async fn on_message(
        &self,
        team: &str,
        event_id: &str,
        bot: Option<&str>,
        message: SlackMessageEvent,
    ) {
        // Edits and deletions carry no sender of their own.
        match message.subtype {
            Some(SlackMessageEventType::MessageChanged) => {
                return self.on_edit(team, message).await
            }
            Some(SlackMessageEventType::MessageDeleted) => {
                return self.on_delete(team, message).await
            }
            _ => {}
        }
        let Some(user) = message.sender.user.map(|user| user.0) else {
            return;
        };
        if message.sender.bot_id.is_some() || Some(user.as_str()) == bot {
            return;
        }
        if !matches!(
            message.subtype,
            None | Some(SlackMessageEventType::FileShare)
                | Some(SlackMessageEventType::ThreadBroadcast)
        ) {
            return; // Joins, topic changes…
        }
        let Some(channel) = message.origin.channel.map(|channel| channel.0) else {
            return;
        };
        if let Some(kind) = &message.origin.channel_type {
            self.follow_visibility(team, &channel, &kind.0).await;
        }
        let ts = message.origin.ts.0;
        let thread = message.origin.thread_ts.map(|ts| ts.0);
        let content = message.content.unwrap_or_else(SlackMessageContent::new);
        let files = posted_files(content.files.clone().unwrap_or_default());
        let files_empty = files.is_empty();
        if !files_empty {
            let origin = Origin {
                platform: PLATFORM.into(),
                event_id: format!("{event_id}:files"),
                tenant: tenant(team),
                channel: channel_key(team, &channel),
                parent: None,
                message: Some(MessageRef {
                    channel: channel_key(team, &channel),
                    id: message_id(&ts, thread.as_deref()),
                }),
                user: user.clone(),
            };
            self.handle(ChatEvent::Files { origin, files }).await;
        }
        // The words that come with files describe them: no question, but what people say.
        let with_files = !files_empty;
        // A reply in a thread the bot answered in continues the conversation; a message that
        // mentions the bot arrives as `app_mention` too, and is answered from there. Anything
        // else is what people say, learned where the channel learns messages.
        let text = content.text.unwrap_or_default();
        let mentions_bot = bot.is_some_and(|bot| text.contains(&format!("<@{bot}>")));
        if mentions_bot {
            return;
        }
        let reply_in = thread.as_deref().filter(|thread| *thread != ts);
        if let Some(thread) = reply_in.filter(|_| !with_files) {
            if self.is_bot_thread(team, &channel, thread).await {
                if let Some(text) = question_text(Some(&text), bot) {
                    self.ask(
                        team,
                        &channel,
                        &ts,
                        thread,
                        &user,
                        event_id,
                        text,
                        Vec::new(),
                    )
                    .await;
                }
                return;
            }
        }
        if text.trim().is_empty() {
            return;
        }
        let author = self.user_name(team, &user).await;
        let posted_at = ts_ms(&ts);
        let said = Said {
            key: message_key(&channel, &ts),
            unit: match reply_in {
                Some(thread) => UnitHint::Thread(thread_unit(&channel, thread)),
                None => UnitHint::Chatter,
            },
            author,
            text: text.trim().to_string(),
            posted_at,
            link: self.api.identity().await.ok().map(|identity| {
                super::history::permalink(&identity.team_url, &channel, &ts, reply_in)
            }),
            channel_label: format!("<#{channel}>"),
        };
        let origin = Origin {
            platform: PLATFORM.into(),
            event_id: format!("{event_id}:said"),
            tenant: tenant(team),
            channel: channel_key(team, &channel),
            parent: None,
            message: Some(MessageRef {
                channel: channel_key(team, &channel),
                id: message_id(&ts, thread.as_deref()),
            }),
            user,
        };
        self.handle(ChatEvent::Said { origin, said }).await;
    }

    /// `message_changed`: the message's new text replaces what was learned.
    async fn on_edit(&self, team: &str, event: SlackMessageEvent) {
        let (Some(channel), Some(edited)) = (event.origin.channel, event.message) else {
            return;
        };
        // engram's own answers grow by edits; bots' messages are not learned.
        if edited.sender.bot_id.is_some() {
            return;
        }
        let text = edited
            .content
            .and_then(|content| content.text)
            .unwrap_or_default();
        self.handle(ChatEvent::Edited {
            tenant: tenant(team),
            key: message_key(&channel.0, &edited.ts.0),
            text: text.trim().to_string(),
        })
        .await;
    }

    /// `message_deleted`: the message is forgotten.
    async fn on_delete(&self, team: &str, event: SlackMessageEvent) {
        let (Some(channel), Some(deleted)) = (event.origin.channel, event.deleted_ts) else {
            return;
        };
        self.handle(ChatEvent::Deleted {
            tenant: tenant(team),
            gone: Gone::Messages(vec![message_key(&channel.0, &deleted.0)]),
        })
        .await;
    }

    /// Records whether a channel is restricted (a private channel: `channel_type` `group`)
    /// when that is new or changed; direct messages are no channel's.
    async fn follow_visibility(&self, team: &str, channel: &str, kind: &str) {
        let restricted = match kind {
            "group" => true,
            "channel" => false,
            _ => return,
        };
        {
            let mut known = self.restricted.lock().unwrap_or_else(|p| p.into_inner());
            if known.insert(channel.to_string(), restricted) == Some(restricted) {
                return;
            }
        }
        let recorded = self
            .handle(ChatEvent::Visibility {
                tenant: tenant(team),
                channel: channel_key(team, channel),
                restricted,
            })
            .await;
        if recorded.is_none() {
            let mut known = self.restricted.lock().unwrap_or_else(|p| p.into_inner());
            known.remove(channel);
        }
    }

    /// Who wrote a message, by the name people know them by (asked of Slack once per person).
    async fn user_name(&self, team: &str, user: &str) -> String {
        self.api.known_name(team, user).await
    }

    /// A question from message `ts` in `thread`, answered in that thread, with the files
    /// attached to it.
    #[allow(clippy::too_many_arguments)]
    async fn ask(
        &self,
        team: &str,
        channel: &str,
        ts: &str,
        thread: &str,
        user: &str,
        event_id: &str,
        text: String,
        attachments: Vec<PostedFile>,
    ) {
        let key = channel_key(team, channel);
        let origin = Origin {
            platform: PLATFORM.into(),
            event_id: event_id.to_string(),
            tenant: tenant(team),
            channel: key.clone(),
            parent: None,
            message: Some(MessageRef {
                channel: key,
                id: message_id(ts, Some(thread)),
            }),
            user: user.to_string(),
        };
        let event = ChatEvent::Question {
            origin,
            text,
            conversation: Some(conversation_key(team, channel, thread)),
            continues: None,
            attachments,
        };
        if let Some(Handled::Asked { .. }) = self.handle(event).await {
            self.remember_thread(channel, thread);
        }
    }

    async fn handle(&self, event: ChatEvent) -> Option<Handled> {
        match self.gateway.handle(event).await {
            Ok(handled) => Some(handled),
            Err(error) => {
                tracing::warn!(%error, "Slack: cannot handle an event");
                None
            }
        }
    }

    /// A click on a message's button (a `block_actions` interaction): each 👍/👎 in it is
    /// recorded for the person who clicked, who is told so where they clicked, visible to them
    /// alone (`chat.postEphemeral`). Other actions are not engram's.
    pub async fn on_click(&self, click: SlackInteractionBlockActionsEvent) {
        let team = click.team.id.0.as_str();
        let Some(tenant) = workspace(team) else {
            tracing::warn!("Slack: a click with a malformed team id was ignored");
            return;
        };
        let Some(user) = click.user.as_ref().map(|user| user.id.0.as_str()) else {
            return;
        };
        let channel = match &click.container {
            SlackInteractionActionContainer::Message(message) => message.channel_id.clone(),
            _ => None,
        }
        .or_else(|| click.channel.as_ref().map(|channel| channel.id.clone()));
        let thread = click
            .message
            .as_ref()
            .and_then(|message| message.origin.thread_ts.as_ref())
            .map(|ts| ts.0.as_str());
        for action in click.actions.iter().flatten() {
            let value = action.value.as_deref().unwrap_or("");
            let Some(button) = VoteButton::from_action(&action.action_id.0, value) else {
                continue;
            };
            let text = self.gateway.vote(&tenant, button, user).await;
            let Some(channel) = &channel else {
                continue;
            };
            let channel = channel_key(team, &channel.0);
            if let Err(error) = self.api.post_ephemeral(&channel, user, &text, thread).await {
                tracing::warn!(%error, "Slack: cannot answer a click");
            }
        }
    }

    /// One slash command (`/ask`, `/brain`).
    pub async fn on_command(&self, command: SlackCommandEvent) {
        if workspace(&command.team_id.0).is_none() {
            tracing::warn!("Slack: a command with a malformed team id was ignored");
            return;
        }
        let reply = match self.command(&command).await {
            Ok(Some(reply)) => reply,
            Ok(None) => return,
            Err(error) => {
                tracing::warn!(%error, "Slack: a command failed");
                Reply::private(error.user_message())
            }
        };
        let team = &command.team_id.0;
        let channel = channel_key(team, &command.channel_id.0);
        let delivered = if reply.private {
            self.api.respond(&command.response_url, &reply.text).await
        } else {
            self.api
                .post_in(&channel, &reply.text, None)
                .await
                .map(drop)
        };
        if let Err(error) = delivered {
            tracing::warn!(%error, "Slack: cannot answer a command");
            if !reply.private {
                // Not in the channel, say: tell the person who asked at least.
                let _ = self.api.respond(&command.response_url, &reply.text).await;
            }
        }
    }

    async fn command(&self, command: &SlackCommandEvent) -> Result<Option<Reply>, GatewayError> {
        let team = command.team_id.0.as_str();
        let channel = command.channel_id.0.as_str();
        let user = command.user_id.0.as_str();
        let text = command.text.as_deref().unwrap_or("").trim();
        let origin = Origin {
            platform: PLATFORM.into(),
            event_id: format!("command:{}", command.trigger_id.0),
            tenant: tenant(team),
            channel: channel_key(team, channel),
            parent: None,
            message: None,
            user: user.to_string(),
        };
        match command.command.0.trim_start_matches('/') {
            "ask" => {
                if text.is_empty() {
                    return Ok(Some(Reply::private("Ask a question: `/ask <question>`.")));
                }
                // The question is shown in the channel; the answer goes in its thread.
                let shown = self
                    .api
                    .post_in(
                        &origin.channel,
                        &format!("❓ <@{user}> asked: {text}"),
                        None,
                    )
                    .await?;
                let thread = shown.id.clone();
                self.remember_thread(channel, &thread);
                let event = ChatEvent::Question {
                    origin: Origin {
                        message: Some(shown),
                        ..origin
                    },
                    text: text.to_string(),
                    conversation: Some(conversation_key(team, channel, &thread)),
                    continues: None,
                    attachments: Vec::new(),
                };
                self.gateway.handle(event).await?;
                Ok(None)
            }
            "brain" => {
                let parsed = match parse_brain(text) {
                    Ok(parsed) => parsed,
                    Err(help) => return Ok(Some(Reply::private(help))),
                };
                let can_manage = self.can_manage(team, user).await;
                Ok(Some(
                    self.gateway.command(&origin, can_manage, parsed).await?,
                ))
            }
            other => Ok(Some(Reply::private(format!("Unknown command `/{other}`.")))),
        }
    }

    /// Workspace admins and owners, and the users `slack.admins` names, manage brains.
    async fn can_manage(&self, team: &str, user: &str) -> bool {
        if self.admins.iter().any(|admin| admin == user) {
            return true;
        }
        match self.api.is_admin(team, user).await {
            Ok(admin) => admin,
            Err(error) => {
                tracing::warn!(%error, "Slack: cannot tell whether a user is an admin (users:read?)");
                false
            }
        }
    }
}

/// A workspace is a tenant. Events and commands reach this only after `workspace` accepted
/// their team id.
pub fn tenant(team: &str) -> TenantKey {
    TenantKey::parse(&format!("slack:{team}")).expect("a team id makes a valid tenant key")
}

/// The tenant of a payload's team id, or `None` for one Slack never sends (empty, too long,
/// not alphanumeric): such a payload is dropped where it arrives rather than panicking the
/// task that handles it at `tenant`.
fn workspace(team: &str) -> Option<TenantKey> {
    TenantKey::parse(&format!("slack:{team}")).ok()
}

/// A message's key in the store's conversation knowledge.
fn message_key(channel: &str, ts: &str) -> String {
    format!("slack:{channel}:{ts}")
}

/// A thread's conversation unit.
pub(super) fn thread_unit(channel: &str, thread: &str) -> String {
    format!("slack:thread:{channel}:{thread}")
}

/// A message `ts` (`1700000000.000100`) as Unix ms.
pub(super) fn ts_ms(ts: &str) -> i64 {
    let seconds: f64 = ts.parse().unwrap_or(0.0);
    (seconds * 1000.0) as i64
}

/// The files of a message that engram can download (Slack's event gives no size; the
/// download is bounded), named by file name, title or id.
fn posted_files(files: Vec<SlackFile>) -> Vec<PostedFile> {
    files
        .into_iter()
        .filter_map(|file| {
            let url = file.url_private_download.or(file.url_private)?;
            Some(PostedFile {
                name: file
                    .name
                    .or(file.title)
                    .unwrap_or_else(|| file.id.0.clone()),
                size: 0,
                url: url.to_string(),
                link: file.permalink.map(|link| link.to_string()),
            })
        })
        .collect()
}

/// The question in a message: without the bot's mention; `None` when nothing is left.
fn question_text(text: Option<&str>, bot: Option<&str>) -> Option<String> {
    let mut text = text?.to_string();
    match bot {
        Some(bot) => text = text.replace(&format!("<@{bot}>"), ""),
        None => {
            // Not knowing the bot's id, drop a leading mention.
            if text.trim_start().starts_with("<@") {
                if let Some(end) = text.find('>') {
                    text = text[end + 1..].to_string();
                }
            }
        }
    }
    let text = text.trim().to_string();
    (!text.is_empty()).then_some(text)
}

const BRAIN_HELP: &str =
    "Usage: `/brain create <name>`, `/brain link <name> [ask|knowledge|both] [messages:on|messages:off]`, \
    `/brain unlink`, `/brain list`, `/brain info`, `/brain forget <file>`, `/brain prompt <text>`, \
    `/brain budget [amount]`, `/brain usage`, `/brain history [days]`.";

/// `/brain <verb> [args]` → a command, or the help to show.
fn parse_brain(text: &str) -> Result<BrainCommand, String> {
    let (verb, rest) = text.split_once(char::is_whitespace).unwrap_or((text, ""));
    let rest = rest.trim();
    let name = |value: &str| BrainName::parse(value.split_whitespace().next().unwrap_or(""));
    match verb.to_ascii_lowercase().as_str() {
        "create" => name(rest).map(|name| BrainCommand::Create { name }),
        "link" => {
            let mut words = rest.split_whitespace();
            let name = BrainName::parse(words.next().unwrap_or(""))?;
            let (mut mode, mut messages) = (None, None);
            for word in words {
                match word.to_ascii_lowercase().strip_prefix("messages:") {
                    Some("on") if messages.is_none() => messages = Some(true),
                    Some("off") if messages.is_none() => messages = Some(false),
                    Some(_) => {
                        return Err(
                            "Say `messages:on` or `messages:off` (once), after the mode.".into(),
                        )
                    }
                    None if mode.is_none() => mode = Some(BindingMode::parse(word)?),
                    None => return Err(BRAIN_HELP.into()),
                }
            }
            Ok(BrainCommand::Link {
                name,
                mode: mode.unwrap_or(BindingMode::Both),
                messages,
            })
        }
        "unlink" => Ok(BrainCommand::Unlink),
        "list" => Ok(BrainCommand::List),
        "info" => Ok(BrainCommand::Info),
        "forget" if !rest.is_empty() => Ok(BrainCommand::Forget {
            file: rest.to_string(),
        }),
        "prompt" => Ok(BrainCommand::Prompt {
            text: rest.to_string(),
        }),
        "budget" => BrainCommand::budget_from_text(rest),
        "usage" => Ok(BrainCommand::Usage),
        "history" if rest.is_empty() => Ok(BrainCommand::History { days: None }),
        "history" => rest
            .trim_end_matches(|c: char| c.is_ascii_alphabetic() || c.is_whitespace())
            .parse::<u32>()
            .ok()
            .filter(|days| (1..=crate::gateway::MAX_HISTORY_DAYS).contains(days))
            .map(|days| BrainCommand::History { days: Some(days) })
            .ok_or_else(|| {
                "Usage: `/brain history [days]`, e.g. `/brain history 30` for the last 30 days;                  without a number, all of this channel's history."
                    .to_string()
            }),
        _ => Err(BRAIN_HELP.to_string()),
    }
}

/// The conversation of a Slack thread: the key its turns are stored under.
fn conversation_key(team: &str, channel: &str, thread: &str) -> String {
    format!("slack:{team}:{channel}:{thread}")
}

#[cfg(test)]
#[path = "events_randomized.rs"]
mod randomized_tests;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn brain_commands_parse() {
        assert_eq!(
            parse_brain("link handbook knowledge"),
            Ok(BrainCommand::Link {
                name: BrainName::parse("handbook").unwrap(),
                mode: BindingMode::Knowledge,
                messages: None,
            })
        );
        assert_eq!(
            parse_brain("link handbook messages:off"),
            Ok(BrainCommand::Link {
                name: BrainName::parse("handbook").unwrap(),
                mode: BindingMode::Both,
                messages: Some(false),
            })
        );
        assert_eq!(
            parse_brain("link handbook knowledge Messages:ON"),
            Ok(BrainCommand::Link {
                name: BrainName::parse("handbook").unwrap(),
                mode: BindingMode::Knowledge,
                messages: Some(true),
            })
        );
        for wrong in [
            "link handbook messages:maybe",
            "link handbook messages:on messages:off",
            "link handbook ask knowledge",
        ] {
            assert!(parse_brain(wrong).is_err(), "{wrong}");
        }
        assert_eq!(
            parse_brain("forget the handbook.pdf"),
            Ok(BrainCommand::Forget {
                file: "the handbook.pdf".into()
            })
        );
        assert_eq!(parse_brain("usage"), Ok(BrainCommand::Usage));
        assert_eq!(
            parse_brain("history"),
            Ok(BrainCommand::History { days: None })
        );
        assert_eq!(
            parse_brain("history 30 days"),
            Ok(BrainCommand::History { days: Some(30) })
        );
        for wrong in [
            "history 0",
            "history -3",
            "history soon",
            "history 99999999999",
        ] {
            assert!(parse_brain(wrong).is_err(), "{wrong}");
        }
        assert_eq!(
            parse_brain("budget"),
            Ok(BrainCommand::Budget { micros: None })
        );
        assert_eq!(
            parse_brain("budget $12.499"),
            Ok(BrainCommand::Budget {
                micros: Some(12_500_000)
            })
        );
        assert_eq!(
            parse_brain("Budget 0"),
            Ok(BrainCommand::Budget { micros: Some(0) })
        );
        for (text, reason) in [
            ("budget -5", "can't be negative"),
            ("budget five", "isn't an amount"),
            ("budget 1e3", "isn't an amount"),
            ("budget inf", "isn't an amount"),
            ("budget 1,000", "isn't an amount"),
            ("budget 2000000", "at most $1,000,000"),
            ("budget 0.001", "smallest budget is $0.01"),
        ] {
            let refused = parse_brain(text).unwrap_err();
            assert!(refused.contains(reason), "{text}: {refused}");
            assert!(refused.contains("US dollars"), "{text}: {refused}");
        }
        assert!(parse_brain("").unwrap_err().contains("/brain create"));
        assert!(parse_brain("link").is_err());
    }

    #[test]
    fn the_mention_is_not_part_of_the_question() {
        assert_eq!(
            question_text(Some("<@UBOT> where do visitors park?"), Some("UBOT")).as_deref(),
            Some("where do visitors park?")
        );
        assert_eq!(
            question_text(Some("<@UBOT> where?"), None).as_deref(),
            Some("where?")
        );
        assert_eq!(question_text(Some("<@UBOT>  "), Some("UBOT")), None);
    }
}
