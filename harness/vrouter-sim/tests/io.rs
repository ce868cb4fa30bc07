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
