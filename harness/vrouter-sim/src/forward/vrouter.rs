//! One compute node's vrouter: proxy ARP, the flow table, route lookup, the policy gates,
//! NAT, TTL, ICMP errors, encapsulation and decapsulation, fabric forwarding and SNAT. It
//! takes frames from its interfaces (taps), from the underlay and from its node's own IP stack,
//! and emits frames to those places (`Out`); the dataplane moves frames between places.

use std::net::Ipv4Addr;
use std::sync::Arc;

use harness_scenario::Encapsulation;

use crate::config::{PolicyAction, ServiceSide, model::fnv};
use crate::forward::control::{
    Control, GATEWAY_LABEL, ItfId, NextHop, NodeId, Route, RouteSource, VHOST_LABEL, VROUTER_MAC,
    VrfId,
};
use crate::forward::flow::{FlowAction, FlowEntry, FlowKey, FlowTable, VHOST_ITF};
use crate::forward::policy::{Decision, Gate, Peer};
use crate::trace::{Hop, HopDecision, Tracer};
use crate::wire::encap::{self, Outer};
use crate::wire::frame::{
    self, Addrs, IcmpError, Ipv4Summary, PROTO_ICMP, PROTO_UDP, Payload, Transport, Tuple,
};

/// Where a frame goes next.
#[derive(Debug)]
pub(crate) enum Out {
    /// To the endpoint behind interface `itf`.
    Tap { itf: ItfId, frame: Vec<u8> },
    /// Onto the underlay (outer destination decides where).
    Fabric { frame: Vec<u8> },
    /// To the node's own IP stack.
    Host { node: NodeId, frame: Vec<u8> },
}

/// A vrouter's own state (the shared control plane is separate).
#[derive(Debug, Clone)]
pub struct Vrouter {
    /// Its node.
    pub node: NodeId,
    /// Restarting: every packet through it makes the probe inconclusive.
    pub restarting: bool,
    /// Flows.
    pub flows: FlowTable,
    at: String,
    snat_next: [u32; 3],
    scratch: Vec<Decision>,
    /// The packet being handled came from the node's own IP stack (vhost0).
    from_host: bool,
}

fn flow_hash(t: &Tuple) -> u64 {
    let mut b = [0u8; 13];
    b[0..4].copy_from_slice(&t.src.octets());
    b[4..8].copy_from_slice(&t.dst.octets());
    b[8] = t.proto;
    b[9..11].copy_from_slice(&t.sport.to_be_bytes());
    b[11..13].copy_from_slice(&t.dport.to_be_bytes());
    fnv(&b)
}

fn apply_nat(frame: &mut [u8], s: &mut Ipv4Summary, nat: Tuple) {
    if matches!(s.transport, Transport::IcmpError { .. }) {
        let outer = Tuple {
            src: nat.src,
            dst: nat.dst,
            proto: s.tuple.proto,
            sport: 0,
            dport: 0,
        };
        frame::rewrite(frame, s, outer);
        frame::rewrite_quoted_tuple(frame, s, nat.reversed());
    } else {
        let t = Tuple {
            proto: s.tuple.proto,
            ..nat
        };
        frame::rewrite(frame, s, t);
    }
}

/// The tuple a packet's flow is keyed by: its own, or for an ICMP error the answer direction
/// of the packet it quotes.
fn key_tuple(s: &Ipv4Summary) -> Option<Tuple> {
    match &s.transport {
        Transport::IcmpError { quoted, .. } => quoted.map(|q| q.reversed()),
        _ => Some(s.tuple),
    }
}

fn describe_route(ctl: &Control, r: &Route) -> String {
    let src = match &r.source {
        RouteSource::Local => "local".to_owned(),
        RouteSource::Leaked { from, policy } => {
            format!("leaked from {} by {policy}", ctl.model.networks[*from].fq)
        }
        RouteSource::Gateway => "gateway address".to_owned(),
        RouteSource::FloatingIp => "floating IP".to_owned(),
        RouteSource::Fabric => "ip-fabric".to_owned(),
        RouteSource::Chain { policy } => format!("service chain of {policy}"),
        RouteSource::SdnGateway => "SDN gateway".to_owned(),
    };
    format!("{} ({src})", r.prefix)
}

/// The answer to a packet for a load-balancer VIP without members (a [`NextHop::Reject`]
/// route): ICMP port unreachable from the VIP, for the ports the VIP maps (kube-proxy's
/// REJECT of a service without endpoints); a VIP forwards only its service ports, so ICMP
/// and unmapped ports are dropped, as they are when it has members. `macs` = (source,
/// destination) of the answer's Ethernet header.
pub(crate) fn vip_reject(
    ctl: &Control,
    fip: usize,
    s: &Ipv4Summary,
    frame: &[u8],
    macs: (frame::Mac, frame::Mac),
) -> Result<Vec<u8>, String> {
    let f = &ctl.model.floating_ips[fip];
    let t = s.tuple;
    if !matches!(
        s.transport,
        Transport::Tcp { .. } | Transport::Udp | Transport::Sctp { .. }
    ) {
        return Err(format!(
            "load balancer VIP {} ({}) forwards only its service ports: {} is dropped",
            t.dst,
            f.fq,
            if t.proto == PROTO_ICMP {
                "ICMP".to_owned()
            } else {
                format!("protocol {}", t.proto)
            }
        ));
    }
    if f.port_mappings_enable
        && !f
            .port_mappings
            .iter()
            .any(|m| m.proto == t.proto && m.src_port == t.dport)
    {
        return Err(format!(
            "no port mapping for protocol {} port {} on floating IP {} ({})",
            t.proto, t.dport, f.address, f.fq
        ));
    }
    Ok(frame::icmp_error(
        &Addrs {
            src_mac: macs.0,
            dst_mac: macs.1,
            src: t.dst,
            dst: t.src,
            ttl: 64,
        },
        IcmpError::Unreachable(3),
        s.ip_packet(frame),
    ))
}

impl Vrouter {
    /// The vrouter of node `node` (named `name`), with a flow table of `capacity` entries.
    pub fn new(node: NodeId, name: &str, capacity: usize) -> Self {
        Vrouter {
            node,
            restarting: false,
            flows: FlowTable::new(capacity),
            at: format!("vrouter {name}"),
            snat_next: [0; 3],
            scratch: Vec::with_capacity(4),
            from_host: false,
        }
    }

    fn hop(&self, ctl: &Control, s: &Ipv4Summary, tr: &Tracer) -> Option<Hop> {
        tr.trace.then(|| Hop {
            at: self.at.clone(),
            node: Some(ctl.nodes[self.node].name.clone()),
            packet: s.tuple.to_string(),
            ..Hop::default()
        })
    }

    fn restarting(&self, ctl: &Control, tr: &mut Tracer) -> bool {
        if self.restarting {
            tr.inconclusive = Some(format!(
                "the vrouter on {} is restarting: its flows are gone and it is rebuilding from the VNC API",
                ctl.nodes[self.node].name
            ));
            tr.dropped(&self.at, "vrouter restarting".into());
        }
        self.restarting
    }

    /// Install a drop flow for a new session a policy gate denied (so the rest of the session
    /// is dropped without re-evaluating), note it on the hop and drop the packet.
    fn deny_new_flow(
        &mut self,
        itf: u32,
        inbound: bool,
        tuple: Tuple,
        decided: Arc<[Decision]>,
        tr: &mut Tracer,
        mut hop: Option<Hop>,
    ) {
        let rule = decided.last().map(|d| d.to_string()).unwrap_or_default();
        self.flows.insert(
            FlowKey {
                itf,
                inbound,
                tuple,
            },
            FlowEntry {
                action: FlowAction::Drop {
                    reason: Arc::from(rule.as_str()),
                },
                reverse: false,
                decided,
            },
        );
        if let Some(h) = &mut hop {
            h.flow = Some("new flow: deny".into());
        }
        self.drop_with(tr, hop, rule);
    }

    fn drop_with(&self, tr: &mut Tracer, hop: Option<Hop>, reason: String) {
        if let Some(mut h) = hop {
            h.note = Some(format!("dropped: {reason}"));
            tr.hops.push(h);
        }
        tr.drop = Some((self.at.clone(), reason));
    }

    /// A frame from interface `i`'s endpoint.
    pub(crate) fn receive_from_tap(
        &mut self,
        ctl: &Control,
        i: ItfId,
        mut frame: Vec<u8>,
        tr: &mut Tracer,
        out: &mut Vec<Out>,
    ) {
        if self.restarting(ctl, tr) {
            return;
        }
        let summary = match frame::parse(&frame) {
            Ok(s) => s,
            Err(e) => {
                tr.dropped(
                    &self.at,
                    format!("malformed frame from {}: {e}", ctl.itf_name(i)),
                );
                return;
            }
        };
        match summary.payload {
            Payload::Arp(a) => {
                let itf = &ctl.model.interfaces[i];
                let target = a.target_ipv4_addr();
                if a.operation == etherparse::ArpOperation::REQUEST && !itf.ips.contains(&target) {
                    let reply = frame::arp(
                        VROUTER_MAC,
                        a.sender_mac,
                        true,
                        (VROUTER_MAC, target),
                        (a.sender_mac, a.sender_ipv4_addr()),
                    );
                    if tr.trace {
                        tr.hops.push(Hop {
                            at: self.at.clone(),
                            node: Some(ctl.nodes[self.node].name.clone()),
                            packet: format!("ARP who-has {target}"),
                            note: Some(
                                "proxy ARP: answered with the vrouter MAC 00:00:5e:00:01:00".into(),
                            ),
                            ..Hop::default()
                        });
                    }
                    out.push(Out::Tap {
                        itf: i,
                        frame: reply,
                    });
                }
            }
            Payload::Other(et) => {
                tr.dropped(
                    &self.at,
                    format!("EtherType {et:#06x} is not forwarded in an l3 network"),
                );
            }
            Payload::Ipv4(mut s) => self.egress(ctl, i, &mut frame, &mut s, tr, out),
        }
    }

    fn egress(
        &mut self,
        ctl: &Control,
        i: ItfId,
        frame: &mut Vec<u8>,
        s: &mut Ipv4Summary,
        tr: &mut Tracer,
        out: &mut Vec<Out>,
    ) {
        let itf = &ctl.model.interfaces[i];
        let net = &ctl.model.networks[itf.network];
        let mut hop = self.hop(ctl, s, tr);
        if net.gateways.contains(&s.tuple.dst) {
            self.gateway_service(ctl, i, frame, s, tr, out, hop);
            return;
        }
        if s.ttl <= 1 {
            let gw = net
                .gateways
                .first()
                .copied()
                .unwrap_or(ctl.nodes[self.node].vhost);
            let err = frame::icmp_error(
                &Addrs {
                    src_mac: VROUTER_MAC,
                    dst_mac: itf.mac,
                    src: gw,
                    dst: s.tuple.src,
                    ttl: 64,
                },
                IcmpError::TimeExceeded,
                s.ip_packet(frame),
            );
            out.push(Out::Tap { itf: i, frame: err });
            self.drop_with(tr, hop, "TTL exceeded; ICMP time exceeded sent".into());
            return;
        }
        let Some(kt) = key_tuple(s) else {
            self.drop_with(tr, hop, "ICMP error quoting an unreadable packet".into());
            return;
        };
        let key = FlowKey {
            itf: i as u32,
            inbound: false,
            tuple: kt,
        };
        if let Some(e) = self.flows.get(&key) {
            let reverse = e.reverse;
            match e.action.clone() {
                FlowAction::Egress { vrf, nat, member } => {
                    if let Some(h) = &mut hop {
                        h.flow = Some(format!(
                            "existing flow{}: pass",
                            if reverse { " (reverse)" } else { "" }
                        ));
                    }
                    if let Some(n) = nat {
                        if let Some(h) = &mut hop {
                            h.nat = Some(format!("{} -> {}", s.tuple, n));
                        }
                        apply_nat(frame, s, n);
                    }
                    frame::decrement_ttl(frame, s);
                    self.route_and_send(ctl, vrf, frame, s, member, tr, out, hop);
                }
                FlowAction::ToHost { nat } => {
                    if let Some(n) = nat {
                        if let Some(h) = &mut hop {
                            h.nat = Some(format!("{} -> {}", s.tuple, n));
                        }
                        apply_nat(frame, s, n);
                    }
                    if let Some(mut h) = hop {
                        h.flow = Some("existing flow (reverse): pass".into());
                        h.next_hop =
                            Some("receive: the node's own IP stack (the session's origin)".into());
                        tr.hops.push(h);
                    }
                    let node = &ctl.nodes[self.node];
                    frame::set_macs(frame, node.mac, VROUTER_MAC);
                    out.push(Out::Host {
                        node: self.node,
                        frame: std::mem::take(frame),
                    });
                }
                FlowAction::Drop { reason } => {
                    if let Some(h) = &mut hop {
                        h.flow = Some("existing flow: deny".into());
                    }
                    self.drop_with(tr, hop, reason.to_string());
                }
                other => self.drop_with(tr, hop, format!("flow action {other:?} on egress")),
            }
            return;
        }
        if matches!(s.transport, Transport::IcmpError { .. }) {
            self.drop_with(tr, hop, "ICMP error without a flow".into());
            return;
        }
        self.new_egress(ctl, i, frame, s, tr, out, hop);
    }

    #[allow(clippy::too_many_arguments)]
    fn gateway_service(
        &self,
        ctl: &Control,
        i: ItfId,
        frame: &[u8],
        s: &Ipv4Summary,
        tr: &mut Tracer,
        out: &mut Vec<Out>,
        hop: Option<Hop>,
    ) {
        let itf = &ctl.model.interfaces[i];
        let t = s.tuple;
        let back = Addrs {
            src_mac: VROUTER_MAC,
            dst_mac: itf.mac,
            src: t.dst,
            dst: t.src,
            ttl: 64,
        };
        let reply = match &s.transport {
            Transport::IcmpEcho { reply: false, seq } => Some((
                frame::icmp_echo(&back, true, t.sport, *seq, s.payload(frame)),
                "gateway ICMP: answered by the vrouter (always allowed)",
            )),
            Transport::Udp if t.dport == 53 => {
                let q = s.payload(frame);
                let mut dns = [0u8; 12];
                if q.len() >= 2 {
                    dns[0..2].copy_from_slice(&q[0..2]);
                }
                dns[2] = 0x81;
                dns[3] = 0x82; // response, recursion desired/available, SERVFAIL: no records
                Some((
                    frame::udp(&back, 53, t.sport, &dns),
                    "gateway DNS: answered by the vrouter (always allowed)",
                ))
            }
            _ => None,
        };
        match reply {
            Some((f, why)) => {
                if let Some(mut h) = hop {
                    h.route = Some(format!("{}/32 (gateway address)", t.dst));
                    h.next_hop = Some("receive (vrouter)".into());
                    h.decided_by.push(HopDecision {
                        gate: Gate::Gateway.as_str().into(),
                        rule: why.into(),
                        action: "pass".into(),
                    });
                    tr.hops.push(h);
                }
                out.push(Out::Tap { itf: i, frame: f });
            }
            None => self.drop_with(
                tr,
                hop,
                format!(
                    "the vrouter serves only ICMP and DNS at the gateway {}",
                    t.dst
                ),
            ),
        }
    }

    fn peer_of_itf<'c>(ctl: &'c Control, j: ItfId, ip: Ipv4Addr) -> Peer<'c> {
        let itf = &ctl.model.interfaces[j];
        Peer {
            ip,
            net: Some(itf.network),
            itf: Some(j),
            tags: Some(&itf.tags),
        }
    }

    /// Who an address is, seen from `vrf`: a workload, an ip-fabric address, or outside.
    fn peer_of_addr(ctl: &Control, ip: Ipv4Addr, vrf: VrfId) -> Peer<'_> {
        if let Some(j) = ctl.addr_owner.get(&ip) {
            return Self::peer_of_itf(ctl, *j, ip);
        }
        let net = match ctl.vrfs[vrf].lookup(ip) {
            Some(r) => match r.nh {
                NextHop::Underlay(_) | NextHop::FabricDefault | NextHop::FabricSnat => {
                    ctl.ip_fabric
                }
                NextHop::Gateway => None,
                _ => r.origin,
            },
            None => {
                if ctl.node_by_vhost.contains_key(&ip) {
                    ctl.ip_fabric
                } else {
                    None
                }
            }
        };
        Peer {
            ip,
            net,
            itf: None,
            tags: None,
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn new_egress(
        &mut self,
        ctl: &Control,
        i: ItfId,
        frame: &mut Vec<u8>,
        s: &mut Ipv4Summary,
        tr: &mut Tracer,
        out: &mut Vec<Out>,
        mut hop: Option<Hop>,
    ) {
        let itf = &ctl.model.interfaces[i];
        let net_id = itf.network;
        let vrf_id = ctl.itf_vrf[i];
        let vrf = &ctl.vrfs[vrf_id];
        let t = s.tuple;
        let Some(route) = vrf.lookup(t.dst) else {
            let reason = format!("no route to {} in VRF {}", t.dst, vrf.name);
            self.drop_with(tr, hop, reason);
            return;
        };
        if let NextHop::Reject { fip } = route.nh {
            match vip_reject(ctl, fip, s, frame, (VROUTER_MAC, itf.mac)) {
                Ok(answer) => {
                    if let Some(mut h) = hop {
                        h.vrf = Some(vrf.name.clone());
                        h.route = Some(describe_route(ctl, route));
                        h.note = Some(format!(
                            "rejected: load balancer VIP {} ({}) has no member; ICMP port unreachable sent",
                            t.dst, ctl.model.floating_ips[fip].fq
                        ));
                        tr.hops.push(h);
                    }
                    out.push(Out::Tap {
                        itf: i,
                        frame: answer,
                    });
                }
                Err(reason) => self.drop_with(tr, hop, reason),
            }
            return;
        }
        let hash = flow_hash(&t);
        let mut member = None;
        let mut eff = t;
        let mut snat = false;
        let dst_peer: Peer = match &route.nh {
            NextHop::Interface(j) => Self::peer_of_itf(ctl, *j, t.dst),
            NextHop::Ecmp { fip, members } => {
                let k = (hash % members.len() as u64) as usize;
                let j = members[k];
                let f = &ctl.model.floating_ips[*fip];
                let dport = if f.port_mappings_enable && t.proto != PROTO_ICMP {
                    match f
                        .port_mappings
                        .iter()
                        .find(|m| m.proto == t.proto && m.src_port == t.dport)
                    {
                        Some(m) => m.dst_port,
                        None => {
                            let reason = format!(
                                "no port mapping for protocol {} port {} on floating IP {} ({})",
                                t.proto, t.dport, f.address, f.fq
                            );
                            self.drop_with(tr, hop, reason);
                            return;
                        }
                    }
                } else {
                    t.dport
                };
                let Some(ip) = ctl.model.interfaces[j].ips.first().copied() else {
                    self.drop_with(
                        tr,
                        hop,
                        format!("ECMP member {} has no address", ctl.itf_name(j)),
                    );
                    return;
                };
                eff = Tuple {
                    dst: ip,
                    dport,
                    ..t
                };
                member = Some(j);
                if let Some(h) = &mut hop {
                    h.nat = Some(format!(
                        "ECMP member {}/{} ({}); DNAT {}:{} -> {}:{} at its vrouter",
                        k + 1,
                        members.len(),
                        ctl.itf_name(j),
                        t.dst,
                        t.dport,
                        ip,
                        dport
                    ));
                }
                Self::peer_of_itf(ctl, j, ip)
            }
            NextHop::Service { .. } => Self::peer_of_addr(ctl, t.dst, net_id),
            NextHop::Underlay(_) | NextHop::FabricDefault | NextHop::FabricSnat => {
                snat = ctl.model.networks[net_id].fabric_snat;
                Peer {
                    ip: t.dst,
                    net: ctl.ip_fabric,
                    itf: None,
                    tags: None,
                }
            }
            NextHop::Gateway => Peer {
                ip: t.dst,
                net: None,
                itf: None,
                tags: None,
            },
            NextHop::Receive => {
                self.drop_with(tr, hop, format!("{} is owned by the vrouter", t.dst));
                return;
            }
            NextHop::Reject { .. } => return, // answered above
        };
        // The gates, in the agent's order; service-instance ports are transit and not policed.
        let mut decisions: Vec<Decision> = std::mem::take(&mut self.scratch);
        let mut denied = false;
        if itf.service.is_none() {
            let src_peer = Peer {
                ip: t.src,
                net: Some(net_id),
                itf: Some(i),
                tags: Some(&itf.tags),
            };
            let acl_dst = Peer {
                net: route.origin.or(dst_peer.net),
                ..dst_peer
            };
            let d = ctl.acls[net_id].evaluate(&ctl.model, &src_peer, &acl_dst, &eff);
            denied = d.action == PolicyAction::Deny;
            decisions.push(d);
            if !denied
                && let Some(d) = ctl
                    .security_groups
                    .evaluate(&ctl.model, i, true, &dst_peer, &eff)
            {
                denied = d.action == PolicyAction::Deny;
                decisions.push(d);
            }
            if !denied && let Some(d) = ctl.firewall.evaluate(i, &src_peer, &dst_peer, &eff) {
                denied = d.action == PolicyAction::Deny;
                decisions.push(d);
            }
        }
        if let Some(h) = &mut hop {
            h.vrf = Some(vrf.name.clone());
            h.route = Some(describe_route(ctl, route));
            h.decided_by = decisions.iter().map(HopDecision::from).collect();
        }
        let decided: Arc<[Decision]> = Arc::from(&decisions[..]);
        decisions.clear();
        self.scratch = decisions;
        if denied {
            self.deny_new_flow(i as u32, false, t, decided, tr, hop);
            return;
        }
        let snat_tuple = if snat {
            match self.snat_port(ctl, t.proto, t.sport) {
                Some(port) => Some(Tuple {
                    src: ctl.nodes[self.node].vhost,
                    sport: port,
                    ..t
                }),
                None => {
                    let reason = format!(
                        "fabric SNAT: no port translation pool for protocol {}",
                        t.proto
                    );
                    self.drop_with(tr, hop, reason);
                    return;
                }
            }
        } else {
            None
        };
        self.flows.insert(
            FlowKey {
                itf: i as u32,
                inbound: false,
                tuple: t,
            },
            FlowEntry {
                action: FlowAction::Egress {
                    vrf: vrf_id,
                    nat: snat_tuple,
                    member,
                },
                reverse: false,
                decided: Arc::clone(&decided),
            },
        );
        match snat_tuple {
            Some(st) => self.flows.insert(
                FlowKey {
                    itf: VHOST_ITF,
                    inbound: true,
                    tuple: st.reversed(),
                },
                FlowEntry {
                    action: FlowAction::SnatReturn {
                        itf: i,
                        nat: t.reversed(),
                    },
                    reverse: true,
                    decided,
                },
            ),
            None => self.flows.insert(
                FlowKey {
                    itf: i as u32,
                    inbound: true,
                    tuple: t.reversed(),
                },
                FlowEntry {
                    action: FlowAction::Ingress { nat: None },
                    reverse: true,
                    decided,
                },
            ),
        }
        if let Some(h) = &mut hop {
            h.flow = Some("new flow: pass".into());
        }
        if let Some(st) = snat_tuple {
            if let Some(h) = &mut hop {
                h.nat = Some(format!(
                    "fabric SNAT {}:{} -> {}:{}",
                    t.src, t.sport, st.src, st.sport
                ));
            }
            frame::rewrite(frame, s, st);
        }
        frame::decrement_ttl(frame, s);
        self.route_and_send(ctl, vrf_id, frame, s, member, tr, out, hop);
    }

    fn snat_port(&mut self, ctl: &Control, proto: u8, sport: u16) -> Option<u16> {
        if proto == PROTO_ICMP {
            return Some(sport);
        }
        let pool = ctl.model.port_pools.iter().find(|p| p.proto == proto)?;
        let slot = match proto {
            6 => 0,
            PROTO_UDP => 1,
            _ => 2,
        };
        let size = u32::from(pool.end - pool.start) + 1;
        let port = pool.start + (self.snat_next[slot] % size) as u16;
        self.snat_next[slot] = self.snat_next[slot].wrapping_add(1);
        Some(port)
    }

    #[allow(clippy::too_many_arguments)]
    fn route_and_send(
        &mut self,
        ctl: &Control,
        vrf_id: VrfId,
        frame: &mut Vec<u8>,
        s: &mut Ipv4Summary,
        member: Option<ItfId>,
        tr: &mut Tracer,
        out: &mut Vec<Out>,
        mut hop: Option<Hop>,
    ) {
        let vrf = &ctl.vrfs[vrf_id];
        let dst = s.tuple.dst;
        let Some(route) = vrf.lookup(dst) else {
            let reason = format!("no route to {dst} in VRF {}", vrf.name);
            self.drop_with(tr, hop, reason);
            return;
        };
        if let Some(h) = &mut hop {
            h.vrf = Some(vrf.name.clone());
            h.route = Some(describe_route(ctl, route));
        }
        let hash = flow_hash(&s.tuple);
        let vrf_net = vrf.net.map(|n| &ctl.model.networks[n]);
        match &route.nh {
            NextHop::Interface(j) => {
                self.send_to_itf(ctl, *j, route, vrf_id, frame, s, tr, out, hop)
            }
            NextHop::Ecmp { members, .. } => {
                let j = member
                    .filter(|m| members.contains(m))
                    .unwrap_or(members[(hash % members.len() as u64) as usize]);
                self.send_to_itf(ctl, j, route, vrf_id, frame, s, tr, out, hop);
            }
            NextHop::Service { si, side } => {
                let ports = ctl
                    .service_ports
                    .get(si)
                    .map(|(l, r)| if *side == ServiceSide::Left { l } else { r });
                match ports.filter(|p| !p.is_empty()) {
                    Some(p) => {
                        let j = p[(hash % p.len() as u64) as usize];
                        if let Some(h) = &mut hop {
                            h.note = Some(format!(
                                "steered into service instance {si} ({} interface)",
                                if *side == ServiceSide::Left {
                                    "left"
                                } else {
                                    "right"
                                }
                            ));
                        }
                        self.send_to_itf(ctl, j, route, vrf_id, frame, s, tr, out, hop);
                    }
                    None => {
                        self.drop_with(tr, hop, format!("service instance {si} has no interface"))
                    }
                }
            }
            NextHop::Underlay(addr) => {
                if vrf_net.is_some_and(|n| n.fabric_forwarding || n.fabric_snat) {
                    self.plain(ctl, frame, tr, out, hop, "ip-fabric");
                } else {
                    self.tunnel(ctl, *addr, VHOST_LABEL, None, frame, s, tr, out, hop);
                }
            }
            NextHop::FabricDefault => self.plain(ctl, frame, tr, out, hop, "ip-fabric forwarding"),
            NextHop::FabricSnat => self.plain(ctl, frame, tr, out, hop, "fabric SNAT"),
            NextHop::Gateway => {
                self.tunnel(
                    ctl,
                    ctl.gateway,
                    GATEWAY_LABEL,
                    None,
                    frame,
                    s,
                    tr,
                    out,
                    hop,
                );
            }
            NextHop::Receive => self.drop_with(tr, hop, format!("{dst} is owned by the vrouter")),
            NextHop::Reject { .. } => self.drop_with(
                tr,
                hop,
                format!("load balancer VIP {dst} has no member (existing flow)"),
            ),
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn send_to_itf(
        &mut self,
        ctl: &Control,
        j: ItfId,
        route: &Route,
        vrf_id: VrfId,
        frame: &mut Vec<u8>,
        s: &mut Ipv4Summary,
        tr: &mut Tracer,
        out: &mut Vec<Out>,
        mut hop: Option<Hop>,
    ) {
        match ctl.itf_node[j] {
            Some(n) if n == self.node => {
                if let Some(mut h) = hop.take() {
                    h.next_hop = Some(format!("local interface {}", ctl.itf_name(j)));
                    tr.hops.push(h);
                }
                self.ingress(ctl, j, frame, s, tr, out);
            }
            Some(n) => {
                let src_ff = ctl.vrfs[vrf_id].net.is_some_and(|v| {
                    let n = &ctl.model.networks[v];
                    n.fabric_forwarding || n.is_ip_fabric()
                });
                let dst_ff = route
                    .origin
                    .is_some_and(|o| ctl.model.networks[o].fabric_forwarding);
                if let Some(h) = &mut hop {
                    h.next_hop = Some(format!(
                        "interface {} on {} (label {})",
                        ctl.itf_name(j),
                        ctl.nodes[n].name,
                        ctl.itf_label[j]
                    ));
                }
                // Plain IP reaches the interface only when it owns the destination address:
                // the underlay routes by address. A packet steered into a service instance
                // (addressed to someone else) needs the label, so it is tunnelled.
                let owns_dst = ctl.model.interfaces[j].ips.contains(&s.tuple.dst);
                if src_ff && dst_ff && owns_dst {
                    self.plain(ctl, frame, tr, out, hop, "ip-fabric forwarding");
                } else {
                    let itf = &ctl.model.interfaces[j];
                    let vni = ctl.model.networks[itf.network].vni;
                    self.tunnel(
                        ctl,
                        ctl.nodes[n].vhost,
                        ctl.itf_label[j],
                        Some((vni, itf.mac)),
                        frame,
                        s,
                        tr,
                        out,
                        hop,
                    );
                }
            }
            None => self.drop_with(
                tr,
                hop,
                format!("interface {} is not placed on any node", ctl.itf_name(j)),
            ),
        }
    }

    fn plain(
        &self,
        ctl: &Control,
        frame: &mut Vec<u8>,
        tr: &mut Tracer,
        out: &mut Vec<Out>,
        hop: Option<Hop>,
        why: &str,
    ) {
        frame::set_macs(frame, [0; 6], ctl.nodes[self.node].mac);
        if let Some(mut h) = hop {
            h.encapsulation = Some(format!("none ({why}): plain IP on the underlay"));
            tr.hops.push(h);
        }
        out.push(Out::Fabric {
            frame: std::mem::take(frame),
        });
    }

    #[allow(clippy::too_many_arguments)]
    fn tunnel(
        &self,
        ctl: &Control,
        to: Ipv4Addr,
        label: u32,
        vxlan: Option<(u32, frame::Mac)>,
        frame: &mut [u8],
        s: &Ipv4Summary,
        tr: &mut Tracer,
        out: &mut Vec<Out>,
        hop: Option<Hop>,
    ) {
        let kind = ctl
            .model
            .encapsulation
            .iter()
            .copied()
            .find(|e| *e != Encapsulation::Vxlan || vxlan.is_some())
            .unwrap_or(Encapsulation::MplsOverUdp);
        let (id, inner_dst) = match (kind, vxlan) {
            (Encapsulation::Vxlan, Some((vni, mac))) => (vni, mac),
            _ => (label, [0; 6]),
        };
        frame::set_macs(frame, inner_dst, VROUTER_MAC);
        let node = &ctl.nodes[self.node];
        let outer = Outer {
            addrs: Addrs {
                src_mac: node.mac,
                dst_mac: [0; 6],
                src: node.vhost,
                dst: to,
                ttl: 64,
            },
            entropy: flow_hash(&s.tuple) as u16,
        };
        let f = encap::encapsulate(kind, &outer, id, frame);
        if let Some(mut h) = hop {
            let what = if kind == Encapsulation::Vxlan {
                "VNI"
            } else {
                "label"
            };
            h.encapsulation = Some(format!("{} {what} {id} to {to}", kind.as_str()));
            tr.hops.push(h);
        }
        out.push(Out::Fabric { frame: f });
    }

    fn deliver(&self, ctl: &Control, j: ItfId, frame: &mut Vec<u8>, out: &mut Vec<Out>) {
        frame::set_macs(frame, ctl.model.interfaces[j].mac, VROUTER_MAC);
        out.push(Out::Tap {
            itf: j,
            frame: std::mem::take(frame),
        });
    }

    /// A packet for local interface `j` (from a tunnel, the underlay or a local interface).
    fn ingress(
        &mut self,
        ctl: &Control,
        j: ItfId,
        frame: &mut Vec<u8>,
        s: &mut Ipv4Summary,
        tr: &mut Tracer,
        out: &mut Vec<Out>,
    ) {
        let mut hop = self.hop(ctl, s, tr);
        if let Some(h) = &mut hop {
            h.next_hop = Some(format!("deliver to interface {}", ctl.itf_name(j)));
        }
        let Some(kt) = key_tuple(s) else {
            self.drop_with(tr, hop, "ICMP error quoting an unreadable packet".into());
            return;
        };
        if let Some(e) = self.flows.get(&FlowKey {
            itf: j as u32,
            inbound: true,
            tuple: kt,
        }) {
            let reverse = e.reverse;
            match e.action.clone() {
                FlowAction::Ingress { nat } => {
                    if let Some(n) = nat {
                        if let Some(h) = &mut hop {
                            h.nat = Some(format!("{} -> {}", s.tuple, n));
                        }
                        apply_nat(frame, s, n);
                    }
                    if let Some(mut h) = hop {
                        h.flow = Some(format!(
                            "existing flow{}: pass",
                            if reverse { " (reverse)" } else { "" }
                        ));
                        tr.hops.push(h);
                    }
                    self.deliver(ctl, j, frame, out);
                }
                FlowAction::Drop { reason } => self.drop_with(tr, hop, reason.to_string()),
                other => self.drop_with(tr, hop, format!("flow action {other:?} on ingress")),
            }
            return;
        }
        if matches!(s.transport, Transport::IcmpError { .. }) {
            self.drop_with(tr, hop, "ICMP error without a flow".into());
            return;
        }
        let itf = &ctl.model.interfaces[j];
        let t = s.tuple;
        let mut dnat = None;
        let mut acl_net = itf.network;
        if !itf.ips.contains(&t.dst) {
            let fip = ctl.itf_fips[j]
                .iter()
                .map(|f| &ctl.model.floating_ips[*f])
                .find(|f| f.address == t.dst);
            match fip {
                Some(f) => {
                    let dport = if f.port_mappings_enable && t.proto != PROTO_ICMP {
                        match f
                            .port_mappings
                            .iter()
                            .find(|m| m.proto == t.proto && m.src_port == t.dport)
                        {
                            Some(m) => m.dst_port,
                            None => {
                                let reason = format!(
                                    "no port mapping for protocol {} port {} on floating IP {}",
                                    t.proto, t.dport, f.address
                                );
                                self.drop_with(tr, hop, reason);
                                return;
                            }
                        }
                    } else {
                        t.dport
                    };
                    let Some(ip) = itf.ips.first().copied() else {
                        self.drop_with(
                            tr,
                            hop,
                            format!("interface {} has no address", ctl.itf_name(j)),
                        );
                        return;
                    };
                    dnat = Some(Tuple {
                        dst: ip,
                        dport,
                        ..t
                    });
                    acl_net = f.network;
                    if let Some(h) = &mut hop {
                        h.nat = Some(format!(
                            "DNAT {}:{} -> {ip}:{dport} (floating IP {})",
                            t.dst, t.dport, f.fq
                        ));
                    }
                }
                None if itf.service.is_some() => {}
                None => {
                    let reason = format!(
                        "{} is not an address of interface {}",
                        t.dst,
                        ctl.itf_name(j)
                    );
                    self.drop_with(tr, hop, reason);
                    return;
                }
            }
        }
        let eff = dnat.unwrap_or(t);
        let lookup_vrf = if dnat.is_some() {
            acl_net
        } else {
            ctl.itf_vrf[j]
        };
        let mut decisions: Vec<Decision> = std::mem::take(&mut self.scratch);
        let mut denied = false;
        if itf.service.is_none() {
            let mut src_peer = Self::peer_of_addr(ctl, t.src, lookup_vrf);
            if self.from_host && src_peer.net.is_none() {
                // A packet from the node's own IP stack comes from the ip-fabric whatever its
                // source (kube-proxy keeps an outside client's address for
                // externalTrafficPolicy: Local): the vrouter classifies it by vhost0's VRF.
                src_peer.net = ctl.ip_fabric;
            }
            let dst_acl = Peer {
                ip: eff.dst,
                net: Some(acl_net),
                itf: Some(j),
                tags: Some(&itf.tags),
            };
            let d = ctl.acls[acl_net].evaluate(&ctl.model, &src_peer, &dst_acl, &eff);
            denied = d.action == PolicyAction::Deny;
            decisions.push(d);
            if !denied
                && let Some(d) = ctl
                    .security_groups
                    .evaluate(&ctl.model, j, false, &src_peer, &eff)
            {
                denied = d.action == PolicyAction::Deny;
                decisions.push(d);
            }
            let dst_fw = Peer {
                net: Some(itf.network),
                ..dst_acl
            };
            if !denied && let Some(d) = ctl.firewall.evaluate(j, &src_peer, &dst_fw, &eff) {
                denied = d.action == PolicyAction::Deny;
                decisions.push(d);
            }
        }
        if let Some(h) = &mut hop {
            h.vrf = Some(ctl.vrfs[lookup_vrf].name.clone());
            h.decided_by = decisions.iter().map(HopDecision::from).collect();
        }
        let decided: Arc<[Decision]> = Arc::from(&decisions[..]);
        decisions.clear();
        self.scratch = decisions;
        if denied {
            self.deny_new_flow(j as u32, true, t, decided, tr, hop);
            return;
        }
        // Hairpin: the interface reaches itself through an address that translates to its
        // own (its service's VIP with itself as the chosen backend, or its own floating IP).
        // Delivered as is, the workload would see a packet from its own address arrive on
        // its interface, which its kernel refuses (a martian source) or answers over its
        // loopback, never un-NATed. The vrouter also rewrites the source to the address the
        // workload reached (the VIP), so the answer goes back through the vrouter, whose
        // reverse flow restores VIP -> client.
        let rewrite = match dnat {
            Some(n) if itf.ips.contains(&t.src) => {
                let h = Tuple { src: t.dst, ..n };
                if let Some(hp) = &mut hop {
                    hp.nat = Some(format!(
                        "{}; hairpin SNAT {}:{} -> {}:{} (the interface reaches itself)",
                        hp.nat.take().unwrap_or_default(),
                        t.src,
                        t.sport,
                        h.src,
                        h.sport
                    ));
                }
                Some(h)
            }
            other => other,
        };
        self.flows.insert(
            FlowKey {
                itf: j as u32,
                inbound: true,
                tuple: t,
            },
            FlowEntry {
                action: FlowAction::Ingress { nat: rewrite },
                reverse: false,
                decided: Arc::clone(&decided),
            },
        );
        // The answers of a session the local node's IP stack opened go back to it, not
        // wherever the VRF routes the source: its conntrack (kube-proxy) must see them.
        let back = if self.from_host {
            FlowAction::ToHost {
                nat: dnat.map(|_| t.reversed()),
            }
        } else {
            FlowAction::Egress {
                vrf: lookup_vrf,
                nat: dnat.map(|_| t.reversed()),
                member: None,
            }
        };
        self.flows.insert(
            FlowKey {
                itf: j as u32,
                inbound: false,
                tuple: rewrite.unwrap_or(t).reversed(),
            },
            FlowEntry {
                action: back,
                reverse: true,
                decided,
            },
        );
        if let Some(n) = rewrite {
            frame::rewrite(frame, s, n);
        }
        if let Some(mut h) = hop {
            h.flow = Some("new flow: pass".into());
            tr.hops.push(h);
        }
        self.deliver(ctl, j, frame, out);
    }

    /// A frame from the underlay.
    pub(crate) fn receive_from_fabric(
        &mut self,
        ctl: &Control,
        mut frame: Vec<u8>,
        tr: &mut Tracer,
        out: &mut Vec<Out>,
    ) {
        if self.restarting(ctl, tr) {
            return;
        }
        let s = match frame::parse(&frame) {
            Ok(f) => match f.payload {
                Payload::Ipv4(s) => s,
                _ => {
                    tr.dropped(&self.at, "non-IPv4 frame from the underlay".into());
                    return;
                }
            },
            Err(e) => {
                tr.dropped(&self.at, format!("malformed frame from the underlay: {e}"));
                return;
            }
        };
        let node = &ctl.nodes[self.node];
        if s.tuple.dst == node.vhost {
            if let Some(kind) = encap::classify(&s) {
                let mut hop = self.hop(ctl, &s, tr);
                let d = match encap::decapsulate_owned(
                    std::mem::take(&mut frame),
                    &s,
                    ([0; 6], VROUTER_MAC),
                ) {
                    Ok(Some(d)) => d,
                    Ok(None) => return,
                    Err(e) => {
                        self.drop_with(tr, hop, format!("malformed {}: {e}", kind.as_str()));
                        return;
                    }
                };
                let mut inner = d.inner_frame;
                let mut is = d.inner;
                let what = if kind == Encapsulation::Vxlan {
                    "VNI"
                } else {
                    "label"
                };
                if let Some(h) = &mut hop {
                    h.encapsulation = Some(format!(
                        "{} {what} {} from {} removed",
                        kind.as_str(),
                        d.id,
                        d.outer_src
                    ));
                    h.packet = format!("{} in {}", is.tuple, h.packet);
                }
                let target = if kind == Encapsulation::Vxlan {
                    match ctl.vni_map.get(&d.id) {
                        Some(v) => match ctl.vrfs[*v].lookup(is.tuple.dst).map(|r| &r.nh) {
                            Some(NextHop::Interface(j)) if ctl.itf_node[*j] == Some(self.node) => {
                                Ok(*j)
                            }
                            Some(NextHop::Ecmp { members, .. }) => members
                                .iter()
                                .copied()
                                .find(|m| ctl.itf_node[*m] == Some(self.node))
                                .ok_or_else(|| "no local ECMP member".to_owned()),
                            _ => Err(format!(
                                "no local interface for {} in VNI {}",
                                is.tuple.dst, d.id
                            )),
                        },
                        None => Err(format!("unknown VNI {}", d.id)),
                    }
                } else if d.id == VHOST_LABEL {
                    if let Some(h) = hop.take() {
                        tr.hop(Hop {
                            next_hop: Some("receive: the node's own IP stack".into()),
                            ..h
                        });
                    }
                    frame::set_macs(&mut inner, node.mac, VROUTER_MAC);
                    out.push(Out::Host {
                        node: self.node,
                        frame: inner,
                    });
                    return;
                } else {
                    match ctl.label_map[self.node].get(&d.id) {
                        Some(j) => Ok(*j),
                        None => Err(format!("unknown MPLS label {}", d.id)),
                    }
                };
                match target {
                    Ok(j) => {
                        if let Some(h) = hop {
                            tr.hops.push(h);
                        }
                        self.ingress(ctl, j, &mut inner, &mut is, tr, out);
                    }
                    Err(reason) => self.drop_with(tr, hop, reason),
                }
                return;
            }
            // An answer to a fabric SNAT session?
            let mut s = s;
            if let Some(kt) = key_tuple(&s)
                && let Some(FlowEntry {
                    action: FlowAction::SnatReturn { itf, nat },
                    ..
                }) = self.flows.get(&FlowKey {
                    itf: VHOST_ITF,
                    inbound: true,
                    tuple: kt,
                })
            {
                let (itf, nat) = (*itf, *nat);
                if let Some(mut h) = self.hop(ctl, &s, tr) {
                    h.flow = Some("existing flow (reverse): pass".into());
                    h.nat = Some(format!(
                        "fabric SNAT reversed: -> {}:{}",
                        nat.dst, nat.dport
                    ));
                    h.next_hop = Some(format!("deliver to interface {}", ctl.itf_name(itf)));
                    tr.hops.push(h);
                }
                apply_nat(&mut frame, &mut s, nat);
                self.deliver(ctl, itf, &mut frame, out);
                return;
            }
            out.push(Out::Host {
                node: self.node,
                frame,
            });
            return;
        }
        if ctl.fabric_pod_routes.get(&s.tuple.dst) == Some(&self.node)
            && let Some(j) = ctl.addr_owner.get(&s.tuple.dst).copied()
        {
            if let Some(mut h) = self.hop(ctl, &s, tr) {
                h.encapsulation = Some("none (ip-fabric forwarding)".into());
                h.vrf = Some("default-domain:default-project:ip-fabric:__default__".into());
                tr.hops.push(h);
            }
            let mut s = s;
            self.ingress(ctl, j, &mut frame, &mut s, tr, out);
            return;
        }
        tr.dropped(&self.at, format!("{} is not on this node", s.tuple.dst));
    }

    /// A frame from the node's own IP stack (vhost0).
    pub(crate) fn receive_from_host(
        &mut self,
        ctl: &Control,
        mut frame: Vec<u8>,
        tr: &mut Tracer,
        out: &mut Vec<Out>,
    ) {
        if self.restarting(ctl, tr) {
            return;
        }
        let Ok(frame::FrameSummary {
            payload: Payload::Ipv4(mut s),
            ..
        }) = frame::parse(&frame)
        else {
            tr.dropped(&self.at, "malformed frame from the host".into());
            return;
        };
        let mut hop = self.hop(ctl, &s, tr);
        let route = ctl
            .ip_fabric
            .and_then(|v| ctl.vrfs[v].lookup(s.tuple.dst).map(|r| (v, r)));
        let j = match route.map(|(_, r)| &r.nh) {
            Some(NextHop::Interface(j)) => Some(*j),
            Some(NextHop::Ecmp { members, .. }) => {
                Some(members[(flow_hash(&s.tuple) % members.len() as u64) as usize])
            }
            _ => None,
        };
        if let Some((v, r)) = route
            && let NextHop::Reject { fip } = r.nh
        {
            let node = &ctl.nodes[self.node];
            match vip_reject(ctl, fip, &s, &frame, (VROUTER_MAC, node.mac)) {
                Ok(answer) => {
                    if let Some(mut h) = hop {
                        h.vrf = Some(ctl.vrfs[v].name.clone());
                        h.route = Some(describe_route(ctl, r));
                        h.note = Some(format!(
                            "rejected: load balancer VIP {} has no member; ICMP port unreachable sent",
                            s.tuple.dst
                        ));
                        tr.hops.push(h);
                    }
                    out.push(Out::Host {
                        node: self.node,
                        frame: answer,
                    });
                }
                Err(reason) => self.drop_with(tr, hop, reason),
            }
            return;
        }
        match (j, route) {
            (Some(j), Some((v, r))) => {
                if let Some(h) = &mut hop {
                    h.vrf = Some(ctl.vrfs[v].name.clone());
                    h.route = Some(describe_route(ctl, r));
                }
                let r = r.clone();
                self.from_host = true;
                self.send_to_itf(ctl, j, &r, v, &mut frame, &mut s, tr, out, hop);
                self.from_host = false;
            }
            _ => self.plain(ctl, &mut frame, tr, out, hop, "host routing"),
        }
    }
}
