//! The chart can never pass the operator a flag or an environment variable it does not know: the
//! Deployment's arguments are parsed by the operator's own parser (`config::Args`, clap's
//! `try_parse_from`), and the parsed settings are compared with the values that produced them.
//! The reverse holds too: every setting of `lattice-operator run` is reachable from the chart's
//! values.

#[path = "chart/support.rs"]
mod support;

use std::collections::{BTreeMap, BTreeSet};

use clap::{CommandFactory, Parser};
use lattice_operator::config::{Args, Command, LogFormat, RunArgs};
use serde_json::{Value, json};
use support::*;

fn parse(args: &[String]) -> Result<Args, clap::Error> {
    Args::try_parse_from(std::iter::once("lattice-operator".to_owned()).chain(args.iter().cloned()))
}

fn parse_run(r: &Rendered) -> (Args, RunArgs) {
    let args = r.args();
    assert_eq!(args.first().map(String::as_str), Some("run"), "{args:?}");
    let parsed = parse(&args)
        .unwrap_or_else(|e| panic!("the operator rejects the chart's arguments {args:?}:\n{e}"));
    let Command::Run(run) = parsed.command.clone() else {
        panic!("not the run subcommand: {args:?}");
    };
    (parsed, run)
}

fn container_port(r: &Rendered) -> u16 {
    let port = &r.container()["ports"][0];
    assert_eq!(port["name"], "metrics");
    u16::try_from(port["containerPort"].as_u64().expect("containerPort")).expect("a port")
}

#[test]
fn the_default_arguments_are_accepted_and_mean_what_the_chart_says() {
    let r = render(Value::Null);
    let (args, run) = parse_run(&r);
    assert_eq!(args.log_format, LogFormat::Json);
    assert_eq!(args.log_filter, "info");
    assert_eq!(run.agentlattice_url, "https://www.agentlattice.io");
    assert_eq!(
        run.service_key_secret.to_string(),
        format!("{NAMESPACE}/agentlattice-service-key")
    );
    assert_eq!(run.service_key_field, "AL_SERVICE_KEY");
    assert!(run.leader_election);
    assert_eq!(run.lease_name, "lattice-operator");
    assert_eq!(
        run.lease_namespace(),
        NAMESPACE,
        "the Lease is where the Role allows it"
    );
    assert_eq!(run.lease_duration, jiff::SignedDuration::from_secs(15));
    assert!(
        run.operator.namespaces.is_empty(),
        "cluster-wide by default"
    );
    assert_eq!(run.operator.concurrency, 16);
    assert_eq!(
        run.operator.resync_interval,
        jiff::SignedDuration::from_mins(10)
    );
    assert_eq!(run.operator.al_rate, 20.0);
    assert_eq!(run.operator.al_burst, 40);
    assert_eq!(run.operator.al_timeout, jiff::SignedDuration::from_secs(10));
    assert_eq!(
        run.operator.service_key_retry,
        jiff::SignedDuration::from_mins(5)
    );
    assert_eq!(run.operator.cluster_name, None);

    // The probes, the Service and the admin server agree on one port.
    assert_eq!(run.metrics_addr.port(), container_port(&r));
    assert!(
        run.metrics_addr.ip().is_unspecified(),
        "reachable from the kubelet and Prometheus"
    );

    // The lease and the service key the operator uses are the ones RBAC allows.
    let role = r.get("Role", "lattice-operator-own-namespace");
    let names: BTreeSet<&str> = role["rules"]
        .as_array()
        .expect("rules")
        .iter()
        .flat_map(|rl| rl["resourceNames"].as_array().into_iter().flatten())
        .filter_map(Value::as_str)
        .collect();
    assert_eq!(
        names,
        BTreeSet::from([
            run.service_key_secret.name.as_str(),
            run.lease_name.as_str()
        ])
    );
    assert_eq!(run.service_key_secret.namespace, NAMESPACE);
}

#[test]
fn non_default_values_reach_the_operator() {
    let r = render(non_default_values());
    let (args, run) = parse_run(&r);
    assert_eq!(args.log_format, LogFormat::Plain);
    assert_eq!(args.log_filter, "info,lattice_operator=debug");
    assert_eq!(run.agentlattice_url, "https://agentlattice.example.com");
    assert_eq!(
        run.service_key_secret.to_string(),
        format!("{NAMESPACE}/al-provisioner")
    );
    assert_eq!(run.service_key_field, "token");
    assert_eq!(run.operator.namespaces, vec!["payments", "web"]);
    assert_eq!(run.operator.cluster_name.as_deref(), Some("prod-eu-1"));
    assert_eq!(run.operator.concurrency, 4);
    assert_eq!(
        run.operator.resync_interval,
        jiff::SignedDuration::from_mins(90)
    );
    assert_eq!(run.operator.al_rate, 2.5);
    assert_eq!(run.operator.al_burst, 5);
    assert_eq!(run.operator.al_timeout, jiff::SignedDuration::from_secs(30));
    assert_eq!(
        run.operator.service_key_retry,
        jiff::SignedDuration::from_mins(1)
    );
    assert!(run.leader_election);
    assert_eq!(run.lease_name, "lattice-leader");
    assert_eq!(run.lease_namespace(), NAMESPACE);
    assert_eq!(run.lease_duration, jiff::SignedDuration::from_secs(30));
    assert_eq!(run.metrics_addr.to_string(), "[::]:9090");
    assert_eq!(run.metrics_addr.port(), container_port(&r));

    // Without leader election the flag says so, and no Lease flag is passed.
    let r = render(json!({"leaderElection": {"enabled": false}}));
    let (_, run) = parse_run(&r);
    assert!(!run.leader_election);

    // An emulator on loopback is accepted by both the schema and the operator.
    let r = render(json!({"agentlattice": {"url": "http://127.0.0.1:8480"}}));
    let (_, run) = parse_run(&r);
    assert_eq!(run.agentlattice_url, "http://127.0.0.1:8480");

    // Large numbers are printed as integers, not 1e+06.
    let r =
        render(json!({"agentlattice": {"burst": 1_000_000, "rate": 1000}, "concurrency": 1000}));
    let (_, run) = parse_run(&r);
    assert_eq!(run.operator.al_burst, 1_000_000);
    assert_eq!(run.operator.concurrency, 1000);
}

/// The operator's settings by environment variable name: `env name → long flag`.
fn operator_env() -> BTreeMap<String, String> {
    let mut env = BTreeMap::new();
    let root = Args::command();
    let run = root
        .find_subcommand("run")
        .expect("a run subcommand")
        .clone();
    for arg in root.get_arguments().chain(run.get_arguments()) {
        if let (Some(name), Some(long)) = (arg.get_env(), arg.get_long()) {
            env.insert(name.to_string_lossy().into_owned(), long.to_owned());
        }
    }
    env
}

/// Problems with the environment of the operator container: a variable in the operator's
/// namespace (`LATTICE_*`, `AL_*`, `RUST_LOG`) that it does not read (a typo would be ignored
/// silently), or one it reads with a value it rejects.
fn env_problems(container: &Value) -> Vec<String> {
    let known = operator_env();
    let mut problems = Vec::new();
    for var in container["env"].as_array().into_iter().flatten() {
        let name = var["name"].as_str().unwrap_or_default();
        match known.get(name) {
            Some(long) => {
                let Some(value) = var["value"].as_str() else {
                    continue; // valueFrom: resolved by the kubelet, not ours to check
                };
                let flag = format!("--{long}={value}");
                let mut argv = vec!["run".to_owned()];
                if long != "service-key-secret" {
                    argv.push("--service-key-secret=ns/name".to_owned());
                }
                argv.push(flag.clone());
                if let Err(e) = parse(&argv) {
                    problems.push(format!("{name}={value}: the operator rejects it: {e}"));
                }
            }
            None if name.starts_with("LATTICE_")
                || name.starts_with("AL_")
                || name == "RUST_LOG" =>
            {
                problems.push(format!("{name}: the operator reads no such variable"));
            }
            None => {}
        }
    }
    problems
}

#[test]
fn environment_variables_the_chart_sets_are_operator_settings() {
    for r in render_many(&[Value::Null, non_default_values()]) {
        let problems = env_problems(r.container());
        assert!(problems.is_empty(), "{problems:?}");
    }
    // The check itself sees a misspelt or a bad setting.
    let container = json!({"env": [
        {"name": "LATTICE_CONCURENCY", "value": "4"},
        {"name": "LATTICE_CONCURRENCY", "value": "0"},
        {"name": "LATTICE_RESYNC_INTERVAL", "value": "1h"},
        {"name": "HTTPS_PROXY", "value": "http://proxy:3128"},
    ]});
    let problems = env_problems(&container);
    assert_eq!(problems.len(), 2, "{problems:?}");
    assert!(problems[0].starts_with("LATTICE_CONCURENCY: the operator reads no such variable"));
    assert!(problems[1].starts_with("LATTICE_CONCURRENCY=0: the operator rejects it"));
}

/// Settings of `lattice-operator run` the chart deliberately does not expose as values, with why.
/// (Users can still pass any of them with `extraArgs`.)
const NOT_IN_VALUES: &[(&str, &str)] = &[];

/// Every setting of `lattice-operator run` (and the global ones) is passed by the chart in the
/// default or the non-default render, or listed in `NOT_IN_VALUES` with a reason: a new operator
/// flag is a new chart value.
#[test]
fn every_operator_setting_is_reachable_from_the_values() {
    let renders = render_many(&[
        Value::Null,
        non_default_values(),
        json!({"leaderElection": {"enabled": false}}),
    ]);
    let mut passed = BTreeSet::new();
    for r in &renders {
        for arg in r.args().iter().skip(1) {
            let name = arg
                .strip_prefix("--")
                .unwrap_or_else(|| panic!("not a long flag: {arg}"));
            let name = name.split_once('=').map_or(name, |(n, _)| n);
            passed.insert(name.to_owned());
        }
    }
    let root = Args::command();
    let run = root
        .find_subcommand("run")
        .expect("a run subcommand")
        .clone();
    let settings: BTreeSet<String> = root
        .get_arguments()
        .chain(run.get_arguments())
        .filter(|a| !matches!(a.get_id().as_str(), "help" | "version"))
        .filter_map(|a| a.get_long().map(str::to_owned))
        .collect();
    let excused: BTreeSet<String> = NOT_IN_VALUES.iter().map(|(n, _)| n.to_string()).collect();
    let missing: Vec<&String> = settings
        .iter()
        .filter(|s| !passed.contains(*s) && !excused.contains(*s))
        .collect();
    assert!(
        missing.is_empty(),
        "operator settings the chart cannot set: {missing:?}. Add a value for each \
         (values.yaml, values.schema.json, templates/deployment.yaml, tests/chart/support.rs \
         non_default_values) or list it in NOT_IN_VALUES with the reason."
    );
    let unknown: Vec<&String> = passed.difference(&settings).collect();
    assert!(
        unknown.is_empty(),
        "flags the operator does not have: {unknown:?}"
    );
}

#[test]
fn the_argument_parser_is_the_operators() {
    // Guard against a vacuous pass: the same parser rejects what the operator rejects.
    let bad = [
        vec![
            "run".to_owned(),
            "--service-key-secret=ns/key".to_owned(),
            "--no-such-flag".to_owned(),
        ],
        vec![
            "run".to_owned(),
            "--service-key-secret=ns/key".to_owned(),
            "--concurrency=0".to_owned(),
        ],
        vec!["run".to_owned()],
    ];
    for argv in bad {
        assert!(parse(&argv).is_err(), "{argv:?}");
    }
    assert!(
        Args::try_parse_from(["lattice-operator", "run", "--service-key-secret", "a/b"]).is_ok()
    );
}
