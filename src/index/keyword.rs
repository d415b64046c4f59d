//! An in-memory inverted index of one brain's chunks, scored by BM25 in Rust: exact keyword
//! search over every query term without FTS5's `bm25()` (which walks every phrase's posting list
//! across all brains on each query). Pure: built from chunk text, no I/O; `cache` keeps one per
//! searched brain and `embedded` loads it from SQLite, the source of truth.
//!
//! Terms are `text::query_terms`' terms: the same function splits chunks and questions.

use std::collections::{BinaryHeap, HashMap, HashSet};

use crate::text::{for_each_term, is_stopword};

/// BM25 term-frequency saturation and length normalisation, FTS5's values.
const K1: f32 = 1.2;
const B: f32 = 0.75;

/// One occurrence of a term in the heading path counts this many times (the text's count once),
/// as `bm25(chunks_fts, 0.0, 2.0, 1.0)` weighs the FTS5 columns.
const HEADING_WEIGHT: u32 = 2;

/// A posting is one `u32`: the chunk's slot in the high bits and its weighted term frequency
/// (capped at 255) in the low `FREQUENCY_BITS`.
const FREQUENCY_BITS: u32 = 8;
const FREQUENCY_MASK: u32 = (1 << FREQUENCY_BITS) - 1;

/// Slots a brain can hold in a posting's high bits (16.7 M chunks).
const MAX_SLOTS: usize = 1 << (32 - FREQUENCY_BITS);

/// The length of a removed chunk's slot; its postings are skipped until the brain is reloaded.
const REMOVED: u32 = u32::MAX;

/// The dictionary's value for a stopword: never indexed, never searched.
const STOPWORD: u32 = u32::MAX;

/// How many postings one query may walk: terms are taken rarest first while their summed
/// document frequencies stay within this (the rarest is always taken). Bounds the cost of a long
/// question to a few milliseconds; the terms left out are the most common ones, whose BM25
/// weight is smallest.
const WALK_BUDGET: usize = 1_000_000;

/// One brain's chunks as an inverted index. Slots are positions in load (then insertion) order;
/// a removed chunk keeps its slot, marked `REMOVED`, until the brain is reloaded.
#[derive(Debug, Default)]
pub(crate) struct BrainTerms {
    /// Chunk id of each slot.
    ids: Vec<i64>,
    /// Token count (heading and text, stopwords excluded) of each slot, or `REMOVED`.
    lengths: Vec<u32>,
    /// Term → index into `postings`, or `STOPWORD`.
    dictionary: HashMap<Box<str>, u32>,
    /// Per term, its postings in slot order.
    postings: Vec<Vec<u32>>,
    /// Chunks not removed, and their summed lengths (for the average length).
    live: usize,
    live_length: u64,
}

impl BrainTerms {
    /// Adds a chunk (replacing nothing: call `remove` first for an id already present). Returns
    /// false, adding nothing, when the brain already has `MAX_SLOTS` slots.
    pub(crate) fn add(&mut self, id: i64, heading: Option<&str>, text: &str) -> bool {
        if self.ids.len() >= MAX_SLOTS {
            return false;
        }
        let slot = u32::try_from(self.ids.len()).unwrap_or(u32::MAX);
        let mut length = 0u32;
        for (part, weight) in [(heading.unwrap_or(""), HEADING_WEIGHT), (text, 1)] {
            for_each_term(part, |term| {
                let term = self.term_id(term);
                if term == STOPWORD {
                    return;
                }
                length += 1;
                let list = &mut self.postings[term as usize];
                // Slots only grow, so this chunk's posting, if any, is the list's last.
                match list.last_mut() {
                    Some(last) if *last >> FREQUENCY_BITS == slot => {
                        let frequency = (*last & FREQUENCY_MASK) + weight;
                        *last = (slot << FREQUENCY_BITS) | frequency.min(FREQUENCY_MASK);
                    }
                    _ => {
                        if list.len() == list.capacity() {
                            // Grow by an eighth, not double: the lists are most of the memory.
                            list.reserve_exact(list.len() / 8 + 4);
                        }
                        list.push((slot << FREQUENCY_BITS) | weight);
                    }
                }
            });
        }
        self.ids.push(id);
        self.lengths.push(length);
        self.live += 1;
        self.live_length += u64::from(length);
        true
    }

    /// Marks the chunks with these ids removed (ids not present are ignored).
    pub(crate) fn remove(&mut self, ids: &HashSet<i64>) {
        if ids.is_empty() {
            return;
        }
        for (slot, id) in self.ids.iter().enumerate() {
            let length = &mut self.lengths[slot];
            if *length != REMOVED && ids.contains(id) {
                self.live -= 1;
                self.live_length -= u64::from(*length);
                *length = REMOVED;
            }
        }
    }

    /// Whether so many chunks were removed that the brain should be reloaded to drop their
    /// postings (more than a quarter of the slots).
    pub(crate) fn wants_reload(&self) -> bool {
        (self.ids.len() - self.live) * 4 > self.ids.len()
    }

    /// Approximate heap bytes held: postings, per-slot arrays and the dictionary.
    pub(crate) fn bytes(&self) -> usize {
        let postings: usize = self
            .postings
            .iter()
            .map(|list| list.capacity() * 4 + 24)
            .sum();
        let dictionary: usize = self.dictionary.keys().map(|term| term.len() + 40).sum();
        postings + dictionary + self.ids.capacity() * 8 + self.lengths.capacity() * 4
    }

    /// Releases the spare capacity left by loading.
    pub(crate) fn shrink(&mut self) {
        self.postings.iter_mut().for_each(Vec::shrink_to_fit);
        self.ids.shrink_to_fit();
        self.lengths.shrink_to_fit();
    }

    /// The best `limit` chunks for `terms` (from `query_terms`) by BM25, best first, ties by
    /// the smaller chunk id; scores are positive.
    ///
    /// BM25 as FTS5 computes it, with this brain's statistics: for each term t, IDF(t) =
    /// ln((N − n(t) + 0.5) / (n(t) + 0.5)), at least 1e-6, where N is the brain's chunk count
    /// and n(t) how many of them hold t; a chunk of length D with weighted frequency f of t gets
    /// IDF(t) · f · (k1 + 1) / (f + k1 · (1 − b + b · D / avgdl)), summed over the terms.
    pub(crate) fn search(
        &self,
        terms: &[String],
        limit: usize,
        skip: &HashSet<i64>,
    ) -> Vec<(i64, f32)> {
        self.search_within(terms, limit, WALK_BUDGET, skip)
    }

    /// `search`, walking at most `budget` postings (see `WALK_BUDGET`); chunks in `skip` are
    /// never ranked.
    fn search_within(
        &self,
        terms: &[String],
        limit: usize,
        budget: usize,
        skip: &HashSet<i64>,
    ) -> Vec<(i64, f32)> {
        if limit == 0 || self.live_length == 0 {
            return Vec::new();
        }
        let mut lists: Vec<(&[u32], usize)> = terms
            .iter()
            .filter_map(|term| self.dictionary.get(term.as_str()))
            .filter(|&&id| id != STOPWORD)
            .map(|&id| {
                let list = self.postings[id as usize].as_slice();
                (list, self.document_frequency(list))
            })
            .filter(|(_, frequency)| *frequency > 0)
            .collect();
        lists.sort_by_key(|(_, frequency)| *frequency);
        let mut walked = 0usize;
        lists.retain(|(list, _)| {
            walked += list.len();
            walked == list.len() || walked <= budget
        });
        if lists.is_empty() {
            return Vec::new();
        }

        let chunks = self.live as f32;
        let length_factor = B / (self.live_length as f32 / chunks);
        let mut scores = vec![0f32; self.ids.len()];
        for (list, frequency) in lists {
            let n = frequency as f32;
            let idf = ((chunks - n + 0.5) / (n + 0.5)).ln();
            let idf = if idf > 0.0 { idf } else { 1e-6 };
            for &posting in list {
                let slot = (posting >> FREQUENCY_BITS) as usize;
                let length = self.lengths[slot];
                if length == REMOVED {
                    continue;
                }
                let f = (posting & FREQUENCY_MASK) as f32;
                let norm = K1 * (1.0 - B + length_factor * length as f32);
                scores[slot] += idf * f * (K1 + 1.0) / (f + norm);
            }
        }

        let mut best: BinaryHeap<std::cmp::Reverse<Ranked>> = BinaryHeap::with_capacity(limit + 1);
        for (slot, &score) in scores.iter().enumerate() {
            if score <= 0.0 || (!skip.is_empty() && skip.contains(&self.ids[slot])) {
                continue;
            }
            let ranked = Ranked {
                score,
                id: self.ids[slot],
            };
            if best.len() < limit {
                best.push(std::cmp::Reverse(ranked));
            } else if best.peek().is_some_and(|worst| ranked > worst.0) {
                best.pop();
                best.push(std::cmp::Reverse(ranked));
            }
        }
        best.into_sorted_vec()
            .into_iter()
            .map(|std::cmp::Reverse(ranked)| (ranked.id, ranked.score))
            .collect()
    }

    /// Live chunks, and for each term how many live chunks hold it.
    pub(crate) fn statistics(&self, terms: &[String]) -> (u64, Vec<u64>) {
        let holding = terms
            .iter()
            .map(|term| match self.dictionary.get(term.as_str()) {
                Some(&id) if id != STOPWORD => {
                    self.document_frequency(&self.postings[id as usize]) as u64
                }
                _ => 0,
            })
            .collect();
        (self.live as u64, holding)
    }

    /// Live chunks in a posting list.
    fn document_frequency(&self, list: &[u32]) -> usize {
        if self.live == self.ids.len() {
            return list.len();
        }
        list.iter()
            .filter(|&&posting| self.lengths[(posting >> FREQUENCY_BITS) as usize] != REMOVED)
            .count()
    }

    /// The id of `term`, added to the dictionary the first time it is seen.
    fn term_id(&mut self, term: &str) -> u32 {
        if let Some(&id) = self.dictionary.get(term) {
            return id;
        }
        let id = if is_stopword(term) {
            STOPWORD
        } else {
            self.postings.push(Vec::new());
            u32::try_from(self.postings.len() - 1).unwrap_or(STOPWORD)
        };
        self.dictionary.insert(term.into(), id);
        id
    }
}

/// A chunk's score and id, ordered by score, then by the smaller id.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Ranked {
    score: f32,
    id: i64,
}

impl Eq for Ranked {}

impl PartialOrd for Ranked {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Ranked {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.score
            .total_cmp(&other.score)
            .then(other.id.cmp(&self.id))
    }
}

/// A chunk's weighted term frequencies, exactly as `BrainTerms::add` counts them (heading
/// occurrences count `HEADING_WEIGHT` times, stopwords left out), in first-seen order, and its
/// length (the summed token count). The Qdrant index builds its sparse vectors from this so
/// both implementations split text the same way.
pub(crate) fn chunk_term_frequencies(
    heading: Option<&str>,
    text: &str,
) -> (Vec<(String, u32)>, u32) {
    let mut frequencies: Vec<(String, u32)> = Vec::new();
    let mut positions: HashMap<String, usize> = HashMap::new();
    let mut length = 0u32;
    for (part, weight) in [(heading.unwrap_or(""), HEADING_WEIGHT), (text, 1)] {
        for_each_term(part, |term| {
            if is_stopword(term) {
                return;
            }
            length += 1;
            match positions.get(term) {
                Some(&at) => frequencies[at].1 += weight,
                None => {
                    positions.insert(term.to_string(), frequencies.len());
                    frequencies.push((term.to_string(), weight));
                }
            }
        });
    }
    (frequencies, length)
}

/// Ranks a few passages that are in no brain (the chunks of a file attached to a question)
/// against `terms` (from `query_terms`) by the same BM25 as a brain's search, with the passages'
/// own statistics: `(position in passages, score)`, best first, ties by position; passages
/// sharing no term are left out.
pub fn rank_passages(
    terms: &[String],
    passages: &[(Option<&str>, &str)],
    limit: usize,
) -> Vec<(usize, f32)> {
    let mut index = BrainTerms::default();
    for (position, (heading, text)) in passages.iter().enumerate() {
        let id = i64::try_from(position).unwrap_or(i64::MAX);
        if !index.add(id, *heading, text) {
            break;
        }
    }
    index
        .search(terms, limit, &HashSet::new())
        .into_iter()
        .map(|(id, score)| (usize::try_from(id).unwrap_or(usize::MAX), score))
        .collect()
}

#[cfg(test)]
#[path = "keyword_randomized.rs"]
mod randomized_tests;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::text::query_terms;

    fn brain(chunks: &[(i64, Option<&str>, &str)]) -> BrainTerms {
        let mut terms = BrainTerms::default();
        for (id, heading, text) in chunks {
            assert!(terms.add(*id, *heading, text));
        }
        terms
    }

    fn bm25(idf: f32, f: f32, length: f32, average: f32) -> f32 {
        idf * f * (K1 + 1.0) / (f + K1 * (1.0 - B + B * length / average))
    }

    #[test]
    fn chunk_frequencies_count_like_the_inverted_index() {
        let (frequencies, length) =
            chunk_term_frequencies(Some("Leave > Sick"), "Report SICK leave, the café's rules.");
        assert_eq!(
            frequencies,
            vec![
                ("leave".to_string(), 3),
                ("sick".to_string(), 3),
                ("report".to_string(), 1),
                ("cafe".to_string(), 1),
                ("s".to_string(), 1),
                ("rules".to_string(), 1),
            ]
        );
        // The same length `BrainTerms::add` records for the chunk.
        let terms = brain(&[(
            1,
            Some("Leave > Sick"),
            "Report SICK leave, the café's rules.",
        )]);
        assert_eq!(terms.lengths, vec![length]);
        // Every question term is spelled as the chunk's.
        for term in query_terms("sick CAFÉ rules?") {
            assert!(frequencies.iter().any(|(t, _)| *t == term), "{term}");
        }
    }

    #[test]
    fn skipped_chunks_are_never_ranked_and_others_fill_the_limit() {
        let terms = brain(&[
            (10, None, "apple apple apple"),
            (11, None, "apple"),
            (12, None, "apple banana"),
            (13, None, "cherry"),
        ]);
        let all = terms.search(&query_terms("apple"), 2, &HashSet::new());
        assert_eq!(all[0].0, 10);
        let hits = terms.search(&query_terms("apple"), 2, &HashSet::from([10]));
        let ids: Vec<i64> = hits.iter().map(|h| h.0).collect();
        assert_eq!(ids.len(), 2, "{ids:?}");
        assert!(!ids.contains(&10), "{ids:?}");
    }

    /// Three chunks, scored by hand with the formula in `search`'s documentation.
    #[test]
    fn bm25_agrees_with_a_hand_computed_example() {
        let terms = brain(&[
            (10, None, "apple banana apple"),      // D = 3
            (11, Some("Apple"), "cherry"),         // D = 2, apple in the heading: f = 2
            (12, None, "banana cherry date date"), // D = 4
        ]);
        let average = 9.0 / 3.0;
        // apple in 2 of 3 chunks, banana in 2 of 3: IDF = ln(1.5 / 2.5) < 0, so 1e-6.
        let common = 1e-6;
        // date in 1 of 3: IDF = ln(2.5 / 1.5).
        let rare = (2.5f32 / 1.5).ln();

        let hits = terms.search(&query_terms("apple"), 10, &HashSet::new());
        let expected = [
            (11, bm25(common, 2.0, 2.0, average)),
            (10, bm25(common, 2.0, 3.0, average)),
        ];
        assert_eq!(hits.len(), 2);
        for ((id, score), (want_id, want)) in hits.iter().zip(expected) {
            assert_eq!(*id, want_id);
            assert!((score - want).abs() <= want * 1e-5, "{score} vs {want}");
        }

        let hits = terms.search(&query_terms("date banana"), 10, &HashSet::new());
        let ids: Vec<i64> = hits.iter().map(|h| h.0).collect();
        assert_eq!(ids, vec![12, 10]);
        let want = bm25(rare, 2.0, 4.0, average) + bm25(common, 1.0, 4.0, average);
        assert!(
            (hits[0].1 - want).abs() <= want * 1e-5,
            "{} vs {want}",
            hits[0].1
        );
        assert!(terms
            .search(&query_terms("nothing here"), 10, &HashSet::new())
            .is_empty());
        assert!(terms
            .search(&query_terms("apple"), 0, &HashSet::new())
            .is_empty());
    }

    #[test]
    fn ties_go_to_the_smaller_id_and_limit_cuts() {
        let terms = brain(&[(7, None, "kiwi"), (3, None, "kiwi"), (5, None, "kiwi")]);
        let ids: Vec<i64> = terms
            .search(&query_terms("kiwi"), 2, &HashSet::new())
            .iter()
            .map(|h| h.0)
            .collect();
        assert_eq!(ids, vec![3, 5]);
    }

    #[test]
    fn removed_chunks_leave_the_statistics_and_the_results() {
        let mut terms = brain(&[
            (1, None, "kiwi lemon"),
            (2, None, "kiwi"),
            (3, None, "mango"),
            (4, None, "mango papaya"),
        ]);
        let before = terms.search(&query_terms("kiwi"), 10, &HashSet::new());
        terms.remove(&HashSet::from([2, 99]));
        let hits = terms.search(&query_terms("kiwi"), 10, &HashSet::new());
        assert_eq!(hits.iter().map(|h| h.0).collect::<Vec<_>>(), vec![1]);
        // The same as a brain that never had chunk 2.
        let fresh = brain(&[
            (1, None, "kiwi lemon"),
            (3, None, "mango"),
            (4, None, "mango papaya"),
        ]);
        assert_eq!(
            hits,
            fresh.search(&query_terms("kiwi"), 10, &HashSet::new())
        );
        assert_ne!(hits[0].1, before[0].1);
        assert!(!terms.wants_reload());
        terms.remove(&HashSet::from([3]));
        assert!(terms.wants_reload());
        terms.remove(&HashSet::from([1, 4]));
        assert!(terms
            .search(&query_terms("kiwi mango"), 10, &HashSet::new())
            .is_empty());
    }

    #[test]
    fn a_long_question_walks_the_rarest_terms() {
        let terms = brain(&[
            (1, None, "rare common"),
            (2, None, "common"),
            (3, None, "common"),
        ]);
        // Both lists together (4 postings) pass a budget of 3: only the rare term is scored.
        let hits = terms.search_within(&query_terms("common rare"), 3, 3, &HashSet::new());
        assert_eq!(hits.iter().map(|h| h.0).collect::<Vec<_>>(), vec![1]);
        // The rarest term is scored even past the budget.
        let hits = terms.search_within(&query_terms("common"), 3, 1, &HashSet::new());
        assert_eq!(hits.len(), 3);
        assert_eq!(
            terms
                .search(&query_terms("common rare"), 3, &HashSet::new())
                .len(),
            3
        );
    }

    #[test]
    fn frequencies_saturate_at_the_posting_width() {
        let text = "echo ".repeat(1_000);
        let terms = brain(&[(1, None, &text), (2, None, "other")]);
        let hits = terms.search(&query_terms("echo"), 1, &HashSet::new());
        assert_eq!(hits[0].0, 1);
        assert!(hits[0].1.is_finite() && hits[0].1 > 0.0);
    }

    #[test]
    fn passages_outside_a_brain_rank_by_the_question() {
        let passages = [
            (None, "Lunch is served at noon in the canteen."),
            (
                Some("Badges"),
                "Visitor badges are collected at the east desk.",
            ),
            (
                None,
                "Badges for visitors expire at midnight; visitor badges are numbered.",
            ),
        ];
        let ranked = rank_passages(
            &query_terms("where are visitor badges collected?"),
            &passages,
            5,
        );
        let order: Vec<usize> = ranked.iter().map(|(position, _)| *position).collect();
        assert_eq!(order, [1, 2], "best first, the unrelated passage left out");
        assert!(ranked.iter().all(|(_, score)| *score > 0.0));
        assert!(rank_passages(&query_terms("parking"), &passages, 5).is_empty());
        assert_eq!(rank_passages(&query_terms("badges"), &passages, 1).len(), 1);
    }
}
