//! The cluster as the oracle sees it: namespaces, pods, services, ingresses, NetworkPolicies,
//! RBAC objects, nodes, fabric hosts and external clients, with every address either observed
//! (`status.podIP`, `spec.clusterIP`, …) or planned deterministically from the Contrail subnets.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;
use std::net::Ipv4Addr;
use std::ops::Range;
use std::sync::Arc;

use harness_scenario::port::did_you_mean;
use harness_scenario::{
    ClusterSpec, ContrailSettings, FabricHost, NamePattern, NetworkRef, ObjectName, Peer, PortRef,
    PortSpec, Protocol, ServiceChain,
};
use ipnet::Ipv4Net;
use k8s_openapi::api::core::v1 as core;
use k8s_openapi::api::networking::v1 as net;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use serde_json::Value;

use crate::network::NetworkId;
use crate::policy::NetworkPolicyDef;
use crate::rbac::{Rbac, RbacObjects};
use crate::selector::Labels;

/// Errors building a [`Cluster`] or resolving a peer; each says what to change.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum ModelError {
    /// A manifest is not a Kubernetes object.
    #[error("resource #{index}: {message}")]
    BadManifest {
        /// Position of the manifest in the list given.
        index: usize,
        /// What is wrong and what to write instead.
        message: String,
    },
    /// A Kubernetes object the oracle needs could not be read.
    #[error("{kind} {name}: {message}")]
    BadObject {
        /// `Pod`, `Service`, `NetworkPolicy`, …
        kind: String,
        /// `namespace/name`, or the name of a cluster-scoped object.
        name: String,
        /// What is wrong and what to change.
        message: String,
    },
    /// A peer names something the cluster does not have.
    #[error("unknown {what} `{name}`{hint}; {known}")]
    Unknown {
        /// `pod`, `service`, `fabric host`, …
        what: &'static str,
        /// The name as written.
        name: String,
        /// ` (did you mean `x`?)`, or empty.
        hint: String,
        /// What exists instead.
        known: String,
    },
    /// A peer names something that exists but cannot be probed that way.
    #[error("{peer}: {message}")]
    NotProbeable {
        /// The peer as written.
        peer: String,
        /// Why, and what to do instead.
        message: String,
    },
    /// A subnet ran out of addresses while planning.
    #[error("cannot plan an address for {what}: {subnets} exhausted; widen contrail.{field}")]
    AddressesExhausted {
        /// The object that needed an address.
        what: String,
        /// The subnets that ran out.
        subnets: String,
        /// The `contrail:` setting to widen.
        field: &'static str,
    },
    /// A service chain that cannot be placed.
    #[error("service chain `{chain}`: {message}")]
    BadServiceChain {
        /// Name of the chain.
        chain: String,
        /// What is wrong and what to change.
        message: String,
    },
}

/// A namespace, declared or implied by an object in it.
#[derive(Clone, Debug, PartialEq)]
pub struct Namespace {
    /// The namespace name.
    pub name: String,
    /// Labels, including the automatic `kubernetes.io/metadata.name`.
    pub labels: Labels,
    /// Declared by a Namespace manifest (as opposed to implied).
    pub declared: bool,
    /// `opencontrail.org/isolation: "true"`.
    pub isolated: bool,
    /// `opencontrail.org/network`: the fq name of a custom network for its pods.
    pub custom_network: Option<Vec<String>>,
    /// `opencontrail.org/ip_fabric_forwarding`.
    pub ip_fabric_forwarding: Option<bool>,
    /// `opencontrail.org/ip_fabric_snat`.
    pub ip_fabric_snat: Option<bool>,
}

/// A port a pod's container declares (the probe agent serves exactly these).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ContainerPort {
    /// `containerPort`.
    pub port: u16,
    /// `protocol` (TCP when absent).
    pub protocol: Protocol,
    /// The port name, for named ports.
    pub name: Option<String>,
}

/// A pod.
#[derive(Clone, Debug, PartialEq)]
pub struct Pod {
    /// Namespace of the pod.
    pub namespace: String,
    /// Name of the pod.
    pub name: String,
    /// Labels of the pod.
    pub labels: Labels,
    /// `spec.nodeName`, or a node planned round-robin over the pods sorted by namespace/name.
    pub node: String,
    /// Ports declared by its containers.
    pub ports: Vec<ContainerPort>,
    /// `status.podIP`, or a planned address.
    pub address: Ipv4Addr,
    /// The address was planned (no `status.podIP` given).
    pub address_planned: bool,
    /// The network its interface lives in.
    pub network: NetworkId,
    /// `spec.hostNetwork`: the pod uses its node's address; Contrail ignores it and no
    /// NetworkPolicy selects it.
    pub host_network: bool,
    /// Ready to serve as a Service backend (no `Ready=False` condition, not terminated).
    pub ready: bool,
    pub(crate) ns_index: usize,
    pub(crate) label: Arc<str>,
    /// r5.0 tags: pod labels, then the namespace's labels (overriding), then `namespace=<ns>`.
    pub(crate) tags: Labels,
}

impl Pod {
    /// `namespace/name`.
    pub fn id(&self) -> &str {
        &self.label
    }

    /// The number of the container port with this name and protocol.
    pub fn named_port(&self, name: &str, protocol: Protocol) -> Option<u16> {
        self.ports
            .iter()
            .find(|p| p.protocol == protocol && p.name.as_deref() == Some(name))
            .map(|p| p.port)
    }

    /// Whether a container declares this port.
    pub fn listens(&self, protocol: Protocol, port: u16) -> bool {
        self.ports
            .iter()
            .any(|p| p.protocol == protocol && p.port == port)
    }
}

/// `spec.type` of a Service.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ServiceType {
    /// A virtual IP inside the cluster.
    ClusterIp,
    /// A ClusterIP plus a port on every node.
    NodePort,
    /// A NodePort plus a floating IP from the public pool.
    LoadBalancer,
    /// A DNS alias: no VIP, nothing to probe.
    ExternalName,
}

/// A Service port's `targetPort`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum TargetPort {
    /// A port number.
    Number(u16),
    /// Resolved on each backend pod's container ports.
    Name(String),
}

impl fmt::Display for TargetPort {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TargetPort::Number(n) => write!(f, "{n}"),
            TargetPort::Name(n) => f.write_str(n),
        }
    }
}

/// One port of a Service.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ServicePort {
    /// The port name (for named service ports).
    pub name: Option<String>,
    /// `protocol` (TCP when absent).
    pub protocol: Protocol,
    /// `port`: what clients connect to on the VIP.
    pub port: u16,
    /// `targetPort`: the backend container port (defaults to `port`).
    pub target: TargetPort,
    /// Given or planned for NodePort and LoadBalancer services.
    pub node_port: Option<u16>,
}

/// A Service.
#[derive(Clone, Debug, PartialEq)]
pub struct Service {
    /// Namespace of the service.
    pub namespace: String,
    /// Name of the service.
    pub name: String,
    /// `spec.type`.
    pub kind: ServiceType,
    /// `None`: no selector (endpoints are managed by hand and unknown to the oracle).
    pub selector: Option<Labels>,
    /// `spec.ports`.
    pub ports: Vec<ServicePort>,
    /// `None` for headless (`clusterIP: None`) and ExternalName services.
    pub cluster_ip: Option<Ipv4Addr>,
    /// `spec.externalIPs`.
    pub external_ips: Vec<Ipv4Addr>,
    /// The LoadBalancer floating IP (status, `loadBalancerIP` or planned from the public pool),
    /// else the first external IP.
    pub public_address: Option<Ipv4Addr>,
    /// `externalTrafficPolicy: Local`: node ports reach only local backends, source kept.
    pub local_traffic_policy: bool,
    /// The service network its VIP lives in.
    pub network: NetworkId,
}

impl Service {
    /// `namespace/name`.
    pub fn id(&self) -> String {
        format!("{}/{}", self.namespace, self.name)
    }
}

/// A backend of an Ingress.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct IngressBackendRef {
    /// Name of the backend Service (in the Ingress's namespace).
    pub service: String,
    /// Its port, by number or name.
    pub port: PortRef,
}

/// An Ingress.
#[derive(Clone, Debug, PartialEq)]
pub struct Ingress {
    /// Namespace of the ingress.
    pub namespace: String,
    /// Name of the ingress.
    pub name: String,
    /// `kubernetes.io/ingress.class` or `spec.ingressClassName`.
    pub class: Option<String>,
    /// Contrail serves it (class absent or `opencontrail`).
    pub served: bool,
    /// `defaultBackend` first, then the rules' paths in order.
    pub backends: Vec<IngressBackendRef>,
    /// Has TLS (listens on 443 as well as 80).
    pub tls: bool,
    /// The haproxy VIP, a pod-network address.
    pub vip: Ipv4Addr,
    /// The floating IP from the public pool.
    pub fip: Ipv4Addr,
    /// The pod network of the VIP.
    pub network: NetworkId,
}

/// A compute node with a vrouter.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Node {
    /// `node-1` … `node-N`, or the name of a Node object.
    pub name: String,
    /// The vhost0 address on the ip-fabric.
    pub address: Ipv4Addr,
}

/// A client outside the cluster.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct External {
    /// Name from `cluster.external`.
    pub name: String,
    /// Its address (given, or planned from 198.51.100.0/24).
    pub address: Ipv4Addr,
}

/// A service chain placed in the cluster.
#[derive(Clone, Debug, PartialEq)]
pub struct Chain {
    /// Name of the service instance.
    pub name: String,
    /// One network of the chain.
    pub left: NetworkId,
    /// The other network of the chain.
    pub right: NetworkId,
    /// Index of the instance pod.
    pub(crate) instance: usize,
    /// Ports steered through the chain; all when empty.
    pub ports: Vec<PortSpec>,
    /// Ports the instance drops.
    pub drop: Vec<PortSpec>,
}

/// What a probe endpoint is.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum EndpointKind {
    /// A pod.
    Pod {
        /// Namespace of the pod.
        namespace: String,
        /// Name of the pod.
        name: String,
    },
    /// A Service's ClusterIP.
    Service {
        /// Namespace of the service.
        namespace: String,
        /// Name of the service.
        name: String,
    },
    /// A Service's node port on one node.
    NodePort {
        /// Namespace of the service.
        namespace: String,
        /// Name of the service.
        name: String,
        /// The node whose address is probed.
        node: String,
    },
    /// A Service's LoadBalancer floating IP or external IP.
    LoadBalancer {
        /// Namespace of the service.
        namespace: String,
        /// Name of the service.
        name: String,
    },
    /// An Ingress's floating IP.
    Ingress {
        /// Namespace of the ingress.
        namespace: String,
        /// Name of the ingress.
        name: String,
    },
    /// A fabric host without a vrouter.
    Host(String),
    /// A compute node's vhost address.
    Node(String),
    /// A client outside the cluster.
    External(String),
    /// The gateway address of a network (the vrouter answers ICMP and DNS on it).
    Gateway(NetworkId),
}

/// One concrete end of a probe, with its address. Built by [`Cluster::expand`]; valid for the
/// cluster that built it.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Endpoint {
    kind: EndpointKind,
    address: Ipv4Addr,
    index: usize,
}

impl Endpoint {
    /// What the endpoint is.
    pub fn kind(&self) -> &EndpointKind {
        &self.kind
    }

    /// The address a probe targets (or originates from).
    pub fn address(&self) -> Ipv4Addr {
        self.address
    }

    /// The stable display label: `x/a`, `svc:x/s`, `nodeport:x/s@node-1`, `lb:x/s`,
    /// `ingress:x/i`, `host:cloud-db`, `node:node-1`, `external:client`, `gateway:NETWORK`.
    pub fn label(&self) -> String {
        self.to_string()
    }

    /// Whether it is a pod.
    pub fn is_pod(&self) -> bool {
        matches!(self.kind, EndpointKind::Pod { .. })
    }

    pub(crate) fn index(&self) -> usize {
        self.index
    }
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.kind {
            EndpointKind::Pod { namespace, name } => write!(f, "{namespace}/{name}"),
            EndpointKind::Service { namespace, name } => write!(f, "svc:{namespace}/{name}"),
            EndpointKind::NodePort {
                namespace,
                name,
                node,
            } => write!(f, "nodeport:{namespace}/{name}@{node}"),
            EndpointKind::LoadBalancer { namespace, name } => write!(f, "lb:{namespace}/{name}"),
            EndpointKind::Ingress { namespace, name } => write!(f, "ingress:{namespace}/{name}"),
            EndpointKind::Host(h) => write!(f, "host:{h}"),
            EndpointKind::Node(n) => write!(f, "node:{n}"),
            EndpointKind::External(e) => write!(f, "external:{e}"),
            EndpointKind::Gateway(n) => write!(f, "gateway:{}", n.short_name()),
        }
    }
}

/// The cluster model the oracle evaluates.
#[derive(Clone, Debug)]
pub struct Cluster {
    settings: ContrailSettings,
    namespaces: Vec<Namespace>,
    ns_index: HashMap<String, usize>,
    ns_pods: Vec<Range<usize>>,
    pods: Vec<Pod>,
    pod_index: HashMap<String, usize>,
    label_index: HashMap<(String, String), Vec<usize>>,
    services: Vec<Service>,
    service_index: HashMap<String, usize>,
    ingresses: Vec<Ingress>,
    ingress_index: HashMap<String, usize>,
    policies: Vec<NetworkPolicyDef>,
    nodes: Vec<Node>,
    hosts: Vec<FabricHost>,
    external: Vec<External>,
    chains: Vec<Chain>,
    rbac: Rbac,
    ignored: Vec<String>,
}

const METADATA_NAME: &str = "kubernetes.io/metadata.name";
const ISOLATION: &str = "opencontrail.org/isolation";
const NETWORK: &str = "opencontrail.org/network";
const FORWARDING: &str = "opencontrail.org/ip_fabric_forwarding";
const SNAT: &str = "opencontrail.org/ip_fabric_snat";

/// A parsed object waiting for the cluster to be assembled; keyed so a later manifest of the
/// same object replaces an earlier one (as `kubectl apply` does) but keeps its position.
struct Collected<T> {
    items: Vec<T>,
    index: HashMap<String, usize>,
}

impl<T> Collected<T> {
    fn new() -> Self {
        Collected {
            items: Vec::new(),
            index: HashMap::new(),
        }
    }
    fn put(&mut self, key: String, item: T) {
        match self.index.get(&key) {
            Some(&i) => self.items[i] = item,
            None => {
                self.index.insert(key, self.items.len());
                self.items.push(item);
            }
        }
    }
}

fn object_id(v: &Value) -> (String, String, String, Option<String>) {
    let s = |p: &str| v.pointer(p).and_then(Value::as_str).map(str::to_string);
    (
        s("/kind").unwrap_or_default(),
        s("/apiVersion").unwrap_or_default(),
        s("/metadata/name").unwrap_or_default(),
        s("/metadata/namespace"),
    )
}

fn parse<T: serde::de::DeserializeOwned>(v: &Value, kind: &str, id: &str) -> Result<T, ModelError> {
    serde_json::from_value(v.clone()).map_err(|e| ModelError::BadObject {
        kind: kind.into(),
        name: id.into(),
        message: format!("not a valid {kind}: {e}"),
    })
}

fn bad(kind: &str, id: &str, message: impl Into<String>) -> ModelError {
    ModelError::BadObject {
        kind: kind.into(),
        name: id.into(),
        message: message.into(),
    }
}

fn parse_bool_annotation(
    v: Option<&String>,
    kind: &str,
    id: &str,
    key: &str,
) -> Result<Option<bool>, ModelError> {
    match v.map(|s| s.trim().to_ascii_lowercase()) {
        None => Ok(None),
        Some(s) if s == "true" => Ok(Some(true)),
        Some(s) if s == "false" => Ok(Some(false)),
        Some(s) => Err(bad(
            kind,
            id,
            format!("annotation {key}: `{s}` is not \"true\" or \"false\""),
        )),
    }
}

/// Parses `{'domain': 'default-domain', 'project': 'p', 'name': 'vn'}` (kube-manager's
/// Python-literal dict) or the same in JSON.
fn parse_network_annotation(s: &str, kind: &str, id: &str) -> Result<Vec<String>, ModelError> {
    let err = || {
        bad(
            kind,
            id,
            format!(
                "annotation {NETWORK}: `{s}` is not {{'domain': DOMAIN, 'project': PROJECT, 'name': NETWORK}}"
            ),
        )
    };
    let v: Value = serde_json::from_str(&s.replace('\'', "\"")).map_err(|_| err())?;
    let get = |k: &str| v.get(k).and_then(Value::as_str).map(str::to_string);
    match (get("domain"), get("project"), get("name")) {
        (Some(d), Some(p), Some(n)) => Ok(vec![d, p, n]),
        (None, Some(p), Some(n)) => Ok(vec!["default-domain".into(), p, n]),
        _ => Err(err()),
    }
}

fn parse_protocol(
    p: Option<&str>,
    kind: &str,
    id: &str,
    what: &str,
) -> Result<Protocol, ModelError> {
    match p {
        None | Some("TCP") => Ok(Protocol::Tcp),
        Some("UDP") => Ok(Protocol::Udp),
        Some("SCTP") => Ok(Protocol::Sctp),
        Some(other) => Err(bad(
            kind,
            id,
            format!("{what}: protocol `{other}`: use TCP, UDP or SCTP"),
        )),
    }
}

fn port_u16(n: i32, kind: &str, id: &str, what: &str) -> Result<u16, ModelError> {
    match u16::try_from(n) {
        Ok(p) if p > 0 => Ok(p),
        _ => Err(bad(
            kind,
            id,
            format!("{what} {n} is out of range: ports are 1-65535"),
        )),
    }
}

fn parse_ip(s: &str, kind: &str, id: &str, what: &str) -> Result<Ipv4Addr, ModelError> {
    s.trim().parse().map_err(|_| {
        bad(
            kind,
            id,
            format!("{what} `{s}` is not an IPv4 address (bindings must be resolved first)"),
        )
    })
}

/// Hands out addresses of a list of subnets in order, skipping taken ones.
struct Allocator {
    nets: Vec<Ipv4Net>,
    net: usize,
    next: u64,
    start: u64,
    field: &'static str,
}

impl Allocator {
    fn new(nets: &[Ipv4Net], start: u64, field: &'static str) -> Self {
        Allocator {
            nets: nets.to_vec(),
            net: 0,
            next: start,
            start,
            field,
        }
    }

    fn take(&mut self, taken: &mut HashSet<Ipv4Addr>, what: &str) -> Result<Ipv4Addr, ModelError> {
        loop {
            let Some(net) = self.nets.get(self.net) else {
                let subnets: Vec<String> = self.nets.iter().map(|n| n.to_string()).collect();
                return Err(ModelError::AddressesExhausted {
                    what: what.into(),
                    subnets: if subnets.is_empty() {
                        "no subnet".into()
                    } else {
                        subnets.join(", ")
                    },
                    field: self.field,
                });
            };
            let size = 1u64 << (32 - u32::from(net.prefix_len()));
            let last = if net.prefix_len() < 31 {
                size - 2
            } else {
                size - 1
            };
            if self.next > last {
                self.net += 1;
                self.next = self.start;
                continue;
            }
            let addr = Ipv4Addr::from((u64::from(u32::from(net.network())) + self.next) as u32);
            self.next += 1;
            if taken.insert(addr) {
                return Ok(addr);
            }
        }
    }
}

fn first_host(nets: &[Ipv4Net]) -> Ipv4Addr {
    nets.first()
        .map(|n| Ipv4Addr::from(u32::from(n.network()).saturating_add(1)))
        .unwrap_or(Ipv4Addr::UNSPECIFIED)
}

fn list_known(names: impl IntoIterator<Item = String>, what: &str) -> String {
    let names: Vec<String> = names.into_iter().collect();
    if names.is_empty() {
        return format!("the cluster has no {what}");
    }
    let shown: Vec<&str> = names.iter().take(12).map(String::as_str).collect();
    let more = if names.len() > 12 {
        format!(" and {} more", names.len() - 12)
    } else {
        String::new()
    };
    format!("known {what}: {}{more}", shown.join(", "))
}

impl Cluster {
    /// Builds the cluster from Kubernetes manifests (the scenario's `resources`, or objects
    /// observed on a cluster) and the scenario's blueprint.
    ///
    /// Objects of kinds the oracle does not model (Deployments, ConfigMaps…) are listed in
    /// [`Cluster::ignored`]. A later manifest of the same object replaces an earlier one but
    /// keeps its position, so NetworkPolicy creation order is the order of first appearance.
    ///
    /// Addresses come from the objects when present (`status.podIP`, `spec.clusterIP`,
    /// `spec.ports[].nodePort`, LoadBalancer and Ingress status, Node `status.addresses`); the
    /// others are planned deterministically: node vhosts and pods of fabric-forwarding
    /// networks from `ipFabricSubnets`, other pods from `podSubnets`, ClusterIPs from
    /// `serviceSubnets`, floating IPs from `publicFipPool`.
    ///
    /// # Errors
    ///
    /// [`ModelError`] naming the object and what to change: a manifest that is not an object,
    /// a malformed Pod/Service/Ingress/NetworkPolicy/RBAC object, a bad annotation or address,
    /// or an exhausted subnet.
    ///
    /// # Caveats
    ///
    /// Template bindings (`{{ podIP x/b }}`) must be resolved before this is called. Since
    /// planned addresses do not depend on NetworkPolicies, a caller can first build a cluster
    /// from the objects without NetworkPolicies, resolve the bindings from it, then build the
    /// full cluster. Services without a selector have no backends here (their Endpoints are
    /// not read).
    pub fn from_objects(
        objects: &[Value],
        spec: &ClusterSpec,
        contrail: &ContrailSettings,
    ) -> Result<Cluster, ModelError> {
        let mut flat: Vec<(usize, &Value)> = Vec::new();
        for (i, v) in objects.iter().enumerate() {
            if v.get("kind").and_then(Value::as_str) == Some("List") {
                for item in v
                    .get("items")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                {
                    flat.push((i, item));
                }
            } else {
                flat.push((i, v));
            }
        }
        let mut namespaces: Collected<(Namespace, BTreeMap<String, String>)> = Collected::new();
        let mut pods: Collected<core::Pod> = Collected::new();
        let mut services: Collected<core::Service> = Collected::new();
        let mut ingresses: Collected<net::Ingress> = Collected::new();
        let mut policies: Collected<NetworkPolicyDef> = Collected::new();
        let mut nodes: Collected<core::Node> = Collected::new();
        let mut rbac = RbacObjects::default();
        let mut ignored = Vec::new();
        let mut referenced_ns: Vec<String> = Vec::new();

        for (index, v) in flat {
            if !v.is_object() {
                return Err(ModelError::BadManifest {
                    index,
                    message: "not a mapping: a resource is a Kubernetes manifest with apiVersion, kind and metadata".into(),
                });
            }
            let (kind, api, name, ns) = object_id(v);
            if kind.is_empty() || name.is_empty() {
                return Err(ModelError::BadManifest {
                    index,
                    message: "a manifest needs `kind` and `metadata.name`".into(),
                });
            }
            let namespaced = !matches!(
                kind.as_str(),
                "Namespace" | "Node" | "ClusterRole" | "ClusterRoleBinding"
            );
            let ns = ns.unwrap_or_else(|| "default".into());
            let id = if namespaced {
                format!("{ns}/{name}")
            } else {
                name.clone()
            };
            if namespaced && !referenced_ns.contains(&ns) {
                referenced_ns.push(ns.clone());
            }
            let need_api = |want: &str| -> Result<(), ModelError> {
                if api == want {
                    Ok(())
                } else {
                    Err(bad(
                        &kind,
                        &id,
                        format!("apiVersion `{api}`: the oracle reads {kind} as `{want}`"),
                    ))
                }
            };
            match kind.as_str() {
                "Namespace" => {
                    need_api("v1")?;
                    let o: core::Namespace = parse(v, &kind, &id)?;
                    let annotations = o.metadata.annotations.clone().unwrap_or_default();
                    let mut labels = o.metadata.labels.clone().unwrap_or_default();
                    labels.insert(METADATA_NAME.into(), name.clone());
                    let custom_network = match annotations.get(NETWORK) {
                        Some(s) => Some(parse_network_annotation(s, &kind, &id)?),
                        None => None,
                    };
                    let isolated =
                        parse_bool_annotation(annotations.get(ISOLATION), &kind, &id, ISOLATION)?
                            .unwrap_or(false);
                    let n = Namespace {
                        name: name.clone(),
                        labels,
                        declared: true,
                        isolated,
                        custom_network,
                        ip_fabric_forwarding: parse_bool_annotation(
                            annotations.get(FORWARDING),
                            &kind,
                            &id,
                            FORWARDING,
                        )?,
                        ip_fabric_snat: parse_bool_annotation(
                            annotations.get(SNAT),
                            &kind,
                            &id,
                            SNAT,
                        )?,
                    };
                    namespaces.put(name.clone(), (n, annotations));
                }
                "Pod" => {
                    need_api("v1")?;
                    pods.put(id.clone(), parse(v, &kind, &id)?);
                }
                "Service" => {
                    need_api("v1")?;
                    services.put(id.clone(), parse(v, &kind, &id)?);
                }
                "Ingress" => {
                    need_api("networking.k8s.io/v1")?;
                    ingresses.put(id.clone(), parse(v, &kind, &id)?);
                }
                "NetworkPolicy" => {
                    need_api("networking.k8s.io/v1")?;
                    let np: net::NetworkPolicy = parse(v, &kind, &id)?;
                    let mut def =
                        NetworkPolicyDef::from_k8s(&np).map_err(|m| bad(&kind, &id, m))?;
                    def.namespace = ns.clone();
                    policies.put(id.clone(), def);
                }
                "Node" => {
                    need_api("v1")?;
                    nodes.put(name.clone(), parse(v, &kind, &id)?);
                }
                "Role" | "ClusterRole" | "RoleBinding" | "ClusterRoleBinding" => {
                    need_api("rbac.authorization.k8s.io/v1")?;
                    rbac.add(v, &kind, &id).map_err(|m| bad(&kind, &id, m))?;
                }
                _ => ignored.push(format!("{kind} {id}")),
            }
        }

        // Namespaces: declared, then implied (sorted by name for a stable order).
        let mut ns_map: BTreeMap<String, Namespace> = BTreeMap::new();
        for (n, _) in namespaces.items {
            ns_map.insert(n.name.clone(), n);
        }
        for name in referenced_ns.into_iter().chain(["default".to_string()]) {
            ns_map.entry(name.clone()).or_insert_with(|| Namespace {
                labels: [(METADATA_NAME.to_string(), name.clone())]
                    .into_iter()
                    .collect(),
                name,
                declared: false,
                isolated: false,
                custom_network: None,
                ip_fabric_forwarding: None,
                ip_fabric_snat: None,
            });
        }
        let namespaces: Vec<Namespace> = ns_map.into_values().collect();
        let ns_index: HashMap<String, usize> = namespaces
            .iter()
            .enumerate()
            .map(|(i, n)| (n.name.clone(), i))
            .collect();

        let mut cluster = Cluster {
            settings: contrail.clone(),
            namespaces,
            ns_index,
            ns_pods: Vec::new(),
            pods: Vec::new(),
            pod_index: HashMap::new(),
            label_index: HashMap::new(),
            services: Vec::new(),
            service_index: HashMap::new(),
            ingresses: Vec::new(),
            ingress_index: HashMap::new(),
            policies: policies.items,
            nodes: Vec::new(),
            hosts: spec.fabric_hosts.clone(),
            external: Vec::new(),
            chains: Vec::new(),
            rbac: Rbac::new(rbac, &contrail.cluster_name).map_err(|m| bad("RBAC", "objects", m))?,
            ignored,
        };

        // Addresses that are fixed by the objects or the spec.
        let mut taken: HashSet<Ipv4Addr> = HashSet::new();
        for h in &spec.fabric_hosts {
            taken.insert(h.address);
        }
        for e in &spec.external {
            if let Some(a) = e.address {
                taken.insert(a);
            }
        }
        for nets in [
            &contrail.pod_subnets,
            &contrail.ip_fabric_subnets,
            &contrail.service_subnets,
        ] {
            taken.insert(first_host(nets));
        }

        // Nodes: the spec's node-1..N, Node objects, and nodes pods are bound to.
        let mut node_names = spec.node_names();
        let mut node_addr: HashMap<String, Ipv4Addr> = HashMap::new();
        for n in &nodes.items {
            let name = n.metadata.name.clone().unwrap_or_default();
            let addrs = n.status.as_ref().and_then(|s| s.addresses.as_ref());
            if let Some(a) = addrs
                .into_iter()
                .flatten()
                .find(|a| a.type_ == "InternalIP")
            {
                let ip = parse_ip(&a.address, "Node", &name, "status.addresses InternalIP")?;
                taken.insert(ip);
                node_addr.insert(name.clone(), ip);
            }
            if !node_names.contains(&name) {
                node_names.push(name);
            }
        }
        let mut pod_objs: Vec<(String, String, core::Pod)> = pods
            .items
            .into_iter()
            .map(|p| {
                let ns = p
                    .metadata
                    .namespace
                    .clone()
                    .unwrap_or_else(|| "default".into());
                (ns, p.metadata.name.clone().unwrap_or_default(), p)
            })
            .collect();
        pod_objs.sort_by(|a, b| (&a.0, &a.1).cmp(&(&b.0, &b.1)));
        for (_, _, p) in &pod_objs {
            if let Some(n) = p.spec.as_ref().and_then(|s| s.node_name.clone())
                && !node_names.contains(&n)
            {
                node_names.push(n);
            }
            if let Some(ip) = p.status.as_ref().and_then(|s| s.pod_ip.as_ref()) {
                let id = format!(
                    "{}/{}",
                    p.metadata.namespace.as_deref().unwrap_or("default"),
                    p.metadata.name.as_deref().unwrap_or("")
                );
                taken.insert(parse_ip(ip, "Pod", &id, "status.podIP")?);
            }
        }
        let mut fabric = Allocator::new(&contrail.ip_fabric_subnets, 11, "ipFabricSubnets");
        for name in &node_names {
            let address = match node_addr.get(name) {
                Some(a) => *a,
                None => fabric.take(&mut taken, &format!("node {name}"))?,
            };
            cluster.nodes.push(Node {
                name: name.clone(),
                address,
            });
        }

        // Pods, sorted by namespace/name; nodes round-robin when not bound.
        let mut pod_alloc = Allocator::new(&contrail.pod_subnets, 2, "podSubnets");
        let nodes_for_spread: Vec<String> = if spec.nodes > 0 {
            spec.node_names()
        } else {
            cluster.nodes.iter().map(|n| n.name.clone()).collect()
        };
        for (i, (ns, name, p)) in pod_objs.into_iter().enumerate() {
            let id = format!("{ns}/{name}");
            let ns_i = cluster.ns_index.get(&ns).copied().unwrap_or(0);
            let pspec = p.spec.clone().unwrap_or_default();
            let host_network = pspec.host_network.unwrap_or(false);
            let node = match pspec.node_name.clone() {
                Some(n) => n,
                None => nodes_for_spread
                    .get(i % nodes_for_spread.len().max(1))
                    .cloned()
                    .unwrap_or_else(|| "node-1".into()),
            };
            let annotations = p.metadata.annotations.clone().unwrap_or_default();
            let network = if host_network {
                NetworkId::IpFabric
            } else if let Some(s) = annotations.get(NETWORK) {
                NetworkId::Custom(parse_network_annotation(s, "Pod", &id)?)
            } else {
                cluster.namespace_pod_network(&ns)
            };
            let mut ports = Vec::new();
            for c in &pspec.containers {
                for cp in c.ports.iter().flatten() {
                    let what = format!("container {} port {}", c.name, cp.container_port);
                    ports.push(ContainerPort {
                        port: port_u16(cp.container_port, "Pod", &id, "containerPort")?,
                        protocol: parse_protocol(cp.protocol.as_deref(), "Pod", &id, &what)?,
                        name: cp.name.clone(),
                    });
                }
            }
            let status = p.status.clone().unwrap_or_default();
            let (address, planned) = match (&status.pod_ip, host_network) {
                (Some(ip), _) => (parse_ip(ip, "Pod", &id, "status.podIP")?, false),
                (None, true) => (
                    cluster
                        .nodes
                        .iter()
                        .find(|n| n.name == node)
                        .map(|n| n.address)
                        .unwrap_or(Ipv4Addr::UNSPECIFIED),
                    true,
                ),
                (None, false) if cluster.forwarding(&network) => {
                    (fabric.take(&mut taken, &format!("pod {id}"))?, true)
                }
                (None, false) => (pod_alloc.take(&mut taken, &format!("pod {id}"))?, true),
            };
            let not_ready = status
                .conditions
                .iter()
                .flatten()
                .any(|c| c.type_ == "Ready" && c.status != "True")
                || matches!(status.phase.as_deref(), Some("Succeeded" | "Failed"))
                || p.metadata.deletion_timestamp.is_some();
            let labels = p.metadata.labels.clone().unwrap_or_default();
            let mut tags = labels.clone();
            if let Some(n) = cluster.namespaces.get(ns_i) {
                for (k, v) in &n.labels {
                    tags.insert(k.clone(), v.clone());
                }
            }
            tags.insert("namespace".into(), ns.clone());
            cluster.pods.push(Pod {
                label: Arc::from(id.as_str()),
                namespace: ns,
                name,
                labels,
                node,
                ports,
                address,
                address_planned: planned,
                network,
                host_network,
                ready: !not_ready,
                ns_index: ns_i,
                tags,
            });
        }
        cluster.reindex_pods();

        // Services, sorted.
        let mut svc_objs: Vec<core::Service> = services.items;
        svc_objs.sort_by_key(|s| {
            (
                s.metadata.namespace.clone().unwrap_or_default(),
                s.metadata.name.clone().unwrap_or_default(),
            )
        });
        for s in &svc_objs {
            if let Some(ip) = s.spec.as_ref().and_then(|s| s.cluster_ip.as_deref())
                && ip != "None"
                && !ip.is_empty()
            {
                taken.insert(parse_ip(
                    ip,
                    "Service",
                    &s.metadata.name.clone().unwrap_or_default(),
                    "spec.clusterIP",
                )?);
            }
        }
        let mut svc_alloc = Allocator::new(&contrail.service_subnets, 10, "serviceSubnets");
        let mut pool = Allocator::new(&contrail.public_fip_pool, 10, "publicFipPool");
        let mut node_ports_taken: HashSet<u16> = HashSet::new();
        for s in &svc_objs {
            for p in s
                .spec
                .as_ref()
                .and_then(|sp| sp.ports.as_ref())
                .into_iter()
                .flatten()
            {
                if let Some(np) = p.node_port.and_then(|n| u16::try_from(n).ok()) {
                    node_ports_taken.insert(np);
                }
            }
        }
        let mut next_node_port: u16 = 30000;
        for s in svc_objs {
            let svc = cluster.build_service(
                s,
                &mut taken,
                &mut svc_alloc,
                &mut pool,
                &mut node_ports_taken,
                &mut next_node_port,
            )?;
            cluster
                .service_index
                .insert(svc.id(), cluster.services.len());
            cluster.services.push(svc);
        }

        // Ingresses, sorted.
        let mut ing_objs: Vec<net::Ingress> = ingresses.items;
        ing_objs.sort_by_key(|s| {
            (
                s.metadata.namespace.clone().unwrap_or_default(),
                s.metadata.name.clone().unwrap_or_default(),
            )
        });
        for i in ing_objs {
            let ing =
                cluster.build_ingress(i, &mut taken, &mut fabric, &mut pod_alloc, &mut pool)?;
            cluster.ingress_index.insert(
                format!("{}/{}", ing.namespace, ing.name),
                cluster.ingresses.len(),
            );
            cluster.ingresses.push(ing);
        }

        // External clients: 198.51.100.0/24 when no address is given.
        let mut ext_alloc = Allocator::new(
            &["198.51.100.0/24".parse().unwrap_or_default()],
            10,
            "external",
        );
        for e in &spec.external {
            let address = match e.address {
                Some(a) => a,
                None => ext_alloc.take(&mut taken, &format!("external client {}", e.name))?,
            };
            cluster.external.push(External {
                name: e.name.clone(),
                address,
            });
        }
        Ok(cluster)
    }

    fn reindex_pods(&mut self) {
        self.pod_index = self
            .pods
            .iter()
            .enumerate()
            .map(|(i, p)| (p.label.to_string(), i))
            .collect();
        self.ns_pods = vec![0..0; self.namespaces.len()];
        let mut i = 0;
        while i < self.pods.len() {
            let ns = self.pods[i].ns_index;
            let start = i;
            while i < self.pods.len() && self.pods[i].ns_index == ns {
                i += 1;
            }
            if let Some(r) = self.ns_pods.get_mut(ns) {
                *r = start..i;
            }
        }
        self.label_index.clear();
        for (i, p) in self.pods.iter().enumerate() {
            for (k, v) in &p.labels {
                self.label_index
                    .entry((k.clone(), v.clone()))
                    .or_default()
                    .push(i);
            }
        }
    }

    fn build_service(
        &self,
        s: core::Service,
        taken: &mut HashSet<Ipv4Addr>,
        svc_alloc: &mut Allocator,
        pool: &mut Allocator,
        node_ports_taken: &mut HashSet<u16>,
        next_node_port: &mut u16,
    ) -> Result<Service, ModelError> {
        let ns = s
            .metadata
            .namespace
            .clone()
            .unwrap_or_else(|| "default".into());
        let name = s.metadata.name.clone().unwrap_or_default();
        let id = format!("{ns}/{name}");
        let spec = s.spec.clone().unwrap_or_default();
        let kind = match spec.type_.as_deref() {
            None | Some("ClusterIP") => ServiceType::ClusterIp,
            Some("NodePort") => ServiceType::NodePort,
            Some("LoadBalancer") => ServiceType::LoadBalancer,
            Some("ExternalName") => ServiceType::ExternalName,
            Some(other) => {
                return Err(bad(
                    "Service",
                    &id,
                    format!(
                        "spec.type `{other}`: use ClusterIP, NodePort, LoadBalancer or ExternalName"
                    ),
                ));
            }
        };
        let wants_node_ports = matches!(kind, ServiceType::NodePort | ServiceType::LoadBalancer);
        let mut ports = Vec::new();
        for (i, p) in spec.ports.iter().flatten().enumerate() {
            let what = format!("spec.ports[{i}]");
            let port = port_u16(p.port, "Service", &id, &format!("{what}.port"))?;
            let target = match &p.target_port {
                None => TargetPort::Number(port),
                Some(IntOrString::Int(n)) => {
                    TargetPort::Number(port_u16(*n, "Service", &id, &format!("{what}.targetPort"))?)
                }
                Some(IntOrString::String(s)) => match s.parse::<u16>() {
                    Ok(n) if n > 0 => TargetPort::Number(n),
                    _ => TargetPort::Name(s.clone()),
                },
            };
            let node_port = match p.node_port {
                Some(n) => Some(port_u16(n, "Service", &id, &format!("{what}.nodePort"))?),
                None if wants_node_ports => {
                    while node_ports_taken.contains(next_node_port) {
                        *next_node_port = next_node_port.saturating_add(1);
                    }
                    node_ports_taken.insert(*next_node_port);
                    Some(*next_node_port)
                }
                None => None,
            };
            ports.push(ServicePort {
                name: p.name.clone(),
                protocol: parse_protocol(p.protocol.as_deref(), "Service", &id, &what)?,
                port,
                target,
                node_port,
            });
        }
        let cluster_ip = match (kind, spec.cluster_ip.as_deref()) {
            (ServiceType::ExternalName, _) | (_, Some("None")) => None,
            (_, Some(ip)) if !ip.is_empty() => {
                Some(parse_ip(ip, "Service", &id, "spec.clusterIP")?)
            }
            _ => Some(svc_alloc.take(taken, &format!("service {id}"))?),
        };
        let mut external_ips = Vec::new();
        for e in spec.external_ips.iter().flatten() {
            external_ips.push(parse_ip(e, "Service", &id, "spec.externalIPs")?);
        }
        let status_ip = s
            .status
            .as_ref()
            .and_then(|st| st.load_balancer.as_ref())
            .and_then(|lb| lb.ingress.as_ref())
            .and_then(|i| i.iter().find_map(|x| x.ip.clone()));
        let public_address = match (kind, status_ip, spec.load_balancer_ip.as_deref()) {
            (ServiceType::LoadBalancer, Some(ip), _) => Some(parse_ip(
                &ip,
                "Service",
                &id,
                "status.loadBalancer.ingress[].ip",
            )?),
            (ServiceType::LoadBalancer, None, Some(ip)) if !ip.is_empty() => {
                Some(parse_ip(ip, "Service", &id, "spec.loadBalancerIP")?)
            }
            (ServiceType::LoadBalancer, _, _) if !external_ips.is_empty() => {
                external_ips.first().copied()
            }
            (ServiceType::LoadBalancer, _, _) => {
                Some(pool.take(taken, &format!("LoadBalancer service {id}"))?)
            }
            _ => external_ips.first().copied(),
        };
        let network = self.namespace_service_network(&ns);
        Ok(Service {
            namespace: ns,
            name,
            kind,
            selector: spec.selector.clone(),
            ports,
            cluster_ip,
            external_ips,
            public_address,
            local_traffic_policy: spec.external_traffic_policy.as_deref() == Some("Local"),
            network,
        })
    }

    fn build_ingress(
        &self,
        i: net::Ingress,
        taken: &mut HashSet<Ipv4Addr>,
        fabric: &mut Allocator,
        pod_alloc: &mut Allocator,
        pool: &mut Allocator,
    ) -> Result<Ingress, ModelError> {
        let ns = i
            .metadata
            .namespace
            .clone()
            .unwrap_or_else(|| "default".into());
        let name = i.metadata.name.clone().unwrap_or_default();
        let id = format!("{ns}/{name}");
        let spec = i.spec.clone().unwrap_or_default();
        let annotations = i.metadata.annotations.clone().unwrap_or_default();
        let class = annotations
            .get("kubernetes.io/ingress.class")
            .cloned()
            .or(spec.ingress_class_name.clone());
        let served = class.as_deref().is_none_or(|c| c == "opencontrail");
        let backend = |b: &net::IngressBackend,
                       what: &str|
         -> Result<Option<IngressBackendRef>, ModelError> {
            let Some(s) = &b.service else { return Ok(None) };
            let port = match &s.port {
                Some(net::ServiceBackendPort {
                    number: Some(n), ..
                }) => PortRef::Number(port_u16(
                    *n,
                    "Ingress",
                    &id,
                    &format!("{what}.service.port.number"),
                )?),
                Some(net::ServiceBackendPort { name: Some(n), .. }) => PortRef::Name(n.clone()),
                _ => {
                    return Err(bad(
                        "Ingress",
                        &id,
                        format!("{what}.service.port: give `number` or `name`"),
                    ));
                }
            };
            Ok(Some(IngressBackendRef {
                service: s.name.clone(),
                port,
            }))
        };
        let mut backends = Vec::new();
        if let Some(b) = &spec.default_backend {
            backends.extend(backend(b, "spec.defaultBackend")?);
        }
        for (r, rule) in spec.rules.iter().flatten().enumerate() {
            for (p, path) in rule.http.iter().flat_map(|h| &h.paths).enumerate() {
                backends.extend(backend(
                    &path.backend,
                    &format!("spec.rules[{r}].http.paths[{p}].backend"),
                )?);
            }
        }
        let network = self.namespace_pod_network(&ns);
        // kube-manager writes status.loadBalancer.ingress = [{ip: FIP}, {ip: VIP}].
        let status_ips: Vec<String> = i
            .status
            .as_ref()
            .and_then(|s| s.load_balancer.as_ref())
            .and_then(|lb| lb.ingress.as_ref())
            .map(|v| v.iter().filter_map(|x| x.ip.clone()).collect())
            .unwrap_or_default();
        let fip = match (status_ips.first(), annotations.get("externalIP")) {
            (Some(ip), _) => parse_ip(ip, "Ingress", &id, "status.loadBalancer.ingress[0].ip")?,
            (None, Some(ip)) => parse_ip(ip, "Ingress", &id, "annotation externalIP")?,
            (None, None) => pool.take(taken, &format!("ingress {id}"))?,
        };
        let vip = match status_ips.get(1) {
            Some(ip) => parse_ip(ip, "Ingress", &id, "status.loadBalancer.ingress[1].ip")?,
            None if self.forwarding(&network) => {
                fabric.take(taken, &format!("ingress VIP {id}"))?
            }
            None => pod_alloc.take(taken, &format!("ingress VIP {id}"))?,
        };
        Ok(Ingress {
            namespace: ns,
            name,
            class,
            served,
            backends,
            tls: spec.tls.as_ref().is_some_and(|t| !t.is_empty()),
            vip,
            fip,
            network,
        })
    }

    /// Places a service chain: traffic between `left` and `right` (on `ports`, all when empty)
    /// goes through the instance pod, which drops `function.drop`.
    ///
    /// # Errors
    ///
    /// [`ModelError::BadServiceChain`] when the instance pod or a namespace does not exist, or
    /// both sides are the same network.
    pub fn add_service_chain(&mut self, chain: &ServiceChain) -> Result<(), ModelError> {
        let err = |m: String| ModelError::BadServiceChain {
            chain: chain.name.clone(),
            message: m,
        };
        let resolve = |r: &NetworkRef| -> Result<NetworkId, ModelError> {
            match r {
                NetworkRef::NamespacePods(ns) if self.ns_index.contains_key(ns) => {
                    Ok(self.namespace_pod_network(ns))
                }
                NetworkRef::NamespacePods(ns) => Err(err(format!(
                    "namespace `{ns}` does not exist{}: declare it or name a network DOMAIN:PROJECT:NETWORK",
                    did_you_mean(
                        ns,
                        &self
                            .namespaces
                            .iter()
                            .map(|n| n.name.as_str())
                            .collect::<Vec<_>>()
                    )
                ))),
                NetworkRef::FqName(fq) => {
                    Ok(NetworkId::from_fq_name(fq, &self.settings.cluster_name))
                }
            }
        };
        let left = resolve(&chain.left)?;
        let right = resolve(&chain.right)?;
        if left == right {
            return Err(err(format!(
                "left and right are the same network {}: a chain joins two different networks",
                left.name(&self.settings.cluster_name)
            )));
        }
        let instance = *self.pod_index.get(&chain.instance).ok_or_else(|| {
            err(format!(
                "instance pod `{}` does not exist; {}",
                chain.instance,
                list_known(self.pods.iter().map(|p| p.label.to_string()), "pods")
            ))
        })?;
        self.chains.push(Chain {
            name: chain.name.clone(),
            left,
            right,
            instance,
            ports: chain.ports.clone(),
            drop: chain.function.drop.clone(),
        });
        Ok(())
    }

    /// The pod network of a namespace's pods: the custom network annotation, else the isolated
    /// namespace's own pod network, else the default pod network.
    pub fn namespace_pod_network(&self, ns: &str) -> NetworkId {
        match self.namespace(ns) {
            Some(n) if n.custom_network.is_some() => {
                NetworkId::Custom(n.custom_network.clone().unwrap_or_default())
            }
            Some(n) if n.isolated && n.name != "default" => NetworkId::NamespacePod(n.name.clone()),
            _ => NetworkId::DefaultPod,
        }
    }

    /// The service network of a namespace's service VIPs.
    pub fn namespace_service_network(&self, ns: &str) -> NetworkId {
        match self.namespace(ns) {
            Some(n) if n.isolated && n.name != "default" => {
                NetworkId::NamespaceService(n.name.clone())
            }
            _ => NetworkId::DefaultService,
        }
    }

    /// Whether a network has ip-fabric forwarding: the cluster setting for the default pod
    /// network; the namespace annotation, else the cluster setting, for an isolated namespace's
    /// pod network; never for service and custom networks.
    pub fn forwarding(&self, network: &NetworkId) -> bool {
        match network {
            NetworkId::DefaultPod => self.settings.ip_fabric_forwarding,
            NetworkId::NamespacePod(ns) => self
                .namespace(ns)
                .and_then(|n| n.ip_fabric_forwarding)
                .unwrap_or(self.settings.ip_fabric_forwarding),
            NetworkId::IpFabric => true,
            _ => false,
        }
    }

    /// Whether a network has fabric SNAT (ignored where ip-fabric forwarding is on).
    pub fn snat(&self, network: &NetworkId) -> bool {
        if self.forwarding(network) {
            return false;
        }
        match network {
            NetworkId::DefaultPod => self.settings.ip_fabric_snat,
            NetworkId::NamespacePod(ns) => self
                .namespace(ns)
                .and_then(|n| n.ip_fabric_snat)
                .unwrap_or(self.settings.ip_fabric_snat),
            _ => false,
        }
    }

    /// The gateway address of a network: first host of the pod subnet (or of the ip-fabric
    /// subnet for fabric-forwarding networks), of the service subnet for service networks.
    pub fn gateway(&self, network: &NetworkId) -> Endpoint {
        let address = match network {
            NetworkId::DefaultService | NetworkId::NamespaceService(_) => {
                first_host(&self.settings.service_subnets)
            }
            n if self.forwarding(n) => first_host(&self.settings.ip_fabric_subnets),
            _ => first_host(&self.settings.pod_subnets),
        };
        Endpoint {
            kind: EndpointKind::Gateway(network.clone()),
            address,
            index: 0,
        }
    }

    /// Resolves a scenario peer to endpoints; wildcards expand in a stable order (pods by
    /// namespace then name, node ports by node).
    ///
    /// # Errors
    ///
    /// [`ModelError::Unknown`] naming what does not exist and listing what does;
    /// [`ModelError::NotProbeable`] for a headless/ExternalName service as `svc:`, a service
    /// without node ports as `nodeport:`, or one without a public address as `lb:`.
    pub fn expand(&self, peer: &Peer) -> Result<Vec<Endpoint>, ModelError> {
        match peer {
            Peer::Pod { namespace, name } => self.expand_pods(namespace, name, peer),
            Peer::Service(o) => {
                let (i, s) = self.service_of(o)?;
                let address = s.cluster_ip.ok_or_else(|| ModelError::NotProbeable {
                    peer: peer.to_string(),
                    message: "the service has no ClusterIP (headless or ExternalName): probe its pods instead".into(),
                })?;
                Ok(vec![Endpoint {
                    kind: EndpointKind::Service {
                        namespace: s.namespace.clone(),
                        name: s.name.clone(),
                    },
                    address,
                    index: i,
                }])
            }
            Peer::NodePort { service, node } => {
                let (i, s) = self.service_of(service)?;
                if !s.ports.iter().any(|p| p.node_port.is_some()) {
                    return Err(ModelError::NotProbeable {
                        peer: peer.to_string(),
                        message:
                            "the service has no node port: make it type NodePort or LoadBalancer"
                                .into(),
                    });
                }
                let nodes: Vec<&Node> = match node {
                    Some(n) => vec![self.node_named(n)?],
                    None => self.nodes.iter().collect(),
                };
                Ok(nodes
                    .into_iter()
                    .map(|n| Endpoint {
                        kind: EndpointKind::NodePort {
                            namespace: s.namespace.clone(),
                            name: s.name.clone(),
                            node: n.name.clone(),
                        },
                        address: n.address,
                        index: i,
                    })
                    .collect())
            }
            Peer::LoadBalancer(o) => {
                let (i, s) = self.service_of(o)?;
                let address = s.public_address.ok_or_else(|| ModelError::NotProbeable {
                    peer: peer.to_string(),
                    message: "the service has no public address: make it type LoadBalancer or give spec.externalIPs".into(),
                })?;
                Ok(vec![Endpoint {
                    kind: EndpointKind::LoadBalancer {
                        namespace: s.namespace.clone(),
                        name: s.name.clone(),
                    },
                    address,
                    index: i,
                }])
            }
            Peer::Ingress(o) => {
                let key = o.to_string();
                let i = *self.ingress_index.get(&key).ok_or_else(|| {
                    self.unknown(
                        "ingress",
                        &key,
                        self.ingresses
                            .iter()
                            .map(|i| format!("{}/{}", i.namespace, i.name))
                            .collect(),
                    )
                })?;
                let ing = &self.ingresses[i];
                Ok(vec![Endpoint {
                    kind: EndpointKind::Ingress {
                        namespace: ing.namespace.clone(),
                        name: ing.name.clone(),
                    },
                    address: ing.fip,
                    index: i,
                }])
            }
            Peer::Host(h) => {
                let i = self
                    .hosts
                    .iter()
                    .position(|x| &x.name == h)
                    .ok_or_else(|| {
                        self.unknown(
                            "fabric host",
                            h,
                            self.hosts.iter().map(|x| x.name.clone()).collect(),
                        )
                    })?;
                Ok(vec![Endpoint {
                    kind: EndpointKind::Host(h.clone()),
                    address: self.hosts[i].address,
                    index: i,
                }])
            }
            Peer::Node(n) => {
                let node = self.node_named(n)?;
                let i = self
                    .nodes
                    .iter()
                    .position(|x| x.name == node.name)
                    .unwrap_or(0);
                Ok(vec![Endpoint {
                    kind: EndpointKind::Node(n.clone()),
                    address: node.address,
                    index: i,
                }])
            }
            Peer::External(e) => {
                let i = self
                    .external
                    .iter()
                    .position(|x| &x.name == e)
                    .ok_or_else(|| {
                        self.unknown(
                            "external client",
                            e,
                            self.external.iter().map(|x| x.name.clone()).collect(),
                        )
                    })?;
                Ok(vec![Endpoint {
                    kind: EndpointKind::External(e.clone()),
                    address: self.external[i].address,
                    index: i,
                }])
            }
        }
    }

    fn unknown(&self, what: &'static str, name: &str, known: Vec<String>) -> ModelError {
        let refs: Vec<&str> = known.iter().map(String::as_str).collect();
        ModelError::Unknown {
            what,
            name: name.into(),
            hint: did_you_mean(name, &refs),
            known: list_known(known.clone(), &format!("{what}s")),
        }
    }

    fn expand_pods(
        &self,
        ns: &NamePattern,
        name: &NamePattern,
        peer: &Peer,
    ) -> Result<Vec<Endpoint>, ModelError> {
        let all_pods = || {
            self.pods
                .iter()
                .map(|p| p.label.to_string())
                .collect::<Vec<_>>()
        };
        let pick: Vec<usize> = match (ns, name) {
            (NamePattern::Exact(ns), NamePattern::Exact(n)) => {
                let key = format!("{ns}/{n}");
                let i = self.pod_index.get(&key).ok_or_else(|| {
                    let in_ns: Vec<String> = self
                        .pods
                        .iter()
                        .filter(|p| &p.namespace == ns)
                        .map(|p| p.label.to_string())
                        .collect();
                    self.unknown(
                        "pod",
                        &key,
                        if in_ns.is_empty() { all_pods() } else { in_ns },
                    )
                })?;
                vec![*i]
            }
            (NamePattern::Exact(ns), NamePattern::Any) => {
                let r = self
                    .ns_index
                    .get(ns)
                    .and_then(|i| self.ns_pods.get(*i))
                    .cloned()
                    .unwrap_or(0..0);
                if r.is_empty() {
                    let nss: Vec<String> = self
                        .ns_pods
                        .iter()
                        .enumerate()
                        .filter(|(_, r)| !r.is_empty())
                        .map(|(i, _)| self.namespaces[i].name.clone())
                        .collect();
                    return Err(ModelError::Unknown {
                        what: "pods in namespace",
                        name: ns.clone(),
                        hint: did_you_mean(ns, &nss.iter().map(String::as_str).collect::<Vec<_>>()),
                        known: list_known(nss, "namespaces with pods"),
                    });
                }
                r.collect()
            }
            _ => {
                if self.pods.is_empty() {
                    return Err(ModelError::NotProbeable {
                        peer: peer.to_string(),
                        message: "the cluster has no pods".into(),
                    });
                }
                (0..self.pods.len()).collect()
            }
        };
        Ok(pick.into_iter().map(|i| self.pod_endpoint(i)).collect())
    }

    pub(crate) fn pod_endpoint(&self, i: usize) -> Endpoint {
        let p = &self.pods[i];
        Endpoint {
            kind: EndpointKind::Pod {
                namespace: p.namespace.clone(),
                name: p.name.clone(),
            },
            address: p.address,
            index: i,
        }
    }

    fn service_of(&self, o: &ObjectName) -> Result<(usize, &Service), ModelError> {
        let key = o.to_string();
        let i = *self.service_index.get(&key).ok_or_else(|| {
            self.unknown(
                "service",
                &key,
                self.services.iter().map(Service::id).collect(),
            )
        })?;
        Ok((i, &self.services[i]))
    }

    fn node_named(&self, n: &str) -> Result<&Node, ModelError> {
        self.nodes.iter().find(|x| x.name == n).ok_or_else(|| {
            self.unknown(
                "node",
                n,
                self.nodes.iter().map(|x| x.name.clone()).collect(),
            )
        })
    }

    /// The blueprint settings the cluster was built with.
    pub fn settings(&self) -> &ContrailSettings {
        &self.settings
    }

    /// Namespaces, sorted by name (declared and implied).
    pub fn namespaces(&self) -> &[Namespace] {
        &self.namespaces
    }

    /// The namespace of that name, declared or implied.
    pub fn namespace(&self, name: &str) -> Option<&Namespace> {
        self.ns_index
            .get(name)
            .and_then(|i| self.namespaces.get(*i))
    }

    /// Pods, sorted by namespace then name.
    pub fn pods(&self) -> &[Pod] {
        &self.pods
    }

    /// The pod `namespace/name`.
    pub fn pod(&self, namespace: &str, name: &str) -> Option<&Pod> {
        self.pod_index
            .get(&format!("{namespace}/{name}"))
            .and_then(|i| self.pods.get(*i))
    }

    /// Services, sorted by namespace then name.
    pub fn services(&self) -> &[Service] {
        &self.services
    }

    /// The service `namespace/name`.
    pub fn service(&self, namespace: &str, name: &str) -> Option<&Service> {
        self.service_index
            .get(&format!("{namespace}/{name}"))
            .and_then(|i| self.services.get(*i))
    }

    /// Ingresses, sorted by namespace then name.
    pub fn ingresses(&self) -> &[Ingress] {
        &self.ingresses
    }

    /// NetworkPolicies in creation order.
    pub fn network_policies(&self) -> &[NetworkPolicyDef] {
        &self.policies
    }

    /// Compute nodes, the spec's first, in order.
    pub fn nodes(&self) -> &[Node] {
        &self.nodes
    }

    /// Fabric hosts without a vrouter, as the spec declares them.
    pub fn fabric_hosts(&self) -> &[FabricHost] {
        &self.hosts
    }

    /// External clients, with their addresses.
    pub fn external_clients(&self) -> &[External] {
        &self.external
    }

    /// Service chains in the order they were added.
    pub fn service_chains(&self) -> &[Chain] {
        &self.chains
    }

    /// The RBAC authorizer built from the RBAC objects.
    pub fn rbac(&self) -> &Rbac {
        &self.rbac
    }

    /// Replaces the Kubernetes → Contrail RBAC mapping (default: v1).
    pub fn set_rbac_mapping(&mut self, mapping: crate::rbac::ContrailMapping) {
        self.rbac.set_mapping(mapping);
    }

    /// Objects of kinds the oracle does not model, as `Kind namespace/name`.
    pub fn ignored(&self) -> &[String] {
        &self.ignored
    }

    /// Address bindings for templates: `podIP`.
    pub fn pod_ip(&self, namespace: &str, name: &str) -> Option<Ipv4Addr> {
        self.pod(namespace, name).map(|p| p.address)
    }

    /// Address bindings for templates: `serviceIP`.
    pub fn service_ip(&self, namespace: &str, name: &str) -> Option<Ipv4Addr> {
        self.service(namespace, name).and_then(|s| s.cluster_ip)
    }

    /// Address bindings for templates: `nodePort` (by port name, or by port number as text).
    pub fn node_port(&self, namespace: &str, name: &str, port: &str) -> Option<u16> {
        self.service(namespace, name)?
            .ports
            .iter()
            .find(|p| p.name.as_deref() == Some(port) || p.port.to_string() == port)
            .and_then(|p| p.node_port)
    }

    /// Address bindings for templates: `nodeIP`.
    pub fn node_ip(&self, name: &str) -> Option<Ipv4Addr> {
        self.nodes
            .iter()
            .find(|n| n.name == name)
            .map(|n| n.address)
    }

    /// Address bindings for templates: `hostIP`.
    pub fn host_ip(&self, name: &str) -> Option<Ipv4Addr> {
        self.hosts
            .iter()
            .find(|h| h.name == name)
            .map(|h| h.address)
    }

    /// Resolves a template binding (`{{ podIP x/b }}`, `{{ cidr x/b 24 }}`, …) against the
    /// cluster's observed or planned values.
    ///
    /// # Errors
    ///
    /// [`ModelError::Unknown`] when the object does not exist, [`ModelError::NotProbeable`] when
    /// it has no such value (a headless service's IP, a node port of a ClusterIP service, the
    /// public address of a service that has none).
    pub fn resolve(
        &self,
        binding: &harness_scenario::template::Binding,
    ) -> Result<String, ModelError> {
        use harness_scenario::template::Binding as B;
        let no_value = |message: String| ModelError::NotProbeable {
            peer: binding.to_string(),
            message,
        };
        let pod = |o: &ObjectName| {
            self.pod(&o.namespace, &o.name).ok_or_else(|| {
                self.unknown(
                    "pod",
                    &o.to_string(),
                    self.pods.iter().map(|p| p.label.to_string()).collect(),
                )
            })
        };
        match binding {
            B::PodIp(o) => Ok(pod(o)?.address.to_string()),
            B::Cidr(o, len) => {
                let net = Ipv4Net::new(pod(o)?.address, *len)
                    .map_err(|_| no_value(format!("prefix length {len} is not 0-32")))?;
                Ok(net.trunc().to_string())
            }
            B::ServiceIp(o) => {
                let (_, s) = self.service_of(o)?;
                s.cluster_ip.map(|a| a.to_string()).ok_or_else(|| {
                    no_value("the service is headless or ExternalName: it has no ClusterIP".into())
                })
            }
            B::NodePort(o, port) => {
                let (_, s) = self.service_of(o)?;
                let p = match port {
                    PortRef::Name(n) => s
                        .ports
                        .iter()
                        .find(|p| p.name.as_deref() == Some(n.as_str())),
                    PortRef::Number(n) => s
                        .ports
                        .iter()
                        .find(|p| p.port == *n)
                        .or_else(|| s.ports.iter().find(|p| p.node_port == Some(*n))),
                };
                p.and_then(|p| p.node_port).map(|n| n.to_string()).ok_or_else(|| {
                    no_value(format!("service {} has no node port for port {port}: make it type NodePort and name an existing port", s.id()))
                })
            }
            B::LoadBalancerIp(o) => {
                let (_, s) = self.service_of(o)?;
                s.public_address.map(|a| a.to_string()).ok_or_else(|| {
                    no_value(format!("service {} has no public address: make it type LoadBalancer or give spec.externalIPs", s.id()))
                })
            }
            B::IngressIp(o) => self
                .ingresses
                .iter()
                .find(|i| i.namespace == o.namespace && i.name == o.name)
                .map(|i| i.fip.to_string())
                .ok_or_else(|| {
                    self.unknown(
                        "ingress",
                        &o.to_string(),
                        self.ingresses
                            .iter()
                            .map(|i| format!("{}/{}", i.namespace, i.name))
                            .collect(),
                    )
                }),
            B::NodeIp(n) => Ok(self.node_named(n)?.address.to_string()),
            B::HostIp(h) => self.host_ip(h).map(|a| a.to_string()).ok_or_else(|| {
                self.unknown(
                    "fabric host",
                    h,
                    self.hosts.iter().map(|x| x.name.clone()).collect(),
                )
            }),
        }
    }

    // --- crate-internal accessors used by the evaluator ---

    pub(crate) fn pod_at(&self, i: usize) -> &Pod {
        &self.pods[i]
    }

    pub(crate) fn pod_idx(&self, ns: &str, name: &str) -> Option<usize> {
        self.pod_index.get(&format!("{ns}/{name}")).copied()
    }

    pub(crate) fn service_at(&self, i: usize) -> &Service {
        &self.services[i]
    }

    pub(crate) fn service_idx(&self, ns: &str, name: &str) -> Option<usize> {
        self.service_index.get(&format!("{ns}/{name}")).copied()
    }

    pub(crate) fn ingress_idx(&self, ns: &str, name: &str) -> Option<usize> {
        self.ingress_index.get(&format!("{ns}/{name}")).copied()
    }

    pub(crate) fn ingress_at(&self, i: usize) -> &Ingress {
        &self.ingresses[i]
    }

    pub(crate) fn ns_pod_range(&self, ns_i: usize) -> Range<usize> {
        self.ns_pods.get(ns_i).cloned().unwrap_or(0..0)
    }

    pub(crate) fn ns_idx(&self, ns: &str) -> Option<usize> {
        self.ns_index.get(ns).copied()
    }

    pub(crate) fn pods_with_label(&self, k: &str, v: &str) -> &[usize] {
        self.label_index
            .get(&(k.to_string(), v.to_string()))
            .map(Vec::as_slice)
            .unwrap_or(&[])
    }

    /// Ready backend pods of a service (its selector over the pods of its namespace).
    pub(crate) fn backends(&self, svc: &Service) -> Vec<usize> {
        let Some(sel) = &svc.selector else {
            return Vec::new();
        };
        let Some(ns_i) = self.ns_idx(&svc.namespace) else {
            return Vec::new();
        };
        if sel.is_empty() {
            return Vec::new();
        }
        self.ns_pod_range(ns_i)
            .filter(|&i| {
                let p = &self.pods[i];
                p.ready && !p.host_network && sel.iter().all(|(k, v)| p.labels.get(k) == Some(v))
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    pub(crate) fn objects() -> Vec<Value> {
        vec![
            json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "blue", "annotations": {"opencontrail.org/isolation": "true"}}}),
            json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "web", "namespace": "blue", "labels": {"app": "web"}},
                   "spec": {"containers": [{"name": "srv", "ports": [{"containerPort": 80, "name": "http"}]}]}}),
            json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "a", "namespace": "x", "labels": {"pod": "a"}},
                   "spec": {"containers": [{"name": "c"}]}, "status": {"podIP": "10.32.9.9"}}),
            json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web", "namespace": "blue"},
                   "spec": {"type": "LoadBalancer", "selector": {"app": "web"}, "ports": [{"port": 80, "targetPort": "http", "name": "http"}]}}),
            json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "d", "namespace": "x"}}),
        ]
    }

    #[test]
    fn builds_with_planned_and_observed_addresses() {
        let spec = ClusterSpec {
            nodes: 2,
            ..Default::default()
        };
        let c = Cluster::from_objects(&objects(), &spec, &ContrailSettings::default()).unwrap();
        assert_eq!(
            c.namespaces()
                .iter()
                .map(|n| n.name.as_str())
                .collect::<Vec<_>>(),
            ["blue", "default", "x"]
        );
        let x = c.namespace("x").unwrap();
        assert!(!x.declared && x.labels.get(METADATA_NAME).map(String::as_str) == Some("x"));
        let web = c.pod("blue", "web").unwrap();
        assert_eq!(web.network, NetworkId::NamespacePod("blue".into()));
        assert!(web.address_planned);
        assert!(
            Ipv4Net::new(Ipv4Addr::new(10, 64, 0, 0), 12)
                .unwrap()
                .contains(&web.address),
            "fabric-forwarding pods get fabric addresses"
        );
        assert_eq!(c.pod_ip("x", "a"), Some(Ipv4Addr::new(10, 32, 9, 9)));
        let svc = c.service("blue", "web").unwrap();
        assert_eq!(svc.network, NetworkId::NamespaceService("blue".into()));
        assert!(svc.public_address.is_some() && svc.ports[0].node_port == Some(30000));
        assert_eq!(c.node_port("blue", "web", "http"), Some(30000));
        assert_eq!(c.ignored(), ["Deployment x/d"]);
        assert_eq!(c.nodes().len(), 2);
        // Deterministic and independent of object order.
        let mut rev = objects();
        rev.reverse();
        let c2 = Cluster::from_objects(&rev, &spec, &ContrailSettings::default()).unwrap();
        assert_eq!(c.pods(), c2.pods());
        assert_eq!(c.services(), c2.services());
    }

    #[test]
    fn expands_peers_and_explains_unknowns() {
        let c = Cluster::from_objects(
            &objects(),
            &ClusterSpec::default(),
            &ContrailSettings::default(),
        )
        .unwrap();
        let labels = |p: &str| {
            c.expand(&p.parse().unwrap())
                .unwrap()
                .iter()
                .map(Endpoint::label)
                .collect::<Vec<_>>()
        };
        assert_eq!(labels("*/*"), ["blue/web", "x/a"]);
        assert_eq!(labels("blue/*"), ["blue/web"]);
        assert_eq!(
            labels("nodeport:blue/web"),
            ["nodeport:blue/web@node-1", "nodeport:blue/web@node-2"]
        );
        assert_eq!(labels("lb:blue/web"), ["lb:blue/web"]);
        let e = c
            .expand(&"blue/wbe".parse().unwrap())
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("unknown pod `blue/wbe`")
                && e.contains("did you mean `blue/web`")
                && e.contains("known pods: blue/web"),
            "{e}"
        );
        let e = c
            .expand(&"host:db".parse().unwrap())
            .unwrap_err()
            .to_string();
        assert!(e.contains("the cluster has no fabric hosts"), "{e}");
        let e = c
            .expand(&"svc:x/nope".parse().unwrap())
            .unwrap_err()
            .to_string();
        assert!(e.contains("known services: blue/web"), "{e}");
    }

    #[test]
    fn bad_objects_say_what_to_change() {
        let bad = |v: Value| {
            Cluster::from_objects(&[v], &ClusterSpec::default(), &ContrailSettings::default())
                .unwrap_err()
                .to_string()
        };
        let e = bad(
            json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "a"}, "spec": {"containers": [{"name": "c"}]}, "status": {"podIP": "{{ x }}"}}),
        );
        assert!(
            e.contains("Pod default/a") && e.contains("status.podIP"),
            "{e}"
        );
        let e = bad(
            json!({"apiVersion": "extensions/v1beta1", "kind": "NetworkPolicy", "metadata": {"name": "p"}}),
        );
        assert!(e.contains("networking.k8s.io/v1"), "{e}");
        let e = bad(
            json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "n", "annotations": {"opencontrail.org/network": "vn1"}}}),
        );
        assert!(e.contains("'domain'"), "{e}");
        let e = bad(json!("nope"));
        assert!(e.contains("resource #0"), "{e}");
    }

    #[test]
    fn resolves_template_bindings() {
        use harness_scenario::template::Binding;
        let spec = ClusterSpec {
            nodes: 2,
            ..Default::default()
        };
        let c = Cluster::from_objects(&objects(), &spec, &ContrailSettings::default()).unwrap();
        let obj = |s: &str| {
            let (namespace, name) = s.split_once('/').unwrap();
            ObjectName {
                namespace: namespace.into(),
                name: name.into(),
            }
        };
        assert_eq!(c.resolve(&Binding::PodIp(obj("x/a"))).unwrap(), "10.32.9.9");
        assert_eq!(
            c.resolve(&Binding::Cidr(obj("x/a"), 16)).unwrap(),
            "10.32.0.0/16"
        );
        assert_eq!(
            c.resolve(&Binding::NodePort(
                obj("blue/web"),
                PortRef::Name("http".into())
            ))
            .unwrap(),
            "30000"
        );
        assert_eq!(
            c.resolve(&Binding::NodePort(obj("blue/web"), PortRef::Number(80)))
                .unwrap(),
            "30000"
        );
        assert!(
            c.resolve(&Binding::LoadBalancerIp(obj("blue/web")))
                .unwrap()
                .starts_with("203.0.113.")
        );
        assert_eq!(
            c.resolve(&Binding::NodeIp("node-1".into())).unwrap(),
            c.node_ip("node-1").unwrap().to_string()
        );
        let e = c
            .resolve(&Binding::PodIp(obj("x/zz")))
            .unwrap_err()
            .to_string();
        assert!(e.contains("unknown pod `x/zz`"), "{e}");
        assert!(c.resolve(&Binding::HostIp("db".into())).is_err());
    }

    #[test]
    fn custom_network_annotation() {
        let objs = vec![
            json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "c", "annotations": {"opencontrail.org/network": "{'domain':'default-domain','project':'admin','name':'vn1'}"}}}),
        ];
        let c = Cluster::from_objects(&objs, &ClusterSpec::default(), &ContrailSettings::default())
            .unwrap();
        assert_eq!(
            c.namespace_pod_network("c"),
            NetworkId::Custom(vec!["default-domain".into(), "admin".into(), "vn1".into()])
        );
        assert_eq!(c.namespace_service_network("c"), NetworkId::DefaultService);
    }
}
