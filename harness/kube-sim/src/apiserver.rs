//! REST semantics over the store: create, get, list, update, patch (all flavours), delete,
//! subresources (status, binding), access reviews and CRD registration.

use std::sync::{Arc, RwLock};

use serde_json::{Value, json};

use crate::admission::{self, Policy};
use crate::auth::{self, Attributes, UserInfo};
use crate::exec::ExecHandler;
use crate::patch;
use crate::registry::{GroupResource, Registry, ResourceType, Special};
use crate::selector::{FieldSelector, LabelSelector};
use crate::status::{ApiError, Cause, qualified};
use crate::store::{Store, Txn};
use crate::util::{self, dotted, meta_str};

/// Everything the handlers and controllers share.
pub(crate) struct Shared {
    pub config: crate::Config,
    pub policy: Policy,
    pub store: Store,
    pub registry: RwLock<Registry>,
    pub exec: RwLock<Arc<dyn ExecHandler>>,
    pub controllers_started: std::sync::atomic::AtomicBool,
}

/// Per-request write options.
#[derive(Debug, Clone, Default)]
pub(crate) struct WriteOptions {
    pub dry_run: bool,
    pub field_manager: String,
    pub force: bool,
    pub subresource: String,
    pub user: UserInfo,
    /// `fieldValidation=Strict`: unknown or mistyped fields are a 400.
    pub strict: bool,
}

/// The PATCH flavours.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PatchType {
    Json,
    Merge,
    Strategic,
    Apply,
}

impl PatchType {
    pub fn from_content_type(ct: &str) -> Option<Self> {
        let base = ct.split(';').next().unwrap_or("").trim();
        match base {
            "application/json-patch+json" => Some(PatchType::Json),
            "application/merge-patch+json" => Some(PatchType::Merge),
            "application/strategic-merge-patch+json" => Some(PatchType::Strategic),
            "application/apply-patch+yaml"
            | "application/apply-patch+json"
            | "application/apply-patch+cbor" => Some(PatchType::Apply),
            _ => None,
        }
    }
}

/// The outcome of applying update rules, before it is stored.
enum Built {
    Unchanged,
    Put(Value),
    /// Deletion completes (the last finalizer went away).
    Remove(Value),
}

/// Result of a list.
pub(crate) struct ListResult {
    pub items: Vec<Arc<Value>>,
    pub revision: u64,
    pub continue_token: Option<String>,
    pub remaining: Option<usize>,
}

fn lock_read<T>(l: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    l.read().unwrap_or_else(|p| p.into_inner())
}

fn lock_write<T>(l: &RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    l.write().unwrap_or_else(|p| p.into_inner())
}

/// Fields besides metadata and status changed (drives `metadata.generation`).
fn spec_changed(old: &Value, new: &Value) -> bool {
    let skip = |k: &str| matches!(k, "metadata" | "status" | "apiVersion" | "kind");
    match (old, new) {
        (Value::Object(a), Value::Object(b)) => {
            let a_keys = a.iter().filter(|(k, _)| !skip(k));
            let b_count = b.keys().filter(|k| !skip(k)).count();
            let mut a_count = 0;
            for (k, v) in a_keys {
                a_count += 1;
                if b.get(k) != Some(v) {
                    return true;
                }
            }
            a_count != b_count
        }
        _ => old != new,
    }
}

/// Equal apart from resourceVersion and managedFields timestamps (compared without copying).
fn same_object(a: &Value, b: &Value) -> bool {
    let (Value::Object(am), Value::Object(bm)) = (a, b) else {
        return a == b;
    };
    if am.len() != bm.len() {
        return false;
    }
    for (k, av) in am {
        let Some(bv) = bm.get(k) else {
            return false;
        };
        if k != "metadata" {
            if av != bv {
                return false;
            }
            continue;
        }
        let (Value::Object(ameta), Value::Object(bmeta)) = (av, bv) else {
            if av != bv {
                return false;
            }
            continue;
        };
        let keys = |m: &serde_json::Map<String, Value>| {
            m.keys().filter(|k| *k != "resourceVersion").count()
        };
        if keys(ameta) != keys(bmeta) {
            return false;
        }
        for (mk, mv) in ameta {
            if mk == "resourceVersion" {
                continue;
            }
            let Some(other) = bmeta.get(mk) else {
                return false;
            };
            if mk == "managedFields" {
                if mv == other {
                    continue;
                }
                let (Some(xs), Some(ys)) = (
                    crate::util::managed_fields(a),
                    crate::util::managed_fields(b),
                ) else {
                    return false;
                };
                let (Some(x), Some(y)) = (xs.as_array(), ys.as_array()) else {
                    if xs != ys {
                        return false;
                    }
                    continue;
                };
                if x.len() != y.len() {
                    return false;
                }
                for (ex, ey) in x.iter().zip(y) {
                    let (Some(ex), Some(ey)) = (ex.as_object(), ey.as_object()) else {
                        return false;
                    };
                    if ex.len() != ey.len()
                        || ex.iter().any(|(f, v)| f != "time" && ey.get(f) != Some(v))
                    {
                        return false;
                    }
                }
            } else if mv != other {
                return false;
            }
        }
    }
    true
}

fn has_finalizers(obj: &Value) -> bool {
    obj.get("metadata")
        .and_then(|m| m.get("finalizers"))
        .and_then(Value::as_array)
        .is_some_and(|a| !a.is_empty())
}

fn namespace_spec_finalizers(obj: &Value) -> bool {
    dotted(obj, "spec.finalizers")
        .and_then(Value::as_array)
        .is_some_and(|a| !a.is_empty())
}

/// Encodes a continue token: the revision of the first page and the last key returned.
fn encode_continue(rev: u64, ns: &str, name: &str) -> String {
    use base64::Engine;
    let raw = json!({"rv": rev, "ns": ns, "name": name}).to_string();
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(raw)
}

fn decode_continue(token: &str) -> Result<(u64, String, String), ApiError> {
    use base64::Engine;
    let bad = || ApiError::bad_request(format!("continue key is not valid: {token:?}"));
    let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(token.trim_end_matches('='))
        .map_err(|_| bad())?;
    let v: Value = serde_json::from_slice(&raw).map_err(|_| bad())?;
    Ok((
        v.get("rv").and_then(Value::as_u64).ok_or_else(bad)?,
        v.get("ns")
            .and_then(Value::as_str)
            .ok_or_else(bad)?
            .to_string(),
        v.get("name")
            .and_then(Value::as_str)
            .ok_or_else(bad)?
            .to_string(),
    ))
}

impl Shared {
    pub fn registry(&self) -> Registry {
        lock_read(&self.registry).clone()
    }

    pub fn lookup(&self, group: &str, version: &str, plural: &str) -> Option<Arc<ResourceType>> {
        lock_read(&self.registry).lookup(group, version, plural)
    }

    pub fn type_of(&self, gr: &GroupResource) -> Option<Arc<ResourceType>> {
        lock_read(&self.registry).by_group_resource(gr)
    }

    pub fn exec_handler(&self) -> Arc<dyn ExecHandler> {
        lock_read(&self.exec).clone()
    }

    pub fn set_exec_handler(&self, h: Arc<dyn ExecHandler>) {
        *lock_write(&self.exec) = h;
    }

    /// The object as the client's requested version presents it.
    pub fn present(rt: &ResourceType, version: &str, obj: &Arc<Value>) -> Arc<Value> {
        let want = rt.api_version(version);
        if obj.get("apiVersion").and_then(Value::as_str) == Some(want.as_str()) {
            return obj.clone();
        }
        let mut o = (**obj).clone();
        if let Value::Object(m) = &mut o {
            m.insert("apiVersion".into(), Value::String(want));
            if !m.contains_key("kind") {
                m.insert("kind".into(), Value::String(rt.kind.clone()));
            }
        }
        Arc::new(o)
    }

    /// Checks the body's apiVersion/kind/namespace/name against the request and fills them in.
    fn normalize_body(
        rt: &ResourceType,
        version: &str,
        ns: &str,
        url_name: Option<&str>,
        body: &mut Value,
    ) -> Result<(), ApiError> {
        if !body.is_object() {
            return Err(ApiError::bad_request(format!(
                "the body of the request must be a JSON object describing a {}",
                rt.kind
            )));
        }
        let want_av = rt.api_version(version);
        if let Some(kind) = body.get("kind").and_then(Value::as_str)
            && !kind.is_empty()
            && kind != rt.kind
        {
            return Err(ApiError::bad_request(format!(
                "the kind in the data ({kind}) does not match the expected kind ({}) for {}",
                rt.kind,
                qualified(&rt.group, &rt.plural)
            )));
        }
        if let Some(av) = body.get("apiVersion").and_then(Value::as_str)
            && !av.is_empty()
            && av != want_av
            && !rt.versions.iter().any(|v| rt.api_version(v) == av)
        {
            return Err(ApiError::bad_request(format!(
                "the API version in the data ({av}) does not match the expected API version ({want_av})"
            )));
        }
        if let Value::Object(m) = body {
            m.insert(
                "apiVersion".into(),
                Value::String(rt.api_version(rt.storage_version())),
            );
            m.insert("kind".into(), Value::String(rt.kind.clone()));
        }
        let meta = util::meta_mut(body);
        if rt.namespaced {
            match meta.get("namespace").and_then(Value::as_str) {
                Some(n) if !n.is_empty() && n != ns => {
                    return Err(ApiError::bad_request(
                        "the namespace of the provided object does not match the namespace sent on the request",
                    ));
                }
                _ => {
                    meta.insert("namespace".into(), Value::String(ns.to_string()));
                }
            }
        } else {
            meta.shift_remove("namespace");
        }
        if let Some(url_name) = url_name {
            match meta.get("name").and_then(Value::as_str) {
                Some(n) if !n.is_empty() && n != url_name => {
                    return Err(ApiError::bad_request(format!(
                        "the name of the object ({n}) does not match the name on the URL ({url_name})"
                    )));
                }
                _ => {
                    meta.insert("name".into(), Value::String(url_name.to_string()));
                }
            }
        }
        Ok(())
    }

    fn check_namespace(&self, txn: &Txn<'_>, rt: &ResourceType, ns: &str) -> Result<(), ApiError> {
        if !rt.namespaced {
            return Ok(());
        }
        match txn.get(&GroupResource::new("", "namespaces"), "", ns) {
            None => Err(ApiError::not_found("", "namespaces", ns)),
            Some(n) if meta_str(&n, "deletionTimestamp").is_some() => {
                Err(ApiError::forbidden(format!(
                    "{} is forbidden: unable to create new content in namespace {ns} because it is being terminated",
                    qualified(&rt.group, &rt.plural)
                )))
            }
            Some(_) => Ok(()),
        }
    }

    /// POST to a collection.
    pub fn create(
        &self,
        rt: &Arc<ResourceType>,
        version: &str,
        ns: &str,
        mut body: Value,
        opts: &WriteOptions,
    ) -> Result<Arc<Value>, ApiError> {
        match rt.special {
            Special::Review => return self.review(rt, ns, body, &opts.user),
            Special::Binding => {
                let name = meta_str(&body, "name").unwrap_or("").to_string();
                return self.bind(ns, &name, &body, opts);
            }
            _ => {}
        }
        Self::normalize_body(rt, version, ns, None, &mut body)?;
        if opts.strict {
            crate::typed::check_strict(rt, version, &body)?;
        }
        {
            let meta = util::meta_mut(&mut body);
            let name = meta.get("name").and_then(Value::as_str).unwrap_or("");
            if name.is_empty()
                && let Some(prefix) = meta
                    .get("generateName")
                    .and_then(Value::as_str)
                    .filter(|p| !p.is_empty())
            {
                let generated = format!("{prefix}{}", util::random_suffix(5));
                meta.insert("name".into(), Value::String(generated));
            }
        }
        let manager = opts.field_manager.clone();
        let created = self.store.write(opts.dry_run, |txn| {
            let mut obj = body;
            self.check_namespace(txn, rt, ns)?;
            self.create_in_txn(txn, rt, ns, &mut obj, &manager, true)?;
            let name = meta_str(&obj, "name").unwrap_or("").to_string();
            Ok::<_, ApiError>(txn.put(&rt.group_resource(), ns, &name, obj))
        })?;
        if rt.special == Special::Crd && !opts.dry_run {
            self.register_crd(&created);
        }
        Ok(Self::present(rt, version, &created))
    }

    /// Fills server-owned metadata, defaults, validates; `track` records managedFields for an Update.
    fn create_in_txn(
        &self,
        txn: &mut Txn<'_>,
        rt: &ResourceType,
        ns: &str,
        obj: &mut Value,
        manager: &str,
        track: bool,
    ) -> Result<(), ApiError> {
        let name = meta_str(obj, "name").unwrap_or("").to_string();
        if !name.is_empty() && txn.get(&rt.group_resource(), ns, &name).is_some() {
            return Err(ApiError::already_exists(&rt.group, &rt.plural, &name));
        }
        // Status of kinds with a status subresource is not settable on create (nodes excepted).
        if rt.has_status_subresource()
            && !matches!(rt.special, Special::Node | Special::Crd)
            && let Value::Object(m) = obj
        {
            m.shift_remove("status");
        }
        {
            let meta = util::meta_mut(obj);
            meta.insert("uid".into(), Value::String(util::new_uid()));
            meta.insert(
                "creationTimestamp".into(),
                Value::String(util::now_rfc3339()),
            );
            meta.insert("generation".into(), json!(1));
            for k in [
                "resourceVersion",
                "deletionTimestamp",
                "deletionGracePeriodSeconds",
                "selfLink",
            ] {
                meta.shift_remove(k);
            }
        }
        admission::prepare_create(rt, obj, txn, &self.policy)?;
        if rt.special == Special::Crd {
            self.prepare_crd(rt, obj)?;
        }
        if track {
            if let Some(Value::Object(m)) = obj.get_mut("metadata") {
                m.shift_remove("managedFields");
            }
            patch::track_update(
                None,
                obj,
                manager,
                &rt.api_version(rt.storage_version()),
                "",
                &util::now_rfc3339(),
            );
        }
        Ok(())
    }

    fn prepare_crd(&self, rt: &ResourceType, obj: &mut Value) -> Result<(), ApiError> {
        let t = crate::registry::type_from_crd(obj).map_err(|causes| {
            ApiError::invalid(
                &rt.group,
                &rt.kind,
                meta_str(obj, "name").unwrap_or(""),
                causes,
            )
        })?;
        if let Some(existing) = lock_read(&self.registry).by_group_resource(&t.group_resource())
            && !existing.from_crd
        {
            return Err(ApiError::invalid(
                &rt.group,
                &rt.kind,
                meta_str(obj, "name").unwrap_or(""),
                vec![Cause::invalid(
                    "spec.group",
                    &t.group,
                    "is a built-in group/resource and cannot be redefined by a CustomResourceDefinition",
                )],
            ));
        }
        let names = obj
            .get("spec")
            .and_then(|s| s.get("names"))
            .cloned()
            .unwrap_or(json!({}));
        let mut accepted = names;
        if let Value::Object(m) = &mut accepted {
            m.entry("singular").or_insert(json!(t.singular));
            m.entry("listKind")
                .or_insert(json!(format!("{}List", t.kind)));
        }
        let now = util::now_rfc3339();
        let cond = |ty: &str, reason: &str, msg: &str| json!({"type": ty, "status": "True", "lastTransitionTime": now, "reason": reason, "message": msg});
        if let Value::Object(m) = obj {
            m.insert(
                "status".into(),
                json!({
                    "acceptedNames": accepted,
                    "conditions": [
                        cond("NamesAccepted", "NoConflicts", "no conflicts found"),
                        cond("Established", "InitialNamesAccepted", "the initial names have been accepted"),
                    ],
                    "storedVersions": [t.storage_version()],
                }),
            );
        }
        Ok(())
    }

    fn register_crd(&self, crd: &Value) {
        if let Ok(t) = crate::registry::type_from_crd(crd) {
            lock_write(&self.registry).upsert(t);
        }
    }

    /// GET one object.
    pub fn get(
        &self,
        rt: &Arc<ResourceType>,
        version: &str,
        ns: &str,
        name: &str,
    ) -> Result<Arc<Value>, ApiError> {
        self.store
            .get(&rt.group_resource(), ns, name)
            .map(|o| Self::present(rt, version, &o))
            .ok_or_else(|| ApiError::not_found(&rt.group, &rt.plural, name))
    }

    /// GET a collection, filtered and paginated.
    #[allow(clippy::too_many_arguments)]
    pub fn list(
        &self,
        rt: &Arc<ResourceType>,
        version: &str,
        ns: Option<&str>,
        labels: &LabelSelector,
        fields: &FieldSelector,
        limit: Option<usize>,
        continue_token: Option<&str>,
    ) -> Result<ListResult, ApiError> {
        let gr = rt.group_resource();
        let (all, rev) = match fields.pinned_name() {
            Some(name) if rt.namespaced && ns.is_some() => {
                let state = self.store.lock();
                let obj = state
                    .objects
                    .get(&gr)
                    .and_then(|m| m.get(&(ns.unwrap_or("").to_string(), name.to_string())))
                    .cloned();
                (obj.into_iter().collect(), state.revision)
            }
            _ => self.store.list(&gr, ns),
        };
        let (start_after, list_rev) = match continue_token.filter(|t| !t.is_empty()) {
            Some(t) => {
                let (rv, sns, sname) = decode_continue(t)?;
                if rv < self.store.compacted_revision() {
                    return Err(ApiError::gone(
                        "The provided continue parameter is too old to display a consistent list result. You can start a new list without the continue parameter.",
                    ));
                }
                (Some((sns, sname)), rv)
            }
            None => (None, rev),
        };
        let mut items: Vec<Arc<Value>> = all
            .into_iter()
            .filter(|o| {
                start_after.as_ref().is_none_or(|(sns, sname)| {
                    let key = (
                        meta_str(o, "namespace").unwrap_or("").to_string(),
                        meta_str(o, "name").unwrap_or("").to_string(),
                    );
                    key > (sns.clone(), sname.clone())
                })
            })
            .filter(|o| labels.matches_object(o) && fields.matches(o))
            .collect();
        let mut continue_out = None;
        let mut remaining = None;
        if let Some(limit) = limit.filter(|l| *l > 0)
            && items.len() > limit
        {
            let rest = items.len() - limit;
            items.truncate(limit);
            if let Some(last) = items.last() {
                continue_out = Some(encode_continue(
                    list_rev,
                    meta_str(last, "namespace").unwrap_or(""),
                    meta_str(last, "name").unwrap_or(""),
                ));
                remaining = Some(rest);
            }
        }
        let items = items
            .iter()
            .map(|o| Self::present(rt, version, o))
            .collect();
        Ok(ListResult {
            items,
            revision: list_rev,
            continue_token: continue_out,
            remaining,
        })
    }

    /// Applies the update rules to a proposed new state of an existing object (without storing it).
    ///
    /// `new` is the full proposed object; for the main resource of kinds with a status
    /// subresource the old status is kept, and for `/status` only the new status is taken.
    #[allow(clippy::too_many_arguments)]
    fn build_update(
        &self,
        txn: Option<&mut Txn<'_>>,
        rt: &ResourceType,
        old: &Arc<Value>,
        mut new: Value,
        opts: &WriteOptions,
        track: bool,
    ) -> Result<Built, ApiError> {
        let name = meta_str(old, "name").unwrap_or("").to_string();
        let sub = opts.subresource.as_str();
        if sub == "status" {
            let mut merged = (**old).clone();
            if let Value::Object(m) = &mut merged {
                match new.get("status") {
                    Some(s) => {
                        m.insert("status".into(), s.clone());
                    }
                    None => {
                        m.shift_remove("status");
                    }
                }
            }
            if let Some(mf) = new
                .get("metadata")
                .and_then(|m| m.get("managedFields"))
                .cloned()
            {
                util::meta_mut(&mut merged).insert("managedFields".into(), mf);
            }
            new = merged;
        } else if rt.has_status_subresource()
            && rt.special != Special::Crd
            && let Value::Object(m) = &mut new
        {
            match old.get("status") {
                Some(s) => {
                    m.insert("status".into(), s.clone());
                }
                None => {
                    m.shift_remove("status");
                }
            }
        }
        // Server-owned metadata is kept from the stored object.
        {
            let old_meta = old.get("metadata").cloned().unwrap_or(json!({}));
            let meta = util::meta_mut(&mut new);
            for k in [
                "uid",
                "creationTimestamp",
                "deletionTimestamp",
                "deletionGracePeriodSeconds",
                "generation",
                "namespace",
                "name",
            ] {
                match old_meta.get(k) {
                    Some(v) => {
                        meta.insert(k.into(), v.clone());
                    }
                    None => {
                        meta.shift_remove(k);
                    }
                }
            }
            if !rt.namespaced {
                meta.shift_remove("namespace");
            }
        }
        if let Value::Object(m) = &mut new {
            m.insert(
                "apiVersion".into(),
                Value::String(rt.api_version(rt.storage_version())),
            );
            m.insert("kind".into(), Value::String(rt.kind.clone()));
        }
        // Finalizers may only be removed once deletion started; none may be added then.
        if meta_str(old, "deletionTimestamp").is_some() {
            let old_f: Vec<Value> = old
                .get("metadata")
                .and_then(|m| m.get("finalizers"))
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default();
            let new_f: Vec<Value> = new
                .get("metadata")
                .and_then(|m| m.get("finalizers"))
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default();
            if new_f.iter().any(|f| !old_f.contains(f)) {
                return Err(ApiError::invalid(
                    &rt.group,
                    &rt.kind,
                    &name,
                    vec![Cause::forbidden(
                        "metadata.finalizers",
                        "no new finalizers can be added if the object is being deleted",
                    )],
                ));
            }
        }
        if sub != "status" {
            // Status writes allocate nothing; everything else may (Service IPs and ports).
            let txn = txn.ok_or_else(|| ApiError::internal("an update outside a transaction"))?;
            admission::prepare_update(rt, old, &mut new, sub, txn, &self.policy)?;
        }
        if rt.special == Special::Crd {
            self.prepare_crd(rt, &mut new)?;
        }
        if spec_changed(old, &new) {
            let g = old
                .get("metadata")
                .and_then(|m| m.get("generation"))
                .and_then(Value::as_i64)
                .unwrap_or(1);
            util::meta_mut(&mut new).insert("generation".into(), json!(g + 1));
        }
        if track {
            patch::track_update(
                Some(old),
                &mut new,
                &opts.field_manager,
                &rt.api_version(rt.storage_version()),
                sub,
                &util::now_rfc3339(),
            );
        }
        // Deleting objects whose last finalizer went away are removed.
        if meta_str(&new, "deletionTimestamp").is_some()
            && !has_finalizers(&new)
            && !(rt.special == Special::Namespace && namespace_spec_finalizers(&new))
        {
            return Ok(Built::Remove(new));
        }
        util::compact_managed_fields(&mut new);
        if same_object(old, &new) {
            return Ok(Built::Unchanged);
        }
        Ok(Built::Put(new))
    }

    /// Applies the update rules to a proposed new state of an existing object and stores it.
    #[allow(clippy::too_many_arguments)]
    fn commit_update(
        &self,
        txn: &mut Txn<'_>,
        rt: &ResourceType,
        ns: &str,
        old: &Arc<Value>,
        new: Value,
        opts: &WriteOptions,
        track: bool,
    ) -> Result<Arc<Value>, ApiError> {
        let built = self.build_update(Some(&mut *txn), rt, old, new, opts, track)?;
        let name = meta_str(old, "name").unwrap_or("");
        Ok(self.apply_built(txn, rt, ns, name, old, built))
    }

    fn apply_built(
        &self,
        txn: &mut Txn<'_>,
        rt: &ResourceType,
        ns: &str,
        name: &str,
        old: &Arc<Value>,
        built: Built,
    ) -> Arc<Value> {
        let gr = rt.group_resource();
        match built {
            Built::Unchanged => old.clone(),
            Built::Put(new) => txn.put(&gr, ns, name, new),
            Built::Remove(new) => {
                let gone = txn.put(&gr, ns, name, new);
                txn.remove(&gr, ns, name);
                self.after_remove(txn, rt, &gone);
                gone
            }
        }
    }

    fn check_resource_version(
        rt: &ResourceType,
        name: &str,
        old: &Value,
        body: &Value,
    ) -> Result<(), ApiError> {
        if let Some(rv) = meta_str(body, "resourceVersion").filter(|r| !r.is_empty())
            && Some(rv) != meta_str(old, "resourceVersion")
        {
            return Err(ApiError::stale(&rt.group, &rt.plural, name));
        }
        Ok(())
    }

    /// PUT an object (or its status).
    pub fn update(
        &self,
        rt: &Arc<ResourceType>,
        version: &str,
        ns: &str,
        name: &str,
        mut body: Value,
        opts: &WriteOptions,
    ) -> Result<Arc<Value>, ApiError> {
        Self::normalize_body(rt, version, ns, Some(name), &mut body)?;
        if opts.strict {
            crate::typed::check_strict(rt, version, &body)?;
        }
        let updated = self.store.write(opts.dry_run, |txn| {
            let old = txn
                .get(&rt.group_resource(), ns, name)
                .ok_or_else(|| ApiError::not_found(&rt.group, &rt.plural, name))?;
            Self::check_resource_version(rt, name, &old, &body)?;
            self.commit_update(txn, rt, ns, &old, body, opts, true)
        })?;
        if rt.special == Special::Crd && !opts.dry_run {
            self.register_crd(&updated);
        }
        Ok(Self::present(rt, version, &updated))
    }

    /// PATCH an object (or its status) with any of the four patch types.
    #[allow(clippy::too_many_arguments)]
    pub fn patch(
        &self,
        rt: &Arc<ResourceType>,
        version: &str,
        ns: &str,
        name: &str,
        ty: PatchType,
        body: Value,
        opts: &WriteOptions,
    ) -> Result<(Arc<Value>, bool), ApiError> {
        let gr = rt.group_resource();
        let api_version = rt.api_version(version);
        let (result, created) = self.store.write(opts.dry_run, |txn| {
            let old = txn.get(&gr, ns, name);
            if ty == PatchType::Apply {
                let mut config = body.clone();
                Self::normalize_body(rt, version, ns, Some(name), &mut config)?;
                if opts.strict {
                    crate::typed::check_strict(rt, version, &config)?;
                }
                if opts.field_manager.is_empty() {
                    return Err(ApiError::bad_request("PatchOptions.meta.k8s.io \"\" is invalid: fieldManager: Required value: is required for apply patch"));
                }
                let Some(old) = old else {
                    if !opts.subresource.is_empty() {
                        return Err(ApiError::not_found(&rt.group, &rt.plural, name));
                    }
                    self.check_namespace(txn, rt, ns)?;
                    let mut obj = patch::server_side_apply(None, &config, &opts.field_manager, &api_version, "", opts.force, &util::now_rfc3339())
                        .map_err(|c| conflict_error(rt, name, c))?;
                    self.create_in_txn(txn, rt, ns, &mut obj, &opts.field_manager, false)?;
                    return Ok((txn.put(&gr, ns, name, obj), true));
                };
                Self::check_resource_version(rt, name, &old, &config)?;
                let new = patch::server_side_apply(Some(&old), &config, &opts.field_manager, &api_version, &opts.subresource, opts.force, &util::now_rfc3339())
                    .map_err(|c| conflict_error(rt, name, c))?;
                return Ok((self.commit_update(txn, rt, ns, &old, new, opts, false)?, false));
            }
            let old = old.ok_or_else(|| ApiError::not_found(&rt.group, &rt.plural, name))?;
            let mut new = (*old).clone();
            match ty {
                PatchType::Json => patch::json_patch(&mut new, &body).map_err(|e| ApiError::new(422, "Invalid", e))?,
                PatchType::Merge => {
                    if !body.is_object() {
                        return Err(ApiError::bad_request("a merge patch must be a JSON object"));
                    }
                    patch::merge_patch(&mut new, &body)
                }
                PatchType::Strategic => {
                    if !body.is_object() {
                        return Err(ApiError::bad_request("a strategic merge patch must be a JSON object"));
                    }
                    if rt.from_crd {
                        return Err(ApiError::new(415, "UnsupportedMediaType", "strategic merge patch is not supported for custom resources; use a JSON merge patch (application/merge-patch+json)"));
                    }
                    patch::strategic_merge(&mut new, &body).map_err(ApiError::bad_request)?
                }
                PatchType::Apply => unreachable!("handled above"),
            }
            Self::check_resource_version(rt, name, &old, &body)?;
            if opts.strict {
                crate::typed::check_strict(rt, version, &new)?;
            }
            // A patch that restates the stored resourceVersion must not pin it.
            util::meta_mut(&mut new).shift_remove("resourceVersion");
            if let Some(n) = meta_str(&new, "name").filter(|n| *n != name) {
                return Err(ApiError::bad_request(format!("the name of the object ({n}) does not match the name on the URL ({name})")));
            }
            Ok((self.commit_update(txn, rt, ns, &old, new, opts, true)?, false))
        })?;
        if rt.special == Special::Crd && !opts.dry_run {
            self.register_crd(&result);
        }
        Ok((Self::present(rt, version, &result), created))
    }

    /// DELETE one object: finalizers defer the removal.
    pub fn delete(
        &self,
        rt: &Arc<ResourceType>,
        version: &str,
        ns: &str,
        name: &str,
        options: &Value,
        opts: &WriteOptions,
    ) -> Result<Arc<Value>, ApiError> {
        let gr = rt.group_resource();
        let out = self.store.write(opts.dry_run, |txn| {
            let old = txn.get(&gr, ns, name).ok_or_else(|| ApiError::not_found(&rt.group, &rt.plural, name))?;
            if let Some(uid) = dotted(options, "preconditions.uid").and_then(Value::as_str)
                && Some(uid) != meta_str(&old, "uid")
            {
                return Err(ApiError::conflict(&rt.group, &rt.plural, name, &format!(
                    "Precondition failed: UID in precondition: {uid}, UID in object meta: {}",
                    meta_str(&old, "uid").unwrap_or("")
                )));
            }
            if let Some(rv) = dotted(options, "preconditions.resourceVersion").and_then(Value::as_str)
                && Some(rv) != meta_str(&old, "resourceVersion")
            {
                return Err(ApiError::conflict(&rt.group, &rt.plural, name, &format!(
                    "Precondition failed: ResourceVersion in precondition: {rv}, ResourceVersion in object meta: {}",
                    meta_str(&old, "resourceVersion").unwrap_or("")
                )));
            }
            self.delete_in_txn(txn, rt, ns, &old)
        })?;
        Ok(Self::present(rt, version, &out))
    }

    pub(crate) fn delete_in_txn(
        &self,
        txn: &mut Txn<'_>,
        rt: &ResourceType,
        ns: &str,
        old: &Arc<Value>,
    ) -> Result<Arc<Value>, ApiError> {
        let gr = rt.group_resource();
        let name = meta_str(old, "name").unwrap_or("").to_string();
        let deferred = has_finalizers(old)
            || rt.special == Special::Namespace && namespace_spec_finalizers(old);
        if deferred {
            if meta_str(old, "deletionTimestamp").is_some() {
                return Ok(old.clone());
            }
            let mut new = (**old).clone();
            {
                let meta = util::meta_mut(&mut new);
                meta.insert(
                    "deletionTimestamp".into(),
                    Value::String(util::now_rfc3339()),
                );
                meta.insert("deletionGracePeriodSeconds".into(), json!(0));
            }
            if rt.special == Special::Namespace
                && let Value::Object(m) = &mut new
            {
                util::obj_entry(m, "status").insert("phase".into(), json!("Terminating"));
            }
            return Ok(txn.put(&gr, ns, &name, new));
        }
        let gone = txn
            .remove(&gr, ns, &name)
            .ok_or_else(|| ApiError::not_found(&rt.group, &rt.plural, &name))?;
        self.after_remove(txn, rt, &gone);
        Ok(gone)
    }

    /// Cleanup when an object is gone for good.
    fn after_remove(&self, txn: &mut Txn<'_>, rt: &ResourceType, gone: &Value) {
        admission::release(rt, gone, txn, &self.policy);
        if rt.special == Special::Crd
            && let Ok(t) = crate::registry::type_from_crd(gone)
        {
            let gr = t.group_resource();
            for obj in txn.list(&gr, None) {
                let ns = meta_str(&obj, "namespace").unwrap_or("").to_string();
                let name = meta_str(&obj, "name").unwrap_or("").to_string();
                txn.remove(&gr, &ns, &name);
            }
            if !txn.is_dry_run() {
                lock_write(&self.registry).remove(&gr);
            }
        }
    }

    /// DELETE a collection (with selectors).
    pub fn delete_collection(
        &self,
        rt: &Arc<ResourceType>,
        version: &str,
        ns: Option<&str>,
        labels: &LabelSelector,
        fields: &FieldSelector,
        opts: &WriteOptions,
    ) -> Result<Vec<Arc<Value>>, ApiError> {
        let gr = rt.group_resource();
        let out = self.store.write(opts.dry_run, |txn| {
            let victims: Vec<Arc<Value>> = txn
                .list(&gr, ns)
                .into_iter()
                .filter(|o| labels.matches_object(o) && fields.matches(o))
                .collect();
            let mut out = Vec::new();
            for v in victims {
                let vns = meta_str(&v, "namespace").unwrap_or("").to_string();
                out.push(self.delete_in_txn(txn, rt, &vns, &v)?);
            }
            Ok::<_, ApiError>(out)
        })?;
        Ok(out.iter().map(|o| Self::present(rt, version, o)).collect())
    }

    /// POST pods/{name}/binding (or the legacy bindings collection).
    pub fn bind(
        &self,
        ns: &str,
        pod: &str,
        binding: &Value,
        opts: &WriteOptions,
    ) -> Result<Arc<Value>, ApiError> {
        let node = dotted(binding, "target.name")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        if node.is_empty() {
            return Err(ApiError::invalid(
                "",
                "Binding",
                pod,
                vec![Cause::required("target.name", "")],
            ));
        }
        let rt = self
            .lookup("", "v1", "pods")
            .ok_or_else(|| ApiError::internal("pods are not registered"))?;
        let gr = rt.group_resource();
        self.store.write(opts.dry_run, |txn| {
            let old = txn
                .get(&gr, ns, pod)
                .ok_or_else(|| ApiError::not_found("", "pods", pod))?;
            if meta_str(&old, "deletionTimestamp").is_some() {
                return Err(ApiError::conflict(
                    "",
                    "pods",
                    pod,
                    "pod is being deleted, cannot be assigned to a host",
                ));
            }
            if let Some(cur) = dotted(&old, "spec.nodeName")
                .and_then(Value::as_str)
                .filter(|n| !n.is_empty())
            {
                return Err(ApiError::conflict(
                    "",
                    "pods",
                    pod,
                    &format!("pod {pod} is already assigned to node \"{cur}\""),
                ));
            }
            let mut new = (*old).clone();
            if let Value::Object(m) = &mut new {
                util::obj_entry(m, "spec").insert("nodeName".into(), json!(node));
                let status = util::obj_entry(m, "status");
                set_condition(status, "PodScheduled", "True", "", "");
            }
            let o = WriteOptions {
                subresource: String::new(),
                field_manager: opts.field_manager.clone(),
                ..WriteOptions::default()
            };
            // The binding writes spec and status together, as upstream's binding storage does.
            let mut staged = new.clone();
            patch::track_update(
                Some(&old),
                &mut staged,
                &o.field_manager,
                "v1",
                "binding",
                &util::now_rfc3339(),
            );
            Ok(txn.put(&gr, ns, pod, staged))
        })?;
        Ok(Arc::new(
            json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "code": 201}),
        ))
    }

    /// Answers SubjectAccessReview, SelfSubjectAccessReview, LocalSubjectAccessReview,
    /// SelfSubjectRulesReview and SelfSubjectReview.
    fn review(
        &self,
        rt: &ResourceType,
        ns: &str,
        mut body: Value,
        requester: &UserInfo,
    ) -> Result<Arc<Value>, ApiError> {
        if !body.is_object() {
            return Err(ApiError::bad_request(format!(
                "the body must be a {} object",
                rt.kind
            )));
        }
        let spec = body.get("spec").cloned().unwrap_or(json!({}));
        let status = match rt.kind.as_str() {
            "SelfSubjectReview" => json!({"userInfo": requester.to_json()}),
            "SelfSubjectRulesReview" => {
                let namespace = spec.get("namespace").and_then(Value::as_str).unwrap_or("");
                let rules = auth::rules_for(&self.store, requester, namespace);
                let (res, nonres): (Vec<Value>, Vec<Value>) = rules
                    .into_iter()
                    .partition(|r| r.get("nonResourceURLs").is_none());
                json!({"resourceRules": res, "nonResourceRules": nonres, "incomplete": false})
            }
            _ => {
                let user = if rt.kind == "SelfSubjectAccessReview" {
                    requester.clone()
                } else {
                    let s = |k: &str| {
                        spec.get(k)
                            .and_then(Value::as_str)
                            .unwrap_or("")
                            .to_string()
                    };
                    let user = s("user");
                    let groups: Vec<String> = spec
                        .get("groups")
                        .and_then(Value::as_array)
                        .map(|a| {
                            a.iter()
                                .filter_map(|g| g.as_str().map(str::to_string))
                                .collect()
                        })
                        .unwrap_or_default();
                    if user.is_empty() && groups.is_empty() {
                        return Err(ApiError::invalid(
                            &rt.group,
                            &rt.kind,
                            "",
                            vec![Cause::invalid(
                                "spec.user",
                                "",
                                "at least one of user or group must be specified",
                            )],
                        ));
                    }
                    UserInfo {
                        name: user,
                        uid: s("uid"),
                        groups,
                        extra: Default::default(),
                    }
                };
                let attrs = if let Some(ra) = spec.get("resourceAttributes") {
                    let s = |k: &str| ra.get(k).and_then(Value::as_str).unwrap_or("").to_string();
                    let namespace = if rt.kind == "LocalSubjectAccessReview" {
                        if !s("namespace").is_empty() && s("namespace") != ns {
                            return Err(ApiError::invalid(
                                &rt.group,
                                &rt.kind,
                                "",
                                vec![Cause::invalid(
                                    "spec.resourceAttributes.namespace",
                                    &s("namespace"),
                                    "must match metadata.namespace",
                                )],
                            ));
                        }
                        ns.to_string()
                    } else {
                        s("namespace")
                    };
                    Attributes {
                        user,
                        verb: s("verb"),
                        resource_request: true,
                        namespace,
                        api_group: s("group"),
                        resource: s("resource"),
                        subresource: s("subresource"),
                        name: s("name"),
                        path: String::new(),
                    }
                } else if let Some(nr) = spec.get("nonResourceAttributes") {
                    let s = |k: &str| nr.get(k).and_then(Value::as_str).unwrap_or("").to_string();
                    Attributes {
                        user,
                        verb: s("verb"),
                        resource_request: false,
                        path: s("path"),
                        ..Attributes::default()
                    }
                } else {
                    return Err(ApiError::invalid(
                        &rt.group,
                        &rt.kind,
                        "",
                        vec![Cause::required(
                            "spec.resourceAttributes",
                            "exactly one of nonResourceAttributes or resourceAttributes must be specified",
                        )],
                    ));
                };
                let d = auth::authorize(&self.store, &attrs);
                let mut st = json!({"allowed": d.allowed});
                if !d.reason.is_empty() {
                    st["reason"] = json!(d.reason);
                }
                st
            }
        };
        if let Value::Object(m) = &mut body {
            m.insert("status".into(), status);
            m.insert(
                "apiVersion".into(),
                json!(rt.api_version(rt.storage_version())),
            );
            m.insert("kind".into(), json!(rt.kind));
            m.entry("metadata").or_insert(json!({}));
        }
        Ok(Arc::new(body))
    }

    /// Several read-modify-writes of one resource in a single transaction (for controllers);
    /// objects that are gone or whose update is refused are skipped.
    pub(crate) fn modify_each<T>(
        &self,
        gr: &GroupResource,
        subresource: &str,
        manager: &str,
        items: &[((String, String), T)],
        f: impl Fn(&mut Value, &T),
    ) {
        let Some(rt) = self.type_of(gr) else {
            return;
        };
        let opts = WriteOptions {
            field_manager: manager.to_string(),
            subresource: subresource.to_string(),
            ..WriteOptions::default()
        };
        if subresource == "status" {
            // Optimistic, like a real controller: build the new state outside the store lock,
            // store it only if the object did not change meanwhile (else retry).
            for ((ns, name), arg) in items {
                for _attempt in 0..5 {
                    let Some(old) = self.store.get(gr, ns, name) else {
                        break;
                    };
                    let mut new = (*old).clone();
                    f(&mut new, arg);
                    if new == *old {
                        break;
                    }
                    let Ok(built) = self.build_update(None, &rt, &old, new, &opts, true) else {
                        break;
                    };
                    let stored = self.store.write::<_, ApiError>(false, |txn| {
                        let Some(cur) = txn.get(gr, ns, name) else {
                            return Ok(true);
                        };
                        if meta_str(&cur, "resourceVersion") != meta_str(&old, "resourceVersion") {
                            return Ok(false);
                        }
                        self.apply_built(txn, &rt, ns, name, &old, built);
                        Ok(true)
                    });
                    if stored.unwrap_or(true) {
                        break;
                    }
                }
            }
            return;
        }
        let _ = self.store.write::<_, ApiError>(false, |txn| {
            for ((ns, name), arg) in items {
                let Some(old) = txn.get(gr, ns, name) else {
                    continue;
                };
                let mut new = (*old).clone();
                f(&mut new, arg);
                if new != *old {
                    // A refused update leaves the store untouched (validation precedes the write).
                    let _ = self.commit_update(txn, &rt, ns, &old, new, &opts, true);
                }
            }
            Ok(())
        });
    }

    /// Internal read-modify-write for controllers (no authorization, field manager `manager`).
    pub(crate) fn modify(
        &self,
        gr: &GroupResource,
        ns: &str,
        name: &str,
        subresource: &str,
        manager: &str,
        f: impl FnOnce(&mut Value),
    ) -> Result<Option<Arc<Value>>, ApiError> {
        let Some(rt) = self.type_of(gr) else {
            return Ok(None);
        };
        let opts = WriteOptions {
            field_manager: manager.to_string(),
            subresource: subresource.to_string(),
            ..WriteOptions::default()
        };
        self.store.write(false, |txn| {
            let Some(old) = txn.get(gr, ns, name) else {
                return Ok(None);
            };
            let mut new = (*old).clone();
            f(&mut new);
            if new == *old {
                return Ok(Some(old));
            }
            self.commit_update(txn, &rt, ns, &old, new, &opts, true)
                .map(Some)
        })
    }

    /// Internal create for controllers; an existing object is left alone.
    pub(crate) fn ensure(
        &self,
        gr: &GroupResource,
        ns: &str,
        obj: Value,
        manager: &str,
    ) -> Result<(), ApiError> {
        let Some(rt) = self.type_of(gr) else {
            return Ok(());
        };
        let name = meta_str(&obj, "name").unwrap_or("").to_string();
        if self.store.get(gr, ns, &name).is_some() {
            return Ok(());
        }
        let version = rt.storage_version().to_string();
        let opts = WriteOptions {
            field_manager: manager.to_string(),
            ..WriteOptions::default()
        };
        match self.create(&rt, &version, ns, obj, &opts) {
            Ok(_) => Ok(()),
            Err(e) if e.code == 409 || e.code == 403 || e.code == 404 => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Internal delete for controllers (ignores NotFound).
    pub(crate) fn remove(&self, gr: &GroupResource, ns: &str, name: &str) -> Result<(), ApiError> {
        let Some(rt) = self.type_of(gr) else {
            return Ok(());
        };
        let version = rt.storage_version().to_string();
        match self.delete(
            &rt,
            &version,
            ns,
            name,
            &Value::Null,
            &WriteOptions::default(),
        ) {
            Ok(_) => Ok(()),
            Err(e) if e.code == 404 => Ok(()),
            Err(e) => Err(e),
        }
    }
}

fn conflict_error(rt: &ResourceType, name: &str, conflicts: Vec<patch::FieldConflict>) -> ApiError {
    let n = conflicts.len();
    let lines: Vec<String> = conflicts
        .iter()
        .map(|c| {
            format!(
                "conflict with \"{}\" using {}: {}",
                c.manager, c.api_version, c.field
            )
        })
        .collect();
    let message = if n == 1 {
        format!("Apply failed with 1 conflict: {}", lines[0])
    } else {
        format!("Apply failed with {n} conflicts: {}", lines.join("\n"))
    };
    let causes: Vec<Value> = conflicts
        .iter()
        .map(|c| json!({"reason": "FieldManagerConflict", "message": format!("conflict with \"{}\" using {}", c.manager, c.api_version), "field": c.field}))
        .collect();
    let mut e = ApiError::new(409, "Conflict", message);
    e.details = Some(json!({"name": name, "group": rt.group, "kind": rt.plural, "causes": causes}));
    e
}

/// Sets (or updates) a condition in a status map.
pub(crate) fn set_condition(
    status: &mut serde_json::Map<String, Value>,
    ty: &str,
    value: &str,
    reason: &str,
    message: &str,
) {
    let now = util::now_rfc3339();
    let conds = status.entry("conditions").or_insert_with(|| json!([]));
    if !conds.is_array() {
        *conds = json!([]);
    }
    let Some(list) = conds.as_array_mut() else {
        return;
    };
    let mut cond =
        json!({"type": ty, "status": value, "lastProbeTime": null, "lastTransitionTime": now});
    if !reason.is_empty() {
        cond["reason"] = json!(reason);
    }
    if !message.is_empty() {
        cond["message"] = json!(message);
    }
    match list
        .iter_mut()
        .find(|c| c.get("type").and_then(Value::as_str) == Some(ty))
    {
        Some(existing) => {
            if existing.get("status").and_then(Value::as_str) != Some(value) {
                *existing = cond;
            } else {
                if !reason.is_empty() {
                    existing["reason"] = json!(reason);
                }
                if !message.is_empty() {
                    existing["message"] = json!(message);
                }
            }
        }
        None => list.push(cond),
    }
}
