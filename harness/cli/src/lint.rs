//! `harness lint`: validate scenario files.

use crate::cli::LintArgs;
use crate::discover::scenario_files;
use crate::exit::Exit;
use crate::term::Term;

pub fn run(args: &LintArgs, term: &Term) -> Exit {
    let files = match scenario_files(&args.paths) {
        Ok(f) if f.is_empty() => {
            eprintln!(
                "{} no scenario files (*.yaml, *.yml) under the given paths",
                term.red("error:", true)
            );
            return Exit::BadInput;
        }
        Ok(f) => f,
        Err(e) => {
            eprintln!("{} {e}", term.red("error:", true));
            return Exit::BadInput;
        }
    };
    let mut bad = 0;
    for file in &files {
        match harness_scenario::load::load_file(file) {
            Ok(loaded) => {
                if !args.quiet {
                    let s = &loaded.scenario;
                    let checks: usize = s.steps.iter().map(|st| st.expect.len()).sum();
                    println!(
                        "{} {} ({}: {} step{}, {} check{})",
                        term.green("ok", false),
                        file.display(),
                        s.name,
                        s.steps.len(),
                        if s.steps.len() == 1 { "" } else { "s" },
                        checks,
                        if checks == 1 { "" } else { "s" }
                    );
                }
            }
            Err(d) => {
                bad += 1;
                term.diagnostic(&d);
            }
        }
    }
    if bad > 0 {
        eprintln!(
            "{bad} of {} scenario file{} invalid",
            files.len(),
            if files.len() == 1 { "" } else { "s" }
        );
        Exit::BadInput
    } else {
        Exit::Ok
    }
}
