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

/// The message a link points at, as conversation knowledge keys it: a Discord jump link
/// (`https://discord.com/channels/<guild>/<channel>/<message>`) or a Slack permalink
/// (`https://<workspace>.slack.com/archives/<channel>/p<ts without its dot>`).
pub fn message_key_from_link(link: &str) -> Option<String> {
    let link = link.trim().trim_start_matches('<').trim_end_matches('>');
    let rest = link
        .strip_prefix("https://")
        .or_else(|| link.strip_prefix("http://"))?;
    let (host, path) = rest.split_once('/')?;
    let path = path.split(['?', '#']).next().unwrap_or("");
    let parts: Vec<&str> = path.split('/').collect();
    let digits = |s: &str| !s.is_empty() && s.len() <= 20 && s.bytes().all(|b| b.is_ascii_digit());
    let discord_host = matches!(
        host,
        "discord.com" | "ptb.discord.com" | "canary.discord.com" | "discordapp.com"
    );
    match parts.as_slice() {
        ["channels", guild, channel, message]
            if discord_host && digits(guild) && digits(channel) && digits(message) =>
        {
            Some(format!("discord:{message}"))
        }
        ["archives", channel, stamp] if host.ends_with(".slack.com") => {
            let stamp = stamp.strip_prefix('p')?;
            let channel_ok = !channel.is_empty()
                && channel.len() <= 20
                && channel.bytes().all(|b| b.is_ascii_alphanumeric());
            if !channel_ok || !digits(stamp) || stamp.len() <= 6 {
                return None;
            }
            let (seconds, micros) = stamp.split_at(stamp.len() - 6);
            Some(format!("slack:{channel}:{seconds}.{micros}"))
        }
        _ => None,
    }
}

/// The thread a message started, by the platforms' rule: a Discord thread started from a
/// message has its id; a Slack thread is keyed by its first message's ts.
pub fn thread_of(message_key: &str) -> Option<String> {
    if let Some(id) = message_key.strip_prefix("discord:") {
        return Some(format!("discord:thread:{id}"));
    }
    let (channel, ts) = message_key.strip_prefix("slack:")?.split_once(':')?;
    Some(format!("slack:thread:{channel}:{ts}"))
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
        let bound = origin.bound_channel();
        let Some(binding) = self.store.binding(tenant, &bound.0).await? else {
            return Ok(Handled::Ignored);
        };
        if binding.mode == BindingMode::Ask
            || !self.store.channel_learns_messages(tenant, &bound.0).await?
        {
            return Ok(Handled::Ignored);
        }
        let channel = self.learned_in(tenant, origin).await?;
        let title = format!(
            "{}, {}",
            said.channel_label,
            crate::clock::format_date(said.posted_at)
        );
        self.store
            .record_message(&NewMessage {
                tenant,
                brain: binding.brain,
                channel,
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

    /// The channel what arrives with `origin` is learned in, for visibility: the channel whose
    /// binding applies, or — for a restricted thread of it (a private thread) — the thread
    /// itself, so what is said there answers only there.
    pub(super) async fn learned_in(
        &self,
        tenant: crate::brain::TenantId,
        origin: &Origin,
    ) -> Result<String, GatewayError> {
        if origin.parent.is_some() && self.store.is_restricted(tenant, &origin.channel.0).await? {
            return Ok(origin.channel.0.clone());
        }
        Ok(origin.bound_channel().0.clone())
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

    /// Records whether a channel is restricted (not readable by every member): what was
    /// learned there answers only there from now on, and again everywhere once it is not.
    pub(super) async fn visibility(
        &self,
        tenant: &TenantKey,
        channel: &ChannelKey,
        restricted: bool,
    ) -> Result<Handled, GatewayError> {
        // Recorded even before the server or workspace has a brain: a channel linked later
        // must already be known for what it is.
        let tenant = self.store.ensure_tenant(tenant).await?;
        self.store
            .set_channel_restricted(tenant, &channel.0, restricted)
            .await?;
        Ok(Handled::Ignored)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn message_links_name_their_message() {
        assert_eq!(
            message_key_from_link("https://discord.com/channels/1/22/333").as_deref(),
            Some("discord:333")
        );
        assert_eq!(
            message_key_from_link("<https://ptb.discord.com/channels/1/22/333>").as_deref(),
            Some("discord:333")
        );
        assert_eq!(
            message_key_from_link(
                "https://team.slack.com/archives/C0GENERAL/p1700000001000100?thread_ts=1.2"
            )
            .as_deref(),
            Some("slack:C0GENERAL:1700000001.000100")
        );
        for not_a_link in [
            "vacation.md",
            "https://evil.example/channels/1/2/3",
            "https://discord.com/channels/1/2",
            "https://discord.com/channels/1/2/x3",
            "https://team.slack.com/archives/C0/1700000001000100",
            "https://team.slack.com/archives/C-0/p1700000001000100",
            "https://slack.com.evil.example/archives/C0/p1700000001000100",
        ] {
            assert_eq!(message_key_from_link(not_a_link), None, "{not_a_link}");
        }
    }
}
