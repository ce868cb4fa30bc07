//! kube-sim: an embedded Kubernetes API server that real clients use as a cluster.
//!
//! It serves the Kubernetes REST API (discovery, OpenAPI v3, CRUD, list/watch, all PATCH
//! flavours, RBAC, exec) from an in-memory store, in process (a tower service for
//! [`kube::Client::new`]) and over TCP on loopback (for kubectl and other clients). It is the
//! control plane of the harness's `sim` provider: contrail-mock watches it as
//! contrail-kube-manager watches kube-apiserver, and the runner applies workloads to it with kube-rs.
//!
//! # Usage
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use harness_kube_sim::{Config, KubeSim};
//! use k8s_openapi::api::core::v1::Pod;
//!
//! let sim = KubeSim::new(Config::default());
//! // In process:
//! let pods: kube::Api<Pod> = kube::Api::namespaced(sim.client(), "default");
//! let _ = pods.list(&Default::default()).await?;
//! // Over TCP, for kubectl:
//! let server = sim.serve("127.0.0.1:0".parse()?).await?;
//! std::fs::write("kubeconfig", server.kubeconfig_yaml())?;
//! server.shutdown().await;
//! # Ok(()) }
//! ```

#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod admission;
mod apiserver;
mod auth;
mod controllers;
mod discovery;
mod exec;
mod http;
mod patch;
mod protobuf;
mod registry;
mod selector;
mod status;
mod store;
mod table;
mod typed;
mod util;

use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use serde_json::{Value, json};

pub use auth::{
    Attributes, Decision, SUPERUSER_GROUP, StaticToken, UserInfo, authorize, forbidden_message,
    rule_allows,
};
pub use exec::{
    ExecError, ExecFuture, ExecHandler, ExecIo, ExecRequest, NO_DATAPLANE_MESSAGE, NoDataplane,
};
pub use registry::{GroupResource, ResourceType};
pub use store::{EventType, Store, StoreEvent};

/// The Kubernetes version kube-sim reports at `/version`.
pub const SERVER_VERSION: &str = "v1.33.0";

/// The user name of the admin identity.
pub const ADMIN_USER: &str = "kube-sim-admin";

/// Largest request body accepted (like kube-apiserver's 3 MiB limit).
pub const MAX_REQUEST_BYTES: usize = 3 * 1024 * 1024;

/// Errors of starting, serving and configuring kube-sim.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// kube-sim only listens on loopback addresses.
    #[error(
        "kube-sim listens on loopback only, but {addr} is not a loopback address; use 127.0.0.1:PORT or [::1]:PORT"
    )]
    NotLoopback {
        /// The refused address.
        addr: SocketAddr,
    },
    /// The listening socket could not be bound.
    #[error("failed to listen on {addr}: {source}; pick a free port (or 0 for any)")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The kubeconfig could not be written.
    #[error("failed to write the kubeconfig to {}: {source}; check that the directory exists and is writable", path.display())]
    WriteKubeconfig {
        /// Where.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// A static token file line is malformed.
    #[error("static token file line {line}: {reason}")]
    TokenFile {
        /// 1-based line number.
        line: usize,
        /// What is wrong.
        reason: String,
    },
}

/// Settings of a kube-sim instance.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Config {
    /// Service ClusterIP range (default `10.96.0.0/12`); the first address goes to `default/kubernetes`.
    pub service_cidr: ipnet::Ipv4Net,
    /// NodePort range (default 30000-32767).
    pub node_port_range: std::ops::RangeInclusive<u16>,
    /// Bearer tokens of non-admin users (like `--token-auth-file`).
    pub tokens: Vec<StaticToken>,
    /// The admin bearer token (user [`ADMIN_USER`], group `system:masters`). Random by default.
    pub admin_token: String,
    /// How many change events are kept for watch replay (default 2048); older resourceVersions get 410 Gone.
    pub watch_history: usize,
    /// How often watches with `allowWatchBookmarks=true` receive a BOOKMARK.
    pub bookmark_interval: Duration,
    /// Request body limit (default 3 MiB); larger bodies get 413.
    pub max_request_bytes: usize,
    /// Who requests without credentials are (default [`Unauthenticated::Admin`]).
    pub unauthenticated: Unauthenticated,
}

/// The identity of requests that carry no `Authorization` header.
///
/// kubectl and client-go never send credentials to a plain `http://` server (they only read a
/// kubeconfig's user when the transport is TLS), so with [`Unauthenticated::Admin`] kube-sim
/// treats such requests like kube-apiserver's former insecure port did: as the admin. RBAC is
/// still exercised through bearer tokens (kube-rs sends them over HTTP), impersonation
/// (`kubectl --as`), and SubjectAccessReviews.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Unauthenticated {
    /// Requests without credentials act as the admin ([`ADMIN_USER`], `system:masters`).
    #[default]
    Admin,
    /// Requests without credentials are `system:anonymous` in `system:unauthenticated`, subject to RBAC.
    Anonymous,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            service_cidr: "10.96.0.0/12".parse().unwrap_or_default(),
            node_port_range: 30000..=32767,
            tokens: Vec::new(),
            admin_token: format!("kube-sim-{}", util::new_uid().replace('-', "")),
            watch_history: 2048,
            bookmark_interval: Duration::from_secs(1),
            max_request_bytes: MAX_REQUEST_BYTES,
            unauthenticated: Unauthenticated::Admin,
        }
    }
}

impl Config {
    /// Adds a bearer token for `user` in `groups`.
    pub fn with_token(mut self, token: &str, user: &str, groups: &[&str]) -> Self {
        self.tokens.push(StaticToken::new(token, user, groups));
        self
    }

    /// Sets the admin token.
    pub fn with_admin_token(mut self, token: &str) -> Self {
        self.admin_token = token.to_string();
        self
    }

    /// Sets the watch history size.
    pub fn with_watch_history(mut self, events: usize) -> Self {
        self.watch_history = events;
        self
    }

    /// Sets the bookmark interval.
    pub fn with_bookmark_interval(mut self, every: Duration) -> Self {
        self.bookmark_interval = every;
        self
    }

    /// Sets who requests without credentials are.
    pub fn with_unauthenticated(mut self, who: Unauthenticated) -> Self {
        self.unauthenticated = who;
        self
    }

    /// Sets the Service CIDR.
    pub fn with_service_cidr(mut self, cidr: ipnet::Ipv4Net) -> Self {
        self.service_cidr = cidr;
        self
    }
}

pub(crate) fn admin_user() -> UserInfo {
    UserInfo {
        name: ADMIN_USER.into(),
        uid: ADMIN_USER.into(),
        groups: vec![SUPERUSER_GROUP.into(), "system:authenticated".into()],
        extra: Default::default(),
    }
}

/// An embedded Kubernetes API server. Cheap to clone (all clones share one store).
#[derive(Clone)]
pub struct KubeSim {
    shared: Arc<apiserver::Shared>,
}

impl std::fmt::Debug for KubeSim {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KubeSim")
            .field("revision", &self.shared.store.revision())
            .finish_non_exhaustive()
    }
}

impl KubeSim {
    /// Creates a server with the bootstrap objects kube-apiserver creates: namespaces `default`,
    /// `kube-system`, `kube-public`, `kube-node-lease`, the `default/kubernetes` Service, and the
    /// bootstrap RBAC roles and bindings (`cluster-admin`, `admin`, `edit`, `view`, `system:*`).
    ///
    /// # Caveats
    /// The controllers (namespace lifecycle, endpoints, scheduler, role aggregation) start on the
    /// Tokio runtime of the first request, [`KubeSim::router`], [`KubeSim::client`] or [`KubeSim::serve`].
    pub fn new(config: Config) -> Self {
        let policy = admission::Policy {
            service_cidr: config.service_cidr,
            node_ports: config.node_port_range.clone(),
        };
        let shared = Arc::new(apiserver::Shared {
            store: Store::new(config.watch_history),
            config,
            policy,
            registry: RwLock::new(registry::Registry::builtin()),
            exec: RwLock::new(Arc::new(NoDataplane)),
            controllers_started: std::sync::atomic::AtomicBool::new(false),
        });
        let sim = KubeSim { shared };
        sim.bootstrap();
        sim
    }

    fn bootstrap(&self) {
        let s = &self.shared;
        let opts = apiserver::WriteOptions {
            field_manager: "kube-apiserver".into(),
            user: admin_user(),
            ..Default::default()
        };
        let create = |g: &str, plural: &str, ns: &str, obj: Value| {
            if let Some(rt) = s.lookup(g, "v1", plural) {
                // Bootstrap objects are well-formed; a failure here would be a bug we cannot act on.
                let _ = s.create(&rt, "v1", ns, obj, &opts);
            }
        };
        for ns in ["default", "kube-system", "kube-public", "kube-node-lease"] {
            create("", "namespaces", "", json!({"metadata": {"name": ns}}));
        }
        let first_ip =
            std::net::Ipv4Addr::from(u32::from(s.config.service_cidr.network()).wrapping_add(1));
        create(
            "",
            "services",
            "default",
            json!({"metadata": {"name": "kubernetes", "labels": {"component": "apiserver", "provider": "kubernetes"}},
                "spec": {"clusterIP": first_ip.to_string(), "ports": [{"name": "https", "port": 443, "protocol": "TCP", "targetPort": 6443}], "sessionAffinity": "None", "type": "ClusterIP"}}),
        );
        let (roles, bindings) = auth::bootstrap_rbac();
        for r in roles {
            create("rbac.authorization.k8s.io", "clusterroles", "", r);
        }
        for b in bindings {
            create("rbac.authorization.k8s.io", "clusterrolebindings", "", b);
        }
    }

    /// The API as an axum router (in-process use, or serve it yourself).
    ///
    /// Requests are authenticated by their bearer token; requests without one are treated as
    /// [`Config::unauthenticated`] says (the admin by default).
    pub fn router(&self) -> axum::Router {
        controllers::ensure_started(&self.shared);
        http::router(self.shared.clone())
    }

    /// An in-process admin [`kube::Client`] (no socket), default namespace `default`.
    ///
    /// # Caveats
    /// WebSocket subresources (`pods/exec`) need a real connection: use [`KubeSim::serve`] and a
    /// client built from [`RunningServer::url`] for those.
    pub fn client(&self) -> kube::Client {
        self.client_with_token(&self.shared.config.admin_token)
    }

    /// An in-process client authenticating with `token` (see [`Config::with_token`]).
    pub fn client_with_token(&self, token: &str) -> kube::Client {
        let value = ::http::HeaderValue::from_str(&format!("Bearer {token}"))
            .unwrap_or_else(|_| ::http::HeaderValue::from_static("Bearer invalid"));
        let service = tower::ServiceBuilder::new()
            .map_request(move |mut req: ::http::Request<kube::client::Body>| {
                req.headers_mut()
                    .insert(::http::header::AUTHORIZATION, value.clone());
                req
            })
            .service(self.router());
        kube::Client::new(service, "default")
    }

    /// The admin bearer token.
    pub fn admin_token(&self) -> &str {
        &self.shared.config.admin_token
    }

    /// The configuration.
    pub fn config(&self) -> &Config {
        &self.shared.config
    }

    /// The object store (for controllers and tests that inspect or compact it).
    pub fn store(&self) -> Store {
        self.shared.store.clone()
    }

    /// Routes `pods/exec` to `handler` from now on (the sim dataplane attaches here).
    pub fn set_exec_handler(&self, handler: Arc<dyn ExecHandler>) {
        self.shared.set_exec_handler(handler);
    }

    /// Decides a request with the RBAC authorizer over the current roles and bindings.
    pub fn authorize(&self, attributes: &Attributes) -> Decision {
        auth::authorize(&self.shared.store, attributes)
    }

    /// Serves the API over plain HTTP on a loopback address until [`RunningServer::shutdown`].
    ///
    /// Serving again on the same address after a shutdown is a restart: the store (objects,
    /// resourceVersions, watch history) is kept, as etcd would keep it.
    ///
    /// # Errors
    /// [`Error::NotLoopback`] for non-loopback addresses; [`Error::Bind`] when the port is taken.
    pub async fn serve(&self, addr: SocketAddr) -> Result<RunningServer, Error> {
        if !addr.ip().is_loopback() {
            return Err(Error::NotLoopback { addr });
        }
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|source| Error::Bind { addr, source })?;
        let local = listener
            .local_addr()
            .map_err(|source| Error::Bind { addr, source })?;
        let router = self.router();
        let (stop_tx, mut stop_rx) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let mut conns = tokio::task::JoinSet::new();
            loop {
                tokio::select! {
                    _ = &mut stop_rx => break,
                    accepted = listener.accept() => match accepted {
                        Ok((stream, _)) => {
                            let _ = stream.set_nodelay(true);
                            let svc = hyper_util::service::TowerToHyperService::new(router.clone());
                            conns.spawn(async move {
                                let _ = hyper::server::conn::http1::Builder::new()
                                    .serve_connection(hyper_util::rt::TokioIo::new(stream), svc)
                                    .with_upgrades()
                                    .await;
                            });
                        }
                        Err(_) => tokio::time::sleep(Duration::from_millis(5)).await,
                    },
                    Some(_) = conns.join_next(), if !conns.is_empty() => {}
                }
            }
            drop(listener);
            // Like a stopped kube-apiserver: open connections (and watches) are cut.
            conns.abort_all();
            while conns.join_next().await.is_some() {}
        });
        Ok(RunningServer {
            addr: local,
            token: self.shared.config.admin_token.clone(),
            stop: Some(stop_tx),
            task: Some(task),
        })
    }
}

/// A kube-sim listening on TCP. Dropping it stops the server too (without waiting).
#[derive(Debug)]
pub struct RunningServer {
    addr: SocketAddr,
    token: String,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl RunningServer {
    /// The bound address (the real port when 0 was asked for).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// A kubeconfig with the admin token for this server.
    pub fn kubeconfig_yaml(&self) -> String {
        kubeconfig_yaml(&self.url(), &self.token)
    }

    /// Stops listening and cuts open connections; returns when the port is free again.
    pub async fn shutdown(mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.task.take() {
            let _ = t.await;
        }
    }
}

impl Drop for RunningServer {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
    }
}

/// A kubeconfig (context `kube-sim`, namespace `default`) that kubectl and kube-rs accept.
pub fn kubeconfig_yaml(url: &str, token: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: kube-sim\n  cluster:\n    server: {url}\ncontexts:\n- name: kube-sim\n  context:\n    cluster: kube-sim\n    user: {ADMIN_USER}\n    namespace: default\ncurrent-context: kube-sim\npreferences: {{}}\nusers:\n- name: {ADMIN_USER}\n  user:\n    token: {token}\n"
    )
}

/// Serves kube-sim on `listen`, writes an admin kubeconfig to `kubeconfig`, and returns when
/// `shutdown` completes (the `harness kube-sim --listen --kubeconfig` verb).
///
/// # Errors
/// [`Error::NotLoopback`], [`Error::Bind`], or [`Error::WriteKubeconfig`].
///
/// # Usage
/// ```no_run
/// # async fn demo() -> Result<(), harness_kube_sim::Error> {
/// let listen = "127.0.0.1:6443".parse().expect("address");
/// let (_stop, stopped) = tokio::sync::oneshot::channel::<()>();
/// harness_kube_sim::run_standalone(listen, std::path::Path::new("kubeconfig"), async {
///     let _ = stopped.await; // e.g. resolved by a Ctrl-C handler
/// })
/// .await
/// # }
/// ```
pub async fn run_standalone(
    listen: SocketAddr,
    kubeconfig: &Path,
    shutdown: impl Future<Output = ()>,
) -> Result<(), Error> {
    run_standalone_with(Config::default(), listen, kubeconfig, shutdown).await
}

/// [`run_standalone`] with a custom [`Config`] (tokens from a token file, service CIDR, ...).
///
/// # Errors
/// [`Error::NotLoopback`], [`Error::Bind`], or [`Error::WriteKubeconfig`].
pub async fn run_standalone_with(
    config: Config,
    listen: SocketAddr,
    kubeconfig: &Path,
    shutdown: impl Future<Output = ()>,
) -> Result<(), Error> {
    let sim = KubeSim::new(config);
    let server = sim.serve(listen).await?;
    std::fs::write(kubeconfig, server.kubeconfig_yaml()).map_err(|source| {
        Error::WriteKubeconfig {
            path: kubeconfig.to_path_buf(),
            source,
        }
    })?;
    shutdown.await;
    server.shutdown().await;
    Ok(())
}
