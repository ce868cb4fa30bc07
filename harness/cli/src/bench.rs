//! `harness bench`: the harness's own speed figures, measured (never asserted in tests).
//! The figures and the command that produced them go in docs/BENCHMARKS.md.

use std::time::{Duration, Instant};

use crate::cli::{BenchArgs, BenchTarget};
use crate::exit::Exit;
use crate::term::Term;

pub fn run(args: &BenchArgs, term: &Term) -> Exit {
    if cfg!(debug_assertions) {
        eprintln!(
            "note: this is a debug build; figures are only meaningful from `cargo run --release -p harness-cli -- bench`"
        );
    }
    let reps = if args.quick { 5 } else { 50 };
    if matches!(args.target, BenchTarget::All | BenchTarget::Scenario) {
        println!("{}", term.bold("scenario loading", false));
        for steps in [10usize, 60] {
            let text = synthetic_scenario(steps);
            let lines = text.lines().count();
            let (median, p90) = time(reps, || {
                harness_scenario::load::load_str(&text, "bench.yaml")
                    .map(|_| ())
                    .map_err(|e| e.to_string())
            });
            match (median, p90) {
                (Ok(m), Ok(p)) => println!("  {lines:>5} lines: median {} p90 {}", ms(m), ms(p)),
                (Err(e), _) | (_, Err(e)) => {
                    eprintln!("error: the synthetic scenario did not load: {e}");
                    return Exit::Infrastructure;
                }
            }
        }
    }
    if matches!(args.target, BenchTarget::All | BenchTarget::Oracle) {
        println!(
            "{}",
            term.bold(
                "oracle (40,000-cell matrix: 100 x 100 pods x 4 ports, one core)",
                false
            )
        );
        let reps = if args.quick { 3 } else { 15 };
        for policies in [10usize, 50, 100, 1000] {
            let (objects, spec, contrail) = harness_oracle::bench::workload(100, 10, policies, 7);
            let start = Instant::now();
            let figures = harness_oracle::bench::run_matrix(
                &objects,
                &spec,
                &contrail,
                harness_scenario::Profile::Upstream,
                &harness_oracle::bench::default_ports(),
                reps,
                &|| start.elapsed(),
            );
            match figures {
                Ok(f) => println!(
                    "  {policies:>5} policies: median {} ({:.0} ns/cell), build {}",
                    ms(f.median),
                    f.median.as_nanos() as f64 / f.cells as f64,
                    ms(f.build)
                ),
                Err(e) => {
                    eprintln!("error: oracle benchmark failed: {e}");
                    return Exit::Infrastructure;
                }
            }
        }
    }
    Exit::Ok
}

fn ms(d: Duration) -> String {
    format!("{:.3} ms", d.as_secs_f64() * 1000.0)
}

/// Median and 90th percentile of `reps` runs of `f`.
fn time<E: Clone>(
    reps: usize,
    mut f: impl FnMut() -> Result<(), E>,
) -> (Result<Duration, E>, Result<Duration, E>) {
    let mut samples = Vec::with_capacity(reps);
    for _ in 0..reps {
        let t = Instant::now();
        if let Err(e) = f() {
            return (Err(e.clone()), Err(e));
        }
        samples.push(t.elapsed());
    }
    samples.sort();
    let p = |q: f64| samples[((samples.len() - 1) as f64 * q).round() as usize];
    (Ok(p(0.5)), Ok(p(0.9)))
}

/// A scenario of realistic shape: the 3x3 fixture inline, policies and matrix checks.
pub fn synthetic_scenario(steps: usize) -> String {
    let mut s = String::from("name: bench\nlabels: [bench]\ncluster: {nodes: 3}\nresources:\n");
    for ns in ["x", "y", "z"] {
        s.push_str(&format!(
            "  - {{apiVersion: v1, kind: Namespace, metadata: {{name: {ns}}}}}\n"
        ));
        for pod in ["a", "b", "c"] {
            s.push_str(&format!(
                "  - apiVersion: v1\n    kind: Pod\n    metadata: {{name: {pod}, namespace: {ns}, labels: {{pod: {pod}}}}}\n    spec:\n      containers:\n        - name: agent\n          image: harness-agent\n          ports:\n            - {{containerPort: 80, name: serve-80-tcp}}\n            - {{containerPort: 81, name: serve-81-tcp}}\n"
            ));
        }
    }
    s.push_str("steps:\n");
    for i in 0..steps {
        s.push_str(&format!(
            "  - name: step {i}\n    apply:\n      - apiVersion: networking.k8s.io/v1\n        kind: NetworkPolicy\n        metadata: {{name: p{i}, namespace: x}}\n        spec:\n          podSelector: {{matchLabels: {{pod: a}}}}\n          ingress:\n            - from:\n                - namespaceSelector: {{matchLabels: {{ns: y}}}}\n                  podSelector: {{matchExpressions: [{{key: pod, operator: In, values: [b, c]}}]}}\n              ports: [{{port: 80}}]\n    expect:\n      - reachability:\n          peers: [x/a, x/b, x/c, y/a, y/b, y/c, z/a, z/b, z/c]\n          ports: [TCP/80, TCP/81]\n          within: 5s\n"
        ));
    }
    s
}
