//! Response bodies that are not plain agents or keys. The emulator's own types, written from
//! `alter-sdk==0.29.0` (never shared with the client crate).

use serde::Serialize;

use crate::model::{Agent, Key};

/// 201 of `POST /sdk/agents` (200 on an idempotent replay, then `api_key: null`).
#[derive(Debug, Serialize)]
pub(crate) struct CreateOut {
    #[serde(flatten)]
    pub agent: Agent,
    pub api_key: Option<String>,
    pub key_id: String,
}

/// 201 of `POST /sdk/agents/{id}/keys`.
#[derive(Debug, Serialize)]
pub(crate) struct MintOut {
    #[serde(flatten)]
    pub key: Key,
    pub api_key: String,
}

/// A page: `{items, total, limit, offset, has_more}`.
#[derive(Debug, Serialize)]
pub(crate) struct Page<T> {
    pub items: Vec<T>,
    pub total: usize,
    pub limit: usize,
    pub offset: usize,
    pub has_more: bool,
}

impl<T> Page<T> {
    /// Cuts `all` to one page.
    pub fn of(all: impl IntoIterator<Item = T>, limit: usize, offset: usize) -> Self {
        let mut total = 0;
        let mut items = Vec::new();
        for item in all {
            if total >= offset && items.len() < limit {
                items.push(item);
            }
            total += 1;
        }
        Page {
            has_more: offset.saturating_add(items.len()) < total,
            items,
            total,
            limit,
            offset,
        }
    }
}

/// `{items: [...]}`.
#[derive(Debug, Serialize)]
pub(crate) struct Items<T> {
    pub items: Vec<T>,
}

/// 200 of `POST /sdk/identity/resolve` (headless: no user).
#[derive(Debug, Serialize)]
pub(crate) struct IdentityOut {
    pub app_id: String,
    pub app_user_id: Option<String>,
    pub external_subject_id: Option<String>,
    pub idp_id: Option<String>,
    pub user_status: Option<String>,
    pub group_ids: Vec<String>,
    pub agent_id: Option<String>,
    pub actor_id: Option<String>,
    pub trace: Option<serde_json::Value>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages() {
        let p = Page::of(0..5, 2, 1);
        assert_eq!((p.items, p.total, p.has_more), (vec![1, 2], 5, true));
        let p = Page::of(0..5, 10, 4);
        assert_eq!((p.items, p.has_more), (vec![4], false));
        let p = Page::of(0..5, 3, 9);
        assert!(p.items.is_empty() && !p.has_more);
    }
}
