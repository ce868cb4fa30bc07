//! Issue #6 performance targets, on the embedded sim provider (release build):
//! cluster up < 1 s; a 9×9×6 matrix (486 probes, cyclonus's round) < 50 ms after convergence;
//! convergence after a NetworkPolicy change < 200 ms — measured until the vrouters have read
//! the change *and* a probe shows it.
//!
//! `cargo bench -p harness-runner --bench sim_cluster` (env `ROUNDS`, default 10).

use std::path::Path;
use std::time::{Duration, Instant};

use harness_runner::apply::Applier;
use harness_runner::provider::sim::{SimCluster, SimSpec};
use harness_runner::provider::{Observed, Origin, ProbeExecutor, ProbeRequest};
use harness_scenario::{PortRef, PortSpec, Protocol};
use serde_json::{Value, json};

fn fixture() -> Vec<Value> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scenarios/examples/bench.yaml");
    let loaded = harness_scenario::load::load_str(
        "name: bench\nresources:\n  - include: ../fixtures/netpol-3x3.yaml\n",
        &root,
    )
    .expect("fixture loads");
    loaded.resources().into_iter().map(|m| m.object).collect()
}

fn percentile(v: &mut [Duration], p: f64) -> Duration {
    v.sort();
    let i = ((v.len() as f64 - 1.0) * p).round() as usize;
    v[i]
}

fn row(what: &str, v: &mut [Duration], target: &str) {
    let median = percentile(v, 0.5);
    let max = *v.iter().max().expect("samples");
    println!(
        "| {what} | {:.1} ms | {:.1} ms | {target} |",
        median.as_secs_f64() * 1e3,
        max.as_secs_f64() * 1e3
    );
}

/// Pod addresses of x/a … z/c, in that order.
async fn pods(cluster: &SimCluster) -> Vec<(String, std::net::Ipv4Addr)> {
    let api: kube::Api<k8s_openapi::api::core::v1::Pod> = kube::Api::all(cluster.kube());
    let list = api.list(&Default::default()).await.expect("list pods");
    let mut out: Vec<_> = list
        .items
        .iter()
        .filter_map(|p| {
            let ns = p.metadata.namespace.clone()?;
            if !["x", "y", "z"].contains(&ns.as_str()) {
                return None;
            }
            let ip = p.status.as_ref()?.pod_ip.as_ref()?.parse().ok()?;
            Some((format!("{ns}/{}", p.metadata.name.clone()?), ip))
        })
        .collect();
    out.sort();
    out
}

fn matrix(pods: &[(String, std::net::Ipv4Addr)]) -> Vec<ProbeRequest> {
    let ports: Vec<PortSpec> = ["TCP/80", "TCP/81", "UDP/80", "UDP/81", "SCTP/80", "SCTP/81"]
        .iter()
        .map(|p| p.parse().expect("port"))
        .collect();
    let mut requests = Vec::new();
    for (from, _) in pods {
        for (_, to) in pods {
            for port in &ports {
                let Some(PortRef::Number(n)) = port.port else {
                    unreachable!("numbered ports")
                };
                requests.push(ProbeRequest {
                    from: Origin::Pod(from.clone()),
                    to: *to,
                    protocol: port.protocol,
                    port: n,
                    trace: false,
                });
            }
        }
    }
    requests
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let rounds: usize = std::env::var("ROUNDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(10);
    let mut spec = SimSpec::default();
    spec.cluster.nodes = 3;

    let mut up = Vec::new();
    for _ in 0..rounds {
        let t = Instant::now();
        let cluster = SimCluster::up(&spec).await.expect("sim cluster up");
        up.push(t.elapsed());
        cluster.shutdown().await;
    }

    let cluster = SimCluster::up(&spec).await.expect("sim cluster up");
    let mut applier = Applier::new(cluster.kube());
    let t = Instant::now();
    for o in fixture() {
        applier.apply(&o).await.expect("apply");
    }
    cluster
        .converge(Duration::from_secs(20))
        .await
        .expect("converged");
    let mut fixture_converged = vec![t.elapsed()];
    let pods = pods(&cluster).await;
    assert_eq!(pods.len(), 9, "9 pods");
    let requests = matrix(&pods);
    let dp = cluster.dataplane();
    let mut round = Vec::new();
    for _ in 0..rounds {
        let t = Instant::now();
        let out = dp.probe_batch(&requests);
        round.push(t.elapsed());
        assert_eq!(out.len(), 486);
    }

    // Policy change → converged and a probe shows it: deny-all ingress in x toggled on and off.
    let (ya, xa) = (&pods[3], &pods[0]);
    let probe = ProbeRequest {
        from: Origin::Pod(ya.0.clone()),
        to: xa.1,
        protocol: Protocol::Tcp,
        port: 80,
        trace: false,
    };
    let mut np = Vec::new();
    for i in 0..rounds {
        let deny = json!({"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
            "metadata": {"name": format!("deny-all-{i}"), "namespace": "x"},
            "spec": {"podSelector": {}, "policyTypes": ["Ingress"]}});
        let t = Instant::now();
        applier.apply(&deny).await.expect("apply");
        cluster
            .converge(Duration::from_secs(20))
            .await
            .expect("converged");
        let seen = dp.probe_batch(std::slice::from_ref(&probe));
        assert!(
            !matches!(seen[0].observed(), Observed::Allow { .. }),
            "deny-all applied and converged, yet y/a reaches x/a"
        );
        np.push(t.elapsed());
        applier
            .delete(
                Some("networking.k8s.io/v1"),
                "NetworkPolicy",
                Some("x"),
                &format!("deny-all-{i}"),
            )
            .await
            .expect("delete");
        cluster
            .converge(Duration::from_secs(20))
            .await
            .expect("converged");
    }
    cluster.shutdown().await;

    println!("| measure ({rounds} rounds) | median | max | target |");
    println!("|---|--:|--:|--:|");
    row("sim cluster up (3 nodes)", &mut up, "< 1 s");
    row(
        "3×3 fixture applied and converged",
        &mut fixture_converged,
        "—",
    );
    row("486 probes (9×9 pods × 6 ports)", &mut round, "< 50 ms");
    row(
        "NetworkPolicy applied → converged → probe shows it",
        &mut np,
        "< 200 ms",
    );
}
