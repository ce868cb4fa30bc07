//! The runner on real scenario files: every step's actions through the APIs, convergence,
//! checks compared with the oracle, and the report model filled in.

use std::path::Path;

use harness_report::{Outcome, Status};
use harness_runner::run::{RunOptions, run_scenario};

fn load(rel: &str) -> harness_scenario::LoadedScenario {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .join(rel);
    harness_scenario::load::load_file(&path).unwrap_or_else(|d| panic!("{rel}: {}", d.message))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deny_all_ingress_passes_with_evidence_on_request() {
    let dir = tempfile::tempdir().expect("tmp");
    let loaded = load("scenarios/examples/netpol-deny-all-ingress.yaml");
    let opts = RunOptions {
        seed: 42,
        report_dir: Some(dir.path().to_path_buf()),
        evidence: harness_runner::evidence::EvidenceMode::All,
        ..RunOptions::default()
    };
    let r = run_scenario(&loaded, "netpol-deny-all-ingress.yaml", &opts, None).await;
    let problems: Vec<String> = r
        .checks()
        .flat_map(|c| {
            c.notable_cells()
                .map(move |x| format!("{}: {}", c.id, x.one_line(c.kind)))
        })
        .collect();
    assert_eq!(r.setup_error, None);
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    assert_eq!(r.status(), Status::Passed);
    let cell = r
        .checks()
        .flat_map(|c| &c.cells)
        .find(|c| c.outcome == Outcome::Passed)
        .expect("a passed cell");
    assert!(!cell.evidence.is_empty(), "evidence all writes every cell");
    for f in &cell.evidence {
        assert!(dir.path().join(f).is_file(), "{f} written");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pod_that_never_runs_is_a_setup_error_naming_it() {
    let text = r#"name: unschedulable
resources:
  - apiVersion: v1
    kind: Pod
    metadata: {name: stuck, namespace: default}
    spec:
      nodeSelector: {disk: ssd}
      containers: [{name: c, image: harness-agent}]
steps:
  - name: never
    expect:
      - reachability: {peers: [default/stuck], ports: [TCP/80]}
"#;
    let loaded = harness_scenario::load::load_str(text, "unschedulable.yaml").expect("loads");
    // 800 ms: the budget runs out waiting for the pod. 1 ms: it runs out while kube-manager
    // is still catching up (what a loaded CI machine sees); the error must name the stuck
    // pod either way, since that is what the user can act on.
    for ms in [800, 1] {
        let opts = RunOptions {
            converge_timeout: std::time::Duration::from_millis(ms),
            ..RunOptions::default()
        };
        let r = run_scenario(&loaded, "unschedulable.yaml", &opts, None).await;
        let err = r.setup_error.clone().expect("a setup error");
        assert!(err.contains("default/stuck"), "{ms} ms: {err}");
        assert!(err.contains("Pending"), "{ms} ms: {err}");
        assert_eq!(r.status(), Status::Error);
        assert!(r.steps.is_empty());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_component_restarts_and_the_matrix_still_matches_the_oracle() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scenarios/examples/restarts.yaml");
    let text = r#"name: restarts
resources:
  - include: ../fixtures/netpol-3x3.yaml
steps:
  - name: restart everything while a policy arrives
    apply:
      - apiVersion: networking.k8s.io/v1
        kind: NetworkPolicy
        metadata: {name: deny-all, namespace: x}
        spec: {podSelector: {}, policyTypes: [Ingress]}
    fault:
      - {restart: vrouter, node: node-2}
      - {restart: contrail-api}
      - {restart: kube-manager}
      - {restart: kube-apiserver}
    expect:
      - reachability:
          peers: [x/a, x/b, y/a, y/b]
          ports: [TCP/80]
  - name: and a change after the restarts
    label: {target: ns/y, set: {team: red}}
    apply:
      - apiVersion: networking.k8s.io/v1
        kind: NetworkPolicy
        metadata: {name: allow-red, namespace: x}
        spec:
          podSelector: {}
          ingress: [{from: [{namespaceSelector: {matchLabels: {team: red}}}]}]
    expect:
      - reachability:
          peers: [x/a, x/b, y/a, z/a]
          ports: [TCP/80]
"#;
    let loaded = harness_scenario::load::load_str(text, &dir).expect("loads");
    let r = run_scenario(&loaded, "restarts.yaml", &RunOptions::default(), None).await;
    assert_eq!(r.setup_error, None);
    let problems: Vec<String> = r
        .checks()
        .flat_map(|c| c.notable_cells().map(move |x| x.one_line(c.kind)))
        .collect();
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    assert_eq!(r.steps.len(), 2);
    // y/a reaches x/a only after the relabel and the second policy.
    let cell = |step: usize| {
        r.steps[step].checks[0]
            .cells
            .iter()
            .find(|c| c.from == "y/a" && c.to == "x/a")
            .map(|c| c.observed.clone())
    };
    assert_eq!(cell(0).as_deref(), Some("drop"));
    assert_eq!(cell(1).as_deref(), Some("allow"));
}
