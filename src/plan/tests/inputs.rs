//! Fuzzing what comes from outside the operator (issue 16), with proptest: arbitrary LatticeAgent
//! specs through validation and the planner, arbitrary Secret contents through the Secret view,
//! the cache form and a whole reconcile, and arbitrary text with keys in it through the redaction.
//! Each asserts no panic and, where the code promises more, that promise (the cache form's
//! fingerprint, no key in anything planned, no key left after redaction).
//!
//! `PROPTEST_CASES=n` runs more (or fewer) cases than the default.

use std::collections::BTreeMap;

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use proptest::prelude::*;
use proptest::test_runner::Config;

use super::properties::cases;
use super::world::*;
use crate::crd::*;
use crate::plan::*;
use crate::secret::{self, SecretRecord, SecretView, cache_form, fingerprint};

/// A key of each scheme the operator knows, with a body drawn at random.
fn agentlattice_key() -> impl Strategy<Value = String> {
    (
        prop_oneof![Just("al_agent_"), Just("al_svc_")],
        "[A-Za-z0-9]{40}",
    )
        .prop_map(|(scheme, body)| format!("{scheme}{body}"))
}

/// Alter's key shapes (docs/alter.md): `alter_key_<40 of A-Za-z0-9-_>`,
/// `alter_rk_<22 of a-z2-7>_<6>` and `alter_ak_…`.
fn alter_key() -> impl Strategy<Value = String> {
    prop_oneof![
        "[A-Za-z0-9_-]{40}".prop_map(|b| format!("alter_key_{b}")),
        ("[a-z2-7]{22}", "[a-z2-7]{6}").prop_map(|(a, b)| format!("alter_rk_{a}_{b}")),
        ("[a-z2-7]{22}", "[a-z2-7]{6}").prop_map(|(a, b)| format!("alter_ak_{a}_{b}")),
    ]
}

fn any_key() -> impl Strategy<Value = String> {
    prop_oneof![agentlattice_key(), alter_key()]
}

/// Text around a key: anything, with a bias towards fragments of the schemes (which is where a
/// scanner that stops at the first match goes wrong).
fn surrounding() -> impl Strategy<Value = String> {
    prop_oneof![
        ".{0,16}",
        proptest::collection::vec(
            prop_oneof![
                Just("al_".to_owned()),
                Just("al_agent_".to_owned()),
                Just("al_svc_".to_owned()),
                Just("alter_".to_owned()),
                Just("alter_key_".to_owned()),
                Just("agent_".to_owned()),
                Just("_".to_owned()),
                Just("-".to_owned()),
                Just(" ".to_owned()),
                Just("\"".to_owned()),
                "[A-Za-z0-9]{1,4}",
            ],
            0..6
        )
        .prop_map(|parts| parts.concat()),
    ]
}

/// The part of a key that identifies it: its body (a redaction that keeps the scheme but drops
/// the body is fine; one that keeps the body is not).
fn body(key: &str) -> &str {
    for scheme in [
        "al_agent_",
        "al_svc_",
        "alter_key_",
        "alter_rk_",
        "alter_ak_",
    ] {
        if let Some(b) = key.strip_prefix(scheme) {
            return b;
        }
    }
    key
}

/// Arbitrary text for a string field: short or long, any characters, sometimes a key.
fn text() -> BoxedStrategy<String> {
    prop_oneof![
        4 => "[a-z0-9.-]{0,70}",
        2 => ".{0,40}",
        1 => "[a-zA-Z0-9._:/-]{60,300}",
        1 => (surrounding(), any_key(), surrounding()).prop_map(|(a, k, b)| format!("{a}{k}{b}")),
    ]
    .boxed()
}

fn duration() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => "([0-9]{1,6}(\\.[0-9]{1,3})?(ns|us|µs|ms|s|m|h|d)){1,3}",
        1 => "[0-9]{15,30}(h|d|s)",
        1 => ".{0,12}",
    ]
}

fn string_map() -> BoxedStrategy<BTreeMap<String, String>> {
    proptest::collection::btree_map(text(), text(), 0..4).boxed()
}

/// A LatticeAgent with every spec field arbitrary (what the Rust type accepts).
fn agent() -> impl Strategy<Value = LatticeAgent> {
    (
        (text(), text()),
        proptest::option::of(text()),
        proptest::option::of(text()),
        proptest::collection::vec(text(), 0..6),
        proptest::option::of(text()),
        (any::<bool>(), any::<bool>(), any::<bool>(), any::<bool>()),
        proptest::option::of((string_map(), string_map())),
        (proptest::option::of(duration()), duration(), duration()),
        proptest::collection::btree_map(
            prop_oneof![
                Just(ROTATE_ANNOTATION.to_owned()),
                Just(COMPROMISED_ANNOTATION.to_owned()),
                Just(REREGISTER_ANNOTATION.to_owned()),
                Just(SKIP_REVOKE_ANNOTATION.to_owned()),
                text(),
            ],
            text(),
            0..3,
        ),
        any::<bool>(),
    )
        .prop_map(
            |(
                (name, namespace),
                agent_name,
                description,
                capabilities,
                secret_name,
                (adopt, retain, suspend, restart),
                template,
                (interval, grace, max_grace),
                annotations,
                deleting,
            )| {
                let mut a = resource();
                a.metadata.name = Some(name);
                a.metadata.namespace = Some(namespace);
                a.metadata.annotations = Some(annotations);
                if deleting {
                    a.metadata.deletion_timestamp =
                        Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(t0()));
                }
                let s = &mut a.spec;
                s.agent_name = agent_name;
                s.description = description;
                s.capabilities = capabilities;
                s.secret_name = secret_name;
                s.secret_policy = if adopt {
                    SecretPolicy::Adopt
                } else {
                    SecretPolicy::Owned
                };
                s.deletion_policy = if retain {
                    DeletionPolicy::Retain
                } else {
                    DeletionPolicy::Revoke
                };
                s.suspend = suspend;
                s.restart_on_rotation = restart;
                s.secret_template = template.map(|(labels, annotations)| SecretTemplate {
                    labels,
                    annotations,
                });
                s.rotation = RotationSpec {
                    interval,
                    grace_period: grace,
                    max_grace_period: max_grace,
                };
                a
            },
        )
}

/// The first 20 characters of the body of every key planted anywhere in `value` (a generated
/// key's body has at least 28; 20 of them identify it).
fn planted_keys(value: &impl serde::Serialize) -> Vec<String> {
    let text = serde_json::to_string(value).unwrap_or_default();
    let mut keys = Vec::new();
    for scheme in [
        "al_agent_",
        "al_svc_",
        "alter_key_",
        "alter_rk_",
        "alter_ak_",
    ] {
        let mut start = 0;
        while let Some(i) = text[start..].find(scheme) {
            let at = start + i + scheme.len();
            let after = &text[at..];
            let len = after
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == '-'))
                .unwrap_or(after.len());
            if len >= 20 {
                keys.push(after[..20].to_owned());
            }
            start = at;
        }
    }
    keys
}

/// What the operator says about a resource in its own words, as it is published: the status it
/// writes (condition messages) and the events (redacted on publication, `events.rs`).
fn said(run: &Run) -> String {
    let mut out = String::new();
    for action in &run.actions {
        if let Effect::WriteStatus(status) = action {
            for c in &status.conditions {
                out.push_str(&c.message);
                out.push('\n');
            }
        }
    }
    for event in &run.events {
        out.push_str(&crate::redact::redact(&event.note));
        out.push('\n');
    }
    out
}

proptest! {
    #![proptest_config(Config { cases: cases(256), failure_persistence: None, ..Config::default() })]

    /// Every spec the Rust type accepts goes through validation and a whole reconcile without a
    /// panic and settles, and no status message or event repeats a key pasted into the spec or
    /// its annotations.
    #[test]
    fn any_spec_is_validated_and_planned_without_panic(a in agent()) {
        let _ = validate::validate(&a);
        let _ = validate::effective_agent_name(&a);
        let _ = validate::effective_secret_name(&a);
        let planted = planted_keys(&a);
        let mut w = World::new(a);
        // `run` panics if the reconcile does not settle within the executor's 32 steps.
        let run = w.run();
        let said = said(&run);
        for key in &planted {
            prop_assert!(!said.contains(key.as_str()), "a pasted key was repeated: {said}");
        }
    }

    /// Arbitrary JSON in a LatticeAgent's place: the type either rejects it or validation takes it.
    #[test]
    fn any_json_object_is_rejected_or_validated(json in json_agent()) {
        if let Ok(a) = serde_json::from_value::<LatticeAgent>(json) {
            let _ = validate::validate(&a);
        }
    }

    /// Durations: parsed or refused, never a panic, never a negative duration.
    #[test]
    fn any_duration_is_parsed_or_refused(d in prop_oneof![duration(), ".{0,40}"]) {
        if let Ok(parsed) = validate::parse_duration(&d) {
            prop_assert!(!parsed.is_negative(), "{d:?} parsed as {parsed:?}");
        }
    }

    /// Any Secret: viewed, cache-formed (no key left, the same fingerprint), patched and planned
    /// for without a panic; the reconcile settles and plans nothing that holds its key.
    #[test]
    fn any_secret_is_viewed_and_planned_without_panic(
        s in secret(),
        patch in json_value(),
        registered in any::<bool>(),
    ) {
        let key = s
            .data
            .as_ref()
            .and_then(|d| d.get(secret::API_KEY_FIELD))
            .map(|v| v.0.clone());
        let view = SecretView::observe(&s, UID);
        let cached = cache_form(s.clone());
        prop_assert_eq!(fingerprint(&s), fingerprint(&cached));
        if let Some(key) = &key
            && !key.starts_with(b"sha256:")
        {
            let kept = cached
                .data
                .as_ref()
                .and_then(|d| d.get(secret::API_KEY_FIELD))
                .map(|v| v.0.clone());
            prop_assert!(kept.as_ref() != Some(key), "the cache form kept the key");
        }
        prop_assert_eq!(SecretView::observe(&cached, UID), view.clone());
        if let Some(observed) = view.present() {
            let _ = observed.patched("payments", &patch);
        }
        let mut w = if registered { World::registered() } else { World::default() };
        w.secret = Some(s.clone());
        let run = w.run();
        // A key-shaped value (drawn from `agentlattice_key`) is never repeated by anything
        // planned: effects, events, the end of the reconcile.
        if let Some(key) = key.filter(|k| k.starts_with(b"al_") && k.len() > 40) {
            let said = format!("{:?} {:?} {:?}", run.actions, run.events, run.end);
            let key = String::from_utf8_lossy(&key).into_owned();
            prop_assert!(!said.contains(body(&key)), "the Secret's key was repeated: {said}");
        }
    }

    /// The record's annotations alone, with values close to valid ones.
    #[test]
    fn any_record_annotations_decode_without_panic(a in record_annotations()) {
        let decoded = SecretRecord::from_annotations(&a);
        // What decodes, encodes and decodes again to the same record.
        let again = SecretRecord::from_annotations(&decoded.record.to_annotations());
        prop_assert_eq!(again.record, decoded.record);
    }

    /// No key survives the redaction, wherever it sits in the text.
    #[test]
    fn redaction_leaves_no_key(
        parts in proptest::collection::vec((surrounding(), any_key()), 1..4),
        tail in surrounding(),
    ) {
        let mut text = String::new();
        for (before, key) in &parts {
            text.push_str(before);
            text.push_str(key);
        }
        text.push_str(&tail);
        let out = crate::redact::redact(&text);
        for (_, key) in &parts {
            prop_assert!(!out.contains(body(key)), "{text:?} redacted to {out:?}");
        }
    }

    /// Text without a key scheme is left alone.
    #[test]
    fn redaction_keeps_text_without_keys(text in "[^_]{0,60}") {
        prop_assert_eq!(crate::redact::redact(&text), text);
    }
}

fn json_value() -> impl Strategy<Value = serde_json::Value> {
    let leaf = prop_oneof![
        Just(serde_json::Value::Null),
        any::<bool>().prop_map(serde_json::Value::from),
        any::<i64>().prop_map(serde_json::Value::from),
        any::<f64>().prop_map(serde_json::Value::from),
        text().prop_map(serde_json::Value::from),
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..4).prop_map(serde_json::Value::from),
            proptest::collection::btree_map(text(), inner, 0..4)
                .prop_map(|m| serde_json::Value::Object(m.into_iter().collect())),
        ]
    })
}

/// A LatticeAgent-shaped JSON object whose fields hold arbitrary JSON.
fn json_agent() -> impl Strategy<Value = serde_json::Value> {
    let field =
        |name: &'static str| proptest::option::of(json_value()).prop_map(move |v| (name, v));
    (
        proptest::collection::vec(
            prop_oneof![
                field("agentName"),
                field("description"),
                field("capabilities"),
                field("secretName"),
                field("secretPolicy"),
                field("secretTemplate"),
                field("rotation"),
                field("deletionPolicy"),
                field("suspend"),
                field("restartOnRotation"),
            ],
            0..6,
        ),
        json_value(),
    )
        .prop_map(|(fields, status)| {
            let mut spec = serde_json::Map::new();
            for (name, value) in fields {
                if let Some(v) = value {
                    spec.insert(name.to_owned(), v);
                }
            }
            serde_json::json!({
                "apiVersion": "agentlattice.io/v1alpha1",
                "kind": "LatticeAgent",
                "metadata": {"name": "x", "namespace": "payments", "uid": UID},
                "spec": spec,
                "status": status,
            })
        })
}

fn timestamp_text() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("2026-11-23T10:00:00Z".to_owned()),
        Just("2026-11-23T10:00:00.123456789+02:00".to_owned()),
        "[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\\.[0-9]{1,9})?(Z|[+-][0-9]{2}:[0-9]{2})",
        ".{0,20}",
    ]
}

fn retiring_text() -> impl Strategy<Value = String> {
    prop_oneof![
        proptest::collection::vec(
            (text(), text(), timestamp_text(), any::<bool>()),
            0..3
        )
        .prop_map(|list| {
            let items: Vec<serde_json::Value> = list
                .into_iter()
                .map(|(id, prefix, since, immediate)| {
                    serde_json::json!({"id": id, "prefix": prefix, "since": since, "immediate": immediate})
                })
                .collect();
            serde_json::Value::from(items).to_string()
        }),
        json_value().prop_map(|v| v.to_string()),
        ".{0,30}",
    ]
}

// Boxed: the nested tuples of strategies otherwise make generation overflow a test thread's
// 2 MiB stack in debug builds (proptest's `new_tree` frames, not the code under test).
fn record_annotations() -> BoxedStrategy<BTreeMap<String, String>> {
    (
        proptest::option::of(text()),
        proptest::option::of(text()),
        proptest::option::of(text()),
        proptest::option::of(timestamp_text()),
        proptest::option::of(prop_oneof!["[0-9a-f]{16}", ".{0,20}"]),
        proptest::option::of(retiring_text()),
        (
            proptest::option::of(text()),
            proptest::option::of(text()),
            proptest::option::of(text()),
        ),
        proptest::option::of(timestamp_text()),
        string_map(),
    )
        .prop_map(
            |(agent, key, prefix, created, sha, retiring, (r, c, re), intent, extra)| {
                let mut a = extra;
                for (name, value) in [
                    (secret::AGENT_ID_ANNOTATION, agent),
                    (secret::KEY_ID_ANNOTATION, key),
                    (secret::KEY_PREFIX_ANNOTATION, prefix),
                    (secret::KEY_CREATED_AT_ANNOTATION, created),
                    (secret::KEY_SHA256_ANNOTATION, sha),
                    (secret::RETIRING_KEYS_ANNOTATION, retiring),
                    (secret::HANDLED_ROTATE_ANNOTATION, r),
                    (secret::HANDLED_COMPROMISED_ANNOTATION, c),
                    (secret::HANDLED_REREGISTER_ANNOTATION, re),
                    (secret::MINT_STARTED_AT_ANNOTATION, intent),
                ] {
                    if let Some(v) = value {
                        a.insert(name.to_owned(), v);
                    }
                }
                a
            },
        )
        .boxed()
}

fn bytes() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        proptest::collection::vec(any::<u8>(), 0..64),
        agentlattice_key().prop_map(String::into_bytes),
        "sha256:[0-9a-f]{0,20}".prop_map(String::into_bytes),
        text().prop_map(String::into_bytes),
    ]
}

fn owner() -> impl Strategy<Value = OwnerReference> {
    (
        prop_oneof![Just(UID.to_owned()), text()],
        text(),
        text(),
        proptest::option::of(any::<bool>()),
    )
        .prop_map(|(uid, kind, name, controller)| OwnerReference {
            api_version: "agentlattice.io/v1alpha1".into(),
            kind,
            name,
            uid,
            controller,
            block_owner_deletion: None,
        })
}

/// Any Secret of the fixture's name: data fields (the operator's three and others) with any
/// bytes, the record's annotations with near-valid values, any labels, owners and type.
fn secret() -> BoxedStrategy<Secret> {
    (
        proptest::collection::btree_map(
            prop_oneof![
                Just(secret::API_KEY_FIELD.to_owned()),
                Just(secret::AGENT_ID_FIELD.to_owned()),
                Just(secret::BASE_URL_FIELD.to_owned()),
                text(),
            ],
            bytes(),
            0..4,
        ),
        record_annotations(),
        string_map(),
        proptest::collection::vec(owner(), 0..3),
        proptest::option::of(prop_oneof![Just("Opaque".to_owned()), text()]),
        proptest::option::of(text()),
        proptest::option::of(any::<bool>()),
    )
        .prop_map(
            |(data, annotations, labels, owners, type_, rv, immutable)| Secret {
                metadata: ObjectMeta {
                    name: Some("deploy-bot-agent-key".into()),
                    namespace: Some("payments".into()),
                    resource_version: rv,
                    labels: Some(labels),
                    annotations: Some(annotations),
                    owner_references: Some(owners),
                    ..Default::default()
                },
                type_,
                immutable,
                data: Some(data.into_iter().map(|(k, v)| (k, ByteString(v))).collect()),
                ..Default::default()
            },
        )
        .boxed()
}
