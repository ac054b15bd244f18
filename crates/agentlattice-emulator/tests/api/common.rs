//! A deliberately plain HTTP client (hyper's own), never the project's client crate: the tests
//! speak the wire format as the contract writes it.

use std::time::Duration;

use agentlattice_emulator::{CreatedServiceKey, Emulator, EmulatorConfig};
use bytes::Bytes;
use http::{HeaderMap, Method, Request};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde_json::{Value, json};

#[derive(Clone)]
pub struct Http {
    client: Client<HttpConnector, Full<Bytes>>,
    base: String,
}

#[derive(Debug)]
pub struct Resp {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Resp {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {:?}", String::from_utf8_lossy(&self.body)))
    }

    /// `error` of `{"error"}` or `{"detail": {"error"}}`.
    pub fn code(&self) -> String {
        let v = self.json();
        let inner = v.get("detail").unwrap_or(&v);
        inner["error"].as_str().unwrap_or_default().to_owned()
    }

    pub fn message(&self) -> String {
        let v = self.json();
        let inner = v.get("detail").unwrap_or(&v);
        inner["message"].as_str().unwrap_or_default().to_owned()
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// Asserts status and error code, and that the body is the contract's error shape.
    #[track_caller]
    pub fn expect_error(&self, status: u16, code: &str) {
        assert_eq!(
            (self.status, self.code().as_str()),
            (status, code),
            "body: {}",
            String::from_utf8_lossy(&self.body)
        );
        assert!(!self.message().is_empty(), "an error has a message");
        assert!(
            self.header("x-request-id").is_some(),
            "every response has X-Request-Id"
        );
    }

    #[track_caller]
    pub fn expect(&self, status: u16) -> Value {
        assert_eq!(
            self.status,
            status,
            "body: {}",
            String::from_utf8_lossy(&self.body)
        );
        self.json()
    }
}

pub struct Req {
    http: Http,
    method: Method,
    path: String,
    headers: Vec<(String, String)>,
    body: Option<Vec<u8>>,
}

impl Req {
    pub fn bearer(mut self, token: &str) -> Self {
        self.headers
            .push(("authorization".into(), format!("Bearer {token}")));
        self
    }

    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }

    pub fn json(mut self, v: &Value) -> Self {
        self.headers
            .push(("content-type".into(), "application/json".into()));
        self.body = Some(serde_json::to_vec(v).unwrap());
        self
    }

    pub fn raw(mut self, content_type: Option<&str>, body: impl Into<Vec<u8>>) -> Self {
        if let Some(ct) = content_type {
            self.headers.push(("content-type".into(), ct.into()));
        }
        self.body = Some(body.into());
        self
    }

    pub async fn try_send(self) -> Result<Resp, hyper_util::client::legacy::Error> {
        let mut b = Request::builder()
            .method(self.method)
            .uri(format!("{}{}", self.http.base, self.path));
        for (k, v) in &self.headers {
            b = b.header(k, v);
        }
        let req = b
            .body(Full::new(Bytes::from(self.body.unwrap_or_default())))
            .unwrap();
        let resp = self.http.client.request(req).await?;
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let body = resp.into_body().collect().await.unwrap().to_bytes();
        Ok(Resp {
            status,
            headers,
            body,
        })
    }

    #[track_caller]
    pub fn send(self) -> impl std::future::Future<Output = Resp> {
        let what = format!("{} {}", self.method, self.path);
        async move {
            self.try_send()
                .await
                .unwrap_or_else(|e| panic!("{what}: transport error {e:?}"))
        }
    }
}

impl Http {
    pub fn new(base: String) -> Self {
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(30))
            .build_http();
        Http { client, base }
    }

    pub fn req(&self, method: Method, path: &str) -> Req {
        Req {
            http: self.clone(),
            method,
            path: path.to_owned(),
            headers: Vec::new(),
            body: None,
        }
    }
    pub fn get(&self, path: &str) -> Req {
        self.req(Method::GET, path)
    }
    pub fn post(&self, path: &str) -> Req {
        self.req(Method::POST, path)
    }
    pub fn patch(&self, path: &str) -> Req {
        self.req(Method::PATCH, path)
    }
    pub fn delete(&self, path: &str) -> Req {
        self.req(Method::DELETE, path)
    }
    pub fn put(&self, path: &str) -> Req {
        self.req(Method::PUT, path)
    }
}

/// A running emulator, a client and one service key.
pub struct Fx {
    pub emu: Emulator,
    pub http: Http,
    pub svc: CreatedServiceKey,
}

impl Fx {
    pub async fn new() -> Fx {
        Self::with(EmulatorConfig::default()).await
    }

    pub async fn with(config: EmulatorConfig) -> Fx {
        let emu = Emulator::start(config).await.expect("emulator starts");
        let http = Http::new(emu.base_url());
        let svc = emu.create_service_key("tests");
        Fx { emu, http, svc }
    }

    pub fn admin(&self) -> String {
        self.emu.admin_token().to_owned()
    }

    /// Registers `name` with capabilities; returns the 201 body (agent + api_key, key_id, key_prefix).
    pub async fn register(&self, name: &str, caps: &[&str]) -> Value {
        self.http
            .post("/api/agents/register")
            .bearer(&self.svc.api_key)
            .json(&json!({"name": name, "capabilities": caps}))
            .send()
            .await
            .expect(201)
    }

    pub async fn mint(&self, agent_id: &str) -> Value {
        self.http
            .post(&format!("/api/agents/{agent_id}/keys"))
            .bearer(&self.svc.api_key)
            .send()
            .await
            .expect(201)
    }
}

pub fn s(v: &Value) -> String {
    v.as_str()
        .unwrap_or_else(|| panic!("not a string: {v}"))
        .to_owned()
}
