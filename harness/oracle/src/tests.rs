//! Conformance rules, one test each, on fixtures modelled on the upstream NetworkPolicy e2e
//! (namespaces x, y, z; pods a, b, c labelled `pod=<name>`; servers on 80 and 81 over TCP, UDP
//! and SCTP named `serve-<port>-<proto>`; one Service `s-<ns>-<pod>` per pod), plus property
//! tests.

use harness_scenario::{
    ClusterSpec, ContrailSettings, FabricHost, PortSpec, Profile, ServiceChain,
};
use serde_json::{Value, json};

use crate::r50::{Firewall, FwSubject, Quirks};
use crate::*;

const NSS: [&str; 3] = ["x", "y", "z"];
const PODS: [&str; 3] = ["a", "b", "c"];

fn namespace(name: &str, labels: Value, annotations: Value) -> Value {
    json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name, "labels": labels, "annotations": annotations}})
}

fn agent_ports() -> Value {
    let mut ports = Vec::new();
    for port in [80, 81] {
        for proto in ["TCP", "UDP", "SCTP"] {
            ports.push(json!({"containerPort": port, "protocol": proto, "name": format!("serve-{port}-{}", proto.to_ascii_lowercase())}));
        }
    }
    Value::Array(ports)
}

fn pod_with(ns: &str, name: &str, labels: Value) -> Value {
    json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": ns, "labels": labels},
           "spec": {"containers": [{"name": "agent", "image": "harness-agent", "ports": agent_ports()}]}})
}

fn pod(ns: &str, name: &str) -> Value {
    pod_with(ns, name, json!({"pod": name}))
}

fn service(ns: &str, name: &str, selector: Value, kind: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": name, "namespace": ns},
           "spec": {"type": kind, "selector": selector, "ports": [
               {"name": "http", "port": 80, "targetPort": "serve-80-tcp"},
               {"name": "http-81", "port": 81, "targetPort": 81},
               {"name": "dns", "port": 53, "protocol": "UDP", "targetPort": 80}]}})
}

fn np(ns: &str, name: &str, spec: Value) -> Value {
    json!({"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy", "metadata": {"name": name, "namespace": ns}, "spec": spec})
}

/// Namespaces x, y, z with pods a, b, c and one service per pod.
fn base() -> Vec<Value> {
    let mut v = Vec::new();
    for ns in NSS {
        v.push(namespace(ns, json!({}), json!({})));
        for p in PODS {
            v.push(pod(ns, p));
            v.push(service(
                ns,
                &format!("s-{ns}-{p}"),
                json!({"pod": p}),
                "ClusterIP",
            ));
        }
    }
    v
}

fn spec() -> ClusterSpec {
    ClusterSpec {
        nodes: 2,
        fabric_hosts: vec![FabricHost {
            name: "cloud-db".into(),
            address: "10.64.200.10".parse().unwrap(),
            serves: vec!["TCP/5432".parse().unwrap(), "UDP/53".parse().unwrap()],
        }],
        external: vec![harness_scenario::ExternalClient {
            name: "internet-client".into(),
            address: None,
        }],
    }
}

struct Fx {
    cluster: Cluster,
}

impl Fx {
    fn new(extra: Vec<Value>) -> Fx {
        Fx::with(extra, ContrailSettings::default())
    }

    fn with(extra: Vec<Value>, settings: ContrailSettings) -> Fx {
        let mut objs = base();
        objs.extend(extra);
        Fx {
            cluster: Cluster::from_objects(&objs, &spec(), &settings).unwrap(),
        }
    }

    fn ep(&self, s: &str) -> Endpoint {
        self.cluster.expand(&s.parse().unwrap()).unwrap().remove(0)
    }

    fn eval(&self, profile: Profile, from: &str, to: &str, port: &str) -> Expectation {
        Oracle::new(&self.cluster, profile).evaluate(
            &self.ep(from),
            &self.ep(to),
            &port.parse().unwrap(),
        )
    }

    fn up(&self, from: &str, to: &str, port: &str) -> Expectation {
        self.eval(Profile::Upstream, from, to, port)
    }

    fn r50(&self, from: &str, to: &str, port: &str) -> Expectation {
        self.eval(Profile::R50, from, to, port)
    }

    /// The 9×9 truth table of x, y, z pods: `.` allow, `X` deny, `R` reject.
    fn grid(&self, profile: Profile, port: &str) -> Vec<String> {
        let oracle = Oracle::new(&self.cluster, profile);
        let port: PortSpec = port.parse().unwrap();
        let peers: Vec<Endpoint> = NSS
            .iter()
            .flat_map(|ns| PODS.iter().map(move |p| format!("{ns}/{p}")))
            .map(|s| self.ep(&s))
            .collect();
        peers
            .iter()
            .map(|from| {
                let cells: String = peers
                    .iter()
                    .map(|to| match oracle.evaluate(from, to, &port).verdict {
                        Verdict::Allow => '.',
                        Verdict::Deny => 'X',
                        Verdict::Reject => 'R',
                    })
                    .collect();
                format!("{from} {cells}")
            })
            .collect()
    }
}

fn rows(spec: &[&str]) -> Vec<String> {
    let labels: Vec<String> = NSS
        .iter()
        .flat_map(|ns| PODS.iter().map(move |p| format!("{ns}/{p}")))
        .collect();
    labels
        .iter()
        .zip(spec)
        .map(|(l, s)| format!("{l} {s}"))
        .collect()
}

// ------------------------------------------------------------------ §2 NetworkPolicy v1

#[test]
fn no_policy_everything_open() {
    let fx = Fx::new(vec![]);
    assert_eq!(
        fx.grid(Profile::Upstream, "TCP/80"),
        rows(&["........."; 9])
    );
    assert_eq!(fx.grid(Profile::R50, "TCP/80"), rows(&["........."; 9]));
    let e = fx.up("x/b", "y/a", "TCP/80");
    assert_eq!(
        e.explanation.to_string(),
        "allowed: egress from x/b not isolated; ingress to y/a not isolated"
    );
}

#[test]
fn deny_all_ingress_isolates_the_namespace_for_ingress_only() {
    let fx = Fx::new(vec![np(
        "x",
        "deny-all",
        json!({"podSelector": {}, "policyTypes": ["Ingress"]}),
    )]);
    assert_eq!(
        fx.grid(Profile::Upstream, "TCP/80"),
        rows(&["XXX......"; 9])
    );
    let e = fx.up("y/b", "x/a", "TCP/80");
    assert_eq!(
        e.explanation.to_string(),
        "denied: ingress to x/a isolated by x/deny-all (policyTypes Ingress); no ingress rule admits y/b; egress from y/b not isolated"
    );
    // r5.0 agrees here: the deny rule is the first match.
    assert_eq!(fx.grid(Profile::R50, "TCP/80"), rows(&["XXX......"; 9]));
    let e = fx.r50("y/b", "x/a", "TCP/80");
    assert!(e.deviations.is_empty());
    assert!(e.explanation.to_string().contains("r5.0 first match k8s-denyall/x-ingress-deny-all-denyall (from NetworkPolicy x/deny-all)"), "{}", e.explanation);
}

#[test]
fn policy_types_default_to_ingress_plus_egress_when_egress_rules_exist() {
    let fx = Fx::new(vec![np(
        "x",
        "a-to-b",
        json!({"podSelector": {"matchLabels": {"pod": "a"}},
        "egress": [{"to": [{"podSelector": {"matchLabels": {"pod": "b"}}}]}]}),
    )]);
    let mut want = vec!["X........"; 9];
    want[0] = "X.XXXXXXX";
    assert_eq!(fx.grid(Profile::Upstream, "TCP/80"), rows(&want));
}

#[test]
fn egress_only_policy_leaves_ingress_open() {
    let fx = Fx::new(vec![np(
        "y",
        "no-egress",
        json!({"podSelector": {}, "policyTypes": ["Egress"]}),
    )]);
    let mut want = vec!["........."; 9];
    for r in &mut want[3..6] {
        *r = "XXXXXXXXX";
    }
    assert_eq!(fx.grid(Profile::Upstream, "TCP/80"), rows(&want));
    let e = fx.up("y/a", "x/a", "TCP/80");
    assert!(e.explanation.to_string().starts_with("denied: egress from y/a isolated by y/no-egress (policyTypes Egress); no egress rule admits x/a"));
}

#[test]
fn policies_rules_and_peers_are_ored() {
    let fx = Fx::new(vec![
        np(
            "x",
            "from-b",
            json!({"podSelector": {"matchLabels": {"pod": "a"}}, "ingress": [{"from": [{"podSelector": {"matchLabels": {"pod": "b"}}}]}]}),
        ),
        np(
            "x",
            "from-y",
            json!({"podSelector": {"matchLabels": {"pod": "a"}}, "ingress": [{"from": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "y"}}}]}]}),
        ),
    ]);
    let col: String = fx
        .grid(Profile::Upstream, "TCP/80")
        .iter()
        .map(|r| r.chars().nth(4).unwrap())
        .collect();
    assert_eq!(col, "X.X...XXX");
    let e = fx.up("y/b", "x/a", "TCP/80");
    assert_eq!(
        e.explanation.to_string(),
        "allowed: egress from y/b not isolated; ingress to x/a by x/from-y rule 0 peer 0 (namespaceSelector kubernetes.io/metadata.name=y)"
    );
}

#[test]
fn namespace_and_pod_selector_in_one_peer_are_anded() {
    let fx = Fx::new(vec![np(
        "x",
        "only-y-b",
        json!({"podSelector": {"matchLabels": {"pod": "a"}}, "ingress": [{"from": [
        {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "y"}}, "podSelector": {"matchLabels": {"pod": "b"}}}]}]}),
    )]);
    let col: String = fx
        .grid(Profile::Upstream, "TCP/80")
        .iter()
        .map(|r| r.chars().nth(4).unwrap())
        .collect();
    assert_eq!(col, "XXXX.XXXX");
}

#[test]
fn pod_selector_alone_means_the_policy_namespace() {
    let fx = Fx::new(vec![np(
        "x",
        "from-b",
        json!({"podSelector": {"matchLabels": {"pod": "a"}}, "ingress": [{"from": [{"podSelector": {"matchLabels": {"pod": "b"}}}]}]}),
    )]);
    assert_eq!(fx.up("x/b", "x/a", "TCP/80").verdict, Verdict::Allow);
    assert_eq!(fx.up("y/b", "x/a", "TCP/80").verdict, Verdict::Deny);
}

#[test]
fn empty_selectors_select_all_pods_but_no_other_sources() {
    let fx = Fx::new(vec![np(
        "x",
        "all-pods",
        json!({"podSelector": {"matchLabels": {"pod": "a"}}, "ingress": [{"from": [{"namespaceSelector": {}}]}]}),
    )]);
    assert_eq!(fx.up("z/c", "x/a", "TCP/80").verdict, Verdict::Allow);
    let e = fx.up("host:cloud-db", "x/a", "TCP/80");
    assert_eq!(e.verdict, Verdict::Deny, "{}", e.explanation);
    let fx = Fx::new(vec![np(
        "x",
        "own-ns",
        json!({"podSelector": {"matchLabels": {"pod": "a"}}, "ingress": [{"from": [{"podSelector": {}}]}]}),
    )]);
    assert_eq!(fx.up("x/c", "x/a", "TCP/80").verdict, Verdict::Allow);
    assert_eq!(fx.up("z/c", "x/a", "TCP/80").verdict, Verdict::Deny);
}

#[test]
fn match_expressions_are_honoured() {
    let mut extra = vec![np(
        "x",
        "expr",
        json!({
        "podSelector": {"matchExpressions": [{"key": "pod", "operator": "In", "values": ["a", "b"]}]},
        "ingress": [{"from": [
            {"podSelector": {"matchExpressions": [{"key": "pod", "operator": "NotIn", "values": ["c"]}]}},
            {"namespaceSelector": {"matchExpressions": [{"key": "team", "operator": "Exists"}]},
             "podSelector": {"matchExpressions": [{"key": "tier", "operator": "DoesNotExist"}]}}]}]}),
    )];
    extra.push(namespace("z", json!({"team": "blue"}), json!({})));
    let fx = Fx::new(extra);
    assert_eq!(fx.up("x/b", "x/a", "TCP/80").verdict, Verdict::Allow);
    assert_eq!(
        fx.up("x/c", "x/a", "TCP/80").verdict,
        Verdict::Deny,
        "NotIn c"
    );
    assert_eq!(fx.up("x/c", "x/b", "TCP/80").verdict, Verdict::Deny);
    assert_eq!(
        fx.up("y/a", "x/c", "TCP/80").verdict,
        Verdict::Allow,
        "x/c is not selected (In a,b)"
    );
    assert_eq!(
        fx.up("z/c", "x/a", "TCP/80").verdict,
        Verdict::Allow,
        "z has team, pods have no tier"
    );
    assert_eq!(fx.up("y/c", "x/a", "TCP/80").verdict, Verdict::Deny);
}

#[test]
fn ip_block_with_except() {
    let fx0 = Fx::new(vec![]);
    let yb = fx0.cluster.pod_ip("y", "b").unwrap();
    let fx = Fx::new(vec![np(
        "x",
        "cidr",
        json!({"podSelector": {"matchLabels": {"pod": "a"}}, "ingress": [{"from": [
        {"ipBlock": {"cidr": "10.64.0.0/16", "except": [format!("{yb}/32")]}}]}]}),
    )]);
    assert_eq!(fx.up("y/a", "x/a", "TCP/80").verdict, Verdict::Allow);
    let e = fx.up("y/b", "x/a", "TCP/80");
    assert_eq!(e.verdict, Verdict::Deny, "{}", e.explanation);
    let e = fx.up("host:cloud-db", "x/a", "TCP/80");
    assert_eq!(e.verdict, Verdict::Allow, "{}", e.explanation);
    assert!(
        e.explanation
            .to_string()
            .contains(&format!("ipBlock 10.64.0.0/16 except {yb}/32")),
        "{}",
        e.explanation
    );
}

#[test]
fn ip_block_is_matched_after_dnat() {
    let fx0 = Fx::new(vec![]);
    let vip = fx0.cluster.service_ip("y", "s-y-b").unwrap();
    let yb = fx0.cluster.pod_ip("y", "b").unwrap();
    let egress_to = |cidr: String| {
        Fx::new(vec![np(
            "x",
            "out",
            json!({"podSelector": {"matchLabels": {"pod": "a"}}, "policyTypes": ["Egress"], "egress": [{"to": [{"ipBlock": {"cidr": cidr}}]}]}),
        )])
    };
    let e = egress_to(format!("{vip}/32")).up("x/a", "svc:y/s-y-b", "TCP/80");
    assert_eq!(
        e.verdict,
        Verdict::Deny,
        "the ClusterIP is not what the policy sees: {}",
        e.explanation
    );
    let e = egress_to(format!("{yb}/32")).up("x/a", "svc:y/s-y-b", "TCP/80");
    assert_eq!(e.verdict, Verdict::Allow, "{}", e.explanation);
    assert_eq!(e.path.backends, ["y/b"]);
}

#[test]
fn ports_protocol_default_named_ranges_protocol_only_and_sctp() {
    let with_ports = |ports: Value| {
        Fx::new(vec![np(
            "x",
            "ports",
            json!({"podSelector": {"matchLabels": {"pod": "a"}}, "ingress": [{"ports": ports}]}),
        )])
    };
    let v = |fx: &Fx, port: &str| fx.up("y/b", "x/a", port).verdict;
    let fx = with_ports(json!([{"port": 80}]));
    assert_eq!(
        (
            v(&fx, "TCP/80"),
            v(&fx, "UDP/80"),
            v(&fx, "TCP/81"),
            v(&fx, "SCTP/80")
        ),
        (Verdict::Allow, Verdict::Deny, Verdict::Deny, Verdict::Deny)
    );
    let fx = with_ports(json!([{"protocol": "UDP", "port": "serve-81-udp"}]));
    assert_eq!(
        (v(&fx, "UDP/81"), v(&fx, "TCP/81"), v(&fx, "UDP/80")),
        (Verdict::Allow, Verdict::Deny, Verdict::Deny)
    );
    let fx = with_ports(json!([{"protocol": "TCP", "port": 80, "endPort": 81}]));
    assert_eq!(
        (v(&fx, "TCP/80"), v(&fx, "TCP/81"), v(&fx, "TCP/82")),
        (Verdict::Allow, Verdict::Allow, Verdict::Deny)
    );
    let fx = with_ports(json!([{"protocol": "UDP"}]));
    assert_eq!(
        (v(&fx, "UDP/80"), v(&fx, "UDP/81"), v(&fx, "TCP/80")),
        (Verdict::Allow, Verdict::Allow, Verdict::Deny)
    );
    let fx = with_ports(json!([{"protocol": "SCTP", "port": 80}]));
    assert_eq!(
        (v(&fx, "SCTP/80"), v(&fx, "TCP/80")),
        (Verdict::Allow, Verdict::Deny)
    );
}

#[test]
fn icmp_matches_only_rules_without_ports() {
    let fx = Fx::new(vec![np(
        "x",
        "p",
        json!({"podSelector": {"matchLabels": {"pod": "a"}}, "ingress": [{"ports": [{"port": 80}]}]}),
    )]);
    assert_eq!(fx.up("y/b", "x/a", "ICMP").verdict, Verdict::Deny);
    let fx = Fx::new(vec![np(
        "x",
        "p",
        json!({"podSelector": {"matchLabels": {"pod": "a"}}, "ingress": [{"from": [{"namespaceSelector": {}}]}]}),
    )]);
    assert_eq!(fx.up("y/b", "x/a", "ICMP").verdict, Verdict::Allow);
}

#[test]
fn named_probe_ports_listeners_and_loopback() {
    let fx = Fx::new(vec![]);
    assert_eq!(
        fx.up("y/b", "x/a", "TCP/serve-80-tcp").verdict,
        Verdict::Allow
    );
    let e = fx.up("y/b", "x/a", "TCP/serve-99-tcp");
    assert_eq!(e.verdict, Verdict::Reject);
    assert_eq!(
        e.explanation.to_string(),
        "rejected: x/a has no container port named serve-99-tcp over TCP"
    );
    let e = fx.up("y/b", "x/a", "TCP/99");
    assert_eq!(e.verdict, Verdict::Reject);
    assert!(
        e.explanation
            .to_string()
            .ends_with("nothing listens on x/a TCP/99 (not a declared container port)")
    );
    assert!(fx.up("x/a", "x/a", "TCP/80").loopback);
    assert!(!fx.up("x/b", "x/a", "TCP/80").loopback);
}

// ------------------------------------------------------------------ §1 networks

#[test]
fn fabric_forwarding_reaches_hosts_without_vrouter_unencapsulated() {
    let fx = Fx::new(vec![]);
    let e = fx.up("x/a", "host:cloud-db", "TCP/5432");
    assert_eq!(
        (e.verdict, e.path.underlay, e.path.snat),
        (Verdict::Allow, Underlay::Plain, false)
    );
    assert!(
        e.explanation
            .to_string()
            .contains("crosses the underlay unencapsulated")
    );
    assert_eq!(
        fx.up("x/a", "host:cloud-db", "TCP/9999").verdict,
        Verdict::Reject
    );
    assert_eq!(
        fx.up("x/a", "host:cloud-db", "ICMP").verdict,
        Verdict::Allow
    );

    let off = ContrailSettings {
        ip_fabric_forwarding: false,
        ..Default::default()
    };
    let fx = Fx::with(vec![], off.clone());
    let e = fx.up("x/a", "host:cloud-db", "TCP/5432");
    assert_eq!(e.verdict, Verdict::Deny);
    assert_eq!(
        e.explanation.to_string(),
        "denied: host:cloud-db has no vrouter and drops the MPLSoUDP packet from k8s-default-pod-network (no ip-fabric forwarding or fabric SNAT)"
    );
    assert_eq!(
        fx.up("host:cloud-db", "x/a", "TCP/80").verdict,
        Verdict::Deny,
        "overlay addresses are not on the underlay"
    );

    let snat = ContrailSettings {
        ip_fabric_forwarding: false,
        ip_fabric_snat: true,
        ..Default::default()
    };
    let e = Fx::with(vec![], snat).up("x/a", "host:cloud-db", "UDP/53");
    assert_eq!(
        (e.verdict, e.path.underlay, e.path.snat),
        (Verdict::Allow, Underlay::Plain, true)
    );

    // The namespace annotation overrides the cluster setting for isolated namespaces only.
    let fx = Fx::with(
        vec![
            namespace(
                "fwd",
                json!({}),
                json!({"opencontrail.org/isolation": "true", "opencontrail.org/ip_fabric_forwarding": "true"}),
            ),
            namespace(
                "plain",
                json!({}),
                json!({"opencontrail.org/ip_fabric_forwarding": "true"}),
            ),
            pod("fwd", "a"),
            pod("plain", "a"),
        ],
        off,
    );
    assert_eq!(
        fx.up("fwd/a", "host:cloud-db", "TCP/5432").verdict,
        Verdict::Allow
    );
    assert_eq!(
        fx.up("plain/a", "host:cloud-db", "TCP/5432").verdict,
        Verdict::Deny
    );
}

#[test]
fn underlay_local_plain_tunnel() {
    let fx = Fx::new(vec![]);
    // Round-robin over sorted pods: x/a node-1, x/b node-2, x/c node-1.
    assert_eq!(fx.up("x/a", "x/c", "TCP/80").path.underlay, Underlay::Local);
    assert_eq!(fx.up("x/a", "x/b", "TCP/80").path.underlay, Underlay::Plain);
    let fx = Fx::with(
        vec![],
        ContrailSettings {
            ip_fabric_forwarding: false,
            ..Default::default()
        },
    );
    assert_eq!(
        fx.up("x/a", "x/b", "TCP/80").path.underlay,
        Underlay::Tunnel
    );
    assert_eq!(fx.up("x/a", "x/c", "TCP/80").path.underlay, Underlay::Local);
}

#[test]
fn cluster_ip_across_the_pod_service_split_with_dnat() {
    let fx = Fx::new(vec![]);
    let e = fx.up("x/a", "svc:y/s-y-b", "TCP/80");
    assert_eq!(e.verdict, Verdict::Allow, "{}", e.explanation);
    assert_eq!(e.path.backends, ["y/b"]);
    assert!(
        e.explanation
            .to_string()
            .contains("svc:y/s-y-b TCP/80 DNAT to y/b:80"),
        "{}",
        e.explanation
    );
    assert_eq!(
        e.path.underlay,
        Underlay::Local,
        "x/a and y/b are both on node-1"
    );
    assert_eq!(
        fx.up("x/a", "svc:x/s-x-b", "TCP/80").path.underlay,
        Underlay::Tunnel
    );
    assert_eq!(
        fx.up("x/a", "svc:y/s-y-b", "TCP/http").verdict,
        Verdict::Allow,
        "service port by name"
    );
    assert_eq!(
        fx.up("x/a", "svc:y/s-y-b", "UDP/53").verdict,
        Verdict::Allow,
        "targetPort by number"
    );
    let e = fx.up("x/a", "svc:y/s-y-b", "TCP/99");
    assert_eq!(e.verdict, Verdict::Reject);
    assert!(
        e.explanation
            .to_string()
            .contains("has no port TCP/99 (ports: TCP/80 (http), TCP/81 (http-81), UDP/53 (dns))")
    );
    assert_eq!(fx.up("x/a", "svc:y/s-y-b", "ICMP").verdict, Verdict::Deny);
    // Policies apply to the backend after DNAT.
    let fx = Fx::new(vec![np("y", "deny-all", json!({"podSelector": {}}))]);
    let e = fx.up("x/a", "svc:y/s-y-b", "TCP/80");
    assert_eq!(e.verdict, Verdict::Deny);
    assert!(
        e.explanation
            .to_string()
            .contains("ingress to y/b isolated by y/deny-all"),
        "{}",
        e.explanation
    );
}

#[test]
fn service_without_ready_backends_rejects() {
    let fx = Fx::new(vec![
        service("x", "nobody", json!({"pod": "nope"}), "ClusterIP"),
        json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "sick", "namespace": "x", "labels": {"pod": "sick"}},
               "spec": {"containers": [{"name": "c", "ports": agent_ports()}]},
               "status": {"podIP": "10.64.100.1", "conditions": [{"type": "Ready", "status": "False"}]}}),
        service("x", "sick", json!({"pod": "sick"}), "ClusterIP"),
    ]);
    let e = fx.up("y/a", "svc:x/nobody", "TCP/80");
    assert_eq!(e.verdict, Verdict::Reject);
    assert!(
        e.explanation
            .to_string()
            .contains("has no ready backends (its selector pod=nope matches no ready pod in x)"),
        "{}",
        e.explanation
    );
    assert_eq!(
        fx.up("y/a", "svc:x/sick", "TCP/80").verdict,
        Verdict::Reject
    );
    assert_eq!(
        fx.up("y/a", "x/sick", "TCP/80").verdict,
        Verdict::Allow,
        "the pod itself still answers"
    );
}

fn isolated_fixture(extra: Vec<Value>) -> Fx {
    let mut objs = vec![
        namespace(
            "blue",
            json!({}),
            json!({"opencontrail.org/isolation": "true"}),
        ),
        namespace(
            "red",
            json!({}),
            json!({"opencontrail.org/isolation": "true"}),
        ),
        pod_with("blue", "web", json!({"app": "web"})),
        pod_with("blue", "db", json!({"app": "db"})),
        pod_with("red", "app", json!({"app": "app"})),
        pod_with("red", "fw", json!({"app": "fw"})),
        service("blue", "web", json!({"app": "web"}), "LoadBalancer"),
        json!({"apiVersion": "networking.k8s.io/v1", "kind": "Ingress", "metadata": {"name": "web-ing", "namespace": "blue"},
               "spec": {"rules": [{"http": {"paths": [{"path": "/", "pathType": "Prefix", "backend": {"service": {"name": "web", "port": {"number": 80}}}}]}}]}}),
    ];
    objs.extend(extra);
    Fx::new(objs)
}

#[test]
fn isolated_namespace_reachability() {
    let fx = isolated_fixture(vec![]);
    let v = |from: &str, to: &str| fx.up(from, to, "TCP/80").verdict;
    assert_eq!(v("blue/db", "blue/web"), Verdict::Allow, "own pods");
    assert_eq!(v("blue/db", "svc:blue/web"), Verdict::Allow, "own services");
    assert_eq!(
        v("blue/db", "svc:x/s-x-a"),
        Verdict::Allow,
        "cluster services"
    );
    assert_eq!(
        v("x/a", "blue/web"),
        Verdict::Deny,
        "other namespaces do not reach its pods"
    );
    assert_eq!(v("x/a", "svc:blue/web"), Verdict::Deny, "nor its services");
    assert_eq!(
        v("red/app", "blue/web"),
        Verdict::Deny,
        "nor do other isolated namespaces"
    );
    assert_eq!(v("red/app", "svc:blue/web"), Verdict::Deny);
    assert_eq!(
        v("blue/web", "x/a"),
        Verdict::Deny,
        "its pods reach no pods of other namespaces"
    );
    let e = fx.up("x/a", "blue/web", "TCP/80");
    assert_eq!(
        e.explanation.to_string(),
        "denied: network isolation — k8s-default-pod-network and k8s-blue-pod-network are not connected by any network-policy"
    );
    let e = fx.up("x/a", "svc:blue/web", "TCP/80");
    assert!(
        e.explanation
            .to_string()
            .contains("k8s-default-pod-network and k8s-blue-service-network"),
        "{}",
        e.explanation
    );
}

#[test]
fn isolated_services_are_reachable_from_outside() {
    let fx = isolated_fixture(vec![]);
    let e = fx.up("external:internet-client", "lb:blue/web", "TCP/80");
    assert_eq!(e.verdict, Verdict::Allow, "{}", e.explanation);
    assert_eq!(e.path.backends, ["blue/web"]);
    assert_eq!(
        fx.up(
            "external:internet-client",
            "nodeport:blue/web@node-1",
            "TCP/30000"
        )
        .verdict,
        Verdict::Allow
    );
    assert_eq!(
        fx.up(
            "external:internet-client",
            "nodeport:blue/web@node-2",
            "TCP/http"
        )
        .verdict,
        Verdict::Allow
    );
    let e = fx.up("external:internet-client", "ingress:blue/web-ing", "TCP/80");
    assert_eq!(e.verdict, Verdict::Allow, "{}", e.explanation);
    assert_eq!(
        fx.up(
            "external:internet-client",
            "ingress:blue/web-ing",
            "TCP/8080"
        )
        .verdict,
        Verdict::Reject
    );
    assert_eq!(
        fx.up("external:internet-client", "blue/web", "TCP/80")
            .verdict,
        Verdict::Deny
    );
    assert_eq!(
        fx.up("host:cloud-db", "lb:blue/web", "TCP/80").verdict,
        Verdict::Allow
    );
}

#[test]
fn ingress_proxy_is_not_blocked_by_backend_policy_but_others_are() {
    let fx = isolated_fixture(vec![np(
        "blue",
        "deny-all",
        json!({"podSelector": {}, "policyTypes": ["Ingress"]}),
    )]);
    let e = fx.up("external:internet-client", "ingress:blue/web-ing", "TCP/80");
    assert_eq!(e.verdict, Verdict::Allow, "{}", e.explanation);
    assert!(
        e.explanation
            .to_string()
            .contains("firewall rule k8s-Ingress-blue-web-ing-web in k8s-Ingress"),
        "{}",
        e.explanation
    );
    assert_eq!(
        fx.up("external:internet-client", "lb:blue/web", "TCP/80")
            .verdict,
        Verdict::Deny
    );
    assert_eq!(
        fx.up("blue/db", "blue/web", "TCP/80").verdict,
        Verdict::Deny
    );
}

#[test]
fn the_source_egress_policy_applies_to_ingress_probes() {
    let fx = isolated_fixture(vec![np(
        "blue",
        "no-egress",
        json!({"podSelector": {"matchLabels": {"app": "db"}}, "policyTypes": ["Egress"]}),
    )]);
    let e = fx.up("blue/db", "ingress:blue/web-ing", "TCP/80");
    assert_eq!(e.verdict, Verdict::Deny, "{}", e.explanation);
    assert!(
        e.explanation
            .to_string()
            .contains("egress from blue/db isolated by blue/no-egress"),
        "{}",
        e.explanation
    );
    assert_eq!(
        fx.up("blue/web", "ingress:blue/web-ing", "TCP/80").verdict,
        Verdict::Allow
    );
    let r = fx.r50("blue/db", "ingress:blue/web-ing", "TCP/80");
    assert_eq!(r.verdict, Verdict::Deny);
    assert!(
        r.deviations.is_empty(),
        "upstream denies too: {:?}",
        r.deviations
    );
}

#[test]
fn network_isolation_takes_precedence_over_network_policy() {
    let fx = isolated_fixture(vec![np(
        "blue",
        "allow-all",
        json!({"podSelector": {}, "ingress": [{}]}),
    )]);
    let e = fx.up("x/a", "blue/web", "TCP/80");
    assert_eq!(e.verdict, Verdict::Deny);
    assert_eq!(
        e.explanation.to_string(),
        "denied: network isolation — k8s-default-pod-network and k8s-blue-pod-network are not connected by any network-policy (isolation takes precedence over NetworkPolicy blue/allow-all)"
    );
}

#[test]
fn service_chain_steers_and_filters() {
    let mut fx = isolated_fixture(vec![]);
    let chain = ServiceChain {
        name: "fw".into(),
        left: "namespace:blue".parse().unwrap(),
        right: "namespace:red".parse().unwrap(),
        instance: "red/fw".into(),
        ports: vec!["TCP/80".parse().unwrap(), "TCP/81".parse().unwrap()],
        function: harness_scenario::ServiceFunction {
            drop: vec!["TCP/81".parse().unwrap()],
        },
    };
    fx.cluster.add_service_chain(&chain).unwrap();
    let e = fx.up("blue/web", "red/app", "TCP/80");
    assert_eq!(
        (e.verdict, e.path.via.clone()),
        (Verdict::Allow, vec!["fw".to_string()]),
        "{}",
        e.explanation
    );
    assert_eq!(e.path.underlay, Underlay::Tunnel);
    let e = fx.up("red/app", "blue/web", "TCP/81");
    assert_eq!(e.verdict, Verdict::Deny);
    assert!(e.explanation.to_string().contains("dropped by service instance fw (red/fw) chained between k8s-blue-pod-network and k8s-red-pod-network: its function drops TCP/81"));
    assert_eq!(
        fx.up("blue/web", "red/app", "UDP/80").verdict,
        Verdict::Deny,
        "not steered, still isolated"
    );
    let bad = ServiceChain {
        instance: "red/nope".into(),
        ..chain.clone()
    };
    assert!(
        fx.cluster
            .add_service_chain(&bad)
            .unwrap_err()
            .to_string()
            .contains("instance pod `red/nope` does not exist")
    );
    let same = ServiceChain {
        right: "namespace:blue".parse().unwrap(),
        ..chain
    };
    assert!(fx.cluster.add_service_chain(&same).is_err());
}

#[test]
fn gateway_icmp_and_dns_always_allowed() {
    let fx = Fx::new(vec![np(
        "x",
        "deny-all",
        json!({"podSelector": {}, "policyTypes": ["Ingress", "Egress"]}),
    )]);
    let oracle = Oracle::new(&fx.cluster, Profile::Upstream);
    let gw = fx.cluster.gateway(&NetworkId::DefaultPod);
    let a = fx.ep("x/a");
    assert_eq!(gw.label(), "gateway:default-pod-network");
    assert_eq!(
        oracle.evaluate(&a, &gw, &PortSpec::icmp()).verdict,
        Verdict::Allow
    );
    assert_eq!(
        oracle.evaluate(&a, &gw, &"UDP/53".parse().unwrap()).verdict,
        Verdict::Allow
    );
    assert_eq!(
        oracle.evaluate(&a, &gw, &PortSpec::tcp(80)).verdict,
        Verdict::Deny
    );
}

#[test]
fn nodes_hosts_and_external_clients() {
    let fx = Fx::new(vec![]);
    let e = fx.up("x/a", "node:node-2", "ICMP");
    assert_eq!(
        (e.verdict, e.path.underlay),
        (Verdict::Allow, Underlay::Plain)
    );
    assert_eq!(
        fx.up("x/a", "node:node-2", "TCP/22").verdict,
        Verdict::Reject
    );
    assert_eq!(
        fx.up("node:node-1", "x/b", "TCP/80").verdict,
        Verdict::Allow
    );
    assert_eq!(
        fx.up("host:cloud-db", "x/b", "TCP/80").verdict,
        Verdict::Allow,
        "fabric-forwarding pods are on the underlay"
    );
    assert_eq!(
        fx.up("external:internet-client", "node:node-1", "TCP/80")
            .verdict,
        Verdict::Deny
    );
    let e = fx.up("svc:x/s-x-a", "x/a", "TCP/80");
    assert!(e.explanation.to_string().contains("cannot originate"));
}

#[test]
fn custom_network_reaches_only_itself() {
    let ann = json!({"opencontrail.org/network": "{'domain':'default-domain','project':'admin','name':'vn1'}"});
    let fx = Fx::new(vec![
        namespace("c", json!({}), ann),
        pod("c", "a"),
        pod("c", "b"),
    ]);
    assert_eq!(fx.up("c/a", "c/b", "TCP/80").verdict, Verdict::Allow);
    assert_eq!(fx.up("c/a", "x/a", "TCP/80").verdict, Verdict::Deny);
    assert_eq!(fx.up("c/a", "svc:x/s-x-a", "TCP/80").verdict, Verdict::Deny);
    assert_eq!(
        fx.up("c/a", "host:cloud-db", "TCP/5432").verdict,
        Verdict::Deny
    );
    let e = fx.up("x/a", "c/a", "TCP/80");
    assert!(
        e.explanation
            .to_string()
            .contains("default-domain:admin:vn1"),
        "{}",
        e.explanation
    );
}

#[test]
fn isolated_external_ip_is_reachable_from_outside_but_its_cluster_ip_is_not() {
    let fx = isolated_fixture(vec![
        json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web-ext", "namespace": "blue"},
               "spec": {"selector": {"app": "web"}, "externalIPs": ["203.0.113.200"],
                        "ports": [{"name": "http", "port": 80, "targetPort": "serve-80-tcp"}]}}),
    ]);
    let e = fx.up("external:internet-client", "lb:blue/web-ext", "TCP/80");
    assert_eq!(e.verdict, Verdict::Allow, "{}", e.explanation);
    assert_eq!(e.path.backends, ["blue/web"]);
    assert!(
        e.explanation
            .to_string()
            .contains("lb:blue/web-ext floating IP 203.0.113.200 TCP/80 DNAT to blue/web:80"),
        "{}",
        e.explanation
    );
    assert_eq!(
        fx.up("external:internet-client", "lb:blue/web-ext", "TCP/81")
            .verdict,
        Verdict::Reject,
        "not a port of the service"
    );
    for to in ["svc:blue/web-ext", "svc:blue/web", "svc:x/s-x-a"] {
        let e = fx.up("external:internet-client", to, "TCP/80");
        assert_eq!(e.verdict, Verdict::Deny, "{to}: {}", e.explanation);
        assert!(
            e.explanation
                .to_string()
                .contains("lives in the overlay service network"),
            "{}",
            e.explanation
        );
    }
    // Other namespaces still do not reach its ClusterIP.
    assert_eq!(
        fx.up("x/a", "svc:blue/web-ext", "TCP/80").verdict,
        Verdict::Deny
    );
    assert_eq!(
        fx.up("blue/db", "svc:blue/web-ext", "TCP/80").verdict,
        Verdict::Allow
    );
}

#[test]
fn isolation_takes_precedence_over_egress_and_namespace_selector_policies_too() {
    let fx = isolated_fixture(vec![
        np(
            "x",
            "to-blue",
            json!({"podSelector": {}, "policyTypes": ["Egress"], "egress": [{"to": [
                {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "blue"}}}]}]}),
        ),
        np(
            "blue",
            "from-x",
            json!({"podSelector": {}, "ingress": [{"from": [
                {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "x"}}}]}]}),
        ),
    ]);
    let e = fx.up("x/a", "blue/web", "TCP/80");
    assert_eq!(
        e.explanation.to_string(),
        "denied: network isolation — k8s-default-pod-network and k8s-blue-pod-network are not connected by any network-policy (isolation takes precedence over NetworkPolicy x/to-blue, blue/from-x)"
    );
    for profile in [Profile::Upstream, Profile::R50] {
        for to in ["blue/web", "svc:blue/web", "blue/db"] {
            let e = fx.eval(profile, "x/a", to, "TCP/80");
            assert_eq!(
                e.verdict,
                Verdict::Deny,
                "{profile:?} {to}: {}",
                e.explanation
            );
            assert!(e.deviations.is_empty());
        }
    }
}

#[test]
fn forwarding_is_on_by_default_and_an_isolated_namespace_alone_can_turn_it_off() {
    assert!(ContrailSettings::default().ip_fabric_forwarding);
    let fx = Fx::new(vec![
        namespace(
            "nofwd",
            json!({}),
            json!({"opencontrail.org/isolation": "true", "opencontrail.org/ip_fabric_forwarding": "false"}),
        ),
        namespace(
            "plain",
            json!({}),
            json!({"opencontrail.org/ip_fabric_forwarding": "false"}),
        ),
        pod("nofwd", "a"),
        pod("plain", "a"),
    ]);
    let fabric: ipnet::Ipv4Net = "10.64.0.0/12".parse().unwrap();
    let pods: ipnet::Ipv4Net = "10.32.0.0/12".parse().unwrap();
    assert!(pods.contains(&fx.cluster.pod_ip("nofwd", "a").unwrap()));
    assert!(fabric.contains(&fx.cluster.pod_ip("plain", "a").unwrap()));
    let e = fx.up("nofwd/a", "host:cloud-db", "TCP/5432");
    assert_eq!(
        e.explanation.to_string(),
        "denied: host:cloud-db has no vrouter and drops the MPLSoUDP packet from k8s-nofwd-pod-network (no ip-fabric forwarding or fabric SNAT)"
    );
    assert_eq!(
        fx.up("host:cloud-db", "nofwd/a", "TCP/80").verdict,
        Verdict::Deny
    );
    // A non-isolated namespace's pods live in the default pod network: its setting applies.
    let e = fx.up("plain/a", "host:cloud-db", "TCP/5432");
    assert_eq!(
        (e.verdict, e.path.underlay),
        (Verdict::Allow, Underlay::Plain)
    );
    assert_eq!(
        fx.up("host:cloud-db", "plain/a", "TCP/80").verdict,
        Verdict::Allow
    );
}

#[test]
fn fabric_snat_of_an_isolated_namespace() {
    let off = ContrailSettings {
        ip_fabric_forwarding: false,
        ..Default::default()
    };
    let fx = Fx::with(
        vec![
            namespace(
                "snat",
                json!({}),
                json!({"opencontrail.org/isolation": "true", "opencontrail.org/ip_fabric_snat": "true"}),
            ),
            namespace(
                "plainsnat",
                json!({}),
                json!({"opencontrail.org/ip_fabric_snat": "true"}),
            ),
            namespace(
                "both",
                json!({}),
                json!({"opencontrail.org/isolation": "true", "opencontrail.org/ip_fabric_forwarding": "true",
                       "opencontrail.org/ip_fabric_snat": "true"}),
            ),
            pod("snat", "a"),
            pod("plainsnat", "a"),
            pod("both", "a"),
        ],
        off,
    );
    let node = fx.cluster.pod("snat", "a").unwrap().node.clone();
    let e = fx.up("snat/a", "host:cloud-db", "UDP/53");
    assert_eq!(
        (e.verdict, e.path.underlay, e.path.snat),
        (Verdict::Allow, Underlay::Plain, true)
    );
    assert!(
        e.explanation.to_string().starts_with(&format!(
            "allowed: k8s-snat-pod-network has fabric SNAT: the source is translated to the address of {node}"
        )),
        "{}",
        e.explanation
    );
    let e = fx.up("snat/a", "external:internet-client", "ICMP");
    assert_eq!((e.verdict, e.path.snat), (Verdict::Allow, true));
    assert!(e.explanation.to_string().contains("fabric SNAT"));
    // Sessions are initiated from the pod side only.
    assert_eq!(
        fx.up("host:cloud-db", "snat/a", "TCP/80").verdict,
        Verdict::Deny
    );
    // SNAT pods stay isolated from other namespaces.
    assert_eq!(fx.up("snat/a", "x/a", "TCP/80").verdict, Verdict::Deny);
    assert_eq!(fx.up("x/a", "snat/a", "TCP/80").verdict, Verdict::Deny);
    // The annotation does nothing on a non-isolated namespace (default pod network, global off).
    assert_eq!(
        fx.up("plainsnat/a", "host:cloud-db", "UDP/53").verdict,
        Verdict::Deny
    );
    // Forwarding wins over SNAT.
    let e = fx.up("both/a", "host:cloud-db", "UDP/53");
    assert_eq!((e.verdict, e.path.snat), (Verdict::Allow, false));
}

#[test]
fn nodes_are_reachable_from_every_kube_manager_network_but_not_from_custom_ones() {
    let ann = json!({"opencontrail.org/network": "{'domain':'default-domain','project':'admin','name':'vn1'}"});
    let mut extra = vec![namespace("c", json!({}), ann), pod("c", "a")];
    extra.push(np(
        "blue",
        "deny-all",
        json!({"podSelector": {}, "policyTypes": ["Ingress"]}),
    ));
    let fx = isolated_fixture(extra);
    for from in ["x/a", "blue/web", "red/app"] {
        let e = fx.up(from, "node:node-1", "ICMP");
        assert_eq!(e.verdict, Verdict::Allow, "{from}: {}", e.explanation);
        assert!(
            e.explanation
                .to_string()
                .contains("k8s-default-ip-fabric-np"),
            "{}",
            e.explanation
        );
    }
    let e = fx.up("c/a", "node:node-1", "ICMP");
    assert_eq!(e.verdict, Verdict::Deny);
    assert!(
        e.explanation
            .to_string()
            .contains("default-domain:admin:vn1 is not connected to the ip-fabric"),
        "{}",
        e.explanation
    );
    // The node reaches pods of isolated namespaces (kubelet probes), subject to their policies.
    assert_eq!(
        fx.up("node:node-1", "red/app", "TCP/80").verdict,
        Verdict::Allow
    );
    let e = fx.up("node:node-1", "blue/web", "TCP/80");
    assert_eq!(e.verdict, Verdict::Deny);
    assert!(
        e.explanation
            .to_string()
            .contains("ingress to blue/web isolated by blue/deny-all"),
        "{}",
        e.explanation
    );
    assert_eq!(fx.up("node:node-1", "c/a", "TCP/80").verdict, Verdict::Deny);
}

#[test]
fn service_chain_without_ports_steers_everything_and_policy_still_applies() {
    let mut fx = isolated_fixture(vec![np(
        "red",
        "app-from-blue-80",
        json!({"podSelector": {"matchLabels": {"app": "app"}}, "ingress": [{
            "from": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "blue"}}}],
            "ports": [{"protocol": "TCP", "port": 80}]}]}),
    )]);
    fx.cluster
        .add_service_chain(&ServiceChain {
            name: "fw".into(),
            left: "namespace:blue".parse().unwrap(),
            right: "namespace:red".parse().unwrap(),
            instance: "red/fw".into(),
            ports: vec![],
            function: harness_scenario::ServiceFunction {
                drop: vec!["UDP/81".parse().unwrap()],
            },
        })
        .unwrap();
    let e = fx.up("blue/web", "red/app", "TCP/80");
    assert_eq!(
        (e.verdict, e.path.via.clone()),
        (Verdict::Allow, vec!["fw".to_string()]),
        "{}",
        e.explanation
    );
    let e = fx.up("blue/web", "red/app", "TCP/81");
    assert_eq!(e.verdict, Verdict::Deny);
    let text = e.explanation.to_string();
    assert!(
        text.contains("steered through service instance fw (red/fw)")
            && text.contains("ingress to red/app isolated by red/app-from-blue-80"),
        "{text}"
    );
    let e = fx.up("blue/db", "red/fw", "UDP/81");
    assert_eq!(e.verdict, Verdict::Deny);
    assert!(
        e.explanation
            .to_string()
            .contains("its function drops UDP/81")
    );
    let e = fx.up("red/fw", "blue/db", "ICMP");
    assert_eq!(
        (e.verdict, e.path.via.clone()),
        (Verdict::Allow, vec!["fw".to_string()]),
        "both directions, every protocol: {}",
        e.explanation
    );
    assert_eq!(
        fx.up("blue/web", "x/a", "TCP/80").verdict,
        Verdict::Deny,
        "the chain joins blue and red only"
    );
}

#[test]
fn every_verdict_has_an_explanation() {
    let ann = json!({"opencontrail.org/network": "{'domain':'default-domain','project':'admin','name':'vn1'}"});
    let fx = isolated_fixture(vec![
        namespace("c", json!({}), ann),
        pod("c", "a"),
        json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "hn", "namespace": "x", "labels": {"pod": "hn"}},
               "spec": {"hostNetwork": true, "nodeName": "node-1", "containers": [{"name": "c", "ports": agent_ports()}]}}),
        service("x", "np", json!({"pod": "a"}), "NodePort"),
        np(
            "x",
            "deny-all",
            json!({"podSelector": {"matchLabels": {"pod": "b"}}, "policyTypes": ["Ingress", "Egress"]}),
        ),
    ]);
    let peers = [
        "x/a",
        "x/b",
        "x/hn",
        "blue/web",
        "c/a",
        "svc:x/s-x-a",
        "svc:blue/web",
        "nodeport:x/np@node-2",
        "lb:blue/web",
        "ingress:blue/web-ing",
        "node:node-1",
        "node:node-2",
        "host:cloud-db",
        "external:internet-client",
    ];
    for profile in [Profile::Upstream, Profile::R50] {
        let oracle = Oracle::new(&fx.cluster, profile);
        for from in peers {
            for to in peers {
                for port in ["TCP/80", "UDP/53", "ICMP", "TCP/30000"] {
                    let e = oracle.evaluate(&fx.ep(from), &fx.ep(to), &port.parse().unwrap());
                    let text = e.explanation.to_string();
                    let prefix = format!("{}: ", e.verdict.past_tense());
                    assert!(
                        !e.explanation.facts.is_empty()
                            && text.starts_with(&prefix)
                            && text.len() > prefix.len() + 10,
                        "{profile:?} {from} -> {to} {port}: `{text}`"
                    );
                }
            }
        }
    }
}

// ------------------------------------------------------------------ §3 r5.0 deviations

fn deviates(fx: &Fx, from: &str, to: &str, port: &str, want: Deviation) {
    let up = fx.up(from, to, port);
    let r = fx.r50(from, to, port);
    assert_ne!(
        up.verdict, r.verdict,
        "upstream {} / r5.0 {}",
        up.explanation, r.explanation
    );
    assert!(
        r.deviations.contains(&want),
        "{from} -> {to} {port}: expected {want}, got {:?}: {}",
        r.deviations,
        r.explanation
    );
    assert!(
        r.explanation.to_string().contains(want.name()),
        "{}",
        r.explanation
    );
    let oracle = Oracle::new(&fx.cluster, Profile::R50);
    assert_eq!(
        oracle.deviations(&fx.ep(from), &fx.ep(to), &port.parse().unwrap()),
        r.deviations
    );
}

#[test]
fn r50_cluster_wide_first_match() {
    let fx = Fx::new(vec![
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
    ]);
    deviates(
        &fx,
        "x/a",
        "x/b",
        "TCP/80",
        Deviation::ClusterWideFirstMatch,
    );
    assert_eq!(
        fx.r50("x/a", "x/b", "TCP/80").deviations,
        [Deviation::ClusterWideFirstMatch]
    );
    assert_eq!(fx.r50("y/a", "x/b", "TCP/80").verdict, Verdict::Deny);
    assert!(fx.r50("y/a", "x/b", "TCP/80").deviations.is_empty());
}

#[test]
fn r50_match_expressions_ignored() {
    let fx = Fx::new(vec![np(
        "x",
        "deny-a",
        json!({"podSelector": {"matchExpressions": [{"key": "pod", "operator": "In", "values": ["a"]}]}, "policyTypes": ["Ingress"]}),
    )]);
    deviates(
        &fx,
        "y/a",
        "x/b",
        "TCP/80",
        Deviation::MatchExpressionsIgnored,
    );
}

#[test]
fn r50_empty_selector_any() {
    let fx = Fx::new(vec![np(
        "x",
        "from-x",
        json!({"podSelector": {"matchLabels": {"pod": "a"}}, "ingress": [{"from": [{"podSelector": {}}]}]}),
    )]);
    deviates(&fx, "y/b", "x/a", "TCP/80", Deviation::EmptySelectorAny);
    assert_eq!(fx.r50("x/b", "x/a", "TCP/80").verdict, Verdict::Allow);
}

#[test]
fn r50_peer_selectors_or() {
    let fx = Fx::new(vec![np(
        "x",
        "combo",
        json!({"podSelector": {"matchLabels": {"pod": "a"}}, "ingress": [{"from": [
        {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "y"}}, "podSelector": {"matchLabels": {"pod": "b"}}}]}]}),
    )]);
    deviates(&fx, "y/a", "x/a", "TCP/80", Deviation::PeerSelectorsOr);
    deviates(&fx, "x/b", "x/a", "TCP/80", Deviation::PeerSelectorsOr);
    assert_eq!(fx.r50("y/b", "x/a", "TCP/80").verdict, Verdict::Allow);
    assert_eq!(fx.r50("z/b", "x/a", "TCP/80").verdict, Verdict::Deny);
}

#[test]
fn r50_protocol_default_any() {
    let fx = Fx::new(vec![np(
        "x",
        "p80",
        json!({"podSelector": {"matchLabels": {"pod": "a"}}, "ingress": [{"ports": [{"port": 80}]}]}),
    )]);
    deviates(&fx, "y/b", "x/a", "UDP/80", Deviation::ProtocolDefaultAny);
}

#[test]
fn r50_sctp_unsupported() {
    let fx = Fx::new(vec![np(
        "x",
        "sctp-only",
        json!({"podSelector": {"matchLabels": {"pod": "a"}}, "ingress": [{"ports": [{"protocol": "SCTP", "port": 80}]}]}),
    )]);
    deviates(&fx, "y/b", "x/a", "TCP/80", Deviation::SctpUnsupported);
    let oracle = Oracle::new(&fx.cluster, Profile::R50);
    assert_eq!(oracle.translation_errors().len(), 1);
    assert!(
        oracle.translation_errors()[0]
            .to_string()
            .starts_with("NetworkPolicy x/sctp-only: port protocol SCTP")
    );
    assert!(
        Oracle::new(&fx.cluster, Profile::Upstream)
            .translation_errors()
            .is_empty()
    );
}

#[test]
fn r50_named_ports_unresolved() {
    let fx = Fx::new(vec![np(
        "x",
        "named",
        json!({"podSelector": {"matchLabels": {"pod": "a"}}, "ingress": [{"ports": [{"port": "serve-80-tcp"}]}]}),
    )]);
    deviates(&fx, "y/b", "x/a", "TCP/80", Deviation::NamedPortsUnresolved);
}

#[test]
fn r50_except_preempts_allow() {
    let yb = Fx::new(vec![]).cluster.pod_ip("y", "b").unwrap();
    let fx = Fx::new(vec![
        np(
            "x",
            "cidr",
            json!({"podSelector": {"matchLabels": {"pod": "a"}}, "ingress": [{"from": [{"ipBlock": {"cidr": "10.64.0.0/16", "except": [format!("{yb}/32")]}}]}]}),
        ),
        np(
            "x",
            "from-y",
            json!({"podSelector": {"matchLabels": {"pod": "a"}}, "ingress": [{"from": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "y"}}}]}]}),
        ),
    ]);
    deviates(&fx, "y/b", "x/a", "TCP/80", Deviation::ExceptPreemptsAllow);
    assert_eq!(fx.r50("y/a", "x/a", "TCP/80").verdict, Verdict::Allow);
}

#[test]
fn r50_end_port_ignored() {
    let fx = Fx::new(vec![np(
        "x",
        "range",
        json!({"podSelector": {"matchLabels": {"pod": "a"}}, "ingress": [{"ports": [{"protocol": "TCP", "port": 80, "endPort": 81}]}]}),
    )]);
    deviates(&fx, "y/b", "x/a", "TCP/81", Deviation::EndPortIgnored);
    assert_eq!(fx.r50("y/b", "x/a", "TCP/80").verdict, Verdict::Allow);
}

#[test]
fn r50_labels_flattened() {
    let fx = Fx::new(vec![
        pod_with("y", "d", json!({"pod": "d", "team": "red"})),
        namespace("z", json!({"team": "red"}), json!({})),
        np(
            "x",
            "team-red",
            json!({"podSelector": {"matchLabels": {"pod": "a"}}, "ingress": [{"from": [{"namespaceSelector": {"matchLabels": {"team": "red"}}}]}]}),
        ),
    ]);
    assert_eq!(fx.up("z/b", "x/a", "TCP/80").verdict, Verdict::Allow);
    deviates(&fx, "y/d", "x/a", "TCP/80", Deviation::LabelsFlattened);
}

#[test]
fn r50_egress_rule_name_collision() {
    let fx = Fx::new(vec![np(
        "x",
        "two-egress",
        json!({"podSelector": {"matchLabels": {"pod": "a"}}, "policyTypes": ["Egress"], "egress": [
        {"to": [{"podSelector": {"matchLabels": {"pod": "b"}}}], "ports": [{"protocol": "TCP", "port": 80}]},
        {"to": [{"podSelector": {"matchLabels": {"pod": "c"}}}], "ports": [{"protocol": "TCP", "port": 80}]}]}),
    )]);
    deviates(
        &fx,
        "x/a",
        "x/b",
        "TCP/80",
        Deviation::EgressRuleNameCollision,
    );
    assert_eq!(fx.r50("x/a", "x/c", "TCP/80").verdict, Verdict::Allow);
}

#[test]
fn r50_ingress_vip_selected() {
    let fx = isolated_fixture(vec![np(
        "blue",
        "deny-all",
        json!({"podSelector": {}, "policyTypes": ["Ingress"]}),
    )]);
    deviates(
        &fx,
        "external:internet-client",
        "ingress:blue/web-ing",
        "TCP/80",
        Deviation::IngressVipSelected,
    );
}

#[test]
fn r50_ingress_vip_leg_that_only_r50_allows_names_the_source_deviations() {
    // Upstream, blue/db may send only to pods (a podSelector peer), and the ingress VIP is an
    // address; r5.0 drops the expression-only selector, so the rule admits any destination.
    let fx = isolated_fixture(vec![np(
        "blue",
        "db-to-pods",
        json!({"podSelector": {"matchLabels": {"app": "db"}}, "policyTypes": ["Egress"],
               "egress": [{"to": [{"podSelector": {"matchExpressions": [{"key": "app", "operator": "Exists"}]}}]}]}),
    )]);
    let up = fx.up("blue/db", "ingress:blue/web-ing", "TCP/80");
    assert_eq!(up.verdict, Verdict::Deny, "{}", up.explanation);
    let r = fx.r50("blue/db", "ingress:blue/web-ing", "TCP/80");
    assert_eq!(r.verdict, Verdict::Allow, "{}", r.explanation);
    assert!(
        r.deviations.contains(&Deviation::EmptySelectorAny)
            && !r.deviations.contains(&Deviation::IngressVipSelected),
        "{:?}",
        r.deviations
    );
    assert!(
        r.explanation.to_string().contains("empty-selector-any"),
        "{}",
        r.explanation
    );
    // The VIP leg's deciding rule is named after the proxy's facts.
    assert!(
        r.explanation
            .to_string()
            .contains("r5.0 first match k8s-blue-db-to-pods/blue-egress-db-to-pods-allow-all-0"),
        "{}",
        r.explanation
    );
}

#[test]
fn r50_sctp_service_as_udp() {
    let fx = Fx::new(vec![
        json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "sctp", "namespace": "x"},
        "spec": {"selector": {"pod": "a"}, "ports": [{"port": 80, "protocol": "SCTP"}]}}),
    ]);
    deviates(
        &fx,
        "x/b",
        "svc:x/sctp",
        "SCTP/80",
        Deviation::SctpServiceAsUdp,
    );
}

#[test]
fn every_deviation_has_a_stable_name_and_a_description() {
    let names: Vec<&str> = Deviation::ALL.iter().map(|d| d.name()).collect();
    let mut sorted = names.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(sorted.len(), names.len());
    assert!(
        names
            .iter()
            .all(|n| n.chars().all(|c| c.is_ascii_lowercase() || c == '-'))
    );
    assert!(Deviation::ALL.iter().all(|d| !d.description().is_empty()));
    assert_eq!(
        serde_json::to_value(Deviation::ClusterWideFirstMatch).unwrap(),
        json!("cluster-wide-first-match")
    );
}

#[test]
fn r50_names_no_deviation_when_only_one_of_several_backends_changes() {
    let fx = Fx::new(vec![
        pod_with("x", "a", json!({"pod": "a", "tier": "web"})),
        pod_with("x", "b", json!({"pod": "b", "tier": "web"})),
        service("x", "web", json!({"tier": "web"}), "ClusterIP"),
        np(
            "x",
            "a-from-x",
            json!({"podSelector": {"matchLabels": {"pod": "a"}}, "ingress": [{"from": [{"podSelector": {}}]}]}),
        ),
    ]);
    deviates(&fx, "y/c", "x/a", "TCP/80", Deviation::EmptySelectorAny);
    // Through the service, x/b answers in both profiles: r5.0 also lets x/a answer, but the
    // verdict is the same, so the upstream case is not broken and no deviation is named.
    let up = fx.up("y/c", "svc:x/web", "TCP/80");
    let r = fx.r50("y/c", "svc:x/web", "TCP/80");
    assert_eq!((up.verdict, r.verdict), (Verdict::Allow, Verdict::Allow));
    assert_eq!(up.path.backends, ["x/b"]);
    assert_eq!(r.path.backends, ["x/a", "x/b"]);
    assert!(r.deviations.is_empty(), "{:?}", r.deviations);
    assert!(
        !r.explanation.to_string().contains("deviation"),
        "{}",
        r.explanation
    );
}

#[test]
fn r50_labels_flattened_on_the_namespace_tag() {
    // Every pod carries `namespace=<ns>`: a namespaceSelector on that key matches pods by their
    // namespace, and kube-manager's own `namespace=<policy ns>` overwrites a podSelector's.
    let fx = Fx::new(vec![np(
        "x",
        "tag",
        json!({"podSelector": {"matchLabels": {"pod": "a"}}, "ingress": [{"from": [
            {"namespaceSelector": {"matchLabels": {"namespace": "y"}}},
            {"podSelector": {"matchLabels": {"namespace": "z"}}}]}]}),
    )]);
    deviates(&fx, "y/b", "x/a", "TCP/80", Deviation::LabelsFlattened);
    deviates(&fx, "x/c", "x/a", "TCP/80", Deviation::LabelsFlattened);
    assert_eq!(fx.r50("z/b", "x/a", "TCP/80").verdict, Verdict::Deny);
    assert!(fx.r50("z/b", "x/a", "TCP/80").deviations.is_empty());
}

// ------------------------------------------------------------------ properties

mod properties {
    use super::*;
    use crate::bench::workload;
    use crate::policy::Direction;
    use proptest::prelude::*;

    fn ports() -> Vec<PortSpec> {
        vec![
            PortSpec::tcp(80),
            PortSpec::tcp(81),
            "UDP/81".parse().unwrap(),
            "SCTP/80".parse().unwrap(),
            PortSpec::icmp(),
        ]
    }

    fn verdicts(
        objs: &[Value],
        spec: &ClusterSpec,
        settings: &ContrailSettings,
        profile: Profile,
    ) -> Vec<(String, String, String, Verdict)> {
        let c = Cluster::from_objects(objs, spec, settings).unwrap();
        let o = Oracle::new(&c, profile);
        let eps: Vec<Endpoint> = c.expand(&"*/*".parse().unwrap()).unwrap();
        let mut out = Vec::new();
        for a in &eps {
            for b in &eps {
                for p in ports() {
                    out.push((
                        a.label(),
                        b.label(),
                        p.to_string(),
                        o.evaluate(a, b, &p).verdict,
                    ));
                }
            }
        }
        out
    }

    /// A deterministic shuffle.
    fn shuffle<T>(v: &mut [T], mut seed: u64) {
        for i in (1..v.len()).rev() {
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let j = (seed >> 33) as usize % (i + 1);
            v.swap(i, j);
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

        #[test]
        fn adding_a_peer_never_denies_an_allowed_cell(seed in any::<u64>(), which in 0usize..6, peer in 0usize..4) {
            let (mut objs, spec, settings) = workload(9, 3, 6, seed);
            let before = verdicts(&objs, &spec, &settings, Profile::Upstream);
            let nps: Vec<usize> = objs.iter().enumerate().filter(|(_, o)| o["kind"] == "NetworkPolicy").map(|(i, _)| i).collect();
            let k = nps[which % nps.len()];
            let extra = [
                json!({"podSelector": {"matchLabels": {"app": "app-1"}}}),
                json!({"namespaceSelector": {"matchLabels": {"team": "t2"}}}),
                json!({"ipBlock": {"cidr": "10.64.0.0/24"}}),
                json!({"namespaceSelector": {}, "podSelector": {"matchLabels": {"tier": "db"}}}),
            ][peer].clone();
            match objs[k]["spec"]["ingress"][0]["from"].as_array_mut() {
                Some(from) if !from.is_empty() => from.push(extra),
                _ => return Ok(()),
            }
            let after = verdicts(&objs, &spec, &settings, Profile::Upstream);
            for (b, a) in before.iter().zip(&after) {
                prop_assert!(!(b.3 == Verdict::Allow && a.3 != Verdict::Allow), "{b:?} became {a:?}");
            }
        }

        #[test]
        fn a_pod_selected_by_no_policy_is_open_in_that_direction(seed in any::<u64>()) {
            let (objs, spec, settings) = workload(9, 3, 5, seed);
            let c = Cluster::from_objects(&objs, &spec, &settings).unwrap();
            let o = Oracle::new(&c, Profile::Upstream);
            let selected = |p: &crate::model::Pod, d: Direction| {
                c.network_policies().iter().any(|np| np.namespace == p.namespace && np.has_type(d) && np.pod_selector.matches(&p.labels))
            };
            for (i, src) in c.pods().iter().enumerate() {
                for (j, dst) in c.pods().iter().enumerate() {
                    if selected(src, Direction::Egress) || selected(dst, Direction::Ingress) {
                        continue;
                    }
                    let e = o.evaluate(&c.pod_endpoint(i), &c.pod_endpoint(j), &PortSpec::tcp(80));
                    prop_assert_eq!(e.verdict, Verdict::Allow, "{}", e.explanation);
                }
            }
        }

        #[test]
        fn evaluation_is_deterministic_and_independent_of_object_order(seed in any::<u64>(), order in any::<u64>()) {
            let (objs, spec, settings) = workload(9, 3, 6, seed);
            let base = verdicts(&objs, &spec, &settings, Profile::Upstream);
            prop_assert_eq!(&base, &verdicts(&objs, &spec, &settings, Profile::Upstream));
            let mut shuffled = objs.clone();
            shuffle(&mut shuffled, order);
            prop_assert_eq!(&base, &verdicts(&shuffled, &spec, &settings, Profile::Upstream));
            // r5.0 depends on NetworkPolicy creation order only: keep their relative order.
            let r = verdicts(&objs, &spec, &settings, Profile::R50);
            let (mut nps, mut rest): (Vec<Value>, Vec<Value>) = objs.into_iter().partition(|o| o["kind"] == "NetworkPolicy");
            shuffle(&mut rest, order);
            let mut mixed = Vec::new();
            for (i, o) in rest.into_iter().enumerate() {
                mixed.push(o);
                if i % 3 == 0 && !nps.is_empty() {
                    mixed.push(nps.remove(0));
                }
            }
            mixed.extend(nps);
            prop_assert_eq!(&r, &verdicts(&mixed, &spec, &settings, Profile::R50));
        }

        #[test]
        fn deny_all_ingress_in_a_namespace_changes_only_cells_into_it(seed in any::<u64>(), n in 0usize..3) {
            let (mut objs, spec, settings) = workload(9, 3, 5, seed);
            let before = verdicts(&objs, &spec, &settings, Profile::Upstream);
            let ns = format!("ns-{n}");
            objs.push(np(&ns, "zz-deny-all", json!({"podSelector": {}, "policyTypes": ["Ingress"]})));
            let after = verdicts(&objs, &spec, &settings, Profile::Upstream);
            for (b, a) in before.iter().zip(&after) {
                if !b.1.starts_with(&format!("{ns}/")) {
                    prop_assert_eq!(b, a);
                } else {
                    prop_assert!(!(a.3 == Verdict::Allow && b.3 != Verdict::Allow), "{:?} became {:?}", b, a);
                }
            }
        }

        #[test]
        fn r50_translator_without_deviations_is_upstream(seed in any::<u64>()) {
            let (objs, spec, settings) = workload(10, 3, 8, seed);
            let c = Cluster::from_objects(&objs, &spec, &settings).unwrap();
            let o = Oracle::new(&c, Profile::Upstream);
            let fw = Firewall::build(&c, Quirks::none());
            for i in 0..c.pods().len() {
                for j in 0..c.pods().len() {
                    for p in ports() {
                        let n = match p.port { Some(harness_scenario::PortRef::Number(n)) => Some(n), _ => None };
                        let up = o.upstream_allows(i, j, &p);
                        let r = fw.decide(&c, FwSubject::Pod(i), FwSubject::Pod(j), p.protocol, n).allowed;
                        prop_assert_eq!(up, r, "{} -> {} {}", c.pods()[i].id(), c.pods()[j].id(), p);
                    }
                }
            }
        }
    }
}

#[test]
fn oracle_and_cluster_are_shareable_across_threads() {
    fn shareable<T: Send + Sync>() {}
    shareable::<Oracle<'static>>();
    shareable::<Cluster>();
    shareable::<Expectation>();
}

#[test]
fn node_ports_follow_kube_proxy_reject_and_drop() {
    // A Local service whose only backend runs on node-2: kube-proxy drops on node-1 (it has
    // endpoints, none local) and forwards on node-2; a service with no endpoint rejects.
    let fx = isolated_fixture(vec![
        json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "solo", "namespace": "x", "labels": {"app": "solo"}},
               "spec": {"nodeName": "node-2", "containers": [{"name": "c", "ports": agent_ports()}]}}),
        json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "local", "namespace": "x"},
               "spec": {"type": "NodePort", "externalTrafficPolicy": "Local", "selector": {"app": "solo"},
                        "ports": [{"port": 80, "targetPort": 80, "nodePort": 31080}]}}),
        json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "empty", "namespace": "x"},
               "spec": {"type": "NodePort", "selector": {"app": "nobody"},
                        "ports": [{"port": 80, "targetPort": 80, "nodePort": 31081}]}}),
    ]);
    let e = fx.up(
        "external:internet-client",
        "nodeport:x/local@node-1",
        "TCP/80",
    );
    assert_eq!(e.verdict, Verdict::Deny, "{}", e.explanation);
    assert!(
        e.explanation.to_string().contains("kube-proxy drops"),
        "{}",
        e.explanation
    );
    let e = fx.up(
        "external:internet-client",
        "nodeport:x/local@node-2",
        "TCP/80",
    );
    assert_eq!(e.verdict, Verdict::Allow, "{}", e.explanation);
    let e = fx.up(
        "external:internet-client",
        "nodeport:x/empty@node-1",
        "TCP/80",
    );
    assert_eq!(e.verdict, Verdict::Reject, "{}", e.explanation);
    // A node port no service holds meets the node's kernel; outside the range, the gateway.
    let e = fx.up("external:internet-client", "node:node-1", "TCP/31999");
    assert_eq!(e.verdict, Verdict::Reject, "{}", e.explanation);
    let e = fx.up("external:internet-client", "node:node-1", "TCP/22");
    assert_eq!(e.verdict, Verdict::Deny, "{}", e.explanation);
}
