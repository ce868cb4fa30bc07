//! The scenario language of the Contrail conformance harness.
//!
//! A scenario is one YAML file a person can read top to bottom: the cluster it needs, the
//! Kubernetes objects it applies, the steps that change things, and what must then be true.
//! This crate owns its types ([`model`]), loading with `file:line:col` diagnostics
//! ([`load`]), the vocabulary shared with the oracle ([`peer`], [`port`]), truth tables
//! ([`table`]), bindings to cluster-assigned values ([`template`]) and the JSON Schema
//! ([`schema`]).
//!
//! Invariants: no network I/O; the only file I/O is reading scenario and include files in
//! [`load`]; nothing here prints.
//!
//! ```
//! let src = "name: demo\nsteps:\n  - name: s\n    expect:\n      - reachability: {peers: [x/a, x/b], ports: [TCP/80]}\n";
//! let loaded = harness_scenario::load::load_str(src, "demo.yaml").unwrap();
//! assert_eq!(loaded.scenario.name, "demo");
//! ```

pub mod diag;
pub mod duration;
pub mod load;
pub mod located;
pub mod model;
pub mod peer;
pub mod port;
pub mod rbac;
pub mod schema;
pub mod select;
pub mod table;
pub mod template;

pub use diag::Diagnostic;
pub use duration::HumanDuration;
pub use load::{LoadedScenario, Manifest};
pub use located::{Located, Origin};
pub use model::*;
pub use peer::{NamePattern, ObjectName, Peer};
pub use port::{PortRef, PortSpec, Protocol};
pub use rbac::RbacRequest;
pub use table::{TableCell, TruthTable};

/// Accepts a YAML string or number as text (so `ports: [80]` and `within: 5s` both read).
pub(crate) struct StringOrNumber(pub String);

impl<'de> serde::Deserialize<'de> for StringOrNumber {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = StringOrNumber;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a string")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<StringOrNumber, E> {
                Ok(StringOrNumber(v.to_string()))
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<StringOrNumber, E> {
                Ok(StringOrNumber(v.to_string()))
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<StringOrNumber, E> {
                Ok(StringOrNumber(v.to_string()))
            }
            fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<StringOrNumber, E> {
                Ok(StringOrNumber(v.to_string()))
            }
        }
        d.deserialize_any(V)
    }
}

/// Serde and JSON Schema for a type that is written as one string (via `FromStr`/`Display`).
#[macro_export]
#[doc(hidden)]
macro_rules! string_serde {
    ($ty:ty, $name:literal, $desc:literal, $pattern:literal) => {
        impl serde::Serialize for $ty {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.collect_str(self)
            }
        }
        impl<'de> serde::Deserialize<'de> for $ty {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = <String as serde::Deserialize>::deserialize(d)?;
                s.parse().map_err(serde::de::Error::custom)
            }
        }
        impl schemars::JsonSchema for $ty {
            fn schema_name() -> std::borrow::Cow<'static, str> {
                $name.into()
            }
            fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
                schemars::json_schema!({"description": $desc, "type": "string", "pattern": $pattern})
            }
        }
    };
}
