//! `harness up`: stand the sim cluster up (with a scenario's resources applied, if given),
//! write `DIR/kubeconfig` and `DIR/endpoints.json`, serve the probe endpoint `harness probe`
//! calls, print how to reach everything, and hold until Ctrl-C (or SIGTERM). First signal:
//! orderly shutdown, exit 130, `DIR` kept; second signal: exit at once.

use std::path::Path;
use std::time::{Duration, Instant};

use harness_runner::hold::{self, Endpoints, HeldCluster, KUBECONFIG_FILE, ProbeServer};
use harness_runner::provider::sim::SimSpec;
use harness_runner::run::{RunOptions, shell_quote};
use harness_scenario::{ClusterSpec, ContrailSettings, LoadedScenario, MockFault, Profile};
use tokio::signal::unix::{Signal, SignalKind, signal};

use crate::cli::UpArgs;
use crate::exit::Exit;
use crate::term::Term;

fn bad(term: &Term, msg: &str) -> Exit {
    eprintln!("{} {msg}", term.red("error:", true));
    Exit::BadInput
}

/// `--fault NAME` as a fault, or the list of names.
fn parse_fault(name: &str) -> Result<MockFault, String> {
    name.parse::<MockFault>()
        .map_err(|e| format!("--fault: {e}"))
}

/// Whether `pid` names a live process.
fn alive(pid: u32) -> bool {
    // SAFETY: signal 0 only checks that the process exists and may be signalled.
    pid != 0 && i32::try_from(pid).is_ok_and(|p| unsafe { libc::kill(p, 0) } == 0)
}

/// Whether another `harness up` holds a cluster in `dir` right now.
fn held_elsewhere(dir: &Path) -> Option<Endpoints> {
    let e = Endpoints::read(dir).ok()?;
    let addr = e
        .probe
        .strip_prefix("http://")?
        .split('/')
        .next()?
        .parse::<std::net::SocketAddr>()
        .ok()?;
    let answers = std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok();
    (alive(e.pid) && e.pid != std::process::id() && answers).then_some(e)
}

/// Writes a file only its owner can read (the kubeconfig carries the admin token).
fn write_private(path: &Path, text: &str) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(text.as_bytes())
}

/// SIGINT and SIGTERM, listened for from the start: a signal that arrives while the
/// previous one is being handled is counted, not lost.
struct Signals {
    interrupt: Signal,
    terminate: Signal,
}

impl Signals {
    fn new() -> std::io::Result<Signals> {
        Ok(Signals {
            interrupt: signal(SignalKind::interrupt())?,
            terminate: signal(SignalKind::terminate())?,
        })
    }

    /// The next signal's name.
    async fn next(&mut self) -> &'static str {
        tokio::select! {
            _ = self.interrupt.recv() => "Ctrl-C",
            _ = self.terminate.recv() => "SIGTERM",
        }
    }
}

/// What `up` was asked to stand up.
struct Plan<'a> {
    loaded: Option<&'a LoadedScenario>,
    scenario_arg: Option<String>,
    profile: Option<Profile>,
    faults: Vec<MockFault>,
    nodes: u32,
    dir: &'a Path,
}

/// A held cluster, its probe endpoint and the state directory written.
struct Up {
    held: HeldCluster,
    server: ProbeServer,
    endpoints: Endpoints,
    example: String,
}

/// Stands the cluster up, serves the probe endpoint, writes DIR; on failure stops what was
/// started and says why.
async fn stand_up(plan: &Plan<'_>, term: &Term) -> Result<Up, Exit> {
    let held = match plan.loaded {
        Some(loaded) => {
            let opts = RunOptions {
                profile: plan.profile,
                faults: plan.faults.clone(),
                ..RunOptions::default()
            };
            let file_arg = plan.scenario_arg.as_deref().unwrap_or_default();
            HeldCluster::up_scenario(loaded, file_arg, &opts).await
        }
        None => {
            let mut contrail = ContrailSettings::default();
            if let Some(p) = plan.profile {
                contrail.profile = p;
            }
            contrail.faults = plan.faults.clone();
            let spec = SimSpec {
                cluster: ClusterSpec {
                    nodes: plan.nodes,
                    ..ClusterSpec::default()
                },
                contrail,
                rbac_mapping: None,
            };
            HeldCluster::up(&spec)
                .await
                .map_err(|e| format!("the sim cluster could not be stood up: {e}"))
        }
    };
    let held = held.map_err(|e| {
        eprintln!("{} {e}", term.red("error:", true));
        Exit::Infrastructure
    })?;
    let server = match hold::serve(([127, 0, 0, 1], 0).into(), held.prober()).await {
        Ok(s) => s,
        Err(e) => {
            eprintln!(
                "{} cannot serve the probe endpoint: {e}",
                term.red("error:", true)
            );
            held.shutdown().await;
            return Err(Exit::Infrastructure);
        }
    };
    let endpoints = Endpoints {
        kubernetes: held.cluster().kube_url(),
        contrail: held.cluster().vnc_url(),
        probe: server.url(),
        pid: std::process::id(),
        profile: held.cluster().spec().contrail.profile.as_str().to_owned(),
        scenario: plan.scenario_arg.clone(),
        nodes: held
            .cluster()
            .nodes()
            .into_iter()
            .map(|(name, _)| name)
            .collect(),
    };
    let example = probe_example(&held, &endpoints).await;
    // The kubeconfig first: endpoints.json appearing is the signal that all is ready.
    let written = write_private(
        &plan.dir.join(KUBECONFIG_FILE),
        &held.cluster().kubeconfig_yaml(),
    )
    .and_then(|()| endpoints.write(plan.dir));
    if let Err(e) = written {
        eprintln!(
            "{} cannot write the state directory {}: {e}",
            term.red("error:", true),
            plan.dir.display()
        );
        stop(server, held).await;
        return Err(Exit::Infrastructure);
    }
    Ok(Up {
        held,
        server,
        endpoints,
        example,
    })
}

pub fn run(args: &UpArgs, term: &Term) -> Exit {
    let started = Instant::now();
    let profile = match args.contrail_profile.as_deref().map(str::parse::<Profile>) {
        None => None,
        Some(Ok(p)) => Some(p),
        Some(Err(e)) => return bad(term, &format!("--contrail-profile: {e}")),
    };
    let mut faults = Vec::new();
    for f in &args.faults {
        match parse_fault(f) {
            Ok(x) => faults.push(x),
            Err(e) => return bad(term, &e),
        }
    }
    let loaded = match &args.scenario {
        Some(path) => match harness_scenario::load::load_file(path) {
            Ok(l) => Some(l),
            Err(d) => {
                term.diagnostic(&d);
                return Exit::BadInput;
            }
        },
        None => None,
    };
    if loaded.is_some() && args.nodes.is_some() {
        return bad(
            term,
            "--nodes: a scenario's `cluster:` defines the cluster; change cluster.nodes in the scenario, or leave the scenario out",
        );
    }
    let nodes = args.nodes.unwrap_or(ClusterSpec::default().nodes);
    if !(1..=64).contains(&nodes) {
        return bad(term, &format!("--nodes {nodes}: use 1 to 64"));
    }
    let dir = &args.state_dir;
    if let Err(e) = std::fs::create_dir_all(dir) {
        return bad(
            term,
            &format!("--state-dir: cannot create {}: {e}", dir.display()),
        );
    }
    if let Some(other) = held_elsewhere(dir) {
        return bad(
            term,
            &format!(
                "{} already holds a cluster (pid {}, Kubernetes {}): stop it with Ctrl-C, or choose another --state-dir",
                dir.display(),
                other.pid,
                other.kubernetes
            ),
        );
    }

    let runtime = match crate::exit::runtime(term, true) {
        Ok(r) => r,
        Err(code) => return code,
    };
    let plan = Plan {
        loaded: loaded.as_ref(),
        scenario_arg: args.scenario.as_ref().map(|p| p.display().to_string()),
        profile,
        faults,
        nodes,
        dir,
    };
    let code = runtime.block_on(async {
        let mut signals = match Signals::new() {
            Ok(s) => s,
            Err(e) => {
                eprintln!(
                    "{} cannot listen for Ctrl-C and SIGTERM: {e}",
                    term.red("error:", true)
                );
                return Exit::Infrastructure;
            }
        };
        let up = tokio::select! {
            up = stand_up(&plan, term) => up,
            how = signals.next() => {
                // Dropping the half-built cluster stops whatever had started.
                eprintln!("{how}: stopped before the cluster was ready");
                return Exit::Interrupted;
            }
        };
        let Up {
            held,
            server,
            endpoints,
            example,
        } = match up {
            Ok(up) => up,
            Err(code) => return code,
        };
        let ready_ms = started.elapsed().as_millis();
        print_ready(&held, &endpoints, dir, ready_ms, &example, term);

        let how = signals.next().await;
        // A second signal while stopping exits at once.
        let dir_shown = dir.display().to_string();
        tokio::spawn(async move {
            let again = signals.next().await;
            eprintln!(
                "\n{again} again: exiting without an orderly shutdown; the cluster's servers close with this process; left: {dir_shown}/{KUBECONFIG_FILE} and {dir_shown}/endpoints.json (they describe a cluster that is gone)"
            );
            std::process::exit(Exit::Interrupted as i32);
        });
        eprintln!("\n{how}: stopping the cluster ({how} again to exit at once)");
        let t = Instant::now();
        stop(server, held).await;
        eprintln!(
            "stopped in {} ms; kept {}/{KUBECONFIG_FILE} and {}/endpoints.json (they describe a cluster that is gone)",
            t.elapsed().as_millis(),
            dir.display(),
            dir.display()
        );
        Exit::Interrupted
    });
    runtime.shutdown_timeout(Duration::from_secs(5));
    code
}

/// The probe endpoint first (it shares the cluster), then the cluster, each waited for.
async fn stop(server: ProbeServer, held: HeldCluster) {
    server.shutdown().await;
    held.shutdown().await;
}

/// `FROM TO PORT` for the printed `harness probe` example: two of the cluster's own pods when
/// it has some, two nodes otherwise.
async fn probe_example(held: &HeldCluster, endpoints: &Endpoints) -> String {
    match held.prober().model().await {
        Ok(m) if m.pods().len() >= 2 => {
            let (a, b) = (&m.pods()[0], &m.pods()[1]);
            let port = a
                .ports
                .first()
                .or(b.ports.first())
                .map(|p| format!("{}/{}", p.protocol, p.port))
                .unwrap_or_else(|| "ICMP".into());
            format!("{} {} {port}", b.id(), a.id())
        }
        _ => {
            // One node: it pings itself, which still shows the vrouter's trace.
            let first = endpoints.nodes.first().map_or("node-1", String::as_str);
            let second = endpoints.nodes.get(1).map_or(first, String::as_str);
            format!("node:{first} node:{second} ICMP")
        }
    }
}

fn print_ready(
    held: &HeldCluster,
    endpoints: &Endpoints,
    dir: &Path,
    ready_ms: u128,
    example: &str,
    term: &Term,
) {
    let t = held.timings();
    let cluster = held.cluster();
    let spec = cluster.spec();
    println!(
        "harness up: {} · profile {} · {} node{}{}",
        match &endpoints.scenario {
            Some(s) => format!("scenario {s} (resources applied; steps not run)"),
            None => "bare cluster".into(),
        },
        spec.contrail.profile,
        endpoints.nodes.len(),
        if endpoints.nodes.len() == 1 { "" } else { "s" },
        if spec.contrail.faults.is_empty() {
            String::new()
        } else {
            format!(
                " · faults {}",
                spec.contrail
                    .faults
                    .iter()
                    .map(|f| f.name())
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        }
    );
    let breakdown = if endpoints.scenario.is_some() {
        format!(
            "cluster {} ms, resources applied and converged {} ms",
            t.cluster_up_ms, t.resources_ms
        )
    } else {
        format!("cluster {} ms", t.cluster_up_ms)
    };
    println!(
        "{} up in {ready_ms} ms ({breakdown})",
        term.green("✓", false)
    );
    println!("  Kubernetes  {}", endpoints.kubernetes);
    println!("  Contrail    {}", endpoints.contrail);
    println!("  probe       {}", endpoints.probe);
    let d = shell_quote(&dir.display().to_string());
    println!("  state       {d}/{KUBECONFIG_FILE}, {d}/endpoints.json");
    println!();
    println!("Try:");
    println!("  kubectl --kubeconfig {d}/{KUBECONFIG_FILE} get pods -A -o wide");
    println!(
        "  curl -s {}/virtual-networks -H 'X-Role: admin'",
        endpoints.contrail
    );
    println!("  harness probe --state-dir {d} {example}");
    println!("Holding the cluster until Ctrl-C (or SIGTERM); --hold is the default for `up`.");
}
