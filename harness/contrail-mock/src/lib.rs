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
//! Invariants: only loopback addresses are served; the database outlives servers (restart
//! with the same [`ConfigDb`] keeps every object); malformed input is an HTTP error, never a
//! panic.

pub mod change;
pub mod db;
mod defaults;
pub mod hooks;
pub mod rbac;
pub mod server;

pub use change::{Change, ChangeKind, Subscription, WatchError};
pub use db::{ConfigDb, DbError};
pub use rbac::{AaaMode, AuthConfig, Identity};
pub use server::{
    RunningServer, ServeError, ServerConfig, run_standalone, run_standalone_with, serve,
};
