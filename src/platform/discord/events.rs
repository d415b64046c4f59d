//! Discord's events: the serenity event handler turns gateway dispatches into `ChatEvent`s,
//! slash-command interactions into `BrainCommand`s and button clicks into votes for the
//! gateway core, keeps the shards' connection state and the thread map, and answers commands
//! and clicks through `rest`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::json;
use serenity::all::{
    ChannelId, ChannelType, CommandDataOptionValue, CommandInteraction, ComponentInteraction,
    Context, EventHandler, Guild, GuildChannel, GuildId, Interaction, Message, MessageId,
    MessageType, MessageUpdateEvent, PartialGuildChannel, PermissionOverwriteType, Permissions,
    Ready, RoleId, ThreadListSyncEvent, UserId,
};
use serenity::gateway::{ConnectionStage, ShardStageUpdateEvent};
use tokio::sync::OnceCell;

use super::rest::channel_key;
use super::threads::{self, Threads};
use super::{commands, DiscordRest, PLATFORM};
use crate::brain::{BindingMode, BrainName, TenantKey};
use crate::chat::feedback::{self, VoteButton};
use crate::chat::MessageRef;
use crate::gateway::{
    BrainCommand, ChatEvent, Gateway, GatewayError, Gone, Handled, Origin, PostedFile, Reply, Said,
};
use crate::platform::connection::Connections;
use crate::store::conversations::UnitHint;

/// How long a slash command may run before it is acknowledged as deferred (Discord allows 3 s
/// for the first response, and the network takes some of it).
const ACK_WITHIN: Duration = Duration::from_millis(2_000);

/// A message only the person who used the command sees (message flag 64).
const EPHEMERAL: u64 = 1 << 6;

pub(super) struct Handler {
    pub(super) gateway: Gateway,
    /// Everything the adapter writes (the typing indicator, interaction responses, the slash
    /// commands), and channel lookups.
    pub(super) rest: DiscordRest,
    /// This process's platform connections: Discord's is up while every shard is connected.
    pub(super) connections: Arc<Connections>,
    /// Each running shard's state: connected or not.
    pub(super) shards: Mutex<HashMap<u32, bool>>,
    /// The bot's own user id, known from READY.
    pub(super) bot: OnceCell<UserId>,
    /// Which channels are threads, and of which channel.
    pub(super) threads: Threads,
    /// Which channels are restricted, as last recorded.
    pub(super) restricted: Mutex<HashMap<u64, bool>>,
}

#[serenity::async_trait]
impl EventHandler for Handler {
    async fn ready(&self, ctx: Context, ready: Ready) {
        let _ = self.bot.set(ready.user.id);
        self.shard_connected(ctx.shard_id.0, true);
        tracing::info!(user = %ready.user.name, guilds = ready.guilds.len(), "Discord: connected");
        let commands = serde_json::to_value(commands()).expect("commands serialize");
        if let Err(error) = self
            .rest
            .register_commands(ready.application.id.get(), commands)
            .await
        {
            tracing::warn!(%error, "Discord: cannot register the slash commands");
        }
    }

    async fn shard_stage_update(&self, _ctx: Context, event: ShardStageUpdateEvent) {
        self.shard_connected(event.shard_id.0, event.new == ConnectionStage::Connected);
    }

    async fn guild_create(&self, _ctx: Context, guild: Guild, _is_new: Option<bool>) {
        for channel in guild.channels.values().chain(&guild.threads) {
            self.threads.learn(channel);
        }
        // Channels first: a thread is restricted when its channel is.
        for channel in guild.channels.values().chain(&guild.threads) {
            self.follow_visibility(channel).await;
        }
    }

    async fn channel_create(&self, _ctx: Context, channel: GuildChannel) {
        self.threads.learn(&channel);
        self.follow_visibility(&channel).await;
    }

    async fn channel_update(&self, _ctx: Context, _old: Option<GuildChannel>, new: GuildChannel) {
        self.follow_visibility(&new).await;
    }

    async fn channel_delete(
        &self,
        _ctx: Context,
        channel: GuildChannel,
        _messages: Option<Vec<Message>>,
    ) {
        self.threads.forget(channel.id.get());
        self.handle(ChatEvent::Deleted {
            tenant: tenant(channel.guild_id.get()),
            gone: Gone::Channel(channel_key(channel.id.get())),
        })
        .await;
    }

    async fn thread_create(&self, _ctx: Context, thread: GuildChannel) {
        self.threads.learn(&thread);
        self.follow_visibility(&thread).await;
    }

    async fn thread_delete(
        &self,
        _ctx: Context,
        thread: PartialGuildChannel,
        _full: Option<GuildChannel>,
    ) {
        self.threads.forget(thread.id.get());
        self.handle(ChatEvent::Deleted {
            tenant: tenant(thread.guild_id.get()),
            gone: Gone::Thread(thread_unit(thread.id.get())),
        })
        .await;
    }

    async fn thread_list_sync(&self, _ctx: Context, sync: ThreadListSyncEvent) {
        for thread in &sync.threads {
            self.threads.learn(thread);
        }
    }

    async fn message(&self, _ctx: Context, message: Message) {
        let Some(bot) = self.bot.get().copied() else {
            return;
        };
        // People's messages and replies only: not bots, not system messages (a thread's
        // starter message, "thread created", pins, joins).
        if message.author.bot
            || !matches!(
                message.kind,
                MessageType::Regular | MessageType::InlineReply
            )
        {
            return;
        }
        let Some(guild) = message.guild_id else {
            return; // Direct messages have no brain.
        };
        let channel = channel_key(message.channel_id.get());
        // In a thread, the channel the thread belongs to decides the binding.
        let parent = self
            .threads
            .parent_of(message.channel_id.get(), &self.rest)
            .await;
        let message_ref = MessageRef {
            channel: channel.clone(),
            id: message.id.get().to_string(),
        };
        let origin = |suffix: &str| Origin {
            platform: PLATFORM.into(),
            event_id: format!("message:{}{suffix}", message.id.get()),
            tenant: tenant(guild.get()),
            channel: channel.clone(),
            parent: parent.map(channel_key),
            message: Some(message_ref.clone()),
            user: message.author.id.get().to_string(),
        };
        // Learned where the channel learns files, and read for the answer when the message
        // is a question.
        let link = format!(
            "https://discord.com/channels/{}/{}/{}",
            guild.get(),
            message.channel_id.get(),
            message.id.get()
        );
        let files: Vec<PostedFile> = message
            .attachments
            .iter()
            .map(|attachment| PostedFile {
                name: attachment.filename.clone(),
                size: u64::from(attachment.size),
                url: attachment.url.clone(),
                link: Some(link.clone()),
            })
            .collect();
        if !files.is_empty() {
            self.handle(ChatEvent::Files {
                origin: origin(":files"),
                files: files.clone(),
            })
            .await;
        }
        // A thread started from a message has that message's id: the message it was opened on.
        let opened_on = parent.map(|parent| MessageRef {
            channel: channel_key(parent),
            id: message.channel_id.get().to_string(),
        });
        let replied_to_bot = message
            .referenced_message
            .as_ref()
            .filter(|replied| replied.author.id == bot);
        let mentioned = message.mentions.iter().any(|user| user.id == bot);
        if !mentioned && replied_to_bot.is_none() {
            // Not addressed to the bot: a question in a thread opened on an answer, else what
            // people say (learned where the channel learns messages).
            let text = message.content.trim();
            if text.is_empty() {
                return;
            }
            if let Some(opened_on) = opened_on {
                let event = ChatEvent::InThread {
                    origin: origin(""),
                    text: text.to_string(),
                    opened_on,
                    attachments: files,
                };
                match self.handle(event).await {
                    Some(Handled::Ignored) => {}
                    Some(Handled::Asked { .. }) => {
                        self.show_typing(&channel);
                        return;
                    }
                    _ => return,
                }
            }
            let said = said(&message, guild.get(), parent);
            self.handle(ChatEvent::Said {
                origin: origin(":said"),
                said,
            })
            .await;
            return;
        }
        let text = strip_mention(&message.content, bot);
        if text.is_empty() {
            return;
        }
        // The answer replied to, or the one the thread was opened on, names the conversation
        // (the gateway core looks it up); without one, a reply continues the conversation of
        // the question the bot's message answered, and anything else starts one.
        let continues = replied_to_bot
            .map(|replied| MessageRef {
                channel: channel.clone(),
                id: replied.id.get().to_string(),
            })
            .or(opened_on);
        let conversation = replied_to_bot
            .and_then(|replied| replied.message_reference.as_ref())
            .and_then(|reference| reference.message_id)
            .map(|root| format!("discord:{}:{}", message.channel_id.get(), root.get()))
            .or_else(|| {
                Some(format!(
                    "discord:{}:{}",
                    message.channel_id.get(),
                    message.id.get()
                ))
            });
        self.show_typing(&channel);
        self.handle(ChatEvent::Question {
            origin: origin(""),
            text,
            conversation,
            continues,
            attachments: files,
        })
        .await;
    }

    async fn message_update(
        &self,
        _ctx: Context,
        _old: Option<Message>,
        _new: Option<Message>,
        event: MessageUpdateEvent,
    ) {
        // Partial: only a changed text matters here, and not the bots' (engram's own answers
        // grow by edits).
        if event.author.as_ref().is_some_and(|author| author.bot) {
            return;
        }
        let (Some(guild), Some(text)) = (event.guild_id, event.content) else {
            return;
        };
        self.handle(ChatEvent::Edited {
            tenant: tenant(guild.get()),
            key: message_key(event.id.get()),
            text,
        })
        .await;
    }

    async fn message_delete(
        &self,
        _ctx: Context,
        _channel: ChannelId,
        deleted: MessageId,
        guild: Option<GuildId>,
    ) {
        if let Some(guild) = guild {
            self.handle(ChatEvent::Deleted {
                tenant: tenant(guild.get()),
                gone: Gone::Messages(vec![message_key(deleted.get())]),
            })
            .await;
        }
    }

    async fn message_delete_bulk(
        &self,
        _ctx: Context,
        _channel: ChannelId,
        deleted: Vec<MessageId>,
        guild: Option<GuildId>,
    ) {
        if let Some(guild) = guild {
            let keys = deleted.iter().map(|id| message_key(id.get())).collect();
            self.handle(ChatEvent::Deleted {
                tenant: tenant(guild.get()),
                gone: Gone::Messages(keys),
            })
            .await;
        }
    }

    async fn interaction_create(&self, _ctx: Context, interaction: Interaction) {
        match interaction {
            Interaction::Command(command) => self.on_command(command).await,
            Interaction::Component(click) => self.on_click(click).await,
            _ => {}
        }
    }
}

impl Handler {
    /// Records whether `channel` is restricted — its overwrites deny *View Channel* to
    /// @everyone (the role whose id is the guild's), or it is a private thread, or a thread of
    /// a restricted channel — when that is new or changed.
    async fn follow_visibility(&self, channel: &GuildChannel) {
        let everyone = RoleId::new(channel.guild_id.get());
        let denied = channel.permission_overwrites.iter().any(|overwrite| {
            overwrite.kind == PermissionOverwriteType::Role(everyone)
                && overwrite.deny.contains(Permissions::VIEW_CHANNEL)
        });
        let restricted = {
            let mut known = self.restricted.lock().unwrap_or_else(|p| p.into_inner());
            let parent = channel
                .parent_id
                .filter(|_| threads::is_thread(channel.kind))
                .and_then(|parent| known.get(&parent.get()).copied())
                .unwrap_or(false);
            let restricted = denied || parent || channel.kind == ChannelType::PrivateThread;
            if known.insert(channel.id.get(), restricted) == Some(restricted) {
                return;
            }
            restricted
        };
        let recorded = self
            .handle(ChatEvent::Visibility {
                tenant: tenant(channel.guild_id.get()),
                channel: channel_key(channel.id.get()),
                restricted,
            })
            .await;
        if recorded.is_none() {
            // Not recorded: tried again with the next event about this channel.
            let mut known = self.restricted.lock().unwrap_or_else(|p| p.into_inner());
            known.remove(&channel.id.get());
        }
    }

    /// Runs a slash command and answers it within Discord's 3 s, deferring a slow one.
    async fn on_command(&self, command: CommandInteraction) {
        let work = async {
            self.command(&command).await.unwrap_or_else(|error| {
                tracing::warn!(%error, "Discord: a command failed");
                Reply::private(error.user_message())
            })
        };
        tokio::pin!(work);
        let (id, token) = (command.id.get(), command.token.as_str());
        // Discord drops an interaction not acknowledged within 3 s: a command still running
        // after ACK_WITHIN is acknowledged as "thinking…" and its reply edited in later.
        let (reply, deferred) = match tokio::time::timeout(ACK_WITHIN, &mut work).await {
            Ok(reply) => (reply, false),
            Err(_) => {
                // Whether the reply will be private is not known yet; errors are, so the
                // placeholder is too (only the person who asked sees it).
                let defer = json!({"type": 5, "data": {"flags": EPHEMERAL}});
                if let Err(error) = self.rest.respond_to_interaction(id, token, defer).await {
                    tracing::warn!(%error, "Discord: cannot acknowledge a slow command");
                }
                (work.await, true)
            }
        };
        let sent = if deferred {
            self.rest
                .edit_interaction_response(command.application_id.get(), token, &reply.text)
                .await
        } else {
            let response = json!({
                "type": 4,
                "data": {
                    "content": reply.text,
                    "flags": if reply.private { EPHEMERAL } else { 0 },
                    "allowed_mentions": {"parse": []},
                },
            });
            self.rest.respond_to_interaction(id, token, response).await
        };
        if let Err(error) = sent {
            tracing::warn!(%error, "Discord: cannot answer a command");
        }
    }

    /// A button clicked (`INTERACTION_CREATE` type 3): a 👍/👎 is recorded and the person who
    /// clicked is told so privately, within Discord's 3 s; anything else is acknowledged
    /// without a change (type 6), so Discord does not show it failed.
    async fn on_click(&self, click: ComponentInteraction) {
        let button = VoteButton::from_custom_id(&click.data.custom_id);
        let response = match (button, click.guild_id) {
            (Some(button), Some(guild)) => {
                let user = click.user.id.get().to_string();
                let tenant = tenant(guild.get());
                let vote = self.gateway.vote(&tenant, button, &user);
                let text = tokio::time::timeout(ACK_WITHIN, vote)
                    .await
                    .unwrap_or_else(|_| feedback::NOT_NOW.to_string());
                json!({
                    "type": 4,
                    "data": {
                        "content": text,
                        "flags": EPHEMERAL,
                        "allowed_mentions": {"parse": []},
                    },
                })
            }
            _ => json!({"type": 6}),
        };
        if let Err(error) = self
            .rest
            .respond_to_interaction(click.id.get(), &click.token, response)
            .await
        {
            tracing::warn!(%error, "Discord: cannot answer a button click");
        }
    }

    /// Records a shard's connection; Discord is connected while all of them are.
    fn shard_connected(&self, shard: u32, connected: bool) {
        let all = {
            let mut shards = self.shards.lock().unwrap_or_else(|p| p.into_inner());
            shards.insert(shard, connected);
            shards.values().all(|up| *up)
        };
        if all {
            self.connections.connected(PLATFORM);
        } else {
            self.connections
                .down(PLATFORM, "a gateway shard is reconnecting to Discord");
        }
    }

    async fn handle(&self, event: ChatEvent) -> Option<Handled> {
        match self.gateway.handle(event).await {
            Ok(handled) => Some(handled),
            Err(error) => {
                tracing::warn!(%error, "Discord: cannot handle an event");
                None
            }
        }
    }

    /// "engram is typing…" in the channel, without waiting for it.
    fn show_typing(&self, channel: &crate::chat::ChannelKey) {
        let (typing, channel) = (self.rest.clone(), channel.clone());
        tokio::spawn(async move {
            if let Err(error) = typing.typing(&channel).await {
                tracing::debug!(%error, "Discord: cannot show typing");
            }
        });
    }

    /// Runs a slash command; `/ask` queues a question and acknowledges it.
    async fn command(&self, command: &CommandInteraction) -> Result<Reply, GatewayError> {
        let Some(guild) = command.guild_id else {
            return Ok(Reply::private(
                "engram works in servers, not direct messages.",
            ));
        };
        // In a thread, commands are about the channel the thread belongs to.
        let parent = match &command.channel {
            Some(channel) if threads::is_thread(channel.kind) => {
                channel.parent_id.map(|parent| parent.get())
            }
            Some(_) => None,
            None => {
                self.threads
                    .parent_of(command.channel_id.get(), &self.rest)
                    .await
            }
        };
        let origin = Origin {
            platform: PLATFORM.into(),
            event_id: format!("interaction:{}", command.id.get()),
            tenant: tenant(guild.get()),
            channel: channel_key(command.channel_id.get()),
            parent: parent.map(channel_key),
            message: None,
            user: command.user.id.get().to_string(),
        };
        let can_manage = command
            .member
            .as_ref()
            .and_then(|member| member.permissions)
            .is_some_and(|permissions| {
                permissions.contains(Permissions::MANAGE_GUILD)
                    || permissions.contains(Permissions::ADMINISTRATOR)
            });
        let options = &command.data.options;
        let string = |options: &[serenity::all::CommandDataOption], name: &str| {
            options.iter().find_map(|option| match &option.value {
                CommandDataOptionValue::String(value) if option.name == name => Some(value.clone()),
                _ => None,
            })
        };
        match command.data.name.as_str() {
            "ask" => {
                let question = string(options, "question").unwrap_or_default();
                if question.trim().is_empty() {
                    return Ok(Reply::private("Ask a question: `/ask question:<text>`."));
                }
                let text = format!("❓ <@{}> asked: {question}", command.user.id.get());
                // In a thread opened on an answer, `/ask` continues it, as a mention would.
                let continues = parent.map(|parent| MessageRef {
                    channel: channel_key(parent),
                    id: command.channel_id.get().to_string(),
                });
                self.gateway
                    .handle(ChatEvent::Question {
                        origin,
                        text: question,
                        conversation: None,
                        continues,
                        attachments: Vec::new(),
                    })
                    .await?;
                Ok(Reply::public(text))
            }
            "usage" => Ok(self
                .gateway
                .command(&origin, can_manage, BrainCommand::Usage)
                .await?),
            "brain" => {
                let Some(sub) = options.first() else {
                    return Ok(Reply::private("Use a `/brain` subcommand."));
                };
                let CommandDataOptionValue::SubCommand(args) = &sub.value else {
                    return Ok(Reply::private("Use a `/brain` subcommand."));
                };
                let name = || -> Result<BrainName, String> {
                    BrainName::parse(&string(args, "name").unwrap_or_default())
                };
                let parsed = match sub.name.as_str() {
                    "create" => name().map(|name| BrainCommand::Create { name }),
                    "link" => name().and_then(|name| {
                        let mode = string(args, "mode").unwrap_or_else(|| "both".into());
                        let messages = match string(args, "messages").as_deref() {
                            None => Ok(None),
                            Some("on") => Ok(Some(true)),
                            Some("off") => Ok(Some(false)),
                            Some(other) => Err(format!("`messages` is on or off, not `{other}`.")),
                        }?;
                        BindingMode::parse(&mode).map(|mode| BrainCommand::Link {
                            name,
                            mode,
                            messages,
                        })
                    }),
                    "unlink" => Ok(BrainCommand::Unlink),
                    "list" => Ok(BrainCommand::List),
                    "info" => Ok(BrainCommand::Info),
                    "forget" => Ok(BrainCommand::Forget {
                        file: string(args, "document").unwrap_or_default(),
                    }),
                    "prompt" => Ok(BrainCommand::Prompt {
                        text: string(args, "text").unwrap_or_default(),
                    }),
                    "budget" => match args.iter().find(|option| option.name == "usd") {
                        None => BrainCommand::budget(None),
                        Some(option) => match option.value {
                            CommandDataOptionValue::Number(usd) => BrainCommand::budget(Some(usd)),
                            CommandDataOptionValue::Integer(usd) => {
                                BrainCommand::budget(Some(usd as f64))
                            }
                            // Any other kind of value is not an amount, and is refused as such.
                            _ => BrainCommand::budget(Some(f64::NAN)),
                        },
                    },
                    "history" => match args.iter().find(|option| option.name == "days") {
                        None => Ok(BrainCommand::History { days: None }),
                        Some(option) => match option.value {
                            CommandDataOptionValue::Integer(days) => u32::try_from(days)
                                .ok()
                                .filter(|days| {
                                    (1..=crate::gateway::MAX_HISTORY_DAYS).contains(days)
                                })
                                .map(|days| BrainCommand::History { days: Some(days) })
                                .ok_or_else(|| HISTORY_DAYS_HINT.to_string()),
                            _ => Err(HISTORY_DAYS_HINT.to_string()),
                        },
                    },
                    other => Err(format!("unknown subcommand `{other}`")),
                };
                match parsed {
                    Ok(parsed) => Ok(self.gateway.command(&origin, can_manage, parsed).await?),
                    Err(reason) => Ok(Reply::private(reason)),
                }
            }
            other => Ok(Reply::private(format!("Unknown command `/{other}`."))),
        }
    }
}

/// What `/brain history`'s `days` must be.
const HISTORY_DAYS_HINT: &str = "`days` is a whole number of days, 1 or more; leave it out to read all of the channel's history.";

/// A guild is a tenant.
pub(super) fn tenant(guild: u64) -> TenantKey {
    TenantKey::parse(&format!("discord:{guild}")).expect("a guild id makes a valid tenant key")
}

/// A message's key in the store's conversation knowledge.
fn message_key(id: u64) -> String {
    format!("discord:{id}")
}

/// A thread's conversation unit.
pub(super) fn thread_unit(thread: u64) -> String {
    format!("discord:thread:{thread}")
}

/// What a person said, for the gateway to learn: in a thread, the thread is the unit; a reply
/// joins the unit of the message it answers; anything else is channel chatter.
pub(super) fn said(message: &Message, guild: u64, parent: Option<u64>) -> Said {
    let unit = match (parent, &message.referenced_message) {
        (Some(_), _) => UnitHint::Thread(thread_unit(message.channel_id.get())),
        (None, Some(replied)) => UnitHint::ReplyTo(message_key(replied.id.get())),
        (None, None) => UnitHint::Chatter,
    };
    let author = message
        .member
        .as_ref()
        .and_then(|member| member.nick.clone())
        .or_else(|| message.author.global_name.clone())
        .unwrap_or_else(|| message.author.name.clone());
    Said {
        key: message_key(message.id.get()),
        unit,
        author,
        text: message.content.trim().to_string(),
        posted_at: message.timestamp.unix_timestamp().saturating_mul(1000),
        link: Some(format!(
            "https://discord.com/channels/{guild}/{}/{}",
            message.channel_id.get(),
            message.id.get()
        )),
        channel_label: format!("<#{}>", parent.unwrap_or(message.channel_id.get())),
    }
}

/// The question without the bot's mention (`<@id>` or `<@!id>`).
pub(super) fn strip_mention(content: &str, bot: UserId) -> String {
    content
        .replace(&format!("<@{}>", bot.get()), "")
        .replace(&format!("<@!{}>", bot.get()), "")
        .trim()
        .to_string()
}

#[cfg(test)]
#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mentions_are_stripped_from_questions() {
        let bot = UserId::new(42);
        assert_eq!(strip_mention("<@42> how do I?", bot), "how do I?");
        assert_eq!(strip_mention("hey <@!42>  ", bot), "hey");
        assert_eq!(strip_mention("<@7> hi", bot), "<@7> hi");
    }
}
