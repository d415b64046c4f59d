//! Randomized input tests of keyword tokenising and the in-memory BM25 index: arbitrary text
//! in any script splits the same way for chunks and questions, and a search finds exactly
//! the live chunks that share a term with the question, ranked by score.

use std::collections::{HashMap, HashSet};

use super::*;
use crate::randomized::{check, Rng};
use crate::text::query_terms;

const WORDS: &[&str] = &[
    "kiwi",
    "Kiwi",
    "KIWI",
    "café",
    "cafe",
    "CAFÉ",
    "the",
    "and",
    "x-ray",
    "日本語",
    "Ωμέγα",
    "ΟΔΟΣ",
    "οδος",
    "İstanbul",
    "straße",
    "naïve",
    "42",
    "4.2",
    "🦀",
    "a",
    "what's",
    "NEAR(",
    "\"quoted\"",
    "*",
    "-",
    "OR",
    "AND",
    "NOT",
    "é",
    "e\u{301}",
    "ﬁle",
];

fn text(rng: &mut Rng) -> String {
    let len = rng.length(60);
    let mut out = String::new();
    for _ in 0..len {
        if rng.percent(30) {
            out.push(rng.char());
        } else {
            out.push_str(rng.choose(WORDS));
            out.push(' ');
        }
    }
    out
}

fn distinct_terms(heading: Option<&str>, text: &str) -> HashSet<String> {
    chunk_term_frequencies(heading, text)
        .0
        .into_iter()
        .map(|(term, _)| term)
        .collect()
}

#[test]
fn chunks_and_questions_split_alike() {
    check("keyword terms", 3000, |rng| {
        let heading = rng.percent(50).then(|| text(rng));
        let body = text(rng);
        let (frequencies, length) = chunk_term_frequencies(heading.as_deref(), &body);
        let heading_length = chunk_term_frequencies(None, heading.as_deref().unwrap_or("")).1;
        let weighted: u32 = frequencies.iter().map(|(_, f)| f).sum();
        assert_eq!(weighted, length + (HEADING_WEIGHT - 1) * heading_length);
        let mut seen = HashSet::new();
        for (term, frequency) in &frequencies {
            assert!(*frequency > 0);
            assert!(seen.insert(term.clone()), "{term:?} counted twice");
            assert!(!is_stopword(term));
            // User text never carries query syntax into a term.
            assert!(
                !term.is_empty()
                    && term
                        .chars()
                        .all(|c| !c.is_whitespace() && !c.is_ascii_punctuation()),
                "{term:?}"
            );
        }
        // A question's terms are spelled as the chunk's: asking with a chunk's own text
        // names only terms the chunk has, each once.
        let question = query_terms(&body);
        let distinct: HashSet<&String> = question.iter().collect();
        assert_eq!(distinct.len(), question.len());
        let terms = distinct_terms(None, &body);
        assert_eq!(distinct.len(), terms.len());
        assert!(question.iter().all(|t| terms.contains(t)));
    });
}

#[test]
fn search_finds_exactly_the_live_chunks_sharing_a_term() {
    check("keyword search", 1500, |rng| {
        let mut index = BrainTerms::default();
        let mut live: HashMap<i64, HashSet<String>> = HashMap::new();
        let mut next_id = 1;
        for _ in 0..rng.length(40) {
            match rng.below(6) {
                0 if !live.is_empty() => {
                    // Remove one chunk, sometimes also an id never added.
                    let ids: Vec<i64> = live.keys().copied().collect();
                    let id = rng.choose(&ids);
                    live.remove(&id);
                    index.remove(&HashSet::from([id, -id]));
                }
                _ => {
                    let heading = rng.percent(30).then(|| text(rng));
                    let body = text(rng);
                    assert!(index.add(next_id, heading.as_deref(), &body));
                    live.insert(next_id, distinct_terms(heading.as_deref(), &body));
                    next_id += 1;
                }
            }
        }
        let question = query_terms(&text(rng));
        let limit = rng.range(0, 50);
        let hits = index.search(&question, limit, &HashSet::new());

        let mut expected: Vec<i64> = live
            .iter()
            .filter(|(_, terms)| question.iter().any(|t| terms.contains(t)))
            .map(|(id, _)| *id)
            .collect();
        expected.sort_unstable();
        assert_eq!(hits.len(), expected.len().min(limit));
        for pair in hits.windows(2) {
            let ((a, sa), (b, sb)) = (pair[0], pair[1]);
            assert!(sa > sb || (sa == sb && a < b), "{hits:?} out of order");
        }
        for (id, score) in &hits {
            assert!(score.is_finite() && *score > 0.0, "{score}");
            assert!(expected.binary_search(id).is_ok(), "{id} shares no term");
        }
        if limit >= expected.len() {
            let mut found: Vec<i64> = hits.iter().map(|h| h.0).collect();
            found.sort_unstable();
            assert_eq!(found, expected);
        }
        let removed = (next_id - 1) as usize - live.len();
        assert_eq!(index.wants_reload(), removed * 4 > (next_id - 1) as usize);
        assert!(index.bytes() > 0 || next_id == 1);
    });
}
