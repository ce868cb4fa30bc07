//! What kube-manager wants in Contrail for each part of the Kubernetes state: the units of
//! [`super::engine`], computed from the cache of watched objects ([`World`]).
//!
//! Names and shapes follow the real kube-manager (research/contrail.md §2–§4); where the
//! `upstream` profile differs (NetworkPolicy enforcement), the module documentation of
//! [`super`] and the crate README describe the arrangement.
//!
//! - this module: the [`World`], cluster provisioning, namespaces, attachment networks, nodes;
//! - `pod`: pods, and the upstream per-pod enforcement with its membership predicates;
//! - `policy`: NetworkPolicies and the cluster APS;
//! - `lb`: services (native load balancers) and ingresses (haproxy load balancers).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::IpAddr;

use harness_contrail_vnc::{Ref, VncObject};
use harness_scenario::{MockFault, Profile};
use ipnet::IpNet;
use k8s_openapi::api::core::v1::{Pod, ServicePort};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use serde_json::{Value, json};

use super::config::KubeManagerConfig;
use super::engine::{Engine, Item, Key, Link, annotations};
use super::k8s::Cache;
use super::naming::{
    self, GLOBAL_SYSTEM_CONFIG, IP_FABRIC, Names, derived_uuid, fq, label_tag, make_name, sequence,
    tag_part,
};
use super::netpol::{
    self, Action, Dir, Endpoint, Failure, Np, NsScope, PeerTarget, Predicate, R50Translation,
    RulePlan, UpstreamService,
};
use super::selector::{self, Labels};

mod lb;
mod pod;
mod policy;

/// `(namespace, name)`.
pub(crate) type ObjKey = (String, String);

const ANN_ISOLATION: &str = "opencontrail.org/isolation";
const ANN_NETWORK: &str = "opencontrail.org/network";
const ANN_FORWARDING: &str = "opencontrail.org/ip_fabric_forwarding";
const ANN_SNAT: &str = "opencontrail.org/ip_fabric_snat";
const ANN_NETWORKS: &str = "k8s.v1.cni.cncf.io/networks";
const ANN_CIDR: &str = "opencontrail.org/cidr";
const ANN_INGRESS_CLASS: &str = "kubernetes.io/ingress.class";

/// Everything the unit computations read.
#[derive(Debug)]
pub(crate) struct World {
    pub cfg: KubeManagerConfig,
    pub names: Names,
    pub cache: Cache,
    /// NetworkPolicies in creation order (the order of their firewall policies in the APS).
    pub np_order: Vec<ObjKey>,
    /// Deleted NetworkPolicies kept translated (`stale-rules-after-delete`).
    pub tombstones: BTreeMap<ObjKey, NetworkPolicy>,
    /// Parsed NetworkPolicies (live and tombstoned).
    pub nps: BTreeMap<ObjKey, Np>,
    /// r5.0 translations.
    pub r50: BTreeMap<ObjKey, Result<R50Translation, Failure>>,
    /// Upstream membership predicates, by id.
    pub predicates: BTreeMap<String, Predicate>,
    /// Upstream: numbers of the named container ports egress rules use, per (protocol, name).
    pub named_ports: BTreeMap<(String, String), BTreeSet<u16>>,
    /// Services each pod backs (from EndpointSlices).
    pub pod_services: HashMap<ObjKey, BTreeSet<String>>,
    /// The service and ready pods of each EndpointSlice.
    pub slice_pods: HashMap<ObjKey, (String, Vec<ObjKey>)>,
    /// Namespace labels as each pod first saw them (`namespace-relabel-not-propagated`).
    pub ns_snapshot: HashMap<ObjKey, Labels>,
    /// ip-fabric forwarding decided for namespaces with networks of their own (fixed once
    /// the network exists).
    pub forwarding: HashMap<String, bool>,
}

fn truthy(s: Option<&str>) -> Option<bool> {
    match s.map(|v| v.trim().to_ascii_lowercase()) {
        Some(v) if v == "true" => Some(true),
        Some(v) if v == "false" => Some(false),
        _ => None,
    }
}

/// A Python-literal dict string (`{'domain': 'd', 'project': 'p', 'name': 'n'}`) as JSON.
fn py_dict(s: &str) -> Option<serde_json::Map<String, Value>> {
    let v: Value = serde_json::from_str(s)
        .or_else(|_| serde_json::from_str(&s.replace('\'', "\"")))
        .ok()?;
    v.as_object().cloned()
}

fn tag_object(tag: &str, ann: Value) -> Item {
    let (t, v) = tag.split_once('=').unwrap_or((tag, ""));
    Item::Object(
        VncObject::new("tag", vec![tag.to_owned()])
            .with_prop("tag_type_name", t)
            .with_prop("tag_value", v)
            .with_prop("annotations", ann),
    )
}

fn tag_ref(tag: &str) -> Ref {
    Ref::by_name(vec![tag.to_owned()])
}

fn policy_seq() -> Value {
    json!({"sequence": {"major": 0, "minor": 0}})
}

/// A network-policy rule `src <> dst`, pass, any protocol.
fn np_rule(src: Value, dst: Value) -> Value {
    json!({
        "direction": "<>",
        "protocol": "any",
        "action_list": {"simple_action": "pass"},
        "src_addresses": [src],
        "src_ports": [{"start_port": -1, "end_port": -1}],
        "dst_addresses": [dst],
        "dst_ports": [{"start_port": -1, "end_port": -1}],
    })
}

fn vn_addr(fq: &[String]) -> Value {
    json!({"virtual_network": fq.join(":")})
}

fn subnet_json(n: &ipnet::Ipv4Net) -> Value {
    json!({"subnet": {"ip_prefix": n.network().to_string(), "ip_prefix_len": n.prefix_len()}})
}

fn container_port(pod: &Pod, name: &str, protocol: &str) -> Option<u16> {
    pod.spec
        .iter()
        .flat_map(|s| &s.containers)
        .flat_map(|c| c.ports.iter().flatten())
        .find(|p| {
            p.name.as_deref() == Some(name)
                && p.protocol
                    .as_deref()
                    .unwrap_or("TCP")
                    .eq_ignore_ascii_case(protocol)
        })
        .and_then(|p| u16::try_from(p.container_port).ok())
}

fn labels_of(meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta) -> Labels {
    meta.labels.clone().unwrap_or_default()
}

fn annotation<'a>(
    meta: &'a k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta,
    key: &str,
) -> Option<&'a str> {
    meta.annotations
        .as_ref()
        .and_then(|a| a.get(key))
        .map(String::as_str)
}

fn is_host_network(pod: &Pod) -> bool {
    pod.spec
        .as_ref()
        .and_then(|s| s.host_network)
        .unwrap_or(false)
}

/// The target port of a service port on one backend pod.
fn target_port(sp: &ServicePort, pod: &Pod) -> Option<u16> {
    let proto = sp.protocol.as_deref().unwrap_or("TCP");
    match &sp.target_port {
        None => u16::try_from(sp.port).ok(),
        Some(IntOrString::Int(n)) => u16::try_from(*n).ok(),
        Some(IntOrString::String(s)) => match s.parse::<u16>() {
            Ok(n) => Some(n),
            Err(_) => container_port(pod, s, proto),
        },
    }
}

impl World {
    pub fn new(cfg: KubeManagerConfig) -> Self {
        World {
            names: Names::new(&cfg.cluster_name),
            cfg,
            cache: Cache::default(),
            np_order: Vec::new(),
            tombstones: BTreeMap::new(),
            nps: BTreeMap::new(),
            r50: BTreeMap::new(),
            predicates: BTreeMap::new(),
            named_ports: BTreeMap::new(),
            pod_services: HashMap::new(),
            slice_pods: HashMap::new(),
            ns_snapshot: HashMap::new(),
            forwarding: HashMap::new(),
        }
    }

    fn cl(&self) -> &str {
        &self.cfg.cluster_name
    }

    fn upstream(&self) -> bool {
        self.cfg.profile == Profile::Upstream
    }

    fn fault(&self, f: MockFault) -> bool {
        self.cfg.has(f)
    }

    /// `owner=k8s`, `cluster=<name>` and `extra`.
    fn ann(&self, extra: &[(&str, &str)]) -> Value {
        let mut pairs: Vec<(&str, &str)> = vec![("owner", "k8s"), ("cluster", self.cl())];
        pairs.extend_from_slice(extra);
        annotations(&pairs)
    }

    fn tag(&self, tag: &str) -> Item {
        tag_object(tag, self.ann(&[]))
    }

    fn app_tag(&self) -> String {
        format!("application={}", self.cl())
    }

    /// Whether the namespace asks for isolation.
    pub fn is_isolated(&self, ns: &str) -> bool {
        truthy(
            self.cache
                .namespace_annotation(ns, ANN_ISOLATION)
                .as_deref(),
        ) == Some(true)
    }

    /// Whether the namespace has networks of its own (isolated, or `default`).
    pub fn has_own_networks(&self, ns: &str) -> bool {
        ns == "default" || self.is_isolated(ns)
    }

    /// Decides ip-fabric forwarding for a namespace with networks of its own, once: the
    /// network keeps what it was created with (the provider link is not added on update).
    pub fn decide_forwarding(&mut self, ns: &str, engine: &Engine) {
        if self.forwarding.contains_key(ns) || !self.has_own_networks(ns) {
            return;
        }
        let key: Key = ("virtual-network".into(), self.names.pod_network(ns));
        let existing = engine.applied_object(&key).and_then(|vn| {
            vn.fields
                .get("annotations")
                .and_then(|a| a.get("key_value_pair"))
                .and_then(Value::as_array)
                .and_then(|pairs| {
                    pairs.iter().find(|p| {
                        p.get("key").and_then(Value::as_str) == Some("ip_fabric_forwarding")
                    })
                })
                .and_then(|p| p.get("value"))
                .and_then(Value::as_str)
                .and_then(|v| truthy(Some(v)))
        });
        let decided = existing.unwrap_or_else(|| {
            truthy(
                self.cache
                    .namespace_annotation(ns, ANN_FORWARDING)
                    .as_deref(),
            )
            .unwrap_or(self.cfg.ip_fabric_forwarding)
        });
        self.forwarding.insert(ns.to_owned(), decided);
    }

    fn forwarding_of(&self, ns: &str) -> bool {
        self.forwarding
            .get(ns)
            .copied()
            .unwrap_or(self.cfg.ip_fabric_forwarding)
    }

    fn snat_of(&self, ns: &str) -> bool {
        truthy(self.cache.namespace_annotation(ns, ANN_SNAT).as_deref())
            .unwrap_or(self.cfg.ip_fabric_snat)
    }

    fn custom_network(&self, annotation_value: Option<&str>) -> Option<Vec<String>> {
        let d = py_dict(annotation_value?)?;
        let get = |k: &str| d.get(k).and_then(Value::as_str).map(str::to_owned);
        Some(vec![
            get("domain").unwrap_or_else(|| naming::DOMAIN.to_owned()),
            get("project")?,
            get("name")?,
        ])
    }

    /// The pod network of a namespace: the annotated custom network, else its own (isolated
    /// or `default`), else the cluster default.
    pub fn pod_network_of_ns(&self, ns: &str) -> Vec<String> {
        if let Some(vn) =
            self.custom_network(self.cache.namespace_annotation(ns, ANN_NETWORK).as_deref())
        {
            return vn;
        }
        if self.is_isolated(ns) {
            self.names.pod_network(ns)
        } else {
            self.names.pod_network("default")
        }
    }

    /// The service network of a namespace.
    pub fn service_network_of_ns(&self, ns: &str) -> Vec<String> {
        if self.is_isolated(ns) && !self.fault(MockFault::IsolatedServiceNetworkMissing) {
            self.names.service_network(ns)
        } else {
            self.names.service_network("default")
        }
    }

    /// Whether `fq` is one of the networks kube-manager makes for pods.
    fn is_k8s_network(&self, vn: &[String]) -> bool {
        let Some(ns) = vn
            .get(1)
            .and_then(|p| p.strip_prefix(&format!("{}-", self.cl())))
        else {
            return false;
        };
        vn == self.names.pod_network(ns).as_slice()
            || vn == self.names.service_network(ns).as_slice()
            || Cache::in_ns(&self.cache.nads, ns)
                .iter()
                .any(|(n, name)| vn == self.nad_network(n, name).as_slice())
    }

    fn ns_labels_for_pod(&self, key: &ObjKey) -> Labels {
        if self.fault(MockFault::NamespaceRelabelNotPropagated)
            && let Some(l) = self.ns_snapshot.get(key)
        {
            return l.clone();
        }
        self.cache.namespace_labels(&key.0)
    }

    // -----------------------------------------------------------------------------------
    // Cluster provisioning.

    fn ipam(&self, kind: &str, subnets: &[ipnet::Ipv4Net]) -> Item {
        let subnets: Vec<Value> = subnets.iter().map(subnet_json).collect();
        Item::Object(
            VncObject::new("network-ipam", self.names.ipam(kind))
                .with_prop("ipam_subnet_method", "flat-subnet")
                .with_prop("ipam_subnets", json!({"subnets": subnets}))
                .with_prop("annotations", self.ann(&[])),
        )
    }

    /// A kube-manager network: flat subnet only, L3, the IPAM (ip-fabric IPAM and the
    /// provider link when forwarding), fabric SNAT, the attached policies, `application=<cluster>`.
    #[allow(clippy::too_many_arguments)]
    fn k8s_network(
        &self,
        fq_name: Vec<String>,
        ns: &str,
        ipam_kind: &str,
        forwarding: bool,
        snat: bool,
        policies: &[Vec<String>],
    ) -> Item {
        let fwd = if forwarding { "true" } else { "false" };
        let mut vn = VncObject::new("virtual-network", fq_name)
            .with_prop("address_allocation_mode", "flat-subnet-only")
            .with_prop(
                "virtual_network_properties",
                json!({"forwarding_mode": "l3"}),
            )
            .with_prop("fabric_snat", snat && !forwarding)
            .with_prop(
                "annotations",
                self.ann(&[
                    ("namespace", ns),
                    ("isolated", if ns == "default" { "False" } else { "True" }),
                    ("ip_fabric_forwarding", fwd),
                ]),
            )
            // The server fills `ipam_subnets: [{subnet_uuid}]` for a flat-subnet IPAM.
            .with_ref(
                "network_ipam_refs",
                Ref::by_name(self.names.ipam(ipam_kind)),
            )
            .with_ref("tag_refs", tag_ref(&self.app_tag()));
        let mut providers = Vec::new();
        if forwarding && !self.fault(MockFault::FabricForwardingIgnored) {
            providers.push(Ref::by_name(fq(&IP_FABRIC)));
        }
        vn.refs.insert("virtual_network_refs".into(), providers);
        vn.refs.insert(
            "network_policy_refs".into(),
            policies
                .iter()
                .map(|p| Ref::by_name(p.clone()).with_attr(policy_seq()))
                .collect(),
        );
        Item::Object(vn)
    }

    fn vn_policy(&self, fq_name: Vec<String>, rules: Vec<Value>) -> Item {
        Item::Object(
            VncObject::new("network-policy", fq_name)
                .with_prop("network_policy_entries", json!({"policy_rule": rules}))
                .with_prop("annotations", self.ann(&[])),
        )
    }

    /// Projects `<cluster>-default`, the IPAMs, the default pod and service networks, their
    /// network policies, the global vrouter config, the public network.
    pub fn cluster_items(&self) -> Vec<Item> {
        let n = &self.names;
        let mut items = Vec::new();
        let uid = self
            .cache
            .namespaces
            .get("default")
            .and_then(|ns| ns.metadata.uid.clone())
            .unwrap_or_default();
        let mut project = VncObject::new("project", n.project("default")).with_prop(
            "annotations",
            self.ann(&[
                ("namespace", "default"),
                ("name", "default"),
                ("k8s_uuid", &uid),
                ("isolated", "False"),
            ]),
        );
        project.uuid = uid.clone();
        items.push(Item::Object(project));
        items.push(self.ipam("pod", &self.cfg.pod_subnets));
        items.push(self.ipam("service", &self.cfg.service_subnets));
        items.push(self.ipam("ip-fabric", &self.cfg.ip_fabric_subnets));

        let ip_fabric_np = n.cluster_policy("ip-fabric");
        let service_np = n.cluster_policy("service");
        let pod_service_np = n.cluster_policy("pod-service");
        let pod_vn = n.pod_network("default");
        let service_vn = n.service_network("default");
        let np_addr = |f: &[String]| json!({"network_policy": f.join(":")});
        items.push(self.vn_policy(
            ip_fabric_np.clone(),
            vec![np_rule(np_addr(&ip_fabric_np), vn_addr(&fq(&IP_FABRIC)))],
        ));
        items.push(self.vn_policy(
            service_np.clone(),
            vec![np_rule(np_addr(&service_np), vn_addr(&service_vn))],
        ));
        // isolation-leak: the default pod-service policy joins every network attached to it,
        // and isolated pod networks get attached to it.
        let pod_service_rule = if self.fault(MockFault::IsolationLeak) {
            np_rule(np_addr(&pod_service_np), np_addr(&pod_service_np))
        } else {
            np_rule(vn_addr(&pod_vn), vn_addr(&service_vn))
        };
        items.push(self.vn_policy(pod_service_np.clone(), vec![pod_service_rule]));

        let fwd = self.forwarding_of("default");
        items.push(self.k8s_network(
            pod_vn,
            "default",
            if fwd { "ip-fabric" } else { "pod" },
            fwd,
            self.snat_of("default"),
            &[ip_fabric_np.clone(), pod_service_np.clone()],
        ));
        items.push(self.k8s_network(
            service_vn,
            "default",
            "service",
            false,
            false,
            &[ip_fabric_np.clone(), service_np, pod_service_np],
        ));
        items.push(Item::Link(Link {
            from_type: "virtual-network".into(),
            from_fq: fq(&IP_FABRIC),
            to_type: "network-policy".into(),
            to_fq: ip_fabric_np,
            attr: Some(policy_seq()),
        }));
        items.push(self.tag(&self.app_tag()));

        // Global vrouter config: fabric SNAT port pools (always), encapsulation, link-local.
        let mut gvc = VncObject::new(
            "global-vrouter-config",
            fq(&[GLOBAL_SYSTEM_CONFIG, "default-global-vrouter-config"]),
        )
        .with_prop(
            "port_translation_pools",
            json!({"port_translation_pool": [
                {"protocol": "tcp", "port_range": {"start_port": 56000, "end_port": 57023}},
                {"protocol": "udp", "port_range": {"start_port": 57024, "end_port": 58047}},
            ]}),
        );
        if !self.cfg.encapsulation.is_empty() {
            gvc.set_prop(
                "encapsulation_priorities",
                json!({"encapsulation": self.cfg.encapsulation}),
            );
        }
        if let Some((ip, port)) = self.cfg.kubernetes_api
            && let Some(svc) = self
                .cache
                .services
                .get(&("default".to_owned(), "kubernetes".to_owned()))
            && let Some(cip) = svc.spec.as_ref().and_then(|s| s.cluster_ip.clone())
        {
            let sport = svc
                .spec
                .as_ref()
                .and_then(|s| s.ports.as_ref())
                .and_then(|p| p.first())
                .map_or(443, |p| p.port);
            gvc.set_prop(
                "linklocal_services",
                json!({"linklocal_service_entry": [{
                    "linklocal_service_name": format!("default-domain-{}-kubernetes-{sport}", n.project_name("default")),
                    "linklocal_service_ip": cip,
                    "linklocal_service_port": sport,
                    "ip_fabric_DNS_service_name": "",
                    "ip_fabric_service_ip": [ip.to_string()],
                    "ip_fabric_service_port": port,
                }]}),
            );
        }
        items.push(Item::Props(gvc));

        if !self.cfg.public_fip_pool.is_empty() {
            let subnets: Vec<Value> = self
                .cfg
                .public_fip_pool
                .iter()
                .map(|s| json!({"subnet": {"ip_prefix": s.network().to_string(), "ip_prefix_len": s.prefix_len()}}))
                .collect();
            items.push(Item::Object(
                VncObject::new("virtual-network", n.public_network())
                    .with_prop("router_external", true)
                    .with_prop("annotations", self.ann(&[("public_fip_pool", "True")]))
                    .with_ref(
                        "network_ipam_refs",
                        Ref::by_name(fq(&[
                            "default-domain",
                            "default-project",
                            "default-network-ipam",
                        ]))
                        .with_attr(json!({"ipam_subnets": subnets})),
                    ),
            ));
            items.push(Item::Object(
                VncObject::new("floating-ip-pool", n.public_pool())
                    .with_prop("annotations", self.ann(&[])),
            ));
        }
        items
    }

    // -----------------------------------------------------------------------------------
    // Namespaces.

    /// The per-namespace allow rules of `<cluster>-allowall`.
    pub fn namespace_rules(&self, ns: &str) -> Vec<RulePlan> {
        let tag = Endpoint::Tags(vec![format!("namespace={ns}")]);
        vec![
            RulePlan::all(
                format!("{}-Namespace-{ns}-ingress", self.cl()),
                Action::Pass,
                Endpoint::Any,
                tag.clone(),
            ),
            RulePlan::all(
                format!("{}-Namespace-{ns}-egress", self.cl()),
                Action::Pass,
                tag,
                Endpoint::Any,
            ),
        ]
    }

    /// Project, default security group, namespace tag and allow rules; for isolated
    /// namespaces the pod and service networks and their network policy.
    pub fn namespace_items(&self, ns: &str) -> Vec<Item> {
        let Some(nso) = self.cache.namespaces.get(ns) else {
            return Vec::new();
        };
        let n = &self.names;
        let mut items = Vec::new();
        let uid = nso.metadata.uid.clone().unwrap_or_default();
        let isolated = self.is_isolated(ns);
        if ns != "default" {
            let mut project = VncObject::new("project", n.project(ns)).with_prop(
                "annotations",
                self.ann(&[
                    ("namespace", ns),
                    ("name", ns),
                    ("k8s_uuid", &uid),
                    ("isolated", if isolated { "True" } else { "False" }),
                ]),
            );
            project.uuid = uid.clone();
            items.push(Item::Object(project));
        }
        let sg_rule = |dir: &str, ether: &str, prefix: &str, len: u8| {
            let local = json!({"security_group": "local"});
            let remote = json!({"subnet": {"ip_prefix": prefix, "ip_prefix_len": len}});
            let (src, dst) = if dir == "ingress" {
                (remote, local)
            } else {
                (local, remote)
            };
            json!({
                "direction": ">", "protocol": "any", "ethertype": ether,
                "src_addresses": [src], "dst_addresses": [dst],
                "src_ports": [{"start_port": 0, "end_port": 65535}],
                "dst_ports": [{"start_port": 0, "end_port": 65535}],
            })
        };
        items.push(Item::Object(
            VncObject::new("security-group", n.default_sg(ns))
                .with_prop(
                    "security_group_entries",
                    json!({"policy_rule": [
                        sg_rule("ingress", "IPv4", "0.0.0.0", 0),
                        sg_rule("ingress", "IPv6", "::", 0),
                        sg_rule("egress", "IPv4", "0.0.0.0", 0),
                        sg_rule("egress", "IPv6", "::", 0),
                    ]}),
                )
                .with_prop("annotations", self.ann(&[("namespace", ns)])),
        ));
        let ns_tag = format!("namespace={ns}");
        items.push(self.tag(&ns_tag));
        for r in self.namespace_rules(ns) {
            items.push(Item::Object(r.to_object(self.ann(&[("namespace", ns)]))));
        }
        if isolated && ns != "default" {
            let fwd = self.forwarding_of(ns);
            let pod_vn = n.pod_network(ns);
            let service_vn = n.service_network(ns);
            let own_np = n.ns_pod_service_policy(ns);
            let missing = self.fault(MockFault::IsolatedServiceNetworkMissing);
            let mut pod_policies = Vec::new();
            if !missing {
                pod_policies.push(own_np.clone());
            }
            pod_policies.push(n.cluster_policy("ip-fabric"));
            pod_policies.push(n.cluster_policy("service"));
            if self.fault(MockFault::IsolationLeak) {
                pod_policies.push(n.cluster_policy("pod-service"));
            }
            items.push(self.k8s_network(
                pod_vn.clone(),
                ns,
                if fwd { "ip-fabric" } else { "pod" },
                fwd,
                self.snat_of(ns),
                &pod_policies,
            ));
            if !missing {
                items.push(self.k8s_network(
                    service_vn.clone(),
                    ns,
                    "service",
                    false,
                    false,
                    &[own_np.clone(), n.cluster_policy("ip-fabric")],
                ));
                items.push(self.vn_policy(
                    own_np,
                    vec![np_rule(vn_addr(&pod_vn), vn_addr(&service_vn))],
                ));
            }
            items.push(self.tag(&self.app_tag()));
        }
        items
    }

    // -----------------------------------------------------------------------------------
    // Network attachment definitions and nodes.

    /// The network of a NetworkAttachmentDefinition (`opencontrail.org/cidr`).
    pub fn nad_items(&self, key: &ObjKey) -> Vec<Item> {
        let Some(nad) = self.cache.nads.get(key) else {
            return Vec::new();
        };
        let config = nad
            .data
            .get("spec")
            .and_then(|s| s.get("config"))
            .and_then(Value::as_str)
            .and_then(|c| serde_json::from_str::<Value>(c).ok());
        let cidr = annotation(&nad.metadata, ANN_CIDR)
            .map(str::to_owned)
            .or_else(|| {
                config
                    .as_ref()
                    .and_then(|c| c.get("cidr"))
                    .and_then(Value::as_str)
                    .map(str::to_owned)
            });
        let Some(net) = cidr.and_then(|c| c.parse::<ipnet::Ipv4Net>().ok()) else {
            return Vec::new();
        };
        let fwd = truthy(annotation(&nad.metadata, ANN_FORWARDING)).unwrap_or(false);
        let snat = truthy(annotation(&nad.metadata, ANN_SNAT)).unwrap_or(false);
        let mut vn = VncObject::new("virtual-network", self.nad_network(&key.0, &key.1))
            .with_prop(
                "virtual_network_properties",
                json!({"forwarding_mode": "l3"}),
            )
            .with_prop("fabric_snat", snat && !fwd)
            .with_prop(
                "annotations",
                self.ann(&[
                    ("kind", "NetworkAttachmentDefinition"),
                    ("namespace", &key.0),
                    ("name", &key.1),
                ]),
            )
            .with_ref(
                "network_ipam_refs",
                Ref::by_name(fq(&[
                    "default-domain",
                    "default-project",
                    "default-network-ipam",
                ]))
                .with_attr(json!({"ipam_subnets": [subnet_json(&net.trunc())]})),
            )
            .with_ref("tag_refs", tag_ref(&self.app_tag()));
        let providers = if fwd && !self.fault(MockFault::FabricForwardingIgnored) {
            vec![Ref::by_name(fq(&IP_FABRIC))]
        } else {
            Vec::new()
        };
        vn.refs.insert("virtual_network_refs".into(), providers);
        vec![Item::Object(vn), self.tag(&self.app_tag())]
    }

    /// The virtual router of a node (when provisioning is on) with the VMs of the pods on
    /// it; when the router turned out to be someone else's, links to it instead.
    pub fn node_items(&self, name: &str, engine: &Engine) -> Vec<Item> {
        if !self.cfg.provision_virtual_routers {
            return Vec::new();
        }
        let Some(node) = self.cache.nodes.get(name) else {
            return Vec::new();
        };
        let vr_fq = fq(&[GLOBAL_SYSTEM_CONFIG, name]);
        let vms: Vec<String> = self
            .cache
            .pods
            .iter()
            .filter(|(_, p)| !is_host_network(p))
            .filter(|(_, p)| p.spec.as_ref().and_then(|s| s.node_name.as_deref()) == Some(name))
            .map(|((ns, pod), _)| self.names.vm_name(ns, pod))
            .collect();
        if engine.is_foreign(&("virtual-router".into(), vr_fq.clone())) {
            return vms
                .into_iter()
                .map(|vm| {
                    Item::Link(Link {
                        from_type: "virtual-router".into(),
                        from_fq: vr_fq.clone(),
                        to_type: "virtual-machine".into(),
                        to_fq: vec![vm],
                        attr: None,
                    })
                })
                .collect();
        }
        let ip = node
            .status
            .as_ref()
            .and_then(|s| s.addresses.as_ref())
            .and_then(|a| a.iter().find(|a| a.type_ == "InternalIP"))
            .map(|a| a.address.clone());
        let mut vr = VncObject::new("virtual-router", vr_fq)
            .with_prop("annotations", self.ann(&[("kind", "Node"), ("name", name)]));
        if let Some(ip) = ip {
            vr.set_prop("virtual_router_ip_address", ip);
        }
        vr.refs.insert(
            "virtual_machine_refs".into(),
            vms.into_iter().map(|vm| Ref::by_name(vec![vm])).collect(),
        );
        vec![Item::Object(vr)]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn world(profile: Profile, faults: &[MockFault]) -> World {
        let mut cfg = KubeManagerConfig::default().with_profile(profile);
        for f in faults {
            cfg = cfg.with_fault(*f);
        }
        World::new(cfg)
    }

    fn add_ns(w: &mut World, name: &str, labels: Value) {
        let ns = serde_json::from_value(
            json!({"metadata": {"name": name, "uid": format!("uid-{name}"), "labels": labels}}),
        )
        .expect("ns");
        w.cache.namespaces.insert(name.into(), ns);
    }

    fn add_pod(w: &mut World, ns: &str, name: &str, labels: Value, ports: Value) {
        let pod = serde_json::from_value(json!({
            "metadata": {"name": name, "namespace": ns, "uid": format!("uid-{ns}-{name}"), "labels": labels},
            "spec": {"containers": [{"name": "c", "ports": ports}]}
        }))
        .expect("pod");
        w.cache.pods.insert((ns.into(), name.into()), pod);
    }

    fn add_np(w: &mut World, ns: &str, name: &str, spec: Value) {
        let np = serde_json::from_value(json!({"metadata": {"name": name, "namespace": ns, "uid": format!("uid-{name}")}, "spec": spec}))
            .expect("np");
        let key = (ns.to_owned(), name.to_owned());
        w.cache.netpols.insert(key.clone(), np);
        w.np_order.push(key.clone());
        w.update_np(&key);
    }

    fn objects<'a>(items: &'a [Item], type_name: &str) -> Vec<&'a VncObject> {
        items
            .iter()
            .filter_map(|i| match i {
                Item::Object(o) if o.type_name == type_name => Some(o),
                _ => None,
            })
            .collect()
    }

    fn vmi_tags(items: &[Item]) -> Vec<String> {
        objects(items, "virtual-machine-interface")[0]
            .refs_of("tag_refs")
            .iter()
            .map(|r| r.to.join(":"))
            .collect()
    }

    fn rule<'a>(items: &'a [Item], suffix: &str) -> Option<&'a VncObject> {
        objects(items, "firewall-rule")
            .into_iter()
            .find(|r| r.name().ends_with(suffix))
    }

    #[test]
    fn r50_pod_tags_flatten_labels() {
        let mut w = world(Profile::R50, &[]);
        add_ns(&mut w, "x", json!({"team": "red", "app": "ns-wins"}));
        add_pod(
            &mut w,
            "x",
            "a",
            json!({"app": "web", "application": "x", "Tier": "fe"}),
            json!([]),
        );
        let items = w.pod_items(&("x".into(), "a".into()), &Engine::new("k8s"));
        let mut tags = vmi_tags(&items);
        tags.sort();
        // The namespace label overrides the pod's; `application` is the APS binding; tag
        // types are lower-cased; `namespace=<ns>` last.
        assert_eq!(tags, ["app=ns-wins", "namespace=x", "team=red", "tier=fe"]);
        let vm = &objects(&items, "virtual-machine")[0];
        assert_eq!(vm.uuid, "uid-x-a");
        assert_eq!(vm.fq_name, ["k8s__x__a"]);
        assert_eq!(objects(&items, "instance-ip").len(), 1);
    }

    #[test]
    fn upstream_selectors_become_membership_tags() {
        let mut w = world(Profile::Upstream, &[]);
        add_ns(&mut w, "x", json!({"env": "prod"}));
        add_ns(&mut w, "y", json!({"env": "dev"}));
        add_pod(&mut w, "x", "db", json!({"app": "db"}), json!([]));
        add_pod(&mut w, "y", "client", json!({"app": "client"}), json!([]));
        add_pod(&mut w, "x", "client", json!({"app": "client"}), json!([]));
        // Ingress to x/db from clients of namespaces whose env is NOT prod (AND of both
        // selectors, matchExpressions honoured).
        add_np(
            &mut w,
            "x",
            "from-dev",
            json!({
                "podSelector": {"matchLabels": {"app": "db"}},
                "ingress": [{"from": [{
                    "namespaceSelector": {"matchExpressions": [{"key": "env", "operator": "NotIn", "values": ["prod"]}]},
                    "podSelector": {"matchLabels": {"app": "client"}}}],
                    "ports": [{"protocol": "SCTP", "port": 9000, "endPort": 9010}]}]
            }),
        );
        assert!(w.rebuild_predicates());
        let e = Engine::new("k8s");
        let db = w.pod_items(&("x".into(), "db".into()), &e);
        let r = rule(&db, "__from-dev__ingress-0-0-0").expect("allow rule");
        let peer = r.fields["endpoint_1"]["tags"][0]
            .as_str()
            .expect("peer")
            .to_owned();
        assert!(peer.starts_with("label=k8s-pods-"), "{peer}");
        assert_eq!(
            r.fields["endpoint_2"]["tags"],
            json!(["application=k8s__x__db"])
        );
        assert_eq!(r.fields["service"]["protocol"], "sctp");
        assert_eq!(
            r.fields["service"]["dst_ports"],
            json!({"start_port": 9000, "end_port": 9010})
        );
        assert!(vmi_tags(&db).contains(&"application=k8s__x__db".to_owned()));
        // Egress is not isolated: the pod's egress passes; ingress is denied after the allows.
        let eg = rule(&db, "__egress-isolation").expect("egress");
        assert_eq!(eg.fields["action_list"]["simple_action"], "pass");
        let ing = rule(&db, "__ingress-isolation").expect("ingress");
        assert_eq!(ing.fields["action_list"]["simple_action"], "deny");
        // Only y/client is in the peer set.
        let y = w.pod_items(&("y".into(), "client".into()), &e);
        assert!(vmi_tags(&y).contains(&peer));
        let x = w.pod_items(&("x".into(), "client".into()), &e);
        assert!(!vmi_tags(&x).contains(&peer));
        assert!(!vmi_tags(&x).iter().any(|t| t.starts_with("application=")));
    }

    #[test]
    fn upstream_named_ports_resolve_on_the_destination() {
        let mut w = world(Profile::Upstream, &[]);
        add_ns(&mut w, "x", json!({}));
        add_pod(
            &mut w,
            "x",
            "s1",
            json!({"app": "server"}),
            json!([{"containerPort": 8080, "name": "http"}]),
        );
        add_pod(
            &mut w,
            "x",
            "s2",
            json!({"app": "server"}),
            json!([{"containerPort": 9090, "name": "http"}]),
        );
        add_pod(&mut w, "x", "c", json!({"app": "client"}), json!([]));
        add_np(
            &mut w,
            "x",
            "out",
            json!({
                "podSelector": {"matchLabels": {"app": "client"}}, "policyTypes": ["Egress"],
                "egress": [{"to": [{"podSelector": {"matchLabels": {"app": "server"}}}], "ports": [{"port": "http"}]}]
            }),
        );
        add_np(
            &mut w,
            "x",
            "in",
            json!({
                "podSelector": {"matchLabels": {"app": "server"}},
                "ingress": [{"ports": [{"port": "http"}]}]
            }),
        );
        w.rebuild_predicates();
        let e = Engine::new("k8s");
        let c = w.pod_items(&("x".into(), "c".into()), &e);
        for n in [8080, 9090] {
            let r = rule(&c, &format!("__out__egress-0-0-0-{n}")).expect("per-number rule");
            let tags = r.fields["endpoint_2"]["tags"].as_array().expect("tags");
            assert_eq!(tags.len(), 2);
            assert_eq!(tags[1], format!("label=k8s-port-tcp-http-{n}"));
            assert_eq!(r.fields["service"]["dst_ports"]["start_port"], n);
        }
        let s1 = w.pod_items(&("x".into(), "s1".into()), &e);
        assert!(vmi_tags(&s1).contains(&"label=k8s-port-tcp-http-8080".to_owned()));
        let r = rule(&s1, "__in__ingress-0-any-0").expect("ingress rule");
        assert_eq!(r.fields["service"]["dst_ports"]["start_port"], 8080);
        assert_eq!(r.fields["endpoint_1"], json!({"any": true}));
        // Faults: named ports unresolved (no rule), egress rules dropped (isolation stays).
        let mut w2 = world(
            Profile::Upstream,
            &[
                MockFault::NamedPortsUnresolved,
                MockFault::EgressRulesDropped,
            ],
        );
        w2.cache = std::mem::take(&mut w.cache);
        w2.np_order = w.np_order.clone();
        for k in w2.np_order.clone() {
            w2.update_np(&k);
        }
        w2.rebuild_predicates();
        let c = w2.pod_items(&("x".into(), "c".into()), &e);
        assert!(rule(&c, "__out__egress-0-0-0-8080").is_none());
        assert_eq!(
            rule(&c, "__egress-isolation").expect("iso").fields["action_list"]["simple_action"],
            "deny"
        );
        let s1 = w2.pod_items(&("x".into(), "s1".into()), &e);
        assert!(rule(&s1, "__in__ingress-0-any-0").is_none());
    }

    #[test]
    fn upstream_order_fault_puts_isolation_first() {
        let mut w = world(Profile::Upstream, &[MockFault::FirewallPolicyOrderBroken]);
        add_ns(&mut w, "x", json!({}));
        add_pod(&mut w, "x", "a", json!({}), json!([]));
        add_np(
            &mut w,
            "x",
            "all",
            json!({"podSelector": {}, "ingress": [{}]}),
        );
        w.rebuild_predicates();
        let items = w.pod_items(&("x".into(), "a".into()), &Engine::new("k8s"));
        let fp = objects(&items, "firewall-policy")[0];
        let first = &fp.refs_of("firewall_rule_refs")[0];
        assert!(
            first.to[1].ends_with("__egress-isolation"),
            "{:?}",
            first.to
        );
    }
}
