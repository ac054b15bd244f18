//! Why kube-sim keeps its own CEL core and takes only the Kubernetes libraries from kube-cel:
//! the same rules through kube-sim's validation and through kube-cel's `Validator` (the `cel`
//! crate's evaluator, which a full switch would use), for agreement with cel-go and for speed.
//!
//! ```text
//! cargo run --release -p kube-sim --example cel_engines [-- --rounds 20000]
//! ```
//!
//! Each case is a rule that cel-go (the Kubernetes API server) evaluates to `true` or fails
//! with an evaluation error; a row is marked where an engine answers otherwise. The timing
//! validates the operator's CRD on update (its transition rule runs): kube-sim's figure
//! includes the structural schema validation as well, kube-cel's is the rules alone.

use std::path::Path;
use std::time::Instant;

use kube_cel::{Validator, compile_schema};
use kube_sim::schema::CrdSchema;
use serde_json::{Value, json};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// (rule, cel-go's outcome: `true`, or the start of its evaluation error). `self` is
/// `{"n": 1}`, `n` an int-or-string (a `dyn` in CEL).
const CASES: &[(&str, &str)] = &[
    ("!!true", "true"),
    ("size('héllo') == 5", "true"),
    ("'héllo'.size() == 5", "true"),
    ("self.n == 1.0", "true"),
    ("dyn(1) == 1u", "true"),
    ("{'a': self.n} == {'a': 1.0}", "true"),
    ("[0, 1].exists(x, 1 / x == 1)", "true"),
    ("[1, 0].all(x, x > 0 && 1 / x == 1) == false", "true"),
    ("type(1) == int", "true"),
    ("bool('true')", "true"),
    ("string(true) == 'true'", "true"),
    ("-(-9223372036854775807) == 9223372036854775807", "true"),
    ("-(-9223372036854775808) > 0", "integer overflow"),
    ("{'a': 1, 'a': 2}.size() == 1", "Failed with repeated key"),
    ("[1][2] == 1", "index '2' out of range in list size '1'"),
    ("quantity('1Gi').isLessThan(quantity('2Gi'))", "true"),
    (
        "isURL('https://example.com/x') && url('https://example.com/x').getHost() == 'example.com'",
        "true",
    ),
    ("cidr('10.0.0.0/8').containsIP(ip('10.1.2.3'))", "true"),
    (
        "'a,b,c'.split(',').size() == 3 && 'abc'.charAt(1) == 'b'",
        "true",
    ),
    (
        "!format.dns1123Label().validate('my-name').hasValue()",
        "true",
    ),
    ("sets.contains([1, 2, 3], [1, 2])", "true"),
    ("[3, 1, 2].isSorted() == false && [1, 2].sum() == 3", "true"),
];

fn schema(rule: &str) -> Value {
    json!({"type": "object", "properties": {"n": {"x-kubernetes-int-or-string": true}},
        "x-kubernetes-validations": [{"rule": rule}]})
}

fn outcome_kube_sim(rule: &str) -> String {
    match CrdSchema::compile(&schema(rule), "s") {
        Err(e) => format!(
            "refused: {}",
            e.first().map(|e| e.to_string()).unwrap_or_default()
        ),
        Ok(s) => match s.validate(&json!({"n": 1}), None).first() {
            None => "true".into(),
            Some(e) => e.to_string(),
        },
    }
}

fn outcome_kube_cel(v: &Validator, rule: &str) -> String {
    // `cel` 0.13 negates with `i64::neg`: a debug build panics on overflow.
    let run = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        v.validate(&schema(rule), &json!({"n": 1}), None)
    }));
    match run {
        Err(_) => "panicked".into(),
        Ok(Ok(())) => "true".into(),
        Ok(Err(errs)) => errs
            .iter()
            .next()
            .map(|e| e.message.clone())
            .unwrap_or_default(),
    }
}

fn agrees(outcome: &str, cel_go: &str) -> bool {
    if cel_go == "true" {
        outcome == "true"
    } else {
        outcome.contains(cel_go)
    }
}

fn main() -> Result<(), BoxError> {
    let rounds = std::env::args()
        .skip(1)
        .collect::<Vec<_>>()
        .windows(2)
        .find(|w| w[0] == "--rounds")
        .and_then(|w| w[1].parse().ok())
        .unwrap_or(20_000usize);
    let validator = Validator::new();
    let mut differ = (0, 0);
    std::panic::set_hook(Box::new(|_| {}));
    println!(
        "{:<3} {:<3} rule  (kube-sim | kube-cel, where either differs from cel-go)",
        "ks", "kc"
    );
    for (rule, cel_go) in CASES {
        let a = outcome_kube_sim(rule);
        let b = outcome_kube_cel(&validator, rule);
        let (oa, ob) = (agrees(&a, cel_go), agrees(&b, cel_go));
        differ.0 += usize::from(!oa);
        differ.1 += usize::from(!ob);
        let mark = |ok| if ok { "ok" } else { "XX" };
        print!("{:<3} {:<3} {rule}", mark(oa), mark(ob));
        if !oa || !ob {
            print!("\n        cel-go: {cel_go} | kube-sim: {a} | kube-cel: {b}");
        }
        println!();
    }
    let _ = std::panic::take_hook();
    println!(
        "{} cases: kube-sim differs from cel-go in {}, kube-cel in {}",
        CASES.len(),
        differ.0,
        differ.1
    );

    let path =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../crds/latticeagents.agentlattice.io.yaml");
    let crd: Value = serde_saphyr::from_str(&std::fs::read_to_string(path)?)?;
    let schema = &crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"];
    let old = json!({"apiVersion": "agentlattice.io/v1alpha1", "kind": "LatticeAgent",
        "metadata": {"name": "a", "namespace": "default"},
        "spec": {"description": "Deploys the demo service", "capabilities": ["deploy.staging", "rollback.staging"],
                 "rotation": {"gracePeriod": "1m", "maxGracePeriod": "1h"}, "deletionPolicy": "Revoke"},
        "status": {"agentId": "agt-1", "agentName": "default-a"}});
    let mut new = old.clone();
    new["spec"]["description"] = json!("Deploys the demo service to production");
    let ks = CrdSchema::compile(schema, "s").map_err(|e| format!("{e:?}"))?;
    let kc = compile_schema(schema);
    assert!(ks.validate(&new, Some(&old)).is_empty());
    assert!(validator.validate_compiled(&kc, &new, Some(&old)).is_ok());
    let time = |f: &mut dyn FnMut()| {
        for _ in 0..rounds / 10 {
            f();
        }
        let t = Instant::now();
        for _ in 0..rounds {
            f();
        }
        t.elapsed().as_secs_f64() * 1e6 / rounds as f64
    };
    let a = time(&mut || {
        std::hint::black_box(ks.validate(&new, Some(&old)));
    });
    let b = time(&mut || {
        std::hint::black_box(validator.validate_compiled(&kc, &new, Some(&old)).is_ok());
    });
    println!(
        "LatticeAgent update, {rounds} rounds: kube-sim (schema + rules) {a:.2} µs, kube-cel (rules only) {b:.2} µs"
    );
    Ok(())
}
