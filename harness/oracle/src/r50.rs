//! The `r5.0` profile: NetworkPolicies translated as the shipped contrail-kube-manager (branch
//! R5.0) does, into one ordered firewall-rule list evaluated first-match at both ends of a flow
//! (research/contrail.md §3.2-3.5), and the named deviations from upstream that explain every
//! verdict that differs.
//!
//! Each deviation is a switch of the translator (`Quirks`); the shipped behaviour has all of
//! them on. Turning all of them off yields upstream semantics, which the tests check; turning
//! one off at a time tells which deviations a differing verdict depends on.

use std::collections::HashMap;
use std::fmt;
use std::net::Ipv4Addr;
use std::sync::Arc;

use harness_scenario::{PortRef, Protocol};
use ipnet::IpNet;
use serde::Serialize;

use crate::bitset::BitSet;
use crate::model::Cluster;
use crate::policy::{Direction, NetworkPolicyDef, PeerDef, RuleDef};
use crate::selector::{Labels, Requirement, Selector};

/// A way the r5.0 translator departs from upstream NetworkPolicy semantics.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(into = "&'static str")]
pub enum Deviation {
    /// One ordered rule list for the whole cluster, first match wins at both ends.
    ClusterWideFirstMatch,
    /// `matchExpressions` are dropped from every selector.
    MatchExpressionsIgnored,
    /// An empty `podSelector`/`namespaceSelector` peer yields no rule; a peer list left empty
    /// becomes `any`.
    EmptySelectorAny,
    /// A peer with both selectors yields two rules (OR) instead of one (AND).
    PeerSelectorsOr,
    /// A port without `protocol` matches any protocol instead of TCP.
    ProtocolDefaultAny,
    /// SCTP ports make the whole NetworkPolicy fail translation.
    SctpUnsupported,
    /// Named ports are passed through unresolved and match nothing.
    NamedPortsUnresolved,
    /// `except` ranges become deny rules that pre-empt later allow rules.
    ExceptPreemptsAllow,
    /// `endPort` is dropped: only the first port of a range is allowed.
    EndPortIgnored,
    /// Pod and namespace labels share one tag space on the pod.
    LabelsFlattened,
    /// Egress rules of different `egress[]` entries share names; the later overwrites.
    EgressRuleNameCollision,
    /// The ingress VIP carries `namespace=<ns>`, so namespace-wide ingress policies gate it.
    IngressVipSelected,
    /// SCTP service ports become UDP listeners: SCTP to a service VIP is dropped.
    SctpServiceAsUdp,
}

impl Deviation {
    /// Every deviation, in a stable order.
    pub const ALL: [Deviation; 13] = [
        Deviation::ClusterWideFirstMatch,
        Deviation::MatchExpressionsIgnored,
        Deviation::EmptySelectorAny,
        Deviation::PeerSelectorsOr,
        Deviation::ProtocolDefaultAny,
        Deviation::SctpUnsupported,
        Deviation::NamedPortsUnresolved,
        Deviation::ExceptPreemptsAllow,
        Deviation::EndPortIgnored,
        Deviation::LabelsFlattened,
        Deviation::EgressRuleNameCollision,
        Deviation::IngressVipSelected,
        Deviation::SctpServiceAsUdp,
    ];

    /// The deviations that are switches of the firewall translator.
    pub(crate) const FIREWALL: [Deviation; 11] = [
        Deviation::ClusterWideFirstMatch,
        Deviation::MatchExpressionsIgnored,
        Deviation::EmptySelectorAny,
        Deviation::PeerSelectorsOr,
        Deviation::ProtocolDefaultAny,
        Deviation::SctpUnsupported,
        Deviation::NamedPortsUnresolved,
        Deviation::ExceptPreemptsAllow,
        Deviation::EndPortIgnored,
        Deviation::LabelsFlattened,
        Deviation::EgressRuleNameCollision,
    ];

    /// Stable kebab-case name.
    pub fn name(self) -> &'static str {
        match self {
            Deviation::ClusterWideFirstMatch => "cluster-wide-first-match",
            Deviation::MatchExpressionsIgnored => "match-expressions-ignored",
            Deviation::EmptySelectorAny => "empty-selector-any",
            Deviation::PeerSelectorsOr => "peer-selectors-or",
            Deviation::ProtocolDefaultAny => "protocol-default-any",
            Deviation::SctpUnsupported => "sctp-unsupported",
            Deviation::NamedPortsUnresolved => "named-ports-unresolved",
            Deviation::ExceptPreemptsAllow => "except-preempts-allow",
            Deviation::EndPortIgnored => "end-port-ignored",
            Deviation::LabelsFlattened => "labels-flattened",
            Deviation::EgressRuleNameCollision => "egress-rule-name-collision",
            Deviation::IngressVipSelected => "ingress-vip-selected",
            Deviation::SctpServiceAsUdp => "sctp-service-as-udp",
        }
    }

    /// One line saying what the shipped code does differently.
    pub fn description(self) -> &'static str {
        match self {
            Deviation::ClusterWideFirstMatch => {
                "every policy's rules form one first-match list evaluated at both ends, so one pod's allow rule can override another pod's isolation"
            }
            Deviation::MatchExpressionsIgnored => {
                "matchExpressions are dropped, so selectors select more"
            }
            Deviation::EmptySelectorAny => {
                "an empty podSelector/namespaceSelector peer yields no rule, and a peer list left empty becomes any source or destination"
            }
            Deviation::PeerSelectorsOr => {
                "a peer with namespaceSelector and podSelector matches either, not both"
            }
            Deviation::ProtocolDefaultAny => {
                "a port without protocol matches every protocol, not just TCP"
            }
            Deviation::SctpUnsupported => {
                "an SCTP port makes the whole NetworkPolicy fail translation, so it is not applied"
            }
            Deviation::NamedPortsUnresolved => {
                "named ports are not resolved to numbers and match nothing"
            }
            Deviation::ExceptPreemptsAllow => {
                "ipBlock except ranges become deny rules that also pre-empt other peers' and policies' allows"
            }
            Deviation::EndPortIgnored => {
                "endPort is dropped, so a port range allows only its first port"
            }
            Deviation::LabelsFlattened => {
                "pod and namespace labels are one tag set on the pod, so a pod label can satisfy a namespaceSelector, a namespace label overrides a pod label, and the tag namespace=<ns> answers selectors on the key namespace"
            }
            Deviation::EgressRuleNameCollision => {
                "egress rule names carry no egress[] index, so a later egress entry overwrites an earlier one's rule"
            }
            Deviation::IngressVipSelected => {
                "the ingress VIP carries namespace=<ns>, so namespace-wide ingress policies also gate it"
            }
            Deviation::SctpServiceAsUdp => {
                "SCTP service ports become UDP listeners, so SCTP to a service VIP is dropped"
            }
        }
    }
}

impl From<Deviation> for &'static str {
    fn from(d: Deviation) -> Self {
        d.name()
    }
}

impl fmt::Display for Deviation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Which deviations a translator applies.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) struct Quirks(u32);

impl Quirks {
    fn bit(d: Deviation) -> u32 {
        1 << (d as u32)
    }
    /// The shipped behaviour.
    pub(crate) fn shipped() -> Quirks {
        Quirks(Deviation::ALL.iter().fold(0, |a, d| a | Quirks::bit(*d)))
    }
    /// Upstream semantics.
    pub(crate) fn none() -> Quirks {
        Quirks(0)
    }
    pub(crate) fn has(self, d: Deviation) -> bool {
        self.0 & Quirks::bit(d) != 0
    }
    pub(crate) fn without(self, d: Deviation) -> Quirks {
        Quirks(self.0 & !Quirks::bit(d))
    }
    pub(crate) fn with(self, d: Deviation) -> Quirks {
        Quirks(self.0 | Quirks::bit(d))
    }
}

/// Whether a deviation can change anything in this cluster (a translator switch whose
/// trigger appears nowhere yields the same firewall, so attribution need not build it).
pub(crate) fn can_matter(c: &Cluster, d: Deviation) -> bool {
    let nps = c.network_policies();
    let rules = || {
        nps.iter()
            .flat_map(|np| np.ingress.iter().chain(&np.egress))
    };
    let peers = || rules().flat_map(|r| &r.peers);
    let ports = || rules().flat_map(|r| &r.ports);
    let selectors = || {
        nps.iter().map(|np| &np.pod_selector).chain(
            peers()
                .flat_map(|p| match p {
                    PeerDef::Selectors { namespace, pod } => vec![namespace.as_ref(), pod.as_ref()],
                    PeerDef::IpBlock(_) => vec![],
                })
                .flatten(),
        )
    };
    match d {
        _ if nps.is_empty() => false,
        Deviation::ClusterWideFirstMatch => true,
        Deviation::MatchExpressionsIgnored => selectors().any(|s| !s.match_expressions.is_empty()),
        Deviation::EmptySelectorAny => peers().any(|p| match p {
            PeerDef::Selectors { namespace, pod } => namespace
                .iter()
                .chain(pod.iter())
                .any(|s| s.match_labels.is_empty()),
            PeerDef::IpBlock(_) => false,
        }),
        Deviation::PeerSelectorsOr => peers().any(|p| {
            matches!(
                p,
                PeerDef::Selectors {
                    namespace: Some(_),
                    pod: Some(_)
                }
            )
        }),
        Deviation::ProtocolDefaultAny => ports().any(|p| p.protocol.is_none()),
        Deviation::SctpUnsupported => nps.iter().any(|np| np.uses_protocol(Protocol::Sctp)),
        Deviation::NamedPortsUnresolved => {
            ports().any(|p| matches!(p.port, Some(PortRef::Name(_))))
        }
        Deviation::ExceptPreemptsAllow => {
            peers().any(|p| matches!(p, PeerDef::IpBlock(b) if !b.except.is_empty()))
        }
        Deviation::EndPortIgnored => ports().any(|p| p.end_port.is_some()),
        Deviation::LabelsFlattened => {
            // Flattening matters when a pod selector's key is also a namespace label, a namespace
            // selector's key is also a pod label, or a pod carries a `namespace` label.
            use std::collections::HashSet;
            let keys = |s: &Selector| -> Vec<String> {
                s.match_labels
                    .iter()
                    .map(|(k, _)| k.clone())
                    .chain(
                        s.match_expressions
                            .iter()
                            .map(Requirement::key)
                            .map(str::to_string),
                    )
                    .collect()
            };
            let pod_keys: HashSet<&str> = c
                .pods()
                .iter()
                .flat_map(|p| p.labels.keys().map(String::as_str))
                .collect();
            let ns_keys: HashSet<&str> = c
                .namespaces()
                .iter()
                .flat_map(|n| n.labels.keys().map(String::as_str))
                .collect();
            let mut pod_sel: HashSet<String> =
                nps.iter().flat_map(|np| keys(&np.pod_selector)).collect();
            let mut ns_sel: HashSet<String> = HashSet::new();
            for p in peers() {
                if let PeerDef::Selectors { namespace, pod } = p {
                    ns_sel.extend(namespace.iter().flat_map(keys));
                    pod_sel.extend(pod.iter().flat_map(keys));
                }
            }
            // Every pod carries the tag `namespace=<ns>`, so a selector on the key `namespace`
            // behaves differently once flattened even when no object has such a label.
            pod_keys.contains("namespace")
                || pod_sel.iter().chain(&ns_sel).any(|k| k == NAMESPACE_TAG)
                || pod_sel.iter().any(|k| ns_keys.contains(k.as_str()))
                || ns_sel.iter().any(|k| pod_keys.contains(k.as_str()))
        }
        Deviation::EgressRuleNameCollision => nps
            .iter()
            .any(|np| np.has_type(Direction::Egress) && np.egress.len() > 1),
        Deviation::IngressVipSelected | Deviation::SctpServiceAsUdp => true,
    }
}

/// A NetworkPolicy the r5.0 translator could not translate.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct TranslationError {
    /// `namespace/name`.
    pub policy: String,
    /// Why, and what the shipped code then does.
    pub reason: String,
}

impl fmt::Display for TranslationError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "NetworkPolicy {}: {}", self.policy, self.reason)
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
enum NsConstraint {
    Any,
    Named(String),
    Selector(Selector),
}

/// A firewall rule endpoint.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
enum FwEndpoint {
    Any,
    /// Tags (flattened) or, with the deviation off, proper namespace and pod selection.
    Pods {
        ns: NsConstraint,
        pod: Option<Selector>,
        flattened: bool,
    },
    /// An address group (except ranges only when except-preempts-allow is off).
    Block {
        cidr: IpNet,
        except: Vec<IpNet>,
    },
    /// `ingress=<cluster>-<ns>-<name>`: the haproxy VIP of an ingress.
    IngressVip(String),
    /// `<cluster>-svc=<svc>`: the backends of services with that (bare) name.
    ServiceBackends(String),
}

impl fmt::Display for FwEndpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FwEndpoint::Any => f.write_str("any"),
            FwEndpoint::Pods { ns, pod, .. } => {
                let mut parts = Vec::new();
                match ns {
                    NsConstraint::Any => {}
                    NsConstraint::Named(n) => parts.push(format!("namespace={n}")),
                    NsConstraint::Selector(s) => parts.push(s.to_string()),
                }
                if let Some(p) = pod {
                    parts.push(p.to_string());
                }
                if parts.is_empty() {
                    parts.push("any pod".into());
                }
                f.write_str(&parts.join("&&"))
            }
            FwEndpoint::Block { cidr, except } if except.is_empty() => {
                write!(f, "address-group {cidr}")
            }
            FwEndpoint::Block { cidr, except } => {
                write!(
                    f,
                    "address-group {cidr} except {}",
                    except
                        .iter()
                        .map(|e| e.to_string())
                        .collect::<Vec<_>>()
                        .join(",")
                )
            }
            FwEndpoint::IngressVip(t) => write!(f, "ingress={t}"),
            FwEndpoint::ServiceBackends(s) => write!(f, "svc={s}"),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum FwPorts {
    Range(u16, u16),
    Named(String),
}

#[derive(Clone, Debug, PartialEq, Eq)]
struct FwService {
    /// `None` = any.
    proto: Option<Protocol>,
    ports: FwPorts,
}

impl fmt::Display for FwService {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let p = self
            .proto
            .map(|p| p.as_str().to_ascii_lowercase())
            .unwrap_or_else(|| "any".into());
        match &self.ports {
            FwPorts::Range(0, 65535) => write!(f, "{p}"),
            FwPorts::Range(a, b) if a == b => write!(f, "{p}:{a}"),
            FwPorts::Range(a, b) => write!(f, "{p}:{a}-{b}"),
            FwPorts::Named(n) => write!(f, "{p}:{n}"),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Action {
    Pass,
    Deny,
}

/// How a rule is shown in explanations, computed once.
#[derive(Clone, Debug)]
pub(crate) struct RuleText {
    pub(crate) name: Arc<str>,
    pub(crate) firewall_policy: Arc<str>,
    pub(crate) network_policy: Option<Arc<str>>,
    /// `any > namespace=x, any → deny`.
    pub(crate) text: Arc<str>,
}

/// A firewall rule name, formatted only when shown.
#[derive(Clone, Debug)]
enum RuleName {
    /// `<prefix>-<endpoint part>-<service index>`, as `FWRule.parser` builds it.
    Parts {
        prefix: Arc<str>,
        ep: Arc<str>,
        k: usize,
    },
    Full(Arc<str>),
}

impl fmt::Display for RuleName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RuleName::Parts { prefix, ep, k } => write!(f, "{prefix}-{ep}-{k}"),
            RuleName::Full(n) => f.write_str(n),
        }
    }
}

#[derive(Clone, Debug)]
struct FwRule {
    name: RuleName,
    fw_policy: Arc<str>,
    network_policy: Option<Arc<str>>,
    action: Action,
    ep1: Arc<FwEndpoint>,
    ep2: Arc<FwEndpoint>,
    service: FwService,
    /// Which end's list the rule belongs to when enforcement is per end.
    origin: Direction,
}

/// Something a firewall rule endpoint is matched against.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum FwSubject {
    /// A pod interface (not host-network).
    Pod(usize),
    /// A non-Contrail address (fabric host, node vhost, external client, host-network pod).
    Addr(Ipv4Addr),
    /// The haproxy VIP interface of an ingress.
    IngressVip(usize),
}

/// The r5.0 decision for one flow.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct FwDecision {
    pub(crate) allowed: bool,
    /// The deciding rule; `None` for the implicit deny, or when neither end has the APS.
    pub(crate) rule: Option<usize>,
    /// Neither end has the cluster APS (no firewall applies).
    pub(crate) no_aps: bool,
}

/// The translated cluster firewall (the APS `default-policy-management:<cluster>`).
pub(crate) struct Firewall {
    quirks: Quirks,
    rules: Vec<FwRule>,
    /// Filled on first use: only deciding rules are ever shown.
    texts: Vec<std::sync::OnceLock<RuleText>>,
    src_sets: Vec<BitSet>,
    dst_sets: Vec<BitSet>,
    ingress_mask: BitSet,
    egress_mask: BitSet,
    all_mask: BitSet,
    errors: Vec<TranslationError>,
}

fn strip(s: &Selector, q: Quirks) -> Selector {
    if q.has(Deviation::MatchExpressionsIgnored) {
        s.without_expressions()
    } else {
        s.clone()
    }
}

impl Firewall {
    pub(crate) fn build(c: &Cluster, quirks: Quirks) -> Firewall {
        let cl = &c.settings().cluster_name;
        let flat = quirks.has(Deviation::LabelsFlattened);
        let mut rules: Vec<FwRule> = Vec::new();
        let mut errors = Vec::new();
        // 1. <cluster>-Ingress: the ingress proxy may reach the backends of its services.
        let ingress_fp: Arc<str> = Arc::from(format!("{cl}-Ingress"));
        for ing in c.ingresses().iter().filter(|i| i.served) {
            let mut seen: Vec<&str> = Vec::new();
            for b in &ing.backends {
                if seen.contains(&b.service.as_str()) {
                    continue;
                }
                seen.push(&b.service);
                rules.push(FwRule {
                    name: RuleName::Full(Arc::from(format!(
                        "{cl}-Ingress-{}-{}-{}",
                        ing.namespace, ing.name, b.service
                    ))),
                    fw_policy: ingress_fp.clone(),
                    network_policy: None,
                    action: Action::Pass,
                    ep1: Arc::new(FwEndpoint::IngressVip(format!(
                        "{cl}-{}-{}",
                        ing.namespace, ing.name
                    ))),
                    ep2: Arc::new(FwEndpoint::ServiceBackends(b.service.clone())),
                    service: FwService {
                        proto: None,
                        ports: FwPorts::Range(0, 65535),
                    },
                    origin: Direction::Ingress,
                });
            }
        }
        // 2. User policies in creation order.
        let mut translated: Vec<&NetworkPolicyDef> = Vec::new();
        for def in c.network_policies() {
            match translate(def, quirks, cl) {
                Ok(mut r) => {
                    rules.append(&mut r);
                    translated.push(def);
                }
                Err(reason) => errors.push(TranslationError {
                    policy: def.id(),
                    reason,
                }),
            }
        }
        // 3. <cluster>-denyall: per NetworkPolicy, a deny for each of its policy types.
        let any = Arc::new(FwEndpoint::Any);
        let denyall: Arc<str> = Arc::from(format!("{cl}-denyall"));
        let allowall: Arc<str> = Arc::from(format!("{cl}-allowall"));
        for def in &translated {
            let selected = Arc::new(selected_endpoint(def, quirks));
            let np: Arc<str> = Arc::from(def.id());
            for d in &def.policy_types {
                let (name, ep1, ep2) = match d {
                    Direction::Ingress => (
                        format!("{}-ingress-{}-denyall", def.namespace, def.name),
                        any.clone(),
                        selected.clone(),
                    ),
                    Direction::Egress => (
                        format!("{}-egress-{}-default-deny-all", def.namespace, def.name),
                        selected.clone(),
                        any.clone(),
                    ),
                };
                rules.push(FwRule {
                    name: RuleName::Full(Arc::from(name)),
                    fw_policy: denyall.clone(),
                    network_policy: Some(np.clone()),
                    action: Action::Deny,
                    ep1,
                    ep2,
                    service: FwService {
                        proto: None,
                        ports: FwPorts::Range(0, 65535),
                    },
                    origin: *d,
                });
            }
        }
        // 4. <cluster>-allowall: per namespace, allow in and out.
        for ns in c.namespaces() {
            let own = Arc::new(FwEndpoint::Pods {
                ns: NsConstraint::Named(ns.name.clone()),
                pod: None,
                flattened: flat,
            });
            for (d, ep1, ep2) in [
                (Direction::Ingress, any.clone(), own.clone()),
                (Direction::Egress, own.clone(), any.clone()),
            ] {
                rules.push(FwRule {
                    name: RuleName::Full(Arc::from(format!(
                        "{cl}-Namespace-{}-{}",
                        ns.name,
                        if d == Direction::Ingress {
                            "ingress"
                        } else {
                            "egress"
                        }
                    ))),
                    fw_policy: allowall.clone(),
                    network_policy: None,
                    action: Action::Pass,
                    ep1,
                    ep2,
                    service: FwService {
                        proto: None,
                        ports: FwPorts::Range(0, 65535),
                    },
                    origin: d,
                });
            }
        }
        // Indexes: for every pod, the rules whose source / destination endpoint it matches.
        let n = c.pods().len();
        let r = rules.len();
        let mut src_sets = vec![BitSet::new(r); n];
        let mut dst_sets = vec![BitSet::new(r); n];
        // Match each distinct endpoint against the pods once.
        let mut cache: HashMap<&FwEndpoint, usize> = HashMap::new();
        let mut matched: Vec<Vec<usize>> = Vec::new();
        let mut per_rule = Vec::with_capacity(r);
        for rule in &rules {
            let mut idx = [0usize; 2];
            for (slot, ep) in [&*rule.ep1, &*rule.ep2].into_iter().enumerate() {
                idx[slot] = match cache.get(ep) {
                    Some(&m) => m,
                    None => {
                        // `namespace=<ns>` pins an endpoint to one namespace's pods (the tag is
                        // set last, so no label overrides it).
                        let range = match ep {
                            FwEndpoint::Pods {
                                ns: NsConstraint::Named(ns),
                                ..
                            } => c.ns_idx(ns).map(|i| c.ns_pod_range(i)).unwrap_or(0..0),
                            _ => 0..n,
                        };
                        matched.push(
                            range
                                .filter(|&i| {
                                    !c.pod_at(i).host_network
                                        && ep_matches(c, ep, FwSubject::Pod(i))
                                })
                                .collect(),
                        );
                        cache.insert(ep, matched.len() - 1);
                        matched.len() - 1
                    }
                };
            }
            per_rule.push((idx[0], idx[1]));
        }
        let mut ingress_mask = BitSet::new(r);
        let mut egress_mask = BitSet::new(r);
        for (ri, (rule, (m1, m2))) in rules.iter().zip(per_rule).enumerate() {
            for &i in &matched[m1] {
                src_sets[i].insert(ri);
            }
            for &i in &matched[m2] {
                dst_sets[i].insert(ri);
            }
            match rule.origin {
                Direction::Ingress => ingress_mask.insert(ri),
                Direction::Egress => egress_mask.insert(ri),
            }
        }
        let texts = (0..rules.len())
            .map(|_| std::sync::OnceLock::new())
            .collect();
        Firewall {
            quirks,
            all_mask: BitSet::full(r),
            rules,
            texts,
            src_sets,
            dst_sets,
            ingress_mask,
            egress_mask,
            errors,
        }
    }

    pub(crate) fn errors(&self) -> &[TranslationError] {
        &self.errors
    }

    fn set_for(&self, c: &Cluster, s: FwSubject, src: bool) -> std::borrow::Cow<'_, BitSet> {
        match s {
            FwSubject::Pod(i) => std::borrow::Cow::Borrowed(if src {
                &self.src_sets[i]
            } else {
                &self.dst_sets[i]
            }),
            other => {
                let mut b = BitSet::new(self.rules.len());
                for (ri, rule) in self.rules.iter().enumerate() {
                    if ep_matches(c, if src { &rule.ep1 } else { &rule.ep2 }, other) {
                        b.insert(ri);
                    }
                }
                std::borrow::Cow::Owned(b)
            }
        }
    }

    /// The first rule (in list order) in all three sets whose service matches the probe.
    fn first_match(
        &self,
        c: &Cluster,
        sets: [&BitSet; 3],
        dst: FwSubject,
        proto: Protocol,
        port: Option<u16>,
    ) -> Option<usize> {
        let [src, dst_set, mask] = sets;
        BitSet::iter_and3(src, dst_set, mask)
            .find(|&ri| self.service_matches(c, &self.rules[ri].service, dst, proto, port))
    }

    fn service_matches(
        &self,
        c: &Cluster,
        s: &FwService,
        dst: FwSubject,
        proto: Protocol,
        port: Option<u16>,
    ) -> bool {
        if s.proto.is_some_and(|p| p != proto) {
            return false;
        }
        match (&s.ports, port) {
            // ICMP carries no port: only a rule for every protocol and port matches it.
            (FwPorts::Range(0, 65535), None) => s.proto.is_none(),
            (_, None) => false,
            (FwPorts::Range(lo, hi), Some(n)) => *lo <= n && n <= *hi,
            (FwPorts::Named(_), _) if self.quirks.has(Deviation::NamedPortsUnresolved) => false,
            (FwPorts::Named(name), Some(n)) => match dst {
                FwSubject::Pod(i) => c.pod_at(i).named_port(name, proto) == Some(n),
                _ => false,
            },
        }
    }

    fn has_aps(s: FwSubject) -> bool {
        !matches!(s, FwSubject::Addr(_))
    }

    /// Decides a flow (after DNAT).
    pub(crate) fn decide(
        &self,
        c: &Cluster,
        src: FwSubject,
        dst: FwSubject,
        proto: Protocol,
        port: Option<u16>,
    ) -> FwDecision {
        let (src_aps, dst_aps) = (Firewall::has_aps(src), Firewall::has_aps(dst));
        if !src_aps && !dst_aps {
            return FwDecision {
                allowed: true,
                rule: None,
                no_aps: true,
            };
        }
        let s = self.set_for(c, src, true);
        let d = self.set_for(c, dst, false);
        let verdict = |rule: Option<usize>| FwDecision {
            allowed: rule.is_some_and(|r| self.rules[r].action == Action::Pass),
            rule,
            no_aps: false,
        };
        if self.quirks.has(Deviation::ClusterWideFirstMatch) {
            return verdict(self.first_match(c, [&s, &d, &self.all_mask], dst, proto, port));
        }
        // Per-end enforcement: egress rules at the source, ingress rules at the destination.
        if src_aps {
            let e = verdict(self.first_match(c, [&s, &d, &self.egress_mask], dst, proto, port));
            if !e.allowed {
                return e;
            }
            if !dst_aps {
                return e;
            }
        }
        verdict(self.first_match(c, [&s, &d, &self.ingress_mask], dst, proto, port))
    }

    /// The deciding rule, for explanations.
    pub(crate) fn describe(&self, rule: usize) -> &RuleText {
        self.texts[rule].get_or_init(|| {
            let r = &self.rules[rule];
            RuleText {
                name: Arc::from(r.name.to_string()),
                firewall_policy: r.fw_policy.clone(),
                network_policy: r.network_policy.clone(),
                text: Arc::from(format!(
                    "{} > {}, {} → {}",
                    r.ep1,
                    r.ep2,
                    r.service,
                    if r.action == Action::Pass {
                        "pass"
                    } else {
                        "deny"
                    }
                )),
            }
        })
    }
}

/// The tag kube-manager puts on every pod for its namespace (`XLabelCache.get_namespace_label`).
const NAMESPACE_TAG: &str = "namespace";

/// The pod part of an endpoint pinned to the policy's namespace. kube-manager builds its tags as
/// a dict of the selector's matchLabels updated with `namespace=<policy ns>`
/// (`_get_np_pod_selector`, and `spec_parser` for a `podSelector` peer), so with flattened labels
/// a matchLabels entry on the key `namespace` is overwritten by the policy's namespace and
/// selects nothing of its own.
fn pinned_pod_part(sel: &Selector, q: Quirks) -> Option<Selector> {
    let mut sel = sel.clone();
    if q.has(Deviation::LabelsFlattened) {
        sel.match_labels.retain(|(k, _)| k != NAMESPACE_TAG);
    }
    (!sel.is_empty()).then_some(sel)
}

/// The endpoint of the pods a NetworkPolicy selects: `namespace=<ns>` plus its matchLabels.
fn selected_endpoint(def: &NetworkPolicyDef, q: Quirks) -> FwEndpoint {
    FwEndpoint::Pods {
        ns: NsConstraint::Named(def.namespace.clone()),
        pod: pinned_pod_part(&strip(&def.pod_selector, q), q),
        flattened: q.has(Deviation::LabelsFlattened),
    }
}

/// Translates one NetworkPolicy into its firewall rules (`FWRule.parser` of branch R5.0).
fn translate(def: &NetworkPolicyDef, q: Quirks, cluster: &str) -> Result<Vec<FwRule>, String> {
    if q.has(Deviation::SctpUnsupported) && def.uses_protocol(Protocol::Sctp) {
        return Err("port protocol SCTP: the r5.0 translator maps only TCP and UDP (KeyError in ports_parser), so the whole policy is not applied".into());
    }
    let selected = Arc::new(selected_endpoint(def, q));
    let np: Arc<str> = Arc::from(def.id());
    let fw_policy: Arc<str> = Arc::from(format!("{cluster}-{}-{}", def.namespace, def.name));
    let collide = q.has(Deviation::EgressRuleNameCollision);
    let mut out: Vec<FwRule> = Vec::new();
    // Egress rule names carry no entry index, so they can repeat across entries.
    let mut egress_names: HashMap<(Arc<str>, usize), usize> = HashMap::new();
    let egress_prefix: Arc<str> = Arc::from(format!("{}-egress-{}", def.namespace, def.name));
    for d in &def.policy_types {
        for (i, rule) in def.rules(*d).iter().enumerate() {
            let prefix: Arc<str> = match d {
                Direction::Ingress => {
                    Arc::from(format!("{}-ingress-{}-{i}", def.namespace, def.name))
                }
                Direction::Egress if collide => egress_prefix.clone(),
                Direction::Egress => {
                    Arc::from(format!("{}-egress-{}-{i}", def.namespace, def.name))
                }
            };
            for (ep_name, ep, action) in peer_endpoints(def, rule, q) {
                for (k, service) in services(rule, q).into_iter().enumerate() {
                    let (ep1, ep2) = match d {
                        Direction::Ingress => (ep.clone(), selected.clone()),
                        Direction::Egress => (selected.clone(), ep.clone()),
                    };
                    let r = FwRule {
                        name: RuleName::Parts {
                            prefix: prefix.clone(),
                            ep: ep_name.clone(),
                            k,
                        },
                        fw_policy: fw_policy.clone(),
                        network_policy: Some(np.clone()),
                        action,
                        ep1,
                        ep2,
                        service,
                        origin: *d,
                    };
                    // firewall_rule_create, then update on RefsExistError: the same name keeps
                    // its place with the later content.
                    if collide && *d == Direction::Egress {
                        match egress_names.get(&(ep_name.clone(), k)) {
                            Some(&at) => out[at] = r,
                            None => {
                                egress_names.insert((ep_name.clone(), k), out.len());
                                out.push(r);
                            }
                        }
                    } else {
                        out.push(r);
                    }
                }
            }
        }
    }
    Ok(out)
}

/// `spec_parser` for every peer of a rule: (name part, endpoint, action).
fn peer_endpoints(
    def: &NetworkPolicyDef,
    rule: &RuleDef,
    q: Quirks,
) -> Vec<(Arc<str>, Arc<FwEndpoint>, Action)> {
    peer_endpoints_owned(def, rule, q)
        .into_iter()
        .map(|(n, e, a)| (Arc::from(n), Arc::new(e), a))
        .collect()
}

fn peer_endpoints_owned(
    def: &NetworkPolicyDef,
    rule: &RuleDef,
    q: Quirks,
) -> Vec<(String, FwEndpoint, Action)> {
    let flat = q.has(Deviation::LabelsFlattened);
    let drop_empty = q.has(Deviation::EmptySelectorAny);
    let mut out = Vec::new();
    for (j, peer) in rule.peers.iter().enumerate() {
        match peer {
            PeerDef::Selectors { namespace, pod } => {
                let ns = namespace.as_ref().map(|s| strip(s, q));
                let pod = pod.as_ref().map(|s| strip(s, q));
                let ns_part = |s: &Selector| {
                    if s.is_empty() {
                        NsConstraint::Any
                    } else {
                        NsConstraint::Selector(s.clone())
                    }
                };
                let pod_part = |s: &Selector| if s.is_empty() { None } else { Some(s.clone()) };
                match (&ns, &pod) {
                    (Some(n), Some(p)) if q.has(Deviation::PeerSelectorsOr) => {
                        if !(drop_empty && n.is_empty()) {
                            out.push((
                                format!("namespaceSelector-{j}"),
                                FwEndpoint::Pods {
                                    ns: ns_part(n),
                                    pod: None,
                                    flattened: flat,
                                },
                                Action::Pass,
                            ));
                        }
                        if !(drop_empty && p.is_empty()) {
                            out.push((
                                format!("podSelector-{j}"),
                                FwEndpoint::Pods {
                                    ns: NsConstraint::Named(def.namespace.clone()),
                                    pod: pinned_pod_part(p, q),
                                    flattened: flat,
                                },
                                Action::Pass,
                            ));
                        }
                    }
                    (Some(n), Some(p)) => {
                        if !(drop_empty && n.is_empty() && p.is_empty()) {
                            out.push((
                                format!("podSelector-{j}"),
                                FwEndpoint::Pods {
                                    ns: ns_part(n),
                                    pod: pod_part(p),
                                    flattened: flat,
                                },
                                Action::Pass,
                            ));
                        }
                    }
                    (Some(n), None) => {
                        if !(drop_empty && n.is_empty()) {
                            out.push((
                                format!("namespaceSelector-{j}"),
                                FwEndpoint::Pods {
                                    ns: ns_part(n),
                                    pod: None,
                                    flattened: flat,
                                },
                                Action::Pass,
                            ));
                        }
                    }
                    (None, Some(p)) => {
                        if !(drop_empty && p.is_empty()) {
                            out.push((
                                format!("podSelector-{j}"),
                                FwEndpoint::Pods {
                                    ns: NsConstraint::Named(def.namespace.clone()),
                                    pod: pinned_pod_part(p, q),
                                    flattened: flat,
                                },
                                Action::Pass,
                            ));
                        }
                    }
                    (None, None) => {}
                }
            }
            PeerDef::IpBlock(b) => {
                if q.has(Deviation::ExceptPreemptsAllow) {
                    for e in &b.except {
                        out.push((
                            format!("ipBlock-{j}-{e}"),
                            FwEndpoint::Block {
                                cidr: *e,
                                except: Vec::new(),
                            },
                            Action::Deny,
                        ));
                    }
                    out.push((
                        format!("ipBlock-{j}-cidr-{}", b.cidr),
                        FwEndpoint::Block {
                            cidr: b.cidr,
                            except: Vec::new(),
                        },
                        Action::Pass,
                    ));
                } else {
                    out.push((
                        format!("ipBlock-{j}-cidr-{}", b.cidr),
                        FwEndpoint::Block {
                            cidr: b.cidr,
                            except: b.except.clone(),
                        },
                        Action::Pass,
                    ));
                }
            }
        }
    }
    if out.is_empty() {
        out.push(("allow-all".into(), FwEndpoint::Any, Action::Pass));
    }
    out
}

/// `ports_parser`.
fn services(rule: &RuleDef, q: Quirks) -> Vec<FwService> {
    if rule.ports.is_empty() {
        return vec![FwService {
            proto: None,
            ports: FwPorts::Range(0, 65535),
        }];
    }
    rule.ports
        .iter()
        .map(|p| {
            let proto = match p.protocol {
                None if q.has(Deviation::ProtocolDefaultAny) => None,
                None => Some(Protocol::Tcp),
                Some(x) => Some(x),
            };
            let ports = match &p.port {
                None => FwPorts::Range(0, 65535),
                Some(PortRef::Number(n)) if q.has(Deviation::EndPortIgnored) => {
                    FwPorts::Range(*n, *n)
                }
                Some(PortRef::Number(n)) => FwPorts::Range(*n, p.end_port.unwrap_or(*n)),
                Some(PortRef::Name(s)) => FwPorts::Named(s.clone()),
            };
            FwService { proto, ports }
        })
        .collect()
}

fn ns_ok(c: &Cluster, ns: &NsConstraint, pod_ns: &str, view: &Labels, flattened: bool) -> bool {
    match ns {
        NsConstraint::Any => true,
        NsConstraint::Named(n) if flattened => view.get("namespace") == Some(n),
        NsConstraint::Named(n) => n == pod_ns,
        NsConstraint::Selector(s) if flattened => s.matches(view),
        NsConstraint::Selector(s) => c.namespace(pod_ns).is_some_and(|n| s.matches(&n.labels)),
    }
}

fn ep_matches(c: &Cluster, ep: &FwEndpoint, s: FwSubject) -> bool {
    let address = |s: FwSubject| match s {
        FwSubject::Pod(i) => c.pod_at(i).address,
        FwSubject::Addr(a) => a,
        FwSubject::IngressVip(k) => c.ingress_at(k).vip,
    };
    match ep {
        FwEndpoint::Any => true,
        FwEndpoint::Block { cidr, except } => {
            let a = std::net::IpAddr::V4(address(s));
            cidr.contains(&a) && !except.iter().any(|e| e.contains(&a))
        }
        FwEndpoint::Pods { ns, pod, flattened } => match s {
            FwSubject::Pod(i) => {
                let p = c.pod_at(i);
                let view = if *flattened { &p.tags } else { &p.labels };
                ns_ok(c, ns, &p.namespace, view, *flattened)
                    && pod.as_ref().is_none_or(|sel| sel.matches(view))
            }
            FwSubject::IngressVip(k) if *flattened => {
                let ing = c.ingress_at(k);
                let tags: Labels = [
                    ("namespace".to_string(), ing.namespace.clone()),
                    (
                        "ingress".to_string(),
                        format!(
                            "{}-{}-{}",
                            c.settings().cluster_name,
                            ing.namespace,
                            ing.name
                        ),
                    ),
                ]
                .into_iter()
                .collect();
                ns_ok(c, ns, &ing.namespace, &tags, true)
                    && pod.as_ref().is_none_or(|sel| sel.matches(&tags))
            }
            _ => false,
        },
        FwEndpoint::IngressVip(tag) => match s {
            FwSubject::IngressVip(k) => {
                let ing = c.ingress_at(k);
                *tag == format!(
                    "{}-{}-{}",
                    c.settings().cluster_name,
                    ing.namespace,
                    ing.name
                )
            }
            _ => false,
        },
        FwEndpoint::ServiceBackends(svc) => match s {
            FwSubject::Pod(i) => c
                .services()
                .iter()
                .filter(|x| x.name == *svc)
                .any(|x| c.backends(x).contains(&i)),
            _ => false,
        },
    }
}
