//! Randomized input tests of chunking and keyword terms: generated Markdown documents (every
//! block kind, odd spacing, long words, scripts without spaces), mutated real documents, and
//! arbitrary text, for every budget and overlap.

use super::*;
use crate::randomized::{check, corpus_file, mutate_text, repo_file, Rng};
use crate::text::{keyword_terms, STOPWORDS};

const WORDS: &[&str] = &[
    "apple",
    "the",
    "visitors",
    "park",
    "on",
    "level",
    "2.",
    "Größe",
    "naïve",
    "日本語の文章です。",
    "Ещё",
    "слово",
    "42",
    "x-ray",
    "e.g.",
    "end.",
    "what?",
    "yes!",
    "🦀",
    "a",
    "internationalization",
    "|",
    "#",
    "-",
    "*",
    "```",
    "~~~",
    "1.",
    "2)",
    "\u{a0}",
    "\u{3000}",
    "ア",
    "한국어",
    "café's",
];

fn words(rng: &mut Rng, count: usize) -> String {
    let mut out = String::new();
    for i in 0..count {
        if i > 0 {
            out.push_str(rng.choose(&[" ", " ", " ", "  ", "\t", ". ", "! ", "? ", "。"]));
        }
        match rng.below(100) {
            0 => {
                let n = rng.length(3000);
                out.push_str(&rng.pick(&["w", "é", "日", "0"]).repeat(n));
            }
            1..=5 => {
                let n = rng.range(1, 8);
                out.push_str(&rng.string(n));
            }
            _ => out.push_str(rng.choose(WORDS)),
        }
    }
    out
}

/// A Markdown page as the extractor writes them (and some it never would).
fn document(rng: &mut Rng) -> String {
    let mut text = String::new();
    for _ in 0..rng.length(24) {
        match rng.below(9) {
            0 => {
                let level = rng.range(1, 7);
                text.push_str(&"#".repeat(level));
                text.push_str(rng.choose(&[" ", " ", "\t", ""]));
                let n = if rng.percent(10) {
                    rng.range(50, 400)
                } else {
                    rng.range(0, 6)
                };
                text.push_str(&words(rng, n));
                if rng.percent(20) {
                    text.push_str(" ##");
                }
            }
            1 => {
                for _ in 0..rng.range(1, 16) {
                    let marker = rng.pick(&["- ", "* ", "+ ", "1. ", "12) ", "  - "]);
                    text.push_str(marker);
                    let n = rng.range(0, 20);
                    text.push_str(&words(rng, n));
                    text.push('\n');
                    if rng.percent(15) {
                        let n = rng.range(1, 10);
                        text.push_str(&words(rng, n));
                        text.push('\n');
                    }
                }
            }
            2 => {
                let columns = rng.range(1, 6);
                for row in 0..rng.range(1, 30) {
                    text.push('|');
                    for _ in 0..columns {
                        let cell = if row == 1 && rng.percent(70) {
                            "---".to_string()
                        } else {
                            let n = rng.range(0, 4);
                            words(rng, n)
                        };
                        text.push_str(&format!(" {cell} |"));
                    }
                    text.push('\n');
                }
            }
            3 => {
                let fence = rng.pick(&["```", "~~~", "```rust"]);
                text.push_str(fence);
                text.push('\n');
                for _ in 0..rng.length(60) {
                    let n = rng.range(0, 12);
                    text.push_str(&words(rng, n));
                    text.push('\n');
                }
                if rng.percent(80) {
                    text.push_str(&fence[..3]);
                }
            }
            4 => {
                let n = rng.length(60);
                text.push_str(&rng.string(n));
            }
            _ => {
                let n = rng.length(200);
                text.push_str(&words(rng, n));
            }
        }
        text.push_str(rng.choose(&["\n\n", "\n", "\n \n", "\r\n\r\n", "\n\n\n\n"]));
    }
    text
}

fn pages(rng: &mut Rng, text: impl Fn(&mut Rng) -> String) -> Vec<PageText> {
    let numbered = rng.percent(50);
    let mut page = 0;
    (0..rng.range(1, 3))
        .map(|_| {
            page += rng.range(1, 3) as u32;
            PageText {
                page: numbered.then_some(page),
                text: text(rng),
            }
        })
        .collect()
}

fn options(rng: &mut Rng) -> ChunkOptions {
    let max_tokens = match rng.below(4) {
        0 => rng.range(0, 8),
        1 => rng.range(8, 80),
        2 => rng.range(80, 500),
        _ => ChunkOptions::default().max_tokens,
    };
    let overlap_tokens = match rng.below(3) {
        0 => 0,
        1 => rng.range(0, max_tokens.max(1) * 2),
        _ => ChunkOptions::default().overlap_tokens,
    };
    ChunkOptions {
        max_tokens,
        overlap_tokens,
    }
}

/// The words chunks must keep whole when they are short: whitespace-separated, without the
/// full-width sentence ends that split a paragraph's sentences (and words) without a space.
fn input_words(text: &str) -> impl Iterator<Item = &str> {
    text.split_whitespace()
        .filter(|word| !word.contains(['。', '！', '？']))
}

/// The start of a long text, for failure messages.
fn preview(text: &str) -> String {
    let mut short: String = text.chars().take(1500).collect();
    if short.len() < text.len() {
        short.push('…');
    }
    short
}

fn non_space(text: &str) -> impl Iterator<Item = char> + '_ {
    text.chars().filter(|c| !c.is_whitespace())
}

fn check_chunks(pages: &[PageText], options: &ChunkOptions) {
    let chunks = chunk_pages(pages, options);
    let context = || {
        let pages: Vec<(Option<u32>, String)> =
            pages.iter().map(|p| (p.page, preview(&p.text))).collect();
        format!("options {options:?}, pages {pages:?}")
    };
    let max = options.max_tokens.max(1);
    for (i, chunk) in chunks.iter().enumerate() {
        assert_eq!(chunk.ordinal as usize, i, "{}", context());
        assert!(!chunk.text.trim().is_empty(), "{}", context());
        assert_eq!(chunk.tokens as usize, count_tokens(&chunk.text));
        assert!(
            chunk.tokens as usize <= max,
            "chunk {i} has {} tokens, more than {max}: {:?}\n{}",
            chunk.tokens,
            preview(&chunk.text),
            context()
        );
    }

    // Nothing lost or reordered: the input's text (less whitespace) is, in order, within the
    // chunks' (which only repeat some of it: overlap, table headers).
    let mut output = chunks.iter().flat_map(|c| non_space(&c.text));
    for (n, c) in pages.iter().flat_map(|p| non_space(&p.text)).enumerate() {
        assert!(
            output.any(|o| o == c),
            "input character {n} ({c:?}) is missing or out of order\n{}",
            context()
        );
    }
    // Words short enough never to be cut are whole in some chunk.
    let overlap = options.overlap_tokens.min(max / 2);
    let whole = (max - overlap) / 2;
    let present: std::collections::HashSet<&str> = chunks
        .iter()
        .flat_map(|c| c.text.split_whitespace())
        .collect();
    for word in pages.iter().flat_map(|p| input_words(&p.text)) {
        if word_tokens(word) <= whole {
            assert!(
                present.contains(word),
                "{word:?} is not whole in any chunk\n{}",
                context()
            );
        }
    }

    // Pages and headings only move forward.
    let input_pages: Vec<Option<u32>> = pages.iter().map(|p| p.page).collect();
    for pair in chunks.windows(2) {
        assert!(pair[0].page <= pair[1].page, "pages go back\n{}", context());
    }
    for chunk in &chunks {
        assert!(input_pages.contains(&chunk.page), "{}", context());
    }
    let mut paths: Vec<Option<String>> = vec![None];
    let mut stack: Vec<(usize, String)> = Vec::new();
    for page in pages {
        for block in parse_blocks(&page.text) {
            if let Block::Heading { level, title, .. } = block {
                while stack.last().is_some_and(|(l, _)| *l >= level) {
                    stack.pop();
                }
                stack.push((level, title));
                let titles: Vec<&str> = stack.iter().map(|(_, t)| t.as_str()).collect();
                paths.push(Some(titles.join(" > ")));
            }
        }
    }
    let mut at = 0;
    for chunk in &chunks {
        match paths[at..].iter().position(|p| *p == chunk.heading) {
            Some(offset) => at += offset,
            None => panic!(
                "chunk heading {:?} is not a heading path at or after {:?}\n{}",
                chunk.heading,
                paths[at],
                context()
            ),
        }
    }

    // Output grows at most by the overlap and repeated table headers: generous bounds on
    // the count and size, so a blow-up fails and a legitimate layout never does.
    let input_bytes: usize = pages.iter().map(|p| p.text.len()).sum();
    let output_bytes: usize = chunks.iter().map(|c| c.text.len()).sum();
    assert!(
        output_bytes <= 8 * input_bytes + 1024,
        "{output_bytes} bytes of chunks from {input_bytes}\n{}",
        context()
    );
    assert!(chunks.len() <= input_bytes + 1);
}

#[test]
fn generated_documents_chunk_within_budget_losing_nothing() {
    check("chunk generated documents", 300, |rng| {
        let pages = pages(rng, document);
        check_chunks(&pages, &options(rng));
    });
}

#[test]
fn arbitrary_text_chunks_within_budget_losing_nothing() {
    check("chunk arbitrary text", 700, |rng| {
        let pages = pages(rng, |rng| {
            let len = rng.length(5000);
            rng.string(len)
        });
        check_chunks(&pages, &options(rng));
    });
}

#[test]
fn mutated_real_documents_chunk_within_budget_losing_nothing() {
    let seeds: Vec<String> = [
        repo_file("demo/handbook.md"),
        repo_file("demo/release-notes.txt"),
        corpus_file("10_faq.md"),
        corpus_file("11_notes_mpl2.txt"),
    ]
    .iter()
    .map(|bytes| String::from_utf8_lossy(bytes).into_owned())
    .collect();
    check("chunk mutated documents", 150, move |rng| {
        let tokens = ["\n# ", "\n```\n", "\n| a | b |\n", "\n- ", "。", "\n\n"];
        let pages = pages(rng, |rng| {
            let seed = rng.pick(&seeds).clone();
            let donor = rng.pick(&seeds).clone();
            mutate_text(rng, &seed, &donor, &tokens)
        });
        check_chunks(&pages, &options(rng));
    });
}

#[test]
fn deep_and_degenerate_structure_chunks_within_budget() {
    check("chunk degenerate structure", 24, |rng| {
        let unit = rng.pick(&[
            "# a\n",
            "###### b c\n",
            "- x\n",
            "| a |\n",
            "```\n",
            "。",
            "w",
            " ",
            "\n",
        ]);
        let text = unit.repeat(rng.range(1, 20_000));
        check_chunks(&[PageText { page: None, text }], &options(rng));
    });
}

#[test]
fn keyword_terms_are_plain_lowercase_words() {
    check("keyword_terms", 2000, |rng| {
        let len = rng.length(500);
        let text = if rng.percent(50) {
            rng.string(len)
        } else {
            words(rng, len / 4)
        };
        let terms = keyword_terms(&text);
        let mut bytes = 0;
        for term in &terms {
            assert!(!term.is_empty());
            // No query syntax: no spaces, quotes, operators or brackets. (Lowercasing may add a
            // combining mark: `İ` is `i` and U+0307.)
            assert!(
                term.chars()
                    .all(|c| !c.is_whitespace() && !c.is_ascii_punctuation()),
                "{term:?}"
            );
            assert_eq!(*term, term.to_lowercase());
            assert!(!STOPWORDS.contains(&term.as_str()));
            bytes += term.len();
        }
        // Lowercasing may lengthen a word (`İ` is two characters lowercase), never threefold.
        assert!(bytes <= 3 * text.len());
    });
}

/// Found by the randomized tests: consecutive headings all joined one chunk, whatever its
/// budget (a table of contents made one chunk of thousands of tokens).
#[test]
fn a_run_of_headings_is_split_within_budget() {
    let text = "###### b c\n".repeat(200);
    let pages = [PageText { page: None, text }];
    let options = ChunkOptions {
        max_tokens: 51,
        overlap_tokens: 0,
    };
    let chunks = chunk_pages(&pages, &options);
    assert!(chunks.len() >= 200 * 4 / 51, "{}", chunks.len());
    check_chunks(&pages, &options);
}

/// Found by the randomized tests: a heading longer than the budget was one chunk.
#[test]
fn a_heading_longer_than_a_chunk_is_split() {
    let text = format!("# {}\n\nbody.", words_of(400));
    let pages = [PageText {
        page: Some(1),
        text,
    }];
    let options = ChunkOptions {
        max_tokens: 50,
        overlap_tokens: 10,
    };
    let chunks = chunk_pages(&pages, &options);
    assert!(
        chunks[0].text.starts_with("# w0 w1"),
        "{:?}",
        chunks[0].text
    );
    check_chunks(&pages, &options);
}

/// Found by the randomized tests: a table whose header is too large to repeat kept each row
/// whole, however long.
#[test]
fn table_rows_are_cut_when_the_header_cannot_be_repeated() {
    let text = "| What | Limit | Approval |\n|---|---|---|\n| Travel | 1,500 per trip | lead |";
    let pages = [PageText {
        page: None,
        text: text.to_string(),
    }];
    let options = ChunkOptions {
        max_tokens: 6,
        overlap_tokens: 0,
    };
    check_chunks(&pages, &options);
}

/// Found by the randomized tests: a word longer than a chunk was cut by recounting the piece
/// at every character, so a 1 MiB word took 8.8 s in a debug build (0.67 s now); the pieces
/// are the same.
#[test]
fn a_long_word_is_cut_into_pieces_within_budget() {
    for (unit, max) in [("w", 350), ("é", 7), ("日", 1), ("aé日", 2)] {
        let word = unit.repeat(200_000);
        let pieces = split_text(&word, max);
        assert!(pieces.iter().all(|p| word_tokens(p) <= max));
        assert_eq!(pieces.concat(), word);
        // Each piece is as long as the budget allows: one more character would not fit.
        for pair in pieces.windows(2) {
            let next = pair[1].chars().next().unwrap_or_default();
            assert!(word_tokens(&format!("{}{next}", pair[0])) > max);
        }
    }
}

fn words_of(n: usize) -> String {
    (0..n)
        .map(|i| format!("w{i}"))
        .collect::<Vec<_>>()
        .join(" ")
}
