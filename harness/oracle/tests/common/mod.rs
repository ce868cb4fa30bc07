//! The upstream NetworkPolicy e2e fixture shared by the table-driven tests: namespaces x, y, z
//! (with the automatic `kubernetes.io/metadata.name` label), pods a, b, c labelled `pod=<name>`,
//! servers on 80 and 81 over TCP, UDP and SCTP with container ports named
//! `serve-<port>-<proto>`; and 9×9 truth tables written as literal rows.

#![allow(dead_code)]

use std::net::Ipv4Addr;

use harness_oracle::{Cluster, Endpoint, Expectation, Oracle, Verdict};
use harness_scenario::{ClusterSpec, ContrailSettings, PortSpec, Profile};
use serde_json::{Value, json};

pub const NSS: [&str; 3] = ["x", "y", "z"];
pub const PODS: [&str; 3] = ["a", "b", "c"];

pub fn namespace(name: &str, labels: Value) -> Value {
    json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name, "labels": labels}})
}

/// One container per port and protocol, as the upstream e2e agent pods have.
pub fn pod_with_ports(ns: &str, name: &str, ports: &[(u16, &str, &str)]) -> Value {
    let containers: Vec<Value> = ports
        .iter()
        .map(|(port, proto, port_name)| {
            json!({"name": format!("cont-{port}-{}", proto.to_ascii_lowercase()), "image": "agnhost",
                   "ports": [{"containerPort": port, "protocol": proto, "name": port_name}]})
        })
        .collect();
    json!({"apiVersion": "v1", "kind": "Pod",
           "metadata": {"name": name, "namespace": ns, "labels": {"pod": name}},
           "spec": {"containers": containers}})
}

pub const SERVE: [(u16, &str, &str); 6] = [
    (80, "TCP", "serve-80-tcp"),
    (81, "TCP", "serve-81-tcp"),
    (80, "UDP", "serve-80-udp"),
    (81, "UDP", "serve-81-udp"),
    (80, "SCTP", "serve-80-sctp"),
    (81, "SCTP", "serve-81-sctp"),
];

pub fn fixture() -> Vec<Value> {
    let mut v = Vec::new();
    for ns in NSS {
        v.push(namespace(ns, json!({})));
        for p in PODS {
            v.push(pod_with_ports(ns, p, &SERVE));
        }
    }
    v
}

pub fn np(ns: &str, name: &str, spec: Value) -> Value {
    json!({"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
           "metadata": {"name": name, "namespace": ns}, "spec": spec})
}

/// `{"matchLabels": {"pod": p}}`
pub fn pod_sel(p: &str) -> Value {
    json!({"matchLabels": {"pod": p}})
}

/// `{"matchLabels": {"kubernetes.io/metadata.name": ns}}`
pub fn ns_sel(ns: &str) -> Value {
    json!({"matchLabels": {"kubernetes.io/metadata.name": ns}})
}

/// The fixture plus `extra` (a later manifest of the same object replaces the fixture's).
pub fn build(extra: &[Value]) -> Cluster {
    let mut objs = fixture();
    objs.extend(extra.iter().cloned());
    Cluster::from_objects(&objs, &ClusterSpec::default(), &ContrailSettings::default())
        .expect("the fixture is valid")
}

/// Pod addresses of the fixture (planned; they do not depend on NetworkPolicies).
pub struct Addrs(pub Cluster);

impl Addrs {
    pub fn new() -> Addrs {
        Addrs(build(&[]))
    }
    pub fn ip(&self, ns: &str, pod: &str) -> Ipv4Addr {
        self.0.pod_ip(ns, pod).expect("fixture pod")
    }
    /// `<pod IP>/32`.
    pub fn host(&self, ns: &str, pod: &str) -> String {
        format!("{}/32", self.ip(ns, pod))
    }
}

/// `x/a`, `x/b`, … `z/c`: the rows and columns of every table.
pub fn labels() -> Vec<String> {
    NSS.iter()
        .flat_map(|ns| PODS.iter().map(move |p| format!("{ns}/{p}")))
        .collect()
}

/// Rows of a literal table; spaces inside a row are ignored.
pub fn parse_rows(rows: &[&str], width: usize) -> Vec<Vec<char>> {
    rows.iter()
        .map(|r| {
            let cells: Vec<char> = r.chars().filter(|c| !c.is_whitespace()).collect();
            assert_eq!(cells.len(), width, "row `{r}` does not have {width} cells");
            cells
        })
        .collect()
}

/// `.` allow, `X` deny, `R` reject.
pub fn symbol(v: Verdict) -> char {
    match v {
        Verdict::Allow => '.',
        Verdict::Deny => 'X',
        Verdict::Reject => 'R',
    }
}

/// A table as cyclonus prints it; `!` marks cells that differ from `want`.
pub fn show(cols: &[String], grid: &[Vec<char>], want: Option<&[Vec<char>]>) -> String {
    let rows = labels();
    let w = cols.iter().map(String::len).max().unwrap_or(3).max(3);
    let mut s = format!(
        "      {}\n",
        cols.iter()
            .map(|c| format!("{c:<w$}"))
            .collect::<Vec<_>>()
            .join(" ")
    );
    for (i, row) in grid.iter().enumerate() {
        s.push_str(&format!("  {} ", rows[i]));
        for (j, c) in row.iter().enumerate() {
            let mark = match want {
                Some(wt) if wt[i][j] != *c => '!',
                _ => ' ',
            };
            s.push_str(&format!(" {:<w$}", format!("{c}{mark}")));
        }
        s.push('\n');
    }
    s
}

/// Every fixture pod probing every destination on one port.
pub struct Grid {
    pub cols: Vec<String>,
    pub cells: Vec<Vec<Expectation>>,
}

impl Grid {
    /// Rows: the nine pods; columns: `to` (peers as written in scenarios).
    pub fn evaluate(cluster: &Cluster, profile: Profile, to: &[String], port: &PortSpec) -> Grid {
        let oracle = Oracle::new(cluster, profile);
        let ep = |l: &String| -> Endpoint {
            cluster
                .expand(&l.parse().unwrap())
                .unwrap_or_else(|e| panic!("{l}: {e}"))
                .remove(0)
        };
        let from: Vec<Endpoint> = labels().iter().map(ep).collect();
        let to_eps: Vec<Endpoint> = to.iter().map(ep).collect();
        Grid {
            cols: to.to_vec(),
            cells: from
                .iter()
                .map(|f| to_eps.iter().map(|t| oracle.evaluate(f, t, port)).collect())
                .collect(),
        }
    }

    /// The 9×9 pod matrix.
    pub fn pods(cluster: &Cluster, profile: Profile, port: &PortSpec) -> Grid {
        Grid::evaluate(cluster, profile, &labels(), port)
    }

    pub fn symbols(&self) -> Vec<Vec<char>> {
        self.cells
            .iter()
            .map(|r| r.iter().map(|e| symbol(e.verdict)).collect())
            .collect()
    }
}
