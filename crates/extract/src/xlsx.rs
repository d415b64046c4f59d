//! XLSX: a workbook sheet by sheet. Each sheet is a page headed by its name; each row is one
//! list line whose cells carry their column's header (`- Region: EMEA; Revenue: 1200.`), so
//! any chunk of a long sheet can be read, cited and quoted on its own. Values come from shared
//! strings, inline strings, numbers, booleans, dates (by the cell's number format) and the
//! cached results of formulas, never the formula text. A sheet is parsed as it inflates and
//! only its non-empty cells are kept: a sparse row a million rows down, or a declared range of
//! the whole grid, costs nothing.

use std::borrow::Cow;
use std::collections::HashMap;

use quick_xml::events::Event;

use crate::error::ExtractError;
use crate::package::{
    attr, prefixed_attr, text_of, walk, Package, Page, TextBudget, MAX_PART_BYTES,
    MAX_STREAMED_PART_BYTES,
};
use crate::sheet::{one_line, Cell, SheetText};

/// A workbook's sheets in their tab order, with what their cells refer to.
#[derive(Debug)]
pub struct Workbook {
    sheets: Vec<SheetRef>,
    shared: SharedStrings,
    /// The number kind of each cell format (`cellXfs`), by index.
    styles: Vec<NumberKind>,
    date1904: bool,
}

#[derive(Debug, Clone)]
struct SheetRef {
    name: String,
    /// The worksheet part; `None` when the workbook names no part for the sheet.
    part: Option<String>,
    chart: bool,
}

impl Workbook {
    /// Reads the workbook part `main`, its relationships, shared strings and styles.
    pub fn open(package: &mut Package<'_>, main: &str) -> Result<Self, ExtractError> {
        let noun = package.noun();
        let xml = package.read(main, MAX_PART_BYTES)?.ok_or_else(|| {
            ExtractError::corrupt(format_args!("{noun} is damaged: {main} is missing"))
        })?;
        let mut listed: Vec<(String, Option<String>)> = Vec::new();
        let mut date1904 = false;
        walk(&xml[..], main, noun, |event| {
            if let Event::Start(e) | Event::Empty(e) = event {
                match e.local_name().as_ref() {
                    b"workbookPr" => {
                        date1904 = attr(&e, b"date1904").is_some_and(|v| v == "1" || v == "true");
                    }
                    b"sheet" => {
                        let name = attr(&e, b"name").map(Cow::into_owned).unwrap_or_default();
                        listed.push((name, prefixed_attr(&e, b"id")));
                    }
                    _ => {}
                }
            }
            Ok(())
        })?;
        let rels = package.relationships(main)?;
        let by_id: HashMap<&str, (&str, &str)> = rels
            .iter()
            .filter(|rel| !rel.external)
            .map(|rel| (rel.id.as_str(), (rel.kind.as_str(), rel.target.as_str())))
            .collect();
        let sheets = listed
            .into_iter()
            .enumerate()
            .map(|(i, (name, id))| {
                let name = one_line(&name);
                let name = if name.is_empty() {
                    format!("Sheet {}", i + 1)
                } else {
                    name
                };
                let target = id.and_then(|id| by_id.get(id.as_str()).copied());
                SheetRef {
                    name,
                    chart: target.is_some_and(|(kind, _)| kind == "chartsheet"),
                    part: target.map(|(_, part)| part.to_owned()),
                }
            })
            .collect();
        let beside = |file: &str| crate::package::resolve(main, file);
        let find = |kind: &str, default: &str| {
            rels.iter()
                .find(|rel| rel.kind == kind && !rel.external)
                .map_or_else(|| beside(default), |rel| rel.target.clone())
        };
        let shared_part = find("sharedStrings", "sharedStrings.xml");
        let styles_part = find("styles", "styles.xml");
        let shared = SharedStrings::read(package, &shared_part)?;
        let styles = read_styles(package, &styles_part)?;
        Ok(Self {
            sheets,
            shared,
            styles,
            date1904,
        })
    }

    /// Sheets in tab order (chart sheets included, as pages without text).
    pub fn len(&self) -> usize {
        self.sheets.len()
    }

    /// The text of sheet `index` (from 0), taking its size from `budget`.
    pub fn sheet(
        &self,
        package: &mut Package<'_>,
        index: usize,
        budget: &mut TextBudget,
    ) -> Result<Page, ExtractError> {
        let sheet = &self.sheets[index];
        let warning = |what: &str| Page {
            text: String::new(),
            warning: Some(format!("sheet \"{}\" {what}", sheet.name)),
        };
        if sheet.chart {
            return Ok(warning("is a chart; charts are not read"));
        }
        let noun = package.noun();
        let Some(part) = &sheet.part else {
            return Ok(warning("has no worksheet part; it was skipped"));
        };
        let Some(reader) = package.open_part(part, MAX_STREAMED_PART_BYTES)? else {
            return Ok(warning("is missing from the file; it was skipped"));
        };
        let mut walker = SheetWalker::new(self, &sheet.name, budget);
        walk(reader, part, noun, |event| walker.event(event))?;
        let text = walker.finish()?;
        if text.is_empty() {
            return Ok(warning("is empty"));
        }
        Ok(Page {
            text,
            warning: None,
        })
    }
}

/// Decodes the `_xHHHH_` escapes OOXML strings use for characters XML cannot hold.
fn decode_escapes(text: &str) -> Cow<'_, str> {
    if !text.contains("_x") {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find("_x") {
        out.push_str(&rest[..at]);
        let tail = &rest[at..];
        let decoded = tail
            .get(2..6)
            .filter(|_| tail.as_bytes().get(6) == Some(&b'_'))
            .and_then(|hex| u32::from_str_radix(hex, 16).ok())
            .and_then(char::from_u32);
        match decoded {
            Some(c) => {
                out.push(c);
                rest = &tail[7..];
            }
            None => {
                out.push_str("_x");
                rest = &tail[2..];
            }
        }
    }
    out.push_str(rest);
    Cow::Owned(out)
}

/// The workbook's shared strings, stored end to end (one allocation, not one per string).
#[derive(Debug, Default)]
struct SharedStrings {
    text: String,
    ends: Vec<usize>,
}

impl SharedStrings {
    fn read(package: &mut Package<'_>, part: &str) -> Result<Self, ExtractError> {
        let noun = package.noun();
        let mut shared = SharedStrings::default();
        let Some(reader) = package.open_part(part, MAX_PART_BYTES)? else {
            return Ok(shared);
        };
        let mut runs = RichText::default();
        let mut in_item = false;
        walk(reader, part, noun, |event| {
            match event {
                Event::Start(e) if e.local_name().as_ref() == b"si" => {
                    in_item = true;
                    runs = RichText::default();
                }
                Event::Empty(e) if e.local_name().as_ref() == b"si" => shared.push(""),
                Event::End(e) if e.local_name().as_ref() == b"si" => {
                    in_item = false;
                    shared.push(&runs.text);
                }
                event if in_item => runs.event(&event),
                _ => {}
            }
            Ok(())
        })?;
        Ok(shared)
    }

    fn push(&mut self, text: &str) {
        self.text.push_str(&decode_escapes(text));
        self.ends.push(self.text.len());
    }

    fn get(&self, index: usize) -> Option<&str> {
        let end = *self.ends.get(index)?;
        let start = if index == 0 { 0 } else { self.ends[index - 1] };
        self.text.get(start..end)
    }
}

/// The text of a string item (`<si>`, `<is>`): its `<t>` elements, without phonetic runs.
#[derive(Debug, Default)]
struct RichText {
    text: String,
    in_t: bool,
    phonetic: usize,
}

impl RichText {
    fn event(&mut self, event: &Event<'_>) {
        match event {
            Event::Start(e) => match e.local_name().as_ref() {
                b"t" => self.in_t = true,
                b"rPh" => self.phonetic += 1,
                _ => {}
            },
            Event::End(e) => match e.local_name().as_ref() {
                b"t" => self.in_t = false,
                b"rPh" => self.phonetic = self.phonetic.saturating_sub(1),
                _ => {}
            },
            Event::Text(t) if self.in_t && self.phonetic == 0 => self.text.push_str(&text_of(t)),
            Event::CData(t) if self.in_t && self.phonetic == 0 => {
                self.text.push_str(&String::from_utf8_lossy(t))
            }
            _ => {}
        }
    }
}

/// How a number is shown, from its cell's number format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum NumberKind {
    General,
    Percent,
    Date,
    DateTime,
    /// A time of day or a duration (`[h]:mm`).
    Time,
}

/// The number kind of each cell format in `styles.xml`, by index.
fn read_styles(package: &mut Package<'_>, part: &str) -> Result<Vec<NumberKind>, ExtractError> {
    let noun = package.noun();
    let Some(reader) = package.open_part(part, MAX_PART_BYTES)? else {
        return Ok(Vec::new());
    };
    let mut custom: HashMap<u32, NumberKind> = HashMap::new();
    let mut xf_formats: Vec<u32> = Vec::new();
    let mut in_cell_xfs = false;
    walk(reader, part, noun, |event| {
        let start = matches!(event, Event::Start(_));
        match event {
            Event::Start(e) | Event::Empty(e) => match e.local_name().as_ref() {
                b"numFmt" => {
                    if let Some(id) = attr(&e, b"numFmtId").and_then(|id| id.parse().ok()) {
                        let code = attr(&e, b"formatCode").unwrap_or_default();
                        custom.insert(id, classify_format(&code));
                    }
                }
                b"cellXfs" => in_cell_xfs = start,
                b"xf" if in_cell_xfs => {
                    xf_formats.push(
                        attr(&e, b"numFmtId")
                            .and_then(|id| id.parse().ok())
                            .unwrap_or(0),
                    );
                }
                _ => {}
            },
            Event::End(e) if e.local_name().as_ref() == b"cellXfs" => in_cell_xfs = false,
            _ => {}
        }
        Ok(())
    })?;
    Ok(xf_formats
        .into_iter()
        .map(|id| {
            custom
                .get(&id)
                .copied()
                .unwrap_or_else(|| builtin_format(id))
        })
        .collect())
}

/// The kinds of Excel's built-in number formats (ECMA-376 §18.8.30; 27–36 and 50–58 are the
/// East Asian date formats).
fn builtin_format(id: u32) -> NumberKind {
    match id {
        9 | 10 => NumberKind::Percent,
        14..=17 | 27..=36 | 50..=58 => NumberKind::Date,
        18..=21 | 45..=47 => NumberKind::Time,
        22 => NumberKind::DateTime,
        _ => NumberKind::General,
    }
}

/// What a custom format code shows: date and time codes (`yyyy-mm-dd`, `h:mm`, `[h]:mm:ss`)
/// outside quoted text, escapes and bracketed colours or locales; a percent sign.
fn classify_format(code: &str) -> NumberKind {
    // Only the first section (positive numbers) matters.
    let mut letters = String::new();
    let mut chars = code.chars();
    let mut percent = false;
    while let Some(c) = chars.next() {
        match c {
            ';' => break,
            '"' => {
                for quoted in chars.by_ref() {
                    if quoted == '"' {
                        break;
                    }
                }
            }
            '\\' | '_' | '*' => {
                chars.next();
            }
            '[' => {
                let inner: String = chars.by_ref().take_while(|&c| c != ']').collect();
                let inner = inner.to_ascii_lowercase();
                // Elapsed time: [h], [mm], [ss].
                if !inner.is_empty() && inner.chars().all(|c| matches!(c, 'h' | 'm' | 's')) {
                    letters.push_str(&inner);
                }
            }
            '%' => percent = true,
            c => letters.push(c.to_ascii_lowercase()),
        }
    }
    let letters = letters
        .replace("general", "")
        .replace("am/pm", "")
        .replace("a/p", "");
    let has = |c: char| letters.contains(c);
    let time = has('h') || has('s');
    let date = has('y') || has('d') || (has('m') && !time);
    match (date, time) {
        (true, true) => NumberKind::DateTime,
        (true, false) => NumberKind::Date,
        (false, true) => NumberKind::Time,
        (false, false) if percent => NumberKind::Percent,
        (false, false) => NumberKind::General,
    }
}

/// Days from 1970-01-01 to a civil date (H. Hinnant's algorithm).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let yoe = year - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The civil date of a day count from 1970-01-01.
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    (
        if month <= 2 {
            yoe + era * 400 + 1
        } else {
            yoe + era * 400
        },
        month,
        day,
    )
}

/// An Excel serial date as ISO 8601 text; `None` when it is no date Excel can show.
fn serial_to_iso(serial: f64, kind: NumberKind, date1904: bool) -> Option<String> {
    // 9999-12-31 is the last day Excel shows.
    if !serial.is_finite() || !(0.0..2_958_466.0).contains(&serial) {
        return None;
    }
    let total_seconds = (serial * 86_400.0).round() as i64;
    let clock = |seconds: i64, hours: i64| {
        let (minutes, seconds) = ((seconds / 60) % 60, seconds % 60);
        if seconds == 0 {
            format!("{hours:02}:{minutes:02}")
        } else {
            format!("{hours:02}:{minutes:02}:{seconds:02}")
        }
    };
    if kind == NumberKind::Time {
        return Some(clock(total_seconds, total_seconds / 3600));
    }
    let (days, seconds) = (total_seconds / 86_400, total_seconds % 86_400);
    let date = if date1904 {
        let (y, m, d) = civil_from_days(days_from_civil(1904, 1, 1) + days);
        format!("{y:04}-{m:02}-{d:02}")
    } else if days == 60 {
        // Excel keeps Lotus 1-2-3's 29 February 1900.
        "1900-02-29".to_owned()
    } else {
        let epoch = if days < 60 {
            days_from_civil(1899, 12, 31)
        } else {
            days_from_civil(1899, 12, 30)
        };
        let (y, m, d) = civil_from_days(epoch + days);
        format!("{y:04}-{m:02}-{d:02}")
    };
    Some(if kind == NumberKind::DateTime {
        format!("{date} {}", clock(seconds, seconds / 3600))
    } else {
        date
    })
}

/// A number as Excel's General format shows it: at most 15 significant digits, integers
/// without a decimal point, very large or small magnitudes in exponent form.
fn general_number(x: f64) -> String {
    if x == x.trunc() && x.abs() < 1e15 {
        return format!("{}", x as i64);
    }
    let rounded: f64 = format!("{x:.14e}").parse().unwrap_or(x);
    if rounded.abs() >= 1e15 || rounded.abs() < 1e-5 {
        format!("{rounded:e}")
    } else {
        format!("{rounded}")
    }
}

/// A numeric cell's text.
fn number_text(raw: &str, kind: NumberKind, date1904: bool) -> String {
    let Ok(x) = raw.trim().parse::<f64>() else {
        return raw.trim().to_owned();
    };
    match kind {
        NumberKind::General => general_number(x),
        NumberKind::Percent => format!("{}%", general_number(x * 100.0)),
        NumberKind::Date | NumberKind::DateTime | NumberKind::Time => {
            serial_to_iso(x, kind, date1904).unwrap_or_else(|| general_number(x))
        }
    }
}

/// The 1-based column of a cell reference (`B7` → 2); `None` without letters.
fn column_of(reference: &str) -> Option<u32> {
    let mut column: u32 = 0;
    let mut letters = 0;
    for b in reference.bytes() {
        if !b.is_ascii_alphabetic() {
            break;
        }
        letters += 1;
        if letters > 3 {
            return None;
        }
        column = column * 26 + u32::from(b.to_ascii_uppercase() - b'A' + 1);
    }
    (letters > 0).then_some(column)
}

/// The cell being read: its place, type, format and the text of its value.
#[derive(Debug, Default)]
struct OpenCell {
    column: u32,
    kind: String,
    style: usize,
    raw: String,
    in_value: bool,
    inline: Option<RichText>,
}

/// Streams one worksheet's events into its page text.
struct SheetWalker<'w, 'b> {
    workbook: &'w Workbook,
    out: SheetText<'b>,
    row: Vec<Cell>,
    next_column: u32,
    cell: Option<OpenCell>,
    in_sheet_data: bool,
}

impl<'w, 'b> SheetWalker<'w, 'b> {
    fn new(workbook: &'w Workbook, name: &str, budget: &'b mut TextBudget) -> Self {
        Self {
            workbook,
            out: SheetText::new(name, budget),
            row: Vec::new(),
            next_column: 1,
            cell: None,
            in_sheet_data: false,
        }
    }

    fn event(&mut self, event: Event<'_>) -> Result<(), ExtractError> {
        match &event {
            Event::Start(e) | Event::Empty(e) => {
                let empty = matches!(event, Event::Empty(_));
                match e.local_name().as_ref() {
                    b"sheetData" => self.in_sheet_data = !empty,
                    b"row" if self.in_sheet_data => {
                        self.row.clear();
                        self.next_column = 1;
                    }
                    b"c" if self.in_sheet_data => {
                        let column = attr(e, b"r")
                            .and_then(|r| column_of(&r))
                            .unwrap_or(self.next_column);
                        self.next_column = column.saturating_add(1);
                        if !empty {
                            self.cell = Some(OpenCell {
                                column,
                                kind: attr(e, b"t").map(Cow::into_owned).unwrap_or_default(),
                                style: attr(e, b"s").and_then(|s| s.parse().ok()).unwrap_or(0),
                                ..OpenCell::default()
                            });
                        }
                    }
                    _ => {
                        if let Some(cell) = self.cell.as_mut() {
                            match e.local_name().as_ref() {
                                b"v" if !empty => cell.in_value = true,
                                b"is" if !empty => cell.inline = Some(RichText::default()),
                                _ => {
                                    if let (Some(inline), false) = (cell.inline.as_mut(), empty) {
                                        inline.event(&event);
                                    }
                                }
                            }
                        }
                    }
                }
            }
            Event::End(e) => match e.local_name().as_ref() {
                b"sheetData" => self.in_sheet_data = false,
                b"row" if self.in_sheet_data => {
                    // A cell left open by a damaged part still counts.
                    self.end_cell();
                    self.out.row(&mut self.row)?;
                }
                b"c" => self.end_cell(),
                b"v" => {
                    if let Some(cell) = self.cell.as_mut() {
                        cell.in_value = false;
                    }
                }
                _ => {
                    if let Some(inline) = self.cell.as_mut().and_then(|c| c.inline.as_mut()) {
                        inline.event(&event);
                    }
                }
            },
            Event::Text(t) => {
                if let Some(cell) = self.cell.as_mut() {
                    if cell.in_value {
                        cell.raw.push_str(&text_of(t));
                    } else if let Some(inline) = cell.inline.as_mut() {
                        inline.event(&event);
                    }
                }
            }
            Event::CData(_) => {
                if let Some(inline) = self.cell.as_mut().and_then(|c| c.inline.as_mut()) {
                    inline.event(&event);
                }
            }
            _ => {}
        }
        Ok(())
    }

    fn end_cell(&mut self) {
        let Some(cell) = self.cell.take() else {
            return;
        };
        let workbook = self.workbook;
        let (value, text) = match cell.kind.as_str() {
            "s" => (
                cell.raw
                    .trim()
                    .parse::<usize>()
                    .ok()
                    .and_then(|i| workbook.shared.get(i))
                    .map(one_line)
                    .unwrap_or_default(),
                true,
            ),
            "inlineStr" => (
                one_line(&decode_escapes(
                    &cell.inline.map(|rich| rich.text).unwrap_or_default(),
                )),
                true,
            ),
            "str" => (one_line(&decode_escapes(&cell.raw)), true),
            "b" => (
                match cell.raw.trim() {
                    "1" | "true" => "TRUE".to_owned(),
                    "0" | "false" => "FALSE".to_owned(),
                    other => one_line(other),
                },
                false,
            ),
            "d" => {
                let raw = cell.raw.trim();
                let raw = raw.strip_suffix('Z').unwrap_or(raw);
                let raw = raw.strip_suffix("T00:00:00").unwrap_or(raw);
                (one_line(&raw.replacen('T', " ", 1)), false)
            }
            "e" => (one_line(&cell.raw), false),
            _ => {
                let kind = workbook
                    .styles
                    .get(cell.style)
                    .copied()
                    .unwrap_or(NumberKind::General);
                if cell.raw.trim().is_empty() {
                    (String::new(), false)
                } else {
                    (number_text(&cell.raw, kind, workbook.date1904), false)
                }
            }
        };
        if !value.is_empty() {
            self.row.push(Cell {
                column: cell.column,
                value,
                text,
            });
        }
    }

    /// The page text; `""` for a sheet without a value.
    fn finish(mut self) -> Result<String, ExtractError> {
        self.end_cell();
        self.out.row(&mut self.row)?;
        Ok(self.out.finish()?.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::package::tests::zip_of;

    const STYLES: &str = r#"<styleSheet><numFmts count="2"><numFmt numFmtId="164" formatCode="yyyy\-mm\-dd\ hh:mm"/><numFmt numFmtId="165" formatCode="&quot;day &quot;0"/></numFmts>
<cellStyleXfs count="1"><xf numFmtId="14"/></cellStyleXfs>
<cellXfs count="6"><xf numFmtId="0"/><xf numFmtId="14" applyNumberFormat="1"/><xf numFmtId="164"/><xf numFmtId="9"/><xf numFmtId="165"/><xf numFmtId="20"/></cellXfs></styleSheet>"#;

    const SHARED: &str = r#"<sst count="6" uniqueCount="6"><si><t>Region</t></si><si><t>Revenue</t></si><si><r><t>EM</t></r><r><t xml:space="preserve">EA</t></r><rPh><t>ignored</t></rPh></si><si><t>Closed</t></si><si/><si><t>line_x000D_
two</t></si></sst>"#;

    /// A workbook of `sheets` (name, worksheet XML); a chart sheet named "Chart" comes third.
    fn workbook(sheets: &[(&str, &str)]) -> Vec<u8> {
        const TYPE: &str = "http://schemas.openxmlformats.org/officeDocument/2006/relationships";
        let mut listed = String::new();
        let mut rels = String::new();
        for (i, (name, _)) in sheets.iter().enumerate() {
            listed.push_str(&format!(
                r#"<sheet name="{name}" sheetId="{}" r:id="rS{i}"/>"#,
                i + 1
            ));
            // Targets relative to the workbook, and one absolute.
            let folder = if i == 1 {
                "/xl/worksheets"
            } else {
                "worksheets"
            };
            rels.push_str(&format!(
                r#"<Relationship Id="rS{i}" Type="{TYPE}/worksheet" Target="{folder}/sheet{}.xml"/>"#,
                i + 1
            ));
        }
        listed.push_str(r#"<sheet name="Chart" sheetId="9" r:id="rC"/>"#);
        let rels = format!(
            r#"<Relationships>{rels}<Relationship Id="rC" Type="{TYPE}/chartsheet" Target="chartsheets/sheet1.xml"/><Relationship Id="rT" Type="{TYPE}/sharedStrings" Target="sharedStrings.xml"/><Relationship Id="rY" Type="{TYPE}/styles" Target="styles.xml"/></Relationships>"#
        );
        let workbook = format!(
            r#"<workbook xmlns:r="http://schemas.openxmlformats.org/officeDocument/2006/relationships"><workbookPr/><sheets>{listed}</sheets></workbook>"#
        );
        let mut entries: Vec<(String, Vec<u8>)> = vec![
            ("xl/workbook.xml".into(), workbook.into_bytes()),
            ("xl/_rels/workbook.xml.rels".into(), rels.into_bytes()),
            ("xl/sharedStrings.xml".into(), SHARED.as_bytes().to_vec()),
            ("xl/styles.xml".into(), STYLES.as_bytes().to_vec()),
        ];
        for (i, (_, xml)) in sheets.iter().enumerate() {
            entries.push((
                format!("xl/worksheets/sheet{}.xml", i + 1),
                format!("<worksheet><sheetData>{xml}</sheetData></worksheet>").into_bytes(),
            ));
        }
        let borrowed: Vec<(&str, &[u8])> = entries
            .iter()
            .map(|(name, bytes)| (name.as_str(), bytes.as_slice()))
            .collect();
        zip_of(&borrowed)
    }

    fn pages(bytes: &[u8]) -> Vec<Page> {
        let mut package = Package::open(bytes).unwrap();
        let main = match package.identify().unwrap() {
            crate::package::Kind::Excel(main) => main,
            other => panic!("{other:?}"),
        };
        let workbook = Workbook::open(&mut package, &main).unwrap();
        let mut budget = TextBudget::new("the workbook");
        (0..workbook.len())
            .map(|i| workbook.sheet(&mut package, i, &mut budget).unwrap())
            .collect()
    }

    #[test]
    fn rows_carry_their_headers_and_values_their_types() {
        let sheet = r#"<row r="1"><c r="A1" t="s"><v>0</v></c><c r="B1" t="s"><v>1</v></c><c r="C1" t="inlineStr"><is><t>Closed on</t></is></c></row>
<row r="2"><c r="A2" t="s"><v>2</v></c><c r="B2"><f>SUM(B5:B9)</f><v>1200.5</v></c><c r="C2" s="1"><v>45352</v></c></row>
<row r="3"><c r="A3" t="str"><f>A2&amp;"-2"</f><v>EMEA-2</v></c><c r="B3" s="3"><v>0.125</v></c><c r="D3" t="b"><v>1</v></c></row>
<row r="4"><c r="B4" t="e"><f>1/0</f><v>#DIV/0!</v></c><c r="C4" s="2"><v>45352.75</v></c></row>"#;
        let page = &pages(&workbook(&[("Sales", sheet)]))[0];
        assert_eq!(
            page.text,
            "# Sales\n\n\
             Columns: Region; Revenue; Closed on.\n\n\
             - Region: EMEA; Revenue: 1200.5; Closed on: 2024-03-01.\n\
             - Region: EMEA-2; Revenue: 12.5%; TRUE.\n\
             - Revenue: #DIV/0!; Closed on: 2024-03-01 18:00."
        );
        assert!(!page.text.contains("SUM"), "formulas never show");
    }

    #[test]
    fn sheets_come_in_tab_order_with_charts_and_empties_as_blank_pages() {
        let one = r#"<row r="1"><c t="s"><v>3</v></c></row>"#;
        let two = r#"<row r="5"><c r="C5"><v>7</v></c><c r="D5" s="4"><v>3</v></c><c r="E5" s="5"><v>0.5</v></c></row>"#;
        let pages = pages(&workbook(&[("Notes", one), ("Empty", ""), ("Data", two)]));
        assert_eq!(pages.len(), 4);
        assert_eq!(pages[0].text, "# Notes\n\nClosed");
        assert_eq!(pages[1].text, "");
        assert_eq!(
            pages[1].warning.as_deref(),
            Some("sheet \"Empty\" is empty")
        );
        // Not a header: numbers. Format 165 is a number with text; 20 a time of day.
        assert_eq!(pages[2].text, "# Data\n\n- 7; 3; 12:00.");
        assert!(pages[3].warning.as_deref().unwrap().contains("chart"));
    }

    #[test]
    fn titles_before_the_header_and_a_header_alone() {
        let sheet = r#"<row r="1"><c t="inlineStr"><is><t>Budget 2024</t></is></c></row>
<row r="3"><c r="A3" t="inlineStr"><is><t>Item:</t></is></c><c r="B3"><v>2024</v></c></row>"#;
        assert_eq!(
            pages(&workbook(&[("B", sheet)]))[0].text,
            "# B\n\nBudget 2024\n\nColumns: Item; 2024."
        );
        let sheet = r#"<row r="1"><c t="inlineStr"><is><t>Title</t></is></c></row>
<row r="2"><c t="inlineStr"><is><t>Item:</t></is></c><c><v>2024</v></c></row>
<row r="3"><c t="inlineStr"><is><t>Paper</t></is></c><c><v>12</v></c></row>
<row r="4"><c t="inlineStr"><is><t>Note</t></is></c></row>"#;
        assert_eq!(
            pages(&workbook(&[("B", sheet)]))[0].text,
            "# B\n\nTitle\n\nColumns: Item; 2024.\n\n- Item: Paper; 2024: 12.\n- Item: Note."
        );
    }

    #[test]
    fn sparse_rows_and_huge_ranges_cost_nothing() {
        let sheet = r#"<row r="1"><c r="A1" t="s"><v>0</v></c><c r="XFD1" t="s"><v>1</v></c></row>
<row r="1048576"><c r="A1048576" t="s"><v>2</v></c><c r="XFD1048576"><v>5</v></c><c r="ZZZZ9"><v>6</v></c></row>"#;
        let xml = format!(r#"<dimension ref="A1:XFD1048576"/>{sheet}"#);
        let page = &pages(&workbook(&[("Wide", &xml)]))[0];
        assert_eq!(
            page.text,
            "# Wide\n\nColumns: Region; Revenue.\n\n- Region: EMEA; Revenue: 5; 6."
        );
    }

    #[test]
    fn strings_keep_their_escapes_and_lines_in_one_line() {
        let sheet = r#"<row><c t="s"><v>5</v></c><c t="s"><v>4</v></c><c t="s"><v>99</v></c><c t="s"><v>x</v></c></row>"#;
        assert_eq!(pages(&workbook(&[("S", sheet)]))[0].text, "# S\n\nline two");
    }

    #[test]
    fn format_codes() {
        for (code, kind) in [
            ("yyyy-mm-dd", NumberKind::Date),
            ("d-mmm", NumberKind::Date),
            ("mmm yy", NumberKind::Date),
            ("h:mm AM/PM", NumberKind::Time),
            ("mm:ss", NumberKind::Time),
            ("[h]:mm:ss", NumberKind::Time),
            ("dd/mm/yyyy hh:mm", NumberKind::DateTime),
            ("[$-409]mmmm d, yyyy;@", NumberKind::Date),
            ("0.0%", NumberKind::Percent),
            ("General", NumberKind::General),
            ("#,##0.00 \"days\"", NumberKind::General),
            ("[Red]0.00;[Blue]-0.00", NumberKind::General),
            ("0.00E+00", NumberKind::General),
            ("\\d0", NumberKind::General),
            ("_(* #,##0_)", NumberKind::General),
        ] {
            assert_eq!(classify_format(code), kind, "{code}");
        }
    }

    #[test]
    fn serial_dates() {
        let date = |serial, date1904| serial_to_iso(serial, NumberKind::Date, date1904);
        assert_eq!(date(1.0, false).as_deref(), Some("1900-01-01"));
        assert_eq!(date(59.0, false).as_deref(), Some("1900-02-28"));
        assert_eq!(date(60.0, false).as_deref(), Some("1900-02-29"));
        assert_eq!(date(61.0, false).as_deref(), Some("1900-03-01"));
        assert_eq!(date(45352.0, false).as_deref(), Some("2024-03-01"));
        assert_eq!(date(0.0, true).as_deref(), Some("1904-01-01"));
        assert_eq!(date(43891.0, true).as_deref(), Some("2024-03-02"));
        assert_eq!(date(2_958_465.0, false).as_deref(), Some("9999-12-31"));
        assert_eq!(date(-1.0, false), None);
        assert_eq!(date(f64::NAN, false), None);
        assert_eq!(
            serial_to_iso(1.5 + 1.0 / 86_400.0, NumberKind::Time, false).as_deref(),
            Some("36:00:01")
        );
        assert_eq!(
            serial_to_iso(45_352.999_999_9, NumberKind::DateTime, false).as_deref(),
            Some("2024-03-02 00:00")
        );
    }

    #[test]
    fn numbers_as_general_shows_them() {
        assert_eq!(general_number(1200.0), "1200");
        assert_eq!(general_number(-0.0), "0");
        assert_eq!(general_number(0.1 + 0.2), "0.3");
        assert_eq!(general_number(1.0 / 3.0), "0.333333333333333");
        assert_eq!(general_number(1e300), "1e300");
        assert_eq!(general_number(1.5e-7), "1.5e-7");
        assert_eq!(number_text("abc", NumberKind::General, false), "abc");
        assert_eq!(number_text("0.5", NumberKind::Percent, false), "50%");
    }

    #[test]
    fn column_letters() {
        assert_eq!(column_of("A1"), Some(1));
        assert_eq!(column_of("z9"), Some(26));
        assert_eq!(column_of("AA10"), Some(27));
        assert_eq!(column_of("XFD1048576"), Some(16_384));
        assert_eq!(column_of("ABCD1"), None);
        assert_eq!(column_of("17"), None);
    }

    #[test]
    fn escapes() {
        assert_eq!(decode_escapes("a_x0041_b_x12_c_xZZZZ_"), "aAb_x12_c_xZZZZ_");
    }

    #[test]
    fn shared_strings_referenced_a_million_times_stop_at_the_budget() {
        let row = r#"<c t="s"><v>0</v></c>"#.repeat(1000);
        let sheet = format!("<row>{row}</row>").repeat(10);
        let bytes = workbook(&[("Many", &sheet)]);
        let mut package = Package::open(&bytes).unwrap();
        let main = match package.identify().unwrap() {
            crate::package::Kind::Excel(main) => main,
            other => panic!("{other:?}"),
        };
        let workbook = Workbook::open(&mut package, &main).unwrap();
        let mut budget = TextBudget::with_limit("the workbook", 20_000);
        let error = workbook.sheet(&mut package, 0, &mut budget).unwrap_err();
        assert_eq!(error.kind(), "too_large");
    }
}
