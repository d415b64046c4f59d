//! The gateway role's core, shared by the Discord and Slack adapters: platform events arrive as a
//! closed `ChatEvent`, are acted on once (`seen_events`), and become store and platform calls —
//! a question becomes a placeholder and an `answer` job, posted files become ingest jobs with
//! ⏳ / ✅ / ❌ and a one-line summary (reported once, by whichever gateway sees the job end, so
//! a restarted gateway still reports files posted before), `/brain` commands become replies,
//! 👍/👎 clicks become votes, and what people say in channels that learn messages becomes
//! conversation knowledge (`conversations.rs`).
//! Adapters translate events and commands; they never touch the store, the index or the LLM.

mod commands;
mod conversations;
mod files;
mod history;
mod questions;
mod reports;
mod votes;

use std::sync::Arc;
use std::time::Duration;

use crate::brain::TenantKey;
use crate::chat::service::Outlet;
use crate::chat::{ChannelKey, MessageRef, PlatformError};
use crate::config::{BudgetsConfig, IngestConfig};
use crate::index::Index;
use crate::jobs::JobId;
use crate::store::{patiently, EventClaim, Store, StoreError, STORE_PATIENCE};

pub use commands::{BrainCommand, Reply, MAX_BUDGET_USD, MAX_HISTORY_DAYS};
pub use conversations::{consent_notice, message_key_from_link, Gone, Said};
pub use files::{DONE, FAILED, WORKING};
pub use history::{HistoryPayload, HistoryReader};
pub use questions::{ask, AskError, Asked, NewQuestion};

/// Said when a question arrives in a channel no brain is linked to.
pub const UNBOUND_HINT: &str = "This channel isn't linked to a brain yet. Someone who manages \
    this server can link one with `/brain link`, after `/brain create` if there is none.";

/// Where an event came from.
#[derive(Debug, Clone)]
pub struct Origin {
    /// The platform (`discord`, `slack`); also the outlet answers go through.
    pub platform: String,
    /// Unique per platform, the same when the platform replays or retries the event.
    pub event_id: String,
    pub tenant: TenantKey,
    pub channel: ChannelKey,
    /// When the event happened in a thread that is a channel of its own (Discord): the channel
    /// the thread belongs to, whose binding applies. `None` everywhere else.
    pub parent: Option<ChannelKey>,
    /// The message that carried the event, if any (a slash command has none).
    pub message: Option<MessageRef>,
    pub user: String,
}

impl Origin {
    /// The channel whose binding applies: a thread's parent, else the channel itself.
    pub fn bound_channel(&self) -> &ChannelKey {
        self.parent.as_ref().unwrap_or(&self.channel)
    }
}

/// A file posted in a channel.
#[derive(Debug, Clone)]
pub struct PostedFile {
    pub name: String,
    /// As the platform declared it; checked again while downloading.
    pub size: u64,
    pub url: String,
    /// A link to the message the file was posted in, for citing it.
    pub link: Option<String>,
}

/// What the adapters hand to the core.
#[derive(Debug, Clone)]
pub enum ChatEvent {
    /// Someone asked: a mention, a reply to the bot, a message in the bot's thread.
    Question {
        origin: Origin,
        text: String,
        /// The thread or reply chain the question continues, if any.
        conversation: Option<String>,
        /// The bot's message the question replies to, or the answer message its thread was
        /// opened on: when that message belongs to an answer, the question continues that
        /// answer's conversation rather than `conversation`, however deep the chain.
        continues: Option<MessageRef>,
        /// Files attached to the question: read for its answer (and learned, as
        /// `ChatEvent::Files`, where the channel learns files).
        attachments: Vec<PostedFile>,
    },
    /// A message not addressed to the bot in a thread opened on the message `opened_on` (on
    /// Discord a thread started from a message has that message's id): a question in that
    /// answer's conversation if `opened_on` is one of the bot's answer messages, no mention
    /// needed; ignored otherwise.
    InThread {
        origin: Origin,
        text: String,
        opened_on: MessageRef,
        /// Files attached to the message: read for the answer when it is a question.
        attachments: Vec<PostedFile>,
    },
    /// Files were posted in a channel.
    Files {
        origin: Origin,
        files: Vec<PostedFile>,
    },
    /// Someone said something, not to the bot: learned where the channel learns messages.
    Said { origin: Origin, said: Said },
    /// A message was edited: its new text replaces what was learned.
    Edited {
        tenant: TenantKey,
        key: String,
        text: String,
    },
    /// Messages, a thread or a channel were deleted: what was learned from them is forgotten.
    Deleted { tenant: TenantKey, gone: Gone },
    /// A channel is (or is no longer) restricted: not readable by every member of the tenant.
    Visibility {
        tenant: TenantKey,
        channel: ChannelKey,
        restricted: bool,
    },
}

/// What the core did with an event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Handled {
    /// Queued as an `answer` job behind this placeholder (`None`: the platform refused it for
    /// now; the job posts it).
    Asked {
        job: JobId,
        placeholder: Option<MessageRef>,
    },
    /// The channel has no brain for this (told the asker, or nothing to do for files).
    Unbound,
    /// Files queued for ingestion (or already known): how many.
    Files(usize),
    /// Seen before (a replay, a retry, another gateway replica): nothing done.
    Duplicate,
    /// Not for the bot: a message in a thread that was not opened on one of its answers.
    Ignored,
    /// A message recorded (or its edit or deletion): its conversation is learned again.
    Learned,
}

/// Why an event could not be handled (the platform may retry it).
#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Platform(#[from] PlatformError),
    #[error("the knowledge store is unavailable: {0}")]
    Index(String),
}

impl GatewayError {
    /// What the person who ran a command is told: which part failed and what to do, never the
    /// error's own text (driver messages, addresses, SQL), which goes to the log.
    pub fn user_message(&self) -> &'static str {
        match self {
            GatewayError::Store(_) => {
                "Something went wrong: engram's database is unavailable right now. \
                 Please try again in a minute."
            }
            GatewayError::Platform(_) => {
                "Something went wrong: the chat platform did not accept engram's request. \
                 Please try again."
            }
            GatewayError::Index(_) => {
                "Something went wrong: the knowledge store is unavailable right now. \
                 Please try again later."
            }
        }
    }
}

/// The gateway core for one platform.
#[derive(Debug, Clone)]
pub struct Gateway {
    pub store: Arc<dyn Store>,
    /// For `/brain forget`.
    pub index: Arc<dyn Index>,
    pub outlet: Outlet,
    pub ingest: IngestConfig,
    /// Attempts of the jobs it queues (`jobs.max_attempts`).
    pub max_attempts: u32,
    /// This process's counters (votes are counted where they are recorded).
    pub metrics: Arc<crate::telemetry::Metrics>,
    /// `[conversations] enabled`: people's messages may be learned at all.
    pub learn_messages: bool,
    /// The configured caps, for `/brain budget` and `/brain info`.
    pub budgets: BudgetsConfig,
}

impl Gateway {
    /// Acts on an event once, however often the platform delivers it.
    pub async fn handle(&self, event: ChatEvent) -> Result<Handled, GatewayError> {
        // Conversation knowledge is recorded idempotently: no hold needed, and a store that is
        // restarting delays the event rather than dropping it (the platform does not send it
        // again).
        let event = match event {
            event @ (ChatEvent::Said { .. }
            | ChatEvent::Edited { .. }
            | ChatEvent::Deleted { .. }
            | ChatEvent::Visibility { .. }) => return self.conversation_event(event).await,
            other => other,
        };
        let event = match event {
            // Ordinary talk in threads is looked at, never recorded: only a thread opened on an
            // answer makes a message a question.
            ChatEvent::InThread {
                origin,
                text,
                opened_on,
                attachments,
            } => match self.thread_conversation(&origin, &opened_on).await? {
                Some(conversation) => ChatEvent::Question {
                    origin,
                    text,
                    conversation: Some(conversation),
                    continues: None,
                    attachments,
                },
                None => return Ok(Handled::Ignored),
            },
            other => other,
        };
        let origin = match &event {
            ChatEvent::Question { origin, .. }
            | ChatEvent::Files { origin, .. }
            | ChatEvent::InThread { origin, .. }
            | ChatEvent::Said { origin, .. } => origin,
            ChatEvent::Edited { .. } | ChatEvent::Deleted { .. } | ChatEvent::Visibility { .. } => {
                return Ok(Handled::Ignored)
            }
        };
        let (platform, event_id) = (origin.platform.clone(), origin.event_id.clone());
        let handler = crate::worker::worker_name("gateway");
        if !self.hold(&platform, &event_id, &handler).await? {
            return Ok(Handled::Duplicate);
        }
        // Renewed while this gateway acts, so another one with the same event waits for it,
        // and takes it over only if this one dies.
        let renewing = tokio_util::sync::CancellationToken::new();
        let _stop_renewing = renewing.clone().drop_guard();
        tokio::spawn({
            let (store, platform, event_id, handler) = (
                self.store.clone(),
                platform.clone(),
                event_id.clone(),
                handler.clone(),
            );
            async move {
                loop {
                    tokio::select! {
                        () = renewing.cancelled() => return,
                        () = tokio::time::sleep(EVENT_HOLD / 3) => {}
                    }
                    match store
                        .hold_event(&platform, &event_id, &handler, EVENT_HOLD)
                        .await
                    {
                        Ok(true) => {}
                        Ok(false) => return,
                        Err(error) => tracing::warn!(%error, "cannot renew an event's hold"),
                    }
                }
            }
        });
        let result = self.act(event).await;
        // Acted on: recorded as such. Not acted on (the platform or the store failed for
        // good): let go, so the platform's retry of it is acted on.
        let handled = result.is_ok();
        let ended = patiently(STORE_PATIENCE, "record an event as handled", || {
            self.store
                .end_event_hold(&platform, &event_id, &handler, handled)
        })
        .await;
        if let Err(error) = ended {
            tracing::warn!(%error, "cannot end an event's hold; it runs out by itself");
        }
        result
    }

    /// A conversation event, tried again while the store is unavailable (up to
    /// `STORE_PATIENCE`).
    async fn conversation_event(&self, event: ChatEvent) -> Result<Handled, GatewayError> {
        let deadline = tokio::time::Instant::now() + STORE_PATIENCE;
        let mut pause = Duration::from_millis(250);
        loop {
            let result = match event.clone() {
                ChatEvent::Said { origin, said } => self.said(&origin, said).await,
                ChatEvent::Edited { tenant, key, text } => self.edited(&tenant, &key, &text).await,
                ChatEvent::Deleted { tenant, gone } => self.gone(&tenant, gone).await,
                ChatEvent::Visibility {
                    tenant,
                    channel,
                    restricted,
                } => self.visibility(&tenant, &channel, restricted).await,
                _ => Ok(Handled::Ignored),
            };
            match result {
                Err(GatewayError::Store(error))
                    if error.is_transient() && tokio::time::Instant::now() + pause < deadline =>
                {
                    tracing::warn!(%error, "the store is unavailable; trying the event again");
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(Duration::from_secs(2));
                }
                result => return result,
            }
        }
    }

    /// Takes the event to act on (`true`), or finds it acted on (`false`). While another
    /// gateway holds it (both received it), waits: for it to be acted on, or for the other
    /// gateway's hold to run out when it died mid-way. A store that is restarting delays
    /// the event instead of dropping it (the platform does not deliver it again).
    async fn hold(
        &self,
        platform: &str,
        event_id: &str,
        handler: &str,
    ) -> Result<bool, GatewayError> {
        let deadline = tokio::time::Instant::now() + HOLD_WAIT;
        loop {
            let claim = patiently(STORE_PATIENCE, "record an event", || {
                self.store
                    .claim_event(platform, event_id, handler, EVENT_HOLD)
            })
            .await?;
            match claim {
                EventClaim::Claimed => return Ok(true),
                EventClaim::Handled => return Ok(false),
                EventClaim::HeldElsewhere if tokio::time::Instant::now() < deadline => {
                    tokio::time::sleep(HOLD_POLL).await;
                }
                EventClaim::HeldElsewhere => {
                    tracing::warn!(
                        event_id,
                        "another gateway has held this event for too long; leaving it to it"
                    );
                    return Ok(false);
                }
            }
        }
    }

    /// Acts on an event this gateway holds.
    async fn act(&self, event: ChatEvent) -> Result<Handled, GatewayError> {
        match event {
            ChatEvent::Question {
                origin,
                text,
                conversation,
                continues,
                attachments,
            } => {
                self.question(origin, text, conversation, continues, attachments)
                    .await
            }
            ChatEvent::Files { origin, files } => self.files(origin, files).await,
            // Turned into a question above when it is one; conversation events are handled
            // before any hold.
            ChatEvent::InThread { .. }
            | ChatEvent::Said { .. }
            | ChatEvent::Edited { .. }
            | ChatEvent::Deleted { .. }
            | ChatEvent::Visibility { .. } => Ok(Handled::Ignored),
        }
    }
}

/// How long a gateway's hold on an event lasts unless renewed (every third of it): a gateway
/// with the same event takes it over this long after the holder died.
const EVENT_HOLD: Duration = Duration::from_secs(10);
/// How often a gateway waiting on another's hold looks again.
const HOLD_POLL: Duration = Duration::from_secs(1);
/// How long a gateway waits on another's renewed hold before leaving the event to it.
const HOLD_WAIT: Duration = Duration::from_secs(10 * 60);
