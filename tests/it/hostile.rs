//! Builders for hostile and broken files, made on the fly so none is committed.

use std::io::Write as _;
use std::path::{Path, PathBuf};

/// The shared corpus beside the repository (CI lays `shared/` next to the clone).
pub fn corpus() -> PathBuf {
    crate::support::crate_dir().join("../shared/corpus")
}

/// A DOCX whose document.xml inflates to 256 MiB (4× the extractor's limit; 2 GiB behaves the
/// same but takes a minute to build in a debug test).
pub fn docx_zip_bomb(dir: &Path) -> PathBuf {
    let path = dir.join("bomb.docx");
    let file = std::fs::File::create(&path).unwrap();
    let mut zip = zip::ZipWriter::new(file);
    let options = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated)
        .large_file(true);
    zip.start_file("[Content_Types].xml", options).unwrap();
    zip.write_all(b"<?xml version=\"1.0\"?><Types/>").unwrap();
    zip.start_file("word/document.xml", options).unwrap();
    let zeros = vec![b'a'; 1 << 20];
    for _ in 0..256 {
        zip.write_all(&zeros).unwrap();
    }
    zip.finish().unwrap();
    path
}

pub fn truncated_pdf(dir: &Path) -> PathBuf {
    let bytes = std::fs::read(corpus().join("files/01_apache_license.pdf")).unwrap();
    let path = dir.join("truncated.pdf");
    std::fs::write(&path, &bytes[..bytes.len() / 2]).unwrap();
    path
}

/// A small PDF with correct offsets whose page tree claims `count` pages.
fn pdf_with(objects: &[String]) -> Vec<u8> {
    let mut out = b"%PDF-1.4\n".to_vec();
    let mut offsets = Vec::new();
    for (n, body) in objects.iter().enumerate() {
        offsets.push(out.len());
        out.extend_from_slice(format!("{} 0 obj\n{body}\nendobj\n", n + 1).as_bytes());
    }
    let xref = out.len();
    out.extend_from_slice(
        format!("xref\n0 {}\n0000000000 65535 f \n", objects.len() + 1).as_bytes(),
    );
    for offset in offsets {
        out.extend_from_slice(format!("{offset:010} 00000 n \n").as_bytes());
    }
    out.extend_from_slice(
        format!(
            "trailer\n<< /Size {} /Root 1 0 R >>\nstartxref\n{xref}\n%%EOF\n",
            objects.len() + 1
        )
        .as_bytes(),
    );
    out
}

pub fn pdf_declaring_pages(dir: &Path, count: u32) -> PathBuf {
    let path = dir.join("many-pages.pdf");
    let bytes = pdf_with(&[
        "<< /Type /Catalog /Pages 2 0 R >>".into(),
        format!("<< /Type /Pages /Kids [3 0 R] /Count {count} >>"),
        "<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R >>".into(),
        "<< /Length 0 >>\nstream\n\nendstream".into(),
    ]);
    std::fs::write(&path, bytes).unwrap();
    path
}

/// One page whose content stream is empty.
pub fn pdf_with_empty_page(dir: &Path) -> PathBuf {
    let path = dir.join("empty-page.pdf");
    let bytes = pdf_with(&[
        "<< /Type /Catalog /Pages 2 0 R >>".into(),
        "<< /Type /Pages /Kids [3 0 R] /Count 1 >>".into(),
        "<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R >>".into(),
        "<< /Length 0 >>\nstream\n\nendstream".into(),
    ]);
    std::fs::write(&path, bytes).unwrap();
    path
}

fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = 0xffff_ffffu32;
    for &byte in bytes {
        crc ^= u32::from(byte);
        for _ in 0..8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ 0xedb8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

fn png_chunk(kind: &[u8; 4], data: &[u8]) -> Vec<u8> {
    let mut out = (data.len() as u32).to_be_bytes().to_vec();
    let mut body = kind.to_vec();
    body.extend_from_slice(data);
    out.extend_from_slice(&body);
    out.extend_from_slice(&crc32(&body).to_be_bytes());
    out
}

/// A valid PNG header declaring `side`×`side` pixels, with almost no data.
pub fn png_declaring(dir: &Path, side: u32) -> PathBuf {
    let mut ihdr = side.to_be_bytes().to_vec();
    ihdr.extend_from_slice(&side.to_be_bytes());
    ihdr.extend_from_slice(&[8, 0, 0, 0, 0]);
    let mut bytes = b"\x89PNG\r\n\x1a\n".to_vec();
    bytes.extend(png_chunk(b"IHDR", &ihdr));
    bytes.extend(png_chunk(
        b"IDAT",
        &[0x78, 0x9c, 0x03, 0x00, 0x00, 0x00, 0x00, 0x01],
    ));
    bytes.extend(png_chunk(b"IEND", &[]));
    let path = dir.join("huge.png");
    std::fs::write(&path, bytes).unwrap();
    path
}

pub fn random_bytes_named_pdf(dir: &Path) -> PathBuf {
    let mut state = 0x2545_f491_4f6c_dd1du64;
    let bytes: Vec<u8> = (0..8192)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 24) as u8
        })
        .collect();
    let path = dir.join("random.pdf");
    std::fs::write(&path, bytes).unwrap();
    path
}

pub fn empty_file(dir: &Path) -> PathBuf {
    let path = dir.join("empty.pdf");
    std::fs::write(&path, b"").unwrap();
    path
}

pub fn deeply_nested_html(dir: &Path) -> PathBuf {
    let depth = 100_000;
    let mut html = String::from("<!DOCTYPE html><html><body>");
    html.push_str(&"<div>".repeat(depth));
    html.push_str("The vacation policy allows twenty days of paid leave.");
    html.push_str(&"</div>".repeat(depth));
    html.push_str("</body></html>");
    let path = dir.join("nested.html");
    std::fs::write(&path, html).unwrap();
    path
}
