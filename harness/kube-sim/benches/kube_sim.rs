//! kube-sim benchmark (std::time, no harness): `cargo bench -p harness-kube-sim`.
//!
//! - memory held by 10,000 pods (RSS from /proc/self/statm before and after);
//! - 10,000 pod creates through the HTTP API (in process);
//! - watch fan-out: with 100 watchers, the latency from a write to its delivery to every watcher.
//!
//! Targets (issue #3): 10,000 creates < 1 s; fan-out p99 < 5 ms; 10,000 pods < 200 MB.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use futures_util::StreamExt;
use harness_kube_sim::{Config, KubeSim};
use http::Request;
use tower::ServiceExt;

const TOKEN: &str = "bench";

fn pod_body(i: usize) -> String {
    serde_json::json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": format!("pod-{i}"), "labels": {"app": format!("app-{}", i % 50), "tier": "bench"}},
        "spec": {"containers": [{"name": "agent", "image": "harness/agent:1.0", "ports": [{"containerPort": 8080, "name": "http"}]}]}
    })
    .to_string()
}

async fn post(router: &axum::Router, uri: &str, body: String) -> u16 {
    let req = Request::post(uri)
        .header("authorization", format!("Bearer {TOKEN}"))
        .header("content-type", "application/json")
        .body(Body::from(body))
        .expect("request");
    router
        .clone()
        .oneshot(req)
        .await
        .map(|r| r.status().as_u16())
        .unwrap_or(0)
}

fn rss_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|p| p.parse().ok())
        .unwrap_or(0);
    pages * 4096
}

async fn create_pods(sim: &KubeSim, n: usize) -> Duration {
    let router = sim.router();
    let bodies: Vec<String> = (0..n).map(pod_body).collect();
    let start = Instant::now();
    for b in bodies {
        let s = post(&router, "/api/v1/namespaces/default/pods", b).await;
        assert_eq!(s, 201, "create failed");
    }
    start.elapsed()
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[idx.min(sorted.len() - 1)]
}

async fn fan_out(watchers: usize, writes: usize) -> Vec<Duration> {
    let sim = KubeSim::new(Config::default().with_admin_token(TOKEN));
    let router = sim.router();
    let sent: Arc<std::sync::Mutex<Vec<Option<Instant>>>> =
        Arc::new(std::sync::Mutex::new(vec![None; writes]));
    let (lat_tx, mut lat_rx) = tokio::sync::mpsc::unbounded_channel::<Duration>();
    let ready = Arc::new(tokio::sync::Barrier::new(watchers + 1));
    for _ in 0..watchers {
        let router = router.clone();
        let sent = sent.clone();
        let lat_tx = lat_tx.clone();
        let ready = ready.clone();
        tokio::spawn(async move {
            let rv = "1";
            let req = Request::get(format!("/api/v1/namespaces/default/configmaps?watch=true&resourceVersion={rv}&timeoutSeconds=60"))
                .header("authorization", format!("Bearer {TOKEN}"))
                .body(Body::empty())
                .expect("request");
            let resp = router.oneshot(req).await.expect("watch");
            let mut stream = resp.into_body().into_data_stream();
            ready.wait().await;
            let mut buf = Vec::new();
            let mut seen = 0;
            while seen < writes {
                let Some(Ok(chunk)) = stream.next().await else {
                    break;
                };
                buf.extend_from_slice(&chunk);
                while let Some(pos) = buf.iter().position(|b| *b == b'\n') {
                    let line: Vec<u8> = buf.drain(..=pos).collect();
                    let now = Instant::now();
                    // Find the object name without a full parse, so the figure is the server's.
                    let text = String::from_utf8_lossy(&line);
                    let Some(i) = text
                        .find("\"name\":\"cm-")
                        .map(|p| &text[p + 11..])
                        .and_then(|rest| rest.split('"').next())
                        .and_then(|n| n.parse::<usize>().ok())
                    else {
                        continue;
                    };
                    let t0 = sent
                        .lock()
                        .map(|s| s.get(i).copied().flatten())
                        .ok()
                        .flatten();
                    if let Some(t0) = t0 {
                        let _ = lat_tx.send(now.saturating_duration_since(t0));
                    }
                    seen += 1;
                }
            }
        });
    }
    drop(lat_tx);
    ready.wait().await;
    for i in 0..writes {
        let body = serde_json::json!({"metadata": {"name": format!("cm-{i}")}, "data": {"i": i.to_string()}}).to_string();
        if let Ok(mut s) = sent.lock() {
            s[i] = Some(Instant::now());
        }
        let status = post(&router, "/api/v1/namespaces/default/configmaps", body).await;
        assert_eq!(status, 201);
        // Space the writes so each one's delivery is measured on its own.
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let mut out = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while out.len() < watchers * writes && Instant::now() < deadline {
        match tokio::time::timeout(Duration::from_secs(5), lat_rx.recv()).await {
            Ok(Some(d)) => out.push(d),
            _ => break,
        }
    }
    out
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        // Memory first, in a fresh process state.
        let before = rss_bytes();
        let sim = KubeSim::new(Config::default().with_admin_token(TOKEN));
        let elapsed = create_pods(&sim, 10_000).await;
        tokio::time::sleep(Duration::from_millis(300)).await; // let the controllers settle
        let after = rss_bytes();
        let mb = (after.saturating_sub(before)) as f64 / (1024.0 * 1024.0);
        println!("memory: 10,000 pods held in {mb:.1} MB (RSS {:.1} -> {:.1} MB, {} objects, target < 200 MB)", before as f64 / 1048576.0, after as f64 / 1048576.0, sim.store().object_count());
        println!("creates: 10,000 pods in {:.3} s ({:.0}/s, target < 1 s)", elapsed.as_secs_f64(), 10_000.0 / elapsed.as_secs_f64());
        drop(sim);

        let sim = KubeSim::new(Config::default().with_admin_token(TOKEN));
        let router = sim.router();
        let start = Instant::now();
        for i in 0..10_000 {
            let body = serde_json::json!({"metadata": {"name": format!("cm-{i}")}, "data": {"k": "v"}}).to_string();
            assert_eq!(post(&router, "/api/v1/namespaces/default/configmaps", body).await, 201);
        }
        let e = start.elapsed();
        println!("creates: 10,000 configmaps in {:.3} s ({:.0}/s)", e.as_secs_f64(), 10_000.0 / e.as_secs_f64());
        drop(sim);

        let mut lat = fan_out(100, 200).await;
        lat.sort();
        println!(
            "fan-out: 100 watchers x 200 writes = {} deliveries; p50 {:.3} ms, p99 {:.3} ms, max {:.3} ms (target p99 < 5 ms)",
            lat.len(),
            percentile(&lat, 0.50).as_secs_f64() * 1e3,
            percentile(&lat, 0.99).as_secs_f64() * 1e3,
            lat.last().copied().unwrap_or_default().as_secs_f64() * 1e3,
        );
    });
}
