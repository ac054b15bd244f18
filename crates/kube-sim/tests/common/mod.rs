//! Shared helpers of the kube-sim integration tests.
#![allow(dead_code)]

pub mod kubectl;

use http::{Method, Request};
use kube_sim::KubeSim;
use serde_json::{Value, json};

/// A raw HTTP answer: status, headers, body (JSON when it parses).
#[derive(Debug)]
pub struct Raw {
    pub code: u16,
    pub headers: http::HeaderMap,
    pub text: String,
}

impl Raw {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.text).unwrap_or(Value::Null)
    }
    pub fn reason(&self) -> String {
        self.json()["reason"].as_str().unwrap_or("").to_string()
    }
    pub fn message(&self) -> String {
        self.json()["message"].as_str().unwrap_or("").to_string()
    }
    pub fn header(&self, k: &str) -> Option<String> {
        self.headers
            .get(k)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    }
    /// Assert a Status error: code, reason, message.
    #[track_caller]
    pub fn assert_status(&self, code: u16, reason: &str, message: &str) {
        assert_eq!(self.code, code, "code; body: {}", self.text);
        assert_eq!(self.reason(), reason, "reason; body: {}", self.text);
        assert_eq!(self.message(), message, "message; body: {}", self.text);
        let v = self.json();
        assert_eq!(v["kind"], "Status");
        assert_eq!(v["code"], code);
    }
}

/// Send a raw request through the admin client.
pub async fn raw(
    client: &kube::Client,
    method: Method,
    path: &str,
    content_type: Option<&str>,
    body: Option<Value>,
) -> Raw {
    let bytes = match &body {
        Some(Value::String(s)) => s.clone().into_bytes(),
        Some(v) => serde_json::to_vec(v).unwrap(),
        None => Vec::new(),
    };
    raw_bytes(client, method, path, content_type, None, bytes).await
}

pub async fn raw_bytes(
    client: &kube::Client,
    method: Method,
    path: &str,
    content_type: Option<&str>,
    accept: Option<&str>,
    body: Vec<u8>,
) -> Raw {
    let mut b = Request::builder().method(method).uri(path);
    if let Some(ct) = content_type {
        b = b.header("Content-Type", ct);
    }
    if let Some(a) = accept {
        b = b.header("Accept", a);
    }
    let req = b.body(kube::client::Body::from(body)).unwrap();
    let resp = client.send(req).await.expect("request sent");
    let code = resp.status().as_u16();
    let headers = resp.headers().clone();
    let body = http_body_util::BodyExt::collect(resp.into_body())
        .await
        .expect("body")
        .to_bytes();
    Raw {
        code,
        headers,
        text: String::from_utf8_lossy(&body).into_owned(),
    }
}

pub async fn get(client: &kube::Client, path: &str) -> Raw {
    raw(client, Method::GET, path, None, None).await
}

pub async fn post(client: &kube::Client, path: &str, body: Value) -> Raw {
    raw(
        client,
        Method::POST,
        path,
        Some("application/json"),
        Some(body),
    )
    .await
}

pub async fn put(client: &kube::Client, path: &str, body: Value) -> Raw {
    raw(
        client,
        Method::PUT,
        path,
        Some("application/json"),
        Some(body),
    )
    .await
}

pub async fn patch(client: &kube::Client, path: &str, ct: &str, body: Value) -> Raw {
    raw(client, Method::PATCH, path, Some(ct), Some(body)).await
}

pub async fn delete(client: &kube::Client, path: &str, body: Option<Value>) -> Raw {
    raw(client, Method::DELETE, path, Some("application/json"), body).await
}

pub const MERGE: &str = "application/merge-patch+json";
pub const JSON_PATCH: &str = "application/json-patch+json";
pub const SMP: &str = "application/strategic-merge-patch+json";
pub const APPLY: &str = "application/apply-patch+yaml";

/// Start a simulator (TLS, RBAC off) and create namespace `ns`.
pub async fn sim_with_ns(ns: &str) -> KubeSim {
    let sim = KubeSim::start().await.expect("simulator starts");
    create_ns(&sim.client(), ns).await;
    sim
}

pub async fn create_ns(client: &kube::Client, ns: &str) {
    let r = post(
        client,
        "/api/v1/namespaces",
        json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}}),
    )
    .await;
    assert_eq!(r.code, 201, "{}", r.text);
}

/// A namespaced CRD `widgets.example.com` (shortName `wd`, category `all`) with status and
/// scale subresources and printer columns.
pub fn widget_crd() -> Value {
    json!({
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": "widgets.example.com"},
        "spec": {
            "group": "example.com",
            "scope": "Namespaced",
            "names": {"plural": "widgets", "singular": "widget", "kind": "Widget", "shortNames": ["wd"], "categories": ["all"]},
            "versions": [{
                "name": "v1", "served": true, "storage": true,
                "schema": {"openAPIV3Schema": {
                    "type": "object",
                    "properties": {
                        "spec": {"type": "object", "properties": {
                            "color": {"type": "string", "default": "red"},
                            "size": {"type": "integer", "minimum": 0},
                            "replicas": {"type": "integer"},
                            "tags": {"type": "array", "items": {"type": "string"}},
                        }},
                        "status": {"type": "object", "properties": {
                            "replicas": {"type": "integer"},
                            "selector": {"type": "string"},
                            "conditions": {"type": "array", "items": {"type": "object", "properties": {
                                "type": {"type": "string"}, "status": {"type": "string"},
                                "reason": {"type": "string"}, "message": {"type": "string"},
                                "lastTransitionTime": {"type": "string"}}}},
                        }},
                    },
                }},
                "subresources": {"status": {}, "scale": {"specReplicasPath": ".spec.replicas", "statusReplicasPath": ".status.replicas", "labelSelectorPath": ".status.selector"}},
                "additionalPrinterColumns": [
                    {"name": "Color", "type": "string", "jsonPath": ".spec.color"},
                    {"name": "Size", "type": "integer", "jsonPath": ".spec.size", "priority": 1},
                    {"name": "Ready", "type": "string", "jsonPath": ".status.conditions[?(@.type==\"Ready\")].status"},
                ],
            }],
        },
    })
}

/// Create the widget CRD and wait until it is Established.
pub async fn install_widgets(client: &kube::Client) {
    let r = post(
        client,
        "/apis/apiextensions.k8s.io/v1/customresourcedefinitions",
        widget_crd(),
    )
    .await;
    assert!(r.code == 201 || r.code == 409, "{}", r.text);
    for _ in 0..100 {
        let r = get(
            client,
            "/apis/apiextensions.k8s.io/v1/customresourcedefinitions/widgets.example.com",
        )
        .await;
        let est = r.json()["status"]["conditions"]
            .as_array()
            .map(|a| {
                a.iter()
                    .any(|c| c["type"] == "Established" && c["status"] == "True")
            })
            .unwrap_or(false);
        if est {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    panic!("CRD not established");
}

pub fn widget(ns: &str, name: &str) -> Value {
    json!({"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": name, "namespace": ns}, "spec": {"size": 3}})
}

/// Poll `f` until it returns true (up to ~5 s).
pub async fn eventually<F, Fut>(mut f: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    for _ in 0..250 {
        if f().await {
            return true;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    false
}

/// Open a raw watch (or any streaming GET) and deliver its lines as they arrive; also reports
/// whether each chunk ended on a line boundary (events must be flushed whole).
pub async fn stream_lines(
    client: &kube::Client,
    path: &str,
    accept: Option<&str>,
) -> (u16, tokio::sync::mpsc::UnboundedReceiver<String>) {
    let mut b = Request::builder().method(Method::GET).uri(path);
    if let Some(a) = accept {
        b = b.header("Accept", a);
    }
    let req = b.body(kube::client::Body::empty()).unwrap();
    let resp = client.send(req).await.expect("watch request");
    let code = resp.status().as_u16();
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let mut body = resp.into_body();
    tokio::spawn(async move {
        let mut buf = String::new();
        while let Some(Ok(frame)) = http_body_util::BodyExt::frame(&mut body).await {
            if let Ok(data) = frame.into_data() {
                buf.push_str(&String::from_utf8_lossy(&data));
                while let Some(i) = buf.find('\n') {
                    let line: String = buf.drain(..=i).collect();
                    if tx.send(line.trim_end().to_string()).is_err() {
                        return;
                    }
                }
            }
        }
        if !buf.is_empty() {
            let _ = tx.send(format!("PARTIAL:{buf}"));
        }
        let _ = tx.send("EOF".to_string());
    });
    (code, rx)
}

/// The next line within `secs` seconds (None on timeout).
pub async fn next_line(
    rx: &mut tokio::sync::mpsc::UnboundedReceiver<String>,
    secs: f64,
) -> Option<String> {
    tokio::time::timeout(std::time::Duration::from_secs_f64(secs), rx.recv())
        .await
        .ok()
        .flatten()
}

/// An admin client without kube's default retries of 429/503/504 (to observe those codes).
pub fn no_retry_client(sim: &KubeSim) -> kube::Client {
    let mut cfg = sim.config();
    cfg.default_retry = false;
    kube::Client::try_from(cfg).expect("client")
}
