//! ODS (OpenDocument spreadsheets): `content.xml` streamed table by table into the same pages
//! as XLSX sheets. Cells give the text the spreadsheet shows (dates as ISO 8601 from their
//! value), never formulas; comments are left out. Repeated empty rows and cells (how
//! OpenDocument writes the rest of the grid) are skipped without being expanded.

use quick_xml::events::Event;

use crate::error::ExtractError;
use crate::package::{attr, text_of, walk, Package, Page, TextBudget, MAX_STREAMED_PART_BYTES};
use crate::sheet::{one_line, Cell, SheetText};

/// Columns and rows in the largest sheet LibreOffice makes: repeats beyond them are not
/// expanded.
const MAX_COLUMNS: u32 = 16_384;
const MAX_ROWS: u32 = 1_048_576;

/// The pages of an OpenDocument spreadsheet, one per table, in order.
pub fn extract(
    package: &mut Package<'_>,
    budget: &mut TextBudget,
) -> Result<Vec<Page>, ExtractError> {
    let noun = package.noun();
    let reader = package
        .open_part("content.xml", MAX_STREAMED_PART_BYTES)?
        .ok_or_else(|| {
            ExtractError::corrupt(format_args!("{noun} is damaged: content.xml is missing"))
        })?;
    let mut walker = Walker {
        budget: Some(budget),
        pages: Vec::new(),
        sheet: None,
        table_depth: 0,
        row: Vec::new(),
        row_repeat: 1,
        column: 1,
        cell: None,
        annotation: 0,
    };
    walk(reader, "content.xml", noun, |event| walker.event(&event))?;
    Ok(walker.pages)
}

/// The cell being read.
#[derive(Debug, Default)]
struct OpenCell {
    repeat: u32,
    value_type: String,
    /// The value attribute that matters for the type (a date's ISO date, a number).
    value: String,
    paragraphs: Vec<String>,
    paragraph: Option<String>,
}

struct Walker<'b> {
    /// The file's text budget, lent to the open sheet while there is one.
    budget: Option<&'b mut TextBudget>,
    pages: Vec<Page>,
    /// The open table's name and text.
    sheet: Option<(String, SheetText<'b>)>,
    table_depth: usize,
    row: Vec<Cell>,
    row_repeat: u32,
    column: u32,
    cell: Option<OpenCell>,
    /// Depth inside `office:annotation` (comments: skipped).
    annotation: usize,
}

fn repeat(e: &quick_xml::events::BytesStart<'_>, name: &[u8], max: u32) -> u32 {
    attr(e, name)
        .and_then(|n| n.parse::<u32>().ok())
        .unwrap_or(1)
        .clamp(1, max)
}

impl<'b> Walker<'b> {
    fn event(&mut self, event: &Event<'_>) -> Result<(), ExtractError> {
        match event {
            Event::Start(e) | Event::Empty(e) => {
                let empty = matches!(event, Event::Empty(_));
                match e.local_name().as_ref() {
                    b"annotation" if !empty => self.annotation += 1,
                    _ if self.annotation > 0 => {}
                    b"table" if !empty => {
                        self.table_depth += 1;
                        if let (1, Some(budget)) = (self.table_depth, self.budget.take()) {
                            let name = one_line(&attr(e, b"name").unwrap_or_default());
                            let name = if name.is_empty() {
                                format!("Sheet {}", self.pages.len() + 1)
                            } else {
                                name
                            };
                            let text = SheetText::new(&name, budget);
                            self.sheet = Some((name, text));
                        }
                    }
                    _ if self.table_depth != 1 => {}
                    b"table-row" => {
                        self.row.clear();
                        self.column = 1;
                        self.row_repeat = repeat(e, b"number-rows-repeated", MAX_ROWS);
                    }
                    b"table-cell" | b"covered-table-cell" => {
                        let repeat = repeat(e, b"number-columns-repeated", MAX_COLUMNS);
                        let value_type = attr(e, b"value-type").unwrap_or_default().into_owned();
                        let value_attr: &[u8] = match value_type.as_str() {
                            "date" => b"date-value",
                            "time" => b"time-value",
                            "boolean" => b"boolean-value",
                            _ => b"value",
                        };
                        self.cell = Some(OpenCell {
                            repeat,
                            value: attr(e, value_attr).unwrap_or_default().into_owned(),
                            value_type,
                            ..OpenCell::default()
                        });
                        // A cell without content may still have a value (a number).
                        if empty {
                            self.end_cell();
                        }
                    }
                    b"p" | b"h" if !empty => {
                        if let Some(cell) = self.cell.as_mut() {
                            cell.paragraph = Some(String::new());
                        }
                    }
                    b"s" | b"tab" | b"line-break" => {
                        if let Some(paragraph) = self.paragraph() {
                            paragraph.push(' ');
                        }
                    }
                    _ => {}
                }
            }
            Event::End(e) => match e.local_name().as_ref() {
                b"annotation" => self.annotation = self.annotation.saturating_sub(1),
                _ if self.annotation > 0 => {}
                b"table" => {
                    if self.table_depth == 1 {
                        self.end_table()?;
                    }
                    self.table_depth = self.table_depth.saturating_sub(1);
                }
                _ if self.table_depth != 1 => {}
                b"p" | b"h" => {
                    if let Some(cell) = self.cell.as_mut() {
                        if let Some(paragraph) = cell.paragraph.take() {
                            cell.paragraphs.push(paragraph);
                        }
                    }
                }
                b"table-cell" | b"covered-table-cell" => self.end_cell(),
                b"table-row" => self.end_row()?,
                _ => {}
            },
            Event::Text(t) if self.annotation == 0 => {
                if let Some(paragraph) = self.paragraph() {
                    paragraph.push_str(&text_of(t));
                }
            }
            _ => {}
        }
        Ok(())
    }

    fn paragraph(&mut self) -> Option<&mut String> {
        self.cell.as_mut()?.paragraph.as_mut()
    }

    fn end_cell(&mut self) {
        let Some(cell) = self.cell.take() else {
            return;
        };
        let shown = one_line(&cell.paragraphs.join(" "));
        let (value, text) = match cell.value_type.as_str() {
            "date" if !cell.value.is_empty() => {
                let value = cell.value.trim();
                let value = value.strip_suffix("T00:00:00").unwrap_or(value);
                (value.replacen('T', " ", 1), false)
            }
            "" | "string" => (shown, true),
            _ if shown.is_empty() => (one_line(&cell.value), false),
            _ => (shown, false),
        };
        let column = self.column;
        self.column = self.column.saturating_add(cell.repeat);
        if value.is_empty() {
            return;
        }
        let last = MAX_COLUMNS.saturating_add(1).min(self.column);
        for column in column..last {
            self.row.push(Cell {
                column,
                value: value.clone(),
                text,
            });
        }
    }

    fn end_row(&mut self) -> Result<(), ExtractError> {
        self.end_cell();
        let Some((_, sheet)) = self.sheet.as_mut() else {
            return Ok(());
        };
        if self.row.is_empty() {
            return Ok(());
        }
        for _ in 1..self.row_repeat {
            sheet.row(&mut self.row.clone())?;
        }
        sheet.row(&mut self.row)
    }

    fn end_table(&mut self) -> Result<(), ExtractError> {
        let Some((name, sheet)) = self.sheet.take() else {
            return Ok(());
        };
        let (text, budget) = sheet.finish()?;
        self.budget = Some(budget);
        let warning = text
            .is_empty()
            .then(|| format!("sheet \"{name}\" is empty"));
        self.pages.push(Page { text, warning });
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::package::tests::zip_of;
    use crate::package::Kind;

    fn ods(tables: &str) -> Vec<u8> {
        let content = format!(
            r#"<office:document-content xmlns:office="urn:oasis:names:tc:opendocument:xmlns:office:1.0" xmlns:table="urn:oasis:names:tc:opendocument:xmlns:table:1.0" xmlns:text="urn:oasis:names:tc:opendocument:xmlns:text:1.0"><office:body><office:spreadsheet>{tables}</office:spreadsheet></office:body></office:document-content>"#
        );
        zip_of(&[
            (
                "mimetype",
                b"application/vnd.oasis.opendocument.spreadsheet",
            ),
            ("content.xml", content.as_bytes()),
        ])
    }

    fn pages(bytes: &[u8]) -> Result<Vec<Page>, ExtractError> {
        let mut package = Package::open(bytes).unwrap();
        assert_eq!(package.identify().unwrap(), Kind::OpenDocumentSpreadsheet);
        let mut budget = TextBudget::new("the spreadsheet");
        extract(&mut package, &mut budget)
    }

    const S: &str = r#"<table:table-cell office:value-type="string"><text:p>"#;
    const E: &str = "</text:p></table:table-cell>";

    #[test]
    fn tables_become_pages_with_headers_and_shown_values() {
        let tables = format!(
            r#"<table:table table:name="Budget"><table:table-column table:number-columns-repeated="3"/>
<table:table-row>{S}Item{E}{S}Cost{E}{S}Due{E}</table:table-row>
<table:table-row>{S}Paper <text:span>A4</text:span><office:annotation><text:p>a comment</text:p></office:annotation>{E}<table:table-cell table:formula="of:=[.B5]*2" office:value-type="currency" office:value="12.5"><text:p>12,50 €</text:p></table:table-cell><table:table-cell office:value-type="date" office:date-value="2024-03-01"><text:p>01/03/24</text:p></table:table-cell></table:table-row>
<table:table-row table:number-rows-repeated="1048570"><table:table-cell table:number-columns-repeated="16384"/></table:table-row>
<table:table-row table:number-rows-repeated="2"><table:table-cell/><table:table-cell office:value-type="float" office:value="3"/></table:table-row>
</table:table><table:table table:name="Empty"><table:table-row><table:table-cell/></table:table-row></table:table>"#
        );
        let pages = pages(&ods(&tables)).unwrap();
        assert_eq!(pages.len(), 2);
        assert_eq!(
            pages[0].text,
            "# Budget\n\nColumns: Item; Cost; Due.\n\n- Item: Paper A4; Cost: 12,50 €; Due: 2024-03-01.\n- Cost: 3.\n- Cost: 3."
        );
        assert_eq!(pages[1].text, "");
        assert_eq!(
            pages[1].warning.as_deref(),
            Some("sheet \"Empty\" is empty")
        );
    }

    #[test]
    fn repeated_cells_fill_their_columns_within_the_grid() {
        let tables = format!(
            r#"<table:table table:name="T"><table:table-row><table:table-cell table:number-columns-repeated="16383"/>{}</table:table-row></table:table>"#,
            r#"<table:table-cell table:number-columns-repeated="4000000000" office:value-type="string"><text:p>x</text:p></table:table-cell>"#
        );
        let pages = pages(&ods(&tables)).unwrap();
        assert_eq!(pages[0].text, "# T\n\nx");
    }

    #[test]
    fn identical_rows_repeated_a_million_times_stop_at_the_budget() {
        let tables = format!(
            r#"<table:table table:name="T"><table:table-row table:number-rows-repeated="1000000">{S}{}{E}</table:table-row></table:table>"#,
            "x".repeat(100)
        );
        let error = pages(&ods(&tables)).unwrap_err();
        assert_eq!(error.kind(), "too_large");
    }
}
