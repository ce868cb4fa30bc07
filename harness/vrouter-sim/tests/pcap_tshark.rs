//! The pcap of cross-node probes, decoded by tshark (when installed): MPLS over UDP is
//! recognised, and nothing is malformed or has a bad checksum.

mod common;

use std::net::Ipv4Addr;
use std::process::Command;

use common::{Km, Options, three_nodes};
use harness_scenario::Protocol;
use harness_vrouter_sim::{Dataplane, EndpointRef, Verdict, wire::pcap, write_pcap};

#[test]
fn cross_node_probe_pcap_decodes_cleanly() {
    let mut km = Km::new(Options::default());
    three_nodes(&mut km);
    km.pod("default", "a", "node-a", &[("pod", "a")]);
    let b = km.pod("default", "b", "node-b", &[("pod", "b")]);
    km.service(
        "default",
        "web",
        Ipv4Addr::new(10, 96, 0, 10),
        8080,
        80,
        &[&b],
    );
    let mut dp = Dataplane::from_config(km.snapshot(), km.topology.clone());
    dp.set_clock(1_750_000_000_000_000);
    let bip = dp.endpoint_addresses("default/b")[0];
    let from = EndpointRef::Pod("default/a".into());
    let mut frames = Vec::new();
    for (to, proto, port) in [
        (bip, Protocol::Tcp, 80),
        (bip, Protocol::Udp, 53),
        (bip, Protocol::Udp, 4242),
        (bip, Protocol::Sctp, 9000),
        (bip, Protocol::Icmp, 0),
        (Ipv4Addr::new(10, 96, 0, 10), Protocol::Tcp, 8080),
        (Ipv4Addr::new(192, 168, 0, 50), Protocol::Tcp, 443),
    ] {
        let o = dp.probe(&from, to, proto, port).expect("probe");
        assert!(!matches!(o.verdict, Verdict::Inconclusive { .. }));
        frames.extend(o.frames);
    }
    assert!(frames.len() >= 20, "{} frames", frames.len());
    for f in &frames {
        assert!(
            harness_vrouter_sim::wire::frame::checksums_ok(&f.bytes),
            "bad checksum on {}",
            f.link
        );
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("cross-node.pcap");
    let file = std::fs::File::create(&path).expect("create");
    write_pcap(&frames, file).expect("write");
    let bytes = std::fs::read(&path).expect("read");
    let (_, records) = pcap::read_all(&bytes).expect("pcap parses");
    assert_eq!(records.len(), frames.len());
    // Deterministic timestamps.
    assert_eq!(records[0].0.ts_micros, 1_750_000_000_000_001);

    let Ok(out) = Command::new("tshark")
        .args([
            "-r",
            path.to_str().unwrap_or_default(),
            "-V",
            "-o",
            "ip.check_checksum:TRUE",
            "-o",
            "tcp.check_checksum:TRUE",
            "-o",
            "udp.check_checksum:TRUE",
            "-o",
            "sctp.checksum:CRC-32C",
        ])
        .output()
    else {
        println!(
            "skipped the tshark check: tshark is not installed (DEBIAN_FRONTEND=noninteractive apt-get install -y tshark)"
        );
        return;
    };
    let text = String::from_utf8_lossy(&out.stdout);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "tshark failed: {err}");
    assert!(
        text.contains("MultiProtocol Label Switching"),
        "no MPLS decoded:\n{text}"
    );
    assert!(
        text.contains("Stream Control Transmission Protocol"),
        "no SCTP decoded"
    );
    for bad in [
        "Malformed",
        "[Bad",
        "incorrect",
        "Checksum: 0x0000 [unverified]",
        "Expert Info (Error",
    ] {
        let hit = text.lines().find(|l| l.contains(bad));
        assert!(hit.is_none(), "tshark reports '{bad}': {hit:?}");
    }
}
