//! The knowledge pipeline end to end: the real `engram` and `engram-extract` binaries, real
//! tesseract and poppler, a real SQLite store — on the shared corpus and on hostile files.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Arc;
use std::time::Duration;

use engram::brain::{BrainName, DocumentStatus, TenantKey};
use engram::config::{Config, Sources};
use engram::index::SearchQuery;
use engram::jobs::{JobKind, JobState, RetryPolicy};
use engram::telemetry::Metrics;
use engram::worker::{self, Shutdown, WorkerOptions};
use serde_json::Value;

use crate::hostile;

/// The extractor built beside the `engram` binary (`cargo test --workspace` builds it).
pub fn extractor() -> PathBuf {
    let path = Path::new(env!("CARGO_BIN_EXE_engram"))
        .parent()
        .unwrap()
        .join("engram-extract");
    assert!(
        path.is_file(),
        "{} is missing: build it with `cargo build -p engram-extract` (scripts/test.sh runs \
         the whole workspace)",
        path.display()
    );
    path
}

fn write_config(dir: &Path, extra: &str) -> PathBuf {
    let path = dir.join("engram.toml");
    std::fs::write(
        &path,
        format!(
            "[store]\nurl = \"sqlite://{}/engram.db\"\n[ingest]\nextractor = \"{}\"\n{extra}",
            dir.display(),
            extractor().display()
        ),
    )
    .unwrap();
    path
}

/// `engram` with a config naming the extractor (written first unless the test wrote one).
fn engram(dir: &Path, args: &[&str]) -> Output {
    if !dir.join("engram.toml").exists() {
        write_config(dir, "");
    }
    crate::support::engram(dir, args)
}

fn json_lines(output: &Output) -> Vec<Value> {
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|_| panic!("not JSON: {line}")))
        .collect()
}

fn by_file(lines: &[Value]) -> HashMap<String, Value> {
    lines
        .iter()
        .map(|line| {
            let file = line["file"].as_str().unwrap();
            let name = Path::new(file)
                .file_name()
                .unwrap()
                .to_string_lossy()
                .into_owned();
            (name, line.clone())
        })
        .collect()
}

#[test]
fn every_corpus_file_ingests_and_again_is_already_known() {
    let dir = tempfile::tempdir().unwrap();
    assert!(engram(dir.path(), &["brain", "create", "corpus"])
        .status
        .success());
    let files = hostile::corpus().join("files");
    let files = files.to_str().unwrap();
    let output = engram(dir.path(), &["ingest", "--json", "corpus", files]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    let results = by_file(&json_lines(&output));
    assert_eq!(results.len(), 11, "{results:?}");
    for (name, result) in &results {
        assert_eq!(result["status"], "ingested", "{name}: {result}");
        assert!(result["chunks"].as_u64().unwrap() > 0, "{name}: {result}");
        assert!(result["error"].is_null(), "{name}: {result}");
    }
    let pages = |name: &str| results[name]["pages"].as_u64().unwrap();
    let ocr = |name: &str| results[name]["ocr_pages"].as_u64().unwrap();
    let text_pdf_pages: u64 = [
        "01_apache_license.pdf",
        "02_python_license_history.pdf",
        "03_argparse_reference.pdf",
        "04_handbook_mixed.pdf",
    ]
    .iter()
    .map(|name| pages(name))
    .sum();
    assert_eq!(
        text_pdf_pages, 17,
        "the corpus README counts 17 text-PDF pages"
    );
    for name in [
        "01_apache_license.pdf",
        "04_handbook_mixed.pdf",
        "10_faq.md",
    ] {
        assert_eq!(ocr(name), 0, "{name} has a text layer");
    }
    assert_eq!(
        (pages("05_scanned_gpl2.pdf"), ocr("05_scanned_gpl2.pdf")),
        (2, 2)
    );
    for name in [
        "06_scan_gpl3_p1.png",
        "07_scan_gpl3_p2.png",
        "08_scan_gpl3_p3.png",
    ] {
        assert_eq!(ocr(name), 1, "{name} is a scan");
    }

    let again = engram(dir.path(), &["ingest", "--json", "corpus", files]);
    assert!(again.status.success());
    let again = by_file(&json_lines(&again));
    assert!(
        again.values().all(|result| result["status"] == "known"),
        "the same bytes again are already known: {again:?}"
    );
    let info = engram(dir.path(), &["brain", "info", "--json", "corpus"]);
    let info: Value = serde_json::from_slice(&info.stdout).unwrap();
    assert_eq!(info["documents"], 11);
}

#[test]
fn hostile_files_each_fail_with_a_reason_while_the_rest_ingest() {
    let dir = tempfile::tempdir().unwrap();
    let files = dir.path().join("files");
    std::fs::create_dir(&files).unwrap();
    hostile::docx_zip_bomb(&files);
    hostile::truncated_pdf(&files);
    hostile::pdf_declaring_pages(&files, 100_000);
    hostile::png_declaring(&files, 50_000);
    hostile::random_bytes_named_pdf(&files);
    hostile::empty_file(&files);
    hostile::pdf_with_empty_page(&files);
    hostile::deeply_nested_html(&files);
    std::fs::copy(
        hostile::corpus().join("files/10_faq.md"),
        files.join("10_faq.md"),
    )
    .unwrap();

    assert!(engram(dir.path(), &["brain", "create", "docs"])
        .status
        .success());
    let output = engram(
        dir.path(),
        &["ingest", "--json", "docs", files.to_str().unwrap()],
    );
    assert_eq!(output.status.code(), Some(1), "some files failed");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("7 of 9 files failed"), "{stderr}");
    let results = by_file(&json_lines(&output));
    assert_eq!(results.len(), 9, "{results:?}");
    let reason = |name: &str| -> String {
        let result = &results[name];
        assert_eq!(result["status"], "failed", "{name}: {result}");
        let reason = result["error"].as_str().unwrap().to_string();
        assert!(
            !reason.is_empty() && reason.len() < 400,
            "{name}: {reason:?}"
        );
        reason.to_lowercase()
    };
    assert!(reason("empty.pdf").contains("empty"));
    assert!(reason("random.pdf").contains("unsupported"));
    assert!(reason("many-pages.pdf").contains("100000"));
    let huge = reason("huge.png");
    assert!(
        huge.contains("50000") || huge.contains("too large"),
        "{huge}"
    );
    let bomb = reason("bomb.docx");
    assert!(
        bomb.contains("more than") || bomb.contains("limit"),
        "{bomb}"
    );
    assert!(!reason("truncated.pdf").is_empty());
    assert!(!reason("empty-page.pdf").is_empty());
    for name in ["nested.html", "10_faq.md"] {
        assert_eq!(
            results[name]["status"], "ingested",
            "{name}: {}",
            results[name]
        );
    }

    // The reasons are also where people look later.
    let dead = engram(dir.path(), &["jobs", "--state", "dead", "--json"]);
    let dead = json_lines(&dead);
    assert!(
        dead.len() >= 6,
        "failed ingest jobs are dead-lettered: {dead:?}"
    );
    assert!(dead
        .iter()
        .all(|job| job["last_error"].as_str().is_some_and(|e| !e.is_empty())));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_extractor_killed_mid_file_is_retried_without_duplicate_chunks() {
    let dir = tempfile::tempdir().unwrap();
    // A copy under a unique name, so this test kills only its own extractor.
    let name = format!("engram-extract-killtest-{}", std::process::id());
    let program = dir.path().join(&name);
    std::fs::copy(extractor(), &program).unwrap();
    let config_path = write_config(dir.path(), "");
    let mut config = Config::load(&Sources {
        file: Some(config_path),
        ..Sources::default()
    })
    .unwrap();
    config.ingest.extractor = program.display().to_string();
    let store = engram::store::open(&config.store).await.unwrap();
    let tenant = store.ensure_tenant(&TenantKey::local()).await.unwrap();
    let brain = store
        .create_brain(tenant, &BrainName::parse("scans").unwrap())
        .await
        .unwrap();
    let bytes = std::fs::read(hostile::corpus().join("files/05_scanned_gpl2.pdf")).unwrap();
    let submitted = engram::ingest::submit(
        store.as_ref(),
        &config.ingest,
        3,
        engram::ingest::NewFile::new(brain.id, "05_scanned_gpl2.pdf", &bytes),
    )
    .await
    .unwrap();
    let engram::ingest::Submitted::Queued { document, job } = submitted else {
        panic!("a new file is queued")
    };
    let pipeline = engram::app::ingest_pipeline(&config, store.clone())
        .await
        .unwrap();
    let index = pipeline.index.clone();
    let shutdown = Shutdown::default();
    let workers = tokio::spawn(worker::run(
        store.clone(),
        Arc::new(pipeline),
        WorkerOptions {
            kind: JobKind::Ingest,
            concurrency: 1,
            lease: Duration::from_secs(30),
            retry: RetryPolicy {
                base: Duration::from_millis(100),
                max: Duration::from_secs(1),
            },
            name: "killtest".into(),
            idle_recheck: Duration::from_secs(1),
        },
        shutdown.clone(),
        Arc::new(Metrics::default()),
    ));

    // Wait for the extractor to be busy with the scan, then kill it.
    let killed = crate::support::eventually(Duration::from_secs(60), || async {
        Command::new("pkill")
            .args(["-KILL", "-f", &name])
            .status()
            .is_ok_and(|status| status.success())
    })
    .await;
    assert!(killed, "the extractor was seen and killed");

    let settled = crate::support::eventually(Duration::from_secs(120), || async {
        let state = store.job(job).await.unwrap().unwrap().state;
        matches!(state, JobState::Done | JobState::Dead)
    })
    .await;
    shutdown.stop_claiming.cancel();
    shutdown.abandon.cancel();
    workers.await.unwrap();
    assert!(settled, "the job ended");
    let finished = store.job(job).await.unwrap().unwrap();
    assert_eq!(
        finished.state,
        JobState::Done,
        "retried and done: {finished:?}"
    );
    assert_eq!(finished.attempts, 2, "the killed attempt counted once");
    let document = store.document(document.id).await.unwrap().unwrap();
    assert_eq!(document.status, DocumentStatus::Indexed);
    assert_eq!(document.pages, 2);
    let stats = store.brain_stats(brain.id).await.unwrap();
    assert_eq!(
        stats.chunks,
        u64::from(document.chunks),
        "no duplicate chunks"
    );
    let hits = index
        .search(
            brain.id,
            &SearchQuery {
                text: "General Public License".into(),
                vector: None,
                limit: 50,
                hidden: Vec::new(),
            },
        )
        .await
        .unwrap();
    assert!(!hits.is_empty());
    assert!(hits.len() as u32 <= document.chunks);
}

#[test]
fn extract_shows_what_ocr_read_and_why_a_file_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let scan = hostile::corpus().join("files/06_scan_gpl3_p1.png");
    let output = engram(dir.path(), &["extract", "--json", scan.to_str().unwrap()]);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let pages = json_lines(&output);
    assert_eq!(pages.len(), 1);
    assert_eq!(pages[0]["page"], 1);
    assert_eq!(pages[0]["ocr"], true);
    assert!(pages[0]["text"]
        .as_str()
        .unwrap()
        .contains("GENERAL PUBLIC LICENSE"));

    let text = engram(dir.path(), &["extract", scan.to_str().unwrap()]);
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(text.contains("page 1 · OCR"), "{text}");

    let random = hostile::random_bytes_named_pdf(dir.path());
    let refused = engram(dir.path(), &["extract", random.to_str().unwrap()]);
    assert_eq!(refused.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(stderr.contains("unsupported"), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
}

#[test]
fn spreadsheets_and_slides_are_cited_by_sheet_and_slide() {
    use crate::office::{
        self,
        Value::{Date, Number, Text},
    };
    let dir = tempfile::tempdir().unwrap();
    let files = dir.path().join("files");
    std::fs::create_dir(&files).unwrap();
    let workbook = office::xlsx(&[
        (
            "Summary",
            vec![vec![Text(
                "Quarterly spending overview for the operations team",
            )]],
        ),
        (
            "Travel",
            vec![
                vec![
                    Text("Item"),
                    Text("Amount"),
                    Text("Approver"),
                    Text("Booked"),
                ],
                vec![
                    Text("Train to Lyon"),
                    Number(120.0),
                    Text("Marta"),
                    Date(45352.0),
                ],
                vec![
                    Text("Taxi to the airport"),
                    Number(45.5),
                    Text("Dana Whitfield"),
                    Date(45353.0),
                ],
            ],
        ),
        (
            "Hardware",
            vec![
                vec![Text("Item"), Text("Amount")],
                vec![Text("Laptop stand"), Number(80.0)],
            ],
        ),
    ]);
    std::fs::write(files.join("budget.xlsx"), workbook).unwrap();
    let deck = office::pptx(&[
        (office::shape("ctrTitle", &["Project Falcon kickoff"]), None),
        (
            office::shape("title", &["Timeline"]) + &office::shape("body", &["Beta ships in May"]),
            None,
        ),
        (
            office::shape("body", &["Vendor delays could slip the beta"])
                + &office::shape("title", &["Risks"]),
            Some("The escalation contact for vendor problems is Priya Raman."),
        ),
    ]);
    std::fs::write(files.join("kickoff.pptx"), deck).unwrap();

    assert!(engram(dir.path(), &["brain", "create", "ops"])
        .status
        .success());
    let output = engram(
        dir.path(),
        &["ingest", "--json", "ops", files.to_str().unwrap()],
    );
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let results = by_file(&json_lines(&output));
    assert_eq!(results["budget.xlsx"]["status"], "ingested", "{results:?}");
    assert_eq!(results["budget.xlsx"]["pages"], 3);
    assert_eq!(results["kickoff.pptx"]["status"], "ingested", "{results:?}");
    assert_eq!(results["kickoff.pptx"]["pages"], 3);

    let first_source = |question: &str| -> Value {
        let output = engram(
            dir.path(),
            &["ask", "--json", "--sources-only", "ops", question],
        );
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        let answer: Value = serde_json::from_slice(&output.stdout).unwrap();
        answer["sources"][0].clone()
    };
    let taxi = first_source("Who approved the taxi to the airport?");
    assert_eq!(taxi["file"], "budget.xlsx", "{taxi}");
    assert_eq!(taxi["page"], 2, "the Travel sheet is the second: {taxi}");
    assert_eq!(taxi["heading"], "Travel", "{taxi}");
    let escalation = first_source("Who is the escalation contact for vendor problems?");
    assert_eq!(escalation["file"], "kickoff.pptx", "{escalation}");
    assert_eq!(escalation["page"], 3, "the third slide shown: {escalation}");
    // The slide is one chunk with its notes, cited by the slide's title.
    assert_eq!(escalation["heading"], "Risks", "{escalation}");

    // Without an LLM the answer quotes the row with its headers, and the note.
    let output = engram(
        dir.path(),
        &[
            "ask",
            "--json",
            "ops",
            "Who approved the taxi to the airport?",
        ],
    );
    let answer: Value = serde_json::from_slice(&output.stdout).unwrap();
    let text = answer["answer"].as_str().unwrap();
    assert!(
        text.contains("Item: Taxi to the airport; Amount: 45.5; Approver: Dana Whitfield; Booked: 2024-03-02."),
        "{text}"
    );

    let extracted = engram(
        dir.path(),
        &[
            "extract",
            "--json",
            files.join("kickoff.pptx").to_str().unwrap(),
        ],
    );
    assert!(extracted.status.success());
    let pages = json_lines(&extracted);
    let texts: Vec<&str> = pages.iter().map(|p| p["text"].as_str().unwrap()).collect();
    assert_eq!(
        texts,
        [
            "# Project Falcon kickoff",
            "# Timeline\n\nBeta ships in May",
            "# Risks\n\nVendor delays could slip the beta\n\n## Speaker notes\n\nThe escalation contact for vendor problems is Priya Raman."
        ]
    );
}

fn demo_file(name: &str) -> String {
    crate::support::crate_dir()
        .join("demo")
        .join(name)
        .display()
        .to_string()
}

#[test]
fn ask_answers_from_its_own_brain_with_sources() {
    let dir = tempfile::tempdir().unwrap();
    for brain in ["team", "other"] {
        assert!(engram(dir.path(), &["brain", "create", brain])
            .status
            .success());
    }
    let handbook = demo_file("handbook.md");
    let scan = demo_file("oncall-scan.png");
    let notes = demo_file("release-notes.txt");
    assert!(engram(dir.path(), &["ingest", "team", &handbook, &scan])
        .status
        .success());
    assert!(engram(dir.path(), &["ingest", "other", &notes])
        .status
        .success());

    let output = engram(
        dir.path(),
        &["ask", "--json", "team", "How do I request vacation?"],
    );
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let answer: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert!(
        answer["answer"].as_str().unwrap().contains("HR portal"),
        "{answer}"
    );
    assert_eq!(answer["sources"][0]["n"], 1);
    assert_eq!(answer["sources"][0]["file"], "handbook.md");
    assert!(answer["usage"].is_null());

    let output = engram(
        dir.path(),
        &["ask", "--json", "team", "Who carries the pager?"],
    );
    let answer: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(
        answer["sources"][0]["file"], "oncall-scan.png",
        "OCR'd text is searchable"
    );

    let only = engram(
        dir.path(),
        &["ask", "--json", "--sources-only", "team", "vacation"],
    );
    let only: Value = serde_json::from_slice(&only.stdout).unwrap();
    assert!(only.get("answer").is_none());
    assert!(!only["sources"].as_array().unwrap().is_empty());

    let isolated = engram(
        dir.path(),
        &["ask", "--json", "other", "How do I request vacation?"],
    );
    let isolated: Value = serde_json::from_slice(&isolated.stdout).unwrap();
    assert_eq!(
        isolated["sources"],
        serde_json::json!([]),
        "another brain's files never show"
    );
    assert!(isolated["answer"]
        .as_str()
        .unwrap()
        .contains("found nothing"));
}

#[test]
fn the_demo_runs_offline_end_to_end() {
    let dir = tempfile::tempdir().unwrap();
    let output = engram(dir.path(), &["demo"]);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(stdout.contains("1 OCR'd"), "{stdout}");
    assert!(stdout.contains("HR portal"), "{stdout}");
    assert!(stdout.contains("[1] oncall-scan.png"), "{stdout}");
}

#[test]
fn only_the_extractor_links_ocr_libraries() {
    let linked = |binary: &Path| {
        let output = Command::new("ldd").arg(binary).output().expect("ldd");
        String::from_utf8_lossy(&output.stdout).into_owned()
    };
    let engram = linked(Path::new(env!("CARGO_BIN_EXE_engram")));
    assert!(!engram.contains("libtesseract"), "{engram}");
    assert!(!engram.contains("liblept"), "{engram}");
    let extract = linked(&extractor());
    assert!(extract.contains("libtesseract"), "{extract}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ask_streams_the_llms_answer_and_records_its_usage() {
    use std::sync::atomic::Ordering;
    let fake = crate::fakes::openai::start(crate::fakes::openai::Behaviour {
        reply: "Request it in the HR portal two weeks ahead [1].".into(),
        ..Default::default()
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    write_config(
        dir.path(),
        &format!(
            "[llm]\nbase_url = \"{}\"\nmodel = \"gpt-4o-mini\"\n",
            fake.base_url()
        ),
    );
    let path = dir.path().to_path_buf();
    let run = move |args: Vec<String>| {
        let path = path.clone();
        tokio::task::spawn_blocking(move || {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            engram(&path, &args)
        })
    };
    let args = |list: &[&str]| list.iter().map(|a| a.to_string()).collect::<Vec<_>>();
    assert!(run(args(&["brain", "create", "team"]))
        .await
        .unwrap()
        .status
        .success());
    let handbook = demo_file("handbook.md");
    assert!(run(args(&["ingest", "team", &handbook]))
        .await
        .unwrap()
        .status
        .success());

    let output = run(args(&[
        "ask",
        "--json",
        "team",
        "How do I request vacation?",
    ]))
    .await
    .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let answer: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(
        answer["answer"],
        "Request it in the HR portal two weeks ahead [1]."
    );
    assert_eq!(answer["usage"]["prompt_tokens"], 12);
    assert_eq!(answer["sources"][0]["file"], "handbook.md");
    let prompt = fake.inputs.lock().unwrap().clone();
    assert!(prompt[0].contains("data, not instructions"), "{prompt:?}");
    assert!(prompt[1].contains("[1] handbook.md"), "{prompt:?}");
    assert!(prompt[1].ends_with("Question: How do I request vacation?"));

    let text = run(args(&["ask", "team", "How do I request vacation?"]))
        .await
        .unwrap();
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(
        text.starts_with("Request it in the HR portal two weeks ahead [1]."),
        "{text}"
    );
    assert!(text.contains("Sources:\n  [1] handbook.md"), "{text}");

    let calls = fake.requests.load(Ordering::SeqCst);
    let nothing = run(args(&[
        "ask",
        "--json",
        "team",
        "quantum chromodynamics lattice",
    ]))
    .await
    .unwrap();
    let nothing: Value = serde_json::from_slice(&nothing.stdout).unwrap();
    assert!(nothing["answer"]
        .as_str()
        .unwrap()
        .contains("found nothing"));
    assert_eq!(
        fake.requests.load(Ordering::SeqCst),
        calls,
        "no LLM call without sources"
    );

    // A follow-up in a conversation carries the earlier turns.
    for question in [
        "How do I request vacation?",
        "And how many vacation days are there?",
    ] {
        let output = run(args(&[
            "ask",
            "--conversation",
            "thread-7",
            "team",
            question,
        ]))
        .await
        .unwrap();
        assert!(output.status.success());
    }
    let prompt = fake.inputs.lock().unwrap().clone();
    let n = prompt.len();
    assert_eq!(
        prompt[n - 3],
        "How do I request vacation?",
        "the earlier question"
    );
    assert_eq!(
        prompt[n - 2],
        "Request it in the HR portal two weeks ahead [1]."
    );
    assert!(prompt[n - 1].ends_with("Question: And how many vacation days are there?"));

    let store = engram::store::open(&crate::support::store_config(&format!(
        "sqlite://{}/engram.db",
        dir.path().display()
    )))
    .await
    .unwrap();
    let tenant = store
        .find_tenant(&TenantKey::local())
        .await
        .unwrap()
        .unwrap();
    let totals = store.usage_totals(tenant, 0).await.unwrap();
    assert_eq!(totals.len(), 1);
    assert_eq!((totals[0].calls, totals[0].prompt_tokens), (4, 48));
    assert!(totals[0].cost_micros > 0, "priced from llm.prices");
}
