//! Type-specific behaviour of the real API server that clients rely on (research §6.3):
//! tags (type lower-cased, name `type=value`, `tag_id` 0xTTTTVVVV, tag-type auto-created),
//! tag-types (ids from 0x00ff for custom types), firewall rules (`protocol_id`,
//! `match_tag_types` default, `tag_ids`/`tag_refs`/`address_group_refs` derived from the
//! endpoints), virtual networks (network id, IPAM subnet uuids, system networks undeletable),
//! IPAM subnet uuids, security-group ids, set-tag and property collections.

use std::collections::{BTreeSet, HashSet};

use harness_contrail_vnc::schema::{self, PropCollection};
use harness_contrail_vnc::validate;
use harness_contrail_vnc::{Ref, VncObject};
use serde_json::{Map, Value, json};

use crate::db::{Ctx, DbError, State, new_uuid, pyrepr, type_info};

/// Tag types with their fixed ids (`TagTypeNameToId` of the real system).
pub const PREDEFINED_TAG_TYPES: &[(&str, u16)] = &[
    ("label", 0),
    ("application", 1),
    ("tier", 2),
    ("deployment", 3),
    ("site", 4),
    ("neutron_fwaas", 5),
    ("neutron_tag", 6),
];

/// Tag types an object may carry several values of.
pub const TAG_TYPES_NOT_UNIQUE: &[&str] = &["label", "neutron_tag"];

/// First id given to a custom tag type.
pub const FIRST_CUSTOM_TAG_TYPE_ID: u16 = 0x00ff;

/// `match_tag_types` the server stores when a rule has no `match_tags`.
pub const DEFAULT_MATCH_TAG_TYPES: &[u16] = &[1];

/// Protocol names a firewall rule's `service.protocol` may use.
const PROTOCOLS: &[(&str, u8)] = &[
    ("any", 0),
    ("icmp", 1),
    ("igmp", 2),
    ("tcp", 6),
    ("udp", 17),
    ("gre", 47),
    ("esp", 50),
    ("ah", 51),
    ("icmp6", 58),
    ("ipv6-icmp", 58),
    ("ospf", 89),
    ("pim", 103),
    ("vrrp", 112),
    ("sctp", 132),
];

/// Base of security-group ids (`SGID_MIN_ALLOC`); id 0 is reserved.
const SG_ID_BASE: u64 = 8_000_000;

fn lowest_free(used: &HashSet<u16>, start: u16) -> Option<u16> {
    (start..=u16::MAX).find(|i| !used.contains(i))
}

impl State {
    /// `pre_dbe_alloc`: runs before the fq_name uniqueness check.
    pub(crate) fn pre_alloc(&mut self, obj: &mut VncObject) -> Result<(), DbError> {
        if obj.type_name == "tag" {
            let t = obj.fields.get("tag_type_name").and_then(Value::as_str);
            let v = obj.fields.get("tag_value").and_then(Value::as_str);
            let (Some(t), Some(v)) = (t, v) else {
                return Err(DbError::BadRequest(
                    "Tag must be created with a type and a value".into(),
                ));
            };
            let t = t.to_lowercase();
            let name = format!("{t}={v}");
            let v = v.to_owned();
            if let Some(last) = obj.fq_name.last_mut() {
                *last = name.clone();
            }
            obj.fields
                .insert("display_name".into(), Value::String(name));
            obj.fields.insert("tag_type_name".into(), Value::String(t));
            obj.fields.insert("tag_value".into(), Value::String(v));
        }
        Ok(())
    }

    /// `pre_dbe_create`: system fields and checks, after identity and perms are set.
    pub(crate) fn pre_create(&mut self, obj: &mut VncObject, ctx: &Ctx) -> Result<(), DbError> {
        match obj.type_name.as_str() {
            "tag" => self.tag_pre_create(obj, ctx),
            "tag-type" => self.tag_type_pre_create(obj, ctx),
            "firewall-rule" => self.firewall_rule_fix(obj, None, ctx),
            "virtual-network" => {
                self.ids.next_vn_id += 1;
                obj.fields.insert(
                    "virtual_network_network_id".into(),
                    json!(self.ids.next_vn_id),
                );
                self.fill_vn_ipam_subnets(obj)
            }
            "network-ipam" => {
                fill_ipam_subnets(obj);
                Ok(())
            }
            "instance-ip" => self.allocate_instance_ip(obj),
            "floating-ip" => self.allocate_floating_ip(obj),
            "network-policy" => {
                self.strip_service_chains(obj);
                Ok(())
            }
            "security-group" => {
                if obj
                    .fields
                    .get("security_group_id")
                    .is_none_or(Value::is_null)
                {
                    self.ids.next_sg_id += 1;
                    obj.fields.insert(
                        "security_group_id".into(),
                        json!(SG_ID_BASE + self.ids.next_sg_id),
                    );
                }
                Ok(())
            }
            _ => Ok(()),
        }
    }

    /// `pre_dbe_update`: type rules for a partial update `req` of `current`.
    pub(crate) fn pre_update(
        &mut self,
        current: &VncObject,
        req: &mut VncObject,
        ctx: &Ctx,
    ) -> Result<(), DbError> {
        match current.type_name.as_str() {
            "tag" => {
                let touched = ["display_name", "tag_type_name", "tag_value", "tag_id"]
                    .iter()
                    .any(|f| req.fields.get(*f).is_some_and(|v| !v.is_null()));
                if touched {
                    return Err(DbError::BadRequest(
                        "Tag name, type, value or ID cannot be updated".into(),
                    ));
                }
                if req.refs.contains_key("tag_type_refs") && !ctx.internal {
                    return Err(DbError::BadRequest(
                        "Tag-type reference cannot be updated".into(),
                    ));
                }
                Ok(())
            }
            "tag-type" => {
                let touched = ["display_name", "tag_type_id"]
                    .iter()
                    .any(|f| req.fields.get(*f).is_some_and(|v| !v.is_null()));
                if touched {
                    return Err(DbError::BadRequest(
                        "Tag Type value or ID cannot be updated".into(),
                    ));
                }
                Ok(())
            }
            "firewall-rule" => self.firewall_rule_fix(req, Some(current), ctx),
            "virtual-network" => {
                req.fields.remove("virtual_network_network_id");
                self.fill_vn_ipam_subnets(req)
            }
            "network-ipam" => {
                fill_ipam_subnets(req);
                Ok(())
            }
            "network-policy" => {
                self.strip_service_chains(req);
                Ok(())
            }
            _ => Ok(()),
        }
    }

    /// The `service-chain-bypassed` fault: drops `apply_service` from every rule.
    fn strip_service_chains(&self, obj: &mut VncObject) {
        if !self.strip_apply_service {
            return;
        }
        if let Some(rules) = obj
            .fields
            .get_mut("network_policy_entries")
            .and_then(|e| e.get_mut("policy_rule"))
            .and_then(Value::as_array_mut)
        {
            for r in rules {
                if let Some(Value::Object(a)) = r.get_mut("action_list") {
                    a.remove("apply_service");
                }
            }
        }
    }

    /// Checks before a delete.
    pub(crate) fn pre_delete(&self, obj: &VncObject) -> Result<(), DbError> {
        if obj.type_name == "virtual-network" {
            let fq: Vec<&str> = obj.fq_name.iter().map(String::as_str).collect();
            if fq == ["default-domain", "default-project", "ip-fabric"]
                || fq == ["default-domain", "default-project", "__link_local__"]
            {
                return Err(DbError::Conflict(format!(
                    "Can not delete system created default virtual-network {}",
                    obj.uuid
                )));
            }
        }
        Ok(())
    }

    /// Releases ids and removes a custom tag-type no other tag uses.
    pub(crate) fn post_delete(&mut self, obj: &VncObject) {
        if let Some((scope, ip)) = self.ip_owner.remove(&obj.uuid)
            && let Some(used) = self.ips_in_use.get_mut(&scope)
        {
            used.remove(&ip);
        }
        match obj.type_name.as_str() {
            "tag" => {
                let tag_type = obj
                    .fields
                    .get("tag_type_name")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_owned();
                if let Some(value_id) = obj
                    .fields
                    .get("tag_id")
                    .and_then(Value::as_str)
                    .and_then(|s| u32::from_str_radix(s.trim_start_matches("0x"), 16).ok())
                    && let Some(used) = self.ids.tag_values_used.get_mut(&tag_type)
                {
                    used.remove(&((value_id & 0xffff) as u16));
                }
                if PREDEFINED_TAG_TYPES.iter().any(|(n, _)| *n == tag_type) {
                    return;
                }
                for r in obj.refs_of("tag_type_refs").to_vec() {
                    let unused = self
                        .get(&r.uuid)
                        .is_some_and(|tt| tt.back_refs_of("tag_back_refs").is_empty());
                    if unused {
                        let _ = self.delete("tag-type", &r.uuid);
                    }
                }
            }
            "tag-type" => {
                if let Some(id) = obj
                    .fields
                    .get("tag_type_id")
                    .and_then(Value::as_str)
                    .and_then(|s| u16::from_str_radix(s.trim_start_matches("0x"), 16).ok())
                {
                    self.ids.tag_types_used.remove(&id);
                }
            }
            _ => {}
        }
    }

    fn tag_type_pre_create(&mut self, obj: &mut VncObject, ctx: &Ctx) -> Result<(), DbError> {
        let name = obj.name().to_owned();
        obj.fields
            .insert("display_name".into(), Value::String(name.clone()));
        let requested = obj
            .fields
            .get("tag_type_id")
            .and_then(Value::as_str)
            .map(str::to_owned);
        let id = match (requested, ctx.internal) {
            (Some(s), true) => u16::from_str_radix(s.trim_start_matches("0x"), 16)
                .map_err(|_| DbError::BadRequest(format!("Invalid tag type id {s}")))?,
            (Some(_), false) => {
                return Err(DbError::BadRequest("Tag Type ID is not setable".into()));
            }
            (None, _) => match PREDEFINED_TAG_TYPES.iter().find(|(n, _)| *n == name) {
                Some((_, id)) if !self.ids.tag_types_used.contains(id) => *id,
                _ => lowest_free(&self.ids.tag_types_used, FIRST_CUSTOM_TAG_TYPE_ID)
                    .ok_or_else(|| DbError::BadRequest("Failed to allocate tag type Id".into()))?,
            },
        };
        if !self.ids.tag_types_used.insert(id) {
            return Err(DbError::BadRequest(
                "Tag Type with same Id already exists".into(),
            ));
        }
        obj.fields
            .insert("tag_type_id".into(), Value::String(format!("0x{id:04x}")));
        Ok(())
    }

    /// The tag-type object `[type]`, created (invisible to users) when missing.
    fn locate_tag_type(&mut self, type_name: &str) -> Result<(String, u16), DbError> {
        let fq = vec![type_name.to_owned()];
        let id = match self.lookup_fq("tag-type", &fq).cloned() {
            Some(id) => id,
            None => {
                let obj = VncObject::new("tag-type", fq.clone())
                    .with_prop("id_perms", json!({"user_visible": false}));
                self.create(
                    obj,
                    &Ctx {
                        internal: true,
                        ..Ctx::default()
                    },
                )?
            }
        };
        let type_id = self
            .get(&id)
            .and_then(|t| t.fields.get("tag_type_id"))
            .and_then(Value::as_str)
            .and_then(|s| u16::from_str_radix(s.trim_start_matches("0x"), 16).ok())
            .ok_or_else(|| DbError::NotFound(format!("tag-type {type_name} has no id")))?;
        Ok((id, type_id))
    }

    fn tag_pre_create(&mut self, obj: &mut VncObject, _ctx: &Ctx) -> Result<(), DbError> {
        if obj.fields.get("tag_id").is_some_and(|v| !v.is_null()) {
            return Err(DbError::BadRequest("Tag ID is not setable".into()));
        }
        if obj.refs.contains_key("tag_type_refs") {
            return Err(DbError::BadRequest(
                "Tag Type reference is not setable".into(),
            ));
        }
        let tag_type = obj
            .fields
            .get("tag_type_name")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned();
        let (tt_uuid, type_id) = self.locate_tag_type(&tag_type)?;
        let used = self
            .ids
            .tag_values_used
            .entry(tag_type.clone())
            .or_default();
        let value_id = lowest_free(used, 0)
            .ok_or_else(|| DbError::BadRequest(format!("no tag value id left for {tag_type}")))?;
        used.insert(value_id);
        obj.refs.insert(
            "tag_type_refs".into(),
            vec![Ref::new(vec![tag_type], tt_uuid)],
        );
        obj.fields.insert(
            "tag_id".into(),
            Value::String(format!("0x{type_id:04x}{value_id:04x}")),
        );
        if let Some(Value::Object(p)) = obj.fields.get_mut("perms2") {
            p.insert("global_access".into(), json!(7));
            p.insert("owner".into(), json!("cloud-admin"));
        }
        Ok(())
    }

    /// Firewall-rule create/update: service, protocol id, match tags, endpoint exclusivity,
    /// endpoint tags → `tag_ids` + `tag_refs`, endpoint address group → `address_group_refs`.
    fn firewall_rule_fix(
        &mut self,
        req: &mut VncObject,
        current: Option<&VncObject>,
        ctx: &Ctx,
    ) -> Result<(), DbError> {
        let service = req
            .fields
            .get("service")
            .or_else(|| current.and_then(|c| c.fields.get("service")))
            .filter(|v| !v.is_null())
            .cloned();
        let sg_refs = req
            .refs
            .get("service_group_refs")
            .or_else(|| current.and_then(|c| c.refs.get("service_group_refs")))
            .is_some_and(|l| !l.is_empty());
        match (service.is_some(), sg_refs) {
            (true, true) => {
                return Err(DbError::BadRequest(
                    "Firewall Rule cannot have both defined 'service' property and Service Group reference(s)".into(),
                ));
            }
            (false, false) => {
                return Err(DbError::BadRequest(
                    "Firewall Rule requires at least 'service' property or Service Group references(s)".into(),
                ));
            }
            _ => {}
        }
        if current.is_none() && !req.fields.contains_key("match_tags") {
            req.fields.insert(
                "match_tag_types".into(),
                json!({"tag_type": DEFAULT_MATCH_TAG_TYPES}),
            );
        }
        if let Some(Value::Object(svc)) = req.fields.get_mut("service")
            && let Some(proto) = svc
                .get("protocol")
                .and_then(Value::as_str)
                .map(str::to_owned)
        {
            let id = if !proto.is_empty() && proto.chars().all(|c| c.is_ascii_digit()) {
                proto
                    .parse::<u16>()
                    .ok()
                    .filter(|n| *n <= 255)
                    .ok_or_else(|| DbError::BadRequest(format!("Invalid protocol: {proto}")))?
            } else {
                PROTOCOLS
                    .iter()
                    .find(|(n, _)| *n == proto)
                    .map(|(_, id)| u16::from(*id))
                    .ok_or_else(|| DbError::BadRequest(format!("Invalid protocol: {proto}")))?
            };
            svc.insert("protocol_id".into(), json!(id));
        }
        if let Some(mt) = req.fields.get("match_tags").cloned() {
            let mut ids = Vec::new();
            for t in mt
                .get("tag_list")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                let t = t.as_str().unwrap_or_default().to_lowercase();
                if t == "label" {
                    return Err(DbError::BadRequest(
                        "labels not allowed as match-tags".into(),
                    ));
                }
                let id = match PREDEFINED_TAG_TYPES.iter().find(|(n, _)| *n == t) {
                    Some((_, id)) => *id,
                    None => {
                        let tt = self
                            .lookup_fq("tag-type", std::slice::from_ref(&t))
                            .and_then(|id| self.get(id))
                            .ok_or_else(|| {
                                DbError::NotFound(format!("tag-type ['{t}'] not found"))
                            })?;
                        tt.fields
                            .get("tag_type_id")
                            .and_then(Value::as_str)
                            .and_then(|s| u16::from_str_radix(s.trim_start_matches("0x"), 16).ok())
                            .unwrap_or_default()
                    }
                };
                ids.push(id);
            }
            req.fields
                .insert("match_tag_types".into(), json!({"tag_type": ids}));
        }
        for ep in ["endpoint_1", "endpoint_2"] {
            if let Some(Value::Object(e)) = req.fields.get(ep) {
                let set = ["tags", "address_group", "virtual_network", "subnet", "any"]
                    .iter()
                    .filter(|k| e.get(**k).is_some_and(|v| !validate::is_falsy(v)))
                    .count();
                if set > 1 {
                    return Err(DbError::BadRequest(
                        "Endpoint is limited to only one endpoint type at a time".into(),
                    ));
                }
            }
        }
        if !ctx.internal {
            for (field, what) in [
                ("tag_refs", "Tags"),
                ("address_group_refs", "Address Group"),
            ] {
                let given = req
                    .refs
                    .get(field)
                    .is_some_and(|l| current.is_some() || !l.is_empty());
                if given {
                    let prop = if field == "tag_refs" {
                        "tags"
                    } else {
                        "address_group"
                    };
                    return Err(DbError::BadRequest(format!(
                        "Cannot directly define {what} reference from a Firewall Rule. Use '{prop}' endpoints property in the Firewall Rule"
                    )));
                }
            }
        }
        let any_endpoint =
            req.fields.contains_key("endpoint_1") || req.fields.contains_key("endpoint_2");
        if !any_endpoint {
            return Ok(());
        }
        let fq = current.map_or_else(|| req.fq_name.clone(), |c| c.fq_name.clone());
        let parent_type =
            current.map_or_else(|| req.parent_type.clone(), |c| c.parent_type.clone());
        let mut tag_refs: Vec<Ref> = Vec::new();
        let mut ag_refs: Vec<Ref> = Vec::new();
        for ep in ["endpoint_1", "endpoint_2"] {
            let source = if req.fields.contains_key(ep) {
                req.fields.get_mut(ep)
            } else {
                None
            };
            let from_current = current.and_then(|c| c.fields.get(ep)).cloned();
            let mut owned;
            let (e, write_back) = match source {
                Some(v) => (v, true),
                None => match from_current {
                    Some(v) => {
                        owned = v;
                        (&mut owned, false)
                    }
                    None => continue,
                },
            };
            let Some(e) = e.as_object_mut() else { continue };
            let tags: BTreeSet<String> = e
                .get("tags")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(|t| t.as_str().map(str::to_owned))
                .collect();
            let mut tag_ids = Vec::new();
            for tag in tags {
                if !tag.contains('=') {
                    return Err(DbError::NotFound(format!("Invalid tag name '{tag}'")));
                }
                let tag_fq = if let Some(global) = tag.strip_prefix("global:") {
                    vec![global.to_owned()]
                } else if parent_type.as_deref() == Some("policy-management") {
                    let mut f = fq[..fq.len().saturating_sub(2)].to_vec();
                    f.push(tag.clone());
                    f
                } else if parent_type.as_deref() == Some("project") {
                    let mut f = fq[..fq.len().saturating_sub(1)].to_vec();
                    f.push(tag.clone());
                    f
                } else {
                    return Err(DbError::BadRequest(format!(
                        "Firewall rule parent type '{}' is not supported as security resource scope",
                        parent_type.clone().unwrap_or_default()
                    )));
                };
                let tag_uuid = self.lookup_fq("tag", &tag_fq).cloned().ok_or_else(|| {
                    DbError::NotFound(format!("tag {} not found", pyrepr(&tag_fq)))
                })?;
                let tag_id = self
                    .get(&tag_uuid)
                    .and_then(|t| t.fields.get("tag_id"))
                    .and_then(Value::as_str)
                    .and_then(|s| i64::from_str_radix(s.trim_start_matches("0x"), 16).ok())
                    .unwrap_or_default();
                tag_ids.push(tag_id);
                if !tag_refs.iter().any(|r| r.uuid == tag_uuid) {
                    tag_refs.push(Ref::new(tag_fq, tag_uuid));
                }
            }
            if write_back {
                e.insert("tag_ids".into(), json!(tag_ids));
            }
            if let Some(ag) = e
                .get("address_group")
                .and_then(Value::as_str)
                .filter(|s| !s.is_empty())
            {
                let ag_fq: Vec<String> = ag.split(':').map(str::to_owned).collect();
                let ag_uuid = self
                    .lookup_fq("address-group", &ag_fq)
                    .cloned()
                    .ok_or_else(|| {
                        DbError::NotFound(format!("No Address Group object found for {ag}"))
                    })?;
                if !ag_refs.iter().any(|r| r.uuid == ag_uuid) {
                    ag_refs.push(Ref::new(ag_fq, ag_uuid));
                }
            }
        }
        req.refs.insert("tag_refs".into(), tag_refs);
        req.refs.insert("address_group_refs".into(), ag_refs);
        Ok(())
    }

    /// Subnet uuids (and gateway / DNS addresses for user-defined subnets) on the IPAM
    /// references of a network; a flat-subnet reference gets `[{subnet_uuid}]`.
    fn fill_vn_ipam_subnets(&self, obj: &mut VncObject) -> Result<(), DbError> {
        let Some(refs) = obj.refs.get_mut("network_ipam_refs") else {
            return Ok(());
        };
        for r in refs.iter_mut() {
            let ipam = self.get(&r.uuid);
            let flat = ipam
                .and_then(|i| i.fields.get("ipam_subnet_method"))
                .and_then(Value::as_str)
                == Some("flat-subnet");
            let attr = r.attr.get_or_insert_with(|| json!({"ipam_subnets": []}));
            if !attr.is_object() {
                *attr = json!({"ipam_subnets": []});
            }
            let subnets = attr
                .as_object_mut()
                .map(|m| m.entry("ipam_subnets").or_insert_with(|| json!([])));
            let Some(subnets) = subnets else { continue };
            if subnets.is_null() {
                *subnets = json!([]);
            }
            let Some(list) = subnets.as_array_mut() else {
                continue;
            };
            if flat {
                if list
                    .iter()
                    .any(|s| s.get("subnet").is_some_and(|v| !v.is_null()))
                {
                    return Err(DbError::BadRequest(format!(
                        "Virtual network {} can not have user-defined subnets on flat-subnet ipam {}",
                        obj.fq_name.join(":"),
                        r.to.join(":")
                    )));
                }
                if list.is_empty() {
                    let ipam_subnet_uuid = ipam
                        .and_then(|i| i.fields.get("ipam_subnets"))
                        .and_then(|s| s.get("subnets"))
                        .and_then(Value::as_array)
                        .and_then(|a| a.first())
                        .and_then(|s| s.get("subnet_uuid"))
                        .and_then(Value::as_str)
                        .map(str::to_owned)
                        .unwrap_or_else(new_uuid);
                    list.push(json!({"subnet_uuid": ipam_subnet_uuid}));
                }
            } else {
                for s in list.iter_mut() {
                    fill_subnet_defaults(s);
                }
            }
        }
        Ok(())
    }

    /// `set-tag`.
    pub(crate) fn set_tags(
        &mut self,
        obj_type: &str,
        id: &str,
        changes: &Map<String, Value>,
    ) -> Result<(), DbError> {
        let info = schema::resource(obj_type)
            .or_else(|| schema::resource(&obj_type.replace('_', "-")))
            .ok_or_else(|| {
                DbError::BadRequest(format!("Invalid Contrail resource type: {obj_type}"))
            })?;
        let obj = self
            .get(id)
            .filter(|o| o.type_name == info.name())
            .ok_or_else(|| DbError::NotFound(format!("ID {id} does not exist")))?
            .clone();
        let mut tag_refs = obj.refs_of("tag_refs").to_vec();
        let mut need_update = false;
        let locate = |st: &State,
                      tag_type: &str,
                      value: &str,
                      is_global: bool|
         -> Result<Ref, DbError> {
            let name = format!("{tag_type}={value}");
            let fq = if is_global {
                vec![name]
            } else if obj.type_name == "project" {
                let mut f = obj.fq_name.clone();
                f.push(name);
                f
            } else if obj.parent_type.as_deref() == Some("project") {
                let mut f = obj.fq_name.clone();
                if let Some(last) = f.last_mut() {
                    *last = name;
                }
                f
            } else if let Some(owner) = obj
                .fields
                .get("perms2")
                .and_then(|p| p.get("owner"))
                .and_then(Value::as_str)
                .and_then(|o| uuid::Uuid::parse_str(o).ok())
            {
                let owner = owner.hyphenated().to_string();
                let mut f = st.get(&owner).map(|o| o.fq_name.clone()).ok_or_else(|| {
                    DbError::NotFound(format!("Cannot find {} {} owner", obj.type_name, obj.uuid))
                })?;
                f.push(name);
                f
            } else {
                return Err(DbError::NotFound(format!(
                    "Not able to determine the scope of the tag '{name}'"
                )));
            };
            let tag_uuid = st.lookup_fq("tag", &fq).cloned().ok_or_else(|| {
                DbError::NotFound(format!("Tag with FQName {} not found", pyrepr(&fq)))
            })?;
            Ok(Ref::new(fq, tag_uuid))
        };
        for (tag_type, attrs) in changes {
            let tag_type = tag_type.to_lowercase();
            let of_type = |r: &Ref| {
                r.to.last()
                    .is_some_and(|n| n.split_once('=').map(|(t, _)| t) == Some(tag_type.as_str()))
            };
            if attrs.is_null() {
                let before = tag_refs.len();
                tag_refs.retain(|r| !of_type(r));
                need_update |= before != tag_refs.len();
                continue;
            }
            let Some(attrs) = attrs.as_object() else {
                return Err(DbError::BadRequest(format!(
                    "No valid value provided for tag type {tag_type}"
                )));
            };
            let is_global = attrs
                .get("is_global")
                .and_then(Value::as_bool)
                .unwrap_or(false);
            let value = attrs.get("value").filter(|v| !v.is_null());
            let strings = |key: &str| -> BTreeSet<String> {
                attrs
                    .get(key)
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                    .filter_map(|v| v.as_str().map(str::to_owned))
                    .collect()
            };
            let mut add_values = strings("add_values");
            let delete_values = strings("delete_values");
            let multi = TAG_TYPES_NOT_UNIQUE.contains(&tag_type.as_str());
            if !multi && (!add_values.is_empty() || !delete_values.is_empty()) {
                return Err(DbError::BadRequest(format!(
                    "Tag type {tag_type} cannot be set multiple times on a same object."
                )));
            }
            if obj.type_name == "address-group" && tag_type != "label" {
                return Err(DbError::BadRequest(format!(
                    "Invalid tag type {tag_type} for object type address_group"
                )));
            }
            let current_values: Vec<(String, String)> = tag_refs
                .iter()
                .filter(|r| of_type(r))
                .filter_map(|r| {
                    r.to.last()
                        .and_then(|n| n.split_once('='))
                        .map(|(_, v)| (v.to_owned(), r.uuid.clone()))
                })
                .collect();
            if !multi {
                let Some(value) = value.and_then(Value::as_str) else {
                    return Err(DbError::BadRequest(format!(
                        "No valid value provided for tag type {tag_type}"
                    )));
                };
                if current_values.iter().any(|(v, _)| v == value) {
                    continue;
                }
                tag_refs.retain(|r| !of_type(r));
                let r = locate(self, &tag_type, value, is_global)?;
                tag_refs.push(r);
                need_update = true;
            } else {
                if let Some(v) = value.and_then(Value::as_str) {
                    add_values.insert(v.to_owned());
                }
                for v in &add_values {
                    if !current_values.iter().any(|(cv, _)| cv == v) {
                        let r = locate(self, &tag_type, v, is_global)?;
                        tag_refs.push(r);
                        need_update = true;
                    }
                }
                for (v, uuid) in &current_values {
                    if delete_values.contains(v) {
                        tag_refs.retain(|r| r.uuid != *uuid);
                        need_update = true;
                    }
                }
            }
        }
        if need_update {
            let mut req = VncObject {
                type_name: obj.type_name.clone(),
                uuid: obj.uuid.clone(),
                ..VncObject::default()
            };
            req.refs.insert("tag_refs".into(), tag_refs);
            self.update(
                id,
                req,
                &Ctx {
                    internal: true,
                    ..Ctx::default()
                },
            )?;
        }
        Ok(())
    }

    /// `prop-collection-update`: `{"field", "operation", "value", "position"}` entries on list
    /// (`add`, `modify`, `delete`) and map (`set`, `delete`) properties.
    pub(crate) fn prop_collection_update(
        &mut self,
        id: &str,
        updates: &[Value],
    ) -> Result<(), DbError> {
        let obj = self
            .get(id)
            .ok_or_else(|| DbError::NotFound(format!("Object Not Found: {id}")))?
            .clone();
        let info = type_info(&obj.type_name)?;
        let mut fields = obj.fields.clone();
        for u in updates {
            let field = u.get("field").and_then(Value::as_str).unwrap_or_default();
            let prop = info
                .prop(field)
                .filter(|p| p.collection != PropCollection::None);
            let Some(prop) = prop else {
                return Err(DbError::BadRequest(format!(
                    "{field} neither \"ListProperty\" nor \"MapProperty\""
                )));
            };
            let op = u
                .get("operation")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_lowercase();
            let mut value = u.get("value").cloned().unwrap_or(Value::Null);
            let position = u.get("position").filter(|p| !p.is_null()).map(|p| match p {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            });
            let prop_type = match prop.kind {
                schema::Kind::Complex(t) => t,
                _ => "",
            };
            match prop.collection {
                PropCollection::List { wrapper } => {
                    if !value.is_null() {
                        validate::validate_collection_element(prop_type, wrapper, &mut value)
                            .map_err(DbError::BadRequest)?;
                    }
                    let entry = fields.entry(field.to_owned()).or_insert_with(|| json!({}));
                    if !entry.is_object() {
                        *entry = json!({});
                    }
                    let list = entry
                        .as_object_mut()
                        .map(|m| m.entry(wrapper).or_insert_with(|| json!([])));
                    let Some(list) = list.and_then(Value::as_array_mut) else {
                        return Err(DbError::BadRequest(format!("{field} is not a list")));
                    };
                    let index = |p: &Option<String>, len: usize| -> Result<usize, DbError> {
                        p.as_deref()
                            .and_then(|s| s.parse::<usize>().ok())
                            .filter(|i| *i < len)
                            .ok_or_else(|| {
                                DbError::BadRequest(format!("Invalid position {p:?} for {field}"))
                            })
                    };
                    match op.as_str() {
                        "add" if !value.is_null() => list.push(value),
                        "modify" if !value.is_null() => {
                            let i = index(&position, list.len())?;
                            list[i] = value;
                        }
                        "delete" => {
                            let i = index(&position, list.len())?;
                            list.remove(i);
                        }
                        _ => {
                            return Err(DbError::BadRequest(format!(
                                "Unsupported operation {op} in request {u}"
                            )));
                        }
                    }
                }
                PropCollection::Map { wrapper, key } => {
                    if !value.is_null() {
                        validate::validate_collection_element(prop_type, wrapper, &mut value)
                            .map_err(DbError::BadRequest)?;
                    }
                    let entry = fields.entry(field.to_owned()).or_insert_with(|| json!({}));
                    if !entry.is_object() {
                        *entry = json!({});
                    }
                    let list = entry
                        .as_object_mut()
                        .map(|m| m.entry(wrapper).or_insert_with(|| json!([])));
                    let Some(list) = list.and_then(Value::as_array_mut) else {
                        return Err(DbError::BadRequest(format!("{field} is not a map")));
                    };
                    match op.as_str() {
                        "set" if !value.is_null() => {
                            let k = value.get(key).cloned();
                            list.retain(|e| e.get(key) != k.as_ref());
                            list.push(value);
                        }
                        "delete" => {
                            let Some(p) = position else {
                                return Err(DbError::BadRequest(format!(
                                    "Delete needs field position in request {u}"
                                )));
                            };
                            list.retain(|e| e.get(key).and_then(Value::as_str) != Some(p.as_str()));
                        }
                        _ => {
                            return Err(DbError::BadRequest(format!(
                                "Unsupported operation {op} in request {u}"
                            )));
                        }
                    }
                }
                PropCollection::None => {}
            }
        }
        let mut req = VncObject {
            type_name: obj.type_name.clone(),
            uuid: obj.uuid.clone(),
            ..VncObject::default()
        };
        for (k, v) in fields {
            if obj.fields.get(&k) != Some(&v) {
                req.fields.insert(k, v);
            }
        }
        if req.fields.is_empty() {
            return Ok(());
        }
        self.update(
            id,
            req,
            &Ctx {
                internal: true,
                ..Ctx::default()
            },
        )
    }
}

/// Subnet uuid, gateway (first host) and DNS server (second host) of a user-defined IPv4
/// subnet, as the real address manager fills them.
fn fill_subnet_defaults(s: &mut Value) {
    let Some(m) = s.as_object_mut() else { return };
    if m.get("subnet_uuid").is_none_or(Value::is_null) {
        m.insert("subnet_uuid".into(), Value::String(new_uuid()));
    }
    let net = m.get("subnet").and_then(|sub| {
        let p = sub.get("ip_prefix")?.as_str()?;
        let l = sub.get("ip_prefix_len")?.as_u64()?;
        format!("{p}/{l}").parse::<ipnet::Ipv4Net>().ok()
    });
    if let Some(net) = net {
        let base = u32::from(net.network());
        if net.prefix_len() <= 30 {
            if m.get("default_gateway").is_none_or(Value::is_null) {
                m.insert(
                    "default_gateway".into(),
                    Value::String(std::net::Ipv4Addr::from(base + 1).to_string()),
                );
            }
            if m.get("dns_server_address").is_none_or(Value::is_null) {
                m.insert(
                    "dns_server_address".into(),
                    Value::String(std::net::Ipv4Addr::from(base + 2).to_string()),
                );
            }
        }
    }
}

/// Subnet uuids on the flat subnets of an IPAM.
fn fill_ipam_subnets(obj: &mut VncObject) {
    if let Some(list) = obj
        .fields
        .get_mut("ipam_subnets")
        .and_then(|s| s.get_mut("subnets"))
        .and_then(Value::as_array_mut)
    {
        for s in list.iter_mut() {
            fill_subnet_defaults(s);
        }
    }
}

/// One subnet addresses can come from.
struct AllocSubnet {
    scope: String,
    net: ipnet::IpNet,
    subnet_uuid: Option<String>,
    reserved: Vec<std::net::IpAddr>,
}

impl State {
    /// The subnets of network `vn_uuid`: user-defined subnets on its IPAM references and the
    /// flat subnets of flat-subnet IPAMs it refers to.
    fn vn_subnets(&self, vn_uuid: &str) -> Vec<AllocSubnet> {
        let mut out = Vec::new();
        let Some(vn) = self.get(vn_uuid) else {
            return out;
        };
        let parse = |s: &Value| -> Option<(ipnet::IpNet, Vec<std::net::IpAddr>, Option<String>)> {
            let sub = s.get("subnet")?;
            let p = sub.get("ip_prefix")?.as_str()?;
            let l = sub.get("ip_prefix_len")?.as_u64()?;
            let net: ipnet::IpNet = format!("{p}/{l}").parse().ok()?;
            let reserved = ["default_gateway", "dns_server_address"]
                .iter()
                .filter_map(|k| {
                    s.get(*k)
                        .and_then(Value::as_str)
                        .and_then(|a| a.parse().ok())
                })
                .collect();
            let id = s
                .get("subnet_uuid")
                .and_then(Value::as_str)
                .map(str::to_owned);
            Some((net.trunc(), reserved, id))
        };
        for r in vn.refs_of("network_ipam_refs") {
            let ipam = self.get(&r.uuid);
            let flat = ipam
                .and_then(|i| i.fields.get("ipam_subnet_method"))
                .and_then(Value::as_str)
                == Some("flat-subnet");
            if flat {
                for s in ipam
                    .and_then(|i| i.fields.get("ipam_subnets"))
                    .and_then(|s| s.get("subnets"))
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                {
                    if let Some((net, reserved, id)) = parse(s) {
                        out.push(AllocSubnet {
                            scope: format!("{}:{net}", r.uuid),
                            net,
                            subnet_uuid: id,
                            reserved,
                        });
                    }
                }
                // The network's own subnet uuid for the flat reference names the same pool.
                if let Some(flat_id) = r
                    .attr
                    .as_ref()
                    .and_then(|a| a.get("ipam_subnets"))
                    .and_then(Value::as_array)
                    .and_then(|a| a.first())
                    .and_then(|s| s.get("subnet_uuid"))
                    .and_then(Value::as_str)
                    && let Some(first) = out
                        .iter_mut()
                        .rev()
                        .find(|s| s.scope.starts_with(r.uuid.as_str()))
                    && first.subnet_uuid.as_deref() != Some(flat_id)
                {
                    let mut alias = AllocSubnet {
                        scope: first.scope.clone(),
                        net: first.net,
                        subnet_uuid: Some(flat_id.to_owned()),
                        reserved: first.reserved.clone(),
                    };
                    std::mem::swap(&mut alias.subnet_uuid, &mut first.subnet_uuid);
                    out.push(alias);
                }
            } else {
                for s in r
                    .attr
                    .as_ref()
                    .and_then(|a| a.get("ipam_subnets"))
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                {
                    if let Some((net, reserved, id)) = parse(s) {
                        out.push(AllocSubnet {
                            scope: format!("{vn_uuid}:{net}"),
                            net,
                            subnet_uuid: id,
                            reserved,
                        });
                    }
                }
            }
        }
        out
    }

    /// Picks or reserves an address for `owner` in network `vn_uuid`, like the real address
    /// manager: a requested address must be free; otherwise the highest free host address of
    /// the chosen subnet (`subnet_uuid` if given, else the first subnet of the family).
    fn reserve_address(
        &mut self,
        owner: &str,
        vn_uuid: &str,
        requested: Option<&str>,
        subnet_uuid: Option<&str>,
        v6: bool,
    ) -> Result<(std::net::IpAddr, Option<String>), DbError> {
        let subnets = self.vn_subnets(vn_uuid);
        if let Some(addr) = requested {
            let ip: std::net::IpAddr = addr
                .parse()
                .map_err(|_| DbError::BadRequest(format!("Invalid ip address {addr}")))?;
            let subnet = subnets.iter().find(|s| s.net.contains(&ip));
            let scope =
                subnet.map_or_else(|| format!("{vn_uuid}:unsubnetted"), |s| s.scope.clone());
            let used = self.ips_in_use.entry(scope.clone()).or_default();
            if !used.insert(ip) {
                return Err(DbError::Conflict(format!("Ip address {ip} already in use")));
            }
            self.ip_owner.insert(owner.to_owned(), (scope, ip));
            return Ok((ip, subnet.and_then(|s| s.subnet_uuid.clone())));
        }
        let candidates: Vec<&AllocSubnet> = match subnet_uuid {
            Some(id) => subnets
                .iter()
                .filter(|s| s.subnet_uuid.as_deref() == Some(id))
                .collect(),
            None => subnets
                .iter()
                .filter(|s| matches!(s.net, ipnet::IpNet::V6(_)) == v6)
                .collect(),
        };
        if candidates.is_empty() {
            return Err(DbError::NotFound(format!(
                "Virtual network {vn_uuid} has no subnet to allocate from{}",
                subnet_uuid
                    .map(|s| format!(" (subnet {s})"))
                    .unwrap_or_default()
            )));
        }
        for s in candidates {
            let used = self.ips_in_use.entry(s.scope.clone()).or_default();
            let found = match s.net {
                ipnet::IpNet::V4(n) => {
                    let lo = u32::from(n.network());
                    let hi = u32::from(n.broadcast());
                    let (first, last) = if n.prefix_len() >= 31 {
                        (lo, hi)
                    } else {
                        (lo + 1, hi - 1)
                    };
                    (first..=last)
                        .rev()
                        .map(|a| std::net::IpAddr::V4(std::net::Ipv4Addr::from(a)))
                        .find(|a| !used.contains(a) && !s.reserved.contains(a))
                }
                ipnet::IpNet::V6(n) => {
                    let lo = u128::from(n.network());
                    let hi = u128::from(n.broadcast());
                    (lo.saturating_add(1)..hi)
                        .rev()
                        .take(1 << 16)
                        .map(|a| std::net::IpAddr::V6(std::net::Ipv6Addr::from(a)))
                        .find(|a| !used.contains(a) && !s.reserved.contains(a))
                }
            };
            if let Some(ip) = found {
                used.insert(ip);
                self.ip_owner
                    .insert(owner.to_owned(), (s.scope.clone(), ip));
                return Ok((ip, s.subnet_uuid.clone()));
            }
        }
        Err(DbError::Conflict(format!(
            "Subnet of virtual network {vn_uuid} is exhausted"
        )))
    }

    fn allocate_instance_ip(&mut self, obj: &mut VncObject) -> Result<(), DbError> {
        let Some(vn) = obj
            .refs_of("virtual_network_refs")
            .first()
            .map(|r| r.uuid.clone())
        else {
            return Ok(());
        };
        let requested = obj
            .fields
            .get("instance_ip_address")
            .and_then(Value::as_str)
            .map(str::to_owned);
        let subnet = obj
            .fields
            .get("subnet_uuid")
            .and_then(Value::as_str)
            .map(str::to_owned);
        let v6 = obj.fields.get("instance_ip_family").and_then(Value::as_str) == Some("v6");
        let id = obj.uuid.clone();
        let (ip, subnet_uuid) =
            self.reserve_address(&id, &vn, requested.as_deref(), subnet.as_deref(), v6)?;
        obj.fields
            .insert("instance_ip_address".into(), Value::String(ip.to_string()));
        if !obj.fields.contains_key("instance_ip_family") {
            let family = if ip.is_ipv6() { "v6" } else { "v4" };
            obj.fields
                .insert("instance_ip_family".into(), Value::String(family.into()));
        }
        if subnet.is_none()
            && let Some(s) = subnet_uuid
        {
            obj.fields.insert("subnet_uuid".into(), Value::String(s));
        }
        Ok(())
    }

    fn allocate_floating_ip(&mut self, obj: &mut VncObject) -> Result<(), DbError> {
        let has_address = obj
            .fields
            .get("floating_ip_address")
            .and_then(Value::as_str)
            .is_some();
        let parent = obj.parent_uuid.clone().and_then(|p| self.get(&p).cloned());
        let Some(parent) = parent else { return Ok(()) };
        match parent.type_name.as_str() {
            // A VIP floating-ip under its instance-ip carries the instance-ip's address.
            "instance-ip" => {
                if !has_address && let Some(a) = parent.fields.get("instance_ip_address").cloned() {
                    obj.fields.insert("floating_ip_address".into(), a);
                }
                Ok(())
            }
            "floating-ip-pool" => {
                let Some(vn) = parent.parent_uuid.clone() else {
                    return Ok(());
                };
                let requested = obj
                    .fields
                    .get("floating_ip_address")
                    .and_then(Value::as_str)
                    .map(str::to_owned);
                let v6 = obj
                    .fields
                    .get("floating_ip_address_family")
                    .and_then(Value::as_str)
                    == Some("v6");
                let id = obj.uuid.clone();
                let (ip, _) = self.reserve_address(&id, &vn, requested.as_deref(), None, v6)?;
                obj.fields
                    .insert("floating_ip_address".into(), Value::String(ip.to_string()));
                Ok(())
            }
            _ => Ok(()),
        }
    }
}
