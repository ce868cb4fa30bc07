//! Compatibility with the real Python `vnc_api` library (PyPI `contrail-api-client`): the
//! script `vnc_api_compat.py` creates a project, IPAMs, virtual networks with IPAM references
//! and subnet attributes, a network policy, tags via set_tag, a firewall rule, policy and APS,
//! reads them back, lists, and deletes them.
//!
//! When `import vnc_api` fails the test installs the library once into
//! `$TMPDIR/harness-vnc-api-py` (with its runtime dependencies); when that fails too (no
//! python3, no pip, no registry) it prints why and passes as skipped.

use std::path::{Path, PathBuf};
use std::process::Command;

use harness_contrail_mock::{ConfigDb, ServerConfig, serve};

fn imports(pythonpath: Option<&Path>) -> bool {
    let mut cmd = Command::new("python3");
    cmd.args(["-c", "import vnc_api.vnc_api"]);
    if let Some(p) = pythonpath {
        cmd.env("PYTHONPATH", p);
    }
    cmd.output().map(|o| o.status.success()).unwrap_or(false)
}

/// Where `vnc_api` can be imported from: `Ok(None)` = already importable, `Ok(Some(dir))` =
/// with `PYTHONPATH=dir`, `Err(reason)` = not available.
fn locate_vnc_api() -> Result<Option<PathBuf>, String> {
    if imports(None) {
        return Ok(None);
    }
    let dir = std::env::temp_dir().join("harness-vnc-api-py");
    if imports(Some(&dir)) {
        return Ok(Some(dir));
    }
    let out = Command::new("python3")
        .args([
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
            "--target",
        ])
        .arg(&dir)
        .args(["contrail-api-client", "future", "six", "requests"])
        .output()
        .map_err(|e| format!("cannot run python3 -m pip: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "pip install contrail-api-client failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    if imports(Some(&dir)) {
        Ok(Some(dir))
    } else {
        Err(format!(
            "vnc_api still not importable from {}",
            dir.display()
        ))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_vnc_api_library_works_against_contrail_mock() {
    let pythonpath = match tokio::task::spawn_blocking(locate_vnc_api).await {
        Ok(Ok(p)) => p,
        Ok(Err(reason)) => {
            println!("SKIPPED real_vnc_api_library_works_against_contrail_mock: {reason}");
            return;
        }
        Err(e) => panic!("locating vnc_api: {e}"),
    };
    let server = serve(
        "127.0.0.1:0".parse().expect("addr"),
        ConfigDb::new(),
        ServerConfig::default(),
    )
    .await
    .expect("serve");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/vnc_api_compat.py");
    let addr = server.addr();
    let output = tokio::task::spawn_blocking(move || {
        let mut cmd = Command::new("python3");
        cmd.arg(&script)
            .arg(addr.ip().to_string())
            .arg(addr.port().to_string())
            // vnc_api would read /etc/contrail/vnc_api_lib.ini; make sure it finds none.
            .current_dir(std::env::temp_dir());
        if let Some(p) = pythonpath {
            cmd.env("PYTHONPATH", p);
        }
        cmd.output()
    })
    .await
    .expect("join")
    .expect("run python3");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success() && stdout.contains("OK"),
        "vnc_api script failed\n--- stdout\n{stdout}\n--- stderr\n{stderr}"
    );
    server.shutdown().await.expect("shutdown");
}
