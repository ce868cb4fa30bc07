//! Command-line arguments (clap derive). Every verb's `--help` ends with an example.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// Conformance and end-to-end tests for Kubernetes networked by Contrail (Tungsten Fabric).
///
/// Exit codes: 0 all passed, 1 a check failed, 2 bad input (scenario or arguments),
/// 3 infrastructure error, 130 interrupted.
#[derive(Parser, Debug)]
#[command(
    name = "harness",
    version,
    propagate_version = true,
    max_term_width = 100
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// The probe agent that runs inside each pod: `serve` the pod's declared ports, `probe` a
    /// batch of destinations (one exec per source pod).
    #[command(
        after_help = "Example:\n  harness agent serve --ports TCP/80,UDP/80 --identity x/a\n  echo '[{\"to\": \"10.32.0.5\", \"protocol\": \"TCP\", \"port\": 80}]' | harness agent probe --batch -"
    )]
    Agent(crate::agent::AgentArgs),
    /// Validate scenario files or directories (exit 0 when all are valid, 2 otherwise).
    #[command(
        after_help = "Example:\n  harness lint scenarios/\n  harness lint scenarios/examples/netpol-deny-all.yaml"
    )]
    Lint(LintArgs),
    /// List the cases (scenarios and their checks) with their labels.
    #[command(
        after_help = "Example:\n  harness list scenarios/ --label 'netpol && !slow'\n  harness list scenarios/ --only isolation --json"
    )]
    List(ListArgs),
    /// Print the JSON Schema (draft 2020-12) of the scenario language.
    #[command(
        after_help = "Example:\n  harness schema > schema/scenario.schema.json\n\nPoint editors at it from a scenario file:\n  # yaml-language-server: $schema=../../schema/scenario.schema.json"
    )]
    Schema(SchemaArgs),
    /// Run scenarios on a cluster (the embedded `sim` provider by default) and report every
    /// cell: exit 0 all passed, 1 a check failed, 2 bad input, 3 infrastructure error,
    /// 130 interrupted.
    #[command(
        after_help = "Example:\n  harness run scenarios/examples/\n  harness run scenarios/examples/netpol-deny-all-ingress.yaml --seed 7 --report-dir /tmp/r\n  harness run scenarios/ --label 'netpol && !slow' --contrail-profile r5.0\n\n--only REGEX is matched against check ids (STEP/KIND-N) and cell keys\n(STEP/KIND-N[FROM -> TO PORT]); a failing cell prints the command that reruns just it."
    )]
    Run(RunArgs),
    /// Check the checks: run the conformance suite clean (must pass), once per mock Contrail
    /// fault (each must be caught) and against profile r5.0 (every failure must be explained
    /// by a named deviation, every predicted deviation shown). Exit 0 all good, 1 a fault
    /// undetected / the clean run failed / an unexplained r5.0 result, 2 bad input,
    /// 3 infrastructure error.
    #[command(
        after_help = "Example:\n  harness selftest\n  harness selftest scenarios/conformance --report-dir /tmp/st --parallel 4\n  harness selftest --only-fault egress-rules-dropped --only-fault ecmp-pinned\n\nWrites selftest.md and selftest.json (and each phase's results.json) to the report dir."
    )]
    Selftest(SelftestArgs),
    /// Stand the sim cluster up (with a scenario's resources applied, if given), write
    /// DIR/kubeconfig and DIR/endpoints.json, serve the probe endpoint, and hold the cluster
    /// until Ctrl-C or SIGTERM (exit 130 after an orderly stop; DIR is kept).
    #[command(
        after_help = "Example:\n  harness up scenarios/examples/netpol-deny-all-ingress.yaml --state-dir /tmp/h\n  kubectl --kubeconfig /tmp/h/kubeconfig get pods -A -o wide\n  harness probe --state-dir /tmp/h y/a x/a TCP/80\n  harness up --state-dir /tmp/h --nodes 3 --contrail-profile r5.0\n\nHolding is the default (--hold is accepted for the same thing), with or without a\nterminal. The scenario's steps are not run; apply changes with kubectl. DIR/endpoints.json\n({\"kubernetes\", \"contrail\", \"probe\", ...}) appears once everything is ready."
    )]
    Up(UpArgs),
    /// Probe a cluster held by `harness up`: the oracle's expectation with its explanation,
    /// the observed verdict and the per-hop trace (exit 0 when probed, whatever the verdict;
    /// 2 bad peer or port; 3 no cluster answers at DIR).
    #[command(
        after_help = "Example:\n  harness probe --state-dir /tmp/h x/a x/b TCP/80\n  harness probe --state-dir /tmp/h y/a svc:x/s-x-a TCP/80 --trace\n  harness probe --state-dir /tmp/h external:internet-client lb:shop/web-lb TCP/80 --json\n    (after: harness up scenarios/examples/services-external-access.yaml --state-dir /tmp/h)\n  harness probe --state-dir /tmp/h 'x/*' z/c TCP/serve-81-tcp\n\nPeers use the scenario syntax (x/a, x/*, svc:NS/NAME, nodeport:NS/NAME@node-1, lb:, ingress:,\nnode:NAME, host:NAME, external:NAME); ports TCP/80, UDP/53, SCTP/80, ICMP or named ports."
    )]
    Probe(ProbeArgs),
    /// Print the expected truth tables and the oracle's explanations for every reachability
    /// check of a scenario — before any cluster exists.
    #[command(
        after_help = "Example:\n  harness plan scenarios/examples/netpol-deny-all.yaml\n  harness plan scenarios/examples/netpol-deny-all.yaml --contrail-profile r5.0 --explain denied"
    )]
    Plan(PlanArgs),
    /// Serve the embedded Kubernetes API server (kube-sim) on loopback until interrupted, and
    /// write a kubeconfig (admin token) that kubectl and kube-rs accept.
    #[command(
        after_help = "Example:\n  harness kube-sim --listen 127.0.0.1:6443 --kubeconfig /tmp/kubeconfig\n  kubectl --kubeconfig /tmp/kubeconfig get namespaces"
    )]
    KubeSim(KubeSimArgs),
    /// Serve the mock Contrail VNC API on loopback until interrupted; with --kubeconfig it also
    /// runs the kube-manager emulation against that Kubernetes API.
    #[command(
        after_help = "Example:\n  harness contrail-mock --listen 127.0.0.1:8082\n  harness contrail-mock --kubeconfig /tmp/kubeconfig --contrail-profile r5.0 --listen 127.0.0.1:8082\n  curl -s http://127.0.0.1:8082/virtual-networks"
    )]
    ContrailMock(ContrailMockArgs),
    /// Measure the harness's own speed (oracle, scenario loading) and print the figures.
    #[command(after_help = "Example:\n  harness bench\n  harness bench oracle --quick")]
    Bench(BenchArgs),
}

#[derive(Args, Debug)]
pub struct LintArgs {
    /// Scenario files or directories (searched recursively; `fixtures/` directories are skipped).
    #[arg(required = true)]
    pub paths: Vec<PathBuf>,
    /// Print nothing for valid files.
    #[arg(long, short)]
    pub quiet: bool,
}

#[derive(Args, Debug)]
pub struct ListArgs {
    #[arg(required = true)]
    pub paths: Vec<PathBuf>,
    /// Only cases whose labels match this expression (`netpol && !slow`, `a || b`, `a, b`).
    #[arg(long)]
    pub label: Option<String>,
    /// Only cases whose scenario name or check id matches this regular expression.
    #[arg(long)]
    pub only: Option<String>,
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug)]
pub struct SchemaArgs {
    /// Write to this file instead of standard output.
    #[arg(long, short)]
    pub output: Option<PathBuf>,
}

/// Which cells `plan` explains.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExplainCells {
    /// Every cell.
    All,
    /// Only cells that are not allowed.
    Denied,
    /// No explanations, tables only.
    None,
}

#[derive(Args, Debug)]
pub struct RunArgs {
    /// Scenario files or directories (searched recursively; `fixtures/` directories are skipped).
    #[arg(required = true)]
    pub paths: Vec<PathBuf>,
    /// Where the cluster comes from.
    #[arg(long, default_value = "sim", value_name = "sim")]
    pub provider: String,
    /// Where probes run.
    #[arg(long, default_value = "model", value_name = "model|netns")]
    pub dataplane: String,
    /// Seed ordering the probes (printed; rerun with it to reproduce the order).
    #[arg(long)]
    pub seed: Option<u64>,
    /// Only scenarios, checks or cells whose name, id (STEP/KIND-N) or cell key
    /// (STEP/KIND-N[FROM -> TO PORT]) matches this regular expression.
    #[arg(long)]
    pub only: Option<String>,
    /// Only scenarios whose labels match this expression (`netpol && !slow`).
    #[arg(long)]
    pub label: Option<String>,
    /// Semantics profile the mock Contrail runs (overrides the scenarios'). Expected verdicts
    /// still come from --expect-profile: a cell where r5.0 deviates fails, explained by the
    /// deviation's name.
    #[arg(long, value_name = "upstream|r5.0")]
    pub contrail_profile: Option<String>,
    /// Semantics expected verdicts come from: `upstream` (the blueprint, the default) or
    /// `r5.0` (check that a cluster behaves as shipped R5.0 is known to).
    #[arg(long, value_name = "upstream|r5.0", default_value = "upstream")]
    pub expect_profile: String,
    /// Inject a mock Contrail fault (repeatable), e.g. `--fault egress-rules-dropped`.
    #[arg(long = "fault", value_name = "NAME")]
    pub faults: Vec<String>,
    /// Scenarios run at once, each on its own cluster (default: 2 × CPUs, since scenarios
    /// mostly wait on their clusters; 4 × CPUs with `--dataplane netns`, where they mostly
    /// wait out probe timeouts on real sockets).
    #[arg(long)]
    pub parallel: Option<usize>,
    /// Where the reports go (default `reports/<run-id>/`).
    #[arg(long)]
    pub report_dir: Option<PathBuf>,
    /// Which cells get an evidence folder (trace, pcap, policies, oracle).
    #[arg(long, default_value = "failures", value_name = "failures|all|none")]
    pub evidence: String,
    /// Keep each scenario's cluster up after its steps, print how to reach it, and wait for
    /// Ctrl-C before tearing it down.
    #[arg(long)]
    pub keep: bool,
}

#[derive(Args, Debug)]
pub struct UpArgs {
    /// A scenario whose `cluster:` and `contrail:` define the cluster and whose resources are
    /// applied (its steps are not run). Without it: a bare cluster.
    pub scenario: Option<PathBuf>,
    /// Hold the cluster until interrupted (the default for `up`; accepted for scripts that
    /// spell it out).
    #[arg(long)]
    pub hold: bool,
    /// Where the kubeconfig and endpoints.json go (created if missing; kept after the stop).
    #[arg(long, value_name = "DIR")]
    pub state_dir: PathBuf,
    /// Semantics profile of the mock Contrail and of the oracle (overrides the scenario's).
    #[arg(long, value_name = "upstream|r5.0")]
    pub contrail_profile: Option<String>,
    /// Inject a mock Contrail fault (repeatable), e.g. `--fault egress-rules-dropped`.
    #[arg(long = "fault", value_name = "NAME")]
    pub faults: Vec<String>,
    /// Compute nodes of a bare cluster (default 2; a scenario sets cluster.nodes instead).
    #[arg(long, value_name = "N")]
    pub nodes: Option<u32>,
}

#[derive(Args, Debug)]
pub struct ProbeArgs {
    /// The state directory `harness up --state-dir` wrote.
    #[arg(long, value_name = "DIR")]
    pub state_dir: PathBuf,
    /// Where the probe starts: a pod (x/a, x/*), node:NAME, host:NAME or external:NAME.
    pub from: String,
    /// Where it goes: any peer (x/b, svc:x/s-x-b, lb:x/web, ingress:x/web, host:cloud-db, …).
    pub to: String,
    /// TCP/80, UDP/53, SCTP/80, ICMP, or a named port (TCP/serve-80-tcp).
    pub port: String,
    /// Also save each probe's frames as DIR/probes/FROM__TO__PORT.pcap (for tshark).
    #[arg(long)]
    pub trace: bool,
    /// Print the answer as JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug)]
pub struct SelftestArgs {
    /// Scenario files or directories (default `scenarios/conformance`).
    pub paths: Vec<PathBuf>,
    /// Where the self-test report goes (default `reports/selftest-<run-id>/`).
    #[arg(long)]
    pub report_dir: Option<PathBuf>,
    /// Scenarios run at once across all phases (default: 2 × CPUs).
    #[arg(long)]
    pub parallel: Option<usize>,
    /// Only inject these faults (repeatable; default: every fault). The clean and r5.0
    /// phases always run.
    #[arg(long = "only-fault", value_name = "NAME")]
    pub only_faults: Vec<String>,
    /// Seed ordering the probes (printed).
    #[arg(long)]
    pub seed: Option<u64>,
}

#[derive(Args, Debug)]
pub struct PlanArgs {
    /// The scenario file.
    pub scenario: PathBuf,
    /// Semantics profile the oracle evaluates (defaults to the scenario's `contrail.profile`).
    #[arg(long, value_name = "upstream|r5.0")]
    pub contrail_profile: Option<String>,
    /// Which cells to explain.
    #[arg(long, value_enum, default_value = "all")]
    pub explain: ExplainCells,
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
}

/// What `bench` measures.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum BenchTarget {
    All,
    Oracle,
    Scenario,
}

#[derive(Args, Debug)]
pub struct BenchArgs {
    #[arg(value_enum, default_value = "all")]
    pub target: BenchTarget,
    /// Fewer repetitions (a smoke run; figures are noisier).
    #[arg(long)]
    pub quick: bool,
}

#[derive(Args, Debug)]
pub struct KubeSimArgs {
    /// Loopback address to serve on (port 0 picks a free port).
    #[arg(long, default_value = "127.0.0.1:6443")]
    pub listen: std::net::SocketAddr,
    /// Where to write the kubeconfig.
    #[arg(long)]
    pub kubeconfig: PathBuf,
}

#[derive(Args, Debug)]
pub struct ContrailMockArgs {
    /// Loopback address to serve the VNC API on (port 0 picks a free port).
    #[arg(long, default_value = "127.0.0.1:8082")]
    pub listen: std::net::SocketAddr,
    /// Kubernetes API to watch with the kube-manager emulation; without it only the VNC API is served.
    #[arg(long)]
    pub kubeconfig: Option<PathBuf>,
    /// Semantics of the kube-manager emulation.
    #[arg(long, value_name = "upstream|r5.0", default_value = "upstream")]
    pub contrail_profile: String,
}

impl Command {
    /// Verbs that only print (no servers, no sockets): they may die quietly on a closed pipe.
    pub fn prints_only(&self) -> bool {
        matches!(
            self,
            Command::Lint(_) | Command::List(_) | Command::Schema(_) | Command::Plan(_)
        )
    }
}
