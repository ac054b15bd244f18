//! Strategic merge patch cases, most taken from apimachinery's
//! `strategicpatch/patch_test.go` (customStrategicMergePatchTestCaseData) with its
//! `mergingList` (merge key `name`) and `mergingIntList` (primitive merge) fields.

use super::*;
use crate::patch::builtin_merge_schema;
use serde_json::json;

/// The test schema upstream uses: `mergingList` by `name`, `mergingIntList` as a set,
/// `retainKeysMergingList` by `name`, everything else atomic.
struct TestSchema;
impl MergeSchema for TestSchema {
    fn list_semantics(&self, path: &[&str]) -> ListSemantics {
        match path.last() {
            Some(&"mergingList") | Some(&"retainKeysMergingList") => ListSemantics::Map {
                keys: vec!["name".into()],
            },
            Some(&"mergingIntList") => ListSemantics::Set,
            _ => ListSemantics::Atomic,
        }
    }
}

fn smp(doc: Value, patch: Value) -> Result<Value, PatchError> {
    strategic_merge_patch(&doc, &patch, &TestSchema)
}

#[test]
fn upstream_custom_cases() {
    let cases: Vec<(&str, Value, Value, Value)> = vec![
        (
            "unique scalars when merging lists",
            json!({"mergingIntList":[1,2]}),
            json!({"mergingIntList":[2,3]}),
            json!({"mergingIntList":[1,2,3]}),
        ),
        (
            "delete map from nested map",
            json!({"simpleMap":{"key1":1,"key2":1}}),
            json!({"simpleMap":{"$patch":"delete"}}),
            json!({"simpleMap":{}}),
        ),
        (
            "delete all items from merging list",
            json!({"mergingList":[{"name":1},{"name":2}]}),
            json!({"mergingList":[{"$patch":"replace"}]}),
            json!({"mergingList":[]}),
        ),
        (
            "merge empty merging lists",
            json!({"mergingList":[]}),
            json!({"mergingList":[]}),
            json!({"mergingList":[]}),
        ),
        (
            "delete all keys from map",
            json!({"name":1,"value":1}),
            json!({"$patch":"replace"}),
            json!({}),
        ),
        (
            "add key and delete all keys from map",
            json!({"name":1,"value":1}),
            json!({"other":"a","$patch":"replace"}),
            json!({"other":"a"}),
        ),
        (
            "delete all duplicate entries in a merging list",
            json!({"mergingList":[{"name":1},{"name":1},{"name":2,"value":"a"},{"name":3},{"name":3}]}),
            json!({"mergingList":[{"name":1,"$patch":"delete"},{"name":3,"$patch":"delete"}]}),
            json!({"mergingList":[{"name":2,"value":"a"}]}),
        ),
        (
            "retainKeys list can delete a field when no retainKeys directive present",
            json!({"retainKeysMergingList":[{"name":"bar"},{"name":"foo","value":"a"}]}),
            json!({"retainKeysMergingList":[{"name":"foo","value":null}]}),
            json!({"retainKeysMergingList":[{"name":"bar"},{"name":"foo"}]}),
        ),
        (
            "preserve the order from the patch in a merging list",
            json!({"mergingList":[{"name":1},{"name":2,"value":"b"},{"name":3}]}),
            json!({"mergingList":[{"name":3,"value":"c"},{"name":1,"value":"a"},{"name":2,"other":"x"}]}),
            json!({"mergingList":[{"name":3,"value":"c"},{"name":1,"value":"a"},{"name":2,"value":"b","other":"x"}]}),
        ),
        (
            "preserve the order from the patch in a merging list 2",
            json!({"mergingList":[{"name":1},{"name":2,"value":"b"},{"name":3}]}),
            json!({"mergingList":[{"name":3,"value":"c"},{"name":1,"value":"a"}]}),
            json!({"mergingList":[{"name":2,"value":"b"},{"name":3,"value":"c"},{"name":1,"value":"a"}]}),
        ),
        (
            "preserve the order from the patch in a merging int list",
            json!({"mergingIntList":[1,2,3]}),
            json!({"mergingIntList":[3,1,2]}),
            json!({"mergingIntList":[3,1,2]}),
        ),
        ("nil patch", json!({"name":1}), json!({}), json!({"name":1})),
        (
            "null deletes",
            json!({"name":1,"value":1}),
            json!({"value":null}),
            json!({"name":1}),
        ),
        (
            "null on a missing key is dropped",
            json!({"name":1}),
            json!({"other":null}),
            json!({"name":1}),
        ),
        (
            "nulls inside a new map are discarded",
            json!({}),
            json!({"m":{"a":null,"b":1}}),
            json!({"m":{"b":1}}),
        ),
        (
            "non-merge lists are replaced",
            json!({"nonMergingList":[{"name":1},{"name":2}]}),
            json!({"nonMergingList":[{"name":3}]}),
            json!({"nonMergingList":[{"name":3}]}),
        ),
    ];
    for (name, doc, patch, want) in cases {
        assert_eq!(smp(doc, patch), Ok(want), "{name}");
    }
}

#[test]
fn delete_from_primitive_list() {
    let got = smp(
        json!({"mergingIntList":[1,2,3]}),
        json!({"$deleteFromPrimitiveList/mergingIntList":[2,4]}),
    );
    assert_eq!(got, Ok(json!({"mergingIntList":[1,3]})));
    // Together with an addition in the same patch.
    let got = smp(
        json!({"mergingIntList":[1,2]}),
        json!({"$deleteFromPrimitiveList/mergingIntList":[1],"mergingIntList":[5]}),
    );
    assert_eq!(got, Ok(json!({"mergingIntList":[5,2]})));
    // Bad directive key format → 400.
    assert_eq!(
        smp(json!({}), json!({"$deleteFromPrimitiveList":[1]})),
        Err(PatchError::Malformed(
            "invalid patch format of primitive list".into()
        ))
    );
}

#[test]
fn retain_keys() {
    let doc = json!({"strategy":{"type":"RollingUpdate","rollingUpdate":{"maxSurge":1}}});
    let got = smp(
        doc.clone(),
        json!({"strategy":{"$retainKeys":["type"],"type":"Recreate"}}),
    );
    assert_eq!(got, Ok(json!({"strategy":{"type":"Recreate"}})));
    // A patched key missing from the list is a 400.
    assert_eq!(
        smp(doc, json!({"strategy":{"$retainKeys":["type"],"other":1}})),
        Err(PatchError::Malformed(
            "invalid patch format of retainKeys".into()
        ))
    );
}

#[test]
fn set_element_order() {
    let got = smp(
        json!({"mergingList":[{"name":"a"},{"name":"b"},{"name":"c"}]}),
        json!({
            "$setElementOrder/mergingList":[{"name":"c"},{"name":"a"},{"name":"b"}],
            "mergingList":[{"name":"a","v":1}]
        }),
    );
    assert_eq!(
        got,
        Ok(json!({"mergingList":[{"name":"c"},{"name":"a","v":1},{"name":"b"}]}))
    );
    // Primitive list reorder + add.
    let got = smp(
        json!({"mergingIntList":[1,2]}),
        json!({"$setElementOrder/mergingIntList":[2,3,1],"mergingIntList":[3]}),
    );
    assert_eq!(got, Ok(json!({"mergingIntList":[2,3,1]})));
    // Patch items in an order the directive contradicts → 500 with Go's text.
    let got = smp(
        json!({"mergingIntList":[1,2]}),
        json!({"$setElementOrder/mergingIntList":[1,2],"mergingIntList":[2,1]}),
    );
    assert!(
        matches!(got, Err(PatchError::Internal(m)) if m.starts_with("The order in patch list:"))
    );
}

#[test]
fn directive_errors_map_like_upstream() {
    assert_eq!(
        smp(json!({"m":{"a":1}}), json!({"m":{"$patch":"merge","b":1}})),
        Err(PatchError::Internal(
            "unknown patch type: merge in map: map[$patch:merge b:1]".into()
        ))
    );
    assert_eq!(
        smp(
            json!({"mergingList":[{"name":1}]}),
            json!({"mergingList":[{"value":1}]})
        ),
        Err(PatchError::Internal(
            "map: map[value:1] does not contain declared merge key: name".into()
        ))
    );
    assert_eq!(
        smp(
            json!({"mergingIntList":[[1]]}),
            json!({"mergingIntList":[[2]]})
        ),
        Err(PatchError::Apply("lists of lists are not supported".into()))
    );
    assert!(matches!(
        strategic_merge_patch(&json!({}), &json!([1]), &TestSchema),
        Err(PatchError::Malformed(_))
    ));
}

#[test]
fn finalizers_merge_as_a_set_in_upstream_order() {
    let cm = builtin_merge_schema("", "ConfigMap");
    let doc = json!({"metadata":{"name":"c","finalizers":["a"]},"data":{"x":"1"}});
    let got = strategic_merge_patch(&doc, &json!({"metadata":{"finalizers":["b"]}}), &*cm);
    // New items named by the patch come first (normalizeElementOrder/mergeSortedSlice).
    assert_eq!(
        got.map(|v| v["metadata"]["finalizers"].clone()),
        Ok(json!(["b", "a"]))
    );
    let got = strategic_merge_patch(&doc, &json!({"metadata":{"finalizers":["a"]}}), &*cm);
    assert_eq!(
        got.map(|v| v["metadata"]["finalizers"].clone()),
        Ok(json!(["a"]))
    );
    let got = strategic_merge_patch(
        &doc,
        &json!({"metadata":{"$deleteFromPrimitiveList/finalizers":["a"]}}),
        &*cm,
    );
    assert_eq!(
        got.map(|v| v["metadata"]["finalizers"].clone()),
        Ok(json!([]))
    );
    // data maps merge like a merge patch (kubectl client-side apply on a ConfigMap, recorded).
    let got = strategic_merge_patch(&doc, &json!({"data":{"x":"2","y":"3"}}), &*cm);
    assert_eq!(got.map(|v| v["data"].clone()), Ok(json!({"x":"2","y":"3"})));
}

#[test]
fn deployment_containers_merge_by_name() {
    let d = builtin_merge_schema("apps", "Deployment");
    let doc = json!({"spec":{"template":{"spec":{
        "containers":[
            {"name":"app","image":"app:1","env":[{"name":"A","value":"1"},{"name":"B","value":"2"}],
             "ports":[{"containerPort":80,"protocol":"TCP"}]},
            {"name":"sidecar","image":"side:1"}
        ],
        "tolerations":[{"key":"a"}],
        "volumes":[{"name":"v1","emptyDir":{}}]
    }}}});
    let patch = json!({"spec":{"template":{"spec":{
        "containers":[{"name":"app","image":"app:2","env":[{"name":"B","value":"3"},{"name":"C","value":"4"}]}],
        "tolerations":[{"key":"b"}],
        "volumes":[{"name":"v1","$patch":"delete"}]
    }}}});
    let got = strategic_merge_patch(&doc, &patch, &*d).unwrap_or_default();
    let spec = &got["spec"]["template"]["spec"];
    assert_eq!(spec["containers"][0]["name"], "app");
    assert_eq!(spec["containers"][0]["image"], "app:2");
    assert_eq!(
        spec["containers"][0]["env"],
        json!([{"name":"A","value":"1"},{"name":"B","value":"3"},{"name":"C","value":"4"}])
    );
    assert_eq!(
        spec["containers"][0]["ports"],
        json!([{"containerPort":80,"protocol":"TCP"}])
    );
    assert_eq!(
        spec["containers"][1],
        json!({"name":"sidecar","image":"side:1"})
    );
    assert_eq!(spec["tolerations"], json!([{"key":"b"}]));
    assert_eq!(spec["volumes"], json!([]));
    // $patch: replace on the container list replaces it; directives never leak into the result.
    let got = strategic_merge_patch(
        &doc,
        &json!({"spec":{"template":{"spec":{"containers":[{"name":"only"},{"$patch":"replace"}]}}}}),
        &*d,
    )
    .unwrap_or_default();
    assert_eq!(
        got["spec"]["template"]["spec"]["containers"],
        json!([{"name":"only"}])
    );
}

#[test]
fn owner_references_merge_by_uid() {
    let cm = builtin_merge_schema("", "ConfigMap");
    let doc = json!({"metadata":{"ownerReferences":[{"uid":"1","name":"a"}]}});
    let got = strategic_merge_patch(
        &doc,
        &json!({"metadata":{"ownerReferences":[{"uid":"2","name":"b"}]}}),
        &*cm,
    )
    .unwrap_or_default();
    assert_eq!(
        got["metadata"]["ownerReferences"],
        json!([{"uid":"2","name":"b"},{"uid":"1","name":"a"}])
    );
}
