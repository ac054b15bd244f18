//! The HTTP layer: routing, the API key and its signature, the replay guard, permission scopes,
//! fault injection, response shapes. Plain hyper, so "carry the request out, then drop the
//! response" can close the connection without writing a byte.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http::header::{ALLOW, CONNECTION, CONTENT_LENGTH, CONTENT_TYPE, RETRY_AFTER};
use http::{HeaderMap, HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use parking_lot::Mutex;
use serde::Serialize;
use uuid::Uuid;

use crate::api_error::ApiError;
use crate::faults::{After, FaultConfig, Faults};
use crate::keys;
use crate::metrics::{self, Metrics};
use crate::model::{AgentStatus, AgentType};
use crate::persist::Persister;
use crate::scopes;
use crate::sign::{self, NonceGuard};
use crate::state::{ListQuery, Principal, State};
use crate::time;
use crate::validate::{self, Obj};
use crate::wire::{IdentityOut, Items};

/// Request bodies above this are refused with 413.
pub(crate) const BODY_LIMIT: usize = 64 * 1024;

pub(crate) type Resp = Response<Full<Bytes>>;

/// Returned to hyper to close the connection without a response (the drop fault).
#[derive(Debug)]
pub(crate) struct DropConnection;

impl std::fmt::Display for DropConnection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("response dropped by fault injection")
    }
}

impl std::error::Error for DropConnection {}

pub(crate) struct Shared {
    pub state: Mutex<State>,
    pub nonces: Mutex<NonceGuard>,
    pub faults: Faults,
    pub metrics: Metrics,
    pub admin_token: String,
    admin_hash: keys::KeyHash,
    pub persister: Option<Persister>,
    pub signature_window: Duration,
    request_seq: AtomicU64,
    request_prefix: String,
}

impl Shared {
    pub fn new(
        state: State,
        admin_token: String,
        persister: Option<Persister>,
        signature_window: Duration,
    ) -> Self {
        Shared {
            state: Mutex::new(state),
            nonces: Mutex::new(NonceGuard::new()),
            faults: Faults::default(),
            metrics: Metrics::default(),
            admin_hash: keys::hash(&admin_token),
            admin_token,
            persister,
            signature_window,
            request_seq: AtomicU64::new(0),
            request_prefix: keys::random_alnum(8).to_ascii_lowercase(),
        }
    }

    /// Runs `f` under the state lock (released before any response is serialized).
    pub fn with_state<T>(&self, f: impl FnOnce(&mut State) -> T) -> T {
        f(&mut self.state.lock())
    }

    /// Tells the persistence task the state may have changed.
    pub fn changed(&self) {
        if let Some(p) = &self.persister {
            p.notify.notify_one();
        }
    }

    fn request_id(&self) -> HeaderValue {
        let n = self.request_seq.fetch_add(1, Ordering::Relaxed);
        HeaderValue::from_str(&format!("req_{}_{n:x}", self.request_prefix))
            .unwrap_or(HeaderValue::from_static("req"))
    }

    pub fn set_faults(&self, config: FaultConfig) -> Result<(), crate::Error> {
        self.faults.set(config)
    }
}

// ---------------------------------------------------------------------------------------------
// Routing
// ---------------------------------------------------------------------------------------------

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Op {
    CreateAgent,
    ListAgents,
    GetAgent,
    UpdateAgent,
    SuspendAgent,
    ResumeAgent,
    DeleteAgent,
    MintKey,
    ListKeys,
    DeprecateKey,
    UndeprecateKey,
    RevokeKey,
    Me,
    ResolveIdentity,
    AgentAudit,
    ListRegistry,
    GetRegistryEntry,
}

impl Op {
    pub fn name(self) -> &'static str {
        match self {
            Op::CreateAgent => "create_agent",
            Op::ListAgents => "list_agents",
            Op::GetAgent => "get_agent",
            Op::UpdateAgent => "update_agent",
            Op::SuspendAgent => "suspend_agent",
            Op::ResumeAgent => "resume_agent",
            Op::DeleteAgent => "delete_agent",
            Op::MintKey => "mint_key",
            Op::ListKeys => "list_keys",
            Op::DeprecateKey => "deprecate_key",
            Op::UndeprecateKey => "undeprecate_key",
            Op::RevokeKey => "revoke_key",
            Op::Me => "me",
            Op::ResolveIdentity => "resolve_identity",
            Op::AgentAudit => "agent_audit",
            Op::ListRegistry => "list_registry",
            Op::GetRegistryEntry => "get_registry_entry",
        }
    }

    /// The scope an app key needs (the `alter agents` reference); `None`: any key.
    fn required_scope(self) -> Option<&'static str> {
        match self {
            Op::ListAgents
            | Op::GetAgent
            | Op::ListKeys
            | Op::ListRegistry
            | Op::GetRegistryEntry => Some(scopes::AGENTS_READ),
            Op::CreateAgent
            | Op::UpdateAgent
            | Op::SuspendAgent
            | Op::ResumeAgent
            | Op::MintKey
            | Op::DeprecateKey
            | Op::UndeprecateKey => Some(scopes::AGENTS_WRITE),
            Op::DeleteAgent | Op::RevokeKey => Some(scopes::AGENTS_ADMIN),
            Op::AgentAudit => Some(scopes::AUDIT_READ),
            Op::Me | Op::ResolveIdentity => None,
        }
    }

    /// Management routes: app keys only.
    fn is_management(self) -> bool {
        !matches!(self, Op::Me | Op::ResolveIdentity)
    }

    /// State-changing calls (audited, refusals included).
    fn is_audited(self) -> bool {
        self.required_scope()
            .is_some_and(|s| s == scopes::AGENTS_WRITE || s == scopes::AGENTS_ADMIN)
    }
}

#[derive(Debug)]
enum AdminOp {
    CreateApp,
    ListApps,
    CreateAppKey,
    ListAppKeys,
    RevokeAppKey(String),
    DeprecateAppKey(String, bool),
    State,
    Audit,
    GetFaults,
    PutFaults,
    DeleteFaults,
    Metrics,
}

#[derive(Debug)]
enum Route {
    Health,
    Sdk {
        op: Op,
        agent: Option<String>,
        key: Option<String>,
    },
    Admin(AdminOp),
    NotFound,
    MethodNotAllowed(&'static str),
}

fn route(method: &Method, path: &str) -> Route {
    let Some(rest) = path.strip_prefix('/') else {
        return Route::NotFound;
    };
    let decoded: Vec<String> = rest
        .split('/')
        .map(|s| {
            percent_encoding::percent_decode_str(s)
                .decode_utf8_lossy()
                .into_owned()
        })
        .collect();
    if decoded.iter().any(String::is_empty) {
        return Route::NotFound;
    }
    let segs: Vec<&str> = decoded.iter().map(String::as_str).collect();
    let sdk = |op, agent: Option<&str>, key: Option<&str>| Route::Sdk {
        op,
        agent: agent.map(str::to_owned),
        key: key.map(str::to_owned),
    };
    macro_rules! methods {
        ($allow:literal, $($m:ident => $r:expr),+ $(,)?) => {
            match *method {
                $(Method::$m => $r,)+
                _ => Route::MethodNotAllowed($allow),
            }
        };
    }
    match segs.as_slice() {
        ["healthz"] => methods!("GET", GET => Route::Health),
        ["sdk", "agents"] => methods!("GET, POST",
            GET => sdk(Op::ListAgents, None, None),
            POST => sdk(Op::CreateAgent, None, None)),
        ["sdk", "agents", "me"] => methods!("GET", GET => sdk(Op::Me, None, None)),
        ["sdk", "agents", id] => methods!("GET, PATCH, DELETE",
            GET => sdk(Op::GetAgent, Some(id), None),
            PATCH => sdk(Op::UpdateAgent, Some(id), None),
            DELETE => sdk(Op::DeleteAgent, Some(id), None)),
        ["sdk", "agents", id, "keys"] => methods!("GET, POST",
            GET => sdk(Op::ListKeys, Some(id), None),
            POST => sdk(Op::MintKey, Some(id), None)),
        ["sdk", "agents", id, "audit"] => {
            methods!("GET", GET => sdk(Op::AgentAudit, Some(id), None))
        }
        ["sdk", "agents", id, "keys", key] => methods!("DELETE",
            DELETE => sdk(Op::RevokeKey, Some(id), Some(key))),
        ["sdk", "agents", id, "keys", key, "deprecate"] => methods!("PATCH",
            PATCH => sdk(Op::DeprecateKey, Some(id), Some(key))),
        ["sdk", "agents", id, "keys", key, "undeprecate"] => methods!("PATCH",
            PATCH => sdk(Op::UndeprecateKey, Some(id), Some(key))),
        ["sdk", "agent-registry"] => methods!("GET", GET => sdk(Op::ListRegistry, None, None)),
        ["sdk", "agent-registry", actor] => methods!("GET",
            GET => sdk(Op::GetRegistryEntry, Some(actor), None)),
        ["sdk", "identity", "resolve"] => {
            methods!("POST", POST => sdk(Op::ResolveIdentity, None, None))
        }
        ["_admin", "apps"] => methods!("GET, POST",
            GET => Route::Admin(AdminOp::ListApps),
            POST => Route::Admin(AdminOp::CreateApp)),
        ["_admin", "app-keys"] => methods!("GET, POST",
            GET => Route::Admin(AdminOp::ListAppKeys),
            POST => Route::Admin(AdminOp::CreateAppKey)),
        ["_admin", "app-keys", id] => methods!("DELETE",
            DELETE => Route::Admin(AdminOp::RevokeAppKey((*id).to_owned()))),
        ["_admin", "app-keys", id, "deprecate"] => methods!("PATCH",
            PATCH => Route::Admin(AdminOp::DeprecateAppKey((*id).to_owned(), true))),
        ["_admin", "app-keys", id, "undeprecate"] => methods!("PATCH",
            PATCH => Route::Admin(AdminOp::DeprecateAppKey((*id).to_owned(), false))),
        ["_admin", "state"] => methods!("GET", GET => Route::Admin(AdminOp::State)),
        ["_admin", "audit"] => methods!("GET", GET => Route::Admin(AdminOp::Audit)),
        ["_admin", "faults"] => methods!("GET, PUT, DELETE",
            GET => Route::Admin(AdminOp::GetFaults),
            PUT => Route::Admin(AdminOp::PutFaults),
            DELETE => Route::Admin(AdminOp::DeleteFaults)),
        ["_admin", "metrics"] => methods!("GET", GET => Route::Admin(AdminOp::Metrics)),
        _ => Route::NotFound,
    }
}

/// `PATCH /sdk/agents/{id}` with exactly `{"status": "inactive"|"active"}` is the SDK's suspend /
/// resume; anything else is an update.
fn refine(op: Op, body: &[u8]) -> Op {
    if op != Op::UpdateAgent {
        return op;
    }
    match serde_json::from_slice::<serde_json::Value>(body) {
        Ok(serde_json::Value::Object(m)) if m.len() == 1 => {
            match m.get("status").and_then(|s| s.as_str()) {
                Some("inactive") => Op::SuspendAgent,
                Some("active") => Op::ResumeAgent,
                _ => op,
            }
        }
        _ => op,
    }
}

// ---------------------------------------------------------------------------------------------
// Responses and request helpers
// ---------------------------------------------------------------------------------------------

fn respond(status: StatusCode, body: Vec<u8>, content_type: &'static str) -> Resp {
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = status;
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    r
}

fn json<T: Serialize>(status: StatusCode, value: &T) -> Resp {
    match serde_json::to_vec(value) {
        Ok(body) => respond(status, body, "application/json"),
        Err(_) => error(&ApiError::internal("cannot serialize the response")),
    }
}

fn error(e: &ApiError) -> Resp {
    let mut r = match serde_json::to_vec(&e.body()) {
        Ok(body) => respond(e.status, body, "application/json"),
        Err(_) => respond(
            StatusCode::INTERNAL_SERVER_ERROR,
            Vec::new(),
            "application/json",
        ),
    };
    if let Some(secs) = e.retry_after {
        r.headers_mut().insert(RETRY_AFTER, HeaderValue::from(secs));
    }
    if e.status == StatusCode::TOO_MANY_REQUESTS {
        r.headers_mut().insert(
            "x-alter-rate-limited-scope",
            HeaderValue::from_static("api_key"),
        );
    }
    if let Some(allow) = e.allow {
        r.headers_mut()
            .insert(ALLOW, HeaderValue::from_static(allow));
    }
    r
}

async fn read_body(body: Incoming, headers: &HeaderMap) -> Result<Bytes, ApiError> {
    let declared = headers
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    if declared.is_some_and(|n| n > BODY_LIMIT as u64) {
        return Err(ApiError::payload_too_large(BODY_LIMIT));
    }
    match Limited::new(body, BODY_LIMIT).collect().await {
        Ok(c) => Ok(c.to_bytes()),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => {
            Err(ApiError::payload_too_large(BODY_LIMIT))
        }
        Err(_) => Err(ApiError::invalid_json("the request body could not be read")),
    }
}

enum BodyUse {
    Required,
    EmptyObject,
    Ignored,
}

fn body_use(op: Op) -> BodyUse {
    match op {
        Op::CreateAgent
        | Op::UpdateAgent
        | Op::SuspendAgent
        | Op::ResumeAgent
        | Op::ResolveIdentity => BodyUse::Required,
        Op::MintKey | Op::DeprecateKey | Op::UndeprecateKey => BodyUse::EmptyObject,
        _ => BodyUse::Ignored,
    }
}

fn body_object(use_: BodyUse, body: &[u8], headers: &HeaderMap) -> Result<Obj, ApiError> {
    if matches!(use_, BodyUse::Ignored) {
        return Ok(Obj::new());
    }
    if body.iter().all(u8::is_ascii_whitespace) {
        return match use_ {
            BodyUse::Required => Err(ApiError::invalid_json("a JSON object body is required")),
            _ => Ok(Obj::new()),
        };
    }
    let json_type = headers.get(CONTENT_TYPE).is_none_or(|v| {
        v.to_str()
            .ok()
            .and_then(|s| s.split(';').next())
            .is_some_and(|m| m.trim().eq_ignore_ascii_case("application/json"))
    });
    if !json_type {
        return Err(ApiError::unsupported_media_type());
    }
    let obj = validate::parse_object(body)?;
    if matches!(use_, BodyUse::EmptyObject) {
        validate::empty(&obj)?;
    }
    Ok(obj)
}

/// A UUID in any form Python's `UUID()` reads; anything else is an id nobody has.
fn parse_id(s: Option<&str>) -> Uuid {
    s.and_then(|s| Uuid::try_parse(s).ok())
        .unwrap_or(Uuid::nil())
}

struct Query(Vec<(String, String)>);

impl Query {
    fn parse(raw: Option<&str>) -> Self {
        Query(
            form_urlencoded::parse(raw.unwrap_or("").as_bytes())
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect(),
        )
    }

    fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .rev()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    fn flag(&self, name: &str) -> Result<bool, ApiError> {
        match self.get(name) {
            None => Ok(false),
            Some(v) if v.eq_ignore_ascii_case("true") || v == "1" => Ok(true),
            Some(v) if v.eq_ignore_ascii_case("false") || v == "0" => Ok(false),
            Some(_) => Err(ApiError::validation(name, "true or false")),
        }
    }

    fn int(&self, name: &str, min: u64, max: u64) -> Result<Option<u64>, ApiError> {
        self.get(name)
            .map(|v| {
                v.parse::<u64>()
                    .ok()
                    .filter(|n| (min..=max).contains(n))
                    .ok_or_else(|| {
                        ApiError::validation(name, format!("an integer in {min}..={max}"))
                    })
            })
            .transpose()
    }

    fn page(&self, default: u64, max: u64) -> Result<(usize, usize), ApiError> {
        let limit = self.int("limit", 1, max)?.unwrap_or(default);
        let offset = self.int("offset", 0, u64::from(u32::MAX))?.unwrap_or(0);
        Ok((limit as usize, offset as usize))
    }
}

// ---------------------------------------------------------------------------------------------
// Handler
// ---------------------------------------------------------------------------------------------

pub(crate) async fn handle(
    shared: Arc<Shared>,
    req: Request<Incoming>,
) -> Result<Resp, DropConnection> {
    let request_id = shared.request_id();
    let (parts, body) = req.into_parts();
    let route = route(&parts.method, parts.uri.path());
    // Always read the body (up to the limit): a response that leaves it unread makes hyper close
    // the connection under a client that may be reusing it.
    let body = read_body(body, &parts.headers).await;
    let close = matches!(&body, Err(e) if e.status == StatusCode::PAYLOAD_TOO_LARGE);
    let (metric, mut resp) = match route {
        Route::Health => (
            "healthz",
            respond(StatusCode::OK, b"ok".to_vec(), "text/plain; charset=utf-8"),
        ),
        Route::NotFound => ("unrouted", error(&ApiError::not_found())),
        Route::MethodNotAllowed(allow) => ("unrouted", error(&ApiError::method_not_allowed(allow))),
        Route::Admin(op) => (
            "admin",
            admin(&shared, op, &parts, body).unwrap_or_else(|e| error(&e)),
        ),
        Route::Sdk { op, agent, key } => {
            let op = match &body {
                Ok(b) => refine(op, b),
                Err(_) => op,
            };
            let mut after = After::Respond;
            if let Some(plan) = shared.faults.plan(op.name()) {
                if !plan.delay.is_zero() {
                    tokio::time::sleep(plan.delay).await;
                }
                if let Some(refusal) = plan.refuse {
                    let mut r = error(&refusal);
                    r.headers_mut().insert("x-request-id", request_id);
                    shared.metrics.record(op.name(), r.status().as_u16());
                    return Ok(r);
                }
                after = plan.after;
            }
            let r = sdk(&shared, op, agent.as_deref(), key.as_deref(), &parts, body);
            shared.changed();
            match after {
                After::Respond => (op.name(), r),
                After::Drop => {
                    shared.metrics.record(op.name(), metrics::DROPPED);
                    tracing::debug!(operation = op.name(), "response dropped by fault injection");
                    return Err(DropConnection);
                }
                After::Replace(e) => (op.name(), error(&e)),
            }
        }
    };
    resp.headers_mut().insert("x-request-id", request_id);
    if close {
        resp.headers_mut()
            .insert(CONNECTION, HeaderValue::from_static("close"));
    }
    shared.metrics.record(metric, resp.status().as_u16());
    Ok(resp)
}

fn sdk(
    shared: &Shared,
    op: Op,
    agent: Option<&str>,
    key: Option<&str>,
    parts: &http::request::Parts,
    body: Result<Bytes, ApiError>,
) -> Resp {
    let body = match body {
        Ok(b) => b,
        Err(e) => return error(&e),
    };
    let principal = match authenticate(shared, parts, &body) {
        Ok(p) => p,
        Err(e) => return error(&e),
    };
    let agent_id = parse_id(agent);
    let key_id = parse_id(key);
    let result = authorize(op, &principal, &parts.headers)
        .and_then(|()| operate(shared, op, &principal, agent_id, key_id, parts, &body));
    let mut resp = match result {
        Ok(r) => r,
        Err(e) => {
            if let (true, Principal::App { app, key, .. }) = (op.is_audited(), &principal) {
                let some = |u: Uuid| (!u.is_nil()).then_some(u);
                shared.state.lock().record_failure(
                    *app,
                    *key,
                    op.name(),
                    some(agent_id),
                    some(key_id),
                    e.code,
                    time::now(),
                );
            }
            error(&e)
        }
    };
    if principal.deprecated() {
        resp.headers_mut()
            .insert("x-alter-key-deprecated", HeaderValue::from_static("true"));
    }
    resp
}

/// The key (`x-api-key`), its signature, the replay guard, then its state.
fn authenticate(
    shared: &Shared,
    parts: &http::request::Parts,
    body: &[u8],
) -> Result<Principal, ApiError> {
    let api_key = parts
        .headers
        .get("x-api-key")
        .map(|v| v.to_str().map(str::trim))
        .ok_or_else(ApiError::missing_api_key)?
        .map_err(|_| ApiError::invalid_key())?;
    if api_key.is_empty() {
        return Err(ApiError::missing_api_key());
    }
    let hash = keys::hash(api_key);
    if !shared.state.lock().knows(&hash) {
        return Err(ApiError::invalid_key());
    }
    let now = time::now();
    let window = shared.signature_window.as_secs();
    let nonce = sign::verify(
        api_key,
        &sign::Signed {
            method: parts.method.as_str(),
            path: parts.uri.path(),
            query: parts.uri.query(),
            headers: &parts.headers,
            body,
        },
        now.as_second(),
        window,
    )?;
    if !shared.nonces.lock().admit(&nonce, now.as_second(), window) {
        return Err(ApiError::unauthorized(
            "nonce_reused",
            "this X-Alter-Nonce was already used: a replayed request",
        ));
    }
    shared.state.lock().admit(&hash, now)
}

/// Which principal may call which route, and with which scope.
fn authorize(op: Op, principal: &Principal, headers: &HeaderMap) -> Result<(), ApiError> {
    match principal {
        Principal::Agent { inactive, .. } => {
            if *inactive && op != Op::Me {
                return Err(ApiError::agent_inactive());
            }
            if op.is_management() {
                return Err(ApiError::agent_cannot_mint_subagents());
            }
            Ok(())
        }
        Principal::App { scopes: held, .. } => {
            if op == Op::Me {
                return Err(ApiError::me_requires_agent_key());
            }
            let effective = match sign::constraints(headers) {
                Some(narrowed) => {
                    if narrowed.iter().any(|s| !scopes::satisfies(held, s)) {
                        return Err(ApiError::constraint_not_narrowing());
                    }
                    narrowed
                }
                None => held.clone(),
            };
            match op.required_scope() {
                Some(required) if !scopes::satisfies(&effective, required) => {
                    Err(ApiError::insufficient_scope(required, &effective))
                }
                _ => Ok(()),
            }
        }
    }
}

fn list_query(q: &Query) -> Result<ListQuery, ApiError> {
    let (limit, offset) = q.page(50, 1000)?;
    let statuses = q
        .get("status")
        .filter(|s| !s.is_empty())
        .map(|s| {
            s.split(',')
                .map(|w| match w.trim() {
                    "active" => Ok(AgentStatus::Active),
                    "inactive" => Ok(AgentStatus::Inactive),
                    "revoked" => Ok(AgentStatus::Revoked),
                    _ => Err(ApiError::validation(
                        "status",
                        "comma-separated active, inactive, revoked",
                    )),
                })
                .collect::<Result<Vec<_>, _>>()
        })
        .transpose()?;
    let agent_type = match q.get("type").filter(|s| !s.is_empty()) {
        None => None,
        Some("agent") => Some(AgentType::Agent),
        Some("service") => Some(AgentType::Service),
        Some(_) => return Err(ApiError::validation("type", "agent or service")),
    };
    let text = |name: &str| q.get(name).filter(|s| !s.is_empty()).map(str::to_owned);
    Ok(ListQuery {
        name: text("name"),
        include_revoked: q.flag("include_revoked")?,
        statuses,
        agent_type,
        provider: text("provider"),
        search: text("search"),
        limit,
        offset,
    })
}

fn operate(
    shared: &Shared,
    op: Op,
    principal: &Principal,
    agent_id: Uuid,
    key_id: Uuid,
    parts: &http::request::Parts,
    body: &[u8],
) -> Result<Resp, ApiError> {
    let obj = body_object(body_use(op), body, &parts.headers)?;
    let q = Query::parse(parts.uri.query());
    let now = time::now();
    let ok = StatusCode::OK;
    let (app, actor) = match principal {
        Principal::App { app, key, .. } => (*app, *key),
        Principal::Agent { app, .. } => (*app, Uuid::nil()),
    };
    Ok(match op {
        Op::CreateAgent => {
            let req = validate::create(&obj)?;
            let idem = validate::idempotency_key(&parts.headers)?;
            let minted = keys::mint_agent_key();
            let (out, replayed) =
                shared.with_state(|s| s.create_agent(app, actor, req, idem, minted, now))?;
            json(if replayed { ok } else { StatusCode::CREATED }, &out)
        }
        Op::ListAgents => {
            let lq = list_query(&q)?;
            json(ok, &shared.with_state(|s| s.list_agents(app, &lq, now)))
        }
        Op::GetAgent => {
            let include_revoked = q.flag("include_revoked")?;
            json(
                ok,
                &shared.with_state(|s| s.get_agent(app, agent_id, include_revoked, now))?,
            )
        }
        Op::UpdateAgent | Op::SuspendAgent | Op::ResumeAgent => {
            let req = validate::update(&obj)?;
            let expected = q.int("expected_version", 1, u64::MAX >> 1)?;
            let grace = q.int("grace_seconds", 0, validate::MAX_GRACE_SECONDS)?;
            let (agent, _) = shared
                .with_state(|s| s.update_agent(app, actor, agent_id, req, expected, grace, now))?;
            json(ok, &agent)
        }
        Op::DeleteAgent => json(
            ok,
            &shared.with_state(|s| s.delete_agent(app, actor, agent_id, now))?,
        ),
        Op::MintKey => {
            let minted = keys::mint_agent_key();
            let out = shared.with_state(|s| s.mint_key(app, actor, agent_id, minted, now))?;
            json(StatusCode::CREATED, &out)
        }
        Op::ListKeys => json(
            ok,
            &Items {
                items: shared.with_state(|s| s.list_keys(app, agent_id))?,
            },
        ),
        Op::DeprecateKey | Op::UndeprecateKey => {
            let deprecate = op == Op::DeprecateKey;
            json(
                ok,
                &shared.with_state(|s| {
                    s.set_key_deprecated(app, actor, agent_id, key_id, deprecate, now)
                })?,
            )
        }
        Op::RevokeKey => {
            let force = q.flag("force")?;
            json(
                ok,
                &shared.with_state(|s| s.revoke_key(app, actor, agent_id, key_id, force, now))?,
            )
        }
        Op::Me => {
            let Principal::Agent { agent, .. } = principal else {
                return Err(ApiError::me_requires_agent_key());
            };
            json(ok, &shared.with_state(|s| s.me(*agent, now))?)
        }
        Op::ResolveIdentity => {
            validate::identity(&obj)?;
            let (agent_id, actor_id) = match principal {
                Principal::Agent { agent, .. } => {
                    let actor = shared.with_state(|s| s.actor_of(*agent));
                    (Some(agent.to_string()), actor.map(|a| a.to_string()))
                }
                Principal::App { .. } => (None, None),
            };
            json(
                ok,
                &IdentityOut {
                    app_id: app.to_string(),
                    app_user_id: None,
                    external_subject_id: None,
                    idp_id: None,
                    user_status: None,
                    group_ids: Vec::new(),
                    agent_id,
                    actor_id,
                    trace: None,
                },
            )
        }
        Op::AgentAudit => {
            let (limit, offset) = q.page(50, 500)?;
            json(
                ok,
                &shared.with_state(|s| s.agent_audit(app, agent_id, limit, offset))?,
            )
        }
        Op::ListRegistry => {
            let (limit, offset) = q.page(50, 1000)?;
            json(
                ok,
                &shared.with_state(|s| s.registry(app, limit, offset, now)),
            )
        }
        Op::GetRegistryEntry => {
            // The actor id travels in the `agent` slot of the route.
            json(
                ok,
                &shared.with_state(|s| s.registry_entry(app, agent_id, now))?,
            )
        }
    })
}

// ---------------------------------------------------------------------------------------------
// Admin API
// ---------------------------------------------------------------------------------------------

fn admin(
    shared: &Shared,
    op: AdminOp,
    parts: &http::request::Parts,
    body: Result<Bytes, ApiError>,
) -> Result<Resp, ApiError> {
    let token = parts
        .headers
        .get(http::header::AUTHORIZATION)
        .ok_or_else(|| {
            ApiError::unauthorized(
                "missing_authorization",
                "send Authorization: Bearer <admin token>",
            )
        })?
        .to_str()
        .ok()
        .and_then(|v| {
            v.trim()
                .strip_prefix("Bearer ")
                .or_else(|| v.trim().strip_prefix("bearer "))
        })
        .map(str::trim)
        .ok_or_else(|| {
            ApiError::unauthorized(
                "invalid_authorization",
                "Authorization must be `Bearer <token>`",
            )
        })?;
    // Digests, not strings: no early exit on the first differing byte.
    if keys::hash(token) != shared.admin_hash {
        return Err(ApiError::unauthorized(
            "invalid_authorization",
            "not the emulator's admin token",
        ));
    }
    let body = body?;
    let object = || body_object(BodyUse::Required, &body, &parts.headers);
    let ok = StatusCode::OK;
    let id_of = |s: &str| Uuid::try_parse(s).unwrap_or(Uuid::nil());
    let app_key_not_found = || {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "app_key_not_found",
            "no app key with that id",
        )
    };
    Ok(match op {
        AdminOp::CreateApp => {
            let name = validate::label(&object()?, "name")?;
            let app = crate::create_app(shared, name);
            json(StatusCode::CREATED, &app)
        }
        AdminOp::ListApps => {
            let apps = shared.with_state(|s| s.snapshot(time::now()).apps);
            json(ok, &Items { items: apps })
        }
        AdminOp::CreateAppKey => {
            let obj = object()?;
            let label = validate::label(&obj, "label")?;
            let app = obj
                .get("app_id")
                .and_then(|v| v.as_str())
                .ok_or_else(|| ApiError::validation("app_id", "required string"))?;
            let scopes: Option<Vec<String>> = match obj.get("scopes") {
                None | Some(serde_json::Value::Null) => None,
                Some(v) => Some(
                    serde_json::from_value(v.clone())
                        .map_err(|_| ApiError::validation("scopes", "a list of scope names"))?,
                ),
            };
            let created =
                crate::create_app_key(shared, app, label, scopes).map_err(|e| match e {
                    crate::Error::AppNotFound(_) => ApiError::new(
                        StatusCode::NOT_FOUND,
                        "app_not_found",
                        "no app with that id",
                    ),
                    other => ApiError::validation("scopes", other.to_string()),
                })?;
            json(StatusCode::CREATED, &created)
        }
        AdminOp::ListAppKeys => {
            let keys: Vec<_> =
                shared.with_state(|s| s.app_keys().iter().map(|k| k.view()).collect());
            json(ok, &Items { items: keys })
        }
        AdminOp::RevokeAppKey(id) => {
            let k = shared.with_state(|s| s.revoke_app_key(id_of(&id), time::now()));
            shared.changed();
            json(ok, &k.ok_or_else(app_key_not_found)?.view())
        }
        AdminOp::DeprecateAppKey(id, deprecated) => {
            let k = shared
                .with_state(|s| s.set_app_key_deprecated(id_of(&id), deprecated, time::now()));
            shared.changed();
            json(ok, &k.ok_or_else(app_key_not_found)?.view())
        }
        AdminOp::State => json(ok, &shared.with_state(|s| s.snapshot(time::now()))),
        AdminOp::Audit => {
            let q = Query::parse(parts.uri.query());
            let since = q.int("since", 0, u64::MAX >> 1)?.unwrap_or(0);
            let limit = q.int("limit", 1, 100_000)?.unwrap_or(1000) as usize;
            json(
                ok,
                &Items {
                    items: shared.with_state(|s| s.audit(since, limit)),
                },
            )
        }
        AdminOp::GetFaults => json(ok, &shared.faults.get()),
        AdminOp::PutFaults => {
            // The fault JSON holds no secret: serde's message may quote it.
            let config: FaultConfig = serde_json::from_value(serde_json::Value::Object(object()?))
                .map_err(|e| ApiError::validation("faults", e.to_string()))?;
            shared
                .set_faults(config)
                .map_err(|e| ApiError::validation("faults", e.to_string()))?;
            json(ok, &shared.faults.get())
        }
        AdminOp::DeleteFaults => {
            let _ = shared.set_faults(FaultConfig::default());
            json(ok, &shared.faults.get())
        }
        AdminOp::Metrics => json(ok, &shared.metrics.snapshot()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes() {
        let r = |m: Method, p: &str| format!("{:?}", route(&m, p));
        assert!(r(Method::GET, "/sdk/agents/me").contains("Me"));
        assert!(r(Method::PATCH, "/sdk/agents/me").contains("MethodNotAllowed"));
        assert!(r(Method::POST, "/sdk/agents").contains("CreateAgent"));
        assert!(r(Method::PATCH, "/sdk/agents/x/keys/y/deprecate").contains("DeprecateKey"));
        assert!(r(Method::DELETE, "/sdk/agents/x/keys/y").contains("RevokeKey"));
        assert!(r(Method::GET, "/sdk/agent-registry/a").contains("GetRegistryEntry"));
        assert!(r(Method::GET, "/sdk/agents/").contains("NotFound"));
        assert!(r(Method::GET, "/api/agents").contains("NotFound"));
        assert!(r(Method::PUT, "/_admin/faults").contains("PutFaults"));
    }

    #[test]
    fn suspend_and_resume_are_told_from_updates() {
        assert_eq!(
            refine(Op::UpdateAgent, br#"{"status":"inactive"}"#),
            Op::SuspendAgent
        );
        assert_eq!(
            refine(Op::UpdateAgent, br#"{"status":"active"}"#),
            Op::ResumeAgent
        );
        assert_eq!(
            refine(
                Op::UpdateAgent,
                br#"{"status":"active","display_name":"x"}"#
            ),
            Op::UpdateAgent
        );
        assert_eq!(refine(Op::UpdateAgent, b"nonsense"), Op::UpdateAgent);
        assert_eq!(
            refine(Op::GetAgent, br#"{"status":"active"}"#),
            Op::GetAgent
        );
    }

    #[test]
    fn scope_requirements_follow_the_cli_reference() {
        assert_eq!(Op::ListKeys.required_scope(), Some(scopes::AGENTS_READ));
        assert_eq!(Op::MintKey.required_scope(), Some(scopes::AGENTS_WRITE));
        assert_eq!(
            Op::DeprecateKey.required_scope(),
            Some(scopes::AGENTS_WRITE)
        );
        assert_eq!(Op::RevokeKey.required_scope(), Some(scopes::AGENTS_ADMIN));
        assert_eq!(Op::DeleteAgent.required_scope(), Some(scopes::AGENTS_ADMIN));
        assert_eq!(Op::AgentAudit.required_scope(), Some(scopes::AUDIT_READ));
        assert!(Op::RevokeKey.is_audited() && !Op::ListKeys.is_audited());
        assert!(!Op::Me.is_management());
    }
}
