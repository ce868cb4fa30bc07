//! Pods: virtual machine, interfaces, instance IPs, tags; upstream: the pod's own APS and
//! the membership predicates its peers are written as.

use super::*;

impl World {
    // -----------------------------------------------------------------------------------
    // Pods.

    pub(super) fn vmi_fq(&self, ns: &str, pod: &str, uid: &str, index: usize) -> Vec<String> {
        self.names.in_project(
            ns,
            &make_name(&[pod, &derived_uuid(uid, &format!("vmi-{index}"))]),
        )
    }

    pub(super) fn iip_fq(&self, pod: &str, uid: &str, index: usize) -> Vec<String> {
        vec![make_name(&[
            pod,
            &derived_uuid(uid, &format!("iip-{index}")),
        ])]
    }

    /// The networks of a pod: the default one, then those of `k8s.v1.cni.cncf.io/networks`.
    fn pod_networks(&self, key: &ObjKey, pod: &Pod) -> Vec<Vec<String>> {
        let ns = &key.0;
        let default = self
            .custom_network(annotation(&pod.metadata, ANN_NETWORK))
            .unwrap_or_else(|| self.pod_network_of_ns(ns));
        let mut out = vec![default];
        if let Some(spec) = annotation(&pod.metadata, ANN_NETWORKS) {
            let mut refs: Vec<(String, String)> = Vec::new();
            if let Ok(Value::Array(list)) = serde_json::from_str::<Value>(spec) {
                for e in list {
                    if let Some(name) = e.get("name").and_then(Value::as_str) {
                        let nns = e
                            .get("namespace")
                            .and_then(Value::as_str)
                            .unwrap_or(ns)
                            .to_owned();
                        refs.push((nns, name.to_owned()));
                    }
                }
            } else {
                for part in spec.split(',').map(str::trim).filter(|p| !p.is_empty()) {
                    let part = part.split('@').next().unwrap_or(part);
                    match part.split_once('/') {
                        Some((a, b)) => refs.push((a.to_owned(), b.to_owned())),
                        None => refs.push((ns.clone(), part.to_owned())),
                    }
                }
            }
            for (nns, name) in refs {
                out.push(self.nad_network(&nns, &name));
            }
        }
        out
    }

    /// The network of a NetworkAttachmentDefinition: `<cluster>-<ns>-<name>`.
    pub(super) fn nad_network(&self, ns: &str, name: &str) -> Vec<String> {
        self.names
            .in_project(ns, &format!("{}-{ns}-{name}", self.cl()))
    }

    /// The tags of a pod's interfaces, by tag type (`label` excluded): pod labels, then the
    /// namespace's labels (overriding), then `namespace=<ns>`; `application` is reserved for
    /// the APS binding.
    fn pod_tags(&self, key: &ObjKey, pod: &Pod) -> BTreeMap<String, String> {
        let mut tags: BTreeMap<String, String> = BTreeMap::new();
        let mut put = |k: &str, v: &str| {
            let t = tag_part(k).to_lowercase();
            tags.insert(t, label_tag(k, v));
        };
        for (k, v) in labels_of(&pod.metadata) {
            put(&k, &v);
        }
        for (k, v) in self.ns_labels_for_pod(key) {
            put(&k, &v);
        }
        tags.insert("namespace".into(), format!("namespace={}", key.0));
        tags.remove("application");
        tags.remove("label");
        if let Some(svc) = self.pod_services.get(key).and_then(|s| s.iter().next()) {
            tags.insert(
                format!("{}-svc", self.cl()),
                format!("{}-svc={svc}", self.cl()),
            );
        }
        tags
    }

    /// Whether a pod satisfies an upstream membership predicate.
    fn predicate_matches(
        &self,
        p: &Predicate,
        key: &ObjKey,
        pod: &Pod,
        ip: Option<IpAddr>,
    ) -> bool {
        match p {
            Predicate::Pods { ns, pod: sel } => {
                let ns_ok = match ns {
                    NsScope::All => true,
                    NsScope::Named(n) => *n == key.0,
                    NsScope::Selector(s) => selector::matches(s, &self.ns_labels_for_pod(key)),
                };
                ns_ok
                    && sel
                        .as_ref()
                        .is_none_or(|s| selector::matches(s, &labels_of(&pod.metadata)))
            }
            Predicate::PodsInBlock { nets } => {
                ip.is_some_and(|a| nets.iter().any(|n| n.contains(&a)))
            }
            Predicate::NamedPort {
                protocol,
                name,
                number,
            } => container_port(pod, name, protocol) == Some(*number),
        }
    }

    /// Records the namespace labels a pod sees first (for the relabel fault).
    pub fn snapshot_ns_labels(&mut self, key: &ObjKey) {
        if self.fault(MockFault::NamespaceRelabelNotPropagated)
            && !self.ns_snapshot.contains_key(key)
            && self.cache.namespaces.contains_key(&key.0)
            && self.cache.pods.contains_key(key)
        {
            let l = self.cache.namespace_labels(&key.0);
            self.ns_snapshot.insert(key.clone(), l);
        }
    }

    /// VM, interfaces, instance IPs, tags, the node link; upstream: the pod's own APS when
    /// a NetworkPolicy isolates it.
    pub fn pod_items(&self, key: &ObjKey, engine: &Engine) -> Vec<Item> {
        let Some(pod) = self.cache.pods.get(key) else {
            return Vec::new();
        };
        if is_host_network(pod) {
            return Vec::new();
        }
        let (ns, name) = (key.0.as_str(), key.1.as_str());
        let uid = pod.metadata.uid.clone().unwrap_or_default();
        let vm_name = self.names.vm_name(ns, name);
        let mut items = Vec::new();
        let labels_json = serde_json::to_string(&labels_of(&pod.metadata)).unwrap_or_default();
        let mut vm = VncObject::new("virtual-machine", vec![vm_name.clone()])
            .with_prop("server_type", "container")
            .with_prop(
                "annotations",
                self.ann(&[
                    ("kind", "Pod"),
                    ("namespace", ns),
                    ("name", name),
                    ("labels", &labels_json),
                ]),
            );
        vm.uuid = uid.clone();
        items.push(Item::Object(vm));
        // With provisioning on, the node's virtual router (owned) lists its VMs; otherwise
        // the VM is linked to someone else's virtual router.
        if !self.cfg.provision_virtual_routers
            && let Some(node) = pod.spec.as_ref().and_then(|s| s.node_name.as_deref())
            && self.cache.nodes.contains_key(node)
        {
            items.push(Item::Link(Link {
                from_type: "virtual-router".into(),
                from_fq: fq(&[GLOBAL_SYSTEM_CONFIG, node]),
                to_type: "virtual-machine".into(),
                to_fq: vec![vm_name.clone()],
                attr: None,
            }));
        }

        // Tags.
        let mut typed = self.pod_tags(key, pod);
        let networks = self.pod_networks(key, pod);
        let mut labels: Vec<String> = Vec::new();
        let ip = engine
            .address(&("instance-ip".into(), self.iip_fq(name, &uid, 0)))
            .and_then(|a| a.parse().ok());
        let mut firewall: Vec<Item> = Vec::new();
        if self.upstream() {
            for (id, p) in &self.predicates {
                if self.predicate_matches(p, key, pod, ip) {
                    labels.push(format!("label={id}"));
                }
            }
            if let Some((pin, fw)) = self.upstream_pod_firewall(key, pod) {
                typed.insert("application".into(), pin);
                firewall = fw;
            }
        } else if !self.is_k8s_network(&networks[0]) {
            // A custom network carries no application tag: bind the pod to the cluster APS
            // itself, as the oracle assumes every pod is.
            typed.insert("application".into(), self.app_tag());
        }
        let tag_strings: Vec<String> = typed.values().cloned().chain(labels).collect();
        for t in &tag_strings {
            items.push(self.tag(t));
        }
        let count = networks.len();
        for (i, vn) in networks.iter().enumerate() {
            let vmi_fq = self.vmi_fq(ns, name, &uid, i);
            let index = format!("{i}/{count}");
            let vn_str = vn.join(":");
            let vmi = VncObject::new("virtual-machine-interface", vmi_fq.clone())
                .with_parent_type("project")
                .with_prop("port_security_enabled", true)
                .with_prop(
                    "annotations",
                    self.ann(&[
                        ("kind", "Pod"),
                        ("namespace", ns),
                        ("name", name),
                        ("index", &index),
                        ("network", &vn_str),
                    ]),
                )
                .with_ref("virtual_network_refs", Ref::by_name(vn.clone()))
                .with_ref("virtual_machine_refs", Ref::by_name(vec![vm_name.clone()]))
                .with_ref(
                    "security_group_refs",
                    Ref::by_name(self.names.default_sg(ns)),
                );
            let mut vmi = vmi;
            vmi.refs.insert(
                "tag_refs".into(),
                tag_strings.iter().map(|t| tag_ref(t)).collect(),
            );
            items.push(Item::Object(vmi));
            items.push(Item::Object(
                VncObject::new("instance-ip", self.iip_fq(name, &uid, i))
                    .with_prop(
                        "annotations",
                        self.ann(&[("kind", "Pod"), ("namespace", ns), ("name", name)]),
                    )
                    .with_ref("virtual_network_refs", Ref::by_name(vn.clone()))
                    .with_ref("virtual_machine_interface_refs", Ref::by_name(vmi_fq)),
            ));
        }
        items.extend(firewall);
        items
    }

    /// Upstream: the NetworkPolicies of the pod's namespace that select it, in creation order.
    fn selecting(&self, key: &ObjKey, pod: &Pod) -> Vec<(&ObjKey, &Np)> {
        let labels = labels_of(&pod.metadata);
        self.np_order
            .iter()
            .filter(|k| k.0 == key.0)
            .filter_map(|k| self.nps.get(k).map(|np| (k, np)))
            .filter(|(_, np)| selector::matches(&np.pod_selector, &labels))
            .collect()
    }

    pub(super) fn peer_endpoint(
        &self,
        t: &PeerTarget,
        ags: &mut BTreeMap<String, Vec<IpNet>>,
    ) -> Endpoint {
        match t {
            PeerTarget::Pods(p) => Endpoint::Tags(vec![p.tag(self.cl())]),
            PeerTarget::Block(name, nets) => {
                ags.insert(name.clone(), nets.clone());
                Endpoint::AddressGroup(name.clone())
            }
        }
    }

    /// Upstream enforcement for one pod: the application tag pinning it and the objects of
    /// its own APS, when some NetworkPolicy isolates it.
    fn upstream_pod_firewall(&self, key: &ObjKey, pod: &Pod) -> Option<(String, Vec<Item>)> {
        let selecting = self.selecting(key, pod);
        let ingress_iso = selecting.iter().any(|(_, np)| np.has_type(Dir::Ingress));
        let egress_iso = selecting.iter().any(|(_, np)| np.has_type(Dir::Egress));
        if !ingress_iso && !egress_iso {
            return None;
        }
        let cl = self.cl().to_owned();
        let faults = &self.cfg.faults;
        let vm = self.names.vm_name(&key.0, &key.1);
        let pin_tag = format!("application={vm}");
        let pin = Endpoint::Tags(vec![pin_tag.clone()]);
        let mut ags: BTreeMap<String, Vec<IpNet>> = BTreeMap::new();
        let mut allow: Vec<RulePlan> = Vec::new();
        let rule =
            |name: String, ep1: Endpoint, ep2: Endpoint, proto: &str, ports: (u16, u16)| RulePlan {
                name,
                action: Action::Pass,
                ep1,
                ep2,
                protocol: proto.to_owned(),
                ports,
            };
        for (_, np) in &selecting {
            for d in &np.policy_types {
                if *d == Dir::Egress && faults.contains(&MockFault::EgressRulesDropped) {
                    continue;
                }
                let dir = if *d == Dir::Ingress {
                    "ingress"
                } else {
                    "egress"
                };
                for (i, r) in np.rules(*d).iter().enumerate() {
                    let peers: Vec<(String, Option<PeerTarget>)> = if r.peers.is_empty() {
                        vec![("any".into(), None)]
                    } else {
                        r.peers
                            .iter()
                            .enumerate()
                            .map(|(j, p)| (j.to_string(), Some(netpol::peer_target(np, p, faults))))
                            .collect()
                    };
                    for (j, target) in &peers {
                        let remote = match target {
                            None => Endpoint::Any,
                            Some(t) => self.peer_endpoint(t, &mut ags),
                        };
                        for (k, svc) in netpol::upstream_services(r).into_iter().enumerate() {
                            let base = format!("{vm}__{}__{dir}-{i}-{j}-{k}", np.name);
                            let (ep1, ep2) = if *d == Dir::Ingress {
                                (remote.clone(), pin.clone())
                            } else {
                                (pin.clone(), remote.clone())
                            };
                            match svc {
                                UpstreamService::All => {
                                    allow.push(rule(base, ep1, ep2, "any", (0, 65535)));
                                }
                                UpstreamService::Range(p, a, b) => {
                                    allow.push(rule(base, ep1, ep2, &p, (a, b)));
                                }
                                UpstreamService::Named(_, _)
                                    if faults.contains(&MockFault::NamedPortsUnresolved) => {}
                                UpstreamService::Named(p, port_name) if *d == Dir::Ingress => {
                                    // Resolved on this pod, the destination.
                                    if let Some(n) = container_port(pod, &port_name, &p) {
                                        allow.push(rule(base, ep1, ep2, &p, (n, n)));
                                    }
                                }
                                UpstreamService::Named(p, port_name) => {
                                    // Resolved on each destination pod: one rule per number,
                                    // matching the pods whose port of that name has it.
                                    let numbers = self
                                        .named_ports
                                        .get(&(p.clone(), port_name.clone()))
                                        .cloned()
                                        .unwrap_or_default();
                                    for n in numbers {
                                        let port_tag = Predicate::NamedPort {
                                            protocol: p.clone(),
                                            name: port_name.clone(),
                                            number: n,
                                        }
                                        .tag(&cl);
                                        let mut tags = match target {
                                            None => Vec::new(),
                                            Some(PeerTarget::Pods(pred)) => vec![pred.tag(&cl)],
                                            Some(PeerTarget::Block(_, nets)) => {
                                                vec![
                                                    Predicate::PodsInBlock { nets: nets.clone() }
                                                        .tag(&cl),
                                                ]
                                            }
                                        };
                                        tags.push(port_tag);
                                        allow.push(rule(
                                            format!("{base}-{n}"),
                                            pin.clone(),
                                            Endpoint::Tags(tags),
                                            &p,
                                            (n, n),
                                        ));
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
        let isolation = vec![
            RulePlan::all(
                format!("{vm}__egress-isolation"),
                if egress_iso {
                    Action::Deny
                } else {
                    Action::Pass
                },
                pin.clone(),
                Endpoint::Any,
            ),
            RulePlan::all(
                format!("{vm}__ingress-isolation"),
                if ingress_iso {
                    Action::Deny
                } else {
                    Action::Pass
                },
                Endpoint::Any,
                pin,
            ),
        ];
        let ann = self.ann(&[("kind", "Pod"), ("namespace", &key.0), ("name", &key.1)]);
        // First match: the allow rules, then the pod's isolation (the broken order puts the
        // isolation first, as `firewall-policy-order-broken` puts denyall before the user
        // policies in the cluster APS).
        let rules: Vec<RulePlan> = if self.fault(MockFault::FirewallPolicyOrderBroken) {
            isolation.into_iter().chain(allow).collect()
        } else {
            allow.into_iter().chain(isolation).collect()
        };
        let mut items = Vec::new();
        let mut tags: BTreeSet<String> = BTreeSet::new();
        for r in &rules {
            tags.extend(r.tags().cloned());
            items.push(Item::Object(r.to_object(ann.clone())));
        }
        for t in &tags {
            items.push(self.tag(t));
        }
        for (name, nets) in &ags {
            items.push(Item::Object(netpol::address_group_object(
                name,
                nets,
                self.ann(&[]),
            )));
        }
        let mut fp = VncObject::new("firewall-policy", self.names.pm(&vm))
            .with_parent_type("policy-management")
            .with_prop("annotations", ann.clone());
        fp.refs.insert(
            "firewall_rule_refs".into(),
            rules
                .iter()
                .enumerate()
                .map(|(i, r)| {
                    Ref::by_name(self.names.pm(&r.name)).with_attr(json!({"sequence": sequence(i)}))
                })
                .collect(),
        );
        items.push(Item::Object(fp));
        let mut aps = VncObject::new("application-policy-set", self.names.pm(&vm))
            .with_parent_type("policy-management")
            .with_prop("annotations", ann)
            .with_ref("tag_refs", tag_ref(&pin_tag));
        aps.refs.insert(
            "firewall_policy_refs".into(),
            vec![
                Ref::by_name(self.names.pm(&format!("{cl}-ingress-proxy")))
                    .with_attr(json!({"sequence": sequence(1)})),
                Ref::by_name(self.names.pm(&vm)).with_attr(json!({"sequence": sequence(2)})),
            ],
        );
        items.push(Item::Object(aps));
        Some((pin_tag, items))
    }

    // -----------------------------------------------------------------------------------
    // Upstream predicates.

    /// Rebuilds the membership predicates and named-port numbers from the NetworkPolicies and
    /// pods; returns whether they changed (then every pod must be recomputed).
    pub fn rebuild_predicates(&mut self) -> bool {
        if !self.upstream() {
            return false;
        }
        let cl = self.cl().to_owned();
        let faults = self.cfg.faults.clone();
        let mut preds: BTreeMap<String, Predicate> = BTreeMap::new();
        let mut egress_named: BTreeSet<(String, String)> = BTreeSet::new();
        let mut add = |p: Predicate| {
            preds.insert(p.id(&cl), p);
        };
        let mut blocks_named: Vec<Vec<IpNet>> = Vec::new();
        for np in self.nps.values() {
            add(netpol::selected_predicate(np));
            let named = np.egress_named_ports();
            egress_named.extend(named.iter().cloned());
            for d in [Dir::Ingress, Dir::Egress] {
                for r in np.rules(d) {
                    for peer in &r.peers {
                        match netpol::peer_target(np, peer, &faults) {
                            PeerTarget::Pods(p) => add(p),
                            PeerTarget::Block(_, nets) => {
                                if d == Dir::Egress && !named.is_empty() {
                                    blocks_named.push(nets);
                                }
                            }
                        }
                    }
                }
            }
        }
        for nets in blocks_named {
            add(Predicate::PodsInBlock { nets });
        }
        let mut numbers: BTreeMap<(String, String), BTreeSet<u16>> = BTreeMap::new();
        if !egress_named.is_empty() {
            for pod in self.cache.pods.values() {
                for (proto, name) in &egress_named {
                    if let Some(n) = container_port(pod, name, proto) {
                        numbers
                            .entry((proto.clone(), name.clone()))
                            .or_default()
                            .insert(n);
                    }
                }
            }
        }
        for ((proto, name), ns) in &numbers {
            for n in ns {
                add(Predicate::NamedPort {
                    protocol: proto.clone(),
                    name: name.clone(),
                    number: *n,
                });
            }
        }
        let changed = preds != self.predicates || numbers != self.named_ports;
        self.predicates = preds;
        self.named_ports = numbers;
        changed
    }

    /// Whether some predicate depends on pod addresses.
    pub fn has_address_predicates(&self) -> bool {
        self.predicates
            .values()
            .any(|p| matches!(p, Predicate::PodsInBlock { .. }))
    }
}
