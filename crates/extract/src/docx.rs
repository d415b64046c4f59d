//! DOCX: the main part, read through the package's zip-bomb guards, and a streaming
//! (non-recursive) conversion of WordprocessingML to light Markdown (headings, list items,
//! table rows, paragraphs).

use quick_xml::events::{BytesStart, Event};
use quick_xml::Reader;

use crate::error::ExtractError;
use crate::package::{Package, MAX_PART_BYTES};

/// Extract the text of a DOCX whose main part (normally `word/document.xml`) is `main`.
pub fn extract(package: &mut Package<'_>, main: &str) -> Result<String, ExtractError> {
    let xml = package.read(main, MAX_PART_BYTES)?.ok_or_else(|| {
        ExtractError::corrupt(format_args!("the DOCX is damaged: {main} is missing"))
    })?;
    document_xml_to_text(&xml)
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
    fn style_names() {
        assert_eq!(heading_level("Heading1"), Some(1));
        assert_eq!(heading_level("heading 2"), Some(2));
        assert_eq!(heading_level("Title"), Some(1));
        assert_eq!(heading_level("Normal"), None);
        assert_eq!(heading_level("HeadingX"), None);
    }
}
