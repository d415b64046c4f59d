//! The search index: the `Index` trait (write a document's chunks, forget them, search one
//! brain) and its implementations: embedded on SQLite (FTS5 + sqlite-vec, with in-memory keyword
//! and vector caches) and Qdrant (`qdrant`). The only module that knows FTS5, sqlite-vec or
//! Qdrant.

mod cache;
pub mod embedded;
mod keyword;
pub mod qdrant;

use async_trait::async_trait;

use crate::brain::BrainId;
use crate::text::ChunkDraft;

pub use embedded::EmbeddedIndex;
pub use keyword::rank_passages;
pub use qdrant::{QdrantIndex, QdrantOptions};

/// Store id of a document (a row of `documents`); the index writes its chunks under it.
pub use crate::brain::DocumentId;

/// Everything the index keeps about one document: its chunks and, when embeddings are on, one
/// vector per chunk (same order).
#[derive(Debug, Clone, Copy)]
pub struct IndexedDocument<'a> {
    pub brain: BrainId,
    pub document: DocumentId,
    pub pages: u32,
    pub ocr_pages: u32,
    pub chunks: &'a [ChunkDraft],
    pub vectors: Option<&'a [Vec<f32>]>,
}

impl IndexedDocument<'_> {
    /// One vector per chunk, each as wide as the index's (`dimensions`; `None`: vectors are
    /// off), when the document has vectors.
    pub(crate) fn check_vectors(&self, dimensions: Option<usize>) -> Result<(), IndexError> {
        if let Some(vectors) = self.vectors {
            if vectors.len() != self.chunks.len() {
                return Err(IndexError::VectorCount {
                    chunks: self.chunks.len(),
                    vectors: vectors.len(),
                });
            }
            for vector in vectors {
                check_vector(dimensions, vector)?;
            }
        }
        Ok(())
    }
}

/// A vector's width checked against the index's (`None`: vectors are off): the width.
pub(crate) fn check_vector(dimensions: Option<usize>, vector: &[f32]) -> Result<usize, IndexError> {
    let expected = dimensions.ok_or(IndexError::VectorsDisabled)?;
    if vector.len() != expected {
        return Err(IndexError::DimensionMismatch {
            expected,
            got: vector.len(),
        });
    }
    Ok(expected)
}

/// A question as the index sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct SearchQuery {
    pub text: String,
    /// The question's embedding; `None` searches by keywords only.
    pub vector: Option<Vec<f32>>,
    /// How many hits to return at most.
    pub limit: usize,
    /// Documents the search must not see (learned in restricted channels other than the one
    /// asking): left out by the search itself, in both indexes, so they neither answer nor
    /// push other hits out of the limit.
    pub hidden: Vec<i64>,
}

/// One chunk found for a query, with what an answer needs to cite it.
#[derive(Debug, Clone, PartialEq)]
pub struct SearchHit {
    pub chunk_id: i64,
    pub document_id: i64,
    pub file_name: String,
    pub source_link: Option<String>,
    pub page: Option<u32>,
    pub heading: Option<String>,
    pub text: String,
    /// Higher is better: BM25 (negated) for keyword searches, the reciprocal-rank-fusion sum for
    /// hybrid ones.
    pub score: f32,
    /// 1-based rank in the keyword results, when the chunk was among them.
    pub keyword_rank: Option<u32>,
    /// 1-based rank in the vector results, when the chunk was among them.
    pub vector_rank: Option<u32>,
    /// Cosine similarity, -1 to 1, of the question's vector and the chunk's, when the chunk
    /// was among the vector results: how close in meaning, which ranks alone do not say.
    pub vector_similarity: Option<f32>,
}

/// A brain's keyword statistics for some terms, as its keyword search weighs them.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TermStatistics {
    /// Chunks in the brain.
    pub chunks: u64,
    /// For each term asked about, in order, how many of the brain's chunks hold it.
    pub holding: Vec<u64>,
}

/// Why an index call failed; `is_transient` says whether trying again later may help.
#[derive(Debug, thiserror::Error)]
pub enum IndexError {
    #[error("the index is unreachable: {0}")]
    Unavailable(String),
    #[error(
        "embeddings have {got} dimensions but the index holds {expected}: after changing \
         `embeddings.dimensions` or the embedding model, run `engram brain reindex BRAIN` for \
         each brain"
    )]
    DimensionMismatch { expected: usize, got: usize },
    #[error("{chunks} chunks but {vectors} vectors: every chunk needs exactly one vector")]
    VectorCount { chunks: usize, vectors: usize },
    #[error("this index was opened without embeddings, so it cannot take or search vectors")]
    VectorsDisabled,
    #[error("document {document} does not exist in brain {brain}")]
    UnknownDocument { brain: BrainId, document: i64 },
    #[error("stored index data is not what engram expects: {0}")]
    Corrupt(String),
    /// The disk under the index is full: nothing was written (one transaction), and writes
    /// work again once there is room.
    #[error("the index's disk is full; free some space (nothing was written): {0}")]
    Full(String),
    #[error("index database error: {0}")]
    Database(sqlx::Error),
    #[error("the index refused the request: {0}")]
    Rejected(String),
}

impl IndexError {
    pub fn is_transient(&self) -> bool {
        match self {
            IndexError::Unavailable(_) | IndexError::Full(_) => true,
            IndexError::Database(sqlx::Error::Database(db)) => {
                // SQLITE_BUSY (5) and SQLITE_LOCKED (6), with their extended codes.
                db.code()
                    .and_then(|code| code.parse::<i64>().ok())
                    .is_some_and(|code| matches!(code & 0xff, 5 | 6))
            }
            _ => false,
        }
    }
}

impl crate::worker::Transience for IndexError {
    fn is_transient(&self) -> bool {
        IndexError::is_transient(self)
    }
}

impl From<sqlx::Error> for IndexError {
    fn from(error: sqlx::Error) -> Self {
        if crate::store::is_unreachable(&error) {
            IndexError::Unavailable(error.to_string())
        } else if crate::store::is_disk_full(&error) {
            IndexError::Full(error.to_string())
        } else {
            IndexError::Database(error)
        }
    }
}

/// Where chunks are written and searched. Every search is scoped to one brain by signature.
#[async_trait]
pub trait Index: Send + Sync + std::fmt::Debug {
    /// Writes every chunk of the document (replacing any it had), marks it indexed and retires
    /// the older versions of its name (their chunks deleted, their rows moved to the history)
    /// — at once for searches: one transaction (embedded), or new points hidden until the
    /// store's switch and old points hidden from it on (Qdrant).
    async fn index_document(&self, document: IndexedDocument<'_>) -> Result<(), IndexError>;
    /// Removes a document's chunks and the document row.
    async fn forget_document(&self, brain: BrainId, document: DocumentId)
        -> Result<(), IndexError>;
    /// Best chunks of this brain only. Keyword (BM25) when `vector` is None; hybrid (BM25 +
    /// vector, fused by reciprocal-rank fusion, k = 60) when it is Some.
    async fn search(
        &self,
        brain: BrainId,
        query: &SearchQuery,
    ) -> Result<Vec<SearchHit>, IndexError>;
    /// How many of the brain's chunks there are and how many hold each of `terms` (terms as
    /// `query_terms` makes them): what an answer weighs a question's words by when it decides
    /// whether a passage answers it. `None` when this index cannot tell; answers then weigh
    /// every word alike.
    async fn term_statistics(
        &self,
        _brain: BrainId,
        _terms: &[String],
    ) -> Result<Option<TermStatistics>, IndexError> {
        Ok(None)
    }
    /// The document's chunks as they were indexed, in order: what re-embedding starts from.
    async fn document_chunks(
        &self,
        brain: BrainId,
        document: DocumentId,
    ) -> Result<Vec<ChunkDraft>, IndexError>;
    /// Deletes the chunks of replaced versions that are still in the index (an index outside
    /// the store deletes them after the store retired them, and a crash in between leaves them
    /// for this). An index inside the store retires them in the same transaction: nothing to do.
    async fn purge_replaced(&self, _brain: BrainId) -> Result<(), IndexError> {
        Ok(())
    }
    /// Removes every chunk of a brain about to be deleted from the store. An index inside the
    /// store has nothing to do: deleting the brain deletes its chunks with it.
    async fn forget_brain(&self, _brain: BrainId) -> Result<(), IndexError> {
        Ok(())
    }
    /// Whether the index answers, for readiness checks; an index inside the store is as ready
    /// as the store.
    async fn ping(&self) -> Result<(), IndexError> {
        Ok(())
    }
}

/// The reciprocal-rank-fusion constant: dampens the weight of top ranks so that agreement
/// between the two lists matters more than either list's first place.
pub const RRF_K: f32 = 60.0;

/// How many candidates each side of a hybrid search contributes before fusion.
pub fn candidates_per_side(limit: usize) -> usize {
    (limit * 4).max(20)
}

/// Fuses ranked lists of chunk ids (best first) by reciprocal-rank fusion: each id scores
/// Σ 1 / (RRF_K + rank), rank from 1. Returns `(id, score, keyword rank, vector rank)`, best
/// first, ties broken by the better keyword rank and then the id, so the order is
/// deterministic.
pub fn reciprocal_rank_fusion(
    keyword: &[i64],
    vector: &[i64],
) -> Vec<(i64, f32, Option<u32>, Option<u32>)> {
    let mut fused: Vec<(i64, f32, Option<u32>, Option<u32>)> = Vec::new();
    let rank = |i: usize| u32::try_from(i + 1).unwrap_or(u32::MAX);
    for (i, &id) in keyword.iter().enumerate() {
        fused.push((id, 1.0 / (RRF_K + (i + 1) as f32), Some(rank(i)), None));
    }
    for (i, &id) in vector.iter().enumerate() {
        let score = 1.0 / (RRF_K + (i + 1) as f32);
        match fused.iter_mut().find(|entry| entry.0 == id) {
            Some(entry) => {
                entry.1 += score;
                entry.3 = Some(rank(i));
            }
            None => fused.push((id, score, None, Some(rank(i)))),
        }
    }
    fused.sort_by(|a, b| {
        b.1.total_cmp(&a.1)
            .then(a.2.unwrap_or(u32::MAX).cmp(&b.2.unwrap_or(u32::MAX)))
            .then(a.0.cmp(&b.0))
    });
    fused
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fusion_rewards_agreement() {
        let fused = reciprocal_rank_fusion(&[1, 2, 3], &[3, 4, 1]);
        let ids: Vec<i64> = fused.iter().map(|f| f.0).collect();
        assert_eq!(ids, vec![1, 3, 2, 4]);
        assert_eq!(fused[0].2, Some(1));
        assert_eq!(fused[0].3, Some(3));
        assert_eq!(fused[2].3, None);
        assert!((fused[0].1 - (1.0 / 61.0 + 1.0 / 63.0)).abs() < 1e-6);
    }

    #[test]
    fn candidate_count_has_a_floor() {
        assert_eq!(candidates_per_side(1), 20);
        assert_eq!(candidates_per_side(10), 40);
    }

    #[test]
    fn busy_is_transient() {
        assert!(IndexError::Unavailable("x".into()).is_transient());
        assert!(!IndexError::VectorsDisabled.is_transient());
        assert!(!IndexError::DimensionMismatch {
            expected: 3,
            got: 4
        }
        .is_transient());
    }
}
