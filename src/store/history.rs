//! `/brain history` reads in the store: one row per read of a channel's past, holding its
//! checkpoint (opaque to the store: the reader's JSON) and its counts, so a read continues
//! where it stopped — after a restart, or on another process. The SQL is written once for both
//! dialects (`history_methods!`, expanded inside `impl_store!`).

use crate::brain::{BrainId, TenantId};
use crate::jobs::JobId;

/// A read of a channel's past.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HistoryRead {
    pub id: i64,
    pub tenant: TenantId,
    pub brain: BrainId,
    /// The bound channel it reads.
    pub channel: String,
    pub job: Option<JobId>,
    /// Unix ms: messages older than this are not read (0: all of them).
    pub since_ms: i64,
    /// The reader's checkpoint.
    pub state: String,
    pub counts: HistoryCounts,
    pub status: HistoryStatus,
    pub started_at: i64,
    pub updated_at: i64,
    pub finished_at: Option<i64>,
}

/// What a read has learned so far.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct HistoryCounts {
    /// Messages recorded that were not known before.
    pub messages: u64,
    /// Files queued for learning.
    pub files: u64,
    /// Threads read.
    pub threads: u64,
}

/// Where a read is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HistoryStatus {
    Running,
    Done,
    Failed,
}

impl HistoryStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            HistoryStatus::Running => "running",
            HistoryStatus::Done => "done",
            HistoryStatus::Failed => "failed",
        }
    }

    fn parse(value: &str) -> Self {
        match value {
            "done" => HistoryStatus::Done,
            "failed" => HistoryStatus::Failed,
            _ => HistoryStatus::Running,
        }
    }
}

/// A `history_reads` row as selected by [`HISTORY_COLUMNS`].
pub(crate) type HistoryRow = (
    i64,
    i64,
    i64,
    String,
    Option<i64>,
    i64,
    String,
    i64,
    i64,
    i64,
    String,
    i64,
    i64,
    Option<i64>,
);

pub(crate) const HISTORY_COLUMNS: &str = "id, tenant_id, brain_id, channel, job_id, since_ms, \
    state, messages, files, threads, status, started_at, updated_at, finished_at";

pub(crate) fn history_from_row(row: HistoryRow) -> HistoryRead {
    let count = |n: i64| u64::try_from(n).unwrap_or(0);
    let (id, tenant, brain, channel, job, since_ms, state, messages, files, threads, status) = (
        row.0, row.1, row.2, row.3, row.4, row.5, row.6, row.7, row.8, row.9, row.10,
    );
    HistoryRead {
        id,
        tenant: TenantId(tenant),
        brain: BrainId(brain),
        channel,
        job,
        since_ms,
        state,
        counts: HistoryCounts {
            messages: count(messages),
            files: count(files),
            threads: count(threads),
        },
        status: HistoryStatus::parse(&status),
        started_at: row.11,
        updated_at: row.12,
        finished_at: row.13,
    }
}

/// The history methods of a store back-end (inherent, named `history_*`; the `Store` methods
/// `impl_store!` writes call them).
macro_rules! history_methods {
    ($store:ty) => {
        impl $store {
            pub(super) async fn history_start(
                &self,
                tenant: TenantId,
                brain: BrainId,
                channel: &str,
                since_ms: i64,
                state: &str,
            ) -> StoreResult<Result<i64, $crate::store::history::HistoryRead>> {
                use $crate::store::history::{history_from_row, HistoryRow, HISTORY_COLUMNS};
                let mut tx = self.writer().begin().await?;
                // A read whose job ended for good without finishing it (dead) no longer counts.
                sqlx::query(
                    "UPDATE history_reads SET status = 'failed', updated_at = $3 \
                     WHERE tenant_id = $1 AND channel = $2 AND status = 'running' \
                     AND job_id IS NOT NULL AND NOT EXISTS (SELECT 1 FROM jobs j \
                         WHERE j.id = history_reads.job_id \
                         AND j.state IN ('queued', 'running', 'failed'))",
                )
                .bind(tenant.0)
                .bind(channel)
                .bind(now_ms())
                .execute(&mut *tx)
                .await?;
                let running: Option<HistoryRow> = sqlx::query_as(&format!(
                    "SELECT {HISTORY_COLUMNS} FROM history_reads \
                     WHERE tenant_id = $1 AND channel = $2 AND status = 'running' \
                     ORDER BY id DESC LIMIT 1"
                ))
                .bind(tenant.0)
                .bind(channel)
                .fetch_optional(&mut *tx)
                .await?;
                if let Some(running) = running {
                    tx.commit().await?;
                    return Ok(Err(history_from_row(running)));
                }
                let now = now_ms();
                let id: i64 = sqlx::query_scalar(
                    "INSERT INTO history_reads (tenant_id, brain_id, channel, since_ms, state, \
                     started_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $6) RETURNING id",
                )
                .bind(tenant.0)
                .bind(brain.0)
                .bind(channel)
                .bind(since_ms)
                .bind(state)
                .bind(now)
                .fetch_one(&mut *tx)
                .await?;
                tx.commit().await?;
                Ok(Ok(id))
            }

            pub(super) async fn history_set_job(&self, read: i64, job: JobId) -> StoreResult<()> {
                sqlx::query("UPDATE history_reads SET job_id = $2 WHERE id = $1")
                    .bind(read)
                    .bind(job)
                    .execute(self.writer())
                    .await?;
                Ok(())
            }

            pub(super) async fn history_read(
                &self,
                read: i64,
            ) -> StoreResult<Option<$crate::store::history::HistoryRead>> {
                use $crate::store::history::{history_from_row, HistoryRow, HISTORY_COLUMNS};
                let row: Option<HistoryRow> = sqlx::query_as(&format!(
                    "SELECT {HISTORY_COLUMNS} FROM history_reads WHERE id = $1"
                ))
                .bind(read)
                .fetch_optional(self.writer())
                .await?;
                Ok(row.map(history_from_row))
            }

            pub(super) async fn history_reads_of_jobs(
                &self,
                jobs: &[JobId],
            ) -> StoreResult<Vec<$crate::store::history::HistoryRead>> {
                use $crate::store::history::{history_from_row, HistoryRow, HISTORY_COLUMNS};
                let mut reads = Vec::new();
                for job in jobs {
                    let row: Option<HistoryRow> = sqlx::query_as(&format!(
                        "SELECT {HISTORY_COLUMNS} FROM history_reads WHERE job_id = $1"
                    ))
                    .bind(job)
                    .fetch_optional(self.reader())
                    .await?;
                    reads.extend(row.map(history_from_row));
                }
                Ok(reads)
            }

            pub(super) async fn history_last_done(
                &self,
                tenant: TenantId,
                channel: &str,
            ) -> StoreResult<Option<$crate::store::history::HistoryRead>> {
                use $crate::store::history::{history_from_row, HistoryRow, HISTORY_COLUMNS};
                let row: Option<HistoryRow> = sqlx::query_as(&format!(
                    "SELECT {HISTORY_COLUMNS} FROM history_reads \
                     WHERE tenant_id = $1 AND channel = $2 AND status = 'done' \
                     ORDER BY id DESC LIMIT 1"
                ))
                .bind(tenant.0)
                .bind(channel)
                .fetch_optional(self.writer())
                .await?;
                Ok(row.map(history_from_row))
            }

            pub(super) async fn history_save(
                &self,
                read: i64,
                state: &str,
                counts: $crate::store::history::HistoryCounts,
                status: $crate::store::history::HistoryStatus,
            ) -> StoreResult<()> {
                use $crate::store::history::HistoryStatus;
                let now = now_ms();
                let finished = (status != HistoryStatus::Running).then_some(now);
                let count = |n: u64| i64::try_from(n).unwrap_or(i64::MAX);
                sqlx::query(
                    "UPDATE history_reads SET state = $2, messages = $3, files = $4, \
                     threads = $5, status = $6, updated_at = $7, finished_at = $8 WHERE id = $1",
                )
                .bind(read)
                .bind(state)
                .bind(count(counts.messages))
                .bind(count(counts.files))
                .bind(count(counts.threads))
                .bind(status.as_str())
                .bind(now)
                .bind(finished)
                .execute(self.writer())
                .await?;
                Ok(())
            }
        }
    };
}

pub(crate) use history_methods;
