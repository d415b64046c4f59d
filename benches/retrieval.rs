//! Retrieval benchmark: the embedded index (FTS5 + sqlite-vec) in a temp SQLite store with
//! 10 brains, 100,000 chunks in the measured brain and 10,000 in each of the others. Reports
//! the index build rate, the time to load the measured brain's in-memory caches (keyword index
//! and vector codes) and keyword / hybrid query latency once they are loaded. Results:
//! `benches/RESULTS.md`.
//!
//! `cargo bench --bench retrieval [-- --chunks N] [--keep DIR]` (N chunks in the measured brain;
//! `--keep` writes the database to DIR and leaves it there, to inspect with other tools).

#![allow(clippy::print_stdout)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use engram::brain::{BrainId, BrainName, DocumentId, TenantKey};
use engram::config::{StoreConfig, StoreUrl};
use engram::index::{EmbeddedIndex, Index, IndexedDocument, SearchQuery};
use engram::ingest::chunk::{keyword_terms, ChunkDraft};

const BRAINS: usize = 10;
const DIMENSIONS: usize = 384;
const VOCABULARY: usize = 5_000;
const CHUNKS_PER_DOCUMENT: usize = 50;
const QUERIES: usize = 1_000;
const LIMIT: usize = 8;

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

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut measured_chunks = 100_000usize;
    let mut keep = None;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        if arg == "--chunks" {
            measured_chunks = args.next().ok_or("--chunks needs a number")?.parse()?;
        } else if arg == "--keep" {
            keep = Some(std::path::PathBuf::from(
                args.next().ok_or("--keep needs a directory")?,
            ));
        }
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(run(measured_chunks, keep))
}

async fn run(
    measured_chunks: usize,
    keep: Option<std::path::PathBuf>,
) -> Result<(), Box<dyn std::error::Error>> {
    let other_chunks = measured_chunks / 10;
    let temp = tempfile::tempdir()?;
    let dir = match &keep {
        Some(path) => {
            std::fs::create_dir_all(path)?;
            path.clone()
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
    let embedded = Arc::new(EmbeddedIndex::open(&config, Some(DIMENSIONS)).await?);
    let index: Arc<dyn Index> = embedded.clone();
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
            let drafts: Vec<ChunkDraft> = (0..count)
                .map(|i| {
                    let text = paragraph(&mut rng, &words);
                    ChunkDraft {
                        ordinal: i as u32,
                        page: Some(1 + i as u32 / 3),
                        heading: Some(format!("Section {}", i / 5)),
                        tokens: engram::ingest::chunk::count_tokens(&text) as u32,
                        text,
                    }
                })
                .collect();
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

    // Load the measured brain's caches, as a running server has them; searches use FTS5 until
    // then. The keyword index alone is timed on a second, keyword-only index of the same file.
    let keyword_only = EmbeddedIndex::open(&config, None).await?;
    let started = Instant::now();
    keyword_only.warm(measured).await?;
    let keyword_load = started.elapsed();
    keyword_only.close().await;
    drop(keyword_only);
    let started = Instant::now();
    embedded.warm(measured).await?;
    let warm_time = started.elapsed();
    // Warm the page cache the way a running server would be.
    for text in queries.iter().take(50) {
        let query = SearchQuery {
            text: text.clone(),
            vector: Some(embed(text)),
            limit: LIMIT,
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

    let file_size = std::fs::metadata(dir.join("engram.db"))?.len();
    println!(
        "\nRetrieval: {BRAINS} brains, {measured_chunks} chunks in the measured brain, \
         {other_chunks} in each other one ({total} in all, {documents} documents), \
         {DIMENSIONS}-dim vectors, top {LIMIT}; database {:.0} MiB\n",
        file_size as f64 / (1024.0 * 1024.0)
    );
    println!("| measure | value | target |");
    println!("|---|---|---|");
    println!(
        "| index build (index_document, {CHUNKS_PER_DOCUMENT} chunks/document) | {:.0} chunks/s | — |",
        build_rate
    );
    println!(
        "| load the measured brain's keyword index (in the background, once) | {:.2} s | — |",
        keyword_load.as_secs_f64()
    );
    println!(
        "| load its keyword index and vector codes together | {:.2} s | — |",
        warm_time.as_secs_f64()
    );
    println!(
        "| keyword query p50 / p99 / max ({QUERIES} queries, 2–5 terms) | {} / {} / {} | p99 ≤ 10 ms |",
        ms(percentile(&keyword, 0.5)),
        ms(percentile(&keyword, 0.99)),
        ms(percentile(&keyword, 1.0))
    );
    println!(
        "| hybrid query p50 / p99 / max ({QUERIES} queries) | {} / {} / {} | p99 ≤ 30 ms |",
        ms(percentile(&hybrid, 0.5)),
        ms(percentile(&hybrid, 0.99)),
        ms(percentile(&hybrid, 1.0))
    );
    println!(
        "\nMean hits per query: keyword {:.1}, hybrid {:.1}.",
        keyword_hits as f64 / QUERIES as f64,
        hybrid_hits as f64 / QUERIES as f64
    );
    store.close().await;
    Ok(())
}
