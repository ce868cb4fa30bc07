//! kube-proxy's node-port rules on each node's own IP stack (the part of kube-proxy the
//! Contrail blueprint keeps: ClusterIPs are the vrouter's ECMP load balancers, node ports are
//! kube-proxy's). The rules are installed by the node agent's kube-proxy
//! ([`crate::node::NodeAgent`]), which reads Services and EndpointSlices from the Kubernetes
//! API like the real one; here they act on the packets that reach a node's IP stack, as the
//! iptables `KUBE-NODEPORTS` / `KUBE-EXTERNAL-SERVICES` chains do:
//!
//! - a new connection to a node port is DNATed to a ready endpoint of the service chosen by a
//!   hash of its 5-tuple; with `externalTrafficPolicy: Cluster` (the default) the source is
//!   masqueraded to the node address (`KUBE-MARK-MASQ`), with `Local` it is kept and only the
//!   endpoints on this node are candidates;
//! - a service port without any ready endpoint is rejected (`REJECT`: ICMP port unreachable,
//!   iptables' default, for every protocol); with `Local` and endpoints only on other nodes
//!   the packet is dropped (`"has no local endpoints" -j DROP`);
//! - conntrack reverses both translations on the answers.
//!
//! The translated packet leaves through vhost0 into the vrouter, so the Contrail gates and
//! NetworkPolicy apply at the backend to the translated packet (the node address, or the
//! client's for `Local`).

use std::collections::{HashMap, VecDeque};
use std::net::Ipv4Addr;

use harness_scenario::Protocol;

use crate::config::model::fnv;
use crate::trace::{Hop, Tracer};
use crate::wire::frame::{
    self, Addrs, ETH_HEADER_LEN, IcmpError, Ipv4Summary, Mac, Transport, Tuple,
};

/// Connections a node's conntrack keeps before the oldest age out.
const CONNTRACK_CAPACITY: usize = 65_536;

/// A ready endpoint of a service port, as an EndpointSlice lists it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ServiceEndpoint {
    /// The endpoint's address (the pod IP).
    pub address: Ipv4Addr,
    /// The port on the endpoint (the resolved targetPort).
    pub port: u16,
    /// The node the endpoint runs on (`nodeName`).
    pub node: Option<String>,
}

/// One node port of a service port, with the ready endpoints behind it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodePortRule {
    /// `namespace/name` of the service (for traces).
    pub service: String,
    /// The service port's protocol.
    pub protocol: Protocol,
    /// `spec.ports[].nodePort`.
    pub node_port: u16,
    /// `externalTrafficPolicy: Local`: keep the client address, local endpoints only.
    pub local: bool,
    /// Ready endpoints of the service port, on every node.
    pub endpoints: Vec<ServiceEndpoint>,
}

/// What kube-proxy did with a packet that reached a node's IP stack.
pub(crate) enum Verdict {
    /// Not a node-port packet, or an answer translated back for the node itself: the node's
    /// IP stack takes it.
    Pass(Vec<u8>),
    /// Translated (a new or known connection, or an answer for a remote client): the node
    /// sends it out through vhost0.
    Send(Vec<u8>),
    /// Dropped (the reason is in the trace).
    Dropped,
}

/// kube-proxy's state on one node: the rules the node agent installed and conntrack.
#[derive(Debug, Clone, Default)]
pub(crate) struct NodeProxy {
    rules: HashMap<(u8, u16), NodePortRule>,
    /// Connection → the rewrite its packets get (both directions of each connection).
    conntrack: HashMap<Tuple, Tuple>,
    order: VecDeque<Tuple>,
}

impl NodeProxy {
    /// Replaces the rules (conntrack keeps established connections, as the kernel does).
    pub(crate) fn set_rules(&mut self, rules: Vec<NodePortRule>) {
        self.rules = rules
            .into_iter()
            .map(|r| ((r.protocol.ip_number(), r.node_port), r))
            .collect();
    }

    /// The rules, sorted by protocol and port.
    pub(crate) fn rules(&self) -> Vec<&NodePortRule> {
        let mut v: Vec<&NodePortRule> = self.rules.values().collect();
        v.sort_by_key(|r| (r.protocol.ip_number(), r.node_port));
        v
    }

    fn track(&mut self, key: Tuple, rewrite: Tuple) {
        while self.conntrack.len() >= CONNTRACK_CAPACITY {
            match self.order.pop_front() {
                Some(old) => {
                    self.conntrack.remove(&old);
                }
                None => break,
            }
        }
        if self.conntrack.insert(key, rewrite).is_none() {
            self.order.push_back(key);
        }
    }

    /// Runs a packet that reached node `name` (vhost `vhost`, MAC `mac`) through kube-proxy.
    pub(crate) fn input(
        &mut self,
        name: &str,
        vhost: Ipv4Addr,
        mac: Mac,
        mut f: Vec<u8>,
        tr: &mut Tracer,
    ) -> Verdict {
        let Ok(mut s) = frame::parse_ipv4(&f, ETH_HEADER_LEN) else {
            return Verdict::Pass(f);
        };
        let at = format!("kube-proxy on {name}");
        let hop = |tr: &Tracer, s: &Ipv4Summary| {
            tr.trace.then(|| Hop {
                at: at.clone(),
                node: Some(name.to_owned()),
                packet: s.tuple.to_string(),
                ..Hop::default()
            })
        };
        // conntrack first: answers and later packets of known connections.
        let key = match &s.transport {
            Transport::IcmpError { quoted, .. } => quoted.map(|q| q.reversed()),
            _ => Some(s.tuple),
        };
        if let Some(rewrite) = key.and_then(|k| self.conntrack.get(&k)).copied() {
            let mut h = hop(tr, &s);
            if let Some(h) = &mut h {
                h.nat = Some(format!("conntrack: {} -> {rewrite}", s.tuple));
            }
            if matches!(s.transport, Transport::IcmpError { .. }) {
                let outer = Tuple {
                    src: rewrite.src,
                    dst: rewrite.dst,
                    proto: s.tuple.proto,
                    sport: 0,
                    dport: 0,
                };
                frame::rewrite(&mut f, &mut s, outer);
                frame::rewrite_quoted_tuple(&mut f, &mut s, rewrite.reversed());
            } else {
                let proto = s.tuple.proto;
                frame::rewrite(&mut f, &mut s, Tuple { proto, ..rewrite });
            }
            let local = rewrite.dst == vhost;
            if let Some(mut h) = h {
                h.next_hop = Some(if local {
                    "the node's own IP stack".into()
                } else {
                    "out through vhost0".into()
                });
                tr.hops.push(h);
            }
            return if local {
                Verdict::Pass(f)
            } else {
                Verdict::Send(f)
            };
        }
        let t = s.tuple;
        let new_connection = match &s.transport {
            Transport::Tcp { flags, .. } => flags.syn && !flags.ack,
            Transport::Udp | Transport::Sctp { .. } => true,
            _ => false,
        };
        if t.dst != vhost || !new_connection {
            return Verdict::Pass(f);
        }
        let Some(rule) = self.rules.get(&(t.proto, t.dport)) else {
            return Verdict::Pass(f);
        };
        let what = format!(
            "node port {}/{} of {}",
            rule.protocol, rule.node_port, rule.service
        );
        let candidates: Vec<&ServiceEndpoint> = if rule.local {
            rule.endpoints
                .iter()
                .filter(|e| e.node.as_deref() == Some(name))
                .collect()
        } else {
            rule.endpoints.iter().collect()
        };
        if candidates.is_empty() {
            if rule.endpoints.is_empty() {
                // KUBE-EXTERNAL-SERVICES: "<svc> has no endpoints" -j REJECT.
                let answer = frame::icmp_error(
                    &Addrs {
                        src_mac: mac,
                        dst_mac: frame::parse(&f).map(|x| x.src_mac).unwrap_or([0; 6]),
                        src: vhost,
                        dst: t.src,
                        ttl: 64,
                    },
                    IcmpError::Unreachable(3),
                    s.ip_packet(&f),
                );
                if let Some(mut h) = hop(tr, &s) {
                    h.note = Some(format!(
                        "rejected: {what} has no ready endpoint (REJECT: ICMP port unreachable)"
                    ));
                    tr.hops.push(h);
                }
                return if t.src == vhost {
                    Verdict::Pass(answer)
                } else {
                    Verdict::Send(answer)
                };
            }
            // externalTrafficPolicy: Local with endpoints only elsewhere: "has no local
            // endpoints" -j DROP.
            tr.dropped(
                &at,
                format!(
                    "{what} has externalTrafficPolicy Local and no ready endpoint on {name} (kube-proxy drops: \"has no local endpoints\")"
                ),
            );
            return Verdict::Dropped;
        }
        let mut b = [0u8; 13];
        b[0..4].copy_from_slice(&t.src.octets());
        b[4..8].copy_from_slice(&t.dst.octets());
        b[8] = t.proto;
        b[9..11].copy_from_slice(&t.sport.to_be_bytes());
        b[11..13].copy_from_slice(&t.dport.to_be_bytes());
        let k = (fnv(&b) % candidates.len() as u64) as usize;
        let ep = candidates[k].clone();
        let n = candidates.len();
        let local = rule.local;
        // Masquerade keeps the source port unless another connection already uses it.
        let (src, mut sport) = if local {
            (t.src, t.sport)
        } else {
            (vhost, t.sport)
        };
        if !local {
            let mut tries = 0u32;
            while self.conntrack.contains_key(&Tuple {
                src: ep.address,
                dst: src,
                proto: t.proto,
                sport: ep.port,
                dport: sport,
            }) && tries < 28_000
            {
                sport = if sport >= 60999 { 32768 } else { sport + 1 };
                tries += 1;
            }
        }
        let out = Tuple {
            src,
            dst: ep.address,
            proto: t.proto,
            sport,
            dport: ep.port,
        };
        self.track(t, out);
        self.track(out.reversed(), t.reversed());
        frame::rewrite(&mut f, &mut s, out);
        if let Some(mut h) = hop(tr, &s) {
            h.packet = t.to_string();
            h.nat = Some(format!(
                "{what}: endpoint {}/{n}, DNAT {}:{} -> {}:{}{}",
                k + 1,
                t.dst,
                t.dport,
                ep.address,
                ep.port,
                if local {
                    " (externalTrafficPolicy Local: client address kept)".to_owned()
                } else {
                    format!(
                        "; SNAT {}:{} -> {}:{} (masquerade to the node)",
                        t.src, t.sport, src, sport
                    )
                }
            ));
            h.next_hop = Some("out through vhost0".into());
            tr.hops.push(h);
        }
        Verdict::Send(f)
    }
}

/// kube-proxy state of every node, by node name (kept across recompiles of the vrouters:
/// it lives in the node's kernel, not in the vrouter).
pub(crate) type KubeProxies = HashMap<String, NodeProxy>;
