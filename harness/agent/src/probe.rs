//! Probing: one real kernel socket per probe, every probe of a batch in flight at once, each
//! with its own deadline.
//!
//! | protocol | connected | refused | timeout |
//! |---|---|---|---|
//! | TCP | handshake done (the greeting, read next, names the backend) | RST (`ECONNREFUSED`), ICMP unreachable | no SYN-ACK |
//! | UDP | a reply datagram (the greeting names the backend) | ICMP port / host unreachable on the connected socket | no reply |
//! | SCTP | INIT-ACK (association up; the greeting names the backend) | ABORT, ICMP unreachable | no INIT-ACK |
//! | ICMP | echo reply (backend = the replying address) | ICMP unreachable | no reply |
//!
//! `other` means the probe could not be made: no SCTP in this kernel, no permission for ICMP,
//! a socket error that says nothing about the network.
//!
//! Sockets are created on the thread that polls the probe, so they live in that thread's
//! network namespace; this module never calls `setns`.

use std::io;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use futures_util::StreamExt;
use harness_scenario::Protocol;
use socket2::SockAddr;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};
use tokio::time::{Instant, timeout_at};

use crate::batch::{ProbeRequest, ProbeResult, ProbeResultKind};
use crate::identity::{Greeting, parse_greeting};
use crate::sys::{self, IcmpSocketKind};

/// How many probes of a batch are in flight at once; more wait for a slot (each probe's
/// timeout starts when it starts). Bounded so a huge batch cannot run out of descriptors.
pub const MAX_IN_FLIGHT: usize = 512;

/// The most of a reply read while looking for the greeting.
const MAX_REPLY: usize = 16 * 1024;

/// The datagram a UDP probe sends; any payload gets the greeting back.
const UDP_PROBE: &[u8] = b"harness-agent probe\n";

/// Datagram probes (UDP, ICMP) are sent again this often within the timeout, so that one
/// lost datagram (a flow being set up, an ARP entry being resolved) does not decide the cell.
fn resend_interval(timeout: Duration) -> Duration {
    (timeout / 3).max(Duration::from_millis(50))
}

/// Runs one probe from the calling thread's network namespace.
///
/// A request that fails [`ProbeRequest::validate`] answers `other` with the reason.
///
/// ```no_run
/// # async fn demo() {
/// use harness_agent::{probe, ProbeRequest, ProbeResultKind};
/// use harness_scenario::Protocol;
/// let r = probe(&ProbeRequest::new("10.32.0.5".parse().unwrap(), Protocol::Tcp, 80)).await;
/// if r.result == ProbeResultKind::Connected {
///     println!("answered by {:?}", r.backend);
/// }
/// # }
/// ```
pub async fn probe(request: &ProbeRequest) -> ProbeResult {
    if let Err(message) = request.validate() {
        return ProbeResult::other(message);
    }
    let timeout = request.timeout();
    let deadline = Instant::now() + timeout;
    let to = SocketAddrV4::new(request.to, request.port);
    match request.protocol {
        Protocol::Tcp => probe_tcp(to, deadline, timeout).await,
        Protocol::Udp => probe_udp(to, deadline, timeout).await,
        Protocol::Sctp => probe_sctp(to, deadline, timeout).await,
        Protocol::Icmp => probe_icmp(request.to, deadline, timeout).await,
    }
}

/// Runs every probe of `batch` concurrently (at most [`MAX_IN_FLIGHT`] at a time) and returns
/// the results in request order.
///
/// # Caveats
/// The sockets belong to the network namespace of whichever thread polls this future: use it
/// only on a runtime whose threads are in the namespace to probe from (one you built on a
/// thread that entered it), or use [`probe_batch`].
pub async fn probe_batch_async(batch: &[ProbeRequest]) -> Vec<ProbeResult> {
    probe_batch_async_in_flight(batch, MAX_IN_FLIGHT).await
}

/// As [`probe_batch_async`], with at most `in_flight` probes at once (clamped to
/// 1..=[`MAX_IN_FLIGHT`]).
///
/// # Caveats
/// As [`probe_batch_async`]: the sockets belong to the namespace of the polling thread.
pub async fn probe_batch_async_in_flight(
    batch: &[ProbeRequest],
    in_flight: usize,
) -> Vec<ProbeResult> {
    futures_util::stream::iter(batch.iter().map(probe))
        .buffered(in_flight.clamp(1, MAX_IN_FLIGHT))
        .collect()
        .await
}

/// Runs every probe of `batch` concurrently from the calling thread's network namespace and
/// returns the results in request order, blocking until the slowest has its answer (about the
/// largest timeout of the batch).
///
/// # Caveats
/// Blocks the calling thread: from async code call it through `spawn_blocking`, or on a
/// dedicated thread that entered the pod's namespace (`setns`) — the sockets are created on
/// a runtime of its own on this thread (or, when this thread already runs a tokio runtime, on
/// a scoped thread it starts, which shares its namespace).
///
/// # Errors
/// None as such: a probe that cannot be made answers `other` with the reason.
///
/// # Usage
/// ```
/// use harness_agent::{probe_batch, ProbeRequest, ProbeResultKind};
/// use harness_scenario::Protocol;
/// // Nothing listens on this port (bound, then closed): the kernel answers with a RST.
/// let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
/// let results = probe_batch(&[ProbeRequest::new("127.0.0.1".parse()?, Protocol::Tcp, port)]);
/// assert_eq!(results[0].result, ProbeResultKind::Refused);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn probe_batch(batch: &[ProbeRequest]) -> Vec<ProbeResult> {
    probe_batch_in_flight(batch, MAX_IN_FLIGHT)
}

/// As [`probe_batch`], with at most `in_flight` probes at once (clamped to
/// 1..=[`MAX_IN_FLIGHT`]): fewer sockets at a time for a dataplane that drops under a burst
/// (the netns dataplane's user-space vrouters), each probe's timeout still starting when it
/// starts.
///
/// # Caveats
/// Blocks, and creates its sockets in the calling thread's namespace, as [`probe_batch`].
///
/// # Usage
/// ```
/// use harness_agent::{probe_batch_in_flight, ProbeRequest, ProbeResultKind};
/// use harness_scenario::Protocol;
/// let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
/// let batch = vec![ProbeRequest::new("127.0.0.1".parse()?, Protocol::Tcp, port); 4];
/// let results = probe_batch_in_flight(&batch, 2);
/// assert!(results.iter().all(|r| r.result == ProbeResultKind::Refused));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn probe_batch_in_flight(batch: &[ProbeRequest], in_flight: usize) -> Vec<ProbeResult> {
    if tokio::runtime::Handle::try_current().is_err() {
        return probe_batch_here(batch, in_flight);
    }
    // `block_on` inside a runtime would panic: run on a scoped thread, which inherits this
    // thread's network namespace.
    std::thread::scope(|scope| {
        let spawned = std::thread::Builder::new()
            .name("harness-agent-probe".into())
            .spawn_scoped(scope, || probe_batch_here(batch, in_flight));
        match spawned {
            Ok(thread) => thread.join().unwrap_or_else(|_| {
                all_other(batch, "the probe thread panicked (a bug: please report it)")
            }),
            Err(e) => all_other(batch, &format!("cannot start a probe thread: {e}")),
        }
    })
}

fn probe_batch_here(batch: &[ProbeRequest], in_flight: usize) -> Vec<ProbeResult> {
    match tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .enable_time()
        .build()
    {
        Ok(runtime) => runtime.block_on(probe_batch_async_in_flight(batch, in_flight)),
        Err(e) => all_other(batch, &format!("cannot start the probe runtime: {e}")),
    }
}

fn all_other(batch: &[ProbeRequest], why: &str) -> Vec<ProbeResult> {
    batch
        .iter()
        .map(|_| ProbeResult::other(why.to_owned()))
        .collect()
}

fn millis(d: Duration) -> u128 {
    d.as_millis()
}

/// How the detail of a refusal by a hop on the path (not the destination) starts; see
/// [`ProbeResult::refused_on_the_path`].
pub(crate) const HOST_UNREACHABLE: &str = "host unreachable for ";
/// See [`HOST_UNREACHABLE`].
pub(crate) const NETWORK_UNREACHABLE: &str = "network unreachable for ";

/// The result of a socket error, in the words of the protocol that got it.
fn failed(e: &io::Error, protocol: Protocol, to: SocketAddrV4) -> ProbeResult {
    let target = match protocol {
        Protocol::Icmp => format!("ICMP {}", to.ip()),
        p => format!("{p} {to}"),
    };
    match e.raw_os_error() {
        Some(libc::ECONNREFUSED) => ProbeResult::refused(match protocol {
            Protocol::Tcp => {
                format!("TCP RST from {to}: nothing listens there, or a rule rejects it")
            }
            Protocol::Udp => format!(
                "ICMP port unreachable for UDP {to}: nothing listens there, or a rule rejects it"
            ),
            Protocol::Sctp => {
                format!("SCTP ABORT from {to}: nothing listens there, or a rule rejects it")
            }
            Protocol::Icmp => format!("ICMP echo to {} refused (ICMP unreachable)", to.ip()),
        }),
        Some(libc::EHOSTUNREACH) => ProbeResult::refused(format!(
            "{HOST_UNREACHABLE}{target}: an ICMP host unreachable came back, or no ARP answer"
        )),
        Some(libc::ENETUNREACH) => ProbeResult::refused(format!(
            "{NETWORK_UNREACHABLE}{target}: an ICMP network unreachable came back, or this namespace has no route"
        )),
        Some(libc::ECONNRESET) => ProbeResult::refused(format!("{target}: reset by the peer")),
        Some(libc::ETIMEDOUT) => ProbeResult::timeout(format!(
            "{target}: the kernel gave up waiting for an answer"
        )),
        Some(libc::EACCES | libc::EPERM) => ProbeResult::other(format!(
            "{target}: the local kernel would not send it ({e}): a broadcast address or a local firewall rule"
        )),
        _ => ProbeResult::other(format!("{target}: {e}")),
    }
}

/// How reading a reply after the connection was up ended.
enum ReplyEnd {
    /// A greeting (or a complete non-greeting answer) was read.
    Complete,
    /// The peer closed.
    Closed,
    /// A read error.
    Failed(io::Error),
    /// The probe's deadline passed.
    Deadline,
}

/// Whether `buf` holds a whole answer: the greeting line, or an HTTP response's head and the
/// first line of its body.
fn reply_complete(buf: &[u8]) -> bool {
    if buf.len() >= MAX_REPLY {
        return true;
    }
    if buf.starts_with(b"HTTP/") {
        return http_body(buf).is_some_and(|body| body.contains(&b'\n'));
    }
    buf.contains(&b'\n')
}

fn http_body(buf: &[u8]) -> Option<&[u8]> {
    let end = buf.windows(4).position(|w| w == b"\r\n\r\n")?;
    Some(&buf[end + 4..])
}

/// The greeting in a reply: its first line, or the first line of an HTTP response's body.
fn greeting_in(buf: &[u8]) -> Option<Greeting> {
    let text = if buf.starts_with(b"HTTP/") {
        http_body(buf)?
    } else {
        buf
    };
    let line = text.split(|&b| b == b'\n').next()?;
    parse_greeting(std::str::from_utf8(line).ok()?)
}

/// The result of a probe whose transport connected (or whose datagram was answered).
fn connected(
    protocol: Protocol,
    to: SocketAddrV4,
    buf: &[u8],
    end: ReplyEnd,
    timeout: Duration,
) -> ProbeResult {
    if let Some(g) = greeting_in(buf) {
        return ProbeResult::new(
            ProbeResultKind::Connected,
            Some(g.backend.clone()),
            g.detail(),
        );
    }
    let target = format!("{protocol} {to}");
    let detail = if !buf.is_empty() {
        let shown: String = String::from_utf8_lossy(&buf[..buf.len().min(80)])
            .escape_debug()
            .collect();
        format!("{target} answered, but not with a harness agent's greeting: \"{shown}\"")
    } else {
        match end {
            ReplyEnd::Deadline => format!(
                "{target} connected, but sent no greeting within {} ms",
                millis(timeout)
            ),
            ReplyEnd::Closed | ReplyEnd::Complete => {
                format!("{target} connected, then closed without a greeting")
            }
            ReplyEnd::Failed(e) => format!("{target} connected, then {e} before a greeting"),
        }
    };
    ProbeResult::new(ProbeResultKind::Connected, None, detail)
}

async fn probe_tcp(to: SocketAddrV4, deadline: Instant, timeout: Duration) -> ProbeResult {
    let mut stream = match timeout_at(deadline, TcpStream::connect(SocketAddr::V4(to))).await {
        Err(_) => {
            return ProbeResult::timeout(format!(
                "no answer to the TCP SYN to {to} within {} ms",
                millis(timeout)
            ));
        }
        Ok(Err(e)) => return failed(&e, Protocol::Tcp, to),
        Ok(Ok(s)) => s,
    };
    let _ = stream.set_nodelay(true);
    // A plain TCP agent greets first and ignores this; an HTTP one (or a proxy in front of
    // one) needs it. A failed write still leaves whatever was answered to read.
    let request = format!(
        "GET / HTTP/1.1\r\nHost: {to}\r\nUser-Agent: harness-agent\r\nConnection: close\r\n\r\n"
    );
    let _ = timeout_at(deadline, stream.write_all(request.as_bytes())).await;
    let mut buf = Vec::with_capacity(256);
    let mut chunk = [0u8; 2048];
    let end = loop {
        match timeout_at(deadline, stream.read(&mut chunk)).await {
            Err(_) => break ReplyEnd::Deadline,
            Ok(Err(e)) => break ReplyEnd::Failed(e),
            Ok(Ok(0)) => break ReplyEnd::Closed,
            Ok(Ok(n)) => {
                buf.extend_from_slice(&chunk[..n]);
                if reply_complete(&buf) {
                    break ReplyEnd::Complete;
                }
            }
        }
    };
    // Close with a RST, not a FIN exchange: two frames fewer per probe through a dataplane
    // that pays per frame, and no TIME_WAIT left on either side however many probes a batch
    // makes (the server has sent all it will: the greeting and its FIN).
    let _ = socket2::SockRef::from(&stream).set_linger(Some(Duration::ZERO));
    connected(Protocol::Tcp, to, &buf, end, timeout)
}

async fn probe_udp(to: SocketAddrV4, deadline: Instant, timeout: Duration) -> ProbeResult {
    let socket = match UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0)).await {
        Ok(s) => s,
        Err(e) => return ProbeResult::other(format!("cannot open a UDP socket: {e}")),
    };
    // Connected, so that an ICMP port unreachable comes back as ECONNREFUSED and only the
    // destination's replies are read.
    if let Err(e) = socket.connect(to).await {
        return failed(&e, Protocol::Udp, to);
    }
    let mut buf = vec![0u8; 2048];
    let mut sent = 0u32;
    loop {
        if let Err(e) = socket.send(UDP_PROBE).await {
            return failed(&e, Protocol::Udp, to);
        }
        sent += 1;
        let wake = (Instant::now() + resend_interval(timeout)).min(deadline);
        match timeout_at(wake, socket.recv(&mut buf)).await {
            Ok(Ok(n)) => {
                return connected(Protocol::Udp, to, &buf[..n], ReplyEnd::Complete, timeout);
            }
            Ok(Err(e)) => return failed(&e, Protocol::Udp, to),
            Err(_) if wake >= deadline => {
                return ProbeResult::timeout(format!(
                    "no UDP reply from {to} within {} ms ({sent} datagram{} sent)",
                    millis(timeout),
                    if sent == 1 { "" } else { "s" }
                ));
            }
            Err(_) => {}
        }
    }
}

async fn probe_sctp(to: SocketAddrV4, deadline: Instant, timeout: Duration) -> ProbeResult {
    let socket = match sys::sctp_socket() {
        Ok(s) => s,
        Err(e) if sys::is_no_sctp(&e) => return ProbeResult::other(sys::no_sctp_reason(&e)),
        Err(e) => return ProbeResult::other(format!("cannot open an SCTP socket: {e}")),
    };
    match socket.connect(&SockAddr::from(to)) {
        Ok(()) => {}
        Err(e) if e.raw_os_error() == Some(libc::EINPROGRESS) => {}
        Err(e) => return failed(&e, Protocol::Sctp, to),
    }
    let socket = match sys::watch(socket) {
        Ok(s) => s,
        Err(e) => return ProbeResult::other(format!("cannot watch the SCTP socket: {e}")),
    };
    match timeout_at(deadline, sys::connected(&socket)).await {
        Err(_) => {
            return ProbeResult::timeout(format!(
                "no answer (INIT-ACK) to the SCTP INIT to {to} within {} ms",
                millis(timeout)
            ));
        }
        Ok(Err(e)) => return failed(&e, Protocol::Sctp, to),
        Ok(Ok(())) => {}
    }
    let mut buf = Vec::with_capacity(256);
    let mut chunk = [0u8; 2048];
    let end = loop {
        match timeout_at(deadline, sys::read_some(&socket, &mut chunk)).await {
            Err(_) => break ReplyEnd::Deadline,
            Ok(Err(e)) => break ReplyEnd::Failed(e),
            Ok(Ok(0)) => break ReplyEnd::Closed,
            Ok(Ok(n)) => {
                buf.extend_from_slice(&chunk[..n]);
                if reply_complete(&buf) {
                    break ReplyEnd::Complete;
                }
            }
        }
    };
    connected(Protocol::Sctp, to, &buf, end, timeout)
}

/// Sequence numbers and payloads of this process's echo requests, so concurrent probes (and
/// a raw socket that sees every echo reply) tell theirs apart.
static ECHO_COUNTER: AtomicU64 = AtomicU64::new(0);

/// An ICMP echo request (type 8) with its checksum.
fn echo_request(id: u16, seq: u16, payload: &[u8]) -> Vec<u8> {
    let mut m = Vec::with_capacity(8 + payload.len());
    m.extend_from_slice(&[8, 0, 0, 0]);
    m.extend_from_slice(&id.to_be_bytes());
    m.extend_from_slice(&seq.to_be_bytes());
    m.extend_from_slice(payload);
    let c = sys::internet_checksum(&m);
    m[2..4].copy_from_slice(&c.to_be_bytes());
    m
}

/// Whether `packet` (from an ICMP socket of `kind`) is the echo reply to our request.
fn is_echo_reply(packet: &[u8], kind: IcmpSocketKind, id: u16, seq: u16, payload: &[u8]) -> bool {
    let icmp = match kind {
        IcmpSocketKind::Ping => packet,
        IcmpSocketKind::Raw => {
            // A raw socket hands over the IPv4 header too.
            let Some(&first) = packet.first() else {
                return false;
            };
            let header = usize::from(first & 0x0f) * 4;
            if first >> 4 != 4 || header < 20 {
                return false;
            }
            packet.get(header..).unwrap_or_default()
        }
    };
    if icmp.len() < 8 || icmp[0] != 0 || icmp[1] != 0 {
        return false;
    }
    // A ping socket's identifier is the kernel's choice, and the kernel already matched it.
    let id_ok = kind == IcmpSocketKind::Ping || icmp[4..6] == id.to_be_bytes();
    id_ok && icmp[6..8] == seq.to_be_bytes() && &icmp[8..] == payload
}

async fn probe_icmp(to: Ipv4Addr, deadline: Instant, timeout: Duration) -> ProbeResult {
    let target = SocketAddrV4::new(to, 0);
    let (socket, kind) = match sys::icmp_socket() {
        Ok(s) => s,
        Err(why) => return ProbeResult::other(why),
    };
    // Connected: only `to`'s messages are read, and an ICMP error for our requests comes back
    // as a socket error.
    if let Err(e) = socket.connect(&SockAddr::from(target)) {
        return failed(&e, Protocol::Icmp, target);
    }
    let socket = match sys::watch(socket) {
        Ok(s) => s,
        Err(e) => return ProbeResult::other(format!("cannot watch the ICMP socket: {e}")),
    };
    let n = ECHO_COUNTER.fetch_add(1, Ordering::Relaxed);
    let pid = std::process::id();
    // Truncations are deliberate: the identifier and sequence are 16-bit fields.
    let id = (pid as u16) ^ ((n >> 16) as u16);
    let seq = n as u16;
    let mut payload = b"harness-agent ".to_vec();
    payload.extend_from_slice(&n.to_be_bytes());
    payload.extend_from_slice(&pid.to_be_bytes());
    let request = echo_request(id, seq, &payload);
    let mut buf = vec![0u8; 2048];
    let mut sent = 0u32;
    loop {
        if let Err(e) = sys::write_all(&socket, &request).await {
            return failed(&e, Protocol::Icmp, target);
        }
        sent += 1;
        let wake = (Instant::now() + resend_interval(timeout)).min(deadline);
        let reply = timeout_at(wake, async {
            loop {
                match sys::read_some(&socket, &mut buf).await {
                    Ok(n) if is_echo_reply(&buf[..n], kind, id, seq, &payload) => return Ok(()),
                    Ok(_) => {}
                    Err(e) => return Err(e),
                }
            }
        })
        .await;
        match reply {
            Ok(Ok(())) => {
                let via = match kind {
                    IcmpSocketKind::Ping => "ping socket",
                    IcmpSocketKind::Raw => "raw socket",
                };
                return ProbeResult::new(
                    ProbeResultKind::Connected,
                    Some(to.to_string()),
                    format!("echo reply from {to} ({via})"),
                );
            }
            Ok(Err(e)) => return failed(&e, Protocol::Icmp, target),
            Err(_) if wake >= deadline => {
                return ProbeResult::timeout(format!(
                    "no echo reply from {to} within {} ms ({sent} request{} sent)",
                    millis(timeout),
                    if sent == 1 { "" } else { "s" }
                ));
            }
            Err(_) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replies_are_read_until_the_greeting() {
        assert!(!reply_complete(b"harness-agent x/a"));
        assert!(reply_complete(b"harness-agent x/a TCP/80 from 1.2.3.4:5\n"));
        let head = b"HTTP/1.1 200 OK\r\nContent-Length: 18\r\n\r\n";
        assert!(!reply_complete(head));
        let mut full = head.to_vec();
        full.extend_from_slice(b"harness-agent x/a\n");
        assert!(reply_complete(&full));
        assert_eq!(greeting_in(&full).unwrap().backend, "x/a");
        assert_eq!(greeting_in(b"SSH-2.0-OpenSSH\r\n"), None);
        assert!(reply_complete(&vec![b'x'; MAX_REPLY]));
    }

    #[test]
    fn echo_replies_are_matched_exactly() {
        let payload = b"harness-agent 12345678";
        let mut reply = echo_request(7, 9, payload);
        reply[0] = 0; // echo reply
        assert!(is_echo_reply(&reply, IcmpSocketKind::Ping, 0, 9, payload));
        assert!(!is_echo_reply(&reply, IcmpSocketKind::Ping, 0, 10, payload));
        let mut ip = vec![0x45u8];
        ip.resize(20, 0);
        ip.extend_from_slice(&reply);
        assert!(is_echo_reply(&ip, IcmpSocketKind::Raw, 7, 9, payload));
        assert!(!is_echo_reply(&ip, IcmpSocketKind::Raw, 8, 9, payload));
        assert!(!is_echo_reply(
            &ip,
            IcmpSocketKind::Raw,
            7,
            9,
            b"harness-agent 00000000"
        ));
        // The request itself (type 8), as a raw socket on loopback also sees it.
        let request = echo_request(7, 9, payload);
        assert!(!is_echo_reply(
            &request,
            IcmpSocketKind::Ping,
            7,
            9,
            payload
        ));
        assert!(!is_echo_reply(&[0x45], IcmpSocketKind::Raw, 7, 9, payload));
        assert!(!is_echo_reply(&[], IcmpSocketKind::Raw, 7, 9, payload));
    }

    #[test]
    fn errors_are_classified_by_errno() {
        let to: SocketAddrV4 = "10.0.0.1:80".parse().unwrap();
        let e = |n| io::Error::from_raw_os_error(n);
        assert_eq!(
            failed(&e(libc::ECONNREFUSED), Protocol::Tcp, to).result,
            ProbeResultKind::Refused
        );
        let r = failed(&e(libc::EHOSTUNREACH), Protocol::Udp, to);
        assert_eq!(r.result, ProbeResultKind::Refused);
        assert!(r.detail.contains("ICMP host unreachable"), "{}", r.detail);
        assert!(r.refused_on_the_path(), "{}", r.detail);
        let r = failed(&e(libc::ENETUNREACH), Protocol::Sctp, to);
        assert_eq!(r.result, ProbeResultKind::Refused);
        assert!(r.refused_on_the_path(), "{}", r.detail);
        // The destination itself said no.
        assert!(!failed(&e(libc::ECONNREFUSED), Protocol::Tcp, to).refused_on_the_path());
        assert!(!failed(&e(libc::ECONNRESET), Protocol::Tcp, to).refused_on_the_path());
        assert_eq!(
            failed(&e(libc::ETIMEDOUT), Protocol::Tcp, to).result,
            ProbeResultKind::Timeout
        );
        assert_eq!(
            failed(&e(libc::EADDRNOTAVAIL), Protocol::Tcp, to).result,
            ProbeResultKind::Other
        );
        let r = failed(&e(libc::ECONNREFUSED), Protocol::Sctp, to);
        assert!(
            r.detail.starts_with("SCTP ABORT from 10.0.0.1:80"),
            "{}",
            r.detail
        );
    }
}
