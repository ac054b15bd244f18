//! Response bodies of the provisioning and agent APIs that are not plain [`Agent`]s or [`Key`]s.
//! The emulator's own types, written from the contract (never shared with the client crate).

use serde::Serialize;

use crate::model::{Agent, Key};

/// 201 (or 200 on an idempotent replay, then `api_key: null`) of `POST /api/agents/register`.
#[derive(Clone, Debug, Serialize)]
pub(crate) struct RegisterOut {
    #[serde(flatten)]
    pub agent: Agent,
    pub api_key: Option<String>,
    pub key_id: String,
    pub key_prefix: String,
    #[serde(skip)]
    pub replayed: bool,
}

/// 201 of `POST /api/agents/{id}/keys`.
#[derive(Clone, Debug, Serialize)]
pub(crate) struct MintOut {
    #[serde(flatten)]
    pub key: Key,
    pub api_key: String,
}

/// 200 of `GET /api/agents`.
#[derive(Clone, Debug, Serialize)]
pub(crate) struct AgentList {
    pub items: Vec<Agent>,
    pub total: usize,
    pub limit: usize,
    pub offset: usize,
    pub has_more: bool,
}

/// `{items: [...]}`.
#[derive(Clone, Debug, Serialize)]
pub(crate) struct Items<T> {
    pub items: Vec<T>,
}

#[derive(Clone, Debug, Serialize)]
pub(crate) struct Delegations {
    pub as_parent: Vec<serde_json::Value>,
    pub as_child: Vec<serde_json::Value>,
}

/// 200 of `GET /api/v1/whoami`.
#[derive(Clone, Debug, Serialize)]
pub(crate) struct Whoami {
    pub config_id: String,
    pub name: String,
    pub org_id: String,
    pub is_active: bool,
    pub cb_state: &'static str,
    pub calibration: serde_json::Map<String, serde_json::Value>,
    pub policies: Vec<serde_json::Value>,
    pub delegations: Delegations,
    pub capabilities: Vec<String>,
    pub key_id: String,
}

/// 200 of `POST /api/v1/actions`.
#[derive(Clone, Debug, Serialize)]
pub(crate) struct ActionOut {
    pub status: &'static str,
    pub audit_event_id: String,
    pub message: &'static str,
    pub denial_reason: Option<&'static str>,
    pub policy_name: Option<String>,
    pub conditions_evaluated: Vec<serde_json::Value>,
}
