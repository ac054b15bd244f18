//! Fuzzing the emulator's request handling (issue 16): arbitrary methods, paths (every route's
//! shape, with real, unknown and odd ids), query strings, credentials, content types and bodies
//! (arbitrary bytes, arbitrary JSON, each route's valid body with a field replaced). (Malformed
//! HTTP itself — a bad `Content-Length` — is hyper's to refuse, before the emulator sees it.)
//! Every request
//! gets an answer — no panic, no dropped connection, no 500 — and every error is the contract's
//! error shape with an `X-Request-Id`.
//!
//! `PROPTEST_CASES=n` runs more (or fewer) cases than the default.

use http::Method;
use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use serde_json::{Value, json};

use crate::common::{Fx, s};

fn cases() -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(256)
}

#[derive(Clone, Debug)]
struct Request {
    method: Method,
    path: String,
    auth: u8,
    content_type: Option<String>,
    body: Option<Vec<u8>>,
    headers: Vec<(String, String)>,
}

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<f64>().prop_map(Value::from),
        ".{0,24}".prop_map(Value::from),
        "[a-z0-9.]{1,10}".prop_map(Value::from),
        Just(Value::from("x".repeat(2000))),
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..4).prop_map(Value::from),
            proptest::collection::btree_map(".{0,10}", inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// Valid bodies of the routes that take one.
fn templates() -> Vec<Value> {
    vec![
        json!({"name": "fuzz-bot", "capabilities": ["deploy.staging"], "description": "d",
            "metadata": {"k8s.uid": "u"}}),
        json!({"capabilities": ["a.b"], "description": null, "metadata": {}}),
        json!({"name": "k"}),
        json!({"action_type": "deploy.staging", "timestamp": "2026-11-23T10:00:00Z",
            "data_accessed": [], "metadata": {}}),
        json!({"label": "x"}),
        json!({"routes": {"register": {"fail_next": 1, "status": 503}}}),
    ]
}

fn body() -> impl Strategy<Value = Vec<u8>> {
    let t = templates();
    let n = t.len();
    prop_oneof![
        3 => (0..n, any::<prop::sample::Index>(), json_value(), any::<bool>()).prop_map(
            move |(i, which, value, add)| {
                let mut v = t[i].clone();
                if let Some(obj) = v.as_object_mut() {
                    let name = obj.keys().nth(which.index(obj.len().max(1))).cloned();
                    match (add, name) {
                        (false, Some(name)) => {
                            obj.insert(name, value);
                        }
                        _ => {
                            obj.insert("extra".into(), value);
                        }
                    }
                }
                serde_json::to_vec(&v).expect("json")
            }
        ),
        1 => json_value().prop_map(|v| serde_json::to_vec(&v).expect("json")),
        1 => proptest::collection::vec(any::<u8>(), 0..300),
        1 => Just(vec![b'{'; 70 * 1024]),
    ]
}

fn segment() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => Just("{agent}".to_owned()),
        2 => Just("{key}".to_owned()),
        1 => "[a-zA-Z0-9._~-]{1,40}",
        1 => "%[0-9A-F]{2}[a-z]{0,3}",
        1 => Just("..".to_owned()),
        1 => Just("%2F".to_owned()),
        1 => "[ -~&&[^/?#]]{1,12}".prop_map(|s| percent(&s)),
    ]
}

/// Percent-encodes everything but unreserved characters.
fn percent(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

fn path() -> impl Strategy<Value = String> {
    let shapes: Vec<Vec<&'static str>> = vec![
        vec!["healthz"],
        vec!["api", "agents", "register"],
        vec!["api", "agents"],
        vec!["api", "agents", "*"],
        vec!["api", "agents", "*", "halt"],
        vec!["api", "agents", "*", "resume"],
        vec!["api", "agents", "*", "keys"],
        vec!["api", "agents", "*", "keys", "*"],
        vec!["api", "agents", "*", "keys", "*", "deprecate"],
        vec!["api", "agents", "*", "keys", "*", "undeprecate"],
        vec!["api", "v1", "whoami"],
        vec!["api", "v1", "actions"],
        vec!["_admin", "service-keys"],
        vec!["_admin", "service-keys", "*"],
        vec!["_admin", "state"],
        vec!["_admin", "audit"],
        vec!["_admin", "faults"],
        vec!["_admin", "metrics"],
        vec!["*"],
        vec![],
    ];
    let n = shapes.len();
    (
        0..n,
        proptest::collection::vec(segment(), 6),
        proptest::option::of(proptest::collection::vec(
            (
                prop_oneof![
                    Just("name".to_owned()),
                    Just("limit".to_owned()),
                    Just("offset".to_owned()),
                    Just("include_revoked".to_owned()),
                    Just("since".to_owned()),
                    Just("force".to_owned()),
                    "[a-z_]{1,8}",
                ],
                prop_oneof![
                    "[0-9]{1,25}",
                    Just("-1".to_owned()),
                    Just("true".to_owned()),
                    "[ -~]{0,10}".prop_map(|s| percent(&s)),
                ],
            ),
            0..4,
        )),
        any::<bool>(),
    )
        .prop_map(move |(i, segments, query, trailing)| {
            let mut next = segments.into_iter();
            let mut path = String::new();
            for part in &shapes[i] {
                path.push('/');
                match *part {
                    "*" => path.push_str(&next.next().unwrap_or_default()),
                    p => path.push_str(p),
                }
            }
            if path.is_empty() || trailing {
                path.push('/');
            }
            if let Some(q) = query {
                let pairs: Vec<String> = q.iter().map(|(k, v)| format!("{k}={v}")).collect();
                path.push('?');
                path.push_str(&pairs.join("&"));
            }
            path
        })
}

fn request() -> impl Strategy<Value = Request> {
    (
        prop_oneof![
            Just(Method::GET),
            Just(Method::POST),
            Just(Method::PATCH),
            Just(Method::DELETE),
            Just(Method::PUT),
            Just(Method::HEAD),
            Just(Method::OPTIONS),
        ],
        path(),
        0u8..6,
        proptest::option::of(prop_oneof![
            Just("application/json".to_owned()),
            Just("application/json; charset=utf-8".to_owned()),
            Just("text/plain".to_owned()),
            Just("application/x-www-form-urlencoded".to_owned()),
            "[ -~]{0,30}",
        ]),
        proptest::option::of(body()),
        proptest::collection::vec(
            (
                prop_oneof![
                    Just("x-al-event-id".to_owned()),
                    Just("idempotency-key".to_owned()),
                    Just("accept".to_owned()),
                    Just("x-request-id".to_owned()),
                ],
                "[ -~]{0,40}",
            ),
            0..2,
        ),
    )
        .prop_map(
            |(method, path, auth, content_type, body, headers)| Request {
                method,
                path,
                auth,
                content_type,
                body,
                headers,
            },
        )
}

#[test]
fn any_request_gets_an_answer_in_the_contracts_shape() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let (fx, agent, key, agent_key) = rt.block_on(async {
        let fx = Fx::new().await;
        let registered = fx.register("fuzz-target", &["deploy.staging"]).await;
        let agent = s(&registered["id"]);
        let key = s(&registered["key_id"]);
        let agent_key = s(&registered["api_key"]);
        (fx, agent, key, agent_key)
    });
    let mut runner = TestRunner::new(Config {
        cases: cases(),
        failure_persistence: None,
        ..Config::default()
    });
    let result = runner.run(&request(), |r| {
        let path = r.path.replace("{agent}", &agent).replace("{key}", &key);
        let token = match r.auth {
            0 => None,
            1 => Some(fx.svc.api_key.clone()),
            2 => Some(fx.admin()),
            3 => Some(agent_key.clone()),
            4 => Some("al_svc_notAKeyThatExists0123456789abcdefghij".to_owned()),
            _ => Some("garbage token".to_owned()),
        };
        let resp = rt.block_on(async {
            let mut req = fx.http.req(r.method.clone(), &path);
            if let Some(t) = &token {
                req = req.bearer(t);
            }
            for (k, v) in &r.headers {
                req = req.header(k, v);
            }
            if let Some(b) = &r.body {
                req = req.raw(r.content_type.as_deref(), b.clone());
            }
            req.try_send().await
        });
        // Whatever the admin route set, the next case starts without faults.
        fx.emu.clear_faults();
        let resp = match resp {
            Ok(resp) => resp,
            // A header value the client itself refuses to send is not the emulator's concern.
            Err(e) if format!("{e:?}").contains("InvalidHeader") => return Ok(()),
            Err(e) => {
                return Err(TestCaseError::fail(format!(
                    "{} {path}: no answer: {e:?}",
                    r.method
                )));
            }
        };
        prop_assert_ne!(resp.status, 500, "{} {}: {:?}", r.method, path, resp.body);
        if resp.status >= 400 && r.method != Method::HEAD {
            let v: Value = serde_json::from_slice(&resp.body).map_err(|e| {
                TestCaseError::fail(format!(
                    "{} {path}: {} error body is not JSON ({e}): {:?}",
                    r.method, resp.status, resp.body
                ))
            })?;
            let inner = v.get("detail").unwrap_or(&v);
            prop_assert!(
                inner["error"].as_str().is_some_and(|c| !c.is_empty())
                    && inner["message"].as_str().is_some_and(|m| !m.is_empty()),
                "{} {}: {} {}",
                r.method,
                path,
                resp.status,
                v
            );
        }
        prop_assert!(
            resp.header("x-request-id").is_some(),
            "{} {}",
            r.method,
            path
        );
        Ok(())
    });
    if let Err(e) = result {
        panic!("{e}");
    }
}
