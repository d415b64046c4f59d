//! Writing the JSON-lines protocol on stdout (`engram-extract-protocol` defines the lines):
//! `document`, `page`…, then `done` or `error`.

use std::io::{self, Write};

use engram_extract_protocol::{Line, Page};

use crate::error::ExtractError;

/// Writes events to a sink, one JSON object per line, flushing each so the parent sees progress
/// (and a partial result if we are killed). Also keeps the totals for the `done` line.
#[derive(Debug)]
pub struct Emitter<W: Write> {
    out: W,
    pages: u32,
    ocr_pages: u32,
    chars: u64,
}

impl<W: Write> Emitter<W> {
    pub fn new(out: W) -> Self {
        Emitter {
            out,
            pages: 0,
            ocr_pages: 0,
            chars: 0,
        }
    }

    fn emit(&mut self, event: &Line<'_>) -> io::Result<()> {
        serde_json::to_writer(&mut self.out, event)?;
        self.out.write_all(b"\n")?;
        self.out.flush()
    }

    pub fn document(&mut self, kind: &str, pages: u32, deferred: &[u32]) -> io::Result<()> {
        self.emit(&Line::Document {
            kind: kind.into(),
            pages,
            deferred: deferred.into(),
        })
    }

    pub fn page(
        &mut self,
        page: u32,
        text: &str,
        ocr: bool,
        warning: Option<&str>,
    ) -> io::Result<()> {
        self.pages += 1;
        if ocr {
            self.ocr_pages += 1;
        }
        self.chars += text.chars().count() as u64;
        self.emit(&Line::Page(Page {
            page,
            text: text.into(),
            ocr,
            warning: warning.map(Into::into),
        }))
    }

    /// Characters of text emitted so far.
    pub fn chars(&self) -> u64 {
        self.chars
    }

    /// The sink, with everything written to it.
    #[cfg(test)]
    pub fn into_inner(self) -> W {
        self.out
    }

    pub fn done(&mut self) -> io::Result<()> {
        let (pages, ocr_pages, chars) = (self.pages, self.ocr_pages, self.chars);
        self.emit(&Line::Done {
            pages,
            ocr_pages,
            chars,
        })
    }

    pub fn error(&mut self, err: &ExtractError) -> io::Result<()> {
        let message = err.message();
        self.emit(&Line::Error {
            kind: err.kind().into(),
            message: message.into(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_exact() {
        let mut e = Emitter::new(Vec::new());
        e.document("pdf", 2, &[]).unwrap();
        e.page(1, "héllo", false, None).unwrap();
        e.page(2, "", true, Some("page 2: no text")).unwrap();
        e.done().unwrap();
        e.error(&ExtractError::Empty).unwrap();
        let s = String::from_utf8(e.out).unwrap();
        let lines: Vec<&str> = s.lines().collect();
        assert_eq!(lines[0], r#"{"type":"document","kind":"pdf","pages":2}"#);
        assert_eq!(
            lines[1],
            r#"{"type":"page","page":1,"text":"héllo","ocr":false,"warning":null}"#
        );
        assert_eq!(
            lines[2],
            r#"{"type":"page","page":2,"text":"","ocr":true,"warning":"page 2: no text"}"#
        );
        assert_eq!(
            lines[3],
            r#"{"type":"done","pages":2,"ocr_pages":1,"chars":5}"#
        );
        assert_eq!(
            lines[4],
            r#"{"type":"error","kind":"empty","message":"the file is empty"}"#
        );
    }

    #[test]
    fn deferred_pages_are_listed() {
        let mut e = Emitter::new(Vec::new());
        e.document("pdf", 3, &[2, 3]).unwrap();
        assert_eq!(
            String::from_utf8(e.out).unwrap().trim_end(),
            r#"{"type":"document","kind":"pdf","pages":3,"deferred":[2,3]}"#
        );
    }
}
