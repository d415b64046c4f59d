//! The answer engram gives without an LLM: the sentences of the best sources that share the
//! most words with the question, quoted and attributed. Pure and deterministic.

use super::Source;

/// Said when a brain has nothing relevant.
pub const NOTHING_FOUND: &str = "I found nothing about that in this brain's documents. Try \
    other words, or add the document that answers it.";

/// Sources whose sentences are quoted, at most.
const QUOTED_SOURCES: usize = 3;
/// Sentences quoted per source, at most.
const SENTENCES_PER_SOURCE: usize = 2;

/// Words too common to say anything about relevance.
const STOPWORDS: &[&str] = &[
    "a", "about", "an", "and", "are", "as", "at", "be", "by", "can", "could", "did", "do", "does",
    "for", "from", "get", "has", "have", "how", "i", "if", "in", "is", "it", "its", "me", "my",
    "of", "on", "or", "our", "should", "so", "that", "the", "their", "there", "this", "to", "was",
    "we", "what", "when", "where", "which", "who", "why", "will", "with", "would", "you", "your",
];

/// The question's words that matter: lowercase, no stopwords, no one-letter words.
pub fn content_terms(question: &str) -> Vec<String> {
    let mut terms: Vec<String> = question
        .split(|c: char| !c.is_alphanumeric())
        .map(str::to_lowercase)
        .filter(|word| word.chars().count() > 1 && !STOPWORDS.contains(&word.as_str()))
        .collect();
    terms.dedup();
    terms
}

/// Splits text into sentences at `.`, `!`, `?` followed by whitespace. Line breaks (which OCR
/// and PDFs put inside sentences) are just spaces; Markdown heading lines are left out.
fn sentences(text: &str) -> Vec<String> {
    let flat = text
        .lines()
        .filter(|line| !line.trim_start().starts_with('#'))
        .flat_map(str::split_whitespace)
        .collect::<Vec<_>>()
        .join(" ");
    let mut out = Vec::new();
    let mut start = 0;
    let chars: Vec<(usize, char)> = flat.char_indices().collect();
    for (i, &(at, c)) in chars.iter().enumerate() {
        let next_is_space = chars.get(i + 1).is_none_or(|&(_, next)| next == ' ');
        if matches!(c, '.' | '!' | '?') && next_is_space {
            let end = at + c.len_utf8();
            out.push(flat[start..end].trim().to_string());
            start = end;
        }
    }
    if start < flat.len() {
        out.push(flat[start..].trim().to_string());
    }
    out.retain(|sentence| !sentence.is_empty());
    out
}

fn score(sentence: &str, terms: &[String]) -> usize {
    let lowered = sentence.to_lowercase();
    terms
        .iter()
        .filter(|term| lowered.contains(term.as_str()))
        .count()
}

/// Quotes the best sentences of the best sources, each with its `[n]`. A sentence is quoted
/// only if it shares at least half as many of the question's words as the best sentence does.
pub fn extractive_answer(question: &str, sources: &[Source]) -> String {
    let terms = content_terms(question);
    let scored: Vec<Vec<(usize, usize, String)>> = sources
        .iter()
        .take(QUOTED_SOURCES)
        .map(|source| {
            sentences(&source.text)
                .into_iter()
                .enumerate()
                .map(|(position, sentence)| (score(&sentence, &terms), position, sentence))
                .collect()
        })
        .collect();
    let best = scored
        .iter()
        .flatten()
        .map(|(score, _, _)| *score)
        .max()
        .unwrap_or(0);
    let floor = best.div_ceil(2).max(1);
    let mut quotes = Vec::new();
    for (source, sentences) in sources.iter().zip(scored) {
        let mut ranked: Vec<(usize, usize, String)> = sentences
            .into_iter()
            .filter(|(score, _, _)| *score >= floor)
            .collect();
        ranked.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
        ranked.truncate(SENTENCES_PER_SOURCE);
        ranked.sort_by_key(|(_, position, _)| *position);
        if !ranked.is_empty() {
            let text: Vec<String> = ranked.into_iter().map(|(_, _, s)| s).collect();
            quotes.push(format!("> {} [{}]", text.join(" "), source.n));
        }
    }
    if quotes.is_empty() {
        return NOTHING_FOUND.to_string();
    }
    format!(
        "No LLM is configured, so here is what the documents say:\n\n{}",
        quotes.join("\n\n")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn source(n: usize, text: &str) -> Source {
        Source {
            n,
            file: format!("doc{n}.md"),
            page: None,
            heading: None,
            score: 1.0,
            link: None,
            text: text.to_string(),
            document_id: n as i64,
        }
    }

    #[test]
    fn quotes_the_sentences_that_answer() {
        let sources = [
            source(
                1,
                "Vacation is requested in the HR portal two weeks ahead. Lunch is at noon. \
                 Your lead approves vacation within three days.",
            ),
            source(2, "Expenses are filed monthly."),
        ];
        let answer = extractive_answer("How do I request vacation?", &sources);
        assert!(answer.contains("> Vacation is requested in the HR portal two weeks ahead."));
        assert!(answer.contains("approves vacation within three days. [1]"));
        assert!(!answer.contains("Lunch"));
        assert!(
            !answer.contains("[2]"),
            "a source sharing no word is not quoted"
        );
    }

    #[test]
    fn says_so_when_nothing_is_relevant() {
        assert_eq!(extractive_answer("parking rules?", &[]), NOTHING_FOUND);
        let unrelated = [source(1, "Expenses are filed monthly.")];
        assert_eq!(
            extractive_answer("parking rules?", &unrelated),
            NOTHING_FOUND
        );
    }

    #[test]
    fn content_terms_drop_stopwords() {
        assert_eq!(
            content_terms("How do I request VACATION?"),
            ["request", "vacation"]
        );
        assert!(content_terms("what is it?").is_empty());
    }

    #[test]
    fn sentences_respect_multibyte_text() {
        let parts = sentences("Größe zählt. Ça va? Oui!\n\nNeue\nZeile");
        assert_eq!(parts, ["Größe zählt.", "Ça va?", "Oui!", "Neue Zeile"]);
    }
}
