//! Contrail's ingress proxy: the haproxy that svc-monitor's `opencontrail` load-balancer
//! driver runs for each load balancer kube-manager writes for an Ingress. It sits behind the
//! load balancer's VIP interface (placed on a node by the control plane, see
//! [`crate::forward::control::ProxyPlacement`]) and is driven by the VNC objects alone:
//!
//! - a TCP connection to a listener's `protocol_port` (80 for `HTTP`, 443 for
//!   `TERMINATED_HTTPS`) is terminated here; the proxy opens a new connection from the VIP
//!   to a member of the listener's first pool (the default backend's, else the first by
//!   path) — for an ingress the backend service's ClusterIP and port — through the VIP
//!   interface, so the vrouter gates the second leg (the VIP's tags meet the cluster's
//!   `<cluster>-Ingress` firewall rules at the backend) and the service's ECMP picks the pod;
//! - the client's handshake completes when the backend's does (an HTTP probe sees the
//!   backend's answer); a refused backend connection, or one whose packets are dropped (the
//!   proxy's connect timeout), is answered with a TCP reset (haproxy's 503);
//! - other ports are answered as a kernel without a listener answers (RST, ICMP port
//!   unreachable, SCTP ABORT); ICMP to the VIP is dropped (the proxy forwards only HTTP(S)).

use std::collections::{HashSet, VecDeque};
use std::sync::Arc;

use crate::config::model::fnv;
use crate::forward::control::{ItfId, VROUTER_MAC};
use crate::trace::{Hop, Tracer};
use crate::wire::frame::{self, Addrs, ETH_HEADER_LEN, PROTO_TCP, TcpFlags, Transport, Tuple};

use super::{Dataplane, Ev, host_answer};

/// One client connection the proxy is relaying, while its backend connection is opened.
#[derive(Debug, Clone)]
pub(super) struct ProxySession {
    /// The proxy (index in `Control::proxies`).
    proxy: usize,
    /// The VIP interface.
    itf: ItfId,
    /// The client's SYN as it reached the proxy (client → VIP).
    client: Tuple,
    /// The client's initial sequence number.
    client_seq: u32,
    /// The backend connection (VIP → member).
    backend: Tuple,
    /// Answered (or given up).
    done: bool,
}

impl Dataplane {
    fn proxy_name(&self, p: usize) -> String {
        let lb = &self.ctl.model.load_balancers[self.ctl.proxies[p].lb];
        format!(
            "ingress proxy {} on {}",
            lb.fq.rsplit(':').next().unwrap_or(""),
            self.ctl.nodes[self.ctl.proxies[p].node].name
        )
    }

    fn proxy_reply(&self, s: &ProxySession, flags: TcpFlags, payload: &[u8]) -> Vec<u8> {
        let itf = &self.ctl.model.interfaces[s.itf];
        frame::tcp(
            &Addrs {
                src_mac: itf.mac,
                dst_mac: VROUTER_MAC,
                src: s.client.dst,
                dst: s.client.src,
                ttl: 64,
            },
            s.client.dport,
            s.client.sport,
            0x2000_0000 ^ u32::from(s.client.sport),
            s.client_seq.wrapping_add(1),
            flags,
            payload,
        )
    }

    /// A frame delivered to proxy `p`'s VIP interface `i`.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn proxy_rx(
        &mut self,
        p: usize,
        i: ItfId,
        f: Vec<u8>,
        tr: &mut Tracer,
        q: &mut VecDeque<Ev>,
        sessions: &mut Vec<ProxySession>,
        responder: &mut Arc<str>,
    ) {
        let at = self.proxy_name(p);
        let Ok(s) = frame::parse_ipv4(&f, ETH_HEADER_LEN) else {
            tr.dropped(&at, "malformed packet".into());
            return;
        };
        let t = s.tuple;
        // An answer on a backend connection?
        let answered = match &s.transport {
            Transport::IcmpError { quoted, .. } => *quoted,
            _ => Some(t.reversed()),
        };
        if let Some(k) = sessions
            .iter()
            .position(|x| !x.done && Some(x.backend) == answered)
        {
            let sess = sessions[k].clone();
            sessions[k].done = true;
            let (reply, note) = match &s.transport {
                Transport::Tcp { flags, .. } if flags.syn && flags.ack => (
                    self.proxy_reply(
                        &sess,
                        TcpFlags {
                            syn: true,
                            ack: true,
                            ..TcpFlags::default()
                        },
                        s.payload(&f),
                    ),
                    format!(
                        "backend {}:{} answered: the client's connection is accepted",
                        t.src, t.sport
                    ),
                ),
                Transport::Tcp { flags, .. } if flags.rst => {
                    *responder = Arc::from(format!("{at} (backend {} refused)", t.src));
                    (
                        self.proxy_reply(
                            &sess,
                            TcpFlags {
                                rst: true,
                                ack: true,
                                ..TcpFlags::default()
                            },
                            b"",
                        ),
                        format!(
                            "backend {}:{} refused (RST): 503, the client's connection is reset",
                            t.src, t.sport
                        ),
                    )
                }
                Transport::IcmpError { error, .. } => {
                    *responder = Arc::from(format!("{at} (backend unreachable)"));
                    (
                        self.proxy_reply(
                            &sess,
                            TcpFlags {
                                rst: true,
                                ack: true,
                                ..TcpFlags::default()
                            },
                            b"",
                        ),
                        format!(
                            "backend connection failed (ICMP {error:?} from {}): 503, the client's connection is reset",
                            t.src
                        ),
                    )
                }
                _ => {
                    sessions[k].done = false;
                    return;
                }
            };
            if tr.trace {
                tr.hops.push(Hop {
                    at,
                    packet: t.to_string(),
                    note: Some(note),
                    ..Hop::default()
                });
            }
            q.push_back(Ev::TapTx(sess.itf, reply));
            return;
        }
        let itf = &self.ctl.model.interfaces[i];
        if !itf.ips.contains(&t.dst) {
            tr.dropped(&at, format!("{} is not the VIP", t.dst));
            return;
        }
        let syn = matches!(&s.transport, Transport::Tcp { flags, .. } if flags.syn && !flags.ack);
        let lb = &self.ctl.model.load_balancers[self.ctl.proxies[p].lb];
        let listener = lb.listeners.iter().find(|l| {
            l.port == t.dport
                && matches!(
                    l.protocol.as_str(),
                    "HTTP" | "HTTPS" | "TERMINATED_HTTPS" | "TCP"
                )
        });
        match (&s.transport, listener) {
            (Transport::IcmpEcho { .. }, _) => {
                tr.dropped(
                    &at,
                    "the ingress proxy forwards only its HTTP(S) listeners: ICMP to the VIP is dropped"
                        .into(),
                );
            }
            (Transport::Tcp { seq, .. }, Some(l)) if syn => {
                let member = l
                    .pools
                    .iter()
                    .find(|pool| !pool.members.is_empty())
                    .map(|pool| {
                        let mut b = [0u8; 13];
                        b[0..4].copy_from_slice(&t.src.octets());
                        b[4..8].copy_from_slice(&t.dst.octets());
                        b[8] = t.proto;
                        b[9..11].copy_from_slice(&t.sport.to_be_bytes());
                        b[11..13].copy_from_slice(&t.dport.to_be_bytes());
                        let m = &pool.members[(fnv(&b) % pool.members.len() as u64) as usize];
                        (pool.fq.clone(), m.address, m.port)
                    });
                let Some((pool, address, port)) = member else {
                    // No backend: haproxy has nothing to forward to and answers 503.
                    let sess = ProxySession {
                        proxy: p,
                        itf: i,
                        client: t,
                        client_seq: *seq,
                        backend: t,
                        done: true,
                    };
                    *responder = Arc::from(format!("{at} (no backend)"));
                    if tr.trace {
                        tr.hops.push(Hop {
                            at,
                            packet: t.to_string(),
                            note: Some(format!(
                                "listener {} has no pool member: 503, the connection is reset",
                                l.port
                            )),
                            ..Hop::default()
                        });
                    }
                    let reply = self.proxy_reply(
                        &sess,
                        TcpFlags {
                            rst: true,
                            ack: true,
                            ..TcpFlags::default()
                        },
                        b"",
                    );
                    q.push_back(Ev::TapTx(i, reply));
                    return;
                };
                self.proxy_port = if self.proxy_port >= 60999 {
                    32768
                } else {
                    self.proxy_port + 1
                };
                let vip = t.dst;
                let backend = Tuple {
                    src: vip,
                    dst: address,
                    proto: PROTO_TCP,
                    sport: self.proxy_port,
                    dport: port,
                };
                let syn = frame::tcp(
                    &Addrs {
                        src_mac: itf.mac,
                        dst_mac: VROUTER_MAC,
                        src: vip,
                        dst: address,
                        ttl: 64,
                    },
                    backend.sport,
                    port,
                    u32::from(backend.sport) * 7919,
                    0,
                    TcpFlags {
                        syn: true,
                        ..TcpFlags::default()
                    },
                    b"",
                );
                if tr.trace {
                    tr.hops.push(Hop {
                        at,
                        packet: t.to_string(),
                        note: Some(format!(
                            "listener {} {} terminated; new connection {backend} to pool {pool} member {address}:{port}",
                            l.protocol, l.port
                        )),
                        ..Hop::default()
                    });
                }
                sessions.push(ProxySession {
                    proxy: p,
                    itf: i,
                    client: t,
                    client_seq: *seq,
                    backend,
                    done: false,
                });
                q.push_back(Ev::TapTx(i, syn));
            }
            (Transport::Tcp { .. }, Some(_)) => {} // later segments of a relayed connection
            _ => {
                // Not a listener: the proxy's namespace has no socket there.
                let none = HashSet::new();
                if let Some(reply) = host_answer(&at, "", &none, &itf.ips, itf.mac, &f, tr) {
                    *responder = Arc::from(format!("{at} (no listener on port {})", t.dport));
                    q.push_back(Ev::TapTx(i, reply));
                }
            }
        }
    }

    /// The proxy's connect timeout: backend connections nobody answered (their packets were
    /// dropped) fail, and the clients get a reset (haproxy's 503). Returns whether any did.
    pub(super) fn proxy_timeouts(
        &self,
        tr: &mut Tracer,
        q: &mut VecDeque<Ev>,
        sessions: &mut [ProxySession],
        responder: &mut Arc<str>,
    ) -> bool {
        let mut any = false;
        for sess in sessions.iter_mut().filter(|s| !s.done) {
            sess.done = true;
            any = true;
            let at = self.proxy_name(sess.proxy);
            let why = tr
                .drop
                .as_ref()
                .map(|(w, r)| format!("dropped at {w}: {r}"))
                .unwrap_or_else(|| "no answer".into());
            *responder = Arc::from(format!(
                "{at} (backend connection {} timed out, {why})",
                sess.backend
            ));
            if tr.trace {
                tr.hops.push(Hop {
                    at,
                    packet: sess.backend.to_string(),
                    note: Some(format!(
                        "backend connection timed out ({why}): 503, the client's connection is reset"
                    )),
                    ..Hop::default()
                });
            }
            let reply = self.proxy_reply(
                sess,
                TcpFlags {
                    rst: true,
                    ack: true,
                    ..TcpFlags::default()
                },
                b"",
            );
            q.push_back(Ev::TapTx(sess.itf, reply));
        }
        any
    }
}
