//! Reference §0 (wire rules), §1 (discovery, OpenAPI), §2 (CRDs), §5 (deletion, finalizers,
//! garbage collection, namespaces) and §9 (authentication, RBAC): the MUSTs not covered by
//! `must_writes` and `must_list_watch`. Each has a positive and a negative test asserting the
//! HTTP code, the Status reason and the upstream message.

mod common;

use common::*;
use http::Method;
use kube_sim::KubeSim;
use serde_json::{Value, json};

const CRDS: &str = "/apis/apiextensions.k8s.io/v1/customresourcedefinitions";
const AGG_ACCEPT: &str = "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList,application/json";
const TABLE_ACCEPT: &str = "application/json;as=Table;v=v1;g=meta.k8s.io,application/json;as=Table;v=v1beta1;g=meta.k8s.io,application/json";

fn widgets(ns: &str) -> String {
    format!("/apis/example.com/v1/namespaces/{ns}/widgets")
}

fn cm(name: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}, "data": {"a": "1"}})
}

fn cms(ns: &str) -> String {
    format!("/api/v1/namespaces/{ns}/configmaps")
}

async fn get_accept(c: &kube::Client, path: &str, accept: &str) -> Raw {
    raw_bytes(c, Method::GET, path, None, Some(accept), Vec::new()).await
}

// ---------------------------------------------------------------------------------------------
// §0.1 every response carries a Content-Type (MUST)

#[tokio::test]
async fn every_response_carries_a_content_type() {
    let sim = sim_with_ns("m-ct").await;
    let c = sim.client();
    assert_eq!(post(&c, &cms("m-ct"), cm("a")).await.code, 201);
    for (path, want) in [
        ("/version", "application/json"),
        ("/api/v1/namespaces/m-ct/configmaps", "application/json"),
        ("/api/v1/namespaces/m-ct/configmaps/a", "application/json"),
        ("/healthz", "text/plain"),
    ] {
        let r = get(&c, path).await;
        assert_eq!(r.code, 200, "{path}: {}", r.text);
        let ct = r.header("content-type").unwrap_or_default();
        assert!(ct.starts_with(want), "{path}: content-type {ct:?}");
    }
    let r = delete(&c, "/api/v1/namespaces/m-ct/configmaps/a", Some(json!({}))).await;
    assert_eq!(r.code, 200);
    assert_eq!(
        r.header("content-type").as_deref(),
        Some("application/json")
    );
    let r = get_accept(&c, "/api/v1/namespaces/m-ct/configmaps", TABLE_ACCEPT).await;
    assert_eq!(
        r.header("content-type").as_deref(),
        Some("application/json;as=Table;v=v1;g=meta.k8s.io")
    );
}

#[tokio::test]
async fn error_responses_carry_json_status_with_content_type() {
    let sim = sim_with_ns("m-ct-neg").await;
    let c = sim.client();
    let r = get(&c, "/api/v1/namespaces/m-ct-neg/configmaps/none").await;
    r.assert_status(404, "NotFound", "configmaps \"none\" not found");
    assert_eq!(
        r.header("content-type").as_deref(),
        Some("application/json")
    );
    assert_eq!(r.json()["details"]["kind"], "configmaps");
    assert_eq!(r.json()["details"]["name"], "none");
    let r = get(&c, "/apis/nope.example.com/v1/things").await;
    r.assert_status(
        404,
        "NotFound",
        "the server could not find the requested resource",
    );
    assert_eq!(
        r.header("content-type").as_deref(),
        Some("application/json")
    );
    // An Accept the server cannot produce: 406 NotAcceptable, still a JSON Status.
    let r = get_accept(&c, "/api/v1/namespaces/m-ct-neg/configmaps", "text/html").await;
    r.assert_status(
        406,
        "NotAcceptable",
        "only the following media types are accepted: application/json, application/yaml, application/vnd.kubernetes.protobuf",
    );
    assert_eq!(
        r.header("content-type").as_deref(),
        Some("application/json")
    );
}

// ---------------------------------------------------------------------------------------------
// §1.3 aggregated discovery content type (MUST)

#[tokio::test]
async fn aggregated_discovery_has_the_gvk_content_type() {
    let sim = KubeSim::start().await.expect("sim");
    let c = sim.client();
    for path in ["/api", "/apis"] {
        let r = get_accept(&c, path, AGG_ACCEPT).await;
        assert_eq!(r.code, 200, "{}", r.text);
        assert_eq!(
            r.header("content-type").as_deref(),
            Some("application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList"),
            "{path}"
        );
        let v = r.json();
        assert_eq!(v["kind"], "APIGroupDiscoveryList");
        assert_eq!(v["apiVersion"], "apidiscovery.k8s.io/v2");
    }
    let v = get_accept(&c, "/api", AGG_ACCEPT).await.json();
    // The core group has an empty name, which Go's omitempty leaves out.
    assert!(
        v["items"][0]["metadata"]
            .get("name")
            .is_none_or(|n| n == "")
    );
    let res = v["items"][0]["versions"][0]["resources"]
        .as_array()
        .unwrap();
    let secrets = res.iter().find(|r| r["resource"] == "secrets").unwrap();
    assert_eq!(secrets["scope"], "Namespaced");
    assert_eq!(secrets["responseKind"]["kind"], "Secret");
}

#[tokio::test]
async fn plain_accept_gets_legacy_discovery() {
    let sim = KubeSim::start().await.expect("sim");
    let c = sim.client();
    let r = get_accept(&c, "/apis", "application/json").await;
    assert_eq!(
        r.header("content-type").as_deref(),
        Some("application/json")
    );
    assert_eq!(r.json()["kind"], "APIGroupList");
    let r = get_accept(&c, "/api", "application/json").await;
    assert_eq!(r.json()["kind"], "APIVersions");
    assert_eq!(r.json()["versions"], json!(["v1"]));
    // A group the server does not serve.
    get(&c, "/apis/nope.example.com").await.assert_status(
        404,
        "NotFound",
        "the server could not find the requested resource",
    );
}

// ---------------------------------------------------------------------------------------------
// §1.4 discovery is dynamic (MUST)

fn aggregated_has(v: &Value, group: &str, resource: &str) -> bool {
    v["items"].as_array().into_iter().flatten().any(|g| {
        g["metadata"]["name"] == group
            && g["versions"].as_array().into_iter().flatten().any(|ver| {
                ver["resources"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .any(|r| r["resource"] == resource)
            })
    })
}

#[tokio::test]
async fn crd_appears_in_discovery_and_openapi_when_created() {
    let sim = KubeSim::start().await.expect("sim");
    let c = sim.client();
    install_widgets(&c).await;
    let v = get_accept(&c, "/apis", AGG_ACCEPT).await.json();
    assert!(aggregated_has(&v, "example.com", "widgets"), "{v}");
    let groups = get_accept(&c, "/apis", "application/json").await.json();
    assert!(
        groups["groups"]
            .as_array()
            .unwrap()
            .iter()
            .any(|g| g["name"] == "example.com")
    );
    let g = get(&c, "/apis/example.com").await;
    assert_eq!(g.json()["kind"], "APIGroup");
    assert_eq!(
        g.json()["preferredVersion"]["groupVersion"],
        "example.com/v1"
    );
    let list = get(&c, "/apis/example.com/v1").await.json();
    assert_eq!(list["kind"], "APIResourceList");
    let names: Vec<&str> = list["resources"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|r| r["name"].as_str())
        .collect();
    assert_eq!(names, ["widgets", "widgets/status", "widgets/scale"]);
    let w = &list["resources"][0];
    assert_eq!(w["shortNames"], json!(["wd"]));
    assert_eq!(w["categories"], json!(["all"]));
    assert_eq!(w["singularName"], "widget");
    // §1.7: the OpenAPI v3 document of the group-version names the GVK and fieldValidation.
    let idx = get(&c, "/openapi/v3").await.json();
    let url = idx["paths"]["apis/example.com/v1"]["serverRelativeURL"]
        .as_str()
        .expect("openapi v3 lists the CRD's group-version")
        .to_string();
    let doc = get(&c, &url).await.json();
    let found = doc["paths"].as_object().unwrap().values().any(|item| {
        let p = &item["patch"];
        p["x-kubernetes-group-version-kind"]
            == json!({"group": "example.com", "version": "v1", "kind": "Widget"})
            && p["parameters"]
                .as_array()
                .into_iter()
                .flatten()
                .chain(item["parameters"].as_array().into_iter().flatten())
                .any(|q| q["name"] == "fieldValidation" && q["in"] == "query")
    });
    assert!(found, "no PATCH operation with the GVK and fieldValidation");
}

#[tokio::test]
async fn crd_disappears_from_discovery_when_deleted() {
    let sim = sim_with_ns("m-disc-neg").await;
    let c = sim.client();
    install_widgets(&c).await;
    let mut w = widget("m-disc-neg", "w1");
    w["metadata"]["finalizers"] = json!(["example.com/hold"]);
    assert_eq!(post(&c, &widgets("m-disc-neg"), w).await.code, 201);
    let r = delete(&c, &format!("{CRDS}/widgets.example.com"), Some(json!({}))).await;
    assert_eq!(r.code, 200, "{}", r.text);
    // Terminating while a CR is held by its finalizer: no new CRs.
    let v = get(&c, &format!("{CRDS}/widgets.example.com")).await.json();
    assert_eq!(
        v["metadata"]["finalizers"],
        json!(["customresourcecleanup.apiextensions.k8s.io"])
    );
    assert!(
        v["status"]["conditions"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["type"] == "Terminating" && c["reason"] == "InstanceDeletionInProgress"),
        "{v}"
    );
    post(&c, &widgets("m-disc-neg"), widget("m-disc-neg", "w2"))
        .await
        .assert_status(
            405,
            "MethodNotAllowed",
            "create not allowed while custom resource definition is terminating",
        );
    let r = patch(
        &c,
        &format!("{}/w1", widgets("m-disc-neg")),
        MERGE,
        json!({"metadata": {"finalizers": null}}),
    )
    .await;
    assert_eq!(r.code, 200, "{}", r.text);
    assert!(
        eventually(|| async { get(&c, &format!("{CRDS}/widgets.example.com")).await.code == 404 })
            .await,
        "the CRD goes once its CRs are gone"
    );
    let v = get_accept(&c, "/apis", AGG_ACCEPT).await.json();
    assert!(!aggregated_has(&v, "example.com", "widgets"), "{v}");
    get(&c, "/apis/example.com/v1").await.assert_status(
        404,
        "NotFound",
        "the server could not find the requested resource",
    );
    get(&c, "/apis/example.com").await.assert_status(
        404,
        "NotFound",
        "the server could not find the requested resource",
    );
    get(&c, &widgets("m-disc-neg")).await.assert_status(
        404,
        "NotFound",
        "the server could not find the requested resource",
    );
    let idx = get(&c, "/openapi/v3").await.json();
    assert!(idx["paths"].get("apis/example.com/v1").is_none());
    // kubectl tolerates a missing /openapi/v2 once v3 answers.
    assert_eq!(get(&c, "/openapi/v2").await.code, 404);
}

// ---------------------------------------------------------------------------------------------
// §2.1 / §2.2 CRD name rule, conditions, serving rule (MUST)

#[tokio::test]
async fn crd_is_named_accepted_and_established() {
    let sim = KubeSim::start().await.expect("sim");
    let c = sim.client();
    let r = post(&c, CRDS, widget_crd()).await;
    assert_eq!(r.code, 201, "{}", r.text);
    assert!(
        eventually(|| async {
            let v = get(&c, &format!("{CRDS}/widgets.example.com")).await.json();
            let conds = v["status"]["conditions"]
                .as_array()
                .cloned()
                .unwrap_or_default();
            let has = |t: &str, reason: &str, msg: &str| {
                conds.iter().any(|x| {
                    x["type"] == t
                        && x["status"] == "True"
                        && x["reason"] == reason
                        && x["message"] == msg
                })
            };
            has("NamesAccepted", "NoConflicts", "no conflicts found")
                && has(
                    "Established",
                    "InitialNamesAccepted",
                    "the initial names have been accepted",
                )
                && v["status"]["acceptedNames"]["listKind"] == "WidgetList"
                && v["status"]["storedVersions"] == json!(["v1"])
        })
        .await
    );
    // Upstream adds the cleanup finalizer on the first DELETE, not at create.
    let v = get(&c, &format!("{CRDS}/widgets.example.com")).await.json();
    assert!(v["metadata"].get("finalizers").is_none(), "{v}");
}

#[tokio::test]
async fn crd_with_a_wrong_name_is_invalid() {
    let sim = KubeSim::start().await.expect("sim");
    let c = sim.client();
    let mut crd = widget_crd();
    crd["metadata"]["name"] = json!("gizmos.example.com");
    let r = post(&c, CRDS, crd).await;
    r.assert_status(
        422,
        "Invalid",
        "CustomResourceDefinition.apiextensions.k8s.io \"gizmos.example.com\" is invalid: metadata.name: Invalid value: \"gizmos.example.com\": must be spec.names.plural+\".\"+spec.group",
    );
    assert_eq!(r.json()["details"]["causes"][0]["field"], "metadata.name");
    // A CR of a CRD that does not exist is the delegate's NotFound.
    get(&c, "/apis/example.com/v1/namespaces/default/widgets")
        .await
        .assert_status(
            404,
            "NotFound",
            "the server could not find the requested resource",
        );
}

// ---------------------------------------------------------------------------------------------
// §2.3 / §2.4 CR patch types, validation, pruning, defaulting

#[tokio::test]
async fn cr_writes_are_pruned_defaulted_and_validated() {
    let sim = sim_with_ns("m-cr").await;
    let c = sim.client();
    install_widgets(&c).await;
    let mut w = widget("m-cr", "w1");
    w["spec"]["bogus"] = json!(1);
    let r = post(&c, &widgets("m-cr"), w).await;
    assert_eq!(r.code, 201, "{}", r.text);
    let v = r.json();
    assert_eq!(v["spec"]["color"], "red", "defaulted");
    assert!(v["spec"].get("bogus").is_none(), "pruned");
    assert_eq!(v["metadata"]["generation"], 1);
    assert_eq!(
        r.header("warning").as_deref(),
        Some("299 - \"unknown field \\\"spec.bogus\\\"\"")
    );
    let r = patch(
        &c,
        &format!("{}/w1", widgets("m-cr")),
        MERGE,
        json!({"spec": {"size": 4}}),
    )
    .await;
    assert_eq!(r.code, 200, "{}", r.text);
    assert_eq!(r.json()["metadata"]["generation"], 2);
}

#[tokio::test]
async fn cr_errors_have_upstream_messages() {
    let sim = sim_with_ns("m-cr-neg").await;
    let c = sim.client();
    install_widgets(&c).await;
    let mut w = widget("m-cr-neg", "w1");
    w["spec"]["size"] = json!("string");
    let r = post(&c, &widgets("m-cr-neg"), w).await;
    r.assert_status(
        422,
        "Invalid",
        "Widget.example.com \"w1\" is invalid: spec.size: Invalid value: \"string\": spec.size in body must be of type integer: \"string\"",
    );
    assert_eq!(
        r.json()["details"]["causes"][0]["reason"],
        "FieldValueTypeInvalid"
    );
    assert_eq!(r.json()["details"]["group"], "example.com");
    assert_eq!(r.json()["details"]["kind"], "Widget");
    let mut w = widget("m-cr-neg", "w2");
    w["spec"]["size"] = json!(-1);
    post(&c, &widgets("m-cr-neg"), w).await.assert_status(
        422,
        "Invalid",
        "Widget.example.com \"w2\" is invalid: spec.size: Invalid value: -1: spec.size in body should be greater than or equal to 0",
    );
    assert_eq!(
        post(&c, &widgets("m-cr-neg"), widget("m-cr-neg", "w3"))
            .await
            .code,
        201
    );
    patch(
        &c,
        &format!("{}/w3", widgets("m-cr-neg")),
        SMP,
        json!({"spec": {"size": 1}}),
    )
    .await
    .assert_status(
        415,
        "UnsupportedMediaType",
        "the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml",
    );
    patch(
        &c,
        &format!("{}/missing", widgets("m-cr-neg")),
        MERGE,
        json!({"spec": {"size": 1}}),
    )
    .await
    .assert_status(404, "NotFound", "widgets.example.com \"missing\" not found");
}

// ---------------------------------------------------------------------------------------------
// §2.5 / §2.6 status subresource and generation (gotcha 8)

#[tokio::test]
async fn status_subresource_splits_spec_and_status() {
    let sim = sim_with_ns("m-status").await;
    let c = sim.client();
    install_widgets(&c).await;
    let base = widgets("m-status");
    assert_eq!(post(&c, &base, widget("m-status", "w")).await.code, 201);
    // Main endpoint: status ignored, no generation bump.
    let r = patch(
        &c,
        &format!("{base}/w"),
        MERGE,
        json!({"status": {"replicas": 5}}),
    )
    .await;
    assert_eq!(r.code, 200);
    assert!(r.json().get("status").is_none(), "{}", r.text);
    assert_eq!(r.json()["metadata"]["generation"], 1);
    // /status: spec and labels ignored, status written, no generation bump.
    let r = patch(
        &c,
        &format!("{base}/w/status"),
        MERGE,
        json!({"metadata": {"labels": {"x": "y"}}, "spec": {"size": 9}, "status": {"replicas": 5}}),
    )
    .await;
    assert_eq!(r.code, 200, "{}", r.text);
    let v = r.json();
    assert_eq!(v["status"]["replicas"], 5);
    assert_eq!(v["spec"]["size"], 3);
    assert!(v["metadata"].get("labels").is_none());
    assert_eq!(v["metadata"]["generation"], 1);
}

#[tokio::test]
async fn status_of_a_crd_without_status_subresource_is_404() {
    let sim = sim_with_ns("m-status-neg").await;
    let c = sim.client();
    let mut crd = widget_crd();
    crd["spec"]["versions"][0]["subresources"] = json!({});
    assert_eq!(post(&c, CRDS, crd).await.code, 201);
    let base = widgets("m-status-neg");
    assert!(
        eventually(|| async { post(&c, &base, widget("m-status-neg", "w")).await.code == 201 })
            .await
    );
    patch(
        &c,
        &format!("{base}/w/status"),
        MERGE,
        json!({"status": {"replicas": 1}}),
    )
    .await
    .assert_status(
        404,
        "NotFound",
        "the server could not find the requested resource",
    );
    // Without the subresource, status is an ordinary field and bumps generation.
    let r = patch(
        &c,
        &format!("{base}/w"),
        MERGE,
        json!({"status": {"replicas": 1}}),
    )
    .await;
    assert_eq!(r.json()["status"]["replicas"], 1);
    assert_eq!(r.json()["metadata"]["generation"], 2);
}

// ---------------------------------------------------------------------------------------------
// §5.1 DELETE responses and preconditions (gotcha 7)

#[tokio::test]
async fn immediate_delete_returns_status_with_uid_and_finalized_returns_object() {
    let sim = sim_with_ns("m-del").await;
    let c = sim.client();
    install_widgets(&c).await;
    let base = widgets("m-del");
    let created = post(&c, &base, widget("m-del", "w1")).await.json();
    let r = delete(&c, &format!("{base}/w1"), Some(json!({}))).await;
    assert_eq!(r.code, 200, "{}", r.text);
    let v = r.json();
    assert_eq!(v["kind"], "Status");
    assert_eq!(v["status"], "Success");
    assert_eq!(
        v["details"],
        json!({"name": "w1", "group": "example.com", "kind": "widgets", "uid": created["metadata"]["uid"]})
    );
    // With a finalizer: the object comes back, marked for deletion, generation bumped once.
    let mut w = widget("m-del", "w2");
    w["metadata"]["finalizers"] = json!(["example.com/hold"]);
    assert_eq!(post(&c, &base, w).await.code, 201);
    let r = delete(
        &c,
        &format!("{base}/w2"),
        Some(json!({"propagationPolicy": "Background"})),
    )
    .await;
    assert_eq!(r.code, 200, "{}", r.text);
    let v = r.json();
    assert_eq!(v["kind"], "Widget");
    assert!(v["metadata"]["deletionTimestamp"].is_string());
    assert_eq!(v["metadata"]["deletionGracePeriodSeconds"], 0);
    assert_eq!(v["metadata"]["generation"], 2);
    // A second DELETE is a no-op returning the object with the same resourceVersion.
    let again = delete(&c, &format!("{base}/w2"), Some(json!({})))
        .await
        .json();
    assert_eq!(
        again["metadata"]["resourceVersion"],
        v["metadata"]["resourceVersion"]
    );
    assert_eq!(again["metadata"]["generation"], 2);
}

#[tokio::test]
async fn delete_errors_have_upstream_messages() {
    let sim = sim_with_ns("m-del-neg").await;
    let c = sim.client();
    let p = cms("m-del-neg");
    let created = post(&c, &p, cm("a")).await.json();
    let uid = created["metadata"]["uid"].as_str().unwrap().to_string();
    let rv = created["metadata"]["resourceVersion"]
        .as_str()
        .unwrap()
        .to_string();
    delete(
        &c,
        &format!("{p}/a"),
        Some(json!({"preconditions": {"uid": "other-uid"}})),
    )
    .await
    .assert_status(
        409,
        "Conflict",
        &format!(
            "Operation cannot be fulfilled on configmaps \"a\": StorageError: invalid object, Code: 4, Key: /registry/configmaps/m-del-neg/a, ResourceVersion: 0, AdditionalErrorMsg: Precondition failed: UID in precondition: other-uid, UID in object meta: {uid}"
        ),
    );
    delete(
        &c,
        &format!("{p}/a"),
        Some(json!({"preconditions": {"resourceVersion": "1"}})),
    )
    .await
    .assert_status(
        409,
        "Conflict",
        &format!(
            "Operation cannot be fulfilled on configmaps \"a\": StorageError: invalid object, Code: 4, Key: /registry/configmaps/m-del-neg/a, ResourceVersion: 0, AdditionalErrorMsg: Precondition failed: ResourceVersion in precondition: 1, ResourceVersion in object meta: {rv}"
        ),
    );
    let r = delete(
        &c,
        &format!("{p}/a"),
        Some(json!({"propagationPolicy": "Sometimes"})),
    )
    .await;
    assert_eq!(r.code, 422, "{}", r.text);
    assert_eq!(r.reason(), "Invalid");
    assert!(
        r.message().contains(
            "propagationPolicy: Unsupported value: \"Sometimes\": supported values: \"Foreground\", \"Background\", \"Orphan\""
        ),
        "{}",
        r.message()
    );
    delete(&c, &format!("{p}/none"), Some(json!({})))
        .await
        .assert_status(404, "NotFound", "configmaps \"none\" not found");
    // The object survived every failed attempt; a matching precondition deletes it.
    let r = delete(
        &c,
        &format!("{p}/a"),
        Some(json!({"preconditions": {"uid": uid, "resourceVersion": rv}})),
    )
    .await;
    assert_eq!(r.code, 200, "{}", r.text);
    assert_eq!(r.json()["details"]["uid"], json!(uid));
}

// ---------------------------------------------------------------------------------------------
// §5.2 / §3.5 finalizers

#[tokio::test]
async fn removing_the_last_finalizer_deletes_the_object() {
    let sim = sim_with_ns("m-fin").await;
    let c = sim.client();
    let p = cms("m-fin");
    let mut o = cm("f");
    o["metadata"]["finalizers"] = json!(["example.com/hold"]);
    assert_eq!(post(&c, &p, o).await.code, 201);
    let marked = delete(&c, &format!("{p}/f"), Some(json!({}))).await.json();
    let rv: u64 = marked["metadata"]["resourceVersion"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    let (_, mut rx) = stream_lines(&c, &format!("{p}?watch=true&resourceVersion={rv}"), None).await;
    let r = patch(
        &c,
        &format!("{p}/f"),
        JSON_PATCH,
        json!([{"op": "test", "path": "/metadata/finalizers/0", "value": "example.com/hold"},
               {"op": "remove", "path": "/metadata/finalizers/0"}]),
    )
    .await;
    assert_eq!(r.code, 200, "{}", r.text);
    assert_eq!(r.json()["metadata"]["name"], "f");
    let line = next_line(&mut rx, 5.0).await.expect("an event");
    let ev: Value = serde_json::from_str(&line).expect("json event");
    assert_eq!(ev["type"], "DELETED", "no intermediate MODIFIED: {line}");
    let del_rv: u64 = ev["object"]["metadata"]["resourceVersion"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(del_rv > rv);
    get(&c, &format!("{p}/f"))
        .await
        .assert_status(404, "NotFound", "configmaps \"f\" not found");
}

#[tokio::test]
async fn no_new_finalizers_while_deleting() {
    let sim = sim_with_ns("m-fin-neg").await;
    let c = sim.client();
    let p = cms("m-fin-neg");
    let mut o = cm("f");
    o["metadata"]["finalizers"] = json!(["example.com/hold"]);
    assert_eq!(post(&c, &p, o).await.code, 201);
    assert_eq!(
        delete(&c, &format!("{p}/f"), Some(json!({}))).await.code,
        200
    );
    let r = patch(
        &c,
        &format!("{p}/f"),
        MERGE,
        json!({"metadata": {"finalizers": ["example.com/hold", "x.example.com/new"]}}),
    )
    .await;
    r.assert_status(
        422,
        "Invalid",
        "ConfigMap \"f\" is invalid: metadata.finalizers: Forbidden: no new finalizers can be added if the object is being deleted, found new finalizers []string{\"x.example.com/new\"}",
    );
    // Still there, still held.
    let v = get(&c, &format!("{p}/f")).await.json();
    assert_eq!(v["metadata"]["finalizers"], json!(["example.com/hold"]));
}

// ---------------------------------------------------------------------------------------------
// §5.3 delete collection

#[tokio::test]
async fn delete_collection_honours_selectors() {
    let sim = sim_with_ns("m-dc").await;
    let c = sim.client();
    let p = cms("m-dc");
    for (n, l) in [("a", "x"), ("b", "x"), ("c", "y")] {
        let mut o = cm(n);
        o["metadata"]["labels"] = json!({"l": l});
        assert_eq!(post(&c, &p, o).await.code, 201);
    }
    let r = raw(
        &c,
        Method::DELETE,
        &format!("{p}?labelSelector=l%3Dx"),
        None,
        None,
    )
    .await;
    assert_eq!(r.code, 200, "{}", r.text);
    let left = get(&c, &p).await.json();
    let names: Vec<&str> = left["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|i| i["metadata"]["name"].as_str())
        .collect();
    assert_eq!(names, ["c"]);
    raw(
        &c,
        Method::DELETE,
        &format!("{p}?labelSelector=l%20in%20(x"),
        None,
        None,
    )
    .await
    .assert_status(
        400,
        "BadRequest",
        "unable to parse requirement: found '', expected: ',' or ')'",
    );
}

// ---------------------------------------------------------------------------------------------
// §5.4 garbage collection

fn owned_cm(name: &str, owner: &Value, block: bool) -> Value {
    let mut o = cm(name);
    o["metadata"]["ownerReferences"] = json!([{
        "apiVersion": "v1", "kind": "ConfigMap",
        "name": owner["metadata"]["name"], "uid": owner["metadata"]["uid"],
        "blockOwnerDeletion": block,
    }]);
    o
}

#[tokio::test]
async fn gc_background_and_foreground_delete_dependents() {
    let sim = sim_with_ns("m-gc").await;
    let c = sim.client();
    let p = cms("m-gc");
    let owner = post(&c, &p, cm("owner")).await.json();
    assert_eq!(post(&c, &p, owned_cm("dep", &owner, false)).await.code, 201);
    assert_eq!(
        delete(
            &c,
            &format!("{p}/owner"),
            Some(json!({"propagationPolicy": "Background"}))
        )
        .await
        .code,
        200
    );
    assert!(eventually(|| async { get(&c, &format!("{p}/dep")).await.code == 404 }).await);
    // Foreground: the owner waits for its blocking dependent.
    let owner = post(&c, &p, cm("fg")).await.json();
    assert_eq!(
        post(&c, &p, owned_cm("fgdep", &owner, true)).await.code,
        201
    );
    let r = delete(
        &c,
        &format!("{p}/fg"),
        Some(json!({"propagationPolicy": "Foreground"})),
    )
    .await;
    assert_eq!(r.code, 200, "{}", r.text);
    assert!(
        eventually(|| async {
            get(&c, &format!("{p}/fg")).await.code == 404
                && get(&c, &format!("{p}/fgdep")).await.code == 404
        })
        .await
    );
}

#[tokio::test]
async fn gc_orphan_keeps_dependents_and_recreated_owner_does_not_adopt() {
    let sim = sim_with_ns("m-gc-neg").await;
    let c = sim.client();
    let p = cms("m-gc-neg");
    let owner = post(&c, &p, cm("owner")).await.json();
    assert_eq!(post(&c, &p, owned_cm("dep", &owner, false)).await.code, 201);
    assert_eq!(
        delete(
            &c,
            &format!("{p}/owner"),
            Some(json!({"propagationPolicy": "Orphan"}))
        )
        .await
        .code,
        200
    );
    assert!(
        eventually(|| async {
            let d = get(&c, &format!("{p}/dep")).await;
            get(&c, &format!("{p}/owner")).await.code == 404
                && d.code == 200
                && d.json()["metadata"].get("ownerReferences").is_none()
        })
        .await,
        "orphaned dependent keeps living without the owner reference"
    );
    // A dependent of a uid that never existed is collected even if a same-named owner exists.
    let _ = post(&c, &p, cm("owner")).await;
    let ghost =
        json!({"metadata": {"name": "owner", "uid": "00000000-0000-0000-0000-000000000000"}});
    assert_eq!(
        post(&c, &p, owned_cm("dangling", &ghost, false)).await.code,
        201
    );
    assert!(eventually(|| async { get(&c, &format!("{p}/dangling")).await.code == 404 }).await);
    assert_eq!(get(&c, &format!("{p}/owner")).await.code, 200);
}

// ---------------------------------------------------------------------------------------------
// §5.5 namespaces

#[tokio::test]
async fn namespace_is_seeded_and_its_deletion_empties_it() {
    let sim = sim_with_ns("m-ns").await;
    let c = sim.client();
    let v = get(&c, "/api/v1/namespaces/m-ns").await.json();
    assert_eq!(v["spec"]["finalizers"], json!(["kubernetes"]));
    assert_eq!(v["status"]["phase"], "Active");
    assert_eq!(
        v["metadata"]["labels"]["kubernetes.io/metadata.name"],
        "m-ns"
    );
    for ns in ["default", "kube-system", "kube-public", "kube-node-lease"] {
        assert_eq!(get(&c, &format!("/api/v1/namespaces/{ns}")).await.code, 200);
    }
    assert_eq!(post(&c, &cms("m-ns"), cm("a")).await.code, 201);
    assert_eq!(
        delete(&c, "/api/v1/namespaces/m-ns", Some(json!({})))
            .await
            .code,
        200
    );
    assert!(
        eventually(|| async {
            get(&c, "/api/v1/namespaces/m-ns").await.code == 404
                && get(&c, &format!("{}/a", cms("m-ns"))).await.code == 404
        })
        .await
    );
}

#[tokio::test]
async fn terminating_namespace_refuses_new_content() {
    let sim = sim_with_ns("m-ns-neg").await;
    let c = sim.client();
    let mut o = cm("held");
    o["metadata"]["finalizers"] = json!(["example.com/hold"]);
    assert_eq!(post(&c, &cms("m-ns-neg"), o).await.code, 201);
    assert_eq!(
        delete(&c, "/api/v1/namespaces/m-ns-neg", Some(json!({})))
            .await
            .code,
        200
    );
    assert!(
        eventually(|| async {
            get(&c, "/api/v1/namespaces/m-ns-neg").await.json()["status"]["phase"] == "Terminating"
        })
        .await
    );
    let r = post(&c, &cms("m-ns-neg"), cm("new")).await;
    r.assert_status(
        403,
        "Forbidden",
        "configmaps \"new\" is forbidden: unable to create new content in namespace m-ns-neg because it is being terminated",
    );
    assert_eq!(
        r.json()["details"]["causes"][0],
        json!({"reason": "NamespaceTerminating", "message": "namespace m-ns-neg is being terminated", "field": "metadata.namespace"})
    );
    // Releasing the last finalizer lets the namespace go.
    let r = patch(
        &c,
        &format!("{}/held", cms("m-ns-neg")),
        MERGE,
        json!({"metadata": {"finalizers": null}}),
    )
    .await;
    assert_eq!(r.code, 200, "{}", r.text);
    assert!(
        eventually(|| async { get(&c, "/api/v1/namespaces/m-ns-neg").await.code == 404 }).await
    );
}

// ---------------------------------------------------------------------------------------------
// §9 authentication and RBAC

async fn rbac_sim() -> (KubeSim, kube::Client) {
    let sim = KubeSim::builder().rbac(true).start().await.expect("sim");
    let admin = sim.client();
    create_ns(&admin, "m-rbac").await;
    let role = json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
        "metadata": {"name": "cm-reader"},
        "rules": [{"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get", "list", "watch"]}]});
    let r = post(
        &admin,
        "/apis/rbac.authorization.k8s.io/v1/namespaces/m-rbac/roles",
        role,
    )
    .await;
    assert_eq!(r.code, 201, "{}", r.text);
    let rb = json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
        "metadata": {"name": "cm-reader"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "cm-reader"},
        "subjects": [{"kind": "ServiceAccount", "name": "op", "namespace": "m-rbac"}]});
    let r = post(
        &admin,
        "/apis/rbac.authorization.k8s.io/v1/namespaces/m-rbac/rolebindings",
        rb,
    )
    .await;
    assert_eq!(r.code, 201, "{}", r.text);
    assert_eq!(post(&admin, &cms("m-rbac"), cm("a")).await.code, 201);
    (sim, admin)
}

#[tokio::test]
async fn rbac_allows_what_a_binding_grants() {
    let (sim, _admin) = rbac_sim().await;
    let token = sim.create_token_for_service_account("m-rbac", "op");
    let op = sim.client_for_token(&token).expect("client");
    assert_eq!(get(&op, &format!("{}/a", cms("m-rbac"))).await.code, 200);
    assert_eq!(get(&op, &cms("m-rbac")).await.code, 200);
    assert_eq!(
        get(&op, "/version").await.code,
        200,
        "discovery for everyone"
    );
    let sar = json!({"apiVersion": "authorization.k8s.io/v1", "kind": "SelfSubjectAccessReview",
        "spec": {"resourceAttributes": {"namespace": "m-rbac", "verb": "list", "resource": "configmaps"}}});
    let r = post(
        &op,
        "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews",
        sar,
    )
    .await;
    assert_eq!(r.code, 201, "{}", r.text);
    assert_eq!(r.json()["status"]["allowed"], true);
    let audit = sim.audit_log();
    assert!(
        audit
            .iter()
            .any(|a| a.allowed && a.user == "system:serviceaccount:m-rbac:op")
    );
}

/// An apply that creates its object needs `create` besides `patch` (upstream's patch handler
/// authorizes the create); applying to an existing object needs `patch` only.
#[tokio::test]
async fn an_apply_that_creates_needs_create_permission() {
    let (sim, admin) = rbac_sim().await;
    let role = json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
        "metadata": {"name": "cm-patcher"},
        "rules": [{"apiGroups": [""], "resources": ["configmaps"], "verbs": ["patch"]}]});
    let r = post(
        &admin,
        "/apis/rbac.authorization.k8s.io/v1/namespaces/m-rbac/roles",
        role,
    )
    .await;
    assert_eq!(r.code, 201, "{}", r.text);
    let rb = json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
        "metadata": {"name": "cm-patcher"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "cm-patcher"},
        "subjects": [{"kind": "ServiceAccount", "name": "op", "namespace": "m-rbac"}]});
    let r = post(
        &admin,
        "/apis/rbac.authorization.k8s.io/v1/namespaces/m-rbac/rolebindings",
        rb,
    )
    .await;
    assert_eq!(r.code, 201, "{}", r.text);
    let token = sim.create_token_for_service_account("m-rbac", "op");
    let op = sim.client_for_token(&token).expect("client");
    let apply = |name: &str| {
        (
            format!("{}/{name}?fieldManager=op", cms("m-rbac")),
            json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name},
                   "data": {"k": "v"}}),
        )
    };
    let (path, body) = apply("new");
    patch(&op, &path, "application/apply-patch+yaml", body)
        .await
        .assert_status(
            403,
            "Forbidden",
            "configmaps \"new\" is forbidden: User \"system:serviceaccount:m-rbac:op\" cannot create resource \"configmaps\" in API group \"\" in the namespace \"m-rbac\"",
        );
    let (path, body) = apply("a");
    let r = patch(&op, &path, "application/apply-patch+yaml", body).await;
    assert_eq!(r.code, 200, "{}", r.text);
}

#[tokio::test]
async fn rbac_denies_with_the_upstream_forbidden_message() {
    let (sim, _admin) = rbac_sim().await;
    let token = sim.create_token_for_service_account("m-rbac", "op");
    let op = sim.client_for_token(&token).expect("client");
    let r = delete(&op, &format!("{}/a", cms("m-rbac")), Some(json!({}))).await;
    r.assert_status(
        403,
        "Forbidden",
        "configmaps \"a\" is forbidden: User \"system:serviceaccount:m-rbac:op\" cannot delete resource \"configmaps\" in API group \"\" in the namespace \"m-rbac\"",
    );
    assert_eq!(
        r.json()["details"],
        json!({"name": "a", "kind": "configmaps"})
    );
    get(&op, "/api/v1/secrets").await.assert_status(
        403,
        "Forbidden",
        "secrets is forbidden: User \"system:serviceaccount:m-rbac:op\" cannot list resource \"secrets\" in API group \"\" at the cluster scope",
    );
    let nobody = kube::Client::try_from(sim.config_for_token(Some("not-a-token"))).expect("client");
    get(&nobody, &cms("m-rbac"))
        .await
        .assert_status(401, "Unauthorized", "Unauthorized");
    assert!(sim.audit_log().iter().any(|a| !a.allowed));
}

// ---------------------------------------------------------------------------------------------
// §0.4 request bodies: JSON, YAML, and protobuf for the kinds client-go's typed clients write
// here (Secret, ConfigMap, Namespace, DeleteOptions); other protobuf bodies are 415.

fn pb_field(n: u64, b: &[u8], out: &mut Vec<u8>) {
    out.push(((n << 3) | 2) as u8);
    out.push(b.len() as u8);
    out.extend_from_slice(b);
}

/// `k8s\0` + runtime.Unknown{typeMeta{apiVersion, kind}, raw}.
fn pb_envelope(api_version: &str, kind: &str, raw: &[u8]) -> Vec<u8> {
    let mut tm = Vec::new();
    pb_field(1, api_version.as_bytes(), &mut tm);
    pb_field(2, kind.as_bytes(), &mut tm);
    let mut out = b"k8s\0".to_vec();
    pb_field(1, &tm, &mut out);
    pb_field(2, raw, &mut out);
    out
}

const PROTO: &str = "application/vnd.kubernetes.protobuf";
const PROTO_ACCEPT: &str = "application/vnd.kubernetes.protobuf,application/json";

#[tokio::test]
async fn json_yaml_and_typed_protobuf_bodies_are_accepted() {
    let sim = sim_with_ns("m-body").await;
    let c = sim.client();
    let yaml = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: y\ndata:\n  a: \"1\"\n";
    let r = raw_bytes(
        &c,
        Method::POST,
        &cms("m-body"),
        Some("application/yaml"),
        None,
        yaml.as_bytes().to_vec(),
    )
    .await;
    assert_eq!(r.code, 201, "{}", r.text);
    assert_eq!(r.json()["data"]["a"], "1");
    // A Secret as Helm's storage driver sends it: protobuf in, JSON out.
    let mut meta = Vec::new();
    pb_field(1, b"release", &mut meta);
    let mut entry = Vec::new();
    pb_field(1, b"k", &mut entry);
    pb_field(2, b"v", &mut entry);
    let mut secret = Vec::new();
    pb_field(1, &meta, &mut secret);
    pb_field(2, &entry, &mut secret);
    pb_field(3, b"helm.sh/release.v1", &mut secret);
    let r = raw_bytes(
        &c,
        Method::POST,
        "/api/v1/namespaces/m-body/secrets",
        Some(PROTO),
        Some(PROTO_ACCEPT),
        pb_envelope("v1", "Secret", &secret),
    )
    .await;
    assert_eq!(r.code, 201, "{}", r.text);
    assert_eq!(
        r.header("content-type").as_deref(),
        Some("application/json")
    );
    assert_eq!(r.json()["data"]["k"], "dg==");
    assert_eq!(r.json()["type"], "helm.sh/release.v1");
    // A typed delete's protobuf DeleteOptions.
    let mut opts = Vec::new();
    pb_field(4, b"Background", &mut opts);
    let r = raw_bytes(
        &c,
        Method::DELETE,
        "/api/v1/namespaces/m-body/secrets/release",
        Some(PROTO),
        Some(PROTO_ACCEPT),
        pb_envelope("meta.k8s.io/v1", "DeleteOptions", &opts),
    )
    .await;
    assert_eq!(r.code, 200, "{}", r.text);
    assert_eq!(r.json()["details"]["name"], "release");
}

#[tokio::test]
async fn other_protobuf_bodies_are_415_and_garbage_is_400() {
    let sim = sim_with_ns("m-body-neg").await;
    let c = sim.client();
    let r = raw_bytes(
        &c,
        Method::POST,
        "/apis/coordination.k8s.io/v1/namespaces/m-body-neg/leases",
        Some(PROTO),
        Some(PROTO_ACCEPT),
        pb_envelope("coordination.k8s.io/v1", "Lease", &[]),
    )
    .await;
    r.assert_status(
        415,
        "UnsupportedMediaType",
        "the body of the request was in an unknown format - accepted media types include: application/json, application/yaml",
    );
    let r = raw_bytes(
        &c,
        Method::POST,
        &cms("m-body-neg"),
        Some(PROTO),
        Some(PROTO_ACCEPT),
        b"k8s\0\x0a\x20truncated".to_vec(),
    )
    .await;
    r.assert_status(
        400,
        "BadRequest",
        "the body of the request could not be decoded as protobuf: truncated field",
    );
    assert_eq!(get(&c, &format!("{}/x", cms("m-body-neg"))).await.code, 404);
}

// ---------------------------------------------------------------------------------------------
// §13.17 watch bodies are never compressed

#[tokio::test]
async fn responses_and_watches_are_not_compressed() {
    let sim = sim_with_ns("m-gzip").await;
    let c = sim.client();
    assert_eq!(post(&c, &cms("m-gzip"), cm("a")).await.code, 201);
    for path in [
        cms("m-gzip"),
        format!("{}?watch=true&timeoutSeconds=1", cms("m-gzip")),
    ] {
        let req = http::Request::builder()
            .method(Method::GET)
            .uri(&path)
            .header("Accept-Encoding", "gzip")
            .body(kube::client::Body::empty())
            .unwrap();
        let resp = c.send(req).await.expect("response");
        assert_eq!(resp.status(), 200);
        assert!(
            resp.headers().get("content-encoding").is_none(),
            "{path}: {:?}",
            resp.headers()
        );
        let body = http_body_util::BodyExt::collect(resp.into_body())
            .await
            .expect("body")
            .to_bytes();
        let text = String::from_utf8(body.to_vec()).expect("plain UTF-8 JSON");
        assert!(text.contains("\"name\":\"a\""), "{text}");
    }
}

// ---------------------------------------------------------------------------------------------
// §8.2 events.k8s.io validation (the Recorder's happy path is in kube_rs_e2e)

#[tokio::test]
async fn events_without_required_fields_are_invalid() {
    let sim = sim_with_ns("m-ev").await;
    let c = sim.client();
    let ev = |name: &str| {
        json!({"apiVersion": "events.k8s.io/v1", "kind": "Event",
            "metadata": {"name": name},
            "eventTime": "2026-01-02T03:04:05.123456Z", "type": "Normal",
            "reason": "Registered", "action": "Reconcile", "note": "ok",
            "reportingController": "example.com/op", "reportingInstance": "op-0",
            "regarding": {"kind": "ConfigMap", "namespace": "m-ev", "name": "a", "apiVersion": "v1"}})
    };
    let p = "/apis/events.k8s.io/v1/namespaces/m-ev/events";
    let r = post(&c, p, ev("ok")).await;
    assert_eq!(r.code, 201, "{}", r.text);
    // Core and events.k8s.io views are one store.
    let core = get(&c, "/api/v1/namespaces/m-ev/events/ok").await.json();
    assert_eq!(core["message"], "ok");
    assert_eq!(core["involvedObject"]["name"], "a");
    let mut bad = ev("bad");
    bad.as_object_mut().unwrap().remove("eventTime");
    post(&c, p, bad).await.assert_status(
        422,
        "Invalid",
        "Event.events.k8s.io \"bad\" is invalid: eventTime: Required value",
    );
}

// ---------------------------------------------------------------------------------------------
// §2.4 item 8: validation ratcheting (unchanged invalid values are tolerated on update)

async fn tighten_size_to_two(c: &kube::Client) {
    let r = patch(
        c,
        &format!("{CRDS}/widgets.example.com"),
        JSON_PATCH,
        json!([{"op": "add",
                "path": "/spec/versions/0/schema/openAPIV3Schema/properties/spec/properties/size/maximum",
                "value": 2}]),
    )
    .await;
    assert_eq!(r.code, 200, "{}", r.text);
}

#[tokio::test]
async fn unchanged_invalid_fields_are_ratcheted() {
    let sim = sim_with_ns("m-ratchet").await;
    let c = sim.client();
    install_widgets(&c).await;
    let base = widgets("m-ratchet");
    assert_eq!(post(&c, &base, widget("m-ratchet", "w")).await.code, 201);
    tighten_size_to_two(&c).await;
    // size 3 now violates maximum 2, but it does not change: metadata and other fields may.
    let r = patch(
        &c,
        &format!("{base}/w"),
        MERGE,
        json!({"metadata": {"annotations": {"a": "b"}}, "spec": {"color": "blue"}}),
    )
    .await;
    assert_eq!(r.code, 200, "{}", r.text);
    assert_eq!(r.json()["spec"]["size"], 3);
    assert_eq!(r.json()["spec"]["color"], "blue");
}

#[tokio::test]
async fn changed_invalid_fields_are_not_ratcheted() {
    let sim = sim_with_ns("m-ratchet-neg").await;
    let c = sim.client();
    install_widgets(&c).await;
    let base = widgets("m-ratchet-neg");
    assert_eq!(
        post(&c, &base, widget("m-ratchet-neg", "w")).await.code,
        201
    );
    tighten_size_to_two(&c).await;
    patch(&c, &format!("{base}/w"), MERGE, json!({"spec": {"size": 4}}))
        .await
        .assert_status(
            422,
            "Invalid",
            "Widget.example.com \"w\" is invalid: spec.size: Invalid value: 4: spec.size in body should be less than or equal to 2",
        );
    // New objects get no ratcheting at all.
    post(&c, &base, widget("m-ratchet-neg", "w2"))
        .await
        .assert_status(
            422,
            "Invalid",
            "Widget.example.com \"w2\" is invalid: spec.size: Invalid value: 3: spec.size in body should be less than or equal to 2",
        );
}
