//! Runs queued jobs of one kind: claim under a lease, renew it while the job runs, record the
//! outcome (done, retry with backoff, dead), sleep on wake-ups when idle, and on shutdown stop
//! claiming, let jobs in flight finish within the grace period, then release their leases.

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::clock::now_ms;
use crate::jobs::{Job, JobKind, Lease, RetryPolicy};
use crate::store::{patiently, Store, STORE_PATIENCE};
use crate::telemetry::{JobOutcome, Metrics};

/// Why a job attempt failed, and whether another attempt may succeed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobFailure {
    /// Safe to show to the person who caused the job (no secrets, no internals).
    pub reason: String,
    pub transient: bool,
}

impl JobFailure {
    /// Worth another attempt (a timeout, an unreachable service).
    pub fn transient(reason: impl Into<String>) -> Self {
        Self {
            reason: reason.into(),
            transient: true,
        }
    }

    /// Will fail the same way every time (an unsupported file, a deleted brain).
    pub fn permanent(reason: impl Into<String>) -> Self {
        Self {
            reason: reason.into(),
            transient: false,
        }
    }

    /// The failure `error` makes: transient when the error says trying again may help,
    /// permanent otherwise, with the error's text as the reason. The one place that maps an
    /// error's transience to a job's.
    pub fn from_error(error: &(impl Transience + ?Sized)) -> Self {
        Self {
            reason: error.to_string(),
            transient: error.is_transient(),
        }
    }
}

/// An error that knows whether trying again later may help (an unreachable service, a full
/// disk) or not (a refused request, a broken file).
pub trait Transience: std::fmt::Display {
    fn is_transient(&self) -> bool;
}

/// The work behind one job kind.
#[async_trait]
pub trait JobHandler: Send + Sync + 'static {
    async fn run(&self, job: &Job) -> Result<(), JobFailure>;
}

/// How a pool of workers for one kind behaves.
#[derive(Debug, Clone)]
pub struct WorkerOptions {
    pub kind: JobKind,
    /// Jobs run at once by this pool.
    pub concurrency: usize,
    pub lease: Duration,
    pub retry: RetryPolicy,
    /// Prefix of the worker names recorded on claimed jobs (unique per process).
    pub name: String,
    /// Longest idle sleep without a wake-up: a safety net for wake-ups that cannot reach this
    /// process (another process on the same SQLite file, a LISTEN connection being re-made).
    pub idle_recheck: Duration,
}

/// The two steps of a graceful stop.
#[derive(Debug, Clone, Default)]
pub struct Shutdown {
    /// Stop claiming new jobs; jobs in flight carry on.
    pub stop_claiming: CancellationToken,
    /// The grace period is over: abandon jobs in flight and release their leases.
    pub abandon: CancellationToken,
}

/// Claimers per pool at most: claims are round trips to the store, so a few in parallel keep a
/// busy pool fed on PostgreSQL, while an idle pool costs a few sleeping loops, not hundreds.
const MAX_CLAIMERS: usize = 4;

/// Runs up to `options.concurrency` jobs at once until `shutdown.stop_claiming`, then waits
/// for every job in flight to end.
///
/// A few claimers take jobs while there is room (a shared semaphore) and hand each to its own
/// task, so a large pool (the chat role's, hundreds of answers) costs a few idle loops.
pub async fn run(
    store: Arc<dyn Store>,
    handler: Arc<dyn JobHandler>,
    options: WorkerOptions,
    shutdown: Shutdown,
    metrics: Arc<Metrics>,
) {
    let concurrency = options.concurrency.max(1);
    let room = Arc::new(Semaphore::new(concurrency));
    let mut claimers = JoinSet::new();
    for claimer_number in 0..concurrency.min(MAX_CLAIMERS) {
        claimers.spawn(claimer(
            claimer_number,
            store.clone(),
            handler.clone(),
            options.clone(),
            room.clone(),
            shutdown.clone(),
            metrics.clone(),
        ));
    }
    while let Some(result) = claimers.join_next().await {
        report_panic(result, options.kind);
    }
}

/// Claims jobs while the pool has room, each run in its own task; when told to stop, waits
/// for the jobs it started.
async fn claimer(
    claimer_number: usize,
    store: Arc<dyn Store>,
    handler: Arc<dyn JobHandler>,
    options: WorkerOptions,
    room: Arc<Semaphore>,
    shutdown: Shutdown,
    metrics: Arc<Metrics>,
) {
    let mut running = JoinSet::new();
    let wakeups = store.wakeups();
    'claiming: loop {
        let slot = tokio::select! {
            slot = room.clone().acquire_owned() => slot.expect("the semaphore is never closed"),
            () = shutdown.stop_claiming.cancelled() => break 'claiming,
        };
        // Reap finished jobs so the set does not grow with every job ever run.
        while let Some(result) = running.try_join_next() {
            report_panic(result, options.kind);
        }
        // Registered before looking, so a job enqueued between the look and the sleep still
        // wakes the claimer.
        let notified = wakeups.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();

        let worker = format!("{}-{claimer_number}", options.name);
        match store.claim(options.kind, &worker, options.lease).await {
            Ok(Some(job)) => {
                let (store, handler, options, shutdown, metrics) = (
                    store.clone(),
                    handler.clone(),
                    options.clone(),
                    shutdown.clone(),
                    metrics.clone(),
                );
                running.spawn(async move {
                    run_one(&store, &handler, &options, job, &shutdown, &metrics).await;
                    drop(slot);
                });
                continue;
            }
            Ok(None) => drop(slot),
            Err(error) => {
                drop(slot);
                tracing::warn!(%error, kind = %options.kind, "cannot claim jobs; retrying in 1 s");
                tokio::select! {
                    () = tokio::time::sleep(Duration::from_secs(1)) => {}
                    () = shutdown.stop_claiming.cancelled() => break 'claiming,
                }
                continue;
            }
        }
        let wait = match store.next_due(options.kind).await {
            Ok(Some(due)) => {
                let millis = u64::try_from(due.saturating_sub(now_ms())).unwrap_or(0);
                Duration::from_millis(millis.max(1)).min(options.idle_recheck)
            }
            Ok(None) | Err(_) => options.idle_recheck,
        };
        tokio::select! {
            () = &mut notified => {}
            () = tokio::time::sleep(wait) => {}
            () = shutdown.stop_claiming.cancelled() => break 'claiming,
        }
    }
    while let Some(result) = running.join_next().await {
        report_panic(result, options.kind);
    }
}

fn report_panic(result: Result<(), tokio::task::JoinError>, kind: JobKind) {
    if let Err(error) = result {
        tracing::error!(%error, %kind, "a job task panicked");
    }
}

/// A unique-enough worker name prefix for this process: host, pid and role.
#[allow(
    clippy::disallowed_methods,
    reason = "the host name names the process in job leases, not configuration"
)]
pub fn worker_name(role: &str) -> String {
    let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "engram".to_string());
    format!("{host}:{}:{role}", std::process::id())
}

async fn run_one(
    store: &Arc<dyn Store>,
    handler: &Arc<dyn JobHandler>,
    options: &WorkerOptions,
    job: Job,
    shutdown: &Shutdown,
    metrics: &Metrics,
) {
    let started = Instant::now();
    let lease = job.lease();
    let lease_lost = CancellationToken::new();
    // Aborted when this attempt ends in any way, including its future being dropped.
    let heartbeat = AbortOnDrop(tokio::spawn(renew_lease(
        store.clone(),
        lease.clone(),
        options.lease,
        lease_lost.clone(),
    )));
    let result = tokio::select! {
        result = handler.run(&job) => Some(result),
        () = lease_lost.cancelled() => None,
        () = shutdown.abandon.cancelled() => {
            heartbeat.0.abort();
            let outcome = match store.release(&lease).await {
                Ok(_) => JobOutcome::Released,
                Err(error) => {
                    tracing::warn!(%error, job = job.id, "cannot release the lease; it will expire");
                    JobOutcome::Lost
                }
            };
            tracing::info!(job = job.id, kind = %job.kind, "shutdown: job abandoned and released");
            metrics.record_job(job.kind, outcome, started.elapsed());
            return;
        }
    };
    drop(heartbeat);
    let outcome = match result {
        None => {
            tracing::warn!(job = job.id, kind = %job.kind, "lease lost; another worker has the job");
            JobOutcome::Lost
        }
        // The result is recorded even across a store restart (the attempt's work, such as an
        // answer streamed in full, is not thrown away for want of a connection), unless
        // another worker took the job meanwhile.
        Some(Ok(())) => {
            let recorded = patiently(STORE_PATIENCE, "record a job's result", || {
                store.complete(&lease)
            })
            .await;
            finish(&lease, recorded, JobOutcome::Done)
        }
        Some(Err(failure)) => {
            let retry_at = (failure.transient && job.attempts < job.max_attempts).then(|| {
                let delay = options.retry.delay_after(job.attempts);
                now_ms().saturating_add(i64::try_from(delay.as_millis()).unwrap_or(i64::MAX))
            });
            tracing::warn!(
                job = job.id,
                kind = %job.kind,
                attempt = job.attempts,
                max_attempts = job.max_attempts,
                retry = retry_at.is_some(),
                reason = %failure.reason,
                "job attempt failed"
            );
            let outcome = if retry_at.is_some() {
                JobOutcome::Retry
            } else {
                JobOutcome::Dead
            };
            let recorded = patiently(STORE_PATIENCE, "record a job's failure", || {
                store.fail(&lease, &failure.reason, retry_at)
            })
            .await;
            finish(&lease, recorded, outcome)
        }
    };
    metrics.record_job(job.kind, outcome, started.elapsed());
}

/// A task that lives no longer than its handle.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Turns the store's answer to a final update into the outcome to count.
fn finish(
    lease: &Lease,
    recorded: Result<bool, crate::store::StoreError>,
    outcome: JobOutcome,
) -> JobOutcome {
    match recorded {
        Ok(true) => outcome,
        Ok(false) => {
            tracing::warn!(
                job = lease.job,
                "job ended after its lease was lost; its result is dropped"
            );
            JobOutcome::Lost
        }
        Err(error) => {
            tracing::warn!(%error, job = lease.job, "cannot record the job's result; it will run again");
            JobOutcome::Lost
        }
    }
}

/// Renews the lease every third of its length until aborted, or cancels `lost` when the store
/// says it is no longer ours.
async fn renew_lease(
    store: Arc<dyn Store>,
    lease: Lease,
    duration: Duration,
    lost: CancellationToken,
) {
    let mut ticks = tokio::time::interval(duration / 3);
    ticks.tick().await;
    loop {
        ticks.tick().await;
        match store.heartbeat(&lease, duration).await {
            Ok(true) => {}
            Ok(false) => {
                lost.cancel();
                return;
            }
            Err(error) => {
                tracing::warn!(%error, job = lease.job, "cannot renew the job's lease");
            }
        }
    }
}
