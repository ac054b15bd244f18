//! The HTTP front: authentication, authorization, audit, fault injection, routing, content
//! negotiation, and the read verbs (get, list, watch). Writes go through [`crate::ops`].

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Method, Request, Response};
use http_body_util::BodyExt;
use serde_json::{Value, json};

use crate::auth::{self, AuditRecord};
use crate::body::SimBody;
use crate::error::{FieldError, FieldErrorType, StatusError, go_quote};
use crate::faults::RequestInfo;
use crate::filter::{Filter, check_fields};
use crate::meta;
use crate::ops::{
    self, DeleteOptions, Mode, PatchType, Target, Validation, WriteParams, to_view,
    view_is_identity,
};
use crate::rbac::{self, RequestAttributes, UserInfo};
use crate::registry::{self, Kind, ResourceType};
use crate::request::{self, Output, Query, ResourcePath, Route};
use crate::selector::{FieldSelector, LabelSelector};
use crate::state::State;
use crate::store::{Gr, Obj};
use crate::watch::{self, Start, WatchSpec};

/// The version `/version` reports: 1.32 pins the machine's kubectl dispatcher to kubectl 1.32.
pub fn version_json() -> Value {
    json!({
        "major": "1",
        "minor": "32",
        "emulationMajor": "1",
        "emulationMinor": "32",
        "minCompatibilityMajor": "1",
        "minCompatibilityMinor": "31",
        "gitVersion": crate::VERSION_INFO.1,
        "gitCommit": "kube-sim",
        "gitTreeState": "clean",
        "buildDate": "2025-04-22T00:00:00Z",
        "goVersion": "go1.23.6",
        "compiler": "gc",
        "platform": "linux/amd64",
    })
}

/// One response before it becomes an HTTP response.
pub struct Reply {
    pub code: u16,
    pub content_type: String,
    pub headers: Vec<(String, String)>,
    pub body: SimBody,
}

impl Reply {
    pub fn json(code: u16, v: &Value) -> Self {
        Self::bytes(
            code,
            "application/json",
            Bytes::from(serde_json::to_vec(v).unwrap_or_default()),
        )
    }

    pub fn bytes(code: u16, ct: &str, b: Bytes) -> Self {
        Self {
            code,
            content_type: ct.to_string(),
            headers: Vec::new(),
            body: SimBody::full(b),
        }
    }

    pub fn error(e: &StatusError) -> Self {
        Self::json(e.code, &e.to_status())
    }

    fn warnings(mut self, w: &[String]) -> Self {
        for m in w {
            let escaped = m.replace('\\', "\\\\").replace('"', "\\\"");
            self.headers
                .push(("Warning".into(), format!("299 - \"{escaped}\"")));
        }
        self
    }

    fn into_response(self) -> Response<SimBody> {
        let mut b = Response::builder()
            .status(self.code)
            .header("Content-Type", self.content_type)
            .header("Cache-Control", "no-cache, private")
            .header("X-Kubernetes-Pf-Flowschema-Uid", "kube-sim")
            .header("X-Kubernetes-Pf-Prioritylevel-Uid", "kube-sim");
        for (k, v) in self.headers {
            b = b.header(k, v);
        }
        b.body(self.body)
            .unwrap_or_else(|_| Response::new(SimBody::full("internal error")))
    }
}

fn not_found_generic() -> StatusError {
    StatusError::new(
        404,
        "NotFound",
        "the server could not find the requested resource",
    )
    .with_details(json!({}))
}

fn method_not_allowed() -> StatusError {
    StatusError::new(
        405,
        "MethodNotAllowed",
        "the server does not allow this method on the requested resource",
    )
    .with_details(json!({}))
}

fn unsupported_body() -> StatusError {
    StatusError::new(
        415,
        "UnsupportedMediaType",
        "the body of the request was in an unknown format - accepted media types include: application/json, application/yaml",
    )
}

/// Everything known about a request after authentication.
struct Ctx {
    st: Arc<State>,
    method: Method,
    query: Query,
    headers: HeaderMap,
    body: Bytes,
    user: UserInfo,
    attrs: RequestAttributes,
}

impl Ctx {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

/// Serve one request.
pub async fn handle<B>(st: Arc<State>, req: Request<B>, tls: bool) -> Response<SimBody>
where
    B: hyper::body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let _ = tls;
    let (mut parts, body) = req.into_parts();
    let path = parts.uri.path().to_string();
    let query_str = parts.uri.query().unwrap_or("").to_string();
    let max = st.cfg.max_body_bytes;
    let body = match http_body_util::Limited::new(body, max).collect().await {
        Ok(c) => c.to_bytes(),
        Err(_) => {
            return Reply::error(&StatusError::new(
                413,
                "RequestEntityTooLarge",
                format!("Request entity too large: limit is {max}"),
            ))
            .into_response();
        }
    };
    // client-go typed clients write protobuf: convert the kinds we know to JSON up front.
    let body = match protobuf_to_json(&mut parts.headers, body) {
        Ok(b) => b,
        Err(e) => return Reply::error(&e).into_response(),
    };
    // Authentication.
    let token = auth::bearer(
        parts
            .headers
            .get("authorization")
            .and_then(|v| v.to_str().ok()),
    )
    .map(str::to_string);
    let mut user = match &token {
        Some(t) => match st.tokens.lookup(t) {
            Some(u) => u,
            None if st.cfg.rbac => {
                return Reply::error(&StatusError::new(401, "Unauthorized", "Unauthorized"))
                    .into_response();
            }
            None => auth::admin_user(),
        },
        None if st.cfg.rbac => UserInfo::anonymous(),
        None => auth::admin_user(),
    };
    let query = Query::parse(&query_str);
    // Impersonation.
    if let Some(imp) = parts
        .headers
        .get("impersonate-user")
        .and_then(|v| v.to_str().ok())
    {
        let groups: Vec<String> = parts
            .headers
            .get_all("impersonate-group")
            .iter()
            .filter_map(|v| v.to_str().ok().map(str::to_string))
            .collect();
        match impersonate(&st, &user, imp, groups) {
            Ok(u) => user = u,
            Err(e) => return Reply::error(&e).into_response(),
        }
    }
    let attrs = rbac::request_attributes(parts.method.as_str(), &path, &query_str, user.clone());
    let allowed = if st.cfg.rbac {
        let d = rbac::authorize(&st.rbac_snapshot(), &attrs);
        if d.allowed() {
            Ok(())
        } else {
            Err(rbac::forbidden_with_reason(&attrs, d.reason()))
        }
    } else {
        Ok(())
    };
    let info = RequestInfo {
        verb: attrs.verb.clone(),
        group: attrs.api_group.clone(),
        resource: attrs.resource.clone(),
        subresource: attrs.subresource.clone(),
        namespace: attrs.namespace.clone(),
        name: attrs.name.clone(),
    };
    let mut record = AuditRecord {
        verb: attrs.verb.clone(),
        group: attrs.api_group.clone(),
        resource: attrs.resource.clone(),
        subresource: attrs.subresource.clone(),
        namespace: attrs.namespace.clone(),
        name: attrs.name.clone(),
        path: if attrs.resource_request {
            String::new()
        } else {
            path.clone()
        },
        user: user.name.clone(),
        groups: user.groups.clone(),
        allowed: allowed.is_ok(),
        code: 0,
    };
    if let Err(e) = allowed {
        record.code = e.code;
        st.audit.push(record);
        return Reply::error(&e).into_response();
    }
    // Fault injection.
    let latency = st.faults.latency_for(&info);
    if latency > Duration::ZERO {
        tokio::time::sleep(latency).await;
    }
    if attrs.resource_request
        && let Some(inj) = st.faults.take(&info)
    {
        record.code = inj.status.code;
        st.audit.push(record);
        if info.verb == "watch" {
            let line = watch::expired_line(0, st.store.oldest_rv());
            let body = if inj.status.code == 410 {
                line
            } else {
                Bytes::from(format!(
                    "{{\"type\":\"ERROR\",\"object\":{}}}\n",
                    serde_json::to_string(&inj.status.to_status()).unwrap_or_default()
                ))
            };
            return Reply::bytes(200, "application/json", body).into_response();
        }
        let mut r = Reply::error(&inj.status);
        if let Some(ra) = inj.retry_after {
            r.headers.push(("Retry-After".into(), ra.to_string()));
        }
        return r.into_response();
    }
    let ctx = Ctx {
        st: st.clone(),
        method: parts.method.clone(),
        query,
        headers: parts.headers,
        body,
        user,
        attrs,
    };
    let reply = match route_request(&ctx, &path).await {
        Ok(r) => r,
        Err(e) => Reply::error(&e),
    };
    record.code = reply.code;
    st.audit.push(record);
    reply.into_response()
}

fn impersonate(
    st: &State,
    user: &UserInfo,
    target: &str,
    groups: Vec<String>,
) -> Result<UserInfo, StatusError> {
    let (resource, name, ns) = match target
        .strip_prefix("system:serviceaccount:")
        .and_then(|r| r.split_once(':'))
    {
        Some((ns, n)) => ("serviceaccounts", n.to_string(), ns.to_string()),
        None => ("users", target.to_string(), String::new()),
    };
    if st.cfg.rbac {
        let snapshot = st.rbac_snapshot();
        let check = |resource: &str, name: &str, ns: &str| -> Result<(), StatusError> {
            let attrs = RequestAttributes {
                user: user.clone(),
                verb: "impersonate".into(),
                resource_request: true,
                api_group: String::new(),
                api_version: "v1".into(),
                resource: resource.into(),
                subresource: String::new(),
                name: name.into(),
                namespace: ns.into(),
                path: String::new(),
            };
            if rbac::authorize(&snapshot, &attrs).allowed() {
                Ok(())
            } else {
                Err(rbac::forbidden(&attrs))
            }
        };
        check(resource, &name, &ns)?;
        for g in &groups {
            check("groups", g, "")?;
        }
    }
    let mut u = if resource == "serviceaccounts" {
        rbac::service_account_user(&ns, &name)
    } else {
        UserInfo {
            name: name.clone(),
            uid: String::new(),
            groups: Vec::new(),
        }
    };
    if resource == "users" {
        u.groups = groups;
        if !u.groups.iter().any(|g| g == "system:authenticated") {
            u.groups.push("system:authenticated".into());
        }
    } else {
        u.groups.extend(groups);
    }
    Ok(u)
}

async fn route_request(ctx: &Ctx, path: &str) -> Result<Reply, StatusError> {
    let st = &ctx.st;
    let accept = ctx.header("accept").map(str::to_string);
    match request::route(path) {
        Route::Version => Ok(Reply::json(200, &version_json())),
        Route::Health(_) => Ok(Reply::bytes(
            200,
            "text/plain; charset=utf-8",
            Bytes::from("ok"),
        )),
        Route::CoreVersions => {
            if let Some(v) = request::wants_aggregated(accept.as_deref()) {
                return Ok(aggregated(st, true, v));
            }
            Ok(Reply::json(
                200,
                &registry::api_versions(&st.cfg.server_address),
            ))
        }
        Route::Groups => {
            if let Some(v) = request::wants_aggregated(accept.as_deref()) {
                return Ok(aggregated(st, false, v));
            }
            Ok(Reply::json(
                200,
                &registry::api_group_list(&st.registry.types()),
            ))
        }
        Route::Group(g) => registry::api_group(&st.registry.types(), &g)
            .map(|v| Reply::json(200, &v))
            .ok_or_else(not_found_generic),
        Route::GroupVersion(g, v) => registry::api_resource_list(&st.registry.types(), &g, &v)
            .map(|v| Reply::json(200, &v))
            .ok_or_else(not_found_generic),
        Route::OpenApiV3 => Ok(Reply::json(
            200,
            &crate::openapi::openapi_root(&st.registry.types()),
        )),
        Route::OpenApiV3Gv(g, v) => crate::openapi::openapi_gv(&st.registry.types(), &g, &v)
            .map(|v| Reply::json(200, &v))
            .ok_or_else(not_found_generic),
        Route::OpenApiV2 => {
            Err(StatusError::new(404, "NotFound", "404 page not found").with_details(json!({})))
        }
        Route::NotFound => {
            Err(StatusError::new(404, "NotFound", "404 page not found").with_details(json!({})))
        }
        Route::Resource(rp) => resource_request(ctx, rp).await,
    }
}

fn aggregated(st: &State, core: bool, version: &str) -> Reply {
    let doc = registry::aggregated_discovery(&st.registry.types(), core, version);
    Reply::bytes(
        200,
        &format!("application/json;g=apidiscovery.k8s.io;v={version};as=APIGroupDiscoveryList"),
        Bytes::from(serde_json::to_vec(&doc).unwrap_or_default()),
    )
}

// ---------------------------------------------------------------------------------------------
// Resource requests

async fn resource_request(ctx: &Ctx, rp: ResourcePath) -> Result<Reply, StatusError> {
    let st = &ctx.st;
    let types = st.registry.types();
    let Some(rt) = types.lookup(&rp.group, &rp.version, &rp.resource) else {
        return Err(not_found_generic());
    };
    if !rt.namespaced && rp.namespace.is_some() {
        return Err(not_found_generic());
    }
    let ns = rp.namespace.clone().unwrap_or_default();
    let accept = ctx.header("accept").map(str::to_string);
    // Subresource validity.
    let target = match rp.subresource.as_deref() {
        None => None,
        Some("status") if rt.status => Some("status"),
        Some("scale") if rt.scale.is_some() => Some("scale"),
        Some(s) if rt.extra.iter().any(|e| e.name == s) => Some(s),
        Some(_) => return Err(not_found_generic()),
    };
    let is_watch = rp.watch_prefix || ctx.query.flag("watch");
    let verb_ok = |v: &str| rt.has_verb(v);
    match (&ctx.method, rp.name.as_deref(), target) {
        (&Method::GET, None, None) => {
            if rt.namespaced && rp.namespace.is_none() && !verb_ok("list") {
                return Err(not_found_generic());
            }
            if is_watch {
                if !verb_ok("watch") {
                    return Err(method_not_allowed());
                }
                return start_watch(ctx, &rt, rp.namespace.clone(), accept.as_deref(), None);
            }
            if !verb_ok("list") {
                return Err(method_not_allowed());
            }
            if rt.behaviour == Kind::ComponentStatus {
                return Ok(Reply::json(200, &component_statuses(st)));
            }
            list(ctx, &rt, rp.namespace.as_deref(), accept.as_deref()).await
        }
        (&Method::GET, Some(name), None) => {
            if rt.namespaced && rp.namespace.is_none() {
                return Err(not_found_generic());
            }
            if is_watch {
                return start_watch(
                    ctx,
                    &rt,
                    rp.namespace.clone(),
                    accept.as_deref(),
                    Some(name),
                );
            }
            if !verb_ok("get") {
                return Err(method_not_allowed());
            }
            get(ctx, &rt, &ns, name, accept.as_deref()).await
        }
        (&Method::GET, Some(name), Some("status")) => {
            get(ctx, &rt, &ns, name, accept.as_deref()).await
        }
        (&Method::GET, Some(name), Some("scale")) => {
            let obj = st
                .store
                .get(&rt.storage, &ns, name)
                .ok_or_else(|| StatusError::not_found(&rt.resource, &rt.group, name))?;
            Ok(Reply::json(200, &scale_of(&rt, &to_view(&rt, &obj.value))))
        }
        (&Method::POST, None, None) => {
            if rt.namespaced && rp.namespace.is_none() {
                return Err(not_found_generic());
            }
            if !verb_ok("create") {
                return Err(method_not_allowed());
            }
            let body = decode_body(ctx, &rt)?;
            if rt.behaviour.is_review() {
                return review(ctx, &rt, &ns, body);
            }
            let p = write_params(ctx, "CreateOptions")?;
            let w = ops::create(st, &rt, &ns, body, &p, Mode::Create)?;
            render_written(&rt, w, accept.as_deref())
        }
        (&Method::POST, Some(name), Some("token")) => token_request(ctx, &ns, name),
        (&Method::PUT, Some(name), t) => {
            if rt.namespaced && rp.namespace.is_none() {
                return Err(not_found_generic());
            }
            if !verb_ok("update") {
                return Err(method_not_allowed());
            }
            let body = decode_body(ctx, &rt)?;
            let p = write_params(ctx, "UpdateOptions")?;
            let w = match t {
                None => ops::update(st, &rt, &ns, name, Target::Main, body, &p)?,
                Some("status") => ops::update(st, &rt, &ns, name, Target::Status, body, &p)?,
                Some("scale") => {
                    return scale_write(ctx, &rt, &ns, name, ScaleWrite::Replace(body), &p);
                }
                Some("finalize") => finalize(ctx, &rt, name, body, &p)?,
                Some(_) => return Err(method_not_allowed()),
            };
            render_written(&rt, w, accept.as_deref())
        }
        (&Method::PATCH, Some(name), t) => {
            if rt.namespaced && rp.namespace.is_none() {
                return Err(not_found_generic());
            }
            if !verb_ok("patch") {
                return Err(method_not_allowed());
            }
            let ct = ctx.header("content-type").unwrap_or("");
            let Some(pt) = PatchType::from_content_type(ct) else {
                return Err(StatusError::new(
                    415,
                    "UnsupportedMediaType",
                    format!(
                        "the body of the request was in an unknown format - accepted media types include: {}",
                        if rt.is_custom() {
                            "application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml"
                        } else {
                            "application/json-patch+json, application/merge-patch+json, application/strategic-merge-patch+json, application/apply-patch+yaml"
                        }
                    ),
                ));
            };
            let p = write_params(ctx, "PatchOptions")?;
            ops::check_patch_options(pt, &p, ctx.query.value("fieldManager").is_some())?;
            let w = match t {
                None => ops::patch(st, &rt, &ns, name, Target::Main, pt, &ctx.body, &p)?,
                Some("status") => {
                    ops::patch(st, &rt, &ns, name, Target::Status, pt, &ctx.body, &p)?
                }
                Some("scale") => {
                    return scale_write(ctx, &rt, &ns, name, ScaleWrite::Patch(pt), &p);
                }
                Some(_) => return Err(method_not_allowed()),
            };
            render_written(&rt, w, accept.as_deref())
        }
        (&Method::DELETE, Some(name), None) => {
            if rt.namespaced && rp.namespace.is_none() {
                return Err(not_found_generic());
            }
            if !verb_ok("delete") {
                return Err(method_not_allowed());
            }
            check_delete_content_type(ctx)?;
            let o = DeleteOptions::parse(&ctx.body, &ctx.query)?;
            let (code, v) = ops::delete(st, &rt, &ns, name, &o)?;
            if v.get("kind").and_then(Value::as_str) == Some("Status") {
                return Ok(Reply::json(code, &v));
            }
            render_value(&rt, code, &v, accept.as_deref(), false)
        }
        (&Method::DELETE, None, None) => {
            if rt.namespaced && rp.namespace.is_none() {
                return Err(not_found_generic());
            }
            if !verb_ok("deletecollection") {
                return Err(method_not_allowed());
            }
            check_delete_content_type(ctx)?;
            delete_collection(ctx, &rt, &ns)
        }
        _ => Err(method_not_allowed()),
    }
}

/// A protobuf body of a kind [`crate::protobuf`] decodes becomes its JSON form (and the
/// Content-Type says so); other protobuf bodies are left for the 415 of the write paths.
fn protobuf_to_json(headers: &mut HeaderMap, body: Bytes) -> Result<Bytes, StatusError> {
    let is_proto = headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .map(request::MediaType::parse)
        .is_some_and(|m| m.essence == "application/vnd.kubernetes.protobuf");
    if !is_proto || body.is_empty() {
        return Ok(body);
    }
    match crate::protobuf::decode(&body) {
        Ok(v) => {
            headers.insert(
                http::header::CONTENT_TYPE,
                http::HeaderValue::from_static("application/json"),
            );
            Ok(Bytes::from(serde_json::to_vec(&v).unwrap_or_default()))
        }
        Err(crate::protobuf::ProtoError::Unsupported(_)) => Ok(body),
        Err(crate::protobuf::ProtoError::Malformed(m)) => Err(StatusError::bad_request(format!(
            "the body of the request could not be decoded as protobuf: {m}"
        ))),
    }
}

fn check_delete_content_type(ctx: &Ctx) -> Result<(), StatusError> {
    if ctx.body.iter().all(u8::is_ascii_whitespace) {
        return Ok(());
    }
    match ctx.header("content-type").map(request::MediaType::parse) {
        Some(m) if m.essence == "application/vnd.kubernetes.protobuf" => Err(unsupported_body()),
        _ => Ok(()),
    }
}

/// Decode a POST/PUT body (JSON or YAML).
fn decode_body(ctx: &Ctx, rt: &ResourceType) -> Result<Value, StatusError> {
    let ct = ctx
        .header("content-type")
        .map(request::MediaType::parse)
        .map(|m| m.essence)
        .unwrap_or_else(|| "application/json".to_string());
    let v: Value = match ct.as_str() {
        "application/json" | "" | "*/*" => serde_json::from_slice(&ctx.body).map_err(|e| {
            StatusError::bad_request(format!(
                "{} in version {} cannot be handled as a {}: {}",
                rt.kind,
                go_quote(&rt.version),
                rt.kind,
                e
            ))
        })?,
        "application/yaml" => {
            let text = std::str::from_utf8(&ctx.body)
                .map_err(|e| StatusError::bad_request(e.to_string()))?;
            crate::yaml::from_str(text).map_err(|e| {
                StatusError::bad_request(format!("error converting YAML to JSON: {e}"))
            })?
        }
        _ => return Err(unsupported_body()),
    };
    Ok(v)
}

fn write_params(ctx: &Ctx, options_kind: &str) -> Result<WriteParams, StatusError> {
    let q = &ctx.query;
    let dry: Vec<String> = q.all("dryRun").iter().map(|s| s.to_string()).collect();
    let mut errs = ops::dry_run_errors(&dry);
    let fm = q.get("fieldManager").unwrap_or("");
    if fm.len() > 128 {
        errs.push(FieldError::new(
            FieldErrorType::TooLong,
            "fieldManager",
            None,
            "may not be more than 128 bytes",
        ));
    }
    if fm.chars().any(|c| c.is_control()) {
        errs.push(FieldError::invalid(
            "fieldManager",
            &json!(fm),
            "must only contain printable characters",
        ));
    }
    let fv = q.get("fieldValidation").unwrap_or("");
    let validation = match fv {
        "" | "Warn" => Validation::Warn,
        "Ignore" => Validation::Ignore,
        "Strict" => Validation::Strict,
        other => {
            errs.push(FieldError::new(
                FieldErrorType::NotSupported,
                "fieldValidation",
                Some(go_quote(other)),
                "supported values: \"\", \"Ignore\", \"Strict\", \"Warn\"",
            ));
            Validation::Warn
        }
    };
    if !errs.is_empty() {
        return Err(StatusError::invalid(options_kind, "meta.k8s.io", "", &errs));
    }
    Ok(WriteParams {
        dry_run: dry.iter().any(|d| d == "All"),
        manager: crate::patch::manager_name(q.value("fieldManager"), ctx.header("user-agent")),
        validation,
        force: q.flag("force"),
        user: ctx.user.clone(),
        attrs: ctx.st.cfg.rbac.then(|| ctx.attrs.clone()),
    })
}

fn render_written(
    rt: &ResourceType,
    w: ops::Written,
    accept: Option<&str>,
) -> Result<Reply, StatusError> {
    let r = render_value(rt, w.code, &w.object, accept, false)?;
    Ok(r.warnings(&w.warnings))
}

fn partial_of(v: &Value) -> Value {
    json!({
        "kind": "PartialObjectMetadata",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": v.get("metadata").cloned().unwrap_or(json!({})),
    })
}

/// Render one object (already in the request's version).
fn render_value(
    rt: &ResourceType,
    code: u16,
    v: &Value,
    accept: Option<&str>,
    allow_table: bool,
) -> Result<Reply, StatusError> {
    match request::negotiate(accept, allow_table)? {
        Output::Json => Ok(Reply::json(code, v)),
        Output::Yaml => Ok(Reply::bytes(
            code,
            "application/yaml",
            Bytes::from(crate::yaml::to_string(v)),
        )),
        Output::Partial => Ok(Reply::json(code, &partial_of(v))),
        Output::Table { v1beta1 } => {
            let t = crate::table::table(
                rt,
                std::slice::from_ref(v),
                json!({"resourceVersion": meta::resource_version(v)}),
                "Metadata",
                v1beta1,
            );
            Ok(table_reply(code, &t, v1beta1))
        }
    }
}

fn table_reply(code: u16, t: &Value, v1beta1: bool) -> Reply {
    Reply::bytes(
        code,
        &format!(
            "application/json;as=Table;v={};g=meta.k8s.io",
            if v1beta1 { "v1beta1" } else { "v1" }
        ),
        Bytes::from(serde_json::to_vec(t).unwrap_or_default()),
    )
}

fn parse_rv(s: &str) -> Result<u64, StatusError> {
    s.parse::<u64>().map_err(|_| {
        StatusError::invalid(
            "ListOptions",
            "meta.k8s.io",
            "",
            &[FieldError::invalid(
                "resourceVersion",
                &json!(s),
                "must be a non-negative integer",
            )],
        )
    })
}

/// Wait up to 3 s for the store to reach `rv` (upstream's `waitUntilFreshAndBlock`), then 504.
fn too_large(rv: u64, current: u64) -> StatusError {
    StatusError::new(
        504,
        "Timeout",
        format!("Timeout: Too large resource version: {rv}, current: {current}"),
    )
    .with_details(json!({
        "causes": [{"reason": "ResourceVersionTooLarge", "message": "Too large resource version"}],
        "retryAfterSeconds": 1,
    }))
}

async fn wait_for_rv(st: &State, rv: u64) -> Result<(), StatusError> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(3);
    loop {
        let cur = st.store.current_rv();
        if cur >= rv {
            return Ok(());
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(too_large(rv, cur));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn get(
    ctx: &Ctx,
    rt: &Arc<ResourceType>,
    ns: &str,
    name: &str,
    accept: Option<&str>,
) -> Result<Reply, StatusError> {
    let st = &ctx.st;
    let output = request::negotiate(accept, true)?;
    if let Some(rv) = ctx.query.value("resourceVersion")
        && rv != "0"
    {
        let rv = parse_rv(rv)?;
        if st.store.current_rv() < rv {
            wait_for_rv(st, rv).await?;
        }
    }
    let obj = st
        .store
        .get(&rt.storage, ns, name)
        .ok_or_else(|| StatusError::not_found(&rt.resource, &rt.group, name))?;
    if output == Output::Json && view_is_identity(rt) {
        return Ok(Reply::bytes(200, "application/json", obj.json.clone()));
    }
    render_value(rt, 200, &to_view(rt, &obj.value), accept, true)
}

/// `ValidateListOptions` (422 `ListOptions.meta.k8s.io "" is invalid`).
fn validate_list_options(st: &State, q: &Query, watch: bool) -> Result<(), StatusError> {
    let rv = q.get("resourceVersion").unwrap_or("");
    let rvm = q.get("resourceVersionMatch").unwrap_or("");
    let cont = q.get("continue").unwrap_or("");
    let sie = q.get("sendInitialEvents");
    let mut errs = Vec::new();
    if watch {
        if sie.is_some() {
            if rvm != "NotOlderThan" {
                errs.push(FieldError::forbidden(
                    "resourceVersionMatch",
                    "sendInitialEvents requires setting resourceVersionMatch to NotOlderThan",
                ));
            }
            if !st.cfg.watch_list {
                errs.push(FieldError::forbidden(
                    "sendInitialEvents",
                    "sendInitialEvents is forbidden for watch unless the WatchList feature gate is enabled",
                ));
            }
        }
        if !rvm.is_empty() {
            if sie.is_none() {
                errs.push(FieldError::forbidden(
                    "resourceVersionMatch",
                    "resourceVersionMatch is forbidden for watch unless sendInitialEvents is provided",
                ));
            }
            if rvm != "NotOlderThan" {
                errs.push(FieldError::new(
                    FieldErrorType::NotSupported,
                    "resourceVersionMatch",
                    Some(go_quote(rvm)),
                    "supported values: \"NotOlderThan\"",
                ));
            }
            if !cont.is_empty() {
                errs.push(FieldError::forbidden(
                    "resourceVersionMatch",
                    "resourceVersionMatch is forbidden when continue is provided",
                ));
            }
        }
    } else {
        if !rvm.is_empty() {
            if rv.is_empty() {
                errs.push(FieldError::forbidden(
                    "resourceVersionMatch",
                    "resourceVersionMatch is forbidden unless resourceVersion is provided",
                ));
            }
            if !cont.is_empty() {
                errs.push(FieldError::forbidden(
                    "resourceVersionMatch",
                    "resourceVersionMatch is forbidden when continue is provided",
                ));
            }
            if rvm != "Exact" && rvm != "NotOlderThan" {
                errs.push(FieldError::new(
                    FieldErrorType::NotSupported,
                    "resourceVersionMatch",
                    Some(go_quote(rvm)),
                    "supported values: \"Exact\", \"NotOlderThan\", \"\"",
                ));
            }
            if rvm == "Exact" && rv == "0" {
                errs.push(FieldError::forbidden(
                    "resourceVersionMatch",
                    "resourceVersionMatch \"exact\" is forbidden for resourceVersion \"0\"",
                ));
            }
        }
        if sie.is_some() {
            errs.push(FieldError::forbidden(
                "sendInitialEvents",
                "sendInitialEvents is forbidden for list",
            ));
        }
    }
    if errs.is_empty() {
        Ok(())
    } else {
        Err(StatusError::invalid(
            "ListOptions",
            "meta.k8s.io",
            "",
            &errs,
        ))
    }
}

fn build_filter(ctx: &Ctx, rt: &ResourceType, ns: Option<&str>) -> Result<Filter, StatusError> {
    let labels = LabelSelector::parse(ctx.query.get("labelSelector").unwrap_or(""))
        .map_err(StatusError::bad_request)?;
    let fields = FieldSelector::parse(ctx.query.get("fieldSelector").unwrap_or(""))
        .map_err(StatusError::bad_request)?;
    check_fields(rt, &fields)?;
    Ok(Filter {
        namespace: ns.map(str::to_string),
        labels,
        fields,
    })
}

#[derive(serde::Serialize, serde::Deserialize)]
struct ContinueToken {
    v: String,
    rv: u64,
    start: String,
}

fn encode_continue(rv: u64, last: &(String, String)) -> String {
    use base64::Engine;
    let t = ContinueToken {
        v: "meta.k8s.io/v1".into(),
        rv,
        start: format!("{}/{}\u{0}", last.0, last.1),
    };
    base64::engine::general_purpose::URL_SAFE.encode(serde_json::to_vec(&t).unwrap_or_default())
}

fn decode_continue(s: &str) -> Result<(u64, (String, String)), StatusError> {
    use base64::Engine;
    let bad = |m: &str| StatusError::bad_request(format!("continue key is not valid: {m}"));
    let raw = base64::engine::general_purpose::URL_SAFE
        .decode(s)
        .or_else(|_| base64::engine::general_purpose::STANDARD.decode(s))
        .map_err(|e| bad(&e.to_string()))?;
    let t: ContinueToken = serde_json::from_slice(&raw).map_err(|e| bad(&e.to_string()))?;
    if t.v != "meta.k8s.io/v1" {
        return Err(bad(
            "incorrect encoded start resourceVersion (version meta.k8s.io/v1)",
        ));
    }
    let key = t.start.trim_end_matches('\u{0}');
    let (ns, name) = key
        .split_once('/')
        .ok_or_else(|| bad("invalid start key"))?;
    Ok((t.rv, (ns.to_string(), name.to_string())))
}

async fn list(
    ctx: &Ctx,
    rt: &Arc<ResourceType>,
    ns: Option<&str>,
    accept: Option<&str>,
) -> Result<Reply, StatusError> {
    let st = &ctx.st;
    let q = &ctx.query;
    validate_list_options(st, q, false)?;
    let output = request::negotiate(accept, true)?;
    let filter = build_filter(ctx, rt, ns)?;
    let mut limit = q
        .get("limit")
        .and_then(|l| l.parse::<i64>().ok())
        .filter(|l| *l > 0)
        .map(|l| l as usize);
    let rv = q.value("resourceVersion");
    let rvm = q.value("resourceVersionMatch");
    let gr = &rt.storage;
    let snapshot = if let Some(token) = q.value("continue") {
        if rv.is_some_and(|r| r != "0") {
            return Err(StatusError::bad_request(
                "specifying resource version is not allowed when using continue",
            ));
        }
        let (trv, key) = decode_continue(token)?;
        match st.store.snapshot(gr, ns, Some(&key), Some(trv)) {
            Ok(s) => s,
            Err(_) => {
                let fresh = encode_continue(st.store.current_rv(), &key);
                return Err(StatusError::new(
                    410,
                    "Expired",
                    "The provided continue parameter is too old to display a consistent list result. You can start a new list without the continue parameter, or use the continue token in this response to retrieve the remainder of the results. Continuing with the provided token results in an inconsistent list - objects that were created, modified, or deleted between the time the first chunk was returned and now may show up in the list.",
                )
                .with_details(json!({}))
                .with_continue(fresh));
            }
        }
    } else {
        match (rv, rvm) {
            (None, _) => st
                .store
                .snapshot(gr, ns, None, None)
                .map_err(|_| expired_list())?,
            (Some("0"), _) => {
                limit = None;
                st.store
                    .snapshot(gr, ns, None, None)
                    .map_err(|_| expired_list())?
            }
            (Some(r), Some("Exact")) => {
                let r = parse_rv(r)?;
                let cur = st.store.current_rv();
                if r > cur {
                    wait_for_rv(st, r).await?;
                }
                st.store
                    .snapshot(gr, ns, None, Some(r))
                    .map_err(|_| expired_list())?
            }
            (Some(r), _) => {
                let r = parse_rv(r)?;
                if st.store.current_rv() < r {
                    wait_for_rv(st, r).await?;
                }
                st.store
                    .snapshot(gr, ns, None, None)
                    .map_err(|_| expired_list())?
            }
        }
    };
    let rv_now = snapshot.rv;
    // The snapshot is already restricted to the namespace: without selectors there is
    // nothing to filter (and scanning 10 000 objects' metadata costs milliseconds).
    let mut matched: Vec<Arc<Obj>> = if filter.is_trivial() {
        snapshot.items
    } else {
        snapshot
            .items
            .into_iter()
            .filter(|o| filter.matches(rt, &o.value))
            .collect()
    };
    let mut cont = None;
    let mut remaining = None;
    if let Some(l) = limit
        && matched.len() > l
    {
        let rest = matched.len() - l;
        matched.truncate(l);
        if let Some(last) = matched.last() {
            cont = Some(encode_continue(
                rv_now,
                &(last.namespace().to_string(), last.name().to_string()),
            ));
        }
        if filter.is_trivial() {
            remaining = Some(rest);
        }
    }
    let mut list_meta = json!({"resourceVersion": rv_now.to_string()});
    if let Some(c) = &cont {
        list_meta["continue"] = json!(c);
    }
    if let Some(r) = remaining {
        list_meta["remainingItemCount"] = json!(r);
    }
    render_list(
        rt,
        &matched,
        list_meta,
        output,
        q.get("includeObject").unwrap_or("Metadata"),
    )
}

trait WithContinue {
    fn with_continue(self, token: String) -> Self;
}

impl WithContinue for StatusError {
    /// Upstream puts a fresh token in the Status's `metadata.continue`; we carry it in details.
    fn with_continue(mut self, token: String) -> Self {
        if let Some(d) = self.details.as_mut() {
            d["continue"] = json!(token);
        }
        self
    }
}

fn expired_list() -> StatusError {
    StatusError::new(
        410,
        "Expired",
        "The resourceVersion for the provided list is too old.",
    )
}

fn render_list(
    rt: &ResourceType,
    items: &[Arc<Obj>],
    list_meta: Value,
    output: Output,
    include_object: &str,
) -> Result<Reply, StatusError> {
    match output {
        Output::Json if view_is_identity(rt) => {
            let head = json!({"kind": rt.list_kind(), "apiVersion": rt.api_version(), "metadata": list_meta});
            let head = serde_json::to_vec(&head).unwrap_or_default();
            let mut out = Vec::with_capacity(
                head.len() + 16 + items.iter().map(|o| o.json.len() + 1).sum::<usize>(),
            );
            out.extend_from_slice(&head[..head.len() - 1]);
            out.extend_from_slice(b",\"items\":[");
            for (i, o) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                out.extend_from_slice(&o.json);
            }
            out.extend_from_slice(b"]}");
            Ok(Reply::bytes(200, "application/json", Bytes::from(out)))
        }
        Output::Json | Output::Yaml => {
            let views: Vec<Value> = items
                .iter()
                .map(|o| to_view(rt, &o.value).into_owned())
                .collect();
            let v = json!({"kind": rt.list_kind(), "apiVersion": rt.api_version(), "metadata": list_meta, "items": views});
            if output == Output::Yaml {
                Ok(Reply::bytes(
                    200,
                    "application/yaml",
                    Bytes::from(crate::yaml::to_string(&v)),
                ))
            } else {
                Ok(Reply::json(200, &v))
            }
        }
        Output::Partial => {
            let views: Vec<Value> = items.iter().map(|o| partial_of(&o.value)).collect();
            Ok(Reply::json(
                200,
                &json!({"kind": "PartialObjectMetadataList", "apiVersion": "meta.k8s.io/v1", "metadata": list_meta, "items": views}),
            ))
        }
        Output::Table { v1beta1 } => {
            let views: Vec<Value> = items
                .iter()
                .map(|o| to_view(rt, &o.value).into_owned())
                .collect();
            let t = crate::table::table(rt, &views, list_meta, include_object, v1beta1);
            Ok(table_reply(200, &t, v1beta1))
        }
    }
}

fn start_watch(
    ctx: &Ctx,
    rt: &Arc<ResourceType>,
    ns: Option<String>,
    accept: Option<&str>,
    name: Option<&str>,
) -> Result<Reply, StatusError> {
    let q = &ctx.query;
    validate_list_options(&ctx.st, q, true)?;
    let output = request::negotiate(accept, true)?;
    let mut filter = build_filter(ctx, rt, ns.as_deref())?;
    if let Some(n) = name {
        filter.fields.terms.push(crate::selector::FieldTerm {
            field: "metadata.name".into(),
            equals: true,
            value: n.to_string(),
        });
    }
    let timeout = match q.get("timeoutSeconds").and_then(|t| t.parse::<u64>().ok()) {
        Some(t) if t > 0 => Duration::from_secs(t),
        _ => {
            use rand::Rng;
            Duration::from_secs(rand::rng().random_range(1800..3600))
        }
    };
    let bookmarks = q.flag("allowWatchBookmarks");
    let rv = q.value("resourceVersion");
    let start = match q.get("sendInitialEvents") {
        Some("true" | "1") => Start::State {
            initial_end_bookmark: bookmarks,
        },
        Some(_) => match rv {
            None | Some("0") => Start::Now,
            Some(r) => Start::From(parse_rv(r)?),
        },
        None => match rv {
            None | Some("0") => Start::State {
                initial_end_bookmark: false,
            },
            Some(r) => Start::From(parse_rv(r)?),
        },
    };
    let spec = WatchSpec {
        rt: rt.clone(),
        filter,
        output,
        bookmarks,
        timeout,
        start,
    };
    let rx = watch::start(ctx.st.clone(), spec);
    let ct = match output {
        Output::Table { v1beta1 } => format!(
            "application/json;as=Table;v={};g=meta.k8s.io",
            if v1beta1 { "v1beta1" } else { "v1" }
        ),
        _ => "application/json".to_string(),
    };
    Ok(Reply {
        code: 200,
        content_type: ct,
        headers: vec![("Transfer-Encoding".into(), "chunked".into())],
        body: SimBody::Stream(rx),
    })
}

fn delete_collection(ctx: &Ctx, rt: &Arc<ResourceType>, ns: &str) -> Result<Reply, StatusError> {
    let st = &ctx.st;
    let o = DeleteOptions::parse(&ctx.body, &ctx.query)?;
    let filter = build_filter(ctx, rt, rt.namespaced.then_some(ns))?;
    let snap = st.store.list(&rt.storage, rt.namespaced.then_some(ns));
    let mut deleted = Vec::new();
    for obj in snap.items {
        if !filter.matches(rt, &obj.value) {
            continue;
        }
        match ops::delete(st, rt, ns, obj.name(), &o) {
            Ok((_, v)) => {
                if v.get("kind").and_then(Value::as_str) == Some("Status") {
                    deleted.push(to_view(rt, &obj.value).into_owned());
                } else {
                    deleted.push(v);
                }
            }
            Err(e) if e.code == 404 => {}
            Err(e) => return Err(e),
        }
    }
    Ok(Reply::json(
        200,
        &json!({
            "kind": rt.list_kind(),
            "apiVersion": rt.api_version(),
            "metadata": {"resourceVersion": st.store.current_rv().to_string()},
            "items": deleted,
        }),
    ))
}

// ---------------------------------------------------------------------------------------------
// Subresources and special endpoints

enum ScaleWrite {
    Replace(Value),
    Patch(PatchType),
}

/// The `autoscaling/v1` Scale of an object (request version).
pub fn scale_of(rt: &ResourceType, obj: &Value) -> Value {
    let Some(spec) = &rt.scale else {
        return json!({});
    };
    let first = |p: &str| {
        crate::table::jsonpath(obj, p)
            .ok()
            .and_then(|r| r.into_iter().next())
    };
    let spec_replicas = first(&spec.spec_replicas_path)
        .and_then(|v| v.as_i64())
        .unwrap_or(0);
    let status_replicas = first(&spec.status_replicas_path)
        .and_then(|v| v.as_i64())
        .unwrap_or(0);
    let selector = match &spec.label_selector_path {
        Some(p) => first(p).and_then(|v| v.as_str().map(str::to_string)),
        None if !rt.is_custom() => obj
            .pointer("/spec/selector")
            .and_then(|s| LabelSelector::from_object(s).ok())
            .map(|s| s.to_query()),
        None => None,
    };
    let m = |k: &str| obj.pointer(&format!("/metadata/{k}")).cloned();
    let mut metadata = json!({});
    for k in [
        "name",
        "namespace",
        "uid",
        "resourceVersion",
        "creationTimestamp",
    ] {
        if let Some(v) = m(k) {
            metadata[k] = v;
        }
    }
    let mut status = json!({"replicas": status_replicas});
    if let Some(s) = selector {
        status["selector"] = json!(s);
    }
    json!({
        "kind": "Scale",
        "apiVersion": "autoscaling/v1",
        "metadata": metadata,
        "spec": {"replicas": spec_replicas},
        "status": status,
    })
}

fn set_path(obj: &mut Value, path: &str, v: Value) {
    let parts: Vec<&str> = path.trim_start_matches('.').split('.').collect();
    let mut cur = obj;
    for (i, p) in parts.iter().enumerate() {
        if !cur.is_object() {
            *cur = json!({});
        }
        let Some(m) = cur.as_object_mut() else {
            return;
        };
        if i == parts.len() - 1 {
            m.insert((*p).to_string(), v);
            return;
        }
        cur = m.entry((*p).to_string()).or_insert_with(|| json!({}));
    }
}

fn scale_write(
    ctx: &Ctx,
    rt: &Arc<ResourceType>,
    ns: &str,
    name: &str,
    w: ScaleWrite,
    p: &WriteParams,
) -> Result<Reply, StatusError> {
    let st = &ctx.st;
    let Some(spec) = rt.scale.clone() else {
        return Err(not_found_generic());
    };
    let body = ctx.body.clone();
    let written = ops::update_with(st, rt, ns, name, Target::Main, p, Mode::Update, |view| {
        let current = scale_of(rt, view);
        let new_scale = match &w {
            ScaleWrite::Replace(v) => v.clone(),
            ScaleWrite::Patch(PatchType::Json) => {
                crate::patch::json_patch(&current, &body).map_err(|e| e.to_status())?
            }
            ScaleWrite::Patch(PatchType::Apply) => {
                let applied: Value = serde_json::from_slice(&body)
                    .map_err(|e| StatusError::bad_request(e.to_string()))?;
                crate::patch::merge_patch(&current, &applied)
            }
            ScaleWrite::Patch(_) => {
                crate::patch::merge_patch_bytes(&current, &body).map_err(|e| e.to_status())?
            }
        };
        let rv = meta::resource_version(&new_scale);
        if !rv.is_empty() && rv != meta::resource_version(view) {
            return Err(StatusError::conflict(&rt.resource, &rt.group, name));
        }
        let replicas = new_scale
            .pointer("/spec/replicas")
            .cloned()
            .unwrap_or(json!(0));
        if replicas.as_i64().is_none_or(|r| r < 0) {
            return Err(StatusError::invalid(
                "Scale",
                "autoscaling",
                name,
                &[FieldError::invalid(
                    "spec.replicas",
                    &replicas,
                    "must be greater than or equal to 0",
                )],
            ));
        }
        let mut obj = view.clone();
        set_path(&mut obj, &spec.spec_replicas_path, replicas);
        Ok(obj)
    })?;
    Ok(Reply::json(written.code, &scale_of(rt, &written.object)).warnings(&written.warnings))
}

fn finalize(
    ctx: &Ctx,
    rt: &Arc<ResourceType>,
    name: &str,
    body: Value,
    p: &WriteParams,
) -> Result<ops::Written, StatusError> {
    ops::update(&ctx.st, rt, "", name, Target::Finalize, body, p)
}

fn token_request(ctx: &Ctx, ns: &str, name: &str) -> Result<Reply, StatusError> {
    let st = &ctx.st;
    let sa = st
        .store
        .get(&Gr::new("", "serviceaccounts"), ns, name)
        .ok_or_else(|| StatusError::not_found("serviceaccounts", "", name))?;
    let body: Value = if ctx.body.is_empty() {
        json!({})
    } else {
        serde_json::from_slice(&ctx.body).map_err(|e| StatusError::bad_request(e.to_string()))?
    };
    let expiration = body
        .pointer("/spec/expirationSeconds")
        .and_then(Value::as_i64)
        .unwrap_or(3600);
    let token = crate::meta::random_token(48);
    let mut user = rbac::service_account_user(ns, name);
    user.uid = sa.uid().to_string();
    st.tokens.insert(&token, user);
    let exp = jiff::Timestamp::now()
        .checked_add(jiff::SignedDuration::from_secs(expiration))
        .unwrap_or_else(|_| jiff::Timestamp::now());
    let mut spec = body.get("spec").cloned().unwrap_or(json!({}));
    spec["expirationSeconds"] = json!(expiration);
    if spec.get("audiences").is_none() {
        spec["audiences"] = json!(["https://kubernetes.default.svc.cluster.local"]);
    }
    Ok(Reply::json(
        201,
        &json!({
            "kind": "TokenRequest",
            "apiVersion": "authentication.k8s.io/v1",
            "metadata": {"name": name, "namespace": ns, "creationTimestamp": meta::now_rfc3339()},
            "spec": spec,
            "status": {"token": token, "expirationTimestamp": meta::format_time(exp)},
        }),
    ))
}

fn review(ctx: &Ctx, rt: &Arc<ResourceType>, ns: &str, body: Value) -> Result<Reply, StatusError> {
    let st = &ctx.st;
    let mut body = body;
    if let Some(m) = body.as_object_mut() {
        m.insert("apiVersion".into(), json!(rt.api_version()));
        m.insert("kind".into(), json!(rt.kind));
    }
    let result = match rt.behaviour {
        Kind::SelfSubjectAccessReview
        | Kind::SubjectAccessReview
        | Kind::LocalSubjectAccessReview => rbac::evaluate_access_review(
            &rt.kind,
            &body,
            &ctx.user,
            &st.rbac_snapshot(),
            (rt.behaviour == Kind::LocalSubjectAccessReview).then_some(ns),
        )?,
        Kind::SelfSubjectRulesReview => {
            let rns = meta::str_at(&body, "/spec/namespace").to_string();
            let (rules, errors) = st.rbac_snapshot().rules_for(&ctx.user, &rns);
            let mut resource_rules = Vec::new();
            let mut non_resource_rules = Vec::new();
            for r in rules {
                if r.non_resource_urls.is_empty() {
                    resource_rules.push(json!({
                        "verbs": r.verbs, "apiGroups": r.api_groups, "resources": r.resources,
                        "resourceNames": r.resource_names,
                    }));
                } else {
                    non_resource_rules
                        .push(json!({"verbs": r.verbs, "nonResourceURLs": r.non_resource_urls}));
                }
            }
            let mut status = json!({"resourceRules": resource_rules, "nonResourceRules": non_resource_rules, "incomplete": !errors.is_empty()});
            if !errors.is_empty() {
                status["evaluationError"] = json!(errors.join(", "));
            }
            body["status"] = status;
            body
        }
        Kind::TokenReview => {
            let token = meta::str_at(&body, "/spec/token").to_string();
            body["status"] = match st.tokens.lookup(&token) {
                Some(u) => {
                    json!({"authenticated": true, "user": {"username": u.name, "uid": u.uid, "groups": u.groups}})
                }
                None => json!({"authenticated": false, "error": "invalid bearer token"}),
            };
            body
        }
        Kind::SelfSubjectReview => {
            body["status"] = json!({"userInfo": {"username": ctx.user.name, "uid": ctx.user.uid, "groups": ctx.user.groups}});
            body
        }
        _ => return Err(method_not_allowed()),
    };
    let mut result = result;
    if let Some(m) = result.as_object_mut() {
        let md = m.entry("metadata").or_insert_with(|| json!({}));
        if md.get("creationTimestamp").is_none() {
            md["creationTimestamp"] = Value::Null;
        }
    }
    Ok(Reply::json(201, &result))
}

fn component_statuses(st: &State) -> Value {
    let items: Vec<Value> = ["controller-manager", "scheduler", "etcd-0"]
        .iter()
        .map(|n| {
            json!({"metadata": {"name": n, "creationTimestamp": null},
                   "conditions": [{"type": "Healthy", "status": "True", "message": "ok"}]})
        })
        .collect();
    json!({"kind": "ComponentStatusList", "apiVersion": "v1",
           "metadata": {"resourceVersion": st.store.current_rv().to_string()}, "items": items})
}
