//! The sockets std and tokio do not make (SCTP, ICMP echo), driven through tokio's `AsyncFd`,
//! and the errno vocabulary the agent classifies results by.

use std::io::{self, Read, Write};

use socket2::{Domain, Protocol, Socket, Type};
use tokio::io::unix::AsyncFd;

/// A one-to-one style SCTP socket (`socket(AF_INET, SOCK_STREAM, IPPROTO_SCTP)`), non-blocking.
pub(crate) fn sctp_socket() -> io::Result<Socket> {
    let s = Socket::new(
        Domain::IPV4,
        Type::STREAM,
        Some(Protocol::from(libc::IPPROTO_SCTP)),
    )?;
    s.set_nonblocking(true)?;
    Ok(s)
}

/// Whether `e` (from creating an SCTP socket) means the kernel has no SCTP: not built, module
/// not loadable, or blacklisted.
pub(crate) fn is_no_sctp(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(
            libc::EPROTONOSUPPORT
                | libc::ESOCKTNOSUPPORT
                | libc::EAFNOSUPPORT
                | libc::EPROTOTYPE
                | libc::ENOPROTOOPT
        )
    )
}

/// The words for a kernel without SCTP.
pub(crate) fn no_sctp_reason(e: &io::Error) -> String {
    format!("this kernel has no SCTP ({e}); load the sctp module (modprobe sctp) to use SCTP")
}

/// Which kind of ICMP socket a probe got.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum IcmpSocketKind {
    /// `SOCK_DGRAM`/`IPPROTO_ICMP`: unprivileged, allowed by `net.ipv4.ping_group_range`. The
    /// kernel picks the echo identifier and hands back the ICMP message without the IP header.
    Ping,
    /// `SOCK_RAW`: needs CAP_NET_RAW; sees every ICMP message, IP header included.
    Raw,
}

/// An ICMP socket for echo requests: a ping socket when the group range allows it, else a raw
/// socket when the process may.
///
/// # Errors
/// A message saying which permission is missing.
pub(crate) fn icmp_socket() -> Result<(Socket, IcmpSocketKind), String> {
    let ping = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::ICMPV4));
    let (socket, kind) = match ping {
        Ok(s) => (s, IcmpSocketKind::Ping),
        Err(ping_err) => match Socket::new(Domain::IPV4, Type::RAW, Some(Protocol::ICMPV4)) {
            Ok(s) => (s, IcmpSocketKind::Raw),
            Err(raw_err) => {
                let range = std::fs::read_to_string("/proc/sys/net/ipv4/ping_group_range")
                    .map(|r| r.split_whitespace().collect::<Vec<_>>().join(" "))
                    .unwrap_or_else(|_| "unknown".into());
                return Err(format!(
                    "cannot send ICMP echo: a ping socket was refused ({ping_err}) and so was a raw \
                     socket ({raw_err}); let the agent's group in with \
                     `sysctl net.ipv4.ping_group_range=\"0 2147483647\"` (now \"{range}\") or give it CAP_NET_RAW"
                ));
            }
        },
    };
    socket
        .set_nonblocking(true)
        .map_err(|e| format!("cannot make the ICMP socket non-blocking: {e}"))?;
    Ok((socket, kind))
}

/// Hands `socket` to the current tokio runtime's reactor.
pub(crate) fn watch(socket: Socket) -> io::Result<AsyncFd<Socket>> {
    // SAFETY: a `Socket` owns its descriptor: it stays open until the `Socket` is dropped,
    // which only the `AsyncFd` can do, and `as_raw_fd` always returns that descriptor.
    unsafe { AsyncFd::register(socket) }.map_err(io::Error::from)
}

/// Reads what is there, waiting for readiness.
pub(crate) async fn read_some(fd: &AsyncFd<Socket>, buf: &mut [u8]) -> io::Result<usize> {
    loop {
        let mut guard = fd.readable().await?;
        if let Ok(r) = guard.try_io(|inner| {
            let mut s: &Socket = inner.get_ref();
            s.read(buf)
        }) {
            return r;
        }
    }
}

/// Writes all of `data`, waiting for readiness.
pub(crate) async fn write_all(fd: &AsyncFd<Socket>, mut data: &[u8]) -> io::Result<()> {
    while !data.is_empty() {
        let mut guard = fd.writable().await?;
        if let Ok(r) = guard.try_io(|inner| {
            let mut s: &Socket = inner.get_ref();
            s.write(data)
        }) {
            match r? {
                0 => return Err(io::ErrorKind::WriteZero.into()),
                n => data = &data[n..],
            }
        }
    }
    Ok(())
}

/// Waits until a non-blocking `connect` finishes: `Ok` once connected, the connect error
/// otherwise (`ECONNREFUSED` for an SCTP ABORT, `EHOSTUNREACH`, …).
pub(crate) async fn connected(fd: &AsyncFd<Socket>) -> io::Result<()> {
    loop {
        let mut guard = fd.writable().await?;
        if let Some(e) = fd.get_ref().take_error()? {
            return Err(e);
        }
        match fd.get_ref().peer_addr() {
            Ok(_) => return Ok(()),
            // Woken before the handshake finished: wait for the next readiness change.
            Err(e) if e.raw_os_error() == Some(libc::ENOTCONN) => guard.clear_ready(),
            Err(e) => return Err(e),
        }
    }
}

/// The Internet checksum (RFC 1071) of `data`.
pub(crate) fn internet_checksum(data: &[u8]) -> u16 {
    let mut sum: u32 = data
        .chunks(2)
        .map(|c| u32::from(u16::from_be_bytes([c[0], c.get(1).copied().unwrap_or(0)])))
        .sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    // After folding, `sum` fits in 16 bits.
    !(sum as u16)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checksum_matches_rfc1071_example() {
        // RFC 1071 §3: the ones' complement sum of these bytes is 0xddf2.
        let data = [0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7];
        assert_eq!(internet_checksum(&data), !0xddf2);
        // A message carrying its own checksum sums to zero.
        let mut echo = vec![8, 0, 0, 0, 0x12, 0x34, 0, 1, b'h', b'i', b'!'];
        let c = internet_checksum(&echo);
        echo[2..4].copy_from_slice(&c.to_be_bytes());
        assert_eq!(internet_checksum(&echo), 0);
    }
}
