//! The malformed-scenario corpus: every file must fail with a position, a message and a hint,
//! quickly, without panicking.

use std::path::Path;
use std::time::{Duration, Instant};

use harness_scenario::load::load_file;

/// (file, line, column, a fragment of the message). Column 0 means "any column".
const EXPECTED: &[(&str, u64, u64, &str)] = &[
    ("alias-bomb.yaml", 12, 14, "aliases expand to too much"),
    ("bad-address.yaml", 4, 27, "IPv4"),
    ("bad-binding.yaml", 10, 32, "did you mean `podIP`"),
    ("bad-cidr.yaml", 3, 16, "bad CIDR"),
    ("bad-duration.yaml", 8, 19, "bad duration"),
    ("bad-peer.yaml", 6, 24, "bad peer `xa`"),
    ("bad-rbac-request.yaml", 7, 21, "did you mean `get`"),
    (
        "bad-table-row.yaml",
        10,
        25,
        "has 3 cells but the header has 2 columns",
    ),
    ("bad-yaml.yaml", 1, 7, "expected string"),
    ("deep-nesting.yaml", 6, 0, "nests too deeply"),
    ("duplicate-keys.yaml", 3, 1, "duplicate key `name`"),
    ("empty.yaml", 1, 1, "empty"),
    ("garbage.yaml", 2, 0, "not UTF-8"),
    ("include-broken.yaml", 6, 1, "bad metadata.namespace"),
    ("include-cycle.yaml", 1, 1, "include cycle"),
    ("label-not-string.yaml", 3, 5, "not a string"),
    ("manifest-without-kind.yaml", 3, 5, "without `kind`"),
    (
        "manifest-without-name.yaml",
        3,
        5,
        "without `metadata.name`",
    ),
    ("missing-include.yaml", 3, 5, "does not exist"),
    ("multiple-documents.yaml", 3, 1, "one YAML document"),
    ("not-a-mapping.yaml", 1, 1, "mapping"),
    ("only-comments.yaml", 1, 1, "empty"),
    ("port-out-of-range.yaml", 7, 19, "out of range"),
    ("service-as-source.yaml", 5, 9, "cannot be a source"),
    ("table-and-verdict.yaml", 5, 9, "both `verdict` and `table`"),
    ("tabs.yaml", 3, 2, "tabs"),
    ("undeclared-host.yaml", 5, 9, "`host:nope` is not declared"),
    (
        "unknown-check-kind.yaml",
        5,
        9,
        "unknown value `reachabilty`",
    ),
    (
        "unknown-fault.yaml",
        3,
        12,
        "unknown value `isolation-leek`",
    ),
    ("unknown-field.yaml", 1, 1, "unknown field `nmae`"),
    ("unknown-nested-field.yaml", 7, 11, "unknown field `prots`"),
    ("unknown-protocol.yaml", 7, 19, "did you mean `TCP`"),
    ("unknown-table-symbol.yaml", 9, 21, "unknown cell `Y`"),
    ("unknown-verdict.yaml", 8, 20, "unknown value `permit`"),
    ("wrong-type.yaml", 3, 10, "invalid u32"),
    (
        "except-outside-matrix.yaml",
        5,
        9,
        "outside the check's matrix",
    ),
    ("bad-backend.yaml", 5, 9, "is not NAMESPACE/POD"),
    ("bad-chain-instance.yaml", 3, 5, "is not NAMESPACE/POD"),
    (
        "duplicate-external.yaml",
        3,
        3,
        "two external clients share a name",
    ),
    ("nameless-step.yaml", 3, 5, "has no letters or digits"),
];

fn corpus() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/bad")
}

#[test]
fn every_bad_file_is_positioned_and_hinted() {
    for (file, line, column, fragment) in EXPECTED {
        let path = corpus().join(file);
        let started = Instant::now();
        let err = match load_file(&path) {
            Ok(_) => panic!("{file}: loaded, but it is malformed"),
            Err(e) => e,
        };
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "{file}: took {:?}",
            started.elapsed()
        );
        assert_eq!(err.line, *line, "{file}: line of {err}");
        if *column > 0 {
            assert_eq!(err.column, *column, "{file}: column of {err}");
        }
        assert!(
            err.message.contains(fragment),
            "{file}: message `{}` lacks `{fragment}`",
            err.message
        );
        assert!(
            err.hint.as_deref().is_some_and(|h| !h.is_empty()),
            "{file}: no hint in {err}"
        );
        let rendered = err.to_string();
        assert!(
            rendered.contains(&format!("{}:{}", err.file.display(), err.line)),
            "{file}: {rendered}"
        );
    }
}

#[test]
fn the_corpus_has_no_untested_file() {
    let mut names: Vec<String> = std::fs::read_dir(corpus())
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.path().is_file())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    let listed: Vec<&str> = EXPECTED.iter().map(|e| e.0).collect();
    for n in &names {
        assert!(
            listed.contains(&n.as_str()),
            "{n} is in tests/bad but not in EXPECTED"
        );
    }
}

#[test]
fn diagnostics_show_the_line_with_a_caret() {
    let err = load_file(&corpus().join("unknown-nested-field.yaml")).unwrap_err();
    let text = err.to_string();
    assert!(text.contains("7 |           prots: [TCP/80]"), "{text}");
    assert!(text.contains("  |           ^"), "{text}");
    assert!(text.contains("help: did you mean `ports`?"), "{text}");
}
