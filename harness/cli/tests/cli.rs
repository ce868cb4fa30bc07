//! End-to-end tests of the `harness` binary on real scenario files: exit codes, messages,
//! help, schema.

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

fn text(o: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

#[test]
fn lint_accepts_the_shipped_scenarios() {
    let o = harness(&["lint", "scenarios/"]);
    let (out, err) = text(&o);
    assert_eq!(o.status.code(), Some(0), "stdout:\n{out}\nstderr:\n{err}");
    assert!(
        out.lines().count() >= 10,
        "expected at least 10 scenarios, got:\n{out}"
    );
    assert!(out.lines().all(|l| l.starts_with("ok ")), "{out}");
}

#[test]
fn lint_rejects_every_bad_file_with_exit_2_and_a_position() {
    let dir = root().join("harness/scenario/tests/bad");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    assert!(files.len() >= 20);
    for f in files {
        let o = harness(&["lint", f.to_str().unwrap()]);
        let (_, err) = text(&o);
        assert_eq!(o.status.code(), Some(2), "{}: {err}", f.display());
        let name = f.file_name().unwrap().to_string_lossy().into_owned();
        assert!(err.contains("error: "), "{name}: {err}");
        assert!(err.contains("help: "), "{name} has no hint: {err}");
        assert!(!err.contains("panicked"), "{name}: {err}");
        // file:line:col of the offending place (the included file for include errors).
        let positioned = err.lines().any(|l| {
            l.trim_start().starts_with("--> ")
                && l.rsplit(':')
                    .take(2)
                    .all(|n| n.trim().parse::<u64>().is_ok())
        });
        assert!(positioned, "{name}: no file:line:col in\n{err}");
    }
}

#[test]
fn lint_reports_missing_paths_as_bad_input() {
    let o = harness(&["lint", "no/such/dir"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(text(&o).1.contains("no such file or directory"));
}

#[test]
fn bad_arguments_exit_2_and_help_exits_0() {
    assert_eq!(harness(&["frobnicate"]).status.code(), Some(2));
    assert_eq!(harness(&["lint"]).status.code(), Some(2));
    assert_eq!(harness(&["--help"]).status.code(), Some(0));
    assert_eq!(harness(&["--version"]).status.code(), Some(0));
}

#[test]
fn every_verb_has_an_example_in_its_help() {
    for verb in [
        "lint",
        "list",
        "schema",
        "plan",
        "bench",
        "kube-sim",
        "contrail-mock",
    ] {
        let o = harness(&[verb, "--help"]);
        let (out, _) = text(&o);
        assert_eq!(o.status.code(), Some(0), "{verb}");
        assert!(
            out.contains("Example:"),
            "{verb} --help has no example:\n{out}"
        );
        assert!(
            out.contains(&format!("harness {verb}")),
            "{verb} --help example does not use the verb:\n{out}"
        );
    }
}

#[test]
fn schema_prints_the_committed_schema() {
    let o = harness(&["schema"]);
    assert_eq!(o.status.code(), Some(0));
    let committed = std::fs::read_to_string(root().join("schema/scenario.schema.json")).unwrap();
    assert_eq!(text(&o).0, committed);
}

#[test]
fn list_filters_by_label_and_regex() {
    let o = harness(&[
        "list",
        "scenarios/",
        "--label",
        "netpol && ingress",
        "--json",
    ]);
    assert_eq!(o.status.code(), Some(0));
    let cases: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let cases = cases.as_array().unwrap();
    assert!(!cases.is_empty());
    for c in cases {
        let labels: Vec<&str> = c["labels"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|l| l.as_str())
            .collect();
        assert!(
            labels.contains(&"netpol") && labels.contains(&"ingress"),
            "{c}"
        );
    }
    let o = harness(&[
        "list",
        "scenarios/",
        "--only",
        "^netpol-deny-all-ingress/deny-all-ingress-in-x/contrail-1$",
        "--json",
    ]);
    let cases: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(cases.as_array().unwrap().len(), 1);
    assert_eq!(
        cases[0]["checks"],
        serde_json::json!(["netpol-deny-all-ingress/deny-all-ingress-in-x/contrail-1"])
    );
    let o = harness(&["list", "scenarios/", "--label", "a &&"]);
    assert_eq!(o.status.code(), Some(2));
    let o = harness(&["list", "scenarios/", "--only", "("]);
    assert_eq!(o.status.code(), Some(2));
}

#[test]
fn no_color_means_no_escape_codes() {
    let o = harness(&["lint", "harness/scenario/tests/bad/unknown-field.yaml"]);
    assert!(!o.stderr.contains(&0x1b), "escape codes despite NO_COLOR");
}
