//! The Secret is the operator's durable record (design §2).
//!
//! Everything needed to resume after a crash lives on the Secret, written in the same request as the
//! key it describes: the agent id, the id, prefix, creation time and digest of the key in
//! `AL_API_KEY`, the keys being retired, and the last action-annotation values acted on. This module
//! encodes and (tolerantly) decodes that record, builds the Secret the operator wants, and turns a
//! cached Secret into the [`SecretView`] the planner reasons about.
//!
//! - [`record`](SecretRecord): the record on the Secret's annotations, encoded and tolerantly
//!   decoded;
//! - [`view`](SecretView): what the planner sees of an existing Secret, and the form the cache keeps
//!   it in (digests, no key);
//! - [`desired`](DesiredSecret): the Secret the operator wants, as a create or a merge patch.
//!
//! Every function here is pure. The key itself is only ever an argument (`&[u8]`) of the functions
//! that build the object sent to the API server; nothing here stores, logs or formats it.

use sha2::{Digest, Sha256};

/// Data field holding the agent key (AgentLattice).
pub const API_KEY_FIELD: &str = "AL_API_KEY";
/// Data field holding the agent id (AgentLattice).
pub const AGENT_ID_FIELD: &str = "AL_AGENT_ID";
/// Data field holding the AgentLattice base URL.
pub const BASE_URL_FIELD: &str = "AL_BASE_URL";

/// The names of a Secret's three data fields, which depend on the backend the agent lives at:
/// each backend's SDK finds its own names in the environment (docs/alter.md "The workload's
/// Secret" says why Alter's are what they are).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct SecretFields {
    /// The agent key.
    pub api_key: &'static str,
    /// The agent id.
    pub agent_id: &'static str,
    /// The backend's base URL.
    pub base_url: &'static str,
}

/// AgentLattice's: `AL_API_KEY`, `AL_AGENT_ID`, `AL_BASE_URL`.
pub const AGENTLATTICE_FIELDS: SecretFields = SecretFields {
    api_key: API_KEY_FIELD,
    agent_id: AGENT_ID_FIELD,
    base_url: BASE_URL_FIELD,
};

/// Alter's: `ALTER_API_KEY`, `ALTER_AGENT_ID`, and `ALTER_BASE_URL` (the one variable the Alter
/// SDK reads from the environment itself).
pub const ALTER_FIELDS: SecretFields = SecretFields {
    api_key: "ALTER_API_KEY",
    agent_id: "ALTER_AGENT_ID",
    base_url: "ALTER_BASE_URL",
};

/// Every backend's field names.
pub const ALL_FIELDS: [SecretFields; 2] = [AGENTLATTICE_FIELDS, ALTER_FIELDS];

/// Whether `field` holds an agent key under some backend's names.
pub fn is_api_key_field(field: &str) -> bool {
    ALL_FIELDS.iter().any(|f| f.api_key == field)
}

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
pub(crate) const DIGEST_MARK: &str = "sha256:";

/// First 16 hex digits of the SHA-256 of `key`: detects an edited key without keeping the key.
pub fn key_digest(key: &[u8]) -> String {
    let hash = Sha256::digest(key);
    hash.iter().take(8).map(|b| format!("{b:02x}")).collect()
}

mod desired;
mod record;
mod view;

pub use desired::{
    DesiredSecret, SecretInputs, owner_reference, release_patch, released_owner_references,
};
pub use record::{DecodedRecord, KeyRecord, RecordProblem, RetiringKey, SecretRecord};
pub use view::{ObservedSecret, Ownership, SecretView, cache_form, fingerprint};

#[cfg(test)]
mod tests;
