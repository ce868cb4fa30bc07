//! The `r5.0` profile (CONFORMANCE.md §3, research/contrail.md §3.3-3.5): for each named
//! deviation, a fixture that triggers it alone, the upstream truth table and the r5.0 truth table
//! written by hand from the shipped translator's behaviour, and the check that the deviation's
//! name appears exactly where it should — in every cell where the two tables differ (and there
//! it is the only deviation listed), and in no other cell.
//!
//! Rows are the nine fixture pods `x/a … z/c`; columns are the nine pods or the non-pod
//! destination a deviation is about.

mod common;

use common::*;
use harness_oracle::Deviation;
use harness_scenario::{PortSpec, Profile};
use serde_json::{Value, json};

struct Table {
    port: &'static str,
    /// Destinations; empty = the nine pods.
    to: Vec<&'static str>,
    upstream: Vec<&'static str>,
    r50: Vec<&'static str>,
}

struct Case {
    deviation: Deviation,
    what: &'static str,
    objects: Vec<Value>,
    tables: Vec<Table>,
}

fn t(port: &'static str, upstream: [&'static str; 9], r50: [&'static str; 9]) -> Table {
    Table {
        port,
        to: Vec::new(),
        upstream: upstream.to_vec(),
        r50: r50.to_vec(),
    }
}

fn column(to: &'static str, port: &'static str, upstream: char, r50: char) -> Table {
    let cell = |c: char| -> &'static str {
        match c {
            '.' => ".",
            'X' => "X",
            _ => "R",
        }
    };
    Table {
        port,
        to: vec![to],
        upstream: vec![cell(upstream); 9],
        r50: vec![cell(r50); 9],
    }
}

const OPEN: [&str; 9] = ["... ... ..."; 9];
const INTO_XA_DENIED: [&str; 9] = ["X.. ... ..."; 9];

fn cases(a: &Addrs) -> Vec<Case> {
    vec![
        Case {
            deviation: Deviation::ClusterWideFirstMatch,
            what: "x allows all egress and denies all ingress: x's egress allow is the first match inside x too",
            objects: vec![
                np(
                    "x",
                    "egress-all",
                    json!({"podSelector": {}, "policyTypes": ["Egress"], "egress": [{}]}),
                ),
                np(
                    "x",
                    "deny-in",
                    json!({"podSelector": {}, "policyTypes": ["Ingress"]}),
                ),
            ],
            tables: vec![t(
                "TCP/80",
                ["XXX ... ..."; 9],
                [
                    "... ... ...",
                    "... ... ...",
                    "... ... ...",
                    "XXX ... ...",
                    "XXX ... ...",
                    "XXX ... ...",
                    "XXX ... ...",
                    "XXX ... ...",
                    "XXX ... ...",
                ],
            )],
        },
        Case {
            deviation: Deviation::ClusterWideFirstMatch,
            what: "the wiki's example: x allows all ingress and denies all egress; its pods still reach each other",
            objects: vec![
                np("x", "allow-in", json!({"podSelector": {}, "ingress": [{}]})),
                np(
                    "x",
                    "deny-out",
                    json!({"podSelector": {}, "policyTypes": ["Egress"]}),
                ),
            ],
            tables: vec![t(
                "UDP/81",
                [
                    "XXX XXX XXX",
                    "XXX XXX XXX",
                    "XXX XXX XXX",
                    "... ... ...",
                    "... ... ...",
                    "... ... ...",
                    "... ... ...",
                    "... ... ...",
                    "... ... ...",
                ],
                [
                    "... XXX XXX",
                    "... XXX XXX",
                    "... XXX XXX",
                    "... ... ...",
                    "... ... ...",
                    "... ... ...",
                    "... ... ...",
                    "... ... ...",
                    "... ... ...",
                ],
            )],
        },
        Case {
            deviation: Deviation::MatchExpressionsIgnored,
            what: "a podSelector `pod In [a]` loses its expression and selects all of x",
            objects: vec![np(
                "x",
                "deny-a",
                json!({"podSelector": {"matchExpressions": [{"key": "pod", "operator": "In", "values": ["a"]}]},
                       "policyTypes": ["Ingress"]}),
            )],
            tables: vec![t("TCP/80", INTO_XA_DENIED, ["XXX ... ..."; 9])],
        },
        Case {
            deviation: Deviation::EmptySelectorAny,
            what: "from `podSelector: {}` yields no rule, so the rule admits any source",
            objects: vec![np(
                "x",
                "a-from-x",
                json!({"podSelector": pod_sel("a"), "ingress": [{"from": [{"podSelector": {}}]}]}),
            )],
            tables: vec![t(
                "TCP/80",
                [
                    "... ... ...",
                    "... ... ...",
                    "... ... ...",
                    "X.. ... ...",
                    "X.. ... ...",
                    "X.. ... ...",
                    "X.. ... ...",
                    "X.. ... ...",
                    "X.. ... ...",
                ],
                OPEN,
            )],
        },
        Case {
            deviation: Deviation::PeerSelectorsOr,
            what: "{namespaceSelector y, podSelector b} admits all of y and b of x",
            objects: vec![np(
                "x",
                "a-from-y-b",
                json!({"podSelector": pod_sel("a"), "ingress": [{"from": [
                    {"namespaceSelector": ns_sel("y"), "podSelector": pod_sel("b")}]}]}),
            )],
            tables: vec![t(
                "TCP/80",
                [
                    "X.. ... ...",
                    "X.. ... ...",
                    "X.. ... ...",
                    "X.. ... ...",
                    "... ... ...",
                    "X.. ... ...",
                    "X.. ... ...",
                    "X.. ... ...",
                    "X.. ... ...",
                ],
                [
                    "X.. ... ...",
                    "... ... ...",
                    "X.. ... ...",
                    "... ... ...",
                    "... ... ...",
                    "... ... ...",
                    "X.. ... ...",
                    "X.. ... ...",
                    "X.. ... ...",
                ],
            )],
        },
        Case {
            deviation: Deviation::ProtocolDefaultAny,
            what: "`port: 80` without protocol admits UDP/80 too",
            objects: vec![np(
                "x",
                "a-80",
                json!({"podSelector": pod_sel("a"), "ingress": [{"ports": [{"port": 80}]}]}),
            )],
            tables: vec![
                t("UDP/80", INTO_XA_DENIED, OPEN),
                t("TCP/80", OPEN, OPEN),
                t("TCP/81", INTO_XA_DENIED, INTO_XA_DENIED),
            ],
        },
        Case {
            deviation: Deviation::SctpUnsupported,
            what: "an SCTP port makes the policy untranslatable, so x/a is not isolated",
            objects: vec![np(
                "x",
                "a-sctp",
                json!({"podSelector": pod_sel("a"), "ingress": [{"ports": [{"protocol": "SCTP", "port": 80}]}]}),
            )],
            tables: vec![t("TCP/80", INTO_XA_DENIED, OPEN), t("SCTP/80", OPEN, OPEN)],
        },
        Case {
            deviation: Deviation::NamedPortsUnresolved,
            what: "`port: serve-80-tcp` matches nothing",
            objects: vec![np(
                "x",
                "a-named",
                json!({"podSelector": pod_sel("a"), "ingress": [{"ports": [{"protocol": "TCP", "port": "serve-80-tcp"}]}]}),
            )],
            tables: vec![
                t("TCP/80", OPEN, INTO_XA_DENIED),
                t("TCP/81", INTO_XA_DENIED, INTO_XA_DENIED),
            ],
        },
        Case {
            deviation: Deviation::ExceptPreemptsAllow,
            what: "the except deny of one policy pre-empts another policy's namespace allow",
            objects: vec![
                np(
                    "x",
                    "a-cidr",
                    json!({"podSelector": pod_sel("a"), "ingress": [{"from": [
                        {"ipBlock": {"cidr": "10.64.0.0/16", "except": [a.host("y", "b")]}}]}]}),
                ),
                np(
                    "x",
                    "a-from-y",
                    json!({"podSelector": pod_sel("a"), "ingress": [{"from": [{"namespaceSelector": ns_sel("y")}]}]}),
                ),
            ],
            tables: vec![t(
                "TCP/80",
                OPEN,
                [
                    "... ... ...",
                    "... ... ...",
                    "... ... ...",
                    "... ... ...",
                    "X.. ... ...",
                    "... ... ...",
                    "... ... ...",
                    "... ... ...",
                    "... ... ...",
                ],
            )],
        },
        Case {
            deviation: Deviation::EndPortIgnored,
            what: "80-81 allows only 80",
            objects: vec![np(
                "x",
                "a-80-81",
                json!({"podSelector": pod_sel("a"), "ingress": [{"ports": [{"protocol": "TCP", "port": 80, "endPort": 81}]}]}),
            )],
            tables: vec![t("TCP/81", OPEN, INTO_XA_DENIED), t("TCP/80", OPEN, OPEN)],
        },
        Case {
            deviation: Deviation::LabelsFlattened,
            what: "a namespaceSelector on a pod label matches pods carrying it",
            objects: vec![np(
                "x",
                "a-from-ns-pod-b",
                json!({"podSelector": pod_sel("a"), "ingress": [{"from": [
                    {"namespaceSelector": {"matchLabels": {"pod": "b"}}}]}]}),
            )],
            tables: vec![t(
                "TCP/80",
                INTO_XA_DENIED,
                [
                    "X.. ... ...",
                    "... ... ...",
                    "X.. ... ...",
                    "X.. ... ...",
                    "... ... ...",
                    "X.. ... ...",
                    "X.. ... ...",
                    "... ... ...",
                    "X.. ... ...",
                ],
            )],
        },
        Case {
            deviation: Deviation::LabelsFlattened,
            what: "a namespaceSelector `namespace=y` matches the pods' namespace tag",
            objects: vec![np(
                "x",
                "a-from-tag-y",
                json!({"podSelector": pod_sel("a"), "ingress": [{"from": [
                    {"namespaceSelector": {"matchLabels": {"namespace": "y"}}}]}]}),
            )],
            tables: vec![t(
                "TCP/80",
                INTO_XA_DENIED,
                [
                    "X.. ... ...",
                    "X.. ... ...",
                    "X.. ... ...",
                    "... ... ...",
                    "... ... ...",
                    "... ... ...",
                    "X.. ... ...",
                    "X.. ... ...",
                    "X.. ... ...",
                ],
            )],
        },
        Case {
            deviation: Deviation::LabelsFlattened,
            what: "a podSelector `namespace=z` is overwritten by the policy's namespace tag",
            objects: vec![np(
                "x",
                "a-from-pod-tag-z",
                json!({"podSelector": pod_sel("a"), "ingress": [{"from": [
                    {"podSelector": {"matchLabels": {"namespace": "z"}}}]}]}),
            )],
            tables: vec![t(
                "TCP/80",
                INTO_XA_DENIED,
                [
                    "... ... ...",
                    "... ... ...",
                    "... ... ...",
                    "X.. ... ...",
                    "X.. ... ...",
                    "X.. ... ...",
                    "X.. ... ...",
                    "X.. ... ...",
                    "X.. ... ...",
                ],
            )],
        },
        Case {
            deviation: Deviation::LabelsFlattened,
            what: "a policy podSelector `namespace=other` selects every pod of the policy's namespace",
            objects: vec![np(
                "x",
                "deny-tag-other",
                json!({"podSelector": {"matchLabels": {"namespace": "other"}}, "policyTypes": ["Ingress"]}),
            )],
            tables: vec![t("TCP/80", OPEN, ["XXX ... ..."; 9])],
        },
        Case {
            deviation: Deviation::EgressRuleNameCollision,
            what: "the second egress entry's rule overwrites the first's",
            objects: vec![np(
                "x",
                "a-to-b-and-c",
                json!({"podSelector": pod_sel("a"), "policyTypes": ["Egress"], "egress": [
                    {"to": [{"podSelector": pod_sel("b")}], "ports": [{"protocol": "TCP", "port": 80}]},
                    {"to": [{"podSelector": pod_sel("c")}], "ports": [{"protocol": "TCP", "port": 80}]}]}),
            )],
            tables: vec![t(
                "TCP/80",
                [
                    "X.. XXX XXX",
                    "... ... ...",
                    "... ... ...",
                    "... ... ...",
                    "... ... ...",
                    "... ... ...",
                    "... ... ...",
                    "... ... ...",
                    "... ... ...",
                ],
                [
                    "XX. XXX XXX",
                    "... ... ...",
                    "... ... ...",
                    "... ... ...",
                    "... ... ...",
                    "... ... ...",
                    "... ... ...",
                    "... ... ...",
                    "... ... ...",
                ],
            )],
        },
        Case {
            deviation: Deviation::IngressVipSelected,
            what: "a namespace-wide deny-all ingress in x also gates x's ingress VIP",
            objects: vec![
                json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "s-x-a", "namespace": "x"},
                       "spec": {"selector": {"pod": "a"}, "ports": [{"port": 80, "targetPort": "serve-80-tcp"}]}}),
                json!({"apiVersion": "networking.k8s.io/v1", "kind": "Ingress", "metadata": {"name": "ing", "namespace": "x"},
                       "spec": {"defaultBackend": {"service": {"name": "s-x-a", "port": {"number": 80}}}}}),
                np(
                    "x",
                    "deny-all",
                    json!({"podSelector": {}, "policyTypes": ["Ingress"]}),
                ),
                // Unrelated triggers of other deviations: they must not be blamed for the VIP.
                np(
                    "z",
                    "expr",
                    json!({"podSelector": {"matchExpressions": [{"key": "pod", "operator": "In", "values": ["a"]}]},
                           "ingress": [{"from": [{"podSelector": {}}], "ports": [{"port": 80}]}]}),
                ),
            ],
            tables: vec![
                column("ingress:x/ing", "TCP/80", '.', 'X'),
                column("svc:x/s-x-a", "TCP/80", 'X', 'X'),
            ],
        },
        Case {
            deviation: Deviation::SctpServiceAsUdp,
            what: "an SCTP service port becomes a UDP listener",
            objects: vec![
                json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "sctp", "namespace": "x"},
                       "spec": {"selector": {"pod": "a"}, "ports": [{"port": 80, "protocol": "SCTP"}, {"name": "tcp", "port": 81}]}}),
            ],
            tables: vec![
                column("svc:x/sctp", "SCTP/80", '.', 'X'),
                column("svc:x/sctp", "TCP/81", '.', '.'),
                t("SCTP/80", OPEN, OPEN),
            ],
        },
    ]
}

#[test]
fn every_deviation_has_a_case() {
    let a = Addrs::new();
    let covered: Vec<Deviation> = cases(&a).iter().map(|c| c.deviation).collect();
    for d in Deviation::ALL {
        assert!(covered.contains(&d), "no case for {d}");
    }
}

#[test]
fn each_deviation_is_named_exactly_where_it_changes_the_verdict() {
    let a = Addrs::new();
    let mut failures = Vec::new();
    for case in cases(&a) {
        let d = case.deviation;
        let cluster = build(&case.objects);
        for table in &case.tables {
            let port: PortSpec = table.port.parse().unwrap();
            let to: Vec<String> = if table.to.is_empty() {
                labels()
            } else {
                table.to.iter().map(|s| s.to_string()).collect()
            };
            let width = to.len();
            let up_want = parse_rows(&table.upstream, width);
            let r50_want = parse_rows(&table.r50, width);
            let up = Grid::evaluate(&cluster, Profile::Upstream, &to, &port);
            let r50 = Grid::evaluate(&cluster, Profile::R50, &to, &port);
            let head = format!("{d} ({}) {port}", case.what);
            for (name, grid, want) in [("upstream", &up, &up_want), ("r5.0", &r50, &r50_want)] {
                let got = grid.symbols();
                if got != *want {
                    failures.push(format!(
                        "{head}: the {name} verdicts disagree with the table (! marks a cell)\nexpected:\n{}oracle:\n{}",
                        show(&to, want, None),
                        show(&to, &got, Some(want))
                    ));
                }
            }
            let rows = labels();
            for (i, row) in r50.cells.iter().enumerate() {
                for (j, e) in row.iter().enumerate() {
                    let text = e.explanation.to_string();
                    let cell = format!("{head} {} -> {}", rows[i], to[j]);
                    if up_want[i][j] != r50_want[i][j] {
                        if e.deviations != [d] {
                            failures.push(format!(
                                "{cell}: expected exactly [{d}], got {:?}: {text}",
                                e.deviations
                            ));
                        }
                        if !text.contains(d.name()) || !text.contains(d.description()) {
                            failures.push(format!("{cell}: explanation does not name {d}: {text}"));
                        }
                    } else {
                        if !e.deviations.is_empty() {
                            failures.push(format!(
                                "{cell}: agrees with upstream but lists {:?}: {text}",
                                e.deviations
                            ));
                        }
                        if text.contains("r5.0 deviation") {
                            failures.push(format!("{cell}: names a deviation: {text}"));
                        }
                    }
                }
            }
            for row in &up.cells {
                for e in row {
                    if !e.deviations.is_empty() {
                        failures.push(format!("{head}: upstream lists {:?}", e.deviations));
                    }
                }
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
