//! `/brain history`: reading a channel's past into its brain, as a background `history` job
//! per channel. The job pages back through the channel (the platform's `ChatPlatform::history`,
//! through the same rate limits as every other call), then through each thread found, records
//! people's messages as conversation knowledge (idempotently: a message known already is one
//! message) and queues the files through the ingest pipeline without a report each. After every
//! page its checkpoint — the streams left and their cursors, the files queued, the progress
//! message — is saved in the store, so a restart, or another process, continues where it
//! stopped. One progress message is edited as it goes and ends with a summary. A second read
//! stops where the last finished one began: what came since is new, the rest is known.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use super::files::{Learned, Queued};
use super::reports::{plural, thousands};
use super::{Gateway, GatewayError, Origin, PostedFile, Reply, UNBOUND_HINT};
use crate::brain::{TenantId, TenantKey};
use crate::chat::history::{HistorySource, PastPage};
use crate::chat::{ChannelKey, MessageRef, PlatformError};
use crate::clock::{format_date, now_ms};
use crate::jobs::{Job, JobKind, NewJob};
use crate::store::conversations::NewMessage;
use crate::store::history::{HistoryCounts, HistoryRead, HistoryStatus};
use crate::store::{patiently, StoreError, STORE_PATIENCE};
use crate::worker::{JobFailure, JobHandler};

/// The progress message is edited at most this often.
const PROGRESS_EVERY: Duration = Duration::from_secs(10);
/// Messages posted this long before the last finished read started are taken as read by it.
const OVERLAP: i64 = 60_000;
/// Failed files named in the summary at most.
const NAMED_FAILURES: usize = 5;

/// The payload of a `history` job.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct HistoryPayload {
    /// The `history_reads` row.
    pub read: i64,
    pub platform: String,
    pub tenant: String,
}

/// A read's checkpoint, saved after every page.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct Checkpoint {
    /// What is left to read, the stream being read first: the channel, then its threads.
    streams: Vec<Stream>,
    /// The progress message's id, once posted.
    progress: Option<String>,
    /// Files queued (or refused), in the order found.
    files: Vec<FileJob>,
    /// Whether this read records messages (the channel learns them), not files only.
    messages: bool,
    /// Unix ms: the channel's messages older than this were read by the last finished read.
    known_before: i64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Stream {
    source: HistorySource,
    cursor: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct FileJob {
    name: String,
    /// The ingest job and its document, while it runs.
    job: Option<(i64, i64)>,
    /// How it ended: `None` while it runs.
    outcome: Option<FileOutcome>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(tag = "outcome", content = "reason", rename_all = "lowercase")]
enum FileOutcome {
    Learned,
    Known,
    Failed(String),
}

impl Gateway {
    /// `/brain history [days]` in `channel` (a bound channel): starts a read of its past, or
    /// says the one running.
    pub(super) async fn start_history(
        &self,
        origin: &Origin,
        tenant: TenantId,
        channel: &str,
        days: Option<u32>,
    ) -> Result<Reply, GatewayError> {
        let Some(binding) = self.store.binding(tenant, channel).await? else {
            return Ok(Reply::private(UNBOUND_HINT));
        };
        if !binding.mode.learns() {
            return Ok(Reply::private(
                "This channel only asks its brain. Link it in `knowledge` or `both` mode \
                 (`/brain link`) to read its history into the brain.",
            ));
        }
        let since_ms = days.map_or(0, |days| {
            now_ms().saturating_sub(i64::from(days).saturating_mul(86_400_000))
        });
        let state = serde_json::to_string(&Checkpoint::default()).unwrap_or_default();
        let read = match self
            .store
            .start_history_read(tenant, binding.brain, channel, since_ms, &state)
            .await?
        {
            Ok(read) => read,
            Err(running) => {
                return Ok(Reply::private(format!(
                    "engram is already reading this channel's history ({} so far); its \
                     progress message says how far it got.",
                    plural(running.counts.messages, "message")
                )))
            }
        };
        let payload = HistoryPayload {
            read,
            platform: origin.platform.clone(),
            tenant: origin.tenant.as_str().to_string(),
        };
        let mut job = NewJob::new(
            JobKind::History,
            serde_json::to_value(&payload).unwrap_or_default(),
            self.max_attempts,
        );
        job.dedupe_key = Some(format!("history:{read}"));
        let queued = self.store.enqueue(&job).await?;
        self.store.set_history_job(read, queued.id()).await?;
        let period = match days {
            Some(days) => format!("the last {}", plural(u64::from(days), "day")),
            None => "all of it".to_string(),
        };
        Ok(Reply::private(format!(
            "📚 engram is reading this channel's history ({period}) in the background; a \
             progress message in the channel says how it goes."
        )))
    }

    /// Runs (or continues) read `read` to its end.
    async fn read_history(&self, payload: &HistoryPayload) -> Result<(), JobFailure> {
        let store_down = |error: StoreError| JobFailure::from_error(&error);
        let Some(read) = self
            .store
            .history_read(payload.read)
            .await
            .map_err(store_down)?
        else {
            return Err(JobFailure::permanent("this history read no longer exists"));
        };
        if read.status != HistoryStatus::Running {
            return Ok(());
        }
        let tenant = TenantKey::parse(&payload.tenant).map_err(JobFailure::permanent)?;
        let channel = ChannelKey(read.channel.clone());
        let mut checkpoint: Checkpoint = serde_json::from_str(&read.state).unwrap_or_default();
        let mut counts = read.counts;
        let binding = self
            .store
            .binding(read.tenant, &read.channel)
            .await
            .map_err(store_down)?
            .filter(|binding| binding.brain == read.brain && binding.mode.learns());
        let Some(_binding) = binding else {
            self.finish(&read, &mut checkpoint, counts, HistoryStatus::Failed, &channel,
                "📚 Stopped reading this channel's history: the channel is no longer linked to that brain for learning.".into())
                .await;
            return Ok(());
        };
        if checkpoint.streams.is_empty() && checkpoint.progress.is_none() {
            // A fresh read: the channel first; where the last finished read (which recorded
            // messages too, if this one does) began, this one may stop.
            checkpoint.messages = self
                .store
                .channel_learns_messages(read.tenant, &read.channel)
                .await
                .map_err(store_down)?;
            let last = self
                .store
                .last_history_read(read.tenant, &read.channel)
                .await
                .map_err(store_down)?;
            if let Some(last) = last.filter(|last| last.since_ms <= read.since_ms) {
                let covered = serde_json::from_str::<Checkpoint>(&last.state)
                    .is_ok_and(|last| last.messages || !checkpoint.messages);
                if covered {
                    checkpoint.known_before = last.started_at.saturating_sub(OVERLAP);
                }
            }
            checkpoint.streams.push(Stream {
                source: HistorySource::Channel,
                cursor: None,
            });
        }
        let platform = self.outlet.platform.clone();
        let progress = match &checkpoint.progress {
            Some(id) => MessageRef {
                channel: channel.clone(),
                id: id.clone(),
            },
            None => {
                let posted = platform
                    .post(&channel, &progress_text(counts, &checkpoint, true), None)
                    .await
                    .map_err(|error| platform_failure(&error))?;
                checkpoint.progress = Some(posted.id.clone());
                self.save(&read, &checkpoint, counts).await?;
                posted
            }
        };
        let mut last_edit = tokio::time::Instant::now();
        while let Some(stream) = checkpoint.streams.first().cloned() {
            let since = match stream.source {
                HistorySource::Channel => read.since_ms.max(checkpoint.known_before),
                HistorySource::Thread { .. } => read.since_ms,
            };
            let page = match platform
                .history(
                    &tenant,
                    &channel,
                    &stream.source,
                    stream.cursor.as_deref(),
                    since,
                )
                .await
            {
                Ok(page) => page,
                // A thread deleted since it was found: nothing left to read there.
                Err(PlatformError::Gone(reason))
                    if matches!(stream.source, HistorySource::Thread { .. }) =>
                {
                    tracing::info!(%reason, "a thread went away while its history was read");
                    checkpoint.streams.remove(0);
                    self.save(&read, &checkpoint, counts).await?;
                    continue;
                }
                Err(PlatformError::Gone(reason)) => {
                    tracing::warn!(%reason, channel = %channel, "cannot read a channel's history");
                    let text = "❌ engram cannot read this channel's history: it needs \
                        permission to read the channel's messages and their history here."
                        .to_string();
                    self.finish(
                        &read,
                        &mut checkpoint,
                        counts,
                        HistoryStatus::Failed,
                        &channel,
                        text,
                    )
                    .await;
                    return Ok(());
                }
                Err(error) => return Err(platform_failure(&error)),
            };
            self.take_page(&read, &mut checkpoint, &mut counts, &stream, page)
                .await?;
            self.save(&read, &checkpoint, counts).await?;
            if last_edit.elapsed() >= PROGRESS_EVERY {
                last_edit = tokio::time::Instant::now();
                let text = progress_text(counts, &checkpoint, true);
                if let Err(error) = platform.edit(&progress, &text).await {
                    tracing::debug!(%error, "cannot show a history read's progress");
                }
            }
        }
        // Every page read: the files' outcomes, for the summary.
        self.wait_for_files(&read, &mut checkpoint, counts).await?;
        let text = progress_text(counts, &checkpoint, false);
        self.finish(
            &read,
            &mut checkpoint,
            counts,
            HistoryStatus::Done,
            &channel,
            text,
        )
        .await;
        Ok(())
    }

    /// Records one page: its messages, its files, the threads it found, where the stream goes
    /// on.
    async fn take_page(
        &self,
        read: &HistoryRead,
        checkpoint: &mut Checkpoint,
        counts: &mut HistoryCounts,
        stream: &Stream,
        page: PastPage,
    ) -> Result<(), JobFailure> {
        if checkpoint.messages {
            let messages: Vec<NewMessage> = page
                .messages
                .iter()
                .filter(|message| !message.text.is_empty())
                .map(|message| NewMessage {
                    tenant: read.tenant,
                    brain: read.brain,
                    channel: read.channel.clone(),
                    key: message.key.clone(),
                    unit: message.unit.clone(),
                    author: message.author.clone(),
                    text: message.text.clone(),
                    posted_at: message.posted_at,
                    link: message.link.clone(),
                    title: format!(
                        "{}, {}",
                        message.channel_label,
                        format_date(message.posted_at)
                    ),
                })
                .collect();
            counts.messages += patiently(STORE_PATIENCE, "record past messages", || {
                self.store.record_messages(&messages)
            })
            .await
            .map_err(|error| JobFailure::from_error(&error))?;
        }
        for message in &page.messages {
            for file in &message.files {
                let posted = PostedFile {
                    name: file.name.clone(),
                    size: file.size,
                    url: file.url.clone(),
                    link: message.link.clone(),
                };
                let queued = self
                    .queue_file(read.brain, &read.channel, &message.author, &posted, None)
                    .await;
                let (job, outcome) = match queued {
                    Queued::Job { job, document } => (Some((job, document.0)), None),
                    Queued::Ended(learned) => (None, Some(FileOutcome::from(*learned))),
                };
                checkpoint.files.push(FileJob {
                    name: file.name.clone(),
                    job,
                    outcome,
                });
                counts.files += 1;
            }
        }
        checkpoint
            .streams
            .extend(page.threads.into_iter().map(|id| Stream {
                source: HistorySource::Thread { id },
                cursor: None,
            }));
        match page.next {
            Some(next) => {
                if let Some(current) = checkpoint.streams.first_mut() {
                    current.cursor = Some(next);
                }
            }
            None => {
                checkpoint.streams.remove(0);
                if matches!(stream.source, HistorySource::Thread { .. }) {
                    counts.threads += 1;
                }
            }
        }
        Ok(())
    }

    /// Waits for the files this read queued to be learned (or refused).
    async fn wait_for_files(
        &self,
        read: &HistoryRead,
        checkpoint: &mut Checkpoint,
        counts: HistoryCounts,
    ) -> Result<(), JobFailure> {
        let waiting: Vec<(usize, i64, i64)> = checkpoint
            .files
            .iter()
            .enumerate()
            .filter(|(_, file)| file.outcome.is_none())
            .filter_map(|(i, file)| file.job.map(|(job, document)| (i, job, document)))
            .collect();
        if waiting.is_empty() {
            return Ok(());
        }
        let outcomes = futures_util::future::join_all(
            waiting
                .iter()
                .map(|&(_, job, document)| self.wait_for(job, crate::brain::DocumentId(document))),
        )
        .await;
        for ((i, _, _), learned) in waiting.into_iter().zip(outcomes) {
            checkpoint.files[i].outcome = Some(FileOutcome::from(learned));
        }
        self.save(read, checkpoint, counts).await
    }

    async fn save(
        &self,
        read: &HistoryRead,
        checkpoint: &Checkpoint,
        counts: HistoryCounts,
    ) -> Result<(), JobFailure> {
        let state = serde_json::to_string(checkpoint).unwrap_or_default();
        patiently(STORE_PATIENCE, "save a history read's checkpoint", || {
            self.store
                .save_history_read(read.id, &state, counts, HistoryStatus::Running)
        })
        .await
        .map_err(|error| JobFailure::from_error(&error))
    }

    /// Ends a read with its last word in the progress message (posted if there is none yet).
    async fn finish(
        &self,
        read: &HistoryRead,
        checkpoint: &mut Checkpoint,
        counts: HistoryCounts,
        status: HistoryStatus,
        channel: &ChannelKey,
        text: String,
    ) {
        let platform = &self.outlet.platform;
        let shown = match &checkpoint.progress {
            Some(id) => {
                let message = MessageRef {
                    channel: channel.clone(),
                    id: id.clone(),
                };
                platform.edit(&message, &text).await
            }
            None => platform.post(channel, &text, None).await.map(drop),
        };
        if let Err(error) = shown {
            tracing::warn!(%error, "cannot show a history read's summary");
        }
        checkpoint.streams.clear();
        let state = serde_json::to_string(checkpoint).unwrap_or_default();
        let saved = patiently(STORE_PATIENCE, "end a history read", || {
            self.store
                .save_history_read(read.id, &state, counts, status)
        })
        .await;
        if let Err(error) = saved {
            tracing::warn!(%error, read = read.id, "cannot record a history read's end");
        }
    }
}

impl From<Learned> for FileOutcome {
    fn from(learned: Learned) -> Self {
        match learned {
            Learned::Indexed(_) => FileOutcome::Learned,
            Learned::Known(_) => FileOutcome::Known,
            Learned::Failed(reason) => FileOutcome::Failed(reason),
        }
    }
}

/// A platform failure as a job failure: a rate limit or an unreachable platform is worth
/// another attempt (from the checkpoint); its words go to the log, not the chat.
fn platform_failure(error: &PlatformError) -> JobFailure {
    match error {
        PlatformError::Gone(_) => JobFailure::permanent(format!("the platform refused: {error}")),
        _ => JobFailure::transient(format!("the platform failed: {error}")),
    }
}

/// The progress message: how far the read got (`running`), or its summary.
fn progress_text(counts: HistoryCounts, checkpoint: &Checkpoint, running: bool) -> String {
    let files = checkpoint.files.len() as u64;
    if running {
        let threads = match counts.threads {
            0 => String::new(),
            n => format!(" in {}", plural(n, "thread")),
        };
        let messages = if checkpoint.messages {
            format!("{}{threads}, ", plural(counts.messages, "new message"))
        } else {
            String::new()
        };
        return format!(
            "📚 Reading this channel's history: {messages}{}…",
            plural(files, "file")
        );
    }
    let mut text = String::from("📚 Read this channel's history: ");
    if checkpoint.messages {
        text.push_str(&plural(counts.messages, "new message"));
        if counts.threads > 0 {
            text.push_str(&format!(" (threads read: {})", thousands(counts.threads)));
        }
        text.push_str(" and ");
    }
    let learned = checkpoint
        .files
        .iter()
        .filter(|f| f.outcome == Some(FileOutcome::Learned))
        .count() as u64;
    let known = checkpoint
        .files
        .iter()
        .filter(|f| f.outcome == Some(FileOutcome::Known))
        .count() as u64;
    let failed: Vec<(&str, &str)> = checkpoint
        .files
        .iter()
        .filter_map(|f| match &f.outcome {
            Some(FileOutcome::Failed(reason)) => Some((f.name.as_str(), reason.as_str())),
            _ => None,
        })
        .collect();
    text.push_str(&format!("{} learned", plural(learned, "file")));
    if known > 0 {
        text.push_str(&format!(", {} already known", thousands(known)));
    }
    if failed.is_empty() {
        text.push('.');
    } else {
        text.push_str(&format!(
            "; {} could not be read:",
            thousands(failed.len() as u64)
        ));
        for (name, reason) in failed.iter().take(NAMED_FAILURES) {
            text.push_str(&format!("\n• {name}: {reason}"));
        }
        if failed.len() > NAMED_FAILURES {
            text.push_str(&format!(
                "\n• and {} more (`engram jobs` lists them)",
                failed.len() - NAMED_FAILURES
            ));
        }
    }
    if !checkpoint.messages {
        text.push_str("\nMessages were not read: this channel is linked with messages off.");
    }
    text
}

/// Runs `history` jobs with the gateway core of the job's platform.
#[derive(Debug)]
pub struct HistoryReader {
    pub gateways: HashMap<String, Gateway>,
}

impl HistoryReader {
    pub fn new(gateways: impl IntoIterator<Item = (String, Gateway)>) -> Arc<Self> {
        Arc::new(Self {
            gateways: gateways.into_iter().collect(),
        })
    }
}

#[async_trait]
impl JobHandler for HistoryReader {
    async fn run(&self, job: &Job) -> Result<(), JobFailure> {
        let payload: HistoryPayload = serde_json::from_value(job.payload.clone())
            .map_err(|error| JobFailure::permanent(format!("not a history job: {error}")))?;
        let Some(gateway) = self.gateways.get(&payload.platform) else {
            return Err(JobFailure::transient(format!(
                "this process has no connection to {}; another one may take the job",
                payload.platform
            )));
        };
        gateway.read_history(&payload).await
    }
}
