//! The model dataplane: vrouters, the underlay, the gateway, fabric hosts and the simulated
//! endpoints in one process, moving real frames between them. A probe is a real packet
//! exchange — source endpoint → its vrouter → underlay → destination vrouter → endpoint and
//! back — and its [`Observation`] carries the verdict, the hops and the frames.

use std::collections::{HashMap, HashSet, VecDeque};
use std::net::Ipv4Addr;

use harness_contrail_mock::Change;
use harness_scenario::{Encapsulation, PortRef, Protocol, ServiceFunction};

use crate::config::{Model, Scope, ServiceSide, Snapshot};
use crate::forward::control::{Control, GATEWAY_LABEL, ItfId, NodeId, VROUTER_MAC, device_mac};
use crate::forward::hash::FxMap;
use crate::forward::vrouter::{Out, Vrouter};
use crate::topology::{ClientSpec, EndpointSpec, HostSpec, ServedPort, Topology};
use crate::trace::{CapturedFrame, Hop, Tracer};
use crate::wire::encap::{self, Outer};
use crate::wire::frame::{
    self, Addrs, ETH_HEADER_LEN, IcmpError, Mac, PROTO_GRE, PROTO_ICMP, PROTO_SCTP, PROTO_TCP,
    PROTO_UDP, Payload, TcpFlags, Transport,
};
use crate::wire::sctp;

pub mod io;
pub mod kube_proxy;
mod proxy;

/// Flows a vrouter keeps before the oldest age out.
pub const DEFAULT_FLOW_CAPACITY: usize = 65_536;
/// The node ports the gateway lets in from outside to the node addresses: kube-apiserver's
/// default `--service-node-port-range`.
pub const NODE_PORT_RANGE: std::ops::RangeInclusive<u16> = 30000..=32767;
/// Sessions opened from inside the cluster whose answers the gateway lets back in.
const GATEWAY_SESSIONS: usize = 65_536;
const MAX_STEPS: usize = 256;

/// Where a probe starts.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum EndpointRef {
    /// A simulated pod (by endpoint name, e.g. `x/a`).
    Pod(String),
    /// A node's own IP stack.
    Node(String),
    /// A fabric host (no vrouter).
    FabricHost(String),
    /// A client outside the cluster.
    External(String),
}

impl std::fmt::Display for EndpointRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            EndpointRef::Pod(n) => write!(f, "pod {n}"),
            EndpointRef::Node(n) => write!(f, "node {n}"),
            EndpointRef::FabricHost(n) => write!(f, "fabric host {n}"),
            EndpointRef::External(n) => write!(f, "external client {n}"),
        }
    }
}

/// The outcome of a probe.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "verdict", rename_all = "lowercase")]
pub enum Verdict {
    /// The destination answered (SYN-ACK, UDP reply, INIT-ACK, echo reply).
    Connected {
        /// The endpoint that answered (after DNAT: the backend).
        backend: String,
    },
    /// A host said no (RST, ICMP port/protocol unreachable, ABORT).
    Refused {
        /// Who refused.
        by: String,
    },
    /// No answer: dropped on the way.
    Dropped {
        /// Where.
        at: String,
        /// Why (the deciding rule for a policy drop).
        reason: String,
    },
    /// The path crossed a restarting vrouter: neither pass nor fail.
    Inconclusive {
        /// Why.
        reason: String,
    },
}

/// What a probe observed.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Observation {
    /// The verdict.
    pub verdict: Verdict,
    /// Every place a packet of the probe was handled, in order.
    pub hops: Vec<crate::trace::Hop>,
    /// Every frame on every link the probe crossed (when captured).
    pub frames: Vec<CapturedFrame>,
}

/// Options of a probe.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProbeOptions {
    /// Record hops.
    pub trace: bool,
    /// Record frames.
    pub capture: bool,
    /// TTL of the probe packet.
    pub ttl: u8,
}

impl Default for ProbeOptions {
    fn default() -> Self {
        ProbeOptions {
            trace: true,
            capture: true,
            ttl: 64,
        }
    }
}

/// Errors of the dataplane API.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DataplaneError {
    /// No such endpoint, node, host or client.
    #[error("unknown {0}: add it to the topology (or attach the endpoint) first")]
    Unknown(String),
    /// The endpoint has no interface with an address in the configuration.
    #[error("{0} has no interface with an IPv4 address in the Contrail configuration")]
    NoAddress(String),
}

#[derive(Debug, Clone)]
struct EndpointState {
    name: String,
    shared_name: std::sync::Arc<str>,
    identity: String,
    itfs: Vec<ItfId>,
    served: HashSet<(u8, u16)>,
    drops: Vec<(u8, Option<u16>)>,
    service: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Prober {
    Itf(ItfId),
    Node(NodeId),
    Host(usize),
    Client(usize),
}

#[derive(Debug)]
enum Ev {
    TapTx(ItfId, Vec<u8>),
    TapRx(ItfId, Vec<u8>),
    Fabric(Vec<u8>),
    HostRx(NodeId, Vec<u8>),
    HostTx(NodeId, Vec<u8>),
    ExternalTx(usize, Vec<u8>),
    ExternalRx(usize, Vec<u8>),
}

fn served_set(ports: &[ServedPort]) -> HashSet<(u8, u16)> {
    ports
        .iter()
        .map(|p| (p.protocol.ip_number(), p.port))
        .collect()
}

/// The model dataplane.
#[derive(Debug)]
pub struct Dataplane {
    snapshot: Snapshot,
    topology: Topology,
    ctl: Control,
    vrouters: Vec<Vrouter>,
    endpoints: Vec<EndpointState>,
    endpoint_by_name: HashMap<String, usize>,
    itf_endpoint: Vec<Option<usize>>,
    node_served: Vec<HashSet<(u8, u16)>>,
    host_served: Vec<HashSet<(u8, u16)>>,
    host_by_ip: FxMap<Ipv4Addr, usize>,
    client_by_ip: FxMap<Ipv4Addr, usize>,
    next_port: u16,
    clock: u64,
    flow_capacity: usize,
    queue_buf: VecDeque<Ev>,
    out_buf: Vec<Out>,
    kube_proxy: kube_proxy::KubeProxies,
    gateway_sessions: GatewaySessions,
    proxy_port: u16,
    /// The ingress proxies' open connections (they outlive the frame that opened them).
    proxy: proxy::ProxySessions,
}

/// The gateway's session table: the answers it lets in from outside are those of sessions
/// opened from inside (a stateful firewall); everything else from outside must be for a
/// published address (a floating IP of the public pool or a node port).
#[derive(Debug, Default)]
struct GatewaySessions {
    set: HashSet<frame::Tuple>,
    order: VecDeque<frame::Tuple>,
}

impl GatewaySessions {
    fn open(&mut self, answer: frame::Tuple) {
        while self.set.len() >= GATEWAY_SESSIONS {
            match self.order.pop_front() {
                Some(old) => {
                    self.set.remove(&old);
                }
                None => break,
            }
        }
        if self.set.insert(answer) {
            self.order.push_back(answer);
        }
    }

    fn admits(&self, s: &frame::Ipv4Summary) -> bool {
        let key = match &s.transport {
            Transport::IcmpError { quoted, .. } => quoted.map(|q| q.reversed()),
            _ => Some(s.tuple),
        };
        key.is_some_and(|k| self.set.contains(&k))
    }
}

impl Dataplane {
    /// What a service instance's function drops, as this dataplane reads it: (protocol,
    /// destination port), where `None` drops the whole protocol. A port number drops that
    /// destination port; a port name and ICMP (which has no port) drop the whole protocol.
    /// The drops apply to what enters the instance's left interface. The netns dataplane
    /// builds its nftables rules from this same list, so both drop the same packets.
    ///
    /// ```
    /// use harness_scenario::{PortRef, PortSpec, Protocol, ServiceFunction};
    /// use harness_vrouter_sim::Dataplane;
    ///
    /// let f = ServiceFunction {
    ///     drop: vec![
    ///         PortSpec::tcp(81),
    ///         PortSpec::icmp(),
    ///         PortSpec { protocol: Protocol::Udp, port: Some(PortRef::Name("dns".into())) },
    ///     ],
    /// };
    /// assert_eq!(
    ///     Dataplane::function_drops(&f),
    ///     [(Protocol::Tcp, Some(81)), (Protocol::Icmp, None), (Protocol::Udp, None)]
    /// );
    /// ```
    pub fn function_drops(f: &ServiceFunction) -> Vec<(Protocol, Option<u16>)> {
        f.drop
            .iter()
            .map(|p| {
                let port = match (p.protocol, &p.port) {
                    (Protocol::Icmp, _) => None,
                    (_, Some(PortRef::Number(n))) => Some(*n),
                    (_, _) => None,
                };
                (p.protocol, port)
            })
            .collect()
    }

    /// Builds the dataplane of `snapshot` over `topology`.
    pub fn from_config(snapshot: Snapshot, topology: Topology) -> Dataplane {
        Self::with_flow_capacity(snapshot, topology, DEFAULT_FLOW_CAPACITY)
    }

    /// As [`Dataplane::from_config`], with vrouter flow tables of `capacity` entries.
    pub fn with_flow_capacity(
        snapshot: Snapshot,
        topology: Topology,
        capacity: usize,
    ) -> Dataplane {
        let ctl = Control::compile(Model::build(&snapshot), &topology);
        let mut dp = Dataplane {
            snapshot,
            ctl,
            vrouters: Vec::new(),
            endpoints: Vec::new(),
            endpoint_by_name: HashMap::new(),
            itf_endpoint: Vec::new(),
            node_served: Vec::new(),
            host_served: Vec::new(),
            host_by_ip: FxMap::default(),
            client_by_ip: FxMap::default(),
            next_port: 32768,
            clock: 1_700_000_000_000_000,
            flow_capacity: capacity,
            queue_buf: VecDeque::with_capacity(16),
            out_buf: Vec::with_capacity(8),
            kube_proxy: kube_proxy::KubeProxies::default(),
            gateway_sessions: GatewaySessions::default(),
            proxy_port: 32768,
            proxy: proxy::ProxySessions::default(),
            topology,
        };
        dp.vrouters = dp
            .ctl
            .nodes
            .iter()
            .enumerate()
            .map(|(i, n)| Vrouter::new(i, &n.name, capacity))
            .collect();
        dp.index_topology();
        dp
    }

    fn index_topology(&mut self) {
        let model = &self.ctl.model;
        self.endpoints = self
            .topology
            .endpoints
            .iter()
            .map(|e| {
                let itfs: Vec<ItfId> = e
                    .interfaces
                    .iter()
                    .filter_map(|u| model.interface_by_uuid.get(u).copied())
                    .collect();
                let service = itfs.iter().any(|i| model.interfaces[*i].service.is_some())
                    || e.function.is_some();
                let drops = e
                    .function
                    .as_ref()
                    .map(|f| {
                        Dataplane::function_drops(f)
                            .into_iter()
                            .map(|(p, port)| (p.ip_number(), port))
                            .collect()
                    })
                    .unwrap_or_default();
                EndpointState {
                    name: e.name.clone(),
                    shared_name: std::sync::Arc::from(e.name.as_str()),
                    identity: format!("backend={}", e.name),
                    itfs,
                    served: served_set(&e.ports),
                    drops,
                    service,
                }
            })
            .collect();
        self.endpoint_by_name = self
            .endpoints
            .iter()
            .enumerate()
            .map(|(i, e)| (e.name.clone(), i))
            .collect();
        self.itf_endpoint = vec![None; model.interfaces.len()];
        for (e, ep) in self.endpoints.iter().enumerate() {
            for i in &ep.itfs {
                self.itf_endpoint[*i] = Some(e);
            }
        }
        self.node_served = self
            .topology
            .nodes
            .iter()
            .map(|n| served_set(&n.ports))
            .collect();
        self.host_served = self
            .topology
            .fabric_hosts
            .iter()
            .map(|h| served_set(&h.ports))
            .collect();
        self.host_by_ip = self
            .topology
            .fabric_hosts
            .iter()
            .enumerate()
            .map(|(i, h)| (h.ip, i))
            .collect();
        self.client_by_ip = self
            .topology
            .external_clients
            .iter()
            .enumerate()
            .map(|(i, c)| (c.ip, i))
            .collect();
    }

    /// Recompiles after a change of `scope`; flows are dropped (the agent re-evaluates them).
    fn recompile(&mut self, scope: Scope) {
        match scope {
            Scope::None => {}
            Scope::Policy => {
                self.ctl.recompile_policy(Model::build(&self.snapshot));
                for v in &mut self.vrouters {
                    v.flows.clear();
                }
            }
            Scope::Full => {
                self.ctl = Control::compile(Model::build(&self.snapshot), &self.topology);
                let restarting: HashSet<String> = self
                    .vrouters
                    .iter()
                    .filter(|v| v.restarting)
                    .map(|v| {
                        self.ctl
                            .nodes
                            .get(v.node)
                            .map(|n| n.name.clone())
                            .unwrap_or_default()
                    })
                    .collect();
                let cap = self.flow_capacity;
                self.vrouters = self
                    .ctl
                    .nodes
                    .iter()
                    .enumerate()
                    .map(|(i, n)| {
                        let mut v = Vrouter::new(i, &n.name, cap);
                        v.restarting = restarting.contains(&n.name);
                        v
                    })
                    .collect();
                self.index_topology();
                self.proxy_recompiled();
            }
        }
    }

    /// Applies one change of the VNC change stream.
    pub fn apply_change(&mut self, change: &Change) -> Scope {
        self.apply_changes(std::iter::once(change))
    }

    /// Applies several changes and recompiles once.
    pub fn apply_changes<'a>(&mut self, changes: impl IntoIterator<Item = &'a Change>) -> Scope {
        let mut scope = Scope::None;
        for c in changes {
            let (s, warning) = self.snapshot.apply(c);
            if let Some(w) = warning {
                self.ctl.warnings.push(w);
            }
            scope = scope.max(s);
        }
        self.recompile(scope);
        scope
    }

    /// Replaces the whole configuration (a re-list).
    pub fn replace_snapshot(&mut self, snapshot: Snapshot) {
        self.snapshot = snapshot;
        self.recompile(Scope::Full);
    }

    /// The configuration in use.
    pub fn snapshot(&self) -> &Snapshot {
        &self.snapshot
    }

    /// The compiled control plane (VRFs, routes, labels, policies).
    pub fn control(&self) -> &Control {
        &self.ctl
    }

    /// The topology in use.
    pub fn topology(&self) -> &Topology {
        &self.topology
    }

    /// Configuration objects skipped and compile problems.
    pub fn warnings(&self) -> Vec<String> {
        self.ctl
            .model
            .warnings
            .iter()
            .chain(&self.ctl.warnings)
            .cloned()
            .collect()
    }

    /// Attaches (or replaces) an endpoint: what the node agent does when it wires a pod's
    /// interfaces from its VMIs.
    pub fn attach_endpoint(&mut self, spec: EndpointSpec) {
        self.topology.endpoints.retain(|e| e.name != spec.name);
        self.topology.endpoints.push(spec);
        self.recompile(Scope::Full);
    }

    /// Detaches an endpoint; `false` when there was none of that name.
    pub fn detach_endpoint(&mut self, name: &str) -> bool {
        let before = self.topology.endpoints.len();
        self.topology.endpoints.retain(|e| e.name != name);
        let removed = self.topology.endpoints.len() != before;
        if removed {
            self.recompile(Scope::Full);
        }
        removed
    }

    fn node(&self, name: &str) -> Result<NodeId, DataplaneError> {
        self.ctl
            .node_by_name
            .get(name)
            .copied()
            .ok_or_else(|| DataplaneError::Unknown(format!("node {name}")))
    }

    /// Starts a vrouter restart: its flows are dropped and every probe through it is
    /// inconclusive until [`Dataplane::finish_restart`].
    ///
    /// # Errors
    /// Unknown node.
    pub fn begin_restart(&mut self, node: &str) -> Result<(), DataplaneError> {
        let n = self.node(node)?;
        let v = &mut self.vrouters[n];
        v.restarting = true;
        v.flows.clear();
        Ok(())
    }

    /// Ends a restart: the vrouter rebuilds from the configuration it re-read (`snapshot`,
    /// or the one held when `None`).
    ///
    /// # Errors
    /// Unknown node.
    pub fn finish_restart(
        &mut self,
        node: &str,
        snapshot: Option<Snapshot>,
    ) -> Result<(), DataplaneError> {
        self.node(node)?;
        if let Some(s) = snapshot {
            self.snapshot = s;
            self.recompile(Scope::Full);
        }
        let n = self.node(node)?;
        self.vrouters[n].restarting = false;
        self.vrouters[n].flows.clear();
        Ok(())
    }

    /// [`Dataplane::finish_restart`] with a fresh read of an in-process config database.
    ///
    /// # Errors
    /// Unknown node.
    pub fn finish_restart_from_db(
        &mut self,
        node: &str,
        db: &harness_contrail_mock::ConfigDb,
    ) -> Result<(), DataplaneError> {
        self.finish_restart(node, Some(crate::config::source::snapshot_from_db(db)))
    }

    /// Whether a node's vrouter is restarting.
    pub fn is_restarting(&self, node: &str) -> bool {
        self.node(node).is_ok_and(|n| self.vrouters[n].restarting)
    }

    /// Installs kube-proxy's node-port rules of node `node` (replacing the previous ones;
    /// conntrack keeps established connections): what the node agent's kube-proxy does after
    /// each change of the Services and EndpointSlices it watches.
    ///
    /// # Errors
    /// Unknown node.
    pub fn set_node_ports(
        &mut self,
        node: &str,
        rules: Vec<kube_proxy::NodePortRule>,
    ) -> Result<(), DataplaneError> {
        self.node(node)?;
        self.kube_proxy
            .entry(node.to_owned())
            .or_default()
            .set_rules(rules);
        Ok(())
    }

    /// kube-proxy's node-port rules on `node`, sorted by protocol and port.
    pub fn node_ports(&self, node: &str) -> Vec<kube_proxy::NodePortRule> {
        self.kube_proxy
            .get(node)
            .map(|p| p.rules().into_iter().cloned().collect())
            .unwrap_or_default()
    }

    /// Number of flow entries of a node's vrouter.
    pub fn flow_count(&self, node: &str) -> usize {
        self.node(node)
            .map(|n| self.vrouters[n].flows.len())
            .unwrap_or(0)
    }

    /// Sets the capture clock (microseconds since the epoch) for deterministic pcaps.
    pub fn set_clock(&mut self, micros: u64) {
        self.clock = micros;
    }

    /// Addresses of an endpoint's interfaces.
    pub fn endpoint_addresses(&self, name: &str) -> Vec<Ipv4Addr> {
        self.endpoints
            .iter()
            .find(|e| e.name == name)
            .map(|e| {
                e.itfs
                    .iter()
                    .flat_map(|i| self.ctl.model.interfaces[*i].ips.clone())
                    .collect()
            })
            .unwrap_or_default()
    }

    fn prober(&self, from: &EndpointRef) -> Result<(Prober, Ipv4Addr, Mac), DataplaneError> {
        match from {
            EndpointRef::Pod(name) => {
                let ep = self
                    .endpoint_by_name
                    .get(name)
                    .map(|e| &self.endpoints[*e])
                    .ok_or_else(|| DataplaneError::Unknown(format!("endpoint {name}")))?;
                let i = ep
                    .itfs
                    .iter()
                    .copied()
                    .find(|i| !self.ctl.model.interfaces[*i].ips.is_empty())
                    .ok_or_else(|| DataplaneError::NoAddress(name.clone()))?;
                let itf = &self.ctl.model.interfaces[i];
                Ok((Prober::Itf(i), itf.ips[0], itf.mac))
            }
            EndpointRef::Node(name) => {
                let n = self.node(name)?;
                Ok((
                    Prober::Node(n),
                    self.ctl.nodes[n].vhost,
                    self.ctl.nodes[n].mac,
                ))
            }
            EndpointRef::FabricHost(name) => {
                let h = self
                    .topology
                    .fabric_hosts
                    .iter()
                    .position(|h| &h.name == name)
                    .ok_or_else(|| DataplaneError::Unknown(format!("fabric host {name}")))?;
                let ip = self.topology.fabric_hosts[h].ip;
                Ok((Prober::Host(h), ip, device_mac(ip)))
            }
            EndpointRef::External(name) => {
                let c = self
                    .topology
                    .external_clients
                    .iter()
                    .position(|c| &c.name == name)
                    .ok_or_else(|| DataplaneError::Unknown(format!("external client {name}")))?;
                let ip = self.topology.external_clients[c].ip;
                Ok((Prober::Client(c), ip, device_mac(ip)))
            }
        }
    }

    /// Sends an ARP request for `target` from a pod and returns the MAC the vrouter answered
    /// (proxy ARP: always the vrouter MAC), with the hops.
    ///
    /// # Errors
    /// Unknown endpoint or one without address.
    pub fn arp(
        &mut self,
        from: &str,
        target: Ipv4Addr,
    ) -> Result<(Option<Mac>, Vec<Hop>), DataplaneError> {
        let (prober, src, mac) = self.prober(&EndpointRef::Pod(from.to_owned()))?;
        let Prober::Itf(i) = prober else {
            return Err(DataplaneError::Unknown(format!("endpoint {from}")));
        };
        let req = frame::arp(mac, frame::BROADCAST, false, (mac, src), ([0; 6], target));
        let mut tr = Tracer {
            trace: true,
            ..Tracer::default()
        };
        let answers = self.run(Prober::Itf(i), Ev::TapTx(i, req), &mut tr);
        let mac = answers
            .iter()
            .find_map(|(f, _)| match frame::parse(f).ok()?.payload {
                Payload::Arp(a) => Some(a.sender_mac),
                _ => None,
            });
        Ok((mac, tr.hops))
    }

    /// Probes `to` with one connection attempt of `protocol` on `port` (ignored for ICMP),
    /// recording hops and frames.
    ///
    /// # Errors
    /// Unknown source, or a source without address.
    pub fn probe(
        &mut self,
        from: &EndpointRef,
        to: Ipv4Addr,
        protocol: Protocol,
        port: u16,
    ) -> Result<Observation, DataplaneError> {
        self.probe_with(from, to, protocol, port, &ProbeOptions::default())
    }

    /// [`Dataplane::probe`] with options (tracing and capture can be turned off for speed).
    ///
    /// # Errors
    /// As [`Dataplane::probe`].
    pub fn probe_with(
        &mut self,
        from: &EndpointRef,
        to: Ipv4Addr,
        protocol: Protocol,
        port: u16,
        opts: &ProbeOptions,
    ) -> Result<Observation, DataplaneError> {
        let (prober, src, mac) = self.prober(from)?;
        self.next_port = if self.next_port >= 60999 {
            32768
        } else {
            self.next_port + 1
        };
        let sport = self.next_port;
        let dst_mac = match prober {
            Prober::Itf(_) => VROUTER_MAC,
            Prober::Node(_) => VROUTER_MAC,
            _ => device_mac(self.ctl.gateway),
        };
        let a = Addrs {
            src_mac: mac,
            dst_mac,
            src,
            dst: to,
            ttl: opts.ttl,
        };
        let f = match protocol {
            Protocol::Tcp => frame::tcp(
                &a,
                sport,
                port,
                u32::from(sport) * 7919,
                0,
                TcpFlags {
                    syn: true,
                    ..TcpFlags::default()
                },
                b"",
            ),
            Protocol::Udp => {
                if port == 53 {
                    let mut q = [0u8; 12];
                    q[0..2].copy_from_slice(&sport.to_be_bytes());
                    q[2] = 0x01;
                    frame::udp(&a, sport, port, &q)
                } else {
                    frame::udp(&a, sport, port, b"probe")
                }
            }
            Protocol::Sctp => frame::sctp(
                &a,
                &sctp::Repr {
                    src_port: sport,
                    dst_port: port,
                    verification_tag: 0,
                    chunk: sctp::Chunk::Init(sctp::InitRepr {
                        initiate_tag: 0x5000_0000 | u32::from(sport),
                        a_rwnd: 65535,
                        outbound_streams: 1,
                        inbound_streams: 1,
                        initial_tsn: 1,
                    }),
                },
            ),
            Protocol::Icmp => frame::icmp_echo(&a, false, sport, 1, b"probe"),
        };
        let ev = match prober {
            Prober::Itf(i) => Ev::TapTx(i, f),
            Prober::Node(n) => Ev::HostTx(n, f),
            Prober::Host(_) => Ev::Fabric(f),
            Prober::Client(c) => Ev::ExternalTx(c, f),
        };
        let mut tr = Tracer {
            trace: opts.trace,
            capture: opts.capture,
            clock: self.clock,
            ..Tracer::default()
        };
        let answers = self.run(prober, ev, &mut tr);
        self.clock = tr.clock;
        let verdict = verdict(&answers, &tr);
        Ok(Observation {
            verdict,
            hops: tr.hops,
            frames: tr.frames,
        })
    }

    /// Sends an arbitrary frame from `from` (a pod's interface, a node's IP stack, the
    /// underlay for a fabric host, the gateway for an external client) and moves it like a
    /// probe: for fuzzing and for frames the probe builders do not make.
    ///
    /// # Errors
    /// Unknown source, or a source without address.
    pub fn inject(
        &mut self,
        from: &EndpointRef,
        frame: Vec<u8>,
    ) -> Result<Observation, DataplaneError> {
        let (prober, _, _) = self.prober(from)?;
        let ev = match prober {
            Prober::Itf(i) => Ev::TapTx(i, frame),
            Prober::Node(n) => Ev::HostTx(n, frame),
            Prober::Host(_) => Ev::Fabric(frame),
            Prober::Client(c) => Ev::ExternalTx(c, frame),
        };
        let mut tr = Tracer {
            trace: true,
            capture: true,
            clock: self.clock,
            ..Tracer::default()
        };
        let answers = self.run(prober, ev, &mut tr);
        self.clock = tr.clock;
        Ok(Observation {
            verdict: verdict(&answers, &tr),
            hops: tr.hops,
            frames: tr.frames,
        })
    }

    fn itf_link(&self, i: ItfId) -> String {
        let ep = self.itf_endpoint[i]
            .map(|e| self.endpoints[e].name.as_str())
            .unwrap_or("?");
        format!("tap {ep} ({})", self.ctl.itf_name(i))
    }

    /// Moves frames until nothing is left; returns the frames that reached the prober and who
    /// sent the last answer.
    fn run(
        &mut self,
        prober: Prober,
        first: Ev,
        tr: &mut Tracer,
    ) -> Vec<(Vec<u8>, std::sync::Arc<str>)> {
        let mut q = std::mem::take(&mut self.queue_buf);
        q.clear();
        q.push_back(first);
        let mut answers = Vec::new();
        let mut out = std::mem::take(&mut self.out_buf);
        out.clear();
        let mut responder: std::sync::Arc<str> = std::sync::Arc::from("");
        let mut steps = 0;
        // The probe's own proxy connections: a probe is one connection attempt that ends with
        // this loop, so the connections the frame API's clients hold are set aside meanwhile
        // (and its own are dropped after).
        let held = self.proxy.set_aside();
        let mut sent = Vec::new();
        loop {
            let Some(ev) = q.pop_front() else {
                // Nothing moves any more: ingress proxies give up on backend connections
                // nobody answered (their connect timeout), which may send more frames.
                if self.proxy_timers(None, proxy::When::Idle, tr, &mut sent, &mut responder) {
                    q.extend(sent.drain(..).map(|(i, f)| Ev::TapTx(i, f)));
                    continue;
                }
                break;
            };
            steps += 1;
            if steps > MAX_STEPS {
                tr.dropped(
                    "dataplane",
                    format!("forwarding loop: more than {MAX_STEPS} steps"),
                );
                break;
            }
            match ev {
                Ev::TapTx(i, f) => {
                    tr.frame(|| self.itf_link(i), &f);
                    match self.ctl.itf_node[i] {
                        Some(n) => self.vrouters[n].receive_from_tap(&self.ctl, i, f, tr, &mut out),
                        None => tr.dropped(
                            &self.itf_link(i),
                            format!(
                                "interface {} is not placed on any node",
                                self.ctl.itf_name(i)
                            ),
                        ),
                    }
                }
                Ev::TapRx(i, f) => {
                    tr.frame(|| self.itf_link(i), &f);
                    if prober == Prober::Itf(i) && !self.own_request(&f) {
                        answers.push((f, std::sync::Arc::clone(&responder)));
                    } else if let Some(e) = self.itf_endpoint[i] {
                        self.endpoint_rx(e, i, f, tr, &mut q, &mut responder);
                    } else if let Some(p) = self.ctl.itf_proxy[i] {
                        self.proxy_rx(p, i, f, tr, &mut sent, &mut responder);
                        q.extend(sent.drain(..).map(|(i, f)| Ev::TapTx(i, f)));
                    } else {
                        tr.dropped(
                            &format!("interface {}", self.ctl.itf_name(i)),
                            "no endpoint is attached to this interface".into(),
                        );
                    }
                }
                Ev::Fabric(f) => self.underlay(
                    prober,
                    f,
                    tr,
                    &mut q,
                    &mut out,
                    &mut answers,
                    &mut responder,
                ),
                Ev::HostRx(n, f) => {
                    let node = &self.ctl.nodes[n];
                    let (name, vhost, mac) = (node.name.clone(), node.vhost, node.mac);
                    let f = match self.kube_proxy.get_mut(&name) {
                        Some(kp) => match kp.input(&name, vhost, mac, f, tr) {
                            kube_proxy::Verdict::Pass(f) => f,
                            kube_proxy::Verdict::Send(f) => {
                                q.push_back(Ev::HostTx(n, f));
                                continue;
                            }
                            kube_proxy::Verdict::Dropped => continue,
                        },
                        None => f,
                    };
                    if prober == Prober::Node(n) && !self.own_probe(vhost, &f) {
                        answers.push((f, std::sync::Arc::clone(&responder)));
                    } else {
                        let name = format!("node {}", self.ctl.nodes[n].name);
                        let vhost = self.ctl.nodes[n].vhost;
                        let mac = self.ctl.nodes[n].mac;
                        if let Some(reply) = host_answer(
                            &name,
                            &format!("backend={name}"),
                            &self.node_served[n],
                            &[vhost],
                            mac,
                            &f,
                            tr,
                        ) {
                            responder = std::sync::Arc::from(name.as_str());
                            q.push_back(Ev::HostTx(n, reply));
                        }
                    }
                }
                Ev::HostTx(n, f) => {
                    // A node's packet for its own address never leaves the node: it loops
                    // back into its IP stack (and kube-proxy's OUTPUT rules).
                    if frame::parse_ipv4(&f, ETH_HEADER_LEN)
                        .is_ok_and(|s| s.tuple.dst == self.ctl.nodes[n].vhost)
                    {
                        q.push_back(Ev::HostRx(n, f));
                    } else {
                        self.vrouters[n].receive_from_host(&self.ctl, f, tr, &mut out);
                    }
                }
                Ev::ExternalTx(c, f) => {
                    let name = self.topology.external_clients[c].name.clone();
                    tr.frame(|| format!("external {name}"), &f);
                    if let Some(answer) = self.gateway_from_client(f, tr, &mut out) {
                        q.push_back(Ev::ExternalRx(c, answer));
                    }
                }
                Ev::ExternalRx(c, f) => {
                    let name = self.topology.external_clients[c].name.clone();
                    tr.frame(|| format!("external {name}"), &f);
                    if prober == Prober::Client(c) {
                        answers.push((f, std::sync::Arc::clone(&responder)));
                    } else {
                        // A probe client serves nothing: its kernel answers RST, ICMP port
                        // unreachable or ABORT (and echo replies), back through the gateway.
                        let ip = self.topology.external_clients[c].ip;
                        let label = format!("external client {name}");
                        if let Some(reply) = host_answer(
                            &label,
                            &format!("backend={label}"),
                            &HashSet::new(),
                            &[ip],
                            device_mac(ip),
                            &f,
                            tr,
                        ) {
                            responder = std::sync::Arc::from(label.as_str());
                            q.push_back(Ev::ExternalTx(c, reply));
                        }
                    }
                }
            }
            for o in out.drain(..) {
                q.push_back(match o {
                    Out::Tap { itf, frame } => Ev::TapRx(itf, frame),
                    Out::Fabric { frame } => Ev::Fabric(frame),
                    Out::Host { node, frame } => Ev::HostRx(node, frame),
                });
            }
        }
        q.clear();
        out.clear();
        self.queue_buf = q;
        self.out_buf = out;
        self.proxy.restore(held);
        answers
    }

    /// Whether a frame delivered to the prober's own interface is its probe coming back to
    /// itself (a pod reaching its own address, or its own service's ClusterIP with itself as
    /// the backend): then the endpoint serves it; anything else there is an answer.
    fn own_request(&self, f: &[u8]) -> bool {
        frame::parse_ipv4(f, ETH_HEADER_LEN).is_ok_and(|s| {
            // Through a VIP the vrouter's hairpin SNAT makes the source the VIP; the probe's
            // own source port gives it away (an answer is sent *to* that port instead).
            (s.tuple.src == s.tuple.dst || s.tuple.dport != self.next_port)
                && s.tuple.sport == self.next_port
                && matches!(s.tuple.proto, PROTO_TCP | PROTO_UDP | PROTO_SCTP)
        })
    }

    /// Whether a frame that reached node's IP stack (address `vhost`) is the node's own
    /// probe looped back (a node probing itself), not an answer to it.
    fn own_probe(&self, vhost: Ipv4Addr, f: &[u8]) -> bool {
        frame::parse_ipv4(f, ETH_HEADER_LEN).is_ok_and(|s| {
            s.tuple.src == vhost
                && s.tuple.dst == vhost
                && s.tuple.sport == self.next_port
                && !matches!(s.transport, Transport::IcmpError { .. })
                && !matches!(s.transport, Transport::IcmpEcho { reply: true, .. })
        })
    }

    fn endpoint_rx(
        &self,
        e: usize,
        i: ItfId,
        f: Vec<u8>,
        tr: &mut Tracer,
        q: &mut VecDeque<Ev>,
        responder: &mut std::sync::Arc<str>,
    ) {
        let ep = &self.endpoints[e];
        let itf = &self.ctl.model.interfaces[i];
        if ep.service {
            self.service_forward(ep, i, f, tr, q);
            return;
        }
        if let Some(reply) = host_answer(
            &ep.name,
            &ep.identity,
            &ep.served,
            &itf.ips,
            itf.mac,
            &f,
            tr,
        ) {
            if tr.trace {
                tr.hops.push(Hop {
                    at: format!("endpoint {}", ep.name),
                    packet: frame::parse_ipv4(&f, ETH_HEADER_LEN)
                        .map(|s| s.tuple.to_string())
                        .unwrap_or_default(),
                    note: Some("answered".into()),
                    ..Hop::default()
                });
            }
            *responder = std::sync::Arc::clone(&ep.shared_name);
            q.push_back(Ev::TapTx(i, reply));
        }
    }

    fn service_forward(
        &self,
        ep: &EndpointState,
        i: ItfId,
        mut f: Vec<u8>,
        tr: &mut Tracer,
        q: &mut VecDeque<Ev>,
    ) {
        let at = format!("service instance {}", ep.name);
        let Ok(mut s) = frame::parse_ipv4(&f, ETH_HEADER_LEN) else {
            tr.dropped(&at, "malformed packet".into());
            return;
        };
        let side = self.ctl.model.interfaces[i]
            .service
            .as_ref()
            .map(|(_, s)| *s);
        let t = s.tuple;
        let forward_dir = side == Some(ServiceSide::Left);
        if forward_dir
            && let Some((p, port)) = ep
                .drops
                .iter()
                .find(|(p, port)| *p == t.proto && port.is_none_or(|x| x == t.dport))
        {
            let proto = match *p {
                PROTO_TCP => "TCP",
                PROTO_UDP => "UDP",
                PROTO_SCTP => "SCTP",
                _ => "ICMP",
            };
            let what = port
                .map(|x| format!("{proto}/{x}"))
                .unwrap_or(proto.to_owned());
            tr.dropped(&at, format!("the service function drops {what}"));
            return;
        }
        let other_side = match side {
            Some(ServiceSide::Left) => ServiceSide::Right,
            _ => ServiceSide::Left,
        };
        let Some(o) = ep.itfs.iter().copied().find(|x| {
            self.ctl.model.interfaces[*x]
                .service
                .as_ref()
                .map(|(_, s)| *s)
                == Some(other_side)
        }) else {
            tr.dropped(&at, "no interface on the other side".into());
            return;
        };
        if s.ttl <= 1 {
            tr.dropped(&at, "TTL exceeded".into());
            return;
        }
        frame::decrement_ttl(&mut f, &mut s);
        frame::set_macs(&mut f, VROUTER_MAC, self.ctl.model.interfaces[o].mac);
        if tr.trace {
            tr.hops.push(Hop {
                at,
                packet: t.to_string(),
                note: Some(format!(
                    "forwarded {} -> {}",
                    self.ctl.itf_name(i),
                    self.ctl.itf_name(o)
                )),
                ..Hop::default()
            });
        }
        q.push_back(Ev::TapTx(o, f));
    }

    #[allow(clippy::too_many_arguments)]
    fn underlay(
        &mut self,
        prober: Prober,
        mut f: Vec<u8>,
        tr: &mut Tracer,
        q: &mut VecDeque<Ev>,
        out: &mut Vec<Out>,
        answers: &mut Vec<(Vec<u8>, std::sync::Arc<str>)>,
        responder: &mut std::sync::Arc<str>,
    ) {
        let Ok(s) = frame::parse_ipv4(&f, ETH_HEADER_LEN) else {
            tr.dropped("underlay", "malformed frame".into());
            return;
        };
        let dst = s.tuple.dst;
        #[derive(Clone, Copy)]
        enum Dev {
            Node(NodeId),
            Host(usize),
            Gateway,
        }
        let dev = if let Some(n) = self.ctl.node_by_vhost.get(&dst) {
            Dev::Node(*n)
        } else if let Some(h) = self.host_by_ip.get(&dst) {
            Dev::Host(*h)
        } else if dst == self.ctl.gateway || self.client_by_ip.contains_key(&dst) {
            Dev::Gateway
        } else if let Some(n) = self.ctl.fabric_pod_routes.get(&dst) {
            Dev::Node(*n)
        } else {
            tr.frame(|| "underlay".into(), &f);
            tr.dropped("underlay", format!("no underlay route to {dst}"));
            return;
        };
        let mac = match dev {
            Dev::Node(n) => self.ctl.nodes[n].mac,
            Dev::Host(_) => device_mac(dst),
            Dev::Gateway => device_mac(self.ctl.gateway),
        };
        let name = |dp: &Self| match dev {
            Dev::Node(n) => format!("node {}", dp.ctl.nodes[n].name),
            Dev::Host(h) => format!("fabric host {}", dp.topology.fabric_hosts[h].name),
            Dev::Gateway => dp.topology.gateway.name.clone(),
        };
        let src_mac = f.get(6..12).map(|m| {
            let mut a = [0u8; 6];
            a.copy_from_slice(m);
            a
        });
        frame::set_macs(&mut f, mac, src_mac.unwrap_or([0; 6]));
        tr.frame(|| "underlay".into(), &f);
        if tr.trace {
            tr.hops.push(Hop {
                at: "underlay".into(),
                packet: s.tuple.to_string(),
                next_hop: Some(name(self)),
                encapsulation: Some(match encap::classify(&s) {
                    Some(k) => k.as_str().to_owned(),
                    None => "none".to_owned(),
                }),
                ..Hop::default()
            });
        }
        match dev {
            Dev::Node(n) => self.vrouters[n].receive_from_fabric(&self.ctl, f, tr, out),
            Dev::Host(h) => {
                if prober == Prober::Host(h) {
                    answers.push((f, std::sync::Arc::clone(responder)));
                    return;
                }
                if let Some(kind) = encap::classify(&s) {
                    tr.dropped(
                        &name(self),
                        format!(
                            "{} packet reached a host without a vrouter: it cannot decapsulate it and answers with ICMP {} unreachable",
                            kind.as_str(),
                            if s.tuple.proto == PROTO_GRE { "protocol" } else { "port" }
                        ),
                    );
                }
                let host = &self.topology.fabric_hosts[h];
                if let Some(reply) = host_answer(
                    &host.name,
                    &format!("backend={}", host.name),
                    &self.host_served[h],
                    &[host.ip],
                    mac,
                    &f,
                    tr,
                ) {
                    if encap::classify(&s).is_none() {
                        *responder = std::sync::Arc::from(host.name.as_str());
                    }
                    q.push_back(Ev::Fabric(reply));
                }
            }
            Dev::Gateway => self.gateway_from_fabric(f, tr, q),
        }
    }

    fn gateway_from_fabric(&mut self, f: Vec<u8>, tr: &mut Tracer, q: &mut VecDeque<Ev>) {
        let gw = &self.topology.gateway.name;
        let inner = match encap::decapsulate(&f, ([0; 6], device_mac(self.ctl.gateway))) {
            Ok(Some(d)) if d.id == GATEWAY_LABEL || d.kind == Encapsulation::Vxlan => d.inner_frame,
            Ok(Some(d)) => {
                tr.dropped(gw, format!("unknown label {}", d.id));
                return;
            }
            Ok(None) => f,
            Err(e) => {
                tr.dropped(gw, format!("malformed tunnel packet: {e}"));
                return;
            }
        };
        let Ok(s) = frame::parse_ipv4(&inner, ETH_HEADER_LEN) else {
            tr.dropped(gw, "malformed packet".into());
            return;
        };
        match self.client_by_ip.get(&s.tuple.dst) {
            Some(c) => {
                if !matches!(s.transport, Transport::IcmpError { .. }) {
                    self.gateway_sessions.open(s.tuple.reversed());
                }
                let mut inner = inner;
                frame::set_macs(
                    &mut inner,
                    device_mac(s.tuple.dst),
                    device_mac(self.ctl.gateway),
                );
                if tr.trace {
                    tr.hops.push(Hop {
                        at: gw.clone(),
                        packet: s.tuple.to_string(),
                        next_hop: Some(format!(
                            "external client {}",
                            self.topology.external_clients[*c].name
                        )),
                        ..Hop::default()
                    });
                }
                q.push_back(Ev::ExternalRx(*c, inner));
            }
            None => tr.dropped(gw, format!("no route to {}", s.tuple.dst)),
        }
    }

    /// A packet from an external client: to a floating IP of the public pool (tunnelled to
    /// a member's vrouter), to a node port of a node address, or an answer of a session
    /// opened from inside (plain on the underlay); anything else is not published and is
    /// dropped. Returns the gateway's own answer to the client, if any.
    fn gateway_from_client(
        &self,
        mut f: Vec<u8>,
        tr: &mut Tracer,
        out: &mut Vec<Out>,
    ) -> Option<Vec<u8>> {
        let gw = self.topology.gateway.name.clone();
        let Ok(s) = frame::parse_ipv4(&f, ETH_HEADER_LEN) else {
            tr.dropped(&gw, "malformed packet".into());
            return None;
        };
        let t = s.tuple;
        let gmac = device_mac(self.ctl.gateway);
        if let Some(fip) = self.ctl.gateway_fips.get(&t.dst) {
            let fip_cfg = &self.ctl.model.floating_ips[*fip];
            let members: Vec<ItfId> = fip_cfg
                .interfaces
                .iter()
                .filter_map(|u| self.ctl.model.interface_by_uuid.get(u).copied())
                .filter(|i| self.ctl.itf_node[*i].is_some())
                .collect();
            if members.is_empty() {
                if fip_cfg.port_mappings_enable {
                    // A LoadBalancer / external IP of a service without ready backends: the
                    // reject route reaches the gateway like the VIP's route would.
                    let macs = (gmac, frame::parse(&f).map(|x| x.src_mac).unwrap_or([0; 6]));
                    match crate::forward::vrouter::vip_reject(&self.ctl, *fip, &s, &f, macs) {
                        Ok(answer) => {
                            if tr.trace {
                                tr.hops.push(Hop {
                                    at: gw,
                                    packet: t.to_string(),
                                    route: Some(format!("{}/32 (floating IP {})", t.dst, fip_cfg.fq)),
                                    note: Some(format!(
                                        "rejected: load balancer VIP {} has no member; ICMP port unreachable sent",
                                        t.dst
                                    )),
                                    ..Hop::default()
                                });
                            }
                            return Some(answer);
                        }
                        Err(reason) => {
                            tr.dropped(&gw, reason);
                            return None;
                        }
                    }
                }
                tr.dropped(
                    &gw,
                    format!("floating IP {} is attached to no placed interface", t.dst),
                );
                return None;
            }
            let mut b = [0u8; 13];
            b[0..4].copy_from_slice(&t.src.octets());
            b[4..8].copy_from_slice(&t.dst.octets());
            b[8] = t.proto;
            b[9..11].copy_from_slice(&t.sport.to_be_bytes());
            b[11..13].copy_from_slice(&t.dport.to_be_bytes());
            let h = crate::config::model::fnv(&b);
            let j = members[(h % members.len() as u64) as usize];
            let n = self.ctl.itf_node[j].unwrap_or(0);
            let kind = self
                .ctl
                .model
                .encapsulation
                .first()
                .copied()
                .unwrap_or(Encapsulation::MplsOverUdp);
            let id = if kind == Encapsulation::Vxlan {
                self.ctl.model.networks[fip_cfg.network].vni
            } else {
                self.ctl.itf_label[j]
            };
            frame::set_macs(&mut f, self.ctl.model.interfaces[j].mac, VROUTER_MAC);
            let outer = Outer {
                addrs: Addrs {
                    src_mac: gmac,
                    dst_mac: [0; 6],
                    src: self.ctl.gateway,
                    dst: self.ctl.nodes[n].vhost,
                    ttl: 64,
                },
                entropy: h as u16,
            };
            let enc = encap::encapsulate(kind, &outer, id, &f);
            if tr.trace {
                tr.hops.push(Hop {
                    at: gw,
                    packet: t.to_string(),
                    route: Some(format!("{}/32 (floating IP {})", t.dst, fip_cfg.fq)),
                    next_hop: Some(format!(
                        "ECMP member {} on {}",
                        self.ctl.itf_name(j),
                        self.ctl.nodes[n].name
                    )),
                    encapsulation: Some(format!(
                        "{} {id} to {}",
                        kind.as_str(),
                        self.ctl.nodes[n].vhost
                    )),
                    ..Hop::default()
                });
            }
            out.push(Out::Fabric { frame: enc });
            return None;
        }
        let routed = self.ctl.node_by_vhost.contains_key(&t.dst)
            || self.host_by_ip.contains_key(&t.dst)
            || self.ctl.fabric_pod_routes.contains_key(&t.dst);
        if !routed {
            tr.dropped(&gw, format!("no route to {} at the gateway", t.dst));
            return None;
        }
        // The gateway publishes only floating IPs and node ports: an external client reaches
        // a node address on the node-port range (kube-proxy's), and nothing else inside the
        // fabric unless it answers a session opened from inside.
        let node_port = self.ctl.node_by_vhost.contains_key(&t.dst)
            && matches!(
                s.transport,
                Transport::Tcp { .. } | Transport::Udp | Transport::Sctp { .. }
            )
            && NODE_PORT_RANGE.contains(&t.dport);
        let answer = self.gateway_sessions.admits(&s);
        if !node_port && !answer {
            let what = match self.ctl.node_by_vhost.get(&t.dst) {
                Some(n) => format!(
                    "node {} is published to the outside only on node ports {}-{} (TCP, UDP, SCTP)",
                    self.ctl.nodes[*n].name,
                    NODE_PORT_RANGE.start(),
                    NODE_PORT_RANGE.end()
                ),
                None => format!("{} is not published", t.dst),
            };
            tr.dropped(
                &gw,
                format!(
                    "{what}: external clients reach only floating IPs of the public pool (LoadBalancer, external IPs, ingresses) and node ports"
                ),
            );
            return None;
        }
        frame::set_macs(&mut f, [0; 6], gmac);
        if tr.trace {
            tr.hops.push(Hop {
                at: gw,
                packet: t.to_string(),
                next_hop: Some("underlay".into()),
                encapsulation: Some("none".into()),
                note: Some(if answer {
                    "answer of a session opened from inside".into()
                } else {
                    "node port".into()
                }),
                ..Hop::default()
            });
        }
        out.push(Out::Fabric { frame: f });
        None
    }
}

/// A kernel-like answer of an IP stack that owns `ips` and serves `served`: SYN → SYN-ACK
/// (carrying `backend=<name>`) or RST; UDP → a reply (`backend=<name>`) or ICMP port
/// unreachable; SCTP INIT → INIT-ACK (cookie `backend=<name>`) or ABORT; echo → echo reply;
/// other protocols → ICMP protocol unreachable.
fn host_answer(
    name: &str,
    identity: &str,
    served: &HashSet<(u8, u16)>,
    ips: &[Ipv4Addr],
    my_mac: Mac,
    f: &[u8],
    tr: &mut Tracer,
) -> Option<Vec<u8>> {
    let summary = frame::parse(f).ok()?;
    let Payload::Ipv4(s) = summary.payload else {
        return None;
    };
    let t = s.tuple;
    if !ips.contains(&t.dst) {
        tr.dropped(name, format!("{} is not its address", t.dst));
        return None;
    }
    let back = Addrs {
        src_mac: my_mac,
        dst_mac: summary.src_mac,
        src: t.dst,
        dst: t.src,
        ttl: 64,
    };
    let unreachable =
        |code: u8| frame::icmp_error(&back, IcmpError::Unreachable(code), s.ip_packet(f));
    match (&s.transport, t.proto) {
        (Transport::Tcp { flags, seq, .. }, _) if flags.syn && !flags.ack => {
            if served.contains(&(PROTO_TCP, t.dport)) {
                Some(frame::tcp(
                    &back,
                    t.dport,
                    t.sport,
                    0x1000_0000 ^ u32::from(t.sport),
                    seq.wrapping_add(1),
                    TcpFlags {
                        syn: true,
                        ack: true,
                        ..TcpFlags::default()
                    },
                    identity.as_bytes(),
                ))
            } else {
                Some(frame::tcp(
                    &back,
                    t.dport,
                    t.sport,
                    0,
                    seq.wrapping_add(1),
                    TcpFlags {
                        rst: true,
                        ack: true,
                        ..TcpFlags::default()
                    },
                    b"",
                ))
            }
        }
        (Transport::Tcp { .. }, _) => None,
        (Transport::Udp, _) => {
            if served.contains(&(PROTO_UDP, t.dport)) {
                let payload = if t.dport == 53 {
                    dns_answer(s.payload(f), identity)
                } else {
                    identity.as_bytes().to_vec()
                };
                Some(frame::udp(&back, t.dport, t.sport, &payload))
            } else {
                Some(unreachable(3))
            }
        }
        (Transport::Sctp { .. }, _) => {
            let p = sctp::Packet::new_checked(f.get(s.l4_start..s.ip_end)?).ok()?;
            let r = sctp::Repr::parse(&p).ok()?;
            let sctp::Chunk::Init(init) = r.chunk else {
                return None;
            };
            let chunk = if served.contains(&(PROTO_SCTP, t.dport)) {
                sctp::Chunk::InitAck {
                    init: sctp::InitRepr {
                        initiate_tag: 0x6000_0000 | u32::from(t.sport),
                        ..init
                    },
                    cookie: identity.as_bytes().to_vec(),
                }
            } else {
                sctp::Chunk::Abort { reflected: false }
            };
            Some(frame::sctp(
                &back,
                &sctp::Repr {
                    src_port: t.dport,
                    dst_port: t.sport,
                    verification_tag: init.initiate_tag,
                    chunk,
                },
            ))
        }
        (Transport::IcmpEcho { reply: false, seq }, _) => {
            Some(frame::icmp_echo(&back, true, t.sport, *seq, s.payload(f)))
        }
        (_, PROTO_ICMP) => None,
        _ => Some(unreachable(2)),
    }
}

/// A DNS response carrying `identity` in a TXT record of the root name (so the answer of a
/// DNS server endpoint is a well-formed DNS message).
fn dns_answer(query: &[u8], identity: &str) -> Vec<u8> {
    let text = &identity.as_bytes()[..identity.len().min(255)];
    let mut m = Vec::with_capacity(24 + text.len());
    m.extend_from_slice(query.get(0..2).unwrap_or(&[0, 0]));
    m.extend_from_slice(&[0x84, 0x00, 0, 0, 0, 1, 0, 0, 0, 0]);
    m.extend_from_slice(&[0, 0, 16, 0, 1, 0, 0, 0, 0]);
    m.extend_from_slice(&((text.len() + 1) as u16).to_be_bytes());
    m.push(text.len() as u8);
    m.extend_from_slice(text);
    m
}

/// The verdict from the frames that reached the prober and what the tracer saw.
fn verdict(answers: &[(Vec<u8>, std::sync::Arc<str>)], tr: &Tracer) -> Verdict {
    if let Some(reason) = &tr.inconclusive {
        return Verdict::Inconclusive {
            reason: reason.clone(),
        };
    }
    for (f, who) in answers {
        let Ok(summary) = frame::parse(f) else {
            continue;
        };
        let Payload::Ipv4(s) = summary.payload else {
            continue;
        };
        let backend_of = |payload: &[u8]| {
            payload
                .windows(8)
                .position(|w| w == b"backend=")
                .and_then(|i| std::str::from_utf8(&payload[i + 8..]).ok())
                .map(str::to_owned)
                .unwrap_or_else(|| who.to_string())
        };
        match &s.transport {
            Transport::Tcp { flags, .. } if flags.syn && flags.ack => {
                return Verdict::Connected {
                    backend: backend_of(s.payload(f)),
                };
            }
            Transport::Tcp { flags, .. } if flags.rst => {
                return Verdict::Refused {
                    by: format!("{} (TCP RST from {})", who, s.tuple.src),
                };
            }
            Transport::Udp => {
                return Verdict::Connected {
                    backend: backend_of(s.payload(f)),
                };
            }
            Transport::Sctp { .. } => {
                let Some(p) = f
                    .get(s.l4_start..s.ip_end)
                    .and_then(|b| sctp::Packet::new_checked(b).ok())
                else {
                    continue;
                };
                match sctp::Repr::parse(&p).map(|r| r.chunk) {
                    Ok(sctp::Chunk::InitAck { cookie, .. }) => {
                        return Verdict::Connected {
                            backend: backend_of(&cookie),
                        };
                    }
                    Ok(sctp::Chunk::Abort { .. }) => {
                        return Verdict::Refused {
                            by: format!("{} (SCTP ABORT from {})", who, s.tuple.src),
                        };
                    }
                    _ => continue,
                }
            }
            Transport::IcmpEcho { reply: true, .. } => {
                return Verdict::Connected {
                    backend: if who.is_empty() {
                        s.tuple.src.to_string()
                    } else {
                        who.to_string()
                    },
                };
            }
            Transport::IcmpError {
                error: IcmpError::Unreachable(code @ (2 | 3)),
                ..
            } => {
                return Verdict::Refused {
                    by: format!(
                        "{} (ICMP {} unreachable from {})",
                        who,
                        if *code == 3 { "port" } else { "protocol" },
                        s.tuple.src
                    ),
                };
            }
            Transport::IcmpError { error, .. } => {
                let (at, why) = tr
                    .drop
                    .clone()
                    .unwrap_or_else(|| (s.tuple.src.to_string(), String::new()));
                return Verdict::Dropped {
                    at,
                    reason: format!("ICMP {error:?} from {}: {why}", s.tuple.src),
                };
            }
            _ => continue,
        }
    }
    match &tr.drop {
        Some((at, reason)) => Verdict::Dropped {
            at: at.clone(),
            reason: reason.clone(),
        },
        None => Verdict::Dropped {
            at: "nowhere".into(),
            reason: "no answer and no drop recorded".into(),
        },
    }
}

impl Dataplane {
    /// Placement of every attached endpoint: name → node.
    pub fn placement(&self) -> HashMap<String, Option<String>> {
        self.endpoints
            .iter()
            .map(|e| {
                let node = e
                    .itfs
                    .first()
                    .and_then(|i| self.ctl.itf_node[*i])
                    .map(|n| self.ctl.nodes[n].name.clone());
                (e.name.clone(), node)
            })
            .collect()
    }

    /// The fabric hosts.
    pub fn fabric_hosts(&self) -> &[HostSpec] {
        &self.topology.fabric_hosts
    }

    /// The external clients.
    pub fn external_clients(&self) -> &[ClientSpec] {
        &self.topology.external_clients
    }
}
