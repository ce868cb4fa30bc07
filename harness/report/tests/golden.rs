//! Golden-file tests: every renderer's output for the synthetic fixture, byte for byte.
//!
//! Run with `BLESS=1 cargo test -p harness-report --test golden` to rewrite the files under
//! `tests/golden/` after an intended change, then review the diff.

use std::path::PathBuf;

use harness_report::{
    RunResult, ctrf, fixtures, html, json, junit, markdown, terminal, truth_table,
};

fn golden_path(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests")
        .join("golden")
        .join(name)
}

fn check_golden(name: &str, actual: &str) {
    let path = golden_path(name);
    if std::env::var_os("BLESS").is_some_and(|v| v == "1") {
        std::fs::write(&path, actual)
            .unwrap_or_else(|e| panic!("cannot write {}: {e}", path.display()));
        return;
    }
    let expected = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "cannot read {}: {e}; run with BLESS=1 to create it",
            path.display()
        )
    });
    if expected != actual {
        let first_diff = expected
            .lines()
            .zip(actual.lines())
            .position(|(e, a)| e != a)
            .unwrap_or_else(|| expected.lines().count().min(actual.lines().count()));
        panic!(
            "{name} differs from {} at line {}:\n  golden: {:?}\n  actual: {:?}\n\
             rerun with BLESS=1 if the change is intended",
            path.display(),
            first_diff + 1,
            expected.lines().nth(first_diff),
            actual.lines().nth(first_diff)
        );
    }
}

fn run() -> RunResult {
    fixtures::run_result()
}

#[test]
fn terminal_plain() {
    check_golden(
        "terminal.txt",
        &terminal::render_summary(&run(), &terminal::Style { color: false }),
    );
}

#[test]
fn terminal_color() {
    check_golden(
        "terminal-color.txt",
        &terminal::render_summary(&run(), &terminal::Style { color: true }),
    );
}

#[test]
fn truth_tables() {
    let run = run();
    let mut out = String::new();
    for (scenario, _, check) in run.checks() {
        if check.kind != harness_report::CheckKind::Reachability {
            continue;
        }
        out.push_str(&format!("# {} / {}\n", scenario.name, check.id));
        for tables in truth_table::tables_for_check(check) {
            out.push_str(&format!("## {} expected\n", tables.port));
            out.push_str(&tables.expected.render());
            out.push_str(&format!("## {} observed\n", tables.port));
            out.push_str(&tables.observed.render());
            out.push_str(&format!("## {} comparison\n", tables.port));
            out.push_str(&tables.comparison.render());
            out.push_str(&format!("## {} side by side\n", tables.port));
            out.push_str(&truth_table::render_side_by_side(&tables));
        }
        out.push('\n');
    }
    check_golden("truth-tables.txt", &out);
}

#[test]
fn junit_xml() {
    check_golden(
        "junit.xml",
        &junit::render(&run()).expect("fixture serializes"),
    );
}

#[test]
fn results_json() {
    check_golden("results.json", &json::render(&run()));
}

#[test]
fn ctrf_json() {
    check_golden("ctrf.json", &ctrf::render(&run()));
}

#[test]
fn summary_md() {
    check_golden("summary.md", &markdown::render(&run()));
}

#[test]
fn report_html() {
    check_golden("report.html", &html::render(&run()));
}
