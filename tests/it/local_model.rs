//! The local embedding model (`embeddings.local_model`) on the real all-MiniLM-L6-v2 that
//! `scripts/model.sh` fetches (`ENGRAM_TEST_MODEL_DIR`): its vectors against
//! sentence-transformers' (tests/data/local_model/reference.json, made by reference.py beside
//! it), and hybrid retrieval through the CLI with nothing but the model.

use std::path::PathBuf;

use engram::config::{EmbeddingsConfig, Secret};
use engram::llm::{Embedder, LlmError};
use serde_json::Value;

/// The model directory scripts/test.sh names; a missing model fails the test (as a missing
/// PostgreSQL does), it is never skipped.
#[allow(
    clippy::disallowed_methods,
    reason = "tests are configured by the environment (scripts/test.sh)"
)]
pub fn model_dir() -> PathBuf {
    let dir = std::env::var("ENGRAM_TEST_MODEL_DIR").unwrap_or_else(|_| {
        panic!(
            "ENGRAM_TEST_MODEL_DIR is not set. The local embedding model is tested on the real \
             all-MiniLM-L6-v2: run scripts/test.sh (it fetches the model with \
             scripts/model.sh), or set the variable to `$(scripts/model.sh)`."
        )
    });
    PathBuf::from(dir)
}

fn config(local_model: String) -> EmbeddingsConfig {
    EmbeddingsConfig {
        base_url: String::new(),
        api_key: Secret::new(""),
        model: "text-embedding-3-small".into(),
        dimensions: 1536,
        local_model,
    }
}

fn local_embedder() -> Embedder {
    Embedder::from_config(&config(model_dir().display().to_string()))
        .unwrap()
        .expect("a local model is an embedder")
}

struct Reference {
    sentences: Vec<String>,
    vectors: Vec<Vec<f32>>,
}

fn reference() -> Reference {
    let path = crate::support::crate_dir().join("tests/data/local_model/reference.json");
    let data: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    Reference {
        sentences: serde_json::from_value(data["sentences"].clone()).unwrap(),
        vectors: serde_json::from_value(data["vectors"].clone()).unwrap(),
    }
}

fn cosine(a: &[f32], b: &[f32]) -> f64 {
    let dot: f64 = a
        .iter()
        .zip(b)
        .map(|(x, y)| f64::from(*x) * f64::from(*y))
        .sum();
    let norm = |v: &[f32]| v.iter().map(|x| f64::from(*x).powi(2)).sum::<f64>().sqrt();
    dot / (norm(a) * norm(b))
}

#[tokio::test]
async fn vectors_match_sentence_transformers_in_a_batch_and_alone() {
    let reference = reference();
    assert_eq!(reference.sentences.len(), 8);
    let embedder = local_embedder();
    assert_eq!(embedder.dimensions(), 384);
    assert_eq!(
        engram::llm::embedding_dimensions(&config(model_dir().display().to_string())).unwrap(),
        Some(384),
        "known from config.json alone"
    );
    // One batch: texts of different lengths padded together (one longer than the model reads).
    let batch = embedder.embed(&reference.sentences).await.unwrap();
    assert_eq!(batch.len(), reference.sentences.len());
    for ((sentence, expected), got) in reference
        .sentences
        .iter()
        .zip(&reference.vectors)
        .zip(&batch)
    {
        assert_eq!(got.len(), 384);
        let similarity = cosine(expected, got);
        assert!(
            similarity >= 0.999,
            "{similarity} for {sentence:?} in a batch"
        );
        let norm = got
            .iter()
            .map(|x| f64::from(*x).powi(2))
            .sum::<f64>()
            .sqrt();
        assert!((norm - 1.0).abs() < 1e-4, "normalised: {norm}");
    }
    // Alone, as a question is embedded.
    for (sentence, expected) in reference.sentences.iter().zip(&reference.vectors) {
        let got = embedder.embed_question(sentence).await.unwrap();
        let similarity = cosine(expected, &got);
        assert!(similarity >= 0.999, "{similarity} for {sentence:?} alone");
    }
    // A paraphrase lands nearer its source than an unrelated text does.
    let near = cosine(&batch[0], &batch[1]);
    let far = cosine(&batch[0], &batch[5]);
    assert!(near > far + 0.2, "paraphrase {near} vs unrelated {far}");
}

#[tokio::test]
async fn one_process_shares_one_model_and_names_it() {
    let first = local_embedder();
    let second = local_embedder();
    let (a, b) = (first.local_model().unwrap(), second.local_model().unwrap());
    assert!(std::ptr::eq(a, b), "opened once per process");
    assert!(
        first.identity().starts_with("local:") && first.identity().contains('@'),
        "{}",
        first.identity()
    );
    assert_eq!(first.identity(), second.identity());
    // Many at once (more than the queue holds) all get their vectors.
    let questions: Vec<String> = (0..100).map(|n| format!("question number {n}")).collect();
    let answers = futures_util::future::join_all(
        questions
            .iter()
            .map(|question| first.embed_question(question)),
    )
    .await;
    for answer in answers {
        assert_eq!(answer.unwrap().len(), 384);
    }
}

#[test]
fn a_model_directory_without_its_files_is_refused_with_the_reason() {
    let dir = tempfile::tempdir().unwrap();
    let error = Embedder::from_config(&config(dir.path().display().to_string())).unwrap_err();
    assert!(matches!(error, LlmError::Local(_)), "{error:?}");
    let message = error.to_string();
    assert!(
        message.contains("embeddings.local_model") && message.contains("config.json"),
        "{message}"
    );
    let missing = Embedder::from_config(&config("/nonexistent/model".into())).unwrap_err();
    assert!(
        missing.to_string().contains("/nonexistent/model"),
        "{missing}"
    );
    std::fs::write(dir.path().join("config.json"), "{\"model_type\": \"gpt2\"}").unwrap();
    std::fs::write(dir.path().join("tokenizer.json"), "{}").unwrap();
    std::fs::write(dir.path().join("model.safetensors"), "").unwrap();
    let error = Embedder::from_config(&config(dir.path().display().to_string())).unwrap_err();
    assert!(error.to_string().contains("BERT"), "{error}");
}

#[tokio::test]
async fn broken_weights_fail_each_request_with_the_reason() {
    let dir = tempfile::tempdir().unwrap();
    for file in ["config.json", "tokenizer.json"] {
        std::fs::copy(model_dir().join(file), dir.path().join(file)).unwrap();
    }
    std::fs::write(dir.path().join("model.safetensors"), [0u8; 16]).unwrap();
    let embedder = Embedder::from_config(&config(dir.path().display().to_string()))
        .unwrap()
        .unwrap();
    let error = embedder.embed_question("hello").await.unwrap_err();
    assert!(error.to_string().contains("model.safetensors"), "{error}");
    let error = embedder.embed(&["a".into(), "b".into()]).await.unwrap_err();
    assert!(matches!(error, LlmError::Local(_)), "{error:?}");
}

/// `engram ask --sources-only` with a question that shares no word with its answer.
fn sources(dir: &std::path::Path, question: &str) -> Vec<String> {
    let output =
        crate::support::engram(dir, &["ask", "--json", "--sources-only", "team", question]);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let answer: Value = serde_json::from_slice(&output.stdout).unwrap();
    answer["sources"]
        .as_array()
        .unwrap()
        .iter()
        .map(|source| source["file"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn hybrid_retrieval_finds_a_paraphrase_with_only_the_local_model() {
    let dir = tempfile::tempdir().unwrap();
    let config = |extra: &str| {
        std::fs::write(
            dir.path().join("engram.toml"),
            format!(
                "[store]\nurl = \"sqlite://{}/engram.db\"\n[ingest]\nextractor = \"{}\"\n{extra}",
                dir.path().display(),
                crate::ingest::extractor().display()
            ),
        )
        .unwrap();
    };
    config(&format!(
        "[embeddings]\nlocal_model = \"{}\"\n",
        model_dir().display()
    ));
    let engram = |args: &[&str]| crate::support::engram(dir.path(), args);
    assert!(engram(&["brain", "create", "team"]).status.success());
    let handbook = crate::support::crate_dir().join("demo/handbook.md");
    let notes = crate::support::crate_dir().join("demo/release-notes.txt");
    let output = engram(&[
        "ingest",
        "team",
        &handbook.display().to_string(),
        &notes.display().to_string(),
    ]);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let question = "Whom do I inform when I'm ill?";
    let found = sources(dir.path(), question);
    assert_eq!(
        found.first().map(String::as_str),
        Some("handbook.md"),
        "{found:?}"
    );
    // The same index searched by keywords only finds nothing: the vectors did it.
    config("");
    assert_eq!(sources(dir.path(), question), Vec::<String>::new());
}

/// The library's config for the SQLite store in `dir`, embedding with the model in `model`.
fn library_config(dir: &std::path::Path, model: &std::path::Path) -> engram::config::Config {
    let mut config = engram::config::Config::defaults();
    config.store.url =
        engram::config::StoreUrl::new(format!("sqlite://{}/engram.db", dir.display()));
    config.ingest.extractor = crate::ingest::extractor().display().to_string();
    config.embeddings.local_model = model.display().to_string();
    config
}

#[tokio::test]
async fn a_changed_model_is_recorded_searched_by_keywords_and_queued_for_re_embedding() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("engram.toml"),
        format!(
            "[store]\nurl = \"sqlite://{}/engram.db\"\n[ingest]\nextractor = \"{}\"\n\
             [embeddings]\nlocal_model = \"{}\"\n",
            dir.path().display(),
            crate::ingest::extractor().display(),
            model_dir().display()
        ),
    )
    .unwrap();
    let engram = |args: &[&str]| crate::support::engram(dir.path(), args);
    assert!(engram(&["brain", "create", "team"]).status.success());
    let handbook = crate::support::crate_dir().join("demo/handbook.md");
    assert!(engram(&["ingest", "team", &handbook.display().to_string()])
        .status
        .success());

    let config = library_config(dir.path(), &model_dir());
    let store = engram::app::open_store(&config).await.unwrap();
    let tenant = store
        .ensure_tenant(&engram::brain::TenantKey::local())
        .await
        .unwrap();
    let brain = store
        .brain_by_name(tenant, &engram::brain::BrainName::parse("team").unwrap())
        .await
        .unwrap()
        .unwrap();
    let original = local_embedder();
    assert_eq!(
        store.brain_embedding(brain.id).await.unwrap(),
        Some((original.identity(), 384)),
        "the brain records the model and width that indexed it"
    );
    assert!(store
        .stale_embeddings(Some(brain.id), &original.identity())
        .await
        .unwrap()
        .is_empty());
    let question = "Whom do I inform when I'm ill?";
    let answerer = engram::app::answerer(&config, store.clone(), Default::default())
        .await
        .unwrap();
    let found = answerer.retrieve(brain.id, question).await.unwrap();
    assert_eq!(
        found.sources.first().map(|s| s.file.as_str()),
        Some("handbook.md")
    );

    // Another model (the same files under another directory: another identity).
    let other = tempfile::tempdir().unwrap();
    let other_model = other.path().join("other-model");
    std::fs::create_dir(&other_model).unwrap();
    for file in ["config.json", "tokenizer.json", "model.safetensors"] {
        std::os::unix::fs::symlink(model_dir().join(file), other_model.join(file)).unwrap();
    }
    let changed = library_config(dir.path(), &other_model);
    let answerer = engram::app::answerer(&changed, store.clone(), Default::default())
        .await
        .unwrap();
    let embedder = answerer.embedder.clone().unwrap();
    assert_ne!(embedder.identity(), original.identity());
    let stale = store
        .stale_embeddings(None, &embedder.identity())
        .await
        .unwrap();
    assert_eq!(
        stale.len(),
        1,
        "the handbook's vectors are of the old model"
    );
    // Searches keep working: by keywords for the stale document, so the paraphrase (no word
    // in common) finds nothing while a question in its words still finds it.
    let paraphrase = answerer.retrieve(brain.id, question).await.unwrap();
    assert!(paraphrase.sources.is_empty(), "{:?}", paraphrase.sources);
    let literal = answerer
        .retrieve(brain.id, "How is vacation requested?")
        .await
        .unwrap();
    assert_eq!(
        literal.sources.first().map(|s| s.file.as_str()),
        Some("handbook.md")
    );

    let queued = engram::ingest::queue_reembedding(store.as_ref(), &embedder, None, 3)
        .await
        .unwrap();
    assert_eq!(queued, 1);
    let again = engram::ingest::queue_reembedding(store.as_ref(), &embedder, None, 3)
        .await
        .unwrap();
    assert_eq!(again, 0, "one re-embedding per document and model");
    let jobs = store
        .jobs(Some(engram::jobs::JobState::Queued), 10)
        .await
        .unwrap();
    assert!(
        jobs.iter()
            .any(|job| job.payload["document_id"] == stale[0].0 && job.payload["reindex"] == true),
        "{jobs:?}"
    );

    // Once embedded with the new model, its vectors count again. (The job would embed the
    // chunks again; the "other" model has the same weights, so its vectors are already these.)
    engram::ingest::record_embedding(store.as_ref(), &embedder, stale[0]).await;
    assert_eq!(
        store.brain_embedding(brain.id).await.unwrap(),
        Some((embedder.identity(), 384))
    );
    let found = answerer.retrieve(brain.id, question).await.unwrap();
    assert_eq!(
        found.sources.first().map(|s| s.file.as_str()),
        Some("handbook.md")
    );
    store.close().await;
}

#[test]
fn doctor_reports_the_local_model_or_what_is_wrong_with_it() {
    let dir = tempfile::tempdir().unwrap();
    let write = |model: &std::path::Path| {
        std::fs::write(
            dir.path().join("engram.toml"),
            format!(
                "[store]\nurl = \"sqlite://{}/engram.db\"\n[embeddings]\nlocal_model = \"{}\"\n",
                dir.path().display(),
                model.display()
            ),
        )
        .unwrap();
    };
    write(&model_dir());
    let output = crate::support::engram(dir.path(), &["doctor"]);
    let stdout = String::from_utf8_lossy(&output.stdout);
    let line = stdout
        .lines()
        .find(|line| line.contains("embeddings"))
        .unwrap_or_else(|| panic!("no embeddings line: {stdout}"));
    assert!(line.starts_with("[ok  ]"), "{line}");
    assert!(
        line.contains(&model_dir().canonicalize().unwrap().display().to_string())
            && line.contains("384 dimensions")
            && line.contains("a test embedding took"),
        "{line}"
    );

    let empty = tempfile::tempdir().unwrap();
    write(empty.path());
    let output = crate::support::engram(dir.path(), &["doctor"]);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        stdout
            .lines()
            .any(|line| line.contains("embeddings") && line.contains("no config.json")),
        "{stdout}"
    );
}

/// Honest abstention with the local model where its thresholds could hurt: a brain of four
/// chunks (whole handbook sections, so a question's similarity to its chunk is diluted) in
/// another domain than the benchmark's corpus, with one-word and chatty questions. What the
/// brain answers is quoted; what it does not is abstained on, naming the closest documents.
#[test]
fn a_small_brain_in_another_domain_answers_what_it_holds_and_abstains_on_the_rest() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("engram.toml"),
        format!(
            "[store]\nurl = \"sqlite://{}/engram.db\"\n[ingest]\nextractor = \"{}\"\n\
             [embeddings]\nlocal_model = \"{}\"\n",
            dir.path().display(),
            crate::ingest::extractor().display(),
            model_dir().display()
        ),
    )
    .unwrap();
    let engram = |args: &[&str]| crate::support::engram(dir.path(), args);
    assert!(engram(&["brain", "create", "team"]).status.success());
    let demo = crate::support::crate_dir().join("demo");
    let output = engram(&[
        "ingest",
        "team",
        &demo.join("handbook.md").display().to_string(),
        &demo.join("release-notes.txt").display().to_string(),
    ]);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let abstains = |question: &str| {
        let output = engram(&["ask", "--json", "team", question]);
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        let answer: Value = serde_json::from_slice(&output.stdout).unwrap();
        let text = answer["answer"].as_str().unwrap().to_string();
        (text.starts_with("I found nothing in this brain"), text)
    };
    for question in [
        "How do I request vacation?",
        "vacation",
        "receipts",
        "Hi! I'm new here, sorry if this is obvious: how many vacation days do we get a year?",
        "Who should I tell when I am sick?",
    ] {
        let (abstained, text) = abstains(question);
        assert!(!abstained, "{question}: {text}");
    }
    for question in [
        "How do I parse YAML files in Python?",
        "What is the license of the Rust compiler?",
        "What is the Wi-Fi password for the office guest network?",
        "Which team owns the billing database?",
        "What is our parental leave policy?",
        "How do I reset my VPN password?",
    ] {
        let (abstained, text) = abstains(question);
        assert!(abstained, "{question}: {text}");
        assert!(
            text.contains("The closest documents:"),
            "{question}: {text}"
        );
    }
}
