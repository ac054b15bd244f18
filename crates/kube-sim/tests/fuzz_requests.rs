//! Fuzzing kube-sim's request handling (issue 16): arbitrary methods, API paths (discovery, core
//! and group resources, namespaced or not, names, subresources, odd segments), query strings,
//! content types (JSON, YAML, protobuf, the patch types), Accept headers and bodies (arbitrary
//! bytes, arbitrary JSON, valid objects with a field replaced, protobuf-framed bytes). Every
//! request gets an answer — no panic, no hang — and every error is a Kubernetes `Status` whose
//! code is the HTTP status (JSON, or protobuf when protobuf was asked for).
//!
//! `PROPTEST_CASES=n` runs more (or fewer) cases than the default.

use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use serde_json::{Value, json};

fn cases() -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(256)
}

#[derive(Clone, Debug)]
struct Req {
    method: Method,
    path: String,
    content_type: Option<String>,
    accept: Option<String>,
    body: Option<Vec<u8>>,
}

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<f64>().prop_map(Value::from),
        ".{0,20}".prop_map(Value::from),
        "[a-z0-9-]{1,12}".prop_map(Value::from),
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
        json!({"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "cm", "namespace": "fuzz", "labels": {"a": "b"}},
            "data": {"k": "v"}}),
        json!({"apiVersion": "v1", "kind": "Secret",
            "metadata": {"name": "s", "namespace": "fuzz"}, "type": "Opaque",
            "data": {"k": "dg=="}}),
        json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "fuzz2"}}),
        json!({"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "d", "namespace": "fuzz"},
            "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "d"}},
                "template": {"metadata": {"labels": {"app": "d"}},
                    "spec": {"containers": [{"name": "c", "image": "i"}]}}}}),
        json!({"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
            "metadata": {"name": "widgets.example.com"},
            "spec": {"group": "example.com", "scope": "Namespaced",
                "names": {"plural": "widgets", "singular": "widget", "kind": "Widget"},
                "versions": [{"name": "v1", "served": true, "storage": true,
                    "schema": {"openAPIV3Schema": {"type": "object",
                        "x-kubernetes-preserve-unknown-fields": true}}}]}}),
        json!([{"op": "add", "path": "/metadata/labels/x", "value": "y"}]),
        json!({"metadata": {"labels": {"x": null}}}),
    ]
}

fn body() -> impl Strategy<Value = Vec<u8>> {
    let t = templates();
    let n = t.len();
    prop_oneof![
        4 => (0..n, any::<prop::sample::Index>(), json_value(), any::<bool>()).prop_map(
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
        1 => proptest::collection::vec(any::<u8>(), 0..300).prop_map(|mut b| {
            let mut framed = b"k8s\x00".to_vec();
            framed.append(&mut b);
            framed
        }),
        1 => "[ -~\n]{0,200}".prop_map(String::into_bytes),
    ]
}

fn segment() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => "[a-z0-9][a-z0-9.-]{0,20}",
        1 => "[A-Za-z0-9._~-]{1,30}",
        1 => "%[0-9A-F]{2}[a-z]{0,3}",
        1 => Just("..".to_owned()),
        1 => Just("%2F".to_owned()),
        1 => Just("a".repeat(300)),
    ]
}

fn path() -> impl Strategy<Value = String> {
    let resources = prop_oneof![
        Just("configmaps"),
        Just("secrets"),
        Just("namespaces"),
        Just("pods"),
        Just("events"),
        Just("serviceaccounts"),
        Just("nodes"),
    ];
    let grouped = prop_oneof![
        Just(("apps/v1", "deployments")),
        Just(("apps/v1", "replicasets")),
        Just(("apps/v1", "statefulsets")),
        Just(("coordination.k8s.io/v1", "leases")),
        Just(("events.k8s.io/v1", "events")),
        Just(("apiextensions.k8s.io/v1", "customresourcedefinitions")),
        Just(("rbac.authorization.k8s.io/v1", "roles")),
        Just(("example.com/v1", "widgets")),
        Just(("agentlattice.io/v1alpha1", "latticeagents")),
        Just(("nope.example/v9", "things")),
    ];
    let subresource = proptest::option::of(prop_oneof![
        Just("status".to_owned()),
        Just("scale".to_owned()),
        Just("log".to_owned()),
        Just("finalize".to_owned()),
        Just("eviction".to_owned()),
        segment(),
    ]);
    let query = proptest::option::of(proptest::collection::vec(
        (
            prop_oneof![
                Just("labelSelector".to_owned()),
                Just("fieldSelector".to_owned()),
                Just("limit".to_owned()),
                Just("continue".to_owned()),
                Just("resourceVersion".to_owned()),
                Just("resourceVersionMatch".to_owned()),
                Just("dryRun".to_owned()),
                Just("fieldManager".to_owned()),
                Just("force".to_owned()),
                Just("propagationPolicy".to_owned()),
                Just("gracePeriodSeconds".to_owned()),
                Just("fieldValidation".to_owned()),
                Just("timeoutSeconds".to_owned()),
                "[a-zA-Z]{1,10}",
            ],
            prop_oneof![
                "[0-9]{1,22}",
                Just("-1".to_owned()),
                Just("All".to_owned()),
                Just("a%3Db%2Cc%21%3Dd".to_owned()),
                Just("metadata.name%3Dx".to_owned()),
                Just("a+in+(x,y)".to_owned()),
                "[a-zA-Z0-9%=!,()]{0,16}",
            ],
        ),
        0..4,
    ));
    (
        0u8..6,
        resources,
        grouped,
        // Mostly the namespace and names the templates create, so that requests reach objects.
        proptest::option::of(prop_oneof![3 => Just("fuzz".to_owned()), 1 => segment()]),
        proptest::option::of(prop_oneof![
            3 => prop_oneof![
                Just("cm".to_owned()),
                Just("s".to_owned()),
                Just("d".to_owned()),
                Just("fuzz".to_owned()),
                Just("widgets.example.com".to_owned()),
            ],
            1 => segment(),
        ]),
        subresource,
        query,
        segment(),
    )
        .prop_map(
            |(shape, core, (gv, res), namespace, name, sub, query, odd)| {
                let scope = namespace
                    .map(|ns| format!("/namespaces/{ns}"))
                    .unwrap_or_default();
                let object = match (name, sub) {
                    (Some(n), Some(s)) => format!("/{n}/{s}"),
                    (Some(n), None) => format!("/{n}"),
                    _ => String::new(),
                };
                let mut path = match shape {
                    0 => format!("/api/v1{scope}/{core}{object}"),
                    1 => format!("/apis/{gv}{scope}/{res}{object}"),
                    2 => [
                        "/api",
                        "/apis",
                        "/api/v1",
                        "/apis/apps/v1",
                        "/version",
                        "/openapi/v2",
                        "/openapi/v3",
                        "/healthz",
                        "/readyz",
                        "/livez",
                    ][odd.len() % 10]
                        .to_owned(),
                    3 => format!("/apis/{odd}"),
                    4 => format!("/api/{odd}{object}"),
                    _ => format!("/{odd}/{core}"),
                };
                if let Some(q) = query {
                    let pairs: Vec<String> = q.iter().map(|(k, v)| format!("{k}={v}")).collect();
                    path.push('?');
                    path.push_str(&pairs.join("&"));
                }
                path
            },
        )
}

fn request() -> impl Strategy<Value = Req> {
    (
        prop_oneof![
            3 => Just(Method::GET),
            2 => Just(Method::POST),
            1 => Just(Method::PUT),
            2 => Just(Method::PATCH),
            1 => Just(Method::DELETE),
            1 => Just(Method::HEAD),
            1 => Just(Method::OPTIONS),
        ],
        path(),
        proptest::option::of(prop_oneof![
            Just("application/json".to_owned()),
            Just("application/yaml".to_owned()),
            Just("application/vnd.kubernetes.protobuf".to_owned()),
            Just("application/merge-patch+json".to_owned()),
            Just("application/strategic-merge-patch+json".to_owned()),
            Just("application/json-patch+json".to_owned()),
            Just("application/apply-patch+yaml".to_owned()),
            "[ -~]{0,30}",
        ]),
        proptest::option::of(prop_oneof![
            Just("application/json".to_owned()),
            Just("application/vnd.kubernetes.protobuf".to_owned()),
            Just("application/vnd.kubernetes.protobuf, application/json".to_owned()),
            Just("application/json;as=Table;v=v1;g=meta.k8s.io".to_owned()),
            Just("application/json;as=PartialObjectMetadataList;v=v1;g=meta.k8s.io".to_owned()),
            Just("application/yaml".to_owned()),
            "[ -~]{0,30}",
        ]),
        proptest::option::of(body()),
    )
        .prop_map(|(method, path, content_type, accept, body)| Req {
            method,
            path,
            content_type,
            accept,
            body,
        })
}

#[test]
fn any_request_gets_a_kubernetes_answer() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let sim = rt.block_on(async {
        kube_sim::KubeSim::builder()
            .tls(false)
            .start()
            .await
            .expect("kube-sim starts")
    });
    let token = sim.admin_token().to_owned();
    let base = sim.base_url().trim_end_matches('/').to_owned();
    let client: Client<HttpConnector, Full<Bytes>> =
        Client::builder(TokioExecutor::new()).build_http();
    // A namespace for the templates.
    rt.block_on(async {
        let req = Request::post(format!("{base}/api/v1/namespaces"))
            .header("authorization", format!("Bearer {token}"))
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from(
                r#"{"apiVersion":"v1","kind":"Namespace","metadata":{"name":"fuzz"}}"#,
            )))
            .expect("request");
        let resp = client.request(req).await.expect("namespace created");
        assert!(resp.status().is_success(), "{}", resp.status());
    });
    let mut runner = TestRunner::new(Config {
        cases: cases(),
        failure_persistence: None,
        ..Config::default()
    });
    let result = runner.run(&request(), |r| {
        let what = format!("{} {}", r.method, r.path);
        let mut b = Request::builder()
            .method(r.method.clone())
            .uri(format!("{base}{}", r.path))
            .header("authorization", format!("Bearer {token}"));
        if let Some(ct) = &r.content_type {
            b = b.header("content-type", ct);
        }
        if let Some(accept) = &r.accept {
            b = b.header("accept", accept);
        }
        let Ok(req) = b.body(Full::new(Bytes::from(r.body.clone().unwrap_or_default()))) else {
            // A URI or header value the client itself refuses: not kube-sim's concern.
            return Ok(());
        };
        let streaming = r.path.contains("watch") || r.path.contains("follow");
        let answer = rt.block_on(async {
            // A bound, not a timing assertion: a request that is never answered is the failure.
            tokio::time::timeout(Duration::from_secs(20), async {
                let resp = client.request(req).await?;
                let status = resp.status().as_u16();
                let content_type = resp
                    .headers()
                    .get("content-type")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or_default()
                    .to_owned();
                let body = if streaming && status < 300 {
                    Bytes::new()
                } else {
                    resp.into_body().collect().await?.to_bytes()
                };
                Ok::<_, Box<dyn std::error::Error + Send + Sync>>((status, content_type, body))
            })
            .await
        });
        let (status, content_type, body) = match answer {
            Err(_) => return Err(TestCaseError::fail(format!("{what}: no answer in time"))),
            Ok(Err(e)) => return Err(TestCaseError::fail(format!("{what}: no answer: {e}"))),
            Ok(Ok(a)) => a,
        };
        prop_assert_ne!(status, 500, "{}: {}", what, String::from_utf8_lossy(&body));
        if status >= 400 && r.method != Method::HEAD {
            if content_type.contains("protobuf") {
                prop_assert!(body.starts_with(b"k8s\x00"), "{}: {:?}", what, body);
            } else {
                let v: Value = serde_json::from_slice(&body).map_err(|e| {
                    TestCaseError::fail(format!(
                        "{what}: {status} body is not a JSON Status ({e}): {}",
                        String::from_utf8_lossy(&body)
                    ))
                })?;
                prop_assert_eq!(&v["kind"], "Status", "{}: {}", what, v);
                prop_assert_eq!(
                    v["code"].as_u64(),
                    Some(u64::from(status)),
                    "{}: {}",
                    what,
                    v
                );
            }
        }
        Ok(())
    });
    if let Err(e) = result {
        panic!("{e}");
    }
}
