//! Reference §6: list (resourceVersion always set, selectors, pagination with consistent
//! snapshots, resourceVersion semantics) and watch (single-line events flushed immediately,
//! resume, 410 as an ERROR event, bookmarks, timeouts, streaming lists).

mod common;

use std::time::{Duration, Instant};

use common::*;
use kube_sim::KubeSim;
use serde_json::{Value, json};

fn cm(name: &str, labels: Value) -> Value {
    json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name, "labels": labels}, "data": {"a": "1"}})
}

async fn seed(c: &kube::Client, ns: &str, n: usize) {
    for i in 0..n {
        let tier = if i % 2 == 0 { "front" } else { "back" };
        let r = post(
            c,
            &format!("/api/v1/namespaces/{ns}/configmaps"),
            cm(&format!("c{i}"), json!({"tier": tier, "n": i.to_string()})),
        )
        .await;
        assert_eq!(r.code, 201);
    }
}

fn names(v: &Value) -> Vec<String> {
    v["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["metadata"]["name"].as_str().unwrap().to_string())
        .collect()
}

// ---------------------------------------------------------------------------------------------
// List metadata.resourceVersion (MUST)

#[tokio::test]
async fn list_always_carries_resource_version() {
    let sim = sim_with_ns("l-rv").await;
    let c = sim.client();
    install_widgets(&c).await;
    for path in [
        "/api/v1/namespaces/l-rv/configmaps",
        "/api/v1/configmaps",
        "/apis/example.com/v1/namespaces/l-rv/widgets",
        "/apis/example.com/v1/widgets",
        "/api/v1/namespaces",
        "/apis/coordination.k8s.io/v1/namespaces/l-rv/leases",
    ] {
        let r = get(&c, path).await;
        assert_eq!(r.code, 200, "{path}: {}", r.text);
        let v = r.json();
        let rv = v["metadata"]["resourceVersion"].as_str().expect("list RV");
        assert_eq!(rv, sim.resource_version().to_string(), "{path}");
        assert!(v["items"].is_array());
        assert!(v["kind"].as_str().unwrap().ends_with("List"));
    }
    // Table lists carry it too.
    let r = raw_bytes(
        &c,
        http::Method::GET,
        "/api/v1/namespaces/l-rv/configmaps",
        None,
        Some("application/json;as=Table;v=v1;g=meta.k8s.io"),
        vec![],
    )
    .await;
    assert!(r.json()["metadata"]["resourceVersion"].is_string());
}

#[tokio::test]
async fn list_option_errors_are_422_list_options() {
    let sim = sim_with_ns("l-rv-neg").await;
    let c = sim.client();
    let base = "/api/v1/namespaces/l-rv-neg/configmaps";
    get(&c, &format!("{base}?resourceVersionMatch=NotOlderThan")).await.assert_status(
        422,
        "Invalid",
        "ListOptions.meta.k8s.io \"\" is invalid: resourceVersionMatch: Forbidden: resourceVersionMatch is forbidden unless resourceVersion is provided",
    );
    get(&c, &format!("{base}?resourceVersion=0&resourceVersionMatch=Exact")).await.assert_status(
        422,
        "Invalid",
        "ListOptions.meta.k8s.io \"\" is invalid: resourceVersionMatch: Forbidden: resourceVersionMatch \"exact\" is forbidden for resourceVersion \"0\"",
    );
    get(&c, &format!("{base}?resourceVersion=1&resourceVersionMatch=Newest")).await.assert_status(
        422,
        "Invalid",
        "ListOptions.meta.k8s.io \"\" is invalid: resourceVersionMatch: Unsupported value: \"Newest\": supported values: \"Exact\", \"NotOlderThan\", \"\"",
    );
    get(&c, &format!("{base}?sendInitialEvents=true")).await.assert_status(
        422,
        "Invalid",
        "ListOptions.meta.k8s.io \"\" is invalid: sendInitialEvents: Forbidden: sendInitialEvents is forbidden for list",
    );
    // Exact at a compacted resourceVersion.
    seed(&c, "l-rv-neg", 2).await;
    let rv = sim.resource_version() - 1;
    sim.compact_history();
    get(
        &c,
        &format!("{base}?resourceVersion={rv}&resourceVersionMatch=Exact"),
    )
    .await
    .assert_status(
        410,
        "Expired",
        "The resourceVersion for the provided list is too old.",
    );
}

#[tokio::test]
async fn exact_list_returns_the_old_state() {
    let sim = sim_with_ns("l-exact").await;
    let c = sim.client();
    seed(&c, "l-exact", 3).await;
    let rv = sim.resource_version();
    delete(&c, "/api/v1/namespaces/l-exact/configmaps/c0", None).await;
    let r = get(
        &c,
        &format!(
            "/api/v1/namespaces/l-exact/configmaps?resourceVersion={rv}&resourceVersionMatch=Exact"
        ),
    )
    .await;
    assert_eq!(r.code, 200);
    assert_eq!(names(&r.json()), vec!["c0", "c1", "c2"]);
    assert_eq!(r.json()["metadata"]["resourceVersion"], rv.to_string());
}

#[tokio::test]
async fn too_large_resource_version_times_out_with_504() {
    let sim = sim_with_ns("l-large").await;
    let c = no_retry_client(&sim);
    let want = sim.resource_version() + 100;
    let start = Instant::now();
    let r = get(
        &c,
        &format!("/api/v1/namespaces/l-large/configmaps?resourceVersion={want}"),
    )
    .await;
    assert!(start.elapsed() >= Duration::from_secs(2));
    r.assert_status(
        504,
        "Timeout",
        &format!(
            "Timeout: Too large resource version: {want}, current: {}",
            sim.resource_version()
        ),
    );
    assert_eq!(
        r.json()["details"]["causes"][0]["reason"],
        "ResourceVersionTooLarge"
    );
}

// ---------------------------------------------------------------------------------------------
// Selectors

#[tokio::test]
async fn label_and_field_selectors() {
    let sim = sim_with_ns("l-sel").await;
    let c = sim.client();
    seed(&c, "l-sel", 5).await;
    let base = "/api/v1/namespaces/l-sel/configmaps";
    let q = |s: &str| format!("{base}?labelSelector={}", urlencode(s));
    assert_eq!(
        names(&get(&c, &q("tier=front")).await.json()),
        vec!["c0", "c2", "c4"]
    );
    assert_eq!(
        names(&get(&c, &q("tier!=front")).await.json()),
        vec!["c1", "c3"]
    );
    assert_eq!(
        names(&get(&c, &q("n in (1,4)")).await.json()),
        vec!["c1", "c4"]
    );
    assert_eq!(names(&get(&c, &q("!missing,tier")).await.json()).len(), 5);
    let r = get(&c, &format!("{base}?fieldSelector=metadata.name%3Dc3")).await;
    assert_eq!(names(&r.json()), vec!["c3"]);
    let r = get(&c, &format!("{base}?fieldSelector=metadata.name!%3Dc3")).await;
    assert_eq!(names(&r.json()).len(), 4);
    // Secret's `type` field.
    post(&c, "/api/v1/namespaces/l-sel/secrets", json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "t"}, "type": "kubernetes.io/tls", "data": {"tls.crt": "", "tls.key": ""}})).await;
    post(
        &c,
        "/api/v1/namespaces/l-sel/secrets",
        json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "o"}}),
    )
    .await;
    let r = get(
        &c,
        "/api/v1/namespaces/l-sel/secrets?fieldSelector=type%3Dkubernetes.io%2Ftls",
    )
    .await;
    assert_eq!(names(&r.json()), vec!["t"]);
}

fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'_' | b'.' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[tokio::test]
async fn selector_errors_are_400() {
    let sim = sim_with_ns("l-sel-neg").await;
    let c = sim.client();
    get(
        &c,
        "/api/v1/namespaces/l-sel-neg/configmaps?fieldSelector=spec.foo%3Dx",
    )
    .await
    .assert_status(400, "BadRequest", "field label not supported: spec.foo");
    install_widgets(&c).await;
    get(&c, "/apis/example.com/v1/namespaces/l-sel-neg/widgets?fieldSelector=spec.color%3Dred").await.assert_status(
        400,
        "BadRequest",
        "\"spec.color\" is not a known field selector: only \"metadata.name\", \"metadata.namespace\"",
    );
    let r = get(
        &c,
        &format!(
            "/api/v1/namespaces/l-sel-neg/configmaps?labelSelector={}",
            urlencode("a=b=c")
        ),
    )
    .await;
    // A top-level parse error is labels.Parse's text as is...
    r.assert_status(
        400,
        "BadRequest",
        "found '=', expected: ',' or 'end of string'",
    );
    // ...one inside a requirement is wrapped, and the end of input is the empty literal.
    get(
        &c,
        &format!(
            "/api/v1/namespaces/l-sel-neg/configmaps?labelSelector={}",
            urlencode("a in (x")
        ),
    )
    .await
    .assert_status(
        400,
        "BadRequest",
        "unable to parse requirement: found '', expected: ',' or ')'",
    );
}

// ---------------------------------------------------------------------------------------------
// Pagination

#[tokio::test]
async fn pagination_is_a_consistent_snapshot() {
    let sim = sim_with_ns("l-page").await;
    let c = sim.client();
    seed(&c, "l-page", 5).await;
    let base = "/api/v1/namespaces/l-page/configmaps";
    let p1 = get(&c, &format!("{base}?limit=2")).await.json();
    assert_eq!(names(&p1), vec!["c0", "c1"]);
    assert_eq!(p1["metadata"]["remainingItemCount"], 3);
    let rv1 = p1["metadata"]["resourceVersion"].clone();
    let token = p1["metadata"]["continue"].as_str().unwrap().to_string();
    // Changes between pages are invisible to the rest of the list.
    delete(&c, &format!("{base}/c3"), None).await;
    post(&c, base, cm("c25", json!({}))).await;
    let p2 = get(&c, &format!("{base}?limit=2&continue={token}"))
        .await
        .json();
    assert_eq!(names(&p2), vec!["c2", "c3"]);
    assert_eq!(p2["metadata"]["resourceVersion"], rv1);
    let token = p2["metadata"]["continue"].as_str().unwrap().to_string();
    let p3 = get(&c, &format!("{base}?limit=2&continue={token}"))
        .await
        .json();
    assert_eq!(names(&p3), vec!["c4"]);
    assert!(p3["metadata"].get("continue").is_none());
    // resourceVersion=0 ignores limit.
    let all = get(&c, &format!("{base}?limit=2&resourceVersion=0"))
        .await
        .json();
    assert_eq!(names(&all).len(), 5);
}

#[tokio::test]
async fn continue_errors() {
    let sim = sim_with_ns("l-page-neg").await;
    let c = sim.client();
    seed(&c, "l-page-neg", 3).await;
    let base = "/api/v1/namespaces/l-page-neg/configmaps";
    let p1 = get(&c, &format!("{base}?limit=1")).await.json();
    let token = p1["metadata"]["continue"].as_str().unwrap().to_string();
    get(
        &c,
        &format!("{base}?limit=1&continue={token}&resourceVersion=5"),
    )
    .await
    .assert_status(
        400,
        "BadRequest",
        "specifying resource version is not allowed when using continue",
    );
    let r = get(&c, &format!("{base}?limit=1&continue=garbage!!")).await;
    assert_eq!((r.code, r.reason()), (400, "BadRequest".to_string()));
    assert!(
        r.message().starts_with("continue key is not valid"),
        "{}",
        r.message()
    );
    post(&c, base, cm("z", json!({}))).await;
    sim.compact_history();
    get(&c, &format!("{base}?limit=1&continue={token}")).await.assert_status(
        410,
        "Expired",
        "The provided continue parameter is too old to display a consistent list result. You can start a new list without the continue parameter, or use the continue token in this response to retrieve the remainder of the results. Continuing with the provided token results in an inconsistent list - objects that were created, modified, or deleted between the time the first chunk was returned and now may show up in the list.",
    );
}

// ---------------------------------------------------------------------------------------------
// Watch: single-line events, flushed immediately (MUST)

#[tokio::test]
async fn watch_events_are_single_lines_flushed_immediately() {
    let sim = sim_with_ns("w-lines").await;
    let c = sim.client();
    let rv = sim.resource_version();
    let (code, mut rx) = stream_lines(&c, &format!("/api/v1/namespaces/w-lines/configmaps?watch=true&resourceVersion={rv}&timeoutSeconds=30"), None).await;
    assert_eq!(code, 200);
    for i in 0..3 {
        post(
            &c,
            "/api/v1/namespaces/w-lines/configmaps",
            cm(&format!("c{i}"), json!({})),
        )
        .await;
        // Each event arrives on its own, before the next write, as one complete JSON line.
        let line = next_line(&mut rx, 2.0)
            .await
            .expect("event flushed while the stream stays open");
        let v: Value = serde_json::from_str(&line).expect("one JSON object per line");
        assert_eq!(v["type"], "ADDED");
        assert_eq!(v["object"]["metadata"]["name"], format!("c{i}"));
        assert!(v["object"]["metadata"]["resourceVersion"].is_string());
    }
    assert!(
        next_line(&mut rx, 0.2).await.is_none(),
        "nothing else while idle"
    );
}

#[tokio::test]
async fn watch_from_expired_rv_is_a_single_line_410_error_event() {
    let sim = sim_with_ns("w-410").await;
    let c = sim.client();
    post(
        &c,
        "/api/v1/namespaces/w-410/configmaps",
        cm("a", json!({})),
    )
    .await;
    let old = sim.resource_version() - 1;
    sim.compact_history();
    let (code, mut rx) = stream_lines(
        &c,
        &format!("/api/v1/namespaces/w-410/configmaps?watch=true&resourceVersion={old}"),
        None,
    )
    .await;
    assert_eq!(code, 200, "410 comes as an event, not as the HTTP status");
    let line = next_line(&mut rx, 2.0).await.unwrap();
    let v: Value = serde_json::from_str(&line).unwrap();
    assert_eq!(v["type"], "ERROR");
    assert_eq!(v["object"]["kind"], "Status");
    assert_eq!(v["object"]["code"], 410);
    assert_eq!(v["object"]["reason"], "Expired");
    assert_eq!(
        v["object"]["message"],
        format!(
            "too old resource version: {old} ({})",
            sim.resource_version() + 1
        )
    );
    assert_eq!(
        next_line(&mut rx, 2.0).await.as_deref(),
        Some("EOF"),
        "the stream ends"
    );
}

#[tokio::test]
async fn watch_without_rv_sends_current_state_then_changes() {
    let sim = sim_with_ns("w-state").await;
    let c = sim.client();
    seed(&c, "w-state", 2).await;
    let (_, mut rx) = stream_lines(
        &c,
        "/api/v1/namespaces/w-state/configmaps?watch=1&labelSelector=tier%3Dfront",
        None,
    )
    .await;
    let v: Value = serde_json::from_str(&next_line(&mut rx, 2.0).await.unwrap()).unwrap();
    assert_eq!(
        (v["type"].as_str(), v["object"]["metadata"]["name"].as_str()),
        (Some("ADDED"), Some("c0"))
    );
    // c0 leaves the selection: DELETED; c1 enters: ADDED.
    patch(
        &c,
        "/api/v1/namespaces/w-state/configmaps/c0",
        MERGE,
        json!({"metadata": {"labels": {"tier": "gone"}}}),
    )
    .await;
    let v: Value = serde_json::from_str(&next_line(&mut rx, 2.0).await.unwrap()).unwrap();
    assert_eq!(
        (v["type"].as_str(), v["object"]["metadata"]["name"].as_str()),
        (Some("DELETED"), Some("c0"))
    );
    patch(
        &c,
        "/api/v1/namespaces/w-state/configmaps/c1",
        MERGE,
        json!({"metadata": {"labels": {"tier": "front"}}}),
    )
    .await;
    let v: Value = serde_json::from_str(&next_line(&mut rx, 2.0).await.unwrap()).unwrap();
    assert_eq!(
        (v["type"].as_str(), v["object"]["metadata"]["name"].as_str()),
        (Some("ADDED"), Some("c1"))
    );
    delete(&c, "/api/v1/namespaces/w-state/configmaps/c1", None).await;
    let v: Value = serde_json::from_str(&next_line(&mut rx, 2.0).await.unwrap()).unwrap();
    assert_eq!(v["type"], "DELETED");
    let del_rv: u64 = v["object"]["metadata"]["resourceVersion"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(
        del_rv,
        sim.resource_version(),
        "DELETED carries the deletion's resourceVersion"
    );
}

#[tokio::test]
async fn watch_resumes_from_resource_version() {
    let sim = sim_with_ns("w-resume").await;
    let c = sim.client();
    let rv = sim.resource_version();
    seed(&c, "w-resume", 3).await;
    let (_, mut rx) = stream_lines(
        &c,
        &format!("/api/v1/namespaces/w-resume/configmaps?watch=true&resourceVersion={rv}"),
        None,
    )
    .await;
    for i in 0..3 {
        let v: Value = serde_json::from_str(&next_line(&mut rx, 2.0).await.unwrap()).unwrap();
        assert_eq!(v["object"]["metadata"]["name"], format!("c{i}"));
    }
}

// ---------------------------------------------------------------------------------------------
// Bookmarks and timeouts

#[tokio::test]
async fn bookmarks_and_clean_close_at_timeout() {
    let sim = KubeSim::builder()
        .bookmark_interval(Duration::from_millis(200))
        .start()
        .await
        .unwrap();
    let c = sim.client();
    create_ns(&c, "w-bm").await;
    let rv = sim.resource_version();
    let start = Instant::now();
    let (_, mut rx) = stream_lines(&c, &format!("/api/v1/namespaces/w-bm/configmaps?watch=true&allowWatchBookmarks=true&timeoutSeconds=1&resourceVersion={rv}"), None).await;
    let line = next_line(&mut rx, 2.0).await.unwrap();
    let v: Value = serde_json::from_str(&line).unwrap();
    assert_eq!(v["type"], "BOOKMARK");
    assert_eq!(v["object"]["kind"], "ConfigMap");
    assert_eq!(v["object"]["apiVersion"], "v1");
    let brv: u64 = v["object"]["metadata"]["resourceVersion"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(brv >= rv && brv <= sim.resource_version());
    let mut last = String::new();
    while let Some(l) = next_line(&mut rx, 3.0).await {
        if l == "EOF" {
            break;
        }
        last = l;
    }
    assert!(
        start.elapsed() >= Duration::from_millis(900),
        "closed at timeoutSeconds"
    );
    assert!(start.elapsed() < Duration::from_secs(3));
    assert_eq!(
        serde_json::from_str::<Value>(&last).unwrap()["type"],
        "BOOKMARK",
        "a bookmark just before the close"
    );
}

#[tokio::test]
async fn no_bookmarks_unless_allowed() {
    let sim = KubeSim::builder()
        .bookmark_interval(Duration::from_millis(100))
        .start()
        .await
        .unwrap();
    let c = sim.client();
    create_ns(&c, "w-nobm").await;
    let rv = sim.resource_version();
    let (_, mut rx) = stream_lines(
        &c,
        &format!(
            "/api/v1/namespaces/w-nobm/configmaps?watch=true&timeoutSeconds=1&resourceVersion={rv}"
        ),
        None,
    )
    .await;
    assert_eq!(
        next_line(&mut rx, 3.0).await.as_deref(),
        Some("EOF"),
        "no BOOKMARK, clean end"
    );
    // Watch option errors.
    get(&c, "/api/v1/namespaces/w-nobm/configmaps?watch=true&resourceVersionMatch=NotOlderThan&resourceVersion=0").await.assert_status(
        422,
        "Invalid",
        "ListOptions.meta.k8s.io \"\" is invalid: resourceVersionMatch: Forbidden: resourceVersionMatch is forbidden for watch unless sendInitialEvents is provided",
    );
}

// ---------------------------------------------------------------------------------------------
// Streaming lists

#[tokio::test]
async fn streaming_list_sends_initial_events_end_bookmark() {
    let sim = sim_with_ns("w-sl").await;
    let c = sim.client();
    seed(&c, "w-sl", 3).await;
    let (_, mut rx) = stream_lines(&c, "/api/v1/namespaces/w-sl/configmaps?watch=true&timeoutSeconds=30&allowWatchBookmarks=true&sendInitialEvents=true&resourceVersionMatch=NotOlderThan&resourceVersion=0", None).await;
    for i in 0..3 {
        let v: Value = serde_json::from_str(&next_line(&mut rx, 2.0).await.unwrap()).unwrap();
        assert_eq!(v["type"], "ADDED");
        assert_eq!(v["object"]["metadata"]["name"], format!("c{i}"));
    }
    let v: Value = serde_json::from_str(&next_line(&mut rx, 2.0).await.unwrap()).unwrap();
    assert_eq!(v["type"], "BOOKMARK");
    assert_eq!(
        v["object"]["metadata"]["annotations"]["k8s.io/initial-events-end"],
        "true"
    );
    assert_eq!(
        v["object"]["metadata"]["resourceVersion"],
        sim.resource_version().to_string()
    );
    post(
        &c,
        "/api/v1/namespaces/w-sl/configmaps",
        cm("new", json!({})),
    )
    .await;
    let v: Value = serde_json::from_str(&next_line(&mut rx, 2.0).await.unwrap()).unwrap();
    assert_eq!(v["type"], "ADDED");
}

#[tokio::test]
async fn streaming_list_errors() {
    let sim = sim_with_ns("w-sl-neg").await;
    let c = sim.client();
    get(&c, "/api/v1/namespaces/w-sl-neg/configmaps?watch=true&sendInitialEvents=true").await.assert_status(
        422,
        "Invalid",
        "ListOptions.meta.k8s.io \"\" is invalid: resourceVersionMatch: Forbidden: sendInitialEvents requires setting resourceVersionMatch to NotOlderThan",
    );
    let off = KubeSim::builder().watch_list(false).start().await.unwrap();
    get(&off.client(), "/api/v1/namespaces/default/configmaps?watch=true&sendInitialEvents=true&resourceVersionMatch=NotOlderThan").await.assert_status(
        422,
        "Invalid",
        "ListOptions.meta.k8s.io \"\" is invalid: sendInitialEvents: Forbidden: sendInitialEvents is forbidden for watch unless the WatchList feature gate is enabled",
    );
}

#[tokio::test]
async fn partial_object_metadata_and_table_watches() {
    let sim = sim_with_ns("w-views").await;
    let c = sim.client();
    seed(&c, "w-views", 1).await;
    let (_, mut rx) = stream_lines(
        &c,
        "/api/v1/namespaces/w-views/configmaps?watch=true",
        Some("application/json;as=PartialObjectMetadata;g=meta.k8s.io;v=v1"),
    )
    .await;
    let v: Value = serde_json::from_str(&next_line(&mut rx, 2.0).await.unwrap()).unwrap();
    assert_eq!(v["object"]["kind"], "PartialObjectMetadata");
    assert!(v["object"].get("data").is_none());
    let (_, mut rx) = stream_lines(
        &c,
        "/api/v1/namespaces/w-views/configmaps?watch=true",
        Some("application/json;as=Table;v=v1;g=meta.k8s.io"),
    )
    .await;
    let v: Value = serde_json::from_str(&next_line(&mut rx, 2.0).await.unwrap()).unwrap();
    assert_eq!(v["object"]["kind"], "Table");
    assert_eq!(v["object"]["rows"][0]["cells"][0], "c0");
}
