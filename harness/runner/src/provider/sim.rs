//! The `sim` provider: kube-sim, the mock Contrail (VNC API + kube-manager emulation) and the
//! simulated vrouters, in process, wired over loopback HTTP.
//!
//! ```text
//!  runner ──kube-rs/HTTP──► kube-sim ◄──kube-rs/HTTP── kube-manager ──VNC/HTTP──► contrail-api
//!     │                        ▲                                                 (ConfigDb)
//!     │                        └──kube-rs/HTTP── node agents (kubelet + CNI)          │
//!     └── probes ──► Dataplane (one per cluster, vrouter per node) ◄── follow_db ─────┘
//! ```
//!
//! Every server listens on `127.0.0.1:0`. Each component can be restarted for a scenario's
//! `fault:` step while its store survives (etcd and Cassandra would). Dropping a
//! [`SimCluster`] stops every task and server; [`SimCluster::shutdown`] does the same and waits
//! for them.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use harness_contrail_mock::kube_manager::{
    KubeManager, KubeManagerConfig, KubeManagerStatus, RunningKubeManager,
};
use harness_contrail_mock::{AuthConfig, ConfigDb, ServerConfig};
use harness_contrail_vnc::{Auth, VncClient};
use harness_kube_sim::KubeSim;
use harness_scenario::model::Component;
use harness_scenario::{ClusterSpec, ContrailSettings, MockFault, Protocol};
use harness_vrouter_sim::config::source;
use harness_vrouter_sim::node::NodeAgent;
use harness_vrouter_sim::{
    ClientSpec, Dataplane, EndpointRef, HostSpec, NodeSpec, ProbeOptions, ServedPort, Topology,
    Verdict, agent,
};
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{Api, ListParams};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use super::{Observed, ProbeExecutor, ProbeOutcome, ProbeRequest};

/// Identity the harness uses toward the mock's VNC API (the cloud-admin role).
pub const ADMIN_USER: &str = "harness-admin";
/// The mock's cloud-admin role.
pub const ADMIN_ROLE: &str = "admin";

/// What to stand up: the scenario's `cluster:` and `contrail:` (with command-line overrides
/// already applied).
#[derive(Clone, Debug, Default)]
pub struct SimSpec {
    /// Nodes, fabric hosts, external clients.
    pub cluster: ClusterSpec,
    /// Profile, faults, subnets, fabric forwarding.
    pub contrail: ContrailSettings,
    /// The scenario's `rbacMapping` document, for kube-manager (v1 when `None`).
    pub rbac_mapping: Option<serde_json::Value>,
}

/// Why the sim provider failed.
#[derive(Debug, thiserror::Error)]
pub enum SimError {
    /// A server could not start.
    #[error("could not start {component}: {message}")]
    Start {
        /// kube-sim, contrail-api, …
        component: &'static str,
        /// Why.
        message: String,
    },
    /// The scenario's cluster cannot be laid out (addresses).
    #[error("cannot lay out the cluster: {0}")]
    Layout(String),
    /// The cluster did not settle in time; says what was still pending.
    #[error("the cluster did not converge within {timeout:?}: {state}")]
    NotConverged {
        /// The budget.
        timeout: Duration,
        /// The last observed state: pods not ready, kube-manager progress, translation errors.
        state: String,
    },
    /// A component died.
    #[error("{component} died: {message}")]
    Died {
        /// Which.
        component: String,
        /// Why.
        message: String,
    },
    /// A Kubernetes API call of the provider failed.
    #[error("Kubernetes API call failed while {doing}: {source}")]
    Kube {
        /// What the provider was doing.
        doing: &'static str,
        /// The error.
        #[source]
        source: kube::Error,
    },
    /// A fault named a node that does not exist.
    #[error("unknown node `{0}`: the cluster has nodes node-1 … node-N (cluster.nodes)")]
    UnknownNode(String),
}

fn lock(dp: &Mutex<Dataplane>) -> std::sync::MutexGuard<'_, Dataplane> {
    dp.lock().unwrap_or_else(PoisonError::into_inner)
}

struct NodeRuntime {
    name: String,
    vhost: Ipv4Addr,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<Result<(), harness_vrouter_sim::node::NodeAgentError>>,
}

/// A running sim cluster.
///
/// # Usage
///
/// ```no_run
/// # async fn demo() -> Result<(), harness_runner::provider::sim::SimError> {
/// use harness_runner::provider::sim::{SimCluster, SimSpec};
/// let cluster = SimCluster::up(&SimSpec::default()).await?;
/// let pods: kube::Api<k8s_openapi::api::core::v1::Pod> = kube::Api::all(cluster.kube());
/// // ... apply, converge, probe through cluster.dataplane() ...
/// cluster.shutdown().await;
/// # Ok(()) }
/// ```
pub struct SimCluster {
    spec: SimSpec,
    sim: KubeSim,
    kube_server: Option<harness_kube_sim::RunningServer>,
    kube_addr: SocketAddr,
    kube: kube::Client,
    db: ConfigDb,
    vnc_server: Option<harness_contrail_mock::RunningServer>,
    vnc_addr: SocketAddr,
    vnc: VncClient,
    km_config: KubeManagerConfig,
    km: Option<RunningKubeManager>,
    dp: Arc<Mutex<Dataplane>>,
    follower: Option<JoinHandle<()>>,
    nodes: Vec<NodeRuntime>,
}

impl std::fmt::Debug for SimCluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SimCluster")
            .field("kubernetes", &self.kube_addr)
            .field("contrail", &self.vnc_addr)
            .field("nodes", &self.nodes.len())
            .finish_non_exhaustive()
    }
}

async fn http_client(kubeconfig_yaml: &str) -> Result<kube::Client, SimError> {
    let err = |m: String| SimError::Start {
        component: "kube-rs client",
        message: m,
    };
    let kc =
        kube::config::Kubeconfig::from_yaml(kubeconfig_yaml).map_err(|e| err(e.to_string()))?;
    let cfg = kube::Config::from_custom_kubeconfig(kc, &kube::config::KubeConfigOptions::default())
        .await
        .map_err(|e| err(e.to_string()))?;
    kube::Client::try_from(cfg).map_err(|e| err(e.to_string()))
}

/// The VNC API over `db`, with RBAC from api-access-lists (identity headers trusted, so the
/// RBAC checks can call it as a subject).
async fn serve_vnc(
    addr: SocketAddr,
    db: &ConfigDb,
) -> Result<harness_contrail_mock::RunningServer, SimError> {
    harness_contrail_mock::serve(
        addr,
        db.clone(),
        ServerConfig {
            auth: AuthConfig::rbac(),
        },
    )
    .await
    .map_err(|e| SimError::Start {
        component: "contrail-api",
        message: e.to_string(),
    })
}

fn admin_vnc(url: &str) -> Result<VncClient, SimError> {
    let err = |m: String| SimError::Start {
        component: "VNC client",
        message: m,
    };
    VncClient::new(url, Auth::None)
        .and_then(|c| c.with_header("X-User", ADMIN_USER))
        .and_then(|c| c.with_header("X-Role", ADMIN_ROLE))
        .map(|c| c.with_timeout(Duration::from_secs(5)))
        .map_err(|e| err(e.to_string()))
}

/// The underlay layout: node vhosts from the first ip-fabric subnet (host .11 upwards, as the
/// oracle plans them, skipping fabric hosts), the gateway at host .10, external clients at the
/// addresses the oracle gives them.
fn topology(spec: &SimSpec) -> Result<Topology, SimError> {
    let fabric = spec
        .contrail
        .ip_fabric_subnets
        .first()
        .ok_or_else(|| SimError::Layout("contrail.ipFabricSubnets is empty".into()))?;
    let base = u32::from(fabric.network());
    let taken: Vec<Ipv4Addr> = spec
        .cluster
        .fabric_hosts
        .iter()
        .map(|h| h.address)
        .collect();
    let mut next = 11u32;
    let mut nodes = Vec::new();
    for name in spec.cluster.node_names() {
        let vhost = loop {
            let a = Ipv4Addr::from(base + next);
            next += 1;
            if !fabric.contains(&a) {
                return Err(SimError::Layout(format!(
                    "{fabric} has no room for {} node addresses",
                    spec.cluster.nodes
                )));
            }
            if !taken.contains(&a) {
                break a;
            }
        };
        nodes.push(NodeSpec {
            name,
            vhost,
            ports: Vec::new(),
        });
    }
    let served = |ports: &[harness_scenario::PortSpec]| -> Vec<ServedPort> {
        ports
            .iter()
            .filter_map(|p| match (&p.protocol, &p.port) {
                (Protocol::Icmp, _) => None,
                (proto, Some(harness_scenario::PortRef::Number(n))) => Some(ServedPort {
                    protocol: *proto,
                    port: *n,
                }),
                _ => None,
            })
            .collect()
    };
    // External clients get the oracle's addresses (planned from the scenario alone), so the
    // oracle built from observed objects names the same clients at the same addresses.
    let planned = harness_oracle::Cluster::from_objects(&[], &spec.cluster, &spec.contrail)
        .map_err(|e| SimError::Layout(e.to_string()))?;
    let external_clients = planned
        .external_clients()
        .iter()
        .map(|e| ClientSpec {
            name: e.name.clone(),
            ip: e.address,
        })
        .collect();
    let mut topo = Topology {
        nodes,
        fabric_hosts: spec
            .cluster
            .fabric_hosts
            .iter()
            .map(|h| HostSpec {
                name: h.name.clone(),
                ip: h.address,
                ports: served(&h.serves),
            })
            .collect(),
        external_clients,
        ..Topology::default()
    };
    topo.gateway.ip = Ipv4Addr::from(base + 10);
    Ok(topo)
}

impl SimCluster {
    /// Stands the cluster up and waits until every node is registered and Ready, kube-manager
    /// has provisioned the cluster and the vrouters have read it.
    ///
    /// # Errors
    ///
    /// [`SimError::Start`] when a server cannot listen, [`SimError::Layout`] when the
    /// scenario's addresses do not fit, [`SimError::NotConverged`] when the cluster does not
    /// settle within 10 s (with what was pending). Whatever was started is stopped again.
    pub async fn up(spec: &SimSpec) -> Result<SimCluster, SimError> {
        let topo = topology(spec)?;
        let loopback: SocketAddr = ([127, 0, 0, 1], 0).into();
        let mut kcfg = harness_kube_sim::Config::default();
        if let Some(net) = spec.contrail.service_subnets.first() {
            kcfg = kcfg.with_service_cidr(*net);
        }
        let sim = KubeSim::new(kcfg);
        let kube_server = sim.serve(loopback).await.map_err(|e| SimError::Start {
            component: "kube-sim",
            message: e.to_string(),
        })?;
        let kube_addr = kube_server.addr();
        let kube = http_client(&kube_server.kubeconfig_yaml()).await?;

        let db = ConfigDb::new();
        let mut km_config = KubeManagerConfig::from_settings(&spec.contrail);
        if let Some(doc) = &spec.rbac_mapping {
            km_config.rbac_mapping =
                harness_contrail_mock::kube_manager::RbacMapping::from_json(doc.clone())
                    .map_err(|e| SimError::Layout(format!("rbacMapping: {e}")))?;
        }
        if spec
            .contrail
            .faults
            .contains(&MockFault::ServiceChainBypassed)
        {
            // A property of the config database (network-policies stored without
            // apply_service); kube-manager writes over HTTP, so set it here.
            db.set_service_chain_bypass(true);
            km_config.faults.remove(&MockFault::ServiceChainBypassed);
        }
        let vnc_server = serve_vnc(loopback, &db).await?;
        let vnc_addr = vnc_server.addr();
        let vnc = admin_vnc(&vnc_server.url())?;

        let dp = Arc::new(Mutex::new(Dataplane::from_config(
            source::snapshot_from_db(&db),
            topo.clone(),
        )));
        let follower = {
            let (db, dp) = (db.clone(), dp.clone());
            tokio::spawn(async move {
                // Ends when the database is dropped; the cluster aborts it on shutdown.
                let _ = agent::follow_db(db, dp, agent::DEFAULT_DEBOUNCE).await;
            })
        };
        let km = KubeManager::new(kube.clone(), vnc.clone(), km_config.clone()).spawn();

        let mut cluster = SimCluster {
            spec: spec.clone(),
            sim,
            kube_server: Some(kube_server),
            kube_addr,
            kube,
            db,
            vnc_server: Some(vnc_server),
            vnc_addr,
            vnc,
            km_config,
            km: Some(km),
            dp,
            follower: Some(follower),
            nodes: Vec::new(),
        };
        for n in &topo.nodes {
            cluster.start_node_agent(&n.name, n.vhost);
        }
        if let Some(agent) = cluster.nodes.first() {
            let handler = NodeAgent::new(
                cluster.kube.clone(),
                agent.name.clone(),
                agent.vhost,
                cluster.dp.clone(),
            )
            .exec_handler();
            cluster.sim.set_exec_handler(handler);
        }
        match cluster.wait_nodes_ready(Duration::from_secs(10)).await {
            Ok(()) => Ok(cluster),
            Err(e) => {
                cluster.shutdown().await;
                Err(e)
            }
        }
    }

    fn start_node_agent(&mut self, name: &str, vhost: Ipv4Addr) {
        let agent = NodeAgent::new(self.kube.clone(), name.to_owned(), vhost, self.dp.clone());
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(agent.run(async move {
            let _ = stopped.await;
        }));
        self.nodes.push(NodeRuntime {
            name: name.to_owned(),
            vhost,
            stop: Some(stop),
            task,
        });
    }

    async fn wait_nodes_ready(&self, timeout: Duration) -> Result<(), SimError> {
        let start = Instant::now();
        let nodes: Api<Node> = Api::all(self.kube.clone());
        loop {
            if let Some(dead) = self.died() {
                return Err(dead);
            }
            let list =
                nodes
                    .list(&ListParams::default())
                    .await
                    .map_err(|source| SimError::Kube {
                        doing: "listing nodes",
                        source,
                    })?;
            let ready = list
                .items
                .iter()
                .filter(|n| {
                    n.status
                        .as_ref()
                        .and_then(|s| s.conditions.as_ref())
                        .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
                })
                .count();
            if ready >= self.nodes.len() {
                let rv = list
                    .items
                    .iter()
                    .filter_map(|n| n.metadata.resource_version.as_deref()?.parse::<u64>().ok())
                    .max()
                    .unwrap_or(0);
                let left = timeout.saturating_sub(start.elapsed());
                return self.converge_control_plane(rv, left).await.map(|_| ());
            }
            if start.elapsed() > timeout {
                return Err(SimError::NotConverged {
                    timeout,
                    state: format!("{ready} of {} nodes Ready", self.nodes.len()),
                });
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }

    /// An admin kube-rs client over HTTP.
    pub fn kube(&self) -> kube::Client {
        self.kube.clone()
    }

    /// A kube-rs client over HTTP presenting `token` (see [`SimCluster::kube_sim`] to register
    /// tokens).
    pub fn kube_url(&self) -> String {
        format!("http://{}", self.kube_addr)
    }

    /// The kube-sim server (tokens, authorizer, store).
    pub fn kube_sim(&self) -> &KubeSim {
        &self.sim
    }

    /// A kubeconfig for kubectl.
    pub fn kubeconfig_yaml(&self) -> String {
        harness_kube_sim::kubeconfig_yaml(&self.kube_url(), self.sim.admin_token())
    }

    /// The VNC API client, as the cloud admin.
    pub fn vnc(&self) -> &VncClient {
        &self.vnc
    }

    /// `http://127.0.0.1:PORT` of the VNC API.
    pub fn vnc_url(&self) -> String {
        format!("http://{}", self.vnc_addr)
    }

    /// The config database behind the VNC API.
    pub fn config_db(&self) -> &ConfigDb {
        &self.db
    }

    /// The settings the cluster runs with.
    pub fn spec(&self) -> &SimSpec {
        &self.spec
    }

    /// Node names and vhost addresses.
    pub fn nodes(&self) -> Vec<(String, Ipv4Addr)> {
        self.nodes
            .iter()
            .map(|n| (n.name.clone(), n.vhost))
            .collect()
    }

    /// The model dataplane behind the probe interface.
    pub fn dataplane(&self) -> ModelDataplane {
        ModelDataplane {
            dp: self.dp.clone(),
        }
    }

    /// The model dataplane itself (for tests and benchmarks).
    pub fn model(&self) -> Arc<Mutex<Dataplane>> {
        self.dp.clone()
    }

    /// Gives a service instance its forwarding function in the dataplane: an endpoint named
    /// `name` (what `path.via` lists) on `node` with the left and right interfaces, dropping
    /// what `function` drops and forwarding the rest (the software of the instance pod).
    pub fn attach_service_instance(
        &self,
        name: &str,
        interfaces: Vec<String>,
        node: &str,
        function: &harness_scenario::ServiceFunction,
    ) {
        lock(&self.dp).attach_endpoint(harness_vrouter_sim::EndpointSpec {
            name: name.to_owned(),
            interfaces,
            node: Some(node.to_owned()),
            ports: Vec::new(),
            function: Some(function.clone()),
        });
    }

    /// The kube-manager emulation's status.
    pub fn kube_manager_status(&self) -> Option<KubeManagerStatus> {
        self.km.as_ref().map(|k| k.handle().status())
    }

    /// A fingerprint of every state a probe's verdict can depend on — the Kubernetes store's
    /// revision, the config database's change sequence, what the vrouters have read, and
    /// kube-manager's progress — or `None` while the cluster is not settled (kube-manager
    /// not converged, vrouters behind the config database, a component stopped). Two equal
    /// stamps mean nothing changed in between, so the model dataplane answers the same
    /// (up to ECMP's choice of backend): the runner stops waiting for cells that cannot
    /// change any more.
    pub fn quiescence_stamp(&self) -> Option<u64> {
        use std::hash::{Hash, Hasher};
        if self.died().is_some() {
            return None;
        }
        let km = self.km.as_ref()?.handle().status();
        if !km.converged {
            return None;
        }
        let db_seq = self.db.current_seq();
        let dp_seq = lock(&self.dp).snapshot().seq;
        if dp_seq < db_seq {
            return None;
        }
        let mut h = std::collections::hash_map::DefaultHasher::new();
        (
            self.sim.store().revision(),
            db_seq,
            dp_seq,
            km.events,
            km.passes,
            km.writes,
        )
            .hash(&mut h);
        Some(h.finish())
    }

    /// A component that stopped although nobody asked it to, as an error.
    pub fn died(&self) -> Option<SimError> {
        if self.follower.as_ref().is_some_and(JoinHandle::is_finished) {
            return Some(SimError::Died {
                component: "vrouter agent (config follower)".into(),
                message: "the change stream of the config database ended".into(),
            });
        }
        for n in &self.nodes {
            if n.task.is_finished() {
                return Some(SimError::Died {
                    component: format!("node agent {}", n.name),
                    message: "it stopped (registration or its watch failed)".into(),
                });
            }
        }
        None
    }

    /// Waits until kube-manager processed the Kubernetes state at or after `rv` and is
    /// converged, and the vrouters have read every config change it wrote.
    async fn converge_control_plane(
        &self,
        rv: u64,
        timeout: Duration,
    ) -> Result<KubeManagerStatus, SimError> {
        let start = Instant::now();
        let Some(km) = &self.km else {
            return Err(SimError::Died {
                component: "kube-manager".into(),
                message: "not running".into(),
            });
        };
        let status = km
            .handle()
            .wait_converged_after(rv, timeout)
            .await
            .map_err(|e| SimError::NotConverged {
                timeout,
                state: format!(
                    "{e}; translation errors: {}",
                    describe_errors(&km.handle().status())
                ),
            })?;
        loop {
            let want = self.db.current_seq();
            if lock(&self.dp).snapshot().seq >= want {
                return Ok(status);
            }
            if start.elapsed() > timeout {
                return Err(SimError::NotConverged {
                    timeout,
                    state: format!(
                        "the vrouters read config change {} of {want}",
                        lock(&self.dp).snapshot().seq
                    ),
                });
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }

    /// Waits until the cluster reflects every Kubernetes write so far: kube-manager converged
    /// on it, the vrouters programmed, every pod Running with an IP, and nothing changed
    /// meanwhile. Returns kube-manager's status (its translation errors are not failures
    /// here: checks judge them).
    ///
    /// # Errors
    ///
    /// [`SimError::NotConverged`] with the last observed state (pods not ready, kube-manager
    /// progress, translation errors); [`SimError::Died`] when a component stopped.
    pub async fn converge(&self, timeout: Duration) -> Result<KubeManagerStatus, SimError> {
        let start = Instant::now();
        let pods: Api<Pod> = Api::all(self.kube.clone());
        let mut last_pending: Vec<String> = Vec::new();
        loop {
            if let Some(dead) = self.died() {
                return Err(dead);
            }
            let rv = match self.watched_resource_version().await {
                Ok(rv) => rv,
                // A restarted API server, a cut connection: retry until the budget is spent.
                Err(_) if start.elapsed() < timeout => {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
                Err(e) => return Err(e),
            };
            let left = timeout.saturating_sub(start.elapsed());
            // The budget can run out in either wait; whichever it is, the error names the
            // whole budget and the pods last seen not ready, which is what a user can act on.
            let status = match self.converge_control_plane(rv, left).await {
                Ok(s) => s,
                Err(SimError::NotConverged { state, .. }) => {
                    let pending = pending_pods(&pods).await.unwrap_or(last_pending);
                    return Err(SimError::NotConverged {
                        timeout,
                        state: format!("{state}; pods not ready: {}", pending_text(&pending)),
                    });
                }
                Err(e) => return Err(e),
            };
            let pending = pending_pods(&pods).await?;
            if pending.is_empty() && self.watched_resource_version().await? == rv {
                return Ok(status);
            }
            if start.elapsed() > timeout {
                return Err(SimError::NotConverged {
                    timeout,
                    state: format!(
                        "pods not ready: {}; translation errors: {}",
                        pending_text(&pending),
                        describe_errors(&status)
                    ),
                });
            }
            last_pending = pending;
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }

    /// The highest resourceVersion among the kinds kube-manager watches.
    async fn watched_resource_version(&self) -> Result<u64, SimError> {
        use k8s_openapi::api::core::v1::{Namespace, Service};
        use k8s_openapi::api::discovery::v1::EndpointSlice;
        use k8s_openapi::api::networking::v1::{Ingress, NetworkPolicy};
        use k8s_openapi::api::rbac::v1::{ClusterRoleBinding, RoleBinding};
        let c = &self.kube;
        let (ns, pods, svcs, slices, nps, ings, rbs, crbs) = tokio::join!(
            max_rv::<Namespace>(c),
            max_rv::<Pod>(c),
            max_rv::<Service>(c),
            max_rv::<EndpointSlice>(c),
            max_rv::<NetworkPolicy>(c),
            max_rv::<Ingress>(c),
            max_rv::<RoleBinding>(c),
            max_rv::<ClusterRoleBinding>(c),
        );
        Ok([ns?, pods?, svcs?, slices?, nps?, ings?, rbs?, crbs?]
            .into_iter()
            .max()
            .unwrap_or(0))
    }

    /// Restarts a component, keeping its store: a node's vrouter (flows dropped, config
    /// re-read), the Contrail API server (same config DB), kube-manager (rebuilds from both
    /// APIs), or the Kubernetes API server (same store, watches cut).
    ///
    /// # Errors
    ///
    /// [`SimError::UnknownNode`] for a vrouter restart on a node that does not exist,
    /// [`SimError::Start`] when a server cannot listen again on its address.
    pub async fn restart(
        &mut self,
        component: Component,
        node: Option<&str>,
    ) -> Result<(), SimError> {
        match component {
            Component::Vrouter => {
                let node = node.unwrap_or("node-1");
                if !self.nodes.iter().any(|n| n.name == node) {
                    return Err(SimError::UnknownNode(node.to_owned()));
                }
                lock(&self.dp)
                    .begin_restart(node)
                    .map_err(|_| SimError::UnknownNode(node.to_owned()))?;
                // The agent is down for a moment; probes crossing it are inconclusive.
                tokio::time::sleep(Duration::from_millis(5)).await;
                lock(&self.dp)
                    .finish_restart_from_db(node, &self.db)
                    .map_err(|_| SimError::UnknownNode(node.to_owned()))?;
            }
            Component::ContrailApi => {
                if let Some(s) = self.vnc_server.take() {
                    let _ = s.shutdown().await;
                }
                self.vnc_server = Some(serve_vnc(self.vnc_addr, &self.db).await?);
            }
            Component::KubeManager => {
                if let Some(km) = self.km.take() {
                    let _ = km.shutdown().await;
                }
                self.km = Some(
                    KubeManager::new(self.kube.clone(), self.vnc.clone(), self.km_config.clone())
                        .spawn(),
                );
            }
            Component::KubeApiserver => {
                if let Some(s) = self.kube_server.take() {
                    s.shutdown().await;
                }
                let s = self
                    .sim
                    .serve(self.kube_addr)
                    .await
                    .map_err(|e| SimError::Start {
                        component: "kube-sim",
                        message: e.to_string(),
                    })?;
                self.kube_server = Some(s);
                // Pooled connections to the old listener fail once; wait until the API
                // answers again before anyone relies on it.
                let nodes: Api<Node> = Api::all(self.kube.clone());
                let start = Instant::now();
                while let Err(e) = nodes.list_metadata(&ListParams::default().limit(1)).await {
                    if start.elapsed() > Duration::from_secs(5) {
                        return Err(SimError::Kube {
                            doing: "waiting for the restarted API server",
                            source: e,
                        });
                    }
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
            }
        }
        Ok(())
    }

    /// Stops every component and waits for them (the explicit, orderly path; dropping the
    /// cluster stops them without waiting).
    pub async fn shutdown(mut self) {
        self.stop_all().await;
    }

    async fn stop_all(&mut self) {
        for n in &mut self.nodes {
            if let Some(s) = n.stop.take() {
                let _ = s.send(());
            }
        }
        for n in self.nodes.drain(..) {
            let _ = n.task.await;
        }
        if let Some(km) = self.km.take() {
            let _ = km.shutdown().await;
        }
        if let Some(f) = self.follower.take() {
            f.abort();
            let _ = f.await;
        }
        if let Some(s) = self.vnc_server.take() {
            let _ = s.shutdown().await;
        }
        if let Some(s) = self.kube_server.take() {
            s.shutdown().await;
        }
    }
}

impl Drop for SimCluster {
    fn drop(&mut self) {
        // The unplanned path (a panic, a cancelled future): stop everything without waiting.
        for n in &mut self.nodes {
            if let Some(s) = n.stop.take() {
                let _ = s.send(());
            }
            n.task.abort();
        }
        if let Some(f) = self.follower.take() {
            f.abort();
        }
        // RunningKubeManager and both RunningServers stop themselves when dropped.
    }
}

/// The highest resourceVersion of the objects of one kind.
async fn max_rv<K>(c: &kube::Client) -> Result<u64, SimError>
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
    K::DynamicType: Default,
{
    let api: Api<K> = Api::all(c.clone());
    let list = api
        .list_metadata(&ListParams::default())
        .await
        .map_err(|source| SimError::Kube {
            doing: "reading resource versions",
            source,
        })?;
    Ok(list
        .items
        .iter()
        .filter_map(|o| o.metadata.resource_version.as_deref()?.parse::<u64>().ok())
        .max()
        .unwrap_or(0))
}

/// `ns/name (state)` of every pod not running (and not being deleted).
async fn pending_pods(pods: &Api<Pod>) -> Result<Vec<String>, SimError> {
    let list = pods
        .list(&ListParams::default())
        .await
        .map_err(|source| SimError::Kube {
            doing: "listing pods",
            source,
        })?;
    Ok(list
        .items
        .iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none() && !pod_running(p))
        .map(|p| {
            format!(
                "{}/{} ({})",
                p.metadata.namespace.as_deref().unwrap_or(""),
                p.metadata.name.as_deref().unwrap_or(""),
                pod_state(p)
            )
        })
        .collect())
}

/// Pods not ready, for an error message.
fn pending_text(pending: &[String]) -> String {
    if pending.is_empty() {
        "none".to_string()
    } else {
        pending.join(", ")
    }
}

fn describe_errors(s: &KubeManagerStatus) -> String {
    if s.translation_errors.is_empty() {
        return "none".into();
    }
    s.translation_errors
        .iter()
        .map(|e| {
            format!(
                "{} {}{}{}: {}",
                e.kind,
                e.namespace,
                if e.namespace.is_empty() { "" } else { "/" },
                e.name,
                e.message
            )
        })
        .collect::<Vec<_>>()
        .join("; ")
}

fn pod_running(p: &Pod) -> bool {
    p.status.as_ref().is_some_and(|s| {
        s.phase.as_deref() == Some("Running")
            && s.pod_ip.as_deref().is_some_and(|ip| !ip.is_empty())
    })
}

fn pod_state(p: &Pod) -> String {
    let Some(s) = &p.status else {
        return "no status".into();
    };
    let scheduled = p.spec.as_ref().and_then(|s| s.node_name.as_deref());
    match (s.phase.as_deref(), scheduled) {
        (_, None) => {
            let why = s
                .conditions
                .iter()
                .flatten()
                .find(|c| c.type_ == "PodScheduled")
                .and_then(|c| c.message.clone())
                .unwrap_or_else(|| "not scheduled".into());
            format!("Pending: {why}")
        }
        (Some(phase), Some(node)) => {
            format!("{phase} on {node}, no IP yet (waiting for its Contrail interface)")
        }
        (None, Some(node)) => format!("bound to {node}, no status yet"),
    }
}

/// The model dataplane of a [`SimCluster`] as a [`ProbeExecutor`].
#[derive(Clone)]
pub struct ModelDataplane {
    dp: Arc<Mutex<Dataplane>>,
}

impl ModelDataplane {
    fn one(dp: &mut Dataplane, r: &ProbeRequest) -> ProbeOutcome {
        let from = match &r.from {
            super::Origin::Pod(p) => EndpointRef::Pod(p.clone()),
            super::Origin::Node(n) => EndpointRef::Node(n.clone()),
            super::Origin::Host(h) => EndpointRef::FabricHost(h.clone()),
            super::Origin::External(e) => EndpointRef::External(e.clone()),
        };
        let opts = ProbeOptions {
            trace: r.trace,
            capture: r.trace,
            ..ProbeOptions::default()
        };
        let obs = match dp.probe_with(&from, r.to, r.protocol, r.port, &opts) {
            Ok(o) => o,
            Err(e) => {
                return ProbeOutcome {
                    observed: Some(Observed::Inconclusive {
                        reason: format!("cannot probe from {}: {e}", r.from),
                    }),
                    ..ProbeOutcome::default()
                };
            }
        };
        let observed = match &obs.verdict {
            Verdict::Connected { backend } => Observed::Allow {
                backend: Some(backend.clone()),
            },
            Verdict::Refused { by } => Observed::Reject { detail: by.clone() },
            Verdict::Dropped { at, reason } => Observed::Drop {
                detail: format!("{at}: {reason}"),
            },
            Verdict::Inconclusive { reason } => Observed::Inconclusive {
                reason: reason.clone(),
            },
        };
        let mut out = ProbeOutcome {
            observed: Some(observed),
            ..ProbeOutcome::default()
        };
        if r.trace {
            out.hops = obs.hops.iter().map(ToString::to_string).collect();
            for h in &obs.hops {
                if h.at == "underlay"
                    && let Some(e) = &h.encapsulation
                {
                    out.underlay_encaps.push(e.clone());
                }
                if let Some(n) = &h.nat {
                    out.nat.push(n.clone());
                }
                for d in &h.decided_by {
                    out.decisions
                        .push(format!("{}: {} {} by {}", h.at, d.gate, d.action, d.rule));
                }
                if let Some(ep) =
                    h.at.strip_prefix("endpoint ")
                        .or_else(|| h.at.strip_prefix("service instance "))
                {
                    out.endpoints.push(ep.to_owned());
                }
            }
            out.pcap = harness_vrouter_sim::write_pcap(&obs.frames, Vec::new()).ok();
        }
        out
    }
}

impl ProbeExecutor for ModelDataplane {
    fn name(&self) -> &'static str {
        "model"
    }

    fn probe_batch(&self, requests: &[ProbeRequest]) -> Vec<ProbeOutcome> {
        let mut dp = lock(&self.dp);
        requests.iter().map(|r| Self::one(&mut dp, r)).collect()
    }
}
