//! Result model and renderers of the conformance harness: terminal, truth tables, JUnit XML,
//! JSON, CTRF, Markdown and self-contained HTML.
//!
//! The runner produces a [`RunResult`]; every renderer here turns it into a `String` and never
//! prints. Only [`write_all`] touches the file system. Renderers are deterministic: no clock, no
//! randomness, model order everywhere, so reports can be diffed and golden-tested.
//!
//! # Usage
//!
//! ```no_run
//! use harness_report::{terminal, write_all, RunResult};
//!
//! # fn run() -> RunResult { harness_report::fixtures::run_result() }
//! let result: RunResult = run();
//! print!("{}", terminal::render_summary(&result, &terminal::Style { color: false }));
//! let written = write_all("reports/latest".as_ref(), &result)?;
//! std::process::exit(i32::from(result.exit_code()));
//! # Ok::<(), std::io::Error>(())
//! ```

#![warn(missing_docs)]

pub mod ctrf;
pub mod escape;
#[doc(hidden)]
pub mod fixtures;
pub mod html;
pub mod json;
pub mod junit;
pub mod markdown;
pub mod model;
pub mod terminal;
pub mod truth_table;

use std::path::{Path, PathBuf};

pub use model::{
    CellResult, CheckKind, CheckResult, EXIT_BAD_INPUT, EXIT_FAILED, EXIT_INFRASTRUCTURE,
    EXIT_INTERRUPTED, EXIT_PASSED, MatrixShape, Outcome, RunResult, ScenarioResult, Status,
    StepResult, Summary,
};
pub use truth_table::{PortTables, TruthTable, tables_for_check};

/// File name of the JUnit XML report.
pub const JUNIT_FILE: &str = "junit.xml";
/// File name of the JSON results.
pub const RESULTS_FILE: &str = "results.json";
/// File name of the CTRF report.
pub const CTRF_FILE: &str = "ctrf.json";
/// File name of the Markdown summary (for a CI step summary).
pub const SUMMARY_FILE: &str = "summary.md";
/// File name of the HTML report.
pub const HTML_FILE: &str = "report.html";

/// Writes every file report of `run` into `dir` (created if needed) and returns their paths, in
/// the order `junit.xml`, `results.json`, `ctrf.json`, `summary.md`, `report.html`.
///
/// These file names are a public contract (CI configurations point at them). Evidence paths in
/// the result are relative to `dir`; this function does not write or check evidence.
///
/// # Errors
///
/// Any I/O error creating `dir` or writing a file; a JUnit serialization error is reported as an
/// [`std::io::ErrorKind::Other`] error.
pub fn write_all(dir: &Path, run: &RunResult) -> std::io::Result<Vec<PathBuf>> {
    std::fs::create_dir_all(dir)?;
    let junit = junit::render(run)
        .map_err(|e| std::io::Error::other(format!("could not serialize the JUnit report: {e}")))?;
    let files = [
        (JUNIT_FILE, junit),
        (RESULTS_FILE, json::render(run)),
        (CTRF_FILE, ctrf::render(run)),
        (SUMMARY_FILE, markdown::render(run)),
        (HTML_FILE, html::render(run)),
    ];
    let mut written = Vec::with_capacity(files.len());
    for (name, contents) in files {
        let path = dir.join(name);
        std::fs::write(&path, contents)?;
        written.push(path);
    }
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn write_all_writes_the_contract_files() {
        let dir =
            std::env::temp_dir().join(format!("harness-report-write-all-{}", std::process::id()));
        let written = write_all(&dir.join("nested"), &fixtures::run_result()).expect("writes");
        let names: Vec<_> = written
            .iter()
            .filter_map(|p| p.file_name().and_then(|n| n.to_str()))
            .collect();
        assert_eq!(
            names,
            vec![
                "junit.xml",
                "results.json",
                "ctrf.json",
                "summary.md",
                "report.html"
            ]
        );
        for path in &written {
            let len = std::fs::metadata(path).expect("exists").len();
            assert!(len > 0, "{} is empty", path.display());
        }
        std::fs::remove_dir_all(&dir).expect("cleanup");
    }
}
