//! The client against a tiny scripted HTTP server (axum on 127.0.0.1:0): each test lists the
//! replies the server gives, in order, and checks what the client sent and did.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use agentlattice::{
    ActionRequest, AgentClient, AgentKey, Attempt, ClientConfig, Error, IdempotencyKey, Operation,
    ProvisionerClient, RateLimit, RegisterAgent, RetryPolicy, ServiceKey,
};
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use tokio::time::Instant;

const SERVICE_KEY: &str = "al_svc_S3rv1ceKeyBody0123456789abcdefghijklmn";
const AGENT_KEY: &str = "al_agent_AgentKeyBody0123456789abcdefghijklmn";
const NEW_AGENT_KEY: &str = "al_agent_N3wKeyBody0123456789abcdefghijklmnop";

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
    fn header(mut self, name: &'static str, value: impl Into<String>) -> Self {
        self.headers.push((name, value.into()));
        self
    }

    fn delay(mut self, delay: Duration) -> Self {
        self.delay = delay;
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

#[derive(Default)]
struct Script {
    replies: Mutex<VecDeque<Reply>>,
    seen: Mutex<Vec<Seen>>,
}

impl Script {
    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }

    fn count(&self) -> usize {
        self.seen.lock().unwrap().len()
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
    let next = script.replies.lock().unwrap().pop_front();
    let Some(r) = next else {
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
                .max_attempts(4)
                .base_delay(Duration::from_millis(10))
                .max_delay(Duration::from_millis(50))
                .max_retry_after(Duration::from_secs(5)),
        )
        .request_timeout(Duration::from_secs(5))
        .observer(Arc::new(move |a: &Attempt<'_>| {
            sink.lock()
                .unwrap()
                .push((a.operation, a.outcome.label().into_owned(), a.will_retry));
        }));
    (config, log)
}

fn provisioner(config: &ClientConfig) -> ProvisionerClient {
    ProvisionerClient::new(config, ServiceKey::new(SERVICE_KEY).unwrap()).unwrap()
}

fn agent_json(name: &str) -> String {
    format!(
        r#"{{"id":"5b0e1f7e-0000-4000-8000-000000000001","name":"{name}","description":null,
        "capabilities":["deploy.staging"],"metadata":{{"k8s.uid":"u-1"}},"status":"active",
        "created_at":"2026-11-23T10:00:00.123Z","created_by":"svc-1","updated_at":"2026-11-23T10:00:00.123Z",
        "halted_at":null,"revoked_at":null,"last_used_at":null,"version":1}}"#
    )
}

fn registered_json(name: &str, key_field: &str, key: Option<&str>) -> String {
    let agent = agent_json(name);
    let key = key.map_or("null".to_owned(), |k| format!("\"{k}\""));
    format!(
        r#"{}, "{key_field}": {key}, "key_id": "k-1", "key_prefix": "N3wKeyBo"}}"#,
        agent.trim_end().trim_end_matches('}')
    )
}

fn key_json(extra: &str) -> String {
    format!(
        r#"{{"key_id":"k-2","key_prefix":"N3wKeyBo","name":null,"status":"active",
        "created_at":"2026-11-23T10:00:00.000Z","deprecated_at":null,"revoked_at":null,
        "last_used_at":null{extra}}}"#
    )
}

fn labels(log: &Log) -> Vec<(String, bool)> {
    log.lock()
        .unwrap()
        .iter()
        .map(|(_, l, r)| (l.clone(), *r))
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Retries

#[tokio::test]
async fn retries_5xx_then_succeeds() {
    let (base, script) = serve([
        reply(500, r#"{"error":"internal_error","message":"boom"}"#),
        reply(502, "<html>bad gateway</html>"),
        reply(200, agent_json("bot")),
    ])
    .await;
    let (config, log) = config(&base);
    let agent = provisioner(&config).get_agent("a-1").await.unwrap();
    assert_eq!(agent.name, "bot");
    assert_eq!(script.count(), 3);
    assert_eq!(
        labels(&log),
        vec![
            ("500".into(), true),
            ("502".into(), true),
            ("200".into(), false)
        ]
    );
    assert!(
        log.lock()
            .unwrap()
            .iter()
            .all(|(op, ..)| *op == Operation::GetAgent)
    );
}

#[tokio::test]
async fn gives_up_after_max_attempts() {
    let (base, script) =
        serve((0..10).map(|_| reply(503, r#"{"error":"unavailable","message":"x"}"#))).await;
    let (config, _) = config(&base);
    let err = provisioner(&config).list_keys("a-1").await.unwrap_err();
    assert_eq!(script.count(), 4);
    assert_eq!(err.status(), Some(503));
    assert_eq!(err.code(), Some("unavailable"));
    assert_eq!(err.category(), "unavailable");
    assert!(err.is_retryable());
}

#[tokio::test]
async fn honours_retry_after_on_429() {
    let (base, script) = serve([
        reply(
            429,
            r#"{"error":"rate_limit_exceeded","message":"slow down","retry_after":1}"#,
        )
        .header("retry-after", "1"),
        reply(200, key_json("")),
    ])
    .await;
    let (config, log) = config(&base);
    let start = Instant::now();
    let key = provisioner(&config)
        .deprecate_key("a-1", "k-2")
        .await
        .unwrap();
    assert_eq!(key.key_id, "k-2");
    let seen = script.seen();
    assert_eq!(seen.len(), 2);
    assert!(
        seen[1].at.duration_since(seen[0].at) >= Duration::from_millis(1000),
        "retried after {:?}",
        seen[1].at.duration_since(seen[0].at)
    );
    assert!(start.elapsed() >= Duration::from_secs(1));
    assert_eq!(
        labels(&log),
        vec![("429".into(), true), ("200".into(), false)]
    );
}

#[tokio::test]
async fn honours_retry_after_as_http_date() {
    let at = jiff::Timestamp::now() + jiff::SignedDuration::from_secs(2);
    let date = jiff::fmt::rfc2822::to_string(&at.to_zoned(jiff::tz::TimeZone::UTC))
        .unwrap()
        .replace("+0000", "GMT");
    let (base, script) = serve([
        reply(503, r#"{"error":"unavailable"}"#).header("retry-after", date),
        reply(200, agent_json("bot")),
    ])
    .await;
    let (config, _) = config(&base);
    provisioner(&config).get_agent("a-1").await.unwrap();
    let seen = script.seen();
    // Whole seconds: at least one second must have passed.
    assert!(seen[1].at.duration_since(seen[0].at) >= Duration::from_millis(900));
}

#[tokio::test]
async fn does_not_wait_for_a_retry_after_beyond_the_limit() {
    let (base, script) = serve([
        reply(429, r#"{"error":"rate_limit_exceeded","message":"later"}"#)
            .header("retry-after", "120"),
        reply(200, agent_json("bot")),
    ])
    .await;
    let (config, _) = config(&base);
    let client = provisioner(&config);
    let start = Instant::now();
    let err = client.get_agent("a-1").await.unwrap_err();
    assert!(start.elapsed() < Duration::from_secs(5));
    assert_eq!(script.count(), 1);
    assert_eq!(err.status(), Some(429));
    assert_eq!(err.retry_after(), Some(Duration::from_secs(120)));
    assert!(err.is_rate_limited());
    // The gate is closed for every clone: the next call is refused without a request.
    let err = client.clone().get_agent("a-1").await.unwrap_err();
    assert!(matches!(err, Error::Throttled { .. }), "{err:?}");
    assert!(err.retry_after().unwrap() > Duration::from_secs(100));
    assert_eq!(script.count(), 1);
}

#[tokio::test]
async fn mint_is_not_retried_on_500() {
    let (base, script) = serve([
        reply(
            500,
            r#"{"error":"internal_error","message":"maybe committed"}"#,
        ),
        reply(201, key_json(&format!(r#","api_key":"{NEW_AGENT_KEY}""#))),
    ])
    .await;
    let (config, log) = config(&base);
    let err = provisioner(&config)
        .mint_key("a-1", None)
        .await
        .unwrap_err();
    assert_eq!(script.count(), 1);
    assert_eq!(err.status(), Some(500));
    assert!(err.may_have_committed());
    assert_eq!(labels(&log), vec![("500".into(), false)]);
}

#[tokio::test]
async fn mint_is_retried_on_503_and_429() {
    let (base, script) = serve([
        reply(503, r#"{"error":"unavailable"}"#),
        reply(429, r#"{"error":"rate_limit_exceeded"}"#),
        reply(201, key_json(&format!(r#","api_key":"{NEW_AGENT_KEY}""#))),
    ])
    .await;
    let (config, _) = config(&base);
    let minted = provisioner(&config)
        .mint_key("a-1", Some("rot-1"))
        .await
        .unwrap();
    assert_eq!(script.count(), 3);
    assert_eq!(minted.api_key.expose_secret(), NEW_AGENT_KEY);
    assert_eq!(format!("{:?}", minted.api_key), "AgentKey(<redacted>)");
    let seen = script.seen();
    assert_eq!(seen[0].uri, "/api/agents/a-1/keys");
    assert_eq!(&seen[0].body[..], br#"{"name":"rot-1"}"#);
}

#[tokio::test]
async fn mint_is_retried_when_the_request_was_never_sent() {
    // A port with nothing listening: connection refused, the request never left.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let (config, log) = config(&format!("http://{addr}"));
    let err = provisioner(&config)
        .mint_key("a-1", None)
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::Transport { sent: false, .. }),
        "{err:?}"
    );
    assert!(!err.may_have_committed());
    assert_eq!(err.category(), "transport");
    assert_eq!(log.lock().unwrap().len(), 4);
}

#[tokio::test]
async fn register_without_idempotency_key_is_not_retried_on_500() {
    let (base, script) = serve([
        reply(500, r#"{"error":"internal_error"}"#),
        reply(201, registered_json("bot", "api_key", Some(NEW_AGENT_KEY))),
    ])
    .await;
    let (config, _) = config(&base);
    let err = provisioner(&config)
        .register(&RegisterAgent::new("bot"), None)
        .await
        .unwrap_err();
    assert_eq!(script.count(), 1);
    assert_eq!(err.status(), Some(500));
}

#[tokio::test]
async fn register_with_idempotency_key_is_retried_on_500() {
    let (base, script) = serve([
        reply(500, r#"{"error":"internal_error"}"#),
        reply(504, ""),
        reply(201, registered_json("bot", "api_key", Some(NEW_AGENT_KEY))),
    ])
    .await;
    let (config, _) = config(&base);
    let idem = IdempotencyKey::new("lattice-operator/uid-1/").unwrap();
    let request = RegisterAgent::new("bot")
        .capabilities(["deploy.staging"])
        .metadata("k8s.uid", "uid-1");
    let reg = provisioner(&config)
        .register(&request, Some(&idem))
        .await
        .unwrap();
    assert!(!reg.replayed);
    assert_eq!(reg.api_key.unwrap().expose_secret(), NEW_AGENT_KEY);
    assert_eq!(reg.key_id, "k-1");
    let seen = script.seen();
    assert_eq!(seen.len(), 3);
    for s in &seen {
        assert_eq!(s.method, Method::POST);
        assert_eq!(s.uri, "/api/agents/register");
        assert_eq!(s.headers["idempotency-key"], "lattice-operator/uid-1/");
        assert_eq!(s.headers["content-type"], "application/json");
        assert_eq!(
            s.headers["authorization"],
            format!("Bearer {SERVICE_KEY}").as_str()
        );
        assert_eq!(s.body, seen[0].body, "the same body on every attempt");
    }
    assert_eq!(
        &seen[0].body[..],
        br#"{"name":"bot","capabilities":["deploy.staging"],"metadata":{"k8s.uid":"uid-1"}}"#
    );
}

#[tokio::test]
async fn register_replay_has_no_key() {
    let (base, _) = serve([reply(200, registered_json("bot", "api_key", None))]).await;
    let (config, _) = config(&base);
    let idem = IdempotencyKey::new("k").unwrap();
    let reg = provisioner(&config)
        .register(&RegisterAgent::new("bot"), Some(&idem))
        .await
        .unwrap();
    assert!(reg.replayed);
    assert!(reg.api_key.is_none());
    assert_eq!(reg.key_id, "k-1");
}

#[tokio::test]
async fn accepts_the_apikey_spelling() {
    let (base, _) = serve([
        reply(201, registered_json("bot", "apiKey", Some(NEW_AGENT_KEY))),
        reply(201, key_json(&format!(r#","apiKey":"{NEW_AGENT_KEY}""#))),
    ])
    .await;
    let (config, _) = config(&base);
    let client = provisioner(&config);
    let reg = client
        .register(&RegisterAgent::new("bot"), None)
        .await
        .unwrap();
    assert_eq!(reg.api_key.unwrap().expose_secret(), NEW_AGENT_KEY);
    let minted = client.mint_key(&reg.agent.id, None).await.unwrap();
    assert_eq!(minted.api_key.expose_secret(), NEW_AGENT_KEY);
}

#[tokio::test]
async fn mint_without_a_key_in_the_response_is_a_decode_error() {
    let (base, _) = serve([reply(201, key_json(""))]).await;
    let (config, _) = config(&base);
    let err = provisioner(&config)
        .mint_key("a-1", None)
        .await
        .unwrap_err();
    assert_eq!(err.category(), "decode");
    assert!(err.may_have_committed());
    assert!(err.to_string().contains("api_key"), "{err}");
}

// ---------------------------------------------------------------------------------------------
// Timeouts

fn short_timeout(config: ClientConfig, attempts: u32) -> ClientConfig {
    config.request_timeout(Duration::from_millis(300)).retry(
        RetryPolicy::new()
            .max_attempts(attempts)
            .base_delay(Duration::from_millis(10)),
    )
}

#[tokio::test]
async fn slow_server_times_out() {
    let (base, script) =
        serve((0..2).map(|_| reply(200, agent_json("bot")).delay(Duration::from_secs(3)))).await;
    let (config, log) = config(&base);
    let config = short_timeout(config, 2);
    let start = Instant::now();
    let err = provisioner(&config).get_agent("a-1").await.unwrap_err();
    assert!(matches!(err, Error::Timeout { sent: true, .. }), "{err:?}");
    assert_eq!(err.category(), "timeout");
    assert!(err.is_retryable());
    // An idempotent GET is retried after a timeout.
    assert_eq!(script.count(), 2);
    assert_eq!(
        labels(&log),
        vec![("timeout".into(), true), ("timeout".into(), false)]
    );
    assert!(start.elapsed() < Duration::from_secs(3));
}

#[tokio::test]
async fn mint_is_not_retried_after_a_timeout() {
    let (base, script) =
        serve((0..2).map(|_| reply(201, key_json("")).delay(Duration::from_secs(3)))).await;
    let (config, _) = config(&base);
    let config = short_timeout(config, 3);
    let err = provisioner(&config)
        .mint_key("a-1", None)
        .await
        .unwrap_err();
    assert!(err.is_timeout());
    assert!(err.may_have_committed());
    assert_eq!(script.count(), 1);
}

// ---------------------------------------------------------------------------------------------
// The shared throttle

#[tokio::test]
async fn retry_after_gate_is_shared_by_clones() {
    let (base, script) = serve([
        reply(429, r#"{"error":"rate_limit_exceeded"}"#).header("retry-after", "1"),
        reply(200, agent_json("bot")),
        reply(200, agent_json("bot")),
    ])
    .await;
    let (config, _) = config(&base);
    let config = config.retry(RetryPolicy::no_retries().max_retry_after(Duration::from_secs(5)));
    let a = provisioner(&config);
    let b = a.clone();
    let c = a
        .with_service_key(ServiceKey::new(SERVICE_KEY).unwrap())
        .unwrap();
    let start = Instant::now();
    let err = a.get_agent("a-1").await.unwrap_err();
    assert_eq!(err.status(), Some(429));
    // Both the clone and a client made from it wait for the gate before sending anything.
    let (rb, rc) = tokio::join!(b.get_agent("a-1"), c.get_agent("a-1"));
    rb.unwrap();
    rc.unwrap();
    assert!(start.elapsed() >= Duration::from_secs(1));
    let seen = script.seen();
    assert_eq!(seen.len(), 3);
    for later in &seen[1..] {
        assert!(
            later.at.duration_since(seen[0].at) >= Duration::from_millis(990),
            "{:?}",
            later.at.duration_since(seen[0].at)
        );
    }
}

#[tokio::test]
async fn separately_built_clients_do_not_share_the_gate() {
    let (base, script) = serve([
        reply(429, r#"{"error":"rate_limit_exceeded"}"#).header("retry-after", "3"),
        reply(200, agent_json("bot")),
    ])
    .await;
    let (config, _) = config(&base);
    let config = config.retry(RetryPolicy::no_retries());
    let a = provisioner(&config);
    let other = provisioner(&config);
    assert!(a.get_agent("a-1").await.is_err());
    let start = Instant::now();
    other.get_agent("a-1").await.unwrap();
    assert!(start.elapsed() < Duration::from_secs(2));
    assert_eq!(script.count(), 2);
}

#[tokio::test]
async fn rate_limit_paces_every_clone() {
    let (base, script) = serve((0..5).map(|_| reply(200, agent_json("bot")))).await;
    let (config, _) = config(&base);
    let config = config.rate_limit(RateLimit::new(5.0, 1));
    let a = provisioner(&config);
    let b = a.clone();
    let start = Instant::now();
    let (r1, r2, r3, r4, r5) = tokio::join!(
        a.get_agent("1"),
        b.get_agent("2"),
        a.get_agent("3"),
        b.get_agent("4"),
        a.get_agent("5")
    );
    for r in [r1, r2, r3, r4, r5] {
        r.unwrap();
    }
    // One at once, then one every 200 ms.
    assert!(
        start.elapsed() >= Duration::from_millis(790),
        "{:?}",
        start.elapsed()
    );
    assert_eq!(script.count(), 5);
}

// ---------------------------------------------------------------------------------------------
// Errors, requests, redaction

#[tokio::test]
async fn errors_keep_code_message_and_request_id() {
    let (base, _) = serve([
        reply(409, r#"{"detail":{"error":"last_active_key","message":"would leave the agent without a key"}}"#),
        reply(404, r#"{"error":"agent_not_found","message":"no such agent"}"#).header("x-request-id", "abc-123"),
        reply(401, r#"{"error":"key_revoked","message":"the key was revoked"}"#),
        reply(418, "I'm a teapot, not JSON"),
    ])
    .await;
    let (config, _) = config(&base);
    let client = provisioner(&config);

    let err = client.revoke_key("a-1", "k-1", false).await.unwrap_err();
    assert!(err.is_conflict_code("last_active_key"), "{err:?}");
    assert_eq!(err.category(), "conflict");
    assert_eq!(err.message(), Some("would leave the agent without a key"));

    let err = client.get_agent("a-1").await.unwrap_err();
    assert!(err.is_not_found());
    assert_eq!(err.code(), Some("agent_not_found"));
    assert_eq!(err.request_id(), Some("abc-123"));
    assert!(err.to_string().contains("abc-123"), "{err}");

    let err = client.list_keys("a-1").await.unwrap_err();
    assert!(err.is_unauthorized());
    assert!(err.is_code("key_revoked"));

    let err = client.halt_agent("a-1").await.unwrap_err();
    assert_eq!(err.status(), Some(418));
    assert_eq!(err.code(), None);
    assert_eq!(err.category(), "client");
}

#[tokio::test]
async fn errors_never_show_keys_or_bodies() {
    let (base, _) = serve([
        reply(
            422,
            format!(r#"{{"error":"validation_failed","message":"bad key {AGENT_KEY} in body"}}"#),
        ),
        reply(200, format!(r#"{{"id": 5, "api_key": "{NEW_AGENT_KEY}"}}"#)),
    ])
    .await;
    let (config, _) = config(&base);
    let client = provisioner(&config);
    let request = RegisterAgent::new("bot").description("secret-description-text");
    let err = client.register(&request, None).await.unwrap_err();
    let shown = format!("{err} {err:?}");
    assert!(!shown.contains("AgentKeyBody"), "{shown}");
    assert!(!shown.contains("secret-description-text"), "{shown}");
    assert!(!shown.contains("S3rv1ce"), "{shown}");
    assert!(shown.contains("validation_failed"), "{shown}");

    let err = client.get_agent("a-1").await.unwrap_err();
    assert_eq!(err.category(), "decode");
    let shown = format!("{err} {err:?}");
    assert!(!shown.contains("N3wKeyBody"), "{shown}");

    let shown = format!("{client:?}");
    assert!(!shown.contains("S3rv1ce"), "{shown}");
}

#[tokio::test]
async fn requests_follow_the_contract() {
    let page = format!(
        r#"{{"items":[{}],"total":1,"limit":100,"offset":0,"has_more":false}}"#,
        agent_json("bot")
    );
    let (base, script) = serve([
        reply(200, page),
        reply(200, agent_json("bot")),
        reply(200, agent_json("bot")),
        reply(200, agent_json("bot")),
        reply(200, agent_json("bot")),
        reply(200, key_json("")),
        reply(200, key_json("")),
        reply(200, r#"{"items":[]}"#),
    ])
    .await;
    let (config, _) = config(&format!("{base}/"));
    let c = provisioner(&config);
    let found = c.find_agents_by_name("bot", true).await.unwrap();
    assert_eq!(found.len(), 1);
    c.update_agent(
        "a 1/..",
        &agentlattice::UpdateAgent::new().description(None),
    )
    .await
    .unwrap();
    c.resume_agent("a-1").await.unwrap();
    c.revoke_agent("a-1").await.unwrap();
    c.halt_agent("a-1").await.unwrap();
    c.undeprecate_key("a-1", "k-1").await.unwrap();
    c.revoke_key("a-1", "k-1", true).await.unwrap();
    assert!(c.list_keys("a-1").await.unwrap().is_empty());
    let seen: Vec<_> = script
        .seen()
        .into_iter()
        .map(|s| {
            (
                s.method.to_string(),
                s.uri,
                String::from_utf8(s.body.to_vec()).unwrap(),
            )
        })
        .collect();
    let expect = |m: &str, u: &str, b: &str| (m.to_owned(), u.to_owned(), b.to_owned());
    assert_eq!(
        seen,
        vec![
            expect(
                "GET",
                "/api/agents?name=bot&include_revoked=true&limit=100&offset=0",
                ""
            ),
            expect("PATCH", "/api/agents/a%201%2F..", r#"{"description":null}"#),
            expect("POST", "/api/agents/a-1/resume", ""),
            expect("DELETE", "/api/agents/a-1", ""),
            expect("POST", "/api/agents/a-1/halt", ""),
            expect("PATCH", "/api/agents/a-1/keys/k-1/undeprecate", ""),
            expect("DELETE", "/api/agents/a-1/keys/k-1?force=true", ""),
            expect("GET", "/api/agents/a-1/keys", ""),
        ]
    );
    // Ids that would change the path are refused before anything is sent.
    let err = c.get_agent("..").await.unwrap_err();
    assert_eq!(err.category(), "invalid_argument");
    assert_eq!(script.count(), 8);
}

#[tokio::test]
async fn find_by_name_follows_pages() {
    let page = |offset: u64, more: bool| {
        format!(
            r#"{{"items":[{}],"total":2,"limit":100,"offset":{offset},"has_more":{more}}}"#,
            agent_json("bot")
        )
    };
    let (base, script) = serve([reply(200, page(0, true)), reply(200, page(1, false))]).await;
    let (config, _) = config(&base);
    let found = provisioner(&config)
        .find_agents_by_name("bot", true)
        .await
        .unwrap();
    assert_eq!(found.len(), 2);
    assert!(
        script.seen()[1].uri.ends_with("offset=1"),
        "{}",
        script.seen()[1].uri
    );
}

#[tokio::test]
async fn redirects_are_not_followed() {
    let (base, script) =
        serve([reply(302, "").header("location", "http://127.0.0.1:1/elsewhere")]).await;
    let (config, _) = config(&base);
    let err = provisioner(&config).get_agent("a-1").await.unwrap_err();
    assert_eq!(err.status(), Some(302));
    assert_eq!(err.category(), "unexpected_status");
    assert_eq!(script.count(), 1);
}

// ---------------------------------------------------------------------------------------------
// The agent API

#[tokio::test]
async fn whoami_reports_a_deprecated_key() {
    let body = r#"{"config_id":"a-1","name":"bot","org_id":"o","is_active":true,"cb_state":"closed",
        "calibration":{},"policies":[],"delegations":{"as_parent":[],"as_child":[]},
        "capabilities":["deploy.staging"],"key_id":"k-1"}"#;
    let (base, script) = serve([
        reply(200, body).header("x-al-key-deprecated", "true"),
        reply(200, body),
    ])
    .await;
    let (config, _) = config(&base);
    let client = AgentClient::new(&config, AgentKey::new(AGENT_KEY).unwrap()).unwrap();
    let me = client.whoami().await.unwrap();
    assert!(me.key_deprecated);
    assert_eq!(me.key_id.as_deref(), Some("k-1"));
    assert!(!client.whoami().await.unwrap().key_deprecated);
    let seen = script.seen();
    assert_eq!(seen[0].uri, "/api/v1/whoami");
    assert_eq!(
        seen[0].headers["authorization"],
        format!("Bearer {AGENT_KEY}").as_str()
    );
}

#[tokio::test]
async fn actions_keep_their_event_id_across_retries() {
    let ok = r#"{"status":"executed","audit_event_id":"ev-1","message":null,"denial_reason":null,
        "policy_name":null,"conditions_evaluated":[]}"#;
    let (base, script) = serve([reply(500, r#"{"error":"internal_error"}"#), reply(200, ok)]).await;
    let (config, log) = config(&base);
    let client = provisioner(&config)
        .agent_client(AgentKey::new(AGENT_KEY).unwrap())
        .unwrap();
    let result = client
        .execute_action(&ActionRequest::new("deploy.staging").metadata("k", "v"))
        .await
        .unwrap();
    assert_eq!(result.audit_event_id, "ev-1");
    assert!(!result.key_deprecated);
    let seen = script.seen();
    assert_eq!(seen.len(), 2);
    let id0 = seen[0].headers["x-al-event-id"].to_str().unwrap();
    assert_eq!(id0, seen[1].headers["x-al-event-id"].to_str().unwrap());
    assert_eq!(id0, result.event_id);
    assert_eq!(seen[0].body, seen[1].body);
    let body: serde_json::Value = serde_json::from_slice(&seen[0].body).unwrap();
    assert_eq!(body["action_type"], "deploy.staging");
    assert_eq!(body["metadata"]["k"], "v");
    assert_eq!(body["data_accessed"], serde_json::json!([]));
    let ts = body["timestamp"].as_str().unwrap();
    assert!(
        ts.ends_with('Z') && ts.len() == "2026-11-23T10:00:00.123Z".len(),
        "{ts}"
    );
    assert_eq!(
        log.lock()
            .unwrap()
            .iter()
            .map(|(op, ..)| *op)
            .collect::<Vec<_>>(),
        vec![Operation::ExecuteAction, Operation::ExecuteAction]
    );
}
