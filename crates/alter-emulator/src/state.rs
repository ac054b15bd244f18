//! The emulated backend: every rule as plain, synchronous operations on one in-memory structure.
//! The HTTP layer holds the lock only around these calls (no `.await` inside), generates key
//! material and parses bodies outside it, and serializes responses after releasing it.

use std::collections::HashMap;

use jiff::{SignedDuration, Timestamp};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::api_error::ApiError;
use crate::keys::{KeyHash, Minted};
use crate::model::{
    Actor, ActorKind, Agent, AgentRec, AgentStatus, AgentType, AppKeyRec, AppRec, AuditEntry,
    IdempotencyRec, Key, KeyRec, RegistryEntry, Scopes, StateSnapshot,
};
use crate::validate::{CreateReq, UpdateReq};
use crate::wire::{CreateOut, MintOut, Page};

/// Default number of non-revoked keys an agent may hold.
pub(crate) const DEFAULT_KEY_LIMIT: usize = 10;
/// Default grace period of a scope narrowing (24 h, as the SDK documents).
pub(crate) const DEFAULT_GRACE_SECONDS: u64 = 86_400;
const STATE_FORMAT: u32 = 1;

#[derive(Clone, Copy, Debug)]
enum Owner {
    App { key: Uuid },
    Agent { agent: Uuid, key: Uuid },
}

/// Who a request is authenticated as.
#[derive(Clone, Debug)]
pub(crate) enum Principal {
    App {
        app: Uuid,
        key: Uuid,
        scopes: Vec<String>,
        deprecated: bool,
    },
    Agent {
        app: Uuid,
        agent: Uuid,
        deprecated: bool,
        inactive: bool,
    },
}

impl Principal {
    pub fn deprecated(&self) -> bool {
        match self {
            Principal::App { deprecated, .. } | Principal::Agent { deprecated, .. } => *deprecated,
        }
    }
}

/// `GET /sdk/agents`.
#[derive(Clone, Debug, Default)]
pub(crate) struct ListQuery {
    pub name: Option<String>,
    pub include_revoked: bool,
    pub statuses: Option<Vec<AgentStatus>>,
    pub agent_type: Option<AgentType>,
    pub provider: Option<String>,
    pub search: Option<String>,
    pub limit: usize,
    pub offset: usize,
}

/// The state file: hashes only.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct PersistedState {
    pub format: u32,
    pub apps: Vec<AppRec>,
    pub app_keys: Vec<AppKeyRec>,
    pub agents: Vec<AgentRec>,
    pub idempotency: Vec<IdempotencyRec>,
    pub audit: Vec<AuditEntry>,
}

pub(crate) struct State {
    apps: HashMap<Uuid, AppRec>,
    app_order: Vec<Uuid>,
    app_keys: HashMap<Uuid, AppKeyRec>,
    app_key_order: Vec<Uuid>,
    agents: HashMap<Uuid, AgentRec>,
    agent_order: Vec<Uuid>,
    /// (app, name) of non-revoked agents.
    live_names: HashMap<(Uuid, String), Uuid>,
    /// Every key ever issued, by hash (revoked ones too, to answer `key_revoked`).
    key_index: HashMap<KeyHash, Owner>,
    actors: HashMap<Uuid, Uuid>,
    idempotency: HashMap<(Uuid, String), IdempotencyRec>,
    audit: Vec<AuditEntry>,
    key_limit: usize,
    /// Bumped by every change worth persisting.
    generation: u64,
}

fn is_superset(new: &Scopes, old: &Scopes) -> bool {
    old.iter().all(|(p, list)| {
        new.get(p)
            .is_some_and(|n| list.iter().all(|s| n.contains(s)))
    })
}

fn union(a: &Scopes, b: &Scopes) -> Scopes {
    let mut out = a.clone();
    for (p, list) in b {
        let entry = out.entry(p.clone()).or_default();
        for s in list {
            if !entry.contains(s) {
                entry.push(s.clone());
            }
        }
    }
    out
}

impl State {
    pub fn new(key_limit: usize) -> Self {
        State {
            apps: HashMap::new(),
            app_order: Vec::new(),
            app_keys: HashMap::new(),
            app_key_order: Vec::new(),
            agents: HashMap::new(),
            agent_order: Vec::new(),
            live_names: HashMap::new(),
            key_index: HashMap::new(),
            actors: HashMap::new(),
            idempotency: HashMap::new(),
            audit: Vec::new(),
            key_limit,
            generation: 0,
        }
    }

    pub fn generation(&self) -> u64 {
        self.generation
    }

    pub fn set_key_limit(&mut self, limit: usize) {
        self.key_limit = limit;
    }

    fn touch(&mut self) {
        self.generation += 1;
    }

    #[allow(clippy::too_many_arguments)]
    fn record(
        &mut self,
        app: Uuid,
        actor: Actor,
        action: &str,
        agent: Option<Uuid>,
        key: Option<Uuid>,
        outcome: &str,
        now: Timestamp,
    ) {
        self.audit.push(AuditEntry {
            seq: self.audit.len() as u64 + 1,
            at: now,
            app_id: app.to_string(),
            actor,
            action: action.to_owned(),
            agent_id: agent.map(|u| u.to_string()),
            key_id: key.map(|u| u.to_string()),
            outcome: outcome.to_owned(),
        });
        self.touch();
    }

    fn by_key(key: Uuid) -> Actor {
        Actor {
            kind: ActorKind::AppKey,
            id: Some(key.to_string()),
        }
    }

    fn admin() -> Actor {
        Actor {
            kind: ActorKind::Admin,
            id: None,
        }
    }

    /// Records a refused state-changing call.
    #[allow(clippy::too_many_arguments)]
    pub fn record_failure(
        &mut self,
        app: Uuid,
        key: Uuid,
        action: &str,
        agent: Option<Uuid>,
        agent_key: Option<Uuid>,
        code: &str,
        now: Timestamp,
    ) {
        self.record(app, Self::by_key(key), action, agent, agent_key, code, now);
    }

    // -----------------------------------------------------------------------------------------
    // Apps and app keys (admin)
    // -----------------------------------------------------------------------------------------

    pub fn create_app(&mut self, name: String, now: Timestamp) -> AppRec {
        let rec = AppRec {
            id: Uuid::new_v4(),
            name,
            created_at: now,
        };
        self.apps.insert(rec.id, rec.clone());
        self.app_order.push(rec.id);
        self.touch();
        rec
    }

    pub fn apps(&self) -> Vec<AppRec> {
        self.app_order
            .iter()
            .filter_map(|id| self.apps.get(id).cloned())
            .collect()
    }

    pub fn create_app_key(
        &mut self,
        app: Uuid,
        label: String,
        scopes: Vec<String>,
        minted: &Minted,
        now: Timestamp,
    ) -> Option<AppKeyRec> {
        self.apps.get(&app)?;
        let rec = AppKeyRec {
            id: Uuid::new_v4(),
            app_id: app,
            label,
            key_prefix: minted.prefix.clone(),
            key_hash: minted.hash,
            scopes,
            created_at: now,
            deprecated_at: None,
            revoked_at: None,
            last_used_at: None,
        };
        self.key_index
            .insert(rec.key_hash, Owner::App { key: rec.id });
        self.app_keys.insert(rec.id, rec.clone());
        self.app_key_order.push(rec.id);
        self.record(
            app,
            Self::admin(),
            "create_app_key",
            None,
            Some(rec.id),
            "success",
            now,
        );
        Some(rec)
    }

    pub fn app_keys(&self) -> Vec<AppKeyRec> {
        self.app_key_order
            .iter()
            .filter_map(|id| self.app_keys.get(id).cloned())
            .collect()
    }

    /// `None` when unknown. Idempotent; a revoked key stays revoked.
    pub fn set_app_key_deprecated(
        &mut self,
        id: Uuid,
        deprecated: bool,
        now: Timestamp,
    ) -> Option<AppKeyRec> {
        let k = self.app_keys.get_mut(&id)?;
        if k.revoked_at.is_some() || k.deprecated_at.is_some() == deprecated {
            return Some(k.clone());
        }
        k.deprecated_at = deprecated.then_some(now);
        let (out, app) = (k.clone(), k.app_id);
        let action = if deprecated {
            "deprecate_app_key"
        } else {
            "undeprecate_app_key"
        };
        self.record(app, Self::admin(), action, None, Some(id), "success", now);
        Some(out)
    }

    /// `None` when unknown. Idempotent.
    pub fn revoke_app_key(&mut self, id: Uuid, now: Timestamp) -> Option<AppKeyRec> {
        let k = self.app_keys.get_mut(&id)?;
        if k.revoked_at.is_some() {
            return Some(k.clone());
        }
        k.revoked_at = Some(now);
        let (out, app) = (k.clone(), k.app_id);
        self.record(
            app,
            Self::admin(),
            "revoke_app_key",
            None,
            Some(id),
            "success",
            now,
        );
        Some(out)
    }

    // -----------------------------------------------------------------------------------------
    // Authentication
    // -----------------------------------------------------------------------------------------

    /// Whether a key with this hash was ever issued (the signature is checked next).
    pub fn knows(&self, hash: &KeyHash) -> bool {
        self.key_index.contains_key(hash)
    }

    /// The principal of a validly signed request: refuses revoked keys, records the use.
    pub fn admit(&mut self, hash: &KeyHash, now: Timestamp) -> Result<Principal, ApiError> {
        let owner = *self.key_index.get(hash).ok_or_else(ApiError::invalid_key)?;
        let p = match owner {
            Owner::App { key } => {
                let k = self
                    .app_keys
                    .get_mut(&key)
                    .ok_or_else(|| ApiError::internal("key index out of sync"))?;
                // Alter's documented answer to a revoked app key.
                if k.revoked_at.is_some() {
                    return Err(ApiError::invalid_key());
                }
                k.last_used_at = Some(now);
                Principal::App {
                    app: k.app_id,
                    key,
                    scopes: k.scopes.clone(),
                    deprecated: k.deprecated_at.is_some(),
                }
            }
            Owner::Agent { agent, key } => {
                let a = self
                    .agents
                    .get_mut(&agent)
                    .ok_or_else(|| ApiError::internal("key index out of sync"))?;
                let app = a.app_id;
                let inactive = a.status == AgentStatus::Inactive;
                let k = a
                    .key_mut(key)
                    .ok_or_else(|| ApiError::internal("key index out of sync"))?;
                if k.revoked_at.is_some() {
                    return Err(ApiError::key_revoked_auth());
                }
                k.last_used_at = Some(now);
                let deprecated = k.deprecated_at.is_some();
                a.record_activity(now);
                Principal::Agent {
                    app,
                    agent,
                    deprecated,
                    inactive,
                }
            }
        };
        self.touch();
        Ok(p)
    }

    // -----------------------------------------------------------------------------------------
    // Agents
    // -----------------------------------------------------------------------------------------

    fn agent_in(&self, app: Uuid, id: Uuid) -> Result<&AgentRec, ApiError> {
        self.agents
            .get(&id)
            .filter(|a| a.app_id == app)
            .ok_or_else(ApiError::agent_not_found)
    }

    /// The agent, if it is the app's and not revoked.
    fn live_agent_mut(&mut self, app: Uuid, id: Uuid) -> Result<&mut AgentRec, ApiError> {
        self.agents
            .get_mut(&id)
            .filter(|a| a.app_id == app && a.status != AgentStatus::Revoked)
            .ok_or_else(ApiError::agent_not_found)
    }

    #[allow(clippy::too_many_arguments)]
    pub fn create_agent(
        &mut self,
        app: Uuid,
        actor: Uuid,
        req: CreateReq,
        idempotency_key: Option<String>,
        minted: Minted,
        now: Timestamp,
    ) -> Result<(CreateOut, bool), ApiError> {
        let fingerprint = req.fingerprint();
        if let Some(ik) = &idempotency_key
            && let Some(rec) = self.idempotency.get(&(app, ik.clone()))
        {
            if rec.fingerprint != fingerprint {
                return Err(ApiError::idempotency_body_mismatch());
            }
            let a = self
                .agents
                .get(&rec.agent_id)
                .ok_or_else(|| ApiError::internal("idempotency record out of sync"))?;
            match a.status {
                AgentStatus::Revoked => return Err(ApiError::idempotency_agent_revoked()),
                AgentStatus::Inactive => return Err(ApiError::idempotency_agent_inactive()),
                AgentStatus::Active => {}
            }
            let out = CreateOut {
                agent: a.view(now),
                api_key: None,
                key_id: rec.key_id.to_string(),
            };
            return Ok((out, true));
        }
        if self.live_names.contains_key(&(app, req.name.clone())) {
            return Err(ApiError::agent_name_exists());
        }
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
            id: Uuid::new_v4(),
            app_id: app,
            actor_id: Uuid::new_v4(),
            name: req.name,
            display_name: req.display_name,
            agent_type: req.agent_type,
            status: AgentStatus::Active,
            scopes: req.scopes,
            scopes_pending: None,
            scopes_applies_at: None,
            policy: req.policy,
            metadata: req.metadata,
            version: 1,
            created_at: now,
            updated_at: now,
            revoked_at: None,
            keys: vec![key.clone()],
            keys_minted: 1,
            activity: Default::default(),
            last_activity_at: None,
        };
        let out = CreateOut {
            agent: agent.view(now),
            api_key: Some(minted.plaintext),
            key_id: key.id.to_string(),
        };
        let id = agent.id;
        self.key_index.insert(
            key.key_hash,
            Owner::Agent {
                agent: id,
                key: key.id,
            },
        );
        self.live_names.insert((app, agent.name.clone()), id);
        self.actors.insert(agent.actor_id, id);
        self.agents.insert(id, agent);
        self.agent_order.push(id);
        if let Some(ik) = idempotency_key {
            self.idempotency.insert(
                (app, ik.clone()),
                IdempotencyRec {
                    app_id: app,
                    idempotency_key: ik,
                    fingerprint,
                    agent_id: id,
                    key_id: key.id,
                    created_at: now,
                },
            );
        }
        self.record(
            app,
            Self::by_key(actor),
            "create_agent",
            Some(id),
            Some(key.id),
            "success",
            now,
        );
        Ok((out, false))
    }

    pub fn list_agents(&self, app: Uuid, q: &ListQuery, now: Timestamp) -> Page<Agent> {
        let search = q.search.as_ref().map(|s| s.to_lowercase());
        let matching = self
            .agent_order
            .iter()
            .filter_map(|id| self.agents.get(id))
            .filter(|a| a.app_id == app)
            .filter(|a| match &q.statuses {
                Some(statuses) => statuses.contains(&a.status),
                None => q.include_revoked || a.status != AgentStatus::Revoked,
            })
            .filter(|a| q.name.as_deref().is_none_or(|n| a.name == n))
            .filter(|a| q.agent_type.is_none_or(|t| a.agent_type == t))
            .filter(|a| {
                q.provider
                    .as_deref()
                    .is_none_or(|p| a.view(now).scopes.contains_key(p))
            })
            .filter(|a| {
                search.as_deref().is_none_or(|s| {
                    a.name.to_lowercase().contains(s)
                        || a.display_name
                            .as_deref()
                            .is_some_and(|d| d.to_lowercase().contains(s))
                })
            })
            .map(|a| a.view(now));
        Page::of(matching, q.limit, q.offset)
    }

    pub fn get_agent(
        &self,
        app: Uuid,
        id: Uuid,
        include_revoked: bool,
        now: Timestamp,
    ) -> Result<Agent, ApiError> {
        let a = self.agent_in(app, id)?;
        if a.status == AgentStatus::Revoked && !include_revoked {
            return Err(ApiError::agent_not_found());
        }
        Ok(a.view(now))
    }

    #[allow(clippy::too_many_arguments)]
    pub fn update_agent(
        &mut self,
        app: Uuid,
        actor: Uuid,
        id: Uuid,
        req: UpdateReq,
        expected_version: Option<u64>,
        grace_seconds: Option<u64>,
        now: Timestamp,
    ) -> Result<(Agent, &'static str), ApiError> {
        if req.scopes.is_some() && expected_version.is_none() {
            return Err(ApiError::validation(
                "expected_version",
                "required when updating scopes",
            ));
        }
        if grace_seconds.is_some() && req.scopes.is_none() {
            return Err(ApiError::validation("grace_seconds", "requires scopes"));
        }
        let a = self.live_agent_mut(app, id)?;
        if expected_version.is_some_and(|v| v != a.version) {
            return Err(ApiError::agent_concurrent_update());
        }
        a.settle(now);
        let mut changed = false;
        if let Some(d) = req.display_name
            && a.display_name.as_ref() != Some(&d)
        {
            a.display_name = Some(d);
            changed = true;
        }
        if let Some(m) = req.metadata
            && m != a.metadata
        {
            a.metadata = m;
            changed = true;
        }
        if let Some(p) = req.policy
            && p != a.policy
        {
            a.policy = p;
            changed = true;
        }
        if let Some(new) = req.scopes
            && !(new == a.scopes && a.scopes_pending.is_none())
        {
            let grace = grace_seconds.unwrap_or(DEFAULT_GRACE_SECONDS);
            if is_superset(&new, &a.scopes) || grace == 0 {
                a.scopes = new;
                a.scopes_pending = None;
                a.scopes_applies_at = None;
            } else {
                // What is added applies now; what is removed goes when the grace period ends.
                a.scopes = union(&a.scopes, &new);
                a.scopes_pending = Some(new);
                a.scopes_applies_at = now
                    .checked_add(SignedDuration::from_secs(grace as i64))
                    .ok();
            }
            changed = true;
        }
        let mut action = "update_agent";
        if let Some(s) = req.status
            && s != a.status
        {
            if !changed {
                action = if s == AgentStatus::Inactive {
                    "suspend_agent"
                } else {
                    "resume_agent"
                };
            }
            a.status = s;
            changed = true;
        }
        if changed {
            a.version += 1;
            a.updated_at = now;
        }
        let view = a.view(now);
        if changed {
            self.record(
                app,
                Self::by_key(actor),
                action,
                Some(id),
                None,
                "success",
                now,
            );
        }
        Ok((view, action))
    }

    pub fn delete_agent(
        &mut self,
        app: Uuid,
        actor: Uuid,
        id: Uuid,
        now: Timestamp,
    ) -> Result<Agent, ApiError> {
        let a = self
            .agents
            .get_mut(&id)
            .filter(|a| a.app_id == app)
            .ok_or_else(ApiError::agent_not_found)?;
        if a.status == AgentStatus::Revoked {
            return Ok(a.view(now));
        }
        a.status = AgentStatus::Revoked;
        a.revoked_at = Some(now);
        a.version += 1;
        a.updated_at = now;
        for k in a.keys.iter_mut().filter(|k| k.revoked_at.is_none()) {
            k.revoked_at = Some(now);
        }
        let view = a.view(now);
        let name = a.name.clone();
        if self.live_names.get(&(app, name.clone())) == Some(&id) {
            self.live_names.remove(&(app, name));
        }
        self.record(
            app,
            Self::by_key(actor),
            "delete_agent",
            Some(id),
            None,
            "success",
            now,
        );
        Ok(view)
    }

    pub fn mint_key(
        &mut self,
        app: Uuid,
        actor: Uuid,
        id: Uuid,
        minted: Minted,
        now: Timestamp,
    ) -> Result<MintOut, ApiError> {
        let limit = self.key_limit;
        let a = self.live_agent_mut(app, id)?;
        if a.non_revoked_keys() >= limit {
            return Err(ApiError::key_limit_reached(limit));
        }
        a.keys_minted += 1;
        let key = KeyRec {
            id: Uuid::new_v4(),
            name: format!("{}-{}", a.name, a.keys_minted),
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
            Owner::Agent {
                agent: id,
                key: key.id,
            },
        );
        self.record(
            app,
            Self::by_key(actor),
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

    pub fn list_keys(&self, app: Uuid, id: Uuid) -> Result<Vec<Key>, ApiError> {
        Ok(self
            .agent_in(app, id)?
            .keys
            .iter()
            .map(KeyRec::view)
            .collect())
    }

    #[allow(clippy::too_many_arguments)]
    pub fn set_key_deprecated(
        &mut self,
        app: Uuid,
        actor: Uuid,
        id: Uuid,
        key_id: Uuid,
        deprecated: bool,
        now: Timestamp,
    ) -> Result<Key, ApiError> {
        let a = self.live_agent_mut(app, id)?;
        let k = a.key_mut(key_id).ok_or_else(ApiError::key_not_found)?;
        if k.revoked_at.is_some() {
            return Err(ApiError::key_revoked_conflict());
        }
        if k.deprecated_at.is_some() == deprecated {
            return Ok(k.view());
        }
        k.deprecated_at = deprecated.then_some(now);
        let view = k.view();
        let action = if deprecated {
            "deprecate_key"
        } else {
            "undeprecate_key"
        };
        self.record(
            app,
            Self::by_key(actor),
            action,
            Some(id),
            Some(key_id),
            "success",
            now,
        );
        Ok(view)
    }

    #[allow(clippy::too_many_arguments)]
    pub fn revoke_key(
        &mut self,
        app: Uuid,
        actor: Uuid,
        id: Uuid,
        key_id: Uuid,
        force: bool,
        now: Timestamp,
    ) -> Result<Key, ApiError> {
        let a = self.live_agent_mut(app, id)?;
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
            app,
            Self::by_key(actor),
            "revoke_key",
            Some(id),
            Some(key_id),
            "success",
            now,
        );
        Ok(view)
    }

    pub fn me(&self, agent: Uuid, now: Timestamp) -> Result<Agent, ApiError> {
        self.agents
            .get(&agent)
            .map(|a| a.view(now))
            .ok_or_else(|| ApiError::internal("agent of an admitted key is gone"))
    }

    pub fn actor_of(&self, agent: Uuid) -> Option<Uuid> {
        self.agents.get(&agent).map(|a| a.actor_id)
    }

    /// The agent's audit feed, newest first.
    pub fn agent_audit(
        &self,
        app: Uuid,
        id: Uuid,
        limit: usize,
        offset: usize,
    ) -> Result<Page<AuditEntry>, ApiError> {
        self.agent_in(app, id)?;
        let id = id.to_string();
        let entries = self
            .audit
            .iter()
            .rev()
            .filter(|e| e.agent_id.as_deref() == Some(id.as_str()))
            .cloned();
        Ok(Page::of(entries, limit, offset))
    }

    /// Agents of the app seen calling, most recently active first.
    pub fn registry(
        &self,
        app: Uuid,
        limit: usize,
        offset: usize,
        now: Timestamp,
    ) -> Page<RegistryEntry> {
        let mut seen: Vec<&AgentRec> = self
            .agents
            .values()
            .filter(|a| a.app_id == app && a.last_activity_at.is_some())
            .collect();
        seen.sort_by(|a, b| {
            b.last_activity_at
                .cmp(&a.last_activity_at)
                .then(a.id.cmp(&b.id))
        });
        Page::of(
            seen.into_iter().map(|a| a.registry_entry(now)),
            limit,
            offset,
        )
    }

    pub fn registry_entry(
        &self,
        app: Uuid,
        actor: Uuid,
        now: Timestamp,
    ) -> Result<RegistryEntry, ApiError> {
        self.actors
            .get(&actor)
            .and_then(|id| self.agents.get(id))
            .filter(|a| a.app_id == app && a.last_activity_at.is_some())
            .map(|a| a.registry_entry(now))
            .ok_or_else(ApiError::actor_not_found)
    }

    // -----------------------------------------------------------------------------------------
    // Views, audit, persistence
    // -----------------------------------------------------------------------------------------

    pub fn snapshot(&self, now: Timestamp) -> StateSnapshot {
        StateSnapshot {
            apps: self
                .apps()
                .into_iter()
                .map(|a| crate::model::App {
                    id: a.id.to_string(),
                    name: a.name,
                    created_at: a.created_at,
                })
                .collect(),
            app_keys: self.app_keys().iter().map(AppKeyRec::view).collect(),
            agents: self
                .agent_order
                .iter()
                .filter_map(|id| self.agents.get(id))
                .map(|a| a.snapshot(now))
                .collect(),
        }
    }

    /// Entries with `seq > since`, oldest first, at most `limit`.
    pub fn audit(&self, since: u64, limit: usize) -> Vec<AuditEntry> {
        let start = usize::try_from(since)
            .unwrap_or(usize::MAX)
            .min(self.audit.len());
        self.audit[start..].iter().take(limit).cloned().collect()
    }

    pub fn to_persisted(&self) -> PersistedState {
        PersistedState {
            format: STATE_FORMAT,
            apps: self.apps(),
            app_keys: self.app_keys(),
            agents: self
                .agent_order
                .iter()
                .filter_map(|id| self.agents.get(id).cloned())
                .collect(),
            idempotency: self.idempotency.values().cloned().collect(),
            audit: self.audit.clone(),
        }
    }

    /// Rebuilds the indexes from a state file; refuses anything inconsistent.
    pub fn from_persisted(p: PersistedState, key_limit: usize) -> Result<State, String> {
        if p.format != STATE_FORMAT {
            return Err(format!(
                "unsupported format {} (expected {STATE_FORMAT})",
                p.format
            ));
        }
        let mut s = State::new(key_limit);
        for a in p.apps {
            s.app_order.push(a.id);
            if s.apps.insert(a.id, a).is_some() {
                return Err("an app id appears twice".into());
            }
        }
        let dup = || "a key hash appears twice".to_owned();
        for k in p.app_keys {
            if !s.apps.contains_key(&k.app_id) {
                return Err("an app key belongs to an unknown app".into());
            }
            if s.key_index
                .insert(k.key_hash, Owner::App { key: k.id })
                .is_some()
            {
                return Err(dup());
            }
            s.app_key_order.push(k.id);
            if s.app_keys.insert(k.id, k).is_some() {
                return Err("an app key id appears twice".into());
            }
        }
        for a in p.agents {
            if !s.apps.contains_key(&a.app_id) {
                return Err("an agent belongs to an unknown app".into());
            }
            for k in &a.keys {
                if s.key_index
                    .insert(
                        k.key_hash,
                        Owner::Agent {
                            agent: a.id,
                            key: k.id,
                        },
                    )
                    .is_some()
                {
                    return Err(dup());
                }
            }
            let revoked = a.status == AgentStatus::Revoked;
            if revoked && a.keys.iter().any(|k| k.revoked_at.is_none()) {
                return Err("a revoked agent has a non-revoked key".into());
            }
            if !revoked
                && s.live_names
                    .insert((a.app_id, a.name.clone()), a.id)
                    .is_some()
            {
                return Err("two non-revoked agents of an app share a name".into());
            }
            if s.actors.insert(a.actor_id, a.id).is_some() {
                return Err("an actor id appears twice".into());
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
            s.idempotency
                .insert((rec.app_id, rec.idempotency_key.clone()), rec);
        }
        for (i, e) in p.audit.iter().enumerate() {
            if e.seq != i as u64 + 1 {
                return Err("audit sequence numbers are not 1, 2, 3, …".into());
            }
        }
        s.audit = p.audit;
        Ok(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::{hash, mint_agent_key, mint_app_key};
    use crate::time::now;
    use crate::validate;
    use serde_json::json;

    fn setup() -> (State, Uuid, Uuid, String) {
        let mut s = State::new(3);
        let app = s.create_app("app".into(), now()).id;
        let minted = mint_app_key();
        let key = s
            .create_app_key(
                app,
                "ops".into(),
                vec!["dashboard_agents:admin".into()],
                &minted,
                now(),
            )
            .unwrap()
            .id;
        (s, app, key, minted.plaintext)
    }

    fn create(
        s: &mut State,
        app: Uuid,
        key: Uuid,
        body: serde_json::Value,
        ik: Option<&str>,
    ) -> Result<(CreateOut, bool), ApiError> {
        let req = validate::create(body.as_object().unwrap()).unwrap();
        s.create_agent(
            app,
            key,
            req,
            ik.map(str::to_owned),
            mint_agent_key(),
            now(),
        )
    }

    #[test]
    fn narrowing_is_staged_and_broadening_immediate() {
        let (mut s, app, key, _) = setup();
        let (out, _) = create(
            &mut s,
            app,
            key,
            json!({"name": "a", "scopes": {"slack": ["r", "w"]}}),
            None,
        )
        .unwrap();
        let id: Uuid = out.agent.id.parse().unwrap();
        let up = |scopes: serde_json::Value| UpdateReq {
            scopes: Some(validate::scopes(&scopes).unwrap()),
            ..Default::default()
        };
        let t0 = now();
        let (a, _) = s
            .update_agent(
                app,
                key,
                id,
                up(json!({"slack": ["r"], "gh": ["x"]})),
                Some(1),
                Some(60),
                t0,
            )
            .unwrap();
        assert_eq!(a.scopes["slack"], ["r", "w"], "removal staged");
        assert_eq!(a.scopes["gh"], ["x"], "addition immediate");
        assert_eq!(a.scopes_pending.as_ref().unwrap()["slack"], ["r"]);
        let later = t0.checked_add(SignedDuration::from_secs(61)).unwrap();
        let after = s.get_agent(app, id, false, later).unwrap();
        assert_eq!(after.scopes["slack"], ["r"]);
        assert!(after.scopes_pending.is_none());
        // A stale version is refused.
        let e = s
            .update_agent(app, key, id, up(json!({})), Some(1), None, later)
            .unwrap_err();
        assert_eq!(e.code, "agent_concurrent_update");
        // Grace 0: immediate.
        let (a, _) = s
            .update_agent(app, key, id, up(json!({})), Some(2), Some(0), later)
            .unwrap();
        assert!(a.scopes.is_empty() && a.version == 3);
    }

    #[test]
    fn persisted_round_trip_rebuilds_indexes() {
        let (mut s, app, key, app_plain) = setup();
        let (out, _) = create(&mut s, app, key, json!({"name": "bot"}), Some("ik")).unwrap();
        let agent_plain = out.api_key.clone().unwrap();
        let text = serde_json::to_string(&s.to_persisted()).unwrap();
        assert!(!text.contains(&agent_plain) && !text.contains(&app_plain));
        let mut s2 = State::from_persisted(serde_json::from_str(&text).unwrap(), 3).unwrap();
        let t = now();
        assert_eq!(s2.snapshot(t), s.snapshot(t));
        assert!(matches!(
            s2.admit(&hash(&agent_plain), t),
            Ok(Principal::Agent { .. })
        ));
        assert!(
            create(&mut s2, app, key, json!({"name": "bot"}), Some("ik"))
                .unwrap()
                .1
        );
        assert_eq!(
            create(&mut s2, app, key, json!({"name": "bot"}), None)
                .unwrap_err()
                .code,
            "agent_name_exists"
        );
    }

    #[test]
    fn names_and_idempotency_keys_are_per_app() {
        let (mut s, app, key, _) = setup();
        let other = s.create_app("other".into(), now()).id;
        let other_key = s
            .create_app_key(other, "x".into(), vec![], &mint_app_key(), now())
            .unwrap()
            .id;
        let (a, _) = create(&mut s, app, key, json!({"name": "bot"}), Some("ik")).unwrap();
        let (b, replay) =
            create(&mut s, other, other_key, json!({"name": "bot"}), Some("ik")).unwrap();
        assert!(!replay && a.agent.id != b.agent.id);
        let a_id: Uuid = a.agent.id.parse().unwrap();
        assert_eq!(
            s.get_agent(other, a_id, true, now()).unwrap_err().code,
            "agent_not_found"
        );
    }
}
