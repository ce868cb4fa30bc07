//! Authentication (static bearer tokens, impersonation) and the RBAC authorizer.
//!
//! The authorizer follows upstream `rbac/v1` rule semantics: `apiGroups`, `resources` (with
//! `resource/subresource`, `*/subresource` and `*`), `resourceNames`, `verbs`, `nonResourceURLs`
//! (exact or `prefix*`), RoleBindings granting Roles or ClusterRoles in their namespace, and
//! ClusterRoleBindings granting ClusterRoles everywhere. The `system:masters` group is a superuser,
//! as in kube-apiserver.

use std::collections::BTreeMap;

use serde_json::{Value, json};

use crate::registry::GroupResource;
use crate::store::Store;

/// The group whose members may do anything.
pub const SUPERUSER_GROUP: &str = "system:masters";

/// Who is making a request.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct UserInfo {
    /// User name (`alice`, `system:serviceaccount:ns:sa`).
    pub name: String,
    /// Optional uid.
    pub uid: String,
    /// Groups, including `system:authenticated` for authenticated users.
    pub groups: Vec<String>,
    /// Extra attributes (from `Impersonate-Extra-*`).
    pub extra: BTreeMap<String, Vec<String>>,
}

impl UserInfo {
    /// The anonymous user of requests without credentials.
    pub fn anonymous() -> Self {
        UserInfo {
            name: "system:anonymous".into(),
            uid: String::new(),
            groups: vec!["system:unauthenticated".into()],
            extra: BTreeMap::new(),
        }
    }

    pub(crate) fn to_json(&self) -> Value {
        let mut v = json!({"username": self.name, "groups": self.groups});
        if !self.uid.is_empty() {
            v["uid"] = json!(self.uid);
        }
        if !self.extra.is_empty() {
            v["extra"] = json!(self.extra);
        }
        v
    }
}

/// A bearer token and the identity it authenticates, as in kube-apiserver's `--token-auth-file`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StaticToken {
    /// The bearer token.
    pub token: String,
    /// User name.
    pub user: String,
    /// User uid.
    pub uid: String,
    /// Groups (besides `system:authenticated`, which is always added).
    pub groups: Vec<String>,
}

impl StaticToken {
    /// A token for `user` in `groups`.
    pub fn new(token: impl Into<String>, user: impl Into<String>, groups: &[&str]) -> Self {
        let user = user.into();
        StaticToken {
            token: token.into(),
            uid: user.clone(),
            user,
            groups: groups.iter().map(|g| g.to_string()).collect(),
        }
    }

    /// Parses a kube-apiserver static token file: CSV lines `token,user,uid[,"group1,group2"]`.
    ///
    /// # Errors
    /// [`crate::Error::TokenFile`] naming the first line with fewer than three columns.
    pub fn parse_file(contents: &str) -> Result<Vec<StaticToken>, crate::Error> {
        let mut out = Vec::new();
        for (i, line) in contents.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let cols = split_csv(line);
            if cols.len() < 3 {
                return Err(crate::Error::TokenFile {
                    line: i + 1,
                    reason: format!(
                        "expected at least 3 columns (token,user,uid), found {}",
                        cols.len()
                    ),
                });
            }
            let groups = cols
                .get(3)
                .map(|g| {
                    g.split(',')
                        .map(str::trim)
                        .filter(|g| !g.is_empty())
                        .map(str::to_string)
                        .collect()
                })
                .unwrap_or_default();
            out.push(StaticToken {
                token: cols[0].clone(),
                user: cols[1].clone(),
                uid: cols[2].clone(),
                groups,
            });
        }
        Ok(out)
    }

    pub(crate) fn user_info(&self) -> UserInfo {
        let mut groups = self.groups.clone();
        if !groups.iter().any(|g| g == "system:authenticated") {
            groups.push("system:authenticated".into());
        }
        UserInfo {
            name: self.user.clone(),
            uid: self.uid.clone(),
            groups,
            extra: BTreeMap::new(),
        }
    }
}

fn split_csv(line: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut quoted = false;
    for c in line.chars() {
        match c {
            '"' => quoted = !quoted,
            ',' if !quoted => out.push(std::mem::take(&mut cur)),
            c => cur.push(c),
        }
    }
    out.push(cur);
    out.into_iter().map(|s| s.trim().to_string()).collect()
}

/// What a request wants to do, in the authorizer's terms.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Attributes {
    /// The requester.
    pub user: UserInfo,
    /// `get`, `list`, `watch`, `create`, `update`, `patch`, `delete`, `deletecollection`,
    /// `impersonate`, ... (for non-resource requests: the lowercase HTTP method).
    pub verb: String,
    /// True for requests on API resources, false for non-resource URLs.
    pub resource_request: bool,
    /// Namespace (empty for cluster scope).
    pub namespace: String,
    /// API group.
    pub api_group: String,
    /// Resource (plural).
    pub resource: String,
    /// Subresource.
    pub subresource: String,
    /// Object name (empty for collections).
    pub name: String,
    /// URL path, for non-resource requests.
    pub path: String,
}

/// The authorizer's answer, with upstream's reason text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    /// Whether the request is allowed.
    pub allowed: bool,
    /// Why (`RBAC: allowed by ClusterRoleBinding "x" of ClusterRole "y" to User "alice"`).
    pub reason: String,
}

/// Whether one PolicyRule allows the request.
pub fn rule_allows(rule: &Value, a: &Attributes) -> bool {
    let list = |k: &str| -> Vec<&str> {
        rule.get(k)
            .and_then(Value::as_array)
            .map(|v| v.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default()
    };
    let verbs = list("verbs");
    if !verbs.iter().any(|v| *v == "*" || *v == a.verb) {
        return false;
    }
    if !a.resource_request {
        return list("nonResourceURLs").iter().any(|u| {
            *u == "*" || *u == a.path || (u.ends_with('*') && a.path.starts_with(&u[..u.len() - 1]))
        });
    }
    if !list("apiGroups")
        .iter()
        .any(|g| *g == "*" || *g == a.api_group)
    {
        return false;
    }
    let combined = if a.subresource.is_empty() {
        a.resource.clone()
    } else {
        format!("{}/{}", a.resource, a.subresource)
    };
    let resource_ok = list("resources").iter().any(|r| {
        *r == "*"
            || *r == combined
            || (!a.subresource.is_empty() && r.strip_prefix("*/") == Some(a.subresource.as_str()))
    });
    if !resource_ok {
        return false;
    }
    let names = list("resourceNames");
    names.is_empty() || names.contains(&a.name.as_str())
}

fn subject_matches(subject: &Value, user: &UserInfo, binding_ns: &str) -> bool {
    let s = |k: &str| subject.get(k).and_then(Value::as_str).unwrap_or("");
    match s("kind") {
        "User" => s("name") == user.name,
        "Group" => user.groups.iter().any(|g| g == s("name")),
        "ServiceAccount" => {
            let ns = if s("namespace").is_empty() {
                binding_ns
            } else {
                s("namespace")
            };
            user.name == format!("system:serviceaccount:{ns}:{}", s("name"))
        }
        _ => false,
    }
}

fn describe_subject(subject: &Value) -> String {
    let s = |k: &str| subject.get(k).and_then(Value::as_str).unwrap_or("");
    match s("kind") {
        "ServiceAccount" => format!("ServiceAccount \"{}/{}\"", s("namespace"), s("name")),
        kind => format!("{kind} \"{}\"", s("name")),
    }
}

/// The rules one binding grants, with its description, if the user is a subject.
fn granted_rules(store: &Store, binding: &Value, user: &UserInfo) -> Option<(Vec<Value>, String)> {
    let ns = crate::util::meta_str(binding, "namespace").unwrap_or("");
    let subject = binding
        .get("subjects")
        .and_then(Value::as_array)?
        .iter()
        .find(|s| subject_matches(s, user, ns))?;
    let role_kind = crate::util::dotted(binding, "roleRef.kind").and_then(Value::as_str)?;
    let role_name = crate::util::dotted(binding, "roleRef.name").and_then(Value::as_str)?;
    let role = match role_kind {
        "ClusterRole" => store.get(
            &GroupResource::new("rbac.authorization.k8s.io", "clusterroles"),
            "",
            role_name,
        ),
        "Role" => store.get(
            &GroupResource::new("rbac.authorization.k8s.io", "roles"),
            ns,
            role_name,
        ),
        _ => None,
    }?;
    let rules = role
        .get("rules")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let binding_name = crate::util::meta_str(binding, "name").unwrap_or("");
    let binding_kind = if ns.is_empty() {
        format!("ClusterRoleBinding \"{binding_name}\"")
    } else {
        format!("RoleBinding \"{binding_name}/{ns}\"")
    };
    Some((
        rules,
        format!(
            "{binding_kind} of {role_kind} \"{role_name}\" to {}",
            describe_subject(subject)
        ),
    ))
}

/// Decides a request with RBAC over the objects in `store`.
pub fn authorize(store: &Store, a: &Attributes) -> Decision {
    if a.user.groups.iter().any(|g| g == SUPERUSER_GROUP) {
        return Decision {
            allowed: true,
            reason: format!("allowed: member of {SUPERUSER_GROUP}"),
        };
    }
    let crbs = store
        .list(
            &GroupResource::new("rbac.authorization.k8s.io", "clusterrolebindings"),
            None,
        )
        .0;
    for b in &crbs {
        if let Some((rules, why)) = granted_rules(store, b, &a.user)
            && rules.iter().any(|r| rule_allows(r, a))
        {
            return Decision {
                allowed: true,
                reason: format!("RBAC: allowed by {why}"),
            };
        }
    }
    if !a.namespace.is_empty() {
        let rbs = store
            .list(
                &GroupResource::new("rbac.authorization.k8s.io", "rolebindings"),
                Some(&a.namespace),
            )
            .0;
        for b in &rbs {
            if let Some((rules, why)) = granted_rules(store, b, &a.user)
                && rules.iter().any(|r| rule_allows(r, a))
            {
                return Decision {
                    allowed: true,
                    reason: format!("RBAC: allowed by {why}"),
                };
            }
        }
    }
    Decision {
        allowed: false,
        reason: String::new(),
    }
}

/// The rules that apply to a user in a namespace (for SelfSubjectRulesReview).
pub(crate) fn rules_for(store: &Store, user: &UserInfo, namespace: &str) -> Vec<Value> {
    if user.groups.iter().any(|g| g == SUPERUSER_GROUP) {
        return vec![
            json!({"verbs": ["*"], "apiGroups": ["*"], "resources": ["*"]}),
            json!({"verbs": ["*"], "nonResourceURLs": ["*"]}),
        ];
    }
    let mut out = Vec::new();
    let crbs = store
        .list(
            &GroupResource::new("rbac.authorization.k8s.io", "clusterrolebindings"),
            None,
        )
        .0;
    let rbs = if namespace.is_empty() {
        Vec::new()
    } else {
        store
            .list(
                &GroupResource::new("rbac.authorization.k8s.io", "rolebindings"),
                Some(namespace),
            )
            .0
    };
    for b in crbs.iter().chain(rbs.iter()) {
        if let Some((rules, _)) = granted_rules(store, b, &user.clone()) {
            out.extend(rules);
        }
    }
    out
}

/// Upstream's 403 message: `pods "x" is forbidden: User "alice" cannot get resource "pods" in API group "" in the namespace "default"`.
pub fn forbidden_message(a: &Attributes, reason: &str) -> String {
    let suffix = if reason.is_empty() {
        String::new()
    } else {
        format!(": {reason}")
    };
    if !a.resource_request {
        return format!(
            "forbidden: User \"{}\" cannot {} path \"{}\"{suffix}",
            a.user.name, a.verb, a.path
        );
    }
    let res = if a.subresource.is_empty() {
        a.resource.clone()
    } else {
        format!("{}/{}", a.resource, a.subresource)
    };
    let qualified = if a.api_group.is_empty() {
        a.resource.clone()
    } else {
        format!("{}.{}", a.resource, a.api_group)
    };
    let head = if a.name.is_empty() {
        format!("{qualified} is forbidden")
    } else {
        format!("{qualified} \"{}\" is forbidden", a.name)
    };
    let scope = if a.namespace.is_empty() {
        "at the cluster scope".to_string()
    } else {
        format!("in the namespace \"{}\"", a.namespace)
    };
    format!(
        "{head}: User \"{}\" cannot {} resource \"{res}\" in API group \"{}\" {scope}{suffix}",
        a.user.name, a.verb, a.api_group
    )
}

/// Recomputes the rules of aggregated ClusterRoles; returns the (name, rules) that changed.
pub(crate) fn aggregate_cluster_roles(
    roles: &[std::sync::Arc<Value>],
) -> Vec<(String, Vec<Value>)> {
    let mut changed = Vec::new();
    for role in roles {
        let Some(selectors) = crate::util::dotted(role, "aggregationRule.clusterRoleSelectors")
            .and_then(Value::as_array)
        else {
            continue;
        };
        let name = crate::util::meta_str(role, "name").unwrap_or("");
        let mut rules: Vec<Value> = Vec::new();
        let mut sources: Vec<&std::sync::Arc<Value>> = roles
            .iter()
            .filter(|r| crate::util::meta_str(r, "name") != Some(name))
            .filter(|r| {
                selectors.iter().any(|s| {
                    crate::selector::from_label_selector_object(s)
                        .map(|sel| sel.matches_object(r))
                        .unwrap_or(false)
                })
            })
            .collect();
        sources.sort_by_key(|r| crate::util::meta_str(r, "name").unwrap_or("").to_string());
        for src in sources {
            for rule in src
                .get("rules")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                if !rules.contains(rule) {
                    rules.push(rule.clone());
                }
            }
        }
        let current = role
            .get("rules")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        if current != rules {
            changed.push((name.to_string(), rules));
        }
    }
    changed
}

/// The bootstrap ClusterRoles and ClusterRoleBindings kube-apiserver creates, abridged.
pub(crate) fn bootstrap_rbac() -> (Vec<Value>, Vec<Value>) {
    let read = json!(["get", "list", "watch"]);
    let write = json!(["create", "delete", "deletecollection", "patch", "update"]);
    let view_core = json!([
        "pods",
        "pods/log",
        "pods/status",
        "services",
        "services/status",
        "endpoints",
        "configmaps",
        "events",
        "namespaces",
        "namespaces/status",
        "persistentvolumeclaims",
        "persistentvolumeclaims/status",
        "replicationcontrollers",
        "replicationcontrollers/status",
        "replicationcontrollers/scale",
        "resourcequotas",
        "resourcequotas/status",
        "limitranges",
        "serviceaccounts",
        "bindings",
        "podtemplates"
    ]);
    let edit_core = json!([
        "pods",
        "pods/attach",
        "pods/exec",
        "pods/portforward",
        "pods/proxy",
        "pods/eviction",
        "services",
        "services/proxy",
        "endpoints",
        "configmaps",
        "secrets",
        "events",
        "persistentvolumeclaims",
        "replicationcontrollers",
        "replicationcontrollers/scale",
        "serviceaccounts"
    ]);
    let apps = json!([
        "deployments",
        "deployments/scale",
        "deployments/status",
        "replicasets",
        "replicasets/scale",
        "replicasets/status",
        "statefulsets",
        "statefulsets/scale",
        "statefulsets/status",
        "daemonsets",
        "daemonsets/status",
        "controllerrevisions"
    ]);
    let networking = json!(["networkpolicies", "ingresses", "ingresses/status"]);
    let role = |name: &str, labels: Value, rules: Value| {
        json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
            "metadata": {"name": name, "labels": labels, "annotations": {"rbac.authorization.kubernetes.io/autoupdate": "true"}},
            "rules": rules})
    };
    let bootstrap = json!({"kubernetes.io/bootstrapping": "rbac-defaults"});
    let agg = |to: &str| json!({"kubernetes.io/bootstrapping": "rbac-defaults", format!("rbac.authorization.k8s.io/aggregate-to-{to}"): "true"});
    let mut roles = vec![
        role(
            "cluster-admin",
            bootstrap.clone(),
            json!([
            {"apiGroups": ["*"], "resources": ["*"], "verbs": ["*"]},
            {"nonResourceURLs": ["*"], "verbs": ["*"]}]),
        ),
        role(
            "system:discovery",
            bootstrap.clone(),
            json!([
            {"nonResourceURLs": ["/api", "/api/*", "/apis", "/apis/*", "/healthz", "/livez", "/openapi", "/openapi/*", "/readyz", "/version", "/version/"], "verbs": ["get"]}]),
        ),
        role(
            "system:public-info-viewer",
            bootstrap.clone(),
            json!([
            {"nonResourceURLs": ["/healthz", "/livez", "/readyz", "/version", "/version/"], "verbs": ["get"]}]),
        ),
        role(
            "system:basic-user",
            bootstrap.clone(),
            json!([
            {"apiGroups": ["authorization.k8s.io"], "resources": ["selfsubjectaccessreviews", "selfsubjectrulesreviews"], "verbs": ["create"]},
            {"apiGroups": ["authentication.k8s.io"], "resources": ["selfsubjectreviews"], "verbs": ["create"]}]),
        ),
        role(
            "system:aggregate-to-view",
            agg("view"),
            json!([
            {"apiGroups": [""], "resources": view_core, "verbs": read},
            {"apiGroups": ["apps"], "resources": apps, "verbs": read},
            {"apiGroups": ["batch"], "resources": ["jobs", "jobs/status", "cronjobs", "cronjobs/status"], "verbs": read},
            {"apiGroups": ["networking.k8s.io"], "resources": networking, "verbs": read},
            {"apiGroups": ["discovery.k8s.io"], "resources": ["endpointslices"], "verbs": read},
            {"apiGroups": ["policy"], "resources": ["poddisruptionbudgets", "poddisruptionbudgets/status"], "verbs": read}]),
        ),
        role(
            "system:aggregate-to-edit",
            agg("edit"),
            json!([
            {"apiGroups": [""], "resources": edit_core, "verbs": write},
            {"apiGroups": [""], "resources": ["secrets"], "verbs": read},
            {"apiGroups": [""], "resources": ["serviceaccounts/token"], "verbs": ["create"]},
            {"apiGroups": ["apps"], "resources": apps, "verbs": write},
            {"apiGroups": ["batch"], "resources": ["jobs", "cronjobs"], "verbs": write},
            {"apiGroups": ["networking.k8s.io"], "resources": ["networkpolicies", "ingresses"], "verbs": write},
            {"apiGroups": ["discovery.k8s.io"], "resources": ["endpointslices"], "verbs": write},
            {"apiGroups": ["policy"], "resources": ["poddisruptionbudgets"], "verbs": write}]),
        ),
        role(
            "system:aggregate-to-admin",
            agg("admin"),
            json!([
            {"apiGroups": ["authorization.k8s.io"], "resources": ["localsubjectaccessreviews"], "verbs": ["create"]},
            {"apiGroups": ["rbac.authorization.k8s.io"], "resources": ["rolebindings", "roles"], "verbs": ["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"]}]),
        ),
    ];
    let aggregated = |name: &str, labels: Value, selectors: &[&str]| {
        let sels: Vec<Value> = selectors
            .iter()
            .map(|s| json!({"matchLabels": {format!("rbac.authorization.k8s.io/aggregate-to-{s}"): "true"}}))
            .collect();
        json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
            "metadata": {"name": name, "labels": labels, "annotations": {"rbac.authorization.kubernetes.io/autoupdate": "true"}},
            "aggregationRule": {"clusterRoleSelectors": sels}, "rules": []})
    };
    roles.push(aggregated("admin", bootstrap.clone(), &["admin"]));
    roles.push(aggregated("edit", agg("admin"), &["edit"]));
    roles.push(aggregated("view", agg("edit"), &["view"]));
    let binding = |name: &str, role: &str, subjects: Value| {
        json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
            "metadata": {"name": name, "labels": {"kubernetes.io/bootstrapping": "rbac-defaults"}, "annotations": {"rbac.authorization.kubernetes.io/autoupdate": "true"}},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": role},
            "subjects": subjects})
    };
    let group =
        |g: &str| json!({"apiGroup": "rbac.authorization.k8s.io", "kind": "Group", "name": g});
    let bindings = vec![
        binding(
            "cluster-admin",
            "cluster-admin",
            json!([group("system:masters")]),
        ),
        binding(
            "system:discovery",
            "system:discovery",
            json!([group("system:authenticated")]),
        ),
        binding(
            "system:basic-user",
            "system:basic-user",
            json!([group("system:authenticated")]),
        ),
        binding(
            "system:public-info-viewer",
            "system:public-info-viewer",
            json!([
                group("system:authenticated"),
                group("system:unauthenticated")
            ]),
        ),
    ];
    (roles, bindings)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attrs(verb: &str, group: &str, resource: &str, sub: &str, name: &str) -> Attributes {
        Attributes {
            user: UserInfo {
                name: "alice".into(),
                ..UserInfo::default()
            },
            verb: verb.into(),
            resource_request: true,
            namespace: "default".into(),
            api_group: group.into(),
            resource: resource.into(),
            subresource: sub.into(),
            name: name.into(),
            path: String::new(),
        }
    }

    #[test]
    fn rule_semantics_decision_table() {
        let r = |v: Value| v;
        let cases: Vec<(Value, Attributes, bool)> = vec![
            (
                r(json!({"verbs": ["get"], "apiGroups": [""], "resources": ["pods"]})),
                attrs("get", "", "pods", "", "x"),
                true,
            ),
            (
                r(json!({"verbs": ["get"], "apiGroups": [""], "resources": ["pods"]})),
                attrs("list", "", "pods", "", ""),
                false,
            ),
            (
                r(json!({"verbs": ["*"], "apiGroups": [""], "resources": ["pods"]})),
                attrs("delete", "", "pods", "", "x"),
                true,
            ),
            (
                r(json!({"verbs": ["get"], "apiGroups": ["apps"], "resources": ["pods"]})),
                attrs("get", "", "pods", "", "x"),
                false,
            ),
            (
                r(json!({"verbs": ["get"], "apiGroups": ["*"], "resources": ["*"]})),
                attrs("get", "apps", "deployments", "", "x"),
                true,
            ),
            // Subresources need to be named explicitly.
            (
                r(json!({"verbs": ["create"], "apiGroups": [""], "resources": ["pods"]})),
                attrs("create", "", "pods", "exec", "x"),
                false,
            ),
            (
                r(json!({"verbs": ["create"], "apiGroups": [""], "resources": ["pods/exec"]})),
                attrs("create", "", "pods", "exec", "x"),
                true,
            ),
            (
                r(json!({"verbs": ["get"], "apiGroups": [""], "resources": ["*/status"]})),
                attrs("get", "", "pods", "status", "x"),
                true,
            ),
            (
                r(json!({"verbs": ["get"], "apiGroups": [""], "resources": ["*/status"]})),
                attrs("get", "", "pods", "", "x"),
                false,
            ),
            (
                r(json!({"verbs": ["get"], "apiGroups": [""], "resources": ["*"]})),
                attrs("get", "", "pods", "log", "x"),
                true,
            ),
            // resourceNames restrict to those names; list/create (no name) do not match.
            (
                r(
                    json!({"verbs": ["get", "list"], "apiGroups": [""], "resources": ["pods"], "resourceNames": ["x"]}),
                ),
                attrs("get", "", "pods", "", "x"),
                true,
            ),
            (
                r(
                    json!({"verbs": ["get", "list"], "apiGroups": [""], "resources": ["pods"], "resourceNames": ["x"]}),
                ),
                attrs("get", "", "pods", "", "y"),
                false,
            ),
            (
                r(
                    json!({"verbs": ["get", "list"], "apiGroups": [""], "resources": ["pods"], "resourceNames": ["x"]}),
                ),
                attrs("list", "", "pods", "", ""),
                false,
            ),
        ];
        for (rule, a, want) in cases {
            assert_eq!(rule_allows(&rule, &a), want, "{rule} {a:?}");
        }
        let mut nr = attrs("get", "", "", "", "");
        nr.resource_request = false;
        nr.path = "/apis/apps/v1".into();
        assert!(rule_allows(
            &json!({"verbs": ["get"], "nonResourceURLs": ["/apis/*"]}),
            &nr
        ));
        assert!(!rule_allows(
            &json!({"verbs": ["get"], "nonResourceURLs": ["/api"]}),
            &nr
        ));
        assert!(rule_allows(
            &json!({"verbs": ["get"], "nonResourceURLs": ["*"]}),
            &nr
        ));
        // A resource rule never matches a non-resource request.
        assert!(!rule_allows(
            &json!({"verbs": ["get"], "apiGroups": ["*"], "resources": ["*"]}),
            &nr
        ));
    }

    #[test]
    fn forbidden_messages_match_upstream() {
        let a = attrs("list", "", "pods", "", "");
        assert_eq!(
            forbidden_message(&a, ""),
            "pods is forbidden: User \"alice\" cannot list resource \"pods\" in API group \"\" in the namespace \"default\""
        );
        let mut b = attrs("get", "apps", "deployments", "scale", "web");
        b.namespace.clear();
        assert_eq!(
            forbidden_message(&b, ""),
            "deployments.apps \"web\" is forbidden: User \"alice\" cannot get resource \"deployments/scale\" in API group \"apps\" at the cluster scope"
        );
    }

    #[test]
    fn token_file_parses() {
        let t =
            StaticToken::parse_file("# comment\nabc,alice,u1,\"dev,ops\"\ndef,bob,u2\n").unwrap();
        assert_eq!(t[0].groups, ["dev", "ops"]);
        assert!(t[1].groups.is_empty());
        assert!(StaticToken::parse_file("only,two").is_err());
    }
}
