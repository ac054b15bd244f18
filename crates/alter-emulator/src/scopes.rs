//! Permission scopes of app keys, with the requirement of each route as the `alter agents` CLI
//! reference states it (reads `dashboard_agents:read`; create, update, mint, deprecate,
//! undeprecate `dashboard_agents:write`; revoke and revoke-key `dashboard_agents:admin`; the audit
//! feed `dashboard_audit:read`). `admin` implies `write` implies `read` (Alter's CRUD hierarchy).

/// Read agents, keys, the registry.
pub const AGENTS_READ: &str = "dashboard_agents:read";
/// Create, update, suspend, resume agents; mint, deprecate, undeprecate keys.
pub const AGENTS_WRITE: &str = "dashboard_agents:write";
/// Revoke agents and keys.
pub const AGENTS_ADMIN: &str = "dashboard_agents:admin";
/// Read an agent's audit feed.
pub const AUDIT_READ: &str = "dashboard_audit:read";

/// Every scope the emulator knows (what an app key gets when none are named).
pub const ALL_SCOPES: [&str; 4] = [AGENTS_READ, AGENTS_WRITE, AGENTS_ADMIN, AUDIT_READ];

fn rank(scope: &str) -> Option<(&'static str, u8)> {
    match scope {
        AGENTS_READ => Some(("dashboard_agents", 1)),
        AGENTS_WRITE => Some(("dashboard_agents", 2)),
        AGENTS_ADMIN => Some(("dashboard_agents", 3)),
        AUDIT_READ => Some(("dashboard_audit", 1)),
        _ => None,
    }
}

/// Whether `scope` is one the emulator knows.
pub fn is_known(scope: &str) -> bool {
    rank(scope).is_some()
}

/// Whether holding `held` grants `required`.
pub fn satisfies<S: AsRef<str>>(held: &[S], required: &str) -> bool {
    let Some((resource, need)) = rank(required) else {
        return false;
    };
    held.iter()
        .filter_map(|h| rank(h.as_ref()))
        .any(|(r, level)| r == resource && level >= need)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hierarchy() {
        assert!(satisfies(&[AGENTS_ADMIN], AGENTS_READ));
        assert!(satisfies(&[AGENTS_WRITE], AGENTS_WRITE));
        assert!(!satisfies(&[AGENTS_WRITE], AGENTS_ADMIN));
        assert!(!satisfies(&[AGENTS_ADMIN], AUDIT_READ));
        assert!(!satisfies(&[AUDIT_READ], AGENTS_READ));
        assert!(!satisfies::<&str>(&[], AGENTS_READ));
        assert!(!is_known("agents:read"));
    }
}
