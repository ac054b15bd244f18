//! After the walkthrough, `dev` stays up and logs what happens: Kubernetes events (the
//! operator's and the simulated workload controllers'), the key held by each operator-managed
//! Secret, and AgentLattice's audit trail. Keys appear by id and prefix only.

use std::collections::{BTreeMap, HashSet};
use std::time::Duration;

use agentlattice_emulator::Emulator;
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::api::events::v1::Event as KubeEvent;
use kube::api::{Api, ListParams};
use kube::runtime::{WatchStreamExt, watcher};

use super::{Env, say};
use crate::secret::{KEY_ID_ANNOTATION, KEY_PREFIX_ANNOTATION, MANAGED_BY_LABEL, MANAGED_BY_VALUE};

/// Logs what happens: Kubernetes events (events.k8s.io), the key held by each operator-managed
/// Secret, and AgentLattice's audit trail. Runs until the process is stopped.
pub(super) async fn follow(env: &Env) {
    let events = follow_events(env.client.clone());
    let secrets = follow_secrets(env.client.clone());
    let audit = follow_audit(&env.emu);
    futures::join!(events, secrets, audit);
}

async fn follow_events(client: kube::Client) {
    let api: Api<KubeEvent> = Api::all(client);
    // Events already shown (or older than the walkthrough's end) are skipped.
    let mut seen: HashSet<String> = HashSet::new();
    if let Ok(list) = api.list(&ListParams::default()).await {
        seen.extend(list.items.into_iter().filter_map(|e| e.metadata.uid));
    }
    let stream = watcher::watcher(api, watcher::Config::default()).applied_objects();
    futures::pin_mut!(stream);
    loop {
        match stream.try_next().await {
            Ok(Some(e)) => {
                let Some(uid) = e.metadata.uid.clone() else {
                    continue;
                };
                if !seen.insert(uid) {
                    continue;
                }
                let regarding = e
                    .regarding
                    .as_ref()
                    .map(|r| {
                        format!(
                            "{} {}/{}",
                            r.kind.as_deref().unwrap_or("?"),
                            r.namespace.as_deref().unwrap_or("-"),
                            r.name.as_deref().unwrap_or("?")
                        )
                    })
                    .unwrap_or_default();
                say(format!(
                    "[{}] event {} {} {regarding}: {}",
                    now(),
                    e.type_.as_deref().unwrap_or("Normal"),
                    e.reason.as_deref().unwrap_or("?"),
                    e.note.as_deref().unwrap_or("")
                ));
            }
            Ok(None) => return,
            Err(e) => {
                tracing::debug!(error = %e, "event watch error (retrying)");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    }
}

async fn follow_secrets(client: kube::Client) {
    let api: Api<Secret> = Api::all(client);
    let config =
        watcher::Config::default().labels(&format!("{MANAGED_BY_LABEL}={MANAGED_BY_VALUE}"));
    let stream = watcher::watcher(api, config);
    futures::pin_mut!(stream);
    // Secret (namespace/name) → the key id it holds; filled by the initial list.
    let mut keys: BTreeMap<String, String> = BTreeMap::new();
    let mut listed = false;
    while let Some(event) = stream.next().await {
        let Ok(event) = event else {
            tokio::time::sleep(Duration::from_secs(1)).await;
            continue;
        };
        match event {
            watcher::Event::Init => {}
            watcher::Event::InitApply(s) => {
                keys.insert(secret_id(&s), key_of(&s));
            }
            watcher::Event::InitDone => listed = true,
            watcher::Event::Apply(s) if listed => {
                let id = secret_id(&s);
                let key = key_of(&s);
                let prefix = s
                    .metadata
                    .annotations
                    .as_ref()
                    .and_then(|a| a.get(KEY_PREFIX_ANNOTATION))
                    .cloned()
                    .unwrap_or_default();
                match keys.insert(id.clone(), key.clone()) {
                    Some(old) if old == key => {}
                    Some(old) => say(format!(
                        "[{}] Secret {id} now holds key {key} (prefix {prefix}); it held key {old}",
                        now()
                    )),
                    None => say(format!(
                        "[{}] Secret {id} written with key {key} (prefix {prefix})",
                        now()
                    )),
                }
            }
            watcher::Event::Apply(_) => {}
            watcher::Event::Delete(s) => {
                let id = secret_id(&s);
                keys.remove(&id);
                say(format!("[{}] Secret {id} deleted", now()));
            }
        }
    }
}

fn secret_id(s: &Secret) -> String {
    format!(
        "{}/{}",
        s.metadata.namespace.as_deref().unwrap_or("-"),
        s.metadata.name.as_deref().unwrap_or("?")
    )
}

fn key_of(s: &Secret) -> String {
    s.metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(KEY_ID_ANNOTATION))
        .cloned()
        .unwrap_or_else(|| "(none)".into())
}

async fn follow_audit(emu: &Emulator) {
    let mut last = emu.audit().last().map(|e| e.seq).unwrap_or(0);
    let mut tick = tokio::time::interval(Duration::from_millis(500));
    loop {
        tick.tick().await;
        let since = last;
        for entry in emu.audit().into_iter().filter(|e| e.seq > since) {
            last = entry.seq;
            say(format!(
                "[{}] AgentLattice {} {}{}{} by {:?}",
                now(),
                entry.operation,
                entry.outcome,
                entry
                    .agent_id
                    .as_deref()
                    .map(|a| format!(" agent {a}"))
                    .unwrap_or_default(),
                entry
                    .key_id
                    .as_deref()
                    .map(|k| format!(" key {k}"))
                    .unwrap_or_default(),
                entry.actor.kind,
            ));
        }
    }
}

pub(super) fn now() -> String {
    jiff::Zoned::now().strftime("%H:%M:%S").to_string()
}
