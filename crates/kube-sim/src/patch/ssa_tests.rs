//! Server-side apply and managedFields tracking.

use super::*;
use crate::patch::builtin_merge_schema;
use serde_json::json;

const T1: &str = "2026-01-02T03:04:05Z";
const T2: &str = "2026-01-02T03:04:06Z";

fn opts<'a>(manager: &'a str, time: &'a str) -> ApplyOptions<'a> {
    ApplyOptions {
        manager,
        force: false,
        api_version: "apps/v1",
        subresource: None,
        time,
        ignored_top_level: &[],
    }
}

fn upd<'a>(manager: &'a str, time: &'a str) -> UpdateOptions<'a> {
    UpdateOptions {
        manager,
        api_version: "apps/v1",
        subresource: None,
        time,
        ignored_top_level: &[],
    }
}

fn deploy(replicas: i64, image: &str) -> Value {
    json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "d", "namespace": "ns", "labels": {"app": "d"}},
        "spec": {"replicas": replicas, "template": {"spec": {"containers": [
            {"name": "app", "image": image}
        ]}}}
    })
}

fn mf(obj: &Value) -> Value {
    obj["metadata"]["managedFields"].clone()
}

#[test]
fn create_records_an_apply_entry_in_upstream_shape() {
    let s = builtin_merge_schema("apps", "Deployment");
    let out = apply(None, &deploy(3, "app:1"), &opts("kubectl", T1), &*s).unwrap_or_default();
    assert_eq!(out["spec"]["replicas"], 3);
    assert_eq!(
        mf(&out),
        json!([{
            "manager": "kubectl", "operation": "Apply", "apiVersion": "apps/v1", "time": T1,
            "fieldsType": "FieldsV1",
            "fieldsV1": {
                "f:metadata": {"f:labels": {"f:app": {}}},
                "f:spec": {"f:replicas": {}, "f:template": {"f:spec": {"f:containers": {
                    "k:{\"name\":\"app\"}": {".": {}, "f:image": {}, "f:name": {}}
                }}}}
            }
        }])
    );
}

#[test]
fn applying_twice_is_identical_even_at_a_later_time() {
    let s = builtin_merge_schema("apps", "Deployment");
    let first = apply(None, &deploy(3, "app:1"), &opts("kubectl", T1), &*s).unwrap_or_default();
    let second =
        apply(Some(&first), &deploy(3, "app:1"), &opts("kubectl", T2), &*s).unwrap_or_default();
    assert_eq!(first, second);
}

#[test]
fn partial_apply_changes_only_its_fields() {
    let s = builtin_merge_schema("apps", "Deployment");
    let live = apply(None, &deploy(3, "app:1"), &opts("kubectl", T1), &*s).unwrap_or_default();
    // Another manager applies only replicas (kube-rs derived_resource test shape) with force.
    let partial = json!({"apiVersion":"apps/v1","kind":"Deployment","metadata":{"name":"d"},"spec":{"replicas":5}});
    let mut o = opts("scaler", T2);
    o.force = true;
    let out = apply(Some(&live), &partial, &o, &*s).unwrap_or_default();
    assert_eq!(out["spec"]["replicas"], 5);
    assert_eq!(out["spec"]["template"], live["spec"]["template"]);
    assert_eq!(out["metadata"]["labels"], json!({"app":"d"}));
    // Ownership of replicas moved; kubectl keeps the rest.
    let entries = mf(&out);
    assert_eq!(entries[0]["manager"], "kubectl");
    assert_eq!(entries[0]["fieldsV1"]["f:spec"].get("f:replicas"), None);
    assert_eq!(entries[1]["manager"], "scaler");
    assert_eq!(entries[1]["fieldsV1"], json!({"f:spec":{"f:replicas":{}}}));
}

#[test]
fn conflict_with_another_apply_manager() {
    let s = builtin_merge_schema("apps", "Deployment");
    let live = apply(None, &deploy(3, "app:1"), &opts("kubectl", T1), &*s).unwrap_or_default();
    let err = apply(Some(&live), &deploy(5, "app:1"), &opts("other", T2), &*s)
        .err()
        .unwrap_or_else(|| StatusError::new(0, "", ""));
    assert_eq!(err.code, 409);
    assert_eq!(err.reason, "Conflict");
    assert_eq!(
        err.message,
        "Apply failed with 1 conflict: conflict with \"kubectl\": .spec.replicas"
    );
    assert_eq!(
        err.details,
        Some(
            json!({"causes":[{"reason":"FieldManagerConflict","message":"conflict with \"kubectl\"","field":".spec.replicas"}]})
        )
    );
    // Same values are shared, not conflicting.
    let shared = apply(Some(&live), &deploy(3, "app:1"), &opts("other", T2), &*s);
    assert!(shared.is_ok());
}

#[test]
fn conflict_with_an_update_manager_names_its_api_version() {
    let s = builtin_merge_schema("apps", "Deployment");
    let mut live = deploy(3, "app:1");
    track_update(None, &mut live, &upd("kube-controller", T1), &*s);
    assert_eq!(mf(&live)[0]["operation"], "Update");
    // Update entries mark added maps with ".".
    assert_eq!(mf(&live)[0]["fieldsV1"]["f:spec"]["."], json!({}));
    let err = apply(Some(&live), &deploy(5, "app:2"), &opts("kubectl", T2), &*s)
        .err()
        .unwrap_or_else(|| StatusError::new(0, "", ""));
    assert_eq!(
        err.message,
        "Apply failed with 2 conflicts: conflicts with \"kube-controller\" using apps/v1:\n- .spec.replicas\n- .spec.template.spec.containers[name=\"app\"].image"
    );
    let causes = err.details.unwrap_or_default()["causes"].clone();
    assert_eq!(
        causes[0]["message"],
        "conflict with \"kube-controller\" using apps/v1"
    );
    assert_eq!(
        causes[1]["field"],
        ".spec.template.spec.containers[name=\"app\"].image"
    );
}

#[test]
fn force_steals_and_drops_emptied_entries() {
    let s = builtin_merge_schema("apps", "Deployment");
    let live = json!({"apiVersion":"apps/v1","kind":"Deployment","metadata":{"name":"d"},"spec":{"replicas":1}});
    let live = apply(Some(&live), &live.clone(), &opts("a", T1), &*s).unwrap_or_default();
    let mut o = opts("b", T2);
    o.force = true;
    let body = json!({"apiVersion":"apps/v1","kind":"Deployment","metadata":{"name":"d"},"spec":{"replicas":2}});
    let out = apply(Some(&live), &body, &o, &*s).unwrap_or_default();
    assert_eq!(out["spec"]["replicas"], 2);
    let entries = mf(&out);
    assert_eq!(entries.as_array().map(Vec::len), Some(1));
    assert_eq!(entries[0]["manager"], "b");
}

#[test]
fn fields_dropped_from_a_later_apply_are_removed_unless_co_owned() {
    let s = builtin_merge_schema("", "ConfigMap");
    let o = |m| ApplyOptions {
        api_version: "v1",
        ..opts(m, T1)
    };
    let cm = |data: Value| json!({"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"c"},"data":data});
    let live =
        apply(None, &cm(json!({"a":"1","b":"2","c":"3"})), &o("one"), &*s).unwrap_or_default();
    // "two" co-owns c with the same value.
    let live = apply(Some(&live), &cm(json!({"c":"3"})), &o("two"), &*s).unwrap_or_default();
    let out = apply(Some(&live), &cm(json!({"a":"1"})), &o("one"), &*s).unwrap_or_default();
    assert_eq!(out["data"], json!({"a":"1","c":"3"}));
    // Dropping everything removes the emptied parent too.
    let out = apply(
        Some(&out),
        &json!({"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"c"}}),
        &o("one"),
        &*s,
    )
    .unwrap_or_default();
    assert_eq!(out["data"], json!({"c":"3"}));
    let only = apply(None, &cm(json!({"a":"1"})), &o("one"), &*s).unwrap_or_default();
    let gone = apply(
        Some(&only),
        &json!({"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"c"}}),
        &o("one"),
        &*s,
    )
    .unwrap_or_default();
    assert_eq!(gone.get("data"), None);
    assert_eq!(gone["metadata"].get("managedFields"), None);
}

#[test]
fn map_lists_merge_by_key_and_sets_by_value() {
    let s = builtin_merge_schema("apps", "Deployment");
    let two = json!({"apiVersion":"apps/v1","kind":"Deployment","metadata":{"name":"d","finalizers":["x"]},
        "spec":{"template":{"spec":{"containers":[{"name":"a","image":"a:1"},{"name":"b","image":"b:1"}]}}}});
    let live = apply(None, &two, &opts("one", T1), &*s).unwrap_or_default();
    // Another manager adds container c and finalizer y.
    let add = json!({"apiVersion":"apps/v1","kind":"Deployment","metadata":{"name":"d","finalizers":["y"]},
        "spec":{"template":{"spec":{"containers":[{"name":"c","image":"c:1"}]}}}});
    let out = apply(Some(&live), &add, &opts("two", T2), &*s).unwrap_or_default();
    let names: Vec<Value> = out["spec"]["template"]["spec"]["containers"]
        .as_array()
        .map(|a| a.iter().map(|c| c["name"].clone()).collect())
        .unwrap_or_default();
    assert_eq!(names, vec![json!("a"), json!("b"), json!("c")]);
    assert_eq!(out["metadata"]["finalizers"], json!(["x", "y"]));
    let two_fields = &mf(&out)[1]["fieldsV1"];
    assert_eq!(
        two_fields["f:metadata"]["f:finalizers"],
        json!({"v:\"y\"": {}})
    );
    // "one" drops container b: it goes, c (owned by two) stays.
    let one_again = json!({"apiVersion":"apps/v1","kind":"Deployment","metadata":{"name":"d","finalizers":["x"]},
        "spec":{"template":{"spec":{"containers":[{"name":"a","image":"a:1"}]}}}});
    let out = apply(Some(&out), &one_again, &opts("one", T2), &*s).unwrap_or_default();
    let names: Vec<Value> = out["spec"]["template"]["spec"]["containers"]
        .as_array()
        .map(|a| a.iter().map(|c| c["name"].clone()).collect())
        .unwrap_or_default();
    assert_eq!(names, vec![json!("a"), json!("c")]);
}

#[test]
fn ignored_top_level_fields_are_neither_merged_nor_owned() {
    let s = builtin_merge_schema("example.com", "Widget");
    let o = ApplyOptions {
        api_version: "example.com/v1",
        ignored_top_level: &["status"],
        ..opts("op", T1)
    };
    let body = json!({"apiVersion":"example.com/v1","kind":"Widget","metadata":{"name":"w"},
        "spec":{"size":1},"status":{"ready":true}});
    let out = apply(None, &body, &o, &*s).unwrap_or_default();
    assert_eq!(out.get("status"), None);
    assert_eq!(mf(&out)[0]["fieldsV1"], json!({"f:spec":{"f:size":{}}}));
    // On /status everything but status is ignored and the entry names the subresource.
    let o = ApplyOptions {
        api_version: "example.com/v1",
        subresource: Some("status"),
        ignored_top_level: &["apiVersion", "kind", "metadata", "spec"],
        ..opts("op", T2)
    };
    let st = apply(Some(&out), &body, &o, &*s).unwrap_or_default();
    assert_eq!(st["status"], json!({"ready":true}));
    assert_eq!(st["spec"], json!({"size":1}));
    let entries = mf(&st);
    assert_eq!(entries[1]["subresource"], "status");
    assert_eq!(entries[1]["fieldsV1"], json!({"f:status":{"f:ready":{}}}));
}

#[test]
fn apply_rejects_managed_fields_and_wrong_versions() {
    let s = builtin_merge_schema("apps", "Deployment");
    let mut body = deploy(1, "x");
    body["metadata"]["managedFields"] = json!([]);
    let e = apply(None, &body, &opts("m", T1), &*s)
        .err()
        .map(|e| (e.code, e.message));
    assert_eq!(
        e,
        Some((400, "metadata.managedFields must be nil".to_string()))
    );
    let mut body = deploy(1, "x");
    body["apiVersion"] = json!("apps/v2");
    let e = apply(None, &body, &opts("m", T1), &*s)
        .err()
        .map(|e| e.message);
    assert_eq!(
        e.as_deref(),
        Some("invalid object type: apps/v2, Kind=Deployment")
    );
}

#[test]
fn track_update_records_steals_and_keeps_times_on_no_ops() {
    let s = builtin_merge_schema("", "ConfigMap");
    let u = |m, t| UpdateOptions {
        api_version: "v1",
        ..upd(m, t)
    };
    let mut created = json!({"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"c","annotations":{"x":"1"}},"data":{"a":"1"}});
    track_update(None, &mut created, &u("kubectl-client-side-apply", T1), &*s);
    assert_eq!(
        mf(&created),
        json!([{"manager":"kubectl-client-side-apply","operation":"Update","apiVersion":"v1","time":T1,
            "fieldsType":"FieldsV1","fieldsV1":{"f:data":{".":{},"f:a":{}},"f:metadata":{"f:annotations":{".":{},"f:x":{}}}}}])
    );
    // A no-op write at a later time keeps the entry byte-identical.
    let mut same = created.clone();
    track_update(
        Some(&created),
        &mut same,
        &u("kubectl-client-side-apply", T2),
        &*s,
    );
    assert_eq!(same, created);
    // Without managedFields in the request the stored ones are kept (clients unaware of them).
    let mut unaware = created.clone();
    unaware["metadata"]
        .as_object_mut()
        .map(|m| m.shift_remove("managedFields"));
    track_update(
        Some(&created),
        &mut unaware,
        &u("kubectl-client-side-apply", T2),
        &*s,
    );
    assert_eq!(unaware, created);
    // kubectl annotate changes one annotation: it takes it over, the time moves for it only.
    let mut annotated = created.clone();
    annotated["metadata"]["annotations"]["x"] = json!("2");
    track_update(
        Some(&created),
        &mut annotated,
        &u("kubectl-annotate", T2),
        &*s,
    );
    let e = mf(&annotated);
    assert_eq!(e[0]["manager"], "kubectl-client-side-apply");
    assert_eq!(e[0]["time"], T1);
    assert_eq!(
        e[0]["fieldsV1"],
        // The annotations map itself stays owned: a member without children is `{}`.
        json!({"f:data":{".":{},"f:a":{}},"f:metadata":{"f:annotations":{}}})
    );
    assert_eq!(e[1]["manager"], "kubectl-annotate");
    assert_eq!(
        e[1]["fieldsV1"],
        json!({"f:metadata":{"f:annotations":{"f:x":{}}}})
    );
    // Removing a field drops it from every owner.
    let mut removed = annotated.clone();
    removed["metadata"]["annotations"]
        .as_object_mut()
        .map(|m| m.shift_remove("x"));
    track_update(Some(&annotated), &mut removed, &u("editor", T2), &*s);
    let managers: Vec<Value> = mf(&removed)
        .as_array()
        .map(|a| a.iter().map(|e| e["manager"].clone()).collect())
        .unwrap_or_default();
    assert_eq!(managers, vec![json!("kubectl-client-side-apply")]);
}

#[test]
fn managed_fields_reset_requests() {
    let s = builtin_merge_schema("", "ConfigMap");
    let u = UpdateOptions {
        api_version: "v1",
        ..upd("m", T1)
    };
    let mut live =
        json!({"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"c"},"data":{"a":"1"}});
    track_update(None, &mut live, &u, &*s);
    assert!(mf(&live).is_array());
    for reset in [json!([{}]), json!([])] {
        let mut req = live.clone();
        req["metadata"]["managedFields"] = reset.clone();
        assert!(reset_managed_fields_request(&req));
        track_update(Some(&live), &mut req, &u, &*s);
        assert_eq!(req["metadata"].get("managedFields"), None, "{reset}");
    }
    let mut absent = live.clone();
    absent["metadata"]
        .as_object_mut()
        .map(|m| m.shift_remove("managedFields"));
    assert!(!reset_managed_fields_request(&absent));
    assert!(!reset_managed_fields_request(&live));
}

#[test]
fn manager_names() {
    assert_eq!(manager_name(Some("op"), Some("kubectl/v1.32.4")), "op");
    assert_eq!(
        manager_name(
            None,
            Some("kubectl/v1.32.4 (linux/amd64) kubernetes/4cb5f07")
        ),
        "kubectl"
    );
    assert_eq!(manager_name(Some(""), Some("kube-rs")), "kube-rs");
    assert_eq!(manager_name(None, None), "");
    assert_eq!(manager_name(None, Some(&"x".repeat(200))).len(), 128);
}

#[test]
fn conflict_messages_name_subresources_and_group_by_manager() {
    let s = builtin_merge_schema("example.com", "Widget");
    let status_apply = ApplyOptions {
        api_version: "example.com/v1",
        subresource: Some("status"),
        ignored_top_level: &["apiVersion", "kind", "metadata", "spec"],
        ..opts("controller", T1)
    };
    let w = |ready: bool, phase: &str| {
        json!({"apiVersion":"example.com/v1","kind":"Widget","metadata":{"name":"w"},
               "status":{"ready":ready,"phase":phase}})
    };
    let live = apply(None, &w(true, "Up"), &status_apply, &*s).unwrap_or_default();
    // A status Update by another manager shares nothing yet: it takes "phase".
    let mut updated = live.clone();
    updated["status"]["phase"] = json!("Down");
    track_update(
        Some(&live),
        &mut updated,
        &UpdateOptions {
            api_version: "example.com/v1",
            subresource: Some("status"),
            ignored_top_level: &["apiVersion", "kind", "metadata", "spec"],
            ..upd("kubectl-edit", T2)
        },
        &*s,
    );
    let mut o = status_apply;
    o.manager = "other";
    let err = apply(Some(&updated), &w(false, "Gone"), &o, &*s)
        .err()
        .map(|e| e.message)
        .unwrap_or_default();
    assert_eq!(
        err,
        "Apply failed with 2 conflicts: conflicts with \"controller\" with subresource \"status\":\n- .status.ready\nconflicts with \"kubectl-edit\" with subresource \"status\" using example.com/v1:\n- .status.phase"
    );
}

#[test]
fn subresource_updates_ignore_request_managed_fields() {
    let s = builtin_merge_schema("", "ConfigMap");
    let u = UpdateOptions {
        api_version: "v1",
        ..upd("m", T1)
    };
    let mut live =
        json!({"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"c"},"data":{"a":"1"}});
    track_update(None, &mut live, &u, &*s);
    let mut req = live.clone();
    req["metadata"]["managedFields"] = json!([{}]);
    track_update(
        Some(&live),
        &mut req,
        &UpdateOptions {
            subresource: Some("status"),
            ..u
        },
        &*s,
    );
    assert_eq!(mf(&req), mf(&live));
}
