//! `ConfigDb`: the in-memory config database behind the mock VNC API, usable in-process.
//!
//! It keeps the real API server's invariants: uuid4 ids, fq_name unique per type (409),
//! existing parents (400) and reference targets (404), back-references and children lists
//! maintained on every write, deletion refused (409) while non-derived back-references or
//! children exist unless relaxed through ref-relax-for-delete, `id_perms`/`perms2`/
//! `display_name` defaults, and the type-specific rules in [`crate::hooks`] (tags, firewall
//! rules, virtual networks, ...). Every write is recorded in a change log with a sequence
//! number that [`ConfigDb::subscribe`] streams.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::sync::{Arc, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};

use harness_contrail_vnc::schema::{self, TypeInfo, object_type};
use harness_contrail_vnc::types::Resource;
use harness_contrail_vnc::validate::{self, Operation};
use harness_contrail_vnc::{ListParams, Ref, RefOperation, RefUpdate, VncObject};
use serde_json::{Map, Value, json};
use tokio::sync::broadcast;

use crate::change::{Change, ChangeKind, Subscription, WatchError};

/// How many changes the log keeps for late subscribers.
pub const CHANGE_LOG_CAPACITY: usize = 65_536;

/// A refused database operation, with the HTTP status the real server answers.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DbError {
    /// 404.
    #[error("{0}")]
    NotFound(String),
    /// 409.
    #[error("{0}")]
    Conflict(String),
    /// 400.
    #[error("{0}")]
    BadRequest(String),
    /// 403.
    #[error("{0}")]
    Forbidden(String),
}

impl DbError {
    /// The HTTP status code for this error.
    pub fn status(&self) -> u16 {
        match self {
            DbError::NotFound(_) => 404,
            DbError::Conflict(_) => 409,
            DbError::BadRequest(_) => 400,
            DbError::Forbidden(_) => 403,
        }
    }
}

/// Python's repr of a list of strings, as the real server's messages show fq_names.
pub(crate) fn pyrepr(items: &[String]) -> String {
    let inner: Vec<String> = items
        .iter()
        .map(|s| format!("'{}'", s.replace('\\', "\\\\").replace('\'', "\\'")))
        .collect();
    format!("[{}]", inner.join(", "))
}

pub(crate) fn type_info(type_name: &str) -> Result<&'static TypeInfo, DbError> {
    schema::resource(type_name)
        .ok_or_else(|| DbError::NotFound(format!("Resource type '{type_name}' not found")))
}

/// Who is writing: the project of the caller (for `perms2.owner`) and whether the write is
/// the server's own (internal writes may set system fields such as a tag-type id).
#[derive(Debug, Clone, Default)]
pub(crate) struct Ctx {
    pub project_id: Option<String>,
    pub internal: bool,
}

#[derive(Debug, Default)]
pub(crate) struct Ids {
    pub next_vn_id: u64,
    pub next_sg_id: u64,
    pub tag_types_used: HashSet<u16>,
    pub tag_values_used: HashMap<String, HashSet<u16>>,
}

/// The database state; every method runs under the write lock of [`ConfigDb`].
#[derive(Debug, Default)]
pub(crate) struct State {
    pub objects: HashMap<String, VncObject>,
    fq_index: HashMap<String, HashMap<Vec<String>, String>>,
    order: HashMap<String, BTreeMap<u64, String>>,
    order_of: HashMap<String, u64>,
    next_order: u64,
    relaxed: HashSet<(String, String)>,
    seq: u64,
    log: VecDeque<Arc<Change>>,
    pending: Vec<Arc<Change>>,
    pub ids: Ids,
    pub kv: HashMap<String, String>,
    /// Addresses in use per allocation scope (an IPAM subnet for flat subnets, a network's
    /// subnet otherwise).
    pub ips_in_use: HashMap<String, HashSet<std::net::IpAddr>>,
    /// Scope and address held by each instance-ip / floating-ip.
    pub ip_owner: HashMap<String, (String, std::net::IpAddr)>,
    /// Injected fault `service-chain-bypassed`: network-policy rules lose `apply_service`.
    pub strip_apply_service: bool,
}

pub(crate) fn new_uuid() -> String {
    uuid::Uuid::new_v4().to_string()
}

fn back_ref_field(from_type: &str) -> String {
    format!("{}_back_refs", object_type(from_type))
}

fn child_field(child_type: &str) -> String {
    format!("{}s", object_type(child_type))
}

/// `YYYY-MM-DDTHH:MM:SS.ffffff` in UTC, the real server's timestamp format.
pub(crate) fn now_timestamp() -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let secs = now.as_secs();
    let micros = now.subsec_micros();
    let days = i64::try_from(secs / 86_400).unwrap_or(0);
    let rem = secs % 86_400;
    // Civil-from-days (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = if m <= 2 { y + 1 } else { y };
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{micros:06}",
        rem / 3600,
        (rem / 60) % 60,
        rem % 60
    )
}

fn uuid_halves(id: &str) -> (u64, u64) {
    uuid::Uuid::parse_str(id)
        .map(|u| {
            let v = u.as_u128();
            ((v >> 64) as u64, v as u64)
        })
        .unwrap_or((0, 0))
}

fn default_id_perms(id: &str, user_visible: bool) -> Value {
    let (ms, ls) = uuid_halves(id);
    let ts = now_timestamp();
    json!({
        "permissions": {"owner": "cloud-admin", "owner_access": 7,
                        "group": "cloud-admin-group", "group_access": 7, "other_access": 7},
        "uuid": {"uuid_mslong": ms, "uuid_lslong": ls},
        "enable": true,
        "created": ts,
        "last_modified": ts,
        "description": null,
        "user_visible": user_visible,
        "creator": null
    })
}

/// Object JSON without back-references and children (what the change log carries).
pub(crate) fn content_json(obj: &VncObject) -> Value {
    let mut slim = obj.clone();
    slim.back_refs.clear();
    slim.children.clear();
    slim.to_json()
}

impl State {
    pub fn lookup_fq(&self, type_name: &str, fq: &[String]) -> Option<&String> {
        self.fq_index.get(type_name).and_then(|m| m.get(fq))
    }

    pub fn get(&self, id: &str) -> Option<&VncObject> {
        self.objects.get(id)
    }

    fn record(&mut self, kind: ChangeKind, obj: &VncObject) {
        self.seq += 1;
        let change = Arc::new(Change {
            seq: self.seq,
            kind,
            type_name: obj.type_name.clone(),
            uuid: obj.uuid.clone(),
            fq_name: obj.fq_name.clone(),
            content: content_json(obj),
        });
        if self.log.len() >= CHANGE_LOG_CAPACITY {
            self.log.pop_front();
        }
        self.log.push_back(change.clone());
        self.pending.push(change);
    }

    fn record_update(&mut self, id: &str) {
        if let Some(obj) = self.objects.get(id).cloned() {
            self.record(ChangeKind::Update, &obj);
        }
    }

    /// Object `id`, which must be of `type_name` (404 otherwise, in the real server's words).
    pub fn get_typed(&self, type_name: &str, id: &str) -> Result<&VncObject, DbError> {
        match self.objects.get(id) {
            Some(o) if o.type_name == type_name => Ok(o),
            Some(_) => Err(DbError::NotFound(format!(
                "No {type_name} object found for id {id}"
            ))),
            None => Err(DbError::NotFound(format!("ID {id} does not exist"))),
        }
    }

    /// Resolves the references of a request in place: fills the uuid from `to` or `to` from
    /// the uuid, and checks that the target exists and has the right type.
    fn resolve_refs(
        &self,
        info: &TypeInfo,
        refs: &mut BTreeMap<String, Vec<Ref>>,
    ) -> Result<(), DbError> {
        for (field, list) in refs.iter_mut() {
            let Some(rs) = info.ref_field(field) else {
                return Err(DbError::BadRequest(format!(
                    "{} has no reference field {field}",
                    info.name()
                )));
            };
            for r in list.iter_mut() {
                if r.uuid.is_empty() {
                    let id = self.lookup_fq(rs.to, &r.to).ok_or_else(|| {
                        DbError::NotFound(format!(
                            "Unknown reference in {}: {} {} not found",
                            info.name(),
                            rs.to,
                            pyrepr(&r.to)
                        ))
                    })?;
                    r.uuid = id.clone();
                } else {
                    let target = self.objects.get(&r.uuid).ok_or_else(|| {
                        DbError::NotFound(format!(
                            "Unknown reference in {}: {} {} not found",
                            info.name(),
                            rs.to,
                            r.uuid
                        ))
                    })?;
                    if target.type_name != rs.to {
                        return Err(DbError::NotFound(format!(
                            "No {} object found for id {} (it is a {})",
                            rs.to, r.uuid, target.type_name
                        )));
                    }
                    r.to = target.fq_name.clone();
                }
            }
        }
        Ok(())
    }

    fn link_refs(&mut self, from: &VncObject) {
        let field = back_ref_field(&from.type_name);
        for r in from.refs.values().flatten() {
            if let Some(target) = self.objects.get_mut(&r.uuid) {
                let list = target.back_refs.entry(field.clone()).or_default();
                list.retain(|b| b.uuid != from.uuid);
                list.push(Ref {
                    to: from.fq_name.clone(),
                    uuid: from.uuid.clone(),
                    attr: r.attr.clone(),
                });
            }
        }
    }

    fn unlink_refs(&mut self, from: &VncObject) {
        let field = back_ref_field(&from.type_name);
        for r in from.refs.values().flatten() {
            if let Some(target) = self.objects.get_mut(&r.uuid)
                && let Some(list) = target.back_refs.get_mut(&field)
            {
                list.retain(|b| b.uuid != from.uuid);
                if list.is_empty() {
                    target.back_refs.remove(&field);
                }
            }
        }
    }

    /// Rejects two tags of one single-valued type on an object (firewall rules excepted).
    fn check_tag_refs(
        &self,
        type_name: &str,
        refs: &BTreeMap<String, Vec<Ref>>,
    ) -> Result<(), DbError> {
        let Some(tags) = refs.get("tag_refs") else {
            return Ok(());
        };
        let mut per_type: HashMap<String, usize> = HashMap::new();
        for r in tags {
            let tag_type =
                r.to.last()
                    .map(|n| n.split('=').next().unwrap_or("").to_owned())
                    .unwrap_or_default();
            *per_type.entry(tag_type).or_default() += 1;
        }
        for (tag_type, n) in per_type {
            if n > 1
                && !crate::hooks::TAG_TYPES_NOT_UNIQUE.contains(&tag_type.as_str())
                && type_name != "firewall-rule"
            {
                let pretty = object_type(type_name).replace('_', " ");
                return Err(DbError::BadRequest(format!(
                    "Tag type '{tag_type}' cannot be set multiple times on the same {} resource type",
                    title_case(&pretty)
                )));
            }
            if type_name == "address-group" && tag_type != "label" {
                return Err(DbError::BadRequest(format!(
                    "Invalid tag type {tag_type} for object type address_group"
                )));
            }
        }
        Ok(())
    }

    fn validate_parent(&self, info: &TypeInfo, obj: &mut VncObject) -> Result<(), DbError> {
        let allowed = info.schema.parents;
        if obj.parent_type.as_deref() == Some("config-root") {
            obj.parent_type = None;
        }
        let parent_type = match obj.parent_type.clone() {
            Some(p) => {
                if !allowed.contains(&p.as_str()) {
                    return Err(DbError::BadRequest(format!(
                        "Invalid parent type: {p}. Allowed types: {}",
                        pyrepr(&allowed.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>())
                    )));
                }
                Some(p)
            }
            None => {
                let non_root: Vec<&&str> =
                    allowed.iter().filter(|p| **p != "config-root").collect();
                if obj.fq_name.len() == 1 && info.is_root_child() {
                    None
                } else if non_root.len() == 1 {
                    Some((*non_root[0]).to_owned())
                } else if non_root.is_empty() {
                    None
                } else {
                    return Err(DbError::BadRequest(format!(
                        "Missing parent type: None. Allowed types: {}",
                        pyrepr(&allowed.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>())
                    )));
                }
            }
        };
        match &parent_type {
            None => {
                if obj.fq_name.len() != 1 {
                    return Err(DbError::BadRequest(format!(
                        "Invalid fq-name of an object with no parent: {}",
                        pyrepr(&obj.fq_name)
                    )));
                }
                obj.parent_uuid = None;
            }
            Some(p) => {
                if obj.fq_name.len() < 2 {
                    return Err(DbError::BadRequest(format!(
                        "Invalid fq-name for object with parent_type {p}: {}",
                        pyrepr(&obj.fq_name)
                    )));
                }
                let parent_fq = &obj.fq_name[..obj.fq_name.len() - 1];
                let parent_uuid = self.lookup_fq(p, parent_fq).ok_or_else(|| {
                    DbError::BadRequest(format!(
                        "Parent {} type {p} does not exist",
                        pyrepr(parent_fq)
                    ))
                })?;
                obj.parent_uuid = Some(parent_uuid.clone());
            }
        }
        obj.parent_type = parent_type;
        Ok(())
    }

    fn default_perms2(&self, obj: &VncObject, requested_uuid: bool, ctx: &Ctx) -> Value {
        let mut perms2 =
            json!({"owner": "cloud-admin", "owner_access": 7, "global_access": 0, "share": []});
        let owner = if obj.type_name == "project" && requested_uuid {
            obj.uuid.replace('-', "")
        } else if let Some(o) = obj
            .fields
            .get("perms2")
            .and_then(|p| p.get("owner"))
            .and_then(Value::as_str)
        {
            o.to_owned()
        } else if obj.parent_type.as_deref() == Some("domain") || obj.parent_type.is_none() {
            ctx.project_id
                .clone()
                .unwrap_or_else(|| "cloud-admin".to_owned())
        } else {
            obj.parent_uuid
                .as_ref()
                .and_then(|p| self.objects.get(p))
                .and_then(|p| p.fields.get("perms2"))
                .and_then(|p| p.get("owner"))
                .and_then(Value::as_str)
                .unwrap_or("cloud-admin")
                .to_owned()
        };
        perms2["owner"] = Value::String(owner);
        if let Some(Value::Object(req)) = obj.fields.get("perms2") {
            for (k, v) in req {
                perms2[k.as_str()] = v.clone();
            }
        }
        perms2
    }

    /// Creates an object from a validated request object.
    pub fn create(&mut self, mut obj: VncObject, ctx: &Ctx) -> Result<String, DbError> {
        let info = type_info(&obj.type_name)?;
        obj.type_name = info.name().to_owned();
        if obj.fq_name.is_empty() {
            return Err(DbError::BadRequest(
                "Bad Request, no fq_name in POST body".into(),
            ));
        }
        if obj.name().contains(':') {
            return Err(DbError::BadRequest(
                "Bad Request, name has one of invalid chars {':'}".into(),
            ));
        }
        if obj
            .name()
            .chars()
            .any(|c| (c as u32) < 0x20 && c != '\t' && c != '\n' && c != '\r')
        {
            return Err(DbError::BadRequest(
                "Bad Request, name has illegal xml characters".into(),
            ));
        }
        self.pre_alloc(&mut obj)?;
        if let Some(existing) = self.lookup_fq(&obj.type_name, &obj.fq_name) {
            return Err(DbError::Conflict(format!(
                "{} already exists with uuid: {existing}",
                pyrepr(&obj.fq_name)
            )));
        }
        self.validate_parent(info, &mut obj)?;
        let requested_uuid = !obj.uuid.is_empty();
        if requested_uuid {
            let parsed = uuid::Uuid::parse_str(&obj.uuid)
                .map_err(|_| DbError::BadRequest(format!("Invalid UUID format: {}", obj.uuid)))?;
            if parsed.hyphenated().to_string() != obj.uuid {
                return Err(DbError::BadRequest(format!(
                    "Invalid UUID format: {}",
                    obj.uuid
                )));
            }
            if let Some(existing) = self.objects.get(&obj.uuid) {
                return Err(DbError::Conflict(format!(
                    "{} already exists with fq_name: {}",
                    obj.uuid,
                    pyrepr(&existing.fq_name)
                )));
            }
        } else {
            obj.uuid = new_uuid();
        }
        obj.back_refs.clear();
        obj.children.clear();
        self.resolve_refs(info, &mut obj.refs)?;
        // id_perms: defaults, with the fields a creator may set.
        let user_visible = obj
            .fields
            .get("id_perms")
            .and_then(|p| p.get("user_visible"))
            .and_then(Value::as_bool)
            .unwrap_or(true);
        let mut id_perms = default_id_perms(&obj.uuid, user_visible);
        if let Some(Value::Object(req)) = obj.fields.get("id_perms") {
            for key in ["enable", "description", "creator"] {
                if let Some(v) = req.get(key) {
                    id_perms[key] = v.clone();
                }
            }
        }
        let perms2 = self.default_perms2(&obj, requested_uuid, ctx);
        obj.fields.insert("id_perms".into(), id_perms);
        obj.fields.insert("perms2".into(), perms2);
        if obj.fields.get("display_name").is_none_or(Value::is_null) {
            obj.fields
                .insert("display_name".into(), Value::String(obj.name().to_owned()));
        }
        self.pre_create(&mut obj, ctx)?;
        self.check_tag_refs(&obj.type_name, &obj.refs)?;
        drop_null_props(&mut obj);
        // Store.
        let id = obj.uuid.clone();
        self.fq_index
            .entry(obj.type_name.clone())
            .or_default()
            .insert(obj.fq_name.clone(), id.clone());
        self.next_order += 1;
        self.order
            .entry(obj.type_name.clone())
            .or_default()
            .insert(self.next_order, id.clone());
        self.order_of.insert(id.clone(), self.next_order);
        if let Some(parent) = obj
            .parent_uuid
            .as_ref()
            .and_then(|p| self.objects.get_mut(p))
        {
            parent
                .children
                .entry(child_field(&obj.type_name))
                .or_default()
                .push(Ref::new(obj.fq_name.clone(), id.clone()));
        }
        self.link_refs(&obj);
        self.objects.insert(id.clone(), obj.clone());
        self.record(ChangeKind::Create, &obj);
        Ok(id)
    }

    /// Applies a validated partial update (properties and reference lists present in `req`).
    pub fn update(&mut self, id: &str, mut req: VncObject, ctx: &Ctx) -> Result<(), DbError> {
        let current = self.get_typed(&req.type_name, id)?.clone();
        let info = type_info(&current.type_name)?;
        if let Some(p) = req.fields.get("perms2")
            && p.get("owner").is_none()
        {
            return Err(DbError::BadRequest(
                "owner in perms2 must be present".into(),
            ));
        }
        self.resolve_refs(info, &mut req.refs)?;
        self.pre_update(&current, &mut req, ctx)?;
        let mut next = current.clone();
        for (k, v) in req.fields {
            match k.as_str() {
                "id_perms" => {
                    if let (Value::Object(new), Some(Value::Object(cur))) =
                        (&v, next.fields.get_mut("id_perms"))
                    {
                        for key in ["enable", "description"] {
                            if let Some(val) = new.get(key) {
                                cur.insert(key.into(), val.clone());
                            }
                        }
                    }
                }
                "perms2" => {
                    if let (Value::Object(new), Some(Value::Object(cur))) =
                        (&v, next.fields.get_mut("perms2"))
                    {
                        for (key, val) in new {
                            cur.insert(key.clone(), val.clone());
                        }
                    }
                }
                _ if v.is_null() => {
                    next.fields.remove(&k);
                }
                _ => {
                    next.fields.insert(k, v);
                }
            }
        }
        for (field, list) in req.refs {
            if list.is_empty() {
                next.refs.remove(&field);
            } else {
                next.refs.insert(field, list);
            }
        }
        self.check_tag_refs(&next.type_name, &next.refs)?;
        if let Some(Value::Object(p)) = next.fields.get_mut("id_perms") {
            p.insert("last_modified".into(), Value::String(now_timestamp()));
        }
        self.unlink_refs(&current);
        self.link_refs(&next);
        self.objects.insert(id.to_owned(), next);
        self.record_update(id);
        Ok(())
    }

    /// Deletes `id` after the real server's checks.
    pub fn delete(&mut self, type_name: &str, id: &str) -> Result<(), DbError> {
        let obj = self.get_typed(type_name, id)?.clone();
        let info = type_info(type_name)?;
        self.pre_delete(&obj)?;
        // Children: non-derived ones other than the type's default child block the delete.
        let mut cascade = Vec::new();
        for (field, children) in &obj.children {
            let Some(child_type) = info.children.get(field) else {
                continue;
            };
            let default_name = format!("default-{child_type}");
            let mut blocking = Vec::new();
            for c in children {
                if info.child_is_derived(child_type)
                    || c.to
                        .last()
                        .is_some_and(|n| *n == default_name || n == "draft-policy-management")
                {
                    cascade.push(((*child_type).to_owned(), c.uuid.clone()));
                } else {
                    blocking.push(format!("'/{child_type}/{}'", c.uuid));
                }
            }
            if !blocking.is_empty() {
                return Err(DbError::Conflict(format!(
                    "Delete when children still present: [{}]",
                    blocking.join(", ")
                )));
            }
        }
        let mut referred = Vec::new();
        for (field, back_refs) in &obj.back_refs {
            let Some(from_type) = info.back_refs.get(field) else {
                continue;
            };
            let derived = schema::resource(from_type)
                .and_then(|f| f.ref_to(type_name))
                .is_some_and(|r| r.derived);
            if derived {
                continue;
            }
            for b in back_refs {
                if !self.relaxed.contains(&(b.uuid.clone(), id.to_owned())) {
                    referred.push(format!("'/{from_type}/{}'", b.uuid));
                }
            }
        }
        if !referred.is_empty() {
            return Err(DbError::Conflict(format!(
                "Delete when resource still referred: [{}]",
                referred.join(", ")
            )));
        }
        for (child_type, child_id) in cascade {
            if self.objects.contains_key(&child_id) {
                self.delete(&child_type, &child_id)?;
            }
        }
        // Relaxed back-references are dropped along with the object.
        let relaxed_from: Vec<(String, String)> = obj
            .back_refs
            .values()
            .flatten()
            .filter_map(|b| {
                self.objects
                    .get(&b.uuid)
                    .map(|o| (o.type_name.clone(), b.uuid.clone()))
            })
            .collect();
        for (_, from) in &relaxed_from {
            if let Some(o) = self.objects.get_mut(from) {
                let mut changed = false;
                for list in o.refs.values_mut() {
                    let before = list.len();
                    list.retain(|r| r.uuid != id);
                    changed |= list.len() != before;
                }
                o.refs.retain(|_, l| !l.is_empty());
                if changed {
                    self.record_update(from);
                }
            }
        }
        let Some(obj) = self.objects.remove(id) else {
            return Ok(());
        };
        self.unlink_refs(&obj);
        if let Some(parent) = obj
            .parent_uuid
            .as_ref()
            .and_then(|p| self.objects.get_mut(p))
        {
            let field = child_field(&obj.type_name);
            if let Some(list) = parent.children.get_mut(&field) {
                list.retain(|c| c.uuid != id);
                if list.is_empty() {
                    parent.children.remove(&field);
                }
            }
        }
        if let Some(m) = self.fq_index.get_mut(&obj.type_name) {
            m.remove(&obj.fq_name);
        }
        if let Some(o) = self.order_of.remove(id)
            && let Some(m) = self.order.get_mut(&obj.type_name)
        {
            m.remove(&o);
        }
        self.relaxed.retain(|(a, b)| a != id && b != id);
        self.record(ChangeKind::Delete, &obj);
        self.post_delete(&obj);
        Ok(())
    }

    /// uuids of `type_name` in creation order.
    pub fn ids_of_type(&self, type_name: &str) -> Vec<String> {
        self.order
            .get(type_name)
            .map(|m| m.values().cloned().collect())
            .unwrap_or_default()
    }

    pub fn ref_update(&mut self, req: &RefUpdate, relax: bool) -> Result<(), DbError> {
        let info = type_info(&req.type_name)?;
        let ref_info = type_info(&req.ref_type)?;
        let Some(rs) = info.ref_to(ref_info.name()) else {
            return Err(DbError::BadRequest(format!(
                "Bad Request: {} has no reference to {}",
                info.name(),
                ref_info.name()
            )));
        };
        if req.type_name == "firewall-rule"
            && matches!(ref_info.name(), "tag" | "address-group")
            && req.operation == RefOperation::Add
        {
            return Err(DbError::BadRequest(format!(
                "Cannot directly define {} reference from a Firewall Rule. Use endpoints properties in the Firewall Rule",
                ref_info.name()
            )));
        }
        let ref_uuid = match (&req.ref_uuid, &req.ref_fq_name) {
            (Some(u), _) if !u.is_empty() => {
                if req.operation == RefOperation::Add {
                    match self.objects.get(u) {
                        Some(t) if t.type_name == ref_info.name() => {}
                        _ => return Err(DbError::NotFound(format!("ID {u} does not exist"))),
                    }
                }
                u.clone()
            }
            (_, Some(fq)) => self
                .lookup_fq(ref_info.name(), fq)
                .cloned()
                .ok_or_else(|| DbError::NotFound(format!("Name {} not found", pyrepr(fq))))?,
            _ => {
                return Err(DbError::BadRequest(
                    "Bad Request: ref-uuid or ref-fq-name must be specified".into(),
                ));
            }
        };
        let current = self.get_typed(info.name(), &req.uuid)?.clone();
        let mut attr = req.attr.clone().filter(|a| !a.is_null());
        if let (Some(attr_type), Some(a)) = (rs.attr, attr.as_mut()) {
            validate::validate_attr(attr_type, a)
                .map_err(|e| DbError::BadRequest(format!("Bad reference in ref-update: {e}")))?;
        }
        let mut list: Vec<Ref> = current.refs_of(rs.field).to_vec();
        match req.operation {
            RefOperation::Add => {
                let to = self
                    .objects
                    .get(&ref_uuid)
                    .map(|t| t.fq_name.clone())
                    .unwrap_or_default();
                if let Some(existing) = list.iter_mut().find(|r| r.uuid == ref_uuid) {
                    existing.attr = attr;
                } else {
                    list.push(Ref {
                        to,
                        uuid: ref_uuid.clone(),
                        attr,
                    });
                }
            }
            RefOperation::Delete => {
                let fq = req.ref_fq_name.clone();
                if let Some(pos) = list
                    .iter()
                    .position(|r| r.uuid == ref_uuid || Some(&r.to) == fq.as_ref())
                {
                    list.remove(pos);
                }
            }
        }
        let mut update = VncObject {
            type_name: current.type_name.clone(),
            uuid: current.uuid.clone(),
            ..VncObject::default()
        };
        update.refs.insert(rs.field.to_owned(), list);
        let ctx = Ctx {
            internal: true,
            ..Ctx::default()
        };
        self.update(&req.uuid, update, &ctx)?;
        if relax {
            self.relaxed.insert((req.uuid.clone(), ref_uuid));
        }
        Ok(())
    }

    pub fn relax(&mut self, id: &str, ref_uuid: &str) -> Result<(), DbError> {
        if !self.objects.contains_key(id) {
            return Err(DbError::NotFound(format!("uuid {id} not found")));
        }
        self.relaxed.insert((id.to_owned(), ref_uuid.to_owned()));
        Ok(())
    }

    fn take_pending(&mut self) -> Vec<Arc<Change>> {
        std::mem::take(&mut self.pending)
    }
}

fn drop_null_props(obj: &mut VncObject) {
    obj.fields.retain(|_, v| !v.is_null());
}

fn title_case(s: &str) -> String {
    s.split(' ')
        .map(|w| {
            let mut c = w.chars();
            match c.next() {
                Some(f) => f.to_uppercase().collect::<String>() + c.as_str(),
                None => String::new(),
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

struct Shared {
    state: RwLock<State>,
    tx: broadcast::Sender<Arc<Change>>,
}

/// The in-memory config database. Cheap to clone (all clones share one database); used by the
/// HTTP handlers and by in-process writers alike.
#[derive(Clone)]
pub struct ConfigDb {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for ConfigDb {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConfigDb")
            .field("objects", &self.read_state().objects.len())
            .finish()
    }
}

impl Default for ConfigDb {
    fn default() -> Self {
        Self::new()
    }
}

/// Parses the inner object of a request body into a validated [`VncObject`].
pub(crate) fn object_from_body(
    info: &TypeInfo,
    body: Value,
    op: Operation,
) -> Result<VncObject, DbError> {
    let Value::Object(mut map) = body else {
        return Err(DbError::BadRequest(format!(
            "Bad Request, the {} body must be a JSON object",
            info.name()
        )));
    };
    validate::validate_object(info, &mut map, op).map_err(DbError::BadRequest)?;
    VncObject::from_json(info.name(), &Value::Object(map))
        .map_err(|e| DbError::BadRequest(format!("Bad Request, {e}")))
}

impl ConfigDb {
    /// A database holding the objects a freshly started real API server has (default domain
    /// and project, ip-fabric and link-local networks, global system and vrouter config,
    /// default policy management and application policy set, predefined tag types, ...).
    pub fn new() -> Self {
        let (tx, _) = broadcast::channel(4096);
        let db = ConfigDb {
            shared: Arc::new(Shared {
                state: RwLock::new(State::default()),
                tx,
            }),
        };
        {
            let mut st = db.write_state();
            crate::defaults::populate(&mut st);
            st.take_pending();
        }
        db
    }

    pub(crate) fn read_state(&self) -> RwLockReadGuard<'_, State> {
        self.shared
            .state
            .read()
            .unwrap_or_else(PoisonError::into_inner)
    }

    fn write_state(&self) -> RwLockWriteGuard<'_, State> {
        self.shared
            .state
            .write()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Runs `f` under the write lock and publishes the changes it recorded, in order.
    pub(crate) fn write<T>(
        &self,
        f: impl FnOnce(&mut State) -> Result<T, DbError>,
    ) -> Result<T, DbError> {
        let mut st = self.write_state();
        let result = f(&mut st);
        for c in st.take_pending() {
            // No receiver is fine: the log keeps the change for later subscribers.
            let _ = self.shared.tx.send(c);
        }
        result
    }

    /// Creates an object from a request body (the inner object of `{"<type>": {...}}`).
    ///
    /// # Errors
    /// 404 unknown type or reference target, 400 schema violation or missing parent,
    /// 409 fq_name or uuid taken.
    pub fn create_json(&self, type_name: &str, body: Value) -> Result<VncObject, DbError> {
        self.create_json_as(type_name, body, None)
    }

    pub(crate) fn create_json_as(
        &self,
        type_name: &str,
        body: Value,
        project_id: Option<String>,
    ) -> Result<VncObject, DbError> {
        let info = type_info(type_name)?;
        let obj = object_from_body(info, body, Operation::Create)?;
        let ctx = Ctx {
            project_id,
            internal: false,
        };
        self.write(|st| {
            let id = st.create(obj, &ctx)?;
            st.get(&id)
                .cloned()
                .ok_or_else(|| DbError::NotFound(format!("ID {id} does not exist")))
        })
    }

    /// Creates `obj` (its properties and references; back-references and children are
    /// ignored) and returns it as stored.
    ///
    /// # Errors
    /// As [`ConfigDb::create_json`].
    pub fn create(&self, obj: &VncObject) -> Result<VncObject, DbError> {
        self.create_json(&obj.type_name, obj.to_create_body())
    }

    /// Creates a typed resource.
    ///
    /// # Errors
    /// As [`ConfigDb::create_json`].
    pub fn create_typed<R: Resource>(&self, r: &R) -> Result<VncObject, DbError> {
        let obj = r
            .to_object()
            .map_err(|e| DbError::BadRequest(format!("Bad Request, {e}")))?;
        self.create(&obj)
    }

    /// Applies a partial update body to `uuid` (`PUT /<type>/<uuid>`): the properties and
    /// reference fields present replace the stored ones; a null property is removed.
    ///
    /// # Errors
    /// 404 missing object or target, 400 schema violation or a rule of the type.
    pub fn update_json(
        &self,
        type_name: &str,
        uuid: &str,
        body: Value,
    ) -> Result<VncObject, DbError> {
        let info = type_info(type_name)?;
        let mut obj = object_from_body(info, body, Operation::Update)?;
        obj.uuid = uuid.to_owned();
        self.write(|st| {
            st.update(uuid, obj, &Ctx::default())?;
            st.get(uuid)
                .cloned()
                .ok_or_else(|| DbError::NotFound(format!("ID {uuid} does not exist")))
        })
    }

    /// Updates the properties and reference fields present in `obj` (by `obj.uuid`).
    ///
    /// # Errors
    /// As [`ConfigDb::update_json`].
    pub fn update(&self, obj: &VncObject) -> Result<VncObject, DbError> {
        let mut body = obj.to_create_body();
        if let Value::Object(m) = &mut body {
            m.remove("fq_name");
            m.remove("parent_type");
            m.remove("uuid");
        }
        self.update_json(&obj.type_name, &obj.uuid, body)
    }

    /// Deletes an object.
    ///
    /// # Errors
    /// 404 missing, 409 still referred to or with children.
    pub fn delete(&self, type_name: &str, uuid: &str) -> Result<(), DbError> {
        type_info(type_name)?;
        self.write(|st| st.delete(type_name, uuid))
    }

    /// The object `uuid` of `type_name`, with refs, back-refs and children.
    ///
    /// # Errors
    /// 404 when missing or of another type.
    pub fn read(&self, type_name: &str, uuid: &str) -> Result<VncObject, DbError> {
        type_info(type_name)?;
        self.read_state().get_typed(type_name, uuid).cloned()
    }

    /// A typed view of object `uuid`.
    ///
    /// # Errors
    /// 404 when missing, 400 when the object does not fit the view.
    pub fn read_typed<R: Resource>(&self, uuid: &str) -> Result<R, DbError> {
        let obj = self.read(R::TYPE, uuid)?;
        R::from_object(&obj).map_err(|e| DbError::BadRequest(e.to_string()))
    }

    /// The object `uuid` whatever its type.
    pub fn get(&self, uuid: &str) -> Option<VncObject> {
        self.read_state().get(uuid).cloned()
    }

    /// The object of `type_name` called `fq_name`.
    pub fn get_by_fq_name(&self, type_name: &str, fq_name: &[String]) -> Option<VncObject> {
        let st = self.read_state();
        st.lookup_fq(type_name, fq_name)
            .and_then(|id| st.get(id))
            .cloned()
    }

    /// `fqname-to-id`.
    ///
    /// # Errors
    /// 404 unknown type or name.
    pub fn fq_name_to_uuid(&self, type_name: &str, fq_name: &[String]) -> Result<String, DbError> {
        let info = type_info(type_name)?;
        self.read_state()
            .lookup_fq(info.name(), fq_name)
            .cloned()
            .ok_or_else(|| DbError::NotFound(format!("Name {} not found", pyrepr(fq_name))))
    }

    /// `id-to-fqname`: type and fq_name of `uuid`.
    ///
    /// # Errors
    /// 404 unknown uuid.
    pub fn uuid_to_fq_name(&self, uuid: &str) -> Result<(String, Vec<String>), DbError> {
        self.read_state()
            .get(uuid)
            .map(|o| (o.type_name.clone(), o.fq_name.clone()))
            .ok_or_else(|| DbError::NotFound(format!("UUID {uuid} not found")))
    }

    /// Objects of `type_name` matching `params` (parent, back-ref, uuid and field filters are
    /// ANDed), in creation order. `detail` and `fields` only matter to the HTTP layer.
    ///
    /// # Errors
    /// 404 unknown type.
    pub fn list(&self, type_name: &str, params: &ListParams) -> Result<Vec<VncObject>, DbError> {
        let info = type_info(type_name)?;
        let st = self.read_state();
        let mut parent_ids: Option<HashSet<String>> = None;
        if let Some(pfq) = &params.parent_fq_name {
            let set = info
                .schema
                .parents
                .iter()
                .filter_map(|p| st.lookup_fq(p, pfq).cloned())
                .collect();
            parent_ids = Some(set);
        } else if !params.parent_id.is_empty() {
            parent_ids = Some(params.parent_id.iter().cloned().collect());
        }
        let back: Option<HashSet<&str>> = (!params.back_ref_id.is_empty())
            .then(|| params.back_ref_id.iter().map(String::as_str).collect());
        let wanted: Option<HashSet<&str>> = (!params.obj_uuids.is_empty())
            .then(|| params.obj_uuids.iter().map(String::as_str).collect());
        let mut filters: HashMap<&str, Vec<&Value>> = HashMap::new();
        for (k, v) in &params.filters {
            filters.entry(k.as_str()).or_default().push(v);
        }
        let out = st
            .ids_of_type(info.name())
            .iter()
            .filter_map(|id| st.get(id))
            .filter(|o| {
                parent_ids
                    .as_ref()
                    .is_none_or(|p| o.parent_uuid.as_ref().is_some_and(|u| p.contains(u)))
            })
            .filter(|o| {
                back.as_ref().is_none_or(|b| {
                    o.refs
                        .values()
                        .flatten()
                        .any(|r| b.contains(r.uuid.as_str()))
                })
            })
            .filter(|o| wanted.as_ref().is_none_or(|w| w.contains(o.uuid.as_str())))
            .filter(|o| {
                filters.iter().all(|(k, values)| {
                    let actual = match *k {
                        "uuid" => Some(Value::String(o.uuid.clone())),
                        "name" => Some(Value::String(o.name().to_owned())),
                        _ => o.fields.get(*k).cloned(),
                    };
                    actual.is_some_and(|a| values.iter().any(|v| **v == a))
                })
            })
            .cloned()
            .collect();
        Ok(out)
    }

    /// `ref-update`.
    ///
    /// # Errors
    /// 404 unknown object/target/type, 400 malformed request or type without such a reference.
    pub fn ref_update(&self, req: &RefUpdate) -> Result<(), DbError> {
        self.write(|st| st.ref_update(req, false))
    }

    /// `ref-update` that also relaxes the new reference for the target's deletion (what
    /// `relax_ref_for_delete: true` in the request body asks).
    ///
    /// # Errors
    /// As [`ConfigDb::ref_update`].
    pub fn ref_update_relaxed(&self, req: &RefUpdate) -> Result<(), DbError> {
        self.write(|st| st.ref_update(req, true))
    }

    /// `ref-relax-for-delete`: the reference from `uuid` to `ref_uuid` no longer blocks
    /// deleting `ref_uuid`.
    ///
    /// # Errors
    /// 404 unknown `uuid`.
    pub fn ref_relax_for_delete(&self, uuid: &str, ref_uuid: &str) -> Result<(), DbError> {
        self.write(|st| st.relax(uuid, ref_uuid))
    }

    /// `set-tag`: `changes` maps tag types to `{"value", "is_global"}`,
    /// `{"add_values", "delete_values", "is_global"}` or null (unset).
    ///
    /// # Errors
    /// 404 unknown object or tag, 400 invalid change.
    pub fn set_tags(
        &self,
        obj_type: &str,
        uuid: &str,
        changes: &Map<String, Value>,
    ) -> Result<(), DbError> {
        self.write(|st| st.set_tags(obj_type, uuid, changes))
    }

    /// `prop-collection-update` on a list or map property.
    ///
    /// # Errors
    /// 404 unknown object, 400 invalid operation.
    pub fn prop_collection_update(&self, uuid: &str, updates: &[Value]) -> Result<(), DbError> {
        self.write(|st| st.prop_collection_update(uuid, updates))
    }

    /// The current sequence number (the last change recorded).
    pub fn current_seq(&self) -> u64 {
        self.read_state().seq
    }

    /// Subscribes to changes after `since` (`None`: only future changes).
    ///
    /// # Errors
    /// `Truncated` when the log no longer holds every change after `since`.
    pub fn subscribe(&self, since: Option<u64>) -> Result<Subscription, WatchError> {
        let st = self.read_state();
        let rx = self.shared.tx.subscribe();
        let current = st.seq;
        let since = since.unwrap_or(current).min(current);
        let oldest = st.log.front().map_or(current + 1, |c| c.seq);
        if since + 1 < oldest {
            return Err(WatchError::Truncated {
                requested: since,
                oldest,
                current,
            });
        }
        let backlog = st.log.iter().filter(|c| c.seq > since).cloned().collect();
        // A subscriber that falls behind the live buffer (bursts of thousands of writes)
        // catches up from the log; the subscription does not keep the database alive.
        let weak = Arc::downgrade(&self.shared);
        let resubscribe: crate::change::Resubscribe = Arc::new(move |from: u64| {
            let shared = weak.upgrade().ok_or(WatchError::Closed)?;
            ConfigDb { shared }.subscribe(Some(from))
        });
        Ok(Subscription {
            backlog,
            rx,
            last: since,
            resubscribe: Some(resubscribe),
        })
    }

    /// Rules of the api-access-lists that apply to a caller in `project_id` (global, then the
    /// project's domain or `domain_id`, then the project), in the real server's merge order.
    pub fn rbac_rules(&self, project_id: Option<&str>, domain_id: Option<&str>) -> Vec<Value> {
        let st = self.read_state();
        let mut owners: Vec<String> = Vec::new();
        if let Some(gsc) = st.lookup_fq(
            "global-system-config",
            &["default-global-system-config".to_owned()],
        ) {
            owners.push(gsc.clone());
        }
        let project = project_id.and_then(|p| find_by_loose_uuid(&st, p));
        let domain = domain_id
            .and_then(|d| find_by_loose_uuid(&st, d))
            .or_else(|| {
                project
                    .as_ref()
                    .and_then(|p| st.get(p))
                    .and_then(|p| p.parent_uuid.clone())
            })
            .or_else(|| {
                st.lookup_fq("domain", &["default-domain".to_owned()])
                    .cloned()
            });
        owners.extend(domain);
        owners.extend(project);
        let mut rules = Vec::new();
        for owner in owners {
            let Some(o) = st.get(&owner) else { continue };
            for acl in o.children_of("api_access_lists") {
                if let Some(entries) = st
                    .get(&acl.uuid)
                    .and_then(|a| a.fields.get("api_access_list_entries"))
                    .and_then(|e| e.get("rbac_rule"))
                    .and_then(Value::as_array)
                {
                    rules.extend(entries.iter().cloned());
                }
            }
        }
        rules
    }

    /// Adds the global default RBAC rules (`/`, fqname-to-id, id-to-fqname, documentation,
    /// useragent-kv for every role) like a real server switched to `aaa_mode=rbac`.
    pub fn ensure_default_rbac_rules(&self) {
        let _ = self.write(|st| {
            crate::defaults::default_rbac_rules(st);
            Ok(())
        });
    }

    /// Injects (or clears) the `service-chain-bypassed` fault: from now on network-policy
    /// rules are stored without `action_list.apply_service`, so service chains written
    /// through the API are not steered through their service instance.
    pub fn set_service_chain_bypass(&self, on: bool) {
        let _ = self.write(|st| {
            st.strip_apply_service = on;
            Ok(())
        });
    }

    /// Number of objects stored.
    pub fn len(&self) -> usize {
        self.read_state().objects.len()
    }

    /// Whether the database is empty (never true for a database from [`ConfigDb::new`]).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Stores a user-agent key/value (`/useragent-kv` STORE).
    pub fn kv_store(&self, key: &str, value: &str) {
        let _ = self.write(|st| {
            st.kv.insert(key.to_owned(), value.to_owned());
            Ok(())
        });
    }

    /// Reads a user-agent key.
    pub fn kv_retrieve(&self, key: &str) -> Option<String> {
        self.read_state().kv.get(key).cloned()
    }

    /// Deletes a user-agent key.
    pub fn kv_delete(&self, key: &str) {
        let _ = self.write(|st| {
            st.kv.remove(key);
            Ok(())
        });
    }
}

/// A uuid given with or without dashes (keystone project ids have none).
fn find_by_loose_uuid(st: &State, id: &str) -> Option<String> {
    if st.objects.contains_key(id) {
        return Some(id.to_owned());
    }
    uuid::Uuid::parse_str(id)
        .ok()
        .map(|u| u.hyphenated().to_string())
        .filter(|u| st.objects.contains_key(u))
}
