//! Cyclonus-style NetworkPolicy v1 cases on the upstream e2e fixture (CONFORMANCE.md §2):
//! namespaces x, y, z (with the automatic `kubernetes.io/metadata.name` label), pods a, b, c
//! labelled `pod=<name>`, servers on 80 and 81 over TCP, UDP and SCTP with container ports named
//! `serve-<port>-<proto>`.
//!
//! Every case is a set of objects (policies, sometimes a relabelled namespace or pod, or a pod
//! with other port names) and the expected 9×9 truth table for one or more ports, written by hand
//! from the Kubernetes semantics — never copied from the oracle. Rows are sources, columns
//! destinations, both in the order `x/a x/b x/c  y/a y/b y/c  z/a z/b z/c`; `.` allow, `X` deny,
//! `R` reject (policies admit the probe but nothing listens on that port). Loopback cells (the
//! diagonal) follow the policy semantics like any other cell and are flagged `loopback`.
//!
//! Besides the tables, every cell must carry an explanation naming the deciding policy (and rule
//! and peer when one admits), and the `r5.0` profile may differ from a table only in cells whose
//! explanation names the deviations responsible (CONFORMANCE.md §3).

mod common;

use std::collections::BTreeSet;

use common::*;
use harness_oracle::{DirectionOutcome, Expectation, Fact, PolicyFact, Verdict};
use harness_scenario::{PortSpec, Profile};
use serde_json::{Value, json};

/// z/c with its UDP port names swapped: `serve-81-udp` is UDP/80 and `serve-80-udp` UDP/81, so a
/// named port resolved on the wrong pod gives a different number.
fn zc_swapped_udp_names() -> Value {
    pod_with_ports(
        "z",
        "c",
        &[
            (80, "TCP", "serve-80-tcp"),
            (81, "TCP", "serve-81-tcp"),
            (81, "UDP", "serve-80-udp"),
            (80, "UDP", "serve-81-udp"),
            (80, "SCTP", "serve-80-sctp"),
            (81, "SCTP", "serve-81-sctp"),
        ],
    )
}

// ------------------------------------------------------------------ cases

struct Case {
    name: &'static str,
    objects: Vec<Value>,
    /// (port, rows from x/a to z/c); spaces inside a row are ignored.
    tables: Vec<(&'static str, [&'static str; 9])>,
}

const OPEN: [&str; 9] = ["... ... ..."; 9];

fn cases(a: &Addrs) -> Vec<Case> {
    vec![
        Case {
            name: "no policy: everything open, every protocol",
            objects: vec![],
            tables: vec![("TCP/80", OPEN), ("UDP/81", OPEN), ("SCTP/80", OPEN)],
        },
        Case {
            name: "deny-all ingress (policyTypes Ingress)",
            objects: vec![np(
                "x",
                "deny-all",
                json!({"podSelector": {}, "policyTypes": ["Ingress"]}),
            )],
            tables: vec![
                ("TCP/80", ["XXX ... ..."; 9]),
                ("UDP/80", ["XXX ... ..."; 9]),
            ],
        },
        Case {
            name: "deny-all ingress with policyTypes omitted and no rules",
            objects: vec![np("x", "deny-all", json!({"podSelector": {}}))],
            tables: vec![("TCP/81", ["XXX ... ..."; 9])],
        },
        Case {
            name: "deny-all ingress: a port nothing listens on is rejected where admitted, denied where not",
            objects: vec![np("x", "deny-all", json!({"podSelector": {}}))],
            tables: vec![("TCP/82", ["XXX RRR RRR"; 9])],
        },
        Case {
            name: "deny-all egress (policyTypes Egress, no egress rules)",
            objects: vec![np(
                "x",
                "deny-all-egress",
                json!({"podSelector": {}, "policyTypes": ["Egress"]}),
            )],
            tables: vec![(
                "TCP/80",
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
            )],
        },
        Case {
            name: "deny-all both directions",
            objects: vec![np(
                "x",
                "deny-all",
                json!({"podSelector": {}, "policyTypes": ["Ingress", "Egress"]}),
            )],
            tables: vec![(
                "UDP/81",
                [
                    "XXX XXX XXX",
                    "XXX XXX XXX",
                    "XXX XXX XXX",
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
            name: "allow-all ingress (one empty rule)",
            objects: vec![np(
                "x",
                "allow-all",
                json!({"podSelector": {}, "ingress": [{}]}),
            )],
            tables: vec![("TCP/80", OPEN), ("SCTP/81", OPEN)],
        },
        Case {
            name: "allow-all egress (one empty rule)",
            objects: vec![np(
                "x",
                "allow-all-egress",
                json!({"podSelector": {}, "policyTypes": ["Egress"], "egress": [{}]}),
            )],
            tables: vec![("UDP/80", OPEN)],
        },
        Case {
            name: "deny-all and allow-all ingress in one namespace: policies are OR'd",
            objects: vec![
                np("x", "deny-all", json!({"podSelector": {}})),
                np(
                    "x",
                    "allow-all",
                    json!({"podSelector": {}, "ingress": [{}]}),
                ),
            ],
            tables: vec![("TCP/80", OPEN)],
        },
        Case {
            name: "podSelector alone admits only pods of the policy's namespace",
            objects: vec![np(
                "x",
                "a-from-b",
                json!({"podSelector": pod_sel("a"), "ingress": [{"from": [{"podSelector": pod_sel("b")}]}]}),
            )],
            tables: vec![(
                "TCP/80",
                [
                    "X.. ... ...",
                    "... ... ...",
                    "X.. ... ...",
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
            name: "namespaceSelector alone admits every pod of the selected namespaces",
            objects: vec![np(
                "x",
                "a-from-y",
                json!({"podSelector": pod_sel("a"), "ingress": [{"from": [{"namespaceSelector": ns_sel("y")}]}]}),
            )],
            tables: vec![(
                "TCP/80",
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
            name: "namespaceSelector and podSelector in one peer are AND'd",
            objects: vec![np(
                "x",
                "a-from-y-b",
                json!({"podSelector": pod_sel("a"), "ingress": [{"from": [
                    {"namespaceSelector": ns_sel("y"), "podSelector": pod_sel("b")}]}]}),
            )],
            tables: vec![(
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
            )],
        },
        Case {
            name: "namespaceSelector and podSelector as two peers are OR'd",
            objects: vec![np(
                "x",
                "a-from-y-or-b",
                json!({"podSelector": pod_sel("a"), "ingress": [{"from": [
                    {"namespaceSelector": ns_sel("y")}, {"podSelector": pod_sel("b")}]}]}),
            )],
            tables: vec![(
                "TCP/80",
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
            name: "namespaceSelector {} with a podSelector: that pod label in every namespace",
            objects: vec![np(
                "x",
                "a-from-any-c",
                json!({"podSelector": pod_sel("a"), "ingress": [{"from": [
                    {"namespaceSelector": {}, "podSelector": pod_sel("c")}]}]}),
            )],
            tables: vec![(
                "TCP/80",
                [
                    "X.. ... ...",
                    "X.. ... ...",
                    "... ... ...",
                    "X.. ... ...",
                    "X.. ... ...",
                    "... ... ...",
                    "X.. ... ...",
                    "X.. ... ...",
                    "... ... ...",
                ],
            )],
        },
        Case {
            name: "namespaceSelector {} alone: every pod of every namespace",
            objects: vec![np(
                "x",
                "a-from-all-pods",
                json!({"podSelector": pod_sel("a"), "ingress": [{"from": [{"namespaceSelector": {}}]}]}),
            )],
            tables: vec![("TCP/80", OPEN)],
        },
        Case {
            name: "podSelector {} alone: every pod of the policy's namespace only",
            objects: vec![np(
                "x",
                "a-from-x",
                json!({"podSelector": pod_sel("a"), "ingress": [{"from": [{"podSelector": {}}]}]}),
            )],
            tables: vec![(
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
            )],
        },
        Case {
            name: "matchExpressions In on the policy's podSelector and on a namespaceSelector",
            objects: vec![np(
                "y",
                "ab-from-x-z",
                json!({
                    "podSelector": {"matchExpressions": [{"key": "pod", "operator": "In", "values": ["a", "b"]}]},
                    "ingress": [{"from": [{"namespaceSelector": {"matchExpressions": [
                        {"key": "kubernetes.io/metadata.name", "operator": "In", "values": ["x", "z"]}]}}]}]}),
            )],
            tables: vec![(
                "TCP/80",
                [
                    "... ... ...",
                    "... ... ...",
                    "... ... ...",
                    "... XX. ...",
                    "... XX. ...",
                    "... XX. ...",
                    "... ... ...",
                    "... ... ...",
                    "... ... ...",
                ],
            )],
        },
        Case {
            name: "matchExpressions NotIn on the policy's podSelector and on a peer",
            objects: vec![np(
                "x",
                "not-a-from-not-b",
                json!({
                    "podSelector": {"matchExpressions": [{"key": "pod", "operator": "NotIn", "values": ["a"]}]},
                    "ingress": [{"from": [{"podSelector": {"matchExpressions": [
                        {"key": "pod", "operator": "NotIn", "values": ["b"]}]}}]}]}),
            )],
            tables: vec![(
                "TCP/80",
                [
                    "... ... ...",
                    ".XX ... ...",
                    "... ... ...",
                    ".XX ... ...",
                    ".XX ... ...",
                    ".XX ... ...",
                    ".XX ... ...",
                    ".XX ... ...",
                    ".XX ... ...",
                ],
            )],
        },
        Case {
            name: "matchExpressions DoesNotExist on a namespace label and Exists on a pod label",
            objects: vec![
                namespace("z", json!({"team": "blue"})),
                np(
                    "x",
                    "from-teamless",
                    json!({
                        "podSelector": {},
                        "ingress": [{"from": [{
                            "namespaceSelector": {"matchExpressions": [{"key": "team", "operator": "DoesNotExist"}]},
                            "podSelector": {"matchExpressions": [{"key": "pod", "operator": "Exists"}]}}]}]}),
                ),
            ],
            tables: vec![(
                "TCP/80",
                [
                    "... ... ...",
                    "... ... ...",
                    "... ... ...",
                    "... ... ...",
                    "... ... ...",
                    "... ... ...",
                    "XXX ... ...",
                    "XXX ... ...",
                    "XXX ... ...",
                ],
            )],
        },
        Case {
            name: "matchExpressions Exists on a namespace label",
            objects: vec![
                namespace("z", json!({"team": "blue"})),
                np(
                    "y",
                    "from-any-team",
                    json!({
                        "podSelector": {},
                        "ingress": [{"from": [{"namespaceSelector": {"matchExpressions": [
                            {"key": "team", "operator": "Exists"}]}}]}]}),
                ),
            ],
            tables: vec![(
                "TCP/80",
                [
                    "... XXX ...",
                    "... XXX ...",
                    "... XXX ...",
                    "... XXX ...",
                    "... XXX ...",
                    "... XXX ...",
                    "... ... ...",
                    "... ... ...",
                    "... ... ...",
                ],
            )],
        },
        Case {
            name: "matchExpressions NotIn matches namespaces without the key",
            objects: vec![
                namespace("z", json!({"team": "blue"})),
                np(
                    "x",
                    "from-not-blue",
                    json!({
                        "podSelector": {},
                        "ingress": [{"from": [{"namespaceSelector": {"matchExpressions": [
                            {"key": "team", "operator": "NotIn", "values": ["blue"]}]}}]}]}),
                ),
            ],
            tables: vec![(
                "TCP/80",
                [
                    "... ... ...",
                    "... ... ...",
                    "... ... ...",
                    "... ... ...",
                    "... ... ...",
                    "... ... ...",
                    "XXX ... ...",
                    "XXX ... ...",
                    "XXX ... ...",
                ],
            )],
        },
        Case {
            name: "matchExpressions DoesNotExist and Exists on pod labels",
            objects: vec![
                {
                    let mut b = pod_with_ports("x", "b", &SERVE);
                    b["metadata"]["labels"]["tier"] = json!("db");
                    b
                },
                np(
                    "x",
                    "untiered-from-tiered",
                    json!({
                        "podSelector": {"matchExpressions": [{"key": "tier", "operator": "DoesNotExist"}]},
                        "ingress": [{"from": [{"podSelector": {"matchExpressions": [
                            {"key": "tier", "operator": "Exists"}]}}]}]}),
                ),
            ],
            tables: vec![(
                "TCP/80",
                [
                    "X.X ... ...",
                    "... ... ...",
                    "X.X ... ...",
                    "X.X ... ...",
                    "X.X ... ...",
                    "X.X ... ...",
                    "X.X ... ...",
                    "X.X ... ...",
                    "X.X ... ...",
                ],
            )],
        },
        Case {
            name: "matchLabels AND matchExpressions in one selector: a contradiction selects nothing",
            objects: vec![np(
                "x",
                "a-from-nobody",
                json!({"podSelector": pod_sel("a"), "ingress": [{"from": [{"podSelector": {
                    "matchLabels": {"pod": "b"},
                    "matchExpressions": [{"key": "pod", "operator": "NotIn", "values": ["b"]}]}}]}]}),
            )],
            tables: vec![("TCP/80", ["X.. ... ..."; 9])],
        },
        Case {
            name: "two policies selecting the same pod are OR'd",
            objects: vec![
                np(
                    "x",
                    "a-from-b",
                    json!({"podSelector": pod_sel("a"), "ingress": [{"from": [{"podSelector": pod_sel("b")}]}]}),
                ),
                np(
                    "x",
                    "a-from-z",
                    json!({"podSelector": pod_sel("a"), "ingress": [{"from": [{"namespaceSelector": ns_sel("z")}]}]}),
                ),
            ],
            tables: vec![(
                "TCP/80",
                [
                    "X.. ... ...",
                    "... ... ...",
                    "X.. ... ...",
                    "X.. ... ...",
                    "X.. ... ...",
                    "X.. ... ...",
                    "... ... ...",
                    "... ... ...",
                    "... ... ...",
                ],
            )],
        },
        Case {
            name: "two rules with different ports are OR'd, each with its own peers",
            objects: vec![np(
                "x",
                "a-per-port",
                json!({"podSelector": pod_sel("a"), "ingress": [
                    {"from": [{"podSelector": pod_sel("b")}], "ports": [{"protocol": "TCP", "port": 80}]},
                    {"from": [{"podSelector": pod_sel("c")}], "ports": [{"protocol": "TCP", "port": 81}]}]}),
            )],
            tables: vec![
                (
                    "TCP/80",
                    [
                        "X.. ... ...",
                        "... ... ...",
                        "X.. ... ...",
                        "X.. ... ...",
                        "X.. ... ...",
                        "X.. ... ...",
                        "X.. ... ...",
                        "X.. ... ...",
                        "X.. ... ...",
                    ],
                ),
                (
                    "TCP/81",
                    [
                        "X.. ... ...",
                        "X.. ... ...",
                        "... ... ...",
                        "X.. ... ...",
                        "X.. ... ...",
                        "X.. ... ...",
                        "X.. ... ...",
                        "X.. ... ...",
                        "X.. ... ...",
                    ],
                ),
            ],
        },
        Case {
            name: "a policy in another namespace does not affect same-named pods elsewhere",
            objects: vec![np(
                "z",
                "deny-a",
                json!({"podSelector": pod_sel("a"), "policyTypes": ["Ingress"]}),
            )],
            tables: vec![("TCP/80", ["... ... X.."; 9])],
        },
        Case {
            name: "egress and ingress together: both ends must allow",
            objects: vec![
                np(
                    "x",
                    "a-to-y",
                    json!({"podSelector": pod_sel("a"), "policyTypes": ["Egress"],
                           "egress": [{"to": [{"namespaceSelector": ns_sel("y")}]}]}),
                ),
                np(
                    "y",
                    "b-from-z",
                    json!({"podSelector": pod_sel("b"), "ingress": [{"from": [{"namespaceSelector": ns_sel("z")}]}]}),
                ),
            ],
            tables: vec![(
                "TCP/80",
                [
                    "XXX .X. XXX",
                    "... .X. ...",
                    "... .X. ...",
                    "... .X. ...",
                    "... .X. ...",
                    "... .X. ...",
                    "... ... ...",
                    "... ... ...",
                    "... ... ...",
                ],
            )],
        },
        Case {
            name: "egress to a namespace whose pods deny all ingress reaches nothing",
            objects: vec![
                np(
                    "x",
                    "a-to-z",
                    json!({"podSelector": pod_sel("a"), "policyTypes": ["Egress"],
                           "egress": [{"to": [{"namespaceSelector": ns_sel("z")}]}]}),
                ),
                np("z", "deny-all", json!({"podSelector": {}})),
            ],
            tables: vec![(
                "UDP/80",
                [
                    "XXX XXX XXX",
                    "... ... XXX",
                    "... ... XXX",
                    "... ... XXX",
                    "... ... XXX",
                    "... ... XXX",
                    "... ... XXX",
                    "... ... XXX",
                    "... ... XXX",
                ],
            )],
        },
        Case {
            name: "egress peer with namespaceSelector AND podSelector",
            objects: vec![np(
                "x",
                "a-to-z-b",
                json!({"podSelector": pod_sel("a"), "policyTypes": ["Egress"],
                       "egress": [{"to": [{"namespaceSelector": ns_sel("z"), "podSelector": pod_sel("b")}]}]}),
            )],
            tables: vec![(
                "TCP/80",
                [
                    "XXX XXX X.X",
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
            name: "egress to podSelector {}: the policy's own namespace only",
            objects: vec![np(
                "x",
                "a-to-x",
                json!({"podSelector": pod_sel("a"), "policyTypes": ["Egress"],
                       "egress": [{"to": [{"podSelector": {}}]}]}),
            )],
            tables: vec![(
                "TCP/80",
                [
                    "... XXX XXX",
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
            name: "policyTypes [Egress] with only ingress rules: all egress denied, ingress open",
            objects: vec![np(
                "x",
                "egress-only",
                json!({"podSelector": pod_sel("a"), "policyTypes": ["Egress"],
                       "ingress": [{"from": [{"podSelector": pod_sel("b")}]}]}),
            )],
            tables: vec![(
                "TCP/80",
                [
                    "XXX XXX XXX",
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
            name: "policyTypes omitted with egress rules: Ingress and Egress both isolated",
            objects: vec![np(
                "x",
                "a-to-b",
                json!({"podSelector": pod_sel("a"), "egress": [{"to": [{"podSelector": pod_sel("b")}]}]}),
            )],
            tables: vec![(
                "TCP/80",
                [
                    "X.X XXX XXX",
                    "X.. ... ...",
                    "X.. ... ...",
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
            name: "policyTypes [Ingress] with egress rules: the egress rules are ignored",
            objects: vec![np(
                "x",
                "ingress-only",
                json!({"podSelector": pod_sel("a"), "policyTypes": ["Ingress"],
                       "egress": [{"to": [{"podSelector": pod_sel("b")}]}]}),
            )],
            tables: vec![("TCP/80", ["X.. ... ..."; 9])],
        },
        Case {
            name: "named port in ingress resolves on the destination pod",
            objects: vec![np(
                "x",
                "a-named",
                json!({"podSelector": pod_sel("a"), "ingress": [{"ports": [{"protocol": "TCP", "port": "serve-80-tcp"}]}]}),
            )],
            tables: vec![
                ("TCP/80", OPEN),
                ("TCP/81", ["X.. ... ..."; 9]),
                ("UDP/80", ["X.. ... ..."; 9]),
            ],
        },
        Case {
            name: "named port in ingress on a pod whose names map to other numbers",
            objects: vec![
                zc_swapped_udp_names(),
                np(
                    "z",
                    "c-named",
                    json!({"podSelector": pod_sel("c"), "ingress": [{"ports": [{"protocol": "UDP", "port": "serve-81-udp"}]}]}),
                ),
            ],
            tables: vec![("UDP/80", OPEN), ("UDP/81", ["... ... ..X"; 9])],
        },
        Case {
            name: "named port in egress resolves on each destination pod",
            objects: vec![
                zc_swapped_udp_names(),
                np(
                    "x",
                    "a-to-named",
                    json!({"podSelector": pod_sel("a"), "policyTypes": ["Egress"],
                           "egress": [{"ports": [{"protocol": "UDP", "port": "serve-81-udp"}]}]}),
                ),
            ],
            tables: vec![
                (
                    "UDP/81",
                    [
                        "... ... ..X",
                        "... ... ...",
                        "... ... ...",
                        "... ... ...",
                        "... ... ...",
                        "... ... ...",
                        "... ... ...",
                        "... ... ...",
                        "... ... ...",
                    ],
                ),
                (
                    "UDP/80",
                    [
                        "XXX XXX XX.",
                        "... ... ...",
                        "... ... ...",
                        "... ... ...",
                        "... ... ...",
                        "... ... ...",
                        "... ... ...",
                        "... ... ...",
                        "... ... ...",
                    ],
                ),
                (
                    "TCP/81",
                    [
                        "XXX XXX XXX",
                        "... ... ...",
                        "... ... ...",
                        "... ... ...",
                        "... ... ...",
                        "... ... ...",
                        "... ... ...",
                        "... ... ...",
                        "... ... ...",
                    ],
                ),
            ],
        },
        Case {
            name: "endPort: a range starting at the numeric port",
            objects: vec![np(
                "x",
                "a-81-90",
                json!({"podSelector": pod_sel("a"), "ingress": [{"ports": [{"protocol": "TCP", "port": 81, "endPort": 90}]}]}),
            )],
            tables: vec![
                ("TCP/80", ["X.. ... ..."; 9]),
                ("TCP/81", OPEN),
                ("UDP/81", ["X.. ... ..."; 9]),
            ],
        },
        Case {
            name: "protocol-only port: every port of that protocol",
            objects: vec![np(
                "x",
                "a-udp",
                json!({"podSelector": pod_sel("a"), "ingress": [{"ports": [{"protocol": "UDP"}]}]}),
            )],
            tables: vec![
                ("UDP/80", OPEN),
                ("UDP/81", OPEN),
                ("TCP/80", ["X.. ... ..."; 9]),
                ("SCTP/81", ["X.. ... ..."; 9]),
            ],
        },
        Case {
            name: "SCTP is not TCP",
            objects: vec![np(
                "x",
                "a-sctp",
                json!({"podSelector": pod_sel("a"), "ingress": [{"ports": [{"protocol": "SCTP", "port": 80}]}]}),
            )],
            tables: vec![
                ("SCTP/80", OPEN),
                ("TCP/80", ["X.. ... ..."; 9]),
                ("UDP/80", ["X.. ... ..."; 9]),
                ("SCTP/81", ["X.. ... ..."; 9]),
            ],
        },
        Case {
            name: "a port without protocol means TCP",
            objects: vec![np(
                "x",
                "a-81",
                json!({"podSelector": pod_sel("a"), "ingress": [{"ports": [{"port": 81}]}]}),
            )],
            tables: vec![
                ("TCP/81", OPEN),
                ("UDP/81", ["X.. ... ..."; 9]),
                ("SCTP/81", ["X.. ... ..."; 9]),
            ],
        },
        Case {
            name: "a port list never matches ICMP; a rule without ports does",
            objects: vec![
                np(
                    "x",
                    "a-tcp-80",
                    json!({"podSelector": pod_sel("a"), "ingress": [{"ports": [{"protocol": "TCP", "port": 80}]}]}),
                ),
                np(
                    "x",
                    "b-from-all-pods",
                    json!({"podSelector": pod_sel("b"), "ingress": [{"from": [{"namespaceSelector": {}}]}]}),
                ),
            ],
            tables: vec![("ICMP", ["X.. ... ..."; 9]), ("TCP/80", OPEN)],
        },
        Case {
            name: "ipBlock with except covering a pod IP",
            objects: vec![np(
                "x",
                "a-cidr-except-y-b",
                json!({"podSelector": pod_sel("a"), "ingress": [{"from": [
                    {"ipBlock": {"cidr": "10.64.0.0/16", "except": [a.host("y", "b")]}}]}]}),
            )],
            tables: vec![(
                "TCP/80",
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
            name: "ipBlock except is only a hole in that peer: another peer still admits",
            objects: vec![np(
                "x",
                "a-cidr-or-y-b",
                json!({"podSelector": pod_sel("a"), "ingress": [{"from": [
                    {"ipBlock": {"cidr": "10.64.0.0/16", "except": [a.host("y", "b")]}},
                    {"namespaceSelector": ns_sel("y"), "podSelector": pod_sel("b")}]}]}),
            )],
            tables: vec![("TCP/80", OPEN)],
        },
        Case {
            name: "egress ipBlock /32s to two pods",
            objects: vec![np(
                "x",
                "a-to-two-ips",
                json!({"podSelector": pod_sel("a"), "policyTypes": ["Egress"], "egress": [{"to": [
                    {"ipBlock": {"cidr": a.host("z", "a")}}, {"ipBlock": {"cidr": a.host("z", "c")}}]}]}),
            )],
            tables: vec![(
                "TCP/80",
                [
                    "XXX XXX .X.",
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
            name: "egress ipBlock with except over the policy's own namespace",
            objects: vec![np(
                "y",
                "to-all-but-x-b",
                json!({"podSelector": {}, "policyTypes": ["Egress"], "egress": [{"to": [
                    {"ipBlock": {"cidr": "0.0.0.0/0", "except": [a.host("x", "b")]}}]}]}),
            )],
            tables: vec![(
                "UDP/81",
                [
                    "... ... ...",
                    "... ... ...",
                    "... ... ...",
                    ".X. ... ...",
                    ".X. ... ...",
                    ".X. ... ...",
                    "... ... ...",
                    "... ... ...",
                    "... ... ...",
                ],
            )],
        },
        Case {
            name: "loopback: a pod admitted only from its own label reaches only itself",
            objects: vec![np(
                "x",
                "a-from-a",
                json!({"podSelector": pod_sel("a"), "ingress": [{"from": [{"podSelector": pod_sel("a")}]}]}),
            )],
            tables: vec![(
                "TCP/80",
                [
                    "... ... ...",
                    "X.. ... ...",
                    "X.. ... ...",
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
            name: "relabelled namespace: a namespaceSelector follows the namespace's labels",
            objects: vec![
                namespace("y", json!({"team": "red"})),
                namespace("z", json!({"team": "blue"})),
                np(
                    "x",
                    "from-red",
                    json!({"podSelector": {}, "ingress": [{"from": [{"namespaceSelector": {"matchLabels": {"team": "red"}}}]}]}),
                ),
            ],
            tables: vec![(
                "TCP/80",
                [
                    "XXX ... ...",
                    "XXX ... ...",
                    "XXX ... ...",
                    "... ... ...",
                    "... ... ...",
                    "... ... ...",
                    "XXX ... ...",
                    "XXX ... ...",
                    "XXX ... ...",
                ],
            )],
        },
    ]
}

// ------------------------------------------------------------------ evaluation

fn policy_ids(objects: &[Value]) -> BTreeSet<String> {
    objects
        .iter()
        .filter(|o| o["kind"] == "NetworkPolicy")
        .map(|o| {
            format!(
                "{}/{}",
                o["metadata"]["namespace"].as_str().unwrap(),
                o["metadata"]["name"].as_str().unwrap()
            )
        })
        .collect()
}

/// What every upstream pod-to-pod explanation must say: the deciding policy for a denial, the
/// admitting policy, rule and peer (or "not isolated") for each end of an allowed flow, and the
/// listener for a rejection.
fn explanation_problems(e: &Expectation, policies: &BTreeSet<String>) -> Vec<String> {
    let text = e.explanation.to_string();
    let mut out = Vec::new();
    if !text.starts_with(&format!("{}: ", e.verdict.past_tense())) || text.len() < 20 {
        out.push(format!("explanation does not read as a verdict: `{text}`"));
    }
    let facts: Vec<&PolicyFact> = e
        .explanation
        .facts
        .iter()
        .filter_map(|f| match f {
            Fact::Policy(p) => Some(p),
            _ => None,
        })
        .collect();
    if facts.len() != 2 {
        out.push(format!(
            "expected an egress and an ingress fact, got {}: `{text}`",
            facts.len()
        ));
    }
    let known = |p: &str| policies.contains(p);
    match e.verdict {
        Verdict::Deny => {
            let deciding = facts.first().map(|f| &f.outcome);
            match deciding {
                Some(DirectionOutcome::Denied { isolated_by })
                    if !isolated_by.is_empty() && isolated_by.iter().all(|p| known(&p.name)) =>
                {
                    if !text.contains(&*isolated_by[0].name) {
                        out.push(format!("denial does not name its policy: `{text}`"));
                    }
                }
                _ => out.push(format!(
                    "denial does not start with the denying direction and its policies: `{text}`"
                )),
            }
        }
        Verdict::Allow | Verdict::Reject => {
            for f in &facts {
                match &f.outcome {
                    DirectionOutcome::NotIsolated => {}
                    DirectionOutcome::Admitted {
                        policy,
                        rule,
                        peer_text,
                        ..
                    } => {
                        if !known(policy) || !text.contains(&format!("by {policy} rule {rule}")) {
                            out.push(format!("admission does not name policy and rule: `{text}`"));
                        }
                        if peer_text.is_empty() || !text.contains(&**peer_text) {
                            out.push(format!("admission does not name the peer: `{text}`"));
                        }
                    }
                    DirectionOutcome::Denied { .. } => {
                        out.push(format!("{} with a denied direction: `{text}`", e.verdict));
                    }
                }
            }
            if e.verdict == Verdict::Reject
                && !e
                    .explanation
                    .facts
                    .iter()
                    .any(|f| matches!(f, Fact::Listener(_)))
            {
                out.push(format!("rejection does not say nothing listens: `{text}`"));
            }
        }
    }
    out
}

#[test]
fn at_least_thirty_distinct_cases() {
    let a = Addrs::new();
    let cs = cases(&a);
    assert!(cs.len() >= 30, "{} cases", cs.len());
    let names: BTreeSet<&str> = cs.iter().map(|c| c.name).collect();
    assert_eq!(names.len(), cs.len(), "case names must be unique");
}

#[test]
fn upstream_truth_tables() {
    let a = Addrs::new();
    let cs = cases(&a);
    let mut failures = Vec::new();
    let mut cells = 0;
    for case in &cs {
        let cluster = build(&case.objects);
        // Planned addresses must not move when policies are added (ipBlock cases rely on it).
        for l in labels() {
            let (ns, p) = l.split_once('/').unwrap();
            assert_eq!(
                cluster.pod_ip(ns, p),
                Some(a.ip(ns, p)),
                "{}: {l}",
                case.name
            );
        }
        let policies = policy_ids(&case.objects);
        for (port, rows) in &case.tables {
            let port: PortSpec = port.parse().unwrap();
            let want = parse_rows(rows, 9);
            let grid = Grid::pods(&cluster, Profile::Upstream, &port);
            let got = grid.symbols();
            if got != want {
                failures.push(format!(
                    "case `{}` {port}: the oracle disagrees (! marks a cell that differs)\nexpected:\n{}oracle:\n{}",
                    case.name,
                    show(&labels(), &want, None),
                    show(&labels(), &got, Some(&want))
                ));
            }
            let l = labels();
            for (i, row) in grid.cells.iter().enumerate() {
                for (j, e) in row.iter().enumerate() {
                    cells += 1;
                    if e.loopback != (i == j) {
                        failures.push(format!(
                            "case `{}` {port} {} -> {}: loopback flag {}",
                            case.name, l[i], l[j], e.loopback
                        ));
                    }
                    if !e.deviations.is_empty() {
                        failures.push(format!(
                            "case `{}` {port} {} -> {}: upstream verdict with deviations {:?}",
                            case.name, l[i], l[j], e.deviations
                        ));
                    }
                    for p in explanation_problems(e, &policies) {
                        failures.push(format!(
                            "case `{}` {port} {} -> {}: {p}",
                            case.name, l[i], l[j]
                        ));
                    }
                }
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} problem(s) over {cells} cells:\n\n{}",
        failures.len(),
        failures.join("\n")
    );
}

/// Running the upstream-style suite against `r5.0` must report exactly the cells the deviations
/// break, each naming the deviation (CONFORMANCE.md §3): a cell that agrees with the upstream
/// table carries no deviation; a cell that differs carries at least one, and its explanation
/// names every one of them.
#[test]
fn r50_differs_from_the_tables_only_with_named_deviations() {
    let a = Addrs::new();
    let mut failures = Vec::new();
    let mut differing = 0;
    for case in cases(&a) {
        let cluster = build(&case.objects);
        for (port, rows) in &case.tables {
            let port: PortSpec = port.parse().unwrap();
            let want = parse_rows(rows, 9);
            let grid = Grid::pods(&cluster, Profile::R50, &port);
            let l = labels();
            for (i, row) in grid.cells.iter().enumerate() {
                for (j, e) in row.iter().enumerate() {
                    let text = e.explanation.to_string();
                    let where_ = format!("case `{}` {port} {} -> {}", case.name, l[i], l[j]);
                    if symbol(e.verdict) == want[i][j] {
                        if !e.deviations.is_empty() {
                            failures.push(format!(
                                "{where_}: agrees with upstream but lists {:?}: {text}",
                                e.deviations
                            ));
                        }
                        continue;
                    }
                    differing += 1;
                    if e.deviations.is_empty() {
                        failures.push(format!(
                            "{where_}: r5.0 {} differs from upstream {} with no deviation: {text}",
                            e.verdict, want[i][j]
                        ));
                    }
                    for d in &e.deviations {
                        if !text.contains(d.name()) {
                            failures.push(format!("{where_}: {d} not named in `{text}`"));
                        }
                    }
                }
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    assert!(differing > 0, "the suite exercises no r5.0 deviation");
}
