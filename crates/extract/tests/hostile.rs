//! Hostile and degenerate inputs, generated on the fly: each must end quickly and cleanly
//! (exit status 2 with the right error kind and a readable message), or succeed where that
//! is the right answer (deep HTML, an empty PDF page).

mod common;

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use common::{corpus_dir, extract, office, Run};

/// Everything here must fail fast; the parent's wall-clock timeout is the real backstop.
const QUICK: Duration = Duration::from_secs(20);

fn write(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    let path = dir.join(name);
    fs::write(&path, bytes).unwrap();
    path
}

fn quick(run: Run) -> Run {
    assert!(run.elapsed < QUICK, "took {:?}", run.elapsed);
    run
}

#[test]
fn docx_zip_bomb_is_refused() {
    use zip::write::SimpleFileOptions;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bomb.docx");
    let mut zip = zip::ZipWriter::new(fs::File::create(&path).unwrap());
    let options = SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated)
        .large_file(true);
    zip.start_file("[Content_Types].xml", options).unwrap();
    zip.write_all(b"<Types/>").unwrap();
    zip.start_file("word/document.xml", options).unwrap();
    let zeros = vec![0u8; 1 << 20];
    // 256 MiB of zeros: four times the part limit. (2 GiB works the same way but takes a
    // minute to deflate in a debug build.)
    for _ in 0..256 {
        zip.write_all(&zeros).unwrap();
    }
    zip.finish().unwrap();
    assert!(fs::metadata(&path).unwrap().len() < 1 << 20);

    let message = quick(extract(&path, &[])).expect_error("too_large");
    assert!(message.contains("word/document.xml"), "{message}");
}

#[test]
fn docx_with_a_lying_size_header_is_bounded() {
    use zip::write::SimpleFileOptions;
    let dir = tempfile::tempdir().unwrap();
    let mut bytes = Vec::new();
    {
        let mut zip = zip::ZipWriter::new(std::io::Cursor::new(&mut bytes));
        let options =
            SimpleFileOptions::default().compression_method(zip::CompressionMethod::Deflated);
        zip.start_file("word/document.xml", options).unwrap();
        let zeros = vec![b' '; 1 << 20];
        for _ in 0..100 {
            zip.write_all(&zeros).unwrap(); // 100 MiB, over the 64 MiB part limit
        }
        zip.finish().unwrap();
    }
    // Rewrite the central directory's uncompressed size (offset 24 in the entry) to 1000.
    let cd = bytes
        .windows(4)
        .rposition(|w| w == b"PK\x01\x02")
        .expect("central directory entry");
    bytes[cd + 24..cd + 28].copy_from_slice(&1000u32.to_le_bytes());
    let path = write(dir.path(), "liar.docx", &bytes);
    let run = quick(extract(&path, &[]));
    let kind = run.last()["kind"].as_str().unwrap_or_default().to_owned();
    assert!(
        kind == "too_large" || kind == "corrupt",
        "lying header must be refused, got {:?}",
        run.lines
    );
    run.expect_error(&kind);
}

#[test]
fn plain_zip_is_not_a_docx() {
    use zip::write::SimpleFileOptions;
    let dir = tempfile::tempdir().unwrap();
    let mut bytes = Vec::new();
    {
        let mut zip = zip::ZipWriter::new(std::io::Cursor::new(&mut bytes));
        zip.start_file("notes.txt", SimpleFileOptions::default())
            .unwrap();
        zip.write_all(b"hello").unwrap();
        zip.finish().unwrap();
    }
    let path = write(dir.path(), "archive.docx", &bytes);
    let message = quick(extract(&path, &[])).expect_error("unsupported");
    assert_eq!(
        message,
        "unsupported file type: ZIP archive (not an Office document)"
    );
}

#[test]
fn xlsx_zip_bomb_is_refused() {
    // 64 MiB of one repeated row: within the worksheet limit, but it deflates ~1000x.
    let row = "<row><c><v>0</v></c></row>";
    let data = row.repeat((64 << 20) / row.len());
    let bytes = office::workbook(&["Bomb"], vec![office::worksheet(0, &data)], "");
    assert!(bytes.len() < 1 << 20);
    let dir = tempfile::tempdir().unwrap();
    let path = write(dir.path(), "bomb.xlsx", &bytes);
    let message = quick(extract(&path, &[])).expect_error("too_large");
    assert!(
        message.contains("zip bomb") && message.contains("xl/worksheets/sheet1.xml"),
        "{message}"
    );
}

#[test]
fn xlsx_whose_headers_lie_about_a_sheet_is_stopped_at_the_declared_size() {
    let row = "<row><c t=\"inlineStr\"><is><t>word</t></is></c></row>";
    let data = row.repeat(100_000);
    let mut bytes = office::workbook(&["Liar"], vec![office::worksheet(0, &data)], "");
    // The worksheet is stored last: its central directory entry is the last one.
    let cd = bytes
        .windows(4)
        .rposition(|w| w == b"PK\x01\x02")
        .expect("central directory entry");
    bytes[cd + 24..cd + 28].copy_from_slice(&1000u32.to_le_bytes());
    let dir = tempfile::tempdir().unwrap();
    let path = write(dir.path(), "liar.xlsx", &bytes);
    let message = quick(extract(&path, &[])).expect_error("corrupt");
    assert_eq!(
        message,
        "the workbook is damaged: xl/worksheets/sheet1.xml is larger than the archive says"
    );
}

#[test]
fn a_million_empty_rows_under_a_whole_grid_dimension_are_fast_and_small() {
    use std::fmt::Write as _;
    let mut data = String::with_capacity(24 << 20);
    // Every tenth row holds formatted cells without values, as spreadsheets leave them.
    for r in 1..=1_000_000 {
        if r % 10 != 0 {
            write!(data, r#"<row r="{r}"/>"#).unwrap();
        } else {
            write!(
                data,
                r#"<row r="{r}" spans="1:3"><c r="A{r}" s="1"/><c r="B{r}"></c></row>"#
            )
            .unwrap();
        }
    }
    data.push_str(
        r#"<row r="1048576"><c r="XFD1048576" t="inlineStr"><is><t>needle at the last cell</t></is></c></row>"#,
    );
    let sheet = office::worksheet_with(0, r#"<dimension ref="A1:XFD1048576"/>"#, &data);
    let bytes = office::workbook(&["Sparse"], vec![sheet], "");
    let dir = tempfile::tempdir().unwrap();
    let path = write(dir.path(), "sparse.xlsx", &bytes);
    let run = quick(extract(&path, &[]));
    run.expect_ok();
    assert_eq!(run.document()["kind"], "xlsx");
    assert_eq!(run.page_text(1), "# Sparse\n\nneedle at the last cell");
}

#[test]
fn a_workbook_of_formulas_yields_their_values() {
    use office::Value::{Formula, Text};
    let bytes = office::xlsx(&[(
        "Totals",
        vec![
            vec![Text("Item"), Text("Amount")],
            vec![Text("Rent"), Formula("SUM(B5:B9)", Some(1200.0))],
            vec![Text("Power"), Formula("B2*0.1", Some(120.5))],
            vec![Text("Label"), Formula("CONCAT(\"a\",\"b\")", None)],
        ],
    )]);
    let dir = tempfile::tempdir().unwrap();
    let path = write(dir.path(), "formulas.xlsx", &bytes);
    let run = quick(extract(&path, &[]));
    run.expect_ok();
    let text = run.page_text(1);
    assert_eq!(
        text,
        "# Totals\n\nColumns: Item; Amount.\n\n- Item: Rent; Amount: 1200.\n- Item: Power; Amount: 120.5.\n- Item: Label."
    );
    assert!(!text.contains("SUM") && !text.contains("CONCAT"), "{text}");
}

#[test]
fn a_deck_of_pictures_has_no_text_and_says_so() {
    let slides: Vec<(String, Option<&str>)> = (0..3)
        .map(|_| (office::picture() + &office::picture(), None))
        .collect();
    let dir = tempfile::tempdir().unwrap();
    let path = write(dir.path(), "photos.pptx", &office::pptx(&slides));
    let run = quick(extract(&path, &[]));
    let message = run.expect_error("no_text");
    assert_eq!(
        message,
        "no text in the presentation: its slides hold only pictures or empty shapes (text \
         inside pictures is not read)"
    );
    let pages = run.pages();
    assert_eq!(pages.len(), 3);
    assert_eq!(
        pages[1]["warning"],
        "slide 2 holds only pictures or charts; text in them is not read"
    );
}

#[test]
fn a_deck_nested_100000_groups_deep_is_linear() {
    let depth = 100_000;
    // Numbered, so the part does not deflate like a zip bomb.
    let open: String = (0..depth)
        .map(|i| format!(r#"<p:grpSp n="{i}">"#))
        .collect();
    let shapes = format!(
        "{open}{}{}",
        office::shape("", &["The needle sentence survives."]),
        "</p:grpSp>".repeat(depth)
    );
    let dir = tempfile::tempdir().unwrap();
    let path = write(
        dir.path(),
        "deep.pptx",
        &office::pptx(&[(shapes, Some("note"))]),
    );
    let run = quick(extract(&path, &[]));
    run.expect_ok();
    assert_eq!(
        run.page_text(1),
        "# Slide 1\n\nThe needle sentence survives.\n\n## Speaker notes\n\nnote"
    );
}

#[test]
fn more_sheets_than_pages_allowed_are_refused() {
    let sheets: Vec<(&str, Vec<Vec<office::Value>>)> = ["A", "B", "C"]
        .iter()
        .map(|name| (*name, vec![vec![office::Value::Number(1.0)]]))
        .collect();
    let dir = tempfile::tempdir().unwrap();
    let path = write(dir.path(), "three.xlsx", &office::xlsx(&sheets));
    let message = quick(extract(&path, &["--max-pages", "2"])).expect_error("too_large");
    assert_eq!(message, "the workbook has 3 sheets; the limit is 2");
}

#[test]
fn legacy_binary_office_files_say_what_to_do() {
    let ole = |stream: &str| {
        let mut bytes = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1".to_vec();
        bytes.resize(1024, 0);
        bytes.extend(stream.encode_utf16().flat_map(u16::to_le_bytes));
        bytes.resize(4096, 0);
        bytes
    };
    let dir = tempfile::tempdir().unwrap();
    for (name, stream, advice) in [
        (
            "old.xls",
            "Workbook",
            "old binary Excel format (.xls); save it as .xlsx",
        ),
        ("old.ppt", "PowerPoint Document", "save it as .pptx"),
        ("old.doc", "WordDocument", "save it as .docx"),
    ] {
        let path = write(dir.path(), name, &ole(stream));
        let message = quick(extract(&path, &[])).expect_error("unsupported");
        assert!(message.contains(advice), "{name}: {message}");
    }
}

#[test]
fn csv_stays_text_line_by_line() {
    let dir = tempfile::tempdir().unwrap();
    let csv = "Item,Amount,Approver\nTaxi,45.50,Dana\nTrain,120,\"Marta, Lyon\"\n";
    let path = write(dir.path(), "claims.csv", csv.as_bytes());
    let run = quick(extract(&path, &[]));
    run.expect_ok();
    assert_eq!(run.document()["kind"], "text");
    assert_eq!(run.page_text(1), csv.trim_end());
}

#[test]
fn truncated_pdf_is_corrupt() {
    let dir = tempfile::tempdir().unwrap();
    let whole = fs::read(corpus_dir().join("files/03_argparse_reference.pdf")).unwrap();
    let path = write(dir.path(), "half.pdf", &whole[..whole.len() / 2]);
    let message = quick(extract(&path, &[])).expect_error("corrupt");
    assert!(message.starts_with("the PDF is damaged: "), "{message}");
}

/// A minimal PDF with correct xref offsets. `pages` is the `/Pages` object's body.
fn minimal_pdf(pages: &str, extra: &[&str]) -> Vec<u8> {
    let mut objects = vec![
        "<< /Type /Catalog /Pages 2 0 R >>".to_owned(),
        pages.to_owned(),
    ];
    objects.extend(extra.iter().map(|s| s.to_string()));
    let mut pdf = b"%PDF-1.4\n".to_vec();
    let mut offsets = Vec::new();
    for (i, body) in objects.iter().enumerate() {
        offsets.push(pdf.len());
        pdf.extend_from_slice(format!("{} 0 obj\n{body}\nendobj\n", i + 1).as_bytes());
    }
    let xref = pdf.len();
    pdf.extend_from_slice(
        format!("xref\n0 {}\n0000000000 65535 f \n", objects.len() + 1).as_bytes(),
    );
    for off in offsets {
        pdf.extend_from_slice(format!("{off:010} 00000 n \n").as_bytes());
    }
    pdf.extend_from_slice(
        format!(
            "trailer\n<< /Size {} /Root 1 0 R >>\nstartxref\n{xref}\n%%EOF\n",
            objects.len() + 1
        )
        .as_bytes(),
    );
    pdf
}

#[test]
fn pdf_declaring_100000_pages_fails_fast() {
    let dir = tempfile::tempdir().unwrap();
    let pdf = minimal_pdf(
        "<< /Type /Pages /Kids [3 0 R] /Count 100000 >>",
        &["<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] >>"],
    );
    let path = write(dir.path(), "many.pdf", &pdf);
    let message = quick(extract(&path, &[])).expect_error("too_many_pages");
    assert_eq!(message, "the PDF declares 100000 pages; the limit is 2000");
}

#[test]
fn pdf_with_an_empty_page_is_clean() {
    let dir = tempfile::tempdir().unwrap();
    let pdf = minimal_pdf(
        "<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        &[
            "<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R >>",
            "<< /Length 0 >>\nstream\n\nendstream",
        ],
    );
    let path = write(dir.path(), "blank.pdf", &pdf);
    let run = quick(extract(&path, &[]));
    // The page is OCR'd, found empty and flagged; with no text anywhere the file is no_text.
    let page = run.pages()[0].clone();
    assert_eq!(page["text"], "");
    assert_eq!(page["ocr"], true);
    assert!(page["warning"].as_str().unwrap().starts_with("page 1: "));
    run.expect_error("no_text");
}

/// A PNG signature plus an IHDR chunk (with a correct CRC) declaring `w`x`h`, and no data.
fn png_header(w: u32, h: u32) -> Vec<u8> {
    let mut chunk = b"IHDR".to_vec();
    chunk.extend_from_slice(&w.to_be_bytes());
    chunk.extend_from_slice(&h.to_be_bytes());
    chunk.extend_from_slice(&[8, 0, 0, 0, 0]); // 8-bit grayscale, no interlace
    let mut png = b"\x89PNG\r\n\x1a\n".to_vec();
    png.extend_from_slice(&13u32.to_be_bytes());
    png.extend_from_slice(&chunk);
    png.extend_from_slice(&crc32fast::hash(&chunk).to_be_bytes());
    png
}

#[test]
fn png_declaring_50000_squared_is_too_large() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(dir.path(), "huge.png", &png_header(50_000, 50_000));
    let run = quick(extract(&path, &[]));
    let message = run.expect_error("too_large");
    assert!(
        message.contains("50000x50000") || message.contains("too large"),
        "{message}"
    );
}

#[test]
fn png_within_limits_but_truncated_is_corrupt() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(dir.path(), "cut.png", &png_header(2000, 2000));
    quick(extract(&path, &[])).expect_error("corrupt");
}

#[test]
fn random_bytes_named_pdf_are_unsupported() {
    let dir = tempfile::tempdir().unwrap();
    let mut state = 0x2545_f491_4f6c_dd1d_u64;
    let bytes: Vec<u8> = (0..64 * 1024)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 24) as u8
        })
        .collect();
    let path = write(dir.path(), "random.pdf", &bytes);
    let message = quick(extract(&path, &[])).expect_error("unsupported");
    assert_eq!(message, "unsupported file type: unknown binary data");
}

#[test]
fn empty_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(dir.path(), "empty.txt", b"");
    let message = quick(extract(&path, &[])).expect_error("empty");
    assert_eq!(message, "the file is empty");
}

#[test]
fn file_over_the_size_limit() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(dir.path(), "big.txt", &vec![b'a'; 2048]);
    let message = quick(extract(&path, &["--max-file-bytes", "1024"])).expect_error("too_large");
    assert_eq!(message, "the file is 2048 bytes; the limit is 1024 bytes");
}

#[test]
fn deeply_nested_html_is_linear() {
    let dir = tempfile::tempdir().unwrap();
    let depth = 100_000;
    let html = format!(
        "<!DOCTYPE html><html><body>{}The needle sentence survives.{}</body></html>",
        "<div>".repeat(depth),
        "</div>".repeat(depth)
    );
    let path = write(dir.path(), "deep.html", html.as_bytes());
    let run = quick(extract(&path, &[]));
    run.expect_ok();
    assert_eq!(run.document()["kind"], "html");
    assert_eq!(run.page_text(1), "The needle sentence survives.");
}

#[test]
fn tiny_memory_limit_ends_without_hanging() {
    // With 64 MiB of address space the OCR engine cannot even load: the process must still
    // end (error line or killed), never hang.
    let path = corpus_dir().join("files/06_scan_gpl3_p1.png");
    let run = quick(extract(&path, &["--memory-bytes", "67108864"]));
    assert_ne!(run.status, Some(0), "{:?}", run.lines);
}

#[test]
fn help_and_bad_arguments() {
    let bin = env!("CARGO_BIN_EXE_engram-extract");
    let help = std::process::Command::new(bin)
        .arg("--help")
        .output()
        .unwrap();
    assert!(help.status.success());
    assert!(String::from_utf8_lossy(&help.stdout).contains("--max-pages"));
    let bad = std::process::Command::new(bin)
        .arg("--nope")
        .output()
        .unwrap();
    assert_eq!(bad.status.code(), Some(64));
}
