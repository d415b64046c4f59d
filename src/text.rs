//! Text as engram counts and searches it: the token estimate, keyword and query terms
//! (lowercasing, folding, stopwords), and `ChunkDraft`, the chunk that ingest makes and the
//! index stores. Pure; a leaf that `ingest`, `index` and `answer` all import.

/// One chunk, ready to be embedded and indexed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChunkDraft {
    /// Position in the document, from 0.
    pub ordinal: u32,
    /// The page the chunk starts on.
    pub page: Option<u32>,
    /// The heading path at the chunk's start, such as `Terms > Definitions`.
    pub heading: Option<String>,
    pub text: String,
    /// `count_tokens(text)`.
    pub tokens: u32,
}

/// Approximates the number of BPE tokens (cl100k-style) in `text` without a vocabulary.
///
/// Each whitespace-separated word costs one token per started group of four ASCII characters,
/// one token per CJK-range character (U+2E80 and above) and one per started pair of other
/// non-ASCII characters (Cyrillic, Greek, accented Latin…), and at least one token. This
/// overestimates common English words slightly (a budget computed with it is safe) and tracks
/// long identifiers, numbers and non-Latin scripts far better than counting words.
pub fn count_tokens(text: &str) -> usize {
    text.split_whitespace().map(word_tokens).sum()
}

pub(crate) fn word_tokens(word: &str) -> usize {
    let mut counts = CharCounts::default();
    word.chars().for_each(|c| counts.add(c));
    counts.tokens()
}

/// A word's characters by the classes `count_tokens` prices.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct CharCounts {
    ascii: usize,
    wide: usize,
    other: usize,
}

impl CharCounts {
    pub(crate) fn add(&mut self, c: char) {
        if c.is_ascii() {
            self.ascii += 1;
        } else if c >= '\u{2E80}' {
            self.wide += 1;
        } else {
            self.other += 1;
        }
    }

    pub(crate) fn tokens(&self) -> usize {
        (self.ascii.div_ceil(4) + self.wide + self.other.div_ceil(2)).max(1)
    }
}

/// Common English words that carry no meaning in a keyword query.
pub(crate) const STOPWORDS: &[&str] = &[
    "a", "about", "an", "and", "are", "as", "at", "be", "but", "by", "can", "did", "do", "does",
    "for", "from", "had", "has", "have", "how", "i", "if", "in", "into", "is", "it", "its", "me",
    "my", "no", "not", "of", "on", "or", "our", "so", "than", "that", "the", "their", "them",
    "then", "there", "these", "they", "this", "to", "us", "was", "we", "were", "what", "when",
    "where", "which", "who", "why", "will", "with", "you", "your",
];

/// The lowercase word terms of `text` (runs of Unicode letters and digits), in order and with
/// repeats, without English stopwords. Keyword queries are built from these, so user text can
/// never carry query syntax; the same terms will feed sparse vectors.
pub fn keyword_terms(text: &str) -> Vec<String> {
    text.split(|c: char| !c.is_alphanumeric())
        .filter(|word| !word.is_empty())
        .map(str::to_lowercase)
        .filter(|word| !STOPWORDS.contains(&word.as_str()))
        .collect()
}

/// The distinct terms of a question (or any text), in order: runs of letters and digits,
/// lowercased, Latin diacritics removed, English stopwords left out.
pub fn query_terms(text: &str) -> Vec<String> {
    let mut terms: Vec<String> = Vec::new();
    for_each_term(text, |term| {
        if !is_stopword(term) && !terms.iter().any(|t| t == term) {
            terms.push(term.to_string());
        }
    });
    terms
}

/// Whether a (lowercase, folded) term is one of `keyword_terms`' stopwords.
pub(crate) fn is_stopword(term: &str) -> bool {
    keyword_terms(term).is_empty()
}

/// Calls `f` with every term of `text`, stopwords included: runs of letters and digits,
/// lowercased and folded.
pub(crate) fn for_each_term(text: &str, mut f: impl FnMut(&str)) {
    let mut term = String::new();
    for word in text.split(|c: char| !c.is_alphanumeric()) {
        if word.is_empty() {
            continue;
        }
        term.clear();
        if word.is_ascii() {
            term.push_str(word);
            term.make_ascii_lowercase();
        } else {
            term.extend(word.chars().flat_map(char::to_lowercase).map(fold));
        }
        f(&term);
    }
}

/// A lowercase letter without its diacritic, for the Latin letters whose Unicode decomposition
/// is a base letter and combining marks (Latin-1 Supplement and Latin Extended-A), and final
/// sigma as sigma; any other character unchanged.
fn fold(c: char) -> char {
    match c {
        'à' | 'á' | 'â' | 'ã' | 'ä' | 'å' | 'ā' | 'ă' | 'ą' => 'a',
        'ç' | 'ć' | 'ĉ' | 'ċ' | 'č' => 'c',
        'ď' => 'd',
        'è' | 'é' | 'ê' | 'ë' | 'ē' | 'ĕ' | 'ė' | 'ę' | 'ě' => 'e',
        'ĝ' | 'ğ' | 'ġ' | 'ģ' => 'g',
        'ĥ' => 'h',
        'ì' | 'í' | 'î' | 'ï' | 'ĩ' | 'ī' | 'ĭ' | 'į' => 'i',
        'ĵ' => 'j',
        'ķ' => 'k',
        'ĺ' | 'ļ' | 'ľ' => 'l',
        'ñ' | 'ń' | 'ņ' | 'ň' => 'n',
        'ò' | 'ó' | 'ô' | 'õ' | 'ö' | 'ō' | 'ŏ' | 'ő' => 'o',
        'ŕ' | 'ŗ' | 'ř' => 'r',
        'ś' | 'ŝ' | 'ş' | 'š' => 's',
        'ţ' | 'ť' => 't',
        'ù' | 'ú' | 'û' | 'ü' | 'ũ' | 'ū' | 'ŭ' | 'ů' | 'ű' | 'ų' => 'u',
        'ŵ' => 'w',
        'ý' | 'ÿ' | 'ŷ' => 'y',
        'ź' | 'ż' | 'ž' => 'z',
        'ς' => 'σ',
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_count_is_a_cheap_approximation() {
        assert_eq!(count_tokens(""), 0);
        assert_eq!(count_tokens("a b c"), 3);
        assert_eq!(count_tokens("internationalization"), 5);
        assert_eq!(count_tokens("日本語"), 3);
        assert_eq!(count_tokens("  über  "), 2);
    }

    #[test]
    fn keyword_terms_are_lowercase_words_without_stopwords() {
        assert_eq!(
            keyword_terms("What is the NEAR(\"Café\" AND x-ray)* 日本語?"),
            vec!["near", "café", "x", "ray", "日本語"]
        );
        assert!(keyword_terms("the of and ... \"*\"").is_empty());
    }

    #[test]
    fn terms_are_folded_lowercase_words_without_stopwords() {
        assert_eq!(
            query_terms(
                "What is the NEAR(\"Café\" AND x-ray)* 日本語? Naïve ÅNGSTRÖM café ΟΔΟΣ οδος"
            ),
            vec![
                "near",
                "cafe",
                "x",
                "ray",
                "日本語",
                "naive",
                "angstrom",
                "οδοσ"
            ]
        );
        assert!(query_terms("the of and ... \"*\"").is_empty());
        for text in [
            "plain ascii words, with Stopwords and 42 digits",
            "x-ray b7 (a) é",
        ] {
            let folded: Vec<String> = keyword_terms(text)
                .iter()
                .flat_map(|t| query_terms(t))
                .collect();
            let mut distinct = folded.clone();
            distinct.dedup();
            assert_eq!(query_terms(text), distinct, "{text}");
        }
    }
}
