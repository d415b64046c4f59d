//! Posted files: each downloaded and submitted as an ingest job while the event is held, then
//! watched to its end and reported once with ⏳ / ✅ / ❌ and a one-line summary (by whichever
//! gateway sees the job end, so a restarted gateway still reports files posted before).

use std::time::Duration;

use super::{Gateway, GatewayError, Handled, Origin, PostedFile};
use crate::brain::{Document, DocumentId, DocumentStatus};
use crate::chat::{ChannelKey, MessageRef};
use crate::clock::now_ms;
use crate::ingest::{self, IngestPayload, ReportTo, SubmitError, Submitted};
use crate::jobs::{JobId, JobKind, JobState};
use crate::store::{patiently, STORE_PATIENCE};

/// Reactions that show a file's progress.
pub const WORKING: &str = "⏳";
pub const DONE: &str = "✅";
pub const FAILED: &str = "❌";

/// A file's outcome when it could not be downloaded (the details go to the log).
const DOWNLOAD_FAILED: &str = "cannot download it; please post it again";

/// A file's outcome when engram's database stayed unreachable (the details go to the log).
const STORE_DOWN: &str = "engram's database is unavailable; please post the file again later";

impl Gateway {
    pub(super) async fn files(
        &self,
        origin: Origin,
        files: Vec<PostedFile>,
    ) -> Result<Handled, GatewayError> {
        let tenant = patiently(STORE_PATIENCE, "find a tenant", || {
            self.store.ensure_tenant(&origin.tenant)
        })
        .await?;
        let binding = patiently(STORE_PATIENCE, "find a channel's binding", || {
            self.store.binding(tenant, &origin.bound_channel().0)
        })
        .await?;
        let (Some(binding), Some(message)) = (
            binding.filter(|binding| binding.mode.learns()),
            origin.message.clone(),
        ) else {
            // Files in other channels are ordinary conversation.
            return Ok(Handled::Unbound);
        };
        self.react(&message, WORKING).await;
        let count = files.len();
        // Downloaded promptly (links expire) and queued while the event is held, so a gateway
        // that dies before every file is queued leaves the event to another; then watched
        // until each job ends.
        for file in files {
            // A file's name is its document's in this channel (a thread's: its parent's, but a
            // restricted thread's its own, so that it answers only there).
            let scope = self.learned_in(tenant, &origin).await?;
            let report = ReportTo {
                platform: origin.platform.clone(),
                channel: message.channel.0.clone(),
                message: message.id.clone(),
                file_name: file.name.clone(),
            };
            let queued = self
                .queue_file(binding.brain, &scope, &origin.user, &file, Some(&report))
                .await;
            let this = self.clone();
            tokio::spawn(async move {
                let outcome = match queued {
                    Queued::Ended(outcome) => *outcome,
                    Queued::Job { job, document } => this.wait_for(job, document).await,
                };
                this.report(&report, outcome, true).await;
            });
        }
        Ok(Handled::Files(count))
    }

    /// Downloads one file and queues it, to be reported to `report` (none for files read
    /// from a channel's history: the read's progress message sums them up).
    pub(super) async fn queue_file(
        &self,
        brain: crate::brain::BrainId,
        scope: &str,
        user: &str,
        file: &PostedFile,
        report: Option<&ReportTo>,
    ) -> Queued {
        let limit = self.ingest.max_file_bytes;
        if file.size > limit {
            return Queued::Ended(Box::new(Learned::Failed(
                SubmitError::TooLarge {
                    size: file.size,
                    limit,
                }
                .to_string(),
            )));
        }
        let bytes = match self.outlet.platform.download(&file.url, limit).await {
            Ok(bytes) => bytes,
            Err(error) => {
                // The platform's own words (and its addresses) go to the log, not the chat.
                tracing::warn!(%error, file = %file.name, "cannot download a posted file");
                return Queued::Ended(Box::new(Learned::Failed(DOWNLOAD_FAILED.into())));
            }
        };
        // Submitting again after a store failure is safe: a pending document whose job is
        // alive is waited for, one without a job gets one.
        let bytes_ref = bytes.as_slice();
        let submitted = patiently(STORE_PATIENCE, "queue a file", || async move {
            match ingest::submit(
                self.store.as_ref(),
                &self.ingest,
                self.max_attempts,
                ingest::NewFile {
                    brain,
                    file_name: &file.name,
                    source_link: file.link.as_deref(),
                    scope,
                    added_by: user,
                    bytes: bytes_ref,
                    report: report.cloned(),
                },
            )
            .await
            {
                Err(SubmitError::Store(error)) => Err(error),
                other => Ok(other),
            }
        })
        .await;
        drop(bytes);
        match submitted {
            Ok(Ok(Submitted::Known(document))) => {
                let queued_here = match report {
                    Some(report) => self.queued_from(&document, report).await,
                    None => None,
                };
                match queued_here {
                    Some(job) => Queued::Job {
                        job,
                        document: document.id,
                    },
                    None => Queued::Ended(Box::new(Learned::Known(document))),
                }
            }
            Ok(Ok(Submitted::Queued { job, document })) => Queued::Job {
                job,
                document: document.id,
            },
            Ok(Err(error)) => Queued::Ended(Box::new(Learned::Failed(error.to_string()))),
            Err(error) => {
                tracing::warn!(%error, file = %file.name, "cannot queue a posted file");
                Queued::Ended(Box::new(Learned::Failed(STORE_DOWN.into())))
            }
        }
    }

    /// The ingest job that queued `document` from this very message, if one did (a gateway
    /// taking an event over from one that died after queueing its files): its outcome is
    /// what is reported, not "already known".
    async fn queued_from(&self, document: &Document, report: &ReportTo) -> Option<JobId> {
        let job = self.store.job(document.job_id?).await.ok()??;
        let payload: IngestPayload = serde_json::from_value(job.payload).ok()?;
        (payload.report.as_ref() == Some(report)).then_some(job.id)
    }

    /// Follows an ingest job until it is done or dead: looked at again whenever a job ends
    /// (`Store::job_ends`: in process, or PostgreSQL's `LISTEN/NOTIFY` from any process), and
    /// after `WATCH_FALLBACK` without one in case a wake-up was missed.
    pub(super) async fn wait_for(&self, job: JobId, document: DocumentId) -> Learned {
        let deadline = now_ms() + INGEST_WATCH.as_millis() as i64;
        let wakeups = self.store.job_ends();
        loop {
            // Registered before looking, so an end between the look and the wait still wakes.
            let notified = wakeups.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            match self.store.job(job).await {
                Ok(Some(found)) if found.state == JobState::Done => break,
                Ok(Some(found)) if found.state == JobState::Dead => break,
                Ok(None) => break,
                _ => {}
            }
            if now_ms() > deadline {
                return Learned::Failed(format!(
                    "still not ingested after {} minutes; `engram jobs` shows job {job}",
                    INGEST_WATCH.as_secs() / 60
                ));
            }
            tokio::select! {
                () = &mut notified => {}
                () = tokio::time::sleep(WATCH_FALLBACK) => {}
            }
        }
        let found = patiently(STORE_PATIENCE, "read a document", || {
            self.store.document(document)
        })
        .await;
        match found {
            Ok(Some(document)) if document.status == DocumentStatus::Indexed => {
                Learned::Indexed(document)
            }
            Ok(Some(document)) => Learned::Failed(
                document
                    .error
                    .unwrap_or_else(|| "ingestion failed; `engram jobs` says why".into()),
            ),
            Ok(None) => Learned::Failed(
                "it was replaced by a newer version, forgotten or deleted with its brain \
                 while it was being read"
                    .into(),
            ),
            Err(error) => {
                tracing::warn!(%error, document = document.0, "cannot read a document's outcome");
                Learned::Failed(STORE_DOWN.into())
            }
        }
    }

    /// Reports the results of files posted on `platform` that no gateway has reported yet:
    /// files still being read are watched to the end, files whose job ended within
    /// `RESUME_ENDED_WITHIN` are reported now. So a gateway that restarts mid-ingest, or a
    /// replica taking over from one that died, loses no ✅ / ❌; whichever gateway reports a
    /// file first claims it (`report`), so none reports it twice.
    pub async fn resume_reports(&self, platform: &str) {
        let since = now_ms() - RESUME_ENDED_WITHIN.as_millis() as i64;
        let jobs = match self
            .store
            .jobs_alive_or_ended_since(JobKind::Ingest, since, RESUME_LIMIT)
            .await
        {
            Ok(jobs) => jobs,
            Err(error) => {
                tracing::warn!(%error, "cannot look for files still to report");
                return;
            }
        };
        let watches: Vec<_> = jobs
            .into_iter()
            .filter_map(|job| {
                let payload = serde_json::from_value::<IngestPayload>(job.payload).ok()?;
                let report = payload
                    .report
                    .filter(|report| report.platform == platform)?;
                Some((job.id, DocumentId(payload.document_id), report))
            })
            .collect();
        let watching = watches.len();
        if watching > 0 {
            // One task follows them all, each file reported as soon as its job ends.
            let this = self.clone();
            tokio::spawn(async move {
                futures_util::future::join_all(watches.into_iter().map(
                    |(job, document, report)| {
                        let this = &this;
                        async move {
                            let outcome = this.wait_for(job, document).await;
                            this.report(&report, outcome, false).await;
                        }
                    },
                ))
                .await;
            });
            tracing::info!(
                platform,
                files = watching,
                "watching files posted before this start"
            );
        }
    }

    /// ✅ and a summary, "already known", or ❌ and the reason, in reply to the file's message,
    /// unless another gateway (or an earlier run of this one) reported it already; then the
    /// ⏳ this gateway put on the message (`put_working`: it acted on the message, perhaps
    /// after the report was made) is taken off.
    async fn report(&self, report: &ReportTo, outcome: Learned, put_working: bool) {
        let key = format!(
            "ingest-report:{}:{}:{}",
            report.channel, report.message, report.file_name
        );
        let first = patiently(STORE_PATIENCE, "claim a file's report", || {
            self.store.first_sighting(&report.platform, &key)
        })
        .await;
        let reported_already = match first {
            Ok(first) => !first,
            // Better told twice than not at all.
            Err(error) => {
                tracing::warn!(%error, "cannot claim a file's report; reporting it");
                false
            }
        };
        let message = &MessageRef {
            channel: ChannelKey(report.channel.clone()),
            id: report.message.clone(),
        };
        if reported_already {
            if put_working {
                if let Err(error) = self.outlet.platform.unreact(message, WORKING).await {
                    tracing::debug!(%error, "cannot remove the ⏳ reaction");
                }
            }
            return;
        }
        let name = &report.file_name;
        let (emoji, text) = match outcome {
            Learned::Indexed(document) => (DONE, format!("📚 {}", summary(name, &document))),
            Learned::Known(document) => (
                DONE,
                format!("📚 {name} is already known ({} chunks).", document.chunks),
            ),
            Learned::Failed(reason) => (FAILED, format!("❌ I couldn't learn {name}: {reason}")),
        };
        if let Err(error) = self.outlet.platform.unreact(message, WORKING).await {
            tracing::debug!(%error, "cannot remove the ⏳ reaction");
        }
        self.react(message, emoji).await;
        if let Err(error) = self
            .outlet
            .platform
            .post(&message.channel, &text, Some(message))
            .await
        {
            tracing::warn!(%error, "cannot post the ingestion summary");
        }
    }

    async fn react(&self, message: &MessageRef, emoji: &str) {
        if let Err(error) = self.outlet.platform.react(message, emoji).await {
            tracing::debug!(%error, emoji, "cannot react");
        }
    }
}

/// How long a watched ingest job goes unlooked-at without a wake-up (one missed while a
/// PostgreSQL listener reconnects, or an end no wake-up announces), and for how long at most
/// it is watched.
const WATCH_FALLBACK: Duration = Duration::from_secs(5);
const INGEST_WATCH: Duration = Duration::from_secs(30 * 60);

/// A gateway that starts reports files whose job ended this recently (well within the 2 days
/// for which `seen_events` remembers which were reported) and looks at this many jobs at most.
const RESUME_ENDED_WITHIN: Duration = Duration::from_secs(60 * 60);
const RESUME_LIMIT: u32 = 10_000;

/// How learning one file ended.
#[derive(Debug)]
pub(super) enum Learned {
    Indexed(Document),
    Known(Document),
    Failed(String),
}

/// A posted file after downloading and queueing it.
pub(super) enum Queued {
    /// Its ingest job, to watch.
    Job { job: JobId, document: DocumentId },
    /// Nothing to watch: known already, or refused (boxed: a `Document` is large).
    Ended(Box<Learned>),
}

/// "handbook.pdf: 12 pages, 30 chunks, 2 read with OCR.", with the version when it replaced
/// an earlier one.
pub(super) fn summary(name: &str, document: &Document) -> String {
    let plural = |n: u32, word: &str| format!("{n} {word}{}", if n == 1 { "" } else { "s" });
    let version = if document.version > 1 {
        format!(" (version {}, replacing the earlier one)", document.version)
    } else {
        String::new()
    };
    let mut text = format!(
        "Learned {name}{version}: {}, {}",
        plural(document.pages, "page"),
        plural(document.chunks, "chunk")
    );
    if document.ocr_pages > 0 {
        text.push_str(&format!(", {} read with OCR", document.ocr_pages));
    }
    text.push('.');
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summaries_count_what_was_learned() {
        let document = Document {
            id: crate::brain::DocumentId(1),
            brain: crate::brain::BrainId(1),
            sha256: String::new(),
            file_name: "scan.pdf".into(),
            source_link: None,
            status: DocumentStatus::Indexed,
            error: None,
            pages: 2,
            chunks: 1,
            ocr_pages: 2,
            job_id: None,
            created_at: 0,
            updated_at: 0,
            scope: String::new(),
            version: 1,
            added_by: None,
        };
        assert_eq!(
            summary("scan.pdf", &document),
            "Learned scan.pdf: 2 pages, 1 chunk, 2 read with OCR."
        );
    }
}
