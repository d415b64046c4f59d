//! Answers as jobs, the chat role's side: the gateway (`gateway::ask`) posts a placeholder
//! reply and queues an `answer` job through the store; `AnswerService` checks the asker's
//! rate limit, waits for a fair slot in the pool (telling the asker their place in line),
//! then streams the answer into the placeholder with its sources — reading the files attached
//! to the question first (`attachments`). A chat process that dies mid-answer loses its lease,
//! and another attempt rewrites the same placeholder.

use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use super::attachments::{Attachment, AttachmentReader};
use super::budget::RateBudget;
use super::feedback::AnswerId;
use super::pool::{Admission, AnswerPool, UserRateLimit};
use super::streamer::{stream_answer, StreamOptions};
use super::{ChannelKey, ChatPlatform, MessageRef, PlatformError};
use crate::answer::{AnswerError, Answerer, Question, Source};
use crate::brain::{BrainId, TenantId};
use crate::jobs::Job;
use crate::render::{sources_footer, FooterSource};
use crate::worker::{JobFailure, JobHandler};

/// What a placeholder says until the answer's first words arrive.
pub const THINKING: &str = "💭 Thinking…";

/// A platform this process can write to, with the write budget its channels share.
#[derive(Debug, Clone)]
pub struct Outlet {
    pub platform: Arc<dyn ChatPlatform>,
    pub budget: Arc<RateBudget>,
}

/// The platforms this process can deliver answers to, by name (`discord`, `slack`).
#[derive(Debug, Clone, Default)]
pub struct Outlets(HashMap<String, Outlet>);

impl Outlets {
    pub fn insert(&mut self, name: impl Into<String>, outlet: Outlet) {
        self.0.insert(name.into(), outlet);
    }

    pub fn get(&self, name: &str) -> Option<&Outlet> {
        self.0.get(name)
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// The payload of an `answer` job: everything the chat role needs, nothing it must look up on
/// the platform.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AnswerRequest {
    /// The outlet to write to (`discord`, `slack`).
    pub platform: String,
    pub tenant: TenantId,
    pub brain: BrainId,
    pub channel: ChannelKey,
    /// The message the answer grows in; `None` when it could not be posted when the question
    /// came (the platform failed), so the chat role posts it first.
    pub placeholder: Option<String>,
    /// The asker's message, which the placeholder replies to.
    #[serde(default)]
    pub reply_to: Option<String>,
    /// The conversation (thread or reply chain) the question continues, if any.
    pub conversation: Option<String>,
    /// The platform user who asked.
    pub user: String,
    pub question: String,
    /// The channel whose binding applies when it is not `channel` (a thread's parent).
    #[serde(default)]
    pub bound_channel: Option<String>,
    /// Files attached to the question: read for this answer.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub attachments: Vec<Attachment>,
}

/// Runs `answer` jobs on the chat runtime.
#[derive(Debug)]
pub struct AnswerService {
    pub answerer: Answerer,
    pub outlets: Outlets,
    pub pool: Arc<AnswerPool>,
    /// `None`: no per-user limit.
    pub rate_limit: Option<UserRateLimit>,
    pub stream: StreamOptions,
    /// Reads the files attached to a question.
    pub attachments: AttachmentReader,
}

#[async_trait]
impl JobHandler for AnswerService {
    async fn run(&self, job: &Job) -> Result<(), JobFailure> {
        let request: AnswerRequest = serde_json::from_value(job.payload.clone())
            .map_err(|error| JobFailure::permanent(format!("malformed answer job: {error}")))?;
        let outlet = self.outlets.get(&request.platform).ok_or_else(|| {
            JobFailure::permanent(format!(
                "this chat process has no `{}` connection to deliver the answer through \
                 (configure the platform for every process running the chat role)",
                request.platform
            ))
        })?;
        let placeholder = self.placeholder(&request, outlet).await?;
        // Counted once per question: a retried attempt is not a new question.
        if job.attempts == 1 {
            if let Some(limit) = &self.rate_limit {
                let asker = format!("{}:{}", request.platform, request.user);
                if let Err(wait) = limit.check(&asker) {
                    let text = format!(
                        "⏳ You're asking faster than this server allows. Please try again in \
                         {} s.",
                        wait.as_secs().max(1)
                    );
                    self.tell(outlet, &placeholder, &text).await;
                    return Ok(());
                }
            }
        }
        let _permit = match self.pool.admit(request.tenant) {
            Admission::Now(permit) => permit,
            Admission::Queued(waiting) => {
                let text = match waiting.position() {
                    0 => "⏳ Your question is next in line.".to_string(),
                    1 => "⏳ Your question is in line: 1 question ahead of it.".to_string(),
                    ahead => format!("⏳ Your question is in line: {ahead} questions ahead of it."),
                };
                self.tell(outlet, &placeholder, &text).await;
                waiting.ready().await
            }
        };
        self.answer(job, &request, outlet, placeholder).await
    }
}

impl AnswerService {
    /// The message the answer grows in: the one the gateway posted, or — when the platform
    /// refused it then — one posted now in reply to the question (a failure is retried with
    /// the job).
    async fn placeholder(
        &self,
        request: &AnswerRequest,
        outlet: &Outlet,
    ) -> Result<MessageRef, JobFailure> {
        if let Some(id) = &request.placeholder {
            return Ok(MessageRef {
                channel: request.channel.clone(),
                id: id.clone(),
            });
        }
        let reply_to = request.reply_to.as_ref().map(|id| MessageRef {
            channel: request.channel.clone(),
            id: id.clone(),
        });
        let placeholder = outlet
            .platform
            .post(&request.channel, THINKING, reply_to.as_ref())
            .await
            .map_err(|error| match error {
                PlatformError::Gone(_) => {
                    JobFailure::permanent(format!("cannot post the answer's message: {error}"))
                }
                _ => JobFailure::transient(format!("cannot post the answer's message: {error}")),
            })?;
        if let Some(conversation) = &request.conversation {
            if let Err(error) = self
                .answerer
                .store
                .record_answer_message(
                    request.tenant,
                    &placeholder.channel.0,
                    &placeholder.id,
                    conversation,
                )
                .await
            {
                tracing::warn!(%error, "cannot record an answer's message");
            }
        }
        Ok(placeholder)
    }

    async fn answer(
        &self,
        job: &Job,
        request: &AnswerRequest,
        outlet: &Outlet,
        placeholder: MessageRef,
    ) -> Result<(), JobFailure> {
        let store = &self.answerer.store;
        let brain = match store.brain(request.tenant, request.brain).await {
            Ok(Some(brain)) => brain,
            Ok(None) => {
                let text = "This channel's brain no longer exists. Ask an admin to link the \
                            channel to another brain with `/brain link`.";
                self.tell(outlet, &placeholder, text).await;
                return Err(JobFailure::permanent("the brain no longer exists"));
            }
            Err(error) => {
                let error = AnswerError::from(error);
                return Err(self.unanswered(job, outlet, &placeholder, error).await);
            }
        };
        let platform = outlet.platform.limits().platform;
        let (sender, receiver) = watch::channel(String::new());
        // Set before the sender is dropped, so the final write carries the buttons.
        let answer_id = AnswerId::default();
        let recorded = answer_id.clone();
        let produce = async move {
            // The attached files are read first; each one that cannot be read is named in a
            // line before the answer, which still comes from the brain.
            let attached = self
                .attachments
                .read(outlet.platform.as_ref(), &request.attachments)
                .await;
            if !attached.notices.is_empty() {
                let notices = attached.notices.join("\n");
                sender.send_modify(|text| {
                    text.push_str(&notices);
                    text.push_str("\n\n");
                });
            }
            let answered = self
                .answerer
                .answer(
                    Question {
                        brain: &brain,
                        user: &request.user,
                        text: &request.question,
                        conversation: request.conversation.as_deref(),
                        platform: &request.platform,
                        queue_wait: queue_wait(job),
                        channels: [
                            request.channel.0.as_str(),
                            request.bound_channel.as_deref().unwrap_or(""),
                        ],
                        attachments: &attached.files,
                    },
                    |piece| sender.send_modify(|text| text.push_str(piece)),
                )
                .await?;
            // Only the sources the answer cites (see `Answered::shown_sources`).
            let footer = sources_footer(&footer_sources(&answered.shown_sources()), platform);
            if !footer.is_empty() {
                sender.send_modify(|text| {
                    text.push_str("\n\n");
                    text.push_str(&footer);
                });
            }
            if let Some(id) = answered.id {
                recorded.set(id);
            }
            // Dropping the sender tells the streamer this is the final text.
            Ok::<_, AnswerError>(answered)
        };
        let deliver = async {
            let mut receiver = receiver;
            let native = outlet
                .platform
                .stream_natively(
                    &placeholder,
                    &request.user,
                    &mut receiver,
                    self.stream,
                    &answer_id,
                )
                .await;
            match native {
                Some(streamed) => streamed,
                None => {
                    stream_answer(
                        outlet.platform.as_ref(),
                        &outlet.budget,
                        placeholder.clone(),
                        receiver,
                        self.stream,
                        &answer_id,
                    )
                    .await
                }
            }
        };
        let (answered, delivered) = tokio::join!(produce, deliver);
        if let Err(error) = answered {
            return Err(self.unanswered(job, outlet, &placeholder, error).await);
        }
        match delivered {
            Ok(messages) => {
                self.record_continuations(request, messages.get(1..).unwrap_or_default())
                    .await;
                Ok(())
            }
            Err(PlatformError::Gone(reason)) => {
                tracing::info!(job = job.id, %reason, "the answer's message is gone; answer dropped");
                Ok(())
            }
            Err(error) => Err(JobFailure::permanent(format!(
                "the answer was written but could not be delivered: {error}"
            ))),
        }
    }

    /// Records the messages an answer continued in past the platform's limit as messages of
    /// its conversation, so replying to any of them continues it too.
    async fn record_continuations(&self, request: &AnswerRequest, messages: &[MessageRef]) {
        let Some(conversation) = request.conversation.as_deref() else {
            return;
        };
        for message in messages {
            if let Err(error) = self
                .answerer
                .store
                .record_answer_message(
                    request.tenant,
                    &message.channel.0,
                    &message.id,
                    conversation,
                )
                .await
            {
                tracing::warn!(%error, "cannot record an answer's continuation message");
            }
        }
    }

    /// No answer could be made (the store or index failed before any text): another attempt
    /// may succeed; on the last one, the asker is told which part failed (the details stay in
    /// the job's reason).
    async fn unanswered(
        &self,
        job: &Job,
        outlet: &Outlet,
        placeholder: &MessageRef,
        error: AnswerError,
    ) -> JobFailure {
        if job.attempts >= job.max_attempts {
            let text = format!(
                "⚠️ I couldn't answer this time: {}. Please ask again later.",
                error.user_message()
            );
            self.tell(outlet, placeholder, &text).await;
        }
        JobFailure::transient(error.to_string())
    }

    /// Replaces the placeholder's text with a short status, within the channel's budget.
    async fn tell(&self, outlet: &Outlet, placeholder: &MessageRef, text: &str) {
        outlet.budget.acquire(&placeholder.channel).await;
        if let Err(error) = outlet.platform.edit(placeholder, text).await {
            if let PlatformError::RateLimited { retry_after } = error {
                outlet
                    .budget
                    .rate_limited(&placeholder.channel, retry_after);
            }
            tracing::debug!(%error, "cannot update the placeholder");
        }
    }
}

/// How long the question waited between being queued and its answer starting.
fn queue_wait(job: &Job) -> std::time::Duration {
    let waited = crate::clock::now_ms().saturating_sub(job.created_at);
    std::time::Duration::from_millis(u64::try_from(waited).unwrap_or(0))
}

fn footer_sources(sources: &[&Source]) -> Vec<FooterSource> {
    sources
        .iter()
        .map(|source| FooterSource {
            n: source.n,
            file: source.file.clone(),
            page: source.page,
            heading: source.heading.clone(),
            link: source.link.clone(),
        })
        .collect()
}
