//! NetworkPolicy translation into Contrail firewall rules.
//!
//! - [`translate_r50`]: the shipped translator (`FWRule.parser` of branch R5.0,
//!   research/contrail.md §3.3/§3.5): one firewall policy `<cluster>-<ns>-<np>` with a rule per
//!   (peer, port), tags from `matchLabels` (`matchExpressions` dropped), `except` ranges as
//!   deny rules, protocol `any` by default, single ports, named ports unresolved, SCTP refused,
//!   egress rule names without the entry index, and the per-policy deny rules that go to
//!   `<cluster>-denyall`.
//! - The upstream pieces ([`peer_target`], [`upstream_services`], [`Predicate`]): selectors
//!   become membership predicates that kube-manager evaluates and writes onto the selected pods
//!   as `label` tags, CIDRs minus their `except` ranges become address groups, ports keep
//!   their protocol (TCP by default, SCTP included) and `endPort` ranges; named ports are
//!   resolved by the caller on the destination pods.

use std::collections::{BTreeMap, BTreeSet};

use harness_contrail_vnc::VncObject;
use harness_scenario::MockFault;
use ipnet::IpNet;
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use serde_json::{Value, json};

use super::naming::{POLICY_MANAGEMENT, digest, label_tag};
use super::selector;

/// A direction of a NetworkPolicy.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) enum Dir {
    Ingress,
    Egress,
}

/// A port reference of a NetworkPolicy port.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum PortRef {
    Number(u16),
    Name(String),
}

/// One `ports[]` entry.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct NpPort {
    /// As written (`TCP`, `UDP`, `SCTP`); `None` when omitted.
    pub protocol: Option<String>,
    pub port: Option<PortRef>,
    pub end_port: Option<u16>,
}

/// One `from[]` / `to[]` entry.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum NpPeer {
    Selectors {
        namespace: Option<LabelSelector>,
        pod: Option<LabelSelector>,
    },
    IpBlock {
        cidr: String,
        except: Vec<String>,
    },
}

/// One `ingress[]` / `egress[]` entry.
#[derive(Clone, Debug, PartialEq, Default)]
pub(crate) struct NpRule {
    pub peers: Vec<NpPeer>,
    pub ports: Vec<NpPort>,
}

/// A NetworkPolicy as the translators read it.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Np {
    pub namespace: String,
    pub name: String,
    pub uid: String,
    pub pod_selector: LabelSelector,
    pub policy_types: Vec<Dir>,
    pub ingress: Vec<NpRule>,
    pub egress: Vec<NpRule>,
}

fn port_ref(p: &IntOrString) -> PortRef {
    match p {
        IntOrString::Int(n) => PortRef::Number(u16::try_from(*n).unwrap_or(0)),
        IntOrString::String(s) => match s.parse::<u16>() {
            Ok(n) => PortRef::Number(n),
            Err(_) => PortRef::Name(s.clone()),
        },
    }
}

impl Np {
    /// Reads a NetworkPolicy; `policyTypes` defaults as the API server's: `Ingress`, plus
    /// `Egress` when egress rules are given.
    pub fn from_k8s(np: &NetworkPolicy) -> Np {
        let spec = np.spec.clone().unwrap_or_default();
        let rule =
            |peers: Vec<NpPeer>,
             ports: Option<Vec<k8s_openapi::api::networking::v1::NetworkPolicyPort>>| {
                NpRule {
                    peers,
                    ports: ports
                        .into_iter()
                        .flatten()
                        .map(|p| NpPort {
                            protocol: p.protocol.clone(),
                            port: p.port.as_ref().map(port_ref),
                            end_port: p.end_port.and_then(|e| u16::try_from(e).ok()),
                        })
                        .collect(),
                }
            };
        let peer = |p: &k8s_openapi::api::networking::v1::NetworkPolicyPeer| match &p.ip_block {
            Some(b) => NpPeer::IpBlock {
                cidr: b.cidr.clone(),
                except: b.except.clone().unwrap_or_default(),
            },
            None => NpPeer::Selectors {
                namespace: p.namespace_selector.clone(),
                pod: p.pod_selector.clone(),
            },
        };
        let ingress: Vec<NpRule> = spec
            .ingress
            .iter()
            .flatten()
            .map(|r| rule(r.from.iter().flatten().map(peer).collect(), r.ports.clone()))
            .collect();
        let egress: Vec<NpRule> = spec
            .egress
            .iter()
            .flatten()
            .map(|r| rule(r.to.iter().flatten().map(peer).collect(), r.ports.clone()))
            .collect();
        let policy_types = match &spec.policy_types {
            Some(t) => t
                .iter()
                .filter_map(|t| match t.as_str() {
                    "Ingress" => Some(Dir::Ingress),
                    "Egress" => Some(Dir::Egress),
                    _ => None,
                })
                .collect(),
            None if spec.egress.is_some() => vec![Dir::Ingress, Dir::Egress],
            None => vec![Dir::Ingress],
        };
        Np {
            namespace: np
                .metadata
                .namespace
                .clone()
                .unwrap_or_else(|| "default".into()),
            name: np.metadata.name.clone().unwrap_or_default(),
            uid: np.metadata.uid.clone().unwrap_or_default(),
            pod_selector: spec.pod_selector.unwrap_or_default(),
            policy_types,
            ingress,
            egress,
        }
    }

    pub fn rules(&self, d: Dir) -> &[NpRule] {
        match d {
            Dir::Ingress => &self.ingress,
            Dir::Egress => &self.egress,
        }
    }

    pub fn has_type(&self, d: Dir) -> bool {
        self.policy_types.contains(&d)
    }

    fn uses_protocol(&self, proto: &str) -> bool {
        self.ingress
            .iter()
            .chain(&self.egress)
            .flat_map(|r| &r.ports)
            .any(|p| {
                p.protocol
                    .as_deref()
                    .is_some_and(|x| x.eq_ignore_ascii_case(proto))
            })
    }

    /// Named ports used by egress rules (they resolve on the destination pods), as
    /// `(protocol, name)` with the protocol lower-cased (TCP when omitted).
    pub fn egress_named_ports(&self) -> BTreeSet<(String, String)> {
        self.egress
            .iter()
            .flat_map(|r| &r.ports)
            .filter_map(|p| match &p.port {
                Some(PortRef::Name(n)) => {
                    Some((upstream_protocol(p.protocol.as_deref()), n.clone()))
                }
                _ => None,
            })
            .collect()
    }
}

/// A firewall rule's action.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Action {
    Pass,
    Deny,
}

/// A firewall rule endpoint.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) enum Endpoint {
    Any,
    /// Tag strings `type=value` (AND).
    Tags(Vec<String>),
    /// An address group of the global policy management, by name.
    AddressGroup(String),
}

impl Endpoint {
    fn from_tags(tags: Vec<String>) -> Endpoint {
        if tags.is_empty() {
            Endpoint::Any
        } else {
            Endpoint::Tags(tags)
        }
    }

    fn to_json(&self) -> Value {
        match self {
            Endpoint::Any => json!({"any": true}),
            Endpoint::Tags(t) => json!({"tags": t}),
            Endpoint::AddressGroup(n) => {
                json!({"address_group": format!("{POLICY_MANAGEMENT}:{n}")})
            }
        }
    }

    /// Tag strings the endpoint names.
    pub fn tags(&self) -> &[String] {
        match self {
            Endpoint::Tags(t) => t,
            _ => &[],
        }
    }
}

/// A firewall rule to write.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct RulePlan {
    /// Name under the global policy management.
    pub name: String,
    pub action: Action,
    pub ep1: Endpoint,
    pub ep2: Endpoint,
    /// `any`, `tcp`, `udp`, `sctp`.
    pub protocol: String,
    pub ports: (u16, u16),
}

impl RulePlan {
    /// A rule matching every protocol and port.
    pub fn all(name: String, action: Action, ep1: Endpoint, ep2: Endpoint) -> RulePlan {
        RulePlan {
            name,
            action,
            ep1,
            ep2,
            protocol: "any".into(),
            ports: (0, 65535),
        }
    }

    /// The `firewall-rule` object (`direction: ">"`, as kube-manager writes every rule).
    pub fn to_object(&self, annotations: Value) -> VncObject {
        VncObject::new(
            "firewall-rule",
            vec![POLICY_MANAGEMENT.to_owned(), self.name.clone()],
        )
        .with_parent_type("policy-management")
        .with_prop(
            "action_list",
            json!({"simple_action": match self.action { Action::Pass => "pass", Action::Deny => "deny" }}),
        )
        .with_prop("direction", ">")
        .with_prop(
            "service",
            json!({
                "protocol": self.protocol,
                "src_ports": {"start_port": 0, "end_port": 65535},
                "dst_ports": {"start_port": self.ports.0, "end_port": self.ports.1},
            }),
        )
        .with_prop("endpoint_1", self.ep1.to_json())
        .with_prop("endpoint_2", self.ep2.to_json())
        .with_prop("annotations", annotations)
    }

    /// Tag strings used by either endpoint.
    pub fn tags(&self) -> impl Iterator<Item = &String> {
        self.ep1.tags().iter().chain(self.ep2.tags())
    }
}

/// The `address-group` object named `name` holding `nets`.
pub(crate) fn address_group_object(name: &str, nets: &[IpNet], annotations: Value) -> VncObject {
    let subnets: Vec<Value> = nets
        .iter()
        .map(|n| json!({"ip_prefix": n.network().to_string(), "ip_prefix_len": n.prefix_len()}))
        .collect();
    VncObject::new(
        "address-group",
        vec![POLICY_MANAGEMENT.to_owned(), name.to_owned()],
    )
    .with_parent_type("policy-management")
    .with_prop("address_group_prefix", json!({"subnet": subnets}))
    .with_prop("annotations", annotations)
}

/// Why a NetworkPolicy could not be translated.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Failure {
    pub message: String,
    /// The r5.0 deviation the failure is, if any.
    pub deviation: Option<&'static str>,
}

/// The shipped translation of one NetworkPolicy.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub(crate) struct R50Translation {
    /// Rules of the policy's own firewall policy, in sequence order.
    pub rules: Vec<RulePlan>,
    /// Its deny rules for `<cluster>-denyall`.
    pub deny_rules: Vec<RulePlan>,
    /// Address groups named by CIDR.
    pub address_groups: BTreeMap<String, Vec<IpNet>>,
}

fn parse_net(s: &str) -> Option<IpNet> {
    s.parse::<IpNet>().ok().map(|n| n.trunc())
}

/// `FWRule.parser` of branch R5.0 with the injected translator faults.
pub(crate) fn translate_r50(
    np: &Np,
    faults: &BTreeSet<MockFault>,
) -> Result<R50Translation, Failure> {
    if np.uses_protocol("SCTP") {
        return Err(Failure {
            message: "port protocol SCTP: the r5.0 translator maps only TCP and UDP (KeyError in ports_parser), so the whole NetworkPolicy is not applied".into(),
            deviation: Some("sctp-unsupported"),
        });
    }
    let ns = &np.namespace;
    let selected = r50_selected(np);
    let mut out = R50Translation::default();
    let mut egress_names: BTreeMap<String, usize> = BTreeMap::new();
    for d in &np.policy_types {
        if *d == Dir::Egress && faults.contains(&MockFault::EgressRulesDropped) {
            continue;
        }
        for (i, rule) in np.rules(*d).iter().enumerate() {
            let prefix = match d {
                Dir::Ingress => format!("{ns}-ingress-{}-{i}", np.name),
                // Egress rule names carry no entry index (EgressRuleNameCollision).
                Dir::Egress => format!("{ns}-egress-{}", np.name),
            };
            let services = r50_services(rule)?;
            for (ep_name, ep, action) in r50_peers(np, rule, faults, &mut out.address_groups) {
                for (k, svc) in services.iter().enumerate() {
                    // A named port is passed through unresolved and matches nothing: no rule.
                    let Some((protocol, ports)) = svc else {
                        continue;
                    };
                    let (ep1, ep2) = match d {
                        Dir::Ingress => (ep.clone(), selected.clone()),
                        Dir::Egress => (selected.clone(), ep.clone()),
                    };
                    let r = RulePlan {
                        name: format!("{prefix}-{ep_name}-{k}"),
                        action,
                        ep1,
                        ep2,
                        protocol: protocol.clone(),
                        ports: *ports,
                    };
                    if *d == Dir::Egress {
                        // firewall_rule_create, then update on RefsExistError: the rule keeps
                        // its place with the later content.
                        match egress_names.get(&r.name) {
                            Some(&at) => out.rules[at] = r,
                            None => {
                                egress_names.insert(r.name.clone(), out.rules.len());
                                out.rules.push(r);
                            }
                        }
                    } else {
                        out.rules.push(r);
                    }
                }
            }
        }
    }
    for d in &np.policy_types {
        out.deny_rules.push(match d {
            Dir::Ingress => RulePlan::all(
                format!("{ns}-ingress-{}-denyall", np.name),
                Action::Deny,
                Endpoint::Any,
                selected.clone(),
            ),
            Dir::Egress => RulePlan::all(
                format!("{ns}-egress-{}-default-deny-all", np.name),
                Action::Deny,
                selected.clone(),
                Endpoint::Any,
            ),
        });
    }
    Ok(out)
}

/// `_get_np_pod_selector`: the podSelector's `matchLabels` then `namespace=<ns>`.
fn r50_selected(np: &Np) -> Endpoint {
    let mut tags: Vec<String> = selector::match_labels(&np.pod_selector)
        .iter()
        .map(|(k, v)| label_tag(k, v))
        .collect();
    tags.push(format!("namespace={}", np.namespace));
    Endpoint::Tags(tags)
}

/// `ports_parser`: `(protocol, (start, end))`, `None` for a named port.
#[allow(clippy::type_complexity)]
fn r50_services(rule: &NpRule) -> Result<Vec<Option<(String, (u16, u16))>>, Failure> {
    if rule.ports.is_empty() {
        return Ok(vec![Some(("any".into(), (0, 65535)))]);
    }
    rule.ports
        .iter()
        .map(|p| {
            let protocol = match p.protocol.as_deref() {
                None => "any".to_owned(),
                Some(x) if x.eq_ignore_ascii_case("TCP") => "tcp".to_owned(),
                Some(x) if x.eq_ignore_ascii_case("UDP") => "udp".to_owned(),
                Some(x) => {
                    return Err(Failure {
                        message: format!(
                            "port protocol {x}: the r5.0 translator maps only TCP and UDP"
                        ),
                        deviation: Some("sctp-unsupported"),
                    });
                }
            };
            Ok(match &p.port {
                None => Some((protocol, (0, 65535))),
                // endPort is dropped (EndPortIgnored).
                Some(PortRef::Number(n)) => Some((protocol, (*n, *n))),
                Some(PortRef::Name(_)) => None,
            })
        })
        .collect()
}

/// `spec_parser` of branch R5.0 for every peer of a rule.
fn r50_peers(
    np: &Np,
    rule: &NpRule,
    faults: &BTreeSet<MockFault>,
    groups: &mut BTreeMap<String, Vec<IpNet>>,
) -> Vec<(String, Endpoint, Action)> {
    let ns_tags = |s: &LabelSelector| -> Endpoint {
        if faults.contains(&MockFault::NamespaceSelectorIgnored) {
            return Endpoint::Any;
        }
        Endpoint::from_tags(
            selector::match_labels(s)
                .iter()
                .map(|(k, v)| label_tag(k, v))
                .collect(),
        )
    };
    let pod_tags = |s: &LabelSelector| -> Endpoint {
        let mut tags = Vec::new();
        if !faults.contains(&MockFault::PodSelectorNotNamespaced) {
            tags.push(format!("namespace={}", np.namespace));
        }
        tags.extend(
            selector::match_labels(s)
                .iter()
                .map(|(k, v)| label_tag(k, v)),
        );
        Endpoint::from_tags(tags)
    };
    let mut out = Vec::new();
    for (j, peer) in rule.peers.iter().enumerate() {
        match peer {
            NpPeer::Selectors { namespace, pod } => {
                let n = namespace.as_ref().map(selector::without_expressions);
                let p = pod.as_ref().map(selector::without_expressions);
                // Branch R5.0: both selectors give two rules (OR); empty ones give none.
                if let Some(n) = &n
                    && !selector::is_empty(n)
                {
                    out.push((format!("namespaceSelector-{j}"), ns_tags(n), Action::Pass));
                }
                if let Some(p) = &p
                    && !selector::is_empty(p)
                {
                    out.push((format!("podSelector-{j}"), pod_tags(p), Action::Pass));
                }
            }
            NpPeer::IpBlock { cidr, except } => {
                if !faults.contains(&MockFault::IpblockExceptIgnored) {
                    for e in except {
                        if let Some(net) = parse_net(e) {
                            groups.insert(e.clone(), vec![net]);
                        }
                        out.push((
                            format!("ipBlock-{j}-{e}"),
                            Endpoint::AddressGroup(e.clone()),
                            Action::Deny,
                        ));
                    }
                }
                if let Some(net) = parse_net(cidr) {
                    groups.insert(cidr.clone(), vec![net]);
                }
                out.push((
                    format!("ipBlock-{j}-cidr-{cidr}"),
                    Endpoint::AddressGroup(cidr.clone()),
                    Action::Pass,
                ));
            }
        }
    }
    if out.is_empty() {
        out.push(("allow-all".into(), Endpoint::Any, Action::Pass));
    }
    out
}

// ---------------------------------------------------------------------------------------
// Upstream.

/// Which namespaces a pod predicate covers.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum NsScope {
    All,
    Named(String),
    Selector(LabelSelector),
}

/// A set of pods kube-manager computes and marks with a `label=<id>` tag.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Predicate {
    /// Pods of the namespaces in scope that the pod selector selects.
    Pods {
        ns: NsScope,
        pod: Option<LabelSelector>,
    },
    /// Pods whose address is in one of the networks.
    PodsInBlock { nets: Vec<IpNet> },
    /// Pods with a container port `name`/`protocol` numbered `number`.
    NamedPort {
        protocol: String,
        name: String,
        number: u16,
    },
}

impl Predicate {
    /// The tag value identifying the predicate: `<cluster>-pods-<digest>`,
    /// `<cluster>-block-<digest>`, `<cluster>-port-<proto>-<name>-<n>`.
    pub fn id(&self, cluster: &str) -> String {
        match self {
            Predicate::Pods { ns, pod } => {
                let ns = match ns {
                    NsScope::All => "*".to_owned(),
                    NsScope::Named(n) => format!("ns={n}"),
                    NsScope::Selector(s) => format!("nssel={}", selector::canonical(s)),
                };
                let pod = pod.as_ref().map(selector::canonical).unwrap_or_default();
                format!("{cluster}-pods-{}", digest(&format!("{ns}|{pod}")))
            }
            Predicate::PodsInBlock { nets } => {
                let t: Vec<String> = nets.iter().map(ToString::to_string).collect();
                format!("{cluster}-block-{}", digest(&t.join(",")))
            }
            Predicate::NamedPort {
                protocol,
                name,
                number,
            } => format!("{cluster}-port-{protocol}-{name}-{number}"),
        }
    }

    /// The `label` tag string of the predicate.
    pub fn tag(&self, cluster: &str) -> String {
        format!("label={}", self.id(cluster))
    }
}

/// What an upstream peer admits.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum PeerTarget {
    Pods(Predicate),
    /// An address group (name, networks), for ipBlock peers.
    Block(String, Vec<IpNet>),
}

/// The upstream reading of a peer, with the injected translator faults.
pub(crate) fn peer_target(np: &Np, peer: &NpPeer, faults: &BTreeSet<MockFault>) -> PeerTarget {
    match peer {
        NpPeer::Selectors { namespace, pod } => {
            let ns = match namespace {
                None if faults.contains(&MockFault::PodSelectorNotNamespaced) => NsScope::All,
                None => NsScope::Named(np.namespace.clone()),
                Some(_) if faults.contains(&MockFault::NamespaceSelectorIgnored) => NsScope::All,
                Some(s) if selector::is_empty(s) => NsScope::All,
                Some(s) => NsScope::Selector(s.clone()),
            };
            let pod = pod.clone().filter(|p| !selector::is_empty(p));
            PeerTarget::Pods(Predicate::Pods { ns, pod })
        }
        NpPeer::IpBlock { cidr, except } => {
            let Some(net) = parse_net(cidr) else {
                return PeerTarget::Block(cidr.clone(), Vec::new());
            };
            if faults.contains(&MockFault::IpblockExceptIgnored) || except.is_empty() {
                return PeerTarget::Block(cidr.clone(), vec![net]);
            }
            let holes: Vec<IpNet> = except.iter().filter_map(|e| parse_net(e)).collect();
            let name = format!("{cidr}-except-{}", except.join(","));
            PeerTarget::Block(name, subtract(net, &holes))
        }
    }
}

/// The selected pods of a NetworkPolicy as a predicate.
pub(crate) fn selected_predicate(np: &Np) -> Predicate {
    Predicate::Pods {
        ns: NsScope::Named(np.namespace.clone()),
        pod: Some(np.pod_selector.clone()).filter(|p| !selector::is_empty(p)),
    }
}

/// The protocol of a port, lower-cased, TCP when omitted (upstream).
pub(crate) fn upstream_protocol(p: Option<&str>) -> String {
    p.map_or_else(|| "tcp".to_owned(), str::to_lowercase)
}

/// An upstream service of a port entry: the protocol and either a range or a name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum UpstreamService {
    /// No ports in the rule: every protocol and port (ICMP included).
    All,
    Range(String, u16, u16),
    Named(String, String),
}

/// The services of a rule (upstream).
pub(crate) fn upstream_services(rule: &NpRule) -> Vec<UpstreamService> {
    if rule.ports.is_empty() {
        return vec![UpstreamService::All];
    }
    rule.ports
        .iter()
        .map(|p| {
            let proto = upstream_protocol(p.protocol.as_deref());
            match &p.port {
                None => UpstreamService::Range(proto, 0, 65535),
                Some(PortRef::Number(n)) => {
                    UpstreamService::Range(proto, *n, p.end_port.unwrap_or(*n).max(*n))
                }
                Some(PortRef::Name(name)) => UpstreamService::Named(proto, name.clone()),
            }
        })
        .collect()
}

/// `net` minus the `holes` as a list of prefixes.
pub(crate) fn subtract(net: IpNet, holes: &[IpNet]) -> Vec<IpNet> {
    let mut parts = vec![net];
    for h in holes {
        let mut next = Vec::new();
        for p in parts {
            next.extend(subtract_one(p, *h));
        }
        parts = next;
    }
    parts
}

fn subtract_one(net: IpNet, hole: IpNet) -> Vec<IpNet> {
    if !overlaps(net, hole) {
        return vec![net];
    }
    if hole.contains(&net) {
        return Vec::new();
    }
    // The hole is strictly inside: split and recurse into the half that holds it.
    let Ok(halves) = net.subnets(net.prefix_len() + 1) else {
        return vec![net];
    };
    halves.flat_map(|h| subtract_one(h, hole)).collect()
}

fn overlaps(a: IpNet, b: IpNet) -> bool {
    a.contains(&b.network()) || b.contains(&a.network())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn np(v: Value) -> Np {
        Np::from_k8s(&serde_json::from_value(v).expect("netpol"))
    }

    fn names(rules: &[RulePlan]) -> Vec<&str> {
        rules.iter().map(|r| r.name.as_str()).collect()
    }

    /// The wiki's worked example (research/contrail.md §3.3) yields exactly its rules.
    #[test]
    fn wiki_worked_example() {
        let p = np(json!({
            "apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
            "metadata": {"name": "test-network-policy", "namespace": "default"},
            "spec": {
                "podSelector": {"matchLabels": {"role": "db"}},
                "policyTypes": ["Ingress", "Egress"],
                "ingress": [{"from": [
                    {"ipBlock": {"cidr": "172.17.0.0/16", "except": ["172.17.1.0/24"]}},
                    {"namespaceSelector": {"matchLabels": {"project": "myproject"}}},
                    {"podSelector": {"matchLabels": {"role": "frontend"}}}],
                    "ports": [{"protocol": "TCP", "port": 6379}]}],
                "egress": [{"to": [{"ipBlock": {"cidr": "10.0.0.0/24"}}],
                    "ports": [{"protocol": "TCP", "port": 5978}]}]
            }
        }));
        let t = translate_r50(&p, &BTreeSet::new()).expect("translates");
        assert_eq!(
            names(&t.rules),
            [
                "default-ingress-test-network-policy-0-ipBlock-0-172.17.1.0/24-0",
                "default-ingress-test-network-policy-0-ipBlock-0-cidr-172.17.0.0/16-0",
                "default-ingress-test-network-policy-0-namespaceSelector-1-0",
                "default-ingress-test-network-policy-0-podSelector-2-0",
                "default-egress-test-network-policy-ipBlock-0-cidr-10.0.0.0/24-0",
            ]
        );
        let selected = Endpoint::Tags(vec!["role=db".into(), "namespace=default".into()]);
        let tcp = |n| ("tcp".to_owned(), (n, n));
        let shape = |r: &RulePlan| {
            (
                r.action,
                r.ep1.clone(),
                r.ep2.clone(),
                (r.protocol.clone(), r.ports),
            )
        };
        assert_eq!(
            shape(&t.rules[0]),
            (
                Action::Deny,
                Endpoint::AddressGroup("172.17.1.0/24".into()),
                selected.clone(),
                tcp(6379)
            )
        );
        assert_eq!(
            shape(&t.rules[1]),
            (
                Action::Pass,
                Endpoint::AddressGroup("172.17.0.0/16".into()),
                selected.clone(),
                tcp(6379)
            )
        );
        assert_eq!(
            shape(&t.rules[2]),
            (
                Action::Pass,
                Endpoint::Tags(vec!["project=myproject".into()]),
                selected.clone(),
                tcp(6379)
            )
        );
        assert_eq!(
            shape(&t.rules[3]),
            (
                Action::Pass,
                Endpoint::Tags(vec!["namespace=default".into(), "role=frontend".into()]),
                selected.clone(),
                tcp(6379)
            )
        );
        assert_eq!(
            shape(&t.rules[4]),
            (
                Action::Pass,
                selected.clone(),
                Endpoint::AddressGroup("10.0.0.0/24".into()),
                tcp(5978)
            )
        );
        assert_eq!(
            names(&t.deny_rules),
            [
                "default-ingress-test-network-policy-denyall",
                "default-egress-test-network-policy-default-deny-all"
            ]
        );
        assert_eq!(t.deny_rules[0].ep1, Endpoint::Any);
        assert_eq!(t.deny_rules[0].ep2, selected);
        assert_eq!(t.deny_rules[1].ep2, Endpoint::Any);
        assert_eq!(t.deny_rules[0].protocol, "any");
        assert_eq!(t.deny_rules[0].ports, (0, 65535));
        assert_eq!(
            t.address_groups.keys().collect::<Vec<_>>(),
            ["10.0.0.0/24", "172.17.0.0/16", "172.17.1.0/24"]
        );
        // The rule object carries the VNC shapes.
        let o = t.rules[3].to_object(json!({"key_value_pair": []}));
        assert_eq!(
            o.fq_name,
            [
                "default-policy-management",
                "default-ingress-test-network-policy-0-podSelector-2-0"
            ]
        );
        assert_eq!(o.fields["direction"], ">");
        assert_eq!(
            o.fields["service"]["dst_ports"],
            json!({"start_port": 6379, "end_port": 6379})
        );
        assert_eq!(
            o.fields["endpoint_1"],
            json!({"tags": ["namespace=default", "role=frontend"]})
        );
        assert_eq!(o.fields["action_list"], json!({"simple_action": "pass"}));
    }

    #[test]
    fn r50_deviations() {
        // Both selectors in one peer: two rules (OR); empty and expression-only selectors: none.
        let p = np(json!({
            "metadata": {"name": "p", "namespace": "x"},
            "spec": {"podSelector": {}, "policyTypes": ["Ingress"],
                "ingress": [{"from": [
                    {"namespaceSelector": {"matchLabels": {"team": "a"}}, "podSelector": {"matchLabels": {"app": "b"}}},
                    {"podSelector": {}},
                    {"namespaceSelector": {"matchExpressions": [{"key": "k", "operator": "Exists"}]}}
                ], "ports": [{"port": 80}, {"port": "http"}, {"protocol": "UDP", "port": 53, "endPort": 60}]}]}
        }));
        let t = translate_r50(&p, &BTreeSet::new()).expect("translates");
        assert_eq!(
            names(&t.rules),
            [
                "x-ingress-p-0-namespaceSelector-0-0",
                "x-ingress-p-0-namespaceSelector-0-2",
                "x-ingress-p-0-podSelector-0-0",
                "x-ingress-p-0-podSelector-0-2",
            ]
        );
        assert_eq!(t.rules[0].protocol, "any");
        assert_eq!(t.rules[1].protocol, "udp");
        assert_eq!(t.rules[1].ports, (53, 53));
        assert_eq!(t.rules[0].ep2, Endpoint::Tags(vec!["namespace=x".into()]));
        // A peer list that yields nothing becomes allow-all.
        let p = np(json!({"metadata": {"name": "q", "namespace": "x"},
            "spec": {"podSelector": {}, "ingress": [{"from": [{"podSelector": {}}]}]}}));
        let t = translate_r50(&p, &BTreeSet::new()).expect("translates");
        assert_eq!(names(&t.rules), ["x-ingress-q-0-allow-all-0"]);
        assert_eq!(t.rules[0].ep1, Endpoint::Any);
        // Egress names collide across entries: the later entry's rule replaces the earlier.
        let p = np(json!({"metadata": {"name": "e", "namespace": "x"},
            "spec": {"podSelector": {}, "policyTypes": ["Egress"], "egress": [
                {"to": [{"podSelector": {"matchLabels": {"a": "1"}}}]},
                {"to": [{"podSelector": {"matchLabels": {"a": "2"}}}]}]}}));
        let t = translate_r50(&p, &BTreeSet::new()).expect("translates");
        assert_eq!(names(&t.rules), ["x-egress-e-podSelector-0-0"]);
        assert_eq!(
            t.rules[0].ep2,
            Endpoint::Tags(vec!["namespace=x".into(), "a=2".into()])
        );
        // SCTP fails the whole policy.
        let p = np(json!({"metadata": {"name": "s", "namespace": "x"},
            "spec": {"podSelector": {}, "ingress": [{"ports": [{"protocol": "SCTP", "port": 80}]}]}}));
        let e = translate_r50(&p, &BTreeSet::new()).expect_err("SCTP");
        assert_eq!(e.deviation, Some("sctp-unsupported"));
    }

    #[test]
    fn r50_faults_change_the_rules() {
        let p = np(json!({"metadata": {"name": "f", "namespace": "x"},
            "spec": {"podSelector": {"matchLabels": {"pod": "a"}}, "policyTypes": ["Ingress", "Egress"],
                "ingress": [{"from": [
                    {"namespaceSelector": {"matchLabels": {"team": "a"}}},
                    {"podSelector": {"matchLabels": {"pod": "b"}}},
                    {"ipBlock": {"cidr": "10.0.0.0/8", "except": ["10.1.0.0/16"]}}]}],
                "egress": [{"to": [{"podSelector": {"matchLabels": {"pod": "c"}}}]}]}}));
        let base = translate_r50(&p, &BTreeSet::new()).expect("ok");
        let with = |f| translate_r50(&p, &[f].into_iter().collect()).expect("ok");
        assert_eq!(base.rules.len(), 5);
        assert_eq!(with(MockFault::EgressRulesDropped).rules.len(), 4);
        assert_eq!(with(MockFault::EgressRulesDropped).deny_rules.len(), 2);
        assert_eq!(
            with(MockFault::NamespaceSelectorIgnored).rules[0].ep1,
            Endpoint::Any
        );
        assert_eq!(
            with(MockFault::PodSelectorNotNamespaced).rules[1].ep1,
            Endpoint::Tags(vec!["pod=b".into()])
        );
        assert_eq!(with(MockFault::IpblockExceptIgnored).rules.len(), 4);
    }

    #[test]
    fn except_ranges_are_carved_out() {
        let n: IpNet = "10.0.0.0/8".parse().expect("net");
        let parts = subtract(n, &["10.1.0.0/16".parse().expect("net")]);
        assert_eq!(parts.len(), 8);
        let a: std::net::IpAddr = "10.1.2.3".parse().expect("ip");
        let b: std::net::IpAddr = "10.2.2.3".parse().expect("ip");
        assert!(!parts.iter().any(|p| p.contains(&a)));
        assert!(parts.iter().any(|p| p.contains(&b)));
        assert!(subtract(n, &[n]).is_empty());
        let p = np(json!({"metadata": {"name": "b", "namespace": "x"},
            "spec": {"podSelector": {}, "egress": [{"to": [{"ipBlock": {"cidr": "10.0.0.0/8", "except": ["10.1.0.0/16"]}}]}]}}));
        match peer_target(&p, &p.egress[0].peers[0], &BTreeSet::new()) {
            PeerTarget::Block(name, nets) => {
                assert_eq!(name, "10.0.0.0/8-except-10.1.0.0/16");
                assert_eq!(nets.len(), 8);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn upstream_services_keep_protocols_and_ranges() {
        let p = np(json!({"metadata": {"name": "u", "namespace": "x"},
            "spec": {"podSelector": {}, "ingress": [
                {"ports": [{"port": 80}, {"protocol": "SCTP", "port": 81, "endPort": 90}, {"protocol": "UDP"}, {"port": "serve-80-tcp"}]},
                {}]}}));
        assert_eq!(
            upstream_services(&p.ingress[0]),
            [
                UpstreamService::Range("tcp".into(), 80, 80),
                UpstreamService::Range("sctp".into(), 81, 90),
                UpstreamService::Range("udp".into(), 0, 65535),
                UpstreamService::Named("tcp".into(), "serve-80-tcp".into()),
            ]
        );
        assert_eq!(upstream_services(&p.ingress[1]), [UpstreamService::All]);
        assert_eq!(p.policy_types, [Dir::Ingress]);
    }
}
