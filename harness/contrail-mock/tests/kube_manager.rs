//! The kube-manager emulation against kube-sim (in process) and the config database (in
//! process, and over HTTP): objects appear within a second of the Kubernetes write, updates
//! and deletes propagate, restarts rebuild without duplicates, faults change the output as
//! documented.

use std::time::{Duration, Instant};

use harness_contrail_mock::kube_manager::{KubeManager, KubeManagerConfig, RunningKubeManager};
use harness_contrail_mock::{ConfigDb, ServerConfig, serve};
use harness_contrail_vnc::{Auth, VncClient, VncObject};
use harness_kube_sim::{Config, KubeSim};
use harness_scenario::{MockFault, Profile};
use k8s_openapi::api::core::v1::{Namespace, Node, Pod, Service};
use k8s_openapi::api::networking::v1::{Ingress, NetworkPolicy};
use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::{Client, Resource};
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

/// Objects must appear within a second of the Kubernetes write. On a loaded machine,
/// `CONTRAIL_MOCK_TIME_FACTOR=3` stretches the budget.
fn soon() -> Duration {
    let factor: u32 = std::env::var("CONTRAIL_MOCK_TIME_FACTOR")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1);
    Duration::from_secs(1) * factor.max(1)
}

fn fq(parts: &[&str]) -> Vec<String> {
    parts.iter().map(|s| (*s).to_owned()).collect()
}

struct Env {
    _sim: KubeSim,
    client: Client,
    db: ConfigDb,
    km: Option<RunningKubeManager>,
    cfg: KubeManagerConfig,
}

impl Env {
    async fn new(cfg: KubeManagerConfig) -> Env {
        let sim = KubeSim::new(Config::default());
        let client = sim.client();
        let db = ConfigDb::new();
        let mut env = Env {
            _sim: sim,
            client,
            db,
            km: None,
            cfg,
        };
        env.create_any::<Node>(
            "",
            json!({"metadata": {"name": "node-1"}, "status": {"addresses": [{"type": "InternalIP", "address": "10.64.0.11"}]}}),
        )
        .await;
        env.start().await;
        env
    }

    async fn start(&mut self) {
        let km = KubeManager::new(self.client.clone(), self.db.clone(), self.cfg.clone()).spawn();
        km.handle()
            .wait_converged(Duration::from_secs(10))
            .await
            .expect("converges");
        self.km = Some(km);
    }

    async fn stop(&mut self) {
        if let Some(km) = self.km.take() {
            km.shutdown().await.expect("clean shutdown");
        }
    }

    /// Waits until kube-manager has taken in the writes so far and is idle.
    async fn converged(&self) {
        // In process, watch events arrive within milliseconds.
        tokio::time::sleep(Duration::from_millis(50)).await;
        if let Some(km) = &self.km {
            km.handle()
                .wait_converged(Duration::from_secs(10))
                .await
                .expect("converges");
        }
    }

    async fn create<K>(&self, ns: &str, body: Value) -> K
    where
        K: Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>
            + Clone
            + DeserializeOwned
            + serde::Serialize
            + std::fmt::Debug,
    {
        let obj: K = serde_json::from_value(body).expect("manifest");
        let api: Api<K> = Api::namespaced(self.client.clone(), ns);
        api.create(&PostParams::default(), &obj)
            .await
            .expect("create")
    }

    /// Creates a cluster-scoped object.
    async fn create_any<K>(&self, _ns: &str, body: Value) -> K
    where
        K: Resource<DynamicType = ()>
            + Clone
            + DeserializeOwned
            + serde::Serialize
            + std::fmt::Debug,
    {
        let obj: K = serde_json::from_value(body).expect("manifest");
        let api: Api<K> = Api::all(self.client.clone());
        api.create(&PostParams::default(), &obj)
            .await
            .expect("create")
    }

    fn get(&self, type_name: &str, name: &[String]) -> Option<VncObject> {
        self.db.get_by_fq_name(type_name, name)
    }

    /// Stands in for the node agent: the pod gets its instance-ip as podIP and is Ready.
    async fn run_pod(&self, ns: &str, name: &str) {
        let ip = self
            .wait_for(|| {
                // Re-read each time: the VM is written before its interfaces.
                let vm = self.get("virtual-machine", &[format!("k8s__{ns}__{name}")])?;
                let vmi = vm
                    .back_refs_of("virtual_machine_interface_back_refs")
                    .first()?
                    .clone();
                let vmi = self.db.get(&vmi.uuid)?;
                let iip = vmi.back_refs_of("instance_ip_back_refs").first()?.clone();
                self.db
                    .get(&iip.uuid)?
                    .fields
                    .get("instance_ip_address")?
                    .as_str()
                    .map(str::to_owned)
            })
            .await;
        let pods: Api<Pod> = Api::namespaced(self.client.clone(), ns);
        pods.patch_status(
            name,
            &PatchParams::default(),
            &Patch::Merge(
                json!({"status": {"phase": "Running", "podIP": ip, "podIPs": [{"ip": ip}],
                "conditions": [{"type": "Ready", "status": "True"}]}}),
            ),
        )
        .await
        .expect("pod status");
    }

    async fn wait_for<T>(&self, f: impl Fn() -> Option<T>) -> T {
        let start = Instant::now();
        loop {
            if let Some(v) = f() {
                return v;
            }
            assert!(
                start.elapsed() < Duration::from_secs(10),
                "timed out waiting"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Asserts that `check` holds within a second (objects appear within 1 s of a write).
    async fn within(&self, what: &str, check: impl Fn(&Env) -> Result<(), String>) {
        let start = Instant::now();
        loop {
            match check(self) {
                Ok(()) => return,
                Err(e) if start.elapsed() > soon() => {
                    panic!("{what}: not within {:?}: {e}", soon())
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
            }
        }
    }

    fn tags_of(&self, obj: &VncObject) -> Vec<String> {
        let mut t: Vec<String> = obj
            .refs_of("tag_refs")
            .iter()
            .map(|r| r.to.join(":"))
            .collect();
        t.sort();
        t
    }

    fn pod_vmi(&self, ns: &str, name: &str) -> Option<VncObject> {
        let vm = self.get("virtual-machine", &[format!("k8s__{ns}__{name}")])?;
        let r = vm
            .back_refs_of("virtual_machine_interface_back_refs")
            .first()?
            .clone();
        self.db.get(&r.uuid)
    }

    fn policy_order(&self, aps: &[String]) -> Vec<String> {
        let Some(aps) = self.get("application-policy-set", aps) else {
            return Vec::new();
        };
        let mut refs: Vec<(String, String)> = aps
            .refs_of("firewall_policy_refs")
            .iter()
            .map(|r| {
                (
                    r.attr
                        .as_ref()
                        .and_then(|a| a.get("sequence"))
                        .and_then(Value::as_str)
                        .unwrap_or("")
                        .to_owned(),
                    r.to.last().cloned().unwrap_or_default(),
                )
            })
            .collect();
        refs.sort();
        refs.into_iter().map(|r| r.1).collect()
    }

    fn rule_names(&self, policy: &str) -> Vec<String> {
        let Some(fp) = self.get(
            "firewall-policy",
            &fq(&["default-policy-management", policy]),
        ) else {
            return Vec::new();
        };
        let mut refs: Vec<(String, String)> = fp
            .refs_of("firewall_rule_refs")
            .iter()
            .map(|r| {
                (
                    r.attr
                        .as_ref()
                        .and_then(|a| a.get("sequence"))
                        .and_then(Value::as_str)
                        .unwrap_or("")
                        .to_owned(),
                    r.to.last().cloned().unwrap_or_default(),
                )
            })
            .collect();
        refs.sort();
        refs.into_iter().map(|r| r.1).collect()
    }
}

fn r50() -> KubeManagerConfig {
    KubeManagerConfig::default().with_profile(Profile::R50)
}

fn pod(name: &str, labels: Value) -> Value {
    json!({"metadata": {"name": name, "labels": labels},
           "spec": {"containers": [{"name": "c", "image": "agent", "ports": [
               {"containerPort": 80, "name": "serve-80-tcp"},
               {"containerPort": 81, "name": "serve-81-udp", "protocol": "UDP"}]}]}})
}

fn ns(name: &str, labels: Value, annotations: Value) -> Value {
    json!({"metadata": {"name": name, "labels": labels, "annotations": annotations}})
}

fn has_ref(obj: &VncObject, field: &str, to: &[String]) -> bool {
    obj.refs_of(field).iter().any(|r| r.to == to)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_provisioning_and_namespaces() {
    let env = Env::new(KubeManagerConfig::default()).await;
    // Cluster provisioning: IPAMs, networks, policies, the APS, the SNAT port pools.
    for kind in ["pod", "service", "ip-fabric"] {
        let ipam = env
            .get(
                "network-ipam",
                &fq(&["default-domain", "k8s-default", &format!("k8s-{kind}-ipam")]),
            )
            .expect("ipam");
        assert_eq!(ipam.fields["ipam_subnet_method"], "flat-subnet");
    }
    let pod_vn = env
        .get(
            "virtual-network",
            &fq(&["default-domain", "k8s-default", "k8s-default-pod-network"]),
        )
        .expect("pod network");
    assert!(has_ref(
        &pod_vn,
        "virtual_network_refs",
        &fq(&["default-domain", "default-project", "ip-fabric"])
    ));
    assert!(has_ref(
        &pod_vn,
        "network_ipam_refs",
        &fq(&["default-domain", "k8s-default", "k8s-ip-fabric-ipam"])
    ));
    assert!(has_ref(&pod_vn, "tag_refs", &fq(&["application=k8s"])));
    let svc_vn = env
        .get(
            "virtual-network",
            &fq(&[
                "default-domain",
                "k8s-default",
                "k8s-default-service-network",
            ]),
        )
        .expect("service network");
    assert!(svc_vn.refs_of("virtual_network_refs").is_empty());
    assert_eq!(svc_vn.refs_of("network_policy_refs").len(), 3);
    let ip_fabric = env
        .get(
            "virtual-network",
            &fq(&["default-domain", "default-project", "ip-fabric"]),
        )
        .expect("ip-fabric");
    assert!(has_ref(
        &ip_fabric,
        "network_policy_refs",
        &fq(&["default-domain", "k8s-default", "k8s-default-ip-fabric-np"])
    ));
    assert_eq!(
        env.policy_order(&fq(&["default-policy-management", "k8s"])),
        ["k8s-Ingress", "k8s-denyall", "k8s-allowall"]
    );
    let gvc = env
        .get(
            "global-vrouter-config",
            &fq(&[
                "default-global-system-config",
                "default-global-vrouter-config",
            ]),
        )
        .expect("gvc");
    assert_eq!(
        gvc.fields["port_translation_pools"]["port_translation_pool"][0]["port_range"]["start_port"],
        56000
    );
    assert!(
        env.get(
            "virtual-router",
            &fq(&["default-global-system-config", "node-1"])
        )
        .is_some()
    );

    // An isolated namespace (fabric forwarding turned off by annotation) and a plain one.
    env.create_any::<Namespace>(
        "",
        ns("blue", json!({}), json!({"opencontrail.org/isolation": "true", "opencontrail.org/ip_fabric_forwarding": "false"})),
    )
    .await;
    env.create_any::<Namespace>("", ns("plain", json!({}), json!({})))
        .await;
    env.within("isolated networks", |e| {
        let pn = e
            .get(
                "virtual-network",
                &fq(&["default-domain", "k8s-blue", "k8s-blue-pod-network"]),
            )
            .ok_or("no pod network")?;
        let sn = e
            .get(
                "virtual-network",
                &fq(&["default-domain", "k8s-blue", "k8s-blue-service-network"]),
            )
            .ok_or("no service network")?;
        let np = fq(&["default-domain", "k8s-blue", "k8s-blue-pod-service-np"]);
        e.get("network-policy", &np)
            .ok_or("no pod-service policy")?;
        let pols: Vec<Vec<String>> = pn
            .refs_of("network_policy_refs")
            .iter()
            .map(|r| r.to.clone())
            .collect();
        if pols
            != [
                np.clone(),
                fq(&["default-domain", "k8s-default", "k8s-default-ip-fabric-np"]),
                fq(&["default-domain", "k8s-default", "k8s-default-service-np"]),
            ]
        {
            return Err(format!("pod network policies {pols:?}"));
        }
        if !pn.refs_of("virtual_network_refs").is_empty() {
            return Err("forwarding not turned off".into());
        }
        if !has_ref(
            &pn,
            "network_ipam_refs",
            &fq(&["default-domain", "k8s-default", "k8s-pod-ipam"]),
        ) {
            return Err("pod network not on the pod IPAM".into());
        }
        if !has_ref(&sn, "network_policy_refs", &np) {
            return Err("service network lacks its policy".into());
        }
        e.get("project", &fq(&["default-domain", "k8s-plain"]))
            .ok_or("no project")?;
        if e.get(
            "virtual-network",
            &fq(&["default-domain", "k8s-plain", "k8s-plain-pod-network"]),
        )
        .is_some()
        {
            return Err("a plain namespace got networks".into());
        }
        Ok(())
    })
    .await;
    env.within("namespace allow rules", |e| {
        let rules = e.rule_names("k8s-allowall");
        rules
            .contains(&"k8s-Namespace-blue-ingress".to_owned())
            .then_some(())
            .ok_or(format!("{rules:?}"))
    })
    .await;

    // Deleting the namespace removes its networks and project.
    Api::<Namespace>::all(env.client.clone())
        .delete("blue", &DeleteParams::default())
        .await
        .expect("delete");
    env.within("namespace delete", |e| {
        if e.get(
            "virtual-network",
            &fq(&["default-domain", "k8s-blue", "k8s-blue-pod-network"]),
        )
        .is_some()
        {
            return Err("pod network still there".into());
        }
        if e.get("project", &fq(&["default-domain", "k8s-blue"]))
            .is_some()
        {
            return Err("project still there".into());
        }
        Ok(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pods_get_interfaces_addresses_and_tags() {
    let env = Env::new(r50()).await;
    env.create_any::<Namespace>("", ns("x", json!({"team": "red"}), json!({})))
        .await;
    env.create::<Pod>("x", pod("a", json!({"app": "web", "team": "ignored"})))
        .await;
    env.within("pod objects", |e| {
        let vm = e
            .get("virtual-machine", &fq(&["k8s__x__a"]))
            .ok_or("no vm")?;
        if vm.fields["server_type"] != "container" {
            return Err("vm shape".into());
        }
        let vmi = e.pod_vmi("x", "a").ok_or("no vmi")?;
        if !has_ref(
            &vmi,
            "virtual_network_refs",
            &fq(&["default-domain", "k8s-default", "k8s-default-pod-network"]),
        ) {
            return Err("vmi network".into());
        }
        if !vmi.name().starts_with("a__") || vmi.fq_name[1] != "k8s-x" {
            return Err(format!("vmi name {:?}", vmi.fq_name));
        }
        let tags = e.tags_of(&vmi);
        // Pod labels, the namespace's labels (overriding; kube-sim adds the automatic
        // `kubernetes.io/metadata.name`), `namespace=<ns>`.
        if tags
            != [
                "app=web",
                "kubernetes.io__slash__metadata.name=x",
                "namespace=x",
                "team=red",
            ]
        {
            return Err(format!("tags {tags:?}"));
        }
        let iip = vmi
            .back_refs_of("instance_ip_back_refs")
            .first()
            .ok_or("no iip")?
            .clone();
        let iip = e.db.get(&iip.uuid).ok_or("iip")?;
        let addr: std::net::Ipv4Addr = iip.fields["instance_ip_address"]
            .as_str()
            .and_then(|a| a.parse().ok())
            .ok_or("address")?;
        // Forwarding is on by default: pod addresses come from the ip-fabric IPAM.
        let fabric: ipnet::Ipv4Net = "10.64.0.0/12".parse().map_err(|_| "net")?;
        if !fabric.contains(&addr) {
            return Err(format!("address {addr}"));
        }
        Ok(())
    })
    .await;
    // The scheduler binds the pod to node-1: its VM is linked to the node's virtual router.
    env.within("node link", |e| {
        let vr = e
            .get(
                "virtual-router",
                &fq(&["default-global-system-config", "node-1"]),
            )
            .ok_or("vr")?;
        has_ref(&vr, "virtual_machine_refs", &fq(&["k8s__x__a"]))
            .then_some(())
            .ok_or("vm not linked".into())
    })
    .await;

    // Relabels propagate: the pod's own labels and its namespace's.
    let pods: Api<Pod> = Api::namespaced(env.client.clone(), "x");
    pods.patch(
        "a",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"labels": {"app": "db"}}})),
    )
    .await
    .expect("relabel");
    Api::<Namespace>::all(env.client.clone())
        .patch(
            "x",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"labels": {"team": "blue"}}})),
        )
        .await
        .expect("relabel ns");
    env.within("relabel", |e| {
        let tags = e.tags_of(&e.pod_vmi("x", "a").ok_or("vmi")?);
        (tags
            == [
                "app=db",
                "kubernetes.io__slash__metadata.name=x",
                "namespace=x",
                "team=blue",
            ])
        .then_some(())
        .ok_or(format!("{tags:?}"))
    })
    .await;

    // Delete: VM, VMI, instance IP go.
    pods.delete("a", &DeleteParams::default())
        .await
        .expect("delete");
    env.within("pod delete", |e| {
        e.get("virtual-machine", &fq(&["k8s__x__a"]))
            .is_none()
            .then_some(())
            .ok_or("vm still there".into())
    })
    .await;
    let vmis = env
        .db
        .list("virtual-machine-interface", &Default::default())
        .expect("list");
    assert!(
        !vmis.iter().any(|v| v.fq_name[1] == "k8s-x"),
        "stale interfaces"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn services_become_native_load_balancers() {
    let env = Env::new(KubeManagerConfig::default()).await;
    env.create_any::<Namespace>("", ns("shop", json!({}), json!({})))
        .await;
    for p in ["web-1", "web-2"] {
        env.create::<Pod>("shop", pod(p, json!({"app": "web"})))
            .await;
    }
    for p in ["web-1", "web-2"] {
        env.run_pod("shop", p).await;
    }
    let svc: Service = env
        .create(
            "shop",
            json!({"metadata": {"name": "web"}, "spec": {"selector": {"app": "web"}, "type": "LoadBalancer",
                   "ports": [{"name": "http", "port": 8080, "targetPort": "serve-80-tcp", "protocol": "TCP"}]}}),
        )
        .await;
    let uid = svc.metadata.uid.clone().expect("uid");
    let cip = svc
        .spec
        .as_ref()
        .and_then(|s| s.cluster_ip.clone())
        .expect("cluster ip");
    env.within("load balancer", |e| {
        let lb = e
            .get(
                "loadbalancer",
                &fq(&["default-domain", "k8s-shop", &format!("web__{uid}")]),
            )
            .ok_or("no lb")?;
        if lb.uuid != uid || lb.fields["loadbalancer_provider"] != "native" {
            return Err("lb shape".into());
        }
        let vmi = lb
            .refs_of("virtual_machine_interface_refs")
            .first()
            .ok_or("no vip vmi")?
            .clone();
        let vmi = e.db.get(&vmi.uuid).ok_or("vmi")?;
        if !has_ref(
            &vmi,
            "virtual_network_refs",
            &fq(&[
                "default-domain",
                "k8s-default",
                "k8s-default-service-network",
            ]),
        ) {
            return Err("vip not in the service network".into());
        }
        let iip = vmi
            .back_refs_of("instance_ip_back_refs")
            .first()
            .ok_or("no vip iip")?
            .clone();
        let iip = e.db.get(&iip.uuid).ok_or("iip")?;
        if iip.fields["instance_ip_address"] != cip.as_str() {
            return Err("vip is not the ClusterIP".into());
        }
        let fip = iip
            .children_of("floating_ips")
            .first()
            .ok_or("no vip fip")?
            .clone();
        let fip = e.db.get(&fip.uuid).ok_or("fip")?;
        if fip.refs_of("virtual_machine_interface_refs").len() != 2 {
            return Err(format!(
                "backends {:?}",
                fip.refs_of("virtual_machine_interface_refs")
            ));
        }
        let pm = &fip.fields["floating_ip_port_mappings"]["port_mappings"][0];
        if pm["src_port"] != 8080 || pm["dst_port"] != 80 || pm["protocol"] != "TCP" {
            return Err(format!("port mapping {pm}"));
        }
        if fip.fields["floating_ip_address"] != cip.as_str() {
            return Err("vip fip address".into());
        }
        let listeners =
            e.db.list("loadbalancer-listener", &Default::default())
                .map_err(|x| x.to_string())?;
        if !listeners
            .iter()
            .any(|l| l.name().starts_with(&format!("web__{uid}-TCP-8080-")))
        {
            return Err("no listener".into());
        }
        let members =
            e.db.list("loadbalancer-member", &Default::default())
                .map_err(|x| x.to_string())?;
        if members.len() != 2 {
            return Err(format!("{} members", members.len()));
        }
        // The backends carry the service tag.
        let tags = e.tags_of(&e.pod_vmi("shop", "web-1").ok_or("vmi")?);
        if !tags.contains(&"k8s-svc=web".to_owned()) {
            return Err(format!("backend tags {tags:?}"));
        }
        Ok(())
    })
    .await;
    // type LoadBalancer: a public floating IP with the same backends, written to the status.
    let svcs: Api<Service> = Api::namespaced(env.client.clone(), "shop");
    let start = Instant::now();
    let ip = loop {
        let s = svcs.get("web").await.expect("get");
        if let Some(ip) = s
            .status
            .and_then(|s| s.load_balancer)
            .and_then(|l| l.ingress)
            .and_then(|i| i.first().and_then(|e| e.ip.clone()))
        {
            break ip;
        }
        assert!(start.elapsed() < soon(), "no load balancer status");
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    let public: ipnet::Ipv4Net = "203.0.113.0/24".parse().expect("net");
    assert!(
        public.contains(&ip.parse::<std::net::Ipv4Addr>().expect("ip")),
        "{ip}"
    );
    let fips = env
        .db
        .list("floating-ip", &Default::default())
        .expect("list");
    let ext = fips
        .iter()
        .find(|f| f.fields.get("floating_ip_address").and_then(Value::as_str) == Some(ip.as_str()))
        .expect("public fip");
    assert_eq!(ext.refs_of("virtual_machine_interface_refs").len(), 2);

    // A backend goes away: its member and its floating-IP link go too.
    Api::<Pod>::namespaced(env.client.clone(), "shop")
        .delete("web-2", &DeleteParams::default())
        .await
        .expect("delete");
    env.within("backend removed", |e| {
        let members =
            e.db.list("loadbalancer-member", &Default::default())
                .map_err(|x| x.to_string())?;
        (members.len() == 1)
            .then_some(())
            .ok_or(format!("{} members", members.len()))
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ecmp_pinned_fault_keeps_one_backend() {
    let env = Env::new(KubeManagerConfig::default().with_fault(MockFault::EcmpPinned)).await;
    for p in ["b-1", "b-2", "b-3"] {
        env.create::<Pod>("default", pod(p, json!({"app": "b"})))
            .await;
    }
    for p in ["b-1", "b-2", "b-3"] {
        env.run_pod("default", p).await;
    }
    let svc: Service = env
        .create("default", json!({"metadata": {"name": "b"}, "spec": {"selector": {"app": "b"}, "ports": [{"port": 80}]}}))
        .await;
    let cip = svc.spec.and_then(|s| s.cluster_ip).expect("ip");
    env.within("pinned", |e| {
        let fips =
            e.db.list("floating-ip", &Default::default())
                .map_err(|x| x.to_string())?;
        let vip = fips
            .iter()
            .find(|f| {
                f.fields.get("floating_ip_address").and_then(Value::as_str) == Some(cip.as_str())
            })
            .ok_or("no vip fip")?;
        let n = vip.refs_of("virtual_machine_interface_refs").len();
        let members =
            e.db.list("loadbalancer-member", &Default::default())
                .map_err(|x| x.to_string())?
                .len();
        (n == 1 && members == 3)
            .then_some(())
            .ok_or(format!("{n} interfaces, {members} members"))
    })
    .await;
}

fn wiki_policy() -> Value {
    json!({
        "metadata": {"name": "test-network-policy"},
        "spec": {
            "podSelector": {"matchLabels": {"role": "db"}},
            "policyTypes": ["Ingress", "Egress"],
            "ingress": [{"from": [
                {"ipBlock": {"cidr": "172.17.0.0/16", "except": ["172.17.1.0/24"]}},
                {"namespaceSelector": {"matchLabels": {"project": "myproject"}}},
                {"podSelector": {"matchLabels": {"role": "frontend"}}}],
                "ports": [{"protocol": "TCP", "port": 6379}]}],
            "egress": [{"to": [{"ipBlock": {"cidr": "10.0.0.0/24"}}], "ports": [{"protocol": "TCP", "port": 5978}]}]
        }
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r50_network_policy_shapes_update_and_delete() {
    let env = Env::new(r50()).await;
    env.create::<NetworkPolicy>("default", wiki_policy()).await;
    env.within("wiki example", |e| {
        let rules = e.rule_names("k8s-default-test-network-policy");
        let want = [
            "default-ingress-test-network-policy-0-ipBlock-0-172.17.1.0/24-0",
            "default-ingress-test-network-policy-0-ipBlock-0-cidr-172.17.0.0/16-0",
            "default-ingress-test-network-policy-0-namespaceSelector-1-0",
            "default-ingress-test-network-policy-0-podSelector-2-0",
            "default-egress-test-network-policy-ipBlock-0-cidr-10.0.0.0/24-0",
        ];
        if rules != want {
            return Err(format!("rules {rules:?}"));
        }
        let deny = e.rule_names("k8s-denyall");
        if deny
            != [
                "default-ingress-test-network-policy-denyall",
                "default-egress-test-network-policy-default-deny-all",
            ]
        {
            return Err(format!("denyall {deny:?}"));
        }
        let order = e.policy_order(&fq(&["default-policy-management", "k8s"]));
        if order
            != [
                "k8s-Ingress",
                "k8s-default-test-network-policy",
                "k8s-denyall",
                "k8s-allowall",
            ]
        {
            return Err(format!("APS {order:?}"));
        }
        let r = e
            .get(
                "firewall-rule",
                &fq(&["default-policy-management", want[0]]),
            )
            .ok_or("rule")?;
        if r.fields["action_list"]["simple_action"] != "deny"
            || r.fields["endpoint_1"]["address_group"] != "default-policy-management:172.17.1.0/24"
            || r.fields["endpoint_2"]["tags"] != json!(["role=db", "namespace=default"])
            || r.fields["service"]["protocol_id"] != 6
        {
            return Err(format!("rule shape {:?}", r.fields));
        }
        e.get(
            "address-group",
            &fq(&["default-policy-management", "172.17.0.0/16"]),
        )
        .ok_or("ag")?;
        Ok(())
    })
    .await;
    // The APS sequence numbers of research §6.3.
    let aps = env
        .get(
            "application-policy-set",
            &fq(&["default-policy-management", "k8s"]),
        )
        .expect("aps");
    let seqs: Vec<String> = aps
        .refs_of("firewall_policy_refs")
        .iter()
        .map(|r| {
            r.attr
                .as_ref()
                .and_then(|a| a.get("sequence"))
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_owned()
        })
        .collect();
    assert_eq!(seqs, ["00002.0", "00004.0", "00006.0", "00007.0"]);

    // SCTP cannot be translated in r5.0: a translation error, no firewall policy.
    env.create::<NetworkPolicy>(
        "default",
        json!({"metadata": {"name": "sctp"}, "spec": {"podSelector": {}, "ingress": [{"ports": [{"protocol": "SCTP", "port": 80}]}]}}),
    )
    .await;
    env.converged().await;
    let status = env.km.as_ref().expect("km").handle().status();
    let err = status
        .translation_errors
        .iter()
        .find(|e| e.name == "sctp")
        .expect("translation error");
    assert_eq!(err.kind, "NetworkPolicy");
    assert_eq!(err.deviation.as_deref(), Some("sctp-unsupported"));
    assert!(
        env.get(
            "firewall-policy",
            &fq(&["default-policy-management", "k8s-default-sctp"])
        )
        .is_none()
    );

    // Update: the rules follow the spec.
    let nps: Api<NetworkPolicy> = Api::namespaced(env.client.clone(), "default");
    nps.patch(
        "test-network-policy",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"egress": null, "policyTypes": ["Ingress"]}})),
    )
    .await
    .expect("patch");
    env.within("update", |e| {
        let rules = e.rule_names("k8s-default-test-network-policy");
        let egress = e.get(
            "firewall-rule",
            &fq(&[
                "default-policy-management",
                "default-egress-test-network-policy-ipBlock-0-cidr-10.0.0.0/24-0",
            ]),
        );
        (rules.len() == 4 && egress.is_none())
            .then_some(())
            .ok_or(format!("{rules:?}"))
    })
    .await;

    // Delete: the policy, its rules and deny rules go.
    nps.delete("test-network-policy", &DeleteParams::default())
        .await
        .expect("delete");
    env.within("delete", |e| {
        if e.get(
            "firewall-policy",
            &fq(&[
                "default-policy-management",
                "k8s-default-test-network-policy",
            ]),
        )
        .is_some()
        {
            return Err("policy still there".into());
        }
        let left: Vec<String> =
            e.db.list("firewall-rule", &Default::default())
                .map_err(|x| x.to_string())?
                .iter()
                .map(|r| r.name().to_owned())
                .filter(|n| n.contains("test-network-policy"))
                .collect();
        if !left.is_empty() {
            return Err(format!("stale rules {left:?}"));
        }
        if !e.rule_names("k8s-denyall").is_empty() {
            return Err("deny rules left".into());
        }
        Ok(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stale_rules_fault_keeps_deleted_policies() {
    let env = Env::new(r50().with_fault(MockFault::StaleRulesAfterDelete)).await;
    env.create::<NetworkPolicy>("default", wiki_policy()).await;
    env.within("created", |e| {
        (e.rule_names("k8s-default-test-network-policy").len() == 5)
            .then_some(())
            .ok_or("rules".into())
    })
    .await;
    Api::<NetworkPolicy>::namespaced(env.client.clone(), "default")
        .delete("test-network-policy", &DeleteParams::default())
        .await
        .expect("delete");
    env.converged().await;
    assert_eq!(env.rule_names("k8s-default-test-network-policy").len(), 5);
    assert_eq!(env.rule_names("k8s-denyall").len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_network_policy_gets_per_pod_enforcement() {
    let env = Env::new(KubeManagerConfig::default()).await;
    env.create_any::<Namespace>("", ns("x", json!({}), json!({})))
        .await;
    env.create::<Pod>("x", pod("a", json!({"pod": "a"}))).await;
    env.create::<Pod>("x", pod("b", json!({"pod": "b"}))).await;
    env.create::<NetworkPolicy>(
        "x",
        json!({"metadata": {"name": "allow-b"}, "spec": {"podSelector": {"matchLabels": {"pod": "a"}},
            "ingress": [{"from": [{"podSelector": {"matchLabels": {"pod": "b"}}}], "ports": [{"port": "serve-80-tcp"}]}]}}),
    )
    .await;
    env.within("upstream objects", |e| {
        // The cluster APS keeps the real shape.
        let order = e.policy_order(&fq(&["default-policy-management", "k8s"]));
        if order
            != [
                "k8s-Ingress",
                "k8s-x-allow-b",
                "k8s-denyall",
                "k8s-allowall",
            ]
        {
            return Err(format!("APS {order:?}"));
        }
        // x/a is isolated: its interface binds its own APS.
        let vmi = e.pod_vmi("x", "a").ok_or("vmi")?;
        let tags = e.tags_of(&vmi);
        if !tags.contains(&"application=k8s__x__a".to_owned()) {
            return Err(format!("tags {tags:?}"));
        }
        let order = e.policy_order(&fq(&["default-policy-management", "k8s__x__a"]));
        if order != ["k8s-ingress-proxy", "k8s__x__a"] {
            return Err(format!("pod APS {order:?}"));
        }
        let rules = e.rule_names("k8s__x__a");
        if rules
            != [
                "k8s__x__a__allow-b__ingress-0-0-0",
                "k8s__x__a__egress-isolation",
                "k8s__x__a__ingress-isolation",
            ]
        {
            return Err(format!("pod rules {rules:?}"));
        }
        let r = e
            .get(
                "firewall-rule",
                &fq(&[
                    "default-policy-management",
                    "k8s__x__a__allow-b__ingress-0-0-0",
                ]),
            )
            .ok_or("rule")?;
        // The named port resolved on x/a, TCP by default; the peer is a membership tag.
        if r.fields["service"]["protocol"] != "tcp"
            || r.fields["service"]["dst_ports"]["start_port"] != 80
        {
            return Err(format!("service {}", r.fields["service"]));
        }
        let peer = r.fields["endpoint_1"]["tags"][0]
            .as_str()
            .ok_or("peer tag")?
            .to_owned();
        if r.fields["endpoint_2"]["tags"] != json!(["application=k8s__x__a"]) {
            return Err("not pinned".into());
        }
        // x/b carries the peer's membership tag; x/b itself is not isolated.
        let btags = e.tags_of(&e.pod_vmi("x", "b").ok_or("vmi b")?);
        if !btags.contains(&peer) || btags.iter().any(|t| t.starts_with("application=")) {
            return Err(format!("b tags {btags:?} (peer {peer})"));
        }
        let egress = e
            .get(
                "firewall-rule",
                &fq(&["default-policy-management", "k8s__x__a__egress-isolation"]),
            )
            .ok_or("egress rule")?;
        let ingress = e
            .get(
                "firewall-rule",
                &fq(&["default-policy-management", "k8s__x__a__ingress-isolation"]),
            )
            .ok_or("ingress rule")?;
        if egress.fields["action_list"]["simple_action"] != "pass"
            || ingress.fields["action_list"]["simple_action"] != "deny"
        {
            return Err("isolation actions".into());
        }
        Ok(())
    })
    .await;

    // Relabel x/a out of the selector: it is no longer isolated.
    Api::<Pod>::namespaced(env.client.clone(), "x")
        .patch(
            "a",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"labels": {"pod": "z"}}})),
        )
        .await
        .expect("relabel");
    env.within("no longer selected", |e| {
        let tags = e.tags_of(&e.pod_vmi("x", "a").ok_or("vmi")?);
        if tags.iter().any(|t| t.starts_with("application=")) {
            return Err(format!("{tags:?}"));
        }
        e.get(
            "application-policy-set",
            &fq(&["default-policy-management", "k8s__x__a"]),
        )
        .is_none()
        .then_some(())
        .ok_or("pod APS left".into())
    })
    .await;

    // Delete the policy: its firewall policy goes.
    Api::<NetworkPolicy>::namespaced(env.client.clone(), "x")
        .delete("allow-b", &DeleteParams::default())
        .await
        .expect("delete");
    env.within("policy delete", |e| {
        e.get(
            "firewall-policy",
            &fq(&["default-policy-management", "k8s-x-allow-b"]),
        )
        .is_none()
        .then_some(())
        .ok_or("policy left".into())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ingress_becomes_haproxy_load_balancer() {
    let env = Env::new(KubeManagerConfig::default()).await;
    env.create::<Pod>("default", pod("w", json!({"app": "w"})))
        .await;
    env.run_pod("default", "w").await;
    env.create::<Service>("default", json!({"metadata": {"name": "w"}, "spec": {"selector": {"app": "w"}, "ports": [{"port": 80}]}}))
        .await;
    let ing: Ingress = env
        .create(
            "default",
            json!({"metadata": {"name": "front"}, "spec": {"rules": [{"http": {"paths": [
                {"path": "/", "pathType": "Prefix", "backend": {"service": {"name": "w", "port": {"number": 80}}}}]}}]}}),
        )
        .await;
    let uid = ing.metadata.uid.clone().expect("uid");
    env.within("ingress objects", |e| {
        let lb = e
            .get(
                "loadbalancer",
                &fq(&["default-domain", "k8s-default", &format!("front__{uid}")]),
            )
            .ok_or("lb")?;
        if lb.fields["loadbalancer_provider"] != "opencontrail" {
            return Err("provider".into());
        }
        let vmi = lb
            .refs_of("virtual_machine_interface_refs")
            .first()
            .ok_or("vmi")?
            .clone();
        let vmi = e.db.get(&vmi.uuid).ok_or("vmi")?;
        let tags = e.tags_of(&vmi);
        if !tags.contains(&"ingress=k8s-default-front".to_owned())
            || !tags.contains(&"namespace=default".to_owned())
        {
            return Err(format!("tags {tags:?}"));
        }
        if !has_ref(
            &vmi,
            "virtual_network_refs",
            &fq(&["default-domain", "k8s-default", "k8s-default-pod-network"]),
        ) {
            return Err("vip not in the pod network".into());
        }
        if vmi.back_refs_of("floating_ip_back_refs").is_empty() {
            return Err("no public floating ip".into());
        }
        let rules = e.rule_names("k8s-Ingress");
        if rules != ["k8s-Ingress-default-front-w"] {
            return Err(format!("{rules:?}"));
        }
        let members =
            e.db.list("loadbalancer-member", &Default::default())
                .map_err(|x| x.to_string())?;
        if !members.iter().any(|m| {
            m.fields["loadbalancer_member_properties"]["protocol_port"] == 80
                && m.fields["loadbalancer_member_properties"]
                    .get("address")
                    .is_some()
        }) {
            return Err("no ingress member".into());
        }
        Ok(())
    })
    .await;
    let ings: Api<Ingress> = Api::namespaced(env.client.clone(), "default");
    let start = Instant::now();
    loop {
        let i = ings.get("front").await.expect("get");
        let n = i
            .status
            .and_then(|s| s.load_balancer)
            .and_then(|l| l.ingress)
            .map_or(0, |v| v.len());
        if n == 2 {
            break;
        }
        assert!(start.elapsed() < soon(), "ingress status not written");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rbac_maps_to_api_access_lists() {
    let check = |fault: Option<MockFault>| async move {
        let mut cfg = KubeManagerConfig::default();
        if let Some(f) = fault {
            cfg = cfg.with_fault(f);
        }
        let env = Env::new(cfg).await;
        env.create_any::<Namespace>("", ns("blue", json!({}), json!({})))
            .await;
        env.create::<Role>(
            "blue",
            json!({"metadata": {"name": "viewer"}, "rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list"]}]}),
        )
        .await;
        env.create::<RoleBinding>(
            "blue",
            json!({"metadata": {"name": "alice-views"}, "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "viewer"},
                   "subjects": [{"kind": "User", "name": "alice", "apiGroup": "rbac.authorization.k8s.io"}]}),
        )
        .await;
        let mut got = None;
        let start = Instant::now();
        while start.elapsed() < soon() {
            if let Some(list) = env.get(
                "api-access-list",
                &fq(&["default-domain", "k8s-blue", "k8s-rbac"]),
            ) {
                let rules = list.fields["api_access_list_entries"]["rbac_rule"].clone();
                let perm = rules
                    .as_array()
                    .into_iter()
                    .flatten()
                    .find(|r| r["rule_object"] == "virtual-machine-interface")
                    .and_then(|r| r["rule_perms"].as_array().cloned())
                    .and_then(|p| p.iter().find(|p| p["role_name"] == "user:alice").cloned());
                got = Some(perm.map(|p| p["role_crud"].as_str().unwrap_or("").to_owned()));
                if got.as_ref().is_some_and(Option::is_some)
                    || fault == Some(MockFault::RbacUnderGrant)
                {
                    break;
                }
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        got.expect("api-access-list")
    };
    assert_eq!(check(None).await.as_deref(), Some("R"));
    assert_eq!(
        check(Some(MockFault::RbacOverGrant)).await.as_deref(),
        Some("CRUD")
    );
    assert_eq!(check(Some(MockFault::RbacUnderGrant)).await, None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_rebuilds_without_duplicates() {
    let mut env = Env::new(r50()).await;
    env.create_any::<Namespace>(
        "",
        ns(
            "blue",
            json!({}),
            json!({"opencontrail.org/isolation": "true"}),
        ),
    )
    .await;
    env.create::<Pod>("blue", pod("p", json!({"app": "p"})))
        .await;
    env.create::<NetworkPolicy>(
        "blue",
        json!({"metadata": {"name": "deny"}, "spec": {"podSelector": {}}}),
    )
    .await;
    env.create::<NetworkPolicy>(
        "blue",
        json!({"metadata": {"name": "allow"}, "spec": {"podSelector": {}, "ingress": [{}]}}),
    )
    .await;
    env.within("first", |e| {
        e.pod_vmi("blue", "p").map(|_| ()).ok_or("vmi".into())
    })
    .await;
    env.converged().await;
    let before = env.db.len();
    let order = env.policy_order(&fq(&["default-policy-management", "k8s"]));
    let iip_before: Vec<Value> = env
        .db
        .list("instance-ip", &Default::default())
        .expect("list")
        .iter()
        .map(|i| i.fields["instance_ip_address"].clone())
        .collect();
    env.stop().await;
    // While kube-manager is down: one pod goes, one arrives.
    Api::<Pod>::namespaced(env.client.clone(), "blue")
        .delete("p", &DeleteParams::default())
        .await
        .expect("delete");
    env.create::<Pod>("blue", pod("q", json!({"app": "q"})))
        .await;
    let seq = env.db.current_seq();
    env.start().await;
    env.converged().await;
    assert!(
        env.pod_vmi("blue", "p").is_none(),
        "stale pod objects survived the restart"
    );
    assert!(
        env.pod_vmi("blue", "q").is_some(),
        "the new pod was not translated"
    );
    assert_eq!(
        env.db.len(),
        before,
        "object count differs after the restart"
    );
    assert_eq!(
        env.policy_order(&fq(&["default-policy-management", "k8s"])),
        order
    );
    // A plain restart writes nothing.
    let writes_after = env.db.current_seq();
    assert!(writes_after > seq);
    env.stop().await;
    env.start().await;
    env.converged().await;
    assert_eq!(
        env.db.current_seq(),
        writes_after,
        "an idle restart wrote to the database"
    );
    let iip_after = env
        .db
        .list("instance-ip", &Default::default())
        .expect("list")
        .len();
    assert_eq!(iip_after, iip_before.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn translator_faults_change_the_output() {
    // fabric-forwarding-ignored: no provider link although forwarding is on.
    let env =
        Env::new(KubeManagerConfig::default().with_fault(MockFault::FabricForwardingIgnored)).await;
    let vn = env
        .get(
            "virtual-network",
            &fq(&["default-domain", "k8s-default", "k8s-default-pod-network"]),
        )
        .expect("vn");
    assert!(vn.refs_of("virtual_network_refs").is_empty());
    assert!(has_ref(
        &vn,
        "network_ipam_refs",
        &fq(&["default-domain", "k8s-default", "k8s-ip-fabric-ipam"])
    ));
    drop(env);

    // isolation-leak and isolated-service-network-missing.
    let isolated = ns(
        "blue",
        json!({}),
        json!({"opencontrail.org/isolation": "true"}),
    );
    let env = Env::new(KubeManagerConfig::default().with_fault(MockFault::IsolationLeak)).await;
    env.create_any::<Namespace>("", isolated.clone()).await;
    env.within("leak", |e| {
        let vn = e
            .get(
                "virtual-network",
                &fq(&["default-domain", "k8s-blue", "k8s-blue-pod-network"]),
            )
            .ok_or("vn")?;
        has_ref(
            &vn,
            "network_policy_refs",
            &fq(&[
                "default-domain",
                "k8s-default",
                "k8s-default-pod-service-np",
            ]),
        )
        .then_some(())
        .ok_or("not attached".into())
    })
    .await;
    drop(env);
    let env =
        Env::new(KubeManagerConfig::default().with_fault(MockFault::IsolatedServiceNetworkMissing))
            .await;
    env.create_any::<Namespace>("", isolated).await;
    env.within("missing", |e| {
        e.get(
            "virtual-network",
            &fq(&["default-domain", "k8s-blue", "k8s-blue-pod-network"]),
        )
        .ok_or("vn")?;
        e.get(
            "virtual-network",
            &fq(&["default-domain", "k8s-blue", "k8s-blue-service-network"]),
        )
        .is_none()
        .then_some(())
        .ok_or("service network made".into())
    })
    .await;
    drop(env);

    // firewall-policy-order-broken: denyall before the user policies.
    let env = Env::new(r50().with_fault(MockFault::FirewallPolicyOrderBroken)).await;
    env.create::<NetworkPolicy>("default", wiki_policy()).await;
    env.within("order", |e| {
        let o = e.policy_order(&fq(&["default-policy-management", "k8s"]));
        (o == [
            "k8s-Ingress",
            "k8s-denyall",
            "k8s-default-test-network-policy",
            "k8s-allowall",
        ])
        .then_some(())
        .ok_or(format!("{o:?}"))
    })
    .await;
    drop(env);

    // namespace-relabel-not-propagated: the pod keeps the old namespace label.
    let env = Env::new(r50().with_fault(MockFault::NamespaceRelabelNotPropagated)).await;
    env.create_any::<Namespace>("", ns("x", json!({"team": "red"}), json!({})))
        .await;
    env.create::<Pod>("x", pod("a", json!({}))).await;
    env.within("pod", |e| {
        e.pod_vmi("x", "a").map(|_| ()).ok_or("vmi".into())
    })
    .await;
    Api::<Namespace>::all(env.client.clone())
        .patch(
            "x",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"labels": {"team": "blue"}}})),
        )
        .await
        .expect("relabel");
    env.converged().await;
    let tags = env.tags_of(&env.pod_vmi("x", "a").expect("vmi"));
    assert!(tags.contains(&"team=red".to_owned()), "{tags:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn service_chain_bypass_strips_apply_service() {
    let env =
        Env::new(KubeManagerConfig::default().with_fault(MockFault::ServiceChainBypassed)).await;
    let np = VncObject::new("network-policy", fq(&["default-domain", "k8s-default", "chain"])).with_prop(
        "network_policy_entries",
        json!({"policy_rule": [{"direction": "<>", "protocol": "any",
            "action_list": {"simple_action": "pass", "apply_service": ["default-domain:k8s-default:fw"]},
            "src_addresses": [{"virtual_network": "any"}], "dst_addresses": [{"virtual_network": "any"}],
            "src_ports": [{"start_port": -1, "end_port": -1}], "dst_ports": [{"start_port": -1, "end_port": -1}]}]}),
    );
    let stored = env.db.create(&np).expect("create");
    assert!(
        stored.fields["network_policy_entries"]["policy_rule"][0]["action_list"]
            .get("apply_service")
            .is_none()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_http_with_a_vnc_api_restart() {
    let sim = KubeSim::new(Config::default());
    let db = ConfigDb::new();
    let server = serve(
        "127.0.0.1:0".parse().expect("addr"),
        db.clone(),
        ServerConfig::default(),
    )
    .await
    .expect("serve");
    let addr = server.addr();
    let vnc = VncClient::new(&server.url(), Auth::None).expect("client");
    let km = KubeManager::new(sim.client(), vnc, r50()).spawn();
    km.handle()
        .wait_converged(Duration::from_secs(10))
        .await
        .expect("converges");
    assert!(
        db.get_by_fq_name(
            "virtual-network",
            &fq(&["default-domain", "k8s-default", "k8s-default-pod-network"])
        )
        .is_some()
    );
    // The VNC API goes down (the database stays, as Cassandra would), a namespace arrives,
    // the API comes back: kube-manager reconnects and catches up.
    server.shutdown().await.expect("shutdown");
    let nsapi: Api<Namespace> = Api::all(sim.client());
    nsapi
        .create(
            &PostParams::default(),
            &serde_json::from_value(ns("late", json!({}), json!({}))).expect("ns"),
        )
        .await
        .expect("create");
    tokio::time::sleep(Duration::from_millis(100)).await;
    let server = serve(addr, db.clone(), ServerConfig::default())
        .await
        .expect("serve again");
    let start = Instant::now();
    while db
        .get_by_fq_name("project", &fq(&["default-domain", "k8s-late"]))
        .is_none()
    {
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "kube-manager did not reconnect"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    km.shutdown().await.expect("shutdown");
    server.shutdown().await.expect("shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn multi_interface_pods_use_network_attachment_definitions() {
    use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
    use kube::api::{ApiResource, DynamicObject};
    use kube::core::GroupVersionKind;
    let env = Env::new(r50()).await;
    env.create_any::<CustomResourceDefinition>(
        "",
        json!({"metadata": {"name": "network-attachment-definitions.k8s.cni.cncf.io"},
               "spec": {"group": "k8s.cni.cncf.io", "scope": "Namespaced",
                        "names": {"plural": "network-attachment-definitions", "singular": "network-attachment-definition",
                                  "kind": "NetworkAttachmentDefinition", "listKind": "NetworkAttachmentDefinitionList"},
                        "versions": [{"name": "v1", "served": true, "storage": true,
                                      "schema": {"openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}}}]}}),
    )
    .await;
    let gvk = GroupVersionKind::gvk("k8s.cni.cncf.io", "v1", "NetworkAttachmentDefinition");
    let ar = ApiResource::from_gvk_with_plural(&gvk, "network-attachment-definitions");
    let nads: Api<DynamicObject> = Api::namespaced_with(env.client.clone(), "default", &ar);
    let mut nad = DynamicObject::new("right", &ar).within("default");
    nad.metadata.annotations = Some(
        [(
            "opencontrail.org/cidr".to_owned(),
            "192.168.50.0/24".to_owned(),
        )]
        .into(),
    );
    nad.data =
        json!({"spec": {"config": "{\"cniVersion\": \"0.3.1\", \"type\": \"contrail-k8s-cni\"}"}});
    nads.create(&PostParams::default(), &nad)
        .await
        .expect("nad");
    let mut p = pod("fw", json!({"app": "fw"}));
    p["metadata"]["annotations"] = json!({"k8s.v1.cni.cncf.io/networks": "right"});
    env.create::<Pod>("default", p).await;
    // The NetworkAttachmentDefinition watch retries with backoff until the CRD exists.
    let vn_fq = fq(&["default-domain", "k8s-default", "k8s-default-right"]);
    let start = Instant::now();
    loop {
        let vm = env.get("virtual-machine", &fq(&["k8s__default__fw"]));
        let n = vm.map_or(0, |v| {
            v.back_refs_of("virtual_machine_interface_back_refs").len()
        });
        let second = env
            .db
            .list("virtual-machine-interface", &Default::default())
            .expect("list")
            .into_iter()
            .any(|v| has_ref(&v, "virtual_network_refs", &vn_fq));
        if env.get("virtual-network", &vn_fq).is_some() && n == 2 && second {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "no second interface (vmis: {n})"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn standalone_verb_with_a_kubeconfig() {
    use harness_contrail_mock::kube_manager::run_standalone_with_kube_manager;
    let sim = KubeSim::new(Config::default());
    let kube = sim
        .serve("127.0.0.1:0".parse().expect("addr"))
        .await
        .expect("kube-sim");
    let path =
        std::env::temp_dir().join(format!("contrail-mock-kubeconfig-{}", std::process::id()));
    std::fs::write(&path, kube.kubeconfig_yaml()).expect("kubeconfig");
    // A free port for the VNC API.
    let listen = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("port");
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let settings = harness_scenario::ContrailSettings {
        profile: Profile::R50,
        ..Default::default()
    };
    let p = path.clone();
    let task = tokio::spawn(async move {
        run_standalone_with_kube_manager(listen, Some(&p), &settings, async {
            let _ = stopped.await;
        })
        .await
    });
    let vnc = VncClient::new(&format!("http://{listen}"), Auth::None).expect("client");
    let start = Instant::now();
    loop {
        let vn = vnc
            .read_by_fq_name(
                "virtual-network",
                &fq(&["default-domain", "k8s-default", "k8s-default-pod-network"]),
            )
            .await;
        if vn.is_ok() {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "no provisioning over the standalone verb"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let _ = stop.send(());
    task.await.expect("join").expect("clean exit");
    kube.shutdown().await;
    let _ = std::fs::remove_file(&path);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn custom_network_created_later_is_picked_up() {
    let env = Env::new(r50()).await;
    let mut p = pod("c", json!({"app": "c"}));
    p["metadata"]["annotations"] = json!({"opencontrail.org/network":
        "{'domain': 'default-domain', 'project': 'k8s-default', 'name': 'custom'}"});
    env.create::<Pod>("default", p).await;
    // The network does not exist yet: the interface waits, reported as an error.
    let start = Instant::now();
    loop {
        let s = env.km.as_ref().expect("km").handle().status();
        if s.translation_errors
            .iter()
            .any(|e| e.kind == "Pod" && e.name == "c")
        {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "no error reported: {s:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let vn = VncObject::new(
        "virtual-network",
        fq(&["default-domain", "k8s-default", "custom"]),
    )
    .with_ref(
        "network_ipam_refs",
        harness_contrail_vnc::Ref::by_name(fq(&["default-domain", "k8s-default", "k8s-pod-ipam"])),
    );
    env.db.create(&vn).expect("custom network");
    let start = Instant::now();
    loop {
        if let Some(vmi) = env.pod_vmi("default", "c") {
            assert!(has_ref(
                &vmi,
                "virtual_network_refs",
                &fq(&["default-domain", "k8s-default", "custom"])
            ));
            // r5.0: a pod of a custom network is bound to the cluster APS on its interface.
            assert!(env.tags_of(&vmi).contains(&"application=k8s".to_owned()));
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "the pod was not picked up"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    env.converged().await;
    let s = env.km.as_ref().expect("km").handle().status();
    assert!(
        s.translation_errors.is_empty(),
        "{:?}",
        s.translation_errors
    );
}
