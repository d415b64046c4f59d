//! Randomized input tests of the extractor's parsers for user files: content sniffing, text
//! decoding and normalising, HTML and DOCX (WordprocessingML and the archive around it).
//! Generated inputs and mutated real ones (the shared corpus, the demo files), thousands per
//! run: none may panic, hang or grow its output out of proportion, and each keeps its
//! promises. The harness (seeds, mutators, the hang watchdog, `ENGRAM_FUZZ_SCALE`) is the
//! main crate's `src/randomized.rs`.

#[allow(dead_code)]
#[path = "../../../src/randomized.rs"]
mod randomized;

use std::io::{Cursor, Read, Write};

use randomized::{check, corpus_file, mutate_bytes, mutate_text, repo_file, Rng};

use crate::error::ExtractError;
use crate::protocol::Emitter;
use crate::sniff::Sniffed;
use crate::{docx, html, sniff, text};

/// Magic numbers and markup worth splicing into any input.
const TOKENS: &[&[u8]] = &[
    b"%PDF-1.7",
    b"\x89PNG\r\n\x1a\n",
    b"\xff\xd8\xff",
    b"PK\x03\x04",
    b"PK\x05\x06",
    b"RIFF\0\0\0\0WEBP",
    b"\xef\xbb\xbf",
    b"\xff\xfe",
    b"\xfe\xff",
    b"\0",
    b"<html>",
    b"<p>",
    b"<script>",
    b"</",
    b"<!--",
    b"&#x110000;",
    b"&amp;",
    b"\r\n",
    b"# ",
    b"```",
];

/// Every error the extractor reports is one short printable line.
fn check_error(error: &ExtractError) {
    let message = error.message();
    assert!(!message.is_empty() || matches!(error, ExtractError::Empty));
    assert!(message.chars().count() <= 281, "{message}");
    assert!(!message.contains(['\n', '\r', '\0']), "{message:?}");
}

/// The start of some bytes, for failure messages.
fn preview(bytes: &[u8]) -> String {
    let head = &bytes[..bytes.len().min(600)];
    format!("{} bytes: {:?}", bytes.len(), String::from_utf8_lossy(head))
}

fn corpus(names: &[&str], limit: usize) -> Vec<Vec<u8>> {
    names
        .iter()
        .map(|name| {
            let mut bytes = corpus_file(name);
            bytes.truncate(limit);
            bytes
        })
        .collect()
}

const ALL_CORPUS: &[&str] = &[
    "01_apache_license.pdf",
    "02_python_license_history.pdf",
    "03_argparse_reference.pdf",
    "04_handbook_mixed.pdf",
    "05_scanned_gpl2.pdf",
    "06_scan_gpl3_p1.png",
    "07_scan_gpl3_p2.png",
    "08_scan_gpl3_p3.png",
    "09_onboarding.docx",
    "10_faq.md",
    "11_notes_mpl2.txt",
];

fn random_bytes(rng: &mut Rng) -> Vec<u8> {
    let len = rng.length(8192);
    match rng.below(4) {
        0 => rng.bytes(len),
        1 => rng.string(len).into_bytes(),
        2 => {
            let mut bytes = rng.pick(TOKENS).to_vec();
            bytes.extend(rng.bytes(len));
            bytes
        }
        _ => (0..len).map(|_| b' ' + rng.below(95) as u8).collect(),
    }
}

#[test]
fn sniffing_is_total_and_consistent() {
    let seeds = corpus(ALL_CORPUS, 64 * 1024);
    check("sniff", 4000, move |rng| {
        let bytes = if rng.percent(50) {
            random_bytes(rng)
        } else {
            let seed = rng.pick(&seeds);
            let donor = rng.pick(&seeds);
            mutate_bytes(rng, seed, donor, TOKENS)
        };
        let sniffed = sniff::sniff(&bytes);
        match &sniffed {
            Err(error) => check_error(error),
            Ok(Sniffed::Text) => assert!(
                bytes.starts_with(b"\xff\xfe")
                    || bytes.starts_with(b"\xfe\xff")
                    || !sniff::is_binary(&bytes),
                "binary data sniffed as text: {}",
                preview(&bytes)
            ),
            Ok(_) => {}
        }
        assert_eq!(
            bytes.is_empty(),
            matches!(sniffed, Err(ExtractError::Empty))
        );
        let head = &bytes[..bytes.len().min(1024)];
        if head.windows(5).any(|w| w == b"%PDF-") {
            assert!(matches!(sniffed, Ok(Sniffed::Pdf)), "{}", preview(&bytes));
        }
        // Bytes decide alone: the same bytes, the same answer.
        assert_eq!(
            format!("{sniffed:?}"),
            format!("{:?}", sniff::sniff(&bytes))
        );
    });
}

#[test]
fn decoding_gives_text_and_keeps_utf8() {
    check("decode", 4000, |rng| {
        let choice = rng.below(5);
        let original = {
            let len = rng.length(4000);
            rng.string(len)
        };
        let (bytes, expected): (Vec<u8>, Option<String>) = match choice {
            0 => {
                let ascii: String = original.chars().filter(char::is_ascii).collect();
                (ascii.clone().into_bytes(), Some(ascii))
            }
            1 if !original.starts_with('\u{feff}') => {
                (original.clone().into_bytes(), Some(original.clone()))
            }
            2 => {
                let mut bytes = b"\xef\xbb\xbf".to_vec();
                bytes.extend(original.as_bytes());
                (bytes, Some(original.clone()))
            }
            3 => {
                let big = rng.percent(50);
                let mut bytes = if big {
                    vec![0xfe, 0xff]
                } else {
                    vec![0xff, 0xfe]
                };
                for unit in original.encode_utf16() {
                    bytes.extend(if big {
                        unit.to_be_bytes()
                    } else {
                        unit.to_le_bytes()
                    });
                }
                (bytes, Some(original.clone()))
            }
            _ => (random_bytes(rng), None),
        };
        let decoded = text::decode(&bytes);
        if let Some(expected) = expected {
            assert_eq!(decoded, expected, "{}", preview(&bytes));
        }
        // Any byte becomes at most one character of at most three bytes (U+FFFD, or a
        // legacy code page's character), and a BOM nothing.
        assert!(decoded.len() <= 3 * bytes.len(), "{}", preview(&bytes));
    });
}

#[test]
fn normalising_keeps_the_text_and_drops_only_layout() {
    check("normalize", 4000, |rng| {
        let len = rng.length(3000);
        let input = if rng.percent(20) {
            text::decode(&random_bytes(rng))
        } else {
            rng.string(len)
        };
        let out = text::normalize(&input);
        assert!(!out.contains('\r') && !out.contains("\n\n\n"), "{out:?}");
        assert!(
            out.chars()
                .all(|c| c == '\t' || c == '\n' || !c.is_control()),
            "{out:?}"
        );
        assert!(out.split('\n').all(|line| line == line.trim_end()));
        assert!(!out.starts_with('\n') && !out.ends_with('\n'));
        // The words are all there, in order: only whitespace and control characters go.
        let kept = |s: &str| -> String {
            s.chars()
                .filter(|c| !c.is_whitespace() && !c.is_control())
                .collect()
        };
        assert_eq!(kept(&out), kept(&input));
        assert_eq!(
            text::normalize(&out),
            out,
            "normalising twice changes nothing"
        );
        let _ = text::looks_like_markdown(&input);
    });
}

/// A real-looking page: head, styles, scripts, comments, headings, lists, a table, entities.
const HTML_SEED: &str = r#"<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>Team handbook</title>
<style>body { font: 12px sans-serif } p > a { color: red }</style>
<script>var x = "<p>not text</p>"; if (a < b && c > d) {}</script></head>
<body><!-- nav <p>hidden</p> --><header><nav><a href="/">Home</a> | <a href='/faq'>FAQ</a></nav></header>
<main><h1 class="title">Time off &amp; leave</h1>
<p>Vacation is requested in the <b>HR portal</b> at least two weeks ahead.<br>Your lead approves it.</p>
<ul><li>Sick days: tell your lead before 10:00.</li><li>Doctor&rsquo;s note from day four &mdash; always.</li></ul>
<h2>Expenses</h2><table><tr><th>What</th><th>Limit</th></tr><tr><td>Travel</td><td>1,500&nbsp;&euro;</td></tr></table>
<pre>  code   keeps
   its spacing</pre><p>a &lt; b &gt; c &#x41;&#66; &#0; &#1114112; &bogus; &amp</p>
<svg><text>no</text></svg><noscript>no</noscript><template><p>no</p></template>
</main></body></html>"#;

const TAGS: &[&str] = &[
    "p",
    "div",
    "span",
    "b",
    "h1",
    "h3",
    "h6",
    "li",
    "ul",
    "ol",
    "table",
    "tr",
    "td",
    "th",
    "br",
    "pre",
    "blockquote",
    "a",
    "section",
    "title",
];

/// Random HTML from known elements around words, and the words that must come out.
fn html_tree(rng: &mut Rng, depth: usize, words: &mut Vec<String>, out: &mut String) {
    for _ in 0..rng.range(1, 4) {
        match rng.below(6) {
            0 | 1 if depth < 12 => {
                let tag = rng.pick(TAGS);
                let attrs = rng.pick(&["", " class=\"x\"", " data-x='a>b'", " id=y"]);
                out.push_str(&format!("<{tag}{attrs}>"));
                html_tree(rng, depth + 1, words, out);
                if rng.percent(80) {
                    out.push_str(&format!("</{tag}>"));
                }
            }
            2 => out.push_str(rng.choose(&[
                "<!-- c -->",
                "<script>if (a<b) {}</script>",
                "<style>p{}</style>",
                " &amp; ",
                "\n",
                "&nbsp;",
            ])),
            _ => {
                let word = format!("w{}", rng.below(1_000_000));
                out.push_str(&word);
                out.push(' ');
                words.push(word);
            }
        }
    }
}

/// HTML's text grows at most by the Markdown markers that replace tags: `<h6>` (4 bytes)
/// becomes a blank line and `###### ` (9), `<td>` a ` | ` (3), an entity at most its own
/// length. Three times the input plus a little is generous for all of them.
fn check_html_output(html_text: &str) -> String {
    let out = html::to_text(html_text);
    assert!(
        out.len() <= 3 * html_text.len() + 64,
        "{} bytes of text from {} bytes of HTML",
        out.len(),
        html_text.len()
    );
    let _ = html::looks_like_html(html_text);
    out
}

#[test]
fn html_keeps_every_word_of_generated_pages() {
    check("html generated", 2000, |rng| {
        let (mut words, mut page) = (Vec::new(), String::new());
        html_tree(rng, 0, &mut words, &mut page);
        let out = check_html_output(&page);
        let present: std::collections::HashSet<&str> =
            out.split(|c: char| !c.is_alphanumeric()).collect();
        for word in &words {
            assert!(
                present.contains(word.as_str()),
                "{word} lost from {page:?}: {out:?}"
            );
        }
    });
}

#[test]
fn html_without_markup_is_its_words() {
    check("html plain", 2000, |rng| {
        let len = rng.length(2000);
        let plain: String = rng
            .string(len)
            .chars()
            .filter(|&c| c != '<' && c != '&')
            .collect();
        let out = check_html_output(&plain);
        // Whitespace collapses to single spaces (a no-break space stays one), nothing else
        // changes.
        assert!(
            out.chars().all(|c| c == ' ' || !c.is_whitespace()) && !out.ends_with(' '),
            "{out:?}"
        );
        let words = |s: &str| -> Vec<String> {
            s.split(char::is_whitespace)
                .filter(|w| !w.is_empty())
                .map(str::to_string)
                .collect()
        };
        assert_eq!(words(&out), words(&plain));
    });
}

#[test]
fn html_survives_mutation_truncation_and_depth() {
    let seeds: Vec<String> = vec![
        HTML_SEED.to_string(),
        String::from_utf8_lossy(&repo_file("demo/handbook.md")).into_owned(),
    ];
    check("html mutated", 2500, move |rng| {
        let html_text = match rng.below(4) {
            0 => {
                // Deep nesting, closed or not, with a needle inside.
                let tag = rng.pick(&["div", "b", "td", "li", "pre", "script", "h1", "a href='"]);
                let depth = rng.length(50_000);
                let close = if rng.percent(50) {
                    format!("</{tag}>")
                } else {
                    String::new()
                };
                format!(
                    "{}needle{}",
                    format!("<{tag}>").repeat(depth),
                    close.repeat(depth)
                )
            }
            1 => {
                let unit = rng.pick(&["<", "&", "<!--", "<a '", "&#", "</", "<p", "&#x"]);
                unit.repeat(rng.length(20_000))
            }
            _ => {
                let seed = rng.pick(&seeds);
                let donor = rng.pick(&seeds);
                let tokens = ["<p>", "</p>", "<script>", "<!--", "'", "\"", "&#", "<td>"];
                mutate_text(rng, seed, donor, &tokens)
            }
        };
        check_html_output(&html_text);
        let decoded = html::decode_entities(&html_text);
        assert!(decoded.len() <= html_text.len());
    });
}

/// `word/document.xml` of the corpus DOCX.
fn corpus_document_xml() -> Vec<u8> {
    let bytes = corpus_file("09_onboarding.docx");
    let mut archive = zip::ZipArchive::new(Cursor::new(bytes)).expect("the corpus DOCX");
    let mut xml = Vec::new();
    archive
        .by_name("word/document.xml")
        .expect("its text part")
        .read_to_end(&mut xml)
        .expect("inflates");
    xml
}

const NAMESPACES: &str = r#"xmlns:w="http://schemas.openxmlformats.org/wordprocessingml/2006/main" xmlns:mc="http://schemas.openxmlformats.org/markup-compatibility/2006""#;

/// Random WordprocessingML: paragraphs with styles, runs, tabs, breaks, tables (nested),
/// alternate content; and the words `w:t` elements hold outside fallbacks.
fn wordml(rng: &mut Rng, depth: usize, words: &mut Vec<String>, out: &mut String) {
    for _ in 0..rng.range(1, 5) {
        match rng.below(7) {
            0 if depth < 6 => {
                out.push_str("<w:tbl><w:tr><w:tc>");
                wordml(rng, depth + 1, words, out);
                out.push_str("</w:tc><w:tc>");
                wordml(rng, depth + 1, words, out);
                out.push_str("</w:tc></w:tr></w:tbl>");
            }
            1 => out.push_str(
                "<w:p><w:r><mc:AlternateContent><mc:Choice/><mc:Fallback><w:t>fallback</w:t>\
                 </mc:Fallback></mc:AlternateContent></w:r></w:p>",
            ),
            _ => {
                out.push_str("<w:p>");
                let style = rng.pick(&[
                    "",
                    r#"<w:pPr><w:pStyle w:val="Heading1"/></w:pPr>"#,
                    r#"<w:pPr><w:pStyle w:val="Title"/></w:pPr>"#,
                    r#"<w:pPr><w:pStyle w:val="ListBullet"/></w:pPr>"#,
                    r#"<w:pPr><w:numPr><w:ilvl w:val="0"/></w:numPr></w:pPr>"#,
                ]);
                out.push_str(style);
                for _ in 0..rng.range(0, 4) {
                    let word = format!("w{}", rng.below(1_000_000));
                    out.push_str(&format!(
                        "<w:r><w:t xml:space=\"preserve\">{word} </w:t>{}</w:r>",
                        rng.pick(&["", "<w:tab/>", "<w:br/>", "<w:t>&amp;&lt;|</w:t>"])
                    ));
                    words.push(word);
                }
                out.push_str("</w:p>");
            }
        }
    }
}

/// DOCX text grows at most by the Markdown markers of its blocks; each needs far more XML.
fn check_docx_output(xml: &[u8]) -> Option<String> {
    match docx::document_xml_to_text(xml) {
        Ok(out) => {
            assert!(
                out.len() <= 2 * xml.len() + 64,
                "{} bytes of text from {} bytes of XML",
                out.len(),
                xml.len()
            );
            Some(out)
        }
        Err(error) => {
            assert_eq!(error.kind(), "corrupt", "{}", error.message());
            check_error(&error);
            None
        }
    }
}

#[test]
fn docx_keeps_every_word_of_generated_documents() {
    check("docx generated", 1500, |rng| {
        let (mut words, mut body) = (Vec::new(), String::new());
        wordml(rng, 0, &mut words, &mut body);
        let xml = format!("<w:document {NAMESPACES}><w:body>{body}</w:body></w:document>");
        let out = check_docx_output(xml.as_bytes()).expect("generated XML is valid");
        assert!(!out.contains("fallback"), "{out}");
        for word in &words {
            assert!(out.contains(word.as_str()), "{word} lost: {out:?}");
        }
    });
}

#[test]
fn docx_xml_survives_mutation_truncation_and_depth() {
    let seed = corpus_document_xml();
    check("docx xml mutated", 600, move |rng| {
        let xml = match rng.below(4) {
            0 => {
                let tag = rng.pick(&["w:p", "w:tbl", "w:tc", "mc:Fallback", "w:r", "w:t", "x"]);
                let depth = rng.length(50_000);
                let close = if rng.percent(50) {
                    format!("</{tag}>")
                } else {
                    String::new()
                };
                format!(
                    "<w:document {NAMESPACES}>{}<w:t>needle</w:t>{}",
                    format!("<{tag}>").repeat(depth),
                    close.repeat(depth)
                )
                .into_bytes()
            }
            1 => {
                let cut = rng.below(seed.len());
                seed[..cut].to_vec()
            }
            _ => {
                let tokens: &[&[u8]] = &[
                    b"<w:p>",
                    b"</w:p>",
                    b"<w:tbl>",
                    b"</w:tc>",
                    b"<mc:Fallback>",
                    b"&amp;",
                    b"&#0;",
                    b"<![CDATA[",
                    b"]]>",
                    b"<?xml",
                    b"<!DOCTYPE x [<!ENTITY a 'b'>]>",
                    b"&a;",
                    b"\"",
                    b"\0",
                ];
                mutate_bytes(rng, &seed, &seed, tokens)
            }
        };
        check_docx_output(&xml);
    });
}

/// A DOCX archive holding `xml` as its text part.
fn docx_archive(xml: &[u8], deflate: bool) -> Vec<u8> {
    let mut bytes = Vec::new();
    let mut zip = zip::ZipWriter::new(Cursor::new(&mut bytes));
    let method = if deflate {
        zip::CompressionMethod::Deflated
    } else {
        zip::CompressionMethod::Stored
    };
    let options = zip::write::SimpleFileOptions::default().compression_method(method);
    zip.start_file("[Content_Types].xml", options)
        .expect("entry");
    zip.write_all(b"<Types/>").expect("write");
    zip.start_file("word/document.xml", options).expect("entry");
    zip.write_all(xml).expect("write");
    zip.finish().expect("finish");
    bytes
}

#[test]
fn docx_archives_survive_mutation() {
    let original = corpus_file("09_onboarding.docx");
    let xml = corpus_document_xml();
    check("docx archive mutated", 300, move |rng| {
        let bytes = if rng.percent(50) {
            mutate_bytes(rng, &original, &original, TOKENS)
        } else {
            let mutated = mutate_bytes(rng, &xml, &xml, &[b"<w:p>", b"</w:t>"]);
            let archive = docx_archive(&mutated, rng.percent(50));
            if rng.percent(50) {
                archive
            } else {
                // Damage the archive around an intact part: its headers, sizes, directory.
                mutate_bytes(rng, &archive, &[], &[b"PK\x01\x02", b"\xff\xff\xff\xff"])
            }
        };
        if let Err(error) = crate::office(&bytes, 2000, &mut Emitter::new(Vec::new())) {
            check_error(&error);
        }
    });
}

#[test]
fn whole_text_files_through_sniff_decode_and_convert() {
    let seeds: Vec<Vec<u8>> = vec![
        repo_file("demo/handbook.md"),
        repo_file("demo/release-notes.txt"),
        corpus_file("10_faq.md"),
        corpus_file("11_notes_mpl2.txt"),
        HTML_SEED.as_bytes().to_vec(),
    ];
    check("text files mutated", 1200, move |rng| {
        let seed = rng.pick(&seeds);
        let donor = rng.pick(&seeds);
        let bytes = mutate_bytes(rng, seed, donor, TOKENS);
        // What `run` does with a text file, short of writing the protocol.
        match sniff::sniff(&bytes) {
            Ok(Sniffed::Text) => {
                let decoded = text::decode(&bytes);
                let out = if html::looks_like_html(&decoded) {
                    check_html_output(&decoded)
                } else {
                    let _ = text::looks_like_markdown(&decoded);
                    text::normalize(&decoded)
                };
                assert!(out.len() <= 9 * bytes.len() + 64, "{}", preview(&bytes));
            }
            Ok(_) => {}
            Err(error) => check_error(&error),
        }
    });
}
