//! The flow table: 5-tuple sessions per interface. A new flow is evaluated once (routes,
//! NAT, policy gates) and installed with its reverse entry, so the answer inherits the
//! forward decision without being evaluated again.

use std::collections::VecDeque;
use std::sync::Arc;

use crate::forward::control::{ItfId, VrfId};
use crate::forward::hash::FxMap;
use crate::forward::policy::Decision;
use crate::wire::frame::Tuple;

/// The pseudo-interface of a node's vhost (fabric SNAT sessions are keyed on it).
pub const VHOST_ITF: u32 = u32::MAX;

/// A flow key: the interface the flow belongs to, which way the packet crosses it and the
/// packet's 5-tuple. The direction keeps a hairpin session apart (a pod reaching itself
/// through its own service: the same tuple leaves and enters the same interface).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FlowKey {
    /// Interface index ([`VHOST_ITF`] for the vhost).
    pub itf: u32,
    /// The packet is for the interface (true) or comes from it (false).
    pub inbound: bool,
    /// 5-tuple.
    pub tuple: Tuple,
}

/// What the flow does to its packets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FlowAction {
    /// A packet that left the interface: rewrite to `nat` (fabric SNAT, or un-DNAT of an
    /// answer), look the destination up in `vrf` and send it (to `member` for ECMP).
    Egress {
        /// VRF of the lookup.
        vrf: VrfId,
        /// Rewrite.
        nat: Option<Tuple>,
        /// Sticky ECMP member.
        member: Option<ItfId>,
    },
    /// A packet for the interface: rewrite to `nat` (DNAT) and deliver.
    Ingress {
        /// Rewrite.
        nat: Option<Tuple>,
    },
    /// A packet that left the interface answering a session the node's own IP stack
    /// opened through vhost0: rewrite to `nat` and hand it back to the node's IP stack (the
    /// session's conntrack lives there, e.g. kube-proxy's node-port translation).
    ToHost {
        /// Rewrite.
        nat: Option<Tuple>,
    },
    /// An answer to a fabric SNAT session: rewrite to `nat` and deliver to `itf`.
    SnatReturn {
        /// The interface that opened the session.
        itf: ItfId,
        /// Rewrite.
        nat: Tuple,
    },
    /// Drop.
    Drop {
        /// Why.
        reason: Arc<str>,
    },
}

/// A flow entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FlowEntry {
    /// Action.
    pub action: FlowAction,
    /// Whether this is the reverse entry of a session.
    pub reverse: bool,
    /// The gate decisions the session was admitted (or denied) by.
    pub decided: Arc<[Decision]>,
}

/// A bounded flow table: when full, the oldest entries age out first.
#[derive(Debug, Clone)]
pub struct FlowTable {
    map: FxMap<FlowKey, FlowEntry>,
    order: VecDeque<FlowKey>,
    capacity: usize,
}

impl FlowTable {
    /// A table holding at most `capacity` entries.
    pub fn new(capacity: usize) -> Self {
        FlowTable {
            map: FxMap::default(),
            order: VecDeque::new(),
            capacity: capacity.max(2),
        }
    }

    /// The entry for `key`.
    #[inline]
    pub fn get(&self, key: &FlowKey) -> Option<&FlowEntry> {
        self.map.get(key)
    }

    /// Installs an entry (replacing one with the same key).
    pub fn insert(&mut self, key: FlowKey, entry: FlowEntry) {
        while self.map.len() >= self.capacity {
            match self.order.pop_front() {
                Some(old) => {
                    self.map.remove(&old);
                }
                None => break,
            }
        }
        if self.map.insert(key, entry).is_none() {
            self.order.push_back(key);
        }
    }

    /// Drops every flow.
    pub fn clear(&mut self) {
        self.map.clear();
        self.order.clear();
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// Whether the table is empty.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// Every entry.
    pub fn iter(&self) -> impl Iterator<Item = (&FlowKey, &FlowEntry)> {
        self.map.iter()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    fn key(port: u16) -> FlowKey {
        FlowKey {
            itf: 0,
            inbound: false,
            tuple: Tuple {
                src: Ipv4Addr::new(10, 0, 0, 1),
                dst: Ipv4Addr::new(10, 0, 0, 2),
                proto: 6,
                sport: port,
                dport: 80,
            },
        }
    }

    #[test]
    fn oldest_flows_age_out_first() {
        let mut t = FlowTable::new(2);
        let e = FlowEntry {
            action: FlowAction::Ingress { nat: None },
            reverse: false,
            decided: Arc::from(Vec::new()),
        };
        t.insert(key(1), e.clone());
        t.insert(key(2), e.clone());
        t.insert(key(3), e);
        assert_eq!(t.len(), 2);
        assert!(t.get(&key(1)).is_none());
        assert!(t.get(&key(3)).is_some());
    }
}
