//! The store: one `Store` trait over SQLite (embedded default) and PostgreSQL (scale-out),
//! holding tenants, brains, documents, the durable job queue and its wake-ups. The only SQL.

pub mod conversations;
pub mod history;
mod postgres;
pub(crate) mod rows;
mod sqlite;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::Notify;

use crate::brain::{
    AddedDocument, Binding, BindingMode, Brain, BrainId, BrainName, BrainStats, Document,
    DocumentId, DocumentVersion, NewDocument, TenantId, TenantKey,
};
use crate::config::{StoreBackend, StoreConfig};
use crate::jobs::{
    Enqueued, Job, JobId, JobKind, JobState, Lease, NewJob, QueueDepth, RetryOutcome,
};

pub use postgres::PostgresStore;
pub use sqlite::SqliteStore;

/// Embedded migrations, one folder per dialect with the same versions.
pub static SQLITE_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("migrations/sqlite");
pub static POSTGRES_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("migrations/postgres");

/// Why a store call failed; `is_transient` says whether trying again later may help.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("the store is unreachable: {0}")]
    Unavailable(String),
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    NotFound(String),
    #[error("migrations failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("stored data is not what engram expects: {0}")]
    Corrupt(String),
    /// The disk under the store is full: nothing was written, and writes work again once
    /// there is room.
    #[error("the store's disk is full; free some space (nothing was written): {0}")]
    Full(String),
    #[error("database error: {0}")]
    Database(sqlx::Error),
}

impl StoreError {
    /// Worth trying again later: the store could not be reached, or its disk was full.
    pub fn is_transient(&self) -> bool {
        matches!(self, StoreError::Unavailable(_) | StoreError::Full(_))
    }
}

impl crate::worker::Transience for StoreError {
    fn is_transient(&self) -> bool {
        StoreError::is_transient(self)
    }
}

/// Whether a database error says the disk is full (SQLite `SQLITE_FULL`, PostgreSQL
/// `disk_full`).
pub fn is_disk_full(error: &sqlx::Error) -> bool {
    match error {
        sqlx::Error::Database(db) => {
            let code = db.code();
            let code = code.as_deref();
            // SQLite's extended codes keep the primary code (13) in their low byte.
            code == Some("53100")
                || code
                    .and_then(|code| code.parse::<i64>().ok())
                    .is_some_and(|code| code & 0xff == 13)
        }
        _ => false,
    }
}

/// Whether a database error means "cannot reach the database" (worth trying again later)
/// rather than "the statement failed": no connection, an SQLite database another writer holds, or a server that is shutting down,
/// starting up or restarting (PostgreSQL's connection-exception class `08`, and `57P01`
/// `admin_shutdown`, `57P02` `crash_shutdown`, `57P03` `cannot_connect_now`), which ends the
/// connection a statement ran on rather than the statement's own doing.
pub fn is_unreachable(error: &sqlx::Error) -> bool {
    match error {
        sqlx::Error::Io(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::Tls(_)
        | sqlx::Error::WorkerCrashed => true,
        // SQLite's `SQLITE_BUSY` (5) and `SQLITE_LOCKED` (6), extended codes included: another
        // writer holds the database for now.
        sqlx::Error::Database(db) => db.code().is_some_and(|code| {
            code.starts_with("08")
                || code.starts_with("57P")
                || code
                    .parse::<i64>()
                    .is_ok_and(|code| matches!(code & 0xff, 5 | 6))
        }),
        _ => false,
    }
}

/// How long event handling and job bookkeeping wait for an unreachable store to come back
/// before giving up on a call (`patiently`).
pub const STORE_PATIENCE: Duration = Duration::from_secs(60);

/// Runs `call` until it succeeds, fails for good, or the store has been unreachable for
/// `patience`: a store that restarts (a PostgreSQL failover or upgrade) delays the work
/// instead of losing it. Waits 250 ms after the first failure, doubling to 2 s.
pub async fn patiently<T, F, Fut>(patience: Duration, what: &str, mut call: F) -> StoreResult<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = StoreResult<T>>,
{
    let deadline = tokio::time::Instant::now() + patience;
    let mut pause = Duration::from_millis(250);
    let mut warned = false;
    loop {
        match call().await {
            Err(error)
                if error.is_transient() && tokio::time::Instant::now() + pause < deadline =>
            {
                if !warned {
                    tracing::warn!(%error, what, "the store is unavailable; trying again");
                    warned = true;
                }
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(Duration::from_secs(2));
            }
            result => {
                if warned && result.is_ok() {
                    tracing::info!(what, "the store is back");
                }
                return result;
            }
        }
    }
}

impl From<sqlx::Error> for StoreError {
    fn from(error: sqlx::Error) -> Self {
        match error {
            error if is_unreachable(&error) => StoreError::Unavailable(error.to_string()),
            error if is_disk_full(&error) => StoreError::Full(error.to_string()),
            sqlx::Error::Database(ref db) if db.is_unique_violation() => {
                StoreError::Conflict(db.message().to_string())
            }
            other => StoreError::Database(other),
        }
    }
}

pub type StoreResult<T> = Result<T, StoreError>;

/// Tokens one LLM call used, and what they cost.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsageRecord {
    pub tenant: TenantId,
    pub brain: Option<BrainId>,
    /// The platform user who asked (`local` from the shell).
    pub user: String,
    pub model: String,
    pub prompt_tokens: u32,
    pub completion_tokens: u32,
    /// Millionths of a US dollar, from `llm.prices`.
    pub cost_micros: i64,
}

/// One stored turn of a conversation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredTurn {
    /// `user` or `assistant`.
    pub role: String,
    pub user: Option<String>,
    pub text: String,
}

/// A tenant's usage of one model over a period.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct UsageTotal {
    pub model: String,
    pub calls: u64,
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    pub cost_micros: i64,
}

/// One answer as `engram usage` counts it: its usage row (model `''` and no tokens when no LLM
/// call was made), with where it was asked, how it ended, what it was about and its phases.
#[derive(Debug, Clone, PartialEq)]
pub struct AnswerRecord {
    pub usage: UsageRecord,
    /// `discord`, `slack`, or `cli` for `engram ask`.
    pub platform: String,
    /// How the answer ended (`telemetry::AnswerOutcome`).
    pub outcome: String,
    pub question: String,
    /// The files the answer cites, in citation order.
    pub sources: Vec<String>,
    pub phases: Phases,
}

/// Where an answer's time went, in milliseconds; `None` for a phase it did not have (no LLM
/// call has no first token).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Phases {
    /// From the question's job being queued to its answer starting.
    pub queue_ms: Option<i64>,
    pub retrieval_ms: Option<i64>,
    /// From the LLM request to its first token.
    pub first_token_ms: Option<i64>,
    /// From the question being queued to the answer's last word.
    pub total_ms: Option<i64>,
    /// Completion tokens per second after the first token.
    pub tokens_per_s: Option<f64>,
}

/// A spending cap.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum CapKind {
    /// The tenant's money per month (`budgets.monthly_usd_per_tenant`).
    Tenant,
    /// The brain's money per month (its own, or `budgets.monthly_usd_per_brain`).
    Brain,
    /// A person's LLM answers per day (`budgets.daily_questions_per_user`).
    User,
}

/// The caps in force for one answer: millionths of a US dollar a month, questions a day;
/// 0 = no cap.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Caps {
    pub tenant_micros: i64,
    pub brain_micros: i64,
    pub user_questions: i64,
    /// The share of a cap whose crossing is announced once per period.
    pub warn_at: f64,
}

impl Caps {
    pub fn any(&self) -> bool {
        self.tenant_micros > 0 || self.brain_micros > 0 || self.user_questions > 0
    }

    /// The limit of one cap (0 = none).
    pub fn limit(&self, cap: CapKind) -> i64 {
        match cap {
            CapKind::Tenant => self.tenant_micros,
            CapKind::Brain => self.brain_micros,
            CapKind::User => self.user_questions,
        }
    }
}

/// Who an answer's spending counts against.
#[derive(Debug, Clone, Copy)]
pub struct Spender<'a> {
    pub tenant: TenantId,
    pub brain: BrainId,
    /// The platform user (`local` from the shell).
    pub user: &'a str,
}

/// How much of a cap is used in its period: millionths of a dollar (settled and, when
/// reserving, reserved) or questions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CapUse {
    pub cap: CapKind,
    pub used: i64,
    pub limit: i64,
}

impl CapUse {
    pub fn ratio(&self) -> f64 {
        if self.limit <= 0 {
            0.0
        } else {
            self.used as f64 / self.limit as f64
        }
    }
}

/// What `Store::reserve_spending` decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reservation {
    /// The answer may call the LLM; settle with this reservation (`None`: nothing was held,
    /// as no money cap is in force).
    Granted(Option<i64>),
    /// A cap is reached: answer without the LLM.
    Capped(CapUse),
}

/// What `Store::record_answer` wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AnswerRecorded {
    /// The answer's id (its usage row), what votes refer to.
    pub id: i64,
    /// Each cap in force, as used after this answer.
    pub caps: Vec<CapUse>,
    /// The caps whose `warn_at` this answer crossed first in their period: announce them.
    pub warn: Vec<CapUse>,
}

/// Which answers `Store::usage_entries` returns.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct UsageFilter {
    pub tenant: Option<TenantId>,
    pub brain: Option<BrainId>,
    /// Unix ms; answers from then on.
    pub since: i64,
}

/// One answer's figures for `engram usage`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsageEntry {
    /// The tenant's key (`local`, `discord:<guild id>`, `slack:<team id>`).
    pub tenant: String,
    /// The brain's name; `None` when the brain was deleted.
    pub brain: Option<String>,
    pub user: Option<String>,
    /// `''` when no LLM call was made.
    pub model: String,
    pub created_at: i64,
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    pub cost_micros: i64,
    pub total_ms: Option<i64>,
    pub up: u64,
    pub down: u64,
}

/// How long engram keeps what it needs only for a while; [`Store::prune`] deletes older rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retention {
    /// Jobs that finished (`done`). Dead jobs stay with their reasons for `engram jobs`.
    pub done_jobs: Duration,
    /// Platform event ids already acted on: replays and retries come within minutes (Discord
    /// resumes) to an hour (Slack's retries).
    pub seen_events: Duration,
    /// Conversations (with their turns) since they were last used, and the answer messages
    /// that lead back to them since they were posted.
    pub conversations: Duration,
}

impl Default for Retention {
    fn default() -> Self {
        const DAY: Duration = Duration::from_secs(24 * 60 * 60);
        Self {
            done_jobs: 7 * DAY,
            seen_events: 2 * DAY,
            conversations: 90 * DAY,
        }
    }
}

/// How many rows one [`Store::prune`] deleted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Pruned {
    pub done_jobs: u64,
    pub seen_events: u64,
    pub conversations: u64,
    pub answer_messages: u64,
    /// Stored file bytes no pending or failed document needs.
    pub files: u64,
    /// Reservations of answers whose process died, and budget periods over 62 days old.
    pub budgets: u64,
}

impl Pruned {
    pub fn total(&self) -> u64 {
        self.done_jobs
            + self.seen_events
            + self.conversations
            + self.answer_messages
            + self.files
            + self.budgets
    }
}

/// Everything engram keeps, behind one interface with two real implementations.
///
/// Job updates after `claim` present the `Lease` they got; an update whose lease is no longer
/// current (the job was handed to another worker) changes nothing and returns `false`.
#[async_trait]
pub trait Store: Send + Sync + std::fmt::Debug {
    fn backend(&self) -> StoreBackend;

    /// Applies pending migrations.
    async fn migrate(&self) -> StoreResult<()>;
    /// Versions of the migrations applied to this database.
    async fn applied_migrations(&self) -> StoreResult<Vec<i64>>;
    /// A cheap round trip, for readiness checks.
    async fn ping(&self) -> StoreResult<()>;
    /// Closes the connections; later calls fail with `Unavailable`.
    async fn close(&self);

    /// The tenant with this key, created if new.
    async fn ensure_tenant(&self, key: &TenantKey) -> StoreResult<TenantId>;
    async fn find_tenant(&self, key: &TenantKey) -> StoreResult<Option<TenantId>>;
    /// A new brain; `Conflict` if the tenant already has one of that name.
    async fn create_brain(&self, tenant: TenantId, name: &BrainName) -> StoreResult<Brain>;
    async fn brains(&self, tenant: TenantId) -> StoreResult<Vec<Brain>>;
    async fn brain_by_name(&self, tenant: TenantId, name: &BrainName)
        -> StoreResult<Option<Brain>>;
    /// The brain with this id, only if it belongs to `tenant`.
    async fn brain(&self, tenant: TenantId, id: BrainId) -> StoreResult<Option<Brain>>;
    async fn brain_stats(&self, brain: BrainId) -> StoreResult<BrainStats>;
    /// Sets (or, with `None`, clears) a brain's own system prompt.
    async fn set_system_prompt(&self, brain: BrainId, prompt: Option<&str>) -> StoreResult<()>;
    /// Deletes a brain with its bindings, documents and chunks.
    async fn delete_brain(&self, brain: BrainId) -> StoreResult<bool>;

    /// Binds `channel` (of `tenant`) to `brain`, replacing its earlier binding. `NotFound` if
    /// the brain is not the tenant's: a channel is only ever bound to its own tenant's brains.
    async fn bind_channel(
        &self,
        tenant: TenantId,
        channel: &str,
        brain: BrainId,
        mode: BindingMode,
    ) -> StoreResult<Binding>;
    /// Removes the channel's binding; `false` if it had none.
    async fn unbind_channel(&self, tenant: TenantId, channel: &str) -> StoreResult<bool>;
    async fn binding(&self, tenant: TenantId, channel: &str) -> StoreResult<Option<Binding>>;
    /// Records a platform event as handled; `false` if it was already (a replay or a retry),
    /// so every event is acted on once even across gateway replicas.
    async fn first_sighting(&self, platform: &str, event_id: &str) -> StoreResult<bool>;
    /// Takes a platform event to act on, as `handler`, for `hold` (renewed with `hold_event`,
    /// ended with `end_event_hold`): new events, and events whose holder stopped renewing
    /// (a gateway that died mid-way), are `Claimed`.
    async fn claim_event(
        &self,
        platform: &str,
        event_id: &str,
        handler: &str,
        hold: Duration,
    ) -> StoreResult<EventClaim>;
    /// Extends `handler`'s hold on an event; `false` if it holds it no more.
    async fn hold_event(
        &self,
        platform: &str,
        event_id: &str,
        handler: &str,
        hold: Duration,
    ) -> StoreResult<bool>;
    /// Ends `handler`'s hold: the event is recorded as acted on (`handled`), or let go, so
    /// that a delivery of it again (a platform's retry) is acted on.
    async fn end_event_hold(
        &self,
        platform: &str,
        event_id: &str,
        handler: &str,
        handled: bool,
    ) -> StoreResult<()>;

    /// Adds a file to a brain as a pending document, or finds the document with the same bytes.
    /// A previously failed document becomes pending again.
    async fn add_document(&self, document: &NewDocument) -> StoreResult<AddedDocument>;
    async fn document(&self, id: DocumentId) -> StoreResult<Option<Document>>;
    async fn documents(&self, brain: BrainId) -> StoreResult<Vec<Document>>;
    /// Records the ingest job working on a document.
    async fn set_document_job(&self, id: DocumentId, job: JobId) -> StoreResult<()>;
    /// Marks a document failed with a reason a person can act on (unless it is indexed).
    async fn fail_document(&self, id: DocumentId, error: &str) -> StoreResult<()>;
    /// Marks a document of `brain` indexed with its counts and, in the same transaction,
    /// retires the older versions of its name in its scope: their rows move to the history
    /// (`document_history`), not yet purged, and their ids are returned so that the index can
    /// delete their chunks (`mark_versions_purged` then). `NotFound` if the document is not
    /// that brain's (or was replaced by a newer version meanwhile). For an index that keeps
    /// chunks outside the store (Qdrant) and hides documents that are not indexed; the
    /// embedded index does all of this in its own transaction.
    async fn mark_document_indexed(
        &self,
        brain: BrainId,
        id: DocumentId,
        counts: IndexedCounts,
    ) -> StoreResult<Vec<DocumentId>>;
    /// The brain's earlier versions of its documents, by name, scope and version.
    async fn document_history(&self, brain: BrainId) -> StoreResult<Vec<DocumentVersion>>;
    /// Ids of replaced versions whose chunks an index outside the store still has to delete.
    async fn unpurged_versions(&self, brain: BrainId) -> StoreResult<Vec<DocumentId>>;
    /// Records that the index deleted these replaced versions' chunks.
    async fn mark_versions_purged(&self, brain: BrainId, ids: &[DocumentId]) -> StoreResult<()>;
    /// Deletes the history of the name `file_name` in `scope` (every scope when `None`);
    /// returns how many versions it held.
    async fn forget_history(
        &self,
        brain: BrainId,
        scope: Option<&str>,
        file_name: &str,
    ) -> StoreResult<u64>;
    /// Which of these document ids are indexed documents of `brain`: what a search may show.
    async fn indexed_among(&self, brain: BrainId, ids: &[i64]) -> StoreResult<Vec<i64>>;
    /// Deletes a document of `brain` (and any chunk rows it has); `false` if there was none.
    async fn delete_document(&self, brain: BrainId, id: DocumentId) -> StoreResult<bool>;
    /// Records that the document's chunks now have vectors of `model` (`dimensions` wide) in
    /// the index. The brain records the model and width too when it had none, or when none of
    /// its indexed documents has vectors of another model any more.
    async fn record_embedding(
        &self,
        document: DocumentId,
        model: &str,
        dimensions: u32,
    ) -> StoreResult<()>;
    /// The embedding model and width the brain was indexed with, as recorded.
    async fn brain_embedding(&self, brain: BrainId) -> StoreResult<Option<(String, u32)>>;
    /// Indexed documents whose vectors are of another model than `model` (in `brain`, or in
    /// every brain). Documents embedded before models were recorded count as `model`'s.
    async fn stale_embeddings(
        &self,
        brain: Option<BrainId>,
        model: &str,
    ) -> StoreResult<Vec<DocumentId>>;
    /// Keeps a file's bytes until its documents are ingested.
    async fn put_file(&self, sha256: &str, bytes: &[u8]) -> StoreResult<()>;
    async fn file(&self, sha256: &str) -> StoreResult<Option<Vec<u8>>>;
    /// Drops a file's bytes once no pending or failed document needs them (a failed one's
    /// job may be retried).
    async fn release_file(&self, sha256: &str) -> StoreResult<()>;
    /// The size of a stored file, if its bytes are stored.
    async fn file_size(&self, sha256: &str) -> StoreResult<Option<u64>>;
    /// Bytes stored for failed documents (kept for retries), in all.
    async fn failed_file_bytes(&self) -> StoreResult<u64>;
    /// Drops a file's bytes unless a pending document needs them (a failed one's are given up
    /// past `ingest.kept_failed_bytes`).
    async fn drop_file_bytes(&self, sha256: &str) -> StoreResult<()>;

    /// Adds a turn to the conversation `key` (a platform thread or reply chain) of `tenant`,
    /// creating the conversation on its first turn.
    async fn append_turn(
        &self,
        tenant: TenantId,
        brain: BrainId,
        key: &str,
        turn: &StoredTurn,
    ) -> StoreResult<()>;
    /// The conversation's last `limit` turns, oldest first.
    async fn recent_turns(
        &self,
        tenant: TenantId,
        key: &str,
        limit: u32,
    ) -> StoreResult<Vec<StoredTurn>>;

    /// Records that the bot's message `message` in `channel` (of `tenant`) is part of the
    /// answer in conversation `conversation`: a placeholder or a continuation message.
    /// Recording it again replaces the conversation.
    async fn record_answer_message(
        &self,
        tenant: TenantId,
        channel: &str,
        message: &str,
        conversation: &str,
    ) -> StoreResult<()>;
    /// The conversation the bot's message `message` in `channel` (of `tenant`) answered in, if
    /// it is an answer message; a reply to it, or a thread opened on it, continues there.
    async fn answer_conversation(
        &self,
        tenant: TenantId,
        channel: &str,
        message: &str,
    ) -> StoreResult<Option<String>>;

    /// Deletes the rows `keep` says are no longer needed, as of `now` (Unix ms). Safe to run
    /// from several processes at once.
    async fn prune(&self, now: i64, keep: &Retention) -> StoreResult<Pruned>;

    /// Records the tokens of one LLM call.
    async fn record_usage(&self, usage: &UsageRecord) -> StoreResult<()>;
    /// A tenant's LLM usage per model since `since` (Unix ms); answers made without an LLM
    /// call are not counted.
    async fn usage_totals(&self, tenant: TenantId, since: i64) -> StoreResult<Vec<UsageTotal>>;
    /// Checks the caps before an LLM call, as of `now` (Unix ms), in one transaction that
    /// locks the spender's period rows (tenant, brain, user, in that order): counts the
    /// question against the person's day, then grants the call — holding `estimate_micros`
    /// against the tenant's and the brain's month until it is settled or `hold` passes — or
    /// names the cap reached. A money cap is reached when settled plus reserved spending
    /// meets it; so answers at once can overshoot it only by what they spend beyond their
    /// estimates.
    async fn reserve_spending(
        &self,
        spender: &Spender<'_>,
        caps: &Caps,
        estimate_micros: i64,
        now: i64,
        hold: Duration,
    ) -> StoreResult<Reservation>;
    /// Records one answer (its usage row) as of `now` and, in the same transaction, settles
    /// its spending: the reservation (if any) is dropped and the cost added to the tenant's
    /// and brain's month. Returns the answer's id, the caps' use, and the caps whose warning
    /// this answer is the first to cross in their period (recorded, so it is announced once
    /// across processes).
    async fn record_answer(
        &self,
        answer: &AnswerRecord,
        reservation: Option<i64>,
        caps: &Caps,
        now: i64,
    ) -> StoreResult<AnswerRecorded>;
    /// Sets (or, with `None`, clears) a brain's own monthly cap; `false` if there is no such
    /// brain.
    async fn set_brain_budget(&self, brain: BrainId, micros: Option<i64>) -> StoreResult<bool>;
    /// Records `user`'s vote (+1 or -1) on an answer of `tenant`, replacing their earlier one;
    /// `false` (nothing recorded) if the answer is not that tenant's.
    async fn record_vote(
        &self,
        tenant: TenantId,
        answer: i64,
        user: &str,
        vote: i8,
    ) -> StoreResult<bool>;
    /// Every answer `filter` selects, oldest first, with its votes.
    async fn usage_entries(&self, filter: &UsageFilter) -> StoreResult<Vec<UsageEntry>>;

    /// Records a message posted in a channel that learns its messages, in its unit (see
    /// [`conversations::UnitHint`]), and marks the unit changed; returns the unit. The same
    /// message again (a replay, a second gateway) is one message.
    async fn record_message(&self, message: &conversations::NewMessage) -> StoreResult<i64>;
    /// Records messages read from a channel's past in one transaction, as `record_message`
    /// does each; returns how many were not known before.
    async fn record_messages(&self, messages: &[conversations::NewMessage]) -> StoreResult<u64>;
    /// Replaces a recorded message's text; `false` if it is not recorded (or unchanged).
    async fn edit_message(
        &self,
        tenant: TenantId,
        key: &str,
        text: &str,
        edited_at: i64,
    ) -> StoreResult<bool>;
    /// Forgets recorded messages (and refuses to record them later: a delete may overtake the
    /// message); returns how many there were.
    async fn delete_messages(&self, tenant: TenantId, keys: &[String]) -> StoreResult<u64>;
    /// Forgets every message of a unit (a thread deleted); returns how many there were.
    async fn delete_conversation(&self, tenant: TenantId, unit_key: &str) -> StoreResult<u64>;
    /// Forgets the unit of `brain` the message `key` belongs to — whole for a thread or a reply
    /// chain, the message alone in a window of chatter; returns how many messages went.
    async fn forget_conversation_of(
        &self,
        tenant: TenantId,
        brain: BrainId,
        key: &str,
    ) -> StoreResult<u64>;
    /// Whether a channel is recorded as restricted.
    async fn is_restricted(&self, tenant: TenantId, channel: &str) -> StoreResult<bool>;
    /// Forgets every message recorded in a bound channel (the channel deleted).
    async fn delete_channel_conversations(
        &self,
        tenant: TenantId,
        channel: &str,
    ) -> StoreResult<u64>;
    /// Takes the changed unit that waited longest to learn it, for `lease`, as `worker`.
    async fn claim_unit(
        &self,
        worker: &str,
        lease: Duration,
    ) -> StoreResult<Option<conversations::UnitToLearn>>;
    /// Records a unit learned up to `revision`, held by `document` (`None`: nothing left);
    /// `false` if the lease was lost.
    async fn unit_learned(
        &self,
        unit: i64,
        worker: &str,
        revision: i64,
        document: Option<DocumentId>,
    ) -> StoreResult<bool>;
    /// Gives a unit back after a failure, to be tried again at `retry_at` (Unix ms).
    async fn unit_failed(
        &self,
        unit: i64,
        worker: &str,
        error: &str,
        retry_at: i64,
    ) -> StoreResult<()>;
    /// Turns learning a bound channel's messages on or off; `false` if it is not bound.
    async fn set_channel_messages(
        &self,
        tenant: TenantId,
        channel: &str,
        on: bool,
    ) -> StoreResult<bool>;
    /// What a brain learned from conversations: messages, threads, units, units changed.
    async fn conversation_stats(
        &self,
        brain: BrainId,
    ) -> StoreResult<conversations::ConversationStats>;
    /// Records whether a channel is restricted (not readable by every member of the tenant).
    async fn set_channel_restricted(
        &self,
        tenant: TenantId,
        channel: &str,
        restricted: bool,
    ) -> StoreResult<()>;
    /// The brain's documents learned in restricted channels other than `here` (the channel a
    /// question is asked in and the channel whose binding applies; `""` for none): what its
    /// retrieval must not see.
    async fn hidden_documents(
        &self,
        brain: BrainId,
        here: [&str; 2],
    ) -> StoreResult<Vec<DocumentId>>;
    /// Whether a bound channel learns its messages.
    async fn channel_learns_messages(&self, tenant: TenantId, channel: &str) -> StoreResult<bool>;

    /// Starts a read of a bound channel's past with the reader's first checkpoint; the read
    /// already running there (`Err`) if there is one.
    async fn start_history_read(
        &self,
        tenant: TenantId,
        brain: BrainId,
        channel: &str,
        since_ms: i64,
        state: &str,
    ) -> StoreResult<Result<i64, history::HistoryRead>>;
    /// Records the job that runs a read.
    async fn set_history_job(&self, read: i64, job: JobId) -> StoreResult<()>;
    async fn history_read(&self, read: i64) -> StoreResult<Option<history::HistoryRead>>;
    /// The reads these jobs run (for `engram jobs`).
    async fn history_reads_of_jobs(&self, jobs: &[JobId])
        -> StoreResult<Vec<history::HistoryRead>>;
    /// The channel's latest finished read.
    async fn last_history_read(
        &self,
        tenant: TenantId,
        channel: &str,
    ) -> StoreResult<Option<history::HistoryRead>>;
    /// Saves a read's checkpoint and counts; a status other than running ends it.
    async fn save_history_read(
        &self,
        read: i64,
        state: &str,
        counts: history::HistoryCounts,
        status: history::HistoryStatus,
    ) -> StoreResult<()>;

    /// Puts a job on the queue (or finds the one with the same dedupe key) and wakes workers.
    async fn enqueue(&self, job: &NewJob) -> StoreResult<Enqueued>;
    /// Takes the oldest due job of `kind` under a lease for `worker`. Jobs whose lease ran out
    /// are first put back (or dead-lettered when out of attempts).
    async fn claim(&self, kind: JobKind, worker: &str, lease: Duration)
        -> StoreResult<Option<Job>>;
    /// Extends a lease; `false` if it was lost.
    async fn heartbeat(&self, lease: &Lease, duration: Duration) -> StoreResult<bool>;
    async fn complete(&self, lease: &Lease) -> StoreResult<bool>;
    /// Records a failed attempt: retried at `retry_at` (Unix ms) or, when `None`, dead.
    async fn fail(&self, lease: &Lease, error: &str, retry_at: Option<i64>) -> StoreResult<bool>;
    /// Gives a job back without counting the attempt (shutdown).
    async fn release(&self, lease: &Lease) -> StoreResult<bool>;
    /// Requeues a failed or dead job with fresh attempts.
    async fn retry(&self, id: JobId) -> StoreResult<RetryOutcome>;
    async fn job(&self, id: JobId) -> StoreResult<Option<Job>>;
    /// Most recent jobs first.
    async fn jobs(&self, state: Option<JobState>, limit: u32) -> StoreResult<Vec<Job>>;
    /// Jobs of `kind` still to run or running, and those that ended at or after `since`
    /// (Unix ms): most recent first, at most `limit`.
    async fn jobs_alive_or_ended_since(
        &self,
        kind: JobKind,
        since: i64,
        limit: u32,
    ) -> StoreResult<Vec<Job>>;
    async fn queue_depths(&self) -> StoreResult<Vec<QueueDepth>>;
    /// When the next job of `kind` becomes claimable (a due time or a lease expiry), if any.
    async fn next_due(&self, kind: JobKind) -> StoreResult<Option<i64>>;
    /// Notified whenever a job may have become claimable.
    fn wakeups(&self) -> Arc<Notify>;
    /// Notified whenever a job has ended (done or dead), in this process or, on PostgreSQL,
    /// in any: what a posted file's report waits for.
    fn job_ends(&self) -> Arc<Notify>;
}

/// What `Store::claim_event` found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventClaim {
    /// This handler holds the event now: act on it.
    Claimed,
    /// Acted on already: a replay, a retry, another gateway's copy.
    Handled,
    /// Another handler is acting on it and renews its hold: wait, then look again.
    HeldElsewhere,
}

/// What `Store::mark_document_indexed` records about an indexed document.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IndexedCounts {
    pub pages: u32,
    pub ocr_pages: u32,
    pub chunks: u32,
}

/// Opens the store a config names, creating the SQLite file and its folder if needed.
/// Does not migrate; call `Store::migrate`.
pub async fn connect(config: &StoreConfig) -> StoreResult<Arc<dyn Store>> {
    match config.url.backend() {
        Some(StoreBackend::Sqlite) => Ok(Arc::new(SqliteStore::connect(config).await?)),
        Some(StoreBackend::Postgres) => Ok(Arc::new(PostgresStore::connect(config).await?)),
        None => Err(StoreError::Unavailable(format!(
            "unsupported store URL {}",
            config.url
        ))),
    }
}

/// Opens and migrates.
pub async fn open(config: &StoreConfig) -> StoreResult<Arc<dyn Store>> {
    let store = connect(config).await?;
    store.migrate().await?;
    Ok(store)
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU32, Ordering};

    use super::*;

    #[tokio::test(start_paused = true)]
    async fn patiently_waits_out_an_unreachable_store_and_nothing_else() {
        let calls = AtomicU32::new(0);
        let back_on_the_third = patiently(STORE_PATIENCE, "test", || async {
            match calls.fetch_add(1, Ordering::SeqCst) {
                0 | 1 => Err(StoreError::Unavailable("connection refused".into())),
                _ => Ok(7),
            }
        })
        .await;
        assert_eq!(back_on_the_third.unwrap(), 7);
        assert_eq!(calls.load(Ordering::SeqCst), 3);

        let calls = AtomicU32::new(0);
        let refused: StoreResult<()> = patiently(STORE_PATIENCE, "test", || async {
            calls.fetch_add(1, Ordering::SeqCst);
            Err(StoreError::Conflict("taken".into()))
        })
        .await;
        assert!(matches!(refused, Err(StoreError::Conflict(_))));
        assert_eq!(calls.load(Ordering::SeqCst), 1, "not retried");

        let started = tokio::time::Instant::now();
        let gone: StoreResult<()> = patiently(Duration::from_secs(10), "test", || async {
            Err(StoreError::Unavailable("connection refused".into()))
        })
        .await;
        assert!(matches!(gone, Err(StoreError::Unavailable(_))));
        let waited = started.elapsed();
        assert!(
            waited <= Duration::from_secs(10) && waited >= Duration::from_secs(7),
            "gives up within its patience: {waited:?}"
        );
    }
}
