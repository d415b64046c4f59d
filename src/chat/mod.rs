//! The platform-agnostic chat core: the `ChatPlatform` port the Discord and Slack adapters
//! implement, the per-channel rate budget they feed, the edit streamer that grows an answer in
//! place, admission to the bounded, tenant-fair answer pool, answers as queued jobs, and the
//! 👍/👎 buttons on finished answers; files attached to a question, read for its answer.

pub mod attachments;
pub mod budget;
pub mod feedback;
pub mod history;
pub mod pool;
pub mod service;
pub mod streamer;

use std::fmt;
use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::render::Limits;
use streamer::StreamOptions;

/// A channel, platform-qualified (`discord:<channel id>`, `slack:<team>:<channel>`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ChannelKey(pub String);

impl fmt::Display for ChannelKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A message the bot posted (or will edit).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct MessageRef {
    pub channel: ChannelKey,
    pub id: String,
}

/// Why a platform call failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlatformError {
    /// Slow down: try again after `retry_after`.
    #[error("rate limited; retry after {retry_after:?}")]
    RateLimited { retry_after: Duration },
    /// The message or channel is gone, or the bot may not write there.
    #[error("gone: {0}")]
    Gone(String),
    /// A download was larger than it may be.
    #[error("the file is larger than {limit} bytes (ingest.max_file_bytes)")]
    TooLarge { limit: u64 },
    /// Anything else (network, server error).
    #[error("{0}")]
    Other(String),
}

/// What engram needs from a chat platform to deliver an answer.
#[async_trait]
pub trait ChatPlatform: Send + Sync + fmt::Debug {
    fn limits(&self) -> Limits;
    /// Posts a new message, as a reply to `reply_to` when given.
    async fn post(
        &self,
        channel: &ChannelKey,
        text: &str,
        reply_to: Option<&MessageRef>,
    ) -> Result<MessageRef, PlatformError>;
    /// Replaces a message's text.
    async fn edit(&self, message: &MessageRef, text: &str) -> Result<(), PlatformError>;
    /// Replaces the text of an answer's last message and puts the 👍/👎 buttons for `answer`
    /// under it: the answer's final write.
    async fn edit_with_votes(
        &self,
        message: &MessageRef,
        text: &str,
        answer: i64,
    ) -> Result<(), PlatformError>;
    /// Adds the bot's reaction (an emoji) to a message.
    async fn react(&self, message: &MessageRef, emoji: &str) -> Result<(), PlatformError>;
    /// Removes the bot's reaction from a message.
    async fn unreact(&self, message: &MessageRef, emoji: &str) -> Result<(), PlatformError>;
    /// Downloads a posted file (with the bot's credentials where the platform needs them),
    /// refusing more than `max_bytes`.
    async fn download(&self, url: &str, max_bytes: u64) -> Result<Vec<u8>, PlatformError>;
    /// One page of a channel's past (`source`), starting at `cursor` (`None`: the newest
    /// message, or a thread's first), leaving out messages older than `since_ms` (Unix ms).
    /// `tenant` is the server or workspace (`discord:<guild>`, `slack:<team>`). Platforms
    /// that cannot read history say so.
    async fn history(
        &self,
        _tenant: &crate::brain::TenantKey,
        _channel: &ChannelKey,
        _source: &history::HistorySource,
        _cursor: Option<&str>,
        _since_ms: i64,
    ) -> Result<history::PastPage, PlatformError> {
        Err(PlatformError::Gone(
            "this platform cannot read a channel's history".into(),
        ))
    }
    /// Grows an answer the platform's own way (Slack's streaming API) instead of by editing
    /// `placeholder`, for the question `asker` asked, ending with the buttons for `answer`
    /// (once it is set). `None`: the platform has no such way (here, now); the caller edits
    /// the placeholder with whatever `text` holds from then on.
    async fn stream_natively(
        &self,
        _placeholder: &MessageRef,
        _asker: &str,
        _text: &mut tokio::sync::watch::Receiver<String>,
        _options: StreamOptions,
        _answer: &feedback::AnswerId,
    ) -> Option<Result<Vec<MessageRef>, PlatformError>> {
        None
    }
}
