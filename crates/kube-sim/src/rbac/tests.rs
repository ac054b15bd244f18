//! RBAC tables: request attributes (kubectl / kube-rs request shapes), every §9.3 rule-matching
//! case with a positive and a negative, bindings, aggregation, Forbidden messages, reviews.

use super::*;
use serde_json::json;

fn sa() -> UserInfo {
    service_account_user("op", "op-sa")
}

fn attrs(method: &str, path: &str, query: &str) -> RequestAttributes {
    request_attributes(method, path, query, sa())
}

/// (verb, group, version, resource, subresource, name, namespace, resource_request)
type Want = (
    &'static str,
    &'static str,
    &'static str,
    &'static str,
    &'static str,
    &'static str,
    &'static str,
    bool,
);

fn summary(
    a: &RequestAttributes,
) -> (String, String, String, String, String, String, String, bool) {
    (
        a.verb.clone(),
        a.api_group.clone(),
        a.api_version.clone(),
        a.resource.clone(),
        a.subresource.clone(),
        a.name.clone(),
        a.namespace.clone(),
        a.resource_request,
    )
}

#[test]
fn request_attributes_for_recorded_request_shapes() {
    let cases: Vec<(&str, &str, &str, Want)> = vec![
        // kube-rs watcher: list then watch, all namespaces and one namespace.
        (
            "GET",
            "/apis/agentlattice.io/v1/latticeagents",
            "limit=500",
            (
                "list",
                "agentlattice.io",
                "v1",
                "latticeagents",
                "",
                "",
                "",
                true,
            ),
        ),
        (
            "GET",
            "/apis/agentlattice.io/v1/namespaces/ns/latticeagents",
            "watch=true&timeoutSeconds=290&allowWatchBookmarks=true&resourceVersion=12",
            (
                "watch",
                "agentlattice.io",
                "v1",
                "latticeagents",
                "",
                "",
                "ns",
                true,
            ),
        ),
        (
            "GET",
            "/api/v1/namespaces/default/configmaps",
            "watch=1",
            ("watch", "", "v1", "configmaps", "", "", "default", true),
        ),
        (
            "GET",
            "/api/v1/namespaces/default/configmaps",
            "watch=false",
            ("list", "", "v1", "configmaps", "", "", "default", true),
        ),
        // kubectl wait: list + watch with an exact name selector → name is authorised.
        (
            "GET",
            "/apis/example.com/v1/namespaces/default/widgets",
            "fieldSelector=metadata.name%3Dw1&limit=500&resourceVersion=0",
            (
                "list",
                "example.com",
                "v1",
                "widgets",
                "",
                "w1",
                "default",
                true,
            ),
        ),
        (
            "GET",
            "/api/v1/namespaces/default/configmaps",
            "allowWatchBookmarks=true&fieldSelector=metadata.name%3Dc1&resourceVersion=105&timeoutSeconds=341&watch=true",
            ("watch", "", "v1", "configmaps", "", "c1", "default", true),
        ),
        // A != selector or an unparsable selector gives no name.
        (
            "GET",
            "/api/v1/configmaps",
            "fieldSelector=metadata.name!%3Dx",
            ("list", "", "v1", "configmaps", "", "", "", true),
        ),
        (
            "GET",
            "/api/v1/configmaps",
            "fieldSelector=metadata.name%3Dx&limit=abc",
            ("list", "", "v1", "configmaps", "", "", "", true),
        ),
        // get, create, update, patch (incl. apply), delete, deletecollection
        (
            "GET",
            "/api/v1/namespaces/default/configmaps/c1",
            "",
            ("get", "", "v1", "configmaps", "", "c1", "default", true),
        ),
        (
            "POST",
            "/api/v1/namespaces/default/configmaps",
            "fieldManager=kubectl-client-side-apply",
            ("create", "", "v1", "configmaps", "", "", "default", true),
        ),
        (
            "PUT",
            "/apis/example.com/v1/namespaces/d/widgets/w1/status",
            "",
            (
                "update",
                "example.com",
                "v1",
                "widgets",
                "status",
                "w1",
                "d",
                true,
            ),
        ),
        (
            "PATCH",
            "/apis/example.com/v1/namespaces/d/widgets/w1",
            "fieldManager=kubectl&force=false",
            ("patch", "example.com", "v1", "widgets", "", "w1", "d", true),
        ),
        (
            "DELETE",
            "/api/v1/namespaces/default/configmaps/c1",
            "",
            ("delete", "", "v1", "configmaps", "", "c1", "default", true),
        ),
        (
            "DELETE",
            "/api/v1/namespaces/default/configmaps",
            "labelSelector=a%3Db",
            (
                "deletecollection",
                "",
                "v1",
                "configmaps",
                "",
                "",
                "default",
                true,
            ),
        ),
        // Subresources, namespaces themselves, legacy watch paths.
        (
            "POST",
            "/api/v1/namespaces/op/serviceaccounts/op-sa/token",
            "",
            (
                "create",
                "",
                "v1",
                "serviceaccounts",
                "token",
                "op-sa",
                "op",
                true,
            ),
        ),
        (
            "PUT",
            "/apis/apps/v1/namespaces/d/deployments/x/scale",
            "",
            (
                "update",
                "apps",
                "v1",
                "deployments",
                "scale",
                "x",
                "d",
                true,
            ),
        ),
        (
            "GET",
            "/api/v1/namespaces",
            "",
            ("list", "", "v1", "namespaces", "", "", "", true),
        ),
        (
            "GET",
            "/api/v1/namespaces/ns1",
            "",
            ("get", "", "v1", "namespaces", "", "ns1", "ns1", true),
        ),
        (
            "PUT",
            "/api/v1/namespaces/ns1/finalize",
            "",
            (
                "update",
                "",
                "v1",
                "namespaces",
                "finalize",
                "ns1",
                "ns1",
                true,
            ),
        ),
        (
            "GET",
            "/api/v1/watch/namespaces/ns/pods",
            "",
            ("watch", "", "v1", "pods", "", "", "ns", true),
        ),
        (
            "POST",
            "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews",
            "",
            (
                "create",
                "authorization.k8s.io",
                "v1",
                "selfsubjectaccessreviews",
                "",
                "",
                "",
                true,
            ),
        ),
        (
            "GET",
            "/apis/coordination.k8s.io/v1/namespaces/op/leases/op-lock",
            "",
            (
                "get",
                "coordination.k8s.io",
                "v1",
                "leases",
                "",
                "op-lock",
                "op",
                true,
            ),
        ),
        // Non-resource URLs: discovery, version, health, openapi.
        (
            "GET",
            "/version",
            "timeout=5s",
            ("get", "", "", "", "", "", "", false),
        ),
        (
            "GET",
            "/api",
            "timeout=32s",
            ("get", "", "", "", "", "", "", false),
        ),
        ("GET", "/apis", "", ("get", "", "", "", "", "", "", false)),
        ("GET", "/api/v1", "", ("get", "", "", "", "", "", "", false)),
        (
            "GET",
            "/apis/apps/v1",
            "",
            ("get", "", "", "", "", "", "", false),
        ),
        (
            "GET",
            "/openapi/v3",
            "",
            ("get", "", "", "", "", "", "", false),
        ),
        (
            "HEAD",
            "/healthz",
            "",
            ("head", "", "", "", "", "", "", false),
        ),
    ];
    for (method, path, query, want) in cases {
        let got = summary(&attrs(method, path, query));
        let want = (
            want.0.to_string(),
            want.1.to_string(),
            want.2.to_string(),
            want.3.to_string(),
            want.4.to_string(),
            want.5.to_string(),
            want.6.to_string(),
            want.7,
        );
        assert_eq!(got, want, "{method} {path}?{query}");
    }
    assert_eq!(attrs("GET", "/version", "").path, "/version");
}

fn cluster_role(name: &str, rules: Value) -> Value {
    json!({"kind":"ClusterRole","metadata":{"name":name},"rules":rules})
}
fn role(ns: &str, name: &str, rules: Value) -> Value {
    json!({"kind":"Role","metadata":{"namespace":ns,"name":name},"rules":rules})
}
fn crb(name: &str, role: &str, subjects: Value) -> Value {
    json!({"kind":"ClusterRoleBinding","metadata":{"name":name},
           "roleRef":{"apiGroup":"rbac.authorization.k8s.io","kind":"ClusterRole","name":role},"subjects":subjects})
}
fn rb(ns: &str, name: &str, kind: &str, role: &str, subjects: Value) -> Value {
    json!({"kind":"RoleBinding","metadata":{"namespace":ns,"name":name},
           "roleRef":{"apiGroup":"rbac.authorization.k8s.io","kind":kind,"name":role},"subjects":subjects})
}

/// One ClusterRole `r` holding `rule`, bound cluster-wide to the operator's ServiceAccount.
fn single(rule: Value) -> RbacSnapshot {
    RbacSnapshot::from_objects(
        &[],
        &[cluster_role("r", json!([rule]))],
        &[],
        &[crb(
            "b",
            "r",
            json!([{"kind":"ServiceAccount","name":"op-sa","namespace":"op"}]),
        )],
    )
}

fn res(
    verb: &str,
    group: &str,
    resource: &str,
    sub: &str,
    name: &str,
    ns: &str,
) -> RequestAttributes {
    RequestAttributes {
        user: sa(),
        verb: verb.into(),
        resource_request: true,
        api_group: group.into(),
        api_version: "v1".into(),
        resource: resource.into(),
        subresource: sub.into(),
        name: name.into(),
        namespace: ns.into(),
        path: String::new(),
    }
}

fn url(verb: &str, path: &str) -> RequestAttributes {
    RequestAttributes {
        user: sa(),
        verb: verb.into(),
        path: path.into(),
        ..Default::default()
    }
}

#[test]
fn rule_matching_each_case_positive_and_negative() {
    let r = |verbs: Value, groups: Value, resources: Value| json!({"verbs": verbs, "apiGroups": groups, "resources": resources});
    let cases: Vec<(&str, Value, RequestAttributes, bool)> = vec![
        (
            "verb listed",
            r(json!(["get"]), json!([""]), json!(["configmaps"])),
            res("get", "", "configmaps", "", "c", "ns"),
            true,
        ),
        (
            "verb not listed",
            r(json!(["get"]), json!([""]), json!(["configmaps"])),
            res("list", "", "configmaps", "", "", "ns"),
            false,
        ),
        (
            "verb *",
            r(json!(["*"]), json!([""]), json!(["configmaps"])),
            res("deletecollection", "", "configmaps", "", "", "ns"),
            true,
        ),
        (
            "group listed",
            r(json!(["get"]), json!(["apps"]), json!(["deployments"])),
            res("get", "apps", "deployments", "", "d", "ns"),
            true,
        ),
        (
            "core group is \"\"",
            r(json!(["get"]), json!([""]), json!(["deployments"])),
            res("get", "apps", "deployments", "", "d", "ns"),
            false,
        ),
        (
            "group *",
            r(json!(["get"]), json!(["*"]), json!(["deployments"])),
            res("get", "apps", "deployments", "", "d", "ns"),
            true,
        ),
        (
            "resource *",
            r(json!(["get"]), json!([""]), json!(["*"])),
            res("get", "", "secrets", "", "s", "ns"),
            true,
        ),
        (
            "resource * covers subresources",
            r(json!(["get"]), json!([""]), json!(["*"])),
            res("get", "", "pods", "log", "p", "ns"),
            true,
        ),
        (
            "resource/sub",
            r(
                json!(["update"]),
                json!(["example.com"]),
                json!(["widgets/status"]),
            ),
            res("update", "example.com", "widgets", "status", "w", "ns"),
            true,
        ),
        (
            "plain resource does not cover sub",
            r(
                json!(["update"]),
                json!(["example.com"]),
                json!(["widgets"]),
            ),
            res("update", "example.com", "widgets", "status", "w", "ns"),
            false,
        ),
        (
            "sub does not cover resource",
            r(
                json!(["update"]),
                json!(["example.com"]),
                json!(["widgets/status"]),
            ),
            res("update", "example.com", "widgets", "", "w", "ns"),
            false,
        ),
        (
            "*/sub",
            r(json!(["get"]), json!([""]), json!(["*/scale"])),
            res("get", "", "replicationcontrollers", "scale", "x", "ns"),
            true,
        ),
        (
            "*/sub other sub",
            r(json!(["get"]), json!([""]), json!(["*/scale"])),
            res("get", "", "pods", "status", "x", "ns"),
            false,
        ),
        (
            "res/* only matches literal *",
            r(json!(["get"]), json!([""]), json!(["pods/*"])),
            res("get", "", "pods", "log", "p", "ns"),
            false,
        ),
        (
            "resourceNames hit",
            json!({"verbs":["get"],"apiGroups":[""],"resources":["secrets"],"resourceNames":["s1"]}),
            res("get", "", "secrets", "", "s1", "ns"),
            true,
        ),
        (
            "resourceNames miss",
            json!({"verbs":["get"],"apiGroups":[""],"resources":["secrets"],"resourceNames":["s1"]}),
            res("get", "", "secrets", "", "s2", "ns"),
            false,
        ),
        (
            "resourceNames never allow list",
            json!({"verbs":["list"],"apiGroups":[""],"resources":["secrets"],"resourceNames":["s1"]}),
            res("list", "", "secrets", "", "", "ns"),
            false,
        ),
        (
            "resourceNames allow a name-selected watch",
            json!({"verbs":["watch"],"apiGroups":[""],"resources":["secrets"],"resourceNames":["s1"]}),
            request_attributes(
                "GET",
                "/api/v1/namespaces/ns/secrets",
                "watch=true&fieldSelector=metadata.name%3Ds1",
                sa(),
            ),
            true,
        ),
        (
            "nonResourceURL exact",
            json!({"verbs":["get"],"nonResourceURLs":["/version"]}),
            url("get", "/version"),
            true,
        ),
        (
            "nonResourceURL exact miss",
            json!({"verbs":["get"],"nonResourceURLs":["/version"]}),
            url("get", "/versions"),
            false,
        ),
        (
            "nonResourceURL prefix *",
            json!({"verbs":["get"],"nonResourceURLs":["/apis/*"]}),
            url("get", "/apis/apps/v1"),
            true,
        ),
        (
            "nonResourceURL prefix * miss",
            json!({"verbs":["get"],"nonResourceURLs":["/apis/*"]}),
            url("get", "/api"),
            false,
        ),
        (
            "nonResourceURL *",
            json!({"verbs":["*"],"nonResourceURLs":["*"]}),
            url("post", "/anything"),
            true,
        ),
        (
            "resource rule never matches a URL",
            r(json!(["*"]), json!(["*"]), json!(["*"])),
            url("get", "/version"),
            false,
        ),
        (
            "URL rule never matches a resource",
            json!({"verbs":["*"],"nonResourceURLs":["*"]}),
            res("get", "", "pods", "", "", "ns"),
            false,
        ),
    ];
    for (name, rule, attrs, want) in cases {
        let d = authorize(&single(rule), &attrs);
        assert_eq!(d.allowed(), want, "{name}: {d:?}");
    }
}

#[test]
fn allow_reasons_and_binding_kinds() {
    let snap = RbacSnapshot::from_objects(
        &[role(
            "op",
            "cm-reader",
            json!([{"verbs":["get"],"apiGroups":[""],"resources":["configmaps"]}]),
        )],
        &[
            cluster_role(
                "lease-rw",
                json!([{"verbs":["*"],"apiGroups":["coordination.k8s.io"],"resources":["leases"]}]),
            ),
            cluster_role(
                "crd-reader",
                json!([{"verbs":["list"],"apiGroups":["agentlattice.io"],"resources":["latticeagents"]}]),
            ),
        ],
        &[
            rb(
                "op",
                "read-cm",
                "Role",
                "cm-reader",
                json!([{"kind":"ServiceAccount","name":"op-sa"}]),
            ),
            rb(
                "op",
                "leases",
                "ClusterRole",
                "lease-rw",
                json!([{"kind":"Group","name":"system:serviceaccounts:op"}]),
            ),
        ],
        &[crb(
            "crds",
            "crd-reader",
            json!([{"kind":"User","name":"alice"},{"kind":"ServiceAccount","name":"op-sa","namespace":"op"}]),
        )],
    );
    // ClusterRoleBinding to a ServiceAccount.
    let d = authorize(
        &snap,
        &res("list", "agentlattice.io", "latticeagents", "", "", ""),
    );
    assert_eq!(d, Decision::Allow { reason: "RBAC: allowed by ClusterRoleBinding \"crds\" of ClusterRole \"crd-reader\" to ServiceAccount \"op-sa/op\"".into() });
    // ... and to a User.
    let mut alice = res("list", "agentlattice.io", "latticeagents", "", "", "x");
    alice.user = UserInfo::new("alice", &["system:authenticated"]);
    assert_eq!(
        authorize(&snap, &alice).reason(),
        "RBAC: allowed by ClusterRoleBinding \"crds\" of ClusterRole \"crd-reader\" to User \"alice\""
    );
    // RoleBinding to a Role; the SA subject's namespace defaults to the binding's.
    let d = authorize(&snap, &res("get", "", "configmaps", "", "c", "op"));
    assert_eq!(
        d.reason(),
        "RBAC: allowed by RoleBinding \"read-cm/op\" of Role \"cm-reader\" to ServiceAccount \"op-sa/op\""
    );
    // RoleBinding to a ClusterRole grants it only in that namespace, here via a Group.
    let d = authorize(
        &snap,
        &res("update", "coordination.k8s.io", "leases", "", "l", "op"),
    );
    assert_eq!(
        d.reason(),
        "RBAC: allowed by RoleBinding \"leases/op\" of ClusterRole \"lease-rw\" to Group \"system:serviceaccounts:op\""
    );
    assert!(
        !authorize(
            &snap,
            &res("update", "coordination.k8s.io", "leases", "", "l", "other")
        )
        .allowed()
    );
    assert!(
        !authorize(
            &snap,
            &res("update", "coordination.k8s.io", "leases", "", "l", "")
        )
        .allowed()
    );
    // A Role's rules never apply at cluster scope or in another namespace.
    assert!(!authorize(&snap, &res("get", "", "configmaps", "", "c", "other")).allowed());
    // Another ServiceAccount of the same name elsewhere is someone else.
    let mut other = res("get", "", "configmaps", "", "c", "op");
    other.user = service_account_user("elsewhere", "op-sa");
    assert_eq!(
        authorize(&snap, &other),
        Decision::Deny {
            reason: String::new()
        }
    );
    // system:masters short-circuits with no reason.
    let mut admin = res("delete", "", "namespaces", "", "kube-system", "");
    admin.user = UserInfo::new("admin", &["system:masters", "system:authenticated"]);
    assert_eq!(
        authorize(&snap, &admin),
        Decision::Allow {
            reason: String::new()
        }
    );
}

#[test]
fn missing_roles_show_up_in_the_deny_reason() {
    let snap = RbacSnapshot::from_objects(
        &[],
        &[],
        &[rb(
            "op",
            "x",
            "Role",
            "gone",
            json!([{"kind":"ServiceAccount","name":"op-sa"}]),
        )],
        &[crb(
            "y",
            "nope",
            json!([{"kind":"Group","name":"system:authenticated"}]),
        )],
    );
    let a = res("get", "", "configmaps", "", "c", "op");
    let d = authorize(&snap, &a);
    assert_eq!(
        d.reason(),
        "RBAC: [clusterrole.rbac.authorization.k8s.io \"nope\" not found, role.rbac.authorization.k8s.io \"gone\" not found]"
    );
    assert_eq!(
        forbidden_with_reason(&a, d.reason()).message,
        "configmaps \"c\" is forbidden: User \"system:serviceaccount:op:op-sa\" cannot get resource \"configmaps\" in API group \"\" in the namespace \"op\": RBAC: [clusterrole.rbac.authorization.k8s.io \"nope\" not found, role.rbac.authorization.k8s.io \"gone\" not found]"
    );
}

#[test]
fn aggregation_unions_selected_roles() {
    let agg = json!({"kind":"ClusterRole","metadata":{"name":"monitoring"},
        "aggregationRule":{"clusterRoleSelectors":[{"matchLabels":{"rbac.example.com/aggregate-to-monitoring":"true"}}]},
        "rules":[]});
    let part = |name: &str, res: &str| {
        json!({"kind":"ClusterRole","metadata":{"name":name,
        "labels":{"rbac.example.com/aggregate-to-monitoring":"true"}},
        "rules":[{"verbs":["get"],"apiGroups":[""],"resources":[res]}]})
    };
    let unrelated = cluster_role(
        "u",
        json!([{"verbs":["get"],"apiGroups":[""],"resources":["secrets"]}]),
    );
    let snap = RbacSnapshot::from_objects(
        &[],
        &[agg, part("m1", "pods"), part("m2", "services"), unrelated],
        &[],
        &[crb(
            "b",
            "monitoring",
            json!([{"kind":"ServiceAccount","name":"op-sa","namespace":"op"}]),
        )],
    );
    assert!(authorize(&snap, &res("get", "", "pods", "", "p", "x")).allowed());
    assert!(authorize(&snap, &res("get", "", "services", "", "s", "x")).allowed());
    assert!(!authorize(&snap, &res("get", "", "secrets", "", "s", "x")).allowed());
}

#[test]
fn bootstrap_policy_behaves_like_a_fresh_cluster() {
    let objs = bootstrap_cluster_roles();
    let roles: Vec<Value> = objs
        .iter()
        .filter(|o| o["kind"] == "ClusterRole")
        .cloned()
        .collect();
    let bindings: Vec<Value> = objs
        .iter()
        .filter(|o| o["kind"] == "ClusterRoleBinding")
        .cloned()
        .collect();
    for n in [
        "cluster-admin",
        "admin",
        "edit",
        "view",
        "system:discovery",
        "system:basic-user",
        "system:public-info-viewer",
    ] {
        assert!(roles.iter().any(|r| r["metadata"]["name"] == n), "{n}");
    }
    // view ⊂ edit ⊂ admin after aggregation.
    let view = roles
        .iter()
        .find(|r| r["metadata"]["name"] == "view")
        .cloned()
        .unwrap_or_default();
    let admin = roles
        .iter()
        .find(|r| r["metadata"]["name"] == "admin")
        .cloned()
        .unwrap_or_default();
    let n = |r: &Value| r["rules"].as_array().map(Vec::len).unwrap_or(0);
    assert!(n(&view) > 0 && n(&admin) > n(&view));
    let snap = RbacSnapshot::from_objects(&[], &roles, &[], &bindings);
    // Every authenticated user can discover and review itself; nothing else.
    let user = sa();
    for (verb, path) in [
        ("get", "/version"),
        ("get", "/apis"),
        ("get", "/api/v1"),
        ("get", "/openapi/v3"),
        ("get", "/healthz"),
    ] {
        assert!(
            authorize(
                &snap,
                &RequestAttributes {
                    user: user.clone(),
                    verb: verb.into(),
                    path: path.into(),
                    ..Default::default()
                }
            )
            .allowed(),
            "{path}"
        );
    }
    let mut ssar = res(
        "create",
        "authorization.k8s.io",
        "selfsubjectaccessreviews",
        "",
        "",
        "",
    );
    ssar.user = user.clone();
    assert!(authorize(&snap, &ssar).allowed());
    assert!(!authorize(&snap, &res("list", "", "configmaps", "", "", "op")).allowed());
    // Anonymous users only see the public info.
    let anon = UserInfo::anonymous();
    assert!(
        authorize(
            &snap,
            &RequestAttributes {
                user: anon.clone(),
                verb: "get".into(),
                path: "/version".into(),
                ..Default::default()
            }
        )
        .allowed()
    );
    assert!(
        !authorize(
            &snap,
            &RequestAttributes {
                user: anon,
                verb: "get".into(),
                path: "/apis".into(),
                ..Default::default()
            }
        )
        .allowed()
    );
    // Binding "edit" in a namespace grants configmap writes there.
    let snap = RbacSnapshot::from_objects(
        &[],
        &roles,
        &[rb(
            "op",
            "e",
            "ClusterRole",
            "edit",
            json!([{"kind":"ServiceAccount","name":"op-sa"}]),
        )],
        &bindings,
    );
    assert!(authorize(&snap, &res("patch", "", "configmaps", "", "c", "op")).allowed());
    assert!(authorize(&snap, &res("get", "", "configmaps", "", "c", "op")).allowed());
    assert!(!authorize(&snap, &res("patch", "", "configmaps", "", "c", "other")).allowed());
}

#[test]
fn forbidden_messages_match_upstream() {
    let s = forbidden(&res("list", "agentlattice.io", "latticeagents", "", "", ""));
    assert_eq!((s.code, s.reason.as_str()), (403, "Forbidden"));
    assert_eq!(
        s.message,
        "latticeagents.agentlattice.io is forbidden: User \"system:serviceaccount:op:op-sa\" cannot list resource \"latticeagents\" in API group \"agentlattice.io\" at the cluster scope"
    );
    assert_eq!(
        s.to_status()["details"],
        json!({"group":"agentlattice.io","kind":"latticeagents"})
    );
    let s = forbidden(&res("get", "", "secrets", "", "s1", "op"));
    assert_eq!(
        s.message,
        "secrets \"s1\" is forbidden: User \"system:serviceaccount:op:op-sa\" cannot get resource \"secrets\" in API group \"\" in the namespace \"op\""
    );
    assert_eq!(
        s.to_status()["details"],
        json!({"name":"s1","kind":"secrets"})
    );
    let s = forbidden(&res("patch", "example.com", "widgets", "status", "w", "d"));
    assert_eq!(
        s.message,
        "widgets.example.com \"w\" is forbidden: User \"system:serviceaccount:op:op-sa\" cannot patch resource \"widgets/status\" in API group \"example.com\" in the namespace \"d\""
    );
    let s = forbidden(&url("get", "/metrics"));
    assert_eq!(
        s.message,
        "forbidden: User \"system:serviceaccount:op:op-sa\" cannot get path \"/metrics\""
    );
    assert_eq!(s.to_status()["details"], json!({}));
    let mut a = url("get", "/<script>");
    a.user.name = "a&b".into();
    assert_eq!(
        forbidden(&a).message,
        "forbidden: User \"a&amp;b\" cannot get path \"/&lt;script&gt;\""
    );
}

#[test]
fn access_reviews() {
    let snap = single(json!({"verbs":["list"],"apiGroups":[""],"resources":["configmaps"]}));
    let sar = json!({"apiVersion":"authorization.k8s.io/v1","kind":"SubjectAccessReview",
        "spec":{"user":"system:serviceaccount:op:op-sa","groups":["system:authenticated"],
                "resourceAttributes":{"namespace":"default","verb":"list","group":"","resource":"configmaps"}}});
    let admin = UserInfo::new("admin", &["system:masters"]);
    let out = evaluate_access_review("SubjectAccessReview", &sar, &admin, &snap, None)
        .unwrap_or_default();
    assert_eq!(
        out["status"],
        json!({"allowed":true,"reason":"RBAC: allowed by ClusterRoleBinding \"b\" of ClusterRole \"r\" to ServiceAccount \"op-sa/op\""})
    );
    assert_eq!(out["spec"], sar["spec"]);
    let mut denied = sar.clone();
    denied["spec"]["resourceAttributes"]["verb"] = json!("delete");
    let out = evaluate_access_review("SubjectAccessReview", &denied, &admin, &snap, None)
        .unwrap_or_default();
    assert_eq!(out["status"], json!({"allowed":false}));
    // Self review uses the caller, not the spec.
    let ssar = json!({"apiVersion":"authorization.k8s.io/v1","kind":"SelfSubjectAccessReview",
        "spec":{"resourceAttributes":{"namespace":"x","verb":"list","resource":"configmaps"}}});
    let out = evaluate_access_review("SelfSubjectAccessReview", &ssar, &sa(), &snap, None)
        .unwrap_or_default();
    assert_eq!(out["status"]["allowed"], true);
    let out = evaluate_access_review("SelfSubjectAccessReview", &ssar, &admin, &snap, None)
        .unwrap_or_default();
    assert_eq!(out["status"], json!({"allowed":true}));
    let nr = json!({"kind":"SelfSubjectAccessReview","spec":{"nonResourceAttributes":{"path":"/version","verb":"get"}}});
    let out = evaluate_access_review("SelfSubjectAccessReview", &nr, &sa(), &snap, None)
        .unwrap_or_default();
    assert_eq!(out["status"]["allowed"], false);
    // Validation errors.
    let e = evaluate_access_review(
        "SubjectAccessReview",
        &json!({"spec":{"resourceAttributes":{"verb":"get"}}}),
        &admin,
        &snap,
        None,
    )
    .err()
    .map(|e| (e.code, e.message));
    assert_eq!(e, Some((422, "SubjectAccessReview.authorization.k8s.io \"\" is invalid: spec.user: Invalid value: \"\": at least one of user or group must be specified".into())));
    let e = evaluate_access_review(
        "SelfSubjectAccessReview",
        &json!({"spec":{}}),
        &sa(),
        &snap,
        None,
    )
    .err()
    .map(|e| e.message);
    assert_eq!(
        e.as_deref(),
        Some(
            "SelfSubjectAccessReview.authorization.k8s.io \"\" is invalid: spec.resourceAttributes: Required value: exactly one of nonResourceAttributes or resourceAttributes must be specified"
        )
    );
    // Local reviews are pinned to the URL namespace.
    let lsar = json!({"kind":"LocalSubjectAccessReview","metadata":{"namespace":"default"},
        "spec":{"user":"system:serviceaccount:op:op-sa","resourceAttributes":{"namespace":"default","verb":"list","resource":"configmaps"}}});
    let out = evaluate_access_review(
        "LocalSubjectAccessReview",
        &lsar,
        &admin,
        &snap,
        Some("default"),
    )
    .unwrap_or_default();
    assert_eq!(out["status"]["allowed"], true);
    let e = evaluate_access_review(
        "LocalSubjectAccessReview",
        &lsar,
        &admin,
        &snap,
        Some("other"),
    )
    .err()
    .map(|e| (e.code, e.message));
    assert_eq!(
        e,
        Some((
            400,
            "spec.resourceAttributes.namespace must match namespace: other".into()
        ))
    );
    let mut bad = lsar.clone();
    bad["spec"]["resourceAttributes"]["namespace"] = json!("x");
    let e = evaluate_access_review(
        "LocalSubjectAccessReview",
        &bad,
        &admin,
        &snap,
        Some("default"),
    )
    .err()
    .map(|e| e.message);
    assert_eq!(
        e.as_deref(),
        Some(
            "LocalSubjectAccessReview.authorization.k8s.io \"\" is invalid: spec.resourceAttributes.namespace: Invalid value: \"x\": must match metadata.namespace"
        )
    );
}

#[test]
fn escalation_prevention() {
    let snap = RbacSnapshot::from_objects(
        &[],
        &[
            cluster_role(
                "rbac-writer",
                json!([
            {"verbs":["create","update"],"apiGroups":["rbac.authorization.k8s.io"],"resources":["roles","rolebindings"]},
            {"verbs":["get","list"],"apiGroups":[""],"resources":["configmaps"]}]),
            ),
            cluster_role(
                "cm-admin",
                json!([{"verbs":["*"],"apiGroups":[""],"resources":["configmaps"]}]),
            ),
        ],
        &[],
        &[crb(
            "w",
            "rbac-writer",
            json!([{"kind":"ServiceAccount","name":"op-sa","namespace":"op"}]),
        )],
    );
    let write = request_attributes(
        "POST",
        "/apis/rbac.authorization.k8s.io/v1/namespaces/op/roles",
        "",
        sa(),
    );
    let ok = role(
        "op",
        "reader",
        json!([{"verbs":["get"],"apiGroups":[""],"resources":["configmaps"]}]),
    );
    assert_eq!(check_escalation(&snap, &write, &ok), Ok(()));
    let too_much = role(
        "op",
        "writer",
        json!([{"verbs":["get","delete","patch"],"apiGroups":[""],"resources":["configmaps","secrets"]}]),
    );
    let e = check_escalation(&snap, &write, &too_much)
        .err()
        .map(|e| (e.code, e.message));
    assert_eq!(e, Some((403, "roles.rbac.authorization.k8s.io \"writer\" is forbidden: user \"system:serviceaccount:op:op-sa\" (groups=[\"system:serviceaccounts\" \"system:serviceaccounts:op\" \"system:authenticated\"]) is attempting to grant RBAC permissions not currently held:\n{APIGroups:[\"\"], Resources:[\"configmaps\"], Verbs:[\"delete\" \"patch\"]}\n{APIGroups:[\"\"], Resources:[\"secrets\"], Verbs:[\"get\" \"delete\" \"patch\"]}".to_string())));
    // Binding a role one does not hold is an escalation; binding a missing role is a 404.
    let bwrite = request_attributes(
        "POST",
        "/apis/rbac.authorization.k8s.io/v1/namespaces/op/rolebindings",
        "",
        sa(),
    );
    let binding = rb(
        "op",
        "x",
        "ClusterRole",
        "cm-admin",
        json!([{"kind":"User","name":"bob"}]),
    );
    assert_eq!(
        check_escalation(&snap, &bwrite, &binding)
            .err()
            .map(|e| e.code),
        Some(403)
    );
    let missing = rb("op", "x", "ClusterRole", "nope", json!([]));
    assert_eq!(
        check_escalation(&snap, &bwrite, &missing)
            .err()
            .map(|e| e.message),
        Some("clusterrole.rbac.authorization.k8s.io \"nope\" not found".to_string())
    );
    // The bind verb on that role lifts the check.
    let with_bind = RbacSnapshot::from_objects(
        &[],
        &[
            cluster_role(
                "cm-admin",
                json!([{"verbs":["*"],"apiGroups":[""],"resources":["configmaps"]}]),
            ),
            cluster_role(
                "binder",
                json!([{"verbs":["bind"],"apiGroups":["rbac.authorization.k8s.io"],"resources":["clusterroles"],"resourceNames":["cm-admin"]}]),
            ),
        ],
        &[],
        &[crb(
            "w",
            "binder",
            json!([{"kind":"ServiceAccount","name":"op-sa","namespace":"op"}]),
        )],
    );
    assert_eq!(check_escalation(&with_bind, &bwrite, &binding), Ok(()));
}

#[test]
fn block_owner_deletion_needs_finalizers_permission() {
    let resolve = |api_version: &str, kind: &str| -> Option<(String, String)> {
        (api_version == "agentlattice.io/v1" && kind == "LatticeAgent")
            .then(|| ("agentlattice.io".to_string(), "latticeagents".to_string()))
    };
    let owned = |block: bool| {
        json!({"apiVersion":"v1","kind":"Secret","metadata":{"name":"s","namespace":"op",
        "ownerReferences":[{"apiVersion":"agentlattice.io/v1","kind":"LatticeAgent","name":"a","uid":"u1","controller":true,"blockOwnerDeletion":block}]}})
    };
    let write = request_attributes("POST", "/api/v1/namespaces/op/secrets", "", sa());
    let without = single(json!({"verbs":["create"],"apiGroups":[""],"resources":["secrets"]}));
    let e = check_owner_references_permission(&without, &write, None, &owned(true), &resolve)
        .err()
        .map(|e| e.message);
    assert_eq!(
        e.as_deref(),
        Some(
            "secrets \"s\" is forbidden: cannot set blockOwnerDeletion if an ownerReference refers to a resource you can't set finalizers on: , <nil>"
        )
    );
    // Without blockOwnerDeletion no extra permission is needed on create.
    assert_eq!(
        check_owner_references_permission(&without, &write, None, &owned(false), &resolve),
        Ok(())
    );
    let with = single(
        json!({"verbs":["update"],"apiGroups":["agentlattice.io"],"resources":["latticeagents/finalizers"]}),
    );
    assert_eq!(
        check_owner_references_permission(&with, &write, None, &owned(true), &resolve),
        Ok(())
    );
    // Changing ownerReferences on update needs delete on the object.
    let upd = request_attributes("PUT", "/api/v1/namespaces/op/secrets/s", "", sa());
    let e =
        check_owner_references_permission(&with, &upd, Some(&owned(false)), &owned(true), &resolve)
            .err()
            .map(|e| e.message);
    assert_eq!(
        e.as_deref(),
        Some(
            "secrets \"s\" is forbidden: cannot set an ownerRef on a resource you can't delete: , <nil>"
        )
    );
    // Unchanged references pass.
    assert_eq!(
        check_owner_references_permission(
            &without,
            &upd,
            Some(&owned(true)),
            &owned(true),
            &resolve
        ),
        Ok(())
    );
}
