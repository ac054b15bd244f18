//! Fuzzing the client's response handling (issue 16): a local server answers every call with an
//! arbitrary response — any status, content type, `Retry-After`, `X-AL-Key-Deprecated`, and a
//! body that is arbitrary bytes, arbitrary JSON, or a valid response of the call with fields
//! replaced by arbitrary values — and every call of both clients must return (no panic, no hang),
//! with an error that never repeats a key planted in the body.
//!
//! `PROPTEST_CASES=n` runs more (or fewer) cases than the default.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use agentlattice::{
    ActionRequest, AgentClient, AgentKey, ClientConfig, IdempotencyKey, ListAgentsQuery,
    ProvisionerClient, RegisterAgent, RetryPolicy, ServiceKey, UpdateAgent,
};
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode};
use axum::response::Response;
use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};

const SERVICE_KEY: &str = "al_svc_S3rv1ceKeyBody0123456789abcdefghijklmn";
const AGENT_KEY: &str = "al_agent_AgentKeyBody0123456789abcdefghijklmn";

#[derive(Clone, Debug)]
struct Reply {
    status: u16,
    content_type: Option<String>,
    retry_after: Option<String>,
    deprecated: Option<String>,
    body: Vec<u8>,
}

type Current = Arc<Mutex<Option<Reply>>>;

async fn handle(State(current): State<Current>) -> Response {
    let reply = current.lock().expect("reply lock").clone();
    let Some(r) = reply else {
        return Response::builder()
            .status(StatusCode::IM_A_TEAPOT)
            .body(Body::from("no reply"))
            .expect("response");
    };
    let mut resp = Response::new(Body::from(r.body));
    *resp.status_mut() = StatusCode::from_u16(r.status).expect("status in range");
    for (name, value) in [
        ("content-type", r.content_type),
        ("retry-after", r.retry_after),
        ("x-al-key-deprecated", r.deprecated),
    ] {
        if let Some(v) = value.and_then(|v| HeaderValue::from_str(&v).ok()) {
            resp.headers_mut().insert(name, v);
        }
    }
    resp
}

fn cases() -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(256)
}

/// A key body planted in responses; no error may repeat it.
fn planted() -> impl Strategy<Value = String> {
    "[A-Za-z0-9]{40}".prop_map(|b| format!("al_agent_{b}"))
}

fn json_value(key: String) -> impl Strategy<Value = serde_json::Value> {
    let lead_key = key.clone();
    let leaf = prop_oneof![
        Just(serde_json::Value::Null),
        any::<bool>().prop_map(serde_json::Value::from),
        any::<i64>().prop_map(serde_json::Value::from),
        any::<f64>().prop_map(serde_json::Value::from),
        ".{0,20}".prop_map(serde_json::Value::from),
        Just(serde_json::Value::from(key.clone())),
        Just(serde_json::Value::from(format!("bad key {key} here"))),
        // Scheme fragments right before the key (where a scanner that resumes after the first
        // match goes wrong).
        prop_oneof![
            Just("al_svc_"),
            Just("al_"),
            Just("al_agent_"),
            Just("xal_svc_-")
        ]
        .prop_map(move |lead| serde_json::Value::from(format!("{lead}{lead_key}"))),
        Just(serde_json::Value::from("2026-11-23T10:00:00.123Z")),
    ];
    leaf.prop_recursive(2, 12, 3, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..3).prop_map(serde_json::Value::from),
            proptest::collection::btree_map("[a-z_]{1,12}", inner, 0..3)
                .prop_map(|m| serde_json::Value::Object(m.into_iter().collect())),
        ]
    })
}

fn agent() -> serde_json::Value {
    serde_json::json!({
        "id": "5b0e1f7e-0000-4000-8000-000000000001", "name": "bot", "description": null,
        "capabilities": ["deploy.staging"], "metadata": {"k8s.uid": "u-1"}, "status": "active",
        "created_at": "2026-11-23T10:00:00.123Z", "created_by": "svc-1",
        "updated_at": "2026-11-23T10:00:00.123Z", "halted_at": null, "revoked_at": null,
        "last_used_at": null, "version": 1
    })
}

fn key_info() -> serde_json::Value {
    serde_json::json!({
        "key_id": "k-2", "key_prefix": "N3wKeyBo", "name": null, "status": "active",
        "created_at": "2026-11-23T10:00:00.000Z", "deprecated_at": null, "revoked_at": null,
        "last_used_at": null
    })
}

/// Valid bodies of every call, and of errors.
fn templates(key: &str) -> Vec<serde_json::Value> {
    let mut registered = agent();
    registered["api_key"] = key.into();
    registered["key_id"] = "k-1".into();
    registered["key_prefix"] = "AgentKey".into();
    let mut minted = key_info();
    minted["api_key"] = key.into();
    vec![
        agent(),
        registered,
        serde_json::json!({"items": [agent(), agent()], "total": 2, "limit": 50, "offset": 0}),
        serde_json::json!({"items": [key_info()]}),
        key_info(),
        minted,
        serde_json::json!({"config_id": "a-1", "org_id": "o-1", "name": "bot", "key_id": "k-1",
            "capabilities": ["x"], "status": "active"}),
        serde_json::json!({"allowed": true, "event_id": "e-1", "status": "executed"}),
        serde_json::json!({"error": "agent_not_found", "message": format!("no agent {key}")}),
        serde_json::json!({"error": "conflict", "message": format!("al_svc_{key}")}),
        serde_json::json!({"detail": {"error": "rate_limited", "message": key,
            "retry_after": 3}}),
    ]
}

/// A body: a template with one field replaced, arbitrary JSON, or arbitrary bytes.
fn body(key: String) -> impl Strategy<Value = Vec<u8>> {
    let t = templates(&key);
    let n = t.len();
    prop_oneof![
        4 => (0..n, "[a-z_]{1,14}", json_value(key.clone()), any::<bool>()).prop_map(
            move |(i, field, value, nest)| {
                let mut v = t[i].clone();
                if let Some(obj) = v.as_object_mut() {
                    let name = obj.keys().nth(field.len() % obj.len().max(1)).cloned();
                    match (nest, name) {
                        (false, Some(name)) => {
                            obj.insert(name, value);
                        }
                        _ => {
                            obj.insert(field, value);
                        }
                    }
                }
                serde_json::to_vec(&v).expect("json")
            }
        ),
        1 => json_value(key.clone()).prop_map(|v| serde_json::to_vec(&v).expect("json")),
        1 => proptest::collection::vec(any::<u8>(), 0..200),
        1 => Just(format!("<html>{key}</html>").into_bytes()),
    ]
}

fn reply() -> impl Strategy<Value = (Reply, String, u8)> {
    planted().prop_flat_map(|key| {
        (
            prop_oneof![
                3 => prop_oneof![Just(200u16), Just(201), Just(204)],
                3 => prop_oneof![Just(400u16), Just(401), Just(403), Just(404), Just(409),
                    Just(413), Just(422), Just(429)],
                2 => prop_oneof![Just(500u16), Just(502), Just(503), Just(504)],
                1 => 200u16..600,
            ],
            proptest::option::of(prop_oneof![
                Just("application/json".to_owned()),
                Just("application/json; charset=utf-8".to_owned()),
                Just("text/html".to_owned()),
                "[ -~]{0,30}",
            ]),
            proptest::option::of(prop_oneof![
                "[0-9]{1,3}".prop_map(|s| s),
                Just("Wed, 21 Oct 2015 07:28:00 GMT".to_owned()),
                "[ -~]{0,20}",
                "[0-9]{15,25}",
            ]),
            proptest::option::of(prop_oneof![Just("true".to_owned()), "[ -~]{0,8}"]),
            body(key.clone()),
            Just(key),
            any::<u8>(),
        )
            .prop_map(
                |(status, content_type, retry_after, deprecated, body, key, op)| {
                    (
                        Reply {
                            status,
                            content_type,
                            retry_after,
                            deprecated,
                            body,
                        },
                        key,
                        op,
                    )
                },
            )
    })
}

/// Calls operation `op % 15` and returns what the caller would see of an error.
async fn call(p: &ProvisionerClient, a: &AgentClient, op: u8) -> Option<String> {
    fn shown<T>(r: agentlattice::Result<T>) -> Option<String> {
        r.err().map(|e| format!("{e} | {e:?}"))
    }
    let id = "5b0e1f7e-0000-4000-8000-000000000001";
    match op % 15 {
        0 => {
            let key = IdempotencyKey::new("lattice-operator/u-1/x").expect("idempotency key");
            shown(p.register(&RegisterAgent::new("bot"), Some(&key)).await)
        }
        1 => shown(p.register(&RegisterAgent::new("bot"), None).await),
        2 => shown(p.list_agents(&ListAgentsQuery::default()).await),
        3 => shown(p.find_agents_by_name("bot", false).await),
        4 => shown(p.get_agent(id).await),
        5 => shown(
            p.update_agent(id, &UpdateAgent::new().capabilities(["a.b"]))
                .await,
        ),
        6 => shown(p.halt_agent(id).await),
        7 => shown(p.resume_agent(id).await),
        8 => shown(p.revoke_agent(id).await),
        9 => shown(p.mint_key(id, Some("k")).await),
        10 => shown(p.list_keys(id).await),
        11 => shown(p.deprecate_key(id, "k-1").await),
        12 => shown(p.revoke_key(id, "k-1", false).await),
        13 => shown(a.whoami().await),
        _ => shown(
            a.execute_action(&ActionRequest::new("deploy.staging"))
                .await,
        ),
    }
}

#[test]
fn any_response_to_any_call_is_an_answer_or_an_error_without_keys() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let current: Current = Arc::default();
    let base = rt.block_on(async {
        let app = axum::Router::new()
            .fallback(handle)
            .with_state(current.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        format!("http://{addr}")
    });
    let config = ClientConfig::new(&base)
        .allow_plain_http(true)
        // One attempt: what is fuzzed is the handling of a response, not the retry schedule
        // (which would wait out arbitrary Retry-After values).
        .retry(RetryPolicy::no_retries())
        .request_timeout(Duration::from_secs(10));
    // New clients for every case: a fuzzed 429 or 503 with `Retry-After` closes a client's
    // shared gate, and the next case's call would wait it out (up to the policy's limit) and look
    // hung — a property of the earlier case, not of this one's response.
    let clients = || {
        (
            ProvisionerClient::new(&config, ServiceKey::new(SERVICE_KEY).expect("service key"))
                .expect("provisioner client"),
            AgentClient::new(&config, AgentKey::new(AGENT_KEY).expect("agent key"))
                .expect("agent client"),
        )
    };
    let mut runner = TestRunner::new(Config {
        cases: cases(),
        failure_persistence: None,
        ..Config::default()
    });
    let result = runner.run(&reply(), |(reply, key, op)| {
        *current.lock().expect("reply lock") = Some(reply);
        let shown = rt.block_on(async {
            let (p, a) = clients();
            // A bound, not a timing assertion: a call that never returns is the failure.
            tokio::time::timeout(Duration::from_secs(30), call(&p, &a, op)).await
        });
        let shown = shown.map_err(|_| TestCaseError::fail(format!("call {op} hung")))?;
        if let Some(text) = shown {
            let body = &key["al_agent_".len()..];
            prop_assert!(!text.contains(body), "operation {}: {}", op % 15, text);
            prop_assert!(
                !text.contains(SERVICE_KEY) && !text.contains(AGENT_KEY),
                "{text}"
            );
        }
        Ok(())
    });
    if let Err(e) = result {
        panic!("{e}");
    }
}
