//! The node agent toward the Kubernetes API: the kubelet + CNI part of a simulated compute
//! node. It registers its `Node` (and keeps it `Ready`), watches the pods bound to it, wires
//! each pod's interfaces from the Contrail VMIs and instance IPs (attaching the endpoint to the
//! shared [`Dataplane`]), writes the pod status a kubelet and a CNI plugin would (phase,
//! conditions, `podIP`/`podIPs`, `hostIP`, container statuses, the
//! `k8s.v1.cni.cncf.io/network-status` annotation), detaches on delete, and serves `pods/exec`
//! for kube-sim ([`PodExec`]): the probe agent "inside" the pod. It also runs the node's
//! kube-proxy: it watches Services and EndpointSlices and installs the node's node-port rules
//! ([`node_port_rules`]) into the dataplane ([`Dataplane::set_node_ports`]).
//!
//! The agent reads the Contrail configuration from the dataplane's snapshot, so the dataplane
//! must be kept in step with the VNC API ([`crate::agent::follow_db`] or
//! [`crate::agent::follow_sse`]), as the vrouter agent is with its config feed.
//!
//! A pod's interfaces are the VMIs whose virtual machine is the pod's: the VM's uuid is the
//! pod uid (kube-manager), or — for configuration written by other tools — a VM annotated
//! `kind=Pod, namespace, name` or named `…__<namespace>__<pod>`. VMIs are ordered by their
//! `index` annotation (`i/count`, which also says how many to wait for), then by name; the
//! first is `eth0` (the default network), the others `net1`, `net2`, …
//!
//! ```no_run
//! # async fn demo(sim: harness_kube_sim::KubeSim, db: harness_contrail_mock::ConfigDb,
//! #   dp: std::sync::Arc<std::sync::Mutex<harness_vrouter_sim::Dataplane>>) {
//! use harness_vrouter_sim::{agent, node::NodeAgent};
//! tokio::spawn(agent::follow_db(db, dp.clone(), agent::DEFAULT_DEBOUNCE));
//! let node = NodeAgent::new(sim.client(), "node-1", "192.168.0.11".parse().unwrap(), dp);
//! sim.set_exec_handler(node.exec_handler());
//! let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
//! let task = tokio::spawn(node.run(async { let _ = stopped.await; }));
//! # drop(stop); let _ = task.await; }
//! ```

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::future::Future;
use std::net::Ipv4Addr;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures_util::StreamExt;
use harness_kube_sim::{ExecError, ExecFuture, ExecHandler, ExecIo, ExecRequest};
use harness_scenario::Protocol;
use k8s_openapi::api::core::v1::{Node, Pod, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::dataplane::kube_proxy::{NodePortRule, ServiceEndpoint};
use crate::{Dataplane, EndpointRef, EndpointSpec, ProbeOptions, ServedPort, Verdict};

/// Field manager of the agent's writes.
pub const FIELD_MANAGER: &str = "harness-node-agent";
/// The Multus / CNI network-status annotation the agent writes on each pod.
pub const NETWORK_STATUS_ANNOTATION: &str = "k8s.v1.cni.cncf.io/network-status";
/// Exit status of an unknown command (as a shell's "command not found").
pub const EXIT_UNKNOWN_COMMAND: i32 = 127;
/// Exit status of a malformed probe batch.
pub const EXIT_BAD_BATCH: i32 = 2;

fn lock(dp: &Mutex<Dataplane>) -> MutexGuard<'_, Dataplane> {
    dp.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Tunables of a [`NodeAgent`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeAgentOptions {
    /// How often pods waiting for their VMI / instance IP are looked at again.
    pub poll: Duration,
    /// How often the Node's conditions are renewed (`lastHeartbeatTime`).
    pub heartbeat: Duration,
    /// Node capacity (= allocatable): `cpu`, `memory`, `pods`, `ephemeral-storage`.
    pub capacity: BTreeMap<String, String>,
    /// `status.nodeInfo.kubeletVersion`.
    pub kubelet_version: String,
}

impl Default for NodeAgentOptions {
    fn default() -> Self {
        NodeAgentOptions {
            poll: Duration::from_millis(5),
            heartbeat: Duration::from_secs(10),
            capacity: [
                ("cpu", "4"),
                ("memory", "8Gi"),
                ("pods", "110"),
                ("ephemeral-storage", "100Gi"),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect(),
            kubelet_version: "v1.32.0-contrail-sim".into(),
        }
    }
}

/// Errors of the node agent.
#[derive(Debug, thiserror::Error)]
pub enum NodeAgentError {
    /// A Kubernetes API call failed.
    #[error("kubernetes API: {0}")]
    Kube(#[from] kube::Error),
}

/// One interface of a pod as the CNI plugin wires it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodInterface {
    /// VMI uuid.
    pub vmi: String,
    /// Interface name in the pod (`eth0`, `net1`, …).
    pub name: String,
    /// The virtual network (fq name joined by `:`).
    pub network: String,
    /// IPv4 addresses from its instance IPs (primary first).
    pub ips: Vec<Ipv4Addr>,
    /// MAC address (`02:…`).
    pub mac: String,
}

fn annotation<'a>(obj: &'a harness_contrail_vnc::VncObject, key: &str) -> Option<&'a str> {
    obj.fields
        .get("annotations")?
        .get("key_value_pair")?
        .as_array()?
        .iter()
        .find(|kv| kv.get("key").and_then(Value::as_str) == Some(key))?
        .get("value")?
        .as_str()
}

/// The interfaces of pod `namespace/name` (uid `uid`) in the dataplane's configuration, once
/// every VMI of its virtual machine exists and has an instance IP; `None` while not (yet).
pub fn pod_interfaces(
    dp: &Dataplane,
    namespace: &str,
    name: &str,
    uid: &str,
) -> Option<Vec<PodInterface>> {
    let snapshot = dp.snapshot();
    let vm_uuid = if snapshot.get("virtual-machine", uid).is_some() {
        uid.to_owned()
    } else {
        let suffix = format!("__{namespace}__{name}");
        snapshot
            .objects_of("virtual-machine")
            .find(|vm| {
                (annotation(vm, "kind") == Some("Pod")
                    && annotation(vm, "namespace") == Some(namespace)
                    && annotation(vm, "name") == Some(name))
                    || vm.fq_name.last().is_some_and(|n| n.ends_with(&suffix))
            })?
            .uuid
            .clone()
    };
    let model = &dp.control().model;
    let mut expected = 1usize;
    let mut found: Vec<(usize, &str, &crate::config::model::Interface)> = Vec::new();
    for itf in &model.interfaces {
        if itf.vm.as_deref() != Some(vm_uuid.as_str()) || itf.service.is_some() {
            continue;
        }
        let (index, count) = snapshot
            .get("virtual-machine-interface", &itf.uuid)
            .and_then(|o| annotation(o, "index"))
            .and_then(|i| i.split_once('/'))
            .map_or((usize::MAX, 1), |(i, c)| {
                (i.parse().unwrap_or(usize::MAX), c.parse().unwrap_or(1))
            });
        expected = expected.max(count);
        found.push((index, itf.fq.as_str(), itf));
    }
    if found.len() < expected || found.iter().any(|(_, _, i)| i.ips.is_empty()) {
        return None;
    }
    found.sort_by(|a, b| (a.0, a.1).cmp(&(b.0, b.1)));
    Some(
        found
            .into_iter()
            .enumerate()
            .map(|(n, (_, _, itf))| PodInterface {
                vmi: itf.uuid.clone(),
                name: if n == 0 {
                    "eth0".into()
                } else {
                    format!("net{n}")
                },
                network: model
                    .networks
                    .get(itf.network)
                    .map(|n| n.fq.clone())
                    .unwrap_or_default(),
                ips: itf.ips.clone(),
                mac: itf
                    .mac
                    .iter()
                    .map(|b| format!("{b:02x}"))
                    .collect::<Vec<_>>()
                    .join(":"),
            })
            .collect(),
    )
}

/// The ports a pod's containers declare (`containerPort`, `protocol`, default TCP).
pub fn declared_ports(pod: &Pod) -> Vec<ServedPort> {
    let mut out: BTreeSet<ServedPort> = BTreeSet::new();
    let containers = pod.spec.as_ref().map(|s| s.containers.as_slice());
    for c in containers.unwrap_or_default() {
        for p in c.ports.as_deref().unwrap_or_default() {
            let Ok(port) = u16::try_from(p.container_port) else {
                continue;
            };
            let protocol = match p.protocol.as_deref().unwrap_or("TCP") {
                "UDP" => Protocol::Udp,
                "SCTP" => Protocol::Sctp,
                _ => Protocol::Tcp,
            };
            out.insert(ServedPort { protocol, port });
        }
    }
    out.into_iter().collect()
}

/// The `k8s.v1.cni.cncf.io/network-status` value for `interfaces` (JSON list: `name` = the
/// virtual network, `interface`, `ips`, `mac`, `default` for the first, `dns`).
pub fn network_status(interfaces: &[PodInterface]) -> Value {
    Value::Array(
        interfaces
            .iter()
            .enumerate()
            .map(|(i, itf)| {
                json!({
                    "name": itf.network,
                    "interface": itf.name,
                    "ips": itf.ips.iter().map(ToString::to_string).collect::<Vec<_>>(),
                    "mac": itf.mac,
                    "default": i == 0,
                    "dns": {},
                })
            })
            .collect(),
    )
}

/// RFC 3339 UTC timestamp of now, second precision (the Kubernetes `Time` format).
pub fn now_rfc3339() -> String {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let (y, m, d) = civil_from_days(i64::try_from(secs / 86_400).unwrap_or(0));
    let rem = secs % 86_400;
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// Days since 1970-01-01 → (year, month, day) (Howard Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

/// The pod status a kubelet writes once the sandbox is up and the containers run.
pub fn running_status(pod: &Pod, host_ip: Ipv4Addr, interfaces: &[PodInterface]) -> Value {
    let now = now_rfc3339();
    let start = pod
        .status
        .as_ref()
        .and_then(|s| s.start_time.as_ref())
        .and_then(|t| serde_json::to_value(t).ok())
        .unwrap_or_else(|| json!(now));
    let pod_ips: Vec<Value> = interfaces
        .first()
        .map(|i| {
            i.ips
                .iter()
                .map(|ip| json!({"ip": ip.to_string()}))
                .collect()
        })
        .unwrap_or_else(|| vec![json!({"ip": host_ip.to_string()})]);
    let pod_ip = pod_ips[0]["ip"].clone();
    let uid = pod.metadata.uid.as_deref().unwrap_or("");
    let containers = pod.spec.as_ref().map(|s| s.containers.as_slice());
    let statuses: Vec<Value> = containers
        .unwrap_or_default()
        .iter()
        .map(|c| {
            let image = c.image.clone().unwrap_or_default();
            json!({
                "name": c.name,
                "image": image,
                "imageID": format!("contrail-sim://{image}"),
                "containerID": format!("contrail-sim://{uid}/{}", c.name),
                "ready": true,
                "started": true,
                "restartCount": 0,
                "state": {"running": {"startedAt": start}},
            })
        })
        .collect();
    let condition = |t: &str| json!({"type": t, "status": "True", "lastProbeTime": null, "lastTransitionTime": now});
    json!({
        "phase": "Running",
        "conditions": [
            condition("PodReadyToStartContainers"),
            condition("Initialized"),
            condition("Ready"),
            condition("ContainersReady"),
            condition("PodScheduled"),
        ],
        "hostIP": host_ip.to_string(),
        "hostIPs": [{"ip": host_ip.to_string()}],
        "podIP": pod_ip,
        "podIPs": pod_ips,
        "startTime": start,
        "containerStatuses": statuses,
        "qosClass": "BestEffort",
    })
}

/// kube-proxy's node ports from Services and their EndpointSlices: one rule per service port
/// with a `nodePort`, with the ready endpoints of the EndpointSlices labelled
/// `kubernetes.io/service-name=<service>` in the service's namespace whose port has the
/// service port's name and protocol (an endpoint whose `ready` condition is unset counts as
/// ready, as the API says).
pub fn node_port_rules<'a>(
    services: impl IntoIterator<Item = &'a Service>,
    slices: impl IntoIterator<Item = &'a EndpointSlice>,
) -> Vec<NodePortRule> {
    let slices: Vec<&EndpointSlice> = slices
        .into_iter()
        .filter(|s| s.address_type == "IPv4")
        .collect();
    let mut out = Vec::new();
    for svc in services {
        let ns = svc.metadata.namespace.as_deref().unwrap_or("default");
        let name = svc.metadata.name.as_deref().unwrap_or("");
        let Some(spec) = &svc.spec else { continue };
        let local = spec.external_traffic_policy.as_deref() == Some("Local");
        for sp in spec.ports.iter().flatten() {
            let Some(node_port) = sp.node_port.and_then(|p| u16::try_from(p).ok()) else {
                continue;
            };
            let proto = sp.protocol.as_deref().unwrap_or("TCP");
            let protocol = match proto {
                "UDP" => Protocol::Udp,
                "SCTP" => Protocol::Sctp,
                _ => Protocol::Tcp,
            };
            let port_name = sp.name.as_deref().unwrap_or("");
            let mut endpoints = BTreeSet::new();
            for slice in slices.iter().filter(|s| {
                s.metadata.namespace.as_deref().unwrap_or("default") == ns
                    && s.metadata
                        .labels
                        .as_ref()
                        .and_then(|l| l.get("kubernetes.io/service-name"))
                        .map(String::as_str)
                        == Some(name)
            }) {
                let Some(port) = slice
                    .ports
                    .iter()
                    .flatten()
                    .find(|p| {
                        p.name.as_deref().unwrap_or("") == port_name
                            && p.protocol.as_deref().unwrap_or("TCP") == proto
                    })
                    .and_then(|p| p.port)
                    .and_then(|p| u16::try_from(p).ok())
                else {
                    continue;
                };
                for ep in slice.endpoints.iter().flatten() {
                    if ep.conditions.as_ref().and_then(|c| c.ready) == Some(false) {
                        continue;
                    }
                    for a in &ep.addresses {
                        if let Ok(address) = a.parse::<Ipv4Addr>() {
                            endpoints.insert(ServiceEndpoint {
                                address,
                                port,
                                node: ep.node_name.clone(),
                            });
                        }
                    }
                }
            }
            out.push(NodePortRule {
                service: format!("{ns}/{name}"),
                protocol,
                node_port,
                local,
                endpoints: endpoints.into_iter().collect(),
            });
        }
    }
    out.sort_by_key(|r| (r.protocol.ip_number(), r.node_port));
    out
}

/// The node's kube-proxy state: the Services and EndpointSlices it has seen.
#[derive(Debug, Default)]
struct ProxyCache {
    services: BTreeMap<String, Service>,
    slices: BTreeMap<String, EndpointSlice>,
    installed: Option<Vec<NodePortRule>>,
}

fn obj_key(meta: &kube::api::ObjectMeta) -> String {
    format!(
        "{}/{}",
        meta.namespace.as_deref().unwrap_or("default"),
        meta.name.as_deref().unwrap_or("")
    )
}

#[derive(Debug)]
struct Tracked {
    uid: String,
    pod: Pod,
    attached: bool,
    reported: bool,
}

/// The kubelet + CNI part of one simulated compute node.
pub struct NodeAgent {
    client: kube::Client,
    node: String,
    vhost: Ipv4Addr,
    dp: Arc<Mutex<Dataplane>>,
    options: NodeAgentOptions,
}

impl std::fmt::Debug for NodeAgent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NodeAgent")
            .field("node", &self.node)
            .field("vhost", &self.vhost)
            .field("options", &self.options)
            .finish_non_exhaustive()
    }
}

impl NodeAgent {
    /// An agent for node `node` whose vhost0 address is `vhost`, wiring pods into `dp`
    /// (which must be followed with [`crate::agent::follow_db`] / `follow_sse`).
    pub fn new(
        client: kube::Client,
        node: impl Into<String>,
        vhost: Ipv4Addr,
        dp: Arc<Mutex<Dataplane>>,
    ) -> Self {
        NodeAgent {
            client,
            node: node.into(),
            vhost,
            dp,
            options: NodeAgentOptions::default(),
        }
    }

    /// Replaces the options.
    #[must_use]
    pub fn with_options(mut self, options: NodeAgentOptions) -> Self {
        self.options = options;
        self
    }

    /// The node name.
    pub fn node_name(&self) -> &str {
        &self.node
    }

    /// The exec handler for kube-sim ([`harness_kube_sim::KubeSim::set_exec_handler`]); one
    /// handler serves the pods of every node sharing the dataplane.
    pub fn exec_handler(&self) -> Arc<PodExec> {
        Arc::new(PodExec::new(self.dp.clone()))
    }

    /// Registers the Node (server-side apply of labels; status with addresses, capacity and
    /// a `Ready` condition).
    ///
    /// # Errors
    /// The API call's.
    pub async fn register(&self) -> Result<(), NodeAgentError> {
        let nodes: Api<Node> = Api::all(self.client.clone());
        let body = json!({
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {
                "name": self.node,
                "labels": {
                    "kubernetes.io/hostname": self.node,
                    "kubernetes.io/os": "linux",
                    "kubernetes.io/arch": "amd64",
                },
            },
        });
        nodes
            .patch(
                &self.node,
                &PatchParams::apply(FIELD_MANAGER).force(),
                &Patch::Apply(&body),
            )
            .await?;
        self.heartbeat().await
    }

    /// Writes the Node status (conditions with a fresh `lastHeartbeatTime`).
    ///
    /// # Errors
    /// The API call's.
    pub async fn heartbeat(&self) -> Result<(), NodeAgentError> {
        let nodes: Api<Node> = Api::all(self.client.clone());
        let now = now_rfc3339();
        let cond = |t: &str, status: &str, reason: &str, message: &str| {
            json!({"type": t, "status": status, "reason": reason, "message": message,
                   "lastHeartbeatTime": now, "lastTransitionTime": now})
        };
        let status = json!({"status": {
            "addresses": [
                {"type": "InternalIP", "address": self.vhost.to_string()},
                {"type": "Hostname", "address": self.node},
            ],
            "conditions": [
                cond("MemoryPressure", "False", "KubeletHasSufficientMemory", "kubelet has sufficient memory available"),
                cond("DiskPressure", "False", "KubeletHasNoDiskPressure", "kubelet has no disk pressure"),
                cond("PIDPressure", "False", "KubeletHasSufficientPID", "kubelet has sufficient PID available"),
                cond("Ready", "True", "KubeletReady", "kubelet is posting ready status (contrail-sim vrouter agent up)"),
            ],
            "capacity": self.options.capacity,
            "allocatable": self.options.capacity,
            "daemonEndpoints": {"kubeletEndpoint": {"Port": 10250}},
            "nodeInfo": {
                "architecture": "amd64",
                "bootID": "",
                "containerRuntimeVersion": "contrail-sim://1.0",
                "kernelVersion": "sim",
                "kubeProxyVersion": "",
                "kubeletVersion": self.options.kubelet_version,
                "machineID": "",
                "operatingSystem": "linux",
                "osImage": "harness vrouter-sim",
                "systemUUID": "",
            },
        }});
        nodes
            .patch_status(&self.node, &PatchParams::default(), &Patch::Merge(&status))
            .await?;
        Ok(())
    }

    /// Registers the Node, then watches its pods, wiring and reporting them, until
    /// `shutdown` resolves (endpoints stay attached: a stopped kubelet does not stop pods).
    ///
    /// # Errors
    /// Registration failed.
    pub async fn run(self, shutdown: impl Future<Output = ()>) -> Result<(), NodeAgentError> {
        self.register().await?;
        let pods: Api<Pod> = Api::all(self.client.clone());
        let cfg = watcher::Config::default().fields(&format!("spec.nodeName={}", self.node));
        let mut events = watcher(pods, cfg).default_backoff().boxed();
        // kube-proxy: Services and EndpointSlices of every namespace.
        let services: Api<Service> = Api::all(self.client.clone());
        let slices: Api<EndpointSlice> = Api::all(self.client.clone());
        let mut service_events = watcher(services, watcher::Config::default())
            .default_backoff()
            .boxed();
        let mut slice_events = watcher(slices, watcher::Config::default())
            .default_backoff()
            .boxed();
        let mut proxy = ProxyCache::default();
        let mut service_listing: Option<BTreeMap<String, Service>> = None;
        let mut slice_listing: Option<BTreeMap<String, EndpointSlice>> = None;
        let mut tracked: HashMap<String, Tracked> = HashMap::new();
        let mut listing: Option<BTreeSet<String>> = None;
        let mut poll = tokio::time::interval(self.options.poll);
        poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut beat = tokio::time::interval(self.options.heartbeat);
        beat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        beat.tick().await;
        tokio::pin!(shutdown);
        loop {
            let pending = tracked.values().any(|t| !t.reported);
            tokio::select! {
                () = &mut shutdown => break,
                ev = events.next() => match ev {
                    None => break,
                    Some(Err(_)) => {}
                    Some(Ok(watcher::Event::Init)) => listing = Some(BTreeSet::new()),
                    Some(Ok(watcher::Event::InitApply(pod))) => {
                        if let Some(seen) = listing.as_mut() {
                            seen.insert(key_of(&pod));
                        }
                        self.on_apply(pod, &mut tracked);
                    }
                    Some(Ok(watcher::Event::InitDone)) => {
                        if let Some(seen) = listing.take() {
                            let gone: Vec<String> =
                                tracked.keys().filter(|k| !seen.contains(*k)).cloned().collect();
                            for k in gone {
                                self.forget(&k, &mut tracked);
                            }
                        }
                    }
                    Some(Ok(watcher::Event::Apply(pod))) => self.on_apply(pod, &mut tracked),
                    Some(Ok(watcher::Event::Delete(pod))) => self.forget(&key_of(&pod), &mut tracked),
                },
                ev = service_events.next() => match ev {
                    None | Some(Err(_)) => {}
                    Some(Ok(watcher::Event::Init)) => service_listing = Some(BTreeMap::new()),
                    Some(Ok(watcher::Event::InitApply(s))) => {
                        if let Some(l) = service_listing.as_mut() {
                            l.insert(obj_key(&s.metadata), s);
                        }
                    }
                    Some(Ok(watcher::Event::InitDone)) => {
                        if let Some(l) = service_listing.take() {
                            proxy.services = l;
                            self.sync_proxy(&mut proxy);
                        }
                    }
                    Some(Ok(watcher::Event::Apply(s))) => {
                        proxy.services.insert(obj_key(&s.metadata), s);
                        self.sync_proxy(&mut proxy);
                    }
                    Some(Ok(watcher::Event::Delete(s))) => {
                        proxy.services.remove(&obj_key(&s.metadata));
                        self.sync_proxy(&mut proxy);
                    }
                },
                ev = slice_events.next() => match ev {
                    None | Some(Err(_)) => {}
                    Some(Ok(watcher::Event::Init)) => slice_listing = Some(BTreeMap::new()),
                    Some(Ok(watcher::Event::InitApply(s))) => {
                        if let Some(l) = slice_listing.as_mut() {
                            l.insert(obj_key(&s.metadata), s);
                        }
                    }
                    Some(Ok(watcher::Event::InitDone)) => {
                        if let Some(l) = slice_listing.take() {
                            proxy.slices = l;
                            self.sync_proxy(&mut proxy);
                        }
                    }
                    Some(Ok(watcher::Event::Apply(s))) => {
                        proxy.slices.insert(obj_key(&s.metadata), s);
                        self.sync_proxy(&mut proxy);
                    }
                    Some(Ok(watcher::Event::Delete(s))) => {
                        proxy.slices.remove(&obj_key(&s.metadata));
                        self.sync_proxy(&mut proxy);
                    }
                },
                _ = poll.tick(), if pending => self.wire_pending(&mut tracked).await,
                _ = beat.tick() => {
                    let _ = self.heartbeat().await;
                }
            }
        }
        Ok(())
    }

    /// kube-proxy's sync: recompute the node ports and install them when they changed.
    fn sync_proxy(&self, proxy: &mut ProxyCache) {
        let rules = node_port_rules(proxy.services.values(), proxy.slices.values());
        if proxy.installed.as_ref() == Some(&rules) {
            return;
        }
        if lock(&self.dp)
            .set_node_ports(&self.node, rules.clone())
            .is_ok()
        {
            proxy.installed = Some(rules);
        }
    }

    fn on_apply(&self, pod: Pod, tracked: &mut HashMap<String, Tracked>) {
        let key = key_of(&pod);
        if pod.metadata.deletion_timestamp.is_some()
            || pod.spec.as_ref().and_then(|s| s.node_name.as_deref()) != Some(self.node.as_str())
        {
            self.forget(&key, tracked);
            return;
        }
        let uid = pod.metadata.uid.clone().unwrap_or_default();
        match tracked.get_mut(&key) {
            Some(t) if t.uid == uid => t.pod = pod,
            _ => {
                self.forget(&key, tracked);
                tracked.insert(
                    key,
                    Tracked {
                        uid,
                        pod,
                        attached: false,
                        reported: false,
                    },
                );
            }
        }
    }

    fn forget(&self, key: &str, tracked: &mut HashMap<String, Tracked>) {
        if let Some(t) = tracked.remove(key)
            && t.attached
        {
            lock(&self.dp).detach_endpoint(key);
        }
    }

    async fn wire_pending(&self, tracked: &mut HashMap<String, Tracked>) {
        for (key, t) in tracked.iter_mut().filter(|(_, t)| !t.reported) {
            let (ns, name) = key.split_once('/').unwrap_or(("", key));
            let host_network = t
                .pod
                .spec
                .as_ref()
                .and_then(|s| s.host_network)
                .unwrap_or(false);
            let interfaces = if host_network {
                Vec::new()
            } else {
                let mut dp = lock(&self.dp);
                let Some(interfaces) = pod_interfaces(&dp, ns, name, &t.uid) else {
                    continue;
                };
                if !t.attached {
                    dp.attach_endpoint(EndpointSpec {
                        name: key.clone(),
                        interfaces: interfaces.iter().map(|i| i.vmi.clone()).collect(),
                        node: Some(self.node.clone()),
                        ports: declared_ports(&t.pod),
                        function: None,
                    });
                    t.attached = true;
                }
                interfaces
            };
            if self.report(ns, name, &t.pod, &interfaces).await.is_ok() {
                t.reported = true;
            }
        }
    }

    async fn report(
        &self,
        ns: &str,
        name: &str,
        pod: &Pod,
        interfaces: &[PodInterface],
    ) -> Result<(), kube::Error> {
        let pods: Api<Pod> = Api::namespaced(self.client.clone(), ns);
        if !interfaces.is_empty() {
            let annotations = json!({"metadata": {"annotations": {
                NETWORK_STATUS_ANNOTATION: network_status(interfaces).to_string(),
            }}});
            pods.patch(name, &PatchParams::default(), &Patch::Merge(&annotations))
                .await?;
        }
        let status = json!({"status": running_status(pod, self.vhost, interfaces)});
        pods.patch_status(name, &PatchParams::default(), &Patch::Merge(&status))
            .await?;
        Ok(())
    }
}

fn key_of(pod: &Pod) -> String {
    format!(
        "{}/{}",
        pod.metadata.namespace.as_deref().unwrap_or("default"),
        pod.metadata.name.as_deref().unwrap_or("")
    )
}

/// One probe of a batch (`harness agent probe --batch -`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ProbeRequest {
    /// Destination IPv4 address.
    pub to: String,
    /// `TCP`, `UDP`, `SCTP` or `ICMP`.
    pub protocol: Protocol,
    /// Destination port (ignored for ICMP).
    #[serde(default)]
    pub port: u16,
    /// How long the real agent waits; the model answers at once (a drop is a timeout).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_ms: Option<u64>,
    /// Also return the hops the packets took.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub trace: bool,
}

/// The outcome class of a probe.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ProbeResultKind {
    /// The destination answered.
    Connected,
    /// A host said no (RST, ICMP unreachable, ABORT).
    Refused,
    /// No answer.
    Timeout,
    /// Neither (restarting vrouter, bad request, pod not wired).
    Other,
}

/// One answer of a batch, in request order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProbeResult {
    /// The outcome.
    pub result: ProbeResultKind,
    /// Who answered (the backend pod / host after DNAT), when connected.
    pub backend: Option<String>,
    /// Who refused, where and why it was dropped, or what went wrong.
    pub detail: String,
    /// Hops, when the request asked for a trace.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub hops: Vec<String>,
}

/// Runs a batch of probes from endpoint `from` (`ns/pod`).
pub fn run_batch(dp: &mut Dataplane, from: &str, batch: &[ProbeRequest]) -> Vec<ProbeResult> {
    let src = EndpointRef::Pod(from.to_owned());
    batch
        .iter()
        .map(|req| {
            let Ok(to) = req.to.parse::<Ipv4Addr>() else {
                return ProbeResult {
                    result: ProbeResultKind::Other,
                    backend: None,
                    detail: format!("{:?} is not an IPv4 address", req.to),
                    hops: Vec::new(),
                };
            };
            let opts = ProbeOptions {
                trace: req.trace,
                capture: false,
                ..ProbeOptions::default()
            };
            match dp.probe_with(&src, to, req.protocol, req.port, &opts) {
                Err(e) => ProbeResult {
                    result: ProbeResultKind::Other,
                    backend: None,
                    detail: e.to_string(),
                    hops: Vec::new(),
                },
                Ok(o) => {
                    let hops = o.hops.iter().map(ToString::to_string).collect();
                    let (result, backend, detail) = match o.verdict {
                        Verdict::Connected { backend } => {
                            (ProbeResultKind::Connected, Some(backend), String::new())
                        }
                        Verdict::Refused { by } => (ProbeResultKind::Refused, None, by),
                        Verdict::Dropped { at, reason } => (
                            ProbeResultKind::Timeout,
                            None,
                            format!("dropped at {at}: {reason}"),
                        ),
                        Verdict::Inconclusive { reason } => (ProbeResultKind::Other, None, reason),
                    };
                    ProbeResult {
                        result,
                        backend,
                        detail,
                        hops,
                    }
                }
            }
        })
        .collect()
}

/// Where the batch of a probe command comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
enum BatchSource {
    Stdin,
    Inline(String),
}

/// `harness agent probe --batch -|<json>` (argv0 may be a path to `harness`).
fn parse_command(command: &[String]) -> Option<BatchSource> {
    let (argv0, rest) = command.split_first()?;
    if argv0.rsplit('/').next() != Some("harness") {
        return None;
    }
    match rest {
        [a, p, b, src] if a == "agent" && p == "probe" && b == "--batch" => Some(if src == "-" {
            BatchSource::Stdin
        } else {
            BatchSource::Inline(src.clone())
        }),
        [a, p, b] if a == "agent" && p == "probe" => match b.strip_prefix("--batch=") {
            Some("-") => Some(BatchSource::Stdin),
            Some(s) => Some(BatchSource::Inline(s.to_owned())),
            None => None,
        },
        _ => None,
    }
}

/// kube-sim's exec handler: `kubectl exec <pod> -- harness agent probe --batch -` runs the
/// probe agent from the pod's endpoint in the dataplane.
pub struct PodExec {
    dp: Arc<Mutex<Dataplane>>,
}

impl std::fmt::Debug for PodExec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PodExec").finish_non_exhaustive()
    }
}

impl PodExec {
    /// A handler probing through `dp`.
    pub fn new(dp: Arc<Mutex<Dataplane>>) -> Self {
        PodExec { dp }
    }
}

async fn write(
    w: &mut (dyn tokio::io::AsyncWrite + Send + Unpin),
    s: &str,
) -> Result<(), ExecError> {
    w.write_all(s.as_bytes())
        .await
        .map_err(|e| ExecError(e.to_string()))?;
    w.flush().await.map_err(|e| ExecError(e.to_string()))
}

impl ExecHandler for PodExec {
    fn exec(&self, request: ExecRequest, mut io: ExecIo) -> ExecFuture {
        let dp = self.dp.clone();
        Box::pin(async move {
            let Some(source) = parse_command(&request.command) else {
                let msg = format!(
                    "{}: command not found (the simulated pod {}/{} runs only `harness agent probe --batch -`)\n",
                    request.command.first().map_or("", String::as_str),
                    request.namespace,
                    request.pod
                );
                write(io.stderr.as_mut(), &msg).await?;
                return Ok(EXIT_UNKNOWN_COMMAND);
            };
            let text = match source {
                BatchSource::Inline(s) => s,
                BatchSource::Stdin => {
                    let Some(mut stdin) = io.stdin.take() else {
                        write(
                            io.stderr.as_mut(),
                            "harness agent probe: --batch - needs stdin (kubectl exec -i)\n",
                        )
                        .await?;
                        return Ok(EXIT_BAD_BATCH);
                    };
                    let mut buf = Vec::new();
                    stdin
                        .read_to_end(&mut buf)
                        .await
                        .map_err(|e| ExecError(e.to_string()))?;
                    String::from_utf8_lossy(&buf).into_owned()
                }
            };
            let batch: Vec<ProbeRequest> = match serde_json::from_str(&text) {
                Ok(b) => b,
                Err(e) => {
                    let msg = format!("harness agent probe: bad batch: {e}\n");
                    write(io.stderr.as_mut(), &msg).await?;
                    return Ok(EXIT_BAD_BATCH);
                }
            };
            let from = format!("{}/{}", request.namespace, request.pod);
            let results = run_batch(&mut lock(&dp), &from, &batch);
            let out = serde_json::to_string(&results).map_err(|e| ExecError(e.to_string()))?;
            write(io.stdout.as_mut(), &format!("{out}\n")).await?;
            Ok(0)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_ports_follow_service_ports_and_ready_endpoints() {
        let svc = |name: &str, spec: Value| -> Service {
            serde_json::from_value(
                json!({"metadata": {"name": name, "namespace": "shop"}, "spec": spec}),
            )
            .unwrap()
        };
        let services = [
            svc(
                "web-np",
                json!({"type": "NodePort", "externalTrafficPolicy": "Local", "ports": [
                    {"name": "http", "port": 80, "nodePort": 30080},
                    {"name": "dns", "port": 53, "protocol": "UDP", "nodePort": 30053}]}),
            ),
            svc("web", json!({"ports": [{"name": "http", "port": 80}]})),
        ];
        let slice: EndpointSlice = serde_json::from_value(json!({
            "metadata": {"name": "web-np-x", "namespace": "shop", "labels": {"kubernetes.io/service-name": "web-np"}},
            "addressType": "IPv4",
            "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}],
            "endpoints": [
                {"addresses": ["10.0.0.1"], "nodeName": "node-1", "conditions": {"ready": true}},
                {"addresses": ["10.0.0.2"], "conditions": {}},
                {"addresses": ["10.0.0.3"], "conditions": {"ready": false}},
            ],
        }))
        .unwrap();
        let other_ns: EndpointSlice = serde_json::from_value(json!({
            "metadata": {"name": "web-np-y", "namespace": "other", "labels": {"kubernetes.io/service-name": "web-np"}},
            "addressType": "IPv4",
            "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}],
            "endpoints": [{"addresses": ["10.0.0.9"]}],
        }))
        .unwrap();
        let rules = node_port_rules(&services, [&slice, &other_ns]);
        assert_eq!(rules.len(), 2, "{rules:#?}");
        let http = &rules[0];
        assert_eq!(
            (http.protocol, http.node_port, http.local),
            (Protocol::Tcp, 30080, true)
        );
        let addrs: Vec<String> = http
            .endpoints
            .iter()
            .map(|e| format!("{}:{}", e.address, e.port))
            .collect();
        assert_eq!(
            addrs,
            ["10.0.0.1:8080", "10.0.0.2:8080"],
            "ready or unknown, this namespace"
        );
        assert_eq!(http.endpoints[0].node.as_deref(), Some("node-1"));
        // The UDP port has no matching slice port: no endpoint (kube-proxy rejects).
        assert_eq!(
            (rules[1].protocol, rules[1].node_port),
            (Protocol::Udp, 30053)
        );
        assert!(rules[1].endpoints.is_empty());
    }

    #[test]
    fn dates() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(19_723), (2024, 1, 1));
        assert_eq!(civil_from_days(19_782), (2024, 2, 29));
        assert_eq!(now_rfc3339().len(), 20);
    }

    #[test]
    fn commands() {
        let c = |v: &[&str]| v.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
        assert_eq!(
            parse_command(&c(&["harness", "agent", "probe", "--batch", "-"])),
            Some(BatchSource::Stdin)
        );
        assert_eq!(
            parse_command(&c(&["/usr/bin/harness", "agent", "probe", "--batch=[]"])),
            Some(BatchSource::Inline("[]".into()))
        );
        assert_eq!(parse_command(&c(&["sh", "-c", "true"])), None);
        assert_eq!(parse_command(&c(&["harness", "agent", "probe"])), None);
        let r: Vec<ProbeRequest> = serde_json::from_str(
            r#"[{"to": "10.96.0.10", "protocol": "TCP", "port": 80, "timeoutMs": 1000}]"#,
        )
        .unwrap();
        assert_eq!(r[0].protocol, Protocol::Tcp);
        assert_eq!(r[0].timeout_ms, Some(1000));
    }
}
