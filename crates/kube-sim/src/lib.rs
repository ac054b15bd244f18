//! kube-sim: an in-process Kubernetes API server simulator that speaks the real HTTP/JSON
//! protocol, so kube-rs, kubectl and Helm talk to it exactly as to a cluster (Kubernetes 1.32
//! semantics).
//!
//! ```no_run
//! # async fn example() -> Result<(), Box<dyn std::error::Error>> {
//! use k8s_openapi::api::core::v1::ConfigMap;
//! use kube::api::{Api, PostParams};
//!
//! let sim = kube_sim::KubeSim::start().await?;          // TLS on 127.0.0.1:<random>, RBAC off
//! let cms: Api<ConfigMap> = Api::namespaced(sim.client(), "default");
//! let mut cm = ConfigMap::default();
//! cm.metadata.name = Some("x".into());
//! cms.create(&PostParams::default(), &cm).await?;
//! println!("kubectl --kubeconfig {} get cm", sim.kubeconfig_path().display());
//! sim.shutdown().await;
//! # Ok(()) }
//! ```
//!
//! Module map (each module has one owner; see the crate README):
//! - [`error`]: the upstream `Status` error model and field errors, shared by every module.
//! - [`schema`]: CRD structural schemas — validation, pruning, defaulting, CEL rules (pure; the
//!   Kubernetes CEL libraries are kube-cel's).
//! - [`patch`]: JSON patch (evanphx v4 semantics), merge patch, strategic merge patch,
//!   server-side apply and managedFields (pure).
//! - [`rbac`]: RBAC rule evaluation and the upstream Forbidden message (pure).
//! - the server: `store` (global resourceVersion, history, watch fan-out), `registry`
//!   (served types, discovery, OpenAPI), `ops` (the write pipeline), `http` (routing, reads,
//!   auth), `watch`, `builtin` (per-kind rules), `crd_object` (a CRD object's own rules, used by
//!   `ops`), `crd` (served types and the naming/establishing controller, run after each CRD
//!   commit through a `state::CommitHook`), `controllers` (GC, namespaces, CRD cleanup),
//!   `workloads` (the Deployment/ReplicaSet/StatefulSet/DaemonSet controllers, scheduler,
//!   kubelet, nodes and workload faults), `protobuf`, `openapi`, `table`, [`faults`], `auth`,
//!   `kubeconfig`, `tls`. Dependencies point one way: controllers and `crd` write through `ops`,
//!   never the reverse.

pub mod error;
pub mod patch;
pub mod rbac;
pub mod schema;

mod auth;
mod body;
#[allow(clippy::result_large_err)] // handler errors are upstream `Status`es, by value
mod builtin;
#[allow(clippy::result_large_err)] // handler errors are upstream `Status`es, by value
mod controllers;
#[allow(clippy::result_large_err)] // handler errors are upstream `Status`es, by value
mod crd;
mod crd_object;
pub mod faults;
#[allow(clippy::result_large_err)] // handler errors are upstream `Status`es, by value
mod filter;
#[allow(clippy::result_large_err)] // handler errors are upstream `Status`es, by value
mod handler;
mod kubeconfig;
mod meta;
mod openapi;
#[allow(clippy::result_large_err)] // handler errors are upstream `Status`es, by value
mod ops;
mod protobuf;
#[allow(clippy::result_large_err)] // handler errors are upstream `Status`es, by value
mod registry;
#[allow(clippy::result_large_err)] // handler errors are upstream `Status`es, by value
mod request;
mod schema_api;
#[allow(clippy::result_large_err)] // handler errors are upstream `Status`es, by value
mod selector;
mod server;
mod state;
#[allow(clippy::result_large_err)] // handler errors are upstream `Status`es, by value
mod store;
#[allow(clippy::result_large_err)] // handler errors are upstream `Status`es, by value
mod table;
mod tls;
#[allow(clippy::result_large_err)] // handler errors are upstream `Status`es, by value
mod watch;
#[allow(clippy::result_large_err)] // handler errors are upstream `Status`es, by value
mod workloads;
mod yaml;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

pub use auth::{ADMIN_USER, AuditRecord};
pub use faults::{Faults, Matcher};
pub use workloads::faults::{PodMatcher, WorkloadFaults};

/// `(major.minor, gitVersion)` the simulator reports.
pub const VERSION_INFO: (&str, &str) = ("1.32", "v1.32.4");

/// Errors starting or using a simulator.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot generate the TLS certificates: {0}")]
    Tls(String),
    #[error("cannot write {path}: {source}")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot build a kube client: {0}")]
    Client(String),
    #[error("cannot read the state file {path}: {message}")]
    State { path: PathBuf, message: String },
}

/// Options of a simulator; see [`KubeSim::builder`].
#[derive(Debug, Clone)]
pub struct KubeSimBuilder {
    tls: bool,
    rbac: bool,
    host: IpAddr,
    port: u16,
    admin_token: Option<String>,
    history: usize,
    bookmark_interval: Duration,
    controller_delay: Duration,
    watch_list: bool,
    owner_references_permission_enforcement: bool,
    kubeconfig_path: Option<PathBuf>,
    state_file: Option<PathBuf>,
    workloads: workloads::WorkloadConfig,
}

impl Default for KubeSimBuilder {
    fn default() -> Self {
        Self {
            tls: true,
            rbac: false,
            host: IpAddr::V4(Ipv4Addr::LOCALHOST),
            port: 0,
            admin_token: None,
            history: 100_000,
            bookmark_interval: Duration::from_secs(60),
            controller_delay: Duration::ZERO,
            watch_list: true,
            owner_references_permission_enforcement: false,
            kubeconfig_path: None,
            state_file: None,
            workloads: workloads::WorkloadConfig::default(),
        }
    }
}

impl KubeSimBuilder {
    /// Serve HTTPS with a generated CA (default) or plain HTTP.
    pub fn tls(mut self, on: bool) -> Self {
        self.tls = on;
        self
    }

    /// Authenticate bearer tokens and authorize every request with RBAC (default off: every
    /// request is the admin).
    pub fn rbac(mut self, on: bool) -> Self {
        self.rbac = on;
        self
    }

    /// Port to listen on (0: any free port, the default).
    pub fn port(mut self, port: u16) -> Self {
        self.port = port;
        self
    }

    /// Address to listen on (default 127.0.0.1).
    pub fn host(mut self, host: IpAddr) -> Self {
        self.host = host;
        self
    }

    /// The admin token (`system:masters`); random when not set.
    pub fn admin_token(mut self, token: impl Into<String>) -> Self {
        self.admin_token = Some(token.into());
        self
    }

    /// How many changes the watch history keeps (older resourceVersions get 410).
    pub fn history(mut self, events: usize) -> Self {
        self.history = events;
        self
    }

    /// Interval of BOOKMARK events on watches that allow them (default 60 s, like upstream).
    pub fn bookmark_interval(mut self, d: Duration) -> Self {
        self.bookmark_interval = d;
        self
    }

    /// Delay before the garbage collector / namespace / CRD controllers act (default 0).
    pub fn controller_delay(mut self, d: Duration) -> Self {
        self.controller_delay = d;
        self
    }

    /// Serve streaming lists (`sendInitialEvents`, WatchList; on in 1.32).
    pub fn watch_list(mut self, on: bool) -> Self {
        self.watch_list = on;
        self
    }

    /// Require `update` on `<owner>/finalizers` to set `blockOwnerDeletion` (the
    /// OwnerReferencesPermissionEnforcement admission plugin); only with RBAC on.
    pub fn owner_references_permission_enforcement(mut self, on: bool) -> Self {
        self.owner_references_permission_enforcement = on;
        self
    }

    /// Where to write the admin kubeconfig (default: a fresh temporary directory).
    pub fn kubeconfig_path(mut self, p: impl Into<PathBuf>) -> Self {
        self.kubeconfig_path = Some(p.into());
        self
    }

    /// Keep the stored objects in `path` across restarts: loaded at start when the file
    /// exists (objects keep their uids and resourceVersions; watch history starts empty, so
    /// clients re-list), written by [`KubeSim::shutdown`], on drop, and by
    /// [`KubeSim::save_state`]. The file holds every object, Secrets included, in clear
    /// text (mode 0600), like an unencrypted etcd; tokens are not kept.
    pub fn state_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.state_file = Some(path.into());
        self
    }

    /// How long a scheduled pod stays `Pending` (`ContainerCreating`) before it runs
    /// (default 500 ms).
    pub fn pod_start_delay(mut self, d: Duration) -> Self {
        self.workloads.pod_start_delay = d;
        self
    }

    /// How long a running pod takes to become `Ready` (default 500 ms).
    pub fn pod_ready_delay(mut self, d: Duration) -> Self {
        self.workloads.pod_ready_delay = d;
        self
    }

    /// How long the kubelet takes to finish a graceful pod deletion (default 200 ms).
    pub fn pod_termination_delay(mut self, d: Duration) -> Self {
        self.workloads.pod_termination_delay = d;
        self
    }

    /// The nodes of a fresh cluster: `kube-sim-node-1` … `kube-sim-node-<n>` (default 3).
    pub fn nodes(mut self, n: usize) -> Self {
        self.workloads.nodes = (1..=n).map(|i| format!("kube-sim-node-{i}")).collect();
        self
    }

    /// The nodes of a fresh cluster, by name.
    pub fn node_names<I, S>(mut self, names: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.workloads.nodes = names.into_iter().map(Into::into).collect();
        self
    }

    /// Start serving.
    pub async fn start(self) -> Result<KubeSim, Error> {
        KubeSim::start_with(self).await
    }
}

/// A running simulator. Dropping it stops the server; [`KubeSim::shutdown`] does so gracefully.
pub struct KubeSim {
    state: Arc<state::State>,
    addr: SocketAddr,
    base_url: String,
    tls: Option<tls::TlsMaterial>,
    admin_token: String,
    temp_dir: Option<PathBuf>,
    kubeconfig_path: PathBuf,
    state_file: Option<PathBuf>,
    client: kube::Client,
    tasks: Vec<JoinHandle<()>>,
}

impl std::fmt::Debug for KubeSim {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KubeSim")
            .field("base_url", &self.base_url)
            .field("kubeconfig", &self.kubeconfig_path)
            .finish_non_exhaustive()
    }
}

fn temp_dir() -> PathBuf {
    let n = meta::random_token(10);
    std::env::temp_dir().join(format!("kube-sim-{}-{n}", std::process::id()))
}

impl KubeSim {
    /// A simulator with the defaults: TLS on 127.0.0.1, a random port, RBAC off.
    pub async fn start() -> Result<Self, Error> {
        Self::builder().start().await
    }

    pub fn builder() -> KubeSimBuilder {
        KubeSimBuilder::default()
    }

    async fn start_with(b: KubeSimBuilder) -> Result<Self, Error> {
        let addr = SocketAddr::new(b.host, b.port);
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|source| Error::Bind { addr, source })?;
        let addr = listener
            .local_addr()
            .map_err(|source| Error::Bind { addr, source })?;
        let tls = if b.tls {
            Some(tls::generate().map_err(Error::Tls)?)
        } else {
            None
        };
        let host = match addr.ip() {
            IpAddr::V6(ip) => format!("[{ip}]"),
            IpAddr::V4(ip) => ip.to_string(),
        };
        let base_url = format!(
            "{}://{host}:{}",
            if b.tls { "https" } else { "http" },
            addr.port()
        );
        let cfg = state::SimConfig {
            rbac: b.rbac,
            watch_list: b.watch_list,
            server_address: format!("{host}:{}", addr.port()),
            bookmark_interval: b.bookmark_interval,
            controller_delay: b.controller_delay,
            owner_references_permission_enforcement: b.owner_references_permission_enforcement,
            ..Default::default()
        };
        let mut st = state::State::new(cfg, b.history);
        st.commit_hooks.push(Box::new(crd::EstablishCrds));
        let st = Arc::new(st);
        let admin_token = b.admin_token.unwrap_or_else(|| meta::random_token(40));
        st.tokens.insert(&admin_token, auth::admin_user());
        if let Some(path) = &b.state_file {
            load_state(&st, path)?;
        }
        seed(&st, &b.workloads.nodes);
        let events = st.store.listen();
        let workload_events = st.store.listen();
        let mut tasks = vec![
            tokio::spawn(controllers::run(st.clone(), events)),
            tokio::spawn(workloads::run(
                st.clone(),
                workload_events,
                b.workloads.clone(),
            )),
        ];
        tasks.push(tokio::spawn(server::serve(
            listener,
            st.clone(),
            tls.as_ref().map(|t| t.server_config.clone()),
            st.shutdown.subscribe(),
        )));
        let (temp, kubeconfig_path) = match b.kubeconfig_path {
            Some(p) => (None, p),
            None => {
                let d = temp_dir();
                let p = d.join("kubeconfig");
                (Some(d), p)
            }
        };
        let client = client_for(&base_url, tls.as_ref(), Some(&admin_token))?;
        let sim = KubeSim {
            state: st,
            addr,
            base_url,
            tls,
            admin_token,
            temp_dir: temp,
            kubeconfig_path: kubeconfig_path.clone(),
            state_file: b.state_file.clone(),
            client,
            tasks,
        };
        let token = sim.admin_token.clone();
        sim.write_kubeconfig(&kubeconfig_path, Some(&token))?;
        Ok(sim)
    }

    /// A `kube::Client` authenticated as the admin (`system:masters`).
    pub fn client(&self) -> kube::Client {
        self.client.clone()
    }

    /// A `kube::Client` sending `token` (see [`KubeSim::create_token_for_service_account`]).
    pub fn client_for_token(&self, token: &str) -> Result<kube::Client, Error> {
        client_for(&self.base_url, self.tls.as_ref(), Some(token))
    }

    /// A `kube::Config` for this simulator (admin token), to customise before building a client.
    pub fn config(&self) -> kube::Config {
        config_for(&self.base_url, self.tls.as_ref(), Some(&self.admin_token))
    }

    /// A `kube::Config` sending `token` (`None`: no credentials).
    pub fn config_for_token(&self, token: Option<&str>) -> kube::Config {
        config_for(&self.base_url, self.tls.as_ref(), token)
    }

    /// `https://127.0.0.1:<port>` (or `http://…` without TLS).
    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The admin kubeconfig written at start-up.
    pub fn kubeconfig_path(&self) -> &Path {
        &self.kubeconfig_path
    }

    /// The admin bearer token.
    pub fn admin_token(&self) -> &str {
        &self.admin_token
    }

    /// The CA certificate (PEM) clients must trust, when serving TLS.
    pub fn ca_pem(&self) -> Option<&str> {
        self.tls.as_ref().map(|t| t.ca_pem.as_str())
    }

    /// Write a kubeconfig for this simulator that sends `token` (`None`: no credentials).
    pub fn write_kubeconfig(&self, path: &Path, token: Option<&str>) -> Result<(), Error> {
        let y = kubeconfig::render(
            &self.base_url,
            self.tls.as_ref().map(|t| t.ca_pem.as_str()),
            token,
            "default",
        );
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|source| Error::Write {
                path: dir.to_path_buf(),
                source,
            })?;
        }
        std::fs::write(path, y).map_err(|source| Error::Write {
            path: path.to_path_buf(),
            source,
        })
    }

    /// Mint a token that authenticates as ServiceAccount `namespace/name` (as a TokenRequest
    /// would; the ServiceAccount need not exist).
    pub fn create_token_for_service_account(&self, namespace: &str, name: &str) -> String {
        let token = meta::random_token(48);
        let mut user = rbac::service_account_user(namespace, name);
        if let Some(sa) =
            self.state
                .store
                .get(&store::Gr::new("", "serviceaccounts"), namespace, name)
        {
            user.uid = sa.uid().to_string();
        }
        self.state.tokens.insert(&token, user);
        token
    }

    /// Register a token for a user with groups (`system:authenticated` is added).
    pub fn add_token(&self, token: &str, user: &str, groups: &[&str]) {
        let mut g: Vec<String> = groups.iter().map(|s| s.to_string()).collect();
        if !g.iter().any(|x| x == "system:authenticated") {
            g.push("system:authenticated".into());
        }
        self.state.tokens.insert(
            token,
            rbac::UserInfo {
                name: user.to_string(),
                uid: String::new(),
                groups: g,
            },
        );
    }

    /// Forget a token.
    pub fn revoke_token(&self, token: &str) {
        self.state.tokens.remove(token);
    }

    /// Every request so far: verb, group, resource, subresource, namespace, name, user,
    /// whether RBAC allowed it, and the response code.
    pub fn audit_log(&self) -> Vec<AuditRecord> {
        self.state.audit.snapshot()
    }

    pub fn clear_audit_log(&self) {
        self.state.audit.clear();
    }

    /// Fault injection.
    pub fn faults(&self) -> &Faults {
        &self.state.faults
    }

    /// Fault injection for workloads: pods that never become Ready, crash after start, or
    /// start slowly (see [`WorkloadFaults`]).
    pub fn workload_faults(&self) -> &WorkloadFaults {
        &self.state.workload_faults
    }

    /// Drop the watch history: watches and exact reads from any older resourceVersion get 410.
    pub fn compact_history(&self) {
        self.state.store.compact();
    }

    /// Compact the history and drop every watch: clients re-watch from their last
    /// resourceVersion and get `410 Expired`, which makes kube-runtime's watcher re-list.
    pub fn expire_watches(&self) {
        self.state.store.compact();
        self.state.faults.drop_watches();
    }

    /// The current (global) resourceVersion.
    pub fn resource_version(&self) -> u64 {
        self.state.store.current_rv()
    }

    /// Number of stored objects of a resource (`group` "" for core).
    pub fn object_count(&self, group: &str, resource: &str) -> usize {
        self.state.store.count(&store::Gr::new(group, resource))
    }

    /// Write every stored object to `path` (see [`KubeSimBuilder::state_file`]).
    pub fn save_state(&self, path: &Path) -> Result<(), Error> {
        let (rv, objects) = self.state.store.dump();
        let items: Vec<serde_json::Value> = objects
            .into_iter()
            .map(|(gr, v)| json!({"group": gr.group, "resource": gr.resource, "object": v}))
            .collect();
        let doc =
            json!({"kind": "KubeSimState", "resourceVersion": rv.to_string(), "items": items});
        let write_err = |source| Error::Write {
            path: path.to_path_buf(),
            source,
        };
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(write_err)?;
        }
        let tmp = path.with_extension("tmp");
        {
            let mut opts = std::fs::OpenOptions::new();
            opts.write(true).create(true).truncate(true);
            #[cfg(unix)]
            {
                use std::os::unix::fs::OpenOptionsExt;
                opts.mode(0o600);
            }
            let mut f = opts.open(&tmp).map_err(write_err)?;
            use std::io::Write;
            f.write_all(&serde_json::to_vec(&doc).unwrap_or_default())
                .map_err(write_err)?;
        }
        std::fs::rename(&tmp, path).map_err(write_err)
    }

    fn save_state_on_exit(&self) {
        if let Some(p) = &self.state_file
            && let Err(e) = self.save_state(p)
        {
            tracing::warn!("kube-sim: {e}");
        }
    }

    /// Stop serving: open watches end, connections close gracefully.
    pub async fn shutdown(mut self) {
        self.save_state_on_exit();
        let _ = self.state.shutdown.send(true);
        for t in self.tasks.drain(..) {
            let _ = tokio::time::timeout(Duration::from_secs(3), t).await;
        }
    }
}

impl Drop for KubeSim {
    fn drop(&mut self) {
        if !self.tasks.is_empty() {
            // Not shut down (which saved and drained the tasks): save now.
            self.save_state_on_exit();
        }
        let _ = self.state.shutdown.send(true);
        for t in &self.tasks {
            t.abort();
        }
        if let Some(d) = &self.temp_dir {
            let _ = std::fs::remove_dir_all(d);
        }
    }
}

fn config_for(base_url: &str, tls: Option<&tls::TlsMaterial>, token: Option<&str>) -> kube::Config {
    let uri = base_url
        .parse::<http::Uri>()
        .unwrap_or_else(|_| http::Uri::from_static("http://127.0.0.1"));
    let mut c = kube::Config::new(uri);
    if let Some(t) = tls {
        c.root_cert = Some(vec![t.ca_der.clone()]);
    }
    if let Some(t) = token {
        c.auth_info.token = Some(secrecy::SecretString::new(t.into()));
    }
    c
}

fn client_for(
    base_url: &str,
    tls: Option<&tls::TlsMaterial>,
    token: Option<&str>,
) -> Result<kube::Client, Error> {
    kube::Client::try_from(config_for(base_url, tls, token))
        .map_err(|e| Error::Client(e.to_string()))
}

/// Load a state file written by [`KubeSim::save_state`]; a missing file is a fresh cluster.
fn load_state(st: &state::State, path: &Path) -> Result<(), Error> {
    let bad = |message: String| Error::State {
        path: path.to_path_buf(),
        message,
    };
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(bad(e.to_string())),
    };
    let doc: serde_json::Value = serde_json::from_slice(&bytes).map_err(|e| bad(e.to_string()))?;
    if doc.get("kind").and_then(|k| k.as_str()) != Some("KubeSimState") {
        return Err(bad("not a kube-sim state file".into()));
    }
    let rv = doc
        .get("resourceVersion")
        .and_then(|r| r.as_str())
        .and_then(|r| r.parse::<u64>().ok())
        .ok_or_else(|| bad("no resourceVersion".into()))?;
    let mut objects = Vec::new();
    for item in doc
        .get("items")
        .and_then(|i| i.as_array())
        .ok_or_else(|| bad("no items".into()))?
    {
        let s = |k: &str| item.get(k).and_then(|v| v.as_str()).unwrap_or("");
        let Some(obj) = item.get("object").filter(|o| o.is_object()) else {
            return Err(bad("an item without an object".into()));
        };
        objects.push((store::Gr::new(s("group"), s("resource")), obj.clone()));
    }
    let crds: Vec<String> = objects
        .iter()
        .filter(|(gr, _)| *gr == crd::crd_gr())
        .map(|(_, o)| meta::name(o).to_string())
        .collect();
    st.store.restore(rv, objects);
    for name in crds {
        crd::sync(st, &name);
    }
    st.rbac_changed();
    Ok(())
}

/// The objects a fresh cluster has: namespaces, the `kubernetes` Service, the bootstrap RBAC
/// policy.
fn seed(st: &state::State, nodes: &[String]) {
    let types = st.registry.types();
    let p = ops::WriteParams::system("kube-apiserver");
    let create = |group: &str, resource: &str, ns: &str, v: serde_json::Value| {
        if let Some(rt) = types.lookup_gr(group, resource) {
            let _ = ops::create(st, &rt, ns, v, &p, ops::Mode::Create);
        }
    };
    for ns in ["default", "kube-system", "kube-public", "kube-node-lease"] {
        create(
            "",
            "namespaces",
            "",
            json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}}),
        );
    }
    create(
        "",
        "services",
        "default",
        json!({"apiVersion": "v1", "kind": "Service",
               "metadata": {"name": "kubernetes", "labels": {"component": "apiserver", "provider": "kubernetes"}},
               "spec": {"clusterIP": "10.96.0.1", "clusterIPs": ["10.96.0.1"], "type": "ClusterIP",
                        "ports": [{"name": "https", "port": 443, "protocol": "TCP", "targetPort": 6443}]}}),
    );
    for o in rbac::bootstrap_cluster_roles() {
        let resource = if o.get("kind").and_then(|k| k.as_str()) == Some("ClusterRole") {
            "clusterroles"
        } else {
            "clusterrolebindings"
        };
        let mut o = o;
        if let Some(m) = o.as_object_mut() {
            m.insert("apiVersion".into(), json!("rbac.authorization.k8s.io/v1"));
        }
        create("rbac.authorization.k8s.io", resource, "", o);
    }
    for n in nodes {
        create("", "nodes", "", workloads::nodes::node_object(n));
    }
    for ns in ["default", "kube-system", "kube-public", "kube-node-lease"] {
        create(
            "",
            "serviceaccounts",
            ns,
            json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "default"}}),
        );
    }
}
