//! The generic config object: identity (type, uuid, fq_name, parent), properties as JSON with
//! the schema's field names, and links (references with attributes, back-references,
//! children), converting to and from the JSON the VNC API speaks.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize, de::DeserializeOwned};
use serde_json::{Map, Value};

use crate::schema::{self, IDENTITY_FIELDS};

/// A link to another object: a reference (`<type>_refs`), a back-reference
/// (`<type>_back_refs`) or a child (`<type>s`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Ref {
    /// fq_name of the linked object.
    #[serde(default)]
    pub to: Vec<String>,
    /// uuid of the linked object (may be empty in a request that names the target by `to`).
    #[serde(default)]
    pub uuid: String,
    /// Link attribute (e.g. `VnSubnetsType` for `network_ipam_refs`); `None` for plain links.
    #[serde(default)]
    pub attr: Option<Value>,
}

impl Ref {
    /// A reference to `to` without attribute.
    pub fn new(to: Vec<String>, uuid: impl Into<String>) -> Self {
        Ref {
            to,
            uuid: uuid.into(),
            attr: None,
        }
    }

    /// A reference named only by fq_name (the server resolves the uuid).
    pub fn by_name(to: Vec<String>) -> Self {
        Ref {
            to,
            uuid: String::new(),
            attr: None,
        }
    }

    /// The same reference with an attribute.
    pub fn with_attr(mut self, attr: impl Serialize) -> Self {
        self.attr = serde_json::to_value(attr).ok().filter(|v| !v.is_null());
        self
    }

    /// The attribute decoded as `T`.
    pub fn attr_as<T: DeserializeOwned>(&self) -> Option<T> {
        self.attr
            .as_ref()
            .and_then(|a| serde_json::from_value(a.clone()).ok())
    }
}

/// Errors turning JSON into a [`VncObject`].
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum ModelError {
    /// The type is not in the schema.
    #[error("unknown resource type '{0}'")]
    UnknownType(String),
    /// The body is not a JSON object.
    #[error("a {0} must be a JSON object")]
    NotAnObject(String),
    /// A field has the wrong JSON shape.
    #[error("field '{field}' of {type_name}: {reason}")]
    BadField {
        /// Object type.
        type_name: String,
        /// Offending field.
        field: String,
        /// What is wrong with it.
        reason: String,
    },
}

/// A Contrail config object, schema-agnostic: properties live in `fields` under the VNC
/// schema's own names, links in `refs`, `back_refs` and `children` keyed by their field names
/// (`network_ipam_refs`, `virtual_machine_interface_back_refs`, `virtual_networks`).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct VncObject {
    /// Hyphenated type, e.g. `virtual-network`.
    pub type_name: String,
    /// Object uuid (empty before creation unless the client chooses it).
    pub uuid: String,
    /// Fully qualified name.
    pub fq_name: Vec<String>,
    /// Parent type (`None` for objects under the config root).
    pub parent_type: Option<String>,
    /// Parent uuid.
    pub parent_uuid: Option<String>,
    /// Properties, including `id_perms`, `perms2`, `display_name`, `annotations`.
    pub fields: Map<String, Value>,
    /// References by field name.
    pub refs: BTreeMap<String, Vec<Ref>>,
    /// Back-references by field name (read-only, maintained by the server).
    pub back_refs: BTreeMap<String, Vec<Ref>>,
    /// Children by field name (read-only, maintained by the server).
    pub children: BTreeMap<String, Vec<Ref>>,
}

impl VncObject {
    /// A new object of `type_name` with `fq_name`; the parent type is the schema's only
    /// parent when there is just one (or none for config-root children).
    pub fn new(type_name: &str, fq_name: Vec<String>) -> Self {
        let parent_type = schema::resource(type_name).and_then(|info| {
            let parents: Vec<_> = info
                .schema
                .parents
                .iter()
                .filter(|p| **p != "config-root")
                .collect();
            if fq_name.len() > 1 && parents.len() == 1 {
                Some((*parents[0]).to_owned())
            } else {
                None
            }
        });
        VncObject {
            type_name: type_name.to_owned(),
            fq_name,
            parent_type,
            ..VncObject::default()
        }
    }

    /// Sets the parent type (needed when the schema allows several parents).
    pub fn with_parent_type(mut self, parent_type: &str) -> Self {
        self.parent_type = Some(parent_type.to_owned());
        self
    }

    /// The last element of the fq_name.
    pub fn name(&self) -> &str {
        self.fq_name.last().map(String::as_str).unwrap_or("")
    }

    /// fq_name joined with `:`.
    pub fn fq_name_str(&self) -> String {
        self.fq_name.join(":")
    }

    /// Property `name` decoded as `T` (`None` when absent, null or of another shape).
    pub fn prop<T: DeserializeOwned>(&self, name: &str) -> Option<T> {
        self.fields
            .get(name)
            .filter(|v| !v.is_null())
            .and_then(|v| serde_json::from_value(v.clone()).ok())
    }

    /// Sets property `name` (a value that does not serialise is stored as null).
    pub fn set_prop(&mut self, name: &str, value: impl Serialize) -> &mut Self {
        self.fields.insert(
            name.to_owned(),
            serde_json::to_value(value).unwrap_or(Value::Null),
        );
        self
    }

    /// Builder form of [`VncObject::set_prop`].
    pub fn with_prop(mut self, name: &str, value: impl Serialize) -> Self {
        self.set_prop(name, value);
        self
    }

    /// Adds a reference under `field` (e.g. `network_ipam_refs`).
    pub fn add_ref(&mut self, field: &str, r: Ref) -> &mut Self {
        self.refs.entry(field.to_owned()).or_default().push(r);
        self
    }

    /// Builder form of [`VncObject::add_ref`].
    pub fn with_ref(mut self, field: &str, r: Ref) -> Self {
        self.add_ref(field, r);
        self
    }

    /// References under `field` (empty when none).
    pub fn refs_of(&self, field: &str) -> &[Ref] {
        self.refs.get(field).map(Vec::as_slice).unwrap_or(&[])
    }

    /// Back-references under `field` (empty when none or not read).
    pub fn back_refs_of(&self, field: &str) -> &[Ref] {
        self.back_refs.get(field).map(Vec::as_slice).unwrap_or(&[])
    }

    /// Children under `field` (empty when none or not read).
    pub fn children_of(&self, field: &str) -> &[Ref] {
        self.children.get(field).map(Vec::as_slice).unwrap_or(&[])
    }

    /// Parses the inner object of a VNC body (`{"fq_name": .., "uuid": .., <props>, <links>}`).
    /// Fields the schema classifies as back-references or children go to those maps; every
    /// other non-identity field is a property (unknown fields are kept; validation is the
    /// server's job).
    ///
    /// # Errors
    /// Unknown type, a body that is not an object, or links/identity of the wrong shape.
    pub fn from_json(type_name: &str, body: &Value) -> Result<Self, ModelError> {
        let info = schema::resource(type_name)
            .ok_or_else(|| ModelError::UnknownType(type_name.to_owned()))?;
        let map = body
            .as_object()
            .ok_or_else(|| ModelError::NotAnObject(type_name.to_owned()))?;
        let bad = |field: &str, reason: &str| ModelError::BadField {
            type_name: type_name.to_owned(),
            field: field.to_owned(),
            reason: reason.to_owned(),
        };
        let mut obj = VncObject {
            type_name: info.name().to_owned(),
            ..VncObject::default()
        };
        for (key, value) in map {
            match key.as_str() {
                "uuid" => match value {
                    Value::String(s) => obj.uuid = s.clone(),
                    Value::Null => {}
                    _ => return Err(bad(key, "must be a string")),
                },
                "fq_name" => {
                    obj.fq_name =
                        string_list(value).ok_or_else(|| bad(key, "must be a list of strings"))?;
                }
                "parent_type" => match value {
                    Value::String(s) => obj.parent_type = Some(s.clone()),
                    Value::Null => {}
                    _ => return Err(bad(key, "must be a string")),
                },
                "parent_uuid" => match value {
                    Value::String(s) => obj.parent_uuid = Some(s.clone()),
                    Value::Null => {}
                    _ => return Err(bad(key, "must be a string")),
                },
                _ if IDENTITY_FIELDS.contains(&key.as_str()) => {}
                _ if info.ref_field(key).is_some() => {
                    obj.refs
                        .insert(key.clone(), links(value).map_err(|r| bad(key, &r))?);
                }
                _ if info.back_refs.contains_key(key) => {
                    obj.back_refs
                        .insert(key.clone(), links(value).map_err(|r| bad(key, &r))?);
                }
                _ if info.children.contains_key(key) => {
                    obj.children
                        .insert(key.clone(), links(value).map_err(|r| bad(key, &r))?);
                }
                _ => {
                    obj.fields.insert(key.clone(), value.clone());
                }
            }
        }
        Ok(obj)
    }

    /// The inner JSON object as the server returns it on read (without hrefs).
    pub fn to_json(&self) -> Value {
        let mut map = Map::new();
        if !self.uuid.is_empty() {
            map.insert("uuid".into(), Value::String(self.uuid.clone()));
        }
        map.insert("name".into(), Value::String(self.name().to_owned()));
        map.insert(
            "fq_name".into(),
            Value::Array(self.fq_name.iter().cloned().map(Value::String).collect()),
        );
        if let Some(p) = &self.parent_type {
            map.insert("parent_type".into(), Value::String(p.clone()));
        }
        if let Some(p) = &self.parent_uuid {
            map.insert("parent_uuid".into(), Value::String(p.clone()));
        }
        for (k, v) in &self.fields {
            map.insert(k.clone(), v.clone());
        }
        for links in [&self.refs, &self.back_refs, &self.children] {
            for (k, v) in links {
                map.insert(
                    k.clone(),
                    serde_json::to_value(v).unwrap_or(Value::Array(Vec::new())),
                );
            }
        }
        Value::Object(map)
    }

    /// The body of a create request: identity, properties and references only (no uuid
    /// unless set, no back-references or children, no `name`).
    pub fn to_create_body(&self) -> Value {
        let mut map = Map::new();
        if !self.uuid.is_empty() {
            map.insert("uuid".into(), Value::String(self.uuid.clone()));
        }
        map.insert(
            "fq_name".into(),
            Value::Array(self.fq_name.iter().cloned().map(Value::String).collect()),
        );
        if let Some(p) = &self.parent_type {
            map.insert("parent_type".into(), Value::String(p.clone()));
        }
        for (k, v) in &self.fields {
            map.insert(k.clone(), v.clone());
        }
        for (k, v) in &self.refs {
            map.insert(
                k.clone(),
                Value::Array(v.iter().map(ref_request_json).collect()),
            );
        }
        Value::Object(map)
    }
}

/// A reference as a request sends it: `uuid` omitted when unknown.
pub fn ref_request_json(r: &Ref) -> Value {
    let mut m = Map::new();
    m.insert(
        "to".into(),
        Value::Array(r.to.iter().cloned().map(Value::String).collect()),
    );
    if !r.uuid.is_empty() {
        m.insert("uuid".into(), Value::String(r.uuid.clone()));
    }
    m.insert("attr".into(), r.attr.clone().unwrap_or(Value::Null));
    Value::Object(m)
}

fn string_list(value: &Value) -> Option<Vec<String>> {
    value
        .as_array()?
        .iter()
        .map(|v| v.as_str().map(str::to_owned))
        .collect()
}

fn links(value: &Value) -> Result<Vec<Ref>, String> {
    match value {
        Value::Null => Ok(Vec::new()),
        Value::Array(items) => items
            .iter()
            .map(|item| {
                let m = item
                    .as_object()
                    .ok_or_else(|| "links must be objects".to_owned())?;
                let to = match m.get("to") {
                    None | Some(Value::Null) => Vec::new(),
                    Some(v) => {
                        string_list(v).ok_or_else(|| "'to' must be a list of strings".to_owned())?
                    }
                };
                let uuid = match m.get("uuid") {
                    None | Some(Value::Null) => String::new(),
                    Some(Value::String(s)) => s.clone(),
                    Some(_) => return Err("'uuid' must be a string".to_owned()),
                };
                let attr = m.get("attr").filter(|a| !a.is_null()).cloned();
                Ok(Ref { to, uuid, attr })
            })
            .collect(),
        _ => Err("must be a list of links".to_owned()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn round_trip_keeps_props_and_links_apart() {
        let body = json!({
            "uuid": "u1", "fq_name": ["default-domain", "p", "vn"], "parent_type": "project",
            "fabric_snat": true,
            "network_ipam_refs": [{"to": ["default-domain", "p", "ipam"], "uuid": "u2",
                                   "attr": {"ipam_subnets": []}}],
            "virtual_machine_interface_back_refs": [{"to": ["x"], "uuid": "u3", "attr": null}],
            "floating_ip_pools": [{"to": ["a", "b", "c", "d"], "uuid": "u4"}],
            "href": "http://x/virtual-network/u1"
        });
        let obj = VncObject::from_json("virtual-network", &body).expect("parse");
        assert_eq!(obj.name(), "vn");
        assert_eq!(obj.prop::<bool>("fabric_snat"), Some(true));
        assert_eq!(obj.refs_of("network_ipam_refs")[0].uuid, "u2");
        assert_eq!(
            obj.back_refs_of("virtual_machine_interface_back_refs")
                .len(),
            1
        );
        assert_eq!(obj.children_of("floating_ip_pools").len(), 1);
        assert!(!obj.fields.contains_key("href"));
        let again = VncObject::from_json("virtual-network", &obj.to_json()).expect("again");
        assert_eq!(again, obj);
    }

    #[test]
    fn new_infers_single_parent() {
        let vn = VncObject::new("virtual-network", vec!["d".into(), "p".into(), "n".into()]);
        assert_eq!(vn.parent_type.as_deref(), Some("project"));
        let tag = VncObject::new("tag", vec!["app=web".into()]);
        assert_eq!(tag.parent_type, None);
    }

    #[test]
    fn bad_shapes_are_errors_not_panics() {
        assert!(VncObject::from_json("virtual-network", &json!([1])).is_err());
        assert!(VncObject::from_json("virtual-network", &json!({"fq_name": "x"})).is_err());
        assert!(VncObject::from_json("virtual-network", &json!({"network_ipam_refs": 3})).is_err());
        assert!(VncObject::from_json("nope", &json!({})).is_err());
    }
}
