//! The record kept on the Secret's annotations (design §2): encoded in full by every write,
//! decoded tolerantly (an unreadable annotation is a [`RecordProblem`], the rest is still used).

use std::collections::BTreeMap;

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use super::{
    AGENT_ID_ANNOTATION, HANDLED_COMPROMISED_ANNOTATION, HANDLED_REREGISTER_ANNOTATION,
    HANDLED_ROTATE_ANNOTATION, KEY_CREATED_AT_ANNOTATION, KEY_ID_ANNOTATION, KEY_PREFIX_ANNOTATION,
    KEY_SHA256_ANNOTATION, MINT_STARTED_AT_ANNOTATION, RETIRING_KEYS_ANNOTATION,
};

use crate::crd::HandledAnnotations;

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
    /// [`key_digest`](super::key_digest) of the key.
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
