//! Providers: what stands a cluster up and what probes it.
//!
//! A provider gives the runner a [`ClusterHandle`]-like set of clients (a kube-rs client, a
//! Contrail VNC client) and a [`ProbeExecutor`], the dataplane behind which probes run. Only
//! the [`sim`] provider exists today; its probes run on the model dataplane
//! ([`sim::ModelDataplane`]) or, with `--dataplane netns`, on real network namespaces
//! ([`netns::NetnsExecutor`]). Nothing outside this module knows which one is in use.

pub mod netns;
pub mod sim;

use std::net::Ipv4Addr;

use harness_scenario::Protocol;

/// Where a probe starts.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Origin {
    /// A pod, `namespace/name`.
    Pod(String),
    /// A compute node's own IP stack.
    Node(String),
    /// A fabric host without a vrouter.
    Host(String),
    /// A client outside the cluster.
    External(String),
}

impl std::fmt::Display for Origin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Origin::Pod(p) => f.write_str(p),
            Origin::Node(n) => write!(f, "node:{n}"),
            Origin::Host(h) => write!(f, "host:{h}"),
            Origin::External(e) => write!(f, "external:{e}"),
        }
    }
}

/// One connection attempt.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProbeRequest {
    /// Where it starts.
    pub from: Origin,
    /// The address it targets.
    pub to: Ipv4Addr,
    /// TCP, UDP, SCTP or ICMP.
    pub protocol: Protocol,
    /// Destination port (ignored for ICMP).
    pub port: u16,
    /// Record the hops and frames (slower: ask for it only for evidence and path checks).
    pub trace: bool,
}

/// What a probe observed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Observed {
    /// The destination answered; `backend` names who (after DNAT), when known.
    Allow {
        /// The answering endpoint.
        backend: Option<String>,
    },
    /// Dropped on the way (timeout).
    Drop {
        /// Where and why, e.g. `vrouter node-2: firewall deny by k8s-denyall/…`.
        detail: String,
    },
    /// Refused: RST, ICMP unreachable, SCTP ABORT.
    Reject {
        /// Who refused.
        detail: String,
    },
    /// Neither: the path crossed a restarting component, or the probe could not be made.
    Inconclusive {
        /// Why.
        reason: String,
    },
}

impl Observed {
    /// `allow`, `drop`, `reject` or `inconclusive` (the report's words).
    pub fn word(&self) -> &'static str {
        match self {
            Observed::Allow { .. } => "allow",
            Observed::Drop { .. } => "drop",
            Observed::Reject { .. } => "reject",
            Observed::Inconclusive { .. } => "inconclusive",
        }
    }

    /// Where and why, for the report's `observedDetail`.
    pub fn detail(&self) -> Option<String> {
        match self {
            Observed::Allow { backend: Some(b) } => Some(format!("answered by {b}")),
            Observed::Allow { backend: None } => None,
            Observed::Drop { detail } => Some(format!("dropped at {detail}")),
            Observed::Reject { detail } => Some(format!("rejected by {detail}")),
            Observed::Inconclusive { reason } => Some(reason.clone()),
        }
    }
}

/// The result of one probe, with evidence when it was traced.
#[derive(Clone, Debug, Default)]
pub struct ProbeOutcome {
    /// The verdict.
    pub observed: Option<Observed>,
    /// One line per place a packet was handled (traced probes only).
    pub hops: Vec<String>,
    /// Encapsulations seen on the underlay, in order (`none`, `MPLSoUDP`, …; traced only).
    pub underlay_encaps: Vec<String>,
    /// NAT applied on the way (`fabric SNAT …`, DNAT; traced only).
    pub nat: Vec<String>,
    /// The gate decisions on the way, `vrouter node-1: firewall deny by RULE` (traced only).
    pub decisions: Vec<String>,
    /// Endpoints the packets went through, in order (`x/a`, a service instance…; traced only).
    pub endpoints: Vec<String>,
    /// A pcap file of every frame on every link (traced probes only).
    pub pcap: Option<Vec<u8>>,
}

impl ProbeOutcome {
    /// The observation, inconclusive when none was made.
    pub fn observed(&self) -> Observed {
        self.observed.clone().unwrap_or(Observed::Inconclusive {
            reason: "no observation".into(),
        })
    }
}

/// The dataplane behind which probes run: the model dataplane in process today, network
/// namespaces later (`--dataplane model|netns`).
///
/// # Caveats
///
/// `probe_batch` may block (a netns dataplane waits for real sockets); the model dataplane
/// answers in microseconds. Call it from a blocking-friendly context for slow dataplanes.
pub trait ProbeExecutor: Send + Sync {
    /// `model`, `netns`, … (recorded in the run result).
    fn name(&self) -> &'static str;

    /// Runs every request, in order, and answers one outcome per request.
    fn probe_batch(&self, requests: &[ProbeRequest]) -> Vec<ProbeOutcome>;

    /// Why this dataplane cannot make `request` at all on this machine (the runner reports the
    /// cell Skipped with the reason instead of probing it, so it never passes), or `None`.
    /// `to` is the cell's destination as the oracle names it (a pod, a service, a node
    /// port…); `via` lists the service instances the oracle expects the path to traverse.
    ///
    /// The model dataplane can make every probe; the netns dataplane cannot probe SCTP on a
    /// kernel without SCTP, nor what it does not build yet (service instances, node ports,
    /// the ingress proxy).
    fn cannot_probe(
        &self,
        request: &ProbeRequest,
        to: &harness_oracle::Endpoint,
        via: &[String],
    ) -> Option<String> {
        let _ = (request, to, via);
        None
    }
}
