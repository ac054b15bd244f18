//! Observe: everything the planner needs to decide, read before the first decision.

use kube::ResourceExt;
use kube::api::{Api, ApiResource, DynamicObject};
use kube::core::ObjectMeta;
use kube::core::error_boundary::InvalidObject;
use kube::runtime::reflector::ObjectRef;

use super::Reconciler;
use crate::cluster::watch::Guarded;
use crate::cluster::{Cluster, finalizer};
use crate::crd::{LatticeAgent, LatticeAgentStatus};
use crate::error::{Error, Result};
use crate::events::truncate;
use crate::plan::validate::effective_secret_name;
use crate::plan::{Observed, schedule};
use crate::redact::redact;
use crate::secret::SecretView;

/// What the planner starts from, for `obj` as the controller handed it over.
pub(super) async fn observe(obj: &Guarded, r: &Reconciler) -> Result<Observed> {
    match &obj.0 {
        Ok(agent) => observe_agent(agent, r).await,
        Err(invalid) => observe_malformed(invalid, r).await,
    }
}

async fn observe_agent(handed_over: &LatticeAgent, r: &Reconciler) -> Result<Observed> {
    let ctx = &r.ctx;
    let Some(uid) = handed_over.metadata.uid.clone() else {
        return Err(Error::Internal("the resource has no metadata.uid".into()));
    };
    let last_remote_check = ctx.memory.begin(&uid);
    // The copy the controller handed over was read from the store when the reconcile was
    // scheduled; the store may have moved on since. Read it again, after the overlay (crate
    // `memory`, "overlay first, cache second").
    let namespace = handed_over.namespace().unwrap_or_default();
    let agent = ctx.memory.freshest_resource(
        &uid,
        || {
            r.agents
                .get(&ObjectRef::new(&handed_over.name_any()).within(&namespace))
                .and_then(|stored| stored.agent())
                .filter(|a| a.metadata.uid.as_deref() == Some(uid.as_str()))
                .unwrap_or_else(|| handed_over.clone())
        },
        ctx.overlay_ttl(),
    );
    let deleting = agent.metadata.deletion_timestamp.is_some();
    let (agent, secret) = if deleting || finalizer::present(&agent.metadata) {
        let secret = read_secret(&agent, r, deleting).await?;
        (agent, secret)
    } else {
        // The finalizer goes on before any remote call (design §3.1 step 1). The Secret is read
        // (if it must be) while the patch is under way: a read is not a remote call, and a new
        // resource's reconcile waits for one round trip less.
        tokio::try_join!(
            async { r.cluster.add_finalizer(&agent).await.map_err(Error::Kube) },
            read_secret(&agent, r, false)
        )?
    };

    let provisioner = match &ctx.provisioners {
        Some(p) => p.resolve(&agent, &ctx.settings.default_policy).await,
        None => match agent.spec.provisioner_ref.as_ref() {
            None => crate::plan::policy::Resolution::default_provisioner(
                ctx.settings.default_policy.clone(),
                &ctx.settings.base_url,
            ),
            Some(reference) => crate::plan::policy::Resolution::NotFound(
                crate::plan::policy::ProvisionerId::of(&namespace, Some(reference)),
                // An operator built without `Operator::with_provisioners` (`run` always has
                // them): only the default provisioner exists.
                "cannot be used: this operator runs without provisioners".to_owned(),
            ),
        },
    };
    let settings = ctx.settings.for_provisioner(&provisioner);
    let view = secret
        .map(|s| SecretView::observe_with(&s, &uid, settings.backend.secret_fields()))
        .unwrap_or_default();
    let mut observed = Observed::new(jiff::Timestamp::now(), settings, agent.clone(), view);
    observed.older_claimant = r.claims.older_claimant(&agent);
    observed.provisioner = provisioner;
    if ctx.settings.consumers.tracked {
        observed.consumers = r
            .workloads
            .consumers(&namespace, &effective_secret_name(&agent));
    }
    observed.last_remote_check = last_remote_check.or_else(|| {
        // Not read by this process yet: the first read falls at a point of the first resync
        // interval after the start that depends on the uid alone, as if the last read had been
        // one interval before it (design §3.1 step 6).
        ctx.spread_first_drift_read.then(|| {
            let interval = ctx.settings.resync_interval;
            let due = schedule::add(ctx.started, schedule::startup_offset(&uid, interval));
            due.checked_sub(interval).unwrap_or(due)
        })
    });
    Ok(observed)
}

/// The resource's Secret as a reconcile starts from (in cache form): this process's last write
/// of it, the cache, or a direct read.
async fn read_secret(
    agent: &LatticeAgent,
    r: &Reconciler,
    deleting: bool,
) -> Result<Option<k8s_openapi::api::core::v1::Secret>> {
    let ctx = &r.ctx;
    let uid = agent.metadata.uid.as_deref().unwrap_or_default();
    let namespace = agent.metadata.namespace.as_deref().unwrap_or_default();
    let secret_name = effective_secret_name(agent);
    let secret = ctx.memory.freshest_secret(
        uid,
        &secret_name,
        || r.secrets.get(namespace, &secret_name),
        ctx.overlay_ttl(),
    );
    if secret.is_some() || deleting {
        return Ok(secret);
    }
    // The watch sees only Secrets labelled as ours: a foreign Secret of that name is found by a
    // direct read, before anything is registered for a Secret that cannot be written (design
    // §3.1 step 3: a conflict costs no remote call). One read per reconcile that finds no Secret
    // of ours in the cache: a new resource, a deleted Secret, a conflict.
    r.cluster
        .get_secret(agent, &secret_name)
        .await
        .map_err(Error::Kube)
}

/// An object the Rust type rejects (stored through an older or looser CRD). The planner needs
/// its metadata, its stored status (read directly: the watch kept only the metadata) and what is
/// wrong with it; its spec is unknown, and no decision reads it.
async fn observe_malformed(invalid: &InvalidObject, r: &Reconciler) -> Result<Observed> {
    let ctx = &r.ctx;
    let message = format!(
        "the object does not match the LatticeAgent schema: {}",
        sanitize_serde_error(&invalid.error)
    );
    tracing::warn!(error = %message, "malformed LatticeAgent");
    let namespace = invalid.metadata.namespace.clone().unwrap_or_default();
    let api: Api<DynamicObject> = Api::namespaced_with(
        ctx.client.clone(),
        &namespace,
        &ApiResource::erase::<LatticeAgent>(&()),
    );
    let name = invalid.metadata.name.clone().unwrap_or_default();
    let stored = api.get_opt(&name).await?;
    let (metadata, status) = match stored {
        Some(obj) => {
            let status = obj
                .data
                .get("status")
                .and_then(|s| serde_json::from_value::<LatticeAgentStatus>(s.clone()).ok());
            (obj.metadata, status)
        }
        // Gone meanwhile: nothing to report, and its deletion needs nothing either.
        None => (deleted(&invalid.metadata), None),
    };
    let mut resource = LatticeAgent::new(&name, Default::default());
    resource.metadata = metadata;
    resource.metadata.managed_fields = None;
    resource.status = status;
    let mut observed = Observed::new(
        jiff::Timestamp::now(),
        ctx.settings.clone(),
        resource,
        SecretView::Absent,
    );
    observed.malformed = Some(message);
    Ok(observed)
}

/// `meta` of an object found gone: deleted, without finalizers.
fn deleted(meta: &ObjectMeta) -> ObjectMeta {
    let mut meta = meta.clone();
    meta.finalizers = None;
    meta.deletion_timestamp = Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
        jiff::Timestamp::now(),
    ));
    meta
}

/// A serde error without the values it quotes (a value could be anything a user pasted).
pub(crate) fn sanitize_serde_error(error: &str) -> String {
    let mut out = String::with_capacity(error.len());
    let mut in_quotes = false;
    for c in error.chars() {
        if c == '"' {
            if in_quotes {
                out.push_str("…\"");
            } else {
                out.push('"');
            }
            in_quotes = !in_quotes;
        } else if !in_quotes {
            out.push(c);
        }
    }
    truncate(&redact(&out), 500)
}

#[cfg(test)]
mod tests {
    use kube::Resource;

    use super::*;

    #[test]
    fn malformed_objects_are_reported_without_their_values() {
        let g: Guarded = serde_json::from_value(serde_json::json!({
            "apiVersion": "agentlattice.io/v1alpha1",
            "kind": "LatticeAgent",
            "metadata": {"name": "bad", "namespace": "ns", "uid": "u2"},
            "spec": {"capabilities": "al_agent_SHOULDNOTLEAK12345 is not a list"},
        }))
        .expect("test object");
        let Err(invalid) = &g.0 else {
            panic!("the object should not parse");
        };
        let message = sanitize_serde_error(&invalid.error);
        assert!(!message.contains("al_agent_"), "{message}");
        assert!(!message.contains("SHOULDNOTLEAK"), "{message}");
        assert!(message.to_lowercase().contains("invalid type"), "{message}");
        assert_eq!(g.meta().name.as_deref(), Some("bad"));
    }
}
