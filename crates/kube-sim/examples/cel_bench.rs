//! CEL cost benchmark: what `x-kubernetes-validations` rules cost on the write paths they run on.
//!
//! ```text
//! cargo run --release -p kube-sim --example cel_bench [-- --crds 200 --objects 2000 --rounds 20000 --concurrency 16]
//! ```
//!
//! Two parts, each on two CRDs: the operator's own (`crds/latticeagents.agentlattice.io.yaml`,
//! one transition rule on the root) and `Widget`, a CRD with eleven rules of every shape CRDs
//! use (scalar bounds, regex, list macros, map keys, `messageExpression`, `fieldPath`, transition
//! rules on a field and on a `map` list):
//!
//! * in process, no HTTP: compiling each schema (`CrdSchema::compile`, what a CRD create or
//!   update pays) and validating an object on create and on update (`CrdSchema::validate`, what
//!   every CR write pays), `--rounds` times each;
//! * through kube-rs over TLS, end to end: `--crds` CRD creates, then `--objects` CR creates and
//!   as many merge-patch updates (`--concurrency` at a time) of each kind.
//!
//! The in-process figures isolate the CEL and schema work; the end-to-end ones show what share of
//! a real request it is. Compare builds by running them alternately (the machine's speed drifts).

use std::path::Path;
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Api, DynamicObject, ListParams, Patch, PatchParams, PostParams};
use kube::core::{ApiResource, GroupVersionKind};
use kube_sim::KubeSim;
use kube_sim::schema::CrdSchema;
use serde_json::{Value, json};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

struct Opts {
    crds: usize,
    objects: usize,
    rounds: usize,
    concurrency: usize,
}

fn opts() -> Opts {
    let mut o = Opts {
        crds: 200,
        objects: 2_000,
        rounds: 20_000,
        concurrency: 16,
    };
    let args: Vec<String> = std::env::args().skip(1).collect();
    for w in args.windows(2) {
        let v = w[1].parse().unwrap_or(0);
        match w[0].as_str() {
            "--crds" if v > 0 => o.crds = v,
            "--objects" if v > 0 => o.objects = v,
            "--rounds" if v > 0 => o.rounds = v,
            "--concurrency" if v > 0 => o.concurrency = v,
            _ => {}
        }
    }
    o
}

fn operator_crd() -> Result<Value, BoxError> {
    let path =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../crds/latticeagents.agentlattice.io.yaml");
    let text = std::fs::read_to_string(&path)?;
    Ok(serde_saphyr::from_str(&text)?)
}

fn widget_schema() -> Value {
    json!({"type": "object", "properties": {
        "spec": {"type": "object",
            "x-kubernetes-validations": [
                {"rule": "self.minReplicas <= self.replicas", "message": "minReplicas must not exceed replicas", "fieldPath": ".minReplicas"},
                {"rule": "self.name == oldSelf.name", "message": "name is immutable", "reason": "FieldValueForbidden"}
            ],
            "properties": {
                "name": {"type": "string", "maxLength": 63,
                    "x-kubernetes-validations": [{"rule": "self.matches('^[a-z]([-a-z0-9]*[a-z0-9])?$')", "message": "name must be a DNS label"}]},
                "replicas": {"type": "integer",
                    "x-kubernetes-validations": [{"rule": "self >= 0 && self <= 100"}]},
                "minReplicas": {"type": "integer"},
                "tags": {"type": "array", "maxItems": 32, "items": {"type": "string", "maxLength": 64},
                    "x-kubernetes-validations": [
                        {"rule": "self.all(t, t.size() <= 20 && t.lowerAscii() == t)", "message": "tags are short and lower case"},
                        {"rule": "self.size() == 0 || self.exists_one(t, t == 'primary')", "messageExpression": "'exactly one primary tag, got: ' + self.join(', ')"}
                    ]},
                "ports": {"type": "array", "maxItems": 16, "x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name"],
                    "items": {"type": "object", "required": ["name", "port"], "properties": {
                        "name": {"type": "string", "maxLength": 15}, "port": {"type": "integer"}},
                        "x-kubernetes-validations": [{"rule": "self.port == oldSelf.port || self.port >= 1024", "message": "a changed port must be unprivileged"}]},
                    "x-kubernetes-validations": [{"rule": "self.map(p, p.port).all(x, x > 0 && x < 65536)"}]},
                "limits": {"type": "object", "maxProperties": 8, "additionalProperties": {"type": "string", "maxLength": 32},
                    "x-kubernetes-validations": [{"rule": "self.all(k, k in ['cpu', 'memory'] || k.startsWith('x-'))", "message": "unknown limit"}]},
                "ratio": {"type": "number", "x-kubernetes-validations": [{"rule": "self >= 0.0 && self <= 1.0"}]}
            }},
        "status": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}
    }})
}

fn widget_crd(group: &str) -> Value {
    json!({
        "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
        "metadata": {"name": format!("widgets.{group}")},
        "spec": {"group": group, "scope": "Namespaced",
            "names": {"plural": "widgets", "singular": "widget", "kind": "Widget"},
            "versions": [{"name": "v1", "served": true, "storage": true,
                "subresources": {"status": {}},
                "schema": {"openAPIV3Schema": widget_schema()}}]}
    })
}

fn widget(i: usize) -> Value {
    json!({"apiVersion": "example.com/v1", "kind": "Widget",
        "metadata": {"name": format!("w-{i}")},
        "spec": {"name": format!("w-{i}"), "replicas": 3, "minReplicas": 1,
            "tags": ["primary", "web", format!("t{}", i % 50)],
            "ports": [{"name": "http", "port": 8080}, {"name": "metrics", "port": 9090}],
            "limits": {"cpu": "500m", "memory": "256Mi", "x-gpu": "0"}, "ratio": 0.5}})
}

fn widget_update(i: usize) -> Value {
    json!({"spec": {"replicas": 4, "tags": ["primary", "web", "updated", format!("t{}", i % 50)],
        "ports": [{"name": "http", "port": 8081}, {"name": "metrics", "port": 9090}]}})
}

fn agent(i: usize) -> Value {
    json!({"apiVersion": "agentlattice.io/v1alpha1", "kind": "LatticeAgent",
        "metadata": {"name": format!("a-{i}")},
        "spec": {"description": "Deploys the demo service to staging",
            "capabilities": ["deploy.staging", "rollback.staging"],
            "rotation": {"gracePeriod": "1m", "maxGracePeriod": "1h"}, "deletionPolicy": "Revoke"}})
}

fn agent_update() -> Value {
    json!({"spec": {"description": "Deploys the demo service to production",
        "capabilities": ["deploy.staging", "rollback.staging", "deploy.production"]}})
}

fn schema_of(crd: &Value) -> &Value {
    &crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
}

/// Per-call time of `f`, run `n` times (after `n / 10` warm-up calls).
fn per_call(n: usize, mut f: impl FnMut()) -> Duration {
    for _ in 0..n / 10 {
        f();
    }
    let t = Instant::now();
    for _ in 0..n {
        f();
    }
    t.elapsed() / n as u32
}

fn in_process(name: &str, schema: &Value, new: &Value, old: &Value, rounds: usize) {
    let prefix = "spec.versions[0].schema.openAPIV3Schema";
    let compile = per_call(rounds / 10, || {
        std::hint::black_box(CrdSchema::compile(schema, prefix).ok());
    });
    let Ok(s) = CrdSchema::compile(schema, prefix) else {
        println!("{name}: the schema does not compile");
        return;
    };
    let errs = s.validate(new, None);
    let upd_errs = s.validate(new, Some(old));
    if !errs.is_empty() || !upd_errs.is_empty() {
        println!("{name}: unexpected errors {errs:?} {upd_errs:?}");
    }
    let create = per_call(rounds, || {
        std::hint::black_box(s.validate(new, None));
    });
    let update = per_call(rounds, || {
        std::hint::black_box(s.validate(new, Some(old)));
    });
    println!(
        "  {name:<12} compile {:>8.1} µs   validate on create {:>6.2} µs   on update {:>6.2} µs",
        compile.as_secs_f64() * 1e6,
        create.as_secs_f64() * 1e6,
        update.as_secs_f64() * 1e6
    );
}

fn merged(base: &Value, patch: &Value) -> Value {
    let mut out = base.clone();
    if let (Some(o), Some(p)) = (out["spec"].as_object_mut(), patch["spec"].as_object()) {
        for (k, v) in p {
            o.insert(k.clone(), v.clone());
        }
    }
    out
}

async fn writes(
    name: &str,
    prefix: &str,
    crs: &Api<DynamicObject>,
    o: &Opts,
    make: impl Fn(usize) -> Value,
    patch: impl Fn(usize) -> Value,
) -> Result<(), BoxError> {
    let t = Instant::now();
    let results: Vec<Result<(), BoxError>> = futures::stream::iter(0..o.objects)
        .map(|i| {
            let crs = crs.clone();
            let obj = make(i);
            async move {
                let obj: DynamicObject = serde_json::from_value(obj)?;
                crs.create(&PostParams::default(), &obj).await?;
                Ok(())
            }
        })
        .buffer_unordered(o.concurrency)
        .collect()
        .await;
    results.into_iter().collect::<Result<Vec<()>, BoxError>>()?;
    let create = t.elapsed();
    let t = Instant::now();
    let results: Vec<Result<(), BoxError>> = futures::stream::iter(0..o.objects)
        .map(|i| {
            let crs = crs.clone();
            let p = patch(i);
            let name = format!("{prefix}-{i}");
            async move {
                crs.patch(&name, &PatchParams::default(), &Patch::Merge(&p))
                    .await
                    .map(|_| ())
                    .map_err(BoxError::from)
            }
        })
        .buffer_unordered(o.concurrency)
        .collect()
        .await;
    results.into_iter().collect::<Result<Vec<()>, BoxError>>()?;
    let update = t.elapsed();
    let rate = |d: Duration| o.objects as f64 / d.as_secs_f64();
    println!(
        "  {name:<12} create {:>7.0} /s   merge-patch update {:>7.0} /s",
        rate(create),
        rate(update)
    );
    Ok(())
}

async fn wait_served(crs: &Api<DynamicObject>) {
    for _ in 0..200 {
        if crs.list(&ListParams::default().limit(1)).await.is_ok() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    let o = opts();
    let op = operator_crd()?;
    println!(
        "kube-sim CEL bench: {} rounds in process; {} CRD creates, {} CR creates + updates per kind over kube-rs (concurrency {})",
        o.rounds, o.crds, o.objects, o.concurrency
    );

    println!("in process (schema compile; validation of one object):");
    let a = agent(1);
    let a_old = {
        let mut x = a.clone();
        x["status"] = json!({"agentId": "agt-1"});
        x
    };
    let a_new = {
        let mut x = merged(&a, &agent_update());
        x["status"] = json!({"agentId": "agt-1"});
        x
    };
    in_process("LatticeAgent", schema_of(&op), &a_new, &a_old, o.rounds);
    let w_old = widget(1);
    let w_new = merged(&w_old, &widget_update(1));
    in_process("Widget", &widget_schema(), &w_new, &w_old, o.rounds);

    println!("end to end (kube-rs over TLS):");
    let sim = KubeSim::start().await?;
    let client = sim.client();
    let nss: Api<Namespace> = Api::all(client.clone());
    let ns = Namespace {
        metadata: ObjectMeta {
            name: Some("cel".into()),
            ..Default::default()
        },
        ..Default::default()
    };
    nss.create(&PostParams::default(), &ns).await?;
    let crd_api: Api<DynamicObject> = Api::all_with(
        client.clone(),
        &ApiResource::from_gvk(&GroupVersionKind::gvk(
            "apiextensions.k8s.io",
            "v1",
            "CustomResourceDefinition",
        )),
    );
    let t = Instant::now();
    for i in 0..o.crds {
        let c: DynamicObject = serde_json::from_value(widget_crd(&format!("g{i}.example.com")))?;
        crd_api.create(&PostParams::default(), &c).await?;
    }
    let d = t.elapsed();
    println!(
        "  CRD create (Widget schema, 11 rules) {:>7.2} ms each",
        d.as_secs_f64() * 1e3 / o.crds as f64
    );
    crd_api
        .create(&PostParams::default(), &serde_json::from_value(op.clone())?)
        .await?;
    crd_api
        .create(
            &PostParams::default(),
            &serde_json::from_value(widget_crd("example.com"))?,
        )
        .await?;

    let agents: Api<DynamicObject> = Api::namespaced_with(
        client.clone(),
        "cel",
        &ApiResource::from_gvk(&GroupVersionKind::gvk(
            "agentlattice.io",
            "v1alpha1",
            "LatticeAgent",
        )),
    );
    let widgets: Api<DynamicObject> = Api::namespaced_with(
        client.clone(),
        "cel",
        &ApiResource::from_gvk(&GroupVersionKind::gvk("example.com", "v1", "Widget")),
    );
    wait_served(&agents).await;
    wait_served(&widgets).await;
    writes("LatticeAgent", "a", &agents, &o, agent, |_| agent_update()).await?;
    writes("Widget", "w", &widgets, &o, widget, widget_update).await?;
    sim.shutdown().await;
    Ok(())
}
