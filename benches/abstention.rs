//! Abstention benchmark: how often the answer without an LLM says "found nothing" for questions
//! whose answer is in no document of the shared corpus, and how often it wrongly does so for
//! questions it can answer. The corpus is ingested by the real `engram` (beside this benchmark's
//! own build: `target/<profile>/engram`), then every question of
//! `benches/questions/abstention.jsonl` is answered in process by `Answerer` with no LLM, as
//! `engram ask` would. Each question is in the `tune` half (the rule was chosen on it) or the
//! `test` half (only reported); kinds are `literal` (the documents' words), `paraphrase`
//! (other words), `unanswerable` (`shares_words` for near misses) and `stress` (one-word and
//! chatty questions, where a coverage rule could hurt). Keyword-only, or hybrid with
//! `--local-model DIR` (the corpus embedded by that local model); with the model it also
//! reports retrieval recall@1 and @5 of the answerable questions (an expected file among the
//! first 1 or 5 files retrieved), keyword-only and hybrid side by side.
//!
//! ```text
//! cargo build --workspace && cargo bench --profile dev --bench abstention [-- --list] [-- --local-model "$(scripts/model.sh)"]
//! ```
//! (or a release build and plain `cargo bench --bench abstention`). `--list` prints every
//! question's outcome. Results: `benches/RESULTS.md`.
#![allow(clippy::print_stdout)]

#[allow(dead_code)]
mod support;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use engram::answer::evidence::{MEANING, MIN_COVERAGE, RELATED, WORDS_WITH_MEANING};
use engram::answer::extractive::quotes;
use engram::answer::Evidence;
use engram::answer::{retrieve, Answerer, Provenance, Question, RetrievalOptions};
use engram::brain::{BrainName, TenantKey};
use engram::config::{Config, StoreUrl};
use serde_json::Value;

/// The `engram` binary of the profile this benchmark was built with.
fn engram_binary() -> PathBuf {
    let exe = std::env::current_exe().expect("own path");
    let profile = exe
        .parent()
        .and_then(Path::parent)
        .expect("target/<profile>/deps/…");
    let path = profile.join("engram");
    assert!(
        path.is_file(),
        "{} is missing: run `cargo build --workspace` (same profile) first",
        path.display()
    );
    path
}

fn run(binary: &Path, config: &Path, args: &[&str]) -> Result<String, String> {
    let output = Command::new(binary)
        .arg("--config")
        .arg(config)
        .args(args)
        .output()
        .map_err(|error| error.to_string())?;
    if !output.status.success() {
        return Err(String::from_utf8_lossy(&output.stderr).into_owned());
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

#[derive(Debug, Default, Clone, Copy)]
struct Tally {
    questions: usize,
    abstained: usize,
    /// Answered questions whose first quoted source is one of the expected files.
    right_file: usize,
}

fn percent(part: usize, whole: usize) -> String {
    if whole == 0 {
        return "—".into();
    }
    format!("{:.0}%", 100.0 * part as f64 / whole as f64)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let list = std::env::args().any(|arg| arg == "--list");
    let args: Vec<String> = std::env::args().collect();
    let local_model = args
        .iter()
        .position(|arg| arg == "--local-model")
        .and_then(|i| args.get(i + 1))
        .cloned();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(bench(list, local_model))
}

/// Answerable questions of a kind and half: how many, and how many had an expected file
/// first, or among the first five files, keyword-only and hybrid.
#[derive(Debug, Default, Clone, Copy)]
struct Recall {
    questions: usize,
    keyword_at_1: usize,
    keyword_at_5: usize,
    hybrid_at_1: usize,
    hybrid_at_5: usize,
}

/// The 1-based position of the first expected file among the distinct files retrieved.
fn file_rank(sources: &[engram::answer::Source], expected: &[&str]) -> Option<usize> {
    let mut files: Vec<&str> = Vec::new();
    for source in sources {
        if !files.contains(&source.file.as_str()) {
            files.push(&source.file);
        }
    }
    files
        .iter()
        .position(|file| expected.contains(file))
        .map(|i| i + 1)
}

async fn bench(list: bool, local_model: Option<String>) -> Result<(), Box<dyn std::error::Error>> {
    let binary = engram_binary();
    let extractor = binary.with_file_name("engram-extract");
    let dir = tempfile::tempdir()?;
    let url = format!("sqlite://{}/engram.db", dir.path().display());
    let config_path = dir.path().join("engram.toml");
    std::fs::write(
        &config_path,
        format!(
            "[store]\nurl = \"{url}\"\n[ingest]\nextractor = \"{}\"\n{}",
            extractor.display(),
            local_model
                .as_ref()
                .map(|model| format!("[embeddings]\nlocal_model = \"{model}\"\n"))
                .unwrap_or_default()
        ),
    )?;
    let corpus = support::crate_dir().join("../shared/corpus/files");
    run(&binary, &config_path, &["brain", "create", "corpus"])?;
    let ingested = run(
        &binary,
        &config_path,
        &["ingest", "corpus", corpus.to_str().ok_or("corpus path")?],
    )?;
    let files = ingested
        .lines()
        .filter(|l| l.starts_with("ingested"))
        .count();

    let mut config = Config::defaults();
    config.store.url = StoreUrl::new(&url);
    config.ingest.extractor = extractor.display().to_string();
    config.llm.base_url.clear();
    config.embeddings.base_url.clear();
    config.embeddings.local_model = local_model.clone().unwrap_or_default();
    let store = engram::app::open_store(&config).await?;
    let tenant = store.ensure_tenant(&TenantKey::local()).await?;
    let brain = store
        .brain_by_name(tenant, &BrainName::parse("corpus")?)
        .await?
        .ok_or("no corpus brain")?;
    let answerer: Answerer =
        engram::app::answerer(&config, store.clone(), Default::default()).await?;

    let questions =
        std::fs::read_to_string(support::crate_dir().join("benches/questions/abstention.jsonl"))?;
    let mut tallies: BTreeMap<(String, String), Tally> = BTreeMap::new();
    let mut recall: BTreeMap<(String, String), Recall> = BTreeMap::new();
    // Per question: half, whether it is answerable, its evidence, and whether it would be
    // abstained on whatever the thresholds (nothing retrieved, no sentence to quote).
    let mut sweep: Vec<(String, bool, Evidence, bool)> = Vec::new();
    for line in questions.lines().filter(|line| !line.trim().is_empty()) {
        let question: Value = serde_json::from_str(line)?;
        let text = question["question"].as_str().ok_or("question")?;
        let split = question["split"].as_str().ok_or("split")?.to_string();
        let mut kind = question["kind"].as_str().ok_or("kind")?.to_string();
        if question["shares_words"] == true {
            kind.push_str(" (near miss)");
        }
        let expected: Vec<&str> = question["files"]
            .as_array()
            .map(|files| files.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        let answered = answerer
            .answer(
                Question {
                    brain: &brain,
                    user: "bench",
                    text,
                    conversation: None,
                    platform: "cli",
                    queue_wait: std::time::Duration::ZERO,
                    channels: ["", ""],
                    attachments: &[],
                },
                |_| {},
            )
            .await?;
        let abstained = answered.provenance == Provenance::NothingFound;
        let first_cited = answered.sources.iter().find(|s| s.cited);
        let right = first_cited.is_some_and(|s| expected.contains(&s.file.as_str()));
        let keyword_only = retrieve(
            answerer.index.as_ref(),
            None,
            brain.id,
            text,
            RetrievalOptions::default(),
        )
        .await?;
        // What the answer used: hybrid with the model, else the keyword-only retrieval.
        let retrieved = if local_model.is_some() {
            answerer.retrieve(brain.id, text).await?
        } else {
            keyword_only.clone()
        };
        if local_model.is_some() && !expected.is_empty() {
            let keyword = file_rank(&keyword_only.sources, &expected);
            let hybrid = file_rank(&retrieved.sources, &expected);
            for split in [split.clone(), "all".to_string()] {
                let r = recall.entry((kind.clone(), split)).or_default();
                r.questions += 1;
                r.keyword_at_1 += usize::from(keyword == Some(1));
                r.keyword_at_5 += usize::from(keyword.is_some_and(|rank| rank <= 5));
                r.hybrid_at_1 += usize::from(hybrid == Some(1));
                r.hybrid_at_5 += usize::from(hybrid.is_some_and(|rank| rank <= 5));
            }
        }
        let evidence = retrieved.evidence;
        sweep.push((
            split.clone(),
            !kind.starts_with("unanswerable"),
            evidence,
            quotes(text, &retrieved.sources).is_none(),
        ));
        if list {
            println!(
                "{:4} {:5} {:24} coverage {:.2} similarity {} {} {}",
                question["id"].as_str().unwrap_or(""),
                split,
                kind,
                evidence.coverage,
                evidence
                    .similarity
                    .map_or("—".to_string(), |s| format!("{s:.2}")),
                if abstained {
                    format!(
                        "ABSTAINED (retrieved first: {})",
                        answered
                            .sources
                            .first()
                            .map_or("nothing", |s| s.file.as_str())
                    )
                } else {
                    format!(
                        "quoted {}",
                        first_cited.map_or("nothing", |s| s.file.as_str())
                    )
                },
                text
            );
        }
        for split in [split.clone(), "all".to_string()] {
            let tally = tallies.entry((kind.clone(), split)).or_default();
            tally.questions += 1;
            tally.abstained += usize::from(abstained);
            tally.right_file += usize::from(right);
        }
    }

    if !recall.is_empty() {
        println!(
            "\nRetrieval of answerable questions: an expected file first (@1) or among the \
             first five files (@5); keyword-only vs hybrid with the local model.\n"
        );
        println!("| kind | half | questions | keyword @1 | hybrid @1 | keyword @5 | hybrid @5 |");
        println!("|---|---|---|---|---|---|---|");
        for ((kind, split), r) in &recall {
            println!(
                "| {kind} | {split} | {} | {} | {} | {} | {} |",
                r.questions,
                percent(r.keyword_at_1, r.questions),
                percent(r.hybrid_at_1, r.questions),
                percent(r.keyword_at_5, r.questions),
                percent(r.hybrid_at_5, r.questions)
            );
        }
    }
    println!(
        "\nAbstention without an LLM, {} retrieval: {files} corpus files, {} \
         questions.\n",
        if local_model.is_some() {
            "hybrid (local model)"
        } else {
            "keyword-only"
        },
        tallies
            .iter()
            .filter(|((_, split), _)| split == "all")
            .map(|(_, t)| t.questions)
            .sum::<usize>()
    );
    println!("| kind | half | questions | abstained | answered, first quote from the right file |");
    println!("|---|---|---|---|---|");
    for ((kind, split), tally) in &tallies {
        println!(
            "| {kind} | {split} | {} | {} ({}) | {} |",
            tally.questions,
            tally.abstained,
            percent(tally.abstained, tally.questions),
            if kind.starts_with("unanswerable") {
                "—".to_string()
            } else {
                format!("{}", tally.right_file)
            }
        );
    }
    for split in ["tune", "test", "all"] {
        let sum = |pick: &dyn Fn(&str) -> bool| {
            tallies
                .iter()
                .filter(|((kind, s), _)| s == split && pick(kind))
                .fold(Tally::default(), |mut acc, (_, t)| {
                    acc.questions += t.questions;
                    acc.abstained += t.abstained;
                    acc
                })
        };
        let unanswerable = sum(&|kind| kind.starts_with("unanswerable"));
        let answerable = sum(&|kind| !kind.starts_with("unanswerable"));
        println!(
            "\n{split}: unanswerable abstained {}/{} ({}, target ≥ 80%); answerable falsely \
             abstained {}/{} ({}, target ≤ 5%)",
            unanswerable.abstained,
            unanswerable.questions,
            percent(unanswerable.abstained, unanswerable.questions),
            answerable.abstained,
            answerable.questions,
            percent(answerable.abstained, answerable.questions)
        );
    }
    // Unanswerable abstained / answerable falsely abstained in one half, when a question is
    // answered if `answers` says so of its evidence.
    let cell = |half: &str, answers: &dyn Fn(&Evidence) -> bool| {
        let (mut unanswerable, mut abstained, mut answerable, mut falsely) = (0, 0, 0, 0);
        for (split, answerable_question, evidence, unquotable) in &sweep {
            if split != half {
                continue;
            }
            let abstains = *unquotable || !answers(evidence);
            if *answerable_question {
                answerable += 1;
                falsely += usize::from(abstains);
            } else {
                unanswerable += 1;
                abstained += usize::from(abstains);
            }
        }
        format!(
            "{} / {}",
            percent(abstained, unanswerable),
            percent(falsely, answerable)
        )
    };
    println!(
        "\nThe same questions with words alone at other coverage thresholds (the rule uses \
         {MIN_COVERAGE} without a vector): unanswerable abstained / answerable falsely \
         abstained.\n"
    );
    println!("| coverage | tune | test |");
    println!("|---|---|---|");
    for threshold in [0.2f32, 0.25, 0.3, 0.35, 0.4, 0.45, 0.5] {
        let words = |evidence: &Evidence| evidence.coverage >= threshold;
        println!(
            "| {threshold:.2} | {} | {} |",
            cell("tune", &words),
            cell("test", &words)
        );
    }
    if local_model.is_some() {
        println!(
            "\nWith the vector at other similarity thresholds (the rule: similarity ≥ {MEANING}, \
             or ≥ {RELATED} with coverage ≥ {WORDS_WITH_MEANING}, or every word there), tune | \
             test.\n"
        );
        println!("| close in meaning \\ related | 0.20 | 0.25 | 0.30 |");
        println!("|---|---|---|---|");
        for meaning in [0.35f32, 0.40, 0.45, 0.50] {
            let row: Vec<String> = [0.20f32, 0.25, 0.30]
                .iter()
                .map(|&related| {
                    let rule = |evidence: &Evidence| {
                        let similarity = evidence.similarity.unwrap_or(0.0);
                        similarity >= meaning
                            || (evidence.coverage >= WORDS_WITH_MEANING && similarity >= related)
                            || evidence.coverage >= 0.999
                    };
                    format!("{} \\| {}", cell("tune", &rule), cell("test", &rule))
                })
                .collect();
            println!("| {meaning:.2} | {} |", row.join(" | "));
        }
    }
    store.close().await;
    Ok(())
}
