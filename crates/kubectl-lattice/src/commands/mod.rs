//! The commands, and what they share: reading LatticeAgents (tolerating malformed ones) and
//! their events.

pub mod annotate;
pub mod list;
pub mod show;
pub mod status;

use std::io::Write;

use clap::CommandFactory;
use k8s_openapi::api::core::v1::Event as CoreEvent;
use k8s_openapi::api::events::v1::Event;
use kube::api::{Api, ApiResource, DynamicObject, ListParams};
use kube::core::GroupVersionKind;
use lattice_operator::crd::LatticeAgent;

use crate::error::{Error, Result};
use crate::view::EventView;
use crate::{Ctx, cli::Cli};

/// `completion SHELL`: the completion script, for `kubectl lattice` (the plugin's binary name is
/// `kubectl-lattice`; kubectl 1.26+ completes plugins through a `kubectl_complete-lattice`
/// executable, see the README).
pub fn completion(shell: clap_complete::Shell, out: &mut (dyn Write + Send)) -> Result<()> {
    let mut command = Cli::command();
    clap_complete::generate(shell, &mut command, "kubectl-lattice", out);
    Ok(())
}

/// The API resource of LatticeAgents.
fn resource() -> ApiResource {
    ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("agentlattice.io", "v1alpha1", "LatticeAgent"),
        "latticeagents",
    )
}

/// LatticeAgents in `namespace`, or in every namespace.
pub fn dynamic_api(ctx: &Ctx, namespace: Option<&str>) -> Api<DynamicObject> {
    match namespace {
        Some(ns) => Api::namespaced_with(ctx.client.clone(), ns, &resource()),
        None => Api::all_with(ctx.client.clone(), &resource()),
    }
}

/// The typed API in the context's namespace.
pub fn agents(ctx: &Ctx) -> Api<LatticeAgent> {
    Api::namespaced(ctx.client.clone(), &ctx.namespace)
}

/// A stored LatticeAgent as the Rust type; one the type rejects (stored through an older or
/// looser CRD) keeps its metadata and status with an empty spec, so that it can still be listed.
pub fn parse(obj: DynamicObject) -> LatticeAgent {
    let mut value = serde_json::to_value(&obj).unwrap_or_default();
    if let Ok(a) = serde_json::from_value::<LatticeAgent>(value.clone()) {
        return a;
    }
    value["spec"] = serde_json::json!({});
    if let Ok(a) = serde_json::from_value::<LatticeAgent>(value.clone()) {
        return a;
    }
    let mut a = LatticeAgent::new(
        &obj.metadata.name.clone().unwrap_or_default(),
        Default::default(),
    );
    a.metadata = obj.metadata;
    a
}

/// LatticeAgents in `namespace` (or everywhere), sorted by namespace and name.
pub async fn list_agents(ctx: &Ctx, namespace: Option<&str>) -> Result<Vec<LatticeAgent>> {
    let list = dynamic_api(ctx, namespace)
        .list(&ListParams::default())
        .await
        .map_err(|e| {
            crate::error::Error::kube_needing("listing LatticeAgents", "Listing LatticeAgents", e)
        })?;
    let mut agents: Vec<LatticeAgent> = list.items.into_iter().map(parse).collect();
    agents.sort_by(|a, b| {
        (&a.metadata.namespace, &a.metadata.name).cmp(&(&b.metadata.namespace, &b.metadata.name))
    });
    Ok(agents)
}

/// The LatticeAgent `name` in the context's namespace; exit code 3 when it does not exist.
pub async fn get_agent(ctx: &Ctx, name: &str) -> Result<LatticeAgent> {
    match dynamic_api(ctx, Some(&ctx.namespace)).get_opt(name).await {
        Ok(Some(obj)) => Ok(parse(obj)),
        Ok(None) => Err(Error::NotFound(format!(
            "LatticeAgent {name:?} not found in namespace {}",
            ctx.namespace
        ))),
        Err(e) => Err(Error::kube_needing(
            format!("reading LatticeAgent {name}"),
            "Reading a LatticeAgent",
            e,
        )),
    }
}

/// The events about the object with `uid`, read from events.k8s.io/v1 and core/v1 (one store on
/// a real API server, so the same event may come back from both: deduplicated by uid), oldest
/// first. `Err` is a sentence saying why they could not be read.
pub async fn events(ctx: &Ctx, uid: &str) -> std::result::Result<Vec<EventView>, String> {
    let v1: Api<Event> = Api::namespaced(ctx.client.clone(), &ctx.namespace);
    let core: Api<CoreEvent> = Api::namespaced(ctx.client.clone(), &ctx.namespace);
    let v1_list = v1
        .list(&ListParams::default().fields(&format!("regarding.uid={uid}")))
        .await;
    let core_list = core
        .list(&ListParams::default().fields(&format!("involvedObject.uid={uid}")))
        .await;
    let mut seen = std::collections::BTreeSet::new();
    let mut out = Vec::new();
    let mut failures = Vec::new();
    match v1_list {
        Ok(list) => {
            for e in list.items {
                if seen.insert(e.metadata.uid.clone().unwrap_or_default()) {
                    out.push(from_v1(e));
                }
            }
        }
        Err(e) => failures.push(describe(e, "events.events.k8s.io")),
    }
    match core_list {
        Ok(list) => {
            for e in list.items {
                if seen.insert(e.metadata.uid.clone().unwrap_or_default()) {
                    out.push(from_core(e));
                }
            }
        }
        Err(e) => failures.push(describe(e, "events")),
    }
    if failures.len() == 2 {
        return Err(failures.join("; "));
    }
    out.sort_by_key(|e| e.last_seen);
    Ok(out)
}

fn describe(e: kube::Error, what: &str) -> String {
    match &e {
        kube::Error::Api(s) if s.code == 403 => {
            format!("not allowed to list {what} in namespace (403)")
        }
        _ => format!("listing {what}: {e}"),
    }
}

fn from_v1(e: Event) -> EventView {
    let last_seen = e
        .series
        .as_ref()
        .map(|s| s.last_observed_time.0)
        .or(e.event_time.as_ref().map(|t| t.0))
        .or(e.deprecated_last_timestamp.as_ref().map(|t| t.0))
        .or(e.metadata.creation_timestamp.as_ref().map(|t| t.0));
    let count = e
        .series
        .as_ref()
        .map(|s| s.count)
        .or(e.deprecated_count)
        .unwrap_or(1);
    EventView {
        type_: e.type_.unwrap_or_default(),
        reason: e.reason.unwrap_or_default(),
        count,
        last_seen,
        from: e
            .reporting_controller
            .or(e.deprecated_source.and_then(|s| s.component))
            .unwrap_or_default(),
        message: e.note.unwrap_or_default(),
    }
}

fn from_core(e: CoreEvent) -> EventView {
    let last_seen = e
        .series
        .as_ref()
        .and_then(|s| s.last_observed_time.as_ref().map(|t| t.0))
        .or(e.last_timestamp.as_ref().map(|t| t.0))
        .or(e.event_time.as_ref().map(|t| t.0))
        .or(e.first_timestamp.as_ref().map(|t| t.0))
        .or(e.metadata.creation_timestamp.as_ref().map(|t| t.0));
    let count = e
        .series
        .as_ref()
        .and_then(|s| s.count)
        .or(e.count)
        .unwrap_or(1);
    EventView {
        type_: e.type_.unwrap_or_default(),
        reason: e.reason.unwrap_or_default(),
        count,
        last_seen,
        from: e
            .reporting_component
            .filter(|c| !c.is_empty())
            .or(e.source.and_then(|s| s.component))
            .unwrap_or_default(),
        message: e.message.unwrap_or_default(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_event_apis_read_alike() {
        let v1: Event = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "e1", "uid": "u1"},
            "eventTime": "2026-11-23T10:00:00.000000Z",
            "series": {"count": 3, "lastObservedTime": "2026-11-23T10:05:00.000000Z"},
            "reason": "ReconcileError", "type": "Warning", "note": "RateLimited: slow down",
            "reportingController": "agentlattice.io/lattice-operator", "reportingInstance": "x",
            "action": "Reconcile"
        }))
        .unwrap();
        let core: CoreEvent = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "e1", "uid": "u1"},
            "involvedObject": {"name": "deploy-bot"},
            "firstTimestamp": "2026-11-23T10:00:00Z", "lastTimestamp": "2026-11-23T10:05:00Z",
            "count": 3, "reason": "ReconcileError", "type": "Warning",
            "message": "RateLimited: slow down", "source": {"component": "agentlattice.io/lattice-operator"}
        }))
        .unwrap();
        assert_eq!(from_v1(v1), from_core(core));
    }

    #[test]
    fn a_malformed_object_still_lists() {
        let obj: DynamicObject = serde_json::from_value(serde_json::json!({
            "apiVersion": "agentlattice.io/v1alpha1", "kind": "LatticeAgent",
            "metadata": {"name": "bad", "namespace": "ns"},
            "spec": {"capabilities": "not-a-list"},
            "status": {"agentName": "ns-bad"}
        }))
        .unwrap();
        let a = parse(obj);
        assert_eq!(a.metadata.name.as_deref(), Some("bad"));
        assert_eq!(
            a.status.and_then(|s| s.agent_name).as_deref(),
            Some("ns-bad")
        );
    }
}
