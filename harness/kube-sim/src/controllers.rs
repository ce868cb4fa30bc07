//! The control loops kube-controller-manager and kube-scheduler would run: namespace lifecycle
//! (default ServiceAccount, cascade deletion), Endpoints and EndpointSlices from Service
//! selectors and pod readiness, a scheduler binding pods to nodes, and ClusterRole aggregation.
//!
//! They run in one task, react to store events in batches, and write through the same API
//! semantics as clients (so watchers see every change).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};

use serde_json::{Value, json};
use tokio::sync::broadcast::error::{RecvError, TryRecvError};

use crate::apiserver::{Shared, WriteOptions, set_condition};
use crate::registry::GroupResource;
use crate::selector::{LabelSelector, labels_of};
use crate::store::{EventType, StoreEvent};
use crate::util::{dotted, meta_str};

const CONTROLLER_MANAGER: &str = "kube-controller-manager";
const SCHEDULER: &str = "default-scheduler";

/// How long the controllers gather events before reconciling.
const BATCH_WINDOW: std::time::Duration = std::time::Duration::from_millis(5);

/// Starts the controllers once, on the current Tokio runtime (if any).
pub(crate) fn ensure_started(shared: &Arc<Shared>) {
    if shared.controllers_started.swap(true, Ordering::SeqCst) {
        return;
    }
    match tokio::runtime::Handle::try_current() {
        Ok(h) => {
            let rx = shared.store.subscribe();
            h.spawn(run(Arc::downgrade(shared), rx));
        }
        Err(_) => shared.controllers_started.store(false, Ordering::SeqCst),
    }
}

#[derive(Default)]
struct Dirty {
    all: bool,
    namespaces: BTreeSet<String>,
    pods: BTreeSet<(String, String)>,
    all_pods: bool,
    endpoint_namespaces: BTreeSet<String>,
    deleted_services: Vec<(String, String)>,
    cluster_roles: bool,
}

impl Dirty {
    fn everything() -> Self {
        Dirty {
            all: true,
            all_pods: true,
            cluster_roles: true,
            ..Dirty::default()
        }
    }

    fn note(&mut self, ev: &StoreEvent) {
        let (g, r) = (ev.resource.group.as_str(), ev.resource.resource.as_str());
        let name = meta_str(&ev.object, "name").unwrap_or("").to_string();
        match (g, r) {
            ("", "namespaces") => {
                self.namespaces.insert(name);
            }
            ("", "pods") => {
                self.endpoint_namespaces.insert(ev.namespace.clone());
                if ev.kind != EventType::Deleted {
                    self.pods.insert((ev.namespace.clone(), name));
                } else {
                    // A pod leaving frees capacity for pending ones.
                    self.all_pods = true;
                }
            }
            ("", "nodes") => self.all_pods = true,
            ("", "services") => {
                self.endpoint_namespaces.insert(ev.namespace.clone());
                if ev.kind == EventType::Deleted {
                    self.deleted_services.push((ev.namespace.clone(), name));
                }
            }
            ("rbac.authorization.k8s.io", "clusterroles") => self.cluster_roles = true,
            _ => {}
        }
        if ev.kind == EventType::Deleted && !ev.namespace.is_empty() {
            self.namespaces.insert(ev.namespace.clone());
        }
    }
}

async fn run(weak: Weak<Shared>, mut rx: tokio::sync::broadcast::Receiver<Arc<StoreEvent>>) {
    let mut dirty = Dirty::everything();
    let mut last_rev = 0u64;
    loop {
        {
            let Some(shared) = weak.upgrade() else {
                return;
            };
            if last_rev == 0 {
                last_rev = shared.store.revision();
            }
            reconcile(&shared, std::mem::take(&mut dirty));
        }
        let mut lagged = false;
        match rx.recv().await {
            Ok(ev) => {
                last_rev = last_rev.max(ev.revision);
                dirty.note(&ev);
            }
            Err(RecvError::Lagged(_)) => lagged = true,
            Err(RecvError::Closed) => return,
        }
        // Let a burst of writes accumulate so one pass handles it (fewer lock round trips).
        tokio::time::sleep(BATCH_WINDOW).await;
        loop {
            match rx.try_recv() {
                Ok(ev) => {
                    last_rev = last_rev.max(ev.revision);
                    dirty.note(&ev);
                }
                Err(TryRecvError::Lagged(_)) => lagged = true,
                Err(_) => break,
            }
        }
        if lagged {
            // Catch up from the store's history; only a compaction forces a full resync.
            let Some(shared) = weak.upgrade() else {
                return;
            };
            match shared.store.history_since(last_rev) {
                Some(evs) => {
                    for ev in &evs {
                        last_rev = last_rev.max(ev.revision);
                        dirty.note(ev);
                    }
                }
                None => {
                    dirty = Dirty::everything();
                    last_rev = shared.store.revision();
                }
            }
        }
    }
}

fn gr(g: &str, r: &str) -> GroupResource {
    GroupResource::new(g, r)
}

fn reconcile(shared: &Shared, dirty: Dirty) {
    let namespaces: Vec<String> = if dirty.all {
        shared
            .store
            .list(&gr("", "namespaces"), None)
            .0
            .iter()
            .filter_map(|n| meta_str(n, "name").map(str::to_string))
            .collect()
    } else {
        dirty.namespaces.iter().cloned().collect()
    };
    for ns in &namespaces {
        namespace_lifecycle(shared, ns);
    }
    if dirty.cluster_roles {
        aggregate_roles(shared);
    }
    for (ns, name) in &dirty.deleted_services {
        let _ = shared.remove(&gr("", "endpoints"), ns, name);
        for slice in owned_slices(shared, ns, name) {
            let _ = shared.remove(&gr("discovery.k8s.io", "endpointslices"), ns, &slice);
        }
    }
    let endpoint_namespaces: Vec<String> = if dirty.all {
        namespaces.clone()
    } else {
        dirty.endpoint_namespaces.iter().cloned().collect()
    };
    for ns in &endpoint_namespaces {
        for svc in shared.store.list(&gr("", "services"), Some(ns)).0 {
            reconcile_endpoints(shared, &svc);
        }
    }
    schedule(
        shared,
        if dirty.all_pods {
            None
        } else {
            Some(&dirty.pods)
        },
    );
}

fn namespace_lifecycle(shared: &Shared, ns: &str) {
    let Some(obj) = shared.store.get(&gr("", "namespaces"), "", ns) else {
        return;
    };
    if meta_str(&obj, "deletionTimestamp").is_none() {
        let sa = json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "default", "namespace": ns}});
        let _ = shared.ensure(&gr("", "serviceaccounts"), ns, sa, CONTROLLER_MANAGER);
        return;
    }
    // Terminating: delete everything in it, then release the namespace's own finalizer.
    for t in shared
        .registry()
        .types()
        .iter()
        .filter(|t| t.namespaced && t.is_stored())
    {
        let g = t.group_resource();
        for o in shared.store.list(&g, Some(ns)).0 {
            if meta_str(&o, "deletionTimestamp").is_none() {
                let _ = shared.remove(&g, ns, meta_str(&o, "name").unwrap_or(""));
            }
        }
    }
    let left = shared
        .registry()
        .types()
        .iter()
        .filter(|t| t.namespaced && t.is_stored())
        .map(|t| shared.store.list(&t.group_resource(), Some(ns)).0.len())
        .sum::<usize>();
    if left == 0 {
        let _ = shared.modify(&gr("", "namespaces"), "", ns, "", CONTROLLER_MANAGER, |o| {
            if let Some(Value::Array(f)) = o.get_mut("spec").and_then(|s| s.get_mut("finalizers")) {
                f.retain(|x| x.as_str() != Some("kubernetes"));
            }
        });
    } else {
        let _ = shared.modify(
            &gr("", "namespaces"),
            "",
            ns,
            "status",
            CONTROLLER_MANAGER,
            |o| {
                if let Value::Object(m) = o {
                    let status = crate::util::obj_entry(m, "status");
                    set_condition(
                        status,
                        "NamespaceContentRemaining",
                        "True",
                        "SomeResourcesRemain",
                        &format!("Some resources are remaining: {left} objects"),
                    );
                }
            },
        );
    }
}

fn aggregate_roles(shared: &Shared) {
    let roles = shared
        .store
        .list(&gr("rbac.authorization.k8s.io", "clusterroles"), None)
        .0;
    for (name, rules) in crate::auth::aggregate_cluster_roles(&roles) {
        let _ = shared.modify(
            &gr("rbac.authorization.k8s.io", "clusterroles"),
            "",
            &name,
            "",
            "clusterrole-aggregation-controller",
            |o| {
                o["rules"] = Value::Array(rules);
            },
        );
    }
}

fn owned_slices(shared: &Shared, ns: &str, service: &str) -> Vec<String> {
    shared
        .store
        .list(&gr("discovery.k8s.io", "endpointslices"), Some(ns))
        .0
        .iter()
        .filter(|s| {
            labels_of(s).get("kubernetes.io/service-name") == Some(&service)
                && labels_of(s).get("endpointslice.kubernetes.io/managed-by")
                    == Some(&"endpointslice-controller.k8s.io")
        })
        .filter_map(|s| meta_str(s, "name").map(str::to_string))
        .collect()
}

fn pod_ready(pod: &Value) -> bool {
    dotted(pod, "status.conditions")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .any(|c| {
            c.get("type").and_then(Value::as_str) == Some("Ready")
                && c.get("status").and_then(Value::as_str) == Some("True")
        })
}

/// Resolves a Service targetPort (number or container port name) for one pod.
fn resolve_target(pod: &Value, target: &Value, proto: &str) -> Option<i64> {
    if let Some(n) = target.as_i64() {
        return Some(n);
    }
    if let Some(s) = target.as_str() {
        if let Ok(n) = s.parse::<i64>() {
            return Some(n);
        }
        for c in dotted(pod, "spec.containers")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            for p in c
                .get("ports")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                if p.get("name").and_then(Value::as_str) == Some(s)
                    && p.get("protocol").and_then(Value::as_str).unwrap_or("TCP") == proto
                {
                    return p.get("containerPort").and_then(Value::as_i64);
                }
            }
        }
    }
    None
}

fn short_hash(s: &str) -> String {
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    let mut x = crate::util::splitmix(
        s.bytes()
            .fold(0u64, |h, b| h.wrapping_mul(31).wrapping_add(u64::from(b))),
    );
    (0..5)
        .map(|_| {
            let c = ALPHABET[(x % ALPHABET.len() as u64) as usize] as char;
            x = crate::util::splitmix(x);
            c
        })
        .collect()
}

/// Ready addresses, not-ready addresses and ports of one Endpoints subset.
type Subset = (Vec<Value>, Vec<Value>, Vec<Value>);

fn reconcile_endpoints(shared: &Shared, svc: &Value) {
    let Some(selector) = dotted(svc, "spec.selector")
        .and_then(Value::as_object)
        .filter(|m| !m.is_empty())
    else {
        return;
    };
    let ns = meta_str(svc, "namespace").unwrap_or("").to_string();
    let name = meta_str(svc, "name").unwrap_or("").to_string();
    let uid = meta_str(svc, "uid").unwrap_or("").to_string();
    let sel = LabelSelector::from_map(selector);
    let ports = dotted(svc, "spec.ports")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let pods: Vec<Arc<Value>> = shared
        .store
        .list(&gr("", "pods"), Some(&ns))
        .0
        .into_iter()
        .filter(|p| sel.matches_object(p))
        .filter(|p| {
            dotted(p, "status.podIP")
                .and_then(Value::as_str)
                .is_some_and(|ip| !ip.is_empty())
        })
        .filter(|p| {
            !matches!(
                dotted(p, "status.phase").and_then(Value::as_str),
                Some("Succeeded" | "Failed")
            )
        })
        .collect();

    // Endpoints: subsets grouped by resolved ports.
    let mut subsets: BTreeMap<String, Subset> = BTreeMap::new();
    let mut slice_eps = Vec::new();
    let mut slice_ports: Option<Vec<Value>> = None;
    for pod in &pods {
        let ip = dotted(pod, "status.podIP")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        let terminating = meta_str(pod, "deletionTimestamp").is_some();
        let ready = pod_ready(pod) && !terminating;
        let resolved: Vec<Value> = ports
            .iter()
            .filter_map(|p| {
                let proto = p.get("protocol").and_then(Value::as_str).unwrap_or("TCP");
                let target = p.get("targetPort").or_else(|| p.get("port"))?;
                let port = resolve_target(pod, target, proto)?;
                let mut e = json!({"port": port, "protocol": proto});
                if let Some(n) = p
                    .get("name")
                    .and_then(Value::as_str)
                    .filter(|n| !n.is_empty())
                {
                    e["name"] = json!(n);
                }
                if let Some(ap) = p.get("appProtocol") {
                    e["appProtocol"] = ap.clone();
                }
                Some(e)
            })
            .collect();
        let target_ref = json!({"kind": "Pod", "namespace": ns, "name": meta_str(pod, "name").unwrap_or(""), "uid": meta_str(pod, "uid").unwrap_or("")});
        let mut addr = json!({"ip": ip, "targetRef": target_ref});
        if let Some(node) = dotted(pod, "spec.nodeName").and_then(Value::as_str) {
            addr["nodeName"] = json!(node);
        }
        let key = serde_json::to_string(&resolved).unwrap_or_default();
        let entry = subsets
            .entry(key)
            .or_insert_with(|| (Vec::new(), Vec::new(), resolved.clone()));
        if ready {
            entry.0.push(addr);
        } else if !terminating {
            entry.1.push(addr);
        }
        if slice_ports.is_none() {
            slice_ports = Some(resolved.clone());
        }
        let mut ep = json!({
            "addresses": [ip],
            "conditions": {"ready": ready, "serving": pod_ready(pod), "terminating": terminating},
            "targetRef": target_ref,
        });
        if let Some(node) = dotted(pod, "spec.nodeName").and_then(Value::as_str) {
            ep["nodeName"] = json!(node);
        }
        slice_eps.push(ep);
    }
    let subsets: Vec<Value> = subsets
        .into_values()
        .filter(|(a, n, _)| !a.is_empty() || !n.is_empty())
        .map(|(a, n, p)| {
            let mut s = json!({"ports": p});
            if !a.is_empty() {
                s["addresses"] = json!(a);
            }
            if !n.is_empty() {
                s["notReadyAddresses"] = json!(n);
            }
            s
        })
        .collect();
    let mut labels = dotted(svc, "metadata.labels").cloned().unwrap_or(json!({}));
    labels["endpoints.kubernetes.io/managed-by"] = json!("endpoint-controller");
    let endpoints = json!({"apiVersion": "v1", "kind": "Endpoints", "metadata": {"name": name, "namespace": ns, "labels": labels}, "subsets": subsets});
    upsert(
        shared,
        &gr("", "endpoints"),
        &ns,
        &name,
        endpoints,
        &["subsets", "metadata.labels"],
    );

    let slice_ports = slice_ports.unwrap_or_else(|| {
        ports
            .iter()
            .filter_map(|p| {
                let mut e = json!({"port": p.get("targetPort").and_then(Value::as_i64).or_else(|| p.get("port").and_then(Value::as_i64))?, "protocol": p.get("protocol").and_then(Value::as_str).unwrap_or("TCP")});
                if let Some(n) = p.get("name").and_then(Value::as_str).filter(|n| !n.is_empty()) {
                    e["name"] = json!(n);
                }
                Some(e)
            })
            .collect()
    });
    let slice_name = format!("{name}-{}", short_hash(&uid));
    let mut slice_labels = dotted(svc, "metadata.labels").cloned().unwrap_or(json!({}));
    slice_labels["kubernetes.io/service-name"] = json!(name);
    slice_labels["endpointslice.kubernetes.io/managed-by"] =
        json!("endpointslice-controller.k8s.io");
    let slice = json!({
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": {
            "name": slice_name,
            "namespace": ns,
            "labels": slice_labels,
            "ownerReferences": [{"apiVersion": "v1", "kind": "Service", "name": name, "uid": uid, "controller": true, "blockOwnerDeletion": true}],
        },
        "addressType": "IPv4",
        "endpoints": slice_eps,
        "ports": slice_ports,
    });
    upsert(
        shared,
        &gr("discovery.k8s.io", "endpointslices"),
        &ns,
        &slice_name,
        slice,
        &["endpoints", "ports", "metadata.labels"],
    );
    for stale in owned_slices(shared, &ns, &name)
        .into_iter()
        .filter(|s| *s != slice_name)
    {
        let _ = shared.remove(&gr("discovery.k8s.io", "endpointslices"), &ns, &stale);
    }
}

/// Creates `desired` or updates the listed fields of the existing object when they differ.
fn upsert(
    shared: &Shared,
    g: &GroupResource,
    ns: &str,
    name: &str,
    desired: Value,
    fields: &[&str],
) {
    match shared.store.get(g, ns, name) {
        None => {
            let _ = shared.ensure(g, ns, desired, CONTROLLER_MANAGER);
        }
        Some(cur) => {
            let differs = fields
                .iter()
                .any(|f| dotted(&cur, f) != dotted(&desired, f));
            if differs {
                let _ = shared.modify(g, ns, name, "", CONTROLLER_MANAGER, |o| {
                    for f in fields {
                        let v = dotted(&desired, f).cloned();
                        set_dotted(o, f, v);
                    }
                });
            }
        }
    }
}

fn set_dotted(o: &mut Value, path: &str, v: Option<Value>) {
    let parts: Vec<&str> = path.split('.').collect();
    let Some((last, parents)) = parts.split_last() else {
        return;
    };
    let mut cur = o;
    for p in parents {
        if !cur.is_object() {
            *cur = json!({});
        }
        cur = match cur {
            Value::Object(m) => m.entry(p.to_string()).or_insert_with(|| json!({})),
            _ => return,
        };
    }
    if let Value::Object(m) = cur {
        match v {
            Some(v) => {
                m.insert(last.to_string(), v);
            }
            None => {
                m.shift_remove(*last);
            }
        }
    }
}

fn tolerates(pod: &Value, taint: &Value) -> bool {
    let t = |k: &str| taint.get(k).and_then(Value::as_str).unwrap_or("");
    if t("effect") == "PreferNoSchedule" {
        return true;
    }
    dotted(pod, "spec.tolerations")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .any(|tol| {
            let s = |k: &str| tol.get(k).and_then(Value::as_str).unwrap_or("");
            let key_ok = s("key").is_empty() && s("operator") == "Exists" || s("key") == t("key");
            let value_ok = s("operator") == "Exists" || s("value") == t("value");
            let effect_ok = s("effect").is_empty() || s("effect") == t("effect");
            key_ok && value_ok && effect_ok
        })
}

fn node_affinity_ok(pod: &Value, node: &Value) -> bool {
    let Some(terms) = dotted(pod, "spec.affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution.nodeSelectorTerms").and_then(Value::as_array) else {
        return true;
    };
    let labels = labels_of(node);
    terms.iter().any(|term| {
        term.get("matchExpressions")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .all(|e| {
                let key = e.get("key").and_then(Value::as_str).unwrap_or("");
                let values: Vec<&str> = e
                    .get("values")
                    .and_then(Value::as_array)
                    .map(|a| a.iter().filter_map(Value::as_str).collect())
                    .unwrap_or_default();
                let have = labels.get(key);
                match e.get("operator").and_then(Value::as_str).unwrap_or("") {
                    "In" => have.is_some_and(|v| values.contains(v)),
                    "NotIn" => have.is_none_or(|v| !values.contains(v)),
                    "Exists" => have.is_some(),
                    "DoesNotExist" => have.is_none(),
                    "Gt" => have
                        .and_then(|v| v.parse::<i64>().ok())
                        .zip(values.first().and_then(|v| v.parse::<i64>().ok()))
                        .is_some_and(|(a, b)| a > b),
                    "Lt" => have
                        .and_then(|v| v.parse::<i64>().ok())
                        .zip(values.first().and_then(|v| v.parse::<i64>().ok()))
                        .is_some_and(|(a, b)| a < b),
                    _ => false,
                }
            })
    })
}

/// Why a node cannot take a pod, or `None` if it can.
fn unfit(pod: &Value, node: &Value) -> Option<&'static str> {
    if dotted(node, "spec.unschedulable").and_then(Value::as_bool) == Some(true) {
        return Some("node(s) were unschedulable");
    }
    let ready = dotted(node, "status.conditions")
        .and_then(Value::as_array)
        .and_then(|cs| {
            cs.iter()
                .find(|c| c.get("type").and_then(Value::as_str) == Some("Ready"))
                .and_then(|c| c.get("status"))
                .and_then(Value::as_str)
                .map(|s| s == "True")
        });
    if ready == Some(false) {
        return Some("node(s) were not ready");
    }
    if let Some(sel) = dotted(pod, "spec.nodeSelector").and_then(Value::as_object)
        && !LabelSelector::from_map(sel).matches_object(node)
    {
        return Some("node(s) didn't match Pod's node affinity/selector");
    }
    if !node_affinity_ok(pod, node) {
        return Some("node(s) didn't match Pod's node affinity/selector");
    }
    for taint in dotted(node, "spec.taints")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        if !tolerates(pod, taint) {
            return Some("node(s) had untolerated taint");
        }
    }
    None
}

fn schedule(shared: &Shared, only: Option<&BTreeSet<(String, String)>>) {
    let pods_gr = gr("", "pods");
    let candidates: Vec<Arc<Value>> = match only {
        Some(keys) => {
            let keys: Vec<(String, String)> = keys.iter().cloned().collect();
            shared.store.get_many(&pods_gr, &keys)
        }
        None => shared.store.list(&pods_gr, None).0,
    };
    let pending: Vec<Arc<Value>> = candidates
        .into_iter()
        .filter(|p| {
            dotted(p, "spec.nodeName")
                .and_then(Value::as_str)
                .unwrap_or("")
                .is_empty()
        })
        .filter(|p| {
            dotted(p, "spec.schedulerName")
                .and_then(Value::as_str)
                .unwrap_or(SCHEDULER)
                == SCHEDULER
        })
        .filter(|p| meta_str(p, "deletionTimestamp").is_none())
        .filter(|p| {
            dotted(p, "spec.schedulingGates")
                .and_then(Value::as_array)
                .is_none_or(Vec::is_empty)
        })
        .collect();
    if pending.is_empty() {
        return;
    }
    let nodes = shared.store.list(&gr("", "nodes"), None).0;
    // Spreading needs the pods per node; without nodes there is nothing to spread over.
    let mut load: BTreeMap<String, usize> = BTreeMap::new();
    if !nodes.is_empty() {
        for p in shared.store.list(&pods_gr, None).0 {
            if let Some(n) = dotted(&p, "spec.nodeName")
                .and_then(Value::as_str)
                .filter(|n| !n.is_empty())
            {
                *load.entry(n.to_string()).or_default() += 1;
            }
        }
    }
    let mut unschedulable: Vec<((String, String), String)> = Vec::new();
    for pod in pending {
        let ns = meta_str(&pod, "namespace").unwrap_or("").to_string();
        let name = meta_str(&pod, "name").unwrap_or("").to_string();
        let mut reasons: BTreeMap<&'static str, usize> = BTreeMap::new();
        let mut best: Option<(usize, String)> = None;
        for node in &nodes {
            let nname = meta_str(node, "name").unwrap_or("").to_string();
            match unfit(&pod, node) {
                Some(r) => *reasons.entry(r).or_default() += 1,
                None => {
                    let l = load.get(&nname).copied().unwrap_or(0);
                    if best.as_ref().is_none_or(|(bl, bn)| (l, &nname) < (*bl, bn)) {
                        best = Some((l, nname));
                    }
                }
            }
        }
        match best {
            Some((_, node)) => {
                let binding = json!({"apiVersion": "v1", "kind": "Binding", "metadata": {"name": name, "namespace": ns}, "target": {"apiVersion": "v1", "kind": "Node", "name": node}});
                let opts = WriteOptions {
                    field_manager: SCHEDULER.into(),
                    ..WriteOptions::default()
                };
                if shared.bind(&ns, &name, &binding, &opts).is_ok() {
                    *load.entry(node).or_default() += 1;
                }
            }
            None => {
                let detail = if nodes.is_empty() {
                    "no nodes available to schedule pods".to_string()
                } else {
                    let parts: Vec<String> =
                        reasons.iter().map(|(r, n)| format!("{n} {r}")).collect();
                    format!(
                        "0/{} nodes are available: {}.",
                        nodes.len(),
                        parts.join(", ")
                    )
                };
                let already = dotted(&pod, "status.conditions")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                    .any(|c| {
                        c.get("type").and_then(Value::as_str) == Some("PodScheduled")
                            && c.get("message").and_then(Value::as_str) == Some(detail.as_str())
                    });
                if !already {
                    unschedulable.push(((ns.clone(), name.clone()), detail));
                }
            }
        }
    }
    shared.modify_each(
        &pods_gr,
        "status",
        SCHEDULER,
        &unschedulable,
        |o, detail| {
            if let Value::Object(m) = o {
                let status = crate::util::obj_entry(m, "status");
                set_condition(status, "PodScheduled", "False", "Unschedulable", detail);
            }
        },
    );
}
