//! RBAC checks against kube-sim (SubjectAccessReviews) and the mock's VNC API in `aaa_mode`
//! rbac, whose api-access-lists the kube-manager emulation writes from the cluster's RBAC
//! objects: Kubernetes decisions pass and fail, `contrail: consistent` passes with the correct
//! mapping and catches the `rbac-over-grant` and `rbac-under-grant` faults, and API errors are
//! inconclusive.

use std::time::Duration;

use harness_contrail_mock::kube_manager::{KubeManager, KubeManagerConfig, RunningKubeManager};
use harness_contrail_mock::{AuthConfig, ConfigDb, RunningServer, ServerConfig, serve};
use harness_contrail_vnc::{Auth, VncClient};
use harness_kube_sim::{Config, KubeSim};
use harness_report::model::{CellResult, Outcome};
use harness_runner::checks::rbac::{self, ContrailIdentity, RbacContext};
use harness_scenario::MockFault;
use harness_scenario::model::RbacCheck;
use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, Role, RoleBinding};
use kube::api::{Api, PostParams};
use serde_json::{Value, json};

struct Env {
    _sim: KubeSim,
    kube: kube::Client,
    db: ConfigDb,
    server: RunningServer,
    km: RunningKubeManager,
    admin: VncClient,
}

async fn create<K>(api: Api<K>, body: Value) -> u64
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + serde::Serialize + std::fmt::Debug,
{
    let obj: K = serde_json::from_value(body).expect("manifest");
    let made = api
        .create(&PostParams::default(), &obj)
        .await
        .expect("create");
    made.meta()
        .resource_version
        .as_deref()
        .and_then(|rv| rv.parse().ok())
        .unwrap_or(0)
}

impl Env {
    /// kube-sim with namespaces blue and red and three subjects:
    /// - user alice reads pods in blue (Role + RoleBinding);
    /// - group dev edits NetworkPolicies everywhere (ClusterRole + ClusterRoleBinding);
    /// - service account blue/robot gets and updates pods in blue.
    ///
    /// The VNC API enforces api-access-lists; the kube-manager emulation (with `faults`)
    /// writes them.
    async fn new(faults: &[MockFault]) -> Env {
        let sim = KubeSim::new(Config::default());
        let kube = sim.client();
        let db = ConfigDb::new();
        let server = serve(
            "127.0.0.1:0".parse().expect("addr"),
            db.clone(),
            ServerConfig {
                auth: AuthConfig::rbac(),
            },
        )
        .await
        .expect("serve");
        let admin = VncClient::new(&server.url(), Auth::None)
            .and_then(|c| c.with_header("X-User", "harness"))
            .and_then(|c| c.with_header("X-Role", "admin"))
            .expect("admin client");
        let mut cfg = KubeManagerConfig::default();
        for f in faults {
            cfg = cfg.with_fault(*f);
        }
        let km = KubeManager::new(kube.clone(), db.clone(), cfg).spawn();

        for ns in ["blue", "red"] {
            create(
                Api::<Namespace>::all(kube.clone()),
                json!({"metadata": {"name": ns}}),
            )
            .await;
        }
        create(
            Api::<Role>::namespaced(kube.clone(), "blue"),
            json!({"metadata": {"name": "pod-reader"},
                   "rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list", "watch"]}]}),
        )
        .await;
        create(
            Api::<RoleBinding>::namespaced(kube.clone(), "blue"),
            json!({"metadata": {"name": "alice-reads"},
                   "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "pod-reader"},
                   "subjects": [{"kind": "User", "name": "alice", "apiGroup": "rbac.authorization.k8s.io"}]}),
        )
        .await;
        create(
            Api::<Role>::namespaced(kube.clone(), "blue"),
            json!({"metadata": {"name": "pod-updater"},
                   "rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "update", "patch"]}]}),
        )
        .await;
        create(
            Api::<RoleBinding>::namespaced(kube.clone(), "blue"),
            json!({"metadata": {"name": "robot-updates"},
                   "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "pod-updater"},
                   "subjects": [{"kind": "ServiceAccount", "name": "robot", "namespace": "blue"}]}),
        )
        .await;
        create(
            Api::<ClusterRole>::all(kube.clone()),
            json!({"metadata": {"name": "np-editor"},
                   "rules": [{"apiGroups": ["networking.k8s.io"], "resources": ["networkpolicies"],
                              "verbs": ["get", "list", "create", "update", "delete"]}]}),
        )
        .await;
        let last = create(
            Api::<ClusterRoleBinding>::all(kube.clone()),
            json!({"metadata": {"name": "dev-edits-np"},
                   "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "np-editor"},
                   "subjects": [{"kind": "Group", "name": "dev", "apiGroup": "rbac.authorization.k8s.io"}]}),
        )
        .await;
        km.handle()
            .wait_converged_after(last, Duration::from_secs(10))
            .await
            .expect("kube-manager converges");
        Env {
            _sim: sim,
            kube,
            db,
            server,
            km,
            admin,
        }
    }

    async fn run(&self, check: Value) -> Vec<CellResult> {
        let check: RbacCheck = serde_json::from_value(check).expect("rbac check");
        // Wrong answers are asked again for 300ms: enough for these in-process servers, and
        // failing cells stay fast.
        let ctx = RbacContext::new("k8s").with_within(Duration::from_millis(300));
        rbac::run(&self.kube, &self.admin, &check, &ctx).await
    }

    async fn stop(self) {
        self.km.shutdown().await.expect("kube-manager stops");
        self.server.shutdown().await.expect("server stops");
    }
}

fn cell<'a>(cells: &'a [CellResult], request: &str, port: &str) -> &'a CellResult {
    cells
        .iter()
        .find(|c| c.to == request && c.port == port)
        .unwrap_or_else(|| panic!("no {port} cell for `{request}` in {cells:#?}"))
}

fn detail(c: &CellResult) -> &str {
    c.observed_detail.as_deref().unwrap_or("")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consistent_mapping_passes_for_users_groups_and_service_accounts() {
    let env = Env::new(&[]).await;
    let objects_before = env.db.len();

    let alice = env
        .run(json!({"as": {"user": "alice"},
            "allowed": ["get pods -n blue", "list pods -n blue"],
            "denied": ["create pods -n blue", "delete pods -n blue", "get pods -n red", "delete namespaces blue", "get configmaps -n blue"],
            "contrail": "consistent"}))
        .await;
    assert_eq!(
        alice.len(),
        14,
        "a kubernetes and a contrail cell per request"
    );
    for c in &alice {
        if c.to == "get configmaps -n blue" && c.port == "contrail" {
            // No Contrail object backs configmaps: consistency does not apply.
            assert!(
                matches!(&c.outcome, Outcome::Skipped { reason } if reason.contains("backs no Contrail object with `configmaps`")),
                "{c:?}"
            );
            continue;
        }
        assert_eq!(c.outcome, Outcome::Passed, "{c:#?}");
        assert_eq!(c.from, "user alice");
    }
    let get = cell(&alice, "get pods -n blue", "kubernetes");
    assert_eq!(
        (get.expected.as_str(), get.observed.as_str()),
        ("allow", "allow")
    );
    assert!(
        get.explanation
            .contains("oracle: allowed: RoleBinding blue/alice-reads → Role blue/pod-reader"),
        "{}",
        get.explanation
    );
    assert!(
        detail(get).starts_with("SubjectAccessReview allowed"),
        "{}",
        detail(get)
    );
    let get_c = cell(&alice, "get pods -n blue", "contrail");
    assert_eq!(
        (get_c.expected.as_str(), get_c.observed.as_str()),
        ("allow", "allow")
    );
    assert!(
        detail(get_c).contains(
            "R virtual-machine-interface: allowed (GET /virtual-machine-interfaces → 200)"
        ),
        "{}",
        detail(get_c)
    );
    assert!(
        get_c
            .explanation
            .contains("project default-domain:k8s-blue")
            && get_c.explanation.contains("user:alice"),
        "{}",
        get_c.explanation
    );
    let create_c = cell(&alice, "create pods -n blue", "contrail");
    assert_eq!(create_c.observed, "deny");
    assert!(detail(create_c).contains("403"), "{}", detail(create_c));

    let bob = env
        .run(json!({"as": {"user": "bob", "groups": ["dev"]},
            "allowed": ["create networkpolicies -n blue", "delete networkpolicies -n red"],
            "denied": ["create pods -n blue"],
            "contrail": "consistent"}))
        .await;
    for c in &bob {
        assert_eq!(c.outcome, Outcome::Passed, "{c:#?}");
    }
    // The C probe got past RBAC and was refused for its body: nothing was created.
    let np = cell(&bob, "create networkpolicies -n blue", "contrail");
    assert!(
        detail(np).contains("C firewall-policy: allowed (POST /firewall-policys → 400 after RBAC let it through, nothing changed"),
        "{}",
        detail(np)
    );

    let robot = env
        .run(json!({"as": {"serviceAccount": "blue/robot"},
            "allowed": ["update pods -n blue", "patch pods -n blue"],
            "denied": ["update pods -n red", "delete pods -n blue"],
            "contrail": "consistent"}))
        .await;
    for c in &robot {
        assert_eq!(c.outcome, Outcome::Passed, "{c:#?}");
        assert_eq!(c.from, "serviceaccount blue/robot");
    }
    assert_eq!(env.db.len(), objects_before, "the probes changed nothing");
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubernetes_decisions_that_differ_from_the_scenario_fail() {
    let env = Env::new(&[]).await;
    let cells = env
        .run(json!({"as": {"user": "alice"},
            "allowed": ["delete pods -n blue"],
            "denied": ["get pods -n blue"]}))
        .await;
    assert_eq!(cells.len(), 2, "contrail: ignore checks Kubernetes only");
    let delete = cell(&cells, "delete pods -n blue", "kubernetes");
    assert_eq!(delete.outcome, Outcome::Failed);
    assert_eq!(
        (delete.expected.as_str(), delete.observed.as_str()),
        ("allow", "deny")
    );
    assert!(
        delete
            .explanation
            .contains("oracle: denied: no RBAC rule allows user alice")
            && delete
                .explanation
                .contains("(the oracle disagrees with the scenario)"),
        "{}",
        delete.explanation
    );
    let get = cell(&cells, "get pods -n blue", "kubernetes");
    assert_eq!(get.outcome, Outcome::Failed);
    assert_eq!(
        (get.expected.as_str(), get.observed.as_str()),
        ("deny", "allow")
    );
    // The deadline counts from the start of the check: the first request used it up.
    assert!(
        delete.attempts > 1,
        "asked again until the deadline: {delete:?}"
    );
    assert_eq!(delete.converged_after_ms, None);
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_binding_made_just_before_the_check_converges() {
    let env = Env::new(&[]).await;
    // kube-manager writes carol's api-access-list entry a moment after the binding exists.
    create(
        Api::<RoleBinding>::namespaced(env.kube.clone(), "red"),
        json!({"metadata": {"name": "carol-edits-np"},
               "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "np-editor"},
               "subjects": [{"kind": "User", "name": "carol", "apiGroup": "rbac.authorization.k8s.io"}]}),
    )
    .await;
    let check: RbacCheck = serde_json::from_value(json!({"as": {"user": "carol"},
        "allowed": ["create networkpolicies -n red"], "denied": ["create networkpolicies -n blue"],
        "contrail": "consistent"}))
    .expect("check");
    let cells = rbac::run(&env.kube, &env.admin, &check, &RbacContext::new("k8s")).await;
    for c in &cells {
        assert_eq!(c.outcome, Outcome::Passed, "{c:#?}");
        assert!(c.converged_after_ms.is_some());
    }
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_grant_fault_is_caught() {
    let env = Env::new(&[MockFault::RbacOverGrant]).await;
    let cells = env
        .run(json!({"as": {"user": "alice"},
            "allowed": ["get pods -n blue"],
            "denied": ["create pods -n blue", "delete pods -n blue"],
            "contrail": "consistent"}))
        .await;
    assert_eq!(
        cell(&cells, "get pods -n blue", "contrail").outcome,
        Outcome::Passed
    );
    for request in ["create pods -n blue", "delete pods -n blue"] {
        assert_eq!(cell(&cells, request, "kubernetes").outcome, Outcome::Passed);
        let c = cell(&cells, request, "contrail");
        assert_eq!(c.outcome, Outcome::Failed, "{c:#?}");
        assert_eq!(
            (c.expected.as_str(), c.observed.as_str()),
            ("deny", "allow")
        );
    }
    let create = cell(&cells, "create pods -n blue", "contrail");
    let d = detail(create);
    assert!(
        d.contains("Contrail allowed C on virtual-machine in project default-domain:k8s-blue where Kubernetes denies `create pods -n blue`"),
        "{d}"
    );
    assert!(
        d.contains("granted by api-access-list default-domain:k8s-blue:k8s-rbac: virtual-machine user:alice:CRUD"),
        "{d}"
    );
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn under_grant_fault_is_caught() {
    let env = Env::new(&[MockFault::RbacUnderGrant]).await;
    let cells = env
        .run(json!({"as": {"user": "bob", "groups": ["dev"]},
            "allowed": ["create networkpolicies -n blue"],
            "denied": ["create pods -n blue"],
            "contrail": "consistent"}))
        .await;
    assert_eq!(
        cell(&cells, "create networkpolicies -n blue", "kubernetes").outcome,
        Outcome::Passed
    );
    let c = cell(&cells, "create networkpolicies -n blue", "contrail");
    assert_eq!(c.outcome, Outcome::Failed, "{c:#?}");
    assert_eq!(
        (c.expected.as_str(), c.observed.as_str()),
        ("allow", "deny")
    );
    let d = detail(c);
    assert!(
        d.contains("Contrail denied C on firewall-policy")
            && d.contains("no api-access-list rule grants roles [user:bob, group:dev, group:system:authenticated] C on firewall-policy"),
        "{d}"
    );
    // What both deny stays consistent.
    assert_eq!(
        cell(&cells, "create pods -n blue", "contrail").outcome,
        Outcome::Passed
    );
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_errors_are_inconclusive() {
    let env = Env::new(&[]).await;
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port();
    let dead_url = format!("http://127.0.0.1:{port}");
    let check: RbacCheck = serde_json::from_value(json!({"as": {"user": "alice"},
        "allowed": ["get pods -n blue"], "denied": ["create pods -n blue"], "contrail": "consistent"}))
    .expect("check");
    let ctx = RbacContext::new("k8s").with_within(Duration::from_millis(200));

    // The VNC API is down: the Kubernetes cells still decide, the Contrail cells cannot.
    let dead_vnc = VncClient::new(&dead_url, Auth::None).expect("client");
    let cells = rbac::run(&env.kube, &dead_vnc, &check, &ctx).await;
    for c in &cells {
        match c.port.as_str() {
            "kubernetes" => assert_eq!(c.outcome, Outcome::Passed, "{c:#?}"),
            _ => assert!(
                matches!(&c.outcome, Outcome::Inconclusive { reason } if reason.contains("transport error")),
                "{c:#?}"
            ),
        }
    }

    // No way to act as the subject in Contrail: the Contrail cells say so.
    let tokens = ctx
        .clone()
        .with_identity(ContrailIdentity::Tokens(Default::default()));
    let cells = rbac::run(&env.kube, &env.admin, &check, &tokens).await;
    for c in cells.iter().filter(|c| c.port == "contrail") {
        assert!(
            matches!(&c.outcome, Outcome::Inconclusive { reason } if reason.contains("no keystone token for subject `user alice`")),
            "{c:#?}"
        );
    }

    // The Kubernetes API is down: nothing to compare with.
    let config = kube::Config::new(dead_url.parse().expect("url"));
    let dead_kube = kube::Client::try_from(config).expect("kube client");
    let cells = rbac::run(&dead_kube, &env.admin, &check, &ctx).await;
    assert_eq!(cells.len(), 4);
    for c in &cells {
        let Outcome::Inconclusive { reason } = &c.outcome else {
            panic!("{c:#?}")
        };
        match c.port.as_str() {
            "kubernetes" => assert!(reason.contains("SubjectAccessReview"), "{reason}"),
            _ => assert!(
                reason.contains("no Kubernetes decision to compare with"),
                "{reason}"
            ),
        }
    }
    env.stop().await;
}
