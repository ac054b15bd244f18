//! The record, the view and the desired Secret on fixtures.

use std::collections::BTreeMap;

use jiff::Timestamp;
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};

use super::*;

use crate::crd::{HandledAnnotations, LatticeAgent, LatticeAgentSpec, SecretTemplate};

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
            fields: super::AGENTLATTICE_FIELDS,
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
    assert!(patch["metadata"]["annotations"].as_object().is_some_and(
        |a| !a.contains_key("foreign") && !a.contains_key(HANDLED_COMPROMISED_ANNOTATION)
    ));
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
