//! The VNC config API the kube-manager emulation writes to: the in-process [`ConfigDb`] or
//! any VNC API server over HTTP ([`VncClient`], so a real Contrail works too).

use std::future::Future;

use harness_contrail_vnc::{ListParams, RefUpdate, VncClient, VncError, VncObject};

use crate::db::{ConfigDb, DbError};

/// A refused or failed VNC call.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct ApiError {
    /// HTTP status of a server-side refusal; `None` when the server could not be reached.
    pub status: Option<u16>,
    /// What the server (or the transport) said.
    pub message: String,
}

impl ApiError {
    /// 404.
    pub fn is_not_found(&self) -> bool {
        self.status == Some(404)
    }
    /// 409.
    pub fn is_conflict(&self) -> bool {
        self.status == Some(409)
    }
    /// The server was not reachable, or answered 5xx: worth retrying.
    pub fn is_transient(&self) -> bool {
        self.status.is_none_or(|s| s >= 500)
    }
}

impl From<DbError> for ApiError {
    fn from(e: DbError) -> Self {
        ApiError {
            status: Some(e.status()),
            message: e.to_string(),
        }
    }
}

impl From<VncError> for ApiError {
    fn from(e: VncError) -> Self {
        ApiError {
            status: e.status(),
            message: e.to_string(),
        }
    }
}

/// The VNC calls kube-manager makes.
///
/// Implemented by [`ConfigDb`] (in process) and [`VncClient`] (HTTP).
pub trait VncApi: Clone + Send + Sync + 'static {
    /// Creates `obj` (properties and references named by fq_name); returns the stored object,
    /// with at least its uuid and, for instance and floating IPs, the allocated address.
    fn create(&self, obj: &VncObject) -> impl Future<Output = Result<VncObject, ApiError>> + Send;
    /// Partial update of `obj.uuid`: the fields and reference lists present replace the stored
    /// ones; a null field is removed.
    fn update(&self, obj: &VncObject) -> impl Future<Output = Result<(), ApiError>> + Send;
    /// Deletes an object.
    fn delete(
        &self,
        type_name: &str,
        uuid: &str,
    ) -> impl Future<Output = Result<(), ApiError>> + Send;
    /// Reads an object by uuid.
    fn read(
        &self,
        type_name: &str,
        uuid: &str,
    ) -> impl Future<Output = Result<VncObject, ApiError>> + Send;
    /// Reads an object by fq_name (`None` when there is none).
    fn read_by_fq_name(
        &self,
        type_name: &str,
        fq_name: &[String],
    ) -> impl Future<Output = Result<Option<VncObject>, ApiError>> + Send;
    /// Every object of a type, in detail.
    fn list(
        &self,
        type_name: &str,
    ) -> impl Future<Output = Result<Vec<VncObject>, ApiError>> + Send;
    /// `ref-update`.
    fn ref_update(&self, req: &RefUpdate) -> impl Future<Output = Result<(), ApiError>> + Send;

    /// Injects the `service-chain-bypassed` fault (network-policy rules stored without
    /// `apply_service`); returns whether this API supports it (only the in-process
    /// database does).
    fn bypass_service_chains(&self, _on: bool) -> bool {
        false
    }
}

impl VncApi for ConfigDb {
    async fn create(&self, obj: &VncObject) -> Result<VncObject, ApiError> {
        Ok(ConfigDb::create(self, obj)?)
    }

    async fn update(&self, obj: &VncObject) -> Result<(), ApiError> {
        ConfigDb::update(self, obj)?;
        Ok(())
    }

    async fn delete(&self, type_name: &str, uuid: &str) -> Result<(), ApiError> {
        Ok(ConfigDb::delete(self, type_name, uuid)?)
    }

    async fn read(&self, type_name: &str, uuid: &str) -> Result<VncObject, ApiError> {
        Ok(ConfigDb::read(self, type_name, uuid)?)
    }

    async fn read_by_fq_name(
        &self,
        type_name: &str,
        fq_name: &[String],
    ) -> Result<Option<VncObject>, ApiError> {
        Ok(self.get_by_fq_name(type_name, fq_name))
    }

    async fn list(&self, type_name: &str) -> Result<Vec<VncObject>, ApiError> {
        Ok(ConfigDb::list(self, type_name, &ListParams::default())?)
    }

    async fn ref_update(&self, req: &RefUpdate) -> Result<(), ApiError> {
        Ok(ConfigDb::ref_update(self, req)?)
    }

    fn bypass_service_chains(&self, on: bool) -> bool {
        self.set_service_chain_bypass(on);
        true
    }
}

impl VncApi for VncClient {
    async fn create(&self, obj: &VncObject) -> Result<VncObject, ApiError> {
        let created = VncClient::create(self, obj).await?;
        if matches!(obj.type_name.as_str(), "instance-ip" | "floating-ip") {
            return Ok(VncClient::read(self, &obj.type_name, &created.uuid).await?);
        }
        let mut out = obj.clone();
        out.uuid = created.uuid;
        out.fq_name = created.fq_name;
        Ok(out)
    }

    async fn update(&self, obj: &VncObject) -> Result<(), ApiError> {
        Ok(VncClient::update(self, obj).await?)
    }

    async fn delete(&self, type_name: &str, uuid: &str) -> Result<(), ApiError> {
        Ok(VncClient::delete(self, type_name, uuid).await?)
    }

    async fn read(&self, type_name: &str, uuid: &str) -> Result<VncObject, ApiError> {
        Ok(VncClient::read(self, type_name, uuid).await?)
    }

    async fn read_by_fq_name(
        &self,
        type_name: &str,
        fq_name: &[String],
    ) -> Result<Option<VncObject>, ApiError> {
        match VncClient::read_by_fq_name(self, type_name, fq_name).await {
            Ok(o) => Ok(Some(o)),
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    async fn list(&self, type_name: &str) -> Result<Vec<VncObject>, ApiError> {
        let params = ListParams {
            detail: true,
            ..ListParams::default()
        };
        Ok(VncClient::list(self, type_name, &params).await?)
    }

    async fn ref_update(&self, req: &RefUpdate) -> Result<(), ApiError> {
        Ok(VncClient::ref_update(self, req).await?)
    }
}
