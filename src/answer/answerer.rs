//! One answer from start to end, the same for the shell and the chat pool: retrieve (the
//! passages of files attached to the question first), build the prompt with the conversation's recent turns, stream the LLM (or quote passages when there is
//! none, or it fails before its first token — then after a notice naming the fault), say so
//! plainly when nothing answers the question, record the tokens used and the conversation's
//! new turns, and mark the sources the text cites.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::{
    attached, budget, extractive_answer, mark_cited, prompt, retrieve_with_stale, Attachment,
    RetrievalOptions, Retrieved, Source,
};
use crate::brain::{Brain, BrainId};
use crate::clock::now_ms;
use crate::config::{BudgetsConfig, LlmConfig};
use crate::index::{Index, IndexError};
use crate::llm::{ChatModel, Embedder, LlmError, LlmFault, Role, Usage};
use crate::telemetry::{AnswerObservation, AnswerOutcome, Metrics};
use crate::text::count_tokens;

/// What quoted passages follow when no LLM is configured.
pub const NO_LLM: &str = "No LLM is configured, so here is what the documents say:";

/// What quoted passages follow when the LLM failed (after the fault's notice).
const LLM_FAILED: &str = "Here is what the documents say:";
use crate::store::{
    patiently, AnswerRecord, AnswerRecorded, CapKind, CapUse, Caps, Phases, Reservation, Spender,
    Store, StoreError, StoredTurn, UsageRecord, STORE_PATIENCE,
};

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
    /// Spending caps, checked before every LLM call.
    pub budgets: BudgetsConfig,
    /// Where answers are counted (`/metrics`).
    pub metrics: Arc<Metrics>,
    /// Answers slower than this are logged at `warn` with their phases (`chat.slow_answer_ms`).
    pub slow_answer: Duration,
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
    /// Where it was asked: `discord`, `slack`, or `cli` for `engram ask`.
    pub platform: &'a str,
    /// How long the question waited in the queue before this answer started.
    pub queue_wait: Duration,
    /// Where it was asked: the channel and the one whose binding applies (a thread's parent;
    /// `""` when there is none, and both `""` from the shell). Knowledge learned in a
    /// restricted channel answers only there.
    pub channels: [&'a str; 2],
    /// Files attached to the question, read: their best passages come before the brain's,
    /// cited as `attachment: <name>`.
    pub attachments: &'a [Attachment],
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
    /// A budget cap was reached, so no LLM call was made; the text starts with its notice.
    pub capped: Option<CapUse>,
    /// The answer's id (its usage row, what votes refer to); `None` if it could not be
    /// recorded.
    pub id: Option<i64>,
    pub phases: Phases,
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
        self.retrieve_in(brain, question, ["", ""]).await
    }

    /// `retrieve` for a question asked in `channels` (see [`Question::channels`]): what was
    /// learned in other restricted channels is not searched.
    pub async fn retrieve_in(
        &self,
        brain: BrainId,
        question: &str,
        channels: [&str; 2],
    ) -> Result<Retrieved, AnswerError> {
        let hidden = self.store.hidden_documents(brain, channels).await?;
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
            &hidden,
        )
        .await?)
    }

    /// Answers `question`, passing each new piece of the text to `on_text` as it is made; the
    /// pieces concatenated are `Answered::text`. Before an LLM call the budget caps are
    /// checked (and its cost reserved); at a cap the answer quotes passages after a notice.
    /// The answer is recorded with its usage, phases and outcome, settling its spending; a
    /// warning share of a cap crossed by it is announced at its end.
    pub async fn answer(
        &self,
        question: Question<'_>,
        mut on_text: impl FnMut(&str) + Send,
    ) -> Result<Answered, AnswerError> {
        let started = Instant::now();
        let brain = question.brain;
        let retrieved = match self
            .retrieve_in(brain.id, question.text, question.channels)
            .await
        {
            Ok(retrieved) => retrieved,
            Err(error) => {
                self.count_failure(&question, started);
                return Err(error);
            }
        };
        let retrieved = attached::merge(
            question.text,
            retrieved,
            attached::passages(question.text, question.attachments),
        );
        let retrieval = started.elapsed();
        let caps = budget::caps_for(&self.budgets, brain);
        let mut reservation = None;
        let mut capped = None;
        let model = match &self.chat {
            Some(chat) if !retrieved.sources.is_empty() => {
                let messages = self.prompt(question, &retrieved).await;
                let messages = match messages {
                    Ok(messages) => messages,
                    Err(error) => {
                        self.count_failure(&question, started);
                        return Err(error);
                    }
                };
                if caps.any() {
                    match self.reserve(question, &caps, chat, &messages).await {
                        Ok(Reservation::Granted(held)) => reservation = held,
                        Ok(Reservation::Capped(cap)) => capped = Some(cap),
                        Err(error) => {
                            self.count_failure(&question, started);
                            return Err(error);
                        }
                    }
                }
                capped.is_none().then_some((chat, messages))
            }
            _ => None,
        };
        let (text, made) = match model {
            Some((chat, messages)) => {
                self.ask_model(chat, question, &retrieved, &messages, &mut on_text)
                    .await
            }
            None => {
                let (text, provenance) = match &capped {
                    Some(cap) => {
                        let (quoted, provenance) = quote(question.text, &retrieved, LLM_FAILED);
                        let notice = budget::capped_notice(cap, now_ms());
                        (format!("{notice}\n\n{quoted}"), provenance)
                    }
                    None => quote(question.text, &retrieved, NO_LLM),
                };
                on_text(&text);
                (text, Made::quoted(provenance))
            }
        };
        let mut text = text;
        let mut sources = retrieved.sources;
        if made.provenance != Provenance::NothingFound {
            mark_cited(&text, &mut sources);
        }
        self.record_turns(question, &text).await;

        let total = question.queue_wait + started.elapsed();
        let phases = Phases {
            queue_ms: Some(millis(question.queue_wait)),
            retrieval_ms: Some(millis(retrieval)),
            first_token_ms: made.first_token.map(millis),
            total_ms: Some(millis(total)),
            tokens_per_s: made.tokens_per_s(),
        };
        let outcome = match (&made.provenance, &capped, made.fault) {
            (Provenance::NothingFound, _, _) => AnswerOutcome::NothingFound,
            (_, Some(_), _) => AnswerOutcome::Capped,
            (_, _, Some(_)) => AnswerOutcome::LlmFailed,
            (Provenance::Model { .. }, _, _) => AnswerOutcome::Llm,
            (Provenance::Interrupted { .. }, _, _) => AnswerOutcome::Interrupted,
            (Provenance::Quoted, _, _) => AnswerOutcome::Quoted,
        };
        let (model_name, spent) = match &made.spent {
            Some((model, usage)) => (model.clone(), Some(*usage)),
            None => (String::new(), None),
        };
        let cost_micros = spent.map_or(0, |usage| {
            self.llm
                .cost_micros(&model_name, usage.prompt_tokens, usage.completion_tokens)
        });
        let record = AnswerRecord {
            usage: UsageRecord {
                tenant: brain.tenant,
                brain: Some(brain.id),
                user: question.user.to_string(),
                model: model_name.clone(),
                prompt_tokens: spent.map_or(0, |usage| usage.prompt_tokens),
                completion_tokens: spent.map_or(0, |usage| usage.completion_tokens),
                cost_micros,
            },
            platform: question.platform.to_string(),
            outcome: outcome.as_str().to_string(),
            question: question.text.to_string(),
            sources: cited_files(&sources),
            phases,
        };
        // The text is made and shown: a store that is down now delays the record, and never
        // turns the answer into a failure.
        let now = now_ms();
        let recorded = patiently(STORE_PATIENCE, "record an answer", || {
            self.store.record_answer(&record, reservation, &caps, now)
        })
        .await;
        let id = match recorded {
            Ok(AnswerRecorded {
                id,
                caps: used,
                warn,
            }) => {
                for cap in &used {
                    self.metrics.record_budget(
                        cap_scope(brain, question.user, cap.cap),
                        budget::resets_at(cap.cap, now),
                        cap.ratio(),
                    );
                }
                // The cap this answer is capped by was named already.
                let warnings: Vec<String> = warn
                    .iter()
                    .filter(|cap| capped.map(|c| c.cap) != Some(cap.cap))
                    .map(|cap| budget::warning_notice(cap, now))
                    .collect();
                if !warnings.is_empty() {
                    let lines = format!("\n\n{}", warnings.join("\n"));
                    on_text(&lines);
                    text.push_str(&lines);
                }
                Some(id)
            }
            Err(error) => {
                tracing::warn!(%error, "cannot record an answer's usage");
                None
            }
        };
        if let Some(cap) = &capped {
            self.metrics.record_budget(
                cap_scope(brain, question.user, cap.cap),
                budget::resets_at(cap.cap, now),
                cap.ratio(),
            );
        }
        let brain_name = brain.name.to_string();
        let tenant = brain.tenant.0.to_string();
        self.metrics.record_answer(&AnswerObservation {
            platform: question.platform,
            outcome,
            tenant: &tenant,
            brain: &brain_name,
            phases,
            llm: spent.map(|usage| {
                (
                    model_name.as_str(),
                    usage.prompt_tokens,
                    usage.completion_tokens,
                    cost_micros,
                )
            }),
        });
        if total >= self.slow_answer {
            tracing::warn!(
                brain = %brain.name,
                platform = question.platform,
                outcome = outcome.as_str(),
                queue_ms = phases.queue_ms,
                retrieval_ms = phases.retrieval_ms,
                first_token_ms = phases.first_token_ms,
                tokens_per_s = phases.tokens_per_s,
                total_ms = phases.total_ms,
                "slow answer (over chat.slow_answer_ms)"
            );
        }
        Ok(Answered {
            text,
            sources,
            usage: made.usage,
            provenance: made.provenance,
            fault: made.fault,
            capped,
            id,
            phases,
        })
    }

    /// Counts an answer that could not be made at all.
    fn count_failure(&self, question: &Question<'_>, started: Instant) {
        let brain_name = question.brain.name.to_string();
        let tenant = question.brain.tenant.0.to_string();
        self.metrics.record_answer(&AnswerObservation {
            platform: question.platform,
            outcome: AnswerOutcome::Error,
            tenant: &tenant,
            brain: &brain_name,
            phases: Phases {
                queue_ms: Some(millis(question.queue_wait)),
                total_ms: Some(millis(question.queue_wait + started.elapsed())),
                ..Phases::default()
            },
            llm: None,
        });
    }

    /// Records the question and its answer as the conversation's new turns.
    async fn record_turns(&self, question: Question<'_>, text: &str) {
        let Some(key) = question.conversation else {
            return;
        };
        let brain = question.brain;
        for (role, turn_text) in [("user", question.text), ("assistant", text)] {
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

    /// The LLM's messages: instructions, sources, the conversation's recent turns, the
    /// question.
    async fn prompt(
        &self,
        question: Question<'_>,
        retrieved: &Retrieved,
    ) -> Result<Vec<crate::llm::ChatMessage>, AnswerError> {
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
        Ok(prompt::build(
            system_prompt,
            &retrieved.sources,
            &history,
            question.text,
            self.llm.context_tokens as usize,
        ))
    }

    /// Checks the caps before the LLM call and reserves its estimated cost.
    async fn reserve(
        &self,
        question: Question<'_>,
        caps: &Caps,
        chat: &ChatModel,
        messages: &[crate::llm::ChatMessage],
    ) -> Result<Reservation, AnswerError> {
        let brain = question.brain;
        let model = brain.model.as_deref().unwrap_or(chat.model());
        let estimate =
            budget::estimate_micros(&self.llm, &self.budgets, model, prompt_tokens(messages));
        // Held past the longest an answer may take, so a reservation of a process that died
        // stops counting soon after.
        let hold = Duration::from_millis(self.llm.total_timeout_ms) + Duration::from_secs(60);
        let spender = Spender {
            tenant: brain.tenant,
            brain: brain.id,
            user: question.user,
        };
        Ok(patiently(STORE_PATIENCE, "check the budgets", || {
            self.store
                .reserve_spending(&spender, caps, estimate, now_ms(), hold)
        })
        .await?)
    }

    async fn ask_model(
        &self,
        chat: &ChatModel,
        question: Question<'_>,
        retrieved: &Retrieved,
        messages: &[crate::llm::ChatMessage],
        on_text: &mut (impl FnMut(&str) + Send),
    ) -> (String, Made) {
        let brain = question.brain;
        let requested = brain.model.as_deref().unwrap_or(chat.model()).to_string();
        let asked_at = Instant::now();
        let mut first_token: Option<Instant> = None;
        let streamed = chat
            .stream(messages, brain.model.as_deref(), |piece| {
                first_token.get_or_insert_with(Instant::now);
                on_text(piece);
            })
            .await;
        let first_token_after = first_token.map(|at| at.duration_since(asked_at));
        let writing = first_token.map(|at| at.elapsed());
        // What the call used: as the endpoint reported it, or counted from the text when it
        // reported nothing (a stream cut short).
        let counted = |text: &str| Usage {
            prompt_tokens: u32::try_from(prompt_tokens(messages)).unwrap_or(u32::MAX),
            completion_tokens: u32::try_from(count_tokens(text)).unwrap_or(u32::MAX),
        };
        match streamed {
            Ok(completion) => {
                let spent = completion
                    .usage
                    .unwrap_or_else(|| counted(&completion.text));
                let made = Made {
                    usage: completion.usage,
                    provenance: Provenance::Model {
                        model: completion.model.clone(),
                    },
                    fault: None,
                    first_token: first_token_after,
                    writing,
                    spent: Some((completion.model, spent)),
                };
                (completion.text, made)
            }
            Err(LlmError::Interrupted { partial, reason }) => {
                let notice = format!("\n\n[The answer was cut off: {reason}.]");
                on_text(&notice);
                let spent = counted(&partial);
                let made = Made {
                    usage: None,
                    provenance: Provenance::Interrupted { reason },
                    fault: None,
                    first_token: first_token_after,
                    writing,
                    spent: Some((requested, spent)),
                };
                (format!("{partial}{notice}"), made)
            }
            Err(error) => {
                let fault = error.fault();
                tracing::warn!(%error, ?fault, "the LLM failed; quoting the best passages");
                let (quoted, provenance) = quote(question.text, retrieved, LLM_FAILED);
                let text = format!("⚠️ {}\n\n{quoted}", fault.notice());
                on_text(&text);
                let made = Made {
                    fault: Some(fault),
                    ..Made::quoted(provenance)
                };
                (text, made)
            }
        }
    }
}

/// How an answer's text was made.
#[derive(Debug)]
struct Made {
    /// As the endpoint reported it.
    usage: Option<Usage>,
    provenance: Provenance,
    fault: Option<LlmFault>,
    /// From the LLM request to its first token.
    first_token: Option<Duration>,
    /// From the first token to the last.
    writing: Option<Duration>,
    /// The model called and what it used (reported, else counted), for the budgets.
    spent: Option<(String, Usage)>,
}

impl Made {
    fn quoted(provenance: Provenance) -> Self {
        Self {
            usage: None,
            provenance,
            fault: None,
            first_token: None,
            writing: None,
            spent: None,
        }
    }

    /// Completion tokens per second after the first one.
    fn tokens_per_s(&self) -> Option<f64> {
        let (_, usage) = self.spent.as_ref()?;
        let seconds = self.writing?.as_secs_f64();
        (seconds > 0.0 && usage.completion_tokens > 1)
            .then(|| f64::from(usage.completion_tokens - 1) / seconds)
    }
}

fn millis(duration: Duration) -> i64 {
    i64::try_from(duration.as_millis()).unwrap_or(i64::MAX)
}

/// Tokens of a prompt, as the chunker counts them.
fn prompt_tokens(messages: &[crate::llm::ChatMessage]) -> usize {
    messages
        .iter()
        .map(|message| count_tokens(&message.content) + 4)
        .sum()
}

/// The files an answer cites, in citation order.
fn cited_files(sources: &[Source]) -> Vec<String> {
    sources
        .iter()
        .filter(|source| source.cited)
        .map(|source| source.file.clone())
        .collect()
}

/// Names a cap's scope for `engram_budget_spent_ratio`.
fn cap_scope(brain: &Brain, user: &str, cap: CapKind) -> String {
    match cap {
        CapKind::Tenant => format!("tenant:{}", brain.tenant.0),
        CapKind::Brain => format!("brain:{}", brain.id.0),
        CapKind::User => format!("user:{}:{user}", brain.tenant.0),
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
            capped: None,
            id: None,
            phases: Phases::default(),
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
