//! Authentication (bearer tokens → users), the audit log, and the RBAC switch.

use std::collections::HashMap;

use parking_lot::Mutex;

use crate::rbac::UserInfo;

/// The user the admin token authenticates as.
pub const ADMIN_USER: &str = "kube-sim-admin";

/// One audited request: who did what, and whether RBAC allowed it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditRecord {
    pub verb: String,
    pub group: String,
    pub resource: String,
    pub subresource: String,
    pub namespace: String,
    pub name: String,
    /// Non-resource requests: the path (`/version`, `/apis`...); empty otherwise.
    pub path: String,
    pub user: String,
    pub groups: Vec<String>,
    pub allowed: bool,
    /// The HTTP status code of the response (0 for watches still streaming when recorded).
    pub code: u16,
}

/// The token table.
#[derive(Debug, Default)]
pub struct Tokens {
    map: Mutex<HashMap<String, UserInfo>>,
}

impl Tokens {
    pub fn insert(&self, token: &str, user: UserInfo) {
        self.map.lock().insert(token.to_string(), user);
    }

    pub fn lookup(&self, token: &str) -> Option<UserInfo> {
        self.map.lock().get(token).cloned()
    }

    pub fn remove(&self, token: &str) {
        self.map.lock().remove(token);
    }
}

/// The admin identity: `system:masters` short-circuits RBAC.
pub fn admin_user() -> UserInfo {
    UserInfo {
        name: ADMIN_USER.to_string(),
        uid: String::new(),
        groups: vec!["system:masters".into(), "system:authenticated".into()],
    }
}

/// The in-process controllers' identity (GC, namespace and CRD controllers).
pub fn system_user() -> UserInfo {
    UserInfo {
        name: "system:kube-controller-manager".to_string(),
        uid: String::new(),
        groups: vec!["system:masters".into(), "system:authenticated".into()],
    }
}

/// Extract a bearer token from an `Authorization` header value.
pub fn bearer(header: Option<&str>) -> Option<&str> {
    let h = header?.trim();
    let (scheme, token) = h.split_once(' ')?;
    if scheme.eq_ignore_ascii_case("bearer") {
        let t = token.trim();
        (!t.is_empty()).then_some(t)
    } else {
        None
    }
}

/// The audit log.
#[derive(Debug, Default)]
pub struct Audit {
    records: Mutex<Vec<AuditRecord>>,
}

impl Audit {
    pub fn push(&self, r: AuditRecord) {
        let mut g = self.records.lock();
        if g.len() >= 200_000 {
            g.drain(0..100_000);
        }
        g.push(r);
    }

    pub fn snapshot(&self) -> Vec<AuditRecord> {
        self.records.lock().clone()
    }

    pub fn clear(&self) {
        self.records.lock().clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_tokens() {
        assert_eq!(bearer(Some("Bearer abc")), Some("abc"));
        assert_eq!(bearer(Some("bearer  abc ")), Some("abc"));
        assert_eq!(bearer(Some("Basic abc")), None);
        assert_eq!(bearer(None), None);
    }
}
