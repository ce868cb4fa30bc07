//! VNC GET latency over loopback: 1,000 virtual networks, 10,000 `GET /virtual-network/<uuid>`
//! (full read with refs, back-refs and children) through the harness client with keep-alive,
//! one request at a time. Prints p50/p90/p99/max. Target: p99 < 1 ms.
//!
//! Run: `cargo bench -p harness-contrail-mock --bench vnc_get`

use std::time::{Duration, Instant};

use harness_contrail_mock::{ConfigDb, ServerConfig, serve};
use harness_contrail_vnc::{Auth, Ref, VncClient, VncObject};
use http::Method;

const OBJECTS: usize = 1_000;
const GETS: usize = 10_000;
const WARMUP: usize = 1_000;

fn pct(sorted: &[Duration], p: f64) -> Duration {
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[idx.min(sorted.len() - 1)]
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let db = ConfigDb::new();
        let fq = |parts: &[&str]| parts.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
        db.create(&VncObject::new("project", fq(&["default-domain", "bench"])))
            .expect("project");
        let ipam = db
            .create(
                &VncObject::new("network-ipam", fq(&["default-domain", "bench", "ipam"]))
                    .with_prop("ipam_subnet_method", "flat-subnet"),
            )
            .expect("ipam");
        let mut ids = Vec::with_capacity(OBJECTS);
        for i in 0..OBJECTS {
            let vn = VncObject::new("virtual-network", fq(&["default-domain", "bench", &format!("vn-{i}")]))
                .with_prop("virtual_network_properties", serde_json::json!({"forwarding_mode": "l3"}))
                .with_prop("address_allocation_mode", "flat-subnet-only")
                .with_ref(
                    "network_ipam_refs",
                    Ref::new(ipam.fq_name.clone(), &ipam.uuid)
                        .with_attr(serde_json::json!({"ipam_subnets": []})),
                );
            ids.push(db.create(&vn).expect("vn").uuid);
        }
        let server = serve("127.0.0.1:0".parse().expect("addr"), db, ServerConfig::default())
            .await
            .expect("serve");
        let client = VncClient::new(&server.url(), Auth::None).expect("client");
        let paths: Vec<String> = ids.iter().map(|id| format!("/virtual-network/{id}")).collect();
        for p in paths.iter().cycle().take(WARMUP) {
            let (code, _) = client.raw(Method::GET, p, None).await.expect("get");
            assert_eq!(code, 200);
        }
        let mut lat = Vec::with_capacity(GETS);
        let mut bytes = 0usize;
        let start = Instant::now();
        for i in 0..GETS {
            // Spread over all objects in a scrambled order.
            let p = &paths[(i * 7919) % OBJECTS];
            let t = Instant::now();
            let (code, body) = client.raw(Method::GET, p, None).await.expect("get");
            lat.push(t.elapsed());
            assert_eq!(code, 200);
            bytes += body.len();
        }
        let total = start.elapsed();
        lat.sort();
        println!("vnc_get: {OBJECTS} virtual-networks, {GETS} sequential GET /virtual-network/<uuid> over loopback (keep-alive)");
        println!(
            "  p50 {:?}  p90 {:?}  p99 {:?}  max {:?}  mean {:?}  throughput {:.0} req/s  avg body {} B",
            pct(&lat, 0.50),
            pct(&lat, 0.90),
            pct(&lat, 0.99),
            lat[lat.len() - 1],
            total / GETS as u32,
            GETS as f64 / total.as_secs_f64(),
            bytes / GETS
        );
        let p99 = pct(&lat, 0.99);
        println!(
            "  target p99 < 1 ms: {}",
            if p99 < Duration::from_millis(1) { "met" } else { "NOT met" }
        );
        server.shutdown().await.expect("shutdown");
    });
}
