//! Reference §3 (metadata), §4 (writes): POST, PUT, JSON patch (evanphx v4), merge patch,
//! strategic merge patch, server-side apply, dryRun, fieldValidation, no-op writes.
//! Each MUST has a positive and a negative test asserting code, reason and message.

mod common;

use std::time::Duration;

use common::*;
use futures::StreamExt;
use http::Method;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, WatchEvent, WatchParams};
use serde_json::{Value, json};

const NS: &str = "writes";

fn cm(name: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}, "data": {"a": "1"}})
}

fn cms(ns: &str) -> String {
    format!("/api/v1/namespaces/{ns}/configmaps")
}

// ---------------------------------------------------------------------------------------------
// §3.1 / §4.1 create

#[tokio::test]
async fn create_sets_server_fields_and_answers_201() {
    let sim = sim_with_ns("w-create").await;
    let c = sim.client();
    let mut body = cm("a");
    body["metadata"]["uid"] = json!("client-uid");
    body["metadata"]["creationTimestamp"] = json!("2000-01-01T00:00:00Z");
    let r = post(&c, &cms("w-create"), body).await;
    assert_eq!(r.code, 201, "{}", r.text);
    let v = r.json();
    assert_ne!(v["metadata"]["uid"], "client-uid");
    assert_ne!(v["metadata"]["creationTimestamp"], "2000-01-01T00:00:00Z");
    let ts = v["metadata"]["creationTimestamp"].as_str().unwrap();
    assert_eq!(ts.len(), 20, "seconds precision: {ts}");
    assert!(
        v["metadata"]["resourceVersion"]
            .as_str()
            .unwrap()
            .parse::<u64>()
            .is_ok()
    );
    assert!(
        v["metadata"].get("generation").is_none(),
        "ConfigMaps have no generation"
    );
    assert_eq!(v["metadata"]["namespace"], "w-create");
    assert_eq!(v["apiVersion"], "v1");
    assert_eq!(v["kind"], "ConfigMap");
    assert_eq!(v["metadata"]["managedFields"][0]["operation"], "Update");
}

#[tokio::test]
async fn create_errors_have_upstream_status() {
    let sim = sim_with_ns("w-create-neg").await;
    let c = sim.client();
    let p = cms("w-create-neg");
    assert_eq!(post(&c, &p, cm("a")).await.code, 201);
    post(&c, &p, cm("a")).await.assert_status(
        409,
        "AlreadyExists",
        "configmaps \"a\" already exists",
    );
    let mut with_rv = cm("b");
    with_rv["metadata"]["resourceVersion"] = json!("5");
    post(&c, &p, with_rv).await.assert_status(
        500,
        "InternalError",
        "Internal error occurred: resourceVersion should not be set on objects to be created",
    );
    let mut other_ns = cm("c");
    other_ns["metadata"]["namespace"] = json!("elsewhere");
    post(&c, &p, other_ns).await.assert_status(
        400,
        "BadRequest",
        "the namespace of the provided object does not match the namespace sent on the request",
    );
    post(&c, "/api/v1/namespaces/nope/configmaps", cm("d"))
        .await
        .assert_status(404, "NotFound", "namespaces \"nope\" not found");
    let mut wrong_version = cm("e");
    wrong_version["apiVersion"] = json!("v2");
    post(&c, &p, wrong_version).await.assert_status(
        400,
        "BadRequest",
        "the API version in the data (v2) does not match the expected API version (v1)",
    );
    let mut no_name = cm("x");
    no_name["metadata"] = json!({});
    let r = post(&c, &p, no_name).await;
    r.assert_status(
        422,
        "Invalid",
        "ConfigMap \"\" is invalid: metadata.name: Required value: name or generateName is required",
    );
    assert_eq!(
        r.json()["details"]["causes"][0]["reason"],
        "FieldValueRequired"
    );
    assert_eq!(r.json()["details"]["causes"][0]["field"], "metadata.name");
    let r = post(&c, &p, cm("Bad_Name")).await;
    assert_eq!(r.code, 422);
    assert!(
        r.message().starts_with(
            "ConfigMap \"Bad_Name\" is invalid: metadata.name: Invalid value: \"Bad_Name\": a lowercase RFC 1123 subdomain must consist of"
        ),
        "{}",
        r.message()
    );
    let r = raw(
        &c,
        Method::POST,
        &p,
        Some("application/json"),
        Some(json!("{not json")),
    )
    .await;
    assert_eq!(r.code, 400);
    assert_eq!(r.reason(), "BadRequest");
}

#[tokio::test]
async fn generate_name_appends_five_chars() {
    let sim = sim_with_ns("w-gen").await;
    let c = sim.client();
    let body =
        json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"generateName": "web-"}});
    let r = post(&c, &cms("w-gen"), body).await;
    assert_eq!(r.code, 201);
    let name = r.json()["metadata"]["name"].as_str().unwrap().to_string();
    assert_eq!(name.len(), 9);
    assert!(name.starts_with("web-"));
    assert!(
        name[4..]
            .chars()
            .all(|ch| "bcdfghjklmnpqrstvwxz2456789".contains(ch))
    );
    // Negative: an invalid prefix.
    let bad =
        json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"generateName": "Web_"}});
    let r = post(&c, &cms("w-gen"), bad).await;
    assert_eq!(r.code, 422);
    assert_eq!(r.reason(), "Invalid");
    assert!(
        r.message()
            .contains("metadata.generateName: Invalid value: \"Web_\""),
        "{}",
        r.message()
    );
}

// ---------------------------------------------------------------------------------------------
// §4.2 PUT

#[tokio::test]
async fn put_with_current_rv_succeeds_and_stale_rv_conflicts() {
    let sim = sim_with_ns(NS).await;
    let c = sim.client();
    let created = post(&c, &cms(NS), cm("p")).await.json();
    let mut upd = created.clone();
    upd["data"]["a"] = json!("2");
    let r = put(&c, &format!("{}/p", cms(NS)), upd.clone()).await;
    assert_eq!(r.code, 200, "{}", r.text);
    assert_ne!(
        r.json()["metadata"]["resourceVersion"],
        created["metadata"]["resourceVersion"]
    );
    // Negative: the same (now stale) resourceVersion again.
    upd["data"]["a"] = json!("3");
    put(&c, &format!("{}/p", cms(NS)), upd).await.assert_status(
        409,
        "Conflict",
        "Operation cannot be fulfilled on configmaps \"p\": the object has been modified; please apply your changes to the latest version and try again",
    );
}

#[tokio::test]
async fn put_errors() {
    let sim = sim_with_ns("w-put").await;
    let c = sim.client();
    put(&c, &format!("{}/missing", cms("w-put")), cm("missing"))
        .await
        .assert_status(404, "NotFound", "configmaps \"missing\" not found");
    post(&c, &cms("w-put"), cm("n")).await;
    put(&c, &format!("{}/n", cms("w-put")), cm("other"))
        .await
        .assert_status(
            400,
            "BadRequest",
            "the name of the object (other) does not match the name on the URL (n)",
        );
    // Built-ins allow an unconditional PUT (no resourceVersion): last write wins.
    let r = put(&c, &format!("{}/n", cms("w-put")), cm("n")).await;
    assert_eq!(r.code, 200, "{}", r.text);
    // Custom resources do not.
    install_widgets(&c).await;
    let wp = "/apis/example.com/v1/namespaces/w-put/widgets";
    assert_eq!(post(&c, wp, widget("w-put", "w")).await.code, 201);
    put(&c, &format!("{wp}/w"), widget("w-put", "w")).await.assert_status(
        422,
        "Invalid",
        "widgets.example.com \"w\" is invalid: metadata.resourceVersion: Invalid value: 0x0: must be specified for an update",
    );
}

// ---------------------------------------------------------------------------------------------
// §3.3 no-op writes (MUST)

async fn next_event(
    stream: &mut (impl futures::Stream<Item = kube::Result<WatchEvent<ConfigMap>>> + Unpin),
    wait: Duration,
) -> Option<WatchEvent<ConfigMap>> {
    tokio::time::timeout(wait, stream.next())
        .await
        .ok()
        .flatten()
        .and_then(Result::ok)
}

#[tokio::test]
async fn noop_write_keeps_rv_and_sends_no_event() {
    let sim = sim_with_ns("w-noop").await;
    let c = sim.client();
    let created = post(&c, &cms("w-noop"), cm("n")).await.json();
    let rv = created["metadata"]["resourceVersion"]
        .as_str()
        .unwrap()
        .to_string();
    let api: Api<ConfigMap> = Api::namespaced(c.clone(), "w-noop");
    let mut stream = api
        .watch(&WatchParams::default().timeout(10), &rv)
        .await
        .unwrap()
        .boxed();
    // PUT of the identical object, a merge patch setting the same value, an SSA twice.
    let r = put(&c, &format!("{}/n", cms("w-noop")), created.clone()).await;
    assert_eq!(
        r.json()["metadata"]["resourceVersion"],
        rv.as_str(),
        "PUT no-op"
    );
    let r = patch(
        &c,
        &format!("{}/n", cms("w-noop")),
        MERGE,
        json!({"data": {"a": "1"}}),
    )
    .await;
    assert_eq!(
        r.json()["metadata"]["resourceVersion"],
        rv.as_str(),
        "merge no-op"
    );
    let r = patch(
        &c,
        &format!("{}/n", cms("w-noop")),
        JSON_PATCH,
        json!([{"op": "replace", "path": "/data/a", "value": "1"}]),
    )
    .await;
    assert_eq!(
        r.json()["metadata"]["resourceVersion"],
        rv.as_str(),
        "json patch no-op"
    );
    assert!(
        next_event(&mut stream, Duration::from_millis(300))
            .await
            .is_none(),
        "no watch event"
    );
    assert_eq!(
        sim.resource_version().to_string(),
        rv,
        "global RV unchanged"
    );
}

#[tokio::test]
async fn real_change_bumps_rv_and_sends_modified() {
    let sim = sim_with_ns("w-change").await;
    let c = sim.client();
    let created = post(&c, &cms("w-change"), cm("n")).await.json();
    let rv = created["metadata"]["resourceVersion"]
        .as_str()
        .unwrap()
        .to_string();
    let api: Api<ConfigMap> = Api::namespaced(c.clone(), "w-change");
    let mut stream = api
        .watch(&WatchParams::default().timeout(10), &rv)
        .await
        .unwrap()
        .boxed();
    let r = patch(
        &c,
        &format!("{}/n", cms("w-change")),
        MERGE,
        json!({"data": {"a": "2"}}),
    )
    .await;
    let new_rv = r.json()["metadata"]["resourceVersion"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(new_rv.parse::<u64>().unwrap() > rv.parse::<u64>().unwrap());
    match next_event(&mut stream, Duration::from_secs(3)).await {
        Some(WatchEvent::Modified(o)) => {
            assert_eq!(
                o.metadata.resource_version.as_deref(),
                Some(new_rv.as_str())
            )
        }
        other => panic!("expected MODIFIED, got {other:?}"),
    }
}

// ---------------------------------------------------------------------------------------------
// §4.3 JSON patch, evanphx v4 (MUST)

#[tokio::test]
async fn json_patch_test_null_on_missing_member_passes_and_finalizers_normalise() {
    let sim = sim_with_ns("w-jp").await;
    let c = sim.client();
    post(&c, &cms("w-jp"), cm("f")).await;
    let path = format!("{}/f", cms("w-jp"));
    // kube-runtime's first-finalizer add.
    let add = json!([{"op": "test", "path": "/metadata/finalizers", "value": null},
                     {"op": "add", "path": "/metadata/finalizers", "value": ["x.io/f"]}]);
    let r = patch(&c, &path, JSON_PATCH, add.clone()).await;
    assert_eq!(r.code, 200, "{}", r.text);
    assert_eq!(r.json()["metadata"]["finalizers"], json!(["x.io/f"]));
    // kube-runtime's removal.
    let rm = json!([{"op": "test", "path": "/metadata/finalizers/0", "value": "x.io/f"},
                    {"op": "remove", "path": "/metadata/finalizers/0"}]);
    let r = patch(&c, &path, JSON_PATCH, rm).await;
    assert_eq!(r.code, 200, "{}", r.text);
    assert!(
        r.json()["metadata"].get("finalizers").is_none(),
        "empty list normalised away: {}",
        r.text
    );
    // And the test-null passes again.
    let r = patch(&c, &path, JSON_PATCH, add).await;
    assert_eq!(r.code, 200, "{}", r.text);
}

#[tokio::test]
async fn json_patch_failures_are_422_generic_and_malformed_is_400() {
    let sim = sim_with_ns("w-jp-neg").await;
    let c = sim.client();
    post(&c, &cms("w-jp-neg"), cm("f")).await;
    let path = format!("{}/f", cms("w-jp-neg"));
    // test on a missing parent container.
    let r = patch(
        &c,
        &path,
        JSON_PATCH,
        json!([{"op": "test", "path": "/spec/x", "value": null}]),
    )
    .await;
    r.assert_status(
        422,
        "Invalid",
        "the server rejected our request due to an error in our request",
    );
    // test with a different value.
    let r = patch(
        &c,
        &path,
        JSON_PATCH,
        json!([{"op": "test", "path": "/data/a", "value": "2"}]),
    )
    .await;
    r.assert_status(
        422,
        "Invalid",
        "the server rejected our request due to an error in our request",
    );
    // remove on a missing path.
    let r = patch(
        &c,
        &path,
        JSON_PATCH,
        json!([{"op": "remove", "path": "/data/zz"}]),
    )
    .await;
    assert_eq!((r.code, r.reason()), (422, "Invalid".to_string()));
    // Malformed JSON.
    let r = raw(
        &c,
        Method::PATCH,
        &path,
        Some(JSON_PATCH),
        Some(json!("[{")),
    )
    .await;
    assert_eq!(
        (r.code, r.reason()),
        (400, "BadRequest".to_string()),
        "{}",
        r.text
    );
    // A patch that sets a different resourceVersion is a precondition.
    let r = patch(
        &c,
        &path,
        JSON_PATCH,
        json!([{"op": "replace", "path": "/metadata/resourceVersion", "value": "1"}]),
    )
    .await;
    assert_eq!(
        (r.code, r.reason()),
        (409, "Conflict".to_string()),
        "{}",
        r.text
    );
    // Missing object.
    let r = patch(
        &c,
        &format!("{}/none", cms("w-jp-neg")),
        JSON_PATCH,
        json!([]),
    )
    .await;
    r.assert_status(404, "NotFound", "configmaps \"none\" not found");
}

// ---------------------------------------------------------------------------------------------
// §4.4 merge patch, §4.5 strategic merge patch

#[tokio::test]
async fn merge_and_strategic_patches() {
    let sim = sim_with_ns("w-merge").await;
    let c = sim.client();
    let mut body = cm("m");
    body["metadata"]["finalizers"] = json!(["a.io/x"]);
    post(&c, &cms("w-merge"), body).await;
    let path = format!("{}/m", cms("w-merge"));
    let r = patch(
        &c,
        &path,
        MERGE,
        json!({"data": {"a": null, "b": "2"}, "metadata": {"annotations": {"k": "v"}}}),
    )
    .await;
    assert_eq!(r.code, 200);
    assert_eq!(r.json()["data"], json!({"b": "2"}));
    // SMP: finalizers merge as a set ("adds", upstream order: patch items first).
    let r = patch(
        &c,
        &path,
        SMP,
        json!({"metadata": {"finalizers": ["b.io/y"]}}),
    )
    .await;
    assert_eq!(r.code, 200, "{}", r.text);
    assert_eq!(
        r.json()["metadata"]["finalizers"],
        json!(["b.io/y", "a.io/x"])
    );
    // Merge patch replaces lists wholesale.
    let r = patch(
        &c,
        &path,
        MERGE,
        json!({"metadata": {"finalizers": ["c.io/z"]}}),
    )
    .await;
    assert_eq!(r.json()["metadata"]["finalizers"], json!(["c.io/z"]));
    // Negative: SMP on a custom resource is 415.
    install_widgets(&c).await;
    post(
        &c,
        "/apis/example.com/v1/namespaces/w-merge/widgets",
        widget("w-merge", "w"),
    )
    .await;
    let r = patch(
        &c,
        "/apis/example.com/v1/namespaces/w-merge/widgets/w",
        SMP,
        json!({"spec": {"size": 1}}),
    )
    .await;
    r.assert_status(
        415,
        "UnsupportedMediaType",
        "the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml",
    );
    // Unknown patch type.
    let r = patch(&c, &path, "application/x-unknown", json!({})).await;
    assert_eq!(
        (r.code, r.reason()),
        (415, "UnsupportedMediaType".to_string())
    );
}

// ---------------------------------------------------------------------------------------------
// §4.6 server-side apply

#[tokio::test]
async fn ssa_creates_updates_and_tracks_managers() {
    let sim = sim_with_ns("w-ssa").await;
    let c = sim.client();
    let path = format!("{}/s?fieldManager=alice", cms("w-ssa"));
    let body = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "s"}, "data": {"a": "1"}});
    let r = patch(&c, &path, APPLY, body.clone()).await;
    assert_eq!(r.code, 201, "apply creates: {}", r.text);
    let rv = r.json()["metadata"]["resourceVersion"].clone();
    let mf = &r.json()["metadata"]["managedFields"][0];
    assert_eq!(mf["manager"], "alice");
    assert_eq!(mf["operation"], "Apply");
    let r = patch(&c, &path, APPLY, body).await;
    assert_eq!(r.code, 200);
    assert_eq!(
        r.json()["metadata"]["resourceVersion"],
        rv,
        "same apply = no-op"
    );
    // YAML body.
    let yaml =
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: s\ndata:\n  a: \"1\"\n  b: \"2\"\n";
    let r = raw(&c, Method::PATCH, &path, Some(APPLY), Some(json!(yaml))).await;
    assert_eq!(r.code, 200, "{}", r.text);
    assert_eq!(r.json()["data"]["b"], "2");
}

#[tokio::test]
async fn ssa_errors_conflicts_and_force() {
    let sim = sim_with_ns("w-ssa-neg").await;
    let c = sim.client();
    let base = cms("w-ssa-neg");
    let body = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "s"}, "data": {"a": "1"}});
    // No fieldManager.
    patch(&c, &format!("{base}/s"), APPLY, body.clone()).await.assert_status(
        422,
        "Invalid",
        "PatchOptions.meta.k8s.io \"\" is invalid: fieldManager: Required value: is required for apply patch",
    );
    // force with a non-apply patch.
    patch(&c, &format!("{base}/s?force=true"), MERGE, json!({})).await.assert_status(
        422,
        "Invalid",
        "PatchOptions.meta.k8s.io \"\" is invalid: force: Forbidden: may not be specified for non-apply patch",
    );
    assert_eq!(
        patch(&c, &format!("{base}/s?fieldManager=alice"), APPLY, body)
            .await
            .code,
        201
    );
    let bob = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "s"}, "data": {"a": "2"}});
    let r = patch(
        &c,
        &format!("{base}/s?fieldManager=bob"),
        APPLY,
        bob.clone(),
    )
    .await;
    r.assert_status(
        409,
        "Conflict",
        "Apply failed with 1 conflict: conflict with \"alice\": .data.a",
    );
    assert_eq!(
        r.json()["details"]["causes"][0]["reason"],
        "FieldManagerConflict"
    );
    assert_eq!(r.json()["details"]["causes"][0]["field"], ".data.a");
    let r = patch(
        &c,
        &format!("{base}/s?fieldManager=bob&force=true"),
        APPLY,
        bob,
    )
    .await;
    assert_eq!(r.code, 200);
    assert_eq!(r.json()["data"]["a"], "2");
    // An Update manager conflicts "using v1".
    patch(
        &c,
        &format!("{base}/s?fieldManager=carol"),
        MERGE,
        json!({"data": {"c": "x"}}),
    )
    .await;
    let dave = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "s"}, "data": {"c": "y"}});
    patch(&c, &format!("{base}/s?fieldManager=dave"), APPLY, dave)
        .await
        .assert_status(
            409,
            "Conflict",
            "Apply failed with 1 conflict: conflict with \"carol\" using v1: .data.c",
        );
    // Name mismatch.
    let other = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "zz"}});
    patch(&c, &format!("{base}/new?fieldManager=a"), APPLY, other)
        .await
        .assert_status(
            400,
            "BadRequest",
            "the name of the object (zz) does not match the name on the URL (new)",
        );
}

// ---------------------------------------------------------------------------------------------
// §4.7 dryRun

#[tokio::test]
async fn dry_run_persists_nothing() {
    let sim = sim_with_ns("w-dry").await;
    let c = sim.client();
    let before = sim.resource_version();
    let r = post(&c, &format!("{}?dryRun=All", cms("w-dry")), cm("d")).await;
    assert_eq!(r.code, 201);
    assert!(r.json()["metadata"].get("resourceVersion").is_none());
    assert!(r.json()["metadata"]["uid"].is_string());
    assert_eq!(sim.resource_version(), before);
    get(&c, &format!("{}/d", cms("w-dry"))).await.assert_status(
        404,
        "NotFound",
        "configmaps \"d\" not found",
    );
    post(&c, &cms("w-dry"), cm("d")).await;
    let before = sim.resource_version();
    let r = patch(
        &c,
        &format!("{}/d?dryRun=All", cms("w-dry")),
        MERGE,
        json!({"data": {"a": "9"}}),
    )
    .await;
    assert_eq!(r.json()["data"]["a"], "9");
    let r = delete(&c, &format!("{}/d?dryRun=All", cms("w-dry")), None).await;
    assert_eq!(r.code, 200);
    assert_eq!(sim.resource_version(), before);
    assert_eq!(
        get(&c, &format!("{}/d", cms("w-dry"))).await.json()["data"]["a"],
        "1"
    );
}

#[tokio::test]
async fn dry_run_bad_value_is_422() {
    let sim = sim_with_ns("w-dry-neg").await;
    let c = sim.client();
    post(&c, &format!("{}?dryRun=Some", cms("w-dry-neg")), cm("d")).await.assert_status(
        422,
        "Invalid",
        "CreateOptions.meta.k8s.io \"\" is invalid: dryRun: Unsupported value: \"Some\": supported values: \"All\"",
    );
    post(&c, &format!("{}?fieldValidation=Loose", cms("w-dry-neg")), cm("d")).await.assert_status(
        422,
        "Invalid",
        "CreateOptions.meta.k8s.io \"\" is invalid: fieldValidation: Unsupported value: \"Loose\": supported values: \"\", \"Ignore\", \"Strict\", \"Warn\"",
    );
}

// ---------------------------------------------------------------------------------------------
// §4.8 fieldValidation (MUST)

#[tokio::test]
async fn field_validation_warn_and_ignore_drop_unknown_fields() {
    let sim = sim_with_ns("w-fv").await;
    let c = sim.client();
    let mut body = cm("u");
    body["bogus"] = json!(1);
    let r = post(&c, &cms("w-fv"), body.clone()).await;
    assert_eq!(r.code, 201);
    assert!(r.json().get("bogus").is_none());
    assert_eq!(
        r.header("warning").as_deref(),
        Some("299 - \"unknown field \\\"bogus\\\"\"")
    );
    body["metadata"]["name"] = json!("u2");
    let r = post(&c, &format!("{}?fieldValidation=Ignore", cms("w-fv")), body).await;
    assert_eq!(r.code, 201);
    assert!(r.header("warning").is_none());
    // Custom resources: unknown fields pruned and reported.
    install_widgets(&c).await;
    let mut w = widget("w-fv", "w");
    w["spec"]["bogus"] = json!(true);
    let r = post(&c, "/apis/example.com/v1/namespaces/w-fv/widgets", w).await;
    assert_eq!(r.code, 201, "{}", r.text);
    assert!(r.json()["spec"].get("bogus").is_none());
    assert_eq!(
        r.header("warning").as_deref(),
        Some("299 - \"unknown field \\\"spec.bogus\\\"\"")
    );
}

#[tokio::test]
async fn field_validation_strict_rejects_unknown_fields() {
    let sim = sim_with_ns("w-fv-neg").await;
    let c = sim.client();
    let mut body = cm("u");
    body["bogus"] = json!(1);
    post(
        &c,
        &format!("{}?fieldValidation=Strict", cms("w-fv-neg")),
        body,
    )
    .await
    .assert_status(
        400,
        "BadRequest",
        "ConfigMap in version \"v1\" cannot be handled as a ConfigMap: strict decoding error: unknown field \"bogus\"",
    );
    install_widgets(&c).await;
    let mut w = widget("w-fv-neg", "w");
    w["spec"]["bogus"] = json!(true);
    w["spec"]["other"] = json!(1);
    post(
        &c,
        "/apis/example.com/v1/namespaces/w-fv-neg/widgets?fieldValidation=Strict",
        w,
    )
    .await
    .assert_status(
        400,
        "BadRequest",
        "Widget in version \"v1\" cannot be handled as a Widget: strict decoding error: unknown field \"spec.bogus\", unknown field \"spec.other\"",
    );
    // Patches: 422 with the patch path.
    post(&c, &cms("w-fv-neg"), cm("p")).await;
    let r = patch(
        &c,
        &format!("{}/p?fieldValidation=Strict", cms("w-fv-neg")),
        MERGE,
        json!({"bogus": 1}),
    )
    .await;
    assert_eq!(
        (r.code, r.reason()),
        (422, "Invalid".to_string()),
        "{}",
        r.text
    );
    assert!(
        r.message().contains("patch: Invalid value:"),
        "{}",
        r.message()
    );
    assert!(
        r.message()
            .ends_with("strict decoding error: unknown field \"bogus\""),
        "{}",
        r.message()
    );
}

// ---------------------------------------------------------------------------------------------
// §3.5 metadata validation

#[tokio::test]
async fn labels_annotations_and_owner_references_are_validated() {
    let sim = sim_with_ns("w-meta").await;
    let c = sim.client();
    let mut ok = cm("ok");
    ok["metadata"]["labels"] = json!({"app.kubernetes.io/name": "x", "empty": ""});
    ok["metadata"]["annotations"] = json!({"example.com/anything": "any value at all !"});
    assert_eq!(post(&c, &cms("w-meta"), ok).await.code, 201);
    let mut bad = cm("bad");
    bad["metadata"]["labels"] = json!({"bad key!": "v"});
    let r = post(&c, &cms("w-meta"), bad).await;
    assert_eq!((r.code, r.reason()), (422, "Invalid".to_string()));
    assert!(r.message().starts_with("ConfigMap \"bad\" is invalid: metadata.labels: Invalid value: \"bad key!\": name part must consist of alphanumeric characters"), "{}", r.message());
    let mut big = cm("big");
    big["metadata"]["annotations"] = json!({"a": "x".repeat(262_145)});
    let r = post(&c, &cms("w-meta"), big).await;
    assert_eq!(r.code, 422);
    assert_eq!(
        r.message(),
        "ConfigMap \"big\" is invalid: metadata.annotations: Too long: may not be more than 262144 bytes"
    );
    let mut two = cm("two");
    two["metadata"]["ownerReferences"] = json!([
        {"apiVersion": "v1", "kind": "ConfigMap", "name": "a", "uid": "1", "controller": true},
        {"apiVersion": "v1", "kind": "ConfigMap", "name": "b", "uid": "2", "controller": true}]);
    let r = post(&c, &cms("w-meta"), two).await;
    assert_eq!(r.code, 422);
    assert!(
        r.message()
            .contains("Only one reference can have Controller set to true"),
        "{}",
        r.message()
    );
}

#[tokio::test]
async fn immutable_metadata_on_update() {
    let sim = sim_with_ns("w-immut").await;
    let c = sim.client();
    let v = post(&c, &cms("w-immut"), cm("i")).await.json();
    let mut u = v.clone();
    u["metadata"]["uid"] = json!("other");
    let r = put(&c, &format!("{}/i", cms("w-immut")), u).await;
    assert_eq!((r.code, r.reason()), (422, "Invalid".to_string()));
    assert!(
        r.message()
            .contains("metadata.uid: Invalid value: \"other\": field is immutable"),
        "{}",
        r.message()
    );
    // A missing uid is filled from the stored object.
    let mut u = v.clone();
    u["metadata"].as_object_mut().unwrap().remove("uid");
    let r = put(&c, &format!("{}/i", cms("w-immut")), u).await;
    assert_eq!(r.code, 200);
    assert_eq!(r.json()["metadata"]["uid"], v["metadata"]["uid"]);
}
