//! Reading a Discord channel's past for `/brain history`: `GET /channels/{id}/messages`, 100 a
//! page, newest first, through the same rate limits as every other request (a page waits for
//! its bucket, never meets a 429 the headers let it foresee). Threads are channels: a message
//! that started a thread names it, and the thread is read the same way after the channel.
//! Messages become what live learning would make of them (`events::said`).

use reqwest::Method;
use serde_json::Value;
use serenity::all::{Message, MessageType};

use super::events::{said, thread_unit};
use super::rest::{channel_key, DiscordRest};
use crate::brain::TenantKey;
use crate::chat::history::{HistorySource, PastFile, PastMessage, PastPage};
use crate::chat::{ChannelKey, PlatformError};
use crate::store::conversations::UnitHint;

/// Discord's most messages per request.
const PAGE: usize = 100;

impl DiscordRest {
    pub(super) async fn history_page(
        &self,
        tenant: &TenantKey,
        channel: &ChannelKey,
        source: &HistorySource,
        cursor: Option<&str>,
        since_ms: i64,
    ) -> Result<PastPage, PlatformError> {
        let guild: u64 = tenant
            .as_str()
            .strip_prefix("discord:")
            .and_then(|id| id.parse().ok())
            .ok_or_else(|| PlatformError::Other(format!("`{tenant}` is not a Discord server")))?;
        let parent: u64 = channel
            .0
            .strip_prefix("discord:")
            .and_then(|id| id.parse().ok())
            .ok_or_else(|| PlatformError::Other(format!("`{channel}` is not a Discord channel")))?;
        let read: u64 = match source {
            HistorySource::Channel => parent,
            HistorySource::Thread { id } => id
                .parse()
                .map_err(|_| PlatformError::Other(format!("`{id}` is not a Discord thread")))?,
        };
        let in_thread = matches!(source, HistorySource::Thread { .. });
        let mut path = format!("/channels/{read}/messages?limit={PAGE}");
        if let Some(before) = cursor.filter(|c| c.bytes().all(|b| b.is_ascii_digit())) {
            path.push_str("&before=");
            path.push_str(before);
        }
        let page = self
            .call(Method::GET, &path, None, None)
            .await?
            .unwrap_or(Value::Null);
        let raw = page.as_array().cloned().unwrap_or_default();
        let bot = self.bot_id().await?;
        let full = raw.len() >= PAGE;
        let mut out = PastPage::default();
        let mut oldest: Option<u64> = None;
        let mut reached_since = false;
        for value in raw {
            let message: Message = match serde_json::from_value(value) {
                Ok(message) => message,
                Err(error) => {
                    tracing::warn!(%error, "Discord: a past message could not be read; skipped");
                    continue;
                }
            };
            oldest = Some(oldest.map_or(message.id.get(), |o| o.min(message.id.get())));
            let posted = message.timestamp.unix_timestamp().saturating_mul(1000);
            if posted < since_ms {
                reached_since = true;
                continue;
            }
            if !is_knowledge(&message, bot) {
                continue;
            }
            let mut said = said(&message, guild, in_thread.then_some(parent));
            // A message that started a thread opens it: it belongs to the thread's unit, and
            // the thread is read after the channel.
            if let Some(thread) = message.thread.as_ref().filter(|_| !in_thread) {
                out.threads.push(thread.id.get().to_string());
                said.unit = UnitHint::Thread(thread_unit(thread.id.get()));
            }
            let files = message
                .attachments
                .iter()
                .map(|attachment| PastFile {
                    name: attachment.filename.clone(),
                    size: u64::from(attachment.size),
                    url: attachment.url.clone(),
                })
                .collect();
            out.messages.push(PastMessage {
                key: said.key,
                unit: said.unit,
                author: said.author,
                text: said.text,
                posted_at: said.posted_at,
                link: said.link,
                channel_label: said.channel_label,
                files,
            });
        }
        out.next = oldest
            .filter(|_| full && !reached_since)
            .map(|id| id.to_string());
        tracing::debug!(
            channel = %channel_key(read),
            messages = out.messages.len(),
            "Discord: read a page of history"
        );
        Ok(out)
    }
}

/// A person's message, not addressed to engram: bots', system messages (pins, joins, a thread's
/// starter), questions (mentioning the bot) and replies to the bot are not knowledge.
fn is_knowledge(message: &Message, bot: u64) -> bool {
    if message.author.bot
        || !matches!(
            message.kind,
            MessageType::Regular | MessageType::InlineReply
        )
    {
        return false;
    }
    let to_bot = message.mentions.iter().any(|user| user.id.get() == bot)
        || message
            .referenced_message
            .as_ref()
            .is_some_and(|replied| replied.author.id.get() == bot);
    !to_bot
}
