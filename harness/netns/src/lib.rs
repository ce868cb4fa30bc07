//! The network-namespace dataplane of the conformance harness.
//!
//! Pods, nodes, fabric hosts, the gateway and external clients become Linux network
//! namespaces; the simulated vrouters forward real frames in user space over AF_PACKET
//! sockets, running the *same* forwarding core as the model dataplane
//! ([`harness_vrouter_sim::io`]); probes are real kernel sockets, served and sent by the
//! probe agent (`harness-agent`) inside the namespaces.
//!
//! ```no_run
//! use std::sync::{Arc, Mutex};
//! use std::time::Duration;
//! use harness_netns::{NetnsDataplane, NetnsOptions};
//! use harness_scenario::Protocol;
//! use harness_vrouter_sim::{Dataplane, EndpointRef, Topology, config::Snapshot};
//!
//! harness_netns::check_capabilities()?;                 // names the missing capability
//! let dp = Arc::new(Mutex::new(Dataplane::from_config(Snapshot::new(), Topology::default())));
//! let net = NetnsDataplane::up(dp, &NetnsOptions { capture: true, ..NetnsOptions::default() })?;
//! let v = net.probe(&EndpointRef::Pod("x/a".into()), "10.47.255.250".parse()?, Protocol::Tcp, 80,
//!                   Duration::from_millis(500))?;
//! println!("{}", v.word());                            // connected | refused | timeout | other
//! net.cleanup()?;                                       // also on drop
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! Modules: [`cluster`] (topology and lifecycle), [`pods`] (wiring pods as the model's
//! endpoints change), [`service`] (service-chain instances as forwarding namespaces),
//! [`vrouter`] (the AF_PACKET forwarders),
//! [`probe`] (the probe agent serving and probing in each namespace, verdicts), [`packet`] (the AF_PACKET socket and checksum
//! completion), [`capture`] (the underlay capture), [`run`] (run ids, ownership records,
//! the sweep of leftovers), [`ip`] (iproute2), [`sys`] (setns on dedicated threads, sysctls,
//! offloads, capabilities).

pub mod capture;
pub mod cluster;
pub mod ip;
pub mod packet;
pub mod pods;
pub mod probe;
pub mod run;
pub mod service;
pub mod sys;
pub mod vrouter;

use std::net::Ipv4Addr;

pub use cluster::{CleanupHandle, ForwarderCounters, NetnsDataplane, NetnsOptions};
pub use pods::SyncReport;
pub use probe::{NetVerdict, ProbeSpec, unsupported_reason};
pub use run::{SweepReport, sweep_leftovers};
pub use service::ServiceCounters;
pub use sys::check_capabilities;

/// Errors of the netns dataplane.
#[derive(Debug, thiserror::Error)]
pub enum NetnsError {
    /// The process lacks a capability the dataplane needs (an infrastructure error: exit 3).
    #[error(
        "missing capability {0}: the netns dataplane needs CAP_NET_ADMIN, CAP_NET_RAW and CAP_SYS_ADMIN (run as root, or grant them)"
    )]
    MissingCapability(&'static str),
    /// The platform cannot run it.
    #[error("the netns dataplane is not supported here: {0}")]
    Unsupported(String),
    /// A probe destination no device of the topology owns: nothing was sent.
    #[error(
        "{0} is outside the topology: the netns dataplane only sends to addresses of the namespaces it created"
    )]
    OutsideTopology(Ipv4Addr),
    /// An unknown probe source.
    #[error("unknown {0} in the netns topology")]
    Unknown(String),
    /// A run id that is not six hex digits.
    #[error("run id {0:?} is not six lower-case hex digits")]
    BadRunId(String),
    /// Namespaces of that run id exist already.
    #[error("run id {0} is in use: namespace {1} exists")]
    RunIdInUse(String, String),
    /// The run was cleaned up.
    #[error("the netns dataplane was stopped")]
    Stopped,
    /// An `ip` command failed.
    #[error("`{command}` failed: {stderr}")]
    Command {
        /// The command(s).
        command: String,
        /// What `ip` said.
        stderr: String,
    },
    /// A namespace could not be entered.
    #[error("entering network namespace {ns}: {source}")]
    Enter {
        /// The namespace.
        ns: String,
        /// The error.
        source: std::io::Error,
    },
    /// A system call or file operation failed.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// The error.
        source: std::io::Error,
    },
    /// The model dataplane refused.
    #[error(transparent)]
    Dataplane(#[from] harness_vrouter_sim::DataplaneError),
}
