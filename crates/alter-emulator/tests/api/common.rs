//! A deliberately plain HTTP client (hyper's own) that signs requests the way the SDK does, written
//! here for the tests (never the project's client crate): the tests speak the wire as
//! `docs/alter.md` writes it.

use std::time::Duration;

use alter_emulator::{CreatedAppKey, Emulator, EmulatorConfig};
use bytes::Bytes;
use http::{HeaderMap, Method, Request};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// HMAC-SHA256 (RFC 2104), for signing in tests.
pub fn hmac(key: &[u8], msg: &[u8]) -> [u8; 32] {
    let mut k = [0u8; 64];
    if key.len() > 64 {
        k[..32].copy_from_slice(&Sha256::digest(key));
    } else {
        k[..key.len()].copy_from_slice(key);
    }
    let ipad: Vec<u8> = k
        .iter()
        .map(|b| b ^ 0x36)
        .chain(msg.iter().copied())
        .collect();
    let inner = Sha256::digest(&ipad);
    let opad: Vec<u8> = k
        .iter()
        .map(|b| b ^ 0x5c)
        .chain(inner.iter().copied())
        .collect();
    Sha256::digest(&opad).into()
}

pub fn unix_now() -> i64 {
    jiff::Timestamp::now().as_second()
}

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

    /// The error object, unwrapped from `{"detail": {…}}` when it is there.
    pub fn err(&self) -> Value {
        let v = self.json();
        match v.get("detail") {
            Some(d) if d.is_object() => d.clone(),
            _ => v,
        }
    }

    pub fn code(&self) -> String {
        self.err()["error"].as_str().unwrap_or_default().to_owned()
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// Status and code, a message, a request id.
    #[track_caller]
    pub fn expect_error(&self, status: u16, code: &str) -> Value {
        assert_eq!(
            (self.status, self.code().as_str()),
            (status, code),
            "body: {}",
            String::from_utf8_lossy(&self.body)
        );
        assert!(
            self.err()["message"]
                .as_str()
                .is_some_and(|m| !m.is_empty()),
            "an error has a message"
        );
        assert!(
            self.header("x-request-id").is_some(),
            "every response has X-Request-Id"
        );
        self.err()
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

/// Changes the headers of a request after it was signed.
type Tamper = Box<dyn FnOnce(&mut HeaderMap) + Send>;

pub struct Req {
    http: Http,
    method: Method,
    path: String,
    key: Option<String>,
    body: Option<Vec<u8>>,
    headers: Vec<(String, String)>,
    timestamp: Option<String>,
    nonce: Option<String>,
    sign: bool,
    tamper: Option<Tamper>,
}

impl Http {
    pub fn new(base: &str) -> Self {
        Http {
            client: Client::builder(TokioExecutor::new()).build_http(),
            base: base.to_owned(),
        }
    }

    pub fn req(&self, method: Method, path: &str) -> Req {
        Req {
            http: self.clone(),
            method,
            path: path.to_owned(),
            key: None,
            body: None,
            headers: Vec::new(),
            timestamp: None,
            nonce: None,
            sign: true,
            tamper: None,
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

/// Python's `quote_plus`.
fn quote_plus(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'_' | b'.' | b'-' | b'~' => {
                (b as char).to_string()
            }
            b' ' => "+".into(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// The signed target, as the SDK computes it.
pub fn target(path_and_query: &str) -> String {
    let (path, query) = match path_and_query.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (path_and_query, None),
    };
    let path = percent_encoding::percent_decode_str(path)
        .decode_utf8_lossy()
        .into_owned();
    match query.filter(|q| !q.is_empty()) {
        None => path,
        Some(q) => {
            let mut pairs: Vec<(String, String)> =
                form_urlencoded::parse(q.as_bytes()).into_owned().collect();
            pairs.sort();
            let q: Vec<String> = pairs
                .iter()
                .map(|(k, v)| format!("{}={}", quote_plus(k), quote_plus(v)))
                .collect();
            format!("{path}?{}", q.join("&"))
        }
    }
}

/// The four signature headers of one request.
#[allow(clippy::too_many_arguments)]
pub fn signature(
    key: &str,
    method: &str,
    path_and_query: &str,
    body: &[u8],
    timestamp: &str,
    nonce: &str,
    constraints: &str,
) -> [(&'static str, String); 4] {
    let content = hex(&Sha256::digest(body));
    let sts = format!(
        "{method}\n{}\n{timestamp}\n{nonce}\n{content}\n{constraints}",
        target(path_and_query)
    );
    let signing_key = hmac(key.as_bytes(), b"alter-signing-v1");
    [
        ("x-alter-timestamp", timestamp.to_owned()),
        ("x-alter-nonce", nonce.to_owned()),
        ("x-alter-content-sha256", content),
        (
            "x-alter-signature",
            hex(&hmac(&signing_key, sts.as_bytes())),
        ),
    ]
}

pub fn fresh_nonce() -> String {
    hex(&rand_bytes())
}

fn rand_bytes() -> [u8; 16] {
    let mut out = [0u8; 16];
    let id = uuid::Uuid::new_v4();
    out.copy_from_slice(id.as_bytes());
    out
}

impl Req {
    pub fn key(mut self, key: &str) -> Self {
        self.key = Some(key.to_owned());
        self
    }

    /// A JSON body, compact, as the SDK sends it.
    pub fn json(mut self, v: Value) -> Self {
        self.body = Some(serde_json::to_vec(&v).unwrap());
        self.headers
            .push(("content-type".into(), "application/json".into()));
        self
    }

    pub fn raw_body(mut self, body: impl Into<Vec<u8>>) -> Self {
        self.body = Some(body.into());
        self
    }

    pub fn header(mut self, k: &str, v: &str) -> Self {
        self.headers.push((k.to_owned(), v.to_owned()));
        self
    }

    pub fn timestamp(mut self, ts: i64) -> Self {
        self.timestamp = Some(ts.to_string());
        self
    }

    pub fn nonce(mut self, nonce: &str) -> Self {
        self.nonce = Some(nonce.to_owned());
        self
    }

    /// No signature headers at all.
    pub fn unsigned(mut self) -> Self {
        self.sign = false;
        self
    }

    /// Changes the headers after signing (a tampered request).
    pub fn tamper(mut self, f: impl FnOnce(&mut HeaderMap) + Send + 'static) -> Self {
        self.tamper = Some(Box::new(f));
        self
    }

    pub async fn send(self) -> Resp {
        let body = self.body.unwrap_or_default();
        let mut req = Request::builder()
            .method(self.method.clone())
            .uri(format!("{}{}", self.http.base, self.path))
            .body(Full::new(Bytes::from(body.clone())))
            .unwrap();
        let h = req.headers_mut();
        for (k, v) in &self.headers {
            h.insert(
                http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                v.parse().unwrap(),
            );
        }
        if let Some(key) = &self.key {
            h.insert("x-api-key", key.parse().unwrap());
            if self.sign {
                let constraints = self
                    .headers
                    .iter()
                    .find(|(k, _)| k.eq_ignore_ascii_case("x-alter-scope-constraints"))
                    .map_or("", |(_, v)| v.as_str());
                let ts = self.timestamp.unwrap_or_else(|| unix_now().to_string());
                let nonce = self.nonce.unwrap_or_else(fresh_nonce);
                for (k, v) in signature(
                    key,
                    self.method.as_str(),
                    &self.path,
                    &body,
                    &ts,
                    &nonce,
                    constraints,
                ) {
                    h.insert(k, v.parse().unwrap());
                }
            }
        }
        if let Some(f) = self.tamper {
            f(h);
        }
        let resp = tokio::time::timeout(Duration::from_secs(30), self.http.client.request(req))
            .await
            .expect("a response within 30 s")
            .expect("a response");
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let body = resp.into_body().collect().await.unwrap().to_bytes();
        Resp {
            status,
            headers,
            body,
        }
    }
}

/// An emulator with one app and an app key holding every scope.
pub struct Env {
    pub emu: Emulator,
    pub http: Http,
    pub app: String,
    pub key: CreatedAppKey,
}

impl Env {
    pub async fn new() -> Env {
        Self::with(EmulatorConfig::default()).await
    }

    pub async fn with(config: EmulatorConfig) -> Env {
        let emu = Emulator::start(config).await.unwrap();
        let app = emu.create_app("tests").id;
        let key = emu.create_app_key(&app, "ops", None).unwrap();
        let http = Http::new(&emu.base_url());
        Env {
            emu,
            http,
            app,
            key,
        }
    }

    pub fn k(&self) -> &str {
        &self.key.api_key
    }

    /// Creates an agent; returns `(agent, plaintext key)`.
    pub async fn create(&self, name: &str) -> (Value, String) {
        let v = self
            .http
            .post("/sdk/agents")
            .key(self.k())
            .json(json!({"name": name, "type": "agent", "scopes": {}, "metadata": {}}))
            .send()
            .await
            .expect(201);
        let key = v["api_key"].as_str().unwrap().to_owned();
        (v, key)
    }

    pub async fn mint(&self, agent: &str) -> Value {
        self.http
            .post(&format!("/sdk/agents/{agent}/keys"))
            .key(self.k())
            .json(json!({}))
            .send()
            .await
            .expect(201)
    }

    pub async fn admin(&self, method: Method, path: &str, body: Option<Value>) -> Resp {
        let mut r = self.http.req(method, path).header(
            "authorization",
            &format!("Bearer {}", self.emu.admin_token()),
        );
        if let Some(b) = body {
            r = r.json(b);
        }
        r.send().await
    }
}

pub fn s(v: &Value) -> String {
    v.as_str()
        .unwrap_or_else(|| panic!("not a string: {v}"))
        .to_owned()
}
