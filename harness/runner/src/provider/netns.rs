//! The `netns` dataplane (`--dataplane netns`) as a [`ProbeExecutor`]: the sim provider's
//! cluster stays the control plane (kube-sim, the mock Contrail, kube-manager, the node
//! agents, the model [`Dataplane`] following the config DB), and [`NetnsDataplane`] puts its
//! pods, nodes, fabric hosts and external clients into Linux network namespaces, with
//! user-space vrouters forwarding real frames through the *same* `Arc<Mutex<Dataplane>>`.
//! Probes are real kernel sockets: the probe agent (`harness-agent`) serves every namespace's
//! declared ports and runs each source's batch inside its namespace.
//!
//! ```text
//!  config DB ──follow_db──► Dataplane (model) ◄── every frame ── vrouter threads (AF_PACKET)
//!                               ▲                                   │ taps, vhost0, eth0
//!             NetnsExecutor::sync (pods in/out)            pod / node / host namespaces
//!                                                                   ▲
//!             NetnsExecutor::probe_batch ── one batch per source ───┘ (real sockets)
//! ```
//!
//! * One batch per source (pod, node, host, client), batches of different sources in
//!   parallel; each batch runs up to [`IN_FLIGHT`] sockets at once in the source's namespace.
//! * Words: `connected` → allow (with the backend the server named), `refused` (RST, ICMP
//!   port/protocol/host unreachable) → reject, `timeout` → drop, anything else → inconclusive.
//! * A cell this machine cannot probe (SCTP without kernel SCTP, a source or destination the
//!   netns dataplane does not wire, a path through a service instance it could not wire) is
//!   reported by [`ProbeExecutor::cannot_probe`], so the runner skips it with the reason:
//!   never a pass. Service instances are namespaces whose kernel forwards the chain.
//! * Traced probes (evidence, path assertions) run one at a time with the underlay capture
//!   cleared first: their pcap holds that cell's frames only, the underlay encapsulation and
//!   fabric SNAT are read off those real frames, and the hops, gate decisions and endpoints
//!   come from the model dataplane's trace of the same cell (the same forwarding core); the
//!   service instances traversed are the model's, less those whose namespace's kernel
//!   forwarded and dropped nothing during the probe (its nftables counters), so `path.via`
//!   fails when the real packets skipped an instance.
//! * Every frame of the run is also kept (up to [`MAX_RUN_FRAMES`]) for the scenario's
//!   `underlay.pcap` ([`NetnsExecutor::write_underlay_pcap`]).
//! * Ctrl-C: every live run's [`harness_netns::CleanupHandle`] is registered here;
//!   [`cleanup_live`] tears them all down (the CLI calls it on interrupt). Drop (and so a
//!   panic) cleans up too; a killed run's namespaces are swept by the next run.

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use harness_netns::{CleanupHandle, NetVerdict, NetnsDataplane, NetnsError, NetnsOptions};
use harness_vrouter_sim::wire::{encap, frame};
use harness_vrouter_sim::{CapturedFrame, Dataplane, EndpointRef};

use super::sim::ModelDataplane;
use super::{Observed, Origin, ProbeExecutor, ProbeOutcome, ProbeRequest};

/// How long a real probe waits for an answer before it counts as dropped.
pub const PROBE_TIMEOUT: Duration = Duration::from_millis(1000);
/// Sockets in flight at once within one source's batch.
pub const IN_FLIGHT: usize = 64;
/// Sources probed at once (one thread each, entering its namespace).
const PARALLEL_SOURCES: usize = 16;
/// Frames kept for a scenario's `underlay.pcap`; later frames are counted, not kept.
pub const MAX_RUN_FRAMES: usize = 200_000;
/// After a traced probe returns, how long its last frames may take to reach the capture
/// thread on the underlay bridge.
const CAPTURE_SETTLE: Duration = Duration::from_millis(20);

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The cleanup handles of the netns dataplanes alive in this process, by run id.
static LIVE: Mutex<Vec<CleanupHandle>> = Mutex::new(Vec::new());
/// Every netns run id this process started (cleaned up or not), in order.
static STARTED: Mutex<Vec<String>> = Mutex::new(Vec::new());

/// Whether this process may build the netns dataplane.
///
/// # Errors
/// The message names the missing capability (an infrastructure error: exit 3).
pub fn check_capabilities() -> Result<(), String> {
    harness_netns::check_capabilities().map_err(|e| e.to_string())
}

/// Deletes the namespaces of earlier runs whose process is gone (killed, crashed); returns
/// the namespaces removed. Namespaces of live runs are never touched.
///
/// # Errors
/// A failing `ip netns del`, as text.
pub fn sweep_leftovers() -> Result<Vec<String>, String> {
    harness_netns::sweep_leftovers()
        .map(|r| r.namespaces)
        .map_err(|e| format!("sweeping the namespaces of dead runs: {e}"))
}

/// Tears down every netns dataplane still alive in this process (the Ctrl-C path: a run that
/// was cancelled mid-probe may still be held by a blocking thread). Idempotent. Returns the
/// errors, one line each.
pub fn cleanup_live() -> Vec<String> {
    let live: Vec<CleanupHandle> = std::mem::take(&mut *lock(&LIVE));
    live.iter()
        .filter_map(|h| {
            h.cleanup()
                .err()
                .map(|e| format!("netns run {}: {e}", h.run_id()))
        })
        .collect()
}

/// The netns run ids this process started (their namespaces are `h<run>-*`).
pub fn started_runs() -> Vec<String> {
    lock(&STARTED).clone()
}

/// Namespaces of this process's netns runs that still exist (`ip netns list`): empty once
/// every run was cleaned up.
pub fn leftover_namespaces() -> Vec<String> {
    let prefixes: Vec<String> = started_runs().iter().map(|r| format!("h{r}-")).collect();
    harness_netns::ip::list_netns()
        .into_iter()
        .filter(|n| prefixes.iter().any(|p| n.starts_with(p)))
        .collect()
}

/// The frames kept for the scenario's `underlay.pcap`.
#[derive(Default)]
struct RunCapture {
    frames: Vec<CapturedFrame>,
    not_kept: u64,
}

/// The netns dataplane of one scenario's cluster, as a [`ProbeExecutor`].
///
/// # Usage
///
/// ```no_run
/// # async fn demo(cluster: &harness_runner::provider::sim::SimCluster) -> Result<(), String> {
/// use harness_runner::provider::{Origin, ProbeExecutor, ProbeRequest};
/// use harness_runner::provider::netns::NetnsExecutor;
/// // After the resources are applied and the cluster converged (pods wired in the model):
/// let net = NetnsExecutor::up(cluster.dataplane(), cluster.model(), 24).map_err(|e| e.to_string())?;
/// let out = net.probe_batch(&[ProbeRequest {
///     from: Origin::Pod("x/a".into()),
///     to: "10.47.255.250".parse().unwrap(),
///     protocol: harness_scenario::Protocol::Tcp,
///     port: 80,
///     trace: false,
/// }]);
/// println!("{}", out[0].observed().word());
/// net.write_underlay_pcap("reports/x/underlay.pcap".as_ref()).map_err(|e| e.to_string())?;
/// net.cleanup().map_err(|e| e.to_string())?; // also on drop
/// # Ok(()) }
/// ```
pub struct NetnsExecutor {
    net: NetnsDataplane,
    model: ModelDataplane,
    dp: Arc<Mutex<Dataplane>>,
    run_capture: Mutex<RunCapture>,
    /// Traced probes run one at a time (the capture is cleared for each).
    traced: Mutex<()>,
    timeout: Duration,
}

impl std::fmt::Debug for NetnsExecutor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NetnsExecutor")
            .field("run_id", &self.net.run_id())
            .finish_non_exhaustive()
    }
}

impl NetnsExecutor {
    /// Builds the namespaces of `dp`'s topology and wires the pods placed so far, with the
    /// underlay captured; `model` is the same dataplane as a probe executor (for the traces of
    /// evidence). Registers the run for [`cleanup_live`].
    ///
    /// # Errors
    /// A missing capability, a failing `ip` command or socket (whatever was created is
    /// deleted again).
    pub fn up(
        model: ModelDataplane,
        dp: Arc<Mutex<Dataplane>>,
        underlay_prefix_len: u8,
    ) -> Result<Self, NetnsError> {
        let net = NetnsDataplane::up(
            Arc::clone(&dp),
            &NetnsOptions {
                capture: true,
                underlay_prefix_len,
                // Nodes answer pods and reach fabric-forwarded pods through their vrouter.
                route_node_stacks: true,
                ..NetnsOptions::default()
            },
        )?;
        lock(&STARTED).push(net.run_id().to_owned());
        lock(&LIVE).push(net.cleanup_handle());
        Ok(NetnsExecutor {
            net,
            model,
            dp,
            run_capture: Mutex::new(RunCapture::default()),
            traced: Mutex::new(()),
            timeout: PROBE_TIMEOUT,
        })
    }

    /// The run id (`h<run>-*` namespaces).
    pub fn run_id(&self) -> &str {
        self.net.run_id()
    }

    /// The namespaces of the run now.
    pub fn namespaces(&self) -> Vec<String> {
        self.net.namespaces()
    }

    /// Wires pods the model placed since the last sync and unwires deleted ones (a step
    /// created or deleted pods). Probes sync too; calling it after each step's convergence
    /// turns a wiring failure into that step's error instead of inconclusive cells.
    ///
    /// # Errors
    /// As [`NetnsDataplane::sync`].
    pub fn sync(&self) -> Result<(), NetnsError> {
        self.net.sync().map(|_| ())
    }

    /// Writes every frame seen on the underlay during the run as a pcap file (creating the
    /// folder). Returns how many frames it holds and how many were not kept
    /// (past [`MAX_RUN_FRAMES`]).
    ///
    /// # Errors
    /// The file system's.
    pub fn write_underlay_pcap(&self, path: &Path) -> std::io::Result<(usize, u64)> {
        self.bank_capture();
        let cap = lock(&self.run_capture);
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let file = std::io::BufWriter::new(std::fs::File::create(path)?);
        harness_vrouter_sim::write_pcap(&cap.frames, file)?;
        Ok((cap.frames.len(), cap.not_kept))
    }

    /// Stops the vrouters and servers and deletes the namespaces (also on drop).
    ///
    /// # Errors
    /// A failing `ip netns del` (the next run's sweep retries).
    pub fn cleanup(&self) -> Result<(), NetnsError> {
        let r = self.net.cleanup();
        self.unregister();
        r
    }

    fn unregister(&self) {
        let id = self.net.run_id();
        lock(&LIVE).retain(|h| h.run_id() != id);
    }

    /// Moves the frames captured so far into the run's capture and clears the live one.
    fn bank_capture(&self) -> Vec<CapturedFrame> {
        let frames = self.net.take_capture();
        let mut cap = lock(&self.run_capture);
        let room = MAX_RUN_FRAMES.saturating_sub(cap.frames.len());
        cap.not_kept += frames.len().saturating_sub(room) as u64;
        cap.frames.extend(frames.iter().take(room).cloned());
        frames
    }

    /// Runs `requests` (all from `from`) as one batch of real sockets in its namespace.
    /// Each request's observation, and the source address the answering agent saw (SNAT
    /// evidence), when one answered.
    fn real_batch(
        &self,
        from: &Origin,
        requests: &[&ProbeRequest],
    ) -> Vec<(Observed, Option<SocketAddrV4>)> {
        let src = endpoint_ref(from);
        let mut out: Vec<Option<(Observed, Option<SocketAddrV4>)>> = vec![None; requests.len()];
        // A destination outside the topology fails the whole batch before anything is sent:
        // mark its cells and run the rest (at most once per distinct address).
        for _ in 0..=requests.len() {
            let pending: Vec<usize> = (0..requests.len()).filter(|&i| out[i].is_none()).collect();
            if pending.is_empty() {
                break;
            }
            let specs = pending
                .iter()
                .map(|&i| harness_netns::ProbeSpec {
                    to: requests[i].to,
                    protocol: requests[i].protocol,
                    port: requests[i].port,
                    timeout: self.timeout,
                })
                .collect();
            match self.net.probe_batch(&src, specs, IN_FLIGHT) {
                Ok(verdicts) => {
                    for (&i, v) in pending.iter().zip(verdicts) {
                        let seen = match &v {
                            NetVerdict::Connected { source, .. } => *source,
                            _ => None,
                        };
                        out[i] = Some((observed(&v, self.timeout), seen));
                    }
                }
                Err(NetnsError::OutsideTopology(addr))
                    if pending.iter().any(|&i| requests[i].to == addr) =>
                {
                    for &i in pending.iter().filter(|&&i| requests[i].to == addr) {
                        out[i] = Some((
                            Observed::Inconclusive {
                                reason: format!(
                                    "not probed: {}",
                                    NetnsError::OutsideTopology(addr)
                                ),
                            },
                            None,
                        ));
                    }
                    continue;
                }
                Err(e) => {
                    for &i in &pending {
                        out[i] = Some((
                            Observed::Inconclusive {
                                reason: format!(
                                    "the netns dataplane could not probe from {from}: {e}"
                                ),
                            },
                            None,
                        ));
                    }
                }
            }
            break;
        }
        out.into_iter()
            .map(|o| {
                o.unwrap_or((
                    Observed::Inconclusive {
                        reason: "no observation".into(),
                    },
                    None,
                ))
            })
            .collect()
    }

    /// Untraced requests: one batch per source, sources in parallel.
    fn untraced(&self, requests: &[ProbeRequest], idx: &[usize], out: &mut [ProbeOutcome]) {
        let mut groups: BTreeMap<String, (Origin, Vec<usize>)> = BTreeMap::new();
        for &i in idx {
            let from = &requests[i].from;
            groups
                .entry(from.to_string())
                .or_insert_with(|| (from.clone(), Vec::new()))
                .1
                .push(i);
        }
        let groups: Vec<(Origin, Vec<usize>)> = groups.into_values().collect();
        let next = AtomicUsize::new(0);
        let results: Mutex<Vec<(usize, Observed)>> = Mutex::new(Vec::with_capacity(idx.len()));
        std::thread::scope(|s| {
            for _ in 0..groups.len().min(PARALLEL_SOURCES) {
                s.spawn(|| {
                    loop {
                        let g = next.fetch_add(1, Ordering::Relaxed);
                        let Some((from, members)) = groups.get(g) else {
                            break;
                        };
                        let reqs: Vec<&ProbeRequest> =
                            members.iter().map(|&i| &requests[i]).collect();
                        let obs = self.real_batch(from, &reqs);
                        lock(&results)
                            .extend(members.iter().copied().zip(obs.into_iter().map(|o| o.0)));
                    }
                });
            }
        });
        for (i, o) in results.into_inner().unwrap_or_else(PoisonError::into_inner) {
            out[i].observed = Some(o);
        }
    }

    /// One traced request: the real probe with the capture cleared first (its frames are the
    /// cell's pcap, encapsulation and SNAT evidence), and the model's trace of the same cell.
    fn traced(&self, r: &ProbeRequest) -> ProbeOutcome {
        let _one_at_a_time = lock(&self.traced);
        self.bank_capture();
        let si_before = self.net.service_counters();
        let (real, seen) = self.real_batch(&r.from, &[r]).pop().unwrap_or((
            Observed::Inconclusive {
                reason: "no observation".into(),
            },
            None,
        ));
        std::thread::sleep(CAPTURE_SETTLE);
        let frames = self.bank_capture();
        let crossed = crossed_instances(si_before, self.net.service_counters());
        let model = self
            .model
            .probe_batch(std::slice::from_ref(r))
            .pop()
            .unwrap_or_default();
        let model_obs = model.observed();
        let mut hops = vec![
            format!(
                "netns dataplane (real sockets): {}{}",
                real.word(),
                real.detail().map(|d| format!(", {d}")).unwrap_or_default()
            ),
            format!(
                "underlay capture: {} frame{} (probe.pcap)",
                frames.len(),
                if frames.len() == 1 { "" } else { "s" }
            ),
            format!(
                "model dataplane, same cell (the same forwarding core): {}{}; its hops:",
                model_obs.word(),
                model_obs
                    .detail()
                    .map(|d| format!(", {d}"))
                    .unwrap_or_default()
            ),
        ];
        if let Some(seen) = seen {
            // After every NAT on the way: what the destination's kernel really saw.
            hops.insert(
                1,
                format!("the answering agent saw the connection come from {seen}"),
            );
        }
        hops.extend(model.hops.iter().map(|h| format!("  {h}")));
        hops.extend(crossed.hops);
        let observed = match real {
            // Say where the model drops it: the real sockets only saw silence.
            Observed::Drop { detail } => {
                let detail = if crossed.dropped_by.is_empty() {
                    detail
                } else {
                    format!(
                        "{detail}; the function of service instance {} dropped it in its namespace (nftables counter)",
                        crossed.dropped_by.join(", ")
                    )
                };
                Observed::Drop {
                    detail: match &model_obs {
                        Observed::Drop { detail: m } => {
                            format!("{detail}; the model drops it at {m}")
                        }
                        _ => detail,
                    },
                }
            }
            o => o,
        };
        let (underlay_encaps, plain) = underlay_path(&frames, r.to);
        let mut nat: Vec<String> = Vec::new();
        if let (Origin::Pod(p), false) = (&r.from, plain.is_empty()) {
            // Fabric SNAT read off the real frames: the plain packets to the destination left
            // with a node's address instead of the pod's.
            let (pod_ips, vhosts) = {
                let dp = lock(&self.dp);
                let vhosts: Vec<Ipv4Addr> = dp.topology().nodes.iter().map(|n| n.vhost).collect();
                (dp.endpoint_addresses(p), vhosts)
            };
            if let Some(src) = plain.iter().find(|a| vhosts.contains(a)) {
                let pod = pod_ips
                    .first()
                    .map(ToString::to_string)
                    .unwrap_or_else(|| p.clone());
                nat.push(format!("fabric SNAT {pod} -> {src} (seen on the underlay)"));
            }
            nat.extend(
                model
                    .nat
                    .iter()
                    .filter(|n| !n.starts_with("fabric SNAT"))
                    .cloned(),
            );
        } else {
            nat = model.nat.clone();
        }
        ProbeOutcome {
            observed: Some(observed),
            hops,
            underlay_encaps,
            nat,
            decisions: model.decisions,
            // The model's order, less the service instances whose namespace saw nothing of
            // this probe: `path.via` then holds only when the real packets went through.
            endpoints: model
                .endpoints
                .into_iter()
                .filter(|e| !crossed.idle.contains(e))
                .collect(),
            pcap: harness_vrouter_sim::write_pcap(&frames, Vec::new()).ok(),
        }
    }
}

impl Drop for NetnsExecutor {
    fn drop(&mut self) {
        // NetnsDataplane's own Drop deletes the namespaces; only the registration is ours.
        self.unregister();
    }
}

/// What the service-instance namespaces did during one traced probe.
#[derive(Debug, Default, PartialEq, Eq)]
struct Crossed {
    /// One line per instance whose kernel forwarded or dropped a packet of the probe (or why
    /// its counters could not be read).
    hops: Vec<String>,
    /// Wired instances whose kernel neither forwarded nor dropped anything: the real packets
    /// did not go through them.
    idle: Vec<String>,
    /// Instances whose function dropped a packet of the probe.
    dropped_by: Vec<String>,
}

/// Compares the instances' nftables counters before and after a traced probe (traced probes
/// run one at a time, so what changed is that probe's).
fn crossed_instances(
    before: Result<Vec<(String, harness_netns::ServiceCounters)>, NetnsError>,
    after: Result<Vec<(String, harness_netns::ServiceCounters)>, NetnsError>,
) -> Crossed {
    let (before, after) = match (before, after) {
        (Ok(b), Ok(a)) => (b, a),
        (Err(e), _) | (_, Err(e)) => {
            return Crossed {
                hops: vec![format!("service instance counters unreadable: {e}")],
                ..Crossed::default()
            };
        }
    };
    let mut out = Crossed::default();
    for (name, a) in after {
        let b = before
            .iter()
            .find(|(n, c)| *n == name && c.namespace == a.namespace)
            .map(|(_, c)| c.clone())
            .unwrap_or_default();
        let l2r = a.left_to_right.saturating_sub(b.left_to_right);
        let r2l = a.right_to_left.saturating_sub(b.right_to_left);
        let dropped = a.dropped_total().saturating_sub(b.dropped_total());
        if l2r + r2l + dropped == 0 {
            out.idle.push(name);
            continue;
        }
        if dropped > 0 {
            out.dropped_by.push(name.clone());
        }
        out.hops.push(format!(
            "service instance {name} (namespace {}, real kernel): forwarded {} left -> right and {} right -> left; its function dropped {}",
            a.namespace,
            packets(l2r),
            packets(r2l),
            packets(dropped),
        ));
    }
    out
}

/// `1 packet`, `3 packets`.
fn packets(n: u64) -> String {
    format!("{n} packet{}", if n == 1 { "" } else { "s" })
}

fn endpoint_ref(o: &Origin) -> EndpointRef {
    match o {
        Origin::Pod(p) => EndpointRef::Pod(p.clone()),
        Origin::Node(n) => EndpointRef::Node(n.clone()),
        Origin::Host(h) => EndpointRef::FabricHost(h.clone()),
        Origin::External(e) => EndpointRef::External(e.clone()),
    }
}

/// A real socket's word as the runner's observation.
fn observed(v: &NetVerdict, timeout: Duration) -> Observed {
    match v {
        NetVerdict::Connected { backend, .. } => Observed::Allow {
            backend: backend.clone(),
        },
        NetVerdict::Refused { detail } => Observed::Reject {
            detail: format!("the destination ({detail})"),
        },
        // ICMP host or network unreachable: somebody on the path said no.
        NetVerdict::Unreachable { detail } => Observed::Reject {
            detail: format!("a hop on the path ({detail})"),
        },
        NetVerdict::Timeout => Observed::Drop {
            detail: format!(
                "an unknown hop: no answer within {} ms on real sockets",
                timeout.as_millis()
            ),
        },
        NetVerdict::Other { detail } => Observed::Inconclusive {
            reason: format!("the real probe could not be made: {detail}"),
        },
        NetVerdict::Unsupported { reason } => Observed::Inconclusive {
            reason: format!("not probed: {reason}"),
        },
    }
}

/// The underlay encapsulation of each IPv4 frame captured (`MPLSoUDP …`, `VXLAN …`,
/// `MPLSoGRE …`, or `none` for a plain packet), in order without repeats, and the source
/// addresses of the plain packets sent to `to` (for fabric SNAT).
fn underlay_path(frames: &[CapturedFrame], to: Ipv4Addr) -> (Vec<String>, Vec<Ipv4Addr>) {
    let mut encaps: Vec<String> = Vec::new();
    let mut plain_sources = Vec::new();
    for f in frames {
        let Ok(summary) = frame::parse(&f.bytes) else {
            continue;
        };
        let frame::Payload::Ipv4(s) = summary.payload else {
            continue;
        };
        let label = match encap::classify(&s) {
            Some(kind) => format!(
                "{} {} -> {} (real underlay)",
                kind.as_str(),
                s.tuple.src,
                s.tuple.dst
            ),
            None => {
                if s.tuple.dst == to && !plain_sources.contains(&s.tuple.src) {
                    plain_sources.push(s.tuple.src);
                }
                "none".to_string()
            }
        };
        if encaps.last() != Some(&label) {
            encaps.push(label);
        }
    }
    (encaps, plain_sources)
}

impl ProbeExecutor for NetnsExecutor {
    fn name(&self) -> &'static str {
        "netns"
    }

    fn probe_batch(&self, requests: &[ProbeRequest]) -> Vec<ProbeOutcome> {
        let run = || {
            let mut out = vec![ProbeOutcome::default(); requests.len()];
            let (traced, untraced): (Vec<usize>, Vec<usize>) =
                (0..requests.len()).partition(|&i| requests[i].trace);
            if !untraced.is_empty() {
                self.untraced(requests, &untraced, &mut out);
                // Keep the run's capture and start the next cells from an empty one.
                self.bank_capture();
            }
            for i in traced {
                out[i] = self.traced(&requests[i]);
            }
            out
        };
        // Real sockets block for up to the probe timeout.
        blocking(run)
    }

    fn cannot_probe(
        &self,
        request: &ProbeRequest,
        to: &harness_oracle::Endpoint,
        via: &[String],
    ) -> Option<String> {
        if let Some(why) = harness_netns::unsupported_reason(request.protocol) {
            return Some(why);
        }
        // kube-proxy's node-port rules run in the one forwarding core on the packets the
        // vrouter hands to a node's IP stack, so every source reaches them through its
        // vrouter; the node itself too, once its kernel steers packets for its own node ports
        // to the vrouter instead of its loopback (`route_node_stacks`, with nftables): where
        // that could not be set up, say why. (An Ingress is probed like any address:
        // Contrail's haproxy runs in the one forwarding core on the VIP's node, its
        // connections part of the dataplane's state and its connect timeout run by the
        // forwarders' ticks.)
        if let harness_oracle::EndpointKind::NodePort { node, .. } = to.kind()
            && let Origin::Node(n) = &request.from
            && n == node
            && let Some(why) = self.net.own_node_ports_unsupported()
        {
            return Some(format!(
                "a node probing its own node port: {why} (use --dataplane model)"
            ));
        }
        let skipped = self.net.skipped();
        if skipped.is_empty() {
            return None;
        }
        let why = |name: &str| {
            skipped
                .iter()
                .find(|(e, _)| e == name)
                .map(|(_, w)| w.clone())
        };
        if let Origin::Pod(p) = &request.from
            && let Some(w) = why(p)
        {
            return Some(format!("the netns dataplane does not wire {p}: {w}"));
        }
        if let Some((inst, w)) = via.iter().find_map(|v| why(v).map(|w| (v, w))) {
            return Some(format!(
                "the path goes through service instance {inst}, which the netns dataplane does not wire: {w}"
            ));
        }
        let dp = lock(&self.dp);
        skipped.iter().find_map(|(e, w)| {
            dp.endpoint_addresses(e).contains(&request.to).then(|| {
                format!(
                    "the netns dataplane does not wire {e} ({}): {w}",
                    request.to
                )
            })
        })
    }
}

/// Runs blocking netns work (`ip` commands, real sockets) from async code: on the
/// multi-thread runtime the worker hands its other tasks over meanwhile (`block_in_place`
/// exists only there); elsewhere it just runs. `setns` never happens on this thread: the netns
/// crate enters namespaces on threads of its own.
pub fn blocking<T>(f: impl FnOnce() -> T) -> T {
    match tokio::runtime::Handle::try_current().map(|h| h.runtime_flavor()) {
        Ok(tokio::runtime::RuntimeFlavor::MultiThread) => tokio::task::block_in_place(f),
        _ => f(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn service_instances_that_saw_nothing_of_a_traced_probe_are_not_traversed() {
        let c = |l2r, r2l, dropped: u64| harness_netns::ServiceCounters {
            namespace: "h123abc-s1".into(),
            left_to_right: l2r,
            right_to_left: r2l,
            dropped: vec![("TCP/81".into(), dropped)],
        };
        let before = vec![
            ("fw".to_owned(), c(4, 4, 1)),
            ("idle".to_owned(), c(9, 9, 0)),
        ];
        let after = vec![
            ("fw".to_owned(), c(7, 6, 1)),
            ("idle".to_owned(), c(9, 9, 0)),
        ];
        let x = crossed_instances(Ok(before.clone()), Ok(after));
        assert_eq!(x.idle, vec!["idle".to_owned()]);
        assert_eq!(x.hops.len(), 1, "{:?}", x.hops);
        assert!(
            x.hops[0].contains("fw")
                && x.hops[0].contains(
                    "forwarded 3 packets left -> right and 2 packets right -> left; its function dropped 0 packets"
                ),
            "{:?}",
            x.hops
        );
        // Each count has its own number: one packet each way.
        let x = crossed_instances(Ok(before.clone()), Ok(vec![("fw".to_owned(), c(5, 5, 1))]));
        assert!(
            x.hops[0].contains(
                "forwarded 1 packet left -> right and 1 packet right -> left; its function dropped 0 packets"
            ),
            "{x:?}"
        );
        // A drop by the function counts as traversed (the packet reached the instance).
        let x = crossed_instances(Ok(before.clone()), Ok(vec![("fw".to_owned(), c(4, 4, 2))]));
        assert!(
            x.idle.is_empty() && x.hops[0].ends_with("its function dropped 1 packet"),
            "{x:?}"
        );
        assert_eq!(x.dropped_by, vec!["fw".to_owned()]);
        // Unreadable counters: say so, and keep the model's instances.
        let x = crossed_instances(Err(NetnsError::Stopped), Ok(before));
        assert!(
            x.idle.is_empty() && x.hops[0].contains("unreadable"),
            "{x:?}"
        );
    }

    #[test]
    fn socket_words_map_onto_observations() {
        let t = Duration::from_millis(700);
        assert_eq!(
            observed(
                &NetVerdict::Connected {
                    backend: Some("x/a".into()),
                    source: Some("10.32.0.4:40112".parse().unwrap()),
                },
                t
            ),
            Observed::Allow {
                backend: Some("x/a".into())
            }
        );
        assert_eq!(
            observed(
                &NetVerdict::Refused {
                    detail:
                        "TCP RST from 10.32.0.5:80: nothing listens there, or a rule rejects it"
                            .into()
                },
                t
            )
            .detail()
            .unwrap(),
            "rejected by the destination (TCP RST from 10.32.0.5:80: nothing listens there, or a rule rejects it)"
        );
        let drop = observed(&NetVerdict::Timeout, t);
        assert_eq!(drop.word(), "drop");
        assert!(drop.detail().unwrap().contains("700 ms"), "{drop:?}");
        let hop = observed(
            &NetVerdict::Unreachable {
                detail: "host unreachable for TCP 10.32.0.5:80: an ICMP host unreachable came back, or no ARP answer".into(),
            },
            t,
        );
        assert_eq!(hop.word(), "reject");
        assert!(
            hop.detail()
                .unwrap()
                .starts_with("rejected by a hop on the path (host unreachable"),
            "{hop:?}"
        );
        assert_eq!(
            observed(
                &NetVerdict::Other {
                    detail: "Too many open files (os error 24)".into()
                },
                t
            )
            .word(),
            "inconclusive"
        );
        // Never a pass for a probe that could not be made.
        assert_eq!(
            observed(
                &NetVerdict::Unsupported {
                    reason: "this kernel has no SCTP".into()
                },
                t
            )
            .word(),
            "inconclusive"
        );
    }

    #[test]
    fn captured_frames_give_the_underlay_encapsulation_and_snat_sources() {
        use harness_vrouter_sim::wire::encap::{Outer, encapsulate};
        use harness_vrouter_sim::wire::frame::Addrs;
        let pod: Ipv4Addr = "10.32.0.4".parse().unwrap();
        let host: Ipv4Addr = "10.64.200.10".parse().unwrap();
        let vhost: Ipv4Addr = "10.64.0.11".parse().unwrap();
        let a = Addrs {
            src_mac: [2, 0, 0, 0, 0, 1],
            dst_mac: [2, 0, 0, 0, 0, 2],
            src: pod,
            dst: host,
            ttl: 64,
        };
        let inner = frame::udp(&a, 40000, 53, b"q");
        let tunnelled = encapsulate(
            harness_scenario::Encapsulation::MplsOverUdp,
            &Outer {
                addrs: Addrs {
                    src_mac: [2, 0, 0, 0, 0, 3],
                    dst_mac: [2, 0, 0, 0, 0, 4],
                    src: vhost,
                    dst: "10.64.0.12".parse().unwrap(),
                    ttl: 64,
                },
                entropy: 7,
            },
            17,
            &inner,
        );
        let snatted = frame::udp(&Addrs { src: vhost, ..a }, 61000, 53, b"q");
        let f = |bytes: Vec<u8>| CapturedFrame {
            link: "underlay".into(),
            ts_micros: 1,
            bytes,
        };
        let (encaps, plain) = underlay_path(
            &[f(tunnelled.clone()), f(tunnelled), f(inner.clone())],
            host,
        );
        assert_eq!(encaps.len(), 2, "{encaps:?}");
        assert!(
            encaps[0].starts_with("MPLSoUDP 10.64.0.11 -> 10.64.0.12"),
            "{encaps:?}"
        );
        assert_eq!(encaps[1], "none");
        assert_eq!(plain, vec![pod]);
        let (_, plain) = underlay_path(&[f(snatted)], host);
        assert_eq!(plain, vec![vhost]);
    }
}
