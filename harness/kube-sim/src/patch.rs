//! PATCH flavours: JSON merge patch (RFC 7386), JSON patch (RFC 6902), strategic merge patch
//! (lists merged by their patch merge keys, `$patch` directives), and server-side apply with
//! field ownership recorded in `metadata.managedFields` (FieldsV1).

use serde_json::{Map, Value, json};

/// How a list field merges.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ListKind {
    /// Replaced as a whole.
    Atomic,
    /// Elements are identified by these key fields.
    Map(&'static [&'static str]),
    /// A set of scalars.
    Set,
}

/// The merge semantics of the list at `path` (field names from the object root, list indices omitted).
pub(crate) fn list_kind(path: &[&str]) -> ListKind {
    let Some(last) = path.last() else {
        return ListKind::Atomic;
    };
    let parent = path.len().checked_sub(2).and_then(|i| path.get(i)).copied();
    match *last {
        "containers"
        | "initContainers"
        | "ephemeralContainers"
        | "env"
        | "volumes"
        | "imagePullSecrets"
        | "resourceClaims"
        | "schedulingGates" => ListKind::Map(&["name"]),
        "volumeMounts" => ListKind::Map(&["mountPath"]),
        "volumeDevices" => ListKind::Map(&["devicePath"]),
        "hostAliases" => ListKind::Map(&["ip"]),
        "conditions" => ListKind::Map(&["type"]),
        "ownerReferences" => ListKind::Map(&["uid"]),
        "topologySpreadConstraints" => ListKind::Map(&["topologyKey", "whenUnsatisfiable"]),
        "finalizers" => ListKind::Set,
        "ports" => {
            let in_container = path
                .iter()
                .any(|p| matches!(*p, "containers" | "initContainers" | "ephemeralContainers"));
            if in_container {
                ListKind::Map(&["containerPort", "protocol"])
            } else if parent == Some("spec") && path.len() == 2 {
                ListKind::Map(&["port", "protocol"])
            } else {
                ListKind::Atomic
            }
        }
        _ => ListKind::Atomic,
    }
}

/// Default for a key field absent from an element (`protocol` defaults to TCP).
fn key_value<'a>(elem: &'a Value, key: &str) -> Option<&'a Value> {
    static TCP: std::sync::LazyLock<Value> =
        std::sync::LazyLock::new(|| Value::String("TCP".into()));
    match elem.get(key) {
        Some(v) => Some(v),
        None if key == "protocol" => Some(&TCP),
        None => None,
    }
}

fn same_key(a: &Value, b: &Value, keys: &[&str]) -> bool {
    keys.iter().all(|k| key_value(a, k) == key_value(b, k))
}

/// RFC 7386 JSON merge patch.
pub(crate) fn merge_patch(target: &mut Value, patch: &Value) {
    match patch {
        Value::Object(p) => {
            if !target.is_object() {
                *target = Value::Object(Map::new());
            }
            if let Value::Object(t) = target {
                for (k, v) in p {
                    if v.is_null() {
                        t.remove(k);
                    } else {
                        merge_patch(t.entry(k.clone()).or_insert(Value::Null), v);
                    }
                }
            }
        }
        other => *target = other.clone(),
    }
}

/// Applies an RFC 6902 JSON patch.
pub(crate) fn json_patch(target: &mut Value, ops: &Value) -> Result<(), String> {
    let ops = ops
        .as_array()
        .ok_or("a JSON patch must be a JSON array of operations")?;
    for (i, op) in ops.iter().enumerate() {
        let name = op
            .get("op")
            .and_then(Value::as_str)
            .ok_or_else(|| format!("operation {i}: missing \"op\""))?;
        let path = op
            .get("path")
            .and_then(Value::as_str)
            .ok_or_else(|| format!("operation {i}: missing \"path\""))?;
        let value = || {
            op.get("value")
                .cloned()
                .ok_or_else(|| format!("operation {i} ({name}): missing \"value\""))
        };
        let from = || {
            op.get("from")
                .and_then(Value::as_str)
                .ok_or_else(|| format!("operation {i} ({name}): missing \"from\""))
        };
        match name {
            "add" => pointer_add(target, path, value()?)?,
            "remove" => {
                pointer_remove(target, path)?;
            }
            "replace" => {
                pointer_remove(target, path)?;
                pointer_add(target, path, value()?)?;
            }
            "move" => {
                let v = pointer_remove(target, from()?)?;
                pointer_add(target, path, v)?;
            }
            "copy" => {
                let v = target
                    .pointer(from()?)
                    .cloned()
                    .ok_or_else(|| format!("operation {i}: \"from\" path does not exist"))?;
                pointer_add(target, path, v)?;
            }
            "test" => {
                if target.pointer(path) != Some(&value()?) {
                    return Err(format!("testing value {path} failed"));
                }
            }
            other => return Err(format!("Unexpected kind: {other}")),
        }
    }
    Ok(())
}

fn unescape(token: &str) -> String {
    token.replace("~1", "/").replace("~0", "~")
}

fn split_pointer(path: &str) -> Result<(String, String), String> {
    if path.is_empty() {
        return Err("the root cannot be the target of this operation".into());
    }
    if !path.starts_with('/') {
        return Err(format!("invalid JSON pointer {path:?}"));
    }
    let idx = path.rfind('/').unwrap_or(0);
    Ok((path[..idx].to_string(), unescape(&path[idx + 1..])))
}

fn pointer_add(target: &mut Value, path: &str, value: Value) -> Result<(), String> {
    let (parent, last) = split_pointer(path)?;
    let container = target
        .pointer_mut(&parent)
        .ok_or_else(|| format!("add operation does not apply: doc is missing path: {path:?}"))?;
    match container {
        Value::Object(m) => {
            m.insert(last, value);
            Ok(())
        }
        Value::Array(a) => {
            if last == "-" {
                a.push(value);
                return Ok(());
            }
            let idx: usize = last
                .parse()
                .map_err(|_| format!("invalid array index {last:?} in {path:?}"))?;
            if idx > a.len() {
                return Err(format!(
                    "add operation does not apply: index {idx} out of bounds in {path:?}"
                ));
            }
            a.insert(idx, value);
            Ok(())
        }
        _ => Err(format!(
            "add operation does not apply: {parent:?} is not a container"
        )),
    }
}

fn pointer_remove(target: &mut Value, path: &str) -> Result<Value, String> {
    let (parent, last) = split_pointer(path)?;
    let container = target
        .pointer_mut(&parent)
        .ok_or_else(|| format!("doc is missing path: {path:?}"))?;
    match container {
        Value::Object(m) => m
            .shift_remove(&last)
            .ok_or_else(|| format!("doc is missing key: {path:?}")),
        Value::Array(a) => {
            let idx: usize = last
                .parse()
                .map_err(|_| format!("invalid array index {last:?} in {path:?}"))?;
            if idx >= a.len() {
                return Err(format!("index {idx} out of bounds in {path:?}"));
            }
            Ok(a.remove(idx))
        }
        _ => Err(format!("doc is missing path: {path:?}")),
    }
}

/// Strategic merge patch with the merge keys of [`list_kind`].
pub(crate) fn strategic_merge(target: &mut Value, patch: &Value) -> Result<(), String> {
    smp_value(target, patch, &mut Vec::new())
}

fn smp_value<'a>(
    target: &mut Value,
    patch: &'a Value,
    path: &mut Vec<&'a str>,
) -> Result<(), String> {
    let Value::Object(p) = patch else {
        *target = patch.clone();
        return Ok(());
    };
    match p.get("$patch").and_then(Value::as_str) {
        Some("replace") => {
            let mut clean = p.clone();
            clean.remove("$patch");
            *target = Value::Object(clean);
            return Ok(());
        }
        Some("delete") => {
            *target = Value::Object(Map::new());
            return Ok(());
        }
        Some("merge") | None => {}
        Some(other) => return Err(format!("unknown patch type: {other}")),
    }
    if !target.is_object() {
        *target = Value::Object(Map::new());
    }
    let Value::Object(t) = target else {
        return Ok(());
    };
    if let Some(Value::Array(retain)) = p.get("$retainKeys") {
        let keep: Vec<&str> = retain.iter().filter_map(Value::as_str).collect();
        t.retain(|k, _| keep.contains(&k.as_str()));
    }
    for (k, v) in p {
        if k == "$patch" || k == "$retainKeys" || k.starts_with("$setElementOrder/") {
            continue;
        }
        if let Some(field) = k.strip_prefix("$deleteFromPrimitiveList/") {
            if let (Some(Value::Array(list)), Value::Array(del)) = (t.get_mut(field), v) {
                list.retain(|x| !del.contains(x));
            }
            continue;
        }
        if v.is_null() {
            t.shift_remove(k);
            continue;
        }
        path.push(k.as_str());
        match v {
            Value::Array(items) => {
                let kind = list_kind(path);
                let cur = t.entry(k.clone()).or_insert(Value::Array(Vec::new()));
                smp_list(cur, items, kind, path)?;
            }
            Value::Object(_) => {
                let cur = t.entry(k.clone()).or_insert(Value::Null);
                smp_value(cur, v, path)?;
            }
            _ => {
                t.insert(k.clone(), v.clone());
            }
        }
        path.pop();
    }
    Ok(())
}

fn smp_list<'a>(
    target: &mut Value,
    items: &'a [Value],
    kind: ListKind,
    path: &mut Vec<&'a str>,
) -> Result<(), String> {
    // A `{"$patch": "replace"}` element replaces the whole list with the other elements.
    if items
        .iter()
        .any(|i| i.get("$patch").and_then(Value::as_str) == Some("replace"))
    {
        *target = Value::Array(
            items
                .iter()
                .filter(|i| i.get("$patch").is_none())
                .cloned()
                .collect(),
        );
        return Ok(());
    }
    if !target.is_array() {
        *target = Value::Array(Vec::new());
    }
    let Value::Array(cur) = target else {
        return Ok(());
    };
    match kind {
        ListKind::Atomic => *cur = items.to_vec(),
        ListKind::Set => {
            for i in items {
                if !cur.contains(i) {
                    cur.push(i.clone());
                }
            }
        }
        ListKind::Map(keys) => {
            for item in items {
                let delete = item.get("$patch").and_then(Value::as_str) == Some("delete");
                let pos = cur.iter().position(|c| same_key(c, item, keys));
                match (pos, delete) {
                    (Some(i), true) => {
                        cur.remove(i);
                    }
                    (None, true) => {}
                    (Some(i), false) => smp_value(&mut cur[i], item, path)?,
                    (None, false) => {
                        let mut fresh = Value::Object(Map::new());
                        smp_value(&mut fresh, item, path)?;
                        cur.push(fresh);
                    }
                }
            }
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Server-side apply.

/// Top-level fields that no manager owns.
const UNMANAGED_META: &[&str] = &[
    "name",
    "namespace",
    "uid",
    "resourceVersion",
    "generation",
    "creationTimestamp",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
    "managedFields",
    "selfLink",
    "generateName",
];

/// The FieldsV1 set of the fields that `obj` specifies.
pub(crate) fn field_set(obj: &Value, skip_status: bool) -> Value {
    let mut out = Map::new();
    if let Value::Object(m) = obj {
        for (k, v) in m {
            if k == "apiVersion" || k == "kind" || (skip_status && k == "status") {
                continue;
            }
            if k == "metadata" {
                let mut meta = Map::new();
                if let Value::Object(mm) = v {
                    for (mk, mv) in mm {
                        if UNMANAGED_META.contains(&mk.as_str()) {
                            continue;
                        }
                        meta.insert(format!("f:{mk}"), fields_of(mv, &mut vec![mk.as_str()]));
                    }
                }
                if !meta.is_empty() {
                    out.insert("f:metadata".into(), Value::Object(meta));
                }
                continue;
            }
            out.insert(format!("f:{k}"), fields_of(v, &mut vec![k.as_str()]));
        }
    }
    Value::Object(out)
}

fn fields_of<'a>(v: &'a Value, path: &mut Vec<&'a str>) -> Value {
    match v {
        Value::Object(m) if !m.is_empty() => {
            let mut out = Map::new();
            for (k, child) in m {
                path.push(k.as_str());
                out.insert(format!("f:{k}"), fields_of(child, path));
                path.pop();
            }
            Value::Object(out)
        }
        Value::Array(items) => match list_kind(path) {
            ListKind::Atomic => json!({}),
            ListKind::Set => {
                let mut out = Map::new();
                for i in items {
                    out.insert(format!("v:{}", i), json!({}));
                }
                Value::Object(out)
            }
            ListKind::Map(keys) => {
                let mut out = Map::new();
                for item in items {
                    let mut elem = match fields_of(item, path) {
                        Value::Object(m) => m,
                        _ => Map::new(),
                    };
                    elem.insert(".".into(), json!({}));
                    out.insert(element_key(item, keys), Value::Object(elem));
                }
                Value::Object(out)
            }
        },
        _ => json!({}),
    }
}

/// Writes `serde_json::to_string(&field_set(obj, skip_status))` without building the tree
/// (creates are the hot path; field sets are many tiny maps).
pub(crate) fn write_field_set(buf: &mut Vec<u8>, obj: &Value, skip_status: bool) {
    fn key(buf: &mut Vec<u8>, prefix: &str, k: &str) {
        let _ = serde_json::to_writer(&mut *buf, &format!("{prefix}{k}"));
        buf.push(b':');
    }
    fn fields<'a>(buf: &mut Vec<u8>, v: &'a Value, path: &mut Vec<&'a str>) {
        match v {
            Value::Object(m) if !m.is_empty() => {
                buf.push(b'{');
                for (i, (k, child)) in m.iter().enumerate() {
                    if i > 0 {
                        buf.push(b',');
                    }
                    key(buf, "f:", k);
                    path.push(k.as_str());
                    fields(buf, child, path);
                    path.pop();
                }
                buf.push(b'}');
            }
            Value::Array(items) => match list_kind(path) {
                ListKind::Atomic => buf.extend_from_slice(b"{}"),
                ListKind::Set => {
                    buf.push(b'{');
                    for (i, item) in items.iter().enumerate() {
                        if i > 0 {
                            buf.push(b',');
                        }
                        key(buf, "v:", &item.to_string());
                        buf.extend_from_slice(b"{}");
                    }
                    buf.push(b'}');
                }
                ListKind::Map(keys) => {
                    buf.push(b'{');
                    for (i, item) in items.iter().enumerate() {
                        if i > 0 {
                            buf.push(b',');
                        }
                        key(buf, "", &element_key(item, keys));
                        let mut inner = Vec::new();
                        fields(&mut inner, item, path);
                        // `fields` wrote `{...}` or `{}`; the element marker goes last inside it.
                        if inner.len() > 2 {
                            inner.pop();
                            inner.extend_from_slice(b",\".\":{}}");
                        } else {
                            inner = b"{\".\":{}}".to_vec();
                        }
                        buf.extend_from_slice(&inner);
                    }
                    buf.push(b'}');
                }
            },
            _ => buf.extend_from_slice(b"{}"),
        }
    }
    buf.push(b'{');
    let mut first = true;
    if let Value::Object(m) = obj {
        for (k, v) in m {
            if k == "apiVersion" || k == "kind" || (skip_status && k == "status") {
                continue;
            }
            if k == "metadata" {
                let Value::Object(mm) = v else { continue };
                let managed: Vec<(&String, &Value)> = mm
                    .iter()
                    .filter(|(mk, _)| !UNMANAGED_META.contains(&mk.as_str()))
                    .collect();
                if managed.is_empty() {
                    continue;
                }
                if !first {
                    buf.push(b',');
                }
                first = false;
                key(buf, "f:", "metadata");
                buf.push(b'{');
                for (i, (mk, mv)) in managed.into_iter().enumerate() {
                    if i > 0 {
                        buf.push(b',');
                    }
                    key(buf, "f:", mk);
                    fields(buf, mv, &mut vec![mk.as_str()]);
                }
                buf.push(b'}');
                continue;
            }
            if !first {
                buf.push(b',');
            }
            first = false;
            key(buf, "f:", k);
            fields(buf, v, &mut vec![k.as_str()]);
        }
    }
    buf.push(b'}');
}

/// `k:{"name":"web"}` for a keyed list element.
fn element_key(item: &Value, keys: &[&str]) -> String {
    let mut k = Map::new();
    for key in keys {
        if let Some(v) = key_value(item, key) {
            k.insert((*key).to_string(), v.clone());
        }
    }
    format!("k:{}", Value::Object(k))
}

/// Every owned path in a FieldsV1 tree; a path ends at a leaf `{}` or at a `.` marker.
pub(crate) fn leaf_paths(set: &Value) -> Vec<Vec<String>> {
    let mut out = Vec::new();
    walk_leaves(set, &mut Vec::new(), &mut out);
    out
}

fn walk_leaves(set: &Value, prefix: &mut Vec<String>, out: &mut Vec<Vec<String>>) {
    let Value::Object(m) = set else {
        return;
    };
    if m.is_empty() {
        if !prefix.is_empty() {
            out.push(prefix.clone());
        }
        return;
    }
    for (k, v) in m {
        prefix.push(k.clone());
        if k == "." {
            out.push(prefix.clone());
        } else {
            walk_leaves(v, prefix, out);
        }
        prefix.pop();
    }
}

/// Whether a FieldsV1 tree contains `path` (or a prefix that is a leaf, meaning the whole subtree).
pub(crate) fn set_contains(set: &Value, path: &[String]) -> bool {
    let mut cur = set;
    for (i, p) in path.iter().enumerate() {
        match cur.get(p) {
            Some(next) => {
                if next.as_object().is_some_and(Map::is_empty) && i + 1 < path.len() && p != "." {
                    return true;
                }
                cur = next;
            }
            None => return false,
        }
    }
    true
}

/// Whether the tree owns anything at or below `path`.
fn set_touches(set: &Value, path: &[String]) -> bool {
    let mut cur = set;
    for p in path {
        match cur.get(p) {
            Some(next) => cur = next,
            None => return false,
        }
    }
    true
}

/// Removes `path` from a FieldsV1 tree, pruning emptied parents.
pub(crate) fn set_remove(set: &mut Value, path: &[String]) {
    fn rec(cur: &mut Value, path: &[String]) -> bool {
        let Some((first, rest)) = path.split_first() else {
            return true;
        };
        let Value::Object(m) = cur else {
            return false;
        };
        if rest.is_empty() {
            m.shift_remove(first);
        } else if let Some(child) = m.get_mut(first) {
            rec(child, rest);
            if child.as_object().is_some_and(Map::is_empty) {
                m.shift_remove(first);
            }
        }
        m.is_empty()
    }
    rec(set, path);
}

/// Resolves a FieldsV1 path step in an object.
fn step<'a>(v: &'a Value, elem: &str) -> Option<&'a Value> {
    if let Some(f) = elem.strip_prefix("f:") {
        return v.get(f);
    }
    let arr = v.as_array()?;
    if let Some(k) = elem.strip_prefix("k:") {
        let key: Map<String, Value> = serde_json::from_str(k).ok()?;
        return arr
            .iter()
            .find(|item| key.iter().all(|(kk, kv)| key_value(item, kk) == Some(kv)));
    }
    if let Some(val) = elem.strip_prefix("v:") {
        let val: Value = serde_json::from_str(val).ok()?;
        return arr.iter().find(|item| **item == val);
    }
    None
}

/// The value at a FieldsV1 path (`.` resolves to the element itself).
pub(crate) fn value_at<'a>(obj: &'a Value, path: &[String]) -> Option<&'a Value> {
    let mut cur = obj;
    for p in path {
        if p == "." {
            continue;
        }
        cur = step(cur, p)?;
    }
    Some(cur)
}

/// Removes the value at a FieldsV1 path; a trailing `.` removes the list element.
fn remove_at(obj: &mut Value, path: &[String]) {
    let path: Vec<&String> = path.iter().filter(|p| *p != ".").collect();
    let Some((last, parents)) = path.split_last() else {
        return;
    };
    let mut cur = obj;
    for p in parents {
        let next = if let Some(f) = p.strip_prefix("f:") {
            cur.get_mut(f)
        } else {
            let idx = locate(cur, p);
            match (idx, cur.as_array_mut()) {
                (Some(i), Some(a)) => a.get_mut(i),
                _ => None,
            }
        };
        match next {
            Some(n) => cur = n,
            None => return,
        }
    }
    if let Some(f) = last.strip_prefix("f:") {
        if let Value::Object(m) = cur {
            m.shift_remove(f);
        }
    } else if let Some(i) = locate(cur, last)
        && let Some(a) = cur.as_array_mut()
    {
        a.remove(i);
    }
}

fn locate(arr: &Value, elem: &str) -> Option<usize> {
    let a = arr.as_array()?;
    let target = step(arr, elem)?;
    a.iter().position(|x| std::ptr::eq(x, target))
}

/// Deep merge of an applied configuration into the live object (keyed lists merged, atomic replaced).
fn apply_merge<'a>(live: &mut Value, config: &'a Value, path: &mut Vec<&'a str>) {
    match (live, config) {
        (Value::Object(l), Value::Object(c)) => {
            for (k, v) in c {
                path.push(k.as_str());
                match l.get_mut(k) {
                    Some(existing) => apply_merge(existing, v, path),
                    None => {
                        l.insert(k.clone(), v.clone());
                    }
                }
                path.pop();
            }
        }
        (Value::Array(l), Value::Array(c)) => match list_kind(path) {
            ListKind::Atomic => *l = c.clone(),
            ListKind::Set => {
                for i in c {
                    if !l.contains(i) {
                        l.push(i.clone());
                    }
                }
            }
            ListKind::Map(keys) => {
                for item in c {
                    match l.iter().position(|x| same_key(x, item, keys)) {
                        Some(i) => apply_merge(&mut l[i], item, path),
                        None => l.push(item.clone()),
                    }
                }
            }
        },
        (l, c) => *l = c.clone(),
    }
}

/// One entry of `metadata.managedFields`.
#[derive(Debug, Clone)]
pub(crate) struct ManagedEntry {
    pub manager: String,
    pub operation: String,
    pub api_version: String,
    pub subresource: String,
    pub time: String,
    pub fields: Value,
}

pub(crate) fn read_managed(obj: &Value) -> Vec<ManagedEntry> {
    crate::util::managed_fields(obj)
        .as_ref()
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .map(|e| {
                    let s = |k: &str| e.get(k).and_then(Value::as_str).unwrap_or("").to_string();
                    ManagedEntry {
                        manager: s("manager"),
                        operation: s("operation"),
                        api_version: s("apiVersion"),
                        subresource: s("subresource"),
                        time: s("time"),
                        fields: e.get("fieldsV1").cloned().unwrap_or_else(|| json!({})),
                    }
                })
                .collect()
        })
        .unwrap_or_default()
}

pub(crate) fn write_managed(obj: &mut Value, entries: &[ManagedEntry]) {
    let list: Vec<Value> = entries
        .iter()
        .filter(|e| e.fields.as_object().is_some_and(|m| !m.is_empty()))
        .map(|e| {
            let mut v = json!({
                "manager": e.manager,
                "operation": e.operation,
                "apiVersion": e.api_version,
                "time": e.time,
                "fieldsType": "FieldsV1",
                "fieldsV1": e.fields,
            });
            if !e.subresource.is_empty() {
                v["subresource"] = json!(e.subresource);
            }
            v
        })
        .collect();
    let meta = crate::util::meta_mut(obj);
    if list.is_empty() {
        meta.shift_remove("managedFields");
    } else {
        meta.insert("managedFields".into(), Value::Array(list));
    }
}

/// A field another manager owns with a different value.
#[derive(Debug, Clone)]
pub(crate) struct FieldConflict {
    pub manager: String,
    pub api_version: String,
    pub field: String,
}

/// Renders a FieldsV1 path as upstream's conflict message does (`.spec.replicas`).
pub(crate) fn path_string(path: &[String]) -> String {
    let mut s = String::new();
    for p in path {
        if let Some(f) = p.strip_prefix("f:") {
            s.push('.');
            s.push_str(f);
        } else if let Some(k) = p.strip_prefix("k:") {
            s.push('[');
            s.push_str(k);
            s.push(']');
        } else if let Some(v) = p.strip_prefix("v:") {
            s.push_str(&format!("[={v}]"));
        }
    }
    s
}

/// Server-side apply of `config` by `manager` onto `live` (`None` when creating).
///
/// Returns the new object (managedFields updated) or the conflicts that block it without `force`.
pub(crate) fn server_side_apply(
    live: Option<&Value>,
    config: &Value,
    manager: &str,
    api_version: &str,
    subresource: &str,
    force: bool,
    now: &str,
) -> Result<Value, Vec<FieldConflict>> {
    let on_status = subresource == "status";
    let new_set = if on_status {
        field_set(
            &json!({"status": config.get("status").cloned().unwrap_or(json!({}))}),
            false,
        )
    } else {
        field_set(config, false)
    };
    let mut entries = live.map(read_managed).unwrap_or_default();
    let mut obj = live.cloned().unwrap_or_else(|| json!({}));

    // Conflicts: leaves of the new config owned by someone else with a different value.
    let mut conflicts = Vec::new();
    for path in leaf_paths(&new_set) {
        let wanted = value_at(config, &path);
        let current = value_at(&obj, &path);
        if current.is_none() || current == wanted || path.last().is_some_and(|p| p == ".") {
            continue;
        }
        for e in entries.iter() {
            if e.manager == manager && e.operation == "Apply" {
                continue;
            }
            if set_contains(&e.fields, &path) {
                conflicts.push((e.manager.clone(), e.api_version.clone(), path.clone()));
            }
        }
    }
    if !conflicts.is_empty() && !force {
        return Err(conflicts
            .into_iter()
            .map(|(manager, api_version, path)| FieldConflict {
                manager,
                api_version,
                field: path_string(&path),
            })
            .collect());
    }
    // With force (or no conflicts), others lose ownership of the fields this apply sets.
    for (m, _, path) in &conflicts {
        for e in entries.iter_mut().filter(|e| &e.manager == m) {
            set_remove(&mut e.fields, path);
        }
    }

    // Fields this manager applied before but not now are removed unless someone else owns them.
    let previous = entries
        .iter()
        .find(|e| e.manager == manager && e.operation == "Apply" && e.subresource == subresource)
        .map(|e| e.fields.clone());
    if let Some(prev) = previous {
        let dropped: Vec<Vec<String>> = leaf_paths(&prev)
            .into_iter()
            .filter(|p| !set_contains(&new_set, p))
            .filter(|path| {
                !entries.iter().any(|e| {
                    !(e.manager == manager
                        && e.operation == "Apply"
                        && e.subresource == subresource)
                        && if path.last().is_some_and(|p| p == ".") {
                            set_touches(&e.fields, &path[..path.len() - 1])
                        } else {
                            set_contains(&e.fields, path)
                        }
                })
            })
            .collect();
        // Whole list elements go first (shallowest first, while their keys still identify them),
        // then the remaining fields outside those elements.
        let mut elements: Vec<&Vec<String>> = dropped
            .iter()
            .filter(|p| p.last().is_some_and(|x| x == "."))
            .collect();
        elements.sort_by_key(|p| p.len());
        for path in &elements {
            remove_at(&mut obj, path);
        }
        let inside_removed = |p: &Vec<String>| {
            elements
                .iter()
                .any(|e| p.len() >= e.len() - 1 && p[..e.len() - 1] == e[..e.len() - 1])
        };
        for path in dropped
            .iter()
            .filter(|p| p.last().is_some_and(|x| x != ".") && !inside_removed(p))
        {
            remove_at(&mut obj, path);
        }
    }

    let mut cfg = config.clone();
    if let Value::Object(m) = &mut cfg {
        if let Some(Value::Object(meta)) = m.get_mut("metadata") {
            meta.shift_remove("managedFields");
            meta.shift_remove("resourceVersion");
        }
        if on_status {
            m.retain(|k, _| k == "status" || k == "apiVersion" || k == "kind");
        }
    }
    apply_merge(&mut obj, &cfg, &mut Vec::new());

    match entries
        .iter_mut()
        .find(|e| e.manager == manager && e.operation == "Apply" && e.subresource == subresource)
    {
        Some(e) => {
            e.fields = new_set;
            e.time = now.to_string();
            e.api_version = api_version.to_string();
        }
        None => entries.push(ManagedEntry {
            manager: manager.to_string(),
            operation: "Apply".into(),
            api_version: api_version.to_string(),
            subresource: subresource.to_string(),
            time: now.to_string(),
            fields: new_set,
        }),
    }
    write_managed(&mut obj, &entries);
    Ok(obj)
}

/// Records an Update operation: the fields that changed from `old` to `new` become `manager`'s.
pub(crate) fn track_update(
    old: Option<&Value>,
    new: &mut Value,
    manager: &str,
    api_version: &str,
    subresource: &str,
    now: &str,
) {
    let on_status = subresource == "status";
    // Status writes only touch status: compare just that subtree.
    let scope = |v: &Value| -> Value {
        if on_status {
            json!({"status": v.get("status").cloned().unwrap_or(Value::Null)})
        } else {
            v.clone()
        }
    };
    let Some(o) = old else {
        // A create: the creator owns every field it set. Written straight to the compact form.
        let mut set = Vec::with_capacity(1024);
        if on_status {
            write_field_set(&mut set, &scope(new), false);
        } else {
            write_field_set(&mut set, new, true);
        }
        let meta = crate::util::meta_mut(new);
        if set == b"{}" {
            meta.shift_remove("managedFields");
            return;
        }
        let mut buf = Vec::with_capacity(set.len() + 200);
        buf.extend_from_slice(b"[{\"manager\":");
        let _ = serde_json::to_writer(&mut buf, manager);
        buf.extend_from_slice(b",\"operation\":\"Update\",\"apiVersion\":");
        let _ = serde_json::to_writer(&mut buf, api_version);
        buf.extend_from_slice(b",\"time\":");
        let _ = serde_json::to_writer(&mut buf, now);
        buf.extend_from_slice(b",\"fieldsType\":\"FieldsV1\",\"fieldsV1\":");
        buf.extend_from_slice(&set);
        if !subresource.is_empty() {
            buf.extend_from_slice(b",\"subresource\":");
            let _ = serde_json::to_writer(&mut buf, subresource);
        }
        buf.extend_from_slice(b"}]");
        meta.insert(
            "managedFields".into(),
            Value::String(String::from_utf8_lossy(&buf).into_owned()),
        );
        return;
    };
    let mut entries = read_managed(o);
    let (old_scoped, new_scoped) = if on_status {
        (scope(o), scope(new))
    } else {
        (Value::Null, Value::Null)
    };
    let (o_view, n_view): (&Value, &Value) = if on_status {
        (&old_scoped, &new_scoped)
    } else {
        (o, &*new)
    };
    let new_fields = field_set(n_view, !on_status);
    let changed: Vec<Vec<String>> = leaf_paths(&new_fields)
        .into_iter()
        .filter(|p| {
            value_at(o_view, p) != value_at(n_view, p)
                || p.last().is_some_and(|x| x == ".") && value_at(o_view, p).is_none()
        })
        .collect();
    // Fields that disappeared are owned by nobody any more.
    let old_fields = field_set(o_view, false);
    for p in leaf_paths(&old_fields) {
        if value_at(n_view, &p).is_none() {
            for e in entries.iter_mut() {
                set_remove(&mut e.fields, &p);
            }
        }
    }
    if changed.is_empty() {
        write_managed(new, &entries);
        return;
    }
    for e in entries.iter_mut() {
        if e.manager == manager && e.operation == "Update" && e.subresource == subresource {
            continue;
        }
        for p in &changed {
            set_remove(&mut e.fields, p);
        }
    }
    let idx = match entries.iter().position(|e| {
        e.manager == manager && e.operation == "Update" && e.subresource == subresource
    }) {
        Some(i) => i,
        None => {
            entries.push(ManagedEntry {
                manager: manager.to_string(),
                operation: "Update".into(),
                api_version: api_version.to_string(),
                subresource: subresource.to_string(),
                time: now.to_string(),
                fields: json!({}),
            });
            entries.len() - 1
        }
    };
    let e = &mut entries[idx];
    e.time = now.to_string();
    for p in changed {
        insert_path(&mut e.fields, &p);
    }
    write_managed(new, &entries);
}

fn insert_path(set: &mut Value, path: &[String]) {
    let mut cur = set;
    for p in path {
        if !cur.is_object() {
            *cur = json!({});
        }
        let Value::Object(m) = cur else {
            return;
        };
        cur = m.entry(p.clone()).or_insert_with(|| json!({}));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merge_patch_rfc7386() {
        let mut t = json!({"a": "b", "c": {"d": "e", "f": "g"}});
        merge_patch(&mut t, &json!({"a": "z", "c": {"f": null}}));
        assert_eq!(t, json!({"a": "z", "c": {"d": "e"}}));
    }

    #[test]
    fn json_patch_rfc6902() {
        let mut t = json!({"metadata": {"labels": {"a": "1"}}, "list": [1, 2]});
        json_patch(
            &mut t,
            &json!([
                {"op": "add", "path": "/metadata/labels/b~1c", "value": "2"},
                {"op": "remove", "path": "/metadata/labels/a"},
                {"op": "add", "path": "/list/-", "value": 3},
                {"op": "replace", "path": "/list/0", "value": 0},
                {"op": "test", "path": "/list/2", "value": 3},
                {"op": "copy", "from": "/list", "path": "/copy"},
                {"op": "move", "from": "/copy", "path": "/moved"}
            ]),
        )
        .unwrap();
        assert_eq!(
            t,
            json!({"metadata": {"labels": {"b/c": "2"}}, "list": [0, 2, 3], "moved": [0, 2, 3]})
        );
        assert!(json_patch(&mut t, &json!([{"op": "remove", "path": "/nope"}])).is_err());
        assert!(json_patch(&mut t, &json!({"op": "x"})).is_err());
    }

    #[test]
    fn strategic_merge_keys_containers() {
        let mut pod = json!({"spec": {"containers": [
            {"name": "a", "image": "x:1", "ports": [{"containerPort": 80}]},
            {"name": "b", "image": "y:1"}
        ], "tolerations": [{"key": "k"}]}});
        strategic_merge(
            &mut pod,
            &json!({"metadata": {"labels": {"new": "1"}}, "spec": {
                "$setElementOrder/containers": [{"name": "a"}, {"name": "b"}],
                "containers": [{"name": "b", "image": "y:2"}, {"name": "a", "$patch": "delete"}],
                "tolerations": [{"key": "j"}]}}),
        )
        .unwrap();
        assert_eq!(
            pod["spec"]["containers"],
            json!([{"name": "b", "image": "y:2"}])
        );
        assert_eq!(pod["spec"]["tolerations"], json!([{"key": "j"}]));
        assert_eq!(pod["metadata"]["labels"]["new"], "1");
    }

    #[test]
    fn apply_removes_fields_dropped_from_config() {
        let now = "2026-01-01T00:00:00Z";
        let c1 = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c", "labels": {"a": "1", "b": "2"}}, "data": {"x": "1"}});
        let o1 = server_side_apply(None, &c1, "m1", "v1", "", false, now).unwrap();
        let c2 = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c", "labels": {"a": "1"}}, "data": {"x": "2"}});
        let o2 = server_side_apply(Some(&o1), &c2, "m1", "v1", "", false, now).unwrap();
        assert_eq!(o2["metadata"]["labels"], json!({"a": "1"}));
        assert_eq!(o2["data"]["x"], "2");
        // Another manager changing x conflicts, unless forced.
        let c3 = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}, "data": {"x": "3"}});
        let err = server_side_apply(Some(&o2), &c3, "m2", "v1", "", false, now).unwrap_err();
        assert_eq!(err[0].field, ".data.x");
        assert_eq!(err[0].manager, "m1");
        let o3 = server_side_apply(Some(&o2), &c3, "m2", "v1", "", true, now).unwrap();
        assert_eq!(o3["data"]["x"], "3");
        // m1 no longer owns x, so re-applying without it keeps m2's value.
        let c4 = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c", "labels": {"a": "1"}}});
        let o4 = server_side_apply(Some(&o3), &c4, "m1", "v1", "", false, now).unwrap();
        assert_eq!(o4["data"]["x"], "3");
    }

    #[test]
    fn apply_merges_keyed_lists_and_drops_elements() {
        let now = "t";
        let c1 = json!({"spec": {"containers": [{"name": "a", "image": "1"}, {"name": "b", "image": "1"}]}});
        let o1 = server_side_apply(None, &c1, "m", "v1", "", false, now).unwrap();
        let c2 = json!({"spec": {"containers": [{"name": "a", "image": "2"}]}});
        let o2 = server_side_apply(Some(&o1), &c2, "m", "v1", "", false, now).unwrap();
        assert_eq!(
            o2["spec"]["containers"],
            json!([{"name": "a", "image": "2"}])
        );
    }

    #[test]
    fn direct_field_set_matches_the_tree() {
        for obj in [
            json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "labels": {"a": "1"}, "finalizers": ["x", "y"]},
                "spec": {"containers": [{"name": "c", "image": "i", "ports": [{"containerPort": 80}, {"containerPort": 53, "protocol": "UDP"}]}, "scalar"],
                    "tolerations": [{"key": "k"}], "empty": {}}, "status": {"phase": "Pending"}}),
            json!({"metadata": {"name": "only"}}),
            json!({"data": {"we\"ird": "x"}, "list": []}),
        ] {
            for skip in [true, false] {
                let mut buf = Vec::new();
                write_field_set(&mut buf, &obj, skip);
                let direct: Value = serde_json::from_slice(&buf).unwrap();
                assert_eq!(direct, field_set(&obj, skip), "{obj}");
            }
        }
    }

    #[test]
    fn update_tracking_takes_ownership() {
        let now = "t";
        let o1 = server_side_apply(
            None,
            &json!({"data": {"x": "1"}}),
            "applier",
            "v1",
            "",
            false,
            now,
        )
        .unwrap();
        let mut o2 = o1.clone();
        o2["data"]["x"] = json!("9");
        track_update(Some(&o1), &mut o2, "editor", "v1", "", now);
        let managed = read_managed(&o2);
        assert_eq!(managed.len(), 1, "{managed:?}");
        assert_eq!(managed[0].manager, "editor");
    }
}
