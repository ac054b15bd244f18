//! Which LatticeAgents claim which Secret: an index by (namespace, Secret name), kept by the
//! watch, so that "does an older resource claim my Secret?" (design §3.1 step 3) costs a lookup
//! instead of a scan of every cached resource.
//!
//! It answers exactly as [`crate::plan::older_claimant`] over the same objects: a resource being
//! deleted, or one that does not parse, claims nothing; ties in creation time go to the smaller
//! name. It is fed the same watch events as the reflector store (a re-list replaces the whole
//! index at `InitDone`, as the store does), so the two never disagree for long.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::Resource;
use kube::core::error_boundary::DeserializeGuard;
use kube::runtime::watcher;

use crate::crd::LatticeAgent;
use crate::plan::validate::effective_secret_name;

/// The order of claimants: creation time, then name (the older, then the smaller, wins).
type Rank = (Option<Time>, Box<str>);

/// What one resource claims: the Secret, as `namespace/name`, and its rank.
struct Claim {
    secret: Arc<str>,
    rank: Rank,
}

/// The index, kept small (it holds an entry per resource; design §2.1): each uid and each Secret
/// key is allocated once and shared by both maps, and a resource's rank is kept once, in the
/// list of its Secret (lists hold one claimant but for a conflict).
#[derive(Debug, Default)]
struct Claims {
    /// Per uid, the Secret it claims.
    by_uid: HashMap<Arc<str>, Arc<str>>,
    /// Per Secret: the claimants, `(rank, uid)`.
    by_secret: HashMap<Arc<str>, Vec<(Rank, Arc<str>)>>,
}

impl Claims {
    fn remove(&mut self, uid: &str) {
        let Some(secret) = self.by_uid.remove(uid) else {
            return;
        };
        if let Some(list) = self.by_secret.get_mut(&secret) {
            list.retain(|(_, u)| &**u != uid);
            if list.is_empty() {
                self.by_secret.remove(&secret);
            }
        }
    }

    fn apply(&mut self, agent: &LatticeAgent) {
        let Some(uid) = agent.metadata.uid.as_deref() else {
            return;
        };
        let claim = claim_of(agent);
        let current = self.by_uid.get(uid).and_then(|secret| {
            let list = self.by_secret.get(secret)?;
            let (rank, _) = list.iter().find(|(_, u)| &**u == uid)?;
            Some((secret, rank))
        });
        if let (Some((secret, rank)), Some(new)) = (current, &claim)
            && *secret == new.secret
            && *rank == new.rank
        {
            return;
        }
        self.remove(uid);
        if let Some(Claim { secret, rank }) = claim {
            // Share the key already held for this Secret, if any.
            let secret = match self.by_secret.get_key_value(&secret) {
                Some((k, _)) => Arc::clone(k),
                None => secret,
            };
            let uid: Arc<str> = Arc::from(uid);
            let list = self.by_secret.entry(Arc::clone(&secret)).or_default();
            list.push((rank, Arc::clone(&uid)));
            list.shrink_to_fit();
            self.by_uid.insert(uid, secret);
        }
    }
}

/// What `agent` claims: nothing while it is being deleted.
fn claim_of(agent: &LatticeAgent) -> Option<Claim> {
    if agent.metadata.deletion_timestamp.is_some() {
        return None;
    }
    let namespace = agent.metadata.namespace.as_deref().unwrap_or_default();
    Some(Claim {
        secret: Arc::from(format!("{namespace}/{}", effective_secret_name(agent))),
        rank: (
            agent.metadata.creation_timestamp.clone(),
            Box::from(agent.metadata.name.as_deref().unwrap_or_default()),
        ),
    })
}

/// The index, shared by the watch (which writes it) and the reconciles (which read it).
#[derive(Clone, Debug, Default)]
pub struct ClaimIndex {
    current: Arc<RwLock<Claims>>,
    /// The objects of a re-list in progress (between `Init` and `InitDone`).
    relist: Arc<RwLock<Option<Claims>>>,
}

impl ClaimIndex {
    /// Applies one watch event of the LatticeAgent watch (an object that does not parse claims
    /// nothing).
    pub fn apply_event(&self, event: &watcher::Event<DeserializeGuard<LatticeAgent>>) {
        let uid = |g: &DeserializeGuard<LatticeAgent>| g.meta().uid.clone().unwrap_or_default();
        match event {
            watcher::Event::Apply(g) => self.write(|c| match &g.0 {
                Ok(a) => c.apply(a),
                Err(_) => c.remove(&uid(g)),
            }),
            watcher::Event::Delete(g) => self.write(|c| c.remove(&uid(g))),
            watcher::Event::Init => {
                if let Ok(mut r) = self.relist.write() {
                    *r = Some(Claims::default());
                }
            }
            watcher::Event::InitApply(g) => {
                if let (Ok(mut r), Ok(a)) = (self.relist.write(), &g.0) {
                    r.get_or_insert_default().apply(a);
                }
            }
            watcher::Event::InitDone => {
                let fresh = self.relist.write().ok().and_then(|mut r| r.take());
                if let (Some(fresh), Ok(mut c)) = (fresh, self.current.write()) {
                    *c = fresh;
                }
            }
        }
    }

    fn write(&self, f: impl FnOnce(&mut Claims)) {
        if let Ok(mut c) = self.current.write() {
            f(&mut c);
        }
    }

    /// The names of the resources claiming the Secret `key` (`namespace/name`).
    pub fn claimants(&self, key: &str) -> Vec<String> {
        let Ok(claims) = self.current.read() else {
            return Vec::new();
        };
        claims
            .by_secret
            .get(key)
            .into_iter()
            .flatten()
            .map(|(rank, _)| rank.1.to_string())
            .collect()
    }

    /// The name of the oldest other resource claiming `me`'s Secret, if it is older than `me`
    /// (see [`crate::plan::older_claimant`]).
    pub fn older_claimant(&self, me: &LatticeAgent) -> Option<String> {
        let mine = claim_of(me)?;
        let uid = me.metadata.uid.as_deref().unwrap_or_default();
        let claims = self.current.read().ok()?;
        claims
            .by_secret
            .get(&mine.secret)?
            .iter()
            .filter(|(rank, u)| &**u != uid && *rank < mine.rank)
            .min_by(|a, b| a.0.cmp(&b.0))
            .map(|(rank, _)| rank.1.to_string())
    }
}

#[cfg(test)]
mod tests {
    use jiff::Timestamp;

    use super::*;
    use crate::crd::LatticeAgentSpec;
    use crate::plan::older_claimant;

    fn agent(ns: &str, name: &str, uid: &str, secret: Option<&str>, created: i64) -> LatticeAgent {
        let mut a = LatticeAgent::new(
            name,
            LatticeAgentSpec {
                secret_name: secret.map(str::to_owned),
                ..Default::default()
            },
        );
        a.metadata.namespace = Some(ns.into());
        a.metadata.uid = Some(uid.into());
        a.metadata.creation_timestamp =
            Some(Time(Timestamp::from_second(created).expect("timestamp")));
        a
    }

    fn g(a: &LatticeAgent) -> DeserializeGuard<LatticeAgent> {
        DeserializeGuard(Ok(a.clone()))
    }

    fn apply(index: &ClaimIndex, a: &LatticeAgent) {
        index.apply_event(&watcher::Event::Apply(g(a)));
    }

    #[test]
    fn answers_as_the_scan_does() {
        let index = ClaimIndex::default();
        let mut all = vec![
            agent("ns", "b", "u1", Some("shared"), 10),
            agent("ns", "a", "u2", Some("shared"), 10),
            agent("ns", "c", "u3", Some("shared"), 5),
            agent("other", "d", "u4", Some("shared"), 1),
            agent("ns", "shared", "u5", None, 20), // "shared-agent-key": another Secret
            agent("ns", "e", "u6", Some("shared-agent-key"), 30),
        ];
        let mut deleting = agent("ns", "z", "u7", Some("shared"), 0);
        deleting.metadata.deletion_timestamp = Some(Time(Timestamp::UNIX_EPOCH));
        all.push(deleting);
        for a in &all {
            apply(&index, a);
        }
        let check = |all: &[LatticeAgent]| {
            for me in all {
                assert_eq!(
                    index.older_claimant(me),
                    older_claimant(me, all.iter()),
                    "{:?}",
                    me.metadata.name
                );
            }
        };
        check(&all);
        assert_eq!(index.older_claimant(&all[0]), Some("c".into()));
        assert_eq!(index.older_claimant(&all[5]), Some("shared".into()));
        // c renames its Secret, then a is deleted: the answers follow.
        all[2].spec.secret_name = Some("mine".into());
        apply(&index, &all[2]);
        check(&all);
        assert_eq!(index.older_claimant(&all[0]), Some("a".into()));
        let gone = all.remove(1);
        index.apply_event(&watcher::Event::Delete(g(&gone)));
        check(&all);
        assert_eq!(index.older_claimant(&all[0]), None);
        // A re-list replaces everything at InitDone.
        index.apply_event(&watcher::Event::Init);
        let fresh = agent("ns", "f", "u8", Some("shared"), 1);
        index.apply_event(&watcher::Event::InitApply(g(&fresh)));
        assert_eq!(index.older_claimant(&all[0]), None, "not before InitDone");
        index.apply_event(&watcher::Event::InitDone);
        assert_eq!(index.older_claimant(&all[0]), Some("f".into()));
        assert_eq!(index.older_claimant(&all[1]), None, "c was not re-listed");
        // An object that stops parsing claims nothing.
        let mut meta = fresh.metadata.clone();
        meta.uid = Some("u8".into());
        index.apply_event(&watcher::Event::Apply(DeserializeGuard(Err(
            kube::core::error_boundary::InvalidObject {
                error: "bad".into(),
                metadata: meta,
            },
        ))));
        assert_eq!(index.older_claimant(&all[0]), None);
    }
}
