//! One answer from start to end, the same for the shell and the chat pool: retrieve, build the
//! prompt with the conversation's recent turns, stream the LLM (or quote passages when there is
//! none, it fails before its first token, or nothing is relevant), record the tokens used and
//! the conversation's new turns.

use std::sync::Arc;

use super::{extractive_answer, prompt, retrieve, RetrievalOptions, Source};
use crate::brain::Brain;
use crate::config::LlmConfig;
use crate::index::{Index, IndexError};
use crate::llm::{ChatModel, Embedder, LlmError, Role, Usage};
use crate::store::{Store, StoreError, StoredTurn, UsageRecord};

/// Earlier turns a prompt may include, at most (the token budget usually cuts sooner).
const HISTORY_TURNS: u32 = 20;

/// Everything an answer needs.
#[derive(Debug, Clone)]
pub struct Answerer {
    pub store: Arc<dyn Store>,
    pub index: Arc<dyn Index>,
    pub embedder: Option<Embedder>,
    /// `None`: answers quote passages (no LLM configured).
    pub chat: Option<ChatModel>,
    /// Default system prompt, context budget and price table.
    pub llm: LlmConfig,
    pub retrieval: RetrievalOptions,
}

/// A question to answer.
#[derive(Debug, Clone, Copy)]
pub struct Question<'a> {
    pub brain: &'a Brain,
    /// Who asked, for usage accounting (`local` from the shell).
    pub user: &'a str,
    pub text: &'a str,
    /// The conversation (platform thread or reply chain) the question belongs to, if any.
    pub conversation: Option<&'a str>,
}

/// How the text was made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Provenance {
    /// Written by the model.
    Model { model: String },
    /// The model broke off after some text; the text ends with a notice.
    Interrupted { reason: String },
    /// Quoted passages (no LLM, or it was unavailable).
    Quoted,
    /// Nothing relevant in the brain; the text says so.
    NothingFound,
}

/// A finished answer.
#[derive(Debug, Clone)]
pub struct Answered {
    pub text: String,
    pub sources: Vec<Source>,
    pub usage: Option<Usage>,
    pub provenance: Provenance,
}

/// Why no answer could be given at all (nothing was shown yet; worth another try).
#[derive(Debug, thiserror::Error)]
pub enum AnswerError {
    #[error("the knowledge store is unavailable: {0}")]
    Index(#[from] IndexError),
    #[error("{0}")]
    Store(#[from] StoreError),
}

impl AnswerError {
    /// What the asker is told: the part that failed, without addresses or driver messages
    /// (those go to the job's reason and the log).
    pub fn for_people(&self) -> &'static str {
        match self {
            AnswerError::Index(_) => "the knowledge store is unavailable",
            AnswerError::Store(_) => "engram's database is unavailable",
        }
    }
}

impl Answerer {
    /// Answers `question`, passing each new piece of the text to `on_text` as it is made; the
    /// pieces concatenated are `Answered::text`.
    pub async fn answer(
        &self,
        question: Question<'_>,
        mut on_text: impl FnMut(&str) + Send,
    ) -> Result<Answered, AnswerError> {
        let brain = question.brain;
        let sources = retrieve(
            self.index.as_ref(),
            self.embedder.as_ref(),
            brain.id,
            question.text,
            self.retrieval,
        )
        .await?;
        let (text, usage, provenance) = match (&self.chat, sources.is_empty()) {
            (Some(chat), false) => {
                self.ask_model(chat, question, &sources, &mut on_text)
                    .await?
            }
            (_, nothing_found) => {
                let text = extractive_answer(question.text, &sources);
                on_text(&text);
                let provenance = if nothing_found {
                    Provenance::NothingFound
                } else {
                    Provenance::Quoted
                };
                (text, None, provenance)
            }
        };
        if let Some(key) = question.conversation {
            for (role, turn_text) in [("user", question.text), ("assistant", text.as_str())] {
                let turn = StoredTurn {
                    role: role.into(),
                    user: (role == "user").then(|| question.user.to_string()),
                    text: turn_text.to_string(),
                };
                self.store
                    .append_turn(brain.tenant, brain.id, key, &turn)
                    .await?;
            }
        }
        Ok(Answered {
            text,
            sources,
            usage,
            provenance,
        })
    }

    async fn ask_model(
        &self,
        chat: &ChatModel,
        question: Question<'_>,
        sources: &[Source],
        on_text: &mut (impl FnMut(&str) + Send),
    ) -> Result<(String, Option<Usage>, Provenance), AnswerError> {
        let brain = question.brain;
        let history = match question.conversation {
            Some(key) => self
                .store
                .recent_turns(brain.tenant, key, HISTORY_TURNS)
                .await?
                .into_iter()
                .map(|turn| prompt::Turn {
                    role: if turn.role == "assistant" {
                        Role::Assistant
                    } else {
                        Role::User
                    },
                    text: turn.text,
                })
                .collect(),
            None => Vec::new(),
        };
        let system_prompt = brain
            .system_prompt
            .as_deref()
            .unwrap_or(&self.llm.system_prompt);
        let messages = prompt::build(
            system_prompt,
            sources,
            &history,
            question.text,
            self.llm.context_tokens as usize,
        );
        match chat
            .stream(&messages, brain.model.as_deref(), &mut *on_text)
            .await
        {
            Ok(completion) => {
                if let Some(usage) = completion.usage {
                    self.store
                        .record_usage(&UsageRecord {
                            tenant: brain.tenant,
                            brain: Some(brain.id),
                            user: question.user.to_string(),
                            model: completion.model.clone(),
                            prompt_tokens: usage.prompt_tokens,
                            completion_tokens: usage.completion_tokens,
                            cost_micros: self.llm.cost_micros(
                                &completion.model,
                                usage.prompt_tokens,
                                usage.completion_tokens,
                            ),
                        })
                        .await?;
                }
                Ok((
                    completion.text,
                    completion.usage,
                    Provenance::Model {
                        model: completion.model,
                    },
                ))
            }
            Err(LlmError::Interrupted { partial, reason }) => {
                let notice = format!("\n\n[The answer was cut off: {reason}.]");
                on_text(&notice);
                Ok((
                    format!("{partial}{notice}"),
                    None,
                    Provenance::Interrupted { reason },
                ))
            }
            Err(error) => {
                tracing::warn!(%error, "the LLM is unavailable; quoting the best passages");
                let text = extractive_answer(question.text, sources);
                on_text(&text);
                Ok((text, None, Provenance::Quoted))
            }
        }
    }
}
