//! The Secret is the operator's durable record (design §2).
//!
//! Everything needed to resume after a crash lives on the Secret, written in the same request as the
//! key it describes: the agent id, the id, prefix, creation time and digest of the key in
//! `AL_API_KEY`, the keys being retired, and the last action-annotation values acted on. This module
//! encodes and (tolerantly) decodes that record, builds the Secret the operator wants, and turns a
//! cached Secret into the [`SecretView`] the planner reasons about.
//!
//! Every function here is pure. The key itself is only ever an argument (`&[u8]`) of the functions
//! that build the object sent to the API server; nothing here stores, logs or formats it.

use std::borrow::Cow;
use std::collections::BTreeMap;

use jiff::Timestamp;
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::crd::{HandledAnnotations, LatticeAgent};

/// Data field holding the agent key.
pub const API_KEY_FIELD: &str = "AL_API_KEY";
/// Data field holding the agent id.
pub const AGENT_ID_FIELD: &str = "AL_AGENT_ID";
/// Data field holding the AgentLattice base URL.
pub const BASE_URL_FIELD: &str = "AL_BASE_URL";

/// Label on every Secret the operator writes (its Secret watch selects on it).
pub const MANAGED_BY_LABEL: &str = "app.kubernetes.io/managed-by";
/// Value of [`MANAGED_BY_LABEL`].
pub const MANAGED_BY_VALUE: &str = "lattice-operator";
/// Label carrying the agent name.
pub const AGENT_NAME_LABEL: &str = "agentlattice.io/agent-name";

/// Annotation: the agent id.
pub const AGENT_ID_ANNOTATION: &str = "agentlattice.io/agent-id";
/// Annotation: the id of the key in `AL_API_KEY`.
pub const KEY_ID_ANNOTATION: &str = "agentlattice.io/key-id";
/// Annotation: the public prefix of that key.
pub const KEY_PREFIX_ANNOTATION: &str = "agentlattice.io/key-prefix";
/// Annotation: when AgentLattice created that key (RFC 3339).
pub const KEY_CREATED_AT_ANNOTATION: &str = "agentlattice.io/key-created-at";
/// Annotation: [`key_digest`] of that key.
pub const KEY_SHA256_ANNOTATION: &str = "agentlattice.io/key-sha256";
/// Annotation: JSON list of keys being retired.
pub const RETIRING_KEYS_ANNOTATION: &str = "agentlattice.io/retiring-keys";
/// Annotation: last `agentlattice.io/rotate` value acted on.
pub const HANDLED_ROTATE_ANNOTATION: &str = "agentlattice.io/handled-rotate";
/// Annotation: last `agentlattice.io/compromised` value acted on.
pub const HANDLED_COMPROMISED_ANNOTATION: &str = "agentlattice.io/handled-compromised";
/// Annotation: last `agentlattice.io/reregister` value acted on.
pub const HANDLED_REREGISTER_ANNOTATION: &str = "agentlattice.io/handled-reregister";
/// Annotation: a key is being minted (RFC 3339 time the intent was written). Until it is
/// removed, keys of the agent that are neither in the record nor revoked may exist and are swept.
pub const MINT_STARTED_AT_ANNOTATION: &str = "agentlattice.io/mint-started-at";

/// Every annotation that makes up the record; the operator owns them (they win over
/// `spec.secretTemplate`, and a record write removes the ones it does not set).
pub const RECORD_ANNOTATIONS: [&str; 10] = [
    AGENT_ID_ANNOTATION,
    KEY_ID_ANNOTATION,
    KEY_PREFIX_ANNOTATION,
    KEY_CREATED_AT_ANNOTATION,
    KEY_SHA256_ANNOTATION,
    RETIRING_KEYS_ANNOTATION,
    HANDLED_ROTATE_ANNOTATION,
    HANDLED_COMPROMISED_ANNOTATION,
    HANDLED_REREGISTER_ANNOTATION,
    MINT_STARTED_AT_ANNOTATION,
];

/// How a digest is marked in the operator's Secret cache (`sha256:` + [`key_digest`]).
const DIGEST_MARK: &str = "sha256:";

/// First 16 hex digits of the SHA-256 of `key`: detects an edited key without keeping the key.
pub fn key_digest(key: &[u8]) -> String {
    let hash = Sha256::digest(key);
    hash.iter().take(8).map(|b| format!("{b:02x}")).collect()
}

/// The record kept on the Secret's annotations.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SecretRecord {
    /// The agent the key belongs to.
    pub agent_id: Option<String>,
    /// The key in `AL_API_KEY`.
    pub key: Option<KeyRecord>,
    /// Keys being retired, oldest first.
    pub retiring: Vec<RetiringKey>,
    /// The last action-annotation values acted on.
    pub handled: HandledAnnotations,
    /// Set while a key may have been minted without being recorded here (design §4).
    pub mint_started_at: Option<Timestamp>,
}

/// The key in `AL_API_KEY`, described (never contained).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyRecord {
    /// AgentLattice key id.
    pub id: String,
    /// Public prefix.
    pub prefix: String,
    /// Creation time at AgentLattice.
    pub created_at: Timestamp,
    /// [`key_digest`] of the key.
    pub sha256: String,
}

/// A key being retired.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RetiringKey {
    /// AgentLattice key id.
    pub id: String,
    /// Public prefix.
    #[serde(default)]
    pub prefix: String,
    /// When its replacement was written.
    pub since: Timestamp,
    /// Revoke without grace (compromised, or never delivered).
    #[serde(default)]
    pub immediate: bool,
}

/// One annotation of the record that could not be read. The rest of the record is still used.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RecordProblem {
    /// The annotation.
    pub annotation: &'static str,
    /// What is wrong with it (never its value, which could be anything a user pasted).
    pub message: String,
}

impl std::fmt::Display for RecordProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "annotation {}: {}", self.annotation, self.message)
    }
}

/// A record read from annotations, with what could not be read.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DecodedRecord {
    /// What could be read.
    pub record: SecretRecord,
    /// The id of a key whose description is incomplete or unreadable (so `record.key` is `None`):
    /// the key may still be live and must be retired.
    pub damaged_key_id: Option<String>,
    /// What could not be read.
    pub problems: Vec<RecordProblem>,
}

impl DecodedRecord {
    /// Whether the named annotation could not be read.
    pub fn has_problem(&self, annotation: &str) -> bool {
        self.problems.iter().any(|p| p.annotation == annotation)
    }
}

impl SecretRecord {
    /// The annotations that encode this record (absent fields are absent annotations).
    pub fn to_annotations(&self) -> BTreeMap<String, String> {
        let mut out = BTreeMap::new();
        let mut put = |k: &str, v: String| {
            out.insert(k.to_owned(), v);
        };
        if let Some(id) = &self.agent_id {
            put(AGENT_ID_ANNOTATION, id.clone());
        }
        if let Some(key) = &self.key {
            put(KEY_ID_ANNOTATION, key.id.clone());
            put(KEY_PREFIX_ANNOTATION, key.prefix.clone());
            put(KEY_CREATED_AT_ANNOTATION, key.created_at.to_string());
            put(KEY_SHA256_ANNOTATION, key.sha256.clone());
        }
        if !self.retiring.is_empty() {
            // Serialising plain strings, bools and timestamps cannot fail; fall back to an empty
            // list rather than panic if it ever did.
            let json = serde_json::to_string(&self.retiring).unwrap_or_else(|_| "[]".to_owned());
            put(RETIRING_KEYS_ANNOTATION, json);
        }
        if let Some(v) = &self.handled.rotate {
            put(HANDLED_ROTATE_ANNOTATION, v.clone());
        }
        if let Some(v) = &self.handled.compromised {
            put(HANDLED_COMPROMISED_ANNOTATION, v.clone());
        }
        if let Some(v) = &self.handled.reregister {
            put(HANDLED_REREGISTER_ANNOTATION, v.clone());
        }
        if let Some(at) = &self.mint_started_at {
            put(MINT_STARTED_AT_ANNOTATION, at.to_string());
        }
        out
    }

    /// Reads the record from annotations. Never fails: what cannot be read is reported in
    /// [`DecodedRecord::problems`] and left out.
    pub fn from_annotations(annotations: &BTreeMap<String, String>) -> DecodedRecord {
        let mut problems = Vec::new();
        let mut problem = |annotation: &'static str, message: String| {
            problems.push(RecordProblem {
                annotation,
                message,
            });
        };
        let get = |k: &str| annotations.get(k).filter(|v| !v.is_empty()).cloned();

        let created_at = match get(KEY_CREATED_AT_ANNOTATION) {
            None => None,
            Some(raw) => match raw.parse::<Timestamp>() {
                Ok(ts) => Some(ts),
                Err(_) => {
                    problem(
                        KEY_CREATED_AT_ANNOTATION,
                        "not an RFC 3339 timestamp".into(),
                    );
                    None
                }
            },
        };
        let sha256 = match get(KEY_SHA256_ANNOTATION) {
            Some(d) if d.len() == 16 && d.bytes().all(|b| b.is_ascii_hexdigit()) => Some(d),
            Some(_) => {
                problem(KEY_SHA256_ANNOTATION, "not 16 hex digits".into());
                None
            }
            None => None,
        };
        let mut damaged_key_id = None;
        let key = match (get(KEY_ID_ANNOTATION), created_at, sha256) {
            (Some(id), Some(created_at), Some(sha256)) => Some(KeyRecord {
                id,
                prefix: get(KEY_PREFIX_ANNOTATION).unwrap_or_default(),
                created_at,
                sha256,
            }),
            (Some(id), created_at, sha256) => {
                let missing: Vec<&str> = [
                    created_at.is_none().then_some(KEY_CREATED_AT_ANNOTATION),
                    sha256.is_none().then_some(KEY_SHA256_ANNOTATION),
                ]
                .into_iter()
                .flatten()
                .collect();
                problem(
                    KEY_ID_ANNOTATION,
                    format!(
                        "key description incomplete: {} missing or unreadable",
                        missing.join(", ")
                    ),
                );
                damaged_key_id = Some(id);
                None
            }
            (None, created_at, sha256) => {
                if created_at.is_some() || sha256.is_some() {
                    problem(
                        KEY_ID_ANNOTATION,
                        "missing while other key annotations are set".into(),
                    );
                }
                None
            }
        };
        let retiring = match annotations.get(RETIRING_KEYS_ANNOTATION) {
            None => Vec::new(),
            Some(raw) if raw.trim().is_empty() => Vec::new(),
            Some(raw) => match serde_json::from_str::<Vec<RetiringKey>>(raw) {
                Ok(list) => list,
                Err(_) => {
                    problem(
                        RETIRING_KEYS_ANNOTATION,
                        "not a JSON list of {id, prefix, since, immediate}".into(),
                    );
                    Vec::new()
                }
            },
        };
        let mint_started_at = match get(MINT_STARTED_AT_ANNOTATION) {
            None => None,
            Some(raw) => match raw.parse::<Timestamp>() {
                Ok(ts) => Some(ts),
                Err(_) => {
                    // Unreadable, but present: keep the conservative meaning (sweep before
                    // clearing it).
                    problem(
                        MINT_STARTED_AT_ANNOTATION,
                        "not an RFC 3339 timestamp".into(),
                    );
                    Some(Timestamp::UNIX_EPOCH)
                }
            },
        };
        DecodedRecord {
            record: SecretRecord {
                agent_id: get(AGENT_ID_ANNOTATION),
                key,
                retiring,
                handled: HandledAnnotations {
                    rotate: annotations.get(HANDLED_ROTATE_ANNOTATION).cloned(),
                    compromised: annotations.get(HANDLED_COMPROMISED_ANNOTATION).cloned(),
                    reregister: annotations.get(HANDLED_REREGISTER_ANNOTATION).cloned(),
                },
                mint_started_at,
            },
            damaged_key_id,
            problems,
        }
    }
}

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
    /// [`key_digest`] of `AL_API_KEY`, if present.
    pub key_digest: Option<String>,
    /// `AL_AGENT_ID`, if present and UTF-8.
    pub agent_id: Option<String>,
    /// `AL_BASE_URL`, if present and UTF-8.
    pub base_url: Option<String>,
    /// The record read from the annotations.
    pub decoded: DecodedRecord,
}

impl SecretView {
    /// The view of `secret` for the `LatticeAgent` with uid `owner_uid`. Accepts the Secret either
    /// as the API server returns it or in [`cache_form`].
    pub fn observe(secret: &Secret, owner_uid: &str) -> SecretView {
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
            data.and_then(|d| d.get(API_KEY_FIELD)).map(|v| {
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
            key_digest,
            agent_id: text(AGENT_ID_FIELD),
            base_url: text(BASE_URL_FIELD),
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

/// The form in which the operator caches a Secret: `AL_API_KEY` replaced by its digest, every data
/// field other than `AL_AGENT_ID` and `AL_BASE_URL` dropped (an adopted Secret may hold other
/// secrets), `stringData` dropped. A heap dump of the cache holds no key.
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
    match field {
        API_KEY_FIELD => match std::str::from_utf8(value)
            .ok()
            .filter(|s| s.starts_with(DIGEST_MARK))
        {
            Some(_) => Some(Cow::Borrowed(value)),
            None => Some(Cow::Owned(
                format!("{DIGEST_MARK}{}", key_digest(value)).into_bytes(),
            )),
        },
        AGENT_ID_FIELD | BASE_URL_FIELD => Some(Cow::Borrowed(value)),
        _ => None,
    }
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
    /// `AL_AGENT_ID`.
    pub agent_id: String,
    /// `AL_BASE_URL`.
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
    /// AgentLattice base URL.
    pub base_url: &'a str,
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
                (API_KEY_FIELD.to_owned(), ByteString(api_key.to_vec())),
                (
                    AGENT_ID_FIELD.to_owned(),
                    ByteString(self.agent_id.clone().into_bytes()),
                ),
                (
                    BASE_URL_FIELD.to_owned(),
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
        data.insert(AGENT_ID_FIELD.to_owned(), b64(self.agent_id.as_bytes()));
        data.insert(BASE_URL_FIELD.to_owned(), b64(self.base_url.as_bytes()));
        if let Some(key) = api_key {
            data.insert(API_KEY_FIELD.to_owned(), b64(key));
        }
        serde_json::json!({"metadata": metadata, "data": data})
    }

    /// What differs between `current` and this Secret, apart from the key itself: field names
    /// for a log line or a condition message (never values).
    pub fn drift(&self, current: &ObservedSecret) -> Vec<&'static str> {
        let mut out = Vec::new();
        if current.agent_id.as_deref() != Some(self.agent_id.as_str()) {
            out.push(AGENT_ID_FIELD);
        }
        if current.base_url.as_deref() != Some(self.base_url.as_str()) {
            out.push(BASE_URL_FIELD);
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

#[cfg(test)]
mod tests {
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    use super::*;
    use crate::crd::{LatticeAgentSpec, SecretTemplate};

    const KEY: &[u8] = b"al_agent_AAAAAAAABBBBBBBBCCCCCCCCDDDDDDDDEEEEEEEE";
    const UID: &str = "0b4c9a52-5a0f-4d8f-9a8e-2a4f7f1c0001";

    fn ts(s: &str) -> Timestamp {
        s.parse().expect("test timestamp")
    }

    fn full_record() -> SecretRecord {
        SecretRecord {
            agent_id: Some("agent-1".into()),
            key: Some(KeyRecord {
                id: "key-2".into(),
                prefix: "BBBBBBBB".into(),
                created_at: ts("2026-11-23T10:00:00.123Z"),
                sha256: key_digest(KEY),
            }),
            retiring: vec![
                RetiringKey {
                    id: "key-1".into(),
                    prefix: "AAAAAAAA".into(),
                    since: ts("2026-11-23T10:00:01Z"),
                    immediate: false,
                },
                RetiringKey {
                    id: "key-0".into(),
                    prefix: "ZZZZZZZZ".into(),
                    since: ts("2026-11-22T10:00:01Z"),
                    immediate: true,
                },
            ],
            handled: HandledAnnotations {
                rotate: Some("2026-11-23".into()),
                compromised: None,
                reregister: Some("".into()),
            },
            mint_started_at: Some(ts("2026-11-23T09:59:59.5Z")),
        }
    }

    fn agent() -> LatticeAgent {
        LatticeAgent {
            metadata: ObjectMeta {
                name: Some("deploy-bot".into()),
                namespace: Some("payments".into()),
                uid: Some(UID.into()),
                ..Default::default()
            },
            spec: LatticeAgentSpec {
                secret_template: Some(SecretTemplate {
                    labels: BTreeMap::from([
                        ("team".into(), "payments".into()),
                        (MANAGED_BY_LABEL.into(), "someone-else".into()),
                    ]),
                    annotations: BTreeMap::from([
                        ("note".into(), "hello".into()),
                        (KEY_ID_ANNOTATION.into(), "forged".into()),
                    ]),
                }),
                ..Default::default()
            },
            status: None,
        }
    }

    fn desired(record: SecretRecord) -> DesiredSecret {
        let agent = agent();
        DesiredSecret::new(
            SecretInputs {
                agent: &agent,
                secret_name: "deploy-bot-agent-key",
                agent_name: "payments-deploy-bot",
                base_url: "https://www.agentlattice.io",
            },
            "agent-1",
            record,
        )
    }

    fn observed(secret: &Secret) -> ObservedSecret {
        match SecretView::observe(secret, UID) {
            SecretView::Present(s) => *s,
            SecretView::Absent => panic!("present expected"),
        }
    }

    #[test]
    fn digest_is_16_hex_digits_of_sha256() {
        // sha256("abc") = ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad
        assert_eq!(key_digest(b"abc"), "ba7816bf8f01cfea");
        assert_eq!(key_digest(KEY).len(), 16);
    }

    #[test]
    fn record_round_trips_through_annotations() {
        for record in [
            full_record(),
            SecretRecord::default(),
            SecretRecord {
                agent_id: Some("a".into()),
                ..Default::default()
            },
        ] {
            let decoded = SecretRecord::from_annotations(&record.to_annotations());
            assert_eq!(decoded.record, record);
            assert!(decoded.problems.is_empty(), "{:?}", decoded.problems);
            assert_eq!(decoded.damaged_key_id, None);
        }
    }

    #[test]
    fn annotations_never_hold_the_key() {
        let annotations = full_record().to_annotations();
        let key = std::str::from_utf8(KEY).expect("ascii");
        assert!(
            annotations
                .values()
                .all(|v| !v.contains(key) && !v.contains("al_agent_"))
        );
    }

    #[test]
    fn malformed_annotations_are_reported_not_fatal() {
        let good = full_record().to_annotations();
        let cases: Vec<(&str, &str, &'static str)> = vec![
            (
                RETIRING_KEYS_ANNOTATION,
                "not json",
                RETIRING_KEYS_ANNOTATION,
            ),
            (
                RETIRING_KEYS_ANNOTATION,
                "{\"id\": 1}",
                RETIRING_KEYS_ANNOTATION,
            ),
            (
                RETIRING_KEYS_ANNOTATION,
                "[{\"prefix\":\"x\"}]",
                RETIRING_KEYS_ANNOTATION,
            ),
            (
                KEY_CREATED_AT_ANNOTATION,
                "yesterday",
                KEY_CREATED_AT_ANNOTATION,
            ),
            (KEY_SHA256_ANNOTATION, "xyz", KEY_SHA256_ANNOTATION),
            (
                KEY_SHA256_ANNOTATION,
                "0123456789abcdef0",
                KEY_SHA256_ANNOTATION,
            ),
        ];
        for (annotation, value, reported) in cases {
            let mut annotations = good.clone();
            annotations.insert(annotation.into(), value.into());
            let decoded = SecretRecord::from_annotations(&annotations);
            assert!(
                decoded.has_problem(reported),
                "{annotation}={value}: {:?}",
                decoded.problems
            );
            assert_eq!(decoded.record.agent_id.as_deref(), Some("agent-1"));
            if annotation == RETIRING_KEYS_ANNOTATION {
                assert!(decoded.record.retiring.is_empty());
                assert!(decoded.record.key.is_some());
            } else if annotation == MINT_STARTED_AT_ANNOTATION {
                assert!(
                    decoded.record.mint_started_at.is_some(),
                    "an unreadable intent still counts as an intent"
                );
            } else {
                assert_eq!(decoded.record.key, None, "{annotation}");
                assert_eq!(decoded.damaged_key_id.as_deref(), Some("key-2"));
                assert_eq!(decoded.record.retiring.len(), 2);
            }
            // The problem names the annotation, never echoes the value.
            assert!(
                decoded
                    .problems
                    .iter()
                    .all(|p| !p.to_string().contains(value))
            );
        }
        // Key annotations without a key id.
        let mut annotations = good.clone();
        annotations.remove(KEY_ID_ANNOTATION);
        let decoded = SecretRecord::from_annotations(&annotations);
        assert!(decoded.has_problem(KEY_ID_ANNOTATION));
        assert_eq!(decoded.record.key, None);
        // Arbitrary garbage everywhere never panics.
        let garbage: BTreeMap<String, String> = RECORD_ANNOTATIONS
            .iter()
            .map(|k| (k.to_string(), "\u{0}[{]}\"".to_string()))
            .collect();
        let decoded = SecretRecord::from_annotations(&garbage);
        assert!(!decoded.problems.is_empty());
    }

    #[test]
    fn desired_secret_layout() {
        let d = desired(full_record());
        let secret = d.to_secret(KEY);
        assert_eq!(secret.type_.as_deref(), Some("Opaque"));
        let meta = &secret.metadata;
        assert_eq!(meta.name.as_deref(), Some("deploy-bot-agent-key"));
        assert_eq!(meta.namespace.as_deref(), Some("payments"));
        let labels = meta.labels.clone().unwrap_or_default();
        assert_eq!(labels[MANAGED_BY_LABEL], MANAGED_BY_VALUE, "ours win");
        assert_eq!(labels[AGENT_NAME_LABEL], "payments-deploy-bot");
        assert_eq!(labels["team"], "payments");
        let annotations = meta.annotations.clone().unwrap_or_default();
        assert_eq!(annotations[KEY_ID_ANNOTATION], "key-2", "the record wins");
        assert_eq!(annotations[AGENT_ID_ANNOTATION], "agent-1");
        assert_eq!(annotations["note"], "hello");
        let owner = &meta.owner_references.clone().unwrap_or_default()[0];
        assert_eq!(owner.uid, UID);
        assert_eq!(owner.kind, "LatticeAgent");
        assert_eq!(owner.api_version, "agentlattice.io/v1alpha1");
        assert_eq!(owner.controller, Some(true));
        assert_eq!(owner.block_owner_deletion, Some(true));
        let data = secret.data.clone().unwrap_or_default();
        assert_eq!(data[API_KEY_FIELD].0, KEY);
        assert_eq!(data[AGENT_ID_FIELD].0, b"agent-1");
        assert_eq!(data[BASE_URL_FIELD].0, b"https://www.agentlattice.io");

        // What the operator reads back: ours, in sync, digest matches the record.
        let view = observed(&secret);
        assert_eq!(view.ownership, Ownership::Ours);
        assert_eq!(view.key_digest.as_deref(), Some(key_digest(KEY).as_str()));
        assert_eq!(view.decoded.record, full_record());
        assert!(d.drift(&view).is_empty(), "{:?}", d.drift(&view));
    }

    #[test]
    fn cache_form_holds_digests_only() {
        let mut secret = desired(full_record()).to_secret(KEY);
        if let Some(data) = secret.data.as_mut() {
            data.insert("OTHER".into(), ByteString(b"sensitive".to_vec()));
        }
        let cached = cache_form(secret.clone());
        let data = cached.data.clone().unwrap_or_default();
        assert_eq!(data.len(), 3);
        assert!(!data.contains_key("OTHER"));
        let stored = String::from_utf8(data[API_KEY_FIELD].0.clone()).expect("utf-8");
        assert_eq!(stored, format!("sha256:{}", key_digest(KEY)));
        // Observing the cached and the full form gives the same view; caching twice is stable.
        assert_eq!(observed(&cached), observed(&secret));
        assert_eq!(cache_form(cached.clone()), cached);
    }

    #[test]
    fn a_fingerprint_is_the_same_for_a_secret_and_its_cache_form_and_nothing_else() {
        let secret = desired(full_record()).to_secret(KEY);
        let fp = fingerprint(&secret);
        assert_eq!(fingerprint(&cache_form(secret.clone())), fp);
        // What the API server sets does not count.
        let mut served = secret.clone();
        served.metadata.resource_version = Some("42".into());
        served.metadata.uid = Some("u-1".into());
        assert_eq!(fingerprint(&served), fp);
        // What the operator reads does.
        let mut other_key = desired(full_record()).to_secret(b"al_agent_another");
        assert_ne!(fingerprint(&other_key), fp, "another key");
        other_key = secret.clone();
        if let Some(a) = other_key.metadata.annotations.as_mut() {
            a.insert(KEY_ID_ANNOTATION.into(), "key-other".into());
        }
        assert_ne!(fingerprint(&other_key), fp, "another annotation");
        let mut unowned = secret.clone();
        unowned.metadata.owner_references = None;
        assert_ne!(fingerprint(&unowned), fp, "no owner");
    }

    #[test]
    fn ownership_is_relative_to_the_uid() {
        let mut secret = desired(full_record()).to_secret(KEY);
        assert_eq!(observed(&secret).ownership, Ownership::Ours);
        secret.metadata.owner_references = None;
        assert_eq!(observed(&secret).ownership, Ownership::Unowned);
        secret.metadata.owner_references = Some(vec![owner_reference("deploy-bot", "older-uid")]);
        assert_eq!(
            observed(&secret).ownership,
            Ownership::Controlled {
                kind: "LatticeAgent".into(),
                name: "deploy-bot".into()
            }
        );
        let mut not_controller = owner_reference("x", "y");
        not_controller.controller = None;
        secret.metadata.owner_references = Some(vec![not_controller]);
        assert_eq!(observed(&secret).ownership, Ownership::Unowned);
    }

    #[test]
    fn merge_patch_updates_ours_and_leaves_the_rest() {
        let mut secret = desired(full_record()).to_secret(KEY);
        secret.metadata.resource_version = Some("42".into());
        if let Some(a) = secret.metadata.annotations.as_mut() {
            a.insert("foreign".into(), "kept".into());
        }
        let current = observed(&cache_form(secret));

        // A new record without retiring keys and a new key.
        let mut record = full_record();
        record.retiring.clear();
        let patch = desired(record).merge_patch(&current, Some(b"al_agent_new"));
        assert_eq!(patch["metadata"]["resourceVersion"], "42");
        assert_eq!(
            patch["metadata"]["annotations"][RETIRING_KEYS_ANNOTATION],
            serde_json::Value::Null
        );
        assert!(
            patch["metadata"]["annotations"]
                .as_object()
                .is_some_and(|a| !a.contains_key("foreign")
                    && !a.contains_key(HANDLED_COMPROMISED_ANNOTATION))
        );
        assert!(
            patch["metadata"].get("ownerReferences").is_none(),
            "already ours"
        );
        assert_eq!(patch["data"][API_KEY_FIELD], "YWxfYWdlbnRfbmV3");

        // Keep the key: AL_API_KEY is not in the patch.
        let patch = desired(full_record()).merge_patch(&current, None);
        assert!(patch["data"].get(API_KEY_FIELD).is_none());
    }

    #[test]
    fn adopting_adds_our_owner_reference_and_keeps_others() {
        let mut secret = Secret {
            metadata: ObjectMeta {
                name: Some("deploy-bot-agent-key".into()),
                resource_version: Some("7".into()),
                owner_references: Some(vec![OwnerReference {
                    controller: None,
                    ..owner_reference("app", "app-uid")
                }]),
                ..Default::default()
            },
            ..Default::default()
        };
        secret.type_ = Some("Opaque".into());
        let current = observed(&secret);
        assert_eq!(current.ownership, Ownership::Unowned);
        let d = desired(full_record());
        assert!(d.drift(&current).contains(&"ownerReferences"));
        let patch = d.merge_patch(&current, Some(KEY));
        let refs = patch["metadata"]["ownerReferences"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        assert_eq!(refs.len(), 2);
        assert_eq!(refs[1]["uid"], UID);
        assert_eq!(refs[1]["controller"], true);
    }

    #[test]
    fn release_removes_only_our_owner_reference() {
        let mut secret = desired(full_record()).to_secret(KEY);
        secret.metadata.resource_version = Some("9".into());
        if let Some(refs) = secret.metadata.owner_references.as_mut() {
            refs.push(OwnerReference {
                controller: None,
                ..owner_reference("app", "app-uid")
            });
        }
        let current = observed(&secret);
        let remaining = released_owner_references(&current, UID);
        assert_eq!(remaining.len(), 1);
        assert_eq!(remaining[0].uid, "app-uid");
        let patch = release_patch(&current, UID);
        assert_eq!(patch["metadata"]["resourceVersion"], "9");
        assert_eq!(patch["metadata"]["ownerReferences"][0]["uid"], "app-uid");
    }

    #[test]
    fn drift_names_fields_not_values() {
        let d = desired(full_record());
        let mut secret = d.to_secret(KEY);
        if let Some(data) = secret.data.as_mut() {
            data.insert(
                BASE_URL_FIELD.into(),
                ByteString(b"https://evil.example".to_vec()),
            );
            data.insert(AGENT_ID_FIELD.into(), ByteString(b"other".to_vec()));
        }
        if let Some(labels) = secret.metadata.labels.as_mut() {
            labels.remove(AGENT_NAME_LABEL);
        }
        if let Some(a) = secret.metadata.annotations.as_mut() {
            a.insert(HANDLED_COMPROMISED_ANNOTATION.into(), "stale".into());
        }
        assert_eq!(
            d.drift(&observed(&secret)),
            vec![AGENT_ID_FIELD, BASE_URL_FIELD, "labels", "annotations"]
        );
    }
}
