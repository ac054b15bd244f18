//! Alter's managed agents as a [`Backend`] (docs/alter.md §8, the mapping): the same planner, the
//! same LatticeAgent, the same guarantees, spoken through the `alter` client with an app key read
//! from a provisioner's marked Secret ([`AppKeyProvider`]).
//!
//! What maps, and how (the reasons are in docs/alter.md "The mapping"):
//!
//! - `spec.capabilities` ↔ Alter `scopes`: a capability `provider:scope` is the scope `scope` of
//!   provider `provider` (split at the first `:`); a capability without `:` has no provider and
//!   is refused before anything is sent ([`scopes_of`]). Scope changes cut over at once
//!   (`grace_seconds=0`): the LatticeAgent is the desired state, as with AgentLattice.
//! - `spec.description` ↔ `display_name`. Alter cannot clear a display name, so a removed
//!   description sets it to the agent's name, and a display name equal to the name reads as no
//!   description.
//! - `type` is always `agent` (a LatticeAgent is an AI workload's identity; no field chooses it).
//! - metadata (`k8s.uid`, …) as JSON strings; halt/resume ↔ suspend/resume; revoke ↔ delete
//!   (cascade); mint, list, deprecate, revoke keys (never forced) as they are.
//! - Agent names: Alter allows `a-z 0-9 - _` only; a name with `.` (legal in Kubernetes) is
//!   refused with a message naming `spec.agentName`, never rewritten (two names must not become
//!   one).

use std::sync::Arc;

use ::alter::{
    AgentType, AppClient, AppKey, ClientConfig, CreateAgent, IdempotencyKey, Scopes, UpdateAgent,
};
use futures::future::BoxFuture;
use jiff::SignedDuration;

use super::{
    Backend, Credential, CredentialError, CredentialProvider, IssuedKey, Minted, Registration,
    RemoteError, RemoteResult, class_of_answer, describe_answer, prefix_after,
};
use crate::plan::{
    AgentStatus, AgentView, ErrorClass, KeyStatus, KeyView, MintedKey, RegisterOutcome,
    RegisterRequest,
};

/// Alter's public API, the default base URL of an Alter provisioner.
pub const DEFAULT_BASE_URL: &str = ::alter::DEFAULT_BASE_URL;

/// The longest agent name the operator sends to Alter (the SDK leaves it open; the emulator
/// takes 128).
pub const NAME_MAX: usize = 128;

/// An Alter app key (`alter_rk_…`, or a legacy `alter_key_…` app key) and [`AppClient`].
#[derive(Debug)]
pub enum AppKeyCredential {}

impl Credential for AppKeyCredential {
    type Config = ClientConfig;
    type Client = AppClient;
    const WHAT: &'static str = "app key";

    fn public_prefix(key: &str) -> String {
        match key.strip_prefix("alter_rk_") {
            Some(_) => prefix_after(key, "alter_rk_"),
            None => prefix_after(key, "alter_key_"),
        }
    }

    fn client(
        config: &ClientConfig,
        key: String,
        first: Option<&AppClient>,
    ) -> Result<AppClient, CredentialError> {
        let key = if key.starts_with("alter_key_") {
            AppKey::legacy(key)
        } else {
            AppKey::new(key)
        }
        .map_err(|e| CredentialError::Key(format!("not an Alter app key ({e})")))?;
        let config_error =
            |e: ::alter::Error| CredentialError::Config(format!("Alter client: {e}"));
        match first {
            Some(t) => t.with_app_key(key).map_err(config_error),
            None => AppClient::new(config, key).map_err(config_error),
        }
    }
}

/// The app key provider of an Alter provisioner.
pub type AppKeyProvider = CredentialProvider<AppKeyCredential>;

/// [`Backend`] on Alter's `/sdk/agents` routes.
#[derive(Debug, Clone)]
pub struct Alter {
    provider: Arc<AppKeyProvider>,
}

impl Alter {
    /// Alter through `provider`'s app key.
    pub fn new(provider: Arc<AppKeyProvider>) -> Self {
        Alter { provider }
    }

    /// The app key provider.
    pub fn provider(&self) -> &Arc<AppKeyProvider> {
        &self.provider
    }

    async fn call<T, F, Fut>(&self, f: F) -> RemoteResult<T>
    where
        F: FnOnce(AppClient) -> Fut,
        Fut: Future<Output = ::alter::Result<T>>,
    {
        let client = self.provider.client().await?;
        f(client).await.map_err(|e| self.classified(&e))
    }

    fn classified(&self, e: &::alter::Error) -> RemoteError {
        let error = classify(e);
        if error.class == ErrorClass::ServiceKeyRejected {
            // The Secret may have been fixed since the key was cached.
            self.provider.invalidate();
        }
        error
    }

    /// Checks the app key: present, marked, belonging to the configured app
    /// (`POST /sdk/identity/resolve`), and allowed to read agents (`GET /sdk/agents?limit=1`).
    pub async fn check_app_key(&self) -> RemoteResult<()> {
        self.call(|c| async move {
            c.verify_app().await?;
            c.list_agents(&::alter::ListAgentsQuery::new().limit(1))
                .await
                .map(|_| ())
        })
        .await
    }
}

impl Backend for Alter {
    fn register<'a>(
        &'a self,
        request: &'a RegisterRequest,
        idempotency_key: &'a str,
    ) -> BoxFuture<'a, RemoteResult<Registration>> {
        Box::pin(async move {
            check_name(&request.name)?;
            let mut body = CreateAgent::new(request.name.clone())
                .agent_type(AgentType::Agent)
                .scopes(scopes_of(&request.capabilities)?);
            if let Some(d) = &request.description {
                body = body.display_name(d.clone());
            }
            for (k, v) in &request.metadata {
                body = body.metadata(k.clone(), v.clone());
            }
            let idempotency_key = IdempotencyKey::new(idempotency_key).map_err(|e| classify(&e))?;
            let client = self.provider.client().await?;
            match client.create_agent(&body, Some(&idempotency_key)).await {
                Ok(created) => {
                    let created_at = created.agent.created_at;
                    let agent_id = created.agent.id.clone();
                    let agent = agent_view(created.agent);
                    match created.api_key {
                        Some(key) => {
                            // The create answer has no `key_prefix`: the listing has it. Best
                            // effort — an empty prefix is "unknown" to the planner, and the key
                            // (already issued) must reach the Secret whatever this read does.
                            let prefix = client
                                .list_keys(&agent_id)
                                .await
                                .ok()
                                .and_then(|keys| {
                                    keys.into_iter().find(|k| k.key_id == created.key_id)
                                })
                                .map(|k| k.key_prefix)
                                .unwrap_or_default();
                            Ok(Registration {
                                outcome: RegisterOutcome::Created {
                                    agent,
                                    key: MintedKey {
                                        id: created.key_id,
                                        prefix,
                                        created_at,
                                        sha256: crate::secret::key_digest(
                                            key.expose_secret().as_bytes(),
                                        ),
                                    },
                                },
                                key: Some(IssuedKey::from(key)),
                            })
                        }
                        None => Ok(Registration {
                            outcome: RegisterOutcome::Replayed {
                                agent_id,
                                key_id: created.key_id,
                            },
                            key: None,
                        }),
                    }
                }
                Err(e) => match (e.status(), e.code()) {
                    (Some(409), Some("agent_name_exists")) => Ok(Registration {
                        outcome: RegisterOutcome::NameTaken,
                        key: None,
                    }),
                    (Some(409), Some("idempotency_key_agent_revoked")) => Ok(Registration {
                        outcome: RegisterOutcome::AgentRevoked,
                        key: None,
                    }),
                    (Some(409), Some("idempotency_key_body_mismatch")) => Ok(Registration {
                        outcome: RegisterOutcome::IdempotencyMismatch,
                        key: None,
                    }),
                    // The agent of an earlier attempt exists but is suspended: Alter does not
                    // replay it. It holds the name, so the planner looks it up by name and
                    // adopts it when its metadata links it to this resource (as after
                    // `agent_name_exists`).
                    (Some(409), Some("idempotency_key_agent_inactive")) => Ok(Registration {
                        outcome: RegisterOutcome::NameTaken,
                        key: None,
                    }),
                    _ => Err(self.classified(&e)),
                },
            }
        })
    }

    fn find_agents<'a>(&'a self, name: &'a str) -> BoxFuture<'a, RemoteResult<Vec<AgentView>>> {
        Box::pin(async move {
            if check_name(name).is_err() {
                // No Alter agent can have this name.
                return Ok(Vec::new());
            }
            let agent = self
                .call(|c| async move { c.get_agent_by_name(name).await })
                .await?;
            Ok(agent.into_iter().map(agent_view).collect())
        })
    }

    fn get_agent<'a>(&'a self, agent_id: &'a str) -> BoxFuture<'a, RemoteResult<AgentView>> {
        Box::pin(async move {
            // Including a revoked agent: a revocation out of band is told from a deletion, as
            // AgentLattice tells it.
            self.call(|c| async move { c.get_agent_including_revoked(agent_id).await })
                .await
                .map(agent_view)
        })
    }

    fn update_agent<'a>(
        &'a self,
        agent_id: &'a str,
        capabilities: Option<Vec<String>>,
        description: Option<Option<String>>,
    ) -> BoxFuture<'a, RemoteResult<AgentView>> {
        Box::pin(async move {
            let scopes = capabilities.as_deref().map(scopes_of).transpose()?;
            self.call(|c| async move {
                let mut update = UpdateAgent::new();
                let mut current = None;
                if let Some(scopes) = scopes {
                    // Scopes need the version they were computed against.
                    let agent = c.get_agent(agent_id).await?;
                    update = update.scopes(scopes, agent.version).grace_seconds(0);
                    current = Some(agent);
                }
                if let Some(description) = description {
                    let display_name = match description {
                        Some(d) => d,
                        None => match current {
                            Some(a) => a.name,
                            None => c.get_agent(agent_id).await?.name,
                        },
                    };
                    update = update.display_name(display_name);
                }
                c.update_agent(agent_id, &update).await
            })
            .await
            .map(agent_view)
        })
    }

    fn halt_agent<'a>(&'a self, agent_id: &'a str) -> BoxFuture<'a, RemoteResult<AgentView>> {
        Box::pin(async move {
            self.call(|c| async move { c.suspend_agent(agent_id).await })
                .await
                .map(agent_view)
        })
    }

    fn resume_agent<'a>(&'a self, agent_id: &'a str) -> BoxFuture<'a, RemoteResult<AgentView>> {
        Box::pin(async move {
            self.call(|c| async move { c.resume_agent(agent_id).await })
                .await
                .map(agent_view)
        })
    }

    fn revoke_agent<'a>(&'a self, agent_id: &'a str) -> BoxFuture<'a, RemoteResult<AgentView>> {
        Box::pin(async move {
            self.call(|c| async move { c.delete_agent(agent_id).await })
                .await
                .map(agent_view)
        })
    }

    fn mint_key<'a>(
        &'a self,
        agent_id: &'a str,
        _name: &'a str,
    ) -> BoxFuture<'a, RemoteResult<Minted>> {
        // Alter names keys itself (`<agent>-<n>`). Minting is not idempotent at Alter either:
        // the planner's mint intent and sweep cover a lost answer, as they do for AgentLattice.
        Box::pin(async move {
            let minted = self
                .call(|c| async move { c.mint_key(agent_id).await })
                .await?;
            Ok(Minted {
                id: minted.key.key_id,
                prefix: minted.key.key_prefix,
                created_at: minted.key.created_at,
                key: minted.api_key.into(),
            })
        })
    }

    fn list_keys<'a>(&'a self, agent_id: &'a str) -> BoxFuture<'a, RemoteResult<Vec<KeyView>>> {
        Box::pin(async move {
            let keys = self
                .call(|c| async move { c.list_keys(agent_id).await })
                .await?;
            Ok(keys.into_iter().map(key_view).collect())
        })
    }

    fn deprecate_key<'a>(
        &'a self,
        agent_id: &'a str,
        key_id: &'a str,
    ) -> BoxFuture<'a, RemoteResult<KeyView>> {
        Box::pin(async move {
            self.call(|c| async move { c.deprecate_key(agent_id, key_id).await })
                .await
                .map(key_view)
        })
    }

    fn revoke_key<'a>(
        &'a self,
        agent_id: &'a str,
        key_id: &'a str,
    ) -> BoxFuture<'a, RemoteResult<KeyView>> {
        Box::pin(async move {
            self.call(|c| async move { c.revoke_key(agent_id, key_id, false).await })
                .await
                .map(key_view)
        })
    }
}

// ----- the mapping ------------------------------------------------------------------------------

/// Refuses a name Alter would refuse (before anything is sent, with what to change).
pub fn check_name(name: &str) -> RemoteResult<()> {
    let ok = !name.is_empty()
        && name.len() <= NAME_MAX
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
        && name
            .bytes()
            .next()
            .is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
    if ok {
        return Ok(());
    }
    Err(RemoteError {
        class: ErrorClass::Invalid("agent_name".into()),
        message: format!(
            "agent name {name:?} is not valid at Alter: 1-{NAME_MAX} lowercase letters, digits, \
             '-' and '_', beginning with a letter or digit; set spec.agentName (a Kubernetes \
             name with '.' is not rewritten, so that two names never become one)"
        ),
    })
}

/// The Alter scopes of a capability set: `provider:scope` → `{provider: [scope, …]}`.
pub fn scopes_of(capabilities: &[String]) -> RemoteResult<Scopes> {
    let mut scopes = Scopes::new();
    for capability in capabilities {
        let Some((provider, scope)) = capability
            .split_once(':')
            .filter(|(p, s)| !p.is_empty() && !s.is_empty())
        else {
            return Err(RemoteError {
                class: ErrorClass::Invalid("capability".into()),
                message: format!(
                    "capability {capability:?} names no provider: an Alter agent's capabilities \
                     are written <provider>:<scope> (e.g. github:repo:read)"
                ),
            });
        };
        let list = scopes.entry(provider.to_owned()).or_default();
        if !list.iter().any(|s| s == scope) {
            list.push(scope.to_owned());
        }
    }
    for list in scopes.values_mut() {
        list.sort();
    }
    Ok(scopes)
}

/// The capabilities of an agent's scopes (the inverse of [`scopes_of`]), sorted.
pub fn capabilities_of(agent: &::alter::Agent) -> Vec<String> {
    let mut out: Vec<String> = agent
        .scope_lists()
        .unwrap_or_default()
        .into_iter()
        .flat_map(|(provider, scopes)| {
            scopes
                .into_iter()
                .map(move |scope| format!("{provider}:{scope}"))
        })
        .collect();
    out.sort();
    out.dedup();
    out
}

/// The planner's view of an Alter agent.
pub fn agent_view(agent: ::alter::Agent) -> AgentView {
    let capabilities = capabilities_of(&agent);
    let description = agent.display_name.clone().filter(|d| *d != agent.name);
    AgentView {
        capabilities,
        description,
        status: match agent.status {
            ::alter::AgentStatus::Inactive => AgentStatus::Halted,
            ::alter::AgentStatus::Revoked => AgentStatus::Revoked,
            // An unknown status is not evidence of revocation: treat it as working.
            _ => AgentStatus::Active,
        },
        metadata: agent
            .metadata
            .iter()
            .map(|(k, v)| {
                let text = match v {
                    serde_json::Value::String(s) => s.clone(),
                    other => other.to_string(),
                };
                (k.clone(), text)
            })
            .collect(),
        // Alter does not say which app key created an agent.
        created_by: None,
        id: agent.id,
        name: agent.name,
    }
}

/// The planner's view of an Alter key.
pub fn key_view(key: ::alter::KeyInfo) -> KeyView {
    KeyView {
        status: match key.status() {
            ::alter::KeyStatus::Active => KeyStatus::Active,
            ::alter::KeyStatus::Deprecated => KeyStatus::Deprecated,
            ::alter::KeyStatus::Revoked => KeyStatus::Revoked,
        },
        id: key.key_id,
        prefix: key.key_prefix,
        created_at: key.created_at,
        deprecated_at: key.deprecated_at,
        revoked_at: key.revoked_at,
        last_used_at: key.last_used_at,
    }
}

fn retry_after(e: &::alter::Error) -> Option<SignedDuration> {
    e.retry_after()
        .and_then(|d| SignedDuration::try_from(d).ok())
}

/// Classifies an Alter client error for the error policy (design §5), as [`super::classify`]
/// does AgentLattice's. A 429 is `rate_limit_exceeded` or `quota_exceeded` alike: wait for
/// `Retry-After` (a quota denial is not retried sooner; the SDK clamps it to 31 days).
pub fn classify(e: &::alter::Error) -> RemoteError {
    use ::alter::Error as E;
    let class = match e {
        E::Api(api) => class_of_answer(api.status, api.code.as_deref(), retry_after(e)),
        E::Throttled { .. } => ErrorClass::RateLimited {
            retry_after: retry_after(e),
        },
        E::Timeout { .. } | E::Transport { .. } => ErrorClass::Unavailable { retry_after: None },
        // A 2xx that did not decode: the call may have committed; retry later (a mint is covered
        // by the mint intent and its sweep).
        E::Decode { .. } => ErrorClass::Transient,
        E::AppMismatch { .. } => ErrorClass::ServiceKeyRejected,
        E::InvalidKey(_) => ErrorClass::ServiceKeyMissing,
        _ => ErrorClass::Invalid(e.category().to_owned()),
    };
    RemoteError {
        class,
        message: describe(e),
    }
}

/// A short, secret-free description: operation, status, code, the server's message for a refused
/// request, and for a missing scope which.
fn describe(e: &::alter::Error) -> String {
    let operation = e.operation().map(|o| o.as_str()).unwrap_or("request");
    match e.api() {
        Some(api) if !api.missing_scopes.is_empty() => {
            describe_answer("Alter", operation, api.status, api.code.as_deref(), None)
                + &format!(" (the app key lacks {})", api.missing_scopes.join(", "))
        }
        Some(api) => describe_answer(
            "Alter",
            operation,
            api.status,
            api.code.as_deref(),
            api.message.as_deref(),
        ),
        // The app ids are not secret; the key is not in this error.
        None if matches!(e, ::alter::Error::AppMismatch { .. }) => {
            crate::redact::redact(&format!("Alter {operation}: {e}"))
        }
        None => format!("Alter {operation}: {}", e.category()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ::alter::{ApiError, Operation};

    fn api(status: u16, code: Option<&str>) -> ::alter::Error {
        ::alter::Error::Api(Box::new(ApiError::new(Operation::GetAgent, status, code)))
    }

    #[test]
    fn capabilities_map_to_scopes_and_back() {
        let caps = vec![
            "github:repo:read".to_owned(),
            "slack:chat:write".to_owned(),
            "github:issues".to_owned(),
            "github:repo:read".to_owned(),
        ];
        let scopes = scopes_of(&caps).expect("valid");
        assert_eq!(
            scopes.get("github"),
            Some(&vec!["issues".to_owned(), "repo:read".to_owned()])
        );
        assert_eq!(scopes.get("slack"), Some(&vec!["chat:write".to_owned()]));
        let agent: ::alter::Agent = serde_json::from_value(serde_json::json!({
            "id": "a", "name": "n", "display_name": "n", "type": "agent", "status": "active",
            "scopes": scopes, "policy": {}, "metadata": {"k8s.uid": "u", "n": 3},
            "version": 1, "created_at": "2026-12-07T10:00:00Z"
        }))
        .expect("agent");
        let view = agent_view(agent);
        assert_eq!(
            view.capabilities,
            vec!["github:issues", "github:repo:read", "slack:chat:write"]
        );
        assert_eq!(view.description, None, "a display name equal to the name");
        assert!(view.belongs_to("u"));
        assert_eq!(view.metadata.get("n").map(String::as_str), Some("3"));
    }

    #[test]
    fn a_capability_without_provider_is_refused_with_what_to_write() {
        let e = scopes_of(&["deploy.staging".to_owned()]).expect_err("no provider");
        assert_eq!(e.class, ErrorClass::Invalid("capability".into()));
        assert!(e.message.contains("<provider>:<scope>"), "{}", e.message);
        assert!(scopes_of(&[":x".to_owned()]).is_err());
        assert!(scopes_of(&["x:".to_owned()]).is_err());
    }

    #[test]
    fn names_alter_refuses_are_refused_before_sending() {
        assert!(check_name("team-a_bot-1").is_ok());
        for bad in ["", "team.a", "Team", "-x", &"a".repeat(NAME_MAX + 1)] {
            let e = check_name(bad).expect_err(bad);
            assert!(e.message.contains("spec.agentName"), "{}", e.message);
        }
    }

    #[test]
    fn classification_follows_the_error_policy() {
        let cases: Vec<(::alter::Error, ErrorClass)> = vec![
            (
                api(401, Some("invalid_key")),
                ErrorClass::ServiceKeyRejected,
            ),
            (
                api(403, Some("insufficient_scope")),
                ErrorClass::ServiceKeyRejected,
            ),
            (api(404, Some("agent_not_found")), ErrorClass::AgentNotFound),
            (api(404, Some("key_not_found")), ErrorClass::KeyNotFound),
            (api(409, Some("key_revoked")), ErrorClass::KeyRevoked),
            (
                api(409, Some("last_active_key")),
                ErrorClass::Conflict("last_active_key".into()),
            ),
            (
                api(409, Some("agent_concurrent_update")),
                ErrorClass::Transient,
            ),
            (
                api(429, Some("rate_limit_exceeded")),
                ErrorClass::RateLimited { retry_after: None },
            ),
            (
                api(503, None),
                ErrorClass::Unavailable { retry_after: None },
            ),
            (
                api(422, Some("validation_error")),
                ErrorClass::Invalid("validation_error".into()),
            ),
            (
                ::alter::Error::AppMismatch {
                    expected: "a".into(),
                    actual: "b".into(),
                },
                ErrorClass::ServiceKeyRejected,
            ),
        ];
        for (error, class) in cases {
            let classified = classify(&error);
            assert_eq!(classified.class, class, "{error}");
            assert!(
                classified.message.starts_with("Alter "),
                "{}",
                classified.message
            );
        }
    }

    #[test]
    fn app_key_prefixes_show_eight_characters_after_the_scheme() {
        assert_eq!(
            AppKeyCredential::public_prefix("alter_rk_abcdefghijklmnopqrstuv_iwpykn"),
            "abcdefgh"
        );
        assert_eq!(
            AppKeyCredential::public_prefix("alter_key_ABCDEFGHIJabcdefghij0123456789-_ABCDEFGH"),
            "ABCDEFGH"
        );
        assert_eq!(AppKeyCredential::public_prefix("nonsense"), "");
    }
}
