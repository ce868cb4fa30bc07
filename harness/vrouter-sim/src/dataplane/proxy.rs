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
//! - once both legs are open the proxy relays the bytes each side sends to the other (the
//!   request to the backend, the backend's answer to the client), acknowledging what it
//!   takes, retransmitting what is not acknowledged, and passing FIN and RST on;
//! - other ports are answered as a kernel without a listener answers (RST, ICMP port
//!   unreachable, SCTP ABORT); ICMP to the VIP is dropped (the proxy forwards only HTTP(S)).
//!
//! The sessions are part of the dataplane's state ([`ProxySessions`]), so a connection
//! outlives one frame: the model's probe loop and the frame API
//! ([`Dataplane::node_rx`], [`Dataplane::tick`]) drive the same code. Their only difference
//! is time: the model has no wall clock, so a backend connection still unanswered once
//! nothing moves has timed out ([`When::Idle`]); the network-namespace forwarders call
//! [`Dataplane::tick`] with the wall clock ([`When::At`]), which fires the connect timeout,
//! retransmissions and idle expiry.

use std::collections::{HashSet, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::config::model::fnv;
use crate::forward::control::{ItfId, NodeId, VROUTER_MAC};
use crate::trace::{Hop, Tracer};
use crate::wire::frame::{
    self, Addrs, ETH_HEADER_LEN, Ipv4Summary, PROTO_TCP, TcpFlags, Transport, Tuple,
};

use super::{Dataplane, host_answer};

/// How long the proxy waits for a backend to answer its SYN before it gives up and resets
/// the client (haproxy's `timeout connect`, answered with a 503). Well below the netns
/// prober's one-second wait, so a dropped backend connection is seen as the model sees it:
/// a reset, not silence.
pub const PROXY_CONNECT_TIMEOUT: Duration = Duration::from_millis(500);
/// How long an unacknowledged segment (SYN, data, FIN) waits before it is sent again.
pub const PROXY_RETRANSMIT: Duration = Duration::from_millis(200);
/// A relayed connection with no segment either way for this long is reset on both legs.
pub const PROXY_IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// Retransmissions of one segment before the connection is reset on both legs.
const MAX_RETRANSMITS: u32 = 6;
/// The largest payload the proxy sends in one segment: the proxy's SYNs carry no MSS
/// option, so its peers send it no more than TCP's default 536 bytes, and it sends no more.
const SEGMENT: usize = 536;
/// Bytes one leg may hold unacknowledged; past it the proxy stops acknowledging what the
/// other side sends, so that side waits (flow control by withholding the ACK).
const BUFFER: usize = 1 << 20;

/// When the proxy's timers are looked at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum When {
    /// The model's probe loop: nothing moves any more, so every backend connection still
    /// unanswered has timed out (the model has no clock, and a dropped packet never comes).
    Idle,
    /// The wall clock of the network-namespace forwarders.
    At(Instant),
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
enum Timer {
    #[default]
    Off,
    /// Armed before any tick told the clock: starts at the next tick.
    Unstarted,
    At(Instant),
}

impl Timer {
    fn arm(clock: Option<Instant>, after: Duration) -> Timer {
        clock.map_or(Timer::Unstarted, |c| Timer::At(c + after))
    }

    /// Whether it is due at `now` (an unstarted timer starts counting now).
    fn due(&mut self, now: Instant, after: Duration) -> bool {
        match *self {
            Timer::Off => false,
            Timer::Unstarted => {
                *self = Timer::At(now + after);
                false
            }
            Timer::At(t) => t <= now,
        }
    }
}

/// One leg of a relayed connection, as the proxy's TCP end keeps it.
#[derive(Debug, Clone)]
struct Leg {
    /// The peer's packets as they reach the VIP (peer → VIP).
    tuple: Tuple,
    /// The proxy accepted this leg (the client's): its SYN is a SYN-ACK.
    passive: bool,
    /// The next sequence number expected from the peer.
    rcv_nxt: u32,
    /// The oldest sequence number sent to the peer and not acknowledged.
    snd_una: u32,
    /// The next sequence number to send.
    snd_nxt: u32,
    /// The SYN (SYN-ACK) is sent and not acknowledged.
    syn_unacked: bool,
    /// The bytes sent after the SYN and not acknowledged, from `snd_una` (after a pending SYN).
    unacked: VecDeque<u8>,
    fin_sent: bool,
    fin_acked: bool,
    fin_rcvd: bool,
    retransmit: Timer,
    retries: u32,
}

impl Leg {
    fn new(tuple: Tuple, passive: bool, isn: u32, rcv_nxt: u32) -> Leg {
        Leg {
            tuple,
            passive,
            rcv_nxt,
            snd_una: isn,
            snd_nxt: isn,
            syn_unacked: false,
            unacked: VecDeque::new(),
            fin_sent: false,
            fin_acked: false,
            fin_rcvd: false,
            retransmit: Timer::Off,
            retries: 0,
        }
    }

    /// A segment from the VIP to the peer.
    fn segment(&self, mac: frame::Mac, seq: u32, flags: TcpFlags, payload: &[u8]) -> Vec<u8> {
        frame::tcp(
            &Addrs {
                src_mac: mac,
                dst_mac: VROUTER_MAC,
                src: self.tuple.dst,
                dst: self.tuple.src,
                ttl: 64,
            },
            self.tuple.dport,
            self.tuple.sport,
            seq,
            if flags.ack { self.rcv_nxt } else { 0 },
            flags,
            payload,
        )
    }

    fn ack_only(&self, mac: frame::Mac) -> Vec<u8> {
        self.segment(mac, self.snd_nxt, ACK, b"")
    }

    fn reset(&self, mac: frame::Mac) -> Vec<u8> {
        self.segment(
            mac,
            self.snd_nxt,
            TcpFlags {
                rst: true,
                ack: true,
                ..TcpFlags::default()
            },
            b"",
        )
    }

    /// Something sent is not acknowledged yet.
    fn pending(&self) -> bool {
        self.syn_unacked || !self.unacked.is_empty() || (self.fin_sent && !self.fin_acked)
    }

    /// The peer acknowledged everything before `ack`.
    fn acked(&mut self, ack: u32, clock: Option<Instant>) {
        let mut n = ack.wrapping_sub(self.snd_una);
        if n == 0 || n > self.snd_nxt.wrapping_sub(self.snd_una) {
            return; // old or not yet sent: nothing new
        }
        self.snd_una = ack;
        if self.syn_unacked {
            self.syn_unacked = false;
            n -= 1;
        }
        let bytes = (n as usize).min(self.unacked.len());
        self.unacked.drain(..bytes);
        if n as usize > bytes && self.fin_sent {
            self.fin_acked = true;
        }
        self.retries = 0;
        self.retransmit = if self.pending() {
            Timer::arm(clock, PROXY_RETRANSMIT)
        } else {
            Timer::Off
        };
    }

    /// Sends the SYN (with `payload`, the model's backends' identity) and arms its timer.
    fn open(&mut self, mac: frame::Mac, payload: &[u8], clock: Option<Instant>) -> Vec<Vec<u8>> {
        self.syn_unacked = true;
        self.unacked.extend(payload);
        self.snd_nxt = self.snd_una.wrapping_add(1 + payload.len() as u32);
        self.retransmit = Timer::arm(clock, PROXY_RETRANSMIT);
        self.unsent(mac)
    }

    /// Sends `bytes` (in segments) and keeps them until acknowledged.
    fn send(
        &mut self,
        mac: frame::Mac,
        bytes: &[u8],
        clock: Option<Instant>,
        out: &mut Vec<Vec<u8>>,
    ) {
        for chunk in bytes.chunks(SEGMENT) {
            out.push(self.segment(mac, self.snd_nxt, ACK, chunk));
            self.snd_nxt = self.snd_nxt.wrapping_add(chunk.len() as u32);
        }
        self.unacked.extend(bytes);
        if self.retransmit == Timer::Off {
            self.retransmit = Timer::arm(clock, PROXY_RETRANSMIT);
        }
    }

    fn send_fin(&mut self, mac: frame::Mac, clock: Option<Instant>, out: &mut Vec<Vec<u8>>) {
        out.push(self.segment(
            mac,
            self.snd_nxt,
            TcpFlags {
                fin: true,
                ack: true,
                ..TcpFlags::default()
            },
            b"",
        ));
        self.snd_nxt = self.snd_nxt.wrapping_add(1);
        self.fin_sent = true;
        if self.retransmit == Timer::Off {
            self.retransmit = Timer::arm(clock, PROXY_RETRANSMIT);
        }
    }

    /// Everything not acknowledged, from `snd_una`, as segments (a retransmission; the first
    /// sending of a SYN).
    fn unsent(&self, mac: frame::Mac) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        let mut seq = self.snd_una;
        let mut bytes = self.unacked.iter().copied();
        if self.syn_unacked {
            let first: Vec<u8> = bytes.by_ref().take(SEGMENT).collect();
            let flags = TcpFlags {
                syn: true,
                ack: self.passive,
                ..TcpFlags::default()
            };
            out.push(self.segment(mac, seq, flags, &first));
            seq = seq.wrapping_add(1 + first.len() as u32);
        }
        loop {
            let chunk: Vec<u8> = bytes.by_ref().take(SEGMENT).collect();
            if chunk.is_empty() {
                break;
            }
            out.push(self.segment(mac, seq, ACK, &chunk));
            seq = seq.wrapping_add(chunk.len() as u32);
        }
        if self.fin_sent && !self.fin_acked {
            out.push(self.segment(
                mac,
                seq,
                TcpFlags {
                    fin: true,
                    ack: true,
                    ..TcpFlags::default()
                },
                b"",
            ));
        }
        out
    }
}

const ACK: TcpFlags = TcpFlags {
    syn: false,
    ack: true,
    rst: false,
    fin: false,
};

/// One client connection the proxy terminated and the backend connection it opened for it.
#[derive(Debug, Clone)]
pub(super) struct ProxySession {
    /// The proxy (index in `Control::proxies`).
    proxy: usize,
    /// The VIP interface.
    itf: ItfId,
    /// The VIP interface's uuid: indexes change when the configuration is recompiled.
    vip: String,
    /// The client's initial sequence number (tells a retransmitted SYN from a new one).
    client_isn: u32,
    /// The client's leg (client → VIP).
    client: Leg,
    /// The backend's leg (member → VIP).
    backend: Leg,
    /// The backend has not answered the SYN yet (the client has not been answered either).
    connecting: bool,
    /// The connect timeout, while connecting.
    connect: Timer,
    /// Idle expiry.
    idle: Timer,
}

impl ProxySession {
    /// The backend connection as the proxy opened it (VIP → member).
    fn backend_tuple(&self) -> Tuple {
        self.backend.tuple.reversed()
    }
}

/// The ingress proxies' open connections: part of the dataplane's state, so they outlive
/// the frame that opened them.
#[derive(Debug, Default)]
pub(super) struct ProxySessions {
    list: Vec<ProxySession>,
    /// The wall clock as of the last tick (`None` in the model, which has none).
    clock: Option<Instant>,
}

impl ProxySessions {
    /// The session a packet arriving at VIP interface `itf` as `key` (peer → VIP) belongs
    /// to, and whether it came on the client's leg.
    fn find(&self, itf: ItfId, key: Tuple) -> Option<(usize, bool)> {
        self.list
            .iter()
            .position(|s| s.itf == itf && (s.client.tuple == key || s.backend.tuple == key))
            .map(|k| (k, self.list[k].client.tuple == key))
    }

    /// Whether no connection is open.
    pub(super) fn is_empty(&self) -> bool {
        self.list.is_empty()
    }

    /// Open connections.
    pub(super) fn len(&self) -> usize {
        self.list.len()
    }

    /// Moves the clock forward to `now`.
    pub(super) fn advance(&mut self, now: Instant) {
        if self.clock.is_none_or(|c| c < now) {
            self.clock = Some(now);
        }
    }
}

/// What became of a session after a segment or a timer.
enum Fate {
    Keep,
    Close,
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

    /// After a full recompile: the sessions' proxies and VIP interfaces by their new
    /// indexes; those whose load balancer or VIP interface is gone are closed.
    pub(super) fn proxy_recompiled(&mut self) {
        let ctl = &self.ctl;
        self.proxy.list.retain_mut(|s| {
            let Some((i, p)) = ctl
                .model
                .interface_by_uuid
                .get(&s.vip)
                .and_then(|i| Some((*i, ctl.itf_proxy.get(*i).copied().flatten()?)))
            else {
                return false;
            };
            s.itf = i;
            s.proxy = p;
            true
        });
    }

    /// A frame delivered to proxy `p`'s VIP interface `i`; what the proxy sends back out of
    /// its VIP interface (into the vrouter) is appended to `sent`, and `responder` names who
    /// answered the client when the proxy answers it itself.
    pub(super) fn proxy_rx(
        &mut self,
        p: usize,
        i: ItfId,
        f: Vec<u8>,
        tr: &mut Tracer,
        sent: &mut Vec<(ItfId, Vec<u8>)>,
        responder: &mut Arc<str>,
    ) {
        let at = self.proxy_name(p);
        let Ok(s) = frame::parse_ipv4(&f, ETH_HEADER_LEN) else {
            tr.dropped(&at, "malformed packet".into());
            return;
        };
        let t = s.tuple;
        // A segment of an open connection (either leg), or an ICMP error about one?
        let key = match &s.transport {
            Transport::IcmpError { quoted, .. } => quoted.map(|q| q.reversed()),
            _ => Some(t),
        };
        if let Some((k, from_client)) = key.and_then(|key| self.proxy.find(i, key)) {
            let mac = self.ctl.model.interfaces[i].mac;
            let mut out = Vec::new();
            let (fate, consumed) =
                self.proxy_segment(k, from_client, &at, &s, &f, mac, tr, &mut out, responder);
            sent.extend(out.into_iter().map(|x| (i, x)));
            if let Fate::Close = fate {
                self.proxy.list.swap_remove(k);
            }
            if consumed {
                return;
            }
        }
        let itf = &self.ctl.model.interfaces[i];
        if !itf.ips.contains(&t.dst) {
            tr.dropped(&at, format!("{} is not the VIP", t.dst));
            return;
        }
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
            (Transport::Tcp { flags, seq, .. }, Some(l)) if flags.syn && !flags.ack => {
                let (seq, mac, vip_uuid) = (*seq, itf.mac, itf.uuid.clone());
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
                let (protocol, lport) = (l.protocol.clone(), l.port);
                let client = Leg::new(
                    t,
                    true,
                    0x2000_0000 ^ u32::from(t.sport),
                    seq.wrapping_add(1),
                );
                let Some((pool, address, port)) = member else {
                    // No backend: haproxy has nothing to forward to and answers 503.
                    *responder = Arc::from(format!("{at} (no backend)"));
                    if tr.trace {
                        tr.hops.push(Hop {
                            at,
                            packet: t.to_string(),
                            note: Some(format!(
                                "listener {lport} has no pool member: 503, the connection is reset"
                            )),
                            ..Hop::default()
                        });
                    }
                    sent.push((i, client.reset(mac)));
                    return;
                };
                self.proxy_port = if self.proxy_port >= 60999 {
                    32768
                } else {
                    self.proxy_port + 1
                };
                let backend_tuple = Tuple {
                    src: address,
                    dst: t.dst,
                    proto: PROTO_TCP,
                    sport: port,
                    dport: self.proxy_port,
                };
                let clock = self.proxy.clock;
                let mut backend = Leg::new(
                    backend_tuple,
                    false,
                    u32::from(self.proxy_port).wrapping_mul(7919),
                    0,
                );
                let syn = backend.open(mac, b"", clock);
                if tr.trace {
                    tr.hops.push(Hop {
                        at,
                        packet: t.to_string(),
                        note: Some(format!(
                            "listener {protocol} {lport} terminated; new connection {} to pool {pool} member {address}:{port}",
                            backend_tuple.reversed()
                        )),
                        ..Hop::default()
                    });
                }
                self.proxy.list.push(ProxySession {
                    proxy: p,
                    itf: i,
                    vip: vip_uuid,
                    client_isn: seq,
                    client,
                    backend,
                    connecting: true,
                    connect: Timer::arm(clock, PROXY_CONNECT_TIMEOUT),
                    idle: Timer::arm(clock, PROXY_IDLE_TIMEOUT),
                });
                sent.extend(syn.into_iter().map(|x| (i, x)));
            }
            (Transport::Tcp { flags, seq, ack }, Some(_)) => {
                // A segment of no open connection (one reset or expired): the listening
                // socket's kernel answers with a reset, as RFC 793 says.
                if flags.rst {
                    return;
                }
                let len = s.payload(&f).len() as u32 + u32::from(flags.syn) + u32::from(flags.fin);
                let leg = Leg::new(
                    t,
                    true,
                    if flags.ack { *ack } else { 0 },
                    seq.wrapping_add(len),
                );
                let reset = leg.segment(
                    itf.mac,
                    leg.snd_nxt,
                    TcpFlags {
                        rst: true,
                        ack: !flags.ack,
                        ..TcpFlags::default()
                    },
                    b"",
                );
                tr.dropped(
                    &at,
                    format!("{t}: no open connection; answered with a reset"),
                );
                sent.push((i, reset));
            }
            _ => {
                // Not a listener: the proxy's namespace has no socket there.
                let none = HashSet::new();
                if let Some(reply) = host_answer(&at, "", &none, &itf.ips, itf.mac, &f, tr) {
                    *responder = Arc::from(format!("{at} (no listener on port {})", t.dport));
                    sent.push((i, reply));
                }
            }
        }
    }

    /// A segment (or an ICMP error) on leg `from_client` of session `k`: its frames go to
    /// `out`. Returns the session's fate and whether the frame was taken (a SYN of a new
    /// connection reusing the client's ports is not: it opens a new session).
    #[allow(clippy::too_many_arguments)]
    fn proxy_segment(
        &mut self,
        k: usize,
        from_client: bool,
        at: &str,
        s: &Ipv4Summary,
        f: &[u8],
        mac: frame::Mac,
        tr: &mut Tracer,
        out: &mut Vec<Vec<u8>>,
        responder: &mut Arc<str>,
    ) -> (Fate, bool) {
        let clock = self.proxy.clock;
        let sess = &mut self.proxy.list[k];
        let t = s.tuple;
        let note = |tr: &mut Tracer, note: String| {
            if tr.trace {
                tr.hops.push(Hop {
                    at: at.to_owned(),
                    packet: t.to_string(),
                    note: Some(note),
                    ..Hop::default()
                });
            }
        };
        let (flags, seq, ack) = match &s.transport {
            Transport::Tcp { flags, seq, ack } => (*flags, *seq, *ack),
            Transport::IcmpError { error, .. } => {
                if from_client || !sess.connecting {
                    return (Fate::Keep, true);
                }
                *responder = Arc::from(format!("{at} (backend unreachable)"));
                note(
                    tr,
                    format!(
                        "backend connection failed (ICMP {error:?} from {}): 503, the client's connection is reset",
                        t.src
                    ),
                );
                out.push(sess.client.reset(mac));
                return (Fate::Close, true);
            }
            _ => return (Fate::Keep, true),
        };
        sess.idle = Timer::arm(clock, PROXY_IDLE_TIMEOUT);
        if from_client {
            if flags.syn && !flags.ack {
                if seq != sess.client_isn {
                    // The client's ports again with a new ISN: the old connection is over.
                    out.push(sess.backend.reset(mac));
                    return (Fate::Close, false);
                }
                // A retransmitted SYN: answer again once the backend has answered.
                if !sess.connecting && sess.client.syn_unacked {
                    out.extend(sess.client.unsent(mac));
                }
                return (Fate::Keep, true);
            }
            if flags.rst {
                if !sess.connecting {
                    out.push(sess.backend.reset(mac));
                }
                note(
                    tr,
                    "the client reset its connection: the backend's is reset too".into(),
                );
                return (Fate::Close, true);
            }
            if sess.connecting {
                return (Fate::Keep, true); // nothing of the client's is acceptable yet
            }
        } else {
            if flags.rst {
                if sess.connecting {
                    *responder = Arc::from(format!("{at} (backend {} refused)", t.src));
                    note(
                        tr,
                        format!(
                            "backend {}:{} refused (RST): 503, the client's connection is reset",
                            t.src, t.sport
                        ),
                    );
                } else {
                    note(
                        tr,
                        "the backend reset its connection: the client's is reset too".into(),
                    );
                }
                out.push(sess.client.reset(mac));
                return (Fate::Close, true);
            }
            if flags.syn && flags.ack {
                if !sess.connecting {
                    // Our ACK was lost: acknowledge again.
                    out.push(sess.backend.ack_only(mac));
                    return (Fate::Keep, true);
                }
                if ack != sess.backend.snd_nxt {
                    return (Fate::Keep, true);
                }
                let payload = s.payload(f);
                sess.backend.rcv_nxt = seq.wrapping_add(1 + payload.len() as u32);
                sess.backend.acked(ack, clock);
                sess.connecting = false;
                sess.connect = Timer::Off;
                note(
                    tr,
                    format!(
                        "backend {}:{} answered: the client's connection is accepted",
                        t.src, t.sport
                    ),
                );
                // The client's SYN-ACK carries what the backend's did (the model's backends
                // name themselves there; a kernel's carries nothing).
                out.extend(sess.client.open(mac, payload, clock));
                out.push(sess.backend.ack_only(mac));
                return (Fate::Keep, true);
            }
            if sess.connecting {
                return (Fate::Keep, true);
            }
        }
        // An open connection: relay from one leg to the other.
        let (from, to) = if from_client {
            (&mut sess.client, &mut sess.backend)
        } else {
            (&mut sess.backend, &mut sess.client)
        };
        if flags.ack {
            from.acked(ack, clock);
        }
        let payload = s.payload(f);
        if !payload.is_empty() || flags.fin {
            if seq == from.rcv_nxt && !from.fin_rcvd {
                let room = to.unacked.len() + payload.len() <= BUFFER && !to.fin_sent;
                if !payload.is_empty() && room {
                    from.rcv_nxt = from.rcv_nxt.wrapping_add(payload.len() as u32);
                    to.send(mac, payload, clock, out);
                }
                if flags.fin && (payload.is_empty() || room) {
                    from.rcv_nxt = from.rcv_nxt.wrapping_add(1);
                    from.fin_rcvd = true;
                    if !to.fin_sent {
                        to.send_fin(mac, clock, out);
                    }
                }
            }
            // In order or not, the peer learns what the proxy has (a duplicate ACK for a
            // retransmission or a gap).
            out.push(from.ack_only(mac));
        }
        let closed = |l: &Leg| l.fin_rcvd && l.fin_sent && l.fin_acked;
        if closed(&sess.client) && closed(&sess.backend) {
            return (Fate::Close, true);
        }
        (Fate::Keep, true)
    }

    /// The proxies' timers (of the proxies on `node`, or all): connect timeouts (the client
    /// is reset: haproxy's 503), and with the wall clock retransmissions and idle expiry.
    /// What the proxies send is appended to `sent`. Returns whether any session changed.
    pub(super) fn proxy_timers(
        &mut self,
        node: Option<NodeId>,
        when: When,
        tr: &mut Tracer,
        sent: &mut Vec<(ItfId, Vec<u8>)>,
        responder: &mut Arc<str>,
    ) -> bool {
        let mut any = false;
        let mut k = 0;
        while k < self.proxy.list.len() {
            let itf = self.proxy.list[k].itf;
            if node.is_some_and(|n| self.ctl.itf_node.get(itf).copied().flatten() != Some(n)) {
                k += 1;
                continue;
            }
            let mac = self.ctl.model.interfaces[itf].mac;
            let sess = &mut self.proxy.list[k];
            let timed_out = match when {
                When::Idle => sess.connecting,
                When::At(now) => sess.connecting && sess.connect.due(now, PROXY_CONNECT_TIMEOUT),
            };
            if timed_out {
                any = true;
                let (p, backend) = (sess.proxy, sess.backend_tuple());
                sent.push((itf, sess.client.reset(mac)));
                self.proxy.list.swap_remove(k);
                let at = self.proxy_name(p);
                let why = tr
                    .drop
                    .as_ref()
                    .map(|(w, r)| format!("dropped at {w}: {r}"))
                    .unwrap_or_else(|| "no answer".into());
                *responder = Arc::from(format!(
                    "{at} (backend connection {backend} timed out, {why})"
                ));
                if tr.trace {
                    tr.hops.push(Hop {
                        at,
                        packet: backend.to_string(),
                        note: Some(format!(
                            "backend connection timed out ({why}): 503, the client's connection is reset"
                        )),
                        ..Hop::default()
                    });
                }
                continue;
            }
            let When::At(now) = when else {
                k += 1;
                continue;
            };
            let mut fate = Fate::Keep;
            if sess.idle.due(now, PROXY_IDLE_TIMEOUT) {
                fate = Fate::Close;
            }
            for leg in [&mut sess.client, &mut sess.backend] {
                if !leg.pending() || !leg.retransmit.due(now, PROXY_RETRANSMIT) {
                    continue;
                }
                any = true;
                leg.retries += 1;
                if leg.retries > MAX_RETRANSMITS {
                    fate = Fate::Close;
                    break;
                }
                sent.extend(leg.unsent(mac).into_iter().map(|x| (itf, x)));
                leg.retransmit = Timer::At(now + PROXY_RETRANSMIT);
            }
            match fate {
                Fate::Keep => k += 1,
                Fate::Close => {
                    any = true;
                    // Given up: both peers learn it at once.
                    if !sess.connecting {
                        sent.push((itf, sess.client.reset(mac)));
                    }
                    sent.push((itf, sess.backend.reset(mac)));
                    self.proxy.list.swap_remove(k);
                }
            }
        }
        any
    }
}
