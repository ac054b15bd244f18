//! The crate's one error type.
//!
//! What an error shows (`Display`, `Debug`, its sources) never includes a key, a signature, a
//! request body or a header value. It may include the operation, the HTTP status, the server's
//! error code, message and hint (scrubbed of anything shaped like a key) and the request id.

use std::fmt;
use std::time::Duration;

use crate::key::KeyError;
use crate::operation::Operation;

/// Shorthand for this crate's results.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// The longest `Retry-After` kept from a rate-limit 429 or a 5xx (an hour), as the SDK clamps it.
pub(crate) const MAX_RETRY_AFTER_SECS: u64 = 3600;
/// The longest `Retry-After` kept from a `quota_exceeded` 429 (31 days), as the SDK clamps it.
pub(crate) const MAX_QUOTA_RETRY_AFTER_SECS: u64 = 31 * 24 * 3600;

/// Every way a call can fail.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Alter answered with a status other than 2xx.
    #[error("{0}")]
    Api(Box<ApiError>),

    /// No complete answer within the request timeout (or the connect timeout).
    #[error("Alter {operation}: timed out{}", sent_note(*sent))]
    Timeout {
        /// The operation.
        operation: Operation,
        /// Whether the request may have reached the server.
        sent: bool,
        /// The underlying error (its URL removed).
        #[source]
        source: reqwest::Error,
    },

    /// The connection failed (refused, reset, TLS, DNS…).
    #[error("Alter {operation}: transport error{}", sent_note(*sent))]
    Transport {
        /// The operation.
        operation: Operation,
        /// Whether the request may have reached the server.
        sent: bool,
        /// The underlying error (its URL removed).
        #[source]
        source: reqwest::Error,
    },

    /// A success response whose body is not what the SDK reads.
    #[error("Alter {operation}: could not decode the response (HTTP {status}{}): {detail}",
        request_id.as_deref().map(|id| format!(", request id {id}")).unwrap_or_default())]
    Decode {
        /// The operation.
        operation: Operation,
        /// The HTTP status.
        status: u16,
        /// `X-Request-Id` of the response.
        request_id: Option<String>,
        /// What went wrong, quoted values removed.
        detail: String,
    },

    /// The client's shared gate is closed (a 429 or 503 with `Retry-After` was received by this
    /// client or one sharing its transport) for longer than the policy allows; nothing was sent.
    #[error("Alter {operation}: rate limited, retry after {}s", retry_after.as_secs_f64().ceil())]
    Throttled {
        /// The operation.
        operation: Operation,
        /// How long until the gate opens.
        retry_after: Duration,
    },

    /// The app key belongs to another app than the one configured
    /// ([`crate::AppClient::verify_app`]).
    #[error("the app key belongs to app {actual}, not to the configured app {expected}")]
    AppMismatch {
        /// The configured app id.
        expected: String,
        /// The app Alter resolved the key to.
        actual: String,
    },

    /// A key did not parse.
    #[error("invalid key: {0}")]
    InvalidKey(#[from] KeyError),

    /// An argument the client refuses to send (the checks the SDK makes before sending).
    #[error("invalid argument: {0}")]
    InvalidArgument(String),

    /// The client configuration is unusable.
    #[error("invalid Alter client configuration: {0}")]
    Config(String),
}

fn sent_note(sent: bool) -> &'static str {
    if sent {
        " (the request may have reached the server)"
    } else {
        " (the request was not sent)"
    }
}

/// What an error code means, as `alter-sdk==0.29.0` types it (its exception classes). The same
/// wire code can mean two things depending on the status (`key_revoked`: 401 when the calling key
/// is revoked, 409 when the key being changed is).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// 401 `invalid_key`: no stored key matches (`InvalidKeyError`).
    InvalidKey,
    /// 401 `key_revoked`: the calling key was revoked (`KeyRevokedError`).
    KeyRevoked,
    /// 401 `key_expired` (`KeyExpiredError`).
    KeyExpired,
    /// 401 `key_rotated_grace_expired` (`KeyRotationExpiredError`).
    KeyRotationExpired,
    /// 401 `key_not_active` (`KeyInactiveError`).
    KeyInactive,
    /// 401 `agent_inactive`: the calling agent is suspended (`AgentInactiveError`).
    AgentInactive,
    /// 401 `agent_revoked`: the calling agent is revoked (`AgentRevokedError`).
    AgentRevoked,
    /// Another 401: missing key, bad or replayed signature (the SDK's generic `BackendError`).
    Unauthorized,
    /// 403 `insufficient_scope` (`InsufficientScopeError`); see [`ApiError::missing_scopes`].
    InsufficientScope,
    /// `agent_cannot_mint_subagents`: an agent key on a management route.
    AgentCannotMintSubagents,
    /// `me_requires_agent_key`: an app key on `/sdk/agents/me`.
    MeRequiresAgentKey,
    /// 404 `agent_not_found` (or `caller_agent_unresolved`) (`AgentNotFoundError`).
    AgentNotFound,
    /// 404 `key_not_found` (`KeyNotFoundError`).
    KeyNotFound,
    /// 409 `agent_name_exists` (`AgentNameExistsError`).
    AgentNameExists,
    /// 409 `agent_concurrent_update`: a stale `expected_version` (`AgentConcurrentUpdateError`).
    ConcurrentUpdate,
    /// 409 `last_active_key`: revoking the last non-revoked key without `force`.
    LastActiveKey,
    /// 409 `agent_key_limit_reached`: mint past the agent's key cap (`AgentKeyLimitError`).
    KeyLimitReached,
    /// 409 `key_revoked`: (un)deprecating a revoked key (`KeyAlreadyRevokedError`).
    KeyAlreadyRevoked,
    /// `idempotency_key_body_mismatch`.
    IdempotencyBodyMismatch,
    /// `idempotency_key_agent_revoked`.
    IdempotencyAgentRevoked,
    /// `idempotency_key_agent_inactive`.
    IdempotencyAgentInactive,
    /// 429 `rate_limit_exceeded` or a non-JSON 429, or the client's own gate (`RateLimitError`).
    RateLimited,
    /// 429 `quota_exceeded`: a policy denial, not retried (`QuotaExceededError`).
    QuotaExceeded,
    /// 400 or 422 with any other code: the request was refused as invalid.
    Invalid,
    /// A 5xx.
    Server,
    /// Anything else with a status (another 4xx, an odd status).
    Other,
    /// No answer (timeout, transport) or a local failure (configuration, argument, key format,
    /// undecodable response, app mismatch).
    NoResponse,
}

/// A non-2xx answer from Alter.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ApiError {
    /// The operation.
    pub operation: Operation,
    /// The HTTP status.
    pub status: u16,
    /// The body's `error` code, top level or inside `{"detail": {…}}`.
    pub code: Option<String>,
    /// The body's `message`, scrubbed and shortened.
    pub message: Option<String>,
    /// The body's `hint` (an actionable next step), scrubbed and shortened.
    pub hint: Option<String>,
    /// `X-Request-Id` of the response.
    pub request_id: Option<String>,
    /// `Retry-After` (the header, else `retry_after` in the body), clamped as the SDK does.
    pub retry_after: Option<Duration>,
    /// Which limit a 429 hit: `api_key` or `organization` (the body's `scope`).
    pub rate_limit_scope: Option<String>,
    /// `missing` of an `insufficient_scope` body: the scopes the key is short of.
    pub missing_scopes: Vec<String>,
    /// `required` of an `insufficient_scope` body.
    pub required_scopes: Vec<String>,
}

impl ApiError {
    /// An API error with this status and code (for fakes and tests of callers).
    pub fn new(operation: Operation, status: u16, code: Option<&str>) -> Self {
        Self {
            operation,
            status,
            code: code.map(str::to_owned),
            message: None,
            hint: None,
            request_id: None,
            retry_after: None,
            rate_limit_scope: None,
            missing_scopes: Vec::new(),
            required_scopes: Vec::new(),
        }
    }

    /// Sets the message (scrubbed like a server's).
    pub fn with_message(mut self, message: &str) -> Self {
        self.message = Some(sanitize(message));
        self
    }

    /// Sets `Retry-After`.
    pub fn with_retry_after(mut self, retry_after: Duration) -> Self {
        self.retry_after = Some(retry_after);
        self
    }

    /// The SDK's meaning of this status and code.
    pub fn kind(&self) -> ErrorKind {
        use ErrorKind as K;
        let code = self.code.as_deref().unwrap_or("");
        match (self.status, code) {
            (409, "key_revoked") => K::KeyAlreadyRevoked,
            (409, "agent_concurrent_update") => K::ConcurrentUpdate,
            (_, "insufficient_scope") => K::InsufficientScope,
            (_, "rate_limit_exceeded") => K::RateLimited,
            (_, "quota_exceeded") => K::QuotaExceeded,
            (429, _) if self.code.is_none() => K::RateLimited,
            (_, "invalid_key") => K::InvalidKey,
            (_, "key_revoked") => K::KeyRevoked,
            (_, "key_expired") => K::KeyExpired,
            (_, "key_rotated_grace_expired") => K::KeyRotationExpired,
            (_, "key_not_active") => K::KeyInactive,
            (_, "agent_inactive") => K::AgentInactive,
            (_, "agent_revoked") => K::AgentRevoked,
            (_, "agent_not_found" | "caller_agent_unresolved") => K::AgentNotFound,
            (_, "key_not_found") => K::KeyNotFound,
            (_, "agent_name_exists") => K::AgentNameExists,
            (_, "last_active_key") => K::LastActiveKey,
            (_, "agent_key_limit_reached") => K::KeyLimitReached,
            (_, "idempotency_key_body_mismatch") => K::IdempotencyBodyMismatch,
            (_, "idempotency_key_agent_revoked") => K::IdempotencyAgentRevoked,
            (_, "idempotency_key_agent_inactive") => K::IdempotencyAgentInactive,
            (_, "agent_cannot_mint_subagents") => K::AgentCannotMintSubagents,
            (_, "me_requires_agent_key") => K::MeRequiresAgentKey,
            (401, _) => K::Unauthorized,
            (400 | 422, _) => K::Invalid,
            (500..=599, _) => K::Server,
            _ => K::Other,
        }
    }
}

impl From<ApiError> for Error {
    fn from(e: ApiError) -> Self {
        Error::Api(Box::new(e))
    }
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Alter {}: HTTP {}", self.operation, self.status)?;
        if let Some(code) = &self.code {
            write!(f, " {code}")?;
        }
        if let Some(message) = &self.message {
            write!(f, ": {message}")?;
        }
        if !self.missing_scopes.is_empty() {
            write!(f, " (missing scopes: {})", self.missing_scopes.join(", "))?;
        }
        if let Some(id) = &self.request_id {
            write!(f, " (request id {id})")?;
        }
        Ok(())
    }
}

impl std::error::Error for ApiError {}

impl Error {
    /// The API error, when Alter answered with a non-2xx status.
    pub fn api(&self) -> Option<&ApiError> {
        match self {
            Error::Api(e) => Some(e),
            _ => None,
        }
    }

    /// The operation that failed, when the error comes from a call.
    pub fn operation(&self) -> Option<Operation> {
        match self {
            Error::Api(e) => Some(e.operation),
            Error::Timeout { operation, .. }
            | Error::Transport { operation, .. }
            | Error::Decode { operation, .. }
            | Error::Throttled { operation, .. } => Some(*operation),
            _ => None,
        }
    }

    /// The HTTP status, when there was a response.
    pub fn status(&self) -> Option<u16> {
        match self {
            Error::Api(e) => Some(e.status),
            Error::Decode { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// The body's `error` code.
    pub fn code(&self) -> Option<&str> {
        self.api().and_then(|e| e.code.as_deref())
    }

    /// The server's message, scrubbed.
    pub fn message(&self) -> Option<&str> {
        self.api().and_then(|e| e.message.as_deref())
    }

    /// `X-Request-Id` of the response.
    pub fn request_id(&self) -> Option<&str> {
        match self {
            Error::Api(e) => e.request_id.as_deref(),
            Error::Decode { request_id, .. } => request_id.as_deref(),
            _ => None,
        }
    }

    /// How long the server (or the client's shared gate) asked to wait.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            Error::Api(e) => e.retry_after,
            Error::Throttled { retry_after, .. } => Some(*retry_after),
            _ => None,
        }
    }

    /// The SDK's meaning of the error ([`ErrorKind::NoResponse`] when there was no answer).
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::Api(e) => e.kind(),
            Error::Throttled { .. } => ErrorKind::RateLimited,
            _ => ErrorKind::NoResponse,
        }
    }

    /// Whether trying again later may succeed: a rate-limit 429 (not a quota denial), a 5xx, a
    /// timeout, a transport error, the client's own gate.
    pub fn is_retryable(&self) -> bool {
        match self {
            Error::Api(e) => e.kind() == ErrorKind::RateLimited || (500..600).contains(&e.status),
            Error::Timeout { .. } | Error::Transport { .. } | Error::Throttled { .. } => true,
            _ => false,
        }
    }

    /// Whether Alter may have carried the request out although the call failed: any 5xx (the SDK
    /// does not say which 5xx are refused before anything is done), a timeout or transport error
    /// after sending, or a success response that could not be decoded. A mint that failed this way
    /// may have left a key nobody received; a create without `Idempotency-Key`, an agent.
    pub fn may_have_committed(&self) -> bool {
        match self {
            Error::Api(e) => (500..600).contains(&e.status),
            Error::Timeout { sent, .. } | Error::Transport { sent, .. } => *sent,
            Error::Decode { .. } => true,
            _ => false,
        }
    }

    /// A stable short label for metrics and event reasons: `rate_limited`, `quota_exceeded`,
    /// `unauthorized`, `forbidden`, `not_found`, `conflict`, `validation`, `client`,
    /// `unavailable` (503), `server` (other 5xx), `unexpected_status`, `timeout`, `transport`,
    /// `decode`, `app_mismatch`, `invalid_key`, `invalid_argument`, `config`.
    pub fn category(&self) -> &'static str {
        match self {
            Error::Api(e) => match (e.kind(), e.status) {
                (ErrorKind::RateLimited, _) => "rate_limited",
                (ErrorKind::QuotaExceeded, _) => "quota_exceeded",
                (_, 401) => "unauthorized",
                (_, 403) => "forbidden",
                (_, 404) => "not_found",
                (_, 409) => "conflict",
                (_, 400 | 413 | 415 | 422) => "validation",
                (_, 503) => "unavailable",
                (_, 500..=599) => "server",
                (_, 402..=499) => "client",
                _ => "unexpected_status",
            },
            Error::Timeout { .. } => "timeout",
            Error::Transport { .. } => "transport",
            Error::Decode { .. } => "decode",
            Error::Throttled { .. } => "rate_limited",
            Error::AppMismatch { .. } => "app_mismatch",
            Error::InvalidKey(_) => "invalid_key",
            Error::InvalidArgument(_) => "invalid_argument",
            Error::Config(_) => "config",
        }
    }

    /// 404, any code.
    pub fn is_not_found(&self) -> bool {
        self.api().is_some_and(|e| e.status == 404)
    }

    /// A timeout.
    pub fn is_timeout(&self) -> bool {
        matches!(self, Error::Timeout { .. })
    }
}

/// The fields of an error body the client keeps.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct ErrorBody {
    pub json: bool,
    pub code: Option<String>,
    pub message: Option<String>,
    pub hint: Option<String>,
    pub retry_after_body: Option<u64>,
    pub scope: Option<String>,
    pub missing: Vec<String>,
    pub required: Vec<String>,
}

/// Reads an error body as the SDK's agents mapper does: a JSON object, unwrapped from
/// `{"detail": {…}}` when `detail` is an object; anything else (HTML, a list, `{"detail": [..]}`
/// of a framework validation error) keeps what it can.
pub(crate) fn parse_error_body(body: &[u8]) -> ErrorBody {
    let Ok(value) = serde_json::from_slice::<serde_json::Value>(body) else {
        return ErrorBody::default();
    };
    let mut out = ErrorBody {
        json: true,
        ..ErrorBody::default()
    };
    let Some(mut obj) = value.as_object() else {
        return out;
    };
    if let Some(detail) = obj.get("detail").and_then(|d| d.as_object()) {
        obj = detail;
    }
    let text = |name: &str| {
        obj.get(name)
            .and_then(|v| v.as_str())
            .filter(|s| !s.is_empty())
    };
    let list = |name: &str| -> Vec<String> {
        obj.get(name)
            .and_then(|v| v.as_array())
            .map(|a| {
                a.iter()
                    .filter_map(|s| s.as_str())
                    .filter_map(clean_code)
                    .collect()
            })
            .unwrap_or_default()
    };
    out.code = text("error").and_then(clean_code);
    out.message = text("message").map(sanitize).filter(|m| !m.is_empty());
    out.hint = text("hint").map(sanitize).filter(|m| !m.is_empty());
    out.scope = text("scope").and_then(clean_code);
    out.missing = list("missing");
    out.required = list("required");
    out.retry_after_body = obj.get("retry_after").and_then(whole_seconds);
    out
}

/// A non-negative integral number (an integral float such as `60.0` counts), as the SDK's
/// `_coerce_int` accepts it.
fn whole_seconds(v: &serde_json::Value) -> Option<u64> {
    if let Some(n) = v.as_u64() {
        return Some(n);
    }
    let f = v.as_f64()?;
    (f.is_finite() && f >= 0.0 && f.fract() == 0.0 && f < 1e15).then_some(f as u64)
}

/// An identifier-shaped code is kept; anything else is dropped rather than shown.
fn clean_code(code: &str) -> Option<String> {
    // A key is an identifier too (`alter_key_…`): a code shaped like one is dropped as well.
    let ok = !code.is_empty()
        && code.len() <= 64
        && code
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_.-:".contains(&b))
        && sanitize(code) == code;
    ok.then(|| code.to_owned())
}

/// Longest server text kept, in characters.
const MAX_TEXT_CHARS: usize = 300;

/// Removes control characters, replaces anything shaped like an Alter key (`alter_` followed by
/// key characters) with `<redacted>`, and shortens the text. Defence in depth: Alter's messages do
/// not carry keys.
pub(crate) fn sanitize(text: &str) -> String {
    let mut out = String::with_capacity(text.len().min(MAX_TEXT_CHARS + 8));
    let mut rest = text;
    while let Some(i) = rest.find("alter_") {
        out.push_str(&rest[..i]);
        let after = &rest[i + "alter_".len()..];
        let end = after
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == '-'))
            .unwrap_or(after.len());
        out.push_str("<redacted>");
        rest = &after[end..];
    }
    out.push_str(rest);
    let cleaned: String = out
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    let trimmed = cleaned.trim();
    if trimmed.chars().count() > MAX_TEXT_CHARS {
        let mut cut: String = trimmed.chars().take(MAX_TEXT_CHARS).collect();
        cut.push('…');
        cut
    } else {
        trimmed.to_owned()
    }
}

/// A decode error's detail without the quoted values serde would echo from the body.
pub(crate) fn sanitize_decode_detail(detail: &str) -> String {
    let mut out = String::with_capacity(detail.len());
    let mut in_quotes = false;
    for c in detail.chars() {
        if c == '"' || c == '`' {
            if !in_quotes {
                out.push_str("\"…\"");
            }
            in_quotes = !in_quotes;
        } else if !in_quotes {
            out.push(c);
        }
    }
    sanitize(&out)
}

#[cfg(test)]
mod tests {
    use super::*;

    mod fuzz {
        //! Fuzzing the sanitiser (issue 16): no Alter key of any shape survives it, wherever it
        //! sits in the text. `PROPTEST_CASES=n` runs more cases.

        use proptest::prelude::*;

        use super::super::sanitize;

        fn key() -> impl Strategy<Value = String> {
            prop_oneof![
                "[A-Za-z0-9_-]{40}".prop_map(|b| format!("alter_key_{b}")),
                ("[a-z2-7]{22}", "[a-z2-7]{6}").prop_map(|(a, b)| format!("alter_rk_{a}_{b}")),
                ("[a-z2-7]{22}", "[a-z2-7]{6}").prop_map(|(a, b)| format!("alter_ak_{a}_{b}")),
            ]
        }

        fn around() -> impl Strategy<Value = String> {
            prop_oneof![
                ".{0,12}",
                proptest::collection::vec(
                    prop_oneof![
                        Just("alter_".to_owned()),
                        Just("alter_key_".to_owned()),
                        Just("al_".to_owned()),
                        Just("_".to_owned()),
                        Just(" ".to_owned()),
                        Just("\n".to_owned()),
                        "[A-Za-z0-9]{1,4}",
                    ],
                    0..5
                )
                .prop_map(|p| p.concat()),
            ]
        }

        proptest! {
            #![proptest_config(ProptestConfig {
                cases: std::env::var("PROPTEST_CASES")
                    .ok()
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(512),
                failure_persistence: None,
                ..ProptestConfig::default()
            })]

            #[test]
            fn no_key_survives(parts in proptest::collection::vec((around(), key()), 1..4), tail in around()) {
                let mut text = String::new();
                for (before, key) in &parts {
                    text.push_str(before);
                    text.push_str(key);
                }
                text.push_str(&tail);
                let out = sanitize(&text);
                for (_, key) in &parts {
                    // The part after the scheme identifies the key.
                    let body = &key[key.find('_').map_or(0, |i| i + 1)..];
                    let body = &body[body.find('_').map_or(0, |i| i + 1)..];
                    prop_assert!(!out.contains(body), "{text:?} sanitised to {out:?}");
                }
            }
        }
    }

    fn api(status: u16, code: Option<&str>) -> ApiError {
        ApiError::new(Operation::GetAgent, status, code)
    }

    #[test]
    fn error_bodies_flat_and_wrapped() {
        let flat = parse_error_body(
            br#"{"error":"last_active_key","message":"refusing","hint":"mint first"}"#,
        );
        assert_eq!(flat.code.as_deref(), Some("last_active_key"));
        assert_eq!(flat.hint.as_deref(), Some("mint first"));
        let wrapped = parse_error_body(
            br#"{"detail":{"error":"insufficient_scope","message":"no","required":["dashboard_agents:write"],"granted":[],"missing":["dashboard_agents:write"]}}"#,
        );
        assert_eq!(wrapped.code.as_deref(), Some("insufficient_scope"));
        assert_eq!(wrapped.missing, ["dashboard_agents:write"]);
        let throttled = parse_error_body(
            br#"{"detail":{"error":"rate_limit_exceeded","retry_after":7.0,"scope":"api_key"}}"#,
        );
        assert_eq!(throttled.retry_after_body, Some(7));
        assert_eq!(throttled.scope.as_deref(), Some("api_key"));
        // Framework validation errors: `detail` is a list, the top-level code (if any) is read.
        let v = parse_error_body(br#"{"detail":[{"loc":["body","name"]}]}"#);
        assert!(v.json && v.code.is_none());
        let html = parse_error_body(b"<html>busy</html>");
        assert!(!html.json);
        assert_eq!(
            parse_error_body(br#"{"retry_after":1.5}"#).retry_after_body,
            None
        );
        assert_eq!(
            parse_error_body(br#"{"retry_after":-3}"#).retry_after_body,
            None
        );
        assert_eq!(parse_error_body(br#"{"error":"bad code!"}"#).code, None);
    }

    #[test]
    fn kinds_follow_the_sdk_mapping() {
        use ErrorKind as K;
        let table = [
            (401, Some("key_revoked"), K::KeyRevoked),
            (409, Some("key_revoked"), K::KeyAlreadyRevoked),
            (401, Some("invalid_key"), K::InvalidKey),
            (401, Some("agent_inactive"), K::AgentInactive),
            (401, Some("invalid_signature"), K::Unauthorized),
            (401, None, K::Unauthorized),
            (403, Some("insufficient_scope"), K::InsufficientScope),
            (
                403,
                Some("agent_cannot_mint_subagents"),
                K::AgentCannotMintSubagents,
            ),
            (403, Some("me_requires_agent_key"), K::MeRequiresAgentKey),
            (404, Some("agent_not_found"), K::AgentNotFound),
            (404, Some("caller_agent_unresolved"), K::AgentNotFound),
            (404, Some("key_not_found"), K::KeyNotFound),
            (409, Some("agent_name_exists"), K::AgentNameExists),
            (409, Some("agent_concurrent_update"), K::ConcurrentUpdate),
            (409, Some("last_active_key"), K::LastActiveKey),
            (409, Some("agent_key_limit_reached"), K::KeyLimitReached),
            (
                409,
                Some("idempotency_key_body_mismatch"),
                K::IdempotencyBodyMismatch,
            ),
            (
                409,
                Some("idempotency_key_agent_revoked"),
                K::IdempotencyAgentRevoked,
            ),
            (
                409,
                Some("idempotency_key_agent_inactive"),
                K::IdempotencyAgentInactive,
            ),
            (429, Some("rate_limit_exceeded"), K::RateLimited),
            (429, None, K::RateLimited),
            (429, Some("quota_exceeded"), K::QuotaExceeded),
            (422, Some("validation_error"), K::Invalid),
            (400, Some("constraint_not_narrowing"), K::Invalid),
            (503, Some("unavailable"), K::Server),
            (418, None, K::Other),
        ];
        for (status, code, kind) in table {
            assert_eq!(api(status, code).kind(), kind, "{status} {code:?}");
        }
    }

    #[test]
    fn retryable_and_committed() {
        let e = |s, c| Error::from(api(s, c));
        assert!(e(429, Some("rate_limit_exceeded")).is_retryable());
        assert!(!e(429, Some("quota_exceeded")).is_retryable());
        assert!(!e(429, Some("rate_limit_exceeded")).may_have_committed());
        assert!(e(503, None).is_retryable() && e(503, None).may_have_committed());
        assert!(!e(409, Some("last_active_key")).is_retryable());
        assert_eq!(e(409, Some("last_active_key")).category(), "conflict");
        assert_eq!(e(429, Some("quota_exceeded")).category(), "quota_exceeded");
        assert_eq!(e(503, None).category(), "unavailable");
    }

    #[test]
    fn texts_are_scrubbed() {
        assert_eq!(
            sanitize("key alter_key_abcDEF-123_x leaked\n, and alter_rk_a_b"),
            "key <redacted> leaked , and <redacted>"
        );
        assert_eq!(
            sanitize(&"x".repeat(400)).chars().count(),
            MAX_TEXT_CHARS + 1
        );
        assert_eq!(
            sanitize_decode_detail("invalid type: string \"alter_key_secret\", expected u64"),
            "invalid type: string \"…\", expected u64"
        );
    }

    #[test]
    fn display_has_no_body() {
        let mut a = api(403, Some("insufficient_scope")).with_message("short of scope");
        a.missing_scopes = vec!["dashboard_agents:admin".into()];
        assert_eq!(
            Error::from(a).to_string(),
            "Alter get_agent: HTTP 403 insufficient_scope: short of scope (missing scopes: dashboard_agents:admin)"
        );
    }

    #[test]
    fn a_code_shaped_like_a_key_is_dropped() {
        assert_eq!(
            clean_code("agent_not_found").as_deref(),
            Some("agent_not_found")
        );
        assert_eq!(
            clean_code("alter_key_ABCDEFGHIJabcdefghij0123456789-_ABCDEFGH"),
            None
        );
        assert_eq!(clean_code("x_alter_rk_abcdefghijklmnopqrstuv"), None);
    }
}
