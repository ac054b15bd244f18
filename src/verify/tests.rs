//! The check on hand-made observations: one where the invariant holds, and each violation
//! injected into it.

use std::collections::BTreeMap;

use jiff::Timestamp;
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, ObjectMeta, Time};
use zeroize::Zeroizing;

use super::*;
use crate::crd::{LatticeAgentStatus, RetiringKeyStatus};
use crate::secret::owner_reference;

const UID: &str = "uid-1";
const KEY: &str = "al_agent_AbCdEfGhIjKlMnOpQrStUvWxYz0123456789ABCD";

fn now() -> Timestamp {
    "2026-12-07T12:00:00Z".parse().expect("time")
}

fn resource() -> LatticeAgent {
    let mut r: LatticeAgent = crate::yaml::from_str(
        r#"
apiVersion: agentlattice.io/v1alpha1
kind: LatticeAgent
metadata: {name: bot, namespace: payments, uid: uid-1}
spec: {capabilities: [deploy.staging]}
"#,
    )
    .expect("fixture");
    r.status = Some(LatticeAgentStatus {
        conditions: vec![Condition {
            type_: "Ready".into(),
            status: "True".into(),
            reason: "AgentReady".into(),
            message: String::new(),
            observed_generation: None,
            last_transition_time: Time(now()),
        }],
        agent_id: Some("agent-1".into()),
        secret_name: Some("bot-agent-key".into()),
        ..Default::default()
    });
    r
}

fn secret() -> Secret {
    Secret {
        metadata: ObjectMeta {
            name: Some("bot-agent-key".into()),
            namespace: Some("payments".into()),
            annotations: Some(BTreeMap::from([
                (AGENT_ID_ANNOTATION.to_owned(), "agent-1".to_owned()),
                (KEY_ID_ANNOTATION.to_owned(), "key-1".to_owned()),
            ])),
            owner_references: Some(vec![owner_reference("bot", UID)]),
            ..Default::default()
        },
        data: Some(BTreeMap::from([(
            API_KEY_FIELD.to_owned(),
            ByteString(KEY.as_bytes().to_vec()),
        )])),
        ..Default::default()
    }
}

fn agent(id: &str, uid: &str, keys: &[(&str, &str)]) -> RemoteAgent {
    RemoteAgent {
        id: id.into(),
        name: "payments-bot".into(),
        metadata: BTreeMap::from([
            (META_UID.to_owned(), uid.to_owned()),
            (META_NAMESPACE.to_owned(), "payments".to_owned()),
            (META_NAME.to_owned(), "bot".to_owned()),
        ]),
        status: "active".into(),
        keys: keys
            .iter()
            .map(|(id, status)| RemoteKey {
                key_id: (*id).into(),
                status: (*status).into(),
            })
            .collect(),
    }
}

/// A world where the invariant holds: one Ready LatticeAgent, its agent with the Secret's key and
/// a revoked old key, an event and a status without keys.
fn holds() -> Observation {
    Observation {
        now: now(),
        resources: vec![resource()],
        unparsed: vec![],
        secrets: vec![secret()],
        remote: RemoteState {
            agents: vec![agent(
                "agent-1",
                UID,
                &[("key-0", "revoked"), ("key-1", "active")],
            )],
        },
        whoami: BTreeMap::from([(
            "payments/bot-agent-key".to_owned(),
            Ok(Identity {
                agent_id: "agent-1".into(),
                key_id: Some("key-1".into()),
            }),
        )]),
        texts: vec![Text {
            location: "Event payments/bot.1".into(),
            content: "Registered registered agent payments-bot; key AbCdEfGh written".into(),
        }],
        keys: vec![Zeroizing::new(KEY.to_owned())],
    }
}

fn violations(o: &Observation) -> Vec<Violation> {
    check(o, &Options::default()).violations
}

#[test]
fn a_world_where_the_invariant_holds_passes() {
    let report = check(&holds(), &Options::default());
    assert!(report.holds(), "{report}");
    assert_eq!(report.ready, ["payments/bot"]);
    assert_eq!(report.live_agents, 1);
    assert!(report.to_string().ends_with("the invariant holds"));
}

#[test]
fn an_agent_revoked_out_of_band_is_reported() {
    let mut o = holds();
    o.remote.agents[0].status = "revoked".into();
    assert_eq!(
        violations(&o),
        [Violation::LiveAgents {
            resource: "payments/bot".into(),
            found: vec![]
        }]
    );
}

#[test]
fn a_second_live_agent_for_the_uid_is_reported() {
    let mut o = holds();
    o.remote
        .agents
        .push(agent("agent-2", UID, &[("key-9", "active")]));
    assert_eq!(
        violations(&o),
        [Violation::LiveAgents {
            resource: "payments/bot".into(),
            found: vec!["agent-1".into(), "agent-2".into()]
        }]
    );
}

#[test]
fn an_extra_key_minted_out_of_band_is_reported() {
    let mut o = holds();
    o.remote.agents[0].keys.push(RemoteKey {
        key_id: "key-2".into(),
        status: "active".into(),
    });
    assert_eq!(
        violations(&o),
        [Violation::UnaccountedKey {
            resource: "payments/bot".into(),
            agent: "agent-1".into(),
            key: "key-2".into()
        }]
    );
}

#[test]
fn a_retiring_key_is_accounted_for_until_its_revoke_by() {
    let mut o = holds();
    o.remote.agents[0].keys.push(RemoteKey {
        key_id: "key-0b".into(),
        status: "deprecated".into(),
    });
    let retiring = |revoke_by: Timestamp| RetiringKeyStatus {
        id: "key-0b".into(),
        prefix: "x".into(),
        retiring_since: now(),
        deprecated_at: None,
        last_used_at: None,
        revoke_after: now(),
        revoke_by,
        immediate: false,
    };
    let status = o.resources[0].status.as_mut().expect("status");
    status.retiring_keys = vec![retiring(now() + SignedDuration::from_mins(5))];
    assert_eq!(violations(&o), []);
    // Within the tolerance past revokeBy: still fine; beyond it: overdue.
    let late = now() - SignedDuration::from_secs(30);
    o.resources[0]
        .status
        .as_mut()
        .expect("status")
        .retiring_keys = vec![retiring(late)];
    assert_eq!(violations(&o), []);
    let overdue = now() - SignedDuration::from_mins(5);
    o.resources[0]
        .status
        .as_mut()
        .expect("status")
        .retiring_keys = vec![retiring(overdue)];
    assert_eq!(
        violations(&o),
        [Violation::OverdueKey {
            resource: "payments/bot".into(),
            key: "key-0b".into(),
            revoke_by: overdue
        }]
    );
}

#[test]
fn a_deleted_secret_is_reported() {
    let mut o = holds();
    o.secrets.clear();
    o.whoami.clear();
    assert_eq!(
        violations(&o),
        [Violation::SecretMissing {
            resource: "payments/bot".into(),
            secret: "bot-agent-key".into()
        }]
    );
}

#[test]
fn a_key_that_does_not_authenticate_as_the_agent_is_reported() {
    let mut o = holds();
    o.whoami.insert(
        "payments/bot-agent-key".into(),
        Err("AgentLattice whoami: HTTP 401 invalid_key".into()),
    );
    assert!(matches!(
        violations(&o).as_slice(),
        [Violation::KeyDoesNotWork { why, .. }] if why.contains("401")
    ));
    o.whoami.insert(
        "payments/bot-agent-key".into(),
        Ok(Identity {
            agent_id: "agent-9".into(),
            key_id: Some("key-1".into()),
        }),
    );
    assert!(matches!(
        violations(&o).as_slice(),
        [Violation::KeyDoesNotWork { why, .. }] if why.contains("agent-9")
    ));
    // The right agent, but not the key the record names.
    o.whoami.insert(
        "payments/bot-agent-key".into(),
        Ok(Identity {
            agent_id: "agent-1".into(),
            key_id: Some("key-7".into()),
        }),
    );
    o.remote.agents[0].keys.push(RemoteKey {
        key_id: "key-7".into(),
        status: "active".into(),
    });
    assert!(matches!(
        violations(&o).as_slice(),
        [Violation::KeyDoesNotWork { why, .. }, Violation::UnaccountedKey { key, .. }]
            if why.contains("key-7") && key == "key-1"
    ));
}

#[test]
fn status_and_secret_naming_another_agent_are_reported() {
    let mut o = holds();
    o.resources[0].status.as_mut().expect("status").agent_id = Some("agent-0".into());
    o.secrets[0]
        .metadata
        .annotations
        .as_mut()
        .expect("annotations")
        .insert(AGENT_ID_ANNOTATION.into(), "agent-0".into());
    assert_eq!(
        violations(&o),
        [
            Violation::StatusAgent {
                resource: "payments/bot".into(),
                status: Some("agent-0".into()),
                live: "agent-1".into()
            },
            Violation::SecretAgent {
                secret: "payments/bot-agent-key".into(),
                names: Some("agent-0".into()),
                live: "agent-1".into()
            }
        ]
    );
}

#[test]
fn a_deleted_resource_whose_agent_lives_on_is_reported_unless_retained() {
    let mut o = holds();
    o.resources.clear();
    o.whoami.clear();
    // Deleted with Revoke, but the agent is live: the Secret went with its owner.
    o.secrets.clear();
    assert_eq!(
        violations(&o),
        [Violation::OrphanAgent {
            agent: "agent-1".into(),
            owner: "payments/bot (uid uid-1)".into()
        }]
    );
    // Retained: the released Secret (no controller) still names it.
    let mut released = secret();
    released.metadata.owner_references = None;
    o.secrets.push(released);
    assert_eq!(violations(&o), []);
    // An agent not created by the operator (no k8s.uid) is none of its business.
    o.secrets.clear();
    o.remote.agents[0].metadata.clear();
    assert_eq!(violations(&o), []);
}

#[test]
fn a_resource_being_deleted_or_not_ready_is_not_held_to_the_ready_rules() {
    let mut o = holds();
    o.remote.agents[0].status = "revoked".into();
    o.resources[0].metadata.deletion_timestamp = Some(Time(now()));
    assert_eq!(violations(&o), []);
    let mut o = holds();
    o.remote.agents.clear();
    o.resources[0].status.as_mut().expect("status").conditions[0].status = "False".into();
    let report = check(&o, &Options::default());
    assert!(report.holds());
    assert!(report.ready.is_empty());
}

#[test]
fn key_material_in_a_text_is_reported_without_the_key() {
    let mut o = holds();
    o.texts.push(Text {
        location: "Event payments/bot.2".into(),
        content: format!("oops {KEY}"),
    });
    o.texts.push(Text {
        location: "log file operator.log line 3".into(),
        // Only the body: still the key.
        content: format!("token={}", &KEY[9..]),
    });
    o.texts.push(Text {
        location: "status of LatticeAgent payments/other".into(),
        // A key of another workspace, never read from a Secret: its shape gives it away.
        content: "al_svc_ZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZ".into(),
    });
    o.texts.push(Text {
        location: "metrics".into(),
        // The scheme alone, a short prefix, or what a Secret holds that is not shaped like a
        // key, is not a key.
        content: "keys start with al_agent_ and prefixes look like AbCd; pasted by hand".into(),
    });
    o.keys.push(Zeroizing::new("pasted by hand".into()));
    let v = violations(&o);
    assert_eq!(
        v,
        [
            Violation::KeyMaterial {
                location: "Event payments/bot.2".into()
            },
            Violation::KeyMaterial {
                location: "log file operator.log line 3".into()
            },
            Violation::KeyMaterial {
                location: "status of LatticeAgent payments/other".into()
            },
        ]
    );
    let report = check(&o, &Options::default()).to_string();
    assert!(!report.contains(&KEY[9..29]), "{report}");
    assert!(report.contains("3 violations"), "{report}");
}

#[test]
fn the_scope_limits_what_is_checked() {
    let mut o = holds();
    o.resources.clear();
    o.whoami.clear();
    o.secrets.clear();
    let elsewhere = Options {
        namespaces: vec!["other".into()],
        ..Options::default()
    };
    assert!(check(&o, &elsewhere).holds());
    let other_cluster = Options {
        cluster_name: Some("east".into()),
        ..Options::default()
    };
    assert!(check(&o, &other_cluster).holds());
    assert!(!check(&o, &Options::default()).holds());
}

#[test]
fn an_agent_at_alter_is_named_as_not_checked_rather_than_reported() {
    let mut o = holds();
    // Its agent is not at AgentLattice, and its Secret carries Alter's names.
    o.remote.agents.clear();
    o.whoami.clear();
    let data = o.secrets[0].data.as_mut().expect("data");
    let key = data.remove(API_KEY_FIELD).expect("key");
    data.insert(crate::secret::ALTER_FIELDS.api_key.to_owned(), key);
    let report = check(&o, &Options::default());
    assert!(report.holds(), "{report}");
    assert!(report.ready.is_empty());
    assert_eq!(report.other_backend, ["payments/bot"]);
    assert!(
        report
            .to_string()
            .contains("not checked (agents at Alter): payments/bot"),
        "{report}"
    );
}
