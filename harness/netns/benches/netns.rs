//! Benchmark of the netns dataplane (`cargo bench -p harness-netns`), all in one run:
//!
//! 1. probes/s through the user-space vrouters: TCP probes by the probe agent from pod a
//!    (node-a) to pod c's agent (node-b), MPLS-over-UDP across the underlay, many in flight
//!    at once; each is a whole exchange (handshake, greeting read: who answered, close);
//! 2. the naive way, side by side: one `ip netns exec <pod> bash -c 'exec 3<>/dev/tcp/IP/PORT'`
//!    process per probe; the ratio;
//! 3. bulk TCP throughput pod a → pod c through the user-space vrouters versus plain kernel
//!    veth routing between two namespaces (through a router namespace, default offloads).
//!
//! Needs CAP_NET_ADMIN (prints why and exits 0 otherwise). Environment: `NETNS_BENCH_PROBES`
//! (default 20000), `NETNS_BENCH_NAIVE` (default 200), `NETNS_BENCH_SECS` (bulk seconds,
//! default 2).

#[path = "../../vrouter-sim/tests/common/mod.rs"]
#[allow(unused_imports)]
mod common;

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddrV4, TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{Km, Options};
use harness_netns::run::{RunRecord, new_run_id};
use harness_netns::{NetVerdict, NetnsDataplane, NetnsOptions, ProbeSpec, ip, sys};
use harness_scenario::Protocol;
use harness_vrouter_sim::{Dataplane, EndpointRef, ServedPort};

fn env(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

const BULK_PORT: u16 = 5001;

/// Whether pod c's agent answered (the greeting was read back, not just a handshake).
fn answered_by_c(v: &NetVerdict) -> bool {
    matches!(v, NetVerdict::Connected { backend: Some(b), .. } if b == "default/c")
}

/// Bulk transfer from namespace `from` to `to_ip` in namespace `to` for `secs`: MB/s received.
fn bulk(from: &str, to: &str, to_ip: Ipv4Addr, secs: u64) -> f64 {
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let sink = sys::spawn_in(to, "bulk sink".into(), move || {
        let l = TcpListener::bind(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, BULK_PORT)).unwrap();
        ready_tx.send(()).unwrap();
        let (mut s, _) = l.accept().unwrap();
        let mut buf = vec![0u8; 1 << 16];
        let mut total = 0u64;
        let start = Instant::now();
        loop {
            match s.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => total += n as u64,
            }
        }
        (total, start.elapsed())
    })
    .unwrap();
    ready_rx.recv().unwrap();
    let src = sys::spawn_in(from, "bulk source".into(), move || {
        let mut s = TcpStream::connect_timeout(
            &SocketAddrV4::new(to_ip, BULK_PORT).into(),
            Duration::from_secs(2),
        )
        .unwrap();
        let buf = vec![0x5au8; 1 << 16];
        let end = Instant::now() + Duration::from_secs(secs);
        while Instant::now() < end {
            if s.write_all(&buf).is_err() {
                break;
            }
        }
    })
    .unwrap();
    src.join().unwrap().unwrap();
    let (total, elapsed) = sink.join().unwrap().unwrap();
    total as f64 / 1e6 / elapsed.as_secs_f64()
}

/// Two namespaces routed by the kernel through a third (veth pairs, default offloads).
struct KernelPair {
    run_id: String,
    names: Vec<String>,
}

impl KernelPair {
    fn up() -> KernelPair {
        let run_id = new_run_id();
        let n = |r: &str| format!("h{run_id}-{r}");
        let names = vec![n("ka"), n("kr"), n("kb")];
        RunRecord::mine(&run_id, names.clone()).write().unwrap();
        let me = KernelPair { run_id, names };
        let (a, r, b) = (&me.names[0], &me.names[1], &me.names[2]);
        let lines: Vec<String> = me.names.iter().map(|x| format!("netns add {x}")).collect();
        ip::batch(None, &lines).unwrap();
        ip::batch(
            None,
            &[
                format!("link add name eth0 netns {a} type veth peer name ra netns {r}"),
                format!("link add name eth0 netns {b} type veth peer name rb netns {r}"),
            ],
        )
        .unwrap();
        ip::batch(
            Some(a),
            &[
                "link set lo up".into(),
                "addr add 10.201.1.2/24 dev eth0".into(),
                "link set eth0 up".into(),
                "route add default via 10.201.1.1".into(),
            ],
        )
        .unwrap();
        ip::batch(
            Some(b),
            &[
                "link set lo up".into(),
                "addr add 10.201.2.2/24 dev eth0".into(),
                "link set eth0 up".into(),
                "route add default via 10.201.2.1".into(),
            ],
        )
        .unwrap();
        ip::batch(
            Some(r),
            &[
                "addr add 10.201.1.1/24 dev ra".into(),
                "addr add 10.201.2.1/24 dev rb".into(),
                "link set ra up".into(),
                "link set rb up".into(),
            ],
        )
        .unwrap();
        sys::in_netns(r, || std::fs::write("/proc/sys/net/ipv4/ip_forward", "1"))
            .unwrap()
            .unwrap();
        me
    }
}

impl Drop for KernelPair {
    fn drop(&mut self) {
        let _ = ip::delete_netns(&self.names);
        RunRecord::remove(&self.run_id);
    }
}

fn main() {
    if let Err(e) = harness_netns::check_capabilities() {
        println!("netns benchmark skipped: {e}");
        return;
    }
    let probes = env("NETNS_BENCH_PROBES", 20_000) as usize;
    let naive_n = env("NETNS_BENCH_NAIVE", 200) as usize;
    let secs = env("NETNS_BENCH_SECS", 2);

    let mut km = Km::new(Options::default());
    km.node("node-a", Ipv4Addr::new(192, 168, 0, 11));
    km.node("node-b", Ipv4Addr::new(192, 168, 0, 12));
    km.pod_on(
        "default",
        "a",
        "node-a",
        &[("pod", "a")],
        None,
        vec![ServedPort::tcp(80)],
    );
    km.pod_on(
        "default",
        "c",
        "node-b",
        &[("pod", "c")],
        None,
        vec![ServedPort::tcp(80)],
    );
    let dp = Dataplane::from_config(km.snapshot(), km.topology.clone());
    let c_ip = dp.endpoint_addresses("default/c")[0];
    let t0 = Instant::now();
    let net = NetnsDataplane::up(Arc::new(Mutex::new(dp)), &NetnsOptions::default()).unwrap();
    let setup = t0.elapsed();
    println!(
        "netns dataplane up: {} namespaces in {:.0} ms (run {})",
        net.namespaces().len(),
        setup.as_secs_f64() * 1e3,
        net.run_id()
    );
    let from = EndpointRef::Pod("default/a".into());
    let spec = ProbeSpec {
        to: c_ip,
        protocol: Protocol::Tcp,
        port: 80,
        timeout: Duration::from_secs(2),
    };
    // Warm up (ARP, flows of the first source ports).
    let _ = net.probe_batch(&from, vec![spec; 200], 64).unwrap();

    for concurrency in [32usize, 128] {
        let t = Instant::now();
        let v = net
            .probe_batch(&from, vec![spec; probes], concurrency)
            .unwrap();
        let el = t.elapsed().as_secs_f64();
        let ok = v.iter().filter(|x| answered_by_c(x)).count();
        println!(
            "user-space vrouters, agent TCP probe pod a (node-a) -> pod c (node-b) over MPLSoUDP, {concurrency} in flight: {probes} probes in {el:.2} s = {:.0} probes/s ({ok} answered by default/c)",
            probes as f64 / el
        );
    }
    let t = Instant::now();
    let v = net.probe_batch(&from, vec![spec; probes], 128).unwrap();
    let fast = probes as f64 / t.elapsed().as_secs_f64();
    assert!(
        v.iter().all(answered_by_c),
        "{:?}",
        v.iter().find(|x| !answered_by_c(x))
    );

    // The naive way: one process per probe.
    let ns = net.namespace_of(&from).unwrap().to_owned();
    let t = Instant::now();
    let mut ok = 0;
    for _ in 0..naive_n {
        let st = std::process::Command::new("ip")
            .args(["netns", "exec", &ns, "bash", "-c"])
            .arg(format!("exec 3<>/dev/tcp/{c_ip}/80"))
            .status()
            .unwrap();
        if st.success() {
            ok += 1;
        }
    }
    let naive = naive_n as f64 / t.elapsed().as_secs_f64();
    println!(
        "naive, one `ip netns exec {ns} bash -c 'exec 3<>/dev/tcp/{c_ip}/80'` per probe: {naive_n} probes = {naive:.0} probes/s ({ok} connected)"
    );
    println!("ratio batch / naive: {:.0}x", fast / naive);

    // Throughput through the user-space vrouters.
    let pod_a = net.namespace_of(&from).unwrap().to_owned();
    let pod_c = net
        .namespace_of(&EndpointRef::Pod("default/c".into()))
        .unwrap()
        .to_owned();
    let through = bulk(&pod_a, &pod_c, c_ip, secs);
    println!(
        "bulk TCP pod a -> pod c through the user-space vrouters (MPLSoUDP, MTU 1500): {through:.0} MB/s"
    );
    let counters = net.counters();
    drop(net);
    let kp = KernelPair::up();
    let kernel = bulk(
        &kp.names[0],
        &kp.names[2],
        Ipv4Addr::new(10, 201, 2, 2),
        secs,
    );
    drop(kp);
    println!(
        "bulk TCP between two namespaces routed by the kernel (veth, default offloads): {kernel:.0} MB/s"
    );
    println!("kernel / user-space vrouter: {:.1}x", kernel / through);
    for (n, c) in counters {
        println!(
            "  {n}: rx {} tx {} dropped {} send errors {} checksums completed {} frames per batch {:.1} ring drops {} TCP super-frames read {} segments coalesced {}",
            c.rx,
            c.tx,
            c.dropped,
            c.send_errors,
            c.checksums_completed,
            c.rx as f64 / c.batches.max(1) as f64,
            c.ring_drops,
            c.super_frames,
            c.coalesced
        );
        for (at, why) in c.recent_drops.iter().rev().take(3) {
            println!("    dropped at {at}: {why}");
        }
    }
}
