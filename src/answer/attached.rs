//! Files attached to a question, as passages of its answer: the chunks of each file that best
//! match the question by the same BM25 keyword scoring as a brain's search
//! (`index::rank_passages`, with the file's own statistics) — or its opening chunks when none
//! does, so "what does this say?" still sees the file — a few per file, put before the brain's
//! passages and cited as `attachment: <name>`. Pure.

use super::{evidence, Retrieved, Source};
use crate::index::rank_passages;
use crate::text::{query_terms, ChunkDraft};

/// What an attached file's name is prefixed with in the prompt and the sources.
pub const LABEL: &str = "attachment: ";

/// Passages taken from one attached file, at most.
pub const PER_FILE: usize = 3;
/// Passages taken from all the attached files together, at most.
pub const IN_ALL: usize = 6;

/// A file attached to a question, read and chunked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attachment {
    /// The file's name as it was posted.
    pub name: String,
    /// A link to the message it was attached to.
    pub link: Option<String>,
    pub chunks: Vec<ChunkDraft>,
}

/// The passages of `attachments` for `question`: from each file its best chunks for the
/// question (its first chunks when none shares a word with it), at most `PER_FILE`; at most
/// `IN_ALL` in all, shared out a rank at a time so every file has its best chunk in before any
/// has its second. Grouped by file in the order attached, best first within a file; numbered
/// from 1 in that order.
pub fn passages(question: &str, attachments: &[Attachment]) -> Vec<Source> {
    let terms = query_terms(question);
    // Per file, its chosen chunks (positions) with their scores, best first.
    let ranked: Vec<Vec<(usize, f32)>> = attachments
        .iter()
        .map(|attachment| {
            let texts: Vec<(Option<&str>, &str)> = attachment
                .chunks
                .iter()
                .map(|chunk| (chunk.heading.as_deref(), chunk.text.as_str()))
                .collect();
            let best = rank_passages(&terms, &texts, PER_FILE);
            if best.is_empty() {
                (0..attachment.chunks.len().min(PER_FILE))
                    .map(|position| (position, 0.0))
                    .collect()
            } else {
                best
            }
        })
        .collect();
    let mut taken = vec![0usize; attachments.len()];
    let mut left = IN_ALL;
    for rank in 0..PER_FILE {
        for (file, chosen) in ranked.iter().enumerate() {
            if left > 0 && rank < chosen.len() {
                taken[file] += 1;
                left -= 1;
            }
        }
    }
    let mut sources = Vec::new();
    for ((attachment, chosen), count) in attachments.iter().zip(&ranked).zip(taken) {
        for &(position, score) in chosen.iter().take(count) {
            let chunk = &attachment.chunks[position];
            sources.push(Source {
                n: sources.len() + 1,
                file: format!("{LABEL}{}", attachment.name),
                page: chunk.page,
                heading: chunk.heading.clone(),
                score,
                link: attachment.link.clone(),
                cited: false,
                text: chunk.text.clone(),
                document_id: 0,
            });
        }
    }
    sources
}

/// `retrieved` with the attachments' passages `attached` before the brain's, all numbered again
/// from 1. Its evidence is the brain's passages', unless the attached ones answer the question:
/// weighed by the question's words alone (each weighing the same: they are in no brain, and
/// have no vectors).
pub fn merge(question: &str, retrieved: Retrieved, attached: Vec<Source>) -> Retrieved {
    if attached.is_empty() {
        return retrieved;
    }
    let mut best_first: Vec<&Source> = attached.iter().collect();
    best_first.sort_by(|a, b| b.score.total_cmp(&a.score));
    let passages: Vec<evidence::Passage<'_>> = best_first
        .iter()
        .map(|source| evidence::Passage {
            heading: source.heading.as_deref(),
            text: &source.text,
            similarity: None,
        })
        .collect();
    let attached_evidence = evidence::weigh(question, None, &passages);
    let evidence = if attached_evidence.answers() {
        attached_evidence
    } else {
        retrieved.evidence
    };
    let mut sources = attached;
    sources.extend(retrieved.sources);
    for (n, source) in sources.iter_mut().enumerate() {
        source.n = n + 1;
    }
    Retrieved { sources, evidence }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::answer::Evidence;

    fn chunk(ordinal: u32, heading: Option<&str>, text: &str) -> ChunkDraft {
        ChunkDraft {
            ordinal,
            page: None,
            heading: heading.map(str::to_string),
            text: text.to_string(),
            tokens: crate::text::count_tokens(text) as u32,
        }
    }

    fn attachment(name: &str, texts: &[&str]) -> Attachment {
        Attachment {
            name: name.to_string(),
            link: Some(format!("https://example.com/{name}")),
            chunks: texts
                .iter()
                .enumerate()
                .map(|(i, text)| chunk(i as u32, None, text))
                .collect(),
        }
    }

    #[test]
    fn the_chunks_that_match_the_question_are_taken_best_first() {
        let notes = attachment(
            "visitors.md",
            &[
                "Lunch is served at noon.",
                "Visitor badges are collected at the east desk.",
                "The canteen closes at three.",
                "Lost visitor badges are reported to security.",
            ],
        );
        let sources = passages("Where are visitor badges collected?", &[notes]);
        let texts: Vec<&str> = sources.iter().map(|s| s.text.as_str()).collect();
        assert_eq!(
            texts,
            [
                "Visitor badges are collected at the east desk.",
                "Lost visitor badges are reported to security."
            ]
        );
        assert_eq!(sources[0].file, "attachment: visitors.md");
        assert_eq!(sources[0].n, 1);
        assert_eq!(sources[1].n, 2);
        assert_eq!(
            sources[0].link.as_deref(),
            Some("https://example.com/visitors.md")
        );
    }

    #[test]
    fn a_file_matching_no_word_gives_its_opening_chunks() {
        let long: Vec<String> = (0..10).map(|i| format!("Section {i} text.")).collect();
        let texts: Vec<&str> = long.iter().map(String::as_str).collect();
        let sources = passages("summarise this please", &[attachment("report.md", &texts)]);
        let texts: Vec<&str> = sources.iter().map(|s| s.text.as_str()).collect();
        assert_eq!(
            texts,
            ["Section 0 text.", "Section 1 text.", "Section 2 text."]
        );
    }

    #[test]
    fn many_files_share_the_cap_a_rank_at_a_time() {
        let files: Vec<Attachment> = (0..4)
            .map(|f| {
                attachment(
                    &format!("f{f}.md"),
                    &["badges one", "badges two", "badges three", "badges four"],
                )
            })
            .collect();
        let sources = passages("badges", &files);
        assert_eq!(sources.len(), IN_ALL);
        let per_file: Vec<usize> = (0..4)
            .map(|f| {
                sources
                    .iter()
                    .filter(|s| s.file == format!("attachment: f{f}.md"))
                    .count()
            })
            .collect();
        assert_eq!(per_file, [2, 2, 1, 1]);
        let numbers: Vec<usize> = sources.iter().map(|s| s.n).collect();
        assert_eq!(numbers, (1..=IN_ALL).collect::<Vec<_>>());
    }

    #[test]
    fn attached_passages_come_first_and_can_answer_when_the_brain_cannot() {
        let brain = Retrieved {
            sources: vec![Source {
                n: 1,
                file: "parking.md".into(),
                page: None,
                heading: None,
                score: 0.5,
                link: None,
                cited: false,
                text: "Visitors park on level two.".into(),
                document_id: 7,
            }],
            evidence: Evidence {
                coverage: 0.1,
                similarity: None,
            },
        };
        assert!(!brain.answers());
        let question = "Where are visitor badges collected?";
        let attached = passages(
            question,
            &[attachment(
                "visitors.md",
                &["Visitor badges are collected at the east desk."],
            )],
        );
        let merged = merge(question, brain.clone(), attached);
        let order: Vec<(usize, &str)> = merged
            .sources
            .iter()
            .map(|s| (s.n, s.file.as_str()))
            .collect();
        assert_eq!(order, [(1, "attachment: visitors.md"), (2, "parking.md")]);
        assert!(merged.answers(), "{:?}", merged.evidence);

        // An attachment that does not answer leaves the brain's evidence as it was.
        let unrelated = passages(question, &[attachment("menu.md", &["Soup on Mondays."])]);
        let merged = merge(question, brain.clone(), unrelated);
        assert_eq!(merged.evidence, brain.evidence);
        assert_eq!(merged.sources.len(), 2);
        // Nothing attached: nothing changes.
        let same = merge(question, brain.clone(), Vec::new());
        assert_eq!(same.sources, brain.sources);
    }
}
