//! Both ICMP echo paths: the unprivileged ping socket (allowed by `net.ipv4.ping_group_range`)
//! and the raw-socket fallback. The range is a per-namespace setting, so the ping-socket case
//! runs on a thread of its own in a fresh network namespace (needs CAP_SYS_ADMIN; skipped,
//! saying so, without it). The thread's namespace goes away with the thread.

use std::net::Ipv4Addr;
use std::process::Command;

use harness_agent::{ProbeRequest, ProbeResultKind, probe_batch};
use harness_scenario::Protocol;

fn echo_loopback() -> harness_agent::ProbeResult {
    probe_batch(&[ProbeRequest::new(Ipv4Addr::LOCALHOST, Protocol::Icmp, 0).with_timeout_ms(1000)])
        .remove(0)
}

const RANGE: &str = "/proc/sys/net/ipv4/ping_group_range";

/// Runs `f` on a new thread in a new, empty network namespace with `lo` up and every group
/// allowed ping sockets; `Err` says why that could not be set up.
fn in_fresh_namespace<T: Send + 'static>(f: fn() -> T) -> Result<T, String> {
    let outside = std::fs::read_to_string(RANGE).unwrap_or_default();
    let result = std::thread::spawn(move || {
        // SAFETY: unshare(2) changes only this thread's network namespace; no memory involved.
        if unsafe { libc::unshare(libc::CLONE_NEWNET) } != 0 {
            return Err(format!(
                "cannot make a network namespace ({}): needs CAP_SYS_ADMIN",
                std::io::Error::last_os_error()
            ));
        }
        // A child process inherits this thread's namespace.
        let up = Command::new("ip")
            .args(["link", "set", "lo", "up"])
            .status();
        if !matches!(up, Ok(s) if s.success()) {
            return Err(format!("`ip link set lo up` failed: {up:?}"));
        }
        // /proc/sys/net resolves to the opening thread's namespace: this sets the new one's.
        std::fs::write(RANGE, "0 2147483647")
            .map_err(|e| format!("cannot set net.ipv4.ping_group_range: {e}"))?;
        Ok(f())
    })
    .join()
    .map_err(|_| "the namespace thread panicked".to_owned())?;
    // The machine's own setting is untouched.
    assert_eq!(std::fs::read_to_string(RANGE).unwrap_or_default(), outside);
    result
}

#[test]
fn ping_socket_when_the_group_range_allows_it() {
    match in_fresh_namespace(echo_loopback) {
        Err(why) => println!("skipped: ping socket path: {why}"),
        Ok(r) => {
            assert_eq!(r.result, ProbeResultKind::Connected, "{r:?}");
            assert_eq!(r.detail, "echo reply from 127.0.0.1 (ping socket)");
        }
    }
}

#[test]
fn raw_socket_or_a_clear_reason() {
    let range = std::fs::read_to_string("/proc/sys/net/ipv4/ping_group_range").unwrap_or_default();
    let r = echo_loopback();
    match r.result {
        ProbeResultKind::Connected => {
            assert_eq!(r.backend.as_deref(), Some("127.0.0.1"));
            println!(
                "ICMP echo here via {} (ping_group_range {})",
                r.detail,
                range.trim()
            );
        }
        _ => {
            assert_eq!(r.result, ProbeResultKind::Other, "{r:?}");
            assert!(r.detail.contains("CAP_NET_RAW"), "{}", r.detail);
            println!("skipped: ICMP echo: {}", r.detail);
        }
    }
}
