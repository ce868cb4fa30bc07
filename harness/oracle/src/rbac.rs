//! Kubernetes RBAC decisions (the upstream RBAC authorizer's semantics) and the Kubernetes →
//! Contrail RBAC mapping whose consistency the harness checks (CONFORMANCE.md §4).

use std::collections::{BTreeMap, HashSet};
use std::fmt;

use harness_scenario::{RbacRequest, Subject};
use k8s_openapi::api::rbac::v1 as rbac;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::selector::{Labels, Selector};

/// One compiled `PolicyRule`.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Rule {
    verbs: Vec<String>,
    api_groups: Vec<String>,
    resources: Vec<String>,
    resource_names: Vec<String>,
    non_resource_urls: Vec<String>,
}

impl Rule {
    fn from_k8s(r: &rbac::PolicyRule) -> Self {
        Rule {
            verbs: r.verbs.clone(),
            api_groups: r.api_groups.clone().unwrap_or_default(),
            resources: r.resources.clone().unwrap_or_default(),
            resource_names: r.resource_names.clone().unwrap_or_default(),
            non_resource_urls: r.non_resource_urls.clone().unwrap_or_default(),
        }
    }

    fn verb_matches(&self, verb: &str) -> bool {
        self.verbs.iter().any(|v| v == "*" || v == verb)
    }

    /// Upstream `ResourceMatches`: `*`, an exact `resource[/subresource]`, or `*/subresource`.
    fn resource_matches(&self, resource: &str, sub: Option<&str>) -> bool {
        let combined = match sub {
            Some(s) => format!("{resource}/{s}"),
            None => resource.to_string(),
        };
        self.resources.iter().any(|r| {
            r == "*"
                || *r == combined
                || sub.is_some_and(|s| r.strip_prefix("*/").is_some_and(|rs| rs == s))
        })
    }

    fn allows_resource(
        &self,
        verb: &str,
        group: &str,
        resource: &str,
        sub: Option<&str>,
        name: Option<&str>,
    ) -> bool {
        self.verb_matches(verb)
            && self.api_groups.iter().any(|g| g == "*" || g == group)
            && self.resource_matches(resource, sub)
            && (self.resource_names.is_empty()
                || name.is_some_and(|n| self.resource_names.iter().any(|r| r == n)))
    }

    /// Upstream `NonResourceURLMatches`: `*`, exact, or a trailing `*` prefix.
    fn allows_url(&self, verb: &str, path: &str) -> bool {
        self.verb_matches(verb)
            && self.non_resource_urls.iter().any(|u| {
                u == "*"
                    || u == path
                    || u.strip_suffix('*')
                        .is_some_and(|prefix| path.starts_with(prefix))
            })
    }
}

impl fmt::Display for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.verbs.join(","))?;
        if !self.non_resource_urls.is_empty() {
            return write!(f, " {}", self.non_resource_urls.join(","));
        }
        write!(f, " {}", self.resources.join(","))?;
        let groups: Vec<&str> = self
            .api_groups
            .iter()
            .map(|g| if g.is_empty() { "core" } else { g.as_str() })
            .collect();
        write!(f, " in {}", groups.join(","))?;
        if !self.resource_names.is_empty() {
            write!(f, " named {}", self.resource_names.join(","))?;
        }
        Ok(())
    }
}

#[derive(Clone, Debug)]
struct RoleDef {
    /// `None` for a ClusterRole.
    namespace: Option<String>,
    name: String,
    labels: Labels,
    rules: Vec<Rule>,
    aggregation: Option<Vec<Selector>>,
}

impl RoleDef {
    fn id(&self) -> String {
        match &self.namespace {
            Some(ns) => format!("Role {ns}/{}", self.name),
            None => format!("ClusterRole {}", self.name),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum SubjectRef {
    User(String),
    Group(String),
    ServiceAccount { namespace: String, name: String },
}

#[derive(Clone, Debug)]
struct BindingDef {
    /// `None` for a ClusterRoleBinding.
    namespace: Option<String>,
    name: String,
    cluster_role: bool,
    role: String,
    subjects: Vec<SubjectRef>,
}

impl BindingDef {
    fn id(&self) -> String {
        match &self.namespace {
            Some(ns) => format!("RoleBinding {ns}/{}", self.name),
            None => format!("ClusterRoleBinding {}", self.name),
        }
    }
}

/// RBAC objects collected from manifests, before aggregation is resolved.
#[derive(Default, Debug)]
pub(crate) struct RbacObjects {
    roles: Vec<RoleDef>,
    bindings: Vec<BindingDef>,
}

impl RbacObjects {
    /// Adds one Role, ClusterRole, RoleBinding or ClusterRoleBinding manifest.
    pub(crate) fn add(&mut self, v: &Value, kind: &str, _id: &str) -> Result<(), String> {
        let err = |e: serde_json::Error| format!("not a valid {kind}: {e}");
        match kind {
            "Role" => {
                let r: rbac::Role = serde_json::from_value(v.clone()).map_err(err)?;
                self.put_role(RoleDef {
                    namespace: Some(
                        r.metadata
                            .namespace
                            .clone()
                            .unwrap_or_else(|| "default".into()),
                    ),
                    name: r.metadata.name.clone().unwrap_or_default(),
                    labels: r.metadata.labels.clone().unwrap_or_default(),
                    rules: r.rules.iter().flatten().map(Rule::from_k8s).collect(),
                    aggregation: None,
                });
            }
            "ClusterRole" => {
                let r: rbac::ClusterRole = serde_json::from_value(v.clone()).map_err(err)?;
                let aggregation = match &r.aggregation_rule {
                    None => None,
                    Some(a) => {
                        let mut sels = Vec::new();
                        for s in a.cluster_role_selectors.iter().flatten() {
                            sels.push(Selector::from_k8s(s).map_err(|e| {
                                format!("aggregationRule.clusterRoleSelectors: {e}")
                            })?);
                        }
                        Some(sels)
                    }
                };
                self.put_role(RoleDef {
                    namespace: None,
                    name: r.metadata.name.clone().unwrap_or_default(),
                    labels: r.metadata.labels.clone().unwrap_or_default(),
                    rules: r.rules.iter().flatten().map(Rule::from_k8s).collect(),
                    aggregation,
                });
            }
            "RoleBinding" | "ClusterRoleBinding" => {
                let (meta, role_ref, subjects, namespace) = if kind == "RoleBinding" {
                    let b: rbac::RoleBinding = serde_json::from_value(v.clone()).map_err(err)?;
                    let ns = b
                        .metadata
                        .namespace
                        .clone()
                        .unwrap_or_else(|| "default".into());
                    (b.metadata, b.role_ref, b.subjects, Some(ns))
                } else {
                    let b: rbac::ClusterRoleBinding =
                        serde_json::from_value(v.clone()).map_err(err)?;
                    (b.metadata, b.role_ref, b.subjects, None)
                };
                let cluster_role = match role_ref.kind.as_str() {
                    "ClusterRole" => true,
                    "Role" if namespace.is_some() => false,
                    other => {
                        return Err(format!(
                            "roleRef.kind `{other}`: a {kind} refers to a ClusterRole{}",
                            if namespace.is_some() {
                                " or a Role of its namespace"
                            } else {
                                ""
                            }
                        ));
                    }
                };
                let mut subs = Vec::new();
                for (i, s) in subjects.iter().flatten().enumerate() {
                    subs.push(match s.kind.as_str() {
                        "User" => SubjectRef::User(s.name.clone()),
                        "Group" => SubjectRef::Group(s.name.clone()),
                        "ServiceAccount" => SubjectRef::ServiceAccount {
                            namespace: match (&s.namespace, &namespace) {
                                (Some(ns), _) => ns.clone(),
                                (None, Some(ns)) => ns.clone(),
                                (None, None) => {
                                    return Err(format!("subjects[{i}]: a ServiceAccount subject of a ClusterRoleBinding needs `namespace`"));
                                }
                            },
                            name: s.name.clone(),
                        },
                        other => return Err(format!("subjects[{i}].kind `{other}`: use User, Group or ServiceAccount")),
                    });
                }
                let b = BindingDef {
                    namespace,
                    name: meta.name.clone().unwrap_or_default(),
                    cluster_role,
                    role: role_ref.name,
                    subjects: subs,
                };
                match self
                    .bindings
                    .iter_mut()
                    .find(|x| x.namespace == b.namespace && x.name == b.name)
                {
                    Some(x) => *x = b,
                    None => self.bindings.push(b),
                }
            }
            _ => {}
        }
        Ok(())
    }

    fn put_role(&mut self, r: RoleDef) {
        match self
            .roles
            .iter_mut()
            .find(|x| x.namespace == r.namespace && x.name == r.name)
        {
            Some(x) => *x = r,
            None => self.roles.push(r),
        }
    }
}

/// The bootstrap roles and bindings every cluster has (a representative subset of upstream's
/// `system:*`, `cluster-admin`, `admin`, `edit`, `view`); manifests of the same name replace
/// them.
fn bootstrap() -> Vec<(&'static str, Value)> {
    let rw = ["create", "delete", "deletecollection", "patch", "update"];
    let ro = ["get", "list", "watch"];
    let agg = |to: &str| json!({"rbac.authorization.k8s.io/aggregate-to-".to_owned() + to: "true"});
    let cr = |name: &str, labels: Value, rules: Value| json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole", "metadata": {"name": name, "labels": labels}, "rules": rules});
    let aggregated = |name: &str, labels: Value, to: &str| {
        json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole", "metadata": {"name": name, "labels": labels},
               "aggregationRule": {"clusterRoleSelectors": [{"matchLabels": {format!("rbac.authorization.k8s.io/aggregate-to-{to}"): "true"}}]}})
    };
    let crb = |name: &str, role: &str, groups: &[&str]| {
        let subjects: Vec<Value> = groups
            .iter()
            .map(|g| json!({"kind": "Group", "apiGroup": "rbac.authorization.k8s.io", "name": g}))
            .collect();
        json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding", "metadata": {"name": name},
               "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": role}, "subjects": subjects})
    };
    let health = ["/healthz", "/livez", "/readyz", "/version", "/version/"];
    vec![
        (
            "ClusterRole",
            cr(
                "cluster-admin",
                json!({}),
                json!([
            {"apiGroups": ["*"], "resources": ["*"], "verbs": ["*"]},
            {"nonResourceURLs": ["*"], "verbs": ["*"]}]),
            ),
        ),
        (
            "ClusterRole",
            cr(
                "system:discovery",
                json!({}),
                json!([
            {"nonResourceURLs": ["/api", "/api/*", "/apis", "/apis/*", "/healthz", "/livez", "/openapi", "/openapi/*", "/readyz", "/version", "/version/"], "verbs": ["get"]}]),
            ),
        ),
        (
            "ClusterRole",
            cr(
                "system:public-info-viewer",
                json!({}),
                json!([{"nonResourceURLs": health, "verbs": ["get"]}]),
            ),
        ),
        (
            "ClusterRole",
            cr(
                "system:basic-user",
                json!({}),
                json!([
            {"apiGroups": ["authorization.k8s.io"], "resources": ["selfsubjectaccessreviews", "selfsubjectrulesreviews"], "verbs": ["create"]},
            {"apiGroups": ["authentication.k8s.io"], "resources": ["selfsubjectreviews"], "verbs": ["create"]}]),
            ),
        ),
        ("ClusterRole", aggregated("admin", json!({}), "admin")),
        ("ClusterRole", aggregated("edit", agg("admin"), "edit")),
        ("ClusterRole", aggregated("view", agg("edit"), "view")),
        (
            "ClusterRole",
            cr(
                "system:aggregate-to-admin",
                agg("admin"),
                json!([
            {"apiGroups": ["authorization.k8s.io"], "resources": ["localsubjectaccessreviews"], "verbs": ["create"]},
            {"apiGroups": ["rbac.authorization.k8s.io"], "resources": ["rolebindings", "roles"], "verbs": ["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"]}]),
            ),
        ),
        (
            "ClusterRole",
            cr(
                "system:aggregate-to-edit",
                agg("edit"),
                json!([
            {"apiGroups": [""], "resources": ["pods", "pods/attach", "pods/exec", "pods/portforward", "pods/proxy"], "verbs": rw},
            {"apiGroups": [""], "resources": ["configmaps", "endpoints", "events", "persistentvolumeclaims", "replicationcontrollers", "replicationcontrollers/scale", "secrets", "serviceaccounts", "services", "services/proxy"], "verbs": rw},
            {"apiGroups": [""], "resources": ["pods/attach", "pods/exec", "pods/portforward", "pods/proxy", "secrets", "services/proxy"], "verbs": ro},
            {"apiGroups": [""], "resources": ["serviceaccounts"], "verbs": ["impersonate"]},
            {"apiGroups": [""], "resources": ["serviceaccounts/token"], "verbs": ["create"]},
            {"apiGroups": ["apps"], "resources": ["daemonsets", "deployments", "deployments/rollback", "deployments/scale", "replicasets", "replicasets/scale", "statefulsets", "statefulsets/scale"], "verbs": rw},
            {"apiGroups": ["autoscaling"], "resources": ["horizontalpodautoscalers"], "verbs": rw},
            {"apiGroups": ["batch"], "resources": ["cronjobs", "jobs"], "verbs": rw},
            {"apiGroups": ["networking.k8s.io"], "resources": ["ingresses", "networkpolicies"], "verbs": rw},
            {"apiGroups": ["policy"], "resources": ["poddisruptionbudgets"], "verbs": rw}]),
            ),
        ),
        (
            "ClusterRole",
            cr(
                "system:aggregate-to-view",
                agg("view"),
                json!([
            {"apiGroups": [""], "resources": ["configmaps", "endpoints", "persistentvolumeclaims", "persistentvolumeclaims/status", "pods", "pods/log", "pods/status", "replicationcontrollers", "replicationcontrollers/scale", "replicationcontrollers/status", "serviceaccounts", "services", "services/status", "bindings", "events", "limitranges", "resourcequotas", "resourcequotas/status", "namespaces", "namespaces/status"], "verbs": ro},
            {"apiGroups": ["apps"], "resources": ["controllerrevisions", "daemonsets", "daemonsets/status", "deployments", "deployments/scale", "deployments/status", "replicasets", "replicasets/scale", "replicasets/status", "statefulsets", "statefulsets/scale", "statefulsets/status"], "verbs": ro},
            {"apiGroups": ["autoscaling"], "resources": ["horizontalpodautoscalers", "horizontalpodautoscalers/status"], "verbs": ro},
            {"apiGroups": ["batch"], "resources": ["cronjobs", "cronjobs/status", "jobs", "jobs/status"], "verbs": ro},
            {"apiGroups": ["networking.k8s.io"], "resources": ["ingresses", "ingresses/status", "networkpolicies"], "verbs": ro},
            {"apiGroups": ["policy"], "resources": ["poddisruptionbudgets", "poddisruptionbudgets/status"], "verbs": ro},
            {"apiGroups": ["discovery.k8s.io"], "resources": ["endpointslices"], "verbs": ro}]),
            ),
        ),
        (
            "ClusterRoleBinding",
            crb("cluster-admin", "cluster-admin", &["system:masters"]),
        ),
        (
            "ClusterRoleBinding",
            crb(
                "system:discovery",
                "system:discovery",
                &["system:authenticated"],
            ),
        ),
        (
            "ClusterRoleBinding",
            crb(
                "system:basic-user",
                "system:basic-user",
                &["system:authenticated"],
            ),
        ),
        (
            "ClusterRoleBinding",
            crb(
                "system:public-info-viewer",
                "system:public-info-viewer",
                &["system:authenticated", "system:unauthenticated"],
            ),
        ),
    ]
}

/// The API group of a built-in resource, for requests that leave it out.
pub fn default_api_group(resource: &str) -> &'static str {
    match resource {
        "networkpolicies" | "ingresses" | "ingressclasses" | "ipaddresses" | "servicecidrs" => {
            "networking.k8s.io"
        }
        "roles" | "rolebindings" | "clusterroles" | "clusterrolebindings" => {
            "rbac.authorization.k8s.io"
        }
        "deployments" | "daemonsets" | "replicasets" | "statefulsets" | "controllerrevisions" => {
            "apps"
        }
        "jobs" | "cronjobs" => "batch",
        "horizontalpodautoscalers" => "autoscaling",
        "poddisruptionbudgets" => "policy",
        "endpointslices" => "discovery.k8s.io",
        "storageclasses" | "volumeattachments" | "csidrivers" | "csinodes" => "storage.k8s.io",
        "customresourcedefinitions" => "apiextensions.k8s.io",
        "leases" => "coordination.k8s.io",
        "subjectaccessreviews"
        | "selfsubjectaccessreviews"
        | "localsubjectaccessreviews"
        | "selfsubjectrulesreviews" => "authorization.k8s.io",
        "tokenreviews" | "selfsubjectreviews" => "authentication.k8s.io",
        "certificatesigningrequests" => "certificates.k8s.io",
        "priorityclasses" => "scheduling.k8s.io",
        "runtimeclasses" => "node.k8s.io",
        "validatingwebhookconfigurations" | "mutatingwebhookconfigurations" => {
            "admissionregistration.k8s.io"
        }
        _ => "",
    }
}

/// The answer to one authorization question.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Decision {
    /// Whether the request is allowed.
    pub allowed: bool,
    /// The binding, role and rule that allowed it, or why nothing did.
    pub reason: String,
}

impl fmt::Display for Decision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}: {}",
            if self.allowed { "allowed" } else { "denied" },
            self.reason
        )
    }
}

/// A Contrail RBAC operation (`api-access-list` CRUD letter).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Crud {
    #[serde(rename = "C")]
    /// `C`: create.
    Create,
    #[serde(rename = "R")]
    /// `R`: get, list, watch.
    Read,
    #[serde(rename = "U")]
    /// `U`: update, patch.
    Update,
    #[serde(rename = "D")]
    /// `D`: delete, deletecollection.
    Delete,
}

impl Crud {
    /// The CRUD letter.
    pub fn letter(self) -> char {
        match self {
            Crud::Create => 'C',
            Crud::Read => 'R',
            Crud::Update => 'U',
            Crud::Delete => 'D',
        }
    }
}

impl fmt::Display for Crud {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.letter())
    }
}

/// The Kubernetes → Contrail RBAC mapping profile. Deserializable from the same JSON/YAML a
/// user writes in a mapping file (`resources`, `verbs`, optional `clusterScoped`); the caller
/// reads the file.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ContrailMapping {
    /// Profile version, `v1` for the default.
    #[serde(default = "v1")]
    pub version: String,
    /// Kubernetes plural resource (or `resource/subresource`) → Contrail object types.
    pub resources: BTreeMap<String, Vec<String>>,
    /// Kubernetes verb → CRUD letter.
    pub verbs: BTreeMap<String, Crud>,
    /// Resources whose Contrail objects are not in a namespace project (default: `namespaces`).
    #[serde(default = "default_cluster_scoped")]
    pub cluster_scoped: Vec<String>,
}

fn v1() -> String {
    "v1".into()
}

fn default_cluster_scoped() -> Vec<String> {
    vec!["namespaces".into()]
}

impl Default for ContrailMapping {
    /// The v1 mapping of CONFORMANCE.md §4.
    fn default() -> Self {
        let objs = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let lb = objs(&[
            "loadbalancer",
            "loadbalancer-listener",
            "loadbalancer-pool",
            "loadbalancer-member",
            "floating-ip",
        ]);
        let resources = BTreeMap::from([
            (
                "pods".to_string(),
                objs(&[
                    "virtual-machine",
                    "virtual-machine-interface",
                    "instance-ip",
                ]),
            ),
            ("services".to_string(), lb.clone()),
            ("endpoints".to_string(), lb),
            (
                "ingresses".to_string(),
                objs(&["loadbalancer", "floating-ip"]),
            ),
            (
                "networkpolicies".to_string(),
                objs(&["firewall-policy", "firewall-rule", "address-group", "tag"]),
            ),
            ("namespaces".to_string(), objs(&["project"])),
        ]);
        let verbs = BTreeMap::from([
            ("get".to_string(), Crud::Read),
            ("list".to_string(), Crud::Read),
            ("watch".to_string(), Crud::Read),
            ("create".to_string(), Crud::Create),
            ("update".to_string(), Crud::Update),
            ("patch".to_string(), Crud::Update),
            ("delete".to_string(), Crud::Delete),
            ("deletecollection".to_string(), Crud::Delete),
        ]);
        ContrailMapping {
            version: v1(),
            resources,
            verbs,
            cluster_scoped: default_cluster_scoped(),
        }
    }
}

/// Errors of a mapping given by the user.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MappingError {
    #[error(
        "RBAC mapping is not valid: {0}; see the v1 mapping (`ContrailMapping::default`) for the shape"
    )]
    /// The mapping does not deserialize.
    Parse(String),
    #[error(
        "RBAC mapping: resource `{0}` maps to no Contrail object type: list at least one, or remove it"
    )]
    /// A resource maps to no object type.
    EmptyResource(String),
}

impl ContrailMapping {
    /// Reads a mapping from a JSON value (a YAML document deserialized to JSON works too).
    ///
    /// # Errors
    ///
    /// [`MappingError`] for unknown fields, a CRUD letter other than C/R/U/D, or a resource
    /// mapped to nothing.
    pub fn from_json(v: Value) -> Result<Self, MappingError> {
        let m: ContrailMapping =
            serde_json::from_value(v).map_err(|e| MappingError::Parse(e.to_string()))?;
        if let Some((r, _)) = m.resources.iter().find(|(_, objs)| objs.is_empty()) {
            return Err(MappingError::EmptyResource(r.clone()));
        }
        Ok(m)
    }
}

/// What the Contrail API must answer for one mapped operation.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ContrailAccess {
    /// VNC object type, e.g. `virtual-machine-interface`.
    pub object_type: String,
    /// `k8s-<ns>` for a namespaced request, `None` for cluster scope or all namespaces.
    pub project: Option<String>,
    /// The CRUD operation.
    pub op: Crud,
    /// Must equal the Kubernetes decision (consistency).
    pub allowed: bool,
}

/// Kubernetes RBAC authorizer over the cluster's RBAC objects plus the bootstrap roles.
#[derive(Clone, Debug)]
pub struct Rbac {
    roles: Vec<RoleDef>,
    bindings: Vec<BindingDef>,
    mapping: ContrailMapping,
    cluster_name: String,
}

/// The identity a request is evaluated as.
struct Identity {
    user: String,
    groups: Vec<String>,
}

impl Identity {
    fn of(s: &Subject) -> Identity {
        let mut groups = s.groups.clone();
        let sa_user = s.service_account.as_ref().map(|sa| {
            let (ns, name) = sa.split_once('/').unwrap_or(("default", sa.as_str()));
            groups.push("system:serviceaccounts".into());
            groups.push(format!("system:serviceaccounts:{ns}"));
            format!("system:serviceaccount:{ns}:{name}")
        });
        let user = s.user.clone().or(sa_user);
        match user {
            None if groups.is_empty() => Identity {
                user: "system:anonymous".into(),
                groups: vec!["system:unauthenticated".into()],
            },
            user => {
                if !groups.iter().any(|g| g == "system:authenticated") {
                    groups.push("system:authenticated".into());
                }
                Identity {
                    user: user.unwrap_or_default(),
                    groups,
                }
            }
        }
    }

    fn matches(&self, s: &SubjectRef) -> bool {
        match s {
            SubjectRef::User(u) => *u == self.user,
            SubjectRef::Group(g) => self.groups.contains(g),
            SubjectRef::ServiceAccount { namespace, name } => {
                self.user == format!("system:serviceaccount:{namespace}:{name}")
            }
        }
    }
}

impl fmt::Display for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "user {} (groups {})", self.user, self.groups.join(", "))
    }
}

/// A request with the API group and namespace resolved.
struct Resolved<'a> {
    verb: &'a str,
    group: String,
    resource: Option<&'a str>,
    sub: Option<&'a str>,
    name: Option<&'a str>,
    namespace: Option<String>,
    path: Option<&'a str>,
}

impl<'a> Resolved<'a> {
    fn of(r: &'a RbacRequest) -> Self {
        let resource = r.resource.as_deref();
        let group = r
            .group
            .clone()
            .unwrap_or_else(|| resource.map(default_api_group).unwrap_or("").to_string());
        // The API server files `GET /api/v1/namespaces/NAME` under namespace NAME.
        let namespace = match (&r.namespace, resource, &r.name) {
            (None, Some("namespaces"), Some(n)) => Some(n.clone()),
            (ns, _, _) => ns.clone(),
        };
        Resolved {
            verb: &r.verb,
            group,
            resource,
            sub: r.subresource.as_deref(),
            name: r.name.as_deref(),
            namespace,
            path: r.path.as_deref(),
        }
    }

    fn allowed_by(&self, rule: &Rule, cluster_wide: bool) -> bool {
        match (self.path, self.resource) {
            // Non-resource URLs are granted by ClusterRoleBindings only.
            (Some(p), _) => cluster_wide && rule.allows_url(self.verb, p),
            (None, Some(res)) => {
                rule.allows_resource(self.verb, &self.group, res, self.sub, self.name)
            }
            (None, None) => false,
        }
    }
}

impl Rbac {
    pub(crate) fn new(objects: RbacObjects, cluster_name: &str) -> Result<Rbac, String> {
        let mut base = RbacObjects::default();
        for (kind, v) in bootstrap() {
            base.add(&v, kind, "bootstrap")?;
        }
        for r in objects.roles {
            base.put_role(r);
        }
        for b in objects.bindings {
            match base
                .bindings
                .iter_mut()
                .find(|x| x.namespace == b.namespace && x.name == b.name)
            {
                Some(x) => *x = b,
                None => base.bindings.push(b),
            }
        }
        let mut roles = base.roles;
        // Aggregation: an aggregated ClusterRole's rules are those of the ClusterRoles its
        // selectors match, transitively (the controller reconciles until stable).
        let aggregated: Vec<usize> = (0..roles.len())
            .filter(|&i| roles[i].aggregation.is_some())
            .collect();
        for &i in &aggregated {
            let mut seen = HashSet::new();
            let rules = aggregate(&roles, i, &mut seen);
            roles[i].rules = rules;
        }
        Ok(Rbac {
            roles,
            bindings: base.bindings,
            mapping: ContrailMapping::default(),
            cluster_name: cluster_name.into(),
        })
    }

    pub(crate) fn set_mapping(&mut self, m: ContrailMapping) {
        self.mapping = m;
    }

    /// The mapping in use.
    pub fn mapping(&self) -> &ContrailMapping {
        &self.mapping
    }

    fn role(&self, b: &BindingDef) -> Option<&RoleDef> {
        let ns = if b.cluster_role {
            None
        } else {
            b.namespace.clone()
        };
        self.roles
            .iter()
            .find(|r| r.name == b.role && r.namespace == ns)
    }

    /// Decides a request as the upstream RBAC authorizer would: `system:masters` is allowed
    /// everything; ClusterRoleBindings grant in every namespace and at cluster scope;
    /// RoleBindings grant only in their own namespace (also when they refer to a ClusterRole);
    /// non-resource URLs only through ClusterRoleBindings.
    ///
    /// # Caveats
    ///
    /// A subject with neither user, service account nor groups is anonymous
    /// (`system:anonymous`, group `system:unauthenticated`). The bootstrap roles are a subset of
    /// upstream's (`cluster-admin`, `admin`, `edit`, `view`, `system:discovery`,
    /// `system:basic-user`, `system:public-info-viewer`).
    pub fn decide(&self, subject: &Subject, request: &RbacRequest) -> Decision {
        let who = Identity::of(subject);
        if who.groups.iter().any(|g| g == "system:masters") {
            return Decision {
                allowed: true,
                reason: "group system:masters is allowed everything".into(),
            };
        }
        let req = Resolved::of(request);
        for b in &self.bindings {
            let applies = match &b.namespace {
                None => true,
                Some(ns) => req.namespace.as_deref() == Some(ns.as_str()),
            };
            if !applies || !b.subjects.iter().any(|s| who.matches(s)) {
                continue;
            }
            let Some(role) = self.role(b) else { continue };
            if let Some((i, rule)) = role
                .rules
                .iter()
                .enumerate()
                .find(|(_, r)| req.allowed_by(r, b.namespace.is_none()))
            {
                return Decision {
                    allowed: true,
                    reason: format!("{} → {} rule {i} ({rule})", b.id(), role.id()),
                };
            }
        }
        let what = match (req.path, req.resource) {
            (Some(p), _) => format!("{} {p}", req.verb),
            (None, Some(r)) => {
                let mut s = format!("{} {r}", req.verb);
                if let Some(sub) = req.sub {
                    s.push('/');
                    s.push_str(sub);
                }
                if !req.group.is_empty() {
                    s.push('.');
                    s.push_str(&req.group);
                }
                if let Some(n) = req.name {
                    s.push(' ');
                    s.push_str(n);
                }
                match &req.namespace {
                    Some(ns) => s.push_str(&format!(" in namespace {ns}")),
                    None => s.push_str(" at cluster scope"),
                }
                s
            }
            (None, None) => req.verb.to_string(),
        };
        // A hint: RoleBindings of the subject that would allow it in another namespace.
        let elsewhere: Vec<String> = self
            .bindings
            .iter()
            .filter(|b| {
                b.namespace.is_some()
                    && b.namespace != req.namespace
                    && b.subjects.iter().any(|s| who.matches(s))
            })
            .filter(|b| {
                self.role(b)
                    .is_some_and(|r| r.rules.iter().any(|rule| req.allowed_by(rule, false)))
            })
            .map(|b| b.id())
            .collect();
        let hint = if elsewhere.is_empty() {
            String::new()
        } else {
            format!(
                " ({} grants it in its own namespace only)",
                elsewhere.join(", ")
            )
        };
        Decision {
            allowed: false,
            reason: format!("no RBAC rule allows {who} to {what}{hint}"),
        }
    }

    /// What the Contrail API must answer, as the same subject, for the Contrail operations the
    /// mapping derives from a Kubernetes request: one entry per mapped object type (and per
    /// CRUD letter for the verb `*`), each allowed exactly when Kubernetes allows the request.
    /// Requests on unmapped resources, subresources or verbs yield nothing.
    pub fn contrail_expectation(
        &self,
        subject: &Subject,
        request: &RbacRequest,
    ) -> Vec<ContrailAccess> {
        let Some(resource) = request.resource.as_deref() else {
            return Vec::new();
        };
        let key = match &request.subresource {
            Some(s) => format!("{resource}/{s}"),
            None => resource.to_string(),
        };
        let Some(objects) = self.mapping.resources.get(&key) else {
            return Vec::new();
        };
        let ops: Vec<Crud> = if request.verb == "*" {
            let mut v: Vec<Crud> = self.mapping.verbs.values().copied().collect();
            v.sort();
            v.dedup();
            v
        } else {
            self.mapping
                .verbs
                .get(&request.verb)
                .copied()
                .into_iter()
                .collect()
        };
        if ops.is_empty() {
            return Vec::new();
        }
        let allowed = self.decide(subject, request).allowed;
        let project = if self
            .mapping
            .cluster_scoped
            .iter()
            .any(|r| *r == key || r == resource)
        {
            None
        } else {
            request
                .namespace
                .as_ref()
                .map(|ns| format!("{}-{ns}", self.cluster_name))
        };
        objects
            .iter()
            .flat_map(|o| ops.iter().map(move |op| (o, *op)))
            .map(|(o, op)| ContrailAccess {
                object_type: o.clone(),
                project: project.clone(),
                op,
                allowed,
            })
            .collect()
    }
}

fn aggregate(roles: &[RoleDef], i: usize, seen: &mut HashSet<usize>) -> Vec<Rule> {
    if !seen.insert(i) {
        return Vec::new();
    }
    let Some(sels) = &roles[i].aggregation else {
        return roles[i].rules.clone();
    };
    let mut out: Vec<Rule> = Vec::new();
    for (j, r) in roles.iter().enumerate() {
        if j == i || r.namespace.is_some() || !sels.iter().any(|s| s.matches(&r.labels)) {
            continue;
        }
        for rule in aggregate(roles, j, seen) {
            if !out.contains(&rule) {
                out.push(rule);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Cluster;
    use harness_scenario::{ClusterSpec, ContrailSettings};

    fn rbac(objs: Vec<Value>) -> Rbac {
        Cluster::from_objects(&objs, &ClusterSpec::default(), &ContrailSettings::default())
            .unwrap()
            .rbac()
            .clone()
    }

    fn user(u: &str) -> Subject {
        Subject {
            user: Some(u.into()),
            groups: vec![],
            service_account: None,
        }
    }

    fn req(s: &str) -> RbacRequest {
        s.parse().unwrap()
    }

    fn role(ns: &str, name: &str, rules: Value) -> Value {
        json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role", "metadata": {"name": name, "namespace": ns}, "rules": rules})
    }

    fn cluster_role(name: &str, rules: Value) -> Value {
        json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole", "metadata": {"name": name}, "rules": rules})
    }

    fn binding(ns: Option<&str>, name: &str, kind: &str, role: &str, subjects: Value) -> Value {
        let mut v = json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": if ns.is_some() { "RoleBinding" } else { "ClusterRoleBinding" },
            "metadata": {"name": name}, "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": kind, "name": role}, "subjects": subjects});
        if let Some(ns) = ns {
            v["metadata"]["namespace"] = json!(ns);
        }
        v
    }

    fn alice() -> Value {
        json!([{"kind": "User", "apiGroup": "rbac.authorization.k8s.io", "name": "alice"}])
    }

    #[test]
    fn wildcard_verbs_and_resources() {
        let r = rbac(vec![
            role(
                "x",
                "all-pods",
                json!([{"apiGroups": [""], "resources": ["pods"], "verbs": ["*"]}]),
            ),
            role(
                "x",
                "everything",
                json!([{"apiGroups": ["*"], "resources": ["*"], "verbs": ["get"]}]),
            ),
            binding(Some("x"), "b1", "Role", "all-pods", alice()),
            binding(
                Some("x"),
                "b2",
                "Role",
                "everything",
                json!([{"kind": "User", "name": "bob"}]),
            ),
        ]);
        assert!(r.decide(&user("alice"), &req("delete pods -n x")).allowed);
        assert!(
            !r.decide(&user("alice"), &req("delete services -n x"))
                .allowed
        );
        assert!(
            r.decide(&user("bob"), &req("get networkpolicies -n x"))
                .allowed
        );
        assert!(
            r.decide(&user("bob"), &req("get pods/log -n x")).allowed,
            "`*` covers subresources"
        );
        assert!(!r.decide(&user("bob"), &req("list pods -n x")).allowed);
        let d = r.decide(&user("alice"), &req("delete pods -n x"));
        assert_eq!(
            d.reason,
            "RoleBinding x/b1 → Role x/all-pods rule 0 (* pods in core)"
        );
    }

    #[test]
    fn resource_names_restrict_get_but_not_list() {
        let r = rbac(vec![
            role(
                "x",
                "one",
                json!([{"apiGroups": [""], "resources": ["pods"], "resourceNames": ["a"], "verbs": ["get", "list"]}]),
            ),
            binding(Some("x"), "b", "Role", "one", alice()),
        ]);
        assert!(r.decide(&user("alice"), &req("get pods a -n x")).allowed);
        assert!(!r.decide(&user("alice"), &req("get pods b -n x")).allowed);
        assert!(
            !r.decide(&user("alice"), &req("list pods -n x")).allowed,
            "a list names no object, so resourceNames never match it"
        );
    }

    #[test]
    fn subresources_need_an_explicit_grant() {
        let r = rbac(vec![
            role(
                "x",
                "pods",
                json!([{"apiGroups": [""], "resources": ["pods"], "verbs": ["get"]},
                                     {"apiGroups": ["apps"], "resources": ["*/scale"], "verbs": ["update"]}]),
            ),
            binding(Some("x"), "b", "Role", "pods", alice()),
        ]);
        assert!(r.decide(&user("alice"), &req("get pods -n x")).allowed);
        assert!(!r.decide(&user("alice"), &req("get pods/log -n x")).allowed);
        assert!(
            r.decide(&user("alice"), &req("update deployments/scale -n x"))
                .allowed,
            "*/scale"
        );
        assert!(
            !r.decide(&user("alice"), &req("update deployments -n x"))
                .allowed
        );
    }

    #[test]
    fn role_binding_to_cluster_role_is_namespace_scoped() {
        let r = rbac(vec![binding(
            Some("blue"),
            "dev",
            "ClusterRole",
            "edit",
            alice(),
        )]);
        assert!(
            r.decide(&user("alice"), &req("create networkpolicies -n blue"))
                .allowed
        );
        assert!(
            r.decide(&user("alice"), &req("get pods -n blue")).allowed,
            "edit aggregates view"
        );
        let d = r.decide(&user("alice"), &req("list pods -n x"));
        assert!(
            !d.allowed
                && d.reason
                    .contains("RoleBinding blue/dev grants it in its own namespace only"),
            "{}",
            d.reason
        );
        assert!(!r.decide(&user("alice"), &req("delete namespaces")).allowed);
        assert!(
            !r.decide(&user("alice"), &req("create roles -n blue"))
                .allowed,
            "roles are admin, not edit"
        );
        let r = rbac(vec![binding(None, "all", "ClusterRole", "view", alice())]);
        assert!(r.decide(&user("alice"), &req("list pods -n x")).allowed);
        assert!(r.decide(&user("alice"), &req("list pods")).allowed);
        assert!(
            !r.decide(&user("alice"), &req("get secrets -n x")).allowed,
            "view does not read secrets"
        );
    }

    #[test]
    fn aggregation_by_label_selectors() {
        let r = rbac(vec![
            json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole", "metadata": {"name": "monitoring"},
                   "aggregationRule": {"clusterRoleSelectors": [{"matchLabels": {"agg": "mon"}}]}}),
            json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole", "metadata": {"name": "svc-reader", "labels": {"agg": "mon"}},
                   "rules": [{"apiGroups": [""], "resources": ["services"], "verbs": ["get"]}]}),
            json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole", "metadata": {"name": "ep-reader", "labels": {"rbac.authorization.k8s.io/aggregate-to-view": "true"}},
                   "rules": [{"apiGroups": ["example.com"], "resources": ["widgets"], "verbs": ["get"]}]}),
            binding(None, "mon", "ClusterRole", "monitoring", alice()),
            binding(
                None,
                "v",
                "ClusterRole",
                "view",
                json!([{"kind": "Group", "name": "dev"}]),
            ),
        ]);
        assert!(r.decide(&user("alice"), &req("get services -n x")).allowed);
        assert!(!r.decide(&user("alice"), &req("get pods -n x")).allowed);
        let dev = Subject {
            user: Some("carol".into()),
            groups: vec!["dev".into()],
            service_account: None,
        };
        assert!(
            r.decide(&dev, &req("get widgets.example.com -n x")).allowed,
            "a user role aggregated into view"
        );
    }

    #[test]
    fn service_account_subjects_and_groups() {
        let r = rbac(vec![
            role(
                "x",
                "reader",
                json!([{"apiGroups": [""], "resources": ["pods"], "verbs": ["list"]}]),
            ),
            binding(
                Some("x"),
                "sa",
                "Role",
                "reader",
                json!([{"kind": "ServiceAccount", "name": "bot"}]),
            ),
            binding(
                Some("x"),
                "all-sa",
                "ClusterRole",
                "view",
                json!([{"kind": "Group", "name": "system:serviceaccounts:y"}]),
            ),
        ]);
        let bot = Subject {
            service_account: Some("x/bot".into()),
            ..Default::default()
        };
        assert!(r.decide(&bot, &req("list pods -n x")).allowed);
        assert!(!r.decide(&bot, &req("list pods -n y")).allowed);
        let other = Subject {
            service_account: Some("y/robot".into()),
            ..Default::default()
        };
        assert!(
            r.decide(&other, &req("get services -n x")).allowed,
            "group system:serviceaccounts:y"
        );
        assert!(
            !r.decide(
                &user("system:serviceaccount:x:other"),
                &req("list pods -n x")
            )
            .allowed
        );
        assert!(
            r.decide(&user("system:serviceaccount:x:bot"), &req("list pods -n x"))
                .allowed
        );
    }

    #[test]
    fn masters_non_resource_urls_and_defaults() {
        let r = rbac(vec![
            cluster_role(
                "metrics",
                json!([{"nonResourceURLs": ["/metrics", "/logs/*"], "verbs": ["get"]}]),
            ),
            binding(None, "m", "ClusterRole", "metrics", alice()),
            binding(
                Some("x"),
                "m",
                "ClusterRole",
                "metrics",
                json!([{"kind": "User", "name": "bob"}]),
            ),
        ]);
        let admin = Subject {
            user: Some("admin".into()),
            groups: vec!["system:masters".into()],
            service_account: None,
        };
        assert!(r.decide(&admin, &req("delete namespaces")).allowed);
        assert!(r.decide(&user("alice"), &req("get /metrics")).allowed);
        assert!(r.decide(&user("alice"), &req("get /logs/kubelet")).allowed);
        assert!(!r.decide(&user("alice"), &req("get /logsx")).allowed);
        assert!(
            !r.decide(&user("bob"), &req("get /metrics")).allowed,
            "non-resource URLs only via ClusterRoleBindings"
        );
        assert!(
            r.decide(&user("bob"), &req("get /healthz")).allowed,
            "system:public-info-viewer"
        );
        assert!(
            r.decide(&user("bob"), &req("create selfsubjectaccessreviews"))
                .allowed,
            "system:basic-user"
        );
        let d = r.decide(&user("bob"), &req("get pods -n x"));
        assert_eq!(
            d.reason,
            "no RBAC rule allows user bob (groups system:authenticated) to get pods in namespace x"
        );
    }

    #[test]
    fn namespaces_are_filed_under_their_own_namespace() {
        let r = rbac(vec![
            role(
                "blue",
                "ns",
                json!([{"apiGroups": [""], "resources": ["namespaces"], "verbs": ["get"]}]),
            ),
            binding(Some("blue"), "ns", "Role", "ns", alice()),
        ]);
        assert!(
            r.decide(&user("alice"), &req("get namespaces blue"))
                .allowed
        );
        assert!(!r.decide(&user("alice"), &req("get namespaces red")).allowed);
    }

    #[test]
    fn contrail_mapping_is_consistent_with_kubernetes() {
        let r = rbac(vec![binding(
            Some("blue"),
            "dev",
            "ClusterRole",
            "view",
            alice(),
        )]);
        let got = r.contrail_expectation(&user("alice"), &req("get pods -n blue"));
        assert_eq!(got.len(), 3);
        assert!(
            got.iter().all(|a| a.allowed
                && a.op == Crud::Read
                && a.project.as_deref() == Some("k8s-blue"))
        );
        assert_eq!(got[1].object_type, "virtual-machine-interface");
        let got = r.contrail_expectation(&user("alice"), &req("create networkpolicies -n blue"));
        assert!(got.len() == 4 && got.iter().all(|a| !a.allowed && a.op == Crud::Create));
        let got = r.contrail_expectation(&user("alice"), &req("delete namespaces blue"));
        assert!(got.len() == 1 && got[0].project.is_none() && got[0].object_type == "project");
        assert!(
            r.contrail_expectation(&user("alice"), &req("get configmaps -n blue"))
                .is_empty()
        );
        assert!(
            r.contrail_expectation(&user("alice"), &req("get pods/log -n blue"))
                .is_empty()
        );
        assert_eq!(
            r.contrail_expectation(&user("alice"), &req("* pods -n blue"))
                .len(),
            12
        );
    }

    #[test]
    fn mapping_loads_and_validates() {
        let m = ContrailMapping::from_json(
            json!({"resources": {"pods": ["virtual-machine"]}, "verbs": {"get": "R"}}),
        )
        .unwrap();
        assert_eq!(m.version, "v1");
        let e = ContrailMapping::from_json(json!({"resources": {"pods": []}, "verbs": {}}))
            .unwrap_err();
        assert!(e.to_string().contains("at least one"));
        let e = ContrailMapping::from_json(json!({"resources": {}, "verbs": {"get": "X"}}))
            .unwrap_err();
        assert!(e.to_string().contains("not valid"));
        let round: ContrailMapping =
            serde_json::from_value(serde_json::to_value(ContrailMapping::default()).unwrap())
                .unwrap();
        assert_eq!(round, ContrailMapping::default());
    }

    #[test]
    fn bad_bindings_say_what_to_change() {
        let objs = vec![binding(None, "b", "Role", "r", alice())];
        let e = Cluster::from_objects(&objs, &ClusterSpec::default(), &ContrailSettings::default())
            .unwrap_err()
            .to_string();
        assert!(e.contains("refers to a ClusterRole"), "{e}");
    }
}
