//! The HTTP front: path routing like kube-apiserver's RequestInfo, authentication,
//! impersonation, authorization, content negotiation (JSON, Table, aggregated discovery),
//! bodies, and watch streams.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::ws::WebSocketUpgrade;
use axum::extract::{FromRequestParts, State};
use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Method, Request, Response, StatusCode, header};
use http_body_util::BodyExt;
use serde_json::{Value, json};

use crate::apiserver::{PatchType, Shared, WriteOptions};
use crate::auth::{self, Attributes, UserInfo};
use crate::discovery;
use crate::exec::{ExecRequest, serve_exec};
use crate::registry::ResourceType;
use crate::selector::{FieldSelector, LabelSelector, supported_fields};
use crate::status::ApiError;
use crate::store::{EventType, StoreEvent, WatchStart, bookmark_line, watch_line};
use crate::table::{self, IncludeObject};
use crate::util::{meta_str, parse_query};

/// Builds the router serving the whole API.
pub(crate) fn router(shared: Arc<Shared>) -> Router {
    Router::new().fallback(handle).with_state(shared)
}

type Resp = Response<Body>;

fn json_response(code: u16, v: &Value) -> Resp {
    let mut body = Vec::with_capacity(1024);
    crate::util::write_json(&mut body, v);
    bytes_response(code, "application/json", Bytes::from(body))
}

fn bytes_response(code: u16, content_type: &str, body: Bytes) -> Resp {
    let mut r = Response::new(Body::from(body));
    *r.status_mut() = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    if let Ok(v) = HeaderValue::from_str(content_type) {
        r.headers_mut().insert(header::CONTENT_TYPE, v);
    }
    r
}

fn status_response(e: &ApiError) -> Resp {
    json_response(e.code, &e.to_status())
}

async fn handle(State(shared): State<Arc<Shared>>, req: Request<Body>) -> Resp {
    let (mut parts, body) = req.into_parts();
    match dispatch(&shared, &mut parts, body).await {
        Ok(r) => r,
        Err(e) => status_response(&e),
    }
}

fn header_str<'a>(h: &'a HeaderMap, name: &str) -> &'a str {
    h.get(name).and_then(|v| v.to_str().ok()).unwrap_or("")
}

fn authenticate(shared: &Shared, headers: &HeaderMap) -> Result<UserInfo, ApiError> {
    let Some(value) = headers.get(header::AUTHORIZATION) else {
        return Ok(match shared.config.unauthenticated {
            crate::Unauthenticated::Admin => crate::admin_user(),
            crate::Unauthenticated::Anonymous => UserInfo::anonymous(),
        });
    };
    let value = value.to_str().map_err(|_| ApiError::unauthorized())?.trim();
    let token = match value.split_once(' ') {
        Some((scheme, t)) if scheme.eq_ignore_ascii_case("bearer") => t.trim(),
        _ => return Err(ApiError::unauthorized()),
    };
    if token == shared.config.admin_token {
        return Ok(crate::admin_user());
    }
    shared
        .config
        .tokens
        .iter()
        .find(|t| t.token == token)
        .map(|t| t.user_info())
        .ok_or_else(ApiError::unauthorized)
}

fn impersonate(
    shared: &Shared,
    requester: UserInfo,
    headers: &HeaderMap,
) -> Result<UserInfo, ApiError> {
    let user = header_str(headers, "impersonate-user").to_string();
    let groups: Vec<String> = headers
        .get_all("impersonate-group")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .map(str::to_string)
        .collect();
    let uid = header_str(headers, "impersonate-uid").to_string();
    let mut extra: std::collections::BTreeMap<String, Vec<String>> = Default::default();
    for (name, value) in headers {
        if let Some(key) = name.as_str().strip_prefix("impersonate-extra-")
            && let Ok(v) = value.to_str()
        {
            extra
                .entry(crate::util::percent_decode(key))
                .or_default()
                .push(v.to_string());
        }
    }
    if user.is_empty() {
        if !groups.is_empty() || !uid.is_empty() || !extra.is_empty() {
            return Err(ApiError::bad_request(
                "requested impersonation of groups, uid or extra without impersonating a user",
            ));
        }
        return Ok(requester);
    }
    let check =
        |group: &str, resource: &str, sub: &str, ns: &str, name: &str| -> Result<(), ApiError> {
            let a = Attributes {
                user: requester.clone(),
                verb: "impersonate".into(),
                resource_request: true,
                namespace: ns.into(),
                api_group: group.into(),
                resource: resource.into(),
                subresource: sub.into(),
                name: name.into(),
                path: String::new(),
            };
            let d = auth::authorize(&shared.store, &a);
            if d.allowed {
                Ok(())
            } else {
                Err(ApiError::forbidden(auth::forbidden_message(&a, "")))
            }
        };
    let mut out_groups = groups.clone();
    if let Some(rest) = user.strip_prefix("system:serviceaccount:") {
        let (ns, name) = rest.split_once(':').unwrap_or(("", rest));
        check("", "serviceaccounts", "", ns, name)?;
        for g in [
            "system:serviceaccounts".to_string(),
            format!("system:serviceaccounts:{ns}"),
        ] {
            if !out_groups.contains(&g) {
                out_groups.push(g);
            }
        }
    } else {
        check("", "users", "", "", &user)?;
    }
    for g in &groups {
        check("", "groups", "", "", g)?;
    }
    if !uid.is_empty() {
        check("authentication.k8s.io", "uids", "", "", &uid)?;
    }
    for (k, vs) in &extra {
        for v in vs {
            check("authentication.k8s.io", "userextras", k, "", v)?;
        }
    }
    if user != "system:anonymous" && !out_groups.iter().any(|g| g == "system:authenticated") {
        out_groups.push("system:authenticated".into());
    }
    Ok(UserInfo {
        name: user,
        uid,
        groups: out_groups,
        extra,
    })
}

/// What a resource path names.
#[derive(Debug, Clone, Default)]
struct ResourcePath {
    group: String,
    version: String,
    namespace: Option<String>,
    resource: String,
    name: Option<String>,
    subresource: Option<String>,
}

/// Splits `/api/v1/...` and `/apis/g/v/...` like upstream RequestInfoFactory.
fn parse_resource_path(segs: &[&str]) -> Option<(ResourcePath, bool)> {
    let (group, version, rest) = match segs {
        ["api", v, rest @ ..] => ("", *v, rest),
        ["apis", g, v, rest @ ..] => (*g, *v, rest),
        _ => return None,
    };
    let (watch_prefix, mut rest) = match rest {
        ["watch", r @ ..] => (true, r),
        r => (false, r),
    };
    let mut p = ResourcePath {
        group: group.into(),
        version: version.into(),
        ..Default::default()
    };
    if rest.first() == Some(&"namespaces") && rest.len() >= 2 {
        let ns = rest[1];
        if rest.len() > 2 && !matches!(rest[2], "status" | "finalize") {
            p.namespace = Some(ns.to_string());
            rest = &rest[2..];
        }
    }
    match rest {
        [r] => p.resource = r.to_string(),
        [r, n] => {
            p.resource = r.to_string();
            p.name = Some(n.to_string());
        }
        [r, n, s] => {
            p.resource = r.to_string();
            p.name = Some(n.to_string());
            p.subresource = Some(s.to_string());
        }
        _ => return None,
    }
    if p.resource.is_empty() || p.name.as_deref() == Some("") {
        return None;
    }
    Some((p, watch_prefix))
}

async fn read_body(shared: &Shared, body: Body) -> Result<Bytes, ApiError> {
    let limited = http_body_util::Limited::new(body, shared.config.max_request_bytes);
    match limited.collect().await {
        Ok(c) => Ok(c.to_bytes()),
        Err(e)
            if e.downcast_ref::<http_body_util::LengthLimitError>()
                .is_some() =>
        {
            Err(ApiError::too_large())
        }
        Err(e) => Err(ApiError::bad_request(format!(
            "failed to read the request body: {e}"
        ))),
    }
}

fn parse_body(bytes: &[u8], content_type: &str) -> Result<Value, ApiError> {
    let base = content_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    if base.contains("protobuf") {
        return crate::protobuf::decode(bytes).map_err(|why| {
            let mut e = ApiError::unsupported_media_type(content_type);
            e.message = format!("{}: {why}", e.message);
            e
        });
    }
    if base.contains("cbor") {
        return Err(ApiError::unsupported_media_type(content_type));
    }
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(ApiError::bad_request(
            "the request body is empty; send a JSON object",
        ));
    }
    match serde_json::from_slice::<Value>(bytes) {
        Ok(v) => Ok(v),
        Err(json_err) => {
            if base.contains("yaml") {
                let text = std::str::from_utf8(bytes)
                    .map_err(|_| ApiError::bad_request("the YAML body is not valid UTF-8"))?;
                serde_saphyr::from_str::<Value>(text)
                    .map_err(|e| ApiError::bad_request(format!("error decoding YAML: {e}")))
            } else {
                Err(ApiError::bad_request(format!(
                    "couldn't get version/kind; json parse error: {json_err}"
                )))
            }
        }
    }
}

fn param<'a>(q: &'a [(String, String)], k: &str) -> Option<&'a str> {
    q.iter()
        .rev()
        .find(|(key, _)| key == k)
        .map(|(_, v)| v.as_str())
}

fn bool_param(q: &[(String, String)], k: &str) -> bool {
    matches!(param(q, k), Some("true" | "1" | "True"))
}

fn wants_table(headers: &HeaderMap) -> bool {
    header_str(headers, "accept").contains("as=Table")
}

fn field_manager(q: &[(String, String)], headers: &HeaderMap) -> String {
    match param(q, "fieldManager") {
        Some(m) if !m.is_empty() => m.to_string(),
        _ => {
            let ua = header_str(headers, "user-agent");
            let m = ua.split('/').next().unwrap_or("").trim();
            if m.is_empty() {
                "unknown".into()
            } else {
                m.chars().take(128).collect()
            }
        }
    }
}

async fn dispatch(
    shared: &Arc<Shared>,
    parts: &mut http::request::Parts,
    body: Body,
) -> Result<Resp, ApiError> {
    crate::controllers::ensure_started(shared);
    let path = parts.uri.path().to_string();
    let query = parse_query(parts.uri.query());
    let requester = authenticate(shared, &parts.headers)?;
    let user = impersonate(shared, requester, &parts.headers)?;
    let segs: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();

    if let Some((rp, watch_prefix)) = parse_resource_path(&segs) {
        return resource_request(shared, parts, body, &query, user, rp, watch_prefix).await;
    }

    // Non-resource requests.
    let verb = parts.method.as_str().to_ascii_lowercase();
    let attrs = Attributes {
        user,
        verb,
        resource_request: false,
        path: path.clone(),
        ..Default::default()
    };
    let decision = auth::authorize(&shared.store, &attrs);
    if !decision.allowed {
        return Err(ApiError::forbidden(auth::forbidden_message(&attrs, "")));
    }
    if parts.method != Method::GET && parts.method != Method::HEAD {
        return Err(ApiError::method_not_allowed(format!(
            "{} is not supported on {path}",
            parts.method
        )));
    }
    let reg = shared.registry();
    let aggregated = header_str(&parts.headers, "accept").contains("as=APIGroupDiscoveryList");
    match segs.as_slice() {
        [] => {
            let mut paths = vec![
                "/api".to_string(),
                "/api/v1".into(),
                "/apis".into(),
                "/healthz".into(),
                "/livez".into(),
                "/openapi/v2".into(),
                "/openapi/v3".into(),
                "/readyz".into(),
                "/version".into(),
            ];
            for (g, vs) in reg.groups() {
                if !g.is_empty() {
                    paths.push(format!("/apis/{g}"));
                    paths.extend(vs.iter().map(|v| format!("/apis/{g}/{v}")));
                }
            }
            Ok(json_response(200, &json!({"paths": paths})))
        }
        ["version"] => Ok(json_response(200, &discovery::version_info())),
        ["healthz" | "livez" | "readyz", ..] => Ok(bytes_response(
            200,
            "text/plain; charset=utf-8",
            Bytes::from_static(b"ok"),
        )),
        ["api"] if aggregated => Ok(bytes_response(
            200,
            discovery::AGGREGATED_CONTENT_TYPE,
            Bytes::from(discovery::aggregated(&reg, true).to_string()),
        )),
        ["api"] => {
            let host = header_str(&parts.headers, "host");
            Ok(json_response(
                200,
                &discovery::api_versions(if host.is_empty() { "127.0.0.1" } else { host }),
            ))
        }
        ["apis"] if aggregated => Ok(bytes_response(
            200,
            discovery::AGGREGATED_CONTENT_TYPE,
            Bytes::from(discovery::aggregated(&reg, false).to_string()),
        )),
        ["apis"] => Ok(json_response(200, &discovery::group_list(&reg))),
        ["apis", g] => discovery::group(&reg, g)
            .map(|v| json_response(200, &v))
            .ok_or_else(|| ApiError::unknown_path(&path)),
        ["api", v] => discovery::resource_list(&reg, "", v)
            .map(|d| json_response(200, &d))
            .ok_or_else(|| ApiError::unknown_path(&path)),
        ["apis", g, v] => discovery::resource_list(&reg, g, v)
            .map(|d| json_response(200, &d))
            .ok_or_else(|| ApiError::unknown_path(&path)),
        ["openapi", "v3"] => Ok(json_response(200, &discovery::openapi_index(&reg))),
        ["openapi", "v3", "api", v] => discovery::openapi_gv(&reg, "", v)
            .map(|d| json_response(200, &d))
            .ok_or_else(|| ApiError::unknown_path(&path)),
        ["openapi", "v3", "apis", g, v] => discovery::openapi_gv(&reg, g, v)
            .map(|d| json_response(200, &d))
            .ok_or_else(|| ApiError::unknown_path(&path)),
        _ => Err(ApiError::unknown_path(&path)),
    }
}

#[allow(clippy::too_many_arguments)]
async fn resource_request(
    shared: &Arc<Shared>,
    parts: &mut http::request::Parts,
    body: Body,
    query: &[(String, String)],
    user: UserInfo,
    rp: ResourcePath,
    watch_prefix: bool,
) -> Result<Resp, ApiError> {
    let rt = shared
        .lookup(&rp.group, &rp.version, &rp.resource)
        .ok_or_else(|| ApiError::unknown_path(parts.uri.path()))?;
    // Namespaces are addressed as cluster-scoped items; `/namespaces/x` has namespace x for RBAC.
    let (namespace, name) = match (&rp.namespace, &rp.name) {
        (Some(ns), n) if rt.namespaced => (ns.clone(), n.clone()),
        (Some(_), _) => return Err(ApiError::unknown_path(parts.uri.path())),
        (None, n) => (String::new(), n.clone()),
    };
    let sub = rp.subresource.clone().unwrap_or_default();
    if !sub.is_empty() && !rt.subresources.contains(&sub) {
        return Err(ApiError::unknown_path(parts.uri.path()));
    }
    let watch = watch_prefix || bool_param(query, "watch");
    let is_exec = sub == "exec";
    let verb = match (&parts.method, name.is_some()) {
        (m, _) if is_exec && (m == Method::GET || m == Method::POST) => "create",
        (&Method::GET, _) if watch => "watch",
        (&Method::GET, true) => "get",
        (&Method::GET, false) => "list",
        (&Method::HEAD, true) => "get",
        (&Method::POST, _) => "create",
        (&Method::PUT, true) => "update",
        (&Method::PATCH, true) => "patch",
        (&Method::DELETE, true) => "delete",
        (&Method::DELETE, false) => "deletecollection",
        (m, _) => {
            return Err(ApiError::method_not_allowed(format!(
                "the server does not allow this method on the requested resource ({m})"
            )));
        }
    };
    if !rt.verbs.iter().any(|v| v == verb)
        && sub.is_empty()
        && !(verb == "watch" && rt.verbs.iter().any(|v| v == "list"))
    {
        return Err(ApiError::method_not_allowed(
            "the server does not allow this method on the requested resource",
        ));
    }
    let rbac_ns = if rt.plural == "namespaces" && rp.group.is_empty() {
        name.clone().unwrap_or_default()
    } else {
        namespace.clone()
    };
    let attrs = Attributes {
        user: user.clone(),
        verb: verb.into(),
        resource_request: true,
        namespace: rbac_ns,
        api_group: rt.group.clone(),
        resource: rt.plural.clone(),
        subresource: sub.clone(),
        name: name.clone().unwrap_or_default(),
        path: parts.uri.path().to_string(),
    };
    let decision = auth::authorize(&shared.store, &attrs);
    if !decision.allowed {
        let mut e = ApiError::forbidden(auth::forbidden_message(&attrs, ""));
        e.details = Some(json!({"name": attrs.name, "group": rt.group, "kind": rt.plural}));
        return Err(e);
    }

    let version = rp.version.clone();
    let labels = match param(query, "labelSelector") {
        Some(s) => LabelSelector::parse(s)
            .map_err(|e| ApiError::bad_request(format!("unable to parse requirement: {e}")))?,
        None => LabelSelector::default(),
    };
    let fields = match param(query, "fieldSelector") {
        Some(s) => {
            FieldSelector::parse(s, supported_fields(&rt.group, &rt.plural)).map_err(|e| {
                ApiError::bad_request(format!("\"{s}\" is not a known field selector: {e}"))
            })?
        }
        None => FieldSelector::default(),
    };
    let mut opts = WriteOptions {
        dry_run: param(query, "dryRun").is_some_and(|d| d == "All"),
        field_manager: field_manager(query, &parts.headers),
        force: bool_param(query, "force"),
        subresource: sub.clone(),
        user: user.clone(),
        strict: param(query, "fieldValidation") == Some("Strict"),
    };
    let ns_opt = if rt.namespaced && rp.namespace.is_some() {
        Some(namespace.as_str())
    } else {
        None
    };

    if is_exec {
        return exec_request(
            shared,
            parts,
            query,
            &namespace,
            name.as_deref().unwrap_or(""),
        )
        .await;
    }

    match (parts.method.clone(), name.as_deref()) {
        (Method::GET, _) if watch => watch_response(
            shared,
            &rt,
            &version,
            ns_opt,
            name.as_deref(),
            labels,
            fields,
            query,
            wants_table(&parts.headers),
        ),
        (Method::GET | Method::HEAD, Some(n)) => {
            if !sub.is_empty() && sub != "status" {
                return Err(ApiError::method_not_allowed(format!(
                    "GET is not supported on {}/{sub} by kube-sim",
                    rt.plural
                )));
            }
            let obj = shared.get(&rt, &version, &namespace, n)?;
            if wants_table(&parts.headers) {
                let rv = meta_str(&obj, "resourceVersion").unwrap_or("").to_string();
                return Ok(json_response(
                    200,
                    &table::table(
                        &rt,
                        &[obj],
                        &rv,
                        None,
                        IncludeObject::parse(param(query, "includeObject")),
                    ),
                ));
            }
            Ok(json_response(200, &obj))
        }
        (Method::GET, None) => {
            let limit = param(query, "limit").and_then(|l| l.parse::<usize>().ok());
            let list = shared.list(
                &rt,
                &version,
                ns_opt,
                &labels,
                &fields,
                limit,
                param(query, "continue"),
            )?;
            let rev = list.revision.to_string();
            if wants_table(&parts.headers) {
                let t = table::table(
                    &rt,
                    &list.items,
                    &rev,
                    list.continue_token.as_deref(),
                    IncludeObject::parse(param(query, "includeObject")),
                );
                return Ok(json_response(200, &t));
            }
            Ok(list_response(
                &rt,
                &version,
                &rev,
                list.continue_token.as_deref(),
                list.remaining,
                &list.items,
            ))
        }
        (Method::POST, target) => {
            let bytes = read_body(shared, body).await?;
            let value = parse_body(&bytes, header_str(&parts.headers, "content-type"))?;
            if sub == "binding" {
                let pod = target.unwrap_or("");
                let out = shared.bind(&namespace, pod, &value, &opts)?;
                return Ok(json_response(201, &out));
            }
            if target.is_some() {
                return Err(ApiError::method_not_allowed(
                    "POST is only allowed on collections",
                ));
            }
            let out = shared.create(&rt, &version, &namespace, value, &opts)?;
            Ok(json_response(201, &out))
        }
        (Method::PUT, Some(n)) => {
            let bytes = read_body(shared, body).await?;
            let value = parse_body(&bytes, header_str(&parts.headers, "content-type"))?;
            if sub == "finalize" {
                // Namespace finalize: only spec.finalizers change.
                let fin = value
                    .get("spec")
                    .and_then(|s| s.get("finalizers"))
                    .cloned()
                    .unwrap_or(json!([]));
                opts.subresource.clear();
                let out = shared
                    .modify(&rt.group_resource(), "", n, "", &opts.field_manager, |o| {
                        if let Value::Object(m) = o {
                            crate::util::obj_entry(m, "spec").insert("finalizers".into(), fin);
                        }
                    })?
                    .ok_or_else(|| ApiError::not_found(&rt.group, &rt.plural, n))?;
                return Ok(json_response(200, &out));
            }
            let out = shared.update(&rt, &version, &namespace, n, value, &opts)?;
            Ok(json_response(200, &out))
        }
        (Method::PATCH, Some(n)) => {
            let ct = header_str(&parts.headers, "content-type").to_string();
            let ty = PatchType::from_content_type(&ct)
                .ok_or_else(|| ApiError::unsupported_media_type(&ct))?;
            let bytes = read_body(shared, body).await?;
            let value = parse_body(
                &bytes,
                if ty == PatchType::Apply {
                    "application/yaml"
                } else {
                    &ct
                },
            )?;
            let (out, created) = shared.patch(&rt, &version, &namespace, n, ty, value, &opts)?;
            Ok(json_response(if created { 201 } else { 200 }, &out))
        }
        (Method::DELETE, Some(n)) => {
            let bytes = read_body(shared, body).await?;
            let options = if bytes.iter().all(u8::is_ascii_whitespace) {
                Value::Null
            } else {
                parse_body(&bytes, "application/json")?
            };
            if dotted_str(&options, "dryRun").is_some()
                || options
                    .get("dryRun")
                    .and_then(Value::as_array)
                    .is_some_and(|a| !a.is_empty())
            {
                opts.dry_run = true;
            }
            let out = shared.delete(&rt, &version, &namespace, n, &options, &opts)?;
            Ok(json_response(200, &out))
        }
        (Method::DELETE, None) => {
            let items = shared.delete_collection(&rt, &version, ns_opt, &labels, &fields, &opts)?;
            let rev = shared.store.revision().to_string();
            Ok(list_response(&rt, &version, &rev, None, None, &items))
        }
        (m, _) => Err(ApiError::method_not_allowed(format!(
            "{m} is not supported on this path"
        ))),
    }
}

fn dotted_str<'a>(v: &'a Value, k: &str) -> Option<&'a str> {
    v.get(k).and_then(Value::as_str)
}

fn list_response(
    rt: &ResourceType,
    version: &str,
    rev: &str,
    cont: Option<&str>,
    remaining: Option<usize>,
    items: &[Arc<Value>],
) -> Resp {
    let mut meta = json!({"resourceVersion": rev});
    if let Some(c) = cont {
        meta["continue"] = json!(c);
    }
    if let Some(r) = remaining {
        meta["remainingItemCount"] = json!(r);
    }
    let mut buf = Vec::with_capacity(64 + items.len() * 1024);
    buf.extend_from_slice(b"{\"kind\":\"");
    buf.extend_from_slice(format!("{}List", rt.kind).as_bytes());
    buf.extend_from_slice(b"\",\"apiVersion\":");
    let _ = serde_json::to_writer(&mut buf, &rt.api_version(version));
    buf.extend_from_slice(b",\"metadata\":");
    let _ = serde_json::to_writer(&mut buf, &meta);
    buf.extend_from_slice(b",\"items\":[");
    for (i, it) in items.iter().enumerate() {
        if i > 0 {
            buf.push(b',');
        }
        crate::util::write_json(&mut buf, it);
    }
    buf.extend_from_slice(b"]}");
    bytes_response(200, "application/json", Bytes::from(buf))
}

async fn exec_request(
    shared: &Arc<Shared>,
    parts: &mut http::request::Parts,
    query: &[(String, String)],
    ns: &str,
    pod: &str,
) -> Result<Resp, ApiError> {
    let rt = shared
        .lookup("", "v1", "pods")
        .ok_or_else(|| ApiError::internal("pods are not registered"))?;
    let obj = shared.get(&rt, "v1", ns, pod)?;
    let containers: Vec<String> = crate::util::dotted(&obj, "spec.containers")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|c| c.get("name").and_then(Value::as_str).map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    let container = match param(query, "container") {
        Some(c) if !c.is_empty() => {
            if !containers.iter().any(|x| x == c) {
                return Err(ApiError::bad_request(format!(
                    "container {c} is not valid for pod {pod}"
                )));
            }
            c.to_string()
        }
        _ if containers.len() == 1 => containers[0].clone(),
        _ => {
            return Err(ApiError::bad_request(format!(
                "a container name must be specified for pod {pod}, choose one of: [{}]",
                containers.join(" ")
            )));
        }
    };
    let command: Vec<String> = query
        .iter()
        .filter(|(k, _)| k == "command")
        .map(|(_, v)| v.clone())
        .collect();
    if command.is_empty() {
        return Err(ApiError::bad_request("you must specify at least 1 command"));
    }
    let request = ExecRequest {
        namespace: ns.to_string(),
        pod: pod.to_string(),
        container,
        command,
        stdin: bool_param(query, "stdin"),
        tty: bool_param(query, "tty"),
        pod_object: crate::util::expanded(&obj),
    };
    let offered = header_str(&parts.headers, "sec-websocket-protocol").to_string();
    let upgrade = WebSocketUpgrade::from_request_parts(parts, &())
        .await
        .map_err(|_| ApiError::bad_request("Upgrade request required: pods/exec is served over WebSocket (v5.channel.k8s.io or v4.channel.k8s.io)"))?;
    let protocols: Vec<&str> = offered.split(',').map(str::trim).collect();
    let chosen = ["v5.channel.k8s.io", "v4.channel.k8s.io"]
        .into_iter()
        .find(|p| protocols.contains(p))
        .ok_or_else(|| ApiError::bad_request(format!("none of the offered WebSocket subprotocols ({offered}) is supported; use v5.channel.k8s.io or v4.channel.k8s.io")))?;
    let v5 = chosen.starts_with("v5");
    let handler = shared.exec_handler();
    let resp = upgrade
        .protocols([chosen])
        .on_upgrade(move |socket| serve_exec(socket, handler, request, v5));
    Ok(resp.map(Body::new))
}

/// State of one watch stream.
struct WatchState {
    shared: Arc<Shared>,
    rt: Arc<ResourceType>,
    version: String,
    namespace: Option<String>,
    name: Option<String>,
    labels: LabelSelector,
    fields: FieldSelector,
    queue: std::collections::VecDeque<Bytes>,
    rx: tokio::sync::broadcast::Receiver<Arc<StoreEvent>>,
    last_rev: u64,
    deadline: tokio::time::Instant,
    bookmarks: Option<tokio::time::Interval>,
    table: bool,
    done: bool,
}

impl WatchState {
    fn matches(&self, obj: &Value) -> bool {
        if let Some(ns) = &self.namespace
            && meta_str(obj, "namespace") != Some(ns.as_str())
        {
            return false;
        }
        if let Some(n) = &self.name
            && meta_str(obj, "name") != Some(n.as_str())
        {
            return false;
        }
        self.labels.matches_object(obj) && self.fields.matches(obj)
    }

    fn line(&self, kind: &str, obj: &Arc<Value>, shared_line: Option<Bytes>) -> Bytes {
        if self.table {
            let t = table::table(
                &self.rt,
                std::slice::from_ref(obj),
                meta_str(obj, "resourceVersion").unwrap_or(""),
                None,
                IncludeObject::Metadata,
            );
            return watch_line(kind, &t);
        }
        let presented = Shared::present(&self.rt, &self.version, obj);
        match shared_line {
            Some(l) if Arc::ptr_eq(&presented, obj) => l,
            _ => watch_line(kind, &presented),
        }
    }

    /// Turns a store event into this watcher's view (selector transitions become ADDED/DELETED).
    fn consider(&mut self, ev: &Arc<StoreEvent>) {
        if ev.revision <= self.last_rev {
            return;
        }
        self.last_rev = ev.revision;
        if ev.resource.group != self.rt.group || ev.resource.resource != self.rt.plural {
            return;
        }
        let now = self.matches(&ev.object);
        let before = ev.previous.as_ref().is_some_and(|p| self.matches(p));
        let kind = match ev.kind {
            EventType::Added if now => "ADDED",
            EventType::Modified if now && before => "MODIFIED",
            EventType::Modified if now => "ADDED",
            EventType::Modified if before => "DELETED",
            EventType::Deleted if now => "DELETED",
            _ => return,
        };
        let shared_line = if kind == ev.kind.as_str() {
            Some(ev.watch_line())
        } else {
            None
        };
        let l = self.line(kind, &ev.object, shared_line);
        self.queue.push_back(l);
    }

    fn expired_line(oldest: u64, requested: u64) -> Bytes {
        let e = ApiError::gone(format!("too old resource version: {requested} ({oldest})"));
        watch_line("ERROR", &e.to_status())
    }
}

#[allow(clippy::too_many_arguments)]
fn watch_response(
    shared: &Arc<Shared>,
    rt: &Arc<ResourceType>,
    version: &str,
    namespace: Option<&str>,
    name: Option<&str>,
    labels: LabelSelector,
    fields: FieldSelector,
    query: &[(String, String)],
    table: bool,
) -> Result<Resp, ApiError> {
    let rv_param = param(query, "resourceVersion").unwrap_or("");
    let send_initial = bool_param(query, "sendInitialEvents");
    let timeout = param(query, "timeoutSeconds")
        .and_then(|t| t.parse::<u64>().ok())
        .filter(|t| *t > 0)
        .unwrap_or(1800);
    let bookmarks_on = bool_param(query, "allowWatchBookmarks");
    let requested: Option<u64> =
        if rv_param.is_empty() || rv_param == "0" {
            None
        } else {
            Some(rv_param.parse().map_err(|_| {
                ApiError::bad_request(format!("invalid resource version {rv_param:?}"))
            })?)
        };
    let mut queue = std::collections::VecDeque::new();
    let (rx, last_rev, replay) = match requested {
        Some(rev) if !send_initial => {
            let (start, rx) = shared.store.watch_from(rev);
            match start {
                WatchStart::Expired { oldest } => {
                    queue.push_back(WatchState::expired_line(oldest, rev));
                    (rx, rev, Vec::new())
                }
                WatchStart::Replay(evs) => (rx, rev, evs),
            }
        }
        _ => {
            // Start "now": synthetic ADDED events for the current state, then live changes.
            let state = shared.store.lock();
            let rx = shared.store.subscribe();
            let rev = state.revision;
            let objs = state
                .objects
                .get(&rt.group_resource())
                .map(|m| m.values().cloned().collect::<Vec<_>>())
                .unwrap_or_default();
            drop(state);
            (
                rx,
                rev,
                objs.into_iter()
                    .map(|o| Arc::new(StoreEvent::synthetic_added(rt, o)))
                    .collect(),
            )
        }
    };
    let expired = !queue.is_empty();
    let mut st = WatchState {
        shared: shared.clone(),
        rt: rt.clone(),
        version: version.to_string(),
        namespace: namespace.map(str::to_string),
        name: name.map(str::to_string),
        labels,
        fields,
        queue,
        rx,
        last_rev,
        deadline: tokio::time::Instant::now() + Duration::from_secs(timeout),
        bookmarks: None,
        table,
        done: expired,
    };
    if !expired {
        let synthetic = requested.is_none() || send_initial;
        for ev in &replay {
            if synthetic {
                // Initial state: every matching object as ADDED, at the snapshot revision.
                if st.matches(&ev.object) {
                    let l = st.line("ADDED", &ev.object, None);
                    st.queue.push_back(l);
                }
            } else {
                st.consider(ev);
            }
        }
        if send_initial && bookmarks_on {
            let av = rt.api_version(version);
            st.queue
                .push_back(bookmark_line(&av, &rt.kind, st.last_rev, true));
        }
        if bookmarks_on {
            let period = shared.config.bookmark_interval;
            let mut iv = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
            iv.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            st.bookmarks = Some(iv);
        }
    }
    let stream = futures_util::stream::unfold(st, |mut st| async move {
        loop {
            if let Some(line) = st.queue.pop_front() {
                return Some((Ok::<Bytes, std::convert::Infallible>(line), st));
            }
            if st.done {
                return None;
            }
            let bookmark_tick = async {
                match st.bookmarks.as_mut() {
                    Some(iv) => {
                        iv.tick().await;
                    }
                    None => std::future::pending::<()>().await,
                }
            };
            tokio::select! {
                biased;
                ev = st.rx.recv() => match ev {
                    Ok(ev) => st.consider(&ev),
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {
                        match st.shared.store.history_since(st.last_rev) {
                            Some(evs) => {
                                for ev in &evs {
                                    st.consider(ev);
                                }
                            }
                            None => {
                                let oldest = st.shared.store.compacted_revision();
                                st.queue.push_back(WatchState::expired_line(oldest, st.last_rev));
                                st.done = true;
                            }
                        }
                    }
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => st.done = true,
                },
                _ = tokio::time::sleep_until(st.deadline) => st.done = true,
                _ = bookmark_tick => {
                    let av = st.rt.api_version(&st.version);
                    let l = bookmark_line(&av, &st.rt.kind, st.last_rev, false);
                    st.queue.push_back(l);
                }
            }
        }
    });
    let mut r = Response::new(Body::from_stream(stream));
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r.headers_mut().insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("no-cache, private"),
    );
    Ok(r)
}

impl StoreEvent {
    pub(crate) fn synthetic_added(rt: &ResourceType, object: Arc<Value>) -> Self {
        let rev = meta_str(&object, "resourceVersion")
            .and_then(|r| r.parse().ok())
            .unwrap_or(0);
        StoreEvent::new(
            rev,
            rt.group_resource(),
            meta_str(&object, "namespace").unwrap_or("").to_string(),
            EventType::Added,
            object,
            None,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_parse_like_upstream() {
        let (p, w) = parse_resource_path(&[
            "api",
            "v1",
            "namespaces",
            "default",
            "pods",
            "web",
            "status",
        ])
        .unwrap();
        assert_eq!(
            (
                p.namespace.as_deref(),
                p.resource.as_str(),
                p.name.as_deref(),
                p.subresource.as_deref(),
                w
            ),
            (Some("default"), "pods", Some("web"), Some("status"), false)
        );
        let (p, _) =
            parse_resource_path(&["api", "v1", "namespaces", "kube-system", "status"]).unwrap();
        assert_eq!(
            (
                p.namespace,
                p.resource.as_str(),
                p.name.as_deref(),
                p.subresource.as_deref()
            ),
            (None, "namespaces", Some("kube-system"), Some("status"))
        );
        let (p, w) = parse_resource_path(&[
            "apis",
            "apps",
            "v1",
            "watch",
            "namespaces",
            "x",
            "deployments",
        ])
        .unwrap();
        assert!(w);
        assert_eq!(p.resource, "deployments");
        assert!(parse_resource_path(&["api", "v1"]).is_none());
        assert!(parse_resource_path(&["api", "v1", "a", "b", "c", "d"]).is_none());
    }
}
