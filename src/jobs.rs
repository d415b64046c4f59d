//! The job queue's vocabulary: kinds, states, leases, retry policy. Pure; the SQL lives in
//! `store/`, the loop that runs jobs in `worker`.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use serde::Serialize;

/// Store-assigned job id.
pub type JobId = i64;

/// What a job does; each role claims only its own kinds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum JobKind {
    /// Extract, chunk and index one file (ingest role).
    Ingest,
    /// Retrieve and stream one answer (chat role).
    Answer,
    /// Read a channel's past into its brain (`/brain history`; where a platform's adapter runs).
    History,
}

impl JobKind {
    pub const ALL: [JobKind; 3] = [JobKind::Ingest, JobKind::Answer, JobKind::History];

    pub fn as_str(self) -> &'static str {
        match self {
            JobKind::Ingest => "ingest",
            JobKind::Answer => "answer",
            JobKind::History => "history",
        }
    }
}

impl fmt::Display for JobKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for JobKind {
    type Err = String;

    fn from_str(value: &str) -> Result<Self, Self::Err> {
        JobKind::ALL
            .into_iter()
            .find(|kind| kind.as_str() == value)
            .ok_or_else(|| format!("unknown job kind `{value}`"))
    }
}

/// Where a job is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum JobState {
    /// Waiting for a worker.
    Queued,
    /// Held by a worker under a lease.
    Running,
    /// Finished successfully.
    Done,
    /// An attempt failed; another is scheduled at `run_at`.
    Failed,
    /// No attempts left, or a permanent error: needs a person (`engram jobs retry ID`).
    Dead,
}

impl JobState {
    pub const ALL: [JobState; 5] = [
        JobState::Queued,
        JobState::Running,
        JobState::Done,
        JobState::Failed,
        JobState::Dead,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            JobState::Queued => "queued",
            JobState::Running => "running",
            JobState::Done => "done",
            JobState::Failed => "failed",
            JobState::Dead => "dead",
        }
    }
}

impl fmt::Display for JobState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for JobState {
    type Err = String;

    fn from_str(value: &str) -> Result<Self, Self::Err> {
        JobState::ALL
            .into_iter()
            .find(|state| state.as_str() == value)
            .ok_or_else(|| format!("unknown job state `{value}`"))
    }
}

/// A job to put on the queue.
#[derive(Debug, Clone)]
pub struct NewJob {
    pub kind: JobKind,
    pub payload: serde_json::Value,
    /// At most one job ever exists per dedupe key; enqueueing it again returns the first.
    pub dedupe_key: Option<String>,
    pub max_attempts: u32,
}

impl NewJob {
    pub fn new(kind: JobKind, payload: serde_json::Value, max_attempts: u32) -> Self {
        Self {
            kind,
            payload,
            dedupe_key: None,
            max_attempts,
        }
    }

    pub fn with_dedupe_key(mut self, key: impl Into<String>) -> Self {
        self.dedupe_key = Some(key.into());
        self
    }
}

/// What enqueueing did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Enqueued {
    New(JobId),
    /// A job with the same dedupe key already exists (in whatever state).
    Duplicate(JobId),
}

impl Enqueued {
    pub fn id(self) -> JobId {
        match self {
            Enqueued::New(id) | Enqueued::Duplicate(id) => id,
        }
    }
}

/// A job as stored. Timestamps are Unix milliseconds.
#[derive(Debug, Clone, Serialize)]
pub struct Job {
    pub id: JobId,
    pub kind: JobKind,
    pub payload: serde_json::Value,
    pub state: JobState,
    /// Attempts started so far, the current one included.
    pub attempts: u32,
    pub max_attempts: u32,
    pub run_at: i64,
    pub lease_until: Option<i64>,
    pub worker: Option<String>,
    pub dedupe_key: Option<String>,
    pub last_error: Option<String>,
    pub created_at: i64,
    pub updated_at: i64,
}

impl Job {
    /// The claim this worker holds on the job: later updates must present it, so a worker
    /// that lost its lease cannot overwrite the work of the one that took over.
    pub fn lease(&self) -> Lease {
        Lease {
            job: self.id,
            worker: self.worker.clone().unwrap_or_default(),
            attempt: self.attempts,
        }
    }
}

/// Proof of a claim: job, worker and attempt number.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    pub job: JobId,
    pub worker: String,
    pub attempt: u32,
}

/// Jobs of one kind in one state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct QueueDepth {
    pub kind: JobKind,
    pub state: JobState,
    pub count: u64,
}

/// What `retry` found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RetryOutcome {
    Requeued,
    NotFound,
    /// Only failed and dead jobs can be retried by hand.
    NotRetryable(JobState),
}

/// Exponential backoff for failed attempts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    pub base: Duration,
    pub max: Duration,
}

impl RetryPolicy {
    /// Delay before the attempt after `attempt` (1-based): base · 2^(attempt-1), capped.
    pub fn delay_after(&self, attempt: u32) -> Duration {
        let exponent = attempt.saturating_sub(1).min(30);
        self.base
            .checked_mul(1u32 << exponent)
            .map_or(self.max, |delay| delay.min(self.max))
    }
}

impl From<&crate::config::JobsConfig> for RetryPolicy {
    fn from(config: &crate::config::JobsConfig) -> Self {
        Self {
            base: Duration::from_millis(config.backoff_base_ms),
            max: Duration::from_millis(config.backoff_max_ms),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_then_caps() {
        let policy = RetryPolicy {
            base: Duration::from_secs(1),
            max: Duration::from_secs(10),
        };
        let delays: Vec<u64> = (1..=6).map(|a| policy.delay_after(a).as_secs()).collect();
        assert_eq!(delays, [1, 2, 4, 8, 10, 10]);
        assert_eq!(policy.delay_after(200), Duration::from_secs(10));
    }

    #[test]
    fn names_round_trip() {
        for kind in JobKind::ALL {
            assert_eq!(kind.as_str().parse::<JobKind>(), Ok(kind));
        }
        for state in JobState::ALL {
            assert_eq!(state.as_str().parse::<JobState>(), Ok(state));
        }
    }
}
