//! A synthetic workload and a matrix timer, for `harness bench` and `cargo bench`.
//!
//! The crate has no clock: [`run_matrix`] takes one from the caller.

use std::time::Duration;

use harness_scenario::{ClusterSpec, ContrailSettings, PortSpec, Profile, Protocol};
use serde::Serialize;
use serde_json::{Value, json};

use crate::eval::Oracle;
use crate::explain::Verdict;
use crate::model::{Cluster, Endpoint, ModelError};

/// A small deterministic generator (SplitMix64), so workloads depend only on the seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: u64) -> u64 {
        if n == 0 { 0 } else { self.next() % n }
    }
}

const APPS: u64 = 10;
const TIERS: [&str; 3] = ["web", "db", "cache"];

/// A synthetic cluster: `namespaces` namespaces (`ns-0`…, label `team=t0|t1|t2`), `pods` pods
/// spread over them (labels `pod`, `app=app-0..9`, `tier`; servers on 80 and 81 over TCP and
/// UDP named `serve-<port>-<proto>`), and `policies` NetworkPolicies with a seeded mix of pod,
/// namespace, combined and ipBlock peers, numbered, named and ranged ports, and egress rules.
pub fn workload(
    pods: usize,
    namespaces: usize,
    policies: usize,
    seed: u64,
) -> (Vec<Value>, ClusterSpec, ContrailSettings) {
    let namespaces = namespaces.max(1);
    let mut rng = Rng(seed);
    let mut out = Vec::with_capacity(namespaces + pods + policies);
    for i in 0..namespaces {
        out.push(json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": format!("ns-{i}"), "labels": {"team": format!("t{}", i % 3)}}}));
    }
    let ports: Vec<Value> = [(80, "TCP"), (81, "TCP"), (80, "UDP"), (81, "UDP")]
        .iter()
        .map(|(p, proto)| json!({"containerPort": p, "protocol": proto, "name": format!("serve-{p}-{}", proto.to_ascii_lowercase())}))
        .collect();
    for i in 0..pods {
        out.push(json!({"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": format!("p-{i}"), "namespace": format!("ns-{}", i % namespaces),
                         "labels": {"pod": format!("p-{i}"), "app": format!("app-{}", rng.below(APPS)), "tier": TIERS[rng.below(3) as usize]}},
            "spec": {"containers": [{"name": "agent", "ports": ports}]}}));
    }
    let peer = |rng: &mut Rng| -> Value {
        match rng.below(4) {
            0 => {
                json!({"podSelector": {"matchLabels": {"app": format!("app-{}", rng.below(APPS))}}})
            }
            1 => {
                json!({"namespaceSelector": {"matchLabels": {"team": format!("t{}", rng.below(3))}}})
            }
            2 => {
                json!({"namespaceSelector": {"matchLabels": {"team": format!("t{}", rng.below(3))}},
                        "podSelector": {"matchExpressions": [{"key": "tier", "operator": "In", "values": [TIERS[rng.below(3) as usize]]}]}})
            }
            _ => {
                json!({"ipBlock": {"cidr": "10.64.0.0/16", "except": [format!("10.64.0.{}/30", 4 * rng.below(16))]}})
            }
        }
    };
    let port = |rng: &mut Rng| -> Value {
        match rng.below(4) {
            0 => json!({"protocol": "TCP", "port": 80}),
            1 => json!({"protocol": "UDP", "port": 81}),
            2 => json!({"port": "serve-80-tcp"}),
            _ => json!({"protocol": "TCP", "port": 80, "endPort": 81}),
        }
    };
    for i in 0..policies {
        let selector = match rng.below(10) {
            0 => json!({}),
            1 | 2 => json!({"matchLabels": {"tier": TIERS[rng.below(3) as usize]}}),
            _ => json!({"matchLabels": {"app": format!("app-{}", rng.below(APPS))}}),
        };
        let rule = |rng: &mut Rng, key: &str| -> Value {
            let peers: Vec<Value> = (0..1 + rng.below(3)).map(|_| peer(rng)).collect();
            let ports: Vec<Value> = (0..rng.below(3)).map(|_| port(rng)).collect();
            json!({key: peers, "ports": ports})
        };
        let ingress: Vec<Value> = (0..1 + rng.below(2))
            .map(|_| rule(&mut rng, "from"))
            .collect();
        let mut spec =
            json!({"podSelector": selector, "ingress": ingress, "policyTypes": ["Ingress"]});
        if rng.below(10) < 3 {
            spec["egress"] = json!([rule(&mut rng, "to")]);
            spec["policyTypes"] = json!(["Ingress", "Egress"]);
        }
        out.push(json!({"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
            "metadata": {"name": format!("np-{i}"), "namespace": format!("ns-{}", rng.below(namespaces as u64))}, "spec": spec}));
    }
    (
        out,
        ClusterSpec {
            nodes: 4,
            ..ClusterSpec::default()
        },
        ContrailSettings::default(),
    )
}

/// The ports of the bench matrix: TCP/80, TCP/81, UDP/80, UDP/81.
pub fn default_ports() -> Vec<PortSpec> {
    vec![
        PortSpec::tcp(80),
        PortSpec::tcp(81),
        PortSpec::new(Protocol::Udp, 80),
        PortSpec::new(Protocol::Udp, 81),
    ]
}

/// What a matrix run measured (medians over the repetitions).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Figures {
    /// Profile evaluated (`upstream`, `r5.0`).
    pub profile: String,
    /// Pods in the matrix (rows = columns).
    pub pods: usize,
    /// NetworkPolicies in the cluster.
    pub policies: usize,
    /// Cells evaluated per repetition: pods × pods × ports.
    pub cells: usize,
    /// Repetitions measured.
    pub reps: usize,
    /// Median time to build the cluster model and compile the policies.
    pub build: Duration,
    /// Median time to evaluate every cell (for r5.0 it includes building, on first need, the
    /// firewalls that attribute deviations).
    pub median: Duration,
    /// `median` per cell, in nanoseconds.
    pub ns_per_cell: f64,
    /// Cells expected to be allowed.
    pub allowed: usize,
    /// Cells expected to be denied.
    pub denied: usize,
    /// Cells expected to be rejected.
    pub rejected: usize,
}

/// Builds the cluster and the oracle, then evaluates every pod to every pod on every port,
/// `reps` times (at least once), and reports the medians.
///
/// `now` is a monotonic clock (e.g. `&|| start.elapsed()` of an `Instant`): the crate has none
/// of its own.
///
/// # Errors
///
/// [`ModelError`] if the objects do not make a cluster.
pub fn run_matrix(
    objects: &[Value],
    spec: &ClusterSpec,
    contrail: &ContrailSettings,
    profile: Profile,
    ports: &[PortSpec],
    reps: usize,
    now: &dyn Fn() -> Duration,
) -> Result<Figures, ModelError> {
    let mut builds = Vec::new();
    let mut evals = Vec::new();
    let mut counts = (0, 0, 0);
    let mut shape = (0, 0);
    for _ in 0..reps.max(1) {
        let t0 = now();
        let cluster = Cluster::from_objects(objects, spec, contrail)?;
        let oracle = Oracle::new(&cluster, profile);
        let pods: Vec<Endpoint> = (0..cluster.pods().len())
            .map(|i| cluster.pod_endpoint(i))
            .collect();
        let t1 = now();
        let (mut allowed, mut denied, mut rejected) = (0, 0, 0);
        for from in &pods {
            for to in &pods {
                for port in ports {
                    match oracle.evaluate(from, to, port).verdict {
                        Verdict::Allow => allowed += 1,
                        Verdict::Deny => denied += 1,
                        Verdict::Reject => rejected += 1,
                    }
                }
            }
        }
        let t2 = now();
        builds.push(t1.saturating_sub(t0));
        evals.push(t2.saturating_sub(t1));
        counts = (allowed, denied, rejected);
        shape = (pods.len(), cluster.network_policies().len());
    }
    let median = |v: &mut Vec<Duration>| {
        v.sort();
        v.get(v.len() / 2).copied().unwrap_or_default()
    };
    let cells = shape.0 * shape.0 * ports.len();
    let eval = median(&mut evals);
    Ok(Figures {
        profile: profile.to_string(),
        pods: shape.0,
        policies: shape.1,
        cells,
        reps: reps.max(1),
        build: median(&mut builds),
        median: eval,
        ns_per_cell: if cells == 0 {
            0.0
        } else {
            eval.as_nanos() as f64 / cells as f64
        },
        allowed: counts.0,
        denied: counts.1,
        rejected: counts.2,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn workload_is_deterministic_and_builds() {
        let (a, spec, contrail) = workload(30, 3, 20, 7);
        let (b, _, _) = workload(30, 3, 20, 7);
        assert_eq!(a, b);
        let f = run_matrix(
            &a,
            &spec,
            &contrail,
            Profile::Upstream,
            &default_ports(),
            2,
            &|| Duration::ZERO,
        )
        .unwrap();
        assert_eq!(f.reps, 2);
        assert_eq!(f.cells, 30 * 30 * 4);
        assert_eq!(f.allowed + f.denied + f.rejected, f.cells);
        assert!(f.denied > 0 && f.allowed > 0);
        let r = run_matrix(
            &a,
            &spec,
            &contrail,
            Profile::R50,
            &default_ports(),
            0,
            &|| Duration::ZERO,
        )
        .unwrap();
        assert_eq!(r.reps, 1, "at least one repetition");
        assert_eq!(r.cells, f.cells);
    }
}
