//! The forwarding core shared by every dataplane: the control-plane view ([`control`]), the
//! policy gates ([`policy`]), the flow table ([`flow`]) and the per-node [`vrouter`].

pub mod control;
pub mod flow;
pub mod hash;
pub mod policy;
pub mod vrouter;
