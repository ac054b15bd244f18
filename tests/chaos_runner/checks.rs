//! The checks after the faults stop: the invariant checker of `lattice-operator verify`
//! (`lattice_operator::verify`, fed the operator processes' log files), and that nothing was lost —
//! each LatticeAgent the runner created ends in the state its spec asks for, each one it deleted is
//! gone with its agent revoked (or retained, with `deletionPolicy: Retain`), and no process
//! panicked.

use std::collections::BTreeSet;
use std::path::PathBuf;

use agentlattice_emulator::AgentStatus;
use kube::api::ListParams;
use lattice_operator::crd::{COMPROMISED_ANNOTATION, REREGISTER_ANNOTATION, ROTATE_ANNOTATION};
use lattice_operator::verify;

use super::ops::Model;
use crate::support::{World, condition};

/// Everything wrong with the world now (empty: it holds). `Err` when something could not be
/// read (retried by the caller).
pub async fn violations(
    world: &World,
    model: &Model,
    logs: &[PathBuf],
) -> Result<Vec<String>, String> {
    let mut out = Vec::new();

    // The invariant, as `lattice-operator verify` checks it, logs included.
    let mut sources = verify::Sources::emulator(world.emu.base_url(), world.emu.admin_token());
    sources.log_files = logs.to_vec();
    let opts = verify::Options {
        namespaces: vec![world.ns.clone()],
        ..verify::Options::default()
    };
    let observation = verify::observe(&world.client, &sources, &opts)
        .await
        .map_err(|e| format!("verify could not read: {e}"))?;
    let report = verify::check(&observation, &opts);
    out.extend(report.violations.iter().map(|v| format!("verify: {v}")));
    out.extend(
        report
            .unparsed
            .iter()
            .map(|n| format!("{n} does not parse")),
    );

    // Nothing lost.
    let resources = world
        .agents()
        .list(&ListParams::default())
        .await
        .map_err(|e| format!("listing LatticeAgents: {e}"))?
        .items;
    let snapshot = world.emu.snapshot();
    let live_agents_of = |uid: &str| -> Vec<&agentlattice_emulator::AgentSnapshot> {
        snapshot
            .agents
            .iter()
            .filter(|a| a.is_live() && a.metadata.get("k8s.uid").map(String::as_str) == Some(uid))
            .collect()
    };
    let mut seen = BTreeSet::new();
    for r in &resources {
        let name = r.metadata.name.clone().unwrap_or_default();
        seen.insert(name.clone());
        let ready = condition(r, "Ready");
        let reason = ready
            .map(|c| c.reason.as_str())
            .unwrap_or("(no Ready condition)");
        let status = ready.map(|c| c.status.as_str()).unwrap_or("");
        let Some(expected) = model.resources.get(&name) else {
            // A workload's identity: Ready.
            if r.metadata.deletion_timestamp.is_some() {
                out.push(format!("identity {name} is still being deleted"));
            } else if (status, reason) != ("True", "AgentReady") {
                out.push(format!("identity {name} is {status} {reason}, not Ready"));
            }
            continue;
        };
        if expected.deleted {
            out.push(format!("{name} was deleted but still exists ({reason})"));
            continue;
        }
        let uid = &expected.uid;
        if r.metadata.uid.as_ref() != Some(uid) {
            out.push(format!("{name} has another uid than the one created"));
            continue;
        }
        let live = live_agents_of(uid);
        let want = if expected.revoked_outside {
            ("False", "AgentRevokedExternally")
        } else if expected.suspend {
            ("False", "Suspended")
        } else {
            ("True", "AgentReady")
        };
        if (status, reason) != want {
            out.push(format!(
                "{name} is Ready={status} {reason}, expected Ready={} {}",
                want.0, want.1
            ));
            continue;
        }
        let st = r.status.clone().unwrap_or_default();
        if st.observed_generation != r.metadata.generation {
            out.push(format!(
                "{name}: status is of generation {:?}, the spec's is {:?}",
                st.observed_generation, r.metadata.generation
            ));
        }
        if !expected.revoked_outside {
            // Every action asked for was acted on, and no mint is half done.
            let annotations = r.metadata.annotations.clone().unwrap_or_default();
            for (annotation, handled) in [
                (ROTATE_ANNOTATION, &st.handled.rotate),
                (COMPROMISED_ANNOTATION, &st.handled.compromised),
                (REREGISTER_ANNOTATION, &st.handled.reregister),
            ] {
                if annotations
                    .get(annotation)
                    .is_some_and(|v| Some(v) != handled.as_ref())
                {
                    out.push(format!("{name}: {annotation} not acted on"));
                }
            }
            if st.mint_started_at.is_some() {
                out.push(format!("{name}: a key mint is in flight"));
            }
        }
        if expected.revoked_outside {
            if !live.is_empty() {
                out.push(format!(
                    "{name}'s agent was revoked outside, yet {} live agent(s) are linked to it",
                    live.len()
                ));
            }
            continue;
        }
        let [agent] = live.as_slice() else {
            out.push(format!(
                "{name} has {} live agents linked to it, expected 1",
                live.len()
            ));
            continue;
        };
        let halted = agent.status == AgentStatus::Halted;
        if halted != expected.suspend {
            out.push(format!(
                "{name}: spec.suspend is {}, its agent {} is {:?}",
                expected.suspend, agent.id, agent.status
            ));
        }
        let mut have = agent.capabilities.clone();
        let mut want_caps = expected.capabilities.clone();
        have.sort();
        want_caps.sort();
        if have != want_caps {
            out.push(format!(
                "{name}: capabilities at AgentLattice {have:?}, spec {want_caps:?}"
            ));
        }
        if world.secret(&format!("{name}-agent-key")).await.is_none() {
            out.push(format!("{name}: its Secret is missing"));
        }
    }
    for (name, expected) in &model.resources {
        if seen.contains(name) {
            continue;
        }
        if !expected.deleted {
            out.push(format!("{name} was never deleted but is gone"));
            continue;
        }
        let live = live_agents_of(&expected.uid);
        if expected.retain {
            // Retained: its agent lives on (unless revoked outside), its Secret is released.
            if live.len() > 1 {
                out.push(format!(
                    "{name} was deleted with Retain and left {} live agents",
                    live.len()
                ));
            }
        } else if !live.is_empty() {
            out.push(format!(
                "{name} was deleted with Revoke but {} agent(s) linked to it are live",
                live.len()
            ));
        }
    }

    // No process panicked.
    for log in logs {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        if let Some(line) = text.lines().find(|l| l.contains("panicked")) {
            out.push(format!("{}: {line}", log.display()));
        }
    }
    Ok(out)
}
