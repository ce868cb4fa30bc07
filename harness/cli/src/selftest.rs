//! `harness selftest`: run the suite clean, once per mock fault and against profile r5.0;
//! print the fault → catching cases table and the r5.0 failures with the deviations that
//! explain them; write `selftest.md` / `selftest.json`; exit 0, 1 (a fault undetected, the
//! clean run failed, an unexplained r5.0 result), 2 (bad input) or 3 (infrastructure).

use std::path::PathBuf;
use std::time::Instant;

use harness_report::RunResult;
use harness_runner::run::{self as runner, RunOptions, ScenarioInput};
use harness_runner::selftest::{
    self, Detection, Phase, PhaseRecord, SelftestEvent, SelftestOptions, SelftestReport,
};
use harness_scenario::MockFault;

use crate::cli::SelftestArgs;
use crate::exit::Exit;
use crate::list::select;
use crate::term::Term;

/// Where the suite lives when no path is given.
const DEFAULT_SUITE: &str = "scenarios/conformance";

fn bad(term: &Term, msg: &str) -> Exit {
    eprintln!("{} {msg}", term.red("error:", true));
    Exit::BadInput
}

pub fn run(args: &SelftestArgs, term: &Term) -> Exit {
    let mut faults = Vec::new();
    for f in &args.only_faults {
        match f.parse::<MockFault>() {
            Ok(x) if !faults.contains(&x) => faults.push(x),
            Ok(_) => {}
            Err(e) => return bad(term, &format!("--only-fault: {e}")),
        }
    }
    if faults.is_empty() {
        faults = MockFault::ALL.to_vec();
    }
    if args.parallel == Some(0) {
        return bad(term, "--parallel must be at least 1");
    }
    let paths = if args.paths.is_empty() {
        vec![PathBuf::from(DEFAULT_SUITE)]
    } else {
        args.paths.clone()
    };
    let selected = match select(&paths, None, None, term) {
        Ok(s) => s,
        Err(code) => return code,
    };
    if selected.is_empty() {
        return bad(term, "no scenario found in the paths given");
    }
    let inputs: Vec<ScenarioInput> = selected
        .into_iter()
        .map(|s| ScenarioInput {
            file_arg: s.file.display().to_string(),
            loaded: s.loaded,
            selection: None,
        })
        .collect();
    let seed = args.seed.unwrap_or_else(harness_runner::seed::fresh_seed);
    let run_id = runner::new_run_id();
    let report_dir = args
        .report_dir
        .clone()
        .unwrap_or_else(|| PathBuf::from("reports").join(format!("selftest-{run_id}")));
    let parallel = args.parallel.unwrap_or_else(runner::default_parallel);
    let opts = SelftestOptions {
        base: RunOptions {
            seed,
            report_dir: Some(report_dir.clone()),
            program: "harness".into(),
            ..RunOptions::default()
        },
        faults,
        parallel,
    };
    println!(
        "harness selftest: {} scenarios × {} phases (clean, {} fault{}, r5.0) · {parallel} at once · seed {seed}",
        inputs.len(),
        opts.faults.len() + 2,
        opts.faults.len(),
        if opts.faults.len() == 1 { "" } else { "s" }
    );

    let runtime = match crate::exit::runtime(term, true) {
        Ok(r) => r,
        Err(code) => return code,
    };
    let started_at = runner::now_rfc3339();
    let started = Instant::now();
    let term_c = *term;
    let report = runtime.block_on(async {
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<SelftestEvent>();
        let printer = tokio::spawn(async move {
            while let Some(SelftestEvent::PhaseDone { phase }) = rx.recv().await {
                print_phase(&phase, &term_c);
            }
        });
        let work = selftest::selftest(&inputs, &opts, Some(&tx));
        let outcome = tokio::select! {
            r = work => Some(r),
            _ = tokio::signal::ctrl_c() => None,
        };
        drop(tx);
        let _ = printer.await;
        outcome
    });
    // Dropping the runtime stops what a cancelled self-test left running (clusters' servers).
    runtime.shutdown_timeout(std::time::Duration::from_secs(5));
    let Some(report) = report else {
        eprintln!("\ninterrupted: the clusters were stopped; no self-test report was written");
        return Exit::Interrupted;
    };
    println!();
    print!("{}", render_terminal(&report, term));
    let base = RunResult {
        run_id,
        started_at,
        duration_ms: started.elapsed().as_millis() as u64,
        harness_version: env!("CARGO_PKG_VERSION").into(),
        command: std::env::args().collect(),
        provider: "sim".into(),
        dataplane: "model".into(),
        profile: "upstream".into(),
        seed,
        scenarios: Vec::new(),
        infrastructure_errors: Vec::new(),
    };
    match selftest::write_reports(&report_dir, &report, &base) {
        Ok(_) => println!(
            "report: {}/selftest.md, selftest.json (full reports of the clean and r5.0 runs under clean/ and r5.0/)",
            report_dir.display()
        ),
        Err(e) => {
            eprintln!(
                "{} cannot write the self-test report to {}: {e}",
                term.red("error:", true),
                report_dir.display()
            );
            return Exit::Infrastructure;
        }
    }
    println!("seed: {seed} (rerun with --seed {seed} to reproduce the probe order)");
    match report.exit_code() {
        selftest::EXIT_OK => Exit::Ok,
        selftest::EXIT_FAILED => Exit::CheckFailed,
        _ => Exit::Infrastructure,
    }
}

fn print_phase(p: &PhaseRecord, term: &Term) {
    let failed = p.failed.len();
    let mark = match p.phase {
        _ if !p.infrastructure.is_empty() => term.red("!", false),
        Phase::Clean if failed > 0 => term.red("✗", false),
        Phase::Fault(_) if failed == 0 => term.red("✗", false),
        _ => term.green("✓", false),
    };
    let what = match p.phase {
        Phase::Clean => format!("{failed} failed cells"),
        Phase::Fault(_) => format!("{failed} failed cells"),
        Phase::R50 => format!(
            "{failed} failed cells, {} explained by deviations",
            p.failed.iter().filter(|n| !n.deviations.is_empty()).count()
        ),
    };
    let infra = if p.infrastructure.is_empty() {
        String::new()
    } else {
        format!(", {} infrastructure problems", p.infrastructure.len())
    };
    println!(
        "  {mark} {:<34} {what}{infra} ({} wall)",
        p.phase.to_string(),
        harness_report::model::format_duration(p.wall_ms)
    );
}

/// The tables people read: fault → cases, the r5.0 failures and their deviations, the
/// verdict.
fn render_terminal(r: &SelftestReport, term: &Term) -> String {
    use std::fmt::Write as _;
    let mut s = String::new();
    let clean = r.phase(Phase::Clean);
    match (clean, r.clean_failures.is_empty()) {
        (Some(c), true) => {
            let _ = writeln!(
                s,
                "clean run: {} {} cells passed",
                term.green("passed", false),
                c.cells.get("passed").copied().unwrap_or(0)
            );
        }
        (_, false) => {
            let _ = writeln!(s, "clean run: {}", term.red("FAILED", false));
            for c in &r.clean_failures {
                let _ = writeln!(s, "  {} ({} cells)", c.label(), c.cells);
            }
        }
        (None, true) => {}
    }
    let _ = writeln!(s, "\nfault → cases that caught it");
    let width = r.faults.iter().map(|f| f.fault.len()).max().unwrap_or(0);
    for f in &r.faults {
        let status = match f.detection {
            Detection::Caught => term.green("caught", false),
            Detection::Undetected => term.red("UNDETECTED", false),
            Detection::Undecided => term.red("undecided", false),
        };
        let cases: Vec<String> = f.caught_by.iter().map(|c| c.label()).collect();
        let _ = writeln!(
            s,
            "  {:<width$}  {status}  {}",
            f.fault,
            if cases.is_empty() {
                String::from("—")
            } else {
                cases.join(", ")
            }
        );
    }
    let _ = writeln!(
        s,
        "\nr5.0 (mock profile r5.0, expected verdicts upstream): {} failed cells explained, {} unexplained, {} predicted but not shown",
        r.r50.explained.len(),
        r.r50.unexplained.len(),
        r.r50.not_shown.len()
    );
    for (c, devs) in &r.r50.cases {
        let _ = writeln!(
            s,
            "  {}  {} cell{}  ← {}",
            c.label(),
            c.cells,
            if c.cells == 1 { "" } else { "s" },
            devs.join(", ")
        );
    }
    for n in &r.r50.unexplained {
        let _ = writeln!(
            s,
            "  {} {} {}: expected {}, observed {} — {}",
            term.red("unexplained", false),
            n.cell.file,
            n.cell.key(),
            n.expected,
            n.observed,
            n.why
        );
    }
    for n in &r.r50.not_shown {
        let _ = writeln!(
            s,
            "  {} {} {}: {}",
            term.red("not shown", false),
            n.cell.file,
            n.cell.key(),
            n.why
        );
    }
    if !r.infrastructure.is_empty() {
        let _ = writeln!(s, "\ninfrastructure problems:");
        for i in r.infrastructure.iter().take(20) {
            let _ = writeln!(s, "  {i}");
        }
        if r.infrastructure.len() > 20 {
            let _ = writeln!(
                s,
                "  … and {} more (selftest.json)",
                r.infrastructure.len() - 20
            );
        }
    }
    let _ = writeln!(
        s,
        "\n{}: {} phases in {}",
        match r.exit_code() {
            selftest::EXIT_OK => term.green("SELFTEST PASSED", true),
            selftest::EXIT_FAILED => term.red("SELFTEST FAILED", true),
            _ => term.red("SELFTEST ERROR", true),
        },
        r.phases.len(),
        harness_report::model::format_duration(r.duration_ms)
    );
    for p in &r.problems {
        let _ = writeln!(s, "  - {p}");
    }
    s
}
