//! Plays kube-sim's pods as applications that hold an AgentLattice key, for the operator's
//! tests: each Running pod gets the key it would hold in a cluster and calls the emulator's
//! `GET /api/v1/whoami` and `POST /api/v1/actions` with it, continuously, while counters record
//! per pod what succeeded, what was refused as unauthenticated, and with which key id.
//!
//! Where the key comes from, as a kubelet would provide it (the Secret field is
//! [`WorkloadSimConfig::key_field`], `AL_API_KEY` by default):
//! - an environment variable of that name (`env[].valueFrom.secretKeyRef`, or `envFrom`
//!   `secretRef` with its prefix): resolved once, when the simulator first sees the pod Running,
//!   from the Secret as it is then, and never refreshed (a running container's environment
//!   is fixed; only a restart, i.e. a new pod, picks up a new key);
//! - otherwise a mounted Secret file (`volumes[].secret` or a `projected` volume's `secret`
//!   source, honouring `items`): read at pod start, then refreshed to the Secret's content as it
//!   was [`WorkloadSimConfig::kubelet_sync_delay`] ago (the kubelet's periodic sync).
//!
//! Nothing here prints, logs or stores a key outside the running calls: counters hold key ids
//! (as `whoami` reports them), never key material.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use agentlattice::{ActionRequest, AgentClient, AgentKey, ClientConfig, RetryPolicy};
use k8s_openapi::api::core::v1::{Pod, Secret};
use kube::api::{Api, ListParams};
use tokio::task::JoinHandle;

/// How the simulated applications behave.
#[derive(Clone, Debug)]
pub struct WorkloadSimConfig {
    /// The Secret field (and environment variable / file name) holding the key.
    pub key_field: String,
    /// How long a changed Secret takes to reach mounted files.
    pub kubelet_sync_delay: Duration,
    /// Pause between two rounds of calls.
    pub interval: Duration,
    /// The action each pod executes every round.
    pub action: String,
}

impl Default for WorkloadSimConfig {
    fn default() -> Self {
        WorkloadSimConfig {
            key_field: "AL_API_KEY".to_owned(),
            kubelet_sync_delay: Duration::from_millis(300),
            interval: Duration::from_millis(30),
            action: "deploy.staging".to_owned(),
        }
    }
}

/// What one pod's application saw.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PodCounters {
    /// How the pod holds its key: `"env"`, `"file"`, or `"none"` (no key found).
    pub source: String,
    /// `whoami` calls answered 200.
    pub whoami_ok: u64,
    /// Actions answered 200 (executed or denied by policy).
    pub actions_ok: u64,
    /// Calls answered 401 or 403 (revoked, unknown or unauthorised key).
    pub auth_failures: u64,
    /// Other failures (transport, 5xx).
    pub other_errors: u64,
    /// Every key id `whoami` reported for this pod.
    pub key_ids: BTreeSet<String>,
    /// The key id of the latest successful `whoami`.
    pub last_key_id: Option<String>,
}

/// Where a pod's key comes from.
#[derive(Clone, Debug)]
enum Source {
    /// Fixed at start.
    Env(Option<String>),
    /// Secret name and the file's key in it.
    File {
        secret: String,
        key: String,
    },
    None,
}

struct PodState {
    source: Source,
    started: Instant,
    /// The file's content at start.
    start_value: Option<String>,
}

type Counters = Arc<Mutex<BTreeMap<String, PodCounters>>>;

/// A running workload simulator (see the module docs).
pub struct WorkloadSim {
    counters: Counters,
    stop: tokio::sync::watch::Sender<bool>,
    task: JoinHandle<()>,
}

fn decode(secret: &Secret, key: &str) -> Option<String> {
    let bytes = secret.data.as_ref()?.get(key)?;
    String::from_utf8(bytes.0.clone()).ok()
}

/// A Secret's name and one of its keys.
type SecretKey = (String, String);

/// The env var, or the mounted file, through which `pod` sees `field`.
fn source_of(pod: &Pod, field: &str) -> (Option<SecretKey>, Option<SecretKey>) {
    let Some(spec) = pod.spec.as_ref() else {
        return (None, None);
    };
    let mut env = None;
    let mut file = None;
    for c in &spec.containers {
        for e in c.env.iter().flatten() {
            if e.name == field
                && let Some(r) = e
                    .value_from
                    .as_ref()
                    .and_then(|v| v.secret_key_ref.as_ref())
            {
                env = Some((r.name.clone(), r.key.clone()));
            }
        }
        if env.is_none() {
            for ef in c.env_from.iter().flatten() {
                if let Some(r) = &ef.secret_ref {
                    let prefix = ef.prefix.clone().unwrap_or_default();
                    if let Some(k) = field.strip_prefix(prefix.as_str()) {
                        env = Some((r.name.clone(), k.to_owned()));
                    }
                }
            }
        }
        for m in c.volume_mounts.iter().flatten() {
            let Some(v) = spec.volumes.iter().flatten().find(|v| v.name == m.name) else {
                continue;
            };
            let mut sources: Vec<(String, Option<Vec<k8s_openapi::api::core::v1::KeyToPath>>)> =
                Vec::new();
            if let Some(s) = &v.secret {
                sources.push((s.secret_name.clone().unwrap_or_default(), s.items.clone()));
            }
            if let Some(p) = &v.projected {
                for s in p.sources.iter().flatten() {
                    if let Some(s) = &s.secret {
                        sources.push((s.name.clone(), s.items.clone()));
                    }
                }
            }
            for (secret, items) in sources {
                // The file named `field` in the mount: a key of that name, or an item mapped
                // to that path.
                let key = match &items {
                    None => Some(field.to_owned()),
                    Some(items) => items
                        .iter()
                        .find(|i| i.path == field)
                        .map(|i| i.key.clone()),
                };
                if let Some(key) = key
                    && file.is_none()
                {
                    file = Some((secret, key));
                }
            }
        }
    }
    (env, file)
}

fn running(p: &Pod) -> bool {
    p.metadata.deletion_timestamp.is_none()
        && p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running")
}

impl WorkloadSim {
    /// Starts playing the pods of `namespace` against the emulator at `emulator_url`.
    pub fn start(
        client: kube::Client,
        emulator_url: &str,
        namespace: &str,
        config: WorkloadSimConfig,
    ) -> WorkloadSim {
        let counters: Counters = Arc::default();
        let (stop, mut stopped) = tokio::sync::watch::channel(false);
        let pods: Api<Pod> = Api::namespaced(client.clone(), namespace);
        let secrets: Api<Secret> = Api::namespaced(client, namespace);
        let cfg =
            ClientConfig::new(emulator_url.to_owned()).retry(RetryPolicy::new().max_attempts(1));
        let c = Arc::clone(&counters);
        let task = tokio::spawn(async move {
            let mut states: HashMap<String, PodState> = HashMap::new();
            // Per Secret: when each content was first seen.
            let mut history: HashMap<String, Vec<(Instant, Option<Secret>)>> = HashMap::new();
            loop {
                if *stopped.borrow() {
                    return;
                }
                let Ok(list) = pods.list(&ListParams::default()).await else {
                    tokio::time::sleep(config.interval).await;
                    continue;
                };
                let live: Vec<Pod> = list.items.into_iter().filter(running).collect();
                // Observe every Secret a live pod refers to.
                let mut names: BTreeSet<String> = BTreeSet::new();
                for p in &live {
                    let (env, file) = source_of(p, &config.key_field);
                    names.extend(env.map(|e| e.0));
                    names.extend(file.map(|f| f.0));
                }
                for name in names {
                    let now = secrets.get_opt(&name).await.ok().flatten();
                    let h = history.entry(name).or_default();
                    let changed = h.last().is_none_or(|(_, last)| {
                        last.as_ref().map(|s| &s.data) != now.as_ref().map(|s| &s.data)
                    });
                    if changed {
                        h.push((Instant::now(), now));
                    }
                }
                let current = |secret: &str, key: &str| -> Option<String> {
                    history
                        .get(secret)?
                        .last()?
                        .1
                        .as_ref()
                        .and_then(|s| decode(s, key))
                };
                let mut calls = Vec::new();
                for p in &live {
                    let uid = p.metadata.uid.clone().unwrap_or_default();
                    let name = p.metadata.name.clone().unwrap_or_default();
                    let state = states.entry(uid).or_insert_with(|| {
                        let (env, file) = source_of(p, &config.key_field);
                        let (source, start_value) = match (env, file) {
                            (Some((s, k)), _) => (Source::Env(current(&s, &k)), None),
                            (None, Some((s, k))) => {
                                let v = current(&s, &k);
                                (Source::File { secret: s, key: k }, v)
                            }
                            (None, None) => (Source::None, None),
                        };
                        PodState {
                            source,
                            started: Instant::now(),
                            start_value,
                        }
                    });
                    let key = match &state.source {
                        Source::Env(v) => v.clone(),
                        Source::File { secret, key } => {
                            // The newest content older than the sync delay, else the content
                            // mounted at start.
                            let synced = history.get(secret).and_then(|h| {
                                h.iter()
                                    .rev()
                                    .find(|(at, _)| {
                                        at.elapsed() >= config.kubelet_sync_delay
                                            && *at >= state.started
                                    })
                                    .map(|(_, s)| s.as_ref().and_then(|s| decode(s, key)))
                            });
                            synced.unwrap_or_else(|| state.start_value.clone())
                        }
                        Source::None => None,
                    };
                    let kind = match state.source {
                        Source::Env(_) => "env",
                        Source::File { .. } => "file",
                        Source::None => "none",
                    };
                    let mut row = c
                        .lock()
                        .map(|m| m.get(&name).cloned())
                        .ok()
                        .flatten()
                        .unwrap_or_default();
                    row.source = kind.to_owned();
                    let (cfg, action) = (cfg.clone(), config.action.clone());
                    calls.push(async move {
                        if let Some(key) = key.and_then(|k| k.parse::<AgentKey>().ok())
                            && let Ok(agent) = AgentClient::new(&cfg, key)
                        {
                            let unauthenticated =
                                |e: &agentlattice::Error| matches!(e.status(), Some(401 | 403));
                            match agent.whoami().await {
                                Ok(me) => {
                                    row.whoami_ok += 1;
                                    if let Some(id) = me.key_id {
                                        row.key_ids.insert(id.clone());
                                        row.last_key_id = Some(id);
                                    }
                                }
                                Err(e) if unauthenticated(&e) => row.auth_failures += 1,
                                Err(_) => row.other_errors += 1,
                            }
                            match agent.execute_action(&ActionRequest::new(action)).await {
                                Ok(_) => row.actions_ok += 1,
                                Err(e) if unauthenticated(&e) => row.auth_failures += 1,
                                Err(_) => row.other_errors += 1,
                            }
                        }
                        (name, row)
                    });
                }
                // Every pod's application calls at once, as separate processes would: a round
                // takes as long as its slowest call, not the sum of all of them.
                for (name, row) in futures::future::join_all(calls).await {
                    if let Ok(mut m) = c.lock() {
                        m.insert(name, row);
                    }
                }
                tokio::select! {
                    _ = tokio::time::sleep(config.interval) => {}
                    _ = stopped.changed() => return,
                }
            }
        });
        WorkloadSim {
            counters,
            stop,
            task,
        }
    }

    /// The counters so far, by pod name.
    pub fn counters(&self) -> BTreeMap<String, PodCounters> {
        self.counters.lock().map(|m| m.clone()).unwrap_or_default()
    }

    /// Stops the applications and returns the final counters.
    pub async fn stop(self) -> BTreeMap<String, PodCounters> {
        let _ = self.stop.send(true);
        let _ = self.task.await;
        self.counters.lock().map(|m| m.clone()).unwrap_or_default()
    }
}
