//! A service chain through a real namespace: the instance's kernel forwards what the vrouters
//! steer into it (left ↔ right by policy routing) and its function's drops are nftables rules.
//! Configuration built the way contrail-kube-manager and an operator build it (vrouter-sim's
//! own fixtures). Needs CAP_NET_ADMIN/NET_RAW/SYS_ADMIN and the `nft` binary: without them
//! each test says why and returns.

#[path = "../../vrouter-sim/tests/common/mod.rs"]
mod common;

use std::net::Ipv4Addr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{Km, Options};
use harness_netns::{NetVerdict, NetnsDataplane, NetnsOptions, ServiceCounters};
use harness_scenario::{PortSpec, Protocol, ServiceFunction};
use harness_vrouter_sim::wire::{encap, frame};
use harness_vrouter_sim::{Dataplane, EndpointRef, EndpointSpec, ProbeOptions, ServedPort};

const SI: &str = "default/fw";
const NODE_B: Ipv4Addr = Ipv4Addr::new(192, 168, 0, 12);
const WAIT: Duration = Duration::from_millis(400);

fn runnable() -> bool {
    if let Err(e) = harness_netns::check_capabilities() {
        eprintln!("skipping: {e}");
        return false;
    }
    if std::process::Command::new("nft")
        .arg("--version")
        .output()
        .is_err()
    {
        eprintln!("skipping: the `nft` binary (Debian package nftables) is not installed");
        return false;
    }
    true
}

/// Three nodes; isolated namespaces `left` (pod l1 on node-a) and `right` (pod r1 on
/// node-c), both serving TCP 80 and 81; a chain left → right through instance `default/fw`
/// on node-b, whose function drops TCP/81.
fn fixture() -> Dataplane {
    let mut km = Km::new(Options::default());
    km.node("node-a", Ipv4Addr::new(192, 168, 0, 11));
    km.node("node-b", NODE_B);
    km.node("node-c", Ipv4Addr::new(192, 168, 0, 13));
    km.namespace("left", true);
    km.namespace("right", true);
    let ports = vec![ServedPort::tcp(80), ServedPort::tcp(81)];
    km.pod_on(
        "left",
        "l1",
        "node-a",
        &[("pod", "l1")],
        None,
        ports.clone(),
    );
    km.pod_on("right", "r1", "node-c", &[("pod", "r1")], None, ports);
    let left = km.pod_network("left");
    let right = km.pod_network("right");
    let l: Vec<&str> = left.iter().map(String::as_str).collect();
    let r: Vec<&str> = right.iter().map(String::as_str).collect();
    let (lvmi, rvmi) = km.service_chain("fw", &l, &r, "node-b");
    km.topology.endpoints.push(EndpointSpec {
        name: SI.into(),
        interfaces: vec![lvmi, rvmi],
        node: None,
        ports: vec![],
        function: Some(ServiceFunction {
            drop: vec![PortSpec::tcp(81)],
        }),
    });
    let dp = Dataplane::from_config(km.snapshot(), km.topology.clone());
    assert!(dp.warnings().is_empty(), "{:#?}", dp.warnings());
    dp
}

fn ip(net: &NetnsDataplane, pod: &str) -> Ipv4Addr {
    net.dataplane().lock().unwrap().endpoint_addresses(pod)[0]
}

fn model_word(net: &NetnsDataplane, from: &EndpointRef, to: Ipv4Addr, port: u16) -> &'static str {
    let o = net
        .dataplane()
        .lock()
        .unwrap()
        .probe_with(
            from,
            to,
            Protocol::Tcp,
            port,
            &ProbeOptions {
                trace: false,
                capture: false,
                ttl: 64,
            },
        )
        .expect("model probe");
    NetVerdict::model_word(&o.verdict)
}

/// Who answered a connected probe.
fn backend(v: &NetVerdict) -> Option<&str> {
    match v {
        NetVerdict::Connected { backend, .. } => backend.as_deref(),
        _ => None,
    }
}

fn counters(net: &NetnsDataplane) -> ServiceCounters {
    let all = net.service_counters().expect("nft counters");
    all.into_iter()
        .find(|(n, _)| n == SI)
        .map(|(_, c)| c)
        .expect("the instance's counters")
}

/// Whether the capture holds a tunnelled frame to (or from) `vhost`.
fn tunnelled_via(frames: &[harness_vrouter_sim::CapturedFrame], vhost: Ipv4Addr) -> (bool, bool) {
    let mut to = false;
    let mut from = false;
    for f in frames {
        let Ok(s) = frame::parse(&f.bytes) else {
            continue;
        };
        let frame::Payload::Ipv4(s) = s.payload else {
            continue;
        };
        if encap::classify(&s).is_some() {
            to |= s.tuple.dst == vhost;
            from |= s.tuple.src == vhost;
        }
    }
    (to, from)
}

#[test]
fn the_instance_namespace_forwards_the_chain_and_its_function_drops_for_real() {
    if !runnable() {
        return;
    }
    let net = NetnsDataplane::up(
        Arc::new(Mutex::new(fixture())),
        &NetnsOptions {
            capture: true,
            ..NetnsOptions::default()
        },
    )
    .expect("netns dataplane up");
    assert!(net.skipped().is_empty(), "{:?}", net.skipped());
    let si_ns = net.service_namespace(SI).expect("the instance is wired");
    assert!(
        si_ns.starts_with(&format!("h{}-s", net.run_id())),
        "{si_ns}"
    );
    let record = harness_netns::run::RunRecord::read(net.run_id()).unwrap();
    assert!(record.namespaces.contains(&si_ns), "{record:?}");

    let (l1, r1) = (ip(&net, "left/l1"), ip(&net, "right/r1"));
    let from_l1 = EndpointRef::Pod("left/l1".into());
    let from_r1 = EndpointRef::Pod("right/r1".into());

    // TCP/80 left -> right: steered to node-b, forwarded by the instance's kernel both ways.
    net.clear_capture();
    let before = counters(&net);
    let v = net.probe(&from_l1, r1, Protocol::Tcp, 80, WAIT).unwrap();
    assert_eq!(
        backend(&v),
        Some("right/r1"),
        "{v:?}\n{:#?}",
        net.counters()
    );
    assert_eq!(model_word(&net, &from_l1, r1, 80), "connected");
    let after = counters(&net);
    assert!(
        after.left_to_right > before.left_to_right && after.right_to_left > before.right_to_left,
        "the instance's kernel forwarded nothing: {before:?} -> {after:?}"
    );
    assert_eq!(after.dropped_total(), 0, "{after:?}");
    let (to_b, from_b) = tunnelled_via(&net.underlay_frames(), NODE_B);
    assert!(
        to_b && from_b,
        "the steering to the instance's node (and back) is not on the underlay"
    );

    // TCP/81 left -> right: the function drops it in the instance's forward hook.
    let v = net.probe(&from_l1, r1, Protocol::Tcp, 81, WAIT).unwrap();
    assert_eq!(v, NetVerdict::Timeout, "{v:?}");
    assert_eq!(model_word(&net, &from_l1, r1, 81), "timeout");
    let dropped = counters(&net);
    assert_eq!(dropped.dropped.len(), 1, "{dropped:?}");
    assert_eq!(dropped.dropped[0].0, "TCP/81");
    assert!(dropped.dropped[0].1 >= 1, "{dropped:?}");

    // The drop applies to what enters left only: right -> left TCP/81 passes, as in the model.
    let v = net.probe(&from_r1, l1, Protocol::Tcp, 81, WAIT).unwrap();
    assert_eq!(backend(&v), Some("left/l1"), "{v:?}");
    assert_eq!(model_word(&net, &from_r1, l1, 81), "connected");

    // It is the instance's kernel that forwards, not the vrouters: with its forwarding off
    // the chain goes silent while the model (which does not know) still connects.
    let off = |v: &'static str| {
        harness_netns::sys::in_netns(&si_ns, move || {
            std::fs::write("/proc/sys/net/ipv4/ip_forward", v)
        })
        .unwrap()
        .unwrap();
    };
    off("0");
    let v = net.probe(&from_l1, r1, Protocol::Tcp, 80, WAIT).unwrap();
    assert_eq!(
        v,
        NetVerdict::Timeout,
        "forwarded without the instance's kernel"
    );
    assert_eq!(model_word(&net, &from_l1, r1, 80), "connected");
    off("1");
    let v = net.probe(&from_l1, r1, Protocol::Tcp, 80, WAIT).unwrap();
    assert_eq!(backend(&v), Some("right/r1"), "{v:?}");

    // The instance leaves the model: its namespace and taps go, the record forgets it.
    assert!(net.dataplane().lock().unwrap().detach_endpoint(SI));
    let report = net.sync().unwrap();
    assert_eq!(report.unwired, vec![SI.to_owned()], "{report:?}");
    assert!(!harness_netns::ip::list_netns().contains(&si_ns));
    let record = harness_netns::run::RunRecord::read(net.run_id()).unwrap();
    assert!(!record.namespaces.contains(&si_ns), "{record:?}");
    assert!(net.service_counters().unwrap().is_empty());

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
fn a_service_instance_without_a_right_interface_is_skipped_with_the_reason() {
    if !runnable() {
        return;
    }
    let mut dp = fixture();
    // Keep only the left interface: the model cannot forward through it either.
    let mut spec = dp
        .topology()
        .endpoints
        .iter()
        .find(|e| e.name == SI)
        .cloned()
        .unwrap();
    spec.interfaces.truncate(1);
    dp.attach_endpoint(spec);
    let net = NetnsDataplane::up(Arc::new(Mutex::new(dp)), &NetnsOptions::default())
        .expect("netns dataplane up");
    let skipped = net.skipped();
    let why = skipped
        .iter()
        .find(|(e, _)| e == SI)
        .map(|(_, w)| w.as_str())
        .unwrap_or_else(|| panic!("not skipped: {skipped:?}"));
    assert!(why.contains("right interface"), "{why}");
    assert!(net.service_namespace(SI).is_none());
    net.cleanup().unwrap();
}

/// The names of the links in namespace `ns`.
fn links(ns: &str) -> Vec<String> {
    let out = std::process::Command::new("ip")
        .args(["-n", ns, "-o", "link", "show"])
        .output()
        .expect("ip link show");
    assert!(out.status.success(), "{out:?}");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split(": ").nth(1))
        .map(|n| n.split('@').next().unwrap_or(n).to_owned())
        .collect()
}

#[test]
fn an_instance_whose_wiring_fails_is_skipped_and_probing_goes_on() {
    if !runnable() {
        return;
    }
    let mut dp = fixture();
    let spec = dp
        .topology()
        .endpoints
        .iter()
        .find(|e| e.name == SI)
        .cloned()
        .unwrap();
    assert!(dp.detach_endpoint(SI));
    let net = NetnsDataplane::up(Arc::new(Mutex::new(dp)), &NetnsOptions::default())
        .expect("netns dataplane up");
    let node_b = net
        .namespace_of(&EndpointRef::Node("node-b".into()))
        .unwrap();
    let bare = links(&node_b);
    let attach = |net: &NetnsDataplane| {
        net.dataplane()
            .lock()
            .unwrap()
            .attach_endpoint(spec.clone())
    };
    let detach =
        |net: &NetnsDataplane| assert!(net.dataplane().lock().unwrap().detach_endpoint(SI));

    // Wired once, to learn the tap names the instance takes on node-b; then taken away.
    attach(&net);
    assert_eq!(net.sync().unwrap().wired, vec![SI.to_owned()]);
    let taps: Vec<String> = links(&node_b)
        .into_iter()
        .filter(|l| !bare.contains(l))
        .collect();
    assert_eq!(taps.len(), 2, "{taps:?}");
    detach(&net);
    assert_eq!(net.sync().unwrap().unwired, vec![SI.to_owned()]);
    // Unwiring deletes the taps at once (a deleted namespace takes its veths along only
    // asynchronously, and a rewire of the same VMI would find the name taken).
    assert_eq!(links(&node_b), bare, "the instance's taps are gone");

    // Something else holds those names on node-b now (a veth pair: this kernel may have no
    // dummy links; uuid-derived names are the same on every attempt), so the instance's
    // veth pairs cannot be created there.
    let holders: Vec<String> = taps
        .iter()
        .enumerate()
        .map(|(i, t)| format!("link add {t} type veth peer name hold{i}"))
        .collect();
    harness_netns::ip::batch(Some(&node_b), &holders).unwrap();
    attach(&net);
    let report = net
        .sync()
        .expect("a failing service instance does not fail the sync");
    assert!(report.wired.is_empty(), "{report:?}");
    let [(who, why)] = report.failed.as_slice() else {
        panic!("{report:?}");
    };
    assert_eq!(who, SI);
    assert!(
        why.starts_with("wiring its namespace failed") && why.contains("File exists"),
        "{why}"
    );
    assert_eq!(net.skipped(), vec![(SI.to_owned(), why.clone())]);
    // Nothing of the attempt is left: no namespace, no record of one, no tap.
    assert!(net.service_namespace(SI).is_none());
    let instance_ns = format!("h{}-s", net.run_id());
    assert!(
        !harness_netns::ip::list_netns()
            .iter()
            .any(|n| n.starts_with(&instance_ns)),
        "{:?}",
        harness_netns::ip::list_netns()
    );
    let record = harness_netns::run::RunRecord::read(net.run_id()).unwrap();
    assert!(
        !record
            .namespaces
            .iter()
            .any(|n| n.starts_with(&instance_ns)),
        "{record:?}"
    );
    let mut now = links(&node_b);
    now.retain(|l| !bare.contains(l));
    now.sort();
    let mut held: Vec<String> = taps
        .iter()
        .cloned()
        .chain(["hold0".into(), "hold1".into()])
        .collect();
    held.sort();
    assert_eq!(now, held, "only the holders are new on node-b");

    // Probes still run (each syncs first and tries the instance again): the path through it
    // is what the runner skips, with the reason above.
    let (l1, r1) = (ip(&net, "left/l1"), ip(&net, "right/r1"));
    let from_l1 = EndpointRef::Pod("left/l1".into());
    net.probe(&from_l1, r1, Protocol::Tcp, 80, WAIT)
        .expect("probing goes on past a failed instance");
    net.probe(
        &EndpointRef::Pod("right/r1".into()),
        l1,
        Protocol::Tcp,
        80,
        WAIT,
    )
    .expect("probing goes on past a failed instance");
    assert_eq!(net.skipped().len(), 1, "{:?}", net.skipped());

    // The names are free again: the next sync wires the instance and the chain forwards.
    let gone: Vec<String> = taps.iter().map(|t| format!("link del {t}")).collect();
    harness_netns::ip::batch(Some(&node_b), &gone).unwrap();
    let report = net.sync().unwrap();
    assert_eq!(report.wired, vec![SI.to_owned()], "{report:?}");
    assert!(report.failed.is_empty() && net.skipped().is_empty());
    let v = net.probe(&from_l1, r1, Protocol::Tcp, 80, WAIT).unwrap();
    assert_eq!(backend(&v), Some("right/r1"), "{v:?}");
    assert!(counters(&net).left_to_right > 0);

    let id = net.run_id().to_owned();
    net.cleanup().unwrap();
    let prefix = format!("h{id}-");
    assert!(
        !harness_netns::ip::list_netns()
            .iter()
            .any(|n| n.starts_with(&prefix))
    );
}
