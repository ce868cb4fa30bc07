//! The ingress proxy through the frame API (what the netns forwarders drive): an external
//! client's SYN to the ingress address, handed to the gateway frame by frame, reaches the
//! proxy on its VIP node; the proxy opens the backend connection through the same vrouters,
//! answers the client once the backend has, relays the backend's greeting and the client's
//! request, passes a reset on, and its timer entry point (`Dataplane::tick`) retransmits an
//! unanswered SYN and resets the client at the connect timeout. The proxy's TCP end sends no
//! more than the peer's window, probes a shut one, and a retransmission timeout resends one
//! segment (backed off), the rest following as ACKs come.

mod common;

use std::collections::VecDeque;
use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use common::{Km, Options, three_nodes};
use harness_scenario::Protocol;
use harness_vrouter_sim::forward::control::{VROUTER_MAC, device_mac};
use harness_vrouter_sim::io::{Egress, Ingress, PROXY_CONNECT_TIMEOUT, PROXY_RETRANSMIT, Place};
use harness_vrouter_sim::wire::frame::{self, Addrs, TcpFlags, Transport};
use harness_vrouter_sim::{Dataplane, EndpointRef, Verdict};

const CLIENT: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 7);
const FIP: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 30);

/// A TCP segment as seen on the wire (the fields a test checks).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Seg {
    src: Ipv4Addr,
    dst: Ipv4Addr,
    sport: u16,
    dport: u16,
    flags: TcpFlags,
    seq: u32,
    ack: u32,
    payload: Vec<u8>,
}

fn seg(f: &[u8]) -> Seg {
    let s = frame::parse_ipv4(f, 14).expect("an IPv4 frame");
    assert!(frame::checksums_ok(f), "bad checksum: {:?}", s.tuple);
    let Transport::Tcp { flags, seq, ack } = s.transport else {
        panic!("not TCP: {:?}", s.transport)
    };
    Seg {
        src: s.tuple.src,
        dst: s.tuple.dst,
        sport: s.tuple.sport,
        dport: s.tuple.dport,
        flags,
        seq,
        ack,
        payload: s.payload(f).to_vec(),
    }
}

const SYN: TcpFlags = TcpFlags {
    syn: true,
    ack: false,
    rst: false,
    fin: false,
};
const SYN_ACK: TcpFlags = TcpFlags {
    syn: true,
    ack: true,
    rst: false,
    fin: false,
};
const ACK: TcpFlags = TcpFlags {
    syn: false,
    ack: true,
    rst: false,
    fin: false,
};
const RST: TcpFlags = TcpFlags {
    syn: false,
    ack: false,
    rst: true,
    fin: false,
};

/// The test's underlay: moves what a node or the gateway emitted to where it goes, until
/// nothing moves, and keeps what reached the external client and the workloads' taps.
struct Wire {
    dp: Dataplane,
    at_client: Vec<Seg>,
    at_taps: Vec<(String, Seg)>,
}

impl Wire {
    fn new() -> (Wire, String) {
        let mut km = Km::new(Options::default());
        three_nodes(&mut km);
        let w1 = km.pod("default", "web-1", "node-b", &[("app", "web")]);
        let w2 = km.pod("default", "web-2", "node-c", &[("app", "web")]);
        let vip = Ipv4Addr::new(10, 96, 0, 40);
        km.service_ports("default", "web", vip, &[("TCP", 80, 80)], &[&w1, &w2]);
        km.ingress("default", "web-ing", FIP, &[("HTTP", 80)], Some((vip, 80)));
        let dp = Dataplane::from_config(km.snapshot(), km.topology.clone());
        assert!(dp.warnings().is_empty(), "{:#?}", dp.warnings());
        let ctl = dp.control();
        assert_eq!(ctl.proxies.len(), 1);
        let node = ctl.nodes[ctl.proxies[0].node].name.clone();
        (
            Wire {
                dp,
                at_client: Vec::new(),
                at_taps: Vec::new(),
            },
            node,
        )
    }

    /// Delivers `egress` (emitted by `from`: a node's name, or `None` for the gateway) and
    /// everything it causes.
    fn pump(&mut self, from: Option<&str>, egress: Vec<Egress>) {
        let mut q: VecDeque<(Option<String>, Egress)> = egress
            .into_iter()
            .map(|e| (from.map(str::to_owned), e))
            .collect();
        let nodes: Vec<(String, Ipv4Addr)> = self
            .dp
            .topology()
            .nodes
            .iter()
            .map(|n| (n.name.clone(), n.vhost))
            .collect();
        let gateway = self.dp.control().gateway;
        let mut steps = 0;
        while let Some((_, e)) = q.pop_front() {
            steps += 1;
            assert!(steps < 100, "a forwarding loop");
            match e.place {
                Place::Fabric => {
                    let dst = frame::parse_ipv4(&e.frame, 14).unwrap().tuple.dst;
                    let rx = if dst == gateway {
                        self.dp.gateway_rx(None, e.frame, false).unwrap()
                    } else {
                        let (n, _) = nodes
                            .iter()
                            .find(|(_, v)| *v == dst)
                            .unwrap_or_else(|| panic!("no device owns {dst}"));
                        self.dp.node_rx(n, Ingress::Fabric, e.frame, false).unwrap()
                    };
                    q.extend(rx.egress.into_iter().map(|e| (None, e)));
                }
                Place::Client(c) => {
                    assert_eq!(c, "client");
                    self.at_client.push(seg(&e.frame));
                }
                Place::Tap(vmi) => self.at_taps.push((vmi, seg(&e.frame))),
                Place::Host => panic!("nothing here is for a node's own stack"),
            }
        }
    }

    /// The external client sends a segment to the ingress address.
    fn client_sends(&mut self, flags: TcpFlags, seq: u32, ack: u32, payload: &[u8]) {
        self.client_sends_window(flags, seq, ack, 64240, payload);
    }

    /// The external client sends a segment advertising `window`.
    fn client_sends_window(
        &mut self,
        flags: TcpFlags,
        seq: u32,
        ack: u32,
        window: u16,
        payload: &[u8],
    ) {
        let mut b = etherparse::PacketBuilder::ethernet2(
            device_mac(CLIENT),
            device_mac(self.dp.control().gateway),
        )
        .ipv4(CLIENT.octets(), FIP.octets(), 64)
        .tcp(40000, 80, seq, window);
        if flags.syn {
            b = b.syn();
        }
        if flags.ack {
            b = b.ack(ack);
        }
        if flags.rst {
            b = b.rst();
        }
        if flags.fin {
            b = b.fin();
        }
        let mut f = Vec::new();
        b.write(&mut f, payload).expect("a TCP frame");
        let rx = self.dp.gateway_rx(Some("client"), f, false).unwrap();
        assert!(rx.dropped.is_none(), "{:?}", rx.dropped);
        self.pump(None, rx.egress);
    }

    /// Runs the proxy node's timers at `now` and delivers what they send.
    fn tick(&mut self, node: &str, now: Instant) {
        let rx = self.dp.tick(node, now).unwrap();
        self.pump(Some(node), rx.egress);
    }

    /// Opens a connection through the proxy, the client's SYN and ACK advertising `window`:
    /// the backend's tap, the handshake ACK the backend got (what it answers), and the
    /// proxy's first sequence number toward the client.
    fn connect(&mut self, window: u16) -> (String, Seg, u32) {
        self.client_sends_window(SYN, 1000, 0, window, b"");
        let (_, taps) = self.take();
        assert_eq!(taps.len(), 1, "{taps:?}");
        let (vmi, syn) = taps[0].clone();
        self.pod_sends(&vmi, &syn, SYN_ACK, 5000, b"");
        let (client, taps) = self.take();
        assert_eq!((client.len(), taps.len()), (1, 1), "{client:?} {taps:?}");
        let proxy_seq = client[0].seq.wrapping_add(1);
        self.client_sends_window(ACK, 1001, proxy_seq, window, b"");
        (vmi, taps[0].1.clone(), proxy_seq)
    }

    /// The backend sends `segments` segments of `len` bytes (from its sequence number
    /// 5001); the proxy acknowledges each.
    fn backend_sends(&mut self, vmi: &str, ack: &Seg, segments: u32, len: usize) {
        for k in 0..segments {
            let bytes = vec![b'a' + k as u8; len];
            self.pod_sends(vmi, ack, ACK, 5001 + k * len as u32, &bytes);
        }
    }
    /// The workload behind tap `vmi` answers `to` (a segment it received).
    fn pod_sends(&mut self, vmi: &str, to: &Seg, flags: TcpFlags, seq: u32, payload: &[u8]) {
        let port = self
            .dp
            .ports()
            .into_iter()
            .find(|p| p.vmi == vmi)
            .expect("the backend's port");
        let a = Addrs {
            src_mac: port.mac,
            dst_mac: VROUTER_MAC,
            src: to.dst,
            dst: to.src,
            ttl: 64,
        };
        let ack = to.seq.wrapping_add(
            to.payload.len() as u32 + u32::from(to.flags.syn) + u32::from(to.flags.fin),
        );
        let f = frame::tcp(&a, to.dport, to.sport, seq, ack, flags, payload);
        let rx = self
            .dp
            .node_rx(&port.node, Ingress::Tap(vmi), f, false)
            .unwrap();
        assert!(rx.dropped.is_none(), "{:?}", rx.dropped);
        self.pump(Some(&port.node), rx.egress);
    }

    fn take(&mut self) -> (Vec<Seg>, Vec<(String, Seg)>) {
        (
            std::mem::take(&mut self.at_client),
            std::mem::take(&mut self.at_taps),
        )
    }
}

/// The data segments among `segs`: (offset from `base`, length).
fn data(segs: &[Seg], base: u32) -> Vec<(u32, u32)> {
    segs.iter()
        .filter(|s| !s.payload.is_empty())
        .map(|s| (s.seq.wrapping_sub(base), s.payload.len() as u32))
        .collect()
}

/// How far past `base` the data segments reach.
fn reach(segs: &[Seg], base: u32) -> u32 {
    data(segs, base)
        .into_iter()
        .map(|(o, n)| o + n)
        .max()
        .unwrap_or(0)
}

#[test]
fn the_proxy_relays_a_connection_frame_by_frame() {
    let (mut w, _) = Wire::new();
    // The client's SYN: nothing answers the client yet; the proxy's SYN reaches a backend
    // pod, from the VIP (not the client).
    w.client_sends(SYN, 1000, 0, b"");
    let (client, taps) = w.take();
    assert!(client.is_empty(), "{client:?}");
    assert_eq!(taps.len(), 1, "{taps:?}");
    let (vmi, syn) = taps[0].clone();
    assert_eq!((syn.flags, syn.dport), (SYN, 80), "{syn:?}");
    assert_ne!(syn.src, CLIENT);
    assert_eq!(w.dp.proxy_connections(), 1);

    // The backend accepts: the client gets its SYN-ACK, the backend the handshake's ACK.
    w.pod_sends(&vmi, &syn, SYN_ACK, 5000, b"");
    let (client, taps) = w.take();
    assert_eq!(client.len(), 1, "{client:?}");
    let synack = &client[0];
    assert_eq!(
        (synack.src, synack.sport, synack.flags, synack.ack),
        (FIP, 80, SYN_ACK, 1001)
    );
    assert_eq!(taps.len(), 1, "{taps:?}");
    assert_eq!(taps[0].0, vmi);
    let ack = taps[0].1.clone();
    assert_eq!(
        (ack.flags, ack.seq, ack.ack),
        (ACK, syn.seq + 1, 5001),
        "{ack:?}"
    );
    let proxy_seq = synack.seq + 1;

    // A model probe meanwhile (the runner traces cells this way) neither sees nor disturbs
    // the open connection.
    let o =
        w.dp.probe(
            &EndpointRef::External("client".into()),
            FIP,
            Protocol::Tcp,
            80,
        )
        .unwrap();
    assert!(
        matches!(&o.verdict, Verdict::Connected { backend } if backend.starts_with("default/web-")),
        "{:?}",
        o.verdict
    );
    assert_eq!(w.dp.proxy_connections(), 1);

    // The client completes its handshake: nothing to relay.
    w.client_sends(ACK, 1001, proxy_seq, b"");
    let (client, taps) = w.take();
    assert!(client.is_empty() && taps.is_empty(), "{client:?} {taps:?}");

    // The backend's greeting reaches the client; the backend's bytes are acknowledged.
    let greeting = b"backend=default/web-1\n";
    w.pod_sends(&vmi, &ack, ACK, 5001, greeting);
    let (client, taps) = w.take();
    assert_eq!(client.len(), 1, "{client:?}");
    assert_eq!(
        (client[0].seq, client[0].ack, client[0].payload.as_slice()),
        (proxy_seq, 1001, greeting.as_slice())
    );
    assert_eq!(taps.len(), 1, "{taps:?}");
    assert_eq!(taps[0].1.ack, 5001 + greeting.len() as u32);

    // The client's request reaches the backend, after the handshake's ACK.
    let request = b"GET / HTTP/1.0\r\n\r\n";
    w.client_sends(ACK, 1001, proxy_seq + greeting.len() as u32, request);
    let (client, taps) = w.take();
    assert_eq!(taps.len(), 1, "{taps:?}");
    let got = &taps[0].1;
    assert_eq!(
        (got.seq, got.payload.as_slice()),
        (syn.seq + 1, request.as_slice())
    );
    assert_eq!(client.len(), 1, "{client:?}");
    assert_eq!(client[0].ack, 1001 + request.len() as u32);

    // The client resets: so is the backend's connection, and the session is gone.
    w.client_sends(RST, 1001 + request.len() as u32, 0, b"");
    let (_, taps) = w.take();
    assert_eq!(taps.len(), 1, "{taps:?}");
    assert!(taps[0].1.flags.rst, "{taps:?}");
    assert_eq!(w.dp.proxy_connections(), 0);

    // A late segment of that connection is answered with a reset, as a kernel would.
    w.client_sends(ACK, 1001, proxy_seq, b"late");
    let (client, _) = w.take();
    assert_eq!(client.len(), 1, "{client:?}");
    assert!(
        client[0].flags.rst && client[0].seq == proxy_seq,
        "{client:?}"
    );
}

#[test]
fn the_proxy_timers_retransmit_the_syn_and_reset_the_client_at_the_connect_timeout() {
    let (mut w, proxy_node) = Wire::new();
    let t0 = Instant::now();
    let other = ["node-a", "node-b", "node-c"]
        .into_iter()
        .find(|n| *n != proxy_node)
        .unwrap();
    assert!(w.dp.tick(&proxy_node, t0).unwrap().egress.is_empty());
    w.client_sends(SYN, 7000, 0, b"");
    let (_, taps) = w.take();
    assert_eq!(taps.len(), 1, "{taps:?}");
    let syn = taps[0].1.clone();

    // Before the retransmission timeout nothing is sent again.
    let rx = w.dp.tick(&proxy_node, t0 + PROXY_RETRANSMIT / 2).unwrap();
    assert!(rx.egress.is_empty(), "{:?}", rx.egress);
    // The backend never answers: the SYN is sent again, the same SYN.
    let rx =
        w.dp.tick(
            &proxy_node,
            t0 + PROXY_RETRANSMIT + Duration::from_millis(1),
        )
        .unwrap();
    w.pump(Some(&proxy_node), rx.egress);
    let (client, taps) = w.take();
    assert!(client.is_empty(), "{client:?}");
    assert_eq!(taps.len(), 1, "{taps:?}");
    assert_eq!(taps[0].1, syn);

    // Another node's forwarder ticking does not touch this node's proxy.
    let late = t0 + PROXY_CONNECT_TIMEOUT + Duration::from_millis(1);
    assert!(w.dp.tick(other, late).unwrap().egress.is_empty());
    assert_eq!(w.dp.proxy_connections(), 1);

    // The connect timeout: the client is reset (haproxy's 503), the session closed.
    let rx = w.dp.tick(&proxy_node, late).unwrap();
    w.pump(Some(&proxy_node), rx.egress);
    let (client, _) = w.take();
    assert_eq!(client.len(), 1, "{client:?}");
    assert!(client[0].flags.rst && client[0].ack == 7001, "{client:?}");
    assert_eq!((client[0].src, client[0].sport), (FIP, 80));
    assert_eq!(w.dp.proxy_connections(), 0);

    // An unknown node is an error, not a panic.
    assert!(w.dp.tick("no-such-node", late).is_err());
}

#[test]
fn a_peer_advertising_a_small_window_gets_no_more_than_the_window_in_flight() {
    let (mut w, proxy_node) = Wire::new();
    let t0 = Instant::now();
    w.tick(&proxy_node, t0);
    let (vmi, ack, proxy_seq) = w.connect(1000);
    w.take();

    // The backend's 3000 bytes: the proxy takes them all (it has room), the client gets
    // its 1000-byte window's worth.
    w.backend_sends(&vmi, &ack, 6, 500);
    let (client, taps) = w.take();
    assert_eq!(
        taps.len(),
        6,
        "each backend segment is acknowledged: {taps:?}"
    );
    assert_eq!(taps[5].1.ack, 5001 + 3000);
    assert_eq!(
        reach(&client, proxy_seq),
        1000,
        "{:?}",
        data(&client, proxy_seq)
    );
    assert!(data(&client, proxy_seq).iter().all(|(_, n)| *n <= 536));

    // The client takes 600 bytes and still offers 1000: 600 more go out, no more.
    w.client_sends_window(ACK, 1001, proxy_seq + 600, 1000, b"");
    let (client, _) = w.take();
    assert_eq!(data(&client, proxy_seq), [(1000, 536), (1536, 64)]);

    // It takes those and shuts its window: no byte is sent, however long it waits; the
    // persist timer sends a window probe (an ACK just below what the client acknowledged)
    // at the retransmission timeout.
    w.client_sends_window(ACK, 1001, proxy_seq + 1600, 0, b"");
    let (client, _) = w.take();
    assert!(client.is_empty(), "{client:?}");
    w.tick(&proxy_node, t0 + PROXY_RETRANSMIT / 2);
    assert!(w.take().0.is_empty());
    w.tick(
        &proxy_node,
        t0 + PROXY_RETRANSMIT + Duration::from_millis(1),
    );
    let (client, _) = w.take();
    assert_eq!(client.len(), 1, "{client:?}");
    assert_eq!(
        (client[0].flags, client[0].seq, client[0].payload.len()),
        (ACK, proxy_seq + 1599, 0)
    );
    // The probe answered (the window still shut) keeps the connection up and backs off:
    // nothing at the next base interval.
    w.client_sends_window(ACK, 1001, proxy_seq + 1600, 0, b"");
    assert!(w.take().0.is_empty());
    w.tick(
        &proxy_node,
        t0 + 2 * PROXY_RETRANSMIT + Duration::from_millis(2),
    );
    assert!(w.take().0.is_empty());

    // The window opens to 2000: the other 1400 bytes go out at once.
    w.client_sends_window(ACK, 1001, proxy_seq + 1600, 2000, b"");
    let (client, _) = w.take();
    assert_eq!(
        reach(&client, proxy_seq),
        3000,
        "{:?}",
        data(&client, proxy_seq)
    );
    assert_eq!(data(&client, proxy_seq)[0].0, 1600);
    assert_eq!(
        data(&client, proxy_seq).iter().map(|d| d.1).sum::<u32>(),
        1400
    );
    assert_eq!(w.dp.proxy_connections(), 1);
}

#[test]
fn a_retransmission_timeout_resends_one_segment_and_the_rest_follows_the_acks() {
    let (mut w, proxy_node) = Wire::new();
    let t0 = Instant::now();
    w.tick(&proxy_node, t0);
    let (vmi, ack, proxy_seq) = w.connect(64240);
    w.take();

    // 4000 bytes from the backend fit the client's window and the initial congestion
    // window: all are sent.
    w.backend_sends(&vmi, &ack, 8, 500);
    let (client, _) = w.take();
    assert_eq!(reach(&client, proxy_seq), 4000);

    // The client acknowledges nothing: at the timeout only the first segment goes again.
    w.tick(&proxy_node, t0 + PROXY_RETRANSMIT / 2);
    assert!(w.take().0.is_empty());
    let first = t0 + PROXY_RETRANSMIT + Duration::from_millis(1);
    w.tick(&proxy_node, first);
    let (client, _) = w.take();
    assert_eq!(data(&client, proxy_seq), [(0, 536)]);

    // The timer backs off: nothing one base interval later, the same segment at twice it.
    w.tick(
        &proxy_node,
        first + PROXY_RETRANSMIT + Duration::from_millis(1),
    );
    assert!(w.take().0.is_empty());
    let second = first + 2 * PROXY_RETRANSMIT + Duration::from_millis(1);
    w.tick(&proxy_node, second);
    let (client, _) = w.take();
    assert_eq!(data(&client, proxy_seq), [(0, 536)]);

    // Its ACK arrives: the congestion window grows to two segments, which follow.
    w.client_sends(ACK, 1001, proxy_seq + 536, b"");
    let (client, _) = w.take();
    assert_eq!(data(&client, proxy_seq), [(536, 536), (1072, 536)]);
    // The client had the rest all along: its ACK of everything ends the retransmissions.
    w.client_sends(ACK, 1001, proxy_seq + 4000, b"");
    let (client, _) = w.take();
    assert_eq!(data(&client, proxy_seq), []);
    w.tick(&proxy_node, second + Duration::from_secs(5));
    assert!(w.take().0.is_empty());
    assert_eq!(w.dp.proxy_connections(), 1);
}
