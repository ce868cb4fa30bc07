//! `harness plan` output of every example scenario is pinned: a change in the oracle's
//! verdicts or explanations shows up as a diff to review.
//! Regenerate after an intended change: `BLESS=1 cargo test -p harness-cli --test plan`.

use std::path::{Path, PathBuf};
use std::process::Command;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

#[test]
fn plan_output_of_every_example_is_pinned() {
    let examples = root().join("scenarios/examples");
    let golden_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/plan");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&examples)
        .unwrap()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
        .collect();
    files.sort();
    assert!(files.len() >= 10, "expected at least 10 example scenarios");
    let bless = std::env::var_os("BLESS").is_some();
    let mut stale = Vec::new();
    for f in &files {
        let rel = f.strip_prefix(root()).unwrap();
        let out = Command::new(env!("CARGO_BIN_EXE_harness"))
            .args(["plan", rel.to_str().unwrap(), "--explain", "all"])
            .current_dir(root())
            .env("NO_COLOR", "1")
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(0), "{}: {stderr}", rel.display());
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(
            !text.contains("the oracle expects"),
            "{}: a literal verdict disagrees with the oracle:\n{text}",
            rel.display()
        );
        let golden = golden_dir
            .join(f.file_stem().unwrap())
            .with_extension("txt");
        if bless {
            std::fs::create_dir_all(&golden_dir).unwrap();
            std::fs::write(&golden, &text).unwrap();
        } else if std::fs::read_to_string(&golden).ok().as_deref() != Some(text.as_str()) {
            stale.push(rel.display().to_string());
        }
    }
    assert!(
        stale.is_empty(),
        "plan output changed for {stale:?}; review and regenerate with BLESS=1 cargo test -p harness-cli --test plan"
    );
}
