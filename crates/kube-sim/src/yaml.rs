//! YAML in and out: request bodies sent as `application/yaml`, `Accept: application/yaml`
//! answers, and the kubeconfig files kube-sim writes.
//!
//! Reading keeps the rules kube-sim always had (those of `serde_yaml`, which this replaces): YAML
//! 1.2 booleans (`true`/`false` only), integers with a leading zero or an underscore stay strings,
//! and a repeated key keeps its last value. The real API server reads YAML with go-yaml v2's YAML
//! 1.1 rules (`yes`, `on`, `y` are booleans, `0755` is octal), so a body such as `name: y` that
//! kube-sim accepts is refused upstream; quote such values. Writing quotes every string a YAML 1.1
//! reader (kubectl, client-go) would otherwise take for a boolean, number or null, so what kube-sim
//! writes reads back unchanged on either side. Parse errors carry a position but never a snippet
//! of the input (a body may hold a Secret).

use serde_json::Value;

/// Parse one YAML document into JSON.
pub fn from_str(text: &str) -> Result<Value, String> {
    let mut options = serde_saphyr::options::Options::default();
    options.strict_booleans = true;
    options.leading_zero_numbers_as_strings = true;
    options.underscored_numbers_as_strings = true;
    options.duplicate_keys = serde_saphyr::options::DuplicateKeyPolicy::LastWins;
    options.with_snippet = false;
    serde_saphyr::from_str_with_options(text, options).map_err(|e| e.to_string())
}

/// Render `v` as a YAML document.
pub fn to_string(v: &Value) -> String {
    // Serialising a JSON tree cannot fail (string keys, finite numbers); an empty document is
    // the safe answer should it ever do.
    serde_saphyr::to_string(v).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn reads_yaml_1_2_scalars_as_before() {
        let v = from_str(
            "a: yes\nb: True\nc: '0755'\nd: 0755\ne: 1.5\nf: ~\ng: y\nh: 9007199254740993\ni: |\n  two\n  lines\nj: 1_000\n",
        )
        .unwrap();
        assert_eq!(
            v,
            json!({"a": "yes", "b": true, "c": "0755", "d": "0755", "e": 1.5, "f": null, "g": "y",
                   "h": 9007199254740993u64, "i": "two\nlines\n", "j": "1_000"})
        );
        // key order is kept (serde_json's preserve_order)
        let keys: Vec<&String> = v.as_object().unwrap().keys().collect();
        assert_eq!(keys, ["a", "b", "c", "d", "e", "f", "g", "h", "i", "j"]);
        assert_eq!(from_str("a: 1\na: 2\n").unwrap(), json!({"a": 2}));
    }

    #[test]
    fn errors_have_a_position_and_no_input() {
        let e = from_str("data:\n  token: c2VjcmV0\n  - x\n").unwrap_err();
        assert!(e.contains("line 3"), "{e}");
        assert!(!e.contains("c2VjcmV0"), "{e}");
        let e = from_str("data: [c2VjcmV0\n").unwrap_err();
        assert!(e.contains("line 1, column 7"), "{e}");
        assert!(!e.contains("c2VjcmV0"), "{e}");
    }

    #[test]
    fn what_is_written_reads_back_unchanged() {
        let tricky = json!({
            "strings": ["yes", "no", "on", "off", "y", "n", "true", "null", "~", "", "0755",
                        "1e3", "0x1F", "1_000", "12:30", ".5", "-", "a: b", "#x", " lead",
                        "multi\nline", "ünïcödé"],
            "numbers": [0, -1, 1.5, 18446744073709551615u64],
            "bools": [true, false],
            "null": null,
            "nested": {"list": [{"a": 1}], "empty": {}, "none": []}
        });
        let text = to_string(&tricky);
        assert_eq!(from_str(&text).unwrap(), tricky, "{text}");
        // quoted for YAML 1.1 readers (kubectl reading a kubeconfig) too
        for s in ["yes", "no", "on", "off", "y", "n", "0755", "1_000"] {
            assert!(
                text.contains(&format!("\"{s}\"")) || text.contains(&format!("'{s}'")),
                "{s} unquoted in {text}"
            );
        }
    }
}
