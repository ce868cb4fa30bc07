//! Running scenarios: stand the cluster up, apply the resources, run each step's actions,
//! wait for convergence, run its checks, and return `harness_report` results. Progress is
//! reported as [`Event`]s (the runner never prints).

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use harness_contrail_vnc::VncObject;
use harness_report::{CheckKind, CheckResult, ScenarioResult, StepResult};
use harness_scenario::model::{ContrailMode, Expectation, Step};
use harness_scenario::template::{self, Binding};
use harness_scenario::{LoadedScenario, MockFault, Profile};
use serde_json::Value;
use tokio::sync::mpsc::UnboundedSender;

use crate::apply::Applier;
use crate::checks;
use crate::evidence::{EvidenceMode, EvidenceSink};
use crate::provider::ProbeExecutor;
use crate::provider::netns::{self as netns, NetnsExecutor};
use crate::provider::sim::{SimCluster, SimSpec};
use crate::reach::{self, ReachabilityRun};
use crate::seed::Rng;
use crate::select::{Selection, only_cell};

/// How long a step may take to converge before it is an infrastructure error.
pub const DEFAULT_CONVERGE_TIMEOUT: Duration = Duration::from_secs(20);

/// Which dataplane probes run on (`--dataplane`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum DataplaneKind {
    /// The model dataplane inside the simulated vrouters.
    #[default]
    Model,
    /// Real network namespaces (issue #7).
    Netns,
}

impl DataplaneKind {
    /// `model` or `netns`.
    pub fn as_str(self) -> &'static str {
        match self {
            DataplaneKind::Model => "model",
            DataplaneKind::Netns => "netns",
        }
    }
}

impl std::str::FromStr for DataplaneKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "model" => Ok(DataplaneKind::Model),
            "netns" => Ok(DataplaneKind::Netns),
            _ => Err(format!("unknown dataplane `{s}`: use model or netns")),
        }
    }
}

/// How a run is made.
#[derive(Clone, Debug)]
pub struct RunOptions {
    /// `sim` (the only provider today).
    pub provider: String,
    /// Where probes run.
    pub dataplane: DataplaneKind,
    /// Orders probes; printed so a run can be reproduced.
    pub seed: u64,
    /// `--only`.
    pub selection: Selection,
    /// `--contrail-profile`: overrides every scenario's `contrail.profile` (what the mock
    /// Contrail runs).
    pub profile: Option<Profile>,
    /// `--expect-profile`: the semantics expected verdicts come from. `upstream` (the
    /// blueprint) by default whatever the cluster runs, so a run against an `r5.0` cluster
    /// shows its deviations as failed cells, each explained by the deviations' names.
    pub expect_profile: Profile,
    /// Faults added to every scenario's `contrail.faults`.
    pub faults: Vec<MockFault>,
    /// Report directory (evidence is written below it).
    pub report_dir: Option<PathBuf>,
    /// Which cells get evidence.
    pub evidence: EvidenceMode,
    /// Budget for each convergence wait.
    pub converge_timeout: Duration,
    /// The program name used in rerun commands (`harness`).
    pub program: String,
    /// Keep each cluster up after its scenario (until the future is dropped).
    pub keep: bool,
}

impl Default for RunOptions {
    fn default() -> Self {
        RunOptions {
            provider: "sim".into(),
            dataplane: DataplaneKind::Model,
            seed: 0,
            selection: Selection::all(),
            profile: None,
            expect_profile: Profile::Upstream,
            faults: Vec::new(),
            report_dir: None,
            evidence: EvidenceMode::Failures,
            converge_timeout: DEFAULT_CONVERGE_TIMEOUT,
            program: "harness".into(),
            keep: false,
        }
    }
}

/// Progress of a run, for the CLI to print.
#[derive(Clone, Debug)]
pub enum Event {
    /// A scenario starts.
    ScenarioStarted {
        /// Its name.
        name: String,
        /// Its file.
        file: String,
    },
    /// The cluster is up.
    ClusterUp {
        /// How long it took.
        ms: u64,
    },
    /// A step's actions are done and the cluster converged.
    StepConverged {
        /// The step.
        step: String,
        /// From the end of the actions to convergence.
        ms: u64,
    },
    /// A check finished.
    CheckDone {
        /// Its result.
        check: Box<CheckResult>,
    },
    /// `keep`: the scenario finished and its cluster stays up until the run is dropped.
    ClusterKept {
        /// The scenario.
        scenario: String,
        /// A kubeconfig for kubectl.
        kubeconfig_yaml: String,
        /// The Kubernetes API URL.
        kubernetes: String,
        /// The Contrail VNC API URL.
        contrail: String,
    },
    /// `--dataplane netns`: the namespaces are up, or the run's underlay capture was written.
    Netns {
        /// What happened, one line (`run 3fa9c1: 9 namespaces up in 180 ms`).
        detail: String,
    },
    /// A scenario finished.
    ScenarioDone {
        /// Its result.
        result: Box<ScenarioResult>,
    },
}

/// Runs one scenario on a fresh cluster and tears it down.
///
/// # Caveats
///
/// Never fails: a cluster that cannot be stood up, an action the API refuses or a
/// convergence timeout becomes the scenario's `setup_error` (exit code 3), and the checks
/// run so far are kept. Cancelling (dropping) the future tears the cluster down through
/// [`SimCluster`]'s `Drop`.
pub async fn run_scenario(
    loaded: &LoadedScenario,
    file_arg: &str,
    opts: &RunOptions,
    events: Option<&UnboundedSender<Event>>,
) -> ScenarioResult {
    let started = Instant::now();
    let s = &loaded.scenario;
    let emit = |e: Event| {
        if let Some(tx) = events {
            let _ = tx.send(e);
        }
    };
    emit(Event::ScenarioStarted {
        name: s.name.clone(),
        file: file_arg.to_string(),
    });
    let mut result = ScenarioResult {
        name: s.name.clone(),
        file: file_arg.to_string(),
        labels: s.labels.clone(),
        description: s.description.clone(),
        duration_ms: 0,
        setup_error: None,
        steps: Vec::new(),
    };
    let mut session = match Session::start(loaded, file_arg, opts, &emit).await {
        Ok(session) => session,
        Err(e) => {
            result.setup_error = Some(e);
            result.duration_ms = started.elapsed().as_millis() as u64;
            emit(Event::ScenarioDone {
                result: Box::new(result.clone()),
            });
            return result;
        }
    };
    let ids = s.checks();
    for (si, step) in s.steps.iter().enumerate() {
        let step_started = Instant::now();
        let checks = match session.step(si, &step.value, &ids, &emit).await {
            Ok(c) => c,
            Err(e) => {
                result.setup_error = Some(format!("step `{}`: {e}", step.name));
                break;
            }
        };
        result.steps.push(StepResult {
            name: step.name.clone(),
            duration_ms: step_started.elapsed().as_millis() as u64,
            checks,
        });
    }
    // `keep` keeps the namespaces with the cluster (for `ip netns exec`): they go when the
    // future is dropped (Ctrl-C), through the executor's Drop.
    let _kept_netns = match session.netns.take() {
        Some(net) => {
            finish_netns(&net, &s.name, opts, &mut result, &emit);
            opts.keep.then_some(net)
        }
        None => None,
    };
    result.duration_ms = started.elapsed().as_millis() as u64;
    emit(Event::ScenarioDone {
        result: Box::new(result.clone()),
    });
    if opts.keep {
        emit(Event::ClusterKept {
            scenario: s.name.clone(),
            kubeconfig_yaml: session.cluster.kubeconfig_yaml(),
            kubernetes: session.cluster.kube_url(),
            contrail: session.cluster.vnc_url(),
        });
        // Held until the caller drops this future (Ctrl-C); the cluster's Drop stops it.
        std::future::pending::<()>().await;
    }
    session.cluster.shutdown().await;
    result
}

/// A scenario in progress on its cluster.
struct Session<'a> {
    loaded: &'a LoadedScenario,
    file_arg: &'a str,
    opts: &'a RunOptions,
    spec: SimSpec,
    profile: Profile,
    cluster: SimCluster,
    applier: Applier,
    order: HashMap<String, usize>,
    chains: Vec<harness_scenario::model::ServiceChain>,
    rng: Rng,
    rbac_mapping: Option<harness_oracle::ContrailMapping>,
    /// `--dataplane netns`: the namespaces probes run in (dropping it deletes them).
    netns: Option<NetnsExecutor>,
}

impl<'a> Session<'a> {
    async fn start(
        loaded: &'a LoadedScenario,
        file_arg: &'a str,
        opts: &'a RunOptions,
        emit: &(dyn Fn(Event) + Sync),
    ) -> Result<Session<'a>, String> {
        let s = &loaded.scenario;
        if s.contrail.mode == ContrailMode::Real {
            return Err("contrail.mode real needs the `existing` provider, which is not built yet; run with the mock (mode: mock)".into());
        }
        if opts.dataplane == DataplaneKind::Netns {
            // Before anything is stood up: a missing capability is an infrastructure error.
            netns::check_capabilities()?;
        }
        let mut contrail = s.contrail.clone();
        if let Some(p) = opts.profile {
            contrail.profile = p;
        }
        for f in &opts.faults {
            if !contrail.faults.contains(f) {
                contrail.faults.push(*f);
            }
        }
        let (rbac_doc, rbac_mapping) = match &s.contrail.rbac_mapping {
            Some(rel) => {
                let path = loaded.file.parent().unwrap_or(Path::new(".")).join(rel);
                let text = std::fs::read_to_string(&path)
                    .map_err(|e| format!("cannot read rbacMapping {}: {e}", path.display()))?;
                let doc: Value = serde_saphyr::from_str::<Value>(&text)
                    .map_err(|e| format!("rbacMapping {}: {e}", path.display()))?;
                let mapping = harness_oracle::ContrailMapping::from_json(doc.clone())
                    .map_err(|e| format!("rbacMapping {}: {e}", path.display()))?;
                (Some(doc), Some(mapping))
            }
            None => (None, None),
        };
        let spec = SimSpec {
            cluster: s.cluster.clone(),
            contrail: contrail.clone(),
            rbac_mapping: rbac_doc,
        };
        let t = Instant::now();
        let cluster = SimCluster::up(&spec)
            .await
            .map_err(|e| format!("the sim cluster could not be stood up: {e}"))?;
        emit(Event::ClusterUp {
            ms: t.elapsed().as_millis() as u64,
        });
        let applier = Applier::new(cluster.kube());
        let mut session = Session {
            loaded,
            file_arg,
            opts,
            spec,
            profile: contrail.profile,
            cluster,
            applier,
            order: HashMap::new(),
            chains: Vec::new(),
            rng: Rng::new(opts.seed ^ fnv(&s.name)),
            rbac_mapping,
            netns: None,
        };
        let manifests: Vec<Value> = loaded.resources().into_iter().map(|m| m.object).collect();
        let prepared = match session.apply(&manifests).await {
            Ok(()) => session.converge().await,
            Err(e) => Err(e),
        };
        if let Err(e) = prepared {
            // The orderly path: wait for every server and task to stop.
            session.cluster.shutdown().await;
            return Err(format!("resources: {e}"));
        }
        if opts.dataplane == DataplaneKind::Netns {
            // The pods are wired in the model now: build their namespaces in one go, over the
            // same model dataplane (its follower keeps the configuration flowing).
            let t = Instant::now();
            let (model, dp) = (session.cluster.dataplane(), session.cluster.model());
            // The underlay subnet is the scenario's first ip-fabric subnet (vhosts, fabric
            // hosts and the gateway are laid out in it).
            let prefix_len = session
                .spec
                .contrail
                .ip_fabric_subnets
                .first()
                .map_or(24, ipnet::Ipv4Net::prefix_len);
            match netns::blocking(|| NetnsExecutor::up(model, dp, prefix_len)) {
                Ok(net) => {
                    emit(Event::Netns {
                        detail: format!(
                            "run {}: {} namespaces up in {} ms",
                            net.run_id(),
                            net.namespaces().len(),
                            t.elapsed().as_millis()
                        ),
                    });
                    session.netns = Some(net);
                }
                Err(e) => {
                    session.cluster.shutdown().await;
                    return Err(format!("the netns dataplane could not be built: {e}"));
                }
            }
        }
        Ok(session)
    }

    async fn converge(&self) -> Result<(), String> {
        self.cluster
            .converge(self.opts.converge_timeout)
            .await
            .map(|_| ())
            .map_err(|e| e.to_string())
    }

    /// Applies manifests in order; those with bindings are rendered from the live objects,
    /// waiting (converging) until the values they name exist.
    async fn apply(&mut self, manifests: &[Value]) -> Result<(), String> {
        for m in manifests {
            let bindings = template::bindings_in(m).unwrap_or_default();
            let object = if bindings.is_empty() {
                m.clone()
            } else {
                self.render(m).await?
            };
            if object.get("kind").and_then(Value::as_str) == Some("NetworkPolicy") {
                let id = format!(
                    "{}/{}",
                    object
                        .pointer("/metadata/namespace")
                        .and_then(Value::as_str)
                        .unwrap_or("default"),
                    object
                        .pointer("/metadata/name")
                        .and_then(Value::as_str)
                        .unwrap_or("")
                );
                let n = self.order.len();
                self.order.entry(id).or_insert(n);
            }
            self.applier
                .apply(&object)
                .await
                .map_err(|e| e.to_string())?;
        }
        Ok(())
    }

    async fn render(&mut self, m: &Value) -> Result<Value, String> {
        let deadline = Instant::now() + self.opts.converge_timeout;
        loop {
            // Values are read only once the cluster assigned them: the oracle's model would
            // otherwise answer with a planned address.
            self.converge().await?;
            let model = self.model().await?;
            let rendered = template::render_value::<BindingError>(m, &mut |b: &Binding| {
                if let Binding::PodIp(o) | Binding::Cidr(o, _) = b
                    && model
                        .pod(&o.namespace, &o.name)
                        .is_some_and(|p| p.address_planned)
                {
                    return Err(BindingError(format!("{b}: pod {o} has no IP yet")));
                }
                model
                    .resolve(b)
                    .map_err(|e| BindingError(format!("{b}: {e}")))
            });
            match rendered {
                Ok(v) => return Ok(v),
                Err(e) if Instant::now() >= deadline => {
                    return Err(format!("a binding never became assignable: {}", e.0));
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(5)).await,
            }
        }
    }

    /// The oracle's model of the cluster as it is now, with the scenario's service chains.
    async fn model(&self) -> Result<harness_oracle::Cluster, String> {
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
        for c in &self.chains {
            model.add_service_chain(c).map_err(|e| e.to_string())?;
        }
        Ok(model)
    }

    async fn step(
        &mut self,
        si: usize,
        step: &Step,
        ids: &[harness_scenario::model::CheckRef],
        emit: &(dyn Fn(Event) + Sync),
    ) -> Result<Vec<CheckResult>, String> {
        // Actions, in the documented order.
        let manifests: Vec<Value> = self
            .loaded
            .step_manifests(step)
            .into_iter()
            .map(|m| m.object)
            .collect();
        self.apply(&manifests).await?;
        for o in &step.contrail {
            self.create_contrail_object(o).await?;
        }
        for chain in &step.service_chain {
            self.converge().await?;
            let model = self.model().await?;
            let (left, right, node) = crate::chain::create_chain(
                self.cluster.vnc(),
                &model,
                chain,
                &self.spec.contrail.cluster_name,
            )
            .await
            .map_err(|e| format!("service chain {}: {e}", chain.name))?;
            self.converge().await?;
            self.cluster.attach_service_instance(
                &chain.name,
                vec![left, right],
                &node,
                &chain.function,
            );
            self.chains.push(chain.clone());
        }
        for d in &step.delete {
            self.applier
                .delete(
                    d.api_version.as_deref(),
                    &d.kind,
                    d.namespace.as_deref(),
                    &d.name,
                )
                .await
                .map_err(|e| e.to_string())?;
        }
        for l in &step.label {
            self.applier
                .relabel(&l.target, &l.set, &l.remove)
                .await
                .map_err(|e| e.to_string())?;
        }
        for u in &step.unlabel {
            self.applier
                .relabel(&u.target, &BTreeMap::new(), &u.keys)
                .await
                .map_err(|e| e.to_string())?;
        }
        for f in &step.fault {
            self.cluster
                .restart(f.restart, f.node.as_deref())
                .await
                .map_err(|e| e.to_string())?;
        }
        if let Some(w) = step.wait {
            tokio::time::sleep(w.0).await;
        }
        let changed_at = Instant::now();
        self.converge().await?;
        if let Some(net) = &self.netns {
            // Pods this step created or deleted get (or lose) their namespaces now.
            netns::blocking(|| net.sync())
                .map_err(|e| format!("the netns dataplane could not follow the pods: {e}"))?;
        }
        emit(Event::StepConverged {
            step: step.name.clone(),
            ms: changed_at.elapsed().as_millis() as u64,
        });

        // Checks.
        let mut out = Vec::new();
        let model = if step
            .expect
            .iter()
            .any(|e| matches!(e.value, Expectation::Reachability(_)))
        {
            Some(self.model().await?)
        } else {
            None
        };
        let model_dataplane = self.cluster.dataplane();
        let executor: &dyn ProbeExecutor = match &self.netns {
            Some(net) => net,
            None => &model_dataplane,
        };
        // The model dataplane's verdicts change only with the cluster's state, which the sim
        // stamps; real sockets (netns) may not, so they always wait out `within`.
        let quiescence = self
            .netns
            .is_none()
            .then_some(|| self.cluster.quiescence_stamp());
        for (ci, e) in step.expect.iter().enumerate() {
            let Some(id) = ids
                .iter()
                .find(|c| c.step == si && c.index == ci)
                .map(|c| c.id.clone())
            else {
                continue;
            };
            if !self.opts.selection.check(&id) {
                continue;
            }
            let started = Instant::now();
            let check = match &e.value {
                Expectation::Reachability(check) => {
                    let Some(model) = &model else { continue };
                    let sink = EvidenceSink {
                        report_dir: self.opts.report_dir.clone(),
                        mode: self.opts.evidence,
                    };
                    let (opts, file_arg) = (self.opts, self.file_arg);
                    let rerun = move |key: &str| rerun_command(opts, file_arg, &only_cell(key));
                    reach::run(ReachabilityRun {
                        id: &id,
                        step: &step.name,
                        check,
                        model,
                        profile: self.opts.expect_profile,
                        cluster_profile: self.profile,
                        quiescence: quiescence.as_ref().map(|q| q as _),
                        executor,
                        rng: &mut self.rng,
                        changed_at,
                        selection: &self.opts.selection,
                        evidence: &sink,
                        rerun: &rerun,
                    })
                    .await
                }
                Expectation::Contrail(assertions) => {
                    let cells = checks::contrail::run(
                        self.cluster.vnc(),
                        assertions,
                        Duration::from_secs(5),
                    )
                    .await;
                    self.finish(
                        &id,
                        CheckKind::Contrail,
                        contrail_title(assertions),
                        cells,
                        started,
                    )
                }
                Expectation::Rbac(check) => {
                    let mut ctx = checks::rbac::RbacContext::new(&self.spec.contrail.cluster_name);
                    if let Some(m) = &self.rbac_mapping {
                        ctx = ctx.with_mapping(m.clone());
                    }
                    let cells =
                        checks::rbac::run(&self.cluster.kube(), self.cluster.vnc(), check, &ctx)
                            .await;
                    self.finish(
                        &id,
                        CheckKind::Rbac,
                        format!("RBAC as {}", check.subject),
                        cells,
                        started,
                    )
                }
            };
            emit(Event::CheckDone {
                check: Box::new(check.clone()),
            });
            out.push(check);
        }
        Ok(out)
    }

    fn finish(
        &self,
        id: &str,
        kind: CheckKind,
        title: String,
        mut cells: Vec<harness_report::CellResult>,
        started: Instant,
    ) -> CheckResult {
        let rerun = rerun_command(self.opts, self.file_arg, &only_cell_check(id));
        for c in &mut cells {
            if matches!(
                c.outcome,
                harness_report::Outcome::Failed
                    | harness_report::Outcome::Flaky
                    | harness_report::Outcome::Inconclusive { .. }
            ) && c.rerun.is_none()
            {
                c.rerun = Some(rerun.clone());
            }
        }
        CheckResult {
            id: id.to_string(),
            kind,
            title,
            duration_ms: started.elapsed().as_millis() as u64,
            message: cells.is_empty().then(|| "no cell".to_string()),
            cells,
            matrix: None,
        }
    }

    async fn create_contrail_object(
        &self,
        o: &harness_scenario::model::ContrailObject,
    ) -> Result<(), String> {
        let mut body = Value::Object(o.body.clone());
        if let Some(m) = body.as_object_mut() {
            m.insert("fq_name".into(), Value::from(o.fq_name.clone()));
        }
        let obj = VncObject::from_json(&o.kind, &body)
            .map_err(|e| format!("contrail object {} {}: {e}", o.kind, o.fq_name.join(":")))?;
        self.cluster
            .vnc()
            .create(&obj)
            .await
            .map(|_| ())
            .map_err(|e| format!("create {} {}: {e}", o.kind, o.fq_name.join(":")))
    }
}

/// Ends a scenario's netns dataplane: writes the run's underlay capture to
/// `<report-dir>/netns/<scenario>/underlay.pcap` and deletes the namespaces (unless `keep`:
/// then the caller holds them until it is dropped). A failure to
/// delete them is the scenario's setup error (exit 3): namespaces must not be left behind.
fn finish_netns(
    net: &NetnsExecutor,
    scenario: &str,
    opts: &RunOptions,
    result: &mut ScenarioResult,
    emit: &(dyn Fn(Event) + Sync),
) {
    if let Some(dir) = &opts.report_dir {
        let path = dir
            .join("netns")
            .join(crate::evidence::component(scenario))
            .join("underlay.pcap");
        let detail = match net.write_underlay_pcap(&path) {
            Ok((frames, 0)) => format!("underlay capture {} ({frames} frames)", path.display()),
            Ok((frames, more)) => format!(
                "underlay capture {} ({frames} frames; {more} later frames not kept)",
                path.display()
            ),
            Err(e) => format!(
                "could not write the underlay capture {}: {e}",
                path.display()
            ),
        };
        emit(Event::Netns { detail });
    }
    let id = net.run_id().to_owned();
    if opts.keep {
        emit(Event::Netns {
            detail: format!("run {id}: namespaces h{id}-* kept until Ctrl-C"),
        });
        return;
    }
    match netns::blocking(|| net.cleanup()) {
        Ok(()) => emit(Event::Netns {
            detail: format!("run {id}: namespaces h{id}-* deleted"),
        }),
        Err(e) => {
            let msg = format!(
                "the netns dataplane's namespaces h{id}-* could not all be deleted (the next run sweeps them): {e}"
            );
            result.setup_error = Some(match result.setup_error.take() {
                Some(prev) => format!("{prev}; {msg}"),
                None => msg,
            });
        }
    }
}

/// `harness run FILE --only '…' --seed N [--contrail-profile P] [--fault F]…`.
pub fn rerun_command(opts: &RunOptions, file_arg: &str, only: &str) -> String {
    let mut parts = vec![
        opts.program.clone(),
        "run".into(),
        shell_quote(file_arg),
        "--only".into(),
        shell_quote(only),
        "--seed".into(),
        opts.seed.to_string(),
    ];
    if let Some(p) = opts.profile {
        parts.push("--contrail-profile".into());
        parts.push(p.as_str().into());
    }
    if opts.expect_profile != Profile::Upstream {
        parts.push("--expect-profile".into());
        parts.push(opts.expect_profile.as_str().into());
    }
    for f in &opts.faults {
        parts.push("--fault".into());
        parts.push(f.name());
    }
    if opts.dataplane != DataplaneKind::Model {
        parts.push("--dataplane".into());
        parts.push(opts.dataplane.as_str().into());
    }
    parts.join(" ")
}

fn contrail_title(assertions: &[harness_scenario::model::ContrailAssertion]) -> String {
    let names: Vec<String> = assertions
        .iter()
        .take(3)
        .map(|a| format!("{} {}", a.kind, a.fq_name.join(":")))
        .collect();
    let more = assertions.len().saturating_sub(3);
    if more > 0 {
        format!("Contrail objects: {} and {more} more", names.join(", "))
    } else {
        format!("Contrail objects: {}", names.join(", "))
    }
}

/// The `--only` value that selects exactly one check.
fn only_cell_check(id: &str) -> String {
    format!("^{}$", regex::escape(id))
}

/// Quotes an argument for a POSIX shell when it needs it.
pub fn shell_quote(s: &str) -> String {
    if !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./=:@".contains(c))
    {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

fn fnv(s: &str) -> u64 {
    s.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

struct BindingError(String);

impl From<template::TemplateError> for BindingError {
    fn from(e: template::TemplateError) -> Self {
        BindingError(e.message)
    }
}

/// A scenario to run, with the path as the user wrote it (used in reports and rerun commands).
#[derive(Clone, Debug)]
pub struct ScenarioInput {
    /// The loaded scenario.
    pub loaded: LoadedScenario,
    /// The path as given on the command line.
    pub file_arg: String,
    /// Which of its checks and cells run (overrides [`RunOptions::selection`]).
    pub selection: Option<Selection>,
}

/// How many scenarios run at once by default: twice the CPUs. A scenario spends most of its
/// time waiting on its cluster (convergence, probe rounds), so two per core keep the CPUs
/// busy without thrashing (measured on 2 cores: docs/BENCHMARKS.md).
pub fn default_parallel() -> usize {
    std::thread::available_parallelism().map_or(2, |n| n.get() * 2)
}

/// [`default_parallel`] for a dataplane: on netns a scenario spends nearly all its time
/// waiting on real sockets (a dropped cell is only seen by waiting out the probe timeout), so
/// four per core (the conformance suite: 80 s at two per core, 56 s at four, on 2 cores).
pub fn default_parallel_for(dataplane: DataplaneKind) -> usize {
    match dataplane {
        DataplaneKind::Netns => default_parallel() * 2,
        _ => default_parallel(),
    }
}

/// Runs scenarios, up to `parallel` at once (each on its own cluster), and returns their
/// results in input order.
///
/// Each scenario is its own task: a scenario blocking its thread (the netns dataplane's real
/// sockets wait out their timeouts) must not hold up the others, as it would if they were all
/// polled by one task. Dropping the returned future aborts the scenarios still running (their
/// clusters and namespaces are dropped with them); a scenario that panics is reported as a
/// setup error, not propagated.
pub async fn run_all(
    inputs: &[ScenarioInput],
    opts: &RunOptions,
    parallel: usize,
    events: Option<&UnboundedSender<Event>>,
) -> Vec<ScenarioResult> {
    use futures_util::StreamExt;
    let events = events.cloned();
    futures_util::stream::iter(inputs.iter().cloned())
        .map(|i| {
            let opts = match &i.selection {
                Some(sel) => RunOptions {
                    selection: sel.clone(),
                    ..opts.clone()
                },
                None => opts.clone(),
            };
            let events = events.clone();
            let started = Instant::now();
            let budget = scenario_budget(&i.loaded.scenario);
            let input = i.clone();
            let task = AbortOnDrop(tokio::spawn(async move {
                match tokio::time::timeout(
                    budget,
                    run_scenario(&i.loaded, &i.file_arg, &opts, events.as_ref()),
                )
                .await
                {
                    Ok(r) => r,
                    Err(_) => abandoned(&i, started, budget),
                }
            }));
            async move {
                match task.join().await {
                    Ok(r) => r,
                    Err(e) => crashed(&input, started, &e),
                }
            }
        })
        .buffered(parallel.max(1))
        .collect()
        .await
}

/// A scenario's task, aborted if nobody waits for it any more.
struct AbortOnDrop<T>(tokio::task::JoinHandle<T>);

impl<T> AbortOnDrop<T> {
    async fn join(mut self) -> Result<T, tokio::task::JoinError> {
        (&mut self.0).await
    }
}

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// The result of a scenario whose task panicked or was cancelled: a setup error (exit 3).
fn crashed(input: &ScenarioInput, started: Instant, e: &tokio::task::JoinError) -> ScenarioResult {
    let why = if e.is_panic() {
        "the harness panicked while running it (a bug: please report it with this scenario)"
    } else {
        "it was cancelled"
    };
    unfinished(input, started, format!("did not finish: {why}"))
}

/// A fresh run id: `YYYYMMDD-HHMMSS-<pid>` (names the default report directory).
pub fn new_run_id() -> String {
    let now = harness_vrouter_sim::node::now_rfc3339();
    let digits: String = now.chars().filter(char::is_ascii_digit).take(14).collect();
    let (date, time) = digits.split_at(digits.len().min(8));
    format!("{date}-{time}-{}", std::process::id())
}

/// The current time, RFC 3339 (for `RunResult::started_at`).
pub fn now_rfc3339() -> String {
    harness_vrouter_sim::node::now_rfc3339()
}

/// Stands `loaded`'s cluster up with its resources applied and converged, and hands it over
/// whole instead of running the steps (`harness up`, [`crate::hold`]). Same path as a run:
/// the scenario's `cluster:`/`contrail:` with `opts`' profile and faults, rbacMapping,
/// bindings, NetworkPolicy creation order.
pub(crate) async fn prepare(
    loaded: &LoadedScenario,
    file_arg: &str,
    opts: &RunOptions,
) -> Result<crate::hold::Prepared, String> {
    let up_ms = std::sync::atomic::AtomicU64::new(0);
    let emit = |e: Event| {
        if let Event::ClusterUp { ms } = e {
            up_ms.store(ms, std::sync::atomic::Ordering::Relaxed);
        }
    };
    let s = Session::start(loaded, file_arg, opts, &emit).await?;
    Ok(crate::hold::Prepared {
        cluster: s.cluster,
        spec: s.spec,
        order: s.order,
        rbac_mapping: s.rbac_mapping,
        cluster_up_ms: up_ms.load(std::sync::atomic::Ordering::Relaxed),
    })
}

/// How long a scenario may take before it is abandoned as hung: a generous base (the slowest
/// conformance scenario takes a few seconds) plus every wait the scenario itself states, so a
/// long `holdFor` is never cut short. A hung component must give exit 3, never a stalled CI job.
pub fn scenario_budget(s: &harness_scenario::model::Scenario) -> Duration {
    use harness_scenario::model::Expectation;
    let mut stated = Duration::ZERO;
    for step in &s.steps {
        let step = &step.value;
        stated += step.wait.map_or(Duration::ZERO, |w| w.0);
        for e in &step.expect {
            match &e.value {
                Expectation::Reachability(r) => {
                    stated += r.within.map_or(Duration::ZERO, |w| w.0);
                    stated += r.hold_for.map_or(Duration::ZERO, |w| w.0);
                }
                Expectation::Contrail(list) => {
                    for a in list {
                        stated += a.within.map_or(Duration::ZERO, |w| w.0);
                    }
                }
                Expectation::Rbac(_) => {}
            }
        }
    }
    Duration::from_secs(120) + stated
}

/// The result of a scenario that did not finish within its budget: its future (and with it
/// every server and task of its cluster) has been dropped; the report says so (exit 3).
pub fn abandoned(input: &ScenarioInput, started: Instant, budget: Duration) -> ScenarioResult {
    unfinished(
        input,
        started,
        format!(
            "did not finish within {} s: abandoned, its cluster stopped (a component hung; rerun it with `harness run {}`)",
            budget.as_secs(),
            input.file_arg
        ),
    )
}

/// A scenario that ended without steps, with `why` as its setup error.
fn unfinished(input: &ScenarioInput, started: Instant, why: String) -> ScenarioResult {
    let s = &input.loaded.scenario;
    ScenarioResult {
        name: s.name.clone(),
        file: input.file_arg.clone(),
        labels: s.labels.clone(),
        description: s.description.clone(),
        duration_ms: started.elapsed().as_millis() as u64,
        setup_error: Some(why),
        steps: Vec::new(),
    }
}
