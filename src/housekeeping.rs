//! Housekeeping: each engram process prunes what the store no longer needs (finished jobs,
//! platform event ids already acted on, idle conversations) once an hour.

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::clock::now_ms;
use crate::store::{Retention, Store};

/// The first pass runs this long after start, so a restart loop does not prune in a loop.
const FIRST_AFTER: Duration = Duration::from_secs(60);
/// Then one pass per this long. Passes from several processes are harmless.
const EVERY: Duration = Duration::from_secs(60 * 60);

/// Prunes `store` by `keep` until `stop` is cancelled.
pub async fn run(store: Arc<dyn Store>, keep: Retention, stop: CancellationToken) {
    let mut next = tokio::time::Instant::now() + FIRST_AFTER;
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep_until(next) => {}
        }
        match store.prune(now_ms(), &keep).await {
            Ok(pruned) if pruned.total() > 0 => tracing::info!(
                done_jobs = pruned.done_jobs,
                seen_events = pruned.seen_events,
                conversations = pruned.conversations,
                answer_messages = pruned.answer_messages,
                files = pruned.files,
                "pruned the store"
            ),
            Ok(_) => {}
            Err(error) => tracing::warn!(%error, "cannot prune the store; trying again later"),
        }
        next += EVERY;
    }
}
