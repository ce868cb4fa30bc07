//! `report.html`: one self-contained page a vendor can read and archive.
//!
//! Inline CSS, no script, no external asset. The page has the run metadata, the counts, a table
//! of scenarios, then one section per scenario with its steps and checks. Reachability checks
//! get a heat map per port (rows = from, columns = to; each cell coloured by outcome, showing the
//! observed mark, with a tooltip of expected / observed / explanation); every failed,
//! inconclusive or flaky cell expands (`<details>`) into its explanation, observed detail,
//! convergence time, evidence links (relative hrefs) and rerun command; every check can expand
//! into the full list of its cells. All text goes through [`crate::escape`].

use std::collections::HashMap;
use std::fmt::Write as _;

use crate::escape::{html as esc, html_attr, relative_href};
use crate::model::{
    CellResult, CheckKind, CheckResult, Outcome, RunResult, ScenarioResult, Status, Summary,
    format_duration, plural,
};
use crate::truth_table::{self, COMPARISON_LEGEND, VERDICT_LEGEND};

const CSS: &str = r#"
:root{--pass:#1a7f37;--pass-bg:#d1f4da;--fail:#b42318;--fail-bg:#ffd8d3;--flaky:#8a5a00;--flaky-bg:#fff1b8;--inc:#6e40c9;--inc-bg:#eadcff;--skip:#57606a;--skip-bg:#eaeef2;--line:#d0d7de;--muted:#57606a}
*{box-sizing:border-box}
body{font:14px/1.5 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;color:#1f2328;max-width:1200px;margin:0 auto;padding:24px}
code,pre,table.matrix{font-family:ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;font-size:13px}
pre{background:#f6f8fa;border:1px solid var(--line);border-radius:6px;padding:8px 12px;overflow-x:auto;white-space:pre-wrap}
h1{margin:0 0 4px}h2{margin-top:40px;border-bottom:1px solid var(--line);padding-bottom:4px}h3{margin:24px 0 8px}h4{margin:0 0 8px;font-size:15px}
a{color:#0969da}
.muted{color:var(--muted);font-weight:normal}
.badge{display:inline-block;padding:0 8px;border-radius:10px;font-size:12px;font-weight:600;text-transform:uppercase;vertical-align:middle}
.passed{--fg:var(--pass);--bg:var(--pass-bg)}.failed,.error{--fg:var(--fail);--bg:var(--fail-bg)}.flaky{--fg:var(--flaky);--bg:var(--flaky-bg)}.inconclusive{--fg:var(--inc);--bg:var(--inc-bg)}.skipped,.ignored{--fg:var(--skip);--bg:var(--skip-bg)}
.badge{color:var(--fg);background:var(--bg)}
dl.meta{display:grid;grid-template-columns:max-content 1fr;gap:2px 16px;margin:12px 0}
dl.meta dt{color:var(--muted)}dl.meta dd{margin:0}
.counts{display:flex;flex-wrap:wrap;gap:8px;margin:16px 0}
.count{border:1px solid var(--line);border-radius:6px;padding:6px 12px;min-width:96px;background:var(--bg,#fff)}
.count b{display:block;font-size:20px;color:var(--fg,inherit)}
table{border-collapse:collapse}
table.list{width:100%;margin:8px 0}
table.list th,table.list td{border:1px solid var(--line);padding:4px 8px;text-align:left;vertical-align:top}
table.list td.n{text-align:right}
.errorbox{border-left:4px solid var(--fail);background:var(--fail-bg);padding:8px 12px;margin:8px 0;border-radius:0 6px 6px 0}
.check{border:1px solid var(--line);border-left:4px solid var(--fg,var(--line));border-radius:6px;padding:12px 16px;margin:12px 0}
.matrices{display:flex;flex-wrap:wrap;gap:24px;margin:8px 0}
figure{margin:0}figcaption{font-weight:600;margin-bottom:4px}
table.matrix th{padding:2px 6px;font-weight:600;text-align:left;white-space:nowrap}
table.matrix thead th:not(.corner){writing-mode:vertical-rl;transform:rotate(180deg);text-align:left;vertical-align:bottom;padding:6px 2px}
table.matrix td{width:28px;height:28px;text-align:center;border:1px solid #fff;background:var(--bg);color:var(--fg);font-weight:700}
table.matrix td.failed{background:var(--fail);color:#fff}
table.matrix td.ignored{background:repeating-linear-gradient(45deg,var(--skip-bg),var(--skip-bg) 4px,#fff 4px,#fff 8px)}
table.matrix td.unset{background:#fff;color:var(--line)}
table.matrix td a{color:inherit;text-decoration:none;display:block}
.legend{color:var(--muted);font-size:12px}
.legend span{display:inline-block;width:12px;height:12px;border-radius:2px;vertical-align:middle;margin:0 4px 0 12px;background:var(--bg)}
.legend span.failed{background:var(--fail)}
details{margin:4px 0}
details.cell{border:1px solid var(--line);border-left:4px solid var(--fg);border-radius:4px;padding:4px 10px}
details.cell[open]{background:#fafbfc}
details dl{display:grid;grid-template-columns:max-content 1fr;gap:2px 12px;margin:8px 0}
details dt{color:var(--muted)}details dd{margin:0}
summary{cursor:pointer}
footer{margin-top:48px;color:var(--muted);font-size:12px;border-top:1px solid var(--line);padding-top:8px}
"#;

/// Renders `report.html`.
pub fn render(run: &RunResult) -> String {
    let status = run.status();
    let summary = run.summary();
    let mut out = String::with_capacity(64 * 1024);
    let _ = write!(
        out,
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <title>Contrail conformance {} — run {}</title>\n<style>{CSS}</style>\n</head>\n<body>\n",
        status.as_str(),
        esc(&run.run_id)
    );

    header(&mut out, run, status, &summary);
    errors(&mut out, run);
    scenario_index(&mut out, run);
    if run
        .checks()
        .any(|(_, _, c)| c.kind == CheckKind::Reachability)
    {
        legend(&mut out);
    }
    for (i, scenario) in run.scenarios.iter().enumerate() {
        scenario_section(&mut out, i + 1, scenario);
    }

    let _ = write!(
        out,
        "<footer>Generated by harness {} for run {}. Evidence links are relative to the report \
         directory. Exit codes: 0 passed · 1 a check failed · 2 bad input · 3 infrastructure \
         error · 130 interrupted.</footer>\n</body>\n</html>\n",
        esc(&run.harness_version),
        esc(&run.run_id)
    );
    out
}

fn badge(status: &str) -> String {
    format!("<span class=\"badge {status}\">{status}</span>")
}

fn header(out: &mut String, run: &RunResult, status: Status, s: &Summary) {
    let _ = writeln!(
        out,
        "<header>\n<h1>Contrail Kubernetes conformance report</h1>\n\
         <p>{} exit code {}</p>\n<dl class=\"meta\">",
        badge(status.as_str()),
        run.exit_code()
    );
    let meta = [
        ("Run", format!("<code>{}</code>", esc(&run.run_id))),
        ("Started", esc(&run.started_at)),
        ("Duration", format_duration(run.duration_ms)),
        ("Provider", esc(&run.provider)),
        ("Dataplane", esc(&run.dataplane)),
        ("Profile", esc(&run.profile)),
        ("Seed", run.seed.to_string()),
        ("Harness", esc(&run.harness_version)),
        (
            "Command",
            format!("<code>{}</code>", esc(&run.command.join(" "))),
        ),
    ];
    for (name, value) in meta {
        let _ = writeln!(out, "<dt>{name}</dt><dd>{value}</dd>");
    }
    out.push_str("</dl>\n</header>\n<section class=\"counts\">\n");
    let counts = [
        ("scenarios", s.scenarios, ""),
        ("checks", s.checks, ""),
        ("cells", s.cells, ""),
        ("passed", s.passed, "passed"),
        ("failed", s.failed, "failed"),
        ("flaky", s.flaky, "flaky"),
        ("inconclusive", s.inconclusive, "inconclusive"),
        ("skipped", s.skipped, "skipped"),
        ("ignored", s.ignored, "ignored"),
        ("errors", s.errors, "error"),
    ];
    for (name, count, class) in counts {
        let class = if count > 0 && !class.is_empty() {
            format!("count {class}")
        } else {
            "count".to_string()
        };
        let _ = writeln!(out, "<div class=\"{class}\"><b>{count}</b>{name}</div>");
    }
    out.push_str("</section>\n");
}

fn errors(out: &mut String, run: &RunResult) {
    let setup: Vec<(usize, &ScenarioResult, &String)> = run
        .scenarios
        .iter()
        .enumerate()
        .filter_map(|(i, s)| s.setup_error.as_ref().map(|e| (i + 1, s, e)))
        .collect();
    if run.infrastructure_errors.is_empty() && setup.is_empty() {
        return;
    }
    out.push_str("<section>\n<h2>Errors</h2>\n");
    for error in &run.infrastructure_errors {
        let _ = writeln!(
            out,
            "<div class=\"errorbox\"><b>Infrastructure:</b> {}</div>",
            esc(error)
        );
    }
    for (i, scenario, error) in setup {
        let _ = writeln!(
            out,
            "<div class=\"errorbox\"><b><a href=\"#scenario-{i}\">{}</a></b> setup failed: {}</div>",
            esc(&scenario.name),
            esc(error)
        );
    }
    out.push_str("</section>\n");
}

fn scenario_index(out: &mut String, run: &RunResult) {
    out.push_str(
        "<section>\n<h2>Scenarios</h2>\n<table class=\"list\">\n<thead><tr><th>status</th>\
         <th>scenario</th><th>checks</th><th>passed</th><th>failed</th><th>flaky</th>\
         <th>inconclusive</th><th>skipped</th><th>ignored</th><th>duration</th></tr></thead>\n<tbody>\n",
    );
    for (i, scenario) in run.scenarios.iter().enumerate() {
        let s = scenario.summary();
        let _ = writeln!(
            out,
            "<tr><td>{}</td><td><a href=\"#scenario-{}\">{}</a></td><td class=\"n\">{}</td>\
             <td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td>\
             <td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td>\
             <td class=\"n\">{}</td></tr>",
            badge(scenario.status().as_str()),
            i + 1,
            esc(&scenario.name),
            s.checks,
            s.passed,
            s.failed,
            s.flaky,
            s.inconclusive,
            s.skipped,
            s.ignored,
            format_duration(scenario.duration_ms)
        );
    }
    out.push_str("</tbody>\n</table>\n</section>\n");
}

fn legend(out: &mut String) {
    let _ = writeln!(
        out,
        "<section>\n<h2>Reading the heat maps</h2>\n<p class=\"legend\">One table per port: rows \
         are sources (from), columns destinations (to). Each square shows what was observed \
         ({}) and is coloured by outcome:<span class=\"passed\"></span>passed\
         <span class=\"failed\"></span>failed<span class=\"flaky\"></span>flaky\
         <span class=\"inconclusive\"></span>inconclusive<span class=\"skipped\"></span>skipped\
         <span class=\"ignored\"></span>ignored. Hover a square for expected, observed and why; \
         click a failed, flaky or inconclusive one for its evidence and rerun command. The text \
         reports use comparison marks: {}.</p>\n</section>",
        esc(VERDICT_LEGEND),
        esc(COMPARISON_LEGEND)
    );
}

fn scenario_section(out: &mut String, index: usize, scenario: &ScenarioResult) {
    let _ = writeln!(
        out,
        "<section class=\"scenario\" id=\"scenario-{index}\">\n<h2>{} {} <span class=\"muted\">{}</span></h2>",
        badge(scenario.status().as_str()),
        esc(&scenario.name),
        format_duration(scenario.duration_ms)
    );
    let labels = if scenario.labels.is_empty() {
        String::new()
    } else {
        format!(" · labels: {}", esc(&scenario.labels.join(", ")))
    };
    let _ = writeln!(
        out,
        "<p class=\"muted\"><code>{}</code>{labels}</p>",
        esc(&scenario.file)
    );
    if let Some(description) = &scenario.description {
        let _ = writeln!(out, "<p>{}</p>", esc(description));
    }
    if let Some(error) = &scenario.setup_error {
        let _ = writeln!(
            out,
            "<div class=\"errorbox\"><b>Setup failed:</b> {}</div>",
            esc(error)
        );
    }
    for (s, step) in scenario.steps.iter().enumerate() {
        let _ = writeln!(
            out,
            "<h3>Step {}: {} {} <span class=\"muted\">{}</span></h3>",
            s + 1,
            esc(&step.name),
            badge(step.status().as_str()),
            format_duration(step.duration_ms)
        );
        for (c, check) in step.checks.iter().enumerate() {
            let anchor = format!("check-{index}-{}-{}", s + 1, c + 1);
            check_section(out, &anchor, check);
        }
    }
    out.push_str("</section>\n");
}

fn check_section(out: &mut String, anchor: &str, check: &CheckResult) {
    let status = check.status();
    let s = check.summary();
    let _ = writeln!(
        out,
        "<article class=\"check {}\" id=\"{anchor}\">\n<h4>{} <code>{}</code> {} \
         <span class=\"muted\">{} · {} · {}</span></h4>",
        status.as_str(),
        badge(status.as_str()),
        esc(&check.id),
        esc(&check.title),
        check.kind.as_str(),
        format_duration(check.duration_ms),
        plural(s.cells, "cell")
    );
    if let Some(message) = &check.message {
        let _ = writeln!(out, "<p>{}</p>", esc(message));
    }

    if check.kind == CheckKind::Reachability {
        heat_maps(out, anchor, check);
    } else {
        cells_table(out, anchor, check, false);
    }

    for (k, cell) in check.cells.iter().enumerate() {
        if matches!(
            cell.outcome,
            Outcome::Failed | Outcome::Inconclusive { .. } | Outcome::Flaky
        ) {
            cell_details(out, &format!("{anchor}-{}", k + 1), check.kind, cell);
        }
    }

    if check.kind == CheckKind::Reachability && !check.cells.is_empty() {
        let _ = writeln!(
            out,
            "<details><summary>All {}</summary>",
            plural(check.cells.len(), "cell")
        );
        cells_table(out, anchor, check, true);
        out.push_str("</details>\n");
    }
    out.push_str("</article>\n");
}

fn is_notable(outcome: &Outcome) -> bool {
    matches!(
        outcome,
        Outcome::Failed | Outcome::Inconclusive { .. } | Outcome::Flaky
    )
}

fn heat_maps(out: &mut String, anchor: &str, check: &CheckResult) {
    let tables = truth_table::tables_for_check(check);
    if tables.is_empty() {
        return;
    }
    let index: HashMap<(&str, &str, &str), usize> = check
        .cells
        .iter()
        .enumerate()
        .map(|(k, c)| ((c.from.as_str(), c.to.as_str(), c.port.as_str()), k))
        .collect();
    out.push_str("<div class=\"matrices\">\n");
    for port_tables in &tables {
        let _ = writeln!(
            out,
            "<figure>\n<figcaption>{}</figcaption>\n<table class=\"matrix\">\n<thead><tr><th class=\"corner\">from \\ to</th>{}</tr></thead>\n<tbody>",
            esc(&port_tables.port),
            port_tables
                .observed
                .columns()
                .iter()
                .map(|c| format!("<th>{}</th>", esc(c)))
                .collect::<String>()
        );
        for row in port_tables.observed.rows() {
            let _ = write!(out, "<tr><th>{}</th>", esc(row));
            for col in port_tables.observed.columns() {
                let found = index
                    .get(&(row.as_str(), col.as_str(), port_tables.port.as_str()))
                    .map(|&k| (k, &check.cells[k]));
                match found {
                    Some((k, cell)) => {
                        let mark = port_tables
                            .observed
                            .get(row, col)
                            .unwrap_or(truth_table::TruthTable::UNSET);
                        let content = if is_notable(&cell.outcome) {
                            format!(
                                "<a href=\"#{anchor}-{}\">{}</a>",
                                k + 1,
                                esc(&mark.to_string())
                            )
                        } else {
                            esc(&mark.to_string())
                        };
                        let _ = write!(
                            out,
                            "<td class=\"{}\" title=\"{}\">{content}</td>",
                            cell.outcome.as_str(),
                            html_attr(&tooltip(check.kind, cell))
                        );
                    }
                    None => out.push_str("<td class=\"unset\" title=\"not checked\">·</td>"),
                }
            }
            out.push_str("</tr>\n");
        }
        out.push_str("</tbody>\n</table>\n</figure>\n");
    }
    out.push_str("</div>\n");
}

fn tooltip(kind: CheckKind, cell: &CellResult) -> String {
    let mut text = format!(
        "{}\nexpected: {}\nobserved: {}\noutcome: {}",
        cell.label(kind),
        cell.expected,
        if cell.observed.is_empty() {
            "nothing"
        } else {
            &cell.observed
        },
        cell.outcome.as_str()
    );
    if let Some(reason) = cell.outcome.reason() {
        let _ = write!(text, " ({reason})");
    }
    if !cell.explanation.is_empty() {
        let _ = write!(text, "\nwhy: {}", cell.explanation);
    }
    if let Some(detail) = &cell.observed_detail {
        let _ = write!(text, "\ndetail: {detail}");
    }
    text
}

fn cells_table(out: &mut String, anchor: &str, check: &CheckResult, full: bool) {
    let (from, to, port) = match check.kind {
        CheckKind::Reachability => ("from", "to", "port"),
        CheckKind::Rbac => ("subject", "request", ""),
        CheckKind::Contrail => ("type", "fq_name", "field"),
    };
    let port_header = if port.is_empty() {
        String::new()
    } else {
        format!("<th>{port}</th>")
    };
    let _ = writeln!(
        out,
        "<table class=\"list\">\n<thead><tr><th>outcome</th><th>{from}</th><th>{to}</th>{port_header}\
         <th>expected</th><th>observed</th><th>why</th>{}</tr></thead>\n<tbody>",
        if full { "<th>converged</th>" } else { "" }
    );
    for (k, cell) in check.cells.iter().enumerate() {
        let outcome = if is_notable(&cell.outcome) {
            format!(
                "<a href=\"#{anchor}-{}\">{}</a>",
                k + 1,
                badge(cell.outcome.as_str())
            )
        } else {
            badge(cell.outcome.as_str())
        };
        let port_cell = if port.is_empty() {
            String::new()
        } else {
            format!("<td>{}</td>", esc(&cell.port))
        };
        let why = match cell.outcome.reason() {
            Some(reason) if !matches!(cell.outcome, Outcome::Inconclusive { .. }) => {
                format!("{} ({})", esc(&cell.explanation), esc(reason))
            }
            _ => esc(&cell.explanation),
        };
        let converged = if full {
            format!(
                "<td class=\"n\">{}</td>",
                cell.converged_after_ms
                    .map(format_duration)
                    .unwrap_or_default()
            )
        } else {
            String::new()
        };
        let _ = writeln!(
            out,
            "<tr><td>{outcome}</td><td>{}</td><td>{}</td>{port_cell}<td>{}</td><td>{}</td><td>{why}</td>{converged}</tr>",
            esc(&cell.from),
            esc(&cell.to),
            esc(&cell.expected),
            esc(&cell.observed),
        );
    }
    out.push_str("</tbody>\n</table>\n");
}

fn cell_details(out: &mut String, id: &str, kind: CheckKind, cell: &CellResult) {
    let _ = writeln!(
        out,
        "<details class=\"cell {}\" id=\"{id}\"><summary>{} {}</summary>\n<dl>",
        cell.outcome.as_str(),
        badge(cell.outcome.as_str()),
        esc(&cell.one_line(kind))
    );
    let mut row = |name: &str, value: String| {
        let _ = writeln!(out, "<dt>{name}</dt><dd>{value}</dd>");
    };
    row("expected", esc(&cell.expected));
    row(
        "observed",
        if cell.observed.is_empty() {
            "nothing".into()
        } else {
            esc(&cell.observed)
        },
    );
    if let Some(reason) = cell.outcome.reason() {
        row("reason", esc(reason));
    }
    if !cell.explanation.is_empty() {
        row("why expected", esc(&cell.explanation));
    }
    if let Some(detail) = &cell.observed_detail {
        row("observed detail", esc(detail));
    }
    if let Some(ms) = cell.converged_after_ms {
        row("converged after", format_duration(ms));
    }
    row("attempts", cell.attempts.to_string());
    if cell.loopback {
        row("loopback", "yes".into());
    }
    if !cell.evidence.is_empty() {
        let links: Vec<String> = cell
            .evidence
            .iter()
            .map(|path| {
                let name = path.rsplit('/').next().unwrap_or(path);
                match relative_href(path) {
                    Some(href) => format!(
                        "<a href=\"{href}\" title=\"{}\">{}</a>",
                        esc(path),
                        esc(name)
                    ),
                    None => format!("<code>{}</code>", esc(path)),
                }
            })
            .collect();
        let dir = cell
            .evidence
            .first()
            .and_then(|p| p.rsplit_once('/'))
            .map(|(dir, _)| dir)
            .filter(|dir| {
                cell.evidence
                    .iter()
                    .all(|p| p.starts_with(&format!("{dir}/")))
            });
        let listing = match dir {
            Some(dir) => format!("<code>{}/</code>: {}", esc(dir), links.join(" · ")),
            None => links.join("<br>"),
        };
        row("evidence", listing);
    }
    if let Some(rerun) = &cell.rerun {
        row("rerun", format!("<pre>{}</pre>", esc(rerun)));
    }
    out.push_str("</dl>\n</details>\n");
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures;

    #[test]
    fn is_self_contained() {
        let page = render(&fixtures::run_result());
        assert!(page.starts_with("<!DOCTYPE html>"));
        assert!(page.ends_with("</html>\n"));
        assert!(!page.contains("<script"));
        assert!(!page.contains("http://"));
        assert!(!page.contains("https://"));
        assert!(!page.contains("<link"));
        assert!(!page.contains(" src="));
    }

    #[test]
    fn escapes_hostile_names() {
        let mut run = fixtures::run_result();
        run.scenarios[0].name = "<script>alert('x')</script>".into();
        run.scenarios[0].steps[1].checks[0].cells[1].observed_detail =
            Some("\"><img onerror=alert(1)>".into());
        run.scenarios[0].steps[1].checks[0].cells[1].evidence = vec!["javascript:alert(1)".into()];
        let page = render(&run);
        assert!(!page.contains("<script>"));
        assert!(page.contains("&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;"));
        assert!(!page.contains("<img"));
        assert!(!page.contains("href=\"javascript:"));
    }

    #[test]
    fn failing_cells_link_to_their_details() {
        let page = render(&fixtures::run_result());
        // The matrix check is the first check of step 2 in scenario 1; its second cell fails.
        assert!(page.contains("<a href=\"#check-1-2-1-2\">"));
        assert!(page.contains("id=\"check-1-2-1-2\""));
        assert!(page.contains(
            "href=\"evidence/netpol-deny-all-ingress/deny-all-reachability-1/x-a_x-b_TCP-80/trace.txt\""
        ));
    }
}
