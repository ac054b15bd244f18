//! CRD structural schemas: validation, pruning, defaulting and CEL rules.
//!
//! Everything here is pure: functions over [`serde_json::Value`], no I/O. The server core calls
//! it on every custom-resource write, in upstream's order (apiextensions-apiserver v0.32.4
//! `customresource_handler.go`, `registry/customresource/{strategy,validator}.go`):
//!
//! 1. [`CrdSchema::prune`] — unknown fields removed (reported for `fieldValidation=Warn|Strict`),
//!    root metadata round-tripped through typed ObjectMeta, non-nullable nulls without default
//!    dropped;
//! 2. [`CrdSchema::default`] — `default`s applied;
//! 3. metadata validation ([`validate_object_meta`]) and [`CrdSchema::validate`] /
//!    [`CrdSchema::validate_with`] — OpenAPI value validation, embedded resources,
//!    `x-kubernetes-list-type`, then the `x-kubernetes-validations` rules (kube-sim's CEL core,
//!    kube-cel for the Kubernetes libraries; see `CEL.md`).
//!
//! CRDs themselves are checked by [`validate_crd`] after [`default_crd`].
//!
//! Messages follow upstream byte for byte where upstream's are deterministic; see
//! `crates/kube-sim/src/schema/CEL.md` for what CEL is evaluated, how, and the known divergences.

use serde_json::Value;

use crate::error::FieldError;

pub(crate) mod cel;
mod crd;
mod gofmt;
pub mod names;
mod prune;
mod rules;
mod structural;
mod validate;

pub use crd::{
    compile_crd_schemas, default_crd, prepare_crd_status, validate_crd, validate_crd_status_update,
};
pub use gofmt::{body_value, sharp_v};
pub use names::{
    NameRule, OBJECT_META_FIELDS, ObjectMetaOptions, coerce_object_meta, is_dns1035_label,
    is_dns1123_label, is_dns1123_subdomain, is_qualified_name, is_valid_label_value,
    is_valid_path_segment_name, validate_object_meta, validate_object_meta_with,
};

/// How a list merges (strategic merge) and is owned (server-side apply).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ListSemantics {
    Atomic,
    Set,
    Map { keys: Vec<String> },
}

/// One node of the structural part of a schema (properties / additionalProperties / items).
#[derive(Debug, Clone)]
pub(crate) struct Node {
    /// This node's schema JSON (for value validation and `node_at`).
    pub raw: Value,
    pub ty: String,
    pub nullable: bool,
    pub default: Option<Value>,
    pub preserve_unknown: bool,
    pub embedded: bool,
    pub int_or_string: bool,
    pub list_type: Option<String>,
    pub list_map_keys: Vec<String>,
    pub map_type: Option<String>,
    pub properties: Vec<(String, Node)>,
    pub additional: Option<Box<Node>>,
    /// `additionalProperties: true` (or a schema-less true): map values are kept as they are.
    pub additional_any: bool,
    pub items: Option<Box<Node>>,
    pub rules: Vec<rules::CompiledRule>,
}

impl Node {
    pub(crate) fn build(raw: &Value) -> Node {
        let s = |k: &str| raw.get(k).and_then(Value::as_str).map(str::to_string);
        let b = |k: &str| raw.get(k).and_then(Value::as_bool) == Some(true);
        let properties = raw
            .get("properties")
            .and_then(Value::as_object)
            .map(|p| p.iter().map(|(k, v)| (k.clone(), Node::build(v))).collect())
            .unwrap_or_default();
        let (additional, additional_any) = match raw.get("additionalProperties") {
            Some(v @ Value::Object(_)) => (Some(Box::new(Node::build(v))), false),
            Some(Value::Bool(true)) => (None, true),
            _ => (None, false),
        };
        Node {
            ty: s("type").unwrap_or_default(),
            nullable: b("nullable"),
            default: raw.get("default").cloned(),
            preserve_unknown: b("x-kubernetes-preserve-unknown-fields"),
            embedded: b("x-kubernetes-embedded-resource"),
            int_or_string: b("x-kubernetes-int-or-string"),
            list_type: s("x-kubernetes-list-type"),
            list_map_keys: raw
                .get("x-kubernetes-list-map-keys")
                .and_then(Value::as_array)
                .map(|a| {
                    a.iter()
                        .filter_map(|x| x.as_str().map(str::to_string))
                        .collect()
                })
                .unwrap_or_default(),
            map_type: s("x-kubernetes-map-type"),
            properties,
            additional,
            additional_any,
            items: raw
                .get("items")
                .filter(|i| i.is_object())
                .map(|i| Box::new(Node::build(i))),
            rules: Vec::new(),
            raw: raw.clone(),
        }
    }

    pub(crate) fn prop(&self, k: &str) -> Option<&Node> {
        self.properties
            .iter()
            .find_map(|(n, v)| (n == k).then_some(v))
    }

    fn prop_mut(&mut self, k: &str) -> Option<&mut Node> {
        self.properties
            .iter_mut()
            .find_map(|(n, v)| (n == k).then_some(v))
    }

    fn has_rules(&self) -> bool {
        !self.rules.is_empty()
            || self.properties.iter().any(|(_, p)| p.has_rules())
            || self.additional.as_deref().is_some_and(Node::has_rules)
            || self.items.as_deref().is_some_and(Node::has_rules)
    }
}

/// A compiled structural schema for one CRD version (its `openAPIV3Schema`).
#[derive(Debug, Clone)]
pub struct CrdSchema {
    root: Node,
    patterns: validate::Patterns,
}

impl CrdSchema {
    /// Structural check (upstream `ValidateStructural`, the CRD OpenAPI schema rules, defaults
    /// that must validate and be pruned) and compilation of every `x-kubernetes-validations`
    /// rule. `field_prefix` is the path used in error messages, e.g.
    /// `spec.versions[0].schema.openAPIV3Schema` (upstream reports
    /// `spec.validation.openAPIV3Schema` when every version has the same schema; [`validate_crd`]
    /// picks the right one). Rules using a construct kube-sim cannot evaluate (bytes literals,
    /// optional syntax, two-variable comprehensions) are rejected with `Forbidden: kube-sim does
    /// not support CEL ...` at `<prefix>...x-kubernetes-validations[i].rule`.
    pub fn compile(
        open_api_v3_schema: &Value,
        field_prefix: &str,
    ) -> Result<CrdSchema, Vec<FieldError>> {
        structural::compile(open_api_v3_schema, field_prefix)
    }

    /// A schema that accepts and keeps everything (for `x-kubernetes-preserve-unknown-fields`
    /// at the root, or a CRD version without schema).
    pub fn preserve_unknown() -> CrdSchema {
        let raw =
            serde_json::json!({"type": "object", "x-kubernetes-preserve-unknown-fields": true});
        CrdSchema {
            root: Node::build(&raw),
            patterns: Default::default(),
        }
    }

    /// Remove unknown fields (never `apiVersion`/`kind`/`metadata` at the root; the root
    /// `metadata` goes through the typed ObjectMeta round-trip, see [`coerce_object_meta`]), then
    /// drop `null`s of non-nullable fields without default. Returns the unknown field paths as
    /// upstream reports them for `fieldValidation=Warn|Strict`: metadata ones first
    /// (`metadata.foo`), then the pruned ones sorted (`spec.bogus`, `spec.items[0].x`).
    pub fn prune(&self, obj: &mut Value) -> Vec<String> {
        prune::prune_object(&self.root, obj)
    }

    /// Drop nulls for non-nullable fields without defaults, then apply `default`s (upstream
    /// order: `PruneNonNullableNullsWithoutDefaults`, then `Default`). Defaults apply only where
    /// the parent object exists; a defaulted object gets its own nested defaults.
    pub fn default(&self, obj: &mut Value) {
        prune::prune_nulls(obj, Some(&self.root));
        prune::apply_defaults(obj, &self.root);
    }

    /// OpenAPI validation (type, required, enum, pattern, lengths in code points, bounds,
    /// multipleOf, items, uniqueItems, properties counts, formats, nullable, anyOf/allOf/oneOf/not,
    /// int-or-string), embedded resources, `x-kubernetes-list-type` set/map duplicates, then the
    /// CEL rules — skipped, with upstream's "some validation rules were not checked" error, when
    /// an earlier error is of a blocking kind. Transition rules (using `oldSelf`) run only when
    /// `old` is `Some` and the old value at that path exists.
    pub fn validate(&self, obj: &Value, old: Option<&Value>) -> Vec<FieldError> {
        self.validate_with(obj, old, &[])
    }

    /// [`CrdSchema::validate`] when the caller has already found `preceding` errors (metadata
    /// validation): upstream's blocking check before the CEL rules considers them too. Only the
    /// new errors are returned.
    pub fn validate_with(
        &self,
        obj: &Value,
        old: Option<&Value>,
        preceding: &[FieldError],
    ) -> Vec<FieldError> {
        let v = validate::Validator {
            patterns: &self.patterns,
        };
        let result = v.validate(&self.root.raw, obj, "");
        let mut errs = validate::to_field_errors(None, &result);
        validate::embedded_resources("", &self.root, obj, &mut errs);
        let old_list_ok = old.is_none_or(|o| {
            let mut e = Vec::new();
            validate::list_sets_and_maps("", &self.root, o, &mut e);
            e.is_empty()
        });
        if old_list_ok {
            validate::list_sets_and_maps("", &self.root, obj, &mut errs);
        }
        if self.root.has_rules() {
            if let Some(block) = rules::blocking_error(preceding.iter().chain(errs.iter())) {
                errs.push(block);
            } else {
                rules::run(&self.root, None, obj, old, true, &mut errs);
            }
        }
        errs
    }

    /// Validation of a write to the `/status` subresource: upstream validates only `status`
    /// against its sub-schema (messages then name the path relative to `status`, as upstream's
    /// do: `status.replicas: Invalid value: "string": replicas in body must be of type integer`),
    /// then list types and the CEL rules of the whole object (`statusStrategy.ValidateUpdate`).
    pub fn validate_status(
        &self,
        obj: &Value,
        old: Option<&Value>,
        preceding: &[FieldError],
    ) -> Vec<FieldError> {
        let mut errs = Vec::new();
        if let (Some(status), Some(node)) = (obj.get("status"), self.root.prop("status")) {
            let v = validate::Validator {
                patterns: &self.patterns,
            };
            let result = v.validate(&node.raw, status, "");
            errs = validate::to_field_errors(Some("status"), &result);
        }
        let old_list_ok = old.is_none_or(|o| {
            let mut e = Vec::new();
            validate::list_sets_and_maps("", &self.root, o, &mut e);
            e.is_empty()
        });
        if old_list_ok {
            validate::list_sets_and_maps("", &self.root, obj, &mut errs);
        }
        if self.root.has_rules() {
            if let Some(block) = rules::blocking_error(preceding.iter().chain(errs.iter())) {
                errs.push(block);
            } else {
                rules::run(&self.root, None, obj, old, true, &mut errs);
            }
        }
        errs
    }

    /// The list semantics at a path of field names (list indices are not part of the path: a
    /// segment after a list's name descends into its items). ObjectMeta lists at
    /// `metadata.finalizers` (set), `metadata.ownerReferences` (map on `uid`) and
    /// `metadata.managedFields` (atomic) are answered too. `None` when the path leads nowhere or
    /// does not end at a list.
    pub fn list_type_at(&self, path: &[&str]) -> Option<ListSemantics> {
        match path {
            [.., "metadata", "finalizers"] => return Some(ListSemantics::Set),
            [.., "metadata", "ownerReferences"] => {
                return Some(ListSemantics::Map {
                    keys: vec!["uid".into()],
                });
            }
            [.., "metadata", "managedFields"] => return Some(ListSemantics::Atomic),
            _ => {}
        }
        let n = self.lookup(path)?;
        if n.ty != "array" && n.items.is_none() {
            return None;
        }
        Some(match n.list_type.as_deref() {
            Some("set") => ListSemantics::Set,
            Some("map") if !n.list_map_keys.is_empty() => ListSemantics::Map {
                keys: n.list_map_keys.clone(),
            },
            _ => ListSemantics::Atomic,
        })
    }

    /// The sub-schema (JSON) at a path of field names (as for [`CrdSchema::list_type_at`]), for
    /// `openapi` and `explain`. The empty path gives the whole schema.
    pub fn node_at(&self, path: &[&str]) -> Option<&Value> {
        self.lookup(path).map(|n| &n.raw)
    }

    /// Whether the node at `path`, or an ancestor, keeps unknown fields
    /// (`x-kubernetes-preserve-unknown-fields: true`).
    pub fn preserves_unknown_at(&self, path: &[&str]) -> bool {
        let mut cur = &self.root;
        if cur.preserve_unknown {
            return true;
        }
        for seg in path {
            let next = match cur.prop(seg) {
                Some(n) => n,
                None => match cur.additional.as_deref() {
                    Some(n) => n,
                    None => return cur.preserve_unknown || cur.additional_any,
                },
            };
            cur = match next.items.as_deref() {
                Some(items) if next.ty == "array" => items,
                _ => next,
            };
            if cur.preserve_unknown || next.preserve_unknown {
                return true;
            }
        }
        cur.preserve_unknown
    }

    fn lookup(&self, path: &[&str]) -> Option<&Node> {
        let mut cur = &self.root;
        for (i, seg) in path.iter().enumerate() {
            let next = match cur.prop(seg) {
                Some(n) => n,
                None => cur.additional.as_deref()?,
            };
            cur = if i + 1 < path.len() && next.items.is_some() {
                next.items.as_deref()?
            } else {
                next
            };
        }
        Some(cur)
    }
}

#[cfg(test)]
mod tests;
