//! Logging set-up (text or JSON on stderr) and this process's metrics in Prometheus text form.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::IsTerminal as _;
use std::sync::Mutex;
use std::time::Duration;

use tracing_subscriber::EnvFilter;

use crate::config::LogFormat;
use crate::jobs::{JobKind, JobState, QueueDepth};

/// Starts logging to stderr at `level` (`info` for `serve`, `warn` for one-shot commands, whose
/// results are on stdout). `RUST_LOG` overrides it.
pub fn init_logging(format: LogFormat, level: &str) {
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new(format!("{level},sqlx=warn")));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(|| LogWriter);
    // A second call (tests that start several apps) keeps the first subscriber.
    let _ = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
}

/// The progress bar being drawn on stderr, if any: log lines are written above it.
static PROGRESS_BAR: Mutex<Option<indicatif::ProgressBar>> = Mutex::new(None);

/// While this lives, log lines go above `bar` instead of over it (`engram ingest`).
#[derive(Debug)]
pub struct LogsAboveBar(());

impl LogsAboveBar {
    pub fn new(bar: &indicatif::ProgressBar) -> Self {
        *PROGRESS_BAR.lock().unwrap_or_else(|p| p.into_inner()) = Some(bar.clone());
        Self(())
    }
}

impl Drop for LogsAboveBar {
    fn drop(&mut self) {
        *PROGRESS_BAR.lock().unwrap_or_else(|p| p.into_inner()) = None;
    }
}

/// Stderr, with the progress bar (if one is drawn) lifted while a log line is written.
struct LogWriter;

impl std::io::Write for LogWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let bar = PROGRESS_BAR
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        match bar {
            Some(bar) => bar.suspend(|| std::io::stderr().write(buf)),
            None => std::io::stderr().write(buf),
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        std::io::stderr().flush()
    }
}

/// How a job attempt ended, as counted in `engram_jobs_processed_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum JobOutcome {
    Done,
    /// Failed; another attempt is scheduled.
    Retry,
    /// Failed for good.
    Dead,
    /// Given back at shutdown.
    Released,
    /// Another worker took over (lease lost), or the result could not be recorded.
    Lost,
}

impl JobOutcome {
    fn as_str(self) -> &'static str {
        match self {
            JobOutcome::Done => "done",
            JobOutcome::Retry => "retry",
            JobOutcome::Dead => "dead",
            JobOutcome::Released => "released",
            JobOutcome::Lost => "lost",
        }
    }
}

/// Upper bounds (seconds) of the job duration histogram buckets.
const DURATION_BUCKETS: [f64; 12] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0, 30.0, 120.0,
];

#[derive(Debug, Default, Clone)]
struct Histogram {
    buckets: [u64; DURATION_BUCKETS.len()],
    count: u64,
    sum_seconds: f64,
}

impl Histogram {
    fn observe(&mut self, seconds: f64) {
        for (bucket, bound) in self.buckets.iter_mut().zip(DURATION_BUCKETS) {
            if seconds <= bound {
                *bucket += 1;
            }
        }
        self.count += 1;
        self.sum_seconds += seconds;
    }
}

/// Counters of this process. Queue depth is read from the store when scraped.
#[derive(Debug, Default)]
pub struct Metrics {
    jobs: Mutex<BTreeMap<JobKind, JobCounters>>,
}

#[derive(Debug, Default)]
struct JobCounters {
    outcomes: BTreeMap<JobOutcome, u64>,
    durations: Histogram,
}

impl Metrics {
    pub fn record_job(&self, kind: JobKind, outcome: JobOutcome, elapsed: Duration) {
        let mut jobs = self
            .jobs
            .lock()
            .unwrap_or_else(|poison| poison.into_inner());
        let counters = jobs.entry(kind).or_default();
        *counters.outcomes.entry(outcome).or_default() += 1;
        counters.durations.observe(elapsed.as_secs_f64());
    }

    /// Jobs of `kind` that ended with `outcome` in this process.
    pub fn jobs_processed(&self, kind: JobKind, outcome: JobOutcome) -> u64 {
        let jobs = self
            .jobs
            .lock()
            .unwrap_or_else(|poison| poison.into_inner());
        jobs.get(&kind)
            .and_then(|counters| counters.outcomes.get(&outcome).copied())
            .unwrap_or(0)
    }

    /// Everything in Prometheus text exposition format (version 0.0.4).
    pub fn render(&self, depths: &[QueueDepth]) -> String {
        let mut out = String::new();
        out.push_str("# HELP engram_queue_depth Jobs in the store, by kind and state.\n");
        out.push_str("# TYPE engram_queue_depth gauge\n");
        for kind in JobKind::ALL {
            for state in JobState::ALL {
                let count = depths
                    .iter()
                    .find(|depth| depth.kind == kind && depth.state == state)
                    .map_or(0, |depth| depth.count);
                let _ = writeln!(
                    out,
                    "engram_queue_depth{{kind=\"{kind}\",state=\"{state}\"}} {count}"
                );
            }
        }
        let jobs = self
            .jobs
            .lock()
            .unwrap_or_else(|poison| poison.into_inner());
        out.push_str("# HELP engram_jobs_processed_total Job attempts ended in this process, by kind and outcome.\n");
        out.push_str("# TYPE engram_jobs_processed_total counter\n");
        for (kind, counters) in jobs.iter() {
            for (outcome, count) in &counters.outcomes {
                let _ = writeln!(
                    out,
                    "engram_jobs_processed_total{{kind=\"{kind}\",outcome=\"{}\"}} {count}",
                    outcome.as_str()
                );
            }
        }
        out.push_str("# HELP engram_job_duration_seconds Time from claim to outcome, by kind.\n");
        out.push_str("# TYPE engram_job_duration_seconds histogram\n");
        for (kind, counters) in jobs.iter() {
            let histogram = &counters.durations;
            for (bound, count) in DURATION_BUCKETS.iter().zip(histogram.buckets) {
                let _ = writeln!(
                    out,
                    "engram_job_duration_seconds_bucket{{kind=\"{kind}\",le=\"{bound}\"}} {count}"
                );
            }
            let _ = writeln!(
                out,
                "engram_job_duration_seconds_bucket{{kind=\"{kind}\",le=\"+Inf\"}} {}",
                histogram.count
            );
            let _ = writeln!(
                out,
                "engram_job_duration_seconds_sum{{kind=\"{kind}\"}} {}",
                histogram.sum_seconds
            );
            let _ = writeln!(
                out,
                "engram_job_duration_seconds_count{{kind=\"{kind}\"}} {}",
                histogram.count
            );
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_depths_counters_and_histograms() {
        let metrics = Metrics::default();
        metrics.record_job(JobKind::Ingest, JobOutcome::Done, Duration::from_millis(20));
        metrics.record_job(JobKind::Ingest, JobOutcome::Retry, Duration::from_secs(3));
        let depths = [QueueDepth {
            kind: JobKind::Ingest,
            state: JobState::Queued,
            count: 7,
        }];
        let text = metrics.render(&depths);
        assert!(text.contains("engram_queue_depth{kind=\"ingest\",state=\"queued\"} 7"));
        assert!(text.contains("engram_queue_depth{kind=\"answer\",state=\"dead\"} 0"));
        assert!(text.contains("engram_jobs_processed_total{kind=\"ingest\",outcome=\"done\"} 1"));
        assert!(text.contains("engram_job_duration_seconds_bucket{kind=\"ingest\",le=\"0.025\"} 1"));
        assert!(text.contains("engram_job_duration_seconds_bucket{kind=\"ingest\",le=\"+Inf\"} 2"));
        assert!(text.contains("engram_job_duration_seconds_count{kind=\"ingest\"} 2"));
    }
}
