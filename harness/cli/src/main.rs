//! `harness`: conformance and end-to-end tests for Kubernetes networked by Contrail.
//!
//! A thin binary: argument parsing, printing and exit codes. Everything else lives in the
//! library crates (`harness-scenario`, `harness-oracle`, `harness-report`, `harness-runner`).

mod agent;
mod bench;
mod cli;
mod discover;
mod exit;
mod lint;
mod list;
mod plan;
mod probe;
mod run;
mod selftest;
mod serve;
mod term;
mod up;

use clap::Parser;

use crate::cli::{Cli, Command};
use crate::exit::Exit;

fn main() {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            // Help and version are not errors; everything else is bad input (exit 2).
            let code = if e.use_stderr() {
                Exit::BadInput
            } else {
                Exit::Ok
            };
            let _ = e.print();
            std::process::exit(code as i32);
        }
    };
    if cli.command.prints_only() {
        // `harness plan … | head` must end quietly: with SIGPIPE ignored (Rust's default),
        // `println!` panics on a closed pipe. Only for verbs that own no sockets, where a
        // peer closing a connection must stay an error, not a signal.
        // SAFETY: called before any thread exists; SIG_DFL is a valid disposition.
        unsafe {
            libc::signal(libc::SIGPIPE, libc::SIG_DFL);
        }
    }
    let term = term::Term::detect();
    let code = match cli.command {
        Command::Agent(args) => agent::run(&args),
        Command::Lint(args) => lint::run(&args, &term),
        Command::List(args) => list::run(&args, &term),
        Command::Schema(args) => schema(&args),
        Command::Run(args) => run::run(&args, &term),
        Command::Selftest(args) => selftest::run(&args, &term),
        Command::Plan(args) => plan::run(&args, &term),
        Command::Up(args) => up::run(&args, &term),
        Command::Probe(args) => probe::run(&args, &term),
        Command::Bench(args) => bench::run(&args, &term),
        Command::KubeSim(args) => serve::kube_sim(&args, &term),
        Command::ContrailMock(args) => serve::contrail_mock(&args, &term),
    };
    std::process::exit(code as i32);
}

fn schema(args: &cli::SchemaArgs) -> Exit {
    let text = harness_scenario::schema::scenario_schema_json();
    match &args.output {
        Some(path) => match std::fs::write(path, text) {
            Ok(()) => Exit::Ok,
            Err(e) => {
                eprintln!("error: cannot write {}: {e}", path.display());
                Exit::BadInput
            }
        },
        None => {
            print!("{text}");
            Exit::Ok
        }
    }
}
