//! Running iproute2. Setup and teardown shell out to `ip` rather than speaking rtnetlink:
//! the commands are the ones a person would type to reproduce a topology (they go into
//! errors verbatim), iproute2 is on every Linux box that can run this dataplane, and
//! `ip -batch -` runs a whole namespace's configuration in one process, so setting up a
//! cluster costs a handful of processes (tens of milliseconds), not one per command.

use std::io::Write;
use std::process::{Command, Stdio};

use crate::NetnsError;

/// The `ip` binary.
pub const IP: &str = "ip";

/// Runs `ip [-n ns] -batch -` with `lines` on stdin; stops at the first failing line.
///
/// # Errors
/// `ip` missing, or a failing line (with its stderr).
pub fn batch(ns: Option<&str>, lines: &[String]) -> Result<(), NetnsError> {
    if lines.is_empty() {
        return Ok(());
    }
    let child = spawn_batch(ns, lines)?;
    wait_batch(ns, lines, child)
}

/// Starts a batch without waiting for it (setting up namespaces in parallel).
///
/// # Errors
/// `ip` missing.
pub fn spawn_batch(ns: Option<&str>, lines: &[String]) -> Result<std::process::Child, NetnsError> {
    let mut cmd = Command::new(IP);
    if let Some(ns) = ns {
        cmd.args(["-n", ns]);
    }
    cmd.args(["-batch", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().map_err(|e| NetnsError::Io {
        what: format!("running `{IP}` (iproute2)"),
        source: e,
    })?;
    let mut input = lines.join("\n");
    input.push('\n');
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(input.as_bytes())
            .map_err(|e| NetnsError::Io {
                what: "writing to `ip -batch -`".into(),
                source: e,
            })?;
    }
    Ok(child)
}

/// Waits for a batch started with [`spawn_batch`].
///
/// # Errors
/// A failing line, with its stderr.
pub fn wait_batch(
    ns: Option<&str>,
    lines: &[String],
    child: std::process::Child,
) -> Result<(), NetnsError> {
    let out = child.wait_with_output().map_err(|e| NetnsError::Io {
        what: "waiting for `ip -batch -`".into(),
        source: e,
    })?;
    if out.status.success() {
        return Ok(());
    }
    let stderr = String::from_utf8_lossy(&out.stderr).trim().to_owned();
    let prefix = ns.map(|n| format!("ip -n {n} ")).unwrap_or("ip ".into());
    Err(NetnsError::Command {
        command: lines
            .iter()
            .map(|l| format!("{prefix}{l}"))
            .collect::<Vec<_>>()
            .join("\n"),
        stderr,
    })
}

/// Runs one `ip -n NS -batch -` per namespace, all at once, and waits for every one of them
/// (also when a later one could not be started), so setup costs the slowest namespace, not
/// the sum.
///
/// # Errors
/// The first failure: a batch that could not be started, or a failing line with its stderr.
pub fn batches_in_parallel(per_ns: &[(String, Vec<String>)]) -> Result<(), NetnsError> {
    let mut children = Vec::new();
    let mut first_err = None;
    for (ns, lines) in per_ns {
        match spawn_batch(Some(ns), lines) {
            Ok(child) => children.push((ns, lines, child)),
            Err(e) => {
                first_err = Some(e);
                break;
            }
        }
    }
    for (ns, lines, child) in children {
        if let Err(e) = wait_batch(Some(ns), lines, child) {
            first_err.get_or_insert(e);
        }
    }
    first_err.map_or(Ok(()), Err)
}

/// The named namespaces `ip netns` knows (entries of `/run/netns`).
pub fn list_netns() -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(crate::sys::NETNS_RUN_DIR)
        .map(|d| {
            d.filter_map(|e| e.ok())
                .filter_map(|e| e.file_name().into_string().ok())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

/// Deletes the named namespaces that exist (one `ip` process). Their interfaces go with them;
/// veth peers in other namespaces too.
///
/// # Errors
/// A failing delete.
pub fn delete_netns(names: &[String]) -> Result<(), NetnsError> {
    let existing = list_netns();
    let lines: Vec<String> = names
        .iter()
        .filter(|n| existing.contains(n))
        .map(|n| format!("netns del {n}"))
        .collect();
    batch(None, &lines)
}
