//! Fuzzing the Alter emulator's request handling (issue 16): arbitrary methods, paths of every
//! route's shape (real, unknown and odd ids), query strings, credentials (a signed app key, a
//! signed agent key, unsigned, the admin token, a wrong key), content types and bodies
//! (arbitrary bytes, arbitrary JSON, each route's valid body with a field replaced). Every request
//! gets an answer — no panic, no dropped connection, no 500 — and every error is a JSON error
//! body. (Malformed HTTP itself is hyper's to refuse, before the emulator sees it.)
//!
//! `PROPTEST_CASES=n` runs more (or fewer) cases than the default.

use http::Method;
use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use serde_json::{Value, json};

use crate::common::{Env, s};

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
}

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<f64>().prop_map(Value::from),
        ".{0,24}".prop_map(Value::from),
        "[a-z0-9:._-]{1,12}".prop_map(Value::from),
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..4).prop_map(Value::from),
            proptest::collection::btree_map(".{0,10}", inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

fn templates() -> Vec<Value> {
    vec![
        json!({"name": "fuzz-agent", "type": "agent", "scopes": {"read": ["x"]},
            "metadata": {"k8s.uid": "u"}}),
        json!({"description": "d", "metadata": {}, "scopes": {}}),
        json!({"name": "k", "expires_in": 3600}),
        json!({"name": "app"}),
        json!({"app_id": "a", "label": "l", "scopes": ["agents:write"]}),
        json!({"routes": {"create": {"fail_next": 1, "status": 503}}}),
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

fn segment() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => Just("{agent}".to_owned()),
        2 => Just("{key}".to_owned()),
        1 => "[a-zA-Z0-9._~-]{1,40}",
        1 => "%[0-9A-F]{2}[a-z]{0,3}",
        1 => Just("..".to_owned()),
        1 => Just("%2F".to_owned()),
        1 => "[ -~]{1,12}".prop_map(|s| percent(&s)),
    ]
}

fn path() -> impl Strategy<Value = String> {
    let shapes: Vec<Vec<&'static str>> = vec![
        vec!["healthz"],
        vec!["sdk", "agents"],
        vec!["sdk", "agents", "me"],
        vec!["sdk", "agents", "*"],
        vec!["sdk", "agents", "*", "keys"],
        vec!["sdk", "agents", "*", "audit"],
        vec!["sdk", "agents", "*", "keys", "*"],
        vec!["sdk", "agents", "*", "keys", "*", "deprecate"],
        vec!["sdk", "agents", "*", "keys", "*", "undeprecate"],
        vec!["sdk", "agent-registry"],
        vec!["sdk", "agent-registry", "*"],
        vec!["sdk", "identity", "resolve"],
        vec!["_admin", "apps"],
        vec!["_admin", "app-keys"],
        vec!["_admin", "app-keys", "*"],
        vec!["_admin", "app-keys", "*", "deprecate"],
        vec!["_admin", "state"],
        vec!["_admin", "audit"],
        vec!["_admin", "faults"],
        vec!["_admin", "metrics"],
        vec!["*"],
    ];
    let n = shapes.len();
    (
        0..n,
        proptest::collection::vec(segment(), 6),
        proptest::option::of(proptest::collection::vec(
            (
                prop_oneof![
                    Just("limit".to_owned()),
                    Just("offset".to_owned()),
                    Just("name".to_owned()),
                    Just("status".to_owned()),
                    Just("since".to_owned()),
                    Just("key".to_owned()),
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
    )
        .prop_map(move |(i, segments, query)| {
            let mut next = segments.into_iter();
            let mut path = String::new();
            for part in &shapes[i] {
                path.push('/');
                match *part {
                    "*" => path.push_str(&next.next().unwrap_or_default()),
                    p => path.push_str(p),
                }
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
            Just(Method::OPTIONS),
        ],
        path(),
        0u8..6,
        proptest::option::of(prop_oneof![
            Just("application/json".to_owned()),
            Just("text/plain".to_owned()),
            "[ -~]{0,30}",
        ]),
        proptest::option::of(body()),
    )
        .prop_map(|(method, path, auth, content_type, body)| Request {
            method,
            path,
            auth,
            content_type,
            body,
        })
}

#[test]
fn any_request_gets_an_answer_with_a_json_error() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let (env, agent, key, agent_key) = rt.block_on(async {
        let env = Env::new().await;
        let (created, agent_key) = env.create("fuzz-target").await;
        let agent = s(&created["id"]);
        let key = created["key_id"].as_str().unwrap_or("k").to_owned();
        (env, agent, key, agent_key)
    });
    let mut runner = TestRunner::new(Config {
        cases: cases(),
        failure_persistence: None,
        ..Config::default()
    });
    let result = runner.run(&request(), |r| {
        let path = r.path.replace("{agent}", &agent).replace("{key}", &key);
        let resp = rt.block_on(async {
            let mut req = env.http.req(r.method.clone(), &path);
            req = match r.auth {
                0 => req.unsigned(),
                1 => req.key(env.k()),
                2 => req.key(&agent_key),
                3 => req.header(
                    "authorization",
                    &format!("Bearer {}", env.emu.admin_token()),
                ),
                4 => req.key("alter_key_0123456789abcdefghijABCDEFGHIJ-_01234567"),
                _ => req.key(env.k()).unsigned(),
            };
            if let Some(ct) = &r.content_type {
                req = req.header("content-type", ct);
            }
            if let Some(b) = &r.body {
                req = req.raw_body(b.clone());
            }
            req.send().await
        });
        // Whatever the admin route set, the next case starts without faults.
        env.emu.clear_faults();
        prop_assert_ne!(
            resp.status,
            500,
            "{} {}: {}",
            r.method,
            path,
            String::from_utf8_lossy(&resp.body)
        );
        if resp.status >= 400 {
            serde_json::from_slice::<Value>(&resp.body).map_err(|e| {
                TestCaseError::fail(format!(
                    "{} {path}: {} error body is not JSON ({e}): {}",
                    r.method,
                    resp.status,
                    String::from_utf8_lossy(&resp.body)
                ))
            })?;
        }
        Ok(())
    });
    if let Err(e) = result {
        panic!("{e}");
    }
}
