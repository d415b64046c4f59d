//! The Qdrant index: every brain's chunks as points of one collection (`index.collection`),
//! for deployments whose store is PostgreSQL.
//!
//! Each point holds one chunk: a named dense vector (`dense`, cosine, `embeddings.dimensions`
//! wide, when embeddings are on) and a named sparse vector (`brain_keywords`) for BM25 keyword
//! scoring with the brain's own statistics, as the embedded index scores. Sparse terms are
//! split exactly as the embedded index splits them (`keyword::chunk_term_frequencies`,
//! `text::query_terms`); a term's id is a stable 32-bit FNV-1a hash of the brain and the
//! term, and its value in a chunk the BM25 term-frequency factor. The chunk's term ids are
//! also a payload field (`terms`, an integer index), so Qdrant can count the brain's chunks
//! holding a term: a question's weights are the BM25 IDF of each of its terms over the brain's
//! chunks (counted, then kept per brain for a minute), never Qdrant's collection-wide IDF, so
//! another brain's or tenant's chunks cannot change a brain's keyword scores. The payload also
//! carries what a search hit cites (text, heading, page, file name, source link) and
//! `brain_id`, a keyword payload index marked as the tenant key: every query, count and delete
//! is filtered by it, and the brain comes by signature. The dense vectors get no global HNSW
//! graph, one per brain instead (`m = 0`, `payload_m = 16`, Qdrant's multitenant layout).
//!
//! The collection is created by whichever process opens it first; a process that loses the
//! race finds it made and goes on. An existing collection is checked before use: a dense
//! vector of another width, or no `brain_keywords` sparse vector scored as engram writes it,
//! is refused with the reason. `index.qdrant_api_key` is sent as Qdrant's `api-key` header; `https://`
//! URLs use TLS with the system's root certificates.
//!
//! Point ids are deterministic (`point_id`: the document id and the chunk's position), so
//! re-indexing a document overwrites its points; points past its new chunk count are deleted
//! afterwards. The store stays the source of truth for documents: `index_document` checks the
//! document belongs to the brain and marks it indexed there, which retires the versions it
//! replaces in the same store transaction; searches show only points of indexed documents, so
//! a new version's points are hidden until that switch and the old versions' points from it on,
//! until `purge_replaced` deletes them. `forget_document` deletes the points and then the row.
//! None of this is one transaction with Qdrant: a failure in between leaves the job to be
//! retried, and every step is idempotent.
//!
//! Requests are built by pure functions (unit-tested below without a server); the I/O methods
//! only send them, each under the client's timeout. "Qdrant unreachable" (connection refused,
//! deadline exceeded, overloaded, a server-side internal error) becomes the transient
//! `IndexError::Unavailable`; a refused API key or an untrusted certificate is a permanent
//! `Rejected` that says so.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use futures_util::{StreamExt, TryStreamExt};
use qdrant_client::qdrant::point_id::PointIdOptions;
use qdrant_client::qdrant::value::Kind;
use qdrant_client::qdrant::vectors_config::Config as VectorsConfigKind;
use qdrant_client::qdrant::{
    CollectionInfo, Condition, CountPointsBuilder, CreateCollectionBuilder,
    CreateFieldIndexCollectionBuilder, DeletePointsBuilder, Distance, FieldType, Filter,
    HnswConfigDiffBuilder, IntegerIndexParamsBuilder, KeywordIndexParamsBuilder, Modifier,
    NamedVectors, PointId, PointStruct, PrefetchQueryBuilder, Query, QueryBatchPointsBuilder,
    QueryPoints, QueryPointsBuilder, Range, RrfBuilder, ScoredPoint, ScrollPointsBuilder,
    SparseVectorParamsBuilder, SparseVectorsConfigBuilder, UpsertPointsBuilder, Value, Vector,
    VectorParamsBuilder, VectorsConfigBuilder,
};
use qdrant_client::{Payload, Qdrant, QdrantError};

use super::keyword::chunk_term_frequencies;
use super::{candidates_per_side, DocumentId, Index, IndexError, IndexedDocument, SearchHit};
use super::{SearchQuery, RRF_K};
use crate::brain::BrainId;
use crate::config::{IndexConfig, Secret};
use crate::store::{IndexedCounts, Store, StoreError};
use crate::text::{count_tokens, query_terms, ChunkDraft};

/// Name of the dense (embedding) vector of every point.
pub const DENSE: &str = "dense";
/// Name of the sparse (keyword) vector of every point, whose term ids are per brain. (A
/// collection made before term ids were per brain has `keywords` instead, and is refused.)
pub const SPARSE: &str = "brain_keywords";

/// Payload keys.
const BRAIN: &str = "brain_id";
/// The chunk's sparse term ids, for counting a brain's chunks that hold a term.
const TERMS: &str = "terms";
const DOCUMENT: &str = "document_id";
/// The chunk's position in its document (0-based), the low bits of its point id.
const SLOT: &str = "slot";
const ORDINAL: &str = "ordinal";
const PAGE: &str = "page";
const HEADING: &str = "heading";
const TEXT: &str = "text";
const FILE_NAME: &str = "file_name";
const SOURCE_LINK: &str = "source_link";

/// Points per upsert request: a few hundred KB of text and vectors at 384–1536 dimensions.
pub const UPSERT_BATCH: usize = 64;

/// Every request's deadline (the client's timeout), and how long connecting may take.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// How long opening the index keeps asking a server that is unavailable for a moment.
pub const OPEN_PATIENCE: Duration = Duration::from_secs(15);

/// The dense vectors' HNSW graphs: none over the whole collection (`m = 0`: every search is
/// filtered by one brain), one per brain large enough to need one (`payload_m`, built along
/// the `brain_id` tenant index). Smaller brains are searched exactly.
const HNSW_M: u64 = 0;
const HNSW_PAYLOAD_M: u64 = 16;

/// Qdrant scores RRF as Σ 1 / (k + rank) with ranks from 0 (its tuning guide: the paper's 60
/// "maps to k=61"); the embedded fusion counts ranks from 1 with `RRF_K`, so this is one more
/// and both give the first place 1 / 61.
const QDRANT_RRF_K: u32 = RRF_K as u32 + 1;

/// Bits of a point id given to the chunk's position: a document may have 2^20 chunks.
const SLOT_BITS: u32 = 20;

/// BM25 term-frequency saturation and length normalisation, as the embedded index uses them;
/// the question's weights supply the IDF factor (`idf`).
const K1: f32 = 1.2;
const B: f32 = 0.75;
/// The average chunk length (terms) the length normalisation assumes: Qdrant keeps no
/// per-brain average, and chunks are cut to a similar size (`ingest.chunk_tokens`).
const AVERAGE_LENGTH: f32 = 150.0;

/// How long a brain's counted keyword statistics are used before they are counted again
/// (this process's own writes to the brain drop them at once).
const STATS_TTL: Duration = Duration::from_secs(60);
/// Term counts kept in all brains' statistics before they are all dropped (a few MB).
const MAX_CACHED_TERMS: usize = 200_000;
/// Count requests in flight at once for one question.
const COUNTS_AT_ONCE: usize = 16;

/// Where the collection lives and how it is shaped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QdrantOptions {
    /// gRPC URL, `http://` or `https://` (TLS with the system's root certificates).
    pub url: String,
    /// Sent as the `api-key` header when set.
    pub api_key: Secret,
    pub collection: String,
    /// Dense vector width; `None` without embeddings (keyword search only).
    pub dimensions: Option<usize>,
}

impl QdrantOptions {
    /// The options `[index]` names, with the embedding width (`None`: keyword search only).
    pub fn from_config(index: &IndexConfig, dimensions: Option<usize>) -> Self {
        Self {
            url: index.qdrant_url.clone(),
            api_key: index.qdrant_api_key.clone(),
            collection: index.collection.clone(),
            dimensions,
        }
    }
}

/// The `Index` over a Qdrant collection; documents' rows stay in `store`.
pub struct QdrantIndex {
    client: Qdrant,
    options: QdrantOptions,
    store: Arc<dyn Store>,
    /// Brains' keyword statistics, as counted in Qdrant.
    stats: std::sync::Mutex<StatsCache>,
}

impl std::fmt::Debug for QdrantIndex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QdrantIndex")
            .field("options", &self.options)
            .finish_non_exhaustive()
    }
}

impl QdrantIndex {
    /// Connects, and creates the collection and its payload indexes when they are missing (or
    /// checks an existing collection's dense width).
    /// A server that is unavailable for a moment — restarting, or still loading the
    /// collection another process has just created ("0 of 0 read operations failed") — is
    /// asked again for up to `OPEN_PATIENCE`.
    pub async fn open(options: QdrantOptions, store: Arc<dyn Store>) -> Result<Self, IndexError> {
        let index = Self::connect(options, store)?;
        let deadline = Instant::now() + OPEN_PATIENCE;
        let mut pause = Duration::from_millis(100);
        loop {
            match index.prepare().await {
                Ok(()) => return Ok(index),
                Err(IndexError::Unavailable(reason)) if Instant::now() + pause < deadline => {
                    tracing::debug!(%reason, "Qdrant not ready for the collection yet; asking again");
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(Duration::from_secs(2));
                }
                Err(error) => return Err(error),
            }
        }
    }

    /// A client for the collection without any request yet (gRPC connects lazily): for
    /// readiness checks, which must answer "unavailable" rather than fail to start.
    pub fn connect(options: QdrantOptions, store: Arc<dyn Store>) -> Result<Self, IndexError> {
        if options.dimensions == Some(0) {
            return Err(IndexError::DimensionMismatch {
                expected: 1,
                got: 0,
            });
        }
        let client = client(&options)?;
        Ok(Self {
            client,
            options,
            store,
            stats: std::sync::Mutex::default(),
        })
    }

    /// Makes the collection and its payload indexes when missing, then checks its shape.
    /// Processes that start together may all try: Qdrant creates a collection once and
    /// answers the others that it exists, and creating an existing payload index again
    /// changes nothing; whoever loses a race carries on with what the winner made.
    async fn prepare(&self) -> Result<(), IndexError> {
        let name = &self.options.collection;
        let info = match self.collection_info().await? {
            Some(info) => info,
            None => {
                let created = call(
                    &self.options,
                    self.client
                        .create_collection(create_collection(&self.options)),
                )
                .await;
                match (created, self.collection_info().await?) {
                    (_, Some(info)) => info,
                    (Err(error), None) => return Err(error),
                    (Ok(_), None) => {
                        return Err(IndexError::Corrupt(format!(
                            "Qdrant created collection `{name}` but does not describe it"
                        )))
                    }
                }
            }
        };
        check_collection(name, &info, self.options.dimensions)?;
        let existing: Vec<&str> = info.payload_schema.keys().map(String::as_str).collect();
        for request in missing_payload_indexes(name, &existing) {
            call(&self.options, self.client.create_field_index(request)).await?;
        }
        Ok(())
    }

    /// The collection's description, `None` when it does not exist.
    async fn collection_info(&self) -> Result<Option<CollectionInfo>, IndexError> {
        collection_info(&self.client, &self.options).await
    }

    /// Points of a document in the collection (for tests and diagnostics).
    pub async fn count_points(
        &self,
        brain: BrainId,
        document: DocumentId,
    ) -> Result<u64, IndexError> {
        self.count(document_filter(brain, document)).await
    }

    /// The brain's chunk count and, for each of `terms`, its chunks holding the term: from
    /// the statistics kept for the brain, else counted in Qdrant (exact counts through the
    /// `brain_id` and `terms` payload indexes, a few at once).
    async fn statistics(
        &self,
        brain: BrainId,
        terms: &[u32],
    ) -> Result<(u64, Vec<u64>), IndexError> {
        let (chunks, known) = self.cache().get(brain, terms, Instant::now());
        let chunks = match chunks {
            Some(chunks) => chunks,
            None => self.count(brain_filter(brain)).await?,
        };
        let missing: Vec<u32> = terms
            .iter()
            .zip(&known)
            .filter(|(_, known)| known.is_none())
            .map(|(term, _)| *term)
            .collect();
        let filters: Vec<Filter> = missing
            .iter()
            .map(|term| {
                Filter::must([
                    brain_condition(brain),
                    Condition::matches(TERMS, i64::from(*term)),
                ])
            })
            .collect();
        let counted: Vec<u64> = futures_util::stream::iter(filters)
            .map(|filter| self.count(filter))
            .buffered(COUNTS_AT_ONCE)
            .try_collect()
            .await?;
        let mut counted_pairs = missing.iter().copied().zip(counted.iter().copied());
        let frequencies = known
            .into_iter()
            .map(|known| {
                known
                    .or_else(|| counted_pairs.next().map(|(_, n)| n))
                    .unwrap_or(0)
            })
            .collect();
        self.cache().put(
            brain,
            chunks,
            missing.into_iter().zip(counted),
            Instant::now(),
        );
        Ok((chunks, frequencies))
    }

    /// Points matching `filter`, counted exactly.
    async fn count(&self, filter: Filter) -> Result<u64, IndexError> {
        let request = CountPointsBuilder::new(self.options.collection.as_str())
            .filter(filter)
            .exact(true);
        let response = call(&self.options, self.client.count(request)).await?;
        Ok(response.result.map_or(0, |r| r.count))
    }

    fn cache(&self) -> std::sync::MutexGuard<'_, StatsCache> {
        self.stats
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The first step of `index_document`: the document's points written (the new version's
    /// hidden from searches until the store marks it indexed) and its stale points deleted.
    /// Public so that tests can stop between this and the store's switch, as a crash would.
    pub async fn write_points(&self, document: &IndexedDocument<'_>) -> Result<(), IndexError> {
        document.check_vectors(self.options.dimensions)?;
        let row = self
            .store
            .document(document.document)
            .await
            .map_err(store_error)?
            .filter(|row| row.brain == document.brain)
            .ok_or(IndexError::UnknownDocument {
                brain: document.brain,
                document: document.document.0,
            })?;
        let source = Source {
            file_name: &row.file_name,
            source_link: row.source_link.as_deref(),
        };
        let points = points(document, &source)?;
        let collection = self.options.collection.as_str();
        for batch in batches(points) {
            let upsert = UpsertPointsBuilder::new(collection, batch).wait(true);
            call(&self.options, self.client.upsert_points(upsert)).await?;
        }
        let stale = DeletePointsBuilder::new(collection)
            .points(stale_filter(
                document.brain,
                document.document,
                document.chunks.len(),
            ))
            .wait(true);
        call(&self.options, self.client.delete_points(stale)).await?;
        self.cache().forget(document.brain);
        Ok(())
    }

    fn check_vector(&self, vector: &[f32]) -> Result<(), IndexError> {
        super::check_vector(self.options.dimensions, vector).map(drop)
    }
}

#[async_trait]
impl Index for QdrantIndex {
    async fn index_document(&self, document: IndexedDocument<'_>) -> Result<(), IndexError> {
        self.write_points(&document).await?;
        let collection = self.options.collection.as_str();
        let counts = IndexedCounts {
            pages: document.pages,
            ocr_pages: document.ocr_pages,
            chunks: u32::try_from(document.chunks.len()).unwrap_or(u32::MAX),
        };
        // The switch: until the store marks the new version indexed, searches hide its points;
        // from then on they hide the replaced versions' points, which go right after (or, after
        // a crash in between, on the job's next attempt: `purge_replaced`).
        match self
            .store
            .mark_document_indexed(document.brain, document.document, counts)
            .await
        {
            Ok(_) => {}
            Err(StoreError::NotFound(_)) => {
                // Replaced by a newer version, forgotten or deleted meanwhile: its points go.
                let delete = DeletePointsBuilder::new(collection)
                    .points(document_filter(document.brain, document.document))
                    .wait(true);
                call(&self.options, self.client.delete_points(delete)).await?;
                return Err(IndexError::UnknownDocument {
                    brain: document.brain,
                    document: document.document.0,
                });
            }
            Err(error) => return Err(store_error(error)),
        }
        self.purge_replaced(document.brain).await
    }

    async fn purge_replaced(&self, brain: BrainId) -> Result<(), IndexError> {
        let replaced = self
            .store
            .unpurged_versions(brain)
            .await
            .map_err(store_error)?;
        if replaced.is_empty() {
            return Ok(());
        }
        for document in &replaced {
            let delete = DeletePointsBuilder::new(self.options.collection.as_str())
                .points(document_filter(brain, *document))
                .wait(true);
            call(&self.options, self.client.delete_points(delete)).await?;
        }
        self.cache().forget(brain);
        self.store
            .mark_versions_purged(brain, &replaced)
            .await
            .map_err(store_error)
    }

    async fn document_chunks(
        &self,
        brain: BrainId,
        document: DocumentId,
    ) -> Result<Vec<ChunkDraft>, IndexError> {
        let mut chunks = Vec::new();
        let mut offset: Option<PointId> = None;
        loop {
            let mut request = ScrollPointsBuilder::new(self.options.collection.as_str())
                .filter(document_filter(brain, document))
                .limit(256)
                .with_payload(true)
                .with_vectors(false);
            if let Some(offset) = offset.take() {
                request = request.offset(offset);
            }
            let response = call(&self.options, self.client.scroll(request)).await?;
            for point in &response.result {
                chunks.push(chunk_from_payload(&point.payload)?);
            }
            match response.next_page_offset {
                Some(next) => offset = Some(next),
                None => break,
            }
        }
        chunks.sort_by_key(|chunk| chunk.ordinal);
        Ok(chunks)
    }

    async fn forget_document(
        &self,
        brain: BrainId,
        document: DocumentId,
    ) -> Result<(), IndexError> {
        // The filter names the brain, so another brain's document is never touched; points
        // are deleted even when the row is already gone (a crash between the two steps).
        let delete = DeletePointsBuilder::new(self.options.collection.as_str())
            .points(document_filter(brain, document))
            .wait(true);
        call(&self.options, self.client.delete_points(delete)).await?;
        self.cache().forget(brain);
        self.store
            .delete_document(brain, document)
            .await
            .map_err(store_error)?;
        Ok(())
    }

    async fn forget_brain(&self, brain: BrainId) -> Result<(), IndexError> {
        // Before the brain's row goes: a store that reuses ids must not hand a new brain the
        // old one's points.
        let delete = DeletePointsBuilder::new(self.options.collection.as_str())
            .points(brain_filter(brain))
            .wait(true);
        call(&self.options, self.client.delete_points(delete)).await?;
        self.cache().forget(brain);
        Ok(())
    }

    async fn search(
        &self,
        brain: BrainId,
        query: &SearchQuery,
    ) -> Result<Vec<SearchHit>, IndexError> {
        if let Some(vector) = &query.vector {
            self.check_vector(vector)?;
        }
        let terms = query_sparse(brain, &query.text);
        let sparse = if terms.is_empty() || query.limit == 0 {
            Vec::new()
        } else {
            let ids: Vec<u32> = terms.iter().map(|(id, _)| *id).collect();
            let (chunks, frequencies) = self.statistics(brain, &ids).await?;
            weighted(&ids, chunks, &frequencies)
        };
        let Some(requests) = search_requests(&self.options.collection, brain, query, &sparse)
        else {
            return Ok(Vec::new());
        };
        let batch = QueryBatchPointsBuilder::new(self.options.collection.as_str(), requests.all());
        let response = call(&self.options, self.client.query_batch(batch)).await?;
        let results = response
            .result
            .into_iter()
            .map(|batch| batch.result)
            .collect();
        let (main, keyword_side, vector_side) = requests.split(results);
        let mut hits = hits(brain, main, &keyword_side, &vector_side, requests.hybrid())?;
        // Only indexed documents answer: a new version's points before the store's switch, and
        // a replaced version's after it, are left out.
        let mut documents: Vec<i64> = hits.iter().map(|hit| hit.document_id).collect();
        documents.sort_unstable();
        documents.dedup();
        let indexed = self
            .store
            .indexed_among(brain, &documents)
            .await
            .map_err(store_error)?;
        hits.retain(|hit| indexed.contains(&hit.document_id));
        Ok(hits)
    }

    async fn ping(&self) -> Result<(), IndexError> {
        call(&self.options, self.client.health_check())
            .await
            .map(|_| ())
    }
}

/// A client for `options.url` with the API key, the timeouts, and no request yet.
fn client(options: &QdrantOptions) -> Result<Qdrant, IndexError> {
    let api_key = options
        .api_key
        .is_set()
        .then(|| options.api_key.expose().to_string());
    Qdrant::from_url(&options.url)
        .api_key(api_key)
        .timeout(REQUEST_TIMEOUT)
        .connect_timeout(CONNECT_TIMEOUT)
        .skip_compatibility_check()
        .build()
        .map_err(|error| unreachable_or_rejected(options, error))
}

async fn collection_info(
    client: &Qdrant,
    options: &QdrantOptions,
) -> Result<Option<CollectionInfo>, IndexError> {
    let name = options.collection.as_str();
    let found = within(options, async {
        match client.collection_info(name).await {
            Ok(reply) => Ok(Some(reply)),
            // NOT_FOUND (5): no such collection.
            Err(QdrantError::ResponseError { status }) if i32::from(status.code()) == 5 => Ok(None),
            Err(error) => Err(unreachable_or_rejected(options, error)),
        }
    })
    .await?;
    found
        .map(|reply| {
            reply.result.ok_or_else(|| {
                IndexError::Corrupt(format!("Qdrant sent no description of collection `{name}`"))
            })
        })
        .transpose()
}

/// One client call, its error mapped, under `REQUEST_TIMEOUT` in all: qdrant-client tries a
/// points call again on a broken connection, each try under the channel's own timeout, so a
/// hung server would otherwise hold a caller twice as long.
async fn call<T>(
    options: &QdrantOptions,
    call: impl std::future::Future<Output = Result<T, QdrantError>>,
) -> Result<T, IndexError> {
    within(options, async {
        call.await
            .map_err(|error| unreachable_or_rejected(options, error))
    })
    .await
}

/// `work` under `REQUEST_TIMEOUT`; past it, Qdrant is unavailable (transient).
async fn within<T>(
    options: &QdrantOptions,
    work: impl std::future::Future<Output = Result<T, IndexError>>,
) -> Result<T, IndexError> {
    tokio::time::timeout(REQUEST_TIMEOUT, work)
        .await
        .unwrap_or_else(|_| {
            Err(IndexError::Unavailable(format!(
                "Qdrant at {}: no answer within {} s",
                options.url,
                REQUEST_TIMEOUT.as_secs()
            )))
        })
}

/// What `engram doctor` learns from Qdrant: the server's version, whether the API key lets
/// engram in, and whether the collection is missing (made at start), fit for `options`, or
/// not (the error says why).
#[derive(Debug)]
pub struct Diagnosis {
    pub version: String,
    /// `None`: the collection does not exist yet; else its points and whether it fits.
    pub collection: Option<(u64, Result<(), IndexError>)>,
}

/// Asks the server at `options.url` what `Diagnosis` holds: a health check (which Qdrant
/// answers without the API key), then the collection (which needs it).
pub async fn diagnose(options: &QdrantOptions) -> Result<Diagnosis, IndexError> {
    let client = client(options)?;
    let version = call(options, client.health_check()).await?.version;
    let collection = collection_info(&client, options).await?.map(|info| {
        (
            info.points_count.unwrap_or(0),
            check_collection(&options.collection, &info, options.dimensions),
        )
    });
    Ok(Diagnosis {
        version,
        collection,
    })
}

/// Whether an existing collection can serve: the per-brain sparse vector without a modifier
/// (engram weighs questions itself), and, with embeddings, the dense vector of exactly their
/// width. A collection that does not fit is refused, never altered: it holds other brains'
/// points.
pub fn check_collection(
    name: &str,
    info: &CollectionInfo,
    dimensions: Option<usize>,
) -> Result<(), IndexError> {
    let params = info
        .config
        .as_ref()
        .and_then(|config| config.params.as_ref());
    let sparse = params
        .and_then(|params| params.sparse_vectors_config.as_ref())
        .and_then(|config| config.map.get(SPARSE));
    let plain = |params: &qdrant_client::qdrant::SparseVectorParams| {
        params.modifier.unwrap_or(Modifier::None as i32) == Modifier::None as i32
    };
    if !sparse.is_some_and(plain) {
        return Err(IndexError::Corrupt(format!(
            "the Qdrant collection `{name}` has no `{SPARSE}` sparse vector scored as engram \
             writes it (it was made by an older engram or by hand): set index.collection to a \
             new name and post the files again"
        )));
    }
    let Some(dimensions) = dimensions else {
        return Ok(());
    };
    let stored = params
        .and_then(|params| params.vectors_config.as_ref())
        .and_then(|config| config.config.as_ref());
    let stored = match stored {
        Some(VectorsConfigKind::ParamsMap(map)) => map.map.get(DENSE).map(|p| p.size),
        _ => None,
    };
    match stored.and_then(|size| usize::try_from(size).ok()) {
        Some(size) if size == dimensions => Ok(()),
        Some(size) => Err(IndexError::DimensionMismatch {
            expected: size,
            got: dimensions,
        }),
        None => Err(IndexError::Corrupt(format!(
            "the Qdrant collection `{name}` has no `{DENSE}` vector: it was made without \
             embeddings; set index.collection to a new name and post the files again"
        ))),
    }
}

/// What a search hit cites about the chunk's document.
#[derive(Debug, Clone, Copy)]
pub struct Source<'a> {
    pub file_name: &'a str,
    pub source_link: Option<&'a str>,
}

/// Maps a client error: unreachable, timed out or overloaded → transient `Unavailable`; a
/// refused API key or a failed TLS handshake → `Rejected` saying which setting to check;
/// anything else → `Rejected`. The API key never appears in the text.
fn unreachable_or_rejected(options: &QdrantOptions, error: QdrantError) -> IndexError {
    let url = &options.url;
    let text = redact(&error.to_string(), &options.api_key);
    // gRPC codes: CANCELLED 1, UNKNOWN 2 (transport failures), PERMISSION_DENIED 7,
    // DEADLINE_EXCEEDED 4, RESOURCE_EXHAUSTED 8, ABORTED 10, UNAVAILABLE 14,
    // UNAUTHENTICATED 16. The client reports a refused or failed connection as INTERNAL
    // "Failed to connect to …" (seen against a closed port), a TLS failure among them. The
    // server's own INTERNAL 13 is a server-side failure, as an HTTP 5xx: seen while a
    // collection another process has just created is still loading ("Service internal error:
    // 0 of 0 read operations failed"), so worth trying again.
    let (transient, refused, tls) = match &error {
        QdrantError::ResponseError { status } => {
            let connect = status.message().starts_with(CONNECT_FAILED);
            let tls = connect && is_tls_failure(status.message());
            (
                (matches!(i32::from(status.code()), 1 | 2 | 4 | 8 | 10 | 13 | 14) || connect)
                    && !tls,
                matches!(i32::from(status.code()), 7 | 16),
                tls,
            )
        }
        QdrantError::ResourceExhaustedError { .. } | QdrantError::Io(_) => (true, false, false),
        _ => (false, false, false),
    };
    if refused {
        let key = if options.api_key.is_set() {
            "refused index.qdrant_api_key"
        } else {
            "wants an API key: set index.qdrant_api_key"
        };
        IndexError::Rejected(format!("Qdrant at {url} {key} ({text})"))
    } else if tls {
        IndexError::Rejected(format!(
            "no TLS connection to Qdrant at {url}: {} ({text})",
            tls_hint(url)
        ))
    } else if transient {
        IndexError::Unavailable(format!("Qdrant at {url}: {text}"))
    } else {
        IndexError::Rejected(text)
    }
}

/// How qdrant-client's channel pool words a connection failure (an INTERNAL status).
const CONNECT_FAILED: &str = "Failed to connect to";

/// Whether a connection failure happened in the TLS handshake (the transport error's
/// debug text, which qdrant-client puts in the status message).
fn is_tls_failure(message: &str) -> bool {
    // rustls's errors as tonic prints them: an untrusted or mismatched certificate, a server
    // that answered the handshake in plain text, or a refusing alert.
    [
        "InvalidCertificate",
        "InvalidMessage",
        "certificate",
        "AlertReceived",
        "HandshakeFailure",
    ]
    .iter()
    .any(|word| message.contains(word))
}

fn tls_hint(url: &str) -> &'static str {
    if url.starts_with("https://") {
        "check that the server speaks TLS on this port and that its certificate is signed by a \
         root this machine trusts (the system's certificates, or SSL_CERT_FILE) for this host name"
    } else {
        "the server wants TLS: use an https:// URL in index.qdrant_url"
    }
}

/// `text` with every occurrence of the secret replaced (qdrant-client quotes a malformed key
/// in its error).
fn redact(text: &str, secret: &Secret) -> String {
    if secret.is_set() {
        text.replace(secret.expose(), "[redacted]")
    } else {
        text.to_string()
    }
}

fn store_error(error: crate::store::StoreError) -> IndexError {
    if error.is_transient() {
        IndexError::Unavailable(error.to_string())
    } else {
        IndexError::Corrupt(format!("store: {error}"))
    }
}

/// The point id of the chunk at `slot` (0-based position) of `document`: the document id in
/// the high bits, the slot in the low `SLOT_BITS`. The same document and position always give
/// the same id, so re-indexing overwrites. Also the hit's `chunk_id`.
pub fn point_id(document: DocumentId, slot: usize) -> Result<u64, IndexError> {
    let slot = u64::try_from(slot)
        .ok()
        .filter(|slot| *slot < 1 << SLOT_BITS)
        .ok_or_else(|| {
            IndexError::Corrupt(format!(
                "a document may have at most {} chunks",
                1u64 << SLOT_BITS
            ))
        })?;
    let document = u64::try_from(document.0)
        .ok()
        .filter(|id| *id < 1 << (63 - SLOT_BITS))
        .ok_or_else(|| IndexError::Corrupt(format!("document id {} out of range", document.0)))?;
    Ok(document << SLOT_BITS | slot)
}

/// A term's sparse index in `brain`: 32-bit FNV-1a of the brain id, a separator and the
/// term's UTF-8 bytes (stable across processes, versions and machines, unlike `std`'s
/// hasher). The same word has a different id in every brain, so Qdrant's document frequency
/// of an id counts one brain's chunks (up to a rare hash collision with another brain's word).
pub fn term_id(brain: BrainId, term: &str) -> u32 {
    let mut hash: u32 = 0x811c_9dc5;
    let brain = brain.0.to_le_bytes();
    for byte in brain.iter().chain(&[0xff]).chain(term.as_bytes()) {
        hash ^= u32::from(*byte);
        hash = hash.wrapping_mul(0x0100_0193);
    }
    hash
}

/// A chunk's sparse vector in `brain`: `(term id, BM25 term-frequency factor)`, sorted by id;
/// terms whose hashes collide are summed.
pub fn chunk_sparse(brain: BrainId, heading: Option<&str>, text: &str) -> Vec<(u32, f32)> {
    let (frequencies, length) = chunk_term_frequencies(heading, text);
    let norm = K1 * (1.0 - B + B * length as f32 / AVERAGE_LENGTH);
    let mut vector: Vec<(u32, f32)> = frequencies
        .into_iter()
        .map(|(term, f)| {
            let f = f as f32;
            (term_id(brain, &term), f * (K1 + 1.0) / (f + norm))
        })
        .collect();
    merge(&mut vector);
    vector
}

/// A question's sparse vector in `brain`: weight 1 per distinct term (`weighted` gives the
/// IDF), sorted by id. Empty when the question has no searchable term.
pub fn query_sparse(brain: BrainId, text: &str) -> Vec<(u32, f32)> {
    let mut vector: Vec<(u32, f32)> = query_terms(text)
        .iter()
        .map(|term| (term_id(brain, term), 1.0))
        .collect();
    merge(&mut vector);
    vector
}

/// BM25's IDF of a term held by `frequency` of a brain's `chunks` chunks, as the embedded
/// index computes it (FTS5's formula, floored just above zero for terms in over half of them).
pub fn idf(chunks: u64, frequency: u64) -> f32 {
    let (chunks, frequency) = (chunks as f64, frequency.min(chunks) as f64);
    let idf = ((chunks - frequency + 0.5) / (frequency + 0.5)).ln();
    if idf > 0.0 {
        idf as f32
    } else {
        1e-6
    }
}

/// A question's sparse vector: each term id weighted by its IDF in the brain.
pub fn weighted(terms: &[u32], chunks: u64, frequencies: &[u64]) -> Vec<(u32, f32)> {
    terms
        .iter()
        .zip(frequencies)
        .map(|(term, frequency)| (*term, idf(chunks, *frequency)))
        .collect()
}

/// Brains' keyword statistics counted in Qdrant: per brain, its chunks and its chunks per
/// term, all dropped `STATS_TTL` after the brain's first count, or when this process writes
/// to the brain; everything is dropped past `MAX_CACHED_TERMS` terms.
#[derive(Debug, Default)]
struct StatsCache {
    brains: HashMap<BrainId, BrainStats>,
    terms: usize,
}

#[derive(Debug)]
struct BrainStats {
    since: Instant,
    chunks: u64,
    frequencies: HashMap<u32, u64>,
}

impl StatsCache {
    /// The brain's chunks and the frequencies known of `terms` (in order), if still fresh.
    fn get(
        &mut self,
        brain: BrainId,
        terms: &[u32],
        now: Instant,
    ) -> (Option<u64>, Vec<Option<u64>>) {
        if self
            .brains
            .get(&brain)
            .is_some_and(|stats| now.duration_since(stats.since) > STATS_TTL)
        {
            self.forget(brain);
        }
        match self.brains.get(&brain) {
            Some(stats) => (
                Some(stats.chunks),
                terms
                    .iter()
                    .map(|term| stats.frequencies.get(term).copied())
                    .collect(),
            ),
            None => (None, vec![None; terms.len()]),
        }
    }

    fn put(
        &mut self,
        brain: BrainId,
        chunks: u64,
        frequencies: impl IntoIterator<Item = (u32, u64)>,
        now: Instant,
    ) {
        if self.terms > MAX_CACHED_TERMS {
            self.brains.clear();
            self.terms = 0;
        }
        let stats = self.brains.entry(brain).or_insert_with(|| BrainStats {
            since: now,
            chunks,
            frequencies: HashMap::new(),
        });
        for (term, frequency) in frequencies {
            if stats.frequencies.insert(term, frequency).is_none() {
                self.terms += 1;
            }
        }
    }

    fn forget(&mut self, brain: BrainId) {
        if let Some(stats) = self.brains.remove(&brain) {
            self.terms = self.terms.saturating_sub(stats.frequencies.len());
        }
    }
}

fn merge(vector: &mut Vec<(u32, f32)>) {
    vector.sort_by_key(|(id, _)| *id);
    vector.dedup_by(|later, kept| {
        if later.0 == kept.0 {
            kept.1 += later.1;
            true
        } else {
            false
        }
    });
}

/// Only this brain's points.
pub fn brain_filter(brain: BrainId) -> Filter {
    Filter::must([brain_condition(brain)])
}

/// A search's filter: the brain's points, without those of the documents it must not see.
pub fn search_filter(brain: BrainId, hidden: &[i64]) -> Filter {
    let mut filter = brain_filter(brain);
    if !hidden.is_empty() {
        filter
            .must_not
            .push(Condition::matches(DOCUMENT, hidden.to_vec()));
    }
    filter
}

fn brain_condition(brain: BrainId) -> Condition {
    Condition::matches(BRAIN, brain.0.to_string())
}

/// This brain's points of one document.
pub fn document_filter(brain: BrainId, document: DocumentId) -> Filter {
    Filter::must([
        brain_condition(brain),
        Condition::matches(DOCUMENT, document.0),
    ])
}

/// This brain's points of one document at positions `chunks` and beyond: left over from a
/// longer previous version.
pub fn stale_filter(brain: BrainId, document: DocumentId, chunks: usize) -> Filter {
    Filter::must([
        brain_condition(brain),
        Condition::matches(DOCUMENT, document.0),
        Condition::range(
            SLOT,
            Range {
                gte: Some(chunks as f64),
                ..Range::default()
            },
        ),
    ])
}

/// The collection: the named sparse vector (no modifier: questions carry the brain's IDF), and
/// the named dense vector (cosine, HNSW graphs per brain) when embeddings are on.
pub fn create_collection(options: &QdrantOptions) -> CreateCollectionBuilder {
    let mut sparse = SparseVectorsConfigBuilder::default();
    sparse.add_named_vector_params(
        SPARSE,
        SparseVectorParamsBuilder::default().modifier(Modifier::None),
    );
    let mut builder =
        CreateCollectionBuilder::new(options.collection.as_str()).sparse_vectors_config(sparse);
    if let Some(dimensions) = options.dimensions {
        let mut dense = VectorsConfigBuilder::default();
        dense.add_named_vector_params(
            DENSE,
            VectorParamsBuilder::new(dimensions as u64, Distance::Cosine),
        );
        builder = builder.vectors_config(dense).hnsw_config(
            HnswConfigDiffBuilder::default()
                .m(HNSW_M)
                .payload_m(HNSW_PAYLOAD_M),
        );
    }
    builder.timeout(REQUEST_TIMEOUT.as_secs())
}

/// The payload indexes not in `existing` (the collection's indexed fields): `brain_id`
/// (keyword, the tenant key, along which the dense vectors' per-brain HNSW graphs are built),
/// `document_id` and `slot` (integers, for deletes) and `terms` (integers, for counting a
/// term's chunks); no HNSW links along the integer ones.
pub fn missing_payload_indexes(
    collection: &str,
    existing: &[&str],
) -> Vec<CreateFieldIndexCollectionBuilder> {
    let all = [
        CreateFieldIndexCollectionBuilder::new(collection, BRAIN, FieldType::Keyword)
            .field_index_params(KeywordIndexParamsBuilder::default().is_tenant(true))
            .wait(true),
        CreateFieldIndexCollectionBuilder::new(collection, DOCUMENT, FieldType::Integer)
            .field_index_params(IntegerIndexParamsBuilder::new(true, false).enable_hnsw(false))
            .wait(true),
        CreateFieldIndexCollectionBuilder::new(collection, SLOT, FieldType::Integer)
            .field_index_params(IntegerIndexParamsBuilder::new(false, true).enable_hnsw(false))
            .wait(true),
        CreateFieldIndexCollectionBuilder::new(collection, TERMS, FieldType::Integer)
            .field_index_params(IntegerIndexParamsBuilder::new(true, false).enable_hnsw(false))
            .wait(true),
    ];
    [BRAIN, DOCUMENT, SLOT, TERMS]
        .into_iter()
        .zip(all)
        .filter(|(field, _)| !existing.contains(field))
        .map(|(_, request)| request)
        .collect()
}

/// One point per chunk, in order.
pub fn points(
    document: &IndexedDocument<'_>,
    source: &Source<'_>,
) -> Result<Vec<PointStruct>, IndexError> {
    document
        .chunks
        .iter()
        .enumerate()
        .map(|(slot, chunk)| {
            let vector = document.vectors.and_then(|v| v.get(slot));
            point(
                document.brain,
                document.document,
                slot,
                chunk,
                vector,
                source,
            )
        })
        .collect()
}

fn point(
    brain: BrainId,
    document: DocumentId,
    slot: usize,
    chunk: &ChunkDraft,
    vector: Option<&Vec<f32>>,
    source: &Source<'_>,
) -> Result<PointStruct, IndexError> {
    let id = point_id(document, slot)?;
    let (indices, values): (Vec<u32>, Vec<f32>) =
        chunk_sparse(brain, chunk.heading.as_deref(), &chunk.text)
            .into_iter()
            .unzip();
    let terms: Vec<i64> = indices.iter().map(|id| i64::from(*id)).collect();
    let mut vectors =
        NamedVectors::default().add_vector(SPARSE, Vector::new_sparse(indices, values));
    if let Some(vector) = vector {
        vectors = vectors.add_vector(DENSE, Vector::new_dense(vector.clone()));
    }
    let mut payload = Payload::new();
    payload.insert(BRAIN, brain.0.to_string());
    payload.insert(DOCUMENT, document.0);
    payload.insert(SLOT, slot as i64);
    payload.insert(ORDINAL, i64::from(chunk.ordinal));
    payload.insert(TERMS, terms);
    if let Some(page) = chunk.page {
        payload.insert(PAGE, i64::from(page));
    }
    if let Some(heading) = &chunk.heading {
        payload.insert(HEADING, heading.as_str());
    }
    payload.insert(TEXT, chunk.text.as_str());
    payload.insert(FILE_NAME, source.file_name);
    if let Some(link) = source.source_link {
        payload.insert(SOURCE_LINK, link);
    }
    Ok(PointStruct::new(id, vectors, payload))
}

/// Points split into upsert requests of at most `UPSERT_BATCH`.
pub fn batches(points: Vec<PointStruct>) -> Vec<Vec<PointStruct>> {
    let mut batches = Vec::with_capacity(points.len().div_ceil(UPSERT_BATCH));
    let mut points = points.into_iter().peekable();
    while points.peek().is_some() {
        batches.push(points.by_ref().take(UPSERT_BATCH).collect());
    }
    batches
}

/// A search as Qdrant requests: the query that answers (keyword-only, or both sides fused by
/// RRF), and for a hybrid search each side alone, ids only, for the hits' ranks.
#[derive(Debug, Clone)]
pub struct SearchRequests {
    pub main: QueryPoints,
    pub keyword_side: Option<QueryPoints>,
    pub vector_side: Option<QueryPoints>,
}

impl SearchRequests {
    /// All requests, as sent in one batch: the answering one, then the keyword side, then
    /// the vector side (each when present).
    pub fn all(&self) -> Vec<QueryPoints> {
        std::iter::once(&self.main)
            .chain(&self.keyword_side)
            .chain(&self.vector_side)
            .cloned()
            .collect()
    }

    fn hybrid(&self) -> bool {
        self.vector_side.is_some()
    }

    /// Splits a batch answer (in `all`'s order) into `(main, keyword side, vector side)`.
    fn split(
        &self,
        results: Vec<Vec<ScoredPoint>>,
    ) -> (Vec<ScoredPoint>, Vec<ScoredPoint>, Vec<ScoredPoint>) {
        let mut results = results.into_iter();
        let main = results.next().unwrap_or_default();
        let keyword = match self.keyword_side {
            Some(_) => results.next().unwrap_or_default(),
            None => Vec::new(),
        };
        let vector = match self.vector_side {
            Some(_) => results.next().unwrap_or_default(),
            None => Vec::new(),
        };
        (main, keyword, vector)
    }
}

/// The requests for `query` in `brain`, every one filtered by the brain, its keyword side
/// asking for `sparse` (the question's weighted term ids; empty: no keyword side); `None`
/// when nothing can match (limit 0, or a keyword search without a searchable term).
pub fn search_requests(
    collection: &str,
    brain: BrainId,
    query: &SearchQuery,
    sparse: &[(u32, f32)],
) -> Option<SearchRequests> {
    if query.limit == 0 {
        return None;
    }
    let limit = query.limit as u64;
    let sparse = sparse.to_vec();
    let Some(vector) = &query.vector else {
        if sparse.is_empty() {
            return None;
        }
        let main = QueryPointsBuilder::new(collection)
            .query(Query::from(sparse))
            .using(SPARSE)
            .filter(search_filter(brain, &query.hidden))
            .limit(limit)
            .with_payload(true)
            .build();
        return Some(SearchRequests {
            main,
            keyword_side: None,
            vector_side: None,
        });
    };
    let side = candidates_per_side(query.limit) as u64;
    let filter = search_filter(brain, &query.hidden);
    let side_query = |query: Query, using: &str| {
        QueryPointsBuilder::new(collection)
            .query(query)
            .using(using)
            .filter(filter.clone())
            .limit(side)
            .with_payload(false)
            .build()
    };
    let prefetch = |query: Query, using: &str| {
        PrefetchQueryBuilder::default()
            .query(query)
            .using(using)
            .filter(filter.clone())
            .limit(side)
    };
    let mut main = QueryPointsBuilder::new(collection);
    let mut keyword_side = None;
    if !sparse.is_empty() {
        main = main.add_prefetch(prefetch(Query::from(sparse.clone()), SPARSE));
        keyword_side = Some(side_query(Query::from(sparse), SPARSE));
    }
    let main = main
        .add_prefetch(prefetch(Query::from(vector.clone()), DENSE))
        .query(Query::new_rrf(RrfBuilder::with_k(QDRANT_RRF_K)))
        .filter(filter.clone())
        .limit(limit)
        .with_payload(true)
        .build();
    Some(SearchRequests {
        main,
        keyword_side,
        vector_side: Some(side_query(Query::from(vector.clone()), DENSE)),
    })
}

/// Search hits from Qdrant's answer, checked to be `brain`'s, with ranks from the side lists.
pub fn hits(
    brain: BrainId,
    main: Vec<ScoredPoint>,
    keyword_side: &[ScoredPoint],
    vector_side: &[ScoredPoint],
    hybrid: bool,
) -> Result<Vec<SearchHit>, IndexError> {
    let ranks = |side: &[ScoredPoint]| -> HashMap<u64, u32> {
        side.iter()
            .filter_map(numeric_id)
            .enumerate()
            .map(|(i, id)| (id, u32::try_from(i + 1).unwrap_or(u32::MAX)))
            .collect()
    };
    let keyword_ranks = ranks(keyword_side);
    let vector_ranks = ranks(vector_side);
    // The dense vectors' distance is cosine, so the vector side's scores are similarities.
    let similarities: HashMap<u64, f32> = vector_side
        .iter()
        .filter_map(|point| numeric_id(point).map(|id| (id, point.score)))
        .collect();
    let mut hits = Vec::with_capacity(main.len());
    for (i, point) in main.into_iter().enumerate() {
        let id = numeric_id(&point)
            .ok_or_else(|| IndexError::Corrupt("a Qdrant point without a numeric id".into()))?;
        let payload = &point.payload;
        if string(payload, BRAIN).as_deref() != Some(brain.0.to_string().as_str()) {
            return Err(IndexError::Corrupt(format!(
                "Qdrant returned point {id} of another brain"
            )));
        }
        let (keyword_rank, vector_rank) = if hybrid {
            (
                keyword_ranks.get(&id).copied(),
                vector_ranks.get(&id).copied(),
            )
        } else {
            (u32::try_from(i + 1).ok(), None)
        };
        let page = integer(payload, PAGE)
            .map(|p| u32::try_from(p).map_err(|_| IndexError::Corrupt(format!("page {p}"))))
            .transpose()?;
        hits.push(SearchHit {
            chunk_id: i64::try_from(id)
                .map_err(|_| IndexError::Corrupt(format!("point id {id}")))?,
            document_id: integer(payload, DOCUMENT)
                .ok_or_else(|| IndexError::Corrupt(format!("point {id} has no {DOCUMENT}")))?,
            file_name: string(payload, FILE_NAME).unwrap_or_default(),
            source_link: string(payload, SOURCE_LINK),
            page,
            heading: string(payload, HEADING),
            text: string(payload, TEXT).unwrap_or_default(),
            score: point.score,
            keyword_rank,
            vector_rank,
            vector_similarity: if hybrid {
                similarities.get(&id).copied()
            } else {
                None
            },
        });
    }
    Ok(hits)
}

/// A chunk as a point's payload holds it.
fn chunk_from_payload(payload: &HashMap<String, Value>) -> Result<ChunkDraft, IndexError> {
    let number = |key: &str, value: i64| {
        u32::try_from(value).map_err(|_| IndexError::Corrupt(format!("{key} {value}")))
    };
    let ordinal = integer(payload, ORDINAL)
        .ok_or_else(|| IndexError::Corrupt(format!("a point without {ORDINAL}")))?;
    let text = string(payload, TEXT).unwrap_or_default();
    Ok(ChunkDraft {
        ordinal: number(ORDINAL, ordinal)?,
        page: integer(payload, PAGE)
            .map(|page| number(PAGE, page))
            .transpose()?,
        heading: string(payload, HEADING),
        tokens: u32::try_from(count_tokens(&text)).unwrap_or(u32::MAX),
        text,
    })
}

fn numeric_id(point: &ScoredPoint) -> Option<u64> {
    match point.id.as_ref()?.point_id_options.as_ref()? {
        PointIdOptions::Num(id) => Some(*id),
        PointIdOptions::Uuid(_) => None,
    }
}

fn string(payload: &HashMap<String, Value>, key: &str) -> Option<String> {
    match payload.get(key)?.kind.as_ref()? {
        Kind::StringValue(value) => Some(value.clone()),
        _ => None,
    }
}

fn integer(payload: &HashMap<String, Value>, key: &str) -> Option<i64> {
    match payload.get(key)?.kind.as_ref()? {
        Kind::IntegerValue(value) => Some(*value),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use qdrant_client::qdrant::condition::ConditionOneOf;
    use qdrant_client::qdrant::r#match::MatchValue;
    use qdrant_client::qdrant::vectors::VectorsOptions;
    use qdrant_client::qdrant::{CreateCollection, CreateFieldIndexCollection, PointId};

    use super::*;
    use crate::index::keyword::chunk_term_frequencies;

    const BRAIN_ID: BrainId = BrainId(7);

    /// Whether the filter requires `brain_id` to be `brain`.
    fn requires_brain(filter: Option<&Filter>, brain: BrainId) -> bool {
        filter.is_some_and(|filter| {
            filter
                .must
                .iter()
                .any(|condition| match &condition.condition_one_of {
                    Some(ConditionOneOf::Field(field)) => {
                        field.key == BRAIN
                            && matches!(
                                field.r#match.as_ref().and_then(|m| m.match_value.as_ref()),
                                Some(MatchValue::Keyword(value)) if *value == brain.0.to_string()
                            )
                    }
                    _ => false,
                })
        })
    }

    /// The requests for `q`, its terms weighted 1.
    fn requests(collection: &str, q: &SearchQuery) -> Option<SearchRequests> {
        search_requests(collection, BRAIN_ID, q, &query_sparse(BRAIN_ID, &q.text))
    }

    fn query(text: &str, vector: Option<Vec<f32>>) -> SearchQuery {
        SearchQuery {
            text: text.to_string(),
            vector,
            limit: 5,
            hidden: Vec::new(),
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

    #[test]
    fn every_search_request_is_filtered_by_the_brain() {
        for q in [
            query("sick leave", None),
            query("sick leave", Some(vec![0.1; 4])),
            // Stopwords only: the vector side alone.
            query("the of", Some(vec![0.1; 4])),
        ] {
            let requests = requests("chunks", &q).expect("requests");
            let all = requests.all();
            assert!(!all.is_empty());
            for request in &all {
                assert_eq!(request.collection_name, "chunks");
                assert!(
                    requires_brain(request.filter.as_ref(), BRAIN_ID),
                    "{request:?}"
                );
                assert!(!requires_brain(request.filter.as_ref(), BrainId(8)));
                for prefetch in &request.prefetch {
                    assert!(
                        requires_brain(prefetch.filter.as_ref(), BRAIN_ID),
                        "{prefetch:?}"
                    );
                }
            }
        }
        for filter in [
            brain_filter(BRAIN_ID),
            document_filter(BRAIN_ID, DocumentId(3)),
            stale_filter(BRAIN_ID, DocumentId(3), 2),
        ] {
            assert!(requires_brain(Some(&filter), BRAIN_ID), "{filter:?}");
        }
    }

    #[test]
    fn keyword_search_uses_the_sparse_vector_and_hybrid_fuses_both_by_rrf() {
        let keyword = requests("c", &query("Sick leave", None)).expect("some");
        assert_eq!(keyword.main.using.as_deref(), Some(SPARSE));
        assert!(keyword.main.prefetch.is_empty());
        assert_eq!(keyword.main.limit, Some(5));
        assert!(keyword.keyword_side.is_none() && keyword.vector_side.is_none());
        assert_eq!(keyword.all().len(), 1);

        let hybrid = requests("c", &query("Sick leave", Some(vec![0.5; 4]))).expect("some");
        let usings: Vec<Option<&str>> = hybrid
            .main
            .prefetch
            .iter()
            .map(|p| p.using.as_deref())
            .collect();
        assert_eq!(usings, vec![Some(SPARSE), Some(DENSE)]);
        let side = candidates_per_side(5) as u64;
        assert!(hybrid.main.prefetch.iter().all(|p| p.limit == Some(side)));
        assert_eq!(hybrid.main.limit, Some(5));
        let fusion = format!("{:?}", hybrid.main.query);
        assert!(
            fusion.contains("Rrf") && fusion.contains("k: Some(61)"),
            "{fusion}"
        );
        assert_eq!(hybrid.all().len(), 3);

        // No searchable word: only the dense prefetch, no keyword side.
        let vector_only = requests("c", &query("the of", Some(vec![0.5; 4]))).expect("some");
        assert_eq!(vector_only.main.prefetch.len(), 1);
        assert!(vector_only.keyword_side.is_none());
        assert_eq!(vector_only.all().len(), 2);
    }

    #[test]
    fn nothing_is_asked_when_nothing_can_match() {
        assert!(requests("c", &query("the of and", None)).is_none());
        assert!(requests("c", &query("?!", None)).is_none());
        let zero = SearchQuery {
            limit: 0,
            ..query("sick", Some(vec![0.1; 4]))
        };
        assert!(requests("c", &zero).is_none());
    }

    #[test]
    fn point_ids_are_deterministic_and_distinct() {
        let a = point_id(DocumentId(42), 3).expect("id");
        assert_eq!(a, point_id(DocumentId(42), 3).expect("id"));
        assert_eq!(a, (42 << SLOT_BITS) | 3);
        let mut ids = std::collections::HashSet::new();
        for document in [1, 2, 42, 1 << 30] {
            for slot in [0, 1, 2, (1 << SLOT_BITS) - 1] {
                assert!(ids.insert(point_id(DocumentId(document), slot).expect("id")));
            }
        }
        assert!(point_id(DocumentId(1), 1 << SLOT_BITS).is_err());
        assert!(point_id(DocumentId(-1), 0).is_err());
    }

    #[test]
    fn sparse_vectors_follow_the_embedded_tokenizer() {
        let heading = Some("Leave > Sick");
        let text = "Report SICK leave to the manager; the café's rules.";
        let sparse = chunk_sparse(BRAIN_ID, heading, text);
        let (terms, _) = chunk_term_frequencies(heading, text);
        let mut ids: Vec<u32> = terms.iter().map(|(t, _)| term_id(BRAIN_ID, t)).collect();
        ids.sort_unstable();
        assert_eq!(sparse.iter().map(|(id, _)| *id).collect::<Vec<_>>(), ids);
        assert!(sparse.windows(2).all(|w| w[0].0 < w[1].0));
        // A heading word (weight 2 + 1 in the text) saturates higher than a text word.
        let weight = |term: &str| {
            let id = term_id(BRAIN_ID, term);
            sparse.iter().find(|(i, _)| *i == id).map(|(_, w)| *w)
        };
        assert!(weight("sick") > weight("manager"));
        assert!(weight("the").is_none(), "stopwords are not indexed");
        assert!(weight("cafe").is_some(), "diacritics are folded");

        // A question's terms hash to the chunk's, whatever the case or accents.
        let question = query_sparse(BRAIN_ID, "How do I report SICK leave at the CAFÉ?");
        let expected: Vec<u32> = {
            let mut ids: Vec<u32> = ["report", "sick", "leave", "cafe"]
                .iter()
                .map(|t| term_id(BRAIN_ID, t))
                .collect();
            ids.sort_unstable();
            ids
        };
        assert_eq!(
            question.iter().map(|(id, _)| *id).collect::<Vec<_>>(),
            expected
        );
        assert!(question.iter().all(|(_, w)| *w == 1.0));
        assert!(query_sparse(BRAIN_ID, "the of and").is_empty());
    }

    #[test]
    fn term_ids_are_a_fixed_hash_of_the_brain_and_the_term() {
        // FNV-1a 32-bit over the brain id's 8 little-endian bytes, 0xff and the term: stable
        // across processes and releases.
        let fnv = |bytes: &[u8]| {
            bytes.iter().fold(0x811c_9dc5u32, |hash, byte| {
                (hash ^ u32::from(*byte)).wrapping_mul(0x0100_0193)
            })
        };
        assert_eq!(fnv(b"a"), 0xe40c_292c, "the FNV-1a reference value");
        assert_eq!(
            term_id(BrainId(7), "foobar"),
            fnv(b"\x07\0\0\0\0\0\0\0\xfffoobar")
        );
        assert_eq!(term_id(BrainId(7), "sick"), 0xea71_0c9d);
        // The same word is another dimension in another brain, so its document frequency
        // (Qdrant's IDF) counts one brain's chunks.
        assert_ne!(term_id(BrainId(7), "sick"), term_id(BrainId(8), "sick"));
        assert_ne!(
            query_sparse(BrainId(7), "sick leave"),
            query_sparse(BrainId(8), "sick leave")
        );
    }

    #[test]
    fn points_carry_the_brain_the_citation_and_both_vectors() {
        let chunks = vec![
            chunk(0, Some("Leave"), "Paid holiday."),
            chunk(1, None, "Receipts."),
        ];
        let vectors = vec![vec![0.1; 4], vec![0.2; 4]];
        let document = IndexedDocument {
            brain: BRAIN_ID,
            document: DocumentId(9),
            pages: 1,
            ocr_pages: 0,
            chunks: &chunks,
            vectors: Some(&vectors),
        };
        let source = Source {
            file_name: "handbook.pdf",
            source_link: Some("https://chat.example/1"),
        };
        let built = points(&document, &source).expect("points");
        assert_eq!(built.len(), 2);
        for (slot, point) in built.iter().enumerate() {
            assert_eq!(
                point.id,
                Some(PointId::from(point_id(DocumentId(9), slot).expect("id")))
            );
            assert_eq!(string(&point.payload, BRAIN).as_deref(), Some("7"));
            assert_eq!(integer(&point.payload, DOCUMENT), Some(9));
            assert_eq!(integer(&point.payload, SLOT), Some(slot as i64));
            assert_eq!(
                string(&point.payload, FILE_NAME).as_deref(),
                Some("handbook.pdf")
            );
            let Some(VectorsOptions::Vectors(named)) = point
                .vectors
                .as_ref()
                .and_then(|v| v.vectors_options.as_ref())
            else {
                panic!("named vectors expected: {point:?}");
            };
            let mut names: Vec<&str> = named.vectors.keys().map(String::as_str).collect();
            names.sort_unstable();
            let mut expected = vec![DENSE, SPARSE];
            expected.sort_unstable();
            assert_eq!(names, expected);
        }
        assert_eq!(string(&built[0].payload, HEADING).as_deref(), Some("Leave"));
        assert_eq!(string(&built[1].payload, HEADING), None);

        // Without embeddings: the sparse vector only.
        let keyword_only = IndexedDocument {
            vectors: None,
            ..document
        };
        let built = points(&keyword_only, &source).expect("points");
        let Some(VectorsOptions::Vectors(named)) = built[0]
            .vectors
            .as_ref()
            .and_then(|v| v.vectors_options.as_ref())
        else {
            panic!("named vectors expected");
        };
        assert_eq!(named.vectors.keys().collect::<Vec<_>>(), vec![SPARSE]);
    }

    #[test]
    fn upserts_are_batched() {
        let make = |n: usize| -> Vec<PointStruct> {
            (0..n)
                .map(|i| PointStruct::new(i as u64, NamedVectors::default(), Payload::new()))
                .collect()
        };
        let sizes = |n: usize| -> Vec<usize> { batches(make(n)).iter().map(Vec::len).collect() };
        assert_eq!(sizes(0), Vec::<usize>::new());
        assert_eq!(sizes(1), vec![1]);
        assert_eq!(sizes(UPSERT_BATCH), vec![UPSERT_BATCH]);
        assert_eq!(
            sizes(2 * UPSERT_BATCH + 2),
            vec![UPSERT_BATCH, UPSERT_BATCH, 2]
        );
        // Order is kept.
        let ids: Vec<Option<PointId>> = batches(make(70))
            .concat()
            .into_iter()
            .map(|p| p.id)
            .collect();
        assert_eq!(
            ids,
            (0..70u64)
                .map(|i| Some(PointId::from(i)))
                .collect::<Vec<_>>()
        );
    }

    #[test]
    fn the_collection_has_plain_keywords_a_cosine_vector_and_a_tenant_key() {
        let options = QdrantOptions {
            url: "http://127.0.0.1:6334".into(),
            api_key: Secret::default(),
            collection: "engram_chunks".into(),
            dimensions: Some(384),
        };
        let collection = CreateCollection::from(create_collection(&options));
        assert_eq!(collection.collection_name, "engram_chunks");
        let sparse = collection.sparse_vectors_config.expect("sparse config");
        assert_eq!(sparse.map[SPARSE].modifier, Some(Modifier::None as i32));
        let Some(VectorsConfigKind::ParamsMap(dense)) =
            collection.vectors_config.and_then(|c| c.config)
        else {
            panic!("named dense vectors expected");
        };
        assert_eq!(dense.map[DENSE].size, 384);
        assert_eq!(dense.map[DENSE].distance, Distance::Cosine as i32);
        // One HNSW graph per brain, none across brains.
        let hnsw = collection.hnsw_config.expect("hnsw config");
        assert_eq!((hnsw.m, hnsw.payload_m), (Some(0), Some(16)));
        assert!(collection.timeout.is_some());

        let keyword_only = CreateCollection::from(create_collection(&QdrantOptions {
            dimensions: None,
            ..options
        }));
        assert!(keyword_only
            .vectors_config
            .is_none_or(|c| c.config.is_none()));

        let indexes: Vec<CreateFieldIndexCollection> =
            missing_payload_indexes("engram_chunks", &[])
                .into_iter()
                .map(CreateFieldIndexCollection::from)
                .collect();
        assert_eq!(indexes.len(), 4);
        assert!(indexes.iter().all(|i| i.collection_name == "engram_chunks"));
        // Only what is missing is created at start.
        let missing: Vec<String> = missing_payload_indexes("engram_chunks", &[BRAIN, SLOT])
            .into_iter()
            .map(|r| CreateFieldIndexCollection::from(r).field_name)
            .collect();
        assert_eq!(missing, vec![DOCUMENT.to_string(), TERMS.to_string()]);
        assert!(
            missing_payload_indexes("engram_chunks", &[BRAIN, DOCUMENT, SLOT, TERMS]).is_empty()
        );
        let brain = indexes
            .iter()
            .find(|i| i.field_name == BRAIN)
            .expect("brain index");
        assert_eq!(brain.field_type, Some(FieldType::Keyword as i32));
        let params = format!("{:?}", brain.field_index_params);
        assert!(params.contains("is_tenant: Some(true)"), "{params}");
        // Per-brain HNSW graphs follow `brain_id` only.
        for index in indexes.iter().filter(|i| i.field_name != BRAIN) {
            assert_eq!(index.field_type, Some(FieldType::Integer as i32));
            let params = format!("{:?}", index.field_index_params);
            assert!(params.contains("enable_hnsw: Some(false)"), "{params}");
        }
    }

    #[test]
    fn questions_are_weighted_by_the_brains_own_idf() {
        // FTS5's BM25 IDF: ln((N - n + 0.5) / (n + 0.5)), floored just above zero.
        assert!((idf(100, 1) - (99.5f32 / 1.5).ln()).abs() < 1e-6);
        assert!(idf(100, 10) > idf(100, 40));
        assert_eq!(
            idf(100, 60),
            1e-6,
            "a term in most chunks counts for almost nothing"
        );
        assert_eq!(idf(0, 0), 1e-6);
        assert_eq!(
            idf(10, 99),
            idf(10, 10),
            "a count above the chunks is capped"
        );
        let weights = weighted(&[7, 9], 100, &[1, 40]);
        assert_eq!(weights[0], (7, idf(100, 1)));
        assert_eq!(weights[1], (9, idf(100, 40)));
    }

    #[test]
    fn brain_statistics_are_kept_a_minute_and_dropped_on_writes() {
        let start = Instant::now();
        let mut cache = StatsCache::default();
        assert_eq!(
            cache.get(BRAIN_ID, &[1, 2], start),
            (None, vec![None, None])
        );
        cache.put(BRAIN_ID, 50, [(1, 5)], start);
        assert_eq!(
            cache.get(BRAIN_ID, &[1, 2], start),
            (Some(50), vec![Some(5), None])
        );
        cache.put(BRAIN_ID, 50, [(2, 7)], start);
        let fresh = start + STATS_TTL;
        assert_eq!(
            cache.get(BRAIN_ID, &[2, 1], fresh),
            (Some(50), vec![Some(7), Some(5)])
        );
        // Another brain's statistics are its own.
        assert_eq!(cache.get(BrainId(8), &[1], fresh), (None, vec![None]));
        let stale = start + STATS_TTL + Duration::from_secs(1);
        assert_eq!(cache.get(BRAIN_ID, &[1], stale), (None, vec![None]));
        assert_eq!(cache.terms, 0);

        cache.put(BRAIN_ID, 50, [(1, 5)], start);
        cache.forget(BRAIN_ID);
        assert_eq!(cache.get(BRAIN_ID, &[1], start), (None, vec![None]));
        // Past the bound everything is dropped before more is kept.
        cache.put(
            BrainId(8),
            1,
            (0..=MAX_CACHED_TERMS as u32).map(|t| (t, 1)),
            start,
        );
        cache.put(BRAIN_ID, 50, [(1, 5)], start);
        assert_eq!(cache.get(BrainId(8), &[0], start), (None, vec![None]));
        assert_eq!(cache.get(BRAIN_ID, &[1], start), (Some(50), vec![Some(5)]));
        assert_eq!(cache.terms, 1);
    }

    fn scored(id: u64, brain: i64, score: f32) -> ScoredPoint {
        let mut payload = Payload::new();
        payload.insert(BRAIN, brain.to_string());
        payload.insert(DOCUMENT, 9i64);
        payload.insert(TEXT, format!("chunk {id}"));
        payload.insert(FILE_NAME, "a.md");
        payload.insert(PAGE, 2i64);
        ScoredPoint {
            id: Some(PointId::from(id)),
            payload: payload.into(),
            score,
            ..ScoredPoint::default()
        }
    }

    #[test]
    fn hits_come_from_the_payload_with_ranks() {
        let main = vec![scored(5, 7, 0.5), scored(6, 7, 0.4)];
        let keyword_side = vec![scored(6, 7, 3.0), scored(5, 7, 2.0)];
        let vector_side = vec![scored(5, 7, 0.9)];
        let found = hits(BRAIN_ID, main.clone(), &keyword_side, &vector_side, true).expect("hits");
        assert_eq!(found[0].chunk_id, 5);
        assert_eq!(found[0].document_id, 9);
        assert_eq!(found[0].file_name, "a.md");
        assert_eq!(found[0].page, Some(2));
        assert_eq!(found[0].text, "chunk 5");
        assert_eq!(
            (found[0].keyword_rank, found[0].vector_rank),
            (Some(2), Some(1))
        );
        assert_eq!(
            (found[1].keyword_rank, found[1].vector_rank),
            (Some(1), None)
        );
        // The vector side's score is the cosine similarity; a chunk not on that side has none.
        assert_eq!(found[0].vector_similarity, Some(0.9));
        assert_eq!(found[1].vector_similarity, None);

        let keyword = hits(BRAIN_ID, main, &[], &[], false).expect("hits");
        assert_eq!(keyword[1].keyword_rank, Some(2));
        assert_eq!(keyword[1].vector_rank, None);

        // A point of another brain is never returned as this brain's.
        let error = hits(BRAIN_ID, vec![scored(5, 8, 1.0)], &[], &[], false);
        assert!(matches!(error, Err(IndexError::Corrupt(_))), "{error:?}");
    }

    #[test]
    fn unreachable_is_transient_and_rejections_are_not() {
        let plain = QdrantOptions {
            url: "http://q:6334".into(),
            api_key: Secret::default(),
            collection: "c".into(),
            dimensions: None,
        };
        let status = |status: tonic::Status| QdrantError::ResponseError { status };
        let io = QdrantError::Io(std::io::Error::new(
            std::io::ErrorKind::ConnectionRefused,
            "refused",
        ));
        let error = unreachable_or_rejected(&plain, io);
        assert!(error.is_transient());
        assert!(
            error
                .to_string()
                .contains("the index is unreachable: Qdrant at http://q:6334: "),
            "{error}"
        );
        for down in [
            tonic::Status::unavailable("down"),
            tonic::Status::deadline_exceeded("slow"),
            tonic::Status::internal(format!(
                "{CONNECT_FAILED} http://q:6334/: tcp connect error"
            )),
            // A collection another process has just created, still loading.
            tonic::Status::internal("Service internal error: 0 of 0 read operations failed"),
        ] {
            let error = unreachable_or_rejected(&plain, status(down));
            assert!(error.is_transient(), "{error}");
        }
        for refused in [
            tonic::Status::invalid_argument("bad filter"),
            tonic::Status::not_found("no collection"),
        ] {
            let error = unreachable_or_rejected(&plain, status(refused));
            assert!(matches!(error, IndexError::Rejected(_)), "{error}");
        }
        let error = unreachable_or_rejected(&plain, QdrantError::ConversionError("bad".into()));
        assert!(!error.is_transient());
        assert!(matches!(error, IndexError::Rejected(_)));

        // A refused key names the setting, and never shows the key.
        let keyed = QdrantOptions {
            api_key: Secret::new("s3cret-key"),
            ..plain.clone()
        };
        let error = unreachable_or_rejected(
            &keyed,
            status(tonic::Status::unauthenticated("Invalid api-key s3cret-key")),
        );
        let text = error.to_string();
        assert!(matches!(error, IndexError::Rejected(_)), "{text}");
        assert!(text.contains("refused index.qdrant_api_key"), "{text}");
        assert!(!text.contains("s3cret-key"), "{text}");
        let error = unreachable_or_rejected(
            &plain,
            status(tonic::Status::unauthenticated("Must provide an API key")),
        );
        assert!(
            error.to_string().contains("set index.qdrant_api_key"),
            "{error}"
        );

        // A failed TLS handshake is not an outage: it says what to check.
        let tls = QdrantOptions {
            url: "https://q:6334".into(),
            ..plain.clone()
        };
        let error = unreachable_or_rejected(
            &tls,
            status(tonic::Status::internal(format!(
                "{CONNECT_FAILED} https://q:6334/: tonic::transport::Error(Transport, \
                 hyper_util::client::legacy::Error(Connect, Custom {{ kind: InvalidData, \
                 error: InvalidCertificate(UnknownIssuer) }}))"
            ))),
        );
        assert!(!error.is_transient(), "{error}");
        assert!(error.to_string().contains("certificate"), "{error}");
    }

    #[test]
    fn an_existing_collection_is_checked_before_use() {
        let options = |dimensions| QdrantOptions {
            url: "http://127.0.0.1:6334".into(),
            api_key: Secret::default(),
            collection: "c".into(),
            dimensions,
        };
        // What Qdrant describes after `create_collection`.
        let info = |options: &QdrantOptions| {
            let made = CreateCollection::from(create_collection(options));
            CollectionInfo {
                config: Some(qdrant_client::qdrant::CollectionConfig {
                    params: Some(qdrant_client::qdrant::CollectionParams {
                        vectors_config: made.vectors_config,
                        sparse_vectors_config: made.sparse_vectors_config,
                        ..Default::default()
                    }),
                    ..Default::default()
                }),
                ..Default::default()
            }
        };
        let wide = info(&options(Some(384)));
        assert!(check_collection("c", &wide, Some(384)).is_ok());
        assert!(
            check_collection("c", &wide, None).is_ok(),
            "keyword search only"
        );
        let error = check_collection("c", &wide, Some(768)).expect_err("another width");
        assert!(
            matches!(
                error,
                IndexError::DimensionMismatch {
                    expected: 384,
                    got: 768
                }
            ),
            "{error}"
        );
        let keyword_only = info(&options(None));
        let error = check_collection("c", &keyword_only, Some(384)).expect_err("no dense");
        assert!(error.to_string().contains("without embeddings"), "{error}");

        // A collection of global term ids (the `keywords` vector) is refused.
        let mut old = wide.clone();
        let sparse = old
            .config
            .as_mut()
            .and_then(|c| c.params.as_mut())
            .and_then(|p| p.sparse_vectors_config.as_mut())
            .expect("sparse");
        let params = sparse.map.remove(SPARSE).expect("params");
        sparse.map.insert("keywords".into(), params);
        let error = check_collection("c", &old, Some(384)).expect_err("old layout");
        assert!(error.to_string().contains("index.collection"), "{error}");
    }
}
