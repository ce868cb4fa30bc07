//! Changing the cluster through the Kubernetes API the way a user would: server-side apply
//! of any manifest (kinds resolved by discovery, so CRDs work once they are served), deletes
//! and label changes.

use std::collections::BTreeMap;

use harness_scenario::model::LabelTarget;
use kube::api::{Api, DeleteParams, DynamicObject, Patch, PatchParams};
use kube::core::GroupVersionKind;
use kube::discovery::{ApiCapabilities, ApiResource, Discovery, Scope};
use serde_json::{Value, json};

/// Field manager of every write the runner makes.
pub const FIELD_MANAGER: &str = "harness";

/// Why a change could not be made.
#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    /// The manifest has no usable `apiVersion`, `kind` or `metadata.name`.
    #[error("{0}")]
    BadManifest(String),
    /// The API server does not serve that kind.
    #[error(
        "the cluster does not serve {kind} ({api_version}): create its CustomResourceDefinition first, or fix apiVersion/kind"
    )]
    UnknownKind {
        /// Kind.
        kind: String,
        /// apiVersion.
        api_version: String,
    },
    /// The API server refused the request.
    #[error("{what}: {source}")]
    Api {
        /// What was attempted, e.g. `apply NetworkPolicy x/deny-all`.
        what: String,
        /// The API error.
        #[source]
        source: kube::Error,
    },
}

/// Applies, deletes and relabels objects through one kube-rs client.
pub struct Applier {
    client: kube::Client,
    discovery: Option<Discovery>,
}

impl std::fmt::Debug for Applier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Applier").finish_non_exhaustive()
    }
}

fn rv_of(meta: &kube::core::ObjectMeta) -> u64 {
    meta.resource_version
        .as_deref()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

impl Applier {
    /// An applier over `client` (discovery runs on first use and again when a kind is missing).
    pub fn new(client: kube::Client) -> Self {
        Applier {
            client,
            discovery: None,
        }
    }

    async fn discover(&mut self, refresh: bool) -> Result<&Discovery, ApplyError> {
        if refresh || self.discovery.is_none() {
            let d = Discovery::new(self.client.clone())
                .run_aggregated()
                .await
                .map_err(|source| ApplyError::Api {
                    what: "API discovery".into(),
                    source,
                })?;
            self.discovery = Some(d);
        }
        self.discovery
            .as_ref()
            .ok_or_else(|| ApplyError::BadManifest("discovery did not run".into()))
    }

    async fn resolve(
        &mut self,
        api_version: &str,
        kind: &str,
    ) -> Result<(ApiResource, ApiCapabilities), ApplyError> {
        let (group, version) = match api_version.split_once('/') {
            Some((g, v)) => (g, v),
            None => ("", api_version),
        };
        let gvk = GroupVersionKind::gvk(group, version, kind);
        for refresh in [false, true] {
            if let Some(found) = self.discover(refresh).await?.resolve_gvk(&gvk) {
                return Ok(found);
            }
        }
        Err(ApplyError::UnknownKind {
            kind: kind.into(),
            api_version: api_version.into(),
        })
    }

    async fn resolve_kind(
        &mut self,
        api_version: Option<&str>,
        kind: &str,
    ) -> Result<(ApiResource, ApiCapabilities), ApplyError> {
        if let Some(v) = api_version {
            return self.resolve(v, kind).await;
        }
        for refresh in [false, true] {
            let d = self.discover(refresh).await?;
            for group in d.groups() {
                for (ar, caps) in group.recommended_resources() {
                    if ar.kind.eq_ignore_ascii_case(kind) {
                        return Ok((ar, caps));
                    }
                }
            }
        }
        Err(ApplyError::UnknownKind {
            kind: kind.into(),
            api_version: "any served version".into(),
        })
    }

    fn api(
        &self,
        ar: &ApiResource,
        caps: &ApiCapabilities,
        ns: Option<&str>,
    ) -> Api<DynamicObject> {
        match caps.scope {
            Scope::Cluster => Api::all_with(self.client.clone(), ar),
            Scope::Namespaced => {
                Api::namespaced_with(self.client.clone(), ns.unwrap_or("default"), ar)
            }
        }
    }

    /// Server-side applies one manifest (field manager `harness`, forced) and returns the
    /// resourceVersion the server gave it.
    ///
    /// # Errors
    ///
    /// [`ApplyError::BadManifest`] without apiVersion/kind/name, [`ApplyError::UnknownKind`]
    /// for a kind the server does not serve, [`ApplyError::Api`] when the server refuses.
    pub async fn apply(&mut self, manifest: &Value) -> Result<u64, ApplyError> {
        let s = |p: &str| manifest.pointer(p).and_then(Value::as_str).unwrap_or("");
        let (api_version, kind, name) = (s("/apiVersion"), s("/kind"), s("/metadata/name"));
        if api_version.is_empty() || kind.is_empty() || name.is_empty() {
            return Err(ApplyError::BadManifest(
                "a manifest needs apiVersion, kind and metadata.name".into(),
            ));
        }
        let ns = manifest
            .pointer("/metadata/namespace")
            .and_then(Value::as_str);
        let (ar, caps) = self.resolve(api_version, kind).await?;
        let api = self.api(&ar, &caps, ns);
        let what = || {
            format!(
                "apply {kind} {}{name}",
                ns.map(|n| format!("{n}/")).unwrap_or_default()
            )
        };
        let applied = api
            .patch(
                name,
                &PatchParams::apply(FIELD_MANAGER).force(),
                &Patch::Apply(manifest),
            )
            .await
            .map_err(|source| ApplyError::Api {
                what: what(),
                source,
            })?;
        Ok(rv_of(&applied.metadata))
    }

    /// Deletes an object; an object that is already gone is not an error. Returns whether it
    /// existed.
    ///
    /// # Errors
    ///
    /// [`ApplyError::UnknownKind`], [`ApplyError::Api`].
    pub async fn delete(
        &mut self,
        api_version: Option<&str>,
        kind: &str,
        namespace: Option<&str>,
        name: &str,
    ) -> Result<bool, ApplyError> {
        let (ar, caps) = self.resolve_kind(api_version, kind).await?;
        let api = self.api(&ar, &caps, namespace);
        match api.delete(name, &DeleteParams::foreground()).await {
            Ok(_) => Ok(true),
            Err(kube::Error::Api(e)) if e.code == 404 => Ok(false),
            Err(source) => Err(ApplyError::Api {
                what: format!(
                    "delete {kind} {}{name}",
                    namespace.map(|n| format!("{n}/")).unwrap_or_default()
                ),
                source,
            }),
        }
    }

    /// Sets and removes labels of a namespace, node or pod (a merge patch, as `kubectl label`).
    ///
    /// # Errors
    ///
    /// [`ApplyError::Api`], e.g. when the object does not exist.
    pub async fn relabel(
        &mut self,
        target: &LabelTarget,
        set: &BTreeMap<String, String>,
        remove: &[String],
    ) -> Result<u64, ApplyError> {
        let mut labels = serde_json::Map::new();
        for (k, v) in set {
            labels.insert(k.clone(), Value::String(v.clone()));
        }
        for k in remove {
            labels.insert(k.clone(), Value::Null);
        }
        let patch = json!({"metadata": {"labels": labels}});
        let (kind, ns, name) = match target {
            LabelTarget::Namespace(n) => ("Namespace", None, n.as_str()),
            LabelTarget::Node(n) => ("Node", None, n.as_str()),
            LabelTarget::Pod { namespace, name } => {
                ("Pod", Some(namespace.as_str()), name.as_str())
            }
        };
        let (ar, caps) = self.resolve("v1", kind).await?;
        let api = self.api(&ar, &caps, ns);
        let done = api
            .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .map_err(|source| ApplyError::Api {
                what: format!("label {target}"),
                source,
            })?;
        Ok(rv_of(&done.metadata))
    }
}
