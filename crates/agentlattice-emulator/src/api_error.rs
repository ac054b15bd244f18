//! HTTP-level errors: the contract's `{"error", "message"}` bodies (§1.2).

use http::StatusCode;

/// One error response. `message` is written by the emulator and never contains a key, a hash or
/// any part of the request body (field *names* from the contract are fine).
#[derive(Clone, Debug)]
pub(crate) struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    /// The offending field for `validation_failed` (extra member, clients ignore unknown fields).
    pub field: Option<String>,
    /// Seconds, for 429 and optionally 503: the `Retry-After` header and the `retry_after` member.
    pub retry_after: Option<u64>,
    /// The `Allow` header of a 405.
    pub allow: Option<&'static str>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code,
            message: message.into(),
            field: None,
            retry_after: None,
            allow: None,
        }
    }

    pub fn validation(field: impl Into<String>, message: impl std::fmt::Display) -> Self {
        let field = field.into();
        let mut e = Self::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_failed",
            format!("{field}: {message}"),
        );
        e.field = Some(field);
        e
    }

    pub fn with_retry_after(mut self, secs: Option<u64>) -> Self {
        self.retry_after = secs;
        self
    }

    pub fn invalid_json(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_json", message)
    }
    pub fn missing_authorization() -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "missing_authorization",
            "the Authorization header is missing; send `Authorization: Bearer <key>`",
        )
    }
    pub fn invalid_authorization(why: &str) -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "invalid_authorization",
            why.to_owned(),
        )
    }
    pub fn invalid_key() -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "invalid_key",
            "the key is not known",
        )
    }
    pub fn key_revoked_auth() -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "key_revoked",
            "the key has been revoked",
        )
    }
    pub fn service_key_cannot_act() -> Self {
        Self::new(
            StatusCode::FORBIDDEN,
            "service_key_cannot_act",
            "a service key cannot call the agent API; use an agent key",
        )
    }
    pub fn agent_key_cannot_provision() -> Self {
        Self::new(
            StatusCode::FORBIDDEN,
            "agent_key_cannot_provision",
            "an agent key cannot call the provisioning API; use a service key",
        )
    }
    pub fn agent_halted() -> Self {
        Self::new(
            StatusCode::FORBIDDEN,
            "agent_halted",
            "the agent is halted and cannot act",
        )
    }
    pub fn not_found() -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", "no such route")
    }
    pub fn agent_not_found() -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "agent_not_found",
            "no agent with that id in the workspace",
        )
    }
    pub fn key_not_found() -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "key_not_found",
            "the key id does not belong to that agent",
        )
    }
    pub fn method_not_allowed(allow: &'static str) -> Self {
        let mut e = Self::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
            format!("this route allows {allow}"),
        );
        e.allow = Some(allow);
        e
    }
    pub fn agent_name_exists() -> Self {
        Self::new(
            StatusCode::CONFLICT,
            "agent_name_exists",
            "a non-revoked agent already has that name",
        )
    }
    pub fn agent_revoked() -> Self {
        Self::new(
            StatusCode::CONFLICT,
            "agent_revoked",
            "the agent has been revoked",
        )
    }
    pub fn key_revoked_conflict() -> Self {
        Self::new(
            StatusCode::CONFLICT,
            "key_revoked",
            "the key has been revoked",
        )
    }
    pub fn last_active_key() -> Self {
        Self::new(
            StatusCode::CONFLICT,
            "last_active_key",
            "this is the agent's last non-revoked key; pass force=true to revoke it anyway",
        )
    }
    pub fn key_limit_reached(limit: usize) -> Self {
        Self::new(
            StatusCode::CONFLICT,
            "agent_key_limit_reached",
            format!("an agent may hold at most {limit} non-revoked keys"),
        )
    }
    pub fn idempotency_key_agent_revoked() -> Self {
        Self::new(
            StatusCode::CONFLICT,
            "idempotency_key_agent_revoked",
            "the agent registered under this Idempotency-Key has since been revoked",
        )
    }
    pub fn idempotency_key_body_mismatch() -> Self {
        Self::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "idempotency_key_body_mismatch",
            "this Idempotency-Key was used with a different body",
        )
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
            "request bodies must be sent as Content-Type: application/json",
        )
    }
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "internal_error", message)
    }

    /// The JSON body: `{"error", "message", ["field"], ["retry_after"]}`, wrapped in
    /// `{"detail": …}` when the emulator is configured to do so.
    pub fn body(&self, wrap_in_detail: bool) -> serde_json::Value {
        let mut inner = serde_json::Map::new();
        inner.insert("error".into(), self.code.into());
        inner.insert("message".into(), self.message.clone().into());
        if let Some(field) = &self.field {
            inner.insert("field".into(), field.clone().into());
        }
        if let Some(secs) = self.retry_after {
            inner.insert("retry_after".into(), secs.into());
        }
        let inner = serde_json::Value::Object(inner);
        if wrap_in_detail {
            serde_json::json!({ "detail": inner })
        } else {
            inner
        }
    }
}
