//! kube-rs typed and dynamic clients against kube-sim, in process.

use std::time::Duration;

use futures_util::{StreamExt, TryStreamExt};
use harness_kube_sim::{Config, KubeSim};
use k8s_openapi::api::core::v1::{ConfigMap, Endpoints, Namespace, Node, Pod, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::ResourceExt;
use kube::api::{Api, DeleteParams, DynamicObject, ListParams, Patch, PatchParams, PostParams};
use kube::core::GroupVersionKind;
use kube::discovery::{Discovery, Scope};
use kube::runtime::wait::{await_condition, conditions};
use kube::runtime::{WatchStreamExt, watcher};
use serde_json::json;

const WAIT: Duration = Duration::from_secs(10);

fn pod(name: &str, labels: serde_json::Value) -> Pod {
    serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "labels": labels},
        "spec": {"containers": [{"name": "c", "image": "registry.k8s.io/pause:3.10", "ports": [{"containerPort": 8080, "name": "http"}]}]}
    }))
    .expect("valid pod")
}

#[tokio::test]
async fn typed_crud_list_selectors_and_conflicts() {
    let sim = KubeSim::new(Config::default());
    let client = sim.client();
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let created = pods
        .create(
            &PostParams::default(),
            &pod("a", json!({"app": "web", "tier": "fe"})),
        )
        .await
        .expect("create");
    assert!(created.metadata.uid.is_some());
    assert!(created.metadata.creation_timestamp.is_some());
    assert_eq!(created.metadata.generation, Some(1));
    let rv1: u64 = created
        .resource_version()
        .expect("rv")
        .parse()
        .expect("numeric rv");
    pods.create(&PostParams::default(), &pod("b", json!({"app": "db"})))
        .await
        .expect("create b");
    pods.create(
        &PostParams::default(),
        &pod("c", json!({"app": "web", "canary": "yes"})),
    )
    .await
    .expect("create c");

    // 409 AlreadyExists.
    let err = pods
        .create(&PostParams::default(), &pod("a", json!({})))
        .await
        .expect_err("duplicate");
    match err {
        kube::Error::Api(s) => {
            assert_eq!(s.code, 409);
            assert_eq!(s.reason, "AlreadyExists");
        }
        other => panic!("unexpected {other:?}"),
    }

    // Label selectors, all operator kinds.
    for (sel, want) in [
        ("app=web", vec!["a", "c"]),
        ("app!=web", vec!["b"]),
        ("app in (web,db),!canary", vec!["a", "b"]),
        ("canary", vec!["c"]),
        ("tier notin (fe)", vec!["b", "c"]),
    ] {
        let got: Vec<String> = pods
            .list(&ListParams::default().labels(sel))
            .await
            .expect("list")
            .items
            .iter()
            .map(|p| p.name_any())
            .collect();
        assert_eq!(got, want, "selector {sel}");
    }
    let by_name = pods
        .list(&ListParams::default().fields("metadata.name=b"))
        .await
        .expect("list");
    assert_eq!(by_name.items.len(), 1);
    let list = pods.list(&ListParams::default()).await.expect("list");
    assert!(
        !list
            .metadata
            .resource_version
            .clone()
            .unwrap_or_default()
            .is_empty()
    );

    // limit / continue.
    let page1 = pods
        .list(&ListParams::default().limit(2))
        .await
        .expect("page 1");
    assert_eq!(page1.items.len(), 2);
    let token = page1.metadata.continue_.clone().expect("continue token");
    let page2 = pods
        .list(&ListParams::default().limit(2).continue_token(&token))
        .await
        .expect("page 2");
    assert_eq!(page2.items.len(), 1);
    assert!(page2.metadata.continue_.is_none());

    // Stale resourceVersion → 409 Conflict (a ConfigMap: no controller writes to it).
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    let cm: ConfigMap =
        serde_json::from_value(json!({"metadata": {"name": "conf"}, "data": {"k": "v"}}))
            .expect("cm");
    let created_cm = cms
        .create(&PostParams::default(), &cm)
        .await
        .expect("create cm");
    let mut stale = created_cm.clone();
    stale
        .metadata
        .labels
        .get_or_insert_default()
        .insert("x".into(), "1".into());
    let replaced = cms
        .replace("conf", &PostParams::default(), &stale)
        .await
        .expect("first replace");
    let err = cms
        .replace("conf", &PostParams::default(), &stale)
        .await
        .expect_err("stale");
    match err {
        kube::Error::Api(s) => assert_eq!((s.code, s.reason.as_str()), (409, "Conflict")),
        other => panic!("unexpected {other:?}"),
    }
    let after: u64 = replaced
        .resource_version()
        .expect("rv")
        .parse()
        .expect("rv");
    assert!(after > rv1);

    // 404 NotFound.
    match pods.get("nope").await.expect_err("missing") {
        kube::Error::Api(s) => assert_eq!((s.code, s.reason.as_str()), (404, "NotFound")),
        other => panic!("unexpected {other:?}"),
    }

    // Pod defaults kubectl relies on.
    let a = pods.get("a").await.expect("get");
    let spec = a.spec.expect("spec");
    assert_eq!(spec.restart_policy.as_deref(), Some("Always"));
    assert_eq!(spec.service_account_name.as_deref(), Some("default"));
    assert_eq!(
        spec.containers[0].image_pull_policy.as_deref(),
        Some("IfNotPresent")
    );
    assert_eq!(a.status.expect("status").phase.as_deref(), Some("Pending"));
}

#[tokio::test]
async fn discovery_legacy_and_aggregated() {
    let sim = KubeSim::new(Config::default());
    let client = sim.client();
    let legacy = Discovery::new(client.clone())
        .run()
        .await
        .expect("discovery");
    let aggregated = Discovery::new(client.clone())
        .run_aggregated()
        .await
        .expect("aggregated discovery");
    for d in [&legacy, &aggregated] {
        let (ar, caps) = d
            .resolve_gvk(&GroupVersionKind::gvk(
                "networking.k8s.io",
                "v1",
                "NetworkPolicy",
            ))
            .expect("netpol");
        assert_eq!(ar.plural, "networkpolicies");
        assert_eq!(caps.scope, Scope::Namespaced);
        let (_, caps) = d
            .resolve_gvk(&GroupVersionKind::gvk("", "v1", "Node"))
            .expect("node");
        assert_eq!(caps.scope, Scope::Cluster);
        assert!(
            d.resolve_gvk(&GroupVersionKind::gvk(
                "rbac.authorization.k8s.io",
                "v1",
                "ClusterRoleBinding"
            ))
            .is_some()
        );
    }
    let v = client.apiserver_version().await.expect("version");
    assert_eq!(v.major, "1");
}

const MANIFEST: &str = r#"
apiVersion: v1
kind: Namespace
metadata:
  name: shop
---
apiVersion: v1
kind: Pod
metadata:
  name: web
  namespace: shop
  labels: {app: web}
spec:
  containers:
  - name: web
    image: nginx:1.27
    ports: [{containerPort: 80, name: http}]
---
apiVersion: v1
kind: Service
metadata:
  name: web
  namespace: shop
spec:
  selector: {app: web}
  ports: [{port: 80, targetPort: http}]
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata:
  name: deny-all
  namespace: shop
spec:
  podSelector: {}
---
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: network-attachment-definitions.k8s.cni.cncf.io
spec:
  group: k8s.cni.cncf.io
  scope: Namespaced
  names:
    plural: network-attachment-definitions
    singular: network-attachment-definition
    kind: NetworkAttachmentDefinition
    shortNames: [net-attach-def]
  versions:
  - name: v1
    served: true
    storage: true
    schema:
      openAPIV3Schema:
        type: object
        x-kubernetes-preserve-unknown-fields: true
"#;

async fn apply_all(client: &kube::Client, yaml: &str) {
    let docs: Vec<DynamicObject> = serde_saphyr::from_str_multiple(yaml).expect("yaml");
    for obj in docs {
        // Discovery per document: a CRD applied earlier in the stream adds new kinds.
        let discovery = Discovery::new(client.clone())
            .run_aggregated()
            .await
            .expect("discovery");
        let gvk = GroupVersionKind::try_from(obj.types.as_ref().expect("types")).expect("gvk");
        let (ar, caps) = discovery
            .resolve_gvk(&gvk)
            .unwrap_or_else(|| panic!("{gvk:?} is served"));
        let api: Api<DynamicObject> = match caps.scope {
            Scope::Namespaced => Api::namespaced_with(
                client.clone(),
                obj.namespace().as_deref().unwrap_or("default"),
                &ar,
            ),
            Scope::Cluster => Api::all_with(client.clone(), &ar),
        };
        api.patch(
            &obj.name_any(),
            &PatchParams::apply("e2e-harness").force(),
            &Patch::Apply(&obj),
        )
        .await
        .expect("apply");
    }
}

#[tokio::test]
async fn multi_doc_apply_services_endpoints_crds_and_scheduling() {
    let sim = KubeSim::new(Config::default());
    let client = sim.client();
    apply_all(&client, MANIFEST).await;
    // Re-applying is idempotent.
    apply_all(&client, MANIFEST).await;

    let ns: Api<Namespace> = Api::all(client.clone());
    let shop = ns.get("shop").await.expect("namespace");
    assert_eq!(
        shop.labels()
            .get("kubernetes.io/metadata.name")
            .map(String::as_str),
        Some("shop")
    );

    let svcs: Api<Service> = Api::namespaced(client.clone(), "shop");
    let svc = svcs.get("web").await.expect("service");
    let spec = svc.spec.expect("spec");
    assert_eq!(spec.type_.as_deref(), Some("ClusterIP"));
    let ip: std::net::Ipv4Addr = spec.cluster_ip.expect("cluster ip").parse().expect("ip");
    assert!(
        "10.96.0.0/12"
            .parse::<ipnet::Ipv4Net>()
            .expect("cidr")
            .contains(&ip)
    );
    assert_ne!(
        ip.to_string(),
        "10.96.0.1",
        "the first address belongs to default/kubernetes"
    );
    assert_eq!(
        spec.ports.expect("ports")[0].protocol.as_deref(),
        Some("TCP")
    );

    let np: Api<NetworkPolicy> = Api::namespaced(client.clone(), "shop");
    let pol = np.get("deny-all").await.expect("netpol");
    assert_eq!(
        pol.spec.expect("spec").policy_types,
        Some(vec!["Ingress".to_string()])
    );

    // The CRD's kind is served, under its short name too.
    let discovery = Discovery::new(client.clone())
        .run()
        .await
        .expect("discovery");
    let (nad_ar, _) = discovery
        .resolve_gvk(&GroupVersionKind::gvk(
            "k8s.cni.cncf.io",
            "v1",
            "NetworkAttachmentDefinition",
        ))
        .expect("NAD served");
    let nads: Api<DynamicObject> = Api::namespaced_with(client.clone(), "shop", &nad_ar);
    let nad: DynamicObject = serde_json::from_value(json!({"apiVersion": "k8s.cni.cncf.io/v1", "kind": "NetworkAttachmentDefinition", "metadata": {"name": "vn-blue"}, "spec": {"config": "{}"}})).expect("nad");
    nads.create(&PostParams::default(), &nad)
        .await
        .expect("create NAD");
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    await_condition(
        crds,
        "network-attachment-definitions.k8s.cni.cncf.io",
        conditions::is_crd_established(),
    )
    .await
    .expect("established");

    // Scheduling: a node appears, the pod is bound to it; the node agent's status write makes it ready.
    let nodes: Api<Node> = Api::all(client.clone());
    nodes.create(&PostParams::default(), &serde_json::from_value(json!({"metadata": {"name": "node-1", "labels": {"kubernetes.io/hostname": "node-1"}}})).expect("node")).await.expect("node");
    let pods: Api<Pod> = Api::namespaced(client.clone(), "shop");
    tokio::time::timeout(
        WAIT,
        await_condition(pods.clone(), "web", |p: Option<&Pod>| {
            p.and_then(|p| p.spec.as_ref())
                .and_then(|s| s.node_name.as_deref())
                == Some("node-1")
        }),
    )
    .await
    .expect("scheduled in time")
    .expect("watch");
    let status = json!({"status": {"phase": "Running", "podIP": "10.244.0.5", "conditions": [{"type": "Ready", "status": "True"}], "containerStatuses": [{"name": "web", "ready": true, "restartCount": 0, "image": "nginx:1.27", "imageID": "", "started": true}]}});
    pods.patch_status("web", &PatchParams::default(), &Patch::Merge(&status))
        .await
        .expect("status");
    tokio::time::timeout(
        WAIT,
        await_condition(pods.clone(), "web", conditions::is_pod_running()),
    )
    .await
    .expect("in time")
    .expect("running");

    let slices: Api<EndpointSlice> = Api::namespaced(client.clone(), "shop");
    let eps: Api<Endpoints> = Api::namespaced(client.clone(), "shop");
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let list = slices
            .list(&ListParams::default().labels("kubernetes.io/service-name=web"))
            .await
            .expect("slices");
        let ready = list.items.first().map(|s| {
            s.endpoints.iter().flatten().any(|e| {
                e.conditions.as_ref().and_then(|c| c.ready) == Some(true)
                    && e.addresses == ["10.244.0.5"]
            })
        });
        if ready == Some(true) {
            assert_eq!(
                list.items[0].ports.as_ref().expect("ports")[0].port,
                Some(80),
                "named targetPort resolved"
            );
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "endpoint slice never became ready: {list:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let ep = eps.get("web").await.expect("endpoints");
    assert_eq!(
        ep.subsets.expect("subsets")[0]
            .addresses
            .as_ref()
            .expect("addresses")[0]
            .ip,
        "10.244.0.5"
    );

    // Namespace cascade: everything in it goes, then the namespace itself.
    ns.delete("shop", &DeleteParams::default())
        .await
        .expect("delete ns");
    tokio::time::timeout(
        WAIT,
        await_condition(
            ns.clone(),
            "shop",
            conditions::is_deleted(&shop.uid().expect("uid")),
        ),
    )
    .await
    .expect("in time")
    .expect("deleted");
    assert!(
        pods.list(&ListParams::default())
            .await
            .expect("list")
            .items
            .is_empty()
    );
    assert!(
        nads.list(&ListParams::default())
            .await
            .expect("list")
            .items
            .is_empty()
    );
}

#[tokio::test]
async fn watcher_sees_changes_and_finalizers_defer_deletion() {
    let sim = KubeSim::new(Config::default());
    let client = sim.client();
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    let mut stream = watcher(cms.clone(), watcher::Config::default().labels("app=w"))
        .applied_objects()
        .boxed();
    let cm: ConfigMap = serde_json::from_value(json!({"metadata": {"name": "w", "labels": {"app": "w"}, "finalizers": ["example.com/hold"]}, "data": {"k": "v"}})).expect("cm");
    cms.create(&PostParams::default(), &cm)
        .await
        .expect("create");
    let seen = tokio::time::timeout(WAIT, stream.try_next())
        .await
        .expect("in time")
        .expect("ok")
        .expect("item");
    assert_eq!(seen.name_any(), "w");

    // Delete with a finalizer: the object stays, marked for deletion.
    cms.delete("w", &DeleteParams::default())
        .await
        .expect("delete");
    let held = cms.get("w").await.expect("still there");
    assert!(held.metadata.deletion_timestamp.is_some());
    let uid = held.uid().expect("uid");
    // Removing the finalizer completes the deletion.
    cms.patch(
        "w",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"finalizers": null}})),
    )
    .await
    .expect("release");
    tokio::time::timeout(
        WAIT,
        await_condition(cms.clone(), "w", conditions::is_deleted(&uid)),
    )
    .await
    .expect("in time")
    .expect("deleted");
}

#[tokio::test]
async fn patch_flavours() {
    let sim = KubeSim::new(Config::default());
    let client = sim.client();
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let mut p = pod("p", json!({"app": "x"}));
    p.spec.as_mut().expect("spec").containers.push(
        serde_json::from_value(json!({"name": "side", "image": "busybox:1"})).expect("container"),
    );
    pods.create(&PostParams::default(), &p)
        .await
        .expect("create");

    // Strategic merge: containers merge by name.
    let smp = json!({"spec": {"containers": [{"name": "side", "image": "busybox:2"}]}});
    let out = pods
        .patch("p", &PatchParams::default(), &Patch::Strategic(&smp))
        .await
        .expect("smp");
    let images: Vec<_> = out
        .spec
        .expect("spec")
        .containers
        .iter()
        .map(|c| c.image.clone().unwrap_or_default())
        .collect();
    assert_eq!(images, ["registry.k8s.io/pause:3.10", "busybox:2"]);

    // JSON merge patch replaces lists.
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    cms.create(
        &PostParams::default(),
        &serde_json::from_value(json!({"metadata": {"name": "m"}, "data": {"a": "1", "b": "2"}}))
            .expect("cm"),
    )
    .await
    .expect("cm");
    let out = cms
        .patch(
            "m",
            &PatchParams::default(),
            &Patch::Merge(json!({"data": {"a": null, "c": "3"}})),
        )
        .await
        .expect("merge");
    assert_eq!(
        out.data.expect("data").keys().cloned().collect::<Vec<_>>(),
        ["b", "c"]
    );

    // Server-side apply: fields dropped from the config are removed; conflicts without force.
    let cfg = |data: serde_json::Value| json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "s"}, "data": data});
    cms.patch(
        "s",
        &PatchParams::apply("one"),
        &Patch::Apply(cfg(json!({"a": "1", "b": "2"}))),
    )
    .await
    .expect("apply 1");
    let out = cms
        .patch(
            "s",
            &PatchParams::apply("one"),
            &Patch::Apply(cfg(json!({"a": "1"}))),
        )
        .await
        .expect("apply 2");
    assert_eq!(out.data.clone().expect("data").len(), 1);
    assert!(out.metadata.managed_fields.expect("managed").iter().any(|m| m.manager.as_deref() == Some("one") && m.operation.as_deref() == Some("Apply")));
    match cms
        .patch(
            "s",
            &PatchParams::apply("two"),
            &Patch::Apply(cfg(json!({"a": "9"}))),
        )
        .await
        .expect_err("conflict")
    {
        kube::Error::Api(s) => {
            assert_eq!(s.code, 409);
            assert!(s.message.contains("conflict with \"one\""), "{}", s.message);
        }
        other => panic!("unexpected {other:?}"),
    }
    let out = cms
        .patch(
            "s",
            &PatchParams::apply("two").force(),
            &Patch::Apply(cfg(json!({"a": "9"}))),
        )
        .await
        .expect("forced");
    assert_eq!(out.data.expect("data")["a"], "9");
    // Re-applying the same config does not change the resourceVersion.
    let before = cms.get("s").await.expect("get").resource_version();
    let again = cms
        .patch(
            "s",
            &PatchParams::apply("two").force(),
            &Patch::Apply(cfg(json!({"a": "9"}))),
        )
        .await
        .expect("again");
    assert_eq!(again.resource_version(), before);
}

#[tokio::test]
async fn scheduler_honours_node_selector_taints_and_spreads() {
    let sim = KubeSim::new(Config::default());
    let client = sim.client();
    let nodes: Api<Node> = Api::all(client.clone());
    for (name, zone) in [("n1", "a"), ("n2", "a"), ("n3", "b")] {
        let node =
            serde_json::from_value(json!({"metadata": {"name": name, "labels": {"zone": zone}},
            "status": {"conditions": [{"type": "Ready", "status": "True"}]}}))
            .expect("node");
        nodes
            .create(&PostParams::default(), &node)
            .await
            .expect("node");
    }
    // n3 is tainted: only tolerating pods land there.
    nodes
        .patch("n3", &PatchParams::default(), &Patch::Merge(json!({"spec": {"taints": [{"key": "dedicated", "value": "x", "effect": "NoSchedule"}]}})))
        .await
        .expect("taint");
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    for i in 0..4 {
        pods.create(
            &PostParams::default(),
            &pod(&format!("spread-{i}"), json!({"app": "spread"})),
        )
        .await
        .expect("pod");
    }
    let mut pinned = pod("pinned", json!({}));
    let spec = pinned.spec.as_mut().expect("spec");
    spec.node_selector = Some([("zone".to_string(), "b".to_string())].into());
    spec.tolerations = Some(vec![
        serde_json::from_value(
            json!({"key": "dedicated", "operator": "Equal", "value": "x", "effect": "NoSchedule"}),
        )
        .expect("toleration"),
    ]);
    pods.create(&PostParams::default(), &pinned)
        .await
        .expect("pinned");
    let mut stuck = pod("stuck", json!({}));
    stuck.spec.as_mut().expect("spec").node_selector =
        Some([("zone".to_string(), "c".to_string())].into());
    pods.create(&PostParams::default(), &stuck)
        .await
        .expect("stuck");

    let node_of = |p: &Pod| p.spec.as_ref().and_then(|s| s.node_name.clone());
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let all = pods.list(&ListParams::default()).await.expect("list").items;
        let spread: Vec<Option<String>> = all
            .iter()
            .filter(|p| p.name_any().starts_with("spread-"))
            .map(node_of)
            .collect();
        let pinned = all
            .iter()
            .find(|p| p.name_any() == "pinned")
            .and_then(node_of);
        let stuck = all.iter().find(|p| p.name_any() == "stuck").expect("stuck");
        let unschedulable = stuck
            .status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .is_some_and(|c| {
                c.iter().any(|c| {
                    c.type_ == "PodScheduled"
                        && c.status == "False"
                        && c.reason.as_deref() == Some("Unschedulable")
                })
            });
        if spread.iter().all(Option::is_some) && pinned.is_some() && unschedulable {
            let on = |n: &str| spread.iter().filter(|x| x.as_deref() == Some(n)).count();
            assert_eq!(
                (on("n1"), on("n2"), on("n3")),
                (2, 2, 0),
                "spread over untainted nodes: {spread:?}"
            );
            assert_eq!(pinned.as_deref(), Some("n3"));
            assert!(node_of(stuck).is_none());
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "scheduling did not converge"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
