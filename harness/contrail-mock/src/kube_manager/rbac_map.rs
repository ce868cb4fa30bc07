//! Kubernetes RBAC → Contrail RBAC (CONFORMANCE.md §4, mapping v1).
//!
//! No shipped kube-manager maps RBAC, so this is the harness's own profile: every binding
//! grants its subjects, as Contrail *roles* (see [`subject_roles`]), CRUD letters on the
//! Contrail object types that back each Kubernetes resource the bound role covers. A
//! RoleBinding writes into the api-access-list `<cluster>-rbac` of project `<cluster>-<ns>`,
//! a ClusterRoleBinding into the one of `default-domain` (the VNC API merges global, domain
//! and project lists, so domain grants apply in every project). Rules restricted by
//! `resourceNames` grant nothing (Contrail RBAC has no per-object rules). The mapping itself
//! ([`RbacMapping`]) is configurable.

use std::collections::{BTreeMap, BTreeSet};

use harness_contrail_vnc::VncObject;
use harness_scenario::MockFault;
use k8s_openapi::api::rbac::v1::{PolicyRule, Subject};
use serde_json::{Value, json};

use super::engine::Item;
use super::naming::DOMAIN;
use super::units::World;

/// The Kubernetes → Contrail RBAC mapping: which Contrail object types back each Kubernetes
/// resource, and which CRUD letter each verb is. The JSON (or YAML) shape is the one a
/// scenario's `rbacMapping` file uses (`resources`, `verbs`, optional `clusterScoped`), so the
/// runner can hand the same document to the oracle and to kube-manager.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RbacMapping {
    /// Profile version (`v1` for the default).
    #[serde(default = "v1")]
    pub version: String,
    /// Kubernetes plural resource (or `resource/subresource`) → Contrail object types.
    pub resources: BTreeMap<String, Vec<String>>,
    /// Kubernetes verb → CRUD letter (`C`, `R`, `U` or `D`).
    pub verbs: BTreeMap<String, String>,
    /// Resources whose objects are not in a namespace project (default: `namespaces`).
    #[serde(default = "cluster_scoped")]
    pub cluster_scoped: Vec<String>,
}

fn v1() -> String {
    "v1".into()
}

fn cluster_scoped() -> Vec<String> {
    vec!["namespaces".into()]
}

const LB_OBJECTS: &[&str] = &[
    "loadbalancer",
    "loadbalancer-listener",
    "loadbalancer-pool",
    "loadbalancer-member",
    "floating-ip",
];

impl Default for RbacMapping {
    /// Mapping v1 (CONFORMANCE.md §4).
    fn default() -> Self {
        let objs = |v: &[&str]| v.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
        let resources = BTreeMap::from([
            (
                "pods".to_owned(),
                objs(&[
                    "virtual-machine",
                    "virtual-machine-interface",
                    "instance-ip",
                ]),
            ),
            ("services".to_owned(), objs(LB_OBJECTS)),
            ("endpoints".to_owned(), objs(LB_OBJECTS)),
            (
                "ingresses".to_owned(),
                objs(&["loadbalancer", "floating-ip"]),
            ),
            (
                "networkpolicies".to_owned(),
                objs(&["firewall-policy", "firewall-rule", "address-group", "tag"]),
            ),
            ("namespaces".to_owned(), objs(&["project"])),
        ]);
        let verbs = [
            ("get", "R"),
            ("list", "R"),
            ("watch", "R"),
            ("create", "C"),
            ("update", "U"),
            ("patch", "U"),
            ("delete", "D"),
            ("deletecollection", "D"),
        ]
        .into_iter()
        .map(|(v, l)| (v.to_owned(), l.to_owned()))
        .collect();
        RbacMapping {
            version: v1(),
            resources,
            verbs,
            cluster_scoped: cluster_scoped(),
        }
    }
}

impl RbacMapping {
    /// Reads a mapping document.
    ///
    /// # Errors
    /// A message naming what is wrong (unknown field, a verb mapped to something other than
    /// one of `C`, `R`, `U`, `D`, a resource mapped to no object type).
    pub fn from_json(v: serde_json::Value) -> Result<Self, String> {
        let m: RbacMapping =
            serde_json::from_value(v).map_err(|e| format!("RBAC mapping is not valid: {e}"))?;
        if let Some((verb, l)) = m
            .verbs
            .iter()
            .find(|(_, l)| !matches!(l.as_str(), "C" | "R" | "U" | "D"))
        {
            return Err(format!(
                "RBAC mapping: verb `{verb}` maps to `{l}`; use one of C, R, U, D"
            ));
        }
        if let Some((r, _)) = m.resources.iter().find(|(_, o)| o.is_empty()) {
            return Err(format!(
                "RBAC mapping: resource `{r}` maps to no Contrail object type: list at least one, or remove it"
            ));
        }
        Ok(m)
    }

    /// The CRUD letters of a verb (`*`: every letter the mapping uses).
    pub fn letters(&self, verb: &str) -> BTreeSet<char> {
        if verb == "*" {
            return self.verbs.values().flat_map(|l| l.chars()).collect();
        }
        self.verbs
            .get(verb)
            .map(|l| l.chars().collect())
            .unwrap_or_default()
    }
}

/// API groups of the resources the v1 mapping knows (others match any group).
fn resource_groups(resource: &str) -> Option<&'static [&'static str]> {
    match resource.split('/').next().unwrap_or(resource) {
        "pods" | "services" | "endpoints" | "namespaces" => Some(&[""]),
        "ingresses" | "networkpolicies" => Some(&["networking.k8s.io", "extensions"]),
        _ => None,
    }
}

/// The Contrail role of a Kubernetes user: `user:<name>`.
pub fn user_role(user: &str) -> String {
    format!("user:{user}")
}

/// The Contrail role of a Kubernetes group: `group:<name>`.
pub fn group_role(group: &str) -> String {
    format!("group:{group}")
}

/// The roles a caller acting as a Kubernetes subject sends to the VNC API (`X-Role`,
/// comma-separated): its user role, its groups' roles, and the groups Kubernetes adds
/// implicitly (`system:authenticated`; for a service account `NAMESPACE/NAME` also
/// `system:serviceaccounts` and `system:serviceaccounts:<ns>`, its user being
/// `system:serviceaccount:<ns>:<name>`).
pub fn subject_roles(
    user: Option<&str>,
    groups: &[String],
    service_account: Option<&str>,
) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    if let Some(u) = user {
        out.push(user_role(u));
    }
    for g in groups {
        out.push(group_role(g));
    }
    if let Some(sa) = service_account {
        let (ns, name) = sa.split_once('/').unwrap_or(("default", sa));
        out.push(user_role(&format!("system:serviceaccount:{ns}:{name}")));
        out.push(group_role("system:serviceaccounts"));
        out.push(group_role(&format!("system:serviceaccounts:{ns}")));
    }
    out.push(group_role("system:authenticated"));
    let mut seen = BTreeSet::new();
    out.retain(|r| seen.insert(r.clone()));
    out
}

fn subject_role(s: &Subject, binding_ns: Option<&str>) -> Option<String> {
    match s.kind.as_str() {
        "User" => Some(user_role(&s.name)),
        "Group" => Some(group_role(&s.name)),
        "ServiceAccount" => {
            let ns = s.namespace.as_deref().or(binding_ns).unwrap_or("default");
            Some(user_role(&format!("system:serviceaccount:{ns}:{}", s.name)))
        }
        _ => None,
    }
}

/// object type → role → CRUD letters.
type Grants = BTreeMap<String, BTreeMap<String, BTreeSet<char>>>;

fn grant(
    mapping: &RbacMapping,
    grants: &mut Grants,
    rules: &[PolicyRule],
    roles: &[String],
    over_grant: bool,
) {
    for rule in rules {
        if rule.resource_names.as_ref().is_some_and(|n| !n.is_empty()) {
            continue;
        }
        let mut letters: BTreeSet<char> =
            rule.verbs.iter().flat_map(|v| mapping.letters(v)).collect();
        if letters.is_empty() {
            continue;
        }
        if over_grant && letters.contains(&'R') {
            letters.extend("CRUD".chars());
        }
        let groups = rule.api_groups.clone().unwrap_or_default();
        let resources = rule.resources.clone().unwrap_or_default();
        for (res, objects) in &mapping.resources {
            let res_ok = resources.iter().any(|r| r == "*" || r == res);
            let group_ok = groups.iter().any(|g| {
                g == "*" || resource_groups(res).is_none_or(|known| known.contains(&g.as_str()))
            });
            if !(res_ok && group_ok) {
                continue;
            }
            for o in objects {
                let per_role = grants.entry(o.clone()).or_default();
                for role in roles {
                    per_role
                        .entry(role.clone())
                        .or_default()
                        .extend(letters.iter().copied());
                }
            }
        }
    }
}

fn entries(grants: &Grants) -> Value {
    let rules: Vec<Value> = grants
        .iter()
        .map(|(object, roles)| {
            let perms: Vec<Value> = roles
                .iter()
                .map(|(role, letters)| {
                    let crud: String = "CRUD".chars().filter(|c| letters.contains(c)).collect();
                    json!({"role_name": role, "role_crud": crud})
                })
                .collect();
            json!({"rule_object": object, "rule_perms": perms})
        })
        .collect();
    json!({"rbac_rule": rules})
}

impl World {
    /// The api-access-lists of the mapping: one for the domain (ClusterRoleBindings) and one
    /// per namespace project (RoleBindings).
    pub fn rbac_items(&self) -> Vec<Item> {
        let mapping = &self.cfg.rbac_mapping;
        let over = self.cfg.has(MockFault::RbacOverGrant);
        let under = self.cfg.has(MockFault::RbacUnderGrant);
        let cluster_rules = |name: &str| -> Vec<PolicyRule> {
            self.cache
                .cluster_roles
                .get(name)
                .and_then(|r| r.rules.clone())
                .unwrap_or_default()
        };
        let mut domain: Grants = BTreeMap::new();
        let mut per_ns: BTreeMap<String, Grants> = BTreeMap::new();
        if !under {
            for b in self.cache.cluster_role_bindings.values() {
                if b.role_ref.kind != "ClusterRole" {
                    continue;
                }
                let roles: Vec<String> = b
                    .subjects
                    .iter()
                    .flatten()
                    .filter_map(|s| subject_role(s, None))
                    .collect();
                grant(
                    mapping,
                    &mut domain,
                    &cluster_rules(&b.role_ref.name),
                    &roles,
                    over,
                );
            }
            for ((ns, _), b) in &self.cache.role_bindings {
                let rules = match b.role_ref.kind.as_str() {
                    "ClusterRole" => cluster_rules(&b.role_ref.name),
                    "Role" => self
                        .cache
                        .roles
                        .get(&(ns.clone(), b.role_ref.name.clone()))
                        .and_then(|r| r.rules.clone())
                        .unwrap_or_default(),
                    _ => Vec::new(),
                };
                let roles: Vec<String> = b
                    .subjects
                    .iter()
                    .flatten()
                    .filter_map(|s| subject_role(s, Some(ns)))
                    .collect();
                grant(
                    mapping,
                    per_ns.entry(ns.clone()).or_default(),
                    &rules,
                    &roles,
                    over,
                );
            }
        }
        let list = |fq_name: Vec<String>, parent: &str, grants: &Grants, scope: &str| {
            Item::Object(
                VncObject::new("api-access-list", fq_name)
                    .with_parent_type(parent)
                    .with_prop("api_access_list_entries", entries(grants))
                    .with_prop(
                        "annotations",
                        super::engine::annotations(&[
                            ("owner", "k8s"),
                            ("cluster", &self.cfg.cluster_name),
                            ("scope", scope),
                        ]),
                    ),
            )
        };
        let name = self.names.rbac_list_name();
        let mut items = vec![list(
            vec![DOMAIN.to_owned(), name.clone()],
            "domain",
            &domain,
            "cluster",
        )];
        let empty = Grants::new();
        for ns in self.cache.namespaces.keys() {
            let mut f = self.names.project(ns);
            f.push(name.clone());
            items.push(list(f, "project", per_ns.get(ns).unwrap_or(&empty), ns));
        }
        items
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_of_subjects() {
        assert_eq!(
            subject_roles(Some("alice"), &["dev".into()], None),
            ["user:alice", "group:dev", "group:system:authenticated"]
        );
        let sa = subject_roles(None, &[], Some("x/robot"));
        assert!(sa.contains(&"user:system:serviceaccount:x:robot".to_owned()));
        assert!(sa.contains(&"group:system:serviceaccounts:x".to_owned()));
    }

    #[test]
    fn rules_map_to_crud_letters() {
        let rule: PolicyRule = serde_json::from_value(json!({
            "apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list", "watch"]
        }))
        .expect("rule");
        let m = RbacMapping::default();
        let mut g = Grants::new();
        grant(
            &m,
            &mut g,
            std::slice::from_ref(&rule),
            &["user:alice".into()],
            false,
        );
        assert_eq!(
            g["virtual-machine-interface"]["user:alice"],
            ['R'].into_iter().collect()
        );
        assert!(!g.contains_key("loadbalancer"));
        let mut over = Grants::new();
        grant(
            &m,
            &mut over,
            std::slice::from_ref(&rule),
            &["user:alice".into()],
            true,
        );
        assert_eq!(over["instance-ip"]["user:alice"].len(), 4);
        let e = entries(&g);
        assert_eq!(e["rbac_rule"][0]["rule_perms"][0]["role_crud"], "R");
        // A custom mapping (the scenario's `rbacMapping` file).
        let custom = RbacMapping::from_json(json!({
            "resources": {"pods": ["virtual-machine-interface"]}, "verbs": {"get": "R", "list": "R"}
        }))
        .expect("mapping");
        let mut c = Grants::new();
        grant(
            &custom,
            &mut c,
            std::slice::from_ref(&rule),
            &["user:alice".into()],
            false,
        );
        assert_eq!(c.keys().collect::<Vec<_>>(), ["virtual-machine-interface"]);
        assert!(RbacMapping::from_json(json!({"resources": {}, "verbs": {"get": "X"}})).is_err());
        assert!(RbacMapping::from_json(json!({"resources": {"pods": []}, "verbs": {}})).is_err());
    }
}
