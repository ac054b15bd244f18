//! RBAC: request attributes, rule evaluation, the upstream Forbidden message, the bootstrap
//! policy, the SubjectAccessReview family, escalation checks and the
//! OwnerReferencesPermissionEnforcement (`blockOwnerDeletion`) check. Pure: the core hands in a
//! [`RbacSnapshot`] of the stored RBAC objects and gets decisions back.
//!
//! Sources: apiserver@v0.32.4 `pkg/endpoints/request/requestinfo.go`,
//! `pkg/endpoints/handlers/responsewriters/errors.go`; kubernetes `plugin/pkg/auth/authorizer/rbac/rbac.go`,
//! `pkg/registry/rbac/validation/rule.go`, `pkg/apis/rbac/v1/evaluation_helpers.go`,
//! `plugin/pkg/auth/authorizer/rbac/bootstrappolicy/policy.go`,
//! `plugin/pkg/admission/gc/gc_admission.go`.

use std::collections::BTreeMap;

use serde_json::{Value, json};

use crate::error::{StatusError, go_quote};

mod attributes;
mod bootstrap;
mod escalation;
mod review;

pub use attributes::request_attributes;
pub use bootstrap::{bootstrap_cluster_role_bindings, bootstrap_cluster_roles, bootstrap_policy};
pub use escalation::{ResolveOwner, check_escalation, check_owner_references_permission};
pub use review::evaluate_access_review;

/// The authenticated user (`user.Info`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct UserInfo {
    pub name: String,
    pub uid: String,
    pub groups: Vec<String>,
}

impl UserInfo {
    pub fn new(name: impl Into<String>, groups: &[&str]) -> Self {
        Self {
            name: name.into(),
            uid: String::new(),
            groups: groups.iter().map(|g| g.to_string()).collect(),
        }
    }

    /// `system:anonymous` in `system:unauthenticated`.
    pub fn anonymous() -> Self {
        Self::new("system:anonymous", &["system:unauthenticated"])
    }
}

/// The identity of a ServiceAccount token: `system:serviceaccount:<ns>:<name>` in
/// `system:serviceaccounts`, `system:serviceaccounts:<ns>` and `system:authenticated`.
pub fn service_account_user(namespace: &str, name: &str) -> UserInfo {
    UserInfo {
        name: format!("system:serviceaccount:{namespace}:{name}"),
        uid: String::new(),
        groups: vec![
            "system:serviceaccounts".to_string(),
            format!("system:serviceaccounts:{namespace}"),
            "system:authenticated".to_string(),
        ],
    }
}

/// `authorizer.Attributes` of one request.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RequestAttributes {
    pub user: UserInfo,
    pub verb: String,
    pub resource_request: bool,
    pub api_group: String,
    pub api_version: String,
    pub resource: String,
    pub subresource: String,
    pub name: String,
    pub namespace: String,
    pub path: String,
}

/// One `PolicyRule`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Rule {
    pub verbs: Vec<String>,
    pub api_groups: Vec<String>,
    pub resources: Vec<String>,
    pub resource_names: Vec<String>,
    pub non_resource_urls: Vec<String>,
}

fn strings(v: Option<&Value>) -> Vec<String> {
    v.and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|s| s.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

impl Rule {
    pub fn from_value(v: &Value) -> Self {
        Self {
            verbs: strings(v.get("verbs")),
            api_groups: strings(v.get("apiGroups")),
            resources: strings(v.get("resources")),
            resource_names: strings(v.get("resourceNames")),
            non_resource_urls: strings(v.get("nonResourceURLs")),
        }
    }

    /// The JSON form, fields in `PolicyRule` order, empty lists omitted.
    pub fn to_value(&self) -> Value {
        let mut m = serde_json::Map::new();
        for (k, v) in [
            ("verbs", &self.verbs),
            ("apiGroups", &self.api_groups),
            ("resources", &self.resources),
            ("resourceNames", &self.resource_names),
            ("nonResourceURLs", &self.non_resource_urls),
        ] {
            if !v.is_empty() || k == "verbs" {
                m.insert(k.to_string(), json!(v));
            }
        }
        Value::Object(m)
    }

    /// `RuleAllows` (evaluation_helpers.go).
    pub fn allows(&self, a: &RequestAttributes) -> bool {
        let has = |l: &[String], s: &str| l.iter().any(|x| x == s);
        let verb = has(&self.verbs, "*") || has(&self.verbs, &a.verb);
        if !a.resource_request {
            return verb
                && self.non_resource_urls.iter().any(|u| {
                    u == "*"
                        || *u == a.path
                        || (u.ends_with('*') && a.path.starts_with(u.trim_end_matches('*')))
                });
        }
        let combined = if a.subresource.is_empty() {
            a.resource.clone()
        } else {
            format!("{}/{}", a.resource, a.subresource)
        };
        let group = has(&self.api_groups, "*") || has(&self.api_groups, &a.api_group);
        let resource = self.resources.iter().any(|r| {
            r == "*"
                || *r == combined
                || (!a.subresource.is_empty()
                    && r.len() == a.subresource.len() + 2
                    && r.starts_with("*/")
                    && r.ends_with(a.subresource.as_str()))
        });
        let name = self.resource_names.is_empty() || has(&self.resource_names, &a.name);
        verb && group && resource && name
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Subject {
    kind: String,
    name: String,
    namespace: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Binding {
    name: String,
    namespace: String,
    role_kind: String,
    role_name: String,
    subjects: Vec<Subject>,
}

impl Binding {
    fn from_value(v: &Value) -> Self {
        let s = |p: &str| {
            v.pointer(p)
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string()
        };
        Self {
            name: s("/metadata/name"),
            namespace: s("/metadata/namespace"),
            role_kind: s("/roleRef/kind"),
            role_name: s("/roleRef/name"),
            subjects: v
                .get("subjects")
                .and_then(Value::as_array)
                .map(|a| {
                    a.iter()
                        .map(|x| Subject {
                            kind: x.get("kind").and_then(Value::as_str).unwrap_or("").into(),
                            name: x.get("name").and_then(Value::as_str).unwrap_or("").into(),
                            namespace: x
                                .get("namespace")
                                .and_then(Value::as_str)
                                .unwrap_or("")
                                .into(),
                        })
                        .collect()
                })
                .unwrap_or_default(),
        }
    }

    /// `appliesTo`: the index of the first subject matching `user`.
    fn applies_to(&self, user: &UserInfo, namespace: &str) -> Option<usize> {
        self.subjects.iter().position(|s| match s.kind.as_str() {
            "User" => user.name == s.name,
            "Group" => user.groups.contains(&s.name),
            "ServiceAccount" => {
                let ns = if s.namespace.is_empty() {
                    namespace
                } else {
                    &s.namespace
                };
                !ns.is_empty() && user.name == format!("system:serviceaccount:{ns}:{}", s.name)
            }
            _ => false,
        })
    }
}

/// `describeSubject`.
fn describe_subject(s: &Subject, binding_namespace: &str) -> String {
    match s.kind.as_str() {
        "ServiceAccount" => {
            let ns = if s.namespace.is_empty() {
                binding_namespace
            } else {
                &s.namespace
            };
            format!("{} {}", s.kind, go_quote(&format!("{}/{ns}", s.name)))
        }
        _ => format!("{} {}", s.kind, go_quote(&s.name)),
    }
}

/// A point-in-time view of the RBAC objects, with ClusterRole aggregation resolved.
#[derive(Debug, Clone, Default)]
pub struct RbacSnapshot {
    roles: BTreeMap<(String, String), Vec<Rule>>,
    cluster_roles: BTreeMap<String, Vec<Rule>>,
    role_bindings: Vec<Binding>,
    cluster_role_bindings: Vec<Binding>,
}

impl RbacSnapshot {
    pub fn from_objects(
        roles: &[Value],
        cluster_roles: &[Value],
        role_bindings: &[Value],
        cluster_role_bindings: &[Value],
    ) -> Self {
        let rules_of = |v: &Value| -> Vec<Rule> {
            v.get("rules")
                .and_then(Value::as_array)
                .map(|a| a.iter().map(Rule::from_value).collect())
                .unwrap_or_default()
        };
        let name_of = |v: &Value, p: &str| -> String {
            v.pointer(p)
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string()
        };
        let mut s = Self::default();
        for r in roles {
            s.roles.insert(
                (
                    name_of(r, "/metadata/namespace"),
                    name_of(r, "/metadata/name"),
                ),
                rules_of(r),
            );
        }
        for r in aggregate_cluster_roles(cluster_roles) {
            s.cluster_roles
                .insert(name_of(&r, "/metadata/name"), rules_of(&r));
        }
        s.role_bindings = role_bindings.iter().map(Binding::from_value).collect();
        s.role_bindings
            .sort_by(|a, b| (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name)));
        s.cluster_role_bindings = cluster_role_bindings
            .iter()
            .map(Binding::from_value)
            .collect();
        s.cluster_role_bindings.sort_by(|a, b| a.name.cmp(&b.name));
        s
    }

    /// `GetRoleReferenceRules`; the error text is the lister's NotFound.
    fn role_ref_rules(&self, b: &Binding, namespace: &str) -> Result<&[Rule], String> {
        match b.role_kind.as_str() {
            "Role" => self
                .roles
                .get(&(namespace.to_string(), b.role_name.clone()))
                .map(Vec::as_slice)
                .ok_or_else(|| {
                    format!(
                        "role.rbac.authorization.k8s.io {} not found",
                        go_quote(&b.role_name)
                    )
                }),
            "ClusterRole" => self
                .cluster_roles
                .get(&b.role_name)
                .map(Vec::as_slice)
                .ok_or_else(|| {
                    format!(
                        "clusterrole.rbac.authorization.k8s.io {} not found",
                        go_quote(&b.role_name)
                    )
                }),
            k => Err(format!("unsupported role reference kind: {}", go_quote(k))),
        }
    }

    /// `VisitRulesFor`: every rule that applies to `user` in `namespace` ("" = cluster scope),
    /// with the description of where it comes from; errors for unresolvable role references.
    pub(crate) fn visit_rules<F>(
        &self,
        user: &UserInfo,
        namespace: &str,
        mut visit: F,
    ) -> Vec<String>
    where
        F: FnMut(&str, &Rule) -> bool,
    {
        let mut errors = Vec::new();
        for b in &self.cluster_role_bindings {
            let Some(i) = b.applies_to(user, "") else {
                continue;
            };
            match self.role_ref_rules(b, "") {
                Err(e) => errors.push(e),
                Ok(rules) => {
                    let source = format!(
                        "ClusterRoleBinding {} of {} {} to {}",
                        go_quote(&b.name),
                        b.role_kind,
                        go_quote(&b.role_name),
                        describe_subject(&b.subjects[i], "")
                    );
                    for r in rules {
                        if !visit(&source, r) {
                            return errors;
                        }
                    }
                }
            }
        }
        if !namespace.is_empty() {
            for b in self
                .role_bindings
                .iter()
                .filter(|b| b.namespace == namespace)
            {
                let Some(i) = b.applies_to(user, namespace) else {
                    continue;
                };
                match self.role_ref_rules(b, namespace) {
                    Err(e) => errors.push(e),
                    Ok(rules) => {
                        let source = format!(
                            "RoleBinding {} of {} {} to {}",
                            go_quote(&format!("{}/{}", b.name, b.namespace)),
                            b.role_kind,
                            go_quote(&b.role_name),
                            describe_subject(&b.subjects[i], &b.namespace)
                        );
                        for r in rules {
                            if !visit(&source, r) {
                                return errors;
                            }
                        }
                    }
                }
            }
        }
        errors
    }

    /// `RulesFor`: all rules `user` holds in `namespace`.
    pub fn rules_for(&self, user: &UserInfo, namespace: &str) -> (Vec<Rule>, Vec<String>) {
        let mut out = Vec::new();
        let errors = self.visit_rules(user, namespace, |_, r| {
            out.push(r.clone());
            true
        });
        (out, errors)
    }
}

/// Label-selector match (`matchLabels` + `matchExpressions`); an empty selector matches all.
pub(crate) fn selector_matches(selector: &Value, labels: &serde_json::Map<String, Value>) -> bool {
    let label = |k: &str| labels.get(k).and_then(Value::as_str);
    if let Some(ml) = selector.get("matchLabels").and_then(Value::as_object)
        && !ml.iter().all(|(k, v)| label(k) == v.as_str())
    {
        return false;
    }
    let exprs = selector
        .get("matchExpressions")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    exprs.iter().all(|e| {
        let key = e.get("key").and_then(Value::as_str).unwrap_or("");
        let values = strings(e.get("values"));
        let has_value = |v: Option<&str>| v.is_some_and(|v| values.iter().any(|x| x == v));
        match e.get("operator").and_then(Value::as_str) {
            Some("In") => has_value(label(key)),
            Some("NotIn") => !has_value(label(key)),
            Some("Exists") => label(key).is_some(),
            Some("DoesNotExist") => label(key).is_none(),
            _ => false,
        }
    })
}

/// What the clusterrole-aggregation controller writes: every ClusterRole with an
/// `aggregationRule` gets the union (first occurrence order, duplicates dropped) of the rules of
/// the other ClusterRoles its selectors match, taken in name order, iterated to a fixed point
/// (`edit` aggregates into `admin`). Other roles are returned unchanged.
pub fn aggregate_cluster_roles(cluster_roles: &[Value]) -> Vec<Value> {
    let mut roles: Vec<Value> = cluster_roles.to_vec();
    roles.sort_by(|a, b| {
        let n = |v: &Value| {
            v.pointer("/metadata/name")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string()
        };
        n(a).cmp(&n(b))
    });
    for _ in 0..=roles.len() {
        let mut changed = false;
        for i in 0..roles.len() {
            let Some(selectors) = roles[i]
                .pointer("/aggregationRule/clusterRoleSelectors")
                .and_then(Value::as_array)
                .cloned()
            else {
                continue;
            };
            let mut rules: Vec<Value> = Vec::new();
            for sel in &selectors {
                for (j, other) in roles.iter().enumerate() {
                    if j == i {
                        continue;
                    }
                    let empty = serde_json::Map::new();
                    let labels = other
                        .pointer("/metadata/labels")
                        .and_then(Value::as_object)
                        .unwrap_or(&empty);
                    if !selector_matches(sel, labels) {
                        continue;
                    }
                    for r in other
                        .get("rules")
                        .and_then(Value::as_array)
                        .into_iter()
                        .flatten()
                    {
                        if !rules
                            .iter()
                            .any(|x| Rule::from_value(x) == Rule::from_value(r))
                        {
                            rules.push(r.clone());
                        }
                    }
                }
            }
            let new = Value::Array(rules);
            if roles[i].get("rules") != Some(&new) {
                roles[i]["rules"] = new;
                changed = true;
            }
        }
        if !changed {
            break;
        }
    }
    roles
}

/// An authorization decision with upstream's reason text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// `reason`: `RBAC: allowed by ClusterRoleBinding "x" of ClusterRole "y" to ServiceAccount "sa/ns"`,
    /// empty for the `system:masters` short-circuit.
    Allow { reason: String },
    /// `reason`: empty, or `RBAC: <role reference errors>` when a matching binding points at a
    /// missing role.
    Deny { reason: String },
}

impl Decision {
    pub fn allowed(&self) -> bool {
        matches!(self, Decision::Allow { .. })
    }
    pub fn reason(&self) -> &str {
        match self {
            Decision::Allow { reason } | Decision::Deny { reason } => reason,
        }
    }
}

/// `utilerrors.NewAggregate(errs).Error()` with duplicate messages folded.
fn aggregate_errors(errs: &[String]) -> String {
    let mut seen: Vec<&String> = Vec::new();
    for e in errs {
        if !seen.contains(&e) {
            seen.push(e);
        }
    }
    match seen.len() {
        0 => String::new(),
        1 => seen[0].clone(),
        _ => format!(
            "[{}]",
            seen.iter()
                .map(|s| s.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

/// Authorize a request: `system:masters` is allowed everything (privileged-group authorizer),
/// otherwise RBAC (`RBACAuthorizer.Authorize`).
pub fn authorize(rbac: &RbacSnapshot, attrs: &RequestAttributes) -> Decision {
    if attrs.user.groups.iter().any(|g| g == "system:masters") {
        return Decision::Allow {
            reason: String::new(),
        };
    }
    let mut allowed: Option<String> = None;
    let errors = rbac.visit_rules(&attrs.user, &attrs.namespace, |source, rule| {
        if rule.allows(attrs) {
            allowed = Some(format!("RBAC: allowed by {source}"));
            return false;
        }
        true
    });
    match allowed {
        Some(reason) => Decision::Allow { reason },
        None if errors.is_empty() => Decision::Deny {
            reason: String::new(),
        },
        None => Decision::Deny {
            reason: format!("RBAC: {}", aggregate_errors(&errors)),
        },
    }
}

fn sanitize(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// `forbiddenMessage`.
fn forbidden_message(a: &RequestAttributes) -> String {
    let user = go_quote(&a.user.name);
    if !a.resource_request {
        return format!("User {user} cannot {} path {}", a.verb, go_quote(&a.path));
    }
    let resource = if a.subresource.is_empty() {
        a.resource.clone()
    } else {
        format!("{}/{}", a.resource, a.subresource)
    };
    if !a.namespace.is_empty() {
        format!(
            "User {user} cannot {} resource {} in API group {} in the namespace {}",
            a.verb,
            go_quote(&resource),
            go_quote(&a.api_group),
            go_quote(&a.namespace)
        )
    } else {
        format!(
            "User {user} cannot {} resource {} in API group {} at the cluster scope",
            a.verb,
            go_quote(&resource),
            go_quote(&a.api_group)
        )
    }
}

/// `apierrors.NewForbidden(groupResource, name, err)`.
pub(crate) fn new_forbidden(group: &str, resource: &str, name: &str, err: &str) -> StatusError {
    let gr = StatusError::qualified(resource, group);
    let message = if group.is_empty() && resource.is_empty() {
        format!("forbidden: {err}")
    } else if name.is_empty() {
        format!("{gr} is forbidden: {err}")
    } else {
        format!("{gr} {} is forbidden: {err}", go_quote(name))
    };
    let mut details = serde_json::Map::new();
    if !name.is_empty() {
        details.insert("name".into(), json!(name));
    }
    if !group.is_empty() {
        details.insert("group".into(), json!(group));
    }
    if !resource.is_empty() {
        details.insert("kind".into(), json!(resource));
    }
    StatusError::new(403, "Forbidden", message).with_details(Value::Object(details))
}

/// The 403 for a denied request (`responsewriters.ForbiddenStatusError`) without a reason.
pub fn forbidden(attrs: &RequestAttributes) -> StatusError {
    forbidden_with_reason(attrs, "")
}

/// The 403 for a denied request; a non-empty authorizer `reason` is appended after `: `.
pub fn forbidden_with_reason(attrs: &RequestAttributes, reason: &str) -> StatusError {
    let msg = sanitize(&forbidden_message(attrs));
    let err = if reason.is_empty() {
        msg
    } else {
        format!("{msg}: {reason}")
    };
    new_forbidden(&attrs.api_group, &attrs.resource, &attrs.name, &err)
}

#[cfg(test)]
mod tests;
