//! The embedded store: one SQLite file in WAL mode. Every write goes through a single
//! connection (SQLite has one writer anyway; queueing in the pool beats spinning on
//! `SQLITE_BUSY`), reads through a pool; wake-ups are an in-process `Notify`.

use std::path::Path;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use tokio::sync::Notify;

use super::rows::{
    brain_from_row, count, document_from_row, impl_store, job_from_row, version_from_row, Reaper,
    BRAIN_COLUMNS, DOCUMENT_COLUMNS, JOB_COLUMNS, REAP_EXPIRED, VERSION_COLUMNS,
};
use super::{StoreError, StoreResult, StoredTurn, UsageRecord, UsageTotal, SQLITE_MIGRATIONS};
use crate::brain::{
    AddedDocument, Brain, BrainId, BrainName, BrainStats, Document, DocumentId, NewDocument,
    TenantId, TenantKey,
};
use crate::clock::now_ms;
use crate::config::{StoreBackend, StoreConfig};
use crate::jobs::{
    Enqueued, Job, JobId, JobKind, JobState, Lease, NewJob, QueueDepth, RetryOutcome,
};

#[derive(Debug)]
pub struct SqliteStore {
    writer: SqlitePool,
    readers: SqlitePool,
    wakeups: Arc<Notify>,
    ends: Arc<Notify>,
    reaper: Reaper,
}

impl SqliteStore {
    /// Taken first by the version switch: SQLite has one writer, so this only reads.
    const LOCK_BRAIN: &'static str = "SELECT id FROM brains WHERE id = $1";
    /// Takes the oldest due job of kind `$4` (`$1` lease end, `$2` worker, `$3` now).
    const CLAIM: &'static str = "UPDATE jobs SET state = 'running', attempts = attempts + 1, \
         lease_until = $1, worker = $2, updated_at = $3 \
         WHERE id = (SELECT id FROM jobs WHERE kind = $4 AND state IN ('queued', 'failed') \
                     AND run_at <= $3 ORDER BY run_at, id LIMIT 1) \
         RETURNING id, kind, payload, state, attempts, max_attempts, run_at, lease_until, \
                   worker, dedupe_key, last_error, created_at, updated_at";

    /// Opens (creating if missing) the database file a `sqlite://` URL names.
    pub async fn connect(config: &StoreConfig) -> StoreResult<Self> {
        let url = config.url.expose();
        let path = config.url.sqlite_path().unwrap_or(Path::new(""));
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent).map_err(|error| {
                StoreError::Unavailable(format!("cannot create {}: {error}", parent.display()))
            })?;
        }
        let busy_timeout = Duration::from_millis(config.busy_timeout_ms);
        let options = SqliteConnectOptions::from_str(url)
            .map_err(|error| StoreError::Unavailable(format!("bad store.url: {error}")))?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(busy_timeout)
            .foreign_keys(true);
        let writer = SqlitePoolOptions::new()
            .max_connections(1)
            .acquire_timeout(busy_timeout)
            .connect_with(options.clone())
            .await?;
        let readers = SqlitePoolOptions::new()
            .max_connections(config.max_connections)
            .acquire_timeout(busy_timeout)
            .connect_with(options)
            .await?;
        Ok(Self {
            writer,
            readers,
            wakeups: Arc::new(Notify::new()),
            ends: Arc::new(Notify::new()),
            reaper: Reaper::default(),
        })
    }

    fn reader(&self) -> &SqlitePool {
        &self.readers
    }

    fn writer(&self) -> &SqlitePool {
        &self.writer
    }

    fn after_change(&self) {
        self.wakeups.notify_waiters();
    }

    fn subscribe(&self) -> Arc<Notify> {
        self.wakeups.clone()
    }

    fn after_end(&self) {
        self.ends.notify_waiters();
    }

    fn subscribe_ends(&self) -> Arc<Notify> {
        self.ends.clone()
    }
}

impl_store!(SqliteStore {
    fn backend(&self) -> StoreBackend {
        StoreBackend::Sqlite
    }

    async fn migrate(&self) -> StoreResult<()> {
        SQLITE_MIGRATIONS.run(&self.writer).await?;
        Ok(())
    }

    async fn applied_migrations(&self) -> StoreResult<Vec<i64>> {
        Ok(sqlx::query_scalar("SELECT version FROM _sqlx_migrations WHERE success ORDER BY version")
            .fetch_all(&self.readers)
            .await?)
    }
});
