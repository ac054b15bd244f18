//! Name, label, annotation and ObjectMeta validation with upstream's exact messages.
//!
//! Sources (apimachinery@v0.32.4): `pkg/util/validation/validation.go` (the `Is*` checks and their
//! regex strings), `pkg/api/validation/{generic,objectmeta}.go` (`ValidateObjectMetaAccessor`,
//! `ValidateObjectMetaAccessorUpdate`), `pkg/api/validation/path/name.go`,
//! `pkg/apis/meta/v1/validation/validation.go` (labels, managedFields), and
//! apiextensions-apiserver `pkg/apiserver/schema/objectmeta/coerce.go` (the typed ObjectMeta
//! round-trip every custom resource goes through).
//!
//! Field paths follow upstream: label and annotation errors are reported at `metadata.labels` /
//! `metadata.annotations` (no key subscript), owner reference errors at
//! `metadata.ownerReferences.<field>` (no index).

use std::sync::LazyLock;

use regex::Regex;
use serde_json::{Map, Value};

use super::gofmt::sharp_v_strings;
use crate::error::{FieldError, FieldErrorType, go_quote};

/// `qualifiedNameFmt`.
pub const QUALIFIED_NAME_FMT: &str = "([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]";
const QUALIFIED_NAME_ERR_MSG: &str = "must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character";
const QUALIFIED_NAME_MAX_LENGTH: usize = 63;
/// `labelValueFmt`.
pub const LABEL_VALUE_FMT: &str = "(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?";
const LABEL_VALUE_ERR_MSG: &str = "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character";
pub const LABEL_VALUE_MAX_LENGTH: usize = 63;
/// `dns1123LabelFmt`.
pub const DNS1123_LABEL_FMT: &str = "[a-z0-9]([-a-z0-9]*[a-z0-9])?";
const DNS1123_LABEL_ERR_MSG: &str = "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character";
pub const DNS1123_LABEL_MAX_LENGTH: usize = 63;
/// `dns1123SubdomainFmt`.
pub const DNS1123_SUBDOMAIN_FMT: &str =
    "[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*";
const DNS1123_SUBDOMAIN_ERR_MSG: &str = "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character";
pub const DNS1123_SUBDOMAIN_MAX_LENGTH: usize = 253;
/// `dns1035LabelFmt`.
pub const DNS1035_LABEL_FMT: &str = "[a-z]([-a-z0-9]*[a-z0-9])?";
const DNS1035_LABEL_ERR_MSG: &str = "a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an alphabetic character, and end with an alphanumeric character";
pub const DNS1035_LABEL_MAX_LENGTH: usize = 63;

/// `TotalAnnotationSizeLimitB`.
pub const TOTAL_ANNOTATION_SIZE_LIMIT_B: usize = 256 * (1 << 10);
/// `FieldImmutableErrorMsg`.
pub const FIELD_IMMUTABLE_ERROR_MSG: &str = "field is immutable";

fn anchored(fmt: &str) -> Regex {
    Regex::new(&format!("^{fmt}$")).expect("static regex")
}

static QUALIFIED_NAME_RE: LazyLock<Regex> = LazyLock::new(|| anchored(QUALIFIED_NAME_FMT));
static LABEL_VALUE_RE: LazyLock<Regex> = LazyLock::new(|| anchored(LABEL_VALUE_FMT));
static DNS1123_LABEL_RE: LazyLock<Regex> = LazyLock::new(|| anchored(DNS1123_LABEL_FMT));
static DNS1123_SUBDOMAIN_RE: LazyLock<Regex> = LazyLock::new(|| anchored(DNS1123_SUBDOMAIN_FMT));
static DNS1035_LABEL_RE: LazyLock<Regex> = LazyLock::new(|| anchored(DNS1035_LABEL_FMT));

/// `MaxLenError`.
pub fn max_len_error(length: usize) -> String {
    format!("must be no more than {length} characters")
}

/// `RegexError`.
pub fn regex_error(msg: &str, fmt: &str, examples: &[&str]) -> String {
    if examples.is_empty() {
        return format!("{msg} (regex used for validation is '{fmt}')");
    }
    let mut m = format!("{msg} (e.g. ");
    for (i, e) in examples.iter().enumerate() {
        if i > 0 {
            m.push_str(" or ");
        }
        m.push_str(&format!("'{e}', "));
    }
    m.push_str(&format!("regex used for validation is '{fmt}')"));
    m
}

/// `IsDNS1123Label`: error strings, empty when valid.
pub fn is_dns1123_label(value: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if value.len() > DNS1123_LABEL_MAX_LENGTH {
        errs.push(max_len_error(DNS1123_LABEL_MAX_LENGTH));
    }
    if !DNS1123_LABEL_RE.is_match(value) {
        if DNS1123_SUBDOMAIN_RE.is_match(value) {
            errs.push("must not contain dots".to_string());
        } else {
            errs.push(regex_error(
                DNS1123_LABEL_ERR_MSG,
                DNS1123_LABEL_FMT,
                &["my-name", "123-abc"],
            ));
        }
    }
    errs
}

/// `IsDNS1123Subdomain`.
pub fn is_dns1123_subdomain(value: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if value.len() > DNS1123_SUBDOMAIN_MAX_LENGTH {
        errs.push(max_len_error(DNS1123_SUBDOMAIN_MAX_LENGTH));
    }
    if !DNS1123_SUBDOMAIN_RE.is_match(value) {
        errs.push(regex_error(
            DNS1123_SUBDOMAIN_ERR_MSG,
            DNS1123_SUBDOMAIN_FMT,
            &["example.com"],
        ));
    }
    errs
}

/// `IsDNS1035Label`.
pub fn is_dns1035_label(value: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if value.len() > DNS1035_LABEL_MAX_LENGTH {
        errs.push(max_len_error(DNS1035_LABEL_MAX_LENGTH));
    }
    if !DNS1035_LABEL_RE.is_match(value) {
        errs.push(regex_error(
            DNS1035_LABEL_ERR_MSG,
            DNS1035_LABEL_FMT,
            &["my-name", "abc-123"],
        ));
    }
    errs
}

/// `IsQualifiedName`: label keys, annotation keys (lower-cased first), finalizer names.
pub fn is_qualified_name(value: &str) -> Vec<String> {
    let mut errs = Vec::new();
    let parts: Vec<&str> = value.split('/').collect();
    let name = match parts.len() {
        1 => parts[0],
        2 => {
            let prefix = parts[0];
            if prefix.is_empty() {
                errs.push("prefix part must be non-empty".to_string());
            } else {
                for m in is_dns1123_subdomain(prefix) {
                    errs.push(format!("prefix part {m}"));
                }
            }
            parts[1]
        }
        _ => {
            errs.push(format!(
                "a qualified name {} with an optional DNS subdomain prefix and '/' (e.g. 'example.com/MyName')",
                regex_error(
                    QUALIFIED_NAME_ERR_MSG,
                    QUALIFIED_NAME_FMT,
                    &["MyName", "my.name", "123-abc"]
                )
            ));
            return errs;
        }
    };
    if name.is_empty() {
        errs.push("name part must be non-empty".to_string());
    } else if name.len() > QUALIFIED_NAME_MAX_LENGTH {
        errs.push(format!(
            "name part {}",
            max_len_error(QUALIFIED_NAME_MAX_LENGTH)
        ));
    }
    if !QUALIFIED_NAME_RE.is_match(name) {
        errs.push(format!(
            "name part {}",
            regex_error(
                QUALIFIED_NAME_ERR_MSG,
                QUALIFIED_NAME_FMT,
                &["MyName", "my.name", "123-abc"]
            )
        ));
    }
    errs
}

/// `IsValidLabelValue`.
pub fn is_valid_label_value(value: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if value.len() > LABEL_VALUE_MAX_LENGTH {
        errs.push(max_len_error(LABEL_VALUE_MAX_LENGTH));
    }
    if !LABEL_VALUE_RE.is_match(value) {
        errs.push(regex_error(
            LABEL_VALUE_ERR_MSG,
            LABEL_VALUE_FMT,
            &["MyValue", "my_value", "12345"],
        ));
    }
    errs
}

/// `path.IsValidPathSegmentName` (RBAC object names, names inside embedded resources).
pub fn is_valid_path_segment_name(name: &str) -> Vec<String> {
    for illegal in [".", ".."] {
        if name == illegal {
            return vec![format!("may not be '{illegal}'")];
        }
    }
    is_valid_path_segment_prefix(name)
}

/// `path.IsValidPathSegmentPrefix`.
pub fn is_valid_path_segment_prefix(name: &str) -> Vec<String> {
    ["/", "%"]
        .iter()
        .filter(|c| name.contains(**c))
        .map(|c| format!("may not contain '{c}'"))
        .collect()
}

/// `maskTrailingDash`, bug-for-bug: a trailing dash of a generateName prefix is masked by
/// replacing the last *two* characters with "a".
fn mask_trailing_dash(name: &str) -> String {
    if name.len() > 1 && name.ends_with('-') {
        format!("{}a", &name[..name.len() - 2])
    } else {
        name.to_string()
    }
}

/// Which name rule a kind uses (`ValidateNameFunc`); `prefix` mode validates a generateName.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NameRule {
    /// `NameIsDNSSubdomain`: most kinds, custom resources, CRDs.
    DnsSubdomain,
    /// `NameIsDNSLabel`: namespaces, services.
    DnsLabel,
    /// `NameIsDNS1035Label`.
    Dns1035Label,
    /// `path.ValidatePathSegmentName`: RBAC kinds, metadata of embedded resources.
    PathSegment,
}

impl NameRule {
    /// The error strings for `name` (empty when valid).
    pub fn check(self, name: &str, prefix: bool) -> Vec<String> {
        match self {
            NameRule::DnsSubdomain | NameRule::DnsLabel | NameRule::Dns1035Label => {
                let n = if prefix {
                    mask_trailing_dash(name)
                } else {
                    name.to_string()
                };
                match self {
                    NameRule::DnsSubdomain => is_dns1123_subdomain(&n),
                    NameRule::DnsLabel => is_dns1123_label(&n),
                    _ => is_dns1035_label(&n),
                }
            }
            NameRule::PathSegment => {
                if prefix {
                    is_valid_path_segment_prefix(name)
                } else {
                    is_valid_path_segment_name(name)
                }
            }
        }
    }
}

/// An extra name check: `(name, is_generate_name_prefix) -> error strings`.
pub type NameCheck<'a> = &'a dyn Fn(&str, bool) -> Vec<String>;

/// Options for [`validate_object_meta_with`].
#[derive(Clone)]
pub struct ObjectMetaOptions<'a> {
    pub name_rule: NameRule,
    /// `Some(true)`: namespace required (DNS label); `Some(false)`: namespace forbidden
    /// (`Forbidden: not allowed on this type`); `None`: not checked (the core sets it from the URL).
    pub namespaced: Option<bool>,
    /// Field path of the metadata object, `metadata` for a top-level object.
    pub path: &'a str,
    /// Extra name checks appended after the rule's (e.g. the CRD `must be spec.names.plural+"."+spec.group`).
    pub extra_name_check: Option<NameCheck<'a>>,
}

impl Default for ObjectMetaOptions<'_> {
    fn default() -> Self {
        Self {
            name_rule: NameRule::DnsSubdomain,
            namespaced: None,
            path: "metadata",
            extra_name_check: None,
        }
    }
}

fn child(path: &str, name: &str) -> String {
    if path.is_empty() {
        name.to_string()
    } else {
        format!("{path}.{name}")
    }
}

fn invalid_str(path: String, value: &str, detail: impl Into<String>) -> FieldError {
    FieldError::new(FieldErrorType::Invalid, path, Some(go_quote(value)), detail)
}

fn get_str<'a>(meta: &'a Value, key: &str) -> &'a str {
    meta.get(key).and_then(Value::as_str).unwrap_or("")
}

fn get_i64(meta: &Value, key: &str) -> i64 {
    meta.get(key).and_then(Value::as_i64).unwrap_or(0)
}

fn string_map(meta: &Value, key: &str) -> Vec<(String, String)> {
    meta.get(key)
        .and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap_or("").to_string()))
                .collect()
        })
        .unwrap_or_default()
}

fn string_list(meta: &Value, key: &str) -> Vec<String> {
    meta.get(key)
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .map(|v| v.as_str().unwrap_or("").to_string())
                .collect()
        })
        .unwrap_or_default()
}

/// `ValidateObjectMetaAccessor` on create (`old == None`) or `ValidateObjectMetaAccessorUpdate`
/// on update, at `metadata`, with `name_rule` and no namespace check. See
/// [`validate_object_meta_with`] for the options.
pub fn validate_object_meta(
    meta: &Value,
    name_rule: NameRule,
    is_update_old: Option<&Value>,
) -> Vec<FieldError> {
    validate_object_meta_with(
        meta,
        &ObjectMetaOptions {
            name_rule,
            ..Default::default()
        },
        is_update_old,
    )
}

/// Like [`validate_object_meta`] with every option. On update (`old` is `Some`) only upstream's
/// update rules run (`ValidateObjectMetaAccessorUpdate`: no new finalizers while deleting,
/// resourceVersion present, generation not decremented, name/namespace/uid/creationTimestamp/
/// deletionTimestamp/deletionGracePeriodSeconds immutable, labels, annotations, ownerReferences,
/// managedFields), as for custom resources; built-in kinds whose upstream update validation also
/// re-runs the create checks can call this twice.
pub fn validate_object_meta_with(
    meta: &Value,
    opts: &ObjectMetaOptions<'_>,
    old: Option<&Value>,
) -> Vec<FieldError> {
    let empty = Value::Object(Map::new());
    let meta = if meta.is_object() { meta } else { &empty };
    let p = |n: &str| child(opts.path, n);
    let mut errs = Vec::new();
    if let Some(old) = old {
        let old = if old.is_object() { old } else { &empty };
        if old.get("deletionTimestamp").is_some_and(|v| !v.is_null()) {
            let old_f = string_list(old, "finalizers");
            let mut extra: Vec<String> = string_list(meta, "finalizers")
                .into_iter()
                .filter(|f| !old_f.contains(f))
                .collect();
            extra.sort();
            extra.dedup();
            if !extra.is_empty() {
                errs.push(FieldError::forbidden(
                    p("finalizers"),
                    format!(
                        "no new finalizers can be added if the object is being deleted, found new finalizers {}",
                        sharp_v_strings(&extra)
                    ),
                ));
            }
        }
        if get_str(meta, "resourceVersion").is_empty() {
            errs.push(invalid_str(
                p("resourceVersion"),
                "",
                "must be specified for an update",
            ));
        }
        let (ng, og) = (get_i64(meta, "generation"), get_i64(old, "generation"));
        if ng < og {
            errs.push(FieldError::new(
                FieldErrorType::Invalid,
                p("generation"),
                Some(ng.to_string()),
                "must not be decremented",
            ));
        }
        for key in ["name", "namespace", "uid"] {
            let (n, o) = (get_str(meta, key), get_str(old, key));
            if n != o {
                errs.push(invalid_str(p(key), n, FIELD_IMMUTABLE_ERROR_MSG));
            }
        }
        for key in ["creationTimestamp", "deletionTimestamp"] {
            let n = meta
                .get(key)
                .and_then(Value::as_str)
                .and_then(parse_rfc3339);
            let o = old.get(key).and_then(Value::as_str).and_then(parse_rfc3339);
            if n != o {
                let shown = match n {
                    Some(t) => go_time_string(t),
                    None if key == "creationTimestamp" => go_time_string(GO_ZERO_TIME),
                    None => "\"null\"".to_string(),
                };
                errs.push(FieldError::new(
                    FieldErrorType::Invalid,
                    p(key),
                    Some(shown),
                    FIELD_IMMUTABLE_ERROR_MSG,
                ));
            }
        }
        let n = meta
            .get("deletionGracePeriodSeconds")
            .and_then(Value::as_i64);
        let o = old
            .get("deletionGracePeriodSeconds")
            .and_then(Value::as_i64);
        if n != o {
            errs.push(FieldError::new(
                FieldErrorType::Invalid,
                p("deletionGracePeriodSeconds"),
                Some(n.map_or("\"null\"".to_string(), |v| v.to_string())),
                FIELD_IMMUTABLE_ERROR_MSG,
            ));
        }
        errs.extend(validate_labels(meta, &p("labels")));
        errs.extend(validate_annotations(meta, &p("annotations")));
        errs.extend(validate_owner_references(meta, &p("ownerReferences")));
        errs.extend(validate_managed_fields(meta, &p("managedFields")));
        return errs;
    }

    let check_name = |name: &str, prefix: bool| -> Vec<String> {
        let mut m = opts.name_rule.check(name, prefix);
        if let Some(extra) = opts.extra_name_check {
            m.extend(extra(name, prefix));
        }
        m
    };
    let generate_name = get_str(meta, "generateName");
    if !generate_name.is_empty() {
        for m in check_name(generate_name, true) {
            errs.push(invalid_str(p("generateName"), generate_name, m));
        }
    }
    let name = get_str(meta, "name");
    if name.is_empty() {
        errs.push(FieldError::required(
            p("name"),
            "name or generateName is required",
        ));
    } else {
        for m in check_name(name, false) {
            errs.push(invalid_str(p("name"), name, m));
        }
    }
    let namespace = get_str(meta, "namespace");
    match opts.namespaced {
        Some(true) if namespace.is_empty() => errs.push(FieldError::required(p("namespace"), "")),
        Some(true) => {
            for m in NameRule::DnsLabel.check(namespace, false) {
                errs.push(invalid_str(p("namespace"), namespace, m));
            }
        }
        Some(false) if !namespace.is_empty() => {
            errs.push(FieldError::forbidden(
                p("namespace"),
                "not allowed on this type",
            ));
        }
        _ => {}
    }
    let generation = get_i64(meta, "generation");
    if generation < 0 {
        errs.push(FieldError::new(
            FieldErrorType::Invalid,
            p("generation"),
            Some(generation.to_string()),
            "must be greater than or equal to 0",
        ));
    }
    errs.extend(validate_labels(meta, &p("labels")));
    errs.extend(validate_annotations(meta, &p("annotations")));
    errs.extend(validate_owner_references(meta, &p("ownerReferences")));
    errs.extend(validate_finalizers(meta, &p("finalizers")));
    errs.extend(validate_managed_fields(meta, &p("managedFields")));
    errs
}

/// `ValidateLabels` at `path` (errors carry no key subscript, as upstream).
fn validate_labels(meta: &Value, path: &str) -> Vec<FieldError> {
    let mut errs = Vec::new();
    for (k, v) in string_map(meta, "labels") {
        for m in is_qualified_name(&k) {
            errs.push(invalid_str(path.to_string(), &k, m));
        }
        for m in is_valid_label_value(&v) {
            errs.push(invalid_str(path.to_string(), &v, m));
        }
    }
    errs
}

/// `ValidateAnnotations`: keys lower-cased then checked as qualified names; 256 KiB total.
fn validate_annotations(meta: &Value, path: &str) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let annotations = string_map(meta, "annotations");
    let mut total = 0usize;
    for (k, v) in &annotations {
        for m in is_qualified_name(&k.to_lowercase()) {
            errs.push(invalid_str(path.to_string(), k, m));
        }
        total += k.len() + v.len();
    }
    if total > TOTAL_ANNOTATION_SIZE_LIMIT_B {
        errs.push(FieldError::new(
            FieldErrorType::TooLong,
            path,
            None,
            format!("may not be more than {TOTAL_ANNOTATION_SIZE_LIMIT_B} bytes"),
        ));
    }
    errs
}

/// `ValidateFinalizers`.
fn validate_finalizers(meta: &Value, path: &str) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let finalizers = string_list(meta, "finalizers");
    for f in &finalizers {
        for m in is_qualified_name(f) {
            errs.push(invalid_str(path.to_string(), f, m));
        }
    }
    if finalizers.iter().any(|f| f == "orphan")
        && finalizers.iter().any(|f| f == "foregroundDeletion")
    {
        errs.push(FieldError::new(
            FieldErrorType::Invalid,
            path,
            Some(sharp_v_strings(&finalizers)),
            "finalizer orphan and foregroundDeletion cannot be both set",
        ));
    }
    errs
}

/// `schema.ParseGroupVersion` → (group, version) or the upstream error text.
pub fn parse_group_version(gv: &str) -> Result<(String, String), String> {
    if gv.is_empty() || gv == "/" {
        return Ok((String::new(), String::new()));
    }
    match gv.matches('/').count() {
        0 => Ok((String::new(), gv.to_string())),
        1 => {
            let (g, v) = gv.split_once('/').unwrap_or(("", ""));
            Ok((g.to_string(), v.to_string()))
        }
        _ => Err(format!("unexpected GroupVersion string: {gv}")),
    }
}

/// Go's `%#v` of a `[]metav1.OwnerReference` (pointer addresses cannot be reproduced; a fixed
/// placeholder is printed instead).
fn sharp_v_owner_refs(refs: &[Value]) -> String {
    let items: Vec<String> = refs
        .iter()
        .map(|r| {
            let ptr = |k: &str| match r.get(k).and_then(Value::as_bool) {
                Some(_) => "(*bool)(0xc000000000)".to_string(),
                None => "(*bool)(nil)".to_string(),
            };
            format!(
                "v1.OwnerReference{{APIVersion:{}, Kind:{}, Name:{}, UID:{}, Controller:{}, BlockOwnerDeletion:{}}}",
                go_quote(get_str(r, "apiVersion")),
                go_quote(get_str(r, "kind")),
                go_quote(get_str(r, "name")),
                go_quote(get_str(r, "uid")),
                ptr("controller"),
                ptr("blockOwnerDeletion")
            )
        })
        .collect();
    format!("[]v1.OwnerReference{{{}}}", items.join(", "))
}

/// `ValidateOwnerReferences` (errors at `metadata.ownerReferences.<field>`, no index).
fn validate_owner_references(meta: &Value, path: &str) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let refs: Vec<Value> = meta
        .get("ownerReferences")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let mut first_controller = String::new();
    for r in &refs {
        let api_version = get_str(r, "apiVersion");
        let kind = get_str(r, "kind");
        let version = parse_group_version(api_version)
            .map(|(_, v)| v)
            .unwrap_or_default();
        if version.is_empty() {
            errs.push(invalid_str(
                child(path, "apiVersion"),
                api_version,
                "version must not be empty",
            ));
        }
        if kind.is_empty() {
            errs.push(invalid_str(
                child(path, "kind"),
                kind,
                "kind must not be empty",
            ));
        }
        for (k, what) in [("name", "name"), ("uid", "uid")] {
            let v = get_str(r, k);
            if v.is_empty() {
                errs.push(invalid_str(
                    child(path, k),
                    v,
                    format!("{what} must not be empty"),
                ));
            }
        }
        if api_version == "v1" && kind == "Event" {
            errs.push(FieldError::new(
                FieldErrorType::Invalid,
                path,
                Some("\"/v1, Kind=Event\"".to_string()),
                "/v1, Kind=Event is disallowed from being an owner",
            ));
        }
        if r.get("controller").and_then(Value::as_bool) == Some(true) {
            let cur = format!("{kind}/{}", get_str(r, "name"));
            if !first_controller.is_empty() {
                errs.push(FieldError::new(
                    FieldErrorType::Invalid,
                    path,
                    Some(sharp_v_owner_refs(&refs)),
                    format!(
                        "Only one reference can have Controller set to true. Found \"true\" in references for {first_controller} and {cur}"
                    ),
                ));
            } else {
                first_controller = cur;
            }
        }
    }
    errs
}

/// `ValidateManagedFields`.
fn validate_managed_fields(meta: &Value, path: &str) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let Some(entries) = meta.get("managedFields").and_then(Value::as_array) else {
        return errs;
    };
    for (i, e) in entries.iter().enumerate() {
        let p = format!("{path}[{i}]");
        let op = get_str(e, "operation");
        if op != "Apply" && op != "Update" {
            errs.push(invalid_str(
                child(&p, "operation"),
                op,
                "must be `Apply` or `Update`",
            ));
        }
        let ft = get_str(e, "fieldsType");
        if !ft.is_empty() && ft != "FieldsV1" {
            errs.push(invalid_str(
                child(&p, "fieldsType"),
                ft,
                "must be `FieldsV1`",
            ));
        }
        let manager = get_str(e, "manager");
        if manager.len() > 128 {
            errs.push(FieldError::new(
                FieldErrorType::TooLong,
                child(&p, "manager"),
                None,
                "may not be more than 128 bytes",
            ));
        }
        for (pos, c) in manager.char_indices() {
            if c.is_control() {
                errs.push(invalid_str(
                    child(&p, "manager"),
                    manager,
                    format!("invalid character U+{:04X} (at position {pos})", c as u32),
                ));
            }
        }
        if get_str(e, "subresource").len() > 256 {
            errs.push(FieldError::new(
                FieldErrorType::TooLong,
                child(&p, "subresource"),
                None,
                "may not be more than 256 bytes",
            ));
        }
    }
    errs
}

// ---------------------------------------------------------------------------------------------
// Timestamps (metav1.Time: RFC 3339 in, UTC seconds out)

/// Seconds since the Unix epoch of Go's zero `time.Time` (0001-01-01T00:00:00Z).
const GO_ZERO_TIME: i64 = -62_135_596_800;

fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = if z >= 0 { z } else { z - 146_096 } / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (if m <= 2 { y + 1 } else { y }, m, d)
}

fn is_leap(y: i64) -> bool {
    (y % 4 == 0 && y % 100 != 0) || y % 400 == 0
}

/// Go's `time.Parse(time.RFC3339, s)` → Unix seconds (fraction dropped), `None` when invalid.
pub fn parse_rfc3339(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    let num = |r: std::ops::Range<usize>| -> Option<i64> {
        let part = s.get(r)?;
        if part.bytes().all(|c| c.is_ascii_digit()) {
            part.parse().ok()
        } else {
            None
        }
    };
    if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || !(b[10] == b'T' || b[10] == b't') {
        return None;
    }
    if b[13] != b':' || b[16] != b':' {
        return None;
    }
    let (y, mo, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (h, mi, sec) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if !(1..=12).contains(&mo) || h > 23 || mi > 59 || sec > 59 {
        return None;
    }
    let mdays = [
        31,
        if is_leap(y) { 29 } else { 28 },
        31,
        30,
        31,
        30,
        31,
        31,
        30,
        31,
        30,
        31,
    ];
    if d < 1 || d > mdays[(mo - 1) as usize] {
        return None;
    }
    let mut i = 19;
    if b[i] == b'.' {
        i += 1;
        let start = i;
        while i < b.len() && b[i].is_ascii_digit() {
            i += 1;
        }
        if i == start {
            return None;
        }
    }
    let offset = match b.get(i)? {
        b'Z' | b'z' if i + 1 == b.len() => 0,
        b'+' | b'-' if i + 6 == b.len() && b[i + 3] == b':' => {
            let oh = num(i + 1..i + 3)?;
            let om = num(i + 4..i + 6)?;
            if oh > 23 || om > 59 {
                return None;
            }
            let o = oh * 3600 + om * 60;
            if b[i] == b'-' { -o } else { o }
        }
        _ => return None,
    };
    Some(days_from_civil(y, mo, d) * 86_400 + h * 3600 + mi * 60 + sec - offset)
}

/// `metav1.Time` JSON form: `2006-01-02T15:04:05Z`.
pub fn format_rfc3339(t: i64) -> String {
    let (days, secs) = (t.div_euclid(86_400), t.rem_euclid(86_400));
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        secs / 3600,
        secs % 3600 / 60,
        secs % 60
    )
}

/// Go's `time.Time.String()` in UTC: `2006-01-02 15:04:05 +0000 UTC`.
fn go_time_string(t: i64) -> String {
    let s = format_rfc3339(t);
    format!("{} {} +0000 UTC", &s[..10], &s[11..19])
}

// ---------------------------------------------------------------------------------------------
// ObjectMeta coercion (the typed round-trip of a custom resource's metadata)

/// The JSON fields of `metav1.ObjectMeta` (k8s.io/apimachinery v0.32).
pub const OBJECT_META_FIELDS: &[&str] = &[
    "name",
    "generateName",
    "namespace",
    "selfLink",
    "uid",
    "resourceVersion",
    "generation",
    "creationTimestamp",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
    "labels",
    "annotations",
    "ownerReferences",
    "finalizers",
    "managedFields",
];

const OWNER_REFERENCE_FIELDS: &[&str] = &[
    "apiVersion",
    "kind",
    "name",
    "uid",
    "controller",
    "blockOwnerDeletion",
];
const MANAGED_FIELDS_ENTRY_FIELDS: &[&str] = &[
    "manager",
    "operation",
    "apiVersion",
    "time",
    "fieldsType",
    "fieldsV1",
    "subresource",
];

fn is_time(v: &Value) -> bool {
    v.is_null() || v.as_str().is_some_and(|s| parse_rfc3339(s).is_some())
}

fn is_string_map(v: &Value) -> bool {
    v.is_null()
        || v.as_object()
            .is_some_and(|m| m.values().all(|x| x.is_string() || x.is_null()))
}

fn is_int(v: &Value) -> bool {
    v.is_null() || v.is_i64()
}

/// Whether a single ObjectMeta field decodes into the Go type (upstream drops it otherwise).
fn meta_field_decodes(key: &str, v: &Value) -> bool {
    match key {
        "generation" | "deletionGracePeriodSeconds" => is_int(v),
        "creationTimestamp" | "deletionTimestamp" => is_time(v),
        "labels" | "annotations" => is_string_map(v),
        "finalizers" => {
            v.is_null()
                || v.as_array()
                    .is_some_and(|a| a.iter().all(|x| x.is_string() || x.is_null()))
        }
        "ownerReferences" => {
            v.is_null()
                || v.as_array().is_some_and(|a| {
                    a.iter().all(|r| {
                        r.is_null()
                            || r.as_object().is_some_and(|o| {
                                o.iter().all(|(k, x)| match k.as_str() {
                                    "controller" | "blockOwnerDeletion" => {
                                        x.is_null() || x.is_boolean()
                                    }
                                    "apiVersion" | "kind" | "name" | "uid" => {
                                        x.is_null() || x.is_string()
                                    }
                                    _ => true,
                                })
                            })
                    })
                })
        }
        "managedFields" => {
            v.is_null()
                || v.as_array().is_some_and(|a| {
                    a.iter().all(|r| {
                        r.is_null()
                            || r.as_object().is_some_and(|o| {
                                o.iter().all(|(k, x)| match k.as_str() {
                                    "time" => is_time(x),
                                    "fieldsV1" => x.is_null() || x.is_object(),
                                    k if MANAGED_FIELDS_ENTRY_FIELDS.contains(&k) => {
                                        x.is_null() || x.is_string()
                                    }
                                    _ => true,
                                })
                            })
                    })
                })
        }
        _ => v.is_null() || v.is_string(),
    }
}

fn is_empty_for_omitempty(key: &str, v: &Value) -> bool {
    match v {
        Value::Null => key != "deletionGracePeriodSeconds" || v.is_null(),
        Value::String(s) => s.is_empty(),
        Value::Number(_) => key == "generation" && v.as_i64() == Some(0),
        Value::Array(a) => a.is_empty(),
        Value::Object(m) => m.is_empty(),
        Value::Bool(_) => false,
    }
}

/// The typed round-trip upstream applies to the metadata of every custom resource (and of
/// embedded resources): unknown fields are removed and reported as `<path>.<field>` (nested ones
/// as `<path>.ownerReferences[0].x`), fields that do not decode into their Go type are dropped,
/// timestamps are normalised to UTC seconds, and `omitempty` fields that are empty (`""`, `0`
/// generation, `{}`, `[]`, null) disappear. `path` is the metadata field path (`metadata`).
pub fn coerce_object_meta(meta: &mut Value, path: &str) -> Vec<String> {
    let mut unknown = Vec::new();
    let Some(m) = meta.as_object_mut() else {
        return unknown;
    };
    let keys: Vec<String> = m.keys().cloned().collect();
    for k in keys {
        if !OBJECT_META_FIELDS.contains(&k.as_str()) {
            unknown.push(format!("{path}.{k}"));
            m.remove(&k);
            continue;
        }
        let decodes = m.get(&k).is_some_and(|v| meta_field_decodes(&k, v));
        if !decodes {
            m.remove(&k);
            continue;
        }
        let v = m.get_mut(&k).expect("present");
        match k.as_str() {
            "creationTimestamp" | "deletionTimestamp" => {
                if let Some(t) = v.as_str().and_then(parse_rfc3339) {
                    *v = Value::String(format_rfc3339(t));
                }
            }
            "ownerReferences" | "managedFields" => {
                let allowed = if k == "ownerReferences" {
                    OWNER_REFERENCE_FIELDS
                } else {
                    MANAGED_FIELDS_ENTRY_FIELDS
                };
                if let Some(items) = v.as_array_mut() {
                    for (i, item) in items.iter_mut().enumerate() {
                        if item.is_null() {
                            *item = Value::Object(Map::new());
                        }
                        if let Some(o) = item.as_object_mut() {
                            let ks: Vec<String> = o.keys().cloned().collect();
                            for ik in ks {
                                let empty_omit = match &o[&ik] {
                                    Value::Null => true,
                                    Value::String(s) => {
                                        s.is_empty()
                                            && !matches!(
                                                ik.as_str(),
                                                "apiVersion" | "kind" | "name" | "uid"
                                            )
                                    }
                                    _ => false,
                                };
                                if !allowed.contains(&ik.as_str()) {
                                    unknown.push(format!("{path}.{k}[{i}].{ik}"));
                                    o.remove(&ik);
                                } else if empty_omit {
                                    o.remove(&ik);
                                } else if ik == "time"
                                    && let Some(t) = o[&ik].as_str().and_then(parse_rfc3339)
                                {
                                    o.insert(ik, Value::String(format_rfc3339(t)));
                                }
                            }
                            if k == "ownerReferences" {
                                for req in ["apiVersion", "kind", "name", "uid"] {
                                    if !o.contains_key(req) {
                                        o.insert(req.to_string(), Value::String(String::new()));
                                    }
                                }
                            }
                        }
                    }
                }
            }
            "labels" | "annotations" => {
                if let Some(o) = v.as_object_mut() {
                    for x in o.values_mut() {
                        if x.is_null() {
                            *x = Value::String(String::new());
                        }
                    }
                }
            }
            "finalizers" => {
                if let Some(a) = v.as_array_mut() {
                    for x in a.iter_mut() {
                        if x.is_null() {
                            *x = Value::String(String::new());
                        }
                    }
                }
            }
            _ => {}
        }
        if m.get(&k).is_some_and(|v| is_empty_for_omitempty(&k, v)) {
            m.remove(&k);
        }
    }
    unknown
}

#[cfg(test)]
#[path = "names_tests.rs"]
mod tests;
