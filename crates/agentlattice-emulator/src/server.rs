//! The HTTP layer: routing, authentication, body limits, fault injection, response shapes.
//! Built directly on hyper so that "commit, then drop the response" can close the connection
//! without writing a single byte.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use agentlattice_contract::Operation as Op;
use bytes::Bytes;
use http::header::{ALLOW, AUTHORIZATION, CONNECTION, CONTENT_LENGTH, CONTENT_TYPE, RETRY_AFTER};
use http::{HeaderMap, HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use parking_lot::Mutex;
use serde::Serialize;
use uuid::Uuid;

use crate::api_error::ApiError;
use crate::faults::{After, FaultConfig, FaultEngine};
use crate::keys::{self, KeyKind};
use crate::metrics::{self, Metrics};
use crate::persist::Persister;
use crate::state::{ListQuery, Principal, State};
use crate::time;
use crate::validate::{self, Obj};
use crate::wire::Items;

/// Request bodies above this are refused with 413 (contract §1).
pub(crate) const BODY_LIMIT: usize = 64 * 1024;
const DEPRECATED_HEADER: &str = "x-al-key-deprecated";
const REQUEST_ID_HEADER: &str = "x-request-id";

pub(crate) type Resp = Response<Full<Bytes>>;

/// Returned to hyper to close the connection without any response (the "drop" fault).
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
    pub faults: FaultEngine,
    pub metrics: Metrics,
    pub admin_token: String,
    admin_hash: keys::KeyHash,
    pub wrap_errors: AtomicBool,
    pub persister: Option<Persister>,
    request_seq: AtomicU64,
    request_prefix: String,
}

impl Shared {
    pub fn new(
        state: State,
        admin_token: String,
        wrap_errors: bool,
        persister: Option<Persister>,
    ) -> Self {
        Shared {
            state: Mutex::new(state),
            faults: FaultEngine::default(),
            metrics: Metrics::default(),
            admin_hash: keys::hash(&admin_token),
            admin_token,
            wrap_errors: AtomicBool::new(wrap_errors),
            persister,
            request_seq: AtomicU64::new(0),
            request_prefix: keys::random_alnum(8).to_ascii_lowercase(),
        }
    }

    /// Runs `f` under the state lock. The guard is released when this returns, so callers never
    /// serialize a response (or await) while holding it.
    pub fn with_state<T>(&self, f: impl FnOnce(&mut State) -> T) -> T {
        let mut guard = self.state.lock();
        f(&mut guard)
    }

    /// Tells the persistence task that the state may have changed.
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

    fn wrap(&self) -> bool {
        self.wrap_errors.load(Ordering::Relaxed)
    }

    pub fn set_faults(&self, config: FaultConfig) -> Result<(), crate::Error> {
        self.faults.set(config)
    }
}

// ---------------------------------------------------------------------------------------------
// Routing
// ---------------------------------------------------------------------------------------------

/// What the emulator knows of each operation beyond its name (the names are the contract's,
/// shared with the client through `agentlattice-contract`; the routes are the emulator's own).
trait OpRules {
    /// Called with an agent key (the agent API), not a service key.
    fn is_agent_api(&self) -> bool;
    /// A state-changing provisioning call (audited, failures included).
    fn is_audited(&self) -> bool;
    /// Whether it takes a body.
    fn body(&self) -> BodyUse;
}

impl OpRules for Op {
    fn is_agent_api(&self) -> bool {
        matches!(self, Op::Whoami | Op::ExecuteAction)
    }

    fn is_audited(&self) -> bool {
        !matches!(
            self,
            Op::ListAgents | Op::GetAgent | Op::ListKeys | Op::Whoami | Op::ExecuteAction
        )
    }

    fn body(&self) -> BodyUse {
        match self {
            Op::Register | Op::UpdateAgent | Op::ExecuteAction => BodyUse::Required,
            Op::ListAgents | Op::GetAgent | Op::ListKeys | Op::Whoami => BodyUse::Ignored,
            _ => BodyUse::Optional,
        }
    }
}

enum BodyUse {
    Required,
    Optional,
    Ignored,
}

#[derive(Debug)]
enum AdminOp {
    CreateServiceKey,
    ListServiceKeys,
    RevokeServiceKey(String),
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
    Api {
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
    let segs: Vec<&str> = rest.split('/').collect();
    if segs.iter().any(|s| s.is_empty()) {
        return Route::NotFound;
    }
    let api = |op: Op, agent: Option<&str>, key: Option<&str>| Route::Api {
        op,
        agent: agent.map(str::to_owned),
        key: key.map(str::to_owned),
    };
    let m = method;
    match segs.as_slice() {
        ["healthz"] => match *m {
            Method::GET => Route::Health,
            _ => Route::MethodNotAllowed("GET"),
        },
        ["api", "agents", "register"] => match *m {
            Method::POST => api(Op::Register, None, None),
            _ => Route::MethodNotAllowed("POST"),
        },
        ["api", "agents"] => match *m {
            Method::GET => api(Op::ListAgents, None, None),
            _ => Route::MethodNotAllowed("GET"),
        },
        ["api", "agents", id] => match *m {
            Method::GET => api(Op::GetAgent, Some(id), None),
            Method::PATCH => api(Op::UpdateAgent, Some(id), None),
            Method::DELETE => api(Op::RevokeAgent, Some(id), None),
            _ => Route::MethodNotAllowed("GET, PATCH, DELETE"),
        },
        ["api", "agents", id, "halt"] => match *m {
            Method::POST => api(Op::HaltAgent, Some(id), None),
            _ => Route::MethodNotAllowed("POST"),
        },
        ["api", "agents", id, "resume"] => match *m {
            Method::POST => api(Op::ResumeAgent, Some(id), None),
            _ => Route::MethodNotAllowed("POST"),
        },
        ["api", "agents", id, "keys"] => match *m {
            Method::GET => api(Op::ListKeys, Some(id), None),
            Method::POST => api(Op::MintKey, Some(id), None),
            _ => Route::MethodNotAllowed("GET, POST"),
        },
        ["api", "agents", id, "keys", key] => match *m {
            Method::DELETE => api(Op::RevokeKey, Some(id), Some(key)),
            _ => Route::MethodNotAllowed("DELETE"),
        },
        ["api", "agents", id, "keys", key, "deprecate"] => match *m {
            Method::PATCH => api(Op::DeprecateKey, Some(id), Some(key)),
            _ => Route::MethodNotAllowed("PATCH"),
        },
        ["api", "agents", id, "keys", key, "undeprecate"] => match *m {
            Method::PATCH => api(Op::UndeprecateKey, Some(id), Some(key)),
            _ => Route::MethodNotAllowed("PATCH"),
        },
        ["api", "v1", "whoami"] => match *m {
            Method::GET => api(Op::Whoami, None, None),
            _ => Route::MethodNotAllowed("GET"),
        },
        ["api", "v1", "actions"] => match *m {
            Method::POST => api(Op::ExecuteAction, None, None),
            _ => Route::MethodNotAllowed("POST"),
        },
        ["_admin", "service-keys"] => match *m {
            Method::GET => Route::Admin(AdminOp::ListServiceKeys),
            Method::POST => Route::Admin(AdminOp::CreateServiceKey),
            _ => Route::MethodNotAllowed("GET, POST"),
        },
        ["_admin", "service-keys", id] => match *m {
            Method::DELETE => Route::Admin(AdminOp::RevokeServiceKey((*id).to_owned())),
            _ => Route::MethodNotAllowed("DELETE"),
        },
        ["_admin", "state"] => match *m {
            Method::GET => Route::Admin(AdminOp::State),
            _ => Route::MethodNotAllowed("GET"),
        },
        ["_admin", "audit"] => match *m {
            Method::GET => Route::Admin(AdminOp::Audit),
            _ => Route::MethodNotAllowed("GET"),
        },
        ["_admin", "faults"] => match *m {
            Method::GET => Route::Admin(AdminOp::GetFaults),
            Method::PUT => Route::Admin(AdminOp::PutFaults),
            Method::DELETE => Route::Admin(AdminOp::DeleteFaults),
            _ => Route::MethodNotAllowed("GET, PUT, DELETE"),
        },
        ["_admin", "metrics"] => match *m {
            Method::GET => Route::Admin(AdminOp::Metrics),
            _ => Route::MethodNotAllowed("GET"),
        },
        _ => Route::NotFound,
    }
}

// ---------------------------------------------------------------------------------------------
// Responses
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
        Err(_) => respond(
            StatusCode::INTERNAL_SERVER_ERROR,
            br#"{"error":"internal_error","message":"cannot serialize the response"}"#.to_vec(),
            "application/json",
        ),
    }
}

fn error(e: &ApiError, wrap: bool) -> Resp {
    let mut r = json(e.status, &e.body(wrap));
    if let Some(secs) = e.retry_after {
        r.headers_mut().insert(RETRY_AFTER, HeaderValue::from(secs));
    }
    if let Some(allow) = e.allow {
        r.headers_mut()
            .insert(ALLOW, HeaderValue::from_static(allow));
    }
    r
}

// ---------------------------------------------------------------------------------------------
// Request helpers
// ---------------------------------------------------------------------------------------------

/// The token of `Authorization: Bearer <token>`.
fn bearer(headers: &HeaderMap) -> Result<&str, ApiError> {
    let Some(value) = headers.get(AUTHORIZATION) else {
        return Err(ApiError::missing_authorization());
    };
    let malformed =
        || ApiError::invalid_authorization("the Authorization header must be `Bearer <key>`");
    let value = value.to_str().map_err(|_| malformed())?;
    let (scheme, token) = value.trim().split_once(' ').ok_or_else(malformed)?;
    let token = token.trim();
    if !scheme.eq_ignore_ascii_case("bearer") || token.is_empty() || token.contains(' ') {
        return Err(malformed());
    }
    Ok(token)
}

async fn read_body(body: Incoming, headers: &HeaderMap) -> Result<Bytes, ApiError> {
    if let Some(len) = headers.get(CONTENT_LENGTH).and_then(|v| v.to_str().ok())
        && len
            .trim()
            .parse::<u64>()
            .is_ok_and(|n| n > BODY_LIMIT as u64)
    {
        return Err(ApiError::payload_too_large(BODY_LIMIT));
    }
    match Limited::new(body, BODY_LIMIT).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => {
            Err(ApiError::payload_too_large(BODY_LIMIT))
        }
        Err(_) => Err(ApiError::invalid_json("the request body could not be read")),
    }
}

fn is_json(headers: &HeaderMap) -> bool {
    match headers.get(CONTENT_TYPE) {
        // No Content-Type at all: take the body as JSON (only a *different* type is refused).
        None => true,
        Some(v) => v
            .to_str()
            .ok()
            .and_then(|s| s.split(';').next())
            .is_some_and(|mime| mime.trim().eq_ignore_ascii_case("application/json")),
    }
}

/// Parses a body according to the operation's use of it.
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
    if !is_json(headers) {
        return Err(ApiError::unsupported_media_type());
    }
    validate::parse_object(body)
}

/// Only the canonical lower-case hyphenated form is an id; anything else is an id nobody has.
fn parse_id(s: Option<&str>) -> Uuid {
    s.and_then(|s| {
        Uuid::try_parse(s)
            .ok()
            .filter(|u| u.hyphenated().to_string() == s)
    })
    .unwrap_or(Uuid::nil())
}

fn query_pairs(query: Option<&str>) -> Vec<(String, String)> {
    form_urlencoded::parse(query.unwrap_or("").as_bytes())
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}

fn query_get<'a>(pairs: &'a [(String, String)], name: &str) -> Option<&'a str> {
    pairs
        .iter()
        .rev()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

fn query_bool(pairs: &[(String, String)], name: &'static str) -> Result<bool, ApiError> {
    match query_get(pairs, name) {
        None | Some("false") => Ok(false),
        Some("true") => Ok(true),
        Some(_) => Err(ApiError::validation(name, "must be true or false")),
    }
}

fn query_int(
    pairs: &[(String, String)],
    name: &'static str,
    default: u64,
    min: u64,
    max: u64,
) -> Result<u64, ApiError> {
    match query_get(pairs, name) {
        None => Ok(default),
        Some(v) => match v.parse::<i128>() {
            Ok(n) if n >= i128::from(min) && n <= i128::from(max) => Ok(n as u64),
            _ => Err(ApiError::validation(
                name,
                format!("must be an integer in {min}..={max}"),
            )),
        },
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
    let route = route(req.method(), req.uri().path());
    let (parts, body) = req.into_parts();
    // Always read the body (up to the limit), whatever the answer will be: a response that leaves
    // the body unread makes hyper close the connection, and a client that has just put that
    // connection back in its pool would see a spurious transport error on its next request.
    let body = read_body(body, &parts.headers).await;
    // Past the limit the rest of the body is not read, so the connection cannot be reused: say so.
    let close = matches!(&body, Err(e) if e.status == StatusCode::PAYLOAD_TOO_LARGE);
    let wrap = shared.wrap();
    let (metric, mut resp) = match route {
        Route::Health => (
            "healthz",
            respond(StatusCode::OK, b"ok".to_vec(), "text/plain; charset=utf-8"),
        ),
        Route::NotFound => ("unrouted", error(&ApiError::not_found(), wrap)),
        Route::MethodNotAllowed(allow) => (
            "unrouted",
            error(&ApiError::method_not_allowed(allow), wrap),
        ),
        Route::Admin(op) => ("admin", admin(&shared, op, parts, body)),
        Route::Api { op, agent, key } => {
            let plan = shared.faults.plan(op.as_str());
            let mut after = After::Respond;
            if let Some(plan) = plan {
                if !plan.delay.is_zero() {
                    tokio::time::sleep(plan.delay).await;
                }
                if let Some(reject) = plan.reject {
                    let mut r = error(&reject, wrap);
                    r.headers_mut().insert(REQUEST_ID_HEADER, request_id);
                    shared.metrics.record(op.as_str(), r.status().as_u16());
                    return Ok(r);
                }
                after = plan.after;
            }
            let r = api(&shared, op, agent.as_deref(), key.as_deref(), parts, body);
            shared.changed();
            match after {
                After::Respond => (op.as_str(), r),
                After::Drop => {
                    shared.metrics.record(op.as_str(), metrics::DROPPED);
                    tracing::debug!(
                        operation = op.as_str(),
                        "response dropped by fault injection"
                    );
                    return Err(DropConnection);
                }
                After::Replace(e) => (op.as_str(), error(&e, wrap)),
            }
        }
    };
    resp.headers_mut().insert(REQUEST_ID_HEADER, request_id);
    if close {
        resp.headers_mut()
            .insert(CONNECTION, HeaderValue::from_static("close"));
    }
    shared.metrics.record(metric, resp.status().as_u16());
    Ok(resp)
}

fn api(
    shared: &Shared,
    op: Op,
    agent: Option<&str>,
    key: Option<&str>,
    parts: http::request::Parts,
    body: Result<Bytes, ApiError>,
) -> Resp {
    let wrap = shared.wrap();

    // Authenticate (401), then authorize (403).
    let principal = match bearer(&parts.headers).and_then(|token| {
        if keys::kind_of(token).is_none() {
            return Err(ApiError::invalid_authorization(
                "the bearer token is not an AgentLattice key (al_svc_… or al_agent_…)",
            ));
        }
        let hash = keys::hash(token);
        shared.state.lock().authenticate(&hash, time::now())
    }) {
        Ok(p) => p,
        Err(e) => return error(&e, wrap),
    };
    let deprecated = matches!(
        principal,
        Principal::Agent {
            deprecated: true,
            ..
        }
    );
    let mut resp = match (op.is_agent_api(), principal) {
        (true, Principal::Service { .. }) => error(&ApiError::service_key_cannot_act(), wrap),
        (false, Principal::Agent { .. }) => error(&ApiError::agent_key_cannot_provision(), wrap),
        (_, principal) => {
            let agent_id = parse_id(agent);
            let key_id = parse_id(key);
            match operate(shared, op, principal, agent_id, key_id, parts, body) {
                Ok(r) => r,
                Err(e) => {
                    if let (true, Principal::Service { id }) = (op.is_audited(), principal) {
                        let nil_to_none = |u: Uuid| (!u.is_nil()).then_some(u);
                        shared.state.lock().record_failure(
                            id,
                            op.as_str(),
                            nil_to_none(agent_id),
                            nil_to_none(key_id),
                            e.code,
                            time::now(),
                        );
                    }
                    error(&e, wrap)
                }
            }
        }
    };
    if deprecated {
        resp.headers_mut()
            .insert(DEPRECATED_HEADER, HeaderValue::from_static("true"));
    }
    resp
}

fn operate(
    shared: &Shared,
    op: Op,
    principal: Principal,
    agent_id: Uuid,
    key_id: Uuid,
    parts: http::request::Parts,
    body: Result<Bytes, ApiError>,
) -> Result<Resp, ApiError> {
    let body = body?;
    let obj = body_object(op.body(), &body, &parts.headers)?;
    let headers = &parts.headers;
    let now = time::now();
    let ok = StatusCode::OK;
    let svc = match principal {
        Principal::Service { id } => id,
        Principal::Agent { .. } => Uuid::nil(),
    };
    // Every `with_state` call releases the lock before the response is serialized.
    let st = shared;
    Ok(match op {
        Op::Register => {
            let req = validate::register(&obj)?;
            let idem = validate::header_token(headers, "idempotency-key")?;
            let minted = keys::mint(KeyKind::Agent);
            let out = st.with_state(|s| s.register(svc, req, idem, minted, now))?;
            json(
                if out.replayed {
                    ok
                } else {
                    StatusCode::CREATED
                },
                &out,
            )
        }
        Op::ListAgents => {
            let pairs = query_pairs(parts.uri.query());
            let q = ListQuery {
                name: query_get(&pairs, "name")
                    .filter(|n| !n.is_empty())
                    .map(str::to_owned),
                include_revoked: query_bool(&pairs, "include_revoked")?,
                limit: query_int(&pairs, "limit", 50, 1, 1000)? as usize,
                offset: query_int(&pairs, "offset", 0, 0, u64::from(u32::MAX))? as usize,
            };
            let out = st.with_state(|s| s.list_agents(&q));
            json(ok, &out)
        }
        Op::GetAgent => json(ok, &st.with_state(|s| s.get_agent(agent_id))?),
        Op::UpdateAgent => {
            let req = validate::update(&obj)?;
            json(
                ok,
                &st.with_state(|s| s.update_agent(svc, agent_id, req, now))?,
            )
        }
        Op::HaltAgent | Op::ResumeAgent => {
            validate::empty(&obj)?;
            json(
                ok,
                &st.with_state(|s| s.set_halted(svc, agent_id, op == Op::HaltAgent, now))?,
            )
        }
        Op::RevokeAgent => {
            validate::empty(&obj)?;
            json(ok, &st.with_state(|s| s.revoke_agent(svc, agent_id, now))?)
        }
        Op::MintKey => {
            let name = validate::mint(&obj)?;
            let minted = keys::mint(KeyKind::Agent);
            let out = st.with_state(|s| s.mint_key(svc, agent_id, name, minted, now))?;
            json(StatusCode::CREATED, &out)
        }
        Op::ListKeys => json(
            ok,
            &Items {
                items: st.with_state(|s| s.list_keys(agent_id))?,
            },
        ),
        Op::DeprecateKey | Op::UndeprecateKey => {
            validate::empty(&obj)?;
            let deprecate = op == Op::DeprecateKey;
            json(
                ok,
                &st.with_state(|s| s.set_deprecated(svc, agent_id, key_id, deprecate, now))?,
            )
        }
        Op::RevokeKey => {
            validate::empty(&obj)?;
            let force = query_bool(&query_pairs(parts.uri.query()), "force")?;
            json(
                ok,
                &st.with_state(|s| s.revoke_key(svc, agent_id, key_id, force, now))?,
            )
        }
        Op::Whoami => {
            let Principal::Agent { agent, key, .. } = principal else {
                return Err(ApiError::service_key_cannot_act());
            };
            json(ok, &st.with_state(|s| s.whoami(agent, key))?)
        }
        Op::ExecuteAction => {
            let Principal::Agent { agent, .. } = principal else {
                return Err(ApiError::service_key_cannot_act());
            };
            let req = validate::action(&obj)?;
            let event_id = validate::header_token(headers, "x-al-event-id")?;
            json(ok, &st.with_state(|s| s.act(agent, &req, event_id))?)
        }
    })
}

// ---------------------------------------------------------------------------------------------
// Admin API
// ---------------------------------------------------------------------------------------------

fn admin(
    shared: &Shared,
    op: AdminOp,
    parts: http::request::Parts,
    body: Result<Bytes, ApiError>,
) -> Resp {
    let wrap = shared.wrap();
    match admin_inner(shared, op, parts, body) {
        Ok(r) => r,
        Err(e) => error(&e, wrap),
    }
}

fn admin_inner(
    shared: &Shared,
    op: AdminOp,
    parts: http::request::Parts,
    body: Result<Bytes, ApiError>,
) -> Result<Resp, ApiError> {
    let token = bearer(&parts.headers)?;
    // Compare digests, not strings: no early exit on the first differing byte of the token.
    if keys::hash(token) != shared.admin_hash {
        return Err(ApiError::invalid_authorization(
            "not the emulator's admin token",
        ));
    }
    let body = body?;
    let ok = StatusCode::OK;
    Ok(match op {
        AdminOp::CreateServiceKey => {
            let obj = body_object(BodyUse::Required, &body, &parts.headers)?;
            let label = validate::service_key_label(&obj)?;
            let created = crate::create_service_key(shared, label);
            json(StatusCode::CREATED, &created)
        }
        AdminOp::ListServiceKeys => {
            let items: Vec<_> = shared
                .state
                .lock()
                .service_keys()
                .iter()
                .map(|s| s.view())
                .collect();
            json(ok, &Items { items })
        }
        AdminOp::RevokeServiceKey(id) => {
            let id = parse_id(Some(&id));
            let revoked = shared.state.lock().revoke_service_key(id, time::now());
            shared.changed();
            match revoked {
                Some(sk) => json(ok, &sk.view()),
                None => {
                    return Err(ApiError::new(
                        StatusCode::NOT_FOUND,
                        "service_key_not_found",
                        "no service key with that id",
                    ));
                }
            }
        }
        AdminOp::State => json(ok, &shared.with_state(|s| s.snapshot())),
        AdminOp::Audit => {
            let pairs = query_pairs(parts.uri.query());
            let since = query_int(&pairs, "since", 0, 0, u64::MAX >> 1)?;
            let limit = query_int(&pairs, "limit", 1000, 1, 100_000)? as usize;
            json(
                ok,
                &Items {
                    items: shared.with_state(|s| s.audit(since, limit)),
                },
            )
        }
        AdminOp::GetFaults => json(ok, &shared.faults.get()),
        AdminOp::PutFaults => {
            let obj = body_object(BodyUse::Required, &body, &parts.headers)?;
            // The fault JSON is the emulator's own and holds no secret: serde's message may quote it.
            let config: FaultConfig = serde_json::from_value(serde_json::Value::Object(obj))
                .map_err(|e| ApiError::validation("faults", e))?;
            shared
                .set_faults(config)
                .map_err(|e| ApiError::validation("faults", e))?;
            json(ok, &shared.faults.get())
        }
        AdminOp::DeleteFaults => {
            // Cannot fail: the empty configuration is valid.
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
        assert!(r(Method::POST, "/api/agents/register").contains("Register"));
        assert!(r(Method::GET, "/api/agents/register").contains("MethodNotAllowed"));
        assert!(r(Method::GET, "/api/agents/x/keys").contains("ListKeys"));
        assert!(r(Method::PATCH, "/api/agents/x/keys/y/deprecate").contains("DeprecateKey"));
        assert!(r(Method::GET, "/api/agents/").contains("NotFound"));
        assert!(r(Method::GET, "/api/v1/policies").contains("NotFound"));
        assert!(r(Method::PUT, "/_admin/faults").contains("PutFaults"));
    }

    #[test]
    fn bearer_parsing() {
        let h = |v: &str| {
            let mut m = HeaderMap::new();
            m.insert(AUTHORIZATION, HeaderValue::from_str(v).unwrap());
            m
        };
        assert_eq!(bearer(&h("Bearer al_svc_x")).unwrap(), "al_svc_x");
        assert_eq!(bearer(&h("bearer  al_svc_x ")).unwrap(), "al_svc_x");
        assert_eq!(
            bearer(&h("Basic abc")).unwrap_err().code,
            "invalid_authorization"
        );
        assert_eq!(
            bearer(&h("Bearer")).unwrap_err().code,
            "invalid_authorization"
        );
        assert_eq!(
            bearer(&HeaderMap::new()).unwrap_err().code,
            "missing_authorization"
        );
    }

    #[test]
    fn ids_must_be_canonical() {
        let u = Uuid::new_v4();
        assert_eq!(parse_id(Some(&u.to_string())), u);
        assert!(parse_id(Some(&u.to_string().to_uppercase())).is_nil());
        assert!(parse_id(Some(&u.simple().to_string())).is_nil());
        assert!(parse_id(Some("register")).is_nil());
    }
}
