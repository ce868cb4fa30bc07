//! Forwarding-relevant Contrail configuration.
//!
//! - [`Snapshot`]: the raw VNC objects the vrouter agent reads (virtual networks, IPAMs,
//!   network policies, security groups, VMIs, instance IPs, floating IPs, virtual machines and
//!   routers, the global vrouter config, the firewall objects, service instances and port
//!   tuples), updated change by change.
//! - [`Model`]: the typed view built from a snapshot ([`Model::build`]); objects of unknown
//!   shape are skipped and reported in [`Model::warnings`], never fatal.
//! - [`source`]: filling a snapshot from an in-process [`harness_contrail_mock::ConfigDb`]
//!   or from any VNC API over HTTP, and following the change stream (`subscribe` in process,
//!   `GET /watch` server-sent events over HTTP).

pub(crate) mod model;
pub mod source;

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use harness_contrail_mock::{Change, ChangeKind};
use harness_contrail_vnc::VncObject;

pub use model::{
    AddrMatch, Aps, FirewallEndpoint, FirewallPolicyConfig, FirewallRuleConfig, FloatingIp,
    IP_FABRIC_FQ, Interface, LbListener, LbMember, LbPool, LoadBalancer, Model, Network,
    PolicyAction, PolicyRule, PortMapping, PortPool, PortRange, RuleDirection, SecurityGroup,
    ServiceInstance, ServiceSide, TagSet, VirtualRouter,
};

/// The VNC types the agent reads.
pub const RELEVANT_TYPES: &[&str] = &[
    "project",
    "virtual-network",
    "network-ipam",
    "network-policy",
    "security-group",
    "virtual-machine",
    "virtual-machine-interface",
    "instance-ip",
    "floating-ip",
    "floating-ip-pool",
    "virtual-router",
    "global-vrouter-config",
    "firewall-policy",
    "firewall-rule",
    "application-policy-set",
    "tag",
    "address-group",
    "service-instance",
    "port-tuple",
    "loadbalancer",
    "loadbalancer-listener",
    "loadbalancer-pool",
    "loadbalancer-member",
];

/// What a change can affect, so the dataplane recompiles only what it must.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Scope {
    /// Not forwarding-relevant.
    None,
    /// Only policy (firewall objects, tags, address groups, security groups).
    Policy,
    /// Routes, interfaces, NAT: everything.
    Full,
}

/// Scope of a change to an object of `type_name`.
pub fn scope_of(type_name: &str) -> Scope {
    match type_name {
        "firewall-policy"
        | "firewall-rule"
        | "application-policy-set"
        | "tag"
        | "address-group"
        | "security-group" => Scope::Policy,
        t if RELEVANT_TYPES.contains(&t) => Scope::Full,
        _ => Scope::None,
    }
}

/// The raw forwarding-relevant objects, keyed by type and uuid.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    objects: HashMap<String, BTreeMap<String, Arc<VncObject>>>,
    /// Sequence number of the last change applied (0 when unknown).
    pub seq: u64,
}

impl Snapshot {
    /// An empty snapshot.
    pub fn new() -> Self {
        Self::default()
    }

    /// A snapshot of `objects` (types the agent does not read are ignored).
    pub fn from_objects(objects: impl IntoIterator<Item = VncObject>) -> Self {
        let mut s = Snapshot::new();
        for o in objects {
            s.insert(o);
        }
        s
    }

    /// Adds or replaces an object (ignored when its type is not forwarding-relevant).
    pub fn insert(&mut self, obj: VncObject) {
        if scope_of(&obj.type_name) == Scope::None {
            return;
        }
        self.objects
            .entry(obj.type_name.clone())
            .or_default()
            .insert(obj.uuid.clone(), Arc::new(obj));
    }

    /// Removes an object.
    pub fn remove(&mut self, type_name: &str, uuid: &str) {
        if let Some(m) = self.objects.get_mut(type_name) {
            m.remove(uuid);
        }
    }

    /// Applies one change of the VNC change stream and returns what it may affect. A change
    /// whose content is not an object of its type is skipped (scope `None`) and described in
    /// the returned warning.
    pub fn apply(&mut self, change: &Change) -> (Scope, Option<String>) {
        let scope = scope_of(&change.type_name);
        if change.seq > self.seq {
            self.seq = change.seq;
        }
        if scope == Scope::None {
            return (Scope::None, None);
        }
        match change.kind {
            ChangeKind::Delete => {
                self.remove(&change.type_name, &change.uuid);
                (scope, None)
            }
            ChangeKind::Create | ChangeKind::Update => {
                match VncObject::from_json(&change.type_name, &change.content) {
                    Ok(mut obj) => {
                        if obj.uuid.is_empty() {
                            obj.uuid = change.uuid.clone();
                        }
                        if obj.fq_name.is_empty() {
                            obj.fq_name = change.fq_name.clone();
                        }
                        self.insert(obj);
                        (scope, None)
                    }
                    Err(e) => (
                        Scope::None,
                        Some(format!(
                            "change {} to {} {}: skipped, {e}",
                            change.seq, change.type_name, change.uuid
                        )),
                    ),
                }
            }
        }
    }

    /// Objects of `type_name`, by uuid.
    pub fn objects_of(&self, type_name: &str) -> impl Iterator<Item = &VncObject> {
        self.objects
            .get(type_name)
            .into_iter()
            .flat_map(|m| m.values().map(|o| o.as_ref()))
    }

    /// The object `uuid` of `type_name`.
    pub fn get(&self, type_name: &str, uuid: &str) -> Option<&VncObject> {
        self.objects.get(type_name)?.get(uuid).map(|o| o.as_ref())
    }

    /// Number of objects held.
    pub fn len(&self) -> usize {
        self.objects.values().map(BTreeMap::len).sum()
    }

    /// Whether no object is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn change(seq: u64, kind: ChangeKind, t: &str, content: serde_json::Value) -> Change {
        Change {
            seq,
            kind,
            type_name: t.into(),
            uuid: format!("u{seq}"),
            fq_name: vec!["d".into(), "p".into(), "n".into()],
            content,
        }
    }

    #[test]
    fn changes_update_the_snapshot_and_bad_content_is_skipped() {
        let mut s = Snapshot::new();
        let (scope, w) = s.apply(&change(1, ChangeKind::Create, "virtual-network", json!({})));
        assert_eq!((scope, w), (Scope::Full, None));
        assert_eq!(s.len(), 1);
        assert_eq!(s.get("virtual-network", "u1").map(|o| o.name()), Some("n"));
        let (scope, w) = s.apply(&change(
            2,
            ChangeKind::Update,
            "firewall-rule",
            json!([1, 2]),
        ));
        assert_eq!(scope, Scope::None);
        assert!(w.is_some_and(|w| w.contains("skipped")));
        let (scope, _) = s.apply(&change(3, ChangeKind::Create, "tag", json!({})));
        assert_eq!(scope, Scope::Policy);
        let (scope, _) = s.apply(&change(4, ChangeKind::Create, "bgp-router", json!({})));
        assert_eq!(scope, Scope::None);
        let mut del = change(1, ChangeKind::Delete, "virtual-network", json!({}));
        del.seq = 5;
        del.uuid = "u1".into();
        s.apply(&del);
        assert!(s.get("virtual-network", "u1").is_none());
        assert_eq!(s.seq, 5);
    }
}
