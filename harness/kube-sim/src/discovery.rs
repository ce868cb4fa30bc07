//! Discovery documents (legacy and aggregated v2) and the OpenAPI v3 documents kubectl reads.

use serde_json::{Value, json};

use crate::registry::{Registry, ResourceType};

/// The media type of aggregated discovery responses.
pub(crate) const AGGREGATED_CONTENT_TYPE: &str =
    "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList";

fn subresource_entries(
    t: &ResourceType,
) -> Vec<(String, String, String, String, Vec<&'static str>)> {
    // (name, group, version, kind, verbs) of each subresource, as upstream describes them.
    t.subresources
        .iter()
        .map(|s| {
            let (g, v, k, verbs): (String, String, String, Vec<&'static str>) = match s.as_str() {
                "status" => (
                    t.group.clone(),
                    String::new(),
                    t.kind.clone(),
                    vec!["get", "patch", "update"],
                ),
                "scale" => (
                    "autoscaling".into(),
                    "v1".into(),
                    "Scale".into(),
                    vec!["get", "patch", "update"],
                ),
                "binding" => (
                    String::new(),
                    String::new(),
                    "Binding".into(),
                    vec!["create"],
                ),
                "exec" => (
                    String::new(),
                    String::new(),
                    "PodExecOptions".into(),
                    vec!["create", "get"],
                ),
                "log" => (String::new(), String::new(), t.kind.clone(), vec!["get"]),
                "finalize" => (String::new(), String::new(), t.kind.clone(), vec!["update"]),
                "ephemeralcontainers" => (
                    String::new(),
                    String::new(),
                    t.kind.clone(),
                    vec!["get", "patch", "update"],
                ),
                _ => (String::new(), String::new(), t.kind.clone(), vec!["get"]),
            };
            (s.clone(), g, v, k, verbs)
        })
        .collect()
}

/// `/api/v1` or `/apis/{group}/{version}`: an APIResourceList.
pub(crate) fn resource_list(reg: &Registry, group: &str, version: &str) -> Option<Value> {
    let types = reg.in_group_version(group, version);
    if types.is_empty() {
        return None;
    }
    let gv = if group.is_empty() {
        version.to_string()
    } else {
        format!("{group}/{version}")
    };
    let mut resources = Vec::new();
    for t in &types {
        let mut r = json!({
            "name": t.plural,
            "singularName": t.singular,
            "namespaced": t.namespaced,
            "kind": t.kind,
            "verbs": t.verbs,
        });
        if !t.short_names.is_empty() {
            r["shortNames"] = json!(t.short_names);
        }
        if !t.categories.is_empty() {
            r["categories"] = json!(t.categories);
        }
        resources.push(r);
        for (name, g, v, k, verbs) in subresource_entries(t) {
            let mut s = json!({
                "name": format!("{}/{name}", t.plural),
                "singularName": "",
                "namespaced": t.namespaced,
                "kind": k,
                "verbs": verbs,
            });
            if !g.is_empty() || !v.is_empty() {
                s["group"] = json!(g);
                s["version"] = json!(v);
            }
            resources.push(s);
        }
    }
    Some(
        json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": gv, "resources": resources}),
    )
}

/// `/api`: APIVersions.
pub(crate) fn api_versions(server_address: &str) -> Value {
    json!({
        "kind": "APIVersions",
        "versions": ["v1"],
        "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": server_address}],
    })
}

fn group_json(name: &str, versions: &[String]) -> Value {
    let vs: Vec<Value> = versions
        .iter()
        .map(|v| json!({"groupVersion": format!("{name}/{v}"), "version": v}))
        .collect();
    let preferred = vs.first().cloned().unwrap_or(json!({}));
    json!({"name": name, "versions": vs, "preferredVersion": preferred})
}

/// `/apis`: APIGroupList.
pub(crate) fn group_list(reg: &Registry) -> Value {
    let groups: Vec<Value> = reg
        .groups()
        .into_iter()
        .filter(|(g, _)| !g.is_empty())
        .map(|(g, vs)| group_json(&g, &vs))
        .collect();
    json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups})
}

/// `/apis/{group}`: APIGroup.
pub(crate) fn group(reg: &Registry, name: &str) -> Option<Value> {
    let (g, vs) = reg
        .groups()
        .into_iter()
        .find(|(g, _)| g == name && !g.is_empty())?;
    let mut v = group_json(&g, &vs);
    v["kind"] = json!("APIGroup");
    v["apiVersion"] = json!("v1");
    Some(v)
}

fn discovery_resource(t: &ResourceType, version: &str) -> Value {
    let mut r = json!({
        "resource": t.plural,
        "responseKind": {"group": t.group, "version": version, "kind": t.kind},
        "scope": if t.namespaced { "Namespaced" } else { "Cluster" },
        "singularResource": t.singular,
        "verbs": t.verbs,
    });
    if !t.short_names.is_empty() {
        r["shortNames"] = json!(t.short_names);
    }
    if !t.categories.is_empty() {
        r["categories"] = json!(t.categories);
    }
    let subs: Vec<Value> = subresource_entries(t)
        .into_iter()
        .map(|(name, g, v, k, verbs)| {
            let (g, v) = if g.is_empty() && v.is_empty() { (t.group.clone(), version.to_string()) } else { (g, v) };
            let v = if v.is_empty() { version.to_string() } else { v };
            json!({"subresource": name, "responseKind": {"group": g, "version": v, "kind": k}, "verbs": verbs})
        })
        .collect();
    if !subs.is_empty() {
        r["subresources"] = json!(subs);
    }
    r
}

/// Aggregated discovery (`apidiscovery.k8s.io/v2` APIGroupDiscoveryList) for `/api` (core) or `/apis`.
pub(crate) fn aggregated(reg: &Registry, core: bool) -> Value {
    let items: Vec<Value> = reg
        .groups()
        .into_iter()
        .filter(|(g, _)| g.is_empty() == core)
        .map(|(g, vs)| {
            let versions: Vec<Value> = vs
                .iter()
                .map(|v| {
                    let resources: Vec<Value> = reg
                        .in_group_version(&g, v)
                        .iter()
                        .map(|t| discovery_resource(t, v))
                        .collect();
                    json!({"version": v, "resources": resources, "freshness": "Current"})
                })
                .collect();
            let metadata = if core {
                json!({"creationTimestamp": null})
            } else {
                json!({"name": g, "creationTimestamp": null})
            };
            json!({"metadata": metadata, "versions": versions})
        })
        .collect();
    json!({"kind": "APIGroupDiscoveryList", "apiVersion": "apidiscovery.k8s.io/v2", "metadata": {}, "items": items})
}

fn fnv(s: &str) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in s.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    format!("{h:016X}")
}

fn gv_path(group: &str, version: &str) -> String {
    if group.is_empty() {
        format!("api/{version}")
    } else {
        format!("apis/{group}/{version}")
    }
}

/// `/openapi/v3`: the index of per-group-version documents.
pub(crate) fn openapi_index(reg: &Registry) -> Value {
    let mut paths = serde_json::Map::new();
    for (g, vs) in reg.groups() {
        for v in vs {
            let p = gv_path(&g, &v);
            let doc = openapi_gv(reg, &g, &v)
                .map(|d| d.to_string())
                .unwrap_or_default();
            paths.insert(
                p.clone(),
                json!({"serverRelativeURL": format!("/openapi/v3/{p}?hash={}", fnv(&doc))}),
            );
        }
    }
    json!({"paths": paths})
}

/// `/openapi/v3/api/v1` etc.: operations with their GVK and the query parameters kubectl probes
/// (`fieldValidation`), so that `kubectl apply` validates on the server side.
pub(crate) fn openapi_gv(reg: &Registry, group: &str, version: &str) -> Option<Value> {
    let types = reg.in_group_version(group, version);
    if types.is_empty() {
        return None;
    }
    let q = |name: &str| json!({"name": name, "in": "query", "schema": {"type": "string", "uniqueItems": true}});
    let ok = json!({"200": {"description": "OK", "content": {"application/json": {"schema": {"type": "object"}}}}});
    let mut paths = serde_json::Map::new();
    let prefix = if group.is_empty() {
        format!("/api/{version}")
    } else {
        format!("/apis/{group}/{version}")
    };
    let mut schemas = serde_json::Map::new();
    for t in &types {
        let gvk = json!({"group": t.group, "version": version, "kind": t.kind});
        let base = if t.namespaced {
            format!("{prefix}/namespaces/{{namespace}}/{}", t.plural)
        } else {
            format!("{prefix}/{}", t.plural)
        };
        let op = |action: &str, params: Vec<Value>, body: Option<Value>| {
            let mut o = json!({
                "operationId": format!("{action}{}", t.kind),
                "x-kubernetes-action": action,
                "x-kubernetes-group-version-kind": gvk,
                "parameters": params,
                "responses": ok,
            });
            if let Some(b) = body {
                o["requestBody"] = b;
            }
            o
        };
        let json_body = json!({"content": {"application/json": {"schema": {"type": "object"}}}, "required": true});
        let patch_body = json!({"content": {
            "application/json-patch+json": {"schema": {"type": "object"}},
            "application/merge-patch+json": {"schema": {"type": "object"}},
            "application/apply-patch+yaml": {"schema": {"type": "object"}},
        }, "required": true});
        let write_params = || vec![q("dryRun"), q("fieldManager"), q("fieldValidation")];
        if t.verbs.iter().any(|v| v == "list") {
            paths.insert(
                base.clone(),
                json!({
                    "get": op("list", vec![q("labelSelector"), q("fieldSelector"), q("limit"), q("continue"), q("resourceVersion"), q("watch")], None),
                    "post": op("post", write_params(), Some(json_body.clone())),
                }),
            );
            let mut patch_params = write_params();
            patch_params.push(q("force"));
            paths.insert(
                format!("{base}/{{name}}"),
                json!({
                    "get": op("get", vec![], None),
                    "put": op("put", write_params(), Some(json_body.clone())),
                    "patch": op("patch", patch_params, Some(patch_body)),
                    "delete": op("delete", vec![q("dryRun"), q("gracePeriodSeconds"), q("propagationPolicy")], None),
                }),
            );
        } else {
            paths.insert(
                base.clone(),
                json!({"post": op("post", write_params(), Some(json_body))}),
            );
        }
        let schema_name = format!(
            "{}.{version}.{}",
            if t.group.is_empty() {
                "io.k8s.api.core"
            } else {
                t.group.as_str()
            },
            t.kind
        );
        schemas.insert(
            schema_name,
            json!({"type": "object", "x-kubernetes-group-version-kind": [gvk], "x-kubernetes-preserve-unknown-fields": true}),
        );
    }
    Some(json!({
        "openapi": "3.0.0",
        "info": {"title": "Kubernetes (kube-sim)", "version": crate::SERVER_VERSION},
        "paths": paths,
        "components": {"schemas": schemas},
    }))
}

/// `/version`.
pub(crate) fn version_info() -> Value {
    json!({
        "major": "1",
        "minor": crate::SERVER_VERSION.trim_start_matches("v1.").split('.').next().unwrap_or("33"),
        "gitVersion": crate::SERVER_VERSION,
        "gitCommit": "0000000000000000000000000000000000000000",
        "gitTreeState": "clean",
        "buildDate": "2026-01-01T00:00:00Z",
        "goVersion": "go1.24.0",
        "compiler": "gc",
        "platform": "linux/amd64",
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn discovery_shapes() {
        let reg = Registry::builtin();
        let core = resource_list(&reg, "", "v1").unwrap();
        let pods = core["resources"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["name"] == "pods")
            .unwrap();
        assert_eq!(pods["shortNames"], json!(["po"]));
        assert!(
            core["resources"]
                .as_array()
                .unwrap()
                .iter()
                .any(|r| r["name"] == "pods/exec")
        );
        let agg = aggregated(&reg, false);
        assert!(
            agg["items"]
                .as_array()
                .unwrap()
                .iter()
                .any(|i| i["metadata"]["name"] == "networking.k8s.io")
        );
        let doc = openapi_gv(&reg, "", "v1").unwrap();
        let patch = &doc["paths"]["/api/v1/namespaces/{namespace}/pods/{name}"]["patch"];
        assert_eq!(patch["x-kubernetes-group-version-kind"]["kind"], "Pod");
        assert!(
            patch["parameters"]
                .as_array()
                .unwrap()
                .iter()
                .any(|p| p["name"] == "fieldValidation")
        );
    }
}
