//! The operations the client performs, with stable names for logs and metric labels.

use std::fmt;

/// One call of Alter's managed-agents API (see `docs/alter.md`).
///
/// [`Operation::as_str`] is stable snake_case, fit for a metric label.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum Operation {
    /// `POST /sdk/agents`
    CreateAgent,
    /// `GET /sdk/agents` (also the lookup by name)
    ListAgents,
    /// `GET /sdk/agents/{id}`
    GetAgent,
    /// `PATCH /sdk/agents/{id}` with display name, metadata, scopes or policy
    UpdateAgent,
    /// `PATCH /sdk/agents/{id}` `{"status": "inactive"}`
    SuspendAgent,
    /// `PATCH /sdk/agents/{id}` `{"status": "active"}`
    ResumeAgent,
    /// `DELETE /sdk/agents/{id}`
    DeleteAgent,
    /// `POST /sdk/agents/{id}/keys`
    MintKey,
    /// `GET /sdk/agents/{id}/keys`
    ListKeys,
    /// `PATCH /sdk/agents/{id}/keys/{key_id}/deprecate`
    DeprecateKey,
    /// `PATCH /sdk/agents/{id}/keys/{key_id}/undeprecate`
    UndeprecateKey,
    /// `DELETE /sdk/agents/{id}/keys/{key_id}`
    RevokeKey,
    /// `GET /sdk/agents/me` (agent key)
    Me,
    /// `POST /sdk/identity/resolve`
    ResolveIdentity,
    /// `GET /sdk/agents/{id}/audit` (emulator-defined)
    AgentAudit,
    /// `GET /sdk/agent-registry` (emulator-defined)
    ListRegistry,
    /// `GET /sdk/agent-registry/{actor_id}` (emulator-defined)
    GetRegistryEntry,
}

impl Operation {
    /// Every operation.
    pub const ALL: [Operation; 17] = [
        Operation::CreateAgent,
        Operation::ListAgents,
        Operation::GetAgent,
        Operation::UpdateAgent,
        Operation::SuspendAgent,
        Operation::ResumeAgent,
        Operation::DeleteAgent,
        Operation::MintKey,
        Operation::ListKeys,
        Operation::DeprecateKey,
        Operation::UndeprecateKey,
        Operation::RevokeKey,
        Operation::Me,
        Operation::ResolveIdentity,
        Operation::AgentAudit,
        Operation::ListRegistry,
        Operation::GetRegistryEntry,
    ];

    /// The stable snake_case name (`create_agent`, `revoke_key`, …).
    pub const fn as_str(self) -> &'static str {
        match self {
            Operation::CreateAgent => "create_agent",
            Operation::ListAgents => "list_agents",
            Operation::GetAgent => "get_agent",
            Operation::UpdateAgent => "update_agent",
            Operation::SuspendAgent => "suspend_agent",
            Operation::ResumeAgent => "resume_agent",
            Operation::DeleteAgent => "delete_agent",
            Operation::MintKey => "mint_key",
            Operation::ListKeys => "list_keys",
            Operation::DeprecateKey => "deprecate_key",
            Operation::UndeprecateKey => "undeprecate_key",
            Operation::RevokeKey => "revoke_key",
            Operation::Me => "me",
            Operation::ResolveIdentity => "resolve_identity",
            Operation::AgentAudit => "agent_audit",
            Operation::ListRegistry => "list_registry",
            Operation::GetRegistryEntry => "get_registry_entry",
        }
    }

    /// Whether repeating the operation after an ambiguous failure (a 5xx, a timeout or a transport
    /// error once the request was sent) is safe.
    ///
    /// `create_agent` is idempotent only with an `Idempotency-Key`, and `update_agent` only without
    /// new scopes (a scope update carries `expected_version`: a retry after a committed first
    /// attempt would be refused as a stale write); the client decides those per call, and this
    /// static answer says `false`. `mint_key` is never idempotent (the SDK: "v1 ships without
    /// idempotency on mint"). `resolve_identity` is a read sent as a POST.
    pub const fn is_idempotent(self) -> bool {
        !matches!(
            self,
            Operation::CreateAgent | Operation::MintKey | Operation::UpdateAgent
        )
    }
}

impl fmt::Display for Operation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_snake_case() {
        let mut names: Vec<_> = Operation::ALL.iter().map(|o| o.as_str()).collect();
        for n in &names {
            assert!(
                n.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'),
                "{n}"
            );
        }
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), Operation::ALL.len());
    }

    #[test]
    fn only_create_mint_and_update_are_decided_per_call() {
        let decided: Vec<_> = Operation::ALL
            .into_iter()
            .filter(|o| !o.is_idempotent())
            .collect();
        assert_eq!(
            decided,
            [
                Operation::CreateAgent,
                Operation::UpdateAgent,
                Operation::MintKey
            ]
        );
    }
}
