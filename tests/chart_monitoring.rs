//! The chart's monitoring: the PrometheusRule (alerts) and the Grafana dashboard ConfigMap, each
//! behind a value and off by default.
//!
//! - The rules pass `promtool check rules`, and `promtool test rules` fires every alert from
//!   synthetic series (tests/chart/alert-tests.yaml) — promtool comes from Debian's `prometheus`
//!   package (`scripts/setup-promtool`, run by scripts/test); when it is not installed, that one
//!   test says so loudly and does not check the rules.
//! - Every metric the rules and the dashboard use is in the `/metrics` output of the operator,
//!   run as `lattice-operator run` runs it, after a lifecycle that makes each series appear.

#[path = "chart/support.rs"]
mod chart;
mod replica;
mod support;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use agentlattice_emulator::{FaultConfig, RouteFaults};
use chart::{NAMESPACE, Rendered, helm, render, render_many};
use clap::Parser;
use lattice_operator::config::{Args, Command as OperatorCommand};
use lattice_operator::crd::{COMPROMISED_ANNOTATION, ROTATE_ANNOTATION};
use serde_json::{Value, json};
use support::{SERVICE_KEY_SECRET, World, bot, wait_until};

/// The values the promtool tests were written for (see the header of alert-tests.yaml).
fn monitoring_values() -> Value {
    json!({
        "metrics": {"perAgent": true},
        "prometheusRule": {
            "enabled": true,
            "keyMaxAgeDays": 30,
            "serviceKeyMaxAgeDays": 180,
            "alertLabels": {"team": "platform"},
            "runbookBaseUrl": "https://runbooks.example.com/lattice/",
        },
        "grafanaDashboard": {"enabled": true},
    })
}

fn rule_object(r: &Rendered) -> &Value {
    let rules = r.all("PrometheusRule");
    assert_eq!(rules.len(), 1, "{:?}", r.inventory());
    &rules[0].value
}

/// Every rule of the PrometheusRule.
fn rules(r: &Rendered) -> Vec<&Value> {
    rule_object(r)["spec"]["groups"]
        .as_array()
        .expect("groups")
        .iter()
        .flat_map(|g| g["rules"].as_array().expect("rules").iter())
        .collect()
}

fn alert_names(r: &Rendered) -> BTreeSet<String> {
    rules(r)
        .iter()
        .filter_map(|r| r["alert"].as_str().map(str::to_owned))
        .collect()
}

fn dashboard(r: &Rendered) -> (Value, Value) {
    let maps = r.all("ConfigMap");
    assert_eq!(maps.len(), 1, "{:?}", r.inventory());
    let cm = maps[0].value.clone();
    let json = cm["data"]["lattice-operator.json"]
        .as_str()
        .expect("the dashboard JSON");
    let dash: Value = serde_json::from_str(json).expect("the dashboard is JSON");
    (cm, dash)
}

/// Every PromQL expression of the dashboard.
fn dashboard_exprs(dash: &Value) -> Vec<String> {
    fn walk(v: &Value, out: &mut Vec<String>) {
        match v {
            Value::Object(map) => {
                for (k, v) in map {
                    if k == "expr"
                        && let Some(s) = v.as_str()
                    {
                        out.push(s.to_owned());
                    }
                    walk(v, out);
                }
            }
            Value::Array(items) => items.iter().for_each(|i| walk(i, out)),
            _ => {}
        }
    }
    let mut out = Vec::new();
    walk(dash, &mut out);
    out
}

/// The metric names a PromQL expression selects: identifiers that are not functions or
/// aggregations (followed by `(`), keywords, label names (inside `{…}` or a `by (…)` list),
/// strings, durations in `[…]` or numbers.
fn metric_names(expr: &str) -> BTreeSet<String> {
    const KEYWORDS: &[&str] = &[
        "and",
        "or",
        "unless",
        "bool",
        "offset",
        "by",
        "without",
        "on",
        "ignoring",
        "group_left",
        "group_right",
        "inf",
        "nan",
        // aggregations, which may be followed by `by (…)` rather than `(`
        "sum",
        "min",
        "max",
        "avg",
        "group",
        "stddev",
        "stdvar",
        "count",
        "count_values",
        "bottomk",
        "topk",
        "quantile",
    ];
    let chars: Vec<char> = expr.chars().collect();
    let mut names = BTreeSet::new();
    let mut i = 0;
    let mut skip_paren_list = false;
    while i < chars.len() {
        let c = chars[i];
        match c {
            '"' | '\'' | '`' => {
                i += 1;
                while i < chars.len() && chars[i] != c {
                    if chars[i] == '\\' {
                        i += 1;
                    }
                    i += 1;
                }
                i += 1;
            }
            '{' | '[' => {
                let close = if c == '{' { '}' } else { ']' };
                while i < chars.len() && chars[i] != close {
                    if chars[i] == '"' {
                        i += 1;
                        while i < chars.len() && chars[i] != '"' {
                            i += 1;
                        }
                    }
                    i += 1;
                }
                i += 1;
            }
            '(' if skip_paren_list => {
                while i < chars.len() && chars[i] != ')' {
                    i += 1;
                }
                skip_paren_list = false;
                i += 1;
            }
            c if c.is_ascii_digit()
                || (c == '.' && chars.get(i + 1).is_some_and(char::is_ascii_digit)) =>
            {
                while i < chars.len()
                    && (chars[i].is_ascii_alphanumeric()
                        || chars[i] == '.'
                        || ((chars[i] == '-' || chars[i] == '+')
                            && matches!(chars[i - 1], 'e' | 'E')))
                {
                    i += 1;
                }
            }
            c if c.is_ascii_alphabetic() || c == '_' || c == ':' => {
                let start = i;
                while i < chars.len()
                    && (chars[i].is_ascii_alphanumeric() || matches!(chars[i], '_' | ':'))
                {
                    i += 1;
                }
                let word: String = chars[start..i].iter().collect();
                let mut j = i;
                while j < chars.len() && chars[j].is_whitespace() {
                    j += 1;
                }
                let lower = word.to_ascii_lowercase();
                if matches!(
                    lower.as_str(),
                    "by" | "without" | "on" | "ignoring" | "group_left" | "group_right"
                ) {
                    skip_paren_list = chars.get(j) == Some(&'(');
                } else if chars.get(j) == Some(&'(') || KEYWORDS.contains(&lower.as_str()) {
                    // a function or an aggregation, or a keyword
                } else {
                    names.insert(word);
                }
            }
            _ => i += 1,
        }
    }
    names
}

#[test]
fn the_metric_name_scanner_finds_metrics_and_nothing_else() {
    assert_eq!(
        metric_names(
            "histogram_quantile(0.99, sum by (le, operation) (rate(lattice_a_bucket{x=\"y\",le!=\"1\"}[$__rate_interval]))) > 1e-9 and on() up offset 5m"
        ),
        BTreeSet::from(["lattice_a_bucket".to_owned(), "up".to_owned()])
    );
    assert_eq!(
        metric_names("max by (namespace, name) (k) > 86400"),
        BTreeSet::from(["k".to_owned()])
    );
    assert_eq!(
        metric_names(
            "(sum by (operation) (increase(m_total{status!~\"2..|404\"}[30m])) > 0) unless (n > bool 0)"
        ),
        BTreeSet::from(["m_total".to_owned(), "n".to_owned()])
    );
}

#[test]
fn monitoring_is_off_by_default_and_each_part_follows_its_values() {
    let [default, on, custom] = <[Rendered; 3]>::try_from(render_many(&[
        Value::Null,
        monitoring_values(),
        json!({
            "prometheusRule": {"enabled": true, "labels": {"release": "kube-prometheus-stack"}},
            "grafanaDashboard": {"enabled": true, "namespace": "monitoring",
                                 "labels": {"dashboards": "platform", "grafana_dashboard": null},
                                 "annotations": {"grafana_folder": "Platform"}},
            "commonAnnotations": {"owner": "platform@example.com"},
        }),
    ]))
    .unwrap_or_else(|_| panic!("three renders"));

    // Off by default, and the per-agent gauge too.
    assert!(default.all("PrometheusRule").is_empty() && default.all("ConfigMap").is_empty());
    let args = default.args();
    assert!(
        args.contains(&"--per-agent-metrics=false".to_owned()),
        "{args:?}"
    );

    // The operator accepts the flag the chart passes, and it means what the value says.
    let parsed =
        Args::try_parse_from(std::iter::once("lattice-operator".to_owned()).chain(on.args()))
            .expect("the operator accepts the chart's arguments");
    let OperatorCommand::Run(run) = parsed.command else {
        panic!("run");
    };
    assert!(run.operator.per_agent_metrics);

    // All alerts with per-agent metrics and a service key policy; without, those two are left out
    // (an alert on a series that does not exist would never fire).
    assert_eq!(
        alert_names(&on),
        BTreeSet::from(
            [
                "LatticeAgentKeyTooOld",
                "LatticeReconcileErrors",
                "LatticeRevocationsFailing",
                "LatticeRotationOverdue",
                "LatticeServiceKeyMissing",
                "LatticeServiceKeyRejected",
                "LatticeServiceKeyTooOld",
            ]
            .map(String::from)
        )
    );
    assert_eq!(
        alert_names(&custom),
        BTreeSet::from(
            [
                "LatticeReconcileErrors",
                "LatticeRevocationsFailing",
                "LatticeRotationOverdue",
                "LatticeServiceKeyMissing",
                "LatticeServiceKeyRejected",
            ]
            .map(String::from)
        )
    );
    let rule = rule_object(&custom);
    assert_eq!(rule["apiVersion"], "monitoring.coreos.com/v1");
    assert_eq!(rule["metadata"]["namespace"], NAMESPACE);
    assert_eq!(
        rule["metadata"]["labels"]["release"],
        "kube-prometheus-stack"
    );
    assert_eq!(
        rule["metadata"]["annotations"]["owner"],
        "platform@example.com"
    );
    for r in rules(&on) {
        let url = r["annotations"]["runbook_url"]
            .as_str()
            .expect("runbook_url");
        let anchor = r["alert"].as_str().expect("alert").to_lowercase();
        assert_eq!(
            url,
            format!("https://runbooks.example.com/lattice#{anchor}")
        );
        assert_eq!(r["labels"]["team"], "platform");
        assert!(matches!(
            r["labels"]["severity"].as_str(),
            Some("warning" | "critical")
        ));
    }
    // Each runbook anchor is a heading of docs/operations.md.
    let ops = std::fs::read_to_string(chart::workspace().join("docs/operations.md"))
        .expect("docs/operations.md");
    for name in alert_names(&on) {
        assert!(
            ops.contains(&format!("#### {name}")),
            "docs/operations.md has no runbook heading for {name}"
        );
    }

    // The dashboard: sidecar label by default, or the configured ones, in the chosen namespace.
    let (cm, dash) = dashboard(&on);
    assert_eq!(cm["metadata"]["namespace"], NAMESPACE);
    assert_eq!(cm["metadata"]["labels"]["grafana_dashboard"], "1");
    assert_eq!(dash["uid"], "lattice-operator");
    assert!(dashboard_exprs(&dash).len() >= 10);
    let (cm, _) = dashboard(&custom);
    assert_eq!(cm["metadata"]["namespace"], "monitoring");
    assert_eq!(cm["metadata"]["labels"]["dashboards"], "platform");
    assert!(
        cm["metadata"]["labels"].get("grafana_dashboard").is_none(),
        "the default label is dropped by setting it to null"
    );
    assert_eq!(cm["metadata"]["annotations"]["grafana_folder"], "Platform");
    assert_eq!(
        cm["metadata"]["annotations"]["owner"],
        "platform@example.com"
    );

    // The ServiceMonitor keeps the per-agent gauge's `namespace` label as the operator sets it.
    let sm = render(json!({"metrics": {"serviceMonitor": {"enabled": true}}}));
    let sm = sm.get("ServiceMonitor", "lattice-operator");
    assert_eq!(sm["spec"]["endpoints"][0]["honorLabels"], true);
}

#[test]
fn lint_is_clean_with_monitoring_on() {
    let response = &helm(&[
        json!({"op": "lint", "values": monitoring_values(), "strict": true,
                                  "kube_version": "v1.29.0"}),
    ])[0];
    let report = &response["ok"];
    let problems: Vec<&Value> = report["messages"]
        .as_array()
        .expect("messages")
        .iter()
        .filter(|m| m["severity"].as_i64().unwrap_or(3) >= 2)
        .collect();
    assert!(
        problems.is_empty() && report["errors"] == json!([]),
        "helm lint --strict: {problems:?} {}",
        report["errors"]
    );
}

#[test]
fn the_schema_rejects_bad_monitoring_values() {
    let bad = [
        json!({"prometheusRule": {"keyMaxAgeDays": 0}}),
        json!({"prometheusRule": {"serviceKeyMaxAgeDays": -1}}),
        json!({"prometheusRule": {"runbookBaseUrl": "docs/operations.md"}}),
        json!({"prometheusRule": {"enabled": "yes"}}),
        json!({"prometheusRule": {"alertLabels": {"team": 1}}}),
        json!({"prometheusRule": {"severity": "page"}}),
        json!({"grafanaDashboard": {"namespace": "Not_A_Namespace"}}),
        json!({"grafanaDashboard": {"labels": "grafana_dashboard"}}),
        json!({"metrics": {"perAgent": "true"}}),
    ];
    let requests: Vec<Value> = bad
        .iter()
        .map(|v| json!({"op": "validate_schema", "values": v}))
        .collect();
    for (values, response) in bad.iter().zip(helm(&requests)) {
        assert!(
            response.get("error").is_some(),
            "the schema accepts {values}: {response}"
        );
    }
    let ok = helm(&[json!({"op": "validate_schema", "values": monitoring_values()})]);
    assert!(ok[0].get("ok").is_some(), "{}", ok[0]);
}

/// `promtool` from `$PROMTOOL` or `PATH`.
fn promtool() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("PROMTOOL").filter(|p| !p.is_empty()) {
        return Some(PathBuf::from(p));
    }
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join("promtool"))
            .find(|p| p.is_file())
    })
}

fn run_promtool(promtool: &Path, dir: &Path, args: &[&str]) -> String {
    let output = Command::new(promtool)
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap_or_else(|e| panic!("running {}: {e}", promtool.display()));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(output.status.success(), "promtool {args:?} failed:\n{text}");
    text
}

#[test]
fn alert_rules_pass_promtool_check_and_unit_tests() {
    let r = render(monitoring_values());
    // Every alert has a promtool case where it fires.
    let tests_text =
        std::fs::read_to_string(chart::workspace().join("tests/chart/alert-tests.yaml"))
            .expect("alert-tests.yaml");
    let tests: Value = lattice_operator::yaml::from_str(&tests_text).expect("alert-tests.yaml");
    let fired: BTreeSet<String> = tests["tests"]
        .as_array()
        .expect("tests")
        .iter()
        .flat_map(|t| t["alert_rule_test"].as_array().into_iter().flatten())
        .filter(|c| c["exp_alerts"].as_array().is_some_and(|a| !a.is_empty()))
        .filter_map(|c| c["alertname"].as_str().map(str::to_owned))
        .collect();
    assert_eq!(
        fired,
        alert_names(&r),
        "each alert needs a case that fires it"
    );

    let Some(promtool) = promtool() else {
        eprintln!(
            "\n!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!\n\
             !!! promtool NOT FOUND: the chart's alert rules were NOT checked by promtool.\n\
             !!! Run scripts/setup-promtool (apt-get install prometheus), or set PROMTOOL.\n\
             !!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!\n"
        );
        return;
    };
    let dir = std::env::temp_dir().join(format!(
        "lattice-alert-tests-{}-{}",
        std::process::id(),
        rand::random::<u32>()
    ));
    std::fs::create_dir_all(&dir).expect("a temporary directory");
    let groups = json!({"groups": rule_object(&r)["spec"]["groups"]});
    std::fs::write(
        dir.join("rules.yaml"),
        serde_json::to_string_pretty(&groups).expect("JSON is YAML"),
    )
    .expect("rules.yaml written");
    std::fs::write(dir.join("alert-tests.yaml"), &tests_text).expect("tests written");
    let checked = run_promtool(&promtool, &dir, &["check", "rules", "rules.yaml"]);
    assert!(
        checked.contains(&format!("SUCCESS: {} rules found", alert_names(&r).len())),
        "{checked}"
    );
    let tested = run_promtool(&promtool, &dir, &["test", "rules", "alert-tests.yaml"]);
    assert!(tested.contains("SUCCESS"), "{tested}");

    // The check can fail: a broken expression and a wrong expectation are refused.
    let mut broken = groups.clone();
    broken["groups"][0]["rules"][0]["expr"] = json!("max(lattice_rotations_overdue > 0");
    std::fs::write(dir.join("broken.yaml"), broken.to_string()).expect("written");
    let status = Command::new(&promtool)
        .args(["check", "rules", "broken.yaml"])
        .current_dir(&dir)
        .output()
        .expect("promtool runs");
    assert!(!status.status.success(), "promtool accepted a broken rule");
    for (right, wrong) in [
        ("severity: critical", "severity: info"),
        ("30d 1h 10m 0s old", "30d 1h 11m 0s old"),
        (
            "- eval_time: 20m\n        alertname: LatticeRotationOverdue",
            "- eval_time: 16m\n        alertname: LatticeRotationOverdue",
        ),
    ] {
        assert!(tests_text.contains(right), "{right}");
        std::fs::write(
            dir.join("wrong-tests.yaml"),
            tests_text.replace(right, wrong),
        )
        .expect("written");
        let status = Command::new(&promtool)
            .args(["test", "rules", "wrong-tests.yaml"])
            .current_dir(&dir)
            .output()
            .expect("promtool runs");
        assert!(
            !status.status.success(),
            "promtool accepted a wrong expectation: {wrong}"
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// Sample names of a `/metrics` text (`name{labels} value` → `name`).
fn sample_names(text: &str) -> BTreeSet<String> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .filter_map(|l| l.split(['{', ' ']).next().map(str::to_owned))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_metric_the_rules_and_the_dashboard_use_is_exported() {
    // What the chart uses.
    let r = render(monitoring_values());
    let mut used: BTreeSet<String> = BTreeSet::new();
    for rule in rules(&r) {
        let expr = rule["expr"].as_str().expect("expr");
        let names = metric_names(expr);
        assert!(!names.is_empty(), "{expr} uses no metric");
        used.extend(names);
    }
    let (_, dash) = dashboard(&r);
    for expr in dashboard_exprs(&dash) {
        let names = metric_names(&expr);
        assert!(!names.is_empty(), "{expr} uses no metric");
        used.extend(names);
    }
    let foreign: Vec<&String> = used.iter().filter(|n| !n.starts_with("lattice_")).collect();
    assert!(
        foreign.is_empty(),
        "the rules and the dashboard are built only on the operator's metrics: {foreign:?}"
    );

    // The operator, as `lattice-operator run` runs it with the chart's per-agent flag, after a
    // lifecycle that makes every series appear: a throttled registration (Retry-After), a
    // compromised rotation (a revocation), and the service key read.
    let w = World::start("monitoring").await;
    let args = replica::run_args(
        &w.emu.base_url(),
        &w.ns,
        SERVICE_KEY_SECRET,
        "15s",
        &["--per-agent-metrics=true"],
    );
    let running = replica::start(w.client.clone(), args, "monitoring-0").await;
    w.emu
        .set_faults(FaultConfig::new().route("register", RouteFaults::throttle_next(1, 1)));
    w.create(&bot(
        "deploy-bot",
        "  rotation: {gracePeriod: 1s, maxGracePeriod: 2s}",
    ))
    .await;
    let _ = w.wait_settled("deploy-bot", true).await;
    w.annotate("deploy-bot", COMPROMISED_ANNOTATION, "leak-1")
        .await;
    wait_until("the old key revoked", || async {
        let a = w.get("deploy-bot").await;
        let s = a.status?;
        (s.handled.compromised.as_deref() == Some("leak-1") && s.retiring_keys.is_empty())
            .then_some(())
    })
    .await;
    let text = wait_until("every used series in /metrics", || async {
        let (code, body) = replica::http_get(running.admin, "/metrics").await;
        assert_eq!(code, 200);
        let names = sample_names(&body);
        used.iter().all(|n| names.contains(n)).then_some(body)
    })
    .await;
    assert!(!text.contains("al_agent_") && !text.contains("al_svc_"));
    assert!(
        text.contains(
            "lattice_agent_key_age_seconds{namespace=\"monitoring\",name=\"deploy-bot\"}"
        ),
        "{text}"
    );

    // The new gauges follow the operator: an old key past its revokeBy while AgentLattice
    // refuses revocations is overdue, and no longer once it is revoked; a deleted LatticeAgent
    // has no per-agent series.
    let scrape = || async {
        let (_, body) = replica::http_get(running.admin, "/metrics").await;
        replica::parse_metrics(&body)
    };
    w.emu
        .set_faults(FaultConfig::new().route("revoke_key", RouteFaults::error_rate(1.0, 503)));
    w.annotate("deploy-bot", ROTATE_ANNOTATION, "r-1").await;
    wait_until("a rotation overdue", || async {
        (scrape().await.get("lattice_rotations_overdue") == Some(&1.0)).then_some(())
    })
    .await;
    w.emu.clear_faults();
    wait_until("no rotation overdue", || async {
        (scrape().await.get("lattice_rotations_overdue") == Some(&0.0)).then_some(())
    })
    .await;
    w.delete("deploy-bot").await;
    w.wait_gone("deploy-bot").await;
    wait_until("the per-agent series gone", || async {
        (!scrape()
            .await
            .keys()
            .any(|k| k.starts_with("lattice_agent_key_age_seconds{")))
        .then_some(())
    })
    .await;
    running.terminate().await.expect("a clean stop");
}
