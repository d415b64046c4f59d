//! The scale-out store: PostgreSQL, shared by any number of engram processes. Claims use
//! `FOR UPDATE SKIP LOCKED`; a trigger NOTIFYs `engram_jobs` and each process LISTENs.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use sqlx::postgres::{PgListener, PgPool, PgPoolOptions};
use tokio::sync::Notify;

use super::rows::{
    brain_from_row, count, document_from_row, impl_store, job_from_row, version_from_row, Reaper,
    BRAIN_COLUMNS, DOCUMENT_COLUMNS, JOB_COLUMNS, REAP_EXPIRED, VERSION_COLUMNS,
};
use super::{StoreError, StoreResult, StoredTurn, UsageRecord, UsageTotal, POSTGRES_MIGRATIONS};
use crate::brain::{
    AddedDocument, Brain, BrainId, BrainName, BrainStats, Document, DocumentId, NewDocument,
    TenantId, TenantKey,
};
use crate::clock::now_ms;
use crate::config::{StoreBackend, StoreConfig};
use crate::jobs::{
    Enqueued, Job, JobId, JobKind, JobState, Lease, NewJob, QueueDepth, RetryOutcome,
};

/// The channel the `jobs_notify` trigger (migration 0001) notifies.
const JOBS_CHANNEL: &str = "engram_jobs";
/// The channel the `job_ends_notify` trigger (migration 0010) notifies when a job ends.
const ENDS_CHANNEL: &str = "engram_job_ends";

#[derive(Debug)]
pub struct PostgresStore {
    pool: PgPool,
    wakeups: Arc<Notify>,
    ends: Arc<Notify>,
    reaper: Reaper,
    /// Started on the first `wakeups()` or `job_ends()` call, on the runtime that made it.
    listener: OnceLock<tokio::task::JoinHandle<()>>,
}

impl PostgresStore {
    /// Taken first by the version switch, so that two versions of one brain's documents
    /// switching at once retire each other's rows one after the other.
    const LOCK_BRAIN: &'static str = "SELECT id FROM brains WHERE id = $1 FOR UPDATE";
    /// Takes the oldest due job of kind `$4` (`$1` lease end, `$2` worker, `$3` now); rows
    /// another worker is claiming are skipped, not waited for.
    const CLAIM: &'static str = "UPDATE jobs SET state = 'running', attempts = attempts + 1, \
         lease_until = $1, worker = $2, updated_at = $3 \
         WHERE id = (SELECT id FROM jobs WHERE kind = $4 AND state IN ('queued', 'failed') \
                     AND run_at <= $3 ORDER BY run_at, id LIMIT 1 FOR UPDATE SKIP LOCKED) \
         RETURNING id, kind, payload, state, attempts, max_attempts, run_at, lease_until, \
                   worker, dedupe_key, last_error, created_at, updated_at";

    pub async fn connect(config: &StoreConfig) -> StoreResult<Self> {
        let pool = PgPoolOptions::new()
            // One more than asked for: the LISTEN connection holds one for good.
            .max_connections(config.max_connections + 1)
            .acquire_timeout(Duration::from_millis(config.busy_timeout_ms))
            .connect(config.url.expose())
            .await
            .map_err(|error| match StoreError::from(error) {
                StoreError::Database(inner) => StoreError::Unavailable(inner.to_string()),
                other => other,
            })?;
        Ok(Self {
            pool,
            wakeups: Arc::new(Notify::new()),
            ends: Arc::new(Notify::new()),
            reaper: Reaper::default(),
            listener: OnceLock::new(),
        })
    }

    fn reader(&self) -> &PgPool {
        &self.pool
    }

    fn writer(&self) -> &PgPool {
        &self.pool
    }

    /// Nothing to do: the `jobs_notify` trigger notifies every process, this one included.
    fn after_change(&self) {}

    /// Starts listening (once) on the current runtime.
    fn subscribe(&self) -> Arc<Notify> {
        self.start_listening();
        self.wakeups.clone()
    }

    /// Nothing to do: the `job_ends_notify` trigger notifies every process, this one included.
    fn after_end(&self) {}

    /// Starts listening (once) on the current runtime.
    fn subscribe_ends(&self) -> Arc<Notify> {
        self.start_listening();
        self.ends.clone()
    }

    fn start_listening(&self) {
        self.listener.get_or_init(|| {
            tokio::spawn(listen(
                self.pool.clone(),
                self.wakeups.clone(),
                self.ends.clone(),
            ))
        });
    }
}

/// Forwards `engram_jobs` and `engram_job_ends` notifications to the in-process `Notify`s.
/// After a lost connection it wakes everyone too, since notifications may have been missed
/// meanwhile.
async fn listen(pool: PgPool, wakeups: Arc<Notify>, ends: Arc<Notify>) {
    let wake_all = || {
        wakeups.notify_waiters();
        ends.notify_waiters();
    };
    loop {
        let mut listener = match PgListener::connect_with(&pool).await {
            Ok(listener) => listener,
            Err(error) => {
                tracing::warn!(%error, "cannot LISTEN for job wake-ups; retrying in 1 s");
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        if let Err(error) = listener.listen_all([JOBS_CHANNEL, ENDS_CHANNEL]).await {
            tracing::warn!(%error, "LISTEN {JOBS_CHANNEL} failed; retrying in 1 s");
            tokio::time::sleep(Duration::from_secs(1)).await;
            continue;
        }
        // Anything enqueued or ended before LISTEN took effect was not announced: look again.
        wake_all();
        loop {
            match listener.try_recv().await {
                // `None`: the connection was lost and re-established; we may have missed some.
                Ok(Some(notification)) if notification.channel() == ENDS_CHANNEL => {
                    ends.notify_waiters();
                }
                Ok(Some(_)) => wakeups.notify_waiters(),
                Ok(None) => wake_all(),
                Err(sqlx::Error::PoolClosed) => return,
                Err(error) => {
                    tracing::warn!(%error, "job wake-up listener lost; reconnecting");
                    wake_all();
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    break;
                }
            }
        }
    }
}

impl Drop for PostgresStore {
    fn drop(&mut self) {
        if let Some(listener) = self.listener.get() {
            listener.abort();
        }
    }
}

impl_store!(PostgresStore {
    fn backend(&self) -> StoreBackend {
        StoreBackend::Postgres
    }

    async fn migrate(&self) -> StoreResult<()> {
        POSTGRES_MIGRATIONS.run(&self.pool).await?;
        Ok(())
    }

    async fn applied_migrations(&self) -> StoreResult<Vec<i64>> {
        Ok(sqlx::query_scalar("SELECT version FROM _sqlx_migrations WHERE success ORDER BY version")
            .fetch_all(&self.pool)
            .await?)
    }
});
