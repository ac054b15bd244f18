//! The shared state of one simulator instance.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use parking_lot::Mutex;
use serde_json::Value;
use tokio::sync::watch;

use crate::auth::{Audit, Tokens};
use crate::faults::Faults;
use crate::rbac::RbacSnapshot;
use crate::registry::{Registry, ResourceType};
use crate::store::{Gr, Obj, Store};
use crate::workloads::faults::WorkloadFaults;

/// Kind-specific work the write pipeline runs synchronously after each committed write, before
/// it answers the writer (the CRD naming and establishing controller: a created CRD is served
/// before its creator sees the answer). Hooks are installed by the composition root (`lib.rs`),
/// so the pipeline (`ops`) does not depend on the controllers that write through it.
pub trait CommitHook: Send + Sync {
    fn after_commit(&self, st: &State, rt: &ResourceType, obj: &Obj);
}

/// Settings fixed at start-up.
#[derive(Debug, Clone)]
pub struct SimConfig {
    pub rbac: bool,
    /// Serve `sendInitialEvents` (the WatchList feature; on in 1.32).
    pub watch_list: bool,
    /// `host:port` for `serverAddressByClientCIDRs`.
    pub server_address: String,
    /// How often a watch with `allowWatchBookmarks` gets a BOOKMARK.
    pub bookmark_interval: Duration,
    /// Delay before the in-process controllers (GC, namespaces, CRD cleanup) act on a change.
    pub controller_delay: Duration,
    /// Enforce `OwnerReferencesPermissionEnforcement` (needs `update` on `<owner>/finalizers`
    /// to set `blockOwnerDeletion`) when RBAC is on.
    pub owner_references_permission_enforcement: bool,
    /// Maximum request body (upstream: 3 MiB).
    pub max_body_bytes: usize,
}

impl Default for SimConfig {
    fn default() -> Self {
        Self {
            rbac: false,
            watch_list: true,
            server_address: String::new(),
            bookmark_interval: Duration::from_secs(60),
            controller_delay: Duration::ZERO,
            owner_references_permission_enforcement: false,
            max_body_bytes: 3 * 1024 * 1024,
        }
    }
}

pub struct State {
    pub store: Store,
    pub registry: Registry,
    pub tokens: Tokens,
    pub audit: Audit,
    pub faults: Faults,
    pub workload_faults: WorkloadFaults,
    pub cfg: SimConfig,
    rbac_version: AtomicU64,
    rbac_cache: Mutex<Option<(u64, Arc<RbacSnapshot>)>>,
    /// Flips to true on shutdown; watches end cleanly.
    pub shutdown: watch::Sender<bool>,
    /// Run by `ops` after every committed write, in order.
    pub commit_hooks: Vec<Box<dyn CommitHook>>,
}

impl State {
    pub fn new(cfg: SimConfig, history: usize) -> Self {
        Self {
            store: Store::new(history),
            registry: Registry::new(),
            tokens: Tokens::default(),
            audit: Audit::default(),
            faults: Faults::default(),
            workload_faults: WorkloadFaults::default(),
            cfg,
            rbac_version: AtomicU64::new(1),
            rbac_cache: Mutex::new(None),
            shutdown: watch::channel(false).0,
            commit_hooks: Vec::new(),
        }
    }

    pub fn rbac_changed(&self) {
        self.rbac_version.fetch_add(1, Ordering::SeqCst);
    }

    /// The RBAC objects as an evaluable snapshot, rebuilt only after RBAC objects changed.
    pub fn rbac_snapshot(&self) -> Arc<RbacSnapshot> {
        let v = self.rbac_version.load(Ordering::SeqCst);
        if let Some((cv, s)) = self.rbac_cache.lock().as_ref()
            && *cv == v
        {
            return s.clone();
        }
        let vals = |r: &str| -> Vec<Value> {
            self.store
                .list(&Gr::new("rbac.authorization.k8s.io", r), None)
                .items
                .iter()
                .map(|o| o.value.clone())
                .collect()
        };
        let snap = Arc::new(RbacSnapshot::from_objects(
            &vals("roles"),
            &vals("clusterroles"),
            &vals("rolebindings"),
            &vals("clusterrolebindings"),
        ));
        *self.rbac_cache.lock() = Some((v, snap.clone()));
        snap
    }
}
