//! Builds Contrail configuration the way contrail-kube-manager does (research notes §2-§4) in
//! an in-process contrail-mock `ConfigDb`: cluster provisioning, namespaces (default and
//! isolated), pods with VMs, VMIs, instance IPs and tags, services as native load balancers
//! (VIP floating IP with port mappings on the backends), NetworkPolicies as firewall rules in
//! the cluster APS, public floating IPs, and a service chain.

#![allow(dead_code)]

use std::collections::HashSet;
use std::net::Ipv4Addr;

use harness_contrail_mock::ConfigDb;
use harness_contrail_vnc::VncObject;
use harness_vrouter_sim::config::{Snapshot, source};
use harness_vrouter_sim::{EndpointSpec, HostSpec, NodeSpec, ServedPort, Topology};
use serde_json::{Value, json};

pub fn s(v: &[&str]) -> Vec<String> {
    v.iter().map(|x| x.to_string()).collect()
}

#[derive(Debug, Clone)]
pub struct Options {
    pub ip_fabric_forwarding: bool,
    pub ip_fabric_snat: bool,
    pub encapsulation: Vec<&'static str>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            ip_fabric_forwarding: false,
            ip_fabric_snat: false,
            encapsulation: vec!["MPLSoUDP", "MPLSoGRE", "VXLAN"],
        }
    }
}

pub struct Km {
    pub db: ConfigDb,
    pub opts: Options,
    tags: HashSet<String>,
    pub topology: Topology,
    aps_policies: Vec<(String, String)>,
    user_seq: u32,
    denyall_rules: Vec<String>,
    allowall_rules: Vec<String>,
    uid: u64,
    /// Defer the denyall and APS updates of [`Km::network_policy_ingress`] until
    /// [`Km::flush_policies`] (kube-manager updates them per policy; batching keeps big
    /// benchmarks fast).
    pub batch: bool,
    /// The uuid the next [`Km::pod_on`] gives its virtual machine (kube-manager: the pod uid).
    pub next_vm_uuid: Option<String>,
}

fn fq_str(v: &[&str]) -> String {
    v.join(":")
}

impl Km {
    pub fn uuid(&mut self) -> String {
        self.uid += 1;
        format!("00000000-0000-4000-8000-{:012x}", self.uid)
    }

    fn create(&self, t: &str, body: Value) -> VncObject {
        self.db
            .create_json(t, body.clone())
            .unwrap_or_else(|e| panic!("create {t} {body}: {e}"))
    }

    fn update(&self, t: &str, uuid: &str, body: Value) {
        self.db
            .update_json(t, uuid, body.clone())
            .unwrap_or_else(|e| panic!("update {t} {body}: {e}"));
    }

    fn id(&self, t: &str, fq: &[&str]) -> String {
        self.db
            .fq_name_to_uuid(t, &s(fq))
            .unwrap_or_else(|e| panic!("{t} {fq:?}: {e}"))
    }

    pub fn tag(&mut self, k: &str, v: &str) {
        let name = format!("{k}={v}");
        if self.tags.insert(name.clone()) {
            self.create(
                "tag",
                json!({"fq_name": [name], "tag_type_name": k, "tag_value": v}),
            );
        }
    }

    pub fn set_tags(&mut self, t: &str, uuid: &str, tags: &[(&str, &str)]) {
        let mut m = serde_json::Map::new();
        for (k, v) in tags {
            self.tag(k, v);
            m.insert(k.to_string(), json!({"is_global": true, "value": v}));
        }
        self.db
            .set_tags(t, uuid, &m)
            .unwrap_or_else(|e| panic!("set-tag {tags:?}: {e}"));
    }

    fn ipam(&self, name: &str, prefix: &str, len: u8) {
        self.create(
            "network-ipam",
            json!({"fq_name": ["default-domain", "k8s-default", name], "parent_type": "project",
                   "ipam_subnet_method": "flat-subnet",
                   "ipam_subnets": {"subnets": [{"subnet": {"ip_prefix": prefix, "ip_prefix_len": len}}]}}),
        );
    }

    fn project(&self, name: &str) {
        if self
            .db
            .fq_name_to_uuid("project", &s(&["default-domain", name]))
            .is_err()
        {
            self.create(
                "project",
                json!({"fq_name": ["default-domain", name], "parent_type": "domain"}),
            );
        }
    }

    fn vn(&self, project: &str, name: &str, ipam: &str, forwarding: bool, snat: bool) -> String {
        let mut body = json!({
            "fq_name": ["default-domain", project, name], "parent_type": "project",
            "address_allocation_mode": "flat-subnet-only",
            "virtual_network_properties": {"forwarding_mode": "l3"},
            "fabric_snat": snat && !forwarding,
            "network_ipam_refs": [{"to": ["default-domain", "k8s-default", ipam], "attr": {"ipam_subnets": []}}],
        });
        if forwarding {
            body["virtual_network_refs"] =
                json!([{"to": ["default-domain", "default-project", "ip-fabric"], "attr": null}]);
        }
        self.create("virtual-network", body).uuid
    }

    fn policy(&self, project: &str, name: &str, rules: Value) {
        self.create(
            "network-policy",
            json!({"fq_name": ["default-domain", project, name], "parent_type": "project",
                   "network_policy_entries": {"policy_rule": rules}}),
        );
    }

    fn rule(src: Value, dst: Value) -> Value {
        json!({"direction": "<>", "protocol": "any", "action_list": {"simple_action": "pass"},
               "src_addresses": [src], "src_ports": [{"start_port": -1, "end_port": -1}],
               "dst_addresses": [dst], "dst_ports": [{"start_port": -1, "end_port": -1}]})
    }

    fn attach(&self, vn: &[&str], policies: &[&[&str]]) {
        let id = self.id("virtual-network", vn);
        let cur = self.db.read("virtual-network", &id).expect("vn");
        let mut refs: Vec<Value> = cur
            .refs_of("network_policy_refs")
            .iter()
            .map(|r| json!({"to": r.to, "attr": r.attr}))
            .collect();
        for p in policies {
            refs.push(json!({"to": p, "attr": {"sequence": {"major": 0, "minor": 0}}}));
        }
        self.update("virtual-network", &id, json!({"network_policy_refs": refs}));
    }

    /// `_provision_cluster` of kube-manager.
    pub fn new(opts: Options) -> Km {
        let mut km = Km {
            db: ConfigDb::new(),
            opts,
            tags: HashSet::new(),
            topology: Topology::default(),
            aps_policies: Vec::new(),
            user_seq: 3,
            denyall_rules: Vec::new(),
            allowall_rules: Vec::new(),
            uid: 0,
            batch: false,
            next_vm_uuid: None,
        };
        km.project("k8s-default");
        // The cluster APS, tagged application=k8s.
        let aps = km.create(
            "application-policy-set",
            json!({"fq_name": ["default-policy-management", "k8s"], "parent_type": "policy-management"}),
        );
        let gvc = km.id(
            "global-vrouter-config",
            &[
                "default-global-system-config",
                "default-global-vrouter-config",
            ],
        );
        km.update(
            "global-vrouter-config",
            &gvc,
            json!({"port_translation_pools": {"port_translation_pool": [
                    {"protocol": "tcp", "port_range": {"start_port": 56000, "end_port": 57023}},
                    {"protocol": "udp", "port_range": {"start_port": 57024, "end_port": 58047}}]},
                   "encapsulation_priorities": {"encapsulation": km.opts.encapsulation.clone()}}),
        );
        km.ipam("k8s-ip-fabric-ipam", "10.64.0.0", 12);
        km.ipam("k8s-pod-ipam", "10.32.0.0", 12);
        km.ipam("k8s-service-ipam", "10.96.0.0", 12);
        let fwd = km.opts.ip_fabric_forwarding;
        let snat = km.opts.ip_fabric_snat;
        km.vn(
            "k8s-default",
            "k8s-default-pod-network",
            if fwd {
                "k8s-ip-fabric-ipam"
            } else {
                "k8s-pod-ipam"
            },
            fwd,
            snat,
        );
        km.vn(
            "k8s-default",
            "k8s-default-service-network",
            "k8s-service-ipam",
            false,
            false,
        );
        let ipf = "default-domain:default-project:ip-fabric";
        km.policy(
            "k8s-default",
            "k8s-default-ip-fabric-np",
            json!([Self::rule(
                json!({"network_policy": "default-domain:k8s-default:k8s-default-ip-fabric-np"}),
                json!({"virtual_network": ipf})
            )]),
        );
        km.policy(
            "k8s-default",
            "k8s-default-service-np",
            json!([Self::rule(
                json!({"network_policy": "default-domain:k8s-default:k8s-default-service-np"}),
                json!({"virtual_network": "default-domain:k8s-default:k8s-default-service-network"})
            )]),
        );
        km.policy(
            "k8s-default",
            "k8s-default-pod-service-np",
            json!([Self::rule(
                json!({"virtual_network": "default-domain:k8s-default:k8s-default-pod-network"}),
                json!({"virtual_network": "default-domain:k8s-default:k8s-default-service-network"})
            )]),
        );
        let ipf_np: &[&str] = &["default-domain", "k8s-default", "k8s-default-ip-fabric-np"];
        let svc_np: &[&str] = &["default-domain", "k8s-default", "k8s-default-service-np"];
        let pod_svc_np: &[&str] = &[
            "default-domain",
            "k8s-default",
            "k8s-default-pod-service-np",
        ];
        km.attach(
            &["default-domain", "default-project", "ip-fabric"],
            &[ipf_np],
        );
        km.attach(
            &["default-domain", "k8s-default", "k8s-default-pod-network"],
            &[ipf_np, pod_svc_np],
        );
        km.attach(
            &[
                "default-domain",
                "k8s-default",
                "k8s-default-service-network",
            ],
            &[ipf_np, svc_np, pod_svc_np],
        );
        // Cluster firewall policies: Ingress, denyall (tail), allowall (after tail).
        for (name, seq) in [
            ("k8s-Ingress", "00002.0"),
            ("k8s-denyall", "00006.0"),
            ("k8s-allowall", "00007.0"),
        ] {
            km.create(
                "firewall-policy",
                json!({"fq_name": ["default-policy-management", name], "parent_type": "policy-management"}),
            );
            km.aps_policies.push((name.to_owned(), seq.to_owned()));
        }
        km.sync_aps();
        km.set_tags(
            "application-policy-set",
            &aps.uuid,
            &[("application", "k8s")],
        );
        for vn in ["k8s-default-pod-network", "k8s-default-service-network"] {
            let id = km.id("virtual-network", &["default-domain", "k8s-default", vn]);
            km.set_tags("virtual-network", &id, &[("application", "k8s")]);
        }
        km.namespace("default", false);
        km.topology.gateway.ip = Ipv4Addr::new(192, 168, 0, 254);
        km
    }

    fn sync_aps(&self) {
        let aps = self.id(
            "application-policy-set",
            &["default-policy-management", "k8s"],
        );
        let refs: Vec<Value> = self
            .aps_policies
            .iter()
            .map(|(n, seq)| json!({"to": ["default-policy-management", n], "attr": {"sequence": seq}}))
            .collect();
        self.update(
            "application-policy-set",
            &aps,
            json!({"firewall_policy_refs": refs}),
        );
    }

    fn fw_rule(
        &mut self,
        name: &str,
        action: &str,
        ep1: Value,
        ep2: Value,
        proto: &str,
        port: Option<u16>,
    ) {
        for ep in [&ep1, &ep2] {
            if let Some(tags) = ep.get("tags").and_then(Value::as_array) {
                for t in tags {
                    let (k, v) = t.as_str().and_then(|t| t.split_once('=')).expect("k=v");
                    self.tag(k, v);
                }
            }
        }
        let (start, end) = port.map_or((0, 65535), |p| (p, p));
        self.create(
            "firewall-rule",
            json!({"fq_name": ["default-policy-management", name], "parent_type": "policy-management",
                   "action_list": {"simple_action": action}, "direction": ">",
                   "service": {"protocol": proto, "src_ports": {"start_port": 0, "end_port": 65535},
                               "dst_ports": {"start_port": start, "end_port": end}},
                   "endpoint_1": ep1, "endpoint_2": ep2}),
        );
    }

    fn set_policy_rules(&self, policy: &str, rules: &[String]) {
        let id = self.id("firewall-policy", &["default-policy-management", policy]);
        let refs: Vec<Value> = rules
            .iter()
            .enumerate()
            .map(|(i, r)| json!({"to": ["default-policy-management", r], "attr": {"sequence": format!("{i:05}.0")}}))
            .collect();
        self.update("firewall-policy", &id, json!({"firewall_rule_refs": refs}));
    }

    /// `vnc_namespace_add`.
    pub fn namespace(&mut self, ns: &str, isolated: bool) {
        let project = format!("k8s-{ns}");
        self.project(&project);
        if isolated {
            let pod = format!("k8s-{ns}-pod-network");
            let svc = format!("k8s-{ns}-service-network");
            let fwd = self.opts.ip_fabric_forwarding;
            self.vn(
                &project,
                &pod,
                if fwd {
                    "k8s-ip-fabric-ipam"
                } else {
                    "k8s-pod-ipam"
                },
                fwd,
                self.opts.ip_fabric_snat,
            );
            self.vn(&project, &svc, "k8s-service-ipam", false, false);
            let np = format!("k8s-{ns}-pod-service-np");
            self.policy(
                &project,
                &np,
                json!([Self::rule(
                    json!({"virtual_network": fq_str(&["default-domain", &project, &pod])}),
                    json!({"virtual_network": fq_str(&["default-domain", &project, &svc])})
                )]),
            );
            let ns_np: &[&str] = &["default-domain", &project, &np];
            let ipf_np: &[&str] = &["default-domain", "k8s-default", "k8s-default-ip-fabric-np"];
            let svc_np: &[&str] = &["default-domain", "k8s-default", "k8s-default-service-np"];
            self.attach(
                &["default-domain", &project, &pod],
                &[ns_np, ipf_np, svc_np],
            );
            self.attach(&["default-domain", &project, &svc], &[ns_np, ipf_np]);
            for vn in [&pod, &svc] {
                let id = self.id("virtual-network", &["default-domain", &project, vn]);
                self.set_tags("virtual-network", &id, &[("application", "k8s")]);
            }
        }
        // Default security group: allow all.
        let any = json!({"subnet": {"ip_prefix": "0.0.0.0", "ip_prefix_len": 0}});
        let local = json!({"security_group": "local"});
        let rule = |src: &Value, dst: &Value| {
            json!({"direction": ">", "protocol": "any", "ethertype": "IPv4",
                   "src_addresses": [src], "src_ports": [{"start_port": 0, "end_port": 65535}],
                   "dst_addresses": [dst], "dst_ports": [{"start_port": 0, "end_port": 65535}]})
        };
        self.create(
            "security-group",
            json!({"fq_name": ["default-domain", project, format!("k8s-{ns}-default-sg")], "parent_type": "project",
                   "security_group_entries": {"policy_rule": [rule(&any, &local), rule(&local, &any)]}}),
        );
        // Namespace allow rules in k8s-allowall.
        let ing = format!("k8s-Namespace-{ns}-ingress");
        let eg = format!("k8s-Namespace-{ns}-egress");
        let nst = format!("namespace={ns}");
        self.fw_rule(
            &ing,
            "pass",
            json!({"any": true}),
            json!({"tags": [nst]}),
            "any",
            None,
        );
        self.fw_rule(
            &eg,
            "pass",
            json!({"tags": [nst]}),
            json!({"any": true}),
            "any",
            None,
        );
        self.allowall_rules.push(ing);
        self.allowall_rules.push(eg);
        let rules = self.allowall_rules.clone();
        self.set_policy_rules("k8s-allowall", &rules);
    }

    pub fn pod_network(&self, ns: &str) -> Vec<String> {
        let isolated = self
            .db
            .fq_name_to_uuid(
                "virtual-network",
                &s(&[
                    "default-domain",
                    &format!("k8s-{ns}"),
                    &format!("k8s-{ns}-pod-network"),
                ]),
            )
            .is_ok();
        if isolated && ns != "default" {
            s(&[
                "default-domain",
                &format!("k8s-{ns}"),
                &format!("k8s-{ns}-pod-network"),
            ])
        } else {
            s(&["default-domain", "k8s-default", "k8s-default-pod-network"])
        }
    }

    pub fn service_network(&self, ns: &str) -> Vec<String> {
        let own = s(&[
            "default-domain",
            &format!("k8s-{ns}"),
            &format!("k8s-{ns}-service-network"),
        ]);
        if ns != "default" && self.db.fq_name_to_uuid("virtual-network", &own).is_ok() {
            own
        } else {
            s(&[
                "default-domain",
                "k8s-default",
                "k8s-default-service-network",
            ])
        }
    }

    pub fn node(&mut self, name: &str, vhost: Ipv4Addr) {
        self.create(
            "virtual-router",
            json!({"fq_name": ["default-global-system-config", name], "parent_type": "global-system-config",
                   "virtual_router_ip_address": vhost.to_string()}),
        );
        self.topology.nodes.push(NodeSpec {
            name: name.into(),
            vhost,
            ports: vec![ServedPort::tcp(10250)],
        });
    }

    pub fn fabric_host(&mut self, name: &str, ip: Ipv4Addr, ports: Vec<ServedPort>) {
        self.topology.fabric_hosts.push(HostSpec {
            name: name.into(),
            ip,
            ports,
        });
    }

    /// `vnc_pod_add` on `network` (defaults to the namespace's pod network): VM linked to the
    /// node's virtual-router, VMI, instance IP, tags = labels + namespace.
    pub fn pod_on(
        &mut self,
        ns: &str,
        name: &str,
        node: &str,
        labels: &[(&str, &str)],
        network: Option<Vec<String>>,
        ports: Vec<ServedPort>,
    ) -> String {
        let uid = self.next_vm_uuid.take().unwrap_or_else(|| self.uuid());
        let vm = self.create(
            "virtual-machine",
            json!({"uuid": uid, "fq_name": [format!("k8s__{ns}__{name}")], "server_type": "container"}),
        );
        let vr = self.id("virtual-router", &["default-global-system-config", node]);
        let cur = self.db.read("virtual-router", &vr).expect("vr");
        let mut refs: Vec<Value> = cur
            .refs_of("virtual_machine_refs")
            .iter()
            .map(|r| json!({"to": r.to, "uuid": r.uuid}))
            .collect();
        refs.push(json!({"to": vm.fq_name, "uuid": vm.uuid}));
        self.update("virtual-router", &vr, json!({"virtual_machine_refs": refs}));
        let vn = network.unwrap_or_else(|| self.pod_network(ns));
        let project = format!("k8s-{ns}");
        let vmi_uuid = self.uuid();
        let vmi = self.create(
            "virtual-machine-interface",
            json!({"uuid": vmi_uuid, "fq_name": ["default-domain", project, format!("{name}__{vmi_uuid}")],
                   "parent_type": "project",
                   "virtual_network_refs": [{"to": vn}],
                   "virtual_machine_refs": [{"to": vm.fq_name}],
                   "security_group_refs": [{"to": ["default-domain", project, format!("k8s-{ns}-default-sg")]}],
                   "port_security_enabled": true}),
        );
        self.create(
            "instance-ip",
            json!({"fq_name": [format!("{name}__{}", vmi.uuid)],
                   "virtual_network_refs": [{"to": vn}],
                   "virtual_machine_interface_refs": [{"to": vmi.fq_name, "uuid": vmi.uuid}]}),
        );
        let mut tags: Vec<(&str, &str)> = labels.to_vec();
        tags.push(("namespace", ns));
        self.set_tags("virtual-machine-interface", &vmi.uuid, &tags);
        self.topology
            .endpoints
            .push(EndpointSpec::pod(&format!("{ns}/{name}"), &vmi.uuid, ports));
        vmi.uuid
    }

    pub fn pod(&mut self, ns: &str, name: &str, node: &str, labels: &[(&str, &str)]) -> String {
        self.pod_on(
            ns,
            name,
            node,
            labels,
            None,
            vec![
                ServedPort::tcp(80),
                ServedPort::udp(53),
                ServedPort::sctp(9000),
                ServedPort::udp(81),
            ],
        )
    }

    /// A ClusterIP service as the native load balancer: VIP VMI + instance IP in the service
    /// network, and the svc-monitor's floating IP (child of the instance IP) attached to
    /// every backend with port mappings.
    pub fn service(
        &mut self,
        ns: &str,
        name: &str,
        vip: Ipv4Addr,
        port: u16,
        target: u16,
        backends: &[&str],
    ) {
        self.service_ports(ns, name, vip, &[("TCP", port, target)], backends);
    }

    /// [`Km::service`] with several `(protocol, port, targetPort)` mappings.
    pub fn service_ports(
        &mut self,
        ns: &str,
        name: &str,
        vip: Ipv4Addr,
        ports: &[(&str, u16, u16)],
        backends: &[&str],
    ) {
        let vn = self.service_network(ns);
        let project = format!("k8s-{ns}");
        let uid = self.uuid();
        let vmi = self.create(
            "virtual-machine-interface",
            json!({"fq_name": ["default-domain", project, format!("k8s__Service__{name}__{uid}")],
                   "parent_type": "project",
                   "virtual_network_refs": [{"to": vn}],
                   "virtual_machine_interface_device_owner": "K8S:LOADBALANCER"}),
        );
        let iip_name = format!("{name}__{uid}");
        let iip = self.create(
            "instance-ip",
            json!({"fq_name": [iip_name], "instance_ip_address": vip.to_string(),
                   "virtual_network_refs": [{"to": vn}],
                   "virtual_machine_interface_refs": [{"to": vmi.fq_name, "uuid": vmi.uuid}]}),
        );
        let refs: Vec<Value> = backends
            .iter()
            .map(|b| json!({"to": [], "uuid": b}))
            .collect();
        let mappings: Vec<Value> = ports
            .iter()
            .map(|(p, port, target)| json!({"protocol": p, "src_port": port, "dst_port": target}))
            .collect();
        let fip_uuid = self.uuid();
        self.create(
            "floating-ip",
            json!({"fq_name": [iip.fq_name[0].clone(), fip_uuid], "parent_type": "instance-ip",
                   "floating_ip_address": vip.to_string(), "floating_ip_traffic_direction": "ingress",
                   "floating_ip_port_mappings_enable": true,
                   "floating_ip_port_mappings": {"port_mappings": mappings},
                   "virtual_machine_interface_refs": refs}),
        );
        for b in backends {
            self.set_tags("virtual-machine-interface", b, &[("k8s-svc", name)]);
        }
    }

    /// A public network with a floating-IP pool, and a floating IP from it attached to
    /// `vmis` with an optional port mapping (a LoadBalancer service's external IP).
    pub fn public_fip(&mut self, addr: Ipv4Addr, vmis: &[&str], mapping: Option<(u16, u16)>) {
        let pubvn = ["default-domain", "k8s-default", "public"];
        if self
            .db
            .fq_name_to_uuid("virtual-network", &s(&pubvn))
            .is_err()
        {
            self.create(
                "network-ipam",
                json!({"fq_name": ["default-domain", "k8s-default", "public-ipam"], "parent_type": "project"}),
            );
            self.create(
                "virtual-network",
                json!({"fq_name": pubvn, "parent_type": "project", "router_external": true,
                       "network_ipam_refs": [{"to": ["default-domain", "k8s-default", "public-ipam"],
                           "attr": {"ipam_subnets": [{"subnet": {"ip_prefix": "203.0.113.0", "ip_prefix_len": 24}}]}}]}),
            );
            self.create(
                "floating-ip-pool",
                json!({"fq_name": ["default-domain", "k8s-default", "public", "pool"], "parent_type": "virtual-network"}),
            );
        }
        let refs: Vec<Value> = vmis.iter().map(|b| json!({"to": [], "uuid": b})).collect();
        let fip_name = self.uuid();
        let mut body = json!({"fq_name": ["default-domain", "k8s-default", "public", "pool", fip_name],
                              "parent_type": "floating-ip-pool",
                              "floating_ip_address": addr.to_string(),
                              "floating_ip_traffic_direction": "ingress",
                              "virtual_machine_interface_refs": refs});
        if let Some((p, t)) = mapping {
            body["floating_ip_port_mappings_enable"] = json!(true);
            body["floating_ip_port_mappings"] =
                json!({"port_mappings": [{"protocol": "TCP", "src_port": p, "dst_port": t}]});
        }
        self.create("floating-ip", body);
    }

    /// An Ingress as kube-manager writes it for Contrail's haproxy: a VIP interface and
    /// instance IP in the namespace's pod network (tagged `ingress=…`, `namespace=…`), a
    /// `loadbalancer` with provider `opencontrail`, one listener per `(protocol, port)` with one
    /// pool whose member is `member` (the backend service's ClusterIP and port), and the
    /// public floating IP `fip` on the VIP. Returns the VIP interface's uuid.
    pub fn ingress(
        &mut self,
        ns: &str,
        name: &str,
        fip: Ipv4Addr,
        listeners: &[(&str, u16)],
        member: Option<(Ipv4Addr, u16)>,
    ) -> String {
        let vn = self.pod_network(ns);
        let project = format!("k8s-{ns}");
        let uid = self.uuid();
        let vmi = self.create(
            "virtual-machine-interface",
            json!({"fq_name": ["default-domain", project, format!("k8s__Ingress__{name}__{uid}")],
                   "parent_type": "project",
                   "virtual_network_refs": [{"to": vn}],
                   "security_group_refs": [{"to": ["default-domain", project, format!("k8s-{ns}-default-sg")]}],
                   "virtual_machine_interface_device_owner": "K8S:LOADBALANCER"}),
        );
        self.create(
            "instance-ip",
            json!({"fq_name": [format!("{name}__{uid}-vip")],
                   "virtual_network_refs": [{"to": vn}],
                   "virtual_machine_interface_refs": [{"to": vmi.fq_name, "uuid": vmi.uuid}]}),
        );
        let ing = format!("k8s-{ns}-{name}");
        self.set_tags(
            "virtual-machine-interface",
            &vmi.uuid,
            &[("ingress", ing.as_str()), ("namespace", ns)],
        );
        let lb_name = format!("{name}__{uid}");
        let lb = self.create(
            "loadbalancer",
            json!({"fq_name": ["default-domain", project, lb_name], "parent_type": "project",
                   "loadbalancer_provider": "opencontrail",
                   "virtual_machine_interface_refs": [{"to": vmi.fq_name, "uuid": vmi.uuid}]}),
        );
        for (proto, port) in listeners {
            let lname = format!("{lb_name}-{proto}-{port}");
            let listener = self.create(
                "loadbalancer-listener",
                json!({"fq_name": ["default-domain", project, lname], "parent_type": "project",
                       "loadbalancer_listener_properties": {"protocol": proto, "protocol_port": port},
                       "loadbalancer_refs": [{"to": lb.fq_name, "uuid": lb.uuid}]}),
            );
            let pname = format!("{lb_name}-{proto}-{port}-pool");
            let pool = self.create(
                "loadbalancer-pool",
                json!({"fq_name": ["default-domain", project, pname], "parent_type": "project",
                       "loadbalancer_pool_properties": {"protocol": "HTTP", "loadbalancer_method": "ROUND_ROBIN"},
                       "annotations": {"key_value_pair": [{"key": "type", "value": "default"}, {"key": "path", "value": "default"}]},
                       "loadbalancer_listener_refs": [{"to": listener.fq_name, "uuid": listener.uuid}]}),
            );
            if let Some((address, mport)) = member {
                let mut fq = pool.fq_name.clone();
                fq.push("member".into());
                self.create(
                    "loadbalancer-member",
                    json!({"fq_name": fq, "parent_type": "loadbalancer-pool",
                           "loadbalancer_member_properties": {"address": address.to_string(), "protocol_port": mport}}),
                );
            }
        }
        self.public_fip(fip, &[&vmi.uuid], None);
        vmi.uuid
    }

    /// A NetworkPolicy `np` in `ns` selecting `selected` (labels) with one ingress rule from
    /// pods with `from` labels in the same namespace on TCP `port`, as kube-manager
    /// translates it: the allow rule in the user policy `k8s-<ns>-<np>`, the deny rule in
    /// `k8s-denyall`.
    pub fn network_policy_ingress(
        &mut self,
        ns: &str,
        np: &str,
        selected: &[(&str, &str)],
        from: &[(&str, &str)],
        port: Option<u16>,
    ) {
        let mut sel: Vec<String> = selected.iter().map(|(k, v)| format!("{k}={v}")).collect();
        sel.push(format!("namespace={ns}"));
        let mut peer: Vec<String> = from.iter().map(|(k, v)| format!("{k}={v}")).collect();
        peer.push(format!("namespace={ns}"));
        let prefix = format!("{ns}-ingress-{np}-0");
        let allow = format!("{prefix}-podSelector-0-0");
        let proto = if port.is_some() { "tcp" } else { "any" };
        self.fw_rule(
            &allow,
            "pass",
            json!({"tags": peer}),
            json!({"tags": sel.clone()}),
            proto,
            port,
        );
        let policy = format!("k8s-{ns}-{np}");
        self.create(
            "firewall-policy",
            json!({"fq_name": ["default-policy-management", policy], "parent_type": "policy-management"}),
        );
        self.set_policy_rules(&policy, &[allow]);
        let deny = format!("{ns}-ingress-{np}-denyall");
        self.fw_rule(
            &deny,
            "deny",
            json!({"any": true}),
            json!({"tags": sel}),
            "any",
            None,
        );
        self.denyall_rules.push(deny);
        self.user_seq += 1;
        let seq = format!("{:05}.{}", 4, self.user_seq);
        self.aps_policies
            .insert(self.aps_policies.len() - 2, (policy, seq));
        if !self.batch {
            self.flush_policies();
        }
    }

    /// Writes the deferred denyall rules and APS policy list.
    pub fn flush_policies(&mut self) {
        let rules = self.denyall_rules.clone();
        self.set_policy_rules("k8s-denyall", &rules);
        self.sync_aps();
    }

    /// A NetworkPolicy `np` in `ns` selecting `selected` with one egress rule to an ipBlock
    /// `cidr` except `except` (any port), as kube-manager translates it: address groups named
    /// by the CIDRs, the except deny rule before the cidr pass rule in `k8s-<ns>-<np>`, and the
    /// egress default deny in `k8s-denyall`.
    pub fn network_policy_egress_ip_block(
        &mut self,
        ns: &str,
        np: &str,
        selected: &[(&str, &str)],
        cidr: &str,
        except: &str,
    ) {
        let mut sel: Vec<String> = selected.iter().map(|(k, v)| format!("{k}={v}")).collect();
        sel.push(format!("namespace={ns}"));
        for c in [cidr, except] {
            let (ip, len) = c.split_once('/').expect("cidr");
            if self
                .db
                .fq_name_to_uuid("address-group", &s(&["default-policy-management", c]))
                .is_err()
            {
                self.create(
                    "address-group",
                    json!({"fq_name": ["default-policy-management", c], "parent_type": "policy-management",
                           "address_group_prefix": {"subnet": [{"ip_prefix": ip, "ip_prefix_len": len.parse::<u8>().expect("len")}]}}),
                );
            }
        }
        let prefix = format!("{ns}-egress-{np}");
        let deny_except = format!("{prefix}-ipBlock-0-{except}-0");
        let allow_cidr = format!("{prefix}-ipBlock-0-cidr-{cidr}-0");
        self.fw_rule(
            &deny_except,
            "deny",
            json!({"tags": sel.clone()}),
            json!({"address_group": format!("default-policy-management:{except}")}),
            "any",
            None,
        );
        self.fw_rule(
            &allow_cidr,
            "pass",
            json!({"tags": sel.clone()}),
            json!({"address_group": format!("default-policy-management:{cidr}")}),
            "any",
            None,
        );
        let policy = format!("k8s-{ns}-{np}");
        self.create(
            "firewall-policy",
            json!({"fq_name": ["default-policy-management", policy], "parent_type": "policy-management"}),
        );
        self.set_policy_rules(&policy, &[deny_except, allow_cidr]);
        let deny = format!("{prefix}-default-deny-all");
        self.fw_rule(
            &deny,
            "deny",
            json!({"tags": sel}),
            json!({"any": true}),
            "any",
            None,
        );
        self.denyall_rules.push(deny);
        self.user_seq += 1;
        let seq = format!("{:05}.{}", 4, self.user_seq);
        self.aps_policies
            .insert(self.aps_policies.len() - 2, (policy, seq));
        if !self.batch {
            self.flush_policies();
        }
    }

    /// Removes every rule from the cluster policies (so the interfaces still have firewall
    /// policies, but none matches: implicit deny).
    pub fn empty_allowall(&mut self) {
        self.allowall_rules.clear();
        self.set_policy_rules("k8s-allowall", &[]);
    }

    /// A service chain between two networks through service instance `si`, a pod with a
    /// left interface in `left` and a right interface in `right`: service template, service
    /// instance, port tuple, the two VMIs, and a network policy with `apply_service` attached
    /// to both networks.
    pub fn service_chain(
        &mut self,
        si: &str,
        left: &[&str],
        right: &[&str],
        node: &str,
    ) -> (String, String) {
        let ids = self.service_instance(si, left, right, node);
        self.chain_policy(&format!("{si}-chain-np"), left, right, &[si]);
        ids
    }

    /// A service instance (template, instance, port tuple, VM on `node`, left and right VMIs
    /// with instance IPs); returns the left and right VMI uuids.
    pub fn service_instance(
        &mut self,
        si: &str,
        left: &[&str],
        right: &[&str],
        node: &str,
    ) -> (String, String) {
        if self
            .db
            .fq_name_to_uuid("service-template", &s(&["default-domain", "fw-template"]))
            .is_err()
        {
            self.create(
                "service-template",
                json!({"fq_name": ["default-domain", "fw-template"], "parent_type": "domain"}),
            );
        }
        let si_fq = s(&["default-domain", "k8s-default", si]);
        self.create(
            "service-instance",
            json!({"fq_name": si_fq, "parent_type": "project",
                   "service_template_refs": [{"to": ["default-domain", "fw-template"]}]}),
        );
        let pt_fq = [si_fq.clone(), s(&[&format!("{si}-pt")])].concat();
        self.create(
            "port-tuple",
            json!({"fq_name": pt_fq, "parent_type": "service-instance"}),
        );
        let uid = self.uuid();
        let vm = self.create(
            "virtual-machine",
            json!({"uuid": uid, "fq_name": [format!("k8s__default__{si}")], "server_type": "container"}),
        );
        let vr = self.id("virtual-router", &["default-global-system-config", node]);
        let cur = self.db.read("virtual-router", &vr).expect("vr");
        let mut refs: Vec<Value> = cur
            .refs_of("virtual_machine_refs")
            .iter()
            .map(|r| json!({"to": r.to, "uuid": r.uuid}))
            .collect();
        refs.push(json!({"to": vm.fq_name, "uuid": vm.uuid}));
        self.update("virtual-router", &vr, json!({"virtual_machine_refs": refs}));
        let mut ids = Vec::new();
        for (side, vn) in [("left", left), ("right", right)] {
            let vmi = self.create(
                "virtual-machine-interface",
                json!({"fq_name": ["default-domain", "k8s-default", format!("{si}-{side}")], "parent_type": "project",
                       "virtual_network_refs": [{"to": vn}],
                       "virtual_machine_refs": [{"to": vm.fq_name}],
                       "port_tuple_refs": [{"to": pt_fq}],
                       "virtual_machine_interface_properties": {"service_interface_type": side}}),
            );
            self.create(
                "instance-ip",
                json!({"fq_name": [format!("{si}-{side}-iip")],
                       "virtual_network_refs": [{"to": vn}],
                       "virtual_machine_interface_refs": [{"to": vmi.fq_name, "uuid": vmi.uuid}]}),
            );
            ids.push(vmi.uuid);
        }
        (ids[0].clone(), ids[1].clone())
    }

    /// A network policy `name` between `left` and `right` applying the service instances
    /// `sis` in order, attached to both networks.
    pub fn chain_policy(&mut self, name: &str, left: &[&str], right: &[&str], sis: &[&str]) {
        let services: Vec<String> = sis
            .iter()
            .map(|si| format!("default-domain:k8s-default:{si}"))
            .collect();
        self.policy(
            "k8s-default",
            name,
            json!([{"direction": "<>", "protocol": "any",
                    "action_list": {"simple_action": "pass", "apply_service": services},
                    "src_addresses": [{"virtual_network": left.join(":")}], "src_ports": [{"start_port": -1, "end_port": -1}],
                    "dst_addresses": [{"virtual_network": right.join(":")}], "dst_ports": [{"start_port": -1, "end_port": -1}]}]),
        );
        let np_fq: &[&str] = &["default-domain", "k8s-default", name];
        self.attach(left, &[np_fq]);
        self.attach(right, &[np_fq]);
    }

    /// A snapshot of the database as the agent reads it.
    pub fn snapshot(&self) -> Snapshot {
        source::snapshot_from_db(&self.db)
    }
}

/// Three nodes, a fabric host with DNS and HTTPS, and an external client.
pub fn three_nodes(km: &mut Km) {
    km.node("node-a", Ipv4Addr::new(192, 168, 0, 11));
    km.node("node-b", Ipv4Addr::new(192, 168, 0, 12));
    km.node("node-c", Ipv4Addr::new(192, 168, 0, 13));
    km.fabric_host(
        "dns",
        Ipv4Addr::new(192, 168, 0, 50),
        vec![ServedPort::udp(53), ServedPort::tcp(443)],
    );
    km.topology
        .external_clients
        .push(harness_vrouter_sim::ClientSpec {
            name: "client".into(),
            ip: Ipv4Addr::new(198, 51, 100, 7),
        });
}
