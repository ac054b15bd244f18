//! The crate's one error type.
//!
//! What an error shows (`Display`, `Debug`, its sources) never includes a key, a request body or a
//! header value. It may include the operation, the HTTP status, the server's error code and message
//! (scrubbed of anything shaped like a key) and the request id.

use std::fmt;
use std::time::Duration;

use crate::Operation;
use crate::key::KeyError;

/// Shorthand for this crate's results.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Every way a call can fail.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The server answered with a status other than 2xx.
    #[error("{0}")]
    Api(Box<ApiError>),

    /// No complete answer within the request timeout (or the connect timeout).
    #[error("AgentLattice {operation}: timed out{}", sent_note(*sent))]
    Timeout {
        /// The operation.
        operation: Operation,
        /// Whether the request may have reached the server (false: timed out while connecting).
        sent: bool,
        /// The underlying error (its URL removed).
        #[source]
        source: reqwest::Error,
    },

    /// The connection failed (refused, reset, TLS, DNS…).
    #[error("AgentLattice {operation}: transport error{}", sent_note(*sent))]
    Transport {
        /// The operation.
        operation: Operation,
        /// Whether the request may have reached the server (false: the connection was never made).
        sent: bool,
        /// The underlying error (its URL removed).
        #[source]
        source: reqwest::Error,
    },

    /// A success response whose body is not what the contract says.
    #[error(
        "AgentLattice {operation}: could not decode the response (HTTP {status}{}): {detail}",
        request_id_note(request_id.as_deref())
    )]
    Decode {
        /// The operation.
        operation: Operation,
        /// The HTTP status of the response.
        status: u16,
        /// `X-Request-Id` of the response.
        request_id: Option<String>,
        /// What went wrong, with any quoted value from the body removed.
        detail: String,
    },

    /// The client's shared gate is closed (a 429 with `Retry-After` was received by this client or
    /// a clone of it) for longer than the policy's `max_retry_after`; the request was not sent.
    #[error("AgentLattice {operation}: rate limited, retry after {}s", retry_after.as_secs_f64().ceil())]
    Throttled {
        /// The operation.
        operation: Operation,
        /// How long until the gate opens.
        retry_after: Duration,
    },

    /// A key did not parse (wrong scheme, bad characters).
    #[error("invalid key: {0}")]
    InvalidKey(#[from] KeyError),

    /// An argument the client refuses to send (for instance an invalid `Idempotency-Key`).
    #[error("invalid argument: {0}")]
    InvalidArgument(String),

    /// The client configuration is unusable (bad base URL, no CA certificates…).
    #[error("invalid AgentLattice client configuration: {0}")]
    Config(String),
}

fn sent_note(sent: bool) -> &'static str {
    if sent {
        " (the request may have reached the server)"
    } else {
        " (the request was not sent)"
    }
}

fn request_id_note(request_id: Option<&str>) -> String {
    match request_id {
        Some(id) => format!(", request id {id}"),
        None => String::new(),
    }
}

/// A non-2xx answer from AgentLattice.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ApiError {
    /// The operation.
    pub operation: Operation,
    /// The HTTP status code.
    pub status: u16,
    /// The `error` code of the body, top level or under `detail` (`agent_name_exists`, …).
    pub code: Option<String>,
    /// The `message` of the body, scrubbed of anything shaped like a key and shortened.
    pub message: Option<String>,
    /// `X-Request-Id` of the response.
    pub request_id: Option<String>,
    /// `Retry-After` (header; else `retry_after` in the body).
    pub retry_after: Option<Duration>,
}

impl ApiError {
    /// An API error with this status and code (for fakes and tests of callers; the client builds
    /// its own from responses).
    pub fn new(operation: Operation, status: u16, code: Option<&str>) -> Self {
        Self {
            operation,
            status,
            code: code.map(str::to_owned),
            message: None,
            request_id: None,
            retry_after: None,
        }
    }

    /// Sets the message (scrubbed like a server's).
    pub fn with_message(mut self, message: &str) -> Self {
        self.message = Some(sanitize_message(message));
        self
    }

    /// Sets the request id.
    pub fn with_request_id(mut self, request_id: impl Into<String>) -> Self {
        self.request_id = Some(request_id.into());
        self
    }

    /// Sets `Retry-After`.
    pub fn with_retry_after(mut self, retry_after: Duration) -> Self {
        self.retry_after = Some(retry_after);
        self
    }
}

impl From<ApiError> for Error {
    fn from(e: ApiError) -> Self {
        Error::Api(Box::new(e))
    }
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "AgentLattice {}: HTTP {}", self.operation, self.status)?;
        if let Some(code) = &self.code {
            write!(f, " {code}")?;
        }
        if let Some(message) = &self.message {
            write!(f, ": {message}")?;
        }
        if let Some(id) = &self.request_id {
            write!(f, " (request id {id})")?;
        }
        Ok(())
    }
}

impl std::error::Error for ApiError {}

impl Error {
    /// The API error, when the server answered with a non-2xx status.
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
            Error::InvalidKey(_) | Error::InvalidArgument(_) | Error::Config(_) => None,
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

    /// The `error` code of the response body (`agent_name_exists`, `key_revoked`, …).
    pub fn code(&self) -> Option<&str> {
        self.api().and_then(|e| e.code.as_deref())
    }

    /// The server's message, scrubbed.
    pub fn message(&self) -> Option<&str> {
        self.api().and_then(|e| e.message.as_deref())
    }

    /// `X-Request-Id` of the response, when there was one.
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

    /// Whether trying again later may succeed: 429, 5xx, timeouts, transport errors, the
    /// client's own gate. A caller that retries a non-idempotent call (mint) after
    /// [`Error::may_have_committed`] must deal with the possible duplicate.
    pub fn is_retryable(&self) -> bool {
        match self {
            Error::Api(e) => e.status == 429 || (500..600).contains(&e.status),
            Error::Timeout { .. } | Error::Transport { .. } | Error::Throttled { .. } => true,
            Error::Decode { .. }
            | Error::InvalidKey(_)
            | Error::InvalidArgument(_)
            | Error::Config(_) => false,
        }
    }

    /// Whether the server may have carried the request out even though the call failed: a 5xx other
    /// than 503, a timeout or transport error after the request was sent, or a success response
    /// that could not be decoded. A mint that failed this way may have left a key nobody received.
    pub fn may_have_committed(&self) -> bool {
        match self {
            Error::Api(e) => (500..600).contains(&e.status) && e.status != 503,
            Error::Timeout { sent, .. } | Error::Transport { sent, .. } => *sent,
            Error::Decode { .. } => true,
            Error::Throttled { .. }
            | Error::InvalidKey(_)
            | Error::InvalidArgument(_)
            | Error::Config(_) => false,
        }
    }

    /// A stable short string for metric labels and event reasons: `rate_limited`, `unauthorized`,
    /// `forbidden`, `not_found`, `conflict`, `validation`, `client`, `unavailable` (503), `server`
    /// (other 5xx), `unexpected_status`, `timeout`, `transport`, `decode`, `invalid_key`,
    /// `invalid_argument`, `config`.
    pub fn category(&self) -> &'static str {
        match self {
            Error::Api(e) => status_category(e.status),
            Error::Timeout { .. } => "timeout",
            Error::Transport { .. } => "transport",
            Error::Decode { .. } => "decode",
            Error::Throttled { .. } => "rate_limited",
            Error::InvalidKey(_) => "invalid_key",
            Error::InvalidArgument(_) => "invalid_argument",
            Error::Config(_) => "config",
        }
    }

    /// 404 (any code: `agent_not_found`, `key_not_found`, `not_found`).
    pub fn is_not_found(&self) -> bool {
        self.status() == Some(404) && self.api().is_some()
    }

    /// 409, any code.
    pub fn is_conflict(&self) -> bool {
        self.status() == Some(409) && self.api().is_some()
    }

    /// 409 with this `error` code (`agent_name_exists`, `last_active_key`, …).
    pub fn is_conflict_code(&self, code: &str) -> bool {
        self.is_conflict() && self.code() == Some(code)
    }

    /// Any status with this `error` code.
    pub fn is_code(&self, code: &str) -> bool {
        self.code() == Some(code)
    }

    /// 401: the key is missing, unknown or revoked.
    pub fn is_unauthorized(&self) -> bool {
        self.status() == Some(401) && self.api().is_some()
    }

    /// 403: the key may not call this endpoint (or the agent is halted).
    pub fn is_forbidden(&self) -> bool {
        self.status() == Some(403) && self.api().is_some()
    }

    /// 429 from the server, or the client's shared gate.
    pub fn is_rate_limited(&self) -> bool {
        self.category() == "rate_limited"
    }

    /// A timeout.
    pub fn is_timeout(&self) -> bool {
        matches!(self, Error::Timeout { .. })
    }
}

/// The category of an HTTP status (see [`Error::category`]).
pub(crate) fn status_category(status: u16) -> &'static str {
    match status {
        429 => "rate_limited",
        401 => "unauthorized",
        403 => "forbidden",
        404 => "not_found",
        409 => "conflict",
        400 | 413 | 415 | 422 => "validation",
        503 => "unavailable",
        500..=599 => "server",
        402..=499 => "client",
        _ => "unexpected_status",
    }
}

/// The fields of an error body that the client keeps.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct ErrorBody {
    pub code: Option<String>,
    pub message: Option<String>,
    pub retry_after: Option<Duration>,
}

/// Reads `{"error", "message"}`, `{"detail": {"error", "message"}}`, `{"detail": "text"}` and
/// `{"error": {"code", "message"}}`; anything else (HTML, plain text, empty) gives no code.
pub(crate) fn parse_error_body(body: &[u8]) -> ErrorBody {
    let Ok(serde_json::Value::Object(top)) = serde_json::from_slice::<serde_json::Value>(body)
    else {
        return ErrorBody::default();
    };
    let retry_after = [
        top.get("retry_after"),
        top.get("detail").and_then(|d| d.get("retry_after")),
    ]
    .into_iter()
    .flatten()
    .find_map(retry_after_number);

    let (code, message) = match (top.get("error"), top.get("detail")) {
        (Some(serde_json::Value::String(code)), _) => {
            (Some(code.as_str()), str_field(&top, "message"))
        }
        (Some(serde_json::Value::Object(inner)), _) => (
            inner.get("code").and_then(|c| c.as_str()),
            str_field(inner, "message").or_else(|| str_field(&top, "message")),
        ),
        (_, Some(serde_json::Value::Object(detail))) => (
            detail
                .get("error")
                .and_then(|c| c.as_str())
                .or_else(|| detail.get("code").and_then(|c| c.as_str())),
            str_field(detail, "message"),
        ),
        (_, Some(serde_json::Value::String(text))) => (None, Some(text.as_str())),
        _ => (None, str_field(&top, "message")),
    };
    ErrorBody {
        code: code.and_then(clean_code),
        message: message.map(sanitize_message).filter(|m| !m.is_empty()),
        retry_after,
    }
}

fn str_field<'a>(
    obj: &'a serde_json::Map<String, serde_json::Value>,
    name: &str,
) -> Option<&'a str> {
    obj.get(name).and_then(|v| v.as_str())
}

fn retry_after_number(v: &serde_json::Value) -> Option<Duration> {
    let secs = v.as_f64()?;
    (secs.is_finite() && secs >= 0.0)
        .then(|| Duration::from_secs_f64(secs.min(MAX_RETRY_AFTER_SECS as f64)))
}

/// The longest `Retry-After` the client represents (a day); longer values are clamped.
pub(crate) const MAX_RETRY_AFTER_SECS: u64 = 86_400;

/// An error code is an identifier; anything else (too long, odd characters, or shaped like a key —
/// `al_svc_…` is an identifier too) is dropped rather than shown.
fn clean_code(code: &str) -> Option<String> {
    let ok = !code.is_empty()
        && code.len() <= 64
        && code
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'.' || b == b'-')
        && sanitize_message(code) == code;
    ok.then(|| code.to_owned())
}

/// Longest server message kept, in characters.
const MAX_MESSAGE_CHARS: usize = 300;

/// Removes control characters, replaces anything shaped like a key (`<scheme><body>`) with
/// `<redacted>`, and shortens the message. The contract says messages never contain keys; this is
/// defence in depth against a server that breaks it.
pub(crate) fn sanitize_message(message: &str) -> String {
    // Every occurrence of either scheme, overlapping ones included, with the run of body
    // characters after it; the union of these spans is replaced. (Resuming the scan after the
    // first match's body is not enough: in `al_svc_al_agent_<body>` that body ends at the second
    // `_`, and the second key's body would be kept.)
    let mut spans: Vec<(usize, usize)> = Vec::new();
    for scheme in ["al_svc_", "al_agent_"] {
        let mut from = 0;
        while let Some(i) = message[from..].find(scheme) {
            let start = from + i;
            let body = start + scheme.len();
            let body_len = message[body..]
                .bytes()
                .take_while(|b| b.is_ascii_alphanumeric())
                .count();
            spans.push((start, body + body_len));
            // The scheme starts with an ASCII letter: the next byte is a char boundary.
            from = start + 1;
        }
    }
    spans.sort_unstable();
    let mut out = String::with_capacity(message.len().min(MAX_MESSAGE_CHARS + 8));
    let mut copied = 0;
    let mut spans = spans.into_iter().peekable();
    while let Some((start, mut end)) = spans.next() {
        while let Some(&(next_start, next_end)) = spans.peek() {
            if next_start > end {
                break;
            }
            end = end.max(next_end);
            spans.next();
        }
        out.push_str(&message[copied..start]);
        out.push_str("<redacted>");
        copied = end;
    }
    out.push_str(&message[copied..]);
    let cleaned: String = out
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    let cleaned = cleaned.trim();
    if cleaned.chars().count() > MAX_MESSAGE_CHARS {
        let mut short: String = cleaned.chars().take(MAX_MESSAGE_CHARS).collect();
        short.push('…');
        short
    } else {
        cleaned.to_owned()
    }
}

/// A serde_json error message with every quoted value removed: a type error can quote what it found
/// (`invalid type: string "…"`), and that could be a key. Field names (in backticks, made of
/// lower-case letters and underscores) are kept; line and column are kept.
pub(crate) fn sanitize_decode_detail(detail: &str) -> String {
    let mut out = String::with_capacity(detail.len());
    let mut chars = detail.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '"' => {
                for d in chars.by_ref() {
                    if d == '"' {
                        break;
                    }
                }
                out.push_str("\"<redacted>\"");
            }
            '`' => {
                let mut inner = String::new();
                for d in chars.by_ref() {
                    if d == '`' {
                        break;
                    }
                    inner.push(d);
                }
                let identifier = !inner.is_empty()
                    && inner.len() <= 40
                    && !inner.starts_with("al_")
                    && inner.bytes().all(|b| b.is_ascii_lowercase() || b == b'_');
                if identifier {
                    out.push('`');
                    out.push_str(&inner);
                    out.push('`');
                } else {
                    out.push_str("`<redacted>`");
                }
            }
            c if c.is_control() => out.push(' '),
            c => out.push(c),
        }
    }
    sanitize_message(&out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn api(status: u16, code: Option<&str>) -> Error {
        Error::Api(Box::new(ApiError {
            operation: Operation::RevokeKey,
            status,
            code: code.map(str::to_owned),
            message: Some("m".into()),
            request_id: Some("req-1".into()),
            retry_after: None,
        }))
    }

    #[test]
    fn parses_top_level_codes() {
        let b = parse_error_body(br#"{"error":"agent_name_exists","message":"taken"}"#);
        assert_eq!(b.code.as_deref(), Some("agent_name_exists"));
        assert_eq!(b.message.as_deref(), Some("taken"));
        assert_eq!(b.retry_after, None);
    }

    #[test]
    fn parses_detail_wrapped_codes() {
        let b = parse_error_body(
            br#"{"detail":{"error":"last_active_key","message":"would leave no key"}}"#,
        );
        assert_eq!(b.code.as_deref(), Some("last_active_key"));
        assert_eq!(b.message.as_deref(), Some("would leave no key"));
        let b = parse_error_body(br#"{"detail":"Not Found"}"#);
        assert_eq!(b.code, None);
        assert_eq!(b.message.as_deref(), Some("Not Found"));
        let b = parse_error_body(br#"{"error":{"code":"invalid_key","message":"nope"}}"#);
        assert_eq!(b.code.as_deref(), Some("invalid_key"));
        assert_eq!(b.message.as_deref(), Some("nope"));
    }

    #[test]
    fn reads_retry_after_from_the_body() {
        let b = parse_error_body(
            br#"{"error":"rate_limit_exceeded","message":"slow","retry_after":3}"#,
        );
        assert_eq!(b.retry_after, Some(Duration::from_secs(3)));
        let b =
            parse_error_body(br#"{"detail":{"error":"rate_limit_exceeded","retry_after":1.5}}"#);
        assert_eq!(b.retry_after, Some(Duration::from_millis(1500)));
        let b = parse_error_body(br#"{"error":"x","retry_after":-1}"#);
        assert_eq!(b.retry_after, None);
    }

    #[test]
    fn non_json_bodies_give_no_code() {
        for body in [
            &b""[..],
            b"<html><body>502 Bad Gateway</body></html>",
            b"upstream connect error",
            b"[1,2,3]",
            b"\"just a string\"",
            b"{\"error\": 5}",
            b"\xff\xfe",
        ] {
            assert_eq!(parse_error_body(body).code, None, "{body:?}");
        }
    }

    #[test]
    fn odd_codes_are_dropped() {
        let b = parse_error_body(br#"{"error":"has space <script>"}"#);
        assert_eq!(b.code, None);
    }

    #[test]
    fn messages_lose_key_shaped_text_and_control_characters() {
        let m =
            sanitize_message("key al_agent_ABCdef0123456789 and al_svc_XYZ98 are bad\nnext line");
        assert_eq!(m, "key <redacted> and <redacted> are bad next line");
        let long = "x".repeat(1000);
        assert_eq!(
            sanitize_message(&long).chars().count(),
            MAX_MESSAGE_CHARS + 1
        );
    }

    /// Found by the response fuzzer (`tests/fuzz_responses.rs`): a key passed for an identifier.
    #[test]
    fn a_code_shaped_like_a_key_is_dropped() {
        assert_eq!(
            clean_code("agent_not_found").as_deref(),
            Some("agent_not_found")
        );
        assert_eq!(
            clean_code("al_svc_al_agent_56QRbTDdGcVpp1QtWKwhSPJp05j4fMHt"),
            None
        );
        assert_eq!(clean_code("x_al_agent_AbCdEfGhIjKl"), None);
    }

    /// Found by the response fuzzer too: a scheme right before a key.
    #[test]
    fn a_key_right_after_a_scheme_is_redacted_too() {
        assert_eq!(
            sanitize_message("al_svc_al_agent_ABCdef0123456789 x"),
            "<redacted> x"
        );
        assert_eq!(sanitize_message("al_al_svc_XYZ98"), "al_<redacted>");
    }

    #[test]
    fn decode_details_lose_quoted_values() {
        let d = sanitize_decode_detail(
            "invalid type: string \"al_agent_SECRET123\", expected u64 at line 1 column 30",
        );
        assert!(!d.contains("SECRET"), "{d}");
        assert!(d.contains("line 1 column 30"), "{d}");
        let d = sanitize_decode_detail("missing field `key_id` at line 1 column 2");
        assert_eq!(d, "missing field `key_id` at line 1 column 2");
        let d = sanitize_decode_detail("unknown variant `Secret99`, expected `active`");
        assert!(!d.contains("Secret99"), "{d}");
    }

    #[test]
    fn categories_and_predicates() {
        let cases = [
            (400, "validation"),
            (401, "unauthorized"),
            (403, "forbidden"),
            (404, "not_found"),
            (405, "client"),
            (409, "conflict"),
            (413, "validation"),
            (415, "validation"),
            (422, "validation"),
            (429, "rate_limited"),
            (500, "server"),
            (502, "server"),
            (503, "unavailable"),
            (504, "server"),
            (302, "unexpected_status"),
        ];
        for (status, cat) in cases {
            assert_eq!(api(status, None).category(), cat, "{status}");
        }
        assert!(api(404, Some("agent_not_found")).is_not_found());
        assert!(api(409, Some("last_active_key")).is_conflict_code("last_active_key"));
        assert!(!api(409, Some("last_active_key")).is_conflict_code("agent_revoked"));
        assert!(!api(401, Some("key_revoked")).is_conflict_code("key_revoked"));
        assert!(api(401, Some("key_revoked")).is_code("key_revoked"));
        assert!(api(401, None).is_unauthorized());
        assert!(api(403, None).is_forbidden());
        assert!(api(429, None).is_rate_limited());
    }

    #[test]
    fn retryable_and_committed() {
        for (status, retryable, committed) in [
            (400, false, false),
            (401, false, false),
            (404, false, false),
            (409, false, false),
            (422, false, false),
            (429, true, false),
            (500, true, true),
            (502, true, true),
            (503, true, false),
            (504, true, true),
        ] {
            let e = api(status, None);
            assert_eq!(e.is_retryable(), retryable, "{status}");
            assert_eq!(e.may_have_committed(), committed, "{status}");
        }
        let t = Error::Throttled {
            operation: Operation::Register,
            retry_after: Duration::from_secs(2),
        };
        assert!(t.is_retryable());
        assert!(!t.may_have_committed());
        assert_eq!(t.category(), "rate_limited");
        assert_eq!(t.retry_after(), Some(Duration::from_secs(2)));
    }

    #[test]
    fn callers_can_build_api_errors() {
        let e: Error = ApiError::new(Operation::MintKey, 409, Some("agent_key_limit_reached"))
            .with_message("limit al_agent_abc")
            .with_request_id("r-9")
            .with_retry_after(Duration::from_secs(1))
            .into();
        assert!(e.is_conflict_code("agent_key_limit_reached"));
        assert_eq!(e.message(), Some("limit <redacted>"));
        assert_eq!(e.request_id(), Some("r-9"));
        assert_eq!(e.retry_after(), Some(Duration::from_secs(1)));
    }

    #[test]
    fn display_shows_status_code_message_and_request_id() {
        let e = api(409, Some("last_active_key"));
        assert_eq!(
            e.to_string(),
            "AgentLattice revoke_key: HTTP 409 last_active_key: m (request id req-1)"
        );
        assert_eq!(e.request_id(), Some("req-1"));
        assert_eq!(e.operation(), Some(Operation::RevokeKey));
    }
}
