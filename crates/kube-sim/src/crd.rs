//! CustomResourceDefinitions: served types from a CRD, and the naming and establishing
//! controllers (run synchronously after every CRD write through [`EstablishCrds`], the write
//! pipeline's commit hook, so REST paths and discovery are live before the CRD reports
//! `Established`). The CRD object's own rules (create preparation, cleanup finalizer,
//! Terminating condition) are in `crd_object`, which the write pipeline uses directly.

use std::sync::Arc;

use serde_json::{Value, json};

use crate::crd_object::set_condition;
pub use crate::crd_object::{CLEANUP_FINALIZER, crd_gr, mark_terminating};
use crate::meta;
use crate::ops::{self, Target};
use crate::registry::{CustomInfo, Kind, PrinterColumn, ResourceType, ScaleSpec};
use crate::schema_api::CrdSchema;
use crate::state::{CommitHook, State};
use crate::store::{Gr, Obj};

fn strings(v: Option<&Value>) -> Vec<String> {
    v.and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|s| s.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

fn names_of(crd: &Value) -> (String, String, String, String, Vec<String>, Vec<String>) {
    let n = |k: &str| meta::str_at(crd, &format!("/spec/names/{k}")).to_string();
    let kind = n("kind");
    let list_kind = {
        let l = n("listKind");
        if l.is_empty() {
            format!("{kind}List")
        } else {
            l
        }
    };
    let singular = {
        let s = n("singular");
        if s.is_empty() { kind.to_lowercase() } else { s }
    };
    (
        n("plural"),
        singular,
        kind,
        list_kind,
        strings(crd.pointer("/spec/names/shortNames")),
        strings(crd.pointer("/spec/names/categories")),
    )
}

/// The served types of a CRD.
pub fn types_for(crd: &Value) -> Vec<ResourceType> {
    let group = meta::str_at(crd, "/spec/group").to_string();
    let (plural, singular, kind, list_kind, short, categories) = names_of(crd);
    let namespaced = meta::str_at(crd, "/spec/scope") != "Cluster";
    let crd_name = meta::name(crd).to_string();
    let versions = crd
        .pointer("/spec/versions")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let storage_version = versions
        .iter()
        .find(|v| v.get("storage").and_then(Value::as_bool) == Some(true))
        .and_then(|v| v.get("name").and_then(Value::as_str))
        .unwrap_or("")
        .to_string();
    let mut out = Vec::new();
    for (i, v) in versions.iter().enumerate() {
        if v.get("served").and_then(Value::as_bool) != Some(true) {
            continue;
        }
        let version = v
            .get("name")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        let raw_schema = v
            .pointer("/schema/openAPIV3Schema")
            .cloned()
            .unwrap_or(Value::Null);
        let schema = if raw_schema.is_object() {
            CrdSchema::compile(
                &raw_schema,
                &format!("spec.versions[{i}].schema.openAPIV3Schema"),
            )
            .ok()
            .map(Arc::new)
        } else {
            Some(Arc::new(CrdSchema::preserve_unknown()))
        };
        let columns = v
            .get("additionalPrinterColumns")
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .map(|c| PrinterColumn {
                        name: c.get("name").and_then(Value::as_str).unwrap_or("").into(),
                        type_: c
                            .get("type")
                            .and_then(Value::as_str)
                            .unwrap_or("string")
                            .into(),
                        format: c.get("format").and_then(Value::as_str).unwrap_or("").into(),
                        description: c
                            .get("description")
                            .and_then(Value::as_str)
                            .unwrap_or("")
                            .into(),
                        priority: c.get("priority").and_then(Value::as_i64).unwrap_or(0),
                        json_path: c
                            .get("jsonPath")
                            .and_then(Value::as_str)
                            .unwrap_or("")
                            .into(),
                    })
                    .collect()
            })
            .unwrap_or_default();
        let selectable_fields = v
            .get("selectableFields")
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(|f| {
                        f.get("jsonPath")
                            .and_then(Value::as_str)
                            .map(str::to_string)
                    })
                    .collect()
            })
            .unwrap_or_default();
        let status = v
            .pointer("/subresources/status")
            .is_some_and(|s| !s.is_null());
        let scale = v
            .pointer("/subresources/scale")
            .filter(|s| s.is_object())
            .map(|s| ScaleSpec {
                spec_replicas_path: s
                    .get("specReplicasPath")
                    .and_then(Value::as_str)
                    .unwrap_or(".spec.replicas")
                    .into(),
                status_replicas_path: s
                    .get("statusReplicasPath")
                    .and_then(Value::as_str)
                    .unwrap_or(".status.replicas")
                    .into(),
                label_selector_path: s
                    .get("labelSelectorPath")
                    .and_then(Value::as_str)
                    .map(str::to_string),
            });
        out.push(ResourceType {
            group: group.clone(),
            version,
            resource: plural.clone(),
            kind: kind.clone(),
            singular: singular.clone(),
            namespaced,
            verbs: vec![
                "delete",
                "deletecollection",
                "get",
                "list",
                "patch",
                "create",
                "update",
                "watch",
            ],
            short_names: short.clone(),
            categories: categories.clone(),
            behaviour: Kind::Custom,
            status,
            scale,
            extra: Vec::new(),
            storage: Gr::new(&group, &plural),
            custom: Some(Arc::new(CustomInfo {
                crd_name: crd_name.clone(),
                storage_version: storage_version.clone(),
                list_kind: list_kind.clone(),
                schema,
                raw_schema: Arc::new(raw_schema),
                columns,
                selectable_fields,
            })),
        });
    }
    out
}

/// The first naming conflict with another CRD of the same group: (reason, message).
fn name_conflict(st: &State, crd: &Value) -> Option<(String, String)> {
    let group = meta::str_at(crd, "/spec/group");
    let me = meta::name(crd);
    let (plural, singular, kind, list_kind, short, _) = names_of(crd);
    for other in st.store.list(&crd_gr(), None).items {
        let o = &other.value;
        if meta::name(o) == me || meta::str_at(o, "/spec/group") != group {
            continue;
        }
        // Only names the other CRD has been granted count.
        let accepted = o
            .pointer("/status/acceptedNames")
            .cloned()
            .unwrap_or(json!({}));
        let a = |k: &str| {
            accepted
                .get(k)
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string()
        };
        let a_short = strings(accepted.get("shortNames"));
        let taken = [a("plural"), a("singular")];
        if taken.contains(&plural) {
            return Some((
                "PluralConflict".into(),
                format!("{plural:?} is already in use"),
            ));
        }
        if !singular.is_empty() && taken.contains(&singular) {
            return Some((
                "SingularConflict".into(),
                format!("{singular:?} is already in use"),
            ));
        }
        if let Some(s) = short
            .iter()
            .find(|s| a_short.contains(s) || taken.contains(s))
        {
            return Some((
                "ShortNamesConflict".into(),
                format!("{s:?} is already in use"),
            ));
        }
        if a("kind") == kind {
            return Some(("KindConflict".into(), format!("{kind:?} is already in use")));
        }
        if a("listKind") == list_kind {
            return Some((
                "ListKindConflict".into(),
                format!("{list_kind:?} is already in use"),
            ));
        }
    }
    None
}

/// The commit hook that runs [`sync`] after every committed CRD write, before the writer gets its
/// answer (installed on the [`State`] by `lib.rs`).
pub struct EstablishCrds;

impl CommitHook for EstablishCrds {
    fn after_commit(&self, st: &State, rt: &ResourceType, obj: &Obj) {
        if rt.behaviour == Kind::Crd {
            sync(st, meta::name(&obj.value));
        }
    }
}

/// Bring the served types and the CRD's status in line with its spec (naming + establishing
/// controllers). Idempotent; called after every CRD commit.
pub fn sync(st: &State, name: &str) {
    let Some(cur) = st.store.get(&crd_gr(), "", name) else {
        st.registry.remove_crd(name);
        return;
    };
    let crd = cur.value.clone();
    let deleting = meta::is_deleting(&crd);
    let conflict = if deleting {
        None
    } else {
        name_conflict(st, &crd)
    };
    if conflict.is_none() {
        // Serve first, so discovery is live before Established is reported.
        st.registry.set_crd(name, types_for(&crd));
    } else if !deleting {
        st.registry.remove_crd(name);
    }
    if deleting {
        return;
    }
    let Some(rt) =
        st.registry
            .types()
            .lookup("apiextensions.k8s.io", "v1", "customresourcedefinitions")
    else {
        return;
    };
    let (plural, singular, kind, list_kind, short, categories) = names_of(&crd);
    let storage = crd
        .pointer("/spec/versions")
        .and_then(Value::as_array)
        .and_then(|vs| {
            vs.iter()
                .find(|v| v.get("storage").and_then(Value::as_bool) == Some(true))
                .and_then(|v| v.get("name").and_then(Value::as_str))
        })
        .unwrap_or("")
        .to_string();
    let _ = ops::internal_update(
        st,
        &rt,
        "",
        name,
        Target::Status,
        "kube-sim-apiextensions-controller",
        |v| {
            let mut conds = v
                .pointer("/status/conditions")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default();
            let mut stored = strings(v.pointer("/status/storedVersions"));
            if !storage.is_empty() && !stored.contains(&storage) {
                stored.push(storage.clone());
            }
            let mut status = v.get("status").cloned().unwrap_or(json!({}));
            match &conflict {
                None => {
                    let mut accepted = json!({"plural": plural, "singular": singular, "kind": kind, "listKind": list_kind});
                    if !short.is_empty() {
                        accepted["shortNames"] = json!(short);
                    }
                    if !categories.is_empty() {
                        accepted["categories"] = json!(categories);
                    }
                    set_condition(
                        &mut conds,
                        "NamesAccepted",
                        "True",
                        "NoConflicts",
                        "no conflicts found",
                    );
                    set_condition(
                        &mut conds,
                        "Established",
                        "True",
                        "InitialNamesAccepted",
                        "the initial names have been accepted",
                    );
                    status["acceptedNames"] = accepted;
                }
                Some((reason, message)) => {
                    set_condition(&mut conds, "NamesAccepted", "False", reason, message);
                    set_condition(
                        &mut conds,
                        "Established",
                        "False",
                        "NotAccepted",
                        "not all names are accepted",
                    );
                    if status.get("acceptedNames").is_none() {
                        status["acceptedNames"] = json!({"plural": "", "kind": ""});
                    }
                }
            }
            status["conditions"] = Value::Array(conds);
            status["storedVersions"] = json!(stored);
            if let Some(m) = v.as_object_mut() {
                m.insert("status".into(), status);
            }
        },
    );
}
