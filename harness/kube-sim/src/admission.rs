//! Per-kind defaulting, validation and allocation, as kube-apiserver's registry strategies do them.

use std::net::Ipv4Addr;

use serde_json::{Map, Value, json};

use crate::registry::{ResourceType, Special};
use crate::status::{ApiError, Cause};
use crate::store::Txn;
use crate::util::{self, dotted, meta_str};

/// Settings the strategies need.
#[derive(Debug, Clone)]
pub(crate) struct Policy {
    pub service_cidr: ipnet::Ipv4Net,
    pub node_ports: std::ops::RangeInclusive<u16>,
}

fn invalid(rt: &ResourceType, obj: &Value, causes: Vec<Cause>) -> ApiError {
    let name = meta_str(obj, "name").unwrap_or("");
    ApiError::invalid(&rt.group, &rt.kind, name, causes)
}

/// Validates object metadata: name format, label and annotation syntax.
pub(crate) fn validate_metadata(rt: &ResourceType, obj: &Value) -> Vec<Cause> {
    let mut causes = Vec::new();
    let name = meta_str(obj, "name").unwrap_or("");
    let check = match (rt.special, rt.group.as_str()) {
        (Special::Namespace, _) => util::check_dns1123_label(name),
        (Special::Service, _) => util::check_dns1035_label(name),
        (_, "rbac.authorization.k8s.io") => util::check_path_segment_name(name),
        _ if rt.from_crd => util::check_path_segment_name(name),
        _ => util::check_dns1123_subdomain(name),
    };
    if name.is_empty() {
        causes.push(Cause::required(
            "metadata.name",
            "name or generateName is required",
        ));
    } else if let Err(why) = check {
        causes.push(Cause::invalid("metadata.name", name, &why));
    }
    if let Some(labels) = obj.get("metadata").and_then(|m| m.get("labels")) {
        match labels.as_object() {
            Some(m) => {
                for (k, v) in m {
                    if let Err(why) = util::check_qualified_name(k) {
                        causes.push(Cause::invalid("metadata.labels", k, &why));
                    }
                    match v.as_str() {
                        Some(s) => {
                            if let Err(why) = util::check_label_value(s) {
                                causes.push(Cause::invalid(
                                    format!("metadata.labels.{k}"),
                                    s,
                                    &why,
                                ));
                            }
                        }
                        None if v.is_null() => {}
                        None => causes.push(Cause::invalid(
                            format!("metadata.labels.{k}"),
                            &v.to_string(),
                            "label values must be strings",
                        )),
                    }
                }
            }
            None if labels.is_null() => {}
            None => causes.push(Cause::invalid(
                "metadata.labels",
                &labels.to_string(),
                "must be a map of strings",
            )),
        }
    }
    if let Some(ann) = obj.get("metadata").and_then(|m| m.get("annotations")) {
        match ann.as_object() {
            Some(m) => {
                let mut total = 0;
                for (k, v) in m {
                    if let Err(why) = util::check_qualified_name(&k.to_ascii_lowercase()) {
                        causes.push(Cause::invalid("metadata.annotations", k, &why));
                    }
                    total += k.len() + v.as_str().map(str::len).unwrap_or(0);
                }
                if total > 256 * 1024 {
                    causes.push(Cause {
                        reason: "FieldValueTooLong",
                        message: format!(
                            "Too long: may not be more than 262144 bytes (got {total})"
                        ),
                        field: "metadata.annotations".into(),
                    });
                }
            }
            None if ann.is_null() => {}
            None => causes.push(Cause::invalid(
                "metadata.annotations",
                &ann.to_string(),
                "must be a map of strings",
            )),
        }
    }
    causes
}

fn obj_mut<'a>(v: &'a mut Value, key: &str) -> &'a mut Map<String, Value> {
    if !v.is_object() {
        *v = json!({});
    }
    match v {
        Value::Object(m) => util::obj_entry(m, key),
        _ => unreachable!("just made an object"),
    }
}

fn set_default(m: &mut Map<String, Value>, key: &str, v: Value) {
    if m.get(key).is_none_or(Value::is_null) {
        m.insert(key.to_string(), v);
    }
}

/// Defaults and validates a new object of a kind with special rules; allocates what it needs.
pub(crate) fn prepare_create(
    rt: &ResourceType,
    obj: &mut Value,
    txn: &mut Txn<'_>,
    policy: &Policy,
) -> Result<(), ApiError> {
    default_object(rt, obj);
    let mut causes = validate_metadata(rt, obj);
    causes.extend(validate_kind(rt, obj));
    if !causes.is_empty() {
        return Err(invalid(rt, obj, causes));
    }
    if rt.special == Special::Service {
        allocate_service(rt, obj, None, txn, policy)?;
    }
    Ok(())
}

/// Defaults and validates an update; keeps immutable fields; re-allocates for Services.
pub(crate) fn prepare_update(
    rt: &ResourceType,
    old: &Value,
    new: &mut Value,
    subresource: &str,
    txn: &mut Txn<'_>,
    policy: &Policy,
) -> Result<(), ApiError> {
    if subresource == "status" {
        // Status writes keep the stored spec and metadata; only the status changes.
        return Ok(());
    }
    default_object(rt, new);
    let mut causes = validate_metadata(rt, new);
    causes.extend(validate_kind(rt, new));
    match rt.special {
        Special::Pod => causes.extend(pod_update_rules(old, new)),
        Special::Namespace => {}
        _ => {}
    }
    if !causes.is_empty() {
        return Err(invalid(rt, new, causes));
    }
    if rt.special == Special::Service {
        allocate_service(rt, new, Some(old), txn, policy)?;
    }
    Ok(())
}

/// Releases what a deleted object held.
pub(crate) fn release(rt: &ResourceType, obj: &Value, txn: &mut Txn<'_>, policy: &Policy) {
    if rt.special != Special::Service || txn.is_dry_run() {
        return;
    }
    for ip in service_ips(obj) {
        txn.state.alloc.cluster_ips.remove(&ip_offset(ip, policy));
    }
    for p in node_ports(obj) {
        txn.state.alloc.node_ports.remove(&p);
    }
}

fn service_ips(obj: &Value) -> Vec<Ipv4Addr> {
    dotted(obj, "spec.clusterIP")
        .and_then(Value::as_str)
        .and_then(|s| s.parse().ok())
        .into_iter()
        .collect()
}

fn node_ports(obj: &Value) -> Vec<u16> {
    dotted(obj, "spec.ports")
        .and_then(Value::as_array)
        .map(|ps| {
            ps.iter()
                .filter_map(|p| p.get("nodePort")?.as_u64())
                .filter_map(|p| u16::try_from(p).ok())
                .collect()
        })
        .unwrap_or_default()
}

fn ip_offset(ip: Ipv4Addr, policy: &Policy) -> u32 {
    u32::from(ip).wrapping_sub(u32::from(policy.service_cidr.network()))
}

/// Kind-specific defaults (idempotent: applied on create and on every update).
pub(crate) fn default_object(rt: &ResourceType, obj: &mut Value) {
    match rt.special {
        Special::Namespace => {
            let name = meta_str(obj, "name").unwrap_or("").to_string();
            let meta = util::meta_mut(obj);
            util::obj_entry(meta, "labels")
                .insert("kubernetes.io/metadata.name".into(), Value::String(name));
            let spec = obj_mut(obj, "spec");
            set_default(spec, "finalizers", json!(["kubernetes"]));
            let status = obj_mut(obj, "status");
            set_default(status, "phase", json!("Active"));
        }
        Special::Pod => default_pod(obj),
        Special::Service => default_service(obj),
        Special::NetworkPolicy => default_network_policy(obj),
        Special::Secret => {
            if let Value::Object(m) = obj {
                set_default(m, "type", json!("Opaque"));
                if let Some(Value::Object(sd)) = m.remove("stringData") {
                    use base64::Engine;
                    let data = util::obj_entry(m, "data");
                    for (k, v) in sd {
                        let s = util::display_value(&v);
                        data.insert(
                            k,
                            Value::String(base64::engine::general_purpose::STANDARD.encode(s)),
                        );
                    }
                }
            }
        }
        Special::EndpointSlice => {
            if let Some(Value::Array(ports)) = obj.get_mut("ports") {
                for p in ports.iter_mut().filter_map(Value::as_object_mut) {
                    set_default(p, "protocol", json!("TCP"));
                }
            }
        }
        _ => {}
    }
}

fn default_pod(obj: &mut Value) {
    let spec = obj_mut(obj, "spec");
    set_default(spec, "restartPolicy", json!("Always"));
    set_default(spec, "terminationGracePeriodSeconds", json!(30));
    set_default(spec, "dnsPolicy", json!("ClusterFirst"));
    set_default(spec, "securityContext", json!({}));
    set_default(spec, "schedulerName", json!("default-scheduler"));
    set_default(spec, "enableServiceLinks", json!(true));
    set_default(spec, "priority", json!(0));
    set_default(spec, "preemptionPolicy", json!("PreemptLowerPriority"));
    let sa = spec
        .get("serviceAccountName")
        .or_else(|| spec.get("serviceAccount"))
        .and_then(Value::as_str)
        .unwrap_or("default")
        .to_string();
    set_default(spec, "serviceAccountName", json!(sa));
    set_default(spec, "serviceAccount", json!(sa));
    if !spec.contains_key("tolerations") {
        spec.insert(
            "tolerations".into(),
            json!([
                {"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300},
                {"key": "node.kubernetes.io/unreachable", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300}
            ]),
        );
    }
    let mut qos_requests = false;
    for key in ["initContainers", "containers"] {
        if let Some(Value::Array(cs)) = spec.get_mut(key) {
            for c in cs.iter_mut().filter_map(Value::as_object_mut) {
                let image = c.get("image").and_then(Value::as_str).unwrap_or("");
                let last = image.rsplit('/').next().unwrap_or("");
                let tagged = last.contains(':') && !last.ends_with(":latest");
                let digest = image.contains('@');
                set_default(
                    c,
                    "imagePullPolicy",
                    json!(if tagged || digest {
                        "IfNotPresent"
                    } else {
                        "Always"
                    }),
                );
                set_default(c, "terminationMessagePath", json!("/dev/termination-log"));
                set_default(c, "terminationMessagePolicy", json!("File"));
                set_default(c, "resources", json!({}));
                if c.get("resources")
                    .and_then(Value::as_object)
                    .is_some_and(|r| !r.is_empty())
                {
                    qos_requests = true;
                }
                if let Some(Value::Array(ports)) = c.get_mut("ports") {
                    for p in ports.iter_mut().filter_map(Value::as_object_mut) {
                        set_default(p, "protocol", json!("TCP"));
                    }
                }
            }
        }
    }
    let status = obj_mut(obj, "status");
    set_default(status, "phase", json!("Pending"));
    set_default(
        status,
        "qosClass",
        json!(if qos_requests {
            "Burstable"
        } else {
            "BestEffort"
        }),
    );
}

fn default_service(obj: &mut Value) {
    let spec = obj_mut(obj, "spec");
    let ty = spec
        .get("type")
        .and_then(Value::as_str)
        .unwrap_or("ClusterIP")
        .to_string();
    set_default(spec, "type", json!(ty));
    if ty != "ExternalName" {
        set_default(spec, "sessionAffinity", json!("None"));
        set_default(spec, "ipFamilies", json!(["IPv4"]));
        set_default(spec, "ipFamilyPolicy", json!("SingleStack"));
        set_default(spec, "internalTrafficPolicy", json!("Cluster"));
    }
    if ty == "NodePort" || ty == "LoadBalancer" {
        set_default(spec, "externalTrafficPolicy", json!("Cluster"));
    }
    if ty == "LoadBalancer" {
        set_default(spec, "allocateLoadBalancerNodePorts", json!(true));
    }
    if let Some(Value::Array(ports)) = spec.get_mut("ports") {
        for p in ports.iter_mut().filter_map(Value::as_object_mut) {
            set_default(p, "protocol", json!("TCP"));
            if let Some(port) = p.get("port").cloned() {
                set_default(p, "targetPort", port);
            }
        }
    }
    let status = obj_mut(obj, "status");
    set_default(status, "loadBalancer", json!({}));
}

fn default_network_policy(obj: &mut Value) {
    let spec = obj_mut(obj, "spec");
    set_default(spec, "podSelector", json!({}));
    if spec
        .get("policyTypes")
        .is_none_or(|v| v.as_array().is_none_or(Vec::is_empty))
    {
        let mut types = vec![json!("Ingress")];
        if spec.get("egress").is_some_and(|e| !e.is_null()) {
            types.push(json!("Egress"));
        }
        spec.insert("policyTypes".into(), Value::Array(types));
    }
    for dir in ["ingress", "egress"] {
        if let Some(Value::Array(rules)) = spec.get_mut(dir) {
            for r in rules.iter_mut() {
                if let Some(Value::Array(ports)) = r.get_mut("ports") {
                    for p in ports.iter_mut().filter_map(Value::as_object_mut) {
                        set_default(p, "protocol", json!("TCP"));
                    }
                }
            }
        }
    }
}

fn port_number(v: Option<&Value>) -> Option<i64> {
    v.and_then(Value::as_i64)
}

/// Kind-specific validation.
pub(crate) fn validate_kind(rt: &ResourceType, obj: &Value) -> Vec<Cause> {
    let mut c = Vec::new();
    match rt.special {
        Special::Pod => {
            let containers = dotted(obj, "spec.containers").and_then(Value::as_array);
            match containers {
                None => c.push(Cause::required("spec.containers", "")),
                Some(cs) if cs.is_empty() => c.push(Cause::required("spec.containers", "")),
                Some(cs) => {
                    let mut seen = Vec::new();
                    for (i, ct) in cs.iter().enumerate() {
                        let name = ct.get("name").and_then(Value::as_str).unwrap_or("");
                        if name.is_empty() {
                            c.push(Cause::required(format!("spec.containers[{i}].name"), ""));
                        } else if let Err(why) = util::check_dns1123_label(name) {
                            c.push(Cause::invalid(
                                format!("spec.containers[{i}].name"),
                                name,
                                &why,
                            ));
                        } else if seen.contains(&name) {
                            c.push(Cause {
                                reason: "FieldValueDuplicate",
                                message: format!("Duplicate value: {name:?}"),
                                field: format!("spec.containers[{i}].name"),
                            });
                        }
                        seen.push(name);
                        if ct
                            .get("image")
                            .and_then(Value::as_str)
                            .unwrap_or("")
                            .trim()
                            .is_empty()
                        {
                            c.push(Cause::required(format!("spec.containers[{i}].image"), ""));
                        }
                        for (j, p) in ct
                            .get("ports")
                            .and_then(Value::as_array)
                            .into_iter()
                            .flatten()
                            .enumerate()
                        {
                            match port_number(p.get("containerPort")) {
                                Some(n) if (1..=65535).contains(&n) => {}
                                Some(n) => c.push(Cause::invalid(
                                    format!("spec.containers[{i}].ports[{j}].containerPort"),
                                    &n.to_string(),
                                    "must be between 1 and 65535, inclusive",
                                )),
                                None => c.push(Cause::required(
                                    format!("spec.containers[{i}].ports[{j}].containerPort"),
                                    "",
                                )),
                            }
                            check_protocol(
                                p,
                                &format!("spec.containers[{i}].ports[{j}].protocol"),
                                &mut c,
                            );
                        }
                    }
                }
            }
        }
        Special::Service => {
            let ty = dotted(obj, "spec.type")
                .and_then(Value::as_str)
                .unwrap_or("ClusterIP");
            if !["ClusterIP", "NodePort", "LoadBalancer", "ExternalName"].contains(&ty) {
                c.push(Cause::unsupported(
                    "spec.type",
                    ty,
                    &["ClusterIP", "ExternalName", "LoadBalancer", "NodePort"],
                ));
            }
            let headless = dotted(obj, "spec.clusterIP").and_then(Value::as_str) == Some("None");
            let ports = dotted(obj, "spec.ports")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default();
            if ports.is_empty() && ty != "ExternalName" && !headless {
                c.push(Cause::required("spec.ports", ""));
            }
            let mut names = Vec::new();
            for (i, p) in ports.iter().enumerate() {
                match port_number(p.get("port")) {
                    Some(n) if (1..=65535).contains(&n) => {}
                    Some(n) => c.push(Cause::invalid(
                        format!("spec.ports[{i}].port"),
                        &n.to_string(),
                        "must be between 1 and 65535, inclusive",
                    )),
                    None => c.push(Cause::required(format!("spec.ports[{i}].port"), "")),
                }
                check_protocol(p, &format!("spec.ports[{i}].protocol"), &mut c);
                let name = p.get("name").and_then(Value::as_str).unwrap_or("");
                if ports.len() > 1 && name.is_empty() {
                    c.push(Cause::required(format!("spec.ports[{i}].name"), ""));
                } else if !name.is_empty() && names.contains(&name) {
                    c.push(Cause {
                        reason: "FieldValueDuplicate",
                        message: format!("Duplicate value: {name:?}"),
                        field: format!("spec.ports[{i}].name"),
                    });
                }
                names.push(name);
                if let Some(tp) = p.get("targetPort")
                    && let Some(n) = tp.as_i64()
                    && !(1..=65535).contains(&n)
                {
                    c.push(Cause::invalid(
                        format!("spec.ports[{i}].targetPort"),
                        &n.to_string(),
                        "must be between 1 and 65535, inclusive",
                    ));
                }
            }
            if let Some(ip) = dotted(obj, "spec.clusterIP").and_then(Value::as_str)
                && !ip.is_empty()
                && ip != "None"
                && ip.parse::<Ipv4Addr>().is_err()
            {
                c.push(Cause::invalid(
                    "spec.clusterIPs[0]",
                    ip,
                    "must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)",
                ));
            }
        }
        Special::NetworkPolicy => {
            for t in dotted(obj, "spec.policyTypes")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                let s = t.as_str().unwrap_or("");
                if s != "Ingress" && s != "Egress" {
                    c.push(Cause::unsupported(
                        "spec.policyTypes",
                        s,
                        &["Ingress", "Egress"],
                    ));
                }
            }
            for dir in ["ingress", "egress"] {
                for (i, r) in dotted(obj, &format!("spec.{dir}"))
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                    .enumerate()
                {
                    for (j, p) in r
                        .get("ports")
                        .and_then(Value::as_array)
                        .into_iter()
                        .flatten()
                        .enumerate()
                    {
                        check_protocol(p, &format!("spec.{dir}[{i}].ports[{j}].protocol"), &mut c);
                    }
                    let peers = if dir == "ingress" { "from" } else { "to" };
                    for (j, peer) in r
                        .get(peers)
                        .and_then(Value::as_array)
                        .into_iter()
                        .flatten()
                        .enumerate()
                    {
                        if let Some(cidr) = dotted(peer, "ipBlock.cidr").and_then(Value::as_str)
                            && cidr.parse::<ipnet::IpNet>().is_err()
                        {
                            c.push(Cause::invalid(
                                format!("spec.{dir}[{i}].{peers}[{j}].ipBlock.cidr"),
                                cidr,
                                "must be a valid CIDR value, (e.g. 10.9.8.0/24 or 2001:db8::/64)",
                            ));
                        }
                    }
                }
            }
        }
        Special::Binding
            if dotted(obj, "target.name")
                .and_then(Value::as_str)
                .unwrap_or("")
                .is_empty() =>
        {
            c.push(Cause::required("target.name", ""));
        }
        _ => {}
    }
    c
}

fn check_protocol(p: &Value, field: &str, c: &mut Vec<Cause>) {
    if let Some(proto) = p.get("protocol").and_then(Value::as_str)
        && !["TCP", "UDP", "SCTP"].contains(&proto)
    {
        c.push(Cause::unsupported(field, proto, &["SCTP", "TCP", "UDP"]));
    }
}

/// Upstream forbids changing most of a pod's spec after creation.
fn pod_update_rules(old: &Value, new: &Value) -> Vec<Cause> {
    let strip = |v: &Value| {
        let mut spec = v.get("spec").cloned().unwrap_or(Value::Null);
        if let Some(m) = spec.as_object_mut() {
            for k in [
                "activeDeadlineSeconds",
                "tolerations",
                "terminationGracePeriodSeconds",
                "schedulingGates",
            ] {
                m.remove(k);
            }
            // Setting nodeName is allowed once (the binding path; lenient for agents).
            if m.get("nodeName").is_some() {
                m.remove("nodeName");
            }
            for key in ["containers", "initContainers"] {
                if let Some(Value::Array(cs)) = m.get_mut(key) {
                    for ct in cs.iter_mut().filter_map(Value::as_object_mut) {
                        ct.remove("image");
                    }
                }
            }
        }
        spec
    };
    let old_node = dotted(old, "spec.nodeName")
        .and_then(Value::as_str)
        .unwrap_or("");
    let new_node = dotted(new, "spec.nodeName")
        .and_then(Value::as_str)
        .unwrap_or("");
    let mut causes = Vec::new();
    if !old_node.is_empty() && old_node != new_node {
        causes.push(Cause::forbidden(
            "spec.nodeName",
            "field is immutable once set",
        ));
    }
    if strip(old) != strip(new) {
        causes.push(Cause::forbidden(
            "spec",
            "pod updates may not change fields other than `spec.containers[*].image`,`spec.initContainers[*].image`,`spec.activeDeadlineSeconds`,`spec.tolerations` (only additions to existing tolerations),`spec.terminationGracePeriodSeconds` (allow it to be set to 1 if it was previously negative)",
        ));
    }
    causes
}

/// Allocates (or keeps) the ClusterIP and NodePorts of a Service.
fn allocate_service(
    rt: &ResourceType,
    obj: &mut Value,
    old: Option<&Value>,
    txn: &mut Txn<'_>,
    policy: &Policy,
) -> Result<(), ApiError> {
    let ty = dotted(obj, "spec.type")
        .and_then(Value::as_str)
        .unwrap_or("ClusterIP")
        .to_string();
    let old_ip = old
        .and_then(|o| dotted(o, "spec.clusterIP"))
        .and_then(Value::as_str)
        .map(str::to_string);
    let requested = dotted(obj, "spec.clusterIP")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    let net = policy.service_cidr;
    let size = 1u64 << (32 - net.prefix_len());
    let max_offset = size.saturating_sub(2) as u32;
    let mut new_ip: Option<String> = None;
    let mut take_ip: Option<u32> = None;
    let mut release_ip: Option<u32> = None;
    if ty == "ExternalName" {
        if let Some(o) = &old_ip
            && let Ok(ip) = o.parse::<Ipv4Addr>()
        {
            release_ip = Some(ip_offset(ip, policy));
        }
    } else if let Some(o) = old_ip.as_deref().filter(|o| !o.is_empty()) {
        if !requested.is_empty() && requested != o {
            return Err(invalid(
                rt,
                obj,
                vec![Cause::invalid(
                    "spec.clusterIPs[0]",
                    &requested,
                    "may not change once set",
                )],
            ));
        }
        new_ip = Some(o.to_string());
    } else if requested == "None" {
        new_ip = Some("None".into());
    } else if !requested.is_empty() {
        let ip: Ipv4Addr = requested.parse().map_err(|_| {
            invalid(
                rt,
                obj,
                vec![Cause::invalid(
                    "spec.clusterIPs[0]",
                    &requested,
                    "must be a valid IP address",
                )],
            )
        })?;
        if !net.contains(&ip) {
            return Err(invalid(
                rt,
                obj,
                vec![Cause::invalid(
                    "spec.clusterIPs[0]",
                    &requested,
                    &format!(
                        "provided IP is not in the valid range. The range of valid IPs is {net}"
                    ),
                )],
            ));
        }
        let off = ip_offset(ip, policy);
        if txn.state.alloc.cluster_ips.contains(&off) {
            return Err(invalid(
                rt,
                obj,
                vec![Cause::invalid(
                    "spec.clusterIPs[0]",
                    &requested,
                    "provided IP is already allocated",
                )],
            ));
        }
        take_ip = Some(off);
        new_ip = Some(requested.clone());
    } else {
        let used = &txn.state.alloc.cluster_ips;
        if used.len() as u64 >= max_offset as u64 {
            return Err(ApiError::internal(format!(
                "failed to allocate a serviceIP: range is full ({net})"
            )));
        }
        let mut off = txn.state.alloc.next_ip.max(1);
        loop {
            if off > max_offset {
                off = 1;
            }
            if !used.contains(&off) {
                break;
            }
            off += 1;
        }
        take_ip = Some(off);
        let ip = Ipv4Addr::from(u32::from(net.network()).wrapping_add(off));
        new_ip = Some(ip.to_string());
    }

    // Node ports.
    let wants_node_ports = ty == "NodePort"
        || (ty == "LoadBalancer"
            && dotted(obj, "spec.allocateLoadBalancerNodePorts").and_then(Value::as_bool)
                != Some(false));
    let old_ports: Vec<(i64, String, u16)> = old
        .and_then(|o| dotted(o, "spec.ports"))
        .and_then(Value::as_array)
        .map(|ps| {
            ps.iter()
                .filter_map(|p| {
                    Some((
                        p.get("port")?.as_i64()?,
                        p.get("protocol")
                            .and_then(Value::as_str)
                            .unwrap_or("TCP")
                            .to_string(),
                        u16::try_from(p.get("nodePort")?.as_u64()?).ok()?,
                    ))
                })
                .collect()
        })
        .unwrap_or_default();
    let mut claimed: Vec<u16> = Vec::new();
    let mut assignments: Vec<Option<u16>> = Vec::new();
    let ports = dotted(obj, "spec.ports")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    for (i, p) in ports.iter().enumerate() {
        if !wants_node_ports {
            assignments.push(None);
            continue;
        }
        let port = p.get("port").and_then(Value::as_i64).unwrap_or(0);
        let proto = p.get("protocol").and_then(Value::as_str).unwrap_or("TCP");
        let mine = old_ports
            .iter()
            .find(|(op, opr, _)| *op == port && opr == proto)
            .map(|x| x.2);
        let requested = p
            .get("nodePort")
            .and_then(Value::as_i64)
            .filter(|n| *n != 0);
        let chosen = match requested {
            Some(n) => {
                let Ok(n16) = u16::try_from(n) else {
                    return Err(invalid(
                        rt,
                        obj,
                        vec![Cause::invalid(
                            format!("spec.ports[{i}].nodePort"),
                            &n.to_string(),
                            "provided port is not in the valid range",
                        )],
                    ));
                };
                if !policy.node_ports.contains(&n16) {
                    return Err(invalid(
                        rt,
                        obj,
                        vec![Cause::invalid(
                            format!("spec.ports[{i}].nodePort"),
                            &n.to_string(),
                            &format!(
                                "provided port is not in the valid range. The range of valid ports is {}-{}",
                                policy.node_ports.start(),
                                policy.node_ports.end()
                            ),
                        )],
                    ));
                }
                let held_by_me = old_ports.iter().any(|x| x.2 == n16);
                if (!held_by_me && txn.state.alloc.node_ports.contains(&n16))
                    || claimed.contains(&n16)
                {
                    return Err(invalid(
                        rt,
                        obj,
                        vec![Cause::invalid(
                            format!("spec.ports[{i}].nodePort"),
                            &n.to_string(),
                            "provided port is already allocated",
                        )],
                    ));
                }
                n16
            }
            None => match mine {
                Some(m) => m,
                None => {
                    let (lo, hi) = (*policy.node_ports.start(), *policy.node_ports.end());
                    let span = u32::from(hi - lo) + 1;
                    let start = txn.state.alloc.next_port.clamp(lo, hi);
                    let mut found = None;
                    for k in 0..span {
                        let cand = lo + ((u32::from(start - lo) + k) % span) as u16;
                        if !txn.state.alloc.node_ports.contains(&cand) && !claimed.contains(&cand) {
                            found = Some(cand);
                            break;
                        }
                    }
                    found.ok_or_else(|| {
                        ApiError::internal("failed to allocate a nodePort: range is full")
                    })?
                }
            },
        };
        claimed.push(chosen);
        assignments.push(Some(chosen));
    }

    if txn.is_dry_run() {
        // Report what would be allocated without holding it.
    } else {
        if let Some(off) = release_ip {
            txn.state.alloc.cluster_ips.remove(&off);
        }
        if let Some(off) = take_ip {
            txn.state.alloc.cluster_ips.insert(off);
            txn.state.alloc.next_ip = off + 1;
        }
        for (_, _, p) in &old_ports {
            if !claimed.contains(p) {
                txn.state.alloc.node_ports.remove(p);
            }
        }
        for p in &claimed {
            txn.state.alloc.node_ports.insert(*p);
        }
        if let Some(last) = claimed.iter().max() {
            txn.state.alloc.next_port = last.saturating_add(1);
        }
    }
    let spec = obj_mut(obj, "spec");
    match new_ip {
        Some(ip) => {
            spec.insert("clusterIP".into(), json!(ip));
            spec.insert("clusterIPs".into(), json!([ip]));
        }
        None => {
            spec.remove("clusterIP");
            spec.remove("clusterIPs");
        }
    }
    if let Some(Value::Array(ps)) = spec.get_mut("ports") {
        for (p, a) in ps.iter_mut().zip(assignments) {
            if let (Some(m), Some(n)) = (p.as_object_mut(), a) {
                m.insert("nodePort".into(), json!(n));
            } else if let Some(m) = p.as_object_mut() {
                m.remove("nodePort");
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::Registry;

    #[test]
    fn network_policy_policy_types_default() {
        let reg = Registry::builtin();
        let rt = reg
            .lookup("networking.k8s.io", "v1", "networkpolicies")
            .unwrap();
        let mut np =
            json!({"metadata": {"name": "a"}, "spec": {"egress": [{"ports": [{"port": 53}]}]}});
        default_object(&rt, &mut np);
        assert_eq!(np["spec"]["policyTypes"], json!(["Ingress", "Egress"]));
        assert_eq!(np["spec"]["egress"][0]["ports"][0]["protocol"], "TCP");
        let mut ingress_only = json!({"metadata": {"name": "b"}, "spec": {"podSelector": {}}});
        default_object(&rt, &mut ingress_only);
        assert_eq!(ingress_only["spec"]["policyTypes"], json!(["Ingress"]));
    }

    #[test]
    fn pod_defaults_and_validation() {
        let reg = Registry::builtin();
        let rt = reg.lookup("", "v1", "pods").unwrap();
        let mut pod = json!({"metadata": {"name": "p"}, "spec": {"containers": [{"name": "c", "image": "nginx", "ports": [{"containerPort": 80}]}]}});
        default_object(&rt, &mut pod);
        assert_eq!(pod["spec"]["containers"][0]["imagePullPolicy"], "Always");
        assert_eq!(pod["spec"]["containers"][0]["ports"][0]["protocol"], "TCP");
        assert_eq!(pod["status"]["phase"], "Pending");
        assert!(validate_kind(&rt, &pod).is_empty());
        let bad = json!({"metadata": {"name": "p"}, "spec": {"containers": [{"name": "c"}]}});
        assert_eq!(
            validate_kind(&rt, &bad)[0].field,
            "spec.containers[0].image"
        );
    }
}
