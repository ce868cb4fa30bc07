//! Thin, checked wrappers over the few system calls the dataplane needs: entering a network
//! namespace on a dedicated OS thread, sysctls and NIC offloads of that namespace, and the
//! capability check.
//!
//! `setns(CLONE_NEWNET)` changes the calling *thread* only. Every call here happens on a
//! `std::thread` this crate spawned for that purpose and that never returns to a pool, so no
//! other code (a tokio worker, the caller's thread) ever runs in the wrong namespace
//! (crates.md §5).

use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;
use std::path::PathBuf;
use std::thread::JoinHandle;

use crate::NetnsError;

/// Where `ip netns` keeps its namespace handles.
pub const NETNS_RUN_DIR: &str = "/run/netns";

/// The bind-mounted handle of a named namespace.
pub fn netns_path(name: &str) -> PathBuf {
    PathBuf::from(NETNS_RUN_DIR).join(name)
}

/// Moves the calling thread into namespace `name`. Only for threads this crate spawned.
pub(crate) fn enter(name: &str) -> io::Result<()> {
    let f = File::open(netns_path(name))?;
    // SAFETY: a valid fd of a namespace file; CLONE_NEWNET affects only this thread.
    let rc = unsafe { libc::setns(f.as_raw_fd(), libc::CLONE_NEWNET) };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Spawns an OS thread that enters `ns` and runs `f` there (the thread exits afterwards, so
/// it never runs anything else in that namespace).
///
/// # Errors
/// The thread cannot be spawned; entering the namespace fails inside the thread (returned by
/// `join`).
pub fn spawn_in<T: Send + 'static>(
    ns: &str,
    thread: String,
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<JoinHandle<Result<T, NetnsError>>, NetnsError> {
    let ns_name = ns.to_owned();
    std::thread::Builder::new()
        .name(thread)
        .spawn(move || {
            enter(&ns_name).map_err(|e| NetnsError::Enter {
                ns: ns_name.clone(),
                source: e,
            })?;
            Ok(f())
        })
        .map_err(|e| NetnsError::Io {
            what: "spawning a namespace thread".into(),
            source: e,
        })
}

/// Runs `f` inside namespace `ns` on a fresh OS thread and waits for it.
///
/// # Errors
/// The namespace cannot be entered, or `f` panicked.
pub fn in_netns<T: Send + 'static>(
    ns: &str,
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T, NetnsError> {
    let h = spawn_in(ns, format!("netns {ns}"), f)?;
    h.join().map_err(|_| NetnsError::Io {
        what: format!("a thread inside namespace {ns} panicked"),
        source: io::Error::other("panic"),
    })?
}

/// Writes a sysctl of the calling thread's network namespace (`net/ipv4/ip_forward` = `0`).
/// `/proc/sys/net` resolves against the namespace of the task that opens it.
pub(crate) fn sysctl(key: &str, value: &str) -> io::Result<()> {
    std::fs::write(format!("/proc/sys/{key}"), value)
        .map_err(|e| io::Error::new(e.kind(), format!("sysctl {key}={value}: {e}")))
}

const SIOCETHTOOL: libc::c_ulong = 0x8946;
const ETHTOOL_STXCSUM: u32 = 0x17;
const ETHTOOL_SSG: u32 = 0x19;
const ETHTOOL_STSO: u32 = 0x1f;
const ETHTOOL_SGSO: u32 = 0x24;
const ETHTOOL_SGRO: u32 = 0x2c;

#[repr(C)]
struct EthtoolValue {
    cmd: u32,
    data: u32,
}

#[repr(C)]
struct IfReqData {
    name: [libc::c_char; libc::IFNAMSIZ],
    data: *mut libc::c_void,
    _pad: [u8; 16],
}

/// `ethtool -K <ifname> tx off sg off tso off gso off gro off` in the calling thread's
/// namespace, through the `SIOCETHTOOL` ioctl (no ethtool binary needed). A veth transmits
/// with CHECKSUM_PARTIAL and as GSO super-frames by default: an AF_PACKET reader would see
/// TCP/UDP checksums that are only the pseudo-header sum and frames of up to 64 KiB. With
/// these off the kernel finishes every checksum and segments before the frame reaches the
/// veth, so the vrouter forwards exactly what a NIC would put on the wire.
pub(crate) fn offloads_off(ifname: &str) -> io::Result<()> {
    offloads(
        ifname,
        &[
            (ETHTOOL_SGRO, false),
            (ETHTOOL_SGSO, false),
            (ETHTOOL_STSO, false),
            (ETHTOOL_SSG, false),
            (ETHTOOL_STXCSUM, false),
        ],
    )
}

/// The offloads of a pod's `eth0` (in the pod's namespace): a veth's defaults, set
/// explicitly — checksum offload, scatter-gather, TSO and GSO on, GRO off — so the pod's
/// TCP hands its interface super-frames of up to 64 KiB with a partial checksum, as a
/// kernel with a virtio NIC does. The vrouter reads the tap with a `virtio_net_hdr`
/// (`PacketSocket::enable_vnet_hdr`): it knows each frame's segment size and partial
/// checksum, forwards a super-frame through the forwarding core once, and cuts it into
/// wire-sized segments with complete checksums wherever it leaves the node (what the NIC
/// would do with TSO), or hands it whole to a local pod. The MTU, and so every frame on the
/// underlay, is unchanged. Transmit checksum offload on a veth covers SCTP's CRC32c too
/// (`NETIF_F_SCTP_CRC`): a pod's SCTP packets reach the vrouter without one, and it
/// completes them like a TCP/UDP checksum (`packet::complete_checksum`).
pub(crate) fn pod_offloads(ifname: &str) -> io::Result<()> {
    offloads(
        ifname,
        &[
            (ETHTOOL_STXCSUM, true),
            (ETHTOOL_SSG, true),
            (ETHTOOL_STSO, true),
            (ETHTOOL_SGSO, true),
            (ETHTOOL_SGRO, false),
        ],
    )
}

/// Sets offload features of `ifname` in order through `SIOCETHTOOL`.
fn offloads(ifname: &str, set: &[(u32, bool)]) -> io::Result<()> {
    // SAFETY: plain socket creation; the fd is closed by OwnedFd.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: fd was just returned by socket().
    let fd = unsafe { <std::os::fd::OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd) };
    for &(cmd, on) in set {
        let mut v = EthtoolValue {
            cmd,
            data: u32::from(on),
        };
        let mut req = IfReqData {
            name: [0; libc::IFNAMSIZ],
            data: (&mut v as *mut EthtoolValue).cast(),
            _pad: [0; 16],
        };
        for (d, s) in req
            .name
            .iter_mut()
            .zip(ifname.bytes().take(libc::IFNAMSIZ - 1))
        {
            *d = s as libc::c_char;
        }
        // SAFETY: req is a properly laid out ifreq whose data points at a live ethtool_value.
        let rc = unsafe { libc::ioctl(fd.as_raw_fd(), SIOCETHTOOL as _, &mut req) };
        if rc != 0 {
            let e = io::Error::last_os_error();
            return Err(io::Error::new(
                e.kind(),
                format!("ethtool {cmd:#x} {on} on {ifname}: {e}"),
            ));
        }
    }
    Ok(())
}

/// The capabilities the dataplane needs, with their bit in `CapEff`.
pub const REQUIRED_CAPABILITIES: [(&str, u32); 3] = [
    ("CAP_NET_ADMIN", 12),
    ("CAP_NET_RAW", 13),
    ("CAP_SYS_ADMIN", 21),
];

/// Checks that the process holds every capability the netns dataplane needs: CAP_NET_ADMIN
/// (links, addresses, routes, sysctls), CAP_NET_RAW (AF_PACKET sockets) and CAP_SYS_ADMIN
/// (`setns` and the bind mounts of `ip netns add`). Reads the effective set, not the uid.
///
/// # Errors
/// [`NetnsError::MissingCapability`] naming the first one missing.
pub fn check_capabilities() -> Result<(), NetnsError> {
    let status = std::fs::read_to_string("/proc/self/status").map_err(|e| NetnsError::Io {
        what: "reading /proc/self/status".into(),
        source: e,
    })?;
    let eff = status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
        .unwrap_or(0);
    for (name, bit) in REQUIRED_CAPABILITIES {
        if eff & (1u64 << bit) == 0 {
            return Err(NetnsError::MissingCapability(name));
        }
    }
    if !std::path::Path::new("/sys/class/net").exists() {
        return Err(NetnsError::Unsupported(
            "no /sys/class/net: not a Linux network stack".into(),
        ));
    }
    Ok(())
}

/// Whether process `pid` is alive and is the one that started at `start_ticks` (field 22 of
/// `/proc/<pid>/stat`), so a recycled PID does not keep a dead run's leftovers alive.
pub(crate) fn process_alive(pid: u32, start_ticks: u64) -> bool {
    match process_start_ticks(pid) {
        Some(t) => t == start_ticks,
        None => false,
    }
}

/// Start time of a process in clock ticks since boot.
pub(crate) fn process_start_ticks(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may contain spaces and parentheses: fields follow the last ')'.
    let rest = &stat[stat.rfind(')')? + 2..];
    rest.split_whitespace().nth(19)?.parse().ok()
}
