//! The write pipeline shared by every verb and by the in-process controllers:
//! decode → prune/unknown fields → defaults → strategy (status, generation) → metadata →
//! validation → managedFields → no-op detection → commit → post-commit hooks.

use std::borrow::Cow;
use std::sync::Arc;

use serde_json::{Value, json};

use crate::builtin;
use crate::crd_object;
use crate::error::{FieldError, FieldErrorType, StatusError, go_quote};
use crate::meta::{self, meta_mut};
use crate::patch::{self, MergeSchema};
use crate::rbac::{RequestAttributes, UserInfo};
use crate::registry::{Kind, ResourceType};
use crate::schema_api::validate_object_meta;
use crate::state::State;
use crate::store::{Commit, CommitError, Gr, Obj};

/// `fieldValidation`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Validation {
    Ignore,
    Warn,
    Strict,
}

/// Parameters of one write.
#[derive(Debug, Clone)]
pub struct WriteParams {
    pub dry_run: bool,
    pub manager: String,
    pub validation: Validation,
    pub force: bool,
    #[allow(dead_code)]
    pub user: UserInfo,
    /// The request's RBAC attributes when RBAC is on (escalation and owner-reference checks).
    pub attrs: Option<RequestAttributes>,
}

impl WriteParams {
    /// An internal write by the simulator's controllers.
    pub fn system(manager: &str) -> Self {
        Self {
            dry_run: false,
            manager: manager.to_string(),
            validation: Validation::Ignore,
            force: false,
            user: crate::auth::system_user(),
            attrs: None,
        }
    }
}

/// The result of a successful write.
#[derive(Debug, Clone)]
pub struct Written {
    pub code: u16,
    /// The object in the request's version.
    pub object: Value,
    pub warnings: Vec<String>,
}

/// How a write arrived; decides error shapes.
#[derive(Debug, Clone, PartialEq)]
pub enum Mode {
    Create,
    Update,
    /// A JSON/merge/strategic patch; the patched document for error messages.
    Patch,
    Apply,
}

/// The patch flavours, from the request Content-Type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PatchType {
    Json,
    Merge,
    Strategic,
    Apply,
}

impl PatchType {
    pub fn from_content_type(ct: &str) -> Option<Self> {
        let essence = ct.split(';').next().unwrap_or("").trim();
        match essence {
            "application/json-patch+json" => Some(Self::Json),
            "application/merge-patch+json" => Some(Self::Merge),
            "application/strategic-merge-patch+json" => Some(Self::Strategic),
            "application/apply-patch+yaml" | "application/apply-patch+cbor" => Some(Self::Apply),
            _ => None,
        }
    }
}

fn unsupported_patch(rt: &ResourceType) -> StatusError {
    let types = if rt.is_custom() {
        "application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml"
    } else {
        "application/json-patch+json, application/merge-patch+json, application/strategic-merge-patch+json, application/apply-patch+yaml"
    };
    StatusError::new(
        415,
        "UnsupportedMediaType",
        format!(
            "the body of the request was in an unknown format - accepted media types include: {types}"
        ),
    )
}

/// The merge schema of a type (SSA ownership and strategic merge patch).
pub fn merge_schema(rt: &ResourceType) -> Box<dyn MergeSchema> {
    match &rt.custom {
        Some(c) => Box::new(patch::OpenApiSchema::new(Arc::clone(&c.raw_schema))),
        None => patch::builtin_merge_schema(&rt.group, &rt.kind),
    }
}

/// The stored form of an object written through `rt`.
pub fn to_storage(rt: &ResourceType, mut v: Value) -> Value {
    match rt.behaviour {
        Kind::EventV1 => builtin::event_v1_to_core(&v),
        Kind::Custom => {
            if let Some(c) = &rt.custom
                && c.storage_version != rt.version
                && let Some(m) = v.as_object_mut()
            {
                m.insert(
                    "apiVersion".into(),
                    json!(format!("{}/{}", rt.group, c.storage_version)),
                );
            }
            v
        }
        _ => v,
    }
}

/// Whether a stored object reads the same through `rt` (no conversion needed).
pub fn view_is_identity(rt: &ResourceType) -> bool {
    match rt.behaviour {
        Kind::EventV1 => false,
        Kind::Custom => rt
            .custom
            .as_ref()
            .is_none_or(|c| c.storage_version == rt.version),
        _ => true,
    }
}

/// A stored object seen through `rt` (its version).
pub fn to_view<'a>(rt: &ResourceType, v: &'a Value) -> Cow<'a, Value> {
    match rt.behaviour {
        Kind::EventV1 => Cow::Owned(builtin::event_core_to_v1(v)),
        Kind::Custom if !view_is_identity(rt) => {
            let mut v = v.clone();
            if let Some(m) = v.as_object_mut() {
                m.insert("apiVersion".into(), json!(rt.api_version()));
            }
            Cow::Owned(v)
        }
        // The common case: the stored form is what the client sees, no copy.
        _ => Cow::Borrowed(v),
    }
}

fn ns_gr() -> Gr {
    Gr::new("", "namespaces")
}

fn crd_gr() -> Gr {
    Gr::new("apiextensions.k8s.io", "customresourcedefinitions")
}

/// NamespaceLifecycle admission for a create in `ns`.
fn check_namespace(st: &State, rt: &ResourceType, ns: &str, name: &str) -> Result<(), StatusError> {
    if !rt.namespaced || ns.is_empty() {
        return Ok(());
    }
    match st.store.get(&ns_gr(), "", ns) {
        None => Err(StatusError::not_found("namespaces", "", ns)),
        Some(n) if meta::is_deleting(&n.value) => Err(StatusError::new(
            403,
            "Forbidden",
            // admission.NewForbidden → apierrors.NewForbidden(resource, name, err).
            format!(
                "{}{} is forbidden: unable to create new content in namespace {ns} because it is being terminated",
                rt.qualified(),
                if name.is_empty() { String::new() } else { format!(" {}", go_quote(name)) }
            ),
        )
        .with_details(json!({
            "name": name,
            "kind": rt.resource,
            "causes": [{"reason": "NamespaceTerminating", "message": format!("namespace {ns} is being terminated"), "field": "metadata.namespace"}],
        }))),
        Some(_) => Ok(()),
    }
}

/// 405 while the CRD of a custom resource is being deleted.
fn check_crd_alive(st: &State, rt: &ResourceType) -> Result<(), StatusError> {
    if let Some(c) = &rt.custom
        && let Some(crd) = st.store.get(&crd_gr(), "", &c.crd_name)
        && meta::is_deleting(&crd.value)
    {
        return Err(StatusError::new(
            405,
            "MethodNotAllowed",
            "create not allowed while custom resource definition is terminating",
        )
        .with_details(json!({})));
    }
    Ok(())
}

/// Check `apiVersion`/`kind` of a body against the endpoint; fill them in when absent for
/// built-in kinds (typed decoding defaults them).
fn check_type(rt: &ResourceType, obj: &mut Value) -> Result<(), StatusError> {
    let Some(m) = obj.as_object_mut() else {
        return Err(StatusError::bad_request(format!(
            "{} in version {} cannot be handled as a {}: json: cannot unmarshal into Go value of type {}",
            rt.kind,
            go_quote(&rt.version),
            rt.kind,
            rt.kind
        )));
    };
    let want_av = rt.api_version();
    let av = m.get("apiVersion").and_then(Value::as_str).unwrap_or("");
    let kind = m.get("kind").and_then(Value::as_str).unwrap_or("");
    if rt.is_custom() {
        if kind.is_empty() {
            return Err(StatusError::bad_request(format!(
                "Object 'Kind' is missing in '{}'",
                serde_json::to_string(&Value::Object(m.clone())).unwrap_or_default()
            )));
        }
        if av.is_empty() {
            return Err(StatusError::bad_request(format!(
                "Object 'apiVersion' is missing in '{}'",
                serde_json::to_string(&Value::Object(m.clone())).unwrap_or_default()
            )));
        }
    }
    if !av.is_empty() && av != want_av {
        return Err(StatusError::bad_request(format!(
            "the API version in the data ({av}) does not match the expected API version ({want_av})"
        )));
    }
    if !kind.is_empty() && kind != rt.kind {
        return Err(StatusError::bad_request(format!(
            "the kind in the data ({kind}) does not match the expected kind ({})",
            rt.kind
        )));
    }
    m.insert("apiVersion".into(), json!(want_av));
    m.insert("kind".into(), json!(rt.kind));
    Ok(())
}

/// Unknown-field reporting per `fieldValidation`: warnings, or the strict error.
fn handle_unknown(
    unknown: Vec<String>,
    p: &WriteParams,
    mode: &Mode,
    rt: &ResourceType,
    patched: &Value,
    warnings: &mut Vec<String>,
) -> Result<(), StatusError> {
    if unknown.is_empty() {
        return Ok(());
    }
    let msgs: Vec<String> = unknown
        .iter()
        .map(|f| format!("unknown field {}", go_quote(f)))
        .collect();
    match p.validation {
        Validation::Ignore => Ok(()),
        Validation::Warn => {
            warnings.extend(msgs);
            Ok(())
        }
        Validation::Strict => {
            let text = format!("strict decoding error: {}", msgs.join(", "));
            match mode {
                // handlers' transformDecodeError names the decoded kind and version.
                Mode::Create | Mode::Update => Err(StatusError::bad_request(format!(
                    "{} in version {} cannot be handled as a {}: {text}",
                    rt.kind,
                    go_quote(&rt.version),
                    rt.kind
                ))),
                Mode::Patch => Err(StatusError::invalid(
                    "",
                    "",
                    "",
                    &[FieldError::new(
                        FieldErrorType::Invalid,
                        "patch",
                        Some(go_quote(
                            &serde_json::to_string(patched).unwrap_or_default(),
                        )),
                        text,
                    )],
                )),
                Mode::Apply => Err(StatusError::bad_request(format!(
                    "failed to create typed patch object ({}, Kind={}): {}",
                    if rt.group.is_empty() {
                        format!("/{}", rt.version)
                    } else {
                        format!("{}/{}", rt.group, rt.version)
                    },
                    rt.kind,
                    unknown
                        .iter()
                        .map(|f| format!(".{f}: field not declared in schema"))
                        .collect::<Vec<_>>()
                        .join(", ")
                ))),
            }
        }
    }
}

/// Decode-time processing of a storage-form object: conversions and defaults, unknown fields
/// (pruned), metadata coercion.
fn decode(
    rt: &ResourceType,
    obj: &mut Value,
    p: &WriteParams,
    mode: &Mode,
    warnings: &mut Vec<String>,
) -> Result<(), StatusError> {
    // Only a strict patch's error quotes the object as it was before decoding.
    let snapshot_for_errors = (matches!(p.validation, Validation::Strict)
        && matches!(mode, Mode::Patch))
    .then(|| obj.clone());
    let mut unknown = Vec::new();
    if let Some(c) = &rt.custom {
        match &c.schema {
            Some(schema) => {
                unknown.extend(schema.prune(obj));
                schema.default(obj);
            }
            None => {
                if let Some(m) = obj.as_object_mut()
                    && let Some(meta) = m.get_mut("metadata")
                {
                    unknown.extend(crate::schema_api::coerce_object_meta(meta, "metadata"));
                }
            }
        }
    } else {
        if rt.behaviour == Kind::Crd {
            crate::schema_api::default_crd(obj);
        }
        builtin::decode_defaults(rt, obj)?;
        let view = to_view(rt, obj);
        let mut typed = view.clone().into_owned();
        match builtin::decode_typed(rt, &mut typed) {
            Ok(u) => {
                if !u.is_empty() {
                    unknown.extend(u);
                    *obj = to_storage(rt, typed);
                }
            }
            Err(e) => {
                return match mode {
                    Mode::Patch => Err(StatusError::invalid(
                        "",
                        "",
                        "",
                        &[FieldError::new(
                            FieldErrorType::Invalid,
                            "patch",
                            Some(go_quote(&serde_json::to_string(&view).unwrap_or_default())),
                            e.message,
                        )],
                    )),
                    _ => Err(e),
                };
            }
        }
        if let Some(m) = obj.as_object_mut()
            && let Some(meta) = m.get_mut("metadata")
        {
            crate::schema_api::coerce_object_meta(meta, "metadata");
        }
    }
    let before = snapshot_for_errors.as_ref().unwrap_or(obj);
    handle_unknown(unknown, p, mode, rt, before, warnings)
}

/// Metadata + kind validation; 422 on errors.
fn validate(
    rt: &ResourceType,
    new: &Value,
    old: Option<&Value>,
    target: Target,
) -> Result<(), StatusError> {
    let empty = json!({});
    let new_meta = new.get("metadata").unwrap_or(&empty);
    let old_meta = old.map(|o| o.get("metadata").unwrap_or(&empty));
    let errs = match rt.behaviour {
        Kind::Crd => match (target, old) {
            (Target::Status, Some(old)) => crate::schema_api::validate_crd_status_update(new, old),
            _ => crate::schema_api::validate_crd(new, old),
        },
        Kind::Custom => {
            let mut errs =
                validate_object_meta(new_meta, builtin::name_rule(rt.behaviour), old_meta);
            if let Some(schema) = rt.custom.as_ref().and_then(|c| c.schema.as_ref()) {
                let mut more = match target {
                    Target::Status => schema.validate_status(new, old, &errs),
                    _ => schema.validate_with(new, old, &errs),
                };
                // CRD validation ratcheting (1.30+): on update, an error about a value that
                // did not change is tolerated, so objects stored under a looser schema can
                // still get unrelated writes.
                if let Some(old) = old {
                    more.retain(|e| {
                        match (field_value(new, &e.field), field_value(old, &e.field)) {
                            (Some(n), Some(o)) => !meta::json_eq(n, o),
                            (None, None) => !field_path_resolvable(&e.field),
                            _ => true,
                        }
                    });
                }
                errs.extend(more);
            }
            errs
        }
        _ => {
            let mut errs =
                validate_object_meta(new_meta, builtin::name_rule(rt.behaviour), old_meta);
            errs.extend(builtin::validate(rt, new, old));
            errs
        }
    };
    if errs.is_empty() {
        Ok(())
    } else {
        Err(StatusError::invalid(
            &rt.kind,
            &rt.group,
            meta::name(new),
            &errs,
        ))
    }
}

/// Split an upstream field path (`spec.items[0].name`, `metadata.labels[app]`) into segments;
/// `None` for what is not a path (`<nil>`).
fn field_segments(field: &str) -> Option<Vec<&str>> {
    if field.is_empty() || field.starts_with('<') {
        return None;
    }
    let mut out = Vec::new();
    for part in field.split('.') {
        let (head, mut rest) = match part.find('[') {
            Some(i) => (&part[..i], &part[i..]),
            None => (part, ""),
        };
        if !head.is_empty() {
            out.push(head);
        }
        while let Some(r) = rest.strip_prefix('[') {
            let end = r.find(']')?;
            out.push(&r[..end]);
            rest = &r[end + 1..];
        }
    }
    Some(out)
}

fn field_path_resolvable(field: &str) -> bool {
    field_segments(field).is_some()
}

/// The value at an upstream field path, if present.
fn field_value<'a>(v: &'a Value, field: &str) -> Option<&'a Value> {
    field_segments(field)?
        .into_iter()
        .try_fold(v, |cur, seg| match cur {
            Value::Object(m) => m.get(seg),
            Value::Array(a) => seg.parse::<usize>().ok().and_then(|i| a.get(i)),
            _ => None,
        })
}

fn ignored_top_level(rt: &ResourceType, sub: Option<&str>, a: &Value, b: &Value) -> Vec<String> {
    match sub {
        Some(s) => {
            let keep = if s == "status" { "status" } else { "spec" };
            let mut keys: Vec<String> = meta::content_keys(a);
            for k in meta::content_keys(b) {
                if !keys.contains(&k) {
                    keys.push(k);
                }
            }
            keys.retain(|k| k != keep);
            keys
        }
        None if rt.status => vec!["status".to_string()],
        None => Vec::new(),
    }
}

fn track(
    rt: &ResourceType,
    old: Option<&Value>,
    new: &mut Value,
    p: &WriteParams,
    sub: Option<&str>,
) {
    let ignored = ignored_top_level(rt, sub, old.unwrap_or(&Value::Null), new);
    let ignored_refs: Vec<&str> = ignored.iter().map(String::as_str).collect();
    let now = meta::now_rfc3339();
    let api_version = rt.api_version();
    let opts = patch::UpdateOptions {
        manager: &p.manager,
        api_version: &api_version,
        subresource: sub,
        time: &now,
        ignored_top_level: &ignored_refs,
    };
    let schema = merge_schema(rt);
    // managedFields are computed in the request's version.
    let old_view = old.map(|o| to_view(rt, o));
    if view_is_identity(rt) {
        patch::track_update(old_view.as_deref(), new, &opts, schema.as_ref());
    } else {
        let mut new_view = to_view(rt, new).into_owned();
        patch::track_update(old_view.as_deref(), &mut new_view, &opts, schema.as_ref());
        *new = to_storage(rt, new_view);
    }
}

/// An apply that creates the object is also a create: upstream's patch handler authorizes
/// `create` on it (`createAuthorizerAttributes` in handlers/patch.go) besides the request's
/// `patch`.
fn authorize_apply_create(st: &State, p: &WriteParams) -> Result<(), StatusError> {
    let (true, Some(attrs)) = (st.cfg.rbac, &p.attrs) else {
        return Ok(());
    };
    let create = RequestAttributes {
        verb: "create".into(),
        ..attrs.clone()
    };
    if crate::rbac::authorize(&st.rbac_snapshot(), &create).allowed() {
        Ok(())
    } else {
        Err(crate::rbac::forbidden(&create))
    }
}

fn rbac_checks(
    st: &State,
    rt: &ResourceType,
    p: &WriteParams,
    old: Option<&Value>,
    new: &Value,
) -> Result<(), StatusError> {
    let Some(attrs) = &p.attrs else {
        return Ok(());
    };
    if !st.cfg.rbac {
        return Ok(());
    }
    let snapshot = st.rbac_snapshot();
    if matches!(
        rt.behaviour,
        Kind::Role | Kind::ClusterRole | Kind::RoleBinding | Kind::ClusterRoleBinding
    ) {
        crate::rbac::check_escalation(&snapshot, attrs, new)?;
    }
    if st.cfg.owner_references_permission_enforcement {
        let types = st.registry.types();
        let resolve = |api_version: &str, kind: &str| -> Option<(String, String)> {
            types
                .lookup_kind(api_version, kind)
                .map(|t| (t.group.clone(), t.resource.clone()))
        };
        crate::rbac::check_owner_references_permission(&snapshot, attrs, old, new, &resolve)?;
    }
    Ok(())
}

// -------------------------------------------------------------------------------------------
// Create

/// POST (and apply-create): `body` is in the request's version.
pub fn create(
    st: &State,
    rt: &Arc<ResourceType>,
    ns: &str,
    body: Value,
    p: &WriteParams,
    mode: Mode,
) -> Result<Written, StatusError> {
    let mut warnings = Vec::new();
    let mut obj = body;
    check_type(rt, &mut obj)?;
    let body_ns = meta::namespace(&obj).to_string();
    if rt.namespaced {
        if !body_ns.is_empty() && body_ns != ns {
            return Err(StatusError::bad_request(
                "the namespace of the provided object does not match the namespace sent on the request",
            ));
        }
        meta_mut(&mut obj).insert("namespace".into(), json!(ns));
    } else {
        meta_mut(&mut obj).remove("namespace");
    }
    let rv = meta::resource_version(&obj).to_string();
    if !rv.is_empty() && mode != Mode::Apply {
        return Err(StatusError::internal(
            "resourceVersion should not be set on objects to be created",
        ));
    }
    let name = meta::name(&obj).to_string();
    check_namespace(st, rt, ns, &name)?;
    check_crd_alive(st, rt)?;

    let mut obj = to_storage(rt, obj);
    decode(rt, &mut obj, p, &mode, &mut warnings)?;
    builtin::prepare_create(rt, &mut obj);
    if rt.behaviour == Kind::Crd {
        crd_object::prepare_create(&mut obj);
        crate::schema_api::prepare_crd_status(&mut obj, None);
    }
    {
        let m = meta_mut(&mut obj);
        m.remove("resourceVersion");
        m.insert("uid".into(), json!(meta::new_uid()));
        m.insert("creationTimestamp".into(), json!(meta::now_rfc3339()));
        m.remove("deletionTimestamp");
        m.remove("deletionGracePeriodSeconds");
        m.remove("selfLink");
        if rt.has_generation() {
            m.insert("generation".into(), json!(1));
        } else {
            m.remove("generation");
        }
    }
    dedupe_owner_references(&mut obj, &mut warnings);
    let generate =
        meta::name(&obj).is_empty() && !meta::str_at(&obj, "/metadata/generateName").is_empty();
    if generate {
        // Validate the prefix (with a placeholder name so the name rule sees the prefix).
        let prefix = meta::str_at(&obj, "/metadata/generateName").to_string();
        let rule = builtin::name_rule(rt.behaviour);
        let errs: Vec<FieldError> = rule
            .check(&prefix, true)
            .into_iter()
            .map(|m| {
                FieldError::new(
                    FieldErrorType::Invalid,
                    "metadata.generateName",
                    Some(go_quote(&prefix)),
                    m,
                )
            })
            .collect();
        if !errs.is_empty() {
            return Err(StatusError::invalid(&rt.kind, &rt.group, "", &errs));
        }
        meta_mut(&mut obj).insert("name".into(), json!(meta::generate_name(&prefix)));
    }
    validate(rt, &obj, None, Target::Main)?;
    rbac_checks(st, rt, p, None, &obj)?;
    if mode != Mode::Apply {
        track(rt, None, &mut obj, p, None);
    }
    if p.dry_run {
        return Ok(Written {
            code: 201,
            object: to_view(rt, &obj).into_owned(),
            warnings,
        });
    }
    let gr = rt.storage.clone();
    let mut attempt = 0;
    loop {
        let name = meta::name(&obj).to_string();
        match st
            .store
            .commit(&gr, ns_of(rt, ns), &name, Commit::Create(obj.clone()))
        {
            Ok(ev) => {
                after_commit(st, rt, &ev.obj);
                return Ok(Written {
                    code: 201,
                    object: to_view(rt, &ev.obj.value).into_owned(),
                    warnings,
                });
            }
            Err(CommitError::Exists) => {
                if generate && attempt < 7 {
                    attempt += 1;
                    let prefix = meta::str_at(&obj, "/metadata/generateName").to_string();
                    meta_mut(&mut obj).insert("name".into(), json!(meta::generate_name(&prefix)));
                    continue;
                }
                if generate {
                    return Err(StatusError::new(
                        409,
                        "AlreadyExists",
                        format!(
                            "{} {} already exists, the server was not able to generate a unique name for the object",
                            rt.qualified(),
                            go_quote(&name)
                        ),
                    )
                    .with_details(json!({"name": name, "group": rt.group, "kind": rt.resource})));
                }
                return Err(StatusError::already_exists(&rt.resource, &rt.group, &name));
            }
            Err(_) => return Err(StatusError::internal("unexpected store state on create")),
        }
    }
}

fn ns_of<'a>(rt: &ResourceType, ns: &'a str) -> &'a str {
    if rt.namespaced { ns } else { "" }
}

fn dedupe_owner_references(obj: &mut Value, warnings: &mut Vec<String>) {
    let Some(refs) = obj
        .pointer_mut("/metadata/ownerReferences")
        .and_then(Value::as_array_mut)
    else {
        return;
    };
    let mut seen: Vec<String> = Vec::new();
    let mut out = Vec::new();
    for r in refs.drain(..) {
        let uid = r
            .get("uid")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        if !uid.is_empty() && seen.contains(&uid) {
            warnings.push(format!(
                ".metadata.ownerReferences contains duplicate entries; API server dedups owner references in 1.20+, and may reject such requests as early as 1.24; please fix your requests; duplicate UID(s) observed: {uid}"
            ));
            continue;
        }
        seen.push(uid);
        out.push(r);
    }
    *refs = out;
}

// -------------------------------------------------------------------------------------------
// Update / patch

/// Which part of the object a write addresses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    Main,
    Status,
    /// `namespaces/<n>/finalize`: only `spec.finalizers` changes.
    Finalize,
}

/// The update loop: `compute` turns the current object (request version) into the new one;
/// the rest of the pipeline runs, then an optimistic commit, retried on a concurrent change.
#[allow(clippy::too_many_arguments)]
pub fn update_with<F>(
    st: &State,
    rt: &Arc<ResourceType>,
    ns: &str,
    name: &str,
    target: Target,
    p: &WriteParams,
    mode: Mode,
    mut compute: F,
) -> Result<Written, StatusError>
where
    F: FnMut(&Value) -> Result<Value, StatusError>,
{
    let gr = rt.storage.clone();
    let ns = ns_of(rt, ns);
    for _ in 0..16 {
        let mut warnings = Vec::new();
        let Some(cur) = st.store.get(&gr, ns, name) else {
            return Err(StatusError::not_found(&rt.resource, &rt.group, name));
        };
        let view = to_view(rt, &cur.value);
        let mut new_view = compute(&view)?;
        check_type(rt, &mut new_view)?;
        let body_name = meta::name(&new_view).to_string();
        if body_name.is_empty() && mode == Mode::Update {
            meta_mut(&mut new_view).insert("name".into(), json!(name));
        } else if body_name != name {
            return Err(StatusError::bad_request(format!(
                "the name of the object ({body_name}) does not match the name on the URL ({name})"
            )));
        }
        if rt.namespaced {
            let bns = meta::namespace(&new_view).to_string();
            if !bns.is_empty() && bns != ns {
                return Err(StatusError::bad_request(
                    "the namespace of the provided object does not match the namespace sent on the request",
                ));
            }
            meta_mut(&mut new_view).insert("namespace".into(), json!(ns));
        } else {
            meta_mut(&mut new_view).remove("namespace");
        }
        // resourceVersion precondition.
        let rv = meta::resource_version(&new_view).to_string();
        if rv.is_empty() {
            if mode == Mode::Update && !rt.allow_unconditional_update() {
                return Err(StatusError::invalid(
                    &rt.resource,
                    &rt.group,
                    name,
                    &[FieldError::new(
                        FieldErrorType::Invalid,
                        "metadata.resourceVersion",
                        Some("0x0".into()),
                        "must be specified for an update",
                    )],
                ));
            }
        } else if rv != cur.rv.to_string() {
            return Err(StatusError::conflict(&rt.resource, &rt.group, name));
        }
        let mut new = to_storage(rt, new_view);
        decode(rt, &mut new, p, &mode, &mut warnings)?;
        let mut bump = false;
        match target {
            Target::Status => new = builtin::status_update(&cur.value, &new),
            Target::Finalize => {
                let f = new.pointer("/spec/finalizers").cloned();
                let mut out = builtin::status_update(&cur.value, &new);
                if let Some(st) = cur.value.get("status")
                    && let Some(m) = out.as_object_mut()
                {
                    m.insert("status".into(), st.clone());
                }
                if let Some(m) = out.as_object_mut() {
                    let spec = m.entry("spec").or_insert_with(|| json!({}));
                    if let Some(spec) = spec.as_object_mut() {
                        match f {
                            Some(f) if f.as_array().is_some_and(|a| !a.is_empty()) => {
                                spec.insert("finalizers".into(), f);
                            }
                            _ => {
                                spec.remove("finalizers");
                            }
                        }
                    }
                }
                new = out;
            }
            Target::Main => bump = builtin::prepare_update(rt, &cur.value, &mut new),
        }
        {
            let old_meta = cur.value.get("metadata").cloned().unwrap_or(json!({}));
            let m = meta_mut(&mut new);
            if m.get("uid")
                .and_then(Value::as_str)
                .is_none_or(str::is_empty)
                && let Some(u) = old_meta.get("uid")
            {
                m.insert("uid".into(), u.clone());
            }
            for f in ["creationTimestamp", "deletionTimestamp"] {
                match old_meta.get(f) {
                    Some(v) if !v.is_null() => {
                        m.insert(f.into(), v.clone());
                    }
                    _ => {
                        if f == "creationTimestamp" {
                            m.remove(f);
                        }
                    }
                }
            }
            if let Some(g) = old_meta.get("deletionGracePeriodSeconds")
                && m.get("deletionGracePeriodSeconds")
                    .is_none_or(Value::is_null)
            {
                m.insert("deletionGracePeriodSeconds".into(), g.clone());
            }
            m.remove("selfLink");
            match old_meta.get("generation").and_then(Value::as_i64) {
                Some(g) if rt.has_generation() => {
                    m.insert("generation".into(), json!(if bump { g + 1 } else { g }));
                }
                _ => {
                    m.remove("generation");
                }
            }
            m.insert("resourceVersion".into(), json!(cur.rv.to_string()));
        }
        dedupe_owner_references(&mut new, &mut warnings);
        if rt.behaviour == Kind::Crd && target == Target::Main {
            crate::schema_api::prepare_crd_status(&mut new, Some(&cur.value));
        }
        validate(rt, &new, Some(&cur.value), target)?;
        rbac_checks(st, rt, p, Some(&cur.value), &new)?;
        if mode != Mode::Apply {
            let sub = match target {
                Target::Status => Some("status"),
                Target::Finalize => Some("finalize"),
                Target::Main => None,
            };
            track(rt, Some(&cur.value), &mut new, p, sub);
        }
        if meta::json_eq(&new, &cur.value) {
            return Ok(Written {
                code: 200,
                object: view.into_owned(),
                warnings,
            });
        }
        let delete_now = target != Target::Status && finalized(rt, &new);
        if p.dry_run {
            return Ok(Written {
                code: 200,
                object: to_view(rt, &new).into_owned(),
                warnings,
            });
        }
        let commit = if delete_now {
            Commit::Delete {
                expect_rv: cur.rv,
                value: new,
            }
        } else {
            Commit::Update {
                expect_rv: cur.rv,
                value: new,
            }
        };
        match st.store.commit(&gr, ns, name, commit) {
            Ok(ev) => {
                after_commit(st, rt, &ev.obj);
                return Ok(Written {
                    code: 200,
                    object: to_view(rt, &ev.obj.value).into_owned(),
                    warnings,
                });
            }
            Err(CommitError::Stale(_)) => continue,
            Err(CommitError::NotFound) => {
                return Err(StatusError::not_found(&rt.resource, &rt.group, name));
            }
            Err(CommitError::Exists) => {
                return Err(StatusError::internal("unexpected store state on update"));
            }
        }
    }
    Err(StatusError::conflict(&rt.resource, &rt.group, name))
}

/// Whether an object being deleted has no finalizers left (it must go now).
fn finalized(rt: &ResourceType, v: &Value) -> bool {
    if !meta::is_deleting(v) || !meta::finalizers(v).is_empty() {
        return false;
    }
    // A graceful deletion still running is finished by the kubelet, not by the last finalizer.
    if v.pointer("/metadata/deletionGracePeriodSeconds")
        .and_then(Value::as_i64)
        .is_some_and(|g| g > 0)
    {
        return false;
    }
    if rt.behaviour == Kind::Namespace {
        return v
            .pointer("/spec/finalizers")
            .and_then(Value::as_array)
            .is_none_or(Vec::is_empty);
    }
    true
}

/// PUT.
#[allow(clippy::too_many_arguments)]
pub fn update(
    st: &State,
    rt: &Arc<ResourceType>,
    ns: &str,
    name: &str,
    target: Target,
    body: Value,
    p: &WriteParams,
) -> Result<Written, StatusError> {
    update_with(st, rt, ns, name, target, p, Mode::Update, |_| {
        Ok(body.clone())
    })
}

/// Validate patch options (fieldManager for apply, force only with apply).
pub fn check_patch_options(
    pt: PatchType,
    p: &WriteParams,
    field_manager_given: bool,
) -> Result<(), StatusError> {
    let mut errs = Vec::new();
    if pt == PatchType::Apply {
        if !field_manager_given {
            errs.push(FieldError::required(
                "fieldManager",
                "is required for apply patch",
            ));
        }
    } else if p.force {
        errs.push(FieldError::forbidden(
            "force",
            "may not be specified for non-apply patch",
        ));
    }
    if errs.is_empty() {
        Ok(())
    } else {
        Err(StatusError::invalid(
            "PatchOptions",
            "meta.k8s.io",
            "",
            &errs,
        ))
    }
}

/// PATCH of any type; apply creates the object when absent.
#[allow(clippy::too_many_arguments)]
pub fn patch(
    st: &State,
    rt: &Arc<ResourceType>,
    ns: &str,
    name: &str,
    target: Target,
    pt: PatchType,
    body: &[u8],
    p: &WriteParams,
) -> Result<Written, StatusError> {
    if pt == PatchType::Strategic && rt.is_custom() {
        return Err(unsupported_patch(rt));
    }
    let schema = merge_schema(rt);
    match pt {
        PatchType::Apply => {
            let applied = parse_apply_body(body)?;
            let gr = rt.storage.clone();
            if st.store.get(&gr, ns_of(rt, ns), name).is_none() {
                if target != Target::Main {
                    return Err(StatusError::not_found(&rt.resource, &rt.group, name));
                }
                let body_name = meta::name(&applied).to_string();
                if body_name != name {
                    return Err(StatusError::bad_request(format!(
                        "the name of the object ({body_name}) does not match the name on the URL ({name})"
                    )));
                }
                authorize_apply_create(st, p)?;
                let merged = apply_merge(rt, None, &applied, p, target, schema.as_ref())?;
                match create(st, rt, ns, merged, p, Mode::Apply) {
                    Err(e) if e.reason == "AlreadyExists" => {} // raced: apply as update
                    r => return r,
                }
            }
            update_with(st, rt, ns, name, target, p, Mode::Apply, |view| {
                apply_merge(rt, Some(view), &applied, p, target, schema.as_ref())
            })
        }
        PatchType::Json => update_with(st, rt, ns, name, target, p, Mode::Patch, |view| {
            patch::json_patch(view, body).map_err(|e| e.to_status())
        }),
        PatchType::Merge => update_with(st, rt, ns, name, target, p, Mode::Patch, |view| {
            patch::merge_patch_bytes(view, body).map_err(|e| e.to_status())
        }),
        PatchType::Strategic => {
            let patch_doc: Value = serde_json::from_slice(body)
                .map_err(|e| StatusError::bad_request(e.to_string()))?;
            update_with(st, rt, ns, name, target, p, Mode::Patch, |view| {
                patch::strategic_merge_patch(view, &patch_doc, schema.as_ref())
                    .map_err(|e| e.to_status())
            })
        }
    }
}

fn parse_apply_body(body: &[u8]) -> Result<Value, StatusError> {
    if let Ok(v) = serde_json::from_slice::<Value>(body) {
        return Ok(v);
    }
    let text = std::str::from_utf8(body)
        .map_err(|e| StatusError::bad_request(format!("error decoding YAML: {e}")))?;
    crate::yaml::from_str(text)
        .map_err(|e| StatusError::bad_request(format!("error decoding YAML: {e}")))
}

fn apply_merge(
    rt: &ResourceType,
    live: Option<&Value>,
    applied: &Value,
    p: &WriteParams,
    target: Target,
    schema: &dyn MergeSchema,
) -> Result<Value, StatusError> {
    let sub = match target {
        Target::Status => Some("status"),
        Target::Finalize => Some("finalize"),
        Target::Main => None,
    };
    let ignored = ignored_top_level(rt, sub, live.unwrap_or(&Value::Null), applied);
    let ignored_refs: Vec<&str> = ignored.iter().map(String::as_str).collect();
    let now = meta::now_rfc3339();
    let api_version = rt.api_version();
    let opts = patch::ApplyOptions {
        manager: &p.manager,
        force: p.force,
        api_version: &api_version,
        subresource: sub,
        time: &now,
        ignored_top_level: &ignored_refs,
    };
    let mut merged = patch::apply(live, applied, &opts, schema)?;
    // The applied resourceVersion is a precondition; otherwise the live one stands.
    let applied_rv = meta::resource_version(applied).to_string();
    let m = meta_mut(&mut merged);
    if applied_rv.is_empty() {
        match live.map(meta::resource_version) {
            Some(rv) if !rv.is_empty() => {
                m.insert("resourceVersion".into(), json!(rv));
            }
            _ => {
                m.remove("resourceVersion");
            }
        }
    } else {
        m.insert("resourceVersion".into(), json!(applied_rv));
    }
    Ok(merged)
}

// -------------------------------------------------------------------------------------------
// Delete

/// `DeleteOptions`.
#[derive(Debug, Clone, Default)]
pub struct DeleteOptions {
    pub precondition_uid: Option<String>,
    pub precondition_rv: Option<String>,
    pub propagation: Option<String>,
    pub orphan_dependents: Option<bool>,
    pub dry_run: bool,
    pub grace_period_seconds: Option<i64>,
}

impl DeleteOptions {
    /// From a JSON body (may be empty) and the query string.
    pub fn parse(body: &[u8], query: &crate::request::Query) -> Result<Self, StatusError> {
        let mut o = DeleteOptions::default();
        let mut dry: Vec<String> = query.all("dryRun").iter().map(|s| s.to_string()).collect();
        let trimmed = body.iter().all(u8::is_ascii_whitespace);
        if !trimmed {
            let v: Value = serde_json::from_slice(body).map_err(|e| {
                StatusError::bad_request(format!(
                    "couldn't get version/kind; json parse error: {e}"
                ))
            })?;
            let s = |p: &str| v.pointer(p).and_then(Value::as_str).map(str::to_string);
            o.precondition_uid = s("/preconditions/uid");
            o.precondition_rv = s("/preconditions/resourceVersion");
            o.propagation = s("/propagationPolicy");
            o.orphan_dependents = v.get("orphanDependents").and_then(Value::as_bool);
            o.grace_period_seconds = v.get("gracePeriodSeconds").and_then(Value::as_i64);
            if let Some(d) = v.get("dryRun").and_then(Value::as_array) {
                dry.extend(d.iter().filter_map(|x| x.as_str().map(str::to_string)));
            }
        } else {
            o.propagation = query.value("propagationPolicy").map(str::to_string);
            o.orphan_dependents = query.get("orphanDependents").map(|v| v == "true");
            o.grace_period_seconds = query.get("gracePeriodSeconds").and_then(|v| v.parse().ok());
        }
        let mut errs = Vec::new();
        if o.orphan_dependents.is_some()
            && let Some(pp) = &o.propagation
        {
            errs.push(FieldError::new(
                FieldErrorType::Invalid,
                "propagationPolicy",
                Some(go_quote(pp)),
                "orphanDependents and deletionPropagation cannot be both set",
            ));
        }
        if let Some(pp) = &o.propagation
            && !matches!(pp.as_str(), "Foreground" | "Background" | "Orphan")
        {
            errs.push(FieldError::new(
                FieldErrorType::NotSupported,
                "propagationPolicy",
                Some(go_quote(pp)),
                "supported values: \"Foreground\", \"Background\", \"Orphan\", \"nil\"",
            ));
        }
        errs.extend(dry_run_errors(&dry));
        if !errs.is_empty() {
            return Err(StatusError::invalid(
                "DeleteOptions",
                "meta.k8s.io",
                "",
                &errs,
            ));
        }
        o.dry_run = dry.iter().any(|d| d == "All");
        Ok(o)
    }
}

/// `ValidateDryRun`.
pub fn dry_run_errors(values: &[String]) -> Vec<FieldError> {
    values
        .iter()
        .filter(|v| v.as_str() != "All")
        .map(|v| {
            FieldError::new(
                FieldErrorType::NotSupported,
                "dryRun",
                Some(go_quote(v)),
                "supported values: \"All\"",
            )
        })
        .collect()
}

fn should_orphan(o: &DeleteOptions, finalizers: &[String]) -> bool {
    if let Some(pp) = &o.propagation {
        return pp == "Orphan";
    }
    if let Some(od) = o.orphan_dependents {
        return od;
    }
    for f in finalizers {
        match f.as_str() {
            "orphan" => return true,
            "foregroundDeletion" => return false,
            _ => {}
        }
    }
    false
}

fn should_foreground(o: &DeleteOptions, finalizers: &[String]) -> bool {
    if let Some(pp) = &o.propagation {
        return pp == "Foreground";
    }
    if o.orphan_dependents.is_some() {
        return false;
    }
    finalizers.iter().any(|f| f == "foregroundDeletion")
}

/// The `Status` an immediate delete answers with.
pub fn delete_status(rt: &ResourceType, name: &str, uid: &str) -> Value {
    let mut details = json!({"name": name, "kind": rt.resource, "uid": uid});
    if !rt.group.is_empty() {
        details["group"] = json!(rt.group);
    }
    json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "details": details})
}

/// DELETE of one object. Returns the code and the body (object or Status).
pub fn delete(
    st: &State,
    rt: &Arc<ResourceType>,
    ns: &str,
    name: &str,
    o: &DeleteOptions,
) -> Result<(u16, Value), StatusError> {
    let gr = rt.storage.clone();
    let ns = ns_of(rt, ns);
    for _ in 0..16 {
        let Some(cur) = st.store.get(&gr, ns, name) else {
            return Err(StatusError::not_found(&rt.resource, &rt.group, name));
        };
        if let Some(uid) = &o.precondition_uid
            && uid != cur.uid()
        {
            return Err(precondition_failed(
                rt,
                ns,
                name,
                &format!(
                    "Precondition failed: UID in precondition: {uid}, UID in object meta: {}",
                    cur.uid()
                ),
            ));
        }
        if let Some(rv) = &o.precondition_rv
            && *rv != cur.rv.to_string()
        {
            return Err(precondition_failed(
                rt,
                ns,
                name,
                &format!(
                    "Precondition failed: ResourceVersion in precondition: {rv}, ResourceVersion in object meta: {}",
                    cur.rv
                ),
            ));
        }
        // Graceful deletion (Pods): the kubelet finishes it after the grace period.
        if let Some(grace) = builtin::deletion_grace(rt, &cur.value, o.grace_period_seconds) {
            let current = cur
                .value
                .pointer("/metadata/deletionGracePeriodSeconds")
                .and_then(Value::as_i64);
            let shorten = current.is_none_or(|c| grace < c);
            if grace > 0 || meta::is_deleting(&cur.value) {
                if !shorten || o.dry_run {
                    return Ok((200, to_view(rt, &cur.value).into_owned()));
                }
                let mut new = cur.value.clone();
                let m = meta_mut(&mut new);
                let at = jiff::Timestamp::now()
                    .checked_add(jiff::SignedDuration::from_secs(grace))
                    .unwrap_or_else(|_| jiff::Timestamp::now());
                m.insert("deletionTimestamp".into(), json!(meta::format_time(at)));
                m.insert("deletionGracePeriodSeconds".into(), json!(grace));
                let finished = grace == 0 && meta::finalizers(&new).is_empty();
                let commit = if finished {
                    Commit::Delete {
                        expect_rv: cur.rv,
                        value: new,
                    }
                } else {
                    Commit::Update {
                        expect_rv: cur.rv,
                        value: new,
                    }
                };
                match st.store.commit(&gr, ns, name, commit) {
                    Ok(ev) => {
                        after_commit(st, rt, &ev.obj);
                        return Ok((200, to_view(rt, &ev.obj.value).into_owned()));
                    }
                    Err(CommitError::Stale(_)) => continue,
                    Err(_) => return Err(StatusError::not_found(&rt.resource, &rt.group, name)),
                }
            }
        }
        let mut new = cur.value.clone();
        let old_f = meta::finalizers(&cur.value);
        let orphan = should_orphan(o, &old_f);
        let foreground = should_foreground(o, &old_f);
        let mut f: Vec<String> = old_f
            .iter()
            .filter(|x| *x != "orphan" && *x != "foregroundDeletion")
            .cloned()
            .collect();
        if orphan {
            f.push("orphan".into());
        }
        if foreground {
            f.push("foregroundDeletion".into());
        }
        if rt.behaviour == Kind::Crd && !f.iter().any(|x| x == crd_object::CLEANUP_FINALIZER) {
            f.push(crd_object::CLEANUP_FINALIZER.to_string());
        }
        meta::set_finalizers(&mut new, f.clone());
        let spec_finalizers = rt.behaviour == Kind::Namespace
            && new
                .pointer("/spec/finalizers")
                .and_then(Value::as_array)
                .is_some_and(|a| !a.is_empty());
        if !f.is_empty() || spec_finalizers {
            if !meta::is_deleting(&cur.value) {
                let m = meta_mut(&mut new);
                m.insert("deletionTimestamp".into(), json!(meta::now_rfc3339()));
                m.insert("deletionGracePeriodSeconds".into(), json!(0));
                if let Some(g) = m.get("generation").and_then(Value::as_i64)
                    && g > 0
                {
                    m.insert("generation".into(), json!(g + 1));
                }
                if rt.behaviour == Kind::Namespace
                    && let Some(obj) = new.as_object_mut()
                {
                    obj.insert("status".into(), json!({"phase": "Terminating"}));
                }
                if rt.behaviour == Kind::Crd {
                    crd_object::mark_terminating(&mut new, false);
                }
            }
            let code = if o.orphan_dependents == Some(false) {
                202
            } else {
                200
            };
            if meta::json_eq(&new, &cur.value) {
                return Ok((code, to_view(rt, &cur.value).into_owned()));
            }
            if o.dry_run {
                return Ok((code, to_view(rt, &new).into_owned()));
            }
            match st.store.commit(
                &gr,
                ns,
                name,
                Commit::Update {
                    expect_rv: cur.rv,
                    value: new,
                },
            ) {
                Ok(ev) => {
                    after_commit(st, rt, &ev.obj);
                    return Ok((code, to_view(rt, &ev.obj.value).into_owned()));
                }
                Err(CommitError::Stale(_)) => continue,
                Err(_) => return Err(StatusError::not_found(&rt.resource, &rt.group, name)),
            }
        }
        if o.dry_run {
            return Ok((200, immediate_delete_body(rt, &cur.value, name)));
        }
        match st.store.commit(
            &gr,
            ns,
            name,
            Commit::Delete {
                expect_rv: cur.rv,
                value: cur.value.clone(),
            },
        ) {
            Ok(ev) => {
                after_commit(st, rt, &ev.obj);
                return Ok((200, immediate_delete_body(rt, &ev.obj.value, name)));
            }
            Err(CommitError::Stale(_)) => continue,
            Err(_) => return Err(StatusError::not_found(&rt.resource, &rt.group, name)),
        }
    }
    Err(StatusError::conflict(&rt.resource, &rt.group, name))
}

fn immediate_delete_body(rt: &ResourceType, obj: &Value, name: &str) -> Value {
    if rt.returns_deleted_object() {
        to_view(rt, obj).into_owned()
    } else {
        delete_status(rt, name, meta::uid(obj))
    }
}

/// A failed delete precondition: upstream's storage `InvalidObj` error, translated to a
/// Conflict by `InterpretDeleteError`, keeps the `StorageError` text with the etcd key.
fn precondition_failed(rt: &ResourceType, ns: &str, name: &str, msg: &str) -> StatusError {
    let mut key = String::from("/registry/");
    if rt.custom.is_some() || rt.group == "apiextensions.k8s.io" {
        key.push_str(&rt.group);
        key.push('/');
    }
    key.push_str(&rt.resource);
    if !ns.is_empty() {
        key.push('/');
        key.push_str(ns);
    }
    key.push('/');
    key.push_str(name);
    StatusError::new(
        409,
        "Conflict",
        format!(
            "Operation cannot be fulfilled on {} {}: StorageError: invalid object, Code: 4, Key: {key}, ResourceVersion: 0, AdditionalErrorMsg: {msg}",
            rt.qualified(),
            go_quote(name)
        ),
    )
    .with_details({
        let mut d = json!({"name": name, "kind": rt.resource});
        if !rt.group.is_empty() {
            d["group"] = json!(rt.group);
        }
        d
    })
}

// -------------------------------------------------------------------------------------------
// Hooks

/// After any committed write of `rt`: RBAC snapshot invalidation, then the installed
/// [`CommitHook`](crate::state::CommitHook)s (the CRD controller).
pub fn after_commit(st: &State, rt: &ResourceType, obj: &Arc<Obj>) {
    if matches!(
        rt.behaviour,
        Kind::Role | Kind::ClusterRole | Kind::RoleBinding | Kind::ClusterRoleBinding
    ) {
        st.rbac_changed();
    }
    for hook in &st.commit_hooks {
        hook.after_commit(st, rt, obj);
    }
}

/// Convenience for controllers: mutate one stored object through the update pipeline.
pub fn internal_update<F>(
    st: &State,
    rt: &Arc<ResourceType>,
    ns: &str,
    name: &str,
    target: Target,
    manager: &str,
    mut f: F,
) -> Result<Written, StatusError>
where
    F: FnMut(&mut Value),
{
    let p = WriteParams::system(manager);
    update_with(st, rt, ns, name, target, &p, Mode::Update, |view| {
        let mut v = view.clone();
        f(&mut v);
        Ok(v)
    })
}
