//! The command line: clap definitions and what each command prints. The only module that
//! writes to stdout.
#![allow(clippy::print_stdout)]

mod ask;
mod docs;
mod ingest;
pub(crate) mod output;
mod usage;
mod walk;

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{bail, Context as _};
use clap::{Args, Parser, Subcommand};
use serde_json::json;

use crate::app::{self, Role};
use crate::brain::{BrainName, TenantKey};
use crate::clock::format_utc;
use crate::config::{Config, IndexKind, LogFormat, Sources};
use crate::doctor;
use crate::jobs::{Job, JobId, JobKind, JobState, RetryOutcome};
use crate::store::Store;
use crate::telemetry;

pub use self::ingest::Interrupted;
pub use self::output::is_stdout_closed;
use self::output::{out, outln};

/// engram: a self-hosted second brain for Discord and Slack.
///
/// Files posted in a knowledge channel become searchable knowledge; questions are answered
/// from it with sources. Configuration: config/default.toml, then --config FILE (or
/// ENGRAM_CONFIG), then ENGRAM__SECTION__KEY environment variables.
#[derive(Debug, Parser)]
#[command(name = "engram", version, propagate_version = true)]
pub struct Cli {
    /// Config file layered over the defaults (also ENGRAM_CONFIG).
    #[arg(long, global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,

    /// Log format on stderr (overrides log.format).
    #[arg(long, global = true, value_enum, value_name = "FORMAT")]
    pub log_format: Option<LogFormat>,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the bot: chat adapters, answer pool, ingestion and the HTTP API.
    Serve(ServeArgs),
    /// An offline tour on bundled sample documents (no token, network or LLM).
    Demo,
    /// Create, list, inspect and delete brains; list, forget and re-index their documents.
    Brain(BrainArgs),
    /// Add files or folders to a brain: extract (OCR where needed), chunk and index them.
    Ingest(ingest::IngestArgs),
    /// Answer a question from a brain, with sources (streams to the terminal).
    Ask(ask::AskArgs),
    /// Print the text engram reads from one file, page by page (what OCR saw, and why pages
    /// were skipped): PDF, images, DOCX, XLSX/ODS (a page per sheet), PPTX (a page per
    /// slide), HTML, Markdown, text. Runs in the same sandbox as ingestion.
    Extract(ingest::ExtractArgs),
    /// Inspect queued, failed and dead jobs, and retry them.
    Jobs(JobsArgs),
    /// Check config, store, endpoints and installed tools; say what to fix.
    Doctor,
    /// Apply database migrations (serve does this too).
    Migrate,
    /// Questions, tokens, cost, answer latency p50/p95 and 👍/👎, by brain, user, model or
    /// day, with the total last.
    Usage(usage::UsageArgs),
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Roles to run, comma-separated: gateway, chat, ingest, api. Default: all of them.
    #[arg(long, value_delimiter = ',', value_parser = parse_role)]
    pub roles: Vec<Role>,
}

fn parse_role(value: &str) -> Result<Role, String> {
    value.parse()
}

#[derive(Debug, Args)]
pub struct BrainArgs {
    /// Tenant that owns the brains: `local`, `discord:<guild id>` or `slack:<team id>`.
    #[arg(long, global = true, default_value = "local", value_parser = TenantKey::parse)]
    pub tenant: TenantKey,

    #[command(subcommand)]
    pub command: BrainCommand,
}

#[derive(Debug, Subcommand)]
pub enum BrainCommand {
    /// Create a brain.
    Create {
        /// 1-64 lowercase letters, digits, - or _.
        #[arg(value_parser = BrainName::parse)]
        name: BrainName,
    },
    /// List the tenant's brains.
    List {
        /// One JSON object per line.
        #[arg(long)]
        json: bool,
    },
    /// Show a brain: documents, chunks, prompt, model.
    Info {
        #[arg(value_parser = BrainName::parse)]
        name: BrainName,
        /// One JSON object.
        #[arg(long)]
        json: bool,
    },
    /// Delete a brain with its documents, chunks and channel bindings.
    Delete {
        #[arg(value_parser = BrainName::parse)]
        name: BrainName,
    },
    /// List a brain's documents: name, version, pages, chunks, status, when, where from.
    Docs {
        #[arg(value_parser = BrainName::parse)]
        name: BrainName,
        /// One JSON object per document, with its earlier versions.
        #[arg(long)]
        json: bool,
    },
    /// Forget a file: every version of it, from the store and the index.
    Forget {
        #[arg(value_parser = BrainName::parse)]
        name: BrainName,
        /// The file's name, as `engram brain docs` shows it.
        file: String,
    },
    /// Re-embed a brain's documents as background jobs (after changing the embedding model);
    /// searches keep working meanwhile.
    Reindex {
        #[arg(value_parser = BrainName::parse)]
        name: BrainName,
        /// Run the jobs in this process and wait for them, instead of leaving them to
        /// `engram serve`.
        #[arg(long)]
        wait: bool,
    },
}

#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct JobsArgs {
    /// Only jobs in this state.
    #[arg(long, value_enum)]
    pub state: Option<JobState>,
    /// At most this many, most recent first.
    #[arg(long, default_value_t = 50)]
    pub limit: u32,
    /// One JSON object per line.
    #[arg(long)]
    pub json: bool,

    #[command(subcommand)]
    pub command: Option<JobsCommand>,
}

#[derive(Debug, Subcommand)]
pub enum JobsCommand {
    /// Put a failed or dead job back on the queue with fresh attempts, once its cause is
    /// fixed. A running `engram serve` runs it. A failed file's bytes are kept for this (up to
    /// ingest.kept_failed_bytes), so dead ingest jobs can be retried too.
    Retry { id: JobId },
}

/// Runs a parsed command line.
pub fn run(cli: Cli) -> anyhow::Result<()> {
    let config = Config::load(&Sources::from_process(cli.config.clone()))?;
    // One-shot commands print their results; the workers' per-attempt warnings would only
    // repeat the failed lines `engram ingest` prints.
    let level = if matches!(cli.command, Command::Serve(_)) {
        "info"
    } else {
        "warn,engram::worker=error"
    };
    telemetry::init_logging(cli.log_format.unwrap_or(config.log.format), level);
    match cli.command {
        Command::Serve(args) => {
            let roles = if args.roles.is_empty() {
                Role::ALL.to_vec()
            } else {
                args.roles
            };
            app::serve(config, &roles)
        }
        command => one_shot(config, command),
    }
}

/// Commands that open the store, do one thing and exit.
fn one_shot(config: Config, command: Command) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the runtime")?;
    runtime.block_on(async move {
        match command {
            Command::Doctor => {
                let report = doctor::run(&config).await;
                out!("{}", report.render());
                if report.has_failures() {
                    bail!("doctor found problems (marked FAIL above)");
                }
                Ok(())
            }
            Command::Migrate => {
                let store = app::open_store(&config).await?;
                let versions = store.applied_migrations().await?;
                outln!(
                    "{}: schema at version {}",
                    app::store_location(&config),
                    versions.last().copied().unwrap_or(0)
                );
                Ok(())
            }
            Command::Brain(args) => {
                // Only `brain create` may start a store; the others say where they looked.
                let store = if matches!(args.command, BrainCommand::Create { .. }) {
                    app::open_store(&config).await?
                } else {
                    app::open_existing_store(&config).await?
                };
                brain_command(&config, store, args).await
            }
            Command::Jobs(args) => {
                let store = app::open_existing_store(&config).await?;
                jobs_command(store.as_ref(), args).await
            }
            Command::Ingest(args) => ingest::ingest_command(&config, args).await,
            Command::Extract(args) => ingest::extract_command(&config, args).await,
            Command::Ask(args) => ask::ask_command(&config, args).await,
            Command::Demo => ask::demo_command(&config).await,
            Command::Usage(args) => usage::usage_command(&config, args).await,
            Command::Serve(_) => unreachable!("handled by run"),
        }
    })
}

/// What `brain list` says when a tenant has no brains: how to make one, and where the brains
/// made in Discord or Slack are.
fn no_brains(tenant: &TenantKey) -> String {
    format!(
        "no brains yet for tenant {tenant}: create one with `engram brain create NAME`. Brains \
         made in Discord or Slack belong to their server: add --tenant discord:<guild id> or \
         --tenant slack:<team id>"
    )
}

async fn brain_command(
    config: &Config,
    store: Arc<dyn Store>,
    args: BrainArgs,
) -> anyhow::Result<()> {
    let store_handle = store.clone();
    let store = store.as_ref();
    let tenant_key = args.tenant;
    match args.command {
        BrainCommand::Create { name } => {
            let tenant = store.ensure_tenant(&tenant_key).await?;
            let brain = store.create_brain(tenant, &name).await?;
            outln!("created brain `{}` (tenant {tenant_key})", brain.name);
        }
        BrainCommand::List { json } => {
            let Some(tenant) = store.find_tenant(&tenant_key).await? else {
                if !json {
                    outln!("{}", no_brains(&tenant_key));
                }
                return Ok(());
            };
            let brains = store.brains(tenant).await?;
            if brains.is_empty() && !json {
                outln!("{}", no_brains(&tenant_key));
            } else if !json {
                outln!("{:<24} {:>9} {:>8}  CREATED", "NAME", "DOCUMENTS", "CHUNKS");
            }
            for brain in brains {
                let stats = store.brain_stats(brain.id).await?;
                if json {
                    outln!(
                        "{}",
                        json!({"name": brain.name, "documents": stats.documents,
                               "chunks": stats.chunks, "created_at": format_utc(brain.created_at)})
                    );
                } else {
                    outln!(
                        "{:<24} {:>9} {:>8}  {}",
                        brain.name.as_str(),
                        stats.documents,
                        stats.chunks,
                        format_utc(brain.created_at)
                    );
                }
            }
        }
        BrainCommand::Info { name, json } => {
            let brain = find_brain(store, &tenant_key, &name).await?;
            let stats = store.brain_stats(brain.id).await?;
            let earlier = store.document_history(brain.id).await?.len();
            if json {
                outln!(
                    "{}",
                    json!({"name": brain.name, "tenant": tenant_key, "documents": stats.documents,
                           "failed_documents": stats.failed_documents, "chunks": stats.chunks,
                           "earlier_versions": earlier,
                           "system_prompt": brain.system_prompt, "model": brain.model,
                           "created_at": format_utc(brain.created_at)})
                );
            } else {
                outln!("brain      {}", brain.name);
                outln!("tenant     {tenant_key}");
                outln!("created    {}", format_utc(brain.created_at));
                outln!(
                    "documents  {} ({} failed)",
                    stats.documents,
                    stats.failed_documents
                );
                outln!("chunks     {}", stats.chunks);
                outln!(
                    "versions   {earlier} earlier version{} kept (`engram brain docs {}`)",
                    if earlier == 1 { "" } else { "s" },
                    brain.name
                );
                outln!(
                    "model      {}",
                    brain.model.as_deref().unwrap_or("(llm.model)")
                );
                outln!(
                    "prompt     {}",
                    brain.system_prompt.as_deref().unwrap_or("(default)")
                );
            }
        }
        BrainCommand::Docs { name, json } => {
            let brain = find_brain(store, &tenant_key, &name).await?;
            docs::docs(store, &brain, json).await?;
        }
        BrainCommand::Forget { name, file } => {
            let brain = find_brain(store, &tenant_key, &name).await?;
            docs::forget(config, store_handle, &brain, &file).await?;
        }
        BrainCommand::Reindex { name, wait } => {
            let brain = find_brain(store, &tenant_key, &name).await?;
            docs::reindex(config, store_handle, &brain, wait).await?;
        }
        BrainCommand::Delete { name } => {
            let brain = find_brain(store, &tenant_key, &name).await?;
            let stats = store.brain_stats(brain.id).await?;
            if config.index.kind == IndexKind::Qdrant {
                // Qdrant keeps the chunks outside the store: they go first.
                let index = app::open_index(config, store_handle, None).await?;
                index
                    .forget_brain(brain.id)
                    .await
                    .context("cannot remove the brain's chunks from Qdrant; nothing was deleted")?;
            }
            store.delete_brain(brain.id).await?;
            outln!(
                "deleted brain `{name}` with {} documents and {} chunks",
                stats.documents,
                stats.chunks
            );
        }
    }
    Ok(())
}

pub(crate) async fn find_brain(
    store: &dyn Store,
    tenant_key: &TenantKey,
    name: &BrainName,
) -> anyhow::Result<crate::brain::Brain> {
    let tenant = store.find_tenant(tenant_key).await?;
    let brain = match tenant {
        Some(tenant) => store.brain_by_name(tenant, name).await?,
        None => None,
    };
    brain.with_context(|| {
        format!("no brain named `{name}` for tenant {tenant_key} (see `engram brain list`)")
    })
}

async fn jobs_command(store: &dyn Store, args: JobsArgs) -> anyhow::Result<()> {
    if let Some(JobsCommand::Retry { id }) = args.command {
        return match store.retry(id).await? {
            RetryOutcome::Requeued => {
                outln!("job {id} queued again; a running `engram serve` takes it");
                Ok(())
            }
            RetryOutcome::NotFound => bail!("no job {id} (see `engram jobs`)"),
            RetryOutcome::NotRetryable(state) => {
                bail!("job {id} is {state}; only failed or dead jobs can be retried")
            }
        };
    }
    let jobs = store.jobs(args.state, args.limit).await?;
    if args.json {
        for job in &jobs {
            outln!("{}", serde_json::to_string(job)?);
        }
        return Ok(());
    }
    if jobs.is_empty() {
        match args.state {
            Some(state) => outln!("no {state} jobs"),
            None => outln!("no jobs"),
        }
        return Ok(());
    }
    outln!(
        "{:>8}  {:<7} {:<8} {:>8}  {:<20}  REASON",
        "ID",
        "KIND",
        "STATE",
        "ATTEMPTS",
        "UPDATED"
    );
    // A history read's progress, where its job has no error to show.
    let history: Vec<JobId> = jobs
        .iter()
        .filter(|job| job.kind == JobKind::History)
        .map(|job| job.id)
        .collect();
    let reads = store.history_reads_of_jobs(&history).await?;
    for job in &jobs {
        let progress = reads
            .iter()
            .find(|read| read.job == Some(job.id))
            .map(history_progress);
        outln!("{}", job_line(job, progress.as_deref()));
    }
    Ok(())
}

/// `discord:123 (all, running): 1200 messages, 14 files, 3 threads read`.
fn history_progress(read: &crate::store::history::HistoryRead) -> String {
    let period = if read.since_ms > 0 {
        format!("since {}", crate::clock::format_date(read.since_ms))
    } else {
        "all".to_string()
    };
    format!(
        "{} ({period}, {}): {} messages, {} files, {} threads read",
        read.channel,
        read.status.as_str(),
        read.counts.messages,
        read.counts.files,
        read.counts.threads
    )
}

fn job_line(job: &Job, progress: Option<&str>) -> String {
    let reason = job.last_error.as_deref().or(progress).unwrap_or("");
    let reason: String = if reason.chars().count() > 100 {
        reason.chars().take(99).chain(['…']).collect()
    } else {
        reason.to_string()
    };
    format!(
        "{:>8}  {:<7} {:<8} {:>8}  {:<20}  {}",
        job.id,
        job.kind.as_str(),
        job.state.as_str(),
        format!("{}/{}", job.attempts, job.max_attempts),
        format_utc(job.updated_at),
        reason.replace('\n', " ")
    )
}
