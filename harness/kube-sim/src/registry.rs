//! The typed registry of served resources: the built-in kinds and those CRDs add.
//!
//! Every object lives in one generic store as JSON; the registry says how each resource is
//! addressed (group, versions, plural), how discovery describes it, and which special
//! behaviour (defaulting, validation, table columns) applies.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde_json::Value;

/// The storage identity of a resource: API group and plural name.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct GroupResource {
    /// API group (`""` for the core group).
    pub group: String,
    /// Plural resource name (`pods`).
    pub resource: String,
}

impl GroupResource {
    /// A group/resource pair.
    pub fn new(group: &str, resource: &str) -> Self {
        GroupResource {
            group: group.to_string(),
            resource: resource.to_string(),
        }
    }
}

/// A printer column of `kubectl get` (Table) output.
#[derive(Debug, Clone)]
pub(crate) struct Column {
    pub name: String,
    pub type_: String,
    /// 0 = default view, 1 = only with `-o wide`.
    pub priority: u8,
    /// Simple JSON path (`.spec.nodeName`) for CRD columns; `None` for built-in computed columns.
    pub json_path: Option<String>,
    pub description: String,
}

/// Which kind-specific rules apply to a resource.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Special {
    None,
    Namespace,
    Pod,
    Service,
    Node,
    Secret,
    NetworkPolicy,
    Crd,
    /// subjectaccessreviews and friends: create-only, answered not stored.
    Review,
    /// `bindings` (legacy pod binding collection): create-only.
    Binding,
    ClusterRole,
    Endpoints,
    EndpointSlice,
}

/// One served resource type.
#[derive(Debug, Clone)]
pub struct ResourceType {
    /// API group (`""` for core).
    pub group: String,
    /// Served versions; the first is the storage and preferred version.
    pub versions: Vec<String>,
    /// Kind (`Pod`).
    pub kind: String,
    /// Plural (`pods`).
    pub plural: String,
    /// Singular (`pod`).
    pub singular: String,
    /// Whether objects live in namespaces.
    pub namespaced: bool,
    /// Short names (`po`).
    pub short_names: Vec<String>,
    /// Categories (`all`).
    pub categories: Vec<String>,
    /// Verbs on the main resource.
    pub verbs: Vec<String>,
    /// Subresources served (`status`, `binding`, `exec`, ...).
    pub subresources: Vec<String>,
    pub(crate) special: Special,
    pub(crate) columns: Vec<Column>,
    /// Set for resources that a CustomResourceDefinition introduced.
    pub from_crd: bool,
}

impl ResourceType {
    /// The group/resource pair that keys this type's objects in the store.
    pub fn group_resource(&self) -> GroupResource {
        GroupResource::new(&self.group, &self.plural)
    }

    /// `v1` or `group/version`.
    pub fn api_version(&self, version: &str) -> String {
        if self.group.is_empty() {
            version.to_string()
        } else {
            format!("{}/{version}", self.group)
        }
    }

    /// The storage version.
    pub fn storage_version(&self) -> &str {
        self.versions.first().map(String::as_str).unwrap_or("v1")
    }

    /// Whether the main resource ignores status (it is written through `/status`).
    pub(crate) fn has_status_subresource(&self) -> bool {
        self.subresources.iter().any(|s| s == "status")
    }

    pub(crate) fn is_stored(&self) -> bool {
        !matches!(self.special, Special::Review | Special::Binding)
    }
}

const CRUD: &[&str] = &[
    "create",
    "delete",
    "deletecollection",
    "get",
    "list",
    "patch",
    "update",
    "watch",
];

#[allow(clippy::too_many_arguments)]
fn builtin(
    group: &str,
    version: &str,
    kind: &str,
    plural: &str,
    namespaced: bool,
    short: &[&str],
    categories: &[&str],
    subresources: &[&str],
    special: Special,
) -> ResourceType {
    let verbs: Vec<String> = match special {
        Special::Review | Special::Binding => vec!["create".into()],
        _ => CRUD.iter().map(|s| s.to_string()).collect(),
    };
    ResourceType {
        group: group.into(),
        versions: vec![version.into()],
        kind: kind.into(),
        plural: plural.into(),
        singular: kind.to_ascii_lowercase(),
        namespaced,
        short_names: short.iter().map(|s| s.to_string()).collect(),
        categories: categories.iter().map(|s| s.to_string()).collect(),
        verbs,
        subresources: subresources.iter().map(|s| s.to_string()).collect(),
        special,
        columns: Vec::new(),
        from_crd: false,
    }
}

/// The built-in resources kube-sim serves.
pub(crate) fn builtin_types() -> Vec<ResourceType> {
    use Special as S;
    let all: &[&str] = &["all"];
    let none: &[&str] = &[];
    let status: &[&str] = &["status"];
    vec![
        builtin(
            "",
            "v1",
            "Namespace",
            "namespaces",
            false,
            &["ns"],
            none,
            &["status", "finalize"],
            S::Namespace,
        ),
        builtin(
            "",
            "v1",
            "Pod",
            "pods",
            true,
            &["po"],
            all,
            &["status", "binding", "exec", "log", "ephemeralcontainers"],
            S::Pod,
        ),
        builtin(
            "",
            "v1",
            "Binding",
            "bindings",
            true,
            none,
            none,
            none,
            S::Binding,
        ),
        builtin(
            "",
            "v1",
            "Service",
            "services",
            true,
            &["svc"],
            all,
            status,
            S::Service,
        ),
        builtin(
            "",
            "v1",
            "Endpoints",
            "endpoints",
            true,
            &["ep"],
            none,
            none,
            S::Endpoints,
        ),
        builtin(
            "",
            "v1",
            "Node",
            "nodes",
            false,
            &["no"],
            none,
            status,
            S::Node,
        ),
        builtin(
            "",
            "v1",
            "ServiceAccount",
            "serviceaccounts",
            true,
            &["sa"],
            none,
            none,
            S::None,
        ),
        builtin(
            "",
            "v1",
            "ConfigMap",
            "configmaps",
            true,
            &["cm"],
            none,
            none,
            S::None,
        ),
        builtin(
            "",
            "v1",
            "Secret",
            "secrets",
            true,
            none,
            none,
            none,
            S::Secret,
        ),
        builtin(
            "",
            "v1",
            "Event",
            "events",
            true,
            &["ev"],
            none,
            none,
            S::None,
        ),
        builtin(
            "",
            "v1",
            "PersistentVolume",
            "persistentvolumes",
            false,
            &["pv"],
            none,
            status,
            S::None,
        ),
        builtin(
            "",
            "v1",
            "PersistentVolumeClaim",
            "persistentvolumeclaims",
            true,
            &["pvc"],
            none,
            status,
            S::None,
        ),
        builtin(
            "",
            "v1",
            "ReplicationController",
            "replicationcontrollers",
            true,
            &["rc"],
            all,
            status,
            S::None,
        ),
        builtin(
            "",
            "v1",
            "LimitRange",
            "limitranges",
            true,
            &["limits"],
            none,
            none,
            S::None,
        ),
        builtin(
            "",
            "v1",
            "ResourceQuota",
            "resourcequotas",
            true,
            &["quota"],
            none,
            status,
            S::None,
        ),
        builtin(
            "",
            "v1",
            "PodTemplate",
            "podtemplates",
            true,
            none,
            none,
            none,
            S::None,
        ),
        builtin(
            "apps",
            "v1",
            "Deployment",
            "deployments",
            true,
            &["deploy"],
            all,
            &["status", "scale"],
            S::None,
        ),
        builtin(
            "apps",
            "v1",
            "ReplicaSet",
            "replicasets",
            true,
            &["rs"],
            all,
            &["status", "scale"],
            S::None,
        ),
        builtin(
            "apps",
            "v1",
            "StatefulSet",
            "statefulsets",
            true,
            &["sts"],
            all,
            &["status", "scale"],
            S::None,
        ),
        builtin(
            "apps",
            "v1",
            "DaemonSet",
            "daemonsets",
            true,
            &["ds"],
            all,
            status,
            S::None,
        ),
        builtin(
            "apps",
            "v1",
            "ControllerRevision",
            "controllerrevisions",
            true,
            none,
            none,
            none,
            S::None,
        ),
        builtin(
            "batch",
            "v1",
            "Job",
            "jobs",
            true,
            none,
            all,
            status,
            S::None,
        ),
        builtin(
            "batch",
            "v1",
            "CronJob",
            "cronjobs",
            true,
            &["cj"],
            all,
            status,
            S::None,
        ),
        builtin(
            "discovery.k8s.io",
            "v1",
            "EndpointSlice",
            "endpointslices",
            true,
            none,
            none,
            none,
            S::EndpointSlice,
        ),
        builtin(
            "networking.k8s.io",
            "v1",
            "NetworkPolicy",
            "networkpolicies",
            true,
            &["netpol"],
            none,
            none,
            S::NetworkPolicy,
        ),
        builtin(
            "networking.k8s.io",
            "v1",
            "Ingress",
            "ingresses",
            true,
            &["ing"],
            none,
            status,
            S::None,
        ),
        builtin(
            "networking.k8s.io",
            "v1",
            "IngressClass",
            "ingressclasses",
            false,
            none,
            none,
            none,
            S::None,
        ),
        builtin(
            "rbac.authorization.k8s.io",
            "v1",
            "Role",
            "roles",
            true,
            none,
            none,
            none,
            S::None,
        ),
        builtin(
            "rbac.authorization.k8s.io",
            "v1",
            "RoleBinding",
            "rolebindings",
            true,
            none,
            none,
            none,
            S::None,
        ),
        builtin(
            "rbac.authorization.k8s.io",
            "v1",
            "ClusterRole",
            "clusterroles",
            false,
            none,
            none,
            none,
            S::ClusterRole,
        ),
        builtin(
            "rbac.authorization.k8s.io",
            "v1",
            "ClusterRoleBinding",
            "clusterrolebindings",
            false,
            none,
            none,
            none,
            S::None,
        ),
        builtin(
            "authorization.k8s.io",
            "v1",
            "SubjectAccessReview",
            "subjectaccessreviews",
            false,
            none,
            none,
            none,
            S::Review,
        ),
        builtin(
            "authorization.k8s.io",
            "v1",
            "SelfSubjectAccessReview",
            "selfsubjectaccessreviews",
            false,
            none,
            none,
            none,
            S::Review,
        ),
        builtin(
            "authorization.k8s.io",
            "v1",
            "LocalSubjectAccessReview",
            "localsubjectaccessreviews",
            true,
            none,
            none,
            none,
            S::Review,
        ),
        builtin(
            "authorization.k8s.io",
            "v1",
            "SelfSubjectRulesReview",
            "selfsubjectrulesreviews",
            false,
            none,
            none,
            none,
            S::Review,
        ),
        builtin(
            "authentication.k8s.io",
            "v1",
            "SelfSubjectReview",
            "selfsubjectreviews",
            false,
            none,
            none,
            none,
            S::Review,
        ),
        builtin(
            "apiextensions.k8s.io",
            "v1",
            "CustomResourceDefinition",
            "customresourcedefinitions",
            false,
            &["crd", "crds"],
            &["api-extensions"],
            status,
            S::Crd,
        ),
        builtin(
            "coordination.k8s.io",
            "v1",
            "Lease",
            "leases",
            true,
            none,
            none,
            none,
            S::None,
        ),
        builtin(
            "policy",
            "v1",
            "PodDisruptionBudget",
            "poddisruptionbudgets",
            true,
            &["pdb"],
            none,
            status,
            S::None,
        ),
        builtin(
            "scheduling.k8s.io",
            "v1",
            "PriorityClass",
            "priorityclasses",
            false,
            &["pc"],
            none,
            none,
            S::None,
        ),
        builtin(
            "storage.k8s.io",
            "v1",
            "StorageClass",
            "storageclasses",
            false,
            &["sc"],
            none,
            none,
            S::None,
        ),
        builtin(
            "events.k8s.io",
            "v1",
            "Event",
            "events",
            true,
            &["ev"],
            none,
            none,
            S::None,
        ),
    ]
}

/// All served resource types, built-in and CRD-defined.
#[derive(Debug, Clone)]
pub(crate) struct Registry {
    types: Vec<Arc<ResourceType>>,
}

/// The preferred order of groups in discovery (core-ish first, like upstream).
const GROUP_ORDER: &[&str] = &[
    "",
    "apps",
    "events.k8s.io",
    "authentication.k8s.io",
    "authorization.k8s.io",
    "batch",
    "networking.k8s.io",
    "rbac.authorization.k8s.io",
    "storage.k8s.io",
    "apiextensions.k8s.io",
    "scheduling.k8s.io",
    "coordination.k8s.io",
    "discovery.k8s.io",
    "policy",
];

impl Registry {
    pub fn builtin() -> Self {
        Registry {
            types: builtin_types().into_iter().map(Arc::new).collect(),
        }
    }

    /// The type served at `group/version/plural`.
    pub fn lookup(&self, group: &str, version: &str, plural: &str) -> Option<Arc<ResourceType>> {
        self.types
            .iter()
            .find(|t| {
                t.group == group && t.plural == plural && t.versions.iter().any(|v| v == version)
            })
            .cloned()
    }

    /// The type for a group/resource regardless of version.
    pub fn by_group_resource(&self, gr: &GroupResource) -> Option<Arc<ResourceType>> {
        self.types
            .iter()
            .find(|t| t.group == gr.group && t.plural == gr.resource)
            .cloned()
    }

    pub fn types(&self) -> &[Arc<ResourceType>] {
        &self.types
    }

    /// Group name → versions (preferred first), in discovery order.
    pub fn groups(&self) -> Vec<(String, Vec<String>)> {
        let mut map: BTreeMap<(usize, String), Vec<String>> = BTreeMap::new();
        for t in &self.types {
            let order = GROUP_ORDER
                .iter()
                .position(|g| *g == t.group)
                .unwrap_or(GROUP_ORDER.len());
            let versions = map.entry((order, t.group.clone())).or_default();
            for v in &t.versions {
                if !versions.contains(v) {
                    versions.push(v.clone());
                }
            }
        }
        map.into_iter()
            .map(|((_, g), mut vs)| {
                sort_versions(&mut vs);
                (g, vs)
            })
            .collect()
    }

    /// Types served at `group/version`.
    pub fn in_group_version(&self, group: &str, version: &str) -> Vec<Arc<ResourceType>> {
        self.types
            .iter()
            .filter(|t| t.group == group && t.versions.iter().any(|v| v == version))
            .cloned()
            .collect()
    }

    /// Adds or replaces the type a CRD defines.
    pub fn upsert(&mut self, t: ResourceType) {
        self.types
            .retain(|x| !(x.group == t.group && x.plural == t.plural));
        self.types.push(Arc::new(t));
    }

    pub fn remove(&mut self, gr: &GroupResource) {
        self.types
            .retain(|x| !(x.group == gr.group && x.plural == gr.resource));
    }
}

/// Kubernetes version priority: GA > beta > alpha, higher numbers first.
pub(crate) fn sort_versions(vs: &mut [String]) {
    fn key(v: &str) -> (u8, i64, i64) {
        let rest = v.strip_prefix('v').unwrap_or(v);
        let major_end = rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len());
        let Ok(major) = rest[..major_end].parse::<i64>() else {
            return (0, 0, 0);
        };
        let tail = &rest[major_end..];
        if tail.is_empty() {
            (3, major, 0)
        } else if let Some(n) = tail.strip_prefix("beta") {
            (2, major, n.parse().unwrap_or(0))
        } else if let Some(n) = tail.strip_prefix("alpha") {
            (1, major, n.parse().unwrap_or(0))
        } else {
            (0, 0, 0)
        }
    }
    vs.sort_by(|a, b| key(b).cmp(&key(a)).then(a.cmp(b)));
}

/// Builds the resource type a CRD object describes, or explains what is wrong with it.
pub(crate) fn type_from_crd(crd: &Value) -> Result<ResourceType, Vec<crate::status::Cause>> {
    use crate::status::Cause;
    let spec = crd.get("spec").cloned().unwrap_or(Value::Null);
    let s = |p: &str| {
        crate::util::dotted(&spec, p)
            .and_then(Value::as_str)
            .unwrap_or("")
    };
    let mut causes = Vec::new();
    let group = s("group");
    let plural = s("names.plural");
    let kind = s("names.kind");
    let scope = s("scope");
    if group.is_empty() {
        causes.push(Cause::required("spec.group", ""));
    } else if !group.contains('.') {
        causes.push(Cause::invalid(
            "spec.group",
            group,
            "should be a domain with at least one dot",
        ));
    }
    if plural.is_empty() {
        causes.push(Cause::required("spec.names.plural", ""));
    } else if crate::util::check_dns1035_label(plural).is_err() {
        causes.push(Cause::invalid(
            "spec.names.plural",
            plural,
            "a DNS-1035 label must consist of lower case alphanumeric characters or '-'",
        ));
    }
    if kind.is_empty() {
        causes.push(Cause::required("spec.names.kind", ""));
    }
    if scope != "Namespaced" && scope != "Cluster" {
        causes.push(Cause::unsupported(
            "spec.scope",
            scope,
            &["Cluster", "Namespaced"],
        ));
    }
    let name = crate::util::meta_str(crd, "name").unwrap_or("");
    if !plural.is_empty() && !group.is_empty() && name != format!("{plural}.{group}") {
        causes.push(Cause::invalid(
            "metadata.name",
            name,
            &format!("must be spec.names.plural+\".\"+spec.group ({plural}.{group})"),
        ));
    }
    let versions = spec
        .get("versions")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    if versions.is_empty() {
        causes.push(Cause::required(
            "spec.versions",
            "must have exactly one version marked as storage version",
        ));
    }
    let storage_count = versions
        .iter()
        .filter(|v| v.get("storage").and_then(Value::as_bool) == Some(true))
        .count();
    if !versions.is_empty() && storage_count != 1 {
        causes.push(Cause::invalid(
            "spec.versions",
            &format!("{storage_count}"),
            "must have exactly one version marked as storage version",
        ));
    }
    if !causes.is_empty() {
        return Err(causes);
    }
    let mut served: Vec<String> = versions
        .iter()
        .filter(|v| v.get("served").and_then(Value::as_bool) != Some(false))
        .filter_map(|v| v.get("name").and_then(Value::as_str).map(str::to_string))
        .collect();
    sort_versions(&mut served);
    let strs = |p: &str| -> Vec<String> {
        crate::util::dotted(&spec, p)
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(|x| x.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default()
    };
    let storage = versions
        .iter()
        .find(|v| v.get("storage").and_then(Value::as_bool) == Some(true));
    let has_status = storage
        .and_then(|v| crate::util::dotted(v, "subresources.status"))
        .is_some();
    let has_scale = storage
        .and_then(|v| crate::util::dotted(v, "subresources.scale"))
        .is_some();
    let mut subresources = Vec::new();
    if has_status {
        subresources.push("status".to_string());
    }
    if has_scale {
        subresources.push("scale".to_string());
    }
    let columns = storage
        .and_then(|v| v.get("additionalPrinterColumns"))
        .and_then(Value::as_array)
        .map(|cols| {
            cols.iter()
                .filter_map(|c| {
                    Some(Column {
                        name: c.get("name")?.as_str()?.to_string(),
                        type_: c
                            .get("type")
                            .and_then(Value::as_str)
                            .unwrap_or("string")
                            .to_string(),
                        priority: c
                            .get("priority")
                            .and_then(Value::as_u64)
                            .unwrap_or(0)
                            .min(1) as u8,
                        json_path: c
                            .get("jsonPath")
                            .and_then(Value::as_str)
                            .map(str::to_string),
                        description: c
                            .get("description")
                            .and_then(Value::as_str)
                            .unwrap_or("")
                            .to_string(),
                    })
                })
                .collect()
        })
        .unwrap_or_default();
    let singular = match s("names.singular") {
        "" => kind.to_ascii_lowercase(),
        x => x.to_string(),
    };
    Ok(ResourceType {
        group: group.into(),
        versions: if served.is_empty() {
            vec!["v1".into()]
        } else {
            served
        },
        kind: kind.into(),
        plural: plural.into(),
        singular,
        namespaced: scope == "Namespaced",
        short_names: strs("names.shortNames"),
        categories: strs("names.categories"),
        verbs: CRUD.iter().map(|s| s.to_string()).collect(),
        subresources,
        special: Special::None,
        columns,
        from_crd: true,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_sort_like_kubernetes() {
        let mut v = vec![
            "v1alpha1".to_string(),
            "v2".into(),
            "v1beta1".into(),
            "v1".into(),
            "v1beta2".into(),
        ];
        sort_versions(&mut v);
        assert_eq!(v, ["v2", "v1", "v1beta2", "v1beta1", "v1alpha1"]);
    }

    #[test]
    fn crd_becomes_a_type() {
        let crd = serde_json::json!({
            "metadata": {"name": "network-attachment-definitions.k8s.cni.cncf.io"},
            "spec": {"group": "k8s.cni.cncf.io", "scope": "Namespaced",
                "names": {"plural": "network-attachment-definitions", "kind": "NetworkAttachmentDefinition", "shortNames": ["net-attach-def"]},
                "versions": [{"name": "v1", "served": true, "storage": true}]}
        });
        let t = type_from_crd(&crd).expect("valid CRD");
        assert_eq!(t.singular, "networkattachmentdefinition");
        assert!(t.namespaced);
        let bad = serde_json::json!({"metadata": {"name": "x"}, "spec": {}});
        assert!(type_from_crd(&bad).unwrap_err().len() >= 4);
    }
}
