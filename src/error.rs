//! The operator's error type: one enum, a stable [`Error::category`] for metric labels, event notes
//! and condition reasons, and [`Error::is_transient`] for the error policy (design §5).
//!
//! Messages carry codes and short texts, never request or response bodies, so no key can end up
//! in a log line or an event through an error.

use crate::plan::ErrorClass;

/// Every error of the operator crate.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A Kubernetes API call failed.
    #[error("Kubernetes API: {0}")]
    Kube(#[source] kube::Error),

    /// An AgentLattice call failed (mapped from the client's error by the executor).
    #[error("AgentLattice {}: {message}", class.category())]
    AgentLattice {
        /// The class the error policy acts on.
        class: ErrorClass,
        /// A short, secret-free message (error code and text).
        message: String,
    },

    /// The service-key Secret, or its field, is missing or unreadable.
    #[error("service key Secret {secret}: {reason}")]
    ServiceKeyMissing {
        /// `namespace/name` of the Secret.
        secret: String,
        /// What is missing.
        reason: String,
    },

    /// A configuration value is invalid.
    #[error("invalid configuration: {0}")]
    Config(String),

    /// The LatticeAgent CRD is not installed.
    #[error(
        "the CustomResourceDefinition {0} is not installed; install it with `kubectl apply -f \
         crds/latticeagents.agentlattice.io.yaml` (or `lattice-operator crd | kubectl apply -f -`)"
    )]
    CrdNotInstalled(String),

    /// A step of a reconcile failed; the planner has reported it in status (design §5).
    #[error("{effect} failed: {message}")]
    Step {
        /// [`crate::plan::Effect::kind`] of the step.
        effect: &'static str,
        /// The class the error policy acts on.
        class: ErrorClass,
        /// A short, secret-free message.
        message: String,
        /// When to try again (the planner's decision for this class).
        requeue: crate::plan::Requeue,
    },

    /// A bug or an impossible state (the reconcile is retried with backoff).
    #[error("internal error: {0}")]
    Internal(String),

    /// A reconcile needed more steps than the executor allows (a planner bug or a flapping
    /// remote; the reconcile is retried with backoff).
    #[error("reconcile did not settle within {0} steps")]
    TooManySteps(usize),

    /// The planner asked to write a key this reconcile does not hold (a planner bug).
    #[error("no key with id {0} is held by this reconcile")]
    KeyNotHeld(String),

    /// JSON (de)serialisation failed.
    #[error("JSON: {0}")]
    Json(#[source] serde_json::Error),

    /// YAML serialisation failed.
    #[error("YAML: {0}")]
    Yaml(#[source] crate::yaml::YamlError),

    /// File or socket I/O failed.
    #[error("I/O: {0}")]
    Io(#[source] std::io::Error),

    /// This replica lost the leader-election Lease while it was reconciling; it stopped at once
    /// and exits so that its pod restarts as a standby (`run`).
    #[error("leadership lost: {0}")]
    LeadershipLost(String),

    /// `verify` could not read what it checks (an endpoint unreachable or refusing, a body that
    /// does not parse): not a verdict on the invariant.
    #[error("verify: {0}")]
    Verify(String),
}

/// Result with [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl From<kube::Error> for Error {
    fn from(e: kube::Error) -> Self {
        Error::Kube(e)
    }
}

impl From<serde_json::Error> for Error {
    fn from(e: serde_json::Error) -> Self {
        Error::Json(e)
    }
}

impl From<crate::yaml::YamlError> for Error {
    fn from(e: crate::yaml::YamlError) -> Self {
        Error::Yaml(e)
    }
}

impl From<std::io::Error> for Error {
    fn from(e: std::io::Error) -> Self {
        Error::Io(e)
    }
}

impl Error {
    /// A stable CamelCase category: a metric label, a Warning event's note prefix, a `Synced`
    /// condition reason.
    pub fn category(&self) -> &'static str {
        match self {
            Error::Kube(_) => "KubernetesError",
            Error::AgentLattice { class, .. } => class.category(),
            Error::ServiceKeyMissing { .. } => "ServiceKeyMissing",
            Error::Config(_) => "ConfigError",
            Error::CrdNotInstalled(_) => "CrdNotInstalled",
            Error::Step { class, .. } => class.category(),
            Error::Internal(_) => "InternalError",
            Error::TooManySteps(_) => "TooManySteps",
            Error::KeyNotHeld(_) => "InternalError",
            Error::Json(_) | Error::Yaml(_) => "SerializationError",
            Error::Io(_) => "IoError",
            Error::LeadershipLost(_) => "LeadershipLost",
            Error::Verify(_) => "VerifyError",
        }
    }

    /// Whether retrying the same thing later can succeed without a human (backoff), as opposed to
    /// needing a spec, configuration or code change.
    pub fn is_transient(&self) -> bool {
        match self {
            Error::Kube(kube::Error::Api(status)) => {
                status.code == 409 || status.code == 429 || status.code >= 500
            }
            Error::Kube(_) => true,
            Error::AgentLattice { class, .. } => matches!(
                class,
                ErrorClass::RateLimited { .. }
                    | ErrorClass::Unavailable { .. }
                    | ErrorClass::Transient
            ),
            Error::Step { class, .. } => matches!(
                class,
                ErrorClass::RateLimited { .. }
                    | ErrorClass::Unavailable { .. }
                    | ErrorClass::Transient
            ),
            Error::ServiceKeyMissing { .. } => false,
            Error::Internal(_) => true,
            Error::TooManySteps(_) | Error::KeyNotHeld(_) | Error::Io(_) => true,
            Error::Config(_) | Error::CrdNotInstalled(_) | Error::Json(_) | Error::Yaml(_) => false,
            Error::LeadershipLost(_) | Error::Verify(_) => false,
        }
    }

    /// The class the planner folds (see [`crate::plan::Observed::record`]).
    pub fn class(&self) -> ErrorClass {
        match self {
            Error::AgentLattice { class, .. } | Error::Step { class, .. } => class.clone(),
            Error::ServiceKeyMissing { .. } => ErrorClass::ServiceKeyMissing,
            Error::Kube(kube::Error::Api(status)) if status.code == 422 || status.code == 400 => {
                ErrorClass::Invalid(status.reason.clone())
            }
            _ => ErrorClass::Transient,
        }
    }
}

/// A short description of a Kubernetes client error, safe to show: the HTTP status and reason
/// and the API server's message (passed through [`crate::redact::redact`]), or the error kind.
pub fn kube_message(e: &kube::Error) -> String {
    let text = match e {
        kube::Error::Api(status) => {
            format!("HTTP {} {}: {}", status.code, status.reason, status.message)
        }
        other => other.to_string(),
    };
    let mut text = crate::redact::redact(&text);
    if text.len() > 300 {
        let mut cut = 300;
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        text.truncate(cut);
        text.push('…');
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    fn api(code: u16) -> Error {
        Error::Kube(kube::Error::Api(Box::new(kube::core::Status {
            code,
            message: "m".into(),
            reason: "Reason".into(),
            ..Default::default()
        })))
    }

    #[test]
    fn categories_and_transience() {
        let cases: Vec<(Error, &str, bool)> = vec![
            (api(409), "KubernetesError", true),
            (api(500), "KubernetesError", true),
            (api(422), "KubernetesError", false),
            (api(403), "KubernetesError", false),
            (
                Error::AgentLattice {
                    class: ErrorClass::RateLimited { retry_after: None },
                    message: "rate_limit_exceeded".into(),
                },
                "RateLimited",
                true,
            ),
            (
                Error::AgentLattice {
                    class: ErrorClass::ServiceKeyRejected,
                    message: "key_revoked".into(),
                },
                "ServiceKeyRejected",
                false,
            ),
            (
                Error::ServiceKeyMissing {
                    secret: "ops/al".into(),
                    reason: "not found".into(),
                },
                "ServiceKeyMissing",
                false,
            ),
            (Error::TooManySteps(32), "TooManySteps", true),
            (Error::Config("x".into()), "ConfigError", false),
        ];
        for (error, category, transient) in cases {
            assert_eq!(error.category(), category, "{error}");
            assert_eq!(error.is_transient(), transient, "{error}");
        }
        assert_eq!(api(422).class(), ErrorClass::Invalid("Reason".into()));
        assert_eq!(api(409).class(), ErrorClass::Transient);
    }
}
