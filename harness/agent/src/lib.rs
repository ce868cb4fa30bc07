//! The probe agent: what runs inside each pod of the harness — in a network namespace of the
//! netns dataplane, or as a container in a real cluster. A plain process on real kernel
//! sockets.
//!
//! Two halves:
//!
//! - **Serving** ([`serve`]): listens on the pod's declared container ports (TCP, UDP, SCTP
//!   when the kernel has it, HTTP) and answers every connection or datagram with a greeting
//!   line that names the backend (`harness-agent x/a TCP/80 from 10.32.0.4:40112`), so a
//!   prober learns which pod answered after any DNAT, and which source address it saw.
//! - **Probing** ([`probe_batch`]): a batch of TCP/UDP/SCTP/ICMP probes, all in flight at
//!   once with per-probe timeouts, each answered `connected` (with the backend), `refused`,
//!   `timeout` or `other` — one process per source pod, not one per probe. The JSON is the
//!   model dataplane's ([`ProbeRequest`], [`ProbeResult`]), so the runner treats a simulated
//!   pod and a real one alike.
//!
//! This crate never calls `setns`: sockets are created on the calling thread and keep that
//! thread's namespace. Run the agent process under `ip netns exec`, or call [`serve`] /
//! [`probe_batch`] on a dedicated thread that entered the namespace — never on a tokio worker.
//!
//! ```no_run
//! use harness_agent::{probe_batch, serve, ProbeRequest, ServedPort, ServedProtocol};
//! use harness_scenario::Protocol;
//! let server = serve(&[ServedPort::new(ServedProtocol::Tcp, 80)], &"x/a".parse().unwrap())?;
//! let results = probe_batch(&[ProbeRequest::new("10.32.0.5".parse()?, Protocol::Tcp, 80)]);
//! println!("{}", serde_json::to_string(&results)?);
//! server.shutdown();
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod batch;
pub mod command;
mod identity;
mod ports;
mod probe;
mod serve;
mod sys;

pub use batch::{
    BatchError, DEFAULT_TIMEOUT, MAX_TIMEOUT_MS, ProbeRequest, ProbeResult, ProbeResultKind,
    parse_batch,
};
pub use identity::{GREETING_PREFIX, Identity};
pub use ports::{ServedPort, ServedProtocol, parse_port_list};
pub use probe::{
    MAX_IN_FLIGHT, probe, probe_batch, probe_batch_async, probe_batch_async_in_flight,
    probe_batch_in_flight,
};
pub use serve::{
    Listening, ServeError, ServeOptions, ServerHandle, SkippedPort, serve, serve_with,
};
