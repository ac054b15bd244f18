//! Client configuration, and building the shared HTTP transport from it.

use std::fmt;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;

use crate::error::{Error, Result};
use crate::observe::CallObserver;
use crate::retry::RetryPolicy;
use crate::throttle::{RateLimit, Throttle};
use crate::transport::Shared;

/// AgentLattice's production base URL.
pub const DEFAULT_BASE_URL: &str = "https://www.agentlattice.io";
/// Default connect timeout.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Default request timeout (sending the request and reading the whole response).
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// How to reach AgentLattice. Build a client from it with [`crate::ProvisionerClient::new`] or
/// [`crate::AgentClient::new`].
///
/// ```
/// use std::time::Duration;
/// use agentlattice::{ClientConfig, RateLimit, RetryPolicy};
///
/// let config = ClientConfig::new("https://staging.agentlattice.example")
///     .connect_timeout(Duration::from_secs(3))
///     .request_timeout(Duration::from_secs(10))
///     .retry(RetryPolicy::new().max_attempts(5))
///     .rate_limit(RateLimit::new(20.0, 40));
/// # let _ = config;
/// ```
#[derive(Clone)]
pub struct ClientConfig {
    base_url: String,
    connect_timeout: Duration,
    request_timeout: Duration,
    retry: RetryPolicy,
    rate_limit: Option<RateLimit>,
    observer: Option<Arc<dyn CallObserver>>,
    user_agent: String,
    allow_plain_http: bool,
    extra_roots: Vec<CertificateDer<'static>>,
    proxy_from_env: bool,
}

impl Default for ClientConfig {
    fn default() -> Self {
        Self::new(DEFAULT_BASE_URL)
    }
}

impl fmt::Debug for ClientConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientConfig")
            .field("base_url", &self.base_url)
            .field("connect_timeout", &self.connect_timeout)
            .field("request_timeout", &self.request_timeout)
            .field("retry", &self.retry)
            .field("rate_limit", &self.rate_limit)
            .field("observer", &self.observer.as_ref().map(|_| "<observer>"))
            .field("user_agent", &self.user_agent)
            .field("allow_plain_http", &self.allow_plain_http)
            .field("extra_roots", &self.extra_roots.len())
            .field("proxy_from_env", &self.proxy_from_env)
            .finish()
    }
}

impl ClientConfig {
    /// A configuration for this base URL (`https://…`; `http://` only for loopback hosts unless
    /// [`ClientConfig::allow_plain_http`]), with the default timeouts and retry policy and no
    /// client-side rate limit. The URL is checked when a client is built.
    pub fn new(base_url: impl Into<String>) -> Self {
        Self {
            base_url: base_url.into(),
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            request_timeout: DEFAULT_REQUEST_TIMEOUT,
            retry: RetryPolicy::default(),
            rate_limit: None,
            observer: None,
            user_agent: concat!("agentlattice-rust/", env!("CARGO_PKG_VERSION")).to_owned(),
            allow_plain_http: false,
            extra_roots: Vec::new(),
            proxy_from_env: true,
        }
    }

    /// Replaces the base URL.
    pub fn base_url(mut self, base_url: impl Into<String>) -> Self {
        self.base_url = base_url.into();
        self
    }

    /// Time allowed to establish a connection (TCP and TLS). Default 5 s.
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// Time allowed for one attempt, from sending to having read the whole response. Default 30 s.
    pub fn request_timeout(mut self, timeout: Duration) -> Self {
        self.request_timeout = timeout;
        self
    }

    /// The retry policy.
    pub fn retry(mut self, policy: RetryPolicy) -> Self {
        self.retry = policy;
        self
    }

    /// A client-side rate limit shared by every clone of the client. Off by default.
    pub fn rate_limit(mut self, limit: impl Into<Option<RateLimit>>) -> Self {
        self.rate_limit = limit.into();
        self
    }

    /// An observer told about every attempt (for metrics).
    pub fn observer(mut self, observer: Arc<dyn CallObserver>) -> Self {
        self.observer = Some(observer);
        self
    }

    /// The `User-Agent` header (default `agentlattice-rust/<version>`).
    pub fn user_agent(mut self, user_agent: impl Into<String>) -> Self {
        self.user_agent = user_agent.into();
        self
    }

    /// Allow `http://` base URLs on hosts other than loopback (for instance an emulator reached
    /// through a cluster Service). Off by default: the contract allows plain HTTP only for loopback,
    /// and keys travel in every request.
    pub fn allow_plain_http(mut self, allow: bool) -> Self {
        self.allow_plain_http = allow;
        self
    }

    /// Trust these CA certificates (PEM, one or more) in addition to the platform's roots.
    pub fn add_root_certificates_pem(mut self, pem: &[u8]) -> Result<Self> {
        let mut found = 0;
        for cert in CertificateDer::pem_slice_iter(pem) {
            let cert =
                cert.map_err(|_| Error::Config("the CA bundle is not valid PEM".to_owned()))?;
            self.extra_roots.push(cert);
            found += 1;
        }
        if found == 0 {
            return Err(Error::Config(
                "the CA bundle holds no certificate".to_owned(),
            ));
        }
        Ok(self)
    }

    /// Whether to use the `HTTPS_PROXY`/`HTTP_PROXY`/`NO_PROXY` environment variables (default
    /// true).
    pub fn proxy_from_env(mut self, enabled: bool) -> Self {
        self.proxy_from_env = enabled;
        self
    }

    /// The configured base URL, as given.
    pub fn get_base_url(&self) -> &str {
        &self.base_url
    }

    /// The configured retry policy.
    pub fn get_retry(&self) -> &RetryPolicy {
        &self.retry
    }

    /// Checks the configuration and builds the transport shared by a client and its clones.
    pub(crate) fn build(&self) -> Result<Arc<Shared>> {
        let base = parse_base_url(&self.base_url, self.allow_plain_http)?;
        if let Some(limit) = &self.rate_limit {
            limit.validate().map_err(Error::Config)?;
        }
        if self.connect_timeout.is_zero() || self.request_timeout.is_zero() {
            return Err(Error::Config(
                "timeouts must be longer than zero".to_owned(),
            ));
        }
        let tls = tls_config(base.scheme() == "https", &self.extra_roots)?;
        let mut builder = reqwest::Client::builder()
            .tls_backend_preconfigured(tls)
            .connect_timeout(self.connect_timeout)
            .timeout(self.request_timeout)
            .user_agent(self.user_agent.clone())
            // A redirect could carry the Authorization header somewhere else: never follow one.
            .redirect(reqwest::redirect::Policy::none())
            .https_only(base.scheme() == "https");
        if !self.proxy_from_env {
            builder = builder.no_proxy();
        }
        let http = builder.build().map_err(|e| {
            Error::Config(format!("cannot build the HTTP client: {}", e.without_url()))
        })?;
        Ok(Arc::new(Shared {
            http,
            base,
            retry: self.retry.clone(),
            throttle: Throttle::new(self.rate_limit),
            observer: self.observer.clone(),
        }))
    }
}

/// Checks the base URL: `https`, or `http` on a loopback host (any host with `allow_plain_http`);
/// no credentials, query or fragment. A trailing slash is ignored; a path prefix is kept.
pub(crate) fn parse_base_url(raw: &str, allow_plain_http: bool) -> Result<reqwest::Url> {
    let url = reqwest::Url::parse(raw.trim())
        .map_err(|e| Error::Config(format!("the base URL is not a valid URL: {e}")))?;
    match url.scheme() {
        "https" => {}
        "http" if allow_plain_http || is_loopback(&url) => {}
        "http" => {
            return Err(Error::Config(
                "plain http is allowed only for loopback hosts (or with allow_plain_http)"
                    .to_owned(),
            ));
        }
        _ => {
            return Err(Error::Config(
                "the base URL must be http or https".to_owned(),
            ));
        }
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(Error::Config(
            "the base URL must not carry credentials".to_owned(),
        ));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(Error::Config(
            "the base URL must not have a query or fragment".to_owned(),
        ));
    }
    if url.cannot_be_a_base() || url.host().is_none() {
        return Err(Error::Config("the base URL has no host".to_owned()));
    }
    Ok(url)
}

fn is_loopback(url: &reqwest::Url) -> bool {
    let Some(host) = url.host_str() else {
        return false;
    };
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    match bare.parse::<IpAddr>() {
        Ok(ip) => ip.is_loopback(),
        Err(_) => bare.eq_ignore_ascii_case("localhost"),
    }
}

/// rustls with the `ring` provider, explicitly (the workspace never links aws-lc-rs). For https,
/// the platform's verifier (system roots) plus any extra roots; for a plain-http base URL no
/// certificate is ever checked, so an empty root store is used and a machine without a CA bundle
/// can still talk to a loopback emulator.
fn tls_config(
    https: bool,
    extra_roots: &[CertificateDer<'static>],
) -> Result<rustls::ClientConfig> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::Config(format!("TLS setup failed: {e}")))?;
    let mut config = if https {
        let verifier = if extra_roots.is_empty() {
            rustls_platform_verifier::Verifier::new(provider)
        } else {
            rustls_platform_verifier::Verifier::new_with_extra_roots(
                extra_roots.iter().cloned(),
                provider,
            )
        }
        .map_err(|e| Error::Config(format!("cannot load CA certificates: {e}")))?;
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(verifier))
            .with_no_client_auth()
    } else {
        builder
            .with_root_certificates(rustls::RootCertStore::empty())
            .with_no_client_auth()
    };
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base_urls() {
        for ok in [
            "https://www.agentlattice.io",
            "https://www.agentlattice.io/",
            "https://example.com/prefix",
            "http://127.0.0.1:8080",
            "http://localhost:1",
            "http://[::1]:9/",
        ] {
            assert!(parse_base_url(ok, false).is_ok(), "{ok}");
        }
        for bad in [
            "http://emulator.default.svc:8080",
            "ftp://example.com",
            "https://user:pw@example.com",
            "https://example.com/?a=b",
            "not a url",
            "",
        ] {
            let e = parse_base_url(bad, false).unwrap_err();
            assert_eq!(e.category(), "config", "{bad}");
            assert!(!e.to_string().contains("pw"), "{e}");
        }
        assert!(parse_base_url("http://emulator.default.svc:8080", true).is_ok());
    }

    #[test]
    fn builds_for_http_and_https() {
        ClientConfig::new("http://127.0.0.1:1").build().unwrap();
        // https needs the platform roots; this machine has them (skip silently where it does not).
        if std::path::Path::new("/etc/ssl/certs").exists() {
            ClientConfig::default().build().unwrap();
        }
    }

    #[test]
    fn rejects_bad_settings() {
        let e = ClientConfig::new("http://127.0.0.1:1")
            .rate_limit(RateLimit::new(0.0, 1))
            .build()
            .err()
            .unwrap();
        assert_eq!(e.category(), "config");
        let e = ClientConfig::new("http://127.0.0.1:1")
            .request_timeout(Duration::ZERO)
            .build()
            .err()
            .unwrap();
        assert_eq!(e.category(), "config");
        assert!(
            ClientConfig::default()
                .add_root_certificates_pem(b"nothing here")
                .is_err()
        );
    }

    #[test]
    fn debug_is_safe() {
        let shown = format!("{:?}", ClientConfig::default());
        assert!(shown.contains("www.agentlattice.io"));
    }
}
