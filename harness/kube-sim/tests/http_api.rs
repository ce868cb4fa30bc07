//! The REST surface at the HTTP level: watch replay, bookmarks and 410; bad input statuses;
//! RBAC with tokens, impersonation and SubjectAccessReview; a fuzz-style no-panic property.

use std::time::Duration;

use axum::body::Body;
use bytes::Bytes;
use futures_util::StreamExt;
use harness_kube_sim::{Config, KubeSim, Unauthenticated};
use http::{Method, Request, StatusCode};
use http_body_util::BodyExt;
use proptest::prelude::*;
use serde_json::{Value, json};
use tower::ServiceExt;

const ADMIN: &str = "admin-token";

fn sim() -> KubeSim {
    KubeSim::new(
        Config::default()
            .with_admin_token(ADMIN)
            .with_token("alice-token", "alice", &["dev"])
            .with_token("bob-token", "bob", &[])
            .with_watch_history(50)
            .with_bookmark_interval(Duration::from_millis(100)),
    )
}

async fn call(
    sim: &KubeSim,
    method: Method,
    uri: &str,
    token: Option<&str>,
    ct: &str,
    body: impl Into<Body>,
) -> (StatusCode, Value) {
    let mut b = Request::builder().method(method).uri(uri);
    if let Some(t) = token {
        b = b.header("authorization", format!("Bearer {t}"));
    }
    if !ct.is_empty() {
        b = b.header("content-type", ct);
    }
    let resp = sim
        .router()
        .oneshot(b.body(body.into()).expect("request"))
        .await
        .expect("infallible");
    let status = resp.status();
    let bytes = resp.into_body().collect().await.expect("body").to_bytes();
    let v = serde_json::from_slice(&bytes)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()));
    (status, v)
}

async fn post(sim: &KubeSim, uri: &str, token: &str, body: Value) -> (StatusCode, Value) {
    call(
        sim,
        Method::POST,
        uri,
        Some(token),
        "application/json",
        body.to_string(),
    )
    .await
}

fn cm(name: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name, "labels": {"app": "x"}}, "data": {"k": "v"}})
}

/// Reads NDJSON watch events until `n` arrived or the stream ends.
async fn watch_events(sim: &KubeSim, uri: &str, n: usize) -> Vec<Value> {
    let req = Request::builder()
        .uri(uri)
        .header("authorization", format!("Bearer {ADMIN}"))
        .body(Body::empty())
        .expect("request");
    let resp = sim.router().oneshot(req).await.expect("infallible");
    assert_eq!(resp.status(), StatusCode::OK);
    let mut stream = resp.into_body().into_data_stream();
    let mut buf = Vec::new();
    let mut out = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while out.len() < n {
        let chunk: Option<Result<Bytes, _>> =
            match tokio::time::timeout_at(deadline, stream.next()).await {
                Ok(c) => c,
                Err(_) => break,
            };
        let Some(Ok(chunk)) = chunk else { break };
        buf.extend_from_slice(&chunk);
        while let Some(pos) = buf.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = buf.drain(..=pos).collect();
            out.push(serde_json::from_slice(&line).expect("each line is one JSON event"));
        }
    }
    out
}

#[tokio::test]
async fn watch_replays_from_resource_version_and_sends_bookmarks() {
    let sim = sim();
    let (_, first) = post(
        &sim,
        "/api/v1/namespaces/default/configmaps",
        ADMIN,
        cm("a"),
    )
    .await;
    let rv_a: u64 = first["metadata"]["resourceVersion"]
        .as_str()
        .expect("rv")
        .parse()
        .expect("numeric");
    post(
        &sim,
        "/api/v1/namespaces/default/configmaps",
        ADMIN,
        cm("b"),
    )
    .await;
    post(
        &sim,
        "/api/v1/namespaces/default/configmaps",
        ADMIN,
        cm("c"),
    )
    .await;
    call(
        &sim,
        Method::DELETE,
        "/api/v1/namespaces/default/configmaps/b",
        Some(ADMIN),
        "",
        Body::empty(),
    )
    .await;

    // From rv_a: b ADDED, c ADDED, b DELETED, then a bookmark.
    let evs = watch_events(&sim, &format!("/api/v1/namespaces/default/configmaps?watch=true&resourceVersion={rv_a}&allowWatchBookmarks=true&timeoutSeconds=5"), 4).await;
    let summary: Vec<(String, String)> = evs
        .iter()
        .map(|e| {
            (
                e["type"].as_str().unwrap_or("").to_string(),
                e["object"]["metadata"]["name"]
                    .as_str()
                    .unwrap_or("")
                    .to_string(),
            )
        })
        .collect();
    assert_eq!(
        &summary[..3],
        &[
            ("ADDED".into(), "b".into()),
            ("ADDED".into(), "c".into()),
            ("DELETED".into(), "b".into())
        ]
    );
    assert_eq!(evs[3]["type"], "BOOKMARK");
    assert_eq!(evs[3]["object"]["kind"], "ConfigMap");
    let rvs: Vec<u64> = evs[..3]
        .iter()
        .map(|e| {
            e["object"]["metadata"]["resourceVersion"]
                .as_str()
                .unwrap_or("0")
                .parse()
                .unwrap_or(0)
        })
        .collect();
    assert!(rvs.windows(2).all(|w| w[0] < w[1]), "monotonic {rvs:?}");

    // No resourceVersion: current state as ADDED.
    let evs = watch_events(
        &sim,
        "/api/v1/namespaces/default/configmaps?watch=1&timeoutSeconds=1",
        10,
    )
    .await;
    let names: Vec<&str> = evs
        .iter()
        .filter_map(|e| e["object"]["metadata"]["name"].as_str())
        .collect();
    assert!(
        names.contains(&"a") && names.contains(&"c") && !names.contains(&"b"),
        "{names:?}"
    );

    // sendInitialEvents: initial ADDED then a bookmark annotated as the end of initial events.
    let evs = watch_events(&sim, "/api/v1/namespaces/default/configmaps?watch=true&sendInitialEvents=true&resourceVersionMatch=NotOlderThan&allowWatchBookmarks=true&timeoutSeconds=2", 3).await;
    assert_eq!(evs[2]["type"], "BOOKMARK");
    assert_eq!(
        evs[2]["object"]["metadata"]["annotations"]["k8s.io/initial-events-end"],
        "true"
    );

    // Field selector transitions: leaving the selector is DELETED for that watcher.
    let sel_uri =
        "/api/v1/namespaces/default/configmaps?watch=true&labelSelector=app%3Dx&timeoutSeconds=2";
    let sim2 = sim.clone();
    let watcher = tokio::spawn(async move { watch_events(&sim2, sel_uri, 3).await });
    tokio::time::sleep(Duration::from_millis(100)).await;
    call(
        &sim,
        Method::PATCH,
        "/api/v1/namespaces/default/configmaps/a",
        Some(ADMIN),
        "application/merge-patch+json",
        json!({"metadata": {"labels": {"app": "y"}}}).to_string(),
    )
    .await;
    let evs = watcher.await.expect("watcher");
    assert!(
        evs.iter()
            .any(|e| e["type"] == "DELETED" && e["object"]["metadata"]["name"] == "a"),
        "{evs:?}"
    );
}

#[tokio::test]
async fn watch_from_compacted_revision_is_gone() {
    let sim = sim();
    for i in 0..80 {
        post(
            &sim,
            "/api/v1/namespaces/default/configmaps",
            ADMIN,
            cm(&format!("c{i}")),
        )
        .await;
    }
    let evs = watch_events(
        &sim,
        "/api/v1/namespaces/default/configmaps?watch=true&resourceVersion=2",
        1,
    )
    .await;
    assert_eq!(evs[0]["type"], "ERROR");
    assert_eq!(evs[0]["object"]["code"], 410);
    assert_eq!(evs[0]["object"]["reason"], "Expired");
    // A list with a continue token from before the compaction is 410 too.
    let (s, page) = call(
        &sim,
        Method::GET,
        "/api/v1/namespaces/default/configmaps?limit=5",
        Some(ADMIN),
        "",
        Body::empty(),
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    let token = page["metadata"]["continue"]
        .as_str()
        .expect("continue")
        .to_string();
    post(
        &sim,
        "/api/v1/namespaces/default/configmaps",
        ADMIN,
        cm("later"),
    )
    .await;
    sim.store().compact();
    let (s, body) = call(
        &sim,
        Method::GET,
        &format!("/api/v1/namespaces/default/configmaps?limit=5&continue={token}"),
        Some(ADMIN),
        "",
        Body::empty(),
    )
    .await;
    assert_eq!(
        (s, body["reason"].as_str()),
        (StatusCode::GONE, Some("Expired"))
    );
}

#[tokio::test]
async fn bad_input_statuses() {
    let sim = sim();
    // Malformed body → 400 with a message.
    let (s, b) = call(
        &sim,
        Method::POST,
        "/api/v1/namespaces/default/configmaps",
        Some(ADMIN),
        "application/json",
        "{not json",
    )
    .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert_eq!(b["kind"], "Status");
    assert!(b["message"].as_str().unwrap_or("").contains("json"), "{b}");
    // Unknown resource → 404.
    let (s, b) = call(
        &sim,
        Method::GET,
        "/apis/example.com/v1/widgets",
        Some(ADMIN),
        "",
        Body::empty(),
    )
    .await;
    assert_eq!(
        (s, b["reason"].as_str()),
        (StatusCode::NOT_FOUND, Some("NotFound"))
    );
    // Over 3 MiB → 413.
    let big = json!({"metadata": {"name": "big"}, "data": {"k": "x".repeat(3 * 1024 * 1024 + 10)}})
        .to_string();
    let (s, b) = call(
        &sim,
        Method::POST,
        "/api/v1/namespaces/default/configmaps",
        Some(ADMIN),
        "application/json",
        big,
    )
    .await;
    assert_eq!(
        (s, b["code"].as_u64()),
        (StatusCode::PAYLOAD_TOO_LARGE, Some(413))
    );
    // Invalid name → 422 Invalid naming the field.
    let (s, b) = post(
        &sim,
        "/api/v1/namespaces/default/configmaps",
        ADMIN,
        json!({"metadata": {"name": "Bad_Name"}}),
    )
    .await;
    assert_eq!(
        (s, b["reason"].as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, Some("Invalid"))
    );
    assert_eq!(b["details"]["causes"][0]["field"], "metadata.name");
    // Invalid label → 422 naming the label.
    let (s, b) = post(
        &sim,
        "/api/v1/namespaces/default/configmaps",
        ADMIN,
        json!({"metadata": {"name": "ok", "labels": {"app": "not ok!"}}}),
    )
    .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(b["details"]["causes"][0]["field"], "metadata.labels.app");
    // A pod without containers → 422 with the field.
    let (s, b) = post(
        &sim,
        "/api/v1/namespaces/default/pods",
        ADMIN,
        json!({"metadata": {"name": "p"}, "spec": {}}),
    )
    .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(b["details"]["causes"][0]["field"], "spec.containers");
    // Namespace that does not exist → 404.
    let (s, b) = post(&sim, "/api/v1/namespaces/nope/configmaps", ADMIN, cm("x")).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    assert!(
        b["message"]
            .as_str()
            .unwrap_or("")
            .contains("namespaces \"nope\" not found")
    );
    // Bad selector → 400.
    let (s, _) = call(
        &sim,
        Method::GET,
        "/api/v1/pods?labelSelector=a%20in%20b",
        Some(ADMIN),
        "",
        Body::empty(),
    )
    .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    let (s, _) = call(
        &sim,
        Method::GET,
        "/api/v1/pods?fieldSelector=spec.bogus%3Dx",
        Some(ADMIN),
        "",
        Body::empty(),
    )
    .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    // Unknown token → 401; unsupported patch type → 415.
    let (s, _) = call(
        &sim,
        Method::GET,
        "/api/v1/pods",
        Some("wrong"),
        "",
        Body::empty(),
    )
    .await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    let (s, _) = call(
        &sim,
        Method::PATCH,
        "/api/v1/namespaces/default/configmaps/x",
        Some(ADMIN),
        "text/plain",
        "{}",
    )
    .await;
    assert_eq!(s, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    // Service with an out-of-range NodePort → 422; a taken ClusterIP → 422.
    let (s, b) = post(&sim, "/api/v1/namespaces/default/services", ADMIN, json!({"metadata": {"name": "np"}, "spec": {"type": "NodePort", "ports": [{"port": 80, "nodePort": 80}]}})).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{b}");
    let (s, b) = post(&sim, "/api/v1/namespaces/default/services", ADMIN, json!({"metadata": {"name": "dup"}, "spec": {"clusterIP": "10.96.0.1", "ports": [{"port": 80}]}})).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{b}");
    // NodePort allocation from the range.
    let (s, b) = post(
        &sim,
        "/api/v1/namespaces/default/services",
        ADMIN,
        json!({"metadata": {"name": "np2"}, "spec": {"type": "NodePort", "ports": [{"port": 80}]}}),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED);
    let np = b["spec"]["ports"][0]["nodePort"]
        .as_u64()
        .expect("nodePort");
    assert!((30000..=32767).contains(&np));
}

#[tokio::test]
async fn rbac_tokens_impersonation_and_access_reviews() {
    let sim = sim();
    // alice may read pods in default via a Role; bob nothing.
    post(&sim, "/apis/rbac.authorization.k8s.io/v1/namespaces/default/roles", ADMIN, json!({"metadata": {"name": "reader"}, "rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list"]}]})).await;
    post(&sim, "/apis/rbac.authorization.k8s.io/v1/namespaces/default/rolebindings", ADMIN, json!({"metadata": {"name": "alice-reader"}, "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "reader"}, "subjects": [{"kind": "User", "name": "alice"}]})).await;
    let (s, _) = call(
        &sim,
        Method::GET,
        "/api/v1/namespaces/default/pods",
        Some("alice-token"),
        "",
        Body::empty(),
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    let (s, b) = call(
        &sim,
        Method::GET,
        "/api/v1/namespaces/kube-system/pods",
        Some("alice-token"),
        "",
        Body::empty(),
    )
    .await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    assert_eq!(
        b["message"],
        "pods is forbidden: User \"alice\" cannot list resource \"pods\" in API group \"\" in the namespace \"kube-system\""
    );
    assert_eq!(b["reason"], "Forbidden");
    let (s, b) = post(
        &sim,
        "/api/v1/namespaces/default/pods",
        "bob-token",
        json!({}),
    )
    .await;
    assert_eq!(s, StatusCode::FORBIDDEN, "{b}");
    // Authenticated users may discover.
    let (s, _) = call(
        &sim,
        Method::GET,
        "/apis",
        Some("bob-token"),
        "",
        Body::empty(),
    )
    .await;
    assert_eq!(s, StatusCode::OK);

    // Impersonation needs the impersonate verb.
    let req = |token: &str, as_user: &str| {
        Request::builder()
            .uri("/api/v1/namespaces/default/pods")
            .header("authorization", format!("Bearer {token}"))
            .header("impersonate-user", as_user)
            .body(Body::empty())
            .expect("request")
    };
    let r = sim
        .router()
        .oneshot(req("bob-token", "alice"))
        .await
        .expect("infallible");
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    let r = sim
        .router()
        .oneshot(req(ADMIN, "alice"))
        .await
        .expect("infallible");
    assert_eq!(r.status(), StatusCode::OK);

    // SubjectAccessReview answers for any user; the reason names the binding.
    let (s, b) = post(&sim, "/apis/authorization.k8s.io/v1/subjectaccessreviews", ADMIN, json!({"apiVersion": "authorization.k8s.io/v1", "kind": "SubjectAccessReview", "spec": {"user": "alice", "resourceAttributes": {"namespace": "default", "verb": "get", "resource": "pods"}}})).await;
    assert_eq!(s, StatusCode::CREATED);
    assert_eq!(b["status"]["allowed"], true);
    assert!(
        b["status"]["reason"]
            .as_str()
            .unwrap_or("")
            .contains("RoleBinding \"alice-reader/default\""),
        "{b}"
    );
    let (_, b) = post(&sim, "/apis/authorization.k8s.io/v1/subjectaccessreviews", ADMIN, json!({"spec": {"user": "alice", "resourceAttributes": {"namespace": "default", "verb": "delete", "resource": "pods"}}})).await;
    assert_eq!(b["status"]["allowed"], false);
    // Self review with bob's token.
    let (_, b) = post(&sim, "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews", "bob-token", json!({"spec": {"resourceAttributes": {"verb": "list", "resource": "pods", "namespace": "default"}}})).await;
    assert_eq!(b["status"]["allowed"], false);
    let (_, b) = post(
        &sim,
        "/apis/authentication.k8s.io/v1/selfsubjectreviews",
        "alice-token",
        json!({}),
    )
    .await;
    assert_eq!(b["status"]["userInfo"]["username"], "alice");

    // ClusterRole aggregation: a new role labelled aggregate-to-view extends "view".
    post(&sim, "/apis/rbac.authorization.k8s.io/v1/clusterroles", ADMIN, json!({"metadata": {"name": "nad-viewer", "labels": {"rbac.authorization.k8s.io/aggregate-to-view": "true"}}, "rules": [{"apiGroups": ["k8s.cni.cncf.io"], "resources": ["network-attachment-definitions"], "verbs": ["get"]}]})).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        let (_, view) = call(
            &sim,
            Method::GET,
            "/apis/rbac.authorization.k8s.io/v1/clusterroles/view",
            Some(ADMIN),
            "",
            Body::empty(),
        )
        .await;
        if view["rules"]
            .as_array()
            .is_some_and(|r| r.iter().any(|x| x["apiGroups"][0] == "k8s.cni.cncf.io"))
        {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "view never aggregated: {view}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // Anonymous mode: requests without a token are system:anonymous.
    let anon = KubeSim::new(Config::default().with_unauthenticated(Unauthenticated::Anonymous));
    let (s, b) = call(&anon, Method::GET, "/api/v1/pods", None, "", Body::empty()).await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    assert!(
        b["message"]
            .as_str()
            .unwrap_or("")
            .contains("system:anonymous")
    );
    let (s, _) = call(&anon, Method::GET, "/version", None, "", Body::empty()).await;
    assert_eq!(s, StatusCode::OK, "public info stays readable");
}

fn arb_path() -> impl Strategy<Value = String> {
    let seg = prop_oneof![
        Just("api".to_string()),
        Just("apis".to_string()),
        Just("v1".to_string()),
        Just("namespaces".to_string()),
        Just("default".to_string()),
        Just("pods".to_string()),
        Just("configmaps".to_string()),
        Just("status".to_string()),
        Just("networking.k8s.io".to_string()),
        Just("watch".to_string()),
        Just("exec".to_string()),
        Just("openapi".to_string()),
        "[a-z%.~0-9-]{0,12}",
    ];
    (
        proptest::collection::vec(seg, 0..7),
        "[a-zA-Z=&%?,!()0-9 ]{0,40}",
    )
        .prop_map(|(segs, q)| format!("/{}?{}", segs.join("/"), q.replace(' ', "%20")))
}

fn arb_body() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        Just(b"{}".to_vec()),
        Just(br#"{"metadata":{"name":"x"}}"#.to_vec()),
        Just(br#"[{"op":"add","path":"/metadata/labels","value":{}}]"#.to_vec()),
        Just(br#"{"apiVersion":"v1","kind":"Pod","metadata":{"name":"p"},"spec":{"containers":[{"name":"c","image":"i"}]}}"#.to_vec()),
        proptest::collection::vec(any::<u8>(), 0..64),
        "[{}\\[\\]\":,a-z0-9 ]{0,80}".prop_map(String::into_bytes),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]

    /// Random paths, methods, content types and bodies never panic and always get a Status
    /// (or a well-formed JSON document) back.
    #[test]
    fn random_requests_never_panic(path in arb_path(), method in 0usize..6, ct in 0usize..6, body in arb_body()) {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
        rt.block_on(async {
            let sim = sim();
            let method = [Method::GET, Method::POST, Method::PUT, Method::PATCH, Method::DELETE, Method::HEAD][method].clone();
            let ct = ["application/json", "application/merge-patch+json", "application/strategic-merge-patch+json", "application/json-patch+json", "application/apply-patch+yaml", "application/vnd.kubernetes.protobuf"][ct];
            let Ok(req) = Request::builder().method(method.clone()).uri(path.as_str()).header("authorization", format!("Bearer {ADMIN}")).header("content-type", ct).body(Body::from(body)) else {
                return;
            };
            let resp = tokio::time::timeout(Duration::from_secs(5), sim.router().oneshot(req)).await.expect("no hang").expect("infallible");
            let status = resp.status();
            let is_watch = path.contains("watch");
            if (is_watch && status.is_success()) || method == Method::HEAD {
                return;
            }
            let bytes = resp.into_body().collect().await.expect("body").to_bytes();
            if status.is_client_error() || status.is_server_error() {
                let v: Value = serde_json::from_slice(&bytes).expect("error bodies are JSON");
                assert_eq!(v["kind"], "Status", "{path} {method}: {v}");
                assert!(status.as_u16() < 500, "server error for {method} {path}: {v}");
            }
        });
    }
}

#[tokio::test]
async fn rbac_binding_decision_table() {
    use harness_kube_sim::{Attributes, UserInfo};
    let sim = sim();
    let rbac = "/apis/rbac.authorization.k8s.io/v1";
    post(
        &sim,
        "/api/v1/namespaces",
        ADMIN,
        json!({"metadata": {"name": "team"}}),
    )
    .await;
    // A ClusterRole bound in one namespace by a RoleBinding grants only there.
    post(&sim, &format!("{rbac}/clusterroles"), ADMIN, json!({"metadata": {"name": "svc-editor"}, "rules": [
        {"apiGroups": [""], "resources": ["services"], "verbs": ["*"]},
        {"apiGroups": [""], "resources": ["configmaps"], "resourceNames": ["settings"], "verbs": ["get", "update"]}]})).await;
    post(&sim, &format!("{rbac}/namespaces/team/rolebindings"), ADMIN, json!({"metadata": {"name": "b1"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "svc-editor"},
        "subjects": [{"kind": "Group", "name": "dev"}, {"kind": "ServiceAccount", "name": "robot"}]})).await;
    post(&sim, &format!("{rbac}/clusterroles"), ADMIN, json!({"metadata": {"name": "metrics"}, "rules": [{"nonResourceURLs": ["/metrics", "/logs/*"], "verbs": ["get"]}]})).await;
    post(&sim, &format!("{rbac}/clusterrolebindings"), ADMIN, json!({"metadata": {"name": "b2"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "metrics"},
        "subjects": [{"kind": "User", "name": "carol"}]})).await;

    let user = |name: &str, groups: &[&str]| UserInfo {
        name: name.into(),
        groups: groups.iter().map(|g| g.to_string()).collect(),
        ..UserInfo::default()
    };
    let res = |u: UserInfo, verb: &str, ns: &str, resource: &str, name: &str| Attributes {
        user: u,
        verb: verb.into(),
        resource_request: true,
        namespace: ns.into(),
        resource: resource.into(),
        name: name.into(),
        ..Attributes::default()
    };
    let path = |u: UserInfo, p: &str| Attributes {
        user: u,
        verb: "get".into(),
        path: p.into(),
        ..Attributes::default()
    };
    let sa = user(
        "system:serviceaccount:team:robot",
        &["system:serviceaccounts"],
    );
    let table: Vec<(Attributes, bool)> = vec![
        (
            res(user("alice", &["dev"]), "delete", "team", "services", "web"),
            true,
        ),
        (
            res(
                user("alice", &["dev"]),
                "delete",
                "default",
                "services",
                "web",
            ),
            false,
        ),
        (
            res(user("alice", &["dev"]), "list", "", "services", ""),
            false,
        ),
        (
            res(
                user("alice", &["dev"]),
                "get",
                "team",
                "configmaps",
                "settings",
            ),
            true,
        ),
        (
            res(
                user("alice", &["dev"]),
                "get",
                "team",
                "configmaps",
                "other",
            ),
            false,
        ),
        (
            res(user("alice", &["dev"]), "list", "team", "configmaps", ""),
            false,
        ),
        (
            res(user("alice", &["ops"]), "get", "team", "services", "web"),
            false,
        ),
        (res(sa.clone(), "create", "team", "services", ""), true),
        (
            res(
                user("system:serviceaccount:other:robot", &[]),
                "create",
                "team",
                "services",
                "",
            ),
            false,
        ),
        (path(user("carol", &[]), "/metrics"), true),
        (path(user("carol", &[]), "/logs/kube-apiserver.log"), true),
        (path(user("carol", &[]), "/healthz/etcd"), false),
        (
            path(user("dave", &["system:authenticated"]), "/version"),
            true,
        ),
        (
            path(user("dave", &["system:authenticated"]), "/apis/apps/v1"),
            true,
        ),
        (
            path(
                user("system:anonymous", &["system:unauthenticated"]),
                "/apis",
            ),
            false,
        ),
        (
            res(
                user("root", &["system:masters"]),
                "delete",
                "",
                "nodes",
                "n1",
            ),
            true,
        ),
    ];
    for (a, want) in table {
        let d = sim.authorize(&a);
        assert_eq!(d.allowed, want, "{a:?} -> {d:?}");
    }
}
