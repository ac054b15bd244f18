//! Tests for the name and ObjectMeta helpers (more in `schema/tests.rs`).

use super::*;

#[test]
fn dns_label_messages() {
    assert!(is_dns1123_label("abc-1").is_empty());
    assert_eq!(is_dns1123_label("a.b"), vec!["must not contain dots"]);
}
