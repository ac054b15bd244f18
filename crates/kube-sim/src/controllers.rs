//! The in-process controllers that kube-controller-manager and the apiextensions server run
//! upstream: the garbage collector (background, foreground, orphan, dangling owners), the
//! namespace controller, and CRD instance cleanup. They react to committed events, in order,
//! asynchronously (optionally after a delay), like the real ones.

use std::sync::Arc;

use serde_json::Value;
use tokio::sync::mpsc;

use crate::meta;
use crate::ops::{self, DeleteOptions, Target};
use crate::registry::{Kind, ResourceType};
use crate::state::State;
use crate::store::{Event, EventType, Gr, Obj, ObjKey};

const GC_MANAGER: &str = "kube-sim-garbage-collector";

pub async fn run(st: Arc<State>, mut rx: mpsc::UnboundedReceiver<Arc<Event>>) {
    let mut shutdown = st.shutdown.subscribe();
    loop {
        let ev = tokio::select! {
            ev = rx.recv() => match ev { Some(ev) => ev, None => return },
            _ = shutdown.changed() => return,
        };
        if !st.cfg.controller_delay.is_zero() {
            tokio::time::sleep(st.cfg.controller_delay).await;
        }
        process(&st, &ev);
    }
}

fn type_for(st: &State, gr: &Gr) -> Option<Arc<ResourceType>> {
    let types = st.registry.types();
    if gr.group.is_empty() && gr.resource == "events" {
        return types.lookup("", "v1", "events");
    }
    types.lookup_gr(&gr.group, &gr.resource)
}

fn owner_refs(v: &Value) -> Vec<Value> {
    v.pointer("/metadata/ownerReferences")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default()
}

fn process(st: &State, ev: &Event) {
    let v = &ev.obj.value;
    match ev.kind {
        EventType::Deleted => {
            let uid = ev.obj.uid().to_string();
            for (k, dep) in st.store.dependents_of(&uid) {
                attempt_delete(st, &k, &dep);
            }
            for r in owner_refs(v) {
                if let Some(uid) = r.get("uid").and_then(Value::as_str)
                    && let Some((okey, owner)) = st.store.find_by_uid(uid)
                {
                    check_foreground(st, &okey, &owner);
                }
            }
            if !ev.key.namespace.is_empty() {
                check_namespace(st, &ev.key.namespace);
            }
            if let Some(rt) = type_for(st, &ev.key.gr)
                && let Some(c) = &rt.custom
            {
                check_crd(st, &c.crd_name);
            }
            if ev.key.gr == crate::crd::crd_gr() {
                crate::crd::sync(st, &ev.key.name);
            }
        }
        EventType::Added | EventType::Modified => {
            if meta::is_deleting(v) {
                let f = meta::finalizers(v);
                if f.iter().any(|x| x == "orphan") {
                    orphan_dependents(st, &ev.key, &ev.obj);
                }
                if f.iter().any(|x| x == "foregroundDeletion") {
                    for (k, dep) in st.store.dependents_of(ev.obj.uid()) {
                        attempt_delete(st, &k, &dep);
                    }
                    check_foreground(st, &ev.key, &ev.obj);
                }
                if ev.key.gr == Gr::new("", "namespaces") {
                    clean_namespace(st, &ev.key.name);
                }
                if ev.key.gr == crate::crd::crd_gr() {
                    clean_crd(st, &ev.key.name);
                }
            }
            let refs_changed = match &ev.prev {
                None => true,
                Some(p) => owner_refs(&p.value) != owner_refs(v),
            };
            if refs_changed && !owner_refs(v).is_empty() {
                attempt_delete(st, &ev.key, &ev.obj);
            }
        }
    }
}

enum OwnerState {
    Solid,
    Dangling,
    Waiting,
}

/// `attemptToDeleteItem`: delete a dependent whose owners are all gone (or waiting for their
/// dependents), or drop the references to gone owners when a live one remains.
fn attempt_delete(st: &State, key: &ObjKey, dep: &Arc<Obj>) {
    let refs = owner_refs(&dep.value);
    if refs.is_empty() {
        return;
    }
    let types = st.registry.types();
    let mut solid = 0;
    let mut gone: Vec<String> = Vec::new();
    let mut waiting = 0;
    for r in &refs {
        let s = |k: &str| r.get(k).and_then(Value::as_str).unwrap_or("");
        let Some(ot) = types.lookup_kind(s("apiVersion"), s("kind")) else {
            // Unresolvable owner kind: the real GC cannot decide either; leave it.
            return;
        };
        let state = match st.store.find_by_uid(s("uid")) {
            Some((okey, owner))
                if okey.gr == ot.storage && (!ot.namespaced || okey.namespace == key.namespace) =>
            {
                if meta::is_deleting(&owner.value)
                    && meta::finalizers(&owner.value)
                        .iter()
                        .any(|f| f == "foregroundDeletion")
                {
                    OwnerState::Waiting
                } else {
                    OwnerState::Solid
                }
            }
            _ => OwnerState::Dangling,
        };
        match state {
            OwnerState::Solid => solid += 1,
            OwnerState::Dangling => gone.push(s("uid").to_string()),
            OwnerState::Waiting => waiting += 1,
        }
    }
    let Some(rt) = type_for(st, &key.gr) else {
        return;
    };
    if solid > 0 {
        if gone.is_empty() {
            return;
        }
        let _ = ops::internal_update(
            st,
            &rt,
            &key.namespace,
            &key.name,
            Target::Main,
            GC_MANAGER,
            |v| {
                if let Some(a) = v
                    .pointer_mut("/metadata/ownerReferences")
                    .and_then(Value::as_array_mut)
                {
                    a.retain(|r| {
                        !gone
                            .iter()
                            .any(|g| r.get("uid").and_then(Value::as_str) == Some(g))
                    });
                }
            },
        );
        return;
    }
    let f = meta::finalizers(&dep.value);
    let policy = if waiting > 0 || f.iter().any(|x| x == "foregroundDeletion") {
        "Foreground"
    } else if f.iter().any(|x| x == "orphan") {
        "Orphan"
    } else {
        "Background"
    };
    let o = DeleteOptions {
        precondition_uid: Some(dep.uid().to_string()),
        propagation: Some(policy.to_string()),
        ..Default::default()
    };
    let _ = ops::delete(st, &rt, &key.namespace, &key.name, &o);
}

/// Remove `foregroundDeletion` once no dependent with `blockOwnerDeletion` remains.
fn check_foreground(st: &State, key: &ObjKey, owner: &Arc<Obj>) {
    if !meta::is_deleting(&owner.value)
        || !meta::finalizers(&owner.value)
            .iter()
            .any(|f| f == "foregroundDeletion")
    {
        return;
    }
    let uid = owner.uid();
    let blocking = st.store.dependents_of(uid).into_iter().any(|(_, d)| {
        owner_refs(&d.value).iter().any(|r| {
            r.get("uid").and_then(Value::as_str) == Some(uid)
                && r.get("blockOwnerDeletion").and_then(Value::as_bool) == Some(true)
        })
    });
    if blocking {
        return;
    }
    if let Some(rt) = type_for(st, &key.gr) {
        let _ = ops::internal_update(
            st,
            &rt,
            &key.namespace,
            &key.name,
            Target::Main,
            GC_MANAGER,
            |v| {
                let f: Vec<String> = meta::finalizers(v)
                    .into_iter()
                    .filter(|f| f != "foregroundDeletion")
                    .collect();
                meta::set_finalizers(v, f);
            },
        );
    }
}

fn orphan_dependents(st: &State, key: &ObjKey, owner: &Arc<Obj>) {
    let uid = owner.uid().to_string();
    for (k, _) in st.store.dependents_of(&uid) {
        if let Some(rt) = type_for(st, &k.gr) {
            let _ = ops::internal_update(
                st,
                &rt,
                &k.namespace,
                &k.name,
                Target::Main,
                GC_MANAGER,
                |v| {
                    if let Some(m) = v.pointer_mut("/metadata").and_then(Value::as_object_mut) {
                        if let Some(Value::Array(a)) = m.get_mut("ownerReferences") {
                            a.retain(|r| {
                                r.get("uid").and_then(Value::as_str) != Some(uid.as_str())
                            });
                        }
                        if m.get("ownerReferences")
                            .and_then(Value::as_array)
                            .is_some_and(Vec::is_empty)
                        {
                            m.remove("ownerReferences");
                        }
                    }
                },
            );
        }
    }
    if let Some(rt) = type_for(st, &key.gr) {
        let _ = ops::internal_update(
            st,
            &rt,
            &key.namespace,
            &key.name,
            Target::Main,
            GC_MANAGER,
            |v| {
                let f: Vec<String> = meta::finalizers(v)
                    .into_iter()
                    .filter(|f| f != "orphan")
                    .collect();
                meta::set_finalizers(v, f);
            },
        );
    }
}

fn namespace_type(st: &State) -> Option<Arc<ResourceType>> {
    st.registry.types().lookup("", "v1", "namespaces")
}

/// Delete everything in a terminating namespace.
fn clean_namespace(st: &State, ns: &str) {
    for (k, o) in st.store.list_namespace_content(ns) {
        if meta::is_deleting(&o.value) {
            continue;
        }
        if let Some(rt) = type_for(st, &k.gr) {
            let opts = DeleteOptions {
                propagation: Some("Background".into()),
                ..Default::default()
            };
            let _ = ops::delete(st, &rt, &k.namespace, &k.name, &opts);
        }
    }
    check_namespace(st, ns);
}

/// Finalize a terminating namespace once it is empty.
fn check_namespace(st: &State, ns: &str) {
    let Some(nsobj) = st.store.get(&Gr::new("", "namespaces"), "", ns) else {
        return;
    };
    if !meta::is_deleting(&nsobj.value) || !st.store.list_namespace_content(ns).is_empty() {
        return;
    }
    let Some(rt) = namespace_type(st) else {
        return;
    };
    // `PUT .../finalize` without "kubernetes": with both finalizer lists empty the
    // namespace goes in the same write.
    let _ = ops::internal_update(
        st,
        &rt,
        "",
        ns,
        Target::Finalize,
        "kube-sim-namespace-controller",
        |v| {
            if let Some(spec) = v.get_mut("spec").and_then(Value::as_object_mut) {
                spec.remove("finalizers");
            }
        },
    );
}

fn crd_type(st: &State) -> Option<Arc<ResourceType>> {
    st.registry
        .types()
        .lookup("apiextensions.k8s.io", "v1", "customresourcedefinitions")
}

/// Delete every instance of a terminating CRD.
fn clean_crd(st: &State, name: &str) {
    let Some(crd) = st.store.get(&crate::crd::crd_gr(), "", name) else {
        return;
    };
    if !meta::finalizers(&crd.value)
        .iter()
        .any(|f| f == crate::crd::CLEANUP_FINALIZER)
    {
        return;
    }
    if let Some(rt) = crd_type(st) {
        let _ = ops::internal_update(
            st,
            &rt,
            "",
            name,
            Target::Status,
            "kube-sim-apiextensions-controller",
            |v| {
                crate::crd::mark_terminating(v, true);
            },
        );
    }
    let Some(cr) = st.registry.types().custom_types(name).into_iter().next() else {
        check_crd(st, name);
        return;
    };
    for o in st.store.list(&cr.storage, None).items {
        if meta::is_deleting(&o.value) {
            continue;
        }
        let _ = ops::delete(st, &cr, o.namespace(), o.name(), &DeleteOptions::default());
    }
    check_crd(st, name);
}

/// Remove the cleanup finalizer once no instance is left.
fn check_crd(st: &State, name: &str) {
    let Some(crd) = st.store.get(&crate::crd::crd_gr(), "", name) else {
        return;
    };
    if !meta::is_deleting(&crd.value) {
        return;
    }
    let group = meta::str_at(&crd.value, "/spec/group").to_string();
    let plural = meta::str_at(&crd.value, "/spec/names/plural").to_string();
    if st.store.count(&Gr::new(&group, &plural)) > 0 {
        return;
    }
    if let Some(rt) = crd_type(st) {
        let _ = ops::internal_update(
            st,
            &rt,
            "",
            name,
            Target::Main,
            "kube-sim-apiextensions-controller",
            |v| {
                let f: Vec<String> = meta::finalizers(v)
                    .into_iter()
                    .filter(|f| f != crate::crd::CLEANUP_FINALIZER)
                    .collect();
                meta::set_finalizers(v, f);
            },
        );
    }
    let _ = Kind::Crd;
}
