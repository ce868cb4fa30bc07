//! Probe throughput and memory of the model dataplane.
//!
//! - probes/s on one core: 9 pods on 3 nodes, 20 NetworkPolicies (verdict only; then with
//!   hops; then with hops and frames);
//! - cost per probe with 10 and with 1,000 NetworkPolicies (the firewall index keeps it flat);
//! - resident memory with 1,000 pods on 10 nodes (`/proc/self/statm`).
//!
//! Rates are probes per second of this thread's CPU time (one core), so other load on the
//! machine does not distort them.
//!
//! `cargo bench -p harness-vrouter-sim --bench probes`

#[path = "../tests/common/mod.rs"]
mod common;

use std::hint::black_box;
use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use common::{Km, Options};
use harness_scenario::Protocol;
use harness_vrouter_sim::{Dataplane, EndpointRef, ProbeOptions, Verdict};

/// Counts allocations, to report allocations per probe.
struct Counting;

static ALLOCS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
static BIG: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

// SAFETY: forwards to the system allocator unchanged; only counts.
unsafe impl std::alloc::GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: std::alloc::Layout) -> *mut u8 {
        ALLOCS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        if layout.size() >= 1024 {
            BIG.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
        // SAFETY: same layout contract as the caller's.
        unsafe { std::alloc::System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: std::alloc::Layout) {
        // SAFETY: `ptr` came from `alloc` with this layout.
        unsafe { std::alloc::System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: std::alloc::Layout, new_size: usize) -> *mut u8 {
        ALLOCS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        if new_size >= 1024 {
            BIG.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
        // SAFETY: forwarded unchanged.
        unsafe { std::alloc::System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// CPU time of this thread in nanoseconds (`/proc/thread-self/schedstat`), so a busy machine
/// does not count other processes' time against the probes.
fn thread_cpu_ns() -> Option<u64> {
    std::fs::read_to_string("/proc/thread-self/schedstat")
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

fn rss_mb() -> f64 {
    std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| {
            s.split_whitespace()
                .nth(1)
                .and_then(|v| v.parse::<f64>().ok())
        })
        .map(|pages| pages * 4096.0 / 1_048_576.0)
        .unwrap_or(f64::NAN)
}

/// `pods` pods spread over `nodes` nodes in the default namespace, labelled `pod=p<i>` and
/// `app=a<i % 3>`, and `policies` NetworkPolicies: policy k selects `app=a<k % 3>` pods when
/// k < 3 (allowing TCP/80 from `app=a<(k+1) % 3>`), the others select labels nobody has.
fn cluster(nodes: usize, pods: usize, policies: usize) -> (Km, Dataplane, Vec<(String, Ipv4Addr)>) {
    let mut km = Km::new(Options::default());
    for n in 0..nodes {
        km.node(
            &format!("node-{n}"),
            Ipv4Addr::new(192, 168, 1, 10 + n as u8),
        );
    }
    for p in 0..pods {
        let app = format!("a{}", p % 3);
        km.pod(
            "default",
            &format!("p{p}"),
            &format!("node-{}", p % nodes),
            &[("pod", &format!("p{p}")), ("app", &app)],
        );
    }
    km.batch = true;
    for k in 0..policies {
        if k < 3 {
            let sel = format!("a{k}");
            let from = format!("a{}", (k + 1) % 3);
            km.network_policy_ingress(
                "default",
                &format!("np{k}"),
                &[("app", &sel)],
                &[("app", &from)],
                Some(80),
            );
        } else {
            let sel = format!("x{k}");
            let from = format!("y{k}");
            km.network_policy_ingress(
                "default",
                &format!("np{k}"),
                &[("app", &sel)],
                &[("app", &from)],
                Some(80),
            );
        }
    }
    km.flush_policies();
    let dp = Dataplane::from_config(km.snapshot(), km.topology.clone());
    let targets = (0..pods)
        .map(|p| {
            let name = format!("default/p{p}");
            let ip = dp.endpoint_addresses(&name)[0];
            (name, ip)
        })
        .collect();
    (km, dp, targets)
}

/// Every ordered pair of distinct pods.
fn all_pairs(targets: &[(String, Ipv4Addr)]) -> Vec<(EndpointRef, Ipv4Addr)> {
    let mut v = Vec::new();
    for (i, (from, _)) in targets.iter().enumerate() {
        for (j, (_, to)) in targets.iter().enumerate() {
            if i != j {
                v.push((EndpointRef::Pod(from.clone()), *to));
            }
        }
    }
    v
}

/// The pairs whose probe connects.
fn connected_pairs(
    dp: &mut Dataplane,
    pairs: &[(EndpointRef, Ipv4Addr)],
) -> Vec<(EndpointRef, Ipv4Addr)> {
    pairs
        .iter()
        .filter(|(f, t)| {
            matches!(
                dp.probe(f, *t, Protocol::Tcp, 80).map(|o| o.verdict),
                Ok(Verdict::Connected { .. })
            )
        })
        .cloned()
        .collect()
}

fn measure(
    dp: &mut Dataplane,
    pairs: &[(EndpointRef, Ipv4Addr)],
    opts: &ProbeOptions,
    budget: Duration,
) -> (f64, [usize; 3]) {
    let mut counts = [0usize; 3];
    let mut n = 0usize;
    let cpu_start = thread_cpu_ns();
    let start = Instant::now();
    while start.elapsed() < budget {
        for _ in 0..1000 {
            let (from, to) = &pairs[n % pairs.len()];
            let o = dp
                .probe_with(from, *to, Protocol::Tcp, 80, opts)
                .expect("probe");
            counts[match o.verdict {
                Verdict::Connected { .. } => 0,
                Verdict::Dropped { .. } => 1,
                _ => 2,
            }] += 1;
            black_box(&o);
            n += 1;
        }
    }
    let secs = match (cpu_start, thread_cpu_ns()) {
        (Some(a), Some(b)) if b > a => (b - a) as f64 / 1e9,
        _ => start.elapsed().as_secs_f64(),
    };
    (n as f64 / secs, counts)
}

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let budget = Duration::from_millis(if quick { 200 } else { 2000 });
    let bare = ProbeOptions {
        trace: false,
        capture: false,
        ttl: 64,
    };
    let traced = ProbeOptions {
        trace: true,
        capture: false,
        ttl: 64,
    };
    let full = ProbeOptions::default();

    // Memory first, in a fresh process.
    let before = rss_mb();
    let t = Instant::now();
    let mut km = Km::new(Options::default());
    km.batch = true;
    for n in 0..10 {
        km.node(
            &format!("node-{n}"),
            Ipv4Addr::new(192, 168, 1, 10 + n as u8),
        );
    }
    for p in 0..1000 {
        let app = format!("a{}", p % 3);
        km.pod(
            "default",
            &format!("p{p}"),
            &format!("node-{}", p % 10),
            &[("pod", &format!("p{p}")), ("app", &app)],
        );
    }
    for k in 0..20 {
        let sel = format!("a{}", k % 3);
        km.network_policy_ingress(
            "default",
            &format!("np{k}"),
            &[("app", &sel)],
            &[("app", "a0")],
            Some(80),
        );
    }
    km.flush_policies();
    let snapshot = km.snapshot();
    let with_config = rss_mb();
    let mut dp = Dataplane::from_config(snapshot, km.topology.clone());
    let built = t.elapsed();
    let targets: Vec<(String, Ipv4Addr)> = (0..1000)
        .map(|p| {
            let name = format!("default/p{p}");
            let ip = dp.endpoint_addresses(&name)[0];
            (name, ip)
        })
        .collect();
    let pairs: Vec<(EndpointRef, Ipv4Addr)> = (0..5000)
        .map(|i| {
            (
                EndpointRef::Pod(targets[i % 1000].0.clone()),
                targets[(i * 7 + 1) % 1000].1,
            )
        })
        .collect();
    let (rate, counts) = measure(&mut dp, &pairs, &bare, budget);
    let after = rss_mb();
    println!(
        "1000 pods / 10 nodes / 20 policies: process RSS {after:.0} MB (start {before:.0} MB; with the config db and snapshot {with_config:.0} MB; dataplane + flows {:.0} MB); built in {built:?}; {rate:.0} probes/s (connected {}, dropped {})",
        after - with_config,
        counts[0],
        counts[1]
    );
    black_box((&km.db, &dp));
    drop(dp);
    drop(km);

    let (_km, mut dp, targets) = cluster(3, 9, 20);
    let pairs = all_pairs(&targets);
    let ok = connected_pairs(&mut dp, &pairs);
    for (label, set) in [("all pairs", &pairs), ("connected pairs only", &ok)] {
        let (rate, counts) = measure(&mut dp, set, &bare, budget);
        println!(
            "probes/s, 9 pods / 3 nodes / 20 policies, {label}, verdict only: {rate:.0} (connected {}, dropped {})",
            counts[0], counts[1]
        );
    }
    let a0 = ALLOCS.load(std::sync::atomic::Ordering::Relaxed);
    let b0 = BIG.load(std::sync::atomic::Ordering::Relaxed);
    for (f, t) in ok.iter().cycle().take(10_000) {
        black_box(
            dp.probe_with(f, *t, Protocol::Tcp, 80, &bare)
                .expect("probe"),
        );
    }
    println!(
        "allocations per connected probe (verdict only): {:.1} ({:.2} of 1 KiB or more)",
        (ALLOCS.load(std::sync::atomic::Ordering::Relaxed) - a0) as f64 / 10_000.0,
        (BIG.load(std::sync::atomic::Ordering::Relaxed) - b0) as f64 / 10_000.0
    );
    let (rate, _) = measure(&mut dp, &ok, &traced, budget);
    println!("probes/s, connected pairs, with hops: {rate:.0}");
    let (rate, _) = measure(&mut dp, &ok, &full, budget);
    println!("probes/s, connected pairs, with hops and frames: {rate:.0}");

    let mut per = Vec::new();
    for policies in [10usize, 1000] {
        let t = Instant::now();
        let (_km, mut dp, targets) = cluster(3, 9, policies);
        let build = t.elapsed();
        let pairs = all_pairs(&targets);
        let (rate, counts) = measure(&mut dp, &pairs, &bare, budget);
        let ns = 1e9 / rate;
        println!(
            "{policies} policies ({} firewall rules): {ns:.0} ns/probe (connected {}, dropped {}); cluster built in {build:?}",
            dp.control().firewall.rule_count(),
            counts[0],
            counts[1]
        );
        per.push(ns);
    }
    println!(
        "cost per probe, 1000 vs 10 policies: {:.2}x",
        per[1] / per[0]
    );
}
