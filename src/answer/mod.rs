//! Answers: retrieve a brain's best passages for a question — diverse across documents and
//! above a relevance floor, with the evidence of whether they answer it — and answer from them
//! (`Answerer`), by the LLM or by quoting them, with the passages of files attached to the
//! question (`attached`); which sources an answer cites.

pub mod answerer;
pub mod attached;
pub mod budget;
pub mod evidence;
pub mod extractive;
pub mod prompt;

use serde::Serialize;

use crate::brain::{BrainId, DocumentId};
use crate::index::{Index, IndexError, SearchHit, SearchQuery, RRF_K};
use crate::llm::Embedder;

pub use answerer::{AnswerError, Answered, Answerer, Provenance, Question};
pub use attached::Attachment;
pub use evidence::Evidence;
pub use extractive::{content_terms, extractive_answer};

/// Hybrid hits with the vector side taken out for the documents in `stale`: their chunks keep
/// the reciprocal-rank score of their keyword rank alone, and those found only by vector
/// (compared with vectors of another model) are dropped; the rest keep their fused score.
pub fn keyword_only_for(hits: Vec<SearchHit>, stale: &[DocumentId]) -> Vec<SearchHit> {
    let mut hits: Vec<SearchHit> = hits
        .into_iter()
        .filter_map(|hit| {
            if !stale.contains(&DocumentId(hit.document_id)) {
                return Some(hit);
            }
            let rank = hit.keyword_rank?;
            Some(SearchHit {
                score: 1.0 / (RRF_K + rank as f32),
                vector_rank: None,
                vector_similarity: None,
                ..hit
            })
        })
        .collect();
    // Stable: equal scores keep the index's order.
    hits.sort_by(|a, b| b.score.total_cmp(&a.score));
    hits
}

/// A numbered source an answer may cite.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Source {
    /// 1-based number used in citations (`[1]`).
    pub n: usize,
    pub file: String,
    pub page: Option<u32>,
    pub heading: Option<String>,
    pub score: f32,
    pub link: Option<String>,
    /// Whether the answer's text cites it (`[n]`).
    pub cited: bool,
    #[serde(skip)]
    pub text: String,
    /// The document the passage is from; 0 for a file attached to the question.
    #[serde(skip)]
    pub document_id: i64,
}

/// How many passages to use, and how many may come from one document.
#[derive(Debug, Clone, Copy)]
pub struct RetrievalOptions {
    pub limit: usize,
    pub per_document: usize,
}

impl Default for RetrievalOptions {
    fn default() -> Self {
        Self {
            limit: 5,
            per_document: 2,
        }
    }
}

/// A vector-only hit (no keyword in common) counts only this high in the vector ranking.
const VECTOR_ONLY_MAX_RANK: u32 = 3;

/// What retrieval found for a question.
#[derive(Debug, Clone, Default)]
pub struct Retrieved {
    /// The passages, best first (numbered from 1).
    pub sources: Vec<Source>,
    /// Whether they answer the question.
    pub evidence: Evidence,
}

impl Retrieved {
    /// Whether the passages answer the question well enough to be quoted.
    pub fn answers(&self) -> bool {
        !self.sources.is_empty() && self.evidence.answers()
    }
}

/// The brain's most relevant passages for `question`, best first, at most
/// `options.per_document` per document, with the evidence of whether they answer it. No
/// sources when nothing is relevant: the caller says so rather than inventing an answer.
pub async fn retrieve(
    index: &dyn Index,
    embedder: Option<&Embedder>,
    brain: BrainId,
    question: &str,
    options: RetrievalOptions,
) -> Result<Retrieved, IndexError> {
    retrieve_with_stale(index, embedder, brain, question, options, &[], &[]).await
}

/// `retrieve`, where the documents in `stale` have vectors of another embedding model (not yet
/// embedded again): their chunks count by their keyword rank alone; the documents in `hidden`
/// are not searched at all.
pub async fn retrieve_with_stale(
    index: &dyn Index,
    embedder: Option<&Embedder>,
    brain: BrainId,
    question: &str,
    options: RetrievalOptions,
    stale: &[DocumentId],
    hidden: &[DocumentId],
) -> Result<Retrieved, IndexError> {
    let vector = match embedder {
        Some(embedder) => match embedder.embed_question(question).await {
            Ok(vector) => Some(vector),
            Err(error) => {
                tracing::warn!(%error, "cannot embed the question; searching by keywords only");
                None
            }
        },
        None => None,
    };
    let hybrid = vector.is_some();
    let hits = index
        .search(
            brain,
            &SearchQuery {
                text: question.to_string(),
                vector,
                limit: options.limit * 4,
                hidden: hidden.iter().map(|document| document.0).collect(),
            },
        )
        .await?;
    let hits = if hybrid && !stale.is_empty() {
        keyword_only_for(hits, stale)
    } else {
        hits
    };
    let terms = content_terms(question);
    let mut similarities = Vec::new();
    let mut per_document: std::collections::HashMap<i64, usize> = Default::default();
    let mut sources = Vec::new();
    for hit in hits {
        let lowered =
            format!("{} {}", hit.heading.as_deref().unwrap_or(""), hit.text).to_lowercase();
        let shares_a_term = terms.iter().any(|term| lowered.contains(term.as_str()));
        let close_vector = hit
            .vector_rank
            .is_some_and(|rank| rank <= VECTOR_ONLY_MAX_RANK);
        if !shares_a_term && !close_vector {
            continue;
        }
        let taken = per_document.entry(hit.document_id).or_default();
        if *taken >= options.per_document {
            continue;
        }
        *taken += 1;
        similarities.push(hit.vector_similarity);
        sources.push(Source {
            n: sources.len() + 1,
            file: hit.file_name,
            page: hit.page,
            heading: hit.heading,
            score: hit.score,
            link: hit.source_link,
            cited: false,
            text: hit.text,
            document_id: hit.document_id,
        });
        if sources.len() == options.limit {
            break;
        }
    }
    let evidence = if sources.is_empty() {
        Evidence::default()
    } else {
        let statistics = index
            .term_statistics(brain, &crate::text::query_terms(question))
            .await?;
        let passages: Vec<evidence::Passage<'_>> = sources
            .iter()
            .zip(&similarities)
            .map(|(source, &similarity)| evidence::Passage {
                heading: source.heading.as_deref(),
                text: &source.text,
                similarity,
            })
            .collect();
        evidence::weigh(question, statistics.as_ref(), &passages)
    };
    Ok(Retrieved { sources, evidence })
}

/// The source numbers `text` cites (`[2]`, `[1, 3]`, `[1][2]`), in the order first cited,
/// each once; numbers that name no source (0, or above `count`) are ignored.
pub fn citations(text: &str, count: usize) -> Vec<usize> {
    let mut cited = Vec::new();
    let mut rest = text;
    while let Some(open) = rest.find('[') {
        rest = &rest[open + 1..];
        let Some(close) = rest.find(']') else {
            break;
        };
        let inside = &rest[..close];
        let numbers: Option<Vec<usize>> = inside
            .split(',')
            .map(|part| part.trim().parse::<usize>().ok())
            .collect();
        if let Some(numbers) = numbers {
            for n in numbers {
                if (1..=count).contains(&n) && !cited.contains(&n) {
                    cited.push(n);
                }
            }
        }
        rest = &rest[close..];
    }
    cited
}

/// Marks the sources `text` cites and orders them: cited ones first in the order first cited,
/// then the others in rank order. Numbers are kept, so the text's `[n]` still match.
pub fn mark_cited(text: &str, sources: &mut [Source]) {
    let order = citations(text, sources.len());
    for source in sources.iter_mut() {
        source.cited = order.contains(&source.n);
    }
    sources.sort_by_key(|source| {
        order
            .iter()
            .position(|&n| n == source.n)
            .map_or((1, source.n), |at| (0, at))
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hit(
        chunk: i64,
        document: i64,
        keyword_rank: Option<u32>,
        vector_rank: Option<u32>,
    ) -> SearchHit {
        let rrf = |rank: Option<u32>| rank.map_or(0.0, |r| 1.0 / (RRF_K + r as f32));
        SearchHit {
            chunk_id: chunk,
            document_id: document,
            file_name: format!("doc{document}"),
            source_link: None,
            page: None,
            heading: None,
            text: String::new(),
            score: rrf(keyword_rank) + rrf(vector_rank),
            keyword_rank,
            vector_rank,
            vector_similarity: vector_rank.map(|_| 0.5),
        }
    }

    #[test]
    fn stale_documents_count_by_keywords_only() {
        let hits = vec![
            hit(1, 7, Some(2), Some(1)), // stale: keeps its keyword rank's score
            hit(2, 7, None, Some(2)),    // stale and found by vector only: dropped
            hit(3, 8, Some(3), Some(3)), // current: keeps its fused score
            hit(4, 8, Some(1), None),
        ];
        let kept = keyword_only_for(hits, &[DocumentId(7)]);
        let ids: Vec<i64> = kept.iter().map(|hit| hit.chunk_id).collect();
        assert_eq!(ids, [3, 4, 1]);
        let stale = kept.iter().find(|hit| hit.chunk_id == 1).unwrap();
        assert_eq!(stale.vector_rank, None);
        assert_eq!(stale.vector_similarity, None);
        assert!((stale.score - 1.0 / (RRF_K + 2.0)).abs() < 1e-9);
        // Nothing stale: nothing changes.
        let same = keyword_only_for(vec![hit(5, 9, None, Some(1))], &[DocumentId(7)]);
        assert_eq!(same.len(), 1);
    }

    #[test]
    fn citations_are_read_in_order_once() {
        assert_eq!(
            citations("See [3]. Also [1, 2] and [1][3]; not [9] or [x] or [0].", 3),
            [3, 1, 2]
        );
        assert!(citations("no markers [", 3).is_empty());
        assert_eq!(citations("a [2] b [ 1 ]", 2), [2, 1]);
    }

    fn source(n: usize) -> Source {
        Source {
            n,
            file: format!("doc{n}.md"),
            page: None,
            heading: None,
            score: 1.0,
            link: None,
            cited: false,
            text: String::new(),
            document_id: n as i64,
        }
    }

    #[test]
    fn cited_sources_come_first_in_citation_order() {
        let mut sources: Vec<Source> = (1..=4).map(source).collect();
        mark_cited("Yes [3], because [1].", &mut sources);
        let order: Vec<(usize, bool)> = sources.iter().map(|s| (s.n, s.cited)).collect();
        assert_eq!(order, [(3, true), (1, true), (2, false), (4, false)]);
    }
}
