//! Provisioner policy in the decision order (docs/tenancy.md): a refusal is a condition and one
//! Warning event with no remote call; a capability added later is refused before the update; a
//! suspended provisioner halts its agents and its resumption resumes exactly those.

use super::world::*;
use crate::crd::ProvisionerKind;
use crate::plan::policy::{Policy, ProvisionerId, ProvisionerView, Readiness, Resolution};
use crate::plan::{AgentStatus, META_PROVISIONER};

fn team(capabilities: &[&str]) -> ProvisionerView {
    ProvisionerView {
        id: ProvisionerId::Namespaced {
            namespace: "payments".into(),
            name: "team".into(),
        },
        policy: Policy {
            capabilities: capabilities.iter().map(|c| (*c).to_owned()).collect(),
            name_prefix: None,
        },
        namespace_allowed: true,
        readiness: Readiness::Ready,
        suspended: false,
        base_url: BASE_URL.into(),
        backend: crate::plan::BackendKind::AgentLattice,
    }
}

/// The fixture (capabilities deploy.staging, rollback.staging), naming `LatticeProvisioner/team`.
fn with_team(capabilities: &[&str]) -> World {
    let mut w = World::default();
    w.edit_spec(|s| {
        s.provisioner_ref = Some(crate::crd::ProvisionerRef {
            kind: ProvisionerKind::LatticeProvisioner,
            name: "team".into(),
        })
    });
    w.provisioner = Some(Resolution::Resolved(team(capabilities)));
    w
}

fn set_suspended(w: &mut World, suspended: bool) {
    if let Some(Resolution::Resolved(view)) = w.provisioner.as_mut() {
        view.suspended = suspended;
    }
}

#[test]
fn a_capability_outside_the_policy_is_refused_once_without_a_remote_call() {
    let mut w = with_team(&["deploy.*"]);
    let run = w.run();
    assert_eq!(run.kinds(), ["WriteStatus"]);
    assert_eq!(run.remote_calls(), 0);
    assert_eq!(run.event_reasons(), ["CapabilityNotAllowed"]);
    assert_eq!(
        w.ready(),
        Some(("False".into(), "CapabilityNotAllowed".into()))
    );
    let message = &w.status().conditions[0].message;
    assert!(message.contains("rollback.staging"), "{message}");
    assert!(
        message.contains("LatticeProvisioner/payments/team"),
        "{message}"
    );
    assert!(w.al.calls.is_empty());
    // Said once: the next reconcile writes nothing and emits nothing.
    let run = w.run();
    assert_eq!(run.kinds(), Vec::<&str>::new());
    assert!(run.events.is_empty());
    // Fixing the policy (or the spec) registers, through the provisioner.
    w.provisioner = Some(Resolution::Resolved(team(&["deploy.*", "rollback.*"])));
    let run = w.run();
    assert_eq!(run.kinds(), ["Register", "WriteSecret", "WriteStatus"]);
    let status = w.status();
    assert_eq!(
        status.provisioner.as_deref(),
        Some("LatticeProvisioner/payments/team")
    );
    assert_eq!(status.service_key_id.as_deref(), Some("svc-test"));
    let agent = status.agent_id.expect("registered");
    assert_eq!(
        w.al.agent(&agent)
            .view
            .metadata
            .get(META_PROVISIONER)
            .map(String::as_str),
        Some("LatticeProvisioner/payments/team")
    );
}

#[test]
fn the_default_provisioner_records_itself_without_new_metadata() {
    let w = World::registered();
    let status = w.status();
    assert_eq!(status.provisioner.as_deref(), Some("default"));
    let agent = status.agent_id.expect("registered");
    // Registrations made before provisioners existed replay with the same body.
    assert!(
        !w.al
            .agent(&agent)
            .view
            .metadata
            .contains_key(META_PROVISIONER)
    );
}

#[test]
fn a_capability_added_later_is_refused_and_the_agent_keeps_its_previous_ones() {
    let mut w = with_team(&["deploy.*", "rollback.*"]);
    w.run();
    let agent = w.status().agent_id.expect("registered");
    let before = w.al.agent(&agent).view.capabilities.clone();
    w.edit_spec(|s| s.capabilities.push("admin.everything".into()));
    let run = w.run();
    assert_eq!(run.kinds(), ["WriteStatus"]);
    assert_eq!(run.event_reasons(), ["CapabilityNotAllowed"]);
    assert_eq!(w.al.agent(&agent).view.capabilities, before);
    assert_eq!(
        w.ready(),
        Some(("False".into(), "CapabilityNotAllowed".into()))
    );
    // Fixed: the agent is read and stays as it was, Ready again.
    w.edit_spec(|s| s.capabilities.retain(|c| c != "admin.everything"));
    let run = w.run();
    assert_eq!(run.kinds(), ["FetchAgent", "WriteStatus"]);
    assert_eq!(w.ready(), Some(("True".into(), "AgentReady".into())));
}

#[test]
fn another_namespaces_agent_name_is_refused_under_the_default_provisioner() {
    let mut w = World::default();
    w.settings.default_policy = Policy::any_capability();
    w.edit_spec(|s| s.agent_name = Some("billing-deploy-bot".into()));
    let run = w.run();
    assert_eq!(run.kinds(), ["WriteStatus"]);
    assert_eq!(run.event_reasons(), ["AgentNameNotAllowed"]);
    assert!(w.al.calls.is_empty());
    assert!(
        w.status().conditions[0]
            .message
            .contains("must begin with payments-")
    );
}

#[test]
fn the_default_policy_comes_from_the_settings() {
    let mut w = World::default();
    w.settings.default_policy = Policy {
        capabilities: vec!["deploy.staging".into()],
        name_prefix: None,
    };
    let run = w.run();
    assert_eq!(run.kinds(), ["WriteStatus"]);
    assert_eq!(
        w.ready(),
        Some(("False".into(), "CapabilityNotAllowed".into()))
    );
    assert!(
        w.status().conditions[0]
            .message
            .contains("provisioner default")
    );
}

#[test]
fn a_missing_or_forbidden_or_unready_provisioner_costs_no_remote_call() {
    for (resolution, reason) in [
        (
            Resolution::NotFound(
                ProvisionerId::Cluster {
                    name: "platform".into(),
                },
                "does not exist".into(),
            ),
            "ProvisionerNotFound",
        ),
        (
            Resolution::Resolved(ProvisionerView {
                namespace_allowed: false,
                ..team(&["*"])
            }),
            "ProvisionerNotAllowed",
        ),
        (
            Resolution::Resolved(ProvisionerView {
                readiness: Readiness::NotReady("ServiceKeyRejected: HTTP 401".into()),
                ..team(&["*"])
            }),
            "ProvisionerNotReady",
        ),
        (
            Resolution::Resolved(ProvisionerView {
                suspended: true,
                ..team(&["*"])
            }),
            "ProvisionerSuspended",
        ),
    ] {
        let mut w = with_team(&["*"]);
        w.provisioner = Some(resolution);
        let run = w.run();
        assert_eq!(run.kinds(), ["WriteStatus"], "{reason}");
        assert_eq!(run.event_reasons(), [reason]);
        assert_eq!(w.ready(), Some(("False".into(), reason.into())));
        assert!(w.al.calls.is_empty(), "{reason}");
    }
}

#[test]
fn a_suspended_provisioner_halts_its_agents_and_resuming_resumes_exactly_those() {
    let mut w = with_team(&["*"]);
    w.run();
    let agent = w.status().agent_id.expect("registered");
    set_suspended(&mut w, true);
    let run = w.run();
    assert_eq!(run.kinds(), ["FetchAgent", "HaltAgent", "WriteStatus"]);
    assert_eq!(run.event_reasons(), ["AgentHalted"]);
    assert_eq!(w.al.agent(&agent).view.status, AgentStatus::Halted);
    assert!(w.status().halted_by_provisioner);
    assert_eq!(
        w.ready(),
        Some(("False".into(), "ProvisionerSuspended".into()))
    );
    // Quiet while suspended.
    assert_eq!(w.run().kinds(), Vec::<&str>::new());
    set_suspended(&mut w, false);
    let run = w.run();
    assert_eq!(run.kinds(), ["FetchAgent", "ResumeAgent", "WriteStatus"]);
    assert_eq!(w.al.agent(&agent).view.status, AgentStatus::Active);
    assert!(!w.status().halted_by_provisioner);
    assert_eq!(w.ready(), Some(("True".into(), "AgentReady".into())));
}

#[test]
fn resuming_the_provisioner_leaves_an_agent_suspended_by_its_own_spec_halted() {
    let mut w = with_team(&["*"]);
    w.run();
    let agent = w.status().agent_id.expect("registered");
    w.edit_spec(|s| s.suspend = true);
    w.run();
    assert_eq!(w.al.agent(&agent).view.status, AgentStatus::Halted);
    set_suspended(&mut w, true);
    let run = w.run();
    assert_eq!(run.remote_calls(), 0, "{:?}", run.kinds());
    assert!(!w.status().halted_by_provisioner);
    set_suspended(&mut w, false);
    let run = w.run();
    assert!(!run.kinds().contains(&"ResumeAgent"), "{:?}", run.kinds());
    assert_eq!(w.al.agent(&agent).view.status, AgentStatus::Halted);
}

#[test]
fn a_suspended_provisioner_halts_even_an_agent_whose_spec_is_refused() {
    let mut w = with_team(&["*"]);
    w.run();
    let agent = w.status().agent_id.expect("registered");
    // The policy narrows, then the provisioner is suspended (incident response).
    let mut view = team(&["deploy.*"]);
    view.suspended = true;
    w.provisioner = Some(Resolution::Resolved(view));
    let run = w.run();
    assert_eq!(run.kinds(), ["FetchAgent", "HaltAgent", "WriteStatus"]);
    assert_eq!(w.al.agent(&agent).view.status, AgentStatus::Halted);
    assert_eq!(
        w.ready(),
        Some(("False".into(), "CapabilityNotAllowed".into()))
    );
    assert!(w.status().halted_by_provisioner);
}

#[test]
fn an_alter_provisioners_agent_gets_the_alter_field_names_and_keeps_them() {
    let mut w = with_team(&["*"]);
    if let Some(Resolution::Resolved(view)) = w.provisioner.as_mut() {
        view.backend = crate::plan::BackendKind::Alter;
        view.base_url = "https://alter.example".into();
    }
    let run = w.run();
    assert_eq!(run.kinds(), ["Register", "WriteSecret", "WriteStatus"]);
    let data: Vec<String> = w
        .secret
        .as_ref()
        .and_then(|s| s.data.as_ref())
        .map(|d| d.keys().cloned().collect())
        .unwrap_or_default();
    assert_eq!(data, ["ALTER_AGENT_ID", "ALTER_API_KEY", "ALTER_BASE_URL"]);
    assert_eq!(
        w.secret_data("ALTER_BASE_URL").as_deref(),
        Some("https://alter.example")
    );
    assert!(w.secret_key().is_some());
    // Read back with Alter's names, the Secret is complete: nothing to repair, no new key.
    let run = w.run();
    assert_eq!(run.kinds(), Vec::<&str>::new());
    // Read with AgentLattice's names it would not be (the test fails if the planner ignored the
    // backend): the key field would be missing and a new key minted.
    let mut wrong = w.clone();
    if let Some(Resolution::Resolved(view)) = wrong.provisioner.as_mut() {
        view.backend = crate::plan::BackendKind::AgentLattice;
    }
    assert_ne!(wrong.run().kinds(), Vec::<&str>::new());
}
