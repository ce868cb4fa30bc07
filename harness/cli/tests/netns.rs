//! `harness run --dataplane netns` end to end: exit 0 and no namespace of the run left, the
//! underlay capture in the report directory, exit 3 naming CAP_NET_ADMIN without it, and
//! Ctrl-C exiting 130 after the namespaces were deleted.
//!
//! Needs CAP_NET_ADMIN, CAP_NET_RAW and CAP_SYS_ADMIN: without them every test prints why
//! and returns.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

const SCENARIO: &str = "scenarios/examples/fabric-forwarding-on.yaml";

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn harness() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_harness"));
    c.current_dir(root()).env("NO_COLOR", "1");
    c
}

fn text(o: &Output) -> String {
    format!(
        "stdout:\n{}\nstderr:\n{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// Whether this process has what the netns dataplane needs (effective capabilities
/// CAP_NET_ADMIN 12, CAP_NET_RAW 13, CAP_SYS_ADMIN 21); prints why not.
fn capable() -> bool {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let eff = status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .and_then(|h| u64::from_str_radix(h.trim(), 16).ok())
        .unwrap_or(0);
    let need = (1 << 12) | (1 << 13) | (1 << 21);
    if eff & need != need {
        eprintln!(
            "skipped: needs CAP_NET_ADMIN, CAP_NET_RAW and CAP_SYS_ADMIN (effective {eff:#x})"
        );
        return false;
    }
    true
}

/// The netns run ids a `harness run` printed (`netns: run 3fa9c1: …`).
fn run_ids(stdout: &str) -> Vec<String> {
    let mut ids: Vec<String> = stdout
        .lines()
        .filter_map(|l| l.trim().strip_prefix("netns: run "))
        .filter_map(|l| l.split(':').next())
        .map(str::to_owned)
        .collect();
    ids.dedup();
    ids
}

/// Namespaces of these runs that exist now (`ip netns list`).
fn namespaces_of(ids: &[String]) -> Vec<String> {
    let out = Command::new("ip")
        .args(["netns", "list"])
        .output()
        .expect("ip runs");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|n| ids.iter().any(|id| n.starts_with(&format!("h{id}-"))))
        .map(str::to_owned)
        .collect()
}

#[test]
fn a_passing_netns_run_exits_0_and_leaves_no_namespace() {
    if !capable() {
        return;
    }
    let dir = tempfile::tempdir().expect("tmp");
    let report = dir.path().join("r");
    let o = harness()
        .args(["run", "--dataplane", "netns", SCENARIO, "--seed", "3"])
        .arg("--report-dir")
        .arg(&report)
        .output()
        .expect("harness runs");
    let out = text(&o);
    assert_eq!(o.status.code(), Some(0), "{out}");
    assert!(out.contains("dataplane netns"), "{out}");
    let ids = run_ids(&String::from_utf8_lossy(&o.stdout));
    assert_eq!(ids.len(), 1, "one netns run per scenario:\n{out}");
    assert_eq!(namespaces_of(&ids), Vec::<String>::new(), "{out}");
    assert!(out.contains("every namespace of run"), "{out}");
    let pcap = report
        .join("netns")
        .join("fabric-forwarding-on")
        .join("underlay.pcap");
    let len = std::fs::metadata(&pcap).map(|m| m.len()).unwrap_or(0);
    assert!(
        len > 24,
        "{} holds frames ({len} bytes)\n{out}",
        pcap.display()
    );
    let results: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(report.join("results.json")).unwrap())
            .unwrap();
    assert_eq!(results["dataplane"], "netns");
}

#[test]
fn without_cap_net_admin_it_exits_3_naming_the_capability() {
    if !capable() {
        return;
    }
    if Command::new("setpriv").arg("--version").output().is_err() {
        eprintln!("skipped: setpriv (util-linux) is not installed");
        return;
    }
    let o = Command::new("setpriv")
        .arg("--bounding-set=-net_admin")
        .arg(env!("CARGO_BIN_EXE_harness"))
        .args(["run", "--dataplane", "netns", SCENARIO])
        .current_dir(root())
        .env("NO_COLOR", "1")
        .output()
        .expect("setpriv runs");
    let out = text(&o);
    assert_eq!(o.status.code(), Some(3), "{out}");
    assert!(out.contains("CAP_NET_ADMIN"), "{out}");
    assert!(
        !out.contains("cluster up"),
        "nothing is stood up without the capability:\n{out}"
    );
}

#[test]
fn ctrl_c_deletes_the_namespaces_and_exits_130() {
    if !capable() {
        return;
    }
    let dir = tempfile::tempdir().expect("tmp");
    let mut child = harness()
        // A scenario with a few seconds of probing after the namespaces are up.
        .args([
            "run",
            "--dataplane",
            "netns",
            "scenarios/examples/netpol-deny-all-ingress.yaml",
        ])
        .arg("--report-dir")
        .arg(dir.path().join("r"))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("harness starts");
    let stdout = child.stdout.take().expect("stdout");
    let (tx, rx) = mpsc::channel::<String>();
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    // Interrupt once the namespaces are up, while the scenario probes.
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut seen = String::new();
    while !seen.contains("namespaces up") {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(l) => {
                seen.push_str(&l);
                seen.push('\n');
            }
            Err(_) => {
                let _ = child.kill();
                panic!("the namespaces were never announced:\n{seen}");
            }
        }
    }
    let ids = run_ids(&seen);
    assert_eq!(ids.len(), 1, "{seen}");
    assert!(
        !namespaces_of(&ids).is_empty(),
        "the run's namespaces exist:\n{seen}"
    );
    let pid = child.id().to_string();
    let killed = Command::new("kill").args(["-INT", &pid]).status();
    assert!(killed.is_ok_and(|s| s.success()), "SIGINT sent");
    let o = child.wait_with_output().expect("harness exits");
    let _ = reader.join();
    while let Ok(l) = rx.try_recv() {
        seen.push_str(&l);
        seen.push('\n');
    }
    let all = format!("{seen}{}", text(&o));
    assert_eq!(o.status.code(), Some(130), "{all}");
    assert!(all.contains("interrupted"), "{all}");
    assert_eq!(namespaces_of(&ids), Vec::<String>::new(), "{all}");
}
