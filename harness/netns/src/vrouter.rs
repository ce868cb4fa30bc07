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
use crate::packet::{PacketSocket, RingFrame, RxRing};

/// What an interface the forwarder owns is to the forwarding core.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Role {
    /// The physical interface on the underlay.
    Fabric,
    /// The vrouter's end of the vhost0 pair (the node's own IP stack).
    Host,
    /// A workload's tap (VMI uuid).
    Tap(String),
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
    /// Frames whose TCP/UDP checksum the kernel left partial and this side completed.
    pub checksums_completed: AtomicU64,
    /// Frames the forwarding core dropped.
    pub dropped: AtomicU64,
    /// Frames that could not be written (queue full, interface gone).
    pub send_errors: AtomicU64,
    /// Batches forwarded (one lock acquisition each): `rx / batches` is the mean batch.
    pub batches: AtomicU64,
    /// Frames the kernel dropped before the forwarder saw them (a receive ring was full).
    pub ring_drops: AtomicU64,
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
/// Bytes of receive ring on a workload's tap (one pod's bursts).
const TAP_RING_BYTES: usize = 4 << 20;
/// Buffers kept for reuse.
const POOL: usize = 512;
/// How long [`VrouterHandle`] waits for the thread to act on a request.
const CONTROL_TIMEOUT: Duration = Duration::from_secs(5);

fn ingress_of(role: &Role) -> Ingress<'_> {
    match role {
        Role::Fabric | Role::Client(_) => Ingress::Fabric,
        Role::Host => Ingress::Host,
        Role::Tap(vmi) => Ingress::Tap(vmi),
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
    /// of interface `vmi`; returns once its socket is open.
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
}

impl Link {
    fn open(port: Port, slot: usize, ns: &str) -> Result<Link, NetnsError> {
        let sock = PacketSocket::open(Some(&port.ifname)).map_err(|e| NetnsError::Io {
            what: format!("AF_PACKET socket on {} in {ns}", port.ifname),
            source: e,
        })?;
        let bytes = match port.role {
            Role::Tap(_) => TAP_RING_BYTES,
            _ => RING_BYTES,
        };
        let ring = sock.rx_ring(slot, bytes).ok();
        Ok(Link { port, sock, ring })
    }

    /// The next frame into `buf`.
    fn read(&mut self, buf: &mut Vec<u8>) -> Option<RingFrame> {
        match &mut self.ring {
            Some(r) => r.next(buf),
            None => {
                buf.resize(MAX_FRAME, 0);
                match self.sock.recv(buf) {
                    Ok(Some(m)) => {
                        buf.truncate(m.len);
                        Some(RingFrame::Frame {
                            len: m.len,
                            checksum_completed: m.checksum_completed,
                        })
                    }
                    _ => None,
                }
            }
        }
    }
}

const MAX_FRAME: usize = 65_536;

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
                Role::Tap(v) => {
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
    fn control(&mut self) -> bool {
        let mut changed = false;
        while let Ok(c) = self.ctl.try_recv() {
            match c {
                Control::AddTap { port, reply } => {
                    if let Role::Tap(vmi) = &port.role {
                        self.links
                            .retain(|l| !matches!(&l.port.role, Role::Tap(v) if v == vmi));
                    }
                    let r = Link::open(port, self.slot, &self.ns).map(|l| self.links.push(l));
                    changed = true;
                    let _ = reply.send(r);
                }
                Control::RemoveTap { vmi, reply } => {
                    self.links
                        .retain(|l| !matches!(&l.port.role, Role::Tap(v) if *v == vmi));
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
        let mut batch: Vec<(usize, Vec<u8>)> = Vec::with_capacity(BATCH * 4);
        let mut outs: Vec<Egress> = Vec::with_capacity(BATCH * 4);
        let mut per_link: Vec<Vec<usize>> = Vec::new();
        let mut drops: Vec<(String, String)> = Vec::new();
        let mut passes = 0u64;
        let mut yielded = false;
        while !stop.load(Ordering::Relaxed) {
            if self.control() {
                targets = Targets::of(&self.links);
                fds = self.pollfds();
            }
            // 1. Read what the rings hold, a bounded number per interface.
            for (i, link) in self.links.iter_mut().enumerate() {
                for _ in 0..BATCH {
                    let mut buf = pool.pop().unwrap_or_else(|| Vec::with_capacity(self.slot));
                    match link.read(&mut buf) {
                        Some(RingFrame::Frame {
                            checksum_completed, ..
                        }) => {
                            if checksum_completed {
                                stats.checksums_completed.fetch_add(1, Ordering::Relaxed);
                            }
                            batch.push((i, buf));
                        }
                        Some(RingFrame::Truncated(len)) => {
                            pool.push(buf);
                            drops.push((
                                format!("{} ({})", link.port.ifname, role_name(&link.port.role)),
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
            if batch.is_empty() && drops.is_empty() {
                // 2. Nothing waiting anywhere: sleep until an interface or a request wakes
                //    us (or the stop flag is due a look).
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
                // SAFETY: fds is a live slice of pollfd.
                let n = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, 50) };
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
            stats.rx.fetch_add(batch.len() as u64, Ordering::Relaxed);
            stats.batches.fetch_add(1, Ordering::Relaxed);
            // 3. Forward the whole batch under one lock.
            {
                let mut dp = dp.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
                for (i, frame) in batch.drain(..) {
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
                            outs.extend(rx.egress);
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
            }
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
            // 4. Write what the batch emitted: one sendmmsg per interface, in order.
            per_link.resize_with(self.links.len(), Vec::new);
            let mut unroutable = 0u64;
            for (k, e) in outs.iter().enumerate() {
                match targets.get(&e.place) {
                    Some(t) => per_link[t].push(k),
                    None => unroutable += 1,
                }
            }
            for (t, ks) in per_link.iter_mut().enumerate() {
                if ks.is_empty() {
                    continue;
                }
                let frames: Vec<&[u8]> = ks.iter().map(|k| outs[*k].frame.as_slice()).collect();
                let (ok, failed, _) = self.links[t].sock.send_many(&frames);
                stats.tx.fetch_add(ok as u64, Ordering::Relaxed);
                stats
                    .send_errors
                    .fetch_add(failed as u64, Ordering::Relaxed);
                ks.clear();
            }
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

fn role_name(r: &Role) -> String {
    match r {
        Role::Fabric => "fabric".into(),
        Role::Host => "vhost0".into(),
        Role::Tap(v) => format!("tap of {v}"),
        Role::Client(c) => format!("client {c}"),
    }
}
