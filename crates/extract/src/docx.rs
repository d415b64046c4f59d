//! DOCX: zip-bomb-safe access to `word/document.xml` and a streaming (non-recursive) conversion
//! of WordprocessingML to light Markdown (headings, list items, table rows, paragraphs).

use std::io::{Cursor, Read};

use quick_xml::events::{BytesStart, Event};
use quick_xml::Reader;

use crate::error::ExtractError;

/// Archives with more entries than this are refused before their directory is parsed.
const MAX_ENTRIES: u64 = 10_000;
/// Largest `word/document.xml` we inflate.
const MAX_DOCUMENT_XML_BYTES: u64 = 64 * 1024 * 1024;
/// Inflation ratio above which a large part is treated as a zip bomb (real DOCX XML: ~5–20x).
const MAX_RATIO: u64 = 200;
/// Parts smaller than this are never refused for their ratio.
const RATIO_EXEMPT_BYTES: u64 = 1024 * 1024;

/// Extract the text of a DOCX held in `bytes` (already sniffed as a ZIP archive).
pub fn extract(bytes: &[u8]) -> Result<String, ExtractError> {
    if let Some(entries) = declared_entry_count(bytes) {
        check_entry_count(entries)?;
    }
    let mut archive = zip::ZipArchive::new(Cursor::new(bytes)).map_err(|e| {
        ExtractError::corrupt(format_args!(
            "the file is not a valid ZIP/DOCX archive: {e}"
        ))
    })?;
    check_entry_count(archive.len() as u64)?;
    let xml = {
        let part = match archive.by_name("word/document.xml") {
            Ok(part) => part,
            Err(zip::result::ZipError::FileNotFound) => {
                return Err(ExtractError::Unsupported("ZIP archive (not a DOCX)".into()))
            }
            Err(e) => {
                return Err(ExtractError::corrupt(format_args!(
                    "the DOCX is damaged: cannot open word/document.xml: {e}"
                )))
            }
        };
        let (declared, compressed) = (part.size(), part.compressed_size());
        let too_big = || {
            ExtractError::too_large(format_args!(
                "the DOCX text part (word/document.xml) inflates to more than {} MiB",
                MAX_DOCUMENT_XML_BYTES / (1024 * 1024)
            ))
        };
        if declared > MAX_DOCUMENT_XML_BYTES {
            return Err(too_big());
        }
        if declared > RATIO_EXEMPT_BYTES && declared / compressed.max(1) > MAX_RATIO {
            return Err(ExtractError::too_large(format_args!(
                "the DOCX looks like a zip bomb: word/document.xml inflates {}x",
                declared / compressed.max(1)
            )));
        }
        // The header may lie: never inflate more than the limit, whatever it says.
        let mut xml = Vec::with_capacity(declared as usize);
        part.take(MAX_DOCUMENT_XML_BYTES + 1)
            .read_to_end(&mut xml)
            .map_err(|e| {
                ExtractError::corrupt(format_args!(
                    "the DOCX is damaged: cannot inflate word/document.xml: {e}"
                ))
            })?;
        if xml.len() as u64 > MAX_DOCUMENT_XML_BYTES {
            return Err(too_big());
        }
        xml
    };
    document_xml_to_text(&xml)
}

fn check_entry_count(entries: u64) -> Result<(), ExtractError> {
    if entries > MAX_ENTRIES {
        return Err(ExtractError::too_large(format_args!(
            "the archive has {entries} entries; the limit is {MAX_ENTRIES}"
        )));
    }
    Ok(())
}

/// The entry count from the end-of-central-directory record, if one is found and it is not
/// a ZIP64 placeholder. Lets us refuse a million-entry archive before parsing its directory.
fn declared_entry_count(bytes: &[u8]) -> Option<u64> {
    const EOCD_LEN: usize = 22;
    let window_start = bytes.len().saturating_sub(EOCD_LEN + u16::MAX as usize);
    let window = &bytes[window_start..];
    let pos = window
        .windows(4)
        .rposition(|w| w == b"PK\x05\x06")
        .filter(|&p| p + EOCD_LEN <= window.len())?;
    let total = u16::from_le_bytes([window[pos + 10], window[pos + 11]]);
    (total != u16::MAX).then_some(u64::from(total))
}

/// What kind of block the current paragraph is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Block {
    Paragraph,
    Heading(usize),
    ListItem,
    TableRow,
}

/// Accumulates Markdown blocks: consecutive list items and table rows share a line break,
/// everything else is separated by a blank line.
#[derive(Debug, Default)]
struct Output {
    text: String,
    last: Option<Block>,
}

impl Output {
    fn push(&mut self, block: Block, content: &str) {
        let content = content.trim();
        if content.is_empty() {
            return;
        }
        if let Some(last) = self.last {
            let tight = last == block && matches!(block, Block::ListItem | Block::TableRow);
            self.text.push_str(if tight { "\n" } else { "\n\n" });
        }
        match block {
            Block::Heading(level) => {
                self.text.push_str(&"#".repeat(level));
                self.text.push(' ');
            }
            Block::ListItem => self.text.push_str("- "),
            Block::Paragraph | Block::TableRow => {}
        }
        self.text.push_str(content);
        self.last = Some(block);
    }
}

/// Heading level for a paragraph style id (`Title`, `Heading1`, `heading 2`, `Subtitle`).
fn heading_level(style: &str) -> Option<usize> {
    let lower = style.to_ascii_lowercase().replace(' ', "");
    if lower == "title" {
        return Some(1);
    }
    if lower == "subtitle" {
        return Some(2);
    }
    let digits = lower.strip_prefix("heading")?;
    let level: usize = digits.parse().ok()?;
    (1..=9).contains(&level).then_some(level.min(6))
}

fn attr_val(e: &BytesStart<'_>) -> Option<String> {
    e.attributes()
        .flatten()
        .find(|a| a.key.local_name().as_ref() == b"val")
        .and_then(|a| a.unescape_value().ok().map(|v| v.into_owned()))
}

/// Streaming state for the WordprocessingML walk. Tables nest: only the outermost table
/// produces rows; text in inner tables joins the enclosing cell.
#[derive(Debug, Default)]
struct Walker {
    out: Output,
    paragraph: String,
    heading: Option<usize>,
    list: bool,
    in_text: bool,
    table_depth: usize,
    row: Vec<String>,
    cell: Option<String>,
    /// Depth inside `mc:Fallback` (duplicate of the `mc:Choice` content: skipped).
    fallback_depth: usize,
}

impl Walker {
    fn start(&mut self, e: &BytesStart<'_>, empty: bool) {
        let name = e.local_name();
        if self.fallback_depth > 0 {
            if name.as_ref() == b"Fallback" && !empty {
                self.fallback_depth += 1;
            }
            return;
        }
        match name.as_ref() {
            b"Fallback" if !empty => self.fallback_depth = 1,
            b"p" => {
                self.paragraph.clear();
                self.heading = None;
                self.list = false;
            }
            b"pStyle" => {
                let style = attr_val(e).unwrap_or_default();
                self.heading = heading_level(&style);
                // `ListBullet`, `ListNumber`, `List Paragraph`: list items by style.
                if style.to_ascii_lowercase().starts_with("list") {
                    self.list = true;
                }
            }
            b"numPr" => self.list = true,
            b"t" if !empty => self.in_text = true,
            b"tab" => self.paragraph.push('\t'),
            b"br" | b"cr" => self
                .paragraph
                .push(if self.cell.is_some() { ' ' } else { '\n' }),
            b"tbl" if !empty => self.table_depth += 1,
            b"tr" if self.table_depth == 1 && !empty => self.row.clear(),
            b"tc" if self.table_depth == 1 && !empty => self.cell = Some(String::new()),
            _ => {}
        }
    }

    fn end(&mut self, name: &[u8]) {
        if self.fallback_depth > 0 {
            if name == b"Fallback" {
                self.fallback_depth -= 1;
            }
            return;
        }
        match name {
            b"t" => self.in_text = false,
            b"p" => self.end_paragraph(),
            b"tc" if self.table_depth == 1 => {
                if let Some(cell) = self.cell.take() {
                    self.row.push(cell.trim().replace('|', "\\|"));
                }
            }
            b"tr" if self.table_depth == 1 => {
                if self.row.iter().any(|c| !c.is_empty()) {
                    let line = format!("| {} |", self.row.join(" | "));
                    self.out.push(Block::TableRow, &line);
                }
                self.row.clear();
            }
            b"tbl" => self.table_depth = self.table_depth.saturating_sub(1),
            _ => {}
        }
    }

    fn end_paragraph(&mut self) {
        let text = std::mem::take(&mut self.paragraph);
        if let Some(cell) = self.cell.as_mut() {
            let text = text.split_whitespace().collect::<Vec<_>>().join(" ");
            if !text.is_empty() {
                if !cell.is_empty() {
                    cell.push(' ');
                }
                cell.push_str(&text);
            }
            return;
        }
        let block = match (self.heading, self.list) {
            (Some(level), _) => Block::Heading(level),
            (None, true) => Block::ListItem,
            (None, false) => Block::Paragraph,
        };
        let text = if block == Block::Paragraph {
            text
        } else {
            text.split_whitespace().collect::<Vec<_>>().join(" ")
        };
        self.out.push(block, &text);
    }

    fn text(&mut self, s: &str) {
        if self.in_text && self.fallback_depth == 0 {
            self.paragraph.push_str(s);
        }
    }
}

/// Convert `word/document.xml` to Markdown-ish text. Streaming: memory is bounded by the
/// input and the output, not by nesting depth.
pub fn document_xml_to_text(xml: &[u8]) -> Result<String, ExtractError> {
    let mut reader = Reader::from_reader(xml);
    let mut buf = Vec::new();
    let mut walker = Walker::default();
    let bad_xml = |e: &dyn std::fmt::Display| {
        ExtractError::corrupt(format_args!(
            "the DOCX is damaged: word/document.xml is not valid XML: {e}"
        ))
    };
    loop {
        match reader.read_event_into(&mut buf) {
            Ok(Event::Start(e)) => walker.start(&e, false),
            Ok(Event::Empty(e)) => walker.start(&e, true),
            Ok(Event::End(e)) => walker.end(e.local_name().as_ref()),
            Ok(Event::Text(t)) => match t.unescape() {
                Ok(s) => walker.text(&s),
                Err(_) => walker.text(&String::from_utf8_lossy(&t)),
            },
            Ok(Event::CData(t)) => walker.text(&String::from_utf8_lossy(&t)),
            Ok(Event::Eof) => break,
            Ok(_) => {}
            Err(e) => return Err(bad_xml(&e)),
        }
        buf.clear();
    }
    // A document cut off mid-paragraph still yields what it had.
    if !walker.paragraph.is_empty() {
        walker.end_paragraph();
    }
    Ok(walker.out.text)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn doc(body: &str) -> String {
        let xml = format!(
            r#"<?xml version="1.0" encoding="UTF-8" standalone="yes"?>
<w:document xmlns:w="http://schemas.openxmlformats.org/wordprocessingml/2006/main"><w:body>{body}</w:body></w:document>"#
        );
        document_xml_to_text(xml.as_bytes()).unwrap()
    }

    fn p(style: &str, text: &str) -> String {
        let ppr = if style.is_empty() {
            String::new()
        } else if style == "list" {
            r#"<w:pPr><w:numPr><w:ilvl w:val="0"/><w:numId w:val="1"/></w:numPr></w:pPr>"#.into()
        } else {
            format!(r#"<w:pPr><w:pStyle w:val="{style}"/></w:pPr>"#)
        };
        format!(r#"<w:p>{ppr}<w:r><w:t xml:space="preserve">{text}</w:t></w:r></w:p>"#)
    }

    #[test]
    fn headings_lists_paragraphs() {
        let body = [
            p("Title", "Onboarding"),
            p("Heading1", "First week"),
            p("", "Welcome &amp; hello."),
            p("list", "Laptop"),
            p("ListBullet", "Badge"),
            p("Heading2", "Details"),
            p("Normal", "Done."),
        ]
        .concat();
        assert_eq!(
            doc(&body),
            "# Onboarding\n\n# First week\n\nWelcome & hello.\n\n- Laptop\n- Badge\n\n## Details\n\nDone."
        );
    }

    #[test]
    fn runs_tabs_and_breaks() {
        let body = r#"<w:p><w:r><w:t>Hel</w:t></w:r><w:r><w:t>lo</w:t><w:tab/><w:t>world</w:t><w:br/><w:t>next</w:t></w:r><w:r><w:instrText>PAGE</w:instrText></w:r></w:p>"#;
        assert_eq!(doc(body), "Hello\tworld\nnext");
    }

    #[test]
    fn tables_become_rows() {
        let cell = |t: &str| format!("<w:tc>{}</w:tc>", p("", t));
        let body = format!(
            "{}<w:tbl><w:tr>{}{}</w:tr><w:tr>{}{}</w:tr></w:tbl>{}",
            p("", "Before"),
            cell("Name"),
            cell("Role"),
            cell("Ann"),
            cell("a|b"),
            p("", "After")
        );
        assert_eq!(
            doc(&body),
            "Before\n\n| Name | Role |\n| Ann | a\\|b |\n\nAfter"
        );
    }

    #[test]
    fn fallback_content_is_not_duplicated() {
        let body = r#"<w:p><w:r><mc:AlternateContent xmlns:mc="m"><mc:Choice><w:t>box</w:t></mc:Choice><mc:Fallback><w:t>box</w:t></mc:Fallback></mc:AlternateContent></w:r></w:p>"#;
        assert_eq!(doc(body), "box");
    }

    #[test]
    fn deep_nesting_and_bad_xml() {
        let deep = format!(
            "{}<w:t>x</w:t>{}",
            "<w:r>".repeat(50_000),
            "</w:r>".repeat(50_000)
        );
        assert_eq!(doc(&format!("<w:p>{deep}</w:p>")), "x");
        let err = document_xml_to_text(b"<w:document><w:p></w:q>").unwrap_err();
        assert_eq!(err.kind(), "corrupt");
    }

    #[test]
    fn eocd_entry_count() {
        let mut zip = vec![0u8; 100];
        zip.extend_from_slice(b"PK\x05\x06\0\0\0\0\x10\x27\x11\x27");
        zip.extend_from_slice(&[0u8; 10]);
        assert_eq!(declared_entry_count(&zip), Some(10_001));
        assert!(check_entry_count(10_001).is_err());
    }

    #[test]
    fn style_names() {
        assert_eq!(heading_level("Heading1"), Some(1));
        assert_eq!(heading_level("heading 2"), Some(2));
        assert_eq!(heading_level("Title"), Some(1));
        assert_eq!(heading_level("Normal"), None);
        assert_eq!(heading_level("HeadingX"), None);
    }
}
