//! `harness kube-sim` and `harness contrail-mock` serve real APIs on loopback and exit 130
//! after a clean shutdown on SIGINT.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn http_get(addr: &str, path: &str) -> Option<String> {
    let mut s = TcpStream::connect(addr).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    Some(out)
}

fn wait_for(addr: &str, path: &str) -> String {
    let start = Instant::now();
    loop {
        if let Some(r) = http_get(addr, path) {
            return r;
        }
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "{addr}{path} never answered"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn interrupt(mut child: Child) -> Option<i32> {
    let _ = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status();
    let start = Instant::now();
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            return status.code();
        }
        if start.elapsed() > Duration::from_secs(20) {
            let _ = child.kill();
            return None;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn kube_sim_and_contrail_mock_serve_and_stop_cleanly() {
    let dir = std::env::temp_dir().join(format!("harness-serve-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let kubeconfig = dir.join("kubeconfig");
    let kport = free_port();
    let kube = Command::new(env!("CARGO_BIN_EXE_harness"))
        .args([
            "kube-sim",
            "--listen",
            &format!("127.0.0.1:{kport}"),
            "--kubeconfig",
            kubeconfig.to_str().unwrap(),
        ])
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let kaddr = format!("127.0.0.1:{kport}");
    let version = wait_for(&kaddr, "/version");
    assert!(version.starts_with("HTTP/1.1 200"), "{version}");
    assert!(version.contains("gitVersion"), "{version}");
    let start = Instant::now();
    while !Path::new(&kubeconfig).exists() {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "no kubeconfig written"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let kc = std::fs::read_to_string(&kubeconfig).unwrap();
    assert!(
        kc.contains(&format!("server: http://127.0.0.1:{kport}")),
        "{kc}"
    );
    assert!(kc.contains("token:"), "{kc}");

    // The VNC API with the kube-manager emulation watching kube-sim: provisioning appears.
    let cport = free_port();
    let contrail = Command::new(env!("CARGO_BIN_EXE_harness"))
        .args([
            "contrail-mock",
            "--kubeconfig",
            kubeconfig.to_str().unwrap(),
            "--listen",
            &format!("127.0.0.1:{cport}"),
        ])
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let caddr = format!("127.0.0.1:{cport}");
    let start = Instant::now();
    loop {
        let vns = wait_for(&caddr, "/virtual-networks");
        if vns.contains("k8s-default-pod-network") && vns.contains("k8s-default-service-network") {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "kube-manager never provisioned the cluster networks:\n{vns}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }

    assert_eq!(interrupt(contrail), Some(130));
    assert_eq!(interrupt(kube), Some(130));
    assert!(
        http_get(&kaddr, "/version").is_none(),
        "kube-sim still answers after shutdown"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn servers_refuse_non_loopback_addresses() {
    let o = Command::new(env!("CARGO_BIN_EXE_harness"))
        .args([
            "kube-sim",
            "--listen",
            "0.0.0.0:0",
            "--kubeconfig",
            "/dev/null",
        ])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("loopback"));
    let o = Command::new(env!("CARGO_BIN_EXE_harness"))
        .args(["contrail-mock", "--listen", "10.0.0.1:8082"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
}
