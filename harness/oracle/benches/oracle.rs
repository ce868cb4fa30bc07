//! `cargo bench -p harness-oracle`: a 100×100 pod matrix × 4 ports under 10, 50, 100 and 1,000
//! NetworkPolicies, for both profiles (median of 5 runs each).

use std::time::Instant;

use harness_oracle::bench::{default_ports, run_matrix, workload};
use harness_scenario::Profile;

fn main() {
    println!(
        "{:<9} {:>5} {:>8} {:>7} {:>10} {:>9} {:>8} {:>7} {:>7} {:>7}",
        "profile",
        "pods",
        "policies",
        "cells",
        "build ms",
        "eval ms",
        "ns/cell",
        "allow",
        "deny",
        "reject"
    );
    for profile in [Profile::Upstream, Profile::R50] {
        for policies in [10, 50, 100, 1000] {
            let (objects, spec, contrail) = workload(100, 10, policies, 42);
            let start = Instant::now();
            match run_matrix(
                &objects,
                &spec,
                &contrail,
                profile,
                &default_ports(),
                5,
                &|| start.elapsed(),
            ) {
                Ok(f) => println!(
                    "{:<9} {:>5} {:>8} {:>7} {:>10.2} {:>9.2} {:>8.0} {:>7} {:>7} {:>7}",
                    f.profile,
                    f.pods,
                    f.policies,
                    f.cells,
                    f.build.as_secs_f64() * 1e3,
                    f.median.as_secs_f64() * 1e3,
                    f.ns_per_cell,
                    f.allowed,
                    f.denied,
                    f.rejected
                ),
                Err(e) => {
                    eprintln!("bench workload does not build: {e}");
                    std::process::exit(1);
                }
            }
        }
    }
}
