//! OpenAPI value validation, as kube-openapi's fork of go-openapi does it for custom resources.
//!
//! Sources: kube-openapi@32ad38e42d3f (the version apiextensions-apiserver v0.32.4 pins)
//! `pkg/validation/validate/{schema,type,validator,object_validator,slice_validator,schema_props,
//! values,formats}.go` and `pkg/validation/errors/schema.go`; apiextensions-apiserver v0.32.4
//! `pkg/apiserver/validation/{validation,formats}.go` (`kubeOpenAPIResultToFieldErrors`,
//! `StripUnsupportedFormatsPostProcess`), `pkg/apiserver/schema/listtype/validation.go`,
//! `pkg/apiserver/schema/objectmeta/validation.go`.
//!
//! The validator walks the schema JSON itself, keeping go-openapi's validator order (type,
//! allOf/anyOf/oneOf/not, string, format, number, array, enum, object), its "in body" messages
//! with their go-openapi paths (`spec.items[0].name`, maps as `spec.labels.key`), its
//! de-duplication of identical messages, and its match counting for anyOf/oneOf best failures.

use std::collections::HashMap;
use std::sync::LazyLock;

use base64::Engine;
use regex::Regex;
use serde_json::Value;

use super::gofmt::{body_value, float_v, go_json, is_go_int, number_v, sharp_v, slice_v};
use super::names::{self, NameRule, ObjectMetaOptions};
use crate::error::{FieldError, FieldErrorType, go_quote};

/// One go-openapi error, before conversion to a `field.Error`.
#[derive(Debug, Clone)]
pub(crate) enum OErr {
    /// `*errors.Validation`: `name` is the go-openapi path, `message` its `Error()`.
    Validation {
        code: Code,
        name: String,
        message: String,
        /// The rendered `Value` (ErrorBody form), `None` when Go's is nil.
        value: Option<String>,
    },
    /// `errors.New(...)` (anyOf/oneOf/allOf/not): rendered as `field.Invalid(fldPath, "", msg)`.
    Composite(String),
}

impl OErr {
    fn message(&self) -> &str {
        match self {
            OErr::Validation { message, .. } => message,
            OErr::Composite(m) => m,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Code {
    InvalidType,
    Required,
    TooLong(i64),
    Enum(Vec<String>),
    MaxItems(i64, i64),
    TooManyProperties(i64, i64),
    Other,
}

/// A go-openapi `Result`.
#[derive(Debug, Default, Clone)]
pub(crate) struct OResult {
    pub errors: Vec<OErr>,
    pub match_count: usize,
}

impl OResult {
    fn add(&mut self, e: OErr) {
        if !self.errors.iter().any(|x| x.message() == e.message()) {
            self.errors.push(e);
        }
    }
    fn merge(&mut self, other: OResult) {
        for e in other.errors {
            self.add(e);
        }
        self.match_count += other.match_count;
    }
    fn is_valid(&self) -> bool {
        self.errors.is_empty()
    }
    fn single(e: OErr) -> OResult {
        OResult {
            errors: vec![e],
            match_count: 0,
        }
    }
}

/// Compiled patterns, shared by all validations of one schema.
pub(crate) type Patterns = HashMap<String, Result<Regex, String>>;

/// Compile every `pattern` of a schema tree (properties, items, additionalProperties, *Of, not).
pub(crate) fn collect_patterns(schema: &Value, out: &mut Patterns) {
    let Some(o) = schema.as_object() else {
        return;
    };
    if let Some(p) = o.get("pattern").and_then(Value::as_str)
        && !out.contains_key(p)
    {
        out.insert(p.to_string(), Regex::new(p).map_err(|e| e.to_string()));
    }
    if let Some(props) = o.get("properties").and_then(Value::as_object) {
        for v in props.values() {
            collect_patterns(v, out);
        }
    }
    for k in ["items", "additionalProperties", "not"] {
        if let Some(v) = o.get(k) {
            collect_patterns(v, out);
        }
    }
    for k in ["allOf", "anyOf", "oneOf"] {
        if let Some(a) = o.get(k).and_then(Value::as_array) {
            for v in a {
                collect_patterns(v, out);
            }
        }
    }
}

const IN: &str = "body";

fn child_path(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

/// The formats apiextensions keeps (`supportedFormats`, compared after removing dashes).
fn supported_format(f: &str) -> Option<String> {
    let n = f.replace('-', "");
    const SUPPORTED: &[&str] = &[
        "bsonobjectid",
        "uri",
        "email",
        "hostname",
        "ipv4",
        "ipv6",
        "cidr",
        "mac",
        "uuid",
        "uuid3",
        "uuid4",
        "uuid5",
        "isbn",
        "isbn10",
        "isbn13",
        "creditcard",
        "ssn",
        "hexcolor",
        "rgbcolor",
        "byte",
        "password",
        "date",
        "duration",
        "datetime",
    ];
    SUPPORTED.contains(&n.as_str()).then_some(n)
}

fn schema_types(s: &Value) -> Vec<String> {
    if s.get("x-kubernetes-int-or-string").and_then(Value::as_bool) == Some(true) {
        return vec!["integer".into(), "string".into()];
    }
    match s.get("type").and_then(Value::as_str) {
        Some(t) if !t.is_empty() => vec![t.to_string()],
        _ => Vec::new(),
    }
}

fn go_sch_type(v: &Value) -> (&'static str, &'static str) {
    match v {
        Value::Bool(_) => ("boolean", ""),
        Value::String(_) => ("string", ""),
        Value::Number(_) if is_go_int(v) => ("integer", "int64"),
        Value::Number(_) => ("number", "float64"),
        Value::Array(_) => ("array", ""),
        Value::Object(_) => ("object", ""),
        Value::Null => ("null", ""),
    }
}

fn invalid_type(path: &str, type_name: &str, value: &str) -> OErr {
    OErr::Validation {
        code: Code::InvalidType,
        name: path.to_string(),
        message: format!(
            "{path} in {IN} must be of type {type_name}: {}",
            go_quote(value)
        ),
        value: Some(go_quote(value)),
    }
}

fn other(path: &str, message: String, value: Option<String>) -> OErr {
    OErr::Validation {
        code: Code::Other,
        name: path.to_string(),
        message,
        value,
    }
}

pub(crate) struct Validator<'a> {
    pub patterns: &'a Patterns,
}

impl Validator<'_> {
    /// `SchemaValidator.Validate`.
    pub fn validate(&self, s: &Value, data: &Value, path: &str) -> OResult {
        let mut result = OResult::default();
        if !s.is_object() {
            return result;
        }
        let types = schema_types(s);
        let format = s
            .get("format")
            .and_then(Value::as_str)
            .and_then(supported_format)
            .unwrap_or_default();
        if data.is_null() {
            result.merge(self.type_validator(s, &types, &format, data, path));
            if let Some(r) = self.enum_validator(s, data, path) {
                result.merge(r);
            }
            return result;
        }
        let is_num = data.is_number();
        // type
        if !types.is_empty() || !format.is_empty() {
            result.merge(self.type_validator(s, &types, &format, data, path));
            result.match_count += 1;
        }
        // allOf/anyOf/oneOf/not
        result.merge(self.schema_props(s, data, path));
        result.match_count += 1;
        if let Value::String(st) = data {
            if let Some(r) = self.string_validator(s, st, path) {
                result.merge(r);
            }
            result.match_count += 1;
            if !format.is_empty() {
                if !format_ok(&format, st) {
                    result.add(OErr::Validation {
                        code: Code::InvalidType,
                        name: path.to_string(),
                        message: format!(
                            "{path} in {IN} must be of type {}: {}",
                            s.get("format").and_then(Value::as_str).unwrap_or(""),
                            go_quote(st)
                        ),
                        value: Some(go_quote(st)),
                    });
                }
                result.match_count += 1;
            }
        }
        if is_num {
            result.merge(self.number_validator(s, data, path));
            result.match_count += 1;
        }
        if let Value::Array(items) = data {
            result.merge(self.slice_validator(s, items, path));
            result.match_count += 1;
        }
        if let Some(r) = self.enum_validator(s, data, path) {
            result.merge(r);
        }
        result.match_count += 1;
        if let Value::Object(_) = data {
            result.merge(self.object_validator(s, data, path));
            result.match_count += 1;
        }
        result.match_count += 1;
        result
    }

    // The conditions are kept in go-openapi's shape (type.go) so they can be compared with it.
    #[allow(clippy::nonminimal_bool)]
    fn type_validator(
        &self,
        s: &Value,
        types: &[String],
        format: &str,
        data: &Value,
        path: &str,
    ) -> OResult {
        let mut ok = OResult {
            errors: vec![],
            match_count: 1,
        };
        let nullable = s.get("nullable").and_then(Value::as_bool) == Some(true);
        let contains = |t: &str| types.iter().any(|x| x == t);
        if data.is_null() {
            if !types.is_empty() && !contains("null") && !nullable {
                return OResult::single(invalid_type(path, &types.join(","), "null"));
            }
            return ok;
        }
        let (sch_type, data_format) = go_sch_type(data);
        let is_float_int = sch_type == "number"
            && data
                .as_f64()
                .is_some_and(|f| f.fract() == 0.0 && f.is_finite())
            && contains("integer");
        let is_int_float = sch_type == "integer" && contains("number");
        let raw_format = s.get("format").and_then(Value::as_str).unwrap_or("");
        if !data.is_string()
            && !data.is_array()
            && !format.is_empty()
            && !(contains(sch_type) || data_format == raw_format || is_float_int || is_int_float)
        {
            return OResult::single(invalid_type(path, raw_format, data_format));
        }
        if !(contains("number") || contains("integer"))
            && !format.is_empty()
            && (data.is_string() || data.is_array())
        {
            return ok;
        }
        if !(contains(sch_type) || is_float_int || is_int_float) {
            return OResult::single(invalid_type(path, &types.join(","), sch_type));
        }
        ok.match_count = 1;
        ok
    }

    fn string_validator(&self, s: &Value, data: &str, path: &str) -> Option<OResult> {
        let len = data.chars().count() as i64;
        if let Some(max) = s.get("maxLength").and_then(Value::as_i64)
            && len > max
        {
            return Some(OResult::single(OErr::Validation {
                code: Code::TooLong(max),
                name: path.to_string(),
                message: format!("{path} in {IN} should be at most {max} chars long"),
                value: Some(go_quote(data)),
            }));
        }
        if let Some(min) = s.get("minLength").and_then(Value::as_i64)
            && len < min
        {
            return Some(OResult::single(other(
                path,
                format!("{path} in {IN} should be at least {min} chars long"),
                Some(go_quote(data)),
            )));
        }
        if let Some(p) = s.get("pattern").and_then(Value::as_str)
            && !p.is_empty()
        {
            let compiled;
            let re = match self.patterns.get(p) {
                Some(r) => r,
                None => {
                    compiled = Regex::new(p).map_err(|e| e.to_string());
                    &compiled
                }
            };
            let fail = match re {
                Ok(re) => (!re.is_match(data)).then(|| p.to_string()),
                Err(e) => Some(format!("{p}, but pattern is invalid: {e}")),
            };
            if let Some(shown) = fail {
                return Some(OResult::single(other(
                    path,
                    format!("{path} in {IN} should match '{shown}'"),
                    Some(go_quote(data)),
                )));
            }
        }
        None
    }

    fn number_validator(&self, s: &Value, data: &Value, path: &str) -> OResult {
        let mut res = OResult {
            errors: vec![],
            match_count: 1,
        };
        let int = data.as_i64().filter(|_| is_go_int(data));
        let f = data.as_f64().unwrap_or(0.0);
        let shown = number_v(data);
        if let Some(m) = s.get("multipleOf").and_then(Value::as_f64) {
            let err = if m <= 0.0 {
                Some(format!(
                    "factor MultipleOf declared for {path} must be positive: {}",
                    float_v(m)
                ))
            } else if let Some(i) = int {
                let fi = m as i64;
                if fi <= 0 {
                    Some(format!(
                        "factor MultipleOf declared for {path} must be positive: {fi}"
                    ))
                } else {
                    (i.wrapping_div(fi).wrapping_mul(fi) != i)
                        .then(|| format!("{path} in {IN} should be a multiple of {fi}"))
                }
            } else {
                let mult = if m < 1.0 { 1.0 / m * f } else { f / m };
                (!(mult.fract() == 0.0 && mult.is_finite()))
                    .then(|| format!("{path} in {IN} should be a multiple of {}", float_v(m)))
            };
            if let Some(msg) = err {
                res.add(other(path, msg, Some(shown.clone())));
            }
        }
        let excl = |k: &str| s.get(k).and_then(Value::as_bool) == Some(true);
        if let Some(min) = s.get("minimum").and_then(Value::as_f64) {
            let ex = excl("exclusiveMinimum");
            let (fails, bound) = match int {
                Some(i) => {
                    let b = min as i64;
                    ((!ex && i < b) || (ex && i <= b), b.to_string())
                }
                None => ((!ex && f < min) || (ex && f <= min), float_v(min)),
            };
            if fails {
                let op = if ex {
                    "greater than"
                } else {
                    "greater than or equal to"
                };
                res.add(other(
                    path,
                    format!("{path} in {IN} should be {op} {bound}"),
                    Some(shown.clone()),
                ));
            }
        }
        if let Some(max) = s.get("maximum").and_then(Value::as_f64) {
            let ex = excl("exclusiveMaximum");
            let (fails, bound) = match int {
                Some(i) => {
                    let b = max as i64;
                    ((!ex && i > b) || (ex && i >= b), b.to_string())
                }
                None => ((!ex && f > max) || (ex && f >= max), float_v(max)),
            };
            if fails {
                let op = if ex {
                    "less than"
                } else {
                    "less than or equal to"
                };
                res.add(other(
                    path,
                    format!("{path} in {IN} should be {op} {bound}"),
                    Some(shown.clone()),
                ));
            }
        }
        res
    }

    fn slice_validator(&self, s: &Value, items: &[Value], path: &str) -> OResult {
        let mut result = OResult::default();
        if let Some(item_schema) = s.get("items").filter(|i| i.is_object()) {
            for (i, v) in items.iter().enumerate() {
                result.merge(self.validate(item_schema, v, &format!("{path}[{i}]")));
            }
        }
        let size = items.len() as i64;
        if let Some(min) = s.get("minItems").and_then(Value::as_i64)
            && size < min
        {
            result.add(other(
                path,
                format!("{path} in {IN} should have at least {min} items"),
                Some(size.to_string()),
            ));
        }
        if let Some(max) = s.get("maxItems").and_then(Value::as_i64)
            && size > max
        {
            result.add(OErr::Validation {
                code: Code::MaxItems(size, max),
                name: path.to_string(),
                message: format!("{path} in {IN} should have at most {max} items"),
                value: Some(size.to_string()),
            });
        }
        if s.get("uniqueItems").and_then(Value::as_bool) == Some(true) {
            let dup = items
                .iter()
                .enumerate()
                .any(|(i, a)| items[..i].iter().any(|b| json_deep_equal(a, b)));
            if dup {
                result.add(other(
                    path,
                    format!("{path} in {IN} shouldn't contain duplicates"),
                    None,
                ));
            }
        }
        result.match_count += 1;
        result
    }

    fn enum_validator(&self, s: &Value, data: &Value, path: &str) -> Option<OResult> {
        let values = s.get("enum").and_then(Value::as_array)?;
        if values.is_empty() {
            return None;
        }
        if values.iter().any(|e| enum_matches(data, e)) {
            return None;
        }
        let shown: Vec<String> = values
            .iter()
            .map(|v| match v {
                Value::String(s) => s.clone(),
                other => go_json(other),
            })
            .collect();
        Some(OResult::single(OErr::Validation {
            code: Code::Enum(shown),
            name: path.to_string(),
            message: format!("{path} in {IN} should be one of {}", slice_v(values)),
            value: Some(body_value(data)),
        }))
    }

    fn object_validator(&self, s: &Value, data: &Value, path: &str) -> OResult {
        let mut res = OResult::default();
        let Some(obj) = data.as_object() else {
            return res;
        };
        let n = obj.len() as i64;
        if let Some(min) = s.get("minProperties").and_then(Value::as_i64)
            && n < min
        {
            res.add(other(
                path,
                format!("{path} in {IN} should have at least {min} properties"),
                Some(n.to_string()),
            ));
        }
        if let Some(max) = s.get("maxProperties").and_then(Value::as_i64)
            && n > max
        {
            res.add(OErr::Validation {
                code: Code::TooManyProperties(n, max),
                name: path.to_string(),
                message: format!("{path} in {IN} should have at most {max} properties"),
                value: Some(n.to_string()),
            });
        }
        let props = s.get("properties").and_then(Value::as_object);
        let has_prop = |k: &str| props.is_some_and(|p| p.contains_key(k));
        match s.get("additionalProperties") {
            Some(Value::Bool(false)) => {
                for k in obj.keys() {
                    if !has_prop(k) {
                        res.add(other(
                            path,
                            format!("{path}.{k} in {IN} is a forbidden property"),
                            Some(go_quote(k)),
                        ));
                    }
                }
            }
            Some(ap @ Value::Object(_)) => {
                for (k, v) in obj {
                    if !has_prop(k) {
                        res.merge(self.validate(ap, v, &format!("{path}.{k}")));
                    }
                }
            }
            _ => {}
        }
        if let Some(props) = props {
            for (k, ps) in props {
                if let Some(v) = obj.get(k) {
                    res.merge(self.validate(ps, v, &child_path(path, k)));
                }
            }
        }
        if let Some(req) = s.get("required").and_then(Value::as_array) {
            for k in req.iter().filter_map(Value::as_str) {
                if !obj.contains_key(k) {
                    let name = format!("{path}.{k}");
                    res.add(OErr::Validation {
                        code: Code::Required,
                        message: format!("{name} in {IN} is required"),
                        name,
                        value: None,
                    });
                }
            }
        }
        res
    }

    fn schema_props(&self, s: &Value, data: &Value, path: &str) -> OResult {
        let mut main = OResult::default();
        let list = |k: &str| -> Vec<&Value> {
            s.get(k)
                .and_then(Value::as_array)
                .map(|a| a.iter().collect())
                .unwrap_or_default()
        };
        let any_of = list("anyOf");
        if !any_of.is_empty() {
            let mut best: Option<OResult> = None;
            let mut first_success: Option<OResult> = None;
            for sub in &any_of {
                let r = self.validate(sub, data, path);
                if r.is_valid() {
                    best = None;
                    first_success = Some(r);
                    break;
                }
                if best.as_ref().is_none_or(|b| r.match_count > b.match_count) {
                    best = Some(r);
                }
            }
            if first_success.is_none() {
                main.add(OErr::Composite(format!(
                    "{} must validate at least one schema (anyOf)",
                    go_quote(path)
                )));
            }
            if let Some(b) = best {
                main.merge(b);
            } else if let Some(f) = first_success {
                main.merge(f);
            }
        }
        let one_of = list("oneOf");
        if !one_of.is_empty() {
            let mut best: Option<OResult> = None;
            let mut first_success: Option<OResult> = None;
            let mut validated = 0;
            for sub in &one_of {
                let r = self.validate(sub, data, path);
                if r.is_valid() {
                    validated += 1;
                    best = None;
                    if first_success.is_none() {
                        first_success = Some(r);
                    }
                    continue;
                }
                if validated == 0 && best.as_ref().is_none_or(|b| r.match_count > b.match_count) {
                    best = Some(r);
                }
            }
            if validated != 1 {
                let extra = if validated == 0 {
                    "Found none valid".to_string()
                } else {
                    format!("Found {validated} valid alternatives")
                };
                main.add(OErr::Composite(format!(
                    "{} must validate one and only one schema (oneOf). {extra}",
                    go_quote(path)
                )));
                if let Some(b) = best {
                    main.merge(b);
                }
            } else if let Some(f) = first_success {
                main.merge(f);
            }
        }
        let all_of = list("allOf");
        if !all_of.is_empty() {
            let mut validated = 0;
            for sub in &all_of {
                let r = self.validate(sub, data, path);
                if r.is_valid() {
                    validated += 1;
                }
                main.merge(r);
            }
            if validated != all_of.len() {
                let extra = if validated == 0 {
                    ". None validated"
                } else {
                    ""
                };
                main.add(OErr::Composite(format!(
                    "{} must validate all the schemas (allOf){extra}",
                    go_quote(path)
                )));
            }
        }
        if let Some(not) = s.get("not").filter(|n| n.is_object())
            && self.validate(not, data, path).is_valid()
        {
            main.add(OErr::Composite(format!(
                "{} must not validate the schema (not)",
                go_quote(path)
            )));
        }
        main.match_count += 1;
        main
    }
}

/// `reflect.DeepEqual` on decoded JSON: int64 and float64 never equal each other.
pub(crate) fn json_deep_equal(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => {
            is_go_int(a) == is_go_int(b)
                && if is_go_int(a) {
                    x.as_i64() == y.as_i64()
                } else {
                    x.as_f64() == y.as_f64()
                }
        }
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(p, q)| json_deep_equal(p, q))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len()
                && x.iter()
                    .all(|(k, v)| y.get(k).is_some_and(|w| json_deep_equal(v, w)))
        }
        _ => a == b,
    }
}

/// The enum check: DeepEqual after converting the data to the enum value's Go type when
/// convertible (int64 ↔ float64 numbers convert; nothing else does).
fn enum_matches(data: &Value, e: &Value) -> bool {
    if json_deep_equal(data, e) {
        return true;
    }
    match (data, e) {
        (Value::Number(d), Value::Number(_)) => {
            if is_go_int(e) {
                // float64 -> int64 truncates
                d.as_f64().map(|f| f.trunc() as i64) == e.as_i64()
            } else {
                d.as_f64() == e.as_f64()
            }
        }
        _ => false,
    }
}

// ---------------------------------------------------------------------------------------------
// Formats (kube-openapi strfmt registry, as far as apiextensions keeps it)

static RX_UUID: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?i)^[0-9a-f]{8}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{12}$").unwrap()
});
static RX_UUID3: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?i)^[0-9a-f]{8}-?[0-9a-f]{4}-?3[0-9a-f]{3}-?[0-9a-f]{4}-?[0-9a-f]{12}$").unwrap()
});
static RX_UUID4: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?i)^[0-9a-f]{8}-?[0-9a-f]{4}-?4[0-9a-f]{3}-?[89ab][0-9a-f]{3}-?[0-9a-f]{12}$")
        .unwrap()
});
static RX_UUID5: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?i)^[0-9a-f]{8}-?[0-9a-f]{4}-?5[0-9a-f]{3}-?[89ab][0-9a-f]{3}-?[0-9a-f]{12}$")
        .unwrap()
});
static RX_HOSTNAME: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"^([a-zA-Z0-9\p{S}\p{L}]((-?[a-zA-Z0-9\p{S}\p{L}]{0,62})?)|([a-zA-Z0-9\p{S}\p{L}](([a-zA-Z0-9-\p{S}\p{L}]{0,61}[a-zA-Z0-9\p{S}\p{L}])?)(\.)){1,}([a-zA-Z\p{L}]){2,63})$").unwrap()
});
static RX_DURATION: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"((\d+)\s*([A-Za-zµ]+))").unwrap());
static RX_GO_DURATION: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^[-+]?(0|([0-9]*(\.[0-9]*)?(ns|us|µs|μs|ms|s|m|h))+)$").unwrap());

fn is_date(s: &str) -> bool {
    names::parse_rfc3339(&format!("{s}T00:00:00Z")).is_some() && s.len() == 10
}

fn is_date_time(s: &str) -> bool {
    if s.len() < 4 {
        return false;
    }
    let lower = s.to_lowercase();
    let parts: Vec<&str> = lower.split('t').collect();
    if parts.len() < 2 || !is_date(parts[0]) {
        return false;
    }
    static RX: LazyLock<Regex> = LazyLock::new(|| {
        Regex::new(r"^([0-9]{2}):([0-9]{2}):([0-9]{2})(.[0-9]+)?(z|([+-][0-9]{2}:[0-9]{2}))$")
            .unwrap()
    });
    match RX.captures(parts[1]) {
        Some(c) => &c[1] <= "23" && &c[2] <= "59" && &c[3] <= "59",
        None => false,
    }
}

fn is_duration(s: &str) -> bool {
    if RX_GO_DURATION.is_match(s) && !s.is_empty() && s != "+" && s != "-" {
        return true;
    }
    const UNITS: &[&[&str]] = &[
        &["ns", "nano"],
        &["us", "µs", "micro"],
        &["ms", "milli"],
        &["s", "sec"],
        &["m", "min"],
        &["h", "hr", "hour"],
        &["d", "day"],
        &["w", "wk", "week"],
    ];
    RX_DURATION.captures_iter(s).any(|c| {
        let unit = c[3].trim().to_lowercase();
        UNITS.iter().any(|variants| {
            let last = variants.len() - 1;
            variants
                .iter()
                .enumerate()
                .any(|(i, v)| (i == last && unit.starts_with(v)) || unit.eq_ignore_ascii_case(v))
        })
    })
}

fn is_ipv4(s: &str) -> bool {
    // netutils.ParseIPSloppy accepts leading zeros; must contain a dot.
    let parts: Vec<&str> = s.split('.').collect();
    parts.len() == 4
        && parts.iter().all(|p| {
            !p.is_empty() && p.len() <= 3 && p.bytes().all(|b| b.is_ascii_digit()) && {
                p.parse::<u32>().is_ok_and(|n| n <= 255)
            }
        })
}

fn is_ipv6(s: &str) -> bool {
    s.contains(':') && s.parse::<std::net::Ipv6Addr>().is_ok()
}

fn is_cidr(s: &str) -> bool {
    let Some((ip, bits)) = s.split_once('/') else {
        return false;
    };
    let Ok(bits) = bits.parse::<u32>() else {
        return false;
    };
    if is_ipv4(ip) {
        bits <= 32
    } else if ip.parse::<std::net::Ipv6Addr>().is_ok() {
        bits <= 128
    } else {
        false
    }
}

fn is_mac(s: &str) -> bool {
    static RX: LazyLock<Regex> = LazyLock::new(|| {
        Regex::new(r"^([0-9A-Fa-f]{2}([:-])){5}[0-9A-Fa-f]{2}$|^([0-9A-Fa-f]{2}([:-])){7}[0-9A-Fa-f]{2}$|^([0-9A-Fa-f]{2}([:-])){19}[0-9A-Fa-f]{2}$|^([0-9A-Fa-f]{4}\.){2}[0-9A-Fa-f]{4}$|^([0-9A-Fa-f]{4}\.){3}[0-9A-Fa-f]{4}$|^([0-9A-Fa-f]{4}\.){9}[0-9A-Fa-f]{4}$").unwrap()
    });
    RX.is_match(s)
}

fn is_isbn(s: &str, len: usize) -> bool {
    let digits: String = s.chars().filter(|c| *c != '-' && *c != ' ').collect();
    if digits.len() != len {
        return false;
    }
    let b = digits.as_bytes();
    if len == 10 {
        if !b[..9].iter().all(u8::is_ascii_digit) || !(b[9].is_ascii_digit() || b[9] == b'X') {
            return false;
        }
        let mut sum = 0u32;
        for (i, c) in b[..9].iter().enumerate() {
            sum += (i as u32 + 1) * u32::from(c - b'0');
        }
        let check = if b[9] == b'X' {
            10
        } else {
            u32::from(b[9] - b'0')
        };
        sum += 10 * check;
        sum.is_multiple_of(11)
    } else {
        if !b.iter().all(u8::is_ascii_digit) {
            return false;
        }
        let mut sum = 0u32;
        for (i, c) in b[..12].iter().enumerate() {
            sum += u32::from(c - b'0') * if i % 2 == 0 { 1 } else { 3 };
        }
        (10 - sum % 10) % 10 == u32::from(b[12] - b'0')
    }
}

fn is_credit_card(s: &str) -> bool {
    static RX: LazyLock<Regex> = LazyLock::new(|| {
        Regex::new(r"^(?:4[0-9]{12}(?:[0-9]{3})?|5[1-5][0-9]{14}|(222[1-9]|22[3-9][0-9]|2[3-6][0-9]{2}|27[01][0-9]|2720)[0-9]{12}|6(?:011|5[0-9][0-9])[0-9]{12}|3[47][0-9]{13}|3(?:0[0-5]|[68][0-9])[0-9]{11}|(?:2131|1800|35\d{3})\d{11}|6[27][0-9]{14})$").unwrap()
    });
    let digits: String = s.chars().filter(char::is_ascii_digit).collect();
    if !RX.is_match(&digits) {
        return false;
    }
    // Luhn
    let mut sum = 0;
    let mut double = false;
    for c in digits.bytes().rev() {
        let mut d = u32::from(c - b'0');
        if double {
            d *= 2;
            if d > 9 {
                d -= 9;
            }
        }
        sum += d;
        double = !double;
    }
    sum % 10 == 0
}

/// Whether `s` is valid for the (normalised, supported) format `f`.
pub(crate) fn format_ok(f: &str, s: &str) -> bool {
    match f {
        "bsonobjectid" => s.len() == 24 && s.bytes().all(|b| b.is_ascii_hexdigit()),
        "uri" => {
            // govalidator.IsRequestURI = url.ParseRequestURI: absolute URI or absolute path.
            static RX: LazyLock<Regex> =
                LazyLock::new(|| Regex::new(r"^([a-zA-Z][a-zA-Z0-9+.-]*:|/)\S*$").unwrap());
            RX.is_match(s)
        }
        "email" => {
            static RX: LazyLock<Regex> =
                LazyLock::new(|| Regex::new(r"^(?:[^<>@\s]*<)?[^@\s<>]+@[^@\s<>]+>?$").unwrap());
            RX.is_match(s)
        }
        "hostname" => {
            RX_HOSTNAME.is_match(s) && s.len() <= 255 && s.split('.').all(|p| p.len() <= 63)
        }
        "ipv4" => is_ipv4(s),
        "ipv6" => is_ipv6(s),
        "cidr" => is_cidr(s),
        "mac" => is_mac(s),
        "uuid" => RX_UUID.is_match(s),
        "uuid3" => RX_UUID3.is_match(s),
        "uuid4" => RX_UUID4.is_match(s),
        "uuid5" => RX_UUID5.is_match(s),
        "isbn" => is_isbn(s, 10) || is_isbn(s, 13),
        "isbn10" => is_isbn(s, 10),
        "isbn13" => is_isbn(s, 13),
        "creditcard" => is_credit_card(s),
        "ssn" => {
            static RX: LazyLock<Regex> =
                LazyLock::new(|| Regex::new(r"^\d{3}[- ]?\d{2}[- ]?\d{4}$").unwrap());
            s.len() == 9 || s.len() == 11 && RX.is_match(s)
        }
        "hexcolor" => {
            static RX: LazyLock<Regex> =
                LazyLock::new(|| Regex::new(r"^#?([0-9a-fA-F]{3}|[0-9a-fA-F]{6})$").unwrap());
            RX.is_match(s)
        }
        "rgbcolor" => {
            static RX: LazyLock<Regex> = LazyLock::new(|| {
                Regex::new(r"^rgb\(\s*(0|[1-9]\d?|1\d\d?|2[0-4]\d|25[0-5])\s*,\s*(0|[1-9]\d?|1\d\d?|2[0-4]\d|25[0-5])\s*,\s*(0|[1-9]\d?|1\d\d?|2[0-4]\d|25[0-5])\s*\)$").unwrap()
            });
            RX.is_match(s)
        }
        "byte" => base64::engine::general_purpose::STANDARD.decode(s).is_ok(),
        "password" => true,
        "date" => is_date(s),
        "duration" => is_duration(s),
        "datetime" => is_date_time(s),
        _ => true,
    }
}

/// `kubeOpenAPIResultToFieldErrors`. `fld_path` is the `field.Path` the validation ran under
/// (`None` for the resource itself: upstream's nil path, printed `<nil>`).
pub(crate) fn to_field_errors(fld_path: Option<&str>, result: &OResult) -> Vec<FieldError> {
    let nil = |p: Option<&str>| p.map_or("<nil>".to_string(), str::to_string);
    result
        .errors
        .iter()
        .map(|e| match e {
            OErr::Composite(m) => FieldError::new(
                FieldErrorType::Invalid,
                nil(fld_path),
                Some("\"\"".into()),
                m.clone(),
            ),
            OErr::Validation {
                code,
                name,
                message,
                value,
            } => {
                let field = if !name.is_empty() && name != "." {
                    let n = name.strip_prefix('.').unwrap_or(name);
                    match fld_path {
                        Some(p) if !p.is_empty() => format!("{p}.{n}"),
                        _ => n.to_string(),
                    }
                } else {
                    nil(fld_path)
                };
                let value = value.clone().unwrap_or_else(|| "\"\"".to_string());
                match code {
                    Code::Required => FieldError::required(field, ""),
                    Code::Enum(values) => {
                        let quoted: Vec<String> = values.iter().map(|v| go_quote(v)).collect();
                        FieldError::new(
                            FieldErrorType::NotSupported,
                            field,
                            Some(value),
                            if quoted.is_empty() {
                                String::new()
                            } else {
                                format!("supported values: {}", quoted.join(", "))
                            },
                        )
                    }
                    Code::TooLong(max) => FieldError::new(
                        FieldErrorType::TooLong,
                        field,
                        None,
                        format!("may not be more than {max} bytes"),
                    ),
                    Code::MaxItems(actual, max) | Code::TooManyProperties(actual, max) => {
                        FieldError::new(
                            FieldErrorType::TooMany,
                            field,
                            Some(actual.to_string()),
                            format!("must have at most {max} items"),
                        )
                    }
                    Code::InvalidType => FieldError::new(
                        FieldErrorType::TypeInvalid,
                        field,
                        Some(value),
                        message.clone(),
                    ),
                    Code::Other => FieldError::new(
                        FieldErrorType::Invalid,
                        field,
                        Some(value),
                        message.clone(),
                    ),
                }
            }
        })
        .collect()
}

// ---------------------------------------------------------------------------------------------
// x-kubernetes-list-type (listtype/validation.go) and embedded resources (objectmeta/validation.go)

use super::Node;

fn fp_child(p: &str, name: &str) -> String {
    if p.is_empty() {
        name.to_string()
    } else {
        format!("{p}.{name}")
    }
}

/// `ValidateListSetsAndMaps` over an object at `path` (`""` = resource root).
pub(crate) fn list_sets_and_maps(path: &str, s: &Node, obj: &Value, errs: &mut Vec<FieldError>) {
    let Some(m) = obj.as_object() else {
        return;
    };
    if let Some(ap) = s.additional.as_deref() {
        for (k, v) in m {
            list_set_and_maps_value(&format!("{path}[{k}]"), ap, v, errs);
        }
    }
    if !s.properties.is_empty() {
        for (k, v) in m {
            if let Some(sub) = s.prop(k) {
                list_set_and_maps_value(&fp_child(path, k), sub, v, errs);
            }
        }
    }
}

fn list_set_and_maps_value(path: &str, s: &Node, v: &Value, errs: &mut Vec<FieldError>) {
    match v {
        Value::Array(a) => {
            match s.list_type.as_deref() {
                Some("set") => {
                    for i in non_unique(a) {
                        errs.push(FieldError::new(
                            FieldErrorType::Duplicate,
                            format!("{path}[{i}]"),
                            Some(body_value(&a[i])),
                            "",
                        ));
                    }
                }
                Some("map") => list_map(path, s, a, errs),
                _ => {}
            }
            if let Some(items) = s.items.as_deref() {
                for (i, x) in a.iter().enumerate() {
                    list_set_and_maps_value(&format!("{path}[{i}]"), items, x, errs);
                }
            }
        }
        Value::Object(_) => list_sets_and_maps(path, s, v, errs),
        _ => {}
    }
}

/// Scalars compare by Go value (int64 vs float64 distinct), compounds by their JSON.
fn set_key(v: &Value) -> String {
    match v {
        Value::Object(_) | Value::Array(_) => format!("c{}", go_json(v)),
        Value::Number(_) if is_go_int(v) => format!("i{}", number_v(v)),
        Value::Number(_) => format!("f{}", number_v(v)),
        other => format!("s{other}"),
    }
}

/// Indices of second occurrences (each repeated value reported once, at its second position).
fn non_unique(a: &[Value]) -> Vec<usize> {
    let mut seen: HashMap<String, usize> = HashMap::new();
    let mut out = Vec::new();
    for (i, x) in a.iter().enumerate() {
        let c = seen.entry(set_key(x)).or_insert(0);
        *c += 1;
        if *c == 2 {
            out.push(i);
        }
    }
    out
}

fn list_map(path: &str, s: &Node, a: &[Value], errs: &mut Vec<FieldError>) {
    for (i, x) in a.iter().enumerate() {
        if !x.is_null() && !x.is_object() {
            errs.push(FieldError::new(
                FieldErrorType::Invalid,
                format!("{path}[{i}]"),
                Some(body_value(x)),
                "must be an object for an array of list-type map",
            ));
            return;
        }
    }
    if a.len() <= 1 {
        return;
    }
    let keys: Vec<Value> = a
        .iter()
        .map(|x| {
            let mut key = serde_json::Map::new();
            for k in &s.list_map_keys {
                if let Some(v) = x.get(k) {
                    key.insert(k.clone(), v.clone());
                }
            }
            Value::Object(key)
        })
        .collect();
    for i in non_unique(&keys) {
        errs.push(FieldError::new(
            FieldErrorType::Duplicate,
            format!("{path}[{i}]"),
            Some(sharp_v(&keys[i])),
            "",
        ));
    }
}

/// `objectmeta.Validate(nil, obj, s, false)`: apiVersion/kind/metadata of embedded resources.
pub(crate) fn embedded_resources(path: &str, s: &Node, x: &Value, errs: &mut Vec<FieldError>) {
    match x {
        Value::Object(m) => {
            if s.embedded {
                validate_embedded(path, m, errs);
            }
            for (k, v) in m {
                if let Some(p) = s.prop(k) {
                    embedded_resources(&fp_child(path, k), p, v, errs);
                } else if let Some(ap) = s.additional.as_deref() {
                    embedded_resources(&format!("{path}[{k}]"), ap, v, errs);
                }
            }
        }
        Value::Array(a) => {
            if let Some(items) = s.items.as_deref() {
                for (i, v) in a.iter().enumerate() {
                    embedded_resources(&format!("{path}[{i}]"), items, v, errs);
                }
            }
        }
        _ => {}
    }
}

fn validate_embedded(path: &str, x: &serde_json::Map<String, Value>, errs: &mut Vec<FieldError>) {
    if !x.contains_key("apiVersion") {
        errs.push(FieldError::required(
            fp_child(path, "apiVersion"),
            "must not be empty",
        ));
    }
    if !x.contains_key("kind") {
        errs.push(FieldError::required(
            fp_child(path, "kind"),
            "must not be empty",
        ));
    }
    for (k, v) in x {
        match k.as_str() {
            "apiVersion" => match v.as_str() {
                None => errs.push(FieldError::new(
                    FieldErrorType::Invalid,
                    fp_child(path, "apiVersion"),
                    Some(body_value(v)),
                    "must be a string",
                )),
                Some("") => errs.push(FieldError::new(
                    FieldErrorType::Invalid,
                    fp_child(path, "apiVersion"),
                    Some("\"\"".into()),
                    "must not be empty",
                )),
                Some(av) => {
                    if let Err(e) = names::parse_group_version(av) {
                        errs.push(FieldError::new(
                            FieldErrorType::Invalid,
                            fp_child(path, "apiVersion"),
                            Some(go_quote(av)),
                            e,
                        ));
                    }
                }
            },
            "kind" => match v.as_str() {
                None => errs.push(FieldError::new(
                    FieldErrorType::Invalid,
                    fp_child(path, "kind"),
                    Some(body_value(v)),
                    "must be a string",
                )),
                Some("") => errs.push(FieldError::new(
                    FieldErrorType::Invalid,
                    fp_child(path, "kind"),
                    Some("\"\"".into()),
                    "must not be empty",
                )),
                Some(kind) => {
                    let e = names::is_dns1035_label(&kind.to_lowercase());
                    if !e.is_empty() {
                        errs.push(FieldError::new(
                            FieldErrorType::Invalid,
                            fp_child(path, "kind"),
                            Some(go_quote(kind)),
                            format!(
                                "may have mixed case, but should otherwise match: {}",
                                e.join(",")
                            ),
                        ));
                    }
                }
            },
            "metadata" => {
                let mut meta = v.clone();
                if !meta.is_object() && !meta.is_null() {
                    errs.push(FieldError::new(
                        FieldErrorType::Invalid,
                        fp_child(path, "metadata"),
                        Some(body_value(v)),
                        "json: cannot unmarshal into Go value of type v1.ObjectMeta",
                    ));
                    continue;
                }
                if meta.is_null() {
                    meta = Value::Object(serde_json::Map::new());
                }
                if meta
                    .get("name")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .is_empty()
                {
                    meta["name"] = Value::String("fakename".into());
                }
                let ns = meta
                    .get("namespace")
                    .and_then(Value::as_str)
                    .is_some_and(|n| !n.is_empty());
                let p = fp_child(path, "metadata");
                errs.extend(names::validate_object_meta_with(
                    &meta,
                    &ObjectMetaOptions {
                        name_rule: NameRule::PathSegment,
                        namespaced: Some(ns),
                        path: &p,
                        extra_name_check: None,
                    },
                    None,
                ));
            }
            _ => {}
        }
    }
}
