//! What a chat platform hands back when engram reads a channel's past (`/brain history`): pages
//! of people's messages, newest first for a channel and oldest first for a thread, with the
//! threads found on the way and where the next page starts. The adapters fill them
//! (`ChatPlatform::history`); the gateway's history reader records them.

use serde::{Deserialize, Serialize};

use crate::store::conversations::UnitHint;

/// What to read: a channel's own messages, or one thread of it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum HistorySource {
    /// The channel's messages (not its threads' replies).
    Channel,
    /// A thread: on Discord the thread's channel id, on Slack its first message's `ts`.
    Thread { id: String },
}

/// One message from the past, by a person, as conversation knowledge keys it.
#[derive(Debug, Clone)]
pub struct PastMessage {
    /// Platform-qualified and unique in the tenant (`discord:<id>`, `slack:<channel>:<ts>`).
    pub key: String,
    pub unit: UnitHint,
    pub author: String,
    /// Empty for a message that only carries files.
    pub text: String,
    /// Unix ms.
    pub posted_at: i64,
    pub link: Option<String>,
    /// How the platform writes a link to the channel (`<#123>`), for citations.
    pub channel_label: String,
    pub files: Vec<PastFile>,
}

/// A file posted with a past message.
#[derive(Debug, Clone)]
pub struct PastFile {
    pub name: String,
    /// As the platform declared it (0: not declared; the download is capped anyway).
    pub size: u64,
    pub url: String,
}

/// One page of a channel's or a thread's past.
#[derive(Debug, Clone, Default)]
pub struct PastPage {
    /// People's messages only: not bots', not questions to engram, not system messages.
    pub messages: Vec<PastMessage>,
    /// Threads started on this page (within the period read), to read after.
    pub threads: Vec<String>,
    /// Where the next page starts; `None` at the start of the channel, of the thread, or of
    /// the period read.
    pub next: Option<String>,
}
