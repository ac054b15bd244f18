//! YAML in and out, on `serde-saphyr` (what kube-client itself uses; `serde_yaml` is no longer
//! maintained): the generated CRD (`lattice-operator crd`) and the manifests `dev` applies.
//!
//! Reading keeps the YAML 1.2 rules the project's manifests were written for (and `serde_yaml`
//! applied): only `true`/`false` are booleans, numbers with a leading zero or an underscore stay
//! strings, a repeated key keeps its last value. Parse errors carry a position and never a snippet
//! of the input (a manifest may hold a Secret).

use serde::Serialize;
use serde::de::DeserializeOwned;

/// A YAML error (position and cause; never the input).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct YamlError(String);

fn options() -> serde_saphyr::options::Options {
    let mut options = serde_saphyr::options::Options::default();
    options.strict_booleans = true;
    options.leading_zero_numbers_as_strings = true;
    options.underscored_numbers_as_strings = true;
    options.duplicate_keys = serde_saphyr::options::DuplicateKeyPolicy::LastWins;
    options.with_snippet = false;
    options
}

/// One YAML document, parsed into `T`.
pub fn from_str<T: DeserializeOwned>(text: &str) -> Result<T, YamlError> {
    serde_saphyr::from_str_with_options(text, options()).map_err(|e| YamlError(e.to_string()))
}

/// Every document of a multi-document YAML text, as JSON values; empty documents are skipped.
pub fn documents(text: &str) -> Result<Vec<serde_json::Value>, YamlError> {
    let docs: Vec<serde_json::Value> =
        serde_saphyr::from_str_multiple_with_options(text, options())
            .map_err(|e| YamlError(e.to_string()))?;
    Ok(docs.into_iter().filter(|d| !d.is_null()).collect())
}

/// `value` as a YAML document.
pub fn to_string<T: Serialize>(value: &T) -> Result<String, YamlError> {
    serde_saphyr::to_string(value).map_err(|e| YamlError(e.to_string()))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn manifests_read_with_yaml_1_2_rules() {
        let docs = documents("a: yes\nb: 0755\nc: true\n---\n---\nd: [1, x]\n").unwrap();
        assert_eq!(
            docs,
            [
                json!({"a": "yes", "b": "0755", "c": true}),
                json!({"d": [1, "x"]})
            ]
        );
    }

    #[test]
    fn errors_carry_no_input() {
        let e = from_str::<serde_json::Value>("data:\n  token: c2VjcmV0\n  - x\n").unwrap_err();
        assert!(!e.to_string().contains("c2VjcmV0"), "{e}");
    }

    #[test]
    fn what_is_written_reads_back() {
        let v = json!({"s": ["yes", "0755", "", "a: b"], "n": 1, "b": false, "o": {"x": null}});
        assert_eq!(
            from_str::<serde_json::Value>(&to_string(&v).unwrap()).unwrap(),
            v
        );
    }
}
