//! `--dataplane netns`: example scenarios run with pods in network namespaces, user-space
//! vrouters forwarding real frames and real sockets as probes, must pass with the same
//! verdicts as on the model dataplane; the underlay capture of the run shows MPLS-over-UDP
//! for overlay traffic and no tunnel for ip-fabric-forwarded traffic (checked with tshark);
//! cells this kernel cannot probe (SCTP) are skipped with the reason; every namespace is gone
//! afterwards.
//!
//! Needs CAP_NET_ADMIN, CAP_NET_RAW and CAP_SYS_ADMIN: without them every test prints why
//! and returns.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use harness_report::{Outcome, ScenarioResult, Status};
use harness_runner::provider::netns;
use harness_runner::run::{DataplaneKind, Event, RunOptions, run_scenario};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn load(rel: &str) -> harness_scenario::LoadedScenario {
    harness_scenario::load::load_file(&root().join(rel))
        .unwrap_or_else(|d| panic!("{rel}: {}", d.message))
}

/// Whether the netns dataplane can run here; prints why not.
fn netns_available() -> bool {
    match netns::check_capabilities() {
        Ok(()) => true,
        Err(e) => {
            eprintln!("skipped: {e}");
            false
        }
    }
}

/// Runs `rel`; also returns the netns run ids the run announced (`run 3fa9c1: …`).
async fn run(
    rel: &str,
    dataplane: DataplaneKind,
    report_dir: Option<&Path>,
) -> (ScenarioResult, Vec<String>) {
    let loaded = load(rel);
    let opts = RunOptions {
        seed: 7,
        dataplane,
        report_dir: report_dir.map(Path::to_path_buf),
        ..RunOptions::default()
    };
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let r = run_scenario(&loaded, rel, &opts, Some(&tx)).await;
    drop(tx);
    let mut ids = Vec::new();
    while let Some(e) = rx.recv().await {
        if let Event::Netns { detail } = e
            && let Some(id) = detail
                .strip_prefix("run ")
                .and_then(|d| d.split(':').next())
            && !ids.iter().any(|i| i == id)
        {
            ids.push(id.to_owned());
        }
    }
    (r, ids)
}

/// Namespaces of these runs that exist now.
fn namespaces_of(ids: &[String]) -> Vec<String> {
    harness_netns::ip::list_netns()
        .into_iter()
        .filter(|n| ids.iter().any(|id| n.starts_with(&format!("h{id}-"))))
        .collect()
}

fn problems(r: &ScenarioResult) -> Vec<String> {
    let mut v: Vec<String> = r.setup_error.iter().cloned().collect();
    v.extend(r.checks().flat_map(|c| {
        c.notable_cells()
            .map(move |x| format!("{}: {}", c.id, x.one_line(c.kind)))
    }));
    v
}

/// Every judged cell's observed word, by check id and cell.
fn verdicts(r: &ScenarioResult) -> BTreeMap<String, String> {
    r.checks()
        .flat_map(|c| {
            c.cells
                .iter()
                .filter(|x| !x.loopback && matches!(x.outcome, Outcome::Passed))
                .map(move |x| {
                    (
                        format!("{}[{} -> {} {}]", c.id, x.from, x.to, x.port),
                        x.observed.clone(),
                    )
                })
        })
        .collect()
}

/// Runs `rel` on both dataplanes: both pass, and every cell netns judged was observed with
/// the model's word. Cells netns skipped (SCTP without kernel SCTP) must say why and be
/// passed on the model. Returns the netns result.
async fn same_as_model(rel: &str, report_dir: Option<&Path>) -> ScenarioResult {
    let (model, none) = run(rel, DataplaneKind::Model, None).await;
    assert!(none.is_empty(), "the model dataplane builds no namespace");
    assert!(
        problems(&model).is_empty(),
        "model: {:#?}",
        problems(&model)
    );
    let started = std::time::Instant::now();
    let (real, ids) = run(rel, DataplaneKind::Netns, report_dir).await;
    assert_eq!(ids.len(), 1, "one netns run for the scenario: {ids:?}");
    eprintln!("{rel} on netns: {} ms", started.elapsed().as_millis());
    assert!(problems(&real).is_empty(), "netns: {:#?}", problems(&real));
    assert_eq!(real.status(), Status::Passed, "{rel} on netns");
    let (m, n) = (verdicts(&model), verdicts(&real));
    assert!(!n.is_empty(), "{rel}: netns judged no cell");
    for (key, word) in &n {
        assert_eq!(
            m.get(key),
            Some(word),
            "{rel}: {key} differs from the model"
        );
    }
    for (key, word) in &m {
        if n.contains_key(key) {
            continue;
        }
        // Only cells netns could not probe here may be missing, skipped with the reason.
        let skipped = real
            .checks()
            .flat_map(|c| c.cells.iter().map(move |x| (c, x)))
            .find(|(c, x)| format!("{}[{} -> {} {}]", c.id, x.from, x.to, x.port) == *key)
            .map(|(_, x)| x.outcome.clone());
        match skipped {
            Some(Outcome::Skipped { reason }) => {
                assert!(
                    key.contains("SCTP") && reason.contains("SCTP"),
                    "{key} ({word} on the model) skipped on netns: {reason}"
                )
            }
            other => panic!("{key}: {word} on the model, {other:?} on netns"),
        }
    }
    assert_eq!(
        namespaces_of(&ids),
        Vec::<String>::new(),
        "every namespace deleted"
    );
    real
}

/// `tshark -r PCAP -Y FILTER`'s frame count, or `None` (printed) without tshark.
fn tshark_count(pcap: &Path, filter: &str) -> Option<usize> {
    let out = Command::new("tshark")
        .arg("-r")
        .arg(pcap)
        .args([
            "-o",
            "udp.try_heuristic_first:FALSE",
            // MPLS-in-UDP (RFC 7510): tshark knows the port, said outright for older ones.
            "-d",
            "udp.port==6635,mpls",
            "-Y",
            filter,
            "-T",
            "fields",
            "-e",
            "frame.number",
        ])
        .output();
    match out {
        Err(e) => {
            eprintln!("tshark not runnable ({e}): the underlay capture is not decoded");
            None
        }
        Ok(o) => {
            assert!(
                o.status.success(),
                "tshark -Y {filter}: {}",
                String::from_utf8_lossy(&o.stderr)
            );
            Some(String::from_utf8_lossy(&o.stdout).lines().count())
        }
    }
}

fn underlay_pcap(dir: &Path, scenario: &str) -> PathBuf {
    let p = dir.join("netns").join(scenario).join("underlay.pcap");
    assert!(p.is_file(), "{} written", p.display());
    p
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deny_all_ingress_gives_the_models_verdicts_on_real_sockets() {
    if !netns_available() {
        return;
    }
    let r = same_as_model("scenarios/examples/netpol-deny-all-ingress.yaml", None).await;
    // SCTP: probed when the kernel has it, else skipped with the reason — never passed.
    let sctp: Vec<&harness_report::CellResult> = r
        .checks()
        .flat_map(|c| &c.cells)
        .filter(|c| c.port.starts_with("SCTP"))
        .collect();
    assert!(!sctp.is_empty());
    match harness_netns::unsupported_reason(harness_scenario::Protocol::Sctp) {
        Some(_) => assert!(
            sctp.iter().all(
                |c| matches!(&c.outcome, Outcome::Skipped { reason } if reason.contains("no SCTP"))
            ),
            "{:?}",
            sctp.first()
        ),
        None => assert!(
            sctp.iter()
                .all(|c| !matches!(c.outcome, Outcome::Skipped { .. }))
        ),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fabric_forwarding_on_leaves_the_underlay_untunnelled() {
    if !netns_available() {
        return;
    }
    let dir = tempfile::tempdir().expect("tmp");
    same_as_model(
        "scenarios/examples/fabric-forwarding-on.yaml",
        Some(dir.path()),
    )
    .await;
    let pcap = underlay_pcap(dir.path(), "fabric-forwarding-on");
    let Some(tunnels) = tshark_count(&pcap, "mpls || vxlan || gre || udp.port == 6635") else {
        return;
    };
    assert_eq!(
        tunnels, 0,
        "no tunnel on the underlay with ip-fabric forwarding"
    );
    // The probes are there, plain: pods to the fabric host, and pod to pod across nodes.
    let to_host = tshark_count(&pcap, "ip.dst == 10.64.200.10 && tcp.dstport == 5432").unwrap();
    assert!(to_host > 0, "plain TCP/5432 to cloud-db on the underlay");
    let udp = tshark_count(&pcap, "ip.dst == 10.64.200.10 && udp.dstport == 53").unwrap();
    assert!(udp > 0, "plain UDP/53 to cloud-db on the underlay");
    let pods = tshark_count(&pcap, "tcp.dstport == 80 && !mpls").unwrap();
    assert!(pods > 0, "plain pod-to-pod TCP/80 across nodes");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fabric_forwarding_off_tunnels_pods_in_mpls_over_udp() {
    if !netns_available() {
        return;
    }
    let dir = tempfile::tempdir().expect("tmp");
    same_as_model(
        "scenarios/examples/fabric-forwarding-off.yaml",
        Some(dir.path()),
    )
    .await;
    let pcap = underlay_pcap(dir.path(), "fabric-forwarding-off");
    let Some(overlay) = tshark_count(&pcap, "udp.dstport == 6635 && mpls && tcp.dstport == 80")
    else {
        return;
    };
    assert!(overlay > 0, "pod-to-pod TCP/80 inside MPLS-over-UDP");
    // What reaches the host without a vrouter is tunnelled too (it cannot decapsulate it).
    let to_host = tshark_count(&pcap, "mpls && ip.dst == 10.64.200.10").unwrap();
    assert!(
        to_host > 0,
        "the probes to cloud-db went out in MPLS-over-UDP"
    );
    let plain = tshark_count(&pcap, "!mpls && ip.dst == 10.64.200.10 && tcp").unwrap();
    assert_eq!(plain, 0, "nothing reaches cloud-db untunnelled");
}

/// Every trace.txt below `dir`, with its path.
fn traces(dir: &Path) -> Vec<(PathBuf, String)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if p.file_name().is_some_and(|n| n == "trace.txt") {
                let text = std::fs::read_to_string(&p).unwrap_or_default();
                out.push((p, text));
            }
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_traced_cell_says_which_source_the_answering_agent_saw() {
    if !netns_available() {
        return;
    }
    let dir = tempfile::tempdir().expect("tmp");
    let rel = "scenarios/examples/fabric-forwarding-on.yaml";
    let opts = RunOptions {
        seed: 7,
        dataplane: DataplaneKind::Netns,
        report_dir: Some(dir.path().to_path_buf()),
        evidence: harness_runner::evidence::EvidenceMode::All,
        ..RunOptions::default()
    };
    let r = run_scenario(&load(rel), rel, &opts, None).await;
    assert!(problems(&r).is_empty(), "{:?}", problems(&r));
    // The path assertions (`encap: none`) trace web-1 -> web-2 TCP/80: a connected cell, so
    // the agent in web-2 reports the source it saw, after any NAT.
    let all = traces(dir.path());
    let tcp80: Vec<&(PathBuf, String)> = all
        .iter()
        .filter(|(p, _)| {
            let p = p.to_string_lossy();
            p.contains("web-1") && p.contains("web-2") && p.contains("80")
        })
        .collect();
    assert!(
        !tcp80.is_empty(),
        "no trace of web-1 -> web-2 TCP/80 among {all:?}"
    );
    for (p, text) in tcp80 {
        let line = text
            .lines()
            .find(|l| l.contains("the answering agent saw the connection come from "))
            .unwrap_or_else(|| panic!("{}: no source line in\n{text}", p.display()));
        let addr = line.rsplit(' ').next().unwrap_or_default();
        assert!(
            addr.parse::<std::net::SocketAddrV4>().is_ok(),
            "{}: {line}",
            p.display()
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_ports_work_from_outside_and_from_every_node_its_own_included() {
    if !netns_available() {
        return;
    }
    // A node's packets to its own node ports are steered to its vrouter with nftables.
    if Command::new("nft").arg("--version").output().is_err() {
        eprintln!(
            "skipped: no `nft` (Debian package nftables): a node's own node ports would be skipped"
        );
        return;
    }
    // `same_as_model` allows only SCTP cells to be skipped: a node probing its own node port
    // must really go through its vrouter and kube-proxy's rules in the forwarding core.
    let r = same_as_model("scenarios/conformance/services-03-nodeport.yaml", None).await;
    let own = r
        .checks()
        .flat_map(|c| c.cells.iter())
        .filter(|x| x.from == "node:node-1" && x.to == "nodeport:shop/web-np@node-1")
        .count();
    assert_eq!(own, 1, "node-1 probed its own node port");
}
