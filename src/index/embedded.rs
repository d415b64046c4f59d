//! The embedded index: FTS5 and sqlite-vec in the store's SQLite file. Keyword search scores
//! every query term by BM25 over an in-memory inverted index of the brain (`keyword`, cached in
//! `cache`, loaded from `chunks` in the background the first time a brain is searched); until it
//! is loaded, or when the brain is too large for the cache, FTS5 answers instead, matching a
//! per-brain token so a brain's search never touches other brains' chunks. Vector search is a
//! brute-force Hamming scan, in Rust, over the brain's binary-quantised embeddings (kept in
//! sqlite-vec's partition and cached in memory), whose best candidates are rescored by exact
//! cosine distance. Every result is re-read from `chunks` filtered by the brain.

use std::collections::HashSet;
use std::ffi::{c_char, c_int, c_void};
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteConnection, SqliteJournalMode, SqlitePool, SqlitePoolOptions,
    SqliteSynchronous,
};
use sqlx::Row;

use super::cache::{
    pack, BrainCodes, Claim, KeywordCache, KeywordLoad, TermCache, VectorCache, KEYWORD_BUDGET,
};
use super::keyword::BrainTerms;
use super::{
    candidates_per_side, reciprocal_rank_fusion, DocumentId, Index, IndexError, IndexedDocument,
    SearchHit, SearchQuery, TermStatistics,
};
use crate::brain::BrainId;
use crate::clock::now_ms;
use crate::config::{StoreBackend, StoreConfig};
use crate::store::rows;
use crate::text::{count_tokens, keyword_terms, query_terms, ChunkDraft};

/// Write transactions take SQLite's write lock when they begin: one that first read, then
/// wrote, fails with `SQLITE_BUSY_SNAPSHOT` ("database is locked", code 517) whenever another
/// process (`engram ingest` beside `engram serve`) wrote in between, which no busy timeout can
/// wait out. Taken at the start, the lock is simply waited for (`store.busy_timeout_ms`).
const WRITE_TRANSACTION: &str = "BEGIN IMMEDIATE";

/// BM25 column weights of `chunks_fts (brain, heading, text)`: the brain token scores nothing,
/// a query word in the heading path counts twice as much as one in the text.
const BM25: &str = "bm25(chunks_fts, 0.0, 2.0, 1.0)";

/// How many binary-quantised candidates the Hamming scan keeps per wanted vector hit, before
/// exact rescoring. Hamming distances over a few hundred bits tie a lot, and sign bits lose
/// magnitude, so a few times oversampling restores most of the exact ranking.
const OVERSAMPLE: usize = 4;

/// How many postings (summed document frequencies over all brains) an FTS5 keyword query may
/// walk; see `selective_terms`.
const POSTINGS_BUDGET: i64 = 3_000;

/// How many matches an FTS5 keyword query scores with `bm25()` at most, newest chunks first;
/// see `fts_keyword_ids`. FTS5's `bm25()` costs a few microseconds per row.
const SCORED_MATCHES: usize = 1_000;

/// The most Hamming candidates a vector search rescores (sqlite-vec's own KNN limit).
const VEC_MAX_K: usize = 4096;

/// Chunks read per query while loading a brain's keyword index (a few MB of text at a time).
const LOAD_PAGE: i64 = 2_000;

/// Registers sqlite-vec's functions and `vec0` module on one connection.
///
/// Called for every connection of the index's pools (the store's own connections never touch
/// `chunks_vec`, so they do not need it).
#[allow(unsafe_code)]
async fn register_sqlite_vec(connection: &mut SqliteConnection) -> Result<(), sqlx::Error> {
    type Init = unsafe extern "C" fn(*mut c_void, *mut *mut c_char, *const c_void) -> c_int;
    let mut handle = connection.lock_handle().await?;
    let db = handle.as_raw_handle().as_ptr().cast::<c_void>();
    // SAFETY: `sqlite3_vec_init` is sqlite-vec's extension entry point, compiled with
    // SQLITE_CORE into this binary and linked against the same SQLite as sqlx; its real C
    // signature is `int (sqlite3 *db, char **pzErrMsg, const sqlite3_api_routines *pApi)` (the
    // Rust crate declares it without arguments). `db` is a live connection we hold the lock of,
    // a null error pointer is allowed, and with SQLITE_CORE `pApi` is not read.
    let rc = unsafe {
        let init: Init =
            std::mem::transmute::<unsafe extern "C" fn(), Init>(sqlite_vec::sqlite3_vec_init);
        init(db, std::ptr::null_mut(), std::ptr::null())
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(sqlx::Error::Configuration(
            format!("sqlite-vec failed to initialise (SQLite error code {rc})").into(),
        ))
    }
}

/// FTS5 and sqlite-vec in the same SQLite file as the store.
#[derive(Debug)]
pub struct EmbeddedIndex {
    writer: SqlitePool,
    readers: SqlitePool,
    /// Embedding width, when embeddings are on.
    dimensions: Option<usize>,
    /// Each brain's binary codes, for the Hamming scan.
    vectors: VectorCache,
    /// Each searched brain's keyword index; shared with the tasks that load them.
    keywords: Arc<KeywordCache>,
    /// Document frequencies of keyword terms, for brains searched through FTS5.
    terms: TermCache,
}

impl EmbeddedIndex {
    /// Opens pools on the store's SQLite file (already migrated by the store) and, when
    /// `dimensions` is given, creates the vector table or checks that it has that width.
    pub async fn open(config: &StoreConfig, dimensions: Option<usize>) -> Result<Self, IndexError> {
        if config.url.backend() != Some(StoreBackend::Sqlite) {
            return Err(IndexError::Unavailable(format!(
                "the embedded index needs a SQLite store, not {}",
                config.url
            )));
        }
        if dimensions == Some(0) {
            return Err(IndexError::DimensionMismatch {
                expected: 1,
                got: 0,
            });
        }
        let busy_timeout = Duration::from_millis(config.busy_timeout_ms);
        let options = SqliteConnectOptions::from_str(config.url.expose())
            .map_err(|error| IndexError::Unavailable(format!("bad store.url: {error}")))?
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(busy_timeout)
            .foreign_keys(true);
        let pool = |max: u32| {
            SqlitePoolOptions::new()
                .max_connections(max)
                .acquire_timeout(busy_timeout)
                .after_connect(|connection, _| Box::pin(register_sqlite_vec(connection)))
        };
        let writer = pool(1).connect_with(options.clone()).await?;
        let readers = pool(config.max_connections.max(1))
            .connect_with(options)
            .await?;
        let index = Self {
            writer,
            readers,
            dimensions,
            vectors: VectorCache::default(),
            keywords: Arc::default(),
            terms: TermCache::default(),
        };
        if let Some(dimensions) = dimensions {
            index.prepare_vectors(dimensions).await?;
        }
        Ok(index)
    }

    /// Loads the brain's keyword index (and its vector codes, when embeddings are on) into
    /// memory now, if they are not already, and returns when they are. Searches never wait for
    /// a load: until a brain is loaded they use FTS5. A server can call this for the brains it
    /// expects to search; the retrieval benchmark calls it to measure the steady state.
    pub async fn warm(&self, brain: BrainId) -> Result<(), IndexError> {
        loop {
            match self.keywords.claim(brain.0) {
                Claim::Ready => break,
                // Returns when that load ends, successful or not; then look again.
                Claim::Wait(mut done) => while done.changed().await.is_ok() {},
                Claim::Load(load) => {
                    load_keywords(self.readers.clone(), load).await?;
                    break;
                }
            }
        }
        if self.dimensions.is_some() {
            self.brain_codes(brain).await?;
        }
        Ok(())
    }

    /// Closes the pools.
    pub async fn close(&self) {
        self.readers.close().await;
        self.writer.close().await;
    }

    /// Creates `chunks_vec` for `dimensions`, or refuses an existing one of another width, and
    /// drops vectors whose chunk is gone (a brain or document deleted through the store).
    async fn prepare_vectors(&self, dimensions: usize) -> Result<(), IndexError> {
        let existing: Option<String> = sqlx::query_scalar(
            "SELECT sql FROM sqlite_master WHERE type = 'table' AND name = 'chunks_vec'",
        )
        .fetch_optional(&self.writer)
        .await?;
        let bits = code_bytes(dimensions) * 8;
        match existing {
            Some(sql) => {
                let stored = stored_bits(&sql).ok_or_else(|| {
                    IndexError::Corrupt(format!("unexpected chunks_vec definition: {sql}"))
                })?;
                let stored_dimensions: Option<i64> =
                    sqlx::query_scalar("SELECT length(embedding) / 4 FROM chunk_vectors LIMIT 1")
                        .fetch_optional(&self.writer)
                        .await?;
                let stored_dimensions = stored_dimensions.and_then(|d| usize::try_from(d).ok());
                if stored != bits || stored_dimensions.is_some_and(|d| d != dimensions) {
                    return Err(IndexError::DimensionMismatch {
                        expected: stored_dimensions.unwrap_or(stored),
                        got: dimensions,
                    });
                }
            }
            None => {
                sqlx::query(&format!(
                    "CREATE VIRTUAL TABLE IF NOT EXISTS chunks_vec USING vec0(\
                     chunk_id INTEGER PRIMARY KEY, \
                     brain_id INTEGER PARTITION KEY, \
                     embedding bit[{bits}])"
                ))
                .execute(&self.writer)
                .await?;
            }
        }
        sqlx::query(
            "DELETE FROM chunks_vec WHERE chunk_id IN \
             (SELECT chunk_id FROM chunks_vec EXCEPT SELECT chunk_id FROM chunk_vectors)",
        )
        .execute(&self.writer)
        .await?;
        Ok(())
    }

    fn check_vector(&self, vector: &[f32]) -> Result<usize, IndexError> {
        super::check_vector(self.dimensions, vector)
    }

    /// Chunk ids of the brain's best keyword matches, best first, with their BM25 scores: from
    /// the brain's in-memory keyword index when it is loaded, else from FTS5 (and a load of the
    /// index starts in the background).
    async fn keyword_ids(
        &self,
        brain: BrainId,
        text: &str,
        limit: usize,
        skip: &Arc<HashSet<i64>>,
    ) -> Result<Vec<(i64, f32)>, IndexError> {
        let (cached, load) = self.keywords.lookup(brain.0);
        if let Some(load) = load {
            let readers = self.readers.clone();
            tokio::spawn(async move {
                if let Err(error) = load_keywords(readers, load).await {
                    tracing::warn!(
                        brain = brain.0,
                        %error,
                        "cannot load the brain's keyword index; FTS5 answers meanwhile"
                    );
                }
            });
        }
        let Some(cached) = cached else {
            return self.fts_keyword_ids(brain, text, limit, skip).await;
        };
        let terms = query_terms(text);
        if terms.is_empty() {
            return Ok(Vec::new());
        }
        let skip = skip.clone();
        tokio::task::spawn_blocking(move || {
            let cached = cached.read().unwrap_or_else(|e| e.into_inner());
            cached.search(&terms, limit, &skip)
        })
        .await
        .map_err(|error| IndexError::Unavailable(format!("keyword search: {error}")))
    }

    /// The chunk ids of the brain's `documents`.
    async fn hidden_chunks(
        &self,
        brain: BrainId,
        documents: &[i64],
    ) -> Result<HashSet<i64>, IndexError> {
        if documents.is_empty() {
            return Ok(HashSet::new());
        }
        let list = serde_json::to_string(documents)
            .map_err(|error| IndexError::Corrupt(format!("document ids: {error}")))?;
        let ids: Vec<i64> = sqlx::query_scalar(
            "SELECT id FROM chunks WHERE brain_id = $1 \
             AND document_id IN (SELECT value FROM json_each($2))",
        )
        .bind(brain.0)
        .bind(list)
        .fetch_all(&self.readers)
        .await?;
        Ok(ids.into_iter().collect())
    }

    /// `keyword_ids` through FTS5, for a brain whose keyword index is not in memory.
    async fn fts_keyword_ids(
        &self,
        brain: BrainId,
        text: &str,
        limit: usize,
        skip: &HashSet<i64>,
    ) -> Result<Vec<(i64, f32)>, IndexError> {
        let terms = self.selective_terms(text).await?;
        let Some(expression) = match_expression(brain, &terms) else {
            return Ok(Vec::new());
        };
        // `bm25()` is evaluated only for the rows the LIMIT lets through (rowid order needs no
        // sorter), so at most SCORED_MATCHES rows are scored; the best of them are kept here.
        // When the kept terms match fewer chunks than that (always, unless even the rarest term
        // is very common) this is the exact BM25 top `limit`.
        let sql = format!(
            "SELECT rowid, {BM25} FROM chunks_fts WHERE chunks_fts MATCH $1 \
             ORDER BY rowid DESC LIMIT $2"
        );
        let mut rows: Vec<(i64, f64)> = sqlx::query_as(&sql)
            .bind(expression)
            .bind(to_i64(SCORED_MATCHES))
            .fetch_all(&self.readers)
            .await?;
        // Left out before ranking, so they cannot push others out of the limit.
        rows.retain(|(id, _)| !skip.contains(id));
        rows.sort_by(|a, b| a.1.total_cmp(&b.1).then(a.0.cmp(&b.0)));
        rows.truncate(limit);
        Ok(rows
            .into_iter()
            .map(|(id, rank)| (id, -rank as f32))
            .collect())
    }

    /// The distinct keyword terms of `text`, rarest first, keeping terms while their summed
    /// document frequency stays within `POSTINGS_BUDGET` (the rarest term is always kept).
    ///
    /// FTS5 has no early termination: an OR query scores every chunk that has any term, so one
    /// very common word would make a query walk most of the brain. Common words carry little
    /// BM25 weight (their IDF is near zero), so leaving them out keeps the cost bounded at a
    /// small cost in recall for chunks that only share common words with the question.
    async fn selective_terms(&self, text: &str) -> Result<Vec<String>, IndexError> {
        let mut terms = keyword_terms(text);
        let mut seen = std::collections::HashSet::new();
        terms.retain(|term| seen.insert(term.clone()));
        if terms.len() <= 1 {
            return Ok(terms);
        }
        // fts5vocab counts a term's documents by walking its whole posting list, so the counts
        // are cached (see `cache::TERM_TTL`).
        let mut counts = self.terms.get(&terms);
        let missing: Vec<&String> = terms.iter().filter(|t| !counts.contains_key(*t)).collect();
        if !missing.is_empty() {
            let list = serde_json::to_string(&missing)
                .map_err(|error| IndexError::Corrupt(format!("terms: {error}")))?;
            let found: Vec<(String, i64)> = sqlx::query_as(
                "SELECT term, doc FROM chunks_fts_terms \
                 WHERE term IN (SELECT value FROM json_each($1))",
            )
            .bind(list)
            .fetch_all(&self.readers)
            .await?;
            let mut fresh: std::collections::HashMap<String, i64> =
                missing.into_iter().map(|t| (t.clone(), 0)).collect();
            fresh.extend(found);
            self.terms.insert(&fresh);
            counts.extend(fresh);
        }
        let frequency = |term: &String| counts.get(term).copied().unwrap_or(0);
        // A stable sort keeps the question's order among equally rare terms.
        terms.sort_by_key(|term| frequency(term));
        let mut budget = 0i64;
        let mut kept = Vec::with_capacity(terms.len());
        for term in terms {
            budget += frequency(&term);
            if kept.is_empty() || budget <= POSTINGS_BUDGET {
                kept.push(term);
            }
        }
        Ok(kept)
    }

    /// Chunk ids of the brain's nearest vectors, nearest first: a Hamming scan of the brain's
    /// partition for candidates, then exact cosine distance.
    async fn vector_ids(
        &self,
        brain: BrainId,
        vector: &[f32],
        limit: usize,
        skip: &Arc<HashSet<i64>>,
    ) -> Result<Vec<(i64, f32)>, IndexError> {
        let dimensions = self.check_vector(vector)?;
        let k = (limit * OVERSAMPLE).min(VEC_MAX_K);
        let words = code_bytes(dimensions).div_ceil(8);
        let codes = self.brain_codes(brain).await?;
        let query = pack(&binary_code(vector), words);
        let skip = skip.clone();
        let candidates = tokio::task::spawn_blocking(move || codes.nearest(&query, k, &skip))
            .await
            .map_err(|error| IndexError::Unavailable(format!("vector scan: {error}")))?;
        if candidates.is_empty() {
            return Ok(Vec::new());
        }
        let list = serde_json::to_string(&candidates)
            .map_err(|error| IndexError::Corrupt(format!("chunk ids: {error}")))?;
        let rows: Vec<(i64, Vec<u8>)> = sqlx::query_as(
            "SELECT chunk_id, embedding FROM chunk_vectors \
             WHERE chunk_id IN (SELECT value FROM json_each($1))",
        )
        .bind(list)
        .fetch_all(&self.readers)
        .await?;
        let mut scored: Vec<(f64, i64)> = rows
            .into_iter()
            .map(|(id, blob)| (cosine_distance(vector, &blob), id))
            .collect();
        scored.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
        scored.truncate(limit);
        Ok(scored
            .into_iter()
            .map(|(distance, id)| (id, (1.0 - distance) as f32))
            .collect())
    }

    /// The brain's binary codes: cached, or loaded from its `chunks_vec` partition (and cached).
    async fn brain_codes(&self, brain: BrainId) -> Result<Arc<BrainCodes>, IndexError> {
        if let Some(codes) = self.vectors.get(brain.0) {
            return Ok(codes);
        }
        let dimensions = self.dimensions.ok_or(IndexError::VectorsDisabled)?;
        let seen = self.vectors.generation(brain.0);
        let rows: Vec<(i64, Vec<u8>)> =
            sqlx::query_as("SELECT chunk_id, embedding FROM chunks_vec WHERE brain_id = $1")
                .bind(brain.0)
                .fetch_all(&self.readers)
                .await?;
        let codes = Arc::new(BrainCodes::new(rows, code_bytes(dimensions).div_ceil(8)));
        self.vectors.insert(brain.0, Arc::clone(&codes), seen);
        Ok(codes)
    }

    /// The rows behind `ids`, only those of `brain`.
    async fn hits(
        &self,
        brain: BrainId,
        ids: &[i64],
    ) -> Result<std::collections::HashMap<i64, SearchHit>, IndexError> {
        let list = serde_json::to_string(ids)
            .map_err(|error| IndexError::Corrupt(format!("chunk ids: {error}")))?;
        let rows = sqlx::query(
            "SELECT c.id, c.document_id, d.file_name, d.source_link, c.page, c.heading, c.text \
             FROM chunks c JOIN documents d ON d.id = c.document_id \
             WHERE c.brain_id = $1 AND c.id IN (SELECT value FROM json_each($2))",
        )
        .bind(brain.0)
        .bind(list)
        .fetch_all(&self.readers)
        .await?;
        let mut hits = std::collections::HashMap::with_capacity(rows.len());
        for row in rows {
            let page: Option<i64> = row.try_get("page")?;
            let hit = SearchHit {
                chunk_id: row.try_get("id")?,
                document_id: row.try_get("document_id")?,
                file_name: row.try_get("file_name")?,
                source_link: row.try_get("source_link")?,
                page: page
                    .map(|p| u32::try_from(p).map_err(|_| IndexError::Corrupt(format!("page {p}"))))
                    .transpose()?,
                heading: row.try_get("heading")?,
                text: row.try_get("text")?,
                score: 0.0,
                keyword_rank: None,
                vector_rank: None,
                vector_similarity: None,
            };
            hits.insert(hit.chunk_id, hit);
        }
        Ok(hits)
    }

    /// Deletes the chunks of a document and their vectors inside `tx`; returns the ids of the
    /// deleted chunks.
    async fn delete_chunks(
        tx: &mut SqliteConnection,
        document: DocumentId,
        vectors: bool,
    ) -> Result<Vec<i64>, IndexError> {
        let removed: Vec<i64> = sqlx::query_scalar("SELECT id FROM chunks WHERE document_id = $1")
            .bind(document.0)
            .fetch_all(&mut *tx)
            .await?;
        if vectors {
            for id in &removed {
                sqlx::query("DELETE FROM chunks_vec WHERE chunk_id = $1")
                    .bind(id)
                    .execute(&mut *tx)
                    .await?;
            }
        }
        // Full-text rows and exact vectors go with the chunks (trigger, cascade).
        sqlx::query("DELETE FROM chunks WHERE document_id = $1")
            .bind(document.0)
            .execute(&mut *tx)
            .await?;
        Ok(removed)
    }

    /// Whether the document exists in the brain.
    async fn owns(
        tx: &mut SqliteConnection,
        brain: BrainId,
        document: DocumentId,
    ) -> Result<bool, IndexError> {
        let found: Option<i64> =
            sqlx::query_scalar("SELECT id FROM documents WHERE id = $1 AND brain_id = $2")
                .bind(document.0)
                .bind(brain.0)
                .fetch_optional(&mut *tx)
                .await?;
        Ok(found.is_some())
    }
}

#[async_trait]
impl Index for EmbeddedIndex {
    async fn index_document(&self, document: IndexedDocument<'_>) -> Result<(), IndexError> {
        document.check_vectors(self.dimensions)?;
        let chunk_count = to_i64(document.chunks.len());
        let mut tx = self.writer.begin_with(WRITE_TRANSACTION).await?;
        if !Self::owns(&mut tx, document.brain, document.document).await? {
            return Err(IndexError::UnknownDocument {
                brain: document.brain,
                document: document.document.0,
            });
        }
        let removed =
            Self::delete_chunks(&mut tx, document.document, self.dimensions.is_some()).await?;
        let mut ids = Vec::with_capacity(document.chunks.len());
        let mut added = Vec::new();
        for (i, chunk) in document.chunks.iter().enumerate() {
            let id: i64 = sqlx::query_scalar(
                "INSERT INTO chunks (document_id, brain_id, ordinal, page, heading, text) \
                 VALUES ($1, $2, $3, $4, $5, $6) RETURNING id",
            )
            .bind(document.document.0)
            .bind(document.brain.0)
            .bind(i64::from(chunk.ordinal))
            .bind(chunk.page.map(i64::from))
            .bind(chunk.heading.as_deref())
            .bind(&chunk.text)
            .fetch_one(&mut *tx)
            .await?;
            ids.push(id);
            if let Some(vector) = document.vectors.and_then(|v| v.get(i)) {
                sqlx::query("INSERT INTO chunk_vectors (chunk_id, embedding) VALUES ($1, $2)")
                    .bind(id)
                    .bind(f32_blob(vector))
                    .execute(&mut *tx)
                    .await?;
                let code = binary_code(vector);
                sqlx::query(
                    "INSERT INTO chunks_vec (chunk_id, brain_id, embedding) \
                     VALUES ($1, $2, vec_bit($3))",
                )
                .bind(id)
                .bind(document.brain.0)
                .bind(&code)
                .execute(&mut *tx)
                .await?;
                added.push((id, pack(&code, code.len().div_ceil(8))));
            }
        }
        let now = now_ms();
        sqlx::query(rows::MARK_INDEXED)
            .bind(i64::from(document.pages))
            .bind(i64::from(document.ocr_pages))
            .bind(chunk_count)
            .bind(now)
            .bind(document.document.0)
            .bind(document.brain.0)
            .execute(&mut *tx)
            .await?;
        // The versions this one replaces go in the same transaction: a search sees the old
        // version or the new one, never both and never neither.
        let older: Vec<(i64, String)> = sqlx::query_as(rows::OLDER_VERSIONS)
            .bind(document.brain.0)
            .bind(document.document.0)
            .fetch_all(&mut *tx)
            .await?;
        let mut removed = removed;
        for (old, _) in &older {
            removed.extend(
                Self::delete_chunks(&mut tx, DocumentId(*old), self.dimensions.is_some()).await?,
            );
        }
        if !older.is_empty() {
            sqlx::query(rows::RECORD_OLDER_VERSIONS)
                .bind(document.brain.0)
                .bind(document.document.0)
                .bind(now)
                .bind(1_i64)
                .execute(&mut *tx)
                .await?;
            for (old, _) in &older {
                sqlx::query(rows::DELETE_VERSION_ROW)
                    .bind(document.brain.0)
                    .bind(old)
                    .execute(&mut *tx)
                    .await?;
            }
            for (_, sha256) in &older {
                sqlx::query(rows::RELEASE_FILE)
                    .bind(sha256)
                    .execute(&mut *tx)
                    .await?;
            }
        }
        // The caches learn the new chunks before the commit (a search drops chunks it cannot
        // read yet) and forget the old ones after it, so no search in between misses both.
        let chunks: Vec<_> = ids
            .iter()
            .zip(document.chunks)
            .map(|(id, chunk)| (*id, chunk.heading.as_deref(), chunk.text.as_str()))
            .collect();
        self.vectors.patch(document.brain.0, &[], &added);
        self.keywords.patch(document.brain.0, &[], &chunks);
        if let Err(error) = tx.commit().await {
            // Rolled back (or not known to be): the caches load the brain again.
            self.vectors.drop_brain(document.brain.0);
            self.keywords.patch(document.brain.0, &ids, &[]);
            self.keywords.mark_stale(document.brain.0);
            return Err(error.into());
        }
        // SQLite may give a new chunk the id of one deleted in the same transaction.
        let removed: Vec<i64> = removed.into_iter().filter(|id| !ids.contains(id)).collect();
        self.vectors.patch(document.brain.0, &removed, &[]);
        self.keywords.patch(document.brain.0, &removed, &[]);
        Ok(())
    }

    async fn forget_document(
        &self,
        brain: BrainId,
        document: DocumentId,
    ) -> Result<(), IndexError> {
        let mut tx = self.writer.begin_with(WRITE_TRANSACTION).await?;
        if !Self::owns(&mut tx, brain, document).await? {
            // Already gone (or never this brain's): nothing of it is searchable in `brain`.
            return Ok(());
        }
        let removed = Self::delete_chunks(&mut tx, document, self.dimensions.is_some()).await?;
        sqlx::query("DELETE FROM documents WHERE id = $1 AND brain_id = $2")
            .bind(document.0)
            .bind(brain.0)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        self.vectors.patch(brain.0, &removed, &[]);
        self.keywords.patch(brain.0, &removed, &[]);
        Ok(())
    }

    async fn document_chunks(
        &self,
        brain: BrainId,
        document: DocumentId,
    ) -> Result<Vec<ChunkDraft>, IndexError> {
        let rows: Vec<(i64, Option<i64>, Option<String>, String)> = sqlx::query_as(
            "SELECT ordinal, page, heading, text FROM chunks \
             WHERE brain_id = $1 AND document_id = $2 ORDER BY ordinal",
        )
        .bind(brain.0)
        .bind(document.0)
        .fetch_all(&self.readers)
        .await?;
        rows.into_iter()
            .map(|(ordinal, page, heading, text)| {
                let number = |value: i64| {
                    u32::try_from(value)
                        .map_err(|_| IndexError::Corrupt(format!("chunk number {value}")))
                };
                Ok(ChunkDraft {
                    ordinal: number(ordinal)?,
                    page: page.map(number).transpose()?,
                    heading,
                    tokens: u32::try_from(count_tokens(&text)).unwrap_or(u32::MAX),
                    text,
                })
            })
            .collect()
    }

    async fn term_statistics(
        &self,
        brain: BrainId,
        terms: &[String],
    ) -> Result<Option<TermStatistics>, IndexError> {
        let (cached, load) = self.keywords.lookup(brain.0);
        if let Some(load) = load {
            let readers = self.readers.clone();
            tokio::spawn(async move {
                if let Err(error) = load_keywords(readers, load).await {
                    tracing::warn!(brain = brain.0, %error, "cannot load the brain's keyword index");
                }
            });
        }
        if let Some(cached) = cached {
            let (chunks, holding) = cached
                .read()
                .unwrap_or_else(|e| e.into_inner())
                .statistics(terms);
            return Ok(Some(TermStatistics { chunks, holding }));
        }
        // Not in memory: count through FTS5, one bounded query per term.
        let chunks: i64 = sqlx::query_scalar("SELECT count(*) FROM chunks WHERE brain_id = $1")
            .bind(brain.0)
            .fetch_one(&self.readers)
            .await?;
        let mut holding = Vec::with_capacity(terms.len());
        for term in terms {
            let Some(expression) = match_expression(brain, std::slice::from_ref(term)) else {
                holding.push(0);
                continue;
            };
            let count: i64 =
                sqlx::query_scalar("SELECT count(*) FROM chunks_fts WHERE chunks_fts MATCH $1")
                    .bind(expression)
                    .fetch_one(&self.readers)
                    .await?;
            holding.push(u64::try_from(count).unwrap_or(0));
        }
        Ok(Some(TermStatistics {
            chunks: u64::try_from(chunks).unwrap_or(0),
            holding,
        }))
    }

    async fn search(
        &self,
        brain: BrainId,
        query: &SearchQuery,
    ) -> Result<Vec<SearchHit>, IndexError> {
        if query.limit == 0 {
            return Ok(Vec::new());
        }
        // The chunks of the documents this search must not see: never candidates.
        let skip = Arc::new(self.hidden_chunks(brain, &query.hidden).await?);
        // Cosine similarities of the vector side's chunks.
        let mut similarities: std::collections::HashMap<i64, f32> = Default::default();
        let ranked: Vec<(i64, f32, Option<u32>, Option<u32>)> = match &query.vector {
            None => self
                .keyword_ids(brain, &query.text, query.limit, &skip)
                .await?
                .into_iter()
                .enumerate()
                .map(|(i, (id, score))| (id, score, u32::try_from(i + 1).ok(), None))
                .collect(),
            Some(vector) => {
                self.check_vector(vector)?;
                let side = candidates_per_side(query.limit);
                // Both sides at once: the keyword query runs on a SQLite worker thread while
                // the Hamming scan runs on a blocking thread.
                let (keyword, nearest) = tokio::join!(
                    self.keyword_ids(brain, &query.text, side, &skip),
                    self.vector_ids(brain, vector, side, &skip)
                );
                let keyword: Vec<i64> = keyword?.into_iter().map(|(id, _)| id).collect();
                let nearest = nearest?;
                similarities.extend(nearest.iter().copied());
                let nearest: Vec<i64> = nearest.into_iter().map(|(id, _)| id).collect();
                let mut fused = reciprocal_rank_fusion(&keyword, &nearest);
                fused.truncate(query.limit);
                fused
            }
        };
        let ids: Vec<i64> = ranked.iter().map(|r| r.0).collect();
        let mut rows = self.hits(brain, &ids).await?;
        if ranked
            .iter()
            .any(|(id, _, keyword_rank, _)| keyword_rank.is_some() && !rows.contains_key(id))
        {
            // A keyword result is gone from `chunks`: deleted by another process (or with its
            // brain) since the brain's keyword index was loaded.
            self.keywords.mark_stale(brain.0);
        }
        Ok(ranked
            .into_iter()
            .filter_map(|(id, score, keyword_rank, vector_rank)| {
                rows.remove(&id).map(|hit| SearchHit {
                    score,
                    keyword_rank,
                    vector_rank,
                    vector_similarity: similarities.get(&id).copied(),
                    ..hit
                })
            })
            .collect())
    }
}

/// Reads a brain's chunks, in one read transaction, into a keyword index and caches it (or
/// records that it is too large for the cache); when the brain's documents have not changed
/// since its cached index was loaded, keeps that one instead. Tokenising runs on a blocking
/// thread, a page at a time, while the next page is read.
async fn load_keywords(readers: SqlitePool, load: KeywordLoad) -> Result<(), IndexError> {
    let _turn = load.turn().await;
    let mut tx = readers.begin().await?;
    let fingerprint: (i64, i64) = sqlx::query_as(
        // Modulo 2^31 so that the sum cannot overflow; a change of `updated_at` still changes it.
        "SELECT count(*), coalesce(sum(updated_at % 2147483648), 0) FROM documents \
         WHERE brain_id = $1",
    )
    .bind(load.brain())
    .fetch_one(&mut *tx)
    .await?;
    if load.unchanged(fingerprint) {
        load.renew();
        return Ok(());
    }
    let mut after = i64::MIN;
    let mut work = tokio::task::spawn_blocking(|| (BrainTerms::default(), true));
    loop {
        let rows: Vec<(i64, Option<String>, String)> = sqlx::query_as(
            "SELECT id, heading, text FROM chunks WHERE brain_id = $1 AND id > $2 \
             ORDER BY id LIMIT $3",
        )
        .bind(load.brain())
        .bind(after)
        .bind(LOAD_PAGE)
        .fetch_all(&mut *tx)
        .await?;
        let (mut terms, fits) = work
            .await
            .map_err(|error| IndexError::Unavailable(format!("keyword index load: {error}")))?;
        let Some(last) = rows.last().filter(|_| fits) else {
            tx.rollback().await?;
            let terms = fits.then(|| {
                terms.shrink();
                terms
            });
            load.finish(terms, fingerprint);
            return Ok(());
        };
        after = last.0;
        work = tokio::task::spawn_blocking(move || {
            let fits = rows
                .iter()
                .all(|(id, heading, text)| terms.add(*id, heading.as_deref(), text))
                && terms.bytes() <= KEYWORD_BUDGET;
            (terms, fits)
        });
    }
}

/// The FTS5 query for `terms` (from `keyword_terms`) in `brain`: the brain's token AND any of
/// the terms in the heading or text columns. Every term is a quoted string, so no user input is ever
/// read as FTS5 syntax. `None` when the text has no terms.
fn match_expression(brain: BrainId, terms: &[String]) -> Option<String> {
    if terms.is_empty() {
        return None;
    }
    let any = terms
        .iter()
        .map(|term| format!("\"{}\"", term.replace('"', "\"\"")))
        .collect::<Vec<_>>()
        .join(" OR ");
    Some(format!(
        "brain : \"b{}\" AND {{heading text}} : ({any})",
        brain.0
    ))
}

/// Bytes of the binary code of a `dimensions`-wide vector: one bit per dimension, rounded up
/// to whole bytes.
fn code_bytes(dimensions: usize) -> usize {
    dimensions.div_ceil(8)
}

/// The sign bits of `vector` (bit i set when component i is positive), least significant bit
/// first in each byte, zero-padded: the layout of sqlite-vec's `bit[N]` vectors.
fn binary_code(vector: &[f32]) -> Vec<u8> {
    let mut code = vec![0u8; code_bytes(vector.len())];
    for (i, value) in vector.iter().enumerate() {
        if *value > 0.0 {
            code[i / 8] |= 1 << (i % 8);
        }
    }
    code
}

/// Cosine distance between `vector` and a little-endian f32 blob (1 when either is zero or
/// the blob has another width), as sqlite-vec's `vec_distance_cosine` computes it.
fn cosine_distance(vector: &[f32], blob: &[u8]) -> f64 {
    if blob.len() != vector.len() * 4 {
        return 1.0;
    }
    let (mut dot, mut a, mut b) = (0f64, 0f64, 0f64);
    for (x, bytes) in vector.iter().zip(blob.chunks_exact(4)) {
        let y = f32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]);
        dot += f64::from(*x) * f64::from(y);
        a += f64::from(*x) * f64::from(*x);
        b += f64::from(y) * f64::from(y);
    }
    if a == 0.0 || b == 0.0 {
        return 1.0;
    }
    1.0 - dot / (a.sqrt() * b.sqrt())
}

/// `vector` as little-endian f32 bytes, sqlite-vec's float32 blob format.
fn f32_blob(vector: &[f32]) -> Vec<u8> {
    vector.iter().flat_map(|v| v.to_le_bytes()).collect()
}

/// The `N` of `embedding bit[N]` in a `chunks_vec` definition.
fn stored_bits(sql: &str) -> Option<usize> {
    let start = sql.find("bit[")? + 4;
    let end = start + sql[start..].find(']')?;
    sql[start..end].trim().parse().ok()
}

fn to_i64(value: usize) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::brain::{BrainName, TenantKey};
    use crate::config::StoreUrl;
    use crate::store::Store;
    use crate::text::ChunkDraft;

    /// A migrated store in a temp dir, and an index on it without embeddings.
    struct Fixture {
        config: StoreConfig,
        store: Arc<dyn Store>,
        index: EmbeddedIndex,
        _dir: tempfile::TempDir,
    }

    impl Fixture {
        async fn new() -> Self {
            let dir = tempfile::tempdir().expect("temp dir");
            let config = StoreConfig {
                url: StoreUrl::new(format!("sqlite://{}/engram.db", dir.path().display())),
                max_connections: 4,
                busy_timeout_ms: 5_000,
            };
            let store = crate::store::open(&config).await.expect("store");
            let index = EmbeddedIndex::open(&config, None).await.expect("index");
            Self {
                config,
                store,
                index,
                _dir: dir,
            }
        }

        async fn brain(&self, name: &str) -> BrainId {
            let tenant = self.store.ensure_tenant(&TenantKey::local()).await.unwrap();
            let name = BrainName::parse(name).unwrap();
            self.store.create_brain(tenant, &name).await.unwrap().id
        }

        /// A document row with `texts` indexed as its chunks, through `index`.
        async fn document(
            &self,
            index: &EmbeddedIndex,
            brain: BrainId,
            texts: &[&str],
        ) -> DocumentId {
            let id: i64 = sqlx::query_scalar(
                "INSERT INTO documents (brain_id, sha256, file_name, status, created_at, \
                 updated_at) VALUES ($1, hex(randomblob(16)), 'doc.md', 'pending', 0, 0) \
                 RETURNING id",
            )
            .bind(brain.0)
            .fetch_one(&index.writer)
            .await
            .unwrap();
            let chunks: Vec<ChunkDraft> = texts
                .iter()
                .enumerate()
                .map(|(i, text)| ChunkDraft {
                    ordinal: u32::try_from(i).unwrap(),
                    page: None,
                    heading: (i == 0).then(|| "Overview".to_string()),
                    text: (*text).to_string(),
                    tokens: 0,
                })
                .collect();
            index
                .index_document(IndexedDocument {
                    brain,
                    document: DocumentId(id),
                    pages: 1,
                    ocr_pages: 0,
                    chunks: &chunks,
                    vectors: None,
                })
                .await
                .unwrap();
            DocumentId(id)
        }
    }

    fn keyword(text: &str) -> SearchQuery {
        SearchQuery {
            text: text.to_string(),
            vector: None,
            limit: 10,
            hidden: Vec::new(),
        }
    }

    async fn texts(index: &EmbeddedIndex, brain: BrainId, text: &str) -> Vec<String> {
        let hits = index.search(brain, &keyword(text)).await.unwrap();
        hits.into_iter().map(|hit| hit.text).collect()
    }

    const HANDBOOK: &[&str] = &[
        "Employees get 25 days of paid holiday each year.",
        "Report sick leave to your manager before 10 am.",
        "Submit receipts within 30 days to get a refund.",
        "Rotate your password every 90 days; use a password manager.",
        "Holiday requests go to your manager two weeks ahead.",
    ];

    /// The in-memory index and FTS5 rank the same chunks first on a small brain.
    #[tokio::test]
    async fn memory_and_fts5_agree_on_the_best_chunk() {
        let fx = Fixture::new().await;
        let brain = fx.brain("handbook").await;
        fx.document(&fx.index, brain, HANDBOOK).await;
        let questions = [
            "sick leave",
            "password manager",
            "holiday days",
            "receipts refund",
            "manager",
            "Overview of holidays",
        ];
        let mut fts = Vec::new();
        for question in questions {
            let ids = fx
                .index
                .fts_keyword_ids(brain, question, 3, &HashSet::new())
                .await
                .unwrap();
            fts.push(ids.into_iter().map(|(id, _)| id).collect::<Vec<_>>());
        }
        fx.index.warm(brain).await.unwrap();
        for (question, fts) in questions.iter().zip(fts) {
            let memory: Vec<i64> = fx
                .index
                .keyword_ids(brain, question, 3, &Arc::new(HashSet::new()))
                .await
                .unwrap()
                .into_iter()
                .map(|(id, _)| id)
                .collect();
            assert_eq!(
                memory.first(),
                fts.first(),
                "{question}: {memory:?} vs {fts:?}"
            );
            assert_eq!(memory.len(), fts.len(), "{question}");
        }
    }

    /// Two brains with the same text: a warm brain's search returns only its own chunks, and
    /// an empty brain none.
    #[tokio::test]
    async fn loaded_brains_stay_apart() {
        let fx = Fixture::new().await;
        let x = fx.brain("x").await;
        let y = fx.brain("y").await;
        let empty = fx.brain("empty").await;
        let in_x = fx.document(&fx.index, x, HANDBOOK).await;
        let in_y = fx.document(&fx.index, y, HANDBOOK).await;
        for brain in [x, y, empty] {
            fx.index.warm(brain).await.unwrap();
        }
        let from_x = fx.index.search(x, &keyword("manager")).await.unwrap();
        let from_y = fx.index.search(y, &keyword("manager")).await.unwrap();
        assert_eq!(from_x.len(), 3);
        assert!(from_x.iter().all(|hit| hit.document_id == in_x.0));
        assert!(from_y.iter().all(|hit| hit.document_id == in_y.0));
        assert!(fx
            .index
            .search(empty, &keyword("manager"))
            .await
            .unwrap()
            .is_empty());
    }

    /// This process's writes show at once in a loaded brain: new chunks, re-indexed and
    /// forgotten documents.
    #[tokio::test]
    async fn a_loaded_brain_follows_this_process_writes() {
        let fx = Fixture::new().await;
        let brain = fx.brain("writes").await;
        let handbook = fx.document(&fx.index, brain, HANDBOOK).await;
        fx.index.warm(brain).await.unwrap();
        assert_eq!(texts(&fx.index, brain, "zeppelin").await.len(), 0);

        let airships = fx
            .document(&fx.index, brain, &["Zeppelin pilots fly airships."])
            .await;
        assert_eq!(
            texts(&fx.index, brain, "zeppelin").await,
            vec!["Zeppelin pilots fly airships."]
        );
        fx.index.forget_document(brain, handbook).await.unwrap();
        assert!(texts(&fx.index, brain, "manager receipts").await.is_empty());
        fx.index.forget_document(brain, airships).await.unwrap();
        assert!(texts(&fx.index, brain, "zeppelin").await.is_empty());
        // Everything above was served from memory, not FTS5.
        assert!(fx.index.keywords.lookup(brain.0).0.is_some());
    }

    /// Another process's writes: a deleted chunk is never returned, and the brain is reloaded
    /// once a search finds one of its results gone, which brings in the other process's new
    /// chunks too.
    #[tokio::test]
    async fn another_process_writes_show_after_a_reload() {
        let fx = Fixture::new().await;
        let brain = fx.brain("shared").await;
        let handbook = fx.document(&fx.index, brain, HANDBOOK).await;
        fx.index.warm(brain).await.unwrap();

        let other = EmbeddedIndex::open(&fx.config, None).await.unwrap();
        other.forget_document(brain, handbook).await.unwrap();
        fx.document(&other, brain, &["Zeppelin pilots report to the manager."])
            .await;
        // Not loaded yet, but the forgotten chunks are filtered out of the results.
        assert!(texts(&fx.index, brain, "manager")
            .await
            .iter()
            .all(|text| !HANDBOOK.contains(&text.as_str())));
        // That search found a result gone: the next load sees the other process's chunks.
        fx.index.warm(brain).await.unwrap();
        assert_eq!(
            texts(&fx.index, brain, "zeppelin manager").await,
            vec!["Zeppelin pilots report to the manager."]
        );
        other.close().await;
    }

    #[test]
    fn match_expression_quotes_every_term() {
        let expression = match_expression(BrainId(7), &keyword_terms("NEAR(\"a\" b*) AND -c:d"));
        assert_eq!(
            expression.as_deref(),
            Some("brain : \"b7\" AND {heading text} : (\"near\" OR \"b\" OR \"c\" OR \"d\")")
        );
        assert_eq!(
            match_expression(BrainId(7), &keyword_terms("the of \"*\"")),
            None
        );
    }

    #[test]
    fn binary_code_is_sign_bits_lsb_first() {
        let code = binary_code(&[1.0, -1.0, 0.5, 0.0, 0.0, 0.0, 0.0, 0.0, 2.0]);
        assert_eq!(code, vec![0b0000_0101, 0b0000_0001]);
    }

    #[test]
    fn stored_width_is_parsed() {
        let sql = "CREATE VIRTUAL TABLE chunks_vec USING vec0(chunk_id INTEGER PRIMARY KEY, \
                   brain_id INTEGER PARTITION KEY, embedding bit[384])";
        assert_eq!(stored_bits(sql), Some(384));
    }
}
