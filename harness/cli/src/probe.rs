//! `harness probe`: probe a cluster held by `harness up` through its loopback probe endpoint
//! and print, per cell, the oracle's expectation with its explanation, the observation and
//! the per-hop trace. Exit 0 when the probe ran (whatever the verdict), 2 for a peer or port
//! the cluster does not have, 3 when no cluster answers at the state directory.

use std::time::Duration;

use harness_runner::evidence::component;
use harness_runner::hold::{Endpoints, ProbeAnswer, ProbeCell, ProbeQuery, RemoteError};

use crate::cli::ProbeArgs;
use crate::exit::Exit;
use crate::term::Term;

/// A query waits up to 5 s for convergence, then probes; this leaves room for large fan-outs.
const QUERY_TIMEOUT: Duration = Duration::from_secs(60);

pub fn run(args: &ProbeArgs, term: &Term) -> Exit {
    let dir = &args.state_dir;
    let endpoints = match Endpoints::read(dir) {
        Ok(e) => e,
        Err(e) => {
            eprintln!(
                "{} no cluster at {}: {e}; start one with `harness up --state-dir {}`",
                term.red("error:", true),
                dir.display(),
                dir.display()
            );
            return Exit::Infrastructure;
        }
    };
    if endpoints.probe.is_empty() {
        eprintln!(
            "{} {} names no probe endpoint; restart the cluster with `harness up --state-dir {}`",
            term.red("error:", true),
            Endpoints::path(dir).display(),
            dir.display()
        );
        return Exit::Infrastructure;
    }
    let query = ProbeQuery {
        from: args.from.clone(),
        to: args.to.clone(),
        port: args.port.clone(),
        pcap: args.trace,
    };
    let runtime = match crate::exit::runtime(term, false) {
        Ok(r) => r,
        Err(code) => return code,
    };
    let answer = runtime.block_on(harness_runner::hold::probe_remote(
        &endpoints.probe,
        &query,
        QUERY_TIMEOUT,
    ));
    let answer = match answer {
        Ok(a) => a,
        Err(RemoteError::Rejected(e)) => {
            let code = match e {
                harness_runner::hold::ProbeError::Cluster { .. } => Exit::Infrastructure,
                _ => Exit::BadInput,
            };
            eprintln!("{} {e}", term.red("error:", true));
            if let Some(h) = e.hint() {
                eprintln!("  hint: {h}");
            }
            return code;
        }
        Err(e @ RemoteError::Unreachable { .. }) => {
            eprintln!(
                "{} no cluster answers at {}: {e}; is `harness up --state-dir {}` (pid {}) still running?",
                term.red("error:", true),
                dir.display(),
                dir.display(),
                endpoints.pid
            );
            return Exit::Infrastructure;
        }
        Err(e) => {
            eprintln!("{} {e}", term.red("error:", true));
            return Exit::Infrastructure;
        }
    };
    let mut pcaps = Vec::new();
    if args.trace {
        match write_pcaps(dir, &answer) {
            Ok(p) => pcaps = p,
            Err(e) => eprintln!(
                "{} cannot write the pcap files under {}: {e}",
                term.red("warning:", true),
                dir.display()
            ),
        }
    }
    if args.json {
        let mut value = serde_json::to_value(&answer).unwrap_or_default();
        if let Some(cells) = value.get_mut("cells").and_then(|c| c.as_array_mut()) {
            // The files stand in for the (large) base64 pcaps.
            for (cell, path) in cells.iter_mut().zip(pcap_paths(dir, &answer)) {
                if let Some(o) = cell.as_object_mut()
                    && o.remove("pcap").is_some()
                {
                    o.insert("pcapFile".into(), path.display().to_string().into());
                }
            }
        }
        println!(
            "{}",
            serde_json::to_string_pretty(&value).unwrap_or_default()
        );
    } else {
        print!("{}", render(&answer, term));
        for p in &pcaps {
            println!("pcap: {}", p.display());
        }
    }
    if answer.cells.iter().all(|c| c.observed.is_none()) {
        // Nothing could be probed (e.g. a named port the pod does not declare): bad input.
        if !args.json {
            eprintln!(
                "{} no cell could be probed: {}",
                term.red("error:", true),
                answer
                    .cells
                    .iter()
                    .filter_map(|c| c.skipped.as_deref())
                    .next()
                    .unwrap_or("no reason given")
            );
        }
        return Exit::BadInput;
    }
    Exit::Ok
}

fn pcap_paths(dir: &std::path::Path, answer: &ProbeAnswer) -> Vec<std::path::PathBuf> {
    answer
        .cells
        .iter()
        .map(|c| {
            dir.join("probes").join(format!(
                "{}__{}__{}.pcap",
                component(&c.from),
                component(&c.to),
                component(&c.port)
            ))
        })
        .collect()
}

/// Writes each probed cell's frames to `DIR/probes/FROM__TO__PORT.pcap`.
fn write_pcaps(
    dir: &std::path::Path,
    answer: &ProbeAnswer,
) -> std::io::Result<Vec<std::path::PathBuf>> {
    let mut written = Vec::new();
    for (cell, path) in answer.cells.iter().zip(pcap_paths(dir, answer)) {
        if let Some(bytes) = cell.pcap_bytes() {
            std::fs::create_dir_all(dir.join("probes"))?;
            std::fs::write(&path, bytes)?;
            written.push(path);
        }
    }
    Ok(written)
}

/// The text form: per cell, expected vs observed at once, then the hops.
fn render(answer: &ProbeAnswer, term: &Term) -> String {
    let mut out = String::new();
    if let Some(n) = &answer.not_converged {
        out.push_str(&format!(
            "{} the cluster had not converged; probed anyway: {n}\n",
            term.red("note:", false)
        ));
    }
    for (i, c) in answer.cells.iter().enumerate() {
        if i > 0 {
            out.push('\n');
        }
        out.push_str(&cell_text(c, &answer.profile, term));
    }
    out
}

fn cell_text(c: &ProbeCell, profile: &str, term: &Term) -> String {
    let target = match c.port_number {
        Some(0) | None => c.address.clone(),
        Some(p) => format!("{}:{p}", c.address),
    };
    let mut s = format!(
        "{} → {} {} ({target})\n",
        term.bold(&c.from, false),
        term.bold(&c.to, false),
        c.port
    );
    let e = &c.expected;
    s.push_str(&format!(
        "  expected  {} ({profile}): {}\n",
        e.verdict, e.explanation
    ));
    let mut path = format!("underlay {}", e.underlay);
    if e.snat {
        path.push_str(", fabric SNAT");
    }
    if !e.via.is_empty() {
        path.push_str(&format!(", via {}", e.via.join(" → ")));
    }
    if !e.backends.is_empty() {
        path.push_str(&format!(", backends {}", e.backends.join(", ")));
    }
    s.push_str(&format!("            path: {path}\n"));
    if !e.deviations.is_empty() {
        s.push_str(&format!(
            "            r5.0 deviations: {}\n",
            e.deviations.join(", ")
        ));
    }
    if e.loopback {
        s.push_str("            (loopback: a pod probing itself)\n");
    }
    match (&c.observed, &c.skipped) {
        (Some(o), _) => {
            let mark = match c.agrees {
                Some(true) => term.green("✓ as the oracle expects", false),
                Some(false) => term.red("✗ differs from the oracle", false),
                None => term.red("? inconclusive", false),
            };
            s.push_str(&format!(
                "  observed  {}{}  {mark}\n",
                o.verdict,
                o.detail
                    .as_deref()
                    .map(|d| format!(": {d}"))
                    .unwrap_or_default()
            ));
        }
        (None, Some(why)) => s.push_str(&format!("  observed  not probed: {why}\n")),
        (None, None) => s.push_str("  observed  not probed\n"),
    }
    if !c.hops.is_empty() {
        s.push_str("  trace:\n");
        for (n, h) in c.hops.iter().enumerate() {
            s.push_str(&format!("    {:>2}. {h}\n", n + 1));
        }
    }
    s
}
