//! contrail-mock: an in-memory Contrail VNC config API server for the conformance harness.
//!
//! - [`ConfigDb`]: the config database (typed create/update/delete/read/list, ref-update,
//!   set-tag, and [`ConfigDb::subscribe`] for the change stream), used by the HTTP handlers
//!   and by in-process writers such as the kube-manager emulation alike.
//! - [`serve`] / [`run_standalone`]: the VNC REST API on a loopback address, with the real
//!   server's paths, response shapes, status codes and the behaviours real clients rely on,
//!   a Server-Sent-Events change stream at `GET /watch`, and optional RBAC from
//!   api-access-lists ([`AuthConfig`]).
//!
//! - [`kube_manager`]: the contrail-kube-manager emulation: watches a Kubernetes API with
//!   kube-rs and maintains the Contrail objects of the Contrail 5.0 Kubernetes blueprint
//!   (profiles `upstream` and `r5.0`, injectable faults).
//!
//! Invariants: only loopback addresses are served; the database outlives servers (restart
//! with the same [`ConfigDb`] keeps every object); malformed input is an HTTP error, never a
//! panic.

pub mod change;
pub mod db;
mod defaults;
pub mod hooks;
pub mod kube_manager;
pub mod rbac;
pub mod server;

pub use change::{Change, ChangeKind, Subscription, WatchError};
pub use db::{ConfigDb, DbError};
pub use kube_manager::{
    KubeManager, KubeManagerConfig, KubeManagerHandle, KubeManagerStatus, RunningKubeManager,
    TranslationError, VncApi, run_standalone_with_kube_manager,
};
pub use rbac::{AaaMode, AuthConfig, Identity};
pub use server::{
    RunningServer, ServeError, ServerConfig, run_standalone, run_standalone_with, serve,
};
