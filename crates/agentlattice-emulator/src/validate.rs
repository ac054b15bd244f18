//! Request validation (contract §2.1): JSON bodies are parsed into a `serde_json` object and checked
//! field by field, so every 422 names its field and no message ever repeats a value from the body.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{Map, Value};

use crate::api_error::ApiError;

pub(crate) type Obj = Map<String, Value>;

pub(crate) const MAX_NAME: usize = 128;
pub(crate) const MAX_CAPABILITIES: usize = 64;
pub(crate) const MAX_DESCRIPTION: usize = 1024;
pub(crate) const MAX_METADATA: usize = 32;
pub(crate) const MAX_METADATA_VALUE: usize = 512;
pub(crate) const MAX_HEADER_TOKEN: usize = 255;
pub(crate) const MAX_ACTION_TYPE: usize = 256;

/// Parses a non-empty body that must be a JSON object (400 `invalid_json` otherwise).
pub(crate) fn parse_object(body: &[u8]) -> Result<Obj, ApiError> {
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(_) => Err(ApiError::invalid_json("the body must be a JSON object")),
        // Only the position is reported: serde_json's texts may quote the input.
        Err(e) => Err(ApiError::invalid_json(format!(
            "the body is not valid JSON (line {}, column {})",
            e.line(),
            e.column()
        ))),
    }
}

/// Whether a field name may be repeated in a message: short, plain, and not key material.
fn printable_field(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c))
        && !name.starts_with("al_")
}

fn reject_unknown(obj: &Obj, allowed: &[&str]) -> Result<(), ApiError> {
    if let Some(unknown) = obj.keys().find(|k| !allowed.contains(&k.as_str())) {
        let printable = printable_field(unknown);
        let what = if printable {
            format!("`{unknown}`")
        } else {
            "(unprintable name)".to_owned()
        };
        let hint = if allowed.is_empty() {
            "this request takes no fields".to_owned()
        } else {
            format!("allowed: {}", allowed.join(", "))
        };
        let mut e = ApiError::new(
            http::StatusCode::UNPROCESSABLE_ENTITY,
            "validation_failed",
            format!("unknown field {what}; {hint}"),
        );
        e.field = printable.then(|| unknown.clone());
        return Err(e);
    }
    Ok(())
}

fn is_lower_alnum(c: char) -> bool {
    c.is_ascii_lowercase() || c.is_ascii_digit()
}

/// `^[ends]([ends|inner]*[ends])?$`, length 1..=max.
fn matches_rule(s: &str, max: usize, ends: fn(char) -> bool, inner: &str) -> bool {
    let n = s.chars().count();
    if n == 0 || n > max {
        return false;
    }
    let first = s.chars().next().is_some_and(ends);
    let last = s.chars().next_back().is_some_and(ends);
    first && last && s.chars().all(|c| ends(c) || inner.contains(c))
}

pub(crate) fn valid_name(s: &str) -> bool {
    matches_rule(s, MAX_NAME, is_lower_alnum, "._-")
}

pub(crate) fn valid_capability(s: &str) -> bool {
    matches_rule(s, MAX_NAME, is_lower_alnum, "._:-")
}

fn valid_metadata_key(s: &str) -> bool {
    matches_rule(s, MAX_NAME, |c| c.is_ascii_alphanumeric(), "._/-")
}

fn name(v: &Value) -> Result<String, ApiError> {
    let Value::String(s) = v else {
        return Err(ApiError::validation("name", "must be a string"));
    };
    if !valid_name(s) {
        return Err(ApiError::validation(
            "name",
            "must be 1-128 characters of [a-z0-9._-], starting and ending with [a-z0-9]",
        ));
    }
    Ok(s.clone())
}

fn capabilities(v: &Value) -> Result<Vec<String>, ApiError> {
    let Value::Array(items) = v else {
        return Err(ApiError::validation(
            "capabilities",
            "must be an array of strings",
        ));
    };
    if items.len() > MAX_CAPABILITIES {
        return Err(ApiError::validation(
            "capabilities",
            format!("at most {MAX_CAPABILITIES} capabilities"),
        ));
    }
    let mut seen = BTreeSet::new();
    let mut out = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let field = format!("capabilities[{i}]");
        let Value::String(s) = item else {
            return Err(ApiError::validation(field, "must be a string"));
        };
        if !valid_capability(s) {
            return Err(ApiError::validation(
                field,
                "must be 1-128 characters of [a-z0-9._:-], starting and ending with [a-z0-9]",
            ));
        }
        if !seen.insert(s.as_str()) {
            return Err(ApiError::validation(field, "duplicate capability"));
        }
        out.push(s.clone());
    }
    Ok(out)
}

fn description(v: &Value) -> Result<Option<String>, ApiError> {
    match v {
        Value::Null => Ok(None),
        Value::String(s) if s.chars().count() <= MAX_DESCRIPTION => Ok(Some(s.clone())),
        Value::String(_) => Err(ApiError::validation(
            "description",
            format!("at most {MAX_DESCRIPTION} characters"),
        )),
        _ => Err(ApiError::validation(
            "description",
            "must be a string or null",
        )),
    }
}

fn metadata(v: &Value) -> Result<BTreeMap<String, String>, ApiError> {
    let Value::Object(map) = v else {
        return Err(ApiError::validation(
            "metadata",
            "must be an object of strings",
        ));
    };
    if map.len() > MAX_METADATA {
        return Err(ApiError::validation(
            "metadata",
            format!("at most {MAX_METADATA} entries"),
        ));
    }
    let mut out = BTreeMap::new();
    for (k, v) in map {
        if !valid_metadata_key(k) {
            return Err(ApiError::validation(
                "metadata",
                "keys must be 1-128 characters of [A-Za-z0-9._/-], starting and ending with [A-Za-z0-9]",
            ));
        }
        let field = if printable_field(k) {
            format!("metadata.{k}")
        } else {
            "metadata".to_owned()
        };
        let Value::String(s) = v else {
            return Err(ApiError::validation(field, "values must be strings"));
        };
        if s.chars().count() > MAX_METADATA_VALUE {
            return Err(ApiError::validation(
                field,
                format!("values are at most {MAX_METADATA_VALUE} characters"),
            ));
        }
        out.insert(k.clone(), s.clone());
    }
    Ok(out)
}

/// `POST /api/agents/register`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct RegisterReq {
    pub name: String,
    pub capabilities: Vec<String>,
    pub description: Option<String>,
    pub metadata: BTreeMap<String, String>,
}

pub(crate) fn register(obj: &Obj) -> Result<RegisterReq, ApiError> {
    reject_unknown(obj, &["name", "capabilities", "description", "metadata"])?;
    let name = match obj.get("name") {
        Some(v) => name(v)?,
        None => return Err(ApiError::validation("name", "is required")),
    };
    let capabilities = match obj.get("capabilities") {
        None | Some(Value::Null) => Vec::new(),
        Some(v) => capabilities(v)?,
    };
    let description = match obj.get("description") {
        None => None,
        Some(v) => description(v)?,
    };
    let metadata = match obj.get("metadata") {
        None | Some(Value::Null) => BTreeMap::new(),
        Some(v) => metadata(v)?,
    };
    Ok(RegisterReq {
        name,
        capabilities,
        description,
        metadata,
    })
}

/// `PATCH /api/agents/{id}`: `None` = leave as is. `description: Some(None)` clears it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct UpdateReq {
    pub capabilities: Option<Vec<String>>,
    pub description: Option<Option<String>>,
    pub metadata: Option<BTreeMap<String, String>>,
}

pub(crate) fn update(obj: &Obj) -> Result<UpdateReq, ApiError> {
    reject_unknown(obj, &["capabilities", "description", "metadata"])?;
    let mut req = UpdateReq::default();
    if let Some(v) = obj.get("capabilities") {
        req.capabilities = Some(capabilities(v)?);
    }
    if let Some(v) = obj.get("description") {
        req.description = Some(description(v)?);
    }
    if let Some(v) = obj.get("metadata") {
        req.metadata = Some(metadata(v)?);
    }
    if req == UpdateReq::default() {
        let mut e = ApiError::validation(
            "body",
            "at least one of capabilities, description, metadata is required",
        );
        e.field = None;
        return Err(e);
    }
    Ok(req)
}

/// `POST /api/agents/{id}/keys`: an optional label (free text, 1-128 characters, no control
/// characters; the contract gives no stricter rule).
pub(crate) fn mint(obj: &Obj) -> Result<Option<String>, ApiError> {
    reject_unknown(obj, &["name"])?;
    match obj.get("name") {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => {
            let n = s.chars().count();
            if n == 0 || n > MAX_NAME || s.chars().any(char::is_control) {
                Err(ApiError::validation(
                    "name",
                    "must be 1-128 characters without control characters",
                ))
            } else {
                Ok(Some(s.clone()))
            }
        }
        Some(_) => Err(ApiError::validation("name", "must be a string")),
    }
}

/// Routes that take no fields (halt, resume, deprecate, undeprecate, …): `{}` or nothing.
pub(crate) fn empty(obj: &Obj) -> Result<(), ApiError> {
    reject_unknown(obj, &[])
}

/// `POST /api/v1/actions`.
#[derive(Clone, Debug)]
pub(crate) struct ActionReq {
    pub action_type: String,
}

pub(crate) fn action(obj: &Obj) -> Result<ActionReq, ApiError> {
    reject_unknown(
        obj,
        &["action_type", "timestamp", "data_accessed", "metadata"],
    )?;
    let action_type = match obj.get("action_type") {
        Some(Value::String(s)) if !s.is_empty() && s.chars().count() <= MAX_ACTION_TYPE => {
            s.clone()
        }
        Some(Value::String(_)) => {
            return Err(ApiError::validation(
                "action_type",
                format!("must be 1-{MAX_ACTION_TYPE} characters"),
            ));
        }
        Some(_) => return Err(ApiError::validation("action_type", "must be a string")),
        None => return Err(ApiError::validation("action_type", "is required")),
    };
    match obj.get("timestamp") {
        None | Some(Value::Null) => {}
        Some(Value::String(s)) => {
            if s.parse::<jiff::Timestamp>().is_err() {
                return Err(ApiError::validation(
                    "timestamp",
                    "must be an RFC 3339 timestamp",
                ));
            }
        }
        Some(_) => return Err(ApiError::validation("timestamp", "must be a string")),
    }
    match obj.get("data_accessed") {
        None | Some(Value::Null) | Some(Value::Array(_)) => {}
        Some(_) => return Err(ApiError::validation("data_accessed", "must be an array")),
    }
    match obj.get("metadata") {
        None | Some(Value::Null) | Some(Value::Object(_)) => {}
        Some(_) => return Err(ApiError::validation("metadata", "must be an object")),
    }
    Ok(ActionReq { action_type })
}

/// `Idempotency-Key` / `X-AL-Event-ID`: 1-255 printable ASCII characters.
pub(crate) fn header_token(
    headers: &http::HeaderMap,
    header: &'static str,
) -> Result<Option<String>, ApiError> {
    let Some(v) = headers.get(header) else {
        return Ok(None);
    };
    let bytes = v.as_bytes();
    if bytes.is_empty()
        || bytes.len() > MAX_HEADER_TOKEN
        || !bytes.iter().all(|b| (0x20..=0x7e).contains(b))
    {
        return Err(ApiError::validation(
            header,
            "must be 1-255 printable ASCII characters",
        ));
    }
    // Printable ASCII is valid UTF-8.
    Ok(Some(String::from_utf8_lossy(bytes).into_owned()))
}

/// `POST /_admin/service-keys`: `{label}`.
pub(crate) fn service_key_label(obj: &Obj) -> Result<String, ApiError> {
    reject_unknown(obj, &["label"])?;
    match obj.get("label") {
        Some(Value::String(s)) => {
            let n = s.chars().count();
            if n == 0 || n > MAX_NAME || s.chars().any(char::is_control) {
                Err(ApiError::validation(
                    "label",
                    "must be 1-128 characters without control characters",
                ))
            } else {
                Ok(s.clone())
            }
        }
        Some(_) => Err(ApiError::validation("label", "must be a string")),
        None => Err(ApiError::validation("label", "is required")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn obj(v: Value) -> Obj {
        match v {
            Value::Object(m) => m,
            _ => unreachable!(),
        }
    }

    #[test]
    fn names() {
        for ok in [
            "a",
            "a1",
            "payments-deploy-bot",
            "a.b_c-d",
            &"x".repeat(128),
        ] {
            assert!(valid_name(ok), "{ok}");
        }
        for bad in ["", "-a", "a-", "A", "a b", "é", "a:b", &"x".repeat(129)] {
            assert!(!valid_name(bad), "{bad}");
        }
        assert!(valid_capability("deploy.staging"));
        assert!(valid_capability("k8s:read"));
        assert!(!valid_capability(":read"));
        assert!(valid_metadata_key("k8s.namespace"));
        assert!(valid_metadata_key("app.kubernetes.io/name"));
        assert!(valid_metadata_key("K8s"));
        assert!(!valid_metadata_key("/x"));
    }

    #[test]
    fn register_accepts_the_python_sdk_body() {
        let r = register(&obj(json!({"name": "bot", "description": null}))).unwrap();
        assert_eq!(r.description, None);
        assert!(r.capabilities.is_empty());
    }

    #[test]
    fn errors_name_the_field_and_never_the_value() {
        let cases = [
            (json!({"name": 5}), "name"),
            (json!({}), "name"),
            (json!({"name": "SECRET-VALUE"}), "name"),
            (json!({"name": "a", "capabilities": "x"}), "capabilities"),
            (
                json!({"name": "a", "capabilities": ["ok", "SECRET"]}),
                "capabilities[1]",
            ),
            (
                json!({"name": "a", "capabilities": ["ok", "ok"]}),
                "capabilities[1]",
            ),
            (json!({"name": "a", "description": 1}), "description"),
            (json!({"name": "a", "metadata": {"k": 1}}), "metadata.k"),
            (json!({"name": "a", "metadata": []}), "metadata"),
            (json!({"name": "a", "extra": "SECRET"}), "extra"),
        ];
        for (body, field) in cases {
            let e = register(&obj(body.clone())).unwrap_err();
            assert_eq!(e.code, "validation_failed", "{body}");
            assert!(e.message.contains(field), "{body}: {}", e.message);
            assert!(!e.message.contains("SECRET"), "{body}: {}", e.message);
        }
        let e = register(&obj(json!({"name": "a", "al_svc_AAAA": 1}))).unwrap_err();
        assert!(!e.message.contains("al_svc_"), "{}", e.message);
        assert_eq!(e.field, None);
    }

    #[test]
    fn update_needs_a_field() {
        assert!(update(&obj(json!({}))).is_err());
        let u = update(&obj(json!({"description": null}))).unwrap();
        assert_eq!(u.description, Some(None));
        assert!(update(&obj(json!({"name": "x"}))).is_err());
    }

    #[test]
    fn json_errors_do_not_quote_the_body() {
        let e = parse_object(b"{\"name\": SECRET}").unwrap_err();
        assert_eq!(e.code, "invalid_json");
        assert!(!e.message.contains("SECRET"));
        assert_eq!(parse_object(b"[1]").unwrap_err().code, "invalid_json");
    }
}
