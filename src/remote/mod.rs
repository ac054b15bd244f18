//! AgentLattice, as the executor sees it: the [`Backend`] trait (so the executor can be tested with
//! a fake), its implementation on [`agentlattice::ProvisionerClient`] ([`AgentLattice`]), and the
//! [`ServiceKeyProvider`] that reads the provisioner service key from its Secret when needed and
//! notices when that Secret changes.
//!
//! Every result is already in the planner's vocabulary ([`AgentView`], [`KeyView`],
//! [`ErrorClass`]); the only key material that crosses this boundary is the one-time agent key of
//! a registration or a mint, as an [`AgentKey`] (which prints as `<redacted>` and zeroes itself
//! on drop).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use agentlattice::{
    AgentKey, ClientConfig, IdempotencyKey, ProvisionerClient, RegisterAgent, ServiceKey,
    UpdateAgent,
};
use futures::StreamExt;
use futures::future::BoxFuture;
use jiff::{SignedDuration, Timestamp};
use k8s_openapi::api::core::v1::Secret;
use kube::api::Api;
use kube::core::PartialObjectMeta;
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher::{self, watcher};
use tokio::sync::watch;

pub mod alter;

pub use alter::{Alter, AppKeyProvider};

use crate::config::SecretRef;
use crate::metrics::Metrics;
use crate::plan::{
    AgentStatus, AgentView, ErrorClass, KeyStatus, KeyView, RegisterOutcome, RegisterRequest,
};

/// A failed AgentLattice call, classified for the error policy. `message` is short and
/// secret-free: the operation, the HTTP status and the error code, never a body.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RemoteError {
    /// How the error policy treats it.
    pub class: ErrorClass,
    /// What happened, for status, events and logs.
    pub message: String,
}

/// Result of a [`Backend`] call.
pub type RemoteResult<T> = Result<T, RemoteError>;

/// An agent key just issued by a backend (by a registration or a mint), on its way to the
/// Secret — whichever backend issued it. Prints as `IssuedKey(<redacted>)` and zeroes itself on
/// drop, like the clients' own key types it is made from.
pub struct IssuedKey(zeroize::Zeroizing<String>);

impl IssuedKey {
    /// Wraps a plaintext key.
    pub fn new(key: impl Into<String>) -> Self {
        IssuedKey(zeroize::Zeroizing::new(key.into()))
    }

    /// The plaintext, for the Secret write only.
    pub fn expose_secret(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for IssuedKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("IssuedKey(<redacted>)")
    }
}

impl From<AgentKey> for IssuedKey {
    fn from(key: AgentKey) -> Self {
        // `key` zeroes its own copy when dropped at the end of this function.
        IssuedKey::new(key.expose_secret())
    }
}

impl From<::alter::AgentKey> for IssuedKey {
    fn from(key: ::alter::AgentKey) -> Self {
        IssuedKey::new(key.expose_secret())
    }
}

/// A registration's answer: what the planner records, and the key when there is one.
#[derive(Debug)]
pub struct Registration {
    /// For the planner (`Created` carries a [`crate::plan::MintedKey`] whose `sha256` the
    /// executor fills in from `key`).
    pub outcome: RegisterOutcome,
    /// The one-time key of a `Created` registration.
    pub key: Option<IssuedKey>,
}

/// A freshly minted key.
#[derive(Debug)]
pub struct Minted {
    /// Key id.
    pub id: String,
    /// Public prefix.
    pub prefix: String,
    /// Creation time.
    pub created_at: Timestamp,
    /// The one-time plaintext.
    pub key: IssuedKey,
}

/// The AgentLattice provisioning API, in the planner's terms.
pub trait Backend: Send + Sync {
    /// `POST /api/agents/register` with `Idempotency-Key`. 409 `agent_name_exists`, 422
    /// `idempotency_key_body_mismatch` and 409 `idempotency_key_agent_revoked` are answers, not
    /// errors.
    fn register<'a>(
        &'a self,
        request: &'a RegisterRequest,
        idempotency_key: &'a str,
    ) -> BoxFuture<'a, RemoteResult<Registration>>;
    /// Non-revoked agents with exactly this name.
    fn find_agents<'a>(&'a self, name: &'a str) -> BoxFuture<'a, RemoteResult<Vec<AgentView>>>;
    /// `GET /api/agents/{id}`.
    fn get_agent<'a>(&'a self, agent_id: &'a str) -> BoxFuture<'a, RemoteResult<AgentView>>;
    /// `PATCH /api/agents/{id}`.
    fn update_agent<'a>(
        &'a self,
        agent_id: &'a str,
        capabilities: Option<Vec<String>>,
        description: Option<Option<String>>,
    ) -> BoxFuture<'a, RemoteResult<AgentView>>;
    /// `POST /api/agents/{id}/halt`.
    fn halt_agent<'a>(&'a self, agent_id: &'a str) -> BoxFuture<'a, RemoteResult<AgentView>>;
    /// `POST /api/agents/{id}/resume`.
    fn resume_agent<'a>(&'a self, agent_id: &'a str) -> BoxFuture<'a, RemoteResult<AgentView>>;
    /// `DELETE /api/agents/{id}`.
    fn revoke_agent<'a>(&'a self, agent_id: &'a str) -> BoxFuture<'a, RemoteResult<AgentView>>;
    /// `POST /api/agents/{id}/keys`.
    fn mint_key<'a>(
        &'a self,
        agent_id: &'a str,
        name: &'a str,
    ) -> BoxFuture<'a, RemoteResult<Minted>>;
    /// `GET /api/agents/{id}/keys`.
    fn list_keys<'a>(&'a self, agent_id: &'a str) -> BoxFuture<'a, RemoteResult<Vec<KeyView>>>;
    /// `PATCH /api/agents/{id}/keys/{key_id}/deprecate`.
    fn deprecate_key<'a>(
        &'a self,
        agent_id: &'a str,
        key_id: &'a str,
    ) -> BoxFuture<'a, RemoteResult<KeyView>>;
    /// `DELETE /api/agents/{id}/keys/{key_id}` (never forced).
    fn revoke_key<'a>(
        &'a self,
        agent_id: &'a str,
        key_id: &'a str,
    ) -> BoxFuture<'a, RemoteResult<KeyView>>;
}

// ----- conversions ------------------------------------------------------------------------------

/// The planner's view of an agent.
pub fn agent_view(agent: agentlattice::Agent) -> AgentView {
    let mut capabilities = agent.capabilities;
    capabilities.sort();
    capabilities.dedup();
    AgentView {
        id: agent.id,
        name: agent.name,
        status: match agent.status {
            agentlattice::AgentStatus::Halted => AgentStatus::Halted,
            agentlattice::AgentStatus::Revoked => AgentStatus::Revoked,
            // An unknown status is not evidence of revocation: treat it as working.
            agentlattice::AgentStatus::Active | agentlattice::AgentStatus::Unknown => {
                AgentStatus::Active
            }
        },
        capabilities,
        description: agent.description,
        metadata: agent.metadata,
        created_by: agent.created_by,
    }
}

/// The planner's view of a key.
pub fn key_view(key: agentlattice::KeyInfo) -> KeyView {
    KeyView {
        status: match key.status {
            agentlattice::KeyStatus::Deprecated => KeyStatus::Deprecated,
            agentlattice::KeyStatus::Revoked => KeyStatus::Revoked,
            // The timestamps are the truth when the status word is unknown.
            agentlattice::KeyStatus::Active | agentlattice::KeyStatus::Unknown => {
                if key.revoked_at.is_some() {
                    KeyStatus::Revoked
                } else if key.deprecated_at.is_some() {
                    KeyStatus::Deprecated
                } else {
                    KeyStatus::Active
                }
            }
        },
        id: key.key_id,
        prefix: key.key_prefix,
        created_at: key.created_at,
        deprecated_at: key.deprecated_at,
        revoked_at: key.revoked_at,
        last_used_at: key.last_used_at,
    }
}

fn retry_after(e: &agentlattice::Error) -> Option<SignedDuration> {
    e.retry_after()
        .and_then(|d| SignedDuration::try_from(d).ok())
}

/// The error policy's class of an HTTP answer (design §5), for both backends: provisioning
/// calls only ever use the provisioning key, so a 401 or 403 means the backend rejected it.
/// Codes only one backend sends: `agent_revoked` (409, AgentLattice), `agent_concurrent_update`
/// (409, Alter: a stale `expected_version`; the next attempt reads again). Alter answers
/// `agent_not_found` for a revoked agent too; both are "gone" to the planner.
pub fn class_of_answer(
    status: u16,
    code: Option<&str>,
    retry_after: Option<SignedDuration>,
) -> ErrorClass {
    match (status, code) {
        (401 | 403, _) => ErrorClass::ServiceKeyRejected,
        (404, Some("key_not_found")) => ErrorClass::KeyNotFound,
        (404, Some("agent_not_found")) => ErrorClass::AgentNotFound,
        (404, code) => ErrorClass::Invalid(code.unwrap_or("not_found").to_owned()),
        (409, Some("agent_revoked")) => ErrorClass::AgentRevoked,
        (409, Some("key_revoked")) => ErrorClass::KeyRevoked,
        (409, Some("agent_concurrent_update")) => ErrorClass::Transient,
        (409, code) => ErrorClass::Conflict(code.unwrap_or("conflict").to_owned()),
        (429, _) => ErrorClass::RateLimited { retry_after },
        (400 | 413 | 415 | 422, code) => {
            ErrorClass::Invalid(code.unwrap_or("validation").to_owned())
        }
        (500..=599, _) => ErrorClass::Unavailable { retry_after },
        (_, code) => ErrorClass::Invalid(code.unwrap_or("unexpected_status").to_owned()),
    }
}

/// A short, secret-free description of a failed call, for both backends: `<backend>
/// <operation>: HTTP <status> <code>`, and for a refused request (400, 409, 422) the server's
/// message, which the clients have already scrubbed of anything shaped like a key.
pub fn describe_answer(
    backend: &str,
    operation: &str,
    status: u16,
    code: Option<&str>,
    message: Option<&str>,
) -> String {
    let mut s = format!("{backend} {operation}: HTTP {status}");
    if let Some(code) = code {
        s.push(' ');
        s.push_str(code);
    }
    if matches!(status, 400 | 409 | 422)
        && let Some(message) = message
    {
        s.push_str(": ");
        s.push_str(message);
    }
    crate::redact::redact(&s)
}

/// Classifies an AgentLattice client error (design §5).
pub fn classify(e: &agentlattice::Error) -> RemoteError {
    use agentlattice::Error as E;
    let class = match e {
        E::Api(api) => class_of_answer(api.status, api.code.as_deref(), retry_after(e)),
        E::Throttled { .. } => ErrorClass::RateLimited {
            retry_after: retry_after(e),
        },
        E::Timeout { .. } | E::Transport { .. } => ErrorClass::Unavailable { retry_after: None },
        // A 2xx that did not decode: the call may have committed; retry later (a mint is covered
        // by the mint intent and its sweep).
        E::Decode { .. } => ErrorClass::Transient,
        E::InvalidArgument(_) | E::Config(_) => ErrorClass::Invalid(e.category().to_owned()),
        _ => ErrorClass::Transient,
    };
    RemoteError {
        class,
        message: describe(e),
    }
}

/// A short, secret-free description: operation, status, code (and for validation errors the
/// server's message).
fn describe(e: &agentlattice::Error) -> String {
    let operation = e.operation().map(|o| o.as_str()).unwrap_or("request");
    match e.api() {
        Some(api) => describe_answer(
            "AgentLattice",
            operation,
            api.status,
            api.code.as_deref(),
            api.message.as_deref(),
        ),
        None => crate::redact::redact(&format!("AgentLattice {operation}: {}", e.category())),
    }
}

// ----- the service key --------------------------------------------------------------------------

/// Where the service key comes from.
#[derive(Clone, Debug)]
pub struct ServiceKeySource {
    /// The Secret.
    pub secret: SecretRef,
    /// Its data field.
    pub field: String,
}

/// A provisioning credential as one backend takes it: how its Secret value becomes a client, and
/// what of it may be shown. [`ServiceKeyCredential`] (AgentLattice's `al_svc_…`) and
/// [`alter::AppKeyCredential`] (Alter's app key) implement it; [`CredentialProvider`] does the
/// rest (reading, marking, caching, watching) once for both.
pub trait Credential: Send + Sync + 'static {
    /// The backend's client configuration.
    type Config: Send + Sync;
    /// The client a key builds.
    type Client: Clone + Send + Sync + 'static;
    /// What the credential is called in messages ("service key", "app key").
    const WHAT: &'static str;
    /// The part of the key `status.serviceKeyPrefix` shows: 8 characters after the scheme,
    /// never more.
    fn public_prefix(key: &str) -> String;
    /// A client for `key` (already trimmed), sharing `first`'s transport (connection pool, rate
    /// limit, `Retry-After` gate) when there is one.
    fn client(
        config: &Self::Config,
        key: String,
        first: Option<&Self::Client>,
    ) -> Result<Self::Client, CredentialError>;
}

/// Why a credential did not become a client. Messages never contain the key.
#[derive(Debug)]
pub enum CredentialError {
    /// The value is not a key of this kind.
    Key(String),
    /// The client configuration is unusable.
    Config(String),
}

/// The 8 characters after `scheme` (none when the key does not start with it).
pub fn prefix_after(key: &str, scheme: &str) -> String {
    key.strip_prefix(scheme)
        .unwrap_or_default()
        .chars()
        .take(8)
        .collect()
}

/// AgentLattice's service key (`al_svc_…`) and [`ProvisionerClient`].
#[derive(Debug)]
pub enum ServiceKeyCredential {}

impl Credential for ServiceKeyCredential {
    type Config = ClientConfig;
    type Client = ProvisionerClient;
    const WHAT: &'static str = "service key";

    fn public_prefix(key: &str) -> String {
        prefix_after(key, "al_svc_")
    }

    fn client(
        config: &ClientConfig,
        key: String,
        first: Option<&ProvisionerClient>,
    ) -> Result<ProvisionerClient, CredentialError> {
        let key = ServiceKey::new(key).map_err(|e| CredentialError::Key(e.to_string()))?;
        let config_error =
            |e: agentlattice::Error| CredentialError::Config(format!("AgentLattice client: {e}"));
        match first {
            Some(t) => t.with_service_key(key).map_err(config_error),
            None => ProvisionerClient::new(config, key).map_err(config_error),
        }
    }
}

/// The AgentLattice service key provider (the default provisioner's and each AgentLattice
/// provisioner's).
pub type ServiceKeyProvider = CredentialProvider<ServiceKeyCredential>;

struct Cached<C> {
    resource_version: Option<String>,
    client: C,
}

/// Reads a provisioning credential's Secret when a call needs it, caches the client built from it
/// (with the Secret's resourceVersion), and drops the cache when the Secret changes (see
/// [`CredentialProvider::watch`]) or the backend rejects the key.
pub struct CredentialProvider<K: Credential> {
    api: Api<Secret>,
    source: ServiceKeySource,
    config: K::Config,
    cached: Mutex<Option<Cached<K::Client>>>,
    /// The first client built: later ones share its transport (pool, rate limit, `Retry-After`
    /// gate).
    transport: Mutex<Option<K::Client>>,
    changes: watch::Sender<u64>,
    /// Where `lattice_service_key_age_seconds` goes, if anywhere.
    metrics: Option<Arc<Metrics>>,
    /// The digest of the key value read last (to notice a new value).
    seen_key: Mutex<Option<String>>,
    /// Refuse a Secret without the label `agentlattice.io/service-key: "true"` (provisioner
    /// objects; docs/tenancy.md says why).
    require_mark: bool,
    /// The public prefix of the key read last, and when it was written to the Secret.
    key_info: Mutex<Option<(String, Timestamp)>>,
}

impl<K: Credential> std::fmt::Debug for CredentialProvider<K> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CredentialProvider")
            .field("kind", &K::WHAT)
            .field("secret", &self.source.secret.to_string())
            .field("field", &self.source.field)
            .finish_non_exhaustive()
    }
}

impl<K: Credential> CredentialProvider<K> {
    /// A provider reading `source` through `client`.
    pub fn new(client: kube::Client, source: ServiceKeySource, config: K::Config) -> Self {
        let api = Api::namespaced(client, &source.secret.namespace);
        CredentialProvider {
            api,
            source,
            config,
            cached: Mutex::new(None),
            transport: Mutex::new(None),
            changes: watch::channel(0).0,
            metrics: None,
            seen_key: Mutex::new(None),
            require_mark: false,
            key_info: Mutex::new(None),
        }
    }

    /// Refuses a Secret that is not labelled `agentlattice.io/service-key: "true"`: a
    /// provisioner names its Secret at run time, and the mark is what stops one from making the
    /// operator read (and send to the provisioner's base URL) a Secret never meant as a service
    /// key (docs/tenancy.md).
    pub fn requiring_mark(mut self) -> Self {
        self.require_mark = true;
        self
    }

    /// The Secret this provider reads.
    pub fn source(&self) -> &ServiceKeySource {
        &self.source
    }

    /// The public prefix of the key read last ([`Credential::public_prefix`], never the key)
    /// and when it was written to its Secret.
    pub fn key_info(&self) -> Option<(String, Timestamp)> {
        self.key_info.lock().ok().and_then(|k| k.clone())
    }

    /// Reports the age of the service key (`lattice_service_key_age_seconds`) to `metrics`.
    pub fn with_metrics(mut self, metrics: Arc<Metrics>) -> Self {
        self.metrics = Some(metrics);
        self
    }

    /// Remembers the digest of the key value just read, and tells the metrics since when that
    /// value exists (see [`service_key_since`]).
    fn note_key(&self, digest: String, meta: &kube::core::ObjectMeta) {
        let Some(metrics) = &self.metrics else {
            return;
        };
        let Ok(mut seen) = self.seen_key.lock() else {
            return;
        };
        let first = seen.is_none();
        if seen.as_deref() != Some(digest.as_str()) {
            metrics.service_key_since(service_key_since(meta, first, Timestamp::now()));
            *seen = Some(digest);
        }
    }

    /// A receiver that sees a new value whenever the service key Secret changed.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.changes.subscribe()
    }

    /// Forgets the cached key (the next call reads the Secret again).
    pub fn invalidate(&self) {
        if let Ok(mut cached) = self.cached.lock() {
            *cached = None;
        }
    }

    fn missing(&self, what: &str) -> RemoteError {
        RemoteError {
            class: ErrorClass::ServiceKeyMissing,
            message: format!("{} Secret {}: {what}", K::WHAT, self.source.secret),
        }
    }

    /// A client with the current key.
    pub async fn client(&self) -> RemoteResult<K::Client> {
        if let Some(c) = self
            .cached
            .lock()
            .ok()
            .and_then(|c| c.as_ref().map(|c| c.client.clone()))
        {
            return Ok(c);
        }
        let secret = match self.api.get_opt(&self.source.secret.name).await {
            Ok(Some(secret)) => secret,
            Ok(None) => return Err(self.missing("not found")),
            Err(kube::Error::Api(status)) if status.code == 403 => {
                return Err(self.missing("the operator may not read it (403 Forbidden)"));
            }
            Err(e) => {
                return Err(RemoteError {
                    class: ErrorClass::Transient,
                    message: format!(
                        "reading {} Secret {}: {}",
                        K::WHAT,
                        self.source.secret,
                        crate::error::kube_message(&e)
                    ),
                });
            }
        };
        let marked = secret
            .metadata
            .labels
            .as_ref()
            .and_then(|l| l.get(crate::crd::SERVICE_KEY_LABEL))
            .is_some_and(|v| v == crate::crd::SERVICE_KEY_LABEL_VALUE);
        if self.require_mark && !marked {
            let mut secret = secret;
            for value in secret.data.iter_mut().flat_map(|d| d.values_mut()) {
                zeroize::Zeroize::zeroize(&mut value.0);
            }
            return Err(self.missing(&format!(
                "is not marked as a provisioning key (label {}: \"{}\"); the operator reads \
                 only marked Secrets for provisioners",
                crate::crd::SERVICE_KEY_LABEL,
                crate::crd::SERVICE_KEY_LABEL_VALUE
            )));
        }
        let resource_version = secret.metadata.resource_version.clone();
        let meta = secret.metadata;
        let mut data = secret.data.unwrap_or_default();
        let Some(mut raw) = data.remove(&self.source.field) else {
            return Err(self.missing(&format!("has no field {}", self.source.field)));
        };
        // Zero every value we read, whatever happens next.
        let first = self.transport.lock().ok().and_then(|t| t.clone());
        let parsed = std::str::from_utf8(&raw.0).ok().map(|s| {
            let trimmed = s.trim();
            (
                crate::secret::key_digest(trimmed.as_bytes()),
                K::public_prefix(trimmed),
                K::client(&self.config, trimmed.to_owned(), first.as_ref()),
            )
        });
        zeroize::Zeroize::zeroize(&mut raw.0);
        for value in data.values_mut() {
            zeroize::Zeroize::zeroize(&mut value.0);
        }
        let client = match parsed {
            Some((digest, prefix, Ok(client))) => {
                if let Ok(mut info) = self.key_info.lock() {
                    let changed = info.as_ref().is_none_or(|(p, _)| *p != prefix);
                    if changed {
                        let first = info.is_none();
                        *info = Some((prefix, service_key_since(&meta, first, Timestamp::now())));
                    }
                }
                self.note_key(digest, &meta);
                client
            }
            Some((_, _, Err(CredentialError::Key(e)))) => {
                return Err(self.missing(&format!("field {}: {e}", self.source.field)));
            }
            Some((_, _, Err(CredentialError::Config(e)))) => {
                return Err(RemoteError {
                    class: ErrorClass::Invalid("config".into()),
                    message: crate::redact::redact(&e),
                });
            }
            None => {
                return Err(self.missing(&format!("field {} is not UTF-8", self.source.field)));
            }
        };
        if first.is_none()
            && let Ok(mut transport) = self.transport.lock()
        {
            transport.get_or_insert_with(|| client.clone());
        }
        if let Ok(mut cached) = self.cached.lock() {
            *cached = Some(Cached {
                resource_version,
                client: client.clone(),
            });
        }
        Ok(client)
    }

    /// Watches the service key Secret (metadata only, `fieldSelector metadata.name=<name>`, so
    /// RBAC `resourceNames` can authorise it): any change drops the cached key and notifies
    /// [`ServiceKeyProvider::subscribe`]rs. Runs until the stream ends (never, normally).
    pub async fn watch(self: Arc<Self>) {
        let api: Api<PartialObjectMeta<Secret>> = Api::namespaced(
            self.api.clone().into_client(),
            &self.source.secret.namespace,
        );
        let config = watcher::Config::default()
            .fields(&format!("metadata.name={}", self.source.secret.name));
        let mut stream = watcher(api, config).default_backoff().boxed();
        let mut seen: Option<Option<String>> = None;
        while let Some(event) = stream.next().await {
            let current = match event {
                Ok(watcher::Event::Apply(meta) | watcher::Event::InitApply(meta)) => {
                    Some(resource_version(&meta))
                }
                Ok(watcher::Event::Delete(_)) => Some(None),
                Ok(watcher::Event::Init) => continue,
                Ok(watcher::Event::InitDone) => {
                    if seen.is_none() {
                        // The initial list found nothing.
                        seen = Some(None);
                    }
                    continue;
                }
                Err(e) => {
                    tracing::debug!(error = %e, "service key Secret watch error (retrying)");
                    continue;
                }
            };
            let cached_rv = self
                .cached
                .lock()
                .ok()
                .and_then(|c| c.as_ref().map(|c| c.resource_version.clone()));
            if seen.as_ref() != current.as_ref() || cached_rv.is_some_and(|rv| Some(rv) != current)
            {
                let first = seen.is_none();
                seen = current.clone();
                self.invalidate();
                if !first {
                    tracing::info!(secret = %self.source.secret, "service key Secret changed");
                    self.changes.send_modify(|n| *n += 1);
                }
            }
        }
    }
}

/// Since when the service key value just read from a Secret with metadata `meta` exists, as far as
/// Kubernetes tells: AgentLattice does not expose a service key's creation time. The last write of
/// the Secret's data recorded in `managedFields` when there is one; otherwise, for the first value
/// this process sees, the Secret's `creationTimestamp`, and for a later (changed) value `now`
/// (the change happened after the previous read).
pub fn service_key_since(meta: &kube::core::ObjectMeta, first: bool, now: Timestamp) -> Timestamp {
    let data_written = meta
        .managed_fields
        .iter()
        .flatten()
        .filter(|m| {
            m.fields_v1
                .as_ref()
                .is_some_and(|f| f.0.get("f:data").is_some() || f.0.get("f:stringData").is_some())
        })
        .filter_map(|m| m.time.as_ref().map(|t| t.0))
        .max();
    let created = meta.creation_timestamp.as_ref().map(|t| t.0);
    data_written
        .or(if first { created } else { None })
        .filter(|t| *t <= now)
        .unwrap_or(now)
}

fn resource_version(meta: &PartialObjectMeta<Secret>) -> Option<String> {
    meta.metadata.resource_version.clone()
}

// ----- the real thing ---------------------------------------------------------------------------

/// [`Backend`] on the typed client, with the service key from a [`ServiceKeyProvider`].
#[derive(Debug, Clone)]
pub struct AgentLattice {
    provider: Arc<ServiceKeyProvider>,
}

impl AgentLattice {
    /// AgentLattice through `provider`'s service key.
    pub fn new(provider: Arc<ServiceKeyProvider>) -> Self {
        AgentLattice { provider }
    }

    /// The service key provider.
    pub fn provider(&self) -> &Arc<ServiceKeyProvider> {
        &self.provider
    }

    async fn call<T, F, Fut>(&self, f: F) -> RemoteResult<T>
    where
        F: FnOnce(ProvisionerClient) -> Fut,
        Fut: Future<Output = agentlattice::Result<T>>,
    {
        let client = self.provider.client().await?;
        f(client).await.map_err(|e| {
            let error = classify(&e);
            if error.class == ErrorClass::ServiceKeyRejected {
                // The Secret may have been fixed since the key was cached.
                self.provider.invalidate();
            }
            error
        })
    }
}

impl Backend for AgentLattice {
    fn register<'a>(
        &'a self,
        request: &'a RegisterRequest,
        idempotency_key: &'a str,
    ) -> BoxFuture<'a, RemoteResult<Registration>> {
        Box::pin(async move {
            let mut body = RegisterAgent::new(request.name.clone())
                .capabilities(request.capabilities.iter().cloned());
            if let Some(d) = &request.description {
                body = body.description(d.clone());
            }
            for (k, v) in &request.metadata {
                body = body.metadata(k.clone(), v.clone());
            }
            let idempotency_key = IdempotencyKey::new(idempotency_key).map_err(|e| classify(&e))?;
            let client = self.provider.client().await?;
            match client.register(&body, Some(&idempotency_key)).await {
                Ok(registered) => {
                    let created_at = registered.agent.created_at;
                    let agent = agent_view(registered.agent);
                    match registered.api_key {
                        Some(key) if !registered.replayed => Ok(Registration {
                            outcome: RegisterOutcome::Created {
                                agent,
                                key: crate::plan::MintedKey {
                                    id: registered.key_id,
                                    prefix: registered.key_prefix,
                                    created_at,
                                    sha256: crate::secret::key_digest(
                                        key.expose_secret().as_bytes(),
                                    ),
                                },
                            },
                            key: Some(key.into()),
                        }),
                        _ => Ok(Registration {
                            outcome: RegisterOutcome::Replayed {
                                agent_id: agent.id,
                                key_id: registered.key_id,
                            },
                            key: None,
                        }),
                    }
                }
                Err(e) if e.is_conflict_code("agent_name_exists") => Ok(Registration {
                    outcome: RegisterOutcome::NameTaken,
                    key: None,
                }),
                Err(e) if e.is_conflict_code("idempotency_key_agent_revoked") => Ok(Registration {
                    outcome: RegisterOutcome::AgentRevoked,
                    key: None,
                }),
                Err(e) if e.status() == Some(422) && e.is_code("idempotency_key_body_mismatch") => {
                    Ok(Registration {
                        outcome: RegisterOutcome::IdempotencyMismatch,
                        key: None,
                    })
                }
                Err(e) => {
                    let error = classify(&e);
                    if error.class == ErrorClass::ServiceKeyRejected {
                        self.provider.invalidate();
                    }
                    Err(error)
                }
            }
        })
    }

    fn find_agents<'a>(&'a self, name: &'a str) -> BoxFuture<'a, RemoteResult<Vec<AgentView>>> {
        Box::pin(async move {
            let agents = self
                .call(|c| async move { c.find_agents_by_name(name, false).await })
                .await?;
            Ok(agents.into_iter().map(agent_view).collect())
        })
    }

    fn get_agent<'a>(&'a self, agent_id: &'a str) -> BoxFuture<'a, RemoteResult<AgentView>> {
        Box::pin(async move {
            self.call(|c| async move { c.get_agent(agent_id).await })
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
            let mut update = UpdateAgent::new();
            if let Some(c) = capabilities {
                update = update.capabilities(c);
            }
            if let Some(d) = description {
                update = update.description(d);
            }
            self.call(|c| async move { c.update_agent(agent_id, &update).await })
                .await
                .map(agent_view)
        })
    }

    fn halt_agent<'a>(&'a self, agent_id: &'a str) -> BoxFuture<'a, RemoteResult<AgentView>> {
        Box::pin(async move {
            self.call(|c| async move { c.halt_agent(agent_id).await })
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
            self.call(|c| async move { c.revoke_agent(agent_id).await })
                .await
                .map(agent_view)
        })
    }

    fn mint_key<'a>(
        &'a self,
        agent_id: &'a str,
        name: &'a str,
    ) -> BoxFuture<'a, RemoteResult<Minted>> {
        Box::pin(async move {
            let minted = self
                .call(|c| async move { c.mint_key(agent_id, Some(name)).await })
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

/// The client configuration the operator uses.
pub fn client_config(
    base_url: &str,
    timeout: Duration,
    rate: Option<agentlattice::RateLimit>,
    observer: Arc<dyn agentlattice::CallObserver>,
) -> ClientConfig {
    ClientConfig::new(base_url)
        .request_timeout(timeout)
        .rate_limit(rate)
        .observer(observer)
        .user_agent(concat!("lattice-operator/", env!("CARGO_PKG_VERSION")))
}

#[cfg(test)]
mod tests {
    use agentlattice::{ApiError, Operation};

    use super::*;

    fn api(status: u16, code: Option<&str>) -> agentlattice::Error {
        ApiError::new(Operation::GetAgent, status, code).into()
    }

    #[test]
    fn classification_follows_the_error_policy() {
        let cases: Vec<(agentlattice::Error, ErrorClass)> = vec![
            (
                api(401, Some("key_revoked")),
                ErrorClass::ServiceKeyRejected,
            ),
            (
                api(403, Some("agent_key_cannot_provision")),
                ErrorClass::ServiceKeyRejected,
            ),
            (api(404, Some("agent_not_found")), ErrorClass::AgentNotFound),
            (api(404, Some("key_not_found")), ErrorClass::KeyNotFound),
            (
                api(404, Some("not_found")),
                ErrorClass::Invalid("not_found".into()),
            ),
            (api(409, Some("agent_revoked")), ErrorClass::AgentRevoked),
            (api(409, Some("key_revoked")), ErrorClass::KeyRevoked),
            (
                api(409, Some("agent_key_limit_reached")),
                ErrorClass::Conflict("agent_key_limit_reached".into()),
            ),
            (
                api(422, Some("validation_failed")),
                ErrorClass::Invalid("validation_failed".into()),
            ),
            (
                api(500, Some("internal_error")),
                ErrorClass::Unavailable { retry_after: None },
            ),
            (
                api(429, None),
                ErrorClass::RateLimited { retry_after: None },
            ),
        ];
        for (error, class) in cases {
            assert_eq!(classify(&error).class, class, "{error}");
        }
        let throttled: agentlattice::Error =
            ApiError::new(Operation::Register, 429, Some("rate_limit_exceeded"))
                .with_retry_after(Duration::from_secs(7))
                .into();
        assert_eq!(
            classify(&throttled).class,
            ErrorClass::RateLimited {
                retry_after: Some(SignedDuration::from_secs(7))
            }
        );
        let busy: agentlattice::Error =
            ApiError::new(Operation::Register, 503, Some("unavailable"))
                .with_retry_after(Duration::from_secs(2))
                .into();
        assert_eq!(
            classify(&busy).class,
            ErrorClass::Unavailable {
                retry_after: Some(SignedDuration::from_secs(2))
            }
        );
    }

    #[test]
    fn messages_name_operation_status_and_code_only() {
        let e: agentlattice::Error =
            ApiError::new(Operation::MintKey, 409, Some("agent_key_limit_reached"))
                .with_message("limit of 10 keys reached")
                .into();
        assert_eq!(
            classify(&e).message,
            "AgentLattice mint_key: HTTP 409 agent_key_limit_reached: limit of 10 keys reached"
        );
        let e: agentlattice::Error =
            ApiError::new(Operation::GetAgent, 500, Some("internal_error"))
                .with_message("boom")
                .into();
        assert_eq!(
            classify(&e).message,
            "AgentLattice get_agent: HTTP 500 internal_error"
        );
    }

    #[test]
    fn the_service_key_age_starts_at_the_last_data_write() {
        let now: Timestamp = "2026-11-23T12:00:00Z".parse().unwrap();
        let meta: kube::core::ObjectMeta = serde_json::from_value(serde_json::json!({
            "name": "agentlattice-service-key",
            "creationTimestamp": "2026-01-01T00:00:00Z",
            "managedFields": [
                {"manager": "kubectl", "operation": "Update", "time": "2026-06-01T00:00:00Z",
                 "fieldsType": "FieldsV1", "fieldsV1": {"f:data": {"f:AL_SERVICE_KEY": {}}}},
                {"manager": "kubectl", "operation": "Update", "time": "2026-11-01T00:00:00Z",
                 "fieldsType": "FieldsV1", "fieldsV1": {"f:metadata": {"f:labels": {}}}}
            ]
        }))
        .unwrap();
        let data_write: Timestamp = "2026-06-01T00:00:00Z".parse().unwrap();
        assert_eq!(service_key_since(&meta, true, now), data_write);
        assert_eq!(service_key_since(&meta, false, now), data_write);
        let bare: kube::core::ObjectMeta = serde_json::from_value(serde_json::json!({
            "name": "s", "creationTimestamp": "2026-01-01T00:00:00Z"
        }))
        .unwrap();
        let created: Timestamp = "2026-01-01T00:00:00Z".parse().unwrap();
        assert_eq!(service_key_since(&bare, true, now), created);
        assert_eq!(
            service_key_since(&bare, false, now),
            now,
            "a changed value without managedFields: the change is at most this old"
        );
        assert_eq!(
            service_key_since(&kube::core::ObjectMeta::default(), true, now),
            now
        );
    }

    #[test]
    fn unknown_statuses_do_not_look_revoked() {
        let key: agentlattice::KeyInfo = serde_json::from_value(serde_json::json!({
            "key_id": "k", "key_prefix": "abcdefgh", "status": "frozen",
            "created_at": "2026-11-23T10:00:00.000Z", "deprecated_at": "2026-11-23T10:00:01.000Z"
        }))
        .expect("key parses");
        assert_eq!(key_view(key).status, KeyStatus::Deprecated);
        let agent: agentlattice::Agent = serde_json::from_value(serde_json::json!({
            "id": "a", "name": "n", "status": "paused", "capabilities": ["b", "a", "a"],
            "created_at": "2026-11-23T10:00:00.000Z"
        }))
        .expect("agent parses");
        let view = agent_view(agent);
        assert_eq!(view.status, AgentStatus::Active);
        assert_eq!(view.capabilities, vec!["a", "b"]);
    }
}
