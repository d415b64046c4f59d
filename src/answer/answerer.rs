//! One answer from start to end, the same for the shell and the chat pool: retrieve, build the
//! prompt with the conversation's recent turns, stream the LLM (or quote passages when there is
//! none, or it fails before its first token — then after a notice naming the fault), say so
//! plainly when nothing answers the question, record the tokens used and the conversation's
//! new turns, and mark the sources the text cites.

use std::sync::Arc;

use super::{
    extractive_answer, mark_cited, prompt, retrieve_with_stale, RetrievalOptions, Retrieved, Source,
};
use crate::brain::{Brain, BrainId};
use crate::config::LlmConfig;
use crate::index::{Index, IndexError};
use crate::llm::{ChatModel, Embedder, LlmError, LlmFault, Role, Usage};

/// What quoted passages follow when no LLM is configured.
pub const NO_LLM: &str = "No LLM is configured, so here is what the documents say:";

/// What quoted passages follow when the LLM failed (after the fault's notice).
const LLM_FAILED: &str = "Here is what the documents say:";
use crate::store::{patiently, Store, StoreError, StoredTurn, UsageRecord, STORE_PATIENCE};

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
    /// Nothing in the brain answers the question; the text says so and names the closest
    /// documents.
    NothingFound,
}

/// A finished answer.
#[derive(Debug, Clone)]
pub struct Answered {
    pub text: String,
    /// Every retrieved source: the ones the text cites first (`cited`, in the order first
    /// cited), then the others in rank order. Numbers match the text's `[n]`.
    pub sources: Vec<Source>,
    pub usage: Option<Usage>,
    pub provenance: Provenance,
    /// The configured LLM failed before its first token; the text starts with its notice.
    pub fault: Option<LlmFault>,
}

impl Answered {
    /// The sources to list with the answer: the ones it cites, in citation order. An LLM
    /// answer that cites none lists every retrieved source (the model used them all); an
    /// answer that found nothing lists none (its text names the closest documents).
    pub fn shown_sources(&self) -> Vec<&Source> {
        let cited: Vec<&Source> = self.sources.iter().filter(|s| s.cited).collect();
        match self.provenance {
            Provenance::Model { .. } | Provenance::Interrupted { .. } if cited.is_empty() => {
                self.sources.iter().collect()
            }
            Provenance::NothingFound => Vec::new(),
            _ => cited,
        }
    }
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
    pub fn user_message(&self) -> &'static str {
        match self {
            AnswerError::Index(_) => "the knowledge store is unavailable",
            AnswerError::Store(_) => "engram's database is unavailable",
        }
    }
}

impl Answerer {
    /// The brain's best passages for `question` (`retrieve`); the chunks of documents whose
    /// vectors are of another embedding model than the configured one (not yet embedded again)
    /// count by keywords only.
    pub async fn retrieve(&self, brain: BrainId, question: &str) -> Result<Retrieved, AnswerError> {
        let stale = match &self.embedder {
            Some(embedder) => {
                self.store
                    .stale_embeddings(Some(brain), &embedder.identity())
                    .await?
            }
            None => Vec::new(),
        };
        Ok(retrieve_with_stale(
            self.index.as_ref(),
            self.embedder.as_ref(),
            brain,
            question,
            self.retrieval,
            &stale,
        )
        .await?)
    }

    /// Answers `question`, passing each new piece of the text to `on_text` as it is made; the
    /// pieces concatenated are `Answered::text`.
    pub async fn answer(
        &self,
        question: Question<'_>,
        mut on_text: impl FnMut(&str) + Send,
    ) -> Result<Answered, AnswerError> {
        let brain = question.brain;
        let retrieved = self.retrieve(brain.id, question.text).await?;
        let (text, usage, provenance, fault) = match &self.chat {
            Some(chat) if !retrieved.sources.is_empty() => {
                self.ask_model(chat, question, &retrieved, &mut on_text)
                    .await?
            }
            _ => {
                let (text, provenance) = quote(question.text, &retrieved, NO_LLM);
                on_text(&text);
                (text, None, provenance, None)
            }
        };
        let mut sources = retrieved.sources;
        if provenance != Provenance::NothingFound {
            mark_cited(&text, &mut sources);
        }
        if let Some(key) = question.conversation {
            for (role, turn_text) in [("user", question.text), ("assistant", text.as_str())] {
                let turn = StoredTurn {
                    role: role.into(),
                    user: (role == "user").then(|| question.user.to_string()),
                    text: turn_text.to_string(),
                };
                // The answer stands whether or not its turn is kept: a store that is down
                // now (restarting) delays it, and at worst a follow-up lacks this turn.
                let recorded = patiently(STORE_PATIENCE, "record a conversation turn", || {
                    self.store.append_turn(brain.tenant, brain.id, key, &turn)
                })
                .await;
                if let Err(error) = recorded {
                    tracing::warn!(%error, "cannot record a conversation turn");
                }
            }
        }
        Ok(Answered {
            text,
            sources,
            usage,
            provenance,
            fault,
        })
    }

    async fn ask_model(
        &self,
        chat: &ChatModel,
        question: Question<'_>,
        retrieved: &Retrieved,
        on_text: &mut (impl FnMut(&str) + Send),
    ) -> Result<(String, Option<Usage>, Provenance, Option<LlmFault>), AnswerError> {
        let brain = question.brain;
        let sources: &[Source] = &retrieved.sources;
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
                    let record = UsageRecord {
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
                    };
                    // The text is made and shown: a store that is down now delays the
                    // record, and never turns the answer into a failure.
                    let recorded = patiently(STORE_PATIENCE, "record usage", || {
                        self.store.record_usage(&record)
                    })
                    .await;
                    if let Err(error) = recorded {
                        tracing::warn!(%error, "cannot record an answer's usage");
                    }
                }
                Ok((
                    completion.text,
                    completion.usage,
                    Provenance::Model {
                        model: completion.model,
                    },
                    None,
                ))
            }
            Err(LlmError::Interrupted { partial, reason }) => {
                let notice = format!("\n\n[The answer was cut off: {reason}.]");
                on_text(&notice);
                Ok((
                    format!("{partial}{notice}"),
                    None,
                    Provenance::Interrupted { reason },
                    None,
                ))
            }
            Err(error) => {
                let fault = error.fault();
                tracing::warn!(%error, ?fault, "the LLM failed; quoting the best passages");
                let (quoted, provenance) = quote(question.text, retrieved, LLM_FAILED);
                let text = format!("⚠️ {}\n\n{quoted}", fault.notice());
                on_text(&text);
                Ok((text, None, provenance, Some(fault)))
            }
        }
    }
}

/// The answer without a model's text: quoted passages after `lead` when retrieval's evidence
/// says they answer the question, else the plain abstention.
fn quote(question: &str, retrieved: &Retrieved, lead: &str) -> (String, Provenance) {
    let (text, quoted) = extractive_answer(question, &retrieved.sources, retrieved.answers(), lead);
    let provenance = if quoted {
        Provenance::Quoted
    } else {
        Provenance::NothingFound
    };
    (text, provenance)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answered(provenance: Provenance, cited: &[usize]) -> Answered {
        let sources = (1..=3)
            .map(|n| Source {
                n,
                file: format!("doc{n}.md"),
                page: None,
                heading: None,
                score: 1.0,
                link: None,
                cited: cited.contains(&n),
                text: String::new(),
                document_id: n as i64,
            })
            .collect();
        Answered {
            text: String::new(),
            sources,
            usage: None,
            provenance,
            fault: None,
        }
    }

    fn shown(answered: &Answered) -> Vec<usize> {
        answered.shown_sources().iter().map(|s| s.n).collect()
    }

    #[test]
    fn only_cited_sources_are_shown() {
        let model = Provenance::Model { model: "m".into() };
        assert_eq!(shown(&answered(model.clone(), &[2])), [2]);
        assert_eq!(
            shown(&answered(model, &[])),
            [1, 2, 3],
            "an LLM answer citing nothing shows what it was given"
        );
        assert_eq!(shown(&answered(Provenance::Quoted, &[1, 3])), [1, 3]);
        assert!(shown(&answered(Provenance::NothingFound, &[])).is_empty());
    }
}
