//! Provisioner policy (docs/tenancy.md): whether a LatticeAgent may be registered and kept by
//! the provisioner it names, decided before any remote call. Pure: the provisioner has been
//! resolved by the reconcile's observe step (or it says why it could not be), and the namespace's
//! labels, when a cluster provisioner selects namespaces by label, were read there too.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;

use crate::crd::{NamespaceRule, ProvisionerKind, ProvisionerRef};

/// Which provisioner an agent uses (and, in status and agent metadata, which registered it).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ProvisionerId {
    /// The operator-level provisioner configured by flags.
    Default,
    /// A `LatticeProvisioner`.
    Namespaced {
        /// Its namespace (always the LatticeAgent's).
        namespace: String,
        /// Its name.
        name: String,
    },
    /// A `ClusterLatticeProvisioner`.
    Cluster {
        /// Its name.
        name: String,
    },
}

impl ProvisionerId {
    /// The provisioner a LatticeAgent of `namespace` names with `reference`.
    pub fn of(namespace: &str, reference: Option<&ProvisionerRef>) -> ProvisionerId {
        match reference {
            None => ProvisionerId::Default,
            Some(r) => match r.kind {
                ProvisionerKind::LatticeProvisioner => ProvisionerId::Namespaced {
                    namespace: namespace.to_owned(),
                    name: r.name.clone(),
                },
                ProvisionerKind::ClusterLatticeProvisioner => ProvisionerId::Cluster {
                    name: r.name.clone(),
                },
            },
        }
    }

    /// The kind's name (`default` for the operator-level provisioner).
    pub fn kind(&self) -> &'static str {
        match self {
            ProvisionerId::Default => "default",
            ProvisionerId::Namespaced { .. } => ProvisionerKind::LatticeProvisioner.as_str(),
            ProvisionerId::Cluster { .. } => ProvisionerKind::ClusterLatticeProvisioner.as_str(),
        }
    }
}

impl std::fmt::Display for ProvisionerId {
    /// `default`, `LatticeProvisioner/<namespace>/<name>` or `ClusterLatticeProvisioner/<name>`:
    /// the form of `status.provisioner` and of the agent metadata `lattice.provisioner`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ProvisionerId::Default => f.write_str("default"),
            ProvisionerId::Namespaced { namespace, name } => {
                write!(f, "LatticeProvisioner/{namespace}/{name}")
            }
            ProvisionerId::Cluster { name } => write!(f, "ClusterLatticeProvisioner/{name}"),
        }
    }
}

/// What a provisioner allows.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Policy {
    /// Capability rules: exact names, `prefix.*`, `provider:*`, `*`. Empty: none.
    pub capabilities: Vec<String>,
    /// Agent names must begin with this; `None`: the default rule (see [`name_prefix`]).
    pub name_prefix: Option<String>,
}

impl Policy {
    /// Any capability, the default name rule.
    pub fn any_capability() -> Policy {
        Policy {
            capabilities: vec!["*".to_owned()],
            name_prefix: None,
        }
    }

    /// Whether `capability` is allowed.
    pub fn allows_capability(&self, capability: &str) -> bool {
        self.capabilities
            .iter()
            .any(|rule| capability_matches(rule, capability))
    }

    /// Whether the policy allows every capability.
    pub fn allows_any_capability(&self) -> bool {
        self.capabilities.iter().any(|r| r == "*")
    }
}

/// Whether `capability` matches `rule`: `*` matches all, `p.*` matches everything starting with
/// `p.` (not `p` itself), `p:*` everything starting with `p:` (an Alter provider's scopes,
/// docs/alter.md), anything else only itself.
pub fn capability_matches(rule: &str, capability: &str) -> bool {
    if rule == "*" {
        return true;
    }
    match rule.strip_suffix('*') {
        Some(prefix) if prefix.ends_with('.') || prefix.ends_with(':') => {
            capability.len() > prefix.len() && capability.starts_with(prefix)
        }
        _ => rule == capability,
    }
}

/// The prefix every agent name of `namespace` must begin with under `policy`: the policy's own,
/// or `<cluster-name>-<namespace>-` (`<namespace>-` without a cluster name).
pub fn name_prefix(policy: &Policy, namespace: &str, cluster_name: Option<&str>) -> String {
    match &policy.name_prefix {
        Some(p) => p.clone(),
        None => match cluster_name.filter(|c| !c.is_empty()) {
            Some(cluster) => format!("{cluster}-{namespace}-"),
            None => format!("{namespace}-"),
        },
    }
}

/// Whether a provisioner is usable, as last checked by the provisioner controller.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Readiness {
    /// Not checked yet (a new provisioner): agents may go ahead; a bad key then fails their call.
    Unknown,
    /// The key is present, marked and accepted.
    Ready,
    /// Why it is not usable (never the key).
    NotReady(String),
}

/// A provisioner, resolved for one LatticeAgent.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProvisionerView {
    /// Which one.
    pub id: ProvisionerId,
    /// Its policy.
    pub policy: Policy,
    /// Whether the LatticeAgent's namespace may use it (always for the default and a
    /// namespaced provisioner of the same namespace).
    pub namespace_allowed: bool,
    /// Its `Ready` condition.
    pub readiness: Readiness,
    /// `spec.suspend`.
    pub suspended: bool,
    /// The base URL it uses.
    pub base_url: String,
    /// The backend it talks to.
    pub backend: super::BackendKind,
}

/// The provisioner a LatticeAgent names, or why there is none to use.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Resolution {
    /// Found.
    Resolved(ProvisionerView),
    /// Not found (or its kind is not installed): why.
    NotFound(ProvisionerId, String),
}

impl Resolution {
    /// The operator's default provisioner with `policy`.
    pub fn default_provisioner(policy: Policy, base_url: &str) -> Resolution {
        Resolution::Resolved(ProvisionerView {
            id: ProvisionerId::Default,
            policy,
            namespace_allowed: true,
            readiness: Readiness::Unknown,
            suspended: false,
            base_url: base_url.to_owned(),
            backend: super::BackendKind::AgentLattice,
        })
    }

    /// The provisioner's identity.
    pub fn id(&self) -> &ProvisionerId {
        match self {
            Resolution::Resolved(v) => &v.id,
            Resolution::NotFound(id, _) => id,
        }
    }

    /// The view, when resolved.
    pub fn view(&self) -> Option<&ProvisionerView> {
        match self {
            Resolution::Resolved(v) => Some(v),
            Resolution::NotFound(..) => None,
        }
    }
}

/// Why the policy refuses a LatticeAgent. Each is a `Ready=False` reason.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// The named provisioner does not exist.
    ProvisionerNotFound {
        /// Which.
        provisioner: String,
        /// Why (not found, kind not installed).
        why: String,
    },
    /// A cluster provisioner that does not allow the LatticeAgent's namespace.
    ProvisionerNotAllowed {
        /// Which.
        provisioner: String,
        /// The namespace.
        namespace: String,
    },
    /// A capability outside the policy.
    CapabilityNotAllowed {
        /// The first refused capability.
        capability: String,
        /// How many are refused.
        count: usize,
        /// Which provisioner.
        provisioner: String,
    },
    /// An agent name outside the policy.
    AgentNameNotAllowed {
        /// The name.
        name: String,
        /// The prefix it must begin with.
        prefix: String,
        /// Which provisioner.
        provisioner: String,
    },
    /// The provisioner's key is missing, unmarked or rejected.
    ProvisionerNotReady {
        /// Which.
        provisioner: String,
        /// Why.
        why: String,
    },
    /// The provisioner is suspended and registers nothing new.
    ProvisionerSuspended {
        /// Which.
        provisioner: String,
    },
}

impl Refusal {
    /// The condition reason (and Warning event reason).
    pub fn reason(&self) -> &'static str {
        match self {
            Refusal::ProvisionerNotFound { .. } => "ProvisionerNotFound",
            Refusal::ProvisionerNotAllowed { .. } => "ProvisionerNotAllowed",
            Refusal::CapabilityNotAllowed { .. } => "CapabilityNotAllowed",
            Refusal::AgentNameNotAllowed { .. } => "AgentNameNotAllowed",
            Refusal::ProvisionerNotReady { .. } => "ProvisionerNotReady",
            Refusal::ProvisionerSuspended { .. } => "ProvisionerSuspended",
        }
    }

    /// What to tell the user: which rule, which provisioner, what to change.
    pub fn message(&self) -> String {
        match self {
            Refusal::ProvisionerNotFound { provisioner, why } => {
                format!("provisioner {provisioner} {why}; nothing is registered until it exists")
            }
            Refusal::ProvisionerNotAllowed {
                provisioner,
                namespace,
            } => format!(
                "provisioner {provisioner} does not allow namespace {namespace} \
                 (spec.namespaces of the ClusterLatticeProvisioner)"
            ),
            Refusal::CapabilityNotAllowed {
                capability,
                count,
                provisioner,
            } => {
                let more = if *count > 1 {
                    format!(" (and {} more)", count - 1)
                } else {
                    String::new()
                };
                format!(
                    "capability {capability}{more} is not allowed by provisioner {provisioner} \
                     (spec.policy.capabilities); the agent keeps its previous capabilities \
                     until the spec is fixed"
                )
            }
            Refusal::AgentNameNotAllowed {
                name,
                prefix,
                provisioner,
            } => format!(
                "agent name {name} is not allowed by provisioner {provisioner}: names must \
                 begin with {prefix} (set spec.agentName)"
            ),
            Refusal::ProvisionerNotReady { provisioner, why } => {
                format!("provisioner {provisioner} is not ready: {why}")
            }
            Refusal::ProvisionerSuspended { provisioner } => format!(
                "provisioner {provisioner} is suspended: it registers no new agent until \
                 spec.suspend is false"
            ),
        }
    }
}

/// What the policy is asked about one LatticeAgent.
#[derive(Clone, Copy, Debug)]
pub struct Request<'a> {
    /// The LatticeAgent's namespace.
    pub namespace: &'a str,
    /// The LatticeAgent's name (for the default agent name).
    pub name: &'a str,
    /// The agent name it asks for (effective).
    pub agent_name: &'a str,
    /// The capabilities it asks for.
    pub capabilities: &'a [String],
    /// Whether an agent is already registered for it (the name rule guards registration only:
    /// the name of a registered agent cannot change, and refusing it later protects nothing).
    pub registered: bool,
    /// `--cluster-name`.
    pub cluster_name: Option<&'a str>,
}

/// Decides whether `request` may go ahead with `resolution`: `Ok` or the first rule it breaks,
/// in this order: the provisioner exists, allows the namespace, is not suspended (for a new
/// agent; a registered agent is halted instead), is ready, allows every capability and (for a
/// new agent) the name.
pub fn check(request: &Request<'_>, resolution: &Resolution) -> Result<(), Refusal> {
    let view = match resolution {
        Resolution::NotFound(id, why) => {
            return Err(Refusal::ProvisionerNotFound {
                provisioner: id.to_string(),
                why: why.clone(),
            });
        }
        Resolution::Resolved(view) => view,
    };
    let provisioner = view.id.to_string();
    if !view.namespace_allowed {
        return Err(Refusal::ProvisionerNotAllowed {
            provisioner,
            namespace: request.namespace.to_owned(),
        });
    }
    if view.suspended && !request.registered {
        return Err(Refusal::ProvisionerSuspended { provisioner });
    }
    if let Readiness::NotReady(why) = &view.readiness {
        return Err(Refusal::ProvisionerNotReady {
            provisioner,
            why: why.clone(),
        });
    }
    let refused: Vec<&String> = request
        .capabilities
        .iter()
        .filter(|c| !view.policy.allows_capability(c))
        .collect();
    if let Some(first) = refused.first() {
        return Err(Refusal::CapabilityNotAllowed {
            capability: (*first).clone(),
            count: refused.len(),
            provisioner,
        });
    }
    if !request.registered {
        let prefix = name_prefix(&view.policy, request.namespace, request.cluster_name);
        // With a cluster name and the default rule, the default agent name `<namespace>-<name>`
        // stays allowed, so installs that set `--cluster-name` before provisioners existed keep
        // registering their defaulted names (the prefix without a cluster name covers it).
        let default_name = view.policy.name_prefix.is_none()
            && request.agent_name == format!("{}-{}", request.namespace, request.name);
        if !request.agent_name.starts_with(&prefix) && !default_name {
            return Err(Refusal::AgentNameNotAllowed {
                name: request.agent_name.to_owned(),
                prefix,
                provisioner,
            });
        }
    }
    Ok(())
}

/// Whether a cluster provisioner's `spec.namespaces` allows `namespace`, whose labels are
/// `labels` (`None`: not read, because the rule has no selector — or the namespace is gone).
pub fn namespace_allowed(
    rule: &NamespaceRule,
    namespace: &str,
    labels: Option<&BTreeMap<String, String>>,
) -> bool {
    if rule.names.iter().any(|n| n == namespace) {
        return true;
    }
    match (&rule.selector, labels) {
        (Some(selector), Some(labels)) => selector_matches(selector, labels),
        _ => false,
    }
}

/// A label selector, as the API server evaluates it. An empty selector matches everything (as
/// in Kubernetes); an operator it does not know matches nothing.
pub fn selector_matches(selector: &LabelSelector, labels: &BTreeMap<String, String>) -> bool {
    let labels_ok = selector
        .match_labels
        .iter()
        .flatten()
        .all(|(k, v)| labels.get(k) == Some(v));
    let expressions_ok = selector.match_expressions.iter().flatten().all(|e| {
        let value = labels.get(&e.key);
        let values = e.values.as_deref().unwrap_or_default();
        match e.operator.as_str() {
            "In" => value.is_some_and(|v| values.contains(v)),
            "NotIn" => value.is_none_or(|v| !values.contains(v)),
            "Exists" => value.is_some(),
            "DoesNotExist" => value.is_none(),
            _ => false,
        }
    });
    labels_ok && expressions_ok
}

#[cfg(test)]
mod tests {
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelectorRequirement;

    use super::*;

    fn view(capabilities: &[&str]) -> ProvisionerView {
        ProvisionerView {
            id: ProvisionerId::Namespaced {
                namespace: "payments".into(),
                name: "team".into(),
            },
            policy: Policy {
                capabilities: capabilities.iter().map(|c| (*c).to_owned()).collect(),
                name_prefix: None,
            },
            namespace_allowed: true,
            readiness: Readiness::Ready,
            suspended: false,
            base_url: "https://al.example".into(),
            backend: crate::plan::BackendKind::AgentLattice,
        }
    }

    fn request<'a>(agent_name: &'a str, capabilities: &'a [String]) -> Request<'a> {
        Request {
            namespace: "payments",
            name: "bot",
            agent_name,
            capabilities,
            registered: false,
            cluster_name: None,
        }
    }

    fn caps(c: &[&str]) -> Vec<String> {
        c.iter().map(|c| (*c).to_owned()).collect()
    }

    #[test]
    fn capability_rules() {
        let table = [
            ("*", "anything.at.all", true),
            ("deploy.*", "deploy.staging", true),
            ("deploy.*", "deploy.staging.eu", true),
            ("deploy.*", "deploy", false),
            ("deploy.*", "deployx.staging", false),
            ("deploy.*", "admin.deploy.x", false),
            ("deploy.staging", "deploy.staging", true),
            ("deploy.staging", "deploy.staging2", false),
            ("deploy.staging", "deploy.production", false),
            ("deploy*", "deploy.staging", false),
            ("deploy*", "deploy*", true),
            ("github:*", "github:repo:read", true),
            ("github:*", "github:", false),
            ("github:*", "github.repo", false),
            ("github:*", "gitlab:repo", false),
        ];
        for (rule, capability, expected) in table {
            assert_eq!(
                capability_matches(rule, capability),
                expected,
                "{rule} vs {capability}"
            );
        }
    }

    #[test]
    fn decisions_in_order() {
        let none = caps(&[]);
        let staging = caps(&["deploy.staging"]);
        let evil = caps(&["deploy.production", "admin.everything"]);
        let not_found = Resolution::NotFound(
            ProvisionerId::Cluster {
                name: "platform".into(),
            },
            "does not exist".into(),
        );
        let not_allowed = Resolution::Resolved(ProvisionerView {
            namespace_allowed: false,
            ..view(&["*"])
        });
        let suspended = Resolution::Resolved(ProvisionerView {
            suspended: true,
            ..view(&["*"])
        });
        let not_ready = Resolution::Resolved(ProvisionerView {
            readiness: Readiness::NotReady("the service key was rejected".into()),
            ..view(&["*"])
        });
        let unknown = Resolution::Resolved(ProvisionerView {
            readiness: Readiness::Unknown,
            ..view(&["deploy.*"])
        });
        let deploy = Resolution::Resolved(view(&["deploy.*"]));
        let table: Vec<(&str, Request<'_>, &Resolution, Option<&str>)> = vec![
            ("allowed", request("payments-bot", &staging), &deploy, None),
            (
                "no capability",
                request("payments-bot", &none),
                &deploy,
                None,
            ),
            (
                "not checked yet goes ahead",
                request("payments-bot", &staging),
                &unknown,
                None,
            ),
            (
                "not found",
                request("payments-bot", &staging),
                &not_found,
                Some("ProvisionerNotFound"),
            ),
            (
                "namespace not allowed before anything else",
                request("other-bot", &evil),
                &not_allowed,
                Some("ProvisionerNotAllowed"),
            ),
            (
                "suspended registers nothing new",
                request("payments-bot", &staging),
                &suspended,
                Some("ProvisionerSuspended"),
            ),
            (
                "suspended keeps a registered agent (halted elsewhere)",
                Request {
                    registered: true,
                    ..request("payments-bot", &staging)
                },
                &suspended,
                None,
            ),
            (
                "not ready",
                request("payments-bot", &staging),
                &not_ready,
                Some("ProvisionerNotReady"),
            ),
            (
                "capability outside the policy",
                request("payments-bot", &evil),
                &deploy,
                Some("CapabilityNotAllowed"),
            ),
            (
                "capability outside the policy, registered",
                Request {
                    registered: true,
                    ..request("payments-bot", &evil)
                },
                &deploy,
                Some("CapabilityNotAllowed"),
            ),
            (
                "another namespace's name",
                request("billing-bot", &staging),
                &deploy,
                Some("AgentNameNotAllowed"),
            ),
            (
                "the name rule guards registration only",
                Request {
                    registered: true,
                    ..request("billing-bot", &staging)
                },
                &deploy,
                None,
            ),
        ];
        for (what, req, resolution, expected) in table {
            let got = check(&req, resolution).err();
            assert_eq!(
                got.as_ref().map(Refusal::reason),
                expected,
                "{what}: {got:?}"
            );
        }
    }

    #[test]
    fn refusals_name_the_rule_and_the_provisioner() {
        let evil = caps(&["deploy.production", "admin.everything"]);
        let refusal = check(
            &request("payments-bot", &evil),
            &Resolution::Resolved(view(&["deploy.staging"])),
        )
        .expect_err("refused");
        let message = refusal.message();
        assert!(message.contains("deploy.production"), "{message}");
        assert!(message.contains("and 1 more"), "{message}");
        assert!(
            message.contains("LatticeProvisioner/payments/team"),
            "{message}"
        );
        let refusal = check(
            &request("billing-bot", &[]),
            &Resolution::Resolved(view(&[])),
        )
        .expect_err("refused");
        assert!(refusal.message().contains("begin with payments-"));
    }

    #[test]
    fn name_rules() {
        let default = Policy {
            capabilities: vec![],
            name_prefix: None,
        };
        assert_eq!(name_prefix(&default, "payments", None), "payments-");
        assert_eq!(name_prefix(&default, "payments", Some("")), "payments-");
        assert_eq!(
            name_prefix(&default, "payments", Some("eu1")),
            "eu1-payments-"
        );
        let own = Policy {
            capabilities: vec![],
            name_prefix: Some("platform-".into()),
        };
        assert_eq!(name_prefix(&own, "payments", Some("eu1")), "platform-");
        let resolution = Resolution::Resolved(view(&[]));
        let with_cluster = |agent_name| Request {
            cluster_name: Some("eu1"),
            ..request(agent_name, &[])
        };
        // The defaulted name stays allowed with a cluster name; other names need its prefix.
        assert!(check(&with_cluster("payments-bot"), &resolution).is_ok());
        assert!(check(&with_cluster("eu1-payments-x"), &resolution).is_ok());
        assert_eq!(
            check(&with_cluster("payments-x"), &resolution)
                .err()
                .map(|r| r.reason()),
            Some("AgentNameNotAllowed")
        );
        let own_rule = Resolution::Resolved(ProvisionerView {
            policy: own,
            ..view(&[])
        });
        assert!(check(&request("platform-x", &[]), &own_rule).is_ok());
        // With its own prefix, the default name is not an exception.
        assert!(check(&request("payments-bot", &[]), &own_rule).is_err());
    }

    #[test]
    fn namespace_rules() {
        let labels = BTreeMap::from([("team".to_owned(), "payments".to_owned())]);
        let none = NamespaceRule::default();
        assert!(!namespace_allowed(&none, "payments", Some(&labels)));
        let named = NamespaceRule {
            names: vec!["payments".into()],
            selector: None,
        };
        assert!(namespace_allowed(&named, "payments", None));
        assert!(!namespace_allowed(&named, "billing", None));
        let selected = |selector: LabelSelector| NamespaceRule {
            names: vec![],
            selector: Some(selector),
        };
        let by_label = selected(LabelSelector {
            match_labels: Some(labels.clone()),
            match_expressions: None,
        });
        assert!(namespace_allowed(&by_label, "payments", Some(&labels)));
        assert!(!namespace_allowed(&by_label, "payments", None));
        assert!(!namespace_allowed(
            &by_label,
            "billing",
            Some(&BTreeMap::new())
        ));
        let expr = |operator: &str, values: &[&str]| {
            selected(LabelSelector {
                match_labels: None,
                match_expressions: Some(vec![LabelSelectorRequirement {
                    key: "team".into(),
                    operator: operator.into(),
                    values: Some(values.iter().map(|v| (*v).to_owned()).collect()),
                }]),
            })
        };
        let empty = BTreeMap::new();
        for (rule, labels, expected) in [
            (expr("In", &["payments", "billing"]), &labels, true),
            (expr("In", &["billing"]), &labels, false),
            (expr("NotIn", &["billing"]), &labels, true),
            (expr("NotIn", &["payments"]), &labels, false),
            (expr("NotIn", &["payments"]), &empty, true),
            (expr("Exists", &[]), &labels, true),
            (expr("Exists", &[]), &empty, false),
            (expr("DoesNotExist", &[]), &empty, true),
            (expr("Bogus", &[]), &labels, false),
        ] {
            assert_eq!(
                namespace_allowed(&rule, "x", Some(labels)),
                expected,
                "{rule:?}"
            );
        }
    }
}
