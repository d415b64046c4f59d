//! The store's side of reading history, on SQLite and PostgreSQL: messages recorded a page at a
//! time (newest first) group into the same chatter windows as live ones and count only what
//! was new; a deleted message's tombstone keeps it out; one read per channel at a time, with
//! its checkpoint and counts kept.

use std::sync::Arc;

use engram::brain::{BrainId, BrainName, TenantId, TenantKey};
use engram::store::conversations::{NewMessage, UnitHint};
use engram::store::history::{HistoryCounts, HistoryStatus};
use engram::store::Store;

macro_rules! contract_tests {
    ($($test:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $test() {
                    let db = crate::support::TestDb::sqlite().await;
                    super::$test(db.store()).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $test() {
                    let db = crate::support::TestDb::postgres().await;
                    super::$test(db.store()).await;
                }
            )*
        }
    };
}

contract_tests!(
    past_messages_read_newest_first_form_windows_by_time_and_count_once,
    one_read_per_channel_keeps_its_checkpoint_until_it_ends,
);

const CHANNEL: &str = "discord:42";
const MINUTE: i64 = 60_000;

async fn brain(store: &dyn Store) -> (TenantId, BrainId) {
    let tenant = store
        .ensure_tenant(&TenantKey::parse("discord:1").unwrap())
        .await
        .unwrap();
    let brain = store
        .create_brain(tenant, &BrainName::parse("handbook").unwrap())
        .await
        .unwrap();
    (tenant, brain.id)
}

fn message(tenant: TenantId, brain: BrainId, n: i64, at: i64) -> NewMessage {
    NewMessage {
        tenant,
        brain,
        channel: CHANNEL.into(),
        key: format!("discord:{n}"),
        unit: UnitHint::Chatter,
        author: "Alice".into(),
        text: format!("note {n}"),
        posted_at: at,
        link: None,
        title: "<#42>, 1 Dec 2026".into(),
    }
}

async fn past_messages_read_newest_first_form_windows_by_time_and_count_once(
    store: Arc<dyn Store>,
) {
    let (tenant, brain) = brain(store.as_ref()).await;
    let start = 1_764_547_200_000; // 1 Dec 2025
                                   // Two bursts of ten messages a minute apart, three hours between them; read newest first,
                                   // in pages of five, as a history read does.
    let mut all: Vec<NewMessage> = (0..10)
        .map(|n| message(tenant, brain, n, start + n * MINUTE))
        .chain((10..20).map(|n| message(tenant, brain, n, start + 180 * MINUTE + n * MINUTE)))
        .collect();
    all.reverse();
    // One of them was deleted before the read reached it.
    store
        .delete_messages(tenant, &["discord:3".to_string()])
        .await
        .unwrap();
    let mut new = 0;
    for page in all.chunks(5) {
        new += store.record_messages(page).await.unwrap();
    }
    assert_eq!(new, 19, "every message but the deleted one");
    let stats = store.conversation_stats(brain).await.unwrap();
    assert_eq!(
        (stats.messages, stats.units),
        (19, 2),
        "a window per burst, as live learning would make them: {stats:?}"
    );
    // Read again: nothing is new, nothing is added.
    for page in all.chunks(7) {
        assert_eq!(store.record_messages(page).await.unwrap(), 0);
    }
    assert_eq!(store.conversation_stats(brain).await.unwrap().messages, 19);
}

async fn one_read_per_channel_keeps_its_checkpoint_until_it_ends(store: Arc<dyn Store>) {
    let (tenant, brain) = brain(store.as_ref()).await;
    let read = store
        .start_history_read(tenant, brain, CHANNEL, 0, "{}")
        .await
        .unwrap()
        .expect("the first read starts");
    let job = store
        .enqueue(&engram::jobs::NewJob::new(
            engram::jobs::JobKind::History,
            serde_json::json!({"read": read}),
            3,
        ))
        .await
        .unwrap()
        .id();
    store.set_history_job(read, job).await.unwrap();
    let counts = HistoryCounts {
        messages: 120,
        files: 2,
        threads: 1,
    };
    store
        .save_history_read(read, r#"{"page":2}"#, counts, HistoryStatus::Running)
        .await
        .unwrap();
    let running = store
        .start_history_read(tenant, brain, CHANNEL, 0, "{}")
        .await
        .unwrap()
        .expect_err("one read at a time");
    assert_eq!((running.id, running.counts), (read, counts));
    let found = store.history_read(read).await.unwrap().unwrap();
    assert_eq!(found.state, r#"{"page":2}"#);
    assert_eq!(found.job, Some(job));
    let of_jobs = store.history_reads_of_jobs(&[job]).await.unwrap();
    assert_eq!(of_jobs.len(), 1);
    assert!(store
        .last_history_read(tenant, CHANNEL)
        .await
        .unwrap()
        .is_none());
    // Another channel reads at the same time.
    assert!(store
        .start_history_read(tenant, brain, "discord:43", 0, "{}")
        .await
        .unwrap()
        .is_ok());

    store
        .save_history_read(read, "{}", counts, HistoryStatus::Done)
        .await
        .unwrap();
    let last = store
        .last_history_read(tenant, CHANNEL)
        .await
        .unwrap()
        .unwrap();
    assert_eq!((last.id, last.status), (read, HistoryStatus::Done));
    assert!(last.finished_at.is_some());
    assert!(
        store
            .start_history_read(tenant, brain, CHANNEL, 0, "{}")
            .await
            .unwrap()
            .is_ok(),
        "a finished read lets the next one start"
    );
}
