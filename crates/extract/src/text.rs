//! Plain text and Markdown: decoding bytes of any common encoding to UTF-8, telling Markdown
//! from plain text, and normalising line endings.

use encoding_rs::{Encoding, UTF_16BE, UTF_16LE};

/// Decode `bytes` to a string. UTF-8 (with or without BOM) and BOM-marked UTF-16 are taken
/// at their word; anything else is guessed with chardetng. Undecodable bytes become U+FFFD.
pub fn decode(bytes: &[u8]) -> String {
    if let Some((encoding, bom_len)) = Encoding::for_bom(bytes) {
        let (text, _) = encoding.decode_without_bom_handling(&bytes[bom_len..]);
        return text.into_owned();
    }
    if let Ok(s) = std::str::from_utf8(bytes) {
        return s.to_owned();
    }
    let mut detector = chardetng::EncodingDetector::new(chardetng::Iso2022JpDetection::Deny);
    detector.feed(bytes, true);
    let encoding = detector.guess(None, chardetng::Utf8Detection::Allow);
    // chardetng never guesses UTF-16; keep that invariant explicit for readers.
    debug_assert!(encoding != UTF_16LE && encoding != UTF_16BE);
    let (text, _, _) = encoding.decode(bytes);
    text.into_owned()
}

/// Does the text carry Markdown structure: ATX headings, list items, code fences or links?
pub fn looks_like_markdown(text: &str) -> bool {
    let mut list_items = 0;
    for line in text.lines().take(2000) {
        let line = line.trim_end();
        let hashes = line.bytes().take_while(|&b| b == b'#').count();
        if (1..=6).contains(&hashes) && line[hashes..].starts_with(' ') {
            return true;
        }
        if line.trim_start().starts_with("```") || line.trim_start().starts_with("~~~") {
            return true;
        }
        let trimmed = line.trim_start();
        if trimmed.starts_with("- ") || trimmed.starts_with("* ") || trimmed.starts_with("+ ") {
            list_items += 1;
            if list_items >= 2 {
                return true;
            }
        }
        if has_link(line) {
            return true;
        }
    }
    false
}

/// `[text](target)` somewhere in the line.
fn has_link(line: &str) -> bool {
    let mut rest = line;
    while let Some(open) = rest.find('[') {
        rest = &rest[open + 1..];
        if let Some(close) = rest.find("](") {
            let label = &rest[..close];
            let after = &rest[close + 2..];
            if !label.is_empty() && !label.contains('[') && after.contains(')') {
                return true;
            }
        }
    }
    false
}

/// Normalise line endings to `\n`, drop trailing whitespace and surplus blank lines, and
/// remove characters that are never text (NUL and other C0 controls except tab/newline).
pub fn normalize(text: &str) -> String {
    let text = text.replace("\r\n", "\n").replace('\r', "\n");
    let mut out = String::with_capacity(text.len());
    let mut blank_run = 0;
    for line in text.split('\n') {
        let line: String = line
            .chars()
            .filter(|&c| c == '\t' || !c.is_control())
            .collect();
        let line = line.trim_end();
        if line.is_empty() {
            blank_run += 1;
            continue;
        }
        if !out.is_empty() {
            out.push_str(if blank_run > 0 { "\n\n" } else { "\n" });
        }
        blank_run = 0;
        out.push_str(line);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utf8_with_and_without_bom() {
        assert_eq!(decode("café".as_bytes()), "café");
        assert_eq!(decode(b"\xef\xbb\xbfcaf\xc3\xa9"), "café");
    }

    #[test]
    fn utf16_with_bom() {
        let mut le = vec![0xff, 0xfe];
        let mut be = vec![0xfe, 0xff];
        for unit in "café ☕".encode_utf16() {
            le.extend_from_slice(&unit.to_le_bytes());
            be.extend_from_slice(&unit.to_be_bytes());
        }
        assert_eq!(decode(&le), "café ☕");
        assert_eq!(decode(&be), "café ☕");
    }

    #[test]
    fn windows_1252_is_detected() {
        let bytes =
            b"Le caf\xe9 est pr\xeat, il co\xfbte un euro \x80 et c'est d\xe9j\xe0 tr\xe8s bien.";
        let text = decode(bytes);
        assert!(text.contains("café"), "{text}");
        assert!(text.contains('€'), "{text}");
    }

    #[test]
    fn undecodable_bytes_are_replaced() {
        let text = decode(b"ok \xff\xfe\xfd ok");
        assert!(text.starts_with("ok ") && text.ends_with(" ok"));
    }

    #[test]
    fn markdown_or_text() {
        assert!(looks_like_markdown("# Title\n\nbody"));
        assert!(looks_like_markdown("intro\n- one\n- two\n"));
        assert!(looks_like_markdown("see [the docs](https://example.com)"));
        assert!(looks_like_markdown("```rust\nfn main() {}\n```"));
        assert!(!looks_like_markdown(
            "Mozilla Public License\n======\n\n1. Definitions\n--------\n#hashtag\n"
        ));
        assert!(!looks_like_markdown("a - b\n[not a link]"));
    }

    #[test]
    fn normalize_line_endings_and_blanks() {
        assert_eq!(normalize("a  \r\nb\r\n\r\n\r\n\nc\u{0}d\n"), "a\nb\n\ncd");
    }
}
