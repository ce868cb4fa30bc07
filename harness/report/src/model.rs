//! The result model: what a run produced, cell by cell, and the verdicts derived from it.
//!
//! The runner fills these types; every renderer in this crate reads them and nothing else.
//! Verdicts are never stored above the cell level: the status of a check, step, scenario or
//! run is always derived from its cells (plus setup and infrastructure errors), so a renderer
//! cannot disagree with another one about what failed.
//!
//! # Aggregation
//!
//! Statuses combine by precedence, highest first:
//! [`Status::Failed`] > [`Status::Error`] > [`Status::Inconclusive`] > [`Status::Flaky`] >
//! [`Status::Passed`] > [`Status::Skipped`].
//!
//! - a cell maps to a status through its [`Outcome`]; an [`Outcome::Ignored`] cell (for example a
//!   loopback cell) counts as skipped for aggregation, so it can never fail or pass a check;
//! - a check with no cells, or only skipped / ignored cells, is [`Status::Skipped`]: a check that
//!   observed nothing never passes vacuously;
//! - a step with no checks (it only changed the cluster) is [`Status::Passed`];
//! - a scenario with a `setup_error` is at least [`Status::Error`]; a scenario with no steps and
//!   no setup error is [`Status::Skipped`];
//! - a run with `infrastructure_errors` is at least [`Status::Error`].
//!
//! # Exit codes
//!
//! [`RunResult::exit_code`] follows the product contract: `0` everything passed (flaky cells
//! allowed, and reported), `1` a check failed, `3` an infrastructure problem (a setup error, an
//! infrastructure error, or an inconclusive cell). A failure wins over an infrastructure problem.
//! `2` (bad input) and `130` (interrupted) are decided by the CLI before a result exists; the
//! constants are here so there is one list.

use serde::{Deserialize, Serialize};

/// Exit code: every check passed (flaky cells are allowed and reported).
pub const EXIT_PASSED: u8 = 0;
/// Exit code: at least one check failed.
pub const EXIT_FAILED: u8 = 1;
/// Exit code: bad input (scenario or arguments); decided by the CLI, never by a result.
pub const EXIT_BAD_INPUT: u8 = 2;
/// Exit code: infrastructure error (could not stand up, setup error, inconclusive cells).
pub const EXIT_INFRASTRUCTURE: u8 = 3;
/// Exit code: interrupted (after cleanup); decided by the CLI.
pub const EXIT_INTERRUPTED: u8 = 130;

/// One run of the harness: every scenario it ran, with the context needed to reproduce it.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct RunResult {
    /// Unique id of this run (names the report directory and appears in every format).
    pub run_id: String,
    /// When the run started, RFC 3339, supplied by the caller (this crate reads no clock).
    pub started_at: String,
    /// Wall-clock duration of the whole run.
    pub duration_ms: u64,
    /// Version of the harness that produced the result.
    pub harness_version: String,
    /// The argv of the invocation, program name first.
    pub command: Vec<String>,
    /// Provider name: `sim`, `kind` or `existing`.
    pub provider: String,
    /// Dataplane name: `model`, `netns` or `cluster`.
    pub dataplane: String,
    /// Contrail semantics profile (`upstream`, `r5.0`) or the real Contrail's version.
    pub profile: String,
    /// Seed that orders the run; rerunning with it reproduces the order.
    pub seed: u64,
    /// Scenario results, in the order they ran.
    pub scenarios: Vec<ScenarioResult>,
    /// Problems outside any one scenario (provider could not stand up, cleanup failed…).
    pub infrastructure_errors: Vec<String>,
}

/// The result of one scenario file.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct ScenarioResult {
    /// Scenario name (from the file's `name:`).
    pub name: String,
    /// Path of the scenario file, as given on the command line.
    pub file: String,
    /// Labels of the scenario.
    pub labels: Vec<String>,
    /// The scenario's description, if it has one.
    pub description: Option<String>,
    /// Wall-clock duration of the scenario, setup included.
    pub duration_ms: u64,
    /// Why the scenario could not be set up (resources not applied, pods never ready…).
    pub setup_error: Option<String>,
    /// Step results, in order.
    pub steps: Vec<StepResult>,
}

/// The result of one step of a scenario.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct StepResult {
    /// Step name.
    pub name: String,
    /// Wall-clock duration of the step (changes and checks).
    pub duration_ms: u64,
    /// Check results, in the order the step declares them.
    pub checks: Vec<CheckResult>,
}

/// What a check looks at.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[serde(rename_all = "camelCase")]
pub enum CheckKind {
    /// Probes between peers: cells are (from, to, port).
    Reachability,
    /// Assertions on Contrail config objects: cells are (object type, fq_name, field).
    Contrail,
    /// RBAC decisions: cells are (subject, "verb resource -n ns").
    Rbac,
}

impl CheckKind {
    /// Lower-case name, as used in every format.
    pub fn as_str(self) -> &'static str {
        match self {
            CheckKind::Reachability => "reachability",
            CheckKind::Contrail => "contrail",
            CheckKind::Rbac => "rbac",
        }
    }
}

impl std::fmt::Display for CheckKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The result of one check (one `expect:` entry): a set of cells.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct CheckResult {
    /// Stable id, unique within its scenario, e.g. `baseline/reachability-1`.
    pub id: String,
    /// What the check looks at.
    pub kind: CheckKind,
    /// One-line human title.
    pub title: String,
    /// Wall-clock duration of the check, waits included.
    pub duration_ms: u64,
    /// Every cell of the check, in row-major order for matrices.
    pub cells: Vec<CellResult>,
    /// A note on the whole check (e.g. why it was skipped).
    pub message: Option<String>,
    /// The truth-table axes of a reachability check (rows = from, columns = to).
    pub matrix: Option<MatrixShape>,
}

/// The axes of a reachability truth table, in display order.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "camelCase")]
pub struct MatrixShape {
    /// Sources (`from` peers), one table row each.
    pub rows: Vec<String>,
    /// Destinations (`to` peers), one table column each.
    pub columns: Vec<String>,
    /// Ports, one table each (`TCP/80`, `UDP/53`, `ICMP`…).
    pub ports: Vec<String>,
}

/// One cell: a single expectation compared with what was observed.
///
/// The meaning of `from`, `to` and `port` depends on the check's [`CheckKind`]:
///
/// | kind | `from` | `to` | `port` |
/// |---|---|---|---|
/// | reachability | source peer | destination peer | `TCP/80`… |
/// | rbac | subject | `verb resource -n ns` | empty |
/// | contrail | object type | fq_name joined by `:` | field |
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct CellResult {
    /// Source peer, RBAC subject, or Contrail object type.
    pub from: String,
    /// Destination peer, RBAC request, or Contrail fq_name.
    pub to: String,
    /// Port/protocol, Contrail field, or empty for RBAC.
    pub port: String,
    /// What the oracle expects (`allow`, `deny`, `reject`, or a value).
    pub expected: String,
    /// What was observed (`allow`, `drop`, `reject`, a value, or empty if nothing was).
    pub observed: String,
    /// The verdict for this cell.
    pub outcome: Outcome,
    /// Why the oracle expects what it expects.
    pub explanation: String,
    /// Where and why the observation happened, e.g.
    /// `dropped at vrouter node-2 by firewall rule k8s-denyall/x-ingress-deny-all-denyall`.
    pub observed_detail: Option<String>,
    /// Time from the change until the cell reached its final observation.
    pub converged_after_ms: Option<u64>,
    /// Number of attempts made (1 when the first attempt settled it).
    pub attempts: u32,
    /// The source and destination are the same endpoint.
    pub loopback: bool,
    /// Evidence files, relative to the report directory.
    pub evidence: Vec<String>,
    /// The one command that reruns just this cell.
    pub rerun: Option<String>,
    /// Reachability only: the named `r5.0` deviations (CONFORMANCE.md §3) behind this cell —
    /// on a failed cell, the deviations that explain its observation (the `r5.0` oracle
    /// predicts exactly what was observed); on a passed cell of a run against an `r5.0`
    /// cluster, deviations the `r5.0` oracle predicted here but the cluster did not show.
    /// Empty (and absent from JSON) otherwise, so readers of older files keep working.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub deviations: Vec<String>,
}

/// The verdict for one cell.
///
/// Serialized as `{"status": "passed"}` or `{"status": "skipped", "reason": "…"}`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(tag = "status", rename_all = "camelCase")]
pub enum Outcome {
    /// Observed what was expected on the first attempt that settled.
    Passed,
    /// Observed something else than expected.
    Failed,
    /// Passed only on a retry: counted separately, never hidden.
    Flaky,
    /// Could not decide (probe error, agent unreachable…): an infrastructure problem.
    Inconclusive {
        /// Why no verdict was reached.
        reason: String,
    },
    /// Not run.
    Skipped {
        /// Why it was not run.
        reason: String,
    },
    /// Run and reported, but not counted (e.g. loopback cells).
    Ignored {
        /// Why it does not count.
        reason: String,
    },
}

impl Outcome {
    /// Lower-case name, as used in every format.
    pub fn as_str(&self) -> &'static str {
        match self {
            Outcome::Passed => "passed",
            Outcome::Failed => "failed",
            Outcome::Flaky => "flaky",
            Outcome::Inconclusive { .. } => "inconclusive",
            Outcome::Skipped { .. } => "skipped",
            Outcome::Ignored { .. } => "ignored",
        }
    }

    /// The reason carried by inconclusive, skipped and ignored outcomes.
    pub fn reason(&self) -> Option<&str> {
        match self {
            Outcome::Inconclusive { reason }
            | Outcome::Skipped { reason }
            | Outcome::Ignored { reason } => Some(reason),
            Outcome::Passed | Outcome::Failed | Outcome::Flaky => None,
        }
    }

    /// The status this outcome contributes to aggregation (ignored counts as skipped).
    pub fn status(&self) -> Status {
        match self {
            Outcome::Passed => Status::Passed,
            Outcome::Failed => Status::Failed,
            Outcome::Flaky => Status::Flaky,
            Outcome::Inconclusive { .. } => Status::Inconclusive,
            Outcome::Skipped { .. } | Outcome::Ignored { .. } => Status::Skipped,
        }
    }
}

impl std::fmt::Display for Outcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Derived verdict of a check, step, scenario or run.
///
/// Variants are declared in increasing precedence, so `max` combines them (see the module docs).
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[serde(rename_all = "camelCase")]
pub enum Status {
    /// Nothing was checked.
    Skipped,
    /// Everything checked passed on the first attempt that settled.
    Passed,
    /// Everything passed, some cells only on retry.
    Flaky,
    /// No failure, but some cells could not be decided.
    Inconclusive,
    /// A scenario could not be set up, or the infrastructure failed.
    Error,
    /// At least one cell failed.
    Failed,
}

impl Status {
    /// Lower-case name, as used in every format.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Skipped => "skipped",
            Status::Passed => "passed",
            Status::Flaky => "flaky",
            Status::Inconclusive => "inconclusive",
            Status::Error => "error",
            Status::Failed => "failed",
        }
    }

    /// Combines statuses by precedence; `None` when there are none.
    pub fn combine(statuses: impl IntoIterator<Item = Status>) -> Option<Status> {
        statuses.into_iter().max()
    }

    /// True for [`Status::Passed`] and [`Status::Flaky`].
    pub fn is_success(self) -> bool {
        matches!(self, Status::Passed | Status::Flaky)
    }
}

impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Counts over a run or a scenario. Cell counts are by [`Outcome`]; `errors` counts setup
/// errors and infrastructure errors.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "camelCase")]
pub struct Summary {
    /// Scenarios.
    pub scenarios: usize,
    /// Checks.
    pub checks: usize,
    /// Cells, whatever their outcome.
    pub cells: usize,
    /// Cells that passed on the first attempt that settled.
    pub passed: usize,
    /// Cells that failed.
    pub failed: usize,
    /// Cells that passed only on retry.
    pub flaky: usize,
    /// Cells without a verdict.
    pub inconclusive: usize,
    /// Cells not run.
    pub skipped: usize,
    /// Cells reported but not counted.
    pub ignored: usize,
    /// Scenario setup errors plus run-level infrastructure errors.
    pub errors: usize,
}

impl Summary {
    fn add_cells<'a>(&mut self, cells: impl IntoIterator<Item = &'a CellResult>) {
        for cell in cells {
            self.cells += 1;
            match cell.outcome {
                Outcome::Passed => self.passed += 1,
                Outcome::Failed => self.failed += 1,
                Outcome::Flaky => self.flaky += 1,
                Outcome::Inconclusive { .. } => self.inconclusive += 1,
                Outcome::Skipped { .. } => self.skipped += 1,
                Outcome::Ignored { .. } => self.ignored += 1,
            }
        }
    }

    fn add_scenario(&mut self, scenario: &ScenarioResult) {
        self.scenarios += 1;
        self.errors += usize::from(scenario.setup_error.is_some());
        for check in scenario.checks() {
            self.checks += 1;
            self.add_cells(&check.cells);
        }
    }
}

impl CellResult {
    /// A one-line name for the cell in the words of its check kind:
    /// `x/a → x/b TCP/80`, `alice: get pods -n blue`,
    /// `virtual-network default-domain:k8s-blue:pod-network virtual_network_refs`.
    pub fn label(&self, kind: CheckKind) -> String {
        match kind {
            CheckKind::Reachability => {
                if self.port.is_empty() {
                    format!("{} → {}", self.from, self.to)
                } else {
                    format!("{} → {} {}", self.from, self.to, self.port)
                }
            }
            CheckKind::Rbac => format!("{}: {}", self.from, self.to),
            CheckKind::Contrail => {
                if self.port.is_empty() {
                    format!("{} {}", self.from, self.to)
                } else {
                    format!("{} {} {}", self.from, self.to, self.port)
                }
            }
        }
    }

    /// The cell explained in one line:
    /// `x/a → x/b TCP/80: expected deny, observed allow — allowed by rule …`.
    pub fn one_line(&self, kind: CheckKind) -> String {
        let mut line = format!("{}: ", self.label(kind));
        match &self.outcome {
            Outcome::Skipped { reason } => line.push_str(&format!("skipped — {reason}")),
            Outcome::Ignored { reason } => line.push_str(&format!(
                "expected {}, observed {} (ignored — {reason})",
                self.expected,
                observed_or_nothing(&self.observed)
            )),
            Outcome::Inconclusive { reason } => line.push_str(&format!(
                "expected {}, inconclusive — {reason}",
                self.expected
            )),
            Outcome::Flaky => line.push_str(&format!(
                "expected {}, observed {} (flaky: passed on attempt {})",
                self.expected,
                observed_or_nothing(&self.observed),
                self.attempts
            )),
            Outcome::Passed | Outcome::Failed => line.push_str(&format!(
                "expected {}, observed {}",
                self.expected,
                observed_or_nothing(&self.observed)
            )),
        }
        if let Some(detail) = &self.observed_detail {
            line.push_str(" — ");
            line.push_str(detail);
        }
        line
    }
}

fn observed_or_nothing(observed: &str) -> &str {
    if observed.is_empty() {
        "nothing"
    } else {
        observed
    }
}

impl CheckResult {
    /// The check's status, derived from its cells (see the module docs).
    pub fn status(&self) -> Status {
        Status::combine(self.cells.iter().map(|c| c.outcome.status())).unwrap_or(Status::Skipped)
    }

    /// Cells whose outcome needs a reader's attention: failed, inconclusive, flaky.
    pub fn notable_cells(&self) -> impl Iterator<Item = &CellResult> {
        self.cells.iter().filter(|c| {
            matches!(
                c.outcome,
                Outcome::Failed | Outcome::Inconclusive { .. } | Outcome::Flaky
            )
        })
    }

    /// Cells that failed.
    pub fn failed_cells(&self) -> impl Iterator<Item = &CellResult> {
        self.cells
            .iter()
            .filter(|c| matches!(c.outcome, Outcome::Failed))
    }

    /// Why the check was skipped: its `message`, else the first skip reason among its cells.
    pub fn skip_reason(&self) -> Option<&str> {
        self.message.as_deref().or_else(|| {
            self.cells.iter().find_map(|c| match &c.outcome {
                Outcome::Skipped { reason } | Outcome::Ignored { reason } => Some(reason.as_str()),
                _ => None,
            })
        })
    }

    /// The rerun commands of the cells that need attention, deduplicated, in cell order.
    pub fn rerun_commands(&self) -> Vec<&str> {
        let mut commands: Vec<&str> = Vec::new();
        for cell in self.notable_cells() {
            if let Some(rerun) = cell.rerun.as_deref()
                && !commands.contains(&rerun)
            {
                commands.push(rerun);
            }
        }
        commands
    }

    /// Cell counts of this check (`scenarios` and `checks` stay zero except `checks` = 1).
    pub fn summary(&self) -> Summary {
        let mut summary = Summary {
            checks: 1,
            ..Summary::default()
        };
        summary.add_cells(&self.cells);
        summary
    }
}

impl StepResult {
    /// The step's status: its checks combined; a step without checks passed.
    pub fn status(&self) -> Status {
        Status::combine(self.checks.iter().map(CheckResult::status)).unwrap_or(Status::Passed)
    }
}

impl ScenarioResult {
    /// The scenario's status: its steps combined, at least [`Status::Error`] with a setup
    /// error; a scenario without steps or setup error is skipped.
    pub fn status(&self) -> Status {
        let setup = self.setup_error.as_ref().map(|_| Status::Error);
        Status::combine(self.steps.iter().map(StepResult::status).chain(setup))
            .unwrap_or(Status::Skipped)
    }

    /// Every check of every step, in order.
    pub fn checks(&self) -> impl Iterator<Item = &CheckResult> {
        self.steps.iter().flat_map(|s| s.checks.iter())
    }

    /// Counts for this scenario alone (`scenarios` = 1).
    pub fn summary(&self) -> Summary {
        let mut summary = Summary::default();
        summary.add_scenario(self);
        summary
    }
}

impl RunResult {
    /// The run's status: its scenarios combined, at least [`Status::Error`] with
    /// infrastructure errors; an empty run is skipped.
    pub fn status(&self) -> Status {
        let infra = (!self.infrastructure_errors.is_empty()).then_some(Status::Error);
        Status::combine(
            self.scenarios
                .iter()
                .map(ScenarioResult::status)
                .chain(infra),
        )
        .unwrap_or(Status::Skipped)
    }

    /// Counts over the whole run.
    pub fn summary(&self) -> Summary {
        let mut summary = Summary {
            errors: self.infrastructure_errors.len(),
            ..Summary::default()
        };
        for scenario in &self.scenarios {
            summary.add_scenario(scenario);
        }
        summary
    }

    /// The process exit code for this result.
    ///
    /// [`EXIT_FAILED`] (1) if any cell failed; else [`EXIT_INFRASTRUCTURE`] (3) if a scenario
    /// has a setup error, the run has infrastructure errors, or any cell is inconclusive; else
    /// [`EXIT_PASSED`] (0), flaky cells included (they are reported, not fatal).
    ///
    /// # Caveats
    ///
    /// An empty run (no scenarios) exits 0 here; the CLI should reject an empty selection as bad
    /// input ([`EXIT_BAD_INPUT`]) before running anything.
    pub fn exit_code(&self) -> u8 {
        match self.status() {
            Status::Failed => EXIT_FAILED,
            Status::Error | Status::Inconclusive => EXIT_INFRASTRUCTURE,
            Status::Passed | Status::Flaky | Status::Skipped => EXIT_PASSED,
        }
    }

    /// Every check of the run with the scenario and step it belongs to, in order.
    pub fn checks(&self) -> impl Iterator<Item = (&ScenarioResult, &StepResult, &CheckResult)> {
        self.scenarios.iter().flat_map(|scenario| {
            scenario
                .steps
                .iter()
                .flat_map(move |step| step.checks.iter().map(move |check| (scenario, step, check)))
        })
    }
}

/// `1 cell`, `2 cells`: a count with its noun (regular plurals only).
pub(crate) fn plural(count: usize, noun: &str) -> String {
    if count == 1 {
        format!("{count} {noun}")
    } else {
        format!("{count} {noun}s")
    }
}

/// Formats a duration for people: `850ms`, `12.3s`, `2m03s`.
pub fn format_duration(ms: u64) -> String {
    if ms < 1_000 {
        format!("{ms}ms")
    } else if ms < 60_000 {
        format!("{}.{}s", ms / 1_000, (ms % 1_000) / 100)
    } else {
        let secs = ms / 1_000;
        format!("{}m{:02}s", secs / 60, secs % 60)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures;

    fn cell(outcome: Outcome) -> CellResult {
        CellResult {
            from: "x/a".into(),
            to: "x/b".into(),
            port: "TCP/80".into(),
            expected: "allow".into(),
            observed: "allow".into(),
            outcome,
            explanation: String::new(),
            observed_detail: None,
            converged_after_ms: None,
            attempts: 1,
            loopback: false,
            evidence: vec![],
            rerun: None,
            deviations: vec![],
        }
    }

    /// `deviations` is optional in JSON: absent when empty, and files written before it
    /// existed still parse.
    #[test]
    fn cell_deviations_are_optional_in_json() {
        let plain = serde_json::to_value(cell(Outcome::Passed)).unwrap();
        assert!(plain.get("deviations").is_none(), "{plain}");
        let old: CellResult = serde_json::from_value(plain).unwrap();
        assert!(old.deviations.is_empty());
        let mut explained = cell(Outcome::Failed);
        explained.deviations = vec!["peer-selectors-or".into()];
        let v = serde_json::to_value(&explained).unwrap();
        assert_eq!(v["deviations"], serde_json::json!(["peer-selectors-or"]));
        let back: CellResult = serde_json::from_value(v).unwrap();
        assert_eq!(back, explained);
    }

    fn check(outcomes: Vec<Outcome>) -> CheckResult {
        CheckResult {
            id: "s/reachability-1".into(),
            kind: CheckKind::Reachability,
            title: "t".into(),
            duration_ms: 0,
            cells: outcomes.into_iter().map(cell).collect(),
            message: None,
            matrix: None,
        }
    }

    fn run_with(checks: Vec<CheckResult>) -> RunResult {
        let mut run = fixtures::run_result();
        run.scenarios = vec![ScenarioResult {
            name: "s".into(),
            file: "s.yaml".into(),
            labels: vec![],
            description: None,
            duration_ms: 0,
            setup_error: None,
            steps: vec![StepResult {
                name: "step".into(),
                duration_ms: 0,
                checks,
            }],
        }];
        run.infrastructure_errors.clear();
        run
    }

    fn skipped() -> Outcome {
        Outcome::Skipped { reason: "r".into() }
    }
    fn ignored() -> Outcome {
        Outcome::Ignored { reason: "r".into() }
    }
    fn inconclusive() -> Outcome {
        Outcome::Inconclusive { reason: "r".into() }
    }

    #[test]
    fn check_status_precedence() {
        use Outcome::*;
        assert_eq!(check(vec![Passed, Passed]).status(), Status::Passed);
        assert_eq!(check(vec![Passed, Flaky]).status(), Status::Flaky);
        assert_eq!(
            check(vec![Flaky, inconclusive()]).status(),
            Status::Inconclusive
        );
        assert_eq!(
            check(vec![inconclusive(), Failed, Flaky]).status(),
            Status::Failed
        );
        assert_eq!(check(vec![Passed, ignored()]).status(), Status::Passed);
        assert_eq!(check(vec![skipped(), ignored()]).status(), Status::Skipped);
        assert_eq!(check(vec![]).status(), Status::Skipped);
    }

    #[test]
    fn step_and_scenario_status() {
        let step = StepResult {
            name: "apply only".into(),
            duration_ms: 0,
            checks: vec![],
        };
        assert_eq!(step.status(), Status::Passed);

        let run = fixtures::run_result();
        assert_eq!(run.scenarios[0].status(), Status::Failed);
        assert_eq!(run.scenarios[1].status(), Status::Error);
        assert_eq!(run.status(), Status::Failed);

        let mut scenario = run.scenarios[1].clone();
        scenario.setup_error = None;
        assert_eq!(scenario.status(), Status::Skipped);
    }

    #[test]
    fn exit_codes() {
        use Outcome::*;
        assert_eq!(run_with(vec![check(vec![Passed])]).exit_code(), EXIT_PASSED);
        assert_eq!(
            run_with(vec![check(vec![Passed, Flaky])]).exit_code(),
            EXIT_PASSED
        );
        assert_eq!(
            run_with(vec![check(vec![Passed, skipped(), ignored()])]).exit_code(),
            EXIT_PASSED
        );
        assert_eq!(
            run_with(vec![check(vec![Passed, inconclusive()])]).exit_code(),
            EXIT_INFRASTRUCTURE
        );
        // A failure wins over an inconclusive cell.
        assert_eq!(
            run_with(vec![check(vec![inconclusive()]), check(vec![Failed])]).exit_code(),
            EXIT_FAILED
        );

        let mut infra = run_with(vec![check(vec![Passed])]);
        infra.infrastructure_errors.push("kind cluster gone".into());
        assert_eq!(infra.exit_code(), EXIT_INFRASTRUCTURE);

        let mut setup = run_with(vec![check(vec![Passed])]);
        setup.scenarios[0].setup_error = Some("pods never ready".into());
        assert_eq!(setup.exit_code(), EXIT_INFRASTRUCTURE);

        // The fixture has failures and a setup error: failure wins.
        assert_eq!(fixtures::run_result().exit_code(), EXIT_FAILED);
    }

    #[test]
    fn summary_counts_every_cell_once() {
        let run = fixtures::run_result();
        let s = run.summary();
        assert_eq!(s.scenarios, 2);
        assert_eq!(
            s.cells,
            s.passed + s.failed + s.flaky + s.inconclusive + s.skipped + s.ignored
        );
        assert_eq!(s.flaky, 1);
        assert_eq!(s.inconclusive, 1);
        assert_eq!(s.errors, 1);
        assert_eq!(s.checks, run.checks().count());
        let per_scenario: usize = run.scenarios.iter().map(|sc| sc.summary().cells).sum();
        assert_eq!(per_scenario, s.cells);
    }

    #[test]
    fn outcome_serializes_tagged() {
        let json = serde_json::to_string(&Outcome::Skipped {
            reason: "SCTP unsupported".into(),
        })
        .expect("serializes");
        assert_eq!(json, r#"{"status":"skipped","reason":"SCTP unsupported"}"#);
        assert_eq!(
            serde_json::to_string(&Outcome::Flaky).expect("serializes"),
            r#"{"status":"flaky"}"#
        );
        let back: Outcome = serde_json::from_str(r#"{"status":"inconclusive","reason":"x"}"#)
            .expect("deserializes");
        assert_eq!(back, Outcome::Inconclusive { reason: "x".into() });
    }

    #[test]
    fn cell_lines() {
        let mut c = cell(Outcome::Failed);
        c.observed = "drop".into();
        c.observed_detail = Some("dropped at vrouter node-2".into());
        assert_eq!(
            c.one_line(CheckKind::Reachability),
            "x/a → x/b TCP/80: expected allow, observed drop — dropped at vrouter node-2"
        );
        let rbac = CellResult {
            from: "alice".into(),
            to: "get pods -n blue".into(),
            port: String::new(),
            ..cell(Outcome::Passed)
        };
        assert_eq!(rbac.label(CheckKind::Rbac), "alice: get pods -n blue");
    }

    #[test]
    fn durations() {
        assert_eq!(format_duration(850), "850ms");
        assert_eq!(format_duration(12_345), "12.3s");
        assert_eq!(format_duration(123_000), "2m03s");
    }
}
