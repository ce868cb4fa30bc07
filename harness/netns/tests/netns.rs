//! End to end through real namespaces: configuration built the way contrail-kube-manager
//! builds it (vrouter-sim's own fixtures), the same configuration probed through the model
//! dataplane and through the user-space vrouters with real kernel sockets; the verdicts must
//! agree cell by cell. Needs CAP_NET_ADMIN/NET_RAW/SYS_ADMIN: without them each test says why
//! and returns.

#[path = "../../vrouter-sim/tests/common/mod.rs"]
mod common;

use std::net::Ipv4Addr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{Km, Options};
use harness_netns::{NetVerdict, NetnsDataplane, NetnsError, NetnsOptions, ProbeSpec};
use harness_scenario::Protocol;
use harness_vrouter_sim::{Dataplane, EndpointRef, ProbeOptions, ServedPort};

const HOST: Ipv4Addr = Ipv4Addr::new(192, 168, 0, 50);

fn capable() -> bool {
    match harness_netns::check_capabilities() {
        Ok(()) => true,
        Err(e) => {
            eprintln!("skipping: {e}");
            false
        }
    }
}

/// 2 nodes, 3 pods (a, b on node-a; c on node-b), 1 fabric host `dns` (UDP 53, TCP 443),
/// with the configuration database (to change it after `up`).
fn fixture_km(opts: Options) -> (Km, Dataplane) {
    let mut km = Km::new(opts);
    km.node("node-a", Ipv4Addr::new(192, 168, 0, 11));
    km.node("node-b", Ipv4Addr::new(192, 168, 0, 12));
    km.fabric_host("dns", HOST, vec![ServedPort::udp(53), ServedPort::tcp(443)]);
    km.pod("default", "a", "node-a", &[("pod", "a")]);
    km.pod("default", "b", "node-a", &[("pod", "b")]);
    km.pod("default", "c", "node-b", &[("pod", "c")]);
    let dp = Dataplane::from_config(km.snapshot(), km.topology.clone());
    (km, dp)
}

fn fixture(opts: Options) -> Dataplane {
    fixture_km(opts).1
}

fn up(dp: Dataplane) -> NetnsDataplane {
    NetnsDataplane::up(
        Arc::new(Mutex::new(dp)),
        &NetnsOptions {
            capture: true,
            ..NetnsOptions::default()
        },
    )
    .expect("netns dataplane up")
}

fn ip(net: &NetnsDataplane, pod: &str) -> Ipv4Addr {
    net.dataplane().lock().unwrap().endpoint_addresses(pod)[0]
}

/// Who answered a connected probe (the probe agent's identity) and the source address that
/// agent saw; `(None, None)` for anything but a greeting.
fn answer(v: &NetVerdict) -> (Option<&str>, Option<Ipv4Addr>) {
    match v {
        NetVerdict::Connected { backend, source } => (backend.as_deref(), source.map(|s| *s.ip())),
        _ => (None, None),
    }
}

/// Probes every cell in both dataplanes and returns the disagreements.
fn compare(net: &NetnsDataplane, cells: &[(EndpointRef, Ipv4Addr, Protocol, u16)]) -> Vec<String> {
    let mut bad = Vec::new();
    for (from, to, proto, port) in cells {
        let model = net
            .dataplane()
            .lock()
            .unwrap()
            .probe_with(
                from,
                *to,
                *proto,
                *port,
                &ProbeOptions {
                    trace: false,
                    capture: false,
                    ttl: 64,
                },
            )
            .expect("model probe")
            .verdict;
        let real = net
            .probe(from, *to, *proto, *port, Duration::from_millis(400))
            .expect("netns probe");
        let (m, r) = (NetVerdict::model_word(&model), real.word());
        if m != r {
            bad.push(format!(
                "{from} -> {to} {proto:?}/{port}: model {model:?}, netns {real:?}"
            ));
        }
    }
    bad
}

fn pcap_fields(net: &NetnsDataplane, fields: &[&str], filter: &str) -> Option<String> {
    if std::process::Command::new("tshark")
        .arg("-v")
        .output()
        .is_err()
    {
        eprintln!("tshark not installed: pcap decoding not checked");
        return None;
    }
    let dir = std::env::temp_dir().join(format!("netns-pcap-{}", net.run_id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("underlay.pcap");
    let f = std::fs::File::create(&path).unwrap();
    harness_vrouter_sim::write_pcap(&net.underlay_frames(), f).unwrap();
    let mut cmd = std::process::Command::new("tshark");
    cmd.args(["-r"]).arg(&path).args([
        "-o",
        "udp.try_heuristic_first:FALSE",
        "-d",
        "udp.port==6635,mpls",
        "-Y",
        filter,
        "-T",
        "fields",
    ]);
    for f in fields {
        cmd.args(["-e", f]);
    }
    let out = cmd.output().unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    Some(String::from_utf8_lossy(&out.stdout).into_owned())
}

#[test]
fn overlay_probes_match_the_model_and_cross_the_underlay_in_mpls_over_udp() {
    if !capable() {
        return;
    }
    let net = up(fixture(Options::default()));
    let (a, b, c) = (
        ip(&net, "default/a"),
        ip(&net, "default/b"),
        ip(&net, "default/c"),
    );
    let pa = EndpointRef::Pod("default/a".into());
    let pc = EndpointRef::Pod("default/c".into());
    let cells = vec![
        (pa.clone(), b, Protocol::Tcp, 80),
        (pa.clone(), c, Protocol::Tcp, 80),
        (pa.clone(), c, Protocol::Tcp, 8080),
        (pa.clone(), c, Protocol::Udp, 53),
        (pa.clone(), c, Protocol::Udp, 5353),
        (pc.clone(), a, Protocol::Tcp, 80),
        (pc.clone(), a, Protocol::Icmp, 0),
        // No fabric forwarding: the tunnel reaches a host without a vrouter, which drops it.
        (pa.clone(), HOST, Protocol::Udp, 53),
    ];
    let bad = compare(&net, &cells);
    assert!(bad.is_empty(), "{bad:#?}\n{:#?}", net.counters());
    // Who answered, after the real handshake, and the source it saw (no NAT on the way).
    let v = net
        .probe(&pa, c, Protocol::Tcp, 80, Duration::from_millis(500))
        .unwrap();
    assert_eq!(answer(&v), (Some("default/c"), Some(a)), "{v:?}");
    if let Some(out) = pcap_fields(
        &net,
        &["ip.src", "ip.dst", "mpls.label", "udp.dstport"],
        "mpls",
    ) {
        let lines: Vec<&str> = out.lines().collect();
        assert!(!lines.is_empty(), "no MPLS-over-UDP frames on the underlay");
        assert!(
            lines.iter().all(|l| l.contains("192.168.0.")),
            "outer addresses are vhosts: {out}"
        );
    }
    // The fabric host really answered the tunnel packet it cannot decapsulate.
    if let Some(out) = pcap_fields(
        &net,
        &["ip.src", "icmp.type", "icmp.code"],
        "icmp.type == 3",
    ) {
        assert!(
            out.lines()
                .any(|l| l.starts_with("192.168.0.50,") && l.ends_with("\t3\t3")),
            "{out}"
        );
    }
    net.cleanup().unwrap();
}

#[test]
fn fabric_forwarded_probes_match_the_model_and_carry_no_tunnel() {
    if !capable() {
        return;
    }
    let net = up(fixture(Options {
        ip_fabric_forwarding: true,
        ..Options::default()
    }));
    let (a, c) = (ip(&net, "default/a"), ip(&net, "default/c"));
    let pa = EndpointRef::Pod("default/a".into());
    let host = EndpointRef::FabricHost("dns".into());
    let cells = vec![
        (pa.clone(), c, Protocol::Tcp, 80),
        (pa.clone(), c, Protocol::Tcp, 81),
        (pa.clone(), HOST, Protocol::Udp, 53),
        (pa.clone(), HOST, Protocol::Tcp, 443),
        (pa.clone(), HOST, Protocol::Tcp, 444),
        (host.clone(), c, Protocol::Tcp, 80),
        (host.clone(), a, Protocol::Udp, 53),
    ];
    let bad = compare(&net, &cells);
    assert!(bad.is_empty(), "{bad:#?}\n{:#?}", net.counters());
    if let Some(out) = pcap_fields(&net, &["ip.src", "ip.dst"], "mpls || vxlan || gre") {
        assert!(
            out.trim().is_empty(),
            "fabric-forwarded traffic was tunnelled: {out}"
        );
    }
    if let Some(out) = pcap_fields(&net, &["ip.src", "ip.dst", "tcp.flags"], "tcp") {
        assert!(
            out.contains(&c.to_string()),
            "plain pod traffic on the underlay: {out}"
        );
    }
    net.cleanup().unwrap();
}

#[test]
fn probes_outside_the_topology_are_refused_and_unknown_sources_named() {
    if !capable() {
        return;
    }
    let net = up(fixture(Options::default()));
    let pa = EndpointRef::Pod("default/a".into());
    let e = net
        .probe(
            &pa,
            Ipv4Addr::new(8, 8, 8, 8),
            Protocol::Tcp,
            53,
            Duration::from_millis(100),
        )
        .unwrap_err();
    assert!(matches!(e, NetnsError::OutsideTopology(_)), "{e}");
    assert!(
        e.to_string().contains("8.8.8.8 is outside the topology"),
        "{e}"
    );
    let e = net
        .probe_batch(
            &EndpointRef::Pod("nope/x".into()),
            vec![ProbeSpec {
                to: HOST,
                protocol: Protocol::Tcp,
                port: 1,
                timeout: Duration::from_millis(10),
            }],
            1,
        )
        .unwrap_err();
    assert!(e.to_string().contains("pod nope/x"), "{e}");
    net.cleanup().unwrap();
}

#[test]
fn pods_created_and_deleted_after_up_are_wired_and_unwired() {
    if !capable() {
        return;
    }
    let (mut km, dp) = fixture_km(Options::default());
    let net = up(dp);
    let before = net.namespaces();
    let pa = EndpointRef::Pod("default/a".into());
    // A later scenario step creates pod d on node-b: kube-manager's objects appear in the
    // configuration, the node agent attaches the endpoint.
    km.pod("default", "d", "node-b", &[("pod", "d")]);
    {
        let mut dp = net.dataplane().lock().unwrap();
        dp.replace_snapshot(km.snapshot());
        dp.attach_endpoint(km.topology.endpoints.last().unwrap().clone());
    }
    let d = ip(&net, "default/d");
    // probe_batch syncs first: no explicit call needed.
    let v = net
        .probe(&pa, d, Protocol::Tcp, 80, Duration::from_millis(500))
        .unwrap();
    assert_eq!(
        answer(&v),
        (Some("default/d"), Some(ip(&net, "default/a"))),
        "{v:?}\n{:#?}",
        net.counters()
    );
    let pd = EndpointRef::Pod("default/d".into());
    let a = ip(&net, "default/a");
    let bad = compare(
        &net,
        &[
            (pd.clone(), a, Protocol::Tcp, 80),
            (pd.clone(), a, Protocol::Udp, 53),
            (pd.clone(), a, Protocol::Udp, 5353),
        ],
    );
    assert!(bad.is_empty(), "{bad:#?}");
    let d_ns = net.namespace_of(&pd).unwrap();
    assert_eq!(net.namespaces().len(), before.len() + 1);
    let record = harness_netns::run::RunRecord::read(net.run_id()).unwrap();
    assert!(record.namespaces.contains(&d_ns), "{record:?}");
    // Nothing changed since: an empty report.
    assert!(net.sync().unwrap().is_empty());
    // A later step deletes pod b (and d): their namespaces, taps and servers go.
    let b_ns = net
        .namespace_of(&EndpointRef::Pod("default/b".into()))
        .unwrap();
    {
        let mut dp = net.dataplane().lock().unwrap();
        assert!(dp.detach_endpoint("default/b"));
        assert!(dp.detach_endpoint("default/d"));
    }
    let report = net.sync().unwrap();
    let mut unwired = report.unwired.clone();
    unwired.sort();
    assert_eq!(unwired, vec!["default/b", "default/d"], "{report:?}");
    assert!(report.wired.is_empty(), "{report:?}");
    let live = harness_netns::ip::list_netns();
    assert!(!live.contains(&b_ns) && !live.contains(&d_ns), "{live:?}");
    assert_eq!(net.namespaces().len(), before.len() - 1);
    let record = harness_netns::run::RunRecord::read(net.run_id()).unwrap();
    assert!(!record.namespaces.contains(&b_ns), "{record:?}");
    let e = net
        .probe(&pd, a, Protocol::Tcp, 80, Duration::from_millis(100))
        .unwrap_err();
    assert!(e.to_string().contains("pod default/d"), "{e}");
    // The remaining pods still talk across nodes.
    let c = ip(&net, "default/c");
    assert!(compare(&net, &[(pa.clone(), c, Protocol::Tcp, 80)]).is_empty());
    let id = net.run_id().to_owned();
    net.cleanup().unwrap();
    let prefix = format!("h{id}-");
    assert!(
        !harness_netns::ip::list_netns()
            .iter()
            .any(|n| n.starts_with(&prefix))
    );
}

#[test]
fn an_external_client_reaches_a_floating_ip_through_the_gateway() {
    if !capable() {
        return;
    }
    let mut km = Km::new(Options::default());
    common::three_nodes(&mut km);
    let web = km.pod("default", "web-1", "node-b", &[("app", "web")]);
    let fip = Ipv4Addr::new(203, 0, 113, 10);
    km.public_fip(fip, &[&web], Some((443, 80)));
    let dp = Dataplane::from_config(km.snapshot(), km.topology.clone());
    assert!(dp.warnings().is_empty(), "{:#?}", dp.warnings());
    let net = up(dp);
    let client = EndpointRef::External("client".into());
    // The floating IP's port mapping 443 -> 80 (DNAT at node-b), a port it does not map, and
    // ICMP: each the same in both dataplanes.
    let bad = compare(
        &net,
        &[
            (client.clone(), fip, Protocol::Tcp, 443),
            (client.clone(), fip, Protocol::Tcp, 8443),
            (client.clone(), fip, Protocol::Tcp, 80),
        ],
    );
    assert!(bad.is_empty(), "{bad:#?}\n{:#?}", net.counters());
    // DNAT to the backend; the client's own address arrives unchanged.
    let v = net
        .probe(&client, fip, Protocol::Tcp, 443, Duration::from_millis(500))
        .unwrap();
    assert_eq!(
        answer(&v),
        (Some("default/web-1"), Some(Ipv4Addr::new(198, 51, 100, 7))),
        "{v:?}"
    );
    let gw = net
        .counters()
        .into_iter()
        .find(|(n, _)| n == "gateway")
        .expect("a gateway forwarder")
        .1;
    assert!(gw.rx > 0 && gw.tx > 0, "{gw:?}");
    // On the underlay the gateway tunnels the client's packet to the node hosting the
    // backend (outer gateway -> node-b, inner client -> floating IP), and the answer comes
    // back the same way.
    if let Some(out) = pcap_fields(&net, &["ip.src", "ip.dst"], "mpls") {
        let lines: Vec<&str> = out.lines().collect();
        assert!(
            lines.contains(&"192.168.0.254,198.51.100.7\t192.168.0.12,203.0.113.10"),
            "no tunnel from the gateway to node-b: {out}"
        );
        assert!(
            lines.contains(&"192.168.0.12,203.0.113.10\t192.168.0.254,198.51.100.7"),
            "no answer tunnelled back to the gateway: {out}"
        );
    }
    net.cleanup().unwrap();
}

#[test]
fn vxlan_first_in_priority_is_what_crosses_the_underlay() {
    if !capable() {
        return;
    }
    let net = up(fixture(Options {
        encapsulation: vec!["VXLAN", "MPLSoUDP"],
        ..Options::default()
    }));
    let c = ip(&net, "default/c");
    let pa = EndpointRef::Pod("default/a".into());
    let bad = compare(
        &net,
        &[
            (pa.clone(), c, Protocol::Tcp, 80),
            (pa.clone(), c, Protocol::Tcp, 8080),
            (pa.clone(), c, Protocol::Udp, 53),
            (pa.clone(), c, Protocol::Icmp, 0),
        ],
    );
    assert!(bad.is_empty(), "{bad:#?}\n{:#?}", net.counters());
    if let Some(out) = pcap_fields(&net, &["ip.src", "ip.dst", "vxlan.vni"], "vxlan") {
        let lines: Vec<&str> = out.lines().collect();
        assert!(!lines.is_empty(), "no VXLAN on the underlay");
        assert!(
            lines.iter().all(|l| l.starts_with("192.168.0.1")
                && l.split('\t').nth(2).is_some_and(|v| !v.is_empty())),
            "VXLAN between vhosts with a VNI: {out}"
        );
    }
    if let Some(out) = pcap_fields(&net, &["ip.src"], "mpls") {
        assert!(out.trim().is_empty(), "MPLS despite VXLAN first: {out}");
    }
    net.cleanup().unwrap();
}

/// Pods run the probe agent: what a plain socket inside pod a's namespace reads from pod c
/// is the agent's greeting, naming pod c and the source address it saw (pod a's, nothing
/// NATs on the overlay); the netns prober reads the same back over TCP and UDP, and a port
/// pod c does not declare is refused by its kernel.
#[test]
fn pods_answer_with_the_probe_agent_naming_the_pod_and_the_source_it_saw() {
    if !capable() {
        return;
    }
    let net = up(fixture(Options::default()));
    let (a, c) = (ip(&net, "default/a"), ip(&net, "default/c"));
    let pa = EndpointRef::Pod("default/a".into());
    let a_ns = net.namespace_of(&pa).unwrap();
    let raw = harness_netns::sys::in_netns(&a_ns, move || {
        use std::io::Read;
        let mut s = std::net::TcpStream::connect_timeout(
            &std::net::SocketAddrV4::new(c, 80).into(),
            Duration::from_secs(2),
        )?;
        s.set_read_timeout(Some(Duration::from_secs(2)))?;
        let local = s.local_addr()?;
        let mut line = String::new();
        s.read_to_string(&mut line)?;
        Ok::<_, std::io::Error>((local, line))
    })
    .unwrap();
    let (local, line) = raw.expect("a TCP exchange from pod a's namespace");
    assert_eq!(
        line,
        format!(
            "{} default/c TCP/80 from {local}\n",
            harness_agent::GREETING_PREFIX
        ),
        "pod c's greeting"
    );
    assert_eq!(local.ip(), std::net::IpAddr::V4(a));
    for proto in [Protocol::Tcp, Protocol::Udp] {
        let v = net
            .probe(
                &pa,
                c,
                proto,
                if proto == Protocol::Tcp { 80 } else { 53 },
                Duration::from_millis(500),
            )
            .unwrap();
        assert_eq!(answer(&v), (Some("default/c"), Some(a)), "{proto:?}: {v:?}");
    }
    let v = net
        .probe(&pa, c, Protocol::Tcp, 8080, Duration::from_millis(500))
        .unwrap();
    assert!(matches!(v, NetVerdict::Refused { .. }), "{v:?}");
    net.cleanup().unwrap();
}

#[test]
fn fabric_snat_reaches_the_host_from_the_node_address_and_the_port_pool() {
    if !capable() {
        return;
    }
    let net = up(fixture(Options {
        ip_fabric_snat: true,
        ..Options::default()
    }));
    let pc = EndpointRef::Pod("default/c".into());
    let bad = compare(
        &net,
        &[
            (pc.clone(), HOST, Protocol::Tcp, 443),
            (pc.clone(), HOST, Protocol::Udp, 53),
        ],
    );
    assert!(bad.is_empty(), "{bad:#?}\n{:#?}", net.counters());
    // What the host's own kernel sees: a listener of this test inside the host's namespace
    // records the peer of the connection it accepts.
    let host_ns = net
        .namespace_of(&EndpointRef::FabricHost("dns".into()))
        .unwrap();
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let listener = harness_netns::sys::spawn_in(&host_ns, "snat witness".into(), move || {
        let l = std::net::TcpListener::bind((Ipv4Addr::UNSPECIFIED, 8443)).unwrap();
        l.set_nonblocking(true).unwrap();
        ready_tx.send(()).unwrap();
        let end = std::time::Instant::now() + Duration::from_secs(3);
        while std::time::Instant::now() < end {
            if let Ok((_, peer)) = l.accept() {
                return Some(peer);
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        None
    })
    .unwrap();
    ready_rx.recv().unwrap();
    let v = net
        .probe(&pc, HOST, Protocol::Tcp, 8443, Duration::from_millis(1000))
        .unwrap();
    let peer = listener.join().unwrap().unwrap();
    assert_eq!(v.word(), "connected", "{v:?}");
    // The host's probe agent reports the same: node-b's address and a port of its pool.
    let v = net
        .probe(&pc, HOST, Protocol::Tcp, 443, Duration::from_millis(1000))
        .unwrap();
    let NetVerdict::Connected {
        backend,
        source: Some(seen),
    } = &v
    else {
        panic!("no greeting from the host's agent: {v:?}")
    };
    assert_eq!(backend.as_deref(), Some("dns"), "{v:?}");
    assert_eq!(*seen.ip(), Ipv4Addr::new(192, 168, 0, 12), "{v:?}");
    assert!((56000..=57023).contains(&seen.port()), "{v:?}");
    let peer = peer.expect("the host accepted a connection");
    let std::net::SocketAddr::V4(peer) = peer else {
        panic!("{peer}")
    };
    assert_eq!(*peer.ip(), Ipv4Addr::new(192, 168, 0, 12), "node-b's vhost");
    assert!((56000..=57023).contains(&peer.port()), "{peer}");
    // And on the underlay: no tunnel, the node address on every frame to the host.
    if let Some(out) = pcap_fields(
        &net,
        &["ip.src", "tcp.srcport"],
        "ip.dst == 192.168.0.50 && tcp",
    ) {
        assert!(!out.trim().is_empty());
        for l in out.lines() {
            let (src, port) = l.split_once('\t').unwrap();
            assert_eq!(src, "192.168.0.12", "{out}");
            let port: u16 = port.parse().unwrap();
            assert!((56000..=57023).contains(&port), "{out}");
        }
    }
    net.cleanup().unwrap();
}

#[test]
fn sctp_without_kernel_sctp_is_a_skip_with_the_reason() {
    if !capable() {
        return;
    }
    let net = up(fixture(Options::default()));
    let pa = EndpointRef::Pod("default/a".into());
    let c = ip(&net, "default/c");
    let v = net
        .probe(&pa, c, Protocol::Sctp, 9000, Duration::from_millis(500))
        .unwrap();
    match harness_netns::unsupported_reason(Protocol::Sctp) {
        Some(reason) => {
            // Nothing could be sent: the verdict says so and why, for the runner's Skipped.
            assert_eq!(v.word(), "unsupported", "{v:?}");
            let why = v.skip_reason().expect("a skip reason");
            assert!(
                why.contains("no SCTP") && why.contains("modprobe sctp"),
                "{why}"
            );
            assert_eq!(why, reason);
            // TCP on the same pair is unaffected.
            assert_eq!(
                net.probe(&pa, c, Protocol::Tcp, 80, Duration::from_millis(500))
                    .unwrap()
                    .word(),
                "connected"
            );
        }
        None => {
            // A kernel with SCTP: a real observation that agrees with the model.
            assert!(v.skip_reason().is_none(), "{v:?}");
            let bad = compare(
                &net,
                &[
                    (pa.clone(), c, Protocol::Sctp, 9000),
                    (pa.clone(), c, Protocol::Sctp, 9001),
                ],
            );
            assert!(bad.is_empty(), "{bad:#?}");
        }
    }
    assert!(harness_netns::unsupported_reason(Protocol::Tcp).is_none());
    net.cleanup().unwrap();
}

/// The gaps the conformance suite found, through real sockets: a pod reaching its own node's
/// vhost with fabric forwarding off (the vrouter loops the tunnel to itself back instead of
/// putting it on a bridge that would not hairpin it), a pod reaching itself through its
/// service's VIP (hairpin SNAT to the VIP: its kernel accepts the SYN and the answer is
/// un-NATed), nodes routed through their vrouter (`route_node_stacks`), and `take_capture`
/// handing over and clearing the capture in one step.
#[test]
fn own_vhost_loopback_and_service_hairpin_agree_with_the_model() {
    if !capable() {
        return;
    }
    let mut km = Km::new(Options {
        ip_fabric_forwarding: false,
        ..Options::default()
    });
    km.node("node-a", Ipv4Addr::new(192, 168, 0, 11));
    km.node("node-b", Ipv4Addr::new(192, 168, 0, 12));
    let web = km.pod("default", "web", "node-a", &[("app", "web")]);
    km.pod("default", "c", "node-b", &[("pod", "c")]);
    let vip = Ipv4Addr::new(10, 96, 0, 30);
    km.service("default", "web", vip, 80, 80, &[&web]);
    let dp = Dataplane::from_config(km.snapshot(), km.topology.clone());
    let net = NetnsDataplane::up(
        Arc::new(Mutex::new(dp)),
        &NetnsOptions {
            capture: true,
            route_node_stacks: true,
            ..NetnsOptions::default()
        },
    )
    .expect("netns dataplane up");
    let web = EndpointRef::Pod("default/web".into());
    let c = EndpointRef::Pod("default/c".into());
    let vhost_a = Ipv4Addr::new(192, 168, 0, 11);
    let cells = vec![
        (web.clone(), vhost_a, Protocol::Icmp, 0),
        (c.clone(), vhost_a, Protocol::Icmp, 0),
        (web.clone(), vip, Protocol::Tcp, 80),
        (c.clone(), vip, Protocol::Tcp, 80),
    ];
    let bad = compare(&net, &cells);
    assert!(bad.is_empty(), "{bad:#?}");
    for (from, to, proto, port) in &cells {
        let v = net
            .probe(from, *to, *proto, *port, Duration::from_millis(400))
            .unwrap();
        assert_eq!(v.word(), "connected", "{from} -> {to}: {v:?}");
    }
    // The capture saw c's tunnel to node-a, and is handed over and emptied at once.
    std::thread::sleep(Duration::from_millis(20));
    let frames = net.take_capture();
    assert!(!frames.is_empty());
    assert!(net.underlay_frames().is_empty());
    net.cleanup().unwrap();
}
