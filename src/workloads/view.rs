//! What the operator keeps of a workload: a few hundred bytes instead of the object (10,000
//! Deployments must fit in a small pod, docs/benchmarks.md). Pure: from the typed object.

use std::collections::BTreeMap;

use jiff::Timestamp;
use k8s_openapi::api::apps::v1::{DaemonSet, Deployment, StatefulSet};
use k8s_openapi::api::core::v1::{PodSpec, PodTemplateSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use super::{KUBECTL_RESTARTED_AT_ANNOTATION, RESTARTED_AT_ANNOTATION, RESTARTED_FOR_ANNOTATION};
use crate::plan::{Consumer, KeySource, Rollout, WorkloadKind};
use crate::secret::is_api_key_field;

/// A workload, as far as consumers of agent keys go.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WorkloadView {
    /// Kind.
    pub kind: WorkloadKind,
    /// Name.
    pub name: String,
    /// Creation time.
    pub created_at: Option<Timestamp>,
    /// The Secrets whose agent key (`AL_API_KEY`) its pods read, and how (sorted by name).
    pub uses: Vec<(String, KeySource)>,
    /// The operator's last restart: key id and time.
    pub restarted_for: Option<(String, Option<Timestamp>)>,
    /// `kubectl rollout restart`'s time.
    pub restarted_at: Option<Timestamp>,
    /// Where its rollout stands.
    pub rollout: Rollout,
}

impl WorkloadView {
    /// The consumer this workload is of the Secret `secret`, if it reads its key.
    pub fn consumer_of(&self, secret: &str) -> Option<Consumer> {
        let (_, reads) = self.uses.iter().find(|(s, _)| s == secret)?;
        Some(Consumer {
            kind: self.kind,
            name: self.name.clone(),
            reads: *reads,
            created_at: self.created_at,
            restarted_for: self.restarted_for.clone(),
            restarted_at: self.restarted_at,
            rollout: self.rollout,
        })
    }

    /// The view of a Deployment.
    pub fn of_deployment(d: &Deployment) -> WorkloadView {
        let spec = d.spec.as_ref();
        let status = d.status.as_ref();
        let wanted = spec.and_then(|s| s.replicas).unwrap_or(1);
        let observed = status.and_then(|s| s.observed_generation);
        let stuck = status
            .and_then(|s| s.conditions.as_ref())
            .into_iter()
            .flatten()
            .any(|c| {
                c.type_ == "Progressing"
                    && c.status == "False"
                    && c.reason.as_deref() == Some("ProgressDeadlineExceeded")
            });
        let done = current_generation(&d.metadata, observed) && {
            let s = status.cloned().unwrap_or_default();
            let updated = s.updated_replicas.unwrap_or(0);
            updated == wanted
                && s.replicas.unwrap_or(0) == updated
                && s.available_replicas.unwrap_or(0) == updated
        };
        let paused = spec.and_then(|s| s.paused).unwrap_or(false);
        view(
            WorkloadKind::Deployment,
            &d.metadata,
            spec.map(|s| &s.template),
            rollout(done, stuck || paused),
        )
    }

    /// The view of a StatefulSet.
    pub fn of_stateful_set(s: &StatefulSet) -> WorkloadView {
        let spec = s.spec.as_ref();
        let status = s.status.clone().unwrap_or_default();
        let wanted = spec.and_then(|s| s.replicas).unwrap_or(1);
        let on_delete = spec
            .and_then(|s| s.update_strategy.as_ref())
            .and_then(|u| u.type_.as_deref())
            == Some("OnDelete");
        let done = current_generation(&s.metadata, status.observed_generation)
            && status.ready_replicas.unwrap_or(0) >= wanted
            && status.updated_replicas.unwrap_or(0) >= wanted
            && status.update_revision.is_some()
            && status.current_revision == status.update_revision;
        view(
            WorkloadKind::StatefulSet,
            &s.metadata,
            spec.map(|s| &s.template),
            // With `OnDelete`, a new template reaches pods only when someone deletes them.
            rollout(done, on_delete && !done),
        )
    }

    /// The view of a DaemonSet.
    pub fn of_daemon_set(d: &DaemonSet) -> WorkloadView {
        let spec = d.spec.as_ref();
        let status = d.status.clone().unwrap_or_default();
        let on_delete = spec
            .and_then(|s| s.update_strategy.as_ref())
            .and_then(|u| u.type_.as_deref())
            == Some("OnDelete");
        let desired = status.desired_number_scheduled;
        let done = current_generation(&d.metadata, status.observed_generation)
            && status.updated_number_scheduled.unwrap_or(0) == desired
            && status.number_available.unwrap_or(0) == desired;
        view(
            WorkloadKind::DaemonSet,
            &d.metadata,
            spec.map(|s| &s.template),
            rollout(done, on_delete && !done),
        )
    }
}

fn rollout(done: bool, stuck: bool) -> Rollout {
    if done {
        Rollout::Complete
    } else if stuck {
        Rollout::Stuck
    } else {
        Rollout::InProgress
    }
}

/// Whether the controller has seen the workload's current generation.
fn current_generation(meta: &ObjectMeta, observed: Option<i64>) -> bool {
    observed.is_some_and(|o| o >= meta.generation.unwrap_or(0))
}

fn view(
    kind: WorkloadKind,
    meta: &ObjectMeta,
    template: Option<&PodTemplateSpec>,
    rollout: Rollout,
) -> WorkloadView {
    let annotations = template
        .and_then(|t| t.metadata.as_ref())
        .and_then(|m| m.annotations.as_ref());
    let at = |key: &str| {
        annotations
            .and_then(|a| a.get(key))
            .and_then(|v| v.parse::<Timestamp>().ok())
    };
    let restarted_for = annotations
        .and_then(|a| a.get(RESTARTED_FOR_ANNOTATION))
        .map(|id| (id.clone(), at(RESTARTED_AT_ANNOTATION)));
    WorkloadView {
        kind,
        name: meta.name.clone().unwrap_or_default(),
        created_at: meta.creation_timestamp.as_ref().map(|t| t.0),
        uses: template
            .and_then(|t| t.spec.as_ref())
            .map(key_uses)
            .unwrap_or_default(),
        restarted_for,
        restarted_at: at(KUBECTL_RESTARTED_AT_ANNOTATION),
        rollout,
    }
}

/// The Secrets whose agent key (`AL_API_KEY`, or Alter's `ALTER_API_KEY`) the pods of `spec`
/// read, and how. A Secret read in several
/// ways counts as the one that needs a restart: environment, then a file through `subPath`,
/// then a file. Init containers read at start only, like the environment.
pub fn key_uses(spec: &PodSpec) -> Vec<(String, KeySource)> {
    let mut uses: BTreeMap<String, KeySource> = BTreeMap::new();
    let mut note = |secret: &str, how: KeySource| {
        let slot = uses.entry(secret.to_owned()).or_insert(how);
        if rank(how) > rank(*slot) {
            *slot = how;
        }
    };
    // Volumes that hold the key file, by volume name: the Secret they project it from.
    let mut key_volumes: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for v in spec.volumes.iter().flatten() {
        if let Some(s) = &v.secret
            && let Some(name) = s.secret_name.as_deref()
            && projects_key(s.items.as_deref())
        {
            key_volumes.entry(&v.name).or_default().push(name);
        }
        for source in v.projected.iter().flat_map(|p| p.sources.iter().flatten()) {
            if let Some(s) = &source.secret
                && projects_key(s.items.as_deref())
            {
                key_volumes.entry(&v.name).or_default().push(&s.name);
            }
        }
    }
    let containers = spec
        .containers
        .iter()
        .map(|c| (c, false))
        .chain(spec.init_containers.iter().flatten().map(|c| (c, true)));
    for (c, init) in containers {
        for e in c.env.iter().flatten() {
            if let Some(r) = e
                .value_from
                .as_ref()
                .and_then(|v| v.secret_key_ref.as_ref())
                && is_api_key_field(&r.key)
            {
                note(&r.name, KeySource::Environment);
            }
        }
        for e in c.env_from.iter().flatten() {
            if let Some(r) = &e.secret_ref {
                note(&r.name, KeySource::Environment);
            }
        }
        for m in c.volume_mounts.iter().flatten() {
            for secret in key_volumes.get(m.name.as_str()).into_iter().flatten() {
                let how = if init {
                    KeySource::Environment
                } else if m.sub_path.as_deref().is_some_and(|p| !p.is_empty())
                    || m.sub_path_expr.as_deref().is_some_and(|p| !p.is_empty())
                {
                    KeySource::SubPathFile
                } else {
                    KeySource::File
                };
                note(secret, how);
            }
        }
    }
    uses.into_iter().collect()
}

fn rank(how: KeySource) -> u8 {
    match how {
        KeySource::File => 0,
        KeySource::SubPathFile => 1,
        KeySource::Environment => 2,
    }
}

/// Whether a Secret volume (or projection) with these `items` holds the key file: all keys
/// when `items` is absent, else only if it lists the key.
fn projects_key(items: Option<&[k8s_openapi::api::core::v1::KeyToPath]>) -> bool {
    items.is_none_or(|items| items.iter().any(|i| is_api_key_field(&i.key)))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn deployment(template: serde_json::Value, status: serde_json::Value) -> Deployment {
        serde_json::from_value(json!({
            "metadata": {"name": "web", "namespace": "ns", "generation": 2,
                         "creationTimestamp": "2026-12-01T00:00:00Z"},
            "spec": {"replicas": 3, "selector": {}, "template": template},
            "status": status,
        }))
        .expect("deployment")
    }

    fn pod(spec: serde_json::Value) -> serde_json::Value {
        json!({"metadata": {"annotations": {
            RESTARTED_FOR_ANNOTATION: "key-2",
            RESTARTED_AT_ANNOTATION: "2026-12-07T10:00:00Z",
        }}, "spec": spec})
    }

    #[test]
    fn each_way_of_reading_the_key_is_found() {
        let spec = json!({
            "initContainers": [{"name": "init", "volumeMounts": [{"name": "init-key", "mountPath": "/k"}]}],
            "containers": [
                {"name": "a", "env": [
                    {"name": "KEY", "valueFrom": {"secretKeyRef": {"name": "env-one", "key": "AL_API_KEY"}}},
                    {"name": "URL", "valueFrom": {"secretKeyRef": {"name": "url-only", "key": "AL_BASE_URL"}}},
                ], "envFrom": [{"secretRef": {"name": "env-all"}}]},
                {"name": "b", "volumeMounts": [
                    {"name": "file", "mountPath": "/etc/al"},
                    {"name": "sub", "mountPath": "/etc/key", "subPath": "AL_API_KEY"},
                    {"name": "proj", "mountPath": "/etc/p"},
                    {"name": "other-items", "mountPath": "/etc/o"},
                    {"name": "both", "mountPath": "/etc/b"},
                ], "env": [{"name": "K", "valueFrom": {"secretKeyRef": {"name": "both", "key": "AL_API_KEY"}}}]},
            ],
            "volumes": [
                {"name": "file", "secret": {"secretName": "file-one"}},
                {"name": "sub", "secret": {"secretName": "sub-one"}},
                {"name": "proj", "projected": {"sources": [{"secret": {"name": "proj-one",
                    "items": [{"key": "AL_API_KEY", "path": "key"}]}}]}},
                {"name": "other-items", "secret": {"secretName": "no-key",
                    "items": [{"key": "AL_BASE_URL", "path": "url"}]}},
                {"name": "both", "secret": {"secretName": "both"}},
                {"name": "unmounted", "secret": {"secretName": "unmounted"}},
                {"name": "init-key", "secret": {"secretName": "init-one"}},
            ],
        });
        let d = deployment(pod(spec), json!({}));
        let v = WorkloadView::of_deployment(&d);
        assert_eq!(
            v.uses,
            [
                ("both".to_owned(), KeySource::Environment),
                ("env-all".to_owned(), KeySource::Environment),
                ("env-one".to_owned(), KeySource::Environment),
                ("file-one".to_owned(), KeySource::File),
                ("init-one".to_owned(), KeySource::Environment),
                ("proj-one".to_owned(), KeySource::File),
                ("sub-one".to_owned(), KeySource::SubPathFile),
            ]
        );
        assert_eq!(
            v.restarted_for,
            Some((
                "key-2".to_owned(),
                Some("2026-12-07T10:00:00Z".parse().unwrap())
            ))
        );
        assert!(v.consumer_of("url-only").is_none());
        assert!(v.consumer_of("unmounted").is_none());
    }

    #[test]
    fn alters_key_field_is_found_as_well() {
        let spec = json!({
            "containers": [{"name": "a",
                "env": [
                    {"name": "KEY", "valueFrom": {"secretKeyRef": {"name": "alter-env", "key": "ALTER_API_KEY"}}},
                    {"name": "URL", "valueFrom": {"secretKeyRef": {"name": "alter-url", "key": "ALTER_BASE_URL"}}},
                ],
                "volumeMounts": [{"name": "f", "mountPath": "/k"}]}],
            "volumes": [{"name": "f", "secret": {"secretName": "alter-file",
                "items": [{"key": "ALTER_API_KEY", "path": "key"}]}}],
        });
        let v = WorkloadView::of_deployment(&deployment(pod(spec), json!({})));
        assert_eq!(
            v.uses,
            [
                ("alter-env".to_owned(), KeySource::Environment),
                ("alter-file".to_owned(), KeySource::File),
            ]
        );
    }

    #[test]
    fn rollout_states_follow_kubectl_rollout_status() {
        let spec = json!({"containers": [{"name": "a"}]});
        let status = |observed: i64, updated: i64, replicas: i64, available: i64| {
            json!({"observedGeneration": observed, "updatedReplicas": updated,
                   "replicas": replicas, "availableReplicas": available})
        };
        let state = |s| WorkloadView::of_deployment(&deployment(pod(spec.clone()), s)).rollout;
        assert_eq!(state(status(2, 3, 3, 3)), Rollout::Complete);
        assert_eq!(
            state(status(1, 3, 3, 3)),
            Rollout::InProgress,
            "generation not observed"
        );
        assert_eq!(
            state(status(2, 3, 4, 3)),
            Rollout::InProgress,
            "an old replica is left"
        );
        assert_eq!(
            state(status(2, 3, 3, 2)),
            Rollout::InProgress,
            "not available yet"
        );
        let stuck = json!({"observedGeneration": 2, "updatedReplicas": 1, "replicas": 4,
            "conditions": [{"type": "Progressing", "status": "False",
                            "reason": "ProgressDeadlineExceeded"}]});
        assert_eq!(state(stuck), Rollout::Stuck);
    }
}
