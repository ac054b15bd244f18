//! Client configuration, and the shared transport built from it.

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

/// Alter's production backend, the SDK's default (`ALTER_BASE_URL` overrides it there).
pub const DEFAULT_BASE_URL: &str = "https://backend.alterauth.com";
/// Default connect timeout.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Default time for one attempt (the SDK's `App` default is 30 s too).
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// How to reach Alter, and for which app.
///
/// ```
/// use std::time::Duration;
/// use alter::{ClientConfig, RateLimit, RetryPolicy};
///
/// let config = ClientConfig::new("https://backend.alterauth.com")
///     .app_id("3f9c1d2e-0000-4000-8000-000000000001")
///     .request_timeout(Duration::from_secs(10))
///     .retry(RetryPolicy::new().max_attempts(5))
///     .rate_limit(RateLimit::new(20.0, 40));
/// # let _ = config;
/// ```
#[derive(Clone)]
pub struct ClientConfig {
    base_url: String,
    app_id: Option<String>,
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
            .field("app_id", &self.app_id)
            .field("connect_timeout", &self.connect_timeout)
            .field("request_timeout", &self.request_timeout)
            .field("retry", &self.retry)
            .field("rate_limit", &self.rate_limit)
            .field("observer", &self.observer.is_some())
            .field("user_agent", &self.user_agent)
            .field("allow_plain_http", &self.allow_plain_http)
            .field("extra_roots", &self.extra_roots.len())
            .field("proxy_from_env", &self.proxy_from_env)
            .finish()
    }
}

impl ClientConfig {
    /// A configuration for this base URL (`https://…`; `http://` only for loopback hosts unless
    /// [`ClientConfig::allow_plain_http`]). Checked when a client is built.
    pub fn new(base_url: impl Into<String>) -> Self {
        Self {
            base_url: base_url.into(),
            app_id: None,
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            request_timeout: DEFAULT_REQUEST_TIMEOUT,
            retry: RetryPolicy::default(),
            rate_limit: None,
            observer: None,
            user_agent: concat!("alter-rust/", env!("CARGO_PKG_VERSION")).to_owned(),
            allow_plain_http: false,
            extra_roots: Vec::new(),
            proxy_from_env: true,
        }
    }

    /// The app the app key is expected to belong to. Nothing on the wire names the app (the key
    /// does); [`crate::AppClient::verify_app`] checks the key against this id.
    pub fn app_id(mut self, app_id: impl Into<String>) -> Self {
        self.app_id = Some(app_id.into());
        self
    }

    /// Time to establish a connection (TCP and TLS). Default 5 s.
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// Time for one attempt, from sending to having read the whole response. Default 30 s.
    pub fn request_timeout(mut self, timeout: Duration) -> Self {
        self.request_timeout = timeout;
        self
    }

    /// The retry policy.
    pub fn retry(mut self, policy: RetryPolicy) -> Self {
        self.retry = policy;
        self
    }

    /// A client-side rate limit (off by default).
    pub fn rate_limit(mut self, limit: impl Into<Option<RateLimit>>) -> Self {
        self.rate_limit = limit.into();
        self
    }

    /// An observer told about every attempt.
    pub fn observer(mut self, observer: Arc<dyn CallObserver>) -> Self {
        self.observer = Some(observer);
        self
    }

    /// The `User-Agent` (default `alter-rust/<version>`).
    pub fn user_agent(mut self, user_agent: impl Into<String>) -> Self {
        self.user_agent = user_agent.into();
        self
    }

    /// Allow `http://` on hosts other than loopback (an emulator behind a cluster Service). Off by
    /// default: keys travel in every request.
    pub fn allow_plain_http(mut self, allow: bool) -> Self {
        self.allow_plain_http = allow;
        self
    }

    /// Trust these CA certificates (PEM) on top of the platform's.
    pub fn add_root_certificates_pem(mut self, pem: &[u8]) -> Result<Self> {
        let before = self.extra_roots.len();
        for cert in CertificateDer::pem_slice_iter(pem) {
            let cert = cert.map_err(|_| Error::Config("the CA bundle is not valid PEM".into()))?;
            self.extra_roots.push(cert);
        }
        if self.extra_roots.len() == before {
            return Err(Error::Config("the CA bundle holds no certificate".into()));
        }
        Ok(self)
    }

    /// Whether to honour `HTTPS_PROXY`/`HTTP_PROXY`/`NO_PROXY` (default true).
    pub fn proxy_from_env(mut self, enabled: bool) -> Self {
        self.proxy_from_env = enabled;
        self
    }

    /// The configured app id.
    pub fn get_app_id(&self) -> Option<&str> {
        self.app_id.as_deref()
    }

    /// The configured base URL, as given.
    pub fn get_base_url(&self) -> &str {
        &self.base_url
    }

    pub(crate) fn build(&self) -> Result<Arc<Shared>> {
        let base = parse_base_url(&self.base_url, self.allow_plain_http)?;
        if let Some(limit) = &self.rate_limit {
            limit.check().map_err(Error::Config)?;
        }
        if self.connect_timeout.is_zero() || self.request_timeout.is_zero() {
            return Err(Error::Config("timeouts must be longer than zero".into()));
        }
        if let Some(app) = &self.app_id
            && (app.is_empty() || app.len() > 128 || !app.bytes().all(|b| b.is_ascii_graphic()))
        {
            return Err(Error::Config(
                "the app id must be 1-128 visible ASCII characters".into(),
            ));
        }
        let tls = tls_config(base.scheme() == "https", &self.extra_roots)?;
        let mut builder = reqwest::Client::builder()
            .tls_backend_preconfigured(tls)
            .connect_timeout(self.connect_timeout)
            .timeout(self.request_timeout)
            .user_agent(self.user_agent.clone())
            // A redirect could carry the key to another host: never follow one.
            .redirect(reqwest::redirect::Policy::none())
            .https_only(base.scheme() == "https");
        if !self.proxy_from_env {
            builder = builder.no_proxy();
        }
        let http = builder.build().map_err(|e| {
            Error::Config(format!("cannot build the HTTP client: {}", e.without_url()))
        })?;
        Ok(Arc::new(Shared::new(
            http,
            base,
            self.app_id.clone(),
            self.retry.clone(),
            Throttle::new(self.rate_limit),
            self.observer.clone(),
        )))
    }
}

/// `https`, or `http` on a loopback host (any host with `allow_plain_http`); no credentials, query
/// or fragment. A path prefix is kept (requests are signed relative to it, as the SDK does).
pub(crate) fn parse_base_url(raw: &str, allow_plain_http: bool) -> Result<reqwest::Url> {
    let url = reqwest::Url::parse(raw.trim())
        .map_err(|e| Error::Config(format!("the base URL is not a valid URL: {e}")))?;
    let loopback = url.host_str().is_some_and(|h| {
        let bare = h.trim_start_matches('[').trim_end_matches(']');
        bare.parse::<IpAddr>().map_or_else(
            |_| bare.eq_ignore_ascii_case("localhost"),
            |ip| ip.is_loopback(),
        )
    });
    match url.scheme() {
        "https" => {}
        "http" if allow_plain_http || loopback => {}
        "http" => {
            return Err(Error::Config(
                "plain http is allowed only for loopback hosts (or with allow_plain_http)".into(),
            ));
        }
        _ => return Err(Error::Config("the base URL must be http or https".into())),
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(Error::Config(
            "the base URL must not carry credentials".into(),
        ));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(Error::Config(
            "the base URL must not have a query or fragment".into(),
        ));
    }
    if url.cannot_be_a_base() || url.host().is_none() {
        return Err(Error::Config("the base URL has no host".into()));
    }
    Ok(url)
}

/// rustls with the `ring` provider, explicitly. https: the platform verifier plus extra roots;
/// plain http never checks a certificate, so an empty root store does (no CA bundle needed to
/// reach a loopback emulator).
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
            "https://backend.alterauth.com",
            "https://example.com/prefix/",
            "http://127.0.0.1:8080",
            "http://localhost:1",
            "http://[::1]:9",
        ] {
            assert!(parse_base_url(ok, false).is_ok(), "{ok}");
        }
        for bad in [
            "http://alter-emulator.dev.svc:8080",
            "ftp://example.com",
            "https://user:pw@example.com",
            "https://example.com/?a=b",
            "nope",
        ] {
            let e = parse_base_url(bad, false).unwrap_err();
            assert_eq!(e.category(), "config", "{bad}");
            assert!(!e.to_string().contains("pw"));
        }
        assert!(parse_base_url("http://alter-emulator.dev.svc:8080", true).is_ok());
    }

    #[test]
    fn bad_settings_are_refused() {
        let base = || ClientConfig::new("http://127.0.0.1:1");
        assert!(base().build().is_ok());
        assert!(base().rate_limit(RateLimit::new(0.0, 1)).build().is_err());
        assert!(base().request_timeout(Duration::ZERO).build().is_err());
        assert!(base().app_id("").build().is_err());
        assert!(base().app_id("with space").build().is_err());
        assert!(
            ClientConfig::default()
                .add_root_certificates_pem(b"none")
                .is_err()
        );
        assert!(format!("{:?}", ClientConfig::default()).contains("backend.alterauth.com"));
    }
}
