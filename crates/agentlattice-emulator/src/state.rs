//! The emulated workspace: every rule of the contract as plain, synchronous operations on one
//! in-memory structure. The HTTP layer holds the lock only around these calls (no `.await` inside),
//! generates key material and parses bodies outside it, and serializes responses after releasing it.

use std::collections::{BTreeSet, HashMap, VecDeque};

use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::api_error::ApiError;
use crate::keys::{KeyHash, Minted};
use crate::model::{
    Actor, ActorKind, Agent, AgentRec, AgentStatus, AuditEntry, IdempotencyRec, Key, KeyRec,
    RegisterFingerprint, ServiceKeyRec, StateSnapshot,
};
use crate::validate::{ActionReq, RegisterReq, UpdateReq};
use crate::wire::{ActionOut, AgentList, Delegations, MintOut, RegisterOut, Whoami};

/// At most this many non-revoked keys per agent.
pub(crate) const KEY_LIMIT: usize = 10;
/// Remembered `X-AL-Event-ID`s (oldest forgotten first).
const EVENT_CACHE: usize = 100_000;
/// Version of the state-file format.
const STATE_FORMAT: u32 = 1;

#[derive(Clone, Copy, Debug)]
enum KeyOwner {
    Service(Uuid),
    Agent { agent: Uuid, key: Uuid },
}

/// Who a request is authenticated as.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Principal {
    Service {
        id: Uuid,
    },
    Agent {
        agent: Uuid,
        key: Uuid,
        deprecated: bool,
    },
}

/// `GET /api/agents` query.
#[derive(Clone, Debug)]
pub(crate) struct ListQuery {
    pub name: Option<String>,
    pub include_revoked: bool,
    pub limit: usize,
    pub offset: usize,
}

/// What the state file holds: hashes only.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct PersistedState {
    pub format: u32,
    pub org_id: Uuid,
    pub service_keys: Vec<ServiceKeyRec>,
    pub agents: Vec<AgentRec>,
    pub idempotency: Vec<IdempotencyRec>,
    pub audit: Vec<AuditEntry>,
    pub next_seq: u64,
}

pub(crate) struct State {
    org_id: Uuid,
    service_keys: HashMap<Uuid, ServiceKeyRec>,
    service_key_order: Vec<Uuid>,
    agents: HashMap<Uuid, AgentRec>,
    agent_order: Vec<Uuid>,
    /// Names held by non-revoked agents.
    live_names: HashMap<String, Uuid>,
    /// SHA-256 of every key ever issued (revoked ones too, to answer `key_revoked`).
    key_index: HashMap<KeyHash, KeyOwner>,
    idempotency: HashMap<String, IdempotencyRec>,
    events: HashMap<(Uuid, String), ActionOut>,
    event_order: VecDeque<(Uuid, String)>,
    audit: Vec<AuditEntry>,
    next_seq: u64,
    /// Bumped by every change worth persisting.
    generation: u64,
}

fn fingerprint(req: &RegisterReq) -> RegisterFingerprint {
    let mut capabilities = req.capabilities.clone();
    capabilities.sort();
    RegisterFingerprint {
        name: req.name.clone(),
        description: req.description.clone(),
        capabilities,
        metadata: req.metadata.clone(),
    }
}

fn same_set(a: &[String], b: &[String]) -> bool {
    a.len() == b.len() && a.iter().collect::<BTreeSet<_>>() == b.iter().collect::<BTreeSet<_>>()
}

impl State {
    pub fn new() -> Self {
        State {
            org_id: Uuid::new_v4(),
            service_keys: HashMap::new(),
            service_key_order: Vec::new(),
            agents: HashMap::new(),
            agent_order: Vec::new(),
            live_names: HashMap::new(),
            key_index: HashMap::new(),
            idempotency: HashMap::new(),
            events: HashMap::new(),
            event_order: VecDeque::new(),
            audit: Vec::new(),
            next_seq: 1,
            generation: 0,
        }
    }

    pub fn generation(&self) -> u64 {
        self.generation
    }

    fn touch(&mut self) {
        self.generation += 1;
    }

    fn record(
        &mut self,
        actor: Actor,
        operation: &str,
        agent_id: Option<Uuid>,
        key_id: Option<Uuid>,
        outcome: &str,
        now: Timestamp,
    ) {
        let seq = self.next_seq;
        self.next_seq += 1;
        self.audit.push(AuditEntry {
            seq,
            at: now,
            actor,
            operation: operation.to_owned(),
            agent_id: agent_id.map(|id| id.to_string()),
            key_id: key_id.map(|id| id.to_string()),
            outcome: outcome.to_owned(),
        });
        self.touch();
    }

    fn service_actor(id: Uuid) -> Actor {
        Actor {
            kind: ActorKind::ServiceKey,
            id: Some(id.to_string()),
        }
    }

    fn admin_actor() -> Actor {
        Actor {
            kind: ActorKind::Admin,
            id: None,
        }
    }

    /// Records a refused state-changing call (the HTTP layer knows the error, not the operation).
    pub fn record_failure(
        &mut self,
        service_key: Uuid,
        operation: &str,
        agent_id: Option<Uuid>,
        key_id: Option<Uuid>,
        code: &str,
        now: Timestamp,
    ) {
        self.record(
            Self::service_actor(service_key),
            operation,
            agent_id,
            key_id,
            code,
            now,
        );
    }

    // -----------------------------------------------------------------------------------------
    // Authentication
    // -----------------------------------------------------------------------------------------

    /// Looks a key up by its hash and sets its `last_used_at`.
    pub fn authenticate(&mut self, hash: &KeyHash, now: Timestamp) -> Result<Principal, ApiError> {
        let owner = *self.key_index.get(hash).ok_or_else(ApiError::invalid_key)?;
        let principal = match owner {
            KeyOwner::Service(id) => {
                let sk = self
                    .service_keys
                    .get_mut(&id)
                    .ok_or_else(|| ApiError::internal("key index out of sync"))?;
                if sk.revoked_at.is_some() {
                    return Err(ApiError::key_revoked_auth());
                }
                sk.last_used_at = Some(now);
                Principal::Service { id }
            }
            KeyOwner::Agent { agent, key } => {
                let rec = self
                    .agents
                    .get_mut(&agent)
                    .and_then(|a| a.key_mut(key))
                    .ok_or_else(|| ApiError::internal("key index out of sync"))?;
                if rec.revoked_at.is_some() {
                    return Err(ApiError::key_revoked_auth());
                }
                rec.last_used_at = Some(now);
                Principal::Agent {
                    agent,
                    key,
                    deprecated: rec.deprecated_at.is_some(),
                }
            }
        };
        self.touch();
        Ok(principal)
    }

    // -----------------------------------------------------------------------------------------
    // Service keys (admin)
    // -----------------------------------------------------------------------------------------

    pub fn create_service_key(
        &mut self,
        label: String,
        minted: &Minted,
        now: Timestamp,
    ) -> ServiceKeyRec {
        let rec = ServiceKeyRec {
            id: Uuid::new_v4(),
            label,
            key_prefix: minted.prefix.clone(),
            key_hash: minted.hash,
            created_at: now,
            revoked_at: None,
            last_used_at: None,
        };
        self.key_index
            .insert(rec.key_hash, KeyOwner::Service(rec.id));
        self.service_keys.insert(rec.id, rec.clone());
        self.service_key_order.push(rec.id);
        self.record(
            Self::admin_actor(),
            "create_service_key",
            None,
            Some(rec.id),
            "success",
            now,
        );
        rec
    }

    /// `None` when unknown; idempotent (no second audit entry).
    pub fn revoke_service_key(&mut self, id: Uuid, now: Timestamp) -> Option<ServiceKeyRec> {
        let sk = self.service_keys.get_mut(&id)?;
        if sk.revoked_at.is_some() {
            return Some(sk.clone());
        }
        sk.revoked_at = Some(now);
        let out = sk.clone();
        self.record(
            Self::admin_actor(),
            "revoke_service_key",
            None,
            Some(id),
            "success",
            now,
        );
        Some(out)
    }

    pub fn service_keys(&self) -> Vec<ServiceKeyRec> {
        self.service_key_order
            .iter()
            .filter_map(|id| self.service_keys.get(id).cloned())
            .collect()
    }

    // -----------------------------------------------------------------------------------------
    // Provisioning API
    // -----------------------------------------------------------------------------------------

    pub fn register(
        &mut self,
        service_key: Uuid,
        req: RegisterReq,
        idempotency_key: Option<String>,
        minted: Minted,
        now: Timestamp,
    ) -> Result<RegisterOut, ApiError> {
        let fp = fingerprint(&req);
        if let Some(ik) = &idempotency_key
            && let Some(rec) = self.idempotency.get(ik)
        {
            if rec.fingerprint != fp {
                return Err(ApiError::idempotency_key_body_mismatch());
            }
            let agent = self
                .agents
                .get(&rec.agent_id)
                .ok_or_else(|| ApiError::internal("idempotency record out of sync"))?;
            if agent.revoked_at.is_some() {
                return Err(ApiError::idempotency_key_agent_revoked());
            }
            let key = agent
                .key(rec.key_id)
                .ok_or_else(|| ApiError::internal("idempotency record out of sync"))?;
            return Ok(RegisterOut {
                agent: agent.view(),
                api_key: None,
                key_id: key.id.to_string(),
                key_prefix: key.key_prefix.clone(),
                replayed: true,
            });
        }
        if self.live_names.contains_key(&req.name) {
            return Err(ApiError::agent_name_exists());
        }
        let agent_id = Uuid::new_v4();
        let key = KeyRec {
            id: Uuid::new_v4(),
            name: format!("{}-1", req.name),
            key_prefix: minted.prefix.clone(),
            key_hash: minted.hash,
            created_at: now,
            deprecated_at: None,
            revoked_at: None,
            last_used_at: None,
        };
        let agent = AgentRec {
            id: agent_id,
            name: req.name,
            description: req.description,
            capabilities: req.capabilities,
            metadata: req.metadata,
            created_at: now,
            created_by: service_key,
            updated_at: now,
            halted_at: None,
            revoked_at: None,
            version: 1,
            keys: vec![key.clone()],
            keys_minted: 1,
        };
        let out = RegisterOut {
            agent: agent.view(),
            api_key: Some(minted.plaintext),
            key_id: key.id.to_string(),
            key_prefix: key.key_prefix.clone(),
            replayed: false,
        };
        self.key_index.insert(
            key.key_hash,
            KeyOwner::Agent {
                agent: agent_id,
                key: key.id,
            },
        );
        self.live_names.insert(agent.name.clone(), agent_id);
        self.agents.insert(agent_id, agent);
        self.agent_order.push(agent_id);
        if let Some(ik) = idempotency_key {
            self.idempotency.insert(
                ik.clone(),
                IdempotencyRec {
                    idempotency_key: ik,
                    fingerprint: fp,
                    agent_id,
                    key_id: key.id,
                    created_at: now,
                },
            );
        }
        self.record(
            Self::service_actor(service_key),
            "register",
            Some(agent_id),
            Some(key.id),
            "success",
            now,
        );
        Ok(out)
    }

    pub fn list_agents(&self, q: &ListQuery) -> AgentList {
        let matching = self
            .agent_order
            .iter()
            .filter_map(|id| self.agents.get(id))
            .filter(|a| q.include_revoked || a.revoked_at.is_none())
            .filter(|a| q.name.as_deref().is_none_or(|n| a.name == n));
        let mut total = 0;
        let mut items = Vec::new();
        for a in matching {
            if total >= q.offset && items.len() < q.limit {
                items.push(a.view());
            }
            total += 1;
        }
        AgentList {
            has_more: q.offset.saturating_add(items.len()) < total,
            items,
            total,
            limit: q.limit,
            offset: q.offset,
        }
    }

    fn agent(&self, id: Uuid) -> Result<&AgentRec, ApiError> {
        self.agents.get(&id).ok_or_else(ApiError::agent_not_found)
    }

    fn live_agent_mut(&mut self, id: Uuid) -> Result<&mut AgentRec, ApiError> {
        let a = self
            .agents
            .get_mut(&id)
            .ok_or_else(ApiError::agent_not_found)?;
        if a.revoked_at.is_some() {
            return Err(ApiError::agent_revoked());
        }
        Ok(a)
    }

    pub fn get_agent(&self, id: Uuid) -> Result<Agent, ApiError> {
        Ok(self.agent(id)?.view())
    }

    pub fn update_agent(
        &mut self,
        service_key: Uuid,
        id: Uuid,
        req: UpdateReq,
        now: Timestamp,
    ) -> Result<Agent, ApiError> {
        let a = self.live_agent_mut(id)?;
        let mut changed = false;
        if let Some(caps) = req.capabilities
            && !same_set(&caps, &a.capabilities)
        {
            a.capabilities = caps;
            changed = true;
        }
        if let Some(d) = req.description
            && d != a.description
        {
            a.description = d;
            changed = true;
        }
        if let Some(m) = req.metadata
            && m != a.metadata
        {
            a.metadata = m;
            changed = true;
        }
        if changed {
            a.version += 1;
            a.updated_at = now;
        }
        let view = a.view();
        if changed {
            self.record(
                Self::service_actor(service_key),
                "update_agent",
                Some(id),
                None,
                "success",
                now,
            );
        }
        Ok(view)
    }

    pub fn set_halted(
        &mut self,
        service_key: Uuid,
        id: Uuid,
        halted: bool,
        now: Timestamp,
    ) -> Result<Agent, ApiError> {
        let a = self.live_agent_mut(id)?;
        let changed = a.halted_at.is_some() != halted;
        if changed {
            a.halted_at = halted.then_some(now);
            a.version += 1;
            a.updated_at = now;
        }
        let view = a.view();
        if changed {
            let op = if halted { "halt_agent" } else { "resume_agent" };
            self.record(
                Self::service_actor(service_key),
                op,
                Some(id),
                None,
                "success",
                now,
            );
        }
        Ok(view)
    }

    pub fn revoke_agent(
        &mut self,
        service_key: Uuid,
        id: Uuid,
        now: Timestamp,
    ) -> Result<Agent, ApiError> {
        let a = self
            .agents
            .get_mut(&id)
            .ok_or_else(ApiError::agent_not_found)?;
        if a.revoked_at.is_some() {
            return Ok(a.view());
        }
        a.revoked_at = Some(now);
        a.version += 1;
        a.updated_at = now;
        for k in a.keys.iter_mut().filter(|k| k.revoked_at.is_none()) {
            k.revoked_at = Some(now);
        }
        let view = a.view();
        let name = a.name.clone();
        if self.live_names.get(&name) == Some(&id) {
            self.live_names.remove(&name);
        }
        self.record(
            Self::service_actor(service_key),
            "revoke_agent",
            Some(id),
            None,
            "success",
            now,
        );
        Ok(view)
    }

    pub fn mint_key(
        &mut self,
        service_key: Uuid,
        id: Uuid,
        name: Option<String>,
        minted: Minted,
        now: Timestamp,
    ) -> Result<MintOut, ApiError> {
        let a = self.live_agent_mut(id)?;
        if a.non_revoked_keys() >= KEY_LIMIT {
            return Err(ApiError::key_limit_reached(KEY_LIMIT));
        }
        a.keys_minted += 1;
        let key = KeyRec {
            id: Uuid::new_v4(),
            name: name.unwrap_or_else(|| format!("{}-{}", a.name, a.keys_minted)),
            key_prefix: minted.prefix.clone(),
            key_hash: minted.hash,
            created_at: now,
            deprecated_at: None,
            revoked_at: None,
            last_used_at: None,
        };
        a.keys.push(key.clone());
        self.key_index.insert(
            key.key_hash,
            KeyOwner::Agent {
                agent: id,
                key: key.id,
            },
        );
        self.record(
            Self::service_actor(service_key),
            "mint_key",
            Some(id),
            Some(key.id),
            "success",
            now,
        );
        Ok(MintOut {
            key: key.view(),
            api_key: minted.plaintext,
        })
    }

    pub fn list_keys(&self, id: Uuid) -> Result<Vec<Key>, ApiError> {
        Ok(self.agent(id)?.keys.iter().map(KeyRec::view).collect())
    }

    pub fn set_deprecated(
        &mut self,
        service_key: Uuid,
        id: Uuid,
        key_id: Uuid,
        deprecated: bool,
        now: Timestamp,
    ) -> Result<Key, ApiError> {
        let a = self
            .agents
            .get_mut(&id)
            .ok_or_else(ApiError::agent_not_found)?;
        let agent_revoked = a.revoked_at.is_some();
        let k = a.key_mut(key_id).ok_or_else(ApiError::key_not_found)?;
        if agent_revoked {
            return Err(ApiError::agent_revoked());
        }
        if k.revoked_at.is_some() {
            return Err(ApiError::key_revoked_conflict());
        }
        let changed = k.deprecated_at.is_some() != deprecated;
        if changed {
            k.deprecated_at = deprecated.then_some(now);
        }
        let view = k.view();
        if changed {
            let op = if deprecated {
                "deprecate_key"
            } else {
                "undeprecate_key"
            };
            self.record(
                Self::service_actor(service_key),
                op,
                Some(id),
                Some(key_id),
                "success",
                now,
            );
        }
        Ok(view)
    }

    pub fn revoke_key(
        &mut self,
        service_key: Uuid,
        id: Uuid,
        key_id: Uuid,
        force: bool,
        now: Timestamp,
    ) -> Result<Key, ApiError> {
        let a = self
            .agents
            .get_mut(&id)
            .ok_or_else(ApiError::agent_not_found)?;
        let live = a.non_revoked_keys();
        let k = a.key_mut(key_id).ok_or_else(ApiError::key_not_found)?;
        if k.revoked_at.is_some() {
            return Ok(k.view());
        }
        if live <= 1 && !force {
            return Err(ApiError::last_active_key());
        }
        k.revoked_at = Some(now);
        let view = k.view();
        self.record(
            Self::service_actor(service_key),
            "revoke_key",
            Some(id),
            Some(key_id),
            "success",
            now,
        );
        Ok(view)
    }

    // -----------------------------------------------------------------------------------------
    // Agent API
    // -----------------------------------------------------------------------------------------

    pub fn whoami(&self, agent: Uuid, key: Uuid) -> Result<Whoami, ApiError> {
        let a = self.agent(agent)?;
        Ok(Whoami {
            config_id: a.id.to_string(),
            name: a.name.clone(),
            org_id: self.org_id.to_string(),
            is_active: a.status() == AgentStatus::Active,
            cb_state: "closed",
            calibration: serde_json::Map::new(),
            policies: Vec::new(),
            delegations: Delegations {
                as_parent: Vec::new(),
                as_child: Vec::new(),
            },
            capabilities: a.capabilities.clone(),
            key_id: key.to_string(),
        })
    }

    pub fn act(
        &mut self,
        agent: Uuid,
        req: &ActionReq,
        event_id: Option<String>,
    ) -> Result<ActionOut, ApiError> {
        let a = self.agent(agent)?;
        if a.halted_at.is_some() {
            return Err(ApiError::agent_halted());
        }
        let granted = a.capabilities.contains(&req.action_type);
        if let Some(ev) = &event_id
            && let Some(first) = self.events.get(&(agent, ev.clone()))
        {
            return Ok(first.clone());
        }
        let out = if granted {
            ActionOut {
                status: "executed",
                audit_event_id: Uuid::new_v4().to_string(),
                message: "executed: the action type is one of the agent's capabilities",
                denial_reason: None,
                policy_name: None,
                conditions_evaluated: Vec::new(),
            }
        } else {
            ActionOut {
                status: "denied",
                audit_event_id: Uuid::new_v4().to_string(),
                message: "denied: the action type is not one of the agent's capabilities",
                denial_reason: Some("capability_not_granted"),
                policy_name: None,
                conditions_evaluated: Vec::new(),
            }
        };
        if let Some(ev) = event_id {
            if self.event_order.len() >= EVENT_CACHE
                && let Some(old) = self.event_order.pop_front()
            {
                self.events.remove(&old);
            }
            self.events.insert((agent, ev.clone()), out.clone());
            self.event_order.push_back((agent, ev));
        }
        Ok(out)
    }

    // -----------------------------------------------------------------------------------------
    // Views, audit, persistence
    // -----------------------------------------------------------------------------------------

    pub fn snapshot(&self) -> StateSnapshot {
        StateSnapshot {
            org_id: self.org_id.to_string(),
            service_keys: self
                .service_keys()
                .iter()
                .map(ServiceKeyRec::view)
                .collect(),
            agents: self
                .agent_order
                .iter()
                .filter_map(|id| self.agents.get(id))
                .map(AgentRec::snapshot)
                .collect(),
        }
    }

    /// Entries with `seq > since`, oldest first, at most `limit`.
    pub fn audit(&self, since: u64, limit: usize) -> Vec<AuditEntry> {
        // seq n is at index n-1 (entries are never removed).
        let start = usize::try_from(since)
            .unwrap_or(usize::MAX)
            .min(self.audit.len());
        self.audit[start..].iter().take(limit).cloned().collect()
    }

    pub fn to_persisted(&self) -> PersistedState {
        PersistedState {
            format: STATE_FORMAT,
            org_id: self.org_id,
            service_keys: self.service_keys(),
            agents: self
                .agent_order
                .iter()
                .filter_map(|id| self.agents.get(id).cloned())
                .collect(),
            idempotency: self.idempotency.values().cloned().collect(),
            audit: self.audit.clone(),
            next_seq: self.next_seq,
        }
    }

    /// Rebuilds the indexes from a state file; refuses anything inconsistent.
    pub fn from_persisted(p: PersistedState) -> Result<State, String> {
        if p.format != STATE_FORMAT {
            return Err(format!(
                "unsupported format {} (expected {STATE_FORMAT})",
                p.format
            ));
        }
        let mut s = State::new();
        s.org_id = p.org_id;
        for sk in p.service_keys {
            if s.key_index
                .insert(sk.key_hash, KeyOwner::Service(sk.id))
                .is_some()
            {
                return Err("a key hash appears twice".into());
            }
            s.service_key_order.push(sk.id);
            if s.service_keys.insert(sk.id, sk).is_some() {
                return Err("a service key id appears twice".into());
            }
        }
        for a in p.agents {
            for k in &a.keys {
                let owner = KeyOwner::Agent {
                    agent: a.id,
                    key: k.id,
                };
                if s.key_index.insert(k.key_hash, owner).is_some() {
                    return Err("a key hash appears twice".into());
                }
            }
            if a.revoked_at.is_none() && s.live_names.insert(a.name.clone(), a.id).is_some() {
                return Err("two non-revoked agents share a name".into());
            }
            if a.revoked_at.is_some() && a.keys.iter().any(|k| k.revoked_at.is_none()) {
                return Err("a revoked agent has a non-revoked key".into());
            }
            s.agent_order.push(a.id);
            if s.agents.insert(a.id, a).is_some() {
                return Err("an agent id appears twice".into());
            }
        }
        for rec in p.idempotency {
            if s.agents
                .get(&rec.agent_id)
                .is_none_or(|a| a.key(rec.key_id).is_none())
            {
                return Err("an idempotency record points to an unknown agent or key".into());
            }
            s.idempotency.insert(rec.idempotency_key.clone(), rec);
        }
        for (i, e) in p.audit.iter().enumerate() {
            if e.seq != i as u64 + 1 {
                return Err("audit sequence numbers are not 1, 2, 3, …".into());
            }
        }
        s.next_seq = p.audit.len() as u64 + 1;
        if p.next_seq != s.next_seq {
            return Err("next_seq does not follow the audit trail".into());
        }
        s.audit = p.audit;
        Ok(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::{KeyKind, mint};
    use crate::time::now;

    fn req(name: &str) -> RegisterReq {
        RegisterReq {
            name: name.into(),
            capabilities: vec!["b".into(), "a".into()],
            description: None,
            metadata: Default::default(),
        }
    }

    #[test]
    fn persisted_round_trip_rebuilds_indexes() {
        let mut s = State::new();
        let sk_minted = mint(KeyKind::Service);
        let sk = s.create_service_key("ops".into(), &sk_minted, now());
        let r = s
            .register(
                sk.id,
                req("bot"),
                Some("ik".into()),
                mint(KeyKind::Agent),
                now(),
            )
            .unwrap();
        let agent_key = r.api_key.clone().unwrap();
        let json = serde_json::to_string(&s.to_persisted()).unwrap();
        assert!(!json.contains(&agent_key) && !json.contains(&sk_minted.plaintext));
        let back: PersistedState = serde_json::from_str(&json).unwrap();
        let mut s2 = State::from_persisted(back).unwrap();
        assert_eq!(s2.snapshot(), s.snapshot());
        assert!(matches!(
            s2.authenticate(&crate::keys::hash(&agent_key), now()),
            Ok(Principal::Agent { .. })
        ));
        // The name is still taken and the idempotency key still replays.
        let mut other = req("bot");
        other.capabilities.reverse();
        let replay = s2
            .register(sk.id, other, Some("ik".into()), mint(KeyKind::Agent), now())
            .unwrap();
        assert!(replay.replayed && replay.api_key.is_none());
        assert_eq!(
            s2.register(sk.id, req("bot"), None, mint(KeyKind::Agent), now())
                .unwrap_err()
                .code,
            "agent_name_exists"
        );
    }

    #[test]
    fn audit_since_and_limit() {
        let mut s = State::new();
        for i in 0..5 {
            s.create_service_key(format!("k{i}"), &mint(KeyKind::Service), now());
        }
        let all = s.audit(0, 100);
        assert_eq!(
            all.iter().map(|e| e.seq).collect::<Vec<_>>(),
            vec![1, 2, 3, 4, 5]
        );
        assert_eq!(
            s.audit(3, 100).iter().map(|e| e.seq).collect::<Vec<_>>(),
            vec![4, 5]
        );
        assert_eq!(
            s.audit(1, 2).iter().map(|e| e.seq).collect::<Vec<_>>(),
            vec![2, 3]
        );
        assert!(s.audit(99, 10).is_empty());
    }
}
