//! Holding a cluster for `harness up`, and probing it from another process (`harness probe`).
//!
//! [`HeldCluster`] stands the sim cluster up — bare, or with a scenario's resources applied
//! and converged through the same path as a run — and keeps it until it is shut down.
//! [`serve`] answers `POST /probe` on loopback with a [`Prober`], so a `harness probe` in
//! another process can probe the held dataplane; [`probe_remote`] is that client, and
//! [`Endpoints`] is `DIR/endpoints.json`, which tells it where to call.
//!
//! Every query is resolved on the oracle's model of the cluster *as it is then* (objects a
//! person applied with kubectl count), with [`crate::reach::request`] — the function a run
//! resolves cells with — and every answer carries the oracle's expectation for the cell next
//! to the observation and the per-hop trace.
//!
//! # Wire format
//!
//! `POST /probe` with a JSON [`ProbeQuery`] (`{"from": "x/a", "to": "x/b", "port": "TCP/80"}`)
//! answers `200` with a [`ProbeAnswer`], `400` with a [`ProbeError`] for a peer or port the
//! cluster does not have, `503` with a [`ProbeError`] when the cluster cannot be read.
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use std::sync::Arc;
//! use harness_runner::hold::{HeldCluster, ProbeQuery, probe_remote, serve};
//! use harness_runner::provider::sim::SimSpec;
//! let held = HeldCluster::up(&SimSpec::default()).await?;
//! let server = serve("127.0.0.1:0".parse()?, held.prober()).await?;
//! let q = ProbeQuery { from: "node:node-1".into(), to: "node:node-2".into(), port: "ICMP".into(), pcap: false };
//! let answer = probe_remote(&server.url(), &q, std::time::Duration::from_secs(10)).await?;
//! println!("{}", answer.cells[0].observed.as_ref().map_or("-", |o| o.verdict.as_str()));
//! server.shutdown().await;
//! held.shutdown().await;
//! # Ok(()) }
//! ```

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use base64::Engine as _;
use bytes::Bytes;
use harness_oracle::{Cluster, ContrailMapping, Endpoint, Oracle};
use harness_scenario::{LoadedScenario, Peer, PortSpec, Profile};
use http::StatusCode;
use serde::{Deserialize, Serialize};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::expect::Want;
use crate::provider::sim::{SimCluster, SimError, SimSpec};
use crate::provider::{Observed, ProbeExecutor, ProbeOutcome, ProbeRequest};
use crate::run::RunOptions;

/// The state-directory file naming the held cluster's endpoints.
pub const ENDPOINTS_FILE: &str = "endpoints.json";
/// The state-directory file with a kubeconfig for kubectl and kube-rs.
pub const KUBECONFIG_FILE: &str = "kubeconfig";
/// How long a query waits for the cluster to converge before probing it anyway (the answer
/// then says what was still pending).
const QUERY_CONVERGE_BUDGET: Duration = Duration::from_secs(5);
/// Most cells one query may expand to (`*/*` × `*/*` on a large cluster is a run's job).
const MAX_CELLS: usize = 10_000;

/// A scenario's cluster with its resources applied and converged (built by
/// [`crate::run::prepare`]).
pub(crate) struct Prepared {
    pub(crate) cluster: SimCluster,
    pub(crate) spec: SimSpec,
    pub(crate) order: HashMap<String, usize>,
    pub(crate) rbac_mapping: Option<ContrailMapping>,
    pub(crate) cluster_up_ms: u64,
}

/// How long standing up took.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HoldTimings {
    /// The cluster's servers, agents and nodes up and Ready.
    pub cluster_up_ms: u64,
    /// A scenario's resources applied and converged after that (0 without a scenario).
    pub resources_ms: u64,
}

/// A cluster held up for people and scripts (`harness up`): the sim cluster and the
/// [`Prober`] that probes it.
///
/// # Usage
///
/// ```no_run
/// # async fn demo() -> Result<(), String> {
/// use harness_runner::hold::HeldCluster;
/// use harness_runner::run::RunOptions;
/// let loaded = harness_scenario::load::load_file("scenarios/examples/netpol-deny-all-ingress.yaml".as_ref())
///     .map_err(|d| d.to_string())?;
/// let held = HeldCluster::up_scenario(&loaded, "netpol-deny-all-ingress.yaml", &RunOptions::default()).await?;
/// println!("kubectl at {}", held.cluster().kube_url());
/// held.shutdown().await;
/// # Ok(()) }
/// ```
pub struct HeldCluster {
    cluster: Arc<SimCluster>,
    prober: Arc<Prober>,
    timings: HoldTimings,
}

impl std::fmt::Debug for HeldCluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HeldCluster")
            .field("cluster", &self.cluster)
            .field("timings", &self.timings)
            .finish_non_exhaustive()
    }
}

impl HeldCluster {
    /// Stands a bare cluster up (nodes Ready, kube-manager provisioned, vrouters programmed).
    ///
    /// # Errors
    ///
    /// As [`SimCluster::up`].
    pub async fn up(spec: &SimSpec) -> Result<HeldCluster, SimError> {
        let t = Instant::now();
        let cluster = SimCluster::up(spec).await?;
        let timings = HoldTimings {
            cluster_up_ms: t.elapsed().as_millis() as u64,
            resources_ms: 0,
        };
        Ok(Self::hold(
            cluster,
            spec.clone(),
            HashMap::new(),
            None,
            timings,
        ))
    }

    /// Stands `loaded`'s cluster up (its `cluster:` and `contrail:`, with `opts`' profile and
    /// faults) and applies its resources, converged — exactly as `harness run` prepares it —
    /// but runs no steps.
    ///
    /// # Errors
    ///
    /// Why the cluster could not be stood up or the resources not applied or converged
    /// (the same messages as a run's setup error).
    pub async fn up_scenario(
        loaded: &LoadedScenario,
        file_arg: &str,
        opts: &RunOptions,
    ) -> Result<HeldCluster, String> {
        let t = Instant::now();
        let p = crate::run::prepare(loaded, file_arg, opts).await?;
        let total = t.elapsed().as_millis() as u64;
        let timings = HoldTimings {
            cluster_up_ms: p.cluster_up_ms,
            resources_ms: total.saturating_sub(p.cluster_up_ms),
        };
        Ok(Self::hold(
            p.cluster,
            p.spec,
            p.order,
            p.rbac_mapping,
            timings,
        ))
    }

    fn hold(
        cluster: SimCluster,
        spec: SimSpec,
        order: HashMap<String, usize>,
        rbac_mapping: Option<ContrailMapping>,
        timings: HoldTimings,
    ) -> HeldCluster {
        let cluster = Arc::new(cluster);
        let prober = Arc::new(Prober {
            executor: Arc::new(cluster.dataplane()),
            cluster: cluster.clone(),
            order,
            spec,
            rbac_mapping,
        });
        HeldCluster {
            cluster,
            prober,
            timings,
        }
    }

    /// The cluster (URLs, kubeconfig, clients).
    pub fn cluster(&self) -> &SimCluster {
        &self.cluster
    }

    /// What probes it; hand it to [`serve`].
    pub fn prober(&self) -> Arc<Prober> {
        self.prober.clone()
    }

    /// How long standing up took.
    pub fn timings(&self) -> HoldTimings {
        self.timings
    }

    /// Stops every component and waits for them.
    ///
    /// # Caveats
    ///
    /// Stop the probe server ([`ProbeServer::shutdown`]) first: while a [`Prober`] is still
    /// shared, the cluster is stopped without waiting (its `Drop`), not in order.
    pub async fn shutdown(self) {
        let HeldCluster {
            cluster, prober, ..
        } = self;
        drop(prober);
        if let Ok(cluster) = Arc::try_unwrap(cluster) {
            cluster.shutdown().await;
        }
    }
}

/// Probes a held cluster: resolves peers on the live cluster as a run does, asks the oracle
/// what the cell must do, and probes the dataplane with a trace.
pub struct Prober {
    cluster: Arc<SimCluster>,
    executor: Arc<dyn ProbeExecutor>,
    order: HashMap<String, usize>,
    spec: SimSpec,
    rbac_mapping: Option<ContrailMapping>,
}

/// One probe query: the scenario peer syntax (`x/a`, `svc:x/s-x-a`, `host:cloud-db`,
/// `external:internet-client`, `node:node-1`, wildcards such as `x/*`) and a port
/// (`TCP/80`, `UDP/53`, `SCTP/80`, `ICMP`, `TCP/serve-80-tcp`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ProbeQuery {
    /// Where the probe starts (a pod, `node:`, `host:` or `external:` peer).
    pub from: String,
    /// Where it goes (any peer).
    pub to: String,
    /// Protocol and port.
    pub port: String,
    /// Return the frames of each probe as a pcap file ([`ProbeCell::pcap`], base64).
    #[serde(default)]
    pub pcap: bool,
}

/// The answer to a [`ProbeQuery`]: one cell per (from, to) pair the peers expand to.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ProbeAnswer {
    /// The profile the oracle's expectations are in (`upstream`, the blueprint, as in
    /// `harness run`; the cluster's own profile is in `endpoints.json`).
    pub profile: String,
    /// Set when the cluster had not converged within the query's budget (5 s) and was
    /// probed anyway: what was still pending.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not_converged: Option<String>,
    /// The cells, sources major.
    pub cells: Vec<ProbeCell>,
}

/// One probed (or unprobeable) cell.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ProbeCell {
    /// Source label (`x/a`).
    pub from: String,
    /// Destination label (`svc:x/s-x-a`).
    pub to: String,
    /// Port as written by the scenario language (`TCP/80`).
    pub port: String,
    /// The address probed.
    pub address: String,
    /// The port number probed (named ports resolved; 0 for ICMP).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port_number: Option<u16>,
    /// What the oracle expects.
    pub expected: ExpectedCell,
    /// What the dataplane did (`None` when the cell could not be probed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed: Option<ObservedCell>,
    /// Why the cell was not probed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub skipped: Option<String>,
    /// Whether the observation is what the oracle expects (`deny` = dropped, `reject` =
    /// refused); `None` when not probed or inconclusive.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agrees: Option<bool>,
    /// One line per place a packet was handled.
    #[serde(default)]
    pub hops: Vec<String>,
    /// The gate decisions (`vrouter node-1: firewall deny by RULE`).
    #[serde(default)]
    pub decisions: Vec<String>,
    /// NAT applied on the way.
    #[serde(default)]
    pub nat: Vec<String>,
    /// Underlay encapsulations, in order.
    #[serde(default)]
    pub underlay_encaps: Vec<String>,
    /// Endpoints and service instances the packets went through.
    #[serde(default)]
    pub endpoints: Vec<String>,
    /// The frames as a pcap file, base64 (only when the query asked for it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pcap: Option<String>,
}

impl ProbeCell {
    /// The pcap file's bytes, when the query asked for them.
    pub fn pcap_bytes(&self) -> Option<Vec<u8>> {
        let b64 = self.pcap.as_deref()?;
        base64::engine::general_purpose::STANDARD.decode(b64).ok()
    }
}

/// The oracle's expectation for a cell.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ExpectedCell {
    /// `allow`, `deny` (observed as a drop) or `reject` (observed as a refusal).
    pub verdict: String,
    /// Why, naming the network rule or the policy, rule and peer that decided.
    pub explanation: String,
    /// `plain`, `tunnel`, … the underlay the oracle expects.
    pub underlay: String,
    /// Whether fabric SNAT is expected.
    pub snat: bool,
    /// Service instances expected on the path, in order.
    #[serde(default)]
    pub via: Vec<String>,
    /// Candidate backends (services).
    #[serde(default)]
    pub backends: Vec<String>,
    /// A pod probing itself.
    pub loopback: bool,
    /// r5.0 deviations that made the verdict differ from upstream.
    #[serde(default)]
    pub deviations: Vec<String>,
}

/// What the dataplane did.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ObservedCell {
    /// `allow`, `drop`, `reject` or `inconclusive`.
    pub verdict: String,
    /// Where and why (`answered by x/b`, `dropped at vrouter node-1: …`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

/// Why a query could not be answered.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[serde(rename_all = "camelCase", tag = "error")]
pub enum ProbeError {
    /// A peer that does not parse or names nothing the cluster has.
    #[error("{message}")]
    BadPeer {
        /// What is wrong.
        message: String,
        /// What the cluster has (its pods, services, nodes, hosts, clients).
        hint: String,
    },
    /// A port that does not parse.
    #[error("{message}")]
    BadPort {
        /// What is wrong.
        message: String,
        /// How to write one.
        hint: String,
    },
    /// A request body that is not a [`ProbeQuery`].
    #[error("{message}")]
    BadQuery {
        /// What is wrong.
        message: String,
        /// What to send.
        hint: String,
    },
    /// The cluster could not be read.
    #[error("{message}")]
    Cluster {
        /// What failed.
        message: String,
    },
}

impl ProbeError {
    /// The hint, if any.
    pub fn hint(&self) -> Option<&str> {
        match self {
            ProbeError::BadPeer { hint, .. }
            | ProbeError::BadPort { hint, .. }
            | ProbeError::BadQuery { hint, .. } => Some(hint),
            ProbeError::Cluster { .. } => None,
        }
    }

    fn status(&self) -> StatusCode {
        match self {
            ProbeError::BadPeer { .. }
            | ProbeError::BadPort { .. }
            | ProbeError::BadQuery { .. } => StatusCode::BAD_REQUEST,
            ProbeError::Cluster { .. } => StatusCode::SERVICE_UNAVAILABLE,
        }
    }
}

const PORT_HINT: &str =
    "write PROTOCOL/PORT: TCP/80, UDP/53, SCTP/80, ICMP, or a named port such as TCP/serve-80-tcp";

/// What the cluster has, for a bad peer's hint.
fn known_peers(model: &Cluster) -> String {
    fn list(names: Vec<String>, max: usize) -> String {
        if names.len() > max {
            format!("{}, … ({} in all)", names[..max].join(", "), names.len())
        } else {
            names.join(", ")
        }
    }
    let mut parts = Vec::new();
    let pods: Vec<String> = model.pods().iter().map(|p| p.id().to_owned()).collect();
    parts.push(format!(
        "known pods: {}",
        if pods.is_empty() {
            "none (apply some with kubectl, or start `harness up` with a scenario)".into()
        } else {
            list(pods, 40)
        }
    ));
    let svcs: Vec<String> = model
        .services()
        .iter()
        .filter(|s| s.namespace != "default" || s.name != "kubernetes")
        .map(|s| format!("svc:{}/{}", s.namespace, s.name))
        .collect();
    if !svcs.is_empty() {
        parts.push(format!("services: {}", list(svcs, 20)));
    }
    let mut others: Vec<String> = model
        .nodes()
        .iter()
        .map(|n| format!("node:{}", n.name))
        .collect();
    others.extend(
        model
            .fabric_hosts()
            .iter()
            .map(|h| format!("host:{}", h.name)),
    );
    others.extend(
        model
            .external_clients()
            .iter()
            .map(|e| format!("external:{}", e.name)),
    );
    parts.push(format!("also: {}", list(others, 20)));
    parts.join("; ")
}

impl Prober {
    /// The oracle's model of the cluster as it is now (with the scenario's rbacMapping).
    ///
    /// # Errors
    ///
    /// The failed list call, or the object the oracle cannot read.
    pub async fn model(&self) -> Result<Cluster, String> {
        let mut model = crate::observe::cluster(
            &self.cluster.kube(),
            &self.order,
            &self.spec.cluster,
            &self.spec.contrail,
        )
        .await?;
        if let Some(m) = &self.rbac_mapping {
            model.set_rbac_mapping(m.clone());
        }
        Ok(model)
    }

    /// The profile the cluster runs (and the oracle's expectations are in).
    pub fn profile(&self) -> Profile {
        self.spec.contrail.profile
    }

    /// Waits (up to 5 s) for the cluster to converge, resolves the peers on it, and probes
    /// every (from, to) pair with a trace.
    ///
    /// # Errors
    ///
    /// [`ProbeError::BadPeer`] / [`ProbeError::BadPort`] for input the cluster cannot resolve
    /// (with what it has), [`ProbeError::Cluster`] when it cannot be read.
    pub async fn probe(&self, q: &ProbeQuery) -> Result<ProbeAnswer, ProbeError> {
        let bad_peer = |which: &str, text: &str, e: String, model: Option<&Cluster>| {
            ProbeError::BadPeer {
                message: format!("{which} `{text}`: {e}"),
                hint: model.map(known_peers).unwrap_or_else(|| {
                    "peers are written x/a, x/*, svc:NS/NAME, nodeport:NS/NAME, lb:NS/NAME, ingress:NS/NAME, node:NAME, host:NAME, external:NAME".into()
                }),
            }
        };
        let from: Peer = q
            .from
            .parse()
            .map_err(|e| bad_peer("FROM", &q.from, e, None))?;
        let to: Peer = q.to.parse().map_err(|e| bad_peer("TO", &q.to, e, None))?;
        let port: PortSpec = q.port.parse().map_err(|e| ProbeError::BadPort {
            message: format!("PORT `{}`: {e}", q.port),
            hint: PORT_HINT.into(),
        })?;
        if !from.can_originate() {
            return Err(ProbeError::BadPeer {
                message: format!(
                    "FROM `{}` cannot start a probe: services and VIPs are destinations only",
                    q.from
                ),
                hint: "start at a pod (x/a), node:NAME, host:NAME or external:NAME".into(),
            });
        }
        let not_converged = self
            .cluster
            .converge(QUERY_CONVERGE_BUDGET)
            .await
            .err()
            .map(|e| e.to_string());
        let model = self
            .model()
            .await
            .map_err(|message| ProbeError::Cluster { message })?;
        let from_eps = model
            .expand(&from)
            .map_err(|e| bad_peer("FROM", &q.from, e.to_string(), Some(&model)))?;
        let to_eps = model
            .expand(&to)
            .map_err(|e| bad_peer("TO", &q.to, e.to_string(), Some(&model)))?;
        if from_eps.is_empty() || to_eps.is_empty() {
            let (which, text) = if from_eps.is_empty() {
                ("FROM", &q.from)
            } else {
                ("TO", &q.to)
            };
            return Err(bad_peer(
                which,
                text,
                "matches no endpoint".into(),
                Some(&model),
            ));
        }
        let cells = from_eps.len() * to_eps.len();
        if cells > MAX_CELLS {
            return Err(ProbeError::BadPeer {
                message: format!(
                    "`{}` × `{}` expands to {cells} cells; a probe takes at most {MAX_CELLS}",
                    q.from, q.to
                ),
                hint: "name narrower peers, or write a scenario and use `harness run`".into(),
            });
        }
        // Expected verdicts are the blueprint's, as in `harness run` (whatever the mock runs).
        let oracle = Oracle::new(&model, Profile::Upstream);
        let mut out = Vec::with_capacity(cells);
        let mut requests = Vec::new();
        let mut probed = Vec::new();
        for f in &from_eps {
            for t in &to_eps {
                let (cell, request) = plan_cell(&model, &oracle, f, t, &port);
                if let Some(r) = request {
                    probed.push(out.len());
                    requests.push(r);
                }
                out.push(cell);
            }
        }
        // A dataplane may block on real sockets (netns): keep it off the async workers.
        let executor = self.executor.clone();
        let outcomes = tokio::task::spawn_blocking(move || executor.probe_batch(&requests))
            .await
            .map_err(|e| ProbeError::Cluster {
                message: format!("the dataplane's probe task failed: {e}"),
            })?;
        for (i, outcome) in probed.into_iter().zip(outcomes) {
            record(&mut out[i], outcome, q.pcap);
        }
        Ok(ProbeAnswer {
            profile: Profile::Upstream.as_str().to_owned(),
            not_converged,
            cells: out,
        })
    }
}

/// The cell's expectation and the traced probe to make, or why none can be made.
fn plan_cell(
    model: &Cluster,
    oracle: &Oracle<'_>,
    from: &Endpoint,
    to: &Endpoint,
    port: &PortSpec,
) -> (ProbeCell, Option<ProbeRequest>) {
    let exp = oracle.evaluate(from, to, port);
    let expected = ExpectedCell {
        verdict: exp.verdict.as_str().to_owned(),
        explanation: exp.explanation.to_string(),
        underlay: exp.path.underlay.as_str().to_owned(),
        snat: exp.path.snat,
        via: exp.path.via.clone(),
        backends: exp.path.backends.clone(),
        loopback: exp.loopback,
        deviations: exp.deviations.iter().map(|d| d.name().to_owned()).collect(),
    };
    let request =
        crate::reach::request(model, from, to, port).map(|r| ProbeRequest { trace: true, ..r });
    let cell = ProbeCell {
        from: from.to_string(),
        to: to.to_string(),
        port: port.to_string(),
        address: to.address().to_string(),
        port_number: request.as_ref().ok().map(|r| r.port),
        expected,
        observed: None,
        skipped: request.as_ref().err().cloned(),
        agrees: None,
        hops: Vec::new(),
        decisions: Vec::new(),
        nat: Vec::new(),
        underlay_encaps: Vec::new(),
        endpoints: Vec::new(),
        pcap: None,
    };
    (cell, request.ok())
}

/// Fills a cell from its probe's outcome.
fn record(cell: &mut ProbeCell, outcome: ProbeOutcome, pcap: bool) {
    let observed = outcome.observed();
    cell.agrees = match &observed {
        Observed::Inconclusive { .. } => None,
        o => {
            let want = match cell.expected.verdict.as_str() {
                "allow" => Want::Allow,
                "reject" => Want::Reject,
                _ => Want::Drop,
            };
            Some(want.accepts(o.word()))
        }
    };
    cell.observed = Some(ObservedCell {
        verdict: observed.word().to_owned(),
        detail: observed.detail(),
    });
    cell.hops = outcome.hops;
    cell.decisions = outcome.decisions;
    cell.nat = outcome.nat;
    cell.underlay_encaps = outcome.underlay_encaps;
    cell.endpoints = outcome.endpoints;
    if pcap {
        cell.pcap = outcome
            .pcap
            .map(|b| base64::engine::general_purpose::STANDARD.encode(b));
    }
}

// ---------------------------------------------------------------------------------------
// The loopback server

/// A running probe endpoint; dropping it stops it without waiting.
#[derive(Debug)]
pub struct ProbeServer {
    addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

impl ProbeServer {
    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:PORT/probe`, what [`probe_remote`] and [`Endpoints::probe`] take.
    pub fn url(&self) -> String {
        format!("http://{}/probe", self.addr)
    }

    /// Stops listening, lets answers in flight finish, and returns when the port is closed.
    pub async fn shutdown(mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.task.take() {
            let _ = t.await;
        }
    }
}

impl Drop for ProbeServer {
    fn drop(&mut self) {
        if let Some(t) = self.task.take() {
            t.abort();
        }
    }
}

fn json_response(status: StatusCode, body: String) -> Response {
    (
        status,
        [(http::header::CONTENT_TYPE, "application/json")],
        body,
    )
        .into_response()
}

async fn handle_probe(State(prober): State<Arc<Prober>>, body: Bytes) -> Response {
    let query: ProbeQuery = match serde_json::from_slice(&body) {
        Ok(q) => q,
        Err(e) => {
            let err = ProbeError::BadQuery {
                message: format!("the request body is not a probe query: {e}"),
                hint: r#"send {"from": "x/a", "to": "x/b", "port": "TCP/80"}"#.into(),
            };
            return json_response(
                err.status(),
                serde_json::to_string(&err).unwrap_or_default(),
            );
        }
    };
    match prober.probe(&query).await {
        Ok(answer) => json_response(
            StatusCode::OK,
            serde_json::to_string(&answer).unwrap_or_default(),
        ),
        Err(e) => json_response(e.status(), serde_json::to_string(&e).unwrap_or_default()),
    }
}

/// Serves `POST /probe` for `prober` on `addr` (loopback only; port 0 picks a free one).
///
/// # Errors
///
/// `InvalidInput` for a non-loopback address; the bind error otherwise.
pub async fn serve(addr: SocketAddr, prober: Arc<Prober>) -> std::io::Result<ProbeServer> {
    if !addr.ip().is_loopback() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!(
                "{addr} is not a loopback address: the probe endpoint listens on loopback only"
            ),
        ));
    }
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let addr = listener.local_addr()?;
    let app = Router::new()
        .route("/probe", post(handle_probe))
        .with_state(prober);
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        let _ = axum::serve(listener, app)
            .with_graceful_shutdown(async move {
                let _ = stopped.await;
            })
            .await;
    });
    Ok(ProbeServer {
        addr,
        stop: Some(stop),
        task: Some(task),
    })
}

// ---------------------------------------------------------------------------------------
// The client

/// Why [`probe_remote`] got no answer.
#[derive(Debug, thiserror::Error)]
pub enum RemoteError {
    /// Nothing answers at the URL (the holder stopped, or a bad URL).
    #[error("no probe endpoint answers at {url}: {message}")]
    Unreachable {
        /// The URL called.
        url: String,
        /// The connection error.
        message: String,
    },
    /// The endpoint refused the query (a bad peer or port, or an unreadable cluster).
    #[error("{0}")]
    Rejected(ProbeError),
    /// The endpoint answered something else.
    #[error("the probe endpoint at {url} answered badly: {message}")]
    Failed {
        /// The URL called.
        url: String,
        /// What was wrong.
        message: String,
    },
}

/// Calls a held cluster's probe endpoint (`url` as in [`Endpoints::probe`]).
///
/// # Errors
///
/// [`RemoteError::Unreachable`] when nothing listens (or `timeout` passes),
/// [`RemoteError::Rejected`] with the endpoint's [`ProbeError`], [`RemoteError::Failed`] for
/// an answer that is not one.
pub async fn probe_remote(
    url: &str,
    query: &ProbeQuery,
    timeout: Duration,
) -> Result<ProbeAnswer, RemoteError> {
    let failed = |message: String| RemoteError::Failed {
        url: url.to_owned(),
        message,
    };
    let unreachable = |message: String| RemoteError::Unreachable {
        url: url.to_owned(),
        message,
    };
    let uri: http::Uri = url
        .parse()
        .map_err(|e| unreachable(format!("not a URL: {e}")))?;
    let authority = uri
        .authority()
        .ok_or_else(|| unreachable("the URL names no host:port".into()))?
        .clone();
    let body = serde_json::to_vec(query).map_err(|e| failed(e.to_string()))?;
    let call = async {
        let stream = tokio::net::TcpStream::connect(authority.as_str())
            .await
            .map_err(|e| unreachable(e.to_string()))?;
        let (mut sender, conn) =
            hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
                .await
                .map_err(|e| unreachable(e.to_string()))?;
        let conn = tokio::spawn(conn);
        let request = http::Request::post(uri.clone())
            .header(http::header::HOST, authority.as_str())
            .header(http::header::CONTENT_TYPE, "application/json")
            .body(http_body_util::Full::new(Bytes::from(body)))
            .map_err(|e| failed(e.to_string()))?;
        let response = sender
            .send_request(request)
            .await
            .map_err(|e| unreachable(e.to_string()))?;
        let status = response.status();
        let bytes = http_body_util::BodyExt::collect(response.into_body())
            .await
            .map_err(|e| failed(format!("reading the answer: {e}")))?
            .to_bytes();
        conn.abort();
        Ok::<_, RemoteError>((status, bytes))
    };
    let (status, bytes) = tokio::time::timeout(timeout, call)
        .await
        .map_err(|_| unreachable(format!("no answer within {timeout:?}")))??;
    if status == StatusCode::OK {
        return serde_json::from_slice(&bytes).map_err(|e| failed(format!("{e}")));
    }
    match serde_json::from_slice::<ProbeError>(&bytes) {
        Ok(e) => Err(RemoteError::Rejected(e)),
        Err(_) => Err(failed(format!(
            "HTTP {status}: {}",
            String::from_utf8_lossy(&bytes)
        ))),
    }
}

// ---------------------------------------------------------------------------------------
// The state directory

/// `DIR/endpoints.json` of a held cluster: written once it is ready, read by `harness probe`
/// and by scripts. Fields may be added; these keep their names.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Endpoints {
    /// The Kubernetes API (kube-sim) URL.
    pub kubernetes: String,
    /// The Contrail VNC API URL.
    pub contrail: String,
    /// The probe endpoint (`POST` a [`ProbeQuery`]).
    #[serde(default)]
    pub probe: String,
    /// The holding process.
    #[serde(default)]
    pub pid: u32,
    /// The profile the cluster runs.
    #[serde(default)]
    pub profile: String,
    /// The scenario whose resources were applied, as given on the command line.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scenario: Option<String>,
    /// The compute nodes.
    #[serde(default)]
    pub nodes: Vec<String>,
}

impl Endpoints {
    /// `DIR/endpoints.json`.
    pub fn path(dir: &Path) -> PathBuf {
        dir.join(ENDPOINTS_FILE)
    }

    /// Reads `DIR/endpoints.json`.
    ///
    /// # Errors
    ///
    /// A message saying the file is missing or not an endpoints file.
    pub fn read(dir: &Path) -> Result<Endpoints, String> {
        let path = Self::path(dir);
        let text = std::fs::read_to_string(&path).map_err(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                format!("{} does not exist", path.display())
            } else {
                format!("cannot read {}: {e}", path.display())
            }
        })?;
        serde_json::from_str(&text)
            .map_err(|e| format!("{} is not an endpoints file: {e}", path.display()))
    }

    /// Writes `DIR/endpoints.json` whole (a temporary file renamed over it, so a reader
    /// never sees half of it).
    ///
    /// # Errors
    ///
    /// The failed write.
    pub fn write(&self, dir: &Path) -> std::io::Result<PathBuf> {
        let path = Self::path(dir);
        let tmp = dir.join(format!(".{ENDPOINTS_FILE}.{}", std::process::id()));
        let mut text = serde_json::to_string_pretty(self).map_err(std::io::Error::other)?;
        text.push('\n');
        std::fs::write(&tmp, text)?;
        std::fs::rename(&tmp, &path)?;
        Ok(path)
    }
}
