//! Structure-aware chunking: extracted page text (light Markdown) → ordered chunks that keep
//! headings, paragraphs, lists, tables and code whole where they fit. Pure and deterministic.

pub use crate::text::ChunkDraft;
use crate::text::{count_tokens, word_tokens, CharCounts};

/// The text of one page (or of the whole file, for formats without pages).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PageText {
    pub page: Option<u32>,
    pub text: String,
}

/// How large chunks may grow and how much consecutive chunks of one section share.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChunkOptions {
    pub max_tokens: usize,
    pub overlap_tokens: usize,
}

impl Default for ChunkOptions {
    /// 350 tokens (as counted by `count_tokens`, which overestimates English a little) stays well
    /// inside the 512-token window of the small embedding models engram targets, even with the
    /// heading path prepended, and is about the size of a passage an answer cites. 50 tokens of
    /// overlap (about two sentences) keeps a statement that straddles a boundary findable from
    /// either side without storing much text twice.
    fn default() -> Self {
        Self {
            max_tokens: 350,
            overlap_tokens: 50,
        }
    }
}

/// Splits pages into chunks; see the module documentation for the rules.
///
/// Blocks (a heading, a paragraph, a list, a table, a code fence) are kept whole when they fit
/// and packed together up to `max_tokens`. A larger block is split at sentences (then words);
/// tables between rows, repeating the header, lists between items. A heading closes the chunk
/// unless the chunk holds only headings so far or the new heading is deeper than the chunk's
/// section and the chunk has room. Consecutive chunks of one section share about
/// `overlap_tokens` of trailing sentences or items.
pub fn chunk_pages(pages: &[PageText], options: &ChunkOptions) -> Vec<ChunkDraft> {
    let max = options.max_tokens.max(1);
    let mut packer = Packer {
        max,
        overlap: options.overlap_tokens.min(max / 2),
        stack: Vec::new(),
        current: None,
        out: Vec::new(),
    };
    for page in pages {
        for block in parse_blocks(&page.text) {
            packer.add(block, page.page);
        }
    }
    packer.flush(false);
    packer.out
}

/// A structural unit of the input.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Block {
    Heading {
        level: usize,
        title: String,
        line: String,
    },
    Paragraph(String),
    List(Vec<String>),
    Table(Vec<String>),
    Code(String),
}

impl Block {
    fn text(&self) -> String {
        match self {
            Block::Heading { line, .. } => line.clone(),
            Block::Paragraph(text) | Block::Code(text) => text.clone(),
            Block::List(lines) | Block::Table(lines) => lines.join("\n"),
        }
    }
}

fn heading_of(line: &str) -> Option<(usize, String)> {
    let level = line.chars().take_while(|&c| c == '#').count();
    if !(1..=6).contains(&level) {
        return None;
    }
    let rest = &line[level..];
    if !(rest.is_empty() || rest.starts_with(' ') || rest.starts_with('\t')) {
        return None;
    }
    let title = rest.trim().trim_end_matches('#').trim().to_string();
    Some((level, title))
}

fn is_list_item(line: &str) -> bool {
    if line.starts_with("- ") || line.starts_with("* ") || line.starts_with("+ ") {
        return true;
    }
    let digits = line.chars().take_while(char::is_ascii_digit).count();
    digits > 0 && (line[digits..].starts_with(". ") || line[digits..].starts_with(") "))
}

fn is_table_row(line: &str) -> bool {
    line.starts_with('|') && line.len() > 1
}

/// Splits one page's text into blocks.
fn parse_blocks(text: &str) -> Vec<Block> {
    let mut blocks = Vec::new();
    let mut lines = text.lines().peekable();
    let mut paragraph: Vec<&str> = Vec::new();
    let flush_paragraph = |paragraph: &mut Vec<&str>, blocks: &mut Vec<Block>| {
        if !paragraph.is_empty() {
            blocks.push(Block::Paragraph(paragraph.join("\n")));
            paragraph.clear();
        }
    };
    while let Some(raw) = lines.next() {
        let line = raw.trim();
        if line.is_empty() {
            flush_paragraph(&mut paragraph, &mut blocks);
        } else if line.starts_with("```") || line.starts_with("~~~") {
            flush_paragraph(&mut paragraph, &mut blocks);
            let fence = &line[..3];
            let mut code = vec![raw.trim_end()];
            for inner in lines.by_ref() {
                code.push(inner.trim_end());
                if inner.trim().starts_with(fence) {
                    break;
                }
            }
            blocks.push(Block::Code(code.join("\n")));
        } else if let Some((level, title)) = heading_of(line) {
            flush_paragraph(&mut paragraph, &mut blocks);
            blocks.push(Block::Heading {
                level,
                title,
                line: line.to_string(),
            });
        } else if is_list_item(line) || is_table_row(line) {
            flush_paragraph(&mut paragraph, &mut blocks);
            let table = is_table_row(line);
            let mut items = vec![line.to_string()];
            while let Some(next) = lines.peek() {
                let next = next.trim();
                if (table && is_table_row(next)) || (!table && is_list_item(next)) {
                    items.push(next.to_string());
                } else if !table
                    && !next.is_empty()
                    && !is_table_row(next)
                    && heading_of(next).is_none()
                    && !next.starts_with("```")
                    && !next.starts_with("~~~")
                {
                    // A continuation line of the previous list item.
                    if let Some(last) = items.last_mut() {
                        last.push(' ');
                        last.push_str(next);
                    }
                } else {
                    break;
                }
                lines.next();
            }
            blocks.push(if table {
                Block::Table(items)
            } else {
                Block::List(items)
            });
        } else {
            paragraph.push(line);
        }
    }
    flush_paragraph(&mut paragraph, &mut blocks);
    blocks
}

/// What the next chunk may repeat of a piece that ends a chunk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Carry {
    /// Trailing sentences (paragraphs, code).
    Sentences,
    /// Trailing lines (list items).
    Lines,
    /// Nothing: headings, and tables, whose next part repeats the header row instead.
    Nothing,
}

/// A piece of chunk text with its cost.
#[derive(Debug, Clone)]
struct Piece {
    text: String,
    tokens: usize,
    heading: bool,
    carry: Carry,
}

impl Piece {
    fn new(text: String, heading: bool, carry: Carry) -> Self {
        let tokens = count_tokens(&text);
        Self {
            text,
            tokens,
            heading,
            carry,
        }
    }
}

#[derive(Debug)]
struct Pending {
    page: Option<u32>,
    heading: Option<String>,
    /// The level of the deepest heading in the path when the chunk started (0: none).
    level: usize,
    pieces: Vec<Piece>,
    tokens: usize,
    /// Whether the chunk has anything besides headings and carried overlap.
    has_body: bool,
}

#[derive(Debug)]
struct Packer {
    max: usize,
    overlap: usize,
    stack: Vec<(usize, String)>,
    current: Option<Pending>,
    out: Vec<ChunkDraft>,
}

impl Packer {
    fn path(&self) -> Option<String> {
        if self.stack.is_empty() {
            None
        } else {
            let titles: Vec<&str> = self.stack.iter().map(|(_, t)| t.as_str()).collect();
            Some(titles.join(" > "))
        }
    }

    fn level(&self) -> usize {
        self.stack.last().map_or(0, |(level, _)| *level)
    }

    fn add(&mut self, block: Block, page: Option<u32>) {
        if let Block::Heading { level, title, .. } = &block {
            let level = *level;
            let tokens = count_tokens(&block.text());
            if self
                .current
                .as_ref()
                .is_some_and(|p| !p.has_body && p.pieces.iter().all(|piece| !piece.heading))
            {
                // Overlap carried from the previous section does not cross a heading.
                self.current = None;
            }
            // Headings gather in one chunk only while they fit its budget too.
            let keep = self.current.as_ref().is_some_and(|pending| {
                if pending.has_body {
                    level > pending.level && pending.tokens + tokens <= self.max / 2
                } else {
                    pending.tokens + tokens <= self.max
                }
            });
            if !keep {
                self.flush(false);
            }
            while self.stack.last().is_some_and(|(l, _)| *l >= level) {
                self.stack.pop();
            }
            self.stack.push((level, title.clone()));
            if let Some(pending) = self.current.as_mut().filter(|p| !p.has_body) {
                // Only headings so far: the chunk's path is the innermost one.
                pending.heading = if self.stack.is_empty() {
                    None
                } else {
                    Some(
                        self.stack
                            .iter()
                            .map(|(_, t)| t.as_str())
                            .collect::<Vec<_>>()
                            .join(" > "),
                    )
                };
                pending.level = level;
            }
            // A heading longer than a chunk is split like a paragraph; each part opens a new
            // chunk when the current one is full.
            let parts = if tokens <= self.max {
                vec![block.text()]
            } else {
                split_block(&block, self.max)
            };
            for part in parts {
                let piece = Piece::new(part, true, Carry::Nothing);
                if self
                    .current
                    .as_ref()
                    .is_some_and(|pending| pending.tokens + piece.tokens > self.max)
                {
                    self.flush(false);
                }
                self.push(piece, page);
            }
            return;
        }
        let carry = match block {
            Block::List(_) => Carry::Lines,
            Block::Table(_) => Carry::Nothing,
            _ => Carry::Sentences,
        };
        let text = block.text();
        let tokens = count_tokens(&text);
        if tokens <= self.max {
            self.push_body(Piece::new(text, false, carry), page);
            return;
        }
        // Parts leave room for the overlap the next chunk starts with.
        for piece in split_block(&block, self.max - self.overlap) {
            self.push_body(Piece::new(piece, false, carry), page);
        }
    }

    fn push_body(&mut self, piece: Piece, page: Option<u32>) {
        let fits = self
            .current
            .as_ref()
            .is_none_or(|pending| pending.tokens + piece.tokens <= self.max);
        if !fits {
            self.flush(true);
            if self
                .current
                .as_ref()
                .is_some_and(|pending| pending.tokens + piece.tokens > self.max)
            {
                // No room for the carried overlap next to this piece.
                self.current = None;
            }
        }
        self.push(piece, page);
        if let Some(pending) = self.current.as_mut() {
            pending.has_body = true;
        }
    }

    fn push(&mut self, piece: Piece, page: Option<u32>) {
        if self.current.is_none() {
            self.current = Some(Pending {
                page,
                heading: self.path(),
                level: self.level(),
                pieces: Vec::new(),
                tokens: 0,
                has_body: false,
            });
        }
        if let Some(pending) = self.current.as_mut() {
            // A chunk that holds only carried overlap starts, for citing, where its new text does.
            if !pending.has_body && pending.pieces.iter().all(|p| !p.heading) {
                pending.page = page.or(pending.page);
            }
            pending.tokens += piece.tokens;
            pending.pieces.push(piece);
        }
    }

    /// Emits the pending chunk; with `carry`, the next chunk (same section) starts with the
    /// trailing sentences or lines of this one.
    fn flush(&mut self, carry: bool) {
        let Some(pending) = self.current.take() else {
            return;
        };
        if pending.has_body || pending.pieces.iter().any(|p| p.heading) {
            let text = pending
                .pieces
                .iter()
                .map(|p| p.text.as_str())
                .collect::<Vec<_>>()
                .join("\n\n");
            if !text.trim().is_empty() {
                let tokens = count_tokens(&text);
                self.out.push(ChunkDraft {
                    ordinal: u32::try_from(self.out.len()).unwrap_or(u32::MAX),
                    page: pending.page,
                    heading: pending.heading.clone(),
                    tokens: u32::try_from(tokens).unwrap_or(u32::MAX),
                    text,
                });
            }
        }
        if !carry || self.overlap == 0 || !pending.has_body {
            return;
        }
        let Some(last) = pending.pieces.last() else {
            return;
        };
        let units = match last.carry {
            Carry::Lines => last.text.lines().map(str::to_string).collect::<Vec<_>>(),
            Carry::Sentences => split_sentences(&last.text),
            Carry::Nothing => return,
        };
        let mut taken = Vec::new();
        let mut budget = 0;
        for unit in units.iter().rev() {
            let cost = count_tokens(unit);
            if budget + cost > self.overlap {
                break;
            }
            budget += cost;
            taken.push(unit.as_str());
        }
        if taken.is_empty() {
            return;
        }
        taken.reverse();
        let separator = if last.carry == Carry::Lines {
            "\n"
        } else {
            " "
        };
        let text = taken.join(separator);
        self.current = Some(Pending {
            page: pending.page,
            heading: pending.heading,
            level: pending.level,
            tokens: 0,
            pieces: Vec::new(),
            has_body: false,
        });
        self.push(Piece::new(text, false, last.carry), None);
    }
}

/// Splits a block larger than `max` tokens into pieces of at most `max` tokens.
fn split_block(block: &Block, max: usize) -> Vec<String> {
    match block {
        Block::Table(rows) => {
            let header_rows = if rows.len() > 1 && is_separator_row(&rows[1]) {
                2
            } else {
                1
            };
            let header = rows[..header_rows.min(rows.len())].join("\n");
            let header_tokens = count_tokens(&header);
            if header_tokens * 2 > max || rows.len() <= header_rows {
                // No room to repeat the header: rows as they come, a long one cut at words.
                let units = rows.iter().flat_map(|row| split_text(row, max)).collect();
                return pack_units(units, max, "\n");
            }
            let body = rows[header_rows..]
                .iter()
                .flat_map(|row| split_text(row, max - header_tokens))
                .collect();
            pack_units(body, max - header_tokens, "\n")
                .into_iter()
                .map(|part| format!("{header}\n{part}"))
                .collect()
        }
        Block::List(items) => {
            let units = items
                .iter()
                .flat_map(|item| split_text(item, max))
                .collect();
            pack_units(units, max, "\n")
        }
        Block::Code(text) => {
            let units = text
                .lines()
                .flat_map(|line| split_text(line, max))
                .collect();
            pack_units(units, max, "\n")
        }
        Block::Paragraph(text) | Block::Heading { line: text, .. } => {
            let units = split_sentences(text)
                .iter()
                .flat_map(|s| split_text(s, max))
                .collect();
            pack_units(units, max, " ")
        }
    }
}

fn is_separator_row(row: &str) -> bool {
    row.chars()
        .all(|c| matches!(c, '|' | '-' | ':' | ' ' | '\t'))
        && row.contains('-')
}

/// Greedily joins units (each at most `max` tokens) into parts of at most `max` tokens.
fn pack_units(units: Vec<String>, max: usize, separator: &str) -> Vec<String> {
    let mut parts = Vec::new();
    let mut part = String::new();
    let mut tokens = 0;
    for unit in units {
        let cost = count_tokens(&unit);
        if !part.is_empty() && tokens + cost > max {
            parts.push(std::mem::take(&mut part));
            tokens = 0;
        }
        if !part.is_empty() {
            part.push_str(separator);
        }
        part.push_str(&unit);
        tokens += cost;
    }
    if !part.trim().is_empty() {
        parts.push(part);
    }
    parts
}

/// Sentences of `text`: a sentence ends after `.`, `!`, `?` (or their full-width forms, which
/// need no following space) followed by whitespace.
fn split_sentences(text: &str) -> Vec<String> {
    let mut sentences = Vec::new();
    let mut start = 0;
    let mut chars = text.char_indices().peekable();
    while let Some((i, c)) = chars.next() {
        let end = i + c.len_utf8();
        let full_width = matches!(c, '。' | '！' | '？');
        let ends = full_width
            || matches!(c, '.' | '!' | '?')
                && chars.peek().is_none_or(|(_, next)| next.is_whitespace());
        if ends {
            let sentence = text[start..end].trim();
            if !sentence.is_empty() {
                sentences.push(sentence.to_string());
            }
            start = end;
        }
    }
    let rest = text[start..].trim();
    if !rest.is_empty() {
        sentences.push(rest.to_string());
    }
    sentences
}

/// Splits `text` into pieces of at most `max` tokens at words, and a word longer than that at
/// characters (never inside one).
fn split_text(text: &str, max: usize) -> Vec<String> {
    if count_tokens(text) <= max {
        return vec![text.to_string()];
    }
    let mut units = Vec::new();
    for word in text.split_whitespace() {
        if word_tokens(word) <= max {
            units.push(word.to_string());
            continue;
        }
        // The piece's cost is kept as it grows: recounting it at every character made a long
        // word (a base64 blob) cost its length times the piece length.
        let mut piece = String::new();
        let mut counts = CharCounts::default();
        for c in word.chars() {
            let mut grown = counts;
            grown.add(c);
            if !piece.is_empty() && grown.tokens() > max {
                units.push(std::mem::take(&mut piece));
                grown = CharCounts::default();
                grown.add(c);
            }
            piece.push(c);
            counts = grown;
        }
        if !piece.is_empty() {
            units.push(piece);
        }
    }
    pack_units(units, max, " ")
}

#[cfg(test)]
#[path = "chunk_randomized.rs"]
mod randomized_tests;

#[cfg(test)]
mod tests {
    use super::*;

    fn page(page: Option<u32>, text: &str) -> PageText {
        PageText {
            page,
            text: text.to_string(),
        }
    }

    fn options(max_tokens: usize, overlap_tokens: usize) -> ChunkOptions {
        ChunkOptions {
            max_tokens,
            overlap_tokens,
        }
    }

    /// Every word of every page appears in some chunk.
    fn assert_nothing_lost(pages: &[PageText], chunks: &[ChunkDraft]) {
        let all: String = chunks
            .iter()
            .map(|c| c.text.as_str())
            .collect::<Vec<_>>()
            .join(" ");
        let present: std::collections::HashSet<&str> = all.split_whitespace().collect();
        for page in pages {
            for word in page.text.split_whitespace() {
                assert!(present.contains(word), "`{word}` was lost");
            }
        }
    }

    fn assert_well_formed(chunks: &[ChunkDraft], max: usize) {
        for (i, chunk) in chunks.iter().enumerate() {
            assert_eq!(chunk.ordinal as usize, i);
            assert!(!chunk.text.trim().is_empty());
            assert_eq!(chunk.tokens as usize, count_tokens(&chunk.text));
            assert!(
                chunk.tokens as usize <= max,
                "chunk {i} has {} tokens: {:?}",
                chunk.tokens,
                chunk.text
            );
        }
    }

    fn sentences(prefix: &str, n: usize) -> String {
        (0..n)
            .map(|i| format!("The {prefix} sentence number {i} talks about apples."))
            .collect::<Vec<_>>()
            .join(" ")
    }

    #[test]
    fn heading_path_follows_the_markdown_stack() {
        let pages = [page(
            None,
            "# Terms\n\nIntro text.\n\n## Definitions\n\nA word means a thing.\n\n\
             ### Edge cases\n\nSome edge.\n\n## Scope\n\nThe scope.\n\n# Other\n\nElsewhere.",
        )];
        let chunks = chunk_pages(&pages, &options(12, 0));
        let headings: Vec<Option<&str>> = chunks.iter().map(|c| c.heading.as_deref()).collect();
        assert_eq!(
            headings,
            vec![
                Some("Terms"),
                Some("Terms > Definitions"),
                Some("Terms > Definitions > Edge cases"),
                Some("Terms > Scope"),
                Some("Other"),
            ],
            "{chunks:#?}"
        );
        assert!(chunks[1].text.starts_with("## Definitions"));
        assert_well_formed(&chunks, 12);
        assert_nothing_lost(&pages, &chunks);
    }

    #[test]
    fn same_level_heading_always_starts_a_new_chunk() {
        let pages = [page(None, "# A\n\nalpha\n\n# B\n\nbeta")];
        let chunks = chunk_pages(&pages, &ChunkOptions::default());
        assert_eq!(chunks.len(), 2);
        assert_eq!(chunks[0].text, "# A\n\nalpha");
        assert_eq!(chunks[1].heading.as_deref(), Some("B"));
    }

    #[test]
    fn small_blocks_are_packed_together() {
        let pages = [page(Some(1), "one.\n\ntwo.\n\n- three\n- four")];
        let chunks = chunk_pages(&pages, &ChunkOptions::default());
        assert_eq!(chunks.len(), 1);
        assert_eq!(chunks[0].text, "one.\n\ntwo.\n\n- three\n- four");
        assert_eq!(chunks[0].heading, None);
    }

    #[test]
    fn table_that_fits_is_kept_whole() {
        let table = "| name | price |\n|---|---|\n| apple | 1 |\n| pear | 2 |";
        let pages = [page(None, &format!("Prices follow.\n\n{table}\n\nEnd."))];
        let chunks = chunk_pages(&pages, &options(40, 0));
        assert!(chunks.iter().any(|c| c.text.contains(table)), "{chunks:#?}");
    }

    #[test]
    fn large_table_is_split_between_rows_repeating_the_header() {
        let mut table = String::from("| fruit | colour | price |\n|---|---|---|");
        for i in 0..40 {
            table.push_str(&format!("\n| fruit{i} | colour{i} | {i} |"));
        }
        let pages = [page(None, &table)];
        let chunks = chunk_pages(&pages, &options(60, 0));
        assert!(chunks.len() > 2);
        for chunk in &chunks {
            assert!(
                chunk
                    .text
                    .starts_with("| fruit | colour | price |\n|---|---|---|\n| fruit"),
                "{}",
                chunk.text
            );
            assert!(chunk
                .text
                .lines()
                .all(|l| l.starts_with('|') && l.ends_with('|')));
        }
        assert_well_formed(&chunks, 60);
        assert_nothing_lost(&pages, &chunks);
    }

    #[test]
    fn large_list_is_split_between_items() {
        let list: Vec<String> = (0..50)
            .map(|i| format!("- item {i} has several words"))
            .collect();
        let pages = [page(None, &list.join("\n"))];
        let chunks = chunk_pages(&pages, &options(40, 0));
        assert!(chunks.len() > 2);
        for chunk in &chunks {
            assert!(chunk.text.lines().all(|l| l.starts_with("- item ")));
        }
        assert_well_formed(&chunks, 40);
        assert_nothing_lost(&pages, &chunks);
    }

    #[test]
    fn long_paragraph_is_split_at_sentences() {
        let text = sentences("long", 40);
        let pages = [page(None, &text)];
        let chunks = chunk_pages(&pages, &options(50, 0));
        assert!(chunks.len() > 3);
        for chunk in &chunks {
            assert!(
                chunk.text.starts_with("The long sentence"),
                "{}",
                chunk.text
            );
            assert!(chunk.text.ends_with("apples."), "{}", chunk.text);
        }
        assert_well_formed(&chunks, 50);
        assert_nothing_lost(&pages, &chunks);
    }

    #[test]
    fn sentence_longer_than_a_chunk_is_split_at_words() {
        let text = (0..300)
            .map(|i| format!("w{i}"))
            .collect::<Vec<_>>()
            .join(" ");
        let pages = [page(None, &text)];
        let chunks = chunk_pages(&pages, &options(30, 5));
        assert_well_formed(&chunks, 30);
        assert_nothing_lost(&pages, &chunks);
    }

    #[test]
    fn consecutive_chunks_of_a_section_overlap() {
        let pages = [page(
            None,
            &format!("# Apples\n\n{}", sentences("overlap", 30)),
        )];
        let chunks = chunk_pages(&pages, &options(60, 15));
        assert!(chunks.len() > 2);
        for pair in chunks.windows(2) {
            let last_sentence = split_sentences(&pair[0].text).pop().unwrap_or_default();
            assert!(
                pair[1].text.starts_with(&last_sentence),
                "{:?} does not start with {last_sentence:?}",
                pair[1].text
            );
            assert_eq!(pair[1].heading.as_deref(), Some("Apples"));
        }
        assert_well_formed(&chunks, 60);
    }

    #[test]
    fn no_overlap_across_a_heading() {
        let pages = [page(
            None,
            &format!("# A\n\n{}\n\n# B\n\nfresh start.", sentences("a", 10)),
        )];
        let chunks = chunk_pages(&pages, &options(60, 15));
        let last = chunks.last().map(|c| c.text.as_str());
        assert_eq!(last, Some("# B\n\nfresh start."));
    }

    #[test]
    fn multibyte_text_is_never_cut_inside_a_character() {
        let text = "日本語の文章です。".repeat(200)
            + " "
            + &"é".repeat(500)
            + " Ünïcödé wörds ünd sätze. Ещё одно предложение!";
        let pages = [page(Some(3), &text)];
        let chunks = chunk_pages(&pages, &options(40, 10));
        assert!(chunks.len() > 5);
        assert_well_formed(&chunks, 40);
        let joined: String = chunks.iter().map(|c| c.text.as_str()).collect();
        assert!(joined.contains("предложение!"));
        assert!(chunks.iter().all(|c| c.page == Some(3)));
    }

    #[test]
    fn page_numbers_are_where_chunks_start() {
        let pages = [
            page(Some(1), &sentences("first", 8)),
            page(Some(2), &sentences("second", 8)),
            page(Some(3), "short third page."),
        ];
        let chunks = chunk_pages(&pages, &options(60, 0));
        assert_eq!(chunks.first().and_then(|c| c.page), Some(1));
        for chunk in &chunks {
            let expected = if chunk.text.starts_with("The first") {
                Some(1)
            } else if chunk.text.starts_with("The second") {
                Some(2)
            } else {
                Some(3)
            };
            assert_eq!(chunk.page, expected, "{}", chunk.text);
        }
        assert_nothing_lost(&pages, &chunks);
    }

    #[test]
    fn code_fences_stay_together() {
        let code = "```rust\nfn main() {\n\n    println!(\"hi\");\n}\n```";
        let pages = [page(None, &format!("Before.\n\n{code}\n\nAfter."))];
        let chunks = chunk_pages(&pages, &ChunkOptions::default());
        assert!(chunks[0].text.contains(code));
    }

    #[test]
    fn blank_input_gives_no_chunks() {
        let pages = [page(Some(1), "  \n\n \t\n"), page(Some(2), "")];
        assert!(chunk_pages(&pages, &ChunkOptions::default()).is_empty());
    }

    #[test]
    fn mixed_document_loses_nothing() {
        let mut text = String::new();
        for s in 0..6 {
            text.push_str(&format!("## Section {s}\n\n{}\n\n", sentences("mixed", 7)));
            text.push_str("- alpha item\n- beta item\n\n| h1 | h2 |\n|---|---|\n| x | y |\n\n");
        }
        let pages = [page(Some(1), &text), page(Some(2), &sentences("tail", 20))];
        let chunks = chunk_pages(&pages, &options(80, 20));
        assert_well_formed(&chunks, 80);
        assert_nothing_lost(&pages, &chunks);
        let again = chunk_pages(&pages, &options(80, 20));
        assert_eq!(chunks, again, "chunking is deterministic");
    }
}
