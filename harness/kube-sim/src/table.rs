//! `meta.k8s.io/v1` Table responses, so `kubectl get` prints the usual columns.

use serde_json::{Value, json};

use crate::registry::{Column, ResourceType};
use crate::util::{display_value, dotted, human_age, meta_str};

fn col(name: &str, ty: &str, priority: u8, description: &str) -> Column {
    Column {
        name: name.into(),
        type_: ty.into(),
        priority,
        json_path: None,
        description: description.into(),
    }
}

/// The columns `kubectl get` shows for a resource type.
pub(crate) fn columns(t: &ResourceType) -> Vec<Column> {
    let name = col(
        "Name",
        "string",
        0,
        "Name must be unique within a namespace.",
    );
    let age = col(
        "Age",
        "string",
        0,
        "CreationTimestamp is a timestamp representing the server time when this object was created.",
    );
    let mut cols = vec![name];
    if t.from_crd {
        cols.extend(t.columns.iter().cloned());
        cols.push(age);
        return cols;
    }
    let extra: Vec<Column> = match (t.group.as_str(), t.plural.as_str()) {
        ("", "pods") => vec![
            col(
                "Ready",
                "string",
                0,
                "The aggregate readiness state of this pod for accepting traffic.",
            ),
            col(
                "Status",
                "string",
                0,
                "The aggregate status of the containers in this pod.",
            ),
            col(
                "Restarts",
                "string",
                0,
                "The number of times the containers in this pod have been restarted.",
            ),
            age.clone(),
            col("IP", "string", 1, "IP address allocated to the pod."),
            col(
                "Node",
                "string",
                1,
                "Name of the Node this pod is assigned to.",
            ),
            col(
                "Nominated Node",
                "string",
                1,
                "Name of the node this pod is nominated to.",
            ),
            col("Readiness Gates", "string", 1, "Pod readiness gates."),
        ],
        ("", "services") => vec![
            col("Type", "string", 0, "The type of the service."),
            col("Cluster-IP", "string", 0, "The cluster IP of the service."),
            col(
                "External-IP",
                "string",
                0,
                "The external IP of the service.",
            ),
            col("Port(s)", "string", 0, "The ports of the service."),
            age.clone(),
            col("Selector", "string", 1, "The selector of the service."),
        ],
        ("", "namespaces") => vec![
            col("Status", "string", 0, "The status of the namespace."),
            age.clone(),
        ],
        ("", "nodes") => vec![
            col("Status", "string", 0, "The status of the node."),
            col("Roles", "string", 0, "The roles of the node."),
            age.clone(),
            col(
                "Version",
                "string",
                0,
                "Kubelet Version reported by the node.",
            ),
            col("Internal-IP", "string", 1, "List of internal IPs."),
            col("External-IP", "string", 1, "List of external IPs."),
            col("OS-Image", "string", 1, "OS image reported by the node."),
            col(
                "Kernel-Version",
                "string",
                1,
                "Kernel version reported by the node.",
            ),
            col(
                "Container-Runtime",
                "string",
                1,
                "Container runtime reported by the node.",
            ),
        ],
        ("", "endpoints") => vec![
            col("Endpoints", "string", 0, "Endpoints of the service."),
            age.clone(),
        ],
        ("", "configmaps") => vec![
            col("Data", "integer", 0, "Number of data entries."),
            age.clone(),
        ],
        ("", "secrets") => vec![
            col("Type", "string", 0, "The type of the secret."),
            col("Data", "integer", 0, "Number of data entries."),
            age.clone(),
        ],
        ("discovery.k8s.io", "endpointslices") => vec![
            col("AddressType", "string", 0, "The address type."),
            col("Ports", "string", 0, "The ports."),
            col("Endpoints", "string", 0, "The endpoint addresses."),
            age.clone(),
        ],
        ("networking.k8s.io", "networkpolicies") => vec![
            col("Pod-Selector", "string", 0, "The pods this policy selects."),
            age.clone(),
        ],
        ("networking.k8s.io", "ingresses") => vec![
            col("Class", "string", 0, "The ingress class."),
            col(
                "Hosts",
                "string",
                0,
                "Hosts that incoming requests are matched against.",
            ),
            col(
                "Address",
                "string",
                0,
                "Address is a list containing ingress points for the load-balancer.",
            ),
            col(
                "Ports",
                "string",
                0,
                "Ports of TLS configurations that open.",
            ),
            age.clone(),
        ],
        ("rbac.authorization.k8s.io", "rolebindings")
        | ("rbac.authorization.k8s.io", "clusterrolebindings") => vec![
            col("Role", "string", 0, "RoleRef of the binding."),
            age.clone(),
            col("Users", "string", 1, "Users in the binding."),
            col("Groups", "string", 1, "Groups in the binding."),
            col(
                "ServiceAccounts",
                "string",
                1,
                "ServiceAccounts in the binding.",
            ),
        ],
        ("apiextensions.k8s.io", "customresourcedefinitions") => {
            vec![col("Created At", "date", 0, "Creation time.")]
        }
        _ => vec![age.clone()],
    };
    cols.extend(extra);
    cols
}

fn join_or_none(v: Vec<String>) -> String {
    if v.is_empty() {
        "<none>".into()
    } else {
        v.join(",")
    }
}

fn selector_string(sel: Option<&Value>) -> String {
    match sel.and_then(Value::as_object) {
        Some(m) if !m.is_empty() => m
            .iter()
            .map(|(k, v)| format!("{k}={}", display_value(v)))
            .collect::<Vec<_>>()
            .join(","),
        _ => "<none>".into(),
    }
}

fn label_selector_string(sel: Option<&Value>) -> String {
    let Some(sel) = sel else {
        return "<none>".into();
    };
    let mut parts: Vec<String> = sel
        .get("matchLabels")
        .and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .map(|(k, v)| format!("{k}={}", display_value(v)))
                .collect()
        })
        .unwrap_or_default();
    for e in sel
        .get("matchExpressions")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let key = e.get("key").and_then(Value::as_str).unwrap_or("");
        let vals: Vec<String> = e
            .get("values")
            .and_then(Value::as_array)
            .map(|a| a.iter().map(display_value).collect())
            .unwrap_or_default();
        parts.push(
            match e.get("operator").and_then(Value::as_str).unwrap_or("") {
                "In" => format!("{key} in ({})", vals.join(",")),
                "NotIn" => format!("{key} notin ({})", vals.join(",")),
                "Exists" => key.to_string(),
                "DoesNotExist" => format!("!{key}"),
                _ => String::new(),
            },
        );
    }
    if parts.is_empty() {
        "<none>".into()
    } else {
        parts.join(",")
    }
}

fn cells(t: &ResourceType, o: &Value) -> Vec<Value> {
    let name = json!(meta_str(o, "name").unwrap_or(""));
    let age = json!(human_age(meta_str(o, "creationTimestamp")));
    let s = |p: &str| dotted(o, p).map(display_value).unwrap_or_default();
    let arr = |p: &str| {
        dotted(o, p)
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default()
    };
    if t.from_crd {
        let mut c = vec![name];
        for column in &t.columns {
            let v = column
                .json_path
                .as_deref()
                .and_then(|p| dotted(o, p))
                .cloned()
                .unwrap_or(Value::Null);
            c.push(v);
        }
        c.push(age);
        return c;
    }
    match (t.group.as_str(), t.plural.as_str()) {
        ("", "pods") => {
            let statuses = arr("status.containerStatuses");
            let total = arr("spec.containers").len();
            let ready = statuses
                .iter()
                .filter(|c| c.get("ready").and_then(Value::as_bool) == Some(true))
                .count();
            let restarts: i64 = statuses
                .iter()
                .filter_map(|c| c.get("restartCount").and_then(Value::as_i64))
                .sum();
            let mut status = s("status.reason");
            if status.is_empty() {
                status = s("status.phase");
            }
            for cs in &statuses {
                if let Some(reason) = dotted(cs, "state.waiting.reason").and_then(Value::as_str) {
                    status = reason.to_string();
                }
            }
            if meta_str(o, "deletionTimestamp").is_some() {
                status = "Terminating".into();
            }
            let or_none = |v: String| {
                if v.is_empty() {
                    "<none>".to_string()
                } else {
                    v
                }
            };
            vec![
                name,
                json!(format!("{ready}/{total}")),
                json!(status),
                json!(restarts.to_string()),
                age,
                json!(or_none(s("status.podIP"))),
                json!(or_none(s("spec.nodeName"))),
                json!(or_none(s("status.nominatedNodeName"))),
                json!("<none>"),
            ]
        }
        ("", "services") => {
            let ty = s("spec.type");
            let ports: Vec<String> = arr("spec.ports")
                .iter()
                .map(|p| {
                    let port = p.get("port").map(display_value).unwrap_or_default();
                    let proto = p.get("protocol").and_then(Value::as_str).unwrap_or("TCP");
                    match p.get("nodePort") {
                        Some(np) => format!("{port}:{}/{proto}", display_value(np)),
                        None => format!("{port}/{proto}"),
                    }
                })
                .collect();
            let external = match ty.as_str() {
                "ExternalName" => s("spec.externalName"),
                "LoadBalancer" => {
                    let ips: Vec<String> = arr("status.loadBalancer.ingress")
                        .iter()
                        .filter_map(|i| i.get("ip").map(display_value))
                        .collect();
                    if ips.is_empty() {
                        "<pending>".into()
                    } else {
                        ips.join(",")
                    }
                }
                _ => {
                    let ips: Vec<String> =
                        arr("spec.externalIPs").iter().map(display_value).collect();
                    join_or_none(ips)
                }
            };
            vec![
                name,
                json!(ty),
                json!(s("spec.clusterIP")),
                json!(external),
                json!(join_or_none(ports)),
                age,
                json!(selector_string(dotted(o, "spec.selector"))),
            ]
        }
        ("", "namespaces") => vec![name, json!(s("status.phase")), age],
        ("", "nodes") => {
            let ready = arr("status.conditions")
                .iter()
                .find(|c| c.get("type").and_then(Value::as_str) == Some("Ready"))
                .and_then(|c| c.get("status"))
                .and_then(Value::as_str)
                .map(|s| s == "True");
            let mut status = match ready {
                Some(true) => "Ready".to_string(),
                Some(false) => "NotReady".to_string(),
                None => "Unknown".to_string(),
            };
            if dotted(o, "spec.unschedulable").and_then(Value::as_bool) == Some(true) {
                status.push_str(",SchedulingDisabled");
            }
            let roles: Vec<String> = o
                .get("metadata")
                .and_then(|m| m.get("labels"))
                .and_then(Value::as_object)
                .map(|l| {
                    l.keys()
                        .filter_map(|k| {
                            k.strip_prefix("node-role.kubernetes.io/")
                                .map(str::to_string)
                        })
                        .collect()
                })
                .unwrap_or_default();
            let addr = |ty: &str| {
                let v: Vec<String> = arr("status.addresses")
                    .iter()
                    .filter(|a| a.get("type").and_then(Value::as_str) == Some(ty))
                    .filter_map(|a| a.get("address").map(display_value))
                    .collect();
                join_or_none(v)
            };
            vec![
                name,
                json!(status),
                json!(join_or_none(roles)),
                age,
                json!(s("status.nodeInfo.kubeletVersion")),
                json!(addr("InternalIP")),
                json!(addr("ExternalIP")),
                json!(s("status.nodeInfo.osImage")),
                json!(s("status.nodeInfo.kernelVersion")),
                json!(s("status.nodeInfo.containerRuntimeVersion")),
            ]
        }
        ("", "endpoints") => {
            let mut eps = Vec::new();
            for subset in arr("subsets") {
                let ports: Vec<String> = subset
                    .get("ports")
                    .and_then(Value::as_array)
                    .map(|ps| {
                        ps.iter()
                            .filter_map(|p| p.get("port").map(display_value))
                            .collect()
                    })
                    .unwrap_or_default();
                for a in subset
                    .get("addresses")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                {
                    let ip = a.get("ip").map(display_value).unwrap_or_default();
                    if ports.is_empty() {
                        eps.push(ip);
                    } else {
                        eps.extend(ports.iter().map(|p| format!("{ip}:{p}")));
                    }
                }
            }
            vec![name, json!(join_or_none(eps)), age]
        }
        ("", "configmaps") => {
            let n = o
                .get("data")
                .and_then(Value::as_object)
                .map_or(0, |m| m.len())
                + o.get("binaryData")
                    .and_then(Value::as_object)
                    .map_or(0, |m| m.len());
            vec![name, json!(n), age]
        }
        ("", "secrets") => vec![
            name,
            json!(s("type")),
            json!(
                o.get("data")
                    .and_then(Value::as_object)
                    .map_or(0, |m| m.len())
            ),
            age,
        ],
        ("discovery.k8s.io", "endpointslices") => {
            let ports: Vec<String> = arr("ports")
                .iter()
                .filter_map(|p| p.get("port").map(display_value))
                .collect();
            let addrs: Vec<String> = arr("endpoints")
                .iter()
                .flat_map(|e| {
                    e.get("addresses")
                        .and_then(Value::as_array)
                        .cloned()
                        .unwrap_or_default()
                })
                .map(|a| display_value(&a))
                .collect();
            vec![
                name,
                json!(s("addressType")),
                json!(join_or_none(ports)),
                json!(join_or_none(addrs)),
                age,
            ]
        }
        ("networking.k8s.io", "networkpolicies") => vec![
            name,
            json!(label_selector_string(dotted(o, "spec.podSelector"))),
            age,
        ],
        ("networking.k8s.io", "ingresses") => {
            let hosts: Vec<String> = arr("spec.rules")
                .iter()
                .filter_map(|r| r.get("host").map(display_value))
                .collect();
            let addrs: Vec<String> = arr("status.loadBalancer.ingress")
                .iter()
                .filter_map(|i| i.get("ip").or_else(|| i.get("hostname")).map(display_value))
                .collect();
            let ports = if arr("spec.tls").is_empty() {
                "80"
            } else {
                "80, 443"
            };
            let class = s("spec.ingressClassName");
            vec![
                name,
                json!(if class.is_empty() {
                    "<none>".to_string()
                } else {
                    class
                }),
                json!(if hosts.is_empty() {
                    "*".to_string()
                } else {
                    hosts.join(",")
                }),
                json!(addrs.join(",")),
                json!(ports),
                age,
            ]
        }
        ("rbac.authorization.k8s.io", "rolebindings")
        | ("rbac.authorization.k8s.io", "clusterrolebindings") => {
            let subjects = arr("subjects");
            let of = |kind: &str| {
                let v: Vec<String> = subjects
                    .iter()
                    .filter(|s| s.get("kind").and_then(Value::as_str) == Some(kind))
                    .map(|s| {
                        let n = s.get("name").map(display_value).unwrap_or_default();
                        match s.get("namespace").and_then(Value::as_str) {
                            Some(ns) if kind == "ServiceAccount" => format!("{ns}/{n}"),
                            _ => n,
                        }
                    })
                    .collect();
                v.join(", ")
            };
            vec![
                name,
                json!(format!("{}/{}", s("roleRef.kind"), s("roleRef.name"))),
                age,
                json!(of("User")),
                json!(of("Group")),
                json!(of("ServiceAccount")),
            ]
        }
        ("apiextensions.k8s.io", "customresourcedefinitions") => {
            vec![name, json!(meta_str(o, "creationTimestamp").unwrap_or(""))]
        }
        _ => vec![name, age],
    }
}

/// What a Table row carries besides its cells (`includeObject`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum IncludeObject {
    None,
    Metadata,
    Object,
}

impl IncludeObject {
    pub fn parse(s: Option<&str>) -> Self {
        match s {
            Some("None") => IncludeObject::None,
            Some("Object") => IncludeObject::Object,
            _ => IncludeObject::Metadata,
        }
    }
}

fn row(t: &ResourceType, o: &Value, include: IncludeObject) -> Value {
    let mut r = json!({"cells": cells(t, o)});
    match include {
        IncludeObject::None => {}
        IncludeObject::Metadata => {
            let mut meta = o.get("metadata").cloned().unwrap_or(json!({}));
            if let Value::Object(m) = &mut meta {
                m.shift_remove("managedFields");
            }
            r["object"] = json!({"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", "metadata": meta});
        }
        IncludeObject::Object => r["object"] = crate::util::expanded(o),
    }
    r
}

/// A Table of `objects`.
pub(crate) fn table(
    t: &ResourceType,
    objects: &[std::sync::Arc<Value>],
    revision: &str,
    continue_token: Option<&str>,
    include: IncludeObject,
) -> Value {
    let defs: Vec<Value> = columns(t)
        .iter()
        .map(|c| {
            let mut d = json!({"name": c.name, "type": c.type_, "format": "", "description": c.description, "priority": c.priority});
            if c.name == "Name" {
                d["format"] = json!("name");
            }
            d
        })
        .collect();
    let rows: Vec<Value> = objects.iter().map(|o| row(t, o, include)).collect();
    let mut meta = json!({"resourceVersion": revision});
    if let Some(c) = continue_token {
        meta["continue"] = json!(c);
    }
    json!({"kind": "Table", "apiVersion": "meta.k8s.io/v1", "metadata": meta, "columnDefinitions": defs, "rows": rows})
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::Registry;

    #[test]
    fn pod_row() {
        let reg = Registry::builtin();
        let t = reg.lookup("", "v1", "pods").unwrap();
        let pod = std::sync::Arc::new(
            json!({"metadata": {"name": "p", "creationTimestamp": "2020-01-01T00:00:00Z"},
            "spec": {"containers": [{"name": "c"}], "nodeName": "n1"},
            "status": {"phase": "Running", "podIP": "10.0.0.5", "containerStatuses": [{"ready": true, "restartCount": 2}]}}),
        );
        let tbl = table(&t, &[pod], "5", None, IncludeObject::Metadata);
        let cells = &tbl["rows"][0]["cells"];
        assert_eq!(cells[1], "1/1");
        assert_eq!(cells[2], "Running");
        assert_eq!(cells[3], "2");
        assert_eq!(cells[5], "10.0.0.5");
        assert_eq!(cells[6], "n1");
        assert_eq!(
            tbl["columnDefinitions"].as_array().unwrap().len(),
            cells.as_array().unwrap().len()
        );
    }
}
