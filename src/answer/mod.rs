//! Answers: retrieve a brain's best passages for a question — diverse across documents and
//! above a relevance floor — and answer from them (`Answerer`), by the LLM or by quoting them.

pub mod answerer;
pub mod extractive;
pub mod prompt;

use serde::Serialize;

use crate::brain::BrainId;
use crate::index::{Index, IndexError, SearchQuery};
use crate::llm::Embedder;

pub use answerer::{AnswerError, Answered, Answerer, Provenance, Question};
pub use extractive::{content_terms, extractive_answer};

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
    #[serde(skip)]
    pub text: String,
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

/// The brain's most relevant passages for `question`, best first, at most
/// `options.per_document` per document. Empty when nothing is relevant: the caller says so
/// rather than inventing an answer.
pub async fn retrieve(
    index: &dyn Index,
    embedder: Option<&Embedder>,
    brain: BrainId,
    question: &str,
    options: RetrievalOptions,
) -> Result<Vec<Source>, IndexError> {
    let vector = match embedder {
        Some(embedder) => match embedder.embed(&[question.to_string()]).await {
            Ok(mut vectors) => vectors.pop(),
            Err(error) => {
                tracing::warn!(%error, "cannot embed the question; searching by keywords only");
                None
            }
        },
        None => None,
    };
    let hits = index
        .search(
            brain,
            &SearchQuery {
                text: question.to_string(),
                vector,
                limit: options.limit * 4,
            },
        )
        .await?;
    let terms = content_terms(question);
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
        sources.push(Source {
            n: sources.len() + 1,
            file: hit.file_name,
            page: hit.page,
            heading: hit.heading,
            score: hit.score,
            link: hit.source_link,
            text: hit.text,
            document_id: hit.document_id,
        });
        if sources.len() == options.limit {
            break;
        }
    }
    Ok(sources)
}
