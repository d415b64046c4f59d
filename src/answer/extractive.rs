//! The answer engram gives without an LLM (none configured, or it failed): the sentences of
//! the best sources that share the most words with the question, quoted and attributed — or,
//! when the passages do not answer it, a plain "found nothing" naming the closest documents.
//! Pure and deterministic.

use super::Source;

/// The start of every answer that says the brain has nothing that answers the question.
pub const NOTHING_FOUND: &str = "I found nothing in this brain that answers that.";

/// Documents named as the closest when nothing answers, at most.
const CLOSEST_DOCUMENTS: usize = 3;

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

/// Says that nothing in the brain answers the question, naming the closest documents (the
/// files of `sources`, best first, each once) when there are any.
pub fn abstention(sources: &[Source]) -> String {
    let mut files: Vec<&str> = Vec::new();
    for source in sources {
        if !files.contains(&source.file.as_str()) {
            files.push(&source.file);
        }
    }
    if files.is_empty() {
        return format!("{NOTHING_FOUND} Try other words, or add the document that answers it.");
    }
    files.truncate(CLOSEST_DOCUMENTS);
    format!(
        "{NOTHING_FOUND} The closest documents: {}.",
        files.join(", ")
    )
}

/// Quotes the best sentences of the best sources, each with its `[n]`. A sentence is quoted
/// only if it shares at least half as many of the question's words as the best sentence does.
/// `None` when no sentence shares a word with the question.
pub fn quotes(question: &str, sources: &[Source]) -> Option<String> {
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
    (!quotes.is_empty()).then(|| quotes.join("\n\n"))
}

/// The answer without an LLM: `lead` (why there is no model's answer, e.g. "No LLM is
/// configured, so here is what the documents say:") and the quoted passages when `answers`
/// (retrieval's evidence) holds and some sentence shares the question's words; otherwise the
/// abstention. The second value says whether passages were quoted.
pub fn extractive_answer(
    question: &str,
    sources: &[Source],
    answers: bool,
    lead: &str,
) -> (String, bool) {
    match quotes(question, sources).filter(|_| answers) {
        Some(quoted) => (format!("{lead}\n\n{quoted}"), true),
        None => (abstention(sources), false),
    }
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
            cited: false,
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
        let (answer, quoted) =
            extractive_answer("How do I request vacation?", &sources, true, "Lead:");
        assert!(quoted);
        assert!(answer.starts_with("Lead:\n\n> "));
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
        let (nothing, quoted) = extractive_answer("parking rules?", &[], true, "Lead:");
        assert!(!quoted);
        assert_eq!(
            nothing,
            "I found nothing in this brain that answers that. Try other words, or add the \
             document that answers it."
        );
        let unrelated = [source(1, "Expenses are filed monthly.")];
        let (answer, quoted) = extractive_answer("parking rules?", &unrelated, true, "Lead:");
        assert!(!quoted);
        assert_eq!(
            answer,
            "I found nothing in this brain that answers that. The closest documents: doc1.md."
        );
    }

    #[test]
    fn weak_evidence_abstains_and_names_the_closest_documents_once() {
        let mut sources = vec![
            source(1, "Visitors park in the garage."),
            source(2, "Parking is free."),
            source(3, "Parking again."),
            source(4, "More parking."),
        ];
        sources[1].file = "doc1.md".into();
        let (answer, quoted) =
            extractive_answer("Where do visitors park bikes?", &sources, false, "Lead:");
        assert!(!quoted);
        assert_eq!(
            answer,
            "I found nothing in this brain that answers that. The closest documents: doc1.md, \
             doc3.md, doc4.md."
        );
        assert!(!answer.contains('>'), "nothing is quoted");
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
