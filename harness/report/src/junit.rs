//! `junit.xml`: JUnit XML for CI systems, via quick-junit.
//!
//! One `<testsuite>` per scenario, one `<testcase>` per check (`classname` = scenario name,
//! `name` = `<check id>: <title>`), timings in seconds:
//!
//! - failed → `<failure>`: the message lists the failing cells (`from → to port: expected X,
//!   observed Y — detail`), the text explains every cell that needs attention and carries the
//!   truth tables and rerun commands;
//! - inconclusive → `<error>` with the same kind of text;
//! - skipped → `<skipped>` with the reason;
//! - flaky → a passing test case with one `<flakyFailure>` per flaky cell;
//! - ignored cells are listed in the test case's `<system-out>`.
//!
//! A scenario whose setup failed gets a `setup` test case with an `<error>`; run-level
//! infrastructure errors get a testsuite `infrastructure` with one errored test case each, so a
//! CI system never shows green for a run that could not stand up.

use std::time::Duration;

use quick_junit::{
    NonSuccessKind, Property, Report, TestCase, TestCaseStatus, TestRerun, TestSuite,
};

use crate::model::{CheckResult, Outcome, RunResult, ScenarioResult, Status};

/// Renders `junit.xml`.
///
/// # Errors
///
/// quick-junit's serialization error; writing to memory does not fail in practice.
pub fn render(run: &RunResult) -> Result<String, quick_junit::SerializeError> {
    report(run).to_string()
}

/// Builds the quick-junit report of a run, for callers that want to add to it.
pub fn report(run: &RunResult) -> Report {
    let mut report = Report::new(format!("harness {}", run.run_id));
    report.set_time(Duration::from_millis(run.duration_ms));
    let timestamp = chrono::DateTime::parse_from_rfc3339(&run.started_at).ok();
    if let Some(ts) = timestamp {
        report.set_timestamp(ts);
    }

    for scenario in &run.scenarios {
        let mut suite = TestSuite::new(scenario.name.as_str());
        suite.set_time(Duration::from_millis(scenario.duration_ms));
        suite.add_properties([
            Property::new("file", scenario.file.as_str()),
            Property::new("labels", scenario.labels.join(",")),
            Property::new("provider", run.provider.as_str()),
            Property::new("dataplane", run.dataplane.as_str()),
            Property::new("profile", run.profile.as_str()),
            Property::new("seed", run.seed.to_string()),
        ]);
        if let Some(error) = &scenario.setup_error {
            suite.add_test_case(setup_case(scenario, error));
        }
        for step in &scenario.steps {
            for check in &step.checks {
                suite.add_test_case(check_case(scenario, check));
            }
        }
        report.add_test_suite(suite);
    }

    if !run.infrastructure_errors.is_empty() {
        let mut suite = TestSuite::new("infrastructure");
        for (i, error) in run.infrastructure_errors.iter().enumerate() {
            let mut status = TestCaseStatus::non_success(NonSuccessKind::Error);
            status
                .set_message(first_line(error))
                .set_type("infrastructure error")
                .set_description(error.as_str());
            let mut case = TestCase::new(format!("infrastructure error {}", i + 1), status);
            case.set_classname("infrastructure");
            suite.add_test_case(case);
        }
        report.add_test_suite(suite);
    }
    report
}

fn first_line(text: &str) -> &str {
    text.lines().next().unwrap_or_default()
}

fn setup_case(scenario: &ScenarioResult, error: &str) -> TestCase {
    let mut status = TestCaseStatus::non_success(NonSuccessKind::Error);
    status
        .set_message(first_line(error))
        .set_type("setup error")
        .set_description(format!("{error}\nfile: {}\n", scenario.file));
    let mut case = TestCase::new("setup", status);
    case.set_classname(scenario.name.as_str());
    case
}

fn check_case(scenario: &ScenarioResult, check: &CheckResult) -> TestCase {
    let summary = check.summary();
    let kind = check.kind.as_str();
    let status = match check.status() {
        Status::Failed => {
            let cells: Vec<String> = check
                .failed_cells()
                .map(|c| c.one_line(check.kind))
                .collect();
            let mut status = TestCaseStatus::non_success(NonSuccessKind::Failure);
            status
                .set_message(format!(
                    "{} of {} cells failed: {}",
                    summary.failed,
                    summary.cells,
                    cells.join("; ")
                ))
                .set_type(format!("{kind} mismatch"))
                .set_description(crate::ctrf::trace_text(check));
            status
        }
        Status::Inconclusive | Status::Error => {
            let cells: Vec<String> = check
                .cells
                .iter()
                .filter(|c| matches!(c.outcome, Outcome::Inconclusive { .. }))
                .map(|c| c.one_line(check.kind))
                .collect();
            let mut status = TestCaseStatus::non_success(NonSuccessKind::Error);
            status
                .set_message(format!(
                    "{} of {} cells inconclusive: {}",
                    summary.inconclusive,
                    summary.cells,
                    cells.join("; ")
                ))
                .set_type("inconclusive")
                .set_description(crate::ctrf::trace_text(check));
            status
        }
        Status::Skipped => {
            let mut status = TestCaseStatus::skipped();
            if let Some(reason) = check.skip_reason() {
                status.set_message(reason);
            }
            status
        }
        Status::Flaky | Status::Passed => {
            let mut status = TestCaseStatus::success();
            for cell in check
                .cells
                .iter()
                .filter(|c| matches!(c.outcome, Outcome::Flaky))
            {
                let mut rerun = TestRerun::new(NonSuccessKind::Failure);
                rerun
                    .set_message(format!(
                        "{} passed on attempt {}",
                        cell.label(check.kind),
                        cell.attempts
                    ))
                    .set_type("flaky");
                let mut text = cell.one_line(check.kind);
                if let Some(command) = &cell.rerun {
                    text.push_str(&format!("\nrerun: {command}"));
                }
                rerun.set_description(text);
                status.add_rerun(rerun);
            }
            status
        }
    };

    let mut case = TestCase::new(format!("{}: {}", check.id, check.title), status);
    case.set_classname(scenario.name.as_str())
        .set_time(Duration::from_millis(check.duration_ms))
        .set_assertions(summary.cells);
    let ignored: Vec<String> = check
        .cells
        .iter()
        .filter(|c| matches!(c.outcome, Outcome::Ignored { .. }))
        .map(|c| format!("ignored {}", c.one_line(check.kind)))
        .collect();
    if !ignored.is_empty() {
        case.set_system_out(ignored.join("\n") + "\n");
    }
    case
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures;
    use crate::model::Outcome;

    fn parse(xml: &str) -> Report {
        Report::deserialize_from_str(xml).expect("junit.xml is well-formed and parses")
    }

    #[test]
    fn xml_parses_and_has_one_suite_per_scenario() {
        let run = fixtures::run_result();
        let xml = render(&run).expect("serializes");
        let report = parse(&xml);
        assert_eq!(report.test_suites.len(), 2);
        assert_eq!(report.tests, 6);
        assert_eq!(report.failures, 2);
        assert_eq!(report.errors, 1);
        let suite = &report.test_suites[0];
        assert_eq!(suite.name.as_str(), "netpol-deny-all-ingress");
        assert_eq!(suite.test_cases.len(), 5);
        assert_eq!(suite.skipped, 1);
        assert!(xml.contains("x/a → x/b TCP/80: expected deny, observed allow"));
        assert!(xml.contains("time=\"8.750\""));
    }

    #[test]
    fn flaky_and_inconclusive_checks() {
        let mut run = fixtures::run_result();
        // Only the flaky and inconclusive cells remain notable once failures pass.
        for scenario in &mut run.scenarios {
            for step in &mut scenario.steps {
                for check in &mut step.checks {
                    for cell in &mut check.cells {
                        if cell.outcome == Outcome::Failed {
                            cell.outcome = Outcome::Passed;
                        }
                    }
                }
            }
        }
        let report = parse(&render(&run).expect("serializes"));
        let matrix = report.test_suites[0]
            .test_cases
            .iter()
            .find(|c| c.name.starts_with(fixtures::MATRIX_CHECK_ID))
            .expect("matrix case");
        assert!(matches!(
            matrix.status,
            TestCaseStatus::NonSuccess {
                kind: NonSuccessKind::Error,
                ..
            }
        ));

        let matrix_cells = &mut run.scenarios[0].steps[1].checks[0].cells;
        for cell in matrix_cells.iter_mut() {
            if matches!(cell.outcome, Outcome::Inconclusive { .. }) {
                cell.outcome = Outcome::Passed;
            }
        }
        let xml = render(&run).expect("serializes");
        assert!(xml.contains("<flakyFailure"));
        let report = parse(&xml);
        let matrix = report.test_suites[0]
            .test_cases
            .iter()
            .find(|c| c.name.starts_with(fixtures::MATRIX_CHECK_ID))
            .expect("matrix case");
        match &matrix.status {
            TestCaseStatus::Success { flaky_runs } => assert_eq!(flaky_runs.len(), 1),
            other => panic!("expected a flaky success, got {other:?}"),
        }
    }

    #[test]
    fn infrastructure_errors_get_their_own_suite() {
        let mut run = fixtures::run_result();
        run.infrastructure_errors
            .push("kind: cluster creation failed: docker not running".into());
        let report = parse(&render(&run).expect("serializes"));
        let last = report.test_suites.last().expect("suite");
        assert_eq!(last.name.as_str(), "infrastructure");
        assert_eq!(last.errors, 1);
    }
}
