//! Simulated Contrail vrouters and underlay for the conformance harness.
//!
//! The data plane of the embedded default: per-node simulated vrouters that take their
//! configuration from the VNC API (contrail-mock in process, or any VNC API over HTTP) and
//! forward real packet bytes over an underlay that also holds hosts without a vrouter.
//!
//! - [`wire`]: packet codecs (MPLS, VXLAN, GRE, SCTP by hand; Ethernet/ARP/IPv4/TCP/UDP/ICMP
//!   through etherparse) and the pcap writer.
//! - [`config`]: the forwarding-relevant configuration ([`config::Snapshot`],
//!   [`config::Model`]) and its sources (in-process `ConfigDb`, HTTP + `/watch`).
//! - [`forward`]: the forwarding core both dataplanes share — control-plane view (VRFs,
//!   routes, labels), policy gates, flow table and the per-node [`forward::vrouter::Vrouter`].
//! - [`Dataplane`]: the model dataplane — vrouters, underlay, gateway, fabric hosts and
//!   kernel-like endpoints in one process; [`Dataplane::probe`] is a real packet exchange
//!   and returns an [`Observation`] (verdict, hops, frames).
//! - [`trace`]: hops and captured frames, [`trace::write_pcap`].
//! - [`agent`]: the loop that keeps a dataplane in step with the VNC change stream.
//! - [`node`]: the node agent toward Kubernetes (kubelet + CNI + kube-proxy): Node
//!   registration, pod wiring and status, the exec handler running the probe agent inside
//!   pods, and the node-port rules ([`kube_proxy`]) it installs from Services and
//!   EndpointSlices.
//!
//! ```
//! use harness_scenario::Protocol;
//! use harness_vrouter_sim::config::Snapshot;
//! use harness_vrouter_sim::{Dataplane, EndpointRef, HostSpec, ServedPort, Topology, Verdict};
//!
//! // Two hosts on the underlay and no Contrail objects at all.
//! let host = |name: &str, ip: &str, ports| HostSpec { name: name.into(), ip: ip.parse().unwrap(), ports };
//! let topology = Topology {
//!     fabric_hosts: vec![host("a", "192.168.0.50", vec![]), host("b", "192.168.0.51", vec![ServedPort::tcp(443)])],
//!     ..Topology::default()
//! };
//! let mut dp = Dataplane::from_config(Snapshot::new(), topology);
//! let from = EndpointRef::FabricHost("a".into());
//! let to = "192.168.0.51".parse().unwrap();
//! let o = dp.probe(&from, to, Protocol::Tcp, 443).unwrap();
//! assert_eq!(o.verdict, Verdict::Connected { backend: "b".into() });
//! let o = dp.probe(&from, to, Protocol::Tcp, 80).unwrap();
//! assert!(matches!(o.verdict, Verdict::Refused { .. }));
//! ```
//!
//! Invariants: no parser panics on any input; configuration objects of unknown shape are
//! skipped and reported ([`Dataplane::warnings`]); nothing here prints.

pub mod agent;
pub mod config;
mod dataplane;
pub mod forward;
pub mod node;
pub mod topology;
pub mod trace;
pub mod wire;

pub use dataplane::io;
pub use dataplane::kube_proxy;
pub use dataplane::{
    DEFAULT_FLOW_CAPACITY, Dataplane, DataplaneError, EndpointRef, NODE_PORT_RANGE, Observation,
    ProbeOptions, Verdict,
};
pub use topology::{
    ClientSpec, EndpointSpec, GatewaySpec, HostSpec, NodeSpec, ServedPort, Topology,
};
pub use trace::{CapturedFrame, Hop, HopDecision, write_pcap};
