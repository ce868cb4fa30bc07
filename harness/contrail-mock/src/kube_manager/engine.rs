//! The desired Contrail state, kept per *unit* (the cluster, one namespace, one pod, ...),
//! and the writer that makes the VNC API match it.
//!
//! Every unit yields [`Item`]s; the engine remembers which unit wants which item, what it
//! last wrote (or found at start-up), and writes only the difference: creates and updates in
//! dependency order (tags before rules before policies before the APS, networks before
//! interfaces before instance IPs, ...), then deletes in the reverse order, so references
//! never dangle. Failed writes are retried with backoff; a refused one (400) is reported.
//! Comparing desired fields as a subset of what is stored makes server-filled fields
//! (`protocol_id`, `tag_ids`, allocated addresses, ...) harmless, so a restart that finds
//! its objects in the database writes nothing.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::time::{Duration, Instant};

use harness_contrail_vnc::schema::object_type;
use harness_contrail_vnc::{Ref, RefOperation, RefUpdate, VncObject};
use serde_json::{Map, Value};

use super::backend::{ApiError, VncApi};

/// A part of the Kubernetes state whose Contrail objects are computed together.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) enum Unit {
    /// Cluster provisioning (IPAMs, default networks and policies, global config).
    Cluster,
    /// The cluster APS and its `Ingress`/`denyall`/`allowall` firewall policies.
    Firewall,
    /// The Kubernetes → Contrail RBAC mapping.
    Rbac,
    Namespace(String),
    Pod(String, String),
    Service(String, String),
    Ingress(String, String),
    NetworkPolicy(String, String),
    Nad(String, String),
    Node(String),
}

impl Unit {
    /// `(kind, namespace, name)` of the Kubernetes object behind the unit.
    pub fn describe(&self) -> (&'static str, String, String) {
        match self {
            Unit::Cluster => ("Cluster", String::new(), String::new()),
            Unit::Firewall => ("Cluster", String::new(), "firewall".into()),
            Unit::Rbac => ("RBAC", String::new(), String::new()),
            Unit::Namespace(n) => ("Namespace", String::new(), n.clone()),
            Unit::Pod(n, p) => ("Pod", n.clone(), p.clone()),
            Unit::Service(n, s) => ("Service", n.clone(), s.clone()),
            Unit::Ingress(n, s) => ("Ingress", n.clone(), s.clone()),
            Unit::NetworkPolicy(n, s) => ("NetworkPolicy", n.clone(), s.clone()),
            Unit::Nad(n, s) => ("NetworkAttachmentDefinition", n.clone(), s.clone()),
            Unit::Node(n) => ("Node", String::new(), n.clone()),
        }
    }
}

/// A reference set on an object kube-manager does not own, through `ref-update`.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Link {
    pub from_type: String,
    pub from_fq: Vec<String>,
    pub to_type: String,
    pub to_fq: Vec<String>,
    pub attr: Option<Value>,
}

/// Something a unit wants in the config database.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Item {
    /// An object kube-manager owns: created, updated and deleted to match.
    Object(VncObject),
    /// A reference on an object it does not own (added, and removed when no longer wanted).
    Link(Link),
    /// Properties set on an object it does not own (never deleted).
    Props(VncObject),
}

/// `(type or link/props tag, name)`.
pub(crate) type Key = (String, Vec<String>);

fn type_rank(t: &str) -> u32 {
    match t {
        "tag" | "address-group" => 0,
        "project" => 10,
        "network-ipam" => 20,
        "network-policy" => 30,
        "virtual-network" => 40,
        "floating-ip-pool" => 50,
        "security-group" => 60,
        "firewall-rule" => 70,
        "firewall-policy" => 80,
        "application-policy-set" => 90,
        // After the VMs it links (the VR holds `virtual_machine_refs`).
        "virtual-router" => 115,
        "virtual-machine" => 110,
        "virtual-machine-interface" => 120,
        "instance-ip" => 130,
        "loadbalancer" => 140,
        "loadbalancer-listener" => 150,
        "loadbalancer-pool" => 160,
        "loadbalancer-member" => 170,
        "floating-ip" => 180,
        "api-access-list" => 190,
        _ => 200,
    }
}

impl Item {
    pub fn key(&self) -> Key {
        match self {
            Item::Object(o) => (o.type_name.clone(), o.fq_name.clone()),
            Item::Props(o) => (format!("props:{}", o.type_name), o.fq_name.clone()),
            Item::Link(l) => {
                let mut name = l.from_fq.clone();
                name.push("=>".into());
                name.extend(l.to_fq.iter().cloned());
                (format!("link:{}>{}", l.from_type, l.to_type), name)
            }
        }
    }

    fn rank(&self) -> u32 {
        match self {
            Item::Object(o) => type_rank(&o.type_name),
            Item::Props(_) => 210,
            Item::Link(l) => type_rank(&l.from_type).max(type_rank(&l.to_type)) + 5,
        }
    }
}

fn rank_of_key(k: &Key) -> u32 {
    if let Some(rest) = k.0.strip_prefix("link:") {
        let (a, b) = rest.split_once('>').unwrap_or((rest, rest));
        return type_rank(a).max(type_rank(b)) + 5;
    }
    if k.0.starts_with("props:") {
        return 210;
    }
    type_rank(&k.0)
}

/// Whether `want` is contained in `have` (objects: every key of `want`, recursively; lists:
/// same length, element-wise; numbers and numeric strings compare by text).
pub(crate) fn covers(want: &Value, have: &Value) -> bool {
    match (want, have) {
        (Value::Object(w), Value::Object(h)) => w.iter().all(|(k, v)| match h.get(k) {
            Some(hv) => covers(v, hv),
            None => v.is_null(),
        }),
        (Value::Array(w), Value::Array(h)) => {
            w.len() == h.len() && w.iter().zip(h).all(|(a, b)| covers(a, b))
        }
        (Value::Number(a), Value::String(b)) | (Value::String(b), Value::Number(a)) => {
            a.to_string() == *b
        }
        _ => want == have,
    }
}

fn refs_cover(want: &[Ref], have: &[Ref]) -> bool {
    want.len() == have.len()
        && want.iter().zip(have).all(|(w, h)| {
            w.to == h.to
                && match &w.attr {
                    None => true,
                    Some(a) => h.attr.as_ref().is_some_and(|b| covers(a, b)),
                }
        })
}

fn object_covered(want: &VncObject, have: &VncObject) -> bool {
    want.fields
        .iter()
        .all(|(k, v)| have.fields.get(k).is_some_and(|h| covers(v, h)))
        && want
            .refs
            .iter()
            .all(|(k, v)| refs_cover(v, have.refs_of(k)))
}

#[derive(Debug)]
struct Desired {
    item: Item,
    owners: Vec<Unit>,
}

#[derive(Debug)]
struct Applied {
    uuid: String,
    /// For links: the target's uuid.
    to_uuid: String,
    /// What was last written (or found at start-up).
    item: Item,
    /// Fields and reference fields last written (`None` when found at start-up).
    managed: Option<BTreeSet<String>>,
    /// Found without kube-manager's annotations: updated but never deleted.
    adopted: bool,
    /// Someone else's object (a virtual router): left alone.
    foreign: bool,
}

#[derive(Debug)]
struct Retry {
    attempts: u32,
    at: Instant,
}

/// A write that failed for good (until the desired state changes).
#[derive(Debug, Clone)]
pub(crate) struct WriteError {
    pub key: Key,
    pub owners: Vec<Unit>,
    pub error: ApiError,
}

/// What one [`Engine::apply`] pass did.
#[derive(Debug, Default)]
pub(crate) struct ApplyReport {
    pub writes: usize,
    /// Instance and floating IPs created, with their address.
    pub addresses: Vec<(Key, String)>,
    /// Objects found to belong to someone else (virtual routers).
    pub foreign: Vec<Key>,
}

/// Types kube-manager owns objects of (listed at start-up to rebuild its state).
pub(crate) const OWNED_TYPES: &[&str] = &[
    "tag",
    "address-group",
    "project",
    "network-ipam",
    "network-policy",
    "virtual-network",
    "floating-ip-pool",
    "security-group",
    "firewall-rule",
    "firewall-policy",
    "application-policy-set",
    "virtual-router",
    "virtual-machine",
    "virtual-machine-interface",
    "instance-ip",
    "loadbalancer",
    "loadbalancer-listener",
    "loadbalancer-pool",
    "loadbalancer-member",
    "floating-ip",
    "api-access-list",
];

/// The annotations marking kube-manager's objects.
pub(crate) fn owned_by(obj: &VncObject, cluster: &str) -> bool {
    let pairs = obj
        .fields
        .get("annotations")
        .and_then(|a| a.get("key_value_pair"))
        .and_then(Value::as_array);
    let get = |k: &str| {
        pairs
            .into_iter()
            .flatten()
            .find(|p| p.get("key").and_then(Value::as_str) == Some(k))
            .and_then(|p| p.get("value"))
            .and_then(Value::as_str)
    };
    get("owner") == Some("k8s") && get("cluster") == Some(cluster)
}

fn address_of(obj: &VncObject) -> Option<String> {
    let field = match obj.type_name.as_str() {
        "instance-ip" => "instance_ip_address",
        "floating-ip" => "floating_ip_address",
        _ => return None,
    };
    obj.fields
        .get(field)
        .and_then(Value::as_str)
        .map(str::to_owned)
}

/// The desired state and what is written.
#[derive(Debug, Default)]
pub(crate) struct Engine {
    cluster: String,
    desired: HashMap<Key, Desired>,
    by_unit: HashMap<Unit, Vec<Key>>,
    applied: HashMap<Key, Applied>,
    dirty: HashSet<Key>,
    retry: HashMap<Key, Retry>,
    errors: HashMap<Key, ApiError>,
    addresses: HashMap<Key, String>,
    uuid_cache: HashMap<Key, String>,
    /// Writes done since start.
    pub writes: u64,
}

const MAX_ATTEMPTS: u32 = 12;

impl Engine {
    pub fn new(cluster: &str) -> Self {
        Engine {
            cluster: cluster.to_owned(),
            ..Engine::default()
        }
    }

    /// Replaces what `unit` wants.
    pub fn set_unit(&mut self, unit: &Unit, items: Vec<Item>) {
        let old = self.by_unit.remove(unit).unwrap_or_default();
        let mut keys = Vec::with_capacity(items.len());
        let mut seen: HashSet<Key> = HashSet::with_capacity(items.len());
        for item in items {
            let k = item.key();
            if !seen.insert(k.clone()) {
                continue;
            }
            match self.desired.get_mut(&k) {
                Some(d) => {
                    if !d.owners.contains(unit) {
                        d.owners.push(unit.clone());
                    }
                    if d.item != item {
                        d.item = item;
                        self.dirty.insert(k.clone());
                        self.retry.remove(&k);
                        self.errors.remove(&k);
                    }
                }
                None => {
                    self.desired.insert(
                        k.clone(),
                        Desired {
                            item,
                            owners: vec![unit.clone()],
                        },
                    );
                    self.dirty.insert(k.clone());
                    self.retry.remove(&k);
                    self.errors.remove(&k);
                }
            }
            keys.push(k);
        }
        for k in old {
            if seen.contains(&k) {
                continue;
            }
            if let Some(d) = self.desired.get_mut(&k) {
                d.owners.retain(|u| u != unit);
                if d.owners.is_empty() {
                    self.desired.remove(&k);
                    self.dirty.insert(k.clone());
                    self.retry.remove(&k);
                    self.errors.remove(&k);
                }
            }
        }
        if !keys.is_empty() {
            self.by_unit.insert(unit.clone(), keys);
        }
    }

    /// Whether an object turned out to be someone else's (left alone).
    pub fn is_foreign(&self, key: &Key) -> bool {
        self.applied.get(key).is_some_and(|a| a.foreign)
    }

    /// The address of an instance or floating IP.
    pub fn address(&self, key: &Key) -> Option<&str> {
        self.addresses.get(key).map(String::as_str)
    }

    /// The stored object found at start-up or last written.
    pub fn applied_object(&self, key: &Key) -> Option<&VncObject> {
        match self.applied.get(key).map(|a| &a.item) {
            Some(Item::Object(o)) => Some(o),
            _ => None,
        }
    }

    /// Loads kube-manager's objects from the database (a restart rebuilds from them).
    ///
    /// # Errors
    /// The first failed list.
    pub async fn seed<A: VncApi>(&mut self, api: &A) -> Result<usize, ApiError> {
        let mut n = 0;
        for t in OWNED_TYPES {
            for mut obj in api.list(t).await? {
                if !owned_by(&obj, &self.cluster) {
                    continue;
                }
                obj.back_refs.clear();
                obj.children.clear();
                let key = (obj.type_name.clone(), obj.fq_name.clone());
                if let Some(a) = address_of(&obj) {
                    self.addresses.insert(key.clone(), a);
                }
                self.applied.insert(
                    key.clone(),
                    Applied {
                        uuid: obj.uuid.clone(),
                        to_uuid: String::new(),
                        item: Item::Object(obj),
                        managed: None,
                        adopted: false,
                        foreign: false,
                    },
                );
                // Compared (and deleted when no unit wants it) on the first pass.
                self.dirty.insert(key);
                n += 1;
            }
        }
        Ok(n)
    }

    /// Whether writes are waiting (dirty items or retries).
    pub fn pending(&self) -> bool {
        !self.dirty.is_empty() || !self.retry.is_empty()
    }

    /// When the next retry is due.
    pub fn next_retry(&self) -> Option<Instant> {
        self.retry.values().map(|r| r.at).min()
    }

    /// Number of objects kube-manager owns in the database.
    pub fn owned_objects(&self) -> usize {
        self.applied
            .iter()
            .filter(|(k, a)| !a.foreign && !k.0.contains(':'))
            .count()
    }

    /// Writes that failed for good or keep failing.
    pub fn errors(&self) -> Vec<WriteError> {
        let mut out: Vec<WriteError> = self
            .errors
            .iter()
            .map(|(k, e)| WriteError {
                key: k.clone(),
                owners: self
                    .desired
                    .get(k)
                    .map(|d| d.owners.clone())
                    .unwrap_or_default(),
                error: e.clone(),
            })
            .collect();
        out.sort_by(|a, b| a.key.cmp(&b.key));
        out
    }

    fn fail(&mut self, key: Key, error: ApiError, deleting: bool) {
        // A missing parent (400 "... does not exist") is an ordering matter between watch
        // streams: retried like a missing reference target (404).
        let missing = error.status == Some(400) && error.message.contains("does not exist");
        let permanent =
            !error.is_transient() && !error.is_not_found() && !error.is_conflict() && !missing;
        let attempts = self.retry.get(&key).map_or(0, |r| r.attempts) + 1;
        if permanent || attempts > MAX_ATTEMPTS {
            self.retry.remove(&key);
            if deleting {
                // Someone else still refers to it: forget it rather than retry forever.
                self.applied.remove(&key);
            }
            self.errors.insert(key, error);
            return;
        }
        if attempts >= 3 {
            self.errors.insert(key.clone(), error);
        }
        let delay = Duration::from_millis(20u64 << attempts.min(7)).min(Duration::from_secs(2));
        self.retry.insert(
            key,
            Retry {
                attempts,
                at: Instant::now() + delay,
            },
        );
    }

    /// Writes what changed; returns what it did.
    pub async fn apply<A: VncApi>(&mut self, api: &A) -> ApplyReport {
        let now = Instant::now();
        let mut keys: HashSet<Key> = self.dirty.drain().collect();
        keys.extend(
            self.retry
                .iter()
                .filter(|(_, r)| r.at <= now)
                .map(|(k, _)| k.clone()),
        );
        let mut upserts: Vec<(u32, Key)> = Vec::new();
        let mut deletes: Vec<(u32, Key)> = Vec::new();
        for k in keys {
            if let Some(d) = self.desired.get(&k) {
                upserts.push((d.item.rank(), k));
            } else if self.applied.contains_key(&k) {
                deletes.push((rank_of_key(&k), k));
            } else {
                self.retry.remove(&k);
            }
        }
        upserts.sort();
        deletes.sort_by(|a, b| b.cmp(a));
        let mut report = ApplyReport::default();
        for (i, (_, k)) in upserts.into_iter().enumerate() {
            if i % 128 == 127 {
                tokio::task::yield_now().await;
            }
            let Some(item) = self.desired.get(&k).map(|d| d.item.clone()) else {
                continue;
            };
            match self.upsert(api, &k, &item, &mut report).await {
                Ok(()) => {
                    self.retry.remove(&k);
                    self.errors.remove(&k);
                }
                Err(e) => self.fail(k, e, false),
            }
        }
        for (i, (_, k)) in deletes.into_iter().enumerate() {
            if i % 128 == 127 {
                tokio::task::yield_now().await;
            }
            match self.remove(api, &k, &mut report).await {
                Ok(()) => {
                    self.retry.remove(&k);
                    self.errors.remove(&k);
                }
                Err(e) => self.fail(k, e, true),
            }
        }
        self.writes += report.writes as u64;
        if report.writes > 0 {
            // Something new exists: what gave up for lack of a parent or a reference target
            // (a custom network the runner creates later, ...) gets one more try.
            let waiting: Vec<Key> = self
                .errors
                .iter()
                .filter(|(k, e)| {
                    (e.is_not_found() || e.message.contains("does not exist"))
                        && self.desired.contains_key(*k)
                        && !self.retry.contains_key(*k)
                })
                .map(|(k, _)| k.clone())
                .collect();
            for k in waiting {
                self.retry.insert(
                    k,
                    Retry {
                        attempts: MAX_ATTEMPTS,
                        at: Instant::now() + Duration::from_millis(50),
                    },
                );
            }
        }
        report
    }

    async fn resolve<A: VncApi>(
        &mut self,
        api: &A,
        type_name: &str,
        fq: &[String],
    ) -> Result<String, ApiError> {
        let key = (type_name.to_owned(), fq.to_vec());
        if let Some(a) = self.applied.get(&key) {
            return Ok(a.uuid.clone());
        }
        if let Some(u) = self.uuid_cache.get(&key) {
            return Ok(u.clone());
        }
        match api.read_by_fq_name(type_name, fq).await? {
            Some(o) => {
                self.uuid_cache.insert(key, o.uuid.clone());
                Ok(o.uuid)
            }
            None => Err(ApiError {
                status: Some(404),
                message: format!("{type_name} {} not found", fq.join(":")),
            }),
        }
    }

    async fn upsert<A: VncApi>(
        &mut self,
        api: &A,
        key: &Key,
        item: &Item,
        report: &mut ApplyReport,
    ) -> Result<(), ApiError> {
        match item {
            Item::Object(obj) => self.upsert_object(api, key, obj, report).await,
            Item::Props(obj) => {
                if let Some(a) = self.applied.get(key)
                    && let Item::Props(prev) = &a.item
                    && object_covered(obj, prev)
                {
                    return Ok(());
                }
                if !self.applied.contains_key(key)
                    && let Some(existing) =
                        api.read_by_fq_name(&obj.type_name, &obj.fq_name).await?
                    && object_covered(obj, &existing)
                {
                    self.applied.insert(
                        key.clone(),
                        Applied {
                            uuid: existing.uuid.clone(),
                            to_uuid: String::new(),
                            item: item.clone(),
                            managed: None,
                            adopted: true,
                            foreign: false,
                        },
                    );
                    return Ok(());
                }
                let uuid = self.resolve(api, &obj.type_name, &obj.fq_name).await?;
                let mut body = VncObject {
                    type_name: obj.type_name.clone(),
                    uuid: uuid.clone(),
                    ..VncObject::default()
                };
                body.fields = obj.fields.clone();
                body.refs = obj.refs.clone();
                match api.update(&body).await {
                    Ok(()) => {}
                    Err(e) if e.is_not_found() => {
                        self.uuid_cache
                            .remove(&(obj.type_name.clone(), obj.fq_name.clone()));
                        return Err(e);
                    }
                    Err(e) => return Err(e),
                }
                report.writes += 1;
                self.applied.insert(
                    key.clone(),
                    Applied {
                        uuid,
                        to_uuid: String::new(),
                        item: item.clone(),
                        managed: None,
                        adopted: true,
                        foreign: false,
                    },
                );
                Ok(())
            }
            Item::Link(l) => {
                if let Some(a) = self.applied.get(key)
                    && a.item == *item
                {
                    return Ok(());
                }
                let from = self.resolve(api, &l.from_type, &l.from_fq).await?;
                let to = self.resolve(api, &l.to_type, &l.to_fq).await?;
                // After a restart the link may already be there: look before writing.
                let to_key: Key = (l.to_type.clone(), l.to_fq.clone());
                let found_at_start = self
                    .applied
                    .get(&to_key)
                    .is_none_or(|a| a.managed.is_none());
                if !self.applied.contains_key(key) && found_at_start {
                    let field = format!("{}_refs", object_type(&l.to_type));
                    let present = api
                        .read(&l.from_type, &from)
                        .await?
                        .refs_of(&field)
                        .iter()
                        .any(|r| {
                            r.uuid == to
                                && match &l.attr {
                                    None => true,
                                    Some(a) => r.attr.as_ref().is_some_and(|b| covers(a, b)),
                                }
                        });
                    if present {
                        self.applied.insert(
                            key.clone(),
                            Applied {
                                uuid: from,
                                to_uuid: to,
                                item: item.clone(),
                                managed: None,
                                adopted: false,
                                foreign: false,
                            },
                        );
                        return Ok(());
                    }
                }
                let req = RefUpdate {
                    type_name: l.from_type.clone(),
                    uuid: from.clone(),
                    ref_type: l.to_type.clone(),
                    ref_uuid: Some(to.clone()),
                    ref_fq_name: None,
                    operation: RefOperation::Add,
                    attr: l.attr.clone(),
                };
                if let Err(e) = api.ref_update(&req).await {
                    if e.is_not_found() {
                        self.uuid_cache
                            .remove(&(l.from_type.clone(), l.from_fq.clone()));
                        self.uuid_cache
                            .remove(&(l.to_type.clone(), l.to_fq.clone()));
                    }
                    return Err(e);
                }
                report.writes += 1;
                self.applied.insert(
                    key.clone(),
                    Applied {
                        uuid: from,
                        to_uuid: to,
                        item: item.clone(),
                        managed: None,
                        adopted: false,
                        foreign: false,
                    },
                );
                Ok(())
            }
        }
    }

    async fn upsert_object<A: VncApi>(
        &mut self,
        api: &A,
        key: &Key,
        obj: &VncObject,
        report: &mut ApplyReport,
    ) -> Result<(), ApiError> {
        for _ in 0..3 {
            if let Some(a) = self.applied.get(key) {
                if a.foreign {
                    return Ok(());
                }
                let Item::Object(have) = &a.item else {
                    self.applied.remove(key);
                    continue;
                };
                if object_covered(obj, have) {
                    return Ok(());
                }
                let uuid = a.uuid.clone();
                let mut body = VncObject {
                    type_name: obj.type_name.clone(),
                    uuid: uuid.clone(),
                    ..VncObject::default()
                };
                for (k, v) in &obj.fields {
                    if have.fields.get(k).is_none_or(|h| !covers(v, h)) {
                        body.fields.insert(k.clone(), v.clone());
                    }
                }
                for (k, v) in &obj.refs {
                    if !refs_cover(v, have.refs_of(k)) {
                        body.refs.insert(k.clone(), v.clone());
                    }
                }
                for m in a.managed.iter().flatten() {
                    if obj.fields.contains_key(m) || obj.refs.contains_key(m) {
                        continue;
                    }
                    if m.ends_with("_refs") {
                        body.refs.insert(m.clone(), Vec::new());
                    } else {
                        body.fields.insert(m.clone(), Value::Null);
                    }
                }
                match api.update(&body).await {
                    Ok(()) => {
                        report.writes += 1;
                        if let Some(a) = self.applied.get_mut(key) {
                            a.item = Item::Object(obj.clone());
                            a.managed = Some(managed_names(obj));
                        }
                        return Ok(());
                    }
                    Err(e) if e.is_not_found() => {
                        // Deleted behind our back? Then create it again.
                        match api.read(&obj.type_name, &uuid).await {
                            Err(r) if r.is_not_found() => {
                                self.applied.remove(key);
                                self.addresses.remove(key);
                                continue;
                            }
                            _ => return Err(e),
                        }
                    }
                    Err(e) => return Err(e),
                }
            }
            match api.create(obj).await {
                Ok(stored) => {
                    report.writes += 1;
                    if let Some(addr) = address_of(&stored) {
                        self.addresses.insert(key.clone(), addr.clone());
                        report.addresses.push((key.clone(), addr));
                    }
                    self.applied.insert(
                        key.clone(),
                        Applied {
                            uuid: stored.uuid,
                            to_uuid: String::new(),
                            item: Item::Object(obj.clone()),
                            managed: Some(managed_names(obj)),
                            adopted: false,
                            foreign: false,
                        },
                    );
                    return Ok(());
                }
                Err(e) if e.is_conflict() => {
                    let Some(mut existing) =
                        api.read_by_fq_name(&obj.type_name, &obj.fq_name).await?
                    else {
                        return Err(e);
                    };
                    existing.back_refs.clear();
                    existing.children.clear();
                    let ours = owned_by(&existing, &self.cluster);
                    let foreign = obj.type_name == "virtual-router" && !ours;
                    if foreign {
                        report.foreign.push(key.clone());
                    }
                    if let Some(addr) = address_of(&existing) {
                        self.addresses.insert(key.clone(), addr.clone());
                        report.addresses.push((key.clone(), addr));
                    }
                    self.applied.insert(
                        key.clone(),
                        Applied {
                            uuid: existing.uuid.clone(),
                            to_uuid: String::new(),
                            item: Item::Object(existing),
                            managed: None,
                            adopted: !ours,
                            foreign,
                        },
                    );
                    // Next round: an update.
                }
                Err(e) => return Err(e),
            }
        }
        Err(ApiError {
            status: None,
            message: format!(
                "{} {}: gave up after repeated conflicts",
                obj.type_name,
                obj.fq_name.join(":")
            ),
        })
    }

    async fn remove<A: VncApi>(
        &mut self,
        api: &A,
        key: &Key,
        report: &mut ApplyReport,
    ) -> Result<(), ApiError> {
        let Some(a) = self.applied.get(key) else {
            return Ok(());
        };
        if a.foreign {
            // Remembered, so units know the object is someone else's.
            return Ok(());
        }
        if a.adopted {
            self.applied.remove(key);
            return Ok(());
        }
        let uuid = a.uuid.clone();
        let to_uuid = a.to_uuid.clone();
        match a.item.clone() {
            Item::Props(_) => {}
            Item::Link(l) => {
                let req = RefUpdate {
                    type_name: l.from_type.clone(),
                    uuid,
                    ref_type: l.to_type.clone(),
                    ref_uuid: Some(to_uuid),
                    ref_fq_name: None,
                    operation: RefOperation::Delete,
                    attr: None,
                };
                match api.ref_update(&req).await {
                    Ok(()) => report.writes += 1,
                    Err(e) if e.is_not_found() => {}
                    Err(e) => return Err(e),
                }
            }
            Item::Object(obj) => match api.delete(&obj.type_name, &uuid).await {
                Ok(()) => report.writes += 1,
                Err(e) if e.is_not_found() => {}
                Err(e) if e.is_conflict() && obj.type_name == "virtual-machine" => {
                    // A virtual router still links the VM: unlink, then delete.
                    let vm = api.read("virtual-machine", &uuid).await?;
                    for r in vm.back_refs_of("virtual_router_back_refs") {
                        let req = RefUpdate {
                            type_name: "virtual-router".into(),
                            uuid: r.uuid.clone(),
                            ref_type: "virtual-machine".into(),
                            ref_uuid: Some(uuid.clone()),
                            ref_fq_name: None,
                            operation: RefOperation::Delete,
                            attr: None,
                        };
                        let _ = api.ref_update(&req).await;
                    }
                    api.delete("virtual-machine", &uuid).await?;
                    report.writes += 1;
                }
                Err(e) => return Err(e),
            },
        }
        self.applied.remove(key);
        self.addresses.remove(key);
        Ok(())
    }
}

fn managed_names(obj: &VncObject) -> BTreeSet<String> {
    obj.fields.keys().chain(obj.refs.keys()).cloned().collect()
}

/// The `annotations` property (`KeyValuePairs`) from pairs.
pub(crate) fn annotations(pairs: &[(&str, &str)]) -> Value {
    let list: Vec<Value> = pairs
        .iter()
        .map(|(k, v)| serde_json::json!({"key": k, "value": v}))
        .collect();
    let mut m = Map::new();
    m.insert("key_value_pair".into(), Value::Array(list));
    Value::Object(m)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn covers_ignores_server_filled_fields() {
        assert!(covers(
            &json!({"protocol": "tcp", "dst_ports": {"start_port": 80, "end_port": 80}}),
            &json!({"protocol": "tcp", "protocol_id": 6, "dst_ports": {"start_port": "80", "end_port": 80}})
        ));
        assert!(!covers(&json!({"a": [1, 2]}), &json!({"a": [1]})));
        assert!(!covers(&json!({"a": 1}), &json!({})));
    }

    #[test]
    fn ranks_put_dependencies_first() {
        let vn = Item::Object(VncObject::new(
            "virtual-network",
            vec!["d".into(), "p".into(), "n".into()],
        ));
        let vmi = Item::Object(VncObject::new(
            "virtual-machine-interface",
            vec!["d".into(), "p".into(), "i".into()],
        ));
        assert!(vn.rank() < vmi.rank());
        let link = Item::Link(Link {
            from_type: "virtual-router".into(),
            from_fq: vec!["g".into(), "n".into()],
            to_type: "virtual-machine".into(),
            to_fq: vec!["vm".into()],
            attr: None,
        });
        assert_eq!(rank_of_key(&link.key()), link.rank());
        // After both ends on create, before the VM on delete.
        assert!(link.rank() > type_rank("virtual-machine"));
        assert!(link.rank() > type_rank("virtual-router"));
    }
}
