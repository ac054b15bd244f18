//! Property tests of the planner (issue 16): for arbitrary observed states, driven the way the
//! executor drives the planner, the four promises hold.
//!
//! A generated [`Scenario`] is a starting state — the spec (valid or not, suspended, deleting,
//! either deletion policy), the action annotations and the values already handled, status (agent
//! id, active and retiring keys, mint intent, the Ready reason), the Secret (absent, ours,
//! unowned or someone else's; its key one of the agent's keys, junk or missing; its record
//! truthful, stale or with unreadable annotations), AgentLattice (up to three agents, ours or
//! not, active, halted or revoked, with up to four keys in any state and any last use), the
//! clock, the last remote check and the workloads that read the key — followed by a few rounds
//! of user actions, faults (an effect fails, or commits and loses its response) and crashes.
//! Each round is one reconcile on the test world of `world.rs`: plan, perform the one effect on
//! the model of both APIs, fold its result into `Observed` with `Observed::record`, plan again.
//!
//! The properties, checked at every step of every reconcile:
//! 1. the plan never revokes the key the Secret holds (`RevokeKey` of the key in `AL_API_KEY`);
//! 2. the plan never registers a second agent for one uid (a `Register` that creates an agent
//!    while a live agent linked to the uid exists that the operator can know of: named by status
//!    or by the record of a Secret it controls, or under the agent name it registers with —
//!    design §4's known limit is an unrecorded agent under another name);
//! 3. no key is ever written anywhere but the Secret's `AL_API_KEY`: not in an effect, an event,
//!    a failure message, status, the Secret's labels and annotations or another data field;
//! 4. the plan always ends: every reconcile settles within the executor's 32 steps, and once the
//!    faults stop a bounded number of reconciles reaches a quiet one (no Kubernetes write).
//!
//! `PROPTEST_CASES=n` runs more (or fewer) cases than the default.

use std::collections::BTreeMap;

use jiff::{SignedDuration, Timestamp};
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError};

use super::world::*;
use crate::crd::*;
use crate::plan::*;
use crate::secret::{self, KeyRecord, RetiringKey, SecretRecord, key_digest};

/// Cases per property: `PROPTEST_CASES` when set (to run long), else `default`.
pub(crate) fn cases(default: u32) -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// A reference to one of the generated agents (`agent % n`), or, for `None`, an id AgentLattice
/// does not know.
type AgentRef = Option<u8>;
/// A reference to one key of one generated agent.
type KeyRef = (u8, u8);

#[derive(Clone, Debug)]
struct KeySpec {
    /// 0 active, 1 deprecated, 2 revoked.
    status: u8,
    /// Minutes before `now` it was created.
    age: u32,
    /// Minutes before `now` it was last used.
    used: Option<u32>,
}

#[derive(Clone, Debug)]
struct AgentSpec {
    /// Linked to the resource's uid (and then named as the spec says).
    ours: bool,
    /// For an agent not ours: it has the resource's agent name (a name conflict).
    same_name: bool,
    /// 0 active, 1 halted, 2 revoked.
    status: u8,
    /// The registration of this agent is in AgentLattice's idempotency store under the
    /// resource's idempotency key, with a matching body (a replay returns it).
    replayable: bool,
    /// Its capabilities differ from the spec (drift).
    drifted: bool,
    keys: Vec<KeySpec>,
}

#[derive(Clone, Debug)]
enum DataKey {
    None,
    Key(KeyRef),
    Junk,
}

#[derive(Clone, Debug)]
enum RecordKey {
    None,
    /// The record describes this key truthfully (id, prefix, creation time, digest).
    Truthful(KeyRef),
    /// Only the key id survived.
    Damaged(KeyRef),
}

#[derive(Clone, Debug)]
struct RecordSpec {
    agent: Option<AgentRef>,
    key: RecordKey,
    /// (key, minutes before now, immediate)
    retiring: Vec<(KeyRef, u32, bool)>,
    /// 0 none, 1 a time, 2 unreadable.
    intent: u8,
    handled: (Option<u8>, Option<u8>, Option<u8>),
    /// Record annotations overwritten with arbitrary text: (which, text).
    corrupt: Vec<(u8, String)>,
}

#[derive(Clone, Debug)]
struct SecretSpec {
    /// 0 ours, 1 unowned, 2 controlled by another LatticeAgent.
    owner: u8,
    opaque: bool,
    data_key: DataKey,
    data_agent: Option<AgentRef>,
    base_url_current: bool,
    managed_label: bool,
    record: RecordSpec,
}

#[derive(Clone, Debug)]
struct StatusSpec {
    agent: Option<AgentRef>,
    active: Option<KeyRef>,
    /// (key, minutes before now, immediate, deprecated)
    retiring: Vec<(KeyRef, u32, bool, bool)>,
    intent: bool,
    handled: (Option<u8>, Option<u8>, Option<u8>),
    /// 0 none, 1 Ready, 2 AgentRevokedExternally, 3 Registering.
    ready: u8,
}

#[derive(Clone, Debug)]
struct ResourceSpec {
    /// 0 default, 1 a custom valid name, 2 an invalid name.
    agent_name: u8,
    capabilities: Vec<u8>,
    suspend: bool,
    interval: bool,
    adopt: bool,
    retain: bool,
    /// rotate, compromised, reregister annotation values.
    annotations: (Option<u8>, Option<u8>, Option<u8>),
    skip_revoke: bool,
    deleting: bool,
    malformed: bool,
    older_claimant: bool,
}

#[derive(Clone, Debug)]
struct ConsumerSpec {
    kind: u8,
    reads: u8,
    restarted_for: Option<KeyRef>,
    /// 0 complete, 1 in progress, 2 stuck.
    rollout: u8,
}

#[derive(Clone, Debug)]
struct Round {
    /// 0–9: a user action (see `act`); other values: none.
    action: u8,
    /// (effect kind, lose the response after commit instead of failing before it).
    fault: Option<(u8, bool)>,
    /// The process dies right after this action (1-based) committed.
    crash: Option<u8>,
    /// Minutes the clock advances after the round.
    advance: u16,
}

#[derive(Clone, Debug)]
struct Scenario {
    resource: ResourceSpec,
    agents: Vec<AgentSpec>,
    secret: Option<SecretSpec>,
    status: StatusSpec,
    consumers: Vec<ConsumerSpec>,
    /// Workloads watched, restarts allowed.
    tracked: bool,
    restarts: bool,
    /// Minutes after t0.
    clock: u32,
    /// Minutes before `now` the process last read the agent.
    last_check: Option<u16>,
    rounds: Vec<Round>,
}

fn key_ref() -> impl Strategy<Value = KeyRef> {
    (any::<u8>(), any::<u8>())
}

fn agent_ref() -> impl Strategy<Value = AgentRef> {
    prop_oneof![4 => any::<u8>().prop_map(Some), 1 => Just(None)]
}

fn small() -> impl Strategy<Value = Option<u8>> {
    proptest::option::of(0u8..3)
}

fn key_spec() -> impl Strategy<Value = KeySpec> {
    (
        prop_oneof![3 => Just(0u8), 1 => Just(1u8), 1 => Just(2u8)],
        0u32..60 * 24 * 40,
        proptest::option::of(0u32..60 * 30),
    )
        .prop_map(|(status, age, used)| KeySpec { status, age, used })
}

fn agent_spec() -> impl Strategy<Value = AgentSpec> {
    (
        any::<bool>(),
        any::<bool>(),
        prop_oneof![3 => Just(0u8), 1 => Just(1u8), 1 => Just(2u8)],
        any::<bool>(),
        any::<bool>(),
        proptest::collection::vec(key_spec(), 1..=4),
    )
        .prop_map(
            |(ours, same_name, status, replayable, drifted, keys)| AgentSpec {
                ours,
                same_name,
                status,
                replayable,
                drifted,
                keys,
            },
        )
}

fn record_spec() -> impl Strategy<Value = RecordSpec> {
    (
        proptest::option::of(agent_ref()),
        prop_oneof![
            1 => Just(RecordKey::None),
            4 => key_ref().prop_map(RecordKey::Truthful),
            1 => key_ref().prop_map(RecordKey::Damaged),
        ],
        proptest::collection::vec((key_ref(), 0u32..60 * 48, any::<bool>()), 0..3),
        prop_oneof![3 => Just(0u8), 1 => Just(1u8), 1 => Just(2u8)],
        (small(), small(), small()),
        proptest::collection::vec((any::<u8>(), ".{0,24}"), 0..2),
    )
        .prop_map(
            |(agent, key, retiring, intent, handled, corrupt)| RecordSpec {
                agent,
                key,
                retiring,
                intent,
                handled,
                corrupt,
            },
        )
}

fn secret_spec() -> impl Strategy<Value = SecretSpec> {
    (
        prop_oneof![4 => Just(0u8), 1 => Just(1u8), 1 => Just(2u8)],
        prop_oneof![5 => Just(true), 1 => Just(false)],
        prop_oneof![
            1 => Just(DataKey::None),
            6 => key_ref().prop_map(DataKey::Key),
            1 => Just(DataKey::Junk),
        ],
        proptest::option::of(agent_ref()),
        prop_oneof![5 => Just(true), 1 => Just(false)],
        any::<bool>(),
        record_spec(),
    )
        .prop_map(
            |(owner, opaque, data_key, data_agent, base_url_current, managed_label, record)| {
                SecretSpec {
                    owner,
                    opaque,
                    data_key,
                    data_agent,
                    base_url_current,
                    managed_label,
                    record,
                }
            },
        )
}

fn status_spec() -> impl Strategy<Value = StatusSpec> {
    (
        proptest::option::of(agent_ref()),
        proptest::option::of(key_ref()),
        proptest::collection::vec(
            (key_ref(), 0u32..60 * 48, any::<bool>(), any::<bool>()),
            0..3,
        ),
        prop_oneof![4 => Just(false), 1 => Just(true)],
        (small(), small(), small()),
        0u8..4,
    )
        .prop_map(
            |(agent, active, retiring, intent, handled, ready)| StatusSpec {
                agent,
                active,
                retiring,
                intent,
                handled,
                ready,
            },
        )
}

fn resource_spec() -> impl Strategy<Value = ResourceSpec> {
    (
        prop_oneof![6 => Just(0u8), 2 => Just(1u8), 1 => Just(2u8)],
        proptest::collection::vec(0u8..4, 0..3),
        prop_oneof![4 => Just(false), 1 => Just(true)],
        any::<bool>(),
        prop_oneof![4 => Just(false), 1 => Just(true)],
        any::<bool>(),
        (small(), small(), small()),
        prop_oneof![6 => Just(false), 1 => Just(true)],
        prop_oneof![3 => Just(false), 1 => Just(true)],
        prop_oneof![12 => Just(false), 1 => Just(true)],
        prop_oneof![8 => Just(false), 1 => Just(true)],
    )
        .prop_map(
            |(
                agent_name,
                capabilities,
                suspend,
                interval,
                adopt,
                retain,
                annotations,
                skip_revoke,
                deleting,
                malformed,
                older_claimant,
            )| ResourceSpec {
                agent_name,
                capabilities,
                suspend,
                interval,
                adopt,
                retain,
                annotations,
                skip_revoke,
                deleting,
                malformed,
                older_claimant,
            },
        )
}

fn consumer_spec() -> impl Strategy<Value = ConsumerSpec> {
    (0u8..3, 0u8..3, proptest::option::of(key_ref()), 0u8..3).prop_map(
        |(kind, reads, restarted_for, rollout)| ConsumerSpec {
            kind,
            reads,
            restarted_for,
            rollout,
        },
    )
}

fn round() -> impl Strategy<Value = Round> {
    (
        0u8..16,
        proptest::option::of((any::<u8>(), any::<bool>())),
        prop_oneof![3 => Just(None), 1 => (1u8..8).prop_map(Some)],
        prop_oneof![2 => Just(0u16), 2 => 1u16..30, 1 => 30u16..60 * 30],
    )
        .prop_map(|(action, fault, crash, advance)| Round {
            action,
            fault,
            crash,
            advance,
        })
}

fn scenario() -> impl Strategy<Value = Scenario> {
    (
        resource_spec(),
        proptest::collection::vec(agent_spec(), 0..=3),
        prop_oneof![1 => Just(None), 4 => secret_spec().prop_map(Some)],
        status_spec(),
        proptest::collection::vec(consumer_spec(), 0..=2),
        any::<bool>(),
        any::<bool>(),
        0u32..60 * 24 * 60,
        proptest::option::of(0u16..60 * 24),
        proptest::collection::vec(round(), 1..=5),
    )
        .prop_map(
            |(
                resource,
                agents,
                secret,
                status,
                consumers,
                tracked,
                restarts,
                clock,
                last_check,
                rounds,
            )| Scenario {
                resource,
                agents,
                secret,
                status,
                consumers,
                tracked,
                restarts,
                clock,
                last_check,
                rounds,
            },
        )
}

const CAPABILITIES: [&str; 4] = [
    "deploy.staging",
    "rollback.staging",
    "read.logs",
    "deploy.prod",
];

/// Effect kinds a fault can hit.
const KINDS: [&str; 14] = [
    "Register",
    "FindAgents",
    "FetchAgent",
    "FetchKeys",
    "UpdateAgent",
    "HaltAgent",
    "ResumeAgent",
    "RevokeAgent",
    "MintKey",
    "DeprecateKey",
    "RevokeKey",
    "WriteSecret",
    "WriteStatus",
    "RestartConsumer",
];

/// The starting state a scenario describes, and the malformation the watch would report.
struct Built {
    world: World,
    malformed: Option<String>,
}

fn ago(now: Timestamp, minutes: u32) -> Timestamp {
    schedule::add(now, mins(-i64::from(minutes)))
}

fn label(n: u8) -> String {
    format!("v{n}")
}

fn build(s: &Scenario) -> Built {
    let r = &s.resource;
    let mut res = resource();
    let now = schedule::add(t0(), mins(i64::from(s.clock)));
    res.spec.agent_name = match r.agent_name {
        0 => None,
        1 => Some("payments-deployer".into()),
        _ => Some("Not A Valid Name!".into()),
    };
    let mut caps: Vec<String> = r
        .capabilities
        .iter()
        .map(|c| CAPABILITIES[usize::from(*c) % CAPABILITIES.len()].to_owned())
        .collect();
    caps.sort();
    caps.dedup();
    res.spec.capabilities = caps.clone();
    res.spec.suspend = r.suspend;
    if r.interval {
        res.spec.rotation.interval = Some("2h".into());
    }
    if r.adopt {
        res.spec.secret_policy = SecretPolicy::Adopt;
    }
    if r.retain {
        res.spec.deletion_policy = DeletionPolicy::Retain;
    }
    let annotations = res.metadata.annotations.get_or_insert_with(BTreeMap::new);
    for (key, value) in [
        (ROTATE_ANNOTATION, r.annotations.0),
        (COMPROMISED_ANNOTATION, r.annotations.1),
        (REREGISTER_ANNOTATION, r.annotations.2),
    ] {
        if let Some(v) = value {
            annotations.insert(key.to_owned(), label(v));
        }
    }
    if r.skip_revoke {
        annotations.insert(SKIP_REVOKE_ANNOTATION.to_owned(), "true".to_owned());
    }
    if r.deleting {
        res.metadata.deletion_timestamp = Some(Time(ago(now, 1)));
    }
    let agent_name = validate::effective_agent_name(&res);

    let mut w = World::new(res.clone());
    w.now = now;
    w.settings.consumers.tracked = s.tracked;
    w.settings.consumers.restarts = s.restarts;
    w.last_remote_check = s.last_check.map(|m| ago(now, u32::from(m)));
    w.older_claimant = r.older_claimant.then(|| "deploy-bot-older".to_owned());

    // The registration body the planner sends for this spec, for replayable agents.
    let register = match World::new(res.clone()).first_step() {
        Step::Perform {
            effect:
                Effect::Register {
                    request,
                    idempotency_key,
                },
            ..
        } => Some((request, idempotency_key)),
        _ => None,
    };

    // AgentLattice: at most one non-revoked agent per name, as AgentLattice has it.
    let mut agents: Vec<String> = Vec::new();
    for a in &s.agents {
        // An agent of ours under another name: registered before `spec.agentName` changed.
        let name = match (a.ours, a.same_name) {
            (true, false) => format!("{agent_name}-before-{}", agents.len()),
            (true, true) | (false, true) => agent_name.clone(),
            (false, false) => format!("someone-else-{}", agents.len()),
        };
        let taken =
            w.al.agents
                .values()
                .any(|x| x.view.name == name && x.view.status != AgentStatus::Revoked);
        let uid = if a.ours {
            Some(UID)
        } else {
            Some("another-uid")
        };
        let created = ago(now, a.keys.first().map_or(0, |k| k.age));
        let id = w.al.create_agent(&name, uid, created);
        let mut status = a.status;
        if taken {
            status = 2;
        }
        {
            let agent = w.al.agent_mut(&id);
            agent.view.capabilities = if a.drifted {
                vec!["something.else".into()]
            } else {
                caps.clone()
            };
            agent.view.description = res.spec.description.clone();
            if a.ours {
                agent.view.metadata.extend([
                    (META_NAMESPACE.to_owned(), "payments".to_owned()),
                    (META_NAME.to_owned(), "deploy-bot".to_owned()),
                ]);
            }
        }
        for k in a.keys.iter().skip(1) {
            let (view, plain) = w.al.new_key(ago(now, k.age));
            w.al.agent_mut(&id).keys.push((view, plain));
        }
        for (i, k) in a.keys.iter().enumerate() {
            let (view, _) = &mut w.al.agent_mut(&id).keys[i];
            view.last_used_at = k.used.map(|u| ago(now, u.min(k.age)));
            match k.status {
                1 => {
                    view.status = KeyStatus::Deprecated;
                    view.deprecated_at = Some(ago(now, k.age / 2));
                }
                2 => {
                    view.status = KeyStatus::Revoked;
                    view.revoked_at = Some(ago(now, k.age / 2));
                }
                _ => {}
            }
        }
        // AgentLattice keeps an agent's last live key.
        let agent = w.al.agent_mut(&id);
        if agent
            .keys
            .iter()
            .all(|(k, _)| k.status == KeyStatus::Revoked)
        {
            let (k, _) = &mut agent.keys[0];
            k.status = KeyStatus::Active;
            k.revoked_at = None;
        }
        match status {
            1 => w.al.agent_mut(&id).view.status = AgentStatus::Halted,
            2 => w.al.revoke_agent(&id, ago(now, 1)),
            _ => {}
        }
        // A replay returns the agent registered with the current body, so under the current
        // name (agents are not renamed).
        if a.ours
            && a.replayable
            && name == agent_name
            && let Some((request, idempotency_key)) = &register
            && !w.al.idempotency.contains_key(idempotency_key)
        {
            let mut caps = request.capabilities.clone();
            caps.sort();
            let body = format!(
                "{}|{:?}|{:?}|{:?}",
                request.name, request.description, caps, request.metadata
            );
            let first_key = w.al.agent(&id).keys[0].0.id.clone();
            w.al.idempotency
                .insert(idempotency_key.clone(), (id.clone(), body, first_key));
        }
        agents.push(id);
    }

    let agent_id = |r: &AgentRef| -> String {
        match r {
            Some(i) if !agents.is_empty() => agents[usize::from(*i) % agents.len()].clone(),
            _ => "agent-unknown".to_owned(),
        }
    };
    let key = |w: &World, (a, k): &KeyRef| -> Option<(String, KeyView, String)> {
        if agents.is_empty() {
            return None;
        }
        let id = &agents[usize::from(*a) % agents.len()];
        let keys = &w.al.agent(id).keys;
        let (view, plain) = &keys[usize::from(*k) % keys.len()];
        Some((id.clone(), view.clone(), plain.clone()))
    };

    if let Some(sec) = &s.secret {
        let mut data = BTreeMap::new();
        match &sec.data_key {
            DataKey::None => {}
            DataKey::Key(k) => {
                if let Some((_, _, plain)) = key(&w, k) {
                    data.insert(
                        secret::API_KEY_FIELD.to_owned(),
                        ByteString(plain.into_bytes()),
                    );
                }
            }
            DataKey::Junk => {
                data.insert(
                    secret::API_KEY_FIELD.to_owned(),
                    ByteString(b"pasted by hand".to_vec()),
                );
            }
        }
        if let Some(a) = &sec.data_agent {
            data.insert(
                secret::AGENT_ID_FIELD.to_owned(),
                ByteString(agent_id(a).into_bytes()),
            );
        }
        let base = if sec.base_url_current {
            BASE_URL
        } else {
            "http://old.example"
        };
        data.insert(
            secret::BASE_URL_FIELD.to_owned(),
            ByteString(base.as_bytes().to_vec()),
        );
        let rec = &sec.record;
        let handled = |h: &(Option<u8>, Option<u8>, Option<u8>)| HandledAnnotations {
            rotate: h.0.map(label),
            compromised: h.1.map(label),
            reregister: h.2.map(label),
        };
        let record_key = match &rec.key {
            RecordKey::None => None,
            RecordKey::Truthful(k) | RecordKey::Damaged(k) => key(&w, k),
        };
        let mut record = SecretRecord {
            agent_id: rec.agent.as_ref().map(agent_id),
            key: match (&rec.key, &record_key) {
                (RecordKey::Truthful(_), Some((_, view, plain))) => Some(KeyRecord {
                    id: view.id.clone(),
                    prefix: view.prefix.clone(),
                    created_at: view.created_at,
                    sha256: key_digest(plain.as_bytes()),
                }),
                _ => None,
            },
            retiring: rec
                .retiring
                .iter()
                .filter_map(|(k, since, immediate)| {
                    key(&w, k).map(|(_, view, _)| RetiringKey {
                        id: view.id,
                        prefix: view.prefix,
                        since: ago(now, *since),
                        immediate: *immediate,
                    })
                })
                .collect(),
            handled: handled(&rec.handled),
            mint_started_at: (rec.intent == 1).then(|| ago(now, 3)),
        };
        record.retiring.dedup_by(|a, b| a.id == b.id);
        let mut annotations = record.to_annotations();
        if let (RecordKey::Damaged(_), Some((_, view, _))) = (&rec.key, &record_key) {
            annotations.insert(secret::KEY_ID_ANNOTATION.to_owned(), view.id.clone());
        }
        if rec.intent == 2 {
            annotations.insert(
                secret::MINT_STARTED_AT_ANNOTATION.to_owned(),
                "yesterday".to_owned(),
            );
        }
        for (which, text) in &rec.corrupt {
            let name =
                secret::RECORD_ANNOTATIONS[usize::from(*which) % secret::RECORD_ANNOTATIONS.len()];
            annotations.insert(name.to_owned(), text.clone());
        }
        let mut labels = BTreeMap::new();
        if sec.managed_label {
            labels.insert(
                secret::MANAGED_BY_LABEL.to_owned(),
                secret::MANAGED_BY_VALUE.to_owned(),
            );
            labels.insert(secret::AGENT_NAME_LABEL.to_owned(), agent_name.clone());
        }
        let owner = match sec.owner {
            0 => Some(secret::owner_reference("deploy-bot", UID)),
            1 => None,
            _ => Some(secret::owner_reference("deploy-bot", "an-earlier-uid")),
        };
        w.secret = Some(Secret {
            metadata: ObjectMeta {
                name: Some(validate::effective_secret_name(&res)),
                namespace: Some("payments".into()),
                resource_version: Some("50".into()),
                labels: Some(labels),
                annotations: Some(annotations),
                owner_references: owner.map(|o| vec![o]),
                ..Default::default()
            },
            type_: Some(
                if sec.opaque {
                    "Opaque"
                } else {
                    "kubernetes.io/tls"
                }
                .into(),
            ),
            data: Some(data),
            ..Default::default()
        });
    }

    let st = &s.status;
    let mut status = LatticeAgentStatus {
        agent_id: st.agent.as_ref().map(agent_id),
        active_key: st
            .active
            .as_ref()
            .and_then(|k| key(&w, k))
            .map(|(_, v, _)| ActiveKeyStatus {
                id: v.id,
                prefix: v.prefix,
                created_at: v.created_at,
            }),
        retiring_keys: st
            .retiring
            .iter()
            .filter_map(|(k, since, immediate, deprecated)| {
                key(&w, k).map(|(_, v, _)| {
                    let since = ago(now, *since);
                    RetiringKeyStatus {
                        id: v.id,
                        prefix: v.prefix,
                        retiring_since: since,
                        deprecated_at: deprecated.then_some(since),
                        last_used_at: v.last_used_at,
                        revoke_after: schedule::add(since, mins(10)),
                        revoke_by: schedule::add(since, hours(24)),
                        immediate: *immediate,
                    }
                })
            })
            .collect(),
        mint_started_at: st.intent.then(|| ago(now, 2)),
        handled: HandledAnnotations {
            rotate: st.handled.0.map(label),
            compromised: st.handled.1.map(label),
            reregister: st.handled.2.map(label),
        },
        ..Default::default()
    };
    status.retiring_keys.dedup_by(|a, b| a.id == b.id);
    // Status says `AgentRevokedExternally` only of an agent the operator saw revoked, and
    // revocation is terminal: the planner trusts it without a read. Not of a live agent, then.
    let named_live = status
        .agent_id
        .as_ref()
        .and_then(|id| w.al.agents.get(id))
        .is_some_and(|a| a.view.status != AgentStatus::Revoked);
    let ready = match st.ready {
        2 if named_live => None,
        1 => Some((true, "AgentReady")),
        2 => Some((false, "AgentRevokedExternally")),
        3 => Some((false, "Registering")),
        _ => None,
    };
    if let Some((ok, reason)) = ready {
        status.conditions.push(condition(
            &[],
            READY,
            ok,
            reason,
            String::new(),
            Some(1),
            ago(now, 5),
        ));
    }
    w.res_mut().status = Some(status);

    for (i, c) in s.consumers.iter().enumerate() {
        let restarted_for = c
            .restarted_for
            .as_ref()
            .and_then(|k| key(&w, k))
            .map(|(_, v, _)| (v.id, Some(ago(now, 30))));
        w.consumers.push(Consumer {
            kind: WorkloadKind::ALL[usize::from(c.kind) % 3],
            name: format!("app-{i}"),
            reads: [
                KeySource::Environment,
                KeySource::File,
                KeySource::SubPathFile,
            ][usize::from(c.reads) % 3],
            created_at: Some(schedule::add(t0(), hours(-1))),
            restarted_for,
            restarted_at: None,
            rollout: [Rollout::Complete, Rollout::InProgress, Rollout::Stuck]
                [usize::from(c.rollout) % 3],
        });
    }

    Built {
        world: w,
        malformed: r
            .malformed
            .then(|| "spec.capabilities: invalid type: integer, expected a sequence".to_owned()),
    }
}

/// A user (or another actor) changes the world between reconciles.
fn act(w: &mut World, action: u8, n: usize) {
    if w.resource.is_none() {
        return;
    }
    match action {
        0 => w.annotate(ROTATE_ANNOTATION, &format!("round-{n}")),
        1 => w.annotate(COMPROMISED_ANNOTATION, &format!("round-{n}")),
        2 => w.secret = None,
        3 => {
            w.workload_uses_key();
        }
        4 => w.res_mut().status = None,
        5 => {
            let agent = w.status().agent_id;
            if let Some(agent) = agent.filter(|a| w.al.agents.contains_key(a)) {
                let now = w.now;
                w.al.revoke_agent(&agent, now);
            }
        }
        6 => w.annotate(REREGISTER_ANNOTATION, &format!("round-{n}")),
        7 => w.edit_spec(|s| s.suspend = !s.suspend),
        8 => w.delete(),
        9 => w.roll_out(),
        _ => {}
    }
}

/// Every key AgentLattice ever issued in this world.
fn plaintexts(w: &World) -> Vec<String> {
    w.al.agents
        .values()
        .flat_map(|a| a.keys.iter().map(|(_, p)| p.clone()))
        .collect()
}

/// Property 3: `text` (something the operator writes or says) holds no key.
fn no_key_in(w: &World, what: &str, text: &str) -> Result<(), TestCaseError> {
    if text.contains("al_agent_") {
        return Err(TestCaseError::fail(format!(
            "key material in {what}: {text}"
        )));
    }
    for p in plaintexts(w) {
        let body = p.trim_start_matches("al_agent_");
        if text.contains(body) {
            return Err(TestCaseError::fail(format!("a key in {what}: {text}")));
        }
    }
    Ok(())
}

/// Property 3 on the stored objects: status, the Secret's metadata and data fields other than
/// `AL_API_KEY`.
fn no_key_stored(w: &World) -> Result<(), TestCaseError> {
    if let Some(res) = &w.resource {
        let status = serde_json::to_string(&res.status).unwrap_or_default();
        no_key_in(w, "status", &status)?;
    }
    if let Some(s) = &w.secret {
        let meta = serde_json::to_string(&s.metadata).unwrap_or_default();
        no_key_in(w, "the Secret's metadata", &meta)?;
        for (field, value) in s.data.iter().flatten() {
            if field != secret::API_KEY_FIELD {
                no_key_in(
                    w,
                    &format!("Secret field {field}"),
                    &String::from_utf8_lossy(&value.0),
                )?;
            }
        }
    }
    Ok(())
}

/// One reconcile as the executor runs it (`World::run_with_crash`), checking properties 1–4 at
/// every step.
fn reconcile(
    w: &mut World,
    malformed: Option<&str>,
    crash_after: Option<usize>,
) -> Result<Run, TestCaseError> {
    let mut o = w.observe();
    o.malformed = malformed.map(str::to_owned);
    let mut held = BTreeMap::new();
    let mut run = Run {
        actions: Vec::new(),
        events: Vec::new(),
        end: End::Crashed,
    };
    for _ in 0..crate::reconcile::execute::MAX_STEPS {
        let step = next_step(&o);
        no_key_in(w, "a planned step", &format!("{step:?}"))?;
        match step {
            Step::Perform {
                effect: Effect::RemoveFinalizer,
                events,
            } => {
                run.events.extend(events);
                w.release();
                run.end = End::Released;
                return Ok(run);
            }
            Step::Perform { effect, events } => {
                if let Effect::RevokeKey { agent_id, key_id } = &effect
                    && let Some(held_key) = w.secret_key()
                {
                    let in_secret = w.al.agents.get(agent_id).is_some_and(|a| {
                        a.keys.iter().any(|(k, p)| {
                            &k.id == key_id && *p == held_key && k.status != KeyStatus::Revoked
                        })
                    });
                    prop_assert!(
                        !in_secret,
                        "planned to revoke key {key_id}, the key the Secret holds (after {:?})",
                        run.kinds()
                    );
                }
                // The live agents of this uid that the operator can know of: named by status or
                // by the record of a Secret it controls, or carrying the agent name it registers
                // under. (One under
                // another name that nothing records is the known limit of design §4: an
                // unrecorded registration is found again by its name only.)
                let findable: Vec<String> = {
                    let name = validate::effective_agent_name(w.res());
                    // The Secret's record counts only on a Secret this resource controls: the
                    // record of any other is not trusted (design §2).
                    let ours = w.secret.as_ref().is_some_and(|s| {
                        s.metadata
                            .owner_references
                            .iter()
                            .flatten()
                            .any(|r| r.controller == Some(true) && r.uid == UID)
                    });
                    let recorded = [
                        w.status().agent_id,
                        w.secret_annotation(secret::AGENT_ID_ANNOTATION)
                            .filter(|_| ours),
                    ];
                    w.al.live_agents_of(UID)
                        .into_iter()
                        .filter(|a| {
                            a.view.name == name || recorded.contains(&Some(a.view.id.clone()))
                        })
                        .map(|a| a.view.id.clone())
                        .collect()
                };
                let result = w.perform(&effect, &mut held);
                if let (Effect::Register { .. }, Ok(Outcome::Registered(created))) =
                    (&effect, &result)
                    && matches!(created, RegisterOutcome::Created { .. })
                {
                    prop_assert!(
                        findable.is_empty(),
                        "registered a second agent for the uid while {findable:?} live \
                         (after {:?})",
                        run.kinds()
                    );
                }
                run.actions.push(effect.clone());
                no_key_stored(w)?;
                if crash_after == Some(run.actions.len()) {
                    run.end = End::Crashed;
                    return Ok(run);
                }
                if result.is_ok() {
                    run.events.extend(events);
                }
                o.record(&effect, result);
            }
            Step::Settle(settled) => {
                if settled.remote_checked {
                    w.last_remote_check = Some(w.now);
                }
                run.end = End::Settled(settled);
                return Ok(run);
            }
        }
    }
    Err(TestCaseError::fail(format!(
        "the reconcile did not settle in {} steps: {:?}",
        crate::reconcile::execute::MAX_STEPS,
        run.kinds()
    )))
}

/// Drives a scenario: its rounds, then reconciles without faults until one is quiet.
fn drive(s: &Scenario) -> Result<(), TestCaseError> {
    let Built {
        world: mut w,
        malformed,
    } = build(s);
    for (n, round) in s.rounds.iter().enumerate() {
        act(&mut w, round.action, n);
        if w.resource.is_none() {
            return Ok(());
        }
        if let Some((kind, lose)) = round.fault {
            let kind = KINDS[usize::from(kind) % KINDS.len()];
            w.faults.push(if lose {
                Fault::LoseResponse(kind)
            } else {
                Fault::Fail(kind, ErrorClass::Unavailable { retry_after: None })
            });
        }
        reconcile(&mut w, malformed.as_deref(), round.crash.map(usize::from))?;
        w.faults.clear();
        w.advance(mins(i64::from(round.advance)));
    }
    // The faults stop: a bounded number of reconciles reaches a quiet one, now and once more
    // after a resync interval (when what only a drift read can see is seen).
    for _ in 0..2 {
        let mut quiet = false;
        let mut trace = Vec::new();
        for _ in 0..12 {
            if w.resource.is_none() {
                return Ok(());
            }
            w.roll_out();
            let run = reconcile(&mut w, malformed.as_deref(), None)?;
            trace.push(run.kinds());
            if run.kube_writes() == 0 && matches!(run.end, End::Settled(_)) {
                quiet = true;
                break;
            }
            w.advance(SignedDuration::from_secs(1));
        }
        prop_assert!(quiet, "no quiet reconcile in 12 without faults: {trace:?}");
        w.advance(mins(11));
    }
    Ok(())
}

proptest! {
    #![proptest_config(Config { cases: cases(256), failure_persistence: None, ..Config::default() })]

    /// Properties 1–4 for arbitrary starting states, user actions, faults and crashes.
    #[test]
    fn the_planner_keeps_its_promises_from_any_state(s in scenario()) {
        drive(&s)?;
    }
}
