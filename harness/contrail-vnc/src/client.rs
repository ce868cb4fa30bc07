//! A VNC REST client speaking the same wire format as the real `vnc_api` library: CRUD, list
//! with `detail`/`fields`/`parent_id`/`back_ref_id`/`obj_uuids`/`filters`, fqname↔id, ref-update,
//! ref-relax-for-delete and set-tag.
//!
//! Transport is plain HTTP/1.1 (hyper). HTTPS and obtaining a keystone token are not
//! implemented yet: `Auth::KeystoneToken` sends a token the caller already has as
//! `X-Auth-Token`, which is what the harness's loopback servers need.

use std::time::Duration;

use bytes::Bytes;
use http::{HeaderName, HeaderValue, Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::{Client, connect::HttpConnector};
use hyper_util::rt::TokioExecutor;
use serde_json::{Map, Value, json};

use crate::object::{ModelError, Ref, VncObject};
use crate::types::Resource;

/// How the client authenticates.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Auth {
    /// No credentials (`aaa_mode` no-auth servers).
    None,
    /// A keystone token obtained elsewhere, sent as `X-Auth-Token`.
    KeystoneToken(String),
}

/// A failed VNC call. Each variant says which call failed (`op`) and the server's message.
#[derive(Debug, thiserror::Error)]
pub enum VncError {
    /// 404: the object, type or name does not exist.
    #[error("{op}: not found (404): {message}")]
    NotFound {
        /// The call, e.g. `GET /virtual-network/<uuid>`.
        op: String,
        /// Server message.
        message: String,
    },
    /// 409: name or uuid already taken, or the object is still referred to.
    #[error("{op}: conflict (409): {message}")]
    Conflict {
        /// The call.
        op: String,
        /// Server message.
        message: String,
    },
    /// 400: the request does not fit the schema or the server's rules.
    #[error("{op}: bad request (400): {message}")]
    BadRequest {
        /// The call.
        op: String,
        /// Server message.
        message: String,
    },
    /// 403: RBAC or permissions refused the call.
    #[error("{op}: forbidden (403): {message}")]
    Forbidden {
        /// The call.
        op: String,
        /// Server message.
        message: String,
    },
    /// 401: missing or unknown token.
    #[error("{op}: unauthorized (401): {message}; check the token passed to VncClient::new")]
    Unauthorized {
        /// The call.
        op: String,
        /// Server message.
        message: String,
    },
    /// Any other HTTP status.
    #[error("{op}: HTTP {status}: {message}")]
    Http {
        /// The call.
        op: String,
        /// Status code.
        status: u16,
        /// Server message.
        message: String,
    },
    /// The server could not be reached or the exchange broke off.
    #[error("{op}: transport error talking to the VNC API at {url}: {message}")]
    Transport {
        /// The call.
        op: String,
        /// Base URL.
        url: String,
        /// What went wrong.
        message: String,
    },
    /// A 200 answer that is not the JSON the API promises.
    #[error("{op}: unexpected response: {message}")]
    InvalidResponse {
        /// The call.
        op: String,
        /// What is wrong with it.
        message: String,
    },
    /// The base URL or an argument cannot be used.
    #[error("invalid client configuration: {0}")]
    Config(String),
    /// An object could not be built from a response.
    #[error("{op}: {source}")]
    Model {
        /// The call.
        op: String,
        /// The model error.
        #[source]
        source: ModelError,
    },
}

impl VncError {
    /// The HTTP status of a server-side error (`None` for transport/config errors).
    pub fn status(&self) -> Option<u16> {
        match self {
            VncError::NotFound { .. } => Some(404),
            VncError::Conflict { .. } => Some(409),
            VncError::BadRequest { .. } => Some(400),
            VncError::Forbidden { .. } => Some(403),
            VncError::Unauthorized { .. } => Some(401),
            VncError::Http { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// Whether this is a 404.
    pub fn is_not_found(&self) -> bool {
        matches!(self, VncError::NotFound { .. })
    }
}

/// What `POST /<type>s` answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Created {
    /// New uuid.
    pub uuid: String,
    /// fq_name as stored (the server may rewrite it, e.g. tags).
    pub fq_name: Vec<String>,
    /// `href` of the new object.
    pub href: String,
}

/// Query options of a read.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReadParams {
    /// Only these fields (plus identity, `id_perms`, `perms2`).
    pub fields: Vec<String>,
    /// Leave out back-references.
    pub exclude_back_refs: bool,
    /// Leave out children.
    pub exclude_children: bool,
}

/// Query options of a list (`GET /<type>s`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ListParams {
    /// Full objects instead of `{href, fq_name, uuid}` stubs.
    pub detail: bool,
    /// Extra fields to return (with `detail`: back-ref/children fields to add).
    pub fields: Vec<String>,
    /// Only children of these parents.
    pub parent_id: Vec<String>,
    /// Only children of the parent with this fq_name.
    pub parent_fq_name: Option<Vec<String>>,
    /// Only objects that refer to one of these uuids.
    pub back_ref_id: Vec<String>,
    /// Only these objects.
    pub obj_uuids: Vec<String>,
    /// Field equality filters: `(field, JSON value)`.
    pub filters: Vec<(String, Value)>,
}

/// A `/ref-update` request.
#[derive(Debug, Clone, PartialEq)]
pub struct RefUpdate {
    /// Type of the object holding the reference.
    pub type_name: String,
    /// Its uuid.
    pub uuid: String,
    /// Type referred to (e.g. `security-group`).
    pub ref_type: String,
    /// uuid referred to (or give `ref_fq_name`).
    pub ref_uuid: Option<String>,
    /// fq_name referred to.
    pub ref_fq_name: Option<Vec<String>>,
    /// Add or delete.
    pub operation: RefOperation,
    /// Attribute for ADD.
    pub attr: Option<Value>,
}

/// `/ref-update` operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RefOperation {
    /// `ADD` (or replace the attribute of an existing link).
    Add,
    /// `DELETE`.
    Delete,
}

/// What `POST /set-tag` does for one tag type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TagChange {
    /// Set the single value of the type (replacing another value).
    Set {
        /// Value.
        value: String,
        /// Global tag (`[type=value]`) rather than project-scoped.
        is_global: bool,
    },
    /// Add/remove values of a multi-valued type (`label`).
    Values {
        /// Values to add.
        add: Vec<String>,
        /// Values to remove.
        delete: Vec<String>,
        /// Global tags.
        is_global: bool,
    },
    /// Remove every tag of the type.
    Unset,
}

/// A client for one VNC API server.
///
/// # Usage
/// ```no_run
/// # async fn demo() -> Result<(), harness_contrail_vnc::VncError> {
/// use harness_contrail_vnc::{Auth, VncClient, VncObject};
/// let vnc = VncClient::new("http://127.0.0.1:8082", Auth::None)?;
/// let project = VncObject::new("project", vec!["default-domain".into(), "k8s-x".into()]);
/// let created = vnc.create(&project).await?;
/// let back = vnc.read("project", &created.uuid).await?;
/// assert_eq!(back.fq_name, project.fq_name);
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct VncClient {
    base: String,
    auth: Auth,
    headers: Vec<(HeaderName, HeaderValue)>,
    timeout: Duration,
    http: Client<HttpConnector, Full<Bytes>>,
}

impl std::fmt::Debug for VncClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VncClient")
            .field("base", &self.base)
            .field("auth", &matches!(self.auth, Auth::KeystoneToken(_)))
            .finish_non_exhaustive()
    }
}

const RESERVED: &[u8] = b"-_.~";

fn pct(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || RESERVED.contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

impl VncClient {
    /// A client for the API at `base_url` (e.g. `http://127.0.0.1:8082`).
    ///
    /// # Errors
    /// `Config` when the URL is not `http://host[:port][/prefix]` (HTTPS is not supported yet).
    pub fn new(base_url: &str, auth: Auth) -> Result<Self, VncError> {
        let base = base_url.trim_end_matches('/').to_owned();
        if base.starts_with("https://") {
            return Err(VncError::Config(format!(
                "{base_url}: HTTPS is not supported by this client yet; use an http:// endpoint"
            )));
        }
        if !base.starts_with("http://") || base.len() <= "http://".len() {
            return Err(VncError::Config(format!(
                "{base_url}: expected an http://host[:port] URL"
            )));
        }
        if let Auth::KeystoneToken(t) = &auth
            && HeaderValue::from_str(t).is_err()
        {
            return Err(VncError::Config(
                "the keystone token contains characters not allowed in a header".into(),
            ));
        }
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        let http = Client::builder(TokioExecutor::new()).build(connector);
        Ok(VncClient {
            base,
            auth,
            headers: Vec::new(),
            timeout: Duration::from_secs(30),
            http,
        })
    }

    /// Adds a header sent with every request (e.g. `X-Role`, `X-Project-Id` for a server that
    /// trusts identity headers).
    ///
    /// # Errors
    /// `Config` when the name or value is not a valid header.
    pub fn with_header(mut self, name: &str, value: &str) -> Result<Self, VncError> {
        let n = HeaderName::from_bytes(name.as_bytes())
            .map_err(|e| VncError::Config(format!("header name {name}: {e}")))?;
        let v = HeaderValue::from_str(value)
            .map_err(|e| VncError::Config(format!("header {name} value: {e}")))?;
        self.headers.push((n, v));
        Ok(self)
    }

    /// Sets the per-request timeout (default 30 s).
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The base URL.
    pub fn base_url(&self) -> &str {
        &self.base
    }

    async fn call(
        &self,
        method: Method,
        path_and_query: &str,
        body: Option<&Value>,
    ) -> Result<(StatusCode, Bytes), VncError> {
        let op = format!(
            "{method} {}",
            path_and_query.split('?').next().unwrap_or("")
        );
        let url = format!("{}{}", self.base, path_and_query);
        let bytes = match body {
            Some(b) => Bytes::from(b.to_string()),
            None => Bytes::new(),
        };
        let mut builder = Request::builder()
            .method(method)
            .uri(&url)
            .header("content-type", "application/json; charset=\"UTF-8\"")
            .header("x-contrail-useragent", "harness-contrail-vnc");
        if let Auth::KeystoneToken(t) = &self.auth {
            builder = builder.header("x-auth-token", t.as_str());
        }
        for (n, v) in &self.headers {
            builder = builder.header(n, v);
        }
        let req = builder
            .body(Full::new(bytes))
            .map_err(|e| VncError::Config(format!("{op}: cannot build request for {url}: {e}")))?;
        let transport = |message: String| VncError::Transport {
            op: op.clone(),
            url: self.base.clone(),
            message,
        };
        let resp = tokio::time::timeout(self.timeout, self.http.request(req))
            .await
            .map_err(|_| transport(format!("no answer within {:?}", self.timeout)))?
            .map_err(|e| transport(e.to_string()))?;
        let status = resp.status();
        let body = tokio::time::timeout(self.timeout, resp.into_body().collect())
            .await
            .map_err(|_| transport(format!("body not received within {:?}", self.timeout)))?
            .map_err(|e| transport(e.to_string()))?
            .to_bytes();
        if status.is_success() {
            return Ok((status, body));
        }
        let message = String::from_utf8_lossy(&body).trim().to_owned();
        Err(match status.as_u16() {
            400 => VncError::BadRequest { op, message },
            401 => VncError::Unauthorized { op, message },
            403 => VncError::Forbidden { op, message },
            404 => VncError::NotFound { op, message },
            409 => VncError::Conflict { op, message },
            code => VncError::Http {
                op,
                status: code,
                message,
            },
        })
    }

    async fn call_json(
        &self,
        method: Method,
        path_and_query: &str,
        body: Option<&Value>,
    ) -> Result<Value, VncError> {
        let op = format!(
            "{method} {}",
            path_and_query.split('?').next().unwrap_or("")
        );
        let (_, bytes) = self.call(method, path_and_query, body).await?;
        if bytes.is_empty() {
            return Ok(Value::Null);
        }
        serde_json::from_slice(&bytes).map_err(|e| VncError::InvalidResponse {
            op,
            message: format!("body is not JSON: {e}"),
        })
    }

    /// `GET /`: the homepage with its links.
    ///
    /// # Errors
    /// Transport or HTTP errors.
    pub async fn homepage(&self) -> Result<Value, VncError> {
        self.call_json(Method::GET, "/", None).await
    }

    /// Creates `obj` (`POST /<type>s`).
    ///
    /// # Errors
    /// `Conflict` when the fq_name or uuid exists, `BadRequest` for schema violations or a
    /// missing parent, `NotFound` for a missing reference target.
    pub async fn create(&self, obj: &VncObject) -> Result<Created, VncError> {
        let path = format!("/{}s", obj.type_name);
        let op = format!("POST {path}");
        let body = json!({ obj.type_name.as_str(): obj.to_create_body() });
        let resp = self.call_json(Method::POST, &path, Some(&body)).await?;
        let inner = resp
            .get(obj.type_name.as_str())
            .ok_or_else(|| VncError::InvalidResponse {
                op: op.clone(),
                message: format!("no '{}' key in {resp}", obj.type_name),
            })?;
        let uuid = inner
            .get("uuid")
            .and_then(Value::as_str)
            .ok_or_else(|| VncError::InvalidResponse {
                op: op.clone(),
                message: "no uuid in create response".into(),
            })?
            .to_owned();
        let fq_name = inner
            .get("fq_name")
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(|v| v.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_else(|| obj.fq_name.clone());
        let href = inner
            .get("href")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned();
        Ok(Created {
            uuid,
            fq_name,
            href,
        })
    }

    /// Creates a typed resource and returns its uuid.
    ///
    /// # Errors
    /// As [`VncClient::create`].
    pub async fn create_typed<R: Resource>(&self, r: &R) -> Result<Created, VncError> {
        let obj = r.to_object().map_err(|source| VncError::Model {
            op: format!("POST /{}s", R::TYPE),
            source,
        })?;
        self.create(&obj).await
    }

    /// Reads an object with its refs, back-refs and children.
    ///
    /// # Errors
    /// `NotFound` when no object of that type has that uuid.
    pub async fn read(&self, type_name: &str, uuid: &str) -> Result<VncObject, VncError> {
        self.read_with(type_name, uuid, &ReadParams::default())
            .await
    }

    /// Reads an object with query options.
    ///
    /// # Errors
    /// As [`VncClient::read`].
    pub async fn read_with(
        &self,
        type_name: &str,
        uuid: &str,
        params: &ReadParams,
    ) -> Result<VncObject, VncError> {
        let mut q = Vec::new();
        if !params.fields.is_empty() {
            q.push(format!("fields={}", pct(&params.fields.join(","))));
        }
        if params.exclude_back_refs {
            q.push("exclude_back_refs=True".to_owned());
        }
        if params.exclude_children {
            q.push("exclude_children=True".to_owned());
        }
        let mut path = format!("/{type_name}/{}", pct(uuid));
        if !q.is_empty() {
            path = format!("{path}?{}", q.join("&"));
        }
        let op = format!("GET /{type_name}/{uuid}");
        let resp = self.call_json(Method::GET, &path, None).await?;
        let inner = resp
            .get(type_name)
            .ok_or_else(|| VncError::InvalidResponse {
                op: op.clone(),
                message: format!("no '{type_name}' key in response"),
            })?;
        VncObject::from_json(type_name, inner).map_err(|source| VncError::Model { op, source })
    }

    /// Reads a typed resource.
    ///
    /// # Errors
    /// As [`VncClient::read`], or `Model` when the object does not fit the view.
    pub async fn read_typed<R: Resource>(&self, uuid: &str) -> Result<R, VncError> {
        let obj = self.read(R::TYPE, uuid).await?;
        R::from_object(&obj).map_err(|source| VncError::Model {
            op: format!("GET /{}/{uuid}", R::TYPE),
            source,
        })
    }

    /// Reads an object by fq_name (fqname-to-id, then read).
    ///
    /// # Errors
    /// `NotFound` when the name is unknown.
    pub async fn read_by_fq_name(
        &self,
        type_name: &str,
        fq_name: &[String],
    ) -> Result<VncObject, VncError> {
        let uuid = self.fqname_to_id(type_name, fq_name).await?;
        self.read(type_name, &uuid).await
    }

    /// Updates the properties and references present in `obj` (`PUT /<type>/<uuid>`); a
    /// reference field present replaces the whole list.
    ///
    /// # Errors
    /// `NotFound`, `BadRequest` as the server decides.
    pub async fn update(&self, obj: &VncObject) -> Result<(), VncError> {
        let mut body = obj.to_create_body();
        if let Value::Object(m) = &mut body {
            m.remove("fq_name");
            m.remove("parent_type");
            m.remove("uuid");
        }
        self.update_fields(&obj.type_name, &obj.uuid, body).await
    }

    /// `PUT /<type>/<uuid>` with a raw partial body (the inner object).
    ///
    /// # Errors
    /// `NotFound`, `BadRequest` as the server decides.
    pub async fn update_fields(
        &self,
        type_name: &str,
        uuid: &str,
        fields: Value,
    ) -> Result<(), VncError> {
        let body = json!({ type_name: fields });
        self.call_json(
            Method::PUT,
            &format!("/{type_name}/{}", pct(uuid)),
            Some(&body),
        )
        .await
        .map(|_| ())
    }

    /// Deletes an object.
    ///
    /// # Errors
    /// `NotFound`, or `Conflict` while other objects refer to it or it has children.
    pub async fn delete(&self, type_name: &str, uuid: &str) -> Result<(), VncError> {
        self.call(Method::DELETE, &format!("/{type_name}/{}", pct(uuid)), None)
            .await
            .map(|_| ())
    }

    fn list_query(params: &ListParams, count: bool) -> String {
        let mut q = Vec::new();
        if !params.parent_id.is_empty() {
            q.push(format!("parent_id={}", pct(&params.parent_id.join(","))));
        }
        if let Some(p) = &params.parent_fq_name {
            q.push(format!("parent_fq_name_str={}", pct(&p.join(":"))));
        }
        if !params.back_ref_id.is_empty() {
            q.push(format!(
                "back_ref_id={}",
                pct(&params.back_ref_id.join(","))
            ));
        }
        if !params.obj_uuids.is_empty() {
            q.push(format!("obj_uuids={}", pct(&params.obj_uuids.join(","))));
        }
        if !params.fields.is_empty() {
            q.push(format!("fields={}", pct(&params.fields.join(","))));
        }
        if !params.filters.is_empty() {
            let f: Vec<String> = params
                .filters
                .iter()
                .map(|(k, v)| format!("{k}=={v}"))
                .collect();
            q.push(format!("filters={}", pct(&f.join(","))));
        }
        q.push(format!(
            "detail={}",
            if params.detail { "True" } else { "False" }
        ));
        if count {
            q.push("count=True".to_owned());
        }
        q.join("&")
    }

    /// Lists objects (`GET /<type>s`). Without `detail` each object carries only its uuid,
    /// fq_name and the requested fields.
    ///
    /// # Errors
    /// `NotFound` for an unknown type, `BadRequest` for a malformed filter.
    pub async fn list(
        &self,
        type_name: &str,
        params: &ListParams,
    ) -> Result<Vec<VncObject>, VncError> {
        let path = format!("/{type_name}s?{}", Self::list_query(params, false));
        let op = format!("GET /{type_name}s");
        let resp = self.call_json(Method::GET, &path, None).await?;
        let items = resp
            .get(format!("{type_name}s"))
            .and_then(Value::as_array)
            .ok_or_else(|| VncError::InvalidResponse {
                op: op.clone(),
                message: format!("no '{type_name}s' list in response"),
            })?;
        items
            .iter()
            .map(|item| {
                let inner = if params.detail {
                    item.get(type_name).unwrap_or(item)
                } else {
                    item
                };
                VncObject::from_json(type_name, inner).map_err(|source| VncError::Model {
                    op: op.clone(),
                    source,
                })
            })
            .collect()
    }

    /// Counts objects matching `params` (`count=True`).
    ///
    /// # Errors
    /// As [`VncClient::list`].
    pub async fn count(&self, type_name: &str, params: &ListParams) -> Result<u64, VncError> {
        let path = format!("/{type_name}s?{}", Self::list_query(params, true));
        let resp = self.call_json(Method::GET, &path, None).await?;
        resp.get(format!("{type_name}s"))
            .and_then(|v| v.get("count"))
            .and_then(Value::as_u64)
            .ok_or_else(|| VncError::InvalidResponse {
                op: format!("GET /{type_name}s?count=True"),
                message: format!("no count in {resp}"),
            })
    }

    /// `POST /fqname-to-id`.
    ///
    /// # Errors
    /// `NotFound` when no object of that type has that name.
    pub async fn fqname_to_id(
        &self,
        type_name: &str,
        fq_name: &[String],
    ) -> Result<String, VncError> {
        let resp = self
            .call_json(
                Method::POST,
                "/fqname-to-id",
                Some(&json!({"type": type_name, "fq_name": fq_name})),
            )
            .await?;
        resp.get("uuid")
            .and_then(Value::as_str)
            .map(str::to_owned)
            .ok_or_else(|| VncError::InvalidResponse {
                op: "POST /fqname-to-id".into(),
                message: format!("no uuid in {resp}"),
            })
    }

    /// `POST /id-to-fqname`: the type and fq_name of a uuid.
    ///
    /// # Errors
    /// `NotFound` when the uuid is unknown.
    pub async fn id_to_fqname(&self, uuid: &str) -> Result<(String, Vec<String>), VncError> {
        let resp = self
            .call_json(Method::POST, "/id-to-fqname", Some(&json!({"uuid": uuid})))
            .await?;
        let bad = || VncError::InvalidResponse {
            op: "POST /id-to-fqname".into(),
            message: format!("expected type and fq_name in {resp}"),
        };
        let type_name = resp.get("type").and_then(Value::as_str).ok_or_else(bad)?;
        let fq = resp
            .get("fq_name")
            .and_then(Value::as_array)
            .ok_or_else(bad)?
            .iter()
            .filter_map(|v| v.as_str().map(str::to_owned))
            .collect();
        Ok((type_name.to_owned(), fq))
    }

    /// `POST /ref-update`.
    ///
    /// # Errors
    /// `NotFound` for a missing object or target, `BadRequest` for a type without such a
    /// reference.
    pub async fn ref_update(&self, update: &RefUpdate) -> Result<(), VncError> {
        let body = json!({
            "type": update.type_name,
            "uuid": update.uuid,
            "ref-type": update.ref_type,
            "ref-uuid": update.ref_uuid,
            "ref-fq-name": update.ref_fq_name,
            "operation": match update.operation { RefOperation::Add => "ADD", RefOperation::Delete => "DELETE" },
            "attr": update.attr,
        });
        self.call_json(Method::POST, "/ref-update", Some(&body))
            .await
            .map(|_| ())
    }

    /// Adds (or re-attributes) a reference from `obj` to `target`.
    ///
    /// # Errors
    /// As [`VncClient::ref_update`].
    pub async fn add_ref(
        &self,
        obj_type: &str,
        obj_uuid: &str,
        target_type: &str,
        target: &Ref,
    ) -> Result<(), VncError> {
        self.ref_update(&RefUpdate {
            type_name: obj_type.to_owned(),
            uuid: obj_uuid.to_owned(),
            ref_type: target_type.to_owned(),
            ref_uuid: (!target.uuid.is_empty()).then(|| target.uuid.clone()),
            ref_fq_name: (!target.to.is_empty()).then(|| target.to.clone()),
            operation: RefOperation::Add,
            attr: target.attr.clone(),
        })
        .await
    }

    /// `POST /ref-relax-for-delete`: the reference from `uuid` to `ref_uuid` no longer blocks
    /// deleting `ref_uuid`.
    ///
    /// # Errors
    /// `NotFound` when `uuid` is unknown.
    pub async fn ref_relax_for_delete(&self, uuid: &str, ref_uuid: &str) -> Result<(), VncError> {
        self.call_json(
            Method::POST,
            "/ref-relax-for-delete",
            Some(&json!({"uuid": uuid, "ref-uuid": ref_uuid})),
        )
        .await
        .map(|_| ())
    }

    /// `POST /set-tag` with several tag types at once.
    ///
    /// # Errors
    /// `NotFound` when the object or a tag does not exist, `BadRequest` for a multi-value
    /// change of a single-valued type.
    pub async fn set_tags(
        &self,
        obj_type: &str,
        obj_uuid: &str,
        changes: &[(String, TagChange)],
    ) -> Result<(), VncError> {
        let mut body = Map::new();
        body.insert("obj_type".into(), json!(obj_type));
        body.insert("obj_uuid".into(), json!(obj_uuid));
        for (tag_type, change) in changes {
            let v = match change {
                TagChange::Set { value, is_global } => {
                    json!({"is_global": is_global, "value": value})
                }
                TagChange::Values {
                    add,
                    delete,
                    is_global,
                } => json!({"is_global": is_global, "add_values": add, "delete_values": delete}),
                TagChange::Unset => Value::Null,
            };
            body.insert(tag_type.clone(), v);
        }
        self.call_json(Method::POST, "/set-tag", Some(&Value::Object(body)))
            .await
            .map(|_| ())
    }

    /// Sets one tag `tag_type=value` on an object.
    ///
    /// # Errors
    /// As [`VncClient::set_tags`].
    pub async fn set_tag(
        &self,
        obj_type: &str,
        obj_uuid: &str,
        tag_type: &str,
        value: &str,
        is_global: bool,
    ) -> Result<(), VncError> {
        self.set_tags(
            obj_type,
            obj_uuid,
            &[(
                tag_type.to_owned(),
                TagChange::Set {
                    value: value.to_owned(),
                    is_global,
                },
            )],
        )
        .await
    }

    /// Sends an arbitrary request and returns status and body (for contract tests of error
    /// paths).
    ///
    /// # Errors
    /// Only transport errors; HTTP errors are returned as status codes.
    pub async fn raw(
        &self,
        method: Method,
        path_and_query: &str,
        body: Option<Bytes>,
    ) -> Result<(u16, Bytes), VncError> {
        let url = format!("{}{}", self.base, path_and_query);
        let op = format!("{method} {path_and_query}");
        let mut builder = Request::builder()
            .method(method)
            .uri(&url)
            .header("content-type", "application/json; charset=\"UTF-8\"");
        if let Auth::KeystoneToken(t) = &self.auth {
            builder = builder.header("x-auth-token", t.as_str());
        }
        for (n, v) in &self.headers {
            builder = builder.header(n, v);
        }
        let req = builder
            .body(Full::new(body.unwrap_or_default()))
            .map_err(|e| VncError::Config(format!("{op}: {e}")))?;
        let transport = |message: String| VncError::Transport {
            op: op.clone(),
            url: self.base.clone(),
            message,
        };
        let resp = tokio::time::timeout(self.timeout, self.http.request(req))
            .await
            .map_err(|_| transport("timeout".into()))?
            .map_err(|e| transport(e.to_string()))?;
        let status = resp.status().as_u16();
        let bytes = resp
            .into_body()
            .collect()
            .await
            .map_err(|e| transport(e.to_string()))?
            .to_bytes();
        Ok((status, bytes))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_https_and_garbage() {
        assert!(matches!(
            VncClient::new("https://x:8082", Auth::None),
            Err(VncError::Config(_))
        ));
        assert!(VncClient::new("ftp://x", Auth::None).is_err());
        assert!(VncClient::new("http://", Auth::None).is_err());
    }

    #[test]
    fn query_is_percent_encoded() {
        let q = VncClient::list_query(
            &ListParams {
                parent_fq_name: Some(vec!["default-domain".into(), "k8s default".into()]),
                filters: vec![("display_name".into(), json!("a,b"))],
                ..ListParams::default()
            },
            false,
        );
        assert!(
            q.contains("parent_fq_name_str=default-domain%3Ak8s%20default"),
            "{q}"
        );
        assert!(q.contains("filters=display_name%3D%3D%22a%2Cb%22"), "{q}");
    }
}
