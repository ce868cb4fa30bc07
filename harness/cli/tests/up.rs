//! `harness up` holds a sim cluster in a child process — kubectl reaches it through
//! DIR/kubeconfig, `harness probe` probes it through the endpoint in DIR/endpoints.json, live
//! (a NetworkPolicy applied with kubectl changes the next verdict) — and stops cleanly on
//! SIGINT (exit 130, every port closed, DIR kept).

use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

const HARNESS: &str = env!("CARGO_BIN_EXE_harness");

fn scenario(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../scenarios/examples")
        .join(name)
}

/// The `harness up` child; killed if a test fails before stopping it.
struct Held {
    child: Option<Child>,
    out: PathBuf,
    err: PathBuf,
}

impl Held {
    fn start(args: &[&str], logs: &Path) -> Held {
        let out = logs.join("up.out");
        let err = logs.join("up.err");
        let child = Command::new(HARNESS)
            .arg("up")
            .args(args)
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&out).unwrap())
            .stderr(std::fs::File::create(&err).unwrap())
            .spawn()
            .expect("harness up starts");
        Held {
            child: Some(child),
            out,
            err,
        }
    }

    fn pid(&self) -> i32 {
        self.child.as_ref().map(|c| c.id() as i32).unwrap_or(0)
    }

    fn stdout(&self) -> String {
        std::fs::read_to_string(&self.out).unwrap_or_default()
    }

    fn stderr(&self) -> String {
        std::fs::read_to_string(&self.err).unwrap_or_default()
    }

    /// Waits for DIR/endpoints.json and the printed how-to.
    fn wait_ready(&mut self, dir: &Path) -> Value {
        let start = Instant::now();
        loop {
            // endpoints.json is written once all is ready; the how-to follows it on stdout.
            if let Ok(text) = std::fs::read_to_string(dir.join("endpoints.json"))
                && self.stdout().contains("Holding the cluster")
            {
                return serde_json::from_str(&text).expect("endpoints.json is JSON");
            }
            if let Some(Ok(Some(status))) = self.child.as_mut().map(Child::try_wait) {
                panic!(
                    "harness up exited early ({status}):\n{}\n{}",
                    self.stdout(),
                    self.stderr()
                );
            }
            assert!(
                start.elapsed() < Duration::from_secs(15),
                "no endpoints.json after 15 s:\n{}\n{}",
                self.stdout(),
                self.stderr()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Sends `signal` and returns the exit code.
    fn stop(&mut self, signal: i32) -> Option<i32> {
        let mut child = self.child.take()?;
        // SAFETY: signalling our own child by its pid.
        unsafe {
            libc::kill(child.id() as i32, signal);
        }
        let start = Instant::now();
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                return status.code();
            }
            if start.elapsed() > Duration::from_secs(10) {
                let _ = child.kill();
                let _ = child.wait();
                return None;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn probe(dir: &Path, args: &[&str]) -> Output {
    Command::new(HARNESS)
        .arg("probe")
        .arg("--state-dir")
        .arg(dir)
        .args(args)
        .output()
        .expect("harness probe runs")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn addr_of(url: &str) -> SocketAddr {
    url.trim_start_matches("http://")
        .split('/')
        .next()
        .unwrap()
        .parse()
        .unwrap_or_else(|e| panic!("{url}: {e}"))
}

fn http_post(addr: SocketAddr, path: &str, body: &str) -> String {
    use std::io::{Read, Write};
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    write!(
        s,
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    out
}

fn kubectl_available() -> bool {
    Command::new("kubectl")
        .args(["version", "--client"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

fn kubectl(dir: &Path, args: &[&str], stdin: Option<&str>) -> Output {
    use std::io::Write;
    let mut child = Command::new("kubectl")
        .arg("--kubeconfig")
        .arg(dir.join("kubeconfig"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("kubectl runs");
    if let Some(s) = stdin {
        child.stdin.take().unwrap().write_all(s.as_bytes()).unwrap();
    }
    drop(child.stdin.take());
    child.wait_with_output().unwrap()
}

#[test]
fn up_holds_a_scenario_cluster_for_kubectl_and_probe_and_stops_on_sigint() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("state");
    let file = scenario("netpol-deny-all-ingress.yaml");
    let mut held = Held::start(
        &[
            file.to_str().unwrap(),
            "--hold",
            "--state-dir",
            dir.to_str().unwrap(),
        ],
        tmp.path(),
    );
    let endpoints = held.wait_ready(&dir);
    let urls: Vec<String> = ["kubernetes", "contrail", "probe"]
        .iter()
        .map(|k| {
            endpoints[*k]
                .as_str()
                .unwrap_or_else(|| panic!("endpoints.json has no {k}: {endpoints}"))
                .to_owned()
        })
        .collect();
    assert_eq!(endpoints["pid"].as_i64(), Some(i64::from(held.pid())));
    assert_eq!(endpoints["profile"], "upstream");
    assert_eq!(endpoints["nodes"], serde_json::json!(["node-1", "node-2"]));
    let out = held.stdout();
    assert!(out.contains(" up in "), "prints the measured time:\n{out}");
    assert!(
        out.contains(&format!(
            "kubectl --kubeconfig {}/kubeconfig get pods -A -o wide",
            dir.display()
        )),
        "{out}"
    );
    assert!(
        out.contains(&format!("curl -s {}/virtual-networks", urls[1])),
        "{out}"
    );

    // A second holder on the same directory is refused before it stands anything up.
    let second = Command::new(HARNESS)
        .args(["up", "--state-dir", dir.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(second.status.code(), Some(2), "{}", text(&second.stderr));
    assert!(
        text(&second.stderr).contains("already holds a cluster"),
        "{}",
        text(&second.stderr)
    );

    let has_kubectl = kubectl_available();
    if has_kubectl {
        let nodes = kubectl(&dir, &["get", "nodes"], None);
        let listing = text(&nodes.stdout);
        assert!(nodes.status.success(), "{}", text(&nodes.stderr));
        assert!(
            listing.contains("node-1") && listing.contains("node-2") && listing.contains("Ready"),
            "{listing}"
        );
    } else {
        eprintln!("kubectl is not installed: skipping the kubectl parts of this test");
    }

    // The scenario's resources (the 3×3 fixture) are there, and nothing isolates x/b yet.
    let allowed = probe(&dir, &["x/a", "x/b", "TCP/80"]);
    let said = text(&allowed.stdout);
    assert_eq!(
        allowed.status.code(),
        Some(0),
        "{said}{}",
        text(&allowed.stderr)
    );
    assert!(said.contains("x/a → x/b TCP/80"), "{said}");
    assert!(
        said.contains("expected  allow (upstream): allowed:"),
        "{said}"
    );
    assert!(said.contains("observed  allow: answered by x/b"), "{said}");
    assert!(said.contains("✓ as the oracle expects"), "{said}");
    assert!(said.contains("trace:\n     1. vrouter node-"), "{said}");

    // Bad input: exit 2 with what the cluster has.
    let unknown = probe(&dir, &["x/nope", "x/b", "TCP/80"]);
    assert_eq!(unknown.status.code(), Some(2));
    let err = text(&unknown.stderr);
    assert!(err.contains("unknown pod `x/nope`"), "{err}");
    assert!(
        err.contains("hint: known pods: x/a, x/b, x/c, y/a"),
        "{err}"
    );
    let bad_port = probe(&dir, &["x/a", "x/b", "TCP/notaport!"]);
    assert_eq!(
        bad_port.status.code(),
        Some(2),
        "{}",
        text(&bad_port.stderr)
    );

    if has_kubectl {
        // Live: a policy applied by hand decides the next probe, and the oracle agrees.
        let np = "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: deny-all, namespace: x}\nspec: {podSelector: {}, policyTypes: [Ingress]}\n";
        let applied = kubectl(&dir, &["apply", "-f", "-"], Some(np));
        assert!(applied.status.success(), "{}", text(&applied.stderr));
        let denied = probe(&dir, &["y/a", "x/a", "TCP/80", "--json"]);
        assert_eq!(denied.status.code(), Some(0), "{}", text(&denied.stderr));
        let answer: Value = serde_json::from_slice(&denied.stdout).unwrap();
        let cell = &answer["cells"][0];
        assert_eq!(cell["expected"]["verdict"], "deny", "{answer}");
        assert!(
            cell["expected"]["explanation"]
                .as_str()
                .is_some_and(|e| e.contains("x/deny-all")),
            "{answer}"
        );
        assert_eq!(cell["observed"]["verdict"], "drop", "{answer}");
        assert_eq!(cell["agrees"], true, "{answer}");
        assert!(
            cell["hops"].as_array().is_some_and(|h| !h.is_empty()),
            "{answer}"
        );
    }

    // First SIGINT: orderly stop, exit 130, every port closed, DIR kept.
    assert_eq!(held.stop(libc::SIGINT), Some(130), "{}", held.stderr());
    assert!(
        held.stderr().contains("stopping the cluster"),
        "{}",
        held.stderr()
    );
    for url in &urls {
        assert!(
            TcpStream::connect_timeout(&addr_of(url), Duration::from_millis(200)).is_err(),
            "{url} still accepts connections after the stop"
        );
    }
    assert!(dir.join("kubeconfig").exists() && dir.join("endpoints.json").exists());
    let gone = probe(&dir, &["x/a", "x/b", "TCP/80"]);
    assert_eq!(gone.status.code(), Some(3), "{}", text(&gone.stderr));
    assert!(
        text(&gone.stderr).contains("no cluster answers at"),
        "{}",
        text(&gone.stderr)
    );
}

#[test]
fn bare_cluster_with_nodes_and_profile_stops_on_sigterm() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("state");
    let mut held = Held::start(
        &[
            "--state-dir",
            dir.to_str().unwrap(),
            "--nodes",
            "3",
            "--contrail-profile",
            "r5.0",
        ],
        tmp.path(),
    );
    let endpoints = held.wait_ready(&dir);
    assert_eq!(
        endpoints["nodes"],
        serde_json::json!(["node-1", "node-2", "node-3"])
    );
    assert_eq!(endpoints["profile"], "r5.0");
    let out = held.stdout();
    assert!(
        out.contains("bare cluster · profile r5.0 · 3 nodes"),
        "{out}"
    );
    assert!(
        out.contains("node:node-1 node:node-2 ICMP"),
        "a probe example on the nodes:\n{out}"
    );
    let icmp = probe(&dir, &["node:node-1", "node:node-3", "ICMP"]);
    let said = text(&icmp.stdout);
    assert_eq!(icmp.status.code(), Some(0), "{said}{}", text(&icmp.stderr));
    assert!(said.contains("expected  allow (upstream)"), "{said}");
    assert!(said.contains("observed  allow"), "{said}");
    // A service is a destination only.
    let backwards = probe(&dir, &["svc:x/s", "node:node-1", "ICMP"]);
    assert_eq!(backwards.status.code(), Some(2));
    assert!(text(&backwards.stderr).contains("cannot start a probe"));
    // Another client sending something that is not a probe query gets a JSON 400 saying so.
    let raw = http_post(
        addr_of(endpoints["probe"].as_str().unwrap()),
        "/probe",
        "{\"from\": 7}",
    );
    assert!(raw.starts_with("HTTP/1.1 400"), "{raw}");
    assert!(
        raw.contains(r#""error":"badQuery""#) && raw.contains("not a probe query"),
        "{raw}"
    );
    assert_eq!(held.stop(libc::SIGTERM), Some(130), "{}", held.stderr());
    assert!(
        TcpStream::connect_timeout(
            &addr_of(endpoints["kubernetes"].as_str().unwrap()),
            Duration::from_millis(200)
        )
        .is_err()
    );
}

#[test]
fn bad_arguments_and_missing_clusters() {
    let tmp = tempfile::tempdir().unwrap();
    // No cluster was ever held here: exit 3, saying how to start one.
    let none = probe(tmp.path(), &["x/a", "x/b", "TCP/80"]);
    assert_eq!(none.status.code(), Some(3));
    assert!(
        text(&none.stderr).contains("harness up --state-dir"),
        "{}",
        text(&none.stderr)
    );
    let file = scenario("netpol-deny-all-ingress.yaml");
    let state = tmp.path().join("s");
    let state = state.to_str().unwrap();
    for (args, says) in [
        (
            vec![file.to_str().unwrap(), "--state-dir", state, "--nodes", "3"],
            "a scenario's `cluster:` defines the cluster",
        ),
        (
            vec!["--state-dir", state, "--fault", "no-such-fault"],
            "unknown fault",
        ),
        (
            vec!["--state-dir", state, "--contrail-profile", "r9"],
            "--contrail-profile",
        ),
        (vec!["--state-dir", state, "--nodes", "0"], "use 1 to 64"),
    ] {
        let out = Command::new(HARNESS)
            .arg("up")
            .args(&args)
            .output()
            .unwrap();
        assert_eq!(
            out.status.code(),
            Some(2),
            "{args:?}: {}",
            text(&out.stderr)
        );
        assert!(
            text(&out.stderr).contains(says),
            "{args:?}: {}",
            text(&out.stderr)
        );
    }
    for verb in ["up", "probe"] {
        let help = Command::new(HARNESS)
            .args([verb, "--help"])
            .output()
            .unwrap();
        let out = text(&help.stdout);
        assert!(
            out.contains("Example:") && out.contains(&format!("harness {verb} ")),
            "{verb} --help has no example:\n{out}"
        );
    }
    // A scenario that does not load is reported with its position.
    let broken = tmp.path().join("broken.yaml");
    std::fs::write(&broken, "name: broken\nsteps: 7\n").unwrap();
    let out = Command::new(HARNESS)
        .args(["up", broken.to_str().unwrap(), "--state-dir", state])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("broken.yaml:"),
        "{}",
        text(&out.stderr)
    );
}
