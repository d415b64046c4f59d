//! Versions of a file, end to end: a changed file replaces its old version through the CLI (the
//! real binaries on SQLite and the embedded index) and through the ingest pipeline on
//! PostgreSQL with a real Qdrant; `engram brain docs`, `forget` and `reindex`.

use std::path::Path;
use std::process::Output;
use std::sync::Arc;
use std::time::Duration;

use engram::brain::{BrainName, DocumentStatus, TenantKey};
use engram::config::{Config, Secret};
use engram::index::{Index, QdrantIndex, QdrantOptions, SearchQuery};
use engram::ingest::chunk::ChunkOptions;
use engram::ingest::sandbox::Sandbox;
use engram::ingest::{self, documents, NewFile, Pipeline, Submitted};
use engram::jobs::JobKind;
use engram::store::Store;
use engram::worker::JobHandler;
use serde_json::Value;

use crate::qdrant_server::TestCollection;
use crate::support::TestDb;

/// Writes the config: SQLite in `dir`, the extractor, and embeddings from `embeddings` (a fake
/// OpenAI-compatible server's URL) when given.
fn configure(dir: &Path, embeddings: Option<&str>) {
    let mut config = format!(
        "[store]\nurl = \"sqlite://{}/engram.db\"\n[ingest]\nextractor = \"{}\"\n",
        dir.display(),
        crate::ingest::extractor().display()
    );
    if let Some(url) = embeddings {
        config.push_str(&format!(
            "[embeddings]\nbase_url = \"{url}\"\nmodel = \"test-embedder\"\ndimensions = 64\n"
        ));
    }
    std::fs::write(dir.join("engram.toml"), config).unwrap();
}

fn engram(dir: &Path, args: &[&str]) -> Output {
    crate::support::engram(dir, args)
}

fn ok(output: &Output) -> String {
    assert!(
        output.status.success(),
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn json_lines(text: &str) -> Vec<Value> {
    text.lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|_| panic!("not JSON: {line}")))
        .collect()
}

const TWO: &str = "# Vacation\n\nEveryone gets two weeks of paid vacation per year.\n";
const FOUR: &str = "# Vacation\n\nEveryone gets four weeks of paid vacation per year.\n";
const TEN: &str = "# Vacation\n\nEveryone gets ten weeks of paid vacation per year.\n";

#[test]
fn cli_a_changed_file_replaces_its_old_version_and_can_be_forgotten() {
    let fakes = tokio::runtime::Runtime::new().unwrap();
    let embeddings = fakes.block_on(crate::fakes::openai::start(Default::default()));
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path();
    configure(home, Some(&embeddings.base_url()));
    ok(&engram(home, &["brain", "create", "handbook"]));
    let file = home.join("vacation.md");
    let path = file.to_str().unwrap();

    std::fs::write(&file, TWO).unwrap();
    let first = json_lines(&ok(&engram(home, &["ingest", "--json", "handbook", path])));
    assert_eq!(first[0]["status"], "ingested", "{first:?}");
    std::fs::write(&file, FOUR).unwrap();
    let second = json_lines(&ok(&engram(home, &["ingest", "--json", "handbook", path])));
    assert_eq!(second[0]["status"], "ingested", "{second:?}");
    let again = json_lines(&ok(&engram(home, &["ingest", "--json", "handbook", path])));
    assert_eq!(again[0]["status"], "known", "{again:?}");

    let ask = |question: &str| {
        let answer = json_lines(&ok(&engram(home, &["ask", "--json", "handbook", question])));
        answer[0].clone()
    };
    let answer = ask("how many weeks of paid vacation per year?");
    let text = answer["answer"].as_str().unwrap();
    assert!(text.contains("four weeks"), "{answer}");
    assert!(!text.contains("two weeks"), "{answer}");
    let sources = answer["sources"].as_array().unwrap();
    assert_eq!(
        sources.len(),
        1,
        "one source, not two identical ones: {answer}"
    );

    let docs = json_lines(&ok(&engram(home, &["brain", "docs", "--json", "handbook"])));
    assert_eq!(docs.len(), 1, "{docs:?}");
    let doc = &docs[0];
    assert_eq!(
        (
            &doc["file"],
            &doc["version"],
            &doc["status"],
            &doc["chunks"]
        ),
        (
            &Value::from("vacation.md"),
            &Value::from(2),
            &Value::from("indexed"),
            &Value::from(1)
        ),
        "{doc}"
    );
    assert_eq!(doc["added_by"], "local");
    let earlier = doc["earlier_versions"].as_array().unwrap();
    assert_eq!(earlier.len(), 1, "{doc}");
    assert_eq!(earlier[0]["version"], 1);
    assert_eq!(earlier[0]["status"], "indexed");
    assert_eq!(
        earlier[0]["sha256"].as_str().unwrap(),
        engram::ingest::sha256_hex(TWO.as_bytes())
    );
    let table = ok(&engram(home, &["brain", "docs", "handbook"]));
    assert!(table.starts_with("FILE"), "{table}");
    assert!(
        table.lines().any(|line| line.starts_with("vacation.md")
            && line.contains("2 (+1)")
            && line.contains("indexed")
            && line.ends_with("shell")),
        "{table}"
    );

    let info = ok(&engram(home, &["brain", "info", "handbook"]));
    assert!(info.contains("versions   1 earlier version kept"), "{info}");

    // Re-indexing embeds the stored chunks again and keeps the brain answering the same.
    let embedded_before = embeddings.inputs.lock().unwrap().len();
    let reindexed = ok(&engram(home, &["brain", "reindex", "--wait", "handbook"]));
    assert!(reindexed.contains("re-indexed 1 document"), "{reindexed}");
    let inputs = embeddings.inputs.lock().unwrap().clone();
    assert!(
        inputs[embedded_before..]
            .iter()
            .any(|input| input.contains("four weeks")),
        "the chunk was embedded again: {inputs:#?}"
    );
    let answer = ask("how many weeks of paid vacation per year?");
    assert!(
        answer["answer"].as_str().unwrap().contains("four weeks"),
        "{answer}"
    );

    let forgot = ok(&engram(
        home,
        &["brain", "forget", "handbook", "vacation.md"],
    ));
    assert!(
        forgot.contains("forgot vacation.md from brain `handbook`: 1 document, 1 earlier version"),
        "{forgot}"
    );
    assert_eq!(
        ok(&engram(home, &["brain", "docs", "--json", "handbook"])),
        ""
    );
    let answer = ask("how many weeks of paid vacation per year?");
    assert!(answer["sources"].as_array().unwrap().is_empty(), "{answer}");
    let again = engram(home, &["brain", "forget", "handbook", "vacation.md"]);
    assert!(!again.status.success());
    assert!(
        String::from_utf8_lossy(&again.stderr).contains("has no file `vacation.md`"),
        "{again:?}"
    );
    // Forgotten means gone: the same bytes are learned again, as version 1.
    let relearned = json_lines(&ok(&engram(home, &["ingest", "--json", "handbook", path])));
    assert_eq!(relearned[0]["status"], "ingested", "{relearned:?}");
    let docs = json_lines(&ok(&engram(home, &["brain", "docs", "--json", "handbook"])));
    assert_eq!(docs[0]["version"], 1, "{docs:?}");
}

#[test]
fn cli_reindex_without_embeddings_says_there_is_nothing_to_do() {
    let dir = tempfile::tempdir().unwrap();
    configure(dir.path(), None);
    ok(&engram(dir.path(), &["brain", "create", "handbook"]));
    let refused = engram(dir.path(), &["brain", "reindex", "handbook"]);
    assert!(!refused.status.success());
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("nothing to re-embed"),
        "{refused:?}"
    );
}

/// The ingest pipeline on PostgreSQL with a real Qdrant: version 2 of a file replaces
/// version 1 (its points deleted, its row in the history); re-indexing without embeddings
/// changes nothing; a crash mid-switch is finished by the job's next attempt; forgetting
/// removes every version.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_and_qdrant_replace_an_old_version() {
    let db = TestDb::postgres().await;
    let store = db.store();
    let collection = TestCollection::shared("versions");
    let qdrant = Arc::new(
        QdrantIndex::open(
            QdrantOptions {
                url: collection.url.clone(),
                api_key: Secret::default(),
                collection: collection.name.clone(),
                dimensions: None,
            },
            store.clone(),
        )
        .await
        .expect("Qdrant at ENGRAM_TEST_QDRANT_URL"),
    );
    let mut config = Config::defaults();
    config.ingest.extractor = crate::ingest::extractor().display().to_string();
    let pipeline = Pipeline {
        store: store.clone(),
        index: qdrant.clone(),
        embedder: None,
        sandbox: Sandbox::from_config(&config.ingest),
        chunking: ChunkOptions::default(),
        kept_failed_bytes: config.ingest.kept_failed_bytes,
    };
    let tenant = store.ensure_tenant(&TenantKey::local()).await.unwrap();
    let brain = store
        .create_brain(tenant, &BrainName::parse("handbook").unwrap())
        .await
        .unwrap()
        .id;

    let learn = |bytes: &'static str| {
        let store = store.clone();
        let pipeline = pipeline.clone();
        let config = config.clone();
        async move {
            let submitted = ingest::submit(
                store.as_ref(),
                &config.ingest,
                3,
                NewFile::new(brain, "vacation.md", bytes.as_bytes()),
            )
            .await
            .unwrap();
            let Submitted::Queued { document, .. } = submitted else {
                panic!("new bytes are queued: {submitted:?}");
            };
            run_jobs(store.as_ref(), &pipeline).await;
            document.id
        }
    };
    let old = learn(TWO).await;
    let new = learn(FOUR).await;

    let query = SearchQuery {
        text: "weeks of paid vacation".into(),
        vector: None,
        limit: 5,
        hidden: Vec::new(),
    };
    let hits = qdrant.search(brain, &query).await.unwrap();
    assert_eq!(hits.len(), 1, "{hits:#?}");
    assert_eq!(hits[0].document_id, new.0);
    assert!(hits[0].text.contains("four weeks"));
    assert_eq!(qdrant.count_points(brain, old).await.unwrap(), 0);
    assert!(store.document(old).await.unwrap().is_none());
    let history = store.document_history(brain).await.unwrap();
    assert_eq!(
        history
            .iter()
            .map(|v| (v.document_id, v.version, v.replaced_by))
            .collect::<Vec<_>>(),
        vec![(old, 1, new)]
    );
    assert!(store.unpurged_versions(brain).await.unwrap().is_empty());

    let queued = documents::queue_reindex(store.as_ref(), brain, 3)
        .await
        .unwrap();
    assert_eq!(queued.len(), 1);
    run_jobs(store.as_ref(), &pipeline).await;
    let document = store.document(new).await.unwrap().unwrap();
    assert_eq!(
        (document.status, document.chunks),
        (DocumentStatus::Indexed, 1)
    );
    assert_eq!(qdrant.count_points(brain, new).await.unwrap(), 1);
    let hits = qdrant.search(brain, &query).await.unwrap();
    assert_eq!(hits.len(), 1, "{hits:#?}");

    // A crash after the store's switch to version 3 and before version 2's points go: the
    // job's next attempt (the same job, claimed again) finishes it.
    let submitted = ingest::submit(
        store.as_ref(),
        &config.ingest,
        3,
        NewFile::new(brain, "vacation.md", TEN.as_bytes()),
    )
    .await
    .unwrap();
    let Submitted::Queued {
        document: third, ..
    } = submitted
    else {
        panic!("new bytes are queued: {submitted:?}");
    };
    let chunks = vec![engram::text::ChunkDraft {
        ordinal: 0,
        page: None,
        heading: Some("Vacation".into()),
        text: "Everyone gets ten weeks of paid vacation per year.".into(),
        tokens: 12,
    }];
    qdrant
        .write_points(&engram::index::IndexedDocument {
            brain,
            document: third.id,
            pages: 1,
            ocr_pages: 0,
            chunks: &chunks,
            vectors: None,
        })
        .await
        .unwrap();
    let counts = engram::store::IndexedCounts {
        pages: 1,
        ocr_pages: 0,
        chunks: 1,
    };
    let retired = store
        .mark_document_indexed(brain, third.id, counts)
        .await
        .unwrap();
    assert_eq!(retired, vec![new]);
    assert_eq!(qdrant.count_points(brain, new).await.unwrap(), 1);
    let hits = qdrant.search(brain, &query).await.unwrap();
    assert_eq!(
        hits.iter().map(|h| h.document_id).collect::<Vec<_>>(),
        vec![third.id.0],
        "only the new version answers: {hits:#?}"
    );
    run_jobs(store.as_ref(), &pipeline).await;
    assert_eq!(qdrant.count_points(brain, new).await.unwrap(), 0);
    assert!(store.unpurged_versions(brain).await.unwrap().is_empty());

    let forgotten = documents::forget(store.as_ref(), qdrant.as_ref(), brain, None, "vacation.md")
        .await
        .unwrap();
    assert_eq!((forgotten.documents, forgotten.earlier_versions), (1, 2));
    assert_eq!(qdrant.count_points(brain, third.id).await.unwrap(), 0);
    assert!(qdrant.search(brain, &query).await.unwrap().is_empty());
}

/// Claims and runs `ingest` jobs until none is due, completing each.
async fn run_jobs(store: &dyn Store, pipeline: &Pipeline) {
    while let Some(job) = store
        .claim(JobKind::Ingest, "versions-test", Duration::from_secs(60))
        .await
        .unwrap()
    {
        pipeline.run(&job).await.expect("the job succeeds");
        assert!(store.complete(&job.lease()).await.unwrap());
    }
}

/// The migrations of `all` before versions (0007).
fn before_versions(all: &sqlx::migrate::Migrator) -> sqlx::migrate::Migrator {
    sqlx::migrate::Migrator {
        migrations: std::borrow::Cow::Owned(
            all.iter().filter(|m| m.version < 7).cloned().collect(),
        ),
        ignore_missing: false,
        locking: all.locking,
        no_tx: all.no_tx,
    }
}

/// Rows of a store from before versions: a file posted in a Discord channel (its ingest job
/// kept) and one from the shell.
const OLD_ROWS: [&str; 5] = [
    "INSERT INTO tenants (id, key, name, created_at) VALUES (1, 'discord:1', 'discord:1', 0)",
    "INSERT INTO brains (id, tenant_id, name, created_at) VALUES (1, 1, 'handbook', 0)",
    "INSERT INTO jobs (id, kind, payload, state, max_attempts, run_at, created_at, updated_at) \
     VALUES (7, 'ingest', '{\"document_id\":1,\"report\":{\"platform\":\"discord\",\
     \"channel\":\"discord:42\",\"message\":\"9\",\"file_name\":\"a.md\"}}', 'done', 3, 0, 0, 0)",
    "INSERT INTO documents (id, brain_id, sha256, file_name, status, created_at, updated_at, \
     job_id) VALUES (1, 1, 'aa', 'a.md', 'indexed', 0, 0, 7)",
    "INSERT INTO documents (id, brain_id, sha256, file_name, status, created_at, updated_at) \
     VALUES (2, 1, 'bb', 'b.md', 'indexed', 0, 0)",
];

#[tokio::test]
async fn upgrading_sqlite_gives_chat_files_their_channel() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}/engram.db?mode=rwc", dir.path().display());
    let pool = sqlx::SqlitePool::connect(&url).await.unwrap();
    before_versions(&engram::store::SQLITE_MIGRATIONS)
        .run(&pool)
        .await
        .unwrap();
    for row in OLD_ROWS {
        sqlx::query(row).execute(&pool).await.unwrap();
    }
    engram::store::SQLITE_MIGRATIONS.run(&pool).await.unwrap();
    let scopes: Vec<(String, String, i64)> =
        sqlx::query_as("SELECT file_name, scope, version FROM documents ORDER BY id")
            .fetch_all(&pool)
            .await
            .unwrap();
    assert_eq!(
        scopes,
        vec![
            ("a.md".into(), "discord:42".into(), 1),
            ("b.md".into(), String::new(), 1)
        ]
    );
}

#[tokio::test]
async fn upgrading_postgres_gives_chat_files_their_channel() {
    let db = TestDb::postgres().await;
    let pool = sqlx::PgPool::connect(&db.url).await.unwrap();
    // A fresh schema in this database, migrated to before versions.
    sqlx::query("CREATE SCHEMA upgrade")
        .execute(&pool)
        .await
        .unwrap();
    let pool = sqlx::postgres::PgPoolOptions::new()
        .max_connections(1)
        .after_connect(|connection, _| {
            Box::pin(async move {
                sqlx::query("SET search_path TO upgrade")
                    .execute(connection)
                    .await
                    .map(|_| ())
            })
        })
        .connect(&db.url)
        .await
        .unwrap();
    before_versions(&engram::store::POSTGRES_MIGRATIONS)
        .run(&pool)
        .await
        .unwrap();
    for row in OLD_ROWS {
        // Explicit ids in identity columns.
        let row = row.replace(" VALUES (", " OVERRIDING SYSTEM VALUE VALUES (");
        sqlx::query(&row).execute(&pool).await.unwrap();
    }
    engram::store::POSTGRES_MIGRATIONS.run(&pool).await.unwrap();
    let scopes: Vec<(String, String, i64)> =
        sqlx::query_as("SELECT file_name, scope, version FROM documents ORDER BY id")
            .fetch_all(&pool)
            .await
            .unwrap();
    assert_eq!(
        scopes,
        vec![
            ("a.md".into(), "discord:42".into(), 1),
            ("b.md".into(), String::new(), 1)
        ]
    );
}
