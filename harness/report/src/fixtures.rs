//! A synthetic, fixed result set for tests and golden files of every renderer.
//!
//! It covers what the renderers must handle: two scenarios, a 3×3 reachability matrix over two
//! ports with failures, a flaky cell, an inconclusive cell and ignored loopback cells, a skipped
//! check with a reason, an RBAC check, a Contrail assertion check, and a scenario whose setup
//! failed. Timestamps and durations are fixed, so renderings are byte-for-byte stable.

use crate::model::{
    CellResult, CheckKind, CheckResult, MatrixShape, Outcome, RunResult, ScenarioResult, StepResult,
};

/// Id of the fixture's reachability matrix check.
pub const MATRIX_CHECK_ID: &str = "deny-all/reachability-1";

const SCENARIO_FILE: &str = "scenarios/netpol/deny-all-ingress.yaml";
const LOOPBACK: &str = "loopback traffic is not subject to NetworkPolicy";
const SCTP: &str = "the model dataplane does not implement SCTP; run with --dataplane netns";

/// The synthetic run: failures, so its exit code is 1.
pub fn run_result() -> RunResult {
    RunResult {
        run_id: "20250115T103000Z-42".into(),
        started_at: "2025-01-15T10:30:00Z".into(),
        duration_ms: 74_350,
        harness_version: "0.1.0".into(),
        command: vec![
            "harness".into(),
            "run".into(),
            "scenarios/".into(),
            "--seed".into(),
            "42".into(),
            "--report-dir".into(),
            "reports/20250115T103000Z-42".into(),
        ],
        provider: "sim".into(),
        dataplane: "model".into(),
        profile: "r5.0".into(),
        seed: 42,
        scenarios: vec![deny_all_scenario(), isolated_scenario()],
        infrastructure_errors: vec![],
    }
}

fn deny_all_scenario() -> ScenarioResult {
    ScenarioResult {
        name: "netpol-deny-all-ingress".into(),
        file: SCENARIO_FILE.into(),
        labels: vec!["netpol".into(), "conformance".into()],
        description: Some(
            "A deny-all ingress policy isolates the pods of namespace x; other namespaces stay \
             reachable."
                .into(),
        ),
        duration_ms: 13_100,
        setup_error: None,
        steps: vec![
            StepResult {
                name: "baseline".into(),
                duration_ms: 2_100,
                checks: vec![fabric_check(), sctp_check()],
            },
            StepResult {
                name: "deny all ingress in x".into(),
                duration_ms: 9_800,
                checks: vec![matrix_check()],
            },
            StepResult {
                name: "rbac and contrail objects".into(),
                duration_ms: 1_200,
                checks: vec![rbac_check(), contrail_check()],
            },
        ],
    }
}

fn isolated_scenario() -> ScenarioResult {
    ScenarioResult {
        name: "isolated-namespace-service-from-outside".into(),
        file: "scenarios/isolation/service-from-outside.yaml".into(),
        labels: vec!["isolation".into(), "services".into(), "ingress".into()],
        description: Some(
            "Services in an isolated namespace are reachable from outside the cluster; other \
             namespaces stay out."
                .into(),
        ),
        duration_ms: 61_000,
        setup_error: Some(
            "applying resources: pod blue/web never became Ready within 60s: no vrouter accepted \
             its VMI (vrouter node-2 is not registered with the control node)"
                .into(),
        ),
        steps: vec![],
    }
}

/// A cell with the common defaults; callers set what differs.
fn cell(from: &str, to: &str, port: &str, expected: &str, observed: &str) -> CellResult {
    CellResult {
        from: from.into(),
        to: to.into(),
        port: port.into(),
        expected: expected.into(),
        observed: observed.into(),
        outcome: Outcome::Passed,
        explanation: String::new(),
        observed_detail: None,
        converged_after_ms: None,
        attempts: 1,
        loopback: false,
        evidence: vec![],
        rerun: None,
        deviations: vec![],
    }
}

fn slug(text: &str) -> String {
    text.chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect()
}

fn rerun(check_id: &str, from: &str, to: &str, port: &str) -> String {
    format!("harness run {SCENARIO_FILE} --seed 42 --only {check_id} --cell '{from} {to} {port}'")
}

fn evidence(check_id: &str, from: &str, to: &str, port: &str) -> Vec<String> {
    let dir = format!(
        "evidence/netpol-deny-all-ingress/{}/{}_{}_{}",
        slug(check_id),
        slug(from),
        slug(to),
        slug(port)
    );
    vec![
        format!("{dir}/oracle.txt"),
        format!("{dir}/trace.txt"),
        format!("{dir}/capture.pcap"),
    ]
}

fn fabric_check() -> CheckResult {
    let mut c = cell("x/a", "host:cloud-db", "TCP/5432", "allow", "allow");
    c.explanation = "no NetworkPolicy selects x/a for egress; ip-fabric-forwarding routes the pod \
                     network onto the fabric"
        .into();
    c.observed_detail =
        Some("forwarded by vrouter node-1 onto the fabric, no encapsulation".into());
    c.converged_after_ms = Some(310);
    CheckResult {
        id: "baseline/reachability-1".into(),
        kind: CheckKind::Reachability,
        title: "x/a reaches the fabric host cloud-db without encapsulation".into(),
        duration_ms: 420,
        cells: vec![c],
        message: None,
        matrix: Some(MatrixShape {
            rows: vec!["x/a".into()],
            columns: vec!["host:cloud-db".into()],
            ports: vec!["TCP/5432".into()],
        }),
    }
}

fn sctp_check() -> CheckResult {
    let skipped = |from: &str, to: &str| {
        let mut c = cell(from, to, "SCTP/9000", "allow", "");
        c.outcome = Outcome::Skipped {
            reason: SCTP.into(),
        };
        c.attempts = 0;
        c.explanation = "no NetworkPolicy selects either pod".into();
        c
    };
    CheckResult {
        id: "baseline/reachability-2".into(),
        kind: CheckKind::Reachability,
        title: "SCTP between namespaces x and y".into(),
        duration_ms: 0,
        cells: vec![skipped("x/a", "y/b"), skipped("y/b", "x/a")],
        message: Some(SCTP.into()),
        matrix: Some(MatrixShape {
            rows: vec!["x/a".into(), "y/b".into()],
            columns: vec!["x/a".into(), "y/b".into()],
            ports: vec!["SCTP/9000".into()],
        }),
    }
}

fn matrix_check() -> CheckResult {
    let rows = ["x/a", "y/a", "z/a"];
    let columns = ["x/a", "x/b", "y/b"];
    let ports = ["TCP/80", "UDP/53"];
    let mut cells = Vec::new();
    for port in ports {
        for from in rows {
            for to in columns {
                cells.push(matrix_cell(from, to, port));
            }
        }
    }
    CheckResult {
        id: MATRIX_CHECK_ID.into(),
        kind: CheckKind::Reachability,
        title: "deny-all ingress isolates namespace x".into(),
        duration_ms: 8_750,
        cells,
        message: None,
        matrix: Some(MatrixShape {
            rows: rows.iter().map(|s| s.to_string()).collect(),
            columns: columns.iter().map(|s| s.to_string()).collect(),
            ports: ports.iter().map(|s| s.to_string()).collect(),
        }),
    }
}

fn matrix_cell(from: &str, to: &str, port: &str) -> CellResult {
    let into_x = to.starts_with("x/");
    let expected = if into_x && from != to {
        "deny"
    } else {
        "allow"
    };
    let mut c = cell(from, to, port, expected, expected);
    c.converged_after_ms = Some(if into_x { 1_840 } else { 120 });
    c.explanation = if from == to {
        "a pod always reaches itself".into()
    } else if into_x {
        format!("NetworkPolicy x/deny-all selects {to} for ingress and allows no source")
    } else {
        format!("no NetworkPolicy selects {to} for ingress or {from} for egress")
    };
    if expected == "deny" {
        c.observed = "drop".into();
        c.observed_detail = Some(
            "dropped at vrouter node-1 by firewall rule k8s-denyall/x-ingress-deny-all-denyall"
                .into(),
        );
    }

    match (from, to, port) {
        ("x/a", "x/a", _) => {
            c.loopback = true;
            c.outcome = Outcome::Ignored {
                reason: LOOPBACK.into(),
            };
            c.converged_after_ms = None;
        }
        ("x/a", "x/b", _) => {
            c.outcome = Outcome::Failed;
            c.observed = "allow".into();
            c.observed_detail = Some(
                "allowed at vrouter node-1 by firewall rule k8s-Ingress/x-allow-intra-namespace \
                 (r5.0 opens traffic within a namespace)"
                    .into(),
            );
            c.converged_after_ms = None;
            c.attempts = 5;
        }
        ("y/a", "y/b", "TCP/80") => {
            c.outcome = Outcome::Flaky;
            c.attempts = 2;
            c.observed_detail = Some(
                "first attempt timed out after 1s (flow not yet programmed on vrouter node-2); \
                 second attempt connected"
                    .into(),
            );
            c.converged_after_ms = Some(1_200);
        }
        ("z/a", "y/b", "UDP/53") => {
            c.outcome = Outcome::Inconclusive {
                reason: "probe agent in z/a did not answer within 5s".into(),
            };
            c.observed = String::new();
            c.observed_detail = None;
            c.converged_after_ms = None;
            c.attempts = 3;
        }
        _ => {}
    }

    if !matches!(c.outcome, Outcome::Passed | Outcome::Ignored { .. }) {
        c.evidence = evidence(MATRIX_CHECK_ID, from, to, port);
        c.rerun = Some(rerun(MATRIX_CHECK_ID, from, to, port));
    }
    c
}

fn rbac_check() -> CheckResult {
    const ID: &str = "rbac-contrail/rbac-1";
    let decision = |request: &str, expected: &str, observed: &str, why: &str| {
        let mut c = cell("alice", request, "", expected, observed);
        c.explanation = why.into();
        c.converged_after_ms = Some(40);
        c
    };
    let mut leak = decision(
        "list pods -n x",
        "deny",
        "allow",
        "no Role or ClusterRole bound to alice or group dev grants list on pods in x",
    );
    leak.outcome = Outcome::Failed;
    leak.observed_detail = Some(
        "Kubernetes denied it, but Contrail api-access-list default-domain:k8s-x grants read to \
         role dev"
            .into(),
    );
    leak.rerun = Some(format!(
        "harness run {SCENARIO_FILE} --seed 42 --only {ID} --cell 'alice list pods -n x'"
    ));
    leak.evidence = vec![
        "evidence/netpol-deny-all-ingress/rbac-contrail-rbac-1/alice_list-pods-n-x/decision.json"
            .into(),
    ];
    CheckResult {
        id: ID.into(),
        kind: CheckKind::Rbac,
        title: "alice (group dev) has the same rights in Kubernetes and Contrail".into(),
        duration_ms: 180,
        cells: vec![
            decision(
                "get pods -n blue",
                "allow",
                "allow",
                "RoleBinding blue/dev-view grants get on pods to group dev",
            ),
            decision(
                "create networkpolicies -n blue",
                "allow",
                "allow",
                "RoleBinding blue/dev-edit grants create on networkpolicies to group dev",
            ),
            decision(
                "delete namespaces",
                "deny",
                "deny",
                "no ClusterRoleBinding grants delete on namespaces to alice or group dev",
            ),
            leak,
        ],
        message: None,
        matrix: None,
    }
}

fn contrail_check() -> CheckResult {
    let assertion = |ty: &str, fq_name: &str, field: &str, value: &str, why: &str| {
        let mut c = cell(ty, fq_name, field, value, value);
        c.explanation = why.into();
        c.converged_after_ms = Some(900);
        c
    };
    CheckResult {
        id: "rbac-contrail/contrail-1".into(),
        kind: CheckKind::Contrail,
        title: "isolated namespace blue has its pod network and the cluster APS".into(),
        duration_ms: 950,
        cells: vec![
            assertion(
                "virtual-network",
                "default-domain:k8s-blue:k8s-blue-pod-network",
                "virtual_network_refs",
                "default-domain:default-project:ip-fabric",
                "isolated namespaces get their own pod network, forwarded on the ip-fabric",
            ),
            assertion(
                "application-policy-set",
                "default-policy-management:k8s",
                "firewall_policy_refs",
                "k8s-Ingress, *, k8s-denyall, k8s-allowall",
                "the blueprint orders ingress rules first and the allow-all policy last",
            ),
        ],
        message: None,
        matrix: None,
    }
}
