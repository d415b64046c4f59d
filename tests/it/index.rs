//! The index contract: functions over `Arc<dyn Index>` and a small fixture, run here against
//! the embedded index (FTS5 + sqlite-vec) on a real, migrated SQLite store, and against a real
//! Qdrant server (v1.17.1, with the same SQLite store for documents): the one named by
//! `ENGRAM_TEST_QDRANT_URL`, each test in a collection of its own that is deleted afterwards.
//! Without that variable the Qdrant tests fail, saying how to start one; they are never
//! skipped. Then what only Qdrant has: processes opening one new collection at once, a
//! collection of another width, brain-local keyword statistics, an API key and TLS (the last
//! two on private servers started with them).

use std::sync::Arc;

use engram::brain::{BrainId, BrainName, TenantKey};
use engram::config::Secret;
use engram::index::{
    DocumentId, EmbeddedIndex, Index, IndexError, IndexedDocument, QdrantIndex, QdrantOptions,
    SearchHit, SearchQuery,
};
use engram::store::{self, Store};
use engram::text::{keyword_terms, ChunkDraft};

use crate::qdrant_server::{QdrantServer, TestCollection};
use crate::support::store_config;

/// Width of the fake embeddings.
const DIMENSIONS: usize = 384;

/// An index over a fresh store, with helpers to make brains and `documents` rows (the store's
/// document API is not used so the contract depends only on the schema).
struct Fixture {
    index: Arc<dyn Index>,
    /// The same index when it is Qdrant: its points are counted instead of SQLite rows.
    qdrant: Option<Arc<engram::index::QdrantIndex>>,
    store: Arc<dyn Store>,
    db: sqlx::SqlitePool,
    url: String,
    /// The Qdrant collection, deleted when the fixture goes.
    collection: Option<TestCollection>,
    _dir: tempfile::TempDir,
}

impl Fixture {
    async fn embedded() -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let url = format!("sqlite://{}/engram.db", dir.path().display());
        let config = store_config(&url);
        let store = store::open(&config).await.expect("open SQLite store");
        let index = EmbeddedIndex::open(&config, Some(DIMENSIONS))
            .await
            .expect("open embedded index");
        let db = sqlx::SqlitePool::connect(&url).await.expect("test pool");
        Self {
            index: Arc::new(index),
            qdrant: None,
            store,
            db,
            url,
            collection: None,
            _dir: dir,
        }
    }

    /// The Qdrant index at `ENGRAM_TEST_QDRANT_URL`, in a fresh collection, over a fresh SQLite
    /// store for the documents' rows. Fails (never skips) when Qdrant cannot be reached.
    async fn qdrant() -> Self {
        Self::qdrant_in(TestCollection::shared("index"), Secret::default()).await
    }

    /// The Qdrant index in `collection` (on its server, with `api_key`).
    async fn qdrant_in(collection: TestCollection, api_key: Secret) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let url = format!("sqlite://{}/engram.db", dir.path().display());
        let config = store_config(&url);
        let store = store::open(&config).await.expect("open SQLite store");
        let index = QdrantIndex::open(
            QdrantOptions {
                url: collection.url.clone(),
                api_key,
                collection: collection.name.clone(),
                dimensions: Some(DIMENSIONS),
            },
            store.clone(),
        )
        .await
        .expect("open the Qdrant index at ENGRAM_TEST_QDRANT_URL");
        let index = Arc::new(index);
        let db = sqlx::SqlitePool::connect(&url).await.expect("test pool");
        Self {
            index: index.clone(),
            qdrant: Some(index),
            store,
            db,
            url,
            collection: Some(collection),
            _dir: dir,
        }
    }

    /// Points (Qdrant) of a document of `brain`, when the index is Qdrant.
    async fn points(&self, brain: BrainId, document: DocumentId) -> Option<i64> {
        let qdrant = self.qdrant.as_ref()?;
        let count = qdrant
            .count_points(brain, document)
            .await
            .expect("count points");
        Some(i64::try_from(count).expect("count"))
    }

    async fn brain(&self, name: &str) -> BrainId {
        let tenant = self
            .store
            .ensure_tenant(&TenantKey::local())
            .await
            .expect("tenant");
        let name = BrainName::parse(name).expect("brain name");
        self.store
            .create_brain(tenant, &name)
            .await
            .expect("brain")
            .id
    }

    /// A `pending` document row, as the ingest pipeline creates it.
    async fn document(&self, brain: BrainId, file_name: &str) -> DocumentId {
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO documents (brain_id, sha256, file_name, source_link, status, \
             created_at, updated_at) VALUES ($1, $2, $3, $4, 'pending', 0, 0) RETURNING id",
        )
        .bind(brain.0)
        .bind(format!("sha-of-{file_name}"))
        .bind(file_name)
        .bind(format!("https://chat.example/{file_name}"))
        .fetch_one(&self.db)
        .await
        .expect("insert document");
        DocumentId(id)
    }

    /// A `pending` document row with its own bytes' hash in `scope`: a version of `file_name`.
    async fn version(&self, brain: BrainId, file_name: &str, sha: &str, scope: &str) -> DocumentId {
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO documents (brain_id, sha256, file_name, status, created_at, updated_at, \
             scope) VALUES ($1, $2, $3, 'pending', 0, 0, $4) RETURNING id",
        )
        .bind(brain.0)
        .bind(sha)
        .bind(file_name)
        .bind(scope)
        .fetch_one(&self.db)
        .await
        .expect("insert document version");
        DocumentId(id)
    }

    /// `(status, chunks column, chunk rows)` of a document, `None` when the row is gone. With
    /// Qdrant the chunks are points, counted instead of rows.
    async fn document_state(&self, document: DocumentId) -> Option<(String, i64, i64)> {
        let row: Option<(String, i64, i64)> =
            sqlx::query_as("SELECT status, chunks, brain_id FROM documents WHERE id = $1")
                .bind(document.0)
                .fetch_optional(&self.db)
                .await
                .expect("document state");
        let (status, chunks, brain) = row?;
        let rows = match self.points(BrainId(brain), document).await {
            Some(points) => points,
            None => sqlx::query_scalar("SELECT COUNT(*) FROM chunks WHERE document_id = $1")
                .bind(document.0)
                .fetch_one(&self.db)
                .await
                .expect("chunk count"),
        };
        Some((status, chunks, rows))
    }

    /// Rows left in the index's own tables (points, with Qdrant) for a document of `brain`, and
    /// for chunks that no longer exist.
    async fn index_rows(&self, brain: BrainId, document: DocumentId) -> i64 {
        if let Some(points) = self.points(brain, document).await {
            return points;
        }
        let vectors: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM chunk_vectors WHERE chunk_id IN \
             (SELECT id FROM chunks WHERE document_id = $1)",
        )
        .bind(document.0)
        .fetch_one(&self.db)
        .await
        .expect("vector rows");
        let orphans: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM chunk_vectors WHERE chunk_id NOT IN (SELECT id FROM chunks)",
        )
        .fetch_one(&self.db)
        .await
        .expect("orphan rows");
        vectors + orphans
    }
}

fn chunk(ordinal: u32, heading: Option<&str>, text: &str) -> ChunkDraft {
    ChunkDraft {
        ordinal,
        page: Some(ordinal + 1),
        heading: heading.map(str::to_string),
        text: text.to_string(),
        tokens: 0,
    }
}

/// Words that mean the same thing share a concept, so the fake embedding is "semantic".
fn concept(term: &str) -> &str {
    match term {
        "car" | "cars" | "vehicle" | "vehicles" | "automobile" => "car",
        "money" | "cash" | "refund" | "reimbursement" => "money",
        other => other,
    }
}

/// A deterministic fake embedding: a hashed bag of concepts, normalised.
fn embed(text: &str) -> Vec<f32> {
    let mut vector = vec![0.0f32; DIMENSIONS];
    for term in keyword_terms(text) {
        let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
        for byte in concept(&term).bytes() {
            hash = (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3);
        }
        let slot = (hash % DIMENSIONS as u64) as usize;
        let sign = if hash >> 63 == 0 { 1.0 } else { -1.0 };
        vector[slot] += sign;
    }
    let norm = vector.iter().map(|v| v * v).sum::<f32>().sqrt();
    if norm > 0.0 {
        vector.iter_mut().for_each(|v| *v /= norm);
    }
    vector
}

async fn index(
    index: &Arc<dyn Index>,
    brain: BrainId,
    document: DocumentId,
    chunks: &[ChunkDraft],
) -> Result<(), IndexError> {
    let vectors: Vec<Vec<f32>> = chunks.iter().map(|c| embed(&c.text)).collect();
    index
        .index_document(IndexedDocument {
            brain,
            document,
            pages: 1,
            ocr_pages: 0,
            chunks,
            vectors: Some(&vectors),
        })
        .await
}

fn keyword(text: &str) -> SearchQuery {
    SearchQuery {
        text: text.to_string(),
        vector: None,
        limit: 5,
        hidden: Vec::new(),
    }
}

fn hybrid(text: &str) -> SearchQuery {
    SearchQuery {
        text: text.to_string(),
        vector: Some(embed(text)),
        limit: 5,
        hidden: Vec::new(),
    }
}

async fn search(index: &Arc<dyn Index>, brain: BrainId, query: &SearchQuery) -> Vec<SearchHit> {
    index.search(brain, query).await.expect("search")
}

fn handbook() -> Vec<ChunkDraft> {
    vec![
        chunk(
            0,
            Some("Leave"),
            "Employees get 25 days of paid holiday each year.",
        ),
        chunk(
            1,
            Some("Leave > Sick"),
            "Report sick leave to your manager before 10 am.",
        ),
        chunk(
            2,
            Some("Expenses"),
            "Submit receipts within 30 days to get a refund.",
        ),
        chunk(
            3,
            Some("Security"),
            "Rotate your password every 90 days; use a manager.",
        ),
    ]
}

/// Policies that all say "policy"; only the vehicle one is about cars, and it is the longest,
/// so BM25 alone ranks it last.
fn policies() -> Vec<ChunkDraft> {
    vec![
        chunk(0, None, "Travel policy: book trains early."),
        chunk(1, None, "Holiday policy: ask two weeks ahead."),
        chunk(
            2,
            None,
            "Car policy: automobile owners park in lot B, charge electric cars at the \
             east gate, and log every trip with the vehicle in the fleet app before Friday.",
        ),
        chunk(3, None, "Laptop policy: encrypt the disk."),
    ]
}

async fn keyword_search_ranks_the_matching_chunk_first(fx: &Fixture) {
    let brain = fx.brain("handbook").await;
    let document = fx.document(brain, "handbook.pdf").await;
    index(&fx.index, brain, document, &handbook())
        .await
        .expect("index");

    let hits = search(&fx.index, brain, &keyword("How do I report sick leave?")).await;
    let first = hits.first().expect("a hit");
    assert!(first.text.contains("Report sick leave"), "{hits:#?}");
    assert_eq!(first.document_id, document.0);
    assert_eq!(first.file_name, "handbook.pdf");
    assert_eq!(
        first.source_link.as_deref(),
        Some("https://chat.example/handbook.pdf")
    );
    assert_eq!(first.heading.as_deref(), Some("Leave > Sick"));
    assert_eq!(first.page, Some(2));
    assert_eq!(first.keyword_rank, Some(1));
    assert_eq!(first.vector_rank, None);
    assert!(hits.windows(2).all(|w| w[0].score >= w[1].score));
    assert!(hits.iter().all(|h| h.text.to_lowercase().contains("sick")
        || h.text.to_lowercase().contains("leave")
        || h.heading
            .as_deref()
            .unwrap_or("")
            .to_lowercase()
            .contains("leave")));

    let hits = search(&fx.index, brain, &keyword("RECEIPTS refund")).await;
    assert!(hits[0].text.contains("receipts"), "{hits:#?}");
    assert_eq!(
        fx.document_state(document).await,
        Some(("indexed".to_string(), 4, 4))
    );
}

async fn hybrid_search_ranks_the_semantic_match_first(fx: &Fixture) {
    let brain = fx.brain("policies").await;
    let document = fx.document(brain, "policies.md").await;
    index(&fx.index, brain, document, &policies())
        .await
        .expect("index");

    let question = "vehicle cars policy";
    let words = search(&fx.index, brain, &keyword("what is the policy")).await;
    assert!(!words[0].text.starts_with("Car policy"), "{words:#?}");

    let hits = search(&fx.index, brain, &hybrid(question)).await;
    let first = hits.first().expect("a hit");
    assert!(first.text.starts_with("Car policy"), "{hits:#?}");
    assert_eq!(first.vector_rank, Some(1));
    assert!(first.keyword_rank.is_some());
    assert!(hits.len() <= 5);
    assert!(hits.windows(2).all(|w| w[0].score >= w[1].score));

    // A question with no keyword in common still finds the chunk by meaning.
    let hits = search(&fx.index, brain, &hybrid("automobile")).await;
    assert!(hits[0].text.starts_with("Car policy"), "{hits:#?}");
}

/// A hybrid hit's score is its reciprocal-rank-fusion sum, Σ 1 / (60 + rank) over the sides
/// that found it (ranks from 1): the same scale on every index, so the answer's relevance
/// floor means the same thing on each.
async fn hybrid_scores_are_reciprocal_rank_fusion(fx: &Fixture) {
    let brain = fx.brain("fusion").await;
    let document = fx.document(brain, "policies.md").await;
    index(&fx.index, brain, document, &policies())
        .await
        .expect("index");
    let hits = search(&fx.index, brain, &hybrid("vehicle cars policy")).await;
    assert!(hits.len() >= 2, "{hits:#?}");
    for hit in &hits {
        let expected: f32 = [hit.keyword_rank, hit.vector_rank]
            .into_iter()
            .flatten()
            .map(|rank| 1.0 / (60.0 + rank as f32))
            .sum();
        assert!(
            (hit.score - expected).abs() < 1e-5,
            "score {} for ranks {:?} / {:?}: expected {expected}",
            hit.score,
            hit.keyword_rank,
            hit.vector_rank
        );
    }
    let first = &hits[0];
    assert_eq!((first.keyword_rank, first.vector_rank), (Some(1), Some(1)));
    assert!((first.score - 2.0 / 61.0).abs() < 1e-6, "{first:#?}");
}

/// A hybrid hit found by the vector side carries the cosine similarity of the question's vector
/// and its chunk's, exactly; keyword-only hits and hits the vector side did not find carry none.
async fn hybrid_hits_carry_the_cosine_similarity(fx: &Fixture) {
    let brain = fx.brain("similarity").await;
    let document = fx.document(brain, "policies.md").await;
    let chunks = policies();
    index(&fx.index, brain, document, &chunks)
        .await
        .expect("index");
    let question = "vehicle cars policy";
    let asked = embed(question);
    let hits = search(&fx.index, brain, &hybrid(question)).await;
    assert!(
        hits.iter().any(|hit| hit.vector_rank.is_some()),
        "{hits:#?}"
    );
    for hit in &hits {
        let Some(similarity) = hit.vector_similarity else {
            assert_eq!(hit.vector_rank, None, "{hit:#?}");
            continue;
        };
        assert!(hit.vector_rank.is_some(), "{hit:#?}");
        let chunk = embed(&hit.text);
        let expected: f32 = asked.iter().zip(&chunk).map(|(a, b)| a * b).sum();
        assert!(
            (similarity - expected).abs() < 1e-4,
            "similarity {similarity}, expected {expected}: {hit:#?}"
        );
    }
    // Better vector ranks never have lower similarities.
    let mut ranked: Vec<(u32, f32)> = hits
        .iter()
        .filter_map(|hit| Some((hit.vector_rank?, hit.vector_similarity?)))
        .collect();
    ranked.sort_by_key(|&(rank, _)| rank);
    assert!(
        ranked.windows(2).all(|w| w[0].1 >= w[1].1 - 1e-6),
        "{ranked:?}"
    );
    assert!(search(&fx.index, brain, &keyword("car policy"))
        .await
        .iter()
        .all(|hit| hit.vector_similarity.is_none()));
}

async fn brains_are_isolated(fx: &Fixture) {
    let x = fx.brain("x").await;
    let y = fx.brain("y").await;
    let in_x = fx.document(x, "same.md").await;
    let in_y = fx.document(y, "same.md").await;
    index(&fx.index, x, in_x, &handbook()).await.expect("x");
    index(&fx.index, y, in_y, &handbook()).await.expect("y");
    let empty = fx.brain("empty").await;

    for query in [keyword("sick leave manager"), hybrid("sick leave manager")] {
        let from_x = search(&fx.index, x, &query).await;
        let from_y = search(&fx.index, y, &query).await;
        assert!(!from_x.is_empty() && !from_y.is_empty());
        assert!(
            from_x.iter().all(|h| h.document_id == in_x.0),
            "{from_x:#?}"
        );
        assert!(
            from_y.iter().all(|h| h.document_id == in_y.0),
            "{from_y:#?}"
        );
        let x_ids: Vec<i64> = from_x.iter().map(|h| h.chunk_id).collect();
        assert!(from_y.iter().all(|h| !x_ids.contains(&h.chunk_id)));
        assert!(search(&fx.index, empty, &query).await.is_empty());
    }

    // A document of another brain can be neither written nor forgotten through this one.
    let error = index(&fx.index, x, in_y, &handbook()).await;
    assert!(
        matches!(error, Err(IndexError::UnknownDocument { .. })),
        "{error:?}"
    );
    fx.index.forget_document(x, in_y).await.expect("no-op");
    assert!(!search(&fx.index, y, &keyword("receipts")).await.is_empty());
}

/// What was learned in a restricted channel is left out by the search itself: a hidden
/// document never answers, however well it matches, and the others still fill the limit.
async fn hidden_documents_are_never_found(fx: &Fixture) {
    let brain = fx.brain("mixed").await;
    let open = fx.document(brain, "open.md").await;
    let secret = fx.document(brain, "secret.md").await;
    index(&fx.index, brain, open, &handbook())
        .await
        .expect("open");
    index(&fx.index, brain, secret, &handbook())
        .await
        .expect("secret");
    for mut query in [keyword("sick leave manager"), hybrid("sick leave manager")] {
        let both = search(&fx.index, brain, &query).await;
        assert!(both.iter().any(|h| h.document_id == secret.0), "{both:#?}");
        query.limit = 4;
        query.hidden = vec![secret.0];
        let hits = search(&fx.index, brain, &query).await;
        assert!(!hits.is_empty());
        assert!(hits.iter().all(|h| h.document_id == open.0), "{hits:#?}");
        query.hidden = vec![secret.0, open.0];
        assert!(search(&fx.index, brain, &query).await.is_empty());
    }
}

async fn reindexing_replaces_the_chunks(fx: &Fixture) {
    let brain = fx.brain("reindex").await;
    let document = fx.document(brain, "notes.md").await;
    index(&fx.index, brain, document, &handbook())
        .await
        .expect("first");
    index(&fx.index, brain, document, &handbook())
        .await
        .expect("same again");
    let hits = search(&fx.index, brain, &keyword("receipts")).await;
    assert_eq!(hits.len(), 1, "no duplicates: {hits:#?}");

    let new = vec![
        chunk(0, None, "Quarterly goals: ship the zeppelin."),
        chunk(1, None, "Hire two zeppelin pilots."),
    ];
    index(&fx.index, brain, document, &new)
        .await
        .expect("replace");
    assert!(search(&fx.index, brain, &keyword("receipts"))
        .await
        .is_empty());
    assert!(search(&fx.index, brain, &hybrid("receipts refund"))
        .await
        .iter()
        .all(|h| h.text.contains("zeppelin")));
    assert_eq!(
        search(&fx.index, brain, &keyword("zeppelin")).await.len(),
        2
    );
    assert_eq!(
        fx.document_state(document).await,
        Some(("indexed".to_string(), 2, 2))
    );
    assert_eq!(fx.index_rows(brain, document).await, 2);
}

async fn forgetting_removes_everything(fx: &Fixture) {
    let brain = fx.brain("forget").await;
    let document = fx.document(brain, "gone.md").await;
    let kept = fx.document(brain, "kept.md").await;
    index(&fx.index, brain, document, &handbook())
        .await
        .expect("index");
    index(&fx.index, brain, kept, &policies())
        .await
        .expect("index");

    fx.index
        .forget_document(brain, document)
        .await
        .expect("forget");
    assert_eq!(fx.document_state(document).await, None);
    assert_eq!(fx.index_rows(brain, document).await, 0);
    assert!(search(&fx.index, brain, &keyword("sick receipts password"))
        .await
        .is_empty());
    let hits = search(&fx.index, brain, &hybrid("sick leave")).await;
    assert!(hits.iter().all(|h| h.document_id == kept.0), "{hits:#?}");
    // Forgetting twice is fine.
    fx.index
        .forget_document(brain, document)
        .await
        .expect("again");
}

async fn bad_vectors_change_nothing(fx: &Fixture) {
    let brain = fx.brain("atomic").await;
    let document = fx.document(brain, "doc.md").await;
    index(&fx.index, brain, document, &handbook())
        .await
        .expect("index");

    let replacement = vec![chunk(0, None, "Completely different zeppelin text.")];
    let too_few: Vec<Vec<f32>> = Vec::new();
    let error = fx
        .index
        .index_document(IndexedDocument {
            brain,
            document,
            pages: 9,
            ocr_pages: 9,
            chunks: &replacement,
            vectors: Some(&too_few),
        })
        .await;
    assert!(
        matches!(error, Err(IndexError::VectorCount { .. })),
        "{error:?}"
    );

    let narrow = vec![vec![0.5f32; DIMENSIONS - 1]];
    let error = fx
        .index
        .index_document(IndexedDocument {
            brain,
            document,
            pages: 9,
            ocr_pages: 9,
            chunks: &replacement,
            vectors: Some(&narrow),
        })
        .await;
    assert!(
        matches!(error, Err(IndexError::DimensionMismatch { expected: DIMENSIONS, got }) if got == DIMENSIONS - 1),
        "{error:?}"
    );

    assert!(search(&fx.index, brain, &keyword("zeppelin"))
        .await
        .is_empty());
    assert_eq!(
        search(&fx.index, brain, &keyword("receipts")).await.len(),
        1
    );
    assert_eq!(
        fx.document_state(document).await,
        Some(("indexed".to_string(), 4, 4))
    );

    let query = SearchQuery {
        text: "receipts".to_string(),
        vector: Some(vec![1.0; 3]),
        limit: 5,
        hidden: Vec::new(),
    };
    let error = fx.index.search(brain, &query).await;
    assert!(
        matches!(error, Err(IndexError::DimensionMismatch { .. })),
        "{error:?}"
    );
}

async fn query_syntax_is_harmless(fx: &Fixture) {
    let brain = fx.brain("syntax").await;
    let document = fx.document(brain, "doc.md").await;
    index(&fx.index, brain, document, &handbook())
        .await
        .expect("index");
    for text in [
        "\"sick",
        "sick*",
        "NEAR(sick leave)",
        "sick AND OR NOT leave",
        "-sick",
        "heading:sick",
        "brain:b1",
        "{brain text}: sick",
        "sick\" OR brain:\"b",
        "^sick + leave )(",
        "'; DROP TABLE chunks; --",
    ] {
        for query in [keyword(text), hybrid(text)] {
            let hits = fx.index.search(brain, &query).await;
            let hits = hits.unwrap_or_else(|error| panic!("{text:?} failed: {error}"));
            assert!(hits.iter().all(|h| h.document_id == document.0));
        }
    }
    let hits = search(&fx.index, brain, &keyword("NEAR(sick leave)")).await;
    assert!(hits[0].text.contains("sick"), "{hits:#?}");
    // The brain token is not searchable as a word.
    assert!(search(&fx.index, brain, &keyword(&format!("b{}", brain.0)))
        .await
        .is_empty());
}

async fn empty_queries_find_nothing(fx: &Fixture) {
    let brain = fx.brain("empty-query").await;
    let document = fx.document(brain, "doc.md").await;
    index(&fx.index, brain, document, &handbook())
        .await
        .expect("index");
    for text in ["", "   ", "the of and is", "?!… \"\" **"] {
        assert!(
            search(&fx.index, brain, &keyword(text)).await.is_empty(),
            "{text:?}"
        );
    }
    let zero = SearchQuery {
        limit: 0,
        ..keyword("receipts")
    };
    assert!(search(&fx.index, brain, &zero).await.is_empty());
}

fn vacation(weeks: &str) -> Vec<ChunkDraft> {
    vec![
        chunk(
            0,
            Some("Vacation"),
            &format!("Vacation: {weeks} weeks of leave per year."),
        ),
        chunk(
            1,
            Some("Vacation > Asking"),
            &format!("Ask for your {weeks} weeks in the leave app."),
        ),
    ]
}

/// The texts a keyword and a hybrid search find for `text`.
async fn found(fx: &Fixture, brain: BrainId, text: &str) -> Vec<(i64, String)> {
    let mut found = Vec::new();
    for query in [keyword(text), hybrid(text)] {
        for hit in search(&fx.index, brain, &query).await {
            found.push((hit.document_id, hit.text));
        }
    }
    found
}

/// A new version of a file (same name and scope, other bytes) replaces the old one once it is
/// indexed: the old chunks leave every index, the row moves to the history, and a file of the
/// same name in another scope (channel) is left alone.
async fn a_new_version_replaces_the_old_one(fx: &Fixture) {
    let brain = fx.brain("versions").await;
    let old = fx.version(brain, "vacation.md", "sha-two", "").await;
    index(&fx.index, brain, old, &vacation("two"))
        .await
        .expect("v1");
    let elsewhere = fx
        .version(brain, "vacation.md", "sha-ten", "discord:9")
        .await;
    index(&fx.index, brain, elsewhere, &vacation("ten"))
        .await
        .expect("other channel");
    let new = fx.version(brain, "vacation.md", "sha-four", "").await;
    // Pending: the old version still answers, alone.
    let before = found(fx, brain, "vacation weeks leave").await;
    assert!(before.iter().any(|(d, _)| *d == old.0), "{before:#?}");
    assert!(before.iter().all(|(d, _)| *d != new.0), "{before:#?}");

    index(&fx.index, brain, new, &vacation("four"))
        .await
        .expect("v2");
    let after = found(fx, brain, "vacation weeks leave").await;
    assert!(
        after.iter().any(|(d, t)| *d == new.0 && t.contains("four")),
        "{after:#?}"
    );
    assert!(after.iter().any(|(d, _)| *d == elsewhere.0), "{after:#?}");
    assert!(
        after.iter().all(|(d, t)| *d != old.0 && !t.contains("two")),
        "the old version is gone: {after:#?}"
    );
    assert_eq!(fx.document_state(old).await, None);
    assert_eq!(fx.index_rows(brain, old).await, 0);
    assert_eq!(
        fx.document_state(new).await,
        Some(("indexed".to_string(), 2, 2))
    );
    assert_eq!(
        fx.document_state(elsewhere).await,
        Some(("indexed".to_string(), 2, 2))
    );
    let history = fx.store.document_history(brain).await.expect("history");
    assert_eq!(
        history
            .iter()
            .map(|v| (v.document_id, v.sha256.as_str(), v.replaced_by))
            .collect::<Vec<_>>(),
        vec![(old, "sha-two", new)]
    );
    assert!(fx
        .store
        .unpurged_versions(brain)
        .await
        .expect("unpurged")
        .is_empty());
}

/// Runs the contract against one implementation: `index_contract!(module, fixture)` makes one
/// test per contract function in `mod module`. A Qdrant fixture joins with one more line.
macro_rules! index_contract {
    ($module:ident, $fixture:expr) => {
        index_contract!(
            $module,
            $fixture,
            keyword_search_ranks_the_matching_chunk_first,
            hybrid_search_ranks_the_semantic_match_first,
            hybrid_scores_are_reciprocal_rank_fusion,
            hybrid_hits_carry_the_cosine_similarity,
            brains_are_isolated,
            hidden_documents_are_never_found,
            reindexing_replaces_the_chunks,
            forgetting_removes_everything,
            a_new_version_replaces_the_old_one,
            chunks_read_back_as_written,
            bad_vectors_change_nothing,
            query_syntax_is_harmless,
            empty_queries_find_nothing,
        );
    };
    ($module:ident, $fixture:expr, $($test:ident),+ $(,)?) => {
        mod $module {
            use super::*;
            $(
                #[tokio::test]
                async fn $test() {
                    super::$test(&$fixture).await;
                }
            )+
        }
    };
}

index_contract!(embedded, Fixture::embedded().await);
index_contract!(qdrant, Fixture::qdrant().await);

/// The embedded index switches versions in one transaction: when it fails half-way (here the
/// history refuses the old version, as a crash mid-transaction would leave it: rolled back),
/// the old version still answers alone and the new one can be indexed again.
#[tokio::test]
async fn embedded_a_failed_switch_leaves_the_old_version_answering() {
    let fx = Fixture::embedded().await;
    let brain = fx.brain("switch").await;
    let old = fx.version(brain, "vacation.md", "sha-two", "").await;
    index(&fx.index, brain, old, &vacation("two"))
        .await
        .expect("v1");
    let new = fx.version(brain, "vacation.md", "sha-four", "").await;
    sqlx::query(
        "CREATE TRIGGER fail_switch BEFORE INSERT ON document_versions \
         BEGIN SELECT RAISE(ABORT, 'stopped mid-switch'); END",
    )
    .execute(&fx.db)
    .await
    .expect("trigger");
    index(&fx.index, brain, new, &vacation("four"))
        .await
        .expect_err("the switch fails");
    let answer = found(&fx, brain, "vacation weeks leave").await;
    assert!(!answer.is_empty());
    assert!(
        answer.iter().all(|(d, t)| *d == old.0 && t.contains("two")),
        "{answer:#?}"
    );
    assert_eq!(
        fx.document_state(new).await,
        Some(("pending".to_string(), 0, 0))
    );
    assert_eq!(fx.index_rows(brain, new).await, 0);

    sqlx::query("DROP TRIGGER fail_switch")
        .execute(&fx.db)
        .await
        .expect("drop");
    index(&fx.index, brain, new, &vacation("four"))
        .await
        .expect("retried");
    let answer = found(&fx, brain, "vacation weeks leave").await;
    assert!(
        answer
            .iter()
            .all(|(d, t)| *d == new.0 && t.contains("four")),
        "{answer:#?}"
    );
    assert_eq!(fx.document_state(old).await, None);
}

/// With Qdrant the switch is the store's: a crash after the new version's points are written
/// but before the store marks it indexed leaves the old version answering alone; a crash after
/// the switch but before the old points are deleted shows the new version alone, and the
/// next attempt (`purge_replaced`, which an ingest job's retry runs) deletes the old points.
#[tokio::test]
async fn qdrant_a_crash_mid_switch_never_shows_both_versions() {
    let fx = Fixture::qdrant().await;
    let qdrant = fx.qdrant.clone().expect("qdrant");
    let brain = fx.brain("switch").await;
    let old = fx.version(brain, "vacation.md", "sha-two", "").await;
    index(&fx.index, brain, old, &vacation("two"))
        .await
        .expect("v1");
    let new = fx.version(brain, "vacation.md", "sha-four", "").await;
    let chunks = vacation("four");
    let vectors: Vec<Vec<f32>> = chunks.iter().map(|c| embed(&c.text)).collect();
    let document = IndexedDocument {
        brain,
        document: new,
        pages: 1,
        ocr_pages: 0,
        chunks: &chunks,
        vectors: Some(&vectors),
    };

    // Crash 1: the new points are in Qdrant, the store still says pending.
    qdrant.write_points(&document).await.expect("points");
    assert_eq!(fx.points(brain, new).await, Some(2));
    let answer = found(&fx, brain, "vacation weeks leave").await;
    assert!(!answer.is_empty());
    assert!(
        answer.iter().all(|(d, t)| *d == old.0 && t.contains("two")),
        "{answer:#?}"
    );

    // Crash 2: the store switched, the old points are still in Qdrant.
    let counts = engram::store::IndexedCounts {
        pages: 1,
        ocr_pages: 0,
        chunks: 2,
    };
    let retired = fx
        .store
        .mark_document_indexed(brain, new, counts)
        .await
        .expect("switch");
    assert_eq!(retired, vec![old]);
    assert_eq!(fx.points(brain, old).await, Some(2));
    let answer = found(&fx, brain, "vacation weeks leave").await;
    assert!(!answer.is_empty());
    assert!(
        answer
            .iter()
            .all(|(d, t)| *d == new.0 && t.contains("four")),
        "{answer:#?}"
    );

    // The retry finishes: the old points go, and the history says so.
    fx.index.purge_replaced(brain).await.expect("purge");
    assert_eq!(fx.points(brain, old).await, Some(0));
    assert!(fx
        .store
        .unpurged_versions(brain)
        .await
        .expect("unpurged")
        .is_empty());
    assert_eq!(fx.points(brain, new).await, Some(2));
}

/// Re-embedding reads a document's chunks back from the index as they were written.
async fn chunks_read_back_as_written(fx: &Fixture) {
    let brain = fx.brain("readback").await;
    let document = fx.document(brain, "handbook.md").await;
    index(&fx.index, brain, document, &handbook())
        .await
        .expect("index");
    let back = fx
        .index
        .document_chunks(brain, document)
        .await
        .expect("chunks");
    let summary = |chunks: &[ChunkDraft]| -> Vec<(u32, Option<u32>, Option<String>, String)> {
        chunks
            .iter()
            .map(|c| (c.ordinal, c.page, c.heading.clone(), c.text.clone()))
            .collect()
    };
    assert_eq!(summary(&back), summary(&handbook()));
    let other = fx.brain("readback-other").await;
    assert!(fx
        .index
        .document_chunks(other, document)
        .await
        .expect("other brain")
        .is_empty());
}

/// Deleting a brain through the store (a cascade the index does not see) leaves nothing
/// searchable, and the index reopens cleanly afterwards.
#[tokio::test]
async fn embedded_index_survives_brain_deletion_through_the_store() {
    let fx = Fixture::embedded().await;
    let brain = fx.brain("doomed").await;
    let document = fx.document(brain, "doc.md").await;
    index(&fx.index, brain, document, &handbook())
        .await
        .expect("index");
    assert!(fx.store.delete_brain(brain).await.expect("delete"));
    assert!(search(&fx.index, brain, &keyword("receipts"))
        .await
        .is_empty());
    assert!(search(&fx.index, brain, &hybrid("receipts"))
        .await
        .is_empty());
    let config = store_config(&fx.url);
    let again = EmbeddedIndex::open(&config, Some(DIMENSIONS))
        .await
        .expect("reopen");
    again.close().await;
}

/// An index opened with another embedding width refuses to start and says to re-index.
#[tokio::test]
async fn embedded_index_refuses_another_dimension() {
    let fx = Fixture::embedded().await;
    let config = store_config(&fx.url);
    let error = EmbeddedIndex::open(&config, Some(768)).await;
    match error {
        Err(error @ IndexError::DimensionMismatch { expected, got }) => {
            assert_eq!((expected, got), (DIMENSIONS, 768));
            assert!(
                error.to_string().contains("engram brain reindex"),
                "{error}"
            );
            assert!(!error.is_transient());
        }
        other => panic!("expected a dimension mismatch, got {other:?}"),
    }
    // Without embeddings the same file still serves keyword search.
    let keyword_only = EmbeddedIndex::open(&config, None).await.expect("open");
    let brain = fx.brain("plain").await;
    let document = fx.document(brain, "doc.md").await;
    let chunks = handbook();
    keyword_only
        .index_document(IndexedDocument {
            brain,
            document,
            pages: 1,
            ocr_pages: 0,
            chunks: &chunks,
            vectors: None,
        })
        .await
        .expect("index without vectors");
    let hits = keyword_only
        .search(brain, &keyword("receipts"))
        .await
        .expect("search");
    assert_eq!(hits.len(), 1);
    let error = keyword_only.search(brain, &hybrid("receipts")).await;
    assert!(
        matches!(error, Err(IndexError::VectorsDisabled)),
        "{error:?}"
    );
}

/// The vector side of a search sees this process's writes at once, even after a search has
/// loaded the brain's vectors (the embedded index caches them in memory).
async fn vector_search_follows_writes(fx: &Fixture) {
    let brain = fx.brain("vector-writes").await;
    let first = fx.document(brain, "first.md").await;
    index(&fx.index, brain, first, &handbook())
        .await
        .expect("first");
    // Stopwords only: no keyword side, so every hit comes from the vector side.
    let query = SearchQuery {
        text: "the of".to_string(),
        vector: Some(embed("Hire two zeppelin pilots.")),
        limit: 50,
        hidden: Vec::new(),
    };
    let before = search(&fx.index, brain, &query).await;
    assert!(!before.is_empty());
    assert!(
        before.iter().all(|h| h.document_id == first.0),
        "{before:#?}"
    );

    let second = fx.document(brain, "second.md").await;
    index(
        &fx.index,
        brain,
        second,
        &[chunk(0, None, "Hire two zeppelin pilots.")],
    )
    .await
    .expect("second");
    let after = search(&fx.index, brain, &query).await;
    assert_eq!(
        after.first().map(|h| h.document_id),
        Some(second.0),
        "{after:#?}"
    );
    assert_eq!(after.first().and_then(|h| h.vector_rank), Some(1));

    fx.index
        .forget_document(brain, second)
        .await
        .expect("forget");
    let gone = search(&fx.index, brain, &query).await;
    assert!(gone.iter().all(|h| h.document_id == first.0), "{gone:#?}");
    assert_eq!(gone.len(), before.len());
}

#[tokio::test]
async fn embedded_vector_search_follows_writes() {
    vector_search_follows_writes(&Fixture::embedded().await).await;
}

#[tokio::test]
async fn qdrant_vector_search_follows_writes() {
    vector_search_follows_writes(&Fixture::qdrant().await).await;
}

/// `index.kind` picks the implementation: the embedded index needs a SQLite store (refused on
/// PostgreSQL, saying what to use instead); Qdrant runs on either store, and an unreachable
/// Qdrant stops a role at start with a clear, transient error (here a closed local port).
#[tokio::test]
async fn open_index_follows_index_kind() {
    use engram::config::{Config, Sources};
    let closed = {
        let probe = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        probe.local_addr().expect("addr")
    };
    let config = |pairs: &[(&str, String)]| {
        Config::load(&Sources {
            deployed_defaults: None,
            file: None,
            env: pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.clone()))
                .collect(),
        })
        .expect("config")
    };
    let fx = Fixture::embedded().await;
    let postgres = (
        "ENGRAM__STORE__URL",
        "postgres://engram@127.0.0.1:1/engram".to_string(),
    );

    let embedded_on_postgres = config(std::slice::from_ref(&postgres));
    let error = engram::app::open_index(&embedded_on_postgres, fx.store.clone(), None)
        .await
        .expect_err("the embedded index cannot serve a PostgreSQL store");
    let message = format!("{error:#}");
    assert!(
        message.contains("needs index.kind = \"qdrant\""),
        "{message}"
    );

    let qdrant_on_postgres = config(&[
        postgres,
        ("ENGRAM__INDEX__KIND", "qdrant".to_string()),
        ("ENGRAM__INDEX__QDRANT_URL", format!("http://{closed}")),
    ]);
    let error = engram::app::open_index(&qdrant_on_postgres, fx.store.clone(), Some(DIMENSIONS))
        .await
        .expect_err("nothing listens there");
    let message = format!("{error:#}");
    assert!(
        message.contains("cannot open the Qdrant index"),
        "{message}"
    );
    assert!(message.contains("unreachable"), "{message}");
    let transient = error
        .chain()
        .find_map(|cause| cause.downcast_ref::<IndexError>())
        .is_some_and(IndexError::is_transient);
    assert!(transient, "{message}");
}

/// The Qdrant index over `store` in `collection` of the shared server, `dimensions` wide.
async fn open_qdrant(
    collection: &TestCollection,
    store: &Arc<dyn Store>,
    dimensions: Option<usize>,
) -> Result<QdrantIndex, IndexError> {
    QdrantIndex::open(
        QdrantOptions {
            url: collection.url.clone(),
            api_key: Secret::default(),
            collection: collection.name.clone(),
            dimensions,
        },
        store.clone(),
    )
    .await
}

/// Processes that start together all open one new collection at once: Qdrant makes it
/// once, every opener succeeds, and each can write and search it.
#[tokio::test]
async fn qdrant_openers_racing_on_a_new_collection_all_succeed() {
    let fx = Fixture::embedded().await;
    let collection = TestCollection::shared("race");
    let openers = (0..8).map(|_| {
        let (collection, store) = (&collection, fx.store.clone());
        async move { open_qdrant(collection, &store, Some(DIMENSIONS)).await }
    });
    let opened = futures_util::future::join_all(openers).await;
    let indexes: Vec<QdrantIndex> = opened
        .into_iter()
        .map(|opened| opened.expect("every opener succeeds"))
        .collect();

    let brain = fx.brain("race").await;
    let document = fx.document(brain, "handbook.pdf").await;
    let first: Arc<dyn Index> = Arc::new(indexes.into_iter().next_back().expect("an index"));
    index(&first, brain, document, &handbook())
        .await
        .expect("index");
    let again = open_qdrant(&collection, &fx.store, Some(DIMENSIONS))
        .await
        .expect("reopen");
    let hits = again
        .search(brain, &hybrid("sick leave"))
        .await
        .expect("search");
    assert!(hits[0].text.contains("sick leave"), "{hits:#?}");
    let client = crate::qdrant_server::client(&collection.url, None);
    let info = client
        .collection_info(collection.name.as_str())
        .await
        .expect("collection info")
        .result
        .expect("described");
    let mut indexed: Vec<&str> = info.payload_schema.keys().map(String::as_str).collect();
    indexed.sort_unstable();
    assert_eq!(indexed, vec!["brain_id", "document_id", "slot", "terms"]);
}

/// A collection whose dense vectors have another width is refused with the reason, at once
/// and for good (not as an outage to wait out); keyword search alone may still use it.
#[tokio::test]
async fn qdrant_refuses_a_collection_of_another_width() {
    let fx = Fixture::embedded().await;
    let collection = TestCollection::shared("width");
    open_qdrant(&collection, &fx.store, Some(DIMENSIONS))
        .await
        .expect("made at 384");
    let error = open_qdrant(&collection, &fx.store, Some(768))
        .await
        .expect_err("768 is not 384");
    assert!(
        matches!(
            error,
            IndexError::DimensionMismatch {
                expected: DIMENSIONS,
                got: 768
            }
        ),
        "{error:?}"
    );
    assert!(!error.is_transient());
    assert!(
        error.to_string().contains("engram brain reindex"),
        "{error}"
    );
    open_qdrant(&collection, &fx.store, None)
        .await
        .expect("keyword search only");

    // A collection made without embeddings cannot take vectors.
    let keyword_only = TestCollection::shared("width");
    open_qdrant(&keyword_only, &fx.store, None)
        .await
        .expect("made without vectors");
    let error = open_qdrant(&keyword_only, &fx.store, Some(DIMENSIONS))
        .await
        .expect_err("no dense vector");
    assert!(error.to_string().contains("without embeddings"), "{error}");
}

/// Keyword statistics are per brain: another brain (here another tenant's) filling the
/// shared collection with one of this brain's words leaves this brain's keyword ranking and
/// scores exactly as they were, counted afresh by another process. (With Qdrant's
/// collection-wide statistics the 300 chunks saying "sick" would make "sick" common, and the
/// chunk saying "manager" would overtake.)
#[tokio::test]
async fn qdrant_keyword_scores_ignore_other_brains_words() {
    let fx = Fixture::qdrant().await;
    let brain = fx.brain("ours").await;
    let document = fx.document(brain, "ours.md").await;
    let ours = vec![
        chunk(0, None, "Report sick days early."),
        chunk(
            1,
            None,
            "Your manager signs the form before you travel anywhere.",
        ),
        chunk(2, None, "Lunch is at noon."),
    ];
    index(&fx.index, brain, document, &ours)
        .await
        .expect("index ours");
    let query = keyword("sick manager");
    let before = search(&fx.index, brain, &query).await;
    assert_eq!(before.len(), 2, "{before:#?}");
    assert!(before[0].text.contains("sick"), "{before:#?}");

    let tenant = fx
        .store
        .ensure_tenant(&TenantKey::parse("discord:42").expect("tenant"))
        .await
        .expect("tenant");
    let theirs = fx
        .store
        .create_brain(tenant, &BrainName::parse("theirs").expect("name"))
        .await
        .expect("brain")
        .id;
    for n in 0..3 {
        let document = fx.document(theirs, &format!("theirs-{n}.md")).await;
        let chunks: Vec<ChunkDraft> = (0..100)
            .map(|i| chunk(i, None, &format!("Sick note {n}-{i}: sick sick sick.")))
            .collect();
        index(&fx.index, theirs, document, &chunks)
            .await
            .expect("index theirs");
    }
    // Another process, which has counted nothing yet.
    let collection = fx.collection.as_ref().expect("a Qdrant fixture");
    let other: Arc<dyn Index> = Arc::new(
        open_qdrant(collection, &fx.store, Some(DIMENSIONS))
            .await
            .expect("open again"),
    );
    for index in [&fx.index, &other] {
        let after = search(index, brain, &query).await;
        let found = |hits: &[SearchHit]| {
            hits.iter()
                .map(|h| (h.chunk_id, h.score))
                .collect::<Vec<_>>()
        };
        assert_eq!(found(&after), found(&before), "{before:#?}\n{after:#?}");
    }
}

/// With `index.qdrant_api_key` engram gets in (and only with the right key): a wrong or
/// missing key is refused at once with the setting's name and never the key.
#[tokio::test]
async fn qdrant_with_an_api_key() {
    let server = QdrantServer::with_api_key("engram-test-key-7");
    let fx = Fixture::embedded().await;
    let open = |key: &str| {
        let (url, store) = (server.url.clone(), fx.store.clone());
        let key = Secret::new(key);
        async move {
            QdrantIndex::open(
                QdrantOptions {
                    url,
                    api_key: key,
                    collection: "keyed".into(),
                    dimensions: Some(DIMENSIONS),
                },
                store,
            )
            .await
        }
    };
    for (key, says) in [
        ("wrong-key", "refused index.qdrant_api_key"),
        ("", "set index.qdrant_api_key"),
    ] {
        let error = open(key).await.expect_err("refused");
        let text = error.to_string();
        assert!(matches!(error, IndexError::Rejected(_)), "{text}");
        assert!(text.contains(says), "{text}");
        assert!(!text.contains("wrong-key"), "{text}");
    }
    let keyed = open("engram-test-key-7").await.expect("the right key");
    let keyed: Arc<dyn Index> = Arc::new(keyed);
    let brain = fx.brain("keyed").await;
    let document = fx.document(brain, "handbook.pdf").await;
    index(&keyed, brain, document, &handbook())
        .await
        .expect("index");
    let hits = search(&keyed, brain, &keyword("receipts")).await;
    assert_eq!(hits.len(), 1, "{hits:#?}");
    keyed.ping().await.expect("ping");
}

/// An `https://` index.qdrant_url reaches Qdrant over TLS, trusting the system's roots or
/// SSL_CERT_FILE: `engram doctor` says so, and files are learned and found through it. A
/// certificate this machine does not trust is a failure that says so (not an outage); plain
/// http:// to a TLS server fails pointing at https://.
#[test]
fn qdrant_over_tls() {
    use std::process::Command;
    let server = QdrantServer::with_tls();
    let dir = tempfile::tempdir().expect("temp dir");
    let config = |url: &str| {
        let path = dir.path().join("engram.toml");
        std::fs::write(
            &path,
            format!(
                "[store]\nurl = \"sqlite://{}/engram.db\"\n\n[index]\nkind = \"qdrant\"\n\
                 qdrant_url = \"{url}\"\ncollection = \"tls\"\n\n[ingest]\nextractor = \"{}\"\n",
                dir.path().display(),
                crate::ingest::extractor().display()
            ),
        )
        .expect("config");
        path
    };
    let run = |config: &std::path::Path, ca: Option<&std::path::Path>, args: &[&str]| {
        let mut command = Command::new(env!("CARGO_BIN_EXE_engram"));
        command
            .arg("--config")
            .arg(config)
            .args(args)
            .current_dir(dir.path())
            .env_remove("RUST_LOG")
            .env_remove("SSL_CERT_FILE");
        if let Some(ca) = ca {
            command.env("SSL_CERT_FILE", ca);
        }
        let output = command.output().expect("run engram");
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        (output.status.success(), text)
    };
    let tls = config(&server.url);
    let ca = server.ca();

    let (_, doctor) = run(&tls, Some(&ca), &["doctor"]);
    let index_line = |text: &str| {
        text.lines()
            .find(|line| line.contains("] index "))
            .unwrap_or_default()
            .to_string()
    };
    let line = index_line(&doctor);
    assert!(line.starts_with("[ok  ] index"), "{doctor}");
    assert!(
        line.contains(&format!("Qdrant 1.17.1 at {}", server.url)),
        "{doctor}"
    );

    let (_, untrusted) = run(&tls, None, &["doctor"]);
    let line = index_line(&untrusted);
    assert!(line.starts_with("[FAIL] index"), "{untrusted}");
    assert!(line.contains("certificate"), "{untrusted}");
    assert!(!line.contains("unreachable"), "{untrusted}");

    let plain = config(&server.url.replace("https://", "http://"));
    let (_, text) = run(&plain, None, &["doctor"]);
    let line = index_line(&text);
    assert!(line.starts_with("[FAIL] index"), "{text}");
    assert!(line.contains("https://"), "{text}");

    let tls = config(&server.url);
    let notes = dir.path().join("parking.md");
    std::fs::write(&notes, "# Parking\n\nVisitors park on level two.\n").expect("notes");
    let (ok, text) = run(&tls, Some(&ca), &["brain", "create", "handbook"]);
    assert!(ok, "{text}");
    let (ok, text) = run(
        &tls,
        Some(&ca),
        &["ingest", "handbook", &notes.display().to_string()],
    );
    assert!(ok, "{text}");
    let (ok, text) = run(
        &tls,
        Some(&ca),
        &[
            "ask",
            "handbook",
            "where do visitors park?",
            "--sources-only",
        ],
    );
    assert!(ok && text.contains("parking.md"), "{text}");
}

/// `engram doctor` on a Qdrant index: a collection of another width than the embeddings is
/// a failure saying both widths (engram would refuse to start on it), and a refused API key
/// names the setting and never the key.
#[tokio::test]
async fn doctor_reports_a_width_mismatch_and_a_refused_key() {
    let fx = Fixture::embedded().await;
    let collection = TestCollection::shared("doctor");
    open_qdrant(&collection, &fx.store, Some(DIMENSIONS))
        .await
        .expect("made at 384");
    let keyed = QdrantServer::with_api_key("doctor-key-1");
    let doctor = |url: &str, collection: &str, pairs: &[(&str, &str)]| {
        let dir = tempfile::tempdir().expect("temp dir");
        let output = std::process::Command::new(env!("CARGO_BIN_EXE_engram"))
            .arg("doctor")
            .current_dir(dir.path())
            .env_remove("RUST_LOG")
            .env(
                "ENGRAM__STORE__URL",
                format!("sqlite://{}/d.db", dir.path().display()),
            )
            .env("ENGRAM__INDEX__KIND", "qdrant")
            .env("ENGRAM__INDEX__QDRANT_URL", url)
            .env("ENGRAM__INDEX__COLLECTION", collection)
            .envs(pairs.iter().copied())
            .output()
            .expect("run engram doctor");
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        let line = text
            .lines()
            .find(|line| line.contains("] index "))
            .unwrap_or_default()
            .to_string();
        (line, text)
    };
    let embeddings = [
        ("ENGRAM__EMBEDDINGS__BASE_URL", "http://127.0.0.1:1/v1"),
        ("ENGRAM__EMBEDDINGS__DIMENSIONS", "768"),
    ];
    let (line, text) = doctor(&collection.url, &collection.name, &embeddings);
    assert!(line.starts_with("[FAIL] index"), "{text}");
    assert!(
        line.contains("embeddings have 768 dimensions but the index holds 384"),
        "{text}"
    );
    let (line, text) = doctor(
        &collection.url,
        &collection.name,
        &[
            ("ENGRAM__EMBEDDINGS__BASE_URL", "http://127.0.0.1:1/v1"),
            ("ENGRAM__EMBEDDINGS__DIMENSIONS", "384"),
        ],
    );
    assert!(line.starts_with("[ok  ] index"), "{text}");
    assert!(line.contains("0 chunks"), "{text}");

    let (line, text) = doctor(
        &keyed.url,
        "engram_chunks",
        &[("ENGRAM__INDEX__QDRANT_API_KEY", "not-the-key")],
    );
    assert!(line.starts_with("[FAIL] index"), "{text}");
    assert!(line.contains("refused index.qdrant_api_key"), "{text}");
    assert!(!text.contains("not-the-key"), "{text}");
    let (line, text) = doctor(
        &keyed.url,
        "engram_chunks",
        &[("ENGRAM__INDEX__QDRANT_API_KEY", "doctor-key-1")],
    );
    assert!(line.starts_with("[ok  ] index"), "{text}");
    assert!(text.contains("[WARN] index-tls"), "{text}");
    assert!(!text.contains("doctor-key-1"), "{text}");
}

/// A Qdrant that hangs (SIGSTOP: connections open, no answers) is an outage bounded by the
/// client's deadline: searches and pings fail as transient `Unavailable` instead of waiting
/// for ever, and work again once it answers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hung_qdrant_times_out_as_unavailable() {
    let server = QdrantServer::start();
    let collection = TestCollection::on(&server.url, "hung");
    let fx = Fixture::qdrant_in(collection, Secret::default()).await;
    let brain = fx.brain("hung").await;
    let document = fx.document(brain, "handbook.pdf").await;
    index(&fx.index, brain, document, &handbook())
        .await
        .expect("index");

    server.pause();
    let query = hybrid("sick leave");
    let (searched, pinged) = tokio::join!(fx.index.search(brain, &query), fx.index.ping());
    server.resume();
    for error in [
        searched.expect_err("no answer"),
        pinged.expect_err("no answer"),
    ] {
        assert!(
            matches!(error, IndexError::Unavailable(_)) && error.is_transient(),
            "{error:?}"
        );
    }
    let hits = search(&fx.index, brain, &query).await;
    assert!(hits[0].text.contains("sick leave"), "{hits:#?}");
}
