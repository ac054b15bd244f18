//! One HTTP call with retries, throttling, observation and error mapping. Shared (behind an `Arc`)
//! by a client and all its clones.

use std::sync::Arc;

use reqwest::Method;
use reqwest::header::{self, HeaderMap, HeaderName, HeaderValue};
use serde::de::DeserializeOwned;
use tokio::time::Instant;
use zeroize::Zeroizing;

use crate::Operation;
use crate::error::{ApiError, Error, Result, parse_error_body, sanitize_decode_detail};
use crate::observe::{Attempt, AttemptOutcome, CallObserver};
use crate::retry::{AttemptFailure, RetryPolicy, parse_retry_after, should_retry};
use crate::throttle::Throttle;

/// Largest response body read (a page of 1000 agents is well under this).
const MAX_BODY_BYTES: usize = 16 * 1024 * 1024;
/// Longest `X-Request-Id` kept.
const MAX_REQUEST_ID_LEN: usize = 128;

/// `X-Request-Id`.
pub(crate) static REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
/// `X-AL-Key-Deprecated`.
pub(crate) static KEY_DEPRECATED: HeaderName = HeaderName::from_static("x-al-key-deprecated");

/// The transport shared by a client and its clones.
pub(crate) struct Shared {
    pub(crate) http: reqwest::Client,
    pub(crate) base: reqwest::Url,
    pub(crate) retry: RetryPolicy,
    pub(crate) throttle: Throttle,
    pub(crate) observer: Option<Arc<dyn CallObserver>>,
}

/// The `Authorization` header of one key, marked sensitive (hyper and reqwest never print it).
#[derive(Clone)]
pub(crate) struct Auth(HeaderValue);

impl Auth {
    pub(crate) fn bearer(secret: &str) -> Result<Self> {
        let text = Zeroizing::new(format!("Bearer {secret}"));
        let mut value = HeaderValue::from_str(&text)
            .map_err(|_| Error::InvalidKey(crate::KeyError::InvalidCharacters))?;
        value.set_sensitive(true);
        Ok(Self(value))
    }
}

/// One call to make.
pub(crate) struct Call<'a> {
    pub(crate) operation: Operation,
    pub(crate) method: Method,
    /// Path segments after the base URL (each percent-encoded on its own).
    pub(crate) path: Vec<&'a str>,
    pub(crate) query: Vec<(&'static str, String)>,
    /// A JSON body, serialized once and sent unchanged on every attempt.
    pub(crate) body: Option<Vec<u8>>,
    pub(crate) headers: Vec<(HeaderName, HeaderValue)>,
    /// Whether an ambiguous failure may be retried.
    pub(crate) idempotent: bool,
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

/// A 2xx response, read whole. The body is zeroed when dropped (it may hold a new key).
pub(crate) struct Response {
    pub(crate) operation: Operation,
    pub(crate) status: u16,
    pub(crate) headers: HeaderMap,
    pub(crate) body: Zeroizing<Vec<u8>>,
    pub(crate) request_id: Option<String>,
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

    /// `X-AL-Key-Deprecated: true`.
    pub(crate) fn key_deprecated(&self) -> bool {
        self.headers
            .get(&KEY_DEPRECATED)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.trim().eq_ignore_ascii_case("true"))
    }
}

fn request_id(headers: &HeaderMap) -> Option<String> {
    let v = headers.get(&REQUEST_ID)?.to_str().ok()?.trim();
    let ok =
        !v.is_empty() && v.len() <= MAX_REQUEST_ID_LEN && v.bytes().all(|b| b.is_ascii_graphic());
    ok.then(|| v.to_owned())
}

/// Reads the body, up to `MAX_BODY_BYTES`; `Ok((body, true))` when it was cut.
async fn read_body(
    resp: &mut reqwest::Response,
) -> std::result::Result<(Zeroizing<Vec<u8>>, bool), reqwest::Error> {
    let hint = resp
        .content_length()
        .and_then(|n| usize::try_from(n).ok())
        .unwrap_or(0)
        .min(MAX_BODY_BYTES);
    let mut body = Zeroizing::new(Vec::with_capacity(hint));
    while let Some(chunk) = resp.chunk().await? {
        if body.len() + chunk.len() > MAX_BODY_BYTES {
            let room = MAX_BODY_BYTES - body.len();
            body.extend_from_slice(&chunk[..room]);
            return Ok((body, true));
        }
        body.extend_from_slice(&chunk);
    }
    Ok((body, false))
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
    fn url(&self, call: &Call<'_>) -> Result<reqwest::Url> {
        let mut url = self.base.clone();
        for segment in &call.path {
            if segment.is_empty() || *segment == "." || *segment == ".." {
                return Err(Error::InvalidArgument(format!(
                    "{}: an id must not be empty, \".\" or \"..\"",
                    call.operation
                )));
            }
        }
        {
            let mut segments = url
                .path_segments_mut()
                .map_err(|()| Error::Config("the base URL cannot take a path".to_owned()))?;
            segments.pop_if_empty().extend(call.path.iter().copied());
        }
        if !call.query.is_empty() {
            let mut pairs = url.query_pairs_mut();
            for (k, v) in &call.query {
                pairs.append_pair(k, v);
            }
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
            "AgentLattice attempt"
        );
        if let Some(observer) = &self.observer {
            observer.on_attempt(attempt);
        }
    }

    async fn attempt(&self, auth: &Auth, call: &Call<'_>, url: &reqwest::Url) -> Outcome {
        let mut request = self
            .http
            .request(call.method.clone(), url.clone())
            .header(header::AUTHORIZATION, auth.0.clone())
            .header(header::ACCEPT, "application/json");
        for (name, value) in &call.headers {
            request = request.header(name.clone(), value.clone());
        }
        if let Some(body) = &call.body {
            request = request
                .header(header::CONTENT_TYPE, "application/json")
                .body(body.clone());
        }
        let mut resp = match request.send().await {
            Ok(resp) => resp,
            Err(e) => return Outcome::Failed(e),
        };
        let status = resp.status().as_u16();
        let headers = std::mem::take(resp.headers_mut());
        match read_body(&mut resp).await {
            Ok((body, truncated)) => Outcome::Response {
                status,
                headers,
                body,
                truncated,
            },
            Err(e) => Outcome::Failed(e),
        }
    }

    /// Sends `call` with `auth`, retrying per the policy; a 2xx comes back whole, anything else as
    /// an [`Error`].
    pub(crate) async fn send(&self, auth: &Auth, call: Call<'_>) -> Result<Response> {
        let url = self.url(&call)?;
        let operation = call.operation;
        let max_attempts = self.retry.attempts();
        let wait_limit = self.retry.retry_after_limit();
        let mut attempt = 0u32;
        loop {
            attempt += 1;
            match self.throttle.admit(wait_limit).await {
                Ok(waited) if !waited.is_zero() => {
                    if let Some(observer) = &self.observer {
                        observer.on_throttle_wait(operation, waited);
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
            let outcome = self.attempt(auth, &call, &url).await;
            let duration = started.elapsed();
            let can_retry = attempt < max_attempts;

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
                    let timeout = e.is_timeout();
                    let failure = if sent {
                        AttemptFailure::MaybeSent
                    } else {
                        AttemptFailure::NotSent
                    };
                    let will_retry = can_retry && should_retry(failure, call.idempotent);
                    self.observe(&Attempt {
                        operation,
                        attempt,
                        outcome: if timeout {
                            AttemptOutcome::Timeout
                        } else {
                            AttemptOutcome::Transport
                        },
                        duration,
                        request_id: None,
                        will_retry,
                    });
                    if !will_retry {
                        return Err(if timeout {
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
            if (200..300).contains(&status) {
                self.observe(&Attempt {
                    operation,
                    attempt,
                    outcome: AttemptOutcome::Status(status),
                    duration,
                    request_id: request_id.as_deref(),
                    will_retry: false,
                });
                let response = Response {
                    operation,
                    status,
                    headers,
                    body,
                    request_id,
                };
                if truncated {
                    return Err(response.decode_error("the response body is too large"));
                }
                return Ok(response);
            }

            let parsed = parse_error_body(&body);
            let retry_after = headers
                .get(header::RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| parse_retry_after(v, jiff::Timestamp::now()))
                .or(parsed.retry_after);
            if let Some(ra) = retry_after
                && (status == 429 || status == 503)
                && !ra.is_zero()
            {
                // Every call through this client (all clones) waits until then.
                self.throttle.close_until(Instant::now() + ra);
            }
            let will_retry = can_retry
                && should_retry(AttemptFailure::Status(status), call.idempotent)
                && retry_after.is_none_or(|ra| ra <= wait_limit);
            self.observe(&Attempt {
                operation,
                attempt,
                outcome: AttemptOutcome::Status(status),
                duration,
                request_id: request_id.as_deref(),
                will_retry,
            });
            if !will_retry {
                return Err(Error::Api(Box::new(ApiError {
                    operation,
                    status,
                    code: parsed.code,
                    message: parsed.message,
                    request_id,
                    retry_after,
                })));
            }
            tokio::time::sleep(self.retry.delay(attempt, retry_after)).await;
        }
    }
}
