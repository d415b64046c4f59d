//! Office packages (the ZIP containers of DOCX, XLSX, PPTX and OpenDocument files): which kind
//! a file is, told from its content types and main part, and zip-bomb-safe, streaming access
//! to its parts — entry count, declared against actual sizes, inflation ratio, and a budget of
//! inflated bytes and of text for the whole file.

use std::borrow::Cow;
use std::io::{self, BufRead, BufReader, Cursor, Read};

use quick_xml::events::{BytesStart, Event};
use quick_xml::Reader;

use crate::error::ExtractError;

/// Archives with more entries than this are refused before their directory is parsed.
const MAX_ENTRIES: u64 = 10_000;
/// Largest part parsed while it is held whole (a DOCX body, a slide, shared strings, styles).
pub const MAX_PART_BYTES: u64 = 64 * 1024 * 1024;
/// Largest worksheet: parsed as it inflates, so it costs time but not memory.
pub const MAX_STREAMED_PART_BYTES: u64 = 256 * 1024 * 1024;
/// All parts of one file together, inflated.
const MAX_INFLATED_BYTES: u64 = 512 * 1024 * 1024;
/// Inflation ratio above which a large part is treated as a zip bomb (real Office XML: ~5–30x).
const MAX_RATIO: u64 = 200;
/// Parts smaller than this are never refused for their ratio.
const RATIO_EXEMPT_BYTES: u64 = 1024 * 1024;
/// Text one file may yield, in bytes: far more than any real workbook or deck holds, and
/// inside what the parent accepts. Shared strings referenced a million times stop here.
pub const MAX_TEXT_BYTES: usize = 32 * 1024 * 1024;

/// What an Office package holds, by its main part.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    /// WordprocessingML; the main part's name.
    Word(String),
    /// SpreadsheetML; the workbook part's name.
    Excel(String),
    /// PresentationML; the presentation part's name.
    PowerPoint(String),
    /// An OpenDocument spreadsheet (`content.xml`).
    OpenDocumentSpreadsheet,
}

impl Kind {
    /// The protocol `kind` of a document of this kind.
    pub fn protocol_kind(&self) -> &'static str {
        match self {
            Kind::Word(_) => "docx",
            Kind::Excel(_) => "xlsx",
            Kind::PowerPoint(_) => "pptx",
            Kind::OpenDocumentSpreadsheet => "ods",
        }
    }

    /// How messages name a file of this kind.
    fn noun(&self) -> &'static str {
        match self {
            Kind::Word(_) => "the DOCX",
            Kind::Excel(_) => "the workbook",
            Kind::PowerPoint(_) => "the presentation",
            Kind::OpenDocumentSpreadsheet => "the spreadsheet",
        }
    }
}

/// One page of an Office document as the extractor emits it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Page {
    pub text: String,
    pub warning: Option<String>,
}

/// How much text a file may still yield; shared by all its pages.
#[derive(Debug)]
pub struct TextBudget {
    left: usize,
    noun: &'static str,
}

impl TextBudget {
    pub fn new(noun: &'static str) -> Self {
        Self::with_limit(noun, MAX_TEXT_BYTES)
    }

    pub fn with_limit(noun: &'static str, limit: usize) -> Self {
        Self { left: limit, noun }
    }

    /// Takes `bytes` from the budget, or refuses the file.
    pub fn take(&mut self, bytes: usize) -> Result<(), ExtractError> {
        match self.left.checked_sub(bytes) {
            Some(left) => {
                self.left = left;
                Ok(())
            }
            None => Err(ExtractError::too_large(format_args!(
                "{} holds more than {} MiB of text; split it into smaller files",
                self.noun,
                MAX_TEXT_BYTES / (1024 * 1024)
            ))),
        }
    }
}

/// An opened Office package: its archive and the bytes inflated from it so far.
pub struct Package<'a> {
    archive: zip::ZipArchive<Cursor<&'a [u8]>>,
    inflated: u64,
    /// What all parts together may inflate to.
    budget: u64,
    noun: &'static str,
}

impl std::fmt::Debug for Package<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Package")
            .field("entries", &self.archive.len())
            .field("inflated", &self.inflated)
            .finish()
    }
}

impl<'a> Package<'a> {
    /// Opens the archive in `bytes` (already sniffed as a ZIP), refusing archives with too
    /// many entries before their directory is parsed.
    pub fn open(bytes: &'a [u8]) -> Result<Self, ExtractError> {
        if let Some(entries) = declared_entry_count(bytes) {
            check_entry_count(entries)?;
        }
        let archive = zip::ZipArchive::new(Cursor::new(bytes)).map_err(|e| {
            ExtractError::corrupt(format_args!("the file is not a valid ZIP archive: {e}"))
        })?;
        check_entry_count(archive.len() as u64)?;
        Ok(Self {
            archive,
            inflated: 0,
            budget: MAX_INFLATED_BYTES,
            noun: "the archive",
        })
    }

    /// Which kind of document the package is, from `_rels/.rels` and `[Content_Types].xml`
    /// (or, without them, from the well-known main parts); a clear refusal for ZIPs that are
    /// not a document engram reads. Later messages name the file by its kind.
    pub fn identify(&mut self) -> Result<Kind, ExtractError> {
        let kind = self.identify_kind()?;
        self.noun = kind.noun();
        Ok(kind)
    }

    fn identify_kind(&mut self) -> Result<Kind, ExtractError> {
        // A broken or oversized `mimetype` only means the package is not OpenDocument.
        if let Ok(Some(mimetype)) = self.read("mimetype", 4096) {
            let mimetype = String::from_utf8_lossy(&mimetype).trim().to_owned();
            if let Some(kind) = opendocument(&mimetype)? {
                return Ok(kind);
            }
        }
        let mut candidates: Vec<String> = Vec::new();
        if self.find("_rels/.rels").is_some() {
            for rel in self.relationships("")? {
                if rel.kind == "officeDocument" && !rel.external {
                    candidates.push(rel.target);
                }
            }
        }
        candidates.extend(
            [
                "word/document.xml",
                "xl/workbook.xml",
                "ppt/presentation.xml",
                "xl/workbook.bin",
            ]
            .map(String::from),
        );
        let Some(main) = candidates
            .into_iter()
            .find_map(|name| self.find(&name).map(|i| self.name_at(i, name)))
        else {
            return Err(ExtractError::Unsupported(
                if self.find("[Content_Types].xml").is_some() {
                    "Office Open XML package that is not a Word, Excel or PowerPoint file"
                } else {
                    "ZIP archive (not an Office document)"
                }
                .into(),
            ));
        };
        let content_type = self.content_type(&main)?.unwrap_or_default();
        let by_type = classify_content_type(&content_type);
        let by_name = match main.split('/').next().unwrap_or_default() {
            "word" => Some(Family::Word),
            "xl" => Some(Family::Excel),
            "ppt" => Some(Family::PowerPoint),
            _ => None,
        };
        match by_type.or(by_name) {
            Some(Family::Word) => Ok(Kind::Word(main)),
            Some(Family::Excel) if main.ends_with(".bin") || content_type.contains("binary") => {
                Err(ExtractError::Unsupported(
                    "binary Excel workbook (.xlsb); save it as .xlsx and send it again".into(),
                ))
            }
            Some(Family::Excel) => Ok(Kind::Excel(main)),
            Some(Family::PowerPoint) => Ok(Kind::PowerPoint(main)),
            None => Err(ExtractError::Unsupported(
                "Office Open XML package that is not a Word, Excel or PowerPoint file".into(),
            )),
        }
    }

    /// The content type `[Content_Types].xml` gives `part`, if any.
    fn content_type(&mut self, part: &str) -> Result<Option<String>, ExtractError> {
        let Some(xml) = self.read("[Content_Types].xml", MAX_PART_BYTES)? else {
            return Ok(None);
        };
        let wanted = format!("/{part}");
        let mut found = None;
        walk(&xml[..], "[Content_Types].xml", self.noun, |event| {
            if let Event::Start(e) | Event::Empty(e) = event {
                if e.local_name().as_ref() == b"Override"
                    && attr(&e, b"PartName").is_some_and(|n| n.eq_ignore_ascii_case(&wanted))
                {
                    found = attr(&e, b"ContentType").map(Cow::into_owned);
                }
            }
            Ok(())
        })?;
        Ok(found)
    }

    /// The index of the entry named `name` (part names are case-insensitive).
    pub fn find(&self, name: &str) -> Option<usize> {
        self.archive.index_for_name(name).or_else(|| {
            self.archive
                .file_names()
                .find(|candidate| candidate.eq_ignore_ascii_case(name))
                .and_then(|candidate| self.archive.index_for_name(candidate))
        })
    }

    fn name_at(&self, index: usize, fallback: String) -> String {
        self.archive
            .name_for_index(index)
            .map(str::to_owned)
            .unwrap_or(fallback)
    }

    /// Opens `name` for streaming, if the package has it. At most `limit` bytes are inflated
    /// from it, and no more than the whole file's budget allows.
    pub fn open_part(
        &mut self,
        name: &str,
        limit: u64,
    ) -> Result<Option<PartReader<'_, 'a>>, ExtractError> {
        let Some(index) = self.find(name) else {
            return Ok(None);
        };
        let noun = self.noun;
        let file = self.archive.by_index(index).map_err(|e| {
            ExtractError::corrupt(format_args!("{noun} is damaged: cannot open {name}: {e}"))
        })?;
        let (declared, compressed) = (file.size(), file.compressed_size());
        let guard = Guard {
            part: name.to_owned(),
            noun,
            declared,
            compressed: compressed.max(1),
            limit,
            read: 0,
            inflated: &mut self.inflated,
            budget: self.budget,
        };
        guard.check_declared()?;
        Ok(Some(BufReader::with_capacity(
            64 * 1024,
            GuardedPart { file, guard },
        )))
    }

    /// Inflates `name` whole (at most `limit` bytes), if the package has it.
    pub fn read(&mut self, name: &str, limit: u64) -> Result<Option<Vec<u8>>, ExtractError> {
        let noun = self.noun;
        let Some(mut part) = self.open_part(name, limit)? else {
            return Ok(None);
        };
        let mut bytes = Vec::new();
        part.read_to_end(&mut bytes)
            .map_err(|e| inflate_error(&e, noun, name))?;
        Ok(Some(bytes))
    }

    /// The relationships of `part` (`""` for the package's own), targets resolved to part
    /// names. A part without a relationships part has none.
    pub fn relationships(&mut self, part: &str) -> Result<Vec<Relationship>, ExtractError> {
        let rels_name = rels_part(part);
        let Some(xml) = self.read(&rels_name, MAX_PART_BYTES)? else {
            return Ok(Vec::new());
        };
        let mut rels = Vec::new();
        walk(&xml[..], &rels_name, self.noun, |event| {
            if let Event::Start(e) | Event::Empty(e) = event {
                if e.local_name().as_ref() == b"Relationship" {
                    let (Some(id), Some(target)) = (attr(&e, b"Id"), attr(&e, b"Target")) else {
                        return Ok(());
                    };
                    let kind = attr(&e, b"Type").unwrap_or_default();
                    let external = attr(&e, b"TargetMode").is_some_and(|m| m == "External");
                    rels.push(Relationship {
                        id: id.into_owned(),
                        kind: kind.rsplit('/').next().unwrap_or_default().to_owned(),
                        target: if external {
                            target.into_owned()
                        } else {
                            resolve(part, &target)
                        },
                        external,
                    });
                }
            }
            Ok(())
        })?;
        Ok(rels)
    }

    /// How messages name this file ("the workbook", …).
    pub fn noun(&self) -> &'static str {
        self.noun
    }
}

/// A part being inflated, read through its guard, buffered for the XML reader.
pub type PartReader<'p, 'a> = BufReader<GuardedPart<'p, 'a>>;

/// An archive entry whose inflation is checked as it happens.
pub struct GuardedPart<'p, 'a> {
    file: zip::read::ZipFile<'p, Cursor<&'a [u8]>>,
    guard: Guard<'p>,
}

impl Read for GuardedPart<'_, '_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        // Never ask for more than one byte past what may still be inflated, so a bomb is
        // stopped within a buffer of its limit.
        let room = self.guard.room().min(buf.len() as u64) as usize;
        let n = self.file.read(&mut buf[..room.max(1)])?;
        self.guard.count(n as u64).map_err(io::Error::other)?;
        Ok(n)
    }
}

/// The checks on one part: its own limit, the file's budget, its declared size and ratio.
struct Guard<'p> {
    part: String,
    noun: &'static str,
    declared: u64,
    compressed: u64,
    limit: u64,
    read: u64,
    inflated: &'p mut u64,
    budget: u64,
}

impl Guard<'_> {
    fn too_big(&self) -> ExtractError {
        ExtractError::too_large(format_args!(
            "{} is too large: {} inflates to more than {} MiB; split it into smaller files",
            self.noun,
            self.part,
            self.limit / (1024 * 1024)
        ))
    }

    fn bomb(&self, size: u64) -> ExtractError {
        ExtractError::too_large(format_args!(
            "{} looks like a zip bomb: {} inflates {}x",
            self.noun,
            self.part,
            size / self.compressed
        ))
    }

    /// Refuses what the headers already say is too much.
    fn check_declared(&self) -> Result<(), ExtractError> {
        if self.declared > self.limit {
            return Err(self.too_big());
        }
        if self.declared > RATIO_EXEMPT_BYTES && self.declared / self.compressed > MAX_RATIO {
            return Err(self.bomb(self.declared));
        }
        if self.inflated.saturating_add(self.declared) > self.budget {
            return Err(self.over_budget());
        }
        Ok(())
    }

    fn over_budget(&self) -> ExtractError {
        ExtractError::too_large(format_args!(
            "{} is too large: its parts inflate to more than {} MiB in all; split it into \
             smaller files",
            self.noun,
            self.budget / (1024 * 1024)
        ))
    }

    /// Bytes that may still be inflated from this part, plus one to notice going over.
    fn room(&self) -> u64 {
        let part = self.limit.min(self.declared).saturating_sub(self.read);
        let file = self.budget.saturating_sub(*self.inflated);
        part.min(file).saturating_add(1)
    }

    /// Counts `n` more inflated bytes; headers may lie, so the actual size is checked too.
    fn count(&mut self, n: u64) -> Result<(), ExtractError> {
        self.read += n;
        *self.inflated += n;
        if self.read > self.limit {
            return Err(self.too_big());
        }
        if self.read > self.declared {
            return Err(ExtractError::corrupt(format_args!(
                "{} is damaged: {} is larger than the archive says",
                self.noun, self.part
            )));
        }
        if self.read > RATIO_EXEMPT_BYTES && self.read / self.compressed > MAX_RATIO {
            return Err(self.bomb(self.read));
        }
        if *self.inflated > self.budget {
            return Err(self.over_budget());
        }
        Ok(())
    }
}

/// The `ExtractError` a guard stopped an inflation with, or a damaged-archive error.
fn inflate_error(error: &io::Error, noun: &str, part: &str) -> ExtractError {
    if let Some(stopped) = error
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<ExtractError>())
    {
        return stopped.clone();
    }
    ExtractError::corrupt(format_args!(
        "{noun} is damaged: cannot inflate {part}: {error}"
    ))
}

/// One relationship of a part.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Relationship {
    pub id: String,
    /// The last segment of the relationship type (`worksheet`, `slide`, `notesSlide`, …).
    pub kind: String,
    /// The target part's name (no leading `/`), or the URL of an external target.
    pub target: String,
    pub external: bool,
}

/// The relationships part of `part`: `xl/_rels/workbook.xml.rels` for `xl/workbook.xml`.
fn rels_part(part: &str) -> String {
    match part.rsplit_once('/') {
        Some((dir, file)) => format!("{dir}/_rels/{file}.rels"),
        None => format!("_rels/{part}.rels"),
    }
}

/// Resolves a relationship target against the part it belongs to: `../media/a.png` from
/// `ppt/slides/slide1.xml` is `ppt/media/a.png`; `/xl/workbook.xml` is absolute.
pub fn resolve(base_part: &str, target: &str) -> String {
    let target = target.split(['#', '?']).next().unwrap_or_default();
    let mut segments: Vec<&str> = Vec::new();
    if !target.starts_with('/') {
        if let Some((dir, _)) = base_part.rsplit_once('/') {
            segments.extend(dir.split('/'));
        }
    }
    for segment in target.split('/') {
        match segment {
            "" | "." => {}
            ".." => {
                segments.pop();
            }
            other => segments.push(other),
        }
    }
    segments.join("/")
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Family {
    Word,
    Excel,
    PowerPoint,
}

fn classify_content_type(content_type: &str) -> Option<Family> {
    let t = content_type.to_ascii_lowercase();
    if t.contains("wordprocessingml") || t.contains("ms-word") {
        Some(Family::Word)
    } else if t.contains("spreadsheetml") || t.contains("ms-excel") {
        Some(Family::Excel)
    } else if t.contains("presentationml") || t.contains("ms-powerpoint") {
        Some(Family::PowerPoint)
    } else {
        None
    }
}

/// An OpenDocument or other `mimetype`-first package: the spreadsheet we read, a clear
/// refusal for the others, `None` when the mimetype says nothing we know.
fn opendocument(mimetype: &str) -> Result<Option<Kind>, ExtractError> {
    let refusal = |what: &str| Err(ExtractError::Unsupported(what.into()));
    match mimetype {
        "application/vnd.oasis.opendocument.spreadsheet"
        | "application/vnd.oasis.opendocument.spreadsheet-template" => {
            Ok(Some(Kind::OpenDocumentSpreadsheet))
        }
        m if m.starts_with("application/vnd.oasis.opendocument.text") => {
            refusal("OpenDocument text (.odt); save it as .docx or PDF and send it again")
        }
        m if m.starts_with("application/vnd.oasis.opendocument.presentation") => {
            refusal("OpenDocument presentation (.odp); save it as .pptx or PDF and send it again")
        }
        m if m.starts_with("application/vnd.oasis.opendocument.") => {
            refusal("OpenDocument file that is not a spreadsheet")
        }
        "application/epub+zip" => refusal("EPUB e-book"),
        _ => Ok(None),
    }
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

/// Streams the XML of `part` through `on`, one event at a time: memory is bounded by the
/// largest single event, never by the part or its nesting depth. Errors name the part.
pub fn walk<R: BufRead>(
    input: R,
    part: &str,
    noun: &str,
    mut on: impl FnMut(Event<'_>) -> Result<(), ExtractError>,
) -> Result<(), ExtractError> {
    let mut reader = Reader::from_reader(input);
    let mut buf = Vec::new();
    loop {
        match reader.read_event_into(&mut buf) {
            Ok(Event::Eof) => return Ok(()),
            Ok(event) => on(event)?,
            Err(quick_xml::Error::Io(error)) => return Err(inflate_error(&error, noun, part)),
            Err(error) => {
                return Err(ExtractError::corrupt(format_args!(
                    "{noun} is damaged: {part} is not valid XML: {error}"
                )))
            }
        }
        buf.clear();
    }
}

/// The value of the attribute whose local name is `name` (any prefix), unescaped.
pub fn attr<'e>(e: &'e BytesStart<'_>, name: &[u8]) -> Option<Cow<'e, str>> {
    e.attributes()
        .flatten()
        .find(|a| a.key.local_name().as_ref() == name)
        .map(|a| match a.unescape_value() {
            Ok(value) => Cow::Owned(value.into_owned()),
            Err(_) => Cow::Owned(String::from_utf8_lossy(&a.value).into_owned()),
        })
}

/// The value of a prefixed attribute with this local name (`r:id`, told from a plain `id`).
pub fn prefixed_attr(e: &BytesStart<'_>, name: &[u8]) -> Option<String> {
    e.attributes()
        .flatten()
        .find(|a| a.key.prefix().is_some() && a.key.local_name().as_ref() == name)
        .map(|a| match a.unescape_value() {
            Ok(value) => value.into_owned(),
            Err(_) => String::from_utf8_lossy(&a.value).into_owned(),
        })
}

/// The text of a text event, unescaped (unknown entities are kept as written).
pub fn text_of(t: &quick_xml::events::BytesText<'_>) -> String {
    match t.unescape() {
        Ok(s) => s.into_owned(),
        Err(_) => String::from_utf8_lossy(t).into_owned(),
    }
}

#[cfg(test)]
pub mod tests {
    use super::*;
    use std::io::Write;

    /// A ZIP archive of `(name, content)` entries, deflated.
    pub fn zip_of(entries: &[(&str, &[u8])]) -> Vec<u8> {
        let mut bytes = Vec::new();
        let mut zip = zip::ZipWriter::new(Cursor::new(&mut bytes));
        let options = zip::write::SimpleFileOptions::default()
            .compression_method(zip::CompressionMethod::Deflated);
        for (name, content) in entries {
            zip.start_file(*name, options).unwrap();
            zip.write_all(content).unwrap();
        }
        zip.finish().unwrap();
        bytes
    }

    fn identify(entries: &[(&str, &[u8])]) -> Result<Kind, String> {
        let bytes = zip_of(entries);
        let mut package = Package::open(&bytes).map_err(|e| e.message())?;
        package.identify().map_err(|e| e.message())
    }

    const ROOT_RELS: &[u8] = br#"<Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships"><Relationship Id="rId1" Type="http://schemas.openxmlformats.org/officeDocument/2006/relationships/officeDocument" Target="/xl/workbook2.xml"/></Relationships>"#;

    #[test]
    fn kinds_are_told_by_their_main_part() {
        assert_eq!(
            identify(&[("word/document.xml", b"<w:document/>")]),
            Ok(Kind::Word("word/document.xml".into()))
        );
        assert_eq!(
            identify(&[("xl/workbook.xml", b"<workbook/>")]),
            Ok(Kind::Excel("xl/workbook.xml".into()))
        );
        assert_eq!(
            identify(&[("ppt/presentation.xml", b"<p:presentation/>")]),
            Ok(Kind::PowerPoint("ppt/presentation.xml".into()))
        );
        // The package relationship names the main part, wherever it is.
        assert_eq!(
            identify(&[
                ("_rels/.rels", ROOT_RELS),
                ("xl/workbook2.xml", b"<workbook/>"),
                ("word/document.xml", b"<w:document/>"),
            ]),
            Ok(Kind::Excel("xl/workbook2.xml".into()))
        );
        // The content type decides over the folder name.
        let types = br#"<Types><Override PartName="/xl/workbook2.xml" ContentType="application/vnd.openxmlformats-officedocument.presentationml.presentation.main+xml"/></Types>"#;
        assert_eq!(
            identify(&[
                ("[Content_Types].xml", types),
                ("_rels/.rels", ROOT_RELS),
                ("xl/workbook2.xml", b"<x/>"),
            ]),
            Ok(Kind::PowerPoint("xl/workbook2.xml".into()))
        );
        assert_eq!(
            identify(&[(
                "mimetype",
                b"application/vnd.oasis.opendocument.spreadsheet"
            )]),
            Ok(Kind::OpenDocumentSpreadsheet)
        );
    }

    #[test]
    fn other_zips_are_refused_by_name() {
        let refused = |entries: &[(&str, &[u8])]| identify(entries).unwrap_err();
        assert_eq!(
            refused(&[("notes.txt", b"hello")]),
            "unsupported file type: ZIP archive (not an Office document)"
        );
        assert!(refused(&[
            ("[Content_Types].xml", b"<Types/>"),
            ("visio/document.xml", b"<x/>")
        ])
        .contains("not a Word, Excel or PowerPoint file"));
        assert!(refused(&[("xl/workbook.bin", b"\0")]).contains(".xlsb"));
        assert!(
            refused(&[("mimetype", b"application/vnd.oasis.opendocument.text")])
                .contains("save it as .docx")
        );
        assert!(refused(&[("mimetype", b"application/epub+zip")]).contains("EPUB"));
    }

    #[test]
    fn targets_resolve_against_their_part() {
        assert_eq!(
            resolve("ppt/slides/slide1.xml", "../notesSlides/notesSlide1.xml"),
            "ppt/notesSlides/notesSlide1.xml"
        );
        assert_eq!(
            resolve("xl/workbook.xml", "worksheets/sheet1.xml"),
            "xl/worksheets/sheet1.xml"
        );
        assert_eq!(resolve("xl/workbook.xml", "/xl/sheet.xml"), "xl/sheet.xml");
        assert_eq!(resolve("", "ppt/presentation.xml"), "ppt/presentation.xml");
        assert_eq!(resolve("a/b.xml", "../../../../c.xml"), "c.xml");
        assert_eq!(
            rels_part("ppt/slides/slide1.xml"),
            "ppt/slides/_rels/slide1.xml.rels"
        );
        assert_eq!(rels_part(""), "_rels/.rels");
    }

    #[test]
    fn part_names_are_case_insensitive() {
        let bytes = zip_of(&[("XL/Workbook.xml", b"<workbook/>")]);
        let mut package = Package::open(&bytes).unwrap();
        assert_eq!(
            package.read("xl/workbook.xml", 1024).unwrap().unwrap(),
            b"<workbook/>"
        );
        assert!(package.read("xl/other.xml", 1024).unwrap().is_none());
    }

    #[test]
    fn parts_over_their_limit_or_the_budget_are_refused() {
        let big = vec![b'a'; 3 << 20];
        let bytes = zip_of(&[("xl/big.xml", &big)]);
        let mut package = Package::open(&bytes).unwrap();
        let error = package.read("xl/big.xml", 1 << 20).unwrap_err();
        assert_eq!(error.kind(), "too_large");
        assert!(
            error.message().contains("xl/big.xml"),
            "{}",
            error.message()
        );
        // 3 MiB of one byte deflates far past the ratio limit.
        let error = package.read("xl/big.xml", 8 << 20).unwrap_err();
        assert!(error.message().contains("zip bomb"), "{}", error.message());
    }

    #[test]
    fn all_parts_together_stay_within_the_budget() {
        // Text that deflates only a few times over: no ratio refusal.
        let part: Vec<u8> = (0u32..(3 << 20) / 8)
            .flat_map(|i| format!("{:07x} ", i.wrapping_mul(2_654_435_761) >> 4).into_bytes())
            .collect();
        let bytes = zip_of(&[("a.xml", &part), ("b.xml", &part)]);
        let mut package = Package::open(&bytes).unwrap();
        package.budget = 5 << 20;
        assert_eq!(package.read("a.xml", 8 << 20).unwrap().unwrap(), part);
        let error = package.read("b.xml", 8 << 20).unwrap_err();
        assert_eq!(error.kind(), "too_large");
        assert!(
            error.message().contains("5 MiB in all"),
            "{}",
            error.message()
        );
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
    fn text_budget_refuses_past_its_limit() {
        let mut budget = TextBudget::with_limit("the workbook", 10);
        budget.take(6).unwrap();
        let error = budget.take(5).unwrap_err();
        assert_eq!(error.kind(), "too_large");
        assert!(error.message().starts_with("the workbook holds more than"));
    }
}
