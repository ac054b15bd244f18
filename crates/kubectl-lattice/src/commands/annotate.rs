//! The commands that set an action annotation: `rotate` (and `--wait`), `reregister`,
//! `skip-revoke`. Each annotation is acted on when its value changes to a new non-empty value
//! (design §1), so `rotate` and `reregister` write a fresh, unique value every time.

use std::collections::BTreeSet;
use std::io::{BufRead, IsTerminal, Write};
use std::time::Duration;

use jiff::Timestamp;
use kube::api::{Patch, PatchParams};
use lattice_operator::crd::{
    COMPROMISED_ANNOTATION, LatticeAgent, REREGISTER_ANNOTATION, ROTATE_ANNOTATION,
    SKIP_REVOKE_ANNOTATION,
};
use serde::Serialize;

use super::{agents, events, get_agent};
use crate::cli::{NameArgs, Output, RotateArgs, SkipRevokeArgs};
use crate::error::{Error, Result};
use crate::view::meaning;
use crate::{Ctx, time, write_data};

/// How often `rotate --wait` reads the LatticeAgent and its events.
const POLL: Duration = Duration::from_millis(300);

/// A value no earlier request used: the time to the second, RFC 3339, and a random suffix (two
/// requests in the same second still differ).
pub fn fresh_value(now: Timestamp) -> String {
    format!(
        "{}-{:06x}",
        time::seconds(now),
        rand::random::<u32>() & 0xff_ffff
    )
}

/// The field manager of the plugin's patches.
const FIELD_MANAGER: &str = "kubectl-lattice";

async fn annotate(ctx: &Ctx, name: &str, key: &str, value: &str, need: &str) -> Result<()> {
    let patch = serde_json::json!({"metadata": {"annotations": {key: value}}});
    agents(ctx)
        .patch(
            name,
            &PatchParams {
                field_manager: Some(FIELD_MANAGER.to_owned()),
                ..PatchParams::default()
            },
            &Patch::Merge(&patch),
        )
        .await
        .map_err(|e| Error::kube_needing(format!("annotating LatticeAgent {name}"), need, e))?;
    Ok(())
}

/// What an annotation command did, for `-o json|yaml`.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Done {
    namespace: String,
    name: String,
    annotation: String,
    value: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    steps: Vec<Step>,
}

/// One step of a followed rotation.
#[derive(Serialize, Clone)]
#[serde(rename_all = "camelCase")]
struct Step {
    step: &'static str,
    key_prefix: String,
    at: Timestamp,
}

fn say(ctx: &Ctx, out: &mut dyn Write, line: &str) -> Result<()> {
    // Progress is for people: on standard output as text, on standard error with -o json|yaml
    // (whose standard output is the one document).
    if ctx.output == Output::Table {
        writeln!(out, "{line}")?;
        out.flush()?;
    } else {
        eprintln!("{line}");
    }
    Ok(())
}

/// `rotate NAME [--compromised] [--wait] [--timeout]`.
pub async fn rotate(ctx: &Ctx, args: &RotateArgs, out: &mut (dyn Write + Send)) -> Result<()> {
    let agent = get_agent(ctx, &args.name).await?;
    let old = agent.status.as_ref().and_then(|s| s.active_key.clone());
    if args.wait && old.is_none() {
        return Err(Error::Usage(format!(
            "LatticeAgent {} has no key yet: there is nothing to rotate to wait for",
            args.name
        )));
    }
    let key = if args.compromised {
        COMPROMISED_ANNOTATION
    } else {
        ROTATE_ANNOTATION
    };
    let value = fresh_value(Timestamp::now());
    annotate(ctx, &args.name, key, &value, "Rotating").await?;
    let what = if args.compromised {
        "rotate its key and revoke the old one at once"
    } else {
        "rotate its key"
    };
    say(
        ctx,
        out,
        &format!(
            "Asked LatticeAgent {}/{} to {what} ({key}={value}).",
            ctx.namespace, args.name
        ),
    )?;
    let mut done = Done {
        namespace: ctx.namespace.clone(),
        name: args.name.clone(),
        annotation: key.to_owned(),
        value,
        steps: Vec::new(),
    };
    if let (true, Some(old)) = (args.wait, old) {
        done.steps = follow(ctx, args, &agent, &old.id, &old.prefix, out).await?;
    }
    if ctx.output != Output::Table {
        write_data(ctx.output, &done, out)?;
    }
    Ok(())
}

/// Where a rotation stands, read from status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Progress {
    /// The old key is still the active one.
    Requested,
    /// A new key is in the Secret; the old one is retiring.
    NewKey,
    /// AgentLattice marked the old key deprecated.
    Deprecated,
    /// The old key is gone from status: revoked.
    Revoked,
}

fn progress(a: &LatticeAgent, old_id: &str) -> (Progress, Option<String>) {
    let Some(status) = a.status.as_ref() else {
        return (Progress::Requested, None);
    };
    let new_prefix = status.active_key.as_ref().map(|k| k.prefix.clone());
    if status.active_key.as_ref().is_none_or(|k| k.id == old_id) {
        return (Progress::Requested, new_prefix);
    }
    match status.retiring_keys.iter().find(|k| k.id == old_id) {
        None => (Progress::Revoked, new_prefix),
        Some(k) if k.deprecated_at.is_some() => (Progress::Deprecated, new_prefix),
        Some(_) => (Progress::NewKey, new_prefix),
    }
}

/// Follows the rotation from status and events until the old key is revoked.
async fn follow(
    ctx: &Ctx,
    args: &RotateArgs,
    before: &LatticeAgent,
    old_id: &str,
    old_prefix: &str,
    out: &mut (dyn Write + Send),
) -> Result<Vec<Step>> {
    let uid = before.metadata.uid.clone().unwrap_or_default();
    let total = if args.compromised { 2 } else { 3 };
    // Events already there before the request are not news.
    let mut seen_events: BTreeSet<(String, String, i32)> = events(ctx, &uid)
        .await
        .unwrap_or_default()
        .into_iter()
        .map(|e| (e.reason, e.message, e.count))
        .collect();
    let deadline = tokio::time::Instant::now() + args.timeout;
    let mut reached = Progress::Requested;
    let mut steps = Vec::new();
    let mut last_rotating: Option<(String, String)> = None;
    let mut new_prefix = String::new();
    loop {
        let a = get_agent(ctx, &args.name).await?;
        let (now_at, prefix) = progress(&a, old_id);
        if let Some(p) = prefix {
            new_prefix = p;
        }
        let secret = a
            .status
            .as_ref()
            .and_then(|s| s.secret_name.clone())
            .unwrap_or_default();
        let retiring = a
            .status
            .as_ref()
            .and_then(|s| s.retiring_keys.iter().find(|k| k.id == old_id).cloned());
        // Print every step reached, in order (a fast operator may pass several between reads).
        let all = [Progress::NewKey, Progress::Deprecated, Progress::Revoked];
        for step in all.into_iter().filter(|s| *s > reached && *s <= now_at) {
            if args.compromised && step == Progress::Deprecated {
                continue;
            }
            let n = match step {
                Progress::NewKey => 1,
                Progress::Deprecated => 2,
                _ => total,
            };
            let now = Timestamp::now();
            let line = match step {
                Progress::NewKey => {
                    let when = retiring
                        .as_ref()
                        .map(|k| {
                            format!(
                                "; the old key keeps working until it is revoked (after {}, once \
                                 unused for {}; at the latest {})",
                                time::relative(k.revoke_after, now),
                                a.spec.rotation.grace_period,
                                time::relative(k.revoke_by, now)
                            )
                        })
                        .filter(|_| !args.compromised)
                        .unwrap_or_default();
                    steps.push(Step {
                        step: "newKey",
                        key_prefix: new_prefix.clone(),
                        at: now,
                    });
                    format!(
                        "[{n}/{total}] new key {new_prefix} is in Secret {secret} (replacing \
                         {old_prefix}){when}"
                    )
                }
                Progress::Deprecated => {
                    steps.push(Step {
                        step: "oldKeyDeprecated",
                        key_prefix: old_prefix.to_owned(),
                        at: now,
                    });
                    format!("[{n}/{total}] old key {old_prefix} deprecated at AgentLattice")
                }
                _ => {
                    steps.push(Step {
                        step: "oldKeyRevoked",
                        key_prefix: old_prefix.to_owned(),
                        at: now,
                    });
                    format!("[{n}/{total}] old key {old_prefix} revoked")
                }
            };
            say(ctx, out, &line)?;
        }
        reached = reached.max(now_at);
        if reached == Progress::Revoked {
            say(
                ctx,
                out,
                &format!("Rotation of {}/{} complete.", ctx.namespace, args.name),
            )?;
            return Ok(steps);
        }

        // Why it waits, when that changes.
        let rotating = a.status.as_ref().and_then(|s| {
            s.conditions
                .iter()
                .find(|c| c.type_ == "Rotating" && c.status == "True")
                .map(|c| (c.reason.clone(), c.message.clone()))
        });
        if reached >= Progress::NewKey
            && rotating.is_some()
            && rotating.as_ref().map(|r| &r.0) != last_rotating.as_ref().map(|r| &r.0)
            && let Some((reason, message)) = &rotating
        {
            say(
                ctx,
                out,
                &format!(
                    "      {} {}",
                    meaning("Rotating", "True", reason),
                    time::humanize_timestamps(message, Timestamp::now())
                ),
            )?;
            last_rotating = rotating.clone();
        }
        // Warnings that appeared meanwhile (a failing revocation, a rejected service key…).
        if let Ok(evs) = events(ctx, &uid).await {
            for e in evs {
                let key = (e.reason.clone(), e.message.clone(), e.count);
                if seen_events.insert(key) && e.type_ == "Warning" {
                    say(
                        ctx,
                        out,
                        &format!("      warning: {}: {}", e.reason, e.message),
                    )?;
                }
            }
        }

        if tokio::time::Instant::now() >= deadline {
            let next = match reached {
                Progress::Requested => "the operator to write a new key to the Secret".to_owned(),
                Progress::NewKey if !args.compromised => {
                    format!("AgentLattice to deprecate the old key {old_prefix}")
                }
                _ => format!("the old key {old_prefix} to be revoked"),
            };
            let why = rotating
                .map(|(reason, message)| {
                    format!(
                        " (Rotating: {reason}: {})",
                        time::humanize_timestamps(&message, Timestamp::now())
                    )
                })
                .unwrap_or_default();
            return Err(Error::Timeout {
                after: args.timeout,
                what: format!("waiting for {next}{why}"),
            });
        }
        tokio::time::sleep(POLL.min(deadline - tokio::time::Instant::now())).await;
    }
}

/// `reregister NAME`.
pub async fn reregister(ctx: &Ctx, args: &NameArgs, out: &mut (dyn Write + Send)) -> Result<()> {
    let agent = get_agent(ctx, &args.name).await?;
    let ready = agent.status.as_ref().and_then(|s| {
        s.conditions
            .iter()
            .find(|c| c.type_ == "Ready")
            .map(|c| c.reason.clone())
    });
    let value = fresh_value(Timestamp::now());
    annotate(
        ctx,
        &args.name,
        REREGISTER_ANNOTATION,
        &value,
        "Re-registering",
    )
    .await?;
    say(
        ctx,
        out,
        &format!(
            "Asked LatticeAgent {}/{} to register a new agent ({REREGISTER_ANNOTATION}={value}).",
            ctx.namespace, args.name
        ),
    )?;
    if ready.as_deref() != Some("AgentRevokedExternally") {
        say(
            ctx,
            out,
            &format!(
                "Note: Ready is {}, not AgentRevokedExternally: the operator registers a new \
                 agent only after its agent was revoked outside the cluster.",
                ready.unwrap_or_else(|| "not reported yet".to_owned())
            ),
        )?;
    }
    if ctx.output != Output::Table {
        write_data(
            ctx.output,
            &Done {
                namespace: ctx.namespace.clone(),
                name: args.name.clone(),
                annotation: REREGISTER_ANNOTATION.to_owned(),
                value,
                steps: Vec::new(),
            },
            out,
        )?;
    }
    Ok(())
}

/// What `skip-revoke` leaves behind, in words.
pub fn left_behind(a: &LatticeAgent) -> String {
    let status = a.status.clone().unwrap_or_default();
    let agent = match (status.agent_name, status.agent_id) {
        (Some(name), Some(id)) => format!("agent {name} (id {id})"),
        (None, Some(id)) => format!("agent {id}"),
        _ => "its agent (if one was registered)".to_owned(),
    };
    format!(
        "The deletion will finish WITHOUT revoking {agent} at AgentLattice: the agent stays live \
         and its keys keep working (including any copy of the key outside the cluster). Revoke it \
         at AgentLattice yourself. The operator records this as a Warning event \
         RevocationSkipped."
    )
}

/// `skip-revoke NAME [--yes]`.
pub async fn skip_revoke(
    ctx: &Ctx,
    args: &SkipRevokeArgs,
    out: &mut (dyn Write + Send),
) -> Result<()> {
    let agent = get_agent(ctx, &args.name).await?;
    let target = format!("{}/{}", ctx.namespace, args.name);
    eprintln!("{}", left_behind(&agent));
    if agent.metadata.deletion_timestamp.is_none() {
        eprintln!(
            "LatticeAgent {target} is not being deleted: the annotation takes effect when it is."
        );
    }
    if !args.yes {
        if !std::io::stdin().is_terminal() {
            return Err(Error::Usage(
                "skip-revoke asks for confirmation and standard input is not a terminal: pass \
                 --yes to confirm"
                    .to_owned(),
            ));
        }
        eprint!("Set {SKIP_REVOKE_ANNOTATION}=true on {target}? [y/N] ");
        let mut answer = String::new();
        std::io::stdin().lock().read_line(&mut answer)?;
        if !matches!(answer.trim(), "y" | "Y" | "yes" | "YES" | "Yes") {
            return Err(Error::Aborted("not confirmed: nothing changed".to_owned()));
        }
    }
    annotate(
        ctx,
        &args.name,
        SKIP_REVOKE_ANNOTATION,
        "true",
        "Skipping the revocation",
    )
    .await?;
    say(
        ctx,
        out,
        &format!("Set {SKIP_REVOKE_ANNOTATION}=true on LatticeAgent {target}."),
    )?;
    if ctx.output != Output::Table {
        write_data(
            ctx.output,
            &Done {
                namespace: ctx.namespace.clone(),
                name: args.name.clone(),
                annotation: SKIP_REVOKE_ANNOTATION.to_owned(),
                value: "true".to_owned(),
                steps: Vec::new(),
            },
            out,
        )?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fresh_values_differ_and_read_as_times() {
        let now: Timestamp = "2026-11-23T10:00:00.5Z".parse().unwrap();
        let a = fresh_value(now);
        assert!(a.starts_with("2026-11-23T10:00:00Z-"), "{a}");
        assert_eq!(a.len(), "2026-11-23T10:00:00Z-".len() + 6);
        let many: BTreeSet<String> = (0..50).map(|_| fresh_value(now)).collect();
        assert!(many.len() > 45, "random suffixes");
    }

    #[test]
    fn progress_reads_the_rotation_from_status() {
        let mut a: LatticeAgent = serde_json::from_value(serde_json::json!({
            "apiVersion": "agentlattice.io/v1alpha1", "kind": "LatticeAgent",
            "metadata": {"name": "x"}, "spec": {},
            "status": {"activeKey": {"id": "old", "prefix": "Oldprefx", "createdAt": "2026-11-23T09:00:00Z"}}
        }))
        .unwrap();
        assert_eq!(progress(&a, "old").0, Progress::Requested);
        a.status = serde_json::from_value(serde_json::json!({
            "activeKey": {"id": "new", "prefix": "Newprefx", "createdAt": "2026-11-23T10:00:00Z"},
            "retiringKeys": [{"id": "old", "prefix": "Oldprefx", "retiringSince": "2026-11-23T10:00:00Z",
                              "revokeAfter": "2026-11-23T10:10:00Z", "revokeBy": "2026-11-24T10:00:00Z"}]
        }))
        .unwrap();
        assert_eq!(
            progress(&a, "old"),
            (Progress::NewKey, Some("Newprefx".to_owned()))
        );
        if let Some(s) = a.status.as_mut() {
            s.retiring_keys[0].deprecated_at = Some("2026-11-23T10:00:01Z".parse().unwrap());
        }
        assert_eq!(progress(&a, "old").0, Progress::Deprecated);
        if let Some(s) = a.status.as_mut() {
            s.retiring_keys.clear();
        }
        assert_eq!(progress(&a, "old").0, Progress::Revoked);
    }

    #[test]
    fn skip_revoke_says_what_stays_live() {
        let a: LatticeAgent = serde_json::from_value(serde_json::json!({
            "apiVersion": "agentlattice.io/v1alpha1", "kind": "LatticeAgent",
            "metadata": {"name": "x"}, "spec": {},
            "status": {"agentName": "ns-x", "agentId": "id-1"}
        }))
        .unwrap();
        let text = left_behind(&a);
        assert!(text.contains("agent ns-x (id id-1)"), "{text}");
        assert!(text.contains("the agent stays live and its keys keep working"));
    }
}
