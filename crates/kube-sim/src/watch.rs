//! Watch streams: one JSON event per line, flushed as it happens; resume from a
//! resourceVersion through the history (410 as an ERROR event when it is gone), synthetic
//! ADDED events for "most recent" starts, streaming lists with the `initial-events-end`
//! bookmark, periodic bookmarks, and a clean close at `timeoutSeconds`.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use serde_json::{Value, json};
use tokio::sync::{broadcast, mpsc};

use crate::error::StatusError;
use crate::filter::Filter;
use crate::ops::{to_view, view_is_identity};
use crate::registry::ResourceType;
use crate::request::Output;
use crate::state::State;
use crate::store::{Event, EventType, Obj};

/// How a watch starts.
pub enum Start {
    /// Synthetic ADDED for every current object, then changes (`resourceVersion` unset or 0).
    State { initial_end_bookmark: bool },
    /// Changes after this resourceVersion.
    From(u64),
    /// No initial events, changes after the current revision (`sendInitialEvents=false`).
    Now,
}

pub struct WatchSpec {
    pub rt: Arc<ResourceType>,
    pub filter: Filter,
    pub output: Output,
    pub bookmarks: bool,
    pub timeout: Duration,
    pub start: Start,
}

fn line(kind: &str, object: &[u8]) -> Bytes {
    let mut v = Vec::with_capacity(object.len() + 40);
    v.extend_from_slice(b"{\"type\":\"");
    v.extend_from_slice(kind.as_bytes());
    v.extend_from_slice(b"\",\"object\":");
    v.extend_from_slice(object);
    v.extend_from_slice(b"}\n");
    Bytes::from(v)
}

/// The ERROR event a watch gets when its resourceVersion is older than the history.
pub fn expired_line(requested: u64, oldest: u64) -> Bytes {
    let status = StatusError::new(
        410,
        "Expired",
        format!("too old resource version: {requested} ({})", oldest + 1),
    );
    line(
        "ERROR",
        &serde_json::to_vec(&status.to_status()).unwrap_or_default(),
    )
}

fn render(spec: &WatchSpec, obj: &Value) -> Vec<u8> {
    let view = to_view(&spec.rt, obj);
    let out = match spec.output {
        Output::Partial => json!({
            "kind": "PartialObjectMetadata",
            "apiVersion": "meta.k8s.io/v1",
            "metadata": view.get("metadata").cloned().unwrap_or(json!({})),
        }),
        Output::Table { v1beta1 } => crate::table::table(
            &spec.rt,
            std::slice::from_ref(&view),
            json!({"resourceVersion": crate::meta::resource_version(&view)}),
            "Metadata",
            v1beta1,
        ),
        Output::Json | Output::Yaml => view.into_owned(),
    };
    serde_json::to_vec(&out).unwrap_or_default()
}

fn object_line(spec: &WatchSpec, kind: &str, obj: &Obj) -> Bytes {
    if matches!(spec.output, Output::Json | Output::Yaml) && view_is_identity(&spec.rt) {
        line(kind, &obj.json)
    } else {
        line(kind, &render(spec, &obj.value))
    }
}

fn bookmark_line(spec: &WatchSpec, rv: u64, initial_end: bool) -> Bytes {
    let (kind, api_version) = match spec.output {
        Output::Partial => (
            "PartialObjectMetadata".to_string(),
            "meta.k8s.io/v1".to_string(),
        ),
        _ => (spec.rt.kind.clone(), spec.rt.api_version()),
    };
    let mut metadata = json!({"resourceVersion": rv.to_string(), "creationTimestamp": null});
    if initial_end {
        metadata["annotations"] = json!({"k8s.io/initial-events-end": "true"});
    }
    let obj = json!({"kind": kind, "apiVersion": api_version, "metadata": metadata});
    line("BOOKMARK", &serde_json::to_vec(&obj).unwrap_or_default())
}

/// The line a watcher sends for one committed event, if any.
fn event_line(spec: &WatchSpec, ev: &Event) -> Option<Bytes> {
    let rt = &spec.rt;
    let now = spec.filter.matches(rt, &ev.obj.value);
    match ev.kind {
        EventType::Added => now.then(|| object_line(spec, "ADDED", &ev.obj)),
        EventType::Deleted => {
            let before = ev
                .prev
                .as_ref()
                .map(|p| spec.filter.matches(rt, &p.value))
                .unwrap_or(now);
            (before || now).then(|| object_line(spec, "DELETED", &ev.obj))
        }
        EventType::Modified => {
            let before = ev
                .prev
                .as_ref()
                .map(|p| spec.filter.matches(rt, &p.value))
                .unwrap_or(false);
            match (before, now) {
                (true, true) => Some(object_line(spec, "MODIFIED", &ev.obj)),
                (false, true) => Some(object_line(spec, "ADDED", &ev.obj)),
                (true, false) => {
                    // Left the selection: DELETED with the previous state at the event's RV.
                    let mut v = ev.prev.as_ref()?.value.clone();
                    crate::meta::meta_mut(&mut v)
                        .insert("resourceVersion".into(), json!(ev.rv.to_string()));
                    Some(line("DELETED", &render(spec, &v)))
                }
                (false, false) => None,
            }
        }
    }
}

type Tx = mpsc::Sender<Result<Bytes, std::io::Error>>;

/// Start a watch: returns the receiving end of the body, or the 410 line to send alone.
pub fn start(st: Arc<State>, spec: WatchSpec) -> mpsc::Receiver<Result<Bytes, std::io::Error>> {
    let (tx, rx) = mpsc::channel(256);
    let gr = spec.rt.storage.clone();
    let mut initial: Vec<Bytes> = Vec::new();
    let (sub, last_rv) = match &spec.start {
        Start::State {
            initial_end_bookmark,
        } => {
            let (items, rv, sub) = st
                .store
                .watch_with_state(&gr, spec.filter.namespace.as_deref());
            for o in items {
                if spec.filter.matches(&spec.rt, &o.value) {
                    initial.push(object_line(&spec, "ADDED", &o));
                }
            }
            if *initial_end_bookmark {
                initial.push(bookmark_line(&spec, rv, true));
            }
            (Ok((Vec::new(), sub)), rv)
        }
        Start::From(rv) => (st.store.watch_from(&gr, *rv), *rv),
        Start::Now => {
            let rv = st.store.current_rv();
            (st.store.watch_from(&gr, rv), rv)
        }
    };
    match sub {
        Err(too_old) => {
            let l = expired_line(last_rv, too_old.oldest);
            tokio::spawn(async move {
                let _ = tx.send(Ok(l)).await;
            });
        }
        Ok((replay, sub)) => {
            tokio::spawn(run(st, spec, tx, initial, replay, sub, last_rv));
        }
    }
    rx
}

async fn run(
    st: Arc<State>,
    spec: WatchSpec,
    tx: Tx,
    initial: Vec<Bytes>,
    replay: Vec<Arc<Event>>,
    mut sub: broadcast::Receiver<Arc<Event>>,
    mut last_rv: u64,
) {
    let mut drops = st.faults.subscribe_drops();
    let mut shutdown = st.shutdown.subscribe();
    if *shutdown.borrow() {
        return;
    }
    for l in initial {
        if tx.send(Ok(l)).await.is_err() {
            return;
        }
    }
    for ev in replay {
        if ev.rv <= last_rv {
            continue;
        }
        last_rv = ev.rv;
        if let Some(l) = event_line(&spec, &ev)
            && tx.send(Ok(l)).await.is_err()
        {
            return;
        }
    }
    let deadline = tokio::time::Instant::now() + spec.timeout;
    let mut tick = tokio::time::interval(st.cfg.bookmark_interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;
    let gr = spec.rt.storage.clone();
    loop {
        tokio::select! {
            biased;
            _ = drops.changed() => {
                let _ = tx.send(Err(std::io::Error::other("watch dropped by fault injection"))).await;
                return;
            }
            _ = shutdown.changed() => return,
            _ = tx.closed() => return,
            _ = tokio::time::sleep_until(deadline) => {
                if spec.bookmarks {
                    let rv = st.store.rv_if_caught_up(&sub).unwrap_or(last_rv).max(last_rv);
                    let _ = tx.send(Ok(bookmark_line(&spec, rv, false))).await;
                }
                return;
            }
            _ = tick.tick(), if spec.bookmarks => {
                let rv = st.store.rv_if_caught_up(&sub).unwrap_or(last_rv).max(last_rv);
                if tx.send(Ok(bookmark_line(&spec, rv, false))).await.is_err() {
                    return;
                }
            }
            r = sub.recv() => match r {
                Ok(ev) => {
                    if ev.rv <= last_rv {
                        continue;
                    }
                    last_rv = ev.rv;
                    if let Some(l) = event_line(&spec, &ev)
                        && tx.send(Ok(l)).await.is_err()
                    {
                        return;
                    }
                }
                Err(broadcast::error::RecvError::Lagged(_)) => {
                    // Slow consumer: catch up from the history, or 410 if it is gone.
                    match st.store.watch_from(&gr, last_rv) {
                        Ok((events, new_sub)) => {
                            sub = new_sub;
                            for ev in events {
                                if ev.rv <= last_rv {
                                    continue;
                                }
                                last_rv = ev.rv;
                                if let Some(l) = event_line(&spec, &ev)
                                    && tx.send(Ok(l)).await.is_err()
                                {
                                    return;
                                }
                            }
                        }
                        Err(too_old) => {
                            let _ = tx.send(Ok(expired_line(last_rv, too_old.oldest))).await;
                            return;
                        }
                    }
                }
                Err(broadcast::error::RecvError::Closed) => return,
            }
        }
    }
}
