//! PPTX: a presentation slide by slide, in the order `presentation.xml` lists them. Each slide
//! is a page: its title as a heading (the slide number when it has none), then the text of its
//! other shapes in order, its tables as rows, and its speaker notes under a "Speaker notes"
//! heading. Footers, dates and slide numbers are left out; text inside pictures is not read.

use quick_xml::events::Event;

use crate::error::ExtractError;
use crate::package::{
    attr, prefixed_attr, text_of, walk, Package, Page, TextBudget, MAX_PART_BYTES,
};

/// A presentation's slides in show order.
#[derive(Debug)]
pub struct Presentation {
    /// Each slide's part; `None` when the presentation names no part for it.
    slides: Vec<Option<String>>,
}

impl Presentation {
    /// Reads the presentation part `main` and its relationships.
    pub fn open(package: &mut Package<'_>, main: &str) -> Result<Self, ExtractError> {
        let noun = package.noun();
        let xml = package.read(main, MAX_PART_BYTES)?.ok_or_else(|| {
            ExtractError::corrupt(format_args!("{noun} is damaged: {main} is missing"))
        })?;
        let mut ids: Vec<Option<String>> = Vec::new();
        let mut in_list = false;
        walk(&xml[..], main, noun, |event| {
            match event {
                Event::Start(e) if e.local_name().as_ref() == b"sldIdLst" => in_list = true,
                Event::End(e) if e.local_name().as_ref() == b"sldIdLst" => in_list = false,
                Event::Start(e) | Event::Empty(e)
                    if in_list && e.local_name().as_ref() == b"sldId" =>
                {
                    ids.push(prefixed_attr(&e, b"id"));
                }
                _ => {}
            }
            Ok(())
        })?;
        let rels = package.relationships(main)?;
        let slides = ids
            .into_iter()
            .map(|id| {
                let id = id?;
                rels.iter()
                    .find(|rel| rel.id == id && rel.kind == "slide" && !rel.external)
                    .map(|rel| rel.target.clone())
            })
            .collect();
        Ok(Self { slides })
    }

    pub fn len(&self) -> usize {
        self.slides.len()
    }

    /// The text of slide `index` (from 0), with its notes, taking its size from `budget`.
    pub fn slide(
        &self,
        package: &mut Package<'_>,
        index: usize,
        budget: &mut TextBudget,
    ) -> Result<Page, ExtractError> {
        let number = index + 1;
        let blank = |why: String| Page {
            text: String::new(),
            warning: Some(why),
        };
        let Some(part) = &self.slides[index] else {
            return Ok(blank(format!(
                "slide {number} has no slide part; it was skipped"
            )));
        };
        let Some(slide) = read_shapes(package, part)? else {
            return Ok(blank(format!(
                "slide {number} is missing from the file; it was skipped"
            )));
        };
        let notes_part = package
            .relationships(part)?
            .into_iter()
            .find(|rel| rel.kind == "notesSlide" && !rel.external)
            .map(|rel| rel.target);
        let notes = match notes_part {
            Some(notes_part) => read_shapes(package, &notes_part)?.unwrap_or_default(),
            None => Shapes::default(),
        };
        // In notes, the title is the slide's picture and number: only their text counts.
        let notes: Vec<String> = notes.titles.into_iter().chain(notes.blocks).collect();
        if slide.titles.is_empty() && slide.blocks.is_empty() && notes.is_empty() {
            return Ok(blank(if slide.visuals > 0 {
                format!("slide {number} holds only pictures or charts; text in them is not read")
            } else {
                format!("slide {number} has no text")
            }));
        }
        let title = if slide.titles.is_empty() {
            format!("Slide {number}")
        } else {
            slide.titles.join(" — ")
        };
        let mut text = format!("# {title}");
        for block in &slide.blocks {
            text.push_str("\n\n");
            text.push_str(block);
        }
        if !notes.is_empty() {
            text.push_str("\n\n## Speaker notes");
            for block in &notes {
                text.push_str("\n\n");
                text.push_str(block);
            }
        }
        budget.take(text.len())?;
        Ok(Page {
            text,
            warning: None,
        })
    }
}

/// The text of a slide or notes part, if the package has it.
fn read_shapes(package: &mut Package<'_>, part: &str) -> Result<Option<Shapes>, ExtractError> {
    let noun = package.noun();
    let Some(reader) = package.open_part(part, MAX_PART_BYTES)? else {
        return Ok(None);
    };
    let mut walker = Walker::default();
    walk(reader, part, noun, |event| {
        walker.event(&event);
        Ok(())
    })?;
    Ok(Some(walker.shapes))
}

/// What a slide says: title text, the other shapes' text blocks in order, and how many
/// pictures and charts it shows.
#[derive(Debug, Default, PartialEq, Eq)]
struct Shapes {
    titles: Vec<String>,
    blocks: Vec<String>,
    visuals: usize,
}

/// What a placeholder is for.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
enum Role {
    Title,
    #[default]
    Body,
    /// Dates, footers, slide numbers, headers, the slide picture on a notes page.
    Skip,
}

/// Streaming state for a slide's shape tree. Group shapes nest, shapes do not: one open
/// shape at a time, whatever the depth.
#[derive(Debug, Default)]
struct Walker {
    shapes: Shapes,
    /// The open shape's role and paragraphs.
    shape: Option<(Role, Vec<String>)>,
    paragraph: String,
    in_text: bool,
    /// The open table's rows, row and cell.
    table: Option<Vec<String>>,
    row: Vec<String>,
    cell: Option<String>,
    /// Whether the open graphic frame holds a table (else it is a chart or diagram).
    frame_has_table: bool,
    /// Depth inside `mc:Fallback` (a copy of the `mc:Choice` content: skipped).
    fallback: usize,
}

impl Walker {
    fn event(&mut self, event: &Event<'_>) {
        match event {
            Event::Start(e) | Event::Empty(e) => {
                let empty = matches!(event, Event::Empty(_));
                let name = e.local_name();
                if self.fallback > 0 {
                    if name.as_ref() == b"Fallback" && !empty {
                        self.fallback += 1;
                    }
                    return;
                }
                match name.as_ref() {
                    b"Fallback" if !empty => self.fallback = 1,
                    b"sp" if !empty => self.shape = Some((Role::Body, Vec::new())),
                    b"ph" => {
                        if let Some((role, _)) = self.shape.as_mut() {
                            *role = match attr(e, b"type").as_deref() {
                                Some("title" | "ctrTitle") => Role::Title,
                                Some("dt" | "ftr" | "sldNum" | "hdr" | "sldImg") => Role::Skip,
                                _ => Role::Body,
                            };
                        }
                    }
                    b"pic" => self.shapes.visuals += 1,
                    b"graphicFrame" if !empty => self.frame_has_table = false,
                    b"tbl" if !empty => {
                        self.frame_has_table = true;
                        self.table = Some(Vec::new());
                    }
                    b"tr" if !empty => self.row.clear(),
                    b"tc" if !empty && self.table.is_some() => self.cell = Some(String::new()),
                    b"p" if !empty => self.paragraph.clear(),
                    b"t" if !empty => self.in_text = true,
                    b"br" => self.paragraph.push(' '),
                    _ => {}
                }
            }
            Event::End(e) => {
                let name = e.local_name();
                if self.fallback > 0 {
                    if name.as_ref() == b"Fallback" {
                        self.fallback -= 1;
                    }
                    return;
                }
                match name.as_ref() {
                    b"t" => self.in_text = false,
                    b"p" => self.end_paragraph(),
                    b"tc" => {
                        if let Some(cell) = self.cell.take() {
                            self.row.push(cell.replace('|', "\\|"));
                        }
                    }
                    b"tr" => {
                        let row = std::mem::take(&mut self.row);
                        if let Some(table) = self.table.as_mut() {
                            if row.iter().any(|cell| !cell.is_empty()) {
                                table.push(format!("| {} |", row.join(" | ")));
                            }
                        }
                    }
                    b"tbl" => {
                        if let Some(table) = self.table.take() {
                            if !table.is_empty() {
                                self.shapes.blocks.push(table.join("\n"));
                            }
                        }
                    }
                    b"graphicFrame" if !self.frame_has_table => self.shapes.visuals += 1,
                    b"sp" => self.end_shape(),
                    _ => {}
                }
            }
            Event::Text(t) if self.in_text && self.fallback == 0 => {
                self.paragraph.push_str(&text_of(t));
            }
            Event::CData(t) if self.in_text && self.fallback == 0 => {
                self.paragraph.push_str(&String::from_utf8_lossy(t));
            }
            _ => {}
        }
    }

    fn end_paragraph(&mut self) {
        let text = std::mem::take(&mut self.paragraph);
        let text = text.split_whitespace().collect::<Vec<_>>().join(" ");
        if text.is_empty() {
            return;
        }
        if let Some(cell) = self.cell.as_mut() {
            if !cell.is_empty() {
                cell.push(' ');
            }
            cell.push_str(&text);
        } else if let Some((_, paragraphs)) = self.shape.as_mut() {
            paragraphs.push(text);
        } else {
            self.shapes.blocks.push(text);
        }
    }

    fn end_shape(&mut self) {
        let Some((role, paragraphs)) = self.shape.take() else {
            return;
        };
        if paragraphs.is_empty() {
            return;
        }
        match role {
            Role::Title => self.shapes.titles.push(paragraphs.join(" ")),
            Role::Body => self.shapes.blocks.push(paragraphs.join("\n")),
            Role::Skip => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::package::tests::zip_of;
    use crate::package::Kind;

    const NS: &str = r#"xmlns:a="http://schemas.openxmlformats.org/drawingml/2006/main" xmlns:r="http://schemas.openxmlformats.org/officeDocument/2006/relationships" xmlns:p="http://schemas.openxmlformats.org/presentationml/2006/main""#;
    const TYPE: &str = "http://schemas.openxmlformats.org/officeDocument/2006/relationships";

    /// A shape: `ph` is a placeholder type (`""` for a text box), then its paragraphs.
    pub fn shape(ph: &str, paragraphs: &[&str]) -> String {
        let ph = match ph {
            "" => String::new(),
            "body" => "<p:ph idx=\"1\"/>".into(),
            other => format!("<p:ph type=\"{other}\"/>"),
        };
        let paragraphs: String = paragraphs
            .iter()
            .map(|p| format!("<a:p><a:r><a:rPr lang=\"en-US\"/><a:t>{p}</a:t></a:r></a:p>"))
            .collect();
        format!(
            "<p:sp><p:nvSpPr><p:cNvPr id=\"2\" name=\"x\"/><p:cNvSpPr/><p:nvPr>{ph}</p:nvPr></p:nvSpPr>\
             <p:spPr/><p:txBody><a:bodyPr/>{paragraphs}</p:txBody></p:sp>"
        )
    }

    pub fn slide_xml(shapes: &str) -> String {
        format!("<p:sld {NS}><p:cSld><p:spTree><p:nvGrpSpPr/><p:grpSpPr/>{shapes}</p:spTree></p:cSld></p:sld>")
    }

    /// A deck whose slides are listed in `order` (indexes into `slides`); slide `i` has the
    /// notes `notes[i]` when given.
    pub fn deck(slides: &[String], notes: &[Option<String>], order: &[usize]) -> Vec<u8> {
        let list: String = order
            .iter()
            .enumerate()
            .map(|(n, i)| format!("<p:sldId id=\"{}\" r:id=\"rId{}\"/>", 256 + n, i + 10))
            .collect();
        let presentation = format!(
            "<p:presentation {NS}><p:sldMasterIdLst><p:sldMasterId id=\"1\" r:id=\"rId1\"/></p:sldMasterIdLst><p:sldIdLst>{list}</p:sldIdLst></p:presentation>"
        );
        let rels: String = (0..slides.len())
            .map(|i| {
                format!(
                    "<Relationship Id=\"rId{}\" Type=\"{TYPE}/slide\" Target=\"slides/slide{}.xml\"/>",
                    i + 10,
                    i + 1
                )
            })
            .collect();
        let mut entries: Vec<(String, Vec<u8>)> = vec![
            ("ppt/presentation.xml".into(), presentation.into_bytes()),
            (
                "ppt/_rels/presentation.xml.rels".into(),
                format!("<Relationships><Relationship Id=\"rId1\" Type=\"{TYPE}/slideMaster\" Target=\"slideMasters/slideMaster1.xml\"/>{rels}</Relationships>").into_bytes(),
            ),
        ];
        for (i, slide) in slides.iter().enumerate() {
            entries.push((
                format!("ppt/slides/slide{}.xml", i + 1),
                slide.clone().into_bytes(),
            ));
            if let Some(Some(notes)) = notes.get(i) {
                entries.push((
                    format!("ppt/slides/_rels/slide{}.xml.rels", i + 1),
                    format!("<Relationships><Relationship Id=\"rId2\" Type=\"{TYPE}/notesSlide\" Target=\"../notesSlides/notesSlide{}.xml\"/></Relationships>", i + 1).into_bytes(),
                ));
                entries.push((
                    format!("ppt/notesSlides/notesSlide{}.xml", i + 1),
                    format!(
                        "<p:notes {NS}><p:cSld><p:spTree>{}{}{notes}</p:spTree></p:cSld></p:notes>",
                        shape("sldImg", &[]),
                        shape("sldNum", &["3"])
                    )
                    .into_bytes(),
                ));
            }
        }
        let borrowed: Vec<(&str, &[u8])> = entries
            .iter()
            .map(|(name, bytes)| (name.as_str(), bytes.as_slice()))
            .collect();
        zip_of(&borrowed)
    }

    pub fn pages(bytes: &[u8]) -> Vec<Page> {
        let mut package = Package::open(bytes).unwrap();
        let Kind::PowerPoint(main) = package.identify().unwrap() else {
            panic!("not a presentation")
        };
        let deck = Presentation::open(&mut package, &main).unwrap();
        let mut budget = TextBudget::new("the presentation");
        (0..deck.len())
            .map(|i| deck.slide(&mut package, i, &mut budget).unwrap())
            .collect()
    }

    #[test]
    fn slides_in_show_order_titles_first_with_notes() {
        let first = slide_xml(&format!(
            "{}{}{}{}",
            shape("body", &["Revenue grew 12%", "Costs flat"]),
            shape("title", &["Q3 results"]),
            shape("ftr", &["Confidential"]),
            shape("sldNum", &["1"]),
        ));
        let second = slide_xml(&shape("ctrTitle", &["Welcome"]));
        let notes = shape("body", &["Mention the EMEA deal.", "Then pause."]);
        // The second part is shown first.
        let pages = pages(&deck(&[first, second], &[Some(notes), None], &[1, 0]));
        assert_eq!(pages.len(), 2);
        assert_eq!(pages[0].text, "# Welcome");
        assert_eq!(
            pages[1].text,
            "# Q3 results\n\nRevenue grew 12%\nCosts flat\n\n## Speaker notes\n\nMention the EMEA deal.\nThen pause."
        );
    }

    #[test]
    fn tables_groups_and_untitled_slides() {
        let table = "<p:graphicFrame><a:graphic><a:graphicData><a:tbl><a:tblGrid/>\
            <a:tr><a:tc><a:txBody><a:p><a:r><a:t>Name</a:t></a:r></a:p></a:txBody></a:tc><a:tc><a:txBody><a:p><a:r><a:t>Role</a:t></a:r></a:p></a:txBody></a:tc></a:tr>\
            <a:tr><a:tc><a:txBody><a:p><a:r><a:t>Ann</a:t></a:r></a:p><a:p><a:r><a:t>Lee</a:t></a:r></a:p></a:txBody></a:tc><a:tc><a:txBody><a:p><a:r><a:t>a|b</a:t></a:r></a:p></a:txBody></a:tc></a:tr>\
            </a:tbl></a:graphicData></a:graphic></p:graphicFrame>";
        let group = format!(
            "<p:grpSp><p:nvGrpSpPr/>{}<p:grpSp>{}</p:grpSp></p:grpSp>",
            shape("", &["Box one"]),
            shape("", &["Box two"])
        );
        let fallback = "<mc:AlternateContent xmlns:mc=\"m\"><mc:Choice>".to_owned()
            + &shape("", &["Chosen"])
            + "</mc:Choice><mc:Fallback>"
            + &shape("", &["Chosen"])
            + "</mc:Fallback></mc:AlternateContent>";
        let slide = slide_xml(&format!("{table}{group}{fallback}"));
        let pages = pages(&deck(&[slide], &[], &[0]));
        assert_eq!(
            pages[0].text,
            "# Slide 1\n\n| Name | Role |\n| Ann Lee | a\\|b |\n\nBox one\n\nBox two\n\nChosen"
        );
    }

    #[test]
    fn picture_slides_and_missing_parts_are_blank_with_a_reason() {
        let picture = slide_xml("<p:pic><p:nvPicPr><p:cNvPr id=\"4\" name=\"Picture 3\" descr=\"a chart\"/></p:nvPicPr><p:blipFill><a:blip r:embed=\"rId2\"/></p:blipFill></p:pic>");
        let empty = slide_xml(&shape("body", &[]));
        let bytes = deck(&[picture, empty], &[], &[0, 1, 5]);
        let pages = pages(&bytes);
        assert_eq!(pages.len(), 3);
        assert!(pages.iter().all(|page| page.text.is_empty()));
        let warnings: Vec<&str> = pages
            .iter()
            .map(|p| p.warning.as_deref().unwrap())
            .collect();
        assert_eq!(
            warnings,
            [
                "slide 1 holds only pictures or charts; text in them is not read",
                "slide 2 has no text",
                "slide 3 has no slide part; it was skipped"
            ]
        );
    }

    #[test]
    fn notes_alone_still_make_a_page() {
        let slide = slide_xml("");
        let notes = shape("body", &["Only notes here"]);
        let pages = pages(&deck(&[slide], &[Some(notes)], &[0]));
        assert_eq!(
            pages[0].text,
            "# Slide 1\n\n## Speaker notes\n\nOnly notes here"
        );
    }
}
