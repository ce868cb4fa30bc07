//! Checks: each turns one expectation of a scenario into result cells.

pub mod contrail;
pub mod rbac;
