//! NetworkPolicies and the cluster APS `[default-policy-management, <cluster>]`.

use super::*;

impl World {
    // -----------------------------------------------------------------------------------
    // NetworkPolicies.

    /// Parses a NetworkPolicy and, in r5.0, translates it.
    pub fn update_np(&mut self, key: &ObjKey) {
        let np = self
            .cache
            .netpols
            .get(key)
            .or_else(|| self.tombstones.get(key))
            .map(Np::from_k8s);
        match np {
            Some(np) => {
                if self.cfg.profile == Profile::R50 {
                    self.r50
                        .insert(key.clone(), netpol::translate_r50(&np, &self.cfg.faults));
                }
                self.nps.insert(key.clone(), np);
            }
            None => {
                self.nps.remove(key);
                self.r50.remove(key);
            }
        }
    }

    /// The firewall policy of a NetworkPolicy, its rules, address groups and tags.
    pub fn netpol_items(&self, key: &ObjKey) -> Vec<Item> {
        let Some(np) = self.nps.get(key) else {
            return Vec::new();
        };
        let uid = np.uid.clone();
        let spec = self
            .cache
            .netpols
            .get(key)
            .or_else(|| self.tombstones.get(key))
            .and_then(|o| serde_json::to_string(&o.spec).ok())
            .unwrap_or_default();
        let ann = self.ann(&[
            ("namespace", &np.namespace),
            ("name", &np.name),
            ("k8s_uuid", &uid),
            ("spec", &spec),
        ]);
        let (rules, deny, ags) = if self.upstream() {
            let (r, a) = self.upstream_np_rules(np);
            (r, Vec::new(), a)
        } else {
            match self.r50.get(key) {
                Some(Ok(t)) => (
                    t.rules.clone(),
                    t.deny_rules.clone(),
                    t.address_groups.clone(),
                ),
                _ => return Vec::new(),
            }
        };
        let mut items = Vec::new();
        let mut tags: BTreeSet<String> = BTreeSet::new();
        for r in rules.iter().chain(&deny) {
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
        let mut fp = VncObject::new(
            "firewall-policy",
            self.names.np_fw_policy(&np.namespace, &np.name),
        )
        .with_parent_type("policy-management")
        .with_prop("annotations", ann);
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
        items
    }

    /// Upstream: the allow rules of a NetworkPolicy for its entry in the cluster APS (they
    /// can only pass; enforcement is in the selected pods' own APS).
    fn upstream_np_rules(&self, np: &Np) -> (Vec<RulePlan>, BTreeMap<String, Vec<IpNet>>) {
        let faults = &self.cfg.faults;
        let selected = Endpoint::Tags(vec![netpol::selected_predicate(np).tag(self.cl())]);
        let mut ags = BTreeMap::new();
        let mut rules = Vec::new();
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
                let peers: Vec<(String, Endpoint)> = if r.peers.is_empty() {
                    vec![("allow-all".into(), Endpoint::Any)]
                } else {
                    r.peers
                        .iter()
                        .enumerate()
                        .map(|(j, p)| {
                            let t = netpol::peer_target(np, p, faults);
                            let kind = match p {
                                netpol::NpPeer::IpBlock { .. } => "ipBlock",
                                netpol::NpPeer::Selectors {
                                    namespace: Some(_), ..
                                } => "namespaceSelector",
                                netpol::NpPeer::Selectors { .. } => "podSelector",
                            };
                            (format!("{kind}-{j}"), self.peer_endpoint(&t, &mut ags))
                        })
                        .collect()
                };
                for (pname, remote) in peers {
                    for (k, svc) in netpol::upstream_services(r).into_iter().enumerate() {
                        let (proto, ports) = match svc {
                            UpstreamService::All => ("any".to_owned(), (0, 65535)),
                            UpstreamService::Range(p, a, b) => (p, (a, b)),
                            UpstreamService::Named(..) => continue,
                        };
                        let (ep1, ep2) = if *d == Dir::Ingress {
                            (remote.clone(), selected.clone())
                        } else {
                            (selected.clone(), remote.clone())
                        };
                        rules.push(RulePlan {
                            name: format!("{}-{dir}-{}-{i}-{pname}-{k}", np.namespace, np.name),
                            action: Action::Pass,
                            ep1,
                            ep2,
                            protocol: proto,
                            ports,
                        });
                    }
                }
            }
        }
        (rules, ags)
    }

    /// NetworkPolicies whose firewall policy is in the APS, in creation order.
    fn translated_nps(&self) -> Vec<&ObjKey> {
        self.np_order
            .iter()
            .filter(|k| match self.cfg.profile {
                Profile::Upstream => self.nps.contains_key(*k),
                Profile::R50 => matches!(self.r50.get(*k), Some(Ok(_))),
            })
            .collect()
    }

    // -----------------------------------------------------------------------------------
    // The cluster APS.

    /// Whether an ingress is served by Contrail's ingress controller.
    pub(super) fn ingress_served(&self, key: &ObjKey) -> bool {
        let Some(ing) = self.cache.ingresses.get(key) else {
            return false;
        };
        let class = annotation(&ing.metadata, ANN_INGRESS_CLASS)
            .map(str::to_owned)
            .or_else(|| ing.spec.as_ref().and_then(|s| s.ingress_class_name.clone()));
        class.is_none_or(|c| c == "opencontrail")
    }

    /// Backend services of an ingress, `(service, port)` in order of appearance.
    pub(super) fn ingress_backends(
        &self,
        key: &ObjKey,
    ) -> Vec<(String, Option<String>, Option<String>, String)> {
        // (service, port number, port name, path key)
        let mut out = Vec::new();
        let Some(spec) = self.cache.ingresses.get(key).and_then(|i| i.spec.as_ref()) else {
            return out;
        };
        let mut push = |b: &k8s_openapi::api::networking::v1::IngressBackend, path: String| {
            if let Some(s) = &b.service {
                let num = s
                    .port
                    .as_ref()
                    .and_then(|p| p.number)
                    .map(|n| n.to_string());
                let name = s.port.as_ref().and_then(|p| p.name.clone());
                out.push((s.name.clone(), num, name, path));
            }
        };
        if let Some(b) = &spec.default_backend {
            push(b, "default".into());
        }
        for r in spec.rules.iter().flatten() {
            let host = r.host.clone().unwrap_or_default();
            for p in r.http.iter().flat_map(|h| &h.paths) {
                push(
                    &p.backend,
                    format!("{host}{}", p.path.clone().unwrap_or_default()),
                );
            }
        }
        out
    }

    /// The `<cluster>-Ingress` rules of an ingress: its proxy may reach the backends of each
    /// of its services.
    pub fn ingress_rules(&self, key: &ObjKey) -> Vec<RulePlan> {
        if !self.ingress_served(key) {
            return Vec::new();
        }
        let cl = self.cl();
        let mut seen: Vec<String> = Vec::new();
        let mut out = Vec::new();
        for (svc, ..) in self.ingress_backends(key) {
            if seen.contains(&svc) {
                continue;
            }
            seen.push(svc.clone());
            out.push(RulePlan::all(
                format!("{cl}-Ingress-{}-{}-{svc}", key.0, key.1),
                Action::Pass,
                Endpoint::Tags(vec![format!("ingress={cl}-{}-{}", key.0, key.1)]),
                Endpoint::Tags(vec![format!("{cl}-svc={svc}")]),
            ));
        }
        out
    }

    /// The APS `[default-policy-management, <cluster>]` and its cluster firewall policies.
    pub fn firewall_items(&self) -> Vec<Item> {
        let names = &self.names;
        let mut items = Vec::new();
        let pm_ref = |name: &str, i: usize| {
            Ref::by_name(names.pm(name)).with_attr(json!({"sequence": sequence(i)}))
        };
        let fp = |kind: &str, rules: Vec<String>, extra: &[(&str, &str)]| {
            let mut o = VncObject::new("firewall-policy", names.cluster_fw_policy(kind))
                .with_parent_type("policy-management")
                .with_prop("annotations", self.ann(extra));
            o.refs.insert(
                "firewall_rule_refs".into(),
                rules
                    .iter()
                    .enumerate()
                    .map(|(i, r)| pm_ref(r, i))
                    .collect(),
            );
            Item::Object(o)
        };
        let ingress_rules: Vec<String> = self
            .cache
            .ingresses
            .keys()
            .flat_map(|k| self.ingress_rules(k))
            .map(|r| r.name)
            .collect();
        items.push(fp("Ingress", ingress_rules, &[]));
        let nps = self.translated_nps();
        let deny_rules: Vec<String> = if self.upstream() {
            Vec::new()
        } else {
            nps.iter()
                .filter_map(|k| self.r50.get(*k))
                .filter_map(|t| t.as_ref().ok())
                .flat_map(|t| t.deny_rules.iter().map(|r| r.name.clone()))
                .collect()
        };
        items.push(fp("denyall", deny_rules, &[("tail", "True")]));
        let allow_rules: Vec<String> = self
            .cache
            .namespaces
            .keys()
            .flat_map(|ns| self.namespace_rules(ns))
            .map(|r| r.name)
            .collect();
        items.push(fp("allowall", allow_rules, &[("after_tail", "True")]));
        let cl = self.cl();
        let user: Vec<String> = nps
            .iter()
            .map(|k| format!("{cl}-{}-{}", k.0, k.1))
            .collect();
        let ingress = format!("{cl}-Ingress");
        let denyall = format!("{cl}-denyall");
        let allowall = format!("{cl}-allowall");
        let n = user.len();
        let mut refs: Vec<Ref> = Vec::new();
        if self.fault(MockFault::FirewallPolicyOrderBroken) {
            refs.push(pm_ref(&ingress, 2));
            refs.push(pm_ref(&denyall, 4));
            for (i, u) in user.iter().enumerate() {
                refs.push(pm_ref(u, 5 + i));
            }
            refs.push(pm_ref(&allowall, 6 + n));
        } else {
            refs.push(pm_ref(&ingress, 2));
            for (i, u) in user.iter().enumerate() {
                refs.push(pm_ref(u, 4 + i));
            }
            refs.push(pm_ref(&denyall, 5 + n));
            refs.push(pm_ref(&allowall, 6 + n));
        }
        let mut aps = VncObject::new("application-policy-set", names.aps())
            .with_parent_type("policy-management")
            .with_prop("annotations", self.ann(&[]))
            .with_ref("tag_refs", tag_ref(&self.app_tag()));
        aps.refs.insert("firewall_policy_refs".into(), refs);
        items.push(Item::Object(aps));
        items.push(self.tag(&self.app_tag()));
        if self.upstream() {
            // Shared by every isolated pod's APS: the ingress proxies reach the backends of
            // their services whatever the backends' NetworkPolicies say (as `<cluster>-Ingress`
            // lets them in the shipped layout). It can only match where a proxy is the source.
            let proxy = RulePlan::all(
                format!("{cl}-ingress-proxy"),
                Action::Pass,
                Endpoint::Tags(vec![format!("label={cl}-ingress-proxy")]),
                Endpoint::Any,
            );
            for t in proxy.tags() {
                items.push(self.tag(t));
            }
            items.push(Item::Object(proxy.to_object(self.ann(&[]))));
            items.push(fp("ingress-proxy", vec![proxy.name.clone()], &[]));
        }
        items
    }
}
