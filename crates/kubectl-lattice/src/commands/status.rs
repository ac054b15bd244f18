//! `status`: the operator's health — who leads (its Lease), its pods' readiness and version —
//! and LatticeAgents counted by condition.
//!
//! Each part is read on its own: a part the user may not read is reported as such and the others
//! are still shown; the exit code is then that of the first failure (4 when forbidden).

use std::collections::BTreeMap;
use std::io::Write;

use jiff::Timestamp;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ListParams};
use serde::Serialize;

use super::list_agents;
use crate::cli::{Output, StatusArgs};
use crate::error::{Error, Result};
use crate::table::Table;
use crate::{Ctx, time, write_data};

/// The leader, from the Lease.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Leader {
    /// `namespace/name` of the Lease.
    pub lease: String,
    /// The holder's identity (`<pod>_<random>`), `None` when released.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub holder: Option<String>,
    /// Last renewal.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub renewed_at: Option<Timestamp>,
    /// How long a renewal is valid.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lease_duration_seconds: Option<i32>,
    /// Whether the holder renewed within the Lease duration.
    pub current: bool,
}

/// One operator pod.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct OperatorPod {
    /// Pod name.
    pub name: String,
    /// Its Ready condition (`True`, `False`, `Unknown`).
    pub ready: String,
    /// Its phase.
    pub phase: String,
    /// The operator version: label `app.kubernetes.io/version`, else the image tag.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// Container restarts.
    pub restarts: i32,
    /// Whether it holds the Lease.
    pub leader: bool,
    /// Creation time.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub created_at: Option<Timestamp>,
}

/// LatticeAgents with one condition type, status and reason.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ConditionCount {
    /// Condition type.
    #[serde(rename = "type")]
    pub type_: String,
    /// `True`/`False`/`Unknown`.
    pub status: String,
    /// Reason.
    pub reason: String,
    /// How many LatticeAgents.
    pub count: usize,
}

/// The LatticeAgents part.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AgentCounts {
    /// `all namespaces` or the namespace.
    pub scope: String,
    /// How many LatticeAgents.
    pub total: usize,
    /// How many have not been reconciled yet (no conditions).
    pub without_status: usize,
    /// Counts by condition, Ready first.
    pub conditions: Vec<ConditionCount>,
    /// How many LatticeAgents each provisioner registered (`not registered` for the others).
    /// Provisioners' own health: `kubectl get lprov,clprov -A`.
    pub by_provisioner: BTreeMap<String, usize>,
}

/// `status` as data.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct StatusView {
    /// The operator's namespace.
    pub operator_namespace: String,
    /// The leader (`None`: no Lease, or not readable — see `problems`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub leader: Option<Leader>,
    /// The operator's pods.
    pub pods: Vec<OperatorPod>,
    /// LatticeAgents by condition.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub agents: Option<AgentCounts>,
    /// What could not be read, and why.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub problems: Vec<String>,
}

/// The leader described by `lease` at `now`.
pub fn leader(lease: &Lease, now: Timestamp) -> Leader {
    let spec = lease.spec.clone().unwrap_or_default();
    let renewed_at = spec.renew_time.as_ref().map(|t| t.0);
    let holder = spec.holder_identity.filter(|h| !h.is_empty());
    let current = match (&holder, renewed_at, spec.lease_duration_seconds) {
        (Some(_), Some(renewed), Some(secs)) => {
            now.duration_since(renewed) <= jiff::SignedDuration::from_secs(i64::from(secs))
        }
        _ => false,
    };
    Leader {
        lease: format!(
            "{}/{}",
            lease.metadata.namespace.clone().unwrap_or_default(),
            lease.metadata.name.clone().unwrap_or_default()
        ),
        holder,
        renewed_at,
        lease_duration_seconds: spec.lease_duration_seconds,
        current,
    }
}

/// Whether the Lease holder `holder` is the pod `pod` (the operator's identity is
/// `<pod name>_<random suffix>`).
pub fn holds(holder: &str, pod: &str) -> bool {
    holder == pod
        || holder
            .strip_prefix(pod)
            .is_some_and(|rest| rest.starts_with('_'))
}

/// The operator pod view of `pod`.
pub fn operator_pod(pod: &Pod, holder: Option<&str>) -> OperatorPod {
    let name = pod.metadata.name.clone().unwrap_or_default();
    let status = pod.status.clone().unwrap_or_default();
    let ready = status
        .conditions
        .iter()
        .flatten()
        .find(|c| c.type_ == "Ready")
        .map(|c| c.status.clone())
        .unwrap_or_else(|| "Unknown".to_owned());
    let version = pod
        .metadata
        .labels
        .as_ref()
        .and_then(|l| l.get("app.kubernetes.io/version").cloned())
        .or_else(|| {
            let spec = pod.spec.as_ref()?;
            let image = spec
                .containers
                .iter()
                .find(|c| c.name == "operator")
                .or(spec.containers.first())?
                .image
                .clone()?;
            let image = image.split('@').next().unwrap_or_default();
            let last = image.rsplit('/').next().unwrap_or_default();
            last.split_once(':').map(|(_, tag)| tag.to_owned())
        });
    let restarts = status
        .container_statuses
        .iter()
        .flatten()
        .map(|c| c.restart_count)
        .sum();
    OperatorPod {
        leader: holder.is_some_and(|h| holds(h, &name)),
        name,
        ready,
        phase: status.phase.unwrap_or_else(|| "Unknown".to_owned()),
        version,
        restarts,
        created_at: pod.metadata.creation_timestamp.as_ref().map(|t| t.0),
    }
}

/// LatticeAgents counted by (condition type, status, reason).
pub fn counts(agents: &[lattice_operator::crd::LatticeAgent], scope: String) -> AgentCounts {
    let mut by: BTreeMap<(usize, String, String, String), usize> = BTreeMap::new();
    let mut without_status = 0;
    let mut by_provisioner: BTreeMap<String, usize> = BTreeMap::new();
    for a in agents {
        let provisioner = a.status.as_ref().and_then(|s| s.provisioner.clone());
        *by_provisioner
            .entry(provisioner.unwrap_or_else(|| "not registered".to_owned()))
            .or_default() += 1;
        let conditions = a
            .status
            .as_ref()
            .map(|s| s.conditions.as_slice())
            .unwrap_or_default();
        if conditions.is_empty() {
            without_status += 1;
        }
        for c in conditions {
            let order = match c.type_.as_str() {
                "Ready" => 0,
                "Synced" => 1,
                "Rotating" => 2,
                _ => 3,
            };
            *by.entry((order, c.type_.clone(), c.status.clone(), c.reason.clone()))
                .or_default() += 1;
        }
    }
    AgentCounts {
        scope,
        total: agents.len(),
        without_status,
        conditions: by
            .into_iter()
            .map(|((_, type_, status, reason), count)| ConditionCount {
                type_,
                status,
                reason,
                count,
            })
            .collect(),
        by_provisioner,
    }
}

/// `status` as text.
pub fn text(v: &StatusView, now: Timestamp) -> String {
    let mut out = format!("Operator (namespace {}):\n", v.operator_namespace);
    match &v.leader {
        Some(l) => {
            let state = match (&l.holder, l.current) {
                (Some(h), true) => h.clone(),
                (Some(h), false) => format!("none: {h} stopped renewing (expired)"),
                (None, _) => "none (the Lease was released)".to_owned(),
            };
            let renewed = l
                .renewed_at
                .map(|t| format!(", renewed {}", time::relative(t, now)))
                .unwrap_or_default();
            let valid = l
                .lease_duration_seconds
                .map(|s| format!(", valid {}s", s))
                .unwrap_or_default();
            out.push_str(&format!(
                "  Leader:   {state} (Lease {}{renewed}{valid})\n",
                l.lease
            ));
        }
        None => out.push_str("  Leader:   unknown (no Lease read)\n"),
    }
    if v.pods.is_empty() {
        out.push_str("  Pods:     none found\n");
    } else {
        let mut t = Table::new([
            "pod", "ready", "phase", "version", "restarts", "age", "leader",
        ]);
        for p in &v.pods {
            t.row([
                p.name.clone(),
                p.ready.clone(),
                p.phase.clone(),
                p.version.clone().unwrap_or_default(),
                p.restarts.to_string(),
                p.created_at.map(|c| time::age(c, now)).unwrap_or_default(),
                if p.leader {
                    "yes".to_owned()
                } else {
                    String::new()
                },
            ]);
        }
        out.push_str(&t.render("  "));
    }
    if let Some(a) = &v.agents {
        out.push_str(&format!("\nLatticeAgents ({}): {}", a.scope, a.total));
        if a.without_status > 0 {
            out.push_str(&format!(", {} not reconciled yet", a.without_status));
        }
        out.push('\n');
        if !a.conditions.is_empty() {
            let mut t = Table::new(["condition", "status", "reason", "count"]);
            for c in &a.conditions {
                t.row([
                    c.type_.clone(),
                    c.status.clone(),
                    c.reason.clone(),
                    c.count.to_string(),
                ]);
            }
            out.push_str(&t.render("  "));
        }
        if !a.by_provisioner.is_empty() {
            let mut t = Table::new(["provisioner", "count"]);
            for (p, n) in &a.by_provisioner {
                t.row([p.clone(), n.to_string()]);
            }
            out.push_str(&t.render("  "));
        }
    }
    if !v.problems.is_empty() {
        out.push_str("\nNot shown:\n");
        for p in &v.problems {
            out.push_str(&format!("  {p}\n"));
        }
    }
    out
}

/// Reads the three parts and prints them.
pub async fn run(ctx: &Ctx, args: &StatusArgs, out: &mut (dyn Write + Send)) -> Result<()> {
    if args.all_namespaces && ctx.namespace_given {
        return Err(Error::Usage(
            "-A/--all-namespaces and -n/--namespace cannot be used together".to_owned(),
        ));
    }
    let now = Timestamp::now();
    let mut problems = Vec::new();
    let mut first_error: Option<Error> = None;
    let mut note = |e: Error, problems: &mut Vec<String>| {
        problems.push(e.to_string());
        if first_error.is_none() {
            first_error = Some(e);
        }
    };

    let leases: Api<Lease> = Api::namespaced(ctx.client.clone(), &args.operator_namespace);
    let lease = match leases.get_opt(&args.lease_name).await {
        Ok(Some(lease)) => Some(leader(&lease, now)),
        Ok(None) => {
            problems.push(format!(
                "Lease {}/{}: not found (leader election off, or no operator in that \
                 namespace: see --operator-namespace and --lease-name)",
                args.operator_namespace, args.lease_name
            ));
            None
        }
        Err(e) => {
            note(
                Error::kube_needing("reading the Lease", "Reading the leader", e),
                &mut problems,
            );
            None
        }
    };

    let pods: Api<Pod> = Api::namespaced(ctx.client.clone(), &args.operator_namespace);
    let holder = lease
        .as_ref()
        .and_then(|l| if l.current { l.holder.as_deref() } else { None });
    let mut operator_pods = match pods
        .list(&ListParams::default().labels(&args.selector))
        .await
    {
        Ok(list) => list
            .items
            .iter()
            .map(|p| operator_pod(p, holder))
            .collect::<Vec<_>>(),
        Err(e) => {
            note(
                Error::kube_needing("listing the operator's pods", "Reading the pods", e),
                &mut problems,
            );
            Vec::new()
        }
    };
    operator_pods.sort_by(|a, b| a.name.cmp(&b.name));

    let all = args.all_namespaces || !ctx.namespace_given;
    let scope = (!all).then_some(ctx.namespace.as_str());
    let agents = match list_agents(ctx, scope).await {
        Ok(agents) => Some(counts(
            &agents,
            scope
                .map(|ns| format!("namespace {ns}"))
                .unwrap_or_else(|| "all namespaces".to_owned()),
        )),
        Err(e) => {
            note(e, &mut problems);
            None
        }
    };

    let view = StatusView {
        operator_namespace: args.operator_namespace.clone(),
        leader: lease,
        pods: operator_pods,
        agents,
        problems,
    };
    match ctx.output {
        Output::Table => write!(out, "{}", text(&view, now))?,
        other => write_data(other, &view, out)?,
    }
    out.flush()?;
    match first_error {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_leader_is_the_pod_named_in_a_current_lease() {
        let now: Timestamp = "2026-11-23T10:00:00Z".parse().unwrap();
        let lease: Lease = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "lattice-operator", "namespace": "lattice-system"},
            "spec": {"holderIdentity": "lattice-operator-6f7d-abcde_0a1b2c3d",
                     "leaseDurationSeconds": 15, "renewTime": "2026-11-23T09:59:58.000000Z"}
        }))
        .unwrap();
        let l = leader(&lease, now);
        assert!(l.current);
        assert!(holds(
            l.holder.as_deref().unwrap(),
            "lattice-operator-6f7d-abcde"
        ));
        assert!(!holds(
            "lattice-operator-6f7d-abcdef_1",
            "lattice-operator-6f7d-abcde"
        ));
        let stale = leader(&lease, "2026-11-23T10:01:00Z".parse().unwrap());
        assert!(!stale.current);

        let pod: Pod = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "lattice-operator-6f7d-abcde", "labels": {}},
            "spec": {"containers": [{"name": "operator",
                "image": "ghcr.io/lattice-operator/lattice-operator:0.2.0@sha256:00"}]},
            "status": {"phase": "Running",
                "conditions": [{"type": "Ready", "status": "True"}],
                "containerStatuses": [{"name": "operator", "restartCount": 2, "ready": true,
                    "image": "x", "imageID": "y"}]}
        }))
        .unwrap();
        let p = operator_pod(&pod, l.holder.as_deref());
        assert_eq!(
            (p.ready.as_str(), p.version.as_deref(), p.restarts, p.leader),
            ("True", Some("0.2.0"), 2, true)
        );
    }

    #[test]
    fn agents_are_counted_by_condition() {
        let a = |ready: &str, reason: &str| -> lattice_operator::crd::LatticeAgent {
            serde_json::from_value(serde_json::json!({
                "apiVersion": "agentlattice.io/v1alpha1", "kind": "LatticeAgent",
                "metadata": {"name": "x"}, "spec": {},
                "status": {"conditions": [{"type": "Ready", "status": ready, "reason": reason,
                    "message": "", "lastTransitionTime": "2026-11-23T10:00:00Z"}]}
            }))
            .unwrap()
        };
        let mut fresh = a("True", "AgentReady");
        fresh.status = None;
        let c = counts(
            &[
                a("True", "AgentReady"),
                a("True", "AgentReady"),
                a("False", "ServiceKeyRejected"),
                fresh,
            ],
            "all namespaces".into(),
        );
        assert_eq!((c.total, c.without_status), (4, 1));
        assert_eq!(
            c.conditions
                .iter()
                .map(|c| (c.reason.as_str(), c.count))
                .collect::<Vec<_>>(),
            [("ServiceKeyRejected", 1), ("AgentReady", 2)]
        );
    }
}
