//! Execute (design §3): perform the planner's effects one at a time — plan → perform one
//! effect → fold its result into [`Observed`] → plan again — at most [`MAX_STEPS`] times per
//! reconcile.
//!
//! Effects go to AgentLattice ([`Backend`]) and the Kubernetes API ([`Cluster`]), both behind
//! traits so the loop can be tested with fakes. The executor holds the plaintext of a key
//! received in this reconcile (registration or mint) until the Secret write that delivers it, and
//! nowhere else; it emits each effect's events once the effect succeeded.

use std::collections::HashMap;
use std::sync::Arc;

use crate::cluster::Cluster;
use crate::crd::LatticeAgent;
use crate::error::{Error, kube_message};
use crate::metrics::Metrics;
use crate::plan::{
    self, Effect, ErrorClass, Failure, KeyWrite, MintedKey, Observed, Outcome, Precondition,
    RegisterOutcome, SecretWrite, Settled, Step, WritePurpose,
};
use crate::remote::{Backend, IssuedKey, RemoteError};
use crate::secret::{SecretView, key_digest};

/// A fail point: called with `before:<Effect>` and `after:<Effect>` around every effect of every
/// reconcile; returning `true` makes the reconcile stop right there, forever (a simulated crash:
/// the test then drops the operator and starts a fresh one with empty memory). Tests only.
pub type FailPoints = Arc<dyn Fn(&str) -> bool + Send + Sync>;

/// The most steps one reconcile may take (a planner that does not settle is a bug; the
/// reconcile is retried with backoff).
pub const MAX_STEPS: usize = 32;

/// How a reconcile's work ended.
#[derive(Debug)]
pub struct Report {
    /// How the planner settled.
    pub settled: Settled,
    /// What was known at the end.
    pub observed: Observed,
    /// The effects performed, by kind (for logs and tests).
    pub effects: Vec<&'static str>,
}

/// The executor of one reconcile.
pub struct Executor<'a> {
    /// AgentLattice.
    pub remote: &'a dyn Backend,
    /// The Kubernetes API.
    pub cluster: &'a dyn Cluster,
    /// Metrics.
    pub metrics: &'a Metrics,
    /// Fail points (tests only).
    pub failpoints: Option<&'a FailPoints>,
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
        let mut keys: HashMap<String, IssuedKey> = HashMap::new();
        let mut effects = Vec::new();
        for _ in 0..MAX_STEPS {
            // Each decision is made at the time it is made: a retiring key's grace period counts
            // from the planning of the Secret write that replaces it, not from the start of a
            // reconcile whose mint may have waited on retries (design §3.2).
            observed.now = observed.now.max(jiff::Timestamp::now());
            match plan::next_step(&observed) {
                Step::Settle(settled) => {
                    return Ok(Report {
                        settled,
                        observed,
                        effects,
                    });
                }
                Step::Perform { effect, events } => {
                    let kind = effect.kind();
                    self.fail_point("before", kind).await;
                    tracing::debug!(action = kind, "performing");
                    effects.push(kind);
                    let performed = self.perform(&effect, &mut observed, &mut keys).await;
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
        effect: &Effect,
        observed: &mut Observed,
        keys: &mut HashMap<String, IssuedKey>,
    ) -> Performed {
        let kind = effect.kind();
        let remote = |e: RemoteError| Failure {
            effect: kind,
            class: e.class,
            message: e.message,
        };
        let result = match effect {
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
                return self.write_secret(write, observed, keys).await;
            }
            Effect::ReleaseSecret {
                name,
                resource_version,
                owner_references,
            } => {
                let Some(current) = observed.secret.present().filter(|s| &s.name == name) else {
                    return Performed::Result(Err(internal(
                        kind,
                        "a Secret release was planned for a Secret that is not there",
                    )));
                };
                let mut metadata = serde_json::json!({
                    "ownerReferences": serde_json::to_value(owner_references).unwrap_or_default(),
                });
                if let Some(rv) = resource_version {
                    metadata["resourceVersion"] = serde_json::Value::String(rv.clone());
                }
                let patch = serde_json::json!({ "metadata": metadata });
                self.cluster
                    .patch_secret(&observed.resource, current, &patch)
                    .await
                    .map(|secret| {
                        Outcome::Secret(SecretView::observe_with(
                            &secret,
                            uid_of(&observed.resource),
                            observed.settings.backend.secret_fields(),
                        ))
                    })
                    .map_err(|e| kube_failure(kind, &e))
            }
            Effect::RestartConsumer {
                kind: workload,
                name,
                key_id,
                at,
            } => self
                .cluster
                .restart_workload(&observed.resource, *workload, name, key_id, *at)
                .await
                .map(|()| Outcome::Restarted(*at))
                .map_err(|e| kube_failure(kind, &e)),
            Effect::RemoveFinalizer => self
                .cluster
                .remove_finalizer(&observed.resource)
                .await
                .map(|released| Outcome::Resource(Box::new(released)))
                .map_err(|e| kube_failure(kind, &e)),
            Effect::WriteStatus(status) => {
                let mut resource = observed.resource.clone();
                resource.status = Some((**status).clone());
                self.cluster
                    .replace_status(&resource)
                    .await
                    .map(|written| Outcome::Resource(Box::new(written)))
                    .map_err(|e| kube_failure(kind, &e))
            }
        };
        Performed::Result(result)
    }

    async fn write_secret(
        &self,
        write: &SecretWrite,
        observed: &mut Observed,
        keys: &mut HashMap<String, IssuedKey>,
    ) -> Performed {
        let kind = "WriteSecret";
        let owner = &observed.resource;
        let uid = uid_of(owner).to_owned();
        let fields = write.desired.fields;
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
                match self.cluster.create_secret(owner, &secret).await {
                    Err(kube::Error::Api(status))
                        if status.code == 409 && status.reason == "AlreadyExists" =>
                    {
                        // A Secret the watch does not see (not labelled as ours): read it and
                        // plan again with it.
                        return match self.cluster.get_secret(owner, &write.desired.name).await {
                            Ok(Some(found)) => {
                                tracing::debug!(
                                    secret = %write.desired.name,
                                    "the Secret exists but is not labelled as ours; read it"
                                );
                                observed.secret = SecretView::observe_with(&found, &uid, fields);
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
                    other => other,
                }
            }
            Precondition::Update { .. } => {
                let Some(current) = observed.secret.present() else {
                    return Performed::Result(Err(internal(
                        kind,
                        "a Secret patch was planned for a Secret that is not there",
                    )));
                };
                let patch = write
                    .desired
                    .merge_patch(current, key.map(|k| k.expose_secret().as_bytes()));
                self.cluster.patch_secret(owner, current, &patch).await
            }
        };
        Performed::Result(match result {
            Ok(secret) => {
                if let Some(id) = fresh_id {
                    // Delivered: the plaintext is dropped (and zeroed) now.
                    keys.remove(id);
                }
                if write.purpose == WritePurpose::Rotate {
                    self.metrics.key_rotated();
                }
                Ok(Outcome::Secret(SecretView::observe_with(
                    &secret, &uid, fields,
                )))
            }
            Err(e) => Err(kube_failure(kind, &e)),
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
        Effect::RestartConsumer {
            kind, name, key_id, ..
        } => {
            tracing::info!(%kind, workload = %name, key_id, "restarted consumer");
        }
        Effect::FindAgents { .. } | Effect::FetchAgent { .. } | Effect::FetchKeys { .. } => {}
    }
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
