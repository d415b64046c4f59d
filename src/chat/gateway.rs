//! The gateway's core, shared by the Discord and Slack adapters: platform events arrive as a
//! closed `ChatEvent`, are acted on once (`seen_events`), and become store and platform calls —
//! a question becomes a placeholder and an `answer` job, posted files become ingest jobs with
//! ⏳ / ✅ / ❌ and a one-line summary (reported once, by whichever gateway sees the job end, so
//! a restarted gateway still reports files posted before), `/brain` commands become replies.
//! Adapters translate events and commands; they never touch the store, the index or the LLM.

use std::sync::Arc;
use std::time::Duration;

use super::service::{ask, NewQuestion, Outlet};
use super::{ChannelKey, MessageRef, PlatformError};
use crate::brain::{
    BindingMode, BrainName, Document, DocumentId, DocumentStatus, TenantId, TenantKey,
};
use crate::clock::now_ms;
use crate::config::IngestConfig;
use crate::index::Index;
use crate::ingest::{self, IngestPayload, ReportTo, SubmitError, Submitted};
use crate::jobs::{JobId, JobKind, JobState};
use crate::store::{patiently, EventClaim, Store, StoreError, STORE_PATIENCE};

/// Reactions that show a file's progress.
pub const WORKING: &str = "⏳";
pub const DONE: &str = "✅";
pub const FAILED: &str = "❌";

/// A file's outcome when engram's database stayed unreachable (the details go to the log).
const STORE_DOWN: &str = "engram's database is unavailable; please post the file again later";

/// Said when a question arrives in a channel no brain is linked to.
pub const UNBOUND_HINT: &str = "This channel isn't linked to a brain yet. Someone who manages \
    this server can link one with `/brain link`, after `/brain create` if there is none.";

/// Where an event came from.
#[derive(Debug, Clone)]
pub struct Origin {
    /// The platform (`discord`, `slack`); also the outlet answers go through.
    pub platform: String,
    /// Unique per platform, the same when the platform replays or retries the event.
    pub event_id: String,
    pub tenant: TenantKey,
    pub channel: ChannelKey,
    /// When the event happened in a thread that is a channel of its own (Discord): the channel
    /// the thread belongs to, whose binding applies. `None` everywhere else.
    pub parent: Option<ChannelKey>,
    /// The message that carried the event, if any (a slash command has none).
    pub message: Option<MessageRef>,
    pub user: String,
}

impl Origin {
    /// The channel whose binding applies: a thread's parent, else the channel itself.
    pub fn bound_channel(&self) -> &ChannelKey {
        self.parent.as_ref().unwrap_or(&self.channel)
    }
}

/// A file posted in a channel.
#[derive(Debug, Clone)]
pub struct PostedFile {
    pub name: String,
    /// As the platform declared it; checked again while downloading.
    pub size: u64,
    pub url: String,
    /// A link to the message the file was posted in, for citing it.
    pub link: Option<String>,
}

/// What the adapters hand to the core.
#[derive(Debug, Clone)]
pub enum ChatEvent {
    /// Someone asked: a mention, a reply to the bot, a message in the bot's thread.
    Question {
        origin: Origin,
        text: String,
        /// The thread or reply chain the question continues, if any.
        conversation: Option<String>,
        /// The bot's message the question replies to, or the answer message its thread was
        /// opened on: when that message belongs to an answer, the question continues that
        /// answer's conversation rather than `conversation`, however deep the chain.
        continues: Option<MessageRef>,
    },
    /// A message not addressed to the bot in a thread opened on the message `opened_on` (on
    /// Discord a thread started from a message has that message's id): a question in that
    /// answer's conversation if `opened_on` is one of the bot's answer messages, no mention
    /// needed; ignored otherwise.
    InThread {
        origin: Origin,
        text: String,
        opened_on: MessageRef,
    },
    /// Files were posted in a channel.
    Files {
        origin: Origin,
        files: Vec<PostedFile>,
    },
}

/// What the core did with an event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Handled {
    /// Queued as an `answer` job behind this placeholder (`None`: the platform refused it for
    /// now; the job posts it).
    Asked {
        job: JobId,
        placeholder: Option<MessageRef>,
    },
    /// The channel has no brain for this (told the asker, or nothing to do for files).
    Unbound,
    /// Files queued for ingestion (or already known): how many.
    Files(usize),
    /// Seen before (a replay, a retry, another gateway replica): nothing done.
    Duplicate,
    /// Not for the bot: a message in a thread that was not opened on one of its answers.
    Ignored,
}

/// Why an event could not be handled (the platform may retry it).
#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Platform(#[from] PlatformError),
    #[error("the knowledge store is unavailable: {0}")]
    Index(String),
}

/// The gateway core for one platform.
#[derive(Debug, Clone)]
pub struct Gateway {
    pub store: Arc<dyn Store>,
    /// For `/brain forget`.
    pub index: Arc<dyn Index>,
    pub outlet: Outlet,
    pub ingest: IngestConfig,
    /// Attempts of the jobs it queues (`jobs.max_attempts`).
    pub max_attempts: u32,
}

impl Gateway {
    /// Acts on an event once, however often the platform delivers it.
    pub async fn handle(&self, event: ChatEvent) -> Result<Handled, GatewayError> {
        let event = match event {
            // Ordinary talk in threads is looked at, never recorded: only a thread opened on an
            // answer makes a message a question.
            ChatEvent::InThread {
                origin,
                text,
                opened_on,
            } => match self.thread_conversation(&origin, &opened_on).await? {
                Some(conversation) => ChatEvent::Question {
                    origin,
                    text,
                    conversation: Some(conversation),
                    continues: None,
                },
                None => return Ok(Handled::Ignored),
            },
            other => other,
        };
        let origin = match &event {
            ChatEvent::Question { origin, .. }
            | ChatEvent::Files { origin, .. }
            | ChatEvent::InThread { origin, .. } => origin,
        };
        let (platform, event_id) = (origin.platform.clone(), origin.event_id.clone());
        let handler = crate::worker::worker_name("gateway");
        if !self.hold(&platform, &event_id, &handler).await? {
            return Ok(Handled::Duplicate);
        }
        // Renewed while this gateway acts, so another one with the same event waits for it,
        // and takes it over only if this one dies.
        let renewing = tokio_util::sync::CancellationToken::new();
        let _stop_renewing = renewing.clone().drop_guard();
        tokio::spawn({
            let (store, platform, event_id, handler) = (
                self.store.clone(),
                platform.clone(),
                event_id.clone(),
                handler.clone(),
            );
            async move {
                loop {
                    tokio::select! {
                        () = renewing.cancelled() => return,
                        () = tokio::time::sleep(EVENT_HOLD / 3) => {}
                    }
                    match store
                        .hold_event(&platform, &event_id, &handler, EVENT_HOLD)
                        .await
                    {
                        Ok(true) => {}
                        Ok(false) => return,
                        Err(error) => tracing::warn!(%error, "cannot renew an event's hold"),
                    }
                }
            }
        });
        let result = self.act(event).await;
        // Acted on: recorded as such. Not acted on (the platform or the store failed for
        // good): let go, so the platform's retry of it is acted on.
        let handled = result.is_ok();
        let ended = patiently(STORE_PATIENCE, "record an event as handled", || {
            self.store
                .end_event_hold(&platform, &event_id, &handler, handled)
        })
        .await;
        if let Err(error) = ended {
            tracing::warn!(%error, "cannot end an event's hold; it runs out by itself");
        }
        result
    }

    /// Takes the event to act on (`true`), or finds it acted on (`false`). While another
    /// gateway holds it (both received it), waits: for it to be acted on, or for the other
    /// gateway's hold to run out when it died mid-way. A store that is restarting delays
    /// the event instead of dropping it (the platform does not deliver it again).
    async fn hold(
        &self,
        platform: &str,
        event_id: &str,
        handler: &str,
    ) -> Result<bool, GatewayError> {
        let deadline = tokio::time::Instant::now() + HOLD_WAIT;
        loop {
            let claim = patiently(STORE_PATIENCE, "record an event", || {
                self.store
                    .claim_event(platform, event_id, handler, EVENT_HOLD)
            })
            .await?;
            match claim {
                EventClaim::Claimed => return Ok(true),
                EventClaim::Handled => return Ok(false),
                EventClaim::HeldElsewhere if tokio::time::Instant::now() < deadline => {
                    tokio::time::sleep(HOLD_POLL).await;
                }
                EventClaim::HeldElsewhere => {
                    tracing::warn!(
                        event_id,
                        "another gateway has held this event for too long; leaving it to it"
                    );
                    return Ok(false);
                }
            }
        }
    }

    /// Acts on an event this gateway holds.
    async fn act(&self, event: ChatEvent) -> Result<Handled, GatewayError> {
        match event {
            ChatEvent::Question {
                origin,
                text,
                conversation,
                continues,
            } => self.question(origin, text, conversation, continues).await,
            ChatEvent::Files { origin, files } => self.files(origin, files).await,
            // Turned into a question above when it is one.
            ChatEvent::InThread { .. } => Ok(Handled::Ignored),
        }
    }

    /// The conversation of the answer a thread was opened on, if it was opened on one (in the
    /// thread's own tenant and parent channel).
    async fn thread_conversation(
        &self,
        origin: &Origin,
        opened_on: &MessageRef,
    ) -> Result<Option<String>, GatewayError> {
        if origin.parent.as_ref() != Some(&opened_on.channel) {
            return Ok(None);
        }
        let found = patiently(STORE_PATIENCE, "find a tenant", || {
            self.store.find_tenant(&origin.tenant)
        })
        .await?;
        let Some(tenant) = found else {
            return Ok(None);
        };
        Ok(patiently(STORE_PATIENCE, "find a conversation", || {
            self.store
                .answer_conversation(tenant, &opened_on.channel.0, &opened_on.id)
        })
        .await?)
    }

    async fn question(
        &self,
        origin: Origin,
        text: String,
        conversation: Option<String>,
        continues: Option<MessageRef>,
    ) -> Result<Handled, GatewayError> {
        let tenant = patiently(STORE_PATIENCE, "find a tenant", || {
            self.store.ensure_tenant(&origin.tenant)
        })
        .await?;
        let conversation = match &continues {
            Some(answer) => patiently(STORE_PATIENCE, "find a conversation", || {
                self.store
                    .answer_conversation(tenant, &answer.channel.0, &answer.id)
            })
            .await?
            .or(conversation),
            None => conversation,
        };
        let binding = patiently(STORE_PATIENCE, "find a channel's binding", || {
            self.store.binding(tenant, &origin.bound_channel().0)
        })
        .await?;
        let Some(binding) = binding.filter(|binding| binding.mode.answers()) else {
            self.outlet
                .platform
                .post(&origin.channel, UNBOUND_HINT, origin.message.as_ref())
                .await?;
            return Ok(Handled::Unbound);
        };
        let question = NewQuestion {
            platform: origin.platform,
            tenant,
            brain: binding.brain,
            channel: origin.channel,
            reply_to: origin.message,
            conversation,
            user: origin.user,
            text,
        };
        match ask(
            self.store.as_ref(),
            &self.outlet,
            question,
            self.max_attempts,
        )
        .await
        {
            Ok(asked) => Ok(Handled::Asked {
                job: asked.job,
                placeholder: asked.placeholder,
            }),
            Err(super::service::AskError::Platform(error)) => Err(error.into()),
            Err(super::service::AskError::Store(error)) => Err(error.into()),
        }
    }

    async fn files(&self, origin: Origin, files: Vec<PostedFile>) -> Result<Handled, GatewayError> {
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
            // A file's name is its document's in this channel (a thread's: its parent's).
            let scope = origin.bound_channel().0.clone();
            let report = ReportTo {
                platform: origin.platform.clone(),
                channel: message.channel.0.clone(),
                message: message.id.clone(),
                file_name: file.name.clone(),
            };
            let queued = self
                .queue_file(binding.brain, &scope, &origin.user, &file, &report)
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

    /// Downloads one file and queues it.
    async fn queue_file(
        &self,
        brain: crate::brain::BrainId,
        scope: &str,
        user: &str,
        file: &PostedFile,
        report: &ReportTo,
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
                return Queued::Ended(Box::new(Learned::Failed(format!(
                    "cannot download it: {error}"
                ))))
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
                    report: Some(report.clone()),
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
            Ok(Ok(Submitted::Known(document))) => match self.queued_from(&document, report).await {
                Some(job) => Queued::Job {
                    job,
                    document: document.id,
                },
                None => Queued::Ended(Box::new(Learned::Known(document))),
            },
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

    /// Follows an ingest job until it is done or dead.
    async fn wait_for(&self, job: JobId, document: DocumentId) -> Learned {
        let deadline = now_ms() + INGEST_WATCH.as_millis() as i64;
        loop {
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
            tokio::time::sleep(WATCH_INTERVAL).await;
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
        let mut watching = 0;
        for job in jobs {
            let Ok(payload) = serde_json::from_value::<IngestPayload>(job.payload) else {
                continue;
            };
            let Some(report) = payload.report.filter(|report| report.platform == platform) else {
                continue;
            };
            let this = self.clone();
            tokio::spawn(async move {
                let outcome = this.wait_for(job.id, DocumentId(payload.document_id)).await;
                this.report(&report, outcome, false).await;
            });
            watching += 1;
        }
        if watching > 0 {
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

    /// Runs a `/brain` (or `/usage`) command from `origin`. `can_manage`: the platform says the
    /// user may manage the server or workspace; changes need it, reading does not.
    pub async fn command(
        &self,
        origin: &Origin,
        can_manage: bool,
        command: BrainCommand,
    ) -> Result<Reply, GatewayError> {
        if command.changes_something() && !can_manage {
            return Ok(Reply::private(
                "Only people who can manage this server or workspace can change its brains.",
            ));
        }
        let tenant = self.store.ensure_tenant(&origin.tenant).await?;
        // In a thread, the commands are about the channel it belongs to.
        let channel = &origin.bound_channel().0;
        let reply = match command {
            BrainCommand::Create { name } => match self.store.create_brain(tenant, &name).await {
                Ok(brain) => Reply::public(format!(
                    "Created the brain `{}`. Link a channel to it with `/brain link`.",
                    brain.name
                )),
                Err(StoreError::Conflict(reason)) => Reply::private(reason),
                Err(error) => return Err(error.into()),
            },
            BrainCommand::Link { name, mode } => {
                let Some(brain) = self.store.brain_by_name(tenant, &name).await? else {
                    return Ok(no_such_brain(&name));
                };
                self.store
                    .bind_channel(tenant, channel, brain.id, mode)
                    .await?;
                Reply::public(format!(
                    "This channel now uses the brain `{}` ({}).",
                    brain.name,
                    match mode {
                        BindingMode::Ask => "questions are answered from it",
                        BindingMode::Knowledge => "files posted here are learned",
                        BindingMode::Both => "questions are answered and files are learned",
                    }
                ))
            }
            BrainCommand::Unlink => {
                if self.store.unbind_channel(tenant, channel).await? {
                    Reply::public("This channel is no longer linked to a brain.")
                } else {
                    Reply::private("This channel isn't linked to a brain.")
                }
            }
            BrainCommand::List => {
                let brains = self.store.brains(tenant).await?;
                if brains.is_empty() {
                    Reply::private("No brains yet: create one with `/brain create`.")
                } else {
                    let names: Vec<String> =
                        brains.iter().map(|b| format!("`{}`", b.name)).collect();
                    Reply::private(format!("Brains: {}", names.join(", ")))
                }
            }
            BrainCommand::Info => self.info(tenant, channel).await?,
            BrainCommand::Forget { file } => {
                let Some(binding) = self.store.binding(tenant, channel).await? else {
                    return Ok(Reply::private(UNBOUND_HINT));
                };
                // The file posted in this channel; else one of that name from elsewhere in the
                // brain (the shell, other channels).
                let documents = self.store.documents(binding.brain).await?;
                let here = documents
                    .iter()
                    .any(|document| document.file_name == file && document.scope == *channel);
                let scope = here.then_some(channel.as_str());
                let forgotten = ingest::documents::forget(
                    self.store.as_ref(),
                    self.index.as_ref(),
                    binding.brain,
                    scope,
                    &file,
                )
                .await
                .map_err(|error| GatewayError::Index(error.to_string()))?;
                if forgotten.documents == 0 && forgotten.earlier_versions == 0 {
                    Reply::private(format!("This channel's brain has no file `{file}`."))
                } else {
                    Reply::public(format!("Forgot {file}{}.", versions_note(forgotten)))
                }
            }
            BrainCommand::Prompt { text } => {
                let Some(binding) = self.store.binding(tenant, channel).await? else {
                    return Ok(Reply::private(UNBOUND_HINT));
                };
                let text = text.trim();
                self.store
                    .set_system_prompt(binding.brain, (!text.is_empty()).then_some(text))
                    .await?;
                Reply::public(if text.is_empty() {
                    "The brain uses the default instructions again.".to_string()
                } else {
                    "The brain's instructions are updated.".to_string()
                })
            }
            BrainCommand::Usage => {
                let since = crate::clock::month_start_ms(now_ms());
                let totals = self.store.usage_totals(tenant, since).await?;
                if totals.is_empty() {
                    Reply::private("No LLM usage this month.")
                } else {
                    let lines: Vec<String> = totals
                        .iter()
                        .map(|total| {
                            format!(
                                "{}: {} answers, {} + {} tokens, ${:.4}",
                                total.model,
                                total.calls,
                                total.prompt_tokens,
                                total.completion_tokens,
                                total.cost_micros as f64 / 1e6
                            )
                        })
                        .collect();
                    Reply::private(format!("This month:\n{}", lines.join("\n")))
                }
            }
        };
        Ok(reply)
    }

    async fn info(&self, tenant: TenantId, channel: &str) -> Result<Reply, GatewayError> {
        let Some(binding) = self.store.binding(tenant, channel).await? else {
            return Ok(Reply::private(UNBOUND_HINT));
        };
        let Some(brain) = self.store.brain(tenant, binding.brain).await? else {
            return Ok(Reply::private(UNBOUND_HINT));
        };
        let stats = self.store.brain_stats(brain.id).await?;
        let mut text = format!(
            "Brain `{}` ({} here): {} documents ({} failed), {} chunks; model: {}.",
            brain.name,
            binding.mode.as_str(),
            stats.documents,
            stats.failed_documents,
            stats.chunks,
            brain.model.as_deref().unwrap_or("the default")
        );
        text.push_str(&versions_lines(
            &self.store.documents(brain.id).await?,
            &self.store.document_history(brain.id).await?,
        ));
        Ok(Reply::private(text))
    }
}

/// How often a watched ingest job is looked at, and for how long at most.
const WATCH_INTERVAL: Duration = Duration::from_millis(500);
/// How long a gateway's hold on an event lasts unless renewed (every third of it): a gateway
/// with the same event takes it over this long after the holder died.
const EVENT_HOLD: Duration = Duration::from_secs(10);
/// How often a gateway waiting on another's hold looks again.
const HOLD_POLL: Duration = Duration::from_secs(1);
/// How long a gateway waits on another's renewed hold before leaving the event to it.
const HOLD_WAIT: Duration = Duration::from_secs(10 * 60);
const INGEST_WATCH: Duration = Duration::from_secs(30 * 60);

/// A gateway that starts reports files whose job ended this recently (well within the 2 days
/// for which `seen_events` remembers which were reported) and looks at this many jobs at most.
const RESUME_ENDED_WITHIN: Duration = Duration::from_secs(60 * 60);
const RESUME_LIMIT: u32 = 10_000;

/// How learning one file ended.
#[derive(Debug)]
enum Learned {
    Indexed(Document),
    Known(Document),
    Failed(String),
}

/// A posted file after downloading and queueing it.
enum Queued {
    /// Its ingest job, to watch.
    Job { job: JobId, document: DocumentId },
    /// Nothing to watch: known already, or refused (boxed: a `Document` is large).
    Ended(Box<Learned>),
}

/// How many documents with more than one version `/brain info` lists.
const INFO_VERSIONED: usize = 10;

/// `/brain info`'s lines about versions: the documents that have earlier versions, most
/// recently changed first, with their current version and when it came; empty when none has.
fn versions_lines(documents: &[Document], history: &[crate::brain::DocumentVersion]) -> String {
    let mut versioned: Vec<(&Document, usize)> = documents
        .iter()
        .filter(|document| document.status == DocumentStatus::Indexed)
        .map(|document| {
            let earlier = history
                .iter()
                .filter(|version| {
                    version.file_name == document.file_name && version.scope == document.scope
                })
                .count();
            (document, earlier)
        })
        .filter(|(_, earlier)| *earlier > 0)
        .collect();
    if versioned.is_empty() {
        return String::new();
    }
    versioned.sort_by_key(|(document, _)| std::cmp::Reverse(document.created_at));
    let mut text = format!("\nDocuments with earlier versions: {}.", versioned.len());
    for (document, earlier) in versioned.iter().take(INFO_VERSIONED) {
        text.push_str(&format!(
            "\n• {} — version {}, since {} ({} earlier)",
            document.file_name,
            document.version,
            crate::clock::format_utc(document.created_at),
            earlier
        ));
    }
    if versioned.len() > INFO_VERSIONED {
        text.push_str(&format!(
            "\n… and {} more (`engram brain docs` lists them all).",
            versioned.len() - INFO_VERSIONED
        ));
    }
    text
}

/// " (2 documents, 3 earlier versions)" when there was more than one thing to forget.
fn versions_note(forgotten: ingest::documents::Forgotten) -> String {
    if forgotten.documents <= 1 && forgotten.earlier_versions == 0 {
        return String::new();
    }
    let plural = |n: u64, word: &str| format!("{n} {word}{}", if n == 1 { "" } else { "s" });
    format!(
        " ({}, {})",
        plural(forgotten.documents as u64, "document"),
        plural(forgotten.earlier_versions, "earlier version")
    )
}

/// "handbook.pdf: 12 pages, 30 chunks, 2 read with OCR.", with the version when it replaced
/// an earlier one.
fn summary(name: &str, document: &Document) -> String {
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

fn no_such_brain(name: &BrainName) -> Reply {
    Reply::private(format!(
        "There is no brain `{name}` here. `/brain list` shows them; `/brain create` makes one."
    ))
}

/// A `/brain` command, parsed by the adapter from its platform's syntax.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BrainCommand {
    Create { name: BrainName },
    Link { name: BrainName, mode: BindingMode },
    Unlink,
    List,
    Info,
    Forget { file: String },
    Prompt { text: String },
    Usage,
}

impl BrainCommand {
    fn changes_something(&self) -> bool {
        matches!(
            self,
            BrainCommand::Create { .. }
                | BrainCommand::Link { .. }
                | BrainCommand::Unlink
                | BrainCommand::Forget { .. }
                | BrainCommand::Prompt { .. }
        )
    }
}

/// A command's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub text: String,
    /// Only the person who ran the command sees it.
    pub private: bool,
}

impl Reply {
    pub fn public(text: impl Into<String>) -> Self {
        Self {
            text: text.into(),
            private: false,
        }
    }

    pub fn private(text: impl Into<String>) -> Self {
        Self {
            text: text.into(),
            private: true,
        }
    }
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

    #[test]
    fn info_names_documents_with_earlier_versions() {
        let document = |id: i64, name: &str, version: u32| Document {
            id: crate::brain::DocumentId(id),
            brain: crate::brain::BrainId(1),
            sha256: String::new(),
            file_name: name.into(),
            source_link: None,
            status: DocumentStatus::Indexed,
            error: None,
            pages: 1,
            chunks: 1,
            ocr_pages: 0,
            job_id: None,
            created_at: 0,
            updated_at: 0,
            scope: "discord:1".into(),
            version,
            added_by: None,
        };
        let earlier = |id: i64, name: &str, scope: &str| crate::brain::DocumentVersion {
            document_id: crate::brain::DocumentId(id),
            scope: scope.into(),
            file_name: name.into(),
            version: 1,
            sha256: String::new(),
            added_by: None,
            status: "indexed".into(),
            pages: 1,
            chunks: 1,
            added_at: 0,
            replaced_at: 0,
            replaced_by: crate::brain::DocumentId(9),
        };
        let documents = [document(9, "vacation.md", 3), document(10, "faq.md", 1)];
        assert_eq!(versions_lines(&documents, &[]), "");
        let history = [
            earlier(1, "vacation.md", "discord:1"),
            earlier(2, "vacation.md", "discord:1"),
            earlier(3, "faq.md", "discord:2"),
        ];
        assert_eq!(
            versions_lines(&documents, &history),
            "\nDocuments with earlier versions: 1.\n• vacation.md — version 3, since \
             1970-01-01T00:00:00Z (2 earlier)"
        );
        let mut replaced = documents[0].clone();
        replaced.version = 2;
        assert_eq!(
            summary("vacation.md", &replaced),
            "Learned vacation.md (version 2, replacing the earlier one): 1 page, 1 chunk."
        );
    }

    #[test]
    fn the_month_starts_on_its_first_day() {
        let start = crate::clock::month_start_ms(now_ms());
        assert!(start <= now_ms());
        assert!(now_ms() - start < 31 * 86_400_000);
        assert_eq!(start % 86_400_000, 0);
    }
}
