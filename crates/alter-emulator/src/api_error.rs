//! HTTP errors, in the body shapes `alter-sdk==0.29.0` reads: the agent domain's flat
//! `{"error", "message", "hint"}`, and the `{"detail": {…}}` envelope of errors raised by
//! framework dependencies (authentication and signature checks, scope checks, the rate limiter).

use http::StatusCode;
use serde_json::{Map, Value, json};

use crate::scopes;

/// An error response.
#[derive(Debug, Clone)]
pub(crate) struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    pub hint: Option<&'static str>,
    /// Extra members of the body (`field`, `required`/`granted`/`missing`, rate-limit fields);
    /// boxed to keep `Result<_, ApiError>` small.
    pub extra: Box<Map<String, Value>>,
    /// Sent as `{"detail": {…}}`.
    pub wrapped: bool,
    /// `Retry-After` seconds.
    pub retry_after: Option<u64>,
    /// `Allow` of a 405.
    pub allow: Option<&'static str>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            hint: None,
            extra: Box::default(),
            wrapped: false,
            retry_after: None,
            allow: None,
        }
    }

    fn wrapped(mut self) -> Self {
        self.wrapped = true;
        self
    }

    fn hint(mut self, hint: &'static str) -> Self {
        self.hint = Some(hint);
        self
    }

    pub fn body(&self) -> Value {
        let mut inner = Map::new();
        inner.insert("error".into(), self.code.into());
        inner.insert("message".into(), self.message.clone().into());
        if let Some(h) = self.hint {
            inner.insert("hint".into(), h.into());
        }
        for (k, v) in self.extra.iter() {
            inner.insert(k.clone(), v.clone());
        }
        if self.wrapped {
            json!({ "detail": inner })
        } else {
            Value::Object(inner)
        }
    }

    // ----- authentication and signatures (401, wrapped) ---------------------------------------

    pub fn unauthorized(code: &'static str, message: &str) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, code, message).wrapped()
    }
    pub fn missing_api_key() -> Self {
        Self::unauthorized(
            "missing_api_key",
            "send the API key in the x-api-key header",
        )
    }
    pub fn invalid_key() -> Self {
        Self::unauthorized("invalid_key", "no stored key matches the provided API key")
            .hint("The key was mistyped, deleted, revoked or never existed; use a current key.")
    }
    pub fn key_revoked_auth() -> Self {
        Self::unauthorized("key_revoked", "this API key has been revoked")
            .hint("Mint a new key for the agent and deploy it.")
    }
    pub fn agent_inactive() -> Self {
        Self::unauthorized("agent_inactive", "the agent is suspended")
            .hint("Resume the agent; only /sdk/agents/me answers while it is suspended.")
    }

    // ----- authorization (403) ----------------------------------------------------------------

    pub fn insufficient_scope<S: AsRef<str>>(required: &str, granted: &[S]) -> Self {
        let mut e = Self::new(
            StatusCode::FORBIDDEN,
            "insufficient_scope",
            format!("this route requires {required}"),
        )
        .wrapped();
        let granted: Vec<Value> = granted.iter().map(|s| s.as_ref().into()).collect();
        e.extra.insert("required".into(), json!([required]));
        e.extra.insert("granted".into(), Value::Array(granted));
        e.extra.insert("missing".into(), json!([required]));
        e.extra.insert("scope_version".into(), 1.into());
        e.extra.insert("current_scope_version".into(), 1.into());
        e.extra
            .insert("scope_version_mismatch".into(), false.into());
        e.extra.insert("documentation_url".into(), Value::Null);
        e.extra.insert("required_any_of".into(), false.into());
        e
    }
    pub fn constraint_not_narrowing() -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "constraint_not_narrowing",
            format!(
                "X-Alter-Scope-Constraints may only name scopes the key holds (known: {})",
                scopes::ALL_SCOPES.join(", ")
            ),
        )
        .wrapped()
    }
    pub fn me_requires_agent_key() -> Self {
        Self::new(
            StatusCode::FORBIDDEN,
            "me_requires_agent_key",
            "/sdk/agents/me answers for a managed agent's own key, not an app key",
        )
    }
    pub fn agent_cannot_mint_subagents() -> Self {
        Self::new(
            StatusCode::FORBIDDEN,
            "agent_cannot_mint_subagents",
            "an agent key cannot manage agents; use an app key",
        )
    }

    // ----- the agent domain (flat) ------------------------------------------------------------

    pub fn agent_not_found() -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "agent_not_found",
            "no agent with that id in this app",
        )
    }
    pub fn key_not_found() -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "key_not_found",
            "no key with that id on this agent",
        )
    }
    pub fn actor_not_found() -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "actor_not_found",
            "no registry entry with that actor id",
        )
    }
    pub fn conflict(code: &'static str, message: &str) -> Self {
        Self::new(StatusCode::CONFLICT, code, message)
    }
    pub fn agent_name_exists() -> Self {
        Self::conflict(
            "agent_name_exists",
            "a non-revoked agent of this app already has that name",
        )
    }
    pub fn agent_concurrent_update() -> Self {
        Self::conflict(
            "agent_concurrent_update",
            "expected_version is not the agent's version",
        )
        .hint("Fetch the agent again, rebuild the allowlist from it, retry with its version.")
    }
    pub fn last_active_key() -> Self {
        Self::conflict(
            "last_active_key",
            "this is the agent's last non-revoked key",
        )
        .hint("Mint and deploy a new key first, or pass force=true to leave the agent without one.")
    }
    pub fn key_limit_reached(limit: usize) -> Self {
        let mut e = Self::conflict(
            "agent_key_limit_reached",
            "the agent holds its maximum of non-revoked keys",
        )
        .hint("Revoke a key the agent no longer uses, then mint again.");
        e.extra.insert("limit".into(), limit.into());
        e
    }
    pub fn key_revoked_conflict() -> Self {
        Self::conflict("key_revoked", "the key is revoked; revocation is terminal")
            .hint("Mint a new key.")
    }
    pub fn idempotency_body_mismatch() -> Self {
        Self::conflict(
            "idempotency_key_body_mismatch",
            "this Idempotency-Key was used with another body",
        )
        .hint("Retry with the original body, or use a new Idempotency-Key.")
    }
    pub fn idempotency_agent_revoked() -> Self {
        Self::conflict(
            "idempotency_key_agent_revoked",
            "the agent created under this Idempotency-Key has been revoked",
        )
        .hint("Use a new Idempotency-Key.")
    }
    pub fn idempotency_agent_inactive() -> Self {
        Self::conflict(
            "idempotency_key_agent_inactive",
            "the agent created under this Idempotency-Key is suspended",
        )
        .hint("Resume the agent, or use a new Idempotency-Key.")
    }

    // ----- bad requests -----------------------------------------------------------------------

    pub fn validation(field: &str, message: impl Into<String>) -> Self {
        let mut e = Self::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_error",
            format!("{field}: {}", message.into()),
        );
        e.extra.insert("field".into(), field.into());
        e
    }
    pub fn invalid_json(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_json", message)
    }
    pub fn payload_too_large(limit: usize) -> Self {
        Self::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            format!("request bodies are limited to {limit} bytes"),
        )
    }
    pub fn unsupported_media_type() -> Self {
        Self::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "request bodies must be application/json",
        )
    }
    pub fn not_found() -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", "no such route")
    }
    pub fn method_not_allowed(allow: &'static str) -> Self {
        let mut e = Self::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
            format!("allowed: {allow}"),
        );
        e.allow = Some(allow);
        e
    }
    pub fn internal(message: &str) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "internal_error", message)
    }

    // ----- throttling ---------------------------------------------------------------------------

    /// Alter's limiter: 429 `rate_limit_exceeded` (or `quota_exceeded`), wrapped, with
    /// `retry_after`, `scope`, `limit`, `window_seconds` and `Retry-After`.
    pub fn throttled(retry_after: u64, limit: u64, quota: bool) -> Self {
        let (code, message) = if quota {
            (
                "quota_exceeded",
                "request quota exceeded for the current window",
            )
        } else {
            (
                "rate_limit_exceeded",
                "rate limit exceeded; retry after the window resets",
            )
        };
        let mut e = Self::new(StatusCode::TOO_MANY_REQUESTS, code, message).wrapped();
        e.retry_after = Some(retry_after);
        e.extra.insert("retry_after".into(), retry_after.into());
        e.extra.insert("scope".into(), "api_key".into());
        e.extra.insert("limit".into(), limit.into());
        e.extra.insert("window_seconds".into(), 60.into());
        e
    }

    /// An injected failure with status `status`.
    pub fn injected(status: u16, retry_after: Option<u64>) -> Self {
        let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        if status == StatusCode::TOO_MANY_REQUESTS {
            return Self::throttled(retry_after.unwrap_or(1), 0, false);
        }
        let code = match status.as_u16() {
            500 => "internal_error",
            502 => "bad_gateway",
            503 => "service_unavailable",
            504 => "gateway_timeout",
            _ => "injected_fault",
        };
        let mut e = Self::new(status, code, "injected fault (alter-emulator)");
        e.retry_after = retry_after;
        e
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shapes() {
        let flat = ApiError::last_active_key().body();
        assert_eq!(flat["error"], "last_active_key");
        assert!(flat["hint"].is_string());
        let wrapped =
            ApiError::insufficient_scope(scopes::AGENTS_ADMIN, &["dashboard_agents:read"]).body();
        assert_eq!(
            wrapped["detail"]["missing"],
            json!(["dashboard_agents:admin"])
        );
        let t = ApiError::throttled(3, 100, false);
        assert_eq!(
            (t.body()["detail"]["retry_after"].as_u64(), t.retry_after),
            (Some(3), Some(3))
        );
        assert_eq!(ApiError::injected(429, None).code, "rate_limit_exceeded");
        assert_eq!(ApiError::injected(503, Some(2)).retry_after, Some(2));
        assert_eq!(
            ApiError::validation("name", "too long").body()["field"],
            "name"
        );
    }
}
