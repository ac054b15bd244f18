//! What the planner sees of an existing Secret ([`SecretView`]), and the form the operator caches
//! Secrets in ([`cache_form`]: digests instead of keys) with its [`fingerprint`].

use std::borrow::Cow;
use std::collections::BTreeMap;

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};

use super::{
    AGENTLATTICE_FIELDS, ALL_FIELDS, DIGEST_MARK, DecodedRecord, SecretFields, SecretRecord,
    key_digest,
};

/// Who controls an existing Secret, relative to one `LatticeAgent`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Ownership {
    /// Its controller owner reference is this `LatticeAgent` (same uid).
    Ours,
    /// It has no controller owner reference.
    Unowned,
    /// Something else controls it (including an earlier `LatticeAgent` of the same name).
    Controlled {
        /// Kind of the controller.
        kind: String,
        /// Name of the controller.
        name: String,
    },
}

/// What the planner sees of the Secret named by a `LatticeAgent`.
#[derive(Clone, Debug, Default, PartialEq)]
pub enum SecretView {
    /// No Secret of that name.
    #[default]
    Absent,
    /// The Secret exists.
    Present(Box<ObservedSecret>),
}

/// An existing Secret, as far as the planner needs it. It never contains the key: only its
/// digest.
#[derive(Clone, Debug, PartialEq)]
pub struct ObservedSecret {
    /// Name.
    pub name: String,
    /// Resource version, the precondition of every write.
    pub resource_version: Option<String>,
    /// Who controls it.
    pub ownership: Ownership,
    /// All owner references (kept when the operator adds or removes its own).
    pub owner_references: Vec<OwnerReference>,
    /// `type`.
    pub type_: Option<String>,
    /// Labels.
    pub labels: BTreeMap<String, String>,
    /// Annotations.
    pub annotations: BTreeMap<String, String>,
    /// The field names it was read with (the backend's).
    pub fields: SecretFields,
    /// [`key_digest`] of the key field (`AL_API_KEY`, `ALTER_API_KEY`), if present.
    pub key_digest: Option<String>,
    /// The agent id field, if present and UTF-8.
    pub agent_id: Option<String>,
    /// The base URL field, if present and UTF-8.
    pub base_url: Option<String>,
    /// The record read from the annotations.
    pub decoded: DecodedRecord,
}

impl SecretView {
    /// The view of `secret` for the `LatticeAgent` with uid `owner_uid` whose agent lives at
    /// AgentLattice (`AL_*` fields); see [`SecretView::observe_with`].
    pub fn observe(secret: &Secret, owner_uid: &str) -> SecretView {
        SecretView::observe_with(secret, owner_uid, AGENTLATTICE_FIELDS)
    }

    /// The view of `secret` for the `LatticeAgent` with uid `owner_uid`, reading the backend's
    /// `fields`. Accepts the Secret either as the API server returns it or in [`cache_form`].
    pub fn observe_with(secret: &Secret, owner_uid: &str, fields: SecretFields) -> SecretView {
        let meta = &secret.metadata;
        let owner_references = meta.owner_references.clone().unwrap_or_default();
        let ownership = match owner_references.iter().find(|r| r.controller == Some(true)) {
            None => Ownership::Unowned,
            Some(r) if r.uid == owner_uid => Ownership::Ours,
            Some(r) => Ownership::Controlled {
                kind: r.kind.clone(),
                name: r.name.clone(),
            },
        };
        let data = secret.data.as_ref();
        let text = |field: &str| {
            data.and_then(|d| d.get(field))
                .and_then(|v| std::str::from_utf8(&v.0).ok())
                .map(str::to_owned)
        };
        let key_digest =
            data.and_then(|d| d.get(fields.api_key)).map(|v| {
                match std::str::from_utf8(&v.0)
                    .ok()
                    .and_then(|s| s.strip_prefix(DIGEST_MARK))
                {
                    Some(digest) => digest.to_owned(),
                    None => key_digest(&v.0),
                }
            });
        let annotations = meta.annotations.clone().unwrap_or_default();
        SecretView::Present(Box::new(ObservedSecret {
            name: meta.name.clone().unwrap_or_default(),
            resource_version: meta.resource_version.clone(),
            ownership,
            owner_references,
            type_: secret.type_.clone(),
            labels: meta.labels.clone().unwrap_or_default(),
            decoded: SecretRecord::from_annotations(&annotations),
            annotations,
            fields,
            key_digest,
            agent_id: text(fields.agent_id),
            base_url: text(fields.base_url),
        }))
    }

    /// The Secret, if it exists.
    pub fn present(&self) -> Option<&ObservedSecret> {
        match self {
            SecretView::Absent => None,
            SecretView::Present(s) => Some(s),
        }
    }
}

impl ObservedSecret {
    /// This Secret (in `namespace`) in cache form, rebuilt from what the view keeps: every field
    /// [`fingerprint`] reads, so that both give the same fingerprint.
    fn to_cache_form(&self, namespace: &str) -> Secret {
        let non_empty = |m: &BTreeMap<String, String>| (!m.is_empty()).then(|| m.clone());
        let mut data = BTreeMap::new();
        if let Some(digest) = &self.key_digest {
            let marked = format!("{DIGEST_MARK}{digest}").into_bytes();
            data.insert(self.fields.api_key.to_owned(), ByteString(marked));
        }
        for (field, value) in [
            (self.fields.agent_id, &self.agent_id),
            (self.fields.base_url, &self.base_url),
        ] {
            if let Some(v) = value {
                data.insert(field.to_owned(), ByteString(v.clone().into_bytes()));
            }
        }
        Secret {
            metadata: ObjectMeta {
                namespace: Some(namespace.to_owned()),
                name: Some(self.name.clone()),
                resource_version: self.resource_version.clone(),
                labels: non_empty(&self.labels),
                annotations: non_empty(&self.annotations),
                owner_references: (!self.owner_references.is_empty())
                    .then(|| self.owner_references.clone()),
                ..Default::default()
            },
            type_: self.type_.clone(),
            data: (!data.is_empty()).then_some(data),
            ..Default::default()
        }
    }

    /// The Secret this one becomes once the API server applied the JSON merge patch `patch`, in
    /// cache form: what the watch will deliver, known before the patch is sent (its
    /// [`fingerprint`] lets the watch recognise the operator's own write, design §6). `None` if
    /// the patched object is not a Secret.
    pub fn patched(&self, namespace: &str, patch: &serde_json::Value) -> Option<Secret> {
        let mut doc = serde_json::to_value(self.to_cache_form(namespace)).ok()?;
        json_patch::merge(&mut doc, patch);
        serde_json::from_value(doc).ok().map(cache_form)
    }
}

/// The form in which the operator caches a Secret: the key field (`AL_API_KEY`, or a backend's
/// other name for it) replaced by its digest, every data field other than the agent id and base
/// URL fields dropped (an adopted Secret may hold other secrets), `stringData` dropped. A heap
/// dump of the cache holds no key. The cache serves every backend, so it keeps every backend's
/// field names.
pub fn cache_form(mut secret: Secret) -> Secret {
    if let Some(data) = secret.data.take() {
        let kept: BTreeMap<String, ByteString> = data
            .into_iter()
            .filter_map(|(field, value)| {
                let cached = cached_value(&field, &value.0)?.into_owned();
                Some((field, ByteString(cached)))
            })
            .collect();
        secret.data = Some(kept);
    }
    secret.string_data = None;
    secret
}

/// A data field as [`cache_form`] keeps it (`None`: dropped).
fn cached_value<'a>(field: &str, value: &'a [u8]) -> Option<Cow<'a, [u8]>> {
    if ALL_FIELDS.iter().any(|f| f.api_key == field) {
        return match std::str::from_utf8(value)
            .ok()
            .filter(|s| s.starts_with(DIGEST_MARK))
        {
            Some(_) => Some(Cow::Borrowed(value)),
            None => Some(Cow::Owned(
                format!("{DIGEST_MARK}{}", key_digest(value)).into_bytes(),
            )),
        };
    }
    ALL_FIELDS
        .iter()
        .any(|f| f.agent_id == field || f.base_url == field)
        .then_some(Cow::Borrowed(value))
}

/// A hash of what a Secret holds that the operator reads or writes — name, type, labels,
/// annotations, owner references and the data as [`cache_form`] keeps it — and of nothing the API
/// server sets (resourceVersion, uid, timestamps, managedFields). Equal for a Secret and its
/// cache form. The watch uses it to recognise the Secret the operator is creating (design §6).
pub fn fingerprint(secret: &Secret) -> u64 {
    use std::hash::{DefaultHasher, Hash, Hasher};
    let mut h = DefaultHasher::new();
    let meta = &secret.metadata;
    (
        &meta.namespace,
        &meta.name,
        &secret.type_,
        &secret.immutable,
    )
        .hash(&mut h);
    (&meta.labels, &meta.annotations).hash(&mut h);
    for r in meta.owner_references.iter().flatten() {
        let OwnerReference {
            api_version,
            kind,
            name,
            uid,
            controller,
            block_owner_deletion,
        } = r;
        (
            api_version,
            kind,
            name,
            uid,
            controller,
            block_owner_deletion,
        )
            .hash(&mut h);
    }
    for (field, value) in secret.data.iter().flatten() {
        if let Some(cached) = cached_value(field, &value.0) {
            (field, cached).hash(&mut h);
        }
    }
    h.finish()
}
