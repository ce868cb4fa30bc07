//! Services (native ECMP load balancers, as kube-manager and svc-monitor's native driver
//! leave them) and ingresses (opencontrail haproxy load balancers).

use super::*;

impl World {
    // -----------------------------------------------------------------------------------
    // Services.

    /// Backend pods of a service (ready endpoints of its EndpointSlices), sorted.
    pub fn service_backends(&self, key: &ObjKey) -> Vec<ObjKey> {
        let mut out: BTreeSet<ObjKey> = BTreeSet::new();
        for (sk, slice) in self.cache.slices.range((key.0.clone(), String::new())..) {
            if sk.0 != key.0 {
                break;
            }
            let svc = slice
                .metadata
                .labels
                .as_ref()
                .and_then(|l| l.get("kubernetes.io/service-name"));
            if svc != Some(&key.1) {
                continue;
            }
            for ep in slice.endpoints.iter().flatten() {
                if ep.conditions.as_ref().and_then(|c| c.ready) == Some(false) {
                    continue;
                }
                let Some(t) = &ep.target_ref else { continue };
                if t.kind.as_deref() != Some("Pod") {
                    continue;
                }
                let pk = (
                    t.namespace.clone().unwrap_or_else(|| key.0.clone()),
                    t.name.clone().unwrap_or_default(),
                );
                if self
                    .cache
                    .pods
                    .get(&pk)
                    .is_some_and(|p| !is_host_network(p))
                {
                    out.insert(pk);
                }
            }
        }
        out.into_iter().collect()
    }

    /// The pods an EndpointSlice lists (ready or not).
    pub fn slice_targets(&self, key: &ObjKey) -> (Option<String>, Vec<ObjKey>) {
        let Some(slice) = self.cache.slices.get(key) else {
            return (None, Vec::new());
        };
        let svc = slice
            .metadata
            .labels
            .as_ref()
            .and_then(|l| l.get("kubernetes.io/service-name"))
            .cloned();
        let pods = slice
            .endpoints
            .iter()
            .flatten()
            .filter(|e| e.conditions.as_ref().and_then(|c| c.ready) != Some(false))
            .filter_map(|e| e.target_ref.as_ref())
            .filter(|t| t.kind.as_deref() == Some("Pod"))
            .map(|t| {
                (
                    t.namespace.clone().unwrap_or_else(|| key.0.clone()),
                    t.name.clone().unwrap_or_default(),
                )
            })
            .collect();
        (svc, pods)
    }

    fn lb_name(name: &str, uid: &str) -> String {
        make_name(&[name, uid])
    }

    fn public_fip(&self, lbname: &str, ip: Option<&str>) -> VncObject {
        let mut f = self.names.public_pool();
        f.push(format!("{lbname}{}-externalIP", ip.unwrap_or("")));
        let mut o = VncObject::new("floating-ip", f).with_parent_type("floating-ip-pool");
        if let Some(ip) = ip {
            o.set_prop("floating_ip_address", ip);
        }
        o
    }

    /// The public floating IP name of a LoadBalancer service or ingress and its address.
    pub fn lb_public_ips(&self, kind: &str, key: &ObjKey, engine: &Engine) -> Vec<String> {
        let mut out = Vec::new();
        if self.cfg.public_fip_pool.is_empty() {
            return out;
        }
        let (uid, requested) = match kind {
            "Service" => {
                let Some(svc) = self.cache.services.get(key) else {
                    return out;
                };
                let spec = svc.spec.clone().unwrap_or_default();
                if spec.type_.as_deref() != Some("LoadBalancer") {
                    return out;
                }
                (
                    svc.metadata.uid.clone().unwrap_or_default(),
                    spec.load_balancer_ip.clone(),
                )
            }
            _ => {
                let Some(ing) = self.cache.ingresses.get(key) else {
                    return out;
                };
                if !self.ingress_served(key) {
                    return out;
                }
                (
                    ing.metadata.uid.clone().unwrap_or_default(),
                    annotation(&ing.metadata, "externalIP").map(str::to_owned),
                )
            }
        };
        let lbname = Self::lb_name(&key.1, &uid);
        match requested {
            Some(ip) => out.push(ip),
            None => {
                let k: Key = ("floating-ip".into(), self.public_fip(&lbname, None).fq_name);
                if let Some(a) = engine.address(&k) {
                    out.push(a.to_owned());
                }
            }
        }
        out
    }

    /// The native load balancer of a service: VIP interface and instance IP (the ClusterIP
    /// in the service network), listeners, pools, members, and what svc-monitor's native
    /// driver adds: the VIP floating IP on every backend interface with port mappings, and
    /// public floating IPs for `externalIPs` and `type: LoadBalancer`.
    pub fn service_items(&self, key: &ObjKey) -> Vec<Item> {
        let Some(svc) = self.cache.services.get(key) else {
            return Vec::new();
        };
        let spec = svc.spec.clone().unwrap_or_default();
        let cluster_ip = match spec.cluster_ip.as_deref() {
            Some(ip) if !ip.is_empty() && ip != "None" => ip.to_owned(),
            _ => return Vec::new(),
        };
        let (ns, name) = (key.0.as_str(), key.1.as_str());
        let uid = svc.metadata.uid.clone().unwrap_or_default();
        let lbname = Self::lb_name(name, &uid);
        let vn = self.service_network_of_ns(ns);
        let project = self.names.project(ns);
        let ann = self.ann(&[
            ("kind", "Service"),
            ("project", &self.names.project_name(ns)),
            ("namespace", ns),
            ("name", name),
        ]);
        let mut items = Vec::new();
        let vmi_fq = self
            .names
            .in_project(ns, &make_name(&[self.cl(), "Service", name, &uid]));
        items.push(Item::Object(
            VncObject::new("virtual-machine-interface", vmi_fq.clone())
                .with_parent_type("project")
                .with_prop("virtual_machine_interface_device_owner", "K8S:LOADBALANCER")
                .with_prop("port_security_enabled", true)
                .with_prop("annotations", ann.clone())
                .with_ref("virtual_network_refs", Ref::by_name(vn.clone()))
                .with_ref(
                    "security_group_refs",
                    Ref::by_name(self.names.default_sg(ns)),
                ),
        ));
        let iip_fq = vec![make_name(&[name, &derived_uuid(&uid, "vip")])];
        items.push(Item::Object(
            VncObject::new("instance-ip", iip_fq.clone())
                .with_prop("instance_ip_address", cluster_ip.clone())
                .with_prop("annotations", ann.clone())
                .with_ref("virtual_network_refs", Ref::by_name(vn.clone()))
                .with_ref(
                    "virtual_machine_interface_refs",
                    Ref::by_name(vmi_fq.clone()),
                ),
        ));
        let mut lb = VncObject::new("loadbalancer", self.names.in_project(ns, &lbname))
            .with_prop("display_name", format!("{ns}__{name}"))
            .with_prop("loadbalancer_provider", "native")
            .with_prop(
                "loadbalancer_properties",
                json!({"provisioning_status": "ACTIVE", "operating_status": "ONLINE",
                       "vip_address": cluster_ip, "admin_state": true}),
            )
            .with_prop("annotations", ann.clone())
            .with_ref("virtual_machine_interface_refs", Ref::by_name(vmi_fq));
        lb.uuid = uid.clone();
        let lb_fq = lb.fq_name.clone();
        items.push(Item::Object(lb));

        let backends = self.service_backends(key);
        let backend_pods: Vec<(&ObjKey, &Pod)> = backends
            .iter()
            .filter_map(|k| self.cache.pods.get(k).map(|p| (k, p)))
            .collect();
        let mut mappings = Vec::new();
        for sp in spec.ports.iter().flatten() {
            let raw = sp
                .protocol
                .clone()
                .unwrap_or_else(|| "TCP".into())
                .to_uppercase();
            // r5.0: anything but TCP/HTTP(S) becomes UDP (SctpServiceAsUdp).
            let proto = if self.upstream() || raw == "TCP" || raw == "UDP" {
                raw.clone()
            } else {
                "UDP".to_owned()
            };
            let Ok(port) = u16::try_from(sp.port) else {
                continue;
            };
            // The VNC schema's LoadbalancerProtocolType has no SCTP (HTTP, HTTPS, TCP, UDP,
            // TERMINATED_HTTPS): an SCTP port gets only its port mapping on the VIP floating
            // IP, which is what forwards it; a listener or pool would be refused with 400.
            if !matches!(proto.as_str(), "TCP" | "UDP" | "HTTP" | "HTTPS") {
                let target = backend_pods
                    .iter()
                    .find_map(|(_, pod)| target_port(sp, pod))
                    .unwrap_or(port);
                mappings.push(json!({"protocol": proto, "src_port": port, "dst_port": target}));
                continue;
            }
            let lname = format!(
                "{lbname}-{proto}-{port}-{}",
                derived_uuid(&uid, &format!("listener-{raw}-{port}"))
            );
            let listener_fq = self.names.in_project(ns, &lname);
            items.push(Item::Object(
                VncObject::new("loadbalancer-listener", listener_fq.clone())
                    .with_prop(
                        "loadbalancer_listener_properties",
                        json!({"protocol": proto, "protocol_port": port, "admin_state": true}),
                    )
                    .with_prop(
                        "annotations",
                        self.ann(&[("portName", sp.name.as_deref().unwrap_or(""))]),
                    )
                    .with_ref("loadbalancer_refs", Ref::by_name(lb_fq.clone())),
            ));
            let pool_fq = self.names.in_project(ns, &lname);
            items.push(Item::Object(
                VncObject::new("loadbalancer-pool", pool_fq.clone())
                    .with_prop(
                        "loadbalancer_pool_properties",
                        json!({"protocol": proto, "loadbalancer_method": "ROUND_ROBIN", "admin_state": true}),
                    )
                    .with_prop("annotations", self.ann(&[]))
                    .with_ref("loadbalancer_listener_refs", Ref::by_name(listener_fq)),
            ));
            let mut first_target = None;
            for (pk, pod) in &backend_pods {
                let Some(target) = target_port(sp, pod) else {
                    continue;
                };
                first_target.get_or_insert(target);
                let puid = pod.metadata.uid.clone().unwrap_or_default();
                let mut mfq = pool_fq.clone();
                mfq.push(derived_uuid(&puid, &format!("member-{raw}-{port}")));
                let vmi_name = self.vmi_fq(&pk.0, &pk.1, &puid, 0).join(":");
                items.push(Item::Object(
                    VncObject::new("loadbalancer-member", mfq)
                        .with_prop(
                            "loadbalancer_member_properties",
                            json!({"protocol_port": target, "admin_state": true}),
                        )
                        .with_prop(
                            "annotations",
                            self.ann(&[("vm", &puid), ("vmi", &vmi_name)]),
                        ),
                ));
            }
            mappings.push(json!({"protocol": proto, "src_port": port,
                                  "dst_port": first_target.unwrap_or(port)}));
        }
        // svc-monitor's native driver: the VIP as a floating IP on the backends.
        let mut vmis: Vec<Ref> = backend_pods
            .iter()
            .map(|(pk, pod)| {
                let puid = pod.metadata.uid.clone().unwrap_or_default();
                Ref::by_name(self.vmi_fq(&pk.0, &pk.1, &puid, 0))
            })
            .collect();
        if self.fault(MockFault::EcmpPinned) {
            vmis.truncate(1);
        }
        let fip_props = |o: VncObject| {
            let mut o = o
                .with_prop("floating_ip_traffic_direction", "ingress")
                .with_prop("floating_ip_port_mappings_enable", true)
                .with_prop(
                    "floating_ip_port_mappings",
                    json!({"port_mappings": mappings}),
                )
                .with_prop("annotations", ann.clone())
                .with_ref("project_refs", Ref::by_name(project.clone()));
            o.refs
                .insert("virtual_machine_interface_refs".into(), vmis.clone());
            o
        };
        let mut vip_fip_fq = iip_fq;
        vip_fip_fq.push(derived_uuid(&uid, "vip-fip"));
        items.push(Item::Object(fip_props(
            VncObject::new("floating-ip", vip_fip_fq).with_parent_type("instance-ip"),
        )));
        if !self.cfg.public_fip_pool.is_empty() {
            let mut public: Vec<Option<String>> = spec
                .external_ips
                .iter()
                .flatten()
                .map(|ip| Some(ip.clone()))
                .collect();
            if spec.type_.as_deref() == Some("LoadBalancer") {
                let want = spec.load_balancer_ip.clone();
                if !public.contains(&want) {
                    public.push(want);
                }
            }
            for ip in public {
                items.push(Item::Object(fip_props(
                    self.public_fip(&lbname, ip.as_deref()),
                )));
            }
        }
        items
    }

    // -----------------------------------------------------------------------------------
    // Ingresses.

    /// The opencontrail (haproxy) load balancer of an ingress: VIP interface and instance
    /// IP in the pod network, public floating IP, listeners, pools and members (the backend
    /// services' ClusterIPs), and its `<cluster>-Ingress` rules.
    pub fn ingress_items(&self, key: &ObjKey) -> Vec<Item> {
        if !self.ingress_served(key) {
            return Vec::new();
        }
        let Some(ing) = self.cache.ingresses.get(key) else {
            return Vec::new();
        };
        let (ns, name) = (key.0.as_str(), key.1.as_str());
        let cl = self.cl();
        let uid = ing.metadata.uid.clone().unwrap_or_default();
        let lbname = Self::lb_name(name, &uid);
        let vn = self.pod_network_of_ns(ns);
        let ann = self.ann(&[
            ("kind", "Ingress"),
            ("project", &self.names.project_name(ns)),
            ("namespace", ns),
            ("name", name),
        ]);
        let mut items = Vec::new();
        let mut tags = vec![
            format!("ingress={cl}-{ns}-{name}"),
            format!("namespace={ns}"),
        ];
        if self.upstream() {
            tags.push(format!("label={cl}-ingress-proxy"));
        }
        for t in &tags {
            items.push(self.tag(t));
        }
        let vmi_fq = self
            .names
            .in_project(ns, &make_name(&[cl, "Ingress", name, &uid]));
        let mut vmi = VncObject::new("virtual-machine-interface", vmi_fq.clone())
            .with_parent_type("project")
            .with_prop("virtual_machine_interface_device_owner", "K8S:LOADBALANCER")
            .with_prop("port_security_enabled", true)
            .with_prop("annotations", ann.clone())
            .with_ref("virtual_network_refs", Ref::by_name(vn.clone()))
            .with_ref(
                "security_group_refs",
                Ref::by_name(self.names.default_sg(ns)),
            );
        vmi.refs
            .insert("tag_refs".into(), tags.iter().map(|t| tag_ref(t)).collect());
        items.push(Item::Object(vmi));
        items.push(Item::Object(
            VncObject::new(
                "instance-ip",
                vec![make_name(&[name, &derived_uuid(&uid, "vip")])],
            )
            .with_prop("annotations", ann.clone())
            .with_ref("virtual_network_refs", Ref::by_name(vn))
            .with_ref(
                "virtual_machine_interface_refs",
                Ref::by_name(vmi_fq.clone()),
            ),
        ));
        let mut lb = VncObject::new("loadbalancer", self.names.in_project(ns, &lbname))
            .with_prop("display_name", format!("{ns}__{name}"))
            .with_prop("loadbalancer_provider", "opencontrail")
            .with_prop(
                "loadbalancer_properties",
                json!({"provisioning_status": "ACTIVE", "operating_status": "ONLINE", "admin_state": true}),
            )
            .with_prop("annotations", ann.clone())
            .with_ref("virtual_machine_interface_refs", Ref::by_name(vmi_fq.clone()));
        lb.uuid = uid.clone();
        let lb_fq = lb.fq_name.clone();
        items.push(Item::Object(lb));
        if !self.cfg.public_fip_pool.is_empty() {
            let requested = annotation(&ing.metadata, "externalIP");
            items.push(Item::Object(
                self.public_fip(&lbname, requested)
                    .with_prop("annotations", ann.clone())
                    .with_ref("project_refs", Ref::by_name(self.names.project(ns)))
                    .with_ref("virtual_machine_interface_refs", Ref::by_name(vmi_fq)),
            ));
        }
        let tls = ing
            .spec
            .as_ref()
            .and_then(|s| s.tls.as_ref())
            .is_some_and(|t| !t.is_empty());
        let mut listeners = vec![("HTTP", 80u16)];
        if tls {
            listeners.push(("TERMINATED_HTTPS", 443));
        }
        let backends = self.ingress_backends(key);
        for (proto, port) in listeners {
            let lname = format!(
                "{lbname}-{proto}-{port}-{}",
                derived_uuid(&uid, &format!("listener-{proto}-{port}"))
            );
            let listener_fq = self.names.in_project(ns, &lname);
            items.push(Item::Object(
                VncObject::new("loadbalancer-listener", listener_fq.clone())
                    .with_prop(
                        "loadbalancer_listener_properties",
                        json!({"protocol": proto, "protocol_port": port, "admin_state": true}),
                    )
                    .with_prop("annotations", self.ann(&[]))
                    .with_ref("loadbalancer_refs", Ref::by_name(lb_fq.clone())),
            ));
            for (svc, num, pname, path) in &backends {
                let pool_name = format!("{lname}-{}", naming::digest(path));
                let pool_fq = self.names.in_project(ns, &pool_name);
                items.push(Item::Object(
                    VncObject::new("loadbalancer-pool", pool_fq.clone())
                        .with_prop(
                            "loadbalancer_pool_properties",
                            json!({"protocol": "HTTP", "loadbalancer_method": "ROUND_ROBIN", "admin_state": true}),
                        )
                        .with_prop(
                            "annotations",
                            self.ann(&[
                                ("type", if path == "default" { "default" } else { "acl" }),
                                ("path", path),
                            ]),
                        )
                        .with_ref("loadbalancer_listener_refs", Ref::by_name(listener_fq.clone())),
                ));
                let target = self.cache.services.get(&(ns.to_owned(), svc.clone()));
                let cip = target
                    .and_then(|s| s.spec.as_ref())
                    .and_then(|s| s.cluster_ip.clone())
                    .filter(|c| !c.is_empty() && c != "None");
                let sport = num
                    .as_ref()
                    .and_then(|n| n.parse::<u16>().ok())
                    .or_else(|| {
                        target
                            .and_then(|s| s.spec.as_ref())
                            .and_then(|s| s.ports.as_ref())
                            .and_then(|ps| {
                                ps.iter().find(|p| p.name.as_deref() == pname.as_deref())
                            })
                            .and_then(|p| u16::try_from(p.port).ok())
                    });
                if let (Some(cip), Some(sport)) = (cip, sport) {
                    let mut mfq = pool_fq;
                    mfq.push(derived_uuid(&uid, &format!("member-{path}-{svc}")));
                    items.push(Item::Object(
                        VncObject::new("loadbalancer-member", mfq)
                            .with_prop(
                                "loadbalancer_member_properties",
                                json!({"address": cip, "protocol_port": sport, "admin_state": true}),
                            )
                            .with_prop("annotations", self.ann(&[("serviceName", svc)])),
                    ));
                }
            }
        }
        for r in self.ingress_rules(key) {
            for t in r.tags() {
                items.push(self.tag(t));
            }
            items.push(Item::Object(r.to_object(ann.clone())));
        }
        items
    }

    /// The addresses an ingress's status should list: the public floating IP, then the VIP.
    pub fn ingress_ips(&self, key: &ObjKey, engine: &Engine) -> Vec<String> {
        let Some(ing) = self.cache.ingresses.get(key) else {
            return Vec::new();
        };
        if !self.ingress_served(key) {
            return Vec::new();
        }
        let uid = ing.metadata.uid.clone().unwrap_or_default();
        let mut out = self.lb_public_ips("Ingress", key, engine);
        let vip: Key = (
            "instance-ip".into(),
            vec![make_name(&[&key.1, &derived_uuid(&uid, "vip")])],
        );
        if let Some(a) = engine.address(&vip) {
            out.push(a.to_owned());
        }
        out
    }
}
