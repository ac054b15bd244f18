//! `list [-n NS | -A] [--not-ready] [--rotating] [--watch]`.

use std::io::Write;

use futures::StreamExt;
use jiff::Timestamp;
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher::{self, watcher};
use serde::Serialize;

use super::{dynamic_api, list_agents, parse};
use crate::cli::{ListArgs, Output};
use crate::error::{Error, Result};
use crate::view::{AgentRow, list_table};
use crate::{Ctx, table, write_data};

/// `-o json|yaml` of `list`.
#[derive(Serialize)]
struct Items<'a> {
    items: &'a [AgentRow],
}

fn keep(args: &ListArgs, row: &AgentRow) -> bool {
    (!args.not_ready || !row.is_ready()) && (!args.rotating || row.is_rotating())
}

/// Lists, then (with `--watch`) prints each change until interrupted.
pub async fn run(ctx: &Ctx, args: &ListArgs, out: &mut (dyn Write + Send)) -> Result<()> {
    if args.all_namespaces && ctx.namespace_given {
        return Err(Error::Usage(
            "-A/--all-namespaces and -n/--namespace cannot be used together".to_owned(),
        ));
    }
    let scope = (!args.all_namespaces).then_some(ctx.namespace.as_str());
    let rows: Vec<AgentRow> = list_agents(ctx, scope)
        .await?
        .iter()
        .map(AgentRow::of)
        .filter(|r| keep(args, r))
        .collect();
    let now = Timestamp::now();
    let widths = match ctx.output {
        Output::Table => {
            let t = list_table(&rows, args.all_namespaces, now);
            if rows.is_empty() && !args.watch {
                eprintln!("{}", nothing_found(args, scope));
            } else {
                write!(out, "{}", t.render(""))?;
            }
            t.widths()
        }
        other => {
            if args.watch {
                for row in &rows {
                    write_watched(other, row, out)?;
                }
            } else {
                write_data(other, &Items { items: &rows }, out)?;
            }
            Vec::new()
        }
    };
    out.flush()?;
    if !args.watch {
        return Ok(());
    }
    watch(ctx, args, scope, &widths, out).await
}

fn nothing_found(args: &ListArgs, scope: Option<&str>) -> String {
    let filter = match (args.not_ready, args.rotating) {
        (true, true) => " not ready and rotating",
        (true, false) => " not ready",
        (false, true) => " rotating",
        (false, false) => "",
    };
    match scope {
        Some(ns) => format!("No LatticeAgents{filter} in namespace {ns}."),
        None => format!("No LatticeAgents{filter} in any namespace."),
    }
}

/// One watched object for `-o json` (one compact document per line) or `-o yaml` (`---`
/// separated documents).
fn write_watched(output: Output, row: &AgentRow, out: &mut dyn Write) -> Result<()> {
    match output {
        Output::Yaml => {
            writeln!(out, "---")?;
            write_data(Output::Yaml, row, out)
        }
        _ => {
            let line = serde_json::to_string(row).map_err(|e| Error::Encode(e.to_string()))?;
            writeln!(out, "{line}")?;
            Ok(())
        }
    }
}

/// Prints a line for each change after the list (kubectl's `--watch`), until Ctrl-C or a closed
/// output. Changes that do not alter the row (e.g. a resync) print nothing.
async fn watch(
    ctx: &Ctx,
    args: &ListArgs,
    scope: Option<&str>,
    widths: &[usize],
    out: &mut (dyn Write + Send),
) -> Result<()> {
    let api = dynamic_api(ctx, scope);
    let mut stream = watcher(api, watcher::Config::default())
        .default_backoff()
        .boxed();
    let mut last: std::collections::HashMap<(String, String), AgentRow> =
        std::collections::HashMap::new();
    let mut listed = false;
    let interrupted = tokio::signal::ctrl_c();
    tokio::pin!(interrupted);
    loop {
        let event = tokio::select! {
            _ = &mut interrupted => return Ok(()),
            event = stream.next() => event,
        };
        let Some(event) = event else {
            return Ok(());
        };
        let (obj, deleted) = match event {
            Ok(watcher::Event::InitApply(obj)) => {
                // The state the list printed: remember it, print nothing.
                let row = AgentRow::of(&parse(obj));
                last.insert((row.namespace.clone(), row.name.clone()), row);
                continue;
            }
            Ok(watcher::Event::InitDone) => {
                listed = true;
                continue;
            }
            Ok(watcher::Event::Init) => continue,
            Ok(watcher::Event::Apply(obj)) => (obj, false),
            Ok(watcher::Event::Delete(obj)) => (obj, true),
            Err(e) => {
                if let watcher::Error::InitialListFailed(kube::Error::Api(s))
                | watcher::Error::WatchStartFailed(kube::Error::Api(s))
                | watcher::Error::WatchFailed(kube::Error::Api(s)) = &e
                    && s.code == 403
                {
                    return Err(Error::Forbidden(crate::error::forbidden(
                        &s.message,
                        Some("Watching LatticeAgents"),
                    )));
                }
                eprintln!("watch interrupted ({e}); retrying");
                continue;
            }
        };
        if !listed {
            continue;
        }
        let row = AgentRow::of(&parse(obj));
        let key = (row.namespace.clone(), row.name.clone());
        if deleted {
            last.remove(&key);
        } else if last.get(&key) == Some(&row) {
            continue;
        } else {
            last.insert(key, row.clone());
        }
        if !keep(args, &row) {
            continue;
        }
        match ctx.output {
            Output::Table => {
                let mut cells = row.cells(args.all_namespaces, Timestamp::now());
                if deleted {
                    // kubectl prints a deleted object's last state; say so in the name.
                    let at = usize::from(args.all_namespaces);
                    cells[at] = format!("{} (deleted)", cells[at]);
                }
                writeln!(out, "{}", table::line(&cells, widths))?;
            }
            other => write_watched(other, &row, out)?,
        }
        out.flush()?;
    }
}
