//! The frame-level API (`io`) drives the same vrouter code as the model's probes: a SYN
//! handed to node-a's tap comes out MPLS-over-UDP on the underlay addressed to node-b's MAC,
//! node-b decapsulates it to c's tap, c's SYN-ACK goes back the same way, and the flows the
//! vrouters installed are the ones a model probe would install.

mod common;

use std::net::Ipv4Addr;

use common::{Km, Options, three_nodes};
use harness_scenario::Protocol;
use harness_vrouter_sim::forward::control::{VROUTER_MAC, device_mac};
use harness_vrouter_sim::io::{Ingress, Place};
use harness_vrouter_sim::wire::encap;
use harness_vrouter_sim::wire::frame::{self, Addrs, Payload, TcpFlags, Transport};
use harness_vrouter_sim::{Dataplane, DataplaneError, EndpointRef, Verdict};

fn basic(opts: Options) -> Dataplane {
    let mut km = Km::new(opts);
    three_nodes(&mut km);
    km.pod("default", "a", "node-a", &[("pod", "a")]);
    km.pod("default", "c", "node-b", &[("pod", "c")]);
    Dataplane::from_config(km.snapshot(), km.topology.clone())
}

fn port<'a>(
    ports: &'a [harness_vrouter_sim::io::PortInfo],
    ep: &str,
) -> &'a harness_vrouter_sim::io::PortInfo {
    ports
        .iter()
        .find(|p| p.endpoint.as_deref() == Some(ep))
        .expect("port")
}

#[test]
fn a_tcp_handshake_crosses_two_vrouters_frame_by_frame() {
    let mut dp = basic(Options::default());
    let ports = dp.ports();
    let (a, c) = (
        port(&ports, "default/a").clone(),
        port(&ports, "default/c").clone(),
    );
    assert_eq!((a.node.as_str(), c.node.as_str()), ("node-a", "node-b"));
    let (a_ip, c_ip) = (a.address.unwrap().addr(), c.address.unwrap().addr());
    assert!(a.gateway.is_some() && a.address.unwrap().prefix_len() < 32);

    // ARP for the gateway: proxy-answered with the vrouter MAC.
    let arp = frame::arp(
        a.mac,
        frame::BROADCAST,
        false,
        (a.mac, a_ip),
        ([0; 6], a.gateway.unwrap()),
    );
    let rx = dp
        .node_rx("node-a", Ingress::Tap(&a.vmi), arp, true)
        .unwrap();
    assert_eq!(rx.egress.len(), 1);
    assert_eq!(rx.egress[0].place, Place::Tap(a.vmi.clone()));
    match frame::parse(&rx.egress[0].frame).unwrap().payload {
        Payload::Arp(r) => assert_eq!(r.sender_mac, VROUTER_MAC),
        p => panic!("{p:?}"),
    }

    let to = |src, dst, src_mac, flags, seq, ack| {
        let ad = Addrs {
            src_mac,
            dst_mac: VROUTER_MAC,
            src,
            dst,
            ttl: 64,
        };
        (ad, flags, seq, ack)
    };
    let (ad, flags, seq, ack) = to(
        a_ip,
        c_ip,
        a.mac,
        TcpFlags {
            syn: true,
            ..TcpFlags::default()
        },
        100,
        0,
    );
    let syn = frame::tcp(&ad, 40000, 80, seq, ack, flags, b"");
    let rx = dp
        .node_rx("node-a", Ingress::Tap(&a.vmi), syn, true)
        .unwrap();
    assert!(rx.dropped.is_none(), "{:?}", rx.hops);
    assert_eq!(rx.egress.len(), 1);
    let out = &rx.egress[0];
    assert_eq!(out.place, Place::Fabric);
    let (node_b_vhost, node_b_mac) = dp.node_underlay("node-b").unwrap();
    assert_eq!(
        &out.frame[0..6],
        &node_b_mac,
        "addressed to node-b on the underlay"
    );
    let s = frame::parse_ipv4(&out.frame, 14).unwrap();
    assert_eq!(s.tuple.dst, node_b_vhost);
    assert_eq!(encap::classify(&s).map(|k| k.as_str()), Some("MPLSoUDP"));
    assert!(frame::checksums_ok(&out.frame));

    let rx = dp
        .node_rx("node-b", Ingress::Fabric, out.frame.clone(), false)
        .unwrap();
    assert_eq!(rx.egress.len(), 1, "{:?}", rx.dropped);
    assert_eq!(rx.egress[0].place, Place::Tap(c.vmi.clone()));
    let delivered = &rx.egress[0].frame;
    assert_eq!(&delivered[0..6], &c.mac);
    let d = frame::parse_ipv4(delivered, 14).unwrap();
    assert_eq!((d.tuple.src, d.tuple.dst, d.tuple.dport), (a_ip, c_ip, 80));

    // c answers; the reverse flow passes back to a.
    let (ad, flags, seq, ack) = to(
        c_ip,
        a_ip,
        c.mac,
        TcpFlags {
            syn: true,
            ack: true,
            ..TcpFlags::default()
        },
        7,
        101,
    );
    let synack = frame::tcp(&ad, 80, 40000, seq, ack, flags, b"");
    let rx = dp
        .node_rx("node-b", Ingress::Tap(&c.vmi), synack, false)
        .unwrap();
    let back = rx.egress.into_iter().next().expect("tunnelled back");
    let rx = dp
        .node_rx("node-a", Ingress::Fabric, back.frame, false)
        .unwrap();
    assert_eq!(rx.egress[0].place, Place::Tap(a.vmi.clone()));
    let s = frame::parse_ipv4(&rx.egress[0].frame, 14).unwrap();
    assert!(matches!(s.transport, Transport::Tcp { flags, .. } if flags.syn && flags.ack));
    assert_eq!(dp.flow_count("node-a"), 2, "forward and reverse flow");
    assert_eq!(dp.flow_count("node-b"), 2);

    // The model probe over the same state agrees.
    let o = dp
        .probe(
            &EndpointRef::Pod("default/a".into()),
            c_ip,
            Protocol::Tcp,
            80,
        )
        .unwrap();
    assert_eq!(
        o.verdict,
        Verdict::Connected {
            backend: "default/c".into()
        }
    );
}

#[test]
fn arp_crosses_between_the_underlay_and_vhost0_and_unknown_addresses_stay_inside() {
    let mut dp = basic(Options::default());
    let (vhost, mac) = dp.node_underlay("node-a").unwrap();
    let host = Ipv4Addr::new(192, 168, 0, 50);
    let req = frame::arp(
        device_mac(host),
        frame::BROADCAST,
        false,
        (device_mac(host), host),
        ([0; 6], vhost),
    );
    let rx = dp
        .node_rx("node-a", Ingress::Fabric, req.clone(), false)
        .unwrap();
    assert_eq!(rx.egress[0].place, Place::Host);
    let rx = dp.node_rx("node-a", Ingress::Host, req, false).unwrap();
    assert_eq!(rx.egress[0].place, Place::Fabric);
    assert_eq!(dp.underlay_mac(host), Some(device_mac(host)));
    assert_eq!(dp.underlay_mac(vhost), Some(mac));
    assert_eq!(dp.underlay_mac(Ipv4Addr::new(8, 8, 8, 8)), None);
    // The node's kernel sending to an address no device owns: nothing leaves.
    let ad = Addrs {
        src_mac: mac,
        dst_mac: [2; 6],
        src: vhost,
        dst: Ipv4Addr::new(8, 8, 8, 8),
        ttl: 64,
    };
    let rx = dp
        .node_rx("node-a", Ingress::Host, frame::udp(&ad, 1, 53, b"x"), false)
        .unwrap();
    assert!(rx.egress.is_empty(), "{:?}", rx.egress);
    assert!(rx.dropped.is_some());
}

#[test]
fn bad_input_is_an_error_or_a_drop_never_a_panic() {
    let mut dp = basic(Options::default());
    let c = port(&dp.ports(), "default/c").vmi.clone();
    assert!(matches!(
        dp.node_rx("nope", Ingress::Fabric, vec![], false),
        Err(DataplaneError::Unknown(_))
    ));
    assert!(matches!(
        dp.node_rx("node-a", Ingress::Tap("no-such-vmi"), vec![], false),
        Err(DataplaneError::Unknown(_))
    ));
    // c's tap is on node-b, not node-a.
    assert!(
        dp.node_rx("node-a", Ingress::Tap(&c), vec![0; 60], false)
            .is_err()
    );
    for f in [vec![], vec![0u8; 13], vec![0xff; 64], vec![0x45; 1500]] {
        for ing in [Ingress::Fabric, Ingress::Host, Ingress::Tap(&c)] {
            let _ = dp.node_rx("node-b", ing, f.clone(), true);
        }
    }
    assert!(dp.gateway_rx(Some("nobody"), vec![], false).is_err());
    let _ = dp.gateway_rx(None, vec![0; 40], false).unwrap();
}

#[test]
fn a_pod_reaching_its_own_nodes_vhost_is_looped_back_never_put_on_the_wire() {
    // Fabric forwarding off: the pod's VRF tunnels to the node's vhost, which is this node.
    let mut dp = basic(Options {
        ip_fabric_forwarding: false,
        ..Options::default()
    });
    let ports = dp.ports();
    let a = port(&ports, "default/a").clone();
    let (vhost, _) = dp.node_underlay("node-a").unwrap();
    let echo = frame::icmp_echo(
        &Addrs {
            src_mac: a.mac,
            dst_mac: VROUTER_MAC,
            src: a.address.unwrap().addr(),
            dst: vhost,
            ttl: 64,
        },
        false,
        7,
        1,
        b"ping",
    );
    let rx = dp
        .node_rx("node-a", Ingress::Tap(&a.vmi), echo, true)
        .unwrap();
    assert!(rx.dropped.is_none(), "{:?} {:#?}", rx.dropped, rx.hops);
    let places: Vec<&Place> = rx.egress.iter().map(|e| &e.place).collect();
    assert_eq!(places, vec![&Place::Host], "{:#?}", rx.hops);
    let s = frame::parse_ipv4(&rx.egress[0].frame, 14).unwrap();
    assert_eq!(s.tuple.dst, vhost);
    assert!(
        rx.hops
            .iter()
            .any(|h| h.note.as_deref().is_some_and(|n| n.contains("looped back"))),
        "{:#?}",
        rx.hops
    );
    // The model agrees: the node answers.
    let o = dp
        .probe(
            &EndpointRef::Pod("default/a".into()),
            vhost,
            Protocol::Icmp,
            0,
        )
        .unwrap();
    assert!(matches!(o.verdict, Verdict::Connected { .. }), "{o:?}");
}

#[test]
fn a_pod_reaching_itself_through_its_service_vip_is_hairpin_snatted_to_the_vip() {
    let mut km = Km::new(Options::default());
    three_nodes(&mut km);
    let web = km.pod("default", "web", "node-a", &[("app", "web")]);
    let vip = Ipv4Addr::new(10, 96, 0, 30);
    // The pod serves 80 (the fixture's default); the service maps 80 to it.
    km.service("default", "web", vip, 80, 80, &[&web]);
    let mut dp = Dataplane::from_config(km.snapshot(), km.topology.clone());
    let ports = dp.ports();
    let w = port(&ports, "default/web").clone();
    let w_ip = w.address.unwrap().addr();
    let syn = frame::tcp(
        &Addrs {
            src_mac: w.mac,
            dst_mac: VROUTER_MAC,
            src: w_ip,
            dst: vip,
            ttl: 64,
        },
        41000,
        80,
        1,
        0,
        TcpFlags {
            syn: true,
            ..TcpFlags::default()
        },
        b"",
    );
    let rx = dp
        .node_rx("node-a", Ingress::Tap(&w.vmi), syn, true)
        .unwrap();
    assert_eq!(rx.egress.len(), 1, "{:?} {:#?}", rx.dropped, rx.hops);
    assert_eq!(rx.egress[0].place, Place::Tap(w.vmi.clone()));
    // Not from its own address (a kernel refuses that): from the VIP, to the target port.
    let d = frame::parse_ipv4(&rx.egress[0].frame, 14).unwrap();
    assert_eq!(
        (d.tuple.src, d.tuple.sport, d.tuple.dst, d.tuple.dport),
        (vip, 41000, w_ip, 80)
    );
    assert!(frame::checksums_ok(&rx.egress[0].frame));
    // The backend's answer goes to the VIP; the vrouter gives the client VIP:80 back.
    let synack = frame::tcp(
        &Addrs {
            src_mac: w.mac,
            dst_mac: VROUTER_MAC,
            src: w_ip,
            dst: vip,
            ttl: 64,
        },
        80,
        41000,
        9,
        2,
        TcpFlags {
            syn: true,
            ack: true,
            ..TcpFlags::default()
        },
        b"",
    );
    let rx = dp
        .node_rx("node-a", Ingress::Tap(&w.vmi), synack, true)
        .unwrap();
    assert_eq!(rx.egress.len(), 1, "{:?} {:#?}", rx.dropped, rx.hops);
    assert_eq!(rx.egress[0].place, Place::Tap(w.vmi.clone()));
    let d = frame::parse_ipv4(&rx.egress[0].frame, 14).unwrap();
    assert_eq!(
        (d.tuple.src, d.tuple.sport, d.tuple.dst, d.tuple.dport),
        (vip, 80, w_ip, 41000)
    );
    // The model probe takes the same path and connects to itself.
    let o = dp
        .probe(
            &EndpointRef::Pod("default/web".into()),
            vip,
            Protocol::Tcp,
            80,
        )
        .unwrap();
    assert_eq!(
        o.verdict,
        Verdict::Connected {
            backend: "default/web".into()
        },
        "{o:?}"
    );
}
