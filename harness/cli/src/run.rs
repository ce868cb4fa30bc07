//! `harness run`: stand clusters up, run scenarios, print progress and a summary, write the
//! reports, exit with the run's code. First Ctrl-C: stop, clean up, write the report, exit
//! 130; second Ctrl-C: exit at once, saying what was left. SIGTERM (`kill`, a CI job's
//! timeout, `docker stop`) gets the same cleanup and exits 143.

use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

use harness_report::{RunResult, ScenarioResult, terminal};
use harness_runner::evidence::EvidenceMode;
use harness_runner::provider::netns;
use harness_runner::run::{self as runner, DataplaneKind, Event, RunOptions, ScenarioInput};
use harness_runner::select::Selection;
use harness_scenario::{MockFault, Profile};

use crate::cli::RunArgs;
use crate::exit::Exit;
use crate::list::select;
use crate::term::Term;

fn bad(term: &Term, msg: &str) -> Exit {
    eprintln!("{} {msg}", term.red("error:", true));
    Exit::BadInput
}

pub fn run(args: &RunArgs, term: &Term) -> Exit {
    if args.provider != "sim" {
        return bad(
            term,
            &format!(
                "--provider {}: only `sim` (the embedded cluster) is available today",
                args.provider
            ),
        );
    }
    let dataplane: DataplaneKind = match args.dataplane.parse() {
        Ok(d) => d,
        Err(e) => return bad(term, &format!("--dataplane: {e}")),
    };
    let profile = match args.contrail_profile.as_deref().map(str::parse::<Profile>) {
        None => None,
        Some(Ok(p)) => Some(p),
        Some(Err(e)) => return bad(term, &format!("--contrail-profile: {e}")),
    };
    let expect_profile = match args.expect_profile.parse::<Profile>() {
        Ok(p) => p,
        Err(e) => return bad(term, &format!("--expect-profile: {e}")),
    };
    let mut faults = Vec::new();
    for f in &args.faults {
        match f.parse::<MockFault>() {
            Ok(x) => faults.push(x),
            Err(e) => return bad(term, &format!("--fault: {e}")),
        }
    }
    let evidence: EvidenceMode = match args.evidence.parse() {
        Ok(e) => e,
        Err(e) => return bad(term, &format!("--evidence: {e}")),
    };
    let selection = match args.only.as_deref().map(Selection::only).transpose() {
        Ok(s) => s,
        Err(e) => return bad(term, &e),
    };
    let selected = match select(&args.paths, args.label.as_deref(), None, term) {
        Ok(s) => s,
        Err(code) => return code,
    };
    // A scenario runs when --only names it, or one of its checks or cells.
    let mut inputs = Vec::new();
    for s in selected {
        let name = &s.loaded.scenario.name;
        let sel = match (&selection, args.only.as_deref()) {
            (Some(sel), Some(pattern)) => {
                let re = regex::Regex::new(pattern).ok();
                if re.is_some_and(|r| r.is_match(name)) {
                    Selection::all()
                } else if s.loaded.scenario.checks().iter().any(|c| sel.check(&c.id)) {
                    sel.clone()
                } else {
                    continue;
                }
            }
            _ => Selection::all(),
        };
        inputs.push(ScenarioInput {
            file_arg: s.file.display().to_string(),
            loaded: s.loaded,
            selection: Some(sel),
        });
    }
    if inputs.is_empty() {
        return bad(
            term,
            "no scenario matches the paths, --label and --only given",
        );
    }
    if dataplane == DataplaneKind::Netns {
        // Before any cluster is stood up: without the capability nothing can be built (exit 3,
        // naming it); namespaces a killed earlier run left behind are removed first.
        if let Err(e) = netns::check_capabilities() {
            eprintln!("{} --dataplane netns: {e}", term.red("error:", true));
            return Exit::Infrastructure;
        }
        match netns::sweep_leftovers() {
            Ok(gone) if gone.is_empty() => {}
            Ok(gone) => println!(
                "netns: removed {} namespace{} left by dead runs: {}",
                gone.len(),
                if gone.len() == 1 { "" } else { "s" },
                gone.join(" ")
            ),
            Err(e) => {
                eprintln!("{} --dataplane netns: {e}", term.red("error:", true));
                return Exit::Infrastructure;
            }
        }
    }
    let seed = args.seed.unwrap_or_else(harness_runner::seed::fresh_seed);
    let run_id = runner::new_run_id();
    let report_dir = args
        .report_dir
        .clone()
        .unwrap_or_else(|| PathBuf::from("reports").join(&run_id));
    let opts = RunOptions {
        provider: args.provider.clone(),
        dataplane,
        seed,
        selection: Selection::all(),
        profile,
        expect_profile,
        faults,
        report_dir: Some(report_dir.clone()),
        evidence,
        program: "harness".into(),
        keep: args.keep,
        ..RunOptions::default()
    };
    println!(
        "harness run: {} scenario{} · provider {} · dataplane {} · contrail profile {} · expected verdicts {} · seed {seed}",
        inputs.len(),
        if inputs.len() == 1 { "" } else { "s" },
        opts.provider,
        dataplane.as_str(),
        profile.map_or("per scenario", Profile::as_str),
        expect_profile.as_str()
    );

    let runtime = match crate::exit::runtime(term, true) {
        Ok(r) => r,
        Err(code) => return code,
    };
    let started_at = runner::now_rfc3339();
    let started = Instant::now();
    let done: Arc<Mutex<Vec<ScenarioResult>>> = Arc::new(Mutex::new(Vec::new()));
    let term_c = *term;
    let (interrupted, results) = runtime.block_on(async {
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<Event>();
        let printer = {
            let done = done.clone();
            tokio::spawn(async move {
                while let Some(e) = rx.recv().await {
                    print_event(&e, &term_c);
                    if let Event::ScenarioDone { result } = e {
                        done.lock()
                            .unwrap_or_else(PoisonError::into_inner)
                            .push(*result);
                    }
                }
            })
        };
        let parallel = args
            .parallel
            .unwrap_or_else(|| runner::default_parallel_for(dataplane));
        let work = runner::run_all(&inputs, &opts, parallel, Some(&tx));
        let outcome = tokio::select! {
            r = work => (None, Some(r)),
            sig = interrupt() => (Some(sig), None),
        };
        drop(tx);
        let _ = printer.await;
        outcome
    });
    let signal = interrupted;
    let interrupted = signal.is_some();
    if interrupted {
        // A second Ctrl-C while cleaning up exits at once.
        std::thread::spawn(|| {
            if let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                let code = rt.block_on(interrupt());
                eprintln!(
                    "\ninterrupted again: exiting without cleanup; the servers of the running scenario may be left (netns namespaces are swept by the next `harness run --dataplane netns`) and the report was not written"
                );
                std::process::exit(code as i32);
            }
        });
        eprintln!(
            "\n{}: stopping the cluster and writing the report (Ctrl-C again to exit at once)",
            if signal == Some(Exit::Terminated) {
                "terminated (SIGTERM)"
            } else {
                "interrupted"
            }
        );
    }
    // Dropping the runtime stops every task the cancelled run left (clusters' servers).
    if interrupted {
        // The cancelled scenarios' sessions dropped their namespaces; a probe batch still
        // blocking on a thread may hold one: tear every live netns run down now.
        for e in netns::cleanup_live() {
            eprintln!("{} {e}", term.red("error:", true));
        }
    }
    runtime.shutdown_timeout(std::time::Duration::from_secs(5));
    let mut netns_left = Vec::new();
    if dataplane == DataplaneKind::Netns {
        for e in netns::cleanup_live() {
            eprintln!("{} {e}", term.red("error:", true));
        }
        let runs = netns::started_runs();
        netns_left = netns::leftover_namespaces();
        if netns_left.is_empty() && !runs.is_empty() {
            println!(
                "netns: every namespace of run{} {} deleted",
                if runs.len() == 1 { "" } else { "s" },
                runs.join(", ")
            );
        }
    }
    let scenarios = results.unwrap_or_else(|| {
        std::mem::take(&mut *done.lock().unwrap_or_else(PoisonError::into_inner))
    });
    let mut infrastructure_errors = Vec::new();
    if !netns_left.is_empty() {
        infrastructure_errors.push(format!(
            "netns namespaces left behind (the next run sweeps them): {}",
            netns_left.join(" ")
        ));
    }
    if interrupted && !args.keep {
        infrastructure_errors.push(format!(
            "{} after {} of {} scenarios",
            if signal == Some(Exit::Terminated) {
                "terminated (SIGTERM)"
            } else {
                "interrupted (Ctrl-C)"
            },
            scenarios.len(),
            inputs.len()
        ));
    }
    let run = RunResult {
        run_id,
        started_at,
        duration_ms: started.elapsed().as_millis() as u64,
        harness_version: env!("CARGO_PKG_VERSION").into(),
        command: std::env::args().collect(),
        provider: opts.provider.clone(),
        dataplane: dataplane.as_str().into(),
        profile: profile
            .map(|p| p.as_str().to_string())
            .unwrap_or_else(|| "per scenario".into()),
        seed,
        scenarios,
        infrastructure_errors,
    };
    println!();
    print!(
        "{}",
        terminal::render_summary(
            &run,
            &terminal::Style {
                color: term.color_out
            }
        )
    );
    match harness_report::write_all(&report_dir, &run) {
        Ok(files) => println!(
            "reports: {} ({} files; evidence under {}/evidence)",
            report_dir.display(),
            files.len(),
            report_dir.display()
        ),
        Err(e) => {
            eprintln!(
                "{} cannot write the reports to {}: {e}",
                term.red("error:", true),
                report_dir.display()
            );
            return Exit::Infrastructure;
        }
    }
    println!("seed: {seed} (rerun with --seed {seed} to reproduce the probe order)");
    if let (Some(code), false) = (signal, args.keep) {
        return code;
    }
    match run.exit_code() {
        0 => Exit::Ok,
        1 => Exit::CheckFailed,
        _ => Exit::Infrastructure,
    }
}

/// Resolves on the first SIGINT (Ctrl-C) or SIGTERM with the exit code it stands for
/// (130 or 143); both get the same cleanup. Without a SIGTERM handler (it could not be
/// installed) only Ctrl-C is awaited.
async fn interrupt() -> Exit {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        if let Ok(mut term) = signal(SignalKind::terminate()) {
            return tokio::select! {
                _ = tokio::signal::ctrl_c() => Exit::Interrupted,
                _ = term.recv() => Exit::Terminated,
            };
        }
    }
    let _ = tokio::signal::ctrl_c().await;
    Exit::Interrupted
}

fn print_event(e: &Event, term: &Term) {
    match e {
        Event::ScenarioStarted { name, file } => {
            println!("{} {name} ({file})", term.bold("▶", false));
        }
        Event::ClusterUp { ms } => println!("  cluster up in {ms} ms"),
        Event::StepConverged { step, ms } => println!("  step `{step}`: converged in {ms} ms"),
        Event::CheckDone { check } => {
            let s = check.summary();
            let status = check.status();
            let mark = if status.is_success() {
                term.green("✓", false)
            } else if matches!(status, harness_report::Status::Skipped) {
                term.dim("-", false)
            } else {
                term.red("✗", false)
            };
            println!(
                "    {mark} {} {}: {} passed, {} failed, {} flaky, {} inconclusive, {} skipped ({} ms)",
                check.id,
                check.title,
                s.passed,
                s.failed,
                s.flaky,
                s.inconclusive,
                s.skipped + s.ignored,
                check.duration_ms
            );
        }
        Event::ClusterKept {
            scenario,
            kubeconfig_yaml,
            kubernetes,
            contrail,
        } => {
            let path = std::env::temp_dir().join(format!(
                "harness-{}-{}.kubeconfig",
                scenario,
                std::process::id()
            ));
            let written = std::fs::write(&path, kubeconfig_yaml).is_ok();
            println!("  kept: Kubernetes {kubernetes} · Contrail {contrail}");
            if written {
                println!(
                    "    kubectl --kubeconfig {} get pods -A -o wide",
                    path.display()
                );
            }
            println!("    curl -s {contrail}/virtual-networks -H 'X-Role: admin'");
            println!("    press Ctrl-C to tear it down");
        }
        Event::Netns { detail } => println!("  netns: {detail}"),
        Event::ScenarioDone { result } => {
            if let Some(e) = &result.setup_error {
                println!("  {} {e}", term.red("setup error:", false));
            }
            println!(
                "  {} {} in {}",
                result.status(),
                result.name,
                harness_report::model::format_duration(result.duration_ms)
            );
        }
    }
}
