//! `ctrf.json`: the run in the Common Test Report Format (<https://ctrf.io>), one test per check.
//!
//! Mapping:
//!
//! | harness | CTRF `status` | notes |
//! |---|---|---|
//! | passed | `passed` | |
//! | flaky | `passed` | `flaky: true` |
//! | failed | `failed` | `message` lists the failing cells, `trace` has truth tables and reruns |
//! | inconclusive | `other` | `rawStatus: "inconclusive"` |
//! | skipped | `skipped` | `message` is the reason |
//!
//! A scenario whose setup failed becomes one `other` test (`rawStatus: "error"`) named
//! `<scenario>: setup`; each run-level infrastructure error becomes an `other` test in suite
//! `infrastructure`. `suite` is `[scenario, step]`; `retries` is the most attempts any cell of
//! the check needed, minus one. Harness specifics (check id, kind, cell counts,
//! run metadata) live under `extra`, as the format intends.

use serde::Serialize;
use serde_json::{Map, Value, json};

use crate::json::to_pretty_json;
use crate::model::{CheckResult, RunResult, ScenarioResult, Status, StepResult};
use crate::truth_table;

/// The CTRF specification version this renderer follows.
pub const SPEC_VERSION: &str = "0.0.0";

/// A CTRF document.
#[derive(Serialize, Debug, Clone, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Document {
    /// Always `CTRF`.
    pub report_format: String,
    /// [`SPEC_VERSION`].
    pub spec_version: String,
    /// Tool that produced the document.
    pub generated_by: String,
    /// The results.
    pub results: Results,
}

/// `results`: tool, summary, tests, environment.
#[derive(Serialize, Debug, Clone, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Results {
    /// The producing tool.
    pub tool: Tool,
    /// Counts and timing.
    pub summary: CtrfSummary,
    /// One entry per check (plus setup and infrastructure errors).
    pub tests: Vec<Test>,
    /// Where it ran.
    pub environment: Environment,
}

/// `results.tool`.
#[derive(Serialize, Debug, Clone, PartialEq)]
pub struct Tool {
    /// `harness`.
    pub name: String,
    /// Harness version.
    pub version: String,
}

/// `results.summary`: counts by status, over `tests`.
#[derive(Serialize, Debug, Clone, Copy, PartialEq, Eq, Default)]
#[serde(rename_all = "camelCase")]
pub struct CtrfSummary {
    /// Number of tests.
    pub tests: usize,
    /// Tests with status `passed` (flaky included).
    pub passed: usize,
    /// Tests with status `failed`.
    pub failed: usize,
    /// Tests with status `pending` (always 0).
    pub pending: usize,
    /// Tests with status `skipped`.
    pub skipped: usize,
    /// Tests with status `other` (inconclusive, errors).
    pub other: usize,
    /// Tests marked flaky.
    pub flaky: usize,
    /// Number of suites (scenarios).
    pub suites: usize,
    /// Run start, milliseconds since the Unix epoch (0 if `startedAt` is not RFC 3339).
    pub start: i64,
    /// Run end, milliseconds since the Unix epoch.
    pub stop: i64,
    /// Run duration in milliseconds.
    pub duration: u64,
}

/// One CTRF test.
#[derive(Serialize, Debug, Clone, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Test {
    /// `<check id>: <title>`.
    pub name: String,
    /// `passed`, `failed`, `skipped`, `pending` or `other`.
    pub status: String,
    /// Milliseconds.
    pub duration: u64,
    /// The harness status when it differs from `status` (`flaky`, `inconclusive`, `error`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub raw_status: Option<String>,
    /// `[scenario, step]`.
    pub suite: Vec<String>,
    /// One line: what went wrong, or why it was skipped.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// The detail: cells explained, truth tables, rerun commands.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub trace: Option<String>,
    /// Check kind (`reachability`, `contrail`, `rbac`).
    #[serde(rename = "type")]
    pub kind: String,
    /// Scenario file.
    pub file_path: String,
    /// Scenario labels.
    pub tags: Vec<String>,
    /// Most attempts any cell needed, minus one.
    pub retries: u32,
    /// Passed only after retries.
    pub flaky: bool,
    /// Harness specifics.
    pub extra: Map<String, Value>,
}

/// `results.environment`.
#[derive(Serialize, Debug, Clone, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Environment {
    /// Report title.
    pub report_name: String,
    /// What is under test.
    pub app_name: String,
    /// `provider/dataplane/profile`.
    pub test_environment: String,
    /// True when the exit code is 0.
    pub healthy: bool,
    /// Run metadata: run id, provider, dataplane, profile, seed, command.
    pub extra: Map<String, Value>,
}

/// Builds the CTRF document of a run.
pub fn document(run: &RunResult) -> Document {
    let mut tests = Vec::new();
    for scenario in &run.scenarios {
        if let Some(error) = &scenario.setup_error {
            tests.push(error_test(
                format!("{}: setup", scenario.name),
                vec![scenario.name.clone()],
                error,
                scenario,
            ));
        }
        for step in &scenario.steps {
            for check in &step.checks {
                tests.push(check_test(scenario, step, check));
            }
        }
    }
    for (i, error) in run.infrastructure_errors.iter().enumerate() {
        tests.push(Test {
            name: format!("infrastructure error {}", i + 1),
            status: "other".into(),
            duration: 0,
            raw_status: Some(Status::Error.as_str().into()),
            suite: vec!["infrastructure".into()],
            message: Some(error.clone()),
            trace: None,
            kind: "infrastructure".into(),
            file_path: String::new(),
            tags: vec![],
            retries: 0,
            flaky: false,
            extra: Map::new(),
        });
    }

    let start = chrono::DateTime::parse_from_rfc3339(&run.started_at)
        .map(|t| t.timestamp_millis())
        .unwrap_or(0);
    let mut summary = CtrfSummary {
        suites: run.scenarios.len(),
        start,
        stop: start.saturating_add(i64::try_from(run.duration_ms).unwrap_or(i64::MAX)),
        duration: run.duration_ms,
        ..CtrfSummary::default()
    };
    for test in &tests {
        summary.tests += 1;
        match test.status.as_str() {
            "passed" => summary.passed += 1,
            "failed" => summary.failed += 1,
            "skipped" => summary.skipped += 1,
            "pending" => summary.pending += 1,
            _ => summary.other += 1,
        }
        summary.flaky += usize::from(test.flaky);
    }

    let mut env_extra = Map::new();
    env_extra.insert("runId".into(), json!(run.run_id));
    env_extra.insert("startedAt".into(), json!(run.started_at));
    env_extra.insert("provider".into(), json!(run.provider));
    env_extra.insert("dataplane".into(), json!(run.dataplane));
    env_extra.insert("profile".into(), json!(run.profile));
    env_extra.insert("seed".into(), json!(run.seed));
    env_extra.insert("command".into(), json!(run.command));
    env_extra.insert("exitCode".into(), json!(run.exit_code()));

    Document {
        report_format: "CTRF".into(),
        spec_version: SPEC_VERSION.into(),
        generated_by: format!("harness {}", run.harness_version),
        results: Results {
            tool: Tool {
                name: "harness".into(),
                version: run.harness_version.clone(),
            },
            summary,
            tests,
            environment: Environment {
                report_name: "Contrail Kubernetes conformance".into(),
                app_name: "Contrail Kubernetes networking".into(),
                test_environment: format!("{}/{}/{}", run.provider, run.dataplane, run.profile),
                healthy: run.exit_code() == crate::model::EXIT_PASSED,
                extra: env_extra,
            },
        },
    }
}

/// Renders `ctrf.json`.
pub fn render(run: &RunResult) -> String {
    to_pretty_json(&document(run))
}

fn error_test(name: String, suite: Vec<String>, error: &str, scenario: &ScenarioResult) -> Test {
    Test {
        name,
        status: "other".into(),
        duration: scenario.duration_ms,
        raw_status: Some(Status::Error.as_str().into()),
        suite,
        message: Some(error.to_string()),
        trace: None,
        kind: "setup".into(),
        file_path: scenario.file.clone(),
        tags: scenario.labels.clone(),
        retries: 0,
        flaky: false,
        extra: Map::new(),
    }
}

fn check_test(scenario: &ScenarioResult, step: &StepResult, check: &CheckResult) -> Test {
    let status = check.status();
    let (ctrf_status, raw_status) = match status {
        Status::Passed => ("passed", None),
        Status::Flaky => ("passed", Some("flaky")),
        Status::Failed => ("failed", None),
        Status::Skipped => ("skipped", None),
        Status::Inconclusive => ("other", Some("inconclusive")),
        Status::Error => ("other", Some("error")),
    };
    let summary = check.summary();
    let message = match status {
        Status::Failed => Some(format!(
            "{} of {} cells failed: {}",
            summary.failed,
            summary.cells,
            check
                .failed_cells()
                .map(|c| c.one_line(check.kind))
                .collect::<Vec<_>>()
                .join("; ")
        )),
        Status::Inconclusive => Some(format!(
            "{} of {} cells inconclusive",
            summary.inconclusive, summary.cells
        )),
        Status::Flaky => Some(format!(
            "{} of {} cells passed only on retry",
            summary.flaky, summary.cells
        )),
        Status::Skipped => check.skip_reason().map(str::to_string),
        Status::Passed | Status::Error => None,
    };
    let trace = (!matches!(status, Status::Passed | Status::Skipped)).then(|| trace_text(check));
    let retries = check
        .cells
        .iter()
        .map(|c| c.attempts.saturating_sub(1))
        .max()
        .unwrap_or(0);

    let mut extra = Map::new();
    extra.insert("checkId".into(), json!(check.id));
    extra.insert("title".into(), json!(check.title));
    extra.insert("cells".into(), json!(summary.cells));
    extra.insert("passedCells".into(), json!(summary.passed));
    extra.insert("failedCells".into(), json!(summary.failed));
    extra.insert("flakyCells".into(), json!(summary.flaky));
    extra.insert("inconclusiveCells".into(), json!(summary.inconclusive));
    extra.insert("skippedCells".into(), json!(summary.skipped));
    extra.insert("ignoredCells".into(), json!(summary.ignored));
    let reruns = check.rerun_commands();
    if !reruns.is_empty() {
        extra.insert("rerun".into(), json!(reruns));
    }

    Test {
        name: format!("{}: {}", check.id, check.title),
        status: ctrf_status.into(),
        duration: check.duration_ms,
        raw_status: raw_status.map(str::to_string),
        suite: vec![scenario.name.clone(), step.name.clone()],
        message,
        trace,
        kind: check.kind.as_str().into(),
        file_path: scenario.file.clone(),
        tags: scenario.labels.clone(),
        retries,
        flaky: status == Status::Flaky,
        extra,
    }
}

/// The long explanation shared by CTRF `trace` and JUnit failure text: cells that need
/// attention, comparison truth tables for reachability checks, rerun commands.
pub(crate) fn trace_text(check: &CheckResult) -> String {
    let mut out = String::new();
    for cell in check.notable_cells() {
        out.push_str(&format!(
            "{} {}\n",
            cell.outcome.as_str(),
            cell.one_line(check.kind)
        ));
        if !cell.explanation.is_empty() {
            out.push_str(&format!("  why: {}\n", cell.explanation));
        }
    }
    if check.kind == crate::model::CheckKind::Reachability {
        for tables in truth_table::tables_for_check(check) {
            out.push('\n');
            out.push_str(&truth_table::render_side_by_side(&tables));
        }
        out.push_str(&format!(
            "\nexpected/observed: {}\ncomparison: {}\n",
            truth_table::VERDICT_LEGEND,
            truth_table::COMPARISON_LEGEND
        ));
    }
    let reruns = check.rerun_commands();
    if !reruns.is_empty() {
        out.push_str("\nrerun:\n");
        for rerun in reruns {
            out.push_str(&format!("  {rerun}\n"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures;

    #[test]
    fn summary_counts_match_tests() {
        let doc = document(&fixtures::run_result());
        let s = doc.results.summary;
        let count = |status: &str| {
            doc.results
                .tests
                .iter()
                .filter(|t| t.status == status)
                .count()
        };
        assert_eq!(s.tests, doc.results.tests.len());
        assert_eq!(s.passed, count("passed"));
        assert_eq!(s.failed, count("failed"));
        assert_eq!(s.skipped, count("skipped"));
        assert_eq!(s.pending, count("pending"));
        assert_eq!(s.other, count("other"));
        assert_eq!(
            s.tests,
            s.passed + s.failed + s.skipped + s.pending + s.other
        );
        assert_eq!(
            s.flaky,
            doc.results.tests.iter().filter(|t| t.flaky).count()
        );
        // 5 checks + 1 setup error.
        assert_eq!(s.tests, 6);
        assert_eq!(s.failed, 2);
        assert_eq!(s.other, 1);
        assert_eq!(s.skipped, 1);
        assert_eq!(s.start, 1_736_937_000_000);
        assert_eq!(s.stop - s.start, 74_350);
    }

    #[test]
    fn statuses_are_ctrf_statuses() {
        let value: Value =
            serde_json::from_str(&render(&fixtures::run_result())).expect("valid json");
        assert_eq!(value["reportFormat"], "CTRF");
        assert_eq!(value["results"]["tool"]["name"], "harness");
        let tests = value["results"]["tests"].as_array().expect("tests array");
        for test in tests {
            let status = test["status"].as_str().expect("status");
            assert!(["passed", "failed", "skipped", "pending", "other"].contains(&status));
            assert!(test["name"].as_str().is_some_and(|n| !n.is_empty()));
            assert!(test["duration"].is_u64());
        }
    }
}
