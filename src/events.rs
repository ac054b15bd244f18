//! Kubernetes Events (`events.k8s.io/v1`), published as kube-runtime's `Recorder` does — an event
//! named `<object>.<nanoseconds in hex>`, `reportingController`/`reportingInstance`, `regarding`,
//! and a repeat of the same event within six minutes counted in `series` instead of written
//! anew — with two differences, both about what the process keeps:
//!
//! - **Bounded memory.** The `Recorder` remembers every event it published for six minutes, and
//!   only forgets them when it publishes the next one: after registering 10,000 agents it held
//!   10,000 events (≈ 23 MiB, docs/benchmarks.md) for as long as no further event came. Here at
//!   most [`MAX_SERIES`] series are remembered, each as a hash and the event's name, and expired
//!   ones are dropped on every publish.
//! - **The note is part of what makes a repeat.** The `Recorder` counts an event with the same
//!   reason but another note as a repeat of the first, so a reconcile error that changes keeps
//!   showing the first message; here it is a new event.

use std::collections::HashMap;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::Mutex;

use jiff::{SignedDuration, Timestamp};
use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::api::events::v1::{Event, EventSeries};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use kube::api::{Api, Patch, PatchParams, PostParams};

use crate::plan::{Event as PlannedEvent, EventType};
use crate::redact::redact;

/// How long a repeat counts as part of the same series (as kube-runtime and client-go).
pub const SERIES_WINDOW: SignedDuration = SignedDuration::from_mins(6);
/// The most series remembered at once.
pub const MAX_SERIES: usize = 1024;

/// The longest note published (the API server refuses notes over 1 KiB).
const MAX_NOTE: usize = 1000;

fn type_name(type_: EventType) -> &'static str {
    match type_ {
        EventType::Normal => "Normal",
        EventType::Warning => "Warning",
    }
}

/// `note` as published: redacted (no key can leave through an event) and cut to [`MAX_NOTE`].
fn published_note(note: &str) -> String {
    truncate(&redact(note), MAX_NOTE)
}

/// `s` cut to at most `max` bytes on a character boundary, with an ellipsis when cut.
pub fn truncate(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_owned();
    }
    let mut cut = max;
    while !s.is_char_boundary(cut) {
        cut -= 1;
    }
    format!("{}…", &s[..cut])
}

/// A series: the event that started it and how often it happened.
#[derive(Clone, Debug, PartialEq)]
struct Series {
    namespace: String,
    name: String,
    count: i32,
    last: Timestamp,
}

/// The remembered series, keyed by a hash of (regarding, type, reason, action, note).
#[derive(Debug, Default)]
struct SeriesCache {
    series: HashMap<u64, Series>,
}

impl SeriesCache {
    /// The series `key` continues, if one is live at `now`.
    fn live(&self, key: u64, now: Timestamp) -> Option<&Series> {
        self.series
            .get(&key)
            .filter(|s| now.duration_since(s.last) < SERIES_WINDOW)
    }

    /// Remembers `series` under `key`, dropping expired series, and the oldest when full.
    fn remember(&mut self, key: u64, series: Series, now: Timestamp) {
        self.series
            .retain(|_, s| now.duration_since(s.last) < SERIES_WINDOW);
        if self.series.len() >= MAX_SERIES && !self.series.contains_key(&key) {
            let oldest = self
                .series
                .iter()
                .min_by_key(|(_, s)| s.last)
                .map(|(k, _)| *k);
            if let Some(oldest) = oldest {
                self.series.remove(&oldest);
            }
        }
        self.series.insert(key, series);
    }
}

/// Publishes events for one controller.
pub struct Publisher {
    client: kube::Client,
    controller: String,
    instance: String,
    cache: Mutex<SeriesCache>,
}

impl std::fmt::Debug for Publisher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Publisher")
            .field("controller", &self.controller)
            .field("instance", &self.instance)
            .finish_non_exhaustive()
    }
}

fn key_of(regarding: &ObjectReference, ev: &PlannedEvent, action: &str, note: &str) -> u64 {
    let mut h = DefaultHasher::new();
    (
        &regarding.namespace,
        &regarding.name,
        &regarding.uid,
        &regarding.kind,
        type_name(ev.type_),
        ev.reason,
        action,
        note,
    )
        .hash(&mut h);
    h.finish()
}

impl Publisher {
    /// A publisher reporting as `controller` (`reportingController`) from `instance`
    /// (`reportingInstance`; the controller's name when `None`).
    pub fn new(client: kube::Client, controller: &str, instance: Option<String>) -> Self {
        Publisher {
            client,
            controller: controller.to_owned(),
            instance: instance.unwrap_or_else(|| controller.to_owned()),
            cache: Mutex::default(),
        }
    }

    /// Publishes `ev` (what the controller was doing: `action`, e.g. `Reconcile`) about
    /// `regarding`: a new event, or one more in the series of the same event published within
    /// [`SERIES_WINDOW`]. The note is redacted and truncated here.
    pub async fn publish(
        &self,
        regarding: &ObjectReference,
        ev: &PlannedEvent,
        action: &str,
    ) -> Result<(), kube::Error> {
        let now = Timestamp::now();
        let note = published_note(&ev.note);
        let key = key_of(regarding, ev, action, &note);
        let live = self
            .cache
            .lock()
            .ok()
            .and_then(|c| c.live(key, now).cloned());
        if let Some(series) = live {
            let count = series.count.saturating_add(1);
            let api: Api<Event> = Api::namespaced(self.client.clone(), &series.namespace);
            let patch = serde_json::json!({"series": EventSeries {
                count,
                last_observed_time: MicroTime(now),
            }});
            match api
                .patch(&series.name, &PatchParams::default(), &Patch::Merge(&patch))
                .await
            {
                Ok(_) => {
                    self.remember(
                        key,
                        Series {
                            count,
                            last: now,
                            ..series
                        },
                        now,
                    );
                    return Ok(());
                }
                // The event is gone (its TTL in the API server, or deleted): start a new one.
                Err(kube::Error::Api(s)) if s.code == 404 => {}
                Err(e) => return Err(e),
            }
        }
        let namespace = regarding
            .namespace
            .clone()
            .unwrap_or_else(|| "default".to_owned());
        let name = format!(
            "{}.{:x}",
            regarding.name.as_deref().unwrap_or(&self.controller),
            now.as_nanosecond()
        );
        let event = Event {
            metadata: ObjectMeta {
                name: Some(name.clone()),
                namespace: Some(namespace.clone()),
                ..Default::default()
            },
            action: Some(action.to_owned()),
            reason: Some(ev.reason.to_owned()),
            note: Some(note),
            type_: Some(type_name(ev.type_).to_owned()),
            event_time: Some(MicroTime(now)),
            regarding: Some(regarding.clone()),
            reporting_controller: Some(self.controller.clone()),
            reporting_instance: Some(self.instance.clone()),
            ..Default::default()
        };
        Api::<Event>::namespaced(self.client.clone(), &namespace)
            .create(&PostParams::default(), &event)
            .await?;
        self.remember(
            key,
            Series {
                namespace,
                name,
                count: 1,
                last: now,
            },
            now,
        );
        Ok(())
    }

    fn remember(&self, key: u64, series: Series, now: Timestamp) {
        if let Ok(mut cache) = self.cache.lock() {
            cache.remember(key, series, now);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn series(name: &str, last: Timestamp) -> Series {
        Series {
            namespace: "ns".into(),
            name: name.into(),
            count: 1,
            last,
        }
    }

    #[test]
    fn a_series_lives_for_its_window() {
        let t0 = Timestamp::UNIX_EPOCH;
        let mut c = SeriesCache::default();
        c.remember(1, series("a", t0), t0);
        assert!(c.live(1, t0 + SignedDuration::from_mins(5)).is_some());
        assert!(c.live(1, t0 + SERIES_WINDOW).is_none());
        assert!(c.live(2, t0).is_none());
        // Expired series are dropped by the next remember.
        c.remember(2, series("b", t0 + SERIES_WINDOW), t0 + SERIES_WINDOW);
        assert_eq!(c.series.len(), 1);
    }

    #[test]
    fn memory_is_bounded() {
        let t0 = Timestamp::UNIX_EPOCH;
        let mut c = SeriesCache::default();
        for i in 0..(MAX_SERIES as u64 + 500) {
            let at = t0 + SignedDuration::from_millis(i as i64);
            c.remember(i, series(&i.to_string(), at), at);
        }
        assert_eq!(c.series.len(), MAX_SERIES);
        // The oldest went first.
        assert!(!c.series.contains_key(&0));
        assert!(c.series.contains_key(&(MAX_SERIES as u64 + 499)));
    }

    #[test]
    fn the_note_is_part_of_the_key() {
        let r = ObjectReference {
            name: Some("a".into()),
            namespace: Some("ns".into()),
            uid: Some("u".into()),
            ..Default::default()
        };
        let ev = PlannedEvent {
            type_: EventType::Warning,
            reason: "ReconcileError",
            note: String::new(),
        };
        let key = |r: &ObjectReference, note| key_of(r, &ev, "Reconcile", note);
        assert_eq!(key(&r, "x"), key(&r, "x"));
        assert_ne!(key(&r, "x"), key(&r, "y"));
        let other = ObjectReference {
            uid: Some("v".into()),
            ..r.clone()
        };
        assert_ne!(key(&r, "x"), key(&other, "x"));
    }

    #[test]
    fn notes_are_redacted_and_bounded() {
        let note = published_note(&format!(
            "key al_agent_{} {}",
            "A".repeat(40),
            "é".repeat(900)
        ));
        assert!(!note.contains("al_agent_A"), "{note}");
        assert!(note.len() <= MAX_NOTE + "…".len());
        assert!(note.ends_with('…'));
    }
}
