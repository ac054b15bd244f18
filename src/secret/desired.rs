//! The Secret the operator wants ([`DesiredSecret`]): a create with the key, or a merge patch of
//! the fields that differ, and the owner references a release leaves behind.

use std::collections::BTreeMap;

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};

use super::{
    AGENT_NAME_LABEL, MANAGED_BY_LABEL, MANAGED_BY_VALUE, ObservedSecret, Ownership,
    RECORD_ANNOTATIONS, SecretFields, SecretRecord,
};

use crate::crd::LatticeAgent;

/// The controller owner reference from a Secret to its `LatticeAgent`.
pub fn owner_reference(name: &str, uid: &str) -> OwnerReference {
    OwnerReference {
        api_version: format!("{}/v1alpha1", crate::crd::GROUP),
        kind: "LatticeAgent".to_owned(),
        name: name.to_owned(),
        uid: uid.to_owned(),
        controller: Some(true),
        block_owner_deletion: Some(true),
    }
}

/// The Secret the operator wants, except for the key (an argument of [`DesiredSecret::to_secret`]
/// and [`DesiredSecret::merge_patch`]).
#[derive(Clone, Debug, PartialEq)]
pub struct DesiredSecret {
    /// Namespace.
    pub namespace: String,
    /// Name.
    pub name: String,
    /// The controller owner reference to the `LatticeAgent`.
    pub owner: OwnerReference,
    /// Template labels plus ours (ours win).
    pub labels: BTreeMap<String, String>,
    /// Template annotations plus the record (the record wins).
    pub annotations: BTreeMap<String, String>,
    /// The backend's field names.
    pub fields: SecretFields,
    /// The agent id (`AL_AGENT_ID`, `ALTER_AGENT_ID`).
    pub agent_id: String,
    /// The base URL (`AL_BASE_URL`, `ALTER_BASE_URL`).
    pub base_url: String,
    /// The record encoded in `annotations`.
    pub record: SecretRecord,
}

/// Inputs of [`DesiredSecret::new`].
#[derive(Clone, Copy, Debug)]
pub struct SecretInputs<'a> {
    /// The owning resource.
    pub agent: &'a LatticeAgent,
    /// Secret name.
    pub secret_name: &'a str,
    /// Agent name (a label value).
    pub agent_name: &'a str,
    /// The backend's base URL.
    pub base_url: &'a str,
    /// The backend's field names.
    pub fields: SecretFields,
}

impl DesiredSecret {
    /// The desired Secret for `record`. The record must have an agent id.
    pub fn new(inputs: SecretInputs<'_>, agent_id: &str, record: SecretRecord) -> DesiredSecret {
        let meta = &inputs.agent.metadata;
        let template = inputs.agent.spec.secret_template.as_ref();
        let mut labels: BTreeMap<String, String> =
            template.map(|t| t.labels.clone()).unwrap_or_default();
        labels.insert(MANAGED_BY_LABEL.to_owned(), MANAGED_BY_VALUE.to_owned());
        labels.insert(AGENT_NAME_LABEL.to_owned(), inputs.agent_name.to_owned());
        let mut annotations: BTreeMap<String, String> = template
            .map(|t| {
                t.annotations
                    .iter()
                    .filter(|(k, _)| !RECORD_ANNOTATIONS.contains(&k.as_str()))
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect()
            })
            .unwrap_or_default();
        annotations.extend(record.to_annotations());
        DesiredSecret {
            namespace: meta.namespace.clone().unwrap_or_default(),
            name: inputs.secret_name.to_owned(),
            owner: owner_reference(
                meta.name.as_deref().unwrap_or_default(),
                meta.uid.as_deref().unwrap_or_default(),
            ),
            labels,
            annotations,
            fields: inputs.fields,
            agent_id: agent_id.to_owned(),
            base_url: inputs.base_url.to_owned(),
            record,
        }
    }

    /// The full Secret, for a create. `api_key` is the agent key.
    pub fn to_secret(&self, api_key: &[u8]) -> Secret {
        Secret {
            metadata: ObjectMeta {
                name: Some(self.name.clone()),
                namespace: Some(self.namespace.clone()),
                labels: Some(self.labels.clone()),
                annotations: Some(self.annotations.clone()),
                owner_references: Some(vec![self.owner.clone()]),
                ..Default::default()
            },
            type_: Some("Opaque".to_owned()),
            data: Some(BTreeMap::from([
                (self.fields.api_key.to_owned(), ByteString(api_key.to_vec())),
                (
                    self.fields.agent_id.to_owned(),
                    ByteString(self.agent_id.clone().into_bytes()),
                ),
                (
                    self.fields.base_url.to_owned(),
                    ByteString(self.base_url.clone().into_bytes()),
                ),
            ])),
            ..Default::default()
        }
    }

    /// A JSON merge patch that turns `current` into this Secret, with `metadata.resourceVersion`
    /// as precondition. `api_key` is the new key, or `None` to keep the one in the Secret.
    /// Record annotations this record does not set are removed; labels and annotations that are
    /// not ours are left alone; our owner reference is added (keeping other, non-controller ones)
    /// when it is missing.
    pub fn merge_patch(
        &self,
        current: &ObservedSecret,
        api_key: Option<&[u8]>,
    ) -> serde_json::Value {
        let mut annotations = serde_json::Map::new();
        for key in RECORD_ANNOTATIONS {
            if current.annotations.contains_key(key) && !self.annotations.contains_key(key) {
                annotations.insert(key.to_owned(), serde_json::Value::Null);
            }
        }
        for (k, v) in &self.annotations {
            annotations.insert(k.clone(), serde_json::Value::String(v.clone()));
        }
        let mut metadata = serde_json::json!({
            "labels": self.labels,
            "annotations": annotations,
        });
        if let Some(rv) = &current.resource_version {
            metadata["resourceVersion"] = serde_json::Value::String(rv.clone());
        }
        if current.ownership != Ownership::Ours {
            let mut refs: Vec<OwnerReference> = current
                .owner_references
                .iter()
                .filter(|r| r.controller != Some(true) && r.uid != self.owner.uid)
                .cloned()
                .collect();
            refs.push(self.owner.clone());
            metadata["ownerReferences"] = serde_json::to_value(refs).unwrap_or_default();
        }
        let b64 =
            |bytes: &[u8]| serde_json::to_value(ByteString(bytes.to_vec())).unwrap_or_default();
        let mut data = serde_json::Map::new();
        data.insert(
            self.fields.agent_id.to_owned(),
            b64(self.agent_id.as_bytes()),
        );
        data.insert(
            self.fields.base_url.to_owned(),
            b64(self.base_url.as_bytes()),
        );
        if let Some(key) = api_key {
            data.insert(self.fields.api_key.to_owned(), b64(key));
        }
        serde_json::json!({"metadata": metadata, "data": data})
    }

    /// What differs between `current` and this Secret, apart from the key itself: field names
    /// for a log line or a condition message (never values).
    pub fn drift(&self, current: &ObservedSecret) -> Vec<&'static str> {
        let mut out = Vec::new();
        if current.agent_id.as_deref() != Some(self.agent_id.as_str()) {
            out.push(self.fields.agent_id);
        }
        if current.base_url.as_deref() != Some(self.base_url.as_str()) {
            out.push(self.fields.base_url);
        }
        if self
            .labels
            .iter()
            .any(|(k, v)| current.labels.get(k) != Some(v))
        {
            out.push("labels");
        }
        let stale_record = RECORD_ANNOTATIONS
            .iter()
            .any(|k| current.annotations.contains_key(*k) && !self.annotations.contains_key(*k));
        if stale_record
            || self
                .annotations
                .iter()
                .any(|(k, v)| current.annotations.get(k) != Some(v))
        {
            out.push("annotations");
        }
        if current.ownership != Ownership::Ours {
            out.push("ownerReferences");
        }
        out
    }
}

/// The owner references a Secret keeps when the `LatticeAgent` with `owner_uid` lets go of it
/// (`deletionPolicy: Retain`).
pub fn released_owner_references(current: &ObservedSecret, owner_uid: &str) -> Vec<OwnerReference> {
    current
        .owner_references
        .iter()
        .filter(|r| r.uid != owner_uid)
        .cloned()
        .collect()
}

/// A JSON merge patch that removes the owner reference to `owner_uid` (precondition: the
/// resource version).
pub fn release_patch(current: &ObservedSecret, owner_uid: &str) -> serde_json::Value {
    let refs = released_owner_references(current, owner_uid);
    let mut metadata = serde_json::json!({
        "ownerReferences": serde_json::to_value(refs).unwrap_or_default(),
    });
    if let Some(rv) = &current.resource_version {
        metadata["resourceVersion"] = serde_json::Value::String(rv.clone());
    }
    serde_json::json!({"metadata": metadata})
}
