//! One call: URL, signing (fresh timestamp and nonce for every attempt), retries, the shared
//! throttle, observation and error mapping. Shared behind an `Arc` by a client and its clones.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use reqwest::Method;
use reqwest::header::{self, HeaderMap, HeaderName, HeaderValue};
use serde::de::DeserializeOwned;
use tokio::time::Instant;
use zeroize::Zeroizing;

use crate::error::{
    ApiError, Error, MAX_QUOTA_RETRY_AFTER_SECS, MAX_RETRY_AFTER_SECS, Result, parse_error_body,
    sanitize_decode_detail,
};
use crate::observe::{Attempt, AttemptOutcome, CallObserver};
use crate::operation::Operation;
use crate::retry::{Failure, RetryPolicy, parse_retry_after, should_retry};
use crate::sign::{self, SigningKey};
use crate::throttle::Throttle;

/// Largest response body read.
const MAX_BODY_BYTES: usize = 16 * 1024 * 1024;
/// Longest `X-Request-Id` kept.
const MAX_REQUEST_ID_LEN: usize = 128;

static API_KEY: HeaderName = HeaderName::from_static("x-api-key");
static REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
static KEY_DEPRECATED: HeaderName = HeaderName::from_static("x-alter-key-deprecated");

/// The transport shared by a client and its clones.
pub(crate) struct Shared {
    http: reqwest::Client,
    pub(crate) base: reqwest::Url,
    /// The base URL's path without its trailing `/`: requests are signed relative to it.
    base_path: String,
    pub(crate) app_id: Option<String>,
    retry: RetryPolicy,
    throttle: Throttle,
    observer: Option<Arc<dyn CallObserver>>,
}

/// One credential: the `x-api-key` header (marked sensitive), the derived signing key, optional
/// scope constraints, and whether Alter last said the key is deprecated.
pub(crate) struct Credential {
    api_key: HeaderValue,
    signing: SigningKey,
    constraints: Option<(String, HeaderValue)>,
    deprecated: AtomicBool,
}

impl Credential {
    pub(crate) fn new(secret: &str, constraints: Option<String>) -> Result<Arc<Self>> {
        let mut api_key = HeaderValue::from_str(secret)
            .map_err(|_| Error::InvalidKey(crate::KeyError::InvalidCharacters))?;
        api_key.set_sensitive(true);
        let constraints = match constraints {
            Some(c) => {
                let value = HeaderValue::from_str(&c).map_err(|_| {
                    Error::InvalidArgument("scope constraints must be visible ASCII".into())
                })?;
                Some((c, value))
            }
            None => None,
        };
        Ok(Arc::new(Self {
            api_key,
            signing: SigningKey::derive(secret),
            constraints,
            deprecated: AtomicBool::new(false),
        }))
    }

    /// Whether the last successful response said the key is deprecated.
    pub(crate) fn deprecated(&self) -> bool {
        self.deprecated.load(Ordering::Relaxed)
    }
}

/// One call to make.
pub(crate) struct Call<'a> {
    pub operation: Operation,
    pub method: Method,
    /// Path segments after the base URL, each percent-encoded on its own.
    pub path: Vec<&'a str>,
    pub query: Vec<(&'static str, String)>,
    /// The JSON body, serialized once, sent (and hashed) unchanged on every attempt.
    pub body: Option<Vec<u8>>,
    pub headers: Vec<(HeaderName, HeaderValue)>,
    /// Whether an ambiguous failure may be retried.
    pub idempotent: bool,
}

impl<'a> Call<'a> {
    pub(crate) fn new(
        operation: Operation,
        method: Method,
        path: impl IntoIterator<Item = &'a str>,
    ) -> Self {
        Self {
            operation,
            method,
            path: path.into_iter().collect(),
            query: Vec::new(),
            body: None,
            headers: Vec::new(),
            idempotent: operation.is_idempotent(),
        }
    }

    /// A JSON body, compact (`separators=(",", ":")` like the SDK's).
    pub(crate) fn json<T: serde::Serialize>(mut self, body: &T) -> Result<Self> {
        let bytes = serde_json::to_vec(body).map_err(|_| {
            Error::InvalidArgument(format!(
                "the {} request cannot be serialized",
                self.operation
            ))
        })?;
        self.body = Some(bytes);
        Ok(self)
    }
}

/// A 2xx response, read whole; its body is zeroed when dropped (it may hold a new key).
pub(crate) struct Response {
    pub operation: Operation,
    pub status: u16,
    pub body: Zeroizing<Vec<u8>>,
    pub request_id: Option<String>,
    pub key_deprecated: bool,
}

impl Response {
    pub(crate) fn json<T: DeserializeOwned>(&self) -> Result<T> {
        serde_json::from_slice(&self.body).map_err(|e| self.decode_error(&e.to_string()))
    }

    pub(crate) fn decode_error(&self, detail: &str) -> Error {
        Error::Decode {
            operation: self.operation,
            status: self.status,
            request_id: self.request_id.clone(),
            detail: sanitize_decode_detail(detail),
        }
    }
}

fn request_id(headers: &HeaderMap) -> Option<String> {
    let v = headers.get(&REQUEST_ID)?.to_str().ok()?.trim();
    (!v.is_empty() && v.len() <= MAX_REQUEST_ID_LEN && v.bytes().all(|b| b.is_ascii_graphic()))
        .then(|| v.to_owned())
}

/// What one attempt produced.
enum Outcome {
    Response {
        status: u16,
        headers: HeaderMap,
        body: Zeroizing<Vec<u8>>,
        truncated: bool,
    },
    Failed(reqwest::Error),
}

impl Shared {
    pub(crate) fn new(
        http: reqwest::Client,
        base: reqwest::Url,
        app_id: Option<String>,
        retry: RetryPolicy,
        throttle: Throttle,
        observer: Option<Arc<dyn CallObserver>>,
    ) -> Self {
        let base_path = base.path().trim_end_matches('/').to_owned();
        Self {
            http,
            base,
            base_path,
            app_id,
            retry,
            throttle,
            observer,
        }
    }

    fn url(&self, call: &Call<'_>) -> Result<reqwest::Url> {
        if call
            .path
            .iter()
            .any(|s| s.is_empty() || *s == "." || *s == "..")
        {
            return Err(Error::InvalidArgument(format!(
                "{}: an id must not be empty, \".\" or \"..\"",
                call.operation
            )));
        }
        let mut url = self.base.clone();
        url.path_segments_mut()
            .map_err(|()| Error::Config("the base URL cannot take a path".into()))?
            .pop_if_empty()
            .extend(call.path.iter().copied());
        if !call.query.is_empty() {
            url.query_pairs_mut()
                .extend_pairs(call.query.iter().map(|(k, v)| (*k, v.as_str())));
        }
        Ok(url)
    }

    fn observe(&self, attempt: &Attempt<'_>) {
        tracing::debug!(
            operation = attempt.operation.as_str(),
            attempt = attempt.attempt,
            outcome = %attempt.outcome.label(),
            request_id = attempt.request_id.unwrap_or(""),
            elapsed_ms = u64::try_from(attempt.duration.as_millis()).unwrap_or(u64::MAX),
            will_retry = attempt.will_retry,
            key_deprecated = attempt.key_deprecated,
            "Alter attempt"
        );
        if let Some(o) = &self.observer {
            o.on_attempt(attempt);
        }
    }

    async fn attempt(&self, cred: &Credential, call: &Call<'_>, url: &reqwest::Url) -> Outcome {
        // The path as signed: relative to the base URL, as the SDK signs its `/sdk/...` path.
        let rel = url.path().get(self.base_path.len()..).unwrap_or("/");
        let body: &[u8] = call.body.as_deref().unwrap_or_default();
        let now = u64::try_from(jiff::Timestamp::now().as_second()).unwrap_or(0);
        let constraints = cred.constraints.as_ref().map_or("", |(s, _)| s.as_str());
        let signed = sign::sign(
            &cred.signing,
            call.method.as_str(),
            rel,
            url.query(),
            now,
            sign::new_nonce(),
            body,
            constraints,
        );
        let mut request = self
            .http
            .request(call.method.clone(), url.clone())
            .header(&API_KEY, cred.api_key.clone())
            .header(header::ACCEPT, "application/json")
            .header(sign::TIMESTAMP, signed.timestamp)
            .header(sign::NONCE, signed.nonce)
            .header(sign::CONTENT_SHA256, signed.content_sha256)
            .header(sign::SIGNATURE, signed.signature);
        if let Some((_, value)) = &cred.constraints {
            request = request.header(sign::SCOPE_CONSTRAINTS, value.clone());
        }
        for (name, value) in &call.headers {
            request = request.header(name.clone(), value.clone());
        }
        if let Some(body) = &call.body {
            request = request
                .header(header::CONTENT_TYPE, "application/json")
                .body(body.clone());
        }
        let mut resp = match request.send().await {
            Ok(r) => r,
            Err(e) => return Outcome::Failed(e),
        };
        let status = resp.status().as_u16();
        let headers = std::mem::take(resp.headers_mut());
        let hint = resp
            .content_length()
            .and_then(|n| usize::try_from(n).ok())
            .unwrap_or(0)
            .min(MAX_BODY_BYTES);
        let mut body = Zeroizing::new(Vec::with_capacity(hint));
        loop {
            match resp.chunk().await {
                Ok(Some(chunk)) => {
                    let room = MAX_BODY_BYTES - body.len();
                    if chunk.len() > room {
                        body.extend_from_slice(&chunk[..room]);
                        return Outcome::Response {
                            status,
                            headers,
                            body,
                            truncated: true,
                        };
                    }
                    body.extend_from_slice(&chunk);
                }
                Ok(None) => {
                    return Outcome::Response {
                        status,
                        headers,
                        body,
                        truncated: false,
                    };
                }
                Err(e) => return Outcome::Failed(e),
            }
        }
    }

    /// Sends `call` with `cred`, retrying per the policy: a 2xx comes back whole, anything else as
    /// an [`Error`].
    pub(crate) async fn send(&self, cred: &Credential, call: Call<'_>) -> Result<Response> {
        let url = self.url(&call)?;
        let operation = call.operation;
        let limit = self.retry.retry_after_limit();
        let mut attempt = 0u32;
        loop {
            attempt += 1;
            match self.throttle.admit(limit).await {
                Ok(waited) if !waited.is_zero() => {
                    if let Some(o) = &self.observer {
                        o.on_throttle_wait(operation, waited);
                    }
                }
                Ok(_) => {}
                Err(retry_after) => {
                    return Err(Error::Throttled {
                        operation,
                        retry_after,
                    });
                }
            }
            let started = Instant::now();
            let outcome = self.attempt(cred, &call, &url).await;
            let duration = started.elapsed();
            let more = attempt < self.retry.attempts();

            let (status, headers, body, truncated) = match outcome {
                Outcome::Response {
                    status,
                    headers,
                    body,
                    truncated,
                } => (status, headers, body, truncated),
                Outcome::Failed(e) => {
                    let e = e.without_url();
                    let sent = !e.is_connect();
                    let failure = if sent {
                        Failure::MaybeSent
                    } else {
                        Failure::NotSent
                    };
                    let will_retry = more && should_retry(failure, call.idempotent);
                    self.observe(&Attempt {
                        operation,
                        attempt,
                        outcome: if e.is_timeout() {
                            AttemptOutcome::Timeout
                        } else {
                            AttemptOutcome::Transport
                        },
                        duration,
                        request_id: None,
                        will_retry,
                        key_deprecated: false,
                    });
                    if !will_retry {
                        return Err(if e.is_timeout() {
                            Error::Timeout {
                                operation,
                                sent,
                                source: e,
                            }
                        } else {
                            Error::Transport {
                                operation,
                                sent,
                                source: e,
                            }
                        });
                    }
                    tokio::time::sleep(self.retry.delay(attempt, None)).await;
                    continue;
                }
            };

            let request_id = request_id(&headers);
            let key_deprecated = headers
                .get(&KEY_DEPRECATED)
                .is_some_and(|v| v.as_bytes() == b"true");
            if (200..300).contains(&status) {
                cred.deprecated.store(key_deprecated, Ordering::Relaxed);
                self.observe(&Attempt {
                    operation,
                    attempt,
                    outcome: AttemptOutcome::Status(status),
                    duration,
                    request_id: request_id.as_deref(),
                    will_retry: false,
                    key_deprecated,
                });
                let response = Response {
                    operation,
                    status,
                    body,
                    request_id,
                    key_deprecated,
                };
                if truncated {
                    return Err(response.decode_error("the response body is too large"));
                }
                return Ok(response);
            }

            let parsed = parse_error_body(&body);
            let quota = parsed.code.as_deref() == Some("quota_exceeded");
            let max = if quota {
                MAX_QUOTA_RETRY_AFTER_SECS
            } else {
                MAX_RETRY_AFTER_SECS
            };
            let header_ra = headers
                .get(header::RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| parse_retry_after(v, max));
            // The body's `retry_after` is read on 429s only, as the SDK does.
            let retry_after = header_ra.or_else(|| {
                (status == 429)
                    .then_some(parsed.retry_after_body)
                    .flatten()
                    .map(|s| std::time::Duration::from_secs(s.min(max)))
            });
            let failure = match status {
                429 if quota => Failure::Final,
                429 if !parsed.json || parsed.code.as_deref() == Some("rate_limit_exceeded") => {
                    Failure::Throttled
                }
                // A structured 429 with another code (a provider-relayed limit, a pending-approval
                // cap…) is a refusal the SDK leaves to the caller.
                429 => Failure::Final,
                500..=599 => Failure::Server,
                _ => Failure::Final,
            };
            if let Some(ra) = retry_after
                && (failure == Failure::Throttled || status == 503)
                && !ra.is_zero()
            {
                // Every call sharing this transport waits until then.
                self.throttle.close_until(Instant::now() + ra);
            }
            let will_retry = more
                && should_retry(failure, call.idempotent)
                && retry_after.is_none_or(|ra| ra <= limit);
            self.observe(&Attempt {
                operation,
                attempt,
                outcome: AttemptOutcome::Status(status),
                duration,
                request_id: request_id.as_deref(),
                will_retry,
                key_deprecated,
            });
            if !will_retry {
                return Err(Error::Api(Box::new(ApiError {
                    operation,
                    status,
                    code: parsed.code,
                    message: parsed.message,
                    hint: parsed.hint,
                    request_id,
                    retry_after,
                    rate_limit_scope: parsed.scope,
                    missing_scopes: parsed.missing,
                    required_scopes: parsed.required,
                })));
            }
            tokio::time::sleep(self.retry.delay(attempt, retry_after)).await;
        }
    }
}
