//! Content sniffing: what a file is, decided from its bytes (magic numbers), never its name.

use crate::error::ExtractError;

/// Raster formats we decode and OCR.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImageFormat {
    Png,
    Jpeg,
    Tiff,
    Webp,
    Gif,
}

impl ImageFormat {
    /// The protocol `kind` of a document in this format.
    pub fn kind(self) -> &'static str {
        match self {
            ImageFormat::Png => "png",
            ImageFormat::Jpeg => "jpeg",
            ImageFormat::Tiff => "tiff",
            ImageFormat::Webp => "webp",
            ImageFormat::Gif => "gif",
        }
    }

    /// The `image` crate's name for it.
    pub fn to_image_crate(self) -> image::ImageFormat {
        match self {
            ImageFormat::Png => image::ImageFormat::Png,
            ImageFormat::Jpeg => image::ImageFormat::Jpeg,
            ImageFormat::Tiff => image::ImageFormat::Tiff,
            ImageFormat::Webp => image::ImageFormat::WebP,
            ImageFormat::Gif => image::ImageFormat::Gif,
        }
    }
}

/// What the bytes look like. Text is refined (HTML / Markdown / plain) after decoding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sniffed {
    Pdf,
    Image(ImageFormat),
    /// A ZIP archive; a DOCX if it holds `word/document.xml`.
    Zip,
    /// Decodable text (HTML, Markdown or plain).
    Text,
}

/// Binary formats we recognise only to name them in the refusal.
const KNOWN_BINARY: &[(&[u8], &str)] = &[
    (b"\x1f\x8b", "gzip archive"),
    (b"7z\xbc\xaf\x27\x1c", "7-Zip archive"),
    (b"Rar!\x1a\x07", "RAR archive"),
    (b"BZh", "bzip2 archive"),
    (b"\xfd7zXZ\x00", "xz archive"),
    (b"\x7fELF", "ELF executable"),
    (b"MZ", "Windows executable"),
    (b"BM", "BMP image"),
    (b"\x00\x00\x01\x00", "Windows icon"),
    (b"OggS", "Ogg media"),
    (b"ID3", "MP3 audio"),
    (b"fLaC", "FLAC audio"),
    (b"\x1a\x45\xdf\xa3", "Matroska/WebM video"),
    (b"SQLite format 3\x00", "SQLite database"),
];

/// An OLE compound file: legacy Office documents, and password-protected new ones.
const OLE_MAGIC: &[u8] = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1";

/// What an OLE compound file holds, told by the stream names in its directory (stored as
/// UTF-16LE), and what to do about it.
fn legacy_office(bytes: &[u8]) -> &'static str {
    let has = |name: &str| {
        let utf16: Vec<u8> = name.encode_utf16().flat_map(u16::to_le_bytes).collect();
        find(bytes, &utf16).is_some()
    };
    if has("EncryptedPackage") {
        "password-protected Office document; remove the password and send it again"
    } else if has("WordDocument") {
        "old binary Word format (.doc); save it as .docx and send it again"
    } else if has("Workbook") || has("Book\0") {
        "old binary Excel format (.xls); save it as .xlsx and send it again"
    } else if has("PowerPoint Document") {
        "old binary PowerPoint format (.ppt); save it as .pptx and send it again"
    } else {
        "legacy Microsoft Office or other OLE document; save it as .docx, .xlsx, .pptx or PDF \
         and send it again"
    }
}

/// How far into the file `%PDF-` may start (Acrobat tolerates leading junk up to 1 KiB).
const PDF_HEADER_WINDOW: usize = 1024;

/// Decide what `bytes` is. Refuses empty input and binary data we do not handle.
pub fn sniff(bytes: &[u8]) -> Result<Sniffed, ExtractError> {
    if bytes.is_empty() {
        return Err(ExtractError::Empty);
    }
    let head = &bytes[..bytes.len().min(PDF_HEADER_WINDOW)];
    if find(head, b"%PDF-").is_some() {
        return Ok(Sniffed::Pdf);
    }
    if let Some(format) = image_format(bytes) {
        return Ok(Sniffed::Image(format));
    }
    if bytes.starts_with(b"PK\x03\x04") || bytes.starts_with(b"PK\x05\x06") {
        return Ok(Sniffed::Zip);
    }
    if bytes.starts_with(b"RIFF") && bytes.len() >= 12 {
        return Err(ExtractError::Unsupported(format!(
            "RIFF container ({})",
            printable_tag(&bytes[8..12])
        )));
    }
    if bytes.len() >= 12 && &bytes[4..8] == b"ftyp" {
        return Err(ExtractError::Unsupported("MP4/QuickTime/HEIF media".into()));
    }
    if bytes.starts_with(OLE_MAGIC) && is_binary(bytes) {
        return Err(ExtractError::Unsupported(legacy_office(bytes).into()));
    }
    let has_utf16_bom = bytes.starts_with(b"\xff\xfe") || bytes.starts_with(b"\xfe\xff");
    if !has_utf16_bom {
        for (magic, name) in KNOWN_BINARY {
            if bytes.starts_with(magic) && is_binary(bytes) {
                return Err(ExtractError::Unsupported((*name).into()));
            }
        }
        if is_binary(bytes) {
            return Err(ExtractError::Unsupported("unknown binary data".into()));
        }
    }
    Ok(Sniffed::Text)
}

fn image_format(bytes: &[u8]) -> Option<ImageFormat> {
    if bytes.starts_with(b"\x89PNG\r\n\x1a\n") {
        Some(ImageFormat::Png)
    } else if bytes.starts_with(b"\xff\xd8\xff") {
        Some(ImageFormat::Jpeg)
    } else if bytes.starts_with(b"II*\x00") || bytes.starts_with(b"MM\x00*") {
        Some(ImageFormat::Tiff)
    } else if bytes.len() >= 12 && bytes.starts_with(b"RIFF") && &bytes[8..12] == b"WEBP" {
        Some(ImageFormat::Webp)
    } else if bytes.starts_with(b"GIF87a") || bytes.starts_with(b"GIF89a") {
        Some(ImageFormat::Gif)
    } else {
        None
    }
}

/// Text files have (almost) no C0 control characters other than tab, newline, carriage
/// return, form feed and escape; binary data has about one in nine. UTF-16 without a BOM
/// counts as binary (every other byte is NUL).
pub fn is_binary(bytes: &[u8]) -> bool {
    let controls = bytes
        .iter()
        .filter(|&&b| matches!(b, 0x00..=0x08 | 0x0e..=0x1a | 0x1c..=0x1f | 0x7f))
        .count();
    // More than 1% control bytes, or any NUL in the first 4 KiB (text never has those).
    controls * 100 > bytes.len() || bytes[..bytes.len().min(4096)].contains(&0)
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

fn printable_tag(tag: &[u8]) -> String {
    tag.iter()
        .map(|&b| {
            if b.is_ascii_alphanumeric() {
                b as char
            } else {
                '?'
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kind_of(bytes: &[u8]) -> Result<Sniffed, String> {
        sniff(bytes).map_err(|e| format!("{}: {}", e.kind(), e.message()))
    }

    #[test]
    fn magic_numbers() {
        assert_eq!(kind_of(b"%PDF-1.4\n...").unwrap(), Sniffed::Pdf);
        assert_eq!(kind_of(b"junk\n%PDF-1.7").unwrap(), Sniffed::Pdf);
        assert_eq!(
            kind_of(b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR").unwrap(),
            Sniffed::Image(ImageFormat::Png)
        );
        assert_eq!(
            kind_of(b"\xff\xd8\xff\xe0\0\x10JFIF").unwrap(),
            Sniffed::Image(ImageFormat::Jpeg)
        );
        assert_eq!(
            kind_of(b"II*\0\x08\0\0\0").unwrap(),
            Sniffed::Image(ImageFormat::Tiff)
        );
        assert_eq!(
            kind_of(b"RIFF\x10\0\0\0WEBPVP8 ").unwrap(),
            Sniffed::Image(ImageFormat::Webp)
        );
        assert_eq!(
            kind_of(b"GIF89a\x01\0\x01\0").unwrap(),
            Sniffed::Image(ImageFormat::Gif)
        );
        assert_eq!(kind_of(b"PK\x03\x04\x14\0").unwrap(), Sniffed::Zip);
    }

    #[test]
    fn text_and_binary() {
        assert_eq!(kind_of(b"# Title\n\nhello").unwrap(), Sniffed::Text);
        assert_eq!(kind_of(b"\xff\xfeh\0i\0").unwrap(), Sniffed::Text);
        assert_eq!(kind_of("caf\u{e9}".as_bytes()).unwrap(), Sniffed::Text);
        assert_eq!(kind_of(b"caf\xe9 au lait").unwrap(), Sniffed::Text);
        let random: Vec<u8> = (0u32..4096)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
            .collect();
        assert_eq!(
            kind_of(&random).unwrap_err(),
            "unsupported: unsupported file type: unknown binary data"
        );
        assert!(kind_of(b"\x7fELF\x02\x01\x01\0\0\0\0\0")
            .unwrap_err()
            .contains("ELF executable"));
        assert_eq!(kind_of(b"").unwrap_err(), "empty: the file is empty");
    }

    /// An OLE compound file whose directory names `stream` (UTF-16LE, as OLE stores it).
    fn ole(stream: &str) -> Vec<u8> {
        let mut bytes = OLE_MAGIC.to_vec();
        bytes.extend_from_slice(&[0u8; 504]);
        bytes.extend(stream.encode_utf16().flat_map(u16::to_le_bytes));
        bytes.extend_from_slice(&[0u8; 64]);
        bytes
    }

    #[test]
    fn legacy_office_files_are_named_with_what_to_do() {
        let refusal = |stream: &str| kind_of(&ole(stream)).unwrap_err();
        assert_eq!(
            refusal("Workbook"),
            "unsupported: unsupported file type: old binary Excel format (.xls); save it as \
             .xlsx and send it again"
        );
        assert!(refusal("Book").contains("(.xls)"));
        assert!(refusal("PowerPoint Document").contains("save it as .pptx"));
        assert!(refusal("WordDocument").contains("save it as .docx"));
        assert!(refusal("EncryptedPackage").contains("password-protected"));
        assert!(refusal("__substg1.0_0037001F").contains("OLE document"));
    }
}
