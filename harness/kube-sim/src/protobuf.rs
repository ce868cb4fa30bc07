//! Just enough of the Kubernetes protobuf encoding to read what kubectl's typed clients send as
//! `application/vnd.kubernetes.protobuf`: the access reviews (`kubectl auth can-i`, `auth
//! whoami`) and the objects of the simple `kubectl create` generators (namespace, configmap,
//! secret, serviceaccount, role, clusterrole, rolebinding, clusterrolebinding). Bodies are
//! decoded into JSON with a small schema per message; responses are always JSON, which client-go
//! accepts.

use base64::Engine;
use serde_json::{Map, Value, json};

const MAGIC: &[u8] = b"k8s\x00";

/// One decoded wire field.
enum Field<'a> {
    Varint(u64),
    Bytes(&'a [u8]),
}

fn varint(buf: &[u8], pos: &mut usize) -> Option<u64> {
    let mut out = 0u64;
    for shift in (0..64).step_by(7) {
        let b = *buf.get(*pos)?;
        *pos += 1;
        out |= u64::from(b & 0x7f) << shift;
        if b & 0x80 == 0 {
            return Some(out);
        }
    }
    None
}

fn fields(buf: &[u8]) -> Option<Vec<(u64, Field<'_>)>> {
    let mut pos = 0;
    let mut out = Vec::new();
    while pos < buf.len() {
        let key = varint(buf, &mut pos)?;
        let (num, wire) = (key >> 3, key & 7);
        match wire {
            0 => out.push((num, Field::Varint(varint(buf, &mut pos)?))),
            1 => {
                pos = pos.checked_add(8).filter(|p| *p <= buf.len())?;
            }
            2 => {
                let len = usize::try_from(varint(buf, &mut pos)?).ok()?;
                let end = pos.checked_add(len).filter(|e| *e <= buf.len())?;
                out.push((num, Field::Bytes(&buf[pos..end])));
                pos = end;
            }
            5 => {
                pos = pos.checked_add(4).filter(|p| *p <= buf.len())?;
            }
            _ => return None,
        }
    }
    Some(out)
}

/// How a field's payload becomes JSON.
#[derive(Clone, Copy)]
enum Ty {
    Str,
    Bool,
    Msg(&'static [F]),
    /// `map<string, string>`.
    MapStr,
    /// `map<string, bytes>`.
    MapBytes,
}

/// A field of a message schema: number, JSON name, type, repeated.
#[derive(Clone, Copy)]
struct F(u64, &'static str, Ty, bool);

const OWNER_REF: &[F] = &[
    F(5, "apiVersion", Ty::Str, false),
    F(1, "kind", Ty::Str, false),
    F(3, "name", Ty::Str, false),
    F(4, "uid", Ty::Str, false),
    F(6, "controller", Ty::Bool, false),
    F(7, "blockOwnerDeletion", Ty::Bool, false),
];
const OBJECT_META: &[F] = &[
    F(1, "name", Ty::Str, false),
    F(2, "generateName", Ty::Str, false),
    F(3, "namespace", Ty::Str, false),
    F(6, "resourceVersion", Ty::Str, false),
    F(11, "labels", Ty::MapStr, false),
    F(12, "annotations", Ty::MapStr, false),
    F(13, "ownerReferences", Ty::Msg(OWNER_REF), true),
    F(14, "finalizers", Ty::Str, true),
];
const RESOURCE_ATTRIBUTES: &[F] = &[
    F(1, "namespace", Ty::Str, false),
    F(2, "verb", Ty::Str, false),
    F(3, "group", Ty::Str, false),
    F(4, "version", Ty::Str, false),
    F(5, "resource", Ty::Str, false),
    F(6, "subresource", Ty::Str, false),
    F(7, "name", Ty::Str, false),
];
const NON_RESOURCE_ATTRIBUTES: &[F] = &[F(1, "path", Ty::Str, false), F(2, "verb", Ty::Str, false)];
const SELF_SAR_SPEC: &[F] = &[
    F(1, "resourceAttributes", Ty::Msg(RESOURCE_ATTRIBUTES), false),
    F(
        2,
        "nonResourceAttributes",
        Ty::Msg(NON_RESOURCE_ATTRIBUTES),
        false,
    ),
];
const SAR_SPEC: &[F] = &[
    F(1, "resourceAttributes", Ty::Msg(RESOURCE_ATTRIBUTES), false),
    F(
        2,
        "nonResourceAttributes",
        Ty::Msg(NON_RESOURCE_ATTRIBUTES),
        false,
    ),
    F(3, "user", Ty::Str, false),
    F(4, "groups", Ty::Str, true),
    F(6, "uid", Ty::Str, false),
];
const RULES_REVIEW_SPEC: &[F] = &[F(1, "namespace", Ty::Str, false)];
const NAMESPACE_SPEC: &[F] = &[F(1, "finalizers", Ty::Str, true)];
const LOCAL_REF: &[F] = &[F(1, "name", Ty::Str, false)];
const OBJECT_REF: &[F] = &[
    F(1, "kind", Ty::Str, false),
    F(2, "namespace", Ty::Str, false),
    F(3, "name", Ty::Str, false),
];
const POLICY_RULE: &[F] = &[
    F(1, "verbs", Ty::Str, true),
    F(2, "apiGroups", Ty::Str, true),
    F(3, "resources", Ty::Str, true),
    F(4, "resourceNames", Ty::Str, true),
    F(5, "nonResourceURLs", Ty::Str, true),
];
const SELECTOR_REQUIREMENT: &[F] = &[
    F(1, "key", Ty::Str, false),
    F(2, "operator", Ty::Str, false),
    F(3, "values", Ty::Str, true),
];
const LABEL_SELECTOR: &[F] = &[
    F(1, "matchLabels", Ty::MapStr, false),
    F(2, "matchExpressions", Ty::Msg(SELECTOR_REQUIREMENT), true),
];
const AGGREGATION_RULE: &[F] = &[F(1, "clusterRoleSelectors", Ty::Msg(LABEL_SELECTOR), true)];
const SUBJECT: &[F] = &[
    F(1, "kind", Ty::Str, false),
    F(2, "apiGroup", Ty::Str, false),
    F(3, "name", Ty::Str, false),
    F(4, "namespace", Ty::Str, false),
];
const ROLE_REF: &[F] = &[
    F(1, "apiGroup", Ty::Str, false),
    F(2, "kind", Ty::Str, false),
    F(3, "name", Ty::Str, false),
];

/// The top-level schema of each kind kube-sim reads as protobuf.
fn schema(kind: &str) -> Option<&'static [F]> {
    const META: F = F(1, "metadata", Ty::Msg(OBJECT_META), false);
    Some(match kind {
        "SelfSubjectAccessReview" => &[META, F(2, "spec", Ty::Msg(SELF_SAR_SPEC), false)],
        "SubjectAccessReview" | "LocalSubjectAccessReview" => {
            &[META, F(2, "spec", Ty::Msg(SAR_SPEC), false)]
        }
        "SelfSubjectRulesReview" => &[META, F(2, "spec", Ty::Msg(RULES_REVIEW_SPEC), false)],
        "SelfSubjectReview" => &[META],
        "Namespace" => &[META, F(2, "spec", Ty::Msg(NAMESPACE_SPEC), false)],
        "ConfigMap" => &[
            META,
            F(2, "data", Ty::MapStr, false),
            F(3, "binaryData", Ty::MapBytes, false),
            F(4, "immutable", Ty::Bool, false),
        ],
        "Secret" => &[
            META,
            F(2, "data", Ty::MapBytes, false),
            F(3, "type", Ty::Str, false),
            F(4, "stringData", Ty::MapStr, false),
            F(5, "immutable", Ty::Bool, false),
        ],
        "ServiceAccount" => &[
            META,
            F(2, "secrets", Ty::Msg(OBJECT_REF), true),
            F(3, "imagePullSecrets", Ty::Msg(LOCAL_REF), true),
            F(4, "automountServiceAccountToken", Ty::Bool, false),
        ],
        "Role" => &[META, F(2, "rules", Ty::Msg(POLICY_RULE), true)],
        "ClusterRole" => &[
            META,
            F(2, "rules", Ty::Msg(POLICY_RULE), true),
            F(3, "aggregationRule", Ty::Msg(AGGREGATION_RULE), false),
        ],
        "RoleBinding" | "ClusterRoleBinding" => &[
            META,
            F(2, "subjects", Ty::Msg(SUBJECT), true),
            F(3, "roleRef", Ty::Msg(ROLE_REF), false),
        ],
        _ => return None,
    })
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn map_entry(b: &[u8], bytes_value: bool) -> Option<(String, Value)> {
    let mut key = String::new();
    let mut value = Value::String(String::new());
    for (num, f) in fields(b)? {
        match (num, f) {
            (1, Field::Bytes(k)) => key = text(k),
            (2, Field::Bytes(v)) if bytes_value => {
                value = Value::String(base64::engine::general_purpose::STANDARD.encode(v))
            }
            (2, Field::Bytes(v)) => value = Value::String(text(v)),
            _ => {}
        }
    }
    Some((key, value))
}

/// Decodes one message by its schema; unknown fields are skipped.
fn message(buf: &[u8], schema: &[F]) -> Option<Value> {
    let mut out = Map::new();
    for (num, f) in fields(buf)? {
        let Some(F(_, name, ty, repeated)) = schema.iter().find(|d| d.0 == num).copied() else {
            continue;
        };
        let value = match (ty, f) {
            // Empty singular strings are what JSON's omitempty leaves out.
            (Ty::Str, Field::Bytes(b)) if b.is_empty() && !repeated => continue,
            (Ty::Str, Field::Bytes(b)) => Value::String(text(b)),
            (Ty::Bool, Field::Varint(v)) => Value::Bool(v != 0),
            (Ty::Msg(inner), Field::Bytes(b)) => message(b, inner)?,
            (Ty::MapStr | Ty::MapBytes, Field::Bytes(b)) => {
                let (k, v) = map_entry(b, matches!(ty, Ty::MapBytes))?;
                let entry = out.entry(name).or_insert_with(|| Value::Object(Map::new()));
                if let Value::Object(m) = entry {
                    m.insert(k, v);
                }
                continue;
            }
            _ => return None,
        };
        if repeated {
            let entry = out.entry(name).or_insert_with(|| Value::Array(Vec::new()));
            if let Value::Array(a) = entry {
                a.push(value);
            }
        } else {
            out.insert(name.to_string(), value);
        }
    }
    Some(Value::Object(out))
}

/// Decodes a protobuf-encoded object into its JSON form, or explains why it cannot.
pub(crate) fn decode(body: &[u8]) -> Result<Value, String> {
    let raw = body
        .strip_prefix(MAGIC)
        .ok_or("the protobuf body does not start with the Kubernetes magic number")?;
    let unknown = fields(raw).ok_or("malformed protobuf envelope")?;
    let (mut api_version, mut kind, mut inner) = (String::new(), String::new(), None);
    for (num, f) in unknown {
        match (num, f) {
            (1, Field::Bytes(tm)) => {
                let m = message(
                    tm,
                    &[
                        F(1, "apiVersion", Ty::Str, false),
                        F(2, "kind", Ty::Str, false),
                    ],
                )
                .ok_or("malformed TypeMeta")?;
                api_version = m
                    .get("apiVersion")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_string();
                kind = m
                    .get("kind")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_string();
            }
            (2, Field::Bytes(r)) => inner = Some(r),
            _ => {}
        }
    }
    let schema = schema(&kind).ok_or_else(|| {
        format!(
            "kube-sim reads protobuf only for access reviews and the kubectl create generators of namespaces, configmaps, secrets, serviceaccounts and RBAC objects, not {kind:?}; send application/json (for example: kubectl create ... --dry-run=client -o yaml | kubectl apply -f -)"
        )
    })?;
    let mut obj = message(inner.unwrap_or(&[]), schema)
        .ok_or_else(|| format!("malformed protobuf {kind}"))?;
    if let Value::Object(m) = &mut obj {
        m.insert("apiVersion".into(), Value::String(api_version));
        m.insert("kind".into(), Value::String(kind));
        m.entry("metadata").or_insert_with(|| json!({}));
    }
    Ok(obj)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ld(num: u64, payload: &[u8]) -> Vec<u8> {
        let mut v = vec![((num << 3) | 2) as u8, payload.len() as u8];
        v.extend_from_slice(payload);
        v
    }

    fn envelope(api_version: &[u8], kind: &[u8], obj: &[u8]) -> Vec<u8> {
        let tm = [ld(1, api_version), ld(2, kind)].concat();
        [MAGIC.to_vec(), ld(1, &tm), ld(2, obj)].concat()
    }

    #[test]
    fn decodes_self_subject_access_review() {
        let attrs = [ld(1, b"default"), ld(2, b"list"), ld(5, b"pods")].concat();
        let obj = [ld(1, &[]), ld(2, &ld(1, &attrs))].concat();
        let v = decode(&envelope(
            b"authorization.k8s.io/v1",
            b"SelfSubjectAccessReview",
            &obj,
        ))
        .unwrap();
        assert_eq!(v["spec"]["resourceAttributes"]["verb"], "list");
        assert_eq!(v["spec"]["resourceAttributes"]["resource"], "pods");
        assert!(decode(b"k8s\x00\xff\xff").is_err());
        assert!(decode(b"nope").is_err());
    }

    #[test]
    fn decodes_maps_repeated_fields_and_bytes() {
        let meta = [
            ld(1, b"cfg"),
            ld(11, &[ld(1, b"app"), ld(2, b"web")].concat()),
        ]
        .concat();
        let obj = [
            ld(1, &meta),
            ld(2, &[ld(1, b"k"), ld(2, b"\x00\x01")].concat()),
            ld(3, b"Opaque"),
        ]
        .concat();
        let v = decode(&envelope(b"v1", b"Secret", &obj)).unwrap();
        assert_eq!(v["metadata"]["labels"]["app"], "web");
        assert_eq!(v["data"]["k"], "AAE=");
        assert_eq!(v["type"], "Opaque");
        let rule = [ld(1, b"get"), ld(1, b"list"), ld(2, b""), ld(3, b"pods")].concat();
        let role = [ld(1, &ld(1, b"r")), ld(2, &rule)].concat();
        let v = decode(&envelope(b"rbac.authorization.k8s.io/v1", b"Role", &role)).unwrap();
        assert_eq!(v["rules"][0]["verbs"], json!(["get", "list"]));
        assert_eq!(v["rules"][0]["apiGroups"], json!([""]));
        assert!(
            decode(&envelope(b"apps/v1", b"Deployment", &[]))
                .unwrap_err()
                .contains("send application/json")
        );
    }
}
