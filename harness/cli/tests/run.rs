//! `harness run` end to end on real scenario files: the sim cluster stood up in process, the
//! reports written, the exit code of each outcome, and the rerun command of a failing cell
//! that reruns just that cell.

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

#[test]
fn passing_scenarios_exit_0_and_write_every_report() {
    let dir = tempfile::tempdir().expect("tmp");
    let report = dir.path().join("r");
    let o = harness(&[
        "run",
        "scenarios/examples/netpol-port-range.yaml",
        "scenarios/examples/services-clusterip-ecmp.yaml",
        "--seed",
        "11",
        "--report-dir",
        report.to_str().unwrap(),
    ]);
    let out = text(&o);
    assert_eq!(o.status.code(), Some(0), "{out}");
    assert!(out.contains("seed 11"), "the seed is printed:\n{out}");
    for f in [
        "junit.xml",
        "results.json",
        "ctrf.json",
        "summary.md",
        "report.html",
    ] {
        assert!(report.join(f).is_file(), "{f} missing:\n{out}");
    }
    let results: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(report.join("results.json")).unwrap())
            .unwrap();
    assert_eq!(results["seed"], 11);
    assert_eq!(results["scenarios"].as_array().map(Vec::len), Some(2));
}

/// A literal table that says x/a cannot reach x/b although nothing forbids it.
const WRONG_TABLE: &str = r#"name: wrong-table
resources:
  - include: FIXTURE
steps:
  - name: baseline
    expect:
      - reachability:
          ports: [TCP/80]
          within: 200ms
          table: |
            -   x/a x/b
            x/a .   X
            x/b .   .
"#;

#[test]
fn a_wrong_table_fails_with_exit_1_and_a_rerun_command_for_the_cell() {
    let dir = tempfile::tempdir().expect("tmp");
    let fixture = root().join("scenarios/fixtures/netpol-3x3.yaml");
    let file = dir.path().join("wrong-table.yaml");
    std::fs::write(
        &file,
        WRONG_TABLE.replace("FIXTURE", fixture.to_str().unwrap()),
    )
    .unwrap();
    let report = dir.path().join("r");
    let o = harness(&[
        "run",
        file.to_str().unwrap(),
        "--seed",
        "5",
        "--report-dir",
        report.to_str().unwrap(),
    ]);
    let out = text(&o);
    assert_eq!(o.status.code(), Some(1), "{out}");
    let rerun = String::from_utf8_lossy(&o.stdout)
        .lines()
        .find_map(|l| l.trim().strip_prefix("rerun: ").map(str::to_owned))
        .unwrap_or_else(|| panic!("no rerun command printed:\n{out}"));
    assert!(rerun.contains("--seed 5"), "{rerun}");
    assert!(rerun.contains("x/a \\-> x/b TCP/80"), "{rerun}");
    // Evidence of the failing cell.
    let ev = report.join("evidence/baseline/reachability-1/x_a__x_b__TCP_80");
    for f in ["trace.txt", "probe.pcap", "policies.txt", "oracle.txt"] {
        assert!(ev.join(f).is_file(), "{f} missing in {}", ev.display());
    }
    // The rerun command runs just that cell, and it fails again.
    let words = shell_words(&rerun);
    assert_eq!(words[0], "harness");
    let report2 = dir.path().join("r2");
    let mut args: Vec<&str> = words[1..].iter().map(String::as_str).collect();
    args.extend(["--report-dir", report2.to_str().unwrap()]);
    let o2 = harness(&args);
    assert_eq!(o2.status.code(), Some(1), "{}", text(&o2));
    let results: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(report2.join("results.json")).unwrap())
            .unwrap();
    let cells = &results["scenarios"][0]["steps"][0]["checks"][0]["cells"];
    assert_eq!(cells.as_array().map(Vec::len), Some(1), "{cells:#}");
}

#[test]
fn a_bad_scenario_exits_2_with_its_position() {
    let o = harness(&["run", "harness/scenario/tests/bad/bad-peer.yaml"]);
    let out = text(&o);
    assert_eq!(o.status.code(), Some(2), "{out}");
    assert!(out.contains("bad-peer.yaml:"), "{out}");
    let o = harness(&["run", "scenarios/examples/", "--fault", "no-such-fault"]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
}

/// Splits a POSIX shell command line with single quotes (what the rerun command uses).
fn shell_words(s: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut quoted = false;
    let mut any = false;
    for c in s.chars() {
        match c {
            '\'' => {
                quoted = !quoted;
                any = true;
            }
            ' ' if !quoted => {
                if any || !cur.is_empty() {
                    out.push(std::mem::take(&mut cur));
                }
                any = false;
            }
            c => cur.push(c),
        }
    }
    if any || !cur.is_empty() {
        out.push(cur);
    }
    out
}
