//! The scenario document: the cluster it needs, the objects it applies, the steps that change
//! things and what must then be true. Field names are the YAML's (camelCase).

use std::collections::BTreeMap;
use std::fmt;
use std::net::Ipv4Addr;
use std::str::FromStr;

use ipnet::Ipv4Net;
use schemars::JsonSchema;
use serde::{Deserialize, Deserializer, Serialize};

use crate::duration::HumanDuration;
use crate::located::Located;
use crate::peer::Peer;
use crate::port::{PortSpec, did_you_mean};
use crate::rbac::RbacRequest;

/// One scenario file.
#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
#[schemars(title = "Contrail conformance harness scenario")]
pub struct Scenario {
    /// Unique, stable name (used in reports, `--only` and rerun commands).
    pub name: String,
    /// One sentence saying what behaviour this scenario proves.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Labels for `--label` selection (e.g. `netpol`, `isolation`, `fabric`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub labels: Vec<String>,
    /// The cluster topology this scenario needs.
    #[serde(default)]
    pub cluster: ClusterSpec,
    /// Contrail settings: mock or real, semantics profile, fabric forwarding, subnets, faults.
    #[serde(default)]
    pub contrail: ContrailSettings,
    /// Kubernetes manifests applied in order before the first step; `include:` pulls in
    /// shared fixture files relative to this file.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub resources: Vec<Located<ResourceEntry>>,
    /// Steps run in order; each changes the cluster, then checks expectations.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub steps: Vec<Located<Step>>,
}

/// Compute nodes, fabric hosts without a vrouter, and external clients.
#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ClusterSpec {
    /// Number of compute nodes, each with a vrouter; named node-1 … node-N.
    #[serde(default = "default_nodes")]
    #[schemars(range(min = 1, max = 64))]
    pub nodes: u32,
    /// Underlay hosts WITHOUT a vrouter (a public cloud service, a server beside the TOR).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub fabric_hosts: Vec<FabricHost>,
    /// Clients outside the cluster; they reach floating IPs and ingress VIPs via the gateway.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub external: Vec<ExternalClient>,
}

fn default_nodes() -> u32 {
    2
}

impl Default for ClusterSpec {
    fn default() -> Self {
        ClusterSpec {
            nodes: default_nodes(),
            fabric_hosts: Vec::new(),
            external: Vec::new(),
        }
    }
}

impl ClusterSpec {
    /// Node names as the harness assigns them.
    pub fn node_names(&self) -> Vec<String> {
        (1..=self.nodes).map(|i| format!("node-{i}")).collect()
    }
}

/// An underlay host with a plain IP stack and no vrouter.
#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct FabricHost {
    pub name: String,
    /// Its address on the IP fabric (normally inside `contrail.ipFabricSubnets`).
    #[schemars(with = "String")]
    pub address: Ipv4Addr,
    /// Ports it serves, e.g. `[TCP/5432, UDP/53]`; it answers ICMP echo as well.
    #[serde(default)]
    pub serves: Vec<PortSpec>,
}

/// A client outside the cluster.
#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ExternalClient {
    pub name: String,
    /// Its address; assigned from 198.51.100.0/24 when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Option<String>")]
    pub address: Option<Ipv4Addr>,
}

/// Which Contrail the scenario runs against.
#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum ContrailMode {
    /// The harness's own VNC API server and kube-manager emulation.
    #[default]
    Mock,
    /// A real Contrail: `api` names its VNC API URL.
    Real,
}

/// Semantics profile of the mock (and of the oracle when it evaluates NetworkPolicy).
#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq, Eq, Hash)]
pub enum Profile {
    /// Correct behaviour: the blueprint plus upstream NetworkPolicy v1 semantics.
    #[default]
    #[serde(rename = "upstream")]
    Upstream,
    /// The shipped contrail-kube-manager R5.0 behaviour, with its deviations.
    #[serde(rename = "r5.0")]
    R50,
}

impl Profile {
    pub fn as_str(self) -> &'static str {
        match self {
            Profile::Upstream => "upstream",
            Profile::R50 => "r5.0",
        }
    }
}

impl fmt::Display for Profile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Profile {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "upstream" => Ok(Profile::Upstream),
            "r5.0" | "r50" | "R5.0" => Ok(Profile::R50),
            _ => Err(format!(
                "unknown profile `{s}`: use upstream or r5.0{}",
                did_you_mean(s, &["upstream", "r5.0"])
            )),
        }
    }
}

/// Overlay encapsulations, as in `global-vrouter-config.encapsulation_priorities`.
#[derive(Clone, Copy, Debug, Deserialize, Serialize, JsonSchema, PartialEq, Eq, Hash)]
pub enum Encapsulation {
    #[serde(rename = "MPLSoUDP")]
    MplsOverUdp,
    #[serde(rename = "MPLSoGRE")]
    MplsOverGre,
    #[serde(rename = "VXLAN")]
    Vxlan,
}

impl Encapsulation {
    pub fn as_str(self) -> &'static str {
        match self {
            Encapsulation::MplsOverUdp => "MPLSoUDP",
            Encapsulation::MplsOverGre => "MPLSoGRE",
            Encapsulation::Vxlan => "VXLAN",
        }
    }
}

/// Defects the mock Contrail can be told to have, so `harness selftest` can prove each is caught.
#[derive(
    Clone, Copy, Debug, Deserialize, Serialize, JsonSchema, PartialEq, Eq, Hash, PartialOrd, Ord,
)]
#[serde(rename_all = "kebab-case")]
pub enum MockFault {
    /// Pods tunnel to fabric hosts although the pod network has ip-fabric forwarding.
    FabricForwardingIgnored,
    /// The isolated pod network is attached to the default pod-service policy.
    IsolationLeak,
    /// Isolated namespaces get no service network of their own.
    IsolatedServiceNetworkMissing,
    /// `k8s-denyall` is placed before the user policies in the APS.
    FirewallPolicyOrderBroken,
    /// Egress rules of NetworkPolicies are not translated.
    EgressRulesDropped,
    /// `namespaceSelector` peers match every namespace.
    NamespaceSelectorIgnored,
    /// A `podSelector` peer matches pods of every namespace.
    PodSelectorNotNamespaced,
    /// `ipBlock.except` ranges are not excluded.
    IpblockExceptIgnored,
    /// Named ports are not resolved to numbers.
    NamedPortsUnresolved,
    /// Firewall rules of a deleted NetworkPolicy are left behind.
    StaleRulesAfterDelete,
    /// Namespace label changes do not reach the pods' tags.
    NamespaceRelabelNotPropagated,
    /// Service ECMP always picks the first backend.
    EcmpPinned,
    /// Traffic bypasses the service instance of a service chain.
    ServiceChainBypassed,
    /// A read-only Kubernetes role maps to full CRUD in Contrail.
    RbacOverGrant,
    /// Kubernetes grants are not mapped to Contrail at all.
    RbacUnderGrant,
}

impl MockFault {
    pub const ALL: [MockFault; 15] = [
        MockFault::FabricForwardingIgnored,
        MockFault::IsolationLeak,
        MockFault::IsolatedServiceNetworkMissing,
        MockFault::FirewallPolicyOrderBroken,
        MockFault::EgressRulesDropped,
        MockFault::NamespaceSelectorIgnored,
        MockFault::PodSelectorNotNamespaced,
        MockFault::IpblockExceptIgnored,
        MockFault::NamedPortsUnresolved,
        MockFault::StaleRulesAfterDelete,
        MockFault::NamespaceRelabelNotPropagated,
        MockFault::EcmpPinned,
        MockFault::ServiceChainBypassed,
        MockFault::RbacOverGrant,
        MockFault::RbacUnderGrant,
    ];

    /// The kebab-case name used in scenarios and on the command line.
    pub fn name(self) -> String {
        serde_json::to_value(self)
            .ok()
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_default()
    }
}

impl FromStr for MockFault {
    type Err = String;
    /// Parses the kebab-case name; the error lists every fault, so a typo is one edit away.
    fn from_str(s: &str) -> Result<Self, String> {
        MockFault::ALL
            .into_iter()
            .find(|f| f.name() == s)
            .ok_or_else(|| {
                let names: Vec<String> = MockFault::ALL.iter().map(|f| f.name()).collect();
                format!("unknown fault `{s}`; use one of {}", names.join(", "))
            })
    }
}

/// Contrail settings for the scenario (the mock's configuration, or how to reach a real one).
#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ContrailSettings {
    #[serde(default)]
    pub mode: ContrailMode,
    /// VNC API URL of a real Contrail (`mode: real`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api: Option<String>,
    /// Semantics of the mock: `upstream` or `r5.0`; `--contrail-profile` overrides it.
    #[serde(default)]
    pub profile: Profile,
    /// Cluster name used in Contrail object names (`k8s-default-pod-network`, APS `k8s`).
    #[serde(default = "default_cluster_name")]
    pub cluster_name: String,
    /// ip-fabric forwarding on the cluster pod network (the blueprint's default is on).
    #[serde(default = "default_true")]
    pub ip_fabric_forwarding: bool,
    /// Fabric SNAT on pod networks (ignored where ip-fabric forwarding is on).
    #[serde(default)]
    pub ip_fabric_snat: bool,
    #[serde(default = "default_pod_subnets")]
    #[schemars(with = "Vec<String>")]
    pub pod_subnets: Vec<Ipv4Net>,
    #[serde(default = "default_service_subnets")]
    #[schemars(with = "Vec<String>")]
    pub service_subnets: Vec<Ipv4Net>,
    #[serde(default = "default_fabric_subnets")]
    #[schemars(with = "Vec<String>")]
    pub ip_fabric_subnets: Vec<Ipv4Net>,
    /// Public floating-IP pool for LoadBalancer services, external IPs and ingresses.
    #[serde(default = "default_public_pool")]
    #[schemars(with = "Vec<String>")]
    pub public_fip_pool: Vec<Ipv4Net>,
    /// Encapsulation priority (global-vrouter-config).
    #[serde(default = "default_encap")]
    pub encapsulation: Vec<Encapsulation>,
    /// Mock defects to inject (used by `harness selftest`); off by default.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub faults: Vec<MockFault>,
    /// A file (relative to the scenario) overriding the Kubernetes → Contrail RBAC mapping.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rbac_mapping: Option<String>,
}

fn default_true() -> bool {
    true
}
fn default_cluster_name() -> String {
    "k8s".into()
}
fn net(s: &str) -> Ipv4Net {
    s.parse().unwrap_or_default()
}
fn default_pod_subnets() -> Vec<Ipv4Net> {
    vec![net("10.32.0.0/12")]
}
fn default_service_subnets() -> Vec<Ipv4Net> {
    vec![net("10.96.0.0/12")]
}
fn default_fabric_subnets() -> Vec<Ipv4Net> {
    vec![net("10.64.0.0/12")]
}
fn default_public_pool() -> Vec<Ipv4Net> {
    vec![net("203.0.113.0/24")]
}
fn default_encap() -> Vec<Encapsulation> {
    vec![
        Encapsulation::MplsOverUdp,
        Encapsulation::MplsOverGre,
        Encapsulation::Vxlan,
    ]
}

impl Default for ContrailSettings {
    fn default() -> Self {
        ContrailSettings {
            mode: ContrailMode::Mock,
            api: None,
            profile: Profile::Upstream,
            cluster_name: default_cluster_name(),
            ip_fabric_forwarding: true,
            ip_fabric_snat: false,
            pod_subnets: default_pod_subnets(),
            service_subnets: default_service_subnets(),
            ip_fabric_subnets: default_fabric_subnets(),
            public_fip_pool: default_public_pool(),
            encapsulation: default_encap(),
            faults: Vec::new(),
            rbac_mapping: None,
        }
    }
}

/// A resource entry: a plain Kubernetes manifest, or `include: PATH` of a fixture file
/// (multi-document YAML of manifests, relative to the including file).
#[derive(Clone, Debug, PartialEq)]
pub enum ResourceEntry {
    Include(String),
    Manifest(serde_json::Value),
}

impl ResourceEntry {
    pub fn manifest(&self) -> Option<&serde_json::Value> {
        match self {
            ResourceEntry::Manifest(m) => Some(m),
            ResourceEntry::Include(_) => None,
        }
    }
}

impl<'de> Deserialize<'de> for ResourceEntry {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let value = serde_json::Value::deserialize(d)?;
        ResourceEntry::try_from(value).map_err(serde::de::Error::custom)
    }
}

impl TryFrom<serde_json::Value> for ResourceEntry {
    type Error = String;
    fn try_from(value: serde_json::Value) -> Result<Self, String> {
        let serde_json::Value::Object(map) = &value else {
            return Err("a resource is a Kubernetes manifest (a mapping with apiVersion, kind, metadata) or `include: PATH`".into());
        };
        if let Some(inc) = map.get("include") {
            if map.len() != 1 {
                return Err(
                    "`include:` stands alone in its entry: put the manifest in the included file"
                        .into(),
                );
            }
            return match inc {
                serde_json::Value::String(p) if !p.trim().is_empty() => {
                    Ok(ResourceEntry::Include(p.clone()))
                }
                _ => Err("`include:` takes a file path relative to this file".into()),
            };
        }
        Ok(ResourceEntry::Manifest(value))
    }
}

impl Serialize for ResourceEntry {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            ResourceEntry::Include(p) => {
                let mut m = serde_json::Map::new();
                m.insert("include".into(), serde_json::Value::String(p.clone()));
                serde_json::Value::Object(m).serialize(s)
            }
            ResourceEntry::Manifest(v) => v.serialize(s),
        }
    }
}

impl JsonSchema for ResourceEntry {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "ResourceEntry".into()
    }
    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "description": "A plain Kubernetes manifest exactly as `kubectl apply` takes it, or `include: PATH` of a fixture file (multi-document YAML) relative to this file. String values may use bindings: {{ podIP NS/POD }}, {{ serviceIP NS/SVC }}, {{ nodePort NS/SVC PORT }}, {{ cidr NS/POD PREFIXLEN }}, {{ nodeIP NODE }}, {{ hostIP HOST }}, {{ lbIP NS/SVC }}, {{ ingressIP NS/ING }}.",
            "oneOf": [
                {
                    "type": "object",
                    "required": ["include"],
                    "additionalProperties": false,
                    "properties": {"include": {"type": "string", "minLength": 1}}
                },
                {
                    "type": "object",
                    "required": ["apiVersion", "kind", "metadata"],
                    "properties": {
                        "apiVersion": {"type": "string"},
                        "kind": {"type": "string"},
                        "metadata": {
                            "type": "object",
                            "properties": {
                                "name": {"type": "string"},
                                "namespace": {"type": "string"},
                                "labels": {"type": "object", "additionalProperties": {"type": "string"}},
                                "annotations": {"type": "object", "additionalProperties": {"type": "string"}}
                            }
                        }
                    }
                }
            ]
        })
    }
}

/// A reference to a Kubernetes object to delete.
#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ObjectRef {
    /// `Pod`, `Service`, `NetworkPolicy`, `Namespace`, …
    pub kind: String,
    /// Needed only for kinds outside the built-in set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_version: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    pub name: String,
}

/// A label change on a namespace, pod or node.
#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct LabelChange {
    /// `ns/NAME` (a namespace), `node/NAME`, or `NAMESPACE/POD`.
    pub target: LabelTarget,
    /// Labels to add or overwrite.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub set: BTreeMap<String, String>,
    /// Label keys to remove.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub remove: Vec<String>,
}

/// Removing labels (`unlabel: {target: x/a, keys: [pod]}`).
#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Unlabel {
    pub target: LabelTarget,
    pub keys: Vec<String>,
}

/// What a label change applies to.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum LabelTarget {
    Namespace(String),
    Node(String),
    Pod { namespace: String, name: String },
}

impl FromStr for LabelTarget {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let hint = || {
            format!(
                "bad label target `{s}`: write ns/NAME for a namespace, node/NAME for a node, or NAMESPACE/POD"
            )
        };
        let (a, b) = s.split_once('/').ok_or_else(hint)?;
        if b.is_empty() || b.contains('/') || a.is_empty() {
            return Err(hint());
        }
        match a {
            "ns" | "namespace" => Ok(LabelTarget::Namespace(b.into())),
            "node" => Ok(LabelTarget::Node(b.into())),
            ns => Ok(LabelTarget::Pod {
                namespace: ns.into(),
                name: b.into(),
            }),
        }
    }
}

impl fmt::Display for LabelTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LabelTarget::Namespace(n) => write!(f, "ns/{n}"),
            LabelTarget::Node(n) => write!(f, "node/{n}"),
            LabelTarget::Pod { namespace, name } => write!(f, "{namespace}/{name}"),
        }
    }
}

crate::string_serde!(
    LabelTarget,
    "LabelTarget",
    "ns/NAME (namespace), node/NAME, or NAMESPACE/POD.",
    "^[a-z0-9-]+/[a-z0-9.-]+$"
);

/// A component to restart.
#[derive(Clone, Copy, Debug, Deserialize, Serialize, JsonSchema, PartialEq, Eq, Hash)]
#[serde(rename_all = "kebab-case")]
pub enum Component {
    /// The vrouter of one node (`node:` names it; default node-1).
    Vrouter,
    /// The Contrail VNC API server (its config DB survives, as Cassandra would).
    ContrailApi,
    /// The kube-manager (it rebuilds its state from the Kubernetes API and the config DB).
    KubeManager,
    /// The Kubernetes API server (its store survives, as etcd would).
    KubeApiserver,
}

/// A fault injected during a step.
#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct FaultAction {
    pub restart: Component,
    /// For `restart: vrouter`: which node.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
}

/// A Contrail config object to create through the VNC API (e.g. for a hand-built service chain).
#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ContrailObject {
    /// VNC type, e.g. `service-template`, `service-instance`, `network-policy`.
    #[serde(rename = "type")]
    pub kind: String,
    pub fq_name: Vec<String>,
    /// The object's other VNC fields, with the VNC schema's own names (snake_case).
    #[serde(default, skip_serializing_if = "serde_json::Map::is_empty")]
    pub body: serde_json::Map<String, serde_json::Value>,
}

/// A network named in a service chain: `namespace:NAME` (that namespace's pod network) or a
/// full Contrail fq name `default-domain:PROJECT:NETWORK`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum NetworkRef {
    NamespacePods(String),
    FqName(Vec<String>),
}

impl FromStr for NetworkRef {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        if let Some(ns) = s.strip_prefix("namespace:")
            && crate::peer::is_dns_label(ns)
        {
            return Ok(NetworkRef::NamespacePods(ns.into()));
        }
        let parts: Vec<&str> = s.split(':').collect();
        if parts.len() == 3 && parts.iter().all(|p| !p.is_empty()) {
            return Ok(NetworkRef::FqName(
                parts.into_iter().map(String::from).collect(),
            ));
        }
        Err(format!(
            "bad network `{s}`: write namespace:NAME for a namespace's pod network, or DOMAIN:PROJECT:NETWORK"
        ))
    }
}

impl fmt::Display for NetworkRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NetworkRef::NamespacePods(ns) => write!(f, "namespace:{ns}"),
            NetworkRef::FqName(fq) => f.write_str(&fq.join(":")),
        }
    }
}

crate::string_serde!(
    NetworkRef,
    "NetworkRef",
    "namespace:NAME (that namespace's pod network) or DOMAIN:PROJECT:NETWORK.",
    "^(namespace:[a-z0-9-]+|[^:]+:[^:]+:[^:]+)$"
);

/// What a service instance does to the traffic it carries.
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ServiceFunction {
    /// Ports the instance drops (a firewall); everything else is forwarded.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub drop: Vec<PortSpec>,
}

/// A service chain: traffic between `left` and `right` is steered through `instance`.
/// The runner creates the service template, service instance, port tuple and the
/// network-policy with `apply_service` through the VNC API.
#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ServiceChain {
    /// Name of the service instance (and of the Contrail objects created for it).
    pub name: String,
    pub left: NetworkRef,
    pub right: NetworkRef,
    /// The pod acting as the service instance (`NAMESPACE/POD`), with a left and a right interface.
    pub instance: String,
    /// Ports steered through the chain; all traffic when empty.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ports: Vec<PortSpec>,
    #[serde(default)]
    pub function: ServiceFunction,
}

/// One step: actions (in the order apply, contrail, serviceChain, delete, label, unlabel,
/// fault, wait), then expectations.
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Step {
    pub name: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub apply: Vec<Located<ResourceEntry>>,
    /// Contrail objects to create through the VNC API.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub contrail: Vec<ContrailObject>,
    #[serde(
        default,
        skip_serializing_if = "Vec::is_empty",
        deserialize_with = "one_or_many"
    )]
    #[schemars(with = "OneOrMany<ServiceChain>")]
    pub service_chain: Vec<ServiceChain>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub delete: Vec<ObjectRef>,
    #[serde(
        default,
        skip_serializing_if = "Vec::is_empty",
        deserialize_with = "one_or_many"
    )]
    #[schemars(with = "OneOrMany<LabelChange>")]
    pub label: Vec<LabelChange>,
    #[serde(
        default,
        skip_serializing_if = "Vec::is_empty",
        deserialize_with = "one_or_many"
    )]
    #[schemars(with = "OneOrMany<Unlabel>")]
    pub unlabel: Vec<Unlabel>,
    #[serde(
        default,
        skip_serializing_if = "Vec::is_empty",
        deserialize_with = "one_or_many"
    )]
    #[schemars(with = "OneOrMany<FaultAction>")]
    pub fault: Vec<FaultAction>,
    /// Pause after the actions (rarely needed: checks wait with `within`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wait: Option<HumanDuration>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub expect: Vec<Located<Expectation>>,
}

/// For the schema only: one item or a list of them.
#[derive(JsonSchema)]
#[serde(untagged)]
#[allow(dead_code)]
enum OneOrMany<T> {
    One(T),
    Many(Vec<T>),
}

fn one_or_many<'de, D, T>(d: D) -> Result<Vec<T>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    struct V<T>(std::marker::PhantomData<T>);
    impl<'de, T: Deserialize<'de>> serde::de::Visitor<'de> for V<T> {
        type Value = Vec<T>;
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("a mapping or a list of mappings")
        }
        fn visit_seq<A: serde::de::SeqAccess<'de>>(self, seq: A) -> Result<Vec<T>, A::Error> {
            Deserialize::deserialize(serde::de::value::SeqAccessDeserializer::new(seq))
        }
        fn visit_map<A: serde::de::MapAccess<'de>>(self, map: A) -> Result<Vec<T>, A::Error> {
            Ok(vec![Deserialize::deserialize(
                serde::de::value::MapAccessDeserializer::new(map),
            )?])
        }
    }
    d.deserialize_any(V(std::marker::PhantomData))
}

/// What must be true after a step's actions.
#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub enum Expectation {
    /// Probes between peers: a fixed verdict, a literal truth table, or the oracle's verdicts.
    Reachability(Box<ReachabilityCheck>),
    /// Assertions on Contrail config objects, read through the VNC API.
    Contrail(Vec<ContrailAssertion>),
    /// Kubernetes RBAC decisions, and their consistency with Contrail RBAC.
    Rbac(RbacCheck),
}

/// The verdict expected of a cell.
#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq, Eq, Hash)]
#[serde(rename_all = "lowercase")]
pub enum ExpectedVerdict {
    /// The connection succeeds (a reply from the destination).
    Allow,
    /// The connection does not succeed: dropped or rejected.
    Deny,
    /// Dropped silently (timeout), not rejected.
    Drop,
    /// Rejected: TCP RST, ICMP unreachable, SCTP ABORT.
    Reject,
    /// Whatever the oracle computes from the Kubernetes objects and the blueprint.
    #[default]
    Oracle,
}

/// What to do with cells whose source and destination are the same pod.
#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum LoopbackPolicy {
    /// Probe and report them, but never fail the check on them (upstream's convention).
    #[default]
    Report,
    /// Treat them like any other cell.
    Check,
    /// Do not probe them.
    Skip,
}

/// Tunnel expected on the underlay for a probe.
#[derive(Clone, Copy, Debug, Deserialize, Serialize, JsonSchema, PartialEq, Eq, Hash)]
pub enum PathEncap {
    /// No tunnel: plain IP on the underlay (ip-fabric forwarding).
    #[serde(rename = "none")]
    None,
    /// Any overlay tunnel.
    #[serde(rename = "tunnel")]
    Tunnel,
    #[serde(rename = "MPLSoUDP")]
    MplsOverUdp,
    #[serde(rename = "MPLSoGRE")]
    MplsOverGre,
    #[serde(rename = "VXLAN")]
    Vxlan,
}

/// Which backends a service probe must reach.
#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct BackendSpread {
    /// Connections to make per cell (distinct source ports).
    #[serde(default = "default_samples")]
    #[schemars(range(min = 1, max = 10000))]
    pub samples: u32,
    /// Exactly these backend pods (`NAMESPACE/POD`) must answer, and no others.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub exactly: Vec<String>,
    /// At least this many distinct backends must answer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub at_least: Option<u32>,
}

fn default_samples() -> u32 {
    32
}

/// Assertions on the path a probe took.
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct PathAssertion {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub encap: Option<PathEncap>,
    /// Whether the source address is translated to the node address (fabric SNAT).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub snat: Option<bool>,
    /// Service instances the traffic must traverse, in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub via: Vec<String>,
    /// For service peers: which backends answer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backends: Option<BackendSpread>,
}

/// A per-cell exception to a check's verdict.
#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct CellException {
    pub from: Peer,
    pub to: Peer,
    /// Ports the exception applies to; all of the check's ports when empty.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ports: Vec<PortSpec>,
    pub verdict: ExpectedVerdict,
    /// Why this cell differs (shown in reports).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// Probes between peers.
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ReachabilityCheck {
    /// Shown in reports; defaults to a description built from the peers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Sources (rows). Use `peers` instead for a square matrix.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub from: Vec<Peer>,
    /// Destinations (columns).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub to: Vec<Peer>,
    /// Every peer to every peer.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub peers: Vec<Peer>,
    /// Ports probed in every cell.
    pub ports: Vec<PortSpec>,
    /// One verdict for every cell, or `oracle` (the default when no `table` is given).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verdict: Option<ExpectedVerdict>,
    /// A literal truth table: rows = from, columns = to; `.` allow, `X` deny, `D` drop,
    /// `R` reject, `?` not checked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Option<String>")]
    pub table: Option<Located<String>>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub except: Vec<CellException>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<PathAssertion>,
    /// Eventually: each cell must reach its verdict within this time (default 5s).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub within: Option<HumanDuration>,
    /// Consistently: and keep it for this long.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hold_for: Option<HumanDuration>,
    #[serde(default)]
    pub loopback: LoopbackPolicy,
}

impl ReachabilityCheck {
    /// The sources: `from`, or `peers` for a square matrix.
    pub fn sources(&self) -> &[Peer] {
        if self.from.is_empty() {
            &self.peers
        } else {
            &self.from
        }
    }
    /// The destinations: `to`, or `peers` for a square matrix.
    pub fn destinations(&self) -> &[Peer] {
        if self.to.is_empty() {
            &self.peers
        } else {
            &self.to
        }
    }
    /// The verdict all cells share, `oracle` when neither `verdict` nor `table` is given.
    pub fn verdict(&self) -> ExpectedVerdict {
        self.verdict.unwrap_or(ExpectedVerdict::Oracle)
    }
}

/// An assertion on one Contrail config object.
#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ContrailAssertion {
    /// VNC type: `virtual-network`, `firewall-policy`, `application-policy-set`, …
    #[serde(rename = "type")]
    pub kind: String,
    pub fq_name: Vec<String>,
    /// Whether the object must exist (default) or be absent.
    #[serde(default = "default_true")]
    pub exists: bool,
    /// A subset the object must contain. Lists match when every listed item matches some
    /// item; a ref item `{to: [fq, name]}` matches a ref by its target's fq name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub has: Option<serde_json::Value>,
    /// For an application-policy-set: firewall policy names in sequence order; `*` stands for
    /// any number of policies.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub firewall_policy_order: Option<Vec<String>>,
    /// How long the object may take to appear (default 5s).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub within: Option<HumanDuration>,
}

/// The identity a request is made as.
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Subject {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub groups: Vec<String>,
    /// `NAMESPACE/NAME` of a service account.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_account: Option<String>,
}

impl fmt::Display for Subject {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut parts = Vec::new();
        if let Some(u) = &self.user {
            parts.push(format!("user {u}"));
        }
        if let Some(sa) = &self.service_account {
            parts.push(format!("serviceaccount {sa}"));
        }
        if !self.groups.is_empty() {
            parts.push(format!("groups {}", self.groups.join(",")));
        }
        f.write_str(&parts.join(" "))
    }
}

/// Whether Contrail's answers are compared with Kubernetes'.
#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum ContrailRbac {
    /// The Contrail API, called as the same subject on the mapped objects, must agree.
    Consistent,
    /// Check Kubernetes only.
    #[default]
    Ignore,
}

/// RBAC decisions for one subject.
#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RbacCheck {
    #[serde(rename = "as")]
    pub subject: Subject,
    /// Requests that must be allowed, e.g. `get pods -n blue`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allowed: Vec<RbacRequest>,
    /// Requests that must be denied, e.g. `delete namespaces`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub denied: Vec<RbacRequest>,
    #[serde(default)]
    pub contrail: ContrailRbac,
}

impl Expectation {
    /// `reachability`, `contrail` or `rbac`.
    pub fn kind(&self) -> &'static str {
        match self {
            Expectation::Reachability(_) => "reachability",
            Expectation::Contrail(_) => "contrail",
            Expectation::Rbac(_) => "rbac",
        }
    }
}

/// Where a check sits in its scenario, and its stable id.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CheckRef {
    /// Index of the step.
    pub step: usize,
    /// Index of the check within the step's `expect`.
    pub index: usize,
    /// `STEP/KIND-N` (N counts checks of that kind within the step, from 1): stable across
    /// runs, used in reports, `--only` and rerun commands.
    pub id: String,
}

impl Scenario {
    /// Every check with its id, in order.
    pub fn checks(&self) -> Vec<CheckRef> {
        let mut out = Vec::new();
        for (si, step) in self.steps.iter().enumerate() {
            let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
            for (ci, e) in step.expect.iter().enumerate() {
                let n = counts.entry(e.kind()).or_default();
                *n += 1;
                out.push(CheckRef {
                    step: si,
                    index: ci,
                    id: format!("{}/{}-{}", slug(&step.name), e.kind(), n),
                });
            }
        }
        out
    }
}

/// A step name as it appears in check ids: lowercase, runs of other characters as one `-`.
pub fn slug(name: &str) -> String {
    let mut out = String::new();
    for c in name.chars() {
        if c.is_ascii_alphanumeric() || c == '.' || c == '_' {
            out.push(c.to_ascii_lowercase());
        } else if !out.ends_with('-') {
            out.push('-');
        }
    }
    out.trim_matches('-').to_string()
}
