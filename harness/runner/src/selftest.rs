//! `harness selftest`: checks the checks (CONFORMANCE.md §3 and §5).
//!
//! The suite runs in phases, every scenario on its own fresh cluster:
//!
//! * **clean** — the mock Contrail with profile `upstream` and no fault: it must pass;
//! * **one phase per fault** of [`MockFault::ALL`] (profile `upstream`): each fault must be
//!   *caught*, i.e. some cell that passed in the clean phase fails;
//! * **r5.0** — the mock with the shipped kube-manager's semantics, expectations still from the
//!   blueprint (`upstream`): every failed cell must be explained by named deviations (the
//!   reachability check sets [`CellResult::deviations`] when the `r5.0` oracle predicts exactly
//!   the observation), and no cell may show a deviation's absence (a passed cell where the
//!   `r5.0` oracle predicts a different verdict) — "fail exactly the cases its deviations break".
//!
//! Phases share one pool of `parallel` scenario slots, so a slow scenario of one phase overlaps
//! the next phase instead of holding the pool up. Only the clean and r5.0 phases keep their full
//! results (written as ordinary reports); fault phases keep the cells that failed.
//!
//! ```no_run
//! # async fn demo(inputs: Vec<harness_runner::run::ScenarioInput>) {
//! use harness_runner::selftest::{SelftestOptions, selftest};
//! let report = selftest(&inputs, &SelftestOptions::default(), None).await;
//! println!("exit {}", report.exit_code());
//! # }
//! ```

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::time::Instant;

use harness_report::{CellResult, Outcome, ScenarioResult};
use harness_scenario::{MockFault, Profile};
use serde::Serialize;
use tokio::sync::mpsc::UnboundedSender;

use crate::evidence::EvidenceMode;
use crate::run::{RunOptions, ScenarioInput, run_scenario};

/// Exit code: everything as it must be.
pub const EXIT_OK: u8 = 0;
/// Exit code: a fault went undetected, the clean run failed, or an r5.0 result is unexplained.
pub const EXIT_FAILED: u8 = 1;
/// Exit code: a scenario could not be run (setup error, inconclusive cells).
pub const EXIT_INFRASTRUCTURE: u8 = 3;

/// One run of the suite inside the self-test.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Phase {
    /// Profile `upstream`, no fault: must pass.
    Clean,
    /// Profile `upstream` with one fault: must be caught.
    Fault(MockFault),
    /// Profile `r5.0`, expectations `upstream`: failures exactly the deviations'.
    R50,
}

impl Phase {
    /// `clean`, the fault's name, or `r5.0` (also the phase's report sub-directory).
    pub fn name(self) -> String {
        match self {
            Phase::Clean => "clean".into(),
            Phase::Fault(f) => f.name(),
            Phase::R50 => "r5.0".into(),
        }
    }

    /// The run options of this phase, from the self-test's base options.
    fn options(self, base: &RunOptions) -> RunOptions {
        let mut o = base.clone();
        o.expect_profile = Profile::Upstream;
        o.faults = Vec::new();
        o.keep = false;
        match self {
            Phase::Clean => o.profile = Some(Profile::Upstream),
            Phase::Fault(f) => {
                o.profile = Some(Profile::Upstream);
                o.faults = vec![f];
                // Evidence of an injected fault is noise; the catching cells are listed.
                o.evidence = EvidenceMode::None;
            }
            Phase::R50 => o.profile = Some(Profile::R50),
        }
        o.report_dir = base.report_dir.as_ref().map(|d| d.join(self.name()));
        o
    }

    /// Whether this phase's full results are kept (and written as reports).
    fn keeps_results(self) -> bool {
        matches!(self, Phase::Clean | Phase::R50)
    }
}

impl Serialize for Phase {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.name())
    }
}

impl std::fmt::Display for Phase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Phase::Fault(x) => write!(f, "fault {}", x.name()),
            p => f.write_str(&p.name()),
        }
    }
}

/// How the self-test runs.
#[derive(Clone, Debug)]
pub struct SelftestOptions {
    /// Seed, report directory (each phase writes below `<dir>/<phase>/`), evidence mode and
    /// convergence budget; the profile, expectations and faults are set per phase.
    pub base: RunOptions,
    /// The faults to inject, one phase each (default: all of [`MockFault::ALL`]).
    pub faults: Vec<MockFault>,
    /// Scenarios running at once, across phases.
    pub parallel: usize,
}

impl Default for SelftestOptions {
    fn default() -> Self {
        SelftestOptions {
            base: RunOptions::default(),
            faults: MockFault::ALL.to_vec(),
            parallel: crate::run::default_parallel(),
        }
    }
}

/// Progress, for the CLI to print.
#[derive(Clone, Debug)]
pub enum SelftestEvent {
    /// Every scenario of a phase has finished.
    PhaseDone {
        /// The phase and what it found.
        phase: Box<PhaseRecord>,
    },
}

/// A cell's identity across phases: scenario file, check id, from, to, port.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct CellId {
    /// The scenario file, as given.
    pub file: String,
    /// `STEP/KIND-N`.
    pub check: String,
    /// The cell's source / subject / object type.
    pub from: String,
    /// The cell's destination / request / fq_name.
    pub to: String,
    /// The cell's port / field.
    pub port: String,
}

impl CellId {
    fn new(file: &str, check: &str, c: &CellResult) -> CellId {
        CellId {
            file: file.to_string(),
            check: check.to_string(),
            from: c.from.clone(),
            to: c.to.clone(),
            port: c.port.clone(),
        }
    }

    /// `<check>[<from> -> <to> <port>]` (the `--only` cell key for reachability).
    pub fn key(&self) -> String {
        crate::reach::cell_key(&self.check, &self.from, &self.to, &self.port)
    }
}

/// A cell that failed (or, for r5.0, passed with a predicted deviation), with what was seen.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CellNote {
    /// Which cell.
    pub cell: CellId,
    /// The expected value.
    pub expected: String,
    /// The observed value.
    pub observed: String,
    /// `failed`, `passed`, …
    pub outcome: String,
    /// The named r5.0 deviations the runner attached ([`CellResult::deviations`]).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub deviations: Vec<String>,
    /// The cell's explanation and observed detail, one line.
    pub why: String,
    /// The command that reruns it, when the runner gave one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rerun: Option<String>,
}

impl CellNote {
    fn new(file: &str, check: &str, c: &CellResult) -> CellNote {
        let why = match &c.observed_detail {
            Some(d) => format!("{} — observed: {d}", c.explanation),
            None => c.explanation.clone(),
        };
        CellNote {
            cell: CellId::new(file, check, c),
            expected: c.expected.clone(),
            observed: c.observed.clone(),
            outcome: c.outcome.as_str().to_string(),
            deviations: c.deviations.clone(),
            why,
            rerun: c.rerun.clone(),
        }
    }
}

/// What one phase found.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PhaseRecord {
    /// Which phase.
    pub phase: Phase,
    /// Scenarios run.
    pub scenarios: usize,
    /// From the first scenario's start to the last one's end (phases overlap).
    pub wall_ms: u64,
    /// Sum of the scenarios' own durations.
    pub busy_ms: u64,
    /// Cells by outcome (`passed`, `failed`, …).
    pub cells: BTreeMap<String, usize>,
    /// Cells that failed.
    pub failed: Vec<CellNote>,
    /// Passed or flaky cells that carry deviations (r5.0: predicted, not shown).
    pub annotated: Vec<CellNote>,
    /// Flaky cells (passed only on a retry): reported, never hidden.
    pub flaky: Vec<CellId>,
    /// Setup errors and inconclusive cells: `<file>: <what>`.
    pub infrastructure: Vec<String>,
    /// The full results (clean and r5.0 phases only; not in the self-test's JSON).
    #[serde(skip)]
    pub results: Vec<ScenarioResult>,
}

impl PhaseRecord {
    fn new(phase: Phase) -> PhaseRecord {
        PhaseRecord {
            phase,
            scenarios: 0,
            wall_ms: 0,
            busy_ms: 0,
            cells: BTreeMap::new(),
            failed: Vec::new(),
            annotated: Vec::new(),
            flaky: Vec::new(),
            infrastructure: Vec::new(),
            results: Vec::new(),
        }
    }

    /// Folds one scenario's result in (keeping it whole only for phases that keep results).
    pub fn add(&mut self, r: ScenarioResult) {
        self.scenarios += 1;
        self.busy_ms += r.duration_ms;
        if let Some(e) = &r.setup_error {
            self.infrastructure
                .push(format!("{}: setup error: {e}", r.file));
        }
        for step in &r.steps {
            for check in &step.checks {
                for c in &check.cells {
                    *self
                        .cells
                        .entry(c.outcome.as_str().to_string())
                        .or_insert(0) += 1;
                    match &c.outcome {
                        Outcome::Failed => self.failed.push(CellNote::new(&r.file, &check.id, c)),
                        Outcome::Flaky => self.flaky.push(CellId::new(&r.file, &check.id, c)),
                        Outcome::Inconclusive { reason } => self.infrastructure.push(format!(
                            "{}: {} inconclusive: {reason}",
                            r.file,
                            CellId::new(&r.file, &check.id, c).key()
                        )),
                        _ => {}
                    }
                    if matches!(c.outcome, Outcome::Passed | Outcome::Flaky)
                        && !c.deviations.is_empty()
                    {
                        self.annotated.push(CellNote::new(&r.file, &check.id, c));
                    }
                }
            }
        }
        if self.phase.keeps_results() {
            self.results.push(r);
        }
    }

    fn failed_ids(&self) -> BTreeSet<&CellId> {
        self.failed.iter().map(|n| &n.cell).collect()
    }
}

/// A case (scenario file and check) and how many of its cells count.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CaseRef {
    /// The scenario file, as given.
    pub file: String,
    /// `STEP/KIND-N`.
    pub check: String,
    /// Cells of the check that count.
    pub cells: usize,
}

impl CaseRef {
    /// `<file stem>/<check>` for tables.
    pub fn label(&self) -> String {
        let stem = std::path::Path::new(&self.file)
            .file_stem()
            .map_or_else(|| self.file.clone(), |s| s.to_string_lossy().into_owned());
        format!("{stem}/{}", self.check)
    }
}

/// Groups cells by (file, check), in order.
fn cases<'a>(cells: impl IntoIterator<Item = &'a CellId>) -> Vec<CaseRef> {
    let mut m: BTreeMap<(&str, &str), usize> = BTreeMap::new();
    for c in cells {
        *m.entry((&c.file, &c.check)).or_insert(0) += 1;
    }
    m.into_iter()
        .map(|((file, check), cells)| CaseRef {
            file: file.to_string(),
            check: check.to_string(),
            cells,
        })
        .collect()
}

/// Whether a fault was caught.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum Detection {
    /// Some cell that passed in the clean phase failed.
    Caught,
    /// Every scenario ran and no such cell failed.
    Undetected,
    /// No such cell failed, but some scenarios could not run: undecided.
    Undecided,
}

/// One fault's line of the table.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct FaultVerdict {
    /// The fault.
    pub fault: String,
    /// Caught, undetected or undecided.
    pub detection: Detection,
    /// The cases that caught it (cells that failed here but not in the clean phase).
    pub caught_by: Vec<CaseRef>,
    /// Setup errors and inconclusive cells of its phase.
    pub infrastructure: Vec<String>,
}

/// The r5.0 phase, judged.
#[derive(Clone, Debug, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct R50Verdict {
    /// Failed cells explained by named deviations.
    pub explained: Vec<CellNote>,
    /// Failed cells no deviation explains.
    pub unexplained: Vec<CellNote>,
    /// Cells where the r5.0 oracle predicts a deviation the cluster did not show.
    pub not_shown: Vec<CellNote>,
    /// Cases (file, check) with explained failures, and the deviations behind each.
    pub cases: Vec<(CaseRef, Vec<String>)>,
    /// Deviations that explain at least one failure.
    pub deviations_seen: Vec<String>,
}

/// The self-test's result.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SelftestReport {
    /// The probe-order seed.
    pub seed: u64,
    /// Scenarios run at once.
    pub parallel: usize,
    /// Scenarios per phase.
    pub scenarios: usize,
    /// Wall time of the whole self-test.
    pub duration_ms: u64,
    /// Every phase, in order (clean, faults, r5.0).
    pub phases: Vec<PhaseRecord>,
    /// The clean phase's failed cells grouped by case (must be empty).
    pub clean_failures: Vec<CaseRef>,
    /// One line per fault.
    pub faults: Vec<FaultVerdict>,
    /// The r5.0 phase, judged.
    pub r50: R50Verdict,
    /// Why the self-test did not pass, one sentence each (empty: it passed).
    pub problems: Vec<String>,
    /// Infrastructure problems, one line each.
    pub infrastructure: Vec<String>,
}

impl SelftestReport {
    /// 0 passed; 1 a fault undetected, the clean run failed or an r5.0 result unexplained;
    /// 3 an infrastructure problem and nothing definitive wrong.
    pub fn exit_code(&self) -> u8 {
        if !self.problems.is_empty() {
            EXIT_FAILED
        } else if !self.infrastructure.is_empty() {
            EXIT_INFRASTRUCTURE
        } else {
            EXIT_OK
        }
    }

    /// The phase record of `phase`.
    pub fn phase(&self, phase: Phase) -> Option<&PhaseRecord> {
        self.phases.iter().find(|p| p.phase == phase)
    }
}

/// Judges the phases' records (pure: the self-test's logic without clusters).
///
/// A fault is caught when a cell that did not fail in the clean phase fails in its phase (a
/// cell already failing clean proves nothing). The r5.0 phase passes when each failed cell
/// carries the deviations that explain it and no passed cell carries a deviation the
/// cluster did not show.
pub fn judge(
    seed: u64,
    parallel: usize,
    duration_ms: u64,
    phases: Vec<PhaseRecord>,
) -> SelftestReport {
    let mut problems = Vec::new();
    let mut infrastructure = Vec::new();
    let empty = PhaseRecord::new(Phase::Clean);
    let clean = phases
        .iter()
        .find(|p| p.phase == Phase::Clean)
        .unwrap_or(&empty);
    let clean_failed = clean.failed_ids();
    let clean_failures = cases(clean_failed.iter().copied());
    if !clean.failed.is_empty() {
        problems.push(format!(
            "the clean run (profile upstream, no fault) failed {} cell{} in {} case{}",
            clean.failed.len(),
            if clean.failed.len() == 1 { "" } else { "s" },
            clean_failures.len(),
            if clean_failures.len() == 1 { "" } else { "s" }
        ));
    }
    for p in &phases {
        for i in &p.infrastructure {
            infrastructure.push(format!("{}: {i}", p.phase.name()));
        }
    }
    let mut faults = Vec::new();
    for p in &phases {
        let Phase::Fault(f) = p.phase else { continue };
        let caught: Vec<&CellId> = p
            .failed
            .iter()
            .map(|n| &n.cell)
            .filter(|c| !clean_failed.contains(c))
            .collect();
        let detection = if !caught.is_empty() {
            Detection::Caught
        } else if p.infrastructure.is_empty() {
            problems.push(format!(
                "fault {} went undetected: no cell that passes clean failed with it",
                f.name()
            ));
            Detection::Undetected
        } else {
            Detection::Undecided
        };
        faults.push(FaultVerdict {
            fault: f.name(),
            detection,
            caught_by: cases(caught),
            infrastructure: p.infrastructure.clone(),
        });
    }
    let mut r50 = R50Verdict::default();
    if let Some(p) = phases.iter().find(|p| p.phase == Phase::R50) {
        for n in &p.failed {
            if n.deviations.is_empty() {
                r50.unexplained.push(n.clone());
            } else {
                r50.explained.push(n.clone());
            }
        }
        r50.not_shown = p.annotated.clone();
        let mut by_case: BTreeMap<(String, String), (usize, BTreeSet<String>)> = BTreeMap::new();
        for n in &r50.explained {
            let e = by_case
                .entry((n.cell.file.clone(), n.cell.check.clone()))
                .or_default();
            e.0 += 1;
            e.1.extend(n.deviations.iter().cloned());
        }
        r50.cases = by_case
            .into_iter()
            .map(|((file, check), (cells, devs))| {
                (
                    CaseRef { file, check, cells },
                    devs.into_iter().collect::<Vec<_>>(),
                )
            })
            .collect();
        r50.deviations_seen = r50
            .explained
            .iter()
            .flat_map(|n| n.deviations.iter().cloned())
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        if !r50.unexplained.is_empty() {
            problems.push(format!(
                "the r5.0 run failed {} cell{} that no r5.0 deviation explains",
                r50.unexplained.len(),
                if r50.unexplained.len() == 1 { "" } else { "s" }
            ));
        }
        if !r50.not_shown.is_empty() {
            problems.push(format!(
                "the r5.0 run did not show {} deviation{} the r5.0 oracle predicts",
                r50.not_shown.len(),
                if r50.not_shown.len() == 1 { "" } else { "s" }
            ));
        }
    }
    SelftestReport {
        seed,
        parallel,
        scenarios: clean.scenarios,
        duration_ms,
        phases,
        clean_failures,
        faults,
        r50,
        problems,
        infrastructure,
    }
}

/// Runs the self-test: every phase over `inputs`, `opts.parallel` scenarios at once.
///
/// # Caveats
///
/// Never fails: problems become the report's `problems` (exit 1) or `infrastructure`
/// (exit 3). Each scenario's own selection in `inputs` is honoured. Reports are not written
/// here (see [`write_reports`]).
pub async fn selftest(
    inputs: &[ScenarioInput],
    opts: &SelftestOptions,
    events: Option<&UnboundedSender<SelftestEvent>>,
) -> SelftestReport {
    use futures_util::StreamExt;
    let started = Instant::now();
    let mut phases = vec![Phase::Clean];
    phases.extend(opts.faults.iter().map(|f| Phase::Fault(*f)));
    phases.push(Phase::R50);
    let phase_opts: Vec<RunOptions> = phases.iter().map(|p| p.options(&opts.base)).collect();
    let mut records: Vec<PhaseRecord> = phases.iter().map(|p| PhaseRecord::new(*p)).collect();
    let mut first_start: Vec<Option<Instant>> = vec![None; phases.len()];
    let mut left: Vec<usize> = vec![inputs.len(); phases.len()];
    let jobs = (0..phases.len()).flat_map(|pi| (0..inputs.len()).map(move |si| (pi, si)));
    let mut stream = futures_util::stream::iter(jobs)
        .map(|(pi, si)| {
            let input = &inputs[si];
            let mut o = phase_opts[pi].clone();
            if let Some(sel) = &input.selection {
                o.selection = sel.clone();
            }
            async move {
                let t = Instant::now();
                let run = run_scenario(&input.loaded, &input.file_arg, &o, None);
                let budget = crate::run::scenario_budget(&input.loaded.scenario);
                let r = match tokio::time::timeout(budget, run).await {
                    Ok(r) => r,
                    Err(_) => crate::run::abandoned(input, t, budget),
                };
                (pi, t, r)
            }
        })
        .buffer_unordered(opts.parallel.max(1));
    while let Some((pi, t, r)) = stream.next().await {
        let first = *first_start[pi].get_or_insert(t);
        let rec = &mut records[pi];
        rec.add(r);
        left[pi] -= 1;
        if left[pi] == 0 {
            rec.wall_ms = first.elapsed().as_millis() as u64;
            if let Some(tx) = events {
                let mut summary = rec.clone();
                summary.results = Vec::new();
                let _ = tx.send(SelftestEvent::PhaseDone {
                    phase: Box::new(summary),
                });
            }
        }
    }
    if inputs.is_empty() {
        for rec in &records {
            if let Some(tx) = events {
                let _ = tx.send(SelftestEvent::PhaseDone {
                    phase: Box::new(rec.clone()),
                });
            }
        }
    }
    judge(
        opts.base.seed,
        opts.parallel.max(1),
        started.elapsed().as_millis() as u64,
        records,
    )
}

/// The self-test report as Markdown: verdict, the fault → cases table, the r5.0 table, the
/// clean run's failures, timings.
pub fn render_markdown(r: &SelftestReport) -> String {
    let mut s = String::new();
    let verdict = match r.exit_code() {
        EXIT_OK => "PASSED",
        EXIT_FAILED => "FAILED",
        _ => "ERROR (infrastructure)",
    };
    let _ = writeln!(s, "# harness selftest: {verdict}\n");
    let _ = writeln!(
        s,
        "{} scenarios × {} phases, {} at once, seed {}, {}.\n",
        r.scenarios,
        r.phases.len(),
        r.parallel,
        r.seed,
        harness_report::model::format_duration(r.duration_ms)
    );
    for p in &r.problems {
        let _ = writeln!(s, "- **{p}**");
    }
    for p in &r.infrastructure {
        let _ = writeln!(s, "- infrastructure: {}", md_cell(p));
    }
    if !r.problems.is_empty() || !r.infrastructure.is_empty() {
        s.push('\n');
    }
    let _ = writeln!(s, "## Clean run (profile upstream, no fault)\n");
    if r.clean_failures.is_empty() {
        let _ = writeln!(s, "Every case passed.\n");
    } else {
        let _ = writeln!(s, "| case | failed cells |\n|---|---|");
        for c in &r.clean_failures {
            let _ = writeln!(s, "| `{}` | {} |", c.label(), c.cells);
        }
        s.push('\n');
    }
    let _ = writeln!(s, "## Faults → cases that caught them\n");
    let _ = writeln!(
        s,
        "| fault | detected | cases (failed cells) |\n|---|---|---|"
    );
    for f in &r.faults {
        let det = match f.detection {
            Detection::Caught => "yes",
            Detection::Undetected => "**no**",
            Detection::Undecided => "undecided (infrastructure)",
        };
        let cases: Vec<String> = f
            .caught_by
            .iter()
            .map(|c| format!("`{}` ({})", c.label(), c.cells))
            .collect();
        let _ = writeln!(s, "| `{}` | {det} | {} |", f.fault, cases.join(", "));
    }
    s.push('\n');
    let _ = writeln!(s, "## r5.0 (mock profile r5.0, expectations upstream)\n");
    let _ = writeln!(
        s,
        "{} failed cells explained by deviations, {} unexplained, {} predicted deviations not shown. Deviations seen: {}.\n",
        r.r50.explained.len(),
        r.r50.unexplained.len(),
        r.r50.not_shown.len(),
        if r.r50.deviations_seen.is_empty() {
            "none".to_string()
        } else {
            r.r50.deviations_seen.join(", ")
        }
    );
    if !r.r50.cases.is_empty() {
        let _ = writeln!(s, "| case | failed cells | explained by |\n|---|---|---|");
        for (c, devs) in &r.r50.cases {
            let _ = writeln!(s, "| `{}` | {} | {} |", c.label(), c.cells, devs.join(", "));
        }
        s.push('\n');
    }
    for (title, list) in [
        ("Unexplained r5.0 failures", &r.r50.unexplained),
        (
            "Predicted deviations the r5.0 run did not show",
            &r.r50.not_shown,
        ),
    ] {
        if list.is_empty() {
            continue;
        }
        let _ = writeln!(s, "### {title}\n");
        let _ = writeln!(s, "| cell | expected | observed | why |\n|---|---|---|---|");
        for n in list {
            let _ = writeln!(
                s,
                "| `{}` `{}` | {} | {} | {} |",
                n.cell.file,
                md_cell(&n.cell.key()),
                n.expected,
                n.observed,
                md_cell(&n.why)
            );
        }
        s.push('\n');
    }
    let _ = writeln!(s, "## Timings\n");
    let _ = writeln!(
        s,
        "| phase | scenarios | wall | scenario time (sum) | cells passed | failed |\n|---|---|---|---|---|---|"
    );
    for p in &r.phases {
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} | {} | {} |",
            p.phase.name(),
            p.scenarios,
            harness_report::model::format_duration(p.wall_ms),
            harness_report::model::format_duration(p.busy_ms),
            p.cells.get("passed").copied().unwrap_or(0),
            p.failed.len()
        );
    }
    s
}

fn md_cell(s: &str) -> String {
    s.replace('|', "\\|").replace('\n', " ")
}

/// Writes `selftest.md` and `selftest.json` to `dir`, and the clean and r5.0 phases' full
/// reports (`harness_report::write_all`) below `dir/clean/` and `dir/r5.0/`, with `base` as
/// the run's metadata. Returns the files written.
///
/// # Errors
///
/// The first I/O error.
pub fn write_reports(
    dir: &std::path::Path,
    report: &SelftestReport,
    base: &harness_report::RunResult,
) -> std::io::Result<Vec<std::path::PathBuf>> {
    std::fs::create_dir_all(dir)?;
    let mut files = Vec::new();
    let md = dir.join("selftest.md");
    std::fs::write(&md, render_markdown(report))?;
    files.push(md);
    let json = dir.join("selftest.json");
    let text = serde_json::to_string_pretty(report).map_err(std::io::Error::other)?;
    std::fs::write(&json, text + "\n")?;
    files.push(json);
    for p in report.phases.iter().filter(|p| p.phase.keeps_results()) {
        let run = harness_report::RunResult {
            run_id: format!("{}-{}", base.run_id, p.phase.name()),
            duration_ms: p.wall_ms,
            profile: match p.phase {
                Phase::R50 => "r5.0".into(),
                _ => "upstream".into(),
            },
            scenarios: p.results.clone(),
            ..base.clone()
        };
        files.extend(harness_report::write_all(&dir.join(p.phase.name()), &run)?);
    }
    Ok(files)
}

#[cfg(test)]
mod tests {
    use super::*;
    use harness_report::{CheckKind, CheckResult, StepResult};

    fn cell(from: &str, outcome: Outcome, deviations: &[&str]) -> CellResult {
        CellResult {
            from: from.into(),
            to: "x/a".into(),
            port: "TCP/80".into(),
            expected: "deny".into(),
            observed: "allow".into(),
            outcome,
            explanation: "e".into(),
            observed_detail: None,
            converged_after_ms: None,
            attempts: 1,
            loopback: false,
            evidence: vec![],
            rerun: None,
            deviations: deviations.iter().map(|d| d.to_string()).collect(),
        }
    }

    fn scenario(file: &str, cells: Vec<CellResult>) -> ScenarioResult {
        ScenarioResult {
            name: file.into(),
            file: file.into(),
            labels: vec![],
            description: None,
            duration_ms: 10,
            setup_error: None,
            steps: vec![StepResult {
                name: "s".into(),
                duration_ms: 10,
                checks: vec![CheckResult {
                    id: "s/reachability-1".into(),
                    kind: CheckKind::Reachability,
                    title: "t".into(),
                    duration_ms: 1,
                    cells,
                    message: None,
                    matrix: None,
                }],
            }],
        }
    }

    fn record(phase: Phase, results: Vec<ScenarioResult>) -> PhaseRecord {
        let mut r = PhaseRecord::new(phase);
        for s in results {
            r.add(s);
        }
        r
    }

    const F1: MockFault = MockFault::EgressRulesDropped;
    const F2: MockFault = MockFault::EcmpPinned;

    #[test]
    fn a_fault_is_caught_only_by_cells_that_pass_clean() {
        let clean = record(
            Phase::Clean,
            vec![scenario(
                "a.yaml",
                vec![
                    cell("y/b", Outcome::Passed, &[]),
                    cell("z/c", Outcome::Failed, &[]),
                ],
            )],
        );
        // F1 breaks y/b (caught); F2 only fails the cell that already fails clean.
        let f1 = record(
            Phase::Fault(F1),
            vec![scenario(
                "a.yaml",
                vec![
                    cell("y/b", Outcome::Failed, &[]),
                    cell("z/c", Outcome::Failed, &[]),
                ],
            )],
        );
        let f2 = record(
            Phase::Fault(F2),
            vec![scenario(
                "a.yaml",
                vec![
                    cell("y/b", Outcome::Passed, &[]),
                    cell("z/c", Outcome::Failed, &[]),
                ],
            )],
        );
        let r = judge(1, 2, 0, vec![clean, f1, f2]);
        assert_eq!(r.faults[0].detection, Detection::Caught);
        assert_eq!(r.faults[0].caught_by[0].label(), "a/s/reachability-1");
        assert_eq!(r.faults[0].caught_by[0].cells, 1);
        assert_eq!(r.faults[1].detection, Detection::Undetected);
        assert_eq!(r.problems.len(), 2, "{:?}", r.problems); // clean failed, F2 undetected
        assert!(
            r.problems
                .iter()
                .any(|p| p.contains("ecmp-pinned went undetected"))
        );
        assert!(r.problems.iter().any(|p| p.contains("clean run")));
        assert_eq!(r.exit_code(), EXIT_FAILED);
    }

    #[test]
    fn r50_failures_must_carry_deviations_and_predictions_must_show() {
        let clean = record(
            Phase::Clean,
            vec![scenario("a.yaml", vec![cell("y/b", Outcome::Passed, &[])])],
        );
        let good = record(
            Phase::R50,
            vec![scenario(
                "a.yaml",
                vec![
                    cell("y/b", Outcome::Failed, &["peer-selectors-or"]),
                    cell("z/b", Outcome::Passed, &[]),
                ],
            )],
        );
        let r = judge(1, 2, 0, vec![clean.clone(), good]);
        assert_eq!(r.exit_code(), EXIT_OK, "{:?}", r.problems);
        assert_eq!(r.r50.deviations_seen, vec!["peer-selectors-or".to_string()]);
        assert_eq!(r.r50.cases.len(), 1);

        let bad = record(
            Phase::R50,
            vec![scenario(
                "a.yaml",
                vec![
                    cell("y/b", Outcome::Failed, &[]),
                    cell("z/b", Outcome::Passed, &["match-expressions-ignored"]),
                ],
            )],
        );
        let r = judge(1, 2, 0, vec![clean, bad]);
        assert_eq!(r.exit_code(), EXIT_FAILED);
        assert_eq!(r.r50.unexplained.len(), 1);
        assert_eq!(r.r50.not_shown.len(), 1);
        assert_eq!(r.problems.len(), 2, "{:?}", r.problems);
        let md = render_markdown(&r);
        assert!(md.contains("Unexplained r5.0 failures"), "{md}");
        assert!(md.contains("did not show"), "{md}");
    }

    #[test]
    fn infrastructure_errors_exit_3_unless_something_definitive_failed() {
        let clean = record(
            Phase::Clean,
            vec![scenario("a.yaml", vec![cell("y/b", Outcome::Passed, &[])])],
        );
        let mut broken = scenario("a.yaml", vec![]);
        broken.setup_error = Some("the sim cluster could not be stood up".into());
        let f1 = record(Phase::Fault(F1), vec![broken]);
        let r = judge(1, 2, 0, vec![clean.clone(), f1]);
        assert_eq!(r.faults[0].detection, Detection::Undecided);
        assert_eq!(r.exit_code(), EXIT_INFRASTRUCTURE);
        assert!(r.infrastructure[0].starts_with("egress-rules-dropped: a.yaml: setup error"));

        let inconclusive = scenario(
            "a.yaml",
            vec![cell(
                "y/b",
                Outcome::Inconclusive {
                    reason: "restarting".into(),
                },
                &[],
            )],
        );
        let f2 = record(Phase::Fault(F2), vec![inconclusive]);
        let r = judge(1, 2, 0, vec![clean, f2]);
        assert_eq!(r.exit_code(), EXIT_INFRASTRUCTURE);
    }

    #[test]
    fn phase_options_set_profile_faults_and_expectations() {
        let base = RunOptions {
            report_dir: Some("/tmp/st".into()),
            faults: vec![F2],
            ..RunOptions::default()
        };
        let o = Phase::Fault(F1).options(&base);
        assert_eq!(
            (o.profile, o.faults.clone()),
            (Some(Profile::Upstream), vec![F1])
        );
        assert_eq!(
            o.report_dir.as_deref(),
            Some(std::path::Path::new("/tmp/st/egress-rules-dropped"))
        );
        let o = Phase::R50.options(&base);
        assert_eq!(
            (o.profile, o.expect_profile),
            (Some(Profile::R50), Profile::Upstream)
        );
        assert!(o.faults.is_empty());
        assert_eq!(Phase::Clean.options(&base).profile, Some(Profile::Upstream));
    }
}
