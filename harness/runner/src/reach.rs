//! Reachability checks: expand the peers on the oracle's model of the observed cluster, probe
//! every cell through the dataplane in a seeded order, wait for cells to settle (`within`),
//! keep them settled (`holdFor`), check path assertions, re-probe failures with a trace for
//! evidence (a failure that passes on the re-probe is flaky, never hidden).

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use harness_oracle::{Cluster, Endpoint, EndpointKind, Expectation, Oracle};
use harness_report::{CellResult, CheckKind, CheckResult, MatrixShape, Outcome};
use harness_scenario::model::{LoopbackPolicy, PathAssertion, PathEncap, ReachabilityCheck};
use harness_scenario::{Peer, PortRef, PortSpec, Profile, TruthTable};

use crate::evidence::{CellEvidence, EvidenceSink, selecting_policies};
use crate::expect::{self, Want};
use crate::provider::{Observed, Origin, ProbeExecutor, ProbeOutcome, ProbeRequest};
use crate::seed::Rng;
use crate::select::Selection;

/// Default `within` of a reachability check.
pub const DEFAULT_WITHIN: Duration = Duration::from_secs(5);
/// Pause between probe rounds while cells settle or hold.
const ROUND_PAUSE: Duration = Duration::from_millis(10);
/// Unsettled cells stop waiting for `within` once the cluster has been quiescent (the same
/// [`ReachabilityRun::quiescence`] stamp before and after each round) for this many
/// consecutive probe rounds …
pub const QUIET_ROUNDS: u32 = 10;
/// … and at least this long: nothing left can change their verdict, so waiting out the rest
/// of `within` only costs time (a fault run has hundreds of such cells).
pub const QUIET_MIN: Duration = Duration::from_millis(200);

/// Everything a reachability check needs.
pub struct ReachabilityRun<'a> {
    /// The check's id (`baseline/reachability-1`).
    pub id: &'a str,
    /// The step's name (for the default title).
    pub step: &'a str,
    /// The check.
    pub check: &'a ReachabilityCheck,
    /// The oracle's model of the observed cluster.
    pub model: &'a Cluster,
    /// The profile expected verdicts come from (`--expect-profile`; `upstream`, the
    /// blueprint, unless asked otherwise).
    pub profile: Profile,
    /// The profile the cluster under test runs (`--contrail-profile`). When expectations are
    /// `upstream`, failed cells are also evaluated under `r5.0`, and those whose observation
    /// the `r5.0` oracle predicts are explained by its deviations' names
    /// ([`CellResult::deviations`]); against an `r5.0` cluster, passed cells where `r5.0`
    /// predicts a different verdict are annotated too.
    pub cluster_profile: Profile,
    /// A fingerprint of every state that can change a verdict (API objects, config changes,
    /// vrouter programming), `None` while the cluster is not settled. Equal stamps around a
    /// probe round mean nothing moved; after [`QUIET_ROUNDS`] such rounds (and [`QUIET_MIN`])
    /// unsettled cells fail without waiting out `within`. `None` here: always wait `within`
    /// (a dataplane whose verdicts may change without the stamp seeing it).
    pub quiescence: Option<&'a (dyn Fn() -> Option<u64> + Sync)>,
    /// The dataplane.
    pub executor: &'a dyn ProbeExecutor,
    /// Orders the probes.
    pub rng: &'a mut Rng,
    /// When the step's changes were made (convergence times are measured from here).
    pub changed_at: Instant,
    /// `--only`.
    pub selection: &'a Selection,
    /// Evidence folders.
    pub evidence: &'a EvidenceSink,
    /// The command that reruns one cell, given its key (`<check-id>[<from> -> <to> <port>]`).
    pub rerun: &'a (dyn Fn(&str) -> String + Sync),
}

/// A cell's key for `--only`: `<check-id>[<from> -> <to> <port>]`.
pub fn cell_key(check_id: &str, from: &str, to: &str, port: &str) -> String {
    format!("{check_id}[{from} -> {to} {port}]")
}

struct Cell {
    from: Endpoint,
    to: Endpoint,
    port: PortSpec,
    oracle: Expectation,
    want: Option<Want>,
    expected: String,
    note: Option<String>,
    request: Result<ProbeRequest, String>,
    // Progress.
    attempts: u32,
    last: Option<Observed>,
    settled_ms: Option<u64>,
    broke: Option<String>,
    path_problem: Option<String>,
    traced: Option<ProbeOutcome>,
    flaky: bool,
}

fn origin(ep: &Endpoint) -> Option<Origin> {
    match ep.kind() {
        EndpointKind::Pod { .. } => Some(Origin::Pod(ep.to_string())),
        EndpointKind::Host(h) => Some(Origin::Host(h.clone())),
        EndpointKind::Node(n) => Some(Origin::Node(n.clone())),
        EndpointKind::External(e) => Some(Origin::External(e.clone())),
        _ => None,
    }
}

/// The port number a probe to `to` uses for `port`, or why there is none.
fn port_number(model: &Cluster, to: &Endpoint, port: &PortSpec) -> Result<u16, String> {
    match &port.port {
        None => Ok(0),
        Some(PortRef::Number(n)) => Ok(*n),
        Some(PortRef::Name(name)) => match to.kind() {
            EndpointKind::Pod {
                namespace,
                name: pod,
            } => model
                .pod(namespace, pod)
                .and_then(|p| p.named_port(name, port.protocol))
                .ok_or_else(|| format!("{to} declares no {} port named `{name}`", port.protocol)),
            EndpointKind::Service {
                namespace,
                name: svc,
            }
            | EndpointKind::LoadBalancer {
                namespace,
                name: svc,
            } => model
                .service(namespace, svc)
                .and_then(|s| {
                    s.ports.iter().find(|p| {
                        p.name.as_deref() == Some(name.as_str()) && p.protocol == port.protocol
                    })
                })
                .map(|p| p.port)
                .ok_or_else(|| format!("{to} has no {} port named `{name}`", port.protocol)),
            _ => Err(format!(
                "a named port needs a pod or service destination, not {to}"
            )),
        },
    }
}

/// The probe for one cell: where it starts, the address and port it targets (named ports
/// resolved on the model), or why the cell cannot be probed. Shared with `harness probe`
/// ([`crate::hold`]), so a held cluster resolves peers exactly as a run does.
pub fn request(
    model: &Cluster,
    from: &Endpoint,
    to: &Endpoint,
    port: &PortSpec,
) -> Result<ProbeRequest, String> {
    let origin = origin(from).ok_or_else(|| format!("a probe cannot start at {from}"))?;
    let number = match to.kind() {
        EndpointKind::NodePort {
            namespace, name, ..
        } => node_port_number(model, namespace, name, port)?,
        _ => port_number(model, to, port)?,
    };
    Ok(ProbeRequest {
        from: origin,
        to: to.address(),
        protocol: port.protocol,
        port: number,
        trace: false,
    })
}

/// The node port a `nodeport:` cell probes on the node's address: the scenario names the
/// Service port (by number or name), as the oracle reads it; a number that is itself one of
/// the service's node ports is taken as is, and a number the service does not publish is
/// probed as given (nothing listens there).
fn node_port_number(
    model: &Cluster,
    namespace: &str,
    name: &str,
    port: &PortSpec,
) -> Result<u16, String> {
    let svc = model
        .service(namespace, name)
        .ok_or_else(|| format!("service {namespace}/{name} is not in the cluster"))?;
    let same = |p: &&harness_oracle::model::ServicePort| p.protocol == port.protocol;
    match &port.port {
        None => Ok(0),
        Some(PortRef::Number(n)) => Ok(svc
            .ports
            .iter()
            .filter(same)
            .find(|p| p.node_port == Some(*n))
            .or_else(|| svc.ports.iter().filter(same).find(|p| p.port == *n))
            .and_then(|p| p.node_port)
            .unwrap_or(*n)),
        Some(PortRef::Name(want)) => svc
            .ports
            .iter()
            .filter(same)
            .find(|p| p.name.as_deref() == Some(want.as_str()))
            .and_then(|p| p.node_port)
            .ok_or_else(|| {
                format!(
                    "service {namespace}/{name} has no {} node port named `{want}`",
                    port.protocol
                )
            }),
    }
}

fn wants_trace(path: Option<&PathAssertion>) -> bool {
    path.is_some_and(|p| p.encap.is_some() || p.snat.is_some() || !p.via.is_empty())
}

/// Checks the path of a traced, allowed probe.
fn path_problem(path: &PathAssertion, probe: &ProbeOutcome) -> Option<String> {
    if let Some(encap) = path.encap {
        let tunnels: Vec<&String> = probe
            .underlay_encaps
            .iter()
            .filter(|e| *e != "none")
            .collect();
        let ok = match encap {
            PathEncap::None => tunnels.is_empty(),
            PathEncap::Tunnel => !tunnels.is_empty(),
            PathEncap::MplsOverUdp => tunnels.iter().any(|t| t.starts_with("MPLSoUDP")),
            PathEncap::MplsOverGre => tunnels.iter().any(|t| t.starts_with("MPLSoGRE")),
            PathEncap::Vxlan => tunnels.iter().any(|t| t.starts_with("VXLAN")),
        };
        if !ok {
            let seen = if probe.underlay_encaps.is_empty() {
                "the probe never crossed the underlay".to_string()
            } else {
                format!(
                    "underlay encapsulation {}",
                    probe.underlay_encaps.join(", ")
                )
            };
            return Some(format!(
                "path: expected encap {}, {seen}",
                serde_json::to_value(encap).ok()?.as_str()?
            ));
        }
    }
    if let Some(snat) = path.snat {
        let snatted = probe.nat.iter().any(|n| n.starts_with("fabric SNAT"));
        if snat != snatted {
            return Some(format!(
                "path: expected {}fabric SNAT, {}",
                if snat { "" } else { "no " },
                if snatted {
                    format!("observed {}", probe.nat.join(", "))
                } else {
                    "the source was not translated".into()
                }
            ));
        }
    }
    let mut rest = probe.endpoints.iter();
    for inst in &path.via {
        if !rest.any(|e| e == inst) {
            return Some(format!(
                "path: expected to traverse {} in order, went through {}",
                path.via.join(", "),
                if probe.endpoints.is_empty() {
                    "no service instance".into()
                } else {
                    probe.endpoints.join(", ")
                }
            ));
        }
    }
    None
}

/// Runs the check and returns its result (never fails: problems become cells).
pub async fn run(r: ReachabilityRun<'_>) -> CheckResult {
    let started = Instant::now();
    let check = r.check;
    let oracle = Oracle::new(r.model, r.profile);
    let table = check
        .table
        .as_ref()
        .and_then(|t| TruthTable::parse(&t.value).ok());
    let (sources, dests): (Vec<Peer>, Vec<Peer>) = match &table {
        Some(t) if check.sources().is_empty() => (t.rows.clone(), t.columns.clone()),
        _ => (check.sources().to_vec(), check.destinations().to_vec()),
    };
    let title = check.name.clone().unwrap_or_else(|| {
        format!(
            "{}: {} → {}",
            r.step,
            summarize(&sources),
            summarize(&dests)
        )
    });
    let mut result = CheckResult {
        id: r.id.to_string(),
        kind: CheckKind::Reachability,
        title,
        duration_ms: 0,
        cells: Vec::new(),
        message: None,
        matrix: None,
    };
    let expand = |peers: &[Peer]| -> Result<Vec<Endpoint>, String> {
        let mut out = Vec::new();
        for p in peers {
            out.extend(r.model.expand(p).map_err(|e| format!("peer {p}: {e}"))?);
        }
        Ok(out)
    };
    let (from_eps, to_eps) = match (expand(&sources), expand(&dests)) {
        (Ok(f), Ok(t)) => (f, t),
        (Err(e), _) | (_, Err(e)) => {
            result.cells.push(CellResult {
                from: summarize(&sources),
                to: summarize(&dests),
                port: String::new(),
                expected: "a cell per peer pair".into(),
                observed: String::new(),
                outcome: Outcome::Failed,
                explanation: format!("the check names something the cluster does not have: {e}"),
                observed_detail: None,
                converged_after_ms: None,
                attempts: 0,
                loopback: false,
                evidence: Vec::new(),
                rerun: None,
                deviations: Vec::new(),
            });
            result.duration_ms = started.elapsed().as_millis() as u64;
            return result;
        }
    };
    let trace = wants_trace(check.path.as_ref());
    let mut cells: Vec<Cell> = Vec::new();
    for port in &check.ports {
        for from in &from_eps {
            for to in &to_eps {
                let (fl, tl, pl) = (from.to_string(), to.to_string(), port.to_string());
                if !r.selection.cell(&cell_key(r.id, &fl, &tl, &pl)) {
                    continue;
                }
                let exp = oracle.evaluate(from, to, port);
                let oracle_word = expect::verdict_word(exp.verdict);
                let stated = expect::stated_verdict(check, table.as_ref(), &fl, &tl, port);
                let (want, expected, note) = match stated {
                    None => (
                        Some(Want::from_oracle(exp.verdict)),
                        oracle_word.to_string(),
                        None,
                    ),
                    Some(None) => (None, "?".to_string(), None),
                    Some(Some(v)) => {
                        let disagrees = !expect::oracle_agrees(v, exp.verdict);
                        let mut note = disagrees.then(|| {
                            format!(
                                "the scenario says {}, the oracle expects {oracle_word}",
                                expect::expected_word(v)
                            )
                        });
                        if let Some(reason) = expect::exception_reason(check, &fl, &tl, port) {
                            note = Some(match note {
                                Some(n) => format!("{n} (exception: {reason})"),
                                None => format!("exception: {reason}"),
                            });
                        }
                        (
                            Want::from_stated(v),
                            expect::expected_word(v).to_string(),
                            note,
                        )
                    }
                };
                let mut request = request(r.model, from, to, port);
                if let Ok(req) = &mut request {
                    req.trace = trace;
                }
                if exp.loopback && check.loopback == LoopbackPolicy::Skip {
                    request = Err("loopback cell (loopback: skip)".into());
                }
                // A probe this dataplane cannot make here (SCTP without kernel SCTP, node
                // ports on the netns dataplane) is skipped with the reason, never passed.
                if let Ok(req) = &request
                    && let Some(why) = r.executor.cannot_probe(req, to, &exp.path.via)
                {
                    request = Err(why);
                }
                cells.push(Cell {
                    from: from.clone(),
                    to: to.clone(),
                    port: port.clone(),
                    oracle: exp,
                    want,
                    expected,
                    note,
                    request,
                    attempts: 0,
                    last: None,
                    settled_ms: None,
                    broke: None,
                    path_problem: None,
                    traced: None,
                    flaky: false,
                });
            }
        }
    }

    // Eventually: probe unsettled cells until they match or `within` runs out.
    let within = check.within.map(|d| d.0).unwrap_or(DEFAULT_WITHIN);
    let deadline = r.changed_at.max(started) + within;
    // Rounds run entirely inside one unchanged, settled cluster state, and since when.
    let mut quiet: Option<(u64, u32, Instant)> = None;
    let mut gave_up_quiet: Option<(u32, u128, u128)> = None;
    loop {
        let stamp_before = r.quiescence.and_then(|q| q());
        // Loopback cells that are only reported are probed once: they never hold a check up.
        let report_only = |c: &Cell| {
            c.oracle.loopback && check.loopback == LoopbackPolicy::Report && c.attempts > 0
        };
        let mut pending: Vec<usize> = (0..cells.len())
            .filter(|&i| {
                cells[i].request.is_ok() && cells[i].settled_ms.is_none() && !report_only(&cells[i])
            })
            .collect();
        if pending.is_empty() {
            break;
        }
        r.rng.shuffle(&mut pending);
        let requests: Vec<ProbeRequest> = pending
            .iter()
            .filter_map(|&i| cells[i].request.as_ref().ok().cloned())
            .collect();
        let outcomes = r.executor.probe_batch(&requests);
        let now_ms = r.changed_at.elapsed().as_millis() as u64;
        for (&i, out) in pending.iter().zip(outcomes) {
            let c = &mut cells[i];
            c.attempts += 1;
            let obs = out.observed();
            let matched = match (&obs, c.want) {
                (Observed::Inconclusive { .. }, _) => false,
                (_, None) => true,
                (o, Some(w)) => w.accepts(o.word()),
            };
            if matched {
                c.settled_ms = Some(now_ms);
            }
            if trace {
                c.traced = Some(out.clone());
            }
            c.last = Some(obs);
        }
        if Instant::now() >= deadline {
            break;
        }
        let stamp_after = r.quiescence.and_then(|q| q());
        quiet = match (stamp_before, stamp_after, quiet) {
            (Some(b), Some(a), Some((s, n, since))) if b == a && a == s => Some((s, n + 1, since)),
            (Some(b), Some(a), _) if b == a => Some((a, 1, Instant::now())),
            _ => None,
        };
        let inconclusive = pending
            .iter()
            .any(|&i| matches!(cells[i].last, Some(Observed::Inconclusive { .. })));
        if let Some((_, rounds, since)) = quiet
            && rounds >= QUIET_ROUNDS
            && since.elapsed() >= QUIET_MIN
            && !inconclusive
        {
            let into = r.changed_at.max(started).elapsed().as_millis();
            gave_up_quiet = Some((rounds, since.elapsed().as_millis(), into));
            break;
        }
        tokio::time::sleep(ROUND_PAUSE).await;
    }

    // Path assertions on cells that connected as expected.
    if let Some(path) = &check.path {
        for c in cells.iter_mut().filter(|c| c.settled_ms.is_some()) {
            if !matches!(c.last, Some(Observed::Allow { .. })) {
                continue;
            }
            if trace && let Some(t) = &c.traced {
                c.path_problem = path_problem(path, t);
            }
            if c.path_problem.is_none()
                && let Some(spread) = &path.backends
                && let Ok(req) = &c.request
            {
                let samples = vec![
                    ProbeRequest {
                        trace: false,
                        ..req.clone()
                    };
                    spread.samples.max(1) as usize
                ];
                let seen: BTreeSet<String> = r
                    .executor
                    .probe_batch(&samples)
                    .into_iter()
                    .filter_map(|o| match o.observed() {
                        Observed::Allow { backend } => backend,
                        _ => None,
                    })
                    .collect();
                c.attempts += spread.samples;
                let want: BTreeSet<String> = spread.exactly.iter().cloned().collect();
                if !want.is_empty() && seen != want {
                    c.path_problem = Some(format!(
                        "backends: expected exactly {}, answered {}",
                        join(&want),
                        join(&seen)
                    ));
                } else if let Some(n) = spread.at_least
                    && (seen.len() as u32) < n
                {
                    c.path_problem = Some(format!(
                        "backends: expected at least {n} distinct, answered {} ({} samples)",
                        join(&seen),
                        spread.samples
                    ));
                }
            }
        }
    }

    // Consistently: settled cells must keep their verdict for `holdFor`.
    if let Some(hold) = check.hold_for.map(|d| d.0) {
        let until = Instant::now() + hold;
        let hold_start = Instant::now();
        while Instant::now() < until {
            let mut idx: Vec<usize> = (0..cells.len())
                .filter(|&i| cells[i].settled_ms.is_some() && cells[i].broke.is_none())
                .collect();
            if idx.is_empty() {
                break;
            }
            r.rng.shuffle(&mut idx);
            let requests: Vec<ProbeRequest> = idx
                .iter()
                .filter_map(|&i| {
                    cells[i].request.as_ref().ok().map(|q| ProbeRequest {
                        trace: false,
                        ..q.clone()
                    })
                })
                .collect();
            let outs = r.executor.probe_batch(&requests);
            for (&i, out) in idx.iter().zip(outs) {
                let c = &mut cells[i];
                c.attempts += 1;
                let obs = out.observed();
                let ok = c.want.is_none_or(|w| w.accepts(obs.word()));
                if !ok {
                    c.broke = Some(format!(
                        "did not hold: observed {} {} ms into holdFor",
                        obs.word(),
                        hold_start.elapsed().as_millis()
                    ));
                    c.last = Some(obs);
                }
            }
            tokio::time::sleep(ROUND_PAUSE).await;
        }
    }

    // Failing cells: re-probe with a trace for evidence; passing then is flaky.
    for c in cells.iter_mut() {
        let failing = c.request.is_ok()
            && !(c.oracle.loopback && check.loopback == LoopbackPolicy::Report)
            && (c.settled_ms.is_none() || c.broke.is_some() || c.path_problem.is_some());
        let evidence_wanted = r.evidence.wants(failing) && c.request.is_ok();
        if !(failing || evidence_wanted) {
            continue;
        }
        let Ok(req) = &c.request else { continue };
        let out = r
            .executor
            .probe_batch(&[ProbeRequest {
                trace: true,
                ..req.clone()
            }])
            .into_iter()
            .next()
            .unwrap_or_default();
        if failing && c.settled_ms.is_none() {
            c.attempts += 1;
            let obs = out.observed();
            let matched = !matches!(obs, Observed::Inconclusive { .. })
                && c.want.is_none_or(|w| w.accepts(obs.word()));
            if matched {
                c.flaky = true;
                c.settled_ms = Some(r.changed_at.elapsed().as_millis() as u64);
            }
            c.last = Some(obs);
        }
        c.traced = Some(out);
    }

    // Results.
    // The r5.0 oracle, built only when some cell needs it (failed cells under upstream
    // expectations; every cell of a run against an r5.0 cluster).
    let r50 = std::cell::OnceCell::new();
    let r50 = || r50.get_or_init(|| Oracle::new(r.model, Profile::R50));
    for c in &cells {
        let (fl, tl, pl) = (c.from.to_string(), c.to.to_string(), c.port.to_string());
        let key = cell_key(r.id, &fl, &tl, &pl);
        let mut explanation = c.oracle.explanation.to_string();
        if let Some(n) = &c.note {
            explanation = format!("{explanation} [{n}]");
        }
        let observed = c
            .last
            .as_ref()
            .map(|o| o.word().to_string())
            .unwrap_or_default();
        let mut detail = c.last.as_ref().and_then(Observed::detail);
        let outcome = match (&c.request, &c.last) {
            (Err(reason), _) => Outcome::Skipped {
                reason: reason.clone(),
            },
            (Ok(_), _) if c.want.is_none() => Outcome::Skipped {
                reason: "not checked (`?` in the table)".into(),
            },
            (Ok(_), Some(Observed::Inconclusive { reason })) if c.settled_ms.is_none() => {
                Outcome::Inconclusive {
                    reason: reason.clone(),
                }
            }
            (Ok(_), _) => {
                let failed =
                    c.settled_ms.is_none() || c.broke.is_some() || c.path_problem.is_some();
                if let Some(b) = c.broke.as_ref().or(c.path_problem.as_ref()) {
                    detail = Some(match detail {
                        Some(d) => format!("{b}; {d}"),
                        None => b.clone(),
                    });
                }
                if c.oracle.loopback && check.loopback == LoopbackPolicy::Report && failed {
                    Outcome::Ignored {
                        reason: "loopback cell: reported, not judged (loopback: report)".into(),
                    }
                } else if failed {
                    if c.settled_ms.is_none()
                        && let Some((rounds, ms, into)) = gave_up_quiet
                    {
                        let waited = format!(
                            "stopped waiting {into} ms into `within` {}: the cluster did not change for {rounds} probe rounds ({ms} ms)",
                            humantime(within)
                        );
                        detail = Some(match detail {
                            Some(d) => format!("{d}; {waited}"),
                            None => waited,
                        });
                    }
                    Outcome::Failed
                } else if c.flaky {
                    Outcome::Flaky
                } else {
                    Outcome::Passed
                }
            }
        };
        let mut deviations = Vec::new();
        if r.profile != Profile::R50
            && let Some((names, note)) = r50_annotation(
                r50,
                c,
                &outcome,
                &observed,
                r.cluster_profile == Profile::R50,
            )
        {
            explanation = format!("{explanation} [{note}]");
            deviations = names;
        }
        let notable = matches!(
            outcome,
            Outcome::Failed | Outcome::Flaky | Outcome::Inconclusive { .. }
        );
        let mut evidence = Vec::new();
        if r.evidence.wants(notable)
            && let Some(t) = &c.traced
        {
            let mut pods: Vec<String> = Vec::new();
            for ep in [&c.from, &c.to] {
                if ep.is_pod() {
                    pods.push(ep.to_string());
                }
            }
            pods.extend(c.oracle.path.backends.iter().cloned());
            let oracle_text = format!(
                "expected {} ({} profile)\n{}\nexpected path: underlay {}, snat {}, via [{}], backends [{}]{}",
                c.expected,
                r.profile,
                explanation,
                c.oracle.path.underlay.as_str(),
                c.oracle.path.snat,
                c.oracle.path.via.join(", "),
                c.oracle.path.backends.join(", "),
                if c.oracle.deviations.is_empty() {
                    String::new()
                } else {
                    format!(
                        "\nr5.0 deviations: {}",
                        c.oracle
                            .deviations
                            .iter()
                            .map(|d| d.name())
                            .collect::<Vec<_>>()
                            .join(", ")
                    )
                }
            );
            if let Ok(files) = r.evidence.write(&CellEvidence {
                check_id: r.id,
                from: &fl,
                to: &tl,
                port: &pl,
                probe: t,
                oracle: oracle_text,
                policies: selecting_policies(r.model, &pods),
            }) {
                evidence = files;
            }
        }
        result.cells.push(CellResult {
            from: fl,
            to: tl,
            port: pl,
            expected: c.expected.clone(),
            observed,
            outcome,
            explanation,
            observed_detail: detail,
            converged_after_ms: c.settled_ms,
            attempts: c.attempts,
            loopback: c.oracle.loopback,
            evidence,
            rerun: notable.then(|| (r.rerun)(&key)),
            deviations,
        });
    }
    let dedup = |v: Vec<String>| {
        let mut seen = BTreeSet::new();
        v.into_iter()
            .filter(|x| seen.insert(x.clone()))
            .collect::<Vec<_>>()
    };
    result.matrix = Some(MatrixShape {
        rows: dedup(from_eps.iter().map(ToString::to_string).collect()),
        columns: dedup(to_eps.iter().map(ToString::to_string).collect()),
        ports: check.ports.iter().map(ToString::to_string).collect(),
    });
    if result.cells.is_empty() {
        result.message = Some("no cell selected".into());
    }
    result.duration_ms = started.elapsed().as_millis() as u64;
    result
}

/// The r5.0 reading of a judged cell, when expectations are not r5.0's: for a cell that failed
/// on its verdict, the deviations that explain the observation (the r5.0 oracle predicts
/// exactly it, and its verdict differs from upstream because of them); against an r5.0
/// cluster, for a passed cell, the deviations r5.0 predicts here that the cluster did not
/// show. Returns the names and the note for the explanation.
fn r50_annotation<'o>(
    r50: impl FnOnce() -> &'o Oracle<'o>,
    c: &Cell,
    outcome: &Outcome,
    observed: &str,
    cluster_is_r50: bool,
) -> Option<(Vec<String>, String)> {
    let verdict_failed = matches!(outcome, Outcome::Failed)
        && c.settled_ms.is_none()
        && c.broke.is_none()
        && c.path_problem.is_none();
    let passed = matches!(outcome, Outcome::Passed | Outcome::Flaky);
    if !(verdict_failed || passed && cluster_is_r50) {
        return None;
    }
    let e = r50().evaluate(&c.from, &c.to, &c.port);
    if e.deviations.is_empty() {
        return None;
    }
    let names: Vec<String> = e.deviations.iter().map(|d| d.name().to_string()).collect();
    let predicted = Want::from_oracle(e.verdict).accepts(observed);
    if verdict_failed && predicted {
        let note = format!(
            "explained by r5.0 deviation{}: {}",
            if names.len() == 1 { "" } else { "s" },
            names.join(", ")
        );
        Some((names, note))
    } else if passed && !predicted {
        let note = format!(
            "r5.0 predicts {} here (deviation{}: {}), but the cluster behaved as upstream",
            expect::verdict_word(e.verdict),
            if names.len() == 1 { "" } else { "s" },
            names.join(", ")
        );
        Some((names, note))
    } else {
        None
    }
}

/// `5s`, `250ms`: a `within` for people.
fn humantime(d: Duration) -> String {
    if d.subsec_millis() == 0 {
        format!("{}s", d.as_secs())
    } else {
        format!("{}ms", d.as_millis())
    }
}

fn join(s: &BTreeSet<String>) -> String {
    if s.is_empty() {
        "none".into()
    } else {
        s.iter().cloned().collect::<Vec<_>>().join(", ")
    }
}

/// A short list of peers for titles.
pub fn summarize(peers: &[Peer]) -> String {
    let names: Vec<String> = peers.iter().map(|p| p.to_string()).collect();
    if names.len() > 4 {
        format!("{}, … ({} peers)", names[..3].join(", "), names.len())
    } else {
        names.join(", ")
    }
}

/// Counts of outcomes, for progress lines.
pub fn tally(check: &CheckResult) -> BTreeMap<&'static str, usize> {
    let mut m = BTreeMap::new();
    for c in &check.cells {
        *m.entry(c.outcome.as_str()).or_insert(0) += 1;
    }
    m
}
