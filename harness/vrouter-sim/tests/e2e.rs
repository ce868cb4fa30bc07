//! End-to-end: Contrail configuration built as contrail-kube-manager builds it, in an
//! in-process contrail-mock, then real packet exchanges through the model dataplane.

mod common;

use std::net::Ipv4Addr;

use common::{Km, Options, three_nodes};
use harness_scenario::Protocol;
use harness_vrouter_sim::{Dataplane, EndpointRef, Observation, Verdict};

fn pod(n: &str) -> EndpointRef {
    EndpointRef::Pod(n.into())
}

fn ip(dp: &Dataplane, n: &str) -> Ipv4Addr {
    dp.endpoint_addresses(n)[0]
}

fn connected(o: &Observation) -> &str {
    match &o.verdict {
        Verdict::Connected { backend } => backend,
        v => panic!("expected connected, got {v:?}\n{}", hops(o)),
    }
}

fn hops(o: &Observation) -> String {
    o.hops.iter().map(|h| format!("  {h}\n")).collect()
}

fn dropped(o: &Observation) -> (&str, &str) {
    match &o.verdict {
        Verdict::Dropped { at, reason } => (at, reason),
        v => panic!("expected dropped, got {v:?}\n{}", hops(o)),
    }
}

fn basic(opts: Options) -> (Km, Dataplane) {
    let mut km = Km::new(opts);
    three_nodes(&mut km);
    km.pod("default", "a", "node-a", &[("pod", "a")]);
    km.pod("default", "b", "node-a", &[("pod", "b")]);
    km.pod("default", "c", "node-b", &[("pod", "c")]);
    let dp = Dataplane::from_config(km.snapshot(), km.topology.clone());
    (km, dp)
}

#[test]
fn pod_to_pod_same_node_and_across_nodes_over_mplsoudp() {
    let (_km, mut dp) = basic(Options::default());
    assert!(dp.warnings().is_empty(), "{:#?}", dp.warnings());
    let b = ip(&dp, "default/b");
    let c = ip(&dp, "default/c");
    let o = dp
        .probe(&pod("default/a"), b, Protocol::Tcp, 80)
        .expect("probe");
    assert_eq!(connected(&o), "default/b");
    assert!(
        o.hops.iter().all(|h| h.encapsulation.is_none()),
        "{}",
        hops(&o)
    );
    let o = dp
        .probe(&pod("default/a"), c, Protocol::Tcp, 80)
        .expect("probe");
    assert_eq!(connected(&o), "default/c");
    let enc: Vec<&str> = o
        .hops
        .iter()
        .filter_map(|h| h.encapsulation.as_deref())
        .collect();
    assert!(
        enc.iter().any(|e| e.starts_with("MPLSoUDP label")),
        "{}",
        hops(&o)
    );
    // The hop of the source vrouter names VRF, route, next hop and the deciding rules.
    let first = &o.hops[0];
    assert_eq!(first.node.as_deref(), Some("node-a"));
    assert!(
        first
            .vrf
            .as_deref()
            .unwrap_or("")
            .ends_with("k8s-default-pod-network:k8s-default-pod-network")
    );
    assert!(
        first
            .next_hop
            .as_deref()
            .unwrap_or("")
            .contains("on node-b"),
        "{first}"
    );
    assert!(
        first
            .decided_by
            .iter()
            .any(|d| d.gate == "firewall" && d.rule.contains("k8s-Namespace-default-")),
        "{first}"
    );
    // UDP, SCTP, ICMP, unserved ports.
    assert_eq!(
        connected(
            &dp.probe(&pod("default/a"), c, Protocol::Udp, 53)
                .expect("udp")
        ),
        "default/c"
    );
    assert_eq!(
        connected(
            &dp.probe(&pod("default/a"), c, Protocol::Sctp, 9000)
                .expect("sctp")
        ),
        "default/c"
    );
    assert_eq!(
        connected(
            &dp.probe(&pod("default/a"), c, Protocol::Icmp, 0)
                .expect("icmp")
        ),
        "default/c"
    );
    let o = dp
        .probe(&pod("default/a"), c, Protocol::Tcp, 8080)
        .expect("rst");
    assert!(
        matches!(&o.verdict, Verdict::Refused { by } if by.contains("RST")),
        "{:?}",
        o.verdict
    );
    let o = dp
        .probe(&pod("default/a"), c, Protocol::Udp, 9999)
        .expect("udp closed");
    assert!(
        matches!(&o.verdict, Verdict::Refused { by } if by.contains("port unreachable")),
        "{:?}\n{}",
        o.verdict,
        hops(&o)
    );
    let o = dp
        .probe(&pod("default/a"), c, Protocol::Sctp, 9999)
        .expect("abort");
    assert!(
        matches!(&o.verdict, Verdict::Refused { by } if by.contains("ABORT")),
        "{:?}",
        o.verdict
    );
    // Flows: forward and reverse entries on both vrouters.
    assert!(dp.flow_count("node-a") >= 2 && dp.flow_count("node-b") >= 2);
}

#[test]
fn proxy_arp_answers_with_the_vrouter_mac() {
    let (_km, mut dp) = basic(Options::default());
    let (mac, hops) = dp
        .arp("default/a", Ipv4Addr::new(10, 47, 255, 1))
        .expect("arp");
    assert_eq!(mac, Some([0x00, 0x00, 0x5e, 0x00, 0x01, 0x00]));
    assert!(
        hops.iter()
            .any(|h| h.note.as_deref().unwrap_or("").contains("proxy ARP"))
    );
}

#[test]
fn vxlan_first_in_priority_is_used() {
    let (_km, mut dp) = basic(Options {
        encapsulation: vec!["VXLAN", "MPLSoUDP"],
        ..Options::default()
    });
    let c = ip(&dp, "default/c");
    let o = dp
        .probe(&pod("default/a"), c, Protocol::Tcp, 80)
        .expect("probe");
    assert_eq!(connected(&o), "default/c");
    assert!(
        o.hops.iter().any(|h| h
            .encapsulation
            .as_deref()
            .unwrap_or("")
            .starts_with("VXLAN VNI")),
        "{}",
        hops(&o)
    );
    let (_km, mut dp) = basic(Options {
        encapsulation: vec!["MPLSoGRE"],
        ..Options::default()
    });
    let o = dp
        .probe(&pod("default/a"), c, Protocol::Tcp, 80)
        .expect("probe");
    assert_eq!(connected(&o), "default/c");
    assert!(
        o.hops.iter().any(|h| h
            .encapsulation
            .as_deref()
            .unwrap_or("")
            .starts_with("MPLSoGRE")),
        "{}",
        hops(&o)
    );
}

#[test]
fn without_fabric_forwarding_a_fabric_host_gets_a_tunnel_packet_it_cannot_decapsulate() {
    let (_km, mut dp) = basic(Options::default());
    let o = dp
        .probe(
            &pod("default/a"),
            Ipv4Addr::new(192, 168, 0, 50),
            Protocol::Udp,
            53,
        )
        .expect("probe");
    let (at, reason) = dropped(&o);
    assert_eq!(at, "fabric host dns");
    assert!(reason.contains("MPLSoUDP"), "{reason}");
    // The host answered the vhost with ICMP port unreachable (seen on the underlay).
    assert!(o.frames.iter().any(|f| {
        matches!(harness_vrouter_sim::wire::frame::parse(&f.bytes).map(|s| s.payload),
            Ok(harness_vrouter_sim::wire::frame::Payload::Ipv4(s)) if matches!(s.transport, harness_vrouter_sim::wire::frame::Transport::IcmpError { .. }))
    }));
}

#[test]
fn fabric_forwarding_goes_plain_to_hosts_and_between_pods() {
    let (_km, mut dp) = basic(Options {
        ip_fabric_forwarding: true,
        ..Options::default()
    });
    let c = ip(&dp, "default/c");
    assert!(
        c.octets()[0] == 10 && (64..80).contains(&c.octets()[1]),
        "{c} from the ip-fabric IPAM"
    );
    let o = dp
        .probe(&pod("default/a"), c, Protocol::Tcp, 80)
        .expect("probe");
    assert_eq!(connected(&o), "default/c");
    assert!(
        o.hops
            .iter()
            .all(|h| !h.encapsulation.as_deref().unwrap_or("").starts_with("MPLS")),
        "{}",
        hops(&o)
    );
    let o = dp
        .probe(
            &pod("default/a"),
            Ipv4Addr::new(192, 168, 0, 50),
            Protocol::Udp,
            53,
        )
        .expect("probe");
    assert_eq!(connected(&o), "dns");
    let o = dp
        .probe(
            &pod("default/c"),
            Ipv4Addr::new(192, 168, 0, 50),
            Protocol::Tcp,
            443,
        )
        .expect("probe");
    assert_eq!(connected(&o), "dns");
    // The fabric host reaches the pod directly.
    let o = dp
        .probe(&EndpointRef::FabricHost("dns".into()), c, Protocol::Tcp, 80)
        .expect("probe");
    assert_eq!(connected(&o), "default/c");
}

#[test]
fn fabric_snat_translates_to_the_node_address_and_port_pool() {
    let (_km, mut dp) = basic(Options {
        ip_fabric_snat: true,
        ..Options::default()
    });
    let o = dp
        .probe(
            &pod("default/c"),
            Ipv4Addr::new(192, 168, 0, 50),
            Protocol::Tcp,
            443,
        )
        .expect("probe");
    assert_eq!(connected(&o), "dns");
    let nat = o.hops.iter().find_map(|h| h.nat.clone()).expect("nat hop");
    assert!(
        nat.contains("fabric SNAT") && nat.contains("192.168.0.12:56"),
        "{nat}"
    );
    // On the underlay the host sees the node address with a port from the TCP pool.
    let seen = o
        .frames
        .iter()
        .filter(|f| f.link == "underlay")
        .find_map(|f| harness_vrouter_sim::wire::frame::parse_ipv4(&f.bytes, 14).ok())
        .expect("underlay frame");
    assert_eq!(seen.tuple.src, Ipv4Addr::new(192, 168, 0, 12));
    assert!(
        (56000..=57023).contains(&seen.tuple.sport),
        "{}",
        seen.tuple
    );
    let o = dp
        .probe(
            &pod("default/c"),
            Ipv4Addr::new(192, 168, 0, 50),
            Protocol::Udp,
            53,
        )
        .expect("probe");
    assert_eq!(connected(&o), "dns");
    assert!(
        o.hops
            .iter()
            .any(|h| h.nat.as_deref().unwrap_or("").contains(":57")),
        "{}",
        hops(&o)
    );
}

#[test]
fn cluster_ip_dnat_to_backends_spreads_by_five_tuple_hash() {
    let mut km = Km::new(Options::default());
    three_nodes(&mut km);
    let b1 = km.pod("default", "web-1", "node-b", &[("app", "web")]);
    let b2 = km.pod("default", "web-2", "node-c", &[("app", "web")]);
    km.pod("default", "client", "node-a", &[("app", "client")]);
    let vip = Ipv4Addr::new(10, 96, 0, 10);
    km.service("default", "web", vip, 8080, 80, &[&b1, &b2]);
    let mut dp = Dataplane::from_config(km.snapshot(), km.topology.clone());
    assert!(dp.warnings().is_empty(), "{:#?}", dp.warnings());
    let mut seen = std::collections::BTreeMap::new();
    for _ in 0..40 {
        let o = dp
            .probe(&pod("default/client"), vip, Protocol::Tcp, 8080)
            .expect("probe");
        *seen.entry(connected(&o).to_owned()).or_insert(0) += 1;
    }
    assert_eq!(seen.len(), 2, "{seen:?}");
    assert!(seen.values().all(|n| *n >= 5), "{seen:?}");
    let o = dp
        .probe(&pod("default/client"), vip, Protocol::Tcp, 8080)
        .expect("probe");
    let dnat = o
        .hops
        .iter()
        .filter_map(|h| h.nat.as_deref())
        .collect::<Vec<_>>()
        .join(" | ");
    assert!(
        dnat.contains("DNAT 10.96.0.10:8080 ->") && dnat.contains(":80"),
        "{dnat}"
    );
    // A port the service does not map.
    let o = dp
        .probe(&pod("default/client"), vip, Protocol::Tcp, 9999)
        .expect("probe");
    assert!(dropped(&o).1.contains("no port mapping"), "{:?}", o.verdict);
}

#[test]
fn external_client_reaches_a_floating_ip() {
    let mut km = Km::new(Options::default());
    three_nodes(&mut km);
    let b1 = km.pod("default", "web-1", "node-b", &[("app", "web")]);
    let fip = Ipv4Addr::new(203, 0, 113, 10);
    km.public_fip(fip, &[&b1], Some((443, 80)));
    let mut dp = Dataplane::from_config(km.snapshot(), km.topology.clone());
    assert!(dp.warnings().is_empty(), "{:#?}", dp.warnings());
    let o = dp
        .probe(
            &EndpointRef::External("client".into()),
            fip,
            Protocol::Tcp,
            443,
        )
        .expect("probe");
    assert_eq!(connected(&o), "default/web-1", "{}", hops(&o));
    assert!(
        o.hops.iter().any(|h| h
            .nat
            .as_deref()
            .unwrap_or("")
            .contains("DNAT 203.0.113.10:443")),
        "{}",
        hops(&o)
    );
}

#[test]
fn isolated_namespaces_keep_their_networks_apart() {
    let mut km = Km::new(Options::default());
    three_nodes(&mut km);
    km.namespace("iso", true);
    let d1 = km.pod("default", "d1", "node-a", &[("app", "d")]);
    km.pod("iso", "i1", "node-b", &[("app", "i")]);
    let i2 = km.pod("iso", "i2", "node-c", &[("app", "i")]);
    km.service(
        "default",
        "dsvc",
        Ipv4Addr::new(10, 96, 0, 20),
        80,
        80,
        &[&d1],
    );
    km.service("iso", "isvc", Ipv4Addr::new(10, 96, 0, 30), 80, 80, &[&i2]);
    let mut dp = Dataplane::from_config(km.snapshot(), km.topology.clone());
    assert!(dp.warnings().is_empty(), "{:#?}", dp.warnings());
    let d1ip = ip(&dp, "default/d1");
    let i2ip = ip(&dp, "iso/i2");
    // Within the isolated network, and to its own and the default services.
    assert_eq!(
        connected(
            &dp.probe(&pod("iso/i1"), i2ip, Protocol::Tcp, 80)
                .expect("p")
        ),
        "iso/i2"
    );
    assert_eq!(
        connected(
            &dp.probe(
                &pod("iso/i1"),
                Ipv4Addr::new(10, 96, 0, 30),
                Protocol::Tcp,
                80
            )
            .expect("p")
        ),
        "iso/i2"
    );
    assert_eq!(
        connected(
            &dp.probe(
                &pod("iso/i1"),
                Ipv4Addr::new(10, 96, 0, 20),
                Protocol::Tcp,
                80
            )
            .expect("p")
        ),
        "default/d1"
    );
    // Across networks: no route.
    let o = dp
        .probe(&pod("iso/i1"), d1ip, Protocol::Tcp, 80)
        .expect("p");
    assert!(dropped(&o).1.contains("no route"), "{:?}", o.verdict);
    let o = dp
        .probe(&pod("default/d1"), i2ip, Protocol::Tcp, 80)
        .expect("p");
    assert!(dropped(&o).1.contains("no route"), "{:?}", o.verdict);
    let o = dp
        .probe(
            &pod("default/d1"),
            Ipv4Addr::new(10, 96, 0, 30),
            Protocol::Tcp,
            80,
        )
        .expect("p");
    assert!(dropped(&o).1.contains("no route"), "{:?}", o.verdict);
}

#[test]
fn network_policy_firewall_rules_decide_and_are_named() {
    let mut km = Km::new(Options::default());
    three_nodes(&mut km);
    km.pod("default", "front", "node-a", &[("role", "frontend")]);
    km.pod("default", "db", "node-b", &[("role", "db")]);
    km.pod("default", "other", "node-c", &[("role", "other")]);
    km.network_policy_ingress(
        "default",
        "db-policy",
        &[("role", "db")],
        &[("role", "frontend")],
        Some(80),
    );
    let mut dp = Dataplane::from_config(km.snapshot(), km.topology.clone());
    assert!(dp.warnings().is_empty(), "{:#?}", dp.warnings());
    let db = ip(&dp, "default/db");
    let o = dp
        .probe(&pod("default/front"), db, Protocol::Tcp, 80)
        .expect("p");
    assert_eq!(connected(&o), "default/db");
    assert!(
        o.hops.iter().flat_map(|h| &h.decided_by).any(|d| d
            .rule
            .contains("default-ingress-db-policy-0-podSelector-0-0")
            && d.action == "pass"),
        "{}",
        hops(&o)
    );
    let o = dp
        .probe(&pod("default/other"), db, Protocol::Tcp, 80)
        .expect("p");
    let (at, reason) = dropped(&o);
    assert!(
        reason.contains("default-ingress-db-policy-denyall"),
        "{at}: {reason}"
    );
    // Port 8080 from the frontend is not allowed either.
    let o = dp
        .probe(&pod("default/front"), db, Protocol::Tcp, 8080)
        .expect("p");
    assert!(dropped(&o).1.contains("denyall"), "{:?}", o.verdict);
    // Traffic not selected by the policy still passes (namespace allow rules).
    let other = ip(&dp, "default/other");
    assert_eq!(
        connected(
            &dp.probe(&pod("default/db"), other, Protocol::Tcp, 80)
                .expect("p")
        ),
        "default/other"
    );
}

#[test]
fn implicit_deny_when_no_firewall_rule_matches_but_gateway_icmp_passes() {
    let mut km = Km::new(Options::default());
    three_nodes(&mut km);
    km.pod("default", "a", "node-a", &[("pod", "a")]);
    km.pod("default", "c", "node-b", &[("pod", "c")]);
    km.empty_allowall();
    let mut dp = Dataplane::from_config(km.snapshot(), km.topology.clone());
    let c = ip(&dp, "default/c");
    let o = dp
        .probe(&pod("default/a"), c, Protocol::Tcp, 80)
        .expect("p");
    assert!(dropped(&o).1.contains("implicit deny"), "{:?}", o.verdict);
    let gw = dp
        .control()
        .model
        .networks
        .iter()
        .find(|n| n.fq.ends_with("k8s-default-pod-network"))
        .expect("vn")
        .gateways[0];
    let o = dp
        .probe(&pod("default/a"), gw, Protocol::Icmp, 0)
        .expect("p");
    assert!(
        matches!(o.verdict, Verdict::Connected { .. }),
        "{:?}",
        o.verdict
    );
    assert!(
        o.hops
            .iter()
            .flat_map(|h| &h.decided_by)
            .any(|d| d.gate == "gateway"),
        "{}",
        hops(&o)
    );
    let o = dp
        .probe(&pod("default/a"), gw, Protocol::Udp, 53)
        .expect("p");
    assert!(
        matches!(o.verdict, Verdict::Connected { .. }),
        "{:?}",
        o.verdict
    );
}

#[test]
fn service_chain_is_traversed_in_order_and_its_function_decides() {
    let mut km = Km::new(Options::default());
    three_nodes(&mut km);
    km.namespace("left", true);
    km.namespace("right", true);
    km.pod("left", "l1", "node-a", &[("pod", "l1")]);
    km.pod_on(
        "right",
        "r1",
        "node-c",
        &[("pod", "r1")],
        None,
        vec![
            harness_vrouter_sim::ServedPort::tcp(80),
            harness_vrouter_sim::ServedPort::tcp(81),
        ],
    );
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
            function: Some(harness_scenario::ServiceFunction {
                drop: vec![harness_scenario::PortSpec::tcp(81)],
            }),
        });
    let mut dp = Dataplane::from_config(km.snapshot(), km.topology.clone());
    assert!(dp.warnings().is_empty(), "{:#?}", dp.warnings());
    let r1 = ip(&dp, "right/r1");
    let o = dp.probe(&pod("left/l1"), r1, Protocol::Tcp, 80).expect("p");
    assert_eq!(connected(&o), "right/r1", "{}", hops(&o));
    let order: Vec<&str> = o.hops.iter().map(|h| h.at.as_str()).collect();
    let si = order
        .iter()
        .position(|a| *a == "service instance default/fw")
        .expect("through the instance");
    let dst = order
        .iter()
        .position(|a| *a == "endpoint right/r1")
        .expect("to the pod");
    assert!(si < dst, "{order:?}");
    // The answer comes back through the instance too.
    assert_eq!(
        order
            .iter()
            .filter(|a| **a == "service instance default/fw")
            .count(),
        2,
        "{order:?}"
    );
    let o = dp.probe(&pod("left/l1"), r1, Protocol::Tcp, 81).expect("p");
    let (at, reason) = dropped(&o);
    assert_eq!(at, "service instance default/fw");
    assert!(reason.contains("TCP/81"), "{reason}");
}

#[test]
fn a_chain_of_two_instances_is_traversed_in_order_both_ways() {
    let mut km = Km::new(Options::default());
    three_nodes(&mut km);
    km.namespace("left", true);
    km.namespace("right", true);
    km.pod("left", "l1", "node-a", &[("pod", "l1")]);
    km.pod("right", "r1", "node-c", &[("pod", "r1")]);
    let left = km.pod_network("left");
    let right = km.pod_network("right");
    let l: Vec<&str> = left.iter().map(String::as_str).collect();
    let r: Vec<&str> = right.iter().map(String::as_str).collect();
    let (a_l, a_r) = km.service_instance("fw1", &l, &r, "node-b");
    let (b_l, b_r) = km.service_instance("fw2", &l, &r, "node-c");
    km.chain_policy("two-step", &l, &r, &["fw1", "fw2"]);
    for (name, ids) in [("default/fw1", [a_l, a_r]), ("default/fw2", [b_l, b_r])] {
        km.topology
            .endpoints
            .push(harness_vrouter_sim::EndpointSpec {
                name: name.into(),
                interfaces: ids.to_vec(),
                node: None,
                ports: vec![],
                function: Some(harness_scenario::ServiceFunction::default()),
            });
    }
    let mut dp = Dataplane::from_config(km.snapshot(), km.topology.clone());
    assert!(dp.warnings().is_empty(), "{:#?}", dp.warnings());
    let r1 = ip(&dp, "right/r1");
    let o = dp.probe(&pod("left/l1"), r1, Protocol::Tcp, 80).expect("p");
    assert_eq!(connected(&o), "right/r1", "{}", hops(&o));
    let order: Vec<&str> = o
        .hops
        .iter()
        .map(|h| h.at.as_str())
        .filter(|a| a.starts_with("service instance") || a.starts_with("endpoint"))
        .collect();
    assert_eq!(
        order,
        [
            "service instance default/fw1",
            "service instance default/fw2",
            "endpoint right/r1",
            "service instance default/fw2",
            "service instance default/fw1"
        ],
        "{}",
        hops(&o)
    );
    // And from the right side.
    let l1 = ip(&dp, "left/l1");
    let o = dp
        .probe(&pod("right/r1"), l1, Protocol::Tcp, 80)
        .expect("p");
    assert_eq!(connected(&o), "left/l1", "{}", hops(&o));
}

#[test]
fn restart_drops_flows_and_probes_through_it_are_inconclusive() {
    let (km, mut dp) = basic(Options::default());
    let c = ip(&dp, "default/c");
    assert_eq!(
        connected(
            &dp.probe(&pod("default/a"), c, Protocol::Tcp, 80)
                .expect("p")
        ),
        "default/c"
    );
    assert!(dp.flow_count("node-b") > 0);
    dp.begin_restart("node-b").expect("restart");
    assert_eq!(dp.flow_count("node-b"), 0);
    let o = dp
        .probe(&pod("default/a"), c, Protocol::Tcp, 80)
        .expect("p");
    assert!(
        matches!(o.verdict, Verdict::Inconclusive { .. }),
        "{:?}",
        o.verdict
    );
    // A path that avoids the restarting node is unaffected.
    let b = ip(&dp, "default/b");
    assert_eq!(
        connected(
            &dp.probe(&pod("default/a"), b, Protocol::Tcp, 80)
                .expect("p")
        ),
        "default/b"
    );
    dp.finish_restart("node-b", Some(km.snapshot()))
        .expect("rebuilt");
    assert_eq!(
        connected(
            &dp.probe(&pod("default/a"), c, Protocol::Tcp, 80)
                .expect("p")
        ),
        "default/c"
    );
}

#[test]
fn ttl_expiry_is_answered_with_time_exceeded() {
    let (_km, mut dp) = basic(Options::default());
    let c = ip(&dp, "default/c");
    let opts = harness_vrouter_sim::ProbeOptions {
        ttl: 1,
        ..Default::default()
    };
    let o = dp
        .probe_with(&pod("default/a"), c, Protocol::Tcp, 80, &opts)
        .expect("p");
    let (_, reason) = dropped(&o);
    assert!(
        reason.contains("TimeExceeded") || reason.contains("TTL"),
        "{reason}"
    );
}

#[test]
fn config_changes_apply_incrementally() {
    let mut km = Km::new(Options::default());
    three_nodes(&mut km);
    km.pod("default", "front", "node-a", &[("role", "frontend")]);
    km.pod("default", "db", "node-b", &[("role", "db")]);
    km.pod("default", "other", "node-c", &[("role", "other")]);
    let mut dp = Dataplane::from_config(km.snapshot(), km.topology.clone());
    let since = dp.snapshot().seq;
    let db = ip(&dp, "default/db");
    assert!(matches!(
        dp.probe(&pod("default/other"), db, Protocol::Tcp, 80)
            .expect("p")
            .verdict,
        Verdict::Connected { .. }
    ));
    km.network_policy_ingress(
        "default",
        "db-policy",
        &[("role", "db")],
        &[("role", "frontend")],
        Some(80),
    );
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("rt");
    let mut sub = km.db.subscribe(Some(since)).expect("subscribe");
    let mut changes = Vec::new();
    while km.db.current_seq() > sub.last_seq() {
        changes.push(rt.block_on(sub.next()).expect("change"));
    }
    let start = std::time::Instant::now();
    let scope = dp.apply_changes(changes.iter().map(|c| c.as_ref()));
    let took = start.elapsed();
    assert_eq!(scope, harness_vrouter_sim::config::Scope::Policy);
    assert!(took.as_millis() < 200, "convergence took {took:?}");
    let o = dp
        .probe(&pod("default/other"), db, Protocol::Tcp, 80)
        .expect("p");
    assert!(dropped(&o).1.contains("denyall"), "{:?}", o.verdict);
    assert!(matches!(
        dp.probe(&pod("default/front"), db, Protocol::Tcp, 80)
            .expect("p")
            .verdict,
        Verdict::Connected { .. }
    ));
}

#[test]
fn garbage_frames_never_panic() {
    use proptest::prelude::*;
    let (_km, dp) = basic(Options::default());
    let dp = std::cell::RefCell::new(dp);
    let mut runner = proptest::test_runner::TestRunner::new(ProptestConfig::with_cases(300));
    runner
        .run(
            &(
                0usize..4,
                proptest::collection::vec(any::<u8>(), 0..200),
                any::<bool>(),
            ),
            |(src, mut bytes, ipv4)| {
                if ipv4 && bytes.len() > 34 {
                    bytes[12] = 0x08;
                    bytes[13] = 0x00;
                    bytes[14] = 0x45;
                }
                let from = [
                    EndpointRef::Pod("default/a".into()),
                    EndpointRef::Node("node-a".into()),
                    EndpointRef::FabricHost("dns".into()),
                    EndpointRef::External("client".into()),
                ][src]
                    .clone();
                let _ = dp.borrow_mut().inject(&from, bytes);
                Ok(())
            },
        )
        .expect("no panic");
    // Tunnel packets with garbage inside, straight to a vhost.
    let enc = [
        harness_scenario::Encapsulation::MplsOverUdp,
        harness_scenario::Encapsulation::MplsOverGre,
        harness_scenario::Encapsulation::Vxlan,
    ];
    runner
        .run(
            &(
                0usize..3,
                proptest::collection::vec(any::<u8>(), 0..120),
                0u32..40,
            ),
            |(k, inner, label)| {
                let outer = harness_vrouter_sim::wire::encap::Outer {
                    addrs: harness_vrouter_sim::wire::frame::Addrs {
                        src_mac: [2, 0, 0, 0, 0, 1],
                        dst_mac: [2, 0, 0, 0, 0, 2],
                        src: Ipv4Addr::new(192, 168, 0, 50),
                        dst: Ipv4Addr::new(192, 168, 0, 11),
                        ttl: 64,
                    },
                    entropy: 7,
                };
                let f =
                    harness_vrouter_sim::wire::encap::encapsulate(enc[k], &outer, label, &inner);
                let _ = dp
                    .borrow_mut()
                    .inject(&EndpointRef::FabricHost("dns".into()), f);
                Ok(())
            },
        )
        .expect("no panic");
}

#[test]
fn the_agent_loop_converges_after_a_network_policy_change() {
    use std::sync::{Arc, Mutex};
    let mut km = Km::new(Options::default());
    three_nodes(&mut km);
    km.pod("default", "front", "node-a", &[("role", "frontend")]);
    km.pod("default", "db", "node-b", &[("role", "db")]);
    km.pod("default", "other", "node-c", &[("role", "other")]);
    let dp = Arc::new(Mutex::new(Dataplane::from_config(
        km.snapshot(),
        km.topology.clone(),
    )));
    let db_ip = ip(&dp.lock().expect("lock"), "default/db");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_time()
        .build()
        .expect("rt");
    let task = rt.spawn(harness_vrouter_sim::agent::follow_db(
        km.db.clone(),
        Arc::clone(&dp),
        harness_vrouter_sim::agent::DEFAULT_DEBOUNCE,
    ));
    km.network_policy_ingress(
        "default",
        "db-policy",
        &[("role", "db")],
        &[("role", "frontend")],
        Some(80),
    );
    let start = std::time::Instant::now();
    loop {
        let o = dp
            .lock()
            .expect("lock")
            .probe(&pod("default/other"), db_ip, Protocol::Tcp, 80)
            .expect("p");
        if matches!(&o.verdict, Verdict::Dropped { reason, .. } if reason.contains("denyall")) {
            break;
        }
        assert!(
            start.elapsed().as_secs() < 5,
            "no convergence: {:?}",
            o.verdict
        );
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    task.abort();
}

#[test]
fn nodes_and_pods_reach_each_other_over_the_ip_fabric_policy() {
    for fwd in [false, true] {
        let (_km, mut dp) = basic(Options {
            ip_fabric_forwarding: fwd,
            ..Options::default()
        });
        let c = ip(&dp, "default/c");
        let o = dp
            .probe(&EndpointRef::Node("node-a".into()), c, Protocol::Tcp, 80)
            .expect("p");
        assert_eq!(connected(&o), "default/c", "forwarding {fwd}");
        let o = dp
            .probe(
                &pod("default/c"),
                Ipv4Addr::new(192, 168, 0, 11),
                Protocol::Tcp,
                10250,
            )
            .expect("p");
        assert_eq!(
            connected(&o),
            "node node-a",
            "forwarding {fwd}\n{}",
            hops(&o)
        );
        let o = dp
            .probe(
                &pod("default/c"),
                Ipv4Addr::new(192, 168, 0, 11),
                Protocol::Tcp,
                22,
            )
            .expect("p");
        assert!(
            matches!(o.verdict, Verdict::Refused { .. }),
            "{:?}",
            o.verdict
        );
    }
}

#[test]
fn egress_ip_block_with_except_uses_address_groups() {
    let mut km = Km::new(Options {
        ip_fabric_forwarding: true,
        ..Options::default()
    });
    three_nodes(&mut km);
    km.pod("default", "a", "node-a", &[("role", "client")]);
    km.pod("default", "c", "node-b", &[("pod", "c")]);
    km.network_policy_egress_ip_block(
        "default",
        "egress",
        &[("role", "client")],
        "192.168.0.0/24",
        "192.168.0.50/32",
    );
    let mut dp = Dataplane::from_config(km.snapshot(), km.topology.clone());
    assert!(dp.warnings().is_empty(), "{:#?}", dp.warnings());
    let o = dp
        .probe(
            &pod("default/a"),
            Ipv4Addr::new(192, 168, 0, 50),
            Protocol::Tcp,
            443,
        )
        .expect("p");
    assert!(
        dropped(&o)
            .1
            .contains("default-egress-egress-ipBlock-0-192.168.0.50/32-0"),
        "{:?}",
        o.verdict
    );
    let o = dp
        .probe(
            &pod("default/a"),
            Ipv4Addr::new(192, 168, 0, 12),
            Protocol::Tcp,
            10250,
        )
        .expect("p");
    assert_eq!(connected(&o), "node node-b", "{}", hops(&o));
    assert!(
        o.hops
            .iter()
            .flat_map(|h| &h.decided_by)
            .any(|d| d.rule.contains("ipBlock-0-cidr-192.168.0.0/24-0")),
        "{}",
        hops(&o)
    );
    let c = ip(&dp, "default/c");
    let o = dp
        .probe(&pod("default/a"), c, Protocol::Tcp, 80)
        .expect("p");
    assert!(
        dropped(&o)
            .1
            .contains("default-egress-egress-default-deny-all"),
        "{:?}",
        o.verdict
    );
    // Fabric SNAT-free ping of the allowed node and ICMP through SNAT elsewhere.
    assert!(matches!(
        dp.probe(
            &pod("default/a"),
            Ipv4Addr::new(192, 168, 0, 12),
            Protocol::Icmp,
            0
        )
        .expect("p")
        .verdict,
        Verdict::Connected { .. }
    ));
}

#[test]
fn fabric_snat_carries_icmp_and_udp_answers_back() {
    let (_km, mut dp) = basic(Options {
        ip_fabric_snat: true,
        ..Options::default()
    });
    let o = dp
        .probe(
            &pod("default/a"),
            Ipv4Addr::new(192, 168, 0, 50),
            Protocol::Icmp,
            0,
        )
        .expect("p");
    assert_eq!(connected(&o), "dns", "{}", hops(&o));
    let o = dp
        .probe(
            &pod("default/a"),
            Ipv4Addr::new(192, 168, 0, 50),
            Protocol::Udp,
            4242,
        )
        .expect("p");
    assert!(
        matches!(&o.verdict, Verdict::Refused { by } if by.contains("port unreachable")),
        "{:?}\n{}",
        o.verdict,
        hops(&o)
    );
}

#[test]
fn udp_through_a_cluster_ip_and_icmp_errors_follow_the_nat() {
    let mut km = Km::new(Options::default());
    three_nodes(&mut km);
    let b1 = km.pod("default", "dns-1", "node-b", &[("app", "dns")]);
    km.pod("default", "client", "node-a", &[("app", "client")]);
    let vip = Ipv4Addr::new(10, 96, 0, 53);
    km.service_ports(
        "default",
        "dns",
        vip,
        &[("UDP", 53, 53), ("UDP", 5353, 9999)],
        &[&b1],
    );
    let mut dp = Dataplane::from_config(km.snapshot(), km.topology.clone());
    assert_eq!(
        connected(
            &dp.probe(&pod("default/client"), vip, Protocol::Udp, 53)
                .expect("p")
        ),
        "default/dns-1"
    );
    let o = dp
        .probe(&pod("default/client"), vip, Protocol::Udp, 5353)
        .expect("p");
    match &o.verdict {
        Verdict::Refused { by } => assert!(by.contains("port unreachable from 10.96.0.53"), "{by}"),
        v => panic!("{v:?}\n{}", hops(&o)),
    }
    // The client saw the error quoting its own packet to the VIP.
    let last = o.frames.last().expect("frames");
    let s = harness_vrouter_sim::wire::frame::parse_ipv4(&last.bytes, 14).expect("ipv4");
    let harness_vrouter_sim::wire::frame::Transport::IcmpError {
        quoted: Some(q), ..
    } = s.transport
    else {
        panic!("not an ICMP error: {}", s.tuple)
    };
    assert_eq!((q.dst, q.dport), (vip, 5353));
    assert!(harness_vrouter_sim::wire::frame::checksums_ok(&last.bytes));
}
