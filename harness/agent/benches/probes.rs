//! Probes per second on loopback through real kernel sockets: TCP connect + greeting read,
//! UDP request + greeting reply, in batches as the runner sends them.
//!
//! `cargo bench -p harness-agent` (add `-- --quick` for a short smoke run).

use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use harness_agent::{
    ProbeRequest, ProbeResultKind, ServeOptions, ServedPort, ServedProtocol, probe_batch,
    serve_with,
};
use harness_scenario::Protocol;

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let window = if quick {
        Duration::from_millis(300)
    } else {
        Duration::from_secs(3)
    };
    let tcp = ServedPort::new(ServedProtocol::Tcp, 0);
    let udp = ServedPort::new(ServedProtocol::Udp, 0);
    let server = match serve_with(
        &[tcp, udp],
        &"bench/backend".parse().expect("a valid identity"),
        &ServeOptions {
            address: Ipv4Addr::LOCALHOST,
            http: false,
        },
    ) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("cannot serve on loopback: {e}");
            std::process::exit(3);
        }
    };
    let port = |p| server.local_addr(p).map_or(0, |a| a.port());
    println!("harness-agent probes on loopback (serving agent in the same process, 2 threads)");
    for (name, protocol, port) in [
        ("TCP connect + greeting", Protocol::Tcp, port(tcp)),
        ("UDP request + greeting", Protocol::Udp, port(udp)),
    ] {
        for batch_size in [1usize, 100, 500] {
            let batch: Vec<ProbeRequest> = (0..batch_size)
                .map(|_| {
                    ProbeRequest::new(Ipv4Addr::LOCALHOST, protocol, port).with_timeout_ms(2000)
                })
                .collect();
            // Warm up (runtime, caches, the server's task pool).
            probe_batch(&batch);
            let started = Instant::now();
            let mut probes = 0usize;
            let mut failures = 0usize;
            while started.elapsed() < window {
                let results = probe_batch(&batch);
                probes += results.len();
                failures += results
                    .iter()
                    .filter(|r| r.result != ProbeResultKind::Connected || r.backend.is_none())
                    .count();
            }
            let secs = started.elapsed().as_secs_f64();
            println!(
                "  {name:<24} batch {batch_size:>4}: {:>8.0} probes/s ({probes} probes in {secs:.2} s, {failures} not connected)",
                probes as f64 / secs
            );
        }
    }
    server.shutdown();
}
