//! The store and job-queue contract, run on SQLite and on a real PostgreSQL alike.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use engram::brain::{BindingMode, BrainName, TenantKey};
use engram::clock::now_ms;
use engram::jobs::{Enqueued, Job, JobId, JobKind, JobState, NewJob, RetryOutcome, RetryPolicy};
use engram::store::{EventClaim, Store, StoreError};
use engram::telemetry::{JobOutcome, Metrics};
use engram::worker::{self, JobFailure, JobHandler, Shutdown, WorkerOptions};
use serde_json::json;

use crate::support::eventually;

macro_rules! contract_tests {
    ($($test:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $test() {
                    let db = crate::support::TestDb::sqlite().await;
                    super::$test(db.store()).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $test() {
                    let db = crate::support::TestDb::postgres().await;
                    super::$test(db.store()).await;
                }
            )*
        }
    };
}

contract_tests!(
    eight_workers_complete_a_thousand_jobs_exactly_once,
    a_worker_that_stops_heartbeating_loses_its_job,
    heartbeats_keep_a_long_job_with_its_worker,
    failed_attempts_back_off_exponentially_then_dead_letter,
    permanent_failure_is_dead_at_once_with_its_reason,
    dedupe_key_gives_back_the_first_job,
    dead_jobs_can_be_retried_by_hand,
    idle_worker_wakes_on_enqueue_without_polling,
    a_job_ending_wakes_whoever_waits_for_it,
    shutdown_releases_jobs_still_running_after_the_grace_period,
    lease_expiry_after_the_last_attempt_dead_letters,
    queue_depths_count_jobs_by_kind_and_state,
    brains_belong_to_one_tenant,
    usage_is_totalled_per_tenant_and_model,
    conversations_keep_their_turns_per_tenant,
    channels_bind_only_to_their_own_tenants_brains,
    a_platform_event_is_acted_on_once,
    an_event_is_held_while_acted_on_and_taken_over_when_its_hold_runs_out,
    answer_messages_map_to_their_conversation_per_tenant_and_channel,
    pruning_deletes_only_what_is_no_longer_needed,
    documents_are_marked_indexed_and_deleted_only_in_their_brain,
    a_new_version_retires_the_old_one_into_the_history,
    jobs_alive_or_recently_ended_are_found_by_kind,
);

const LONG: Duration = Duration::from_secs(60);

fn options(name: &str, concurrency: usize) -> WorkerOptions {
    WorkerOptions {
        kind: JobKind::Ingest,
        concurrency,
        lease: Duration::from_secs(30),
        retry: RetryPolicy {
            base: Duration::from_millis(100),
            max: Duration::from_secs(5),
        },
        name: name.to_string(),
        // Far longer than any test waits: work must arrive by wake-up, not by polling.
        idle_recheck: Duration::from_secs(600),
    }
}

fn job(n: u64) -> NewJob {
    NewJob::new(JobKind::Ingest, json!({ "n": n }), 3)
}

/// Records how often each job ran, and ends each run with a fixed result.
#[derive(Default)]
struct Recorder {
    runs: Mutex<HashMap<JobId, Vec<i64>>>,
    fail_with: Option<JobFailure>,
    hold_for: Option<Duration>,
}

impl Recorder {
    fn failing(failure: JobFailure) -> Self {
        Self {
            fail_with: Some(failure),
            ..Self::default()
        }
    }

    fn holding(duration: Duration) -> Self {
        Self {
            hold_for: Some(duration),
            ..Self::default()
        }
    }

    fn total_runs(&self) -> usize {
        self.runs.lock().unwrap().values().map(Vec::len).sum()
    }

    fn runs_of(&self, id: JobId) -> Vec<i64> {
        self.runs
            .lock()
            .unwrap()
            .get(&id)
            .cloned()
            .unwrap_or_default()
    }
}

#[async_trait]
impl JobHandler for Recorder {
    async fn run(&self, job: &Job) -> Result<(), JobFailure> {
        self.runs
            .lock()
            .unwrap()
            .entry(job.id)
            .or_default()
            .push(now_ms());
        if let Some(hold) = self.hold_for {
            tokio::time::sleep(hold).await;
        }
        match &self.fail_with {
            Some(failure) => Err(failure.clone()),
            None => Ok(()),
        }
    }
}

/// Starts a worker pool; returns its shutdown handle and task.
fn start(
    store: &Arc<dyn Store>,
    handler: Arc<dyn JobHandler>,
    options: WorkerOptions,
) -> (Shutdown, tokio::task::JoinHandle<()>) {
    let shutdown = Shutdown::default();
    let task = tokio::spawn(worker::run(
        store.clone(),
        handler,
        options,
        shutdown.clone(),
        Arc::new(Metrics::default()),
    ));
    (shutdown, task)
}

/// The store id of tenant `key` (`discord:1`, `slack:T1`), created if new.
async fn tenant(store: &Arc<dyn Store>, key: &str) -> engram::brain::TenantId {
    store
        .ensure_tenant(&TenantKey::parse(key).unwrap())
        .await
        .unwrap()
}
async fn stop(pools: Vec<(Shutdown, tokio::task::JoinHandle<()>)>) {
    for (shutdown, task) in pools {
        shutdown.stop_claiming.cancel();
        shutdown.abandon.cancel();
        tokio::time::timeout(LONG, task)
            .await
            .expect("workers stop")
            .expect("workers end cleanly");
    }
}

async fn state_of(store: &Arc<dyn Store>, id: JobId) -> JobState {
    store.job(id).await.unwrap().expect("job exists").state
}

async fn eight_workers_complete_a_thousand_jobs_exactly_once(store: Arc<dyn Store>) {
    let mut ids = Vec::new();
    for n in 0..1000 {
        ids.push(store.enqueue(&job(n)).await.unwrap().id());
    }
    let recorder = Arc::new(Recorder::default());
    let pools: Vec<_> = (0..8)
        .map(|w| start(&store, recorder.clone(), options(&format!("worker{w}"), 1)))
        .collect();
    let all_done = eventually(LONG, || async {
        let depths = store.queue_depths().await.unwrap();
        depths
            .iter()
            .any(|d| d.state == JobState::Done && d.count == 1000)
    })
    .await;
    stop(pools).await;
    assert!(
        all_done,
        "not every job finished: {:?}",
        store.queue_depths().await
    );
    let runs = recorder.runs.lock().unwrap();
    assert_eq!(runs.len(), 1000, "every job ran");
    for id in &ids {
        assert_eq!(runs[id].len(), 1, "job {id} ran {} times", runs[id].len());
    }
}

async fn a_worker_that_stops_heartbeating_loses_its_job(store: Arc<dyn Store>) {
    let id = store.enqueue(&job(1)).await.unwrap().id();
    let lease = Duration::from_millis(300);
    let first = store
        .claim(JobKind::Ingest, "stalled", lease)
        .await
        .unwrap()
        .expect("first claim");
    assert_eq!(first.id, id);
    assert!(
        store
            .claim(JobKind::Ingest, "other", lease)
            .await
            .unwrap()
            .is_none(),
        "a leased job is not handed out twice"
    );
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let mut second = None;
    while second.is_none() && std::time::Instant::now() < deadline {
        second = store.claim(JobKind::Ingest, "other", lease).await.unwrap();
        if second.is_none() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
    assert!(
        second.is_some(),
        "the job went to another worker after the lease ran out"
    );
    let second = second.unwrap();
    assert_eq!(second.id, id);
    assert_eq!(second.attempts, 2);
    assert_eq!(second.worker.as_deref(), Some("other"));
    assert!(!store.heartbeat(&first.lease(), lease).await.unwrap());
    assert!(
        !store.complete(&first.lease()).await.unwrap(),
        "the stale worker cannot finish it"
    );
    assert!(store.complete(&second.lease()).await.unwrap());
    assert_eq!(state_of(&store, id).await, JobState::Done);
}

async fn heartbeats_keep_a_long_job_with_its_worker(store: Arc<dyn Store>) {
    let id = store.enqueue(&job(1)).await.unwrap().id();
    let recorder = Arc::new(Recorder::holding(Duration::from_millis(1500)));
    let mut opts = options("renewing", 1);
    opts.lease = Duration::from_millis(400);
    let pool = start(&store, recorder.clone(), opts);
    let finished = eventually(LONG, || async {
        state_of(&store, id).await == JobState::Done
    })
    .await;
    stop(vec![pool]).await;
    assert!(finished);
    assert_eq!(
        recorder.runs_of(id).len(),
        1,
        "renewed leases never expired"
    );
    assert_eq!(store.job(id).await.unwrap().unwrap().attempts, 1);
}

async fn failed_attempts_back_off_exponentially_then_dead_letter(store: Arc<dyn Store>) {
    let id = store.enqueue(&job(1)).await.unwrap().id();
    let recorder = Arc::new(Recorder::failing(JobFailure::transient(
        "service unreachable",
    )));
    let pool = start(&store, recorder.clone(), options("failing", 1));
    let dead = eventually(LONG, || async {
        state_of(&store, id).await == JobState::Dead
    })
    .await;
    stop(vec![pool]).await;
    assert!(dead, "the job is dead after its last attempt");
    let job = store.job(id).await.unwrap().unwrap();
    assert_eq!(job.attempts, 3);
    assert_eq!(job.last_error.as_deref(), Some("service unreachable"));
    let runs = recorder.runs_of(id);
    assert_eq!(runs.len(), 3);
    // base 100 ms: 100 ms after the first attempt, 200 ms after the second.
    assert!(
        runs[1] - runs[0] >= 100,
        "first backoff: {} ms",
        runs[1] - runs[0]
    );
    assert!(
        runs[2] - runs[1] >= 200,
        "second backoff: {} ms",
        runs[2] - runs[1]
    );
}

async fn permanent_failure_is_dead_at_once_with_its_reason(store: Arc<dyn Store>) {
    let id = store.enqueue(&job(1)).await.unwrap().id();
    let recorder = Arc::new(Recorder::failing(JobFailure::permanent(
        "unsupported file type: application/x-msdownload",
    )));
    let pool = start(&store, recorder.clone(), options("permanent", 1));
    let dead = eventually(LONG, || async {
        state_of(&store, id).await == JobState::Dead
    })
    .await;
    stop(vec![pool]).await;
    assert!(dead);
    assert_eq!(
        recorder.runs_of(id).len(),
        1,
        "a permanent error is not retried"
    );
    let dead_jobs = store.jobs(Some(JobState::Dead), 10).await.unwrap();
    assert_eq!(dead_jobs.len(), 1);
    assert_eq!(
        dead_jobs[0].last_error.as_deref(),
        Some("unsupported file type: application/x-msdownload")
    );
}

async fn dedupe_key_gives_back_the_first_job(store: Arc<dyn Store>) {
    let first = store
        .enqueue(&job(1).with_dedupe_key("discord:msg:42"))
        .await
        .unwrap();
    let again = store
        .enqueue(&job(2).with_dedupe_key("discord:msg:42"))
        .await
        .unwrap();
    let other = store
        .enqueue(&job(3).with_dedupe_key("discord:msg:43"))
        .await
        .unwrap();
    let Enqueued::New(first_id) = first else {
        panic!("first enqueue is new: {first:?}")
    };
    assert_eq!(again, Enqueued::Duplicate(first_id));
    assert!(matches!(other, Enqueued::New(id) if id != first_id));
    let stored = store.job(first_id).await.unwrap().unwrap();
    assert_eq!(
        stored.payload,
        json!({ "n": 1 }),
        "the first payload is kept"
    );
    // Jobs without a key never collide.
    let a = store.enqueue(&job(4)).await.unwrap();
    let b = store.enqueue(&job(4)).await.unwrap();
    assert!(matches!((a, b), (Enqueued::New(x), Enqueued::New(y)) if x != y));
}

async fn dead_jobs_can_be_retried_by_hand(store: Arc<dyn Store>) {
    let id = store.enqueue(&job(1)).await.unwrap().id();
    let claimed = store
        .claim(JobKind::Ingest, "w", Duration::from_secs(30))
        .await
        .unwrap()
        .unwrap();
    assert!(store
        .fail(&claimed.lease(), "corrupt PDF", None)
        .await
        .unwrap());
    assert_eq!(state_of(&store, id).await, JobState::Dead);
    assert_eq!(store.retry(id).await.unwrap(), RetryOutcome::Requeued);
    let requeued = store.job(id).await.unwrap().unwrap();
    assert_eq!(requeued.state, JobState::Queued);
    assert_eq!(requeued.attempts, 0);
    let again = store
        .claim(JobKind::Ingest, "w", Duration::from_secs(30))
        .await
        .unwrap()
        .expect("a retried job can be claimed");
    assert_eq!(again.attempts, 1);
    assert!(store.complete(&again.lease()).await.unwrap());
    assert_eq!(
        store.retry(id).await.unwrap(),
        RetryOutcome::NotRetryable(JobState::Done)
    );
    assert_eq!(
        store.retry(id + 1000).await.unwrap(),
        RetryOutcome::NotFound
    );
}

async fn idle_worker_wakes_on_enqueue_without_polling(store: Arc<dyn Store>) {
    let recorder = Arc::new(Recorder::default());
    // idle_recheck is 600 s: only a wake-up can bring these jobs to the worker in time.
    let pool = start(&store, recorder.clone(), options("idle", 2));
    let mut all = true;
    for n in 0..5 {
        let id = store.enqueue(&job(n)).await.unwrap().id();
        all &= eventually(Duration::from_secs(20), || async {
            state_of(&store, id).await == JobState::Done
        })
        .await;
    }
    stop(vec![pool]).await;
    assert!(all, "every job was picked up by an idle worker");
    assert_eq!(recorder.total_runs(), 5);
}

/// A posted file's report waits on `job_ends`: a job done, and a job dead, each wake it (on
/// PostgreSQL through `LISTEN/NOTIFY`, as from another process).
async fn a_job_ending_wakes_whoever_waits_for_it(store: Arc<dyn Store>) {
    let ends = store.job_ends();
    // PostgreSQL's listener starts now and wakes everyone once it listens: let that pass.
    let _ = tokio::time::timeout(Duration::from_secs(2), ends.notified()).await;
    for (n, recorder) in [
        (1, Recorder::default()),
        (2, Recorder::failing(JobFailure::permanent("unreadable"))),
    ] {
        let notified = ends.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        let pool = start(&store, Arc::new(recorder), options("ends", 1));
        let id = store.enqueue(&job(n)).await.unwrap().id();
        let woken = tokio::time::timeout(Duration::from_secs(20), notified)
            .await
            .is_ok();
        let state = state_of(&store, id).await;
        stop(vec![pool]).await;
        assert!(woken, "job {n} ending ({state:?}) woke the waiter");
        assert!(matches!(state, JobState::Done | JobState::Dead));
    }
}

async fn shutdown_releases_jobs_still_running_after_the_grace_period(store: Arc<dyn Store>) {
    let id = store.enqueue(&job(1)).await.unwrap().id();
    let recorder = Arc::new(Recorder::holding(Duration::from_secs(3600)));
    let metrics = Arc::new(Metrics::default());
    let shutdown = Shutdown::default();
    let task = tokio::spawn(worker::run(
        store.clone(),
        recorder.clone(),
        options("stopping", 1),
        shutdown.clone(),
        metrics.clone(),
    ));
    assert!(eventually(LONG, || async { recorder.total_runs() == 1 }).await);
    shutdown.stop_claiming.cancel();
    // Still running: the grace period has not ended.
    assert_eq!(state_of(&store, id).await, JobState::Running);
    shutdown.abandon.cancel();
    tokio::time::timeout(LONG, task).await.unwrap().unwrap();
    let job = store.job(id).await.unwrap().unwrap();
    assert_eq!(job.state, JobState::Queued, "released for another worker");
    assert_eq!(job.attempts, 0, "an interrupted attempt is not counted");
    assert_eq!(
        metrics.jobs_processed(JobKind::Ingest, JobOutcome::Released),
        1
    );
}

async fn lease_expiry_after_the_last_attempt_dead_letters(store: Arc<dyn Store>) {
    let id = store
        .enqueue(&NewJob::new(JobKind::Ingest, json!({}), 1))
        .await
        .unwrap()
        .id();
    let lease = Duration::from_millis(200);
    store
        .claim(JobKind::Ingest, "crashes", lease)
        .await
        .unwrap()
        .expect("claimed");
    let dead = eventually(Duration::from_secs(10), || async {
        assert!(store
            .claim(JobKind::Ingest, "next", lease)
            .await
            .unwrap()
            .is_none());
        state_of(&store, id).await == JobState::Dead
    })
    .await;
    assert!(
        dead,
        "a job whose worker keeps dying ends dead, not in a loop"
    );
    let job = store.job(id).await.unwrap().unwrap();
    assert!(
        job.last_error
            .unwrap()
            .contains("stopped renewing its lease"),
        "the reason says what happened"
    );
}

async fn queue_depths_count_jobs_by_kind_and_state(store: Arc<dyn Store>) {
    for n in 0..3 {
        store.enqueue(&job(n)).await.unwrap();
    }
    store
        .enqueue(&NewJob::new(JobKind::Answer, json!({}), 3))
        .await
        .unwrap();
    let claimed = store
        .claim(JobKind::Ingest, "w", Duration::from_secs(30))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(claimed.kind, JobKind::Ingest);
    let depths = store.queue_depths().await.unwrap();
    let count = |kind, state| {
        depths
            .iter()
            .find(|d| d.kind == kind && d.state == state)
            .map_or(0, |d| d.count)
    };
    assert_eq!(count(JobKind::Ingest, JobState::Queued), 2);
    assert_eq!(count(JobKind::Ingest, JobState::Running), 1);
    assert_eq!(count(JobKind::Answer, JobState::Queued), 1);
    assert!(store.next_due(JobKind::Answer).await.unwrap().is_some());
}

async fn brains_belong_to_one_tenant(store: Arc<dyn Store>) {
    let acme = tenant(&store, "discord:1001").await;
    let globex = tenant(&store, "slack:T2002").await;
    assert_ne!(acme, globex);
    assert_eq!(
        tenant(&store, "discord:1001").await,
        acme,
        "a tenant is created once"
    );
    let name = BrainName::parse("handbook").unwrap();
    let mine = store.create_brain(acme, &name).await.unwrap();
    let theirs = store.create_brain(globex, &name).await.unwrap();
    assert_ne!(
        mine.id, theirs.id,
        "the same name in two tenants is two brains"
    );
    let duplicate = store.create_brain(acme, &name).await.unwrap_err();
    assert!(
        matches!(&duplicate, StoreError::Conflict(m) if m.contains("handbook")),
        "{duplicate:?}"
    );
    assert_eq!(store.brains(acme).await.unwrap().len(), 1);
    let found = store.brain_by_name(globex, &name).await.unwrap().unwrap();
    assert_eq!(found.id, theirs.id);
    assert_eq!(
        store.brain(globex, theirs.id).await.unwrap().map(|b| b.id),
        Some(theirs.id)
    );
    assert!(
        store.brain(acme, theirs.id).await.unwrap().is_none(),
        "a brain is found by id only within its own tenant"
    );
    assert_eq!(store.brain_stats(mine.id).await.unwrap().documents, 0);
    assert!(store.delete_brain(mine.id).await.unwrap());
    assert!(store.brain_by_name(acme, &name).await.unwrap().is_none());
    assert!(
        store.brain_by_name(globex, &name).await.unwrap().is_some(),
        "deleting one tenant's brain leaves the other's"
    );
}

async fn usage_is_totalled_per_tenant_and_model(store: Arc<dyn Store>) {
    use engram::store::UsageRecord;
    let acme = tenant(&store, "discord:1").await;
    let other = tenant(&store, "discord:2").await;
    let record = |tenant, model: &str, prompt, completion, cost| UsageRecord {
        tenant,
        brain: None,
        user: "u1".into(),
        model: model.into(),
        prompt_tokens: prompt,
        completion_tokens: completion,
        cost_micros: cost,
    };
    let before = now_ms() - 1;
    store
        .record_usage(&record(acme, "gpt-4o-mini", 100, 20, 27))
        .await
        .unwrap();
    store
        .record_usage(&record(acme, "gpt-4o-mini", 50, 10, 13))
        .await
        .unwrap();
    store
        .record_usage(&record(acme, "llama", 7, 3, 0))
        .await
        .unwrap();
    store
        .record_usage(&record(other, "gpt-4o-mini", 999, 999, 999))
        .await
        .unwrap();
    let totals = store.usage_totals(acme, before).await.unwrap();
    assert_eq!(totals.len(), 2);
    assert_eq!(totals[0].model, "gpt-4o-mini");
    assert_eq!(
        (
            totals[0].calls,
            totals[0].prompt_tokens,
            totals[0].completion_tokens,
            totals[0].cost_micros
        ),
        (2, 150, 30, 40),
        "another tenant's usage is not counted"
    );
    assert_eq!(totals[1].model, "llama");
    assert!(store
        .usage_totals(acme, now_ms() + 60_000)
        .await
        .unwrap()
        .is_empty());
}

async fn conversations_keep_their_turns_per_tenant(store: Arc<dyn Store>) {
    use engram::store::StoredTurn;
    let acme = tenant(&store, "discord:1").await;
    let other = tenant(&store, "discord:2").await;
    let brain = store
        .create_brain(acme, &BrainName::parse("b").unwrap())
        .await
        .unwrap();
    let other_brain = store
        .create_brain(other, &BrainName::parse("b").unwrap())
        .await
        .unwrap();
    let turn = |role: &str, text: &str| StoredTurn {
        role: role.into(),
        user: Some("u1".into()),
        text: text.into(),
    };
    for n in 0..6 {
        let role = if n % 2 == 0 { "user" } else { "assistant" };
        store
            .append_turn(acme, brain.id, "thread-1", &turn(role, &format!("t{n}")))
            .await
            .unwrap();
    }
    store
        .append_turn(
            other,
            other_brain.id,
            "thread-1",
            &turn("user", "elsewhere"),
        )
        .await
        .unwrap();
    let recent = store.recent_turns(acme, "thread-1", 4).await.unwrap();
    let texts: Vec<&str> = recent.iter().map(|t| t.text.as_str()).collect();
    assert_eq!(texts, ["t2", "t3", "t4", "t5"], "the latest, oldest first");
    assert_eq!(recent[1].role, "assistant");
    let theirs = store.recent_turns(other, "thread-1", 10).await.unwrap();
    assert_eq!(
        theirs.len(),
        1,
        "the same key in another tenant is another conversation"
    );
    assert!(store
        .recent_turns(acme, "thread-2", 10)
        .await
        .unwrap()
        .is_empty());
}

async fn channels_bind_only_to_their_own_tenants_brains(store: Arc<dyn Store>) {
    let acme = tenant(&store, "discord:1").await;
    let globex = tenant(&store, "discord:2").await;
    let handbook = BrainName::parse("handbook").unwrap();
    let ours = store.create_brain(acme, &handbook).await.unwrap();
    let theirs = store.create_brain(globex, &handbook).await.unwrap();
    let other = store
        .create_brain(acme, &BrainName::parse("other").unwrap())
        .await
        .unwrap();

    let bound = store
        .bind_channel(acme, "discord:10", ours.id, BindingMode::Ask)
        .await
        .unwrap();
    assert_eq!((bound.brain, bound.mode), (ours.id, BindingMode::Ask));
    let refused = store
        .bind_channel(acme, "discord:10", theirs.id, BindingMode::Both)
        .await
        .unwrap_err();
    assert!(matches!(refused, StoreError::NotFound(_)), "{refused:?}");
    let kept = store.binding(acme, "discord:10").await.unwrap().unwrap();
    assert_eq!(
        kept.brain, ours.id,
        "a refused bind leaves the binding as it was"
    );

    store
        .bind_channel(acme, "discord:10", other.id, BindingMode::Knowledge)
        .await
        .unwrap();
    let rebound = store.binding(acme, "discord:10").await.unwrap().unwrap();
    assert_eq!(
        (rebound.brain, rebound.mode),
        (other.id, BindingMode::Knowledge)
    );
    assert!(
        store.binding(globex, "discord:10").await.unwrap().is_none(),
        "bindings are per tenant"
    );
    assert!(store.unbind_channel(acme, "discord:10").await.unwrap());
    assert!(!store.unbind_channel(acme, "discord:10").await.unwrap());
    assert!(store.binding(acme, "discord:10").await.unwrap().is_none());

    store
        .bind_channel(acme, "discord:11", ours.id, BindingMode::Both)
        .await
        .unwrap();
    assert!(store.delete_brain(ours.id).await.unwrap());
    assert!(
        store.binding(acme, "discord:11").await.unwrap().is_none(),
        "deleting a brain unbinds its channels"
    );
}

async fn a_platform_event_is_acted_on_once(store: Arc<dyn Store>) {
    assert!(store.first_sighting("discord", "message:1").await.unwrap());
    assert!(!store.first_sighting("discord", "message:1").await.unwrap());
    assert!(
        store.first_sighting("slack", "message:1").await.unwrap(),
        "event ids are per platform"
    );
    let firsts: Vec<bool> = futures_util::future::join_all(
        (0..8).map(|_| store.first_sighting("discord", "message:2")),
    )
    .await
    .into_iter()
    .map(Result::unwrap)
    .collect();
    assert_eq!(
        firsts.iter().filter(|first| **first).count(),
        1,
        "of racing replicas, exactly one acts: {firsts:?}"
    );
}

async fn an_event_is_held_while_acted_on_and_taken_over_when_its_hold_runs_out(
    store: Arc<dyn Store>,
) {
    let hold = Duration::from_secs(60);
    let claim = |event: &'static str, handler: &'static str, hold: Duration| {
        let store = store.clone();
        async move {
            store
                .claim_event("discord", event, handler, hold)
                .await
                .unwrap()
        }
    };
    // Racing gateways: one holds it, the others wait on the hold.
    let claims: Vec<EventClaim> = futures_util::future::join_all(
        ["g1", "g2", "g3", "g4"].map(|handler| claim("message:1", handler, hold)),
    )
    .await;
    assert_eq!(
        claims.iter().filter(|c| **c == EventClaim::Claimed).count(),
        1,
        "{claims:?}"
    );
    assert!(claims
        .iter()
        .all(|c| matches!(c, EventClaim::Claimed | EventClaim::HeldElsewhere)));
    let holder = ["g1", "g2", "g3", "g4"][claims
        .iter()
        .position(|c| *c == EventClaim::Claimed)
        .unwrap()];
    assert!(store
        .hold_event("discord", "message:1", holder, hold)
        .await
        .unwrap());
    assert!(
        !store
            .hold_event("discord", "message:1", "someone-else", hold)
            .await
            .unwrap(),
        "only the holder renews"
    );
    store
        .end_event_hold("discord", "message:1", holder, true)
        .await
        .unwrap();
    assert_eq!(
        claim("message:1", "g5", hold).await,
        EventClaim::Handled,
        "acted on: a replay finds it so"
    );
    assert!(
        !store
            .hold_event("discord", "message:1", holder, hold)
            .await
            .unwrap(),
        "a handled event is held no more"
    );

    // A holder that dies stops renewing: once the hold has run out, another takes it over.
    assert_eq!(
        claim("message:2", "dead", Duration::from_millis(1)).await,
        EventClaim::Claimed
    );
    let taken = eventually(LONG, || async {
        claim("message:2", "alive", hold).await == EventClaim::Claimed
    })
    .await;
    assert!(taken, "the hold ran out and the event was taken over");
    assert!(
        !store
            .hold_event("discord", "message:2", "dead", hold)
            .await
            .unwrap(),
        "the dead holder's renewal changes nothing"
    );
    assert_eq!(
        claim("message:2", "dead", hold).await,
        EventClaim::HeldElsewhere
    );

    // Let go (not acted on): the platform's retry of it is acted on.
    assert_eq!(claim("message:3", "g1", hold).await, EventClaim::Claimed);
    store
        .end_event_hold("discord", "message:3", "g1", false)
        .await
        .unwrap();
    assert_eq!(claim("message:3", "g2", hold).await, EventClaim::Claimed);
    // Report claims (`first_sighting`) are handled at once.
    assert!(store.first_sighting("discord", "report:1").await.unwrap());
    assert_eq!(claim("report:1", "g1", hold).await, EventClaim::Handled);
}

async fn answer_messages_map_to_their_conversation_per_tenant_and_channel(store: Arc<dyn Store>) {
    let acme = tenant(&store, "discord:1").await;
    let globex = tenant(&store, "discord:2").await;
    assert_eq!(
        store
            .answer_conversation(acme, "discord:10", "100")
            .await
            .unwrap(),
        None,
        "an unknown message is no answer"
    );
    // A chain: the first answer, its continuation, then the answer to a reply to it.
    for message in ["100", "101", "105"] {
        store
            .record_answer_message(acme, "discord:10", message, "discord:10:99")
            .await
            .unwrap();
    }
    for message in ["100", "101", "105"] {
        assert_eq!(
            store
                .answer_conversation(acme, "discord:10", message)
                .await
                .unwrap()
                .as_deref(),
            Some("discord:10:99"),
            "{message}"
        );
    }
    assert_eq!(
        store
            .answer_conversation(acme, "discord:11", "100")
            .await
            .unwrap(),
        None,
        "scoped to the channel"
    );
    assert_eq!(
        store
            .answer_conversation(globex, "discord:10", "100")
            .await
            .unwrap(),
        None,
        "another tenant never sees it"
    );
    store
        .record_answer_message(globex, "discord:10", "100", "discord:10:7")
        .await
        .unwrap();
    store
        .record_answer_message(acme, "discord:10", "105", "discord:10:104")
        .await
        .unwrap();
    assert_eq!(
        store
            .answer_conversation(globex, "discord:10", "100")
            .await
            .unwrap()
            .as_deref(),
        Some("discord:10:7")
    );
    assert_eq!(
        store
            .answer_conversation(acme, "discord:10", "100")
            .await
            .unwrap()
            .as_deref(),
        Some("discord:10:99"),
        "the same message id in another tenant is another message"
    );
    assert_eq!(
        store
            .answer_conversation(acme, "discord:10", "105")
            .await
            .unwrap()
            .as_deref(),
        Some("discord:10:104"),
        "recording again replaces"
    );
}

async fn pruning_deletes_only_what_is_no_longer_needed(store: Arc<dyn Store>) {
    use engram::store::{Pruned, Retention, StoredTurn};
    const DAY: i64 = 24 * 60 * 60 * 1000;
    let acme = tenant(&store, "discord:1").await;
    let brain = store
        .create_brain(acme, &BrainName::parse("b").unwrap())
        .await
        .unwrap();
    // One job done, one dead, one still queued.
    for n in 0..3 {
        store.enqueue(&job(n)).await.unwrap();
    }
    let done = store
        .claim(JobKind::Ingest, "w", LONG)
        .await
        .unwrap()
        .unwrap();
    assert!(store.complete(&done.lease()).await.unwrap());
    let dead = store
        .claim(JobKind::Ingest, "w", LONG)
        .await
        .unwrap()
        .unwrap();
    assert!(store.fail(&dead.lease(), "bad file", None).await.unwrap());
    assert!(store.first_sighting("discord", "event-1").await.unwrap());
    let turn = StoredTurn {
        role: "user".into(),
        user: Some("u1".into()),
        text: "hello".into(),
    };
    store
        .append_turn(acme, brain.id, "thread-1", &turn)
        .await
        .unwrap();
    store
        .record_answer_message(acme, "discord:10", "100", "thread-1")
        .await
        .unwrap();
    let keep = Retention::default();

    let now = now_ms();
    assert_eq!(
        store.prune(now, &keep).await.unwrap(),
        Pruned::default(),
        "nothing is old yet"
    );

    // Eight days on: the done job and the seen event go; the rest stays.
    let pruned = store.prune(now + 8 * DAY, &keep).await.unwrap();
    assert_eq!(
        (pruned.done_jobs, pruned.seen_events, pruned.conversations),
        (1, 1, 0)
    );
    assert!(store.job(done.id).await.unwrap().is_none());
    assert_eq!(
        state_of(&store, dead.id).await,
        JobState::Dead,
        "kept, with its reason"
    );
    assert_eq!(
        store.jobs(Some(JobState::Queued), 10).await.unwrap().len(),
        1,
        "work still to do is never pruned"
    );
    assert!(
        store.first_sighting("discord", "event-1").await.unwrap(),
        "a forgotten event id counts as new"
    );
    assert_eq!(
        store
            .recent_turns(acme, "thread-1", 10)
            .await
            .unwrap()
            .len(),
        1
    );

    // Ninety-one days on: the idle conversation and its answer message go too.
    let pruned = store.prune(now + 91 * DAY, &keep).await.unwrap();
    assert_eq!((pruned.conversations, pruned.answer_messages), (1, 1));
    assert!(store
        .recent_turns(acme, "thread-1", 10)
        .await
        .unwrap()
        .is_empty());
    assert_eq!(
        store
            .answer_conversation(acme, "discord:10", "100")
            .await
            .unwrap(),
        None
    );
    assert_eq!(
        store
            .brains(acme)
            .await
            .unwrap()
            .iter()
            .map(|b| b.id)
            .collect::<Vec<_>>(),
        [brain.id],
        "knowledge is never pruned"
    );
}

/// What an index that keeps chunks outside the store (Qdrant) asks of it: mark a document of a
/// brain indexed, delete it — never another brain's.
async fn documents_are_marked_indexed_and_deleted_only_in_their_brain(store: Arc<dyn Store>) {
    use engram::brain::{AddedDocument, DocumentStatus, NewDocument};
    use engram::store::IndexedCounts;
    let acme = tenant(&store, "discord:1001").await;
    let mine = store
        .create_brain(acme, &BrainName::parse("mine").unwrap())
        .await
        .unwrap()
        .id;
    let other = store
        .create_brain(acme, &BrainName::parse("other").unwrap())
        .await
        .unwrap()
        .id;
    let added = store
        .add_document(&NewDocument {
            brain: mine,
            sha256: "ab".repeat(32),
            file_name: "notes.md".to_string(),
            source_link: None,
            scope: String::new(),
            added_by: None,
        })
        .await
        .unwrap();
    let AddedDocument::Pending(document) = added else {
        panic!("a new document is pending: {added:?}");
    };
    let counts = IndexedCounts {
        pages: 3,
        ocr_pages: 1,
        chunks: 7,
    };
    assert!(matches!(
        store
            .mark_document_indexed(other, document.id, counts)
            .await,
        Err(StoreError::NotFound(_))
    ));
    assert_eq!(
        store.document(document.id).await.unwrap().unwrap().status,
        DocumentStatus::Pending
    );
    assert_eq!(
        store
            .mark_document_indexed(mine, document.id, counts)
            .await
            .unwrap(),
        Vec::new()
    );
    let indexed = store.document(document.id).await.unwrap().unwrap();
    assert_eq!(indexed.status, DocumentStatus::Indexed);
    assert_eq!(
        (indexed.pages, indexed.ocr_pages, indexed.chunks),
        (3, 1, 7)
    );

    assert!(!store.delete_document(other, document.id).await.unwrap());
    assert!(store.document(document.id).await.unwrap().is_some());
    assert!(store.delete_document(mine, document.id).await.unwrap());
    assert!(store.document(document.id).await.unwrap().is_none());
    assert!(!store.delete_document(mine, document.id).await.unwrap());
}

/// What a starting gateway looks at: one kind's jobs still to run or running, and those that
/// ended since a given time; not older ended ones, not other kinds.
async fn jobs_alive_or_recently_ended_are_found_by_kind(store: Arc<dyn Store>) {
    let lease = Duration::from_secs(30);
    let ended = store.enqueue(&job(1)).await.unwrap().id();
    let claimed = store
        .claim(JobKind::Ingest, "w", lease)
        .await
        .unwrap()
        .expect("a job");
    assert_eq!(claimed.id, ended);
    assert!(store.complete(&claimed.lease()).await.unwrap());
    let running = store.enqueue(&job(2)).await.unwrap().id();
    let claimed = store
        .claim(JobKind::Ingest, "w", lease)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(claimed.id, running);
    let queued = store.enqueue(&job(3)).await.unwrap().id();
    store
        .enqueue(&NewJob::new(JobKind::Answer, json!({}), 3))
        .await
        .unwrap();

    let ids = |jobs: Vec<Job>| jobs.into_iter().map(|j| j.id).collect::<Vec<_>>();
    let ended_at = store.job(ended).await.unwrap().unwrap().updated_at;
    let found = store
        .jobs_alive_or_ended_since(JobKind::Ingest, ended_at, 100)
        .await
        .unwrap();
    assert_eq!(ids(found), [queued, running, ended], "newest first");
    let found = store
        .jobs_alive_or_ended_since(JobKind::Ingest, ended_at + 1, 100)
        .await
        .unwrap();
    assert_eq!(ids(found), [queued, running], "ended before `since`");
    let found = store
        .jobs_alive_or_ended_since(JobKind::Ingest, ended_at + 1, 1)
        .await
        .unwrap();
    assert_eq!(ids(found), [queued], "at most `limit`");
}

/// Versions in the store: a file with a known name in its scope and new bytes is the next
/// version; marking it indexed retires the older one into the history in the same
/// transaction (what Qdrant relies on); the same bytes are known; another scope (channel) is
/// another document; an old version's bytes posted again are a new version.
async fn a_new_version_retires_the_old_one_into_the_history(store: Arc<dyn Store>) {
    use engram::brain::{AddedDocument, DocumentStatus, NewDocument};
    use engram::store::IndexedCounts;
    let acme = tenant(&store, "discord:1001").await;
    let brain = store
        .create_brain(acme, &BrainName::parse("handbook").unwrap())
        .await
        .unwrap()
        .id;
    let add = |sha: &str, scope: &str, user: &str| NewDocument {
        brain,
        sha256: sha.repeat(32),
        file_name: "vacation.md".to_string(),
        source_link: None,
        scope: scope.to_string(),
        added_by: Some(user.to_string()),
    };
    let counts = IndexedCounts {
        pages: 1,
        ocr_pages: 0,
        chunks: 2,
    };
    let pending = |added: AddedDocument| match added {
        AddedDocument::Pending(document) => document,
        other => panic!("expected a pending document: {other:?}"),
    };

    let first = pending(store.add_document(&add("a1", "chan", "ann")).await.unwrap());
    assert_eq!((first.version, first.scope.as_str()), (1, "chan"));
    assert_eq!(first.added_by.as_deref(), Some("ann"));
    assert_eq!(
        store
            .mark_document_indexed(brain, first.id, counts)
            .await
            .unwrap(),
        Vec::new()
    );
    let second = pending(store.add_document(&add("b2", "chan", "bob")).await.unwrap());
    assert_eq!(second.version, 2);
    // Until the new version is indexed, the old one is the one that counts.
    assert_eq!(
        store
            .indexed_among(brain, &[first.id.0, second.id.0])
            .await
            .unwrap(),
        vec![first.id.0]
    );
    assert!(matches!(
        store.add_document(&add("b2", "chan", "bob")).await.unwrap(),
        AddedDocument::Known(_)
    ));
    // The same name in another channel is another document.
    let elsewhere = pending(store.add_document(&add("c3", "other", "cy")).await.unwrap());
    assert_eq!(elsewhere.version, 1);

    let retired = store
        .mark_document_indexed(brain, second.id, counts)
        .await
        .unwrap();
    assert_eq!(retired, vec![first.id]);
    assert!(store.document(first.id).await.unwrap().is_none());
    assert_eq!(
        store
            .indexed_among(brain, &[first.id.0, second.id.0])
            .await
            .unwrap(),
        vec![second.id.0]
    );
    let history = store.document_history(brain).await.unwrap();
    assert_eq!(history.len(), 1, "{history:?}");
    let old = &history[0];
    assert_eq!(
        (
            old.document_id,
            old.version,
            old.sha256.as_str(),
            old.status.as_str()
        ),
        (first.id, 1, "a1".repeat(32).as_str(), "indexed")
    );
    assert_eq!(
        (old.added_by.as_deref(), old.replaced_by, old.chunks),
        (Some("ann"), second.id, 2)
    );
    assert!(old.replaced_at >= old.added_at);
    assert_eq!(
        store
            .documents(brain)
            .await
            .unwrap()
            .iter()
            .map(|d| (d.version, d.scope.clone(), d.status))
            .collect::<Vec<_>>(),
        vec![
            (2, "chan".to_string(), DocumentStatus::Indexed),
            (1, "other".to_string(), DocumentStatus::Pending)
        ]
    );
    // The index outside the store deletes the old version's chunks, then says so.
    assert_eq!(
        store.unpurged_versions(brain).await.unwrap(),
        vec![first.id]
    );
    store
        .mark_versions_purged(brain, &[first.id])
        .await
        .unwrap();
    assert!(store.unpurged_versions(brain).await.unwrap().is_empty());

    // The first version's bytes again: not known any more, so the next version.
    let third = pending(store.add_document(&add("a1", "chan", "ann")).await.unwrap());
    assert_eq!(third.version, 3);
    // Forgetting the name in one channel leaves the other channel's document.
    assert_eq!(
        store
            .forget_history(brain, Some("chan"), "vacation.md")
            .await
            .unwrap(),
        1
    );
    assert!(store.document_history(brain).await.unwrap().is_empty());
}
