//! Whether the passages found answer a question, judged from retrieval evidence alone: how much
//! of the question's weight (its words weighed by how rare they are in the brain, as BM25 weighs
//! them) the best passage holds, and whether keyword and vector search agree on it. The
//! extractive answer abstains on weak evidence instead of quoting unrelated text. Pure.

use crate::index::TermStatistics;
use crate::text::query_terms;

/// A passage counts as answering when it holds at least this share of the question's weight
/// (or of one part of a question made of several). Chosen on the tune half of
/// `benches/questions/abstention.jsonl`; see `benches/RESULTS.md`.
pub const MIN_COVERAGE: f32 = 0.35;

/// When keyword and vector search both rank a passage this high, half the coverage suffices.
const AGREEMENT_RANK: u32 = 2;

/// How many of the best passages are weighed (the ones an extractive answer quotes).
const WEIGHED_PASSAGES: usize = 3;

/// A question part (a clause between commas, or a sentence) is weighed on its own when it has
/// at least this many words that matter: a chatty question ("Hi! Quick question, sorry: what is
/// X?") is answered when its real part is.
const MIN_PART_TERMS: usize = 2;

/// One retrieved passage, as the evidence needs it.
#[derive(Debug, Clone, Copy)]
pub struct Passage<'a> {
    pub heading: Option<&'a str>,
    pub text: &'a str,
    pub keyword_rank: Option<u32>,
    pub vector_rank: Option<u32>,
}

/// What retrieval says about a question.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Evidence {
    /// The largest share, 0 to 1, of the question's weight (or of one of its parts') that one
    /// of the best passages holds.
    pub coverage: f32,
    /// One of the best passages is among the first of both the keyword and the vector ranking.
    pub agreement: bool,
}

impl Evidence {
    /// Whether the passages answer the question well enough to quote them.
    pub fn answers(&self) -> bool {
        self.coverage >= MIN_COVERAGE || (self.agreement && self.coverage >= MIN_COVERAGE / 2.0)
    }
}

/// Chunks holding none of the question's words assumed besides the brain's own, so that the
/// weights of a brain of a few chunks (where every word it has is in most of them) stay
/// meaningful; negligible for a brain of hundreds of chunks.
const BACKGROUND_CHUNKS: f32 = 20.0;

/// How much a term of the question weighs: BM25's inverse document frequency with the brain's
/// statistics, `ln(1 + (N − n + 0.5) / (n + 0.5))` with N counting `BACKGROUND_CHUNKS` more —
/// always positive, largest for a word no chunk holds. Without statistics every word weighs
/// the same.
fn weight(statistics: Option<&TermStatistics>, position: usize) -> f32 {
    let Some(statistics) = statistics else {
        return 1.0;
    };
    let chunks = statistics.chunks as f32 + BACKGROUND_CHUNKS;
    let holding = statistics.holding.get(position).copied().unwrap_or(0) as f32;
    (1.0 + (chunks - holding + 0.5).max(0.0) / (holding + 0.5)).ln()
}

/// Weighs `passages` (best first) against `question`. `statistics`, when the index has them,
/// are for `query_terms(question)` in order.
pub fn weigh(
    question: &str,
    statistics: Option<&TermStatistics>,
    passages: &[Passage<'_>],
) -> Evidence {
    let terms = query_terms(question);
    let weights: Vec<f32> = (0..terms.len())
        .map(|position| weight(statistics, position))
        .collect();
    // The whole question, then each part of it that says enough on its own, as positions in
    // `terms`.
    let mut parts: Vec<Vec<usize>> = vec![(0..terms.len()).collect()];
    for part in question.split(['.', '!', '?', ';', ':', ',', '\n']) {
        let positions: Vec<usize> = query_terms(part)
            .iter()
            .filter_map(|term| terms.iter().position(|t| t == term))
            .collect();
        if positions.len() >= MIN_PART_TERMS && positions.len() < terms.len() {
            parts.push(positions);
        }
    }
    let mut evidence = Evidence::default();
    for passage in passages.iter().take(WEIGHED_PASSAGES) {
        let held: std::collections::HashSet<String> = query_terms(&format!(
            "{} {}",
            passage.heading.unwrap_or(""),
            passage.text
        ))
        .into_iter()
        .collect();
        for part in &parts {
            let total: f32 = part.iter().map(|&i| weights[i]).sum();
            if total <= 0.0 {
                continue;
            }
            let covered: f32 = part
                .iter()
                .filter(|&&i| held.contains(&terms[i]))
                .map(|&i| weights[i])
                .sum();
            evidence.coverage = evidence.coverage.max(covered / total);
        }
        let near = |rank: Option<u32>| rank.is_some_and(|rank| rank <= AGREEMENT_RANK);
        evidence.agreement |= near(passage.keyword_rank) && near(passage.vector_rank);
    }
    evidence
}

#[cfg(test)]
mod tests {
    use super::*;

    fn passage(text: &str) -> Passage<'_> {
        Passage {
            heading: None,
            text,
            keyword_rank: Some(1),
            vector_rank: None,
        }
    }

    /// Statistics for `question`'s terms: 100 chunks, each term held by the given count.
    fn statistics(question: &str, holding: &[(&str, u64)]) -> TermStatistics {
        TermStatistics {
            chunks: 100,
            holding: query_terms(question)
                .iter()
                .map(|term| {
                    holding
                        .iter()
                        .find(|(t, _)| t == term)
                        .map_or(0, |(_, n)| *n)
                })
                .collect(),
        }
    }

    #[test]
    fn a_passage_holding_the_question_answers_it() {
        let question = "How do I request vacation?";
        let stats = statistics(question, &[("request", 10), ("vacation", 2)]);
        let evidence = weigh(
            question,
            Some(&stats),
            &[passage(
                "Vacation is requested in the HR portal; request it early.",
            )],
        );
        assert!((evidence.coverage - 1.0).abs() < 1e-6, "{evidence:?}");
        assert!(evidence.answers());
    }

    #[test]
    fn a_missing_rare_word_outweighs_common_shared_ones() {
        // "yaml" is in no chunk; "parse" and "python" are in many.
        let question = "How do I parse YAML in Python?";
        let stats = statistics(question, &[("parse", 30), ("python", 60)]);
        let evidence = weigh(
            question,
            Some(&stats),
            &[passage("To parse JSON files in Python, call json.loads.")],
        );
        assert!(evidence.coverage < MIN_COVERAGE, "{evidence:?}");
        assert!(!evidence.answers());
    }

    #[test]
    fn a_shared_rare_word_outweighs_missing_common_ones() {
        let question = "what does textwrap do with long words";
        let stats = statistics(question, &[("textwrap", 1), ("long", 50), ("words", 60)]);
        let evidence = weigh(
            question,
            Some(&stats),
            &[passage("textwrap wraps paragraphs.")],
        );
        assert!(evidence.answers(), "{evidence:?}");
    }

    #[test]
    fn one_word_questions_are_answered_when_the_word_is_there() {
        let question = "trademarks?";
        let stats = statistics(question, &[("trademarks", 3)]);
        let found = weigh(
            question,
            Some(&stats),
            &[passage(
                "This License does not grant permission to use trademarks.",
            )],
        );
        assert!(found.answers());
        let missing = weigh("parking?", None, &[passage("Trademarks are not granted.")]);
        assert!(!missing.answers());
        assert_eq!(weigh("the of", None, &[passage("text")]).coverage, 0.0);
    }

    #[test]
    fn the_real_part_of_a_chatty_question_counts() {
        let question = "Hi! Quick question from the new guy, sorry: what default width does \
                        textwrap use?";
        let stats = statistics(
            question,
            &[("default", 5), ("width", 3), ("textwrap", 2), ("new", 20)],
        );
        let evidence = weigh(
            question,
            Some(&stats),
            &[passage(
                "textwrap: width (default: 70) is the maximum width.",
            )],
        );
        assert!(evidence.answers(), "{evidence:?}");
    }

    #[test]
    fn keyword_and_vector_agreement_lowers_the_bar() {
        let question = "can I put the logo on my product box";
        let mut agreed = passage("Trade names, trademarks and product names are not granted.");
        agreed.vector_rank = Some(1);
        let stats = statistics(question, &[("product", 2)]);
        let alone = weigh(question, Some(&stats), &[passage(agreed.text)]);
        let both = weigh(question, Some(&stats), &[agreed]);
        assert!(!alone.answers(), "{alone:?}");
        assert!(both.agreement);
        assert_eq!(alone.coverage, both.coverage);
        assert_eq!(both.answers(), both.coverage >= MIN_COVERAGE / 2.0);
    }

    #[test]
    fn only_the_best_passages_are_weighed() {
        let question = "vacation request";
        let passages = [
            passage("nothing"),
            passage("nothing"),
            passage("nothing"),
            passage("vacation request"),
        ];
        assert_eq!(weigh(question, None, &passages).coverage, 0.0);
    }
}
