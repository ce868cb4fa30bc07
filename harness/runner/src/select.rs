//! `--only REGEX`: which checks and cells run.
//!
//! The regex is matched (unanchored) against each check id (`baseline/reachability-1`) and
//! each cell key (`baseline/reachability-1[x/a -> x/b TCP/80]`). A check runs when its id or
//! one of its cell keys matches; a cell runs when its key matches or its check id does. So
//! `--only baseline` runs every check of the step `baseline`, and the rerun command a failing
//! cell prints, `--only '^baseline/reachability-1\[x/a -> x/b TCP/80\]$'`, runs just that cell.
//! Steps always run their actions, so the cluster is in the same state as in the full run.

use regex::Regex;

/// A compiled `--only`.
#[derive(Clone, Debug, Default)]
pub struct Selection {
    only: Option<Regex>,
}

impl Selection {
    /// Everything.
    pub fn all() -> Self {
        Selection { only: None }
    }

    /// From `--only`.
    ///
    /// # Errors
    /// The regex does not compile (the message says where).
    pub fn only(pattern: &str) -> Result<Self, String> {
        Regex::new(pattern)
            .map(|r| Selection { only: Some(r) })
            .map_err(|e| format!("--only: {e}"))
    }

    /// Whether a check may run: its id matches, or the pattern names one of its cells (then
    /// only those cells run).
    pub fn check(&self, id: &str) -> bool {
        match &self.only {
            None => true,
            Some(r) => {
                r.is_match(id) || r.as_str().contains(&regex::escape(id)) || names_cell_of(r, id)
            }
        }
    }

    /// Whether a cell (by key) runs.
    pub fn cell(&self, key: &str) -> bool {
        match &self.only {
            None => true,
            Some(r) => {
                r.is_match(key)
                    || key
                        .split_once('[')
                        .is_some_and(|(id, _)| r.is_match(id) && !names_cell_of(r, id))
            }
        }
    }
}

/// Whether the pattern looks like a cell key of this check (`^id\[...`).
fn names_cell_of(r: &Regex, id: &str) -> bool {
    let pat = r.as_str().trim_start_matches('^');
    pat.starts_with(&format!("{}\\[", regex::escape(id)))
}

/// The `--only` value that selects exactly one cell.
pub fn only_cell(key: &str) -> String {
    format!("^{}$", regex::escape(key))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_rerun_pattern_selects_one_cell() {
        let key = "baseline/reachability-1[x/a -> x/b TCP/80]";
        let s = Selection::only(&only_cell(key)).unwrap();
        assert!(s.check("baseline/reachability-1"));
        assert!(!s.check("baseline/reachability-2"));
        assert!(s.cell(key));
        assert!(!s.cell("baseline/reachability-1[x/a -> x/c TCP/80]"));
    }

    #[test]
    fn a_check_pattern_selects_its_cells() {
        let s = Selection::only("baseline").unwrap();
        assert!(s.check("baseline/reachability-1"));
        assert!(s.cell("baseline/reachability-1[x/a -> x/c TCP/80]"));
        assert!(!s.check("after/contrail-1"));
        assert!(Selection::only("(").is_err());
        assert!(Selection::all().cell("anything"));
    }
}
