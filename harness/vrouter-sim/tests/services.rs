//! Services reached the ways the blueprint publishes them, on configuration built as
//! contrail-kube-manager builds it: a VIP without members is rejected where it is looked up,
//! kube-proxy's node ports (masquerade or client kept, local endpoints, REJECT and DROP), the
//! gateway's scope (floating IPs and node ports only, answers of inside sessions), and the
//! ingress proxy (Contrail's haproxy) terminating HTTP(S) and relaying to the backend service.

mod common;

use std::collections::BTreeSet;
use std::net::Ipv4Addr;

use common::{Km, Options, three_nodes};
use harness_scenario::Protocol;
use harness_vrouter_sim::kube_proxy::{NodePortRule, ServiceEndpoint};
use harness_vrouter_sim::{Dataplane, EndpointRef, Observation, Verdict};

const NODE_A: Ipv4Addr = Ipv4Addr::new(192, 168, 0, 11);
const NODE_B: Ipv4Addr = Ipv4Addr::new(192, 168, 0, 12);
const CLIENT: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 7);

fn pod(n: &str) -> EndpointRef {
    EndpointRef::Pod(n.into())
}

fn external() -> EndpointRef {
    EndpointRef::External("client".into())
}

fn node(n: &str) -> EndpointRef {
    EndpointRef::Node(n.into())
}

fn hops(o: &Observation) -> String {
    o.hops.iter().map(|h| format!("  {h}\n")).collect()
}

fn connected(o: &Observation) -> &str {
    match &o.verdict {
        Verdict::Connected { backend } => backend,
        v => panic!("expected connected, got {v:?}\n{}", hops(o)),
    }
}

fn refused(o: &Observation) -> &str {
    match &o.verdict {
        Verdict::Refused { by } => by,
        v => panic!("expected refused, got {v:?}\n{}", hops(o)),
    }
}

fn dropped(o: &Observation) -> (&str, &str) {
    match &o.verdict {
        Verdict::Dropped { at, reason } => (at, reason),
        v => panic!("expected dropped, got {v:?}\n{}", hops(o)),
    }
}

/// The source address the endpoint `name` saw (its "answered" hop).
fn seen_source(o: &Observation, name: &str) -> String {
    let at = format!("endpoint {name}");
    o.hops
        .iter()
        .find(|h| h.at == at)
        .map(|h| h.packet.split(' ').nth(1).unwrap_or("").to_owned())
        .unwrap_or_else(|| panic!("{name} did not answer\n{}", hops(o)))
}

#[test]
fn a_service_without_ready_backends_is_rejected_where_its_vip_is_looked_up() {
    let mut km = Km::new(Options::default());
    three_nodes(&mut km);
    km.namespace("blue", true);
    km.pod("default", "client", "node-a", &[("app", "client")]);
    km.pod("blue", "iso", "node-b", &[("app", "iso")]);
    let web = km.pod("default", "web", "node-b", &[("app", "web")]);
    let nobody = Ipv4Addr::new(10, 96, 0, 20);
    let served = Ipv4Addr::new(10, 96, 0, 21);
    km.service_ports(
        "default",
        "nobody",
        nobody,
        &[("TCP", 80, 80), ("UDP", 53, 53)],
        &[],
    );
    km.service("default", "web", served, 80, 80, &[&web]);
    let hidden = Ipv4Addr::new(10, 96, 0, 22);
    km.service("blue", "nobody", hidden, 80, 80, &[]);
    let mut dp = Dataplane::from_config(km.snapshot(), km.topology.clone());
    assert!(dp.warnings().is_empty(), "{:#?}", dp.warnings());

    // From a pod: the pod's vrouter answers for the VIP, before any policy gate.
    let o = dp
        .probe(&pod("default/client"), nobody, Protocol::Tcp, 80)
        .unwrap();
    assert!(
        refused(&o).contains("ICMP port unreachable from 10.96.0.20"),
        "{o:?}"
    );
    assert!(hops(&o).contains("has no member"), "{}", hops(&o));
    let o = dp
        .probe(&pod("default/client"), nobody, Protocol::Udp, 53)
        .unwrap();
    refused(&o);
    // A VIP forwards only its service ports, members or not.
    let o = dp
        .probe(&pod("default/client"), nobody, Protocol::Icmp, 0)
        .unwrap();
    assert!(dropped(&o).1.contains("only its service ports"), "{o:?}");
    let o = dp
        .probe(&pod("default/client"), nobody, Protocol::Tcp, 81)
        .unwrap();
    assert!(dropped(&o).1.contains("no port mapping"), "{o:?}");
    // From a node (ip-fabric VRF).
    let o = dp
        .probe(&node("node-c"), nobody, Protocol::Tcp, 80)
        .unwrap();
    refused(&o);
    // Isolated namespaces reach the cluster's services, so the reject too; isolation still
    // hides an isolated namespace's VIP from other namespaces (no route), members or not.
    let o = dp
        .probe(&pod("blue/iso"), nobody, Protocol::Tcp, 80)
        .unwrap();
    refused(&o);
    let o = dp
        .probe(&pod("blue/iso"), hidden, Protocol::Tcp, 80)
        .unwrap();
    refused(&o);
    let o = dp
        .probe(&pod("default/client"), hidden, Protocol::Tcp, 80)
        .unwrap();
    dropped(&o);
    // The same service with a member answers.
    let o = dp
        .probe(&pod("default/client"), served, Protocol::Tcp, 80)
        .unwrap();
    assert_eq!(connected(&o), "default/web");
}

fn node_port_cluster() -> (Km, Dataplane) {
    let mut km = Km::new(Options::default());
    three_nodes(&mut km);
    let w1 = km.pod("default", "web-1", "node-b", &[("app", "web")]);
    km.pod("default", "web-2", "node-c", &[("app", "web")]);
    km.pod("default", "client", "node-a", &[("app", "client")]);
    km.service(
        "default",
        "web",
        Ipv4Addr::new(10, 96, 0, 30),
        80,
        80,
        &[&w1],
    );
    let mut dp = Dataplane::from_config(km.snapshot(), km.topology.clone());
    let ep = |dp: &Dataplane, n: &str, node: &str| ServiceEndpoint {
        address: dp.endpoint_addresses(n)[0],
        port: 80,
        node: Some(node.into()),
    };
    let endpoints = vec![
        ep(&dp, "default/web-1", "node-b"),
        ep(&dp, "default/web-2", "node-c"),
    ];
    let rules = vec![
        NodePortRule {
            service: "default/web-np".into(),
            protocol: Protocol::Tcp,
            node_port: 30080,
            local: false,
            endpoints: endpoints.clone(),
        },
        NodePortRule {
            service: "default/web-local".into(),
            protocol: Protocol::Tcp,
            node_port: 30081,
            local: true,
            endpoints,
        },
        NodePortRule {
            service: "default/nobody".into(),
            protocol: Protocol::Tcp,
            node_port: 30082,
            local: false,
            endpoints: Vec::new(),
        },
    ];
    for n in ["node-a", "node-b", "node-c"] {
        dp.set_node_ports(n, rules.clone()).unwrap();
    }
    (km, dp)
}

#[test]
fn node_ports_spread_over_ready_endpoints_with_the_source_masqueraded_to_the_node() {
    let (_km, mut dp) = node_port_cluster();
    assert_eq!(dp.node_ports("node-a").len(), 3);
    assert!(dp.set_node_ports("node-z", Vec::new()).is_err());
    let mut seen = BTreeSet::new();
    for _ in 0..32 {
        let o = dp.probe(&external(), NODE_A, Protocol::Tcp, 30080).unwrap();
        seen.insert(connected(&o).to_owned());
    }
    assert_eq!(
        seen,
        BTreeSet::from(["default/web-1".to_owned(), "default/web-2".to_owned()])
    );
    let o = dp.probe(&external(), NODE_A, Protocol::Tcp, 30080).unwrap();
    let backend = connected(&o).to_owned();
    let trace = hops(&o);
    assert!(
        trace.contains("kube-proxy on node-a") && trace.contains("masquerade to the node"),
        "{trace}"
    );
    // Policies at the backend see the node address (externalTrafficPolicy: Cluster).
    assert!(
        seen_source(&o, &backend).starts_with("192.168.0.11:"),
        "{trace}"
    );
    // From a pod, from another node and from the node itself.
    let o = dp
        .probe(&pod("default/client"), NODE_B, Protocol::Tcp, 30080)
        .unwrap();
    connected(&o);
    let o = dp
        .probe(&node("node-c"), NODE_A, Protocol::Tcp, 30080)
        .unwrap();
    connected(&o);
    let o = dp
        .probe(&node("node-a"), NODE_A, Protocol::Tcp, 30080)
        .unwrap();
    connected(&o);
    // Not a node port: the node's own stack answers (RST).
    let o = dp.probe(&external(), NODE_A, Protocol::Tcp, 30099).unwrap();
    assert!(refused(&o).contains("TCP RST"), "{o:?}");
}

#[test]
fn node_ports_keep_the_client_for_local_and_reject_or_drop_without_endpoints() {
    let (_km, mut dp) = node_port_cluster();
    // Local: the client's address is kept and only the node's own endpoint answers.
    for _ in 0..8 {
        let o = dp.probe(&external(), NODE_B, Protocol::Tcp, 30081).unwrap();
        assert_eq!(connected(&o), "default/web-1");
        assert!(
            seen_source(&o, "default/web-1").starts_with("198.51.100.7:"),
            "{}",
            hops(&o)
        );
    }
    // Local on a node without endpoints: kube-proxy drops ("has no local endpoints").
    let o = dp.probe(&external(), NODE_A, Protocol::Tcp, 30081).unwrap();
    let (at, reason) = dropped(&o);
    assert_eq!(at, "kube-proxy on node-a");
    assert!(reason.contains("has no local endpoints"), "{reason}");
    // No ready endpoint at all: REJECT (ICMP port unreachable from the node).
    let o = dp.probe(&external(), NODE_A, Protocol::Tcp, 30082).unwrap();
    assert!(
        refused(&o).contains("ICMP port unreachable from 192.168.0.11"),
        "{o:?}"
    );
    let o = dp
        .probe(&pod("default/client"), NODE_A, Protocol::Tcp, 30082)
        .unwrap();
    refused(&o);
    let o = dp
        .probe(&node("node-a"), NODE_A, Protocol::Tcp, 30082)
        .unwrap();
    refused(&o);
    // Rules replaced: the service's endpoints are gone.
    dp.set_node_ports("node-a", Vec::new()).unwrap();
    let o = dp.probe(&external(), NODE_A, Protocol::Tcp, 30080).unwrap();
    assert!(refused(&o).contains("TCP RST"), "{o:?}");
}

#[test]
fn the_gateway_publishes_only_floating_ips_and_node_ports() {
    let mut km = Km::new(Options {
        ip_fabric_forwarding: true,
        ..Options::default()
    });
    three_nodes(&mut km);
    km.pod("default", "web", "node-b", &[("app", "web")]);
    let lb = Ipv4Addr::new(203, 0, 113, 20);
    let plain = Ipv4Addr::new(203, 0, 113, 21);
    km.public_fip(lb, &[], Some((80, 80)));
    km.public_fip(plain, &[], None);
    let mut dp = Dataplane::from_config(km.snapshot(), km.topology.clone());
    let web = dp.endpoint_addresses("default/web")[0];
    // The pod is routable on the underlay (ip-fabric forwarding) but not published.
    let o = dp.probe(&external(), web, Protocol::Tcp, 80).unwrap();
    let (at, reason) = dropped(&o);
    assert_eq!(at, "gateway");
    assert!(reason.contains("is not published"), "{reason}");
    // Nor is a fabric host, nor a node outside its node ports.
    let o = dp
        .probe(
            &external(),
            Ipv4Addr::new(192, 168, 0, 50),
            Protocol::Tcp,
            443,
        )
        .unwrap();
    assert_eq!(dropped(&o).0, "gateway");
    let o = dp.probe(&external(), NODE_A, Protocol::Tcp, 10250).unwrap();
    assert!(dropped(&o).1.contains("only on node ports"), "{o:?}");
    let o = dp.probe(&external(), NODE_A, Protocol::Icmp, 0).unwrap();
    assert_eq!(dropped(&o).0, "gateway");
    // Answers of sessions opened from inside come back: the client refuses.
    let o = dp
        .probe(&pod("default/web"), CLIENT, Protocol::Tcp, 80)
        .unwrap();
    assert!(refused(&o).contains("198.51.100.7"), "{o:?}");
    // A LoadBalancer VIP without members is rejected by the gateway; a plain floating IP
    // without an interface is not routed.
    let o = dp.probe(&external(), lb, Protocol::Tcp, 80).unwrap();
    assert!(
        refused(&o).contains("ICMP port unreachable from 203.0.113.20"),
        "{o:?}"
    );
    let o = dp.probe(&external(), plain, Protocol::Tcp, 80).unwrap();
    assert!(dropped(&o).1.contains("no route to 203.0.113.21"), "{o:?}");
}

fn ingress_cluster() -> (Km, Dataplane, Ipv4Addr, Ipv4Addr) {
    let mut km = Km::new(Options::default());
    three_nodes(&mut km);
    let w1 = km.pod("default", "web-1", "node-b", &[("app", "web")]);
    let w2 = km.pod("default", "web-2", "node-c", &[("app", "web")]);
    km.pod("default", "client", "node-a", &[("app", "client")]);
    let vip = Ipv4Addr::new(10, 96, 0, 40);
    // Port 80 → the pods' 80; port 81 → 8081, which nothing serves.
    km.service_ports(
        "default",
        "web",
        vip,
        &[("TCP", 80, 80), ("TCP", 81, 8081)],
        &[&w1, &w2],
    );
    let fip = Ipv4Addr::new(203, 0, 113, 30);
    km.ingress(
        "default",
        "web-ing",
        fip,
        &[("HTTP", 80), ("TERMINATED_HTTPS", 443)],
        Some((vip, 80)),
    );
    let refusing = Ipv4Addr::new(203, 0, 113, 31);
    km.ingress(
        "default",
        "bad-port",
        refusing,
        &[("HTTP", 80)],
        Some((vip, 81)),
    );
    let dp = Dataplane::from_config(km.snapshot(), km.topology.clone());
    assert!(dp.warnings().is_empty(), "{:#?}", dp.warnings());
    (km, dp, fip, refusing)
}

#[test]
fn an_ingress_proxy_terminates_http_and_relays_to_the_backend_service() {
    let (_km, mut dp, fip, refusing) = ingress_cluster();
    let mut seen = BTreeSet::new();
    for _ in 0..32 {
        let o = dp.probe(&external(), fip, Protocol::Tcp, 80).unwrap();
        seen.insert(connected(&o).to_owned());
    }
    assert_eq!(
        seen,
        BTreeSet::from(["default/web-1".to_owned(), "default/web-2".to_owned()])
    );
    let o = dp.probe(&external(), fip, Protocol::Tcp, 443).unwrap();
    let backend = connected(&o).to_owned();
    let trace = hops(&o);
    assert!(
        trace.contains("ingress proxy") && trace.contains("new connection"),
        "{trace}"
    );
    // The backend sees the proxy (the VIP), not the client.
    assert!(
        !seen_source(&o, &backend).starts_with("198.51.100.7"),
        "{trace}"
    );
    // Other ports: nothing listens; ICMP is not forwarded.
    let o = dp.probe(&external(), fip, Protocol::Tcp, 8080).unwrap();
    assert!(refused(&o).contains("no listener"), "{o:?}");
    let o = dp.probe(&external(), fip, Protocol::Udp, 80).unwrap();
    refused(&o);
    let o = dp.probe(&external(), fip, Protocol::Icmp, 0).unwrap();
    assert!(dropped(&o).0.starts_with("ingress proxy"), "{o:?}");
    // A backend that refuses: the client's connection is reset (haproxy's 503).
    let o = dp.probe(&external(), refusing, Protocol::Tcp, 80).unwrap();
    assert!(refused(&o).contains("refused"), "{o:?}");
}

#[test]
fn an_ingress_proxy_resets_the_client_when_its_backend_connection_is_dropped() {
    let (mut km, mut dp, fip, _) = ingress_cluster();
    // Only app=client may reach the web pods: the proxy's connection is dropped at the
    // backend, the proxy times out and resets the client.
    km.network_policy_ingress(
        "default",
        "web-closed",
        &[("app", "web")],
        &[("app", "client")],
        Some(80),
    );
    dp.replace_snapshot(km.snapshot());
    let o = dp.probe(&external(), fip, Protocol::Tcp, 80).unwrap();
    let by = refused(&o);
    assert!(
        by.contains("timed out") && by.contains("dropped at"),
        "{by}"
    );
    // The client pod still reaches them through the ClusterIP.
    let o = dp
        .probe(
            &pod("default/client"),
            Ipv4Addr::new(10, 96, 0, 40),
            Protocol::Tcp,
            80,
        )
        .unwrap();
    connected(&o);
}
