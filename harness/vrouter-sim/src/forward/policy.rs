//! The policy gates, in the agent's order (`FlowEntry::DoPolicy`): the network-policy ACL of
//! the network, then security groups, then the firewall policies of the application policy
//! sets — first match across every policy of the interface's list, every rule terminal,
//! implicit deny when the interface has any firewall policy. ICMP and DNS to the network's
//! gateway never reach these gates (the vrouter answers them first).
//!
//! Firewall rules are indexed by their most selective tag so a lookup only tests the rules
//! that can match the two endpoints: the cost stays flat as policies grow.

use std::net::Ipv4Addr;
use std::sync::Arc;

use ipnet::Ipv4Net;

use crate::config::{
    AddrMatch, FirewallEndpoint, Model, PolicyAction, PolicyRule, PortRange, RuleDirection, TagSet,
};
use crate::forward::control::{ItfId, NetId};
use crate::forward::hash::FxMap;
use crate::wire::frame::Tuple;

/// One end of a flow as the gates see it.
#[derive(Debug, Clone, Copy)]
pub struct Peer<'a> {
    /// Address (after NAT).
    pub ip: Ipv4Addr,
    /// Its network (`None`: ip-fabric or outside).
    pub net: Option<NetId>,
    /// Its interface, when it is a workload.
    pub itf: Option<ItfId>,
    /// Its tags, when it is a workload.
    pub tags: Option<&'a TagSet>,
}

/// Which gate decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Gate {
    /// The network-policy ACL of a network.
    NetworkPolicy,
    /// Security groups of the interface.
    SecurityGroup,
    /// Firewall policies of the application policy sets.
    Firewall,
    /// The vrouter answered (gateway ICMP / DNS).
    Gateway,
}

impl Gate {
    /// A short label.
    pub fn as_str(self) -> &'static str {
        match self {
            Gate::NetworkPolicy => "network-policy",
            Gate::SecurityGroup => "security-group",
            Gate::Firewall => "firewall",
            Gate::Gateway => "gateway",
        }
    }
}

/// A gate's decision and the rule (by name) that made it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    /// The gate.
    pub gate: Gate,
    /// The deciding rule, or a description of the implicit rule.
    pub rule: Arc<str>,
    /// The action.
    pub action: PolicyAction,
}

impl Decision {
    fn new(gate: Gate, rule: &Arc<str>, action: PolicyAction) -> Decision {
        Decision {
            gate,
            rule: Arc::clone(rule),
            action,
        }
    }
}

impl std::fmt::Display for Decision {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let a = match self.action {
            PolicyAction::Pass => "pass",
            PolicyAction::Deny => "deny",
        };
        write!(f, "{} {a} by {}", self.gate.as_str(), self.rule)
    }
}

#[derive(Debug, Clone)]
enum Addr {
    Any,
    Nets(Vec<NetId>),
    Subnet(Ipv4Net),
    SgMembers(String),
    Nothing,
}

fn compile_addr(model: &Model, local_net: Option<NetId>, m: &AddrMatch) -> Addr {
    match m {
        AddrMatch::Any => Addr::Any,
        AddrMatch::Network(fq) => match model.network_by_fq.get(fq) {
            Some(n) => Addr::Nets(vec![*n]),
            None => Addr::Nothing,
        },
        AddrMatch::PolicyNetworks(p) => Addr::Nets(
            model
                .networks
                .iter()
                .enumerate()
                .filter(|(_, n)| n.policies.contains(p))
                .map(|(i, _)| i)
                .collect(),
        ),
        AddrMatch::Subnet(s) => Addr::Subnet(*s),
        AddrMatch::Local => match local_net {
            Some(n) => Addr::Nets(vec![n]),
            None => Addr::Nothing,
        },
        AddrMatch::SecurityGroup(fq) => Addr::SgMembers(fq.clone()),
    }
}

fn addr_matches(model: &Model, a: &Addr, p: &Peer) -> bool {
    match a {
        Addr::Any => true,
        Addr::Nets(v) => p.net.is_some_and(|n| v.contains(&n)),
        Addr::Subnet(s) => s.contains(&p.ip),
        Addr::SgMembers(fq) => p.itf.is_some_and(|i| {
            model.interfaces[i]
                .security_groups
                .iter()
                .any(|u| model.security_groups.get(u).is_some_and(|sg| &sg.fq == fq))
        }),
        Addr::Nothing => false,
    }
}

fn proto_ports_match(
    proto: Option<u8>,
    sports: &[PortRange],
    dports: &[PortRange],
    t: &Tuple,
) -> bool {
    if proto.is_some_and(|p| p != t.proto) {
        return false;
    }
    if t.proto == 1 {
        return true; // ICMP has no ports
    }
    sports.iter().any(|r| r.contains(t.sport)) && dports.iter().any(|r| r.contains(t.dport))
}

#[derive(Debug, Clone)]
struct AclRule {
    name: Arc<str>,
    direction: RuleDirection,
    proto: Option<u8>,
    src: Vec<Addr>,
    dst: Vec<Addr>,
    src_ports: Vec<PortRange>,
    dst_ports: Vec<PortRange>,
    action: PolicyAction,
}

impl AclRule {
    fn compile(model: &Model, local: Option<NetId>, r: &PolicyRule) -> AclRule {
        let name: Arc<str> = if r.services.is_empty() {
            Arc::from(r.name.as_str())
        } else {
            Arc::from(format!("{} (apply_service {})", r.name, r.services.join(", ")).as_str())
        };
        AclRule {
            name,
            direction: r.direction,
            proto: r.proto,
            src: r
                .src
                .iter()
                .map(|m| compile_addr(model, local, m))
                .collect(),
            dst: r
                .dst
                .iter()
                .map(|m| compile_addr(model, local, m))
                .collect(),
            src_ports: r.src_ports.clone(),
            dst_ports: r.dst_ports.clone(),
            action: r.action,
        }
    }

    fn matches_one_way(&self, model: &Model, src: &Peer, dst: &Peer, t: &Tuple) -> bool {
        proto_ports_match(self.proto, &self.src_ports, &self.dst_ports, t)
            && self.src.iter().any(|a| addr_matches(model, a, src))
            && self.dst.iter().any(|a| addr_matches(model, a, dst))
    }

    fn matches(&self, model: &Model, src: &Peer, dst: &Peer, t: &Tuple) -> bool {
        match self.direction {
            RuleDirection::Forward => self.matches_one_way(model, src, dst, t),
            RuleDirection::Reverse => self.matches_one_way(model, dst, src, &t.reversed()),
            RuleDirection::Both => {
                self.matches_one_way(model, src, dst, t)
                    || self.matches_one_way(model, dst, src, &t.reversed())
            }
        }
    }
}

/// The network-policy ACL of one network.
#[derive(Debug, Clone)]
pub struct Acl {
    net: NetId,
    rules: Vec<AclRule>,
    no_policy: Arc<str>,
    same_network: Arc<str>,
    implicit_deny: Arc<str>,
}

impl Acl {
    /// The ACL of network `n`: the rules of its policies in attachment order.
    pub fn compile(model: &Model, n: NetId) -> Acl {
        let net = &model.networks[n];
        let rules = net
            .policies
            .iter()
            .filter_map(|p| model.policies.get(p))
            .flatten()
            .map(|r| AclRule::compile(model, Some(n), r))
            .collect();
        Acl {
            net: n,
            rules,
            no_policy: Arc::from(
                format!("{}: no network policy attached (allow)", net.fq).as_str(),
            ),
            same_network: Arc::from(
                format!("{}: implicit pass within the network", net.fq).as_str(),
            ),
            implicit_deny: Arc::from(
                format!("{}: implicit deny (no network-policy rule matched)", net.fq).as_str(),
            ),
        }
    }

    /// First matching rule; implicit pass without policies or within the network, else
    /// implicit deny.
    pub fn evaluate(&self, model: &Model, src: &Peer, dst: &Peer, t: &Tuple) -> Decision {
        for r in &self.rules {
            if r.matches(model, src, dst, t) {
                return Decision::new(Gate::NetworkPolicy, &r.name, r.action);
            }
        }
        if self.rules.is_empty() {
            Decision::new(Gate::NetworkPolicy, &self.no_policy, PolicyAction::Pass)
        } else if src.net == Some(self.net) && dst.net == Some(self.net) {
            Decision::new(Gate::NetworkPolicy, &self.same_network, PolicyAction::Pass)
        } else {
            Decision::new(Gate::NetworkPolicy, &self.implicit_deny, PolicyAction::Deny)
        }
    }
}

/// Compiled security groups.
#[derive(Debug, Clone, Default)]
pub struct SecurityGroups {
    groups: std::collections::HashMap<String, Vec<(bool, AclRule)>>,
    no_match: Arc<str>,
}

impl SecurityGroups {
    /// Compiles every group; each rule is an egress rule (source `local`) or an ingress rule
    /// (destination `local`).
    pub fn compile(model: &Model) -> SecurityGroups {
        let mut s = SecurityGroups {
            no_match: Arc::from("security groups: no rule matched (deny)"),
            ..SecurityGroups::default()
        };
        let mut uuids: Vec<&String> = model.security_groups.keys().collect();
        uuids.sort();
        for u in uuids {
            let sg = &model.security_groups[u];
            let rules = sg
                .rules
                .iter()
                .map(|r| {
                    let egress = r.src.iter().any(|a| matches!(a, AddrMatch::Local));
                    (egress, AclRule::compile(model, None, r))
                })
                .collect();
            s.groups.insert(u.clone(), rules);
        }
        s
    }

    /// The security-group gate of interface `itf` for traffic it sends (`egress`) or
    /// receives; `None` when it has no groups or port security is off.
    pub fn evaluate(
        &self,
        model: &Model,
        itf: ItfId,
        egress: bool,
        remote: &Peer,
        t: &Tuple,
    ) -> Option<Decision> {
        let i = &model.interfaces[itf];
        if !i.port_security || i.security_groups.is_empty() {
            return None;
        }
        for u in &i.security_groups {
            for (is_egress, r) in self.groups.get(u).map(Vec::as_slice).unwrap_or(&[]) {
                if *is_egress != egress {
                    continue;
                }
                let ports_ok = proto_ports_match(r.proto, &r.src_ports, &r.dst_ports, t);
                let addrs = if egress { &r.dst } else { &r.src };
                if ports_ok && addrs.iter().any(|a| addr_matches(model, a, remote)) {
                    return Some(Decision::new(Gate::SecurityGroup, &r.name, r.action));
                }
            }
        }
        Some(Decision::new(
            Gate::SecurityGroup,
            &self.no_match,
            PolicyAction::Deny,
        ))
    }
}

#[derive(Debug, Clone, PartialEq)]
enum Ep {
    Any,
    Tags(Vec<u32>),
    Prefixes(Vec<Ipv4Net>),
    Net(NetId),
    Never,
}

impl Ep {
    fn compile(model: &Model, e: &FirewallEndpoint) -> Ep {
        match e {
            FirewallEndpoint::Any => Ep::Any,
            FirewallEndpoint::Tags(t) if t.is_empty() => Ep::Any,
            FirewallEndpoint::Tags(t) => Ep::Tags(t.clone()),
            FirewallEndpoint::Prefixes(p) => Ep::Prefixes(p.clone()),
            FirewallEndpoint::Network(fq) => match model.network_by_fq.get(fq) {
                Some(n) => Ep::Net(*n),
                None => Ep::Never,
            },
            FirewallEndpoint::Unresolved(_) => Ep::Never,
        }
    }

    #[inline]
    fn matches(&self, p: &Peer) -> bool {
        match self {
            Ep::Any => true,
            Ep::Tags(t) => p.tags.is_some_and(|s| s.contains_all(t)),
            Ep::Prefixes(v) => v.iter().any(|n| n.contains(&p.ip)),
            Ep::Net(n) => p.net == Some(*n),
            Ep::Never => false,
        }
    }
}

#[derive(Debug, Clone)]
struct FwRule {
    name: Arc<str>,
    action: PolicyAction,
    proto: Option<u8>,
    sports: PortRange,
    dports: PortRange,
    match_types: Vec<u32>,
}

#[derive(Debug, Clone)]
struct Oriented {
    rule: u32,
    src: Ep,
    dst: Ep,
}

/// One interface's ordered firewall rules with the index.
#[derive(Debug, Clone, Default)]
struct PolicyList {
    oriented: Vec<Oriented>,
    by_src_tag: FxMap<u32, Vec<u32>>,
    by_dst_tag: FxMap<u32, Vec<u32>>,
    unindexed: Vec<u32>,
}

const MAX_CANDIDATE_LISTS: usize = 48;

#[inline]
fn push_list<'a>(
    heads: &mut [&'a [u32]; MAX_CANDIDATE_LISTS],
    k: &mut usize,
    overflow: &mut bool,
    v: Option<&'a [u32]>,
) {
    if let Some(v) = v {
        if *k < MAX_CANDIDATE_LISTS {
            heads[*k] = v;
            *k += 1;
        } else {
            *overflow = true;
        }
    }
}

/// The compiled firewall policies of every interface.
#[derive(Debug, Clone, Default)]
pub struct Firewall {
    rules: Vec<FwRule>,
    lists: Vec<PolicyList>,
    itf_list: Vec<Option<usize>>,
    implicit_deny: Arc<str>,
}

impl Firewall {
    /// Compiles the policy list of every interface: the policies of application policy sets
    /// with `all_applications`, then those of every set whose `application` tag the interface
    /// carries, in sequence order.
    pub fn compile(model: &Model) -> Firewall {
        let mut fw = Firewall {
            implicit_deny: Arc::from(
                "implicit deny (the interface has firewall policies and none matched)",
            ),
            ..Firewall::default()
        };
        let mut rule_index: FxMap<String, u32> = FxMap::default();
        let mut list_of: FxMap<Vec<String>, usize> = FxMap::default();
        let global: Vec<String> = model
            .application_policy_sets
            .iter()
            .filter(|a| a.all_applications)
            .flat_map(|a| a.policies.clone())
            .collect();
        for itf in &model.interfaces {
            let mut policies = global.clone();
            for aps in model
                .application_policy_sets
                .iter()
                .filter(|a| !a.all_applications)
            {
                if aps.application_tags.iter().any(|t| itf.tags.contains(*t)) {
                    policies.extend(aps.policies.iter().cloned());
                }
            }
            policies.retain(|p| model.firewall_policies.contains_key(p));
            if policies.is_empty() {
                fw.itf_list.push(None);
                continue;
            }
            let id = match list_of.get(&policies) {
                Some(id) => *id,
                None => {
                    let id = fw.lists.len();
                    let list = fw.build_list(model, &policies, &mut rule_index);
                    fw.lists.push(list);
                    list_of.insert(policies, id);
                    id
                }
            };
            fw.itf_list.push(Some(id));
        }
        fw
    }

    fn build_list(
        &mut self,
        model: &Model,
        policies: &[String],
        rule_index: &mut FxMap<String, u32>,
    ) -> PolicyList {
        let mut list = PolicyList::default();
        for p in policies {
            let Some(fp) = model.firewall_policies.get(p) else {
                continue;
            };
            for ru in &fp.rules {
                let Some(r) = model.firewall_rules.get(ru) else {
                    continue;
                };
                let idx = *rule_index.entry(ru.clone()).or_insert_with(|| {
                    self.rules.push(FwRule {
                        name: Arc::from(format!("{} / {}", fp.fq, r.name).as_str()),
                        action: r.action,
                        proto: r.proto,
                        sports: r.src_ports,
                        dports: r.dst_ports,
                        match_types: r.match_tag_types.clone(),
                    });
                    (self.rules.len() - 1) as u32
                });
                let e1 = Ep::compile(model, &r.endpoint_1);
                let e2 = Ep::compile(model, &r.endpoint_2);
                let mut push = |src: &Ep, dst: &Ep| {
                    list.oriented.push(Oriented {
                        rule: idx,
                        src: src.clone(),
                        dst: dst.clone(),
                    });
                };
                match r.direction {
                    RuleDirection::Forward => push(&e1, &e2),
                    RuleDirection::Reverse => push(&e2, &e1),
                    RuleDirection::Both => {
                        push(&e1, &e2);
                        push(&e2, &e1);
                    }
                }
            }
        }
        // Index each oriented rule under its rarest tag.
        let mut freq: FxMap<u32, u32> = FxMap::default();
        for o in &list.oriented {
            for ep in [&o.src, &o.dst] {
                if let Ep::Tags(t) = ep {
                    for id in t {
                        *freq.entry(*id).or_default() += 1;
                    }
                }
            }
        }
        for (i, o) in list.oriented.iter().enumerate() {
            let best = |ep: &Ep| match ep {
                Ep::Tags(t) => t.iter().map(|id| (freq[id], *id)).min(),
                _ => None,
            };
            match (best(&o.src), best(&o.dst)) {
                (Some(s), Some(d)) if s <= d => {
                    list.by_src_tag.entry(s.1).or_default().push(i as u32)
                }
                (_, Some(d)) => list.by_dst_tag.entry(d.1).or_default().push(i as u32),
                (Some(s), None) => list.by_src_tag.entry(s.1).or_default().push(i as u32),
                (None, None) => list.unindexed.push(i as u32),
            }
        }
        list
    }

    /// Whether interface `itf` has firewall policies.
    pub fn applies_to(&self, itf: ItfId) -> bool {
        self.itf_list.get(itf).copied().flatten().is_some()
    }

    /// Number of firewall rules compiled.
    pub fn rule_count(&self) -> usize {
        self.rules.len()
    }

    /// The firewall gate of interface `itf` for the flow `src → dst`; `None` when the
    /// interface has no firewall policy.
    pub fn evaluate(&self, itf: ItfId, src: &Peer, dst: &Peer, t: &Tuple) -> Option<Decision> {
        let list = &self.lists[self.itf_list.get(itf).copied().flatten()?];
        let mut heads: [&[u32]; MAX_CANDIDATE_LISTS] = [&[]; MAX_CANDIDATE_LISTS];
        let mut k = 0usize;
        let mut overflow = false;
        push_list(
            &mut heads,
            &mut k,
            &mut overflow,
            Some(list.unindexed.as_slice()),
        );
        if let Some(tags) = src.tags {
            for id in tags.ids() {
                push_list(
                    &mut heads,
                    &mut k,
                    &mut overflow,
                    list.by_src_tag.get(id).map(Vec::as_slice),
                );
            }
        }
        if let Some(tags) = dst.tags {
            for id in tags.ids() {
                push_list(
                    &mut heads,
                    &mut k,
                    &mut overflow,
                    list.by_dst_tag.get(id).map(Vec::as_slice),
                );
            }
        }
        let test = |i: u32| -> Option<Decision> {
            let o = &list.oriented[i as usize];
            let r = &self.rules[o.rule as usize];
            if r.proto.is_some_and(|p| p != t.proto) {
                return None;
            }
            if t.proto != 1 && (!r.dports.contains(t.dport) || !r.sports.contains(t.sport)) {
                return None;
            }
            if !o.src.matches(src) || !o.dst.matches(dst) {
                return None;
            }
            for ty in &r.match_types {
                let a = src.tags.and_then(|s| s.of_type(*ty));
                if a.is_none() || a != dst.tags.and_then(|s| s.of_type(*ty)) {
                    return None;
                }
            }
            Some(Decision::new(Gate::Firewall, &r.name, r.action))
        };
        if overflow {
            for i in 0..list.oriented.len() as u32 {
                if let Some(d) = test(i) {
                    return Some(d);
                }
            }
        } else {
            // k-way merge of the sorted candidate lists, in rule order.
            loop {
                let mut min = u32::MAX;
                for h in &heads[..k] {
                    if let Some(&f) = h.first()
                        && f < min
                    {
                        min = f;
                    }
                }
                if min == u32::MAX {
                    break;
                }
                for h in &mut heads[..k] {
                    if h.first() == Some(&min) {
                        *h = &h[1..];
                    }
                }
                if let Some(d) = test(min) {
                    return Some(d);
                }
            }
        }
        Some(Decision::new(
            Gate::Firewall,
            &self.implicit_deny,
            PolicyAction::Deny,
        ))
    }
}
