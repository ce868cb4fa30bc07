//! kube-manager emulation: watches the Kubernetes API with kube-rs and maintains the Contrail
//! objects contrail-kube-manager (and, for service load balancers, svc-monitor's native
//! driver) would, with the real names: cluster provisioning, namespaces, pods, services,
//! ingresses, NetworkPolicies, RBAC.
//!
//! One task applies the watch events in order to a cache, recomputes the *units* they touch
//! (one namespace, one pod, ...) into desired Contrail objects, and writes the difference to
//! the VNC API ([`VncApi`]: the in-process [`crate::ConfigDb`] or any server over HTTP). On
//! start it loads its own objects from the database (annotated `owner=k8s`,
//! `cluster=<name>`) and, once every watch has listed, reconciles everything: a restart
//! rebuilds its state from both APIs and leaves no duplicates or strays.
//!
//! Profiles (`r5.0`, `upstream`) and faults change what is written; see the crate README
//! for the NetworkPolicy arrangements and the conventions a vrouter must honour.
//!
//! # Usage
//! ```no_run
//! # async fn demo(client: kube::Client) -> Result<(), Box<dyn std::error::Error>> {
//! use harness_contrail_mock::ConfigDb;
//! use harness_contrail_mock::kube_manager::{KubeManager, KubeManagerConfig};
//! let db = ConfigDb::new();
//! let km = KubeManager::new(client, db.clone(), KubeManagerConfig::default()).spawn();
//! km.handle().wait_converged(std::time::Duration::from_secs(5)).await?;
//! km.shutdown().await?;
//! # Ok(()) }
//! ```

mod backend;
mod config;
mod engine;
mod k8s;
mod manager;
mod naming;
mod netpol;
mod rbac_map;
mod selector;
mod units;

use std::collections::BTreeMap;
use std::future::Future;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use harness_scenario::{ContrailSettings, MockFault, Profile};
use kube::Client;
use serde::Serialize;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinSet;

pub use backend::{ApiError, VncApi};
pub use config::KubeManagerConfig;
pub use rbac_map::{RbacMapping, group_role, subject_roles, user_role};

use manager::Manager;

use crate::db::ConfigDb;
use crate::server::{ServeError, ServerConfig, serve};

/// Something kube-manager could not turn into Contrail objects.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TranslationError {
    /// Kubernetes kind (`NetworkPolicy`, `Pod`, `Service`, ...).
    pub kind: String,
    /// Namespace (empty for cluster-scoped objects).
    pub namespace: String,
    /// Name.
    pub name: String,
    /// What went wrong and what kube-manager then does.
    pub message: String,
    /// The r5.0 deviation this is (`sctp-unsupported`), if any.
    pub deviation: Option<String>,
    /// The injected fault this comes from, if any.
    pub fault: Option<MockFault>,
}

/// A snapshot of the emulation's progress.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct KubeManagerStatus {
    /// Semantics profile.
    pub profile: Profile,
    /// Injected faults.
    pub faults: Vec<MockFault>,
    /// Every watch has completed its initial list.
    pub synced: bool,
    /// Synced, every event processed, every write done, and no event for the settle time.
    pub converged: bool,
    /// Watch events processed.
    pub events: u64,
    /// Reconcile passes.
    pub passes: u64,
    /// VNC writes done.
    pub writes: u64,
    /// Objects kube-manager owns in the config database.
    pub owned_objects: usize,
    /// Last processed resourceVersion per kind.
    pub resource_versions: BTreeMap<String, u64>,
    /// The highest of them.
    pub last_resource_version: u64,
    /// Objects that could not be translated or written.
    pub translation_errors: Vec<TranslationError>,
    /// Watch failures (they retry with backoff), most recent last (at most 16).
    pub watch_errors: Vec<String>,
}

/// The emulation did not converge in time.
#[derive(Debug, Clone, thiserror::Error)]
#[error(
    "kube-manager did not converge within {timeout:?} (synced: {synced}, events: {events}, last resourceVersion: {last_resource_version}); check translation_errors and watch_errors in its status"
)]
pub struct NotConverged {
    /// The timeout.
    pub timeout: Duration,
    /// Whether the watches had listed.
    pub synced: bool,
    /// Events processed.
    pub events: u64,
    /// Last resourceVersion processed.
    pub last_resource_version: u64,
}

/// Why the emulation stopped.
#[derive(Debug, thiserror::Error)]
pub enum KubeManagerError {
    /// Its own objects could not be read from the config database at start.
    #[error("kube-manager could not read its objects from the VNC API: {0}")]
    Seed(#[source] ApiError),
    /// The task running it failed.
    #[error("kube-manager task failed: {0}")]
    Task(String),
}

/// Observes a running emulation.
#[derive(Debug, Clone)]
pub struct KubeManagerHandle {
    rx: watch::Receiver<KubeManagerStatus>,
}

impl KubeManagerHandle {
    /// The current status.
    pub fn status(&self) -> KubeManagerStatus {
        self.rx.borrow().clone()
    }

    /// A receiver notified on every status change.
    pub fn subscribe(&self) -> watch::Receiver<KubeManagerStatus> {
        self.rx.clone()
    }

    /// Waits until the emulation is converged.
    ///
    /// # Caveats
    /// Right after a write to the Kubernetes API the status may still say converged (the
    /// event is on its way): use [`KubeManagerHandle::wait_converged_after`] with the
    /// resourceVersion the write returned.
    ///
    /// # Errors
    /// [`NotConverged`] after `timeout`.
    pub async fn wait_converged(
        &self,
        timeout: Duration,
    ) -> Result<KubeManagerStatus, NotConverged> {
        self.wait_converged_after(0, timeout).await
    }

    /// Waits until the emulation has processed an event at or after `resource_version` and
    /// is converged.
    ///
    /// # Errors
    /// [`NotConverged`] after `timeout`.
    pub async fn wait_converged_after(
        &self,
        resource_version: u64,
        timeout: Duration,
    ) -> Result<KubeManagerStatus, NotConverged> {
        let mut rx = self.rx.clone();
        let done = tokio::time::timeout(
            timeout,
            rx.wait_for(|s| s.converged && s.last_resource_version >= resource_version),
        )
        .await;
        match done {
            Ok(Ok(s)) => Ok(s.clone()),
            _ => {
                let s = self.status();
                Err(NotConverged {
                    timeout,
                    synced: s.synced,
                    events: s.events,
                    last_resource_version: s.last_resource_version,
                })
            }
        }
    }
}

/// The kube-manager emulation, before it runs.
pub struct KubeManager<A: VncApi> {
    client: Client,
    api: A,
    config: KubeManagerConfig,
    status: Arc<watch::Sender<KubeManagerStatus>>,
}

impl<A: VncApi> std::fmt::Debug for KubeManager<A> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KubeManager")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

/// A spawned emulation.
#[derive(Debug)]
pub struct RunningKubeManager {
    handle: KubeManagerHandle,
    stop: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<Result<(), KubeManagerError>>,
}

impl Drop for RunningKubeManager {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
    }
}

impl RunningKubeManager {
    /// Its handle.
    pub fn handle(&self) -> &KubeManagerHandle {
        &self.handle
    }

    /// Stops it (the objects stay in the database, as a stopped kube-manager leaves them).
    ///
    /// # Errors
    /// What the run ended with.
    pub async fn shutdown(mut self) -> Result<(), KubeManagerError> {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        match (&mut self.task).await {
            Ok(r) => r,
            Err(e) => Err(KubeManagerError::Task(e.to_string())),
        }
    }
}

impl<A: VncApi> KubeManager<A> {
    /// An emulation watching `client`'s cluster and writing to `api`.
    ///
    /// The `service-chain-bypassed` fault is a property of the VNC API (the network-policies
    /// the runner writes lose `apply_service`); it is set here when `api` supports it (the
    /// in-process [`ConfigDb`] does) and reported as a translation error otherwise.
    pub fn new(client: Client, api: A, config: KubeManagerConfig) -> Self {
        let (tx, _) = watch::channel(KubeManagerStatus {
            profile: config.profile,
            faults: config.faults.iter().copied().collect(),
            ..KubeManagerStatus::default()
        });
        KubeManager {
            client,
            api,
            config,
            status: Arc::new(tx),
        }
    }

    /// A handle to observe it.
    pub fn handle(&self) -> KubeManagerHandle {
        KubeManagerHandle {
            rx: self.status.subscribe(),
        }
    }

    /// Runs it on the current runtime until [`RunningKubeManager::shutdown`].
    pub fn spawn(self) -> RunningKubeManager {
        let handle = self.handle();
        let (tx, rx) = oneshot::channel::<()>();
        let task = tokio::spawn(self.run(async move {
            let _ = rx.await;
        }));
        RunningKubeManager {
            handle,
            stop: Some(tx),
            task,
        }
    }

    /// Runs until `shutdown` completes.
    ///
    /// # Errors
    /// [`KubeManagerError::Seed`] when the VNC API refuses to list its objects at start (an
    /// unreachable API is retried until `shutdown`).
    pub async fn run(
        self,
        shutdown: impl Future<Output = ()> + Send,
    ) -> Result<(), KubeManagerError> {
        let KubeManager {
            client,
            api,
            config,
            status,
        } = self;
        let bypass_ok =
            !config.has(MockFault::ServiceChainBypassed) || api.bypass_service_chains(true);
        let mut m = Manager::new(config, api, client.clone(), status, bypass_ok);
        let (tx, mut rx) = mpsc::unbounded_channel();
        let mut watchers = JoinSet::new();
        k8s::spawn_watchers(&client, &tx, &mut watchers);
        drop(tx);
        let mut shutdown = std::pin::pin!(shutdown);
        loop {
            match m.engine.seed(&m.api).await {
                Ok(_) => break,
                Err(e) if e.is_transient() => {
                    tokio::select! {
                        () = &mut shutdown => return Ok(()),
                        () = tokio::time::sleep(Duration::from_millis(200)) => {}
                    }
                }
                Err(e) => return Err(KubeManagerError::Seed(e)),
            }
        }
        m.seed_np_order();
        m.publish();
        loop {
            let wake = m.next_wake();
            tokio::select! {
                biased;
                () = &mut shutdown => break,
                ev = rx.recv() => match ev {
                    Some(ev) => {
                        m.handle(ev);
                        // Take what else is queued (yielding lets in-process watchers deliver
                        // the rest of a burst), so one pass covers it.
                        for _ in 0..32 {
                            let mut got = false;
                            while let Ok(ev) = rx.try_recv() {
                                m.handle(ev);
                                got = true;
                            }
                            if !got {
                                break;
                            }
                            tokio::task::yield_now().await;
                        }
                    }
                    None => break,
                },
                () = sleep_until(wake) => {}
            }
            m.step().await;
        }
        watchers.abort_all();
        Ok(())
    }
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(t) => tokio::time::sleep_until(tokio::time::Instant::from_std(t)).await,
        None => std::future::pending().await,
    }
}

/// Why [`run_standalone_with_kube_manager`] failed.
#[derive(Debug, thiserror::Error)]
pub enum StandaloneError {
    /// The VNC API server could not start.
    #[error(transparent)]
    Serve(#[from] ServeError),
    /// The kubeconfig could not be used.
    #[error("cannot use kubeconfig {path}: {message}")]
    Kubeconfig {
        /// The file.
        path: String,
        /// Why.
        message: String,
    },
    /// The emulation failed.
    #[error(transparent)]
    KubeManager(#[from] KubeManagerError),
}

/// A kube-rs client from a kubeconfig file (plain HTTP is enough for loopback servers).
///
/// # Errors
/// [`StandaloneError::Kubeconfig`] when the file cannot be read or used.
pub async fn client_from_kubeconfig(path: &Path) -> Result<Client, StandaloneError> {
    let err = |message: String| StandaloneError::Kubeconfig {
        path: path.display().to_string(),
        message,
    };
    let kc = kube::config::Kubeconfig::read_from(path).map_err(|e| err(e.to_string()))?;
    let cfg = kube::Config::from_custom_kubeconfig(kc, &kube::config::KubeConfigOptions::default())
        .await
        .map_err(|e| err(e.to_string()))?;
    Client::try_from(cfg).map_err(|e| err(e.to_string()))
}

/// `harness contrail-mock [--kubeconfig FILE] [--contrail-profile P] --listen ADDR`: serves
/// the VNC API on `listen` and, with a kubeconfig, runs the kube-manager emulation against
/// that cluster with `settings` (profile, faults, subnets), until `shutdown` completes.
///
/// # Errors
/// [`StandaloneError`].
pub async fn run_standalone_with_kube_manager(
    listen: SocketAddr,
    kubeconfig: Option<&Path>,
    settings: &ContrailSettings,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), StandaloneError> {
    run_standalone_with_kube_manager_config(
        listen,
        kubeconfig,
        settings,
        ServerConfig::default(),
        shutdown,
    )
    .await
}

/// [`run_standalone_with_kube_manager`] with server settings (e.g. RBAC).
///
/// # Errors
/// [`StandaloneError`].
pub async fn run_standalone_with_kube_manager_config(
    listen: SocketAddr,
    kubeconfig: Option<&Path>,
    settings: &ContrailSettings,
    server_config: ServerConfig,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), StandaloneError> {
    let db = ConfigDb::new();
    if settings.faults.contains(&MockFault::ServiceChainBypassed) {
        db.set_service_chain_bypass(true);
    }
    let server = serve(listen, db.clone(), server_config).await?;
    let km = match kubeconfig {
        Some(path) => {
            let client = client_from_kubeconfig(path).await?;
            Some(KubeManager::new(client, db, KubeManagerConfig::from_settings(settings)).spawn())
        }
        None => None,
    };
    shutdown.await;
    let result = match km {
        Some(km) => km.shutdown().await.map_err(StandaloneError::from),
        None => Ok(()),
    };
    server.shutdown().await?;
    result
}
