//! Reading the cluster back: the Kubernetes objects the oracle models, as the API server has
//! them (real addresses), in an order the oracle can rely on.

use std::collections::HashMap;

use harness_oracle::Cluster;
use harness_scenario::{ClusterSpec, ContrailSettings};
use k8s_openapi::api::core::v1::{Namespace, Node, Pod, Service};
use k8s_openapi::api::networking::v1::{Ingress, NetworkPolicy};
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, Role, RoleBinding};
use kube::api::{Api, ListParams};
use serde_json::Value;

/// Lists every object of one kind as JSON (with apiVersion and kind).
async fn list<K>(client: &kube::Client) -> Result<Vec<Value>, kube::Error>
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + serde::Serialize + std::fmt::Debug,
    K::DynamicType: Default,
{
    let api: Api<K> = Api::all(client.clone());
    let items = api.list(&ListParams::default()).await?.items;
    Ok(items
        .into_iter()
        .filter(|o| o.meta().deletion_timestamp.is_none())
        .filter_map(|o| {
            let mut v = serde_json::to_value(o).ok()?;
            if let Some(m) = v.get_mut("metadata").and_then(Value::as_object_mut) {
                m.remove("managedFields");
            }
            Some(v)
        })
        .collect())
}

/// The objects the oracle models, read from the cluster. NetworkPolicies come in creation
/// order (`creation_order` ranks `namespace/name` as the runner created them; others follow
/// by resourceVersion), because the r5.0 profile depends on it.
///
/// # Errors
///
/// The first failed list call.
pub async fn objects(
    client: &kube::Client,
    creation_order: &HashMap<String, usize>,
) -> Result<Vec<Value>, kube::Error> {
    let (ns, nodes, pods, svcs, ings, nps) = tokio::join!(
        list::<Namespace>(client),
        list::<Node>(client),
        list::<Pod>(client),
        list::<Service>(client),
        list::<Ingress>(client),
        list::<NetworkPolicy>(client),
    );
    let (roles, croles, rbs, crbs) = tokio::join!(
        list::<Role>(client),
        list::<ClusterRole>(client),
        list::<RoleBinding>(client),
        list::<ClusterRoleBinding>(client),
    );
    let mut nps = nps?;
    let key = |v: &Value| {
        let s = |p: &str| {
            v.pointer(p)
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_owned()
        };
        let id = format!("{}/{}", s("/metadata/namespace"), s("/metadata/name"));
        let rv: u64 = s("/metadata/resourceVersion").parse().unwrap_or(0);
        (creation_order.get(&id).copied().unwrap_or(usize::MAX), rv)
    };
    nps.sort_by_key(key);
    let mut out = Vec::new();
    for part in [
        ns?, nodes?, pods?, svcs?, ings?, nps, roles?, croles?, rbs?, crbs?,
    ] {
        out.extend(part);
    }
    Ok(out)
}

/// The oracle's model of what the cluster holds now.
///
/// # Errors
///
/// A message naming the object the oracle cannot read, or the failed API call.
pub async fn cluster(
    client: &kube::Client,
    creation_order: &HashMap<String, usize>,
    spec: &ClusterSpec,
    settings: &ContrailSettings,
) -> Result<Cluster, String> {
    let objs = objects(client, creation_order)
        .await
        .map_err(|e| format!("cannot read the cluster's objects: {e}"))?;
    Cluster::from_objects(&objs, spec, settings)
        .map_err(|e| format!("the oracle cannot model the observed objects: {e}"))
}
