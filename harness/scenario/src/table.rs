//! Literal truth tables in the upstream NetworkPolicy e2e style: rows = from, columns = to,
//! `.` allowed, `X` denied.
//!
//! ```text
//! -   x/a x/b
//! x/a .   X
//! x/b X   .
//! ```

use std::collections::BTreeMap;

use crate::model::ExpectedVerdict;
use crate::peer::Peer;

/// What one cell of a literal table says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TableCell {
    /// `.`, `D`, `R`, `X`.
    Expect(ExpectedVerdict),
    /// `?`: not checked.
    DontCare,
}

impl TableCell {
    pub fn symbol(self) -> char {
        match self {
            TableCell::Expect(ExpectedVerdict::Allow) => '.',
            TableCell::Expect(ExpectedVerdict::Drop) => 'D',
            TableCell::Expect(ExpectedVerdict::Reject) => 'R',
            TableCell::Expect(_) => 'X',
            TableCell::DontCare => '?',
        }
    }
}

/// A parsed literal truth table.
#[derive(Clone, Debug, PartialEq)]
pub struct TruthTable {
    pub rows: Vec<Peer>,
    pub columns: Vec<Peer>,
    pub cells: BTreeMap<(usize, usize), TableCell>,
}

/// A problem in a table, positioned relative to the table text (0-based line, 0-based column).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TableError {
    pub line: usize,
    pub column: usize,
    pub message: String,
}

impl TruthTable {
    /// Parse a table. The first non-empty line is the header: an optional corner token
    /// (`-`) then the column peers; every other non-empty line is a row peer followed by one
    /// symbol per column.
    ///
    /// # Errors
    /// A [`TableError`] positioned at the offending token: an unknown symbol, a row with too
    /// few or too many cells, a bad or repeated peer, a table with no rows.
    pub fn parse(text: &str) -> Result<TruthTable, TableError> {
        let mut lines = text
            .lines()
            .enumerate()
            .filter(|(_, l)| !l.trim().is_empty());
        let Some((hline, header)) = lines.next() else {
            return Err(TableError { line: 0, column: 0, message: "the truth table is empty: write a header row of destination peers, then one row per source".into() });
        };
        let mut htoks = tokens(header);
        if htoks.first().is_some_and(|(_, t)| {
            *t == "-" || *t == "." || t.parse::<Peer>().is_err() && !t.contains('/')
        }) {
            htoks.remove(0);
        }
        let mut columns = Vec::new();
        for (col, tok) in &htoks {
            let peer = tok.parse::<Peer>().map_err(|e| TableError {
                line: hline,
                column: *col,
                message: format!("bad column peer: {e}"),
            })?;
            if columns.contains(&peer) {
                return Err(TableError {
                    line: hline,
                    column: *col,
                    message: format!("column `{tok}` appears twice"),
                });
            }
            columns.push(peer);
        }
        if columns.is_empty() {
            return Err(TableError {
                line: hline,
                column: 0,
                message: "the header row names no destination peers: write `-  x/a x/b ...`".into(),
            });
        }
        let mut rows = Vec::new();
        let mut cells = BTreeMap::new();
        for (lno, line) in lines {
            let toks = tokens(line);
            let (col0, first) = toks[0];
            let peer = first.parse::<Peer>().map_err(|e| TableError {
                line: lno,
                column: col0,
                message: format!("bad row peer: {e}"),
            })?;
            if rows.contains(&peer) {
                return Err(TableError {
                    line: lno,
                    column: col0,
                    message: format!("row `{first}` appears twice"),
                });
            }
            let symbols = &toks[1..];
            if symbols.len() != columns.len() {
                let at = symbols
                    .get(columns.len())
                    .map(|(c, _)| *c)
                    .unwrap_or(line.trim_end().len());
                return Err(TableError {
                    line: lno,
                    column: at,
                    message: format!(
                        "row `{first}` has {} cells but the header has {} columns: one of . X D R ? per column",
                        symbols.len(),
                        columns.len()
                    ),
                });
            }
            let r = rows.len();
            for (c, (col, sym)) in symbols.iter().enumerate() {
                let cell = match *sym {
                    "." => TableCell::Expect(ExpectedVerdict::Allow),
                    "X" | "x" => TableCell::Expect(ExpectedVerdict::Deny),
                    "D" => TableCell::Expect(ExpectedVerdict::Drop),
                    "R" => TableCell::Expect(ExpectedVerdict::Reject),
                    "?" => TableCell::DontCare,
                    other => {
                        return Err(TableError {
                            line: lno,
                            column: *col,
                            message: format!(
                                "unknown cell `{other}`: use . (allow), X (deny), D (drop), R (reject) or ? (not checked)"
                            ),
                        });
                    }
                };
                cells.insert((r, c), cell);
            }
            rows.push(peer);
        }
        if rows.is_empty() {
            return Err(TableError {
                line: hline,
                column: 0,
                message: "the truth table has a header but no rows".into(),
            });
        }
        Ok(TruthTable {
            rows,
            columns,
            cells,
        })
    }

    /// The cell for a (row peer, column peer), if both are in the table.
    pub fn get(&self, from: &Peer, to: &Peer) -> Option<TableCell> {
        let r = self.rows.iter().position(|p| p == from)?;
        let c = self.columns.iter().position(|p| p == to)?;
        self.cells.get(&(r, c)).copied()
    }
}

fn tokens(line: &str) -> Vec<(usize, &str)> {
    let mut out = Vec::new();
    let mut start = None;
    for (i, ch) in line.char_indices() {
        if ch.is_whitespace() {
            if let Some(s) = start.take() {
                out.push((s, &line[s..i]));
            }
        } else if start.is_none() {
            start = Some(i);
        }
    }
    if let Some(s) = start {
        out.push((s, &line[s..]));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_upstream_style() {
        let t = TruthTable::parse("-   x/a x/b\nx/a X   .\nx/b .   ?\n").unwrap();
        assert_eq!(t.rows.len(), 2);
        let (a, b): (Peer, Peer) = ("x/a".parse().unwrap(), "x/b".parse().unwrap());
        assert_eq!(
            t.get(&a, &a),
            Some(TableCell::Expect(ExpectedVerdict::Deny))
        );
        assert_eq!(
            t.get(&a, &b),
            Some(TableCell::Expect(ExpectedVerdict::Allow))
        );
        assert_eq!(t.get(&b, &b), Some(TableCell::DontCare));
    }

    #[test]
    fn positions_errors() {
        let e = TruthTable::parse("- x/a x/b\nx/a . X .\n").unwrap_err();
        assert_eq!((e.line, e.column), (1, 8));
        let e = TruthTable::parse("- x/a\nx/a Q\n").unwrap_err();
        assert_eq!((e.line, e.column), (1, 4));
        assert!(e.message.contains("unknown cell"));
        assert!(TruthTable::parse("").is_err());
        assert!(TruthTable::parse("- x/a\n").is_err());
        assert!(TruthTable::parse("- x/a x/a\nx/a . .\n").is_err());
    }
}
