//! Aligned columns, as kubectl prints them: upper-case headers, left-aligned cells, three spaces
//! between columns, no trailing spaces. An empty cell prints as `—`, so that no column is ever
//! blank (scripts split on runs of spaces; they should use `-o json`).

/// What an empty cell prints as.
pub const NONE: &str = "—";

/// A table: a header and rows of the same width.
#[derive(Debug, Clone, Default)]
pub struct Table {
    header: Vec<String>,
    rows: Vec<Vec<String>>,
}

impl Table {
    /// A table with these column names.
    pub fn new<I, S>(header: I) -> Table
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        Table {
            header: header.into_iter().map(Into::into).collect(),
            rows: Vec::new(),
        }
    }

    /// Adds a row (missing cells are empty, extra cells are dropped).
    pub fn row<I, S>(&mut self, cells: I)
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let mut row: Vec<String> = cells.into_iter().map(Into::into).collect();
        row.resize(self.header.len(), String::new());
        self.rows.push(row);
    }

    /// Whether it has no rows.
    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// The widths of the columns (in characters).
    pub fn widths(&self) -> Vec<usize> {
        let mut widths: Vec<usize> = self.header.iter().map(|h| h.chars().count()).collect();
        for row in &self.rows {
            for (w, cell) in widths.iter_mut().zip(row) {
                *w = (*w).max(cell_text(cell).chars().count());
            }
        }
        widths
    }

    /// The table as text, each line prefixed by `indent`.
    pub fn render(&self, indent: &str) -> String {
        let widths = self.widths();
        let mut out = String::new();
        let header: Vec<String> = self.header.iter().map(|h| h.to_uppercase()).collect();
        for row in std::iter::once(&header).chain(&self.rows) {
            out.push_str(indent);
            out.push_str(&line(row, &widths));
            out.push('\n');
        }
        out
    }
}

/// One row as a line with these column widths (a wider cell pushes the next ones right), without
/// a newline.
pub fn line(row: &[String], widths: &[usize]) -> String {
    let mut line = String::new();
    for (i, (cell, width)) in row.iter().zip(widths).enumerate() {
        let text = cell_text(cell);
        line.push_str(text);
        if i + 1 < widths.len() {
            let pad = width.saturating_sub(text.chars().count()) + 3;
            line.extend(std::iter::repeat_n(' ', pad));
        }
    }
    line.trim_end().to_owned()
}

fn cell_text(cell: &str) -> &str {
    if cell.is_empty() { NONE } else { cell }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_align_and_empty_cells_show_a_dash() {
        let mut t = Table::new(["name", "ready", "key"]);
        t.row(["deploy-bot", "True", "abcd1234"]);
        t.row(["x", "False (ServiceKeyRejected)", ""]);
        assert_eq!(
            t.render(""),
            "NAME         READY                        KEY\n\
             deploy-bot   True                         abcd1234\n\
             x            False (ServiceKeyRejected)   —\n"
        );
        assert_eq!(
            t.render("  ").lines().next(),
            Some("  NAME         READY                        KEY")
        );
        let empty = Table::new(["a"]);
        assert!(empty.is_empty());
        assert_eq!(empty.render(""), "A\n");
    }
}
