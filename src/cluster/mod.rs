//! The Kubernetes side of the operator: the [`Cluster`] trait the executor writes through, its
//! implementation on a kube client ([`KubeCluster`]), the watches that feed the caches
//! ([`watch`]), the finalizer patches ([`finalizer`]), the CRD checks at start-up, and how a
//! controller is stopped ([`shutdown`]).
//!
//! [`KubeCluster`] is the only writer of the operator's Kubernetes objects, and it keeps the
//! per-object memory (crate `memory`) in step with its writes: each write is announced before it
//! is sent and remembered (as an overlay) after it returned, and a write refused as out of date
//! drops the overlay it was based on. The executor never touches the memory.

mod crd;
pub mod finalizer;
mod predicate;
pub mod shutdown;
pub mod watch;

use std::sync::Arc;

use futures::future::BoxFuture;
use k8s_openapi::api::apps::v1::{DaemonSet, Deployment, StatefulSet};
use k8s_openapi::api::core::v1::{ObjectReference, Secret};
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::core::ObjectMeta;
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Resource, ResourceExt};

pub use crd::{CRD_NAME, check_crd, install_crd};
pub use predicate::predicate_hash;

use crate::cache::CompactStore;
use crate::cache::agent::StoredAgent;
use crate::crd::{GROUP, LatticeAgent};
use crate::events::Publisher;
use crate::memory::Memory;
use crate::plan::{self, WorkloadKind};
use crate::secret::{ObservedSecret, cache_form, fingerprint};

/// The event reporter (`reportingController`), and the field manager of the CRD install.
pub const REPORTER: &str = "lattice-operator";

/// The Kubernetes side effects of a reconcile. Secrets come back in cache form (digests, no
/// key: `secret::cache_form`).
pub trait Cluster: Send + Sync {
    /// Creates `owner`'s Secret (fails with 409 `AlreadyExists` if one exists).
    fn create_secret<'a>(
        &'a self,
        owner: &'a LatticeAgent,
        secret: &'a Secret,
    ) -> BoxFuture<'a, kube::Result<Secret>>;
    /// JSON-merge-patches `owner`'s Secret `current` (the patch carries its resourceVersion
    /// precondition).
    fn patch_secret<'a>(
        &'a self,
        owner: &'a LatticeAgent,
        current: &'a ObservedSecret,
        patch: &'a serde_json::Value,
    ) -> BoxFuture<'a, kube::Result<Secret>>;
    /// Reads the Secret `name` of `owner`'s namespace directly (one the watch does not see: not
    /// labelled as ours).
    fn get_secret<'a>(
        &'a self,
        owner: &'a LatticeAgent,
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
    /// Starts a rolling restart of the workload `kind/name` of `owner`'s namespace for the key
    /// `key_id`, at `at` (its pod template's restart annotations; the same key gives the same
    /// template, so a repeat changes nothing).
    fn restart_workload<'a>(
        &'a self,
        owner: &'a LatticeAgent,
        kind: WorkloadKind,
        name: &'a str,
        key_id: &'a str,
        at: jiff::Timestamp,
    ) -> BoxFuture<'a, kube::Result<()>>;
    /// Publishes an event about `resource` (failures are logged, never fatal).
    fn publish<'a>(
        &'a self,
        resource: &'a LatticeAgent,
        event: &'a plan::Event,
        action: &'a str,
    ) -> BoxFuture<'a, ()>;
}

/// [`Cluster`] on a kube client, for the resources of one controller (its caches answer whether
/// a write is already cached).
#[derive(Clone)]
pub struct KubeCluster {
    client: kube::Client,
    events: Arc<Publisher>,
    memory: Arc<Memory>,
    agents: Store<StoredAgent>,
    secrets: CompactStore<Secret>,
}

impl KubeCluster {
    /// The cluster of `client` for one controller: events through `events`, writes recorded in
    /// `memory`, and the controller's caches.
    pub fn new(
        client: kube::Client,
        events: Arc<Publisher>,
        memory: Arc<Memory>,
        agents: Store<StoredAgent>,
        secrets: CompactStore<Secret>,
    ) -> Self {
        KubeCluster {
            client,
            events,
            memory,
            agents,
            secrets,
        }
    }

    fn secrets_in(&self, namespace: &str) -> Api<Secret> {
        Api::namespaced(self.client.clone(), namespace)
    }

    fn agents_in(&self, namespace: &str) -> Api<LatticeAgent> {
        Api::namespaced(self.client.clone(), namespace)
    }

    /// The resourceVersion the LatticeAgent cache holds for `resource` (`None`: not cached, or
    /// another object of that name).
    fn cached_version(&self, resource: &LatticeAgent) -> Option<String> {
        let meta = &resource.metadata;
        self.agents
            .get(&ObjectRef::new(&resource.name_any()).within(meta.namespace.as_deref()?))
            .filter(|g| g.meta().uid == meta.uid)
            .and_then(|g| g.meta().resource_version.clone())
    }

    /// Remembers the Secret `secret` (as the API server returned it, or read past the cache) of
    /// `owner`; returns its cache form.
    fn remember_secret(
        &self,
        owner: &LatticeAgent,
        replaced: Option<String>,
        secret: Secret,
    ) -> Secret {
        let cached = cache_form(secret);
        let namespace = owner.metadata.namespace.as_deref().unwrap_or_default();
        let name = cached.metadata.name.as_deref().unwrap_or_default();
        self.memory
            .wrote_secret(uid(owner), replaced, cached.clone(), |rv| {
                self.secrets.holds_version(namespace, name, rv)
            });
        cached
    }

    fn refused(&self, owner: &LatticeAgent, e: &kube::Error) {
        if matches!(e, kube::Error::Api(s) if s.code == 404 || s.code == 409) {
            self.memory.secret_write_refused(uid(owner));
        }
    }

    /// Adds the operator's finalizer to `resource` and returns the patched resource. The watch
    /// event of this patch starts no reconcile: it is announced before the patch is sent, because
    /// the watch often delivers it before the response (design §6).
    pub async fn add_finalizer(&self, resource: &LatticeAgent) -> kube::Result<LatticeAgent> {
        let Some(patch) = finalizer::add(&resource.metadata) else {
            return Ok(resource.clone());
        };
        let mut expected = resource.metadata.clone();
        expected
            .finalizers
            .get_or_insert_with(Vec::new)
            .push(crate::crd::FINALIZER.to_owned());
        self.memory
            .before_resource_write(uid(resource), predicate_hash(&expected, true));
        let patched = self
            .agents_in(resource.metadata.namespace.as_deref().unwrap_or_default())
            .patch(
                &resource.name_any(),
                &PatchParams::default(),
                &Patch::Json::<()>(patch),
            )
            .await?;
        self.memory.wrote_resource(
            uid(resource),
            resource.metadata.resource_version.clone(),
            patched.clone(),
            || self.cached_version(&patched),
        );
        Ok(patched)
    }

    /// Publishes an event about the LatticeAgent described by `meta` (which may be a malformed
    /// object, known only by its metadata).
    pub async fn publish_about(&self, meta: &ObjectMeta, event: &plan::Event, action: &str) {
        if let Err(e) = self.events.publish(&reference(meta), event, action).await {
            tracing::warn!(
                reason = %event.reason,
                error = %crate::error::kube_message(&e),
                "could not publish event"
            );
        }
    }
}

fn uid(resource: &LatticeAgent) -> &str {
    resource.metadata.uid.as_deref().unwrap_or_default()
}

/// The reference of an event about the LatticeAgent described by `meta`.
fn reference(meta: &ObjectMeta) -> ObjectReference {
    ObjectReference {
        api_version: Some(format!("{GROUP}/v1alpha1")),
        kind: Some("LatticeAgent".to_owned()),
        name: meta.name.clone(),
        namespace: meta.namespace.clone(),
        uid: meta.uid.clone(),
        resource_version: meta.resource_version.clone(),
        ..Default::default()
    }
}

impl Cluster for KubeCluster {
    fn create_secret<'a>(
        &'a self,
        owner: &'a LatticeAgent,
        secret: &'a Secret,
    ) -> BoxFuture<'a, kube::Result<Secret>> {
        Box::pin(async move {
            let namespace = secret.metadata.namespace.as_deref().unwrap_or_default();
            self.memory
                .before_secret_write(uid(owner), fingerprint(secret));
            match self
                .secrets_in(namespace)
                .create(&PostParams::default(), secret)
                .await
            {
                Ok(created) => Ok(self.remember_secret(owner, None, created)),
                Err(e) => {
                    self.refused(owner, &e);
                    Err(e)
                }
            }
        })
    }

    fn patch_secret<'a>(
        &'a self,
        owner: &'a LatticeAgent,
        current: &'a ObservedSecret,
        patch: &'a serde_json::Value,
    ) -> BoxFuture<'a, kube::Result<Secret>> {
        Box::pin(async move {
            let namespace = owner.metadata.namespace.as_deref().unwrap_or_default();
            if let Some(expected) = current.patched(namespace, patch) {
                self.memory
                    .before_secret_write(uid(owner), fingerprint(&expected));
            }
            match self
                .secrets_in(namespace)
                .patch(&current.name, &PatchParams::default(), &Patch::Merge(patch))
                .await
            {
                Ok(patched) => {
                    Ok(self.remember_secret(owner, current.resource_version.clone(), patched))
                }
                Err(e) => {
                    self.refused(owner, &e);
                    Err(e)
                }
            }
        })
    }

    fn get_secret<'a>(
        &'a self,
        owner: &'a LatticeAgent,
        name: &'a str,
    ) -> BoxFuture<'a, kube::Result<Option<Secret>>> {
        Box::pin(async move {
            let namespace = owner.metadata.namespace.as_deref().unwrap_or_default();
            let found = self.secrets_in(namespace).get_opt(name).await?;
            Ok(found.map(|s| self.remember_secret(owner, None, s)))
        })
    }

    fn replace_status<'a>(
        &'a self,
        resource: &'a LatticeAgent,
    ) -> BoxFuture<'a, kube::Result<LatticeAgent>> {
        Box::pin(async move {
            let namespace = resource.metadata.namespace.as_deref().unwrap_or_default();
            let written = self
                .agents_in(namespace)
                .replace_status(&resource.name_any(), &PostParams::default(), resource)
                .await?;
            self.memory.wrote_resource(
                uid(resource),
                resource.metadata.resource_version.clone(),
                written.clone(),
                || self.cached_version(&written),
            );
            Ok(written)
        })
    }

    fn remove_finalizer<'a>(
        &'a self,
        resource: &'a LatticeAgent,
    ) -> BoxFuture<'a, kube::Result<LatticeAgent>> {
        Box::pin(async move {
            let Some(patch) = finalizer::remove(&resource.metadata) else {
                return Ok(resource.clone());
            };
            self.agents_in(resource.metadata.namespace.as_deref().unwrap_or_default())
                .patch(
                    &resource.name_any(),
                    &PatchParams::default(),
                    &Patch::Json::<()>(patch),
                )
                .await
        })
    }

    fn restart_workload<'a>(
        &'a self,
        owner: &'a LatticeAgent,
        kind: WorkloadKind,
        name: &'a str,
        key_id: &'a str,
        at: jiff::Timestamp,
    ) -> BoxFuture<'a, kube::Result<()>> {
        Box::pin(async move {
            let namespace = owner.metadata.namespace.as_deref().unwrap_or_default();
            let patch = crate::workloads::restart_patch(key_id, at);
            let params = PatchParams::default();
            let patch = Patch::Merge(&patch);
            let client = self.client.clone();
            match kind {
                WorkloadKind::Deployment => {
                    Api::<Deployment>::namespaced(client, namespace)
                        .patch(name, &params, &patch)
                        .await?;
                }
                WorkloadKind::StatefulSet => {
                    Api::<StatefulSet>::namespaced(client, namespace)
                        .patch(name, &params, &patch)
                        .await?;
                }
                WorkloadKind::DaemonSet => {
                    Api::<DaemonSet>::namespaced(client, namespace)
                        .patch(name, &params, &patch)
                        .await?;
                }
            }
            Ok(())
        })
    }

    fn publish<'a>(
        &'a self,
        resource: &'a LatticeAgent,
        event: &'a plan::Event,
        action: &'a str,
    ) -> BoxFuture<'a, ()> {
        Box::pin(self.publish_about(&resource.metadata, event, action))
    }
}

#[cfg(test)]
mod tests;
