//! The user-space vrouters (and the SDN gateway): one OS thread per node that enters the
//! node's namespace, reads every interface the vrouter owns through an AF_PACKET receive
//! ring, hands each frame to the one forwarding core through [`Dataplane::node_rx`] (the
//! gateway: [`Dataplane::gateway_rx`]) and writes what it emitted to the matching sockets.
//!
//! What keeps a frame cheap (the forwarding core itself costs well under a microsecond):
//! - frames arrive in a `PACKET_RX_RING` (TPACKET_V2) shared with the kernel, so reading one
//!   is a memory copy, not a system call; the thread sleeps in `poll` only when every ring is
//!   empty;
//! - everything read in one pass over the rings (up to [`BATCH`] per interface) is forwarded
//!   under one acquisition of the dataplane lock, so two node threads on two cores spend their
//!   time forwarding, not waiting on each other or on the agent;
//! - what a batch emits is written with one `sendmmsg` per interface;
//! - frame buffers are recycled from a pool instead of allocated per frame.
//!
//! Taps come and go while the thread runs ([`VrouterHandle::add_tap`] /
//! [`VrouterHandle::remove_tap`]), as pods are created and deleted by later scenario steps.

use std::collections::{HashMap, VecDeque};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::thread::JoinHandle;
use std::time::Duration;

use harness_vrouter_sim::Dataplane;
use harness_vrouter_sim::io::{Egress, Ingress, Place};

use crate::NetnsError;
use crate::packet::{
    Coalescer, PacketSocket, RingFrame, RxRing, TcpGso, VnetHdr, gso_header, segment_tcp,
    tcp_layers,
};

/// What an interface the forwarder owns is to the forwarding core.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Role {
    /// The physical interface on the underlay.
    Fabric,
    /// The vrouter's end of the vhost0 pair (the node's own IP stack).
    Host,
    /// A workload's tap (VMI uuid): frames go with a `virtio_net_hdr` (TCP super-frames in
    /// both directions, segments joined GRO-style towards the pod).
    Tap(String),
    /// A service instance's tap (VMI uuid): to the forwarding core a tap like a pod's, but
    /// wire frames only, no `virtio_net_hdr` and no joining — the instance's kernel forwards
    /// (and its nftables rules count) the packets a wire would carry; its namespace has
    /// offloads off.
    InstanceTap(String),
    /// The gateway's link to an external client (client name).
    Client(String),
}

/// An interface a forwarder owns.
#[derive(Debug, Clone)]
pub(crate) struct Port {
    pub ifname: String,
    pub role: Role,
}

/// Who forwards.
#[derive(Debug, Clone)]
pub(crate) enum Forwarder {
    /// A node's vrouter.
    Node(String),
    /// The SDN gateway.
    Gateway,
}

/// Counters of one forwarder.
#[derive(Debug, Default)]
pub struct ForwarderStats {
    /// Frames read.
    pub rx: AtomicU64,
    /// Frames written.
    pub tx: AtomicU64,
    /// Frames whose TCP/UDP checksum (SCTP CRC32c) the kernel left partial and this side
    /// completed.
    pub checksums_completed: AtomicU64,
    /// Frames dropped: by the forwarding core, or here before it (a frame too big for a
    /// ring slot, a super-frame this side cannot cut); each with its reason in
    /// `recent_drops`.
    pub dropped: AtomicU64,
    /// Frames that could not be written (queue full, interface gone).
    pub send_errors: AtomicU64,
    /// Batches forwarded (one lock acquisition each): `rx / batches` is the mean batch.
    pub batches: AtomicU64,
    /// Frames the kernel dropped before the forwarder saw them (a receive ring was full).
    pub ring_drops: AtomicU64,
    /// TCP super-frames read from workloads (TSO; each counts once in `rx`).
    pub super_frames: AtomicU64,
    /// TCP segments joined into super-frames for workloads' kernels (GRO), over the
    /// thread's life.
    pub coalesced: AtomicU64,
    /// The most recent drops: (where, why), newest last, at most [`RECENT_DROPS`].
    pub recent_drops: Mutex<VecDeque<(String, String)>>,
}

/// How many recent drops a forwarder remembers.
pub const RECENT_DROPS: usize = 64;

/// Frames read from one interface per pass before the others get their turn.
pub const BATCH: usize = 256;
/// Bytes of receive ring on the underlay and vhost0 (4096 slots of 2 KiB at MTU 1500): what
/// every workload of the node sends and receives crosses it, in bursts of a TCP window while
/// the thread is off the CPU (2 MiB dropped frames under the bulk benchmark; 8 MiB none).
const RING_BYTES: usize = 8 << 20;
/// Receive buffer of a workload's tap (one pod's bursts: a TCP window of super-frames, or
/// thousands of small frames).
const TAP_RCVBUF: usize = 16 << 20;
/// Frames read from a tap per `recvmmsg`.
const RECV_MANY: usize = 64;
/// The most a tunnel adds to the IPv4 packet it carries (VXLAN: outer IPv4, UDP, VXLAN and
/// the inner Ethernet header): a super-frame longer than an IPv4 packet less this is cut
/// into segments before forwarding, so its encapsulation still fits one outer packet.
const MAX_TUNNEL_OVERHEAD: usize = 20 + 8 + 8 + 14;
/// Buffers kept for reuse.
const POOL: usize = 512;
/// How long [`VrouterHandle`] waits for the thread to act on a request.
const CONTROL_TIMEOUT: Duration = Duration::from_secs(5);
/// How often a node's forwarder runs its ingress proxies' timers ([`Dataplane::tick`]:
/// connect timeouts, retransmissions, idle expiry); also the longest idle sleep.
const TICK: Duration = Duration::from_millis(20);

fn ingress_of(role: &Role) -> Ingress<'_> {
    match role {
        Role::Fabric | Role::Client(_) => Ingress::Fabric,
        Role::Host => Ingress::Host,
        Role::Tap(vmi) | Role::InstanceTap(vmi) => Ingress::Tap(vmi),
    }
}

/// Whether the model's interface `vmi` is a service instance's (left, right or management
/// side of a service chain's instance).
fn is_service_interface(dp: &Mutex<Dataplane>, vmi: &str) -> bool {
    let dp = dp.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    let model = &dp.control().model;
    model
        .interface_by_uuid
        .get(vmi)
        .and_then(|i| model.interfaces.get(*i))
        .is_some_and(|itf| itf.service.is_some())
}

/// The VMI of a workload's or service instance's tap.
fn tap_vmi(role: &Role) -> Option<&str> {
    match role {
        Role::Tap(v) | Role::InstanceTap(v) => Some(v),
        _ => None,
    }
}

/// A request to a running forwarder thread.
enum Control {
    AddTap {
        port: Port,
        reply: mpsc::Sender<Result<(), NetnsError>>,
    },
    RemoveTap {
        vmi: String,
        reply: mpsc::Sender<()>,
    },
}

/// Changes the interfaces of a running forwarder thread.
#[derive(Clone)]
pub(crate) struct VrouterHandle {
    name: String,
    tx: mpsc::Sender<Control>,
    wake: Arc<OwnedFd>,
}

impl std::fmt::Debug for VrouterHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VrouterHandle")
            .field("name", &self.name)
            .finish()
    }
}

impl VrouterHandle {
    fn wake(&self) {
        let one = 1u64.to_ne_bytes();
        // SAFETY: writes 8 bytes to an eventfd we own. A full counter cannot happen here.
        unsafe { libc::write(self.wake.as_raw_fd(), one.as_ptr().cast(), 8) };
    }

    fn gone(&self) -> NetnsError {
        NetnsError::Io {
            what: format!("the {} thread", self.name),
            source: std::io::Error::other("it stopped"),
        }
    }

    /// Starts forwarding the workload tap `ifname` (already created in the node's namespace)
    /// of interface `vmi`; returns once its socket is open. A pod's tap exchanges TCP
    /// super-frames with the pod's kernel ([`Role::Tap`]); when the model says `vmi` is a
    /// service interface (`service_interface_type`, as `service::is_service` reads it), the
    /// tap is a service instance's and carries wire frames only ([`Role::InstanceTap`]).
    pub fn add_tap(&self, ifname: &str, vmi: &str) -> Result<(), NetnsError> {
        let (reply, rx) = mpsc::channel();
        self.tx
            .send(Control::AddTap {
                port: Port {
                    ifname: ifname.to_owned(),
                    role: Role::Tap(vmi.to_owned()),
                },
                reply,
            })
            .map_err(|_| self.gone())?;
        self.wake();
        rx.recv_timeout(CONTROL_TIMEOUT).map_err(|_| self.gone())?
    }

    /// Stops forwarding the tap of `vmi` and closes its socket; returns once closed.
    pub fn remove_tap(&self, vmi: &str) -> Result<(), NetnsError> {
        let (reply, rx) = mpsc::channel();
        self.tx
            .send(Control::RemoveTap {
                vmi: vmi.to_owned(),
                reply,
            })
            .map_err(|_| self.gone())?;
        self.wake();
        rx.recv_timeout(CONTROL_TIMEOUT).map_err(|_| self.gone())
    }
}

/// One interface the thread reads and writes.
struct Link {
    port: Port,
    sock: PacketSocket,
    /// `None` on a kernel without receive rings: then one `recvmsg` per frame.
    ring: Option<RxRing>,
    /// Joins TCP segments for a workload's kernel (pods' taps only).
    coalescer: Coalescer,
    /// Frames read with one `recvmmsg` (taps), not yet handed out: `got[..ready]`, the next
    /// at `next`.
    got: Vec<Vec<u8>>,
    metas: Vec<crate::packet::RxMeta>,
    next: usize,
}

impl Link {
    /// Opens the interface's socket. A pod's tap exchanges frames with a
    /// `virtio_net_hdr` (the pod's kernel hands over TCP super-frames, and takes them
    /// whole); the other interfaces, a service instance's tap among them, carry wire-sized
    /// frames.
    fn open(port: Port, slot: usize, ns: &str) -> Result<Link, NetnsError> {
        let err = |e| NetnsError::Io {
            what: format!("AF_PACKET socket on {} in {ns}", port.ifname),
            source: e,
        };
        let mut sock = PacketSocket::open(Some(&port.ifname)).map_err(err)?;
        // A tap's frames range from 60 bytes to 64 KiB: a ring's fixed slots would hold a
        // few hundred, so it is read with `recvmmsg` from a socket buffer sized for them.
        let ring = match port.role {
            Role::Tap(_) => {
                sock.enable_vnet_hdr().map_err(err)?;
                sock.force_rcvbuf(TAP_RCVBUF);
                None
            }
            Role::InstanceTap(_) => {
                sock.force_rcvbuf(TAP_RCVBUF);
                None
            }
            _ => sock.rx_ring(slot, RING_BYTES).ok(),
        };
        Ok(Link {
            port,
            sock,
            ring,
            coalescer: Coalescer::default(),
            got: Vec::new(),
            metas: Vec::new(),
            next: 0,
        })
    }

    /// The next frame into `buf`.
    fn read(&mut self, buf: &mut Vec<u8>) -> Option<RingFrame> {
        match &mut self.ring {
            Some(r) => r.next(buf),
            None => {
                if self.next == self.metas.len() {
                    self.got.resize_with(RECV_MANY, Vec::new);
                    self.next = 0;
                    if self
                        .sock
                        .recv_many(&mut self.got, MAX_FRAME, &mut self.metas)
                        == 0
                    {
                        return None;
                    }
                }
                let m = self.metas[self.next];
                // The caller's buffer takes the frame's place for the next `recvmmsg`.
                std::mem::swap(buf, &mut self.got[self.next]);
                self.next += 1;
                Some(RingFrame::Frame {
                    len: m.len,
                    checksum_completed: m.checksum_completed,
                    gso: m.gso,
                    unsupported_gso: m.unsupported_gso,
                })
            }
        }
    }
}

/// The largest frame a tap hands over: an IPv4 packet of 64 KiB and its Ethernet header.
const MAX_FRAME: usize = 65_536 + 14;

/// Starts a forwarder thread inside `ns` with receive-ring slots of `slot` bytes; returns
/// once its sockets are open.
pub(crate) fn spawn(
    ns: &str,
    who: Forwarder,
    ports: Vec<Port>,
    slot: usize,
    dp: Arc<Mutex<Dataplane>>,
    stop: Arc<AtomicBool>,
    stats: Arc<ForwarderStats>,
) -> Result<(JoinHandle<Result<(), NetnsError>>, VrouterHandle), NetnsError> {
    let (ready_tx, ready_rx) = mpsc::channel::<Result<(), NetnsError>>();
    let name = match &who {
        Forwarder::Node(n) => format!("vrouter {n}"),
        Forwarder::Gateway => "gateway".to_owned(),
    };
    // SAFETY: plain eventfd creation; the fd is owned below.
    let efd = unsafe { libc::eventfd(0, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC) };
    if efd < 0 {
        return Err(NetnsError::Io {
            what: "creating an eventfd".into(),
            source: std::io::Error::last_os_error(),
        });
    }
    // SAFETY: efd was just returned by eventfd().
    let wake = Arc::new(unsafe { OwnedFd::from_raw_fd(efd) });
    let (ctl_tx, ctl_rx) = mpsc::channel::<Control>();
    let handle = VrouterHandle {
        name: name.clone(),
        tx: ctl_tx,
        wake: Arc::clone(&wake),
    };
    let ns_owned = ns.to_owned();
    let h = crate::sys::spawn_in(ns, name, move || {
        let mut links = Vec::with_capacity(ports.len());
        for p in ports {
            match Link::open(p, slot, &ns_owned) {
                Ok(l) => links.push(l),
                Err(e) => {
                    let _ = ready_tx.send(Err(e));
                    return;
                }
            }
        }
        let _ = ready_tx.send(Ok(()));
        drop(ready_tx);
        let mut fw = Fwd {
            who,
            links,
            slot,
            ns: ns_owned,
            wake,
            ctl: ctl_rx,
        };
        fw.run(&dp, &stop, &stats);
    })?;
    match ready_rx.recv() {
        Ok(Ok(())) => Ok((
            std::thread::spawn(move || {
                h.join().map_err(|_| NetnsError::Io {
                    what: "a forwarder thread panicked".into(),
                    source: std::io::Error::other("panic"),
                })?
            }),
            handle,
        )),
        Ok(Err(e)) => {
            let _ = h.join();
            Err(e)
        }
        Err(_) => match h.join() {
            Ok(Err(e)) => Err(e),
            _ => Err(NetnsError::Io {
                what: format!("the forwarder in {ns} stopped before opening its sockets"),
                source: std::io::Error::other("forwarder thread ended"),
            }),
        },
    }
}

/// A frame read, for the forwarding core: (link index, frame, for a TCP super-frame how to
/// cut it and its payload bytes).
type Received = (usize, Vec<u8>, Option<(TcpGso, usize)>);

/// The state of one forwarder thread.
struct Fwd {
    who: Forwarder,
    links: Vec<Link>,
    slot: usize,
    ns: String,
    wake: Arc<OwnedFd>,
    ctl: mpsc::Receiver<Control>,
}

/// Where each [`Place`] goes: link indexes.
#[derive(Default)]
struct Targets {
    by_tap: HashMap<String, usize>,
    by_client: HashMap<String, usize>,
    fabric: Option<usize>,
    host: Option<usize>,
}

impl Targets {
    fn of(links: &[Link]) -> Targets {
        let mut t = Targets::default();
        for (i, l) in links.iter().enumerate() {
            match &l.port.role {
                Role::Fabric => t.fabric = Some(i),
                Role::Host => t.host = Some(i),
                Role::Tap(v) | Role::InstanceTap(v) => {
                    t.by_tap.insert(v.clone(), i);
                }
                Role::Client(c) => {
                    t.by_client.insert(c.clone(), i);
                }
            }
        }
        t
    }

    fn get(&self, p: &Place) -> Option<usize> {
        match p {
            Place::Fabric => self.fabric,
            Place::Host => self.host,
            Place::Tap(v) => self.by_tap.get(v.as_str()).copied(),
            Place::Client(c) => self.by_client.get(c.as_str()).copied(),
        }
    }
}

impl Fwd {
    fn pollfds(&self) -> Vec<libc::pollfd> {
        self.links
            .iter()
            .map(|l| l.sock.as_raw_fd())
            .chain(std::iter::once(self.wake.as_raw_fd()))
            .map(|fd| libc::pollfd {
                fd,
                events: libc::POLLIN,
                revents: 0,
            })
            .collect()
    }

    /// Acts on pending requests; whether the interfaces changed.
    fn control(&mut self, dp: &Mutex<Dataplane>) -> bool {
        let mut changed = false;
        while let Ok(c) = self.ctl.try_recv() {
            match c {
                Control::AddTap { mut port, reply } => {
                    if let Role::Tap(vmi) = &port.role
                        && is_service_interface(dp, vmi)
                    {
                        port.role = Role::InstanceTap(vmi.clone());
                    }
                    if let Some(vmi) = tap_vmi(&port.role) {
                        self.links.retain(|l| tap_vmi(&l.port.role) != Some(vmi));
                    }
                    let r = Link::open(port, self.slot, &self.ns).map(|l| self.links.push(l));
                    changed = true;
                    let _ = reply.send(r);
                }
                Control::RemoveTap { vmi, reply } => {
                    self.links
                        .retain(|l| tap_vmi(&l.port.role) != Some(vmi.as_str()));
                    changed = true;
                    let _ = reply.send(());
                }
            }
        }
        changed
    }

    fn count_ring_drops(&self, stats: &ForwarderStats) {
        let d: u64 = self.links.iter().map(|l| l.sock.take_drops()).sum();
        if d > 0 {
            stats.ring_drops.fetch_add(d, Ordering::Relaxed);
        }
    }

    fn run(&mut self, dp: &Mutex<Dataplane>, stop: &AtomicBool, stats: &ForwarderStats) {
        let mut targets = Targets::of(&self.links);
        let mut fds = self.pollfds();
        let mut pool: Vec<Vec<u8>> = Vec::with_capacity(POOL);
        let mut batch: Vec<Received> = Vec::with_capacity(BATCH * 4);
        let mut outs: Vec<Egress> = Vec::with_capacity(BATCH * 4);
        // The virtio_net_hdr of `outs[k]` for a tap (a super-frame the pod's kernel takes
        // whole); shorter than `outs` where the rest are ordinary frames.
        let mut out_hdr: Vec<Option<VnetHdr>> = Vec::with_capacity(BATCH * 4);
        let mut wire: Vec<(Vec<u8>, VnetHdr)> = Vec::new();
        let mut per_link: Vec<Vec<usize>> = Vec::new();
        let mut drops: Vec<(String, String)> = Vec::new();
        let mut passes = 0u64;
        let mut yielded = false;
        let mut last_tick = std::time::Instant::now();
        while !stop.load(Ordering::Relaxed) {
            if self.control(dp) {
                targets = Targets::of(&self.links);
                fds = self.pollfds();
            }
            // 1. Read what the rings hold, a bounded number per interface.
            for (i, link) in self.links.iter_mut().enumerate() {
                for _ in 0..BATCH {
                    let mut buf = pool.pop().unwrap_or_else(|| Vec::with_capacity(self.slot));
                    let at = |l: &Link| format!("{} ({})", l.port.ifname, role_name(&l.port.role));
                    match link.read(&mut buf) {
                        Some(RingFrame::Frame {
                            checksum_completed,
                            gso,
                            unsupported_gso,
                            ..
                        }) => {
                            if checksum_completed {
                                stats.checksums_completed.fetch_add(1, Ordering::Relaxed);
                            }
                            if let Some(t) = unsupported_gso {
                                drops.push((
                                    at(link),
                                    format!(
                                        "a super-frame of GSO type {t} ({}, {} bytes): only TCP/IPv4 super-frames are cut into segments here",
                                        gso_type_name(t),
                                        buf.len()
                                    ),
                                ));
                                pool.push(buf);
                                continue;
                            }
                            let Some(g) = gso else {
                                batch.push((i, buf, None));
                                continue;
                            };
                            stats.super_frames.fetch_add(1, Ordering::Relaxed);
                            // Forwarded whole when its tunnel fits one IPv4 packet; otherwise
                            // cut here, as the pod's NIC would have.
                            match tcp_layers(&buf) {
                                Some(l)
                                    if l.end - l.ip + MAX_TUNNEL_OVERHEAD
                                        <= usize::from(u16::MAX) =>
                                {
                                    batch.push((i, buf, Some((g, l.end - l.payload))))
                                }
                                Some(l) => {
                                    segment_tcp(
                                        &buf,
                                        &l,
                                        g,
                                        || pool.pop().unwrap_or_default(),
                                        |s| batch.push((i, s, None)),
                                    );
                                    pool.push(buf);
                                }
                                None => {
                                    // Its checksum is partial and it is no wire frame: sent
                                    // on as it is, it would reach nobody intact.
                                    drops.push((
                                        at(link),
                                        format!(
                                            "a TCP super-frame ({} bytes, segment size {}) whose headers do not parse as Ethernet/IPv4/TCP: it cannot be cut into segments",
                                            buf.len(),
                                            g.mss
                                        ),
                                    ));
                                    pool.push(buf);
                                }
                            }
                        }
                        Some(RingFrame::Truncated(len)) => {
                            pool.push(buf);
                            drops.push((
                                at(link),
                                format!("a frame of {len} bytes does not fit a receive-ring slot of {} bytes (MTU too large for the ring)", self.slot),
                            ));
                        }
                        None => {
                            pool.push(buf);
                            break;
                        }
                    }
                }
            }
            let read = batch.len();
            let tick_due = matches!(self.who, Forwarder::Node(_)) && last_tick.elapsed() >= TICK;
            // 2. Forward the whole batch under one lock; then, under the same lock, the
            //    node's ingress proxies' timers when due (connect timeouts,
            //    retransmissions, idle expiry), after the batch: a SYN-ACK read in this pass
            //    reaches its session before a connect timeout can fire on it. What the
            //    timers send leaves with this pass.
            if read > 0 || tick_due {
                let mut dp = dp.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
                for (i, frame, gso) in batch.drain(..) {
                    let role = &self.links[i].port.role;
                    let r = match &self.who {
                        Forwarder::Node(node) => dp.node_rx(node, ingress_of(role), frame, false),
                        Forwarder::Gateway => match role {
                            Role::Client(c) => dp.gateway_rx(Some(c), frame, false),
                            // ARP and other non-IPv4 frames on the underlay are not for the
                            // gateway (its neighbours know its MAC statically).
                            _ if harness_vrouter_sim::wire::frame::ethertype(&frame) != 0x0800 => {
                                if pool.len() < POOL {
                                    pool.push(frame);
                                }
                                continue;
                            }
                            _ => dp.gateway_rx(None, frame, false),
                        },
                    };
                    match r {
                        Ok(rx) => {
                            match gso {
                                None => outs.extend(rx.egress),
                                Some((g, payload)) => super_egress(
                                    rx.egress,
                                    g,
                                    payload,
                                    |p| {
                                        targets
                                            .get(p)
                                            .is_some_and(|t| self.links[t].sock.vnet_hdr())
                                    },
                                    &mut outs,
                                    &mut out_hdr,
                                    &mut pool,
                                    &mut drops,
                                ),
                            }
                            if let Some(d) = rx.dropped {
                                drops.push(d);
                            }
                        }
                        Err(e) => drops.push((
                            format!("{} ({})", self.links[i].port.ifname, role_name(role)),
                            e.to_string(),
                        )),
                    }
                }
                if tick_due && let Forwarder::Node(node) = &self.who {
                    last_tick = std::time::Instant::now();
                    // The only error is an unknown node, and this thread's node is known.
                    if let Ok(rx) = dp.tick(node, last_tick) {
                        outs.extend(rx.egress);
                    }
                }
            }
            if read == 0 && drops.is_empty() && outs.is_empty() {
                // 3. Nothing read, nothing emitted: sleep until an interface or a request
                //    wakes us (or the stop flag or the next tick is due a look).
                if self
                    .links
                    .iter()
                    .any(|l| l.ring.as_ref().is_some_and(RxRing::ready))
                {
                    continue;
                }
                if !yielded {
                    // Give the CPU to whoever is about to hand us frames (on a machine with
                    // fewer cores than busy threads, the sender is often runnable but not
                    // running) and look once more, before paying for a sleep and a wake-up.
                    yielded = true;
                    std::thread::yield_now();
                    continue;
                }
                yielded = false;
                let ms = TICK.as_millis() as libc::c_int;
                // SAFETY: fds is a live slice of pollfd.
                let n = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, ms) };
                if n == 0 {
                    // Idle: a good moment to collect what the kernel dropped meanwhile.
                    self.count_ring_drops(stats);
                }
                if n > 0 && fds.last().is_some_and(|f| f.revents & libc::POLLIN != 0) {
                    let mut b = [0u8; 8];
                    // SAFETY: reads the eventfd counter into a live 8-byte buffer.
                    unsafe { libc::read(self.wake.as_raw_fd(), b.as_mut_ptr().cast(), 8) };
                }
                continue;
            }
            yielded = false;
            if read > 0 {
                stats.rx.fetch_add(read as u64, Ordering::Relaxed);
                stats.batches.fetch_add(1, Ordering::Relaxed);
            }
            // 4. Record the drops, with their reasons.
            if !drops.is_empty() {
                stats
                    .dropped
                    .fetch_add(drops.len() as u64, Ordering::Relaxed);
                let mut recent = stats
                    .recent_drops
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                for d in drops.drain(..) {
                    if recent.len() == RECENT_DROPS {
                        recent.pop_front();
                    }
                    recent.push_back(d);
                }
            }
            // 5. Write what the pass emitted: one sendmmsg per interface, in order.
            per_link.resize_with(self.links.len(), Vec::new);
            let mut unroutable = 0u64;
            for (k, e) in outs.iter().enumerate() {
                match targets.get(&e.place) {
                    Some(t) => per_link[t].push(k),
                    None => unroutable += 1,
                }
            }
            out_hdr.resize(outs.len(), None);
            for (t, ks) in per_link.iter_mut().enumerate() {
                if ks.is_empty() {
                    continue;
                }
                let link = &mut self.links[t];
                if link.sock.vnet_hdr() {
                    // A pod's kernel: consecutive segments of one connection go as one
                    // super-frame (GRO), super-frames from a local pod stay whole.
                    let mut emit = |f: Vec<u8>, h: VnetHdr| wire.push((f, h));
                    let mut recycle = |f: Vec<u8>| {
                        if pool.len() < POOL {
                            pool.push(f);
                        }
                    };
                    let merged_before = link.coalescer.merged;
                    for k in ks.iter() {
                        let f = std::mem::take(&mut outs[*k].frame);
                        match out_hdr[*k] {
                            Some(h) => {
                                link.coalescer.flush(&mut emit);
                                emit(f, h);
                            }
                            None => link.coalescer.push(f, &mut emit, &mut recycle),
                        }
                    }
                    link.coalescer.flush(&mut emit);
                    // Every tap of the thread adds to the one counter.
                    stats
                        .coalesced
                        .fetch_add(link.coalescer.merged - merged_before, Ordering::Relaxed);
                } else {
                    wire.extend(
                        ks.iter()
                            .map(|k| (std::mem::take(&mut outs[*k].frame), VnetHdr::default())),
                    );
                }
                let frames: Vec<&[u8]> = wire.iter().map(|(f, _)| f.as_slice()).collect();
                let hdrs: Vec<VnetHdr> = wire.iter().map(|(_, h)| *h).collect();
                let (ok, failed, _) = link.sock.send_many(&frames, &hdrs);
                stats.tx.fetch_add(ok as u64, Ordering::Relaxed);
                stats
                    .send_errors
                    .fetch_add(failed as u64, Ordering::Relaxed);
                ks.clear();
                for (f, _) in wire.drain(..) {
                    if pool.len() < POOL && f.capacity() >= self.slot {
                        pool.push(f);
                    }
                }
            }
            out_hdr.clear();
            stats.send_errors.fetch_add(unroutable, Ordering::Relaxed);
            for e in outs.drain(..) {
                if pool.len() < POOL && e.frame.capacity() >= self.slot {
                    pool.push(e.frame);
                }
            }
            passes += 1;
            if passes.is_multiple_of(1024) {
                self.count_ring_drops(stats);
            }
        }
    }
}

/// What the forwarding core emitted for a TCP super-frame of `payload` bytes: whole to a
/// pod's tap (`to_vnet`: the pod's kernel takes it as one packet), cut into wire-sized
/// segments anywhere else (the underlay, vhost0, a service instance) — the super-frame's
/// checksum is still partial, so even a frame that fits one segment gets it completed here.
/// An emitted frame with no TCP segment this side can find is either one the core made in
/// answer (an ICMP error quoting a header: shorter than the payload, complete, sent as it
/// is) or the super-frame itself in a form that cannot be cut (dropped into `drops` with the
/// reason: sent as it is, its partial checksum would reach nobody intact).
#[allow(clippy::too_many_arguments)]
fn super_egress(
    egress: Vec<Egress>,
    gso: TcpGso,
    payload: usize,
    to_vnet: impl Fn(&Place) -> bool,
    outs: &mut Vec<Egress>,
    out_hdr: &mut Vec<Option<VnetHdr>>,
    pool: &mut Vec<Vec<u8>>,
    drops: &mut Vec<(String, String)>,
) {
    for mut e in egress {
        let Some(l) = tcp_layers(&e.frame) else {
            if e.frame.len() < payload {
                outs.push(e);
                continue;
            }
            drops.push((
                place_name(&e.place),
                format!(
                    "a TCP super-frame ({} bytes, segment size {}) left the forwarding core in a form whose headers do not parse (an encapsulation this side cannot cut into segments)",
                    e.frame.len(),
                    gso.mss
                ),
            ));
            if pool.len() < POOL {
                pool.push(e.frame);
            }
            continue;
        };
        if to_vnet(&e.place)
            && let Some(h) = gso_header(&mut e.frame, &l, gso)
        {
            out_hdr.resize(outs.len(), None);
            out_hdr.push(Some(h));
            outs.push(e);
            continue;
        }
        segment_tcp(
            &e.frame,
            &l,
            gso,
            || pool.pop().unwrap_or_default(),
            |s| {
                outs.push(Egress {
                    place: e.place.clone(),
                    frame: s,
                })
            },
        );
        if pool.len() < POOL {
            pool.push(e.frame);
        }
    }
}

/// A GSO type's name (`virtio_net_hdr`'s `gso_type`, ECN bit aside).
fn gso_type_name(t: u8) -> &'static str {
    match t & !crate::packet::VIRTIO_NET_HDR_GSO_ECN {
        1 => "TCP over IPv4",
        3 => "UDP fragmentation",
        4 => "TCP over IPv6",
        5 => "UDP GSO",
        _ => "unknown",
    }
}

/// Where an emitted frame was going, for a drop's record.
fn place_name(p: &Place) -> String {
    match p {
        Place::Fabric => "to the fabric".into(),
        Place::Host => "to vhost0".into(),
        Place::Tap(v) => format!("to the tap of {v}"),
        Place::Client(c) => format!("to client {c}"),
    }
}

fn role_name(r: &Role) -> String {
    match r {
        Role::Fabric => "fabric".into(),
        Role::Host => "vhost0".into(),
        Role::Tap(v) => format!("tap of {v}"),
        Role::InstanceTap(v) => format!("service instance tap of {v}"),
        Role::Client(c) => format!("client {c}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use harness_scenario::Encapsulation;
    use harness_vrouter_sim::wire::encap;
    use harness_vrouter_sim::wire::frame::{self, Addrs, IcmpError, TcpFlags};

    fn addrs(src: &str, dst: &str) -> Addrs {
        Addrs {
            src_mac: [2; 6],
            dst_mac: [4; 6],
            src: src.parse().unwrap(),
            dst: dst.parse().unwrap(),
            ttl: 64,
        }
    }

    #[test]
    fn a_super_frames_egress_is_cut_answered_or_dropped_with_a_reason() {
        let payload: Vec<u8> = (0..5000u32).map(|i| (i * 31 + i / 97) as u8).collect();
        let flags = TcpFlags {
            ack: true,
            ..TcpFlags::default()
        };
        let big = frame::tcp(
            &addrs("10.0.0.1", "10.0.0.2"),
            40000,
            80,
            1,
            1,
            flags,
            &payload,
        );
        let outer = encap::Outer {
            addrs: addrs("192.168.0.11", "192.168.0.12"),
            entropy: 3,
        };
        let tunnelled = encap::encapsulate(Encapsulation::MplsOverGre, &outer, 17, &big);
        // The same with a GRE checksum announced: a tunnel this side cannot cut.
        let mut uncuttable = tunnelled.clone();
        uncuttable[34] |= 0x80;
        let answer = frame::icmp_error(
            &addrs("10.0.0.2", "10.0.0.1"),
            IcmpError::Unreachable(3),
            &big[14..],
        );
        let egress = vec![
            Egress {
                place: Place::Fabric,
                frame: tunnelled,
            },
            Egress {
                place: Place::Tap("vmi-a".into()),
                frame: answer.clone(),
            },
            Egress {
                place: Place::Fabric,
                frame: uncuttable,
            },
        ];
        let gso = TcpGso {
            mss: 1448,
            ecn: false,
        };
        let (mut outs, mut hdrs, mut pool, mut drops) =
            (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        super_egress(
            egress,
            gso,
            payload.len(),
            |_| false,
            &mut outs,
            &mut hdrs,
            &mut pool,
            &mut drops,
        );
        // Four wire segments, then the ICMP answer as it was; the uncuttable one dropped.
        assert_eq!(
            outs.len(),
            5,
            "{:?}",
            outs.iter().map(|e| e.frame.len()).collect::<Vec<_>>()
        );
        assert!(outs[..4].iter().all(|e| e.place == Place::Fabric
            && e.frame.len() <= 1514 + 50
            && frame::checksums_ok(&e.frame)));
        assert_eq!(outs[4].frame, answer);
        assert_eq!(drops.len(), 1, "{drops:?}");
        assert_eq!(drops[0].0, "to the fabric");
        assert!(drops[0].1.contains("do not parse"), "{drops:?}");
    }
}
