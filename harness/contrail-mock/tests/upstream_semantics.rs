//! The `upstream` profile's arrangement, checked end to end: the Contrail objects kube-manager
//! writes, enforced the way the vrouter agent enforces them (research/contrail.md §3.4: each
//! end evaluates the APS bound to its local interface by its `application` tag, policies and
//! rules in sequence order, first match, every rule terminal, implicit deny when the interface
//! has firewall policies), give exactly the NetworkPolicy v1 verdicts, computed here
//! independently from the Kubernetes objects.

use std::collections::{BTreeMap, HashMap};
use std::net::Ipv4Addr;
use std::time::Duration;

use harness_contrail_mock::ConfigDb;
use harness_contrail_mock::kube_manager::{KubeManager, KubeManagerConfig};
use harness_contrail_vnc::VncObject;
use harness_kube_sim::{Config, KubeSim};
use k8s_openapi::api::core::v1::{Namespace, Pod};
use k8s_openapi::api::networking::v1::{NetworkPolicy, NetworkPolicyPeer, NetworkPolicyPort};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::api::{Api, PostParams};
use serde_json::{Value, json};

type Labels = BTreeMap<String, String>;

#[derive(Clone, Debug)]
struct PodInfo {
    ns: String,
    name: String,
    labels: Labels,
    ports: Vec<(String, String, u16)>,
    ip: Ipv4Addr,
    vm: String,
}

// ---------------------------------------------------------------------------------------
// The independent NetworkPolicy v1 evaluation.

fn sel_matches(sel: &LabelSelector, labels: &Labels) -> bool {
    sel.match_labels
        .iter()
        .flatten()
        .all(|(k, v)| labels.get(k) == Some(v))
        && sel.match_expressions.iter().flatten().all(|e| {
            let vals = e.values.clone().unwrap_or_default();
            let v = labels.get(&e.key);
            match e.operator.as_str() {
                "In" => v.is_some_and(|v| vals.contains(v)),
                "NotIn" => v.is_none_or(|v| !vals.contains(v)),
                "Exists" => v.is_some(),
                "DoesNotExist" => v.is_none(),
                _ => false,
            }
        })
}

struct K8s {
    ns_labels: HashMap<String, Labels>,
    nps: Vec<NetworkPolicy>,
}

impl K8s {
    fn peer_matches(&self, np_ns: &str, peer: &NetworkPolicyPeer, p: &PodInfo) -> bool {
        if let Some(b) = &peer.ip_block {
            let net: ipnet::Ipv4Net = b.cidr.parse().expect("cidr");
            return net.contains(&p.ip)
                && !b
                    .except
                    .iter()
                    .flatten()
                    .any(|e| e.parse::<ipnet::Ipv4Net>().expect("except").contains(&p.ip));
        }
        let ns_ok = match &peer.namespace_selector {
            None => p.ns == np_ns,
            Some(s) => sel_matches(s, &self.ns_labels[&p.ns]),
        };
        ns_ok
            && peer
                .pod_selector
                .as_ref()
                .is_none_or(|s| sel_matches(s, &p.labels))
    }

    fn port_matches(
        ports: &Option<Vec<NetworkPolicyPort>>,
        proto: &str,
        port: u16,
        dst: &PodInfo,
    ) -> bool {
        let Some(ports) = ports.as_ref().filter(|p| !p.is_empty()) else {
            return true;
        };
        ports.iter().any(|p| {
            let pp = p.protocol.clone().unwrap_or_else(|| "TCP".into());
            if pp != proto {
                return false;
            }
            match &p.port {
                None => true,
                Some(IntOrString::Int(n)) => {
                    let lo = u16::try_from(*n).expect("port");
                    let hi = p.end_port.map_or(lo, |e| u16::try_from(e).expect("end"));
                    lo <= port && port <= hi
                }
                Some(IntOrString::String(name)) => dst
                    .ports
                    .iter()
                    .any(|(n, pr, num)| n == name && pr == proto && *num == port),
            }
        })
    }

    fn allowed(&self, src: &PodInfo, dst: &PodInfo, proto: &str, port: u16) -> bool {
        let types = |np: &NetworkPolicy| {
            np.spec
                .as_ref()
                .and_then(|s| s.policy_types.clone())
                .unwrap_or_default()
        };
        let selects = |np: &NetworkPolicy, p: &PodInfo| {
            np.metadata.namespace.as_deref() == Some(p.ns.as_str())
                && sel_matches(
                    &np.spec
                        .as_ref()
                        .map(|s| s.pod_selector.clone().unwrap_or_default())
                        .unwrap_or_default(),
                    &p.labels,
                )
        };
        // Egress at the source.
        let eg: Vec<&NetworkPolicy> = self
            .nps
            .iter()
            .filter(|np| selects(np, src) && types(np).iter().any(|t| t == "Egress"))
            .collect();
        let egress_ok = eg.is_empty()
            || eg.iter().any(|np| {
                let ns = np.metadata.namespace.clone().unwrap_or_default();
                np.spec
                    .as_ref()
                    .and_then(|s| s.egress.clone())
                    .into_iter()
                    .flatten()
                    .any(|r| {
                        let peers = r.to.clone().unwrap_or_default();
                        (peers.is_empty() || peers.iter().any(|pe| self.peer_matches(&ns, pe, dst)))
                            && K8s::port_matches(&r.ports, proto, port, dst)
                    })
            });
        let ing: Vec<&NetworkPolicy> = self
            .nps
            .iter()
            .filter(|np| selects(np, dst) && types(np).iter().any(|t| t == "Ingress"))
            .collect();
        let ingress_ok = ing.is_empty()
            || ing.iter().any(|np| {
                let ns = np.metadata.namespace.clone().unwrap_or_default();
                np.spec
                    .as_ref()
                    .and_then(|s| s.ingress.clone())
                    .into_iter()
                    .flatten()
                    .any(|r| {
                        let peers = r.from.clone().unwrap_or_default();
                        (peers.is_empty() || peers.iter().any(|pe| self.peer_matches(&ns, pe, src)))
                            && K8s::port_matches(&r.ports, proto, port, dst)
                    })
            });
        egress_ok && ingress_ok
    }
}

// ---------------------------------------------------------------------------------------
// A minimal vrouter firewall over the config database.

struct Rule {
    pass: bool,
    proto: u64,
    ports: (u64, u64),
    ep1: Ep,
    ep2: Ep,
}

enum Ep {
    Any,
    Tags(Vec<u64>),
    Prefixes(Vec<ipnet::Ipv4Net>),
}

struct Vrouter {
    /// Effective tag ids per VM name.
    tags: HashMap<String, Vec<u64>>,
    /// Ordered rules per VM name (None: no firewall policy).
    lists: HashMap<String, Option<Vec<Rule>>>,
}

fn seq(r: &harness_contrail_vnc::Ref) -> String {
    r.attr
        .as_ref()
        .and_then(|a| a.get("sequence"))
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_owned()
}

fn tag_id(db: &ConfigDb, uuid: &str) -> Option<(String, u64)> {
    let t = db.get(uuid)?;
    let id = u64::from_str_radix(t.fields["tag_id"].as_str()?.trim_start_matches("0x"), 16).ok()?;
    Some((t.fields["tag_type_name"].as_str()?.to_owned(), id))
}

impl Vrouter {
    fn build(db: &ConfigDb, pods: &[PodInfo]) -> Vrouter {
        let mut v = Vrouter {
            tags: HashMap::new(),
            lists: HashMap::new(),
        };
        let apss = db
            .list("application-policy-set", &Default::default())
            .expect("aps");
        for p in pods {
            let vm = db
                .get_by_fq_name("virtual-machine", std::slice::from_ref(&p.vm))
                .expect("vm");
            let vmi_ref = &vm.back_refs_of("virtual_machine_interface_back_refs")[0];
            let vmi = db.get(&vmi_ref.uuid).expect("vmi");
            let vn = db
                .get(&vmi.refs_of("virtual_network_refs")[0].uuid)
                .expect("vn");
            // VMI first, then VN: first writer wins per type, labels accumulate.
            let mut by_type: BTreeMap<String, u64> = BTreeMap::new();
            let mut labels = Vec::new();
            for o in [&vmi, &vn] {
                for r in o.refs_of("tag_refs") {
                    let (t, id) = tag_id(db, &r.uuid).expect("tag");
                    if t == "label" {
                        labels.push(id);
                    } else {
                        by_type.entry(t).or_insert(id);
                    }
                }
            }
            let mut ids: Vec<u64> = by_type.values().copied().chain(labels).collect();
            ids.sort_unstable();
            let app = by_type.get("application").copied();
            let mut policies: Vec<(String, String)> = Vec::new();
            for aps in &apss {
                let bound = aps
                    .refs_of("tag_refs")
                    .iter()
                    .filter_map(|r| tag_id(db, &r.uuid))
                    .any(|(_, id)| Some(id) == app);
                if bound {
                    policies.extend(
                        aps.refs_of("firewall_policy_refs")
                            .iter()
                            .map(|r| (seq(r), r.uuid.clone())),
                    );
                }
            }
            policies.sort();
            let list = (!policies.is_empty()).then(|| {
                let mut rules = Vec::new();
                for (_, fp) in policies {
                    let fp = db.get(&fp).expect("policy");
                    let mut refs: Vec<(String, String)> = fp
                        .refs_of("firewall_rule_refs")
                        .iter()
                        .map(|r| (seq(r), r.uuid.clone()))
                        .collect();
                    refs.sort();
                    for (_, r) in refs {
                        rules.push(Vrouter::rule(db, &db.get(&r).expect("rule")));
                    }
                }
                rules
            });
            v.tags.insert(p.vm.clone(), ids);
            v.lists.insert(p.vm.clone(), list);
        }
        v
    }

    fn rule(db: &ConfigDb, r: &VncObject) -> Rule {
        let ep = |e: &Value| -> Ep {
            if e.get("any").and_then(Value::as_bool) == Some(true) {
                return Ep::Any;
            }
            if let Some(ids) = e
                .get("tag_ids")
                .and_then(Value::as_array)
                .filter(|a| !a.is_empty())
            {
                return Ep::Tags(ids.iter().filter_map(Value::as_u64).collect());
            }
            if let Some(ag) = e.get("address_group").and_then(Value::as_str) {
                let fq: Vec<String> = ag.split(':').map(str::to_owned).collect();
                let g = db
                    .get_by_fq_name("address-group", &fq)
                    .expect("address group");
                let nets = g.fields["address_group_prefix"]["subnet"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|s| {
                        format!(
                            "{}/{}",
                            s["ip_prefix"].as_str().expect("p"),
                            s["ip_prefix_len"]
                        )
                        .parse()
                        .expect("net")
                    })
                    .collect();
                return Ep::Prefixes(nets);
            }
            Ep::Any
        };
        let svc = &r.fields["service"];
        Rule {
            pass: r.fields["action_list"]["simple_action"] == "pass",
            proto: svc["protocol_id"].as_u64().unwrap_or(0),
            ports: (
                svc["dst_ports"]["start_port"].as_u64().unwrap_or(0),
                svc["dst_ports"]["end_port"].as_u64().unwrap_or(65535),
            ),
            ep1: ep(&r.fields["endpoint_1"]),
            ep2: ep(&r.fields["endpoint_2"]),
        }
    }

    fn ep_matches(&self, ep: &Ep, p: &PodInfo) -> bool {
        match ep {
            Ep::Any => true,
            Ep::Tags(ids) => ids.iter().all(|i| self.tags[&p.vm].contains(i)),
            Ep::Prefixes(nets) => nets.iter().any(|n| n.contains(&p.ip)),
        }
    }

    /// The decision at the end whose local interface is `local`'s.
    fn end(&self, local: &PodInfo, src: &PodInfo, dst: &PodInfo, proto: u64, port: u64) -> bool {
        let Some(rules) = &self.lists[&local.vm] else {
            return true;
        };
        for r in rules {
            if (r.proto == 0 || r.proto == proto)
                && r.ports.0 <= port
                && port <= r.ports.1
                && self.ep_matches(&r.ep1, src)
                && self.ep_matches(&r.ep2, dst)
            {
                return r.pass;
            }
        }
        false
    }

    fn allowed(&self, src: &PodInfo, dst: &PodInfo, proto: u64, port: u64) -> bool {
        self.end(src, src, dst, proto, port) && self.end(dst, src, dst, proto, port)
    }
}

fn pod_manifest(name: &str, labels: Value, http: u16) -> Value {
    json!({"metadata": {"name": name, "labels": labels},
           "spec": {"containers": [{"name": "c", "image": "agent", "ports": [
               {"containerPort": 80, "name": "serve-80-tcp"},
               {"containerPort": 81, "name": "serve-81-tcp"},
               {"containerPort": 80, "name": "serve-80-udp", "protocol": "UDP"},
               {"containerPort": 80, "name": "serve-80-sctp", "protocol": "SCTP"},
               {"containerPort": http, "name": "http"}]}]}})
}

/// Builds the cluster, lets kube-manager translate it, and compares every cell: returns the
/// mismatches and the number of allowed cells.
async fn compare(cfg: KubeManagerConfig) -> (Vec<String>, usize) {
    let sim = KubeSim::new(Config::default());
    let client = sim.client();
    let db = ConfigDb::new();
    let km = KubeManager::new(client.clone(), db.clone(), cfg).spawn();
    let pp = PostParams::default();
    let ns_labels = [
        ("x", json!({"team": "red"})),
        ("y", json!({"team": "blue"})),
        ("z", json!({})),
    ];
    for (n, l) in &ns_labels {
        let ns: Namespace =
            serde_json::from_value(json!({"metadata": {"name": n, "labels": l}})).expect("ns");
        Api::<Namespace>::all(client.clone())
            .create(&pp, &ns)
            .await
            .expect("ns");
    }
    let mut rv: u64 = 0;
    for (n, _) in &ns_labels {
        let pods: Api<Pod> = Api::namespaced(client.clone(), n);
        for (p, http) in [("a", 80), ("b", 80), ("c", 81)] {
            let m = pod_manifest(p, json!({"pod": p}), http);
            let c = pods
                .create(&pp, &serde_json::from_value(m).expect("pod"))
                .await
                .expect("pod");
            rv = c
                .metadata
                .resource_version
                .as_deref()
                .and_then(|v| v.parse().ok())
                .unwrap_or(0);
        }
    }
    km.handle()
        .wait_converged_after(rv, Duration::from_secs(10))
        .await
        .expect("converged");
    // Pod addresses (for ipBlock peers).
    let mut pods = Vec::new();
    for (n, _) in &ns_labels {
        for (p, http) in [("a", 80u16), ("b", 80), ("c", 81)] {
            let vm = format!("k8s__{n}__{p}");
            let vmo = db
                .get_by_fq_name("virtual-machine", std::slice::from_ref(&vm))
                .expect("vm");
            let vmi = db
                .get(&vmo.back_refs_of("virtual_machine_interface_back_refs")[0].uuid)
                .expect("vmi");
            let iip = db
                .get(&vmi.back_refs_of("instance_ip_back_refs")[0].uuid)
                .expect("iip");
            let ip: Ipv4Addr = iip.fields["instance_ip_address"]
                .as_str()
                .expect("ip")
                .parse()
                .expect("ip");
            pods.push(PodInfo {
                ns: (*n).to_owned(),
                name: p.to_owned(),
                labels: [("pod".to_owned(), p.to_owned())].into(),
                ports: vec![
                    ("serve-80-tcp".into(), "TCP".into(), 80),
                    ("serve-81-tcp".into(), "TCP".into(), 81),
                    ("serve-80-udp".into(), "UDP".into(), 80),
                    ("serve-80-sctp".into(), "SCTP".into(), 80),
                    ("http".into(), "TCP".into(), http),
                ],
                ip,
                vm,
            });
        }
    }
    let xc = pods[2].ip;
    let nps = vec![
        // AND of namespace (matchExpressions) and pod selectors; a named port resolved on x/a.
        json!({"metadata": {"name": "from-blue-b", "namespace": "x"}, "spec": {
            "podSelector": {"matchLabels": {"pod": "a"}},
            "ingress": [{"from": [{"namespaceSelector": {"matchExpressions": [{"key": "team", "operator": "In", "values": ["blue"]}]},
                                   "podSelector": {"matchLabels": {"pod": "b"}}}],
                         "ports": [{"port": "http"}]}]}}),
        // Egress to the whole pod range minus x/c, TCP 80-81 (endPort).
        json!({"metadata": {"name": "egress-range", "namespace": "y"}, "spec": {
            "podSelector": {}, "policyTypes": ["Egress"],
            "egress": [{"to": [{"ipBlock": {"cidr": "10.64.0.0/12", "except": [format!("{xc}/32")]}}],
                        "ports": [{"protocol": "TCP", "port": 80, "endPort": 81}]}]}}),
        // Default-deny ingress for all but z/c (NotIn).
        json!({"metadata": {"name": "deny", "namespace": "z"}, "spec": {
            "podSelector": {"matchExpressions": [{"key": "pod", "operator": "NotIn", "values": ["c"]}]},
            "policyTypes": ["Ingress"]}}),
        // SCTP only to x/b.
        json!({"metadata": {"name": "sctp", "namespace": "x"}, "spec": {
            "podSelector": {"matchLabels": {"pod": "b"}},
            "ingress": [{"ports": [{"protocol": "SCTP", "port": 80}]}]}}),
        // z/c may only talk to its own namespace on the destination's "http" port.
        json!({"metadata": {"name": "egress-named", "namespace": "z"}, "spec": {
            "podSelector": {"matchLabels": {"pod": "c"}}, "policyTypes": ["Egress"],
            "egress": [{"to": [{"podSelector": {}}], "ports": [{"port": "http"}]}]}}),
        // Every pod of namespaces labelled team may reach z/c on UDP.
        json!({"metadata": {"name": "udp-from-teams", "namespace": "z"}, "spec": {
            "podSelector": {"matchLabels": {"pod": "c"}},
            "ingress": [{"from": [{"namespaceSelector": {"matchExpressions": [{"key": "team", "operator": "Exists"}]}}],
                         "ports": [{"protocol": "UDP"}]}]}}),
    ];
    let mut created = Vec::new();
    for np in nps {
        let ns = np["metadata"]["namespace"].as_str().expect("ns").to_owned();
        let np: NetworkPolicy = serde_json::from_value(np).expect("np");
        let c = Api::<NetworkPolicy>::namespaced(client.clone(), &ns)
            .create(&pp, &np)
            .await
            .expect("np");
        rv = c
            .metadata
            .resource_version
            .as_deref()
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        created.push(c);
    }
    km.handle()
        .wait_converged_after(rv, Duration::from_secs(10))
        .await
        .expect("converged");
    let k8s = K8s {
        ns_labels: ns_labels
            .iter()
            .map(|(n, l)| {
                let mut m: Labels = serde_json::from_value(l.clone()).expect("labels");
                m.insert("kubernetes.io/metadata.name".into(), (*n).into());
                ((*n).to_owned(), m)
            })
            .collect(),
        nps: created,
    };
    let vr = Vrouter::build(&db, &pods);
    let probes = [
        ("TCP", 6, 80),
        ("TCP", 6, 81),
        ("UDP", 17, 80),
        ("SCTP", 132, 80),
        ("TCP", 6, 8080),
    ];
    let mut mismatches = Vec::new();
    let mut allowed = 0;
    for s in &pods {
        for d in &pods {
            if s.vm == d.vm {
                continue; // loopback is not judged
            }
            for (proto, num, port) in probes {
                let want = k8s.allowed(s, d, proto, port);
                let got = vr.allowed(s, d, num, u64::from(port));
                allowed += usize::from(got);
                if want != got {
                    mismatches.push(format!(
                        "{}/{} -> {}/{} {proto}/{port}: NetworkPolicy says {}, the firewall {}",
                        s.ns,
                        s.name,
                        d.ns,
                        d.name,
                        if want { "allow" } else { "deny" },
                        if got { "allows" } else { "denies" }
                    ));
                }
            }
        }
    }
    km.shutdown().await.expect("shutdown");
    (mismatches, allowed)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn firewall_objects_enforce_network_policy_v1() {
    let (mismatches, allowed) = compare(KubeManagerConfig::default()).await;
    assert!(
        mismatches.is_empty(),
        "{} mismatches:\n{}",
        mismatches.len(),
        mismatches.join("\n")
    );
    // The policies do bite: 72 pairs x 5 probes, some allowed, many not.
    assert!(allowed > 50 && allowed < 250, "{allowed} allowed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn translator_faults_are_visible_in_enforcement() {
    use harness_scenario::MockFault;
    for fault in [
        MockFault::EgressRulesDropped,
        MockFault::NamespaceSelectorIgnored,
        MockFault::PodSelectorNotNamespaced,
        MockFault::IpblockExceptIgnored,
        MockFault::NamedPortsUnresolved,
        MockFault::FirewallPolicyOrderBroken,
    ] {
        let (mismatches, _) = compare(KubeManagerConfig::default().with_fault(fault)).await;
        assert!(!mismatches.is_empty(), "{fault:?} changed no verdict");
    }
}
