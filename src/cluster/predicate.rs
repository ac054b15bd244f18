//! What of a LatticeAgent the operator acts on: the main watch starts a reconcile only when this
//! changes (design §6) — generation (the spec), deletion, finalizers, labels, the
//! `agentlattice.io/` annotations, and whether the object parses — not on status-only updates.
//! Not on generation alone, which would swallow finalizer and annotation changes.

use std::collections::BTreeMap;
use std::hash::{DefaultHasher, Hash, Hasher};

use kube::core::ObjectMeta;

use crate::crd::GROUP;

/// The hash of what the operator acts on in a resource's metadata; `valid`: whether the object
/// deserialised.
pub fn predicate_hash(meta: &ObjectMeta, valid: bool) -> u64 {
    let prefix = format!("{GROUP}/");
    let ours: BTreeMap<&String, &String> = meta
        .annotations
        .iter()
        .flatten()
        .filter(|(k, _)| k.starts_with(&prefix))
        .collect();
    let mut h = DefaultHasher::new();
    (
        &meta.uid,
        meta.generation,
        meta.deletion_timestamp.as_ref().map(|t| t.0.as_second()),
        &meta.finalizers,
        &meta.labels,
        ours,
        valid,
    )
        .hash(&mut h);
    h.finish()
}
