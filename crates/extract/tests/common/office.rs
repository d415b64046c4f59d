//! Minimal XLSX and PPTX files built in code, as Excel and PowerPoint lay them out (content
//! types, package and part relationships, shared strings, styles, notes), so tests commit no
//! binaries. Shared by the extractor's tests and engram's integration tests.

#![allow(dead_code)]

use std::io::{Cursor, Write};

const REL: &str = "http://schemas.openxmlformats.org/officeDocument/2006/relationships";
const PKG_REL: &str = "http://schemas.openxmlformats.org/package/2006/relationships";
const MAIN: &str = "http://schemas.openxmlformats.org/spreadsheetml/2006/main";
const P: &str = "http://schemas.openxmlformats.org/presentationml/2006/main";
const A: &str = "http://schemas.openxmlformats.org/drawingml/2006/main";

/// A ZIP of `(name, content)` entries, deflated, in the order given.
pub fn zip_of(entries: &[(String, Vec<u8>)]) -> Vec<u8> {
    let mut bytes = Vec::new();
    let mut zip = zip::ZipWriter::new(Cursor::new(&mut bytes));
    let options = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated)
        .large_file(true);
    for (name, content) in entries {
        zip.start_file(name.as_str(), options).unwrap();
        zip.write_all(content).unwrap();
    }
    zip.finish().unwrap();
    bytes
}

fn entry(name: &str, content: impl Into<Vec<u8>>) -> (String, Vec<u8>) {
    (name.to_owned(), content.into())
}

fn content_types(overrides: &[(String, &str)]) -> (String, Vec<u8>) {
    let overrides: String = overrides
        .iter()
        .map(|(part, ty)| format!(r#"<Override PartName="/{part}" ContentType="{ty}"/>"#))
        .collect();
    entry(
        "[Content_Types].xml",
        format!(
            r#"<?xml version="1.0" encoding="UTF-8" standalone="yes"?><Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types"><Default Extension="rels" ContentType="application/vnd.openxmlformats-package.relationships+xml"/><Default Extension="xml" ContentType="application/xml"/>{overrides}</Types>"#
        ),
    )
}

fn root_rels(main: &str) -> (String, Vec<u8>) {
    entry(
        "_rels/.rels",
        format!(
            r#"<?xml version="1.0" encoding="UTF-8" standalone="yes"?><Relationships xmlns="{PKG_REL}"><Relationship Id="rId1" Type="{REL}/officeDocument" Target="{main}"/></Relationships>"#
        ),
    )
}

/// Escapes text for XML.
pub fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// A cell value in a sheet built by [`xlsx`].
#[derive(Debug, Clone)]
pub enum Value {
    /// A shared string.
    Text(&'static str),
    Number(f64),
    /// A date, by its serial number (shown with the built-in date format).
    Date(f64),
    /// A formula with its cached result (`None`: never calculated).
    Formula(&'static str, Option<f64>),
}

/// An XLSX of `sheets` (name, rows of cells from column A), with the worksheet parts written
/// into the ZIP in the reverse of their tab order (order in the archive means nothing).
pub fn xlsx(sheets: &[(&str, Vec<Vec<Value>>)]) -> Vec<u8> {
    let mut shared: Vec<&str> = Vec::new();
    let mut parts = Vec::new();
    for (i, (_, rows)) in sheets.iter().enumerate() {
        let mut data = String::new();
        for (r, row) in rows.iter().enumerate() {
            data.push_str(&format!(r#"<row r="{}">"#, r + 1));
            for (c, value) in row.iter().enumerate() {
                let reference = format!("{}{}", (b'A' + c as u8) as char, r + 1);
                data.push_str(&match value {
                    Value::Text(text) => {
                        let index = shared.iter().position(|s| s == text).unwrap_or_else(|| {
                            shared.push(text);
                            shared.len() - 1
                        });
                        format!(r#"<c r="{reference}" t="s"><v>{index}</v></c>"#)
                    }
                    Value::Number(x) => format!(r#"<c r="{reference}"><v>{x}</v></c>"#),
                    Value::Date(x) => format!(r#"<c r="{reference}" s="1"><v>{x}</v></c>"#),
                    Value::Formula(f, Some(x)) => {
                        format!(r#"<c r="{reference}"><f>{}</f><v>{x}</v></c>"#, escape(f))
                    }
                    Value::Formula(f, None) => {
                        format!(r#"<c r="{reference}"><f>{}</f></c>"#, escape(f))
                    }
                });
            }
            data.push_str("</row>");
        }
        parts.push(worksheet(i, &data));
    }
    let names: Vec<&str> = sheets.iter().map(|(name, _)| *name).collect();
    let shared: String = shared
        .iter()
        .map(|s| format!("<si><t>{}</t></si>", escape(s)))
        .collect();
    workbook(&names, parts, &shared)
}

/// Worksheet part number `index` (from 0) around the rows in `sheet_data`.
pub fn worksheet(index: usize, sheet_data: &str) -> (String, Vec<u8>) {
    worksheet_with(index, "", sheet_data)
}

/// Worksheet part `index` with `before` (a `<dimension>`, say) ahead of its sheet data.
pub fn worksheet_with(index: usize, before: &str, sheet_data: &str) -> (String, Vec<u8>) {
    entry(
        &format!("xl/worksheets/sheet{}.xml", index + 1),
        format!(
            r#"<?xml version="1.0" encoding="UTF-8" standalone="yes"?><worksheet xmlns="{MAIN}" xmlns:r="{REL}">{before}<sheetData>{sheet_data}</sheetData></worksheet>"#
        ),
    )
}

/// A workbook naming `names` in tab order, with the given worksheet parts and shared strings
/// (`<si>` items).
pub fn workbook(names: &[&str], mut parts: Vec<(String, Vec<u8>)>, shared: &str) -> Vec<u8> {
    let sheets: String = names
        .iter()
        .enumerate()
        .map(|(i, name)| {
            format!(
                r#"<sheet name="{}" sheetId="{}" r:id="rId{}"/>"#,
                escape(name),
                i + 1,
                i + 10
            )
        })
        .collect();
    let rels: String = (0..names.len())
        .map(|i| {
            format!(
                r#"<Relationship Id="rId{}" Type="{REL}/worksheet" Target="worksheets/sheet{}.xml"/>"#,
                i + 10,
                i + 1
            )
        })
        .collect();
    let mut types = vec![(
        "xl/workbook.xml".to_owned(),
        "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet.main+xml",
    )];
    types.extend((0..names.len()).map(|i| {
        (
            format!("xl/worksheets/sheet{}.xml", i + 1),
            "application/vnd.openxmlformats-officedocument.spreadsheetml.worksheet+xml",
        )
    }));
    let mut entries = vec![
        content_types(&types),
        root_rels("xl/workbook.xml"),
        entry(
            "xl/workbook.xml",
            format!(
                r#"<?xml version="1.0" encoding="UTF-8" standalone="yes"?><workbook xmlns="{MAIN}" xmlns:r="{REL}"><workbookPr/><sheets>{sheets}</sheets></workbook>"#
            ),
        ),
        entry(
            "xl/_rels/workbook.xml.rels",
            format!(
                r#"<?xml version="1.0" encoding="UTF-8" standalone="yes"?><Relationships xmlns="{PKG_REL}">{rels}<Relationship Id="rId1" Type="{REL}/styles" Target="styles.xml"/><Relationship Id="rId2" Type="{REL}/sharedStrings" Target="sharedStrings.xml"/></Relationships>"#
            ),
        ),
        entry(
            "xl/styles.xml",
            format!(
                r#"<?xml version="1.0" encoding="UTF-8" standalone="yes"?><styleSheet xmlns="{MAIN}"><cellXfs count="2"><xf numFmtId="0"/><xf numFmtId="14" applyNumberFormat="1"/></cellXfs></styleSheet>"#
            ),
        ),
        entry(
            "xl/sharedStrings.xml",
            format!(
                r#"<?xml version="1.0" encoding="UTF-8" standalone="yes"?><sst xmlns="{MAIN}">{shared}</sst>"#
            ),
        ),
    ];
    parts.reverse();
    entries.extend(parts);
    zip_of(&entries)
}

/// A text shape: a placeholder of type `ph` (`"title"`, `"body"`), or a text box for `""`.
pub fn shape(ph: &str, paragraphs: &[&str]) -> String {
    let ph = match ph {
        "" => String::new(),
        "body" => r#"<p:ph idx="1"/>"#.to_owned(),
        other => format!(r#"<p:ph type="{other}"/>"#),
    };
    let paragraphs: String = paragraphs
        .iter()
        .map(|p| {
            format!(
                r#"<a:p><a:r><a:rPr lang="en-US"/><a:t>{}</a:t></a:r></a:p>"#,
                escape(p)
            )
        })
        .collect();
    format!(
        r#"<p:sp><p:nvSpPr><p:cNvPr id="2" name="Shape"/><p:cNvSpPr/><p:nvPr>{ph}</p:nvPr></p:nvSpPr><p:spPr/><p:txBody><a:bodyPr/><a:lstStyle/>{paragraphs}</p:txBody></p:sp>"#
    )
}

/// A picture (no text).
pub fn picture() -> String {
    r#"<p:pic><p:nvPicPr><p:cNvPr id="3" name="Picture 2"/><p:cNvPicPr/><p:nvPr/></p:nvPicPr><p:blipFill><a:blip r:embed="rId2"/></p:blipFill><p:spPr/></p:pic>"#.to_owned()
}

fn slide_part(root: &str, shapes: &str) -> Vec<u8> {
    format!(
        r#"<?xml version="1.0" encoding="UTF-8" standalone="yes"?><p:{root} xmlns:a="{A}" xmlns:r="{REL}" xmlns:p="{P}"><p:cSld><p:spTree><p:nvGrpSpPr><p:cNvPr id="1" name=""/><p:cNvGrpSpPr/><p:nvPr/></p:nvGrpSpPr><p:grpSpPr/>{shapes}</p:spTree></p:cSld></p:{root}>"#
    )
    .into_bytes()
}

/// A PPTX of `slides` (the shapes of each, and its speaker notes), in show order; the slide
/// parts are numbered and stored in the reverse order, so only `presentation.xml` tells the
/// order.
pub fn pptx(slides: &[(String, Option<&str>)]) -> Vec<u8> {
    let count = slides.len();
    // Show position i is stored as slide part count - i.
    let part = |i: usize| count - i;
    let list: String = (0..count)
        .map(|i| format!(r#"<p:sldId id="{}" r:id="rId{}"/>"#, 256 + i, part(i) + 10))
        .collect();
    let rels: String = (0..count)
        .map(|i| {
            format!(
                r#"<Relationship Id="rId{}" Type="{REL}/slide" Target="slides/slide{}.xml"/>"#,
                part(i) + 10,
                part(i)
            )
        })
        .collect();
    let mut types = vec![(
        "ppt/presentation.xml".to_owned(),
        "application/vnd.openxmlformats-officedocument.presentationml.presentation.main+xml",
    )];
    let mut entries = Vec::new();
    for (i, (shapes, notes)) in slides.iter().enumerate() {
        let n = part(i);
        types.push((
            format!("ppt/slides/slide{n}.xml"),
            "application/vnd.openxmlformats-officedocument.presentationml.slide+xml",
        ));
        entries.push(entry(
            &format!("ppt/slides/slide{n}.xml"),
            slide_part("sld", shapes),
        ));
        let mut slide_rels = format!(
            r#"<Relationship Id="rId1" Type="{REL}/slideLayout" Target="../slideLayouts/slideLayout1.xml"/><Relationship Id="rId2" Type="{REL}/image" Target="../media/image1.png"/>"#
        );
        if let Some(notes) = notes {
            slide_rels.push_str(&format!(
                r#"<Relationship Id="rId3" Type="{REL}/notesSlide" Target="../notesSlides/notesSlide{n}.xml"/>"#
            ));
            let shapes = format!(
                "{}{}{}",
                shape("sldImg", &[]),
                shape("body", &[notes]),
                shape("sldNum", &[&n.to_string()])
            );
            entries.push(entry(
                &format!("ppt/notesSlides/notesSlide{n}.xml"),
                slide_part("notes", &shapes),
            ));
        }
        entries.push(entry(
            &format!("ppt/slides/_rels/slide{n}.xml.rels"),
            format!(
                r#"<?xml version="1.0" encoding="UTF-8" standalone="yes"?><Relationships xmlns="{PKG_REL}">{slide_rels}</Relationships>"#
            ),
        ));
    }
    let mut all = vec![
        content_types(&types),
        root_rels("ppt/presentation.xml"),
        entry(
            "ppt/presentation.xml",
            format!(
                r#"<?xml version="1.0" encoding="UTF-8" standalone="yes"?><p:presentation xmlns:a="{A}" xmlns:r="{REL}" xmlns:p="{P}"><p:sldMasterIdLst><p:sldMasterId id="2147483648" r:id="rId1"/></p:sldMasterIdLst><p:sldIdLst>{list}</p:sldIdLst><p:sldSz cx="12192000" cy="6858000"/></p:presentation>"#
            ),
        ),
        entry(
            "ppt/_rels/presentation.xml.rels",
            format!(
                r#"<?xml version="1.0" encoding="UTF-8" standalone="yes"?><Relationships xmlns="{PKG_REL}"><Relationship Id="rId1" Type="{REL}/slideMaster" Target="slideMasters/slideMaster1.xml"/>{rels}</Relationships>"#
            ),
        ),
        entry(
            "ppt/slideLayouts/slideLayout1.xml",
            slide_part(
                "sldLayout",
                &shape("title", &["Click to edit Master title style"]),
            ),
        ),
        entry("ppt/media/image1.png", b"\x89PNG\r\n\x1a\n".to_vec()),
    ];
    all.extend(entries);
    zip_of(&all)
}
