//! Everything a run creates goes away: on cleanup, on drop, on panic, from a Ctrl-C handler's
//! thread; leftovers of a killed run are swept by the next one (only when their owner is
//! dead); a missing capability is an error that names it.

use std::net::Ipv4Addr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use harness_netns::run::{RunRecord, new_run_id};
use harness_netns::{NetnsDataplane, NetnsError, NetnsOptions, ip, sweep_leftovers};
use harness_scenario::Protocol;
use harness_vrouter_sim::config::Snapshot;
use harness_vrouter_sim::{Dataplane, EndpointRef, HostSpec, NodeSpec, ServedPort, Topology};

fn capable() -> bool {
    match harness_netns::check_capabilities() {
        Ok(()) => true,
        Err(e) => {
            eprintln!("skipping: {e}");
            false
        }
    }
}

/// A node and a fabric host, no Contrail objects: the smallest real topology.
fn small() -> Arc<Mutex<Dataplane>> {
    let topology = Topology {
        nodes: vec![NodeSpec {
            name: "n1".into(),
            vhost: Ipv4Addr::new(192, 168, 0, 11),
            ports: vec![ServedPort::tcp(10250)],
        }],
        fabric_hosts: vec![HostSpec {
            name: "h".into(),
            ip: Ipv4Addr::new(192, 168, 0, 50),
            ports: vec![ServedPort::tcp(443)],
        }],
        ..Topology::default()
    };
    Arc::new(Mutex::new(Dataplane::from_config(
        Snapshot::new(),
        topology,
    )))
}

fn mine(run_id: &str) -> Vec<String> {
    let prefix = format!("h{run_id}-");
    ip::list_netns()
        .into_iter()
        .filter(|n| n.starts_with(&prefix))
        .collect()
}

#[test]
fn a_fabric_host_reaches_a_node_and_everything_is_gone_after_cleanup() {
    if !capable() {
        return;
    }
    let net = NetnsDataplane::up(small(), &NetnsOptions::default()).unwrap();
    let id = net.run_id().to_owned();
    assert_eq!(mine(&id).len(), 3, "underlay, node, host: {:?}", mine(&id));
    let h = EndpointRef::FabricHost("h".into());
    let node = Ipv4Addr::new(192, 168, 0, 11);
    let t = Duration::from_millis(500);
    // Plain IP to the vhost: the vrouter hands it to the node's kernel (its ARP too).
    assert_eq!(
        net.probe(&h, node, Protocol::Tcp, 10250, t).unwrap().word(),
        "connected"
    );
    assert_eq!(
        net.probe(&h, node, Protocol::Tcp, 10251, t).unwrap().word(),
        "refused"
    );
    assert!(RunRecord::read(&id).is_some());
    let handle = net.cleanup_handle();
    // What a Ctrl-C handler does, from another thread.
    std::thread::spawn(move || handle.cleanup().unwrap())
        .join()
        .unwrap();
    assert!(mine(&id).is_empty(), "{:?}", mine(&id));
    assert!(RunRecord::read(&id).is_none());
    assert!(matches!(
        net.probe(&h, node, Protocol::Tcp, 10250, t),
        Err(NetnsError::Stopped)
    ));
    net.cleanup().unwrap(); // idempotent
}

#[test]
fn a_panic_while_the_run_is_up_still_removes_it() {
    if !capable() {
        return;
    }
    let id = new_run_id();
    let id2 = id.clone();
    let r = std::panic::catch_unwind(move || {
        let _net = NetnsDataplane::up(
            small(),
            &NetnsOptions {
                run_id: Some(id2),
                ..NetnsOptions::default()
            },
        )
        .unwrap();
        panic!("a check blew up");
    });
    assert!(r.is_err());
    assert!(mine(&id).is_empty(), "{:?}", mine(&id));
}

#[test]
fn leftovers_of_a_dead_run_are_swept_and_a_live_run_is_left_alone() {
    if !capable() {
        return;
    }
    // A "killed run": its record names a process that has exited.
    let mut child = std::process::Command::new("true").spawn().unwrap();
    let dead_pid = child.id();
    child.wait().unwrap();
    let dead = new_run_id();
    let dead_ns = vec![format!("h{dead}-u"), format!("h{dead}-n1")];
    RunRecord {
        run_id: dead.clone(),
        pid: dead_pid,
        start_ticks: 1,
        namespaces: dead_ns.clone(),
    }
    .write()
    .unwrap();
    // A live one: this process.
    let live = new_run_id();
    let live_ns = vec![format!("h{live}-u")];
    RunRecord::mine(&live, live_ns.clone()).write().unwrap();
    let lines: Vec<String> = dead_ns
        .iter()
        .chain(&live_ns)
        .map(|n| format!("netns add {n}"))
        .collect();
    ip::batch(None, &lines).unwrap();
    let report = sweep_leftovers().unwrap();
    let left_dead = mine(&dead);
    let left_live = mine(&live);
    // Clean up the live one by hand before asserting (never leave namespaces behind).
    ip::delete_netns(&live_ns).unwrap();
    RunRecord::remove(&live);
    assert!(left_dead.is_empty(), "{left_dead:?}");
    // (A concurrent test's `up` may have swept it first: the namespaces being gone is what counts.)
    let _ = report;
    assert_eq!(left_live, live_ns);
    assert!(RunRecord::read(&dead).is_none());
}

#[test]
fn missing_capability_is_an_error_naming_it() {
    if !capable() {
        return;
    }
    if std::process::Command::new("setpriv")
        .arg("--version")
        .output()
        .is_err()
    {
        eprintln!("skipping: setpriv (util-linux) is not installed");
        return;
    }
    let exe = std::env::current_exe().unwrap();
    let out = std::process::Command::new("setpriv")
        .arg("--bounding-set=-net_admin")
        .arg(exe)
        .args([
            "--exact",
            "without_net_admin",
            "--include-ignored",
            "--nocapture",
        ])
        .output()
        .unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{text}");
    assert!(text.contains("missing capability CAP_NET_ADMIN"), "{text}");
}

#[test]
#[ignore = "run by missing_capability_is_an_error_naming_it in a process without CAP_NET_ADMIN"]
fn without_net_admin() {
    let e = NetnsDataplane::up(small(), &NetnsOptions::default()).unwrap_err();
    assert!(
        matches!(e, NetnsError::MissingCapability("CAP_NET_ADMIN")),
        "{e}"
    );
    println!("{e}");
}
