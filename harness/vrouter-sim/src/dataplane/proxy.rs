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
//!   takes, sending no more than each peer's window (and its own congestion window) allows,
//!   retransmitting what is not acknowledged, and passing FIN and RST on;
//! - other ports are answered as a kernel without a listener answers (RST, ICMP port
//!   unreachable, SCTP ABORT); ICMP to the VIP is dropped (the proxy forwards only HTTP(S)).
//!
//! The sessions are part of the dataplane's state ([`ProxySessions`]), so a connection
//! outlives one frame: the model's probe loop and the frame API
//! ([`Dataplane::node_rx`], [`Dataplane::tick`]) drive the same code. Their only difference
//! is time: the model has no wall clock, so a backend connection still unanswered once
//! nothing moves has timed out ([`When::Idle`]); the network-namespace forwarders call
//! [`Dataplane::tick`] with the wall clock ([`When::At`]), which fires the connect timeout,
//! retransmissions (and window probes) and idle expiry.

use std::collections::{HashSet, VecDeque};
use std::ops::RangeInclusive;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::config::model::fnv;
use crate::forward::control::{Control, ItfId, NodeId, VROUTER_MAC};
use crate::forward::hash::FxMap;
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
/// How long an unacknowledged segment (SYN, data, FIN) first waits before it is sent again
/// (Linux's minimum RTO). Each timeout in a row doubles the wait, up to [`RETRANSMIT_MAX`].
pub const PROXY_RETRANSMIT: Duration = Duration::from_millis(200);
/// A relayed connection with no segment either way for this long is reset on both legs.
pub const PROXY_IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// Retransmission timeouts in a row before the connection is reset on both legs.
const MAX_RETRANSMITS: u32 = 6;
/// The longest wait of the backed-off retransmission timer (16 × [`PROXY_RETRANSMIT`]):
/// with [`MAX_RETRANSMITS`] a silent peer is given up after about 12.6 s, well inside the
/// idle timeout.
const RETRANSMIT_MAX: Duration = Duration::from_millis(3200);
/// The largest payload the proxy sends in one segment: the proxy's SYNs carry no MSS
/// option, so its peers send it no more than TCP's default 536 bytes, and it sends no more.
const SEGMENT: u32 = 536;
/// The congestion window a connection starts with (RFC 6928's ten segments).
const INITIAL_CWND: u32 = 10 * SEGMENT;
/// Bytes one leg may hold unacknowledged (sent or waiting for the peer's window); past it
/// the proxy stops acknowledging what the other side sends, so that side waits (flow
/// control by withholding the ACK).
const BUFFER: usize = 1 << 20;
/// The source ports of the proxy's backend connections (Linux's `ip_local_port_range`).
const PORTS: RangeInclusive<u16> = 32768..=60999;
/// How far the initial-sequence-number clock advances for each ISN drawn: successive
/// connections start far apart in sequence space (RFC 6528's clock, driven by connections
/// rather than time so the model stays deterministic).
const ISN_STRIDE: u32 = 1 << 16;

/// `a` comes before `b` in sequence-number space (RFC 793's modular comparison).
fn before(a: u32, b: u32) -> bool {
    (a.wrapping_sub(b) as i32) < 0
}

/// The window a TCP segment advertises. The proxy sends no window-scale option, so no
/// peer scales its window: the raw 16-bit field is the window in bytes.
fn advertised_window(s: &Ipv4Summary, f: &[u8]) -> u32 {
    // `parse_ipv4` checked the TCP header is there; a missing one reads as a shut window.
    f.get(s.l4_start + 14..s.l4_start + 16)
        .map_or(0, |w| u32::from(u16::from_be_bytes([w[0], w[1]])))
}

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
///
/// What the proxy sends the peer is, in sequence order from `snd_una`: the SYN (while not
/// acknowledged), the bytes of `buf`, then the FIN once queued. `snd_nxt` is how far of
/// that is sent, at most `snd_una` plus the smaller of the peer's window and the congestion
/// window; a retransmission timeout goes back to `snd_una` with a congestion window of one
/// segment (RFC 5681), which grows again as ACKs arrive.
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
    /// The highest sequence number sent so far (`snd_nxt` goes back after a timeout; ACKs
    /// up to here are still valid).
    snd_max: u32,
    /// The peer's window: bytes it takes from `snd_una` on.
    snd_wnd: u32,
    /// The sequence and acknowledgment numbers of the segment that last set `snd_wnd`
    /// (RFC 793's SND.WL1 / SND.WL2: an older segment does not set it back).
    snd_wl1: u32,
    snd_wl2: u32,
    /// The congestion window (bytes in flight), and the slow-start threshold.
    cwnd: u32,
    ssthresh: u32,
    /// The SYN (SYN-ACK) is queued and not acknowledged.
    syn_unacked: bool,
    /// The bytes after the SYN not acknowledged yet (sent or not), from `snd_una` (after
    /// a pending SYN).
    buf: VecDeque<u8>,
    /// The FIN is queued after `buf` (the other side closed).
    fin_queued: bool,
    fin_acked: bool,
    fin_rcvd: bool,
    retransmit: Timer,
    /// Retransmission timeouts in a row the peer did not answer.
    retries: u32,
    /// Doublings of the retransmission timer (reset when the peer acknowledges).
    backoff: u32,
}

/// How much [`Leg::output`] sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Send {
    /// What the windows allow.
    Window,
    /// One segment (a retransmission timeout's); one byte into a window that shrank shut.
    One,
}

impl Leg {
    fn new(tuple: Tuple, passive: bool, isn: u32, rcv_nxt: u32) -> Leg {
        Leg {
            tuple,
            passive,
            rcv_nxt,
            snd_una: isn,
            snd_nxt: isn,
            snd_max: isn,
            snd_wnd: 0,
            snd_wl1: 0,
            snd_wl2: 0,
            cwnd: INITIAL_CWND,
            ssthresh: BUFFER as u32,
            syn_unacked: false,
            buf: VecDeque::new(),
            fin_queued: false,
            fin_acked: false,
            fin_rcvd: false,
            retransmit: Timer::Off,
            retries: 0,
            backoff: 0,
        }
    }

    /// The peer's window as its SYN (or SYN-ACK) numbered `seq` advertised it.
    fn peer_window(&mut self, seq: u32, ack: u32, window: u32) {
        self.snd_wnd = window;
        self.snd_wl1 = seq;
        self.snd_wl2 = ack;
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

    /// An acknowledgment. Its sequence number is the highest sent, which the peer takes
    /// as in its window even while a go-back resends older bytes.
    fn ack_only(&self, mac: frame::Mac) -> Vec<u8> {
        self.segment(mac, self.snd_max, ACK, b"")
    }

    fn reset(&self, mac: frame::Mac) -> Vec<u8> {
        self.segment(
            mac,
            self.snd_max,
            TcpFlags {
                rst: true,
                ack: true,
                ..TcpFlags::default()
            },
            b"",
        )
    }

    /// Something queued is not acknowledged yet (sent, or waiting for the window).
    fn pending(&self) -> bool {
        self.syn_unacked || !self.buf.is_empty() || (self.fin_queued && !self.fin_acked)
    }

    /// The retransmission timeout, backed off.
    fn rto(&self) -> Duration {
        PROXY_RETRANSMIT
            .saturating_mul(1 << self.backoff.min(16))
            .min(RETRANSMIT_MAX)
    }

    /// An acknowledgment `ack` with window `window` in the peer's segment numbered `seq`.
    fn acked(&mut self, seq: u32, ack: u32, window: u32, clock: Option<Instant>) {
        if before(ack, self.snd_una) || before(self.snd_max, ack) {
            return; // old, or of nothing sent: the segment tells nothing
        }
        let mut restart = false;
        if before(self.snd_wl1, seq) || (self.snd_wl1 == seq && !before(ack, self.snd_wl2)) {
            if self.snd_wnd == 0 && window > 0 {
                // The window opened again: what waits goes out now, and its timer starts
                // afresh rather than at the backed-off probe interval.
                self.backoff = 0;
                restart = true;
            }
            self.peer_window(seq, ack, window);
        }
        let mut n = ack.wrapping_sub(self.snd_una);
        if n == 0 {
            if self.snd_wnd == 0 {
                // The answer to a window probe: the peer is there, only full.
                self.retries = 0;
            }
        } else {
            self.snd_una = ack;
            if before(self.snd_nxt, ack) {
                self.snd_nxt = ack; // the peer had more than the go-back resent
            }
            if self.syn_unacked {
                self.syn_unacked = false;
                n -= 1;
            }
            let bytes = (n as usize).min(self.buf.len());
            self.buf.drain(..bytes);
            if n as usize > bytes && self.fin_queued {
                self.fin_acked = true;
            }
            // RFC 5681: slow start below the threshold, congestion avoidance above.
            if bytes > 0 {
                let grow = if self.cwnd < self.ssthresh {
                    (bytes as u32).min(SEGMENT)
                } else {
                    (SEGMENT * SEGMENT / self.cwnd).max(1)
                };
                self.cwnd = self.cwnd.saturating_add(grow).min(BUFFER as u32);
            }
            self.retries = 0;
            self.backoff = 0;
            restart = true;
        }
        if !self.pending() {
            self.retransmit = Timer::Off;
        } else if restart {
            self.retransmit = Timer::arm(clock, self.rto());
        }
    }

    /// Queues the SYN (with `payload`, the model's backends' identity) and sends it.
    fn open(
        &mut self,
        mac: frame::Mac,
        payload: &[u8],
        clock: Option<Instant>,
        out: &mut Vec<Vec<u8>>,
    ) {
        self.syn_unacked = true;
        self.buf.extend(payload);
        self.flush(mac, clock, out);
    }

    /// Sends what the windows allow of what is queued, and keeps the retransmission timer
    /// running while anything is unacknowledged (with a shut window it is the persist
    /// timer: its timeout sends a window probe).
    fn flush(&mut self, mac: frame::Mac, clock: Option<Instant>, out: &mut Vec<Vec<u8>>) {
        self.output(mac, Send::Window, out);
        if self.pending() && self.retransmit == Timer::Off {
            self.retransmit = Timer::arm(clock, self.rto());
        }
    }

    /// A retransmission timeout: the first unacknowledged segment is sent again and the
    /// rest waits for ACKs (go back to `snd_una`, congestion window one segment).
    /// With a shut window and nothing in flight it is the persist timer instead: a window
    /// probe goes out (an ACK one below `snd_una`, which the peer answers with its window,
    /// as Linux probes), and the bytes wait.
    fn timed_out(&mut self, mac: frame::Mac, out: &mut Vec<Vec<u8>>) {
        let flight = self.snd_max.wrapping_sub(self.snd_una);
        if self.snd_wnd == 0 && flight == 0 {
            self.backoff = self.backoff.saturating_add(1);
            out.push(self.segment(mac, self.snd_una.wrapping_sub(1), ACK, b""));
            return;
        }
        if self.snd_wnd > 0 && flight > 0 {
            // Loss, not a shut window: RFC 5681's response to a timeout.
            self.ssthresh = (flight / 2).max(2 * SEGMENT);
            self.cwnd = SEGMENT;
        }
        self.snd_nxt = self.snd_una;
        self.backoff = self.backoff.saturating_add(1);
        self.output(mac, Send::One, out);
    }

    /// Sends from `snd_nxt` on, as `how` says. The SYN and the FIN take no room in the
    /// window; the FIN goes once every byte before it is sent.
    fn output(&mut self, mac: frame::Mac, how: Send, out: &mut Vec<Vec<u8>>) {
        let mut limit = self.snd_una.wrapping_add(self.snd_wnd.min(self.cwnd));
        if how == Send::One && self.snd_wnd == 0 {
            limit = self.snd_una.wrapping_add(1 + u32::from(self.syn_unacked));
        }
        let room = |from: u32| {
            if before(from, limit) {
                limit.wrapping_sub(from)
            } else {
                0
            }
        };
        let first = out.len();
        while how == Send::Window || out.len() == first {
            let off = self.snd_nxt.wrapping_sub(self.snd_una);
            if self.syn_unacked && off == 0 {
                let n = (self.buf.len() as u32)
                    .min(SEGMENT)
                    .min(room(self.snd_nxt.wrapping_add(1)));
                let payload: Vec<u8> = self.buf.range(..n as usize).copied().collect();
                let flags = TcpFlags {
                    syn: true,
                    ack: self.passive,
                    ..TcpFlags::default()
                };
                out.push(self.segment(mac, self.snd_nxt, flags, &payload));
                self.snd_nxt = self.snd_nxt.wrapping_add(1 + n);
            } else {
                let at = (off - u32::from(self.syn_unacked)) as usize;
                if at < self.buf.len() {
                    let n = ((self.buf.len() - at) as u32)
                        .min(SEGMENT)
                        .min(room(self.snd_nxt)) as usize;
                    if n == 0 {
                        break; // the window is full
                    }
                    let payload: Vec<u8> = self.buf.range(at..at + n).copied().collect();
                    out.push(self.segment(mac, self.snd_nxt, ACK, &payload));
                    self.snd_nxt = self.snd_nxt.wrapping_add(n as u32);
                } else if at == self.buf.len() && self.fin_queued && !self.fin_acked {
                    let fin = TcpFlags {
                        fin: true,
                        ack: true,
                        ..TcpFlags::default()
                    };
                    out.push(self.segment(mac, self.snd_nxt, fin, b""));
                    self.snd_nxt = self.snd_nxt.wrapping_add(1);
                } else {
                    break; // everything queued is sent
                }
            }
        }
        if before(self.snd_max, self.snd_nxt) {
            self.snd_max = self.snd_nxt;
        }
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

    /// The proxy's source port of the backend connection.
    fn port(&self) -> u16 {
        self.backend.tuple.dport
    }
}

/// The ingress proxies' open connections: part of the dataplane's state, so they outlive
/// the frame that opened them.
#[derive(Debug, Default)]
pub(super) struct ProxySessions {
    list: Vec<ProxySession>,
    /// Each leg by its VIP interface and its packets' tuple toward the VIP: the session's
    /// index in `list`, and whether it is the client's leg.
    index: FxMap<(ItfId, Tuple), (usize, bool)>,
    /// The source ports the open backend connections hold.
    ports: HashSet<u16>,
    /// The next initial sequence number (see [`ISN_STRIDE`]).
    isn_clock: u32,
    /// The wall clock as of the last tick (`None` in the model, which has none).
    clock: Option<Instant>,
}

impl ProxySessions {
    /// The session a packet arriving at VIP interface `itf` as `key` (peer → VIP) belongs
    /// to, and whether it came on the client's leg.
    fn find(&self, itf: ItfId, key: Tuple) -> Option<(usize, bool)> {
        self.index.get(&(itf, key)).copied()
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

    /// Sets the open connections aside for one model probe: `self` becomes an empty set that
    /// still holds their ports and continues their ISN sequence, so the probe's connections
    /// never take a port or a sequence space an open connection uses. Returns what was set
    /// aside, for [`ProxySessions::restore`].
    pub(super) fn set_aside(&mut self) -> ProxySessions {
        let probe = ProxySessions {
            ports: self.ports.clone(),
            isn_clock: self.isn_clock,
            ..ProxySessions::default()
        };
        std::mem::replace(self, probe)
    }

    /// Puts back what [`ProxySessions::set_aside`] took, dropping the probe's connections
    /// but keeping its advance of the ISN sequence.
    pub(super) fn restore(&mut self, held: ProxySessions) {
        let isn_clock = self.isn_clock;
        *self = held;
        self.isn_clock = isn_clock;
    }

    /// The source port for a new backend connection: the one after `last` in [`PORTS`]
    /// (wrapping) that no open session holds; `None` when all are held.
    ///
    /// The model's probes draw from the same counter (`last` is the dataplane's); while one
    /// runs, the frame API's connections are set aside but their ports stay held
    /// ([`ProxySessions::set_aside`]).
    fn free_port(&self, last: u16) -> Option<u16> {
        let (lo, hi) = (*PORTS.start(), *PORTS.end());
        let mut port = last.clamp(lo, hi);
        for _ in PORTS {
            port = if port >= hi { lo } else { port + 1 };
            if !self.ports.contains(&port) {
                return Some(port);
            }
        }
        None
    }

    /// The next initial sequence number.
    fn draw_isn(&mut self) -> u32 {
        let isn = self.isn_clock;
        self.isn_clock = self.isn_clock.wrapping_add(ISN_STRIDE);
        isn
    }

    fn insert(&mut self, s: ProxySession) {
        let k = self.list.len();
        self.index.insert((s.itf, s.client.tuple), (k, true));
        self.index.insert((s.itf, s.backend.tuple), (k, false));
        self.ports.insert(s.port());
        self.list.push(s);
    }

    /// Closes session `k` (its frames are the caller's).
    fn remove(&mut self, k: usize) -> ProxySession {
        let s = self.list.swap_remove(k);
        self.index.remove(&(s.itf, s.client.tuple));
        self.index.remove(&(s.itf, s.backend.tuple));
        self.ports.remove(&s.port());
        if let Some(moved) = self.list.get(k) {
            self.index
                .insert((moved.itf, moved.client.tuple), (k, true));
            self.index
                .insert((moved.itf, moved.backend.tuple), (k, false));
        }
        // The peers may keep the connection in TIME_WAIT, where a kernel takes a SYN of
        // the same ports only if it starts after what the old connection sent: every later
        // ISN does.
        for end in [s.client.snd_max, s.backend.snd_max] {
            let next = end.wrapping_add(ISN_STRIDE);
            if before(self.isn_clock, next) {
                self.isn_clock = next;
            }
        }
        s
    }

    /// Rebuilds the index after the sessions' interfaces changed.
    fn reindex(&mut self) {
        self.index.clear();
        for (k, s) in self.list.iter().enumerate() {
            self.index.insert((s.itf, s.client.tuple), (k, true));
            self.index.insert((s.itf, s.backend.tuple), (k, false));
        }
    }
}

/// What became of a session after a segment or a timer.
enum Fate {
    Keep,
    Close,
}

/// How traces and responders name proxy `p`.
fn proxy_name(ctl: &Control, p: usize) -> String {
    let lb = &ctl.model.load_balancers[ctl.proxies[p].lb];
    format!(
        "ingress proxy {} on {}",
        lb.fq.rsplit(':').next().unwrap_or(""),
        ctl.nodes[ctl.proxies[p].node].name
    )
}

impl Dataplane {
    /// After a full recompile: the sessions' proxies and VIP interfaces by their new
    /// indexes; those whose load balancer or VIP interface is gone are closed.
    pub(super) fn proxy_recompiled(&mut self) {
        let ctl = &self.ctl;
        for k in (0..self.proxy.list.len()).rev() {
            let s = &mut self.proxy.list[k];
            match ctl
                .model
                .interface_by_uuid
                .get(&s.vip)
                .and_then(|i| Some((*i, ctl.itf_proxy.get(*i).copied().flatten()?)))
            {
                Some((i, p)) => {
                    s.itf = i;
                    s.proxy = p;
                }
                None => {
                    self.proxy.remove(k);
                }
            }
        }
        self.proxy.reindex();
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
        let Ok(s) = frame::parse_ipv4(&f, ETH_HEADER_LEN) else {
            tr.dropped(&proxy_name(&self.ctl, p), "malformed packet".into());
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
                self.proxy_segment(k, from_client, p, &s, &f, mac, tr, &mut out, responder);
            sent.extend(out.into_iter().map(|x| (i, x)));
            if let Fate::Close = fate {
                self.proxy.remove(k);
            }
            if consumed {
                return;
            }
        }
        // Not an open connection's (the path of every segment once open ends above).
        let at = proxy_name(&self.ctl, p);
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
                let client_isn = self.proxy.draw_isn();
                let mut client = Leg::new(t, true, client_isn, seq.wrapping_add(1));
                client.peer_window(seq, client_isn, advertised_window(&s, &f));
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
                let Some(source_port) = self.proxy.free_port(self.proxy_port) else {
                    // Every source port is held by an open connection: haproxy cannot
                    // connect (EADDRNOTAVAIL) and answers 503.
                    *responder = Arc::from(format!("{at} (no free source port)"));
                    tr.dropped(
                        &at,
                        format!(
                            "{t}: every source port {}-{} is held by an open connection: 503, the connection is reset",
                            PORTS.start(),
                            PORTS.end()
                        ),
                    );
                    sent.push((i, client.reset(mac)));
                    return;
                };
                self.proxy_port = source_port;
                let backend_tuple = Tuple {
                    src: address,
                    dst: t.dst,
                    proto: PROTO_TCP,
                    sport: port,
                    dport: source_port,
                };
                let clock = self.proxy.clock;
                let backend_isn = self.proxy.draw_isn();
                let mut backend = Leg::new(backend_tuple, false, backend_isn, 0);
                let mut syn = Vec::new();
                backend.open(mac, b"", clock, &mut syn);
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
                self.proxy.insert(ProxySession {
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
        p: usize,
        s: &Ipv4Summary,
        f: &[u8],
        mac: frame::Mac,
        tr: &mut Tracer,
        out: &mut Vec<Vec<u8>>,
        responder: &mut Arc<str>,
    ) -> (Fate, bool) {
        let clock = self.proxy.clock;
        let ctl = &self.ctl;
        let sess = &mut self.proxy.list[k];
        let t = s.tuple;
        // Named only when a note or an answer needs it: most segments need neither.
        let at = || proxy_name(ctl, p);
        let note = |tr: &mut Tracer, note: String| {
            if tr.trace {
                tr.hops.push(Hop {
                    at: at(),
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
                *responder = Arc::from(format!("{} (backend unreachable)", at()));
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
                    sess.client.snd_nxt = sess.client.snd_una;
                    sess.client.output(mac, Send::One, out);
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
                    *responder = Arc::from(format!("{} (backend {} refused)", at(), t.src));
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
                if ack != sess.backend.snd_max {
                    return (Fate::Keep, true);
                }
                let payload = s.payload(f);
                sess.backend.rcv_nxt = seq.wrapping_add(1 + payload.len() as u32);
                sess.backend.peer_window(seq, ack, advertised_window(s, f));
                sess.backend.acked(seq, ack, advertised_window(s, f), clock);
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
                sess.client.open(mac, payload, clock, out);
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
            from.acked(seq, ack, advertised_window(s, f), clock);
        }
        let payload = s.payload(f);
        let carries = !payload.is_empty() || flags.fin;
        if carries && seq == from.rcv_nxt && !from.fin_rcvd {
            let room = to.buf.len() + payload.len() <= BUFFER && !to.fin_queued;
            if !payload.is_empty() && room {
                from.rcv_nxt = from.rcv_nxt.wrapping_add(payload.len() as u32);
                to.buf.extend(payload);
            }
            if flags.fin && (payload.is_empty() || room) {
                from.rcv_nxt = from.rcv_nxt.wrapping_add(1);
                from.fin_rcvd = true;
                to.fin_queued = true;
            }
            to.flush(mac, clock, out);
        }
        // What waits for this peer, as far as its ACK opened the windows; it carries the
        // acknowledgment of what the proxy took.
        let sent = out.len();
        from.flush(mac, clock, out);
        if carries && out.len() == sent {
            // In order or not, the peer learns what the proxy has (a duplicate ACK for a
            // retransmission or a gap).
            out.push(from.ack_only(mac));
        }
        let closed = |l: &Leg| l.fin_rcvd && l.fin_queued && l.fin_acked;
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
                self.proxy.remove(k);
                let at = proxy_name(&self.ctl, p);
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
                let rto = leg.rto();
                if !leg.pending() || !leg.retransmit.due(now, rto) {
                    continue;
                }
                any = true;
                leg.retries += 1;
                if leg.retries > MAX_RETRANSMITS {
                    fate = Fate::Close;
                    break;
                }
                let mut out = Vec::new();
                leg.timed_out(mac, &mut out);
                sent.extend(out.into_iter().map(|x| (itf, x)));
                leg.retransmit = Timer::At(now + leg.rto());
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
                    self.proxy.remove(k);
                }
            }
        }
        any
    }
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use super::*;

    const VIP: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 30);

    /// A session whose backend connection leaves the VIP from `port` with ISN `isn`.
    fn session(port: u16, isn: u32) -> ProxySession {
        let client = Tuple {
            src: Ipv4Addr::new(198, 51, 100, 7),
            dst: VIP,
            proto: PROTO_TCP,
            sport: 40000,
            dport: 80,
        };
        let backend = Tuple {
            src: Ipv4Addr::new(10, 96, 0, 40),
            dst: VIP,
            proto: PROTO_TCP,
            sport: 80,
            dport: port,
        };
        ProxySession {
            proxy: 0,
            itf: 0,
            vip: "vip".into(),
            client_isn: 1000,
            client: Leg::new(client, true, 7, 1001),
            backend: Leg::new(backend, false, isn, 0),
            connecting: true,
            connect: Timer::Off,
            idle: Timer::Off,
        }
    }

    #[test]
    fn a_port_an_open_session_holds_is_not_handed_out_again() {
        let mut ps = ProxySessions::default();
        assert_eq!(ps.free_port(32768), Some(32769));
        ps.insert(session(32769, 0));
        ps.insert(session(32770, 0));
        // The counter comes back to the held ports (it wrapped, or a model probe drew
        // them): they are skipped.
        assert_eq!(ps.free_port(32768), Some(32771));
        // Wrapping over the range skips them too.
        ps.insert(session(32768, 0));
        assert_eq!(ps.free_port(60999), Some(32771));
        assert_eq!(
            ps.find(0, session(32770, 0).backend.tuple).map(|f| f.1),
            Some(false)
        );
        // Once the session is closed its port is free again, and the index still finds
        // the session that moved into its slot.
        let k = ps.find(0, session(32769, 0).backend.tuple).unwrap().0;
        ps.remove(k);
        assert_eq!(ps.free_port(32768), Some(32769));
        for port in [32768, 32770] {
            let (k, client) = ps.find(0, session(port, 0).backend.tuple).unwrap();
            assert!(!client);
            assert_eq!(ps.list[k].port(), port);
        }
        assert_eq!(ps.find(0, session(32769, 0).backend.tuple), None);
        // Every port held: none is handed out (the caller answers 503).
        ps.ports.extend(PORTS);
        assert_eq!(ps.free_port(40000), None);
    }

    #[test]
    fn a_model_probe_keeps_off_the_ports_and_sequence_space_of_connections_set_aside() {
        let mut ps = ProxySessions::default();
        let isn = ps.draw_isn();
        ps.insert(session(32769, isn));
        let held = ps.set_aside();
        // The probe sees no open connection, but cannot take the held port.
        assert!(ps.is_empty());
        assert_eq!(ps.free_port(32768), Some(32770));
        let probe_isn = ps.draw_isn();
        assert_ne!(probe_isn, isn);
        ps.insert(session(32770, probe_isn));
        ps.restore(held);
        // The open connection is back, the probe's is gone, and the ISN sequence went on.
        assert_eq!(ps.len(), 1);
        assert!(ps.find(0, session(32769, 0).backend.tuple).is_some());
        assert!(ps.find(0, session(32770, 0).backend.tuple).is_none());
        assert_eq!(ps.free_port(32769), Some(32770));
        let next = ps.draw_isn();
        assert!(next != isn && next != probe_isn);
    }

    #[test]
    fn successive_connections_from_one_port_start_after_each_other() {
        let mut ps = ProxySessions::default();
        let first = ps.draw_isn();
        let mut s = session(32769, first);
        // The first connection sent 5 MB and its FIN, then closed: a backend may hold it in
        // TIME_WAIT.
        s.backend.snd_max = first.wrapping_add(5_000_000 + 2);
        let end = s.backend.snd_max;
        ps.insert(s);
        let k = ps.find(0, session(32769, 0).backend.tuple).unwrap().0;
        ps.remove(k);
        assert_eq!(ps.free_port(32768), Some(32769));
        let second = ps.draw_isn();
        assert_ne!(first, second);
        assert!(before(end, second), "{second} does not start after {end}");
        // Without a closed connection to pass, the ISNs still advance by the stride.
        let third = ps.draw_isn();
        assert_eq!(third.wrapping_sub(second), ISN_STRIDE);
        // Across the wrap of the sequence space too.
        ps.isn_clock = u32::MAX - 10;
        let mut s = session(32770, ps.draw_isn());
        s.backend.snd_max = s.backend.snd_max.wrapping_add(100);
        let end = s.backend.snd_max;
        ps.insert(s);
        let k = ps.find(0, session(32770, 0).backend.tuple).unwrap().0;
        ps.remove(k);
        assert!(before(end, ps.draw_isn()));
    }

    #[test]
    fn sequence_numbers_compare_across_the_wrap() {
        assert!(before(1, 2));
        assert!(!before(2, 2));
        assert!(before(u32::MAX - 5, 3));
        assert!(!before(3, u32::MAX - 5));
    }
}
