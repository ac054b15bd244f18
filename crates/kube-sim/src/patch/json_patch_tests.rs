//! Table tests for [`json_patch`], error texts as evanphx/json-patch v4.12.0 words them.

use super::*;
use serde_json::json;

fn apply(doc: Value, patch: Value) -> Result<Value, PatchError> {
    json_patch(&doc, patch.to_string().as_bytes())
}

fn err(doc: Value, patch: Value) -> String {
    match apply(doc, patch) {
        Err(PatchError::Apply(m)) => m,
        other => panic!("expected an Apply error, got {other:?}"),
    }
}

#[test]
fn every_op_succeeds_on_the_rfc_shapes() {
    let cases: Vec<(Value, Value, Value)> = vec![
        // add: new member, replace existing member, array insert, append with "-"
        (
            json!({"a":1}),
            json!([{"op":"add","path":"/b","value":2}]),
            json!({"a":1,"b":2}),
        ),
        (
            json!({"a":1}),
            json!([{"op":"add","path":"/a","value":3}]),
            json!({"a":3}),
        ),
        (
            json!({"l":[1,3]}),
            json!([{"op":"add","path":"/l/1","value":2}]),
            json!({"l":[1,2,3]}),
        ),
        (
            json!({"l":[1]}),
            json!([{"op":"add","path":"/l/-","value":2}]),
            json!({"l":[1,2]}),
        ),
        (
            json!({"l":[1]}),
            json!([{"op":"add","path":"/l/1","value":2}]),
            json!({"l":[1,2]}),
        ),
        // negative index on add counts from len+1
        (
            json!({"l":[1,2]}),
            json!([{"op":"add","path":"/l/-1","value":9}]),
            json!({"l":[1,2,9]}),
        ),
        // remove member / array element / negative index
        (
            json!({"a":1,"b":2}),
            json!([{"op":"remove","path":"/a"}]),
            json!({"b":2}),
        ),
        (
            json!({"l":[1,2,3]}),
            json!([{"op":"remove","path":"/l/1"}]),
            json!({"l":[1,3]}),
        ),
        (
            json!({"l":[1,2,3]}),
            json!([{"op":"remove","path":"/l/-1"}]),
            json!({"l":[1,2]}),
        ),
        // replace
        (
            json!({"a":1}),
            json!([{"op":"replace","path":"/a","value":"x"}]),
            json!({"a":"x"}),
        ),
        (
            json!({"l":[1,2]}),
            json!([{"op":"replace","path":"/l/0","value":0}]),
            json!({"l":[0,2]}),
        ),
        (
            json!({"a":1}),
            json!([{"op":"replace","path":"","value":{"z":1}}]),
            json!({"z":1}),
        ),
        // v4 quirk: replace of a missing member of an existing object adds it
        (
            json!({"a":1}),
            json!([{"op":"replace","path":"/b","value":2}]),
            json!({"a":1,"b":2}),
        ),
        // move / copy
        (
            json!({"a":{"x":1},"b":{}}),
            json!([{"op":"move","from":"/a/x","path":"/b/y"}]),
            json!({"a":{},"b":{"y":1}}),
        ),
        (
            json!({"l":[1,2,3]}),
            json!([{"op":"move","from":"/l/0","path":"/l/-"}]),
            json!({"l":[2,3,1]}),
        ),
        (
            json!({"a":[1]}),
            json!([{"op":"copy","from":"/a","path":"/b"}]),
            json!({"a":[1],"b":[1]}),
        ),
        // v4 quirk: copy from a missing member copies null
        (
            json!({"a":1}),
            json!([{"op":"copy","from":"/zz","path":"/b"}]),
            json!({"a":1,"b":null}),
        ),
        // test passes: deep equality, numbers by value, null on missing member
        (
            json!({"a":{"b":[1,{"c":true}]}}),
            json!([{"op":"test","path":"/a","value":{"b":[1,{"c":true}]}}]),
            json!({"a":{"b":[1,{"c":true}]}}),
        ),
        (
            json!({"n":1}),
            json!([{"op":"test","path":"/n","value":1.0}]),
            json!({"n":1}),
        ),
        (
            json!({"m":{}}),
            json!([{"op":"test","path":"/m/missing","value":null}]),
            json!({"m":{}}),
        ),
        (
            json!({"m":{"x":null}}),
            json!([{"op":"test","path":"/m/x","value":null}]),
            json!({"m":{"x":null}}),
        ),
        (
            json!({"a":1}),
            json!([{"op":"test","path":"","value":{"a":1}}]),
            json!({"a":1}),
        ),
        // RFC 6901 escapes
        (
            json!({"a/b":1,"m~n":2}),
            json!([{"op":"remove","path":"/a~1b"},{"op":"replace","path":"/m~0n","value":3}]),
            json!({"m~n":3}),
        ),
        // null patch = no operations
        (json!({"a":1}), json!(null), json!({"a":1})),
        (json!({"a":1}), json!([]), json!({"a":1})),
    ];
    for (i, (doc, patch, want)) in cases.into_iter().enumerate() {
        assert_eq!(apply(doc, patch.clone()), Ok(want), "case {i}: {patch}");
    }
}

#[test]
fn kube_runtime_finalizer_patches() {
    // kube-runtime-5.0.0/src/finalizer.rs: first finalizer on an object without the key.
    let obj = json!({"apiVersion":"example.com/v1","kind":"Widget","metadata":{"name":"w","namespace":"d"}});
    let add_first = json!([
        {"op":"test","path":"/metadata/finalizers","value":null},
        {"op":"add","path":"/metadata/finalizers","value":["example.com/cleanup"]}
    ]);
    let with = apply(obj.clone(), add_first.clone()).unwrap_or_default();
    assert_eq!(
        with["metadata"]["finalizers"],
        json!(["example.com/cleanup"])
    );
    // Running the same patch again must fail: the list now exists.
    assert_eq!(
        err(with.clone(), add_first),
        "testing value /metadata/finalizers failed: test failed"
    );
    // Appending to an existing list.
    let append = json!([
        {"op":"test","path":"/metadata/finalizers","value":["example.com/cleanup"]},
        {"op":"add","path":"/metadata/finalizers/-","value":"other"}
    ]);
    let two = apply(with.clone(), append).unwrap_or_default();
    assert_eq!(
        two["metadata"]["finalizers"],
        json!(["example.com/cleanup", "other"])
    );
    // Removal: test the index, then remove it.
    let remove = json!([
        {"op":"test","path":"/metadata/finalizers/0","value":"example.com/cleanup"},
        {"op":"remove","path":"/metadata/finalizers/0"}
    ]);
    let one = apply(two.clone(), remove.clone()).unwrap_or_default();
    assert_eq!(one["metadata"]["finalizers"], json!(["other"]));
    // A concurrent change makes the test fail instead of removing the wrong finalizer.
    assert_eq!(
        err(one, remove),
        "testing value /metadata/finalizers/0 failed: test failed"
    );
}

#[test]
fn failures_carry_evanphx_messages() {
    let cases: Vec<(Value, Value, &str)> = vec![
        (
            json!({}),
            json!([{"op":"test","path":"/metadata/finalizers","value":null}]),
            "test operation does not apply: is missing path: /metadata/finalizers: missing value",
        ),
        (
            json!({"a":1}),
            json!([{"op":"test","path":"/a","value":2}]),
            "testing value /a failed: test failed",
        ),
        (
            json!({"a":1}),
            json!([{"op":"test","path":"/a","value":null}]),
            "testing value /a failed: test failed",
        ),
        (
            json!({"a":"1"}),
            json!([{"op":"test","path":"/a","value":1}]),
            "testing value /a failed: test failed",
        ),
        (
            json!({"l":[1]}),
            json!([{"op":"test","path":"/l/5","value":1}]),
            "error in test for path: '/l/5': Unable to access invalid index: 5: invalid index referenced",
        ),
        (
            json!({"l":[1]}),
            json!([{"op":"add","path":"/l/3","value":1}]),
            "error in add for path: '/l/3': Unable to access invalid index: 3: invalid index referenced",
        ),
        (
            json!({"l":[1]}),
            json!([{"op":"add","path":"/l/x","value":1}]),
            "error in add for path: '/l/x': value was not a proper array index: 'x': strconv.Atoi: parsing \"x\": invalid syntax",
        ),
        (
            json!({"l":[1]}),
            json!([{"op":"remove","path":"/l/1"}]),
            "error in remove for path: '/l/1': Unable to access invalid index: 1: invalid index referenced",
        ),
        (
            json!({"a":1}),
            json!([{"op":"remove","path":"/b"}]),
            "error in remove for path: '/b': Unable to remove nonexistent key: b: missing value",
        ),
        (
            json!({"a":1}),
            json!([{"op":"remove","path":"/x/y"}]),
            "remove operation does not apply: doc is missing path: \"/x/y\": missing value",
        ),
        (
            json!({"a":1}),
            json!([{"op":"add","path":"/x/y","value":1}]),
            "add operation does not apply: doc is missing path: \"/x/y\": missing value",
        ),
        (
            json!({"a":1}),
            json!([{"op":"replace","path":"/x/y","value":1}]),
            "replace operation does not apply: doc is missing path: /x/y: missing value",
        ),
        (
            json!({"l":[]}),
            json!([{"op":"replace","path":"/l/0","value":1}]),
            "replace operation does not apply: doc is missing key: /l/0: missing value",
        ),
        (
            json!({"a":1}),
            json!([{"op":"move","from":"/b","path":"/c"}]),
            "error in move for path: 'b': Unable to remove nonexistent key: b: missing value",
        ),
        (
            json!({"a":1}),
            json!([{"op":"copy","from":"/x/y","path":"/c"}]),
            "copy operation does not apply: doc is missing from path: /x/y: missing value",
        ),
        (
            json!({"a":1}),
            json!([{"op":"add","path":"","value":1}]),
            "add operation does not apply: doc is missing path: \"\": missing value",
        ),
        (
            json!({"a":"s"}),
            json!([{"op":"add","path":"/a/b","value":1}]),
            "add operation does not apply: doc is missing path: \"/a/b\": missing value",
        ),
        (
            json!({"a":1}),
            json!([{"op":"frob","path":"/a"}]),
            "Unexpected kind: frob",
        ),
        (
            json!({"a":1}),
            json!([{"path":"/a"}]),
            "Unexpected kind: unknown",
        ),
        (
            json!({"a":1}),
            json!([{"op":"add","value":1}]),
            "add operation failed to decode path: missing value",
        ),
        (
            json!({"a":1}),
            json!([{"op":"replace","path":"","value":3}]),
            "replace operation value must be object or array",
        ),
    ];
    for (i, (doc, patch, want)) in cases.into_iter().enumerate() {
        assert_eq!(err(doc, patch), want, "case {i}");
    }
}

#[test]
fn a_failing_op_leaves_no_partial_result() {
    let doc = json!({"a":1});
    let r = apply(
        doc,
        json!([{"op":"add","path":"/b","value":2},{"op":"remove","path":"/zz"}]),
    );
    assert!(matches!(r, Err(PatchError::Apply(_))));
}

#[test]
fn malformed_and_oversized_patches() {
    let doc = json!({"a":1});
    assert!(matches!(
        json_patch(&doc, b"[{"),
        Err(PatchError::Malformed(_))
    ));
    assert!(matches!(
        json_patch(&doc, b"not json"),
        Err(PatchError::Malformed(_))
    ));
    assert_eq!(
        json_patch(&doc, b"{\"op\":\"add\"}"),
        Err(PatchError::Malformed(
            "json: cannot unmarshal object into Go value of type jsonpatch.Patch".into()
        ))
    );
    assert_eq!(
        json_patch(&doc, b"[1]"),
        Err(PatchError::Malformed(
            "json: cannot unmarshal number into Go value of type jsonpatch.Operation".into()
        ))
    );
    let many: Vec<Value> = (0..10_001)
        .map(|_| json!({"op":"test","path":"/a","value":1}))
        .collect();
    let body = Value::Array(many).to_string();
    assert_eq!(
        json_patch(&doc, body.as_bytes()),
        Err(PatchError::TooManyOps(10_001))
    );
    let exactly: Vec<Value> = (0..10_000)
        .map(|_| json!({"op":"test","path":"/a","value":1}))
        .collect();
    assert!(json_patch(&doc, Value::Array(exactly).to_string().as_bytes()).is_ok());
    // Statuses the core sends.
    assert_eq!(PatchError::Malformed("x".into()).to_status().code, 400);
    assert_eq!(PatchError::TooManyOps(10_001).to_status().code, 413);
}

#[test]
fn key_order_is_preserved() {
    let doc = json!({"z":1,"a":2,"m":3});
    let got = apply(
        doc,
        json!([{"op":"remove","path":"/a"},{"op":"add","path":"/b","value":0}]),
    )
    .unwrap_or_default();
    assert_eq!(got.to_string(), r#"{"z":1,"m":3,"b":0}"#);
}
