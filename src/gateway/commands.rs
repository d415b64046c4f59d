//! `/brain` commands: create, link, unlink, list, info, forget, prompt, budget and usage, each a
//! reply for the person who ran it (private) or the channel (public).

use super::reports::{self, Budgets};
use super::{Gateway, GatewayError, Origin, UNBOUND_HINT};
use crate::answer::budget::{caps_for, usd_to_micros};
use crate::brain::{BindingMode, Brain, BrainName, Document, DocumentStatus, TenantId};
use crate::clock::{month_start_ms, now_ms};
use crate::ingest;
use crate::store::{StoreError, UsageFilter};
use crate::usage::{report, GroupBy, UsageRow};

impl Gateway {
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
            BrainCommand::Link {
                name,
                mode,
                messages,
            } => {
                let Some(brain) = self.store.brain_by_name(tenant, &name).await? else {
                    return Ok(no_such_brain(&name));
                };
                let learned_before = self.store.channel_learns_messages(tenant, channel).await?;
                self.store
                    .bind_channel(tenant, channel, brain.id, mode)
                    .await?;
                // Messages are learned in knowledge channels unless asked otherwise (or off
                // everywhere by `[conversations] enabled`).
                let learns =
                    mode != BindingMode::Ask && self.learn_messages && messages.unwrap_or(true);
                self.store
                    .set_channel_messages(tenant, channel, learns)
                    .await?;
                let what = match (mode, learns) {
                    (BindingMode::Ask, _) => "questions are answered from it",
                    (BindingMode::Knowledge, false) => "files posted here are learned",
                    (BindingMode::Knowledge, true) => "files and messages posted here are learned",
                    (BindingMode::Both, false) => "questions are answered and files are learned",
                    (BindingMode::Both, true) => {
                        "questions are answered, and files and messages are learned"
                    }
                };
                let mut text =
                    format!("This channel now uses the brain `{}` ({what}).", brain.name);
                if learns && !learned_before {
                    text.push('\n');
                    text.push_str(&super::consent_notice(brain.name.as_str()));
                } else if !learns && learned_before {
                    text.push_str(
                        "\nMessages posted from now on are not learned; what was learned stays until it is deleted.",
                    );
                }
                Reply::public(text)
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
            BrainCommand::Info => self.info(origin, tenant, channel).await?,
            BrainCommand::Forget { file } => {
                let Some(binding) = self.store.binding(tenant, channel).await? else {
                    return Ok(Reply::private(UNBOUND_HINT));
                };
                // A message link: the conversation it belongs to, whole.
                if let Some(key) = super::conversations::message_key_from_link(&file) {
                    // The thread it started, if it started one, and its own conversation.
                    let mut forgotten = match super::conversations::thread_of(&key) {
                        Some(thread) => self.store.delete_conversation(tenant, &thread).await?,
                        None => 0,
                    };
                    forgotten += self
                        .store
                        .forget_conversation_of(tenant, binding.brain, &key)
                        .await?;
                    return Ok(if forgotten == 0 {
                        Reply::private(
                            "This channel's brain has not learned that message (or forgot it already).",
                        )
                    } else {
                        Reply::private(format!(
                            "Forgot that conversation ({forgotten} message{}); it leaves the brain within seconds.",
                            if forgotten == 1 { "" } else { "s" }
                        ))
                    });
                }
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
            BrainCommand::Budget { micros } => self.budget(origin, tenant, channel, micros).await?,
            BrainCommand::History { days } => {
                self.start_history(origin, tenant, channel, days).await?
            }
            BrainCommand::Usage => {
                let since = month_start_ms(now_ms());
                let rows = self.month(tenant, None, since, GroupBy::Model).await?;
                Reply::private(reports::usage_reply(
                    &rows,
                    reports::team(&origin.platform),
                    since,
                ))
            }
        };
        Ok(Reply {
            text: reports::fit(reply.text),
            ..reply
        })
    }

    /// `engram usage`'s report of the tenant's (or one brain's) answers since `since`.
    async fn month(
        &self,
        tenant: TenantId,
        brain: Option<crate::brain::BrainId>,
        since: i64,
        by: GroupBy,
    ) -> Result<Vec<UsageRow>, GatewayError> {
        let entries = self
            .store
            .usage_entries(&UsageFilter {
                tenant: Some(tenant),
                brain,
                since,
            })
            .await?;
        Ok(report(&entries, by))
    }

    /// The caps that apply to `brain` now and this month's spending against them, with the
    /// brain's own figures for the month (`engram usage`'s total row).
    async fn budgets(
        &self,
        tenant: TenantId,
        brain: &Brain,
    ) -> Result<(Budgets, Vec<UsageRow>), GatewayError> {
        let now = now_ms();
        let since = month_start_ms(now);
        let spent =
            |rows: &[UsageRow]| reports::total(rows).map_or(0, |t| usd_to_micros(t.cost_usd));
        let tenant_spent = spent(&self.month(tenant, None, since, GroupBy::Brain).await?);
        let brain_rows = self
            .month(tenant, Some(brain.id), since, GroupBy::Model)
            .await?;
        let caps = caps_for(&self.budgets, brain);
        let budgets = Budgets {
            brain_cap: caps.brain_micros,
            brain_own: brain.budget_micros.is_some_and(|micros| micros > 0),
            brain_spent: spent(&brain_rows),
            tenant_cap: caps.tenant_micros,
            tenant_spent,
            user_questions: caps.user_questions,
            now,
        };
        Ok((budgets, brain_rows))
    }

    /// `/brain budget`: shows the caps of this channel's brain (`micros` `None`), or sets its
    /// own monthly cap (`Some(0)` removes it, so the configured one applies again).
    async fn budget(
        &self,
        origin: &Origin,
        tenant: TenantId,
        channel: &str,
        micros: Option<i64>,
    ) -> Result<Reply, GatewayError> {
        let Some(binding) = self.store.binding(tenant, channel).await? else {
            return Ok(Reply::private(UNBOUND_HINT));
        };
        if let Some(micros) = micros {
            self.store
                .set_brain_budget(binding.brain, (micros > 0).then_some(micros))
                .await?;
        }
        let Some(brain) = self.store.brain(tenant, binding.brain).await? else {
            return Ok(Reply::private(UNBOUND_HINT));
        };
        let (budgets, _) = self.budgets(tenant, &brain).await?;
        Ok(match micros {
            None => Reply::private(reports::budget_show(
                &budgets,
                &brain.name,
                reports::team(&origin.platform),
                &origin.platform,
            )),
            Some(_) => Reply::public(reports::budget_changed(&budgets)),
        })
    }

    async fn info(
        &self,
        origin: &Origin,
        tenant: TenantId,
        channel: &str,
    ) -> Result<Reply, GatewayError> {
        let Some(binding) = self.store.binding(tenant, channel).await? else {
            return Ok(Reply::private(UNBOUND_HINT));
        };
        let Some(brain) = self.store.brain(tenant, binding.brain).await? else {
            return Ok(Reply::private(UNBOUND_HINT));
        };
        let stats = self.store.brain_stats(brain.id).await?;
        let mut text = format!(
            "Brain `{}` ({} here): {} files ({} failed), {} chunks; model: {}.",
            brain.name,
            binding.mode.as_str(),
            stats.documents,
            stats.failed_documents,
            stats.chunks,
            brain.model.as_deref().unwrap_or("the default")
        );
        let conversations = self.store.conversation_stats(brain.id).await?;
        if conversations.messages > 0 {
            text.push_str(&format!(
                "\nConversations: {} messages learned, {} threads.",
                conversations.messages, conversations.threads
            ));
        }
        let (budgets, month) = self.budgets(tenant, &brain).await?;
        text.push('\n');
        text.push_str(&reports::month_line(&month));
        text.push('\n');
        text.push_str(&reports::budget_line(
            &budgets,
            reports::team(&origin.platform),
        ));
        // Files only: a conversation's versions are its edits, not files posted again.
        let is_file = |scope: &str| !scope.starts_with("conversation:");
        let mut documents = self.store.documents(brain.id).await?;
        documents.retain(|document| is_file(&document.scope));
        let mut history = self.store.document_history(brain.id).await?;
        history.retain(|version| is_file(&version.scope));
        text.push_str(&versions_lines(&documents, &history));
        Ok(Reply::private(text))
    }
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

fn no_such_brain(name: &BrainName) -> Reply {
    Reply::private(format!(
        "There is no brain `{name}` here. `/brain list` shows them; `/brain create` makes one."
    ))
}

/// A `/brain` command, parsed by the adapter from its platform's syntax.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BrainCommand {
    Create {
        name: BrainName,
    },
    Link {
        name: BrainName,
        mode: BindingMode,
        /// `messages:on|off`; `None`: on in `knowledge` and `both` mode.
        messages: Option<bool>,
    },
    Unlink,
    List,
    Info,
    Forget {
        file: String,
    },
    Prompt {
        text: String,
    },
    /// Show this channel's brain's budgets (`None`), or set its own monthly cap in millionths
    /// of a US dollar (`Some(0)` removes it).
    Budget {
        micros: Option<i64>,
    },
    Usage,
    /// Read this channel's past into its brain: all of it (`None`) or the last `days`.
    History {
        days: Option<u32>,
    },
}

/// The most days `/brain history` takes (about 30 years: everything a channel can hold).
pub const MAX_HISTORY_DAYS: u32 = 11_000;

/// The largest monthly budget a brain can be given, in US dollars.
pub const MAX_BUDGET_USD: f64 = 1_000_000.0;

/// How to give an amount, for the replies that refuse one.
const AMOUNT_HINT: &str =
    "Give it in US dollars, like `25` or `12.50`; `0` removes this brain's own budget.";

impl BrainCommand {
    fn changes_something(&self) -> bool {
        matches!(
            self,
            BrainCommand::Create { .. }
                | BrainCommand::Link { .. }
                | BrainCommand::Unlink
                | BrainCommand::Forget { .. }
                | BrainCommand::Prompt { .. }
                | BrainCommand::Budget { micros: Some(_) }
                | BrainCommand::History { .. }
        )
    }

    /// `/brain budget` with an amount in US dollars as a platform's number option gives it
    /// (`None`: show the budgets), rounded to the cent. What is not a finite amount, negative,
    /// under a cent or over `MAX_BUDGET_USD` is refused with a reply saying why.
    pub fn budget(usd: Option<f64>) -> Result<BrainCommand, String> {
        let Some(usd) = usd else {
            return Ok(BrainCommand::Budget { micros: None });
        };
        if !usd.is_finite() {
            return Err(format!("That isn't an amount. {AMOUNT_HINT}"));
        }
        if usd < 0.0 {
            return Err(format!("A budget can't be negative. {AMOUNT_HINT}"));
        }
        if usd > MAX_BUDGET_USD {
            return Err(format!(
                "A brain's monthly budget can be at most $1,000,000. {AMOUNT_HINT}"
            ));
        }
        let cents = (usd * 100.0).round() as i64;
        if cents == 0 && usd > 0.0 {
            return Err(format!("The smallest budget is $0.01. {AMOUNT_HINT}"));
        }
        Ok(BrainCommand::Budget {
            micros: Some(cents * 10_000),
        })
    }

    /// `/brain budget` with its amount as typed (`5`, `12.50`, `$12.50`; empty: show the
    /// budgets).
    pub fn budget_from_text(text: &str) -> Result<BrainCommand, String> {
        let text = text.trim();
        if text.is_empty() {
            return Self::budget(None);
        }
        let amount = text.strip_prefix('$').unwrap_or(text).trim();
        // Digits and one point only: no exponents, `inf`, `nan` or thousands separators.
        let plain = !amount.is_empty()
            && amount
                .chars()
                .all(|c| c.is_ascii_digit() || c == '.' || c == '-')
            && amount.chars().any(|c| c.is_ascii_digit());
        match amount.parse::<f64>() {
            Ok(usd) if plain => Self::budget(Some(usd)),
            _ => Err(format!("That isn't an amount. {AMOUNT_HINT}")),
        }
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
    use crate::gateway::files::summary;

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
