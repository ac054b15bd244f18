//! Request validation: bodies are parsed into a JSON object and checked field by field, so every
//! 422 names its field and no message repeats a value from the body.

use http::HeaderMap;
use serde_json::{Map, Value};

use crate::api_error::ApiError;
use crate::model::{AgentStatus, AgentType, JsonMap, Scopes};

pub(crate) type Obj = Map<String, Value>;

/// Longest agent name.
pub(crate) const MAX_NAME: usize = 128;
/// Longest display name.
pub(crate) const MAX_DISPLAY_NAME: usize = 256;
/// Largest compact JSON of a scope allowlist (the SDK's limit).
pub(crate) const MAX_SCOPES_JSON: usize = 12 * 1024;
/// Largest compact JSON of `metadata` or `policy`.
pub(crate) const MAX_OBJECT_JSON: usize = 16 * 1024;
/// Longest grace period of a narrowing (7 days).
pub(crate) const MAX_GRACE_SECONDS: u64 = 7 * 24 * 3600;

/// A non-empty body that must be a JSON object.
pub(crate) fn parse_object(body: &[u8]) -> Result<Obj, ApiError> {
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(_) => Err(ApiError::invalid_json("the body must be a JSON object")),
        // Only the position: serde_json's texts may quote the input.
        Err(e) => Err(ApiError::invalid_json(format!(
            "the body is not valid JSON (line {}, column {})",
            e.line(),
            e.column()
        ))),
    }
}

fn reject_unknown(obj: &Obj, allowed: &[&str]) -> Result<(), ApiError> {
    if let Some(k) = obj.keys().find(|k| !allowed.contains(&k.as_str())) {
        // A name shaped like a key is never repeated.
        let printable = k.len() <= 64
            && !k.starts_with("alter_")
            && k.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
        let name = if printable { k.as_str() } else { "(field)" };
        return Err(ApiError::validation(
            name,
            format!("unknown field; allowed: {}", allowed.join(", ")),
        ));
    }
    Ok(())
}

fn text(s: &str, field: &str, max: usize) -> Result<String, ApiError> {
    if s.is_empty() || s.chars().count() > max || s.chars().any(char::is_control) {
        return Err(ApiError::validation(
            field,
            format!("1-{max} characters without control characters"),
        ));
    }
    Ok(s.to_owned())
}

/// `^[a-z0-9][a-z0-9_-]*$`, 1–128 characters.
fn name(v: Option<&Value>) -> Result<String, ApiError> {
    let s = v
        .and_then(Value::as_str)
        .ok_or_else(|| ApiError::validation("name", "required string"))?;
    let ok = !s.is_empty()
        && s.len() <= MAX_NAME
        && s.bytes()
            .next()
            .is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_');
    if !ok {
        return Err(ApiError::validation(
            "name",
            format!(
                "1-{MAX_NAME} characters of a-z, 0-9, '-', '_', starting with a letter or digit"
            ),
        ));
    }
    Ok(s.to_owned())
}

fn object(v: &Value, field: &str) -> Result<JsonMap, ApiError> {
    let m = v
        .as_object()
        .ok_or_else(|| ApiError::validation(field, "must be a JSON object"))?;
    if serde_json::to_vec(m).map_or(usize::MAX, |b| b.len()) > MAX_OBJECT_JSON {
        return Err(ApiError::validation(
            field,
            format!("at most {MAX_OBJECT_JSON} bytes"),
        ));
    }
    Ok(m.clone())
}

/// The SDK's rules: provider → non-empty list of non-empty strings, no edge whitespace, 12 KiB.
pub(crate) fn scopes(v: &Value) -> Result<Scopes, ApiError> {
    let bad = |m: &str| ApiError::validation("scopes", m.to_owned());
    let m = v
        .as_object()
        .ok_or_else(|| bad("must map providers to scope lists"))?;
    let edge = |s: &str| s.is_empty() || s.trim() != s;
    let mut out = Scopes::new();
    for (provider, list) in m {
        if edge(provider) {
            return Err(bad("provider names are non-empty, without edge whitespace"));
        }
        let list = list
            .as_array()
            .filter(|l| !l.is_empty())
            .ok_or_else(|| bad("each provider needs a non-empty list"))?;
        let mut scopes = Vec::with_capacity(list.len());
        for s in list {
            match s.as_str() {
                Some(s) if !edge(s) => scopes.push(s.to_owned()),
                _ => return Err(bad("scopes are non-empty strings without edge whitespace")),
            }
        }
        out.insert(provider.clone(), scopes);
    }
    if serde_json::to_vec(&out).map_or(usize::MAX, |b| b.len()) > MAX_SCOPES_JSON {
        return Err(bad("at most 12 KiB of compact JSON"));
    }
    Ok(out)
}

fn agent_type(v: Option<&Value>) -> Result<AgentType, ApiError> {
    match v {
        None | Some(Value::Null) => Ok(AgentType::Agent),
        Some(Value::String(s)) if s == "agent" => Ok(AgentType::Agent),
        Some(Value::String(s)) if s == "service" => Ok(AgentType::Service),
        Some(_) => Err(ApiError::validation("type", "agent or service")),
    }
}

fn display_name(v: Option<&Value>) -> Result<Option<String>, ApiError> {
    match v {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => text(s, "display_name", MAX_DISPLAY_NAME).map(Some),
        Some(_) => Err(ApiError::validation("display_name", "must be a string")),
    }
}

/// `POST /sdk/agents`.
#[derive(Debug, Clone)]
pub(crate) struct CreateReq {
    pub name: String,
    pub agent_type: AgentType,
    pub scopes: Scopes,
    pub metadata: JsonMap,
    pub display_name: Option<String>,
    pub policy: JsonMap,
}

impl CreateReq {
    /// What two requests must share to be the same request (for `Idempotency-Key`).
    pub fn fingerprint(&self) -> Value {
        serde_json::json!({
            "name": self.name, "type": self.agent_type, "scopes": self.scopes,
            "metadata": self.metadata, "display_name": self.display_name, "policy": self.policy,
        })
    }
}

pub(crate) fn create(obj: &Obj) -> Result<CreateReq, ApiError> {
    reject_unknown(
        obj,
        &[
            "name",
            "type",
            "scopes",
            "metadata",
            "display_name",
            "policy",
        ],
    )?;
    Ok(CreateReq {
        name: name(obj.get("name"))?,
        agent_type: agent_type(obj.get("type"))?,
        scopes: match obj.get("scopes") {
            None | Some(Value::Null) => Scopes::new(),
            Some(v) => scopes(v)?,
        },
        metadata: match obj.get("metadata") {
            None | Some(Value::Null) => JsonMap::new(),
            Some(v) => object(v, "metadata")?,
        },
        display_name: display_name(obj.get("display_name"))?,
        policy: match obj.get("policy") {
            None | Some(Value::Null) => JsonMap::new(),
            Some(v) => object(v, "policy")?,
        },
    })
}

/// `PATCH /sdk/agents/{id}`.
#[derive(Debug, Clone, Default)]
pub(crate) struct UpdateReq {
    pub display_name: Option<String>,
    pub metadata: Option<JsonMap>,
    pub scopes: Option<Scopes>,
    pub policy: Option<JsonMap>,
    pub status: Option<AgentStatus>,
}

pub(crate) fn update(obj: &Obj) -> Result<UpdateReq, ApiError> {
    reject_unknown(
        obj,
        &["display_name", "metadata", "scopes", "policy", "status"],
    )?;
    let some = |k: &str| obj.get(k).filter(|v| !v.is_null());
    Ok(UpdateReq {
        display_name: display_name(obj.get("display_name"))?,
        metadata: some("metadata")
            .map(|v| object(v, "metadata"))
            .transpose()?,
        scopes: some("scopes").map(scopes).transpose()?,
        policy: some("policy").map(|v| object(v, "policy")).transpose()?,
        status: match some("status") {
            None => None,
            Some(Value::String(s)) if s == "active" => Some(AgentStatus::Active),
            Some(Value::String(s)) if s == "inactive" => Some(AgentStatus::Inactive),
            Some(_) => {
                return Err(ApiError::validation(
                    "status",
                    "active or inactive (revoke with DELETE)",
                ));
            }
        },
    })
}

/// A body that must carry nothing (`{}`, or no body at all).
pub(crate) fn empty(obj: &Obj) -> Result<(), ApiError> {
    reject_unknown(obj, &[])
}

/// `POST /sdk/identity/resolve`: only the headless form is emulated.
pub(crate) fn identity(obj: &Obj) -> Result<(), ApiError> {
    reject_unknown(obj, &["include_profile", "user_token", "app_user_id"])?;
    for field in ["user_token", "app_user_id"] {
        if obj.get(field).is_some_and(|v| !v.is_null()) {
            return Err(ApiError::validation(
                field,
                "end-user identities are not emulated; call without one (headless)",
            ));
        }
    }
    match obj.get("include_profile") {
        None | Some(Value::Bool(_)) => Ok(()),
        Some(_) => Err(ApiError::validation("include_profile", "must be a boolean")),
    }
}

/// `Idempotency-Key`: 1–255 visible ASCII characters.
pub(crate) fn idempotency_key(headers: &HeaderMap) -> Result<Option<String>, ApiError> {
    let Some(v) = headers.get("idempotency-key") else {
        return Ok(None);
    };
    match v.to_str() {
        Ok(s) if !s.is_empty() && s.len() <= 255 && s.bytes().all(|b| b.is_ascii_graphic()) => {
            Ok(Some(s.to_owned()))
        }
        _ => Err(ApiError::validation(
            "Idempotency-Key",
            "1-255 visible ASCII characters",
        )),
    }
}

/// The admin API's `{label, scopes}` / `{name}`.
pub(crate) fn label(obj: &Obj, field: &str) -> Result<String, ApiError> {
    match obj.get(field) {
        Some(Value::String(s)) => text(s, field, 128),
        _ => Err(ApiError::validation(field, "required string")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn obj(v: Value) -> Obj {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn create_bodies() {
        let r = create(&obj(
            json!({"name": "nightly-sync", "type": "service", "scopes": {}, "metadata": {}}),
        ))
        .unwrap();
        assert_eq!(r.agent_type, AgentType::Service);
        for (body, field) in [
            (json!({}), "name"),
            (json!({"name": "Upper"}), "name"),
            (json!({"name": "-dash"}), "name"),
            (json!({"name": "a.b"}), "name"),
            (json!({"name": "a", "type": "robot"}), "type"),
            (json!({"name": "a", "scopes": {"slack": []}}), "scopes"),
            (json!({"name": "a", "scopes": {"slack": [" x"]}}), "scopes"),
            (json!({"name": "a", "metadata": [1]}), "metadata"),
            (json!({"name": "a", "display_name": ""}), "display_name"),
            (json!({"name": "a", "extra": 1}), "extra"),
            (json!({"name": "a", "alter_key_xyz": 1}), "(field)"),
        ] {
            let e = create(&obj(body)).unwrap_err();
            assert_eq!(
                (e.code, e.extra["field"].as_str().unwrap()),
                ("validation_error", field)
            );
        }
        let a = create(&obj(json!({"name": "a", "metadata": {"x": 1}}))).unwrap();
        let b = create(&obj(
            json!({"metadata": {"x": 1}, "name": "a", "scopes": {}}),
        ))
        .unwrap();
        assert_eq!(a.fingerprint(), b.fingerprint());
    }

    #[test]
    fn update_bodies() {
        assert_eq!(
            update(&obj(json!({"status": "inactive"}))).unwrap().status,
            Some(AgentStatus::Inactive)
        );
        assert_eq!(
            update(&obj(json!({"status": "revoked"}))).unwrap_err().code,
            "validation_error"
        );
        assert!(update(&obj(json!({}))).unwrap().scopes.is_none());
        assert!(empty(&obj(json!({"a": 1}))).is_err());
        assert!(identity(&obj(json!({"include_profile": false}))).is_ok());
        assert!(identity(&obj(json!({"user_token": "t"}))).is_err());
    }
}
