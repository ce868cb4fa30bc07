//! `harness list`: the cases (scenarios and their checks) with their labels.

use harness_scenario::select::LabelExpr;
use regex::Regex;

use crate::cli::ListArgs;
use crate::discover::scenario_files;
use crate::exit::Exit;
use crate::term::Term;

/// A scenario selected by `--label` / `--only`, with the checks that matched.
pub struct Selected {
    pub file: std::path::PathBuf,
    pub loaded: harness_scenario::LoadedScenario,
    /// Ids of the selected checks (`SCENARIO/STEP/KIND-N`).
    pub checks: Vec<String>,
}

/// Load and select scenarios. Prints diagnostics; `Err` carries the exit code.
pub fn select(
    paths: &[std::path::PathBuf],
    label: Option<&str>,
    only: Option<&str>,
    term: &Term,
) -> Result<Vec<Selected>, Exit> {
    let fail = |msg: String| {
        eprintln!("{} {msg}", term.red("error:", true));
        Exit::BadInput
    };
    let label = label
        .map(LabelExpr::parse)
        .transpose()
        .map_err(|e| fail(format!("--label: {e}")))?;
    let only = only
        .map(Regex::new)
        .transpose()
        .map_err(|e| fail(format!("--only is not a valid regular expression: {e}")))?;
    let files = scenario_files(paths).map_err(fail)?;
    let mut out = Vec::new();
    let mut bad = false;
    for file in files {
        let loaded = match harness_scenario::load::load_file(&file) {
            Ok(l) => l,
            Err(d) => {
                term.diagnostic(&d);
                bad = true;
                continue;
            }
        };
        let s = &loaded.scenario;
        if label.as_ref().is_some_and(|l| !l.matches(&s.labels)) {
            continue;
        }
        let ids: Vec<String> = s
            .checks()
            .into_iter()
            .map(|c| format!("{}/{}", s.name, c.id))
            .collect();
        let checks: Vec<String> = match &only {
            Some(re) if !re.is_match(&s.name) => {
                ids.into_iter().filter(|id| re.is_match(id)).collect()
            }
            _ => ids,
        };
        if only.is_some() && checks.is_empty() {
            continue;
        }
        out.push(Selected {
            file,
            loaded,
            checks,
        });
    }
    if bad { Err(Exit::BadInput) } else { Ok(out) }
}

pub fn run(args: &ListArgs, term: &Term) -> Exit {
    let selected = match select(
        &args.paths,
        args.label.as_deref(),
        args.only.as_deref(),
        term,
    ) {
        Ok(s) => s,
        Err(code) => return code,
    };
    if args.json {
        let cases: Vec<serde_json::Value> = selected
            .iter()
            .map(|c| {
                let s = &c.loaded.scenario;
                serde_json::json!({
                    "name": s.name,
                    "file": c.file.display().to_string(),
                    "labels": s.labels,
                    "description": s.description,
                    "checks": c.checks,
                })
            })
            .collect();
        println!(
            "{}",
            serde_json::to_string_pretty(&cases).unwrap_or_default()
        );
        return Exit::Ok;
    }
    for c in &selected {
        let s = &c.loaded.scenario;
        let labels = if s.labels.is_empty() {
            String::new()
        } else {
            format!("  [{}]", s.labels.join(", "))
        };
        println!(
            "{}{}  {}",
            term.bold(&s.name, false),
            term.dim(&labels, false),
            term.dim(&c.file.display().to_string(), false)
        );
        for id in &c.checks {
            println!("  {id}");
        }
    }
    let checks: usize = selected.iter().map(|c| c.checks.len()).sum();
    println!(
        "{} case{}, {checks} check{}",
        selected.len(),
        if selected.len() == 1 { "" } else { "s" },
        if checks == 1 { "" } else { "s" }
    );
    Exit::Ok
}
