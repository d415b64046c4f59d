//! Conversation knowledge in the store: the messages people post in channels that learn them,
//! grouped into units — a thread, a reply chain, or a window of channel chatter — each learned
//! as one document whenever it changed (`revision` past `learned_revision`), under a lease so
//! one process learns a unit at a time. Edits replace a message's text; a deleted message's
//! row is deleted. Also which channels are restricted (not readable by every member), and so
//! which documents a question asked elsewhere must not see. The SQL is written once for both dialects (`conversation_methods!`,
//! expanded inside `impl_store!`).

use std::time::Duration;

use crate::brain::{BrainId, DocumentId, TenantId};

/// Channel chatter joins the channel's latest window while it is at most this old…
pub const WINDOW_GAP: Duration = Duration::from_secs(15 * 60);
/// …and holds fewer messages than this; otherwise a new window starts.
pub const WINDOW_MESSAGES: i64 = 40;

/// Which unit a new message belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UnitHint {
    /// A thread (platform-qualified key), started by this message if it is new.
    Thread(String),
    /// A reply to this message (platform-qualified key): the unit of the message replied to,
    /// or, when that one is not known, the channel's chatter.
    ReplyTo(String),
    /// Channel chatter: the channel's latest window, or a new one.
    Chatter,
}

/// A message someone posted in a channel that learns its messages.
#[derive(Debug, Clone)]
pub struct NewMessage {
    pub tenant: TenantId,
    pub brain: BrainId,
    /// The bound channel (a thread's parent).
    pub channel: String,
    /// Platform-qualified and unique in the tenant (`discord:<id>`, `slack:<channel>:<ts>`).
    pub key: String,
    pub unit: UnitHint,
    pub author: String,
    pub text: String,
    /// Unix ms.
    pub posted_at: i64,
    pub link: Option<String>,
    /// What a unit this message starts is cited as (the channel and the day).
    pub title: String,
}

/// A unit to learn, as claimed: everything its document needs.
#[derive(Debug, Clone)]
pub struct UnitToLearn {
    pub id: i64,
    pub tenant: TenantId,
    pub brain: BrainId,
    pub channel: String,
    pub key: String,
    pub title: String,
    pub link: Option<String>,
    /// The revision these messages are (at least).
    pub revision: i64,
    /// The document that holds the unit now, if any.
    pub document: Option<DocumentId>,
    /// Claims since it was last learned (this one included).
    pub attempts: u32,
    /// Oldest first.
    pub messages: Vec<UnitMessage>,
}

/// One message of a unit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnitMessage {
    pub author: String,
    pub text: String,
    pub posted_at: i64,
    pub edited: bool,
}

/// What a brain learned from conversations.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ConversationStats {
    /// Messages recorded (deleted ones are gone).
    pub messages: u64,
    /// Threads among the units.
    pub threads: u64,
    /// Units: threads, reply chains and windows of chatter.
    pub units: u64,
    /// Units changed and not learned again yet.
    pub changed: u64,
}

/// The conversation methods of a store back-end (inherent, named `conversation_*`; the
/// `Store` methods `impl_store!` writes call them).
macro_rules! conversation_methods {
    ($store:ty) => {
        impl $store {
        pub(super) async fn conversation_record_message(
            &self,
            message: &$crate::store::conversations::NewMessage,
        ) -> StoreResult<i64> {
            let mut tx = self.writer().begin().await?;
            $crate::store::conversations::take_the_writer!(tx);
            let recorded = $crate::store::conversations::record_one!(tx, message);
            tx.commit().await?;
            if recorded.changed() {
                self.after_change();
            }
            Ok(recorded.unit())
        }

        pub(super) async fn conversation_record_messages(
            &self,
            messages: &[$crate::store::conversations::NewMessage],
        ) -> StoreResult<u64> {
            use $crate::store::conversations::Recorded;
            let mut tx = self.writer().begin().await?;
            $crate::store::conversations::take_the_writer!(tx);
            let (mut new, mut changed) = (0, false);
            for message in messages {
                let recorded = $crate::store::conversations::record_one!(tx, message);
                new += u64::from(matches!(recorded, Recorded::New(_)));
                changed |= recorded.changed();
            }
            tx.commit().await?;
            if changed {
                self.after_change();
            }
            Ok(new)
        }

        pub(super) async fn conversation_edit_message(
            &self,
            tenant: TenantId,
            key: &str,
            text: &str,
            edited_at: i64,
        ) -> StoreResult<bool> {
            let mut tx = self.writer().begin().await?;
            let unit: Option<i64> = sqlx::query_scalar(
                "UPDATE conversation_messages SET text = $3, edited_at = $4 \
                 WHERE tenant_id = $1 AND message_key = $2 AND text <> $3 RETURNING unit_id",
            )
            .bind(tenant.0)
            .bind(key)
            .bind(text)
            .bind(edited_at)
            .fetch_optional(&mut *tx)
            .await?;
            if let Some(unit) = unit {
                $crate::store::conversations::touch_units!(tx, "id = $1", unit);
            }
            tx.commit().await?;
            if unit.is_some() {
                self.after_change();
            }
            Ok(unit.is_some())
        }

        pub(super) async fn conversation_delete_messages(&self, tenant: TenantId, keys: &[String]) -> StoreResult<u64> {
            let mut tx = self.writer().begin().await?;
            let mut deleted = 0;
            for key in keys {
                sqlx::query(
                    "INSERT INTO conversation_tombstones (tenant_id, message_key, deleted_at) \
                     VALUES ($1, $2, $3) ON CONFLICT (tenant_id, message_key) DO NOTHING",
                )
                .bind(tenant.0)
                .bind(key)
                .bind(now_ms())
                .execute(&mut *tx)
                .await?;
                let unit: Option<i64> = sqlx::query_scalar(
                    "DELETE FROM conversation_messages WHERE tenant_id = $1 AND message_key = $2 \
                     RETURNING unit_id",
                )
                .bind(tenant.0)
                .bind(key)
                .fetch_optional(&mut *tx)
                .await?;
                if let Some(unit) = unit {
                    $crate::store::conversations::touch_units!(tx, "id = $1", unit);
                    deleted += 1;
                }
            }
            tx.commit().await?;
            if deleted > 0 {
                self.after_change();
            }
            Ok(deleted)
        }

        pub(super) async fn conversation_forget_conversation_of(
            &self,
            tenant: TenantId,
            brain: BrainId,
            key: &str,
        ) -> StoreResult<u64> {
            let mut tx = self.writer().begin().await?;
            let unit: Option<(i64, String)> = sqlx::query_as(
                "SELECT u.id, u.kind FROM conversation_messages m \
                 JOIN conversation_units u ON u.id = m.unit_id \
                 WHERE m.tenant_id = $1 AND m.message_key = $2 AND u.brain_id = $3",
            )
            .bind(tenant.0)
            .bind(key)
            .bind(brain.0)
            .fetch_optional(&mut *tx)
            .await?;
            let Some((unit, kind)) = unit else {
                return Ok(0);
            };
            // A thread or a reply chain goes whole; in a window of chatter, only the message.
            let deleted = if kind == "window" {
                sqlx::query(
                    "DELETE FROM conversation_messages WHERE tenant_id = $1 AND message_key = $2",
                )
                .bind(tenant.0)
                .bind(key)
                .execute(&mut *tx)
                .await?
                .rows_affected()
            } else {
                sqlx::query("DELETE FROM conversation_messages WHERE unit_id = $1")
                    .bind(unit)
                    .execute(&mut *tx)
                    .await?
                    .rows_affected()
            };
            $crate::store::conversations::touch_units!(tx, "id = $1", unit);
            tx.commit().await?;
            self.after_change();
            Ok(deleted)
        }

        pub(super) async fn conversation_delete_conversation(&self, tenant: TenantId, unit_key: &str) -> StoreResult<u64> {
            let mut tx = self.writer().begin().await?;
            let deleted = sqlx::query(
                "DELETE FROM conversation_messages WHERE unit_id IN \
                 (SELECT id FROM conversation_units WHERE tenant_id = $1 AND unit_key = $2)",
            )
            .bind(tenant.0)
            .bind(unit_key)
            .execute(&mut *tx)
            .await?
            .rows_affected();
            if deleted > 0 {
                sqlx::query(
                    "UPDATE conversation_units SET revision = revision + 1, retry_at = 0 \
                     WHERE tenant_id = $1 AND unit_key = $2",
                )
                .bind(tenant.0)
                .bind(unit_key)
                .execute(&mut *tx)
                .await?;
            }
            tx.commit().await?;
            if deleted > 0 {
                self.after_change();
            }
            Ok(deleted)
        }

        pub(super) async fn conversation_delete_channel_conversations(
            &self,
            tenant: TenantId,
            channel: &str,
        ) -> StoreResult<u64> {
            let mut tx = self.writer().begin().await?;
            let deleted = sqlx::query(
                "DELETE FROM conversation_messages WHERE unit_id IN \
                 (SELECT id FROM conversation_units WHERE tenant_id = $1 AND channel = $2)",
            )
            .bind(tenant.0)
            .bind(channel)
            .execute(&mut *tx)
            .await?
            .rows_affected();
            sqlx::query(
                "UPDATE conversation_units SET revision = revision + 1, retry_at = 0 \
                 WHERE tenant_id = $1 AND channel = $2 \
                 AND (document_id IS NOT NULL OR revision > learned_revision)",
            )
            .bind(tenant.0)
            .bind(channel)
            .execute(&mut *tx)
            .await?;
            tx.commit().await?;
            self.after_change();
            Ok(deleted)
        }

        pub(super) async fn conversation_claim_unit(
            &self,
            worker: &str,
            lease: std::time::Duration,
        ) -> StoreResult<Option<$crate::store::conversations::UnitToLearn>> {
            use $crate::store::conversations::{UnitMessage, UnitToLearn};
            let now = now_ms();
            let until = now.saturating_add(i64::try_from(lease.as_millis()).unwrap_or(i64::MAX));
            #[allow(clippy::type_complexity)]
            let row: Option<(i64, i64, i64, String, String, String, Option<String>, i64, Option<i64>, i64)> =
                sqlx::query_as(
                    "UPDATE conversation_units SET lease_until = $1, worker = $2, \
                     attempts = attempts + 1 \
                     WHERE id = (SELECT id FROM conversation_units \
                                 WHERE revision > learned_revision AND retry_at <= $3 \
                                 AND (lease_until IS NULL OR lease_until < $3) \
                                 ORDER BY last_at LIMIT 1) \
                     AND (lease_until IS NULL OR lease_until < $3) \
                     RETURNING id, tenant_id, brain_id, channel, unit_key, title, link, revision, \
                     document_id, attempts",
                )
                .bind(until)
                .bind(worker)
                .bind(now)
                .fetch_optional(self.writer())
                .await?;
            let Some((id, tenant, brain, channel, key, title, link, revision, document, attempts)) = row
            else {
                return Ok(None);
            };
            let messages: Vec<(String, String, i64, Option<i64>)> = sqlx::query_as(
                "SELECT author, text, posted_at, edited_at FROM conversation_messages \
                 WHERE unit_id = $1 ORDER BY posted_at, message_key",
            )
            .bind(id)
            .fetch_all(self.writer())
            .await?;
            Ok(Some(UnitToLearn {
                id,
                tenant: TenantId(tenant),
                brain: BrainId(brain),
                channel,
                key,
                title,
                link,
                revision,
                document: document.map(DocumentId),
                attempts: u32::try_from(attempts).unwrap_or(u32::MAX),
                messages: messages
                    .into_iter()
                    .map(|(author, text, posted_at, edited_at)| UnitMessage {
                        author,
                        text,
                        posted_at,
                        edited: edited_at.is_some(),
                    })
                    .collect(),
            }))
        }

        pub(super) async fn conversation_unit_learned(
            &self,
            unit: i64,
            worker: &str,
            revision: i64,
            document: Option<DocumentId>,
        ) -> StoreResult<bool> {
            let done = sqlx::query(
                "UPDATE conversation_units SET learned_revision = \
                 CASE WHEN learned_revision < $3 THEN $3 ELSE learned_revision END, \
                 document_id = $4, lease_until = NULL, worker = NULL, attempts = 0, \
                 last_error = NULL WHERE id = $1 AND worker = $2",
            )
            .bind(unit)
            .bind(worker)
            .bind(revision)
            .bind(document.map(|d| d.0))
            .execute(self.writer())
            .await?
            .rows_affected();
            Ok(done > 0)
        }

        pub(super) async fn conversation_unit_failed(
            &self,
            unit: i64,
            worker: &str,
            error: &str,
            retry_at: i64,
        ) -> StoreResult<()> {
            sqlx::query(
                "UPDATE conversation_units SET lease_until = NULL, worker = NULL, \
                 last_error = $3, retry_at = $4 WHERE id = $1 AND worker = $2",
            )
            .bind(unit)
            .bind(worker)
            .bind(error)
            .bind(retry_at)
            .execute(self.writer())
            .await?;
            Ok(())
        }

        pub(super) async fn conversation_set_channel_messages(
            &self,
            tenant: TenantId,
            channel: &str,
            on: bool,
        ) -> StoreResult<bool> {
            let changed = sqlx::query(
                "UPDATE bindings SET messages = $3 WHERE tenant_id = $1 AND channel = $2",
            )
            .bind(tenant.0)
            .bind(channel)
            .bind(i64::from(on))
            .execute(self.writer())
            .await?
            .rows_affected();
            Ok(changed > 0)
        }

        pub(super) async fn conversation_conversation_stats(
            &self,
            brain: BrainId,
        ) -> StoreResult<$crate::store::conversations::ConversationStats> {
            let (units, threads, changed): (i64, i64, i64) = sqlx::query_as(
                "SELECT COUNT(*), \
                 CAST(COALESCE(SUM(CASE WHEN kind = 'thread' THEN 1 ELSE 0 END), 0) AS BIGINT), \
                 CAST(COALESCE(SUM(CASE WHEN revision > learned_revision THEN 1 ELSE 0 END), 0) AS BIGINT) \
                 FROM conversation_units u WHERE brain_id = $1 \
                 AND (revision > learned_revision OR EXISTS \
                      (SELECT 1 FROM conversation_messages m WHERE m.unit_id = u.id))",
            )
            .bind(brain.0)
            .fetch_one(self.reader())
            .await?;
            let messages: i64 = sqlx::query_scalar(
                "SELECT COUNT(*) FROM conversation_messages m \
                 JOIN conversation_units u ON u.id = m.unit_id WHERE u.brain_id = $1",
            )
            .bind(brain.0)
            .fetch_one(self.reader())
            .await?;
            let count = |n: i64| u64::try_from(n).unwrap_or(0);
            Ok($crate::store::conversations::ConversationStats {
                messages: count(messages),
                threads: count(threads),
                units: count(units),
                changed: count(changed),
            })
        }

        pub(super) async fn conversation_set_channel_restricted(
            &self,
            tenant: TenantId,
            channel: &str,
            restricted: bool,
        ) -> StoreResult<()> {
            if restricted {
                sqlx::query(
                    "INSERT INTO restricted_channels (tenant_id, channel, since) \
                     VALUES ($1, $2, $3) ON CONFLICT (tenant_id, channel) DO NOTHING",
                )
                .bind(tenant.0)
                .bind(channel)
                .bind(now_ms())
                .execute(self.writer())
                .await?;
            } else {
                sqlx::query("DELETE FROM restricted_channels WHERE tenant_id = $1 AND channel = $2")
                    .bind(tenant.0)
                    .bind(channel)
                    .execute(self.writer())
                    .await?;
            }
            Ok(())
        }

        pub(super) async fn conversation_is_restricted(
            &self,
            tenant: TenantId,
            channel: &str,
        ) -> StoreResult<bool> {
            let found: Option<i64> = sqlx::query_scalar(
                "SELECT since FROM restricted_channels WHERE tenant_id = $1 AND channel = $2",
            )
            .bind(tenant.0)
            .bind(channel)
            .fetch_optional(self.reader())
            .await?;
            Ok(found.is_some())
        }

        pub(super) async fn conversation_hidden_documents(
            &self,
            brain: BrainId,
            here: [&str; 2],
        ) -> StoreResult<Vec<DocumentId>> {
            // A file's scope is the channel it was posted in; a conversation's, its unit.
            let ids: Vec<i64> = sqlx::query_scalar(
                "SELECT d.id FROM documents d JOIN brains b ON b.id = d.brain_id \
                 WHERE d.brain_id = $1 AND d.scope NOT IN ($2, $3) AND ( \
                   EXISTS (SELECT 1 FROM restricted_channels r \
                           WHERE r.tenant_id = b.tenant_id AND r.channel = d.scope) \
                   OR EXISTS (SELECT 1 FROM conversation_units u \
                              JOIN restricted_channels r \
                                ON r.tenant_id = u.tenant_id AND r.channel = u.channel \
                              WHERE u.tenant_id = b.tenant_id \
                              AND d.scope = 'conversation:' || u.unit_key \
                              AND u.channel NOT IN ($2, $3))) \
                 ORDER BY d.id",
            )
            .bind(brain.0)
            .bind(here[0])
            .bind(here[1])
            .fetch_all(self.reader())
            .await?;
            Ok(ids.into_iter().map(DocumentId).collect())
        }

        pub(super) async fn conversation_channel_learns_messages(&self, tenant: TenantId, channel: &str) -> StoreResult<bool> {
            let on: Option<i64> = sqlx::query_scalar(
                "SELECT messages FROM bindings WHERE tenant_id = $1 AND channel = $2",
            )
            .bind(tenant.0)
            .bind(channel)
            .fetch_optional(self.reader())
            .await?;
            Ok(on == Some(1))
        }
        }
    };
}

/// What recording one message did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Recorded {
    /// Recorded, in this unit.
    New(i64),
    /// Known already, with new text now.
    Changed(i64),
    /// Known already, unchanged.
    Same(i64),
    /// Deleted before it was recorded: never recorded.
    Refused,
}

impl Recorded {
    /// The message's unit (0 when refused).
    pub fn unit(self) -> i64 {
        match self {
            Recorded::New(unit) | Recorded::Changed(unit) | Recorded::Same(unit) => unit,
            Recorded::Refused => 0,
        }
    }

    /// Whether a unit changed (something to learn again).
    pub fn changed(self) -> bool {
        matches!(self, Recorded::New(_) | Recorded::Changed(_))
    }
}

/// Records one message in transaction `tx` (see `Store::record_message`); evaluates to a
/// [`Recorded`].
macro_rules! record_one {
    ($tx:ident, $message:expr) => {{
        use $crate::store::conversations::{Recorded, UnitHint, WINDOW_GAP, WINDOW_MESSAGES};
        let message: &$crate::store::conversations::NewMessage = $message;
        let known: Option<i64> = sqlx::query_scalar(
            "SELECT unit_id FROM conversation_messages WHERE tenant_id = $1 AND message_key = $2",
        )
        .bind(message.tenant.0)
        .bind(&message.key)
        .fetch_optional(&mut *$tx)
        .await?;
        // Deleted already (the delete overtook it): never recorded.
        let deleted: Option<i64> = sqlx::query_scalar(
            "SELECT deleted_at FROM conversation_tombstones \
                 WHERE tenant_id = $1 AND message_key = $2",
        )
        .bind(message.tenant.0)
        .bind(&message.key)
        .fetch_optional(&mut *$tx)
        .await?;
        if deleted.is_some() {
            Recorded::Refused
        } else {
            match known {
                Some(unit) => {
                    // Delivered again (a replay, a second gateway): the text may have changed.
                    let changed = sqlx::query(
                        "UPDATE conversation_messages SET text = $3, author = $4 \
                         WHERE tenant_id = $1 AND message_key = $2 AND text <> $3",
                    )
                    .bind(message.tenant.0)
                    .bind(&message.key)
                    .bind(&message.text)
                    .bind(&message.author)
                    .execute(&mut *$tx)
                    .await?
                    .rows_affected();
                    if changed > 0 {
                        $crate::store::conversations::touch_units!($tx, "id = $1", unit);
                        Recorded::Changed(unit)
                    } else {
                        Recorded::Same(unit)
                    }
                }
                None => {
                    let unit = {
                        let replied = match &message.unit {
                            UnitHint::ReplyTo(to) => {
                                sqlx::query_scalar::<_, i64>(
                                    "SELECT unit_id FROM conversation_messages \
                             WHERE tenant_id = $1 AND message_key = $2",
                                )
                                .bind(message.tenant.0)
                                .bind(to)
                                .fetch_optional(&mut *$tx)
                                .await?
                            }
                            _ => None,
                        };
                        let window = match (&message.unit, replied) {
                            (UnitHint::Thread(_), _) | (_, Some(_)) => None,
                            _ => {
                                let gap = i64::try_from(WINDOW_GAP.as_millis()).unwrap_or(i64::MAX);
                                sqlx::query_scalar::<_, i64>(
                                    "SELECT u.id FROM conversation_units u \
                                 WHERE u.tenant_id = $1 AND u.channel = $2 AND u.kind = 'window' \
                                 AND u.brain_id = $3 AND u.last_at >= $4 AND u.first_at <= $6 \
                                 AND (SELECT COUNT(*) FROM conversation_messages m \
                                      WHERE m.unit_id = u.id) < $5 \
                                 ORDER BY u.last_at DESC LIMIT 1",
                                )
                                .bind(message.tenant.0)
                                .bind(&message.channel)
                                .bind(message.brain.0)
                                .bind(message.posted_at.saturating_sub(gap))
                                .bind(WINDOW_MESSAGES)
                                .bind(message.posted_at.saturating_add(gap))
                                .fetch_optional(&mut *$tx)
                                .await?
                            }
                        };
                        match replied.or(window) {
                            Some(unit) => unit,
                            None => {
                                let (key, kind) = match &message.unit {
                                    UnitHint::Thread(key) => (key.clone(), "thread"),
                                    UnitHint::ReplyTo(_) => (message.key.clone(), "chain"),
                                    UnitHint::Chatter => (message.key.clone(), "window"),
                                };
                                sqlx::query(
                                    "INSERT INTO conversation_units (tenant_id, brain_id, channel, \
                                 unit_key, kind, title, link, first_at, last_at) \
                                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $8) \
                                 ON CONFLICT (tenant_id, unit_key) DO NOTHING",
                                )
                                .bind(message.tenant.0)
                                .bind(message.brain.0)
                                .bind(&message.channel)
                                .bind(&key)
                                .bind(kind)
                                .bind(&message.title)
                                .bind(message.link.as_deref())
                                .bind(message.posted_at)
                                .execute(&mut *$tx)
                                .await?;
                                sqlx::query_scalar(
                                    "SELECT id FROM conversation_units \
                                 WHERE tenant_id = $1 AND unit_key = $2",
                                )
                                .bind(message.tenant.0)
                                .bind(&key)
                                .fetch_one(&mut *$tx)
                                .await?
                            }
                        }
                    };
                    sqlx::query(
                    "INSERT INTO conversation_messages (tenant_id, message_key, unit_id, author, \
                 text, posted_at, link) VALUES ($1, $2, $3, $4, $5, $6, $7) \
                 ON CONFLICT (tenant_id, message_key) DO NOTHING",
                )
                .bind(message.tenant.0)
                .bind(&message.key)
                .bind(unit)
                .bind(&message.author)
                .bind(&message.text)
                .bind(message.posted_at)
                .bind(message.link.as_deref())
                .execute(&mut *$tx)
                .await?;
                    sqlx::query(
                        "UPDATE conversation_units SET revision = revision + 1, retry_at = 0, \
                 last_at = CASE WHEN last_at < $2 THEN $2 ELSE last_at END, \
                 first_at = CASE WHEN first_at > $2 THEN $2 ELSE first_at END WHERE id = $1",
                    )
                    .bind(unit)
                    .bind(message.posted_at)
                    .execute(&mut *$tx)
                    .await?;
                    Recorded::New(unit)
                }
            }
        }
    }};
}

/// Marks the units `condition` (on `$1` = `value`) selects as changed, in transaction `tx`.
macro_rules! touch_units {
    ($tx:ident, $condition:literal, $value:expr) => {
        sqlx::query(concat!(
            "UPDATE conversation_units SET revision = revision + 1, retry_at = 0 WHERE ",
            $condition
        ))
        .bind($value)
        .execute(&mut *$tx)
        .await?;
    };
}

pub(crate) use conversation_methods;
/// Makes a transaction's first statement a write (one that changes nothing): on SQLite a
/// transaction that reads first and writes later fails with `SQLITE_BUSY` at once when another
/// connection (the embedded index's) wrote meanwhile, while one that writes first waits for the
/// writer like any other.
macro_rules! take_the_writer {
    ($tx:ident) => {
        sqlx::query("UPDATE conversation_units SET revision = revision WHERE id = 0")
            .execute(&mut *$tx)
            .await?;
    };
}

pub(crate) use record_one;
pub(crate) use take_the_writer;
pub(crate) use touch_units;
