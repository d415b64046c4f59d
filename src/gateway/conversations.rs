//! What people say becomes knowledge: a message posted in a channel that learns its messages
//! (linked in `knowledge` or `both` mode with messages on) is recorded in its conversation
//! unit, which the ingest role then learns; edits replace a message's text and deletions
//! forget it (a message, a whole thread, a whole channel). All of it is idempotent, so a
//! replayed event or a second gateway changes nothing.

use super::{Gateway, GatewayError, Handled, Origin};
use crate::brain::{BindingMode, TenantKey};
use crate::chat::ChannelKey;
use crate::store::conversations::{NewMessage, UnitHint};

/// A message posted by a person, not addressed to the bot.
#[derive(Debug, Clone)]
pub struct Said {
    /// Platform-qualified and unique in the tenant (`discord:<id>`, `slack:<channel>:<ts>`).
    pub key: String,
    pub unit: UnitHint,
    /// The author's name as people know it.
    pub author: String,
    pub text: String,
    /// Unix ms.
    pub posted_at: i64,
    pub link: Option<String>,
    /// How the platform writes a link to the channel (`<#123>`), for citations.
    pub channel_label: String,
}

/// What was deleted.
#[derive(Debug, Clone)]
pub enum Gone {
    /// Messages, by key.
    Messages(Vec<String>),
    /// A thread: its unit's key.
    Thread(String),
    /// A channel, and everything learned from it.
    Channel(ChannelKey),
}

/// The notice a channel gets when it starts learning its messages.
pub fn consent_notice(brain: &str) -> String {
    format!(
        "📝 From now on, the brain `{brain}` remembers what people say in this channel \
         (messages and threads; edits and deletions are followed). To stop, link the channel \
         again with messages off or unlink it; deleting a message makes engram forget it."
    )
}

impl Gateway {
    /// Records a message where its channel learns messages; `Ignored` elsewhere.
    pub(super) async fn said(&self, origin: &Origin, said: Said) -> Result<Handled, GatewayError> {
        if !self.learn_messages || said.text.trim().is_empty() {
            return Ok(Handled::Ignored);
        }
        let Some(tenant) = self.store.find_tenant(&origin.tenant).await? else {
            return Ok(Handled::Ignored);
        };
        let channel = origin.bound_channel();
        let Some(binding) = self.store.binding(tenant, &channel.0).await? else {
            return Ok(Handled::Ignored);
        };
        if binding.mode == BindingMode::Ask
            || !self
                .store
                .channel_learns_messages(tenant, &channel.0)
                .await?
        {
            return Ok(Handled::Ignored);
        }
        let title = format!(
            "{}, {}",
            said.channel_label,
            crate::clock::format_date(said.posted_at)
        );
        self.store
            .record_message(&NewMessage {
                tenant,
                brain: binding.brain,
                channel: channel.0.clone(),
                key: said.key,
                unit: said.unit,
                author: said.author,
                text: said.text,
                posted_at: said.posted_at,
                link: said.link,
                title,
            })
            .await?;
        Ok(Handled::Learned)
    }

    /// A message's new text, if it was learned.
    pub(super) async fn edited(
        &self,
        tenant: &TenantKey,
        key: &str,
        text: &str,
    ) -> Result<Handled, GatewayError> {
        let Some(tenant) = self.store.find_tenant(tenant).await? else {
            return Ok(Handled::Ignored);
        };
        let now = crate::clock::now_ms();
        let changed = if text.trim().is_empty() {
            // Edited down to nothing (only an attachment left): nothing to learn from it.
            self.store
                .delete_messages(tenant, &[key.to_string()])
                .await?
                > 0
        } else {
            self.store.edit_message(tenant, key, text, now).await?
        };
        Ok(if changed {
            Handled::Learned
        } else {
            Handled::Ignored
        })
    }

    /// Forgets what was deleted.
    pub(super) async fn gone(
        &self,
        tenant: &TenantKey,
        gone: Gone,
    ) -> Result<Handled, GatewayError> {
        let Some(tenant) = self.store.find_tenant(tenant).await? else {
            return Ok(Handled::Ignored);
        };
        let forgotten = match gone {
            Gone::Messages(keys) => self.store.delete_messages(tenant, &keys).await?,
            Gone::Thread(key) => self.store.delete_conversation(tenant, &key).await?,
            Gone::Channel(channel) => {
                self.store
                    .delete_channel_conversations(tenant, &channel.0)
                    .await?
            }
        };
        Ok(if forgotten > 0 {
            Handled::Learned
        } else {
            Handled::Ignored
        })
    }
}
