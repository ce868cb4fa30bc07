//! The typed configuration model the forwarding state is compiled from.

use std::collections::{HashMap, HashSet};
use std::net::Ipv4Addr;

use harness_contrail_vnc::types::{
    AddressGroup, AddressType, ApplicationPolicySet, FirewallPolicy, FirewallRule,
    FirewallRuleEndpointType, NetworkPolicy, PolicyRuleType, PortType, Resource, Tag,
    VirtualNetwork,
};
use harness_contrail_vnc::{Ref, VncObject};
use harness_scenario::Encapsulation;
use ipnet::Ipv4Net;
use serde_json::Value;

use super::Snapshot;
use crate::wire::frame::Mac;

/// fq_name of the ip-fabric (provider) network.
pub const IP_FABRIC_FQ: &str = "default-domain:default-project:ip-fabric";

/// A set of tag ids (`0xTTTTVVVV`), sorted.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct TagSet {
    ids: Vec<u32>,
}

impl TagSet {
    /// A set of the given ids.
    pub fn new(mut ids: Vec<u32>) -> Self {
        ids.sort_unstable();
        ids.dedup();
        TagSet { ids }
    }

    /// The ids, sorted.
    pub fn ids(&self) -> &[u32] {
        &self.ids
    }

    /// Whether every id of `wanted` (sorted) is in the set.
    pub fn contains_all(&self, wanted: &[u32]) -> bool {
        wanted.iter().all(|w| self.ids.binary_search(w).is_ok())
    }

    /// Whether `id` is in the set.
    pub fn contains(&self, id: u32) -> bool {
        self.ids.binary_search(&id).is_ok()
    }

    /// The id of the first tag of type `type_id`.
    pub fn of_type(&self, type_id: u32) -> Option<u32> {
        self.ids.iter().copied().find(|id| id >> 16 == type_id)
    }
}

/// A virtual network.
#[derive(Debug, Clone, PartialEq)]
pub struct Network {
    /// uuid.
    pub uuid: String,
    /// fq_name joined by `:`.
    pub fq: String,
    /// Subnets (from the IPAM references; flat subnets from the IPAM itself).
    pub subnets: Vec<Ipv4Net>,
    /// Addresses the vrouter owns in this network (gateways and DNS servers).
    pub gateways: Vec<Ipv4Addr>,
    /// Attached network policies (fq strings) in sequence order.
    pub policies: Vec<String>,
    /// Provider link to ip-fabric: ip-fabric forwarding.
    pub fabric_forwarding: bool,
    /// Fabric SNAT.
    pub fabric_snat: bool,
    /// VXLAN network identifier.
    pub vni: u32,
    /// Tag ids set on the network.
    pub tags: Vec<u32>,
    /// Parent project uuid.
    pub project: Option<String>,
}

impl Network {
    /// Whether this is the ip-fabric network.
    pub fn is_ip_fabric(&self) -> bool {
        self.fq == IP_FABRIC_FQ
    }
}

/// Which side of a service instance an interface is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ServiceSide {
    /// The left interface.
    Left,
    /// The right interface.
    Right,
}

/// A virtual machine interface (a pod's interface, a VIP, a service instance port).
#[derive(Debug, Clone, PartialEq)]
pub struct Interface {
    /// uuid.
    pub uuid: String,
    /// fq_name joined by `:`.
    pub fq: String,
    /// Index of its network in [`Model::networks`].
    pub network: usize,
    /// IPv4 addresses from its instance IPs (primary first).
    pub ips: Vec<Ipv4Addr>,
    /// MAC address.
    pub mac: Mac,
    /// Virtual machine uuid.
    pub vm: Option<String>,
    /// Compute node (virtual-router name) hosting it, from the virtual-router ↔ VM link.
    pub node: Option<String>,
    /// Security group uuids.
    pub security_groups: Vec<String>,
    /// Port security on (security groups apply).
    pub port_security: bool,
    /// Effective tags: the interface's, then the VM's, the network's and the project's (first
    /// writer wins per tag type; `label` tags accumulate).
    pub tags: TagSet,
    /// `virtual_machine_interface_device_owner`.
    pub device_owner: Option<String>,
    /// Service instance (fq string) and side, for service-instance ports.
    pub service: Option<(String, ServiceSide)>,
}

/// A destination port translation of a floating IP.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PortMapping {
    /// IP protocol number.
    pub proto: u8,
    /// Port on the floating IP.
    pub src_port: u16,
    /// Port on the interface.
    pub dst_port: u16,
}

/// A floating IP (an external address, or a service VIP with port mappings).
#[derive(Debug, Clone, PartialEq)]
pub struct FloatingIp {
    /// uuid.
    pub uuid: String,
    /// fq_name joined by `:`.
    pub fq: String,
    /// The address.
    pub address: Ipv4Addr,
    /// Index of the network it lives in (the instance IP's or the pool's).
    pub network: usize,
    /// Interfaces it is attached to (uuids, sorted): several make an ECMP group.
    pub interfaces: Vec<String>,
    /// `ingress`, `egress` or `both`.
    pub direction: String,
    /// Port mappings (used when enabled).
    pub port_mappings: Vec<PortMapping>,
    /// Whether only mapped ports are translated.
    pub port_mappings_enable: bool,
}

/// Action of a network-policy, security-group or firewall rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PolicyAction {
    /// Let the flow through.
    Pass,
    /// Drop the flow.
    Deny,
}

/// An address of a network-policy or security-group rule.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum AddrMatch {
    /// Anything.
    Any,
    /// A network by fq string.
    Network(String),
    /// Every network the policy (fq string) is attached to.
    PolicyNetworks(String),
    /// A prefix.
    Subnet(Ipv4Net),
    /// The interface the group is applied to (security groups) or the local network.
    Local,
    /// Members of another security group (fq string).
    SecurityGroup(String),
}

/// A port range.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PortRange {
    /// First port.
    pub start: u16,
    /// Last port.
    pub end: u16,
}

impl PortRange {
    /// All ports.
    pub const ANY: PortRange = PortRange {
        start: 0,
        end: u16::MAX,
    };

    /// Whether `port` is inside.
    pub fn contains(&self, port: u16) -> bool {
        self.start <= port && port <= self.end
    }

    fn from_port_type(p: &PortType) -> PortRange {
        if p.start_port < 0 || p.end_port < 0 {
            return PortRange::ANY;
        }
        let start = p.start_port.clamp(0, 65535) as u16;
        let end = p.end_port.clamp(0, 65535) as u16;
        PortRange {
            start,
            end: end.max(start),
        }
    }
}

/// Direction of a rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RuleDirection {
    /// `>`: from the first to the second endpoint.
    Forward,
    /// `<`: from the second to the first.
    Reverse,
    /// `<>`: both ways.
    Both,
}

impl RuleDirection {
    fn parse(s: Option<&str>) -> RuleDirection {
        match s.map(str::trim) {
            Some("<>") => RuleDirection::Both,
            Some("<") => RuleDirection::Reverse,
            _ => RuleDirection::Forward,
        }
    }
}

/// A network-policy or security-group rule.
#[derive(Debug, Clone, PartialEq)]
pub struct PolicyRule {
    /// `<policy fq>:rule-<index>` (or the rule uuid).
    pub name: String,
    /// Direction.
    pub direction: RuleDirection,
    /// Protocol number (`None` = any).
    pub proto: Option<u8>,
    /// Sources.
    pub src: Vec<AddrMatch>,
    /// Destinations.
    pub dst: Vec<AddrMatch>,
    /// Source ports.
    pub src_ports: Vec<PortRange>,
    /// Destination ports.
    pub dst_ports: Vec<PortRange>,
    /// Action.
    pub action: PolicyAction,
    /// Service instances to chain through (fq strings), in order.
    pub services: Vec<String>,
}

/// A security group.
#[derive(Debug, Clone, PartialEq)]
pub struct SecurityGroup {
    /// fq string.
    pub fq: String,
    /// Rules.
    pub rules: Vec<PolicyRule>,
}

/// An endpoint of a firewall rule.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum FirewallEndpoint {
    /// Any workload or address.
    Any,
    /// Workloads carrying all these tag ids (sorted).
    Tags(Vec<u32>),
    /// Addresses in any of the prefixes.
    Prefixes(Vec<Ipv4Net>),
    /// Workloads in the network (fq string).
    Network(String),
    /// An endpoint that names something missing: matches nothing.
    Unresolved(String),
}

/// A firewall rule.
#[derive(Debug, Clone, PartialEq)]
pub struct FirewallRuleConfig {
    /// uuid.
    pub uuid: String,
    /// fq string (`default-policy-management:<name>`).
    pub name: String,
    /// Action.
    pub action: PolicyAction,
    /// Protocol (`None` = any).
    pub proto: Option<u8>,
    /// Source ports.
    pub src_ports: PortRange,
    /// Destination ports.
    pub dst_ports: PortRange,
    /// First endpoint.
    pub endpoint_1: FirewallEndpoint,
    /// Second endpoint.
    pub endpoint_2: FirewallEndpoint,
    /// Direction.
    pub direction: RuleDirection,
    /// Tag types both ends must share (only when `match_tags` is set).
    pub match_tag_types: Vec<u32>,
}

/// A firewall policy: rule uuids in sequence order.
#[derive(Debug, Clone, PartialEq)]
pub struct FirewallPolicyConfig {
    /// fq string.
    pub fq: String,
    /// Rule uuids in sequence order.
    pub rules: Vec<String>,
}

/// An application policy set.
#[derive(Debug, Clone, PartialEq)]
pub struct Aps {
    /// fq string.
    pub fq: String,
    /// Applies to every interface.
    pub all_applications: bool,
    /// `application` tag ids binding it.
    pub application_tags: Vec<u32>,
    /// Firewall policy uuids in sequence order.
    pub policies: Vec<String>,
}

/// A service instance's ports.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ServiceInstance {
    /// Left interface uuids.
    pub left: Vec<String>,
    /// Right interface uuids.
    pub right: Vec<String>,
}

/// A compute node as the config knows it.
#[derive(Debug, Clone, PartialEq)]
pub struct VirtualRouter {
    /// Name (last element of the fq_name).
    pub name: String,
    /// `virtual_router_ip_address`.
    pub ip: Option<Ipv4Addr>,
}

/// A fabric SNAT port pool.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PortPool {
    /// IP protocol number.
    pub proto: u8,
    /// First port.
    pub start: u16,
    /// Last port.
    pub end: u16,
}

/// A member of a load-balancer pool: where the proxy opens its backend connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LbMember {
    /// `loadbalancer_member_properties.address` (for an ingress: the backend service's
    /// ClusterIP).
    pub address: Ipv4Addr,
    /// `loadbalancer_member_properties.protocol_port`.
    pub port: u16,
}

/// A load-balancer pool (one per backend of a listener).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LbPool {
    /// fq string.
    pub fq: String,
    /// `loadbalancer_pool_properties.protocol`.
    pub protocol: String,
    /// The `type` annotation kube-manager writes (`default` for the default backend).
    pub default: bool,
    /// The `path` annotation (the ingress rule's path).
    pub path: String,
    /// Members, in fq order.
    pub members: Vec<LbMember>,
}

/// A load-balancer listener.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LbListener {
    /// fq string.
    pub fq: String,
    /// `HTTP`, `TERMINATED_HTTPS`, `TCP`, ….
    pub protocol: String,
    /// `protocol_port`.
    pub port: u16,
    /// Its pools: the default backend's first, then by path.
    pub pools: Vec<LbPool>,
}

/// A load balancer (`loadbalancer` with its listeners, pools and members).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoadBalancer {
    /// uuid.
    pub uuid: String,
    /// fq string.
    pub fq: String,
    /// `loadbalancer_provider`: `native` (ECMP floating IPs, kube-manager's services) or
    /// `opencontrail` (a haproxy, kube-manager's ingresses).
    pub provider: String,
    /// The VIP interface (uuid), when it exists.
    pub vip_interface: Option<String>,
    /// Listeners, by port.
    pub listeners: Vec<LbListener>,
}

/// The typed configuration.
#[derive(Debug, Clone, Default)]
pub struct Model {
    /// Networks.
    pub networks: Vec<Network>,
    /// Network index by fq string.
    pub network_by_fq: HashMap<String, usize>,
    /// Interfaces.
    pub interfaces: Vec<Interface>,
    /// Interface index by uuid.
    pub interface_by_uuid: HashMap<String, usize>,
    /// Floating IPs.
    pub floating_ips: Vec<FloatingIp>,
    /// Network policies by fq string.
    pub policies: HashMap<String, Vec<PolicyRule>>,
    /// Security groups by uuid.
    pub security_groups: HashMap<String, SecurityGroup>,
    /// Firewall rules by uuid.
    pub firewall_rules: HashMap<String, FirewallRuleConfig>,
    /// Firewall policies by uuid.
    pub firewall_policies: HashMap<String, FirewallPolicyConfig>,
    /// Application policy sets.
    pub application_policy_sets: Vec<Aps>,
    /// Tag names (`type=value`) by id.
    pub tag_names: HashMap<u32, String>,
    /// Service instances by fq string.
    pub service_instances: HashMap<String, ServiceInstance>,
    /// Compute nodes.
    pub virtual_routers: Vec<VirtualRouter>,
    /// Encapsulation priority (global-vrouter-config; default MPLSoUDP, MPLSoGRE, VXLAN).
    pub encapsulation: Vec<Encapsulation>,
    /// Fabric SNAT port pools.
    pub port_pools: Vec<PortPool>,
    /// Load balancers, by fq string.
    pub load_balancers: Vec<LoadBalancer>,
    /// Objects skipped, and why.
    pub warnings: Vec<String>,
}

/// Protocol name or number → number; `any` → `None`; unknown → `Err`.
pub(crate) fn protocol_number(p: Option<&str>) -> Result<Option<u8>, String> {
    let Some(p) = p else { return Ok(None) };
    match p.trim().to_ascii_lowercase().as_str() {
        "" | "any" => Ok(None),
        "tcp" => Ok(Some(6)),
        "udp" => Ok(Some(17)),
        "icmp" => Ok(Some(1)),
        "sctp" => Ok(Some(132)),
        n => n
            .parse::<u8>()
            .map(Some)
            .map_err(|_| format!("unknown protocol '{p}'")),
    }
}

fn fq(obj: &VncObject) -> String {
    obj.fq_name_str()
}

fn parse_mac(s: &str) -> Option<Mac> {
    let parts: Vec<&str> = s.split(':').collect();
    if parts.len() != 6 {
        return None;
    }
    let mut m = [0u8; 6];
    for (i, p) in parts.iter().enumerate() {
        m[i] = u8::from_str_radix(p, 16).ok()?;
    }
    Some(m)
}

/// A deterministic locally administered MAC from a uuid.
fn mac_from(uuid: &str) -> Mac {
    let h = fnv(uuid.as_bytes());
    let b = h.to_be_bytes();
    [0x02, b[3], b[4], b[5], b[6], b[7]]
}

pub(crate) fn fnv(data: &[u8]) -> u64 {
    let mut h = 0xcbf2_9ce4_8422_2325u64;
    for b in data {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

struct Ctx<'a> {
    snap: &'a Snapshot,
    warnings: Vec<String>,
    tag_by_uuid: HashMap<String, u32>,
    tag_by_fq: HashMap<String, u32>,
}

impl Ctx<'_> {
    fn warn(&mut self, obj: &VncObject, what: impl std::fmt::Display) {
        self.warnings
            .push(format!("{} {}: {what}", obj.type_name, obj.fq_name_str()));
    }

    fn tags_of(&self, obj: Option<&VncObject>) -> Vec<u32> {
        let Some(obj) = obj else { return Vec::new() };
        obj.refs_of("tag_refs")
            .iter()
            .filter_map(|r| self.tag_id(r))
            .collect()
    }

    fn tag_id(&self, r: &Ref) -> Option<u32> {
        self.tag_by_uuid
            .get(&r.uuid)
            .or_else(|| self.tag_by_fq.get(&r.to.join(":")))
            .copied()
    }

    fn by_ref<'s>(&'s self, type_name: &str, r: &Ref) -> Option<&'s VncObject> {
        if !r.uuid.is_empty()
            && let Some(o) = self.snap.get(type_name, &r.uuid)
        {
            return Some(o);
        }
        self.snap
            .objects_of(type_name)
            .find(|o| !r.to.is_empty() && o.fq_name == r.to)
    }
}

fn address_matches(a: &AddressType) -> Vec<AddrMatch> {
    let mut out = Vec::new();
    if let Some(s) = &a.subnet
        && let Ok(n) = s.cidr().parse::<Ipv4Net>()
    {
        out.push(AddrMatch::Subnet(n.trunc()));
    }
    for s in &a.subnet_list {
        if let Ok(n) = s.cidr().parse::<Ipv4Net>() {
            out.push(AddrMatch::Subnet(n.trunc()));
        }
    }
    if let Some(v) = &a.virtual_network {
        out.push(match v.as_str() {
            "any" => AddrMatch::Any,
            "local" => AddrMatch::Local,
            _ => AddrMatch::Network(v.clone()),
        });
    }
    if let Some(sg) = &a.security_group {
        out.push(match sg.as_str() {
            "local" => AddrMatch::Local,
            "any" => AddrMatch::Any,
            _ => AddrMatch::SecurityGroup(sg.clone()),
        });
    }
    if let Some(p) = &a.network_policy {
        out.push(AddrMatch::PolicyNetworks(p.clone()));
    }
    if out.is_empty() {
        out.push(AddrMatch::Any);
    }
    out
}

fn policy_rules(
    owner: &str,
    rules: &[PolicyRuleType],
    warn: &mut dyn FnMut(String),
) -> Vec<PolicyRule> {
    let mut out = Vec::new();
    for (i, r) in rules.iter().enumerate() {
        let name = format!("{owner}:rule-{i}");
        if r.ethertype.as_deref() == Some("IPv6") {
            continue;
        }
        let proto = match protocol_number(r.protocol.as_deref()) {
            Ok(p) => p,
            Err(e) => {
                warn(format!("{name} skipped: {e}"));
                continue;
            }
        };
        let action = r.action_list.as_ref();
        let services = action.map(|a| a.apply_service.clone()).unwrap_or_default();
        let action = match action.and_then(|a| a.simple_action.as_deref()) {
            Some("deny") | Some("reject") => PolicyAction::Deny,
            _ => PolicyAction::Pass,
        };
        let ports = |p: &[PortType]| {
            if p.is_empty() {
                vec![PortRange::ANY]
            } else {
                p.iter().map(PortRange::from_port_type).collect()
            }
        };
        out.push(PolicyRule {
            name,
            direction: RuleDirection::parse(r.direction.as_deref()),
            proto,
            src: r.src_addresses.iter().flat_map(address_matches).collect(),
            dst: r.dst_addresses.iter().flat_map(address_matches).collect(),
            src_ports: ports(&r.src_ports),
            dst_ports: ports(&r.dst_ports),
            action,
            services,
        });
    }
    out
}

fn seq_key(seq: &str) -> (u64, u64) {
    let (a, b) = seq.split_once('.').unwrap_or((seq, "0"));
    (
        a.trim().parse().unwrap_or(u64::MAX),
        b.trim().parse().unwrap_or(0),
    )
}

/// The value of annotation `key` (`annotations.key_value_pair`) of an object.
fn annotation_of<'o>(obj: &'o VncObject, key: &str) -> Option<&'o str> {
    obj.fields
        .get("annotations")?
        .get("key_value_pair")?
        .as_array()?
        .iter()
        .find(|kv| kv.get("key").and_then(Value::as_str) == Some(key))?
        .get("value")?
        .as_str()
}

fn ipv4(v: Option<&Value>) -> Option<Ipv4Addr> {
    v.and_then(Value::as_str).and_then(|s| s.parse().ok())
}

impl Model {
    /// Builds the typed model. Objects that do not have the expected shape are skipped and
    /// described in [`Model::warnings`].
    pub fn build(snap: &Snapshot) -> Model {
        let mut cx = Ctx {
            snap,
            warnings: Vec::new(),
            tag_by_uuid: HashMap::new(),
            tag_by_fq: HashMap::new(),
        };
        let mut m = Model::default();

        // Tags.
        for obj in snap.objects_of("tag") {
            match Tag::from_object(obj) {
                Ok(t) => match t.id() {
                    Some(id) => {
                        cx.tag_by_uuid.insert(obj.uuid.clone(), id);
                        cx.tag_by_fq.insert(fq(obj), id);
                        m.tag_names.insert(id, obj.name().to_owned());
                    }
                    None => cx.warn(obj, "skipped: no tag_id"),
                },
                Err(e) => cx.warn(obj, format_args!("skipped: {e}")),
            }
        }

        // Global vrouter config.
        for obj in snap.objects_of("global-vrouter-config") {
            if let Some(list) = obj
                .fields
                .get("encapsulation_priorities")
                .and_then(|v| v.get("encapsulation"))
                .and_then(Value::as_array)
            {
                for e in list {
                    match e.as_str() {
                        Some("MPLSoUDP") => m.encapsulation.push(Encapsulation::MplsOverUdp),
                        Some("MPLSoGRE") => m.encapsulation.push(Encapsulation::MplsOverGre),
                        Some("VXLAN") => m.encapsulation.push(Encapsulation::Vxlan),
                        other => cx.warn(obj, format_args!("unknown encapsulation {other:?}")),
                    }
                }
            }
            if let Some(pools) = obj
                .fields
                .get("port_translation_pools")
                .and_then(|v| v.get("port_translation_pool"))
                .and_then(Value::as_array)
            {
                for p in pools {
                    let proto = protocol_number(p.get("protocol").and_then(Value::as_str));
                    let range = p.get("port_range");
                    let port = |k: &str| {
                        range
                            .and_then(|r| r.get(k))
                            .and_then(|v| v.as_u64().or_else(|| v.as_str()?.parse().ok()))
                            .and_then(|v| u16::try_from(v).ok())
                    };
                    match (proto, port("start_port"), port("end_port")) {
                        (Ok(Some(proto)), Some(start), Some(end)) if start <= end => {
                            m.port_pools.push(PortPool { proto, start, end });
                        }
                        _ => cx.warn(obj, format_args!("port translation pool skipped: {p}")),
                    }
                }
            }
        }
        if m.encapsulation.is_empty() {
            m.encapsulation = vec![
                Encapsulation::MplsOverUdp,
                Encapsulation::MplsOverGre,
                Encapsulation::Vxlan,
            ];
        }

        // Networks.
        let mut vns: Vec<&VncObject> = snap.objects_of("virtual-network").collect();
        vns.sort_by_key(|o| fq(o));
        for obj in vns {
            let vn = match VirtualNetwork::from_object(obj) {
                Ok(v) => v,
                Err(e) => {
                    cx.warn(obj, format_args!("skipped: {e}"));
                    continue;
                }
            };
            let mut subnets = Vec::new();
            let mut gateways = Vec::new();
            for r in &vn.network_ipam_refs {
                let attr_subnets = r
                    .attr
                    .as_ref()
                    .map(|a| a.ipam_subnets.clone())
                    .unwrap_or_default();
                let mut entries: Vec<(Option<String>, Option<String>, Option<String>)> =
                    attr_subnets
                        .iter()
                        .filter_map(|s| {
                            s.subnet.as_ref().map(|n| {
                                (
                                    Some(n.cidr()),
                                    s.default_gateway.clone(),
                                    s.dns_server_address.clone(),
                                )
                            })
                        })
                        .collect();
                if entries.is_empty() {
                    // Flat subnet: the IPAM holds the subnets.
                    let ipam_ref = Ref::new(r.to.clone(), r.uuid.clone());
                    if let Some(ipam) = cx.by_ref("network-ipam", &ipam_ref)
                        && let Some(list) = ipam
                            .fields
                            .get("ipam_subnets")
                            .and_then(|v| v.get("subnets"))
                            .and_then(Value::as_array)
                    {
                        for s in list {
                            let cidr = s.get("subnet").and_then(|n| {
                                let p = n.get("ip_prefix")?.as_str()?;
                                let l = n.get("ip_prefix_len")?;
                                let l = l.as_u64().or_else(|| l.as_str()?.parse().ok())?;
                                Some(format!("{p}/{l}"))
                            });
                            let gw = s
                                .get("default_gateway")
                                .and_then(Value::as_str)
                                .map(str::to_owned);
                            let dns = s
                                .get("dns_server_address")
                                .and_then(Value::as_str)
                                .map(str::to_owned);
                            entries.push((cidr, gw, dns));
                        }
                    }
                }
                for (cidr, gw, dns) in entries {
                    let Some(net) = cidr.and_then(|c| c.parse::<Ipv4Net>().ok()) else {
                        continue;
                    };
                    let net = net.trunc();
                    subnets.push(net);
                    let gw = gw
                        .and_then(|g| g.parse::<Ipv4Addr>().ok())
                        .filter(|g| !g.is_unspecified())
                        .unwrap_or_else(|| {
                            Ipv4Addr::from(u32::from(net.network()).saturating_add(1))
                        });
                    gateways.push(gw);
                    if let Some(d) = dns.and_then(|d| d.parse::<Ipv4Addr>().ok())
                        && !d.is_unspecified()
                        && d != gw
                    {
                        gateways.push(d);
                    }
                }
            }
            let mut pols: Vec<(i64, i64, usize, String)> = vn
                .network_policy_refs
                .iter()
                .enumerate()
                .map(|(i, r)| {
                    let s = r.attr.as_ref().and_then(|a| a.sequence).unwrap_or_default();
                    (s.major, s.minor, i, r.to.join(":"))
                })
                .collect();
            pols.sort();
            let vni = vn
                .virtual_network_properties
                .as_ref()
                .and_then(|p| p.vxlan_network_identifier)
                .or(vn.virtual_network_network_id)
                .and_then(|v| u32::try_from(v).ok())
                .unwrap_or_else(|| (fnv(obj.uuid.as_bytes()) & 0xfff) as u32 + 4096);
            let fabric_forwarding = vn
                .virtual_network_refs
                .iter()
                .any(|r| r.to.join(":") == IP_FABRIC_FQ);
            let net = Network {
                uuid: obj.uuid.clone(),
                fq: fq(obj),
                subnets,
                gateways,
                policies: pols.into_iter().map(|p| p.3).collect(),
                fabric_forwarding,
                fabric_snat: vn.fabric_snat.unwrap_or(false) && !fabric_forwarding,
                vni,
                tags: cx.tags_of(Some(obj)),
                project: obj.parent_uuid.clone(),
            };
            m.network_by_fq.insert(net.fq.clone(), m.networks.len());
            m.networks.push(net);
        }

        // Network policies and security groups.
        for obj in snap.objects_of("network-policy") {
            match NetworkPolicy::from_object(obj) {
                Ok(p) => {
                    let owner = fq(obj);
                    let rules = p
                        .network_policy_entries
                        .map(|e| e.policy_rule)
                        .unwrap_or_default();
                    let mut w = Vec::new();
                    let rules = policy_rules(&owner, &rules, &mut |s| w.push(s));
                    for s in w {
                        cx.warn(obj, s);
                    }
                    m.policies.insert(owner, rules);
                }
                Err(e) => cx.warn(obj, format_args!("skipped: {e}")),
            }
        }
        for obj in snap.objects_of("security-group") {
            let entries = obj
                .fields
                .get("security_group_entries")
                .and_then(|v| v.get("policy_rule"))
                .cloned()
                .unwrap_or(Value::Array(Vec::new()));
            match serde_json::from_value::<Vec<PolicyRuleType>>(entries) {
                Ok(rules) => {
                    let owner = fq(obj);
                    let mut w = Vec::new();
                    let rules = policy_rules(&owner, &rules, &mut |s| w.push(s));
                    for s in w {
                        cx.warn(obj, s);
                    }
                    m.security_groups
                        .insert(obj.uuid.clone(), SecurityGroup { fq: owner, rules });
                }
                Err(e) => cx.warn(obj, format_args!("skipped: {e}")),
            }
        }

        // Virtual routers and the VM → node map.
        let mut node_of_vm: HashMap<String, String> = HashMap::new();
        for obj in snap.objects_of("virtual-router") {
            let name = obj.name().to_owned();
            for r in obj.refs_of("virtual_machine_refs") {
                let vm = if r.uuid.is_empty() {
                    cx.by_ref("virtual-machine", r).map(|o| o.uuid.clone())
                } else {
                    Some(r.uuid.clone())
                };
                if let Some(vm) = vm {
                    node_of_vm.insert(vm, name.clone());
                }
            }
            m.virtual_routers.push(VirtualRouter {
                name,
                ip: ipv4(obj.fields.get("virtual_router_ip_address")),
            });
        }

        // Instance IPs by interface.
        let mut ips_of: HashMap<String, Vec<(bool, Ipv4Addr)>> = HashMap::new();
        let mut iip_network: HashMap<String, String> = HashMap::new();
        for obj in snap.objects_of("instance-ip") {
            let Some(addr) = obj.fields.get("instance_ip_address") else {
                continue;
            };
            let Some(addr) = addr.as_str().and_then(|s| s.parse::<Ipv4Addr>().ok()) else {
                if addr.as_str().is_some_and(|s| !s.contains(':')) {
                    cx.warn(obj, "skipped: instance_ip_address is not an address");
                }
                continue;
            };
            let secondary = obj
                .fields
                .get("instance_ip_secondary")
                .and_then(Value::as_bool)
                .unwrap_or(false);
            if let Some(vn) = obj.refs_of("virtual_network_refs").first()
                && let Some(vn) = cx.by_ref("virtual-network", vn)
            {
                iip_network.insert(obj.uuid.clone(), fq(vn));
                iip_network.insert(fq(obj), fq(vn));
            }
            for r in obj.refs_of("virtual_machine_interface_refs") {
                let vmi = if r.uuid.is_empty() {
                    cx.by_ref("virtual-machine-interface", r)
                        .map(|o| o.uuid.clone())
                } else {
                    Some(r.uuid.clone())
                };
                if let Some(vmi) = vmi {
                    ips_of.entry(vmi).or_default().push((secondary, addr));
                }
            }
        }

        // Port tuples → service instances.
        let mut si_of_tuple: HashMap<String, String> = HashMap::new();
        for obj in snap.objects_of("port-tuple") {
            let si = obj.fq_name[..obj.fq_name.len().saturating_sub(1)].join(":");
            si_of_tuple.insert(obj.uuid.clone(), si.clone());
            si_of_tuple.insert(fq(obj), si);
        }
        for obj in snap.objects_of("service-instance") {
            m.service_instances.entry(fq(obj)).or_default();
        }

        // Interfaces.
        let mut vmis: Vec<&VncObject> = snap.objects_of("virtual-machine-interface").collect();
        vmis.sort_by(|a, b| a.uuid.cmp(&b.uuid));
        for obj in vmis {
            let Some(vn_ref) = obj.refs_of("virtual_network_refs").first() else {
                cx.warn(obj, "skipped: no virtual network");
                continue;
            };
            let Some(network) = cx
                .by_ref("virtual-network", vn_ref)
                .and_then(|vn| m.network_by_fq.get(&fq(vn)).copied())
            else {
                cx.warn(obj, "skipped: its virtual network is unknown");
                continue;
            };
            let mut ips = ips_of.remove(&obj.uuid).unwrap_or_default();
            ips.sort();
            let ips: Vec<Ipv4Addr> = ips.into_iter().map(|(_, a)| a).collect();
            let mac = obj
                .fields
                .get("virtual_machine_interface_mac_addresses")
                .and_then(|v| v.get("mac_address"))
                .and_then(Value::as_array)
                .and_then(|a| a.first())
                .and_then(Value::as_str)
                .and_then(parse_mac)
                .unwrap_or_else(|| mac_from(&obj.uuid));
            let vm_obj = obj
                .refs_of("virtual_machine_refs")
                .first()
                .and_then(|r| cx.by_ref("virtual-machine", r));
            let vm = vm_obj.map(|v| v.uuid.clone()).or_else(|| {
                obj.refs_of("virtual_machine_refs")
                    .first()
                    .map(|r| r.uuid.clone())
            });
            let node = vm.as_ref().and_then(|v| node_of_vm.get(v).cloned());
            let security_groups = obj
                .refs_of("security_group_refs")
                .iter()
                .filter_map(|r| cx.by_ref("security-group", r).map(|o| o.uuid.clone()))
                .collect();
            let port_security = obj
                .fields
                .get("port_security_enabled")
                .and_then(Value::as_bool)
                .unwrap_or(true);
            // Effective tags: first writer wins per type, labels accumulate.
            let project = obj
                .parent_uuid
                .as_ref()
                .and_then(|p| snap.get("project", p))
                .or_else(|| {
                    let pfq = &obj.fq_name[..obj.fq_name.len().saturating_sub(1)];
                    snap.objects_of("project").find(|p| p.fq_name == pfq)
                });
            let mut seen_types = HashSet::new();
            let mut tags = Vec::new();
            for source in [
                cx.tags_of(Some(obj)),
                cx.tags_of(vm_obj),
                m.networks[network].tags.clone(),
                cx.tags_of(project),
            ] {
                let mut new_types = Vec::new();
                for id in source {
                    let t = id >> 16;
                    if t == 0 || !seen_types.contains(&t) {
                        tags.push(id);
                        new_types.push(t);
                    }
                }
                seen_types.extend(new_types);
            }
            let service = obj
                .refs_of("port_tuple_refs")
                .first()
                .and_then(|r| {
                    si_of_tuple
                        .get(&r.uuid)
                        .or_else(|| si_of_tuple.get(&r.to.join(":")))
                })
                .cloned()
                .and_then(|si| {
                    let side = obj
                        .fields
                        .get("virtual_machine_interface_properties")
                        .and_then(|p| p.get("service_interface_type"))
                        .and_then(Value::as_str);
                    match side {
                        Some("left") => Some((si, ServiceSide::Left)),
                        Some("right") => Some((si, ServiceSide::Right)),
                        _ => None,
                    }
                });
            if let Some((si, side)) = &service {
                let entry = m.service_instances.entry(si.clone()).or_default();
                match side {
                    ServiceSide::Left => entry.left.push(obj.uuid.clone()),
                    ServiceSide::Right => entry.right.push(obj.uuid.clone()),
                }
            }
            let itf = Interface {
                uuid: obj.uuid.clone(),
                fq: fq(obj),
                network,
                ips,
                mac,
                vm,
                node,
                security_groups,
                port_security,
                tags: TagSet::new(tags),
                device_owner: obj
                    .fields
                    .get("virtual_machine_interface_device_owner")
                    .and_then(Value::as_str)
                    .map(str::to_owned),
                service,
            };
            m.interface_by_uuid
                .insert(itf.uuid.clone(), m.interfaces.len());
            m.interfaces.push(itf);
        }

        // Floating IPs.
        let pools: HashMap<String, String> = snap
            .objects_of("floating-ip-pool")
            .map(|p| {
                (
                    p.uuid.clone(),
                    p.fq_name[..p.fq_name.len().saturating_sub(1)].join(":"),
                )
            })
            .collect();
        let mut fips: Vec<&VncObject> = snap.objects_of("floating-ip").collect();
        fips.sort_by(|a, b| a.uuid.cmp(&b.uuid));
        for obj in fips {
            let Some(address) = ipv4(obj.fields.get("floating_ip_address")) else {
                cx.warn(obj, "skipped: no IPv4 floating_ip_address");
                continue;
            };
            let parent_net = match obj.parent_type.as_deref() {
                Some("instance-ip") => obj
                    .parent_uuid
                    .as_ref()
                    .and_then(|p| iip_network.get(p))
                    .or_else(|| obj.fq_name.first().and_then(|n| iip_network.get(n)))
                    .cloned(),
                _ => obj
                    .parent_uuid
                    .as_ref()
                    .and_then(|p| pools.get(p))
                    .cloned()
                    .or_else(|| (obj.fq_name.len() == 5).then(|| obj.fq_name[..3].join(":"))),
            };
            let Some(network) = parent_net.and_then(|n| m.network_by_fq.get(&n).copied()) else {
                cx.warn(obj, "skipped: its network is unknown");
                continue;
            };
            let mut interfaces: Vec<String> = obj
                .refs_of("virtual_machine_interface_refs")
                .iter()
                .filter_map(|r| {
                    if m.interface_by_uuid.contains_key(&r.uuid) {
                        Some(r.uuid.clone())
                    } else {
                        let want = r.to.join(":");
                        m.interfaces
                            .iter()
                            .find(|i| i.fq == want)
                            .map(|i| i.uuid.clone())
                    }
                })
                .collect();
            interfaces.sort();
            interfaces.dedup();
            let mut port_mappings = Vec::new();
            if let Some(list) = obj
                .fields
                .get("floating_ip_port_mappings")
                .and_then(|v| v.get("port_mappings"))
                .and_then(Value::as_array)
            {
                for pm in list {
                    let proto = protocol_number(pm.get("protocol").and_then(Value::as_str));
                    let port = |k: &str| {
                        pm.get(k)
                            .and_then(|v| v.as_u64().or_else(|| v.as_str()?.parse().ok()))
                            .and_then(|v| u16::try_from(v).ok())
                    };
                    match (proto, port("src_port"), port("dst_port")) {
                        (Ok(Some(proto)), Some(src_port), Some(dst_port)) => {
                            port_mappings.push(PortMapping {
                                proto,
                                src_port,
                                dst_port,
                            });
                        }
                        _ => cx.warn(obj, format_args!("port mapping skipped: {pm}")),
                    }
                }
            }
            m.floating_ips.push(FloatingIp {
                uuid: obj.uuid.clone(),
                fq: fq(obj),
                address,
                network,
                interfaces,
                direction: obj
                    .fields
                    .get("floating_ip_traffic_direction")
                    .and_then(Value::as_str)
                    .unwrap_or("both")
                    .to_owned(),
                port_mappings_enable: obj
                    .fields
                    .get("floating_ip_port_mappings_enable")
                    .and_then(Value::as_bool)
                    .unwrap_or(false),
                port_mappings,
            });
        }

        // Load balancers: listeners refer to their load balancer, pools to their listener,
        // members are children of their pool.
        let mut lbs: Vec<&VncObject> = snap.objects_of("loadbalancer").collect();
        lbs.sort_by_key(|o| fq(o));
        for obj in lbs {
            let vip_interface = obj
                .refs_of("virtual_machine_interface_refs")
                .first()
                .and_then(|r| {
                    if m.interface_by_uuid.contains_key(&r.uuid) {
                        return Some(r.uuid.clone());
                    }
                    let want = r.to.join(":");
                    m.interfaces
                        .iter()
                        .find(|i| i.fq == want)
                        .map(|i| i.uuid.clone())
                });
            let provider = obj
                .fields
                .get("loadbalancer_provider")
                .and_then(Value::as_str)
                .unwrap_or("native")
                .to_owned();
            let mut listeners = Vec::new();
            for l in snap.objects_of("loadbalancer-listener") {
                if !l
                    .refs_of("loadbalancer_refs")
                    .iter()
                    .any(|r| r.uuid == obj.uuid || r.to == obj.fq_name)
                {
                    continue;
                }
                let props = l.fields.get("loadbalancer_listener_properties");
                let Some(port) = props
                    .and_then(|p| p.get("protocol_port"))
                    .and_then(Value::as_u64)
                    .and_then(|p| u16::try_from(p).ok())
                else {
                    cx.warn(l, "skipped: no protocol_port");
                    continue;
                };
                let protocol = props
                    .and_then(|p| p.get("protocol"))
                    .and_then(Value::as_str)
                    .unwrap_or("TCP")
                    .to_owned();
                let mut pools = Vec::new();
                for p in snap.objects_of("loadbalancer-pool") {
                    if !p
                        .refs_of("loadbalancer_listener_refs")
                        .iter()
                        .any(|r| r.uuid == l.uuid || r.to == l.fq_name)
                    {
                        continue;
                    }
                    let mut members: Vec<(String, LbMember)> = Vec::new();
                    for mobj in snap.objects_of("loadbalancer-member") {
                        let child = mobj.parent_uuid.as_deref() == Some(p.uuid.as_str())
                            || (mobj.fq_name.len() == p.fq_name.len() + 1
                                && mobj.fq_name[..p.fq_name.len()] == p.fq_name[..]);
                        if !child {
                            continue;
                        }
                        let mp = mobj.fields.get("loadbalancer_member_properties");
                        let address = ipv4(mp.and_then(|v| v.get("address")));
                        let port = mp
                            .and_then(|v| v.get("protocol_port"))
                            .and_then(Value::as_u64)
                            .and_then(|v| u16::try_from(v).ok());
                        match (address, port) {
                            (Some(address), Some(port)) => {
                                members.push((fq(mobj), LbMember { address, port }));
                            }
                            _ => cx.warn(
                                mobj,
                                "skipped: a member needs an IPv4 address and a protocol_port",
                            ),
                        }
                    }
                    members.sort_by(|a, b| a.0.cmp(&b.0));
                    pools.push(LbPool {
                        fq: fq(p),
                        protocol: p
                            .fields
                            .get("loadbalancer_pool_properties")
                            .and_then(|v| v.get("protocol"))
                            .and_then(Value::as_str)
                            .unwrap_or("TCP")
                            .to_owned(),
                        default: annotation_of(p, "type") == Some("default"),
                        path: annotation_of(p, "path").unwrap_or("").to_owned(),
                        members: members.into_iter().map(|m| m.1).collect(),
                    });
                }
                pools.sort_by(|a, b| {
                    (!a.default, &a.path, &a.fq).cmp(&(!b.default, &b.path, &b.fq))
                });
                listeners.push(LbListener {
                    fq: fq(l),
                    protocol,
                    port,
                    pools,
                });
            }
            listeners.sort_by(|a, b| (a.port, &a.fq).cmp(&(b.port, &b.fq)));
            m.load_balancers.push(LoadBalancer {
                uuid: obj.uuid.clone(),
                fq: fq(obj),
                provider,
                vip_interface,
                listeners,
            });
        }

        // Firewall: address groups, rules, policies, APS.
        let mut groups: HashMap<String, Vec<Ipv4Net>> = HashMap::new();
        for obj in snap.objects_of("address-group") {
            match AddressGroup::from_object(obj) {
                Ok(g) => {
                    let nets = g
                        .address_group_prefix
                        .map(|p| p.subnet)
                        .unwrap_or_default()
                        .iter()
                        .filter_map(|s| s.cidr().parse::<Ipv4Net>().ok().map(|n| n.trunc()))
                        .collect();
                    groups.insert(fq(obj), nets);
                }
                Err(e) => cx.warn(obj, format_args!("skipped: {e}")),
            }
        }
        for obj in snap.objects_of("firewall-rule") {
            let r = match FirewallRule::from_object(obj) {
                Ok(r) => r,
                Err(e) => {
                    cx.warn(obj, format_args!("skipped: {e}"));
                    continue;
                }
            };
            let svc = r.service.clone().unwrap_or_default();
            let proto = match protocol_number(svc.protocol.as_deref()) {
                Ok(p) => p,
                Err(e) => {
                    cx.warn(obj, format_args!("skipped: {e}"));
                    continue;
                }
            };
            let endpoint = |cx: &Ctx, e: Option<&FirewallRuleEndpointType>| -> FirewallEndpoint {
                let Some(e) = e else {
                    return FirewallEndpoint::Any;
                };
                if e.any == Some(true) {
                    return FirewallEndpoint::Any;
                }
                if !e.tag_ids.is_empty() {
                    let mut ids: Vec<u32> = e
                        .tag_ids
                        .iter()
                        .filter_map(|i| u32::try_from(*i).ok())
                        .collect();
                    ids.sort_unstable();
                    return FirewallEndpoint::Tags(ids);
                }
                if !e.tags.is_empty() {
                    let mut ids = Vec::new();
                    for t in &e.tags {
                        let name = t.strip_prefix("global:").unwrap_or(t);
                        match cx.tag_by_fq.get(name).or_else(|| {
                            cx.tag_by_fq
                                .iter()
                                .find(|(k, _)| k.rsplit(':').next() == Some(name))
                                .map(|(_, v)| v)
                        }) {
                            Some(id) => ids.push(*id),
                            None => return FirewallEndpoint::Unresolved(format!("tag {t}")),
                        }
                    }
                    ids.sort_unstable();
                    return FirewallEndpoint::Tags(ids);
                }
                if let Some(ag) = &e.address_group {
                    return match groups.get(ag) {
                        Some(n) => FirewallEndpoint::Prefixes(n.clone()),
                        None => FirewallEndpoint::Unresolved(format!("address group {ag}")),
                    };
                }
                if let Some(s) = &e.subnet {
                    return match s.cidr().parse::<Ipv4Net>() {
                        Ok(n) => FirewallEndpoint::Prefixes(vec![n.trunc()]),
                        Err(_) => FirewallEndpoint::Unresolved(format!("subnet {}", s.cidr())),
                    };
                }
                if let Some(vn) = &e.virtual_network {
                    return FirewallEndpoint::Network(vn.clone());
                }
                FirewallEndpoint::Any
            };
            let endpoint_1 = endpoint(&cx, r.endpoint_1.as_ref());
            let endpoint_2 = endpoint(&cx, r.endpoint_2.as_ref());
            for ep in [&endpoint_1, &endpoint_2] {
                if let FirewallEndpoint::Unresolved(what) = ep {
                    cx.warn(
                        obj,
                        format_args!("endpoint names a missing {what}: the rule matches nothing"),
                    );
                }
            }
            let match_tag_types = r
                .match_tags
                .as_ref()
                .map(|mt| {
                    mt.tag_list
                        .iter()
                        .map(|t| match t.to_ascii_lowercase().as_str() {
                            "label" => 0,
                            "application" => 1,
                            "tier" => 2,
                            "deployment" => 3,
                            "site" => 4,
                            other => cx
                                .tag_by_fq
                                .iter()
                                .find(|(k, _)| k.split('=').next() == Some(other))
                                .map(|(_, id)| id >> 16)
                                .unwrap_or(u32::MAX),
                        })
                        .collect()
                })
                .unwrap_or_default();
            let action = match r
                .action_list
                .as_ref()
                .and_then(|a| a.simple_action.as_deref())
            {
                Some("deny") | Some("reject") => PolicyAction::Deny,
                _ => PolicyAction::Pass,
            };
            m.firewall_rules.insert(
                obj.uuid.clone(),
                FirewallRuleConfig {
                    uuid: obj.uuid.clone(),
                    name: fq(obj),
                    action,
                    proto,
                    src_ports: svc
                        .src_ports
                        .as_ref()
                        .map(PortRange::from_port_type)
                        .unwrap_or(PortRange::ANY),
                    dst_ports: svc
                        .dst_ports
                        .as_ref()
                        .map(PortRange::from_port_type)
                        .unwrap_or(PortRange::ANY),
                    endpoint_1,
                    endpoint_2,
                    direction: RuleDirection::parse(r.direction.as_deref()),
                    match_tag_types,
                },
            );
        }
        let rule_uuid = |cx: &Ctx, to: &[String], uuid: &str| -> Option<String> {
            if cx.snap.get("firewall-rule", uuid).is_some() {
                return Some(uuid.to_owned());
            }
            cx.snap
                .objects_of("firewall-rule")
                .find(|o| o.fq_name == to)
                .map(|o| o.uuid.clone())
        };
        for obj in snap.objects_of("firewall-policy") {
            match FirewallPolicy::from_object(obj) {
                Ok(p) => {
                    let mut refs: Vec<((u64, u64), usize, String)> = Vec::new();
                    for (i, r) in p.firewall_rule_refs.iter().enumerate() {
                        let seq = r
                            .attr
                            .as_ref()
                            .map(|a| seq_key(&a.sequence))
                            .unwrap_or((u64::MAX, 0));
                        match rule_uuid(&cx, &r.to, &r.uuid) {
                            Some(u) => refs.push((seq, i, u)),
                            None => cx.warn(
                                obj,
                                format_args!("refers to missing rule {}", r.to.join(":")),
                            ),
                        }
                    }
                    refs.sort();
                    m.firewall_policies.insert(
                        obj.uuid.clone(),
                        FirewallPolicyConfig {
                            fq: fq(obj),
                            rules: refs.into_iter().map(|r| r.2).collect(),
                        },
                    );
                }
                Err(e) => cx.warn(obj, format_args!("skipped: {e}")),
            }
        }
        let mut apss: Vec<&VncObject> = snap.objects_of("application-policy-set").collect();
        apss.sort_by_key(|o| fq(o));
        for obj in apss {
            match ApplicationPolicySet::from_object(obj) {
                Ok(a) => {
                    let mut refs: Vec<((u64, u64), usize, String)> = Vec::new();
                    for (i, r) in a.firewall_policy_refs.iter().enumerate() {
                        let seq = r
                            .attr
                            .as_ref()
                            .map(|a| seq_key(&a.sequence))
                            .unwrap_or((u64::MAX, 0));
                        let uuid = if snap.get("firewall-policy", &r.uuid).is_some() {
                            Some(r.uuid.clone())
                        } else {
                            snap.objects_of("firewall-policy")
                                .find(|o| o.fq_name == r.to)
                                .map(|o| o.uuid.clone())
                        };
                        match uuid {
                            Some(u) => refs.push((seq, i, u)),
                            None => cx.warn(
                                obj,
                                format_args!("refers to missing policy {}", r.to.join(":")),
                            ),
                        }
                    }
                    refs.sort();
                    let application_tags = cx
                        .tags_of(Some(obj))
                        .into_iter()
                        .filter(|id| id >> 16 == 1)
                        .collect();
                    m.application_policy_sets.push(Aps {
                        fq: fq(obj),
                        all_applications: a.all_applications.unwrap_or(false),
                        application_tags,
                        policies: refs.into_iter().map(|r| r.2).collect(),
                    });
                }
                Err(e) => cx.warn(obj, format_args!("skipped: {e}")),
            }
        }
        m.warnings = cx.warnings;
        m
    }

    /// The network called `fq`.
    pub fn network(&self, fq: &str) -> Option<&Network> {
        self.network_by_fq.get(fq).map(|i| &self.networks[*i])
    }

    /// The interface `uuid`.
    pub fn interface(&self, uuid: &str) -> Option<&Interface> {
        self.interface_by_uuid
            .get(uuid)
            .map(|i| &self.interfaces[*i])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn obj(t: &str, uuid: &str, fq: &[&str], body: Value) -> VncObject {
        let mut o = VncObject::from_json(t, &body).expect("object");
        o.uuid = uuid.into();
        o.fq_name = fq.iter().map(|s| s.to_string()).collect();
        o
    }

    #[test]
    fn unknown_shapes_are_skipped_with_a_warning() {
        let snap = Snapshot::from_objects([
            obj("virtual-network", "vn1", &["d", "p", "good"], json!({})),
            obj(
                "virtual-network",
                "vn2",
                &["d", "p", "bad"],
                json!({"fabric_snat": "not a bool"}),
            ),
            obj(
                "virtual-machine-interface",
                "vmi1",
                &["d", "p", "orphan"],
                json!({}),
            ),
            obj(
                "floating-ip",
                "f1",
                &["x"],
                json!({"floating_ip_address": "nope"}),
            ),
            obj(
                "firewall-rule",
                "r1",
                &["default-policy-management", "r"],
                json!({"service": {"protocol": "bogus"}}),
            ),
        ]);
        let m = Model::build(&snap);
        assert_eq!(m.networks.len(), 1);
        assert_eq!(m.warnings.len(), 4, "{:#?}", m.warnings);
        assert_eq!(
            m.encapsulation,
            vec![
                Encapsulation::MplsOverUdp,
                Encapsulation::MplsOverGre,
                Encapsulation::Vxlan
            ]
        );
    }

    #[test]
    fn sequence_strings_order_numerically() {
        assert!(seq_key("00002.0") < seq_key("00010.0"));
        assert!(seq_key("00002.0") < seq_key("00002.5"));
    }
}
