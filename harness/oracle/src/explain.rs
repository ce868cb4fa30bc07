//! What the oracle expects of one probe, and why: verdict, structured explanation (one line when
//! displayed), expected path, and the r5.0 deviations that made the verdict differ from upstream.

use std::fmt;
use std::sync::Arc;

use serde::Serialize;

use crate::policy::Direction;
use crate::r50::Deviation;

/// The expected outcome of a probe.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    /// The connection succeeds.
    Allow,
    /// Dropped by network isolation, a NetworkPolicy (firewall rule) or a service instance.
    Deny,
    /// Network and policies let it through but nothing answers on that port (or a named port
    /// does not resolve, or a service has no such port or no ready backend): RST / ICMP
    /// unreachable.
    Reject,
}

impl Verdict {
    /// `allow`, `deny`, `reject` (the scenario and report spelling).
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Allow => "allow",
            Verdict::Deny => "deny",
            Verdict::Reject => "reject",
        }
    }

    /// `allowed`, `denied`, `rejected` (the explanation's first word).
    pub fn past_tense(self) -> &'static str {
        match self {
            Verdict::Allow => "allowed",
            Verdict::Deny => "denied",
            Verdict::Reject => "rejected",
        }
    }
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How the packets cross the underlay.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Underlay {
    /// Both ends on the same node: never leaves the vrouter.
    Local,
    /// Plain IP on the underlay (ip-fabric forwarding, fabric SNAT, node and host traffic).
    Plain,
    /// An overlay tunnel (MPLSoUDP, MPLSoGRE or VXLAN per the encapsulation priority).
    Tunnel,
}

impl Underlay {
    /// `local`, `plain`, `tunnel`.
    pub fn as_str(self) -> &'static str {
        match self {
            Underlay::Local => "local",
            Underlay::Plain => "plain",
            Underlay::Tunnel => "tunnel",
        }
    }
}

/// The path a successful probe is expected to take.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ExpectedPath {
    /// For service destinations: of the hop to the backends; for node ports: of the hop to the
    /// node.
    pub underlay: Underlay,
    /// The source is translated to the node address (fabric SNAT).
    pub snat: bool,
    /// Service instances traversed, in order.
    pub via: Vec<String>,
    /// For service, load-balancer, node-port and ingress destinations: the backend pods that
    /// answer (those DNAT may pick and that admit the probe), as `ns/pod`.
    pub backends: Vec<String>,
}

/// What must happen for one probe.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Expectation {
    /// What must happen.
    pub verdict: Verdict,
    /// Why, as structured facts that display as one line.
    pub explanation: Explanation,
    /// The path a successful probe must take.
    pub path: ExpectedPath,
    /// The source and destination are the same pod (reported, not failed, by default).
    pub loopback: bool,
    /// r5.0 only: the deviations from upstream that make this verdict differ from the upstream
    /// verdict (empty when both agree).
    pub deviations: Vec<Deviation>,
}

/// A policy named in an explanation, with the policy types it isolates.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct PolicyRef {
    /// `namespace/name`.
    pub name: Arc<str>,
    /// `Ingress`, `Egress` or `Ingress,Egress`.
    pub types: &'static str,
}

/// The upstream NetworkPolicy outcome for one direction at one pod.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub enum DirectionOutcome {
    /// No policy selects the pod for this direction.
    NotIsolated,
    /// A rule admits the traffic.
    Admitted {
        /// The admitting policy, `namespace/name`.
        policy: Arc<str>,
        /// Index of the rule in the policy's `ingress`/`egress` list.
        rule: usize,
        /// `None` when the rule has no peers (every source/destination).
        peer: Option<usize>,
        /// `namespaceSelector ns=y`, `ipBlock …`, or `all peers`.
        peer_text: Arc<str>,
    },
    /// Isolated and no rule of the isolating policies admits the traffic.
    Denied {
        /// The isolating policies, in creation order.
        isolated_by: Arc<[PolicyRef]>,
    },
}

/// Upstream NetworkPolicy evaluation at one end.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct PolicyFact {
    /// Which end: egress at the source, ingress at the destination.
    pub direction: Direction,
    /// The pod whose policies were evaluated.
    pub pod: Arc<str>,
    /// The other end, as the policy sees it (after DNAT).
    pub peer: Arc<str>,
    /// Whether a policy isolates the pod and which rule admits.
    pub outcome: DirectionOutcome,
}

impl fmt::Display for PolicyFact {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (dir, prep, rule_dir) = match self.direction {
            Direction::Ingress => ("ingress", "to", "ingress"),
            Direction::Egress => ("egress", "from", "egress"),
        };
        match &self.outcome {
            DirectionOutcome::NotIsolated => write!(f, "{dir} {prep} {} not isolated", self.pod),
            DirectionOutcome::Admitted {
                policy,
                rule,
                peer,
                peer_text,
            } => {
                write!(f, "{dir} {prep} {} by {policy} rule {rule}", self.pod)?;
                match peer {
                    Some(p) => write!(f, " peer {p} ({peer_text})"),
                    None => write!(f, " ({peer_text})"),
                }
            }
            DirectionOutcome::Denied { isolated_by } => {
                write!(f, "{dir} {prep} {} isolated by ", self.pod)?;
                for (i, p) in isolated_by.iter().take(3).enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    write!(f, "{} (policyTypes {})", p.name, p.types)?;
                }
                if isolated_by.len() > 3 {
                    write!(f, " and {} more", isolated_by.len() - 3)?;
                }
                write!(f, "; no {rule_dir} rule admits {}", self.peer)
            }
        }
    }
}

/// The r5.0 firewall rule that decided (first match of the cluster APS).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct FirewallFact {
    /// Firewall rule name, e.g. `x-ingress-deny-all-denyall`.
    pub rule: Option<Arc<str>>,
    /// Firewall policy holding it, e.g. `k8s-denyall`.
    pub firewall_policy: Option<Arc<str>>,
    /// The NetworkPolicy it was translated from, `namespace/name`.
    pub network_policy: Option<Arc<str>>,
    /// `any > namespace=x, any → deny`.
    pub text: Arc<str>,
    /// Whether the rule (or the implicit verdict) lets the flow through.
    pub allowed: bool,
}

impl fmt::Display for FirewallFact {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (&self.rule, &self.firewall_policy) {
            (Some(r), Some(p)) => {
                write!(f, "r5.0 first match {p}/{r}")?;
                if let Some(np) = &self.network_policy {
                    write!(f, " (from NetworkPolicy {np})")?;
                }
                write!(f, ": {}", self.text)
            }
            _ => write!(f, "r5.0: {}", self.text),
        }
    }
}

/// One finding on the way from source to destination; displayed as a clause of the one-line
/// explanation.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub enum Fact {
    /// Network layer (isolation, fabric forwarding, SNAT, routes), as a sentence.
    Network(String),
    /// Upstream NetworkPolicy decision at one end.
    Policy(PolicyFact),
    /// r5.0 firewall decision.
    Firewall(FirewallFact),
    /// Service, node port, load balancer or ingress translation, as a sentence.
    Service(String),
    /// Whether something listens on the port, as a sentence.
    Listener(String),
    /// Service chain traversal or its verdict, as a sentence.
    Chain(String),
    /// The r5.0 deviations that make this verdict differ from upstream.
    Deviations(Vec<Deviation>),
}

impl fmt::Display for Fact {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Fact::Network(s) | Fact::Service(s) | Fact::Listener(s) | Fact::Chain(s) => {
                f.write_str(s)
            }
            Fact::Policy(p) => p.fmt(f),
            Fact::Firewall(p) => p.fmt(f),
            Fact::Deviations(d) => {
                f.write_str("differs from upstream because of r5.0 deviation")?;
                if d.len() > 1 {
                    f.write_str("s")?;
                }
                for (i, d) in d.iter().enumerate() {
                    f.write_str(if i == 0 { " " } else { ", " })?;
                    write!(f, "{} ({})", d.name(), d.description())?;
                }
                Ok(())
            }
        }
    }
}

/// Why a verdict: the facts in the order they decided, displayed as one line:
/// `denied: ingress to x/a isolated by x/deny-all (policyTypes Ingress); no ingress rule admits y/b`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Explanation {
    /// The verdict explained.
    pub verdict: Verdict,
    /// The facts, deciding one first.
    pub facts: Vec<Fact>,
}

impl fmt::Display for Explanation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: ", self.verdict.past_tense())?;
        for (i, fact) in self.facts.iter().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            fact.fmt(f)?;
        }
        Ok(())
    }
}
