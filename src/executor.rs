//! The executor (design §3): plan → perform one action → fold its result → plan again, at most
//! [`MAX_STEPS`] times per reconcile.
//!
//! It performs the planner's actions against AgentLattice ([`Remote`]) and the Kubernetes API
//! ([`Cluster`]), both behind traits so the loop can be tested with fakes. It holds the plaintext
//! of a key received in this reconcile (registration or mint) until the Secret write that
//! delivers it, and nowhere else; it emits each step's events once the step succeeded.

use std::collections::HashMap;

use agentlattice::AgentKey;
use futures::future::BoxFuture;
use k8s_openapi::api::core::v1::Secret;

use crate::context::{FailPoints, Memory};
use crate::crd::LatticeAgent;
use crate::error::{Error, kube_message};
use crate::metrics::Metrics;
use crate::plan::{
    self, Effect, ErrorClass, Failure, KeyWrite, MintedKey, Observed, Outcome, Precondition,
    RegisterOutcome, SecretWrite, Settled, Step, WritePurpose,
};
use crate::remote::{Remote, RemoteError};
use crate::secret::{SecretView, cache_form, key_digest};

/// The most steps one reconcile may take (a planner that does not settle is a bug; the
/// reconcile is retried with backoff).
pub const MAX_STEPS: usize = 32;

/// The Kubernetes side effects of a reconcile.
pub trait Cluster: Send + Sync {
    /// Creates a Secret (fails with 409 `AlreadyExists` if one exists).
    fn create_secret<'a>(&'a self, secret: &'a Secret) -> BoxFuture<'a, kube::Result<Secret>>;
    /// JSON-merge-patches a Secret (the patch carries its resourceVersion precondition).
    fn patch_secret<'a>(
        &'a self,
        namespace: &'a str,
        name: &'a str,
        patch: &'a serde_json::Value,
    ) -> BoxFuture<'a, kube::Result<Secret>>;
    /// Reads a Secret directly (for one the watch does not see: not labelled as ours).
    fn get_secret<'a>(
        &'a self,
        namespace: &'a str,
        name: &'a str,
    ) -> BoxFuture<'a, kube::Result<Option<Secret>>>;
    /// Replaces the status of `resource` (its resourceVersion is the precondition).
    fn replace_status<'a>(
        &'a self,
        resource: &'a LatticeAgent,
    ) -> BoxFuture<'a, kube::Result<LatticeAgent>>;
    /// Removes the operator's finalizer from `resource` (cleanup is complete).
    fn remove_finalizer<'a>(
        &'a self,
        resource: &'a LatticeAgent,
    ) -> BoxFuture<'a, kube::Result<LatticeAgent>>;
    /// Publishes an event about `resource` (failures are logged, never fatal).
    fn publish<'a>(
        &'a self,
        resource: &'a LatticeAgent,
        event: &'a plan::Event,
        action: &'a str,
    ) -> BoxFuture<'a, ()>;
}

/// A reconcile's result, with what the caller should remember.
#[derive(Debug)]
pub struct Report {
    /// How it ended.
    pub settled: Settled,
    /// What was known at the end.
    pub observed: Observed,
    /// Secrets written (or read past the cache): (resourceVersion replaced, cache form).
    pub secrets: Vec<(Option<String>, Secret)>,
    /// Status writes: (resourceVersion replaced, the resource returned).
    pub resources: Vec<(Option<String>, LatticeAgent)>,
    /// A Secret write failed because the cache was out of date (404, 409).
    pub secret_stale: bool,
    /// Actions performed, by kind (for logs and tests).
    pub actions: Vec<&'static str>,
}

/// The executor of one reconcile.
pub struct Executor<'a> {
    /// AgentLattice.
    pub remote: &'a dyn Remote,
    /// The Kubernetes API.
    pub cluster: &'a dyn Cluster,
    /// Metrics.
    pub metrics: &'a Metrics,
    /// Fail points (tests only).
    pub failpoints: Option<&'a FailPoints>,
    /// Told of a Secret before it is created (see [`Memory::creating_secret`]).
    pub memory: Option<&'a Memory>,
}

// Lives for one step on the stack; boxing would only add an allocation per step.
#[allow(clippy::large_enum_variant)]
enum Performed {
    Result(Result<Outcome, Failure>),
    /// What is known changed outside `record` (a foreign Secret was read): plan again.
    Replan,
}

impl Executor<'_> {
    /// Runs the plan loop from `observed` until the planner is done.
    pub async fn run(&self, mut observed: Observed) -> Result<Report, Error> {
        let mut keys: HashMap<String, AgentKey> = HashMap::new();
        let mut report = Report {
            settled: Settled {
                requeue: plan::Requeue::OnChange,
                failure: None,
                remote_checked: false,
            },
            observed: observed.clone(),
            secrets: Vec::new(),
            resources: Vec::new(),
            secret_stale: false,
            actions: Vec::new(),
        };
        for _ in 0..MAX_STEPS {
            // Each decision is made at the time it is made: a retiring key's grace period counts
            // from the planning of the Secret write that replaces it, not from the start of a
            // reconcile whose mint may have waited on retries (design §3.2).
            observed.now = observed.now.max(jiff::Timestamp::now());
            match plan::next_step(&observed) {
                Step::Settle(settled) => {
                    report.settled = settled;
                    report.observed = observed;
                    return Ok(report);
                }
                Step::Perform { effect, events } => {
                    let kind = effect.kind();
                    self.fail_point("before", kind).await;
                    tracing::debug!(action = kind, "performing");
                    report.actions.push(kind);
                    let performed = self
                        .perform(&effect, &mut observed, &mut keys, &mut report)
                        .await;
                    self.fail_point("after", kind).await;
                    match performed {
                        Performed::Replan => continue,
                        Performed::Result(result) => {
                            match &result {
                                Ok(_) => {
                                    log_success(&effect);
                                    for event in &events {
                                        self.cluster.publish(&observed.resource, event, kind).await;
                                    }
                                }
                                Err(failure) => tracing::debug!(
                                    action = kind,
                                    category = failure.class.category(),
                                    message = %failure.message,
                                    "action failed"
                                ),
                            }
                            observed.record(&effect, result);
                        }
                    }
                }
            }
        }
        Err(Error::TooManySteps(MAX_STEPS))
    }

    async fn fail_point(&self, when: &str, kind: &str) {
        if let Some(fp) = self.failpoints
            && fp(&format!("{when}:{kind}"))
        {
            tracing::warn!(fail_point = %format!("{when}:{kind}"), "fail point: simulated crash");
            // A crashed process does nothing more: never return.
            std::future::pending::<()>().await;
        }
    }

    async fn perform(
        &self,
        action: &Effect,
        observed: &mut Observed,
        keys: &mut HashMap<String, AgentKey>,
        report: &mut Report,
    ) -> Performed {
        let kind = action.kind();
        let remote = |e: RemoteError| Failure {
            effect: kind,
            class: e.class,
            message: e.message,
        };
        let result = match action {
            Effect::Register {
                request,
                idempotency_key,
            } => match self.remote.register(request, idempotency_key).await {
                Ok(registration) => {
                    let mut outcome = registration.outcome;
                    if let (RegisterOutcome::Created { key, .. }, Some(plaintext)) =
                        (&mut outcome, registration.key)
                    {
                        key.sha256 = key_digest(plaintext.expose_secret().as_bytes());
                        keys.insert(key.id.clone(), plaintext);
                    }
                    Ok(Outcome::Registered(outcome))
                }
                Err(e) => Err(remote(e)),
            },
            Effect::FindAgents { name } => self
                .remote
                .find_agents(name)
                .await
                .map(Outcome::Found)
                .map_err(remote),
            Effect::FetchAgent { agent_id } => self
                .remote
                .get_agent(agent_id)
                .await
                .map(Outcome::Agent)
                .map_err(remote),
            Effect::FetchKeys { agent_id } => self
                .remote
                .list_keys(agent_id)
                .await
                .map(Outcome::Keys)
                .map_err(remote),
            Effect::UpdateAgent {
                agent_id,
                capabilities,
                description,
            } => self
                .remote
                .update_agent(agent_id, capabilities.clone(), description.clone())
                .await
                .map(Outcome::Agent)
                .map_err(remote),
            Effect::HaltAgent { agent_id } => self
                .remote
                .halt_agent(agent_id)
                .await
                .map(Outcome::Agent)
                .map_err(remote),
            Effect::ResumeAgent { agent_id } => self
                .remote
                .resume_agent(agent_id)
                .await
                .map(Outcome::Agent)
                .map_err(remote),
            Effect::RevokeAgent { agent_id } => {
                let r = self.remote.revoke_agent(agent_id).await;
                if r.is_ok() {
                    self.metrics.revoked("agent");
                }
                r.map(Outcome::Agent).map_err(remote)
            }
            Effect::MintKey { agent_id, name } => {
                match self.remote.mint_key(agent_id, name).await {
                    Ok(minted) => {
                        let key = MintedKey {
                            id: minted.id,
                            prefix: minted.prefix,
                            created_at: minted.created_at,
                            sha256: key_digest(minted.key.expose_secret().as_bytes()),
                        };
                        keys.insert(key.id.clone(), minted.key);
                        Ok(Outcome::Minted(key))
                    }
                    Err(e) => Err(remote(e)),
                }
            }
            Effect::DeprecateKey { agent_id, key_id } => self
                .remote
                .deprecate_key(agent_id, key_id)
                .await
                .map(Outcome::Key)
                .map_err(remote),
            Effect::RevokeKey { agent_id, key_id } => {
                let r = self.remote.revoke_key(agent_id, key_id).await;
                if r.is_ok() {
                    self.metrics.revoked("key");
                }
                r.map(Outcome::Key).map_err(remote)
            }
            Effect::WriteSecret(write) => {
                return self.write_secret(write, observed, keys, report).await;
            }
            Effect::ReleaseSecret {
                name,
                resource_version,
                owner_references,
            } => {
                let namespace = namespace_of(&observed.resource);
                let mut metadata = serde_json::json!({
                    "ownerReferences": serde_json::to_value(owner_references).unwrap_or_default(),
                });
                if let Some(rv) = resource_version {
                    metadata["resourceVersion"] = serde_json::Value::String(rv.clone());
                }
                let patch = serde_json::json!({ "metadata": metadata });
                match self.cluster.patch_secret(&namespace, name, &patch).await {
                    Ok(secret) => {
                        let cached = cache_form(secret);
                        report
                            .secrets
                            .push((resource_version.clone(), cached.clone()));
                        Ok(Outcome::Secret(SecretView::observe(
                            &cached,
                            uid_of(&observed.resource),
                        )))
                    }
                    Err(e) => {
                        report.secret_stale = true;
                        Err(kube_failure(kind, &e))
                    }
                }
            }
            Effect::RemoveFinalizer => self
                .cluster
                .remove_finalizer(&observed.resource)
                .await
                .map(|released| Outcome::Resource(Box::new(released)))
                .map_err(|e| kube_failure(kind, &e)),
            Effect::WriteStatus(status) => {
                let mut resource = observed.resource.clone();
                resource.status = Some((**status).clone());
                let replaced = resource.metadata.resource_version.clone();
                match self.cluster.replace_status(&resource).await {
                    Ok(written) => {
                        report.resources.push((replaced, written.clone()));
                        Ok(Outcome::Resource(Box::new(written)))
                    }
                    Err(e) => Err(kube_failure(kind, &e)),
                }
            }
        };
        Performed::Result(result)
    }

    async fn write_secret(
        &self,
        write: &SecretWrite,
        observed: &mut Observed,
        keys: &mut HashMap<String, AgentKey>,
        report: &mut Report,
    ) -> Performed {
        let kind = "WriteSecret";
        let uid = uid_of(&observed.resource).to_owned();
        let fresh_id = match &write.key {
            KeyWrite::Fresh { key_id } => Some(key_id.as_str()),
            KeyWrite::Keep => None,
        };
        let key = match fresh_id {
            Some(id) => match keys.get(id) {
                Some(k) => Some(k),
                None => {
                    return Performed::Result(Err(internal(
                        kind,
                        &Error::KeyNotHeld(id.to_owned()).to_string(),
                    )));
                }
            },
            None => None,
        };
        let result = match &write.precondition {
            Precondition::Create => {
                let Some(key) = key else {
                    return Performed::Result(Err(internal(
                        kind,
                        "a Secret can only be created with a fresh key",
                    )));
                };
                let secret = write.desired.to_secret(key.expose_secret().as_bytes());
                if let Some(memory) = self.memory {
                    memory.creating_secret(&uid, &secret);
                }
                match self.cluster.create_secret(&secret).await {
                    Ok(created) => Ok((None, created)),
                    Err(kube::Error::Api(status))
                        if status.code == 409 && status.reason == "AlreadyExists" =>
                    {
                        // A Secret the watch does not see (not labelled as ours): read it and
                        // plan again with it.
                        let namespace = write.desired.namespace.clone();
                        return match self
                            .cluster
                            .get_secret(&namespace, &write.desired.name)
                            .await
                        {
                            Ok(Some(found)) => {
                                let cached = cache_form(found);
                                tracing::debug!(
                                    secret = %write.desired.name,
                                    "the Secret exists but is not labelled as ours; read it"
                                );
                                report.secrets.push((None, cached.clone()));
                                observed.secret = SecretView::observe(&cached, &uid);
                                Performed::Replan
                            }
                            Ok(None) => Performed::Result(Err(Failure {
                                effect: kind,
                                class: ErrorClass::Transient,
                                message: format!(
                                    "Secret {} was deleted while being created",
                                    write.desired.name
                                ),
                            })),
                            Err(e) => Performed::Result(Err(kube_failure(kind, &e))),
                        };
                    }
                    Err(e) => Err(e),
                }
            }
            Precondition::Update { resource_version } => {
                let Some(current) = observed.secret.present() else {
                    return Performed::Result(Err(internal(
                        kind,
                        "a Secret patch was planned for a Secret that is not there",
                    )));
                };
                let patch = write
                    .desired
                    .merge_patch(current, key.map(|k| k.expose_secret().as_bytes()));
                self.cluster
                    .patch_secret(&write.desired.namespace, &write.desired.name, &patch)
                    .await
                    .map(|s| (resource_version.clone(), s))
            }
        };
        Performed::Result(match result {
            Ok((replaced, secret)) => {
                let cached = cache_form(secret);
                report.secrets.push((replaced, cached.clone()));
                if let Some(id) = fresh_id {
                    // Delivered: the plaintext is dropped (and zeroed) now.
                    keys.remove(id);
                }
                if write.purpose == WritePurpose::Rotate {
                    self.metrics.key_rotated();
                }
                Ok(Outcome::Secret(SecretView::observe(&cached, &uid)))
            }
            Err(e) => {
                if matches!(&e, kube::Error::Api(s) if s.code == 404 || s.code == 409) {
                    report.secret_stale = true;
                }
                Err(kube_failure(kind, &e))
            }
        })
    }
}

fn log_success(action: &Effect) {
    match action {
        Effect::Register { request, .. } => {
            tracing::info!(agent_name = %request.name, "registered agent");
        }
        Effect::MintKey { agent_id, .. } => tracing::info!(agent_id, "minted key"),
        Effect::RevokeKey { agent_id, key_id } => {
            tracing::info!(agent_id, key_id, "revoked key");
        }
        Effect::DeprecateKey { agent_id, key_id } => {
            tracing::info!(agent_id, key_id, "deprecated key");
        }
        Effect::RevokeAgent { agent_id } => tracing::info!(agent_id, "revoked agent"),
        Effect::UpdateAgent { agent_id, .. } => tracing::info!(agent_id, "updated agent"),
        Effect::HaltAgent { agent_id } => tracing::info!(agent_id, "halted agent"),
        Effect::ResumeAgent { agent_id } => tracing::info!(agent_id, "resumed agent"),
        Effect::WriteSecret(w) => tracing::info!(
            secret = %w.desired.name,
            purpose = ?w.purpose,
            key_id = w.desired.record.key.as_ref().map(|k| k.id.as_str()).unwrap_or_default(),
            "wrote Secret"
        ),
        Effect::ReleaseSecret { name, .. } => tracing::info!(secret = %name, "released Secret"),
        Effect::WriteStatus(_) => tracing::debug!("wrote status"),
        Effect::RemoveFinalizer => tracing::info!("cleanup finished; finalizer removed"),
        Effect::FindAgents { .. } | Effect::FetchAgent { .. } | Effect::FetchKeys { .. } => {}
    }
}

fn namespace_of(resource: &LatticeAgent) -> String {
    resource.metadata.namespace.clone().unwrap_or_default()
}

fn uid_of(resource: &LatticeAgent) -> &str {
    resource.metadata.uid.as_deref().unwrap_or_default()
}

fn internal(effect: &'static str, message: &str) -> Failure {
    Failure {
        effect,
        class: ErrorClass::Transient,
        message: format!("internal error: {message}"),
    }
}

/// A failed Kubernetes write, classified (design §5): a 409 (stale resourceVersion) and every
/// other API error are retried with backoff; 400/422 are requests the operator should never have
/// sent.
pub fn kube_failure(effect: &'static str, e: &kube::Error) -> Failure {
    let class = match e {
        kube::Error::Api(s) if s.code == 400 || s.code == 422 => {
            ErrorClass::Invalid(s.reason.clone())
        }
        _ => ErrorClass::Transient,
    };
    Failure {
        effect,
        class,
        message: format!("{effect}: {}", kube_message(e)),
    }
}

#[cfg(test)]
mod tests;
