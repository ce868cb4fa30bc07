//! Perturb valid scenarios at random: loading may fail, but never panics or hangs.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use proptest::prelude::*;

fn valid_scenarios() -> Vec<(PathBuf, String)> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scenarios");
    let mut out = Vec::new();
    let mut stack = vec![root];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() && !p.ends_with("fixtures") {
                stack.push(p);
            } else if p.extension().is_some_and(|x| x == "yaml")
                && let Ok(t) = std::fs::read_to_string(&p)
            {
                out.push((p, t));
            }
        }
    }
    out.sort();
    assert!(!out.is_empty(), "no scenarios found to mutate");
    out
}

#[derive(Debug, Clone)]
enum Mutation {
    DeleteByte(usize),
    InsertByte(usize, u8),
    ReplaceByte(usize, u8),
    Truncate(usize),
    DuplicateLine(usize),
    SwapLines(usize, usize),
    IndentLine(usize, usize),
    InsertToken(usize, &'static str),
}

const TOKENS: &[&str] = &[
    "*a",
    "&a",
    "{{",
    "}}",
    "- ",
    ": ",
    "[",
    "]",
    "{",
    "}",
    "\t",
    "'",
    "\"",
    "|",
    ">",
    "---\n",
    "!!binary ",
    "<<: *a",
    "~",
    "null",
    "0x",
    "\u{feff}",
    "%YAML 1.2\n",
];

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        any::<usize>().prop_map(Mutation::DeleteByte),
        (any::<usize>(), any::<u8>()).prop_map(|(a, b)| Mutation::InsertByte(a, b)),
        (any::<usize>(), any::<u8>()).prop_map(|(a, b)| Mutation::ReplaceByte(a, b)),
        any::<usize>().prop_map(Mutation::Truncate),
        any::<usize>().prop_map(Mutation::DuplicateLine),
        (any::<usize>(), any::<usize>()).prop_map(|(a, b)| Mutation::SwapLines(a, b)),
        (any::<usize>(), 0usize..6).prop_map(|(a, b)| Mutation::IndentLine(a, b)),
        (any::<usize>(), proptest::sample::select(TOKENS))
            .prop_map(|(a, t)| Mutation::InsertToken(a, t)),
    ]
}

fn apply(text: &str, muts: &[Mutation]) -> Vec<u8> {
    let mut bytes = text.as_bytes().to_vec();
    for m in muts {
        let n = bytes.len().max(1);
        match *m {
            Mutation::DeleteByte(i) if !bytes.is_empty() => {
                bytes.remove(i % bytes.len());
            }
            Mutation::InsertByte(i, b) => bytes.insert(i % n.min(bytes.len() + 1), b),
            Mutation::ReplaceByte(i, b) if !bytes.is_empty() => {
                let l = bytes.len();
                bytes[i % l] = b;
            }
            Mutation::Truncate(i) => bytes.truncate(i % n),
            Mutation::InsertToken(i, t) => {
                let at = i % (bytes.len() + 1);
                bytes.splice(at..at, t.bytes());
            }
            Mutation::DuplicateLine(i) | Mutation::SwapLines(i, _) | Mutation::IndentLine(i, _) => {
                let s = String::from_utf8_lossy(&bytes).into_owned();
                let mut lines: Vec<String> = s.lines().map(str::to_string).collect();
                if lines.is_empty() {
                    continue;
                }
                let a = i % lines.len();
                match *m {
                    Mutation::DuplicateLine(_) => lines.insert(a, lines[a].clone()),
                    Mutation::SwapLines(_, j) => {
                        let b = j % lines.len();
                        lines.swap(a, b);
                    }
                    Mutation::IndentLine(_, k) => {
                        lines[a] = format!("{}{}", " ".repeat(k), lines[a])
                    }
                    _ => {}
                }
                bytes = lines.join("\n").into_bytes();
            }
            _ => {}
        }
    }
    bytes
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 400, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn mutated_scenarios_never_panic(pick in any::<usize>(), muts in proptest::collection::vec(mutation(), 1..6)) {
        let scenarios = valid_scenarios();
        let (path, text) = &scenarios[pick % scenarios.len()];
        let mutated = apply(text, &muts);
        let started = Instant::now();
        // Loading goes through the same entry point as files (includes resolve next to the original).
        let text = String::from_utf8_lossy(&mutated);
        let result = std::panic::catch_unwind(|| harness_scenario::load::load_str(&text, path));
        prop_assert!(result.is_ok(), "panicked on {muts:?}");
        prop_assert!(started.elapsed() < Duration::from_secs(5), "took {:?}", started.elapsed());
        if let Ok(Err(d)) = result {
            prop_assert!(!d.message.is_empty());
            prop_assert!(d.hint.is_some(), "no hint: {d}");
        }
    }
}
