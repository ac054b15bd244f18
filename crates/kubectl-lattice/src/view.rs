//! What the plugin shows of a LatticeAgent, computed from its status alone (the status mirrors
//! the Secret's record; the plugin never reads a Secret): the list row, the `show` view, and
//! conditions in plain words. Pure functions of the object and `now`, unit-tested.
//!
//! The views are what `-o json` / `-o yaml` print too, with absolute RFC 3339 times; tables print
//! times relative to now.

use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use lattice_operator::crd::LatticeAgent;
use serde::Serialize;

use crate::table::Table;
use crate::time;

/// One line of `list`.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AgentRow {
    /// Namespace.
    pub namespace: String,
    /// Name of the LatticeAgent.
    pub name: String,
    /// The AgentLattice agent name (once registered).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub agent: Option<String>,
    /// `True`, `False` or `Unknown`; `None` before the operator wrote any status.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ready: Option<String>,
    /// The Ready condition's reason.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ready_reason: Option<String>,
    /// Public prefix of the key in the Secret.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key_prefix: Option<String>,
    /// When that key was created at AgentLattice.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key_created_at: Option<Timestamp>,
    /// The last use of that key, when status carries it (it does not yet: the operator records
    /// the last use of retiring keys only; the table shows `—`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key_last_used_at: Option<Timestamp>,
    /// Old keys waiting to be revoked.
    pub retiring_keys: usize,
    /// When the schedule rotates the key next.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_rotation: Option<Timestamp>,
    /// The workloads whose pods read the key (`status.consumers`).
    pub consumers: usize,
    /// How many of them do not run with the key in the Secret yet.
    pub consumers_lagging: usize,
    /// When the LatticeAgent was created.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub created_at: Option<Timestamp>,
    /// The provisioner that registered the agent (`default`, `LatticeProvisioner/<ns>/<name>`,
    /// `ClusterLatticeProvisioner/<name>`), once registered.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub provisioner: Option<String>,
}

fn condition<'a>(a: &'a LatticeAgent, type_: &str) -> Option<&'a Condition> {
    a.status
        .as_ref()?
        .conditions
        .iter()
        .find(|c| c.type_ == type_)
}

impl AgentRow {
    /// The row of `a`.
    pub fn of(a: &LatticeAgent) -> AgentRow {
        let status = a.status.clone().unwrap_or_default();
        let ready = condition(a, "Ready");
        AgentRow {
            namespace: a.metadata.namespace.clone().unwrap_or_default(),
            name: a.metadata.name.clone().unwrap_or_default(),
            agent: status.agent_name.clone(),
            ready: ready.map(|c| c.status.clone()),
            ready_reason: ready.map(|c| c.reason.clone()),
            key_prefix: status.active_key.as_ref().map(|k| k.prefix.clone()),
            key_created_at: status.active_key.as_ref().map(|k| k.created_at),
            key_last_used_at: None,
            retiring_keys: status.retiring_keys.len(),
            next_rotation: status.next_rotation_time,
            consumers: status.consumers.len(),
            consumers_lagging: status
                .consumers
                .iter()
                .filter(|c| c.key != "Current")
                .count(),
            created_at: a.metadata.creation_timestamp.as_ref().map(|t| t.0),
            provisioner: status.provisioner.clone(),
        }
    }

    /// `2`, or `2 (1 lagging)` while some do not run with the current key; empty for none.
    fn consumers_cell(&self) -> String {
        match (self.consumers, self.consumers_lagging) {
            (0, _) => String::new(),
            (n, 0) => n.to_string(),
            (n, l) => format!("{n} ({l} lagging)"),
        }
    }

    /// Whether Ready is True.
    pub fn is_ready(&self) -> bool {
        self.ready.as_deref() == Some("True")
    }

    /// Whether old keys are being retired.
    pub fn is_rotating(&self) -> bool {
        self.retiring_keys > 0
    }

    fn ready_cell(&self) -> String {
        match (self.ready.as_deref(), self.ready_reason.as_deref()) {
            (None, _) => String::new(),
            (Some("True"), _) => "True".to_owned(),
            (Some(s), Some(r)) if !r.is_empty() => format!("{s} ({r})"),
            (Some(s), _) => s.to_owned(),
        }
    }

    /// The table cells, in the order of [`list_header`].
    pub fn cells(&self, with_namespace: bool, now: Timestamp) -> Vec<String> {
        let opt_age = |t: Option<Timestamp>| t.map(|t| time::age(t, now)).unwrap_or_default();
        let mut cells = Vec::new();
        if with_namespace {
            cells.push(self.namespace.clone());
        }
        cells.extend([
            self.name.clone(),
            self.agent.clone().unwrap_or_default(),
            self.ready_cell(),
            self.key_prefix.clone().unwrap_or_default(),
            opt_age(self.key_created_at),
            self.key_last_used_at
                .map(|t| time::relative(t, now))
                .unwrap_or_default(),
            match self.retiring_keys {
                0 => String::new(),
                n => n.to_string(),
            },
            self.next_rotation
                .map(|t| time::relative(t, now))
                .unwrap_or_default(),
            self.consumers_cell(),
            self.provisioner.clone().unwrap_or_default(),
            opt_age(self.created_at),
        ]);
        cells
    }
}

/// The columns of `list`.
pub fn list_header(with_namespace: bool) -> Vec<&'static str> {
    let mut h = Vec::new();
    if with_namespace {
        h.push("namespace");
    }
    h.extend([
        "name",
        "agent",
        "ready",
        "key",
        "key age",
        "last used",
        "retiring",
        "next rotation",
        "consumers",
        "provisioner",
        "age",
    ]);
    h
}

/// `list` as a table.
pub fn list_table(rows: &[AgentRow], with_namespace: bool, now: Timestamp) -> Table {
    let mut t = Table::new(list_header(with_namespace));
    for r in rows {
        t.row(r.cells(with_namespace, now));
    }
    t
}

/// A key, as `show` lists it.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct KeyView {
    /// `active` (in the Secret) or `retiring`.
    pub state: &'static str,
    /// AgentLattice key id.
    pub id: String,
    /// Public prefix.
    pub prefix: String,
    /// When AgentLattice created it (known for the active key).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub created_at: Option<Timestamp>,
    /// When its replacement was written to the Secret.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retiring_since: Option<Timestamp>,
    /// When AgentLattice marked it deprecated.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub deprecated_at: Option<Timestamp>,
    /// Its last use, as the operator last read it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_used_at: Option<Timestamp>,
    /// The earliest revocation (once unused for a grace period).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub revoke_after: Option<Timestamp>,
    /// The latest revocation.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub revoke_by: Option<Timestamp>,
    /// Revoked without grace (compromised, or never delivered).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub immediate: bool,
}

/// A condition in plain words.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ConditionView {
    /// `Ready`, `Synced`, `Rotating`.
    #[serde(rename = "type")]
    pub type_: String,
    /// `True`, `False`, `Unknown`.
    pub status: String,
    /// The reason.
    pub reason: String,
    /// What it means, in a sentence.
    pub meaning: String,
    /// The operator's message.
    pub message: String,
    /// Since when the condition has had this status.
    pub since: Timestamp,
}

/// An event about the LatticeAgent (events.k8s.io/v1 and core/v1 read alike).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct EventView {
    /// `Normal` or `Warning`.
    #[serde(rename = "type")]
    pub type_: String,
    /// The reason.
    pub reason: String,
    /// How many times it happened.
    pub count: i32,
    /// When it was last seen.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_seen: Option<Timestamp>,
    /// Who reported it.
    pub from: String,
    /// What it says.
    pub message: String,
}

/// The agent at AgentLattice.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AgentView {
    /// The agent name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// The agent id.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// The capabilities the spec grants.
    pub capabilities: Vec<String>,
    /// `spec.suspend`.
    pub suspended: bool,
}

/// The rotation settings and schedule.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RotationView {
    /// `spec.rotation.interval`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub interval: Option<String>,
    /// `spec.rotation.gracePeriod`.
    pub grace_period: String,
    /// `spec.rotation.maxGracePeriod`.
    pub max_grace_period: String,
    /// The next scheduled rotation.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_rotation: Option<Timestamp>,
    /// The last rotation.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_rotation: Option<Timestamp>,
}

/// `show`.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ShowView {
    /// Namespace.
    pub namespace: String,
    /// Name.
    pub name: String,
    /// When it was created.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub created_at: Option<Timestamp>,
    /// Being deleted since.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub deleting_since: Option<Timestamp>,
    /// The agent.
    pub agent: AgentView,
    /// The Secret holding the key.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub secret: Option<String>,
    /// `spec.deletionPolicy`.
    pub deletion_policy: String,
    /// Rotation.
    pub rotation: RotationView,
    /// Every key: the active one first, then the retiring ones.
    pub keys: Vec<KeyView>,
    /// Conditions, Ready first.
    pub conditions: Vec<ConditionView>,
    /// The latest events, newest last.
    pub events: Vec<EventView>,
    /// Set when the events could not be read (e.g. not allowed).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub events_unavailable: Option<String>,
    /// The workloads whose pods read the key, and whether they run with the current one.
    pub consumers: Vec<ConsumerView>,
    /// The provisioner that registered the agent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub provisioner: Option<String>,
    /// The id of the service key that registered it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub service_key_id: Option<String>,
}

/// A workload whose pods read the key (docs/workloads.md §2).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ConsumerView {
    /// `Deployment`, `StatefulSet` or `DaemonSet`.
    pub kind: String,
    /// Its name.
    pub name: String,
    /// `Environment`, `File` or `SubPathFile`.
    pub reads: String,
    /// `Current`, `RollingOut`, `Syncing`, `Stale` or `Stuck`.
    pub key: String,
    /// The key id the operator last restarted it for.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub restarted_for: Option<String>,
}

/// What a consumer's key state means, in a few words.
fn consumer_state(key: &str) -> &str {
    match key {
        "Current" => "runs with the current key",
        "RollingOut" => "restarted for the current key, rolling out",
        "Syncing" => "mounted file, the kubelet is refreshing it",
        "Stale" => "holds an old key",
        "Stuck" => "rollout stuck: holds an old key",
        other => other,
    }
}

/// What a condition's reason means, in a sentence (the operator's message has the details).
pub fn meaning(type_: &str, status: &str, reason: &str) -> String {
    let s = match (type_, reason) {
        ("Ready", "AgentReady") => "The workload has a working key in its Secret.",
        ("Ready", "Registering") => "The agent is being registered, or a new key written.",
        ("Ready", "Suspended") => {
            "The agent is halted at AgentLattice (spec.suspend); its key stays in the Secret."
        }
        ("Ready", "RevocationFailed") => {
            "The deletion is blocked: the agent could not be revoked. Fix the cause, or let the \
             deletion finish without revoking: kubectl lattice skip-revoke NAME."
        }
        ("Ready", "AgentRevokedExternally") | (_, "AgentRevokedExternally") => {
            "The agent was revoked or deleted outside the cluster. Register a new one: kubectl \
             lattice reregister NAME."
        }
        (_, "InvalidSpec") => "The spec is invalid; fix it (the message says what is wrong).",
        (_, "SecretConflict") => {
            "The Secret this resource names belongs to someone else (another LatticeAgent, or a \
             Secret the operator does not own and may not adopt)."
        }
        (_, "NameConflict") => {
            "AgentLattice already has an agent of this name that is not this resource's."
        }
        (_, "RegistrationConflict") => {
            "AgentLattice refused the registration as a conflict with an earlier one."
        }
        (_, "ServiceKeyMissing") => {
            "The operator cannot read its service key (Secret missing, not readable, or no \
             valid key in it)."
        }
        (_, "ServiceKeyRejected") => {
            "AgentLattice rejects the operator's service key (revoked, or of another workspace)."
        }
        (_, "AgentLatticeUnavailable") => {
            "AgentLattice did not answer or failed; the operator retries with backoff."
        }
        (_, "RateLimited") => {
            "AgentLattice is rate-limiting the operator; it retries after the Retry-After."
        }
        (_, "AgentLatticeConflict") => "AgentLattice refused a change as a conflict.",
        (_, "InvalidRequest") => "AgentLattice refused a request as invalid.",
        (_, "KeyGone") => "A key the operator tracks is gone at AgentLattice.",
        (_, "KubernetesError") => "A Kubernetes API call failed; the operator retries.",
        (_, "TransientError") => "A transient error; the operator retries.",
        ("Synced", "Synced") => "The agent and its Secret match the spec.",
        ("Rotating", "Idle") => "No key is being retired.",
        ("Rotating", "WaitingForGracePeriod") => {
            "An old key stays valid for the grace period after its replacement was written."
        }
        ("Rotating", "WaitingForOldKeyUnused") => {
            "An old key is still being used; it is revoked once unused for the grace period, \
             and at the latest at its revoke-by time."
        }
        ("Rotating", "RevokingOldKey") => "An old key is being revoked now.",
        ("Rotating", "WaitingForConsumers") => {
            "An old key waits until every workload that reads the key runs with the new one."
        }
        ("Rotating", "ConsumersWillLoseAccess") => {
            "Some workloads will not have the new key when the old one is revoked at the maximum \
             grace period: restart them, or set spec.restartOnRotation."
        }
        _ if status == "True" => return format!("{type_} ({reason})."),
        _ => return format!("Not {type_}: {reason}."),
    };
    s.to_owned()
}

impl ShowView {
    /// The view of `a`, with `events` (already sorted, newest last).
    pub fn of(
        a: &LatticeAgent,
        events: Vec<EventView>,
        events_unavailable: Option<String>,
    ) -> ShowView {
        let status = a.status.clone().unwrap_or_default();
        let spec = &a.spec;
        let mut keys = Vec::new();
        if let Some(k) = &status.active_key {
            keys.push(KeyView {
                state: "active",
                id: k.id.clone(),
                prefix: k.prefix.clone(),
                created_at: Some(k.created_at),
                retiring_since: None,
                deprecated_at: None,
                last_used_at: None,
                revoke_after: None,
                revoke_by: None,
                immediate: false,
            });
        }
        for k in &status.retiring_keys {
            keys.push(KeyView {
                state: "retiring",
                id: k.id.clone(),
                prefix: k.prefix.clone(),
                created_at: None,
                retiring_since: Some(k.retiring_since),
                deprecated_at: k.deprecated_at,
                last_used_at: k.last_used_at,
                revoke_after: Some(k.revoke_after),
                revoke_by: Some(k.revoke_by),
                immediate: k.immediate,
            });
        }
        let order = |t: &str| match t {
            "Ready" => 0,
            "Synced" => 1,
            "Rotating" => 2,
            _ => 3,
        };
        let mut conditions: Vec<ConditionView> = status
            .conditions
            .iter()
            .map(|c| ConditionView {
                type_: c.type_.clone(),
                status: c.status.clone(),
                reason: c.reason.clone(),
                meaning: meaning(&c.type_, &c.status, &c.reason),
                message: c.message.clone(),
                since: c.last_transition_time.0,
            })
            .collect();
        conditions.sort_by_key(|c| (order(&c.type_), c.type_.clone()));
        ShowView {
            namespace: a.metadata.namespace.clone().unwrap_or_default(),
            name: a.metadata.name.clone().unwrap_or_default(),
            created_at: a.metadata.creation_timestamp.as_ref().map(|t| t.0),
            deleting_since: a.metadata.deletion_timestamp.as_ref().map(|t| t.0),
            agent: AgentView {
                name: status.agent_name.clone(),
                id: status.agent_id.clone(),
                capabilities: spec.capabilities.clone(),
                suspended: spec.suspend,
            },
            secret: status.secret_name.clone(),
            deletion_policy: format!("{:?}", spec.deletion_policy),
            rotation: RotationView {
                interval: spec.rotation.interval.clone(),
                grace_period: spec.rotation.grace_period.clone(),
                max_grace_period: spec.rotation.max_grace_period.clone(),
                next_rotation: status.next_rotation_time,
                last_rotation: status.last_rotation_time,
            },
            keys,
            conditions,
            events,
            events_unavailable,
            provisioner: status.provisioner.clone(),
            service_key_id: status.service_key_id.clone(),
            consumers: status
                .consumers
                .iter()
                .map(|c| ConsumerView {
                    kind: c.kind.clone(),
                    name: c.name.clone(),
                    reads: c.reads.clone(),
                    key: c.key.clone(),
                    restarted_for: c.restarted_for.clone(),
                })
                .collect(),
        }
    }
}

fn field(out: &mut String, label: &str, value: &str) {
    out.push_str(&format!("{:<18}{}\n", format!("{label}:"), value));
}

/// `show` as text for people.
pub fn show_text(v: &ShowView, now: Timestamp) -> String {
    let mut out = String::new();
    let rel = |t: Option<Timestamp>| t.map(|t| time::relative(t, now)).unwrap_or_default();
    let or_none = |s: String| {
        if s.is_empty() {
            crate::table::NONE.to_owned()
        } else {
            s
        }
    };
    field(&mut out, "Name", &v.name);
    field(&mut out, "Namespace", &v.namespace);
    if let Some(t) = v.created_at {
        field(&mut out, "Created", &time::when(t, now));
    }
    if let Some(t) = v.deleting_since {
        field(&mut out, "Deleting since", &time::when(t, now));
    }
    let agent = match (&v.agent.name, &v.agent.id) {
        (Some(n), Some(id)) => format!("{n} (id {id})"),
        (Some(n), None) => format!("{n} (not registered)"),
        _ => "not registered yet".to_owned(),
    };
    field(&mut out, "Agent", &agent);
    field(
        &mut out,
        "Capabilities",
        &or_none(v.agent.capabilities.join(", ")),
    );
    if v.agent.suspended {
        field(&mut out, "Suspended", "yes (halted at AgentLattice)");
    }
    field(
        &mut out,
        "Secret",
        &or_none(v.secret.clone().unwrap_or_default()),
    );
    let provisioner = match (&v.provisioner, &v.service_key_id) {
        (Some(p), Some(k)) => format!("{p} (service key {k})"),
        (Some(p), None) => p.clone(),
        (None, _) => "not registered yet".to_owned(),
    };
    field(&mut out, "Provisioner", &provisioner);
    let r = &v.rotation;
    let schedule = match (&r.interval, r.next_rotation) {
        (Some(i), Some(next)) => format!("every {i}, next {}", time::relative(next, now)),
        (Some(i), None) => format!("every {i}"),
        (None, _) => "on request only (no spec.rotation.interval)".to_owned(),
    };
    field(&mut out, "Rotation", &schedule);
    field(
        &mut out,
        "Grace period",
        &format!(
            "{} unused (at most {}) before an old key is revoked",
            r.grace_period, r.max_grace_period
        ),
    );
    field(&mut out, "Last rotation", &or_none(rel(r.last_rotation)));
    field(&mut out, "Deletion policy", &v.deletion_policy);

    out.push_str("\nKeys:\n");
    if v.keys.is_empty() {
        out.push_str("  none yet\n");
    } else {
        let mut t = Table::new([
            "state",
            "prefix",
            "created",
            "retiring since",
            "last used",
            "deprecated",
            "revoke after",
            "revoke by",
        ]);
        for k in &v.keys {
            t.row([
                if k.immediate {
                    "retiring (at once)".to_owned()
                } else {
                    k.state.to_owned()
                },
                k.prefix.clone(),
                rel(k.created_at),
                rel(k.retiring_since),
                rel(k.last_used_at),
                rel(k.deprecated_at),
                rel(k.revoke_after),
                rel(k.revoke_by),
            ]);
        }
        out.push_str(&t.render("  "));
    }

    out.push_str("\nConsumers:\n");
    if v.consumers.is_empty() {
        out.push_str(
            "  none (no Deployment, StatefulSet or DaemonSet of the namespace reads the key)\n",
        );
    } else {
        let mut t = Table::new(["workload", "reads", "key", "restarted for"]);
        for c in &v.consumers {
            t.row([
                format!("{}/{}", c.kind, c.name),
                c.reads.clone(),
                format!("{} ({})", c.key, consumer_state(&c.key)),
                c.restarted_for.clone().unwrap_or_default(),
            ]);
        }
        out.push_str(&t.render("  "));
    }

    out.push_str("\nConditions:\n");
    if v.conditions.is_empty() {
        out.push_str("  none yet (the operator has not reconciled it)\n");
    }
    for c in &v.conditions {
        out.push_str(&format!(
            "  {}: {} ({}), since {}\n",
            c.type_,
            c.status,
            c.reason,
            time::relative(c.since, now)
        ));
        out.push_str(&format!("    {}\n", c.meaning));
        if !c.message.is_empty() {
            out.push_str(&format!(
                "    {}\n",
                time::humanize_timestamps(&c.message, now)
            ));
        }
    }

    out.push_str("\nEvents:\n");
    if let Some(why) = &v.events_unavailable {
        out.push_str(&format!("  not shown: {why}\n"));
    } else if v.events.is_empty() {
        out.push_str("  none\n");
    } else {
        let mut t = Table::new(["last seen", "type", "reason", "count", "from", "message"]);
        for e in &v.events {
            t.row([
                e.last_seen.map(|t| time::age(t, now)).unwrap_or_default(),
                e.type_.clone(),
                e.reason.clone(),
                e.count.to_string(),
                e.from.clone(),
                time::humanize_timestamps(&e.message, now),
            ]);
        }
        out.push_str(&t.render("  "));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn agent() -> LatticeAgent {
        serde_json::from_value(serde_json::json!({
            "apiVersion": "agentlattice.io/v1alpha1", "kind": "LatticeAgent",
            "metadata": {"name": "deploy-bot", "namespace": "payments",
                         "creationTimestamp": "2026-11-23T09:00:00Z"},
            "spec": {"capabilities": ["deploy.staging"],
                     "rotation": {"interval": "720h", "gracePeriod": "10m", "maxGracePeriod": "24h"}},
            "status": {
                "agentId": "5b0e1f7e-0000-4000-8000-000000000001",
                "agentName": "payments-deploy-bot",
                "secretName": "deploy-bot-agent-key",
                "activeKey": {"id": "k2", "prefix": "Abcd1234", "createdAt": "2026-11-23T09:55:00Z"},
                "retiringKeys": [{"id": "k1", "prefix": "Efgh5678",
                    "retiringSince": "2026-11-23T09:55:00Z", "deprecatedAt": "2026-11-23T09:55:01Z",
                    "lastUsedAt": "2026-11-23T09:58:00Z",
                    "revokeAfter": "2026-11-23T10:05:00Z", "revokeBy": "2026-11-24T09:55:00Z"}],
                "nextRotationTime": "2026-12-23T09:00:00Z",
                "provisioner": "default",
                "serviceKeyId": "svc-1",
                "lastRotationTime": "2026-11-23T09:55:00Z",
                "consumers": [
                    {"kind": "Deployment", "name": "web", "reads": "Environment",
                     "key": "RollingOut", "restartedFor": "k2"},
                    {"kind": "StatefulSet", "name": "ledger", "reads": "File", "key": "Current"}
                ],
                "conditions": [
                    {"type": "Rotating", "status": "True", "reason": "WaitingForOldKeyUnused",
                     "message": "key Efgh5678 was last used at 2026-11-23T09:58:00.123456789Z; revoked once unused for 10m",
                     "lastTransitionTime": "2026-11-23T09:55:00Z"},
                    {"type": "Ready", "status": "True", "reason": "AgentReady",
                     "message": "key Abcd1234 of agent payments-deploy-bot is in Secret deploy-bot-agent-key",
                     "lastTransitionTime": "2026-11-23T09:01:00Z"},
                    {"type": "Synced", "status": "True", "reason": "Synced",
                     "message": "the agent and its Secret match the spec",
                     "lastTransitionTime": "2026-11-23T09:01:00Z"}
                ]
            }
        }))
        .unwrap()
    }

    fn now() -> Timestamp {
        "2026-11-23T10:00:00Z".parse().unwrap()
    }

    #[test]
    fn the_list_row_comes_from_status() {
        let row = AgentRow::of(&agent());
        assert!(row.is_ready() && row.is_rotating());
        assert_eq!(
            row.cells(true, now()),
            vec![
                "payments",
                "deploy-bot",
                "payments-deploy-bot",
                "True",
                "Abcd1234",
                "5m",
                "",
                "1",
                "in 29d",
                "2 (1 lagging)",
                "default",
                "60m",
            ]
        );
        let mut fresh = agent();
        fresh.status = None;
        let row = AgentRow::of(&fresh);
        assert!(!row.is_ready() && !row.is_rotating());
        let text = list_table(&[row], false, now()).render("");
        assert_eq!(
            text.lines().nth(1),
            Some(
                "deploy-bot   —       —       —     —         —           —          —               —           —             60m"
            )
        );
        let json = serde_json::to_value(AgentRow::of(&agent())).unwrap();
        assert_eq!(json["keyPrefix"], "Abcd1234");
        assert_eq!(json["keyCreatedAt"], "2026-11-23T09:55:00Z");
        assert_eq!(json["retiringKeys"], 1);
        assert_eq!(json["consumers"], 2);
        assert_eq!(json["consumersLagging"], 1);
        assert!(json.get("keyLastUsedAt").is_none());
    }

    #[test]
    fn show_lists_every_key_and_conditions_in_plain_words() {
        let v = ShowView::of(&agent(), Vec::new(), None);
        assert_eq!(v.keys.len(), 2);
        assert_eq!(
            v.conditions
                .iter()
                .map(|c| c.type_.as_str())
                .collect::<Vec<_>>(),
            ["Ready", "Synced", "Rotating"]
        );
        let text = show_text(&v, now());
        for needle in [
            "Agent:            payments-deploy-bot (id 5b0e1f7e-0000-4000-8000-000000000001)",
            "Rotation:         every 720h, next in 29d",
            "Provisioner:      default (service key svc-1)",
            "  active     Abcd1234   5m ago    —                —           —            —              —",
            "  retiring   Efgh5678   —         5m ago           2m ago      4m59s ago    in 5m          in 23h",
            "  Rotating: True (WaitingForOldKeyUnused), since 5m ago",
            "    An old key is still being used; it is revoked once unused for the grace period",
            "    key Efgh5678 was last used at 119s ago; revoked once unused for 10m",
            "  Ready: True (AgentReady), since 59m ago",
            "    The workload has a working key in its Secret.",
            "Events:\n  none",
            "  Deployment/web       Environment   RollingOut (restarted for the current key, rolling out)   k2",
            "  StatefulSet/ledger   File          Current (runs with the current key)                       —",
        ] {
            assert!(text.contains(needle), "{needle:?} missing from:\n{text}");
        }
    }

    #[test]
    fn every_reason_the_operator_writes_has_a_sentence() {
        for (type_, reason) in [
            ("Ready", "AgentReady"),
            ("Ready", "Registering"),
            ("Ready", "Suspended"),
            ("Ready", "RevocationFailed"),
            ("Ready", "AgentRevokedExternally"),
            ("Ready", "InvalidSpec"),
            ("Ready", "SecretConflict"),
            ("Ready", "NameConflict"),
            ("Ready", "RegistrationConflict"),
            ("Ready", "ServiceKeyMissing"),
            ("Ready", "ServiceKeyRejected"),
            ("Ready", "AgentLatticeUnavailable"),
            ("Ready", "RateLimited"),
            ("Ready", "TransientError"),
            ("Synced", "Synced"),
            ("Synced", "KubernetesError"),
            ("Synced", "AgentLatticeConflict"),
            ("Synced", "InvalidRequest"),
            ("Synced", "KeyGone"),
            ("Rotating", "Idle"),
            ("Rotating", "WaitingForGracePeriod"),
            ("Rotating", "WaitingForOldKeyUnused"),
            ("Rotating", "RevokingOldKey"),
            ("Rotating", "WaitingForConsumers"),
            ("Rotating", "ConsumersWillLoseAccess"),
        ] {
            let m = meaning(type_, "False", reason);
            assert!(
                !m.starts_with("Not ") && m.ends_with('.'),
                "{type_}/{reason}: {m}"
            );
        }
        assert_eq!(
            meaning("Ready", "False", "Whatever"),
            "Not Ready: Whatever."
        );
    }
}
