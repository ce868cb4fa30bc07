//! A frame-level entry point into the one forwarding core, for I/O backends other than the
//! model's in-process queue (the network-namespace dataplane reads frames from AF_PACKET
//! sockets and writes the results back to them).
//!
//! [`Dataplane::node_rx`] hands one frame to a node's vrouter exactly as the model's probes
//! do — `receive_from_tap`, `receive_from_fabric` or `receive_from_host` of
//! [`crate::forward::vrouter::Vrouter`] — and returns where the frames it emitted go. Nothing
//! here forwards on its own; the only additions are what a real vrouter does at its edges and
//! the model's underlay does implicitly:
//!
//! - frames that are not IPv4 (ARP on the underlay) are cross-connected between the physical
//!   interface and vhost0, as the real vrouter does, so the node's kernel answers ARP for its
//!   vhost address and resolves its underlay neighbours;
//! - frames the vrouter puts on the underlay get the destination MAC of the underlay device
//!   that owns the outer destination (node, fabric host, gateway, or the node of a
//!   fabric-forwarded pod), as the model's underlay sets it; a frame for an address that no
//!   device of the topology owns is dropped, so nothing leaves the topology;
//! - a frame for an ingress proxy's VIP interface goes to the proxy (Contrail's haproxy runs
//!   on the node, behind no tap), whose connections are dataplane state; what it sends enters
//!   the vrouter from the VIP interface again. Its timers run in [`Dataplane::tick`], which
//!   the I/O backend calls every few tens of milliseconds.
//!
//! [`Dataplane::gateway_rx`] is the same for the SDN gateway between the underlay and the
//! external clients.
//!
//! ```
//! use harness_vrouter_sim::config::Snapshot;
//! use harness_vrouter_sim::io::{Ingress, Place};
//! use harness_vrouter_sim::{Dataplane, NodeSpec, Topology};
//!
//! let topology = Topology {
//!     nodes: vec![NodeSpec { name: "n1".into(), vhost: "192.168.0.11".parse().unwrap(), ports: vec![] }],
//!     ..Topology::default()
//! };
//! let mut dp = Dataplane::from_config(Snapshot::new(), topology);
//! // An ARP request on the underlay goes to the node's own IP stack (vhost0).
//! let arp = harness_vrouter_sim::wire::frame::arp(
//!     [2, 0, 0, 0, 0, 1], [0xff; 6], false,
//!     ([2, 0, 0, 0, 0, 1], "192.168.0.50".parse().unwrap()),
//!     ([0; 6], "192.168.0.11".parse().unwrap()),
//! );
//! let rx = dp.node_rx("n1", Ingress::Fabric, arp, false).unwrap();
//! assert_eq!(rx.egress[0].place, Place::Host);
//! ```

use std::collections::VecDeque;
use std::net::Ipv4Addr;
use std::sync::Arc;
use std::time::Instant;

use ipnet::Ipv4Net;

use super::proxy::When;
pub use super::proxy::{PROXY_CONNECT_TIMEOUT, PROXY_IDLE_TIMEOUT, PROXY_RETRANSMIT};
use super::{Dataplane, DataplaneError, Ev, kube_proxy};
use crate::forward::control::{ItfId, NodeId, device_mac};
use crate::forward::vrouter::Out;
use crate::trace::{Hop, Tracer};
use crate::wire::frame::{self, ETH_HEADER_LEN, Mac};

const ETHERTYPE_IPV4: u16 = 0x0800;
/// Rounds of frames a node may pass to itself for one received frame (a tunnel to its own
/// vhost, kube-proxy's translations) before it counts as a forwarding loop.
const MAX_LOCAL_ROUNDS: usize = 16;

/// Where a frame enters a node's vrouter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ingress<'a> {
    /// From the workload behind the tap of the interface with this VMI uuid.
    Tap(&'a str),
    /// From the physical interface on the underlay.
    Fabric,
    /// From the node's own IP stack (vhost0).
    Host,
}

/// Where a frame leaves a node's vrouter (or the gateway).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Place {
    /// To the workload behind the tap of the interface with this VMI uuid.
    Tap(String),
    /// Onto the underlay (the destination MAC is the owner of the outer destination).
    Fabric,
    /// To the node's own IP stack (vhost0).
    Host,
    /// To the external client of this name (from the gateway).
    Client(String),
}

/// One frame the vrouter emitted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Egress {
    /// Where it goes.
    pub place: Place,
    /// The Ethernet frame.
    pub frame: Vec<u8>,
}

/// What one received frame caused.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Rx {
    /// Frames to send, in order.
    pub egress: Vec<Egress>,
    /// Hops (when traced).
    pub hops: Vec<Hop>,
    /// Where and why the frame was dropped, if it was.
    pub dropped: Option<(String, String)>,
    /// Set when the path crossed a restarting vrouter.
    pub inconclusive: Option<String>,
}

/// A workload interface placed on a node: what a backend needs to wire it (a veth whose
/// workload end carries `mac` and `ip/prefix_len` with a default route via `gateway`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortInfo {
    /// VMI uuid.
    pub vmi: String,
    /// The endpoint it belongs to (`ns/pod`), when one is attached.
    pub endpoint: Option<String>,
    /// The node hosting it.
    pub node: String,
    /// Its MAC.
    pub mac: Mac,
    /// Its primary address, with the prefix of the subnet that contains it.
    pub address: Option<Ipv4Net>,
    /// The network's gateway in that subnet (the vrouter answers for it).
    pub gateway: Option<Ipv4Addr>,
    /// The network uses ip-fabric forwarding (no tunnel on the underlay).
    pub fabric_forwarding: bool,
}

impl Dataplane {
    fn io_itf(&self, uuid: &str) -> Result<ItfId, DataplaneError> {
        self.ctl
            .model
            .interface_by_uuid
            .get(uuid)
            .copied()
            .ok_or_else(|| DataplaneError::Unknown(format!("interface {uuid}")))
    }

    /// The MAC of the underlay device that owns `dst` (a node's vhost, a fabric host, the
    /// gateway or an external client behind it, or the node of a fabric-forwarded pod).
    pub fn underlay_mac(&self, dst: Ipv4Addr) -> Option<Mac> {
        if let Some(n) = self.ctl.node_by_vhost.get(&dst) {
            Some(self.ctl.nodes[*n].mac)
        } else if self.host_by_ip.contains_key(&dst) {
            Some(device_mac(dst))
        } else if dst == self.ctl.gateway || self.client_by_ip.contains_key(&dst) {
            Some(device_mac(self.ctl.gateway))
        } else {
            self.ctl
                .fabric_pod_routes
                .get(&dst)
                .map(|n| self.ctl.nodes[*n].mac)
        }
    }

    /// The underlay routes a fabric router would carry for ip-fabric-forwarded workload
    /// addresses: (address, vhost of the node hosting it), sorted.
    pub fn fabric_pod_routes(&self) -> Vec<(Ipv4Addr, Ipv4Addr)> {
        let mut v: Vec<_> = self
            .ctl
            .fabric_pod_routes
            .iter()
            .map(|(a, n)| (*a, self.ctl.nodes[*n].vhost))
            .collect();
        v.sort();
        v
    }

    /// A node's vhost address and underlay MAC.
    ///
    /// # Errors
    /// Unknown node.
    pub fn node_underlay(&self, node: &str) -> Result<(Ipv4Addr, Mac), DataplaneError> {
        let n = self.node(node)?;
        Ok((self.ctl.nodes[n].vhost, self.ctl.nodes[n].mac))
    }

    /// Every workload interface placed on a node, in configuration order.
    pub fn ports(&self) -> Vec<PortInfo> {
        let model = &self.ctl.model;
        model
            .interfaces
            .iter()
            .enumerate()
            .filter_map(|(i, itf)| {
                let node = self.ctl.nodes.get(self.ctl.itf_node[i]?)?.name.clone();
                let net = &model.networks[itf.network];
                let ip = itf.ips.first().copied();
                let subnet = ip.and_then(|ip| net.subnets.iter().find(|s| s.contains(&ip)));
                Some(PortInfo {
                    vmi: itf.uuid.clone(),
                    endpoint: self.itf_endpoint[i].map(|e| self.endpoints[e].name.clone()),
                    node,
                    mac: itf.mac,
                    address: ip.and_then(|ip| {
                        Ipv4Net::new(ip, subnet.map(|s| s.prefix_len()).unwrap_or(32)).ok()
                    }),
                    gateway: net
                        .gateways
                        .iter()
                        .copied()
                        .find(|g| subnet.is_some_and(|s| s.contains(g)))
                        .or_else(|| net.gateways.first().copied()),
                    fabric_forwarding: net.fabric_forwarding,
                })
            })
            .collect()
    }

    /// Hands one frame to `node`'s vrouter, as it arrived at `ingress`, and returns what it
    /// emitted. Runs the same vrouter code as [`Dataplane::probe`]; with `trace`, the hops.
    ///
    /// # Errors
    /// Unknown node, or an interface that is not placed on `node`.
    pub fn node_rx(
        &mut self,
        node: &str,
        ingress: Ingress<'_>,
        frame: Vec<u8>,
        trace: bool,
    ) -> Result<Rx, DataplaneError> {
        let n = self.node(node)?;
        let mut tr = Tracer {
            trace,
            ..Tracer::default()
        };
        let mut out = std::mem::take(&mut self.out_buf);
        out.clear();
        let mut rx = Rx::default();
        let ipv4 = frame::ethertype(&frame) == ETHERTYPE_IPV4;
        match ingress {
            Ingress::Tap(uuid) => {
                let i = self.io_itf(uuid)?;
                if self.ctl.itf_node[i] != Some(n) {
                    self.out_buf = out;
                    return Err(DataplaneError::Unknown(format!(
                        "interface {uuid} on node {node}"
                    )));
                }
                self.vrouters[n].receive_from_tap(&self.ctl, i, frame, &mut tr, &mut out);
            }
            // The real vrouter hands non-IP frames between the physical interface and vhost0.
            Ingress::Fabric if !ipv4 => rx.egress.push(Egress {
                place: Place::Host,
                frame,
            }),
            Ingress::Host if !ipv4 => rx.egress.push(Egress {
                place: Place::Fabric,
                frame,
            }),
            Ingress::Fabric => {
                self.vrouters[n].receive_from_fabric(&self.ctl, frame, &mut tr, &mut out)
            }
            Ingress::Host => {
                self.vrouters[n].receive_from_host(&self.ctl, frame, &mut tr, &mut out)
            }
        }
        Ok(self.settle(n, node, out, tr, rx))
    }

    /// The timers of the ingress proxies whose VIP interface is on `node`, at wall-clock
    /// `now`: a backend connection unanswered for [`PROXY_CONNECT_TIMEOUT`] resets its client
    /// (haproxy's 503), an unacknowledged segment is sent again after [`PROXY_RETRANSMIT`], a
    /// connection idle for [`PROXY_IDLE_TIMEOUT`] is reset. Returns what the proxies sent,
    /// through `node`'s vrouter, as [`Dataplane::node_rx`] does. The forwarder of each node
    /// calls it every few tens of milliseconds; the proxies' clock is the latest `now` given.
    ///
    /// # Errors
    /// Unknown node.
    pub fn tick(&mut self, node: &str, now: Instant) -> Result<Rx, DataplaneError> {
        let n = self.node(node)?;
        self.proxy.advance(now);
        if self.proxy.is_empty() {
            return Ok(Rx::default());
        }
        let mut tr = Tracer::default();
        let mut sent = Vec::new();
        let mut responder = Arc::from("");
        self.proxy_timers(Some(n), When::At(now), &mut tr, &mut sent, &mut responder);
        if sent.is_empty() {
            return Ok(Rx::default());
        }
        let mut out = std::mem::take(&mut self.out_buf);
        out.clear();
        for (i, f) in sent {
            self.vrouters[n].receive_from_tap(&self.ctl, i, f, &mut tr, &mut out);
        }
        Ok(self.settle(n, node, out, tr, Rx::default()))
    }

    /// Connections the ingress proxies hold open (client and backend leg each), on every
    /// node.
    pub fn proxy_connections(&self) -> usize {
        self.proxy.len()
    }

    /// Moves what node `n`'s vrouter emitted (`out`) to its places, and returns them with
    /// the trace.
    fn settle(
        &mut self,
        n: NodeId,
        node: &str,
        mut out: Vec<Out>,
        mut tr: Tracer,
        mut rx: Rx,
    ) -> Rx {
        // What the vrouter emitted, plus what never leaves the node: a frame tunnelled to
        // the node's own vhost goes straight back into its vrouter (the real vrouter never
        // puts it on the wire, and the underlay bridge would not hairpin it back), and what
        // reaches the node's IP stack passes kube-proxy's node-port rules first, whose
        // translated packets the node sends out through vhost0 again, as in the model.
        let mut spare = Vec::new();
        let mut rounds = 0;
        while !out.is_empty() {
            rounds += 1;
            if rounds > MAX_LOCAL_ROUNDS {
                tr.dropped(
                    &format!("vrouter on {node}"),
                    format!("forwarding loop: more than {MAX_LOCAL_ROUNDS} rounds within the node"),
                );
                out.clear();
                break;
            }
            std::mem::swap(&mut out, &mut spare);
            for o in spare.drain(..) {
                match o {
                    // The VIP interface of an ingress proxy: the proxy runs on the node (its
                    // namespace is the node's, not a workload's), and what it answers enters
                    // the vrouter from the VIP interface again.
                    Out::Tap { itf, frame } if self.ctl.itf_proxy[itf].is_some() => {
                        let p = self.ctl.itf_proxy[itf].unwrap_or_default();
                        let mut sent = Vec::new();
                        let mut responder = Arc::from("");
                        self.proxy_rx(p, itf, frame, &mut tr, &mut sent, &mut responder);
                        for (i, f) in sent {
                            self.vrouters[n].receive_from_tap(&self.ctl, i, f, &mut tr, &mut out);
                        }
                    }
                    Out::Tap { itf, frame } => rx.egress.push(Egress {
                        place: Place::Tap(self.ctl.model.interfaces[itf].uuid.clone()),
                        frame,
                    }),
                    Out::Host { frame, .. } => {
                        self.node_stack_rx(n, frame, &mut tr, &mut rx, &mut out)
                    }
                    Out::Fabric { frame } => {
                        let own = frame::ethertype(&frame) == ETHERTYPE_IPV4
                            && frame::parse_ipv4(&frame, ETH_HEADER_LEN)
                                .is_ok_and(|s| s.tuple.dst == self.ctl.nodes[n].vhost);
                        if own {
                            if tr.trace {
                                tr.hops.push(Hop {
                                    at: format!("vrouter on {node}"),
                                    node: Some(node.to_owned()),
                                    note: Some(
                                        "tunnelled to its own vhost: looped back, never on the wire"
                                            .into(),
                                    ),
                                    ..Hop::default()
                                });
                            }
                            self.vrouters[n]
                                .receive_from_fabric(&self.ctl, frame, &mut tr, &mut out);
                        } else if let Some(frame) = self.to_underlay(frame, &mut tr, node) {
                            rx.egress.push(Egress {
                                place: Place::Fabric,
                                frame,
                            });
                        }
                    }
                }
            }
        }
        if spare.capacity() > out.capacity() {
            out = spare;
        }
        self.out_buf = out;
        rx.hops = tr.hops;
        rx.dropped = tr.drop;
        rx.inconclusive = tr.inconclusive;
        rx
    }

    /// A packet the vrouter hands to node `n`'s IP stack: kube-proxy's node-port rules and
    /// conntrack first (as the model's node stack does); what they translate leaves through
    /// vhost0 into the vrouter again (or loops back when it is for the node itself), the rest
    /// goes to the node's kernel.
    fn node_stack_rx(
        &mut self,
        n: usize,
        f: Vec<u8>,
        tr: &mut Tracer,
        rx: &mut Rx,
        out: &mut Vec<Out>,
    ) {
        let node = &self.ctl.nodes[n];
        let (name, vhost, mac) = (node.name.clone(), node.vhost, node.mac);
        let f = match self.kube_proxy.get_mut(&name) {
            Some(kp) => match kp.input(&name, vhost, mac, f, tr) {
                kube_proxy::Verdict::Pass(f) => f,
                kube_proxy::Verdict::Send(f) => {
                    if frame::parse_ipv4(&f, ETH_HEADER_LEN).is_ok_and(|s| s.tuple.dst == vhost) {
                        out.push(Out::Host { node: n, frame: f });
                    } else {
                        self.vrouters[n].receive_from_host(&self.ctl, f, tr, out);
                    }
                    return;
                }
                kube_proxy::Verdict::Dropped => return,
            },
            None => f,
        };
        rx.egress.push(Egress {
            place: Place::Host,
            frame: f,
        });
    }

    /// Addresses the underlay frame to the device owning its destination, or drops it.
    fn to_underlay(&self, mut f: Vec<u8>, tr: &mut Tracer, at: &str) -> Option<Vec<u8>> {
        if frame::ethertype(&f) != ETHERTYPE_IPV4 {
            return Some(f);
        }
        let dst = frame::parse_ipv4(&f, ETH_HEADER_LEN).ok()?.tuple.dst;
        match self.underlay_mac(dst) {
            Some(mac) => {
                let mut src = [0u8; 6];
                src.copy_from_slice(&f[6..12]);
                frame::set_macs(&mut f, mac, src);
                Some(f)
            }
            None => {
                tr.dropped(
                    &format!("underlay at {at}"),
                    format!("no underlay route to {dst}: no device of the topology owns it"),
                );
                None
            }
        }
    }

    /// Hands one frame to the SDN gateway: from the underlay (`from_client: None`) or from the
    /// external client of that name; returns what it emitted.
    ///
    /// # Errors
    /// Unknown external client.
    pub fn gateway_rx(
        &mut self,
        from_client: Option<&str>,
        frame: Vec<u8>,
        trace: bool,
    ) -> Result<Rx, DataplaneError> {
        let mut tr = Tracer {
            trace,
            ..Tracer::default()
        };
        let mut rx = Rx::default();
        match from_client {
            Some(name) => {
                if !self
                    .topology
                    .external_clients
                    .iter()
                    .any(|c| c.name == name)
                {
                    return Err(DataplaneError::Unknown(format!("external client {name}")));
                }
                let mut out = Vec::new();
                if let Some(answer) = self.gateway_from_client(frame, &mut tr, &mut out) {
                    rx.egress.push(Egress {
                        place: Place::Client(name.to_owned()),
                        frame: answer,
                    });
                }
                for o in out {
                    if let Out::Fabric { frame } = o
                        && let Some(f) = self.to_underlay(frame, &mut tr, "gateway")
                    {
                        rx.egress.push(Egress {
                            place: Place::Fabric,
                            frame: f,
                        });
                    }
                }
            }
            None => {
                let mut q = VecDeque::new();
                self.gateway_from_fabric(frame, &mut tr, &mut q);
                for ev in q {
                    if let Ev::ExternalRx(c, frame) = ev {
                        rx.egress.push(Egress {
                            place: Place::Client(self.topology.external_clients[c].name.clone()),
                            frame,
                        });
                    }
                }
            }
        }
        rx.hops = tr.hops;
        rx.dropped = tr.drop;
        rx.inconclusive = tr.inconclusive;
        Ok(rx)
    }
}
