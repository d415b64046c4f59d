//! Logging set-up (text or JSON on stderr) and this process's metrics in Prometheus text form.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::IsTerminal as _;
use std::sync::Mutex;
use std::time::Duration;

use tracing_subscriber::EnvFilter;

use crate::config::LogFormat;
use crate::jobs::{JobKind, JobState, QueueDepth};
use crate::store::Phases;

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

/// How an answer ended, as counted in `engram_answers_total{outcome}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum AnswerOutcome {
    /// Written by the LLM.
    Llm,
    /// The LLM broke off after some text.
    Interrupted,
    /// Quoted passages: no LLM is configured.
    Quoted,
    /// Quoted passages after the LLM failed before its first token.
    LlmFailed,
    /// Quoted passages because a budget cap is reached.
    Capped,
    /// Nothing in the brain answers the question (said so, without the LLM).
    NothingFound,
    /// No answer at all: the store or the index failed.
    Error,
}

impl AnswerOutcome {
    pub fn as_str(self) -> &'static str {
        match self {
            AnswerOutcome::Llm => "llm",
            AnswerOutcome::Interrupted => "interrupted",
            AnswerOutcome::Quoted => "quoted",
            AnswerOutcome::LlmFailed => "llm_failed",
            AnswerOutcome::Capped => "capped",
            AnswerOutcome::NothingFound => "nothing_found",
            AnswerOutcome::Error => "error",
        }
    }
}

/// One finished answer, as the metrics count it.
#[derive(Debug, Clone, Copy)]
pub struct AnswerObservation<'a> {
    pub platform: &'a str,
    pub outcome: AnswerOutcome,
    /// Label values, used only with `metrics.per_brain_labels`.
    pub tenant: &'a str,
    pub brain: &'a str,
    pub phases: Phases,
    /// The model that was called, with the tokens it used and their cost.
    pub llm: Option<(&'a str, u32, u32, i64)>,
}

/// The answer phases `engram_answer_seconds{phase}` has.
const PHASES: [&str; 4] = ["queue", "retrieval", "first_token", "total"];

/// `(platform, outcome, tenant, brain)`; the last two empty without per-brain labels.
type AnswerKey = (String, AnswerOutcome, String, String);
/// `(model, tenant, brain)`.
type ModelKey = (String, String, String);

#[derive(Debug, Default)]
struct AnswerCounters {
    answers: BTreeMap<AnswerKey, u64>,
    phases: [Histogram; PHASES.len()],
    prompt_tokens: BTreeMap<ModelKey, u64>,
    completion_tokens: BTreeMap<ModelKey, u64>,
    cost_micros: BTreeMap<ModelKey, i64>,
    votes_up: u64,
    votes_down: u64,
    /// The latest use ratio of each cap this process saw, with when its period ends.
    budgets: BTreeMap<String, (i64, f64)>,
}

/// Counters of this process. Queue depth is read from the store when scraped.
#[derive(Debug, Default)]
pub struct Metrics {
    jobs: Mutex<BTreeMap<JobKind, JobCounters>>,
    answers: Mutex<AnswerCounters>,
    /// `tenant` and `brain` labels on the answer and LLM series (`metrics.per_brain_labels`).
    per_brain_labels: bool,
}

#[derive(Debug, Default)]
struct JobCounters {
    outcomes: BTreeMap<JobOutcome, u64>,
    durations: Histogram,
}

impl Metrics {
    /// Metrics with (or without) `tenant` and `brain` labels on the answer and LLM series.
    pub fn new(per_brain_labels: bool) -> Self {
        Self {
            per_brain_labels,
            ..Self::default()
        }
    }

    /// Counts one finished answer: its outcome, phases, and the LLM's tokens and cost.
    pub fn record_answer(&self, answer: &AnswerObservation<'_>) {
        let (tenant, brain) = if self.per_brain_labels {
            (answer.tenant.to_string(), answer.brain.to_string())
        } else {
            (String::new(), String::new())
        };
        let mut counters = self
            .answers
            .lock()
            .unwrap_or_else(|poison| poison.into_inner());
        *counters
            .answers
            .entry((
                answer.platform.to_string(),
                answer.outcome,
                tenant.clone(),
                brain.clone(),
            ))
            .or_default() += 1;
        let phases = answer.phases;
        for (histogram, ms) in counters.phases.iter_mut().zip([
            phases.queue_ms,
            phases.retrieval_ms,
            phases.first_token_ms,
            phases.total_ms,
        ]) {
            if let Some(ms) = ms {
                histogram.observe(ms.max(0) as f64 / 1000.0);
            }
        }
        if let Some((model, prompt, completion, cost)) = answer.llm {
            let key = (model.to_string(), tenant, brain);
            *counters.prompt_tokens.entry(key.clone()).or_default() += u64::from(prompt);
            *counters.completion_tokens.entry(key.clone()).or_default() += u64::from(completion);
            *counters.cost_micros.entry(key).or_default() += cost;
        }
    }

    /// Counts one vote on an answer.
    pub fn record_vote(&self, up: bool) {
        let mut counters = self
            .answers
            .lock()
            .unwrap_or_else(|poison| poison.into_inner());
        if up {
            counters.votes_up += 1;
        } else {
            counters.votes_down += 1;
        }
    }

    /// Notes a cap's use (`scope` names it, `until` is when its period ends, Unix ms), for
    /// `engram_budget_spent_ratio`.
    pub fn record_budget(&self, scope: String, until: i64, ratio: f64) {
        let mut counters = self
            .answers
            .lock()
            .unwrap_or_else(|poison| poison.into_inner());
        counters.budgets.insert(scope, (until, ratio));
    }

    /// The highest use ratio of the caps this process saw in their current periods, as of
    /// `now` (Unix ms); periods that ended are forgotten.
    pub fn budget_spent_ratio(&self, now: i64) -> f64 {
        let mut counters = self
            .answers
            .lock()
            .unwrap_or_else(|poison| poison.into_inner());
        counters.budgets.retain(|_, (until, _)| *until > now);
        counters
            .budgets
            .values()
            .map(|(_, ratio)| *ratio)
            .fold(0.0, f64::max)
    }

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
        out.push_str("# HELP engram_ingest_jobs_total Ingest job attempts ended in this process, by outcome.\n");
        out.push_str("# TYPE engram_ingest_jobs_total counter\n");
        let ingest = jobs.get(&JobKind::Ingest);
        for outcome in [
            JobOutcome::Done,
            JobOutcome::Retry,
            JobOutcome::Dead,
            JobOutcome::Released,
            JobOutcome::Lost,
        ] {
            let count = ingest
                .and_then(|counters| counters.outcomes.get(&outcome).copied())
                .unwrap_or(0);
            let _ = writeln!(
                out,
                "engram_ingest_jobs_total{{outcome=\"{}\"}} {count}",
                outcome.as_str()
            );
        }
        drop(jobs);
        self.render_answers(&mut out);
        out
    }

    fn render_answers(&self, out: &mut String) {
        let ratio = self.budget_spent_ratio(crate::clock::now_ms());
        let counters = self
            .answers
            .lock()
            .unwrap_or_else(|poison| poison.into_inner());
        let labels = |tenant: &str, brain: &str| {
            if self.per_brain_labels {
                format!(",tenant=\"{}\",brain=\"{}\"", escape(tenant), escape(brain))
            } else {
                String::new()
            }
        };
        out.push_str("# HELP engram_answers_total Answers finished in this process, by platform and outcome.\n");
        out.push_str("# TYPE engram_answers_total counter\n");
        for ((platform, outcome, tenant, brain), count) in &counters.answers {
            let _ = writeln!(
                out,
                "engram_answers_total{{platform=\"{}\",outcome=\"{}\"{}}} {count}",
                escape(platform),
                outcome.as_str(),
                labels(tenant, brain)
            );
        }
        out.push_str("# HELP engram_answer_seconds Where answers' time went, by phase: queue wait, retrieval, the LLM's first token, question to last word.\n");
        out.push_str("# TYPE engram_answer_seconds histogram\n");
        for (phase, histogram) in PHASES.iter().zip(&counters.phases) {
            render_histogram(
                out,
                "engram_answer_seconds",
                &format!("phase=\"{phase}\""),
                histogram,
            );
        }
        out.push_str("# HELP engram_llm_tokens_total Tokens the LLM read (prompt) and wrote (completion), by model.\n");
        out.push_str("# TYPE engram_llm_tokens_total counter\n");
        for (kind, tokens) in [
            ("prompt", &counters.prompt_tokens),
            ("completion", &counters.completion_tokens),
        ] {
            for ((model, tenant, brain), count) in tokens {
                let _ = writeln!(
                    out,
                    "engram_llm_tokens_total{{kind=\"{kind}\",model=\"{}\"{}}} {count}",
                    escape(model),
                    labels(tenant, brain)
                );
            }
        }
        out.push_str("# HELP engram_llm_cost_usd_total What the LLM calls cost, from llm.prices, by model.\n");
        out.push_str("# TYPE engram_llm_cost_usd_total counter\n");
        for ((model, tenant, brain), micros) in &counters.cost_micros {
            let _ = writeln!(
                out,
                "engram_llm_cost_usd_total{{model=\"{}\"{}}} {}",
                escape(model),
                labels(tenant, brain),
                *micros as f64 / 1e6
            );
        }
        out.push_str("# HELP engram_feedback_total Votes on answers recorded in this process.\n");
        out.push_str("# TYPE engram_feedback_total counter\n");
        let _ = writeln!(
            out,
            "engram_feedback_total{{vote=\"up\"}} {}",
            counters.votes_up
        );
        let _ = writeln!(
            out,
            "engram_feedback_total{{vote=\"down\"}} {}",
            counters.votes_down
        );
        out.push_str("# HELP engram_budget_spent_ratio The highest share of a budget cap used in its period, of the caps this process saw.\n");
        out.push_str("# TYPE engram_budget_spent_ratio gauge\n");
        let _ = writeln!(out, "engram_budget_spent_ratio {ratio}");
    }
}

/// A label value with `\\`, `"` and newlines escaped, as the text format wants.
fn escape(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// One histogram's `_bucket`, `_sum` and `_count` lines, with `labels` (`a="b"`).
fn render_histogram(out: &mut String, name: &str, labels: &str, histogram: &Histogram) {
    for (bound, count) in DURATION_BUCKETS.iter().zip(histogram.buckets) {
        let _ = writeln!(out, "{name}_bucket{{{labels},le=\"{bound}\"}} {count}");
    }
    let _ = writeln!(
        out,
        "{name}_bucket{{{labels},le=\"+Inf\"}} {}",
        histogram.count
    );
    let _ = writeln!(out, "{name}_sum{{{labels}}} {}", histogram.sum_seconds);
    let _ = writeln!(out, "{name}_count{{{labels}}} {}", histogram.count);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_budget_ratio_is_the_highest_cap_in_its_period() {
        let metrics = Metrics::default();
        metrics.record_budget("tenant:1".into(), 2_000, 0.5);
        metrics.record_budget("brain:1".into(), 1_000, 0.9);
        metrics.record_budget("tenant:1".into(), 2_000, 0.6);
        assert_eq!(metrics.budget_spent_ratio(500), 0.9);
        assert_eq!(
            metrics.budget_spent_ratio(1_500),
            0.6,
            "the brain's month ended: its ratio is forgotten"
        );
    }

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
