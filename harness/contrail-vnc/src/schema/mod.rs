//! The VNC schema table: every config resource type the real API server knows, with its
//! collection name, allowed parents, properties, references, and the complex (xsd) types the
//! properties and reference attributes are made of.
//!
//! The table is generated from the schema the `contrail-api-client` Python package ships
//! (`tools/gen_schema.py`), so the field names are exactly the ones the real `vnc_api` library
//! reads and writes. Back-reference and child fields are derived from it at first use.

mod generated;

use std::collections::{BTreeMap, HashMap};
use std::sync::LazyLock;

/// What a property or a complex-type field holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `xsd:string` (and `dateTime`/`time`, which travel as strings).
    String,
    /// `xsd:integer` / `unsignedLong`; the real server also accepts numeric strings and stores
    /// them as numbers.
    Integer,
    /// `xsd:boolean`.
    Boolean,
    /// A complex type, by its xsd name (see [`complex_type`]).
    Complex(&'static str),
}

/// A restriction on a simple value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Restriction {
    /// Any value of the kind.
    None,
    /// One of these strings.
    Enum(&'static [&'static str]),
    /// An integer in this inclusive range.
    Range(i64, i64),
}

/// Whether a property is a list or map collection (edited through `/prop-collection-update`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PropCollection {
    /// A plain property.
    None,
    /// A list property: the value is `{"<wrapper>": [..]}`.
    List {
        /// The wrapper field holding the list.
        wrapper: &'static str,
    },
    /// A map property: the value is `{"<wrapper>": [{"<key>": .., ..}]}`.
    Map {
        /// The wrapper field holding the list of entries.
        wrapper: &'static str,
        /// The entry field used as the map key.
        key: &'static str,
    },
}

/// One property of a resource type.
#[derive(Debug, Clone, Copy)]
pub struct PropSchema {
    /// Field name, e.g. `virtual_network_properties`.
    pub name: &'static str,
    /// Value kind.
    pub kind: Kind,
    /// Restriction on a simple value.
    pub restriction: Restriction,
    /// Operations the schema allows on it (`"CRUD"`, `"R"` for system-maintained ones, ...).
    pub operations: &'static str,
    /// List/map collection shape, if any.
    pub collection: PropCollection,
}

/// One reference field of a resource type.
#[derive(Debug, Clone, Copy)]
pub struct RefSchema {
    /// Field name, e.g. `network_ipam_refs`.
    pub field: &'static str,
    /// Type referred to, e.g. `network-ipam`.
    pub to: &'static str,
    /// Complex type of the reference attribute (`VnSubnetsType`), `None` when the link has no
    /// attribute.
    pub attr: Option<&'static str>,
    /// A reference the system derives (it does not block the target's deletion).
    pub derived: bool,
}

/// One resource type of the schema.
#[derive(Debug)]
pub struct ResourceSchema {
    /// Hyphenated type name, e.g. `virtual-network`.
    pub name: &'static str,
    /// Allowed parent types (`config-root` = no parent, fq_name of one element).
    pub parents: &'static [&'static str],
    /// Properties (including `id_perms`, `perms2`, `annotations`, `display_name`).
    pub props: &'static [PropSchema],
    /// Reference fields.
    pub refs: &'static [RefSchema],
    /// Child types the system derives (they do not block the parent's deletion).
    pub derived_children: &'static [&'static str],
}

/// One field of a complex type.
#[derive(Debug, Clone, Copy)]
pub struct FieldSchema {
    /// Field name.
    pub name: &'static str,
    /// Value kind.
    pub kind: Kind,
    /// Whether the field holds a list of values.
    pub array: bool,
    /// Restriction on a simple value.
    pub restriction: Restriction,
}

/// A complex (xsd) type.
#[derive(Debug)]
pub struct ComplexSchema {
    /// The xsd type name, e.g. `VnSubnetsType`.
    pub name: &'static str,
    /// Its fields, in schema order.
    pub fields: &'static [FieldSchema],
}

impl ComplexSchema {
    /// The field called `name`.
    pub fn field(&self, name: &str) -> Option<&'static FieldSchema> {
        self.fields.iter().find(|f| f.name == name)
    }
}

/// A resource type with the fields derived from the whole table.
#[derive(Debug)]
pub struct TypeInfo {
    /// The generated schema entry.
    pub schema: &'static ResourceSchema,
    /// The type name with `_` instead of `-` (`virtual_network`), as used in field names.
    pub object_type: String,
    /// Collection path segment, e.g. `virtual-networks` (naive plural, as the real server).
    pub plural: String,
    /// Child fields: field name (`virtual_networks`) → child type.
    pub children: BTreeMap<String, &'static str>,
    /// Back-reference fields: field name (`virtual_machine_interface_back_refs`) → referring
    /// type.
    pub back_refs: BTreeMap<String, &'static str>,
    props: HashMap<&'static str, &'static PropSchema>,
    refs: HashMap<&'static str, &'static RefSchema>,
}

impl TypeInfo {
    /// Hyphenated type name.
    pub fn name(&self) -> &'static str {
        self.schema.name
    }

    /// The property called `name`.
    pub fn prop(&self, name: &str) -> Option<&'static PropSchema> {
        self.props.get(name).copied()
    }

    /// The reference field called `field` (e.g. `tag_refs`).
    pub fn ref_field(&self, field: &str) -> Option<&'static RefSchema> {
        self.refs.get(field).copied()
    }

    /// The reference field pointing at `target` type, if this type has one.
    pub fn ref_to(&self, target: &str) -> Option<&'static RefSchema> {
        self.ref_field(&format!("{}_refs", object_type(target)))
    }

    /// Whether a child of type `child` is system-derived.
    pub fn child_is_derived(&self, child: &str) -> bool {
        self.schema.derived_children.contains(&child)
    }

    /// Whether objects of this type sit directly under the config root (fq_name of length 1).
    pub fn is_root_child(&self) -> bool {
        self.schema.parents.contains(&"config-root")
    }

    /// Whether `field` is a known top-level field of this type (property, reference,
    /// back-reference, child, or one of the identity fields every object carries).
    pub fn knows_field(&self, field: &str) -> bool {
        IDENTITY_FIELDS.contains(&field)
            || self.props.contains_key(field)
            || self.refs.contains_key(field)
            || self.back_refs.contains_key(field)
            || self.children.contains_key(field)
    }
}

/// Fields every object carries besides its properties and links.
pub const IDENTITY_FIELDS: &[&str] = &[
    "uuid",
    "name",
    "fq_name",
    "parent_type",
    "parent_uuid",
    "parent_href",
    "href",
];

/// `virtual-network` → `virtual_network`.
pub fn object_type(type_name: &str) -> String {
    type_name.replace('-', "_")
}

struct Registry {
    by_name: HashMap<&'static str, TypeInfo>,
    by_plural: HashMap<String, &'static str>,
    complex: HashMap<&'static str, &'static ComplexSchema>,
}

static REGISTRY: LazyLock<Registry> = LazyLock::new(build_registry);

fn build_registry() -> Registry {
    let mut by_name: HashMap<&'static str, TypeInfo> = HashMap::new();
    for schema in generated::RESOURCES {
        by_name.insert(
            schema.name,
            TypeInfo {
                schema,
                object_type: object_type(schema.name),
                plural: format!("{}s", schema.name),
                children: BTreeMap::new(),
                back_refs: BTreeMap::new(),
                props: schema.props.iter().map(|p| (p.name, p)).collect(),
                refs: schema.refs.iter().map(|r| (r.field, r)).collect(),
            },
        );
    }
    for schema in generated::RESOURCES {
        for parent in schema.parents {
            if let Some(info) = by_name.get_mut(parent) {
                info.children
                    .insert(format!("{}s", object_type(schema.name)), schema.name);
            }
        }
        for r in schema.refs {
            if let Some(info) = by_name.get_mut(r.to) {
                info.back_refs.insert(
                    format!("{}_back_refs", object_type(schema.name)),
                    schema.name,
                );
            }
        }
    }
    let by_plural = by_name
        .values()
        .map(|info| (info.plural.clone(), info.schema.name))
        .collect();
    let complex = generated::COMPLEX_TYPES
        .iter()
        .map(|c| (c.name, c))
        .collect();
    Registry {
        by_name,
        by_plural,
        complex,
    }
}

/// The resource type called `name` (hyphenated, e.g. `virtual-network`).
pub fn resource(name: &str) -> Option<&'static TypeInfo> {
    REGISTRY.by_name.get(name)
}

/// The resource type whose collection segment is `plural` (e.g. `virtual-networks`).
pub fn resource_by_plural(plural: &str) -> Option<&'static TypeInfo> {
    REGISTRY
        .by_plural
        .get(plural)
        .and_then(|name| REGISTRY.by_name.get(name))
}

/// The complex type called `name` (e.g. `VnSubnetsType`).
pub fn complex_type(name: &str) -> Option<&'static ComplexSchema> {
    REGISTRY.complex.get(name).copied()
}

/// All resource types, sorted by name.
pub fn resources() -> impl Iterator<Item = &'static TypeInfo> {
    generated::RESOURCES
        .iter()
        .filter_map(|s| REGISTRY.by_name.get(s.name))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn virtual_network_has_the_fields_kube_manager_uses() {
        let vn = resource("virtual-network").expect("virtual-network");
        assert_eq!(vn.plural, "virtual-networks");
        assert_eq!(vn.schema.parents, &["project"]);
        for p in [
            "virtual_network_properties",
            "fabric_snat",
            "address_allocation_mode",
            "perms2",
        ] {
            assert!(vn.prop(p).is_some(), "{p}");
        }
        let ipam = vn.ref_field("network_ipam_refs").expect("ipam refs");
        assert_eq!(ipam.to, "network-ipam");
        assert_eq!(ipam.attr, Some("VnSubnetsType"));
        assert!(
            vn.back_refs
                .contains_key("virtual_machine_interface_back_refs")
        );
        assert!(vn.children.contains_key("floating_ip_pools"));
        assert!(vn.child_is_derived("routing-instance"));
    }

    #[test]
    fn naive_plurals_like_the_real_server() {
        assert!(resource_by_plural("network-policys").is_some());
        assert!(resource_by_plural("firewall-policys").is_some());
        let project = resource("project").expect("project");
        assert!(project.children.contains_key("network_policys"));
        assert!(project.children.contains_key("virtual_networks"));
    }

    #[test]
    fn every_issue_type_is_present() {
        for t in [
            "project",
            "domain",
            "virtual-network",
            "network-ipam",
            "network-policy",
            "security-group",
            "policy-management",
            "application-policy-set",
            "firewall-policy",
            "firewall-rule",
            "address-group",
            "tag",
            "tag-type",
            "virtual-machine",
            "virtual-machine-interface",
            "instance-ip",
            "floating-ip-pool",
            "floating-ip",
            "loadbalancer",
            "loadbalancer-listener",
            "loadbalancer-pool",
            "loadbalancer-member",
            "service-template",
            "service-instance",
            "port-tuple",
            "virtual-router",
            "global-system-config",
            "global-vrouter-config",
            "api-access-list",
        ] {
            assert!(resource(t).is_some(), "{t}");
        }
        assert!(complex_type("FirewallRuleEndpointType").is_some());
    }
}
