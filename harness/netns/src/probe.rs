//! Real kernel sockets as probes: small servers inside the destination namespaces and a
//! batch prober that runs many non-blocking connection attempts at once inside the source
//! namespace, each on its own thread that entered that namespace (never an async worker).

use std::io::{self, Read};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use harness_scenario::Protocol;
use harness_vrouter_sim::ServedPort;
use socket2::{Domain, Socket, Type};

use crate::NetnsError;

/// One connection attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProbeSpec {
    /// Destination address.
    pub to: Ipv4Addr,
    /// TCP, UDP, SCTP or ICMP (echo).
    pub protocol: Protocol,
    /// Destination port (ignored for ICMP).
    pub port: u16,
    /// How long to wait for an answer.
    pub timeout: Duration,
}

/// What a real socket observed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NetVerdict {
    /// Handshake completed (TCP, SCTP), a UDP reply or an echo reply arrived.
    Connected {
        /// The answering server's identity (`backend=<name>`), when read.
        backend: Option<String>,
    },
    /// A host said no: TCP RST, ICMP port or protocol unreachable (ECONNREFUSED).
    Refused {
        /// The error the kernel reported.
        detail: String,
    },
    /// No answer within the timeout.
    Timeout,
    /// Anything else (host unreachable, a local error, ...).
    Other {
        /// What happened.
        detail: String,
    },
    /// The probe could not be made here at all: this machine's kernel lacks what it needs
    /// (SCTP). Nothing was sent; the runner reports the cell Skipped with `reason`.
    Unsupported {
        /// Why, and what would make it possible.
        reason: String,
    },
}

impl NetVerdict {
    /// `connected`, `refused`, `timeout`, `other` or `unsupported`: the probe agent's result
    /// words.
    pub fn word(&self) -> &'static str {
        match self {
            NetVerdict::Connected { .. } => "connected",
            NetVerdict::Refused { .. } => "refused",
            NetVerdict::Timeout => "timeout",
            NetVerdict::Other { .. } => "other",
            NetVerdict::Unsupported { .. } => "unsupported",
        }
    }

    /// Why the cell cannot be probed on this machine (turn it into Skipped), or `None` for a
    /// real observation.
    pub fn skip_reason(&self) -> Option<&str> {
        match self {
            NetVerdict::Unsupported { reason } => Some(reason),
            _ => None,
        }
    }

    /// The same word for a model verdict: connected, refused, timeout (dropped) or other
    /// (inconclusive), so the two dataplanes can be compared cell by cell.
    pub fn model_word(v: &harness_vrouter_sim::Verdict) -> &'static str {
        use harness_vrouter_sim::Verdict;
        match v {
            Verdict::Connected { .. } => "connected",
            Verdict::Refused { .. } => "refused",
            Verdict::Dropped { .. } => "timeout",
            Verdict::Inconclusive { .. } => "other",
        }
    }
}

fn identity_of(bytes: &[u8]) -> Option<String> {
    let s = std::str::from_utf8(bytes).ok()?;
    let i = s.find("backend=")?;
    Some(s[i + 8..].trim_end().to_owned())
}

/// Starts the servers of one namespace: a TCP listener and a UDP socket per served port
/// (SCTP when the kernel has it), answering `backend=<identity>`. Returns once bound.
pub(crate) fn spawn_server(
    ns: &str,
    identity: &str,
    ports: Vec<ServedPort>,
    stops: Vec<Arc<AtomicBool>>,
) -> Result<JoinHandle<Result<(), NetnsError>>, NetnsError> {
    let (ready_tx, ready_rx) = mpsc::channel::<Result<(), String>>();
    let reply = format!("backend={identity}\n").into_bytes();
    let ns_name = ns.to_owned();
    let h = crate::sys::spawn_in(ns, format!("servers {identity}"), move || {
        let mut listeners = Vec::new();
        let mut udps = Vec::new();
        for p in &ports {
            let addr: SocketAddr = SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, p.port).into();
            let r = match p.protocol {
                Protocol::Tcp | Protocol::Sctp => {
                    let proto = if p.protocol == Protocol::Sctp {
                        sctp()
                    } else {
                        socket2::Protocol::TCP
                    };
                    match Socket::new(Domain::IPV4, Type::STREAM, Some(proto)) {
                        // No SCTP in this kernel: its ports stay closed, probes say why.
                        Err(e) if p.protocol == Protocol::Sctp && is_no_protocol(&e) => continue,
                        r => r.and_then(|s| {
                            s.set_reuse_address(true)?;
                            s.bind(&addr.into())?;
                            s.listen(1024)?;
                            s.set_nonblocking(true)?;
                            listeners.push(s);
                            Ok(())
                        }),
                    }
                }
                Protocol::Udp => Socket::new(Domain::IPV4, Type::DGRAM, None).and_then(|s| {
                    s.bind(&addr.into())?;
                    s.set_nonblocking(true)?;
                    udps.push(s);
                    Ok(())
                }),
                Protocol::Icmp => Ok(()),
            };
            if let Err(e) = r {
                let _ = ready_tx.send(Err(format!(
                    "{:?} port {} in {ns_name}: {e}",
                    p.protocol, p.port
                )));
                return;
            }
        }
        let _ = ready_tx.send(Ok(()));
        serve(&listeners, &udps, &reply, &stops);
    })?;
    match ready_rx.recv() {
        Ok(Ok(())) => Ok(std::thread::spawn(move || {
            h.join().map_err(|_| NetnsError::Io {
                what: "a server thread panicked".into(),
                source: io::Error::other("panic"),
            })?
        })),
        Ok(Err(e)) => {
            let _ = h.join();
            Err(NetnsError::Io {
                what: "binding a server".into(),
                source: io::Error::other(e),
            })
        }
        Err(_) => match h.join() {
            Ok(Err(e)) => Err(e),
            _ => Err(NetnsError::Io {
                what: format!("the servers in {ns} stopped before binding"),
                source: io::Error::other("server thread ended"),
            }),
        },
    }
}

fn sctp() -> socket2::Protocol {
    socket2::Protocol::from(libc::IPPROTO_SCTP)
}

fn no_sctp(e: &io::Error) -> String {
    format!(
        "this kernel has no SCTP (socket(AF_INET, SOCK_STREAM, IPPROTO_SCTP): {e}): load the sctp module (modprobe sctp) to probe SCTP through the netns dataplane, or use --dataplane model"
    )
}

/// Whether this machine's kernel can carry probes of `protocol`: `None` when it can, else why
/// not (the runner reports those cells Skipped with the reason instead of probing them).
/// Protocol support is kernel-wide, so the answer holds in every namespace.
pub fn unsupported_reason(protocol: Protocol) -> Option<String> {
    match protocol {
        Protocol::Sctp => match Socket::new(Domain::IPV4, Type::STREAM, Some(sctp())) {
            Err(e) if is_no_protocol(&e) => Some(no_sctp(&e)),
            _ => None,
        },
        _ => None,
    }
}

fn is_no_protocol(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EPROTONOSUPPORT) | Some(libc::ESOCKTNOSUPPORT) | Some(libc::EAFNOSUPPORT)
    )
}

/// Serves until any of `stops` is set (the run's, or the pod's own when it is unwired).
fn serve(listeners: &[Socket], udps: &[Socket], reply: &[u8], stops: &[Arc<AtomicBool>]) {
    let mut fds: Vec<libc::pollfd> = listeners
        .iter()
        .chain(udps)
        .map(|s| libc::pollfd {
            fd: s.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        })
        .collect();
    let mut buf = [std::mem::MaybeUninit::<u8>::uninit(); 2048];
    while !stops.iter().any(|s| s.load(Ordering::Relaxed)) {
        // SAFETY: fds is a live slice of pollfd.
        let n = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, 50) };
        if n <= 0 {
            continue;
        }
        for (i, pfd) in fds.iter().enumerate() {
            if pfd.revents == 0 {
                continue;
            }
            if i < listeners.len() {
                while let Ok((conn, _)) = listeners[i].accept() {
                    // Best effort: the prober may already have reset the connection.
                    let _ = conn.set_nonblocking(true);
                    let _ = conn.send(reply);
                }
            } else {
                let s = &udps[i - listeners.len()];
                while let Ok((_, from)) = s.recv_from(&mut buf) {
                    let _ = s.send_to(reply, &from);
                }
            }
        }
    }
}

enum State {
    Connecting,
    Reading,
}

struct InFlight {
    index: usize,
    sock: Socket,
    state: State,
    deadline: Instant,
    protocol: Protocol,
}

/// Runs `specs` from inside namespace `ns`, at most `concurrency` at a time, and returns the
/// verdicts in order. With `identify`, a connected TCP probe also reads the server's
/// identity (one more round trip).
///
/// # Errors
/// The namespace cannot be entered.
pub fn run_batch(
    ns: &str,
    specs: Vec<ProbeSpec>,
    concurrency: usize,
    identify: bool,
) -> Result<Vec<NetVerdict>, NetnsError> {
    crate::sys::in_netns(ns, move || batch_here(&specs, concurrency.max(1), identify))
}

fn finish_connected(f: &InFlight, identify: bool) -> Option<NetVerdict> {
    match f.protocol {
        Protocol::Tcp | Protocol::Sctp if identify => None,
        Protocol::Tcp | Protocol::Sctp => Some(NetVerdict::Connected { backend: None }),
        _ => None,
    }
}

fn error_verdict(e: &io::Error) -> NetVerdict {
    match e.raw_os_error() {
        Some(libc::ECONNREFUSED) => NetVerdict::Refused {
            detail: e.to_string(),
        },
        Some(libc::ETIMEDOUT) => NetVerdict::Timeout,
        _ => NetVerdict::Other {
            detail: e.to_string(),
        },
    }
}

fn start(spec: &ProbeSpec) -> Result<Socket, NetVerdict> {
    let other = |e: io::Error| NetVerdict::Other {
        detail: e.to_string(),
    };
    let dst: SocketAddr = SocketAddrV4::new(spec.to, spec.port).into();
    let sock = match spec.protocol {
        Protocol::Tcp => Socket::new(Domain::IPV4, Type::STREAM, None).map_err(other)?,
        Protocol::Sctp => Socket::new(Domain::IPV4, Type::STREAM, Some(sctp())).map_err(|e| {
            if is_no_protocol(&e) {
                // Not an observation of the network: the cell cannot be probed here.
                return NetVerdict::Unsupported {
                    reason: no_sctp(&e),
                };
            }
            other(e)
        })?,
        Protocol::Udp => Socket::new(Domain::IPV4, Type::DGRAM, None).map_err(other)?,
        Protocol::Icmp => Socket::new(Domain::IPV4, Type::DGRAM, Some(socket2::Protocol::ICMPV4))
            .map_err(other)?,
    };
    sock.set_nonblocking(true).map_err(other)?;
    if matches!(spec.protocol, Protocol::Tcp | Protocol::Sctp) {
        // Close with RST: no TIME_WAIT piles up however many probes run.
        sock.set_linger(Some(Duration::ZERO)).map_err(other)?;
    }
    match sock.connect(&dst.into()) {
        Ok(()) => {}
        Err(e) if e.raw_os_error() == Some(libc::EINPROGRESS) => {}
        Err(e) => return Err(error_verdict(&e)),
    }
    match spec.protocol {
        Protocol::Udp => {
            sock.send(b"probe").map_err(|e| error_verdict(&e))?;
        }
        Protocol::Icmp => {
            // Echo request; the kernel sets the identifier and the checksum of a ping socket.
            let echo = [8u8, 0, 0, 0, 0, 0, 0, 1, b'p', b'r', b'o', b'b', b'e'];
            sock.send(&echo).map_err(|e| error_verdict(&e))?;
        }
        _ => {}
    }
    Ok(sock)
}

fn batch_here(specs: &[ProbeSpec], concurrency: usize, identify: bool) -> Vec<NetVerdict> {
    let mut results: Vec<Option<NetVerdict>> = vec![None; specs.len()];
    let mut next = 0;
    let mut flying: Vec<InFlight> = Vec::with_capacity(concurrency);
    let mut fds: Vec<libc::pollfd> = Vec::with_capacity(concurrency);
    let mut buf = [0u8; 512];
    loop {
        while flying.len() < concurrency && next < specs.len() {
            let spec = &specs[next];
            match start(spec) {
                Ok(sock) => flying.push(InFlight {
                    index: next,
                    sock,
                    state: match spec.protocol {
                        Protocol::Tcp | Protocol::Sctp => State::Connecting,
                        _ => State::Reading,
                    },
                    deadline: Instant::now() + spec.timeout,
                    protocol: spec.protocol,
                }),
                Err(v) => results[next] = Some(v),
            }
            next += 1;
        }
        if flying.is_empty() {
            break;
        }
        let now = Instant::now();
        let wait = flying
            .iter()
            .map(|f| f.deadline.saturating_duration_since(now))
            .min()
            .unwrap_or_default();
        fds.clear();
        fds.extend(flying.iter().map(|f| libc::pollfd {
            fd: f.sock.as_raw_fd(),
            events: match f.state {
                State::Connecting => libc::POLLOUT,
                State::Reading => libc::POLLIN,
            },
            revents: 0,
        }));
        let ms = wait.as_millis().clamp(0, 1000) as libc::c_int;
        // SAFETY: fds is a live slice of pollfd.
        unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, ms.max(1)) };
        let now = Instant::now();
        let mut k = 0;
        while k < flying.len() {
            let revents = fds[k].revents;
            let f = &mut flying[k];
            let mut done: Option<NetVerdict> = None;
            if revents != 0 {
                match f.state {
                    State::Connecting => match f.sock.take_error() {
                        Ok(None) => match finish_connected(f, identify) {
                            Some(v) => done = Some(v),
                            None => f.state = State::Reading,
                        },
                        Ok(Some(e)) | Err(e) => done = Some(error_verdict(&e)),
                    },
                    State::Reading => match (&f.sock).read(&mut buf) {
                        Ok(n) => {
                            done = Some(NetVerdict::Connected {
                                backend: identity_of(&buf[..n]),
                            })
                        }
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                        Err(e) => {
                            done = Some(match f.protocol {
                                // The handshake completed; the server just did not talk.
                                Protocol::Tcp | Protocol::Sctp => {
                                    NetVerdict::Connected { backend: None }
                                }
                                _ => error_verdict(&e),
                            })
                        }
                    },
                }
            }
            if done.is_none() && now >= f.deadline {
                done = Some(match f.state {
                    State::Reading if matches!(f.protocol, Protocol::Tcp | Protocol::Sctp) => {
                        NetVerdict::Connected { backend: None }
                    }
                    _ => NetVerdict::Timeout,
                });
            }
            if let Some(v) = done {
                let f = flying.swap_remove(k);
                fds.swap_remove(k);
                results[f.index] = Some(v);
            } else {
                k += 1;
            }
        }
    }
    results
        .into_iter()
        .map(|r| {
            r.unwrap_or(NetVerdict::Other {
                detail: "not run".into(),
            })
        })
        .collect()
}
