//! A LatticeAgent as the controller's store keeps it (design §2.1).
//!
//! kube-runtime's controller reads its objects from a reflector store, which keeps every object
//! decoded (`Arc<K>`): for a Ready LatticeAgent about 2.6 KiB of heap, most of it the status's
//! strings and the struct's own 1 KiB. The store holds [`StoredAgent`]s instead: the metadata
//! decoded — the store's index, the controller, the predicate and the workload watches read it,
//! and [`crate::crd::keep_read_metadata`] has already trimmed it — and the spec and status
//! [`Packed`]. Whoever needs the spec or status unpacks it ([`StoredAgent::agent`],
//! [`StoredAgent::guarded`]): each reconcile does, once for the object it is handed and once for
//! the store's newest copy.

use std::borrow::Cow;
use std::collections::HashSet;
use std::sync::{Arc, LazyLock, Mutex};

use kube::Resource;
use kube::core::error_boundary::{DeserializeGuard, InvalidObject};
use kube::core::{NamespaceResourceScope, ObjectMeta};
use serde::{Deserialize, Serialize};

use super::packed::{Dictionary, PackError, Packable, Packed};
use crate::crd::{LatticeAgent, LatticeAgentSpec, LatticeAgentStatus};
use crate::plan::policy::ProvisionerId;

/// A LatticeAgent as the watch delivers it: parsed, or malformed with its metadata.
type Guarded = DeserializeGuard<LatticeAgent>;

/// A LatticeAgent in the controller's store: its metadata, and its spec and status packed (or why
/// it did not parse).
#[derive(Clone, Debug)]
pub struct StoredAgent {
    metadata: ObjectMeta,
    body: Body,
    provisioners: Provisioners,
}

/// Which provisioner a parsed agent names (`spec.provisionerRef`) and which its status records
/// (`status.provisioner`), as [`ProvisionerId`] text, kept decoded: the provisioners ask it of
/// every stored agent at each check, and unpacking 100,000 agents for it took about 0.6 s. The
/// two shared strings fit in the allocation's jemalloc size class (`StoredAgent` and the `Arc`'s
/// counts stay within 448 bytes; a test holds this), and are interned: no heap per agent.
#[derive(Clone, Debug, Default)]
struct Provisioners {
    names: Option<Arc<str>>,
    recorded: Option<Arc<str>>,
}

/// `id`, allocated once per process: every stored agent naming it shares it. The set only grows
/// by provisioners ever named (a handful), never by agents.
fn interned(id: &str) -> Arc<str> {
    static IDS: LazyLock<Mutex<HashSet<Arc<str>>>> = LazyLock::new(Mutex::default);
    let mut ids = IDS.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(shared) = ids.get(id) {
        return Arc::clone(shared);
    }
    let shared: Arc<str> = Arc::from(id);
    ids.insert(Arc::clone(&shared));
    shared
}

#[derive(Clone, Debug)]
enum Body {
    /// The spec and status, packed.
    Packed(Packed),
    /// Why the object did not parse (the watch's `InvalidObject::error`).
    Malformed(Box<str>),
}

/// The part of a LatticeAgent that is packed, as its JSON has it.
#[derive(Serialize, Deserialize)]
struct AgentBody {
    spec: LatticeAgentSpec,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    status: Option<LatticeAgentStatus>,
}

/// [`AgentBody`] borrowed from a LatticeAgent (packing copies nothing).
#[derive(Serialize)]
struct AgentBodyRef<'a> {
    spec: &'a LatticeAgentSpec,
    #[serde(skip_serializing_if = "Option::is_none")]
    status: &'a Option<LatticeAgentStatus>,
}

/// A Ready LatticeAgent that rotated once and has a consumer.
const AGENT_SAMPLE: &str = include_str!("dictionaries/agent.json");

impl Packable for AgentBody {
    fn dictionary() -> &'static Dictionary {
        static DICTIONARY: std::sync::LazyLock<Dictionary> =
            std::sync::LazyLock::new(|| Dictionary::of::<AgentBody>(AGENT_SAMPLE));
        &DICTIONARY
    }
}

impl StoredAgent {
    /// The stored form of `watched`.
    pub fn new(watched: Guarded) -> StoredAgent {
        match watched.0 {
            Ok(agent) => {
                let body = AgentBodyRef {
                    spec: &agent.spec,
                    status: &agent.status,
                };
                let body = match Packed::pack_as::<AgentBody>(&body) {
                    Ok(packed) => Body::Packed(packed),
                    // The types serialize to JSON without fail; if one ever did not, the object is
                    // reconciled as malformed and says why rather than disappear.
                    Err(e) => Body::Malformed(format!("cannot be cached: {e}").into()),
                };
                let namespace = agent.metadata.namespace.as_deref().unwrap_or_default();
                let names = ProvisionerId::of(namespace, agent.spec.provisioner_ref.as_ref());
                let provisioners = Provisioners {
                    names: Some(interned(&names.to_string())),
                    recorded: agent
                        .status
                        .as_ref()
                        .and_then(|s| s.provisioner.as_deref())
                        .map(interned),
                };
                StoredAgent {
                    metadata: agent.metadata,
                    body,
                    provisioners,
                }
            }
            Err(invalid) => StoredAgent {
                metadata: invalid.metadata,
                body: Body::Malformed(invalid.error.into()),
                provisioners: Provisioners::default(),
            },
        }
    }

    /// The object as the watch delivered it: parsed, or malformed with the watch's error. An
    /// error when the packed spec and status do not unpack — never for bytes packed here; should
    /// it happen, it is the operator's fault, not the object's, and is not reported as a
    /// malformed object (that would put the wrong reason in the object's status).
    pub fn guarded(&self) -> Result<Guarded, PackError> {
        let parsed = match &self.body {
            Body::Packed(packed) => {
                let AgentBody { spec, status } = packed.unpack::<AgentBody>()?;
                Ok(LatticeAgent {
                    metadata: self.metadata.clone(),
                    spec,
                    status,
                })
            }
            Body::Malformed(error) => Err(InvalidObject {
                error: error.to_string(),
                metadata: self.metadata.clone(),
            }),
        };
        Ok(DeserializeGuard(parsed))
    }

    /// The LatticeAgent, when it parsed (and unpacks).
    pub fn agent(&self) -> Option<LatticeAgent> {
        match &self.body {
            Body::Packed(_) => self.guarded().ok()?.0.ok(),
            Body::Malformed(_) => None,
        }
    }

    /// Whether the agent parsed and names the provisioner `id` (`spec.provisionerRef`; without
    /// unpacking it).
    pub fn names_provisioner(&self, id: &str) -> bool {
        self.provisioners.names.as_deref() == Some(id)
    }

    /// Whether the agent parsed and its status records the provisioner `id`
    /// (`status.provisioner`; without unpacking it).
    pub fn records_provisioner(&self, id: &str) -> bool {
        self.provisioners.recorded.as_deref() == Some(id)
    }

    /// Whether the object parsed (without unpacking it).
    pub fn parsed(&self) -> bool {
        matches!(self.body, Body::Packed(_))
    }

    /// How many heap bytes the packed spec and status take (0 for a malformed object).
    pub fn packed_len(&self) -> usize {
        match &self.body {
            Body::Packed(packed) => packed.len(),
            Body::Malformed(_) => 0,
        }
    }
}

impl From<Guarded> for StoredAgent {
    fn from(watched: Guarded) -> StoredAgent {
        StoredAgent::new(watched)
    }
}

/// Parsed as the watch parses a LatticeAgent, then stored (kube-runtime's controller asks its
/// object type to be deserializable; the operator's watches deliver [`Guarded`] objects).
impl<'de> Deserialize<'de> for StoredAgent {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Guarded::deserialize(d).map(StoredAgent::new)
    }
}

impl Resource for StoredAgent {
    type DynamicType = ();
    type Scope = NamespaceResourceScope;

    fn kind(dt: &()) -> Cow<'_, str> {
        LatticeAgent::kind(dt)
    }

    fn group(dt: &()) -> Cow<'_, str> {
        LatticeAgent::group(dt)
    }

    fn version(dt: &()) -> Cow<'_, str> {
        LatticeAgent::version(dt)
    }

    fn plural(dt: &()) -> Cow<'_, str> {
        LatticeAgent::plural(dt)
    }

    fn meta(&self) -> &ObjectMeta {
        &self.metadata
    }

    fn meta_mut(&mut self) -> &mut ObjectMeta {
        &mut self.metadata
    }
}

#[cfg(test)]
mod tests {
    use super::super::packed::sample_is_faithful;
    use super::*;

    fn watched(value: serde_json::Value) -> Guarded {
        serde_json::from_value(value).expect("a LatticeAgent's JSON")
    }

    fn ready() -> serde_json::Value {
        let body: serde_json::Value = serde_json::from_str(AGENT_SAMPLE).expect("sample");
        serde_json::json!({
            "apiVersion": "agentlattice.io/v1alpha1",
            "kind": "LatticeAgent",
            "metadata": {
                "name": "payments", "namespace": "payments", "uid": "u1",
                "resourceVersion": "7", "generation": 1,
                "finalizers": ["agentlattice.io/cleanup"],
            },
            "spec": body["spec"],
            "status": body["status"],
        })
    }

    #[test]
    fn the_sample_is_what_a_latticeagent_serializes_to() {
        assert!(sample_is_faithful::<AgentBody>(AGENT_SAMPLE));
    }

    #[test]
    fn a_stored_agent_gives_back_the_agent_it_stored() {
        for value in [
            ready(),
            serde_json::json!({
                "apiVersion": "agentlattice.io/v1alpha1", "kind": "LatticeAgent",
                "metadata": {"name": "new", "namespace": "ns", "uid": "u2"},
                "spec": {"capabilities": ["read"]},
            }),
        ] {
            let agent = watched(value).0.expect("parses");
            let stored = StoredAgent::new(DeserializeGuard(Ok(agent.clone())));
            assert!(stored.parsed());
            assert_eq!(stored.meta(), &agent.metadata);
            assert_eq!(stored.agent().as_ref(), Some(&agent));
            assert_eq!(stored.guarded().expect("unpacks").0.ok(), Some(agent));
        }
    }

    #[test]
    fn a_malformed_object_stays_malformed_with_its_metadata_and_error() {
        let g = watched(serde_json::json!({
            "apiVersion": "agentlattice.io/v1alpha1", "kind": "LatticeAgent",
            "metadata": {"name": "bad", "namespace": "ns", "uid": "u3"},
            "spec": {"capabilities": "not a list"},
        }));
        let Err(invalid) = &g.0 else {
            panic!("should not parse");
        };
        let error = invalid.error.clone();
        let stored = StoredAgent::new(g);
        assert!(!stored.parsed());
        assert_eq!(stored.agent(), None);
        assert_eq!(stored.meta().name.as_deref(), Some("bad"));
        let Err(back) = stored.guarded().expect("nothing to unpack").0 else {
            panic!("stays malformed");
        };
        assert_eq!(back.error, error);
        assert_eq!(back.metadata.uid.as_deref(), Some("u3"));
    }

    /// Everything but the spec and status is read from the decoded metadata (the predicate, the
    /// store's index, the workload watches): it must be the watch's, field for field.
    #[test]
    fn the_stored_metadata_is_the_watched_metadata_whole() {
        let mut value = ready();
        value["metadata"] = serde_json::json!({
            "name": "payments", "namespace": "payments", "uid": "u1",
            "resourceVersion": "7", "generation": 3,
            "creationTimestamp": "2026-12-08T00:23:13Z",
            "deletionTimestamp": "2026-12-08T01:00:00Z",
            "deletionGracePeriodSeconds": 0,
            "finalizers": ["agentlattice.io/cleanup"],
            "labels": {"team": "payments"},
            "annotations": {"agentlattice.io/rotate": "1", "note": "x"},
            "ownerReferences": [{
                "apiVersion": "apps/v1", "kind": "Deployment", "name": "payments",
                "uid": "d1", "controller": true,
            }],
        });
        let mut malformed = value.clone();
        malformed["spec"]["capabilities"] = serde_json::json!("not a list");
        for value in [value, malformed] {
            let g = watched(value);
            let (meta, parsed) = match &g.0 {
                Ok(agent) => (agent.metadata.clone(), true),
                Err(invalid) => (invalid.metadata.clone(), false),
            };
            let stored = StoredAgent::new(g);
            assert_eq!(stored.meta(), &meta);
            assert_eq!(stored.parsed(), parsed);
            assert_eq!(
                crate::cluster::predicate_hash(stored.meta(), stored.parsed()),
                crate::cluster::predicate_hash(&meta, parsed)
            );
        }
    }

    #[test]
    fn a_body_that_does_not_unpack_is_an_error_not_a_malformed_object() {
        let agent = watched(ready()).0.expect("parses");
        let mut stored = StoredAgent::new(DeserializeGuard(Ok(agent)));
        // Bytes packed as another type (another dictionary, other JSON): they do not unpack as a
        // LatticeAgent's spec and status.
        let other = k8s_openapi::api::core::v1::Secret::default();
        stored.body = Body::Packed(Packed::pack(&other).expect("packs"));
        assert!(stored.parsed());
        assert!(stored.guarded().is_err());
        assert_eq!(stored.agent(), None);
    }

    #[test]
    fn the_provisioners_are_answered_as_the_unpacked_agent_says() {
        let mut named = ready();
        named["spec"]["provisionerRef"] =
            serde_json::json!({"kind": "LatticeProvisioner", "name": "team"});
        named["status"]["provisioner"] = "LatticeProvisioner/payments/team".into();
        let mut cluster = ready();
        cluster["spec"]["provisionerRef"] =
            serde_json::json!({"kind": "ClusterLatticeProvisioner", "name": "shared"});
        cluster["status"]
            .as_object_mut()
            .expect("status")
            .remove("provisioner");
        let ids = [
            "default",
            "LatticeProvisioner/payments/team",
            "ClusterLatticeProvisioner/shared",
        ];
        for value in [ready(), named, cluster] {
            let agent = watched(value).0.expect("parses");
            let stored = StoredAgent::new(DeserializeGuard(Ok(agent.clone())));
            let namespace = agent.metadata.namespace.as_deref().unwrap_or_default();
            let names = ProvisionerId::of(namespace, agent.spec.provisioner_ref.as_ref());
            let recorded = agent.status.as_ref().and_then(|s| s.provisioner.clone());
            for id in ids {
                assert_eq!(
                    stored.names_provisioner(id),
                    names.to_string() == id,
                    "{id}"
                );
                assert_eq!(
                    stored.records_provisioner(id),
                    recorded.as_deref() == Some(id),
                    "{id}"
                );
            }
        }
        // A malformed object names and records none.
        let malformed = StoredAgent::new(watched(serde_json::json!({
            "apiVersion": "agentlattice.io/v1alpha1", "kind": "LatticeAgent",
            "metadata": {"name": "bad", "namespace": "ns", "uid": "u4"},
            "spec": {"capabilities": "not a list"},
        })));
        assert!(ids.iter().all(|id| !malformed.names_provisioner(id)));
        assert!(ids.iter().all(|id| !malformed.records_provisioner(id)));
    }

    #[test]
    fn the_provisioner_ids_are_shared_not_allocated_per_agent() {
        let a = StoredAgent::new(watched(ready()));
        let b = StoredAgent::new(watched(ready()));
        let (Some(x), Some(y)) = (&a.provisioners.names, &b.provisioners.names) else {
            panic!("both name the default provisioner");
        };
        assert!(Arc::ptr_eq(x, y));
    }

    /// What keeps a stored agent at 448 bytes (jemalloc's size class of the `Arc` allocation the
    /// reflector store makes for it: the object and two counters): a field that takes it past
    /// that costs 64 bytes more per agent.
    #[test]
    fn a_stored_agent_stays_in_its_size_class() {
        let arc_allocation = std::mem::size_of::<StoredAgent>() + 2 * std::mem::size_of::<usize>();
        assert!(arc_allocation <= 448, "{arc_allocation} bytes");
    }

    #[test]
    fn it_deserializes_as_the_watch_parses() {
        let stored: StoredAgent = serde_json::from_value(ready()).expect("deserializes");
        assert_eq!(stored.agent(), watched(ready()).0.ok());
    }

    #[test]
    fn a_ready_agent_packs_small() {
        let stored = StoredAgent::new(watched(ready()));
        let json = serde_json::to_vec(&stored.agent()).expect("json").len();
        // The sample packs against itself; the bound holds what the dictionary is for.
        assert!(
            stored.packed_len() * 4 < json,
            "{} bytes from {json}",
            stored.packed_len()
        );
    }
}
