//! Step 11 (design §3.1, §5): the status a reconcile ends with — its projection of the Secret,
//! the `Ready`, `Synced` and `Rotating` conditions — written only when it changed, and when to
//! reconcile again.

use jiff::SignedDuration;

use super::{Blocker, Planner, Verdict, perform};

use crate::crd::{
    ActiveKeyStatus, HandledAnnotations, LatticeAgentStatus, REREGISTER_ANNOTATION,
    RetiringKeyStatus,
};
use crate::plan::conditions::{READY, ROTATING, SYNCED, condition};
use crate::plan::schedule::{Retirement, WaitWhy};
use crate::plan::validate::ValidSpec;
use crate::plan::{Effect, Event, Requeue, Settled, Step, conditions, schedule};
use crate::secret::RetiringKey;

/// `Rotating` reason: a workload that reads the key will lose access when an old key is revoked.
pub(super) const CONSUMERS_WILL_LOSE_ACCESS: &str = "ConsumersWillLoseAccess";
/// `Rotating` reason: an old key waits for the workloads that read the key.
const WAITING_FOR_CONSUMERS: &str = "WaitingForConsumers";

/// `t` to the second, as a condition message shows it.
pub(super) fn at(t: jiff::Timestamp) -> jiff::Timestamp {
    jiff::Timestamp::from_second(t.as_second()).unwrap_or(t)
}

impl<'a> Planner<'a> {
    /// Step 11: write status if it changed, else stop with the right requeue.
    pub(super) fn finish(&self, verdict: Verdict<'_>) -> Step {
        let desired = self.desired_status(&verdict);
        let unchanged = self.observed.resource.status.as_ref() == Some(&desired);
        // Whatever the verdict (an invalid spec is decided before the failure is looked at), a
        // failed status write is not retried within the reconcile.
        let failure = match &verdict {
            Verdict::Failed(f) => Some(*f),
            _ => self.observed.failure.as_ref(),
        };
        let status_failed = failure.is_some_and(|f| f.effect == "WriteStatus");
        if !unchanged && !status_failed {
            let mut events = Vec::new();
            if let Verdict::Blocked(
                blocker @ (Blocker::SecretConflict | Blocker::NameConflict | Blocker::Refused(_)),
                message,
            ) = &verdict
                && conditions::condition_reason(&self.status, READY) != Some(blocker.reason())
            {
                events.push(Event::warning(blocker.reason(), message.clone()));
            }
            events.extend(self.status_events(&desired));
            return perform(Effect::WriteStatus(Box::new(desired)), events);
        }
        let requeue = match (&verdict, failure) {
            (_, Some(f)) => f.class.requeue(&self.observed.settings),
            (Verdict::Blocked(Blocker::InvalidSpec | Blocker::AgentRevokedExternally, _), None) => {
                Requeue::OnChange
            }
            (Verdict::Blocked(_, _), None) => {
                Requeue::After(self.observed.settings.resync_interval)
            }
            (_, None) => Requeue::After(self.requeue_after()),
        };
        Step::Settle(Settled {
            requeue,
            failure: failure.cloned(),
            remote_checked: self
                .agent_id
                .as_deref()
                .is_some_and(|id| self.remote_agent(id).is_some()),
        })
    }

    /// The events a status write carries because a condition appears with it: the Warning that
    /// names the consumers that will lose access (whichever step writes the status first).
    pub(super) fn status_events(&self, desired: &LatticeAgentStatus) -> Vec<Event> {
        match conditions::find(&desired.conditions, ROTATING) {
            Some(rotating)
                if rotating.reason == CONSUMERS_WILL_LOSE_ACCESS
                    && conditions::condition_reason(&self.status, ROTATING)
                        != Some(CONSUMERS_WILL_LOSE_ACCESS) =>
            {
                vec![Event::warning(
                    CONSUMERS_WILL_LOSE_ACCESS,
                    rotating.message.clone(),
                )]
            }
            _ => Vec::new(),
        }
    }

    /// The earliest of: the resync interval, the next scheduled rotation, the next retirement
    /// decision. At least one second, so a deadline that has just passed cannot spin.
    pub(super) fn requeue_after(&self) -> SignedDuration {
        let now = self.observed.now;
        let mut at = schedule::add(now, self.observed.settings.resync_interval);
        if self.retiring().is_empty()
            && !self.spec().is_some_and(|s| s.suspend)
            && let Some(next) = self.next_rotation()
        {
            at = at.min(next);
        }
        if let Some(agent_id) = self.agent_id.as_deref() {
            // The next drift read: earlier than a full interval from now when the last read was
            // earlier than now (a reconcile between two reads, or the spread first read after a
            // start) — unless this reconcile read the agent (or registered it): then the last
            // read is now.
            if let Some(last) = self.observed.last_remote_check
                && self.remote_agent(agent_id).is_none()
            {
                at = at.min(schedule::add(last, self.observed.settings.resync_interval));
            }
            for key in self.retiring() {
                if let Some(Retirement::Wait { until, .. }) = self.retirement(agent_id, &key) {
                    at = at.min(until);
                }
            }
        }
        // A deferred restart, or a mounted file's sync window ending (rollouts wake the resource
        // through the workload watch).
        if let Some(next) = self.consumers_next_change() {
            at = at.min(next);
        }
        now.duration_until(at).max(SignedDuration::from_secs(1))
    }

    pub(super) fn desired_status(&self, verdict: &Verdict<'_>) -> LatticeAgentStatus {
        let current = &self.status;
        // Status names an agent only once the Secret records it (or status already did): an
        // agent registered or adopted in this reconcile whose key never reached the Secret is
        // found again by the next registration attempt (replay or name), which sweeps its keys.
        let agent_id = self.agent_id.clone().filter(|id| {
            self.record_is_for(id).is_some() || current.agent_id.as_deref() == Some(id)
        });
        let record = agent_id.as_deref().and_then(|id| self.record_is_for(id));
        let mut s = LatticeAgentStatus {
            observed_generation: self.generation(),
            agent_id: agent_id.clone(),
            agent_name: agent_id.as_ref().map(|_| self.agent_name.clone()),
            secret_name: Some(self.secret_name.clone()),
            last_rotation_time: current.last_rotation_time,
            consumers: self.consumer_statuses(),
            ..Default::default()
        };
        match (record, self.spec()) {
            (Some(r), Some(spec)) => {
                s.active_key = r.record.key.as_ref().map(|k| ActiveKeyStatus {
                    id: k.id.clone(),
                    prefix: k.prefix.clone(),
                    created_at: k.created_at,
                });
                let agent = agent_id.as_deref().unwrap_or_default();
                s.retiring_keys = self
                    .retiring()
                    .iter()
                    .map(|k| self.retiring_status(agent, k, spec))
                    .collect();
                s.handled = r.record.handled.clone();
            }
            _ => {
                // Not (yet) projected from a Secret of ours: keep what status knew of this agent,
                // which is what a lost-key write needs (the lost key's id, the keys still
                // retiring).
                if current.agent_id == agent_id {
                    s.active_key = current.active_key.clone();
                    s.retiring_keys = current.retiring_keys.clone();
                }
                s.handled = current.handled.clone();
            }
        }
        if matches!(
            verdict,
            Verdict::Blocked(Blocker::AgentRevokedExternally, _)
        ) && self.agent_id.is_none()
        {
            s.handled.reregister = self.annotation(REREGISTER_ANNOTATION).map(str::to_owned);
        }
        if let Some((_, key)) = &self.observed.progress.minted
            && self.working_key().is_some_and(|k| k.id == key.id)
            && self.observed.progress.registration.is_none()
        {
            s.last_rotation_time = Some(key.created_at);
        }
        s.next_rotation_time = self.next_rotation();
        // Status shows the intent of the record; without a record of this agent it keeps its own
        // (written by the Secret-less lost-key path) until a Secret write takes over. An intent
        // this reconcile still has to sweep is never dropped.
        s.mint_started_at = match record {
            Some(r) => r.record.mint_started_at,
            None => current
                .mint_started_at
                .filter(|_| current.agent_id == agent_id),
        };
        if self.sweep_required() && !self.sweep_done() && s.mint_started_at.is_none() {
            s.mint_started_at = self.intent();
        }
        // Which provisioner and service key registered the agent (docs/tenancy.md).
        if let Some(id) = agent_id.as_deref() {
            let same_agent = current.agent_id.as_deref() == Some(id);
            s.provisioner = current
                .provisioner
                .clone()
                .filter(|_| same_agent)
                .or_else(|| Some(self.observed.provisioner.id().to_string()));
            let created_by = match &self.observed.progress.registration {
                Some(crate::plan::RegisterOutcome::Created { agent, .. }) if agent.id == id => {
                    agent.created_by.clone()
                }
                _ => match self.remote_agent(id) {
                    Some(crate::plan::RemoteAgent::Found(view)) => view.created_by.clone(),
                    _ => None,
                },
            };
            s.service_key_id =
                created_by.or_else(|| current.service_key_id.clone().filter(|_| same_agent));
            // Set once the agent is known halted for its provisioner, cleared once it is known
            // active again (or its own spec.suspend holds it): a halt or resume that failed
            // keeps the previous value, so the next reconcile reads the agent and tries again.
            let provisioner_suspended = self
                .observed
                .provisioner
                .view()
                .is_some_and(|v| v.suspended);
            let own_suspend = self.spec().is_some_and(|sp| sp.suspend);
            s.halted_by_provisioner = !own_suspend
                && match self.remote_agent(id) {
                    Some(crate::plan::RemoteAgent::Found(view)) => {
                        view.status == crate::plan::AgentStatus::Halted
                            && (provisioner_suspended
                                || (same_agent && current.halted_by_provisioner))
                    }
                    _ => same_agent && current.halted_by_provisioner,
                };
        }
        s.conditions = self.conditions(verdict, &s);
        s
    }

    pub(super) fn retiring_status(
        &self,
        agent_id: &str,
        k: &RetiringKey,
        spec: &ValidSpec,
    ) -> RetiringKeyStatus {
        let previous = self.status.retiring_keys.iter().find(|s| s.id == k.id);
        let (deprecated_at, last_used_at) = match self.key_view(agent_id, &k.id) {
            Some(view) => (view.deprecated_at, view.last_used_at),
            None => (
                previous.and_then(|s| s.deprecated_at),
                previous.and_then(|s| s.last_used_at),
            ),
        };
        RetiringKeyStatus {
            id: k.id.clone(),
            prefix: k.prefix.clone(),
            retiring_since: k.since,
            deprecated_at,
            last_used_at,
            revoke_after: if k.immediate {
                k.since
            } else {
                schedule::add(k.since, spec.grace)
            },
            revoke_by: if k.immediate {
                k.since
            } else {
                schedule::add(k.since, spec.max_grace)
            },
            immediate: k.immediate,
        }
    }

    pub(super) fn conditions(
        &self,
        verdict: &Verdict<'_>,
        desired: &LatticeAgentStatus,
    ) -> Vec<k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition> {
        let prev = &self.status.conditions;
        let generation = self.generation();
        let now = self.observed.now;
        let working = self.working_key();
        let gone = self
            .agent_id
            .as_deref()
            .is_some_and(|id| self.agent_gone(id));

        let (ready, ready_reason, ready_message) = match verdict {
            Verdict::Blocked(
                blocker @ (Blocker::SecretConflict
                | Blocker::NameConflict
                | Blocker::RegistrationConflict
                | Blocker::AgentRevokedExternally
                | Blocker::Refused(_)),
                message,
            ) => (false, blocker.reason(), message.clone()),
            Verdict::Blocked(Blocker::InvalidSpec, message) if working.is_none() || gone => {
                (false, "InvalidSpec", message.clone())
            }
            _ if gone => (
                false,
                "AgentRevokedExternally",
                format!(
                    "agent {} was revoked or deleted outside the cluster; set the \
                     {REREGISTER_ANNOTATION} annotation to a new value to register a new agent",
                    self.agent_id.as_deref().unwrap_or_default()
                ),
            ),
            _ => match working {
                Some(key) if self.provisioner_halts() => (
                    false,
                    "ProvisionerSuspended",
                    format!(
                        "agent is halted because provisioner {} is suspended; key {} stays in \
                         the Secret",
                        self.observed.provisioner.id(),
                        key.prefix
                    ),
                ),
                Some(key) if self.spec().is_some_and(|s| s.suspend) => (
                    false,
                    "Suspended",
                    format!(
                        "agent is halted (spec.suspend); key {} stays in the Secret",
                        key.prefix
                    ),
                ),
                Some(key) => (
                    true,
                    "AgentReady",
                    format!(
                        "key {} of agent {} is in Secret {}",
                        key.prefix, self.agent_name, self.secret_name
                    ),
                ),
                None => match verdict {
                    Verdict::Failed(f) => (false, f.class.category(), f.message.clone()),
                    _ => (
                        false,
                        "Registering",
                        if self.agent_id.is_some() {
                            format!("writing a new key to Secret {}", self.secret_name)
                        } else {
                            format!("registering agent {}", self.agent_name)
                        },
                    ),
                },
            },
        };
        let (synced, synced_reason, synced_message) = match verdict {
            Verdict::Ok => (
                true,
                "Synced",
                "the agent and its Secret match the spec".to_owned(),
            ),
            Verdict::Blocked(blocker, message) => (false, blocker.reason(), message.clone()),
            Verdict::Failed(f) => (false, f.class.category(), f.message.clone()),
        };
        let (rotating, rotating_reason, rotating_message) = self.rotating(desired);
        vec![
            condition(
                prev,
                READY,
                ready,
                ready_reason,
                ready_message,
                generation,
                now,
            ),
            condition(
                prev,
                SYNCED,
                synced,
                synced_reason,
                synced_message,
                generation,
                now,
            ),
            condition(
                prev,
                ROTATING,
                rotating,
                rotating_reason,
                rotating_message,
                generation,
                now,
            ),
        ]
    }

    pub(super) fn rotating(&self, desired: &LatticeAgentStatus) -> (bool, &'static str, String) {
        let (Some(agent_id), Some(spec)) = (self.agent_id.as_deref(), self.spec()) else {
            return self.carry_rotating(desired);
        };
        let retiring = self.retiring();
        if retiring.is_empty() || desired.retiring_keys.is_empty() {
            return (false, "Idle", "no key is being retired".to_owned());
        }
        if let Some(waiting) = self.waiting_for_consumers(&retiring, spec) {
            return waiting;
        }
        let mut grace: Vec<String> = Vec::new();
        let mut used: Vec<String> = Vec::new();
        let mut unknown_usage = false;
        let mut revoking: Vec<String> = Vec::new();
        for key in &retiring {
            let revoke_by = schedule::add(key.since, spec.max_grace);
            match self.retirement(agent_id, key) {
                Some(Retirement::Wait {
                    until,
                    why: WaitWhy::GracePeriod,
                }) => grace.push(format!(
                    "key {} retiring since {}: revoked after {} once unused for {}, at the \
                     latest at {}",
                    key.prefix,
                    at(key.since),
                    at(until),
                    self.observed.resource.spec.rotation.grace_period,
                    at(revoke_by)
                )),
                Some(Retirement::Wait {
                    why: WaitWhy::OldKeyUsed { last_used },
                    ..
                }) => used.push(format!(
                    "key {} was last used at {}; revoked once unused for {}, at the latest at {}",
                    key.prefix,
                    at(last_used),
                    self.observed.resource.spec.rotation.grace_period,
                    at(revoke_by)
                )),
                Some(Retirement::NeedUsage) => unknown_usage = true,
                _ => revoking.push(format!("key {}", key.prefix)),
            }
        }
        if !used.is_empty() || (unknown_usage && grace.is_empty()) {
            if used.is_empty()
                && let Some(prev) = conditions::find(&self.status.conditions, ROTATING)
                && prev.reason == "WaitingForOldKeyUnused"
            {
                // Usage not read in this reconcile: keep the last message rather than flap.
                return (true, "WaitingForOldKeyUnused", prev.message.clone());
            }
            if used.is_empty() {
                used.push("the old key's last use is being checked".to_owned());
            }
            return (true, "WaitingForOldKeyUnused", used.join("; "));
        }
        if !grace.is_empty() {
            return (true, "WaitingForGracePeriod", grace.join("; "));
        }
        (
            true,
            "RevokingOldKey",
            format!("{} to be revoked now", revoking.join(", ")),
        )
    }

    pub(super) fn carry_rotating(
        &self,
        desired: &LatticeAgentStatus,
    ) -> (bool, &'static str, String) {
        match conditions::find(&self.status.conditions, ROTATING) {
            Some(c) if !desired.retiring_keys.is_empty() => {
                let reason = match c.reason.as_str() {
                    "WaitingForGracePeriod" => "WaitingForGracePeriod",
                    "WaitingForOldKeyUnused" => "WaitingForOldKeyUnused",
                    WAITING_FOR_CONSUMERS => WAITING_FOR_CONSUMERS,
                    CONSUMERS_WILL_LOSE_ACCESS => CONSUMERS_WILL_LOSE_ACCESS,
                    _ => "RevokingOldKey",
                };
                (c.status == "True", reason, c.message.clone())
            }
            _ => (false, "Idle", "no key is being retired".to_owned()),
        }
    }
}

/// The part of status that is a projection of the Secret.
#[derive(PartialEq)]
pub(super) struct Projection<'s> {
    agent_id: Option<&'s String>,
    secret_name: Option<&'s String>,
    active_key: Option<&'s ActiveKeyStatus>,
    retiring: Vec<(&'s String, jiff::Timestamp, bool)>,
    handled: &'s HandledAnnotations,
}

pub(super) fn projection(s: &LatticeAgentStatus) -> Projection<'_> {
    Projection {
        agent_id: s.agent_id.as_ref(),
        secret_name: s.secret_name.as_ref(),
        active_key: s.active_key.as_ref(),
        retiring: s
            .retiring_keys
            .iter()
            .map(|k| (&k.id, k.retiring_since, k.immediate))
            .collect(),
        handled: &s.handled,
    }
}

impl Planner<'_> {
    /// The `Rotating` condition while an old key waits for the workloads that read the key: they
    /// are named, with when the old key is revoked at the latest. `ConsumersWillLoseAccess` when
    /// one of them cannot get the new key by itself (not restarted by the operator, or its
    /// rollout is stuck) or the maximum grace period is reached.
    fn waiting_for_consumers(
        &self,
        retiring: &[RetiringKey],
        spec: &ValidSpec,
    ) -> Option<(bool, &'static str, String)> {
        let revoke_by = retiring
            .iter()
            .filter(|k| !k.immediate)
            .map(|k| schedule::add(k.since, spec.max_grace))
            .min()?;
        let lagging = self.lagging();
        let key = self.working_key()?;
        if lagging.is_empty() {
            return None;
        }
        let stranded = self.stranded();
        if !stranded.is_empty() || self.observed.now >= revoke_by {
            let who = if stranded.is_empty() {
                &lagging
            } else {
                &stranded
            };
            return Some((
                true,
                CONSUMERS_WILL_LOSE_ACCESS,
                format!(
                    "{} will lose access to AgentLattice when the old key is revoked at {} \
                     (maxGracePeriod): restart {}, or set spec.restartOnRotation",
                    self.describe(who),
                    at(revoke_by),
                    if who.len() == 1 { "it" } else { "them" }
                ),
            ));
        }
        Some((
            true,
            WAITING_FOR_CONSUMERS,
            format!(
                "waiting for {} to run with key {}; the old key is revoked once they all do and it \
                 is unused for {}, at the latest at {}",
                self.describe(&lagging),
                key.prefix,
                self.observed.resource.spec.rotation.grace_period,
                at(revoke_by)
            ),
        ))
    }
}
