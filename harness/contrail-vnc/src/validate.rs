//! Request validation with the real API server's rules: unknown fields are refused, property
//! values and reference attributes are checked against the xsd types (recursively), and
//! simple values are normalised the way the server stores them (numeric strings become
//! numbers, subnets become their network address).
//!
//! One deliberate difference: the real server silently drops unknown *top-level* fields; here
//! they are a 400, so a typo in a harness-built object fails loudly instead of vanishing.

use serde_json::{Map, Value};

use crate::schema::{self, ComplexSchema, Kind, Restriction, TypeInfo};

/// Python truthiness, which decides whether the real server validates a value at all.
pub fn is_falsy(value: &Value) -> bool {
    match value {
        Value::Null => true,
        Value::Bool(b) => !b,
        Value::Number(n) => n.as_f64() == Some(0.0),
        Value::String(s) => s.is_empty(),
        Value::Array(a) => a.is_empty(),
        Value::Object(o) => o.is_empty(),
    }
}

/// Which request is being validated (only used in messages).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operation {
    /// `POST /<type>s`.
    Create,
    /// `PUT /<type>/<uuid>` or an action that rewrites the object.
    Update,
}

impl Operation {
    fn word(self) -> &'static str {
        match self {
            Operation::Create => "create",
            Operation::Update => "update",
        }
    }
}

/// Validates the body of a create or update of a `info` object in place.
///
/// # Errors
/// A message in the real server's words when a field is unknown, a property value does not
/// fit its xsd type, or a reference is malformed; the HTTP layer answers 400 with it.
pub fn validate_object(
    info: &TypeInfo,
    obj: &mut Map<String, Value>,
    op: Operation,
) -> Result<(), String> {
    if let Some(unknown) = obj.keys().find(|k| !info.knows_field(k)) {
        return Err(format!(
            "Bad Request, unknown field '{unknown}' for {} in {}",
            info.name(),
            op.word()
        ));
    }
    for prop in info.schema.props {
        let Some(value) = obj.get_mut(prop.name) else {
            continue;
        };
        if is_falsy(value) {
            continue;
        }
        let result = match prop.kind {
            Kind::Complex(type_name) => match complex_schema(type_name) {
                Ok(cls) => {
                    if value.is_object() {
                        validate_complex(cls, value)
                    } else {
                        Err(format!(
                            "Error in property {} type {type_name} value of {value}",
                            prop.name
                        ))
                    }
                }
                Err(e) => Err(e),
            },
            kind => validate_simple(prop.name, kind, prop.restriction, value),
        };
        if let Err(e) = result {
            return Err(format!(
                "Bad property in {}: Error validating property {} value {}: {e}",
                op.word(),
                prop.name,
                compact(value)
            ));
        }
    }
    for r in info.schema.refs {
        let Some(value) = obj.get_mut(r.field) else {
            continue;
        };
        if value.is_null() {
            continue;
        }
        let Some(list) = value.as_array_mut() else {
            return Err(format!(
                "Bad reference in {}: {} must be a list of references",
                op.word(),
                r.field
            ));
        };
        for item in list.iter_mut() {
            let Some(ref_obj) = item.as_object_mut() else {
                return Err(format!(
                    "Bad reference in {}: {} entries must be objects with 'to' or 'uuid'",
                    op.word(),
                    r.field
                ));
            };
            let to_ok = match ref_obj.get("to") {
                None | Some(Value::Null) => false,
                Some(Value::Array(a)) => a.iter().all(Value::is_string) && !a.is_empty(),
                Some(_) => {
                    return Err(format!(
                        "Bad reference in {}: {} 'to' must be a list of strings",
                        op.word(),
                        r.field
                    ));
                }
            };
            let uuid_ok = match ref_obj.get("uuid") {
                None | Some(Value::Null) => false,
                Some(Value::String(_)) => true,
                Some(_) => {
                    return Err(format!(
                        "Bad reference in {}: {} 'uuid' must be a string",
                        op.word(),
                        r.field
                    ));
                }
            };
            if !to_ok && !uuid_ok {
                return Err(format!(
                    "Bad reference in {}: {} entry needs 'to' or 'uuid'",
                    op.word(),
                    r.field
                ));
            }
            if let (Some(attr_type), Some(attr)) = (r.attr, ref_obj.get_mut("attr"))
                && !attr.is_null()
            {
                let cls = complex_schema(attr_type)?;
                if let Err(e) = validate_complex(cls, attr) {
                    return Err(format!(
                        "Bad reference in {}: Error validating reference {} value {}: {e}",
                        op.word(),
                        r.field,
                        compact(attr)
                    ));
                }
            }
        }
    }
    Ok(())
}

/// Validates a reference attribute of complex type `attr_type` in place.
///
/// # Errors
/// A message naming the offending field.
pub fn validate_attr(attr_type: &str, attr: &mut Value) -> Result<(), String> {
    if attr.is_null() {
        return Ok(());
    }
    validate_complex(complex_schema(attr_type)?, attr)
}

/// Validates one element of a list/map property (`/prop-collection-update`) in place.
///
/// # Errors
/// A message naming the offending field.
pub fn validate_collection_element(
    prop_type: &str,
    wrapper: &str,
    element: &mut Value,
) -> Result<(), String> {
    let cls = complex_schema(prop_type)?;
    let field = cls
        .field(wrapper)
        .ok_or_else(|| format!("class {prop_type} does not have field {wrapper}"))?;
    match field.kind {
        Kind::Complex(elem_type) => validate_complex(complex_schema(elem_type)?, element),
        kind => validate_simple(wrapper, kind, field.restriction, element),
    }
}

fn complex_schema(name: &str) -> Result<&'static ComplexSchema, String> {
    schema::complex_type(name).ok_or_else(|| format!("unknown complex type {name}"))
}

fn compact(value: &Value) -> String {
    let s = value.to_string();
    if s.len() > 200 {
        let mut end = 200;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        format!("{}…", &s[..end])
    } else {
        s
    }
}

fn validate_complex(cls: &ComplexSchema, value: &mut Value) -> Result<(), String> {
    let Some(map) = value.as_object_mut() else {
        return Err(format!(
            "class {} expects an object, received {}",
            cls.name,
            compact(value)
        ));
    };
    for (key, v) in map.iter_mut() {
        let Some(field) = cls.field(key) else {
            return Err(format!("class {} does not have field {key}", cls.name));
        };
        if is_falsy(v) {
            continue;
        }
        if field.array {
            let Some(items) = v.as_array_mut() else {
                return Err(format!(
                    "Field {key} must be a list. Received value: {}",
                    compact(v)
                ));
            };
            for item in items.iter_mut() {
                validate_field_value(key, field.kind, field.restriction, item)?;
            }
        } else {
            validate_field_value(key, field.kind, field.restriction, v)?;
        }
    }
    Ok(())
}

fn validate_field_value(
    name: &str,
    kind: Kind,
    restriction: Restriction,
    value: &mut Value,
) -> Result<(), String> {
    match kind {
        Kind::Complex(type_name) => {
            if value.is_null() {
                return Ok(());
            }
            if type_name == "SubnetType" {
                normalize_subnet(value)?;
            }
            validate_complex(complex_schema(type_name)?, value)
        }
        kind => validate_simple(name, kind, restriction, value),
    }
}

/// `{ip_prefix, ip_prefix_len}` → the network address and a numeric length, like the real
/// server's netaddr normalisation.
fn normalize_subnet(value: &mut Value) -> Result<(), String> {
    let Some(map) = value.as_object_mut() else {
        return Err("Subnet type is invalid".to_owned());
    };
    let prefix = match map.get("ip_prefix") {
        Some(Value::String(s)) => s.clone(),
        _ => return Err("Subnet type is invalid".to_owned()),
    };
    let len = match map.get("ip_prefix_len") {
        Some(Value::Number(n)) => n.to_string(),
        Some(Value::String(s)) => s.trim().to_owned(),
        _ => return Err("Subnet type is invalid".to_owned()),
    };
    let cidr = format!("{prefix}/{len}");
    let net: ipnet::IpNet = cidr
        .parse()
        .map_err(|_| format!("Subnet type '{cidr}' is invalid"))?;
    let net = net.trunc();
    map.insert("ip_prefix".into(), Value::String(net.addr().to_string()));
    map.insert("ip_prefix_len".into(), Value::from(net.prefix_len()));
    Ok(())
}

fn validate_simple(
    name: &str,
    kind: Kind,
    restriction: Restriction,
    value: &mut Value,
) -> Result<(), String> {
    if value.is_null() {
        return Ok(());
    }
    match kind {
        Kind::Integer => {
            let n = match value {
                Value::Number(n) => n
                    .as_i64()
                    .or_else(|| n.as_u64().map(|u| i64::try_from(u).unwrap_or(i64::MAX)))
                    .ok_or_else(|| format!("{name}: integer value expected instead of {n}"))?,
                Value::Bool(b) => i64::from(*b),
                Value::String(s) => s
                    .trim()
                    .parse::<i64>()
                    .map_err(|_| format!("{name}: integer value expected instead of {s}"))?,
                other => {
                    return Err(format!(
                        "{name}: integer value expected instead of {}",
                        compact(other)
                    ));
                }
            };
            if let Restriction::Range(lo, hi) = restriction
                && !(lo..=hi).contains(&n)
            {
                return Err(format!("{name}: value must be between {lo} and {hi}"));
            }
            if !value.is_boolean() {
                *value = Value::from(n);
            }
            Ok(())
        }
        Kind::Boolean => {
            if value.is_boolean() {
                Ok(())
            } else {
                Err(format!(
                    "{name}: true/false expected instead of {}",
                    compact(value)
                ))
            }
        }
        Kind::String => {
            let Some(s) = value.as_str() else {
                return Err(format!(
                    "{name}: string value expected instead of {}",
                    compact(value)
                ));
            };
            if let Restriction::Enum(allowed) = restriction
                && !allowed.contains(&s)
            {
                return Err(format!("{name}: value must be one of {allowed:?}"));
            }
            Ok(())
        }
        Kind::Complex(_) => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn check(type_name: &str, body: Value) -> Result<Value, String> {
        let info = schema::resource(type_name).ok_or("type")?;
        let Value::Object(mut map) = body else {
            return Err("object".into());
        };
        validate_object(info, &mut map, Operation::Create)?;
        Ok(Value::Object(map))
    }

    #[test]
    fn port_strings_become_numbers() {
        let out = check(
            "firewall-rule",
            json!({"fq_name": ["default-policy-management", "r"],
                   "service": {"protocol": "tcp", "dst_ports": {"start_port": "0", "end_port": "65535"}}}),
        )
        .expect("valid");
        assert_eq!(out["service"]["dst_ports"]["end_port"], json!(65535));
    }

    #[test]
    fn unknown_nested_and_top_level_fields_are_refused() {
        let e = check(
            "virtual-network",
            json!({"virtual_network_properties": {"forwarding_mod": "l3"}}),
        )
        .expect_err("typo");
        assert!(e.contains("does not have field forwarding_mod"), "{e}");
        let e = check("virtual-network", json!({"fabric_snatt": true})).expect_err("typo");
        assert!(e.contains("fabric_snatt"), "{e}");
    }

    #[test]
    fn enum_and_bool_restrictions() {
        assert!(
            check(
                "virtual-network",
                json!({"address_allocation_mode": "bogus"})
            )
            .is_err()
        );
        assert!(check("virtual-network", json!({"fabric_snat": "yes"})).is_err());
        assert!(check("virtual-network", json!({"fabric_snat": true})).is_ok());
    }

    #[test]
    fn ref_attr_subnet_is_normalised() {
        let out = check(
            "virtual-network",
            json!({"network_ipam_refs": [{"to": ["d", "p", "i"], "attr": {"ipam_subnets": [
                {"subnet": {"ip_prefix": "10.1.2.3", "ip_prefix_len": "24"}}]}}]}),
        )
        .expect("valid");
        assert_eq!(
            out["network_ipam_refs"][0]["attr"]["ipam_subnets"][0]["subnet"],
            json!({"ip_prefix": "10.1.2.0", "ip_prefix_len": 24})
        );
    }
}
