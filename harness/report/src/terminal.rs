//! The end-of-run terminal summary: a table of scenarios, then every problem explained.
//!
//! The CLI prints what [`render_summary`] returns. Colour is the caller's decision
//! ([`Style::color`]: a TTY and no `NO_COLOR`); without it the output is plain text.

use std::fmt::Write as _;

use tabled::builder::Builder;
use tabled::settings::{Alignment, Color, Style as TableStyle, object::Columns};

use crate::model::{
    CheckKind, CheckResult, Outcome, RunResult, ScenarioResult, Status, StepResult, Summary,
    format_duration, plural,
};
use crate::truth_table::{self, COMPARISON_LEGEND, VERDICT_LEGEND};

/// How to render for the terminal.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Style {
    /// Emit ANSI colour escapes.
    pub color: bool,
}

const RED: (&str, &str) = ("\u{1b}[31m", "\u{1b}[39m");
const GREEN: (&str, &str) = ("\u{1b}[32m", "\u{1b}[39m");
const YELLOW: (&str, &str) = ("\u{1b}[33m", "\u{1b}[39m");
const MAGENTA: (&str, &str) = ("\u{1b}[35m", "\u{1b}[39m");
const DIM: (&str, &str) = ("\u{1b}[2m", "\u{1b}[22m");
const BOLD: (&str, &str) = ("\u{1b}[1m", "\u{1b}[22m");

fn status_paint(status: Status) -> (&'static str, &'static str) {
    match status {
        Status::Passed => GREEN,
        Status::Flaky => YELLOW,
        Status::Failed | Status::Error => RED,
        Status::Inconclusive => MAGENTA,
        Status::Skipped => DIM,
    }
}

impl Style {
    fn paint(&self, (prefix, suffix): (&str, &str), text: &str) -> String {
        if self.color {
            format!("{prefix}{text}{suffix}")
        } else {
            text.to_string()
        }
    }

    fn status(&self, status: Status) -> String {
        self.paint(status_paint(status), &status.as_str().to_uppercase())
    }
}

/// Renders the summary of a run: metadata, one table row per scenario, setup and
/// infrastructure errors, every failing, inconclusive or flaky check with its cells explained
/// (reachability checks with their expected / observed / comparison truth tables) and rerun
/// commands, and a final verdict line with the exit code.
pub fn render_summary(run: &RunResult, style: &Style) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "harness {} · run {} · started {} · {}",
        run.harness_version,
        run.run_id,
        run.started_at,
        format_duration(run.duration_ms)
    );
    let _ = writeln!(
        out,
        "provider {} · dataplane {} · profile {} · seed {}",
        run.provider, run.dataplane, run.profile, run.seed
    );
    out.push('\n');
    out.push_str(&scenario_table(run, style));
    out.push('\n');

    if !run.infrastructure_errors.is_empty() {
        out.push('\n');
        let _ = writeln!(out, "{}", style.paint(RED, "infrastructure errors"));
        for error in &run.infrastructure_errors {
            let _ = writeln!(out, "  {error}");
        }
    }
    for scenario in &run.scenarios {
        if let Some(error) = &scenario.setup_error {
            out.push('\n');
            let _ = writeln!(
                out,
                "{} {}: setup failed",
                style.status(Status::Error),
                scenario.name
            );
            let _ = writeln!(out, "  {error}");
            let _ = writeln!(out, "  file: {}", scenario.file);
        }
    }

    for scenario in &run.scenarios {
        for step in &scenario.steps {
            for check in &step.checks {
                let status = check.status();
                if matches!(
                    status,
                    Status::Failed | Status::Inconclusive | Status::Flaky
                ) {
                    out.push('\n');
                    out.push_str(&check_detail(scenario, step, check, style));
                }
            }
        }
    }

    let skipped: Vec<_> = run
        .checks()
        .filter(|(_, _, c)| c.status() == Status::Skipped)
        .collect();
    if !skipped.is_empty() {
        out.push('\n');
        for (scenario, _, check) in skipped {
            let _ = writeln!(
                out,
                "{} {} › {}: {}",
                style.status(Status::Skipped),
                scenario.name,
                check.id,
                check.skip_reason().unwrap_or("no cells were checked")
            );
        }
    }

    out.push('\n');
    out.push_str(&verdict_line(run, style));
    out
}

fn scenario_table(run: &RunResult, style: &Style) -> String {
    let mut builder = Builder::default();
    builder.push_record([
        "scenario",
        "checks",
        "passed",
        "failed",
        "flaky",
        "inconclusive",
        "skipped",
        "status",
        "duration",
    ]);
    for scenario in &run.scenarios {
        let s = scenario.summary();
        builder.push_record([
            scenario.name.clone(),
            s.checks.to_string(),
            s.passed.to_string(),
            s.failed.to_string(),
            s.flaky.to_string(),
            s.inconclusive.to_string(),
            s.skipped.to_string(),
            scenario.status().as_str().to_string(),
            format_duration(scenario.duration_ms),
        ]);
    }
    let mut table = builder.build();
    table
        .with(TableStyle::rounded())
        .modify(Columns::new(1..7), Alignment::right());
    if style.color {
        for (i, scenario) in run.scenarios.iter().enumerate() {
            let (prefix, suffix) = status_paint(scenario.status());
            table.modify((i + 1, 7), Color::new(prefix, suffix));
        }
    }
    table.to_string()
}

fn check_detail(
    scenario: &ScenarioResult,
    step: &StepResult,
    check: &CheckResult,
    style: &Style,
) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{} {} › {} › {}  {}",
        style.status(check.status()),
        scenario.name,
        step.name,
        style.paint(BOLD, &check.id),
        check.title
    );
    if let Some(message) = &check.message {
        let _ = writeln!(out, "  {message}");
    }

    if check.kind == CheckKind::Reachability {
        let comparison_paint = |mark: char| {
            if !style.color {
                return None;
            }
            match mark {
                '.' => Some(GREEN),
                'X' => Some(RED),
                '~' => Some(YELLOW),
                '?' => Some(MAGENTA),
                '-' => Some(DIM),
                _ => None,
            }
        };
        for tables in truth_table::tables_for_check(check) {
            out.push('\n');
            let block = truth_table::side_by_side(&tables, |_| None, comparison_paint);
            for line in block.lines() {
                let _ = writeln!(out, "  {line}");
            }
        }
        out.push('\n');
        let _ = writeln!(out, "  expected/observed: {VERDICT_LEGEND}");
        let _ = writeln!(out, "  comparison:        {COMPARISON_LEGEND}");
        out.push('\n');
    }

    for cell in check.notable_cells() {
        let (mark, paint) = match cell.outcome {
            Outcome::Failed => ("✗", RED),
            Outcome::Flaky => ("~", YELLOW),
            _ => ("?", MAGENTA),
        };
        let _ = writeln!(
            out,
            "  {} {}",
            style.paint(paint, mark),
            cell.one_line(check.kind)
        );
        if !cell.explanation.is_empty() {
            let _ = writeln!(out, "      why: {}", cell.explanation);
        }
        if let Some(first) = cell.evidence.first() {
            let dir = first.rsplit_once('/').map_or(first.as_str(), |(d, _)| d);
            let _ = writeln!(out, "      evidence: {dir}/");
        }
        if let Some(rerun) = &cell.rerun {
            let _ = writeln!(out, "      rerun: {rerun}");
        }
    }
    out
}

fn verdict_line(run: &RunResult, style: &Style) -> String {
    let s: Summary = run.summary();
    let mut line = format!(
        "{}: {} scenarios, {} checks, {} cells: {} passed, {} failed, {} flaky, {} inconclusive, \
         {} skipped, {} ignored",
        style.status(run.status()),
        s.scenarios,
        s.checks,
        s.cells,
        s.passed,
        s.failed,
        s.flaky,
        s.inconclusive,
        s.skipped,
        s.ignored
    );
    if s.errors > 0 {
        let _ = write!(line, "; {}", plural(s.errors, "setup/infrastructure error"));
    }
    let _ = writeln!(line, " (exit code {})", run.exit_code());
    line
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures;

    #[test]
    fn plain_output_has_no_escapes() {
        let out = render_summary(&fixtures::run_result(), &Style { color: false });
        assert!(!out.contains('\u{1b}'));
        assert!(out.contains("netpol-deny-all-ingress"));
        assert!(out.contains("(exit code 1)"));
    }

    #[test]
    fn colour_output_keeps_table_alignment() {
        let run = fixtures::run_result();
        let plain = render_summary(&run, &Style { color: false });
        let colored = render_summary(&run, &Style { color: true });
        assert!(colored.contains("\u{1b}[31m"));
        let strip = |s: &str| {
            let mut out = String::new();
            let mut in_escape = false;
            for c in s.chars() {
                match (in_escape, c) {
                    (false, '\u{1b}') => in_escape = true,
                    (true, 'm') => in_escape = false,
                    (true, _) => {}
                    (false, c) => out.push(c),
                }
            }
            out
        };
        assert_eq!(strip(&colored), plain);
    }
}
