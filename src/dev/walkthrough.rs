//! The walkthrough `dev` prints: it applies `examples/` and shows, step by step, what the
//! operator made of it — each LatticeAgent Ready with its Secret and the key at work, each
//! workload's pods and the identity or key it reads, and one rotation of a key that workloads read
//! from the environment, from the new key to the old key's revocation.

use std::path::{Path, PathBuf};
use std::time::Duration;

use agentlattice::{ActionRequest, ActionStatus, AgentClient, AgentKey, ClientConfig};
use agentlattice_emulator::KeyStatus;
use k8s_openapi::api::apps::v1::{DaemonSet, Deployment, StatefulSet};
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::api::{Api, DynamicObject, GroupVersionKind, ListParams, Patch, PatchParams};
use kube::discovery::Scope;
use tokio::time::Instant;

use super::{DEFAULT_NAMESPACE, Env, FIELD_MANAGER, dev_error, ensure_namespace, say};
use crate::crd::{ConsumerStatus, LatticeAgent, ROTATE_ANNOTATION};
use crate::error::{Error, Result};
use crate::redact::redact;
use crate::secret::{
    AGENT_ID_FIELD, API_KEY_FIELD, BASE_URL_FIELD, KEY_ID_ANNOTATION, KEY_PREFIX_ANNOTATION,
};
use crate::workloads::identity;

/// How long the walkthrough waits for a LatticeAgent to become Ready, or a workload's rollout to
/// finish.
const READY_TIMEOUT: Duration = Duration::from_secs(60);
/// How often it looks again.
const POLL: Duration = Duration::from_millis(100);
/// An action outside every example's capabilities, to show a denial.
const UNGRANTED_ACTION: &str = "deploy.production";
/// The kinds of workload the operator follows.
const WORKLOAD_KINDS: [&str; 3] = ["Deployment", "StatefulSet", "DaemonSet"];

/// An object applied from `examples/`.
pub(super) struct Applied {
    kind: String,
    namespace: Option<String>,
    name: String,
    object: DynamicObject,
}

impl Applied {
    fn ns(&self) -> &str {
        self.namespace.as_deref().unwrap_or(DEFAULT_NAMESPACE)
    }
}

/// The manifests in `dir`: `*.yaml`/`*.yml`, by file name, without `*.example.yaml` placeholders.
fn manifest_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| Error::Config(format!("examples directory {}: {e}", dir.display())))?
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|p| {
            let name = p
                .file_name()
                .and_then(|n| n.to_str())
                .unwrap_or_default()
                .to_owned();
            (name.ends_with(".yaml") || name.ends_with(".yml"))
                && !name.ends_with(".example.yaml")
                && !name.ends_with(".example.yml")
        })
        .collect();
    files.sort();
    Ok(files)
}

/// Applies one manifest with server-side apply, wherever its kind is served.
async fn apply(client: &kube::Client, value: serde_json::Value, file: &Path) -> Result<Applied> {
    let object: DynamicObject = serde_json::from_value(value)?;
    let types = object.types.clone().ok_or_else(|| {
        Error::Config(format!(
            "{}: a manifest without apiVersion/kind",
            file.display()
        ))
    })?;
    let name = object.metadata.name.clone().ok_or_else(|| {
        Error::Config(format!(
            "{}: a manifest without metadata.name",
            file.display()
        ))
    })?;
    let (group, version) = match types.api_version.split_once('/') {
        Some((g, v)) => (g.to_owned(), v.to_owned()),
        None => (String::new(), types.api_version.clone()),
    };
    let gvk = GroupVersionKind::gvk(&group, &version, &types.kind);
    let (resource, caps) = kube::discovery::pinned_kind(client, &gvk).await?;
    let params = PatchParams::apply(FIELD_MANAGER).force();
    let namespace = match caps.scope {
        Scope::Namespaced => Some(
            object
                .metadata
                .namespace
                .clone()
                .unwrap_or_else(|| DEFAULT_NAMESPACE.to_owned()),
        ),
        Scope::Cluster => None,
    };
    let api: Api<DynamicObject> = match &namespace {
        Some(ns) => {
            ensure_namespace(client, ns).await?;
            Api::namespaced_with(client.clone(), ns, &resource)
        }
        None => Api::all_with(client.clone(), &resource),
    };
    let applied = api.patch(&name, &params, &Patch::Apply(&object)).await?;
    Ok(Applied {
        kind: types.kind,
        namespace,
        name,
        object: applied,
    })
}

/// Applies `examples/` and shows what the operator made of it.
pub(super) async fn walkthrough(env: &Env, examples: &Path) -> Result<Vec<Applied>> {
    let files = manifest_files(examples)?;
    if files.is_empty() {
        return Err(Error::Config(format!(
            "no manifests in {} (run from the repository root, or pass --examples)",
            examples.display()
        )));
    }
    say(format!("6. applying {}:", examples.display()));
    let mut applied = Vec::new();
    for file in &files {
        let text = std::fs::read_to_string(file)?;
        for doc in crate::yaml::documents(&text)? {
            let a = apply(&env.client, doc, file).await?;
            say(format!(
                "   applied {} {}{} ({})",
                a.kind,
                a.namespace
                    .as_deref()
                    .map(|ns| format!("{ns}/"))
                    .unwrap_or_default(),
                a.name,
                file.file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default()
            ));
            applied.push(a);
        }
    }

    let mut step = 7;
    for agent in applied.iter().filter(|a| a.kind == "LatticeAgent") {
        show_agent(env, agent, &mut step).await?;
    }
    for workload in applied.iter().filter(|a| a.is_workload()) {
        show_workload(env, workload, &mut step).await?;
    }
    if let Some(agent) = rotation_demo(env, &applied).await? {
        show_rotation(env, &agent, &mut step).await?;
    }
    Ok(applied)
}

impl Applied {
    fn is_workload(&self) -> bool {
        WORKLOAD_KINDS.contains(&self.kind.as_str())
    }

    /// `Kind namespace/name`.
    fn what(&self) -> String {
        format!("{} {}/{}", self.kind, self.ns(), self.name)
    }
}

fn ready_condition(a: &LatticeAgent) -> Option<&Condition> {
    a.status
        .as_ref()?
        .conditions
        .iter()
        .find(|c| c.type_ == "Ready")
}

/// Waits until the LatticeAgent is Ready for its current generation and this session's emulator
/// (after a restart its Secret names the previous session's address until the operator repairs
/// it). A LatticeAgent that does not exist yet (an identity the operator is about to create) is
/// waited for too.
async fn wait_ready(env: &Env, namespace: &str, name: &str) -> Result<LatticeAgent> {
    let api: Api<LatticeAgent> = Api::namespaced(env.client.clone(), namespace);
    let secrets: Api<Secret> = Api::namespaced(env.client.clone(), namespace);
    let base_url = env.emu.base_url();
    let what = format!("LatticeAgent {namespace}/{name}");
    let deadline = Instant::now() + READY_TIMEOUT;
    loop {
        let la = api.get_opt(name).await?;
        let condition = la.as_ref().and_then(ready_condition);
        if let (Some(la), Some(c)) = (&la, condition) {
            let current = la
                .status
                .as_ref()
                .is_some_and(|s| s.observed_generation == la.metadata.generation)
                && secret_base_url(&secrets, la).await.as_deref() == Some(base_url.as_str());
            if c.status == "True" && current {
                return Ok(la.clone());
            }
        }
        if Instant::now() > deadline {
            return Err(Error::Internal(redact(&match (&la, condition) {
                (None, _) => format!(
                    "{what} does not exist after {READY_TIMEOUT:?}: is the operator running with \
                     --workload-identities?"
                ),
                (Some(_), None) => format!(
                    "{what} has no Ready condition after {READY_TIMEOUT:?}: is the operator running?"
                ),
                (Some(_), Some(c)) => format!(
                    "{what} is not Ready after {READY_TIMEOUT:?}: {} ({})",
                    c.reason, c.message
                ),
            })));
        }
        tokio::time::sleep(POLL).await;
    }
}

/// Waits for the LatticeAgent to be Ready, then shows its Secret, `whoami` and two actions.
async fn show_agent(env: &Env, agent: &Applied, step: &mut usize) -> Result<()> {
    let what = format!("LatticeAgent {}/{}", agent.ns(), agent.name);
    let la = wait_ready(env, agent.ns(), &agent.name).await?;
    let secrets: Api<Secret> = Api::namespaced(env.client.clone(), agent.ns());
    let status = la.status.clone().unwrap_or_default();
    let agent_id = status.agent_id.clone().unwrap_or_default();
    say(format!(
        "{step}. {what} is Ready: agent {} ({agent_id}), capabilities [{}]",
        status.agent_name.as_deref().unwrap_or("?"),
        la.spec.capabilities.join(", ")
    ));
    *step += 1;

    let secret_name = status
        .secret_name
        .clone()
        .ok_or_else(|| Error::Internal(format!("{what}: Ready without a Secret name")))?;
    let secret = secrets.get(&secret_name).await?;
    let ann = secret.metadata.annotations.clone().unwrap_or_default();
    let data = secret.data.clone().unwrap_or_default();
    let text = |k: &str| {
        data.get(k)
            .map(|v| String::from_utf8_lossy(&v.0).into_owned())
            .unwrap_or_default()
    };
    let key_id = ann.get(KEY_ID_ANNOTATION).cloned().unwrap_or_default();
    say(format!(
        "{step}. Secret {}/{secret_name} written (type {}, owned by the LatticeAgent):",
        agent.ns(),
        secret.type_.as_deref().unwrap_or("?")
    ));
    say(format!(
        "   {API_KEY_FIELD}=<redacted> (key {key_id}, prefix {}, {} bytes)",
        ann.get(KEY_PREFIX_ANNOTATION)
            .map(String::as_str)
            .unwrap_or("?"),
        data.get(API_KEY_FIELD).map(|v| v.0.len()).unwrap_or(0)
    ));
    say(format!("   {AGENT_ID_FIELD}={}", text(AGENT_ID_FIELD)));
    say(format!("   {BASE_URL_FIELD}={}", text(BASE_URL_FIELD)));
    *step += 1;

    // What a workload would do: read the key from the Secret and call AgentLattice with it.
    let key = data
        .get(API_KEY_FIELD)
        .and_then(|v| String::from_utf8(v.0.clone()).ok())
        .and_then(|k| AgentKey::new(k).ok())
        .ok_or_else(|| Error::Internal(format!("{what}: the Secret holds no agent key")))?;
    drop(data);
    drop(secret);
    let client = AgentClient::new(&ClientConfig::new(env.emu.base_url()), key)
        .map_err(|e| dev_error("AgentLattice client", e))?;
    let whoami = client
        .whoami()
        .await
        .map_err(|e| dev_error("whoami with the Secret's key", e))?;
    let matches = whoami.config_id == agent_id && whoami.key_id.as_deref() == Some(&key_id);
    say(format!(
        "{step}. whoami with the key from the Secret: ok, agent {} ({}), key {}, active {}, \
         capabilities [{}]{}",
        whoami.name,
        whoami.config_id,
        whoami.key_id.as_deref().unwrap_or("?"),
        whoami.is_active,
        whoami.capabilities.join(", "),
        if matches {
            ""
        } else {
            " (does not match the resource's status!)"
        }
    ));
    *step += 1;

    let mut actions: Vec<String> = la.spec.capabilities.iter().take(1).cloned().collect();
    if !la.spec.capabilities.iter().any(|c| c == UNGRANTED_ACTION) {
        actions.push(UNGRANTED_ACTION.to_owned());
    }
    for action in actions {
        let result = client
            .execute_action(&ActionRequest::new(action.clone()))
            .await
            .map_err(|e| dev_error("action", e))?;
        let outcome = match result.status {
            ActionStatus::Executed => "executed".to_owned(),
            ActionStatus::Denied => format!(
                "denied ({})",
                result.denial_reason.as_deref().unwrap_or("no reason given")
            ),
            other => format!("{other:?}"),
        };
        say(format!(
            "{step}. action {action} as this agent: {outcome} (audit event {})",
            result.audit_event_id
        ));
        *step += 1;
    }
    Ok(())
}

/// `AL_BASE_URL` of the resource's Secret, if it has one.
async fn secret_base_url(secrets: &Api<Secret>, la: &LatticeAgent) -> Option<String> {
    let name = la.status.as_ref()?.secret_name.clone()?;
    let secret = secrets.get_opt(&name).await.ok()??;
    let value = secret.data?.remove(BASE_URL_FIELD)?;
    String::from_utf8(value.0).ok()
}

/// How far a workload's rollout has come.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Rollout {
    /// Pods that run the current template.
    updated: i32,
    /// Pods that are Ready.
    ready: i32,
    /// Pods it should run.
    desired: i32,
    /// Whether every pod runs the current template and is Ready, and nothing older is left.
    done: bool,
}

impl Rollout {
    fn deployment(d: &Deployment) -> Rollout {
        let desired = d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
        let s = d.status.clone().unwrap_or_default();
        let ready = s.ready_replicas.unwrap_or(0);
        Rollout {
            updated: if observed(s.observed_generation, d.metadata.generation) {
                s.updated_replicas.unwrap_or(0)
            } else {
                0
            },
            ready,
            desired,
            done: s.observed_generation >= d.metadata.generation
                && s.updated_replicas.unwrap_or(0) == desired
                && s.replicas.unwrap_or(0) == desired
                && ready == desired,
        }
    }

    fn stateful_set(s: &StatefulSet) -> Rollout {
        let desired = s.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
        let st = s.status.clone().unwrap_or_default();
        let ready = st.ready_replicas.unwrap_or(0);
        Rollout {
            updated: if observed(st.observed_generation, s.metadata.generation) {
                st.updated_replicas.unwrap_or(0)
            } else {
                0
            },
            ready,
            desired,
            done: st.observed_generation >= s.metadata.generation
                && st.updated_replicas.unwrap_or(0) == desired
                && st.current_revision == st.update_revision
                && ready == desired,
        }
    }

    fn daemon_set(d: &DaemonSet) -> Rollout {
        let s = d.status.clone().unwrap_or_default();
        let desired = s.desired_number_scheduled;
        Rollout {
            updated: if observed(s.observed_generation, d.metadata.generation) {
                s.updated_number_scheduled.unwrap_or(0)
            } else {
                0
            },
            ready: s.number_ready,
            desired,
            done: s.observed_generation >= d.metadata.generation
                && s.updated_number_scheduled.unwrap_or(0) == desired
                && s.number_ready == desired,
        }
    }
}

/// Whether a workload's status describes its current spec. Until it does, its updated count is
/// the previous template's (right after a restart it still says "2 of 2 updated"): it counts as
/// none updated, as `kubectl rollout status` waits for the spec update to be observed.
fn observed(observed_generation: Option<i64>, generation: Option<i64>) -> bool {
    observed_generation >= generation
}

/// The workload's rollout as its status tells it.
async fn rollout(env: &Env, kind: &str, namespace: &str, name: &str) -> Result<Rollout> {
    let client = env.client.clone();
    Ok(match kind {
        "Deployment" => Rollout::deployment(
            &Api::<Deployment>::namespaced(client, namespace)
                .get(name)
                .await?,
        ),
        "StatefulSet" => Rollout::stateful_set(
            &Api::<StatefulSet>::namespaced(client, namespace)
                .get(name)
                .await?,
        ),
        "DaemonSet" => Rollout::daemon_set(
            &Api::<DaemonSet>::namespaced(client, namespace)
                .get(name)
                .await?,
        ),
        other => return Err(Error::Internal(format!("{other} is not a workload kind"))),
    })
}

/// Waits until the workload's rollout has finished.
async fn wait_rolled_out(env: &Env, kind: &str, namespace: &str, name: &str) -> Result<Rollout> {
    let deadline = Instant::now() + READY_TIMEOUT;
    loop {
        let r = rollout(env, kind, namespace, name).await?;
        if r.done {
            return Ok(r);
        }
        if Instant::now() > deadline {
            return Err(Error::Internal(format!(
                "{kind} {namespace}/{name}: its rollout has not finished after \
                 {READY_TIMEOUT:?} ({} of {} pods Ready; `kubectl describe pods` says why)",
                r.ready, r.desired
            )));
        }
        tokio::time::sleep(POLL).await;
    }
}

/// The LatticeAgent in `namespace` whose status lists the workload as a reader of its key, with
/// that entry.
async fn reader_of(
    env: &Env,
    namespace: &str,
    kind: &str,
    name: &str,
) -> Result<Option<(LatticeAgent, ConsumerStatus)>> {
    let agents = Api::<LatticeAgent>::namespaced(env.client.clone(), namespace)
        .list(&ListParams::default())
        .await?;
    Ok(agents.items.into_iter().find_map(|la| {
        let entry = la
            .status
            .as_ref()?
            .consumers
            .iter()
            .find(|c| c.kind == kind && c.name == name)
            .cloned()?;
        Some((la, entry))
    }))
}

/// Waits until some LatticeAgent lists the workload as a reader of its key: the operator finds
/// readers through its workload watches.
async fn wait_reader(
    env: &Env,
    workload: &Applied,
) -> Result<Option<(LatticeAgent, ConsumerStatus)>> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let found = reader_of(env, workload.ns(), &workload.kind, &workload.name).await?;
        if found.is_some() || Instant::now() > deadline {
            return Ok(found);
        }
        tokio::time::sleep(POLL).await;
    }
}

/// Shows a workload: the identity its annotations asked for, its pods, and whose key it reads.
async fn show_workload(env: &Env, workload: &Applied, step: &mut usize) -> Result<()> {
    let what = workload.what();
    if identity::requested(&workload.object.metadata).is_some() {
        let la = wait_ready(env, workload.ns(), &workload.name).await?;
        let status = la.status.clone().unwrap_or_default();
        say(format!(
            "{step}. {what} asked for an identity (agentlattice.io/capabilities): LatticeAgent \
             {}/{} is Ready, owned by it: agent {} ({}), capabilities [{}], Secret {}, restart on \
             rotation {}",
            workload.ns(),
            workload.name,
            status.agent_name.as_deref().unwrap_or("?"),
            status.agent_id.as_deref().unwrap_or("?"),
            la.spec.capabilities.join(", "),
            status.secret_name.as_deref().unwrap_or("?"),
            if la.spec.restart_on_rotation {
                "on"
            } else {
                "off"
            },
        ));
        *step += 1;
    }
    let r = wait_rolled_out(env, &workload.kind, workload.ns(), &workload.name).await?;
    say(format!(
        "{step}. {what}: {} of {} pods Ready (kube-sim simulates the pods: no container runs)",
        r.ready, r.desired
    ));
    match wait_reader(env, workload).await? {
        Some((la, consumer)) => say(format!(
            "   it reads the key of LatticeAgent {}/{} ({}): {} (Secret {}), key {}",
            workload.ns(),
            la.metadata.name.as_deref().unwrap_or("?"),
            la.status
                .as_ref()
                .and_then(|s| s.agent_name.as_deref())
                .unwrap_or("?"),
            reads(&consumer.reads),
            la.status
                .as_ref()
                .and_then(|s| s.secret_name.as_deref())
                .unwrap_or("?"),
            consumer.key
        )),
        None => say("   it reads no LatticeAgent's Secret"),
    }
    *step += 1;
    Ok(())
}

/// `ConsumerStatus::reads` for a reader.
fn reads(how: &str) -> &'static str {
    match how {
        "Environment" => "from the environment, fixed when a container starts",
        "File" => "from a mounted file, which the kubelet refreshes",
        "SubPathFile" => "from a subPath-mounted file, which is never refreshed",
        _ => "somehow",
    }
}

/// The LatticeAgent whose rotation the walkthrough shows: the identity of the first annotated
/// workload, else the first applied LatticeAgent, that restarts the workloads reading its key from
/// the environment.
async fn rotation_demo(env: &Env, applied: &[Applied]) -> Result<Option<LatticeAgent>> {
    let identities = applied
        .iter()
        .filter(|a| a.is_workload() && identity::requested(&a.object.metadata).is_some());
    let written = applied.iter().filter(|a| a.kind == "LatticeAgent");
    for candidate in identities.chain(written) {
        let Some(la) = Api::<LatticeAgent>::namespaced(env.client.clone(), candidate.ns())
            .get_opt(&candidate.name)
            .await?
        else {
            continue;
        };
        let env_reader = la
            .status
            .as_ref()
            .is_some_and(|s| s.consumers.iter().any(|c| c.reads == "Environment"));
        if la.spec.restart_on_rotation && env_reader {
            return Ok(Some(la));
        }
    }
    Ok(None)
}

/// The milestones of a rotation with restarts, each printed once, in the order they happen.
#[derive(Default)]
struct Milestones {
    new_key: Option<String>,
    restarted: bool,
    rolled_out: bool,
    old_key_revoked: bool,
    /// Rollout progress lines already printed.
    progress: std::collections::BTreeSet<String>,
}

/// Rotates the key of a LatticeAgent whose readers restart on rotation, and follows it to the
/// end: the new key in the Secret, the readers restarted, their rollouts finished, the old key
/// revoked only then (and not before its grace period).
async fn show_rotation(env: &Env, la: &LatticeAgent, step: &mut usize) -> Result<()> {
    let namespace = la
        .metadata
        .namespace
        .as_deref()
        .unwrap_or(DEFAULT_NAMESPACE);
    let name = la.metadata.name.as_deref().unwrap_or_default();
    let api: Api<LatticeAgent> = Api::namespaced(env.client.clone(), namespace);
    let status = la.status.clone().unwrap_or_default();
    let old_key = status
        .active_key
        .as_ref()
        .map(|k| k.id.clone())
        .ok_or_else(|| Error::Internal(format!("LatticeAgent {namespace}/{name}: no key")))?;
    let agent_id = status.agent_id.clone().unwrap_or_default();
    let value = jiff::Timestamp::now().as_second().to_string();
    say(format!(
        "{step}. rotating the key of LatticeAgent {namespace}/{name}, read from the environment by \
         {}: kubectl annotate la {name} --overwrite {ROTATE_ANNOTATION}={value}",
        status
            .consumers
            .iter()
            .map(|c| format!("{} {}", c.kind, c.name))
            .collect::<Vec<_>>()
            .join(", ")
    ));
    api.patch(
        name,
        &PatchParams::default(),
        &Patch::Merge(serde_json::json!({
            "metadata": {"annotations": {ROTATE_ANNOTATION: value}}
        })),
    )
    .await?;
    *step += 1;

    let start = Instant::now();
    let elapsed = || format!("+{:.1}s", start.elapsed().as_secs_f64());
    let deadline = start + READY_TIMEOUT + rotation_grace(la);
    let mut seen = Milestones::default();
    let mut said = String::new();
    loop {
        let now = api.get(name).await?;
        let st = now.status.clone().unwrap_or_default();
        // What the operator says it waits for, whenever that changes.
        if let Some(c) = st.conditions.iter().find(|c| c.type_ == "Rotating")
            && c.status == "True"
            && c.message != said
        {
            say(format!(
                "   {} Rotating ({}): {}",
                elapsed(),
                c.reason,
                c.message
            ));
            said.clone_from(&c.message);
        }
        let active = st.active_key.as_ref().map(|k| k.id.clone());
        if seen.new_key.is_none()
            && let Some(new) = active.filter(|k| *k != old_key)
        {
            say(format!(
                "   {} Secret {} holds the new key {new}; the old key {old_key} stays valid",
                elapsed(),
                st.secret_name.as_deref().unwrap_or("?")
            ));
            seen.new_key = Some(new);
        }
        if let Some(new) = seen.new_key.clone() {
            let restarted: Vec<&ConsumerStatus> = st
                .consumers
                .iter()
                .filter(|c| c.restarted_for.as_deref() == Some(new.as_str()))
                .collect();
            if !seen.restarted && !restarted.is_empty() {
                for c in &restarted {
                    say(format!(
                        "   {} {} {} restarted by the operator for key {new} (event \
                         RolloutRestartTriggered)",
                        elapsed(),
                        c.kind,
                        c.name
                    ));
                }
                seen.restarted = true;
            }
            // The restarted workloads' rollouts, as `kubectl rollout status` follows them.
            if seen.restarted && !seen.rolled_out {
                for c in &restarted {
                    let r = rollout(env, &c.kind, namespace, &c.name).await?;
                    let line = format!(
                        "{} {}: {} of {} pods updated, {} Ready",
                        c.kind, c.name, r.updated, r.desired, r.ready
                    );
                    if seen.progress.insert(line.clone()) {
                        say(format!("   {} {line}", elapsed()));
                    }
                }
            }
            let readers = st.consumers.iter().filter(|c| c.reads == "Environment");
            if seen.restarted && !seen.rolled_out && readers.clone().all(|c| c.key == "Current") {
                say(format!(
                    "   {} rollouts finished: every pod runs with the new key",
                    elapsed()
                ));
                seen.rolled_out = true;
            }
            if seen.rolled_out && !seen.old_key_revoked && key_revoked(env, &agent_id, &old_key) {
                say(format!(
                    "   {} old key {old_key} revoked: no workload reads it any more, and it has \
                     been unused for the grace period ({})",
                    elapsed(),
                    now.spec.rotation.grace_period
                ));
                seen.old_key_revoked = true;
                break;
            }
            if !seen.rolled_out && key_revoked(env, &agent_id, &old_key) {
                return Err(Error::Internal(format!(
                    "LatticeAgent {namespace}/{name}: the old key {old_key} was revoked before \
                     its readers' rollouts finished"
                )));
            }
        }
        if Instant::now() > deadline {
            return Err(Error::Internal(format!(
                "LatticeAgent {namespace}/{name}: the rotation has not finished after {:?} \
                 (`kubectl describe la {name}` says why)",
                deadline - start
            )));
        }
        tokio::time::sleep(POLL).await;
    }
    *step += 1;
    Ok(())
}

/// The rotation's grace period, or nothing when it does not parse (the operator reports that).
fn rotation_grace(la: &LatticeAgent) -> Duration {
    crate::plan::validate::parse_duration(&la.spec.rotation.grace_period)
        .ok()
        .and_then(|d| Duration::try_from(d).ok())
        .unwrap_or_default()
}

/// Whether the emulator has revoked that key.
fn key_revoked(env: &Env, agent_id: &str, key_id: &str) -> bool {
    env.emu
        .snapshot()
        .agent(agent_id)
        .and_then(|a| a.key(key_id))
        .is_some_and(|k| k.status == KeyStatus::Revoked)
}

pub(super) fn print_tips(env: &Env, applied: &[Applied]) {
    let kubeconfig = env.sim.kubeconfig_path().display().to_string();
    say("\nThe operator keeps running. Try, in another shell:");
    say(format!("  export KUBECONFIG={kubeconfig}"));
    say("  kubectl get latticeagents -A -o wide     # Ready, Agent, Secret, Key age, Rotating");
    say("  kubectl get deployments,statefulsets,pods -A");
    for a in applied.iter().filter(|a| a.kind == "LatticeAgent") {
        let ns = a.ns();
        let n = &a.name;
        say(format!(
            "  kubectl -n {ns} annotate la {n} --overwrite agentlattice.io/rotate=\"$(date +%s)\"       # rotate the key"
        ));
        say(format!(
            "  kubectl -n {ns} annotate la {n} --overwrite agentlattice.io/compromised=\"$(date +%s)\"  # rotate, revoke the old key at once"
        ));
        say(format!(
            "  kubectl -n {ns} delete secret {n}-agent-key   # drift: a fresh key is minted (if secretName is the default)"
        ));
        say(format!(
            "  kubectl -n {ns} delete la {n}                 # revokes the agent; the Secret goes with it"
        ));
    }
    for w in applied.iter().filter(|a| a.is_workload()) {
        let ns = w.ns();
        let kind = w.kind.to_lowercase();
        let n = &w.name;
        say(format!(
            "  kubectl -n {ns} rollout status {kind}/{n}   # after a rotation: the restart for the new key"
        ));
        if identity::requested(&w.object.metadata).is_some() {
            say(format!(
                "  kubectl -n {ns} annotate {kind} {n} agentlattice.io/capabilities-   # removes its identity: the agent is revoked"
            ));
        }
    }
    say("  kubectl get events -A --watch");
    say("Events, Secret key changes and AgentLattice calls are logged below. Ctrl-C stops.\n");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn documents_skip_empty_ones() {
        let docs =
            crate::yaml::documents("---\na: 1\n---\n# only a comment\n---\nb: 2\n").expect("YAML");
        assert_eq!(docs.len(), 2);
        assert_eq!(docs[1]["b"], 2);
    }

    #[test]
    fn placeholders_are_not_applied() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples");
        let files = manifest_files(&dir).expect("examples listed");
        let names: Vec<String> = files
            .iter()
            .filter_map(|f| f.file_name().map(|n| n.to_string_lossy().into_owned()))
            .collect();
        assert!(!names.is_empty());
        assert!(names.iter().all(|n| !n.contains(".example.")), "{names:?}");
        assert!(names.contains(&"latticeagent.yaml".to_owned()), "{names:?}");
        let mut sorted = names.clone();
        sorted.sort();
        assert_eq!(names, sorted, "applied in file name order");
    }

    fn deployment(v: serde_json::Value) -> Deployment {
        serde_json::from_value(v).expect("Deployment")
    }

    #[test]
    fn a_deployment_has_rolled_out_once_no_old_pod_is_left() {
        let spec = serde_json::json!({"replicas": 2, "selector": {}, "template": {}});
        let status = |updated: i32, replicas: i32, ready: i32, observed: i64| {
            deployment(serde_json::json!({
                "metadata": {"generation": 2},
                "spec": spec,
                "status": {"updatedReplicas": updated, "replicas": replicas,
                           "readyReplicas": ready, "observedGeneration": observed},
            }))
        };
        assert!(Rollout::deployment(&status(2, 2, 2, 2)).done);
        // A surge pod of the old ReplicaSet still runs.
        assert!(!Rollout::deployment(&status(2, 3, 3, 2)).done);
        // Not every new pod is Ready.
        assert!(!Rollout::deployment(&status(2, 2, 1, 2)).done);
        // The controller has not seen the new template yet: and none of the pods runs it as far
        // as the status knows (its count is the previous template's).
        assert!(!Rollout::deployment(&status(2, 2, 2, 1)).done);
        assert_eq!(Rollout::deployment(&status(2, 2, 2, 1)).updated, 0);
        assert_eq!(Rollout::deployment(&status(1, 3, 2, 2)).updated, 1);
    }

    #[test]
    fn a_stateful_set_has_rolled_out_once_its_revisions_agree() {
        let set = |current: &str, update: &str| -> StatefulSet {
            serde_json::from_value(serde_json::json!({
                "metadata": {"generation": 1},
                "spec": {"replicas": 2, "selector": {}, "serviceName": "s", "template": {}},
                "status": {"replicas": 2, "readyReplicas": 2, "updatedReplicas": 2,
                           "observedGeneration": 1, "currentRevision": current,
                           "updateRevision": update},
            }))
            .expect("StatefulSet")
        };
        assert!(Rollout::stateful_set(&set("s-1", "s-1")).done);
        assert!(!Rollout::stateful_set(&set("s-1", "s-2")).done);
    }
}
