//! Questions: routing one to its channel's brain (or telling the asker the channel has none),
//! following a thread or reply chain to the conversation it continues, and `ask`, which posts
//! the placeholder and queues the `answer` job the chat role runs (with the question's attached
//! files, which the chat role reads for the answer).

use super::{Gateway, GatewayError, Handled, Origin, PostedFile, UNBOUND_HINT};
use crate::brain::{BrainId, TenantId};
use crate::chat::attachments::Attachment;
use crate::chat::service::{AnswerRequest, Outlet, THINKING};
use crate::chat::{ChannelKey, MessageRef, PlatformError};
use crate::jobs::{JobId, JobKind, NewJob};
use crate::store::{patiently, Store, StoreError, STORE_PATIENCE};

impl Gateway {
    /// The conversation of the answer a thread was opened on, if it was opened on one (in the
    /// thread's own tenant and parent channel).
    pub(super) async fn thread_conversation(
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

    pub(super) async fn question(
        &self,
        origin: Origin,
        text: String,
        conversation: Option<String>,
        continues: Option<MessageRef>,
        attachments: Vec<PostedFile>,
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
        let bound_channel = origin.parent.as_ref().map(|parent| parent.0.clone());
        let question = NewQuestion {
            platform: origin.platform,
            tenant,
            brain: binding.brain,
            bound_channel,
            channel: origin.channel,
            reply_to: origin.message,
            conversation,
            user: origin.user,
            text,
            attachments: attachments.into_iter().map(Attachment::from).collect(),
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
            Err(AskError::Platform(error)) => Err(error.into()),
            Err(AskError::Store(error)) => Err(error.into()),
        }
    }
}

/// A question as the gateway hands it over.
#[derive(Debug, Clone)]
pub struct NewQuestion {
    pub platform: String,
    pub tenant: TenantId,
    pub brain: BrainId,
    pub channel: ChannelKey,
    /// The channel whose binding applies when it is not `channel` (a thread's parent).
    pub bound_channel: Option<String>,
    /// The asker's message; the placeholder replies to it.
    pub reply_to: Option<MessageRef>,
    pub conversation: Option<String>,
    pub user: String,
    pub text: String,
    /// Files attached to the question, read for its answer.
    pub attachments: Vec<Attachment>,
}

impl From<PostedFile> for Attachment {
    fn from(file: PostedFile) -> Self {
        Attachment {
            name: file.name,
            size: file.size,
            url: file.url,
            link: file.link,
        }
    }
}

/// A queued question.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Asked {
    pub job: JobId,
    /// `None`: the platform refused the placeholder for now; the answer job posts it.
    pub placeholder: Option<MessageRef>,
}

/// Why a question could not be queued.
#[derive(Debug, thiserror::Error)]
pub enum AskError {
    #[error("cannot post the placeholder: {0}")]
    Platform(#[from] PlatformError),
    #[error("cannot queue the question: {0}")]
    Store(#[from] StoreError),
}

/// The gateway's side: replies with a placeholder at once, records it as a message of the
/// question's conversation (a question that starts none starts one keyed by the placeholder,
/// so a reply to any answer continues it), then queues the answer job. The placeholder waits
/// only for the channel's rate limit (the platform's write path), not for the edit budget.
/// A question is not lost when the placeholder cannot be posted: the job is queued anyway and
/// posts it itself (retried with the job), unless the channel itself is gone or closed to the
/// bot.
pub async fn ask(
    store: &dyn Store,
    outlet: &Outlet,
    mut question: NewQuestion,
    max_attempts: u32,
) -> Result<Asked, AskError> {
    let placeholder = match outlet
        .platform
        .post(&question.channel, THINKING, question.reply_to.as_ref())
        .await
    {
        Ok(placeholder) => Some(placeholder),
        Err(error @ PlatformError::Gone(_)) => return Err(error.into()),
        Err(error) => {
            tracing::warn!(
                %error,
                channel = %question.channel,
                "cannot post a question's placeholder now; the answer job will post it"
            );
            None
        }
    };
    let conversation_root = placeholder
        .as_ref()
        .or(question.reply_to.as_ref())
        .map_or_else(|| format!("q{}", crate::clock::now_ms()), |m| m.id.clone());
    let conversation = question
        .conversation
        .get_or_insert_with(|| format!("{}:{conversation_root}", question.channel))
        .clone();
    // The placeholder is out: a store that is restarting now delays the job rather than
    // leaving the asker with a placeholder nobody fills.
    if let Some(placeholder) = &placeholder {
        patiently(STORE_PATIENCE, "record an answer's message", || {
            store.record_answer_message(
                question.tenant,
                &question.channel.0,
                &placeholder.id,
                &conversation,
            )
        })
        .await?;
    }
    let request = AnswerRequest {
        platform: question.platform,
        tenant: question.tenant,
        brain: question.brain,
        channel: question.channel,
        placeholder: placeholder.as_ref().map(|p| p.id.clone()),
        reply_to: question.reply_to.map(|m| m.id),
        conversation: question.conversation,
        user: question.user,
        question: question.text,
        bound_channel: question.bound_channel,
        attachments: question.attachments,
    };
    let payload = serde_json::to_value(&request).expect("an answer request serializes");
    // One answer job per placeholder (or, without one, per question message): enqueueing
    // again after a reply lost with a connection, or by a gateway taking the question over
    // (its placeholder post returned the same message), returns the job already made.
    let key = request
        .placeholder
        .as_ref()
        .or(request.reply_to.as_ref())
        .map(|message| format!("answer:{}:{message}", request.channel));
    let mut job = NewJob::new(JobKind::Answer, payload, max_attempts);
    if let Some(key) = key {
        job = job.with_dedupe_key(key);
    }
    let job = patiently(STORE_PATIENCE, "queue a question", || store.enqueue(&job))
        .await?
        .id();
    Ok(Asked { job, placeholder })
}
