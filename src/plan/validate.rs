//! Spec validation: what the CRD schema cannot express (design §1), and a defensive re-check of
//! what it can (the operator may run against an API server with an older copy of the CRD).

use std::collections::BTreeMap;

use jiff::SignedDuration;

use crate::crd::{
    AGENT_NAME_MAX, CAPABILITIES_MAX_ITEMS, CAPABILITY_MAX, DESCRIPTION_MAX, DNS_SUBDOMAIN_MAX,
    DeletionPolicy, LatticeAgent, SecretPolicy,
};

/// A spec that passed validation, with defaults applied and durations parsed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ValidSpec {
    /// `spec.agentName` or `<namespace>-<name>`.
    pub agent_name: String,
    /// `spec.secretName` or `<name>-agent-key`.
    pub secret_name: String,
    /// The description; an empty one counts as none.
    pub description: Option<String>,
    /// The capabilities, sorted and without duplicates.
    pub capabilities: Vec<String>,
    /// Rotation schedule; `None` without a schedule.
    pub interval: Option<SignedDuration>,
    /// Grace period.
    pub grace: SignedDuration,
    /// Maximum grace period.
    pub max_grace: SignedDuration,
    /// Secret policy.
    pub secret_policy: SecretPolicy,
    /// Deletion policy.
    pub deletion_policy: DeletionPolicy,
    /// Whether the agent should be halted.
    pub suspend: bool,
    /// Whether consumers reading the key from the environment are restarted after a rotation.
    pub restart_on_rotation: bool,
}

/// `spec.agentName`, or the default `<namespace>-<name>` (which may be invalid).
pub fn effective_agent_name(agent: &LatticeAgent) -> String {
    match agent.spec.agent_name.as_deref() {
        Some(name) if !name.is_empty() => name.to_owned(),
        _ => format!(
            "{}-{}",
            agent.metadata.namespace.as_deref().unwrap_or_default(),
            agent.metadata.name.as_deref().unwrap_or_default()
        ),
    }
}

/// `spec.secretName`, or the default `<name>-agent-key` (which may be invalid).
pub fn effective_secret_name(agent: &LatticeAgent) -> String {
    match agent.spec.secret_name.as_deref() {
        Some(name) if !name.is_empty() => name.to_owned(),
        _ => format!(
            "{}-agent-key",
            agent.metadata.name.as_deref().unwrap_or_default()
        ),
    }
}

/// Validates the spec. The error lists every problem, each a short sentence naming the field.
pub fn validate(agent: &LatticeAgent) -> Result<ValidSpec, Vec<String>> {
    let spec = &agent.spec;
    let mut errors = Vec::new();

    let agent_name = effective_agent_name(agent);
    if let Err(why) = check_agent_name(&agent_name) {
        if spec.agent_name.as_deref().is_some_and(|n| !n.is_empty()) {
            errors.push(format!("spec.agentName: {why}"));
        } else {
            errors.push(format!(
                "the default agent name <namespace>-<name> ({agent_name:?}) {why}; set spec.agentName"
            ));
        }
    }

    let secret_name = effective_secret_name(agent);
    if !is_dns_subdomain(&secret_name) {
        if spec.secret_name.as_deref().is_some_and(|n| !n.is_empty()) {
            errors
                .push("spec.secretName: must be a DNS subdomain of at most 253 characters".into());
        } else {
            errors.push(format!(
                "the default Secret name <name>-agent-key ({secret_name:?}) is not a valid DNS \
                 subdomain of at most {DNS_SUBDOMAIN_MAX} characters; set spec.secretName"
            ));
        }
    }

    let description = spec.description.clone().filter(|d| !d.is_empty());
    if description
        .as_ref()
        .is_some_and(|d| d.chars().count() > DESCRIPTION_MAX)
    {
        errors.push(format!(
            "spec.description: at most {DESCRIPTION_MAX} characters"
        ));
    }

    let mut capabilities = spec.capabilities.clone();
    capabilities.sort();
    let before = capabilities.len();
    capabilities.dedup();
    if capabilities.len() != before {
        errors.push("spec.capabilities: duplicate entries".into());
    }
    if capabilities.len() > CAPABILITIES_MAX_ITEMS {
        errors.push(format!(
            "spec.capabilities: at most {CAPABILITIES_MAX_ITEMS} entries"
        ));
    }
    for cap in &capabilities {
        if !is_capability(cap) {
            errors.push(format!(
                "spec.capabilities: {cap:?} must be 1-{CAPABILITY_MAX} characters of \
                 [a-z0-9._:-], starting and ending with [a-z0-9]"
            ));
        }
    }

    let rotation = &spec.rotation;
    let duration = |field: &str, value: &str, errors: &mut Vec<String>| match parse_duration(value)
    {
        Ok(d) => Some(d),
        Err(e) => {
            errors.push(format!("spec.rotation.{field}: {e}"));
            None
        }
    };
    let interval = rotation
        .interval
        .as_deref()
        .filter(|s| !s.is_empty())
        .map(|s| duration("interval", s, &mut errors));
    let grace = duration("gracePeriod", &rotation.grace_period, &mut errors);
    let max_grace = duration("maxGracePeriod", &rotation.max_grace_period, &mut errors);
    if let (Some(g), Some(m)) = (grace, max_grace)
        && g > m
    {
        errors.push(format!(
            "spec.rotation: gracePeriod ({}) must not exceed maxGracePeriod ({})",
            rotation.grace_period, rotation.max_grace_period
        ));
    }
    if let (Some(Some(i)), Some(g)) = (interval, grace)
        && i <= g
    {
        errors.push(format!(
            "spec.rotation: interval ({}) must be longer than gracePeriod ({})",
            rotation.interval.as_deref().unwrap_or_default(),
            rotation.grace_period
        ));
    }

    if let Some(template) = &spec.secret_template {
        check_labels(&template.labels, &mut errors);
        for key in template.annotations.keys() {
            if let Err(why) = check_qualified_name(key) {
                errors.push(format!(
                    "spec.secretTemplate.annotations: key {key:?} {why}"
                ));
            }
        }
    }

    match (errors.is_empty(), grace, max_grace) {
        (true, Some(grace), Some(max_grace)) => Ok(ValidSpec {
            agent_name,
            secret_name,
            description,
            capabilities,
            interval: interval.flatten(),
            grace,
            max_grace,
            secret_policy: spec.secret_policy,
            deletion_policy: spec.deletion_policy,
            suspend: spec.suspend,
            restart_on_rotation: spec.restart_on_rotation,
        }),
        _ => Err(errors),
    }
}

/// Checks an agent name: 1–63 characters of `^[a-z0-9]([a-z0-9._-]*[a-z0-9])?$`.
pub fn check_agent_name(name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > AGENT_NAME_MAX {
        return Err(format!(
            "must be 1-{AGENT_NAME_MAX} characters (it is {})",
            name.len()
        ));
    }
    if !edge_alnum(name, |c| {
        c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '.' | '_' | '-')
    }) {
        return Err("must consist of [a-z0-9._-], starting and ending with [a-z0-9]".into());
    }
    Ok(())
}

fn is_capability(cap: &str) -> bool {
    !cap.is_empty()
        && cap.len() <= CAPABILITY_MAX
        && edge_alnum(cap, |c| {
            c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '.' | '_' | ':' | '-')
        })
}

/// Lower-case alphanumerics at both ends, `inner` characters in between.
fn edge_alnum(s: &str, inner: impl Fn(char) -> bool) -> bool {
    let edge = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit();
    let (Some(first), Some(last)) = (s.chars().next(), s.chars().last()) else {
        return false;
    };
    edge(first) && edge(last) && s.chars().all(inner)
}

/// A DNS subdomain (RFC 1123): at most 253 characters, dot-separated labels of `[a-z0-9-]`
/// starting and ending with an alphanumeric.
pub fn is_dns_subdomain(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= DNS_SUBDOMAIN_MAX
        && name.split('.').all(|label| {
            edge_alnum(label, |c| {
                c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-'
            })
        })
}

/// A qualified name as used for label and annotation keys: `[prefix/]name`, the prefix a DNS
/// subdomain, the name 1–63 characters of `[A-Za-z0-9._-]` starting and ending alphanumeric.
fn check_qualified_name(key: &str) -> Result<(), &'static str> {
    let name = match key.split_once('/') {
        Some((prefix, name)) => {
            if !is_dns_subdomain(prefix) {
                return Err("has a prefix that is not a DNS subdomain");
            }
            name
        }
        None => key,
    };
    if is_label_value(name) && !name.is_empty() {
        Ok(())
    } else {
        Err("must be a qualified name ([prefix/]name, name 1-63 characters of [A-Za-z0-9._-])")
    }
}

/// A label value: empty, or at most 63 characters of `[A-Za-z0-9._-]` starting and ending
/// alphanumeric.
fn is_label_value(v: &str) -> bool {
    if v.is_empty() {
        return true;
    }
    let edge = |c: char| c.is_ascii_alphanumeric();
    v.len() <= 63
        && v.chars().next().is_some_and(edge)
        && v.chars().last().is_some_and(edge)
        && v.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
}

fn check_labels(labels: &BTreeMap<String, String>, errors: &mut Vec<String>) {
    for (key, value) in labels {
        if let Err(why) = check_qualified_name(key) {
            errors.push(format!("spec.secretTemplate.labels: key {key:?} {why}"));
        }
        if !is_label_value(value) {
            errors.push(format!(
                "spec.secretTemplate.labels: the value of {key:?} must be at most 63 characters of \
                 [A-Za-z0-9._-], starting and ending alphanumeric"
            ));
        }
    }
}

/// Why a duration could not be parsed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DurationError {
    /// Not Go syntax plus days.
    #[error("{0:?} is not a duration like 90s, 10m, 1h30m or 30d")]
    Syntax(String),
    /// Too large to compute with.
    #[error("{0:?} is too long (at most 100 years)")]
    Overflow(String),
}

/// The longest duration accepted (100 years): far beyond any useful schedule, and small enough
/// that adding it to any timestamp of this millennium cannot overflow.
const MAX_DURATION_SECS: i128 = 100 * 366 * 86_400;

/// Parses Go's duration syntax plus days: a sequence of `<number>[.<fraction>]<unit>` with units
/// `ns`, `us`/`µs`, `ms`, `s`, `m`, `h`, `d` (24 hours). Positive values only; `0s` is allowed.
pub fn parse_duration(input: &str) -> Result<SignedDuration, DurationError> {
    let syntax = || DurationError::Syntax(input.to_owned());
    let overflow = || DurationError::Overflow(input.to_owned());
    let mut rest = input;
    let mut total: i128 = 0;
    if rest.is_empty() {
        return Err(syntax());
    }
    while !rest.is_empty() {
        let int_len = rest.bytes().take_while(u8::is_ascii_digit).count();
        let (int_part, after) = rest.split_at(int_len);
        let (frac_part, after) = match after.strip_prefix('.') {
            Some(f) => {
                let n = f.bytes().take_while(u8::is_ascii_digit).count();
                if n == 0 {
                    return Err(syntax());
                }
                f.split_at(n)
            }
            None => ("", after),
        };
        if int_part.is_empty() {
            return Err(syntax());
        }
        let (unit_nanos, unit_len): (i128, usize) = [
            ("ns", 1),
            ("us", 1_000),
            ("µs", 1_000),
            ("ms", 1_000_000),
            ("s", 1_000_000_000),
            ("m", 60_000_000_000),
            ("h", 3_600_000_000_000),
            ("d", 86_400_000_000_000),
        ]
        .iter()
        .find(|(u, _)| after.starts_with(u))
        .map(|(u, n)| (*n, u.len()))
        .ok_or_else(syntax)?;
        // "m" must not swallow the "m" of "ms": the table lists "ms" first, and "s" after "us".
        rest = &after[unit_len..];

        let int: i128 = int_part.parse().map_err(|_| overflow())?;
        let mut value = int.checked_mul(unit_nanos).ok_or_else(overflow)?;
        if !frac_part.is_empty() {
            let digits = frac_part.len().min(18);
            let frac: i128 = frac_part[..digits].parse().map_err(|_| syntax())?;
            let scale = 10_i128.pow(digits as u32);
            value = value
                .checked_add(frac.checked_mul(unit_nanos).ok_or_else(overflow)? / scale)
                .ok_or_else(overflow)?;
        }
        total = total.checked_add(value).ok_or_else(overflow)?;
        if total > MAX_DURATION_SECS * 1_000_000_000 {
            return Err(overflow());
        }
    }
    Ok(SignedDuration::from_nanos_i128(total))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_go_syntax_plus_days() {
        let cases = [
            ("90s", 90_000),
            ("10m", 600_000),
            ("1h30m", 5_400_000),
            ("1.5h", 5_400_000),
            ("30d", 30 * 86_400_000),
            ("500ms", 500),
            ("1m30s", 90_000),
            ("0s", 0),
            ("2d12h", 60 * 3_600_000),
        ];
        for (input, millis) in cases {
            assert_eq!(
                parse_duration(input).map(|d| d.as_millis()),
                Ok(millis),
                "{input}"
            );
        }
        assert_eq!(parse_duration("1500us").map(|d| d.as_micros()), Ok(1500));
        assert_eq!(parse_duration("7µs").map(|d| d.as_nanos()), Ok(7000));
    }

    #[test]
    fn durations_reject_bad_syntax_and_overflow() {
        for input in [
            "", "10", "m", "-5m", "1.m", ".5h", "10 m", "1y", "1h-", "P1D",
        ] {
            assert!(
                matches!(parse_duration(input), Err(DurationError::Syntax(_))),
                "{input}"
            );
        }
        for input in [
            "36600d1s",
            "99999999999999999999999999999999999999999h",
            "3000000000000000000000000ns",
        ] {
            assert!(
                matches!(parse_duration(input), Err(DurationError::Overflow(_))),
                "{input}"
            );
        }
    }

    #[test]
    fn agent_names() {
        assert!(check_agent_name("payments-deploy-bot").is_ok());
        assert!(check_agent_name("a").is_ok());
        assert!(check_agent_name("a.b_c-d").is_ok());
        assert!(check_agent_name(&"a".repeat(63)).is_ok());
        assert!(check_agent_name(&"a".repeat(64)).is_err());
        for bad in ["", "-a", "a-", "A", "a b", "a/b"] {
            assert!(check_agent_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn dns_subdomains() {
        assert!(is_dns_subdomain("deploy-bot-agent-key"));
        assert!(is_dns_subdomain("a.b.c"));
        assert!(!is_dns_subdomain("a..b"));
        assert!(!is_dns_subdomain("A"));
        assert!(!is_dns_subdomain(&"a".repeat(254)));
    }
}
