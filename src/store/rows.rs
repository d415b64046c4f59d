//! What both SQL dialects share: the portable statements (`$N` placeholders work in SQLite
//! and PostgreSQL alike), row decoding, and the `impl_store!` macro that writes the common
//! `Store` methods once for each back-end.

use std::sync::atomic::{AtomicI64, Ordering};

use sqlx::{ColumnIndex, Decode, Row, Type};

use crate::brain::{
    Brain, BrainId, BrainName, Document, DocumentId, DocumentStatus, DocumentVersion, TenantId,
};
use crate::jobs::Job;
use crate::store::{StoreError, StoreResult};

pub(super) const JOB_COLUMNS: &str = "id, kind, payload, state, attempts, max_attempts, run_at, \
     lease_until, worker, dedupe_key, last_error, created_at, updated_at";

pub(super) const DOCUMENT_COLUMNS: &str = "id, brain_id, sha256, file_name, source_link, status, \
     error, pages, chunks, ocr_pages, job_id, created_at, updated_at, scope, version, added_by";

pub(super) const VERSION_COLUMNS: &str = "document_id, scope, file_name, version, sha256, \
     added_by, status, pages, chunks, added_at, replaced_at, replaced_by";

/// The versions of document `$2` (of brain `$1`) that it replaces: the older rows with its name
/// in its scope. `id` and `sha256`.
pub(crate) const OLDER_VERSIONS: &str = "SELECT o.id, o.sha256 FROM documents n \
     JOIN documents o ON o.brain_id = n.brain_id AND o.scope = n.scope \
     AND o.file_name = n.file_name AND o.id < n.id \
     WHERE n.id = $2 AND n.brain_id = $1";

/// Copies the versions `OLDER_VERSIONS` finds into `document_versions` (`$3` now, `$4` purged:
/// 1 when their chunks go in the same transaction, 0 when an index outside the store still
/// has to delete them).
pub(crate) const RECORD_OLDER_VERSIONS: &str = "INSERT INTO document_versions (brain_id, \
     document_id, scope, file_name, version, sha256, added_by, status, pages, chunks, added_at, \
     replaced_at, replaced_by, purged) \
     SELECT o.brain_id, o.id, o.scope, o.file_name, o.version, o.sha256, o.added_by, o.status, \
     o.pages, o.chunks, o.created_at, $3, n.id, $4 FROM documents n \
     JOIN documents o ON o.brain_id = n.brain_id AND o.scope = n.scope \
     AND o.file_name = n.file_name AND o.id < n.id \
     WHERE n.id = $2 AND n.brain_id = $1";

/// Deletes one replaced version's row (`$1` brain, `$2` its id).
pub(crate) const DELETE_VERSION_ROW: &str = "DELETE FROM documents WHERE brain_id = $1 AND id = $2";

/// Drops the bytes of a replaced version that was still waiting to be read (`$1` sha256).
pub(crate) const RELEASE_FILE: &str = "DELETE FROM files WHERE sha256 = $1 AND NOT EXISTS \
     (SELECT 1 FROM documents WHERE sha256 = $1 AND status = 'pending')";

/// Marks document `$5` of brain `$6` indexed with its counts (`$1` pages, `$2` OCR pages,
/// `$3` chunks, `$4` now).
pub(crate) const MARK_INDEXED: &str = "UPDATE documents SET status = 'indexed', pages = $1, \
     ocr_pages = $2, chunks = $3, error = NULL, updated_at = $4 WHERE id = $5 AND brain_id = $6";

pub(super) const BRAIN_COLUMNS: &str =
    "id, tenant_id, name, system_prompt, model, budget_micros, created_at";

/// Puts back running jobs whose lease ran out, or dead-letters them when out of attempts.
/// `$1` kind, `$2` now.
pub(super) const REAP_EXPIRED: &str = "UPDATE jobs SET \
     state = CASE WHEN attempts >= max_attempts THEN 'dead' ELSE 'queued' END, \
     last_error = 'the worker stopped renewing its lease (crashed, killed or stalled) during attempt ' \
         || CAST(attempts AS TEXT), \
     lease_until = NULL, run_at = $2, updated_at = $2 \
     WHERE kind = $1 AND state = 'running' AND lease_until < $2";

/// How often a process looks for expired leases (at most): a lease is seconds long, so this
/// costs nothing in recovery time and saves a write on most claims.
const REAP_INTERVAL_MS: i64 = 250;

/// Rate-limits `REAP_EXPIRED` per process.
#[derive(Debug, Default)]
pub(super) struct Reaper {
    last_ms: AtomicI64,
}

impl Reaper {
    /// Whether to reap now; at most one caller per interval gets `true`.
    pub(super) fn due(&self, now: i64) -> bool {
        let last = self.last_ms.load(Ordering::Relaxed);
        now - last >= REAP_INTERVAL_MS
            && self
                .last_ms
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
    }
}

/// The budget period row of a tenant's month.
pub(crate) fn tenant_scope(tenant: TenantId) -> String {
    format!("tenant:{}", tenant.0)
}

/// The budget period row of a brain's month.
pub(crate) fn brain_scope(brain: BrainId) -> String {
    format!("brain:{}", brain.0)
}

/// The budget period row of a person's day (user ids are per platform, so per tenant).
pub(crate) fn user_scope(tenant: TenantId, user: &str) -> String {
    format!("user:{}:{user}", tenant.0)
}

/// Adds spending (`$3` micros) and questions (`$4`) to the budget period row `$1`, `$2`
/// (made if new) and returns its spent micros, questions and `warned` after. The upsert locks
/// the row until the transaction ends (PostgreSQL's row lock; SQLite's write lock), so what it
/// returns is current.
pub(crate) const ADD_TO_PERIOD: &str = "INSERT INTO budget_periods \
     (scope, period_start, spent_micros, questions, warned) VALUES ($1, $2, $3, $4, 0) \
     ON CONFLICT (scope, period_start) DO UPDATE \
     SET spent_micros = budget_periods.spent_micros + excluded.spent_micros, \
     questions = budget_periods.questions + excluded.questions \
     RETURNING spent_micros, questions, warned";

/// Runs `ADD_TO_PERIOD` on a transaction: `(spent, questions, warned)`.
macro_rules! add_to_period {
    ($tx:expr, $scope:expr, $period:expr, $micros:expr, $questions:expr) => {
        sqlx::query_as::<_, (i64, i64, i64)>($crate::store::rows::ADD_TO_PERIOD)
            .bind($scope)
            .bind($period)
            .bind($micros)
            .bind($questions)
            .fetch_one(&mut *$tx)
            .await?
    };
}
pub(super) use add_to_period;

/// Decodes a `jobs` row selected with `JOB_COLUMNS`.
pub(super) fn job_from_row<'r, R>(row: &'r R) -> StoreResult<Job>
where
    R: Row,
    &'static str: ColumnIndex<R>,
    i64: Decode<'r, R::Database> + Type<R::Database>,
    String: Decode<'r, R::Database> + Type<R::Database>,
{
    let text: String = row.try_get("payload")?;
    let kind: String = row.try_get("kind")?;
    let state: String = row.try_get("state")?;
    let count = |column: &'static str| -> StoreResult<u32> {
        let value: i64 = row.try_get(column)?;
        u32::try_from(value).map_err(|_| StoreError::Corrupt(format!("jobs.{column} = {value}")))
    };
    Ok(Job {
        id: row.try_get("id")?,
        kind: kind.parse().map_err(StoreError::Corrupt)?,
        payload: serde_json::from_str(&text)
            .map_err(|error| StoreError::Corrupt(format!("job payload: {error}")))?,
        state: state.parse().map_err(StoreError::Corrupt)?,
        attempts: count("attempts")?,
        max_attempts: count("max_attempts")?,
        run_at: row.try_get("run_at")?,
        lease_until: row.try_get("lease_until")?,
        worker: row.try_get("worker")?,
        dedupe_key: row.try_get("dedupe_key")?,
        last_error: row.try_get("last_error")?,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
    })
}

/// Decodes a `brains` row selected with `BRAIN_COLUMNS`.
pub(super) fn brain_from_row<'r, R>(row: &'r R) -> StoreResult<Brain>
where
    R: Row,
    &'static str: ColumnIndex<R>,
    i64: Decode<'r, R::Database> + Type<R::Database>,
    String: Decode<'r, R::Database> + Type<R::Database>,
{
    let name: String = row.try_get("name")?;
    Ok(Brain {
        id: BrainId(row.try_get("id")?),
        tenant: TenantId(row.try_get("tenant_id")?),
        name: BrainName::parse(&name).map_err(StoreError::Corrupt)?,
        system_prompt: row.try_get("system_prompt")?,
        model: row.try_get("model")?,
        budget_micros: row.try_get("budget_micros")?,
        created_at: row.try_get("created_at")?,
    })
}

/// Decodes a `documents` row selected with `DOCUMENT_COLUMNS`.
pub(super) fn document_from_row<'r, R>(row: &'r R) -> StoreResult<Document>
where
    R: Row,
    &'static str: ColumnIndex<R>,
    i64: Decode<'r, R::Database> + Type<R::Database>,
    String: Decode<'r, R::Database> + Type<R::Database>,
{
    let status: String = row.try_get("status")?;
    let number = |column: &'static str| -> StoreResult<u32> {
        let value: i64 = row.try_get(column)?;
        u32::try_from(value)
            .map_err(|_| StoreError::Corrupt(format!("documents.{column} = {value}")))
    };
    Ok(Document {
        id: DocumentId(row.try_get("id")?),
        brain: BrainId(row.try_get("brain_id")?),
        sha256: row.try_get("sha256")?,
        file_name: row.try_get("file_name")?,
        source_link: row.try_get("source_link")?,
        status: DocumentStatus::parse(&status).map_err(StoreError::Corrupt)?,
        error: row.try_get("error")?,
        pages: number("pages")?,
        chunks: number("chunks")?,
        ocr_pages: number("ocr_pages")?,
        job_id: row.try_get("job_id")?,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
        scope: row.try_get("scope")?,
        version: number("version")?,
        added_by: row.try_get("added_by")?,
    })
}

/// Decodes a `document_versions` row selected with `VERSION_COLUMNS`.
pub(super) fn version_from_row<'r, R>(row: &'r R) -> StoreResult<DocumentVersion>
where
    R: Row,
    &'static str: ColumnIndex<R>,
    i64: Decode<'r, R::Database> + Type<R::Database>,
    String: Decode<'r, R::Database> + Type<R::Database>,
{
    let number = |column: &'static str| -> StoreResult<u32> {
        let value: i64 = row.try_get(column)?;
        u32::try_from(value)
            .map_err(|_| StoreError::Corrupt(format!("document_versions.{column} = {value}")))
    };
    Ok(DocumentVersion {
        document_id: DocumentId(row.try_get("document_id")?),
        scope: row.try_get("scope")?,
        file_name: row.try_get("file_name")?,
        version: number("version")?,
        sha256: row.try_get("sha256")?,
        added_by: row.try_get("added_by")?,
        status: row.try_get("status")?,
        pages: number("pages")?,
        chunks: number("chunks")?,
        added_at: row.try_get("added_at")?,
        replaced_at: row.try_get("replaced_at")?,
        replaced_by: DocumentId(row.try_get("replaced_by")?),
    })
}

/// Converts a stored count to `u64` (counts are never negative).
pub(super) fn count(value: i64) -> u64 {
    u64::try_from(value).unwrap_or(0)
}

/// Implements `Store` for a back-end type that has inherent methods `reader()` and `writer()`
/// (its pools), a `reaper: Reaper` field, `after_change()` (wake workers after a change that may make a job claimable), `after_end()` (wake whoever waits for a job to end), `subscribe_ends()`,
/// `subscribe()` (the wake-up `Notify`) and the dialect's `CLAIM` and `LOCK_BRAIN` statements;
/// back-end specific methods are passed in the braces.
macro_rules! impl_store {
    ($store:ty { $($specific:item)* }) => {
        $crate::store::conversations::conversation_methods!($store);
        $crate::store::history::history_methods!($store);

        #[async_trait::async_trait]
        impl $crate::store::Store for $store {
            $($specific)*

            async fn record_messages(
                &self,
                messages: &[$crate::store::conversations::NewMessage],
            ) -> StoreResult<u64> {
                self.conversation_record_messages(messages).await
            }

            async fn start_history_read(
                &self,
                tenant: TenantId,
                brain: BrainId,
                channel: &str,
                since_ms: i64,
                state: &str,
            ) -> StoreResult<Result<i64, $crate::store::history::HistoryRead>> {
                self.history_start(tenant, brain, channel, since_ms, state).await
            }

            async fn set_history_job(&self, read: i64, job: JobId) -> StoreResult<()> {
                self.history_set_job(read, job).await
            }

            async fn history_read(
                &self,
                read: i64,
            ) -> StoreResult<Option<$crate::store::history::HistoryRead>> {
                self.history_read(read).await
            }

            async fn history_reads_of_jobs(
                &self,
                jobs: &[JobId],
            ) -> StoreResult<Vec<$crate::store::history::HistoryRead>> {
                self.history_reads_of_jobs(jobs).await
            }

            async fn last_history_read(
                &self,
                tenant: TenantId,
                channel: &str,
            ) -> StoreResult<Option<$crate::store::history::HistoryRead>> {
                self.history_last_done(tenant, channel).await
            }

            async fn save_history_read(
                &self,
                read: i64,
                state: &str,
                counts: $crate::store::history::HistoryCounts,
                status: $crate::store::history::HistoryStatus,
            ) -> StoreResult<()> {
                self.history_save(read, state, counts, status).await
            }

            async fn record_message(
                &self,
                message: &$crate::store::conversations::NewMessage,
            ) -> StoreResult<i64> {
                self.conversation_record_message(message).await
            }

            async fn edit_message(&self, tenant: TenantId, key: &str, text: &str, edited_at: i64) -> StoreResult<bool> {
                self.conversation_edit_message(tenant, key, text, edited_at).await
            }

            async fn delete_messages(&self, tenant: TenantId, keys: &[String]) -> StoreResult<u64> {
                self.conversation_delete_messages(tenant, keys).await
            }

            async fn delete_conversation(&self, tenant: TenantId, unit_key: &str) -> StoreResult<u64> {
                self.conversation_delete_conversation(tenant, unit_key).await
            }

            async fn forget_conversation_of(&self, tenant: TenantId, brain: BrainId, key: &str) -> StoreResult<u64> {
                self.conversation_forget_conversation_of(tenant, brain, key).await
            }

            async fn is_restricted(&self, tenant: TenantId, channel: &str) -> StoreResult<bool> {
                self.conversation_is_restricted(tenant, channel).await
            }

            async fn delete_channel_conversations(&self, tenant: TenantId, channel: &str) -> StoreResult<u64> {
                self.conversation_delete_channel_conversations(tenant, channel).await
            }

            async fn claim_unit(
                &self,
                worker: &str,
                lease: std::time::Duration,
            ) -> StoreResult<Option<$crate::store::conversations::UnitToLearn>> {
                self.conversation_claim_unit(worker, lease).await
            }

            async fn unit_learned(&self, unit: i64, worker: &str, revision: i64, document: Option<DocumentId>) -> StoreResult<bool> {
                self.conversation_unit_learned(unit, worker, revision, document).await
            }

            async fn unit_failed(&self, unit: i64, worker: &str, error: &str, retry_at: i64) -> StoreResult<()> {
                self.conversation_unit_failed(unit, worker, error, retry_at).await
            }

            async fn set_channel_messages(&self, tenant: TenantId, channel: &str, on: bool) -> StoreResult<bool> {
                self.conversation_set_channel_messages(tenant, channel, on).await
            }

            async fn conversation_stats(
                &self,
                brain: BrainId,
            ) -> StoreResult<$crate::store::conversations::ConversationStats> {
                self.conversation_conversation_stats(brain).await
            }

            async fn set_channel_restricted(&self, tenant: TenantId, channel: &str, restricted: bool) -> StoreResult<()> {
                self.conversation_set_channel_restricted(tenant, channel, restricted).await
            }

            async fn hidden_documents(&self, brain: BrainId, here: [&str; 2]) -> StoreResult<Vec<DocumentId>> {
                self.conversation_hidden_documents(brain, here).await
            }

            async fn channel_learns_messages(&self, tenant: TenantId, channel: &str) -> StoreResult<bool> {
                self.conversation_channel_learns_messages(tenant, channel).await
            }

            async fn ping(&self) -> StoreResult<()> {
                sqlx::query("SELECT 1").execute(self.reader()).await?;
                Ok(())
            }

            async fn close(&self) {
                self.reader().close().await;
                self.writer().close().await;
            }

            async fn ensure_tenant(&self, key: &TenantKey) -> StoreResult<TenantId> {
                sqlx::query(
                    "INSERT INTO tenants (key, name, created_at) VALUES ($1, $1, $2) \
                     ON CONFLICT (key) DO NOTHING",
                )
                .bind(key.as_str())
                .bind(now_ms())
                .execute(self.writer())
                .await?;
                let id: i64 = sqlx::query_scalar("SELECT id FROM tenants WHERE key = $1")
                    .bind(key.as_str())
                    .fetch_one(self.writer())
                    .await?;
                Ok(TenantId(id))
            }

            async fn find_tenant(&self, key: &TenantKey) -> StoreResult<Option<TenantId>> {
                let id: Option<i64> = sqlx::query_scalar("SELECT id FROM tenants WHERE key = $1")
                    .bind(key.as_str())
                    .fetch_optional(self.reader())
                    .await?;
                Ok(id.map(TenantId))
            }

            async fn create_brain(&self, tenant: TenantId, name: &BrainName) -> StoreResult<Brain> {
                let sql = format!(
                    "INSERT INTO brains (tenant_id, name, created_at) VALUES ($1, $2, $3) \
                     RETURNING {BRAIN_COLUMNS}"
                );
                let row = sqlx::query(&sql)
                    .bind(tenant.0)
                    .bind(name.as_str())
                    .bind(now_ms())
                    .fetch_one(self.writer())
                    .await
                    .map_err(|error| match StoreError::from(error) {
                        StoreError::Conflict(_) => {
                            StoreError::Conflict(format!("a brain named `{name}` already exists"))
                        }
                        other => other,
                    })?;
                brain_from_row(&row)
            }

            async fn brains(&self, tenant: TenantId) -> StoreResult<Vec<Brain>> {
                let sql = format!("SELECT {BRAIN_COLUMNS} FROM brains WHERE tenant_id = $1 ORDER BY name");
                let rows = sqlx::query(&sql).bind(tenant.0).fetch_all(self.reader()).await?;
                rows.iter().map(brain_from_row).collect()
            }

            async fn brain_by_name(&self, tenant: TenantId, name: &BrainName) -> StoreResult<Option<Brain>> {
                let sql = format!("SELECT {BRAIN_COLUMNS} FROM brains WHERE tenant_id = $1 AND name = $2");
                let row = sqlx::query(&sql)
                    .bind(tenant.0)
                    .bind(name.as_str())
                    .fetch_optional(self.reader())
                    .await?;
                row.as_ref().map(brain_from_row).transpose()
            }

            async fn brain(&self, tenant: TenantId, id: BrainId) -> StoreResult<Option<Brain>> {
                let sql = format!("SELECT {BRAIN_COLUMNS} FROM brains WHERE tenant_id = $1 AND id = $2");
                let row = sqlx::query(&sql)
                    .bind(tenant.0)
                    .bind(id.0)
                    .fetch_optional(self.reader())
                    .await?;
                row.as_ref().map(brain_from_row).transpose()
            }

            async fn set_system_prompt(&self, brain: BrainId, prompt: Option<&str>) -> StoreResult<()> {
                sqlx::query("UPDATE brains SET system_prompt = $1 WHERE id = $2")
                    .bind(prompt)
                    .bind(brain.0)
                    .execute(self.writer())
                    .await?;
                Ok(())
            }

            async fn bind_channel(
                &self,
                tenant: TenantId,
                channel: &str,
                brain: BrainId,
                mode: crate::brain::BindingMode,
            ) -> StoreResult<crate::brain::Binding> {
                // The brain must be the tenant's: checked in the same statement that binds.
                let bound = sqlx::query(
                    "INSERT INTO bindings (tenant_id, channel, brain_id, mode, created_at) \
                     SELECT $1, $2, id, $4, $5 FROM brains WHERE id = $3 AND tenant_id = $1 \
                     ON CONFLICT (tenant_id, channel) DO UPDATE \
                     SET brain_id = excluded.brain_id, mode = excluded.mode",
                )
                .bind(tenant.0)
                .bind(channel)
                .bind(brain.0)
                .bind(mode.as_str())
                .bind(now_ms())
                .execute(self.writer())
                .await?
                .rows_affected();
                if bound == 0 {
                    return Err(StoreError::NotFound(format!(
                        "brain {brain} does not exist in this server or workspace"
                    )));
                }
                Ok(crate::brain::Binding { tenant, channel: channel.to_string(), brain, mode })
            }

            async fn unbind_channel(&self, tenant: TenantId, channel: &str) -> StoreResult<bool> {
                let removed = sqlx::query("DELETE FROM bindings WHERE tenant_id = $1 AND channel = $2")
                    .bind(tenant.0)
                    .bind(channel)
                    .execute(self.writer())
                    .await?
                    .rows_affected();
                Ok(removed > 0)
            }

            async fn binding(&self, tenant: TenantId, channel: &str) -> StoreResult<Option<crate::brain::Binding>> {
                let row: Option<(i64, String)> = sqlx::query_as(
                    "SELECT brain_id, mode FROM bindings WHERE tenant_id = $1 AND channel = $2",
                )
                .bind(tenant.0)
                .bind(channel)
                .fetch_optional(self.reader())
                .await?;
                row.map(|(brain, mode)| {
                    Ok(crate::brain::Binding {
                        tenant,
                        channel: channel.to_string(),
                        brain: BrainId(brain),
                        mode: crate::brain::BindingMode::parse(&mode).map_err(StoreError::Corrupt)?,
                    })
                })
                .transpose()
            }

            async fn prune(
                &self,
                now: i64,
                keep: &$crate::store::Retention,
            ) -> StoreResult<$crate::store::Pruned> {
                let before = |age: std::time::Duration| {
                    now.saturating_sub(i64::try_from(age.as_millis()).unwrap_or(i64::MAX))
                };
                let delete = |statement: &'static str, before: i64| async move {
                    Ok::<u64, StoreError>(
                        sqlx::query(statement)
                            .bind(before)
                            .execute(self.writer())
                            .await?
                            .rows_affected(),
                    )
                };
                Ok($crate::store::Pruned {
                    done_jobs: delete(
                        "DELETE FROM jobs WHERE state = 'done' AND updated_at < $1",
                        before(keep.done_jobs),
                    )
                    .await?,
                    seen_events: delete(
                        "DELETE FROM seen_events WHERE seen_at < $1",
                        before(keep.seen_events),
                    )
                    .await?
                        + delete(
                            "DELETE FROM conversation_tombstones WHERE deleted_at < $1",
                            before(keep.seen_events),
                        )
                        .await?,
                    conversations: delete(
                        "DELETE FROM conversations WHERE updated_at < $1",
                        before(keep.conversations),
                    )
                    .await?,
                    answer_messages: delete(
                        "DELETE FROM answer_messages WHERE created_at < $1",
                        before(keep.conversations),
                    )
                    .await?,
                    // Bytes no pending or failed document needs any more (its brain or the
                    // document was deleted); an hour old, so a file being submitted is safe.
                    files: delete(
                        "DELETE FROM files WHERE created_at < $1 AND NOT EXISTS \
                         (SELECT 1 FROM documents WHERE documents.sha256 = files.sha256 \
                          AND status IN ('pending', 'failed'))",
                        now.saturating_sub(3_600_000),
                    )
                    .await?,
                    budgets: delete(
                        "DELETE FROM budget_reservations WHERE held_until < $1",
                        now,
                    )
                    .await?
                        + delete(
                            "DELETE FROM budget_periods WHERE period_start < $1",
                            before(std::time::Duration::from_secs(62 * 24 * 60 * 60)),
                        )
                        .await?,
                })
            }

            async fn first_sighting(&self, platform: &str, event_id: &str) -> StoreResult<bool> {
                let inserted = sqlx::query(
                    "INSERT INTO seen_events (platform, event_id, seen_at) VALUES ($1, $2, $3) \
                     ON CONFLICT (platform, event_id) DO NOTHING",
                )
                .bind(platform)
                .bind(event_id)
                .bind(now_ms())
                .execute(self.writer())
                .await?
                .rows_affected();
                Ok(inserted == 1)
            }

            async fn claim_event(
                &self,
                platform: &str,
                event_id: &str,
                handler: &str,
                hold: Duration,
            ) -> StoreResult<crate::store::EventClaim> {
                let now = now_ms();
                let until = now.saturating_add(i64::try_from(hold.as_millis()).unwrap_or(i64::MAX));
                // New, or held by a gateway whose hold ran out: ours.
                let claimed = sqlx::query(
                    "INSERT INTO seen_events (platform, event_id, seen_at, handler, held_until) \
                     VALUES ($1, $2, $3, $4, $5) \
                     ON CONFLICT (platform, event_id) DO UPDATE SET seen_at = excluded.seen_at, \
                     handler = excluded.handler, held_until = excluded.held_until \
                     WHERE seen_events.held_until IS NOT NULL AND seen_events.held_until < $3",
                )
                .bind(platform)
                .bind(event_id)
                .bind(now)
                .bind(handler)
                .bind(until)
                .execute(self.writer())
                .await?
                .rows_affected();
                if claimed == 1 {
                    return Ok(crate::store::EventClaim::Claimed);
                }
                let held: Option<Option<i64>> = sqlx::query_scalar(
                    "SELECT held_until FROM seen_events WHERE platform = $1 AND event_id = $2",
                )
                .bind(platform)
                .bind(event_id)
                .fetch_optional(self.writer())
                .await?;
                Ok(match held {
                    Some(None) => crate::store::EventClaim::Handled,
                    // Held, or let go between the two statements: look again later.
                    Some(Some(_)) | None => crate::store::EventClaim::HeldElsewhere,
                })
            }

            async fn hold_event(
                &self,
                platform: &str,
                event_id: &str,
                handler: &str,
                hold: Duration,
            ) -> StoreResult<bool> {
                let until = now_ms().saturating_add(i64::try_from(hold.as_millis()).unwrap_or(i64::MAX));
                let held = sqlx::query(
                    "UPDATE seen_events SET held_until = $1 \
                     WHERE platform = $2 AND event_id = $3 AND handler = $4 \
                     AND held_until IS NOT NULL",
                )
                .bind(until)
                .bind(platform)
                .bind(event_id)
                .bind(handler)
                .execute(self.writer())
                .await?;
                Ok(held.rows_affected() == 1)
            }

            async fn end_event_hold(
                &self,
                platform: &str,
                event_id: &str,
                handler: &str,
                handled: bool,
            ) -> StoreResult<()> {
                let statement = if handled {
                    "UPDATE seen_events SET held_until = NULL \
                     WHERE platform = $1 AND event_id = $2 AND handler = $3 \
                     AND held_until IS NOT NULL"
                } else {
                    "DELETE FROM seen_events \
                     WHERE platform = $1 AND event_id = $2 AND handler = $3 \
                     AND held_until IS NOT NULL"
                };
                sqlx::query(statement)
                    .bind(platform)
                    .bind(event_id)
                    .bind(handler)
                    .execute(self.writer())
                    .await?;
                Ok(())
            }

            async fn brain_stats(&self, brain: BrainId) -> StoreResult<BrainStats> {
                let (documents, failed, chunks): (i64, i64, i64) = sqlx::query_as(
                    "SELECT \
                     CAST(COALESCE(SUM(CASE WHEN scope NOT LIKE 'conversation:%' THEN 1 ELSE 0 END), 0) AS BIGINT), \
                     CAST(COALESCE(SUM(CASE WHEN status = 'failed' THEN 1 ELSE 0 END), 0) AS BIGINT), \
                     CAST(COALESCE(SUM(chunks), 0) AS BIGINT) \
                     FROM documents WHERE brain_id = $1",
                )
                .bind(brain.0)
                .fetch_one(self.reader())
                .await?;
                Ok(BrainStats {
                    documents: count(documents),
                    failed_documents: count(failed),
                    chunks: count(chunks),
                })
            }

            async fn delete_brain(&self, brain: BrainId) -> StoreResult<bool> {
                let done = sqlx::query("DELETE FROM brains WHERE id = $1")
                    .bind(brain.0)
                    .execute(self.writer())
                    .await?;
                Ok(done.rows_affected() == 1)
            }

            async fn add_document(&self, document: &NewDocument) -> StoreResult<AddedDocument> {
                let now = now_ms();
                // The version is one more than any the name had in its scope, current or
                // replaced.
                let sql = format!(
                    "INSERT INTO documents (brain_id, sha256, file_name, source_link, status, \
                     created_at, updated_at, scope, version, added_by) \
                     VALUES ($1, $2, $3, $4, 'pending', $5, $5, $6, 1 + COALESCE(( \
                       SELECT MAX(v) FROM ( \
                         SELECT MAX(version) AS v FROM documents \
                           WHERE brain_id = $1 AND scope = $6 AND file_name = $3 \
                         UNION ALL \
                         SELECT MAX(version) AS v FROM document_versions \
                           WHERE brain_id = $1 AND scope = $6 AND file_name = $3 \
                       ) AS earlier), 0), $7) \
                     ON CONFLICT (brain_id, sha256) DO NOTHING RETURNING {DOCUMENT_COLUMNS}"
                );
                let inserted = sqlx::query(&sql)
                    .bind(document.brain.0)
                    .bind(&document.sha256)
                    .bind(&document.file_name)
                    .bind(document.source_link.as_deref())
                    .bind(now)
                    .bind(&document.scope)
                    .bind(document.added_by.as_deref())
                    .fetch_optional(self.writer())
                    .await?;
                if let Some(row) = inserted {
                    return Ok(AddedDocument::Pending(document_from_row(&row)?));
                }
                // Known bytes. A failed document is tried again (the file may be fine now that
                // engram is fixed or configured); anything else is left as it is.
                let sql = format!(
                    "UPDATE documents SET status = 'pending', error = NULL, file_name = $1, \
                     source_link = $2, updated_at = $3 \
                     WHERE brain_id = $4 AND sha256 = $5 AND status = 'failed' \
                     RETURNING {DOCUMENT_COLUMNS}"
                );
                let revived = sqlx::query(&sql)
                    .bind(&document.file_name)
                    .bind(document.source_link.as_deref())
                    .bind(now)
                    .bind(document.brain.0)
                    .bind(&document.sha256)
                    .fetch_optional(self.writer())
                    .await?;
                if let Some(row) = revived {
                    return Ok(AddedDocument::Pending(document_from_row(&row)?));
                }
                let sql = format!(
                    "SELECT {DOCUMENT_COLUMNS} FROM documents WHERE brain_id = $1 AND sha256 = $2"
                );
                let row = sqlx::query(&sql)
                    .bind(document.brain.0)
                    .bind(&document.sha256)
                    .fetch_one(self.writer())
                    .await?;
                Ok(AddedDocument::Known(document_from_row(&row)?))
            }

            async fn document(&self, id: DocumentId) -> StoreResult<Option<Document>> {
                let sql = format!("SELECT {DOCUMENT_COLUMNS} FROM documents WHERE id = $1");
                let row = sqlx::query(&sql).bind(id.0).fetch_optional(self.reader()).await?;
                row.as_ref().map(document_from_row).transpose()
            }

            async fn documents(&self, brain: BrainId) -> StoreResult<Vec<Document>> {
                let sql = format!(
                    "SELECT {DOCUMENT_COLUMNS} FROM documents WHERE brain_id = $1 ORDER BY id"
                );
                let rows = sqlx::query(&sql).bind(brain.0).fetch_all(self.reader()).await?;
                rows.iter().map(document_from_row).collect()
            }

            async fn set_document_job(&self, id: DocumentId, job: JobId) -> StoreResult<()> {
                sqlx::query("UPDATE documents SET job_id = $1, updated_at = $2 WHERE id = $3")
                    .bind(job)
                    .bind(now_ms())
                    .bind(id.0)
                    .execute(self.writer())
                    .await?;
                Ok(())
            }

            async fn fail_document(&self, id: DocumentId, error: &str) -> StoreResult<()> {
                sqlx::query(
                    "UPDATE documents SET status = 'failed', error = $1, updated_at = $2 \
                     WHERE id = $3 AND status <> 'indexed'",
                )
                .bind(error)
                .bind(now_ms())
                .bind(id.0)
                .execute(self.writer())
                .await?;
                Ok(())
            }

            async fn mark_document_indexed(
                &self,
                brain: BrainId,
                id: DocumentId,
                counts: $crate::store::IndexedCounts,
            ) -> StoreResult<Vec<DocumentId>> {
                let now = now_ms();
                let mut tx = self.writer().begin().await?;
                sqlx::query(Self::LOCK_BRAIN)
                    .bind(brain.0)
                    .fetch_optional(&mut *tx)
                    .await?;
                let done = sqlx::query($crate::store::rows::MARK_INDEXED)
                    .bind(i64::from(counts.pages))
                    .bind(i64::from(counts.ocr_pages))
                    .bind(i64::from(counts.chunks))
                    .bind(now)
                    .bind(id.0)
                    .bind(brain.0)
                    .execute(&mut *tx)
                    .await?;
                if done.rows_affected() == 0 {
                    return Err(StoreError::NotFound(format!(
                        "document {} does not exist in brain {brain}",
                        id.0
                    )));
                }
                let older: Vec<(i64, String)> =
                    sqlx::query_as($crate::store::rows::OLDER_VERSIONS)
                        .bind(brain.0)
                        .bind(id.0)
                        .fetch_all(&mut *tx)
                        .await?;
                sqlx::query($crate::store::rows::RECORD_OLDER_VERSIONS)
                    .bind(brain.0)
                    .bind(id.0)
                    .bind(now)
                    .bind(0_i64)
                    .execute(&mut *tx)
                    .await?;
                for (old, _) in &older {
                    sqlx::query($crate::store::rows::DELETE_VERSION_ROW)
                        .bind(brain.0)
                        .bind(old)
                        .execute(&mut *tx)
                        .await?;
                }
                for (_, sha256) in &older {
                    sqlx::query($crate::store::rows::RELEASE_FILE)
                        .bind(sha256)
                        .execute(&mut *tx)
                        .await?;
                }
                tx.commit().await?;
                Ok(older.into_iter().map(|(old, _)| DocumentId(old)).collect())
            }

            async fn document_history(
                &self,
                brain: BrainId,
            ) -> StoreResult<Vec<crate::brain::DocumentVersion>> {
                let sql = format!(
                    "SELECT {VERSION_COLUMNS} FROM document_versions WHERE brain_id = $1 \
                     ORDER BY file_name, scope, version"
                );
                let rows = sqlx::query(&sql).bind(brain.0).fetch_all(self.reader()).await?;
                rows.iter().map(version_from_row).collect()
            }

            async fn unpurged_versions(&self, brain: BrainId) -> StoreResult<Vec<DocumentId>> {
                let ids: Vec<i64> = sqlx::query_scalar(
                    "SELECT document_id FROM document_versions \
                     WHERE brain_id = $1 AND purged = 0 ORDER BY id",
                )
                .bind(brain.0)
                .fetch_all(self.reader())
                .await?;
                Ok(ids.into_iter().map(DocumentId).collect())
            }

            async fn mark_versions_purged(
                &self,
                brain: BrainId,
                ids: &[DocumentId],
            ) -> StoreResult<()> {
                for id in ids {
                    sqlx::query(
                        "UPDATE document_versions SET purged = 1 \
                         WHERE brain_id = $1 AND document_id = $2",
                    )
                    .bind(brain.0)
                    .bind(id.0)
                    .execute(self.writer())
                    .await?;
                }
                Ok(())
            }

            async fn forget_history(
                &self,
                brain: BrainId,
                scope: Option<&str>,
                file_name: &str,
            ) -> StoreResult<u64> {
                let done = sqlx::query(
                    "DELETE FROM document_versions WHERE brain_id = $1 AND file_name = $2 \
                     AND ($3 = 1 OR scope = $4)",
                )
                .bind(brain.0)
                .bind(file_name)
                .bind(i64::from(scope.is_none()))
                .bind(scope.unwrap_or(""))
                .execute(self.writer())
                .await?;
                Ok(done.rows_affected())
            }

            async fn indexed_among(&self, brain: BrainId, ids: &[i64]) -> StoreResult<Vec<i64>> {
                let mut indexed = Vec::with_capacity(ids.len());
                if ids.is_empty() {
                    return Ok(indexed);
                }
                // At most a search's worth of ids; one statement with a bound list.
                let list: Vec<String> = ids.iter().map(i64::to_string).collect();
                let sql = format!(
                    "SELECT id FROM documents WHERE brain_id = $1 AND status = 'indexed' \
                     AND id IN ({})",
                    list.join(", ")
                );
                let rows: Vec<i64> = sqlx::query_scalar(&sql)
                    .bind(brain.0)
                    .fetch_all(self.reader())
                    .await?;
                indexed.extend(rows);
                Ok(indexed)
            }

            async fn record_embedding(
                &self,
                document: DocumentId,
                model: &str,
                dimensions: u32,
            ) -> StoreResult<()> {
                sqlx::query("UPDATE documents SET embedding_model = $1 WHERE id = $2")
                    .bind(model)
                    .bind(document.0)
                    .execute(self.writer())
                    .await?;
                sqlx::query(
                    "UPDATE brains SET embedding_model = $1, embedding_dimensions = $2 \
                     WHERE id = (SELECT brain_id FROM documents WHERE id = $3) \
                     AND (embedding_model IS NULL OR NOT EXISTS (\
                       SELECT 1 FROM documents d WHERE d.brain_id = brains.id \
                       AND d.status = 'indexed' AND d.embedding_model <> $1))",
                )
                .bind(model)
                .bind(i64::from(dimensions))
                .bind(document.0)
                .execute(self.writer())
                .await?;
                Ok(())
            }

            async fn brain_embedding(&self, brain: BrainId) -> StoreResult<Option<(String, u32)>> {
                let row: Option<(Option<String>, Option<i64>)> = sqlx::query_as(
                    "SELECT embedding_model, embedding_dimensions FROM brains WHERE id = $1",
                )
                .bind(brain.0)
                .fetch_optional(self.reader())
                .await?;
                Ok(row.and_then(|(model, dimensions)| {
                    Some((model?, u32::try_from(dimensions?).ok()?))
                }))
            }

            async fn stale_embeddings(
                &self,
                brain: Option<BrainId>,
                model: &str,
            ) -> StoreResult<Vec<DocumentId>> {
                let ids: Vec<i64> = sqlx::query_scalar(
                    "SELECT id FROM documents WHERE status = 'indexed' \
                     AND embedding_model IS NOT NULL AND embedding_model <> $1 \
                     AND ($2 IS NULL OR brain_id = $2) ORDER BY id",
                )
                .bind(model)
                .bind(brain.map(|brain| brain.0))
                .fetch_all(self.reader())
                .await?;
                Ok(ids.into_iter().map(DocumentId).collect())
            }

            async fn delete_document(&self, brain: BrainId, id: DocumentId) -> StoreResult<bool> {
                let done = sqlx::query("DELETE FROM documents WHERE id = $1 AND brain_id = $2")
                    .bind(id.0)
                    .bind(brain.0)
                    .execute(self.writer())
                    .await?;
                Ok(done.rows_affected() > 0)
            }

            async fn put_file(&self, sha256: &str, bytes: &[u8]) -> StoreResult<()> {
                sqlx::query(
                    "INSERT INTO files (sha256, size, bytes, created_at) VALUES ($1, $2, $3, $4) \
                     ON CONFLICT (sha256) DO NOTHING",
                )
                .bind(sha256)
                .bind(i64::try_from(bytes.len()).unwrap_or(i64::MAX))
                .bind(bytes)
                .bind(now_ms())
                .execute(self.writer())
                .await?;
                Ok(())
            }

            async fn file(&self, sha256: &str) -> StoreResult<Option<Vec<u8>>> {
                Ok(sqlx::query_scalar("SELECT bytes FROM files WHERE sha256 = $1")
                    .bind(sha256)
                    .fetch_optional(self.reader())
                    .await?)
            }

            async fn release_file(&self, sha256: &str) -> StoreResult<()> {
                sqlx::query(
                    "DELETE FROM files WHERE sha256 = $1 AND NOT EXISTS \
                     (SELECT 1 FROM documents WHERE sha256 = $1 \
                      AND status IN ('pending', 'failed'))",
                )
                .bind(sha256)
                .execute(self.writer())
                .await?;
                Ok(())
            }

            async fn file_size(&self, sha256: &str) -> StoreResult<Option<u64>> {
                let size: Option<i64> = sqlx::query_scalar("SELECT size FROM files WHERE sha256 = $1")
                    .bind(sha256)
                    .fetch_optional(self.reader())
                    .await?;
                Ok(size.map(|size| u64::try_from(size).unwrap_or(0)))
            }

            async fn failed_file_bytes(&self) -> StoreResult<u64> {
                let total: Option<i64> = sqlx::query_scalar(
                    "SELECT CAST(SUM(size) AS BIGINT) FROM files WHERE EXISTS \
                     (SELECT 1 FROM documents WHERE documents.sha256 = files.sha256 \
                      AND status = 'failed')",
                )
                .fetch_one(self.reader())
                .await?;
                Ok(total.map_or(0, |total| u64::try_from(total).unwrap_or(0)))
            }

            async fn drop_file_bytes(&self, sha256: &str) -> StoreResult<()> {
                sqlx::query(
                    "DELETE FROM files WHERE sha256 = $1 AND NOT EXISTS \
                     (SELECT 1 FROM documents WHERE sha256 = $1 AND status = 'pending')",
                )
                .bind(sha256)
                .execute(self.writer())
                .await?;
                Ok(())
            }

            async fn append_turn(
                &self,
                tenant: TenantId,
                brain: BrainId,
                key: &str,
                turn: &StoredTurn,
            ) -> StoreResult<()> {
                let now = now_ms();
                sqlx::query(
                    "INSERT INTO conversations (tenant_id, brain_id, key, created_at, updated_at) \
                     VALUES ($1, $2, $3, $4, $4) \
                     ON CONFLICT (tenant_id, key) DO UPDATE SET updated_at = excluded.updated_at",
                )
                .bind(tenant.0)
                .bind(brain.0)
                .bind(key)
                .bind(now)
                .execute(self.writer())
                .await?;
                sqlx::query(
                    "INSERT INTO turns (conversation_id, role, user_id, text, created_at) \
                     SELECT id, $1, $2, $3, $4 FROM conversations WHERE tenant_id = $5 AND key = $6",
                )
                .bind(&turn.role)
                .bind(turn.user.as_deref())
                .bind(&turn.text)
                .bind(now)
                .bind(tenant.0)
                .bind(key)
                .execute(self.writer())
                .await?;
                Ok(())
            }

            async fn recent_turns(
                &self,
                tenant: TenantId,
                key: &str,
                limit: u32,
            ) -> StoreResult<Vec<StoredTurn>> {
                let rows: Vec<(String, Option<String>, String)> = sqlx::query_as(
                    "SELECT role, user_id, text FROM ( \
                       SELECT t.id, t.role, t.user_id, t.text FROM turns t \
                       JOIN conversations c ON c.id = t.conversation_id \
                       WHERE c.tenant_id = $1 AND c.key = $2 ORDER BY t.id DESC LIMIT $3 \
                     ) AS latest ORDER BY id",
                )
                .bind(tenant.0)
                .bind(key)
                .bind(i64::from(limit))
                .fetch_all(self.reader())
                .await?;
                Ok(rows
                    .into_iter()
                    .map(|(role, user, text)| StoredTurn { role, user, text })
                    .collect())
            }

            async fn record_answer_message(
                &self,
                tenant: TenantId,
                channel: &str,
                message: &str,
                conversation: &str,
            ) -> StoreResult<()> {
                sqlx::query(
                    "INSERT INTO answer_messages (tenant_id, channel, message_id, conversation, \
                     created_at) VALUES ($1, $2, $3, $4, $5) \
                     ON CONFLICT (tenant_id, channel, message_id) \
                     DO UPDATE SET conversation = excluded.conversation",
                )
                .bind(tenant.0)
                .bind(channel)
                .bind(message)
                .bind(conversation)
                .bind(now_ms())
                .execute(self.writer())
                .await?;
                Ok(())
            }

            async fn answer_conversation(
                &self,
                tenant: TenantId,
                channel: &str,
                message: &str,
            ) -> StoreResult<Option<String>> {
                Ok(sqlx::query_scalar(
                    "SELECT conversation FROM answer_messages \
                     WHERE tenant_id = $1 AND channel = $2 AND message_id = $3",
                )
                .bind(tenant.0)
                .bind(channel)
                .bind(message)
                .fetch_optional(self.reader())
                .await?)
            }

            async fn record_usage(&self, usage: &UsageRecord) -> StoreResult<()> {
                sqlx::query(
                    "INSERT INTO usage (tenant_id, brain_id, user_id, model, prompt_tokens, \
                     completion_tokens, cost_micros, created_at) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
                )
                .bind(usage.tenant.0)
                .bind(usage.brain.map(|brain| brain.0))
                .bind(&usage.user)
                .bind(&usage.model)
                .bind(i64::from(usage.prompt_tokens))
                .bind(i64::from(usage.completion_tokens))
                .bind(usage.cost_micros)
                .bind(now_ms())
                .execute(self.writer())
                .await?;
                Ok(())
            }

            async fn usage_totals(&self, tenant: TenantId, since: i64) -> StoreResult<Vec<UsageTotal>> {
                let rows: Vec<(String, i64, i64, i64, i64)> = sqlx::query_as(
                    "SELECT model, COUNT(*), CAST(SUM(prompt_tokens) AS BIGINT), \
                     CAST(SUM(completion_tokens) AS BIGINT), CAST(SUM(cost_micros) AS BIGINT) \
                     FROM usage WHERE tenant_id = $1 AND created_at >= $2 AND model <> '' \
                     GROUP BY model ORDER BY model",
                )
                .bind(tenant.0)
                .bind(since)
                .fetch_all(self.reader())
                .await?;
                Ok(rows
                    .into_iter()
                    .map(|(model, calls, prompt, completion, cost)| UsageTotal {
                        model,
                        calls: count(calls),
                        prompt_tokens: count(prompt),
                        completion_tokens: count(completion),
                        cost_micros: cost,
                    })
                    .collect())
            }

            async fn reserve_spending(
                &self,
                spender: &$crate::store::Spender<'_>,
                caps: &$crate::store::Caps,
                estimate_micros: i64,
                now: i64,
                hold: std::time::Duration,
            ) -> StoreResult<$crate::store::Reservation> {
                use $crate::store::{CapKind, CapUse, Reservation};
                let month = $crate::clock::month_start_ms(now);
                let mut tx = self.writer().begin().await?;
                // The period rows first, always in this order: they are the locks.
                let tenant_scope = $crate::store::rows::tenant_scope(spender.tenant);
                let (tenant_spent, _, _) =
                    $crate::store::rows::add_to_period!(tx, &tenant_scope, month, 0_i64, 0_i64);
                let brain_scope = $crate::store::rows::brain_scope(spender.brain);
                let (brain_spent, _, _) =
                    $crate::store::rows::add_to_period!(tx, &brain_scope, month, 0_i64, 0_i64);
                let questions = if caps.user_questions > 0 {
                    let day = $crate::clock::day_start_ms(now);
                    let scope = $crate::store::rows::user_scope(spender.tenant, spender.user);
                    $crate::store::rows::add_to_period!(tx, &scope, day, 0_i64, 1_i64).1
                } else {
                    0
                };
                // What the answers in flight hold against the tenant's and the brain's month.
                let (tenant_held, brain_held): (i64, i64) = sqlx::query_as(
                    "SELECT CAST(COALESCE(SUM(CASE WHEN tenant_id = $1 THEN micros ELSE 0 END), 0) AS BIGINT), \
                     CAST(COALESCE(SUM(CASE WHEN brain_id = $2 THEN micros ELSE 0 END), 0) AS BIGINT) \
                     FROM budget_reservations \
                     WHERE (tenant_id = $1 OR brain_id = $2) AND period_start = $3 AND held_until > $4",
                )
                .bind(spender.tenant.0)
                .bind(spender.brain.0)
                .bind(month)
                .bind(now)
                .fetch_one(&mut *tx)
                .await?;
                let mut capped = None;
                let used = tenant_spent + tenant_held;
                if caps.tenant_micros > 0 && used >= caps.tenant_micros {
                    capped = Some(CapUse { cap: CapKind::Tenant, used, limit: caps.tenant_micros });
                }
                let used = brain_spent + brain_held;
                if capped.is_none() && caps.brain_micros > 0 && used >= caps.brain_micros {
                    capped = Some(CapUse { cap: CapKind::Brain, used, limit: caps.brain_micros });
                }
                if capped.is_none() && caps.user_questions > 0 && questions > caps.user_questions {
                    capped = Some(CapUse {
                        cap: CapKind::User,
                        used: questions - 1,
                        limit: caps.user_questions,
                    });
                }
                let outcome = match capped {
                    Some(cap) => Reservation::Capped(cap),
                    None if caps.tenant_micros > 0 || caps.brain_micros > 0 => {
                        let held_until = now.saturating_add(i64::try_from(hold.as_millis()).unwrap_or(i64::MAX));
                        let id: i64 = sqlx::query_scalar(
                            "INSERT INTO budget_reservations (tenant_id, brain_id, period_start, \
                             micros, held_until) VALUES ($1, $2, $3, $4, $5) RETURNING id",
                        )
                        .bind(spender.tenant.0)
                        .bind(spender.brain.0)
                        .bind(month)
                        .bind(estimate_micros.max(0))
                        .bind(held_until)
                        .fetch_one(&mut *tx)
                        .await?;
                        Reservation::Granted(Some(id))
                    }
                    None => Reservation::Granted(None),
                };
                tx.commit().await?;
                Ok(outcome)
            }

            async fn record_answer(
                &self,
                answer: &$crate::store::AnswerRecord,
                reservation: Option<i64>,
                caps: &$crate::store::Caps,
                now: i64,
            ) -> StoreResult<$crate::store::AnswerRecorded> {
                use $crate::store::{CapKind, CapUse};
                let usage = &answer.usage;
                let phases = &answer.phases;
                let sources = serde_json::to_string(&answer.sources)
                    .map_err(|error| StoreError::Corrupt(error.to_string()))?;
                let month = $crate::clock::month_start_ms(now);
                let mut tx = self.writer().begin().await?;
                let id: i64 = sqlx::query_scalar(
                    "INSERT INTO usage (tenant_id, brain_id, user_id, model, prompt_tokens, \
                     completion_tokens, cost_micros, created_at, platform, outcome, question, \
                     sources, queue_ms, retrieval_ms, first_token_ms, total_ms, tokens_per_s) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, \
                     $16, $17) RETURNING id",
                )
                .bind(usage.tenant.0)
                .bind(usage.brain.map(|brain| brain.0))
                .bind(&usage.user)
                .bind(&usage.model)
                .bind(i64::from(usage.prompt_tokens))
                .bind(i64::from(usage.completion_tokens))
                .bind(usage.cost_micros)
                .bind(now)
                .bind(&answer.platform)
                .bind(&answer.outcome)
                .bind(&answer.question)
                .bind(sources)
                .bind(phases.queue_ms)
                .bind(phases.retrieval_ms)
                .bind(phases.first_token_ms)
                .bind(phases.total_ms)
                .bind(phases.tokens_per_s)
                .fetch_one(&mut *tx)
                .await?;
                if let Some(reservation) = reservation {
                    sqlx::query("DELETE FROM budget_reservations WHERE id = $1")
                        .bind(reservation)
                        .execute(&mut *tx)
                        .await?;
                }
                // The scopes in the order reservations lock them.
                let mut scopes = vec![(
                    CapKind::Tenant,
                    $crate::store::rows::tenant_scope(usage.tenant),
                    month,
                    usage.cost_micros,
                )];
                if let Some(brain) = usage.brain {
                    scopes.push((
                        CapKind::Brain,
                        $crate::store::rows::brain_scope(brain),
                        month,
                        usage.cost_micros,
                    ));
                }
                if caps.user_questions > 0 {
                    scopes.push((
                        CapKind::User,
                        $crate::store::rows::user_scope(usage.tenant, &usage.user),
                        $crate::clock::day_start_ms(now),
                        0,
                    ));
                }
                let mut recorded = $crate::store::AnswerRecorded { id, caps: Vec::new(), warn: Vec::new() };
                for (cap, scope, period, cost) in scopes {
                    let (spent, questions, warned) =
                        $crate::store::rows::add_to_period!(tx, &scope, period, cost, 0_i64);
                    let limit = caps.limit(cap);
                    if limit <= 0 {
                        continue;
                    }
                    let used = if cap == CapKind::User { questions } else { spent };
                    let status = CapUse { cap, used, limit };
                    recorded.caps.push(status);
                    if warned == 0 && status.ratio() >= caps.warn_at {
                        sqlx::query(
                            "UPDATE budget_periods SET warned = 1 \
                             WHERE scope = $1 AND period_start = $2",
                        )
                        .bind(&scope)
                        .bind(period)
                        .execute(&mut *tx)
                        .await?;
                        recorded.warn.push(status);
                    }
                }
                tx.commit().await?;
                Ok(recorded)
            }

            async fn set_brain_budget(&self, brain: BrainId, micros: Option<i64>) -> StoreResult<bool> {
                let updated = sqlx::query("UPDATE brains SET budget_micros = $1 WHERE id = $2")
                    .bind(micros)
                    .bind(brain.0)
                    .execute(self.writer())
                    .await?
                    .rows_affected();
                Ok(updated > 0)
            }

            async fn record_vote(
                &self,
                tenant: TenantId,
                answer: i64,
                user: &str,
                vote: i8,
            ) -> StoreResult<bool> {
                let vote = i64::from(vote.signum());
                if vote == 0 {
                    return Err(StoreError::Conflict("a vote is +1 or -1".into()));
                }
                let recorded = sqlx::query(
                    "INSERT INTO feedback (answer_id, user_id, vote, created_at, updated_at) \
                     SELECT id, $2, $3, $4, $4 FROM usage WHERE id = $1 AND tenant_id = $5 \
                     ON CONFLICT (answer_id, user_id) DO UPDATE \
                     SET vote = excluded.vote, updated_at = excluded.updated_at",
                )
                .bind(answer)
                .bind(user)
                .bind(vote)
                .bind(now_ms())
                .bind(tenant.0)
                .execute(self.writer())
                .await?
                .rows_affected();
                Ok(recorded > 0)
            }

            async fn usage_entries(
                &self,
                filter: &$crate::store::UsageFilter,
            ) -> StoreResult<Vec<$crate::store::UsageEntry>> {
                use sqlx::Row as _;
                let rows = sqlx::query(
                    "SELECT t.key AS tenant, b.name AS brain, u.user_id, u.model, u.created_at, \
                     u.prompt_tokens, u.completion_tokens, u.cost_micros, u.total_ms, \
                     (SELECT COUNT(*) FROM feedback f WHERE f.answer_id = u.id AND f.vote > 0) AS up, \
                     (SELECT COUNT(*) FROM feedback f WHERE f.answer_id = u.id AND f.vote < 0) AS down \
                     FROM usage u JOIN tenants t ON t.id = u.tenant_id \
                     LEFT JOIN brains b ON b.id = u.brain_id \
                     WHERE u.created_at >= $1 AND ($2 IS NULL OR u.tenant_id = $2) \
                     AND ($3 IS NULL OR u.brain_id = $3) ORDER BY u.id",
                )
                .bind(filter.since)
                .bind(filter.tenant.map(|tenant| tenant.0))
                .bind(filter.brain.map(|brain| brain.0))
                .fetch_all(self.reader())
                .await?;
                rows.iter()
                    .map(|row| {
                        Ok($crate::store::UsageEntry {
                            tenant: row.try_get("tenant")?,
                            brain: row.try_get("brain")?,
                            user: row.try_get("user_id")?,
                            model: row.try_get("model")?,
                            created_at: row.try_get("created_at")?,
                            prompt_tokens: count(row.try_get("prompt_tokens")?),
                            completion_tokens: count(row.try_get("completion_tokens")?),
                            cost_micros: row.try_get("cost_micros")?,
                            total_ms: row.try_get("total_ms")?,
                            up: count(row.try_get("up")?),
                            down: count(row.try_get("down")?),
                        })
                    })
                    .collect()
            }

            async fn enqueue(&self, job: &NewJob) -> StoreResult<Enqueued> {
                let inserted: Option<i64> = sqlx::query_scalar(
                    "INSERT INTO jobs (kind, payload, state, attempts, max_attempts, run_at, \
                     dedupe_key, created_at, updated_at) \
                     VALUES ($1, $2, 'queued', 0, $3, $4, $5, $4, $4) \
                     ON CONFLICT (dedupe_key) DO NOTHING RETURNING id",
                )
                .bind(job.kind.as_str())
                .bind(job.payload.to_string())
                .bind(i64::from(job.max_attempts))
                .bind(now_ms())
                .bind(job.dedupe_key.as_deref())
                .fetch_optional(self.writer())
                .await?;
                if let Some(id) = inserted {
                    self.after_change();
                    return Ok(Enqueued::New(id));
                }
                let existing: i64 = sqlx::query_scalar("SELECT id FROM jobs WHERE dedupe_key = $1")
                    .bind(job.dedupe_key.as_deref())
                    .fetch_one(self.writer())
                    .await?;
                Ok(Enqueued::Duplicate(existing))
            }

            async fn claim(&self, kind: JobKind, worker: &str, lease: Duration) -> StoreResult<Option<Job>> {
                let now = now_ms();
                if self.reaper.due(now) {
                    let reaped = sqlx::query(REAP_EXPIRED)
                        .bind(kind.as_str())
                        .bind(now)
                        .execute(self.writer())
                        .await?;
                    if reaped.rows_affected() > 0 {
                        self.after_change();
                    }
                }
                let lease_ms = i64::try_from(lease.as_millis()).unwrap_or(i64::MAX);
                let row = sqlx::query(Self::CLAIM)
                    .bind(now.saturating_add(lease_ms))
                    .bind(worker)
                    .bind(now)
                    .bind(kind.as_str())
                    .fetch_optional(self.writer())
                    .await?;
                row.as_ref().map(job_from_row).transpose()
            }

            async fn heartbeat(&self, lease: &Lease, duration: Duration) -> StoreResult<bool> {
                let now = now_ms();
                let until = now.saturating_add(i64::try_from(duration.as_millis()).unwrap_or(i64::MAX));
                let done = sqlx::query(
                    "UPDATE jobs SET lease_until = $1, updated_at = $2 \
                     WHERE id = $3 AND worker = $4 AND attempts = $5 AND state = 'running'",
                )
                .bind(until)
                .bind(now)
                .bind(lease.job)
                .bind(&lease.worker)
                .bind(i64::from(lease.attempt))
                .execute(self.writer())
                .await?;
                Ok(done.rows_affected() == 1)
            }

            async fn complete(&self, lease: &Lease) -> StoreResult<bool> {
                let done = sqlx::query(
                    "UPDATE jobs SET state = 'done', lease_until = NULL, updated_at = $1 \
                     WHERE id = $2 AND worker = $3 AND attempts = $4 AND state = 'running'",
                )
                .bind(now_ms())
                .bind(lease.job)
                .bind(&lease.worker)
                .bind(i64::from(lease.attempt))
                .execute(self.writer())
                .await?;
                // Whoever waits for the job's end (a file's report) is woken.
                self.after_end();
                Ok(done.rows_affected() == 1)
            }

            async fn fail(&self, lease: &Lease, error: &str, retry_at: Option<i64>) -> StoreResult<bool> {
                let now = now_ms();
                let state = if retry_at.is_some() { JobState::Failed } else { JobState::Dead };
                let done = sqlx::query(
                    "UPDATE jobs SET state = $1, run_at = $2, last_error = $3, lease_until = NULL, \
                     updated_at = $4 \
                     WHERE id = $5 AND worker = $6 AND attempts = $7 AND state = 'running'",
                )
                .bind(state.as_str())
                .bind(retry_at.unwrap_or(now))
                .bind(error)
                .bind(now)
                .bind(lease.job)
                .bind(&lease.worker)
                .bind(i64::from(lease.attempt))
                .execute(self.writer())
                .await?;
                if retry_at.is_some() {
                    self.after_change();
                } else {
                    self.after_end();
                }
                Ok(done.rows_affected() == 1)
            }

            async fn release(&self, lease: &Lease) -> StoreResult<bool> {
                let now = now_ms();
                let done = sqlx::query(
                    "UPDATE jobs SET state = 'queued', attempts = attempts - 1, lease_until = NULL, \
                     run_at = $1, updated_at = $1 \
                     WHERE id = $2 AND worker = $3 AND attempts = $4 AND state = 'running'",
                )
                .bind(now)
                .bind(lease.job)
                .bind(&lease.worker)
                .bind(i64::from(lease.attempt))
                .execute(self.writer())
                .await?;
                self.after_change();
                Ok(done.rows_affected() == 1)
            }

            async fn retry(&self, id: JobId) -> StoreResult<RetryOutcome> {
                let now = now_ms();
                let done = sqlx::query(
                    "UPDATE jobs SET state = 'queued', attempts = 0, run_at = $1, lease_until = NULL, \
                     updated_at = $1 WHERE id = $2 AND state IN ('failed', 'dead')",
                )
                .bind(now)
                .bind(id)
                .execute(self.writer())
                .await?;
                if done.rows_affected() == 1 {
                    self.after_change();
                    return Ok(RetryOutcome::Requeued);
                }
                Ok(match self.job(id).await? {
                    None => RetryOutcome::NotFound,
                    Some(job) => RetryOutcome::NotRetryable(job.state),
                })
            }

            async fn job(&self, id: JobId) -> StoreResult<Option<Job>> {
                let sql = format!("SELECT {JOB_COLUMNS} FROM jobs WHERE id = $1");
                let row = sqlx::query(&sql).bind(id).fetch_optional(self.reader()).await?;
                row.as_ref().map(job_from_row).transpose()
            }

            async fn jobs(&self, state: Option<JobState>, limit: u32) -> StoreResult<Vec<Job>> {
                let rows = match state {
                    Some(state) => {
                        let sql = format!(
                            "SELECT {JOB_COLUMNS} FROM jobs WHERE state = $1 ORDER BY id DESC LIMIT $2"
                        );
                        sqlx::query(&sql)
                            .bind(state.as_str())
                            .bind(i64::from(limit))
                            .fetch_all(self.reader())
                            .await?
                    }
                    None => {
                        let sql = format!("SELECT {JOB_COLUMNS} FROM jobs ORDER BY id DESC LIMIT $1");
                        sqlx::query(&sql).bind(i64::from(limit)).fetch_all(self.reader()).await?
                    }
                };
                rows.iter().map(job_from_row).collect()
            }

            async fn jobs_alive_or_ended_since(
                &self,
                kind: JobKind,
                since: i64,
                limit: u32,
            ) -> StoreResult<Vec<Job>> {
                let sql = format!(
                    "SELECT {JOB_COLUMNS} FROM jobs WHERE kind = $1 \
                     AND (state IN ('queued', 'running', 'failed') OR updated_at >= $2) \
                     ORDER BY id DESC LIMIT $3"
                );
                let rows = sqlx::query(&sql)
                    .bind(kind.as_str())
                    .bind(since)
                    .bind(i64::from(limit))
                    .fetch_all(self.reader())
                    .await?;
                rows.iter().map(job_from_row).collect()
            }

            async fn queue_depths(&self) -> StoreResult<Vec<QueueDepth>> {
                let rows: Vec<(String, String, i64)> = sqlx::query_as(
                    "SELECT kind, state, COUNT(*) FROM jobs GROUP BY kind, state ORDER BY kind, state",
                )
                .fetch_all(self.reader())
                .await?;
                rows.into_iter()
                    .map(|(kind, state, n)| {
                        Ok(QueueDepth {
                            kind: kind.parse().map_err(StoreError::Corrupt)?,
                            state: state.parse().map_err(StoreError::Corrupt)?,
                            count: count(n),
                        })
                    })
                    .collect()
            }

            async fn next_due(&self, kind: JobKind) -> StoreResult<Option<i64>> {
                let due: Option<i64> = sqlx::query_scalar(
                    "SELECT MIN(due) FROM ( \
                       SELECT MIN(run_at) AS due FROM jobs \
                         WHERE kind = $1 AND state IN ('queued', 'failed') \
                       UNION ALL \
                       SELECT MIN(lease_until) AS due FROM jobs \
                         WHERE kind = $1 AND state = 'running' \
                     ) AS next",
                )
                .bind(kind.as_str())
                .fetch_one(self.reader())
                .await?;
                Ok(due)
            }

            fn wakeups(&self) -> Arc<Notify> {
                self.subscribe()
            }

            fn job_ends(&self) -> Arc<Notify> {
                self.subscribe_ends()
            }
        }
    };
}

pub(super) use impl_store;
