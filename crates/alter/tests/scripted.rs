//! The client against a tiny scripted HTTP server (axum on 127.0.0.1:0): each test lists the
//! replies, in order, and checks what the client sent and did — request shapes, signing per
//! attempt, retries, `Retry-After`, the shared gate, timeouts, decoding, redaction.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use alter::{
    AgentClient, AgentKey, AppClient, AppKey, Attempt, ClientConfig, CreateAgent, Error, ErrorKind,
    IdempotencyKey, ListAgentsQuery, Operation, RateLimit, RetryPolicy, Scopes, UpdateAgent,
};
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use ring::{digest, hmac};

const APP_KEY: &str = "alter_rk_abcdefghijklmnopqrstuv_iwpykn";
const AGENT_KEY: &str = "alter_key_0123456789abcdefghijABCDEFGHIJ-_01234567";
const AGENT_ID: &str = "6f1e0c3a-9b2d-4e5f-8a7b-1c2d3e4f5a6b";
const KEY_ID: &str = "0b7a1c2d-3e4f-4a5b-8c6d-7e8f9a0b1c2d";

// ---------------------------------------------------------------------------------------------
// The scripted server

#[derive(Clone)]
struct Reply {
    status: u16,
    headers: Vec<(&'static str, String)>,
    body: String,
    delay: Duration,
}

fn reply(status: u16, body: impl Into<String>) -> Reply {
    Reply {
        status,
        headers: vec![("x-request-id", format!("req-{status}"))],
        body: body.into(),
        delay: Duration::ZERO,
    }
}

impl Reply {
    fn header(mut self, name: &'static str, value: &str) -> Self {
        self.headers.push((name, value.to_owned()));
        self
    }
    fn delay(mut self, d: Duration) -> Self {
        self.delay = d;
        self
    }
}

#[derive(Debug, Clone)]
struct Seen {
    method: Method,
    uri: String,
    headers: HeaderMap,
    body: Bytes,
    at: Instant,
}

impl Seen {
    fn h(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }
}

#[derive(Default)]
struct Script {
    replies: Mutex<VecDeque<Reply>>,
    seen: Mutex<Vec<Seen>>,
}

impl Script {
    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }
    fn push(&self, r: Reply) {
        self.replies.lock().unwrap().push_back(r);
    }
}

async fn handle(
    State(script): State<Arc<Script>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    script.seen.lock().unwrap().push(Seen {
        method,
        uri: uri.to_string(),
        headers,
        body,
        at: Instant::now(),
    });
    let Some(r) = script.replies.lock().unwrap().pop_front() else {
        return (
            StatusCode::IM_A_TEAPOT,
            r#"{"error":"script_exhausted","message":"no reply left"}"#,
        )
            .into_response();
    };
    if !r.delay.is_zero() {
        tokio::time::sleep(r.delay).await;
    }
    let mut resp = (StatusCode::from_u16(r.status).unwrap(), r.body).into_response();
    resp.headers_mut()
        .insert("content-type", "application/json".parse().unwrap());
    for (k, v) in r.headers {
        resp.headers_mut().insert(k, v.parse().unwrap());
    }
    resp
}

async fn serve(replies: impl IntoIterator<Item = Reply>) -> (String, Arc<Script>) {
    let script = Arc::new(Script::default());
    for r in replies {
        script.push(r);
    }
    let app = axum::Router::new()
        .fallback(handle)
        .with_state(script.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (format!("http://{addr}"), script)
}

// ---------------------------------------------------------------------------------------------
// Fixtures

type Log = Arc<Mutex<Vec<(Operation, String, bool)>>>;

fn config(base: &str) -> (ClientConfig, Log) {
    let log: Log = Arc::default();
    let sink = log.clone();
    let config = ClientConfig::new(base)
        .retry(
            RetryPolicy::new()
                .max_attempts(3)
                .base_delay(Duration::from_millis(5))
                .max_delay(Duration::from_millis(20)),
        )
        .observer(Arc::new(move |a: &Attempt<'_>| {
            sink.lock()
                .unwrap()
                .push((a.operation, a.outcome.label().into_owned(), a.will_retry));
        }));
    (config, log)
}

fn app(config: &ClientConfig) -> AppClient {
    AppClient::new(config, APP_KEY.parse().unwrap()).unwrap()
}

fn agent_json() -> String {
    serde_json::json!({
        "id": AGENT_ID, "name": "nightly-sync", "display_name": null, "type": "agent",
        "status": "active", "scopes": {}, "scopes_pending": null, "scopes_applies_at": null,
        "policy": {}, "metadata": {}, "rate_limit_per_minute": null, "version": 1,
        "created_at": "2026-11-23T10:00:00.000000Z", "last_used_at": null, "parent_agent_id": null
    })
    .to_string()
}

fn key_json() -> serde_json::Value {
    serde_json::json!({
        "key_id": KEY_ID, "key_prefix": "alter_key_012345", "name": "nightly-sync-2",
        "created_at": "2026-11-23T10:00:00Z", "deprecated_at": null, "revoked_at": null,
        "last_used_at": null
    })
}

fn page_json() -> String {
    format!(
        r#"{{"items":[{}],"total":1,"limit":100,"offset":0,"has_more":false}}"#,
        agent_json()
    )
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Recomputes the signature of a seen request (ring's HMAC), over `target`.
fn expected_signature(seen: &Seen, target: &str) -> String {
    let outer = hmac::Key::new(hmac::HMAC_SHA256, APP_KEY.as_bytes());
    let signing = hmac::Key::new(
        hmac::HMAC_SHA256,
        hmac::sign(&outer, b"alter-signing-v1").as_ref(),
    );
    let sts = format!(
        "{}\n{target}\n{}\n{}\n{}\n{}",
        seen.method,
        seen.h("x-alter-timestamp"),
        seen.h("x-alter-nonce"),
        seen.h("x-alter-content-sha256"),
        seen.h("x-alter-scope-constraints")
    );
    hex(hmac::sign(&signing, sts.as_bytes()).as_ref())
}

// ---------------------------------------------------------------------------------------------
// Request shapes

#[tokio::test]
async fn requests_carry_the_key_the_signature_and_the_sdk_bodies() {
    let mut created = serde_json::from_str::<serde_json::Value>(&agent_json()).unwrap();
    created["api_key"] = AGENT_KEY.into();
    created["key_id"] = KEY_ID.into();
    let mut minted = key_json();
    minted["api_key"] = AGENT_KEY.into();
    let (base, script) = serve([
        reply(201, created.to_string()),
        reply(200, page_json()),
        reply(200, page_json()),
        reply(200, agent_json()),
        reply(200, agent_json()),
        reply(200, agent_json()),
        reply(201, minted.to_string()),
        reply(200, key_json().to_string()),
        reply(200, agent_json()),
    ])
    .await;
    let (cfg, _) = config(&base);
    let c = app(&cfg);
    let idem = IdempotencyKey::new("op/uid/1").unwrap();
    let body = CreateAgent::new("nightly-sync")
        .scope("slack", ["channels:read"])
        .metadata("k8s.uid", "u");
    let out = c.create_agent(&body, Some(&idem)).await.unwrap();
    assert_eq!(
        out.api_key.as_ref().map(AgentKey::expose_secret),
        Some(AGENT_KEY)
    );
    assert!(!out.is_replay());
    c.list_agents(
        &ListAgentsQuery::new()
            .limit(5)
            .search("a b")
            .provider("slack"),
    )
    .await
    .unwrap();
    assert_eq!(
        c.get_agent_by_name("nightly-sync")
            .await
            .unwrap()
            .unwrap()
            .id,
        AGENT_ID
    );
    let scopes = Scopes::from([("gh".to_owned(), vec!["repo".to_owned()])]);
    c.update_agent(
        AGENT_ID,
        &UpdateAgent::new().scopes(scopes, 3).grace_seconds(0),
    )
    .await
    .unwrap();
    c.suspend_agent(AGENT_ID).await.unwrap();
    c.delete_agent(AGENT_ID).await.unwrap();
    let m = c.mint_key(AGENT_ID).await.unwrap();
    assert!(m.api_key.matches_prefix(&m.key.key_prefix));
    c.revoke_key(AGENT_ID, KEY_ID, true).await.unwrap();
    c.with_scope_constraints(&["dashboard_agents:read"])
        .unwrap()
        .get_agent(AGENT_ID)
        .await
        .unwrap();

    let seen = script.seen();
    let shapes: Vec<(String, String, String)> = seen
        .iter()
        .map(|s| {
            (
                s.method.to_string(),
                s.uri.clone(),
                String::from_utf8_lossy(&s.body).into_owned(),
            )
        })
        .collect();
    let expect = [
        (
            "POST",
            "/sdk/agents",
            r#"{"name":"nightly-sync","type":"agent","scopes":{"slack":["channels:read"]},"metadata":{"k8s.uid":"u"}}"#,
        ),
        (
            "GET",
            "/sdk/agents?include_revoked=false&limit=5&offset=0&provider=slack&search=a+b",
            "",
        ),
        ("GET", "/sdk/agents?name=nightly-sync", ""),
        (
            "PATCH",
            &format!("/sdk/agents/{AGENT_ID}?expected_version=3&grace_seconds=0"),
            r#"{"scopes":{"gh":["repo"]}}"#,
        ),
        (
            "PATCH",
            &format!("/sdk/agents/{AGENT_ID}"),
            r#"{"status":"inactive"}"#,
        ),
        ("DELETE", &format!("/sdk/agents/{AGENT_ID}"), ""),
        ("POST", &format!("/sdk/agents/{AGENT_ID}/keys"), "{}"),
        (
            "DELETE",
            &format!("/sdk/agents/{AGENT_ID}/keys/{KEY_ID}?force=true"),
            "",
        ),
        ("GET", &format!("/sdk/agents/{AGENT_ID}"), ""),
    ];
    for ((m, u, b), (em, eu, eb)) in shapes.iter().zip(expect) {
        assert_eq!((m.as_str(), u.as_str(), b.as_str()), (em, eu, eb));
    }
    assert_eq!(seen[0].h("idempotency-key"), "op/uid/1");
    assert_eq!(seen[0].h("content-type"), "application/json");
    assert_eq!(seen[1].h("content-type"), "", "no body, no content type");
    assert_eq!(
        seen[8].h("x-alter-scope-constraints"),
        "dashboard_agents:read"
    );
    let mut nonces = std::collections::HashSet::new();
    for s in &seen {
        assert_eq!(s.h("x-api-key"), APP_KEY);
        assert_eq!(
            s.h("x-alter-content-sha256"),
            hex(digest::digest(&digest::SHA256, &s.body).as_ref())
        );
        let ts: i64 = s.h("x-alter-timestamp").parse().unwrap();
        assert!((jiff::Timestamp::now().as_second() - ts).abs() < 60);
        assert!(
            nonces.insert(s.h("x-alter-nonce").to_owned()),
            "a fresh nonce per request"
        );
        let (path, query) = s
            .uri
            .split_once('?')
            .map_or((s.uri.as_str(), None), |(p, q)| (p, Some(q)));
        let target = match query {
            // What Python's urlencode(sorted(parse_qsl(q))) gives for these queries.
            Some(q) => format!("{path}?{q}"),
            None => path.to_owned(),
        };
        assert_eq!(
            s.h("x-alter-signature"),
            expected_signature(s, &target),
            "{}",
            s.uri
        );
    }
}

#[tokio::test]
async fn a_base_path_is_kept_on_the_wire_and_left_out_of_the_signature() {
    let (base, script) = serve([reply(200, page_json())]).await;
    let (cfg, _) = config(&format!("{base}/alter/"));
    app(&cfg)
        .list_agents(&ListAgentsQuery::new())
        .await
        .unwrap();
    let s = &script.seen()[0];
    assert!(s.uri.starts_with("/alter/sdk/agents?"), "{}", s.uri);
    assert_eq!(
        s.h("x-alter-signature"),
        expected_signature(s, "/sdk/agents?include_revoked=false&limit=100&offset=0")
    );
}

#[tokio::test]
async fn the_workload_side_sees_its_key_deprecated() {
    let (base, script) = serve([
        reply(200, agent_json()).header("x-alter-key-deprecated", "true"),
        reply(200, agent_json()),
        reply(200, r#"{"app_id":"app-1","agent_id":"a","actor_id":"x"}"#),
        reply(200, page_json()).header("x-alter-key-deprecated", "true"),
    ])
    .await;
    let (cfg, _) = config(&base);
    let agent = AgentClient::new(&cfg, AGENT_KEY.parse().unwrap()).unwrap();
    assert!(agent.me().await.unwrap().key_deprecated);
    assert!(!agent.me().await.unwrap().key_deprecated);
    let id = agent.resolve_identity().await.unwrap();
    assert_eq!(
        (id.app_id.as_str(), id.agent_id.as_deref()),
        ("app-1", Some("a"))
    );
    let c = app(&cfg);
    assert!(!c.key_deprecated());
    c.list_agents(&ListAgentsQuery::new()).await.unwrap();
    assert!(c.key_deprecated(), "the app key is being retired");
    let seen = script.seen();
    assert_eq!(
        (seen[0].method.as_str(), seen[0].uri.as_str()),
        ("GET", "/sdk/agents/me")
    );
    assert_eq!(seen[2].body.as_ref(), br#"{"include_profile":false}"#);
    assert_eq!(seen[0].h("x-api-key"), AGENT_KEY);
}

// ---------------------------------------------------------------------------------------------
// Retries

#[tokio::test]
async fn idempotent_calls_retry_with_a_fresh_signature_each_time() {
    let (base, script) = serve([
        reply(503, r#"{"error":"service_unavailable","message":"busy"}"#),
        reply(502, "<html>bad gateway</html>"),
        reply(200, page_json()),
    ])
    .await;
    let (cfg, log) = config(&base);
    app(&cfg)
        .list_agents(&ListAgentsQuery::new())
        .await
        .unwrap();
    let seen = script.seen();
    assert_eq!(seen.len(), 3);
    let nonces: std::collections::HashSet<_> = seen
        .iter()
        .map(|s| s.h("x-alter-nonce").to_owned())
        .collect();
    assert_eq!(nonces.len(), 3, "a replayed nonce would be refused");
    assert_eq!(
        *log.lock().unwrap(),
        [
            (Operation::ListAgents, "503".into(), true),
            (Operation::ListAgents, "502".into(), true),
            (Operation::ListAgents, "200".into(), false)
        ]
    );
}

#[tokio::test]
async fn mint_and_create_without_a_key_are_not_retried_after_a_maybe() {
    let (base, script) = serve([
        reply(500, r#"{"error":"internal_error","message":"boom"}"#),
        reply(503, r#"{"error":"service_unavailable","message":"busy"}"#),
        reply(502, r#"{}"#),
        reply(502, r#"{}"#),
        reply(201, {
            let mut v: serde_json::Value = serde_json::from_str(&agent_json()).unwrap();
            v["api_key"] = serde_json::Value::Null;
            v["key_id"] = KEY_ID.into();
            v.to_string()
        }),
    ])
    .await;
    let (cfg, _) = config(&base);
    let c = app(&cfg);
    for _ in 0..2 {
        let e = c.mint_key(AGENT_ID).await.unwrap_err();
        assert!(e.may_have_committed() && e.is_retryable(), "{e}");
    }
    let e = c
        .create_agent(&CreateAgent::new("x"), None)
        .await
        .unwrap_err();
    assert_eq!((e.status(), e.kind()), (Some(502), ErrorKind::Server));
    // With an Idempotency-Key the same failure is retried, and the replay has no plaintext.
    let idem = IdempotencyKey::new("k").unwrap();
    let out = c
        .create_agent(&CreateAgent::new("x"), Some(&idem))
        .await
        .unwrap();
    assert!(out.is_replay());
    assert_eq!(script.seen().len(), 5);
}

#[tokio::test]
async fn rate_limits_honour_retry_after_and_quotas_are_final() {
    let (base, script) = serve([
        reply(429, r#"{"detail":{"error":"rate_limit_exceeded","message":"slow","retry_after":1,"scope":"api_key"}}"#),
        reply(429, "<html>too many</html>").header("retry-after", "1"),
        reply(200, page_json()),
        reply(429, r#"{"detail":{"error":"quota_exceeded","message":"month","retry_after":2678400}}"#)
            .header("retry-after", "2678400"),
    ])
    .await;
    let (cfg, _) = config(&base);
    let c = app(&cfg);
    let t = Instant::now();
    c.list_agents(&ListAgentsQuery::new()).await.unwrap();
    let seen = script.seen();
    assert!(
        seen[1].at - seen[0].at >= Duration::from_millis(990),
        "body retry_after honoured"
    );
    assert!(
        seen[2].at - seen[1].at >= Duration::from_millis(990),
        "header Retry-After honoured"
    );
    assert!(t.elapsed() >= Duration::from_secs(2));
    let e = c.list_agents(&ListAgentsQuery::new()).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::QuotaExceeded);
    assert_eq!(e.retry_after(), Some(Duration::from_secs(2_678_400)));
    assert!(!e.is_retryable());
    assert_eq!(script.seen().len(), 4, "a quota is not retried");
}

#[tokio::test]
async fn a_long_retry_after_closes_the_gate_for_every_clone() {
    let (base, script) = serve([reply(
        429,
        r#"{"detail":{"error":"rate_limit_exceeded","message":"slow","scope":"organization"}}"#,
    )
    .header("retry-after", "120")])
    .await;
    let (cfg, _) = config(&base);
    let c = app(&cfg);
    let e = c.list_agents(&ListAgentsQuery::new()).await.unwrap_err();
    assert_eq!(
        (e.kind(), e.retry_after()),
        (ErrorKind::RateLimited, Some(Duration::from_secs(120)))
    );
    assert_eq!(
        e.api().unwrap().rate_limit_scope.as_deref(),
        Some("organization")
    );
    // Every client on the same transport waits at the gate; too long: refused without sending.
    let agent = c.agent_client(AGENT_KEY.parse().unwrap()).unwrap();
    let e = agent.me().await.unwrap_err();
    assert!(matches!(e, Error::Throttled { .. }), "{e}");
    assert_eq!(e.kind(), ErrorKind::RateLimited);
    assert!(e.retry_after().unwrap() > Duration::from_secs(100));
    assert_eq!(script.seen().len(), 1);
}

#[tokio::test]
async fn timeouts_and_refused_connections() {
    let (base, script) = serve([
        reply(200, page_json()).delay(Duration::from_millis(600)),
        reply(200, page_json()),
        reply(201, "{}").delay(Duration::from_millis(600)),
    ])
    .await;
    let (cfg, _) = config(&base);
    let c = app(&cfg.request_timeout(Duration::from_millis(200)));
    c.list_agents(&ListAgentsQuery::new()).await.unwrap();
    let e = c.mint_key(AGENT_ID).await.unwrap_err();
    assert!(e.is_timeout() && e.may_have_committed(), "{e}");
    assert_eq!(script.seen().len(), 3);

    // Nothing listens there: never sent, retried, then a transport error.
    let closed = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap()
        .local_addr()
        .unwrap();
    let (cfg, log) = config(&format!("http://{closed}"));
    let e = app(&cfg).mint_key(AGENT_ID).await.unwrap_err();
    assert!(matches!(e, Error::Transport { sent: false, .. }), "{e}");
    assert!(!e.may_have_committed() && e.is_retryable());
    assert_eq!(
        log.lock().unwrap().len(),
        3,
        "a connection never made is retried, even for mint"
    );
}

// ---------------------------------------------------------------------------------------------
// Errors and decoding

#[tokio::test]
async fn errors_are_typed_and_scrubbed() {
    let leaky = format!(
        r#"{{"error":"last_active_key","message":"key {AGENT_KEY} is the last","hint":"mint first"}}"#
    );
    let (base, _) = serve([
        reply(409, leaky),
        reply(403, r#"{"detail":{"error":"insufficient_scope","message":"no","required":["dashboard_agents:admin"],"granted":[],"missing":["dashboard_agents:admin"]}}"#),
        reply(409, r#"{"error":"key_revoked","message":"terminal"}"#),
        reply(401, r#"{"detail":{"error":"key_revoked","message":"revoked"}}"#),
        reply(200, r#"{"items":[{"id":"secret-value-here"}]}"#),
        reply(302, "").header("location", "https://elsewhere.example/steal"),
    ])
    .await;
    let (cfg, _) = config(&base);
    let c = app(&cfg);
    let e = c.revoke_key(AGENT_ID, KEY_ID, false).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::LastActiveKey);
    assert_eq!(e.api().unwrap().hint.as_deref(), Some("mint first"));
    let shown = format!("{e} {e:?}");
    assert!(
        !shown.contains(AGENT_KEY) && !shown.contains(APP_KEY),
        "{shown}"
    );
    assert!(shown.contains("<redacted>"));
    let e = c.delete_agent(AGENT_ID).await.unwrap_err();
    assert_eq!(
        (e.kind(), e.api().unwrap().missing_scopes.clone()),
        (
            ErrorKind::InsufficientScope,
            vec!["dashboard_agents:admin".to_owned()]
        )
    );
    assert_eq!(
        c.deprecate_key(AGENT_ID, KEY_ID).await.unwrap_err().kind(),
        ErrorKind::KeyAlreadyRevoked
    );
    let agent = c.agent_client(AGENT_KEY.parse().unwrap()).unwrap();
    assert_eq!(agent.me().await.unwrap_err().kind(), ErrorKind::KeyRevoked);
    let e = c.list_agents(&ListAgentsQuery::new()).await.unwrap_err();
    assert_eq!(e.category(), "decode");
    assert!(!e.to_string().contains("secret-value-here"), "{e}");
    let e = c.get_agent(AGENT_ID).await.unwrap_err();
    assert_eq!(
        (e.status(), e.kind()),
        (Some(302), ErrorKind::Other),
        "redirects are not followed"
    );
    assert!(!format!("{c:?}").contains(APP_KEY));
}

#[tokio::test]
async fn arguments_are_checked_before_anything_is_sent() {
    let (base, script) = serve([]).await;
    let (cfg, _) = config(&base);
    let c = app(&cfg);
    for e in [
        c.get_agent("").await.unwrap_err(),
        c.get_agent("..").await.unwrap_err(),
        c.list_agents(&ListAgentsQuery::new().limit(1001))
            .await
            .unwrap_err(),
        c.create_agent(
            &CreateAgent::new("a").scope("p", Vec::<String>::new()),
            None,
        )
        .await
        .unwrap_err(),
        c.update_agent(AGENT_ID, &UpdateAgent::new().grace_seconds(1))
            .await
            .unwrap_err(),
        c.agent_audit(AGENT_ID, 501, 0).await.unwrap_err(),
        c.get_agent_by_name("").await.unwrap_err(),
    ] {
        assert_eq!(e.category(), "invalid_argument", "{e}");
    }
    assert!(c.with_scope_constraints(&["*"]).is_err());
    assert!(c.with_scope_constraints::<&str>(&[]).is_err());
    assert!(script.seen().is_empty());
    assert!(
        AppClient::new(
            &ClientConfig::new("http://example.com"),
            APP_KEY.parse::<AppKey>().unwrap()
        )
        .is_err()
    );
}

#[tokio::test]
async fn the_client_side_rate_limit_paces_calls() {
    let (base, _) = serve((0..5).map(|_| reply(200, page_json()))).await;
    let (cfg, _) = config(&base);
    let c = app(&cfg.rate_limit(RateLimit::new(20.0, 1)));
    let t = Instant::now();
    for _ in 0..5 {
        c.clone()
            .list_agents(&ListAgentsQuery::new())
            .await
            .unwrap();
    }
    assert!(
        t.elapsed() >= Duration::from_millis(190),
        "{:?}",
        t.elapsed()
    );
}
