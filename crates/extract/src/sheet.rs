//! A sheet's rows as page text, for every spreadsheet format: the sheet's name as a heading,
//! up to a few title rows as lines, the header row once (`Columns: Region; Revenue.`), then
//! each row as one list line whose cells carry their column's header (`- Region: EMEA;
//! Revenue: 1200.`), so any chunk of a long sheet can be read, cited and quoted on its own,
//! whatever rows the chunker puts together.

use crate::error::ExtractError;
use crate::package::TextBudget;

/// Header labels longer than this are cut: a header is a short name, and a long one repeated
/// on every row would multiply the text.
const MAX_LABEL_CHARS: usize = 60;
/// Rows holding a single cell (titles, notes) that may come before the header row.
const MAX_TITLE_ROWS: usize = 5;

/// A non-empty cell of a row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cell {
    /// 1-based column.
    pub column: u32,
    pub value: String,
    /// Text (a string, not a number, date or flag): what a header is made of.
    pub text: bool,
}

impl Cell {
    /// Whether a header row could hold this cell: text, or a year such as 2024.
    fn label_like(&self) -> bool {
        self.text
            || self
                .value
                .parse::<u32>()
                .is_ok_and(|year| (1900..=2100).contains(&year))
    }
}

/// Where a sheet's rows stand with respect to a header row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum HeaderState {
    /// Still looking; this many single-cell title rows were seen.
    Looking(usize),
    Found,
    None,
}

/// One sheet's page text as its rows arrive. Keeps only the header and the text.
#[derive(Debug)]
pub struct SheetText<'b> {
    budget: &'b mut TextBudget,
    text: String,
    state: HeaderState,
    /// The header's labels by column, in column order.
    header: Vec<(u32, String)>,
    /// Whether the text ends with a row line.
    last_was_row: bool,
}

impl<'b> SheetText<'b> {
    pub fn new(name: &str, budget: &'b mut TextBudget) -> Self {
        Self {
            budget,
            text: format!("# {}", one_line(name)),
            state: HeaderState::Looking(0),
            header: Vec::new(),
            last_was_row: false,
        }
    }

    /// Adds a row's non-empty cells, in column order, and empties `row` for the next one
    /// (keeping its allocation). An empty row adds nothing.
    pub fn row(&mut self, cells: &mut Vec<Cell>) -> Result<(), ExtractError> {
        if cells.is_empty() {
            return Ok(());
        }
        let row = std::mem::take(cells);
        match self.state {
            HeaderState::Looking(titles) => {
                if row.len() >= 2 && row.iter().all(Cell::label_like) {
                    self.header = row
                        .iter()
                        .map(|cell| (cell.column, label(&cell.value)))
                        .collect();
                    self.header.sort_by_key(|(column, _)| *column);
                    self.state = HeaderState::Found;
                    // The header once as it is, so no label is lost when no row uses it.
                    let names: Vec<String> = row
                        .iter()
                        .map(|cell| one_line(cell.value.trim_end().trim_end_matches(':')))
                        .collect();
                    let line = format!("Columns: {}.", names.join("; "));
                    self.append("\n\n", &line)?;
                } else if row.len() == 1 && titles < MAX_TITLE_ROWS {
                    self.state = HeaderState::Looking(titles + 1);
                    let title = row[0].value.clone();
                    self.append("\n\n", &title)?;
                } else {
                    self.state = HeaderState::None;
                    self.write_row(&row, false)?;
                }
            }
            HeaderState::Found => self.write_row(&row, true)?,
            HeaderState::None => self.write_row(&row, false)?,
        }
        *cells = row;
        cells.clear();
        Ok(())
    }

    /// Writes a row as a list line, its cells labelled by the header when `labelled`.
    fn write_row(&mut self, row: &[Cell], labelled: bool) -> Result<(), ExtractError> {
        let mut line = String::from("- ");
        for (i, cell) in row.iter().enumerate() {
            if i > 0 {
                line.push_str("; ");
            }
            let label = labelled
                .then(|| {
                    self.header
                        .binary_search_by_key(&cell.column, |(column, _)| *column)
                        .ok()
                        .map(|at| self.header[at].1.as_str())
                })
                .flatten();
            if let Some(label) = label {
                line.push_str(label);
                line.push_str(": ");
            }
            line.push_str(&cell.value);
        }
        if !line.ends_with(['.', '!', '?']) {
            line.push('.');
        }
        // Rows follow each other line by line (one list block); a title starts a new block.
        let separator = if self.last_was_row { "\n" } else { "\n\n" };
        self.append(separator, &line)?;
        self.last_was_row = true;
        Ok(())
    }

    fn append(&mut self, separator: &str, text: &str) -> Result<(), ExtractError> {
        self.budget.take(separator.len() + text.len())?;
        self.text.push_str(separator);
        self.text.push_str(text);
        self.last_was_row = false;
        Ok(())
    }

    /// The page text (`""` for a sheet without a value), and the budget back.
    pub fn finish(self) -> Result<(String, &'b mut TextBudget), ExtractError> {
        let has_values = self.text.contains('\n');
        let text = if has_values { self.text } else { String::new() };
        Ok((text, self.budget))
    }
}

/// One line of text: whitespace runs (line breaks in cells) become single spaces.
pub fn one_line(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for word in text.split_whitespace() {
        if !out.is_empty() {
            out.push(' ');
        }
        out.push_str(word);
    }
    out
}

/// A header cell as a label: one line, without a trailing colon, cut to a short name.
fn label(value: &str) -> String {
    let value = one_line(value);
    let value = value.trim_end_matches(':').trim_end();
    if value.chars().count() <= MAX_LABEL_CHARS {
        return value.to_owned();
    }
    let mut cut: String = value.chars().take(MAX_LABEL_CHARS).collect();
    cut.push('…');
    cut
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cell(column: u32, value: &str, text: bool) -> Cell {
        Cell {
            column,
            value: value.into(),
            text,
        }
    }

    fn render(rows: &[Vec<Cell>]) -> String {
        let mut budget = TextBudget::new("the workbook");
        let mut sheet = SheetText::new("S\nheet", &mut budget);
        for row in rows {
            sheet.row(&mut row.clone()).unwrap();
        }
        sheet.finish().unwrap().0
    }

    #[test]
    fn a_header_labels_the_rows_below_it() {
        let rows = vec![
            vec![cell(1, "Title", true)],
            vec![cell(1, "Name", true), cell(3, "Start:", true)],
            vec![
                cell(1, "Ann", true),
                cell(2, "x", true),
                cell(3, "2024-03-01", false),
            ],
            vec![],
            vec![cell(3, "Done!", true)],
        ];
        assert_eq!(
            render(&rows),
            "# S heet\n\nTitle\n\nColumns: Name; Start.\n\n- Name: Ann; x; Start: 2024-03-01.\n- Start: Done!"
        );
    }

    #[test]
    fn numbers_first_means_no_header() {
        let rows = vec![
            vec![cell(1, "Ann", true), cell(2, "35", false)],
            vec![cell(1, "Bo", true), cell(2, "41", false)],
        ];
        assert_eq!(render(&rows), "# S heet\n\n- Ann; 35.\n- Bo; 41.");
        let years = vec![
            vec![cell(2, "2023", false), cell(3, "2024", false)],
            vec![
                cell(1, "Sales", true),
                cell(2, "10", false),
                cell(3, "12", false),
            ],
        ];
        assert_eq!(
            render(&years),
            "# S heet\n\nColumns: 2023; 2024.\n\n- Sales; 2023: 10; 2024: 12."
        );
        assert_eq!(render(&[]), "");
    }

    #[test]
    fn labels_are_short_names() {
        assert_eq!(label("  Start\n date: "), "Start date");
        let long = "x".repeat(100);
        assert_eq!(label(&long).chars().count(), MAX_LABEL_CHARS + 1);
    }
}
