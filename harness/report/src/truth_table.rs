//! Truth tables in the style of the upstream Kubernetes NetworkPolicy e2e tests.
//!
//! Rows are sources (`from`), columns are destinations (`to`), one character per cell:
//!
//! ```text
//! -   x/a x/b x/c
//! x/a .   X   X
//! x/b .   .   X
//! ```
//!
//! A reachability check renders three tables per port (see [`tables_for_check`]):
//!
//! - **expected** and **observed**: `.` allowed, `X` denied, `D` dropped and `R` rejected when
//!   the expectation is specifically a drop or a reject (the marks of the scenario language's
//!   literal tables), `?` no verdict, `-` skipped or not part of the check. An observed drop or
//!   reject shows as `X` when only a denial was expected, so matching tables look alike;
//! - **comparison**: `.` matches, `X` mismatch, `?` inconclusive, `~` flaky, `-` skipped or
//!   ignored.
//!
//! A cell that was never [`set`](TruthTable::set) renders as [`TruthTable::UNSET`].

use std::collections::BTreeMap;

use crate::model::{CheckResult, Outcome};

/// Legend of the expected and observed tables, one line.
pub const VERDICT_LEGEND: &str =
    ". allowed   X denied   D dropped   R rejected   ? no verdict   - skipped";
/// Legend of the comparison table, one line.
pub const COMPARISON_LEGEND: &str =
    ". match   X mismatch   ? inconclusive   ~ flaky   - skipped/ignored";

/// A matrix of one-character marks with named rows and columns.
///
/// # Usage
///
/// ```
/// use harness_report::truth_table::TruthTable;
///
/// let peers = vec!["x/a".to_string(), "x/b".to_string()];
/// let mut table = TruthTable::new(peers.clone(), peers);
/// table.set("x/a", "x/a", '.');
/// table.set("x/a", "x/b", 'X');
/// table.set("x/b", "x/a", '.');
/// table.set("x/b", "x/b", '.');
/// assert_eq!(table.render(), "-   x/a x/b\nx/a .   X\nx/b .   .\n");
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TruthTable {
    rows: Vec<String>,
    columns: Vec<String>,
    cells: BTreeMap<(String, String), char>,
}

impl TruthTable {
    /// The mark rendered for a cell that was never set.
    pub const UNSET: char = '-';

    /// An empty table with the given axes (rows = from, columns = to), in display order.
    pub fn new(rows: Vec<String>, columns: Vec<String>) -> Self {
        TruthTable {
            rows,
            columns,
            cells: BTreeMap::new(),
        }
    }

    /// Sets the mark of the cell (`row`, `col`). A row or column not among the axes is appended
    /// to them, so no mark is ever silently dropped.
    pub fn set(&mut self, row: &str, col: &str, mark: char) -> &mut Self {
        if !self.rows.iter().any(|r| r == row) {
            self.rows.push(row.to_string());
        }
        if !self.columns.iter().any(|c| c == col) {
            self.columns.push(col.to_string());
        }
        self.cells.insert((row.to_string(), col.to_string()), mark);
        self
    }

    /// Sets every cell of the table to `mark`.
    pub fn fill(&mut self, mark: char) -> &mut Self {
        for row in &self.rows {
            for col in &self.columns {
                self.cells.insert((row.clone(), col.clone()), mark);
            }
        }
        self
    }

    /// The mark of the cell (`row`, `col`), if it was set.
    pub fn get(&self, row: &str, col: &str) -> Option<char> {
        self.cells.get(&(row.to_string(), col.to_string())).copied()
    }

    /// Row names (sources), in display order.
    pub fn rows(&self) -> &[String] {
        &self.rows
    }

    /// Column names (destinations), in display order.
    pub fn columns(&self) -> &[String] {
        &self.columns
    }

    /// Renders the table: header `-` then the column names, one line per row, columns
    /// separated by one space and left-aligned, no trailing spaces, every line ending in `\n`.
    pub fn render(&self) -> String {
        let mut out = String::new();
        for line in self.lines(|_| None) {
            out.push_str(&line.text);
            out.push('\n');
        }
        out
    }

    /// Renders each line, wrapping marks in the (prefix, suffix) that `paint` returns for them
    /// (used for ANSI colour); `width` is the visible width of the line.
    pub(crate) fn lines(
        &self,
        paint: impl Fn(char) -> Option<(&'static str, &'static str)>,
    ) -> Vec<RenderedLine> {
        let first_width = self
            .rows
            .iter()
            .map(|r| r.chars().count())
            .chain(std::iter::once(1))
            .max()
            .unwrap_or(1);
        let widths: Vec<usize> = self
            .columns
            .iter()
            .map(|c| c.chars().count().max(1))
            .collect();

        let mut lines = Vec::with_capacity(self.rows.len() + 1);
        let header = std::iter::once(("-", first_width))
            .chain(
                self.columns
                    .iter()
                    .zip(&widths)
                    .map(|(c, w)| (c.as_str(), *w)),
            )
            .map(|(text, width)| (text.to_string(), text.chars().count(), width));
        lines.push(join_padded(header));

        for row in &self.rows {
            let marks = self.columns.iter().zip(&widths).map(|(col, width)| {
                let mark = self.get(row, col).unwrap_or(Self::UNSET);
                let text = match paint(mark) {
                    Some((prefix, suffix)) => format!("{prefix}{mark}{suffix}"),
                    None => mark.to_string(),
                };
                (text, 1, *width)
            });
            let cells =
                std::iter::once((row.clone(), row.chars().count(), first_width)).chain(marks);
            lines.push(join_padded(cells));
        }
        lines
    }
}

/// One rendered line of a table and its visible width (without colour escapes).
pub(crate) struct RenderedLine {
    pub text: String,
    pub width: usize,
}

/// Joins (text, visible width, column width) with single spaces, padding every cell but the
/// last, so lines carry no trailing spaces.
fn join_padded(cells: impl Iterator<Item = (String, usize, usize)>) -> RenderedLine {
    let cells: Vec<_> = cells.collect();
    let mut text = String::new();
    let mut width = 0;
    let last = cells.len().saturating_sub(1);
    for (i, (cell, visible, column)) in cells.into_iter().enumerate() {
        if i > 0 {
            text.push(' ');
            width += 1;
        }
        text.push_str(&cell);
        width += visible;
        if i < last {
            let pad = column.saturating_sub(visible);
            text.extend(std::iter::repeat_n(' ', pad));
            width += pad;
        }
    }
    RenderedLine { text, width }
}

/// The three truth tables of one port of a reachability check.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PortTables {
    /// The port these tables are about (`TCP/80`).
    pub port: String,
    /// What the oracle expects.
    pub expected: TruthTable,
    /// What was observed.
    pub observed: TruthTable,
    /// Expected versus observed, per cell outcome.
    pub comparison: TruthTable,
}

/// The expected/observed mark of a verdict word: `.` allow, `X` deny, `D` drop and `R` reject
/// (both `X` unless `specific`), `?` anything else.
///
/// Expected tables pass `specific = true`; observed tables pass whether the cell's expectation
/// was itself a drop or a reject.
pub fn verdict_mark(verdict: &str, specific: bool) -> char {
    let denial = |mark| if specific { mark } else { 'X' };
    match verdict.trim().to_ascii_lowercase().as_str() {
        "allow" | "allowed" | "accept" | "accepted" | "connected" | "pass" => '.',
        "reject" | "rejected" | "refused" | "unreachable" => denial('R'),
        "drop" | "dropped" | "timeout" => denial('D'),
        "deny" | "denied" | "blocked" => 'X',
        _ => '?',
    }
}

/// The comparison mark of a cell outcome.
pub fn comparison_mark(outcome: &Outcome) -> char {
    match outcome {
        Outcome::Passed => '.',
        Outcome::Failed => 'X',
        Outcome::Flaky => '~',
        Outcome::Inconclusive { .. } => '?',
        Outcome::Skipped { .. } | Outcome::Ignored { .. } => '-',
    }
}

/// True when the expectation names a specific kind of denial (drop or reject).
fn is_specific(expected: &str) -> bool {
    matches!(verdict_mark(expected, true), 'D' | 'R')
}

/// Builds the expected, observed and comparison tables of a check, one [`PortTables`] per port.
///
/// Axes come from the check's [`MatrixShape`](crate::model::MatrixShape) when it has one, else
/// from the cells in the order they first appear. A check without cells or ports yields no
/// tables. Meant for reachability checks; other kinds produce tables too but they rarely read
/// well.
pub fn tables_for_check(check: &CheckResult) -> Vec<PortTables> {
    let (mut rows, mut columns, mut ports) = match &check.matrix {
        Some(shape) => (
            shape.rows.clone(),
            shape.columns.clone(),
            shape.ports.clone(),
        ),
        None => (Vec::new(), Vec::new(), Vec::new()),
    };
    for cell in &check.cells {
        push_unique(&mut rows, &cell.from);
        push_unique(&mut columns, &cell.to);
        push_unique(&mut ports, &cell.port);
    }

    ports
        .into_iter()
        .map(|port| {
            let mut expected = TruthTable::new(rows.clone(), columns.clone());
            let mut observed = TruthTable::new(rows.clone(), columns.clone());
            let mut comparison = TruthTable::new(rows.clone(), columns.clone());
            for cell in check.cells.iter().filter(|c| c.port == port) {
                expected.set(&cell.from, &cell.to, verdict_mark(&cell.expected, true));
                let seen = match &cell.outcome {
                    Outcome::Skipped { .. } => '-',
                    Outcome::Inconclusive { .. } => '?',
                    _ => verdict_mark(&cell.observed, is_specific(&cell.expected)),
                };
                observed.set(&cell.from, &cell.to, seen);
                comparison.set(&cell.from, &cell.to, comparison_mark(&cell.outcome));
            }
            PortTables {
                port,
                expected,
                observed,
                comparison,
            }
        })
        .collect()
}

fn push_unique(list: &mut Vec<String>, item: &str) {
    if !list.iter().any(|i| i == item) {
        list.push(item.to_string());
    }
}

/// Renders the three tables of one port side by side, with a title line:
///
/// ```text
/// TCP/80
/// expected          observed          comparison
/// -   x/a x/b       -   x/a x/b       -   x/a x/b
/// ```
pub fn render_side_by_side(tables: &PortTables) -> String {
    side_by_side(tables, |_| None, |_| None)
}

/// Side-by-side rendering with painters for verdict marks and comparison marks.
pub(crate) fn side_by_side(
    tables: &PortTables,
    paint_verdict: impl Fn(char) -> Option<(&'static str, &'static str)> + Copy,
    paint_comparison: impl Fn(char) -> Option<(&'static str, &'static str)>,
) -> String {
    const GAP: &str = "   ";
    let blocks = [
        ("expected", tables.expected.lines(paint_verdict)),
        ("observed", tables.observed.lines(paint_verdict)),
        ("comparison", tables.comparison.lines(paint_comparison)),
    ];
    let widths: Vec<usize> = blocks
        .iter()
        .map(|(title, lines)| {
            lines
                .iter()
                .map(|l| l.width)
                .chain(std::iter::once(title.len()))
                .max()
                .unwrap_or(0)
        })
        .collect();
    let height = blocks.iter().map(|(_, l)| l.len()).max().unwrap_or(0);

    let mut out = format!("{}\n", tables.port);
    let titles: Vec<(String, usize)> = blocks
        .iter()
        .map(|(title, _)| (title.to_string(), title.len()))
        .collect();
    push_row(&mut out, &titles, &widths, GAP);
    for i in 0..height {
        let row: Vec<(String, usize)> = blocks
            .iter()
            .map(|(_, lines)| {
                lines
                    .get(i)
                    .map(|l| (l.text.clone(), l.width))
                    .unwrap_or_default()
            })
            .collect();
        push_row(&mut out, &row, &widths, GAP);
    }
    out
}

fn push_row(out: &mut String, cells: &[(String, usize)], widths: &[usize], gap: &str) {
    let mut line = String::new();
    let last = cells.len().saturating_sub(1);
    for (i, ((text, width), column)) in cells.iter().zip(widths).enumerate() {
        if i > 0 {
            line.push_str(gap);
        }
        line.push_str(text);
        if i < last {
            line.extend(std::iter::repeat_n(' ', column.saturating_sub(*width)));
        }
    }
    out.push_str(line.trim_end_matches(' '));
    out.push('\n');
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures;

    fn names(items: &[&str]) -> Vec<String> {
        items.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn renders_upstream_style() {
        let peers = names(&["x/a", "x/b", "x/c"]);
        let mut t = TruthTable::new(peers.clone(), peers);
        t.fill('X');
        t.set("x/a", "x/a", '.');
        t.set("x/b", "x/a", '.').set("x/b", "x/b", '.');
        assert_eq!(
            t.render(),
            "-   x/a x/b x/c\nx/a .   X   X\nx/b .   .   X\nx/c X   X   X\n"
        );
    }

    #[test]
    fn aligns_long_names() {
        let rows = names(&["default/client-long-name", "y/b"]);
        let cols = names(&["svc:x/frontend", "z/c", "host:cloud-db"]);
        let mut t = TruthTable::new(rows, cols);
        t.fill('.');
        t.set("y/b", "z/c", 'X');
        let rendered = t.render();
        let lines: Vec<&str> = rendered.lines().collect();
        assert_eq!(
            lines,
            vec![
                "-                        svc:x/frontend z/c host:cloud-db",
                "default/client-long-name .              .   .",
                "y/b                      .              X   .",
            ]
        );
        // Every mark sits under the first character of its column name.
        let col = lines[0].find("z/c").expect("column present");
        assert_eq!(lines[2].as_bytes()[col], b'X');
        assert!(rendered.lines().all(|l| !l.ends_with(' ')));
    }

    #[test]
    fn unset_cells_and_unknown_axes() {
        let mut t = TruthTable::new(names(&["a"]), names(&["b"]));
        t.set("c", "d", 'X');
        assert_eq!(t.rows(), &names(&["a", "c"])[..]);
        assert_eq!(t.columns(), &names(&["b", "d"])[..]);
        assert_eq!(t.get("a", "b"), None);
        assert_eq!(t.render(), "- b d\na - -\nc - X\n");
    }

    #[test]
    fn verdict_marks() {
        assert_eq!(verdict_mark("allow", false), '.');
        assert_eq!(verdict_mark("deny", true), 'X');
        assert_eq!(verdict_mark("Drop", false), 'X');
        assert_eq!(verdict_mark("drop", true), 'D');
        assert_eq!(verdict_mark("reject", false), 'X');
        assert_eq!(verdict_mark("reject", true), 'R');
        assert_eq!(verdict_mark("", false), '?');
        assert!(is_specific("reject") && is_specific("drop") && !is_specific("deny"));
    }

    #[test]
    fn check_tables_follow_cells() {
        let run = fixtures::run_result();
        let check = run
            .checks()
            .map(|(_, _, c)| c)
            .find(|c| c.id == fixtures::MATRIX_CHECK_ID)
            .expect("fixture has the matrix check");
        let tables = tables_for_check(check);
        assert_eq!(tables.len(), 2);
        assert_eq!(tables[0].port, "TCP/80");
        let tcp = &tables[0];
        assert_eq!(tcp.expected.get("x/a", "x/b"), Some('X'));
        assert_eq!(tcp.observed.get("x/a", "x/b"), Some('.'));
        assert_eq!(tcp.comparison.get("x/a", "x/b"), Some('X'));
        assert_eq!(tcp.comparison.get("x/a", "x/a"), Some('-'));
        assert_eq!(tcp.comparison.get("y/a", "y/b"), Some('~'));
        let udp = &tables[1];
        assert_eq!(udp.comparison.get("z/a", "y/b"), Some('?'));
        assert_eq!(udp.observed.get("z/a", "y/b"), Some('?'));
    }

    #[test]
    fn specific_denials_show_only_when_expected() {
        let mut check = fixtures::run_result().scenarios[0].steps[1].checks[0].clone();
        check.matrix = None;
        check.cells.truncate(3);
        // x/a → x/b expects a reject and sees a drop; x/a → y/b expects deny and sees a reject.
        check.cells[1].expected = "reject".into();
        check.cells[1].observed = "drop".into();
        check.cells[2].expected = "deny".into();
        check.cells[2].observed = "reject".into();
        let tables = tables_for_check(&check);
        assert_eq!(tables.len(), 1);
        assert_eq!(tables[0].expected.get("x/a", "x/b"), Some('R'));
        assert_eq!(tables[0].observed.get("x/a", "x/b"), Some('D'));
        assert_eq!(tables[0].expected.get("x/a", "y/b"), Some('X'));
        assert_eq!(tables[0].observed.get("x/a", "y/b"), Some('X'));
        assert_eq!(tables[0].expected.rows(), &["x/a".to_string()][..]);
    }

    #[test]
    fn side_by_side_aligns_blocks() {
        let peers = names(&["x/a", "x/b"]);
        let mut t = TruthTable::new(peers.clone(), peers);
        t.fill('.');
        let tables = PortTables {
            port: "TCP/80".into(),
            expected: t.clone(),
            observed: t.clone(),
            comparison: t,
        };
        assert_eq!(
            render_side_by_side(&tables),
            "TCP/80\n\
             expected      observed      comparison\n\
             -   x/a x/b   -   x/a x/b   -   x/a x/b\n\
             x/a .   .     x/a .   .     x/a .   .\n\
             x/b .   .     x/b .   .     x/b .   .\n"
        );
    }
}
