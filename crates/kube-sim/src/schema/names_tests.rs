//! Tests for the name and ObjectMeta helpers (more ObjectMeta cases in `schema/tests.rs`).

use serde_json::json;

use super::*;

const SUBDOMAIN_MSG: &str = "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')";
const LABEL_MSG: &str = "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')";
const QNAME_MSG: &str = "name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')";

#[test]
fn dns_validators() {
    let long_label = "a".repeat(64);
    let long_sub = format!("{}.com", "a".repeat(250));
    type Check = fn(&str) -> Vec<String>;
    let cases: Vec<(Check, &str, Vec<String>)> = vec![
        (is_dns1123_subdomain, "example.com", vec![]),
        (is_dns1123_subdomain, "Example.com", vec![SUBDOMAIN_MSG.into()]),
        (is_dns1123_subdomain, &long_sub, vec!["must be no more than 253 characters".into()]),
        (is_dns1123_label, "my-name", vec![]),
        (is_dns1123_label, "a.b", vec!["must not contain dots".into()]),
        (is_dns1123_label, "-a", vec![LABEL_MSG.into()]),
        (is_dns1123_label, &long_label, vec!["must be no more than 63 characters".into()]),
        (is_dns1035_label, "v1alpha1", vec![]),
        (is_dns1035_label, "1v", vec!["a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an alphabetic character, and end with an alphanumeric character (e.g. 'my-name',  or 'abc-123', regex used for validation is '[a-z]([-a-z0-9]*[a-z0-9])?')".into()]),
        (is_qualified_name, "example.com/MyName", vec![]),
        (is_qualified_name, "app", vec![]),
        (is_qualified_name, "/x", vec!["prefix part must be non-empty".into()]),
        (is_qualified_name, "Bad_/x", vec![format!("prefix part {SUBDOMAIN_MSG}")]),
        (is_qualified_name, "x/", vec!["name part must be non-empty".into(), QNAME_MSG.into()]),
        (is_qualified_name, "-x", vec![QNAME_MSG.into()]),
        (is_qualified_name, &long_label, vec!["name part must be no more than 63 characters".into()]),
        (is_valid_label_value, "", vec![]),
        (is_valid_label_value, "v1.2_x", vec![]),
        (is_valid_label_value, &long_label, vec!["must be no more than 63 characters".into()]),
        (is_valid_path_segment_name, "a:b", vec![]),
        (is_valid_path_segment_name, "..", vec!["may not be '..'".into()]),
        (is_valid_path_segment_name, "a/b%c", vec!["may not contain '/'".into(), "may not contain '%'".into()]),
    ];
    for (f, input, want) in cases {
        assert_eq!(f(input), want, "{input}");
    }
}

#[test]
fn name_rules_and_generate_name() {
    // generateName prefixes may end with a dash (upstream masks the last two characters)
    assert!(NameRule::DnsSubdomain.check("web-", true).is_empty());
    assert!(!NameRule::DnsSubdomain.check("web-", false).is_empty());
    assert!(NameRule::PathSegment.check("..", true).is_empty());
    let errs = validate_object_meta(
        &json!({"name": "x", "generateName": "Bad-"}),
        NameRule::DnsSubdomain,
        None,
    );
    assert_eq!(
        errs[0].to_string(),
        format!("metadata.generateName: Invalid value: \"Bad-\": {SUBDOMAIN_MSG}")
    );
    // namespace checks when asked for
    let opts = ObjectMetaOptions {
        namespaced: Some(true),
        ..Default::default()
    };
    let errs = validate_object_meta_with(&json!({"name": "x"}), &opts, None);
    assert_eq!(errs[0].to_string(), "metadata.namespace: Required value");
    let opts = ObjectMetaOptions {
        namespaced: Some(false),
        ..Default::default()
    };
    let errs = validate_object_meta_with(&json!({"name": "x", "namespace": "ns"}), &opts, None);
    assert_eq!(
        errs[0].to_string(),
        "metadata.namespace: Forbidden: not allowed on this type"
    );
    let errs = validate_object_meta(
        &json!({"name": "x", "generation": -1}),
        NameRule::DnsSubdomain,
        None,
    );
    assert_eq!(
        errs[0].to_string(),
        "metadata.generation: Invalid value: -1: must be greater than or equal to 0"
    );
}

#[test]
fn timestamps_and_coercion() {
    assert_eq!(parse_rfc3339("1970-01-01T00:00:00Z"), Some(0));
    assert_eq!(
        parse_rfc3339("2024-02-29T12:00:00.123-01:30"),
        Some(1_709_208_000 + 5400)
    );
    assert_eq!(parse_rfc3339("2023-02-29T00:00:00Z"), None);
    assert_eq!(parse_rfc3339("2024-01-01 00:00:00Z"), None);
    assert_eq!(format_rfc3339(1_709_208_000), "2024-02-29T12:00:00Z");
    let mut meta = json!({"name": "x", "managedFields": [{"manager": "m", "operation": "Apply", "time": "2024-01-01T00:00:00+00:00", "x": 1}],
        "finalizers": [], "deletionGracePeriodSeconds": 0, "uid": ""});
    assert_eq!(
        coerce_object_meta(&mut meta, "metadata"),
        vec!["metadata.managedFields[0].x"]
    );
    assert_eq!(
        meta,
        json!({"name": "x", "managedFields": [{"manager": "m", "operation": "Apply", "time": "2024-01-01T00:00:00Z"}], "deletionGracePeriodSeconds": 0})
    );
}

#[test]
fn crd_schema_is_shareable() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<crate::schema::CrdSchema>();
}
