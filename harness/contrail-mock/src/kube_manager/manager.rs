//! The running emulation: applies watch events to the cache, marks the units they touch,
//! recomputes them, has the engine write the difference, writes load-balancer addresses back
//! to Kubernetes, and publishes its status.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Instant;

use harness_contrail_vnc::VncObject;
use harness_scenario::{MockFault, Profile};
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::networking::v1::Ingress;
use kube::Client;
use kube::api::{Api, Patch, PatchParams};
use serde_json::{Value, json};
use tokio::sync::watch;

use super::backend::VncApi;
use super::config::KubeManagerConfig;
use super::engine::{Engine, Key, Unit};
use super::k8s::{self, KEvent, KObj, Kind};
use super::units::{ObjKey, World};
use super::{KubeManagerStatus, TranslationError};

/// The state of a running emulation.
pub(super) struct Manager<A: VncApi> {
    pub(super) engine: Engine,
    pub(super) api: A,
    world: World,
    client: Client,
    status: Arc<watch::Sender<KubeManagerStatus>>,
    dirty: BTreeSet<Unit>,
    all_pods: bool,
    predicates_dirty: bool,
    initialized: bool,
    init_buffers: HashMap<Kind, Vec<KObj>>,
    events: u64,
    passes: u64,
    last_event: Instant,
    converged: bool,
    watch_errors: Vec<String>,
    /// Load-balancer addresses last written to a Service's or Ingress's status.
    patched: HashMap<(Kind, ObjKey), Vec<String>>,
    status_dirty: BTreeSet<(Kind, ObjKey)>,
    bypass_ok: bool,
}

fn labels_changed(old: Option<&KObj>, new: Option<&KObj>) -> bool {
    old.map(|o| &o.meta().labels) != new.map(|o| &o.meta().labels)
}

fn annotations_changed(old: Option<&KObj>, new: Option<&KObj>) -> bool {
    old.map(|o| &o.meta().annotations) != new.map(|o| &o.meta().annotations)
}

fn ann_value<'a>(obj: &'a VncObject, key: &str) -> Option<&'a str> {
    obj.fields
        .get("annotations")
        .and_then(|a| a.get("key_value_pair"))
        .and_then(Value::as_array)?
        .iter()
        .find(|p| p.get("key").and_then(Value::as_str) == Some(key))
        .and_then(|p| p.get("value"))
        .and_then(Value::as_str)
}

fn pod_ports(o: Option<&KObj>) -> Vec<String> {
    match o {
        Some(KObj::Pod(p)) => p
            .spec
            .iter()
            .flat_map(|s| &s.containers)
            .flat_map(|c| c.ports.iter().flatten())
            .map(|p| format!("{:?}/{:?}/{}", p.name, p.protocol, p.container_port))
            .collect(),
        _ => Vec::new(),
    }
}

impl<A: VncApi> Manager<A> {
    pub(super) fn new(
        config: KubeManagerConfig,
        api: A,
        client: Client,
        status: Arc<watch::Sender<KubeManagerStatus>>,
        bypass_ok: bool,
    ) -> Self {
        Manager {
            world: World::new(config.clone()),
            engine: Engine::new(&config.cluster_name),
            api,
            client,
            status,
            dirty: BTreeSet::new(),
            all_pods: false,
            predicates_dirty: false,
            initialized: false,
            init_buffers: HashMap::new(),
            events: 0,
            passes: 0,
            last_event: Instant::now(),
            converged: false,
            watch_errors: Vec::new(),
            patched: HashMap::new(),
            status_dirty: BTreeSet::new(),
            bypass_ok,
        }
    }

    fn mark(&mut self, u: Unit) {
        self.dirty.insert(u);
    }

    /// Restores the creation order of NetworkPolicies from the cluster APS in the database.
    pub(super) fn seed_np_order(&mut self) {
        let names = &self.world.names;
        let aps_key: Key = ("application-policy-set".into(), names.aps());
        let Some(aps) = self.engine.applied_object(&aps_key) else {
            return;
        };
        let mut refs: Vec<(String, Vec<String>)> = aps
            .refs_of("firewall_policy_refs")
            .iter()
            .map(|r| {
                let seq = r
                    .attr
                    .as_ref()
                    .and_then(|a| a.get("sequence"))
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_owned();
                (seq, r.to.clone())
            })
            .collect();
        refs.sort();
        let mut order = Vec::new();
        for (_, to) in refs {
            let key: Key = ("firewall-policy".into(), to);
            if let Some(fp) = self.engine.applied_object(&key)
                && ann_value(fp, "k8s_uuid").is_some()
                && let (Some(ns), Some(name)) = (ann_value(fp, "namespace"), ann_value(fp, "name"))
            {
                order.push((ns.to_owned(), name.to_owned()));
            }
        }
        self.world.np_order = order;
    }

    pub(super) fn handle(&mut self, ev: KEvent) {
        if !matches!(ev, KEvent::Failed { .. }) {
            self.events += 1;
            self.last_event = Instant::now();
            self.converged = false;
        }
        match ev {
            KEvent::Init(kind) => {
                self.init_buffers.insert(kind, Vec::new());
            }
            KEvent::InitApply(obj) => {
                self.init_buffers.entry(obj.kind()).or_default().push(obj);
            }
            KEvent::InitDone(kind) => {
                let objs = self.init_buffers.remove(&kind).unwrap_or_default();
                let listed: BTreeSet<(String, String)> = objs.iter().map(KObj::key).collect();
                for (ns, name) in self.world.cache.keys(kind) {
                    if !listed.contains(&(ns.clone(), name.clone())) {
                        let old = self.world.cache.remove(kind, &ns, &name);
                        self.on_change(kind, (ns, name), old);
                    }
                }
                for obj in objs {
                    self.apply_obj(obj);
                }
                self.world.cache.synced.insert(kind);
            }
            KEvent::Apply(obj) => self.apply_obj(obj),
            KEvent::Delete(obj) => {
                let kind = obj.kind();
                self.note_rv(&obj);
                let (ns, name) = obj.key();
                let old = self.world.cache.remove(kind, &ns, &name).or(Some(obj));
                self.on_change(kind, (ns, name), old);
            }
            KEvent::Failed {
                kind,
                message,
                missing_type,
            } => {
                if missing_type {
                    self.world.cache.synced.insert(kind);
                }
                self.watch_errors
                    .push(format!("{}: {message}", kind.as_str()));
                if self.watch_errors.len() > 16 {
                    self.watch_errors.remove(0);
                }
            }
        }
    }

    fn note_rv(&mut self, obj: &KObj) {
        if let Some(rv) = obj.resource_version() {
            let e = self
                .world
                .cache
                .resource_versions
                .entry(obj.kind())
                .or_default();
            *e = (*e).max(rv);
        }
    }

    fn apply_obj(&mut self, obj: KObj) {
        self.note_rv(&obj);
        let kind = obj.kind();
        let key = obj.key();
        let old = self.world.cache.put(obj);
        self.on_change(kind, key, old);
    }

    fn current(&self, kind: Kind, key: &ObjKey) -> Option<KObj> {
        let c = &self.world.cache;
        match kind {
            Kind::Namespace => c
                .namespaces
                .get(&key.1)
                .map(|o| KObj::Namespace(Box::new(o.clone()))),
            Kind::Pod => c.pods.get(key).map(|o| KObj::Pod(Box::new(o.clone()))),
            _ => None,
        }
    }

    fn on_change(&mut self, kind: Kind, key: ObjKey, old: Option<KObj>) {
        let upstream = self.world.cfg.profile == Profile::Upstream;
        match kind {
            Kind::Namespace => {
                let ns = key.1.clone();
                let new = self.current(kind, &key);
                self.mark(Unit::Namespace(ns.clone()));
                self.mark(Unit::Firewall);
                self.mark(Unit::Rbac);
                if ns == "default" {
                    self.mark(Unit::Cluster);
                }
                let lab = labels_changed(old.as_ref(), new.as_ref());
                let ann = annotations_changed(old.as_ref(), new.as_ref());
                if lab || ann {
                    for pk in self.world.cache.pods_in(&ns) {
                        self.mark(Unit::Pod(pk.0, pk.1));
                    }
                    for (n, s) in k8s::Cache::in_ns(&self.world.cache.services, &ns) {
                        self.mark(Unit::Service(n, s));
                    }
                    for (n, s) in k8s::Cache::in_ns(&self.world.cache.ingresses, &ns) {
                        self.mark(Unit::Ingress(n, s));
                    }
                    for (n, s) in k8s::Cache::in_ns(&self.world.cache.nads, &ns) {
                        self.mark(Unit::Nad(n, s));
                    }
                }
                if upstream && lab {
                    self.all_pods = true;
                }
                if new.is_none() {
                    self.world.forwarding.remove(&ns);
                }
            }
            Kind::Pod => {
                let new = self.current(kind, &key);
                for o in [&old, &new].into_iter().flatten() {
                    if let KObj::Pod(p) = o
                        && let Some(n) = p.spec.as_ref().and_then(|s| s.node_name.clone())
                    {
                        self.mark(Unit::Node(n));
                    }
                }
                if new.is_none() {
                    self.world.ns_snapshot.remove(&key);
                }
                for svc in self
                    .world
                    .pod_services
                    .get(&key)
                    .cloned()
                    .unwrap_or_default()
                {
                    self.mark(Unit::Service(key.0.clone(), svc));
                }
                if upstream && pod_ports(old.as_ref()) != pod_ports(new.as_ref()) {
                    self.predicates_dirty = true;
                }
                self.mark(Unit::Pod(key.0, key.1));
            }
            Kind::Service => {
                if key.0 == "default" && key.1 == "kubernetes" {
                    self.mark(Unit::Cluster);
                }
                for (n, s) in k8s::Cache::in_ns(&self.world.cache.ingresses, &key.0) {
                    self.mark(Unit::Ingress(n, s));
                }
                self.status_dirty.insert((Kind::Service, key.clone()));
                self.mark(Unit::Service(key.0, key.1));
            }
            Kind::EndpointSlice => {
                let (svc, pods) = self.world.slice_targets(&key);
                let old_entry = self.world.slice_pods.remove(&key);
                if let Some(s) = &svc {
                    self.world
                        .slice_pods
                        .insert(key.clone(), (s.clone(), pods.clone()));
                }
                let mut by_pod: HashMap<ObjKey, BTreeSet<String>> = HashMap::new();
                for (s, ps) in self.world.slice_pods.values() {
                    for p in ps {
                        by_pod.entry(p.clone()).or_default().insert(s.clone());
                    }
                }
                self.world.pod_services = by_pod;
                let (old_svc, old_pods) =
                    old_entry.map_or((None, Vec::new()), |(s, p)| (Some(s), p));
                for p in old_pods.iter().chain(&pods) {
                    self.mark(Unit::Pod(p.0.clone(), p.1.clone()));
                }
                for s in [old_svc, svc].into_iter().flatten() {
                    self.mark(Unit::Service(key.0.clone(), s));
                }
            }
            Kind::Ingress => {
                self.mark(Unit::Firewall);
                self.status_dirty.insert((Kind::Ingress, key.clone()));
                self.mark(Unit::Ingress(key.0, key.1));
            }
            Kind::NetworkPolicy => {
                let exists = self.world.cache.netpols.contains_key(&key);
                if exists {
                    self.world.tombstones.remove(&key);
                    if !self.world.np_order.contains(&key) {
                        self.world.np_order.push(key.clone());
                    }
                } else if self.world.cfg.has(MockFault::StaleRulesAfterDelete) {
                    if let Some(KObj::NetworkPolicy(np)) = old {
                        self.world.tombstones.insert(key.clone(), *np);
                    }
                } else {
                    self.world.np_order.retain(|k| *k != key);
                }
                self.world.update_np(&key);
                self.mark(Unit::Firewall);
                if upstream {
                    for pk in self.world.cache.pods_in(&key.0) {
                        self.mark(Unit::Pod(pk.0, pk.1));
                    }
                    self.predicates_dirty = true;
                }
                self.mark(Unit::NetworkPolicy(key.0, key.1));
            }
            Kind::Role | Kind::ClusterRole | Kind::RoleBinding | Kind::ClusterRoleBinding => {
                self.mark(Unit::Rbac);
            }
            Kind::NetworkAttachmentDefinition => {
                for pk in self.world.cache.pods_in(&key.0) {
                    self.mark(Unit::Pod(pk.0, pk.1));
                }
                self.mark(Unit::Nad(key.0, key.1));
            }
            Kind::Node => {
                let node = key.1.clone();
                let on_node: Vec<ObjKey> = self
                    .world
                    .cache
                    .pods
                    .iter()
                    .filter(|(_, p)| {
                        p.spec.as_ref().and_then(|s| s.node_name.as_deref()) == Some(node.as_str())
                    })
                    .map(|(k, _)| k.clone())
                    .collect();
                for pk in on_node {
                    self.mark(Unit::Pod(pk.0, pk.1));
                }
                self.mark(Unit::Node(node));
            }
        }
    }

    fn synced(&self) -> bool {
        Kind::ALL
            .iter()
            .all(|k| self.world.cache.synced.contains(k))
    }

    /// Marks every unit (the first pass after the initial lists: a full reconcile).
    fn dirty_all(&mut self) {
        let c = &self.world.cache;
        let mut all: Vec<Unit> = vec![Unit::Cluster, Unit::Firewall, Unit::Rbac];
        all.extend(c.namespaces.keys().map(|n| Unit::Namespace(n.clone())));
        all.extend(c.pods.keys().map(|(n, p)| Unit::Pod(n.clone(), p.clone())));
        all.extend(
            c.services
                .keys()
                .map(|(n, p)| Unit::Service(n.clone(), p.clone())),
        );
        all.extend(
            c.ingresses
                .keys()
                .map(|(n, p)| Unit::Ingress(n.clone(), p.clone())),
        );
        all.extend(c.nads.keys().map(|(n, p)| Unit::Nad(n.clone(), p.clone())));
        all.extend(c.nodes.keys().map(|n| Unit::Node(n.clone())));
        all.extend(
            self.world
                .nps
                .keys()
                .map(|(n, p)| Unit::NetworkPolicy(n.clone(), p.clone())),
        );
        let svcs: Vec<(Kind, ObjKey)> = c
            .services
            .keys()
            .map(|k| (Kind::Service, k.clone()))
            .chain(c.ingresses.keys().map(|k| (Kind::Ingress, k.clone())))
            .collect();
        self.status_dirty.extend(svcs);
        self.dirty.extend(all);
        self.predicates_dirty = true;
    }

    fn compute(&mut self) {
        if self.predicates_dirty {
            self.predicates_dirty = false;
            if self.world.rebuild_predicates() {
                self.all_pods = true;
            }
        }
        if self.all_pods {
            self.all_pods = false;
            let pods: Vec<ObjKey> = self.world.cache.pods.keys().cloned().collect();
            for (n, p) in pods {
                self.dirty.insert(Unit::Pod(n, p));
            }
        }
        let units: Vec<Unit> = std::mem::take(&mut self.dirty).into_iter().collect();
        for u in &units {
            match u {
                Unit::Namespace(ns) => self.world.decide_forwarding(ns, &self.engine),
                Unit::Cluster => self.world.decide_forwarding("default", &self.engine),
                _ => {}
            }
        }
        for u in units {
            let items = match &u {
                Unit::Cluster => self.world.cluster_items(),
                Unit::Firewall => self.world.firewall_items(),
                Unit::Rbac => self.world.rbac_items(),
                Unit::Namespace(ns) => self.world.namespace_items(ns),
                Unit::Pod(n, p) => {
                    let key = (n.clone(), p.clone());
                    self.world.snapshot_ns_labels(&key);
                    self.world.pod_items(&key, &self.engine)
                }
                Unit::Service(n, s) => self.world.service_items(&(n.clone(), s.clone())),
                Unit::Ingress(n, s) => self.world.ingress_items(&(n.clone(), s.clone())),
                Unit::NetworkPolicy(n, s) => self.world.netpol_items(&(n.clone(), s.clone())),
                Unit::Nad(n, s) => self.world.nad_items(&(n.clone(), s.clone())),
                Unit::Node(n) => self.world.node_items(n, &self.engine),
            };
            self.engine.set_unit(&u, items);
        }
    }

    pub(super) async fn step(&mut self) {
        if !self.synced() {
            self.publish();
            return;
        }
        if !self.initialized {
            self.initialized = true;
            self.dirty_all();
        }
        let busy = !self.dirty.is_empty()
            || self.all_pods
            || self.predicates_dirty
            || self.engine.pending();
        if busy {
            self.passes += 1;
            let t0 = Instant::now();
            let nd = self.dirty.len();
            self.compute();
            let t1 = Instant::now();
            let report = self.engine.apply(&self.api).await;
            for (t, name) in &report.foreign {
                if t == "virtual-router"
                    && let Some(n) = name.last()
                {
                    self.dirty.insert(Unit::Node(n.clone()));
                }
            }
            if std::env::var_os("KM_TRACE").is_some() {
                eprintln!(
                    "pass {}: {} units compute {:?} apply {:?} writes {} events {}",
                    self.passes,
                    nd,
                    t1 - t0,
                    t1.elapsed(),
                    report.writes,
                    self.events
                );
            }
            if !report.addresses.is_empty() {
                if self.world.cfg.profile == Profile::Upstream
                    && self.world.has_address_predicates()
                {
                    self.all_pods = true;
                }
                let keys: Vec<(Kind, ObjKey)> = self
                    .world
                    .cache
                    .services
                    .keys()
                    .map(|k| (Kind::Service, k.clone()))
                    .chain(
                        self.world
                            .cache
                            .ingresses
                            .keys()
                            .map(|k| (Kind::Ingress, k.clone())),
                    )
                    .collect();
                self.status_dirty.extend(keys);
            }
            self.patch_statuses().await;
        }
        let idle = self.dirty.is_empty() && !self.all_pods && !self.engine.pending();
        self.converged = idle && self.last_event.elapsed() >= self.world.cfg.settle;
        self.publish();
    }

    /// Writes load-balancer addresses to Service and Ingress status, as kube-manager does.
    async fn patch_statuses(&mut self) {
        let keys: Vec<(Kind, ObjKey)> =
            std::mem::take(&mut self.status_dirty).into_iter().collect();
        for (kind, key) in keys {
            let ips = match kind {
                Kind::Service => self.world.lb_public_ips("Service", &key, &self.engine),
                _ => self.world.ingress_ips(&key, &self.engine),
            };
            let current: Vec<String> = match kind {
                Kind::Service => self
                    .world
                    .cache
                    .services
                    .get(&key)
                    .and_then(|s| s.status.as_ref())
                    .and_then(|s| s.load_balancer.as_ref())
                    .and_then(|l| l.ingress.as_ref())
                    .map(|i| i.iter().filter_map(|e| e.ip.clone()).collect())
                    .unwrap_or_default(),
                _ => self
                    .world
                    .cache
                    .ingresses
                    .get(&key)
                    .and_then(|s| s.status.as_ref())
                    .and_then(|s| s.load_balancer.as_ref())
                    .and_then(|l| l.ingress.as_ref())
                    .map(|i| i.iter().filter_map(|e| e.ip.clone()).collect())
                    .unwrap_or_default(),
            };
            if ips.is_empty()
                || ips == current
                || self.patched.get(&(kind, key.clone())) == Some(&ips)
            {
                continue;
            }
            let body = json!({"status": {"loadBalancer": {"ingress": ips.iter().map(|ip| json!({"ip": ip})).collect::<Vec<_>>()}}});
            let pp = PatchParams::default();
            let res = match kind {
                Kind::Service => Api::<Service>::namespaced(self.client.clone(), &key.0)
                    .patch_status(&key.1, &pp, &Patch::Merge(&body))
                    .await
                    .map(|_| ()),
                _ => Api::<Ingress>::namespaced(self.client.clone(), &key.0)
                    .patch_status(&key.1, &pp, &Patch::Merge(&body))
                    .await
                    .map(|_| ()),
            };
            if res.is_ok() {
                self.patched.insert((kind, key), ips);
            }
        }
    }

    pub(super) fn next_wake(&self) -> Option<Instant> {
        let retry = self.engine.next_retry();
        let settle =
            (!self.converged && self.synced()).then(|| self.last_event + self.world.cfg.settle);
        match (retry, settle) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    fn translation_errors(&self) -> Vec<TranslationError> {
        let mut out = Vec::new();
        for ((ns, name), r) in &self.world.r50 {
            if let Err(f) = r {
                out.push(TranslationError {
                    kind: "NetworkPolicy".into(),
                    namespace: ns.clone(),
                    name: name.clone(),
                    message: f.message.clone(),
                    deviation: f.deviation.map(str::to_owned),
                    fault: None,
                });
            }
        }
        for e in self.engine.errors() {
            let what = format!("{} {}: {}", e.key.0, e.key.1.join(":"), e.error);
            if e.owners.is_empty() {
                out.push(TranslationError {
                    kind: "Contrail".into(),
                    namespace: String::new(),
                    name: String::new(),
                    message: what.clone(),
                    deviation: None,
                    fault: None,
                });
            }
            for u in &e.owners {
                let (kind, namespace, name) = u.describe();
                out.push(TranslationError {
                    kind: kind.into(),
                    namespace,
                    name,
                    message: what.clone(),
                    deviation: None,
                    fault: None,
                });
            }
        }
        if !self.bypass_ok {
            out.push(TranslationError {
                kind: "Contrail".into(),
                namespace: String::new(),
                name: String::new(),
                message: "the service-chain-bypassed fault needs the in-process config database; the VNC API in use keeps apply_service".into(),
                deviation: None,
                fault: Some(MockFault::ServiceChainBypassed),
            });
        }
        out
    }

    pub(super) fn publish(&self) {
        let rvs: BTreeMap<String, u64> = self
            .world
            .cache
            .resource_versions
            .iter()
            .map(|(k, v)| (k.as_str().to_owned(), *v))
            .collect();
        let last = rvs.values().copied().max().unwrap_or(0);
        let status = KubeManagerStatus {
            profile: self.world.cfg.profile,
            faults: self.world.cfg.faults.iter().copied().collect(),
            synced: self.synced(),
            converged: self.converged,
            events: self.events,
            passes: self.passes,
            writes: self.engine.writes,
            owned_objects: self.engine.owned_objects(),
            resource_versions: rvs,
            last_resource_version: last,
            translation_errors: self.translation_errors(),
            watch_errors: self.watch_errors.clone(),
        };
        self.status.send_if_modified(|s| {
            if *s == status {
                false
            } else {
                *s = status;
                true
            }
        });
    }
}
