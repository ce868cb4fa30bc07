//! The VNC API over HTTP (axum), with the real server's paths, response shapes, status codes
//! and text error bodies, plus the change stream.
//!
//! | method, path | answer |
//! |---|---|
//! | `GET /` | homepage `{"href", "links": [{"link": {rel, href, name, method}}]}` (vnc_api discovers every URL from it) |
//! | `POST /<type>s` | create → `{"<type>": {name, fq_name, uuid, href, parent_type, parent_uuid, parent_href}}` |
//! | `GET /<type>s?detail=&fields=&parent_id=&parent_fq_name_str=&back_ref_id=&obj_uuids=&fq_names=&filters=&count=` | list |
//! | `GET/PUT/DELETE /<type>/<uuid>` | read (`fields`, `exclude_back_refs`, `exclude_children`, `exclude_hrefs`), update, delete |
//! | `POST /fqname-to-id`, `/id-to-fqname`, `/ref-update`, `/ref-relax-for-delete`, `/set-tag`, `/prop-collection-update`, `/list-bulk-collection`, `/chown`, `/chmod`, `/useragent-kv`; `GET /prop-collection-get`, `/obj-perms`; `GET/PUT /aaa-mode` | actions |
//! | `GET /watch?since=N&resource_type=a,b` | change stream (Server-Sent Events, see below) |
//!
//! Change stream: `text/event-stream`; first `event: init` with `data: {"seq": N}` (the
//! starting point), then for each change after it `id: <seq>`, `event: create|update|delete`,
//! `data: {"seq", "type", "uuid", "fq_name", "content"}` (content = the object after the change,
//! for a delete its last state). Without `since` the stream starts at the current sequence. A
//! `since` older than the log answers 410. `resource_type` (hyphenated or underscored, comma
//! separated) filters by type, like the real server's `/watch`.

use std::net::SocketAddr;
use std::sync::{Arc, PoisonError, RwLock};

use axum::Router;
use axum::body::to_bytes;
use axum::extract::{Request, State};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use futures_util::stream::{self, Stream};
use harness_contrail_vnc::schema::{self, TypeInfo};
use harness_contrail_vnc::{ListParams, Ref, RefOperation, RefUpdate, VncObject};
use http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use serde_json::{Map, Value, json};
use tokio::net::TcpListener;
use tokio::sync::{oneshot, watch};
use tokio::task::JoinHandle;

use crate::change::WatchError;
use crate::db::{ConfigDb, DbError, type_info};
use crate::rbac::{self, AaaMode, AuthConfig};

/// Largest request body accepted.
pub const MAX_BODY_BYTES: usize = 32 * 1024 * 1024;

/// Server settings.
#[derive(Debug, Clone, Default)]
pub struct ServerConfig {
    /// Authentication and RBAC.
    pub auth: AuthConfig,
}

/// Why the server could not start or stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// Only loopback addresses may be served.
    #[error(
        "refusing to listen on {0}: contrail-mock only serves loopback addresses (127.0.0.0/8, ::1)"
    )]
    NotLoopback(SocketAddr),
    /// The address could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// Address asked for.
        addr: SocketAddr,
        /// OS error.
        #[source]
        source: std::io::Error,
    },
    /// The server failed while running.
    #[error("contrail-mock server failed: {0}")]
    Server(String),
}

struct AppState {
    db: ConfigDb,
    auth: RwLock<AuthConfig>,
    local: SocketAddr,
    stop: watch::Receiver<bool>,
}

/// A server running in the background. Dropping it does not stop it; call
/// [`RunningServer::shutdown`].
pub struct RunningServer {
    addr: SocketAddr,
    db: ConfigDb,
    stop: Option<watch::Sender<bool>>,
    done: Option<oneshot::Receiver<()>>,
    task: JoinHandle<Result<(), std::io::Error>>,
}

impl std::fmt::Debug for RunningServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunningServer")
            .field("addr", &self.addr)
            .finish()
    }
}

impl RunningServer {
    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://<addr>`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The database it serves (restarting with this handle keeps the objects).
    pub fn db(&self) -> &ConfigDb {
        &self.db
    }

    /// Stops accepting requests, ends open change streams and waits for the server to stop.
    ///
    /// # Errors
    /// When the server task failed.
    pub async fn shutdown(mut self) -> Result<(), ServeError> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(true);
        }
        drop(self.done.take());
        match (&mut self.task).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(ServeError::Server(e.to_string())),
            Err(e) => Err(ServeError::Server(e.to_string())),
        }
    }
}

/// Serves `db` on `addr` (loopback only; port 0 picks a free port).
///
/// # Errors
/// `NotLoopback` for any other address, `Bind` when the port is taken.
///
/// # Usage
/// ```no_run
/// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
/// use harness_contrail_mock::{ConfigDb, ServerConfig, serve};
/// let db = ConfigDb::new();
/// let server = serve("127.0.0.1:0".parse()?, db.clone(), ServerConfig::default()).await?;
/// println!("VNC API at {}", server.url());
/// server.shutdown().await?;
/// let again = serve("127.0.0.1:0".parse()?, db, ServerConfig::default()).await?; // same objects
/// # again.shutdown().await?; Ok(()) }
/// ```
pub async fn serve(
    addr: SocketAddr,
    db: ConfigDb,
    config: ServerConfig,
) -> Result<RunningServer, ServeError> {
    if !addr.ip().is_loopback() {
        return Err(ServeError::NotLoopback(addr));
    }
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|source| ServeError::Bind { addr, source })?;
    let local = listener
        .local_addr()
        .map_err(|source| ServeError::Bind { addr, source })?;
    if config.auth.aaa_mode == AaaMode::Rbac {
        db.ensure_default_rbac_rules();
    }
    let (stop_tx, stop_rx) = watch::channel(false);
    let state = Arc::new(AppState {
        db: db.clone(),
        auth: RwLock::new(config.auth),
        local,
        stop: stop_rx.clone(),
    });
    let app = Router::new().fallback(handle).with_state(state);
    let (done_tx, done_rx) = oneshot::channel::<()>();
    let mut stop_wait = stop_rx;
    let task = tokio::spawn(async move {
        let result = axum::serve(listener, app)
            .with_graceful_shutdown(async move {
                let _ = stop_wait.wait_for(|s| *s).await;
            })
            .await;
        let _ = done_tx.send(());
        result
    });
    Ok(RunningServer {
        addr: local,
        db,
        stop: Some(stop_tx),
        done: Some(done_rx),
        task,
    })
}

/// Runs a fresh contrail-mock on `listen` until `shutdown` resolves (the `harness
/// contrail-mock --listen` verb).
///
/// # Errors
/// As [`serve`].
pub async fn run_standalone(
    listen: SocketAddr,
    shutdown: impl std::future::Future<Output = ()> + Send,
) -> Result<(), ServeError> {
    run_standalone_with(listen, ServerConfig::default(), shutdown).await
}

/// [`run_standalone`] with settings (e.g. RBAC).
///
/// # Errors
/// As [`serve`].
pub async fn run_standalone_with(
    listen: SocketAddr,
    config: ServerConfig,
    shutdown: impl std::future::Future<Output = ()> + Send,
) -> Result<(), ServeError> {
    let server = serve(listen, ConfigDb::new(), config).await?;
    shutdown.await;
    server.shutdown().await
}

// ---------------------------------------------------------------------------------------
// Responses

/// An error answer: status and a text body, as the real server sends them.
#[derive(Debug)]
struct ApiError(u16, String);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.0).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        (
            status,
            [(header::CONTENT_TYPE, "text/html; charset=UTF-8")],
            self.1,
        )
            .into_response()
    }
}

fn text(status: u16, msg: impl Into<String>) -> ApiError {
    ApiError(status, msg.into())
}

fn json_ok(v: &Value) -> Response {
    let body = serde_json::to_vec(v).unwrap_or_default();
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/json; charset=UTF-8")],
        body,
    )
        .into_response()
}

fn db_err(e: &DbError) -> ApiError {
    text(e.status(), e.to_string())
}

type HandlerResult = Result<Response, ApiError>;

fn bad(msg: impl Into<String>) -> ApiError {
    text(400, msg)
}

// ---------------------------------------------------------------------------------------
// Request plumbing

struct Req {
    method: Method,
    path: String,
    query: Vec<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
    base: String,
}

impl Req {
    fn q(&self, key: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    fn flag(&self, key: &str) -> bool {
        self.q(key)
            .is_some_and(|v| v.to_lowercase().contains("true"))
    }

    fn json(&self) -> Result<Value, ApiError> {
        if self.body.is_empty() {
            return Err(bad("Bad Request, empty body (a JSON object is expected)"));
        }
        serde_json::from_slice(&self.body)
            .map_err(|e| bad(format!("Bad Request, invalid JSON body: {e}")))
    }
}

fn parse_query(raw: Option<&str>) -> Vec<(String, String)> {
    let Some(raw) = raw else { return Vec::new() };
    raw.split('&')
        .filter(|p| !p.is_empty())
        .map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            (pct_decode(k), pct_decode(v))
        })
        .collect()
}

fn pct_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' => {
                let hex = bytes
                    .get(i + 1..i + 3)
                    .and_then(|h| std::str::from_utf8(h).ok())
                    .and_then(|h| u8::from_str_radix(h, 16).ok());
                match hex {
                    Some(b) => {
                        out.push(b);
                        i += 2;
                    }
                    None => out.push(b'%'),
                }
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

async fn handle(State(app): State<Arc<AppState>>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let body = match to_bytes(body, MAX_BODY_BYTES).await {
        Ok(b) => b,
        Err(_) => return text(413, "Request body too large").into_response(),
    };
    let host = parts
        .headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .map(str::to_owned)
        .unwrap_or_else(|| app.local.to_string());
    let req = Req {
        method: parts.method,
        path: parts.uri.path().to_owned(),
        query: parse_query(parts.uri.query()),
        headers: parts.headers,
        body,
        base: format!("http://{host}"),
    };
    match dispatch(&app, &req).await {
        Ok(r) => r,
        Err(e) => e.into_response(),
    }
}

fn authorize(app: &AppState, req: &Req) -> Result<(), ApiError> {
    let cfg = app.auth.read().unwrap_or_else(PoisonError::into_inner);
    if cfg.aaa_mode == AaaMode::NoAuth {
        return Ok(());
    }
    // Discovery stays open, as the real server's white list.
    if req.path == "/" && req.method == Method::GET {
        return Ok(());
    }
    let identity = rbac::authenticate(&cfg, &req.headers).map_err(|(s, m)| text(s, m))?;
    let body: Option<Value> = serde_json::from_slice(&req.body).ok();
    rbac::authorize(
        &cfg,
        &app.db,
        &identity,
        &req.method,
        &req.path,
        body.as_ref(),
    )
    .map_err(|(s, m)| text(s, m))
}

fn caller_project(req: &Req, app: &AppState) -> Option<String> {
    let cfg = app.auth.read().unwrap_or_else(PoisonError::into_inner);
    if cfg.aaa_mode == AaaMode::NoAuth {
        return req
            .headers
            .get("x-project-id")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
    }
    rbac::authenticate(&cfg, &req.headers)
        .ok()
        .and_then(|i| i.project_id)
}

async fn dispatch(app: &Arc<AppState>, req: &Req) -> HandlerResult {
    let segs: Vec<&str> = req
        .path
        .trim_matches('/')
        .split('/')
        .filter(|s| !s.is_empty())
        .collect();
    authorize(app, req)?;
    let m = &req.method;
    match segs.as_slice() {
        [] if *m == Method::GET => Ok(homepage(req)),
        ["watch"] if *m == Method::GET => watch_stream(app, req),
        ["fqname-to-id"] if *m == Method::POST => fqname_to_id(app, req),
        ["id-to-fqname"] if *m == Method::POST => id_to_fqname(app, req),
        ["ref-update"] if *m == Method::POST => ref_update(app, req),
        ["ref-relax-for-delete"] if *m == Method::POST => ref_relax(app, req),
        ["set-tag"] if *m == Method::POST => set_tag(app, req),
        ["prop-collection-update"] if *m == Method::POST => prop_collection_update(app, req),
        ["prop-collection-get"] if *m == Method::GET => prop_collection_get(app, req),
        ["list-bulk-collection"] if *m == Method::POST => list_bulk(app, req),
        ["chown"] if *m == Method::POST => chown(app, req),
        ["chmod"] if *m == Method::POST => chmod(app, req),
        ["useragent-kv"] if *m == Method::POST => useragent_kv(app, req),
        ["obj-perms"] if *m == Method::GET => Ok(json_ok(&json!({
            "token_info": null, "is_cloud_admin_role": false,
            "is_global_read_only_role": false, "permissions": "RWX"}))),
        ["aaa-mode"] if *m == Method::GET => {
            let mode = app
                .auth
                .read()
                .unwrap_or_else(PoisonError::into_inner)
                .aaa_mode;
            Ok(json_ok(&json!({"aaa-mode": mode.as_str()})))
        }
        ["aaa-mode"] if *m == Method::PUT => aaa_mode_put(app, req),
        [collection] => match schema::resource_by_plural(collection) {
            Some(info) if *m == Method::GET => list(app, req, info),
            Some(info) if *m == Method::POST => create(app, req, info),
            Some(_) => Err(text(405, "Method not allowed.")),
            None => Err(not_found(req)),
        },
        [type_name, id] => match schema::resource(type_name) {
            Some(info) if *m == Method::GET => read(app, req, info, id),
            Some(info) if *m == Method::PUT => update(app, req, info, id),
            Some(info) if *m == Method::DELETE => delete(app, info, id),
            Some(_) => Err(text(405, "Method not allowed.")),
            None => Err(not_found(req)),
        },
        _ => Err(not_found(req)),
    }
}

fn not_found(req: &Req) -> ApiError {
    text(404, format!("Not found: '{}'", req.path))
}

// ---------------------------------------------------------------------------------------
// Homepage

const ACTIONS: &[(&str, &str, &str)] = &[
    ("/prop-collection-get", "prop-collection-get", "GET"),
    ("/prop-collection-update", "prop-collection-update", "POST"),
    ("/ref-update", "ref-update", "POST"),
    ("/ref-relax-for-delete", "ref-relax-for-delete", "POST"),
    ("/fqname-to-id", "name-to-id", "POST"),
    ("/id-to-fqname", "id-to-name", "POST"),
    ("/useragent-kv", "useragent-keyvalue", "POST"),
    ("/list-bulk-collection", "list-bulk-collection", "POST"),
    ("/obj-perms", "obj-perms", "GET"),
    ("/chown", "chown", "POST"),
    ("/chmod", "chmod", "POST"),
    ("/aaa-mode", "aaa-mode", "PUT"),
    ("/watch", "watch", "GET"),
    ("/set-tag", "set-tag", "POST"),
];

fn homepage(req: &Req) -> Response {
    let base = &req.base;
    let mut links = vec![
        json!({"link": {"rel": "root", "href": format!("{base}/config-root"), "name": "config-root", "method": null}}),
    ];
    for info in schema::resources() {
        links.push(
            json!({"link": {"rel": "collection", "href": format!("{base}/{}", info.plural),
                                    "name": info.name(), "method": null}}),
        );
    }
    for info in schema::resources() {
        links.push(
            json!({"link": {"rel": "resource-base", "href": format!("{base}/{}", info.name()),
                                    "name": info.name(), "method": null}}),
        );
    }
    for (uri, name, method) in ACTIONS {
        links.push(json!({"link": {"rel": "action", "href": format!("{base}{uri}"), "name": name, "method": method}}));
    }
    json_ok(&json!({"href": base, "links": links}))
}

// ---------------------------------------------------------------------------------------
// CRUD

fn href(base: &str, type_name: &str, id: &str) -> String {
    format!("{base}/{type_name}/{id}")
}

/// The read view of an object: identity, hrefs, props, refs, and (unless excluded) back-refs
/// and children.
fn object_view(
    base: Option<&str>,
    obj: &VncObject,
    info: &TypeInfo,
    fields: Option<&[String]>,
    back_refs: bool,
    children: bool,
) -> Value {
    let mut m = Map::new();
    m.insert("uuid".into(), json!(obj.uuid));
    m.insert("name".into(), json!(obj.name()));
    m.insert("fq_name".into(), json!(obj.fq_name));
    if let Some(base) = base {
        m.insert("href".into(), json!(href(base, info.name(), &obj.uuid)));
    }
    if let (Some(pt), Some(pu)) = (&obj.parent_type, &obj.parent_uuid) {
        m.insert("parent_type".into(), json!(pt));
        m.insert("parent_uuid".into(), json!(pu));
        if let Some(base) = base {
            m.insert("parent_href".into(), json!(href(base, pt, pu)));
        }
    }
    let wanted = |f: &str| {
        fields.is_none_or(|fs| fs.iter().any(|x| x == f) || f == "id_perms" || f == "perms2")
    };
    for (k, v) in &obj.fields {
        if wanted(k) {
            m.insert(k.clone(), v.clone());
        }
    }
    let links =
        |m: &mut Map<String, Value>, field: &str, target: &str, list: &[Ref], with_attr: bool| {
            let items: Vec<Value> = list
                .iter()
                .map(|r| {
                    let mut l = Map::new();
                    l.insert("to".into(), json!(r.to));
                    if let Some(base) = base {
                        l.insert("href".into(), json!(href(base, target, &r.uuid)));
                    }
                    if with_attr {
                        l.insert("attr".into(), r.attr.clone().unwrap_or(Value::Null));
                    }
                    l.insert("uuid".into(), json!(r.uuid));
                    Value::Object(l)
                })
                .collect();
            m.insert(field.to_owned(), Value::Array(items));
        };
    for (field, list) in &obj.refs {
        if wanted(field) {
            let target = info.ref_field(field).map_or("", |r| r.to);
            links(&mut m, field, target, list, true);
        }
    }
    for (field, list) in &obj.back_refs {
        let explicit = fields.is_some_and(|fs| fs.iter().any(|x| x == field));
        if (back_refs && fields.is_none()) || explicit {
            let from = info.back_refs.get(field).copied().unwrap_or("");
            links(&mut m, field, from, list, true);
        }
    }
    for (field, list) in &obj.children {
        let explicit = fields.is_some_and(|fs| fs.iter().any(|x| x == field));
        if (children && fields.is_none()) || explicit {
            let child = info.children.get(field).copied().unwrap_or("");
            links(&mut m, field, child, list, false);
        }
    }
    Value::Object(m)
}

fn inner_body(req: &Req, info: &TypeInfo) -> Result<Value, ApiError> {
    let body = req.json()?;
    let Value::Object(mut outer) = body else {
        return Err(bad(format!(
            "Bad Request, expected {{\"{}\": {{...}}}}",
            info.name()
        )));
    };
    outer.remove(info.name()).ok_or_else(|| {
        bad(format!(
            "Bad Request, expected {{\"{}\": {{...}}}} in the body",
            info.name()
        ))
    })
}

fn create(app: &AppState, req: &Req, info: &TypeInfo) -> HandlerResult {
    let inner = inner_body(req, info)?;
    let project = caller_project(req, app);
    let obj = app
        .db
        .create_json_as(info.name(), inner, project)
        .map_err(|e| db_err(&e))?;
    let mut m = Map::new();
    m.insert("name".into(), json!(obj.name()));
    m.insert("fq_name".into(), json!(obj.fq_name));
    m.insert("uuid".into(), json!(obj.uuid));
    m.insert(
        "href".into(),
        json!(href(&req.base, info.name(), &obj.uuid)),
    );
    if let (Some(pt), Some(pu)) = (&obj.parent_type, &obj.parent_uuid) {
        m.insert("parent_type".into(), json!(pt));
        m.insert("parent_uuid".into(), json!(pu));
        m.insert("parent_href".into(), json!(href(&req.base, pt, pu)));
    }
    Ok(json_ok(&json!({ info.name(): m })))
}

fn read(app: &AppState, req: &Req, info: &TypeInfo, id: &str) -> HandlerResult {
    let fields: Option<Vec<String>> = req.q("fields").map(|f| {
        f.split(',')
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect()
    });
    let st = app.db.read_state();
    let obj = st.get_typed(info.name(), id).map_err(|e| db_err(&e))?;
    let base = (!req.flag("exclude_hrefs") && req.q("exclude_hrefs").is_none())
        .then_some(req.base.as_str());
    let view = object_view(
        base,
        obj,
        info,
        fields.as_deref(),
        req.q("exclude_back_refs").is_none(),
        req.q("exclude_children").is_none(),
    );
    let etag = obj
        .fields
        .get("id_perms")
        .and_then(|p| p.get("last_modified"))
        .and_then(Value::as_str)
        .map(|s| format!("\"{s}\""));
    drop(st);
    let mut resp = json_ok(&json!({ info.name(): view }));
    if let Some(tag) = etag.and_then(|t| HeaderValue::from_str(&t).ok()) {
        resp.headers_mut().insert(header::ETAG, tag);
    }
    Ok(resp)
}

fn update(app: &AppState, req: &Req, info: &TypeInfo, id: &str) -> HandlerResult {
    let inner = inner_body(req, info)?;
    let empty = inner.as_object().is_some_and(Map::is_empty) || inner.is_null();
    if !empty {
        app.db
            .update_json(info.name(), id, inner)
            .map_err(|e| db_err(&e))?;
    } else {
        app.db.read(info.name(), id).map_err(|e| db_err(&e))?;
    }
    Ok(json_ok(
        &json!({ info.name(): {"uuid": id, "href": href(&req.base, info.name(), id)} }),
    ))
}

fn delete(app: &AppState, info: &TypeInfo, id: &str) -> HandlerResult {
    app.db.delete(info.name(), id).map_err(|e| db_err(&e))?;
    Ok((
        StatusCode::OK,
        [(header::CONTENT_TYPE, "text/html; charset=UTF-8")],
        "",
    )
        .into_response())
}

struct ListRequest {
    params: ListParams,
    fq_names: Option<Vec<Vec<String>>>,
    count: bool,
    exclude_hrefs: bool,
}

fn parse_filters(raw: &str) -> Result<Vec<(String, Value)>, String> {
    let mut out = Vec::new();
    for part in raw.split(',').filter(|p| !p.is_empty()) {
        let (k, v) = part
            .split_once("==")
            .ok_or_else(|| format!("Invalid filter {raw}"))?;
        let value = serde_json::from_str(v).unwrap_or_else(|_| Value::String(v.to_owned()));
        out.push((k.to_owned(), value));
    }
    Ok(out)
}

fn split_list(v: Option<&str>) -> Vec<String> {
    v.map(|s| {
        s.split(',')
            .filter(|x| !x.is_empty())
            .map(str::to_owned)
            .collect()
    })
    .unwrap_or_default()
}

fn list_request_from(get: &dyn Fn(&str) -> Option<String>) -> Result<ListRequest, ApiError> {
    let truthy = |k: &str| get(k).is_some_and(|v| v.to_lowercase().contains("true"));
    let filters = match get("filters") {
        Some(f) => parse_filters(&f).map_err(bad)?,
        None => Vec::new(),
    };
    Ok(ListRequest {
        params: ListParams {
            detail: truthy("detail"),
            fields: split_list(get("fields").as_deref()),
            parent_id: split_list(get("parent_id").as_deref()),
            parent_fq_name: get("parent_fq_name_str")
                .map(|s| s.split(':').map(str::to_owned).collect()),
            back_ref_id: split_list(get("back_ref_id").as_deref()),
            obj_uuids: split_list(get("obj_uuids").as_deref()),
            filters,
        },
        fq_names: get("fq_names").map(|s| {
            s.split(',')
                .filter(|x| !x.is_empty())
                .map(|f| f.split(':').map(str::to_owned).collect())
                .collect()
        }),
        count: truthy("count"),
        exclude_hrefs: get("exclude_hrefs").is_some_and(|v| !v.to_lowercase().contains("false")),
    })
}

fn list(app: &AppState, req: &Req, info: &TypeInfo) -> HandlerResult {
    let lr = list_request_from(&|k| req.q(k).map(str::to_owned))?;
    run_list(app, req, info, lr)
}

fn run_list(app: &AppState, req: &Req, info: &TypeInfo, mut lr: ListRequest) -> HandlerResult {
    let plural = &info.plural;
    if let Some(fq_names) = lr.fq_names.take() {
        let mut ids: Vec<String> = fq_names
            .iter()
            .filter_map(|fq| app.db.fq_name_to_uuid(info.name(), fq).ok())
            .collect();
        if ids.is_empty() {
            return Ok(json_ok(&json!({ plural.as_str(): [] })));
        }
        ids.append(&mut lr.params.obj_uuids);
        lr.params.obj_uuids = ids;
    }
    let objs = app
        .db
        .list(info.name(), &lr.params)
        .map_err(|e| db_err(&e))?;
    if lr.count {
        return Ok(json_ok(&json!({ plural.as_str(): {"count": objs.len()} })));
    }
    let base = (!lr.exclude_hrefs).then_some(req.base.as_str());
    let items: Vec<Value> = objs
        .iter()
        .map(|o| {
            if lr.params.detail {
                let mut v = object_view(base, o, info, None, false, false);
                if let Value::Object(m) = &mut v {
                    for f in &lr.params.fields {
                        let list = o.back_refs.get(f).or_else(|| o.children.get(f));
                        if let Some(list) = list {
                            m.insert(f.clone(), serde_json::to_value(list).unwrap_or(Value::Null));
                        }
                    }
                }
                json!({ info.name(): v })
            } else {
                let mut m = Map::new();
                if let Some(base) = base {
                    m.insert("href".into(), json!(href(base, info.name(), &o.uuid)));
                }
                m.insert("fq_name".into(), json!(o.fq_name));
                m.insert("uuid".into(), json!(o.uuid));
                for f in &lr.params.fields {
                    let v = o.fields.get(f).cloned().or_else(|| {
                        o.refs
                            .get(f)
                            .or_else(|| o.back_refs.get(f))
                            .or_else(|| o.children.get(f))
                            .and_then(|l| serde_json::to_value(l).ok())
                    });
                    if let Some(v) = v {
                        m.insert(f.clone(), v);
                    }
                }
                Value::Object(m)
            }
        })
        .collect();
    Ok(json_ok(&json!({ plural.as_str(): items })))
}

fn list_bulk(app: &AppState, req: &Req) -> HandlerResult {
    let body = req.json()?;
    let type_name = body
        .get("type")
        .and_then(Value::as_str)
        .ok_or_else(|| bad("Bad Request, list-bulk-collection needs 'type'"))?;
    let info = type_info(type_name).map_err(|e| db_err(&e))?;
    let get = |k: &str| -> Option<String> {
        match body.get(k)? {
            Value::String(s) => Some(s.clone()),
            Value::Bool(b) => Some(if *b { "True".into() } else { "False".into() }),
            Value::Null => None,
            Value::Array(a) => Some(
                a.iter()
                    .filter_map(|v| v.as_str().map(str::to_owned))
                    .collect::<Vec<_>>()
                    .join(","),
            ),
            other => Some(other.to_string()),
        }
    };
    let lr = list_request_from(&get)?;
    run_list(app, req, info, lr)
}

// ---------------------------------------------------------------------------------------
// Actions

fn str_field<'a>(body: &'a Value, key: &str) -> Option<&'a str> {
    body.get(key).and_then(Value::as_str)
}

fn fqname_to_id(app: &AppState, req: &Req) -> HandlerResult {
    let body = req.json()?;
    let type_name =
        str_field(&body, "type").ok_or_else(|| bad("Bad Request, 'type' is required"))?;
    let info = type_info(type_name).map_err(|e| db_err(&e))?;
    let fq: Vec<String> = body
        .get("fq_name")
        .and_then(Value::as_array)
        .and_then(|a| a.iter().map(|v| v.as_str().map(str::to_owned)).collect())
        .ok_or_else(|| bad("Bad Request, 'fq_name' must be a list of strings"))?;
    let id = app
        .db
        .fq_name_to_uuid(info.name(), &fq)
        .map_err(|e| db_err(&e))?;
    Ok(json_ok(&json!({"uuid": id})))
}

fn id_to_fqname(app: &AppState, req: &Req) -> HandlerResult {
    let body = req.json()?;
    let id = str_field(&body, "uuid").ok_or_else(|| bad("Bad Request, 'uuid' is required"))?;
    let (type_name, fq) = app.db.uuid_to_fq_name(id).map_err(|e| db_err(&e))?;
    Ok(json_ok(&json!({"fq_name": fq, "type": type_name})))
}

fn ref_update(app: &AppState, req: &Req) -> HandlerResult {
    let body = req.json()?;
    let t = str_field(&body, "type");
    let id = str_field(&body, "uuid");
    let rt = str_field(&body, "ref-type");
    let op = str_field(&body, "operation");
    let (Some(t), Some(id), Some(rt), Some(op)) = (t, id, rt, op) else {
        return Err(bad(format!(
            "Bad Request: type/uuid/ref-type/operation is null: {}, {}, {}, {}.",
            t.unwrap_or("None"),
            id.unwrap_or("None"),
            rt.unwrap_or("None"),
            op.unwrap_or("None")
        )));
    };
    let info = type_info(t).map_err(|e| db_err(&e))?;
    let rt_norm = rt.replace('_', "-");
    let rt_norm = rt_norm.strip_suffix("-refs").unwrap_or(&rt_norm).to_owned();
    type_info(&rt_norm).map_err(|e| db_err(&e))?;
    let operation = match op.to_uppercase().as_str() {
        "ADD" => RefOperation::Add,
        "DELETE" => RefOperation::Delete,
        other => {
            return Err(bad(format!(
                "Bad Request: operation should be add or delete: {other}"
            )));
        }
    };
    let ref_uuid = str_field(&body, "ref-uuid").map(str::to_owned);
    let ref_fq_name: Option<Vec<String>> = match body.get("ref-fq-name") {
        None | Some(Value::Null) => None,
        Some(Value::Array(a)) => Some(
            a.iter()
                .map(|v| v.as_str().map(str::to_owned))
                .collect::<Option<Vec<_>>>()
                .ok_or_else(|| bad("Bad Request: ref-fq-name must be a list of strings"))?,
        ),
        Some(_) => return Err(bad("Bad Request: ref-fq-name must be a list of strings")),
    };
    if ref_uuid.is_none() && ref_fq_name.is_none() {
        return Err(bad(
            "Bad Request: ref-uuid or ref-fq-name must be specified",
        ));
    }
    let update = RefUpdate {
        type_name: info.name().to_owned(),
        uuid: id.to_owned(),
        ref_type: rt_norm,
        ref_uuid,
        ref_fq_name,
        operation,
        attr: body.get("attr").cloned().filter(|a| !a.is_null()),
    };
    let relax = body
        .get("relax_ref_for_delete")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    let result = if relax {
        app.db.ref_update_relaxed(&update)
    } else {
        app.db.ref_update(&update)
    };
    result.map_err(|e| db_err(&e))?;
    Ok(json_ok(&json!({"uuid": id})))
}

fn ref_relax(app: &AppState, req: &Req) -> HandlerResult {
    let body = req.json()?;
    let (Some(id), Some(ref_id)) = (str_field(&body, "uuid"), str_field(&body, "ref-uuid")) else {
        return Err(bad(format!(
            "Bad Request: Both uuid and ref-uuid should be specified: {}, {}.",
            str_field(&body, "uuid").unwrap_or("None"),
            str_field(&body, "ref-uuid").unwrap_or("None")
        )));
    };
    app.db
        .ref_relax_for_delete(id, ref_id)
        .map_err(|e| db_err(&e))?;
    Ok(json_ok(&json!({"uuid": id})))
}

fn set_tag(app: &AppState, req: &Req) -> HandlerResult {
    let body = req.json()?;
    let Value::Object(mut map) = body else {
        return Err(bad("Bad Request, set-tag body must be a JSON object"));
    };
    let obj_type = map.remove("obj_type");
    let obj_uuid = map.remove("obj_uuid");
    let (Some(Value::String(t)), Some(Value::String(id))) = (obj_type, obj_uuid) else {
        return Err(bad("Object type and UUID must be specified"));
    };
    app.db.set_tags(&t, &id, &map).map_err(|e| db_err(&e))?;
    Ok(json_ok(&json!({})))
}

fn prop_collection_update(app: &AppState, req: &Req) -> HandlerResult {
    let body = req.json()?;
    let id = str_field(&body, "uuid")
        .ok_or_else(|| bad("Error: prop_collection_update needs obj_uuid"))?;
    let updates: Vec<Value> = body
        .get("updates")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    app.db
        .prop_collection_update(id, &updates)
        .map_err(|e| db_err(&e))?;
    Ok(json_ok(&json!({})))
}

fn prop_collection_get(app: &AppState, req: &Req) -> HandlerResult {
    let id = req
        .q("uuid")
        .ok_or_else(|| bad("Object uuid needed for property collection get"))?;
    let fields = req
        .q("fields")
        .ok_or_else(|| bad("Object fields needed for property collection get"))?;
    let obj = app
        .db
        .get(id)
        .ok_or_else(|| text(404, format!("Object Not Found: {id}")))?;
    let info = type_info(&obj.type_name).map_err(|e| db_err(&e))?;
    let position = req.q("position");
    let mut out = Map::new();
    for field in fields.split(',').filter(|f| !f.is_empty()) {
        let prop = info
            .prop(field)
            .filter(|p| p.collection != schema::PropCollection::None)
            .ok_or_else(|| {
                bad(format!(
                    "{field} neither \"ListProperty\" nor \"MapProperty\""
                ))
            })?;
        let items: Vec<Value> = match prop.collection {
            schema::PropCollection::List { wrapper } => obj
                .fields
                .get(field)
                .and_then(|v| v.get(wrapper))
                .and_then(Value::as_array)
                .map(|a| {
                    a.iter()
                        .enumerate()
                        .filter(|(i, _)| position.is_none_or(|p| p == i.to_string()))
                        .map(|(i, v)| json!([v, i.to_string()]))
                        .collect()
                })
                .unwrap_or_default(),
            schema::PropCollection::Map { wrapper, key } => obj
                .fields
                .get(field)
                .and_then(|v| v.get(wrapper))
                .and_then(Value::as_array)
                .map(|a| {
                    a.iter()
                        .filter(|v| {
                            position.is_none_or(|p| v.get(key).and_then(Value::as_str) == Some(p))
                        })
                        .map(|v| json!([v, v.get(key).cloned().unwrap_or(Value::Null)]))
                        .collect()
                })
                .unwrap_or_default(),
            schema::PropCollection::None => Vec::new(),
        };
        out.insert(field.to_owned(), Value::Array(items));
    }
    Ok(json_ok(&Value::Object(out)))
}

fn chown(app: &AppState, req: &Req) -> HandlerResult {
    let body = req.json()?;
    let id = str_field(&body, "uuid")
        .ok_or_else(|| bad("Bad Request, no resource UUID provided to chown"))?;
    let owner = str_field(&body, "owner")
        .ok_or_else(|| bad("Bad Request, no owner UUID provided to chown"))?;
    let obj = app
        .db
        .get(id)
        .ok_or_else(|| text(404, format!("ID {id} does not exist")))?;
    let mut perms2 = obj
        .fields
        .get("perms2")
        .cloned()
        .unwrap_or_else(|| json!({}));
    perms2["owner"] = json!(owner);
    app.db
        .update_json(&obj.type_name, id, json!({"perms2": perms2}))
        .map_err(|e| db_err(&e))?;
    Ok(json_ok(&json!({})))
}

fn chmod(app: &AppState, req: &Req) -> HandlerResult {
    let body = req.json()?;
    let id = str_field(&body, "uuid").ok_or_else(|| bad("Bad Request, invalid object id"))?;
    let obj = app
        .db
        .get(id)
        .ok_or_else(|| text(404, format!("ID {id} does not exist")))?;
    let mut perms2 = obj
        .fields
        .get("perms2")
        .cloned()
        .unwrap_or_else(|| json!({}));
    for key in ["owner", "owner_access", "global_access", "share"] {
        if let Some(v) = body.get(key).filter(|v| !v.is_null()) {
            perms2[key] = v.clone();
        }
    }
    app.db
        .update_json(&obj.type_name, id, json!({"perms2": perms2}))
        .map_err(|e| db_err(&e))?;
    Ok(json_ok(&json!({})))
}

fn useragent_kv(app: &AppState, req: &Req) -> HandlerResult {
    let body = req.json()?;
    let op = str_field(&body, "operation")
        .ok_or_else(|| bad("Error: Key/value store API needs 'operation' parameter"))?;
    let key = str_field(&body, "key")
        .ok_or_else(|| bad("Error: Key/value store API needs 'key' parameter"))?;
    match op {
        "STORE" => {
            app.db
                .kv_store(key, str_field(&body, "value").unwrap_or(""));
            Ok(json_ok(&Value::Null))
        }
        "RETRIEVE" => app
            .db
            .kv_retrieve(key)
            .map(|v| json_ok(&json!({"value": v})))
            .ok_or_else(|| text(404, format!("Unknown User-Agent key {key}"))),
        "DELETE" => {
            app.db.kv_delete(key);
            Ok(json_ok(&Value::Null))
        }
        other => Err(text(404, format!("Invalid Operation {other}"))),
    }
}

fn aaa_mode_put(app: &AppState, req: &Req) -> HandlerResult {
    let body = req.json()?;
    let mode = str_field(&body, "aaa-mode")
        .and_then(AaaMode::parse)
        .ok_or_else(|| bad("Invalid aaa-mode"))?;
    {
        let mut cfg = app.auth.write().unwrap_or_else(PoisonError::into_inner);
        if cfg.aaa_mode != AaaMode::NoAuth {
            let identity = rbac::authenticate(&cfg, &req.headers).map_err(|(s, m)| text(s, m))?;
            if !identity.roles.iter().any(|r| *r == cfg.cloud_admin_role) {
                return Err(text(403, " Permission denied"));
            }
        }
        cfg.aaa_mode = mode;
    }
    if mode == AaaMode::Rbac {
        app.db.ensure_default_rbac_rules();
    }
    Ok(json_ok(&json!({"aaa-mode": mode.as_str()})))
}

// ---------------------------------------------------------------------------------------
// Change stream

fn watch_stream(app: &Arc<AppState>, req: &Req) -> HandlerResult {
    let since = match req.q("since").or_else(|| {
        req.headers
            .get("last-event-id")
            .and_then(|v| v.to_str().ok())
    }) {
        Some(s) => Some(s.trim().parse::<u64>().map_err(|_| {
            bad(format!(
                "Bad Request, since must be a sequence number, got '{s}'"
            ))
        })?),
        None => None,
    };
    let types: Option<Vec<String>> = req.q("resource_type").map(|t| {
        t.split(',')
            .filter(|s| !s.is_empty())
            .map(|s| s.trim().replace('_', "-"))
            .collect()
    });
    if let Some(ts) = &types
        && let Some(unknown) = ts.iter().find(|t| schema::resource(t).is_none())
    {
        return Err(text(404, format!("Resource type '{unknown}' not found")));
    }
    let sub = app.db.subscribe(since).map_err(|e| match e {
        WatchError::Truncated { .. } => text(410, e.to_string()),
        WatchError::Closed => text(503, e.to_string()),
    })?;
    let start = sub.last_seq();
    let stop = app.stop.clone();
    let init = Event::default()
        .event("init")
        .data(json!({"seq": start}).to_string());
    let events = change_events(sub, types, stop);
    let stream = stream::once(async move { Ok::<Event, std::convert::Infallible>(init) })
        .chain_events(events);
    Ok(Sse::new(stream)
        .keep_alive(KeepAlive::default())
        .into_response())
}

trait ChainEvents: Stream + Sized {
    fn chain_events<S: Stream<Item = Self::Item>>(self, other: S) -> stream::Chain<Self, S> {
        futures_util::StreamExt::chain(self, other)
    }
}

impl<T: Stream> ChainEvents for T {}

fn change_events(
    sub: crate::change::Subscription,
    types: Option<Vec<String>>,
    stop: watch::Receiver<bool>,
) -> impl Stream<Item = Result<Event, std::convert::Infallible>> {
    stream::unfold(
        (sub, types, stop, false),
        |(mut sub, types, mut stop, ended)| async move {
            if ended {
                return None;
            }
            loop {
                let next = tokio::select! {
                    c = sub.next() => c,
                    _ = stop.wait_for(|s| *s) => return None,
                };
                match next {
                    Ok(c) => {
                        if types.as_ref().is_some_and(|ts| !ts.contains(&c.type_name)) {
                            continue;
                        }
                        let data = serde_json::to_string(&*c).unwrap_or_default();
                        let ev = Event::default()
                            .id(c.seq.to_string())
                            .event(c.kind.as_str())
                            .data(data);
                        return Some((Ok(ev), (sub, types, stop, false)));
                    }
                    Err(e) => {
                        let ev = Event::default().event("error").data(e.to_string());
                        return Some((Ok(ev), (sub, types, stop, true)));
                    }
                }
            }
        },
    )
}
