//! `fieldValidation=Strict` (what kubectl sends by default) for built-in kinds: the object is
//! decoded into its k8s-openapi type and re-encoded; fields that do not survive are unknown,
//! and values of the wrong type fail the decode. Either is a 400, worded like upstream.

use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::registry::ResourceType;
use crate::status::ApiError;

fn round_trip<T: DeserializeOwned + Serialize>(v: &Value) -> Result<Value, String> {
    let typed: T = serde_json::from_value(v.clone()).map_err(|e| e.to_string())?;
    serde_json::to_value(&typed).map_err(|e| e.to_string())
}

/// The typed round trip for a built-in kind, if kube-sim knows its type.
fn typed_round_trip(group: &str, kind: &str, v: &Value) -> Option<Result<Value, String>> {
    use k8s_openapi::api::{apps, batch, coordination, core, discovery, networking, rbac};
    use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1 as apiext;
    Some(match (group, kind) {
        ("", "Pod") => round_trip::<core::v1::Pod>(v),
        ("", "Service") => round_trip::<core::v1::Service>(v),
        ("", "Namespace") => round_trip::<core::v1::Namespace>(v),
        ("", "Node") => round_trip::<core::v1::Node>(v),
        ("", "ConfigMap") => round_trip::<core::v1::ConfigMap>(v),
        ("", "Secret") => round_trip::<core::v1::Secret>(v),
        ("", "ServiceAccount") => round_trip::<core::v1::ServiceAccount>(v),
        ("", "Endpoints") => round_trip::<core::v1::Endpoints>(v),
        ("", "PersistentVolumeClaim") => round_trip::<core::v1::PersistentVolumeClaim>(v),
        ("discovery.k8s.io", "EndpointSlice") => round_trip::<discovery::v1::EndpointSlice>(v),
        ("networking.k8s.io", "NetworkPolicy") => round_trip::<networking::v1::NetworkPolicy>(v),
        ("networking.k8s.io", "Ingress") => round_trip::<networking::v1::Ingress>(v),
        ("networking.k8s.io", "IngressClass") => round_trip::<networking::v1::IngressClass>(v),
        ("rbac.authorization.k8s.io", "Role") => round_trip::<rbac::v1::Role>(v),
        ("rbac.authorization.k8s.io", "RoleBinding") => round_trip::<rbac::v1::RoleBinding>(v),
        ("rbac.authorization.k8s.io", "ClusterRole") => round_trip::<rbac::v1::ClusterRole>(v),
        ("rbac.authorization.k8s.io", "ClusterRoleBinding") => {
            round_trip::<rbac::v1::ClusterRoleBinding>(v)
        }
        ("apps", "Deployment") => round_trip::<apps::v1::Deployment>(v),
        ("apps", "DaemonSet") => round_trip::<apps::v1::DaemonSet>(v),
        ("apps", "StatefulSet") => round_trip::<apps::v1::StatefulSet>(v),
        ("apps", "ReplicaSet") => round_trip::<apps::v1::ReplicaSet>(v),
        ("batch", "Job") => round_trip::<batch::v1::Job>(v),
        ("coordination.k8s.io", "Lease") => round_trip::<coordination::v1::Lease>(v),
        ("apiextensions.k8s.io", "CustomResourceDefinition") => {
            round_trip::<apiext::CustomResourceDefinition>(v)
        }
        _ => return None,
    })
}

/// Paths present (and not null) in `input` but missing from `known`.
fn unknown_fields(input: &Value, known: &Value, path: &str, out: &mut Vec<String>) {
    match (input, known) {
        (Value::Object(i), Value::Object(k)) => {
            for (key, v) in i {
                if v.is_null() {
                    continue;
                }
                let p = if path.is_empty() {
                    key.clone()
                } else {
                    format!("{path}.{key}")
                };
                match k.get(key) {
                    Some(kv) => unknown_fields(v, kv, &p, out),
                    None => out.push(p),
                }
            }
        }
        (Value::Array(i), Value::Array(k)) => {
            for (idx, (iv, kv)) in i.iter().zip(k).enumerate() {
                unknown_fields(iv, kv, &format!("{path}[{idx}]"), out);
            }
        }
        _ => {}
    }
}

/// Rejects unknown fields and mistyped values in `obj` (a built-in kind) with a 400.
pub(crate) fn check_strict(rt: &ResourceType, version: &str, obj: &Value) -> Result<(), ApiError> {
    // managedFields travel in a compact form inside the store; they are not user input here.
    let mut input = obj.clone();
    if let Some(Value::Object(meta)) = input.get_mut("metadata") {
        meta.shift_remove("managedFields");
    }
    let Some(result) = typed_round_trip(&rt.group, &rt.kind, &input) else {
        return Ok(());
    };
    let head = format!(
        "{} in version \"{version}\" cannot be handled as a {}",
        rt.kind, rt.kind
    );
    let known = result.map_err(|e| ApiError::bad_request(format!("{head}: {e}")))?;
    let mut unknown = Vec::new();
    unknown_fields(&input, &known, "", &mut unknown);
    if unknown.is_empty() {
        return Ok(());
    }
    let list = unknown
        .iter()
        .map(|f| format!("unknown field \"{f}\""))
        .collect::<Vec<_>>()
        .join(", ");
    Err(ApiError::bad_request(format!(
        "{head}: strict decoding error: {list}"
    )))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::Registry;
    use serde_json::json;

    #[test]
    fn strict_finds_unknown_and_mistyped_fields() {
        let reg = Registry::builtin();
        let rt = reg.lookup("", "v1", "pods").unwrap();
        let ok = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "labels": {}}, "spec": {"containers": [{"name": "c", "image": "i", "ports": []}]}});
        assert!(check_strict(&rt, "v1", &ok).is_ok());
        let typo = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}, "spec": {"containers": [{"name": "c", "imagee": "i"}]}});
        let e = check_strict(&rt, "v1", &typo).unwrap_err();
        assert_eq!(e.code, 400);
        assert!(
            e.message
                .contains("unknown field \"spec.containers[0].imagee\""),
            "{}",
            e.message
        );
        let mistyped = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}, "spec": {"containers": "nope"}});
        assert_eq!(check_strict(&rt, "v1", &mistyped).unwrap_err().code, 400);
    }
}
