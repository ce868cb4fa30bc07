//! The ingress proxy (Contrail's haproxy) through real namespaces: a real TCP connection from
//! an external client to an Ingress's address is terminated by the proxy inside the one
//! forwarding core, which opens its own connection to the backend service through the same
//! user-space vrouters and relays the backend pod's greeting back; when the backend's
//! packets are dropped, the proxy's connect timeout (run by the forwarders' ticks) resets the
//! client, as the model says. Needs CAP_NET_ADMIN/NET_RAW/SYS_ADMIN: without them each test
//! says why and returns.

#[path = "../../vrouter-sim/tests/common/mod.rs"]
mod common;

use std::io::Read;
use std::net::{Ipv4Addr, SocketAddrV4, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{Km, Options};
use harness_netns::{NetVerdict, NetnsDataplane, NetnsOptions};
use harness_scenario::Protocol;
use harness_vrouter_sim::io::PROXY_CONNECT_TIMEOUT;
use harness_vrouter_sim::{Dataplane, EndpointRef, ProbeOptions, Verdict};

const FIP: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 30);
/// The runner's wait for a real probe (`harness_runner::provider::netns::PROBE_TIMEOUT`).
const PROBE_TIMEOUT: Duration = Duration::from_millis(1000);

fn capable() -> bool {
    match harness_netns::check_capabilities() {
        Ok(()) => true,
        Err(e) => {
            eprintln!("skipping: {e}");
            false
        }
    }
}

/// Three nodes, web-1 on node-b and web-2 on node-c behind service `web` (ClusterIP
/// 10.96.0.40, port 80), a client pod on node-a, and Ingress `web-ing` on public floating
/// IP 203.0.113.30 (HTTP 80) whose backend is the service.
fn ingress_km() -> (Km, Dataplane) {
    let mut km = Km::new(Options::default());
    common::three_nodes(&mut km);
    let w1 = km.pod("default", "web-1", "node-b", &[("app", "web")]);
    let w2 = km.pod("default", "web-2", "node-c", &[("app", "web")]);
    km.pod("default", "client", "node-a", &[("app", "client")]);
    let vip = Ipv4Addr::new(10, 96, 0, 40);
    km.service_ports("default", "web", vip, &[("TCP", 80, 80)], &[&w1, &w2]);
    km.ingress("default", "web-ing", FIP, &[("HTTP", 80)], Some((vip, 80)));
    let dp = Dataplane::from_config(km.snapshot(), km.topology.clone());
    assert!(dp.warnings().is_empty(), "{:#?}", dp.warnings());
    (km, dp)
}

fn up(dp: Dataplane) -> NetnsDataplane {
    NetnsDataplane::up(Arc::new(Mutex::new(dp)), &NetnsOptions::default())
        .expect("netns dataplane up")
}

fn model(net: &NetnsDataplane, from: &EndpointRef, port: u16) -> Verdict {
    net.dataplane()
        .lock()
        .unwrap()
        .probe_with(
            from,
            FIP,
            Protocol::Tcp,
            port,
            &ProbeOptions {
                trace: false,
                capture: false,
                ttl: 64,
            },
        )
        .expect("model probe")
        .verdict
}

fn backend(v: &NetVerdict) -> Option<&str> {
    match v {
        NetVerdict::Connected { backend, .. } => backend.as_deref(),
        _ => None,
    }
}

#[test]
fn a_real_tcp_connection_through_the_ingress_gets_a_backend_pods_greeting() {
    if !capable() {
        return;
    }
    let (_km, dp) = ingress_km();
    let net = up(dp);
    let client = EndpointRef::External("client".into());

    // A plain kernel socket in the external client's namespace: connect, read the line the
    // backend pod sends, as any client of the ingress would.
    let ns = net.namespace_of(&client).unwrap();
    let line = harness_netns::sys::in_netns(&ns, || {
        let mut s = TcpStream::connect_timeout(&SocketAddrV4::new(FIP, 80).into(), PROBE_TIMEOUT)?;
        s.set_read_timeout(Some(Duration::from_secs(2)))?;
        let mut line = String::new();
        s.read_to_string(&mut line)?;
        Ok::<_, std::io::Error>(line)
    })
    .unwrap()
    .expect("a TCP exchange through the ingress");
    assert!(
        line.contains("default/web-1") || line.contains("default/web-2"),
        "not a backend's greeting: {line:?}\n{:#?}",
        net.counters()
    );

    // The prober: the same verdicts as the model, a backend named, both backends over a
    // handful of connections (the service's ECMP spreads the proxy's connections).
    let mut seen = std::collections::BTreeSet::new();
    for _ in 0..12 {
        let v = net
            .probe(&client, FIP, Protocol::Tcp, 80, PROBE_TIMEOUT)
            .unwrap();
        let b = backend(&v).unwrap_or_else(|| panic!("{v:?}\n{:#?}", net.counters()));
        seen.insert(b.to_owned());
    }
    assert_eq!(
        seen.into_iter().collect::<Vec<_>>(),
        ["default/web-1", "default/web-2"],
        "the ingress spreads over both pods"
    );
    assert!(matches!(
        model(&net, &client, 80),
        Verdict::Connected { .. }
    ));
    // A port the ingress does not listen on: refused in both.
    let v = net
        .probe(&client, FIP, Protocol::Tcp, 8080, PROBE_TIMEOUT)
        .unwrap();
    assert_eq!(
        v.word(),
        NetVerdict::model_word(&model(&net, &client, 8080)),
        "{v:?}"
    );
    assert_eq!(v.word(), "refused");
    // The probes closed their connections: the proxy holds none.
    let deadline = Instant::now() + Duration::from_secs(2);
    while net.dataplane().lock().unwrap().proxy_connections() > 0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(net.dataplane().lock().unwrap().proxy_connections(), 0);
    net.cleanup().unwrap();
}

#[test]
fn a_dropped_backend_connection_resets_the_client_at_the_proxys_connect_timeout() {
    if !capable() {
        return;
    }
    assert!(
        PROXY_CONNECT_TIMEOUT < PROBE_TIMEOUT,
        "the proxy must give up before the prober does, or a reset is seen as silence"
    );
    let (mut km, dp) = ingress_km();
    let net = up(dp);
    // Only app=client may reach the web pods: the proxy's SYN is dropped at the backend.
    km.network_policy_ingress(
        "default",
        "web-closed",
        &[("app", "web")],
        &[("app", "client")],
        Some(80),
    );
    net.dataplane()
        .lock()
        .unwrap()
        .replace_snapshot(km.snapshot());
    let client = EndpointRef::External("client".into());
    let m = model(&net, &client, 80);
    assert!(
        matches!(&m, Verdict::Refused { by } if by.contains("timed out")),
        "{m:?}"
    );
    let t = Instant::now();
    let v = net
        .probe(&client, FIP, Protocol::Tcp, 80, PROBE_TIMEOUT)
        .unwrap();
    let took = t.elapsed();
    assert_eq!(v.word(), "refused", "{v:?}\n{:#?}", net.counters());
    assert!(
        took >= PROXY_CONNECT_TIMEOUT - Duration::from_millis(50),
        "reset after {took:?}, before the connect timeout"
    );
    assert_eq!(net.dataplane().lock().unwrap().proxy_connections(), 0);
    net.cleanup().unwrap();
}
