//! Shared by the `chart_*` tests: runs Helm (Helm 4's own Go code, through helm-python-sdk) with
//! `tests/chart/helm_driver.py` and parses what it renders into JSON values.
//!
//! The Python comes from `$LATTICE_PYTHON`, else `<workspace>/.venv/bin/python`; when neither
//! exists the test fails and says to run `scripts/setup-python` (it never skips).

#![allow(dead_code)] // each test binary uses its own part of this module

use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use serde_json::{Value, json};

/// The release name the tests install as (so the full name is `lattice-operator`).
pub const RELEASE: &str = "lattice-operator";
/// The release namespace the tests install into.
pub const NAMESPACE: &str = "lattice-system";

/// The workspace root.
pub fn workspace() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The chart directory.
pub fn chart_dir() -> PathBuf {
    workspace().join("charts").join("lattice-operator")
}

fn python() -> PathBuf {
    if let Some(p) = std::env::var_os("LATTICE_PYTHON").filter(|p| !p.is_empty()) {
        return PathBuf::from(p);
    }
    let venv = workspace().join(".venv").join("bin").join("python");
    assert!(
        venv.exists(),
        "the chart tests need Python with helm-python-sdk: LATTICE_PYTHON is not set and {} \
         does not exist. Run scripts/setup-python (scripts/test does it for you).",
        venv.display()
    );
    venv
}

/// Runs the requests through the Helm driver; one response per request, each `{"ok": …}` or
/// `{"error": {"kind", "message"}}`.
pub fn helm(requests: &[Value]) -> Vec<Value> {
    let python = python();
    let script = workspace()
        .join("tests")
        .join("chart")
        .join("helm_driver.py");
    let mut child = Command::new(&python)
        .arg(&script)
        .arg(chart_dir())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| {
            panic!(
                "could not run {} ({e}); run scripts/setup-python or set LATTICE_PYTHON",
                python.display()
            )
        });
    let input = serde_json::to_vec(requests).expect("requests serialise");
    child
        .stdin
        .take()
        .expect("stdin is piped")
        .write_all(&input)
        .expect("write requests to the Helm driver");
    let output = child.wait_with_output().expect("the Helm driver runs");
    assert!(
        output.status.success(),
        "the Helm driver failed ({}):\n{}\nIf helm-python-sdk is missing, run scripts/setup-python.",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    let responses: Vec<Value> =
        serde_json::from_slice(&output.stdout).expect("the Helm driver prints JSON");
    assert_eq!(responses.len(), requests.len(), "one response per request");
    responses
}

/// A `render` request (install into [`NAMESPACE`] as [`RELEASE`]).
pub fn render_request(values: &Value) -> Value {
    json!({"op": "render", "values": values, "name": RELEASE, "namespace": NAMESPACE})
}

/// One rendered object.
#[derive(Debug, Clone)]
pub struct Object {
    /// The template it came from.
    pub template: String,
    /// The object.
    pub value: Value,
}

impl Object {
    /// `kind`.
    pub fn kind(&self) -> &str {
        self.value["kind"].as_str().unwrap_or_default()
    }
    /// `metadata.name`.
    pub fn name(&self) -> &str {
        self.value["metadata"]["name"].as_str().unwrap_or_default()
    }
    /// `metadata.namespace` (empty for cluster-scoped objects).
    pub fn namespace(&self) -> &str {
        self.value["metadata"]["namespace"]
            .as_str()
            .unwrap_or_default()
    }
}

/// What a render produced.
#[derive(Debug, Clone)]
pub struct Rendered {
    /// Template path → rendered text (as Helm prints it with `helm template`).
    pub files: BTreeMap<String, String>,
    /// Every object, in template order.
    pub objects: Vec<Object>,
}

impl Rendered {
    /// Parses a render response.
    pub fn from_response(response: &Value) -> Rendered {
        let Some(ok) = response.get("ok") else {
            panic!("render failed: {}", error_message(response));
        };
        let files: BTreeMap<String, String> =
            serde_json::from_value(ok.clone()).expect("template path → text");
        let mut objects = Vec::new();
        for (template, text) in &files {
            if !template.ends_with(".yaml") {
                continue;
            }
            let docs = lattice_operator::yaml::documents(text)
                .unwrap_or_else(|e| panic!("{template} is not valid YAML: {e}\n{text}"));
            for value in docs {
                objects.push(Object {
                    template: template.clone(),
                    value,
                });
            }
        }
        Rendered { files, objects }
    }

    /// `(kind, namespace, name)` of every object, sorted.
    pub fn inventory(&self) -> Vec<(String, String, String)> {
        let mut all: Vec<_> = self
            .objects
            .iter()
            .map(|o| (o.kind().into(), o.namespace().into(), o.name().into()))
            .collect();
        all.sort();
        all
    }

    /// Every object of `kind`.
    pub fn all(&self, kind: &str) -> Vec<&Object> {
        self.objects.iter().filter(|o| o.kind() == kind).collect()
    }

    /// The one object of `kind` named `name`.
    pub fn get(&self, kind: &str, name: &str) -> &Value {
        let found: Vec<_> = self
            .objects
            .iter()
            .filter(|o| o.kind() == kind && o.name() == name)
            .collect();
        assert_eq!(
            found.len(),
            1,
            "expected one {kind} {name}; have {:?}",
            self.inventory()
        );
        &found[0].value
    }

    /// The operator Deployment.
    pub fn deployment(&self) -> &Value {
        let all = self.all("Deployment");
        assert_eq!(all.len(), 1, "one Deployment: {:?}", self.inventory());
        &all[0].value
    }

    /// The operator container.
    pub fn container(&self) -> &Value {
        let containers = self.deployment()["spec"]["template"]["spec"]["containers"]
            .as_array()
            .expect("containers");
        containers
            .iter()
            .find(|c| c["name"] == "operator")
            .expect("a container named operator")
    }

    /// The operator's arguments (`run` and its flags).
    pub fn args(&self) -> Vec<String> {
        self.container()["args"]
            .as_array()
            .expect("args")
            .iter()
            .map(|a| a.as_str().expect("string args").to_owned())
            .collect()
    }

    /// The rendered NOTES.txt.
    pub fn notes(&self) -> &str {
        self.files
            .iter()
            .find(|(k, _)| k.ends_with("NOTES.txt"))
            .map(|(_, v)| v.as_str())
            .expect("NOTES.txt is rendered")
    }
}

/// Renders with `values` (merged over the chart's defaults), as [`RELEASE`] in [`NAMESPACE`].
pub fn render(values: Value) -> Rendered {
    render_many(&[values]).remove(0)
}

/// Renders several value sets with one run of the driver.
pub fn render_many(values: &[Value]) -> Vec<Rendered> {
    let requests: Vec<Value> = values.iter().map(render_request).collect();
    helm(&requests)
        .iter()
        .map(Rendered::from_response)
        .collect()
}

/// The message of an error response (panics on success).
pub fn error_message(response: &Value) -> String {
    match response.get("error") {
        Some(e) => format!(
            "{}: {}",
            e["kind"].as_str().unwrap_or_default(),
            e["message"].as_str().unwrap_or_default()
        ),
        None => panic!("expected an error, got success"),
    }
}

/// A value set that changes every default the chart has (tests/chart/values-non-default.yaml,
/// written as a user would write a values file).
pub fn non_default_values() -> Value {
    let path = workspace()
        .join("tests")
        .join("chart")
        .join("values-non-default.yaml");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    lattice_operator::yaml::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}
