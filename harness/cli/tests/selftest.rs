//! `harness selftest` exit codes on a one-scenario suite: 1 when a fault goes undetected, 0
//! when every injected fault is caught and r5.0's failure is explained, 2 for bad input, 3 when
//! scenarios cannot run; the report files are written.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn harness(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_harness"))
        .args(args)
        .current_dir(root())
        .env("NO_COLOR", "1")
        .output()
        .expect("the harness binary runs")
}

fn text(o: &Output) -> String {
    format!(
        "stdout:\n{}\nstderr:\n{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// x/a may send only to y/a: `egress-rules-dropped` breaks it, `rbac-over-grant` cannot be
/// seen, and r5.0 ORs the peer's selectors (x/a → y/b allowed, `peer-selectors-or`). The
/// same one-scenario suite as the runner's selftest test.
const SCENARIO: &str = include_str!("../../runner/tests/fixtures/egress-and-peer.yaml");

#[test]
fn an_undetected_fault_exits_1_and_a_caught_one_exits_0_with_the_reports() {
    let dir = tempfile::tempdir().expect("tmp");
    let file = dir.path().join("egress-and-peer.yaml");
    std::fs::write(&file, SCENARIO).unwrap();
    let report = dir.path().join("st");
    let o = harness(&[
        "selftest",
        file.to_str().unwrap(),
        "--only-fault",
        "egress-rules-dropped",
        "--only-fault",
        "rbac-over-grant",
        "--seed",
        "4",
        "--report-dir",
        report.to_str().unwrap(),
    ]);
    let out = text(&o);
    assert_eq!(o.status.code(), Some(1), "{out}");
    assert!(out.contains("rbac-over-grant       UNDETECTED"), "{out}");
    assert!(out.contains("egress-rules-dropped  caught"), "{out}");
    assert!(out.contains("← peer-selectors-or"), "{out}");
    for f in [
        "selftest.md",
        "selftest.json",
        "clean/results.json",
        "r5.0/results.json",
    ] {
        assert!(report.join(f).is_file(), "{f} missing:\n{out}");
    }
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(report.join("selftest.json")).unwrap())
            .unwrap();
    assert_eq!(json["faults"][1]["detection"], "undetected");
    assert_eq!(
        json["r50"]["explained"][0]["deviations"][0],
        "peer-selectors-or"
    );
    // The r5.0 run's own results.json carries the deviation on the cell.
    let r50: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(report.join("r5.0/results.json")).unwrap())
            .unwrap();
    let cells = &r50["scenarios"][0]["steps"][0]["checks"][0]["cells"];
    let failed: Vec<&serde_json::Value> = cells
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["outcome"]["status"] == "failed")
        .collect();
    assert_eq!(failed.len(), 1, "{cells}");
    assert_eq!(failed[0]["deviations"][0], "peer-selectors-or");

    let o = harness(&[
        "selftest",
        file.to_str().unwrap(),
        "--only-fault",
        "egress-rules-dropped",
        "--report-dir",
        dir.path().join("st2").to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(text(&o).contains("SELFTEST PASSED"), "{}", text(&o));
}

#[test]
fn bad_input_exits_2_and_scenarios_that_cannot_run_exit_3() {
    let o = harness(&["selftest", "--only-fault", "no-such-fault"]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(text(&o).contains("unknown fault"), "{}", text(&o));
    let o = harness(&["selftest", "--parallel", "0"]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));

    // A scenario that asks for a real Contrail cannot run on the embedded cluster: every
    // phase has a setup error, nothing definitive failed, so the self-test is an
    // infrastructure error.
    let dir = tempfile::tempdir().expect("tmp");
    let file = dir.path().join("real.yaml");
    std::fs::write(
        &file,
        "name: real\ncontrail: {mode: real, api: 'http://127.0.0.1:9'}\nsteps:\n  - name: s\n    expect:\n      - reachability: {from: [x/a], to: [x/b], ports: [TCP/80]}\n",
    )
    .unwrap();
    let o = harness(&[
        "selftest",
        file.to_str().unwrap(),
        "--only-fault",
        "ecmp-pinned",
        "--report-dir",
        dir.path().join("st").to_str().unwrap(),
    ]);
    let out = text(&o);
    assert_eq!(o.status.code(), Some(3), "{out}");
    assert!(out.contains("setup error"), "{out}");
    assert!(dir.path().join("st/selftest.json").is_file(), "{out}");
}
