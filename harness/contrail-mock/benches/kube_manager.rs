//! kube-manager convergence: 1,000 pods and 200 NetworkPolicies in 50 namespaces are written
//! to kube-sim (in process); the figure is the time from the last write until kube-manager
//! has translated everything into the config database (in process), per profile.
//!
//! `cargo bench -p harness-contrail-mock --bench kube_manager`

use std::time::{Duration, Instant};

use harness_contrail_mock::ConfigDb;
use harness_contrail_mock::kube_manager::{KubeManager, KubeManagerConfig};
use harness_kube_sim::{Config, KubeSim};
use harness_scenario::Profile;
use k8s_openapi::api::core::v1::{Namespace, Node, Pod};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use kube::api::{Api, PostParams};
use serde_json::json;

const NAMESPACES: usize = 50;
const PODS_PER_NS: usize = 20;
const POLICIES_PER_NS: usize = 4;

fn rv(meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta) -> u64 {
    meta.resource_version
        .as_deref()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// The four policies of namespace `i`: an ingress allow from a pod selector on a port, an
/// ingress allow from other namespaces by label, an egress allow to a CIDR minus a range
/// (with a named port), and a default deny.
fn policies(ns: &str, i: usize) -> Vec<serde_json::Value> {
    vec![
        json!({"metadata": {"name": "allow-web", "namespace": ns}, "spec": {
            "podSelector": {"matchLabels": {"app": "db"}},
            "ingress": [{"from": [{"podSelector": {"matchLabels": {"app": "web"}}}],
                         "ports": [{"protocol": "TCP", "port": 5432}]}]}}),
        json!({"metadata": {"name": "allow-team", "namespace": ns}, "spec": {
            "podSelector": {"matchLabels": {"app": "web"}},
            "ingress": [{"from": [{"namespaceSelector": {"matchLabels": {"team": format!("t{}", (i + 1) % 5)}}}],
                         "ports": [{"port": 80}, {"protocol": "UDP", "port": 53}]}]}}),
        json!({"metadata": {"name": "egress-cidr", "namespace": ns}, "spec": {
            "podSelector": {"matchLabels": {"tier": "back"}}, "policyTypes": ["Egress"],
            "egress": [{"to": [{"ipBlock": {"cidr": "10.0.0.0/8", "except": [format!("10.{i}.0.0/16")]}}],
                        "ports": [{"port": 443}]}]}}),
        json!({"metadata": {"name": "default-deny", "namespace": ns}, "spec": {
            "podSelector": {"matchLabels": {"app": "batch"}}, "policyTypes": ["Ingress"]}}),
    ]
}

async fn run(profile: Profile) -> Result<(), Box<dyn std::error::Error>> {
    let sim = KubeSim::new(Config::default().with_watch_history(100_000));
    let client = sim.client();
    for n in 1..=2 {
        let node: Node = serde_json::from_value(json!({"metadata": {"name": format!("node-{n}")},
            "status": {"addresses": [{"type": "InternalIP", "address": format!("10.64.0.{n}")}]}}))?;
        Api::<Node>::all(client.clone())
            .create(&PostParams::default(), &node)
            .await?;
    }
    let db = ConfigDb::new();
    let cfg = KubeManagerConfig::default().with_profile(profile);
    let km = KubeManager::new(client.clone(), db.clone(), cfg).spawn();
    km.handle().wait_converged(Duration::from_secs(30)).await?;
    let objects_before = db.len();

    let apps = ["web", "db", "batch", "cache"];
    let pp = PostParams::default();
    let start = Instant::now();
    let mut last_rv = 0;
    for i in 0..NAMESPACES {
        let ns = format!("ns-{i}");
        let nso: Namespace = serde_json::from_value(
            json!({"metadata": {"name": ns, "labels": {"team": format!("t{}", i % 5)}}}),
        )?;
        last_rv = rv(&Api::<Namespace>::all(client.clone())
            .create(&pp, &nso)
            .await?
            .metadata);
        let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);
        for j in 0..PODS_PER_NS {
            let pod: Pod = serde_json::from_value(json!({
                "metadata": {"name": format!("p-{j}"), "labels": {
                    "app": apps[j % apps.len()], "tier": if j % 2 == 0 { "front" } else { "back" }}},
                "spec": {"containers": [{"name": "c", "image": "agent",
                    "ports": [{"containerPort": 80, "name": "http"}, {"containerPort": 5432, "name": "pg"}]}]}
            }))?;
            last_rv = rv(&pods.create(&pp, &pod).await?.metadata);
        }
    }
    for i in 0..NAMESPACES {
        let ns = format!("ns-{i}");
        let nps: Api<NetworkPolicy> = Api::namespaced(client.clone(), &ns);
        for p in policies(&ns, i).into_iter().take(POLICIES_PER_NS) {
            last_rv = rv(&nps.create(&pp, &serde_json::from_value(p)?).await?.metadata);
        }
    }
    let last_write = Instant::now();
    let status = km
        .handle()
        .wait_converged_after(last_rv, Duration::from_secs(120))
        .await?;
    let converged = last_write.elapsed();
    let total = start.elapsed();
    println!(
        "kube_manager/{profile}: {} namespaces, {} pods, {} NetworkPolicies written in {:.2} s; \
         converged {:.3} s after the last write ({:.2} s after the first); \
         {} events, {} passes, {} VNC writes, {} objects owned ({} new in the database); {} translation errors",
        NAMESPACES,
        NAMESPACES * PODS_PER_NS,
        NAMESPACES * POLICIES_PER_NS,
        (last_write - start).as_secs_f64(),
        converged.as_secs_f64(),
        total.as_secs_f64(),
        status.events,
        status.passes,
        status.writes,
        status.owned_objects,
        db.len() - objects_before,
        status.translation_errors.len(),
    );
    if converged > Duration::from_secs(2) {
        println!("kube_manager/{profile}: OVER BUDGET (< 2 s after the last write)");
    }
    km.shutdown().await?;
    Ok(())
}

fn main() {
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("cannot start a runtime: {e}");
            std::process::exit(1);
        }
    };
    for profile in [Profile::R50, Profile::Upstream] {
        if let Err(e) = rt.block_on(run(profile)) {
            eprintln!("kube_manager/{profile}: failed: {e}");
            std::process::exit(1);
        }
    }
}
