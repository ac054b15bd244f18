//! The plugin's one error type, and the exit code each error gives (documented in the README and
//! in `--help`): 0 ok, 1 error, 2 usage, 3 not found, 4 forbidden, 5 timeout.

use std::time::Duration;

/// Exit status: success.
pub const EXIT_OK: i32 = 0;
/// Exit status: any other error (connection, API server, output).
pub const EXIT_ERROR: i32 = 1;
/// Exit status: wrong usage (clap's own errors exit with 2 as well).
pub const EXIT_USAGE: i32 = 2;
/// Exit status: the LatticeAgent (or namespace, Lease…) does not exist.
pub const EXIT_NOT_FOUND: i32 = 3;
/// Exit status: the API server refused the request (403).
pub const EXIT_FORBIDDEN: i32 = 4;
/// Exit status: `rotate --wait` did not see the rotation finish in time.
pub const EXIT_TIMEOUT: i32 = 5;

/// What went wrong. Messages never carry a key: the plugin never reads one.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The kubeconfig could not be loaded.
    #[error("kubeconfig: {0}")]
    Kubeconfig(String),
    /// Wrong usage that clap cannot see (e.g. no terminal to confirm on).
    #[error("{0}")]
    Usage(String),
    /// The user declined a confirmation: nothing changed.
    #[error("{0}")]
    Aborted(String),
    /// The object does not exist.
    #[error("{0}")]
    NotFound(String),
    /// The API server refused the request; the message says which permission is missing.
    #[error("{0}")]
    Forbidden(String),
    /// A wait ran out of time.
    #[error("timed out after {}: {what}", crate::time::human(jiff::SignedDuration::try_from(*after).unwrap_or_default()))]
    Timeout {
        /// How long it waited.
        after: Duration,
        /// What it was waiting for, and where things stand.
        what: String,
    },
    /// Any other API error.
    #[error("{context}: {source}")]
    Kube {
        /// What the plugin was doing.
        context: String,
        /// The error.
        #[source]
        source: kube::Error,
    },
    /// Writing the output failed (a closed pipe, …).
    #[error("writing the output: {0}")]
    Io(#[from] std::io::Error),
    /// Encoding the output failed.
    #[error("encoding the output: {0}")]
    Encode(String),
}

/// Result of the plugin.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// The exit code this error ends the process with.
    pub fn exit_code(&self) -> i32 {
        match self {
            Error::Usage(_) => EXIT_USAGE,
            Error::NotFound(_) => EXIT_NOT_FOUND,
            Error::Forbidden(_) => EXIT_FORBIDDEN,
            Error::Timeout { .. } => EXIT_TIMEOUT,
            Error::Kube {
                source: kube::Error::Api(status),
                ..
            } if status.code == 404 => EXIT_NOT_FOUND,
            Error::Kube {
                source: kube::Error::Api(status),
                ..
            } if status.code == 403 => EXIT_FORBIDDEN,
            _ => EXIT_ERROR,
        }
    }

    /// An API error while doing `context`, with 404 and 403 turned into their own kinds (a 403
    /// says which permission is missing, see [`forbidden`]).
    pub fn kube(context: impl Into<String>, source: kube::Error) -> Error {
        let context = context.into();
        match &source {
            kube::Error::Api(status) if status.code == 403 => {
                Error::Forbidden(forbidden(&status.message, None))
            }
            kube::Error::Api(status) if status.code == 404 => {
                Error::NotFound(format!("{context}: {}", status.message))
            }
            _ => Error::Kube { context, source },
        }
    }

    /// A 403 while doing something that needs `need` (e.g. "rotating"), or any other error.
    pub fn kube_needing(context: impl Into<String>, need: &str, source: kube::Error) -> Error {
        match &source {
            kube::Error::Api(status) if status.code == 403 => {
                Error::Forbidden(forbidden(&status.message, Some(need)))
            }
            _ => Error::kube(context, source),
        }
    }
}

/// What a Kubernetes 403 message says: who may not do what to which resource where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Denied {
    /// The user (`alice`, `system:serviceaccount:ns:sa`).
    pub user: Option<String>,
    /// The verb (`patch`, `list`, …).
    pub verb: Option<String>,
    /// The resource, with its subresource if any (`latticeagents`, `pods/log`).
    pub resource: Option<String>,
    /// The API group (`""` for the core group).
    pub group: Option<String>,
    /// The namespace; `None` at cluster scope.
    pub namespace: Option<String>,
}

fn quoted_after<'a>(text: &'a str, marker: &str) -> Option<&'a str> {
    let start = text.find(marker)? + marker.len();
    let rest = &text[start..];
    let rest = rest.strip_prefix('"')?;
    rest.find('"').map(|end| &rest[..end])
}

/// Parses the API server's 403 message, e.g. `latticeagents.agentlattice.io "x" is forbidden:
/// User "alice" cannot patch resource "latticeagents" in API group "agentlattice.io" in the
/// namespace "payments"`.
pub fn parse_denied(message: &str) -> Denied {
    let verb = message.split(" cannot ").nth(1).and_then(|rest| {
        let verb = rest.split_whitespace().next()?;
        Some(verb.to_owned())
    });
    Denied {
        user: quoted_after(message, "User ").map(str::to_owned),
        verb,
        resource: quoted_after(message, "resource ").map(str::to_owned),
        group: quoted_after(message, "in API group ").map(str::to_owned),
        namespace: quoted_after(message, "in the namespace ").map(str::to_owned),
    }
}

/// A clear message for a 403: the permission that is missing and where, and what needs it.
pub fn forbidden(message: &str, need: Option<&str>) -> String {
    let d = parse_denied(message);
    let (Some(verb), Some(resource)) = (d.verb.as_deref(), d.resource.as_deref()) else {
        return format!("forbidden: {message}");
    };
    let full = match d.group.as_deref() {
        Some("") | None => resource.to_owned(),
        Some(group) => format!("{resource}.{group}"),
    };
    let scope = match d.namespace.as_deref() {
        Some(ns) => format!("in namespace {ns}"),
        None => "cluster-wide".to_owned(),
    };
    let who = d
        .user
        .as_deref()
        .map(|u| format!("{u} may not {verb} {full} {scope}"))
        .unwrap_or_else(|| format!("you may not {verb} {full} {scope}"));
    match need {
        Some(need) => format!(
            "forbidden: {who}. {need} needs the `{verb}` permission on {full} {scope} (for \
             example through the `edit` role, which the chart extends to LatticeAgents)."
        ),
        None => format!("forbidden: {who} (the API server refused it)."),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PATCH: &str = "latticeagents.agentlattice.io \"deploy-bot\" is forbidden: User \
         \"alice\" cannot patch resource \"latticeagents\" in API group \"agentlattice.io\" in \
         the namespace \"payments\"";

    #[test]
    fn a_403_message_is_understood() {
        assert_eq!(
            parse_denied(PATCH),
            Denied {
                user: Some("alice".into()),
                verb: Some("patch".into()),
                resource: Some("latticeagents".into()),
                group: Some("agentlattice.io".into()),
                namespace: Some("payments".into()),
            }
        );
        assert_eq!(
            forbidden(PATCH, Some("Rotating")),
            "forbidden: alice may not patch latticeagents.agentlattice.io in namespace \
             payments. Rotating needs the `patch` permission on latticeagents.agentlattice.io \
             in namespace payments (for example through the `edit` role, which the chart \
             extends to LatticeAgents)."
        );
        let cluster = "leases.coordination.k8s.io is forbidden: User \"bob\" cannot list \
                       resource \"leases\" in API group \"coordination.k8s.io\" at the cluster scope";
        assert_eq!(
            forbidden(cluster, None),
            "forbidden: bob may not list leases.coordination.k8s.io cluster-wide (the API \
             server refused it)."
        );
        let core = "pods is forbidden: User \"bob\" cannot list resource \"pods\" in API group \
                    \"\" in the namespace \"lattice-system\"";
        assert!(forbidden(core, None).contains("may not list pods in namespace lattice-system"));
        assert_eq!(
            forbidden("something else", None),
            "forbidden: something else"
        );
    }

    #[test]
    fn exit_codes() {
        assert_eq!(Error::Usage("x".into()).exit_code(), EXIT_USAGE);
        assert_eq!(Error::NotFound("x".into()).exit_code(), EXIT_NOT_FOUND);
        assert_eq!(Error::Forbidden("x".into()).exit_code(), EXIT_FORBIDDEN);
        assert_eq!(
            Error::Timeout {
                after: Duration::from_secs(600),
                what: "x".into()
            }
            .exit_code(),
            EXIT_TIMEOUT
        );
        assert_eq!(
            Error::Timeout {
                after: Duration::from_secs(600),
                what: "the old key to be revoked".into()
            }
            .to_string(),
            "timed out after 10m: the old key to be revoked"
        );
        assert_eq!(Error::Kubeconfig("x".into()).exit_code(), EXIT_ERROR);
    }
}
