#![warn(missing_docs)]
//! Independent semantics of the Contrail conformance harness: what MUST happen, computed from
//! the Kubernetes objects and the Contrail 5.0 blueprint, never from what the system under test
//! produced.
//!
//! * [`model`]: the cluster — namespaces, pods, services, ingresses, NetworkPolicies, RBAC
//!   objects, nodes, fabric hosts, external clients — with observed or planned addresses, and
//!   peers expanded to [`Endpoint`]s.
//! * [`eval`]: the [`Oracle`]: network isolation (Contrail 5.0 networks, fabric forwarding,
//!   SNAT, service chains), service DNAT, NetworkPolicy v1 (`upstream`) or the shipped
//!   translator (`r5.0`), listeners; every [`Expectation`] carries an [`Explanation`] and, in
//!   r5.0, the [`Deviation`]s that made it differ from upstream.
//! * [`rbac`]: Kubernetes RBAC decisions and the Kubernetes → Contrail RBAC mapping.
//! * [`bench`](mod@bench): a synthetic workload and a matrix timer for `harness bench`.
//!
//! Invariants: no I/O, no printing, no clocks (the bench takes its clock from the caller), no
//! randomness beyond a seeded generator; the same inputs give the same outputs, whatever the
//! order of the objects (except NetworkPolicy creation order, which r5.0 depends on).
//!
//! ```
//! use harness_oracle::{Cluster, Oracle, Verdict};
//! use harness_scenario::{ClusterSpec, ContrailSettings, PortSpec, Profile};
//! use serde_json::json;
//!
//! let pod = |ns: &str, name: &str| json!({"apiVersion": "v1", "kind": "Pod",
//!     "metadata": {"name": name, "namespace": ns, "labels": {"pod": name}},
//!     "spec": {"containers": [{"name": "c", "ports": [{"containerPort": 80, "name": "serve-80-tcp"}]}]}});
//! let objects = vec![
//!     pod("x", "a"), pod("y", "b"),
//!     json!({"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
//!            "metadata": {"name": "deny-all", "namespace": "x"}, "spec": {"podSelector": {}}}),
//! ];
//! let cluster = Cluster::from_objects(&objects, &ClusterSpec::default(), &ContrailSettings::default())?;
//! let oracle = Oracle::new(&cluster, Profile::Upstream);
//! let a = &cluster.expand(&"x/a".parse().unwrap())?[0];
//! let b = &cluster.expand(&"y/b".parse().unwrap())?[0];
//! let e = oracle.evaluate(b, a, &PortSpec::tcp(80));
//! assert_eq!(e.verdict, Verdict::Deny);
//! assert_eq!(e.explanation.to_string(),
//!     "denied: ingress to x/a isolated by x/deny-all (policyTypes Ingress); no ingress rule admits y/b; egress from y/b not isolated");
//! # Ok::<(), harness_oracle::ModelError>(())
//! ```

pub mod bench;
mod bitset;
pub mod eval;
pub mod explain;
pub mod model;
pub mod network;
pub mod policy;
pub mod r50;
pub mod rbac;
pub mod selector;
mod upstream;

#[cfg(test)]
mod tests;

pub use eval::Oracle;
pub use explain::{
    DirectionOutcome, Expectation, ExpectedPath, Explanation, Fact, FirewallFact, PolicyFact,
    PolicyRef, Underlay, Verdict,
};
pub use model::{Cluster, Endpoint, EndpointKind, ModelError};
pub use network::NetworkId;
pub use policy::Direction;
pub use r50::{Deviation, TranslationError};
pub use rbac::{ContrailAccess, ContrailMapping, Crud, Decision, MappingError, Rbac};
