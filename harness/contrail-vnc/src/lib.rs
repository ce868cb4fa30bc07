//! The Contrail (Tungsten Fabric) VNC config object model and a REST client for it.
//!
//! - [`schema`]: every resource type of the VNC schema (generated from the schema shipped with
//!   the real `vnc_api` library): collection names, parents, properties, references with
//!   attribute types, derived back-reference and child fields, and the complex xsd types.
//! - [`VncObject`]: a generic object with the schema's own JSON field names, so what the
//!   harness serves is what the real client library reads.
//! - [`validate`]: the real API server's request validation rules (unknown field → 400,
//!   xsd type checks, numeric-string normalisation).
//! - [`types`]: typed views of the objects the harness reads most (virtual networks, network
//!   policies, firewall rules, tags, api-access-lists, ...).
//! - [`VncClient`]: CRUD, list, fqname/id lookup, ref-update, set-tag over HTTP.
//!
//! Invariant: this crate knows nothing about Kubernetes or about how a server stores objects.

pub mod client;
pub mod object;
pub mod schema;
pub mod types;
pub mod validate;

pub use client::{
    Auth, Created, ListParams, ReadParams, RefOperation, RefUpdate, TagChange, VncClient, VncError,
};
pub use object::{ModelError, Ref, VncObject};
pub use types::Resource;
