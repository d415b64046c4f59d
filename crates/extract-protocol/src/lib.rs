//! The JSON-lines protocol on `engram-extract`'s stdout, written by the extractor and read by
//! engram's sandbox: `document`, `page`…, then `done` or `error`, one JSON object per line.
//! Defined once here so the two sides cannot drift apart.

use std::borrow::Cow;

use serde::{Deserialize, Serialize};

/// One line of output. Field order here is the order on the wire.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Line<'a> {
    /// Sent once after sniffing. `deferred`: pages this run leaves for the caller to OCR in
    /// runs of their own (`--defer-ocr`, then `--page N`); omitted when there are none.
    Document {
        kind: Cow<'a, str>,
        pages: u32,
        #[serde(default, skip_serializing_if = "<[u32]>::is_empty")]
        deferred: Cow<'a, [u32]>,
    },
    /// One per page, in order, 1-based.
    Page(Page<'a>),
    /// Sent last on success.
    Done {
        pages: u32,
        ocr_pages: u32,
        chars: u64,
    },
    /// Sent last on failure (exit status 2).
    Error {
        kind: Cow<'a, str>,
        message: Cow<'a, str>,
    },
}

/// One page's text.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Page<'a> {
    pub page: u32,
    pub text: Cow<'a, str>,
    /// Read with OCR.
    pub ocr: bool,
    /// Why the page's text may be incomplete, if it may be.
    pub warning: Option<Cow<'a, str>>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_read_back_as_written() {
        let lines = [
            Line::Document {
                kind: "pdf".into(),
                pages: 3,
                deferred: vec![2, 3].into(),
            },
            Line::Document {
                kind: "png".into(),
                pages: 1,
                deferred: Cow::Borrowed(&[]),
            },
            Line::Page(Page {
                page: 1,
                text: "héllo".into(),
                ocr: true,
                warning: Some("page 1: faint".into()),
            }),
            Line::Done {
                pages: 1,
                ocr_pages: 1,
                chars: 5,
            },
            Line::Error {
                kind: "empty".into(),
                message: "the file is empty".into(),
            },
        ];
        for line in lines {
            let wire = serde_json::to_string(&line).unwrap();
            assert_eq!(serde_json::from_str::<Line>(&wire).unwrap(), line, "{wire}");
        }
        assert_eq!(
            serde_json::to_string(&Line::Document {
                kind: "png".into(),
                pages: 1,
                deferred: Cow::Borrowed(&[]),
            })
            .unwrap(),
            r#"{"type":"document","kind":"png","pages":1}"#
        );
    }
}
