//! A raw `AF_PACKET, SOCK_RAW` socket bound to one interface of the calling thread's network
//! namespace (the socket keeps that namespace for its whole life), plus the checksum
//! completion a frame marked CHECKSUM_PARTIAL needs.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

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
    /// The kernel left the TCP/UDP checksum partial; [`complete_checksum`] fixed it.
    pub checksum_completed: bool,
}

/// An AF_PACKET socket.
#[derive(Debug)]
pub struct PacketSocket {
    fd: OwnedFd,
    ifindex: i32,
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
        Ok(PacketSocket { fd, ifindex: index })
    }

    /// The bound interface's index (0: every interface).
    pub fn ifindex(&self) -> i32 {
        self.ifindex
    }

    /// Receives one frame into `buf`; `None` when nothing is queued. Frames this host sent
    /// are skipped; a partial TCP/UDP checksum is completed in place.
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
            let n = n as usize;
            if n > buf.len() {
                // Truncated: bigger than any MTU we configure; not a frame we can forward.
                continue;
            }
            let mut status = 0u32;
            // SAFETY: walking the control buffer the kernel filled, with the libc macros.
            unsafe {
                let mut c = libc::CMSG_FIRSTHDR(&msg);
                while !c.is_null() {
                    if (*c).cmsg_level == SOL_PACKET && (*c).cmsg_type == PACKET_AUXDATA {
                        let aux: TpacketAuxdata =
                            std::ptr::read_unaligned(libc::CMSG_DATA(c).cast());
                        status = aux.tp_status;
                    }
                    c = libc::CMSG_NXTHDR(&msg, c);
                }
            }
            let partial = status & TP_STATUS_CSUMNOTREADY != 0;
            if partial {
                complete_checksum(&mut buf[..n]);
            }
            return Ok(Some(RxMeta {
                len: n,
                ifindex: sll.sll_ifindex,
                checksum_completed: partial,
            }));
        }
    }

    /// Sends one frame out of the bound interface.
    ///
    /// # Errors
    /// The system call's (a full queue gives `WouldBlock`).
    pub fn send(&self, frame: &[u8]) -> io::Result<()> {
        loop {
            // SAFETY: frame is a live slice.
            let n = unsafe {
                libc::send(
                    self.fd.as_raw_fd(),
                    frame.as_ptr().cast(),
                    frame.len(),
                    libc::MSG_DONTWAIT,
                )
            };
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
        /// The kernel left the TCP/UDP checksum partial and it was completed.
        checksum_completed: bool,
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
            let ok = mac + snaplen <= self.frame_size;
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
                let partial = status & TP_STATUS_CSUMNOTREADY != 0;
                if partial {
                    complete_checksum(buf);
                }
                Some(RingFrame::Frame {
                    len: snaplen,
                    checksum_completed: partial,
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
        })
    }

    /// Sends `frames` out of the bound interface with as few `sendmmsg` calls as the queue
    /// allows, waiting briefly for room when it is full. Returns how many were sent and how
    /// many failed, with the last error.
    pub fn send_many(&self, frames: &[&[u8]]) -> (usize, usize, Option<io::Error>) {
        const MAX: usize = 64;
        let mut sent = 0;
        let mut failed = 0;
        let mut last_err = None;
        let mut waits = 0;
        let mut iovs: [libc::iovec; MAX] = [libc::iovec {
            iov_base: std::ptr::null_mut(),
            iov_len: 0,
        }; MAX];
        // SAFETY: an all-zero mmsghdr is a valid value (null pointers, zero lengths).
        let mut msgs: [libc::mmsghdr; MAX] = unsafe { std::mem::zeroed() };
        while sent + failed < frames.len() {
            let at = sent + failed;
            let n = (frames.len() - at).min(MAX);
            for k in 0..n {
                iovs[k] = libc::iovec {
                    iov_base: frames[at + k].as_ptr() as *mut libc::c_void,
                    iov_len: frames[at + k].len(),
                };
                // SAFETY: zeroed msghdr is valid; the iovec it points at lives in `iovs`.
                msgs[k].msg_hdr = unsafe { std::mem::zeroed() };
                msgs[k].msg_hdr.msg_iov = &mut iovs[k];
                msgs[k].msg_hdr.msg_iovlen = 1;
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

fn ones_sum(mut acc: u32, b: &[u8]) -> u32 {
    let mut chunks = b.chunks_exact(2);
    for c in &mut chunks {
        acc += u32::from(u16::from_be_bytes([c[0], c[1]]));
    }
    if let [last] = chunks.remainder() {
        acc += u32::from(*last) << 8;
    }
    acc
}

fn fold(mut acc: u32) -> u16 {
    while acc > 0xffff {
        acc = (acc & 0xffff) + (acc >> 16);
    }
    !(acc as u16)
}

/// Recomputes the TCP or UDP checksum of an Ethernet/IPv4 frame in place (what the NIC would
/// have done for a CHECKSUM_PARTIAL packet). Other frames are left as they are.
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
        _ => return,
    };
    if l4 + off + 2 > end {
        return;
    }
    frame[l4 + off] = 0;
    frame[l4 + off + 1] = 0;
    let len = (end - l4) as u32;
    let mut acc = ones_sum(0, &frame[26..34]);
    acc += u32::from(proto) + len;
    acc = ones_sum(acc, &frame[l4..end]);
    let mut c = fold(acc);
    if proto == 17 && c == 0 {
        c = 0xffff;
    }
    frame[l4 + off..l4 + off + 2].copy_from_slice(&c.to_be_bytes());
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

    #[test]
    fn leaves_other_and_malformed_frames_alone() {
        for mut f in [vec![0u8; 10], vec![0xffu8; 60], vec![]] {
            let before = f.clone();
            complete_checksum(&mut f);
            assert_eq!(f, before);
        }
    }
}
