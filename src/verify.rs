//! The invariant checker (issue 16): what `lattice-operator verify` and the integration tests
//! check, one implementation for both. It reads a cluster (any API server: kube-sim or a real
//! one) and an AgentLattice emulator's admin state, then [`check`] — a pure function of what was
//! read — lists every violation of design §4 and §7:
//!
//! - every Ready LatticeAgent has exactly one live agent at AgentLattice linked to its uid
//!   (`k8s.uid`), status names it, its Secret exists and names it, and the Secret's key
//!   authenticates as that agent (`whoami`) with the key id the Secret's record gives;
//! - the agent's only other live keys are the retiring keys in status, and none is past its
//!   `revokeBy` (by more than a tolerance: the retirement runs on a resync tick);
//! - no live agent created by the operator (metadata `k8s.uid`) is unaccounted for: its
//!   LatticeAgent exists, or it was deleted with `deletionPolicy: Retain` (its released Secret,
//!   no longer controlled by a LatticeAgent, still names the agent) — so every LatticeAgent deleted
//!   with `Revoke` has its agent revoked;
//! - no key material in Events, statuses, and the log files and metrics pages given: neither a key
//!   read from a Secret nor anything shaped like a key.
//!
//! A violation names resources, agent ids and key ids, never a key. The keys read from Secrets
//! (to call `whoami` and to look for them) are held in [`Zeroizing`] strings and never formatted.
//! The emulator's admin state is read over plain HTTP (`GET /_admin/state` with its admin token):
//! it is a test fixture's endpoint, listing agents and keys without secrets.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use jiff::{SignedDuration, Timestamp};
use k8s_openapi::api::core::v1::Secret;
use serde::Deserialize;
use zeroize::Zeroizing;

use crate::crd::LatticeAgent;
use crate::plan::{META_CLUSTER, META_NAME, META_NAMESPACE, META_UID, validate};
use crate::secret::{AGENT_ID_ANNOTATION, AGENT_ID_FIELD, API_KEY_FIELD, KEY_ID_ANNOTATION};

mod observe;

pub use observe::{Sources, observe};

/// What the check is limited to, and how lenient it is.
#[derive(Clone, Debug)]
pub struct Options {
    /// Namespaces to check; empty: all.
    pub namespaces: Vec<String>,
    /// Only agents whose `k8s.cluster` is this are the operator's (when set).
    pub cluster_name: Option<String>,
    /// How far past its `revokeBy` a retiring key may still be live (the operator retires keys
    /// on a reconcile tick, not at the instant).
    pub tolerance: SignedDuration,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            namespaces: Vec::new(),
            cluster_name: None,
            tolerance: SignedDuration::from_mins(1),
        }
    }
}

/// An agent as the emulator's `GET /_admin/state` lists it (only the fields the check reads; the
/// operator shares no types with the emulator).
#[derive(Clone, Debug, Deserialize)]
pub struct RemoteAgent {
    /// Agent id.
    pub id: String,
    /// Agent name.
    pub name: String,
    /// Metadata (`k8s.uid`, …).
    #[serde(default)]
    pub metadata: BTreeMap<String, String>,
    /// `active`, `halted` or `revoked`.
    pub status: String,
    /// Every key, revoked ones included.
    #[serde(default)]
    pub keys: Vec<RemoteKey>,
}

impl RemoteAgent {
    fn live(&self) -> bool {
        self.status != "revoked"
    }

    fn live_keys(&self) -> impl Iterator<Item = &RemoteKey> {
        self.keys.iter().filter(|k| k.status != "revoked")
    }
}

/// A key as the admin state lists it.
#[derive(Clone, Debug, Deserialize)]
pub struct RemoteKey {
    /// Key id.
    pub key_id: String,
    /// `active`, `deprecated` or `revoked`.
    pub status: String,
}

/// `GET /_admin/state`.
#[derive(Clone, Debug, Default, Deserialize)]
pub struct RemoteState {
    /// Every agent, revoked ones included.
    pub agents: Vec<RemoteAgent>,
}

/// Who a Secret's key authenticates as (`GET /api/v1/whoami` with it).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Identity {
    /// The agent id.
    pub agent_id: String,
    /// The key id.
    pub key_id: Option<String>,
}

/// A text the operator (or anyone) published, to look for keys in.
#[derive(Clone, Debug)]
pub struct Text {
    /// Where it is (`Event payments/x`, `status of payments/bot`, `log file …`).
    pub location: String,
    /// The text.
    pub content: String,
}

/// Everything [`check`] needs, read at one moment.
pub struct Observation {
    /// When it was read.
    pub now: Timestamp,
    /// The LatticeAgents in scope that parse.
    pub resources: Vec<LatticeAgent>,
    /// LatticeAgents that do not parse (namespace/name): not checked.
    pub unparsed: Vec<String>,
    /// The Secrets in scope that the check reads: those the resources name, and those labelled
    /// as the operator's (released Secrets of retained agents among them).
    pub secrets: Vec<Secret>,
    /// AgentLattice.
    pub remote: RemoteState,
    /// `whoami` with each Secret's key, by namespace/name of the Secret (an error says why, never
    /// with the key).
    pub whoami: BTreeMap<String, Result<Identity, String>>,
    /// Published texts.
    pub texts: Vec<Text>,
    /// Every key read from a Secret.
    pub keys: Vec<Zeroizing<String>>,
}

/// One violation of the invariant.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Violation {
    /// A Ready LatticeAgent without exactly one live agent linked to its uid.
    LiveAgents {
        /// namespace/name.
        resource: String,
        /// The live agents linked to it.
        found: Vec<String>,
    },
    /// Status names another agent than the live one (or none).
    StatusAgent {
        /// namespace/name.
        resource: String,
        /// What status says.
        status: Option<String>,
        /// The live agent.
        live: String,
    },
    /// The Secret of a Ready LatticeAgent is missing.
    SecretMissing {
        /// namespace/name of the resource.
        resource: String,
        /// The Secret's name.
        secret: String,
    },
    /// The Secret names another agent than the live one.
    SecretAgent {
        /// namespace/name of the Secret.
        secret: String,
        /// What it names.
        names: Option<String>,
        /// The live agent.
        live: String,
    },
    /// The Secret's key does not authenticate as the live agent.
    KeyDoesNotWork {
        /// namespace/name of the Secret.
        secret: String,
        /// Why (who it authenticated as, or the error).
        why: String,
    },
    /// A live key of the agent is neither the Secret's key nor retiring in status.
    UnaccountedKey {
        /// namespace/name of the resource.
        resource: String,
        /// Agent id.
        agent: String,
        /// Key id.
        key: String,
    },
    /// A retiring key is still live past its `revokeBy`.
    OverdueKey {
        /// namespace/name of the resource.
        resource: String,
        /// Key id.
        key: String,
        /// Its `revokeBy`.
        revoke_by: Timestamp,
    },
    /// A live agent of the operator whose LatticeAgent is gone and was not retained.
    OrphanAgent {
        /// Agent id.
        agent: String,
        /// The LatticeAgent its metadata names (namespace/name, uid).
        owner: String,
    },
    /// A key in a published text.
    KeyMaterial {
        /// Where.
        location: String,
    },
}

impl Violation {
    /// The LatticeAgent (namespace/name) or Secret (namespace/name) the violation is about;
    /// `None` for an orphan agent or key material (about no one resource).
    pub fn subject(&self) -> Option<&str> {
        match self {
            Violation::LiveAgents { resource, .. }
            | Violation::StatusAgent { resource, .. }
            | Violation::SecretMissing { resource, .. }
            | Violation::UnaccountedKey { resource, .. }
            | Violation::OverdueKey { resource, .. } => Some(resource),
            Violation::SecretAgent { secret, .. } | Violation::KeyDoesNotWork { secret, .. } => {
                Some(secret)
            }
            Violation::OrphanAgent { .. } | Violation::KeyMaterial { .. } => None,
        }
    }
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Violation::LiveAgents { resource, found } => write!(
                f,
                "{resource} is Ready but has {} live agents linked to its uid (expected 1): [{}]",
                found.len(),
                found.join(", ")
            ),
            Violation::StatusAgent {
                resource,
                status,
                live,
            } => write!(
                f,
                "{resource}: status names agent {}, the live agent is {live}",
                status.as_deref().unwrap_or("(none)")
            ),
            Violation::SecretMissing { resource, secret } => {
                write!(
                    f,
                    "{resource} is Ready but its Secret {secret} does not exist"
                )
            }
            Violation::SecretAgent {
                secret,
                names,
                live,
            } => write!(
                f,
                "Secret {secret} names agent {}, the live agent is {live}",
                names.as_deref().unwrap_or("(none)")
            ),
            Violation::KeyDoesNotWork { secret, why } => {
                write!(f, "the key in Secret {secret} does not work: {why}")
            }
            Violation::UnaccountedKey {
                resource,
                agent,
                key,
            } => write!(
                f,
                "{resource}: agent {agent} has live key {key}, which is neither in the Secret nor \
                 retiring in status"
            ),
            Violation::OverdueKey {
                resource,
                key,
                revoke_by,
            } => write!(
                f,
                "{resource}: retiring key {key} is still live after its revokeBy {revoke_by}"
            ),
            Violation::OrphanAgent { agent, owner } => write!(
                f,
                "agent {agent} is live but its LatticeAgent {owner} is gone and did not retain it \
                 (deleted with Revoke, or never cleaned up)"
            ),
            Violation::KeyMaterial { location } => {
                write!(f, "key material in {location}")
            }
        }
    }
}

/// What [`check`] found.
#[derive(Clone, Debug, Default)]
pub struct Report {
    /// Every violation.
    pub violations: Vec<Violation>,
    /// The Ready LatticeAgents checked (namespace/name).
    pub ready: Vec<String>,
    /// The LatticeAgents seen (Ready or not).
    pub resources: usize,
    /// LatticeAgents that do not parse, not checked (namespace/name).
    pub unparsed: Vec<String>,
    /// LatticeAgents whose agent lives at Alter (their Secret carries Alter's field names),
    /// not checked: `verify` reads AgentLattice only (namespace/name).
    pub other_backend: Vec<String>,
    /// Live agents of the operator at AgentLattice.
    pub live_agents: usize,
    /// Texts looked through for keys.
    pub texts: usize,
}

impl Report {
    /// Whether the invariant holds.
    pub fn holds(&self) -> bool {
        self.violations.is_empty()
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} LatticeAgents ({} Ready, checked), {} live agents of the operator, {} texts \
             looked through for keys",
            self.resources,
            self.ready.len(),
            self.live_agents,
            self.texts
        )?;
        if !self.unparsed.is_empty() {
            write!(
                f,
                "; not checked (do not parse): {}",
                self.unparsed.join(", ")
            )?;
        }
        if !self.other_backend.is_empty() {
            write!(
                f,
                "; not checked (agents at Alter): {}",
                self.other_backend.join(", ")
            )?;
        }
        if self.holds() {
            write!(f, "\nthe invariant holds")
        } else {
            write!(f, "\n{} violations:", self.violations.len())?;
            for v in &self.violations {
                write!(f, "\n- {v}")?;
            }
            Ok(())
        }
    }
}

fn key_of(r: &LatticeAgent) -> String {
    format!(
        "{}/{}",
        r.metadata.namespace.as_deref().unwrap_or_default(),
        r.metadata.name.as_deref().unwrap_or_default()
    )
}

fn secret_key_of(s: &Secret) -> String {
    format!(
        "{}/{}",
        s.metadata.namespace.as_deref().unwrap_or_default(),
        s.metadata.name.as_deref().unwrap_or_default()
    )
}

fn ready(r: &LatticeAgent) -> bool {
    r.status
        .as_ref()
        .and_then(|s| s.conditions.iter().find(|c| c.type_ == crate::plan::READY))
        .is_some_and(|c| c.status == "True")
}

/// The Secret a LatticeAgent names (status first: it keeps the name once registered).
pub fn secret_name(r: &LatticeAgent) -> String {
    r.status
        .as_ref()
        .and_then(|s| s.secret_name.clone())
        .unwrap_or_else(|| validate::effective_secret_name(r))
}

fn in_scope(opts: &Options, namespace: &str) -> bool {
    opts.namespaces.is_empty() || opts.namespaces.iter().any(|n| n == namespace)
}

/// Whether an agent is the operator's: linked to a LatticeAgent uid, in scope.
fn operators(opts: &Options, agent: &RemoteAgent) -> bool {
    agent.metadata.contains_key(META_UID)
        && in_scope(
            opts,
            agent
                .metadata
                .get(META_NAMESPACE)
                .map(String::as_str)
                .unwrap_or_default(),
        )
        && match &opts.cluster_name {
            Some(c) => agent.metadata.get(META_CLUSTER) == Some(c),
            None => true,
        }
}

/// The first 20 characters of a key's body identify it (a body has 40).
const KEY_FRAGMENT: usize = 20;

/// Whether `text` holds a key: one of `keys`, or anything shaped like one (a scheme followed by
/// at least 20 body characters).
fn holds_key(text: &str, keys: &[Zeroizing<String>]) -> bool {
    for key in keys {
        // Only what is shaped like a key: a Secret's field may hold anything, and a short value
        // found in a text proves nothing.
        let Some(body) = key
            .strip_prefix("al_agent_")
            .or_else(|| key.strip_prefix("al_svc_"))
            .filter(|b| b.len() >= KEY_FRAGMENT && b.is_char_boundary(KEY_FRAGMENT))
        else {
            continue;
        };
        if text.contains(&body[..KEY_FRAGMENT]) {
            return true;
        }
    }
    for scheme in ["al_agent_", "al_svc_"] {
        let mut from = 0;
        while let Some(i) = text[from..].find(scheme) {
            let body = from + i + scheme.len();
            let run = text[body..]
                .bytes()
                .take_while(u8::is_ascii_alphanumeric)
                .count();
            if run >= KEY_FRAGMENT {
                return true;
            }
            from = body;
        }
    }
    false
}

/// Checks the invariant on what was read.
pub fn check(o: &Observation, opts: &Options) -> Report {
    let mut report = Report {
        resources: o.resources.len(),
        unparsed: o.unparsed.clone(),
        texts: o.texts.len(),
        ..Default::default()
    };
    let v = &mut report.violations;
    let secrets: BTreeMap<String, &Secret> =
        o.secrets.iter().map(|s| (secret_key_of(s), s)).collect();
    let live: Vec<&RemoteAgent> = o
        .remote
        .agents
        .iter()
        .filter(|a| a.live() && operators(opts, a))
        .collect();
    report.live_agents = live.len();
    let uids: BTreeSet<&str> = o
        .resources
        .iter()
        .filter_map(|r| r.metadata.uid.as_deref())
        .collect();

    for r in &o.resources {
        let Some(uid) = r.metadata.uid.as_deref() else {
            continue;
        };
        if !ready(r) || r.metadata.deletion_timestamp.is_some() {
            continue;
        }
        let name = key_of(r);
        let secret_ref = format!(
            "{}/{}",
            r.metadata.namespace.as_deref().unwrap_or_default(),
            secret_name(r)
        );
        if secrets
            .get(&secret_ref)
            .and_then(|s| s.data.as_ref())
            .is_some_and(|d| d.contains_key(crate::secret::ALTER_FIELDS.api_key))
        {
            report.other_backend.push(name);
            continue;
        }
        report.ready.push(name.clone());
        let mine: Vec<&RemoteAgent> = live
            .iter()
            .copied()
            .filter(|a| a.metadata.get(META_UID).map(String::as_str) == Some(uid))
            .collect();
        let [agent] = mine.as_slice() else {
            v.push(Violation::LiveAgents {
                resource: name,
                found: mine.iter().map(|a| a.id.clone()).collect(),
            });
            continue;
        };
        let status = r.status.clone().unwrap_or_default();
        if status.agent_id.as_deref() != Some(agent.id.as_str()) {
            v.push(Violation::StatusAgent {
                resource: name.clone(),
                status: status.agent_id.clone(),
                live: agent.id.clone(),
            });
        }
        let Some(secret) = secrets.get(&secret_ref) else {
            v.push(Violation::SecretMissing {
                resource: name,
                secret: secret_name(r),
            });
            continue;
        };
        let annotations = secret.metadata.annotations.clone().unwrap_or_default();
        let named = annotations.get(AGENT_ID_ANNOTATION).cloned().or_else(|| {
            secret
                .data
                .as_ref()
                .and_then(|d| d.get(AGENT_ID_FIELD))
                .map(|b| String::from_utf8_lossy(&b.0).into_owned())
        });
        if named.as_deref() != Some(agent.id.as_str()) {
            v.push(Violation::SecretAgent {
                secret: secret_ref.clone(),
                names: named,
                live: agent.id.clone(),
            });
        }
        let in_secret = match o.whoami.get(&secret_ref) {
            None => {
                v.push(Violation::KeyDoesNotWork {
                    secret: secret_ref.clone(),
                    why: format!("it holds no {API_KEY_FIELD}"),
                });
                None
            }
            Some(Err(why)) => {
                v.push(Violation::KeyDoesNotWork {
                    secret: secret_ref.clone(),
                    why: why.clone(),
                });
                None
            }
            Some(Ok(who)) if who.agent_id != agent.id => {
                v.push(Violation::KeyDoesNotWork {
                    secret: secret_ref.clone(),
                    why: format!(
                        "it authenticates as agent {}, not {}",
                        who.agent_id, agent.id
                    ),
                });
                None
            }
            Some(Ok(who)) => {
                if let (Some(used), Some(recorded)) =
                    (who.key_id.as_deref(), annotations.get(KEY_ID_ANNOTATION))
                    && used != recorded
                {
                    v.push(Violation::KeyDoesNotWork {
                        secret: secret_ref.clone(),
                        why: format!(
                            "it is key {used}, but the Secret's record says key {recorded}"
                        ),
                    });
                }
                who.key_id.clone()
            }
        };
        // Which key the Secret holds: the one it authenticated with, else (it did not) the one
        // its record names, so that one failure is not reported twice.
        let in_secret = in_secret.or_else(|| annotations.get(KEY_ID_ANNOTATION).cloned());
        for key in agent.live_keys() {
            if in_secret.as_deref() == Some(key.key_id.as_str()) {
                continue;
            }
            match status.retiring_keys.iter().find(|k| k.id == key.key_id) {
                None => v.push(Violation::UnaccountedKey {
                    resource: name.clone(),
                    agent: agent.id.clone(),
                    key: key.key_id.clone(),
                }),
                Some(k) => {
                    let late = k
                        .revoke_by
                        .checked_add(opts.tolerance)
                        .unwrap_or(k.revoke_by);
                    if o.now > late {
                        v.push(Violation::OverdueKey {
                            resource: name.clone(),
                            key: key.key_id.clone(),
                            revoke_by: k.revoke_by,
                        });
                    }
                }
            }
        }
    }

    // Live agents of the operator whose LatticeAgent is gone: accounted for only when retained
    // (a Secret, no longer controlled by a LatticeAgent, still names the agent).
    let retained: BTreeSet<&str> = o
        .secrets
        .iter()
        .filter(|s| {
            !s.metadata
                .owner_references
                .iter()
                .flatten()
                .any(|o| o.controller == Some(true) && o.kind == "LatticeAgent")
        })
        .filter_map(|s| {
            s.metadata
                .annotations
                .as_ref()
                .and_then(|a| a.get(AGENT_ID_ANNOTATION))
                .map(String::as_str)
        })
        .collect();
    for agent in &live {
        let uid = agent
            .metadata
            .get(META_UID)
            .map(String::as_str)
            .unwrap_or_default();
        if uids.contains(uid) || retained.contains(agent.id.as_str()) {
            continue;
        }
        v.push(Violation::OrphanAgent {
            agent: agent.id.clone(),
            owner: format!(
                "{}/{} (uid {uid})",
                agent
                    .metadata
                    .get(META_NAMESPACE)
                    .map(String::as_str)
                    .unwrap_or("?"),
                agent
                    .metadata
                    .get(META_NAME)
                    .map(String::as_str)
                    .unwrap_or("?"),
            ),
        });
    }

    for text in &o.texts {
        if holds_key(&text.content, &o.keys) {
            v.push(Violation::KeyMaterial {
                location: text.location.clone(),
            });
        }
    }
    report
}

/// `lattice-operator verify`: reads, checks and returns the report.
pub async fn run(args: crate::config::VerifyArgs) -> crate::Result<Report> {
    let config = match &args.kubeconfig {
        Some(path) => {
            let kubeconfig = kube::config::Kubeconfig::read_from(path)
                .map_err(|e| crate::Error::Config(format!("kubeconfig {}: {e}", path.display())))?;
            kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default())
                .await
                .map_err(|e| crate::Error::Config(format!("kubeconfig {}: {e}", path.display())))?
        }
        None => kube::Config::infer().await.map_err(|e| {
            crate::Error::Config(format!(
                "no Kubernetes configuration (KUBECONFIG, ~/.kube/config or in-cluster): {e}"
            ))
        })?,
    };
    let client = kube::Client::try_from(config)?;
    let sources = Sources {
        agentlattice_url: args
            .agentlattice_url
            .clone()
            .unwrap_or_else(|| args.emulator_url.clone()),
        emulator_url: args.emulator_url,
        admin_token: Zeroizing::new(args.emulator_token),
        log_files: args.log_files,
        metrics_urls: args.metrics_urls,
    };
    let opts = Options {
        namespaces: args.namespaces,
        cluster_name: args.cluster_name,
        tolerance: args.tolerance,
    };
    let observation = observe(&client, &sources, &opts).await?;
    Ok(check(&observation, &opts))
}

#[cfg(test)]
mod tests;
