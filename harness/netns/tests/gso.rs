//! The vrouters' offload path with real kernels: bulk TCP between pods (the pods' kernels
//! hand their taps TSO super-frames, the vrouter cuts them for the underlay and joins
//! segments GRO-style for the receiving pod, or hands them whole to a pod on the same node)
//! must arrive byte for byte; and what a kernel leaves checksum-not-ready (an SCTP packet
//! without its CRC32c) or hands over as a super-frame this side cannot cut (UDP GSO) is
//! completed, or flagged, by every receive path. Needs CAP_NET_ADMIN/NET_RAW/SYS_ADMIN:
//! without them each test says why and returns.

#[path = "../../vrouter-sim/tests/common/mod.rs"]
#[allow(unused_imports)]
mod common;

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddrV4, TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{Km, Options};
use harness_netns::packet::{
    PacketSocket, RxMeta, VIRTIO_NET_HDR_F_NEEDS_CSUM, VIRTIO_NET_HDR_GSO_UDP_L4, VnetHdr,
};
use harness_netns::run::{RunRecord, new_run_id};
use harness_netns::{ForwarderCounters, NetnsDataplane, NetnsOptions, ip, sys};
use harness_vrouter_sim::wire::frame::{self, Addrs};
use harness_vrouter_sim::wire::sctp;
use harness_vrouter_sim::{Dataplane, EndpointRef};

fn capable() -> bool {
    match harness_netns::check_capabilities() {
        Ok(()) => true,
        Err(e) => {
            eprintln!("skipping: {e}");
            false
        }
    }
}

/// Bytes of the bulk transfers.
const BULK: usize = 1 << 20;
const PORT: u16 = 5002;

/// A pattern that does not repeat within a segment or a super-frame (a lost, duplicated or
/// misplaced run of bytes shows), different per transfer.
fn pattern(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            // xorshift64
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

/// Sends `data` over TCP from namespace `from` to `to_ip:PORT` served in namespace `to`;
/// what the receiver read until the sender closed.
fn transfer(from: &str, to: &str, to_ip: Ipv4Addr, data: Arc<Vec<u8>>) -> Vec<u8> {
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let sink = sys::spawn_in(to, "gso sink".into(), move || {
        let l = TcpListener::bind(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, PORT))?;
        ready_tx.send(()).ok();
        let (mut s, _) = l.accept()?;
        s.set_read_timeout(Some(Duration::from_secs(10)))?;
        let mut got = Vec::with_capacity(BULK);
        s.read_to_end(&mut got)?;
        Ok::<_, std::io::Error>(got)
    })
    .expect("sink thread");
    ready_rx
        .recv_timeout(Duration::from_secs(5))
        .expect("sink listening");
    let src = sys::spawn_in(from, "gso source".into(), move || {
        let mut s = TcpStream::connect_timeout(
            &SocketAddrV4::new(to_ip, PORT).into(),
            Duration::from_secs(2),
        )?;
        s.set_write_timeout(Some(Duration::from_secs(10)))?;
        s.write_all(&data)?;
        s.shutdown(std::net::Shutdown::Write)
    })
    .expect("source thread");
    src.join()
        .expect("source thread")
        .expect("source namespace")
        .expect("sending");
    sink.join()
        .expect("sink thread")
        .expect("sink namespace")
        .expect("receiving")
}

fn counters(net: &NetnsDataplane, who: &str) -> ForwarderCounters {
    net.counters()
        .into_iter()
        .find(|(n, _)| n == who)
        .map(|(_, c)| c)
        .unwrap_or_else(|| panic!("no forwarder {who}"))
}

/// The first offset where two byte strings differ (for a readable failure).
fn first_difference(a: &[u8], b: &[u8]) -> Option<usize> {
    a.iter()
        .zip(b)
        .position(|(x, y)| x != y)
        .or((a.len() != b.len()).then(|| a.len().min(b.len())))
}

#[test]
fn bulk_tcp_between_pods_arrives_byte_for_byte_through_segmentation_and_joining() {
    if !capable() {
        return;
    }
    let mut km = Km::new(Options::default());
    km.node("node-a", Ipv4Addr::new(192, 168, 0, 11));
    km.node("node-b", Ipv4Addr::new(192, 168, 0, 12));
    km.pod("default", "a", "node-a", &[("pod", "a")]);
    km.pod("default", "b", "node-a", &[("pod", "b")]);
    km.pod("default", "c", "node-b", &[("pod", "c")]);
    let dp = Dataplane::from_config(km.snapshot(), km.topology.clone());
    let net = NetnsDataplane::up(Arc::new(Mutex::new(dp)), &NetnsOptions::default())
        .expect("netns dataplane up");
    let ns = |p: &str| {
        net.namespace_of(&EndpointRef::Pod(format!("default/{p}")))
            .expect("pod namespace")
    };
    let addr = |p: &str| {
        net.dataplane()
            .lock()
            .unwrap()
            .endpoint_addresses(&format!("default/{p}"))[0]
    };
    let (a, b, c) = (ns("a"), ns("b"), ns("c"));
    let started = Instant::now();

    // Across the underlay: node-a cuts a's super-frames into MPLS-over-UDP segments,
    // node-b joins them for c's kernel.
    let (a0, b0) = (counters(&net, "node-a"), counters(&net, "node-b"));
    let data = Arc::new(pattern(0x9e37_79b9_7f4a_7c15, BULK));
    let got = transfer(&a, &c, addr("c"), Arc::clone(&data));
    assert_eq!(
        first_difference(&got, &data),
        None,
        "a -> c: {} of {} bytes, first difference shown",
        got.len(),
        data.len()
    );
    let (a1, b1) = (counters(&net, "node-a"), counters(&net, "node-b"));
    assert!(
        a1.super_frames > a0.super_frames,
        "node-a read no TCP super-frame from pod a: {a1:?}"
    );
    assert!(
        b1.coalesced > b0.coalesced,
        "node-b joined no segments for pod c: {b1:?}"
    );

    // On one node: a's super-frames go whole to b's kernel.
    let data = Arc::new(pattern(0x2545_f491_4f6c_dd1d, BULK));
    let got = transfer(&a, &b, addr("b"), Arc::clone(&data));
    assert_eq!(
        first_difference(&got, &data),
        None,
        "a -> b: {} of {} bytes, first difference shown",
        got.len(),
        data.len()
    );
    let a2 = counters(&net, "node-a");
    assert!(
        a2.super_frames > a1.super_frames,
        "node-a read no TCP super-frame from pod a towards b: {a2:?}"
    );

    for (who, c) in net.counters() {
        assert_eq!(c.send_errors, 0, "{who}: {c:?}");
        // The kernels' own link-local multicast (IGMP reports to 224.0.0.22 when an
        // interface comes up) is no vrouter's business and may be dropped; nothing else.
        let drops: Vec<_> = c
            .recent_drops
            .iter()
            .filter(|(_, why)| !why.starts_with("224.0.0."))
            .collect();
        assert!(drops.is_empty(), "{who} dropped frames: {drops:?}");
    }
    eprintln!(
        "2 x {BULK} bytes in {:?}; node-a {a2:?}; node-b {:?}",
        started.elapsed(),
        counters(&net, "node-b")
    );
    net.cleanup().expect("cleanup");
}

/// A namespace with a veth pair `ga` — `gb`, both up, default offloads (checksum, GSO on),
/// deleted on drop.
struct Scratch {
    run_id: String,
    ns: String,
}

impl Scratch {
    fn up() -> Scratch {
        let run_id = new_run_id();
        let ns = format!("h{run_id}-g");
        RunRecord::mine(&run_id, vec![ns.clone()])
            .write()
            .expect("run record");
        let me = Scratch { run_id, ns };
        ip::batch(None, &[format!("netns add {}", me.ns)]).expect("netns add");
        ip::batch(
            Some(&me.ns),
            &[
                "link add ga type veth peer name gb".into(),
                "link set ga up".into(),
                "link set gb up".into(),
            ],
        )
        .expect("veth pair");
        me
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = ip::delete_netns(std::slice::from_ref(&self.ns));
        RunRecord::remove(&self.run_id);
    }
}

/// How a receiver reads.
#[derive(Debug, Clone, Copy)]
enum Reader {
    /// `recv`: one `recvmsg`, the auxdata's checksum-not-ready.
    Recv,
    /// `recv_many` without a vnet header: each message's auxdata.
    RecvManyAux,
    /// `recv_many` with a vnet header: its NEEDS_CSUM / gso_type.
    RecvManyVnet,
}

/// Sends `frame` with `hdr` out of `ga` (a vnet-header socket: the kernel takes the
/// checksum as partial, or the frame as a super-frame, as it would from a pod's stack) and
/// reads it on `gb` with `reader`: the frame as read and its metadata, once the one whose
/// bytes 34..38 (the L4 ports) match comes by.
fn across_veth(ns: &str, frame: Vec<u8>, hdr: VnetHdr, reader: Reader) -> (Vec<u8>, RxMeta) {
    sys::in_netns(ns, move || {
        let mut rx = PacketSocket::open(Some("gb")).expect("socket on gb");
        if matches!(reader, Reader::RecvManyVnet) {
            rx.enable_vnet_hdr().expect("vnet header on gb");
        }
        let mut tx = PacketSocket::open(Some("ga")).expect("socket on ga");
        tx.enable_vnet_hdr().expect("vnet header on ga");
        let deadline = Instant::now() + Duration::from_secs(3);
        let mut bufs = vec![Vec::new(); 8];
        let mut metas = Vec::new();
        let mut one = vec![0u8; 70_000];
        let mut sent_at: Option<Instant> = None;
        while Instant::now() < deadline {
            // Sent again every 100 ms until it comes by: right after `link set up` a veth
            // keeps its noop qdisc (dropping what is sent) until the kernel's link watch
            // activates it, which a loaded machine can delay for a second.
            if sent_at.is_none_or(|t| t.elapsed() >= Duration::from_millis(100)) {
                let (sent, failed, err) = tx.send_many(&[&frame], &[hdr]);
                assert_eq!((sent, failed), (1, 0), "sending: {err:?}");
                sent_at = Some(Instant::now());
            }
            let got: Vec<(Vec<u8>, RxMeta)> = match reader {
                Reader::Recv => match rx.recv(&mut one).expect("recv") {
                    Some(m) => vec![(one[..m.len].to_vec(), m)],
                    None => Vec::new(),
                },
                _ => {
                    let n = rx.recv_many(&mut bufs, 70_000, &mut metas);
                    (0..n).map(|k| (bufs[k].clone(), metas[k])).collect()
                }
            };
            if let Some(hit) = got
                .into_iter()
                .find(|(f, _)| f.len() == frame.len() && f[34..38] == frame[34..38])
            {
                return hit;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        panic!("{reader:?}: the frame never arrived on gb");
    })
    .expect("scratch namespace")
}

fn addrs() -> Addrs {
    Addrs {
        src_mac: [2, 0, 0, 0, 0, 1],
        dst_mac: [2, 0, 0, 0, 0, 2],
        src: Ipv4Addr::new(10, 9, 0, 1),
        dst: Ipv4Addr::new(10, 9, 0, 2),
        ttl: 64,
    }
}

#[test]
fn an_sctp_packet_left_checksum_not_ready_gets_its_crc32c_on_every_receive_path() {
    if !capable() {
        return;
    }
    let scratch = Scratch::up();
    let good = frame::sctp(
        &addrs(),
        &sctp::Repr {
            src_port: 40_001,
            dst_port: 7,
            verification_tag: 0,
            chunk: sctp::Chunk::Init(sctp::InitRepr {
                initiate_tag: 0x0bad_cafe,
                a_rwnd: 106_496,
                outbound_streams: 10,
                inbound_streams: 2048,
                initial_tsn: 1,
            }),
        },
    );
    // What a pod's kernel with tx-checksum-sctp hands its veth: no CRC32c, the skb
    // CHECKSUM_PARTIAL with the checksum field at offset 8 of the SCTP header.
    let mut partial = good.clone();
    partial[34 + 8..34 + 12].fill(0);
    assert!(!frame::checksums_ok(&partial));
    let hdr = VnetHdr {
        flags: VIRTIO_NET_HDR_F_NEEDS_CSUM,
        csum_start: 34,
        csum_offset: 8,
        ..VnetHdr::default()
    };
    for reader in [Reader::Recv, Reader::RecvManyAux, Reader::RecvManyVnet] {
        let (f, m) = across_veth(&scratch.ns, partial.clone(), hdr, reader);
        assert!(m.checksum_completed, "{reader:?}: {m:?}");
        assert_eq!(f, good, "{reader:?}: the CRC32c completed");
    }
}

#[test]
fn a_udp_gso_super_frame_is_reported_not_taken_for_a_frame() {
    if !capable() {
        return;
    }
    let scratch = Scratch::up();
    let payload = pattern(7, 4000);
    let f = frame::udp(&addrs(), 40_002, 9, &payload);
    let hdr = VnetHdr {
        flags: VIRTIO_NET_HDR_F_NEEDS_CSUM,
        gso_type: VIRTIO_NET_HDR_GSO_UDP_L4,
        hdr_len: 42,
        gso_size: 1400,
        csum_start: 34,
        csum_offset: 6,
    };
    let (_, m) = across_veth(&scratch.ns, f, hdr, Reader::RecvManyVnet);
    assert_eq!(m.gso, None, "{m:?}");
    assert_eq!(m.unsupported_gso, Some(VIRTIO_NET_HDR_GSO_UDP_L4), "{m:?}");
    assert!(!m.checksum_completed, "{m:?}");
}

#[test]
fn a_service_instance_forwards_wire_packets_not_joined_super_frames() {
    if !capable() {
        return;
    }
    if std::process::Command::new("nft")
        .arg("--version")
        .output()
        .is_err()
    {
        eprintln!("skipping: the `nft` binary (Debian package nftables) is not installed");
        return;
    }
    // Pod l1 (node-a, namespace left) to pod r1 (node-c, namespace right) through the
    // chain's instance on node-b, whose kernel forwards left -> right.
    let mut km = Km::new(Options::default());
    km.node("node-a", Ipv4Addr::new(192, 168, 0, 11));
    km.node("node-b", Ipv4Addr::new(192, 168, 0, 12));
    km.node("node-c", Ipv4Addr::new(192, 168, 0, 13));
    km.namespace("left", true);
    km.namespace("right", true);
    km.pod("left", "l1", "node-a", &[("pod", "l1")]);
    km.pod("right", "r1", "node-c", &[("pod", "r1")]);
    let left = km.pod_network("left");
    let right = km.pod_network("right");
    let l: Vec<&str> = left.iter().map(String::as_str).collect();
    let r: Vec<&str> = right.iter().map(String::as_str).collect();
    let (lvmi, rvmi) = km.service_chain("fw", &l, &r, "node-b");
    km.topology
        .endpoints
        .push(harness_vrouter_sim::EndpointSpec {
            name: "default/fw".into(),
            interfaces: vec![lvmi, rvmi],
            node: None,
            ports: vec![],
            function: Some(harness_scenario::ServiceFunction { drop: vec![] }),
        });
    let dp = Dataplane::from_config(km.snapshot(), km.topology.clone());
    let net = NetnsDataplane::up(Arc::new(Mutex::new(dp)), &NetnsOptions::default())
        .expect("netns dataplane up");
    let l1 = net
        .namespace_of(&EndpointRef::Pod("left/l1".into()))
        .expect("l1");
    let r1 = net
        .namespace_of(&EndpointRef::Pod("right/r1".into()))
        .expect("r1");
    let r1_ip = net
        .dataplane()
        .lock()
        .unwrap()
        .endpoint_addresses("right/r1")[0];
    let data = Arc::new(pattern(0x5851_f42d_4c95_7f2d, BULK));
    let got = transfer(&l1, &r1, r1_ip, Arc::clone(&data));
    assert_eq!(
        first_difference(&got, &data),
        None,
        "l1 -> r1 through the instance: {} of {} bytes",
        got.len(),
        data.len()
    );
    let si = net
        .service_counters()
        .expect("nft counters")
        .into_iter()
        .find(|(n, _)| n == "default/fw")
        .map(|(_, c)| c)
        .expect("the instance's counters");
    // At most an MSS of payload per packet the instance forwarded (MTU 1500, TCP options):
    // joined super-frames would be a few dozen.
    let wire_packets = (BULK / 1460) as u64;
    assert!(
        si.left_to_right >= wire_packets,
        "the instance forwarded {} packets left -> right for {BULK} bytes (at least {wire_packets} on a wire): {si:?}",
        si.left_to_right
    );
    let b = counters(&net, "node-b");
    assert_eq!(b.coalesced, 0, "nothing joined for the instance: {b:?}");
    net.cleanup().expect("cleanup");
}
