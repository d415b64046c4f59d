//! Randomized input tests of the extractor's parsers for user files: content sniffing, text
//! decoding and normalising, HTML, and Office packages — DOCX, XLSX, PPTX and ODS (their XML
//! and the archive around it).
//! Generated inputs and mutated real ones (the shared corpus, the demo files), thousands per
//! run: none may panic, hang or grow its output out of proportion, and each keeps its
//! promises. The harness (seeds, mutators, the hang watchdog, `ENGRAM_FUZZ_SCALE`) is the
//! main crate's `src/randomized.rs`.

#[allow(dead_code)]
#[path = "../../../src/randomized.rs"]
mod randomized;

#[path = "../tests/common/office.rs"]
mod office;

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

/// The text lines an Office file yields through the extractor's whole path (package, kind,
/// parser, budget, protocol), or its error, checked to be well formed.
fn office_run(bytes: &[u8]) -> Result<String, ExtractError> {
    let mut out = Emitter::new(Vec::new());
    let result = crate::office(bytes, 2000, &mut out);
    if let Err(error) = &result {
        check_error(error);
    }
    let chars = out.chars();
    assert!(
        chars <= crate::package::MAX_TEXT_BYTES as u64,
        "{chars} characters of text"
    );
    result.map(|()| {
        let lines = String::from_utf8(out.into_inner()).expect("the protocol is UTF-8");
        lines
            .lines()
            .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
            .filter_map(|line| line["text"].as_str().map(str::to_owned))
            .collect::<Vec<_>>()
            .join("\n")
    })
}

/// A random cell at `reference`, and the word it must show (formulas show their value).
fn random_cell(rng: &mut Rng, reference: &str, shared: &mut Vec<String>) -> (String, String) {
    let word = format!("w{}", rng.below(1_000_000));
    match rng.below(6) {
        0 => {
            shared.push(format!(
                "<si><r><t>{word}</t></r><rPh><t>PHONETIC</t></rPh></si>"
            ));
            let index = shared.len() - 1;
            (
                format!(r#"<c r="{reference}" t="s"><v>{index}</v></c>"#),
                word,
            )
        }
        1 => (
            format!(r#"<c r="{reference}" t="inlineStr"><is><t>{word}</t></is></c>"#),
            word,
        ),
        2 => (
            format!(r#"<c r="{reference}" t="str"><f>CONCATX("{word}")</f><v>{word}</v></c>"#),
            word,
        ),
        3 => {
            let n = rng.below(1_000_000).to_string();
            (
                format!(r#"<c r="{reference}"><f>SUMX(A1:A9)</f><v>{n}</v></c>"#),
                n,
            )
        }
        4 => {
            let n = rng.below(1_000_000).to_string();
            (format!(r#"<c r="{reference}" s="0"><v>{n}</v></c>"#), n)
        }
        _ => (
            format!(r#"<c r="{reference}" t="b"><v>1</v></c>"#),
            "TRUE".to_owned(),
        ),
    }
}

fn column_name(mut column: usize) -> String {
    let mut name = Vec::new();
    while column > 0 {
        name.push(b'A' + ((column - 1) % 26) as u8);
        column = (column - 1) / 26;
    }
    name.reverse();
    String::from_utf8(name).expect("ASCII")
}

/// A random workbook: sheets of sparse rows (the first row of each led by a number, so no
/// row is taken for a header), with empty rows and cells between; and the words shown.
fn random_workbook(rng: &mut Rng) -> (Vec<u8>, Vec<String>) {
    let mut shared = Vec::new();
    let mut words = Vec::new();
    let mut parts = Vec::new();
    let sheets = rng.range(1, 4);
    for sheet in 0..sheets {
        let mut data = String::new();
        let mut row = 0;
        for _ in 0..rng.range(0, 12) {
            row += rng.range(1, 2000);
            data.push_str(&format!(r#"<row r="{row}">"#));
            let mut column = 0;
            for i in 0..rng.range(0, 6) {
                column += rng.range(1, 40);
                let reference = format!("{}{row}", column_name(column));
                if i == 0 && words.is_empty() {
                    data.push_str(&format!(r#"<c r="{reference}"><v>7</v></c>"#));
                    words.push("7".to_owned());
                    continue;
                }
                if rng.percent(15) {
                    data.push_str(&format!(r#"<c r="{reference}" s="0"/>"#));
                    continue;
                }
                let (cell, word) = random_cell(rng, &reference, &mut shared);
                data.push_str(&cell);
                words.push(word);
            }
            data.push_str("</row>");
            if rng.percent(20) {
                data.push_str(&format!(r#"<row r="{}"/>"#, row + 1));
                row += 1;
            }
        }
        let dimension = if rng.percent(50) {
            r#"<dimension ref="A1:XFD1048576"/>"#
        } else {
            ""
        };
        parts.push(office::worksheet_with(sheet, dimension, &data));
    }
    let names: Vec<String> = (0..sheets).map(|i| format!("Sheet{i}")).collect();
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    (office::workbook(&names, parts, &shared.concat()), words)
}

#[test]
fn xlsx_keeps_every_value_of_generated_workbooks_and_no_formula() {
    check("xlsx generated", 300, |rng| {
        let (bytes, words) = random_workbook(rng);
        match office_run(&bytes) {
            Ok(text) => {
                for word in &words {
                    assert!(
                        text.split(|c: char| !c.is_alphanumeric())
                            .any(|w| w == word),
                        "{word} lost: {text:?}"
                    );
                }
                for hidden in ["SUMX", "CONCATX", "PHONETIC"] {
                    assert!(!text.contains(hidden), "{hidden} shown: {text:?}");
                }
            }
            Err(error) => {
                assert!(words.is_empty(), "{}", error.message());
                assert_eq!(error.kind(), "no_text");
            }
        }
    });
}

#[test]
fn xlsx_headers_label_every_cell_below_them() {
    check("xlsx headers", 300, |rng| {
        let columns = rng.range(2, 6);
        let labels: Vec<String> = (0..columns)
            .map(|i| format!("Head{i}x{}", rng.below(999)))
            .collect();
        let mut data = String::from(r#"<row r="1">"#);
        for (i, label) in labels.iter().enumerate() {
            data.push_str(&format!(
                r#"<c r="{}1" t="inlineStr"><is><t>{label}</t></is></c>"#,
                column_name(i + 1)
            ));
        }
        data.push_str("</row>");
        let mut expected = Vec::new();
        for row in 2..rng.range(3, 30) {
            data.push_str(&format!(r#"<row r="{row}">"#));
            for (i, label) in labels.iter().enumerate() {
                if rng.percent(70) {
                    let value = format!("v{}", rng.below(1_000_000));
                    data.push_str(&format!(
                        r#"<c r="{}{row}" t="inlineStr"><is><t>{value}</t></is></c>"#,
                        column_name(i + 1)
                    ));
                    expected.push(format!("{label}: {value}"));
                }
            }
            data.push_str("</row>");
        }
        let bytes = office::workbook(&["H"], vec![office::worksheet(0, &data)], "");
        let text = office_run(&bytes).expect("a sheet with a header row has text");
        for pair in &expected {
            assert!(text.contains(pair.as_str()), "{pair} missing: {text:?}");
        }
    });
}

/// A random deck: titles, bodies, text boxes, footers and slide numbers (never shown),
/// tables, groups, pictures and notes; and the words that must be shown.
fn random_deck(rng: &mut Rng) -> (Vec<u8>, Vec<String>) {
    let mut words = Vec::new();
    let mut slides = Vec::new();
    for _ in 0..rng.range(1, 5) {
        let mut shapes = String::new();
        for _ in 0..rng.range(0, 6) {
            let word = format!("w{}", rng.below(1_000_000));
            match rng.below(7) {
                0 => {
                    shapes.push_str(&office::shape("title", &[&word]));
                    words.push(word);
                }
                1 | 2 => {
                    let other = format!("w{}", rng.below(1_000_000));
                    shapes.push_str(&office::shape(rng.choose(&["body", ""]), &[&word, &other]));
                    words.push(word);
                    words.push(other);
                }
                3 => shapes.push_str(&office::shape(
                    rng.choose(&["ftr", "sldNum", "dt"]),
                    &["HIDDENX"],
                )),
                4 => {
                    shapes.push_str(&format!(
                        "<p:graphicFrame><a:graphic><a:graphicData><a:tbl><a:tr><a:tc><a:txBody><a:p><a:r><a:t>{word}</a:t></a:r></a:p></a:txBody></a:tc><a:tc/></a:tr></a:tbl></a:graphicData></a:graphic></p:graphicFrame>"
                    ));
                    words.push(word);
                }
                5 => {
                    shapes.push_str(&format!(
                        "<p:grpSp><p:nvGrpSpPr/>{}{}</p:grpSp>",
                        office::picture(),
                        office::shape("", &[&word])
                    ));
                    words.push(word);
                }
                _ => shapes.push_str(&office::picture()),
            }
        }
        let notes = if rng.percent(40) {
            let word = format!("n{}", rng.below(1_000_000));
            words.push(word.clone());
            Some(word)
        } else {
            None
        };
        slides.push((shapes, notes));
    }
    let slides: Vec<(String, Option<&str>)> = slides
        .iter()
        .map(|(shapes, notes)| (shapes.clone(), notes.as_deref()))
        .collect();
    (office::pptx(&slides), words)
}

#[test]
fn pptx_keeps_every_word_of_generated_decks_and_no_footer() {
    check("pptx generated", 300, |rng| {
        let (bytes, words) = random_deck(rng);
        match office_run(&bytes) {
            Ok(text) => {
                for word in &words {
                    assert!(text.contains(word.as_str()), "{word} lost: {text:?}");
                }
                assert!(!text.contains("HIDDENX"), "{text:?}");
                assert!(!text.contains("Click to edit"), "layouts are not slides");
            }
            Err(error) => {
                assert!(words.is_empty(), "{}", error.message());
                assert_eq!(error.kind(), "no_text");
            }
        }
    });
}

/// The entries of a ZIP, for mutating its parts.
fn entries_of(bytes: &[u8]) -> Vec<(String, Vec<u8>)> {
    let mut archive = zip::ZipArchive::new(Cursor::new(bytes)).expect("a generated archive");
    (0..archive.len())
        .map(|i| {
            let mut entry = archive.by_index(i).expect("an entry");
            let mut content = Vec::new();
            entry.read_to_end(&mut content).expect("inflates");
            (entry.name().to_owned(), content)
        })
        .collect()
}

const OFFICE_TOKENS: &[&[u8]] = &[
    b"<row>",
    b"</row>",
    b"<c t=\"s\"><v>99999999999</v></c>",
    b"<c r=\"ZZZZZZ1\">",
    b"<v>1e308</v>",
    b"<v>-1</v>",
    b"s=\"4294967295\"",
    b"<si>",
    b"</t>",
    b"<p:sp>",
    b"</p:sp>",
    b"<a:tbl>",
    b"<a:tc>",
    b"r:id=\"rId99\"",
    b"Target=\"../../../x.xml\"",
    b"Target=\"/\"",
    b"table:number-rows-repeated=\"4294967295\"",
    b"table:number-columns-repeated=\"99999\"",
    b"<![CDATA[",
    b"&#0;",
    b"\0",
];

/// A small ODS: one table with a header, values, repeats and a comment.
fn ods_seed() -> Vec<u8> {
    let content = r#"<office:document-content xmlns:office="urn:oasis:names:tc:opendocument:xmlns:office:1.0" xmlns:table="urn:oasis:names:tc:opendocument:xmlns:table:1.0" xmlns:text="urn:oasis:names:tc:opendocument:xmlns:text:1.0"><office:body><office:spreadsheet><table:table table:name="T"><table:table-row><table:table-cell office:value-type="string"><text:p>Item</text:p></table:table-cell><table:table-cell office:value-type="string"><text:p>Due</text:p></table:table-cell></table:table-row><table:table-row table:number-rows-repeated="3"><table:table-cell office:value-type="string"><text:p>Paper<text:s/>A4</text:p><office:annotation><text:p>note</text:p></office:annotation></table:table-cell><table:table-cell office:value-type="date" office:date-value="2024-03-01"><text:p>01/03/24</text:p></table:table-cell></table:table-row><table:table-row table:number-rows-repeated="1048570"><table:table-cell table:number-columns-repeated="1024"/></table:table-row></table:table></office:spreadsheet></office:body></office:document-content>"#;
    office::zip_of(&[
        (
            "mimetype".to_owned(),
            b"application/vnd.oasis.opendocument.spreadsheet".to_vec(),
        ),
        ("content.xml".to_owned(), content.as_bytes().to_vec()),
    ])
}

#[test]
fn office_packages_survive_mutation() {
    check("office mutated", 400, |rng| {
        let seed = match rng.below(3) {
            0 => random_workbook(rng).0,
            1 => random_deck(rng).0,
            _ => ods_seed(),
        };
        let bytes = if rng.percent(30) {
            // Damage the archive itself: headers, sizes, directory.
            mutate_bytes(
                rng,
                &seed,
                &[],
                &[b"PK\x01\x02", b"\xff\xff\xff\xff", b"PK\x03\x04"],
            )
        } else {
            // Damage one part and zip it again.
            let mut entries = entries_of(&seed);
            let at = rng.below(entries.len());
            let donor = entries[rng.below(entries.len())].1.clone();
            entries[at].1 = mutate_bytes(rng, &entries[at].1, &donor, OFFICE_TOKENS);
            if rng.percent(10) {
                let other = rng.below(entries.len());
                entries.swap(at, other);
            }
            office::zip_of(&entries)
        };
        let _ = office_run(&bytes);
    });
}
