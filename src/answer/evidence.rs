//! Whether the passages found answer a question, judged from retrieval evidence alone: how much
//! of the question's weight (its words weighed by how rare they are in the brain, as BM25 weighs
//! them) the best passage holds and, when the question has a vector, how close in meaning the
//! closest passage is (cosine similarity). The extractive answer abstains on weak evidence
//! instead of quoting unrelated text. Pure.

use crate::index::TermStatistics;
use crate::text::query_terms;

/// Keyword-only: a passage counts as answering when it holds at least this share of the
/// question's weight (or of one part of a question made of several). Chosen on the tune half of
/// `benches/questions/abstention.jsonl`; see `benches/RESULTS.md`.
pub const MIN_COVERAGE: f32 = 0.35;

/// With a vector, a passage this close in meaning (cosine similarity) answers whatever words it
/// shares: a paraphrase. All-MiniLM-L6-v2 scores questions and passages about different things
/// below 0.3 (the team-knowledge-base questions of the benchmark: 0.08 to 0.29).
pub const MEANING: f32 = 0.40;

/// With a vector, a passage holding at least `WORDS_WITH_MEANING` of the question's weight
/// answers when it is also at least this close in meaning: the words are there and are not
/// about something else.
pub const RELATED: f32 = 0.25;

/// See `RELATED`.
pub const WORDS_WITH_MEANING: f32 = 0.30;

/// Coverage at which a passage answers on words alone, with or without a vector: it holds all
/// of the question's weight (or all of a part's). One-word questions have vectors of little
/// meaning, so their similarities are low even when the word is there.
const ALL_WORDS: f32 = 0.999;

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
    /// Cosine similarity of the question's vector and the passage's, when the vector search
    /// found it.
    pub similarity: Option<f32>,
}

/// What retrieval says about a question.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Evidence {
    /// The largest share, 0 to 1, of the question's weight (or of one of its parts') that one
    /// of the best passages holds.
    pub coverage: f32,
    /// The highest cosine similarity of the question's vector and one of the best passages';
    /// `None` without a vector.
    pub similarity: Option<f32>,
}

impl Evidence {
    /// Whether the passages answer the question well enough to quote them. With a similarity
    /// (the question has a vector and a best passage was found by it), words and meaning
    /// together: close in meaning, or the words there and at least related in meaning, or every
    /// word there. Without one, words alone: `MIN_COVERAGE` of the question's weight.
    pub fn answers(&self) -> bool {
        match self.similarity {
            None => self.coverage >= MIN_COVERAGE,
            Some(similarity) => {
                similarity >= MEANING
                    || (self.coverage >= WORDS_WITH_MEANING && similarity >= RELATED)
                    || self.coverage >= ALL_WORDS
            }
        }
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
        if let Some(similarity) = passage.similarity {
            evidence.similarity = Some(
                evidence
                    .similarity
                    .map_or(similarity, |s| s.max(similarity)),
            );
        }
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
            similarity: None,
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

    fn close(text: &str, similarity: f32) -> Passage<'_> {
        Passage {
            similarity: Some(similarity),
            ..passage(text)
        }
    }

    #[test]
    fn a_paraphrase_close_in_meaning_answers_without_the_words() {
        let question = "can I put the logo on my product box";
        let text = "Trade names, trademarks and product names are not granted.";
        let stats = statistics(question, &[("product", 2)]);
        let words = weigh(question, Some(&stats), &[passage(text)]);
        assert!(words.coverage < WORDS_WITH_MEANING, "{words:?}");
        assert!(!words.answers(), "{words:?}");
        let meaning = weigh(question, Some(&stats), &[close(text, MEANING + 0.03)]);
        assert_eq!(meaning.coverage, words.coverage);
        assert!(meaning.answers(), "{meaning:?}");
        // Related but not close: the words would have to be there too.
        let related = weigh(question, Some(&stats), &[close(text, MEANING - 0.05)]);
        assert!(!related.answers(), "{related:?}");
    }

    #[test]
    fn shared_words_about_something_else_do_not_answer() {
        // Keyword-only, "parental" missing and "policy" shared holds enough weight; the vector
        // says the passage is about something else.
        let question = "What is our parental leave policy?";
        let stats = statistics(question, &[("leave", 1), ("policy", 3)]);
        let text = "This policy covers leave of absence from the project's mailing lists.";
        let words = weigh(question, Some(&stats), &[passage(text)]);
        assert!(words.answers(), "{words:?}");
        let unrelated = weigh(question, Some(&stats), &[close(text, RELATED - 0.07)]);
        assert!(!unrelated.answers(), "{unrelated:?}");
        let related = weigh(question, Some(&stats), &[close(text, RELATED + 0.02)]);
        assert!(related.coverage >= WORDS_WITH_MEANING);
        assert!(related.answers(), "{related:?}");
    }

    #[test]
    fn every_word_there_answers_whatever_the_vector_says() {
        // A one-word question's vector says little: low similarities even to the right passage.
        let found = weigh(
            "Guido",
            None,
            &[close("Guido van Rossum created Python.", 0.2)],
        );
        assert_eq!(found.similarity, Some(0.2));
        assert!(found.answers(), "{found:?}");
        let missing = weigh("Guido", None, &[close("Python was created at CWI.", 0.2)]);
        assert!(!missing.answers(), "{missing:?}");
    }

    #[test]
    fn the_closest_of_the_best_passages_counts() {
        let question = "vacation request";
        let passages = [
            close("nothing", 0.1),
            passage("nothing"),
            close("nothing", 0.5),
            close("nothing", 0.9),
        ];
        assert_eq!(weigh(question, None, &passages).similarity, Some(0.5));
        assert_eq!(
            weigh(question, None, &[passage("nothing")]).similarity,
            None
        );
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
