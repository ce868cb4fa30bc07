//! Authentication and RBAC enforcement with the real API server's rules (`vnc_rbac.py`):
//! rules from the global, domain and project api-access-lists are merged per
//! `object.field` (CRUD letters unioned per role), a field rule is checked for each field of
//! the body it names, then the object rule, then the `*` rule; the cloud-admin role bypasses
//! everything and the global read-only role may read.
//!
//! The caller's identity comes from its keystone token (looked up in [`AuthConfig::tokens`],
//! the stand-in for keystone) or, when [`AuthConfig::trust_identity_headers`] is set, from the
//! headers keystone's middleware would have set: `X-User`, `X-Role` (comma separated),
//! `X-Project-Id`, `X-Domain-Id`.

use std::collections::{BTreeMap, HashMap};

use http::{HeaderMap, Method};
use serde_json::Value;

use crate::db::ConfigDb;

/// `aaa_mode` of the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum AaaMode {
    /// Everything allowed, no identity needed (the harness default).
    #[default]
    NoAuth,
    /// Authenticated callers may read; only the cloud-admin role may write (the per-object
    /// `perms2` ownership checks of the real mode are not modelled).
    CloudAdmin,
    /// api-access-list rules decide.
    Rbac,
}

impl AaaMode {
    /// `no-auth`, `cloud-admin` or `rbac`.
    pub fn as_str(self) -> &'static str {
        match self {
            AaaMode::NoAuth => "no-auth",
            AaaMode::CloudAdmin => "cloud-admin",
            AaaMode::Rbac => "rbac",
        }
    }

    /// Parses the names [`AaaMode::as_str`] gives.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "no-auth" => Some(AaaMode::NoAuth),
            "cloud-admin" => Some(AaaMode::CloudAdmin),
            "rbac" => Some(AaaMode::Rbac),
            _ => None,
        }
    }
}

/// Who is calling.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Identity {
    /// User name.
    pub user: String,
    /// Roles (e.g. `admin`, `Member`).
    pub roles: Vec<String>,
    /// Project uuid (with or without dashes) whose api-access-list applies.
    pub project_id: Option<String>,
    /// Domain uuid (default: the project's domain, else `default-domain`).
    pub domain_id: Option<String>,
}

impl Identity {
    /// A user with roles and no project.
    pub fn new(user: &str, roles: &[&str]) -> Self {
        Identity {
            user: user.to_owned(),
            roles: roles.iter().map(|r| (*r).to_owned()).collect(),
            project_id: None,
            domain_id: None,
        }
    }

    /// The same identity scoped to a project.
    pub fn in_project(mut self, project_id: &str) -> Self {
        self.project_id = Some(project_id.to_owned());
        self
    }
}

/// Authentication and authorization settings of a server.
#[derive(Debug, Clone)]
pub struct AuthConfig {
    /// Enforcement mode.
    pub aaa_mode: AaaMode,
    /// Role that bypasses RBAC (real default `admin`).
    pub cloud_admin_role: String,
    /// Role that may read everything.
    pub global_read_only_role: Option<String>,
    /// Known tokens (the keystone stand-in).
    pub tokens: HashMap<String, Identity>,
    /// Accept `X-User`/`X-Role`/`X-Project-Id`/`X-Domain-Id` from requests without a token.
    pub trust_identity_headers: bool,
}

impl Default for AuthConfig {
    fn default() -> Self {
        AuthConfig {
            aaa_mode: AaaMode::NoAuth,
            cloud_admin_role: "admin".to_owned(),
            global_read_only_role: None,
            tokens: HashMap::new(),
            trust_identity_headers: true,
        }
    }
}

impl AuthConfig {
    /// RBAC enforcement with the real defaults.
    pub fn rbac() -> Self {
        AuthConfig {
            aaa_mode: AaaMode::Rbac,
            ..AuthConfig::default()
        }
    }

    /// Registers a token for an identity.
    pub fn with_token(mut self, token: &str, identity: Identity) -> Self {
        self.tokens.insert(token.to_owned(), identity);
        self
    }
}

/// A refusal: status (401 or 403) and message.
pub type Denial = (u16, String);

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|s| !s.is_empty())
}

/// The caller's identity.
///
/// # Errors
/// 401 for an unknown token, or for a request without token when identity headers are not
/// trusted.
pub fn authenticate(cfg: &AuthConfig, headers: &HeaderMap) -> Result<Identity, Denial> {
    if let Some(token) = header(headers, "x-auth-token") {
        return cfg
            .tokens
            .get(token)
            .cloned()
            .ok_or_else(|| (401, "Authentication required: unknown token".to_owned()));
    }
    if !cfg.trust_identity_headers {
        return Err((401, "Authentication required: no X-Auth-Token".to_owned()));
    }
    Ok(Identity {
        user: header(headers, "x-user").unwrap_or_default().to_owned(),
        roles: header(headers, "x-role")
            .map(|r| {
                r.split(',')
                    .map(|s| s.trim().to_owned())
                    .filter(|s| !s.is_empty())
                    .collect()
            })
            .unwrap_or_default(),
        project_id: header(headers, "x-project-id").map(str::to_owned),
        domain_id: header(headers, "x-domain-id").map(str::to_owned),
    })
}

fn op_letter(method: &Method) -> char {
    match *method {
        Method::POST => 'C',
        Method::PUT => 'U',
        Method::DELETE => 'D',
        _ => 'R',
    }
}

/// Object key of a request path: `/virtual-networks` → `virtual-network`,
/// `/virtual-network/<id>` → `virtual-network`, `/ref-update` → `ref-update`, `/` → `/`.
pub fn path_object(path: &str) -> String {
    if path == "/" || path.is_empty() {
        return "/".to_owned();
    }
    let first = path.trim_start_matches('/').split('/').next().unwrap_or("");
    if harness_contrail_vnc::schema::resource(first).is_none()
        && let Some(stripped) = first.strip_suffix('s')
        && harness_contrail_vnc::schema::resource(stripped).is_some()
    {
        return stripped.to_owned();
    }
    first.to_owned()
}

struct MergedRule {
    perms: BTreeMap<String, String>,
}

impl MergedRule {
    fn allows(&self, roles: &[String], op: char) -> bool {
        self.perms.iter().any(|(role, crud)| {
            (role == "*" || roles.iter().any(|r| r == role)) && crud.contains(op)
        })
    }
}

/// Decides whether `identity` may make this request.
///
/// # Errors
/// 401 when the caller has no role, 403 with the real server's message when no rule grants
/// the operation.
pub fn authorize(
    cfg: &AuthConfig,
    db: &ConfigDb,
    identity: &Identity,
    method: &Method,
    path: &str,
    body: Option<&Value>,
) -> Result<(), Denial> {
    match cfg.aaa_mode {
        AaaMode::NoAuth => return Ok(()),
        AaaMode::CloudAdmin => {
            if identity.roles.contains(&cfg.cloud_admin_role)
                || matches!(*method, Method::GET | Method::HEAD)
            {
                return Ok(());
            }
            return Err((
                403,
                format!(
                    " Permission denied for {} (cloud-admin mode)",
                    identity.user
                ),
            ));
        }
        AaaMode::Rbac => {}
    }
    if identity.roles.is_empty() {
        return Err((401, "roles empty!!".to_owned()));
    }
    if identity.roles.contains(&cfg.cloud_admin_role) {
        return Ok(());
    }
    if let Some(ro) = &cfg.global_read_only_role
        && identity.roles.iter().any(|r| r == ro)
        && matches!(*method, Method::GET | Method::HEAD)
    {
        return Ok(());
    }
    let raw = db.rbac_rules(
        identity.project_id.as_deref(),
        identity.domain_id.as_deref(),
    );
    if raw.is_empty() {
        return Err((403, "Permission Denied RBAC rule list empty".to_owned()));
    }
    // Merge per object.field, unioning CRUD letters per role.
    let mut merged: BTreeMap<(String, String), MergedRule> = BTreeMap::new();
    for rule in &raw {
        let object = rule
            .get("rule_object")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_owned();
        let field = match rule.get("rule_field").and_then(Value::as_str) {
            None | Some("") => "*".to_owned(),
            Some(f) => f.to_owned(),
        };
        let entry = merged.entry((object, field)).or_insert_with(|| MergedRule {
            perms: BTreeMap::new(),
        });
        for p in rule
            .get("rule_perms")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let role = p
                .get("role_name")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_owned();
            let crud = p.get("role_crud").and_then(Value::as_str).unwrap_or("");
            let cur = entry.perms.entry(role).or_default();
            for c in crud.chars() {
                if !cur.contains(c) {
                    cur.push(c);
                }
            }
        }
    }
    let obj_key = path_object(path);
    let op = op_letter(method);
    let project = identity
        .project_id
        .clone()
        .unwrap_or_else(|| "None".to_owned());
    let denied = || {
        (
            403,
            format!(
                "Permission Denied for {} as {:?} to {op} {obj_key} in {project}",
                identity.user, identity.roles
            ),
        )
    };
    let mut obj_fields: Vec<String> = match body {
        Some(Value::Object(m)) => match m.get(&obj_key) {
            Some(Value::Object(inner)) => inner.keys().cloned().collect(),
            _ => m.keys().cloned().collect(),
        },
        _ => Vec::new(),
    };
    obj_fields.retain(|f| f != "uuid" && f != "fq_name");
    let mut wildcard = None;
    let mut object_rule = None;
    let mut field_rules = Vec::new();
    for ((object, field), rule) in &merged {
        if object == "*" {
            wildcard = Some(rule);
        } else if *object == obj_key {
            if field == "*" {
                object_rule = Some(rule);
            } else {
                field_rules.push((field, rule));
            }
        }
    }
    let roles = &identity.roles;
    if !field_rules.is_empty() && !obj_fields.is_empty() {
        for (field, rule) in &field_rules {
            if let Some(pos) = obj_fields.iter().position(|f| f == *field) {
                if rule.allows(roles, op) {
                    obj_fields.remove(pos);
                } else {
                    return Err(denied());
                }
            }
        }
        if obj_fields.is_empty() {
            return Ok(());
        }
    }
    let rule = object_rule.or(wildcard).ok_or_else(denied)?;
    if rule.allows(roles, op) {
        Ok(())
    } else {
        Err(denied())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn path_objects() {
        assert_eq!(path_object("/"), "/");
        assert_eq!(path_object("/virtual-networks"), "virtual-network");
        assert_eq!(path_object("/virtual-network/abc"), "virtual-network");
        assert_eq!(path_object("/ref-update"), "ref-update");
        assert_eq!(path_object("/fqname-to-id"), "fqname-to-id");
    }
}
