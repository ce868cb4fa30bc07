//! The runner: stands a cluster up through a provider, runs a scenario's steps through the
//! Kubernetes and Contrail APIs, runs its checks and returns `harness_report` results.
//!
//! * [`provider`]: what a cluster is to the runner — a kube-rs client, a VNC client and a
//!   [`provider::ProbeExecutor`] (the dataplane probes run on); [`provider::sim`] stands up
//!   kube-sim, the mock Contrail and the simulated vrouters in process over loopback HTTP.
//! * [`apply`]: server-side apply (kinds by discovery), deletes, label changes.
//! * [`observe`]: the objects read back, and the oracle's model of them (real addresses).
//! * [`run`]: scenarios step by step — actions, convergence, checks — as [`run::Event`]s and
//!   a [`harness_report::ScenarioResult`].
//! * [`reach`]: reachability checks (eventually / consistently, path assertions, flaky
//!   detection, evidence); [`checks`]: Contrail object assertions and RBAC;
//!   [`chain`]: service chains through the VNC API.
//! * [`hold`]: a cluster held for `harness up`, and the loopback probe endpoint
//!   `harness probe` calls.
//! * [`expect`], [`select`], [`seed`], [`evidence`]: expected verdicts, `--only`, the seeded
//!   probe order, evidence folders.
//! * [`selftest`]: the suite clean, once per mock fault and against `r5.0`, judged (every
//!   fault caught, every r5.0 failure explained by a named deviation).
//!
//! Invariants: the runner never prints (the CLI renders events and results); every change
//! goes through the Kubernetes or the VNC API; expected verdicts come from the oracle built
//! from the *observed* Kubernetes objects, never from Contrail objects; a run never fails
//! with an error: problems become setup errors (exit 3) or failed cells.
//!
//! # Usage
//!
//! ```no_run
//! use harness_runner::run::{RunOptions, run_scenario};
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! let loaded = harness_scenario::load::load_file("scenarios/examples/netpol-deny-all-ingress.yaml".as_ref())?;
//! let opts = RunOptions { seed: 7, report_dir: Some("reports/demo".into()), ..RunOptions::default() };
//! let result = run_scenario(&loaded, "netpol-deny-all-ingress.yaml", &opts, None).await;
//! assert!(result.status().is_success());
//! # Ok(()) }
//! ```

pub mod apply;
pub mod chain;
pub mod checks;
pub mod evidence;
pub mod expect;
pub mod hold;
pub mod observe;
pub mod provider;
pub mod reach;
pub mod run;
pub mod seed;
pub mod select;
pub mod selftest;
