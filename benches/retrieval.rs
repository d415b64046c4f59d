//! Retrieval benchmark: 10 brains, 100,000 chunks in the measured brain and 10,000 in each of
//! the others, built the same way (same seed) into the embedded index (FTS5 + sqlite-vec in a
//! temp SQLite store) and into a real Qdrant (a fresh collection on the server named by
//! `ENGRAM_TEST_QDRANT_URL`, documents' rows in a temp SQLite store), then the same 1,000
//! keyword and hybrid queries against each. Reports the build rate, the time to get the
//! measured brain ready (the embedded caches' load; Qdrant's indexing after the upload) and
//! keyword / hybrid query latency. Results: `benches/RESULTS.md`.
//!
//! `cargo bench --bench retrieval [-- --chunks N] [--index embedded|qdrant] [--keep DIR]`
//! (N chunks in the measured brain; `--index` runs one index only, both by default; `--keep`
//! writes the embedded database to DIR and leaves it there, and keeps the Qdrant collection).
//!
//! `cargo bench --bench retrieval -- --tenants` measures instead how far another tenant's
//! corpus moves one brain's keyword results in Qdrant, whose IDF statistics are
//! collection-wide: a brain of 5,000 chunks, 500 keyword queries, then 100,000 chunks of
//! another tenant (the same words, common and rare ones swapped) added with engram's per-brain
//! term ids, then removed and added again as if term ids were shared (as they were before).

#![allow(clippy::print_stdout)]

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use engram::brain::{BrainId, BrainName, DocumentId, TenantKey};
use engram::config::{Secret, StoreConfig, StoreUrl};
use engram::index::{
    EmbeddedIndex, Index, IndexedDocument, QdrantIndex, QdrantOptions, SearchQuery,
};
use engram::text::{keyword_terms, ChunkDraft};
use qdrant_client::qdrant::CollectionStatus;
use qdrant_client::Qdrant;

const BRAINS: usize = 10;
const DIMENSIONS: usize = 384;
const VOCABULARY: usize = 5_000;
const CHUNKS_PER_DOCUMENT: usize = 50;
const QUERIES: usize = 1_000;
const LIMIT: usize = 8;
/// The bench's own Qdrant calls (bulk uploads that wait for the write) on a busy machine.
const BENCH_CLIENT_TIMEOUT: Duration = Duration::from_secs(120);

/// xorshift64*: a tiny, seeded, deterministic generator.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    /// A word rank with a Zipf-like (log-uniform) distribution: a few words are very common,
    /// most are rare, as in real prose.
    fn zipf(&mut self, n: usize) -> usize {
        (((n as f64).powf(self.unit()) - 1.0) as usize).min(n - 1)
    }
}

/// Pronounceable pseudo-words, unique, from syllables.
fn vocabulary(rng: &mut Rng) -> Vec<String> {
    const SYLLABLES: &[&str] = &[
        "ka", "lo", "mi", "ne", "ru", "ta", "vo", "shi", "den", "pra", "sto", "gal", "fen", "mur",
        "bel", "tor", "qui", "zan", "hop", "lex", "dra", "wen", "cor", "pil",
    ];
    let mut words = std::collections::BTreeSet::new();
    while words.len() < VOCABULARY {
        let syllables = 1 + rng.below(4);
        let word: String = (0..syllables)
            .map(|_| SYLLABLES[rng.below(SYLLABLES.len())])
            .collect();
        words.insert(word);
    }
    let mut words: Vec<String> = words.into_iter().collect();
    // Shuffle so frequency rank is unrelated to spelling.
    for i in (1..words.len()).rev() {
        let j = rng.below(i + 1);
        words.swap(i, j);
    }
    words
}

fn paragraph(rng: &mut Rng, words: &[String]) -> String {
    let sentences = 6 + rng.below(8);
    let mut text = String::new();
    for _ in 0..sentences {
        let length = 8 + rng.below(14);
        for i in 0..length {
            let word = &words[rng.zipf(words.len())];
            if i == 0 {
                let mut chars = word.chars();
                if let Some(first) = chars.next() {
                    text.extend(first.to_uppercase());
                    text.push_str(chars.as_str());
                }
            } else {
                text.push(' ');
                text.push_str(word);
            }
        }
        text.push_str(". ");
    }
    text.trim_end().to_string()
}

/// A deterministic stand-in for an embedding: a hashed bag of words, normalised.
fn embed(text: &str) -> Vec<f32> {
    let mut vector = vec![0.0f32; DIMENSIONS];
    for term in keyword_terms(text) {
        let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
        for byte in term.bytes() {
            hash = (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3);
        }
        for probe in 0..3u64 {
            let h = hash.rotate_left((probe * 21) as u32);
            let slot = (h % DIMENSIONS as u64) as usize;
            vector[slot] += if (h >> 40) & 1 == 0 { 1.0 } else { -1.0 };
        }
    }
    let norm = vector.iter().map(|v| v * v).sum::<f32>().sqrt().max(1e-6);
    vector.iter_mut().for_each(|v| *v /= norm);
    vector
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index.min(sorted.len() - 1)]
}

fn ms(duration: Duration) -> String {
    format!("{:.2} ms", duration.as_secs_f64() * 1000.0)
}

type Error = Box<dyn std::error::Error>;

/// Which index a run builds and queries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Embedded,
    Qdrant,
}

fn main() -> Result<(), Error> {
    let mut measured_chunks = 100_000usize;
    let mut keep = None;
    let mut kinds = vec![Kind::Embedded, Kind::Qdrant];
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        if arg == "--tenants" {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()?;
            return runtime.block_on(tenants());
        }
        if arg == "--chunks" {
            measured_chunks = args.next().ok_or("--chunks needs a number")?.parse()?;
        } else if arg == "--keep" {
            keep = Some(std::path::PathBuf::from(
                args.next().ok_or("--keep needs a directory")?,
            ));
        } else if arg == "--index" {
            kinds = match args.next().as_deref() {
                Some("embedded") => vec![Kind::Embedded],
                Some("qdrant") => vec![Kind::Qdrant],
                _ => return Err("--index takes embedded or qdrant".into()),
            };
        }
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let mut results = Vec::new();
    for kind in kinds {
        results.push(runtime.block_on(run(kind, measured_chunks, keep.as_deref()))?);
    }
    print_table(measured_chunks, &results);
    Ok(())
}

/// What one index's run measured.
struct Measured {
    kind: Kind,
    build_rate: f64,
    /// The embedded index: loading the keyword index alone, then with the vector codes.
    /// Qdrant: from the last upload until the collection is indexed (green).
    ready: (Option<Duration>, Duration),
    keyword: Vec<Duration>,
    hybrid: Vec<Duration>,
    keyword_hits: usize,
    hybrid_hits: usize,
    documents: usize,
    /// The SQLite file (embedded), or what Qdrant reports as the collection's size.
    size: String,
}

/// The chunks of one document of `count` chunks.
fn drafts(rng: &mut Rng, words: &[String], count: usize) -> Vec<ChunkDraft> {
    (0..count)
        .map(|i| {
            let text = paragraph(rng, words);
            ChunkDraft {
                ordinal: i as u32,
                page: Some(1 + i as u32 / 3),
                heading: Some(format!("Section {}", i / 5)),
                tokens: engram::text::count_tokens(&text) as u32,
                text,
            }
        })
        .collect()
}

#[allow(
    clippy::disallowed_methods,
    reason = "benchmarks are configured by the environment, as the tests are"
)]
async fn run(kind: Kind, measured_chunks: usize, keep: Option<&Path>) -> Result<Measured, Error> {
    let other_chunks = measured_chunks / 10;
    let temp = tempfile::tempdir()?;
    let dir = match keep.filter(|_| kind == Kind::Embedded) {
        Some(path) => {
            std::fs::create_dir_all(path)?;
            path.to_path_buf()
        }
        None => temp.path().to_path_buf(),
    };
    let url = format!("sqlite://{}/engram.db", dir.display());
    let config = StoreConfig {
        url: StoreUrl::new(&url),
        max_connections: 8,
        busy_timeout_ms: 5_000,
    };
    let store = engram::store::open(&config).await?;
    let (index, embedded, qdrant): (Arc<dyn Index>, _, _) = match kind {
        Kind::Embedded => {
            let embedded = Arc::new(EmbeddedIndex::open(&config, Some(DIMENSIONS)).await?);
            (embedded.clone(), Some(embedded), None)
        }
        Kind::Qdrant => {
            let url = std::env::var("ENGRAM_TEST_QDRANT_URL").map_err(|_| {
                "set ENGRAM_TEST_QDRANT_URL (scripts/qdrant.sh prints one), or --index embedded"
            })?;
            let options = QdrantOptions {
                url: url.clone(),
                api_key: Secret::default(),
                collection: format!("engram_bench_retrieval_{}", std::process::id()),
                dimensions: Some(DIMENSIONS),
            };
            let index = Arc::new(QdrantIndex::open(options.clone(), store.clone()).await?);
            (index, None, Some(options))
        }
    };
    let db = sqlx::SqlitePool::connect(&url).await?;
    let tenant = store.ensure_tenant(&TenantKey::local()).await?;

    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let words = vocabulary(&mut rng);
    let mut brains = Vec::new();
    for b in 0..BRAINS {
        let name = BrainName::parse(&format!("bench-{b}"))?;
        brains.push(store.create_brain(tenant, &name).await?.id);
    }
    let measured = brains[0];

    // Build: the measured brain last, so its rows are the newest (no locality advantage).
    let mut plan: Vec<(BrainId, usize)> = brains[1..].iter().map(|&b| (b, other_chunks)).collect();
    plan.push((measured, measured_chunks));
    let total: usize = plan.iter().map(|(_, n)| n).sum();
    let mut build_time = Duration::ZERO;
    let mut documents = 0usize;
    for (brain, chunks) in plan {
        let mut made = 0;
        while made < chunks {
            let count = CHUNKS_PER_DOCUMENT.min(chunks - made);
            let id: i64 = sqlx::query_scalar(
                "INSERT INTO documents (brain_id, sha256, file_name, status, created_at, \
                 updated_at) VALUES ($1, $2, $3, 'pending', 0, 0) RETURNING id",
            )
            .bind(brain.0)
            .bind(format!("sha-{documents}"))
            .bind(format!("doc-{documents}.pdf"))
            .fetch_one(&db)
            .await?;
            documents += 1;
            let drafts = drafts(&mut rng, &words, count);
            let vectors: Vec<Vec<f32>> = drafts.iter().map(|d| embed(&d.text)).collect();
            let started = Instant::now();
            index
                .index_document(IndexedDocument {
                    brain,
                    document: DocumentId(id),
                    pages: 1 + count as u32 / 3,
                    ocr_pages: 0,
                    chunks: &drafts,
                    vectors: Some(&vectors),
                })
                .await?;
            build_time += started.elapsed();
            made += count;
        }
    }
    let build_rate = total as f64 / build_time.as_secs_f64();

    let queries: Vec<String> = (0..QUERIES)
        .map(|_| {
            let terms = 2 + rng.below(4);
            (0..terms)
                .map(|_| words[rng.zipf(words.len())].clone())
                .collect::<Vec<_>>()
                .join(" ")
        })
        .collect();

    let (ready, size) = match (&embedded, &qdrant) {
        (Some(embedded), _) => {
            // Load the measured brain's caches, as a running server has them; searches use
            // FTS5 until then. The keyword index alone is timed on a second, keyword-only
            // index of the same file.
            let keyword_only = EmbeddedIndex::open(&config, None).await?;
            let started = Instant::now();
            keyword_only.warm(measured).await?;
            let keyword_load = started.elapsed();
            keyword_only.close().await;
            drop(keyword_only);
            let started = Instant::now();
            embedded.warm(measured).await?;
            let file = std::fs::metadata(dir.join("engram.db"))?.len();
            (
                (Some(keyword_load), started.elapsed()),
                format!("database {:.0} MiB", file as f64 / (1024.0 * 1024.0)),
            )
        }
        (_, Some(options)) => {
            // Qdrant builds the brains' HNSW graphs and the sparse index in the background
            // after the upload; queries are measured once it reports the collection green.
            let client = Qdrant::from_url(&options.url)
                .skip_compatibility_check()
                .timeout(BENCH_CLIENT_TIMEOUT)
                .build()?;
            let started = Instant::now();
            let info = loop {
                let info = client
                    .collection_info(options.collection.as_str())
                    .await?
                    .result
                    .ok_or("no collection info")?;
                if info.status == CollectionStatus::Green as i32 {
                    break info;
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            };
            (
                (None, started.elapsed()),
                format!(
                    "{} points, {} vectors indexed, {} segments",
                    info.points_count.unwrap_or(0),
                    info.indexed_vectors_count.unwrap_or(0),
                    info.segments_count
                ),
            )
        }
        _ => unreachable!("one of the two"),
    };

    // Warm up the way a running server would be.
    for text in queries.iter().take(50) {
        let query = SearchQuery {
            text: text.clone(),
            vector: Some(embed(text)),
            limit: LIMIT,
            hidden: Vec::new(),
        };
        index.search(measured, &query).await?;
    }
    let mut keyword = Vec::with_capacity(QUERIES);
    let mut keyword_hits = 0usize;
    for text in &queries {
        let query = SearchQuery {
            text: text.clone(),
            vector: None,
            limit: LIMIT,
            hidden: Vec::new(),
        };
        let started = Instant::now();
        let hits = index.search(measured, &query).await?;
        keyword.push(started.elapsed());
        keyword_hits += hits.len();
    }
    let mut hybrid = Vec::with_capacity(QUERIES);
    let mut hybrid_hits = 0usize;
    for text in &queries {
        let query = SearchQuery {
            text: text.clone(),
            vector: Some(embed(text)),
            limit: LIMIT,
            hidden: Vec::new(),
        };
        let started = Instant::now();
        let hits = index.search(measured, &query).await?;
        hybrid.push(started.elapsed());
        hybrid_hits += hits.len();
        if hits.iter().any(|h| h.document_id <= 0) {
            return Err("impossible hit".into());
        }
    }
    keyword.sort();
    hybrid.sort();
    if let Some(options) = qdrant.filter(|_| keep.is_none()) {
        let client = Qdrant::from_url(&options.url)
            .skip_compatibility_check()
            .timeout(BENCH_CLIENT_TIMEOUT)
            .build()?;
        client
            .delete_collection(options.collection.as_str())
            .await?;
    }
    store.close().await;
    Ok(Measured {
        kind,
        build_rate,
        ready,
        keyword,
        hybrid,
        keyword_hits,
        hybrid_hits,
        documents,
        size,
    })
}

fn print_table(measured_chunks: usize, results: &[Measured]) {
    let other_chunks = measured_chunks / 10;
    let total = measured_chunks + other_chunks * (BRAINS - 1);
    let documents = results.first().map_or(0, |r| r.documents);
    println!(
        "\nRetrieval: {BRAINS} brains, {measured_chunks} chunks in the measured brain, \
         {other_chunks} in each other one ({total} in all, {documents} documents), \
         {DIMENSIONS}-dim vectors, top {LIMIT}\n"
    );
    let name = |kind: Kind| match kind {
        Kind::Embedded => "embedded",
        Kind::Qdrant => "Qdrant",
    };
    print!("| measure |");
    for r in results {
        print!(" {} |", name(r.kind));
    }
    println!(" target |");
    println!("|---|{}---|", "---|".repeat(results.len()));
    let row = |label: &str, target: &str, cell: &dyn Fn(&Measured) -> String| {
        print!("| {label} |");
        for r in results {
            print!(" {} |", cell(r));
        }
        println!(" {target} |");
    };
    row(
        &format!("index build (index_document, {CHUNKS_PER_DOCUMENT} chunks/document)"),
        "—",
        &|r| format!("{:.0} chunks/s", r.build_rate),
    );
    row(
        "measured brain ready: keyword index / with vectors (embedded); indexing after the upload (Qdrant)",
        "—",
        &|r| match r.ready {
            (Some(keyword), both) => {
                format!("{:.2} / {:.2} s", keyword.as_secs_f64(), both.as_secs_f64())
            }
            (None, indexing) => format!("{:.2} s", indexing.as_secs_f64()),
        },
    );
    row(
        &format!("keyword query p50 / p99 / max ({QUERIES} queries, 2–5 terms)"),
        "p99 ≤ 10 ms",
        &|r| {
            format!(
                "{} / {} / {}",
                ms(percentile(&r.keyword, 0.5)),
                ms(percentile(&r.keyword, 0.99)),
                ms(percentile(&r.keyword, 1.0))
            )
        },
    );
    row(
        &format!("hybrid query p50 / p99 / max ({QUERIES} queries)"),
        "p99 ≤ 30 ms",
        &|r| {
            format!(
                "{} / {} / {}",
                ms(percentile(&r.hybrid, 0.5)),
                ms(percentile(&r.hybrid, 0.99)),
                ms(percentile(&r.hybrid, 1.0))
            )
        },
    );
    row("mean hits per query: keyword / hybrid", "—", &|r| {
        format!(
            "{:.1} / {:.1}",
            r.keyword_hits as f64 / QUERIES as f64,
            r.hybrid_hits as f64 / QUERIES as f64
        )
    });
    row("size", "—", &|r| r.size.clone());
}

/// Top-`LIMIT` chunk ids of each keyword query, in order, as engram asks for them.
async fn rankings(
    index: &dyn Index,
    brain: BrainId,
    queries: &[String],
) -> Result<Vec<Vec<i64>>, Error> {
    let mut all = Vec::with_capacity(queries.len());
    for text in queries {
        let query = SearchQuery {
            text: text.clone(),
            vector: None,
            limit: LIMIT,
            hidden: Vec::new(),
        };
        all.push(
            index
                .search(brain, &query)
                .await?
                .iter()
                .map(|h| h.chunk_id)
                .collect(),
        );
    }
    Ok(all)
}

/// The same, asked as engram asked before (each term weighted 1, Qdrant's IDF modifier on
/// the collection), of `collection` directly.
async fn rankings_with_qdrant_idf(
    client: &Qdrant,
    collection: &str,
    brain: BrainId,
    queries: &[String],
) -> Result<Vec<Vec<i64>>, Error> {
    use engram::index::qdrant::{query_sparse, search_requests};
    let mut all = Vec::with_capacity(queries.len());
    for text in queries {
        let query = SearchQuery {
            text: text.clone(),
            vector: None,
            limit: LIMIT,
            hidden: Vec::new(),
        };
        let Some(requests) = search_requests(collection, brain, &query, &query_sparse(brain, text))
        else {
            all.push(Vec::new());
            continue;
        };
        let found = client.query(requests.main).await?;
        all.push(
            found
                .result
                .iter()
                .filter_map(
                    |point| match point.id.as_ref()?.point_id_options.as_ref()? {
                        qdrant_client::qdrant::point_id::PointIdOptions::Num(id) => {
                            Some(*id as i64)
                        }
                        _ => None,
                    },
                )
                .collect(),
        );
    }
    Ok(all)
}

/// How `after` differs from `before`: queries whose list changed at all, whose first hit
/// changed, and the mean share of `before`'s hits still in `after`.
fn compare(before: &[Vec<i64>], after: &[Vec<i64>]) -> String {
    let changed = before.iter().zip(after).filter(|(b, a)| b != a).count();
    let first = before
        .iter()
        .zip(after)
        .filter(|(b, a)| b.first() != a.first())
        .count();
    let overlap: f64 = before
        .iter()
        .zip(after)
        .map(|(b, a)| {
            let kept = b.iter().filter(|id| a.contains(id)).count();
            kept as f64 / b.len().max(1) as f64
        })
        .sum::<f64>()
        / before.len() as f64;
    format!(
        "{changed} of {} lists changed, {first} first hits changed, {:.1} % of the top {LIMIT} kept",
        before.len(),
        overlap * 100.0
    )
}

/// Writes `texts` as points of `owner`, their term ids those of `terms`' brain (engram's own
/// points when the two are the same brain), in documents of 50 numbered from `first`.
async fn upload_as(
    client: &Qdrant,
    collection: &str,
    owner: BrainId,
    terms: BrainId,
    first: i64,
    texts: &[ChunkDraft],
) -> Result<(), Error> {
    use engram::index::qdrant::{batches, points, Source};
    for (n, chunks) in texts.chunks(CHUNKS_PER_DOCUMENT).enumerate() {
        let document = IndexedDocument {
            brain: terms,
            document: DocumentId(first + n as i64),
            pages: 1,
            ocr_pages: 0,
            chunks,
            vectors: None,
        };
        let source = Source {
            file_name: "other.pdf",
            source_link: None,
        };
        let mut made = points(&document, &source)?;
        for point in &mut made {
            point
                .payload
                .insert("brain_id".into(), owner.0.to_string().into());
        }
        for batch in batches(made) {
            client
                .upsert_points(
                    qdrant_client::qdrant::UpsertPointsBuilder::new(collection, batch).wait(true),
                )
                .await?;
        }
    }
    Ok(())
}

async fn wait_green(client: &Qdrant, collection: &str) -> Result<(), Error> {
    loop {
        let info = client
            .collection_info(collection)
            .await?
            .result
            .ok_or("no collection info")?;
        if info.status == CollectionStatus::Green as i32 {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[allow(
    clippy::disallowed_methods,
    reason = "benchmarks are configured by the environment, as the tests are"
)]
async fn tenants() -> Result<(), Error> {
    use qdrant_client::qdrant::{
        CreateCollectionBuilder, DeletePointsBuilder, Modifier, SparseVectorParamsBuilder,
        SparseVectorsConfigBuilder,
    };
    const OURS: usize = 5_000;
    const THEIRS: usize = 100_000;
    const TENANT_QUERIES: usize = 500;
    let url = std::env::var("ENGRAM_TEST_QDRANT_URL")
        .map_err(|_| "set ENGRAM_TEST_QDRANT_URL (scripts/qdrant.sh prints one)")?;
    let temp = tempfile::tempdir()?;
    let config = StoreConfig {
        url: StoreUrl::new(format!("sqlite://{}/engram.db", temp.path().display())),
        max_connections: 4,
        busy_timeout_ms: 5_000,
    };
    let store = engram::store::open(&config).await?;
    let client = Qdrant::from_url(&url)
        .skip_compatibility_check()
        .timeout(BENCH_CLIENT_TIMEOUT)
        .build()?;
    let options = QdrantOptions {
        url: url.clone(),
        api_key: Secret::default(),
        collection: format!("engram_bench_tenants_{}", std::process::id()),
        dimensions: None,
    };
    let now = options.collection.clone();
    QdrantIndex::open(options.clone(), store.clone()).await?;
    // A fresh process's view each time: statistics counted afresh.
    let fresh = || async { QdrantIndex::open(options.clone(), store.clone()).await };
    // The layout before: Qdrant's IDF modifier over the whole collection, one term id per word.
    let before_layout = format!("engram_bench_tenants_idf_{}", std::process::id());
    let mut sparse = SparseVectorsConfigBuilder::default();
    sparse.add_named_vector_params(
        engram::index::qdrant::SPARSE,
        SparseVectorParamsBuilder::default().modifier(Modifier::Idf),
    );
    client
        .create_collection(
            CreateCollectionBuilder::new(before_layout.as_str()).sparse_vectors_config(sparse),
        )
        .await?;
    let (ours, theirs) = (BrainId(1), BrainId(2));

    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let words = vocabulary(&mut rng);
    let our_chunks = drafts(&mut rng, &words, OURS);
    let queries: Vec<String> = (0..TENANT_QUERIES)
        .map(|_| {
            let terms = 2 + rng.below(4);
            (0..terms)
                .map(|_| words[rng.zipf(words.len())].clone())
                .collect::<Vec<_>>()
                .join(" ")
        })
        .collect();
    // The other tenant writes the same words, but its common words are our rare ones.
    let mut their_words = words.clone();
    their_words.reverse();
    let their_chunks = drafts(&mut rng, &their_words, THEIRS);

    let mut rows = Vec::new();
    for (collection, engram_now) in [(now.as_str(), true), (before_layout.as_str(), false)] {
        let rank = |collection: &str| {
            let (client, collection) = (&client, collection.to_string());
            let fresh = &fresh;
            let queries = &queries;
            async move {
                if engram_now {
                    rankings(&fresh().await?, ours, queries).await
                } else {
                    rankings_with_qdrant_idf(client, &collection, ours, queries).await
                }
            }
        };
        upload_as(&client, collection, ours, ours, 1, &our_chunks).await?;
        wait_green(&client, collection).await?;
        let before = rank(collection).await?;
        // Now: the other tenant's own term ids; before: one id per word for everyone.
        let their_terms = if engram_now { theirs } else { ours };
        upload_as(
            &client,
            collection,
            theirs,
            their_terms,
            1_000_000,
            &their_chunks,
        )
        .await?;
        wait_green(&client, collection).await?;
        let with_theirs = rank(collection).await?;
        client
            .delete_points(
                DeletePointsBuilder::new(collection)
                    .points(engram::index::qdrant::brain_filter(theirs))
                    .wait(true),
            )
            .await?;
        wait_green(&client, collection).await?;
        let removed = rank(collection).await?;
        let layout = if engram_now {
            "engram now: the brain's own IDF, counted"
        } else {
            "before: Qdrant's IDF modifier, collection-wide"
        };
        rows.push(format!(
            "| {layout} | {} | {} |",
            compare(&before, &with_theirs),
            compare(&before, &removed)
        ));
    }

    println!(
        "\nAnother tenant's corpus and one brain's keyword results in Qdrant: our brain {OURS} \
         chunks, {TENANT_QUERIES} keyword queries of 2–5 words, top {LIMIT}; the other tenant \
         {THEIRS} chunks of the same words, common and rare ones swapped, then deleted.\n"
    );
    println!("| keyword statistics | the other tenant's chunks added | and deleted again |");
    println!("|---|---|---|");
    for row in rows {
        println!("{row}");
    }
    client.delete_collection(now.as_str()).await?;
    client.delete_collection(before_layout.as_str()).await?;
    store.close().await;
    Ok(())
}
