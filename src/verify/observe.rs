//! Reading what [`super::check`] checks: the LatticeAgents, their Secrets, Events and statuses
//! from the cluster; the agents and keys from the emulator's admin state; `whoami` with each Ready
//! LatticeAgent's key; and the log files and metrics pages given.

use std::path::PathBuf;
use std::time::Duration;

use agentlattice::{AgentClient, AgentKey, ClientConfig};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use k8s_openapi::api::core::v1::{Event as CoreEvent, Secret};
use k8s_openapi::api::events::v1::Event;
use kube::api::{Api, DynamicObject, ListParams};
use kube::core::ApiResource;
use zeroize::Zeroizing;

use super::{Identity, Observation, Options, RemoteState, Text, ready, secret_name};
use crate::crd::LatticeAgent;
use crate::secret::{API_KEY_FIELD, MANAGED_BY_LABEL, MANAGED_BY_VALUE};
use crate::{Error, Result};

/// Where, besides the cluster, `verify` reads.
pub struct Sources {
    /// The emulator's base URL (its admin API: `GET /_admin/state`), plain HTTP.
    pub emulator_url: String,
    /// The emulator's admin token.
    pub admin_token: Zeroizing<String>,
    /// The AgentLattice base URL the Secrets' keys are tried against (`whoami`).
    pub agentlattice_url: String,
    /// Log files to look through for keys.
    pub log_files: Vec<PathBuf>,
    /// Metrics pages (`/metrics` URLs, plain HTTP) to look through for keys.
    pub metrics_urls: Vec<String>,
}

impl Sources {
    /// An emulator reached at `url`, which is also the AgentLattice the keys are tried against;
    /// no log files or metrics pages.
    pub fn emulator(url: impl Into<String>, admin_token: &str) -> Sources {
        let url = url.into();
        Sources {
            agentlattice_url: url.clone(),
            emulator_url: url,
            admin_token: Zeroizing::new(admin_token.to_owned()),
            log_files: Vec::new(),
            metrics_urls: Vec::new(),
        }
    }
}

impl std::fmt::Debug for Sources {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sources")
            .field("emulator_url", &self.emulator_url)
            .field("admin_token", &"<redacted>")
            .field("agentlattice_url", &self.agentlattice_url)
            .field("log_files", &self.log_files)
            .field("metrics_urls", &self.metrics_urls)
            .finish()
    }
}

/// `GET url` over plain HTTP, with an optional bearer token; the body as text.
async fn get(url: &str, token: Option<&str>) -> Result<String> {
    let client: Client<HttpConnector, Full<Bytes>> =
        Client::builder(TokioExecutor::new()).build_http();
    let mut req = http::Request::get(url);
    if let Some(t) = token {
        req = req.header("authorization", format!("Bearer {t}"));
    }
    let req = req
        .body(Full::new(Bytes::new()))
        .map_err(|e| Error::Verify(format!("GET {url}: {e}")))?;
    let resp = tokio::time::timeout(Duration::from_secs(30), client.request(req))
        .await
        .map_err(|_| Error::Verify(format!("GET {url}: no answer within 30 s")))?
        .map_err(|e| Error::Verify(format!("GET {url}: {e}")))?;
    let status = resp.status();
    let body = resp
        .into_body()
        .collect()
        .await
        .map_err(|e| Error::Verify(format!("GET {url}: {e}")))?
        .to_bytes();
    if !status.is_success() {
        return Err(Error::Verify(format!("GET {url}: HTTP {status}")));
    }
    Ok(String::from_utf8_lossy(&body).into_owned())
}

fn namespaced<K>(client: &kube::Client, opts: &Options) -> Vec<Api<K>>
where
    K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>,
    K::DynamicType: Default,
{
    if opts.namespaces.is_empty() {
        vec![Api::all(client.clone())]
    } else {
        opts.namespaces
            .iter()
            .map(|ns| Api::namespaced(client.clone(), ns))
            .collect()
    }
}

/// Reads everything [`super::check`] needs.
pub async fn observe(
    client: &kube::Client,
    sources: &Sources,
    opts: &Options,
) -> Result<Observation> {
    let now = jiff::Timestamp::now();
    let mut texts = Vec::new();

    // LatticeAgents, as dynamic objects: one that does not parse is reported, not fatal.
    let ar = ApiResource::erase::<LatticeAgent>(&());
    let apis: Vec<Api<DynamicObject>> = if opts.namespaces.is_empty() {
        vec![Api::all_with(client.clone(), &ar)]
    } else {
        opts.namespaces
            .iter()
            .map(|ns| Api::namespaced_with(client.clone(), ns, &ar))
            .collect()
    };
    let mut resources = Vec::new();
    let mut unparsed = Vec::new();
    for api in apis {
        for obj in api.list(&ListParams::default()).await?.items {
            let name = format!(
                "{}/{}",
                obj.metadata.namespace.as_deref().unwrap_or_default(),
                obj.metadata.name.as_deref().unwrap_or_default()
            );
            if let Some(status) = obj.data.get("status") {
                texts.push(Text {
                    location: format!("status of LatticeAgent {name}"),
                    content: status.to_string(),
                });
            }
            match serde_json::to_value(&obj).and_then(serde_json::from_value::<LatticeAgent>) {
                Ok(r) => resources.push(r),
                Err(_) => unparsed.push(name),
            }
        }
    }

    // The operator's Secrets (released ones too: they keep the label), and any Secret a Ready
    // LatticeAgent names that the label did not find.
    let mut secrets: Vec<Secret> = Vec::new();
    let selector = ListParams::default().labels(&format!("{MANAGED_BY_LABEL}={MANAGED_BY_VALUE}"));
    for api in namespaced::<Secret>(client, opts) {
        secrets.extend(api.list(&selector).await?.items);
    }
    for r in resources.iter().filter(|r| ready(r)) {
        let ns = r.metadata.namespace.clone().unwrap_or_default();
        let name = secret_name(r);
        let known = secrets.iter().any(|s| {
            s.metadata.namespace.as_deref() == Some(ns.as_str())
                && s.metadata.name.as_deref() == Some(name.as_str())
        });
        if !known
            && let Some(s) = Api::<Secret>::namespaced(client.clone(), &ns)
                .get_opt(&name)
                .await?
        {
            secrets.push(s);
        }
    }
    let keys: Vec<Zeroizing<String>> = secrets
        .iter()
        .filter_map(|s| s.data.as_ref()?.get(API_KEY_FIELD))
        .map(|v| Zeroizing::new(String::from_utf8_lossy(&v.0).into_owned()))
        .collect();

    // whoami with the key of each Ready LatticeAgent's Secret.
    let config = ClientConfig::new(&sources.agentlattice_url)
        .allow_plain_http(sources.agentlattice_url.starts_with("http://"))
        .request_timeout(Duration::from_secs(10));
    let mut whoami = std::collections::BTreeMap::new();
    for r in resources.iter().filter(|r| ready(r)) {
        let ns = r.metadata.namespace.clone().unwrap_or_default();
        let name = secret_name(r);
        let Some(secret) = secrets.iter().find(|s| {
            s.metadata.namespace.as_deref() == Some(ns.as_str())
                && s.metadata.name.as_deref() == Some(name.as_str())
        }) else {
            continue;
        };
        let Some(raw) = secret.data.as_ref().and_then(|d| d.get(API_KEY_FIELD)) else {
            continue;
        };
        let key = Zeroizing::new(String::from_utf8_lossy(&raw.0).into_owned());
        let answer = match AgentKey::new(key.as_str()) {
            Err(_) => Err(format!("{API_KEY_FIELD} is not an AgentLattice agent key")),
            Ok(key) => match AgentClient::new(&config, key) {
                Err(e) => return Err(Error::Verify(format!("AgentLattice client: {e}"))),
                Ok(agent) => agent
                    .whoami()
                    .await
                    .map(|w| Identity {
                        agent_id: w.config_id,
                        key_id: w.key_id,
                    })
                    .map_err(|e| e.to_string()),
            },
        };
        whoami.insert(format!("{ns}/{name}"), answer);
    }

    // Events, both APIs. They serve the same objects (an Event written through one is read
    // through the other); an object is looked at once.
    let mut seen = std::collections::BTreeSet::new();
    for api in namespaced::<Event>(client, opts) {
        for e in api.list(&ListParams::default()).await?.items {
            let name = format!(
                "{}/{}",
                e.metadata.namespace.as_deref().unwrap_or_default(),
                e.metadata.name.as_deref().unwrap_or_default()
            );
            seen.insert(name.clone());
            texts.push(Text {
                location: format!("Event {name}"),
                content: format!(
                    "{} {} {}",
                    e.reason.unwrap_or_default(),
                    e.note.unwrap_or_default(),
                    e.action.unwrap_or_default()
                ),
            });
        }
    }
    for api in namespaced::<CoreEvent>(client, opts) {
        for e in api.list(&ListParams::default()).await?.items {
            let name = format!(
                "{}/{}",
                e.metadata.namespace.as_deref().unwrap_or_default(),
                e.metadata.name.as_deref().unwrap_or_default()
            );
            if seen.contains(&name) {
                continue;
            }
            texts.push(Text {
                location: format!("Event (core/v1) {name}"),
                content: format!(
                    "{} {}",
                    e.reason.unwrap_or_default(),
                    e.message.unwrap_or_default()
                ),
            });
        }
    }

    for path in &sources.log_files {
        let content = std::fs::read(path)
            .map_err(|e| Error::Verify(format!("log file {}: {e}", path.display())))?;
        for (n, line) in String::from_utf8_lossy(&content).lines().enumerate() {
            texts.push(Text {
                location: format!("log file {} line {}", path.display(), n + 1),
                content: line.to_owned(),
            });
        }
    }
    for url in &sources.metrics_urls {
        texts.push(Text {
            location: format!("metrics {url}"),
            content: get(url, None).await?,
        });
    }

    let state = get(
        &format!(
            "{}/_admin/state",
            sources.emulator_url.trim_end_matches('/')
        ),
        Some(sources.admin_token.as_str()),
    )
    .await?;
    let remote: RemoteState = serde_json::from_str(&state)
        .map_err(|e| Error::Verify(format!("the emulator's admin state does not parse: {e}")))?;

    Ok(Observation {
        now,
        resources,
        unparsed,
        secrets,
        remote,
        whoami,
        texts,
        keys,
    })
}
