//! A raw `AF_PACKET, SOCK_RAW` socket bound to one interface of the calling thread's network
//! namespace (the socket keeps that namespace for its whole life), plus the checksum
//! completion a frame marked CHECKSUM_PARTIAL needs.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

use harness_vrouter_sim::wire::{fold_checksum, ones_sum, sctp};

const ETH_P_ALL: u16 = 0x0003;
const SOL_PACKET: libc::c_int = 263;
const PACKET_AUXDATA: libc::c_int = 8;
const PACKET_IGNORE_OUTGOING: libc::c_int = 23;
const PACKET_OUTGOING: u8 = 4;
/// `TP_STATUS_CSUMNOTREADY`: the L4 checksum holds only the pseudo-header sum.
const TP_STATUS_CSUMNOTREADY: u32 = 1 << 3;

#[repr(C)]
#[derive(Default, Clone, Copy)]
struct TpacketAuxdata {
    tp_status: u32,
    tp_len: u32,
    tp_snaplen: u32,
    tp_mac: u16,
    tp_net: u16,
    tp_vlan_tci: u16,
    tp_vlan_tpid: u16,
}

/// A received frame's metadata.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RxMeta {
    /// Bytes received.
    pub len: usize,
    /// The interface it arrived on (for sockets bound to every interface).
    pub ifindex: i32,
    /// The kernel left the TCP/UDP checksum (or the SCTP CRC32c) partial;
    /// [`complete_checksum`] fixed it.
    pub checksum_completed: bool,
    /// A TCP super-frame (a socket with [`PacketSocket::enable_vnet_hdr`] only): its
    /// checksum is left partial, [`segment_tcp`] or [`gso_header`] finish it.
    pub gso: Option<TcpGso>,
    /// A super-frame of a kind this side cannot cut (its `virtio_net_hdr` `gso_type`, e.g.
    /// [`VIRTIO_NET_HDR_GSO_UDP_L4`]: UDP GSO, which recent kernels hand to AF_PACKET):
    /// its checksum is left as it came; not to be forwarded.
    pub unsupported_gso: Option<u8>,
}

/// What a received frame's offload state asks of the reader, applied to `frame`: a partial
/// checksum (`csum_not_ready`: `TP_STATUS_CSUMNOTREADY` from the auxdata, or the vnet
/// header's `NEEDS_CSUM`) is completed unless the frame is a super-frame, whose checksum the
/// segmentation finishes. Returns (checksum completed, TCP GSO, another GSO type).
fn rx_offloads(
    vnet: &VnetHdr,
    csum_not_ready: bool,
    frame: &mut [u8],
) -> (bool, Option<TcpGso>, Option<u8>) {
    let gso = vnet.tcp_gso();
    let unsupported = vnet.unsupported_gso();
    let partial = gso.is_none()
        && unsupported.is_none()
        && (csum_not_ready || vnet.flags & VIRTIO_NET_HDR_F_NEEDS_CSUM != 0);
    if partial {
        complete_checksum(frame);
    }
    (partial, gso, unsupported)
}

/// The `tp_status` of the `PACKET_AUXDATA` control message of a received message (0 when
/// there is none).
///
/// # Safety
/// `msg` is a message header the kernel just filled, whose control buffer is still live.
unsafe fn aux_status(msg: &libc::msghdr) -> u32 {
    let mut status = 0u32;
    // SAFETY: walking the control buffer the kernel filled, with the libc macros.
    unsafe {
        let mut c = libc::CMSG_FIRSTHDR(msg);
        while !c.is_null() {
            if (*c).cmsg_level == SOL_PACKET && (*c).cmsg_type == PACKET_AUXDATA {
                let aux: TpacketAuxdata = std::ptr::read_unaligned(libc::CMSG_DATA(c).cast());
                status = aux.tp_status;
            }
            c = libc::CMSG_NXTHDR(msg, c);
        }
    }
    status
}

/// An AF_PACKET socket.
#[derive(Debug)]
pub struct PacketSocket {
    fd: OwnedFd,
    ifindex: i32,
    /// Every frame read or written is preceded by a `struct virtio_net_hdr`
    /// ([`PacketSocket::enable_vnet_hdr`]).
    vnet: bool,
}

/// The index of interface `name` in the calling thread's namespace.
pub fn ifindex(name: &str) -> io::Result<i32> {
    let c = std::ffi::CString::new(name).map_err(io::Error::other)?;
    // SAFETY: a valid NUL-terminated string.
    let i = unsafe { libc::if_nametoindex(c.as_ptr()) };
    if i == 0 {
        return Err(io::Error::new(
            io::ErrorKind::NotFound,
            format!("no interface {name}"),
        ));
    }
    Ok(i as i32)
}

impl PacketSocket {
    /// Opens a non-blocking socket bound to interface `name` (or every interface when `None`)
    /// of the calling thread's namespace. It does not see its own transmissions
    /// (`PACKET_IGNORE_OUTGOING`) and reports partial checksums (`PACKET_AUXDATA`).
    ///
    /// # Errors
    /// The system calls' (CAP_NET_RAW, unknown interface).
    pub fn open(name: Option<&str>) -> io::Result<PacketSocket> {
        let index = match name {
            Some(n) => ifindex(n)?,
            None => 0,
        };
        // Protocol 0 at creation: the socket receives nothing until it is bound to the one
        // interface, so no frame of another interface slips in between.
        // SAFETY: plain socket creation.
        let fd = unsafe {
            libc::socket(
                libc::AF_PACKET,
                libc::SOCK_RAW | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
                0,
            )
        };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: fd was just returned by socket().
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        let one: libc::c_int = 1;
        setsockopt(fd.as_raw_fd(), SOL_PACKET, PACKET_AUXDATA, one)?;
        // Not fatal on kernels before 4.20: outgoing frames are also skipped by type below.
        let _ = setsockopt(fd.as_raw_fd(), SOL_PACKET, PACKET_IGNORE_OUTGOING, one);
        let bufsize: libc::c_int = 4 << 20;
        let _ = setsockopt(fd.as_raw_fd(), libc::SOL_SOCKET, libc::SO_RCVBUF, bufsize);
        let _ = setsockopt(fd.as_raw_fd(), libc::SOL_SOCKET, libc::SO_SNDBUF, bufsize);
        // SAFETY: zeroed sockaddr_ll is a valid value.
        let mut sll: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        sll.sll_family = libc::AF_PACKET as u16;
        sll.sll_protocol = ETH_P_ALL.to_be();
        sll.sll_ifindex = index;
        // SAFETY: sll is a valid sockaddr_ll of the stated size.
        let rc = unsafe {
            libc::bind(
                fd.as_raw_fd(),
                (&sll as *const libc::sockaddr_ll).cast(),
                std::mem::size_of::<libc::sockaddr_ll>() as u32,
            )
        };
        if rc != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(PacketSocket {
            fd,
            ifindex: index,
            vnet: false,
        })
    }

    /// The bound interface's index (0: every interface).
    pub fn ifindex(&self) -> i32 {
        self.ifindex
    }

    /// Receives one frame into `buf`; `None` when nothing is queued. Frames this host sent
    /// are skipped; a partial TCP/UDP checksum or SCTP CRC32c is completed in place (except
    /// in a super-frame, see [`RxMeta::gso`]).
    ///
    /// # Errors
    /// The system call's.
    pub fn recv(&self, buf: &mut [u8]) -> io::Result<Option<RxMeta>> {
        loop {
            // SAFETY: zeroed sockaddr_ll / msghdr are valid; every pointer below points at
            // live locals of the right size for the duration of the call.
            let mut sll: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
            let mut cmsg_buf = [0u64; 16];
            let mut iov = libc::iovec {
                iov_base: buf.as_mut_ptr().cast(),
                iov_len: buf.len(),
            };
            let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
            msg.msg_name = (&mut sll as *mut libc::sockaddr_ll).cast();
            msg.msg_namelen = std::mem::size_of::<libc::sockaddr_ll>() as u32;
            msg.msg_iov = &mut iov;
            msg.msg_iovlen = 1;
            msg.msg_control = cmsg_buf.as_mut_ptr().cast();
            msg.msg_controllen = std::mem::size_of_val(&cmsg_buf) as _;
            let n = unsafe { libc::recvmsg(self.fd.as_raw_fd(), &mut msg, libc::MSG_TRUNC) };
            if n < 0 {
                let e = io::Error::last_os_error();
                return match e.kind() {
                    io::ErrorKind::WouldBlock => Ok(None),
                    io::ErrorKind::Interrupted => continue,
                    _ => Err(e),
                };
            }
            if sll.sll_pkttype == PACKET_OUTGOING {
                continue;
            }
            let mut n = n as usize;
            if n > buf.len() {
                // Truncated: bigger than any MTU we configure; not a frame we can forward.
                continue;
            }
            let mut vnet = VnetHdr::default();
            if self.vnet {
                if n < VNET_HDR_LEN {
                    continue;
                }
                vnet = VnetHdr::from_bytes(&buf[..VNET_HDR_LEN]);
                buf.copy_within(VNET_HDR_LEN..n, 0);
                n -= VNET_HDR_LEN;
            }
            // SAFETY: msg was just filled by recvmsg; cmsg_buf is live.
            let status = unsafe { aux_status(&msg) };
            let (partial, gso, unsupported_gso) =
                rx_offloads(&vnet, status & TP_STATUS_CSUMNOTREADY != 0, &mut buf[..n]);
            return Ok(Some(RxMeta {
                len: n,
                ifindex: sll.sll_ifindex,
                checksum_completed: partial,
                gso,
                unsupported_gso,
            }));
        }
    }

    /// Sends one frame out of the bound interface (an ordinary frame: on a socket with
    /// [`PacketSocket::enable_vnet_hdr`] it gets an empty `virtio_net_hdr`).
    ///
    /// # Errors
    /// The system call's (a full queue gives `WouldBlock`).
    pub fn send(&self, frame: &[u8]) -> io::Result<()> {
        let hdr = VnetHdr::default().to_bytes();
        let mut iov = [
            libc::iovec {
                iov_base: hdr.as_ptr() as *mut libc::c_void,
                iov_len: hdr.len(),
            },
            libc::iovec {
                iov_base: frame.as_ptr() as *mut libc::c_void,
                iov_len: frame.len(),
            },
        ];
        let first = usize::from(!self.vnet);
        // SAFETY: zeroed msghdr is valid; its iovecs point at live buffers.
        let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
        msg.msg_iov = iov[first..].as_mut_ptr();
        msg.msg_iovlen = (2 - first) as _;
        loop {
            // SAFETY: msg points at live iovecs for the duration of the call.
            let n = unsafe { libc::sendmsg(self.fd.as_raw_fd(), &msg, libc::MSG_DONTWAIT) };
            if n >= 0 {
                return Ok(());
            }
            let e = io::Error::last_os_error();
            if e.kind() != io::ErrorKind::Interrupted {
                return Err(e);
            }
        }
    }

    /// Sends, waiting briefly for room when the socket's queue is full.
    ///
    /// # Errors
    /// The system call's, or still no room after about 50 ms.
    pub fn send_blocking(&self, frame: &[u8]) -> io::Result<()> {
        for _ in 0..50 {
            match self.send(frame) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    let mut p = libc::pollfd {
                        fd: self.fd.as_raw_fd(),
                        events: libc::POLLOUT,
                        revents: 0,
                    };
                    // SAFETY: one valid pollfd.
                    unsafe { libc::poll(&mut p, 1, 1) };
                }
                r => return r,
            }
        }
        Err(io::Error::new(
            io::ErrorKind::WouldBlock,
            "AF_PACKET send queue full",
        ))
    }
}

/// `PACKET_RX_RING`, `PACKET_VERSION`, `PACKET_QDISC_BYPASS` and `TPACKET_V2` (linux/if_packet.h).
const PACKET_RX_RING: libc::c_int = 5;
const PACKET_VERSION: libc::c_int = 10;
const PACKET_QDISC_BYPASS: libc::c_int = 20;
const TPACKET_V2: libc::c_int = 1;
/// `tp_status` of a ring slot: owned by the kernel / holding a frame for user space.
const TP_STATUS_KERNEL: u32 = 0;
const TP_STATUS_USER: u32 = 1;
/// `TPACKET_ALIGN(sizeof(struct tpacket2_hdr))`: where the `sockaddr_ll` of a slot starts.
const TPACKET2_HDR_LEN: usize = 32;

#[repr(C)]
struct TpacketReq {
    tp_block_size: u32,
    tp_block_nr: u32,
    tp_frame_size: u32,
    tp_frame_nr: u32,
}

/// The head of a TPACKET_V2 ring slot (`struct tpacket2_hdr`).
#[repr(C)]
struct Tpacket2Hdr {
    tp_status: u32,
    tp_len: u32,
    tp_snaplen: u32,
    tp_mac: u16,
    tp_net: u16,
    tp_sec: u32,
    tp_nsec: u32,
    tp_vlan_tci: u16,
    tp_vlan_tpid: u16,
    tp_padding: [u8; 4],
}

/// A frame read from a ring.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RingFrame {
    /// A frame of this many bytes was copied out (its partial checksum completed when
    /// `checksum_completed`).
    Frame {
        /// Bytes copied.
        len: usize,
        /// The kernel left the TCP/UDP checksum (SCTP CRC32c) partial and it was completed.
        checksum_completed: bool,
        /// A TCP super-frame (see [`RxMeta::gso`]).
        gso: Option<TcpGso>,
        /// A super-frame of another kind (see [`RxMeta::unsupported_gso`]).
        unsupported_gso: Option<u8>,
    },
    /// A frame bigger than a ring slot: only its first bytes were kept, so it is not
    /// forwarded (its real length).
    Truncated(usize),
}

/// A `PACKET_RX_RING` (TPACKET_V2) shared with the kernel: frames arrive without a system
/// call each; user space reads a slot whose status is `TP_STATUS_USER` and hands it back by
/// writing `TP_STATUS_KERNEL`. V2 (not V3) because its slots are visible to user space one
/// frame at a time: V3 hands over whole blocks, on a timer of at least a millisecond when
/// traffic is light, which would add that to every probe's round trip.
pub struct RxRing {
    map: *mut u8,
    map_len: usize,
    frame_size: usize,
    frame_nr: usize,
    head: usize,
    /// Each slot holds a `struct virtio_net_hdr` right before the frame.
    vnet: bool,
}

// SAFETY: the mapping is owned by this value (unmapped on drop) and only accessed through
// `&mut self`; the kernel side synchronises through each slot's status word.
unsafe impl Send for RxRing {}

impl std::fmt::Debug for RxRing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RxRing")
            .field("frame_size", &self.frame_size)
            .field("frame_nr", &self.frame_nr)
            .finish()
    }
}

impl RxRing {
    /// The status word of slot `i`.
    fn status(&self, i: usize) -> &std::sync::atomic::AtomicU32 {
        // SAFETY: slot i lies inside the mapping; tp_status is its first, 4-aligned field,
        // written by the kernel concurrently, hence atomic access.
        unsafe { &*(self.map.add(i * self.frame_size) as *const std::sync::atomic::AtomicU32) }
    }

    /// Whether a frame is waiting (no system call).
    pub fn ready(&self) -> bool {
        self.status(self.head)
            .load(std::sync::atomic::Ordering::Acquire)
            & TP_STATUS_USER
            != 0
    }

    /// Copies the next frame into `buf` and hands its slot back to the kernel; `None` when the
    /// ring is empty. Frames this host sent (`PACKET_OUTGOING`) are skipped.
    pub fn next(&mut self, buf: &mut Vec<u8>) -> Option<RingFrame> {
        loop {
            let st = self.status(self.head);
            let status = st.load(std::sync::atomic::Ordering::Acquire);
            if status & TP_STATUS_USER == 0 {
                return None;
            }
            // SAFETY: the slot belongs to user space until its status is written back; its
            // header, sockaddr_ll and data lie inside the slot (the kernel guarantees
            // tp_mac + tp_snaplen <= frame_size).
            let (len, snaplen, mac, pkttype) = unsafe {
                let slot = self.map.add(self.head * self.frame_size);
                let h = &*(slot as *const Tpacket2Hdr);
                let sll = &*(slot.add(TPACKET2_HDR_LEN) as *const libc::sockaddr_ll);
                (
                    h.tp_len as usize,
                    h.tp_snaplen as usize,
                    usize::from(h.tp_mac),
                    sll.sll_pkttype,
                )
            };
            let ok = mac + snaplen <= self.frame_size && (!self.vnet || mac >= VNET_HDR_LEN);
            let r = if pkttype == PACKET_OUTGOING || !ok {
                None
            } else if snaplen < len {
                Some(RingFrame::Truncated(len))
            } else {
                buf.clear();
                // SAFETY: bounds checked above.
                buf.extend_from_slice(unsafe {
                    std::slice::from_raw_parts(
                        self.map.add(self.head * self.frame_size + mac),
                        snaplen,
                    )
                });
                let vnet = if self.vnet {
                    // SAFETY: the header lies in the slot right before the frame (checked
                    // above: mac >= VNET_HDR_LEN).
                    VnetHdr::from_bytes(unsafe {
                        std::slice::from_raw_parts(
                            self.map
                                .add(self.head * self.frame_size + mac - VNET_HDR_LEN),
                            VNET_HDR_LEN,
                        )
                    })
                } else {
                    VnetHdr::default()
                };
                let (partial, gso, unsupported_gso) =
                    rx_offloads(&vnet, status & TP_STATUS_CSUMNOTREADY != 0, buf);
                Some(RingFrame::Frame {
                    len: snaplen,
                    checksum_completed: partial,
                    gso,
                    unsupported_gso,
                })
            };
            st.store(TP_STATUS_KERNEL, std::sync::atomic::Ordering::Release);
            self.head = (self.head + 1) % self.frame_nr;
            if r.is_some() {
                return r;
            }
        }
    }
}

impl Drop for RxRing {
    fn drop(&mut self) {
        // SAFETY: map/map_len came from a successful mmap.
        unsafe { libc::munmap(self.map.cast(), self.map_len) };
    }
}

/// The size of a ring slot that holds frames of up to `max_frame` bytes: the slot header,
/// the `sockaddr_ll`, the kernel's alignment padding and the frame, rounded up to a power of
/// two (so slots tile the ring's blocks).
pub fn ring_slot_size(max_frame: usize) -> usize {
    (max_frame + 128).next_power_of_two().max(2048)
}

impl PacketSocket {
    /// Switches the socket to a TPACKET_V2 receive ring of about `bytes` bytes in slots of
    /// `slot` bytes ([`ring_slot_size`]), and lets transmissions skip the qdisc layer (the
    /// veths are `noqueue` anyway; `PACKET_QDISC_BYPASS` saves the lookup).
    ///
    /// # Errors
    /// The system calls' (a kernel without `PACKET_RX_RING`, no memory for the ring).
    pub fn rx_ring(&self, slot: usize, bytes: usize) -> io::Result<RxRing> {
        let fd = self.fd.as_raw_fd();
        let _ = setsockopt(fd, SOL_PACKET, PACKET_QDISC_BYPASS, 1);
        setsockopt(fd, SOL_PACKET, PACKET_VERSION, TPACKET_V2)?;
        // Blocks of 64 KiB (a few pages each: the kernel finds them even when memory is
        // fragmented), each holding a whole number of slots.
        let block = (64 << 10).max(slot);
        let block_nr = bytes.div_ceil(block).max(1);
        let per_block = block / slot;
        let req = TpacketReq {
            tp_block_size: block as u32,
            tp_block_nr: block_nr as u32,
            tp_frame_size: slot as u32,
            tp_frame_nr: (block_nr * per_block) as u32,
        };
        // SAFETY: req is a live tpacket_req of the stated size.
        let rc = unsafe {
            libc::setsockopt(
                fd,
                SOL_PACKET,
                PACKET_RX_RING,
                (&req as *const TpacketReq).cast(),
                std::mem::size_of::<TpacketReq>() as u32,
            )
        };
        if rc != 0 {
            return Err(io::Error::last_os_error());
        }
        let map_len = block * block_nr;
        // SAFETY: maps the ring the kernel just allocated for this socket.
        let map = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                map_len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                fd,
                0,
            )
        };
        if map == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        Ok(RxRing {
            map: map.cast(),
            map_len,
            frame_size: slot,
            frame_nr: block_nr * per_block,
            head: 0,
            vnet: self.vnet,
        })
    }

    /// Sends `frames` out of the bound interface with as few `sendmmsg` calls as the queue
    /// allows, waiting briefly for room when it is full. Returns how many were sent and how
    /// many failed, with the last error. On a socket with [`PacketSocket::enable_vnet_hdr`]
    /// frame `k` goes with `vnet[k]` (an empty header when `vnet` is shorter: an ordinary
    /// frame); elsewhere `vnet` is ignored.
    pub fn send_many(
        &self,
        frames: &[&[u8]],
        vnet: &[VnetHdr],
    ) -> (usize, usize, Option<io::Error>) {
        const MAX: usize = 64;
        let mut sent = 0;
        let mut failed = 0;
        let mut last_err = None;
        let mut waits = 0;
        let mut iovs: [[libc::iovec; 2]; MAX] = [[libc::iovec {
            iov_base: std::ptr::null_mut(),
            iov_len: 0,
        }; 2]; MAX];
        let mut hdrs = [[0u8; VNET_HDR_LEN]; MAX];
        let first = usize::from(!self.vnet);
        // SAFETY: an all-zero mmsghdr is a valid value (null pointers, zero lengths).
        let mut msgs: [libc::mmsghdr; MAX] = unsafe { std::mem::zeroed() };
        while sent + failed < frames.len() {
            let at = sent + failed;
            let n = (frames.len() - at).min(MAX);
            for k in 0..n {
                hdrs[k] = vnet.get(at + k).copied().unwrap_or_default().to_bytes();
                iovs[k] = [
                    libc::iovec {
                        iov_base: hdrs[k].as_mut_ptr().cast(),
                        iov_len: VNET_HDR_LEN,
                    },
                    libc::iovec {
                        iov_base: frames[at + k].as_ptr() as *mut libc::c_void,
                        iov_len: frames[at + k].len(),
                    },
                ];
                // SAFETY: zeroed msghdr is valid; the iovecs it points at live in `iovs`
                // (and the header in `hdrs`).
                msgs[k].msg_hdr = unsafe { std::mem::zeroed() };
                msgs[k].msg_hdr.msg_iov = iovs[k][first..].as_mut_ptr();
                msgs[k].msg_hdr.msg_iovlen = 2 - first;
            }
            // SAFETY: msgs[..n] are initialised and point at live frames.
            let rc = unsafe {
                libc::sendmmsg(
                    self.fd.as_raw_fd(),
                    msgs.as_mut_ptr(),
                    n as libc::c_uint,
                    libc::MSG_DONTWAIT,
                )
            };
            if rc > 0 {
                sent += rc as usize;
                waits = 0;
                continue;
            }
            let e = if rc == 0 {
                io::Error::from(io::ErrorKind::WouldBlock)
            } else {
                io::Error::last_os_error()
            };
            match e.kind() {
                io::ErrorKind::Interrupted => {}
                io::ErrorKind::WouldBlock if waits < 50 => {
                    waits += 1;
                    let mut p = libc::pollfd {
                        fd: self.fd.as_raw_fd(),
                        events: libc::POLLOUT,
                        revents: 0,
                    };
                    // SAFETY: one valid pollfd.
                    unsafe { libc::poll(&mut p, 1, 1) };
                }
                // One frame the interface refuses (too big, interface down) or that still
                // finds no room must not hold back the rest: count it and go on.
                _ => {
                    failed += 1;
                    waits = 0;
                    last_err = Some(e);
                }
            }
        }
        (sent, failed, last_err)
    }
}

impl PacketSocket {
    /// Receives up to `bufs.len()` frames with one `recvmmsg` into `bufs` (each emptied and
    /// given room for `max` bytes; the frame's bytes on return), their metadata into
    /// `metas` (cleared first); how many. Frames this host sent, truncated ones (bigger
    /// than `max`) and headerless ones are left out; partial checksums are completed as in
    /// [`PacketSocket::recv`] (told by the `virtio_net_hdr` or, without one, by each
    /// message's `PACKET_AUXDATA`). For sockets whose frames vary from 60 bytes to 64 KiB (a
    /// workload's TSO), where a ring's fixed slots would hold few frames.
    pub fn recv_many(&self, bufs: &mut [Vec<u8>], max: usize, metas: &mut Vec<RxMeta>) -> usize {
        const MAX: usize = 64;
        metas.clear();
        let n = bufs.len().min(MAX);
        let mut hdrs = [[0u8; VNET_HDR_LEN]; MAX];
        let mut iovs = [[libc::iovec {
            iov_base: std::ptr::null_mut(),
            iov_len: 0,
        }; 2]; MAX];
        // Room for each message's PACKET_AUXDATA (CMSG_SPACE(20) = 40 bytes on 64-bit).
        let mut cmsgs = [[0u64; 8]; MAX];
        // SAFETY: all-zero sockaddr_ll / mmsghdr are valid values.
        let mut slls: [libc::sockaddr_ll; MAX] = unsafe { std::mem::zeroed() };
        let mut msgs: [libc::mmsghdr; MAX] = unsafe { std::mem::zeroed() };
        let first = usize::from(!self.vnet);
        for k in 0..n {
            bufs[k].clear();
            bufs[k].reserve(max);
            iovs[k] = [
                libc::iovec {
                    iov_base: hdrs[k].as_mut_ptr().cast(),
                    iov_len: VNET_HDR_LEN,
                },
                libc::iovec {
                    iov_base: bufs[k].as_mut_ptr().cast(),
                    iov_len: max,
                },
            ];
            msgs[k].msg_hdr.msg_iov = iovs[k][first..].as_mut_ptr();
            msgs[k].msg_hdr.msg_iovlen = 2 - first;
            msgs[k].msg_hdr.msg_name = (&mut slls[k] as *mut libc::sockaddr_ll).cast();
            msgs[k].msg_hdr.msg_namelen = std::mem::size_of::<libc::sockaddr_ll>() as u32;
            msgs[k].msg_hdr.msg_control = cmsgs[k].as_mut_ptr().cast();
            msgs[k].msg_hdr.msg_controllen = std::mem::size_of_val(&cmsgs[k]) as _;
        }
        // SAFETY: msgs[..n] point at live iovecs, headers, addresses, control buffers and
        // buffers with room for `max` bytes each.
        let got = unsafe {
            libc::recvmmsg(
                self.fd.as_raw_fd(),
                msgs.as_mut_ptr(),
                n as libc::c_uint,
                libc::MSG_DONTWAIT | libc::MSG_TRUNC,
                std::ptr::null_mut(),
            )
        };
        if got <= 0 {
            return 0;
        }
        let mut kept = 0;
        for k in 0..got as usize {
            let len = msgs[k].msg_len as usize;
            let hdr_len = if self.vnet { VNET_HDR_LEN } else { 0 };
            if slls[k].sll_pkttype == PACKET_OUTGOING
                || len < hdr_len
                || len - hdr_len > max
                || msgs[k].msg_hdr.msg_flags & libc::MSG_TRUNC != 0
            {
                continue;
            }
            let len = len - hdr_len;
            // SAFETY: the kernel wrote `len` bytes into the buffer's reserved room.
            unsafe { bufs[k].set_len(len) };
            let vnet = if self.vnet {
                VnetHdr::from_bytes(&hdrs[k])
            } else {
                VnetHdr::default()
            };
            // SAFETY: msgs[k] was just filled by recvmmsg; cmsgs[k] is live.
            let status = unsafe { aux_status(&msgs[k].msg_hdr) };
            let (partial, gso, unsupported_gso) =
                rx_offloads(&vnet, status & TP_STATUS_CSUMNOTREADY != 0, &mut bufs[k]);
            bufs.swap(kept, k);
            metas.push(RxMeta {
                len,
                ifindex: slls[k].sll_ifindex,
                checksum_completed: partial,
                gso,
                unsupported_gso,
            });
            kept += 1;
        }
        kept
    }
}

/// `PACKET_VNET_HDR` (linux/if_packet.h).
const PACKET_VNET_HDR: libc::c_int = 15;

impl PacketSocket {
    /// Puts a `struct virtio_net_hdr` before every frame read and written, as a virtio NIC
    /// exchanges them with its host: what arrives keeps the kernel's offload state (a TCP
    /// super-frame of up to 64 KiB and its segment size, a checksum left partial), and what
    /// is written can be such a super-frame for the receiving kernel to take whole. Before
    /// [`PacketSocket::rx_ring`] (the ring's slots then hold the header too).
    ///
    /// # Errors
    /// The system call's (`EBUSY` once a ring is set up).
    pub fn enable_vnet_hdr(&mut self) -> io::Result<()> {
        setsockopt(self.fd.as_raw_fd(), SOL_PACKET, PACKET_VNET_HDR, 1)?;
        self.vnet = true;
        Ok(())
    }

    /// Sets the receive buffer to `bytes`, past `net.core.rmem_max` (`SO_RCVBUFFORCE`,
    /// CAP_NET_ADMIN; otherwise as much as `SO_RCVBUF` allows).
    pub fn force_rcvbuf(&self, bytes: usize) {
        let v = libc::c_int::try_from(bytes).unwrap_or(libc::c_int::MAX);
        if setsockopt(
            self.fd.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVBUFFORCE,
            v,
        )
        .is_err()
        {
            let _ = setsockopt(self.fd.as_raw_fd(), libc::SOL_SOCKET, libc::SO_RCVBUF, v);
        }
    }

    /// Whether frames go with a `struct virtio_net_hdr` ([`PacketSocket::enable_vnet_hdr`]).
    pub fn vnet_hdr(&self) -> bool {
        self.vnet
    }
}

const PACKET_STATISTICS: libc::c_int = 6;

impl PacketSocket {
    /// Frames the kernel dropped for this socket since the last call because its receive
    /// queue or ring was full (`PACKET_STATISTICS`, which resets on read).
    pub fn take_drops(&self) -> u64 {
        // struct tpacket_stats { unsigned int tp_packets, tp_drops; }
        let mut st = [0u32; 2];
        let mut len = std::mem::size_of_val(&st) as libc::socklen_t;
        // SAFETY: st is a live buffer of len bytes.
        let rc = unsafe {
            libc::getsockopt(
                self.fd.as_raw_fd(),
                SOL_PACKET,
                PACKET_STATISTICS,
                st.as_mut_ptr().cast(),
                &mut len,
            )
        };
        if rc == 0 { u64::from(st[1]) } else { 0 }
    }
}

impl AsRawFd for PacketSocket {
    fn as_raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

fn setsockopt(fd: RawFd, level: libc::c_int, opt: libc::c_int, v: libc::c_int) -> io::Result<()> {
    // SAFETY: v is a live c_int of the stated size.
    let rc = unsafe {
        libc::setsockopt(
            fd,
            level,
            opt,
            (&v as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as u32,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Completes the checksum of an Ethernet/IPv4 frame in place, what the NIC would have done
/// for a CHECKSUM_PARTIAL packet: TCP and UDP get the Internet checksum, SCTP its CRC32c
/// (a veth's transmit checksum offload covers SCTP too, `NETIF_F_SCTP_CRC`: a pod's INIT
/// arrives without one). Other frames (and fragments after the first) are left as they are.
pub fn complete_checksum(frame: &mut [u8]) {
    if frame.len() < 34 || frame[12..14] != [0x08, 0x00] {
        return;
    }
    let ihl = usize::from(frame[14] & 0x0f) * 4;
    let total = usize::from(u16::from_be_bytes([frame[16], frame[17]]));
    let l4 = 14 + ihl;
    let end = 14 + total;
    if ihl < 20 || end > frame.len() || l4 > end {
        return;
    }
    // Not for fragments after the first: their L4 header is elsewhere.
    if u16::from_be_bytes([frame[20], frame[21]]) & 0x1fff != 0 {
        return;
    }
    let proto = frame[23];
    let off = match proto {
        6 => 16,
        17 => 6,
        132 => {
            if let Ok(mut p) = sctp::Packet::new_checked(&mut frame[l4..end]) {
                p.fill_checksum();
            }
            return;
        }
        _ => return,
    };
    if l4 + off + 2 > end {
        return;
    }
    frame[l4 + off] = 0;
    frame[l4 + off + 1] = 0;
    let ph = pseudo(frame, 14, proto, end - l4);
    let mut c = fold_checksum(ones_sum(ph, &frame[l4..end]));
    if proto == 17 && c == 0 {
        c = 0xffff;
    }
    frame[l4 + off..l4 + off + 2].copy_from_slice(&c.to_be_bytes());
}

// ---------------------------------------------------------------------------------------------
// Offloads: the virtio_net_hdr, TCP segmentation (what a NIC's TSO does) and coalescing (what
// GRO does before a host's stack).

/// Bytes of `struct virtio_net_hdr`.
pub const VNET_HDR_LEN: usize = 10;
/// `VIRTIO_NET_HDR_F_NEEDS_CSUM`: the checksum at `csum_start + csum_offset` is partial.
pub const VIRTIO_NET_HDR_F_NEEDS_CSUM: u8 = 1;
/// `VIRTIO_NET_HDR_GSO_TCPV4`.
pub const VIRTIO_NET_HDR_GSO_TCPV4: u8 = 1;
/// `VIRTIO_NET_HDR_GSO_UDP_L4`: a UDP GSO super-frame (`UDP_SEGMENT`), which
/// `virtio_net_hdr_from_skb` reports to AF_PACKET on recent kernels.
pub const VIRTIO_NET_HDR_GSO_UDP_L4: u8 = 5;
/// `VIRTIO_NET_HDR_GSO_ECN`: the super-frame's first segment carries CWR.
pub const VIRTIO_NET_HDR_GSO_ECN: u8 = 0x80;
/// Largest IPv4 packet.
const IP_MAX: usize = 65_535;

/// `struct virtio_net_hdr`, in the host's byte order (AF_PACKET's legacy virtio layout).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct VnetHdr {
    /// `VIRTIO_NET_HDR_F_*`.
    pub flags: u8,
    /// `VIRTIO_NET_HDR_GSO_*`.
    pub gso_type: u8,
    /// Bytes of headers before the payload (a hint).
    pub hdr_len: u16,
    /// Payload bytes per segment.
    pub gso_size: u16,
    /// Where the partial checksum's coverage starts (from the frame's first byte).
    pub csum_start: u16,
    /// Where in that coverage the checksum field is.
    pub csum_offset: u16,
}

impl VnetHdr {
    /// Reads a header from its first [`VNET_HDR_LEN`] bytes (zeros when `b` is shorter).
    pub fn from_bytes(b: &[u8]) -> VnetHdr {
        let Some(b) = b.get(..VNET_HDR_LEN) else {
            return VnetHdr::default();
        };
        let u = |i: usize| u16::from_ne_bytes([b[i], b[i + 1]]);
        VnetHdr {
            flags: b[0],
            gso_type: b[1],
            hdr_len: u(2),
            gso_size: u(4),
            csum_start: u(6),
            csum_offset: u(8),
        }
    }

    /// The header's bytes.
    pub fn to_bytes(self) -> [u8; VNET_HDR_LEN] {
        let mut b = [0u8; VNET_HDR_LEN];
        b[0] = self.flags;
        b[1] = self.gso_type;
        b[2..4].copy_from_slice(&self.hdr_len.to_ne_bytes());
        b[4..6].copy_from_slice(&self.gso_size.to_ne_bytes());
        b[6..8].copy_from_slice(&self.csum_start.to_ne_bytes());
        b[8..10].copy_from_slice(&self.csum_offset.to_ne_bytes());
        b
    }

    /// The TCP segmentation a received frame asks for; `None` for an ordinary frame and for
    /// other GSO types (see [`VnetHdr::unsupported_gso`]).
    pub fn tcp_gso(&self) -> Option<TcpGso> {
        (self.gso_type & !VIRTIO_NET_HDR_GSO_ECN == VIRTIO_NET_HDR_GSO_TCPV4 && self.gso_size > 0)
            .then_some(TcpGso {
                mss: self.gso_size,
                ecn: self.gso_type & VIRTIO_NET_HDR_GSO_ECN != 0,
            })
    }

    /// The `gso_type` of a super-frame that is not TCP over IPv4: the kernel hands AF_PACKET
    /// TCP over IPv6 (4) and, since Linux 6.2, UDP GSO ([`VIRTIO_NET_HDR_GSO_UDP_L4`]) too.
    /// This side cannot cut those, so such a frame is not forwarded. `None` for an ordinary
    /// frame and a TCP/IPv4 one.
    pub fn unsupported_gso(&self) -> Option<u8> {
        (self.gso_type & !VIRTIO_NET_HDR_GSO_ECN != 0 && self.tcp_gso().is_none())
            .then_some(self.gso_type)
    }
}

/// How a TCP super-frame is cut: payload bytes per segment, and whether ECN's CWR flag
/// belongs to the first segment only.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TcpGso {
    /// Payload bytes per segment (the connection's MSS).
    pub mss: u16,
    /// `VIRTIO_NET_HDR_GSO_ECN`.
    pub ecn: bool,
}

/// Where the TCP segment of a frame lies: directly in the frame, or inside one of the
/// vrouter's tunnels (MPLS over UDP, VXLAN, MPLS over GRE).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TcpLayers {
    /// Offset of the tunnel's outer IPv4 header (`None`: not tunnelled).
    pub outer_ip: Option<usize>,
    /// Offset of the tunnel's outer UDP header (MPLSoUDP, VXLAN).
    pub outer_udp: Option<usize>,
    /// Offset of the IPv4 header that carries the TCP segment.
    pub ip: usize,
    /// Offset of the TCP header.
    pub tcp: usize,
    /// Offset of the TCP payload.
    pub payload: usize,
    /// End of the IPv4 packet that carries the TCP segment.
    pub end: usize,
}

fn be16(f: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_be_bytes([*f.get(at)?, *f.get(at + 1)?]))
}

/// An unfragmented IPv4 header at `at`: (header length, protocol, end of the packet).
fn ipv4_at(f: &[u8], at: usize) -> Option<(usize, u8, usize)> {
    let v = *f.get(at)?;
    let ihl = usize::from(v & 0x0f) * 4;
    let end = at + usize::from(be16(f, at + 2)?);
    if v >> 4 != 4 || ihl < 20 || end > f.len() || end < at + ihl {
        return None;
    }
    // MF or a fragment offset: the TCP header is elsewhere.
    if be16(f, at + 6)? & 0x3fff != 0 {
        return None;
    }
    Some((ihl, f[at + 9], end))
}

/// The end of an MPLS label stack starting at `at`.
fn mpls_end(f: &[u8], mut at: usize) -> Option<usize> {
    for _ in 0..8 {
        let bos = f.get(at + 2)? & 1 != 0;
        at += 4;
        if bos {
            return Some(at);
        }
    }
    None
}

/// Finds the TCP segment of an Ethernet/IPv4 frame, through the vrouter's encapsulations;
/// `None` when the frame carries no (unfragmented) TCP segment.
pub fn tcp_layers(f: &[u8]) -> Option<TcpLayers> {
    if f.get(12..14)? != [0x08, 0x00] {
        return None;
    }
    let (ihl, proto, end) = ipv4_at(f, 14)?;
    let l4 = 14 + ihl;
    let (outer_ip, outer_udp, ip) = match proto {
        6 => (None, None, 14),
        17 => {
            let inner = match be16(f, l4 + 2)? {
                harness_vrouter_sim::wire::encap::MPLS_UDP_PORT
                | harness_vrouter_sim::wire::encap::MPLS_UDP_LEGACY_PORT => mpls_end(f, l4 + 8)?,
                harness_vrouter_sim::wire::vxlan::UDP_PORT => {
                    let eth = l4 + 16;
                    if f.get(eth + 12..eth + 14)? != [0x08, 0x00] {
                        return None;
                    }
                    eth + 14
                }
                _ => return None,
            };
            (Some(14), Some(l4), inner)
        }
        47 => {
            let flags = be16(f, l4)?;
            // Not with a GRE checksum (C) or sequence number (S): segmenting would have to
            // recompute the one and number the other per segment, which `segment_tcp` does
            // not (the vrouter sets neither; a key, K, is the same in every segment).
            if be16(f, l4 + 2)? != 0x8847 || flags & (0x8000 | 0x1000 | 0x0007) != 0 {
                return None;
            }
            let opt = usize::from(flags & 0x2000 != 0);
            (Some(14), None, mpls_end(f, l4 + 4 + 4 * opt)?)
        }
        _ => return None,
    };
    let (ihl, proto, end) = if outer_ip.is_some() {
        let (i, p, e) = ipv4_at(f, ip)?;
        if e > end {
            return None;
        }
        (i, p, e)
    } else {
        (ihl, proto, end)
    };
    if proto != 6 {
        return None;
    }
    let tcp = ip + ihl;
    let doff = usize::from(*f.get(tcp + 12)? >> 4) * 4;
    if doff < 20 || tcp + doff > end {
        return None;
    }
    Some(TcpLayers {
        outer_ip,
        outer_udp,
        ip,
        tcp,
        payload: tcp + doff,
        end,
    })
}

/// The IPv4 pseudo-header sum for a transport segment of `len` bytes.
/// Not folded ([`ones_sum`] keeps it below 2^17; the addends below 2^16 each), so it can
/// seed another [`ones_sum`].
fn pseudo(f: &[u8], ip: usize, proto: u8, len: usize) -> u32 {
    ones_sum(0, &f[ip + 12..ip + 20]) + u32::from(proto) + len as u32
}

/// A sum folded to 16 bits, not complemented: what a partial checksum field holds.
fn fold16(sum: u32) -> u16 {
    !fold_checksum(sum)
}

fn put16(f: &mut [u8], at: usize, v: u16) {
    f[at..at + 2].copy_from_slice(&v.to_be_bytes());
}

fn ip_header_checksum(f: &mut [u8], ip: usize) {
    let ihl = usize::from(f[ip] & 0x0f) * 4;
    put16(f, ip + 10, 0);
    let c = fold_checksum(ones_sum(0, &f[ip..ip + ihl]));
    put16(f, ip + 10, c);
}

const TCP_FIN: u8 = 0x01;
const TCP_SYN: u8 = 0x02;
const TCP_RST: u8 = 0x04;
const TCP_PSH: u8 = 0x08;
const TCP_ACK: u8 = 0x10;
const TCP_URG: u8 = 0x20;
const TCP_CWR: u8 = 0x80;

/// Cuts the TCP super-frame `f` (laid out as `l`) into frames of at most `gso.mss` payload
/// bytes, what a NIC's TSO puts on the wire: each segment gets its sequence number, IPv4
/// lengths and identification, header checksums and a complete TCP checksum; FIN and PSH
/// stay with the last segment, CWR with the first. In a tunnel the outer IPv4 and UDP
/// headers are rewritten the same way; the outer UDP checksum (when in use) comes from the
/// headers alone, because a TCP segment with its checksum sums to the complement of its
/// pseudo-header. The TCP checksum of `f` may be anything (partial, full, stale). Each
/// segment is built in a buffer from `buf` and handed to `out`.
pub fn segment_tcp(
    f: &[u8],
    l: &TcpLayers,
    gso: TcpGso,
    mut buf: impl FnMut() -> Vec<u8>,
    mut out: impl FnMut(Vec<u8>),
) {
    let mss = usize::from(gso.mss.max(1));
    let payload = &f[l.payload..l.end];
    let head = &f[..l.payload];
    let seq0 = u32::from_be_bytes([f[l.tcp + 4], f[l.tcp + 5], f[l.tcp + 6], f[l.tcp + 7]]);
    let id0 = be16(f, l.ip + 4).unwrap_or(0);
    let outer_id0 = l.outer_ip.and_then(|o| be16(f, o + 4)).unwrap_or(0);
    let n = payload.len().div_ceil(mss).max(1);
    for (i, chunk) in payload
        .chunks(mss)
        .chain((n == 1 && payload.is_empty()).then_some(&[][..]))
        .enumerate()
    {
        let mut s = buf();
        s.clear();
        s.extend_from_slice(head);
        s.extend_from_slice(chunk);
        let seg_end = s.len();
        // The carrying IPv4 header.
        put16(&mut s, l.ip + 2, (seg_end - l.ip) as u16);
        put16(&mut s, l.ip + 4, id0.wrapping_add(i as u16));
        ip_header_checksum(&mut s, l.ip);
        // TCP: sequence, flags, checksum.
        let seq = seq0.wrapping_add((i * mss) as u32);
        s[l.tcp + 4..l.tcp + 8].copy_from_slice(&seq.to_be_bytes());
        if i + 1 < n {
            s[l.tcp + 13] &= !(TCP_FIN | TCP_PSH);
        }
        if i > 0 {
            s[l.tcp + 13] &= !TCP_CWR;
        }
        put16(&mut s, l.tcp + 16, 0);
        let ph = pseudo(&s, l.ip, 6, seg_end - l.tcp);
        let c = fold_checksum(ones_sum(ph, &s[l.tcp..seg_end]));
        put16(&mut s, l.tcp + 16, c);
        // The tunnel's outer headers.
        if let Some(o) = l.outer_ip {
            put16(&mut s, o + 2, (seg_end - o) as u16);
            put16(&mut s, o + 4, outer_id0.wrapping_add(i as u16));
            ip_header_checksum(&mut s, o);
            if let Some(u) = l.outer_udp {
                let ulen = seg_end - u;
                put16(&mut s, u + 4, ulen as u16);
                if be16(&s, u + 6) != Some(0) {
                    put16(&mut s, u + 6, 0);
                    let ph = pseudo(&s, o, 17, ulen);
                    let sum = if (l.tcp - u).is_multiple_of(2) {
                        // The TCP segment sums to !fold(its pseudo-header).
                        let inner = u32::from(fold_checksum(pseudo(&s, l.ip, 6, seg_end - l.tcp)));
                        ones_sum(ph + inner, &s[u..l.tcp])
                    } else {
                        ones_sum(ph, &s[u..seg_end])
                    };
                    let c = match fold_checksum(sum) {
                        0 => 0xffff,
                        c => c,
                    };
                    put16(&mut s, u + 6, c);
                }
            }
        }
        out(s);
    }
}

/// Prepares the plain (not tunnelled) TCP super-frame `f` to be handed to a kernel whole,
/// as a NIC with GRO would: the TCP checksum field gets the pseudo-header sum the kernel
/// treats as `CHECKSUM_PARTIAL`, and the returned header says how to segment it. A frame
/// whose payload fits one segment gets a complete checksum and an empty header instead.
/// `None` for a tunnelled frame (the kernel cannot be told about the tunnel).
pub fn gso_header(f: &mut [u8], l: &TcpLayers, gso: TcpGso) -> Option<VnetHdr> {
    if l.outer_ip.is_some() {
        return None;
    }
    let tcp_len = l.end - l.tcp;
    put16(f, l.tcp + 16, 0);
    let ph = pseudo(f, l.ip, 6, tcp_len);
    if l.end - l.payload <= usize::from(gso.mss) {
        let c = fold_checksum(ones_sum(ph, &f[l.tcp..l.end]));
        put16(f, l.tcp + 16, c);
        return Some(VnetHdr::default());
    }
    put16(f, l.tcp + 16, fold16(ph));
    Some(VnetHdr {
        flags: VIRTIO_NET_HDR_F_NEEDS_CSUM,
        gso_type: VIRTIO_NET_HDR_GSO_TCPV4 | if gso.ecn { VIRTIO_NET_HDR_GSO_ECN } else { 0 },
        hdr_len: l.payload as u16,
        gso_size: gso.mss,
        csum_start: l.tcp as u16,
        csum_offset: 16,
    })
}

/// A run of TCP segments being joined by [`Coalescer`].
struct Run {
    frame: Vec<u8>,
    l: TcpLayers,
    mss: usize,
    next_seq: u32,
    segments: usize,
}

/// Joins runs of consecutive, in-order TCP segments of one connection into super-frames,
/// what GRO does before a host's stack hands them to TCP, with GRO's rules: the same
/// Ethernet header, plain IPv4 (no options, same TTL, TOS and DF), the same ports,
/// acknowledgement, window and TCP
/// options, only ACK (PSH, which ends the run) among the flags, every segment but the
/// last exactly as long as the first, a verified TCP checksum, and at most one IPv4
/// packet's worth. Anything else passes through unchanged, in order.
#[derive(Default)]
pub struct Coalescer {
    run: Option<Run>,
    /// Frames merged into super-frames so far.
    pub merged: u64,
}

impl Coalescer {
    /// Offers the next frame; what is ready (in order) goes to `out` as (frame, header).
    /// A frame that joins the current run is kept; `recycle` gets its emptied buffer.
    pub fn push(
        &mut self,
        f: Vec<u8>,
        out: &mut impl FnMut(Vec<u8>, VnetHdr),
        recycle: &mut impl FnMut(Vec<u8>),
    ) {
        let Some(l) = mergeable(&f) else {
            self.flush(out);
            out(f, VnetHdr::default());
            return;
        };
        let seg = l.end - l.payload;
        let seq = u32::from_be_bytes([f[l.tcp + 4], f[l.tcp + 5], f[l.tcp + 6], f[l.tcp + 7]]);
        let psh = f[l.tcp + 13] & TCP_PSH != 0;
        if let Some(r) = &mut self.run {
            let rf = &r.frame;
            let same = seq == r.next_seq
                && seg <= r.mss
                && l.payload - l.ip == r.l.payload - r.l.ip
                && r.l.end - r.l.ip + seg <= IP_MAX
                // the Ethernet header (as GRO's compare_ether_header)
                && f[..l.ip] == rf[..r.l.ip]
                // addresses; TTL, protocol; TOS; DF
                && f[l.ip + 12..l.ip + 20] == rf[r.l.ip + 12..r.l.ip + 20]
                && f[l.ip + 8..l.ip + 10] == rf[r.l.ip + 8..r.l.ip + 10]
                && f[l.ip + 1] == rf[r.l.ip + 1]
                && f[l.ip + 6] & 0x40 == rf[r.l.ip + 6] & 0x40
                // ports; acknowledgement; data offset, flags but PSH, window; options
                && f[l.tcp..l.tcp + 4] == rf[r.l.tcp..r.l.tcp + 4]
                && f[l.tcp + 8..l.tcp + 12] == rf[r.l.tcp + 8..r.l.tcp + 12]
                && f[l.tcp + 12] == rf[r.l.tcp + 12]
                && f[l.tcp + 13] & !TCP_PSH == rf[r.l.tcp + 13] & !TCP_PSH
                && f[l.tcp + 14..l.tcp + 16] == rf[r.l.tcp + 14..r.l.tcp + 16]
                && f[l.tcp + 20..l.payload] == rf[r.l.tcp + 20..r.l.payload];
            if same {
                r.frame.truncate(r.l.end);
                r.frame.extend_from_slice(&f[l.payload..l.end]);
                r.l.end += seg;
                r.next_seq = r.next_seq.wrapping_add(seg as u32);
                r.segments += 1;
                if psh {
                    let at = r.l.tcp + 13;
                    r.frame[at] |= TCP_PSH;
                }
                let full = seg < r.mss || psh;
                recycle(f);
                if full {
                    self.flush(out);
                }
                return;
            }
            self.flush(out);
        }
        if psh {
            out(f, VnetHdr::default());
            return;
        }
        self.run = Some(Run {
            l,
            mss: seg,
            next_seq: seq.wrapping_add(seg as u32),
            segments: 1,
            frame: f,
        });
    }

    /// Hands over the current run (a super-frame when it joined more than one segment).
    pub fn flush(&mut self, out: &mut impl FnMut(Vec<u8>, VnetHdr)) {
        let Some(mut r) = self.run.take() else {
            return;
        };
        if r.segments == 1 {
            out(r.frame, VnetHdr::default());
            return;
        }
        self.merged += r.segments as u64;
        r.frame.truncate(r.l.end);
        put16(&mut r.frame, r.l.ip + 2, (r.l.end - r.l.ip) as u16);
        ip_header_checksum(&mut r.frame, r.l.ip);
        let gso = TcpGso {
            mss: r.mss as u16,
            ecn: false,
        };
        let h = gso_header(&mut r.frame, &r.l, gso).unwrap_or_default();
        out(r.frame, h);
    }
}

/// A plain TCP segment GRO would consider: IPv4 without options, ACK (and maybe PSH) only,
/// some payload, a correct TCP checksum.
fn mergeable(f: &[u8]) -> Option<TcpLayers> {
    let l = tcp_layers(f)?;
    if l.outer_ip.is_some() || l.tcp - l.ip != 20 || l.payload == l.end {
        return None;
    }
    let flags = f[l.tcp + 13];
    if flags & TCP_ACK == 0 || flags & (TCP_FIN | TCP_SYN | TCP_RST | TCP_URG | TCP_CWR) != 0 {
        return None;
    }
    let ph = pseudo(f, l.ip, 6, l.end - l.tcp);
    (fold_checksum(ones_sum(ph, &f[l.tcp..l.end])) == 0).then_some(l)
}

#[cfg(test)]
mod tests {
    use super::*;
    use harness_vrouter_sim::wire::frame::{self, Addrs, TcpFlags};

    #[test]
    fn completes_a_partial_tcp_checksum_and_a_udp_one() {
        let a = Addrs {
            src_mac: [2; 6],
            dst_mac: [4; 6],
            src: "10.0.0.1".parse().unwrap(),
            dst: "10.0.0.2".parse().unwrap(),
            ttl: 64,
        };
        let good = frame::tcp(&a, 1000, 80, 7, 0, TcpFlags::default(), b"hello");
        let mut bad = good.clone();
        let l4 = 34;
        bad[l4 + 16] ^= 0x5a; // what a partial checksum looks like to a reader: not the sum
        assert!(!frame::checksums_ok(&bad));
        complete_checksum(&mut bad);
        assert_eq!(bad, good);
        let good = frame::udp(&a, 1000, 53, b"odd");
        let mut bad = good.clone();
        bad[l4 + 6] = 0x12;
        complete_checksum(&mut bad);
        assert_eq!(bad, good);
        assert!(frame::checksums_ok(&bad));
    }

    use harness_scenario::Encapsulation;
    use harness_vrouter_sim::wire::encap;

    /// A TCP super-frame of `len` payload bytes with ACK|PSH (FIN too when `fin`), its
    /// checksum left partial-looking (wrong), as a pod's kernel hands it over with TSO.
    fn super_frame(len: usize, fin: bool) -> Vec<u8> {
        let a = Addrs {
            src_mac: [2; 6],
            dst_mac: [4; 6],
            src: "10.0.0.1".parse().unwrap(),
            dst: "10.0.0.2".parse().unwrap(),
            ttl: 64,
        };
        let payload: Vec<u8> = (0..len).map(|i| (i * 7 + i / 251) as u8).collect();
        let flags = TcpFlags {
            ack: true,
            fin,
            ..TcpFlags::default()
        };
        let mut f = frame::tcp(&a, 40000, 80, 0xffff_f000, 77, flags, &payload);
        f[34 + 13] |= TCP_PSH;
        f[34 + 16] ^= 0x5a;
        f
    }

    fn seq(f: &[u8], l: &TcpLayers) -> u32 {
        u32::from_be_bytes(f[l.tcp + 4..l.tcp + 8].try_into().unwrap())
    }

    #[test]
    fn a_super_frame_is_cut_into_wire_segments_plain_and_in_every_tunnel() {
        let big = super_frame(10_000, true);
        let outer = encap::Outer {
            addrs: Addrs {
                src_mac: [6; 6],
                dst_mac: [8; 6],
                src: "192.168.0.11".parse().unwrap(),
                dst: "192.168.0.12".parse().unwrap(),
                ttl: 64,
            },
            entropy: 9,
        };
        let mut cases = vec![(None, big.clone())];
        for kind in [
            Encapsulation::MplsOverUdp,
            Encapsulation::Vxlan,
            Encapsulation::MplsOverGre,
        ] {
            cases.push((Some(kind), encap::encapsulate(kind, &outer, 17, &big)));
        }
        let l0 = tcp_layers(&big).unwrap();
        for (kind, f) in cases {
            let l = tcp_layers(&f).expect("a TCP segment inside");
            assert_eq!(l.outer_ip.is_some(), kind.is_some());
            assert_eq!(l.end - l.payload, 10_000);
            let gso = TcpGso {
                mss: 1448,
                ecn: false,
            };
            let mut segs = Vec::new();
            segment_tcp(&f, &l, gso, Vec::new, |s| segs.push(s));
            assert_eq!(segs.len(), 7, "{kind:?}");
            let mut data = Vec::new();
            for (i, s) in segs.iter().enumerate() {
                assert!(
                    frame::checksums_ok(s),
                    "{kind:?} segment {i}: outer/plain checksums"
                );
                let inner = match kind {
                    None => s.clone(),
                    Some(_) => {
                        encap::decapsulate(s, ([4; 6], [2; 6]))
                            .unwrap()
                            .unwrap()
                            .inner_frame
                    }
                };
                assert!(
                    frame::checksums_ok(&inner),
                    "{kind:?} segment {i}: inner checksums"
                );
                let li = tcp_layers(&inner).unwrap();
                assert!(li.end - li.ip <= 1500, "MTU-sized");
                assert_eq!(
                    seq(&inner, &li),
                    seq(&big, &l0).wrapping_add(1448 * i as u32)
                );
                let flags = inner[li.tcp + 13];
                let last = i + 1 == segs.len();
                assert_eq!(
                    flags & (TCP_FIN | TCP_PSH) != 0,
                    last,
                    "{kind:?} {i}: {flags:#x}"
                );
                assert_eq!(flags & TCP_ACK, TCP_ACK);
                data.extend_from_slice(&inner[li.payload..li.end]);
            }
            assert_eq!(
                data,
                big[l0.payload..l0.end],
                "{kind:?}: the payload, in order"
            );
        }
    }

    #[test]
    fn segments_are_joined_back_into_the_super_frame_a_kernel_takes_whole() {
        let big = super_frame(6_000, false);
        let l = tcp_layers(&big).unwrap();
        let gso = TcpGso {
            mss: 1448,
            ecn: false,
        };
        let mut segs = Vec::new();
        segment_tcp(&big, &l, gso, Vec::new, |s| segs.push(s));
        assert_eq!(segs.len(), 5);
        let mut c = Coalescer::default();
        let mut out = Vec::new();
        let mut recycled = 0;
        for s in segs.clone() {
            c.push(s, &mut |f, h| out.push((f, h)), &mut |_| recycled += 1);
        }
        c.flush(&mut |f, h| out.push((f, h)));
        assert_eq!(
            out.len(),
            1,
            "one super-frame (the PSH on the last ends the run)"
        );
        assert_eq!((recycled, c.merged), (4, 5));
        let (mut joined, h) = out.pop().unwrap();
        assert_eq!(h.tcp_gso(), Some(gso));
        assert_eq!(
            (h.flags, h.csum_start, h.csum_offset),
            (VIRTIO_NET_HDR_F_NEEDS_CSUM, 34, 16)
        );
        // Cut again by the receiving kernel, it gives the same segments.
        let lj = tcp_layers(&joined).unwrap();
        let mut again = Vec::new();
        segment_tcp(&joined, &lj, h.tcp_gso().unwrap(), Vec::new, |s| {
            again.push(s)
        });
        assert_eq!(again, segs);
        // Its partial checksum completes to the right one, finished as the receiving kernel
        // (or a NIC) finishes CHECKSUM_PARTIAL: the ones'-complement sum from csum_start to
        // the end *with the field as it is* (the pseudo-header seed gso_header put there),
        // complemented, stored at csum_start + csum_offset.
        assert!(!frame::checksums_ok(&joined), "still partial");
        let start = usize::from(h.csum_start);
        let at = start + usize::from(h.csum_offset);
        let c = fold_checksum(ones_sum(0, &joined[start..]));
        joined[at..at + 2].copy_from_slice(&c.to_be_bytes());
        assert!(frame::checksums_ok(&joined));
        assert_eq!(joined[lj.payload..lj.end], big[l.payload..l.end]);
    }

    #[test]
    fn what_gro_would_not_join_passes_through_in_order() {
        let big = super_frame(4_000, false);
        let l = tcp_layers(&big).unwrap();
        let mut segs = Vec::new();
        segment_tcp(
            &big,
            &l,
            TcpGso {
                mss: 1000,
                ecn: false,
            },
            Vec::new,
            |s| segs.push(s),
        );
        assert_eq!(segs.len(), 4);
        // A corrupted checksum in the middle, a segment out of order at the end.
        segs[1][100] ^= 1;
        segs.swap(2, 3);
        let mut c = Coalescer::default();
        let mut out = Vec::new();
        for s in segs.clone() {
            c.push(s, &mut |f, h| out.push((f, h)), &mut |_| {});
        }
        c.flush(&mut |f, h| out.push((f, h)));
        let frames: Vec<Vec<u8>> = out.iter().map(|(f, _)| f.clone()).collect();
        assert_eq!(frames, segs, "nothing joined, nothing reordered");
        assert!(out.iter().all(|(_, h)| *h == VnetHdr::default()));
        assert_eq!(c.merged, 0);
    }

    #[test]
    fn virtio_net_headers_round_trip_and_say_what_to_segment() {
        let h = VnetHdr {
            flags: VIRTIO_NET_HDR_F_NEEDS_CSUM,
            gso_type: VIRTIO_NET_HDR_GSO_TCPV4 | VIRTIO_NET_HDR_GSO_ECN,
            hdr_len: 66,
            gso_size: 1448,
            csum_start: 34,
            csum_offset: 16,
        };
        assert_eq!(VnetHdr::from_bytes(&h.to_bytes()), h);
        assert_eq!(
            h.tcp_gso(),
            Some(TcpGso {
                mss: 1448,
                ecn: true
            })
        );
        assert_eq!(VnetHdr::default().tcp_gso(), None);
        let udp = VnetHdr {
            gso_type: 5,
            gso_size: 1400,
            ..h
        };
        assert_eq!(udp.tcp_gso(), None, "UDP GSO is not TCP segmentation");
        assert_eq!(VnetHdr::from_bytes(&[1, 2]), VnetHdr::default());
        // Garbage and non-TCP frames have no TCP layers (and never panic).
        for f in [vec![], vec![0xffu8; 80], vec![0u8; 14]] {
            assert!(tcp_layers(&f).is_none());
        }
        let mut cut = super_frame(3000, false);
        cut.truncate(100);
        assert!(
            tcp_layers(&cut).is_none(),
            "IPv4 total length beyond the frame"
        );
    }

    #[test]
    fn completes_a_missing_sctp_crc32c() {
        let a = Addrs {
            src_mac: [2; 6],
            dst_mac: [4; 6],
            src: "10.0.0.1".parse().unwrap(),
            dst: "10.0.0.2".parse().unwrap(),
            ttl: 64,
        };
        let init = sctp::Repr {
            src_port: 40000,
            dst_port: 9,
            verification_tag: 0,
            chunk: sctp::Chunk::Init(sctp::InitRepr {
                initiate_tag: 0x1234_5678,
                a_rwnd: 106_496,
                outbound_streams: 10,
                inbound_streams: 65_535,
                initial_tsn: 42,
            }),
        };
        let good = frame::sctp(&a, &init);
        assert!(frame::checksums_ok(&good));
        let l4 = 34;
        // What a pod's kernel with tx-checksum-sctp hands over: no CRC at all (zero), or
        // whatever the buffer held.
        for junk in [[0u8; 4], [0xde, 0xad, 0xbe, 0xef]] {
            let mut bad = good.clone();
            bad[l4 + 8..l4 + 12].copy_from_slice(&junk);
            assert!(!frame::checksums_ok(&bad));
            complete_checksum(&mut bad);
            assert_eq!(bad, good);
        }
        // Through the receive path's decision: checksum-not-ready from the auxdata, or
        // NEEDS_CSUM in the vnet header (csum_offset 8: the CRC field).
        let needs = VnetHdr {
            flags: VIRTIO_NET_HDR_F_NEEDS_CSUM,
            csum_start: l4 as u16,
            csum_offset: 8,
            ..VnetHdr::default()
        };
        for (h, not_ready) in [(VnetHdr::default(), true), (needs, false)] {
            let mut bad = good.clone();
            bad[l4 + 8..l4 + 12].fill(0);
            assert_eq!(rx_offloads(&h, not_ready, &mut bad), (true, None, None));
            assert_eq!(bad, good);
        }
    }

    #[test]
    fn a_udp_gso_super_frame_is_flagged_and_left_alone() {
        let a = Addrs {
            src_mac: [2; 6],
            dst_mac: [4; 6],
            src: "10.0.0.1".parse().unwrap(),
            dst: "10.0.0.2".parse().unwrap(),
            ttl: 64,
        };
        let mut f = frame::udp(&a, 1000, 53, &vec![7u8; 4000]);
        f[34 + 6] ^= 0x5a;
        let before = f.clone();
        let h = VnetHdr {
            flags: VIRTIO_NET_HDR_F_NEEDS_CSUM,
            gso_type: VIRTIO_NET_HDR_GSO_UDP_L4,
            gso_size: 1400,
            csum_start: 34,
            csum_offset: 6,
            hdr_len: 42,
        };
        assert_eq!(
            rx_offloads(&h, true, &mut f),
            (false, None, Some(VIRTIO_NET_HDR_GSO_UDP_L4))
        );
        assert_eq!(f, before, "not completed: it is not forwarded");
        assert_eq!(VnetHdr::default().unsupported_gso(), None);
        let tcp = VnetHdr {
            gso_type: VIRTIO_NET_HDR_GSO_TCPV4 | VIRTIO_NET_HDR_GSO_ECN,
            ..h
        };
        assert_eq!(tcp.unsupported_gso(), None);
    }

    #[test]
    fn gre_with_a_checksum_or_sequence_number_is_not_segmented() {
        let outer = encap::Outer {
            addrs: Addrs {
                src_mac: [6; 6],
                dst_mac: [8; 6],
                src: "192.168.0.11".parse().unwrap(),
                dst: "192.168.0.12".parse().unwrap(),
                ttl: 64,
            },
            entropy: 9,
        };
        let f = encap::encapsulate(
            Encapsulation::MplsOverGre,
            &outer,
            17,
            &super_frame(3000, false),
        );
        let gre = 34;
        assert!(tcp_layers(&f).is_some(), "the vrouter's GRE: no C, K or S");
        for bit in [0x80u8, 0x10] {
            let mut g = f.clone();
            g[gre] |= bit;
            assert!(tcp_layers(&g).is_none(), "GRE flags {:#x}", g[gre]);
        }
    }

    #[test]
    fn segments_with_another_ethernet_header_are_not_joined() {
        let big = super_frame(3000, false);
        let l = tcp_layers(&big).unwrap();
        let mut segs = Vec::new();
        let gso = TcpGso {
            mss: 1000,
            ecn: false,
        };
        segment_tcp(&big, &l, gso, Vec::new, |s| segs.push(s));
        assert_eq!(segs.len(), 3);
        // The second one from another MAC (its checksums untouched: MACs are not covered).
        segs[1][6..12].copy_from_slice(&[0x0a; 6]);
        let mut c = Coalescer::default();
        let mut out = Vec::new();
        for s in segs.clone() {
            c.push(s, &mut |f, h| out.push((f, h)), &mut |_| {});
        }
        c.flush(&mut |f, h| out.push((f, h)));
        let frames: Vec<Vec<u8>> = out.iter().map(|(f, _)| f.clone()).collect();
        assert_eq!(frames, segs);
        assert_eq!(c.merged, 0);
    }

    #[test]
    fn leaves_other_and_malformed_frames_alone() {
        for mut f in [vec![0u8; 10], vec![0xffu8; 60], vec![]] {
            let before = f.clone();
            complete_checksum(&mut f);
            assert_eq!(f, before);
        }
    }
}
