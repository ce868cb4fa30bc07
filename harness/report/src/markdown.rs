//! `summary.md`: a Markdown summary sized for a GitHub Actions step summary.
//!
//! A headline with the verdict and counts, a table of scenarios, setup and infrastructure
//! errors, then one collapsible `<details>` per check that needs attention (failed,
//! inconclusive, flaky) with its cells, truth tables and rerun commands. Passing checks are
//! only counted: the full detail lives in `report.html`.

use std::fmt::Write as _;

use crate::escape::{code_block, markdown_cell};
use crate::model::{CheckKind, CheckResult, Outcome, RunResult, Status, format_duration, plural};
use crate::truth_table;

fn icon(status: Status) -> &'static str {
    match status {
        Status::Passed => "✅",
        Status::Flaky => "🟡",
        Status::Failed => "❌",
        Status::Error => "💥",
        Status::Inconclusive => "❔",
        Status::Skipped => "⏭️",
    }
}

/// Renders `summary.md`.
pub fn render(run: &RunResult) -> String {
    let s = run.summary();
    let status = run.status();
    let mut out = String::new();
    let _ = writeln!(
        out,
        "## {} Contrail conformance: {}\n",
        icon(status),
        status.as_str().to_uppercase()
    );
    let _ = writeln!(
        out,
        "**{}** scenarios · **{}** checks · **{}** cells: **{}** passed, **{}** failed, **{}** \
         flaky, **{}** inconclusive, **{}** skipped, **{}** ignored · **{}** setup/infrastructure \
         error{} · exit code **{}**\n",
        s.scenarios,
        s.checks,
        s.cells,
        s.passed,
        s.failed,
        s.flaky,
        s.inconclusive,
        s.skipped,
        s.ignored,
        s.errors,
        if s.errors == 1 { "" } else { "s" },
        run.exit_code()
    );
    let _ = writeln!(
        out,
        "Run `{}` · started {} · {} · provider `{}` · dataplane `{}` · profile `{}` · seed `{}` · \
         harness {}\n",
        inline_code(&run.run_id),
        markdown_cell(&run.started_at),
        format_duration(run.duration_ms),
        inline_code(&run.provider),
        inline_code(&run.dataplane),
        inline_code(&run.profile),
        run.seed,
        markdown_cell(&run.harness_version)
    );

    out.push_str(
        "| | scenario | checks | passed | failed | flaky | inconclusive | skipped | duration |\n",
    );
    out.push_str("|---|---|--:|--:|--:|--:|--:|--:|--:|\n");
    for scenario in &run.scenarios {
        let s = scenario.summary();
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            icon(scenario.status()),
            markdown_cell(&scenario.name),
            s.checks,
            s.passed,
            s.failed,
            s.flaky,
            s.inconclusive,
            s.skipped,
            format_duration(scenario.duration_ms)
        );
    }
    out.push('\n');

    let setup_errors: Vec<_> = run
        .scenarios
        .iter()
        .filter_map(|s| s.setup_error.as_ref().map(|e| (s, e)))
        .collect();
    if !run.infrastructure_errors.is_empty() || !setup_errors.is_empty() {
        out.push_str("### 💥 Errors\n\n");
        for error in &run.infrastructure_errors {
            let _ = writeln!(out, "- infrastructure: {}", markdown_cell(error));
        }
        for (scenario, error) in setup_errors {
            let _ = writeln!(
                out,
                "- **{}** setup failed ({}): {}",
                markdown_cell(&scenario.name),
                markdown_cell(&scenario.file),
                markdown_cell(error)
            );
        }
        out.push('\n');
    }

    let skipped: Vec<_> = run
        .checks()
        .filter(|(_, _, c)| c.status() == Status::Skipped)
        .collect();
    if !skipped.is_empty() {
        out.push_str("### ⏭️ Skipped checks\n\n");
        for (scenario, _, check) in skipped {
            let _ = writeln!(
                out,
                "- **{}** `{}`: {}",
                markdown_cell(&scenario.name),
                inline_code(&check.id),
                markdown_cell(check.skip_reason().unwrap_or("no cells were checked"))
            );
        }
        out.push('\n');
    }

    let attention: Vec<_> = run
        .checks()
        .filter(|(_, _, c)| {
            matches!(
                c.status(),
                Status::Failed | Status::Inconclusive | Status::Flaky
            )
        })
        .collect();
    if !attention.is_empty() {
        out.push_str("### Checks that need attention\n\n");
        for (scenario, step, check) in attention {
            check_details(&mut out, &scenario.name, &step.name, check);
        }
    }
    out
}

/// Text for inside a code span: backticks cannot be escaped there, so they are replaced.
fn inline_code(text: &str) -> String {
    text.replace('`', "'").replace('\n', " ")
}

fn check_details(out: &mut String, scenario: &str, step: &str, check: &CheckResult) {
    let s = check.summary();
    let status = check.status();
    let counts: Vec<String> = [
        (s.failed, "failed"),
        (s.inconclusive, "inconclusive"),
        (s.flaky, "flaky"),
    ]
    .into_iter()
    .filter(|(n, _)| *n > 0)
    .map(|(n, what)| format!("{n} {what}"))
    .collect();
    let _ = writeln!(
        out,
        "<details><summary>{} <b>{}</b> › {} › <code>{}</code> {} — {} of {}</summary>\n",
        icon(status),
        crate::escape::html(scenario),
        crate::escape::html(step),
        crate::escape::html(&check.id),
        crate::escape::html(&check.title),
        counts.join(", "),
        plural(s.cells, "cell")
    );

    let (from, to, port) = match check.kind {
        CheckKind::Reachability => ("from", "to", "port"),
        CheckKind::Rbac => ("subject", "request", ""),
        CheckKind::Contrail => ("type", "fq_name", "field"),
    };
    if port.is_empty() {
        let _ = writeln!(
            out,
            "| outcome | {from} | {to} | expected | observed | detail |\n|---|---|---|---|---|---|"
        );
    } else {
        let _ = writeln!(
            out,
            "| outcome | {from} | {to} | {port} | expected | observed | detail |\n\
             |---|---|---|---|---|---|---|"
        );
    }
    for cell in check.notable_cells() {
        let detail = match &cell.outcome {
            Outcome::Inconclusive { reason } => reason.clone(),
            _ => cell.observed_detail.clone().unwrap_or_default(),
        };
        let port_cell = if port.is_empty() {
            String::new()
        } else {
            format!(" {} |", markdown_cell(&cell.port))
        };
        let _ = writeln!(
            out,
            "| {} | {} | {} |{} {} | {} | {} |",
            cell.outcome.as_str(),
            markdown_cell(&cell.from),
            markdown_cell(&cell.to),
            port_cell,
            markdown_cell(&cell.expected),
            markdown_cell(&cell.observed),
            markdown_cell(&detail)
        );
    }
    out.push('\n');

    if check.kind == CheckKind::Reachability {
        let mut tables = String::new();
        for port_tables in truth_table::tables_for_check(check) {
            if !tables.is_empty() {
                tables.push('\n');
            }
            tables.push_str(&truth_table::render_side_by_side(&port_tables));
        }
        let _ = write!(
            tables,
            "\nexpected/observed: {}\ncomparison:        {}\n",
            truth_table::VERDICT_LEGEND,
            truth_table::COMPARISON_LEGEND
        );
        out.push_str(&code_block("text", &tables));
        out.push('\n');
    }

    let reruns = check.rerun_commands();
    if !reruns.is_empty() {
        out.push_str("Rerun:\n\n");
        out.push_str(&code_block("sh", &(reruns.join("\n") + "\n")));
        out.push('\n');
    }
    out.push_str("</details>\n\n");
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures;

    #[test]
    fn has_headline_table_and_details() {
        let md = render(&fixtures::run_result());
        assert!(md.starts_with("## ❌ Contrail conformance: FAILED"));
        assert!(md.contains("| ❌ | netpol-deny-all-ingress |"));
        assert_eq!(md.matches("<details>").count(), 2);
        assert_eq!(md.matches("</details>").count(), 2);
        assert!(md.contains("```sh\nharness run"));
    }

    #[test]
    fn hostile_names_cannot_break_the_table() {
        let mut run = fixtures::run_result();
        run.scenarios[0].name = "a|b<script>".into();
        let md = render(&run);
        assert!(md.contains("a\\|b&lt;script&gt;"));
        assert!(!md.contains("<script>"));
    }
}
