//! Typed views of the objects and properties the harness reads most. Field names are the VNC
//! schema's own, so `serde_json` turns them into exactly what the real `vnc_api` sends.
//! Integers that real clients sometimes send as strings (ports, prefix lengths) are accepted
//! in both forms.
//!
//! Every view converts to and from [`VncObject`] through [`Resource`]; fields a view does not
//! name are dropped on that round trip, so write the generic object when you need them all.

use serde::{Deserialize, Deserializer, Serialize, de::DeserializeOwned};
use serde_json::Value;

use crate::object::{ModelError, Ref, VncObject};

fn lenient_i64<'de, D: Deserializer<'de>>(d: D) -> Result<i64, D::Error> {
    match Value::deserialize(d)? {
        Value::Number(n) => n
            .as_i64()
            .ok_or_else(|| serde::de::Error::custom(format!("integer expected, got {n}"))),
        Value::String(s) => s
            .trim()
            .parse()
            .map_err(|_| serde::de::Error::custom(format!("integer expected, got '{s}'"))),
        other => Err(serde::de::Error::custom(format!(
            "integer expected, got {other}"
        ))),
    }
}

fn lenient_opt_i64<'de, D: Deserializer<'de>>(d: D) -> Result<Option<i64>, D::Error> {
    match Value::deserialize(d)? {
        Value::Null => Ok(None),
        Value::Number(n) => Ok(n.as_i64()),
        Value::String(s) if s.trim().is_empty() => Ok(None),
        Value::String(s) => s
            .trim()
            .parse()
            .map(Some)
            .map_err(|_| serde::de::Error::custom(format!("integer expected, got '{s}'"))),
        other => Err(serde::de::Error::custom(format!(
            "integer expected, got {other}"
        ))),
    }
}

fn null_as_default<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

/// A config resource with a typed view.
pub trait Resource: Serialize + DeserializeOwned {
    /// Hyphenated VNC type name.
    const TYPE: &'static str;

    /// The generic object for this view.
    ///
    /// # Errors
    /// When the view does not serialise to a valid object body.
    fn to_object(&self) -> Result<VncObject, ModelError> {
        let value = serde_json::to_value(self).map_err(|e| ModelError::BadField {
            type_name: Self::TYPE.to_owned(),
            field: String::new(),
            reason: e.to_string(),
        })?;
        VncObject::from_json(Self::TYPE, &value)
    }

    /// The view of a generic object.
    ///
    /// # Errors
    /// When a field the view names has an incompatible shape.
    fn from_object(obj: &VncObject) -> Result<Self, ModelError> {
        serde_json::from_value(obj.to_json()).map_err(|e| ModelError::BadField {
            type_name: Self::TYPE.to_owned(),
            field: String::new(),
            reason: e.to_string(),
        })
    }
}

/// A reference whose attribute has a known type.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TypedRef<A> {
    /// fq_name of the target.
    #[serde(default)]
    pub to: Vec<String>,
    /// uuid of the target (empty: resolved by name on write).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub uuid: String,
    /// The link attribute.
    #[serde(default)]
    pub attr: Option<A>,
}

impl<A> TypedRef<A> {
    /// A reference to `to` with `attr`.
    pub fn new(to: Vec<String>, attr: A) -> Self {
        TypedRef {
            to,
            uuid: String::new(),
            attr: Some(attr),
        }
    }
}

/// `KeyValuePair`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyValuePair {
    /// Key.
    pub key: String,
    /// Value.
    #[serde(default)]
    pub value: Option<String>,
}

/// `KeyValuePairs` (`annotations`).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct KeyValuePairs {
    /// Entries.
    #[serde(default, deserialize_with = "null_as_default")]
    pub key_value_pair: Vec<KeyValuePair>,
}

impl KeyValuePairs {
    /// The value of `key`.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.key_value_pair
            .iter()
            .find(|kv| kv.key == key)
            .and_then(|kv| kv.value.as_deref())
    }
}

/// `ShareType` (an entry of `perms2.share`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShareType {
    /// Tenant (project uuid, optionally `domain:`/`tenant:` prefixed).
    pub tenant: String,
    /// Access bits (4 R, 2 W, 1 X).
    #[serde(deserialize_with = "lenient_i64")]
    pub tenant_access: i64,
}

/// `PermType2` (`perms2`).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct PermType2 {
    /// Owner tenant.
    #[serde(default)]
    pub owner: String,
    /// Owner access bits.
    #[serde(default, deserialize_with = "lenient_i64")]
    pub owner_access: i64,
    /// Global access bits.
    #[serde(default, deserialize_with = "lenient_i64")]
    pub global_access: i64,
    /// Share list.
    #[serde(default, deserialize_with = "null_as_default")]
    pub share: Vec<ShareType>,
}

/// `SubnetType`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SubnetType {
    /// Network address.
    pub ip_prefix: String,
    /// Prefix length.
    #[serde(deserialize_with = "lenient_i64")]
    pub ip_prefix_len: i64,
}

impl SubnetType {
    /// `10.0.0.0/24` style.
    pub fn cidr(&self) -> String {
        format!("{}/{}", self.ip_prefix, self.ip_prefix_len)
    }
}

/// `IpamSubnetType`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct IpamSubnetType {
    /// The subnet (absent for a flat-subnet reference).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subnet: Option<SubnetType>,
    /// Gateway address (server-filled for user-defined subnets).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_gateway: Option<String>,
    /// DNS server address (server-filled).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dns_server_address: Option<String>,
    /// Subnet uuid (server-filled).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subnet_uuid: Option<String>,
    /// Subnet name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subnet_name: Option<String>,
    /// DHCP on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enable_dhcp: Option<bool>,
}

/// `IpamSubnets` (`network_ipam.ipam_subnets`).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct IpamSubnets {
    /// Subnets.
    #[serde(default, deserialize_with = "null_as_default")]
    pub subnets: Vec<IpamSubnetType>,
}

/// `VnSubnetsType` (attribute of `virtual_network.network_ipam_refs`).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct VnSubnetsType {
    /// Subnets of this network on the IPAM (`[]` for a flat-subnet IPAM on write).
    #[serde(default, deserialize_with = "null_as_default")]
    pub ipam_subnets: Vec<IpamSubnetType>,
}

/// `VirtualNetworkType` (`virtual_network_properties`).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct VirtualNetworkType {
    /// `l3`, `l2` or `l2_l3`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub forwarding_mode: Option<String>,
    /// VXLAN VNI.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "lenient_opt_i64"
    )]
    pub vxlan_network_identifier: Option<i64>,
    /// Transit network.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allow_transit: Option<bool>,
    /// RPF mode.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rpf: Option<String>,
}

/// `SequenceType`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct SequenceType {
    /// Major.
    #[serde(default, deserialize_with = "lenient_i64")]
    pub major: i64,
    /// Minor.
    #[serde(default, deserialize_with = "lenient_i64")]
    pub minor: i64,
}

/// `VirtualNetworkPolicyType` (attribute of `virtual_network.network_policy_refs`).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct VirtualNetworkPolicyType {
    /// Attachment order.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sequence: Option<SequenceType>,
}

/// `FirewallSequence` (attribute of `firewall_policy_refs` / `firewall_rule_refs`), e.g.
/// `"00001.0"`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct FirewallSequence {
    /// Sequence string.
    #[serde(default)]
    pub sequence: String,
}

/// `PortType`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PortType {
    /// First port (-1 = any).
    #[serde(deserialize_with = "lenient_i64")]
    pub start_port: i64,
    /// Last port.
    #[serde(deserialize_with = "lenient_i64")]
    pub end_port: i64,
}

/// `FirewallServiceType` (`firewall_rule.service`).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct FirewallServiceType {
    /// `any`, `tcp`, `udp`, `icmp` or a number.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protocol: Option<String>,
    /// Protocol number (server-filled).
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "lenient_opt_i64"
    )]
    pub protocol_id: Option<i64>,
    /// Source ports.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub src_ports: Option<PortType>,
    /// Destination ports.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dst_ports: Option<PortType>,
}

/// `FirewallRuleEndpointType` (`endpoint_1`, `endpoint_2`): exactly one of the selectors.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct FirewallRuleEndpointType {
    /// A subnet.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subnet: Option<SubnetType>,
    /// A virtual network fq_name string.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub virtual_network: Option<String>,
    /// An address-group fq_name string.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address_group: Option<String>,
    /// Tag names (`k=v`, `global:k=v`): all must match.
    #[serde(
        default,
        deserialize_with = "null_as_default",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub tags: Vec<String>,
    /// Tag ids (server-filled from `tags`).
    #[serde(
        default,
        deserialize_with = "null_as_default",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub tag_ids: Vec<i64>,
    /// Any workload.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub any: Option<bool>,
}

/// `ActionListType`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct ActionListType {
    /// `pass` or `deny`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub simple_action: Option<String>,
    /// Service instances to chain (fq_name strings), in order.
    #[serde(
        default,
        deserialize_with = "null_as_default",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub apply_service: Vec<String>,
    /// Log the flow.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log: Option<bool>,
}

/// `FirewallRuleMatchTagsType` (`match_tags`).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct FirewallRuleMatchTagsType {
    /// Tag type names.
    #[serde(default, deserialize_with = "null_as_default")]
    pub tag_list: Vec<String>,
}

/// `FirewallRuleMatchTagsTypeIdList` (`match_tag_types`, server-filled).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct FirewallRuleMatchTagsTypeIdList {
    /// Tag type ids.
    #[serde(default, deserialize_with = "null_as_default")]
    pub tag_type: Vec<i64>,
}

/// `AddressType` (network-policy rule address): one of the selectors.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct AddressType {
    /// A subnet.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subnet: Option<SubnetType>,
    /// A virtual network fq_name string (or `any`, `local`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub virtual_network: Option<String>,
    /// A security group fq_name string (or `local`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub security_group: Option<String>,
    /// Every network this policy is attached to (fq_name string of the policy).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network_policy: Option<String>,
    /// Several subnets.
    #[serde(
        default,
        deserialize_with = "null_as_default",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub subnet_list: Vec<SubnetType>,
}

/// `PolicyRuleType` (a network-policy or security-group rule).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct PolicyRuleType {
    /// Rule uuid.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rule_uuid: Option<String>,
    /// `>` or `<>`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub direction: Option<String>,
    /// `any`, `tcp`, `udp`, `icmp` or a number.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protocol: Option<String>,
    /// Sources.
    #[serde(default, deserialize_with = "null_as_default")]
    pub src_addresses: Vec<AddressType>,
    /// Source ports.
    #[serde(default, deserialize_with = "null_as_default")]
    pub src_ports: Vec<PortType>,
    /// Destinations.
    #[serde(default, deserialize_with = "null_as_default")]
    pub dst_addresses: Vec<AddressType>,
    /// Destination ports.
    #[serde(default, deserialize_with = "null_as_default")]
    pub dst_ports: Vec<PortType>,
    /// Action (incl. `apply_service` for service chaining).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub action_list: Option<ActionListType>,
    /// `IPv4` or `IPv6`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ethertype: Option<String>,
}

/// `PolicyEntriesType` (`network_policy_entries`, `security_group_entries`).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct PolicyEntriesType {
    /// Rules in order.
    #[serde(default, deserialize_with = "null_as_default")]
    pub policy_rule: Vec<PolicyRuleType>,
}

/// `RbacPermType`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RbacPermType {
    /// Role name or `*`.
    pub role_name: String,
    /// Subset of `CRUD`.
    pub role_crud: String,
}

/// `RbacRuleType`: `<rule_object>[.<rule_field>] <role>:<CRUD>, ...`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RbacRuleType {
    /// Resource type (or action path segment) or `*`.
    pub rule_object: String,
    /// Top-level field, or `None`/`*`/empty for the whole object.
    #[serde(default)]
    pub rule_field: Option<String>,
    /// Role permissions.
    #[serde(default, deserialize_with = "null_as_default")]
    pub rule_perms: Vec<RbacPermType>,
}

impl RbacRuleType {
    /// Parses rbacutil's text form, e.g. `"virtual-network Member:CRUD, *:R"` or
    /// `"virtual-network.fabric_snat admin:U"`.
    ///
    /// # Errors
    /// When the text has no object part or a permission is not `role:CRUD`.
    pub fn parse(text: &str) -> Result<Self, String> {
        let text = text.trim();
        let (object_part, perms_part) = text.split_once(char::is_whitespace).ok_or_else(|| {
            format!("rbac rule '{text}' needs '<object>[.<field>] <role>:<CRUD>'")
        })?;
        let (rule_object, rule_field) = match object_part.split_once('.') {
            Some((o, f)) => (o.to_owned(), Some(f.to_owned())),
            None => (object_part.to_owned(), None),
        };
        let mut rule_perms = Vec::new();
        for perm in perms_part.split(',') {
            let perm = perm.trim();
            if perm.is_empty() {
                continue;
            }
            let (role, crud) = perm
                .split_once(':')
                .ok_or_else(|| format!("rbac permission '{perm}' must be '<role>:<CRUD>'"))?;
            let crud = crud.trim();
            if crud.is_empty() || !crud.chars().all(|c| "CRUD".contains(c)) {
                return Err(format!(
                    "rbac permission '{perm}': '{crud}' is not a subset of CRUD"
                ));
            }
            rule_perms.push(RbacPermType {
                role_name: role.trim().to_owned(),
                role_crud: crud.to_owned(),
            });
        }
        if rule_perms.is_empty() {
            return Err(format!("rbac rule '{text}' has no permissions"));
        }
        Ok(RbacRuleType {
            rule_object,
            rule_field,
            rule_perms,
        })
    }
}

/// `RbacRuleEntriesType` (`api_access_list_entries`).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct RbacRuleEntriesType {
    /// Rules.
    #[serde(default, deserialize_with = "null_as_default")]
    pub rbac_rule: Vec<RbacRuleType>,
}

/// `SubnetListType` (`address_group_prefix`).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct SubnetListType {
    /// Prefixes.
    #[serde(default, deserialize_with = "null_as_default")]
    pub subnet: Vec<SubnetType>,
}

macro_rules! common_fields {
    ($(#[$meta:meta])* pub struct $name:ident : $type_name:literal { $($body:tt)* }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
        pub struct $name {
            /// Object uuid (empty before creation).
            #[serde(default, skip_serializing_if = "String::is_empty")]
            pub uuid: String,
            /// Fully qualified name.
            #[serde(default)]
            pub fq_name: Vec<String>,
            /// Parent type.
            #[serde(default, skip_serializing_if = "Option::is_none")]
            pub parent_type: Option<String>,
            /// Display name (server default: the name).
            #[serde(default, skip_serializing_if = "Option::is_none")]
            pub display_name: Option<String>,
            /// Annotations.
            #[serde(default, skip_serializing_if = "Option::is_none")]
            pub annotations: Option<KeyValuePairs>,
            /// Ownership and sharing (server-filled).
            #[serde(default, skip_serializing_if = "Option::is_none")]
            pub perms2: Option<PermType2>,
            /// Tags attached with set-tag.
            #[serde(default, deserialize_with = "null_as_default", skip_serializing_if = "Vec::is_empty")]
            pub tag_refs: Vec<Ref>,
            $($body)*
        }

        impl Resource for $name {
            const TYPE: &'static str = $type_name;
        }
    };
}

common_fields! {
    /// `project`.
    pub struct Project: "project" {
        /// Default application policy set.
        #[serde(default, deserialize_with = "null_as_default", skip_serializing_if = "Vec::is_empty")]
        pub application_policy_set_refs: Vec<Ref>,
    }
}

common_fields! {
    /// `virtual-network`.
    pub struct VirtualNetwork: "virtual-network" {
        /// Forwarding mode and friends.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub virtual_network_properties: Option<VirtualNetworkType>,
        /// Fabric SNAT (distributed SNAT to the underlay).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub fabric_snat: Option<bool>,
        /// `flat-subnet-only`, `user-defined-subnet-only`, ...
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub address_allocation_mode: Option<String>,
        /// System-assigned network id.
        #[serde(default, skip_serializing_if = "Option::is_none", deserialize_with = "lenient_opt_i64")]
        pub virtual_network_network_id: Option<i64>,
        /// Provider network marker (ip-fabric).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub is_provider_network: Option<bool>,
        /// IPAMs with the subnets used from each.
        #[serde(default, deserialize_with = "null_as_default", skip_serializing_if = "Vec::is_empty")]
        pub network_ipam_refs: Vec<TypedRef<VnSubnetsType>>,
        /// Attached network policies with their sequence.
        #[serde(default, deserialize_with = "null_as_default", skip_serializing_if = "Vec::is_empty")]
        pub network_policy_refs: Vec<TypedRef<VirtualNetworkPolicyType>>,
        /// Provider network link (`ip-fabric` ⇒ ip-fabric forwarding).
        #[serde(default, deserialize_with = "null_as_default", skip_serializing_if = "Vec::is_empty")]
        pub virtual_network_refs: Vec<Ref>,
    }
}

common_fields! {
    /// `network-ipam`.
    pub struct NetworkIpam: "network-ipam" {
        /// `flat-subnet`, `user-defined-subnet` or `auto-subnet`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub ipam_subnet_method: Option<String>,
        /// Flat subnets.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub ipam_subnets: Option<IpamSubnets>,
    }
}

common_fields! {
    /// `network-policy`.
    pub struct NetworkPolicy: "network-policy" {
        /// Rules.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub network_policy_entries: Option<PolicyEntriesType>,
    }
}

common_fields! {
    /// `firewall-rule`.
    pub struct FirewallRule: "firewall-rule" {
        /// Action.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub action_list: Option<ActionListType>,
        /// Protocol and ports.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub service: Option<FirewallServiceType>,
        /// First endpoint.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub endpoint_1: Option<FirewallRuleEndpointType>,
        /// Second endpoint.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub endpoint_2: Option<FirewallRuleEndpointType>,
        /// `>`, `<` or `<>`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub direction: Option<String>,
        /// Tag types both ends must share.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub match_tags: Option<FirewallRuleMatchTagsType>,
        /// Compiled `match_tags` (server-filled, default `[1]` = application).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub match_tag_types: Option<FirewallRuleMatchTagsTypeIdList>,
        /// Address groups derived from the endpoints (server-filled).
        #[serde(default, deserialize_with = "null_as_default", skip_serializing_if = "Vec::is_empty")]
        pub address_group_refs: Vec<Ref>,
    }
}

common_fields! {
    /// `firewall-policy`.
    pub struct FirewallPolicy: "firewall-policy" {
        /// Rules with their sequence.
        #[serde(default, deserialize_with = "null_as_default", skip_serializing_if = "Vec::is_empty")]
        pub firewall_rule_refs: Vec<TypedRef<FirewallSequence>>,
    }
}

common_fields! {
    /// `application-policy-set`.
    pub struct ApplicationPolicySet: "application-policy-set" {
        /// Firewall policies with their sequence.
        #[serde(default, deserialize_with = "null_as_default", skip_serializing_if = "Vec::is_empty")]
        pub firewall_policy_refs: Vec<TypedRef<FirewallSequence>>,
        /// Applies to every application.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub all_applications: Option<bool>,
    }
}

common_fields! {
    /// `tag`.
    pub struct Tag: "tag" {
        /// Tag type (lower-cased by the server).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub tag_type_name: Option<String>,
        /// Tag value.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub tag_value: Option<String>,
        /// `0xTTTTVVVV` (server-filled).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub tag_id: Option<String>,
        /// Tag type link (server-filled).
        #[serde(default, deserialize_with = "null_as_default", skip_serializing_if = "Vec::is_empty")]
        pub tag_type_refs: Vec<Ref>,
    }
}

impl Tag {
    /// A tag `type=value` under the config root (global, as kube-manager creates them).
    pub fn global(tag_type: &str, value: &str) -> Self {
        Tag {
            fq_name: vec![format!("{tag_type}={value}")],
            tag_type_name: Some(tag_type.to_owned()),
            tag_value: Some(value.to_owned()),
            ..Tag::default()
        }
    }

    /// The numeric tag id (`0xTTTTVVVV`).
    pub fn id(&self) -> Option<u32> {
        let s = self.tag_id.as_deref()?;
        u32::from_str_radix(s.trim_start_matches("0x"), 16).ok()
    }
}

common_fields! {
    /// `address-group`.
    pub struct AddressGroup: "address-group" {
        /// Prefixes.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub address_group_prefix: Option<SubnetListType>,
    }
}

common_fields! {
    /// `api-access-list`.
    pub struct ApiAccessList: "api-access-list" {
        /// RBAC rules.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub api_access_list_entries: Option<RbacRuleEntriesType>,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn string_ports_read_as_numbers() {
        let svc: FirewallServiceType = serde_json::from_value(
            json!({"protocol": "tcp", "dst_ports": {"start_port": "0", "end_port": "65535"}}),
        )
        .expect("parse");
        assert_eq!(svc.dst_ports.map(|p| p.end_port), Some(65535));
    }

    #[test]
    fn typed_vn_round_trips_through_generic_object() {
        let vn = VirtualNetwork {
            fq_name: vec!["default-domain".into(), "k8s-default".into(), "pods".into()],
            parent_type: Some("project".into()),
            fabric_snat: Some(true),
            network_ipam_refs: vec![TypedRef::new(
                vec![
                    "default-domain".into(),
                    "k8s-default".into(),
                    "k8s-pod-ipam".into(),
                ],
                VnSubnetsType::default(),
            )],
            ..VirtualNetwork::default()
        };
        let obj = vn.to_object().expect("object");
        assert_eq!(obj.refs_of("network_ipam_refs").len(), 1);
        let back = VirtualNetwork::from_object(&obj).expect("view");
        assert_eq!(back, vn);
    }

    #[test]
    fn rbac_rule_text_form() {
        let r = RbacRuleType::parse("virtual-network.fabric_snat Member:CRU, *:R").expect("parse");
        assert_eq!(r.rule_object, "virtual-network");
        assert_eq!(r.rule_field.as_deref(), Some("fabric_snat"));
        assert_eq!(r.rule_perms.len(), 2);
        assert!(RbacRuleType::parse("virtual-network Member:CRUDX").is_err());
        assert!(RbacRuleType::parse("nope").is_err());
    }

    #[test]
    fn tag_id_parses() {
        let t = Tag {
            tag_id: Some("0x00010002".into()),
            ..Tag::default()
        };
        assert_eq!(t.id(), Some(0x0001_0002));
    }
}
