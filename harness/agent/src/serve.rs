//! Serving a pod's declared ports: TCP, HTTP, UDP and SCTP answers that name the backend.
//!
//! [`serve`] binds every socket on the calling thread — so in the calling thread's network
//! namespace — and answers on a dedicated thread of its own with a single-threaded tokio
//! runtime. That makes it safe to call from a thread that entered a pod's namespace with
//! `setns` (the sockets keep their namespace) and from inside an async runtime alike.

use std::collections::BTreeMap;
use std::io;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use socket2::{Domain, SockAddr, Socket, Type};
use tokio::io::unix::AsyncFd;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::oneshot;

use crate::identity::{Identity, greeting};
use crate::ports::{ServedPort, ServedProtocol};
use crate::sys;

/// How long a connection may take to send its request (HTTP) or to close after the greeting;
/// a peer that stalls longer is dropped.
const CONNECTION_IDLE: Duration = Duration::from_secs(5);
/// The largest HTTP request head read.
const MAX_REQUEST_HEAD: usize = 8 * 1024;
/// Backlog of the listening sockets.
const LISTEN_BACKLOG: i32 = 1024;
/// Receive buffer asked for on UDP ports (see `enlarge_receive_buffer`).
const UDP_RECEIVE_BUFFER: usize = 4 << 20;

/// Where and how to serve.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServeOptions {
    /// The address to listen on: `0.0.0.0` (every address of the namespace) by default.
    pub address: Ipv4Addr,
    /// Answer HTTP on every TCP port (as if each `TCP/n` were `HTTP/n`).
    pub http: bool,
}

impl Default for ServeOptions {
    fn default() -> Self {
        ServeOptions {
            address: Ipv4Addr::UNSPECIFIED,
            http: false,
        }
    }
}

/// A port being served.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Listening {
    /// The port as asked for (`TCP/0` stays `TCP/0`).
    pub requested: ServedPort,
    /// How it answers (`HTTP` for a TCP port under [`ServeOptions::http`]).
    pub protocol: ServedProtocol,
    /// The address it is bound to, with the port the kernel chose for port 0.
    pub address: SocketAddrV4,
}

/// A port not served, and why (today: SCTP on a kernel without SCTP).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SkippedPort {
    /// The port as asked for.
    pub port: ServedPort,
    /// Why, in words for a person.
    pub reason: String,
}

/// Why serving could not start. Every message says what to change.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// Two entries want the same transport port.
    #[error("{first} and {second} both claim {transport} port {port}: keep one of them")]
    Conflict {
        /// The first entry.
        first: ServedPort,
        /// The entry that clashes with it.
        second: ServedPort,
        /// The transport both use.
        transport: &'static str,
        /// The port number.
        port: u16,
    },
    /// A socket could not be bound or listened on.
    #[error("cannot serve {port} on {address}: {source}{}", bind_hint(.source))]
    Bind {
        /// The port.
        port: ServedPort,
        /// The address.
        address: Ipv4Addr,
        /// What the kernel said.
        #[source]
        source: io::Error,
    },
    /// The serving thread or its runtime could not be started.
    #[error("cannot start the serving thread: {0}")]
    Thread(#[source] io::Error),
}

fn bind_hint(e: &io::Error) -> &'static str {
    match e.raw_os_error() {
        Some(libc::EADDRINUSE) => {
            " (another socket holds it: stop that process or pick another port)"
        }
        Some(libc::EACCES) => {
            " (ports below 1024 need root or CAP_NET_BIND_SERVICE: run as root or pick a port >= 1024)"
        }
        Some(libc::EADDRNOTAVAIL) => {
            " (no interface of this network namespace has that address: use 0.0.0.0 or one of its addresses)"
        }
        _ => "",
    }
}

/// A running server. Dropping it stops serving (as [`ServerHandle::shutdown`] does).
#[derive(Debug)]
pub struct ServerHandle {
    identity: Identity,
    listening: Vec<Listening>,
    skipped: Vec<SkippedPort>,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl ServerHandle {
    /// The identity every answer carries.
    pub fn identity(&self) -> &Identity {
        &self.identity
    }

    /// The ports being served, in the order asked for.
    pub fn listening(&self) -> &[Listening] {
        &self.listening
    }

    /// The ports not served, with the reason.
    pub fn skipped(&self) -> &[SkippedPort] {
        &self.skipped
    }

    /// The bound address of the port asked for as `port` (useful with port 0).
    pub fn local_addr(&self, port: ServedPort) -> Option<SocketAddrV4> {
        self.listening
            .iter()
            .find(|l| l.requested == port)
            .map(|l| l.address)
    }

    /// Stops serving: closes every socket (connections in progress are cut) and waits for
    /// the serving thread to end (a few microseconds; fine from async code too).
    pub fn shutdown(mut self) {
        self.stop_and_join();
    }

    fn stop_and_join(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            // A panic in the serving thread has already been reported by the panic hook;
            // nothing is left to clean up.
            let _ = thread.join();
        }
    }
}

impl Drop for ServerHandle {
    fn drop(&mut self) {
        self.stop_and_join();
    }
}

/// Serves `ports` on every address of the calling thread's network namespace, answering as
/// `identity`. See [`serve_with`].
///
/// # Errors
/// See [`serve_with`].
pub fn serve(ports: &[ServedPort], identity: &Identity) -> Result<ServerHandle, ServeError> {
    serve_with(ports, identity, &ServeOptions::default())
}

/// Serves `ports` as `identity`: binds every socket now (in the calling thread's network
/// namespace), then answers on a thread of its own until the handle is shut down or dropped.
///
/// - TCP: the greeting line (`harness-agent x/a TCP/80 from 10.32.0.4:40112`) on accept, then
///   a FIN; what the peer sends is read and dropped so the close is clean (no RST).
/// - HTTP: `GET`/`HEAD` → `200 OK`, body = the greeting, header `X-Harness-Backend`; other
///   methods → `405`; a request that is not HTTP gets the bare greeting.
/// - UDP: every datagram → one datagram with the greeting, to its source.
/// - SCTP: the greeting once the association is up.
///
/// # Caveats
/// SCTP ports are skipped, not failed, when the kernel has no SCTP ([`ServerHandle::skipped`]
/// says so). An empty port list is fine: the agent then only waits (a pod that only probes).
/// Identical entries are served once.
///
/// # Errors
/// [`ServeError::Conflict`] when two entries want the same transport port (`TCP/80` and
/// `HTTP/80`); [`ServeError::Bind`] when any socket cannot be bound — nothing is served then;
/// [`ServeError::Thread`] when the serving thread cannot start.
///
/// # Usage
/// ```
/// use harness_agent::{serve_with, ServeOptions, ServedPort, ServedProtocol};
/// let opts = ServeOptions { address: "127.0.0.1".parse().unwrap(), ..Default::default() };
/// let tcp = ServedPort::new(ServedProtocol::Tcp, 0);
/// let server = serve_with(&[tcp], &"x/a".parse().unwrap(), &opts)?;
/// let addr = server.local_addr(tcp).unwrap();
/// let mut line = String::new();
/// std::io::Read::read_to_string(&mut std::net::TcpStream::connect(addr)?, &mut line)?;
/// assert!(line.starts_with(&format!("harness-agent x/a TCP/{} from 127.0.0.1:", addr.port())));
/// server.shutdown();
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn serve_with(
    ports: &[ServedPort],
    identity: &Identity,
    options: &ServeOptions,
) -> Result<ServerHandle, ServeError> {
    let ports = distinct(ports)?;
    let mut bound = Vec::new();
    let mut skipped = Vec::new();
    for &requested in &ports {
        let protocol = match requested.protocol {
            ServedProtocol::Tcp if options.http => ServedProtocol::Http,
            p => p,
        };
        let at = SocketAddrV4::new(options.address, requested.port);
        let bind_error = |source| ServeError::Bind {
            port: requested,
            address: options.address,
            source,
        };
        let socket = match protocol {
            ServedProtocol::Tcp | ServedProtocol::Http => {
                BoundSocket::Tcp(bind_tcp(at).map_err(bind_error)?)
            }
            ServedProtocol::Udp => BoundSocket::Udp(bind_udp(at).map_err(bind_error)?),
            ServedProtocol::Sctp => match bind_sctp(at) {
                Ok(s) => BoundSocket::Sctp(s),
                Err(e) if sys::is_no_sctp(&e) => {
                    skipped.push(SkippedPort {
                        port: requested,
                        reason: sys::no_sctp_reason(&e),
                    });
                    continue;
                }
                Err(e) => return Err(bind_error(e)),
            },
        };
        let address = socket.local_addr().map_err(bind_error)?;
        bound.push((
            Listening {
                requested,
                protocol,
                address,
            },
            socket,
        ));
    }

    let runtime = ServingRuntime(Some(
        tokio::runtime::Builder::new_current_thread()
            .enable_io()
            .enable_time()
            .build()
            .map_err(ServeError::Thread)?,
    ));
    // Register the sockets with the runtime now, so a failure is reported to the caller.
    let mut servers = Vec::new();
    if let Some(rt) = &runtime.0 {
        let _entered = rt.enter();
        for (listening, socket) in &mut bound {
            let registered = socket.register().map_err(|source| ServeError::Bind {
                port: listening.requested,
                address: options.address,
                source,
            })?;
            servers.push((*listening, registered));
        }
    }
    let listening = bound.into_iter().map(|(l, _)| l).collect();

    let (stop, stopped) = oneshot::channel::<()>();
    let id: Arc<Identity> = Arc::new(identity.clone());
    let thread = std::thread::Builder::new()
        .name("harness-agent-serve".into())
        .spawn(move || {
            let mut runtime = runtime;
            let Some(rt) = runtime.0.take() else {
                return;
            };
            rt.block_on(async move {
                for (listening, server) in servers {
                    tokio::spawn(server.run(listening, id.clone()));
                }
                let _ = stopped.await;
            });
            // Dropping the runtime here, off any async context, cancels every task and
            // closes every socket before `shutdown` returns.
            drop(rt);
        })
        .map_err(ServeError::Thread)?;

    Ok(ServerHandle {
        identity: identity.clone(),
        listening,
        skipped,
        stop: Some(stop),
        thread: Some(thread),
    })
}

/// The serving runtime until its thread owns it. Dropping a runtime blocks, which panics in
/// an async context; on the error paths of [`serve_with`] (whose caller may be async) it is
/// let go in the background instead.
struct ServingRuntime(Option<tokio::runtime::Runtime>);

impl Drop for ServingRuntime {
    fn drop(&mut self) {
        if let Some(runtime) = self.0.take() {
            runtime.shutdown_background();
        }
    }
}

/// Drops repeats and rejects two entries that want the same transport port.
fn distinct(ports: &[ServedPort]) -> Result<Vec<ServedPort>, ServeError> {
    let mut claimed: BTreeMap<(&'static str, u16), ServedPort> = BTreeMap::new();
    let mut out = Vec::new();
    for &p in ports {
        let transport = p.protocol.transport().as_str();
        if p.port != 0 {
            match claimed.get(&(transport, p.port)) {
                Some(&first) if first == p => continue,
                Some(&first) => {
                    return Err(ServeError::Conflict {
                        first,
                        second: p,
                        transport,
                        port: p.port,
                    });
                }
                None => {
                    claimed.insert((transport, p.port), p);
                }
            }
        }
        out.push(p);
    }
    Ok(out)
}

fn bind_tcp(at: SocketAddrV4) -> io::Result<std::net::TcpListener> {
    let s = Socket::new(Domain::IPV4, Type::STREAM, None)?;
    // A restarted agent must not wait for the previous one's TIME_WAIT connections.
    s.set_reuse_address(true)?;
    s.bind(&SockAddr::from(at))?;
    s.listen(LISTEN_BACKLOG)?;
    s.set_nonblocking(true)?;
    Ok(s.into())
}

fn bind_udp(at: SocketAddrV4) -> io::Result<std::net::UdpSocket> {
    let s = Socket::new(Domain::IPV4, Type::DGRAM, None)?;
    s.set_reuse_address(true)?;
    enlarge_receive_buffer(&s);
    s.bind(&SockAddr::from(at))?;
    s.set_nonblocking(true)?;
    Ok(s.into())
}

/// A batch fires hundreds of datagrams at one port at once; the default buffer (~90 loopback
/// datagrams) would drop most and leave them to the prober's resend. Best effort: beyond
/// `net.core.rmem_max` only with CAP_NET_ADMIN (`SO_RCVBUFFORCE`).
fn enlarge_receive_buffer(s: &Socket) {
    use std::os::fd::AsRawFd;
    const WANTED: usize = UDP_RECEIVE_BUFFER;
    let size = libc::c_int::try_from(WANTED).unwrap_or(libc::c_int::MAX);
    // SAFETY: setsockopt(2) on a socket we own, reading a c_int that lives across the call.
    let forced = unsafe {
        libc::setsockopt(
            s.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVBUFFORCE,
            (&raw const size).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    } == 0;
    if !forced {
        let _ = s.set_recv_buffer_size(WANTED);
    }
}

fn bind_sctp(at: SocketAddrV4) -> io::Result<Socket> {
    let s = sys::sctp_socket()?;
    s.set_reuse_address(true)?;
    s.bind(&SockAddr::from(at))?;
    s.listen(LISTEN_BACKLOG)?;
    Ok(s)
}

/// A socket bound on the caller's thread, before the runtime owns it.
enum BoundSocket {
    Tcp(std::net::TcpListener),
    Udp(std::net::UdpSocket),
    Sctp(Socket),
    /// Handed to the runtime already.
    Taken,
}

impl BoundSocket {
    fn local_addr(&self) -> io::Result<SocketAddrV4> {
        let addr = match self {
            BoundSocket::Tcp(s) => s.local_addr()?,
            BoundSocket::Udp(s) => s.local_addr()?,
            BoundSocket::Sctp(s) => s
                .local_addr()?
                .as_socket()
                .ok_or_else(|| io::Error::other("SCTP socket has no IPv4 address"))?,
            BoundSocket::Taken => return Err(io::Error::other("socket already served")),
        };
        match addr {
            SocketAddr::V4(a) => Ok(a),
            SocketAddr::V6(a) => Err(io::Error::other(format!("{a} is not IPv4"))),
        }
    }

    /// Moves the socket into the current runtime.
    fn register(&mut self) -> io::Result<Server> {
        match std::mem::replace(self, BoundSocket::Taken) {
            BoundSocket::Tcp(s) => TcpListener::from_std(s).map(Server::Tcp),
            BoundSocket::Udp(s) => UdpSocket::from_std(s).map(Server::Udp),
            BoundSocket::Sctp(s) => sys::watch(s).map(Server::Sctp),
            BoundSocket::Taken => Err(io::Error::other("socket already served")),
        }
    }
}

/// A socket owned by the serving runtime.
enum Server {
    Tcp(TcpListener),
    Udp(UdpSocket),
    Sctp(AsyncFd<Socket>),
}

impl Server {
    async fn run(self, listening: Listening, identity: Arc<Identity>) {
        // Greetings name the bound port (the kernel's choice when port 0 was asked for).
        let port = ServedPort::new(listening.protocol, listening.address.port());
        match self {
            Server::Tcp(listener) => loop {
                match listener.accept().await {
                    Ok((stream, peer)) => {
                        let identity = identity.clone();
                        tokio::spawn(async move {
                            let _ = answer_tcp(stream, peer, port, &identity).await;
                        });
                    }
                    // Out of descriptors or a connection reset before accept: keep serving.
                    Err(_) => tokio::time::sleep(Duration::from_millis(5)).await,
                }
            },
            Server::Udp(socket) => {
                let mut buf = vec![0u8; 65_536];
                loop {
                    match socket.recv_from(&mut buf).await {
                        Ok((_, peer)) => {
                            let reply = greeting(&identity, port, peer);
                            let _ = socket.send_to(reply.as_bytes(), peer).await;
                        }
                        // An ICMP error for an earlier reply, or a full buffer: keep serving.
                        Err(_) => tokio::task::yield_now().await,
                    }
                }
            }
            Server::Sctp(listener) => loop {
                match accept_sctp(&listener).await {
                    Ok((socket, peer)) => {
                        let identity = identity.clone();
                        tokio::spawn(async move {
                            let _ = answer_sctp(socket, peer, port, &identity).await;
                        });
                    }
                    Err(_) => tokio::time::sleep(Duration::from_millis(5)).await,
                }
            },
        }
    }
}

async fn answer_tcp(
    mut stream: TcpStream,
    peer: SocketAddr,
    port: ServedPort,
    identity: &Identity,
) -> io::Result<()> {
    stream.set_nodelay(true)?;
    let line = greeting(identity, port, peer);
    if port.protocol == ServedProtocol::Http {
        let head = tokio::time::timeout(CONNECTION_IDLE, read_request_head(&mut stream))
            .await
            .map_err(|_| io::Error::from(io::ErrorKind::TimedOut))??;
        let reply = http_reply(&head, identity, &line);
        stream.write_all(reply.as_bytes()).await?;
    } else {
        stream.write_all(line.as_bytes()).await?;
    }
    stream.shutdown().await?;
    // Read what the peer sent until it closes: closing with unread data would send a RST.
    let _ = tokio::time::timeout(CONNECTION_IDLE, async {
        let mut sink = [0u8; 4096];
        let mut total = 0usize;
        while let Ok(n @ 1..) = stream.read(&mut sink).await {
            total += n;
            if total > 1 << 20 {
                break;
            }
        }
    })
    .await;
    Ok(())
}

/// Reads an HTTP request head (up to the blank line), at most [`MAX_REQUEST_HEAD`] bytes.
async fn read_request_head(stream: &mut TcpStream) -> io::Result<String> {
    let mut head = Vec::with_capacity(512);
    let mut buf = [0u8; 1024];
    loop {
        let n = stream.read(&mut buf).await?;
        if n == 0 {
            break;
        }
        head.extend_from_slice(&buf[..n]);
        if head.windows(4).any(|w| w == b"\r\n\r\n")
            || head.windows(2).any(|w| w == b"\n\n")
            || head.len() >= MAX_REQUEST_HEAD
        {
            break;
        }
        // Not HTTP at all (`nc` typing a word): answer after the first line.
        if head.contains(&b'\n') && !looks_like_http(&head) {
            break;
        }
    }
    Ok(String::from_utf8_lossy(&head).into_owned())
}

fn looks_like_http(head: &[u8]) -> bool {
    let first = head.split(|&b| b == b'\n').next().unwrap_or_default();
    let first = String::from_utf8_lossy(first);
    let mut words = first.split_whitespace();
    let (Some(_method), Some(_target), Some(version)) = (words.next(), words.next(), words.next())
    else {
        return false;
    };
    version.starts_with("HTTP/1.")
}

/// The response to a request head: HTTP for HTTP, the bare greeting for anything else.
fn http_reply(head: &str, identity: &Identity, greeting: &str) -> String {
    if !looks_like_http(head.as_bytes()) {
        return greeting.to_owned();
    }
    let method = head.split_whitespace().next().unwrap_or_default();
    let (status, body) = match method {
        "GET" => ("200 OK", greeting),
        "HEAD" => ("200 OK", ""),
        _ => (
            "405 Method Not Allowed",
            "harness-agent answers GET and HEAD\n",
        ),
    };
    let length = if method == "HEAD" {
        greeting.len()
    } else {
        body.len()
    };
    format!(
        "HTTP/1.1 {status}\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: {length}\r\n\
         X-Harness-Backend: {identity}\r\nAllow: GET, HEAD\r\nConnection: close\r\n\r\n{body}"
    )
}

async fn accept_sctp(listener: &AsyncFd<Socket>) -> io::Result<(AsyncFd<Socket>, SocketAddr)> {
    loop {
        let mut guard = listener.readable().await?;
        if let Ok(r) = guard.try_io(|inner| inner.get_ref().accept()) {
            let (socket, addr) = r?;
            socket.set_nonblocking(true)?;
            let peer = addr
                .as_socket()
                .unwrap_or_else(|| SocketAddr::from(([0, 0, 0, 0], 0)));
            return Ok((sys::watch(socket)?, peer));
        }
    }
}

async fn answer_sctp(
    socket: AsyncFd<Socket>,
    peer: SocketAddr,
    port: ServedPort,
    identity: &Identity,
) -> io::Result<()> {
    let line = greeting(identity, port, peer);
    tokio::time::timeout(CONNECTION_IDLE, sys::write_all(&socket, line.as_bytes()))
        .await
        .map_err(|_| io::Error::from(io::ErrorKind::TimedOut))??;
    // Let the peer close first (it has read the greeting); SHUTDOWN rather than ABORT.
    let _ = tokio::time::timeout(CONNECTION_IDLE, async {
        let mut sink = [0u8; 1024];
        while let Ok(1..) = sys::read_some(&socket, &mut sink).await {}
    })
    .await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repeats_are_served_once_and_clashes_refused() {
        let tcp80 = ServedPort::new(ServedProtocol::Tcp, 80);
        let udp80 = ServedPort::new(ServedProtocol::Udp, 80);
        let http80 = ServedPort::new(ServedProtocol::Http, 80);
        assert_eq!(
            distinct(&[tcp80, udp80, tcp80]).unwrap(),
            vec![tcp80, udp80]
        );
        let e = distinct(&[tcp80, http80]).unwrap_err().to_string();
        assert_eq!(
            e,
            "TCP/80 and HTTP/80 both claim TCP port 80: keep one of them"
        );
        let any = ServedPort::new(ServedProtocol::Tcp, 0);
        assert_eq!(distinct(&[any, any]).unwrap().len(), 2);
    }

    #[test]
    fn http_replies() {
        let id: Identity = "x/a".parse().unwrap();
        let g = "harness-agent x/a HTTP/80 from 10.0.0.1:5\n";
        let r = http_reply("GET / HTTP/1.1\r\nHost: a\r\n\r\n", &id, g);
        assert!(r.starts_with("HTTP/1.1 200 OK\r\n"), "{r}");
        assert!(r.contains(&format!("Content-Length: {}\r\n", g.len())));
        assert!(r.contains("X-Harness-Backend: x/a\r\n"));
        assert!(r.ends_with(&format!("\r\n\r\n{g}")));
        let r = http_reply("HEAD / HTTP/1.0\n\n", &id, g);
        assert!(
            r.starts_with("HTTP/1.1 200 OK\r\n") && r.ends_with("\r\n\r\n"),
            "{r}"
        );
        let r = http_reply("POST /x HTTP/1.1\r\n\r\n", &id, g);
        assert!(r.starts_with("HTTP/1.1 405 Method Not Allowed\r\n"), "{r}");
        assert_eq!(http_reply("hello\n", &id, g), g);
    }
}
