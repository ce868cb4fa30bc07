//! The evaluator: what must happen to one probe, from the cluster model and the profile —
//! network isolation first (it takes precedence over NetworkPolicy), then service translation,
//! then NetworkPolicy (upstream) or the cluster firewall (r5.0), then whether anything listens.

use std::net::Ipv4Addr;
use std::sync::{Arc, OnceLock};

use harness_scenario::{PortRef, PortSpec, Profile, Protocol};

use crate::explain::{
    DirectionOutcome, Expectation, ExpectedPath, Explanation, Fact, FirewallFact, PolicyFact,
    Underlay, Verdict,
};
use crate::model::{Cluster, Endpoint, EndpointKind, Pod, Service, ServicePort, TargetPort};
use crate::network::{Link, NetworkId, link};
use crate::policy::Direction;
use crate::r50::{Deviation, Firewall, FwSubject, Quirks, TranslationError};
use crate::upstream::{Side, Upstream};

/// Where a probe starts.
#[derive(Clone, Debug)]
enum SrcKind {
    /// A pod interface in a Contrail network.
    Pod { idx: usize, network: NetworkId },
    /// A node's vhost (or a host-network pod): on the fabric, with a vrouter.
    Fabric,
    /// A fabric host without a vrouter.
    Host,
    /// Outside the cluster, behind the gateway.
    External,
}

#[derive(Clone, Debug)]
struct Source {
    kind: SrcKind,
    label: Arc<str>,
    address: Ipv4Addr,
    node: Option<String>,
    /// The pod, for loopback detection (host-network pods included).
    pod: Option<usize>,
}

/// One end of a flow as policies see it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum PSide {
    Pod(usize),
    Addr(Ipv4Addr),
}

#[derive(Clone, Debug)]
struct End {
    side: PSide,
    label: Arc<str>,
}

/// The policy layer's answer.
struct PolicyResult {
    allowed: bool,
    facts: Vec<Fact>,
    deviations: Vec<Deviation>,
    /// NetworkPolicies that admitted the flow (for the isolation-precedence note).
    admitted_by: Vec<String>,
}

/// A result under construction.
struct Out {
    verdict: Verdict,
    facts: Vec<Fact>,
    underlay: Underlay,
    snat: bool,
    via: Vec<String>,
    backends: Vec<String>,
    deviations: Vec<Deviation>,
    loopback: bool,
}

impl Out {
    fn new(verdict: Verdict, facts: Vec<Fact>) -> Out {
        Out {
            verdict,
            facts,
            underlay: Underlay::Tunnel,
            snat: false,
            via: Vec::new(),
            backends: Vec::new(),
            deviations: Vec::new(),
            loopback: false,
        }
    }

    fn finish(mut self) -> Expectation {
        self.deviations.sort();
        self.deviations.dedup();
        if !self.deviations.is_empty()
            && !self.facts.iter().any(|f| matches!(f, Fact::Deviations(_)))
        {
            self.facts.push(Fact::Deviations(self.deviations.clone()));
        }
        Expectation {
            verdict: self.verdict,
            explanation: Explanation {
                verdict: self.verdict,
                facts: self.facts,
            },
            path: ExpectedPath {
                underlay: self.underlay,
                snat: self.snat,
                via: self.via,
                backends: self.backends,
            },
            loopback: self.loopback,
            deviations: self.deviations,
        }
    }
}

/// A successful network path.
struct Reach {
    plain: bool,
    snat: bool,
    via: Vec<String>,
    facts: Vec<Fact>,
}

/// Computes expectations for one cluster under one profile.
///
/// Building the oracle compiles every NetworkPolicy into per-pod indexes (and, for `r5.0`,
/// translates them into the cluster firewall); [`Oracle::evaluate`] is then cheap and pure.
pub struct Oracle<'c> {
    cluster: &'c Cluster,
    profile: Profile,
    upstream: Arc<Upstream>,
    firewall: Option<Firewall>,
    /// r5.0 only: the same cluster under upstream semantics (sharing the compiled index), to
    /// tell whether deviations changed the verdict or only an intermediate decision.
    upstream_twin: OnceLock<Box<Oracle<'c>>>,
    /// Firewalls with one deviation switched off (then: with only one switched on), built on
    /// demand to attribute r5.0 verdicts.
    variants: Vec<OnceLock<Firewall>>,
    /// Per firewall deviation: whether its trigger appears in the cluster at all.
    relevant: Vec<bool>,
}

fn port_number(p: &PortSpec) -> Option<u16> {
    match p.port {
        Some(PortRef::Number(n)) => Some(n),
        _ => None,
    }
}

fn in_port_list(
    list: &[PortSpec],
    proto: Protocol,
    probe: &PortSpec,
    resolved: Option<u16>,
) -> bool {
    list.iter().any(|s| {
        s.protocol == proto
            && match (&s.port, &probe.port) {
                (None, None) => true,
                (Some(PortRef::Number(n)), _) => Some(*n) == resolved,
                (Some(PortRef::Name(a)), Some(PortRef::Name(b))) => a == b,
                _ => false,
            }
    })
}

impl<'c> Oracle<'c> {
    /// Compiles the cluster's policies for `profile`.
    pub fn new(cluster: &'c Cluster, profile: Profile) -> Oracle<'c> {
        let firewall =
            (profile == Profile::R50).then(|| Firewall::build(cluster, Quirks::shipped()));
        Oracle {
            cluster,
            profile,
            upstream: Arc::new(Upstream::build(cluster)),
            firewall,
            upstream_twin: OnceLock::new(),
            variants: (0..2 * Deviation::FIREWALL.len())
                .map(|_| OnceLock::new())
                .collect(),
            relevant: if profile == Profile::R50 {
                Deviation::FIREWALL
                    .iter()
                    .map(|d| crate::r50::can_matter(cluster, *d))
                    .collect()
            } else {
                Vec::new()
            },
        }
    }

    /// The profile the verdicts follow.
    pub fn profile(&self) -> Profile {
        self.profile
    }

    /// The cluster the oracle evaluates.
    pub fn cluster(&self) -> &Cluster {
        self.cluster
    }

    /// NetworkPolicies the r5.0 translator could not translate (and therefore does not apply);
    /// empty for `upstream`.
    pub fn translation_errors(&self) -> &[TranslationError] {
        self.firewall.as_ref().map(Firewall::errors).unwrap_or(&[])
    }

    /// The NetworkPolicies isolating a pod in one direction, as `namespace/name` (evidence for
    /// reports); empty for non-pods.
    pub fn isolating_policies(&self, pod: &Endpoint, direction: Direction) -> Vec<String> {
        self.pod_of(pod)
            .and_then(|i| self.upstream.isolating(i, direction))
            .map(|refs| refs.iter().map(|r| r.name.to_string()).collect())
            .unwrap_or_default()
    }

    /// The r5.0 deviations that make this probe's verdict differ from upstream (empty under
    /// `upstream`, or when both agree).
    pub fn deviations(&self, from: &Endpoint, to: &Endpoint, port: &PortSpec) -> Vec<Deviation> {
        self.evaluate(from, to, port).deviations
    }

    /// What must happen when `from` probes `to` on `port`.
    ///
    /// # Caveats
    ///
    /// Endpoints must come from [`Cluster::expand`] on this oracle's cluster. For service-like
    /// destinations whose backends disagree, the verdict is `allow` when any backend answers
    /// (ECMP may pick any; `path.backends` lists those that answer). Policies are evaluated
    /// after DNAT, against the backend pod and its target port; node ports see the node
    /// address as source unless `externalTrafficPolicy: Local`.
    pub fn evaluate(&self, from: &Endpoint, to: &Endpoint, port: &PortSpec) -> Expectation {
        let mut e = self.evaluate_profile(from, to, port);
        if !e.deviations.is_empty()
            && self.twin().evaluate_profile(from, to, port).verdict == e.verdict
        {
            // A deviation changed an intermediate decision (one backend of several, one leg of
            // a node-port path) but not the verdict: the upstream case is not broken, so no
            // deviation is reported (CONFORMANCE.md §3: exactly the cases they break).
            e.deviations.clear();
            e.explanation
                .facts
                .retain(|f| !matches!(f, Fact::Deviations(_)));
        }
        e
    }

    /// The oracle of the same cluster under upstream semantics.
    fn twin(&self) -> &Oracle<'c> {
        self.upstream_twin.get_or_init(|| {
            Box::new(Oracle {
                cluster: self.cluster,
                profile: Profile::Upstream,
                upstream: self.upstream.clone(),
                firewall: None,
                upstream_twin: OnceLock::new(),
                variants: Vec::new(),
                relevant: Vec::new(),
            })
        })
    }

    fn evaluate_profile(&self, from: &Endpoint, to: &Endpoint, port: &PortSpec) -> Expectation {
        let Some(src) = self.source(from) else {
            return Out::new(
                Verdict::Deny,
                vec![Fact::Network(format!("{from} cannot originate a probe: start from a pod, node, fabric host or external client"))],
            )
            .finish();
        };
        let c = self.cluster;
        let missing = |what: &str| {
            Out::new(Verdict::Deny, vec![Fact::Network(format!("{to} is not a {what} of this cluster: expand peers with the cluster you evaluate"))])
                .finish()
        };
        match to.kind() {
            EndpointKind::Pod { .. } => match self.pod_of(to) {
                Some(j) => self.to_pod(&src, j, port),
                None => missing("pod"),
            },
            EndpointKind::Service { namespace, name } => match c.service_idx(namespace, name) {
                Some(s) => self.to_service(&src, c.service_at(s), port),
                None => missing("service"),
            },
            EndpointKind::NodePort {
                namespace,
                name,
                node,
            } => match c.service_idx(namespace, name) {
                Some(s) => self.to_node_port(&src, c.service_at(s), node, port),
                None => missing("service"),
            },
            EndpointKind::LoadBalancer { namespace, name } => {
                match c.service_idx(namespace, name) {
                    Some(s) => self.to_lb(&src, c.service_at(s), to.address(), port),
                    None => missing("service"),
                }
            }
            EndpointKind::Ingress { namespace, name } => match c.ingress_idx(namespace, name) {
                Some(k) => self.to_ingress(&src, k, port),
                None => missing("ingress"),
            },
            EndpointKind::Host(h) => match c.fabric_hosts().iter().position(|x| x.name == *h) {
                Some(i) => self.to_host(&src, i, port),
                None => missing("fabric host"),
            },
            EndpointKind::Node(n) => self.to_node(&src, n, to.address(), port),
            EndpointKind::External(_) => self.to_external(&src, to, port),
            EndpointKind::Gateway(net) => self.to_gateway(&src, net, port),
        }
    }

    // ---------------------------------------------------------------- endpoints

    fn pod_of(&self, e: &Endpoint) -> Option<usize> {
        let EndpointKind::Pod { namespace, name } = e.kind() else {
            return None;
        };
        let pods = self.cluster.pods();
        match pods.get(e.index()) {
            Some(p) if p.namespace == *namespace && p.name == *name => Some(e.index()),
            _ => self.cluster.pod_idx(namespace, name),
        }
    }

    fn source(&self, e: &Endpoint) -> Option<Source> {
        let c = self.cluster;
        let label: Arc<str> = Arc::from(e.to_string());
        match e.kind() {
            EndpointKind::Pod { .. } => {
                let i = self.pod_of(e)?;
                let p = c.pod_at(i);
                let kind = if p.host_network {
                    SrcKind::Fabric
                } else {
                    SrcKind::Pod {
                        idx: i,
                        network: p.network.clone(),
                    }
                };
                Some(Source {
                    kind,
                    label: p.label.clone(),
                    address: p.address,
                    node: Some(p.node.clone()),
                    pod: Some(i),
                })
            }
            EndpointKind::Node(n) => Some(Source {
                kind: SrcKind::Fabric,
                label,
                address: e.address(),
                node: Some(n.clone()),
                pod: None,
            }),
            EndpointKind::Host(_) => Some(Source {
                kind: SrcKind::Host,
                label,
                address: e.address(),
                node: None,
                pod: None,
            }),
            EndpointKind::External(_) => Some(Source {
                kind: SrcKind::External,
                label,
                address: e.address(),
                node: None,
                pod: None,
            }),
            _ => None,
        }
    }

    fn src_end(&self, src: &Source) -> End {
        match src.kind {
            SrcKind::Pod { idx, .. } => End {
                side: PSide::Pod(idx),
                label: src.label.clone(),
            },
            _ => End {
                side: PSide::Addr(src.address),
                label: src.label.clone(),
            },
        }
    }

    fn pod_end(&self, j: usize) -> End {
        let p = self.cluster.pod_at(j);
        let side = if p.host_network {
            PSide::Addr(p.address)
        } else {
            PSide::Pod(j)
        };
        End {
            side,
            label: p.label.clone(),
        }
    }

    fn net_name(&self, n: &NetworkId) -> String {
        n.name(&self.cluster.settings().cluster_name)
    }

    // ---------------------------------------------------------------- network layer

    /// Can `src` reach an interface in network `dst_net` on `dst_node` (a pod, or the fabric
    /// for nodes and host-network pods)?
    fn reach(
        &self,
        src: &Source,
        dst_net: &NetworkId,
        dst_label: &str,
        proto: Protocol,
        port: &PortSpec,
        resolved: Option<u16>,
    ) -> Result<Reach, Vec<Fact>> {
        let c = self.cluster;
        let ok = |plain: bool| {
            Ok(Reach {
                plain,
                snat: false,
                via: Vec::new(),
                facts: Vec::new(),
            })
        };
        match &src.kind {
            SrcKind::Pod { network, .. } => {
                // Service chains between the two networks steer (and filter) the traffic.
                if network != dst_net {
                    let chains: Vec<_> = c
                        .service_chains()
                        .iter()
                        .filter(|ch| {
                            (ch.left == *network && ch.right == *dst_net)
                                || (ch.right == *network && ch.left == *dst_net)
                        })
                        .collect();
                    for ch in &chains {
                        if !ch.ports.is_empty() && !in_port_list(&ch.ports, proto, port, resolved) {
                            continue;
                        }
                        let instance = c.pod_at(ch.instance).label.clone();
                        if in_port_list(&ch.drop, proto, port, resolved) {
                            return Err(vec![Fact::Chain(format!(
                                "dropped by service instance {} ({instance}) chained between {} and {}: its function drops {port}",
                                ch.name,
                                self.net_name(&ch.left),
                                self.net_name(&ch.right)
                            ))]);
                        }
                        return Ok(Reach {
                            plain: false,
                            snat: false,
                            via: vec![ch.name.clone()],
                            facts: vec![Fact::Chain(format!(
                                "steered through service instance {} ({instance}) between {} and {}",
                                ch.name,
                                self.net_name(&ch.left),
                                self.net_name(&ch.right)
                            ))],
                        });
                    }
                }
                match link(network, dst_net, &c.settings().cluster_name) {
                    Link::Same => ok(c.forwarding(network)),
                    Link::Policy(_) => ok(*dst_net == NetworkId::IpFabric && c.forwarding(network)),
                    Link::None => Err(vec![Fact::Network(format!(
                        "network isolation — {} and {} are not connected by any network-policy",
                        self.net_name(network),
                        self.net_name(dst_net)
                    ))]),
                }
            }
            SrcKind::Fabric => {
                match link(&NetworkId::IpFabric, dst_net, &c.settings().cluster_name) {
                    Link::None => Err(vec![Fact::Network(format!(
                        "{} is not connected to the ip-fabric (no kube-manager network-policy is attached to it), so {} cannot reach {dst_label}",
                        self.net_name(dst_net),
                        src.label
                    ))]),
                    _ => ok(c.forwarding(dst_net)),
                }
            }
            SrcKind::Host => {
                if c.forwarding(dst_net) {
                    ok(true)
                } else {
                    Err(vec![Fact::Network(format!(
                        "{} has no route to {dst_label}: {} has no ip-fabric forwarding, so its addresses exist only in the overlay",
                        src.label,
                        self.net_name(dst_net)
                    ))])
                }
            }
            SrcKind::External => Err(vec![Fact::Network(format!(
                "{} is outside the cluster: external clients reach only floating IPs, ingress VIPs and node ports",
                src.label
            ))]),
        }
    }

    fn underlay(&self, src: &Source, dst_node: Option<&str>, plain: bool) -> Underlay {
        match (src.node.as_deref(), dst_node) {
            (Some(a), Some(b)) if a == b => Underlay::Local,
            _ if plain => Underlay::Plain,
            _ => Underlay::Tunnel,
        }
    }

    /// The note appended to a network-isolation denial when NetworkPolicy would have allowed.
    fn precedence_note(
        &self,
        facts: &mut [Fact],
        src: &End,
        dst: &End,
        proto: Protocol,
        port: Option<u16>,
    ) {
        let pr = self.policy(src, dst, proto, port);
        if pr.allowed
            && !pr.admitted_by.is_empty()
            && let Some(Fact::Network(s)) = facts.first_mut()
        {
            let mut names = pr.admitted_by;
            names.dedup();
            s.push_str(&format!(
                " (isolation takes precedence over NetworkPolicy {})",
                names.join(", ")
            ));
        }
    }

    // ---------------------------------------------------------------- policy layer

    fn fw_subject(side: PSide) -> FwSubject {
        match side {
            PSide::Pod(i) => FwSubject::Pod(i),
            PSide::Addr(a) => FwSubject::Addr(a),
        }
    }

    fn side(&self, s: PSide) -> Side {
        match s {
            PSide::Pod(i) => Side::Pod(i),
            PSide::Addr(a) => Side::Addr(a),
        }
    }

    /// Upstream NetworkPolicy: egress allowed at the source AND ingress allowed at the
    /// destination.
    fn upstream_policy(
        &self,
        src: &End,
        dst: &End,
        proto: Protocol,
        port: Option<u16>,
    ) -> (bool, Vec<Fact>, Vec<String>) {
        let c = self.cluster;
        let mut facts = Vec::with_capacity(2);
        let mut allowed = true;
        let mut admitted_by = Vec::new();
        let mut push = |d: Direction, pod: usize, other: &End, outcome: DirectionOutcome| {
            match &outcome {
                DirectionOutcome::Denied { .. } => allowed = false,
                DirectionOutcome::Admitted { policy, .. } => admitted_by.push(policy.to_string()),
                DirectionOutcome::NotIsolated => {}
            }
            facts.push(Fact::Policy(PolicyFact {
                direction: d,
                pod: c.pod_at(pod).label.clone(),
                peer: other.label.clone(),
                outcome,
            }));
        };
        if let PSide::Pod(i) = src.side {
            let o = self
                .upstream
                .decide(c, Direction::Egress, i, self.side(dst.side), proto, port);
            push(Direction::Egress, i, dst, o);
        }
        if let PSide::Pod(j) = dst.side {
            let o =
                self.upstream
                    .decide(c, Direction::Ingress, j, self.side(src.side), proto, port);
            push(Direction::Ingress, j, src, o);
        }
        if facts.is_empty() {
            // Neither end is a pod: no NetworkPolicy can select either, and the explanation
            // still has to say so.
            facts.push(Fact::Network(format!(
                "no NetworkPolicy applies: neither {} nor {} is a pod",
                src.label, dst.label
            )));
        }
        // The deciding (denying) direction first.
        facts.sort_by_key(|f| {
            !matches!(
                f,
                Fact::Policy(PolicyFact {
                    outcome: DirectionOutcome::Denied { .. },
                    ..
                })
            )
        });
        (allowed, facts, admitted_by)
    }

    fn variant(&self, k: usize) -> &Firewall {
        self.variants[k].get_or_init(|| {
            let n = Deviation::FIREWALL.len();
            let q = if k < n {
                Quirks::shipped().without(Deviation::FIREWALL[k])
            } else {
                Quirks::none().with(Deviation::FIREWALL[k - n])
            };
            Firewall::build(self.cluster, q)
        })
    }

    /// The deviations a differing r5.0 verdict depends on: those whose removal flips it, else
    /// those that alone (on top of upstream semantics) produce it.
    fn attribute(
        &self,
        src: FwSubject,
        dst: FwSubject,
        proto: Protocol,
        port: Option<u16>,
        actual: bool,
    ) -> Vec<Deviation> {
        let c = self.cluster;
        let n = Deviation::FIREWALL.len();
        let relevant = |k: &usize| self.relevant.get(*k).copied().unwrap_or(true);
        let mut out: Vec<Deviation> = (0..n)
            .filter(relevant)
            .filter(|&k| self.variant(k).decide(c, src, dst, proto, port).allowed != actual)
            .map(|k| Deviation::FIREWALL[k])
            .collect();
        if out.is_empty() {
            out = (0..n)
                .filter(relevant)
                .filter(|&k| self.variant(n + k).decide(c, src, dst, proto, port).allowed == actual)
                .map(|k| Deviation::FIREWALL[k])
                .collect();
        }
        out
    }

    fn firewall_fact(&self, fw: &Firewall, d: &crate::r50::FwDecision) -> FirewallFact {
        match d.rule {
            Some(r) => {
                let t = fw.describe(r);
                FirewallFact {
                    rule: Some(t.name.clone()),
                    firewall_policy: Some(t.firewall_policy.clone()),
                    network_policy: t.network_policy.clone(),
                    text: t.text.clone(),
                    allowed: d.allowed,
                }
            }
            None if d.no_aps => FirewallFact {
                rule: None,
                firewall_policy: None,
                network_policy: None,
                text: Arc::from(
                    "no firewall applies (neither end carries the cluster application policy set)",
                ),
                allowed: true,
            },
            None => FirewallFact {
                rule: None,
                firewall_policy: None,
                network_policy: None,
                text: Arc::from(
                    "no firewall rule matches (implicit deny of the application policy set)",
                ),
                allowed: false,
            },
        }
    }

    /// The policy layer for a flow after DNAT.
    fn policy(&self, src: &End, dst: &End, proto: Protocol, port: Option<u16>) -> PolicyResult {
        let (up_allowed, up_facts, up_admitted) = self.upstream_policy(src, dst, proto, port);
        let Some(fw) = &self.firewall else {
            return PolicyResult {
                allowed: up_allowed,
                facts: up_facts,
                deviations: Vec::new(),
                admitted_by: up_admitted,
            };
        };
        let (s, d) = (Oracle::fw_subject(src.side), Oracle::fw_subject(dst.side));
        let dec = fw.decide(self.cluster, s, d, proto, port);
        let fact = self.firewall_fact(fw, &dec);
        let admitted_by = if dec.allowed {
            fact.network_policy.iter().map(|n| n.to_string()).collect()
        } else {
            Vec::new()
        };
        let deviations = if dec.allowed != up_allowed {
            self.attribute(s, d, proto, port, dec.allowed)
        } else {
            Vec::new()
        };
        PolicyResult {
            allowed: dec.allowed,
            facts: vec![Fact::Firewall(fact)],
            deviations,
            admitted_by,
        }
    }

    // ---------------------------------------------------------------- destinations

    fn to_pod(&self, src: &Source, j: usize, port: &PortSpec) -> Expectation {
        let p = self.cluster.pod_at(j);
        let proto = port.protocol;
        let resolved = match &port.port {
            None => None,
            Some(PortRef::Number(n)) => Some(*n),
            Some(PortRef::Name(name)) => p.named_port(name, proto),
        };
        let dst_net = p.network.clone();
        let loopback = src.pod == Some(j);
        let dst = self.pod_end(j);
        let sref = self.src_end(src);
        let reach = match self.reach(src, &dst_net, &p.label, proto, port, resolved) {
            Ok(r) => r,
            Err(mut facts) => {
                self.precedence_note(
                    &mut facts,
                    &sref,
                    &dst,
                    proto,
                    resolved.or(port_number(port)),
                );
                let mut out = Out::new(Verdict::Deny, facts);
                out.loopback = loopback;
                return out.finish();
            }
        };
        let mut out = self.pod_layers(&sref, j, port, resolved, reach.facts);
        out.loopback = loopback;
        out.underlay = self.underlay(src, Some(&p.node), reach.plain);
        out.via = reach.via;
        out.snat = reach.snat;
        out.finish()
    }

    /// Named-port resolution, policy and listener at a destination pod.
    fn pod_layers(
        &self,
        src: &End,
        j: usize,
        port: &PortSpec,
        resolved: Option<u16>,
        mut facts: Vec<Fact>,
    ) -> Out {
        let p = self.cluster.pod_at(j);
        let proto = port.protocol;
        if let (Some(PortRef::Name(name)), None) = (&port.port, resolved) {
            facts.push(Fact::Listener(format!(
                "{} has no container port named {name} over {proto}",
                p.label
            )));
            return Out::new(Verdict::Reject, facts);
        }
        let pr = self.policy(src, &self.pod_end(j), proto, resolved);
        facts.extend(pr.facts);
        let mut out = if !pr.allowed {
            Out::new(Verdict::Deny, facts)
        } else if proto == Protocol::Icmp || resolved.is_some_and(|n| p.listens(proto, n)) {
            Out::new(Verdict::Allow, facts)
        } else {
            facts.push(Fact::Listener(format!(
                "nothing listens on {} {proto}/{} (not a declared container port)",
                p.label,
                resolved.unwrap_or(0)
            )));
            Out::new(Verdict::Reject, facts)
        };
        out.deviations = pr.deviations;
        out
    }

    fn service_port<'s>(&self, s: &'s Service, port: &PortSpec) -> Option<&'s ServicePort> {
        match &port.port {
            Some(PortRef::Number(n)) => s
                .ports
                .iter()
                .find(|p| p.port == *n && p.protocol == port.protocol),
            Some(PortRef::Name(name)) => s
                .ports
                .iter()
                .find(|p| p.name.as_deref() == Some(name) && p.protocol == port.protocol),
            None => None,
        }
    }

    fn ports_text(s: &Service) -> String {
        let v: Vec<String> = s
            .ports
            .iter()
            .map(|p| match &p.name {
                Some(n) => format!("{}/{} ({n})", p.protocol, p.port),
                None => format!("{}/{}", p.protocol, p.port),
            })
            .collect();
        if v.is_empty() {
            "none".into()
        } else {
            v.join(", ")
        }
    }

    /// Checks common to ClusterIP and LoadBalancer destinations before the backends.
    fn service_front(
        &self,
        s: &Service,
        port: &PortSpec,
        what: &str,
    ) -> Result<(ServicePort, Vec<usize>), Out> {
        if port.protocol == Protocol::Icmp {
            return Err(Out::new(
                Verdict::Deny,
                vec![Fact::Service(format!(
                    "{what} forwards only its service ports: ICMP to it is dropped"
                ))],
            ));
        }
        let Some(sp) = self.service_port(s, port) else {
            return Err(Out::new(
                Verdict::Reject,
                vec![Fact::Service(format!(
                    "service {} has no port {port} (ports: {})",
                    s.id(),
                    Oracle::ports_text(s)
                ))],
            ));
        };
        if self.profile == Profile::R50 && port.protocol == Protocol::Sctp {
            let mut out = Out::new(
                Verdict::Deny,
                vec![Fact::Service(format!(
                    "r5.0 creates a UDP listener for {what} port SCTP/{}: SCTP to it is dropped",
                    sp.port
                ))],
            );
            out.deviations.push(Deviation::SctpServiceAsUdp);
            return Err(out);
        }
        let backends = self.cluster.backends(s);
        if backends.is_empty() {
            let why = match &s.selector {
                None => {
                    "it has no selector (endpoints managed by hand are not modelled)".to_string()
                }
                Some(sel) => format!(
                    "its selector {} matches no ready pod in {}",
                    sel.iter()
                        .map(|(k, v)| format!("{k}={v}"))
                        .collect::<Vec<_>>()
                        .join(","),
                    s.namespace
                ),
            };
            return Err(Out::new(
                Verdict::Reject,
                vec![Fact::Service(format!(
                    "service {} has no ready backends ({why}): the connection is rejected, as kube-proxy would",
                    s.id()
                ))],
            ));
        }
        Ok((sp.clone(), backends))
    }

    /// DNAT to each backend, then policy and listener there; combines the backends' outcomes.
    fn through_backends(
        &self,
        src: &End,
        src_node: Option<&str>,
        sp: &ServicePort,
        backends: &[usize],
        dnat: String,
        from_fabric: bool,
    ) -> Out {
        let c = self.cluster;
        let proto = sp.protocol;
        let mut results: Vec<(usize, Out, u16)> = Vec::new();
        for &b in backends {
            let p: &Pod = c.pod_at(b);
            if from_fabric
                && link(&NetworkId::IpFabric, &p.network, &c.settings().cluster_name) == Link::None
            {
                let out = Out::new(
                    Verdict::Deny,
                    vec![Fact::Network(format!(
                        "backend {} is in {}, which is not connected to the ip-fabric",
                        p.label,
                        self.net_name(&p.network)
                    ))],
                );
                results.push((b, out, 0));
                continue;
            }
            let tport = match &sp.target {
                TargetPort::Number(n) => Some(*n),
                TargetPort::Name(name) => p.named_port(name, proto),
            };
            let Some(tport) = tport else {
                let out = Out::new(
                    Verdict::Reject,
                    vec![Fact::Listener(format!(
                        "backend {} has no container port named {} over {proto} (the targetPort)",
                        p.label, sp.target
                    ))],
                );
                results.push((b, out, 0));
                continue;
            };
            let out = self.pod_layers(
                src,
                b,
                &PortSpec::new(proto, tport),
                Some(tport),
                Vec::new(),
            );
            results.push((b, out, tport));
        }
        let answering: Vec<&(usize, Out, u16)> = results
            .iter()
            .filter(|r| r.1.verdict == Verdict::Allow)
            .collect();
        let targets = |rs: &[&(usize, Out, u16)]| {
            rs.iter()
                .map(|(b, _, t)| format!("{}:{t}", c.pod_at(*b).label))
                .collect::<Vec<_>>()
                .join(", ")
        };
        if !answering.is_empty() {
            let mut facts = vec![Fact::Service(format!(
                "{dnat} DNAT to {}",
                targets(&answering)
            ))];
            facts.extend(answering[0].1.facts.iter().cloned());
            let silent: Vec<String> = results
                .iter()
                .filter(|r| r.1.verdict != Verdict::Allow)
                .map(|(b, o, _)| format!("{} would {}", c.pod_at(*b).label, o.verdict))
                .collect();
            if !silent.is_empty() {
                facts.push(Fact::Service(format!(
                    "ECMP may also pick backends that do not answer: {}",
                    silent.join(", ")
                )));
            }
            let mut out = Out::new(Verdict::Allow, facts);
            out.backends = answering
                .iter()
                .map(|(b, _, _)| c.pod_at(*b).label.to_string())
                .collect();
            out.deviations = answering
                .iter()
                .flat_map(|r| r.1.deviations.iter().copied())
                .collect();
            let all_local = src_node.is_some()
                && answering
                    .iter()
                    .all(|(b, _, _)| Some(c.pod_at(*b).node.as_str()) == src_node);
            out.underlay = if all_local {
                Underlay::Local
            } else {
                Underlay::Tunnel
            };
            return out;
        }
        let decisive = results
            .iter()
            .find(|r| r.1.verdict == Verdict::Deny)
            .or(results.first());
        let Some((b, o, t)) = decisive else {
            return Out::new(
                Verdict::Reject,
                vec![Fact::Service(format!("{dnat}: no backend"))],
            );
        };
        let mut facts = vec![Fact::Service(format!(
            "{dnat} DNAT to {}:{t}",
            c.pod_at(*b).label
        ))];
        facts.extend(o.facts.iter().cloned());
        if results.len() > 1 {
            facts.push(Fact::Service(format!(
                "none of the {} backends answers",
                results.len()
            )));
        }
        let mut out = Out::new(o.verdict, facts);
        out.backends = backends
            .iter()
            .map(|b| c.pod_at(*b).label.to_string())
            .collect();
        out.deviations = results
            .iter()
            .filter(|r| r.1.verdict == o.verdict)
            .flat_map(|r| r.1.deviations.iter().copied())
            .collect();
        out
    }

    fn to_service(&self, src: &Source, s: &Service, port: &PortSpec) -> Expectation {
        let c = self.cluster;
        let label = format!("svc:{}", s.id());
        let vip = s.cluster_ip.map(|a| a.to_string()).unwrap_or_default();
        let reached = match &src.kind {
            SrcKind::Pod { network, .. } => {
                match link(network, &s.network, &c.settings().cluster_name) {
                    Link::None => Err(format!(
                        "network isolation — {} and {} are not connected by any network-policy",
                        self.net_name(network),
                        self.net_name(&s.network)
                    )),
                    _ => Ok(()),
                }
            }
            SrcKind::Fabric => Ok(()),
            SrcKind::Host | SrcKind::External => Err(format!(
                "ClusterIP {vip} lives in the overlay service network {}: {} has no route to it",
                self.net_name(&s.network),
                src.label
            )),
        };
        if let Err(why) = reached {
            return Out::new(Verdict::Deny, vec![Fact::Network(why)]).finish();
        }
        let (sp, backends) = match self.service_front(s, port, &label) {
            Ok(x) => x,
            Err(out) => return out.finish(),
        };
        let dnat = format!("{label} {}/{}", port.protocol, sp.port);
        self.through_backends(
            &self.src_end(src),
            src.node.as_deref(),
            &sp,
            &backends,
            dnat,
            false,
        )
        .finish()
    }

    fn to_node_port(&self, src: &Source, s: &Service, node: &str, port: &PortSpec) -> Expectation {
        let c = self.cluster;
        let Some(n) = c.nodes().iter().find(|x| x.name == node) else {
            return Out::new(
                Verdict::Deny,
                vec![Fact::Network(format!("node {node} is not in this cluster"))],
            )
            .finish();
        };
        if port.protocol == Protocol::Icmp {
            return self.to_node(src, node, n.address, port);
        }
        let proto = port.protocol;
        let sp = match &port.port {
            Some(PortRef::Number(x)) => s
                .ports
                .iter()
                .find(|p| p.node_port == Some(*x) && p.protocol == proto)
                .or_else(|| {
                    s.ports
                        .iter()
                        .find(|p| p.port == *x && p.protocol == proto && p.node_port.is_some())
                }),
            Some(PortRef::Name(name)) => s.ports.iter().find(|p| {
                p.name.as_deref() == Some(name) && p.protocol == proto && p.node_port.is_some()
            }),
            None => None,
        };
        let Some(sp) = sp else {
            let nps: Vec<String> = s
                .ports
                .iter()
                .filter_map(|p| p.node_port.map(|np| format!("{}/{np}", p.protocol)))
                .collect();
            return Out::new(
                Verdict::Reject,
                vec![Fact::Service(format!(
                    "service {} has no node port for {port} (node ports: {})",
                    s.id(),
                    nps.join(", ")
                ))],
            )
            .finish();
        };
        let node_port = sp.node_port.unwrap_or(0);
        // First hop: source to the node.
        let plain = match &src.kind {
            SrcKind::Pod { network, .. } => {
                match link(network, &NetworkId::IpFabric, &c.settings().cluster_name) {
                    Link::None => {
                        return Out::new(
                        Verdict::Deny,
                        vec![Fact::Network(format!("{} is not connected to the ip-fabric, so {} cannot reach node {node}", self.net_name(network), src.label))],
                    )
                    .finish();
                    }
                    _ => c.forwarding(network),
                }
            }
            _ => true,
        };
        let node_end = End {
            side: PSide::Addr(n.address),
            label: Arc::from(format!("node:{node}")),
        };
        let egress = self.policy(&self.src_end(src), &node_end, proto, Some(node_port));
        if !egress.allowed {
            let mut out = Out::new(Verdict::Deny, egress.facts);
            out.deviations = egress.deviations;
            return out.finish();
        }
        let (backends, seen_as, how) = if s.local_traffic_policy {
            let local: Vec<usize> = c
                .backends(s)
                .into_iter()
                .filter(|b| c.pod_at(*b).node == node)
                .collect();
            (
                local,
                End {
                    side: PSide::Addr(src.address),
                    label: src.label.clone(),
                },
                "source kept, local backends only",
            )
        } else {
            (
                c.backends(s),
                End {
                    side: PSide::Addr(n.address),
                    label: Arc::from(format!("node:{node}")),
                },
                "source NATed to the node",
            )
        };
        if backends.is_empty() {
            // kube-proxy rejects only a service with no endpoints at all; with
            // `externalTrafficPolicy: Local` and endpoints elsewhere it drops ("has no local
            // endpoints" -j DROP), so the client cannot tell a node port that exists there.
            if s.local_traffic_policy && !c.backends(s).is_empty() {
                return Out::new(
                    Verdict::Deny,
                    vec![Fact::Service(format!("service {} has externalTrafficPolicy Local and no ready backend on {node}: kube-proxy drops node port {node_port} there", s.id()))],
                )
                .finish();
            }
            return Out::new(
                Verdict::Reject,
                vec![Fact::Service(format!("service {} has no ready backend for node port {node_port}: rejected, as kube-proxy would", s.id()))],
            )
            .finish();
        }
        let dnat = format!(
            "kube-proxy on {node} maps node port {proto}/{node_port} of {} ({how}) and",
            s.id()
        );
        let mut out = self.through_backends(&seen_as, Some(node), sp, &backends, dnat, true);
        if matches!(src.kind, SrcKind::Pod { .. }) {
            // The first leg: the source pod's egress policies see the node address.
            out.facts.extend(egress.facts);
        }
        out.deviations.extend(egress.deviations);
        out.underlay = self.underlay(src, Some(node), plain);
        out.finish()
    }

    /// Can `src` reach a floating IP of the public pool?
    fn reach_public(
        &self,
        src: &Source,
        what: &str,
        also_network: Option<&NetworkId>,
    ) -> Result<bool, Vec<Fact>> {
        let c = self.cluster;
        match &src.kind {
            SrcKind::Pod { network, .. } => {
                if also_network == Some(network) || c.forwarding(network) {
                    Ok(false)
                } else if c.snat(network) {
                    Ok(true)
                } else {
                    Err(vec![Fact::Network(format!(
                        "{} is in overlay network {} with neither ip-fabric forwarding nor fabric SNAT: no route to {what}",
                        src.label,
                        self.net_name(network)
                    ))])
                }
            }
            _ => Ok(false),
        }
    }

    fn to_lb(&self, src: &Source, s: &Service, address: Ipv4Addr, port: &PortSpec) -> Expectation {
        let label = format!("lb:{}", s.id());
        let snat = match self.reach_public(src, &format!("floating IP {address}"), None) {
            Ok(snat) => snat,
            Err(facts) => return Out::new(Verdict::Deny, facts).finish(),
        };
        let (sp, backends) = match self.service_front(s, port, &label) {
            Ok(x) => x,
            Err(out) => return out.finish(),
        };
        let dnat = format!(
            "{label} floating IP {address} {}/{}",
            port.protocol, sp.port
        );
        let mut out = self.through_backends(&self.src_end(src), None, &sp, &backends, dnat, false);
        out.underlay = Underlay::Tunnel;
        out.snat = snat;
        out.finish()
    }

    fn to_ingress(&self, src: &Source, k: usize, port: &PortSpec) -> Expectation {
        let c = self.cluster;
        let ing = c.ingress_at(k);
        let id = format!("{}/{}", ing.namespace, ing.name);
        if !ing.served {
            return Out::new(
                Verdict::Deny,
                vec![Fact::Service(format!(
                    "ingress {id} has class {}: Contrail's ingress controller serves only class opencontrail (or none)",
                    ing.class.as_deref().unwrap_or("")
                ))],
            )
            .finish();
        }
        let snat = match self.reach_public(
            src,
            &format!("ingress floating IP {}", ing.fip),
            Some(&ing.network),
        ) {
            Ok(s) => s,
            Err(facts) => return Out::new(Verdict::Deny, facts).finish(),
        };
        let listens = port.protocol == Protocol::Tcp
            && matches!(port.port, Some(PortRef::Number(80)))
            || (ing.tls
                && port.protocol == Protocol::Tcp
                && matches!(port.port, Some(PortRef::Number(443))));
        if port.protocol == Protocol::Icmp {
            return Out::new(
                Verdict::Deny,
                vec![Fact::Service(format!(
                    "ingress {id} forwards only HTTP(S): ICMP to it is dropped"
                ))],
            )
            .finish();
        }
        if !listens {
            return Out::new(
                Verdict::Reject,
                vec![Fact::Service(format!(
                    "ingress {id} listens on TCP/80{} only",
                    if ing.tls { " and TCP/443" } else { "" }
                ))],
            )
            .finish();
        }
        // The leg to the haproxy VIP: the source's egress policy applies (upstream); in r5.0 the
        // VIP interface also carries namespace=<ns> and is gated by the cluster firewall.
        let src_end = self.src_end(src);
        let vip_end = End {
            side: PSide::Addr(ing.vip),
            label: Arc::from(format!("ingress:{id}")),
        };
        let n = port_number(port);
        // The leg's facts, said after the proxy's when the leg lets the probe through.
        let mut vip_leg = Vec::new();
        let mut deviations = Vec::new();
        if let Some(fw) = &self.firewall {
            let s = Oracle::fw_subject(src_end.side);
            let dec = fw.decide(c, s, FwSubject::IngressVip(k), Protocol::Tcp, n);
            vip_leg.push(Fact::Firewall(self.firewall_fact(fw, &dec)));
            if dec.allowed != self.upstream_policy(&src_end, &vip_end, Protocol::Tcp, n).0 {
                // Upstream, the VIP is an address no NetworkPolicy selects: if treating it so
                // gives the upstream answer, its selection is the deviation; otherwise the
                // source's rules deviate, and are attributed with the VIP as a plain address
                // (the translator variants do not model the VIP's tags).
                let plain = FwSubject::Addr(ing.vip);
                if fw.decide(c, s, plain, Protocol::Tcp, n).allowed != dec.allowed {
                    deviations.push(Deviation::IngressVipSelected);
                } else {
                    deviations = self.attribute(s, plain, Protocol::Tcp, n, dec.allowed);
                }
            }
            if !dec.allowed {
                let mut out = Out::new(Verdict::Deny, vip_leg);
                out.deviations = deviations;
                return out.finish();
            }
        } else {
            let pr = self.policy(&src_end, &vip_end, Protocol::Tcp, n);
            if !pr.allowed {
                return Out::new(Verdict::Deny, pr.facts).finish();
            }
            if matches!(src.kind, SrcKind::Pod { .. }) {
                vip_leg = pr.facts;
            }
        }
        let mut out = self.ingress_proxy(k);
        out.facts.extend(vip_leg);
        out.deviations = deviations;
        if out.verdict == Verdict::Allow {
            out.snat = snat;
        }
        out.finish()
    }

    /// The haproxy side of an ingress: its first backend service and the pods answering there.
    fn ingress_proxy(&self, k: usize) -> Out {
        let c = self.cluster;
        let ing = c.ingress_at(k);
        let id = format!("{}/{}", ing.namespace, ing.name);
        let mut facts = Vec::new();
        let Some(b) = ing.backends.first() else {
            return Out::new(
                Verdict::Reject,
                vec![Fact::Service(format!(
                    "ingress {id} has no backend: haproxy answers nothing"
                ))],
            );
        };
        let Some(si) = c.service_idx(&ing.namespace, &b.service) else {
            return Out::new(
                Verdict::Reject,
                vec![Fact::Service(format!(
                    "ingress {id} backend service {}/{} does not exist",
                    ing.namespace, b.service
                ))],
            );
        };
        let s = c.service_at(si);
        let sp = match &b.port {
            PortRef::Number(n) => s
                .ports
                .iter()
                .find(|p| p.port == *n && p.protocol == Protocol::Tcp),
            PortRef::Name(n) => s
                .ports
                .iter()
                .find(|p| p.name.as_deref() == Some(n) && p.protocol == Protocol::Tcp),
        };
        let Some(sp) = sp else {
            return Out::new(
                Verdict::Reject,
                vec![Fact::Service(format!(
                    "ingress {id} backend port {} is not a TCP port of service {}",
                    b.port,
                    s.id()
                ))],
            );
        };
        let backends = c.backends(s);
        facts.push(Fact::Service(format!(
            "ingress {id} proxies TCP to svc:{} port {}",
            s.id(),
            sp.port
        )));
        let mut answering = Vec::new();
        for &bi in &backends {
            let p = c.pod_at(bi);
            let t = match &sp.target {
                TargetPort::Number(n) => Some(*n),
                TargetPort::Name(n) => p.named_port(n, Protocol::Tcp),
            };
            if t.is_some_and(|t| p.listens(Protocol::Tcp, t)) {
                answering.push(p.label.to_string());
            }
        }
        if answering.is_empty() {
            facts.push(Fact::Listener(format!(
                "no ready backend of {} listens on its target port {}",
                s.id(),
                sp.target
            )));
            return Out::new(Verdict::Reject, facts);
        }
        facts.push(Fact::Service(format!(
            "the proxy reaches {} through firewall rule {cl}-Ingress-{}-{}-{} in {cl}-Ingress, so NetworkPolicy on the backends does not block it",
            answering.join(", "),
            ing.namespace,
            ing.name,
            s.name,
            cl = c.settings().cluster_name
        )));
        let mut out = Out::new(Verdict::Allow, facts);
        out.backends = answering;
        out
    }

    fn to_host(&self, src: &Source, i: usize, port: &PortSpec) -> Expectation {
        let c = self.cluster;
        let h = &c.fabric_hosts()[i];
        let label: Arc<str> = Arc::from(format!("host:{}", h.name));
        let encap = c
            .settings()
            .encapsulation
            .first()
            .map(|e| e.as_str())
            .unwrap_or("MPLSoUDP");
        let (snat, mut facts) = match &src.kind {
            SrcKind::Pod { network, .. } => {
                if c.forwarding(network) {
                    (
                        false,
                        vec![Fact::Network(format!(
                            "{} has ip-fabric forwarding: the packet crosses the underlay unencapsulated",
                            self.net_name(network)
                        ))],
                    )
                } else if c.snat(network) {
                    (
                        true,
                        vec![Fact::Network(format!(
                            "{} has fabric SNAT: the source is translated to the address of {}",
                            self.net_name(network),
                            src.node.as_deref().unwrap_or("its node")
                        ))],
                    )
                } else if matches!(network, NetworkId::Custom(_)) {
                    return Out::new(
                        Verdict::Deny,
                        vec![Fact::Network(format!(
                            "{} is a custom network with no route to the fabric",
                            self.net_name(network)
                        ))],
                    )
                    .finish();
                } else {
                    return Out::new(
                        Verdict::Deny,
                        vec![Fact::Network(format!(
                            "{label} has no vrouter and drops the {encap} packet from {} (no ip-fabric forwarding or fabric SNAT)",
                            self.net_name(network)
                        ))],
                    )
                    .finish();
                }
            }
            SrcKind::Fabric | SrcKind::Host => (
                false,
                vec![Fact::Network(format!(
                    "{} and {label} are both on the ip-fabric underlay",
                    src.label
                ))],
            ),
            SrcKind::External => {
                return Out::new(
                    Verdict::Deny,
                    vec![Fact::Network(format!("{} is outside the cluster and reaches only floating IPs, ingress VIPs and node ports", src.label))],
                )
                .finish();
            }
        };
        let dst = End {
            side: PSide::Addr(h.address),
            label: label.clone(),
        };
        let mut out = self.non_pod_destination(
            src,
            &dst,
            port,
            &mut facts,
            |proto, n| {
                h.serves
                    .iter()
                    .any(|s| s.protocol == proto && s.port == Some(PortRef::Number(n)))
            },
            || {
                let serves: Vec<String> = h.serves.iter().map(|s| s.to_string()).collect();
                format!(
                    "{label} does not serve {port} (serves {})",
                    if serves.is_empty() {
                        "nothing".into()
                    } else {
                        serves.join(", ")
                    }
                )
            },
        );
        out.snat = snat;
        out.underlay = Underlay::Plain;
        out.finish()
    }

    /// Policy (egress at the source) and listener at a destination that is not a pod.
    fn non_pod_destination(
        &self,
        src: &Source,
        dst: &End,
        port: &PortSpec,
        facts: &mut Vec<Fact>,
        serves: impl Fn(Protocol, u16) -> bool,
        not_serving: impl Fn() -> String,
    ) -> Out {
        let n = port_number(port);
        if matches!(port.port, Some(PortRef::Name(_))) {
            facts.push(Fact::Listener(format!(
                "{} has no named ports: probe a port number",
                dst.label
            )));
            return Out::new(Verdict::Reject, std::mem::take(facts));
        }
        let pr = self.policy(&self.src_end(src), dst, port.protocol, n);
        facts.extend(pr.facts);
        let mut out = if !pr.allowed {
            Out::new(Verdict::Deny, std::mem::take(facts))
        } else if port.protocol == Protocol::Icmp || n.is_some_and(|n| serves(port.protocol, n)) {
            Out::new(Verdict::Allow, std::mem::take(facts))
        } else {
            facts.push(Fact::Listener(not_serving()));
            Out::new(Verdict::Reject, std::mem::take(facts))
        };
        out.deviations = pr.deviations;
        out
    }

    fn to_node(&self, src: &Source, node: &str, address: Ipv4Addr, port: &PortSpec) -> Expectation {
        let c = self.cluster;
        // A probe of a node port through `node:` is the node port.
        if let Some(n) = port_number(port)
            && let Some(s) = c.services().iter().find(|s| {
                s.ports
                    .iter()
                    .any(|p| p.node_port == Some(n) && p.protocol == port.protocol)
            })
        {
            return self.to_node_port(src, s, node, port);
        }
        let label: Arc<str> = Arc::from(format!("node:{node}"));
        let plain = match &src.kind {
            SrcKind::Pod { network, .. } => {
                match link(network, &NetworkId::IpFabric, &c.settings().cluster_name) {
                    Link::None => {
                        return Out::new(
                            Verdict::Deny,
                            vec![Fact::Network(format!(
                                "{} is not connected to the ip-fabric, so {} cannot reach {label}",
                                self.net_name(network),
                                src.label
                            ))],
                        )
                        .finish();
                    }
                    _ => c.forwarding(network),
                }
            }
            SrcKind::Fabric | SrcKind::Host => true,
            SrcKind::External => {
                // The gateway admits the node-port range to node addresses whether or not a
                // service holds the port; a port no service holds meets the node's kernel,
                // which has nothing listening and answers RST / ICMP port unreachable.
                let in_node_port_range = port_number(port)
                    .is_some_and(|n| (30000..=32767).contains(&n))
                    && matches!(
                        port.protocol,
                        Protocol::Tcp | Protocol::Udp | Protocol::Sctp
                    );
                if in_node_port_range {
                    return Out::new(
                        Verdict::Reject,
                        vec![Fact::Network(format!("{} reaches {label} through the gateway on the node-port range, but no service holds {port}: the node answers that nothing listens", src.label))],
                    )
                    .finish();
                }
                return Out::new(
                    Verdict::Deny,
                    vec![Fact::Network(format!("{} is outside the cluster and reaches a node only on the node-port range 30000-32767 (probe nodeport:NS/SVC instead of {label})", src.label))],
                )
                .finish();
            }
        };
        let mut facts = match &src.kind {
            SrcKind::Pod { network, .. } => vec![Fact::Network(format!(
                "{} reaches the vhost of {node} through network-policy {}-default-ip-fabric-np{}",
                self.net_name(network),
                c.settings().cluster_name,
                if plain {
                    ", unencapsulated (ip-fabric forwarding)"
                } else {
                    ""
                }
            ))],
            _ => vec![Fact::Network(format!(
                "{} reaches {label} on the ip-fabric underlay",
                src.label
            ))],
        };
        let dst = End {
            side: PSide::Addr(address),
            label: label.clone(),
        };
        let mut out = self.non_pod_destination(
            src,
            &dst,
            port,
            &mut facts,
            |_, _| false,
            || format!("{label} serves no declared port besides node ports"),
        );
        out.underlay = self.underlay(src, Some(node), plain);
        out.finish()
    }

    fn to_external(&self, src: &Source, to: &Endpoint, port: &PortSpec) -> Expectation {
        let c = self.cluster;
        let label: Arc<str> = Arc::from(to.to_string());
        let mut facts = Vec::new();
        let snat = match &src.kind {
            SrcKind::Pod { network, .. } if c.forwarding(network) => {
                facts.push(Fact::Network(format!(
                    "{} has ip-fabric forwarding: the packet leaves through the fabric gateway unencapsulated",
                    self.net_name(network)
                )));
                false
            }
            SrcKind::Pod { network, .. } if c.snat(network) => {
                facts.push(Fact::Network(format!(
                    "{} has fabric SNAT: the source is translated to the address of {}",
                    self.net_name(network),
                    src.node.as_deref().unwrap_or("its node")
                )));
                true
            }
            SrcKind::Pod { network, .. } => {
                return Out::new(
                    Verdict::Deny,
                    vec![Fact::Network(format!("{} has neither ip-fabric forwarding nor fabric SNAT: no route out of the cluster", self.net_name(network)))],
                )
                .finish();
            }
            SrcKind::Fabric | SrcKind::Host => {
                facts.push(Fact::Network(format!(
                    "{} reaches {label} through the fabric gateway",
                    src.label
                )));
                false
            }
            SrcKind::External => {
                return Out::new(
                    Verdict::Deny,
                    vec![Fact::Network(
                        "external clients do not reach each other through the cluster".into(),
                    )],
                )
                .finish();
            }
        };
        let dst = End {
            side: PSide::Addr(to.address()),
            label: label.clone(),
        };
        let mut out = self.non_pod_destination(
            src,
            &dst,
            port,
            &mut facts,
            |_, _| false,
            || format!("{label} is a probe client and serves no port"),
        );
        out.snat = snat;
        out.underlay = Underlay::Plain;
        out.finish()
    }

    fn to_gateway(&self, src: &Source, net: &NetworkId, port: &PortSpec) -> Expectation {
        let name = self.net_name(net);
        match &src.kind {
            SrcKind::Pod { network, .. } if network == net => {
                let dns = matches!(port.port, Some(PortRef::Number(53)))
                    && matches!(port.protocol, Protocol::Udp | Protocol::Tcp);
                if port.protocol == Protocol::Icmp || dns {
                    let mut out = Out::new(
                        Verdict::Allow,
                        vec![Fact::Network(format!(
                            "the vrouter always answers ICMP and DNS on the gateway of {name}; no policy applies"
                        ))],
                    );
                    out.underlay = Underlay::Local;
                    out.finish()
                } else {
                    Out::new(
                        Verdict::Deny,
                        vec![Fact::Network(format!(
                            "the gateway of {name} answers only ICMP and DNS"
                        ))],
                    )
                    .finish()
                }
            }
            _ => Out::new(
                Verdict::Deny,
                vec![Fact::Network(format!(
                    "only pods of {name} reach its gateway"
                ))],
            )
            .finish(),
        }
    }
}

#[cfg(test)]
impl Oracle<'_> {
    /// The upstream policy layer alone, between two pods.
    pub(crate) fn upstream_allows(&self, from: usize, to: usize, port: &PortSpec) -> bool {
        self.upstream_policy(
            &self.pod_end(from),
            &self.pod_end(to),
            port.protocol,
            port_number(port),
        )
        .0
    }
}
