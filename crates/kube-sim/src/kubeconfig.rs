//! Kubeconfig files pointing at a simulator.

use base64::Engine;
use serde_json::json;

/// Render a kubeconfig (YAML) for `server`, trusting `ca_pem` (TLS) and authenticating with
/// `token` (none: anonymous, or admin when RBAC is off).
pub fn render(server: &str, ca_pem: Option<&str>, token: Option<&str>, namespace: &str) -> String {
    let mut cluster = json!({"server": server});
    if let Some(ca) = ca_pem {
        cluster["certificate-authority-data"] =
            json!(base64::engine::general_purpose::STANDARD.encode(ca));
    }
    let mut user = json!({});
    if let Some(t) = token {
        user["token"] = json!(t);
    }
    let doc = json!({
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "kube-sim", "cluster": cluster}],
        "users": [{"name": "kube-sim-user", "user": user}],
        "contexts": [{"name": "kube-sim", "context": {"cluster": "kube-sim", "user": "kube-sim-user", "namespace": namespace}}],
        "current-context": "kube-sim",
        "preferences": {},
    });
    crate::yaml::to_string(&doc)
}

#[cfg(test)]
mod tests {
    #[test]
    fn renders_a_loadable_kubeconfig() {
        let y = super::render("https://127.0.0.1:1", Some("PEM"), Some("tok"), "default");
        let k = kube::config::Kubeconfig::from_yaml(&y).unwrap();
        assert_eq!(k.current_context.as_deref(), Some("kube-sim"));
        assert!(y.contains("certificate-authority-data"));
    }
}
