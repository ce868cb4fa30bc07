//! The Kubernetes side: one kube-rs watcher per kind feeding a channel, and the cache of
//! the objects the reconciler reads.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Debug;

use futures_util::StreamExt;
use k8s_openapi::api::core::v1::{Namespace, Node, Pod, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::networking::v1::{Ingress, NetworkPolicy};
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, Role, RoleBinding};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Api, ApiResource, DynamicObject};
use kube::core::GroupVersionKind;
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher::{self, Event};
use kube::{Client, Resource};
use serde::de::DeserializeOwned;
use tokio::sync::mpsc;
use tokio::task::JoinSet;

/// A kind kube-manager watches.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) enum Kind {
    Namespace,
    Pod,
    Service,
    EndpointSlice,
    Ingress,
    NetworkPolicy,
    Role,
    ClusterRole,
    RoleBinding,
    ClusterRoleBinding,
    NetworkAttachmentDefinition,
    Node,
}

impl Kind {
    pub const ALL: [Kind; 12] = [
        Kind::Namespace,
        Kind::Pod,
        Kind::Service,
        Kind::EndpointSlice,
        Kind::Ingress,
        Kind::NetworkPolicy,
        Kind::Role,
        Kind::ClusterRole,
        Kind::RoleBinding,
        Kind::ClusterRoleBinding,
        Kind::NetworkAttachmentDefinition,
        Kind::Node,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Namespace => "Namespace",
            Kind::Pod => "Pod",
            Kind::Service => "Service",
            Kind::EndpointSlice => "EndpointSlice",
            Kind::Ingress => "Ingress",
            Kind::NetworkPolicy => "NetworkPolicy",
            Kind::Role => "Role",
            Kind::ClusterRole => "ClusterRole",
            Kind::RoleBinding => "RoleBinding",
            Kind::ClusterRoleBinding => "ClusterRoleBinding",
            Kind::NetworkAttachmentDefinition => "NetworkAttachmentDefinition",
            Kind::Node => "Node",
        }
    }
}

/// A watched object.
#[derive(Clone, Debug)]
pub(crate) enum KObj {
    Namespace(Box<Namespace>),
    Pod(Box<Pod>),
    Service(Box<Service>),
    EndpointSlice(Box<EndpointSlice>),
    Ingress(Box<Ingress>),
    NetworkPolicy(Box<NetworkPolicy>),
    Role(Box<Role>),
    ClusterRole(Box<ClusterRole>),
    RoleBinding(Box<RoleBinding>),
    ClusterRoleBinding(Box<ClusterRoleBinding>),
    Nad(Box<DynamicObject>),
    Node(Box<Node>),
}

impl KObj {
    pub fn kind(&self) -> Kind {
        match self {
            KObj::Namespace(_) => Kind::Namespace,
            KObj::Pod(_) => Kind::Pod,
            KObj::Service(_) => Kind::Service,
            KObj::EndpointSlice(_) => Kind::EndpointSlice,
            KObj::Ingress(_) => Kind::Ingress,
            KObj::NetworkPolicy(_) => Kind::NetworkPolicy,
            KObj::Role(_) => Kind::Role,
            KObj::ClusterRole(_) => Kind::ClusterRole,
            KObj::RoleBinding(_) => Kind::RoleBinding,
            KObj::ClusterRoleBinding(_) => Kind::ClusterRoleBinding,
            KObj::Nad(_) => Kind::NetworkAttachmentDefinition,
            KObj::Node(_) => Kind::Node,
        }
    }

    pub fn meta(&self) -> &ObjectMeta {
        match self {
            KObj::Namespace(o) => &o.metadata,
            KObj::Pod(o) => &o.metadata,
            KObj::Service(o) => &o.metadata,
            KObj::EndpointSlice(o) => &o.metadata,
            KObj::Ingress(o) => &o.metadata,
            KObj::NetworkPolicy(o) => &o.metadata,
            KObj::Role(o) => &o.metadata,
            KObj::ClusterRole(o) => &o.metadata,
            KObj::RoleBinding(o) => &o.metadata,
            KObj::ClusterRoleBinding(o) => &o.metadata,
            KObj::Nad(o) => &o.metadata,
            KObj::Node(o) => &o.metadata,
        }
    }

    /// `(namespace, name)`; the namespace is empty for cluster-scoped kinds.
    pub fn key(&self) -> (String, String) {
        let m = self.meta();
        (
            m.namespace.clone().unwrap_or_default(),
            m.name.clone().unwrap_or_default(),
        )
    }

    /// `metadata.resourceVersion` as a number (kube-sim and etcd use integers).
    pub fn resource_version(&self) -> Option<u64> {
        self.meta()
            .resource_version
            .as_deref()
            .and_then(|v| v.parse().ok())
    }
}

/// What a watcher reports.
#[derive(Debug)]
pub(crate) enum KEvent {
    Apply(KObj),
    Delete(KObj),
    /// A (re)list starts; `InitApply` events follow until `InitDone`.
    Init(Kind),
    InitApply(KObj),
    InitDone(Kind),
    /// The watcher failed (it retries with backoff). `missing_type`: the API does not serve
    /// the kind (e.g. no NetworkAttachmentDefinition CRD).
    Failed {
        kind: Kind,
        message: String,
        missing_type: bool,
    },
}

fn spawn_one<K>(
    set: &mut JoinSet<()>,
    api: Api<K>,
    kind: Kind,
    wrap: fn(K) -> KObj,
    tx: mpsc::UnboundedSender<KEvent>,
) where
    K: Resource + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
{
    set.spawn(async move {
        let stream = watcher::watcher(api, watcher::Config::default()).default_backoff();
        let mut stream = std::pin::pin!(stream);
        while let Some(ev) = stream.next().await {
            let msg = match ev {
                Ok(Event::Apply(o)) => KEvent::Apply(wrap(o)),
                Ok(Event::Delete(o)) => KEvent::Delete(wrap(o)),
                Ok(Event::Init) => KEvent::Init(kind),
                Ok(Event::InitApply(o)) => KEvent::InitApply(wrap(o)),
                Ok(Event::InitDone) => KEvent::InitDone(kind),
                Err(e) => {
                    let missing_type = matches!(
                        &e,
                        watcher::Error::InitialListFailed(kube::Error::Api(s)) if s.code == 404
                    );
                    KEvent::Failed {
                        kind,
                        message: e.to_string(),
                        missing_type,
                    }
                }
            };
            if tx.send(msg).is_err() {
                break;
            }
        }
    });
}

/// Starts one watcher per kind.
pub(crate) fn spawn_watchers(
    client: &Client,
    tx: &mpsc::UnboundedSender<KEvent>,
    set: &mut JoinSet<()>,
) {
    let c = client.clone();
    spawn_one(
        set,
        Api::<Namespace>::all(c.clone()),
        Kind::Namespace,
        |o| KObj::Namespace(Box::new(o)),
        tx.clone(),
    );
    spawn_one(
        set,
        Api::<Pod>::all(c.clone()),
        Kind::Pod,
        |o| KObj::Pod(Box::new(o)),
        tx.clone(),
    );
    spawn_one(
        set,
        Api::<Service>::all(c.clone()),
        Kind::Service,
        |o| KObj::Service(Box::new(o)),
        tx.clone(),
    );
    spawn_one(
        set,
        Api::<EndpointSlice>::all(c.clone()),
        Kind::EndpointSlice,
        |o| KObj::EndpointSlice(Box::new(o)),
        tx.clone(),
    );
    spawn_one(
        set,
        Api::<Ingress>::all(c.clone()),
        Kind::Ingress,
        |o| KObj::Ingress(Box::new(o)),
        tx.clone(),
    );
    spawn_one(
        set,
        Api::<NetworkPolicy>::all(c.clone()),
        Kind::NetworkPolicy,
        |o| KObj::NetworkPolicy(Box::new(o)),
        tx.clone(),
    );
    spawn_one(
        set,
        Api::<Role>::all(c.clone()),
        Kind::Role,
        |o| KObj::Role(Box::new(o)),
        tx.clone(),
    );
    spawn_one(
        set,
        Api::<ClusterRole>::all(c.clone()),
        Kind::ClusterRole,
        |o| KObj::ClusterRole(Box::new(o)),
        tx.clone(),
    );
    spawn_one(
        set,
        Api::<RoleBinding>::all(c.clone()),
        Kind::RoleBinding,
        |o| KObj::RoleBinding(Box::new(o)),
        tx.clone(),
    );
    spawn_one(
        set,
        Api::<ClusterRoleBinding>::all(c.clone()),
        Kind::ClusterRoleBinding,
        |o| KObj::ClusterRoleBinding(Box::new(o)),
        tx.clone(),
    );
    spawn_one(
        set,
        Api::<Node>::all(c.clone()),
        Kind::Node,
        |o| KObj::Node(Box::new(o)),
        tx.clone(),
    );
    let gvk = GroupVersionKind::gvk("k8s.cni.cncf.io", "v1", "NetworkAttachmentDefinition");
    let ar = ApiResource::from_gvk_with_plural(&gvk, "network-attachment-definitions");
    spawn_one(
        set,
        Api::<DynamicObject>::all_with(c, &ar),
        Kind::NetworkAttachmentDefinition,
        |o| KObj::Nad(Box::new(o)),
        tx.clone(),
    );
}

/// Objects keyed by `(namespace, name)`.
pub(crate) type Map<T> = BTreeMap<(String, String), T>;

/// The cache of watched objects.
#[derive(Default, Debug)]
pub(crate) struct Cache {
    pub namespaces: BTreeMap<String, Namespace>,
    pub pods: Map<Pod>,
    pub services: Map<Service>,
    pub slices: Map<EndpointSlice>,
    pub ingresses: Map<Ingress>,
    pub netpols: Map<NetworkPolicy>,
    pub roles: Map<Role>,
    pub cluster_roles: BTreeMap<String, ClusterRole>,
    pub role_bindings: Map<RoleBinding>,
    pub cluster_role_bindings: BTreeMap<String, ClusterRoleBinding>,
    pub nads: Map<DynamicObject>,
    pub nodes: BTreeMap<String, Node>,
    /// Kinds whose initial list has completed (or that the API does not serve).
    pub synced: BTreeSet<Kind>,
    /// Last resourceVersion seen per kind.
    pub resource_versions: BTreeMap<Kind, u64>,
}

impl Cache {
    /// Stores `obj`; returns the previous version.
    pub fn put(&mut self, obj: KObj) -> Option<KObj> {
        let (ns, name) = obj.key();
        match obj {
            KObj::Namespace(o) => self
                .namespaces
                .insert(name, *o)
                .map(|p| KObj::Namespace(Box::new(p))),
            KObj::Pod(o) => self
                .pods
                .insert((ns, name), *o)
                .map(|p| KObj::Pod(Box::new(p))),
            KObj::Service(o) => self
                .services
                .insert((ns, name), *o)
                .map(|p| KObj::Service(Box::new(p))),
            KObj::EndpointSlice(o) => self
                .slices
                .insert((ns, name), *o)
                .map(|p| KObj::EndpointSlice(Box::new(p))),
            KObj::Ingress(o) => self
                .ingresses
                .insert((ns, name), *o)
                .map(|p| KObj::Ingress(Box::new(p))),
            KObj::NetworkPolicy(o) => self
                .netpols
                .insert((ns, name), *o)
                .map(|p| KObj::NetworkPolicy(Box::new(p))),
            KObj::Role(o) => self
                .roles
                .insert((ns, name), *o)
                .map(|p| KObj::Role(Box::new(p))),
            KObj::ClusterRole(o) => self
                .cluster_roles
                .insert(name, *o)
                .map(|p| KObj::ClusterRole(Box::new(p))),
            KObj::RoleBinding(o) => self
                .role_bindings
                .insert((ns, name), *o)
                .map(|p| KObj::RoleBinding(Box::new(p))),
            KObj::ClusterRoleBinding(o) => self
                .cluster_role_bindings
                .insert(name, *o)
                .map(|p| KObj::ClusterRoleBinding(Box::new(p))),
            KObj::Nad(o) => self
                .nads
                .insert((ns, name), *o)
                .map(|p| KObj::Nad(Box::new(p))),
            KObj::Node(o) => self.nodes.insert(name, *o).map(|p| KObj::Node(Box::new(p))),
        }
    }

    /// Removes the object `kind` `(ns, name)`; returns it.
    pub fn remove(&mut self, kind: Kind, ns: &str, name: &str) -> Option<KObj> {
        let k = (ns.to_owned(), name.to_owned());
        match kind {
            Kind::Namespace => self
                .namespaces
                .remove(name)
                .map(|p| KObj::Namespace(Box::new(p))),
            Kind::Pod => self.pods.remove(&k).map(|p| KObj::Pod(Box::new(p))),
            Kind::Service => self.services.remove(&k).map(|p| KObj::Service(Box::new(p))),
            Kind::EndpointSlice => self
                .slices
                .remove(&k)
                .map(|p| KObj::EndpointSlice(Box::new(p))),
            Kind::Ingress => self
                .ingresses
                .remove(&k)
                .map(|p| KObj::Ingress(Box::new(p))),
            Kind::NetworkPolicy => self
                .netpols
                .remove(&k)
                .map(|p| KObj::NetworkPolicy(Box::new(p))),
            Kind::Role => self.roles.remove(&k).map(|p| KObj::Role(Box::new(p))),
            Kind::ClusterRole => self
                .cluster_roles
                .remove(name)
                .map(|p| KObj::ClusterRole(Box::new(p))),
            Kind::RoleBinding => self
                .role_bindings
                .remove(&k)
                .map(|p| KObj::RoleBinding(Box::new(p))),
            Kind::ClusterRoleBinding => self
                .cluster_role_bindings
                .remove(name)
                .map(|p| KObj::ClusterRoleBinding(Box::new(p))),
            Kind::NetworkAttachmentDefinition => {
                self.nads.remove(&k).map(|p| KObj::Nad(Box::new(p)))
            }
            Kind::Node => self.nodes.remove(name).map(|p| KObj::Node(Box::new(p))),
        }
    }

    /// Keys of every cached object of `kind`.
    pub fn keys(&self, kind: Kind) -> Vec<(String, String)> {
        fn k<T>(m: &Map<T>) -> Vec<(String, String)> {
            m.keys().cloned().collect()
        }
        fn c<T>(m: &BTreeMap<String, T>) -> Vec<(String, String)> {
            m.keys().map(|n| (String::new(), n.clone())).collect()
        }
        match kind {
            Kind::Namespace => c(&self.namespaces),
            Kind::Pod => k(&self.pods),
            Kind::Service => k(&self.services),
            Kind::EndpointSlice => k(&self.slices),
            Kind::Ingress => k(&self.ingresses),
            Kind::NetworkPolicy => k(&self.netpols),
            Kind::Role => k(&self.roles),
            Kind::ClusterRole => c(&self.cluster_roles),
            Kind::RoleBinding => k(&self.role_bindings),
            Kind::ClusterRoleBinding => c(&self.cluster_role_bindings),
            Kind::NetworkAttachmentDefinition => k(&self.nads),
            Kind::Node => c(&self.nodes),
        }
    }

    /// Labels of a namespace.
    pub fn namespace_labels(&self, ns: &str) -> BTreeMap<String, String> {
        self.namespaces
            .get(ns)
            .and_then(|n| n.metadata.labels.clone())
            .unwrap_or_default()
    }

    /// An annotation of a namespace.
    pub fn namespace_annotation(&self, ns: &str, key: &str) -> Option<String> {
        self.namespaces
            .get(ns)
            .and_then(|n| n.metadata.annotations.as_ref())
            .and_then(|a| a.get(key))
            .cloned()
    }

    /// Keys of the pods of a namespace.
    pub fn pods_in(&self, ns: &str) -> Vec<(String, String)> {
        self.pods
            .range((ns.to_owned(), String::new())..)
            .take_while(|((n, _), _)| n == ns)
            .map(|(k, _)| k.clone())
            .collect()
    }

    /// Keys of the objects of a namespaced map in a namespace.
    pub fn in_ns<T>(map: &Map<T>, ns: &str) -> Vec<(String, String)> {
        map.range((ns.to_owned(), String::new())..)
            .take_while(|((n, _), _)| n == ns)
            .map(|(k, _)| k.clone())
            .collect()
    }
}
