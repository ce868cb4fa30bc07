//! The agent on loopback in the current network namespace: serving, probing every outcome,
//! batches. No capability needed (ICMP and SCTP skip, saying why, when the machine lacks them).

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddrV4, TcpStream};
use std::time::{Duration, Instant};

use harness_agent::{
    Identity, ProbeRequest, ProbeResultKind, ServeOptions, ServedPort, ServedProtocol,
    ServerHandle, probe_batch, serve_with,
};
use harness_scenario::Protocol;

const LOCALHOST: Ipv4Addr = Ipv4Addr::LOCALHOST;

fn loopback() -> ServeOptions {
    ServeOptions {
        address: LOCALHOST,
        http: false,
    }
}

fn id(s: &str) -> Identity {
    s.parse().unwrap()
}

fn tcp0() -> ServedPort {
    ServedPort::new(ServedProtocol::Tcp, 0)
}
fn udp0() -> ServedPort {
    ServedPort::new(ServedProtocol::Udp, 0)
}
fn http0() -> ServedPort {
    ServedPort::new(ServedProtocol::Http, 0)
}

/// Serves `ports` on loopback as `identity`.
fn agent(identity: &str, ports: &[ServedPort]) -> ServerHandle {
    serve_with(ports, &id(identity), &loopback()).unwrap()
}

fn port_of(server: &ServerHandle, p: ServedPort) -> u16 {
    server.local_addr(p).unwrap().port()
}

fn req(protocol: Protocol, port: u16, timeout_ms: u64) -> ProbeRequest {
    ProbeRequest::new(LOCALHOST, protocol, port).with_timeout_ms(timeout_ms)
}

/// A TCP port nobody listens on (bound by us, then closed).
fn closed_tcp_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn closed_udp_port() -> u16 {
    std::net::UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[test]
fn tcp_connected_names_the_backend_and_closed_port_is_refused() {
    let server = agent("x/a", &[tcp0()]);
    let port = port_of(&server, tcp0());
    let closed = closed_tcp_port();
    let r = probe_batch(&[
        req(Protocol::Tcp, port, 1000),
        req(Protocol::Tcp, closed, 1000),
    ]);
    assert_eq!(r[0].result, ProbeResultKind::Connected, "{r:?}");
    assert_eq!(r[0].backend.as_deref(), Some("x/a"));
    assert!(
        r[0].detail.starts_with(&format!(
            "x/a answered on TCP/{port}, saw source 127.0.0.1:"
        )),
        "{}",
        r[0].detail
    );
    // The source the server saw, as a prober reads it back: this probe's own socket.
    let seen = r[0].source_seen().expect("a source in the greeting");
    assert_eq!(seen.ip(), std::net::IpAddr::from([127, 0, 0, 1]), "{seen}");
    assert_ne!(seen.port(), port, "{seen}");
    assert_eq!(r[1].result, ProbeResultKind::Refused, "{r:?}");
    assert_eq!(r[1].backend, None);
    assert_eq!(r[1].source_seen(), None);
    assert!(!r[1].refused_on_the_path(), "{r:?}");
    assert!(
        r[1].detail.starts_with("TCP RST from 127.0.0.1:"),
        "{}",
        r[1].detail
    );
    server.shutdown();
    // Shut down means closed: the same port now refuses.
    let after = probe_batch(&[req(Protocol::Tcp, port, 1000)]);
    assert_eq!(after[0].result, ProbeResultKind::Refused, "{after:?}");
}

#[test]
fn tcp_syn_dropped_is_a_timeout() {
    // A listener whose accept queue is full drops new SYNs: no SYN-ACK, no RST — what a
    // dropping policy looks like from the client. Backlog 0 holds one connection.
    let listener =
        socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    listener
        .bind(&SocketAddrV4::new(LOCALHOST, 0).into())
        .unwrap();
    listener.listen(0).unwrap();
    let addr = listener.local_addr().unwrap().as_socket().unwrap();
    let _fill: Vec<TcpStream> = (0..2)
        .filter_map(|_| TcpStream::connect_timeout(&addr, Duration::from_millis(200)).ok())
        .collect();
    let started = Instant::now();
    let r = probe_batch(&[req(Protocol::Tcp, addr.port(), 200)]);
    let took = started.elapsed();
    assert_eq!(r[0].result, ProbeResultKind::Timeout, "{r:?}");
    assert_eq!(
        r[0].detail,
        format!("no answer to the TCP SYN to {addr} within 200 ms")
    );
    assert!(
        took >= Duration::from_millis(190) && took < Duration::from_millis(800),
        "{took:?}"
    );
}

#[test]
fn udp_reply_closed_port_and_silence() {
    let server = agent("y/b", &[udp0()]);
    let port = port_of(&server, udp0());
    // Bound, never answers: the datagrams vanish, as behind a dropping policy.
    let silent = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let silent_port = silent.local_addr().unwrap().port();
    let closed = closed_udp_port();
    let r = probe_batch(&[
        req(Protocol::Udp, port, 1000),
        req(Protocol::Udp, closed, 1000),
        req(Protocol::Udp, silent_port, 200),
    ]);
    assert_eq!(r[0].result, ProbeResultKind::Connected, "{r:?}");
    assert_eq!(r[0].backend.as_deref(), Some("y/b"));
    assert!(
        r[0].detail.contains(&format!("on UDP/{port}")),
        "{}",
        r[0].detail
    );
    // The kernel answers a closed UDP port with ICMP port unreachable.
    assert_eq!(r[1].result, ProbeResultKind::Refused, "{r:?}");
    assert!(
        r[1].detail.starts_with("ICMP port unreachable for UDP"),
        "{}",
        r[1].detail
    );
    assert_eq!(r[2].result, ProbeResultKind::Timeout, "{r:?}");
    assert!(
        r[2].detail.contains("within 200 ms (3 datagrams sent)"),
        "{}",
        r[2].detail
    );
    // The silent socket got the datagrams: a real exchange, not a shortcut.
    let mut buf = [0u8; 64];
    silent
        .set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    let n = silent.recv(&mut buf).unwrap();
    assert_eq!(&buf[..n], b"harness-agent probe\n");
}

#[test]
fn http_port_answers_get_and_the_prober_reads_it() {
    let server = agent("x/c", &[http0(), tcp0()]);
    let http = port_of(&server, http0());
    let mut s = TcpStream::connect((LOCALHOST, http)).unwrap();
    s.write_all(b"GET /anything HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let mut response = String::new();
    s.read_to_string(&mut response).unwrap();
    assert!(response.starts_with("HTTP/1.1 200 OK\r\n"), "{response}");
    assert!(
        response.contains("\r\nX-Harness-Backend: x/c\r\n"),
        "{response}"
    );
    let body = response.split("\r\n\r\n").nth(1).unwrap();
    assert!(
        body.starts_with(&format!("harness-agent x/c HTTP/{http} from 127.0.0.1:")),
        "{body}"
    );
    let length: usize = response
        .lines()
        .find_map(|l| l.strip_prefix("Content-Length: "))
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(length, body.len());

    let mut s = TcpStream::connect((LOCALHOST, http)).unwrap();
    s.write_all(b"DELETE / HTTP/1.1\r\n\r\n").unwrap();
    let mut response = String::new();
    s.read_to_string(&mut response).unwrap();
    assert!(response.starts_with("HTTP/1.1 405 "), "{response}");

    // The prober speaks to HTTP and plain TCP ports alike.
    let r = probe_batch(&[
        req(Protocol::Tcp, http, 1000),
        req(Protocol::Tcp, port_of(&server, tcp0()), 1000),
    ]);
    assert_eq!(r[0].backend.as_deref(), Some("x/c"), "{r:?}");
    assert_eq!(r[1].backend.as_deref(), Some("x/c"), "{r:?}");
}

#[test]
fn http_option_turns_every_tcp_port_into_http() {
    let opts = ServeOptions {
        http: true,
        ..loopback()
    };
    let server = serve_with(&[tcp0()], &id("z/a"), &opts).unwrap();
    assert_eq!(server.listening()[0].protocol, ServedProtocol::Http);
    let mut s = TcpStream::connect(server.local_addr(tcp0()).unwrap()).unwrap();
    s.write_all(b"GET / HTTP/1.0\r\n\r\n").unwrap();
    let mut response = String::new();
    s.read_to_string(&mut response).unwrap();
    assert!(response.starts_with("HTTP/1.1 200 OK"), "{response}");
}

#[test]
fn plain_tcp_greets_first_and_closes_cleanly() {
    let server = agent("x/a", &[tcp0()]);
    let mut s = TcpStream::connect(server.local_addr(tcp0()).unwrap()).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    // Without sending anything (as `nc` does): greeting, then EOF (FIN, not RST).
    let mut text = String::new();
    s.read_to_string(&mut text).unwrap();
    assert!(text.starts_with("harness-agent x/a TCP/"), "{text}");
    assert!(text.ends_with('\n') && text.lines().count() == 1, "{text}");
}

#[test]
fn sctp_when_the_kernel_has_it() {
    let sctp0 = ServedPort::new(ServedProtocol::Sctp, 0);
    let server = agent("x/a", &[sctp0, tcp0()]);
    // Whatever the kernel, the TCP port next to it is served.
    assert_eq!(server.listening().len() + server.skipped().len(), 2);
    assert!(server.local_addr(tcp0()).is_some());
    if let Some(skipped) = server.skipped().first() {
        assert_eq!(skipped.port, sctp0);
        assert!(
            skipped.reason.starts_with("this kernel has no SCTP"),
            "{}",
            skipped.reason
        );
        // A prober on the same kernel says so rather than claiming a verdict.
        let r = probe_batch(&[req(Protocol::Sctp, 9, 200)]);
        assert_eq!(r[0].result, ProbeResultKind::Other, "{r:?}");
        assert!(
            r[0].detail.starts_with("this kernel has no SCTP"),
            "{}",
            r[0].detail
        );
        println!("skipped: SCTP answers: {}", skipped.reason);
        return;
    }
    let port = port_of(&server, sctp0);
    let r = probe_batch(&[req(Protocol::Sctp, port, 1000)]);
    assert_eq!(r[0].result, ProbeResultKind::Connected, "{r:?}");
    assert_eq!(r[0].backend.as_deref(), Some("x/a"));
    server.shutdown();
    // No listener: the kernel answers INIT with ABORT.
    let r = probe_batch(&[req(Protocol::Sctp, port, 1000)]);
    assert_eq!(r[0].result, ProbeResultKind::Refused, "{r:?}");
}

#[test]
fn icmp_echo_to_loopback_when_permitted() {
    let r = probe_batch(&[ProbeRequest::new(LOCALHOST, Protocol::Icmp, 0).with_timeout_ms(1000)]);
    if r[0].result == ProbeResultKind::Other && r[0].detail.starts_with("cannot send ICMP echo") {
        println!("skipped: ICMP echo: {}", r[0].detail);
        return;
    }
    assert_eq!(r[0].result, ProbeResultKind::Connected, "{r:?}");
    assert_eq!(r[0].backend.as_deref(), Some("127.0.0.1"));
    assert!(
        r[0].detail.starts_with("echo reply from 127.0.0.1 ("),
        "{}",
        r[0].detail
    );
}

#[test]
fn a_batch_of_100_answers_in_request_order() {
    let a = agent("x/a", &[tcp0(), udp0()]);
    let b = agent("x/b", &[tcp0(), udp0()]);
    let closed = closed_tcp_port();
    let targets = [
        (Protocol::Tcp, port_of(&a, tcp0()), Some("x/a")),
        (Protocol::Udp, port_of(&b, udp0()), Some("x/b")),
        (Protocol::Tcp, closed, None),
        (Protocol::Tcp, port_of(&b, tcp0()), Some("x/b")),
        (Protocol::Udp, port_of(&a, udp0()), Some("x/a")),
    ];
    // A scrambled but reproducible order.
    let batch: Vec<(Protocol, u16, Option<&str>)> =
        (0..100).map(|i| targets[(i * 7 + i / 5) % 5]).collect();
    let requests: Vec<ProbeRequest> = batch
        .iter()
        .map(|&(p, port, _)| req(p, port, 2000))
        .collect();
    let started = Instant::now();
    let results = probe_batch(&requests);
    assert_eq!(results.len(), 100);
    for (i, ((_, _, backend), r)) in batch.iter().zip(&results).enumerate() {
        let expected = if backend.is_some() {
            ProbeResultKind::Connected
        } else {
            ProbeResultKind::Refused
        };
        assert_eq!(
            (r.result, r.backend.as_deref()),
            (expected, *backend),
            "probe {i}: {r:?}"
        );
    }
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
}

#[test]
fn probes_of_a_batch_run_concurrently() {
    // Twenty silent UDP ports at 300 ms each: one after another would take 6 s.
    let silent: Vec<std::net::UdpSocket> = (0..20)
        .map(|_| std::net::UdpSocket::bind("127.0.0.1:0").unwrap())
        .collect();
    let requests: Vec<ProbeRequest> = silent
        .iter()
        .map(|s| req(Protocol::Udp, s.local_addr().unwrap().port(), 300))
        .collect();
    let started = Instant::now();
    let results = probe_batch(&requests);
    let took = started.elapsed();
    assert!(
        results.iter().all(|r| r.result == ProbeResultKind::Timeout),
        "{results:?}"
    );
    assert!(took < Duration::from_millis(1500), "{took:?}");
}

#[test]
fn in_flight_limits_how_many_probes_run_at_once() {
    // Six silent UDP ports at 200 ms each, two at a time: three rounds, not one.
    let silent: Vec<std::net::UdpSocket> = (0..6)
        .map(|_| std::net::UdpSocket::bind("127.0.0.1:0").unwrap())
        .collect();
    let requests: Vec<ProbeRequest> = silent
        .iter()
        .map(|s| req(Protocol::Udp, s.local_addr().unwrap().port(), 200))
        .collect();
    let started = Instant::now();
    let results = harness_agent::probe_batch_in_flight(&requests, 2);
    let took = started.elapsed();
    assert!(
        results.iter().all(|r| r.result == ProbeResultKind::Timeout),
        "{results:?}"
    );
    assert!(
        took >= Duration::from_millis(600) && took < Duration::from_millis(1500),
        "{took:?}"
    );
    // 0 means one at a time, not none.
    let one = harness_agent::probe_batch_in_flight(&requests[..1], 0);
    assert_eq!(one[0].result, ProbeResultKind::Timeout, "{one:?}");
}

#[test]
fn probe_batch_from_inside_a_runtime_does_not_panic() {
    let server = agent("x/a", &[tcp0()]);
    let port = port_of(&server, tcp0());
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let r = rt.block_on(async { probe_batch(&[req(Protocol::Tcp, port, 1000)]) });
    assert_eq!(r[0].backend.as_deref(), Some("x/a"), "{r:?}");
    let r = rt.block_on(harness_agent::probe_batch_async(&[req(
        Protocol::Tcp,
        port,
        1000,
    )]));
    assert_eq!(r[0].backend.as_deref(), Some("x/a"), "{r:?}");
}

#[test]
fn a_connected_server_that_is_not_an_agent() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let speaker = std::thread::spawn(move || {
        let (mut s, _) = listener.accept().unwrap();
        s.write_all(b"SSH-2.0-OpenSSH_9.2\r\n").unwrap();
        let mut sink = [0u8; 256];
        let _ = s.read(&mut sink);
    });
    let r = probe_batch(&[req(Protocol::Tcp, port, 1000)]);
    assert_eq!(r[0].result, ProbeResultKind::Connected, "{r:?}");
    assert_eq!(r[0].backend, None);
    assert!(
        r[0].detail
            .contains("not with a harness agent's greeting: \"SSH-2.0"),
        "{}",
        r[0].detail
    );
    speaker.join().unwrap();
}

#[test]
fn bind_errors_name_the_port_and_what_to_do() {
    let server = agent("x/a", &[tcp0()]);
    let taken = port_of(&server, tcp0());
    let e = serve_with(
        &[ServedPort::new(ServedProtocol::Tcp, taken)],
        &id("x/b"),
        &loopback(),
    )
    .unwrap_err()
    .to_string();
    assert!(
        e.starts_with(&format!("cannot serve TCP/{taken} on 127.0.0.1: ")),
        "{e}"
    );
    assert!(e.contains("another socket holds it"), "{e}");
    let e = serve_with(
        &[tcp0()],
        &id("x/b"),
        &ServeOptions {
            address: "198.51.100.77".parse().unwrap(),
            http: false,
        },
    )
    .unwrap_err()
    .to_string();
    assert!(
        e.contains("no interface of this network namespace has that address"),
        "{e}"
    );
}

#[test]
fn invalid_requests_answer_other_without_sending() {
    let r = probe_batch(&[ProbeRequest::new(LOCALHOST, Protocol::Tcp, 0)]);
    assert_eq!(r[0].result, ProbeResultKind::Other);
    assert!(r[0].detail.contains("has no `port`"), "{}", r[0].detail);
}

#[test]
fn serve_and_shutdown_from_async_code() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let server = agent("x/a", &[tcp0()]);
        let port = port_of(&server, tcp0());
        let r = harness_agent::probe_batch_async(&[req(Protocol::Tcp, port, 1000)]).await;
        assert_eq!(r[0].backend.as_deref(), Some("x/a"), "{r:?}");
        // From async code too, a port that cannot be served is an error, not a panic.
        let clash = serve_with(
            &[ServedPort::new(ServedProtocol::Tcp, port)],
            &id("x/b"),
            &loopback(),
        );
        assert!(clash.is_err());
        server.shutdown();
    });
}
