//! `engram ask` (retrieve, then stream an LLM's answer — or quote the passages when no LLM is
//! configured or it fails, after a notice naming the fault — to the terminal, with the sources
//! the answer cites) and `engram demo` (the offline tour on the sample documents built into the
//! binary).

use std::path::PathBuf;

use anyhow::Context as _;
use clap::Args;
use serde_json::json;

use crate::answer::{Provenance, Question, Source};
use crate::app;
use crate::brain::{BrainName, TenantKey};
use crate::config::{Config, StoreUrl};

use super::output::outln;

#[derive(Debug, Args)]
pub struct AskArgs {
    /// The brain to ask (see `engram brain list`).
    #[arg(value_parser = BrainName::parse)]
    pub brain: BrainName,
    /// The question.
    pub question: String,
    /// Tenant that owns the brain.
    #[arg(long, default_value = "local", value_parser = TenantKey::parse)]
    pub tenant: TenantKey,
    /// One JSON object: {"answer": …, "sources": [… "cited": true|false …], "usage": …,
    /// "error": null|"what failed"}.
    #[arg(long)]
    pub json: bool,
    /// Only the ranked sources an answer would use (no answer).
    #[arg(long)]
    pub sources_only: bool,
    /// Continue a conversation: earlier questions and answers under this key are part of the
    /// prompt, and this one is added to it.
    #[arg(long, value_name = "KEY")]
    pub conversation: Option<String>,
}

pub async fn ask_command(config: &Config, args: AskArgs) -> anyhow::Result<()> {
    let store = app::open_existing_store(config).await?;
    let brain = super::find_brain(store.as_ref(), &args.tenant, &args.brain).await?;
    let answerer = app::answerer(config, store, Default::default()).await?;
    if args.sources_only {
        let sources = answerer
            .retrieve(brain.id, &args.question)
            .await
            .context("cannot search the brain")?
            .sources;
        if args.json {
            outln!("{}", json!({ "sources": sources }));
        } else {
            print_sources(&sources.iter().collect::<Vec<_>>())?;
        }
        return Ok(());
    }
    let json = args.json;
    let answered = answerer
        .answer(
            Question {
                brain: &brain,
                user: "local",
                text: &args.question,
                conversation: args.conversation.as_deref(),
                platform: "cli",
                queue_wait: std::time::Duration::ZERO,
                channels: ["", ""],
                attachments: &[],
            },
            |piece| {
                // A closed stdout is noticed by the next line printed after the answer.
                if !json {
                    let _ = super::output::text(format_args!("{piece}"));
                }
            },
        )
        .await?;
    let notice = answered.fault.map(|fault| fault.notice());
    if json {
        outln!(
            "{}",
            json!({
                "answer": answered.text,
                "sources": answered.sources,
                "usage": answered.usage,
                "error": notice,
            })
        );
    } else {
        outln!("\n");
        if answered.provenance != Provenance::NothingFound {
            print_sources(&answered.shown_sources())?;
        }
    }
    match notice {
        // The answer (quoted passages) was printed; the exit status says the LLM failed.
        Some(notice) => anyhow::bail!("{notice}"),
        None => Ok(()),
    }
}

fn print_sources(sources: &[&Source]) -> anyhow::Result<()> {
    if sources.is_empty() {
        outln!("Sources: none");
        return Ok(());
    }
    outln!("Sources:");
    for source in sources {
        let mut line = format!("  [{}] {}", source.n, source.file);
        if let Some(page) = source.page {
            line.push_str(&format!(", page {page}"));
        }
        if let Some(heading) = &source.heading {
            line.push_str(&format!(" — {heading}"));
        }
        outln!("{line}");
    }
    Ok(())
}

/// The sample documents the demo teaches, built into the binary.
const DEMO_FILES: [(&str, &[u8]); 3] = [
    ("handbook.md", include_bytes!("../../demo/handbook.md")),
    (
        "release-notes.txt",
        include_bytes!("../../demo/release-notes.txt"),
    ),
    (
        "oncall-scan.png",
        include_bytes!("../../demo/oncall-scan.png"),
    ),
];

const DEMO_QUESTIONS: [&str; 2] = [
    "How do I request vacation?",
    "Who carries the pager, and when is the hand-over?",
];

pub async fn demo_command(config: &Config) -> anyhow::Result<()> {
    let dir = tempfile::Builder::new()
        .prefix("engram-demo-")
        .tempdir()
        .context("cannot make a temporary folder for the demo")?;
    let mut config = config.clone();
    config.store.url = StoreUrl::new(format!("sqlite://{}/demo.db", dir.path().display()));
    // Offline: no embeddings endpoint, keyword retrieval.
    config.embeddings.base_url.clear();
    config.llm.base_url.clear();

    outln!("engram demo — offline: no token, no network, no LLM.\n");
    outln!(
        "1. A brain called `demo`, in a throwaway store ({}).",
        config.store.url
    );
    let store = app::open_store(&config).await?;
    let tenant = store.ensure_tenant(&TenantKey::local()).await?;
    let name = BrainName::parse("demo").expect("valid name");
    store.create_brain(tenant, &name).await?;

    let files_dir = dir.path().join("files");
    std::fs::create_dir_all(&files_dir)?;
    let mut paths: Vec<PathBuf> = Vec::new();
    for (file, bytes) in DEMO_FILES {
        let path = files_dir.join(file);
        std::fs::write(&path, bytes)?;
        paths.push(path);
    }
    outln!(
        "\n2. Teaching it {} files — oncall-scan.png is a scanned page, read with OCR:",
        paths.len()
    );
    super::ingest::ingest_command(
        &config,
        super::ingest::IngestArgs {
            brain: name.clone(),
            paths,
            tenant: TenantKey::local(),
            json: false,
        },
    )
    .await?;

    // Ingesting took over Ctrl-C for this process; from here it simply stops the demo.
    let stop = super::ingest::StopOnSignal::listen()?;
    for (n, question) in DEMO_QUESTIONS.iter().enumerate() {
        outln!("\n{}. Asking: {question}\n", n + 3);
        let asked = ask_command(
            &config,
            AskArgs {
                brain: name.clone(),
                question: question.to_string(),
                tenant: TenantKey::local(),
                json: false,
                sources_only: false,
                conversation: None,
            },
        );
        tokio::select! {
            asked = asked => asked?,
            () = stop.stopped.cancelled() => return Err(stop.interrupted().into()),
        }
    }
    outln!(
        "\nThat is engram's knowledge pipeline. Next: `engram brain create NAME`, \
         `engram ingest NAME FILES…`, `engram ask NAME \"question\"`, and `engram serve`."
    );
    Ok(())
}
