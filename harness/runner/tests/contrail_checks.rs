//! Contrail object assertions against the mock's VNC API over HTTP: existence and absence,
//! `has` subsets with refs, `firewallPolicyOrder` globs, eventually semantics, and an API that
//! cannot answer.

use std::time::Duration;

use harness_contrail_mock::{ConfigDb, RunningServer, ServerConfig, serve};
use harness_contrail_vnc::{Auth, Ref, VncClient, VncObject};
use harness_report::model::{CellResult, Outcome};
use harness_runner::checks::contrail;
use harness_scenario::model::ContrailAssertion;
use serde_json::{Value, json};

fn fq(parts: &[&str]) -> Vec<String> {
    parts.iter().map(|s| (*s).to_owned()).collect()
}

/// An assertion written the way a scenario writes it.
fn assertion(v: Value) -> ContrailAssertion {
    serde_json::from_value(v).expect("assertion")
}

struct Env {
    server: RunningServer,
    db: ConfigDb,
    vnc: VncClient,
}

impl Env {
    /// A VNC API with project `k8s-blue`, its pod network referring to a network policy and
    /// the ip-fabric network, and APS `k8s` with four firewall policies in sequence.
    async fn new() -> Env {
        let db = ConfigDb::new();
        let server = serve(
            "127.0.0.1:0".parse().expect("addr"),
            db.clone(),
            ServerConfig::default(),
        )
        .await
        .expect("serve");
        let vnc = VncClient::new(&server.url(), Auth::None).expect("client");
        db.create(&VncObject::new(
            "project",
            fq(&["default-domain", "k8s-blue"]),
        ))
        .expect("project");
        let np = db
            .create(&VncObject::new(
                "network-policy",
                fq(&["default-domain", "k8s-blue", "k8s-blue-pod-service-np"]),
            ))
            .expect("policy");
        let fabric = db
            .get_by_fq_name(
                "virtual-network",
                &fq(&["default-domain", "default-project", "ip-fabric"]),
            )
            .expect("ip-fabric exists by default");
        db.create(
            &VncObject::new(
                "virtual-network",
                fq(&["default-domain", "k8s-blue", "k8s-blue-pod-network"]),
            )
            .with_ref(
                "network_policy_refs",
                Ref::new(np.fq_name.clone(), np.uuid.clone())
                    .with_attr(json!({"sequence": {"major": 0, "minor": 0}})),
            )
            .with_ref(
                "virtual_network_refs",
                Ref::new(fabric.fq_name.clone(), fabric.uuid.clone()),
            ),
        )
        .expect("network");
        let mut aps = VncObject::new(
            "application-policy-set",
            fq(&["default-policy-management", "k8s"]),
        )
        .with_parent_type("policy-management");
        // Created out of order on purpose: the check sorts by attr.sequence.
        for (name, seq) in [
            ("k8s-denyall", "3.0"),
            ("k8s-Ingress", "1.0"),
            ("k8s-allowall", "10.0"),
            ("k8s-blue-web", "2.0"),
        ] {
            let p = db
                .create(
                    &VncObject::new("firewall-policy", fq(&["default-policy-management", name]))
                        .with_parent_type("policy-management"),
                )
                .expect("firewall policy");
            aps.add_ref(
                "firewall_policy_refs",
                Ref::new(p.fq_name, p.uuid).with_attr(json!({"sequence": seq})),
            );
        }
        db.create(&aps).expect("aps");
        Env { server, db, vnc }
    }

    async fn run(&self, assertions: Vec<Value>) -> Vec<CellResult> {
        let assertions: Vec<ContrailAssertion> = assertions.into_iter().map(assertion).collect();
        contrail::run(&self.vnc, &assertions, Duration::from_millis(300)).await
    }

    async fn one(&self, a: Value) -> CellResult {
        let mut cells = self.run(vec![a]).await;
        assert_eq!(cells.len(), 1);
        cells.remove(0)
    }

    async fn stop(self) {
        self.server.shutdown().await.expect("shutdown");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exists_and_absent_pass_and_fail() {
    let env = Env::new().await;
    let cells = env
        .run(vec![
            json!({"type": "virtual-network", "fqName": ["default-domain", "k8s-blue", "k8s-blue-pod-network"]}),
            json!({"type": "firewall-policy", "fqName": ["default-policy-management", "k8s-x-gone"], "exists": false}),
            json!({"type": "virtual-network", "fqName": ["default-domain", "k8s-blue", "k8s-blue-service-network"]}),
            json!({"type": "project", "fqName": ["default-domain", "k8s-blue"], "exists": false}),
        ])
        .await;
    assert_eq!(cells.len(), 4);
    let present = &cells[0];
    assert_eq!(present.outcome, Outcome::Passed, "{present:?}");
    assert_eq!(present.from, "virtual-network");
    assert_eq!(present.to, "default-domain:k8s-blue:k8s-blue-pod-network");
    assert_eq!(present.port, "exists");
    assert_eq!(
        (present.expected.as_str(), present.observed.as_str()),
        ("exists", "exists")
    );
    assert!(present.converged_after_ms.is_some());
    assert_eq!(present.attempts, 1);

    assert_eq!(cells[1].outcome, Outcome::Passed, "{:?}", cells[1]);
    assert_eq!(cells[1].expected, "absent");
    assert_eq!(cells[1].observed, "absent");

    let missing = &cells[2];
    assert_eq!(missing.outcome, Outcome::Failed, "{missing:?}");
    assert_eq!(missing.observed, "absent");
    let detail = missing.observed_detail.as_deref().unwrap_or("");
    assert!(detail.contains("fqname-to-id answered 404"), "{detail}");
    assert!(
        missing.attempts > 1,
        "polled until the deadline: {missing:?}"
    );
    assert_eq!(missing.converged_after_ms, None);

    let unwanted = &cells[3];
    assert_eq!(unwanted.outcome, Outcome::Failed);
    assert_eq!(unwanted.observed, "exists");
    assert!(
        unwanted
            .observed_detail
            .as_deref()
            .unwrap_or("")
            .contains("exists with uuid"),
        "{unwanted:?}"
    );
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn has_matches_refs_and_shows_the_actual_list() {
    let env = Env::new().await;
    let ok = env
        .one(json!({"type": "virtual-network", "fqName": ["default-domain", "k8s-blue", "k8s-blue-pod-network"],
            "has": {
                "network_policy_refs": [{"to": ["default-domain", "k8s-blue", "k8s-blue-pod-service-np"], "attr": {"sequence": {"major": 0}}}],
                "virtual_network_refs": [{"to": "default-domain:default-project:ip-fabric"}],
                "id_perms": {"enable": true}
            }}))
        .await;
    assert_eq!(ok.outcome, Outcome::Passed, "{ok:?}");
    assert_eq!(
        ok.port,
        "network_policy_refs, virtual_network_refs, id_perms"
    );

    // The ip-fabric link is missing: the cell shows the refs the network does have.
    let bad = env
        .one(json!({"type": "virtual-network", "fqName": ["default-domain", "k8s-blue", "k8s-blue-pod-network"],
            "has": {"network_policy_refs": [{"to": ["default-domain", "k8s-blue", "k8s-blue-ip-fabric-np"]}]}}))
        .await;
    assert_eq!(bad.outcome, Outcome::Failed, "{bad:?}");
    assert!(
        bad.observed.starts_with(
            "network_policy_refs: [{\"to\":\"default-domain:k8s-blue:k8s-blue-pod-service-np\""
        ),
        "{}",
        bad.observed
    );
    let detail = bad.observed_detail.as_deref().unwrap_or("");
    assert!(
        detail.contains("no item of network_policy_refs matches")
            && detail.contains("k8s-blue-ip-fabric-np")
            && detail.contains("k8s-blue-pod-service-np"),
        "{detail}"
    );
    assert!(
        bad.expected.contains("k8s-blue-ip-fabric-np"),
        "{}",
        bad.expected
    );

    // A ref attribute that differs fails too; a scalar shows the actual value.
    let attr = env
        .one(json!({"type": "virtual-network", "fqName": ["default-domain", "k8s-blue", "k8s-blue-pod-network"],
            "has": {"network_policy_refs": [{"to": ["default-domain", "k8s-blue", "k8s-blue-pod-service-np"], "attr": {"sequence": {"major": 7}}}]}}))
        .await;
    assert_eq!(attr.outcome, Outcome::Failed);
    let scalar = env
        .one(json!({"type": "virtual-network", "fqName": ["default-domain", "k8s-blue", "k8s-blue-pod-network"],
            "has": {"id_perms": {"enable": false}}}))
        .await;
    assert_eq!(scalar.outcome, Outcome::Failed);
    assert_eq!(scalar.observed, "id_perms.enable: true");
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn firewall_policy_order_with_wildcards() {
    let env = Env::new().await;
    let aps = |order: Value| json!({"type": "application-policy-set", "fqName": ["default-policy-management", "k8s"], "firewallPolicyOrder": order});
    let cells = env
        .run(vec![
            aps(json!(["k8s-Ingress", "*", "k8s-denyall", "k8s-allowall"])),
            aps(json!([
                "k8s-Ingress",
                "k8s-blue-web",
                "k8s-denyall",
                "k8s-allowall"
            ])),
            aps(json!(["*", "k8s-allowall"])),
            aps(json!(["k8s-Ingress", "k8s-denyall", "*", "k8s-allowall"])),
            aps(json!(["k8s-Ingress", "*", "k8s-denyall"])),
        ])
        .await;
    for c in &cells[..3] {
        assert_eq!(c.outcome, Outcome::Passed, "{c:?}");
        assert_eq!(
            c.observed,
            "policy order [k8s-Ingress, k8s-blue-web, k8s-denyall, k8s-allowall]"
        );
        assert_eq!(c.port, "firewallPolicyOrder");
    }
    for c in &cells[3..] {
        assert_eq!(c.outcome, Outcome::Failed, "{c:?}");
        let detail = c.observed_detail.as_deref().unwrap_or("");
        assert!(
            detail.contains("default-policy-management:k8s-Ingress (sequence 1.0)")
                && detail.contains("default-policy-management:k8s-allowall (sequence 10.0)"),
            "{detail}"
        );
    }
    // Only an APS has a policy order.
    let wrong = env
        .one(json!({"type": "virtual-network", "fqName": ["default-domain", "k8s-blue", "k8s-blue-pod-network"], "firewallPolicyOrder": ["*"]}))
        .await;
    assert!(
        matches!(wrong.outcome, Outcome::Inconclusive { ref reason } if reason.contains("application-policy-set"))
    );
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn eventually_waits_for_an_object_created_later() {
    let env = Env::new().await;
    let db = env.db.clone();
    let late = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(300)).await;
        db.create(
            &VncObject::new(
                "firewall-policy",
                fq(&["default-policy-management", "k8s-blue-late"]),
            )
            .with_parent_type("policy-management"),
        )
        .expect("late policy");
    });
    let cell = env
        .one(json!({"type": "firewall-policy", "fqName": ["default-policy-management", "k8s-blue-late"], "within": "3s"}))
        .await;
    late.await.expect("writer");
    assert_eq!(cell.outcome, Outcome::Passed, "{cell:?}");
    let after = cell.converged_after_ms.expect("converged time");
    assert!((300..3000).contains(&after), "converged after {after}ms");
    assert!(cell.attempts > 1, "{cell:?}");
    assert!(
        cell.explanation.contains("within 3s"),
        "{}",
        cell.explanation
    );
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_api_is_inconclusive() {
    // A port that was free a moment ago: nothing listens there.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port();
    let vnc = VncClient::new(&format!("http://127.0.0.1:{port}"), Auth::None).expect("client");
    let cells = contrail::run(
        &vnc,
        &[
            assertion(json!({"type": "project", "fqName": ["default-domain", "k8s-blue"]})),
            assertion(
                json!({"type": "project", "fqName": ["default-domain", "k8s-x"], "exists": false}),
            ),
        ],
        Duration::from_millis(200),
    )
    .await;
    for c in &cells {
        match &c.outcome {
            Outcome::Inconclusive { reason } => {
                assert!(reason.contains("transport error"), "{reason}")
            }
            other => panic!("an API that cannot answer is never pass or fail: {other:?}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn assertions_that_cannot_be_evaluated_say_why() {
    let env = Env::new().await;
    let cells = env
        .run(vec![
            json!({"type": "virtual-netwrk", "fqName": ["default-domain", "k8s-blue", "x"]}),
            json!({"type": "virtual-network", "fqName": ["default-domain", "k8s-blue", "k8s-blue-pod-network"], "has": {"network_policy_ref": []}}),
        ])
        .await;
    let reasons: Vec<String> = cells
        .iter()
        .map(|c| match &c.outcome {
            Outcome::Inconclusive { reason } => reason.clone(),
            other => panic!("{other:?}"),
        })
        .collect();
    assert!(
        reasons[0].contains("did you mean `virtual-network`"),
        "{}",
        reasons[0]
    );
    assert!(
        reasons[1].contains("did you mean `network_policy_refs`"),
        "{}",
        reasons[1]
    );
    env.stop().await;
}
