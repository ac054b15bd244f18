//! Privilege-escalation prevention for RBAC writes (`pkg/registry/rbac/*/policybased`,
//! `pkg/registry/rbac/validation/rule.go` `ConfirmNoEscalation`) and the
//! OwnerReferencesPermissionEnforcement admission check (`plugin/pkg/admission/gc`).

use serde_json::Value;

use super::{RbacSnapshot, RequestAttributes, Rule, authorize, new_forbidden};
use crate::error::{StatusError, go_quote};

const RBAC_GROUP: &str = "rbac.authorization.k8s.io";

/// Maps an owner reference's `(apiVersion, kind)` to its `(group, resource)` (discovery).
pub type ResolveOwner<'a> = &'a dyn Fn(&str, &str) -> Option<(String, String)>;

/// Go's `%q` of a `[]string`: `["a" "b"]`.
fn quote_list(l: &[String]) -> String {
    format!(
        "[{}]",
        l.iter().map(|s| go_quote(s)).collect::<Vec<_>>().join(" ")
    )
}

/// `BreakdownRule`: one verb × group × resource (× name) or verb × URL per sub-rule.
fn breakdown(rule: &Rule) -> Vec<Rule> {
    let mut out = Vec::new();
    for g in &rule.api_groups {
        for r in &rule.resources {
            for v in &rule.verbs {
                let base = Rule {
                    verbs: vec![v.clone()],
                    api_groups: vec![g.clone()],
                    resources: vec![r.clone()],
                    ..Rule::default()
                };
                if rule.resource_names.is_empty() {
                    out.push(base);
                } else {
                    for n in &rule.resource_names {
                        out.push(Rule {
                            resource_names: vec![n.clone()],
                            ..base.clone()
                        });
                    }
                }
            }
        }
    }
    for u in &rule.non_resource_urls {
        for v in &rule.verbs {
            out.push(Rule {
                verbs: vec![v.clone()],
                non_resource_urls: vec![u.clone()],
                ..Rule::default()
            });
        }
    }
    out
}

/// `ruleCovers`.
fn covers(owner: &Rule, sub: &Rule) -> bool {
    let has = |l: &[String], s: &str| l.iter().any(|x| x == s);
    let has_all = |l: &[String], s: &[String]| s.iter().all(|x| has(l, x));
    let verbs = has(&owner.verbs, "*") || has_all(&owner.verbs, &sub.verbs);
    let groups = has(&owner.api_groups, "*") || has_all(&owner.api_groups, &sub.api_groups);
    let resources = has(&owner.resources, "*")
        || has_all(&owner.resources, &sub.resources)
        || sub.resources.iter().all(|p| {
            has(&owner.resources, p)
                || p.split_once('/')
                    .is_some_and(|(_, s)| has(&owner.resources, &format!("*/{s}")))
        });
    let urls = sub.non_resource_urls.iter().all(|p| {
        owner
            .non_resource_urls
            .iter()
            .any(|o| o == p || (o.ends_with('*') && p.starts_with(o.trim_end_matches('*'))))
    });
    let names = if sub.resource_names.is_empty() {
        owner.resource_names.is_empty()
    } else {
        owner.resource_names.is_empty() || has_all(&owner.resource_names, &sub.resource_names)
    };
    verbs && groups && resources && names && urls
}

/// `CompactString`.
fn compact_string(r: &Rule) -> String {
    let mut parts = Vec::new();
    if !r.api_groups.is_empty() {
        parts.push(format!("APIGroups:{}", quote_list(&r.api_groups)));
    }
    if !r.resources.is_empty() {
        parts.push(format!("Resources:{}", quote_list(&r.resources)));
    }
    if !r.non_resource_urls.is_empty() {
        parts.push(format!(
            "NonResourceURLs:{}",
            quote_list(&r.non_resource_urls)
        ));
    }
    if !r.resource_names.is_empty() {
        parts.push(format!("ResourceNames:{}", quote_list(&r.resource_names)));
    }
    if !r.verbs.is_empty() {
        parts.push(format!("Verbs:{}", quote_list(&r.verbs)));
    }
    format!("{{{}}}", parts.join(", "))
}

/// `CompactRules`: simple single group/resource rules differing only by verb are merged.
fn compact(rules: Vec<Rule>) -> Vec<Rule> {
    let mut out: Vec<Rule> = Vec::new();
    let mut simple: Vec<Rule> = Vec::new();
    for r in rules {
        let is_simple = r.api_groups.len() == 1
            && r.resources.len() == 1
            && r.non_resource_urls.is_empty()
            && r.resource_names.len() <= 1;
        if !is_simple {
            out.push(r);
            continue;
        }
        match simple.iter_mut().find(|s| {
            s.api_groups == r.api_groups
                && s.resources == r.resources
                && s.resource_names == r.resource_names
        }) {
            Some(s) => s.verbs.extend(r.verbs),
            None => simple.push(r),
        }
    }
    out.extend(simple);
    out
}

/// `ConfirmNoEscalation`: the user must already hold every permission in `rules`.
fn confirm_no_escalation(
    rbac: &RbacSnapshot,
    attrs: &RequestAttributes,
    namespace: &str,
    rules: &[Rule],
) -> Result<(), String> {
    let (owner, errors) = rbac.rules_for(&attrs.user, namespace);
    let missing: Vec<Rule> = rules
        .iter()
        .flat_map(breakdown)
        .filter(|sub| !owner.iter().any(|o| covers(o, sub)))
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    let mut descriptions: Vec<String> = compact(missing).iter().map(compact_string).collect();
    descriptions.sort();
    descriptions.dedup();
    let mut msg = format!(
        "user {} (groups={}) is attempting to grant RBAC permissions not currently held:\n{}",
        go_quote(&attrs.user.name),
        quote_list(&attrs.user.groups),
        descriptions.join("\n")
    );
    if !errors.is_empty() {
        msg.push_str(&format!("; resolution errors: [{}]", errors.join(" ")));
    }
    Err(msg)
}

fn allowed(
    rbac: &RbacSnapshot,
    base: &RequestAttributes,
    verb: &str,
    group: &str,
    resource: &str,
    name: &str,
    namespace: &str,
) -> bool {
    let attrs = RequestAttributes {
        user: base.user.clone(),
        verb: verb.to_string(),
        resource_request: true,
        api_group: group.to_string(),
        api_version: "*".to_string(),
        resource: resource.to_string(),
        subresource: String::new(),
        name: name.to_string(),
        namespace: namespace.to_string(),
        path: String::new(),
    };
    authorize(rbac, &attrs).allowed()
}

/// Escalation check for creating or updating a Role, ClusterRole, RoleBinding or
/// ClusterRoleBinding. `attrs` are the write's request attributes (their `resource` says which
/// kind), `object` the new object. `system:masters` and holders of `escalate` (roles) / `bind`
/// (bindings, on the referenced role) pass; everyone else must already hold every permission
/// granted. Errors are upstream's 403 (or the 404 for a binding to a missing role).
// The signature is the crate-wide one: every handler error is a `StatusError`.
#[allow(clippy::result_large_err)]
pub fn check_escalation(
    rbac: &RbacSnapshot,
    attrs: &RequestAttributes,
    object: &Value,
) -> Result<(), StatusError> {
    if attrs.user.groups.iter().any(|g| g == "system:masters") {
        return Ok(());
    }
    let name = object
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or("");
    let namespace = attrs.namespace.as_str();
    match attrs.resource.as_str() {
        "roles" | "clusterroles" => {
            if allowed(
                rbac,
                attrs,
                "escalate",
                RBAC_GROUP,
                &attrs.resource,
                &attrs.name,
                namespace,
            ) {
                return Ok(());
            }
            if attrs.resource == "clusterroles"
                && object.get("aggregationRule").is_some_and(|a| !a.is_null())
            {
                return Err(new_forbidden(
                    RBAC_GROUP,
                    &attrs.resource,
                    name,
                    "must have cluster-admin privileges to use the aggregationRule",
                ));
            }
            let rules: Vec<Rule> = object
                .get("rules")
                .and_then(Value::as_array)
                .map(|a| a.iter().map(Rule::from_value).collect())
                .unwrap_or_default();
            confirm_no_escalation(rbac, attrs, namespace, &rules)
                .map_err(|m| new_forbidden(RBAC_GROUP, &attrs.resource, name, &m))
        }
        "rolebindings" | "clusterrolebindings" => {
            let s = |p: &str| object.pointer(p).and_then(Value::as_str).unwrap_or("");
            let (kind, role_name, role_group) = (
                s("/roleRef/kind"),
                s("/roleRef/name"),
                s("/roleRef/apiGroup"),
            );
            let role_resource = match kind {
                "Role" => "roles",
                "ClusterRole" => "clusterroles",
                _ => "",
            };
            if !role_resource.is_empty()
                && allowed(
                    rbac,
                    attrs,
                    "bind",
                    role_group,
                    role_resource,
                    role_name,
                    namespace,
                )
            {
                return Ok(());
            }
            let rules = match kind {
                "Role" => rbac
                    .roles
                    .get(&(namespace.to_string(), role_name.to_string())),
                "ClusterRole" => rbac.cluster_roles.get(role_name),
                _ => None,
            };
            let Some(rules) = rules else {
                let singular = if kind == "Role" {
                    "role"
                } else {
                    "clusterrole"
                };
                return Err(StatusError::not_found(singular, RBAC_GROUP, role_name));
            };
            confirm_no_escalation(rbac, attrs, namespace, rules)
                .map_err(|m| new_forbidden(RBAC_GROUP, &attrs.resource, name, &m))
        }
        _ => Ok(()),
    }
}

fn owner_refs(obj: Option<&Value>) -> Vec<Value> {
    obj.and_then(|o| o.pointer("/metadata/ownerReferences"))
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default()
}

fn blocks(r: &Value) -> bool {
    r.get("blockOwnerDeletion").and_then(Value::as_bool) == Some(true)
}

/// OwnerReferencesPermissionEnforcement for a create (`old` = `None`) or update of an object.
/// `write` are the write's request attributes; `resolve(apiVersion, kind)` maps an owner to its
/// `(group, resource)` (discovery's job). Rules, as upstream:
/// * `pods/status` writes are exempt; writes that do not change `ownerReferences` pass;
/// * an update that changes them needs `delete` on the object itself;
/// * every reference newly set to `blockOwnerDeletion: true` needs `update` on
///   `<owner-resource>/finalizers` of the owner (same namespace, owner's name).
#[allow(clippy::result_large_err)]
pub fn check_owner_references_permission(
    rbac: &RbacSnapshot,
    write: &RequestAttributes,
    old: Option<&Value>,
    new: &Value,
    resolve: ResolveOwner<'_>,
) -> Result<(), StatusError> {
    if write.api_group.is_empty() && write.resource == "pods" && write.subresource == "status" {
        return Ok(());
    }
    let new_refs = owner_refs(Some(new));
    let old_refs = owner_refs(old);
    let changing = match old {
        None => !new_refs.is_empty(),
        Some(_) => new_refs != old_refs,
    };
    if !changing {
        return Ok(());
    }
    let name = new
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .filter(|n| !n.is_empty())
        .unwrap_or(&write.name)
        .to_string();
    let forbid = |msg: String| new_forbidden(&write.api_group, &write.resource, &name, &msg);
    if old.is_some() {
        let del = RequestAttributes {
            verb: "delete".to_string(),
            resource_request: true,
            path: String::new(),
            ..write.clone()
        };
        let d = authorize(rbac, &del);
        if !d.allowed() {
            return Err(forbid(format!(
                "cannot set an ownerRef on a resource you can't delete: {}, <nil>",
                d.reason()
            )));
        }
    }
    let uid = |r: &Value| {
        r.get("uid")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string()
    };
    for r in new_refs.iter().filter(|r| blocks(r)) {
        let was_blocking = old_refs.iter().any(|o| uid(o) == uid(r) && blocks(o));
        if was_blocking {
            continue;
        }
        let api_version = r.get("apiVersion").and_then(Value::as_str).unwrap_or("");
        let kind = r.get("kind").and_then(Value::as_str).unwrap_or("");
        let Some((group, resource)) = resolve(api_version, kind) else {
            return Err(forbid(format!(
                "cannot set blockOwnerDeletion in this case because cannot find RESTMapping for APIVersion {api_version} Kind {kind}: no matches for kind \"{kind}\" in version \"{api_version}\""
            )));
        };
        let version = api_version.rsplit('/').next().unwrap_or("");
        let attrs = RequestAttributes {
            user: write.user.clone(),
            verb: "update".to_string(),
            resource_request: true,
            api_group: group,
            api_version: version.to_string(),
            resource,
            subresource: "finalizers".to_string(),
            name: r
                .get("name")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string(),
            namespace: write.namespace.clone(),
            path: String::new(),
        };
        let d = authorize(rbac, &attrs);
        if !d.allowed() {
            return Err(forbid(format!(
                "cannot set blockOwnerDeletion if an ownerReference refers to a resource you can't set finalizers on: {}, <nil>",
                d.reason()
            )));
        }
    }
    Ok(())
}
