//! Which Discord channels are threads, and the channel each belongs to: a thread has no binding
//! of its own (its parent's applies), and a thread opened on one of the bot's answers continues
//! that answer's conversation. Learnt from GUILD_CREATE, CHANNEL_CREATE, THREAD_CREATE and
//! THREAD_LIST_SYNC (no serenity cache: engram keeps only this id → parent map); a channel
//! never announced is asked about once over REST.

use std::collections::HashMap;
use std::sync::Mutex;

use serenity::all::{ChannelType, GuildChannel};

use super::rest::DiscordRest;
use crate::chat::PlatformError;

/// Beyond this many channels the map starts over (re-learnt from events and REST): a bound on
/// memory for a bot in very many busy guilds.
const MAX_CHANNELS: usize = 200_000;

/// Channel id → the parent channel's id when the channel is a thread, `None` when it is not.
#[derive(Debug, Default)]
pub struct Threads {
    known: Mutex<HashMap<u64, Option<u64>>>,
}

/// Whether a channel of this type is a thread.
pub fn is_thread(kind: ChannelType) -> bool {
    matches!(
        kind,
        ChannelType::PublicThread | ChannelType::PrivateThread | ChannelType::NewsThread
    )
}

impl Threads {
    /// Learns a channel (or thread) from an event.
    pub fn learn(&self, channel: &GuildChannel) {
        let parent = channel
            .parent_id
            .filter(|_| is_thread(channel.kind))
            .map(|parent| parent.get());
        self.insert(channel.id.get(), parent);
    }

    /// Forgets a deleted channel or thread.
    pub fn forget(&self, channel_id: u64) {
        self.lock().remove(&channel_id);
    }

    /// The channel `channel_id` belongs to if it is a thread; asks Discord when the channel
    /// was never announced. A failed lookup counts as "not a thread"; it is tried again next
    /// time unless Discord refused it (the bot may not see the channel).
    pub async fn parent_of(&self, channel_id: u64, rest: &DiscordRest) -> Option<u64> {
        if let Some(known) = self.lock().get(&channel_id) {
            return *known;
        }
        match rest.thread_parent(channel_id).await {
            Ok(parent) => {
                self.insert(channel_id, parent);
                parent
            }
            Err(error @ PlatformError::Gone(_)) => {
                tracing::debug!(%error, channel = channel_id, "Discord: cannot see a channel");
                self.insert(channel_id, None);
                None
            }
            Err(error) => {
                tracing::debug!(%error, channel = channel_id, "Discord: cannot look a channel up");
                None
            }
        }
    }

    fn insert(&self, channel_id: u64, parent: Option<u64>) {
        let mut known = self.lock();
        if known.len() >= MAX_CHANNELS && !known.contains_key(&channel_id) {
            known.clear();
        }
        known.insert(channel_id, parent);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Option<u64>>> {
        self.known
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}
