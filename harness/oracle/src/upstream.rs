//! NetworkPolicy v1 semantics (CONFORMANCE.md §2), compiled into per-pod indexes so that one
//! cell costs the same whether 10 or 1,000 policies exist.
//!
//! Each pod points at a *group*: the set of policies isolating it in one direction. A group
//! merges the rules of its policies into a few entries, one per distinct port match, each
//! holding the union of admitted peer pods (a bit set), whether every peer is admitted, and the
//! admitted ipBlocks. A verdict is a handful of bit tests; the admitting rule is looked up only
//! to explain an allowed cell.

use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::sync::Arc;

use harness_scenario::{PortRef, Protocol};

use crate::bitset::BitSet;
use crate::explain::{DirectionOutcome, PolicyRef};
use crate::model::{Cluster, Pod};
use crate::policy::{Direction, IpBlockDef, NetworkPolicyDef, PeerDef, PortDef, RuleDef};
use crate::selector::Selector;

/// The other end of a flow as a policy sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Side {
    /// A pod (not host-network): matched by selectors and by its address.
    Pod(usize),
    /// Anything else: matched by ipBlock only.
    Addr(Ipv4Addr),
}

impl Side {
    pub(crate) fn address(&self, c: &Cluster) -> Ipv4Addr {
        match self {
            Side::Pod(i) => c.pod_at(*i).address,
            Side::Addr(a) => *a,
        }
    }
}

/// A compiled port entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum PortMatch {
    /// The rule lists no ports: every port of every protocol, ICMP included.
    All,
    Range {
        proto: Protocol,
        lo: u16,
        hi: u16,
    },
    /// Resolved on the destination pod's container ports.
    Named {
        proto: Protocol,
        name: String,
    },
}

impl PortMatch {
    pub(crate) fn from_def(p: &PortDef) -> PortMatch {
        let proto = p.protocol_or_tcp();
        match &p.port {
            None => PortMatch::Range {
                proto,
                lo: 1,
                hi: 65535,
            },
            Some(PortRef::Number(n)) => PortMatch::Range {
                proto,
                lo: *n,
                hi: p.end_port.unwrap_or(*n),
            },
            Some(PortRef::Name(s)) => PortMatch::Named {
                proto,
                name: s.clone(),
            },
        }
    }

    /// `port` is `None` for ICMP; `dst` resolves named ports.
    pub(crate) fn matches(&self, proto: Protocol, port: Option<u16>, dst: Option<&Pod>) -> bool {
        match (self, port) {
            (PortMatch::All, _) => true,
            (_, None) => false,
            (PortMatch::Range { proto: p, lo, hi }, Some(n)) => *p == proto && *lo <= n && n <= *hi,
            (PortMatch::Named { proto: p, name }, Some(n)) => {
                *p == proto && dst.and_then(|d| d.named_port(name, proto)) == Some(n)
            }
        }
    }
}

/// Pods (not host-network) in the given namespaces that a selector selects, using the label
/// index when the selector has `matchLabels`.
pub(crate) fn select_pods(c: &Cluster, namespaces: &[usize], sel: Option<&Selector>) -> BitSet {
    let mut out = BitSet::new(c.pods().len());
    let in_ns = |p: &Pod| namespaces.contains(&p.ns_index);
    match sel.and_then(|s| s.match_labels.first().map(|kv| (s, kv))) {
        Some((s, _)) => {
            // The shortest posting list of the matchLabels pairs.
            let candidates = s
                .match_labels
                .iter()
                .map(|(k, v)| c.pods_with_label(k, v))
                .min_by_key(|l| l.len())
                .unwrap_or(&[]);
            for &i in candidates {
                let p = c.pod_at(i);
                if !p.host_network && in_ns(p) && s.matches(&p.labels) {
                    out.insert(i);
                }
            }
        }
        None => {
            for &ns in namespaces {
                for i in c.ns_pod_range(ns) {
                    let p = c.pod_at(i);
                    if !p.host_network && sel.is_none_or(|s| s.matches(&p.labels)) {
                        out.insert(i);
                    }
                }
            }
        }
    }
    out
}

/// Namespaces a selector selects (by the namespaces' labels).
pub(crate) fn select_namespaces(c: &Cluster, sel: &Selector) -> Vec<usize> {
    c.namespaces()
        .iter()
        .enumerate()
        .filter(|(_, n)| sel.matches(&n.labels))
        .map(|(i, _)| i)
        .collect()
}

struct CPeer {
    pods: Option<BitSet>,
    block: Option<IpBlockDef>,
    text: Arc<str>,
}

struct CRule {
    peers: Vec<CPeer>,
    ports: Vec<PortMatch>,
}

struct CPolicy {
    id: Arc<str>,
    types: &'static str,
    ingress: Option<Vec<CRule>>,
    egress: Option<Vec<CRule>>,
}

impl CPolicy {
    fn rules(&self, d: Direction) -> Option<&Vec<CRule>> {
        match d {
            Direction::Ingress => self.ingress.as_ref(),
            Direction::Egress => self.egress.as_ref(),
        }
    }
}

struct Entry {
    port: PortMatch,
    all: bool,
    pods: BitSet,
    blocks: Vec<IpBlockDef>,
}

struct Group {
    policies: Vec<u32>,
    isolated_by: Arc<[PolicyRef]>,
    entries: Vec<Entry>,
}

const NONE: u32 = u32::MAX;

/// The compiled upstream evaluator.
pub(crate) struct Upstream {
    policies: Vec<CPolicy>,
    groups: Vec<Group>,
    ingress_group: Vec<u32>,
    egress_group: Vec<u32>,
    all_peers: Arc<str>,
}

impl Upstream {
    pub(crate) fn build(c: &Cluster) -> Upstream {
        let n = c.pods().len();
        let mut policies = Vec::new();
        let mut selected: Vec<BitSet> = Vec::new();
        for def in c.network_policies() {
            let ns = c.ns_idx(&def.namespace).into_iter().collect::<Vec<_>>();
            let sel = if def.pod_selector.is_empty() {
                None
            } else {
                Some(&def.pod_selector)
            };
            selected.push(select_pods(c, &ns, sel));
            policies.push(compile_policy(c, def));
        }
        // Group pods by the exact list of policies isolating them, per direction.
        let mut groups: Vec<Group> = Vec::new();
        let mut by_key: HashMap<(Direction, Vec<u32>), u32> = HashMap::new();
        let mut ingress_group = vec![NONE; n];
        let mut egress_group = vec![NONE; n];
        let mut per_pod: Vec<[Vec<u32>; 2]> = vec![[Vec::new(), Vec::new()]; n];
        for (pi, s) in selected.iter().enumerate() {
            for i in s.iter() {
                if policies[pi].ingress.is_some() {
                    per_pod[i][0].push(pi as u32);
                }
                if policies[pi].egress.is_some() {
                    per_pod[i][1].push(pi as u32);
                }
            }
        }
        for (i, lists) in per_pod.into_iter().enumerate() {
            for (d, list) in [Direction::Ingress, Direction::Egress]
                .into_iter()
                .zip(lists)
            {
                if list.is_empty() {
                    continue;
                }
                let key = (d, list);
                let g = match by_key.get(&key) {
                    Some(g) => *g,
                    None => {
                        let g = groups.len() as u32;
                        groups.push(build_group(&policies, d, &key.1, n));
                        by_key.insert(key, g);
                        g
                    }
                };
                match d {
                    Direction::Ingress => ingress_group[i] = g,
                    Direction::Egress => egress_group[i] = g,
                }
            }
        }
        Upstream {
            policies,
            groups,
            ingress_group,
            egress_group,
            all_peers: Arc::from("all peers"),
        }
    }

    /// Whether the pod is isolated in that direction, and by which policies.
    pub(crate) fn isolating(&self, pod: usize, d: Direction) -> Option<&Arc<[PolicyRef]>> {
        let g = match d {
            Direction::Ingress => self.ingress_group.get(pod),
            Direction::Egress => self.egress_group.get(pod),
        };
        g.filter(|g| **g != NONE)
            .map(|g| &self.groups[*g as usize].isolated_by)
    }

    /// The outcome at `pod` for direction `d`; `other` is the source (ingress) or the
    /// destination (egress); named ports resolve on the destination pod.
    pub(crate) fn decide(
        &self,
        c: &Cluster,
        d: Direction,
        pod: usize,
        other: Side,
        proto: Protocol,
        port: Option<u16>,
    ) -> DirectionOutcome {
        let g = match d {
            Direction::Ingress => self.ingress_group[pod],
            Direction::Egress => self.egress_group[pod],
        };
        if g == NONE {
            return DirectionOutcome::NotIsolated;
        }
        let group = &self.groups[g as usize];
        let dst_pod = match (d, other) {
            (Direction::Ingress, _) => Some(c.pod_at(pod)),
            (Direction::Egress, Side::Pod(j)) => Some(c.pod_at(j)),
            (Direction::Egress, Side::Addr(_)) => None,
        };
        let addr = other.address(c);
        let peer_matches = |all: bool, pods: Option<&BitSet>, blocks: &[IpBlockDef]| {
            all || matches!(other, Side::Pod(j) if pods.is_some_and(|p| p.contains(j)))
                || blocks.iter().any(|b| b.contains(addr))
        };
        let admitted = group.entries.iter().any(|e| {
            e.port.matches(proto, port, dst_pod) && peer_matches(e.all, Some(&e.pods), &e.blocks)
        });
        if !admitted {
            return DirectionOutcome::Denied {
                isolated_by: group.isolated_by.clone(),
            };
        }
        // Explain: the first policy/rule/peer (in creation order) that admits.
        for &pi in &group.policies {
            let p = &self.policies[pi as usize];
            for (ri, r) in p.rules(d).into_iter().flatten().enumerate() {
                if !(r.ports.is_empty()
                    || r.ports.iter().any(|pm| pm.matches(proto, port, dst_pod)))
                {
                    continue;
                }
                if r.peers.is_empty() {
                    return DirectionOutcome::Admitted {
                        policy: p.id.clone(),
                        rule: ri,
                        peer: None,
                        peer_text: self.all_peers.clone(),
                    };
                }
                for (j, peer) in r.peers.iter().enumerate() {
                    let blocks: &[IpBlockDef] = peer.block.as_slice();
                    if peer_matches(false, peer.pods.as_ref(), blocks) {
                        return DirectionOutcome::Admitted {
                            policy: p.id.clone(),
                            rule: ri,
                            peer: Some(j),
                            peer_text: peer.text.clone(),
                        };
                    }
                }
            }
        }
        // Unreachable when the index and the rules agree; say what the index found.
        DirectionOutcome::Admitted {
            policy: group
                .isolated_by
                .first()
                .map(|p| p.name.clone())
                .unwrap_or_else(|| self.all_peers.clone()),
            rule: 0,
            peer: None,
            peer_text: self.all_peers.clone(),
        }
    }
}

fn compile_rules(c: &Cluster, def: &NetworkPolicyDef, rules: &[RuleDef]) -> Vec<CRule> {
    let own_ns: Vec<usize> = c.ns_idx(&def.namespace).into_iter().collect();
    rules
        .iter()
        .map(|r| CRule {
            peers: r
                .peers
                .iter()
                .map(|p| match p {
                    PeerDef::Selectors { namespace, pod } => {
                        let nss = match namespace {
                            None => own_ns.clone(),
                            Some(s) => select_namespaces(c, s),
                        };
                        let sel = pod.as_ref().filter(|s| !s.is_empty());
                        CPeer {
                            pods: Some(select_pods(c, &nss, sel)),
                            block: None,
                            text: Arc::from(p.to_string()),
                        }
                    }
                    PeerDef::IpBlock(b) => CPeer {
                        pods: None,
                        block: Some(b.clone()),
                        text: Arc::from(p.to_string()),
                    },
                })
                .collect(),
            ports: r.ports.iter().map(PortMatch::from_def).collect(),
        })
        .collect()
}

fn compile_policy(c: &Cluster, def: &NetworkPolicyDef) -> CPolicy {
    CPolicy {
        id: Arc::from(def.id()),
        types: def.types_text(),
        ingress: def
            .has_type(Direction::Ingress)
            .then(|| compile_rules(c, def, &def.ingress)),
        egress: def
            .has_type(Direction::Egress)
            .then(|| compile_rules(c, def, &def.egress)),
    }
}

fn build_group(policies: &[CPolicy], d: Direction, list: &[u32], n: usize) -> Group {
    let mut entries: Vec<Entry> = Vec::new();
    let mut entry = |port: &PortMatch| -> usize {
        match entries.iter().position(|e| e.port == *port) {
            Some(i) => i,
            None => {
                entries.push(Entry {
                    port: port.clone(),
                    all: false,
                    pods: BitSet::new(n),
                    blocks: Vec::new(),
                });
                entries.len() - 1
            }
        }
    };
    let mut plan: Vec<(usize, Option<&CPeer>)> = Vec::new();
    for &pi in list {
        for r in policies[pi as usize].rules(d).into_iter().flatten() {
            let ports: Vec<PortMatch> = if r.ports.is_empty() {
                vec![PortMatch::All]
            } else {
                r.ports.clone()
            };
            for pm in &ports {
                let e = entry(pm);
                if r.peers.is_empty() {
                    plan.push((e, None));
                } else {
                    plan.extend(r.peers.iter().map(|p| (e, Some(p))));
                }
            }
        }
    }
    for (e, peer) in plan {
        let entry = &mut entries[e];
        match peer {
            None => entry.all = true,
            Some(p) => {
                if let Some(pods) = &p.pods {
                    entry.pods.union_with(pods);
                }
                if let Some(b) = &p.block
                    && !entry.blocks.contains(b)
                {
                    entry.blocks.push(b.clone());
                }
            }
        }
    }
    let isolated_by: Arc<[PolicyRef]> = list
        .iter()
        .map(|&pi| PolicyRef {
            name: policies[pi as usize].id.clone(),
            types: policies[pi as usize].types,
        })
        .collect();
    Group {
        policies: list.to_vec(),
        isolated_by,
        entries,
    }
}
