//! Table-driven tests of the schema module with upstream's message strings.

use serde_json::{Value, json};

use super::*;

const P: &str = "spec.validation.openAPIV3Schema";

/// A root schema with `spec` holding `field`.
fn with_spec_field(field: Value) -> Value {
    json!({"type": "object", "properties": {"spec": {"type": "object", "properties": {"f": field}}}})
}

fn compile(schema: &Value) -> CrdSchema {
    match CrdSchema::compile(schema, P) {
        Ok(s) => s,
        Err(e) => panic!(
            "schema did not compile: {:#?}",
            e.iter().map(|e| e.to_string()).collect::<Vec<_>>()
        ),
    }
}

fn msgs(errs: &[FieldError]) -> Vec<String> {
    errs.iter().map(|e| e.to_string()).collect()
}

fn validate_field(field: Value, value: Value) -> Vec<String> {
    let s = compile(&with_spec_field(field));
    msgs(&s.validate(
        &json!({"apiVersion": "x/v1", "kind": "X", "spec": {"f": value}}),
        None,
    ))
}

/// One positive and one negative case per keyword, with upstream's exact message.
#[test]
fn openapi_keywords() {
    let cases: Vec<(Value, Value, Value, &str)> = vec![
        (
            json!({"type": "integer"}),
            json!(3),
            json!("x"),
            r#"spec.f: Invalid value: "string": spec.f in body must be of type integer: "string""#,
        ),
        (
            json!({"type": "integer"}),
            json!(3.0),
            json!(3.5),
            r#"spec.f: Invalid value: "number": spec.f in body must be of type integer: "number""#,
        ),
        (
            json!({"type": "number"}),
            json!(3),
            json!(true),
            r#"spec.f: Invalid value: "boolean": spec.f in body must be of type number: "boolean""#,
        ),
        (
            json!({"type": "string"}),
            json!("a"),
            json!({"a": 1}),
            r#"spec.f: Invalid value: "object": spec.f in body must be of type string: "object""#,
        ),
        (
            json!({"type": "boolean"}),
            json!(false),
            json!("true"),
            r#"spec.f: Invalid value: "string": spec.f in body must be of type boolean: "string""#,
        ),
        (
            json!({"type": "array", "items": {"type": "string"}}),
            json!(["a"]),
            json!("a"),
            r#"spec.f: Invalid value: "string": spec.f in body must be of type array: "string""#,
        ),
        (
            json!({"type": "object"}),
            json!({}),
            json!([1]),
            r#"spec.f: Invalid value: "array": spec.f in body must be of type object: "array""#,
        ),
        (
            json!({"type": "string"}),
            json!("a"),
            json!(null),
            r#"spec.f: Invalid value: "null": spec.f in body must be of type string: "null""#,
        ),
        (
            json!({"type": "string", "nullable": true, "enum": ["a", null]}),
            json!(null),
            json!("b"),
            r#"spec.f: Unsupported value: "b": supported values: "a", "null""#,
        ),
        (
            json!({"type": "string", "enum": ["a", "b"]}),
            json!("a"),
            json!("c"),
            r#"spec.f: Unsupported value: "c": supported values: "a", "b""#,
        ),
        (
            json!({"type": "integer", "enum": [1, 2]}),
            json!(2),
            json!(3),
            r#"spec.f: Unsupported value: 3: supported values: "1", "2""#,
        ),
        (
            json!({"type": "string", "pattern": "^[a-z]+$"}),
            json!("abc"),
            json!("ABC"),
            r#"spec.f: Invalid value: "ABC": spec.f in body should match '^[a-z]+$'"#,
        ),
        (
            json!({"type": "string", "minLength": 2}),
            json!("ab"),
            json!("a"),
            r#"spec.f: Invalid value: "a": spec.f in body should be at least 2 chars long"#,
        ),
        (
            json!({"type": "string", "maxLength": 2}),
            json!("éé"),
            json!("abc"),
            "spec.f: Too long: may not be more than 2 bytes",
        ),
        (
            json!({"type": "integer", "minimum": 1}),
            json!(1),
            json!(0),
            "spec.f: Invalid value: 0: spec.f in body should be greater than or equal to 1",
        ),
        (
            json!({"type": "integer", "minimum": 1, "exclusiveMinimum": true}),
            json!(2),
            json!(1),
            "spec.f: Invalid value: 1: spec.f in body should be greater than 1",
        ),
        (
            json!({"type": "integer", "maximum": 10}),
            json!(10),
            json!(11),
            "spec.f: Invalid value: 11: spec.f in body should be less than or equal to 10",
        ),
        (
            json!({"type": "integer", "maximum": 10, "exclusiveMaximum": true}),
            json!(9),
            json!(10),
            "spec.f: Invalid value: 10: spec.f in body should be less than 10",
        ),
        (
            json!({"type": "number", "maximum": 1.5}),
            json!(1.5),
            json!(2.25),
            "spec.f: Invalid value: 2.25: spec.f in body should be less than or equal to 1.5",
        ),
        (
            json!({"type": "integer", "multipleOf": 3}),
            json!(9),
            json!(10),
            "spec.f: Invalid value: 10: spec.f in body should be a multiple of 3",
        ),
        (
            json!({"type": "number", "multipleOf": 0.5}),
            json!(1.5),
            json!(1.25),
            "spec.f: Invalid value: 1.25: spec.f in body should be a multiple of 0.5",
        ),
        (
            json!({"type": "array", "items": {"type": "string"}, "minItems": 1}),
            json!(["a"]),
            json!([]),
            "spec.f: Invalid value: 0: spec.f in body should have at least 1 items",
        ),
        (
            json!({"type": "array", "items": {"type": "string"}, "maxItems": 1}),
            json!(["a"]),
            json!(["a", "b"]),
            "spec.f: Too many: 2: must have at most 1 items",
        ),
        (
            json!({"type": "object", "additionalProperties": {"type": "string"}, "minProperties": 1}),
            json!({"a": "b"}),
            json!({}),
            "spec.f: Invalid value: 0: spec.f in body should have at least 1 properties",
        ),
        (
            json!({"type": "object", "additionalProperties": {"type": "string"}, "maxProperties": 1}),
            json!({"a": "b"}),
            json!({"a": "b", "c": "d"}),
            "spec.f: Too many: 2: must have at most 1 items",
        ),
        (
            json!({"type": "object", "properties": {"a": {"type": "string"}}, "required": ["a"]}),
            json!({"a": "x"}),
            json!({}),
            "spec.f.a: Required value",
        ),
        (
            json!({"type": "object", "additionalProperties": {"type": "integer"}}),
            json!({"k": 1}),
            json!({"k": "x"}),
            r#"spec.f.k: Invalid value: "string": spec.f.k in body must be of type integer: "string""#,
        ),
        (
            json!({"type": "array", "items": {"type": "object", "properties": {"x": {"type": "integer"}}}}),
            json!([{"x": 1}]),
            json!([{"x": "y"}]),
            r#"spec.f[0].x: Invalid value: "string": spec.f[0].x in body must be of type integer: "string""#,
        ),
        (
            json!({"type": "string", "format": "date-time"}),
            json!("2024-01-02T03:04:05Z"),
            json!("yesterday"),
            r#"spec.f: Invalid value: "yesterday": spec.f in body must be of type date-time: "yesterday""#,
        ),
        (
            json!({"type": "string", "format": "uuid"}),
            json!("6ba7b810-9dad-11d1-80b4-00c04fd430c8"),
            json!("nope"),
            r#"spec.f: Invalid value: "nope": spec.f in body must be of type uuid: "nope""#,
        ),
        (
            json!({"type": "string", "format": "date"}),
            json!("2024-02-29"),
            json!("2023-02-29"),
            r#"spec.f: Invalid value: "2023-02-29": spec.f in body must be of type date: "2023-02-29""#,
        ),
        (
            json!({"type": "string", "format": "byte"}),
            json!("aGk="),
            json!("!!"),
            r#"spec.f: Invalid value: "!!": spec.f in body must be of type byte: "!!""#,
        ),
        (
            json!({"type": "string", "format": "ipv4"}),
            json!("10.0.0.1"),
            json!("10.0.0.256"),
            r#"spec.f: Invalid value: "10.0.0.256": spec.f in body must be of type ipv4: "10.0.0.256""#,
        ),
        // unknown formats are not validated (int32 is stripped too)
        (
            json!({"type": "string", "format": "k8s-name"}),
            json!("anything"),
            json!(1),
            r#"spec.f: Invalid value: "integer": spec.f in body must be of type string: "integer""#,
        ),
        (
            json!({"x-kubernetes-int-or-string": true}),
            json!("50%"),
            json!(true),
            r#"spec.f: Invalid value: "boolean": spec.f in body must be of type integer,string: "boolean""#,
        ),
        (
            json!({"type": "string", "anyOf": [{"pattern": "^a"}, {"pattern": "^b"}]}),
            json!("bx"),
            json!("cx"),
            r#"<nil>: Invalid value: "": "spec.f" must validate at least one schema (anyOf)"#,
        ),
        (
            json!({"type": "string", "oneOf": [{"pattern": "^a"}, {"pattern": "x$"}]}),
            json!("bx"),
            json!("ax"),
            r#"<nil>: Invalid value: "": "spec.f" must validate one and only one schema (oneOf). Found 2 valid alternatives"#,
        ),
        (
            json!({"type": "string", "allOf": [{"minLength": 1}, {"maxLength": 3}]}),
            json!("ab"),
            json!("abcd"),
            r#"<nil>: Invalid value: "": "spec.f" must validate all the schemas (allOf)"#,
        ),
        (
            json!({"type": "string", "not": {"pattern": "^admin$"}}),
            json!("bob"),
            json!("admin"),
            r#"<nil>: Invalid value: "": "spec.f" must not validate the schema (not)"#,
        ),
        (
            json!({"type": "array", "x-kubernetes-list-type": "set", "items": {"type": "string"}}),
            json!(["a", "b"]),
            json!(["a", "b", "a"]),
            r#"spec.f[2]: Duplicate value: "a""#,
        ),
        (
            json!({"type": "array", "x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name"], "items": {"type": "object", "required": ["name"], "properties": {"name": {"type": "string"}}}}),
            json!([{"name": "a"}, {"name": "b"}]),
            json!([{"name": "a"}, {"name": "a"}]),
            r#"spec.f[1]: Duplicate value: map[string]interface {}{"name":"a"}"#,
        ),
        (
            json!({"type": "object", "x-kubernetes-embedded-resource": true, "x-kubernetes-preserve-unknown-fields": true}),
            json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x"}}),
            json!({"kind": "ConfigMap"}),
            "spec.f.apiVersion: Required value: must not be empty",
        ),
    ];
    for (schema, good, bad, want) in cases {
        let ok = validate_field(schema.clone(), good.clone());
        assert!(
            ok.is_empty(),
            "schema {schema} value {good}: unexpected {ok:?}"
        );
        let got = validate_field(schema.clone(), bad.clone());
        assert!(
            got.iter().any(|g| g == want),
            "schema {schema} value {bad}:\n got  {got:#?}\n want {want}"
        );
    }
}

#[test]
fn some_messages_in_full() {
    // several errors, upstream order, and the aggregate form
    let s = compile(
        &json!({"type": "object", "properties": {"spec": {"type": "object", "required": ["a", "b"], "properties": {
        "a": {"type": "string"}, "b": {"type": "integer"}, "c": {"type": "string", "maxLength": 1}}}}}),
    );
    let errs = s.validate(&json!({"spec": {"c": "long"}}), None);
    assert_eq!(
        crate::error::aggregate(&errs),
        "[spec.c: Too long: may not be more than 1 bytes, spec.a: Required value, spec.b: Required value]"
    );
    // required at the root: go-openapi's ".spec" path is trimmed
    let s = compile(
        &json!({"type": "object", "required": ["spec"], "properties": {"spec": {"type": "object"}}}),
    );
    assert_eq!(
        msgs(&s.validate(&json!({}), None)),
        vec!["spec: Required value"]
    );
    // embedded resource metadata goes through ValidateObjectMeta with the path-segment name rule
    let s = compile(&with_spec_field(
        json!({"type": "object", "x-kubernetes-embedded-resource": true, "x-kubernetes-preserve-unknown-fields": true}),
    ));
    let got = msgs(&s.validate(&json!({"spec": {"f": {"apiVersion": "a/b/c", "kind": "my_kind", "metadata": {"name": "a/b", "labels": {"-x": "y"}}}}}), None));
    assert_eq!(
        got[0],
        r#"spec.f.apiVersion: Invalid value: "a/b/c": unexpected GroupVersion string: a/b/c"#
    );
    assert!(got.iter().any(|g| g == r#"spec.f.kind: Invalid value: "my_kind": may have mixed case, but should otherwise match: a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an alphabetic character, and end with an alphanumeric character (e.g. 'my-name',  or 'abc-123', regex used for validation is '[a-z]([-a-z0-9]*[a-z0-9])?')"#), "{got:#?}");
    assert!(
        got.iter()
            .any(|g| g == r#"spec.f.metadata.name: Invalid value: "a/b": may not contain '/'"#),
        "{got:#?}"
    );
}

#[test]
fn pruning() {
    let s = compile(&json!({"type": "object", "properties": {
        "spec": {"type": "object", "properties": {
            "keep": {"type": "string"},
            "items": {"type": "array", "items": {"type": "object", "properties": {"a": {"type": "string"}}}},
            "labels": {"type": "object", "additionalProperties": {"type": "object", "properties": {"v": {"type": "string"}}}},
            "free": {"type": "object", "x-kubernetes-preserve-unknown-fields": true, "properties": {"typed": {"type": "object", "properties": {"x": {"type": "string"}}}}},
            "template": {"type": "object", "x-kubernetes-embedded-resource": true, "properties": {"spec": {"type": "object"}}}
        }},
        "status": {"type": "object", "properties": {"ok": {"type": "boolean"}}}
    }}));
    let mut obj = json!({
        "apiVersion": "example.com/v1", "kind": "W",
        "metadata": {"name": "w", "labels": {"a": "b"}, "finalizers": [], "bogus": 1, "creationTimestamp": null,
                     "ownerReferences": [{"apiVersion": "v1", "kind": "K", "name": "n", "uid": "u", "extra": true}]},
        "spec": {
            "keep": "k", "bogus": 1,
            "items": [{"a": "x", "b": "y"}, {"c": {"d": 1}}],
            "labels": {"one": {"v": "1", "w": "2"}},
            "free": {"anything": {"goes": [1]}, "typed": {"x": "1", "y": "2"}},
            "template": {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "zzz": 1}, "spec": {"c": 1}, "other": 2}
        },
        "status": {"ok": true, "junk": 1},
        "toplevel": 1
    });
    let unknown = s.prune(&mut obj);
    assert_eq!(
        unknown,
        vec![
            "metadata.bogus",
            "metadata.ownerReferences[0].extra",
            "spec.bogus",
            "spec.free.typed.y",
            "spec.items[0].b",
            "spec.items[1].c",
            "spec.labels.one.w",
            "spec.template.other",
            "spec.template.spec.c",
            "status.junk",
            "toplevel",
            "spec.template.metadata.zzz",
        ]
    );
    assert_eq!(
        obj,
        json!({
            "apiVersion": "example.com/v1", "kind": "W",
            "metadata": {"name": "w", "labels": {"a": "b"},
                         "ownerReferences": [{"apiVersion": "v1", "kind": "K", "name": "n", "uid": "u"}]},
            "spec": {
                "keep": "k",
                "items": [{"a": "x"}, {}],
                "labels": {"one": {"v": "1"}},
                "free": {"anything": {"goes": [1]}, "typed": {"x": "1"}},
                "template": {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}, "spec": {}}
            },
            "status": {"ok": true}
        })
    );
    // root metadata: malformed fields are dropped, timestamps normalised to UTC seconds
    let mut obj = json!({"metadata": {"name": "x", "labels": {"a": 1}, "generation": 0,
        "creationTimestamp": "2024-01-01T01:00:00.5+01:00", "annotations": {}}});
    assert!(s.prune(&mut obj).is_empty());
    assert_eq!(
        obj,
        json!({"metadata": {"name": "x", "creationTimestamp": "2024-01-01T00:00:00Z"}})
    );
    // a preserve-unknown-fields root keeps everything but still prunes typed subtrees
    let s = compile(
        &json!({"type": "object", "x-kubernetes-preserve-unknown-fields": true,
        "properties": {"spec": {"type": "object", "properties": {"a": {"type": "string"}}}}}),
    );
    let mut obj = json!({"free": 1, "spec": {"a": "x", "b": 2}});
    assert_eq!(s.prune(&mut obj), vec!["spec.b"]);
    assert_eq!(obj, json!({"free": 1, "spec": {"a": "x"}}));
}

#[test]
fn defaulting() {
    let s = compile(
        &json!({"type": "object", "properties": {"spec": {"type": "object", "properties": {
            "replicas": {"type": "integer", "default": 1},
            "mode": {"type": "string", "default": "auto"},
            "nullable": {"type": "string", "nullable": true, "default": "d"},
            "plain": {"type": "string"},
            "nested": {"type": "object", "default": {}, "properties": {"inner": {"type": "string", "default": "i"}}},
            "absent": {"type": "object", "properties": {"deep": {"type": "string", "default": "never"}}},
            "list": {"type": "array", "items": {"type": "object", "properties": {"p": {"type": "integer", "default": 7}}}},
            "map": {"type": "object", "additionalProperties": {"type": "string", "default": "m"}}
        }}}}),
    );
    let mut obj = json!({"spec": {"mode": null, "nullable": null, "plain": null,
        "list": [{}, {"p": 1}], "map": {"k": null}}});
    s.default(&mut obj);
    assert_eq!(
        obj,
        json!({"spec": {"mode": "auto", "nullable": null, "list": [{"p": 7}, {"p": 1}], "map": {"k": "m"},
            "replicas": 1, "nested": {"inner": "i"}}})
    );
    // no spec at all: nothing is created
    let mut obj = json!({"metadata": {"name": "x"}});
    s.default(&mut obj);
    assert_eq!(obj, json!({"metadata": {"name": "x"}}));
}

fn schema_errs(schema: Value) -> Vec<String> {
    match CrdSchema::compile(&schema, P) {
        Ok(_) => vec![],
        Err(e) => msgs(&e),
    }
}

#[test]
fn structural_rejections() {
    let cases: Vec<(Value, &str)> = vec![
        (
            json!({"properties": {}}),
            "spec.validation.openAPIV3Schema.type: Required value: must not be empty at the root",
        ),
        (
            json!({"type": "string"}),
            r#"spec.validation.openAPIV3Schema.type: Invalid value: "string": must be object at the root"#,
        ),
        (
            with_spec_field(json!({})),
            "spec.validation.openAPIV3Schema.properties[spec].properties[f].type: Required value: must not be empty for specified object fields",
        ),
        (
            with_spec_field(json!({"type": "array"})),
            "spec.validation.openAPIV3Schema.properties[spec].properties[f].items: Required value: must be specified",
        ),
        (
            with_spec_field(json!({"type": "array", "items": {}})),
            "spec.validation.openAPIV3Schema.properties[spec].properties[f].items.type: Required value: must not be empty for specified array items",
        ),
        (
            json!({"type": "object", "additionalProperties": {"type": "string"}}),
            "spec.validation.openAPIV3Schema.additionalProperties: Forbidden: must not be used at the root",
        ),
        (
            with_spec_field(
                json!({"type": "object", "properties": {"a": {"type": "string"}}, "additionalProperties": {"type": "string"}}),
            ),
            "spec.validation.openAPIV3Schema.properties[spec].properties[f].additionalProperties: Forbidden: additionalProperties and properties are mutual exclusive",
        ),
        (
            with_spec_field(json!({"type": "string", "$ref": "#/x"})),
            "spec.validation.openAPIV3Schema.properties[spec].properties[f].$ref: Forbidden: $ref is not supported",
        ),
        (
            with_spec_field(json!({"type": "string", "anyOf": [{"type": "string"}]})),
            "spec.validation.openAPIV3Schema.properties[spec].properties[f].anyOf[0].type: Forbidden: must be empty to be structural",
        ),
        (
            with_spec_field(json!({"type": "string", "anyOf": [{"default": "x"}]})),
            "spec.validation.openAPIV3Schema.properties[spec].properties[f].anyOf[0].default: Forbidden: must be undefined to be structural",
        ),
        (
            json!({"type": "object", "anyOf": [{"properties": {"zz": {"minLength": 1}}}]}),
            "spec.validation.openAPIV3Schema.properties[zz]: Required value: because it is defined in spec.validation.openAPIV3Schema.anyOf[0].properties[zz]",
        ),
        (
            json!({"type": "object", "properties": {"metadata": {"type": "object", "properties": {"labels": {"type": "object"}}}}}),
            "spec.validation.openAPIV3Schema.properties[metadata]: Forbidden: must not specify anything other than name and generateName, but metadata is implicitly specified",
        ),
        (
            json!({"type": "object", "properties": {"kind": {"type": "integer"}}}),
            r#"spec.validation.openAPIV3Schema.properties[kind].type: Invalid value: "integer": must be string"#,
        ),
        (
            with_spec_field(json!({"type": "string", "uniqueItems": true})),
            "spec.validation.openAPIV3Schema.properties[spec].properties[f].uniqueItems: Forbidden: uniqueItems cannot be set to true since the runtime complexity becomes quadratic",
        ),
        (
            with_spec_field(json!({"type": "strin"})),
            r#"spec.validation.openAPIV3Schema.properties[spec].properties[f].type: Unsupported value: "strin": supported values: "array", "boolean", "integer", "number", "object", "string""#,
        ),
        (
            with_spec_field(json!({"type": "string", "x-kubernetes-list-type": "set"})),
            r#"spec.validation.openAPIV3Schema.properties[spec].properties[f].type: Invalid value: "string": must be array if x-kubernetes-list-type is specified"#,
        ),
        (
            with_spec_field(
                json!({"type": "array", "x-kubernetes-list-type": "map", "items": {"type": "object", "properties": {"n": {"type": "string"}}}}),
            ),
            "spec.validation.openAPIV3Schema.properties[spec].properties[f].x-kubernetes-list-map-keys: Required value: must not be empty if x-kubernetes-list-type is map",
        ),
        (
            with_spec_field(
                json!({"type": "array", "x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["n"], "items": {"type": "object", "properties": {"n": {"type": "string"}}}}),
            ),
            "spec.validation.openAPIV3Schema.properties[spec].properties[f].items.properties[n].default: Required value: this property is in x-kubernetes-list-map-keys, so it must have a default or be a required property",
        ),
        (
            with_spec_field(
                json!({"type": "string", "x-kubernetes-preserve-unknown-fields": false}),
            ),
            "spec.validation.openAPIV3Schema.properties[spec].properties[f].x-kubernetes-preserve-unknown-fields: Invalid value: false: must be true or undefined",
        ),
        (
            with_spec_field(json!({"type": "integer", "default": "x"})),
            r#"spec.validation.openAPIV3Schema.properties[spec].properties[f].default: Invalid value: "string":  in body must be of type integer: "string""#,
        ),
        (
            with_spec_field(
                json!({"type": "object", "properties": {"a": {"type": "string"}}, "default": {"a": "x", "b": 1}}),
            ),
            r#"spec.validation.openAPIV3Schema.properties[spec].properties[f].default: Invalid value: map[string]interface {}{"a":"x", "b":1}: must not have unknown fields"#,
        ),
        (
            json!({"type": "object", "properties": {"metadata": {"type": "object", "default": {"name": "x"}}}}),
            "spec.validation.openAPIV3Schema.properties[metadata].default: Forbidden: must not be set in top-level metadata",
        ),
        (
            json!({"type": "object", "nullable": true}),
            "spec.validation.openAPIV3Schema.nullable: Forbidden: nullable cannot be true at the root",
        ),
        (
            with_spec_field(json!({"type": "string", "pattern": "(unclosed"})),
            "spec.validation.openAPIV3Schema.properties[spec].properties[f].pattern: Invalid value: \"(unclosed\": must be a valid regular expression, but isn't: ",
        ),
    ];
    for (schema, want) in cases {
        let got = schema_errs(schema.clone());
        assert!(
            got.iter().any(|g| g.starts_with(want)),
            "schema {schema}:\n got  {got:#?}\n want {want}"
        );
    }
    // int-or-string's anyOf pattern is structural
    assert!(schema_errs(with_spec_field(json!({"x-kubernetes-int-or-string": true, "anyOf": [{"type": "integer"}, {"type": "string"}]}))).is_empty());
}

#[test]
fn list_type_and_node_lookup() {
    let s = compile(
        &json!({"type": "object", "properties": {"spec": {"type": "object", "properties": {
            "tags": {"type": "array", "x-kubernetes-list-type": "set", "items": {"type": "string"}},
            "ports": {"type": "array", "x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["port", "protocol"],
                "items": {"type": "object", "required": ["port", "protocol"], "properties": {
                    "port": {"type": "integer"}, "protocol": {"type": "string"},
                    "hosts": {"type": "array", "items": {"type": "string"}}}}},
            "plain": {"type": "array", "items": {"type": "string"}},
            "m": {"type": "object", "additionalProperties": {"type": "array", "x-kubernetes-list-type": "set", "items": {"type": "string"}}}
        }}}}),
    );
    assert_eq!(s.list_type_at(&["spec", "tags"]), Some(ListSemantics::Set));
    assert_eq!(
        s.list_type_at(&["spec", "ports"]),
        Some(ListSemantics::Map {
            keys: vec!["port".into(), "protocol".into()]
        })
    );
    assert_eq!(
        s.list_type_at(&["spec", "ports", "hosts"]),
        Some(ListSemantics::Atomic)
    );
    assert_eq!(
        s.list_type_at(&["spec", "plain"]),
        Some(ListSemantics::Atomic)
    );
    assert_eq!(
        s.list_type_at(&["spec", "m", "anykey"]),
        Some(ListSemantics::Set)
    );
    assert_eq!(
        s.list_type_at(&["metadata", "finalizers"]),
        Some(ListSemantics::Set)
    );
    assert_eq!(s.list_type_at(&["spec", "nope"]), None);
    assert_eq!(
        s.node_at(&["spec", "ports", "port"]),
        Some(&json!({"type": "integer"}))
    );
    assert!(s.node_at(&[]).is_some());
}

/// The operator's own rules.
fn operator_schema() -> CrdSchema {
    compile(&json!({
        "type": "object",
        "x-kubernetes-validations": [{
            "rule": "!has(oldSelf.status) || !has(oldSelf.status.agentId) || (has(self.spec.agentName) == has(oldSelf.spec.agentName) && (!has(self.spec.agentName) || self.spec.agentName == oldSelf.spec.agentName))",
            "message": "spec.agentName is immutable once the agent is registered"
        }],
        "properties": {
            "spec": {"type": "object", "properties": {
                "agentName": {"type": "string"},
                "capabilities": {"type": "array", "items": {"type": "string"},
                    "x-kubernetes-validations": [
                        {"rule": "self.all(c, c.matches('^[a-z0-9]([a-z0-9._:-]*[a-z0-9])?$'))", "message": "capabilities must be lower-case tokens"},
                        {"rule": "self.size() <= 64"}
                    ]}
            }},
            "status": {"type": "object", "properties": {"agentId": {"type": "string"}}}
        }
    }))
}

#[test]
fn operator_rules() {
    let s = operator_schema();
    let base = json!({"apiVersion": "x/v1", "kind": "A", "spec": {"agentName": "a", "capabilities": ["read", "write:x"]}});
    assert!(s.validate(&base, None).is_empty());
    // property rules
    let bad = json!({"spec": {"capabilities": ["Read"]}});
    assert_eq!(
        msgs(&s.validate(&bad, None)),
        vec![
            r#"spec.capabilities: Invalid value: "array": capabilities must be lower-case tokens"#
        ]
    );
    let many: Vec<String> = (0..65).map(|i| format!("c{i}")).collect();
    assert_eq!(
        msgs(&s.validate(&json!({"spec": {"capabilities": many}}), None)),
        vec![r#"spec.capabilities: Invalid value: "array": failed rule: self.size() <= 64"#]
    );
    // transition rule: not run on create, nor while the old object has no agentId
    let registered = json!({"spec": {"agentName": "a"}, "status": {"agentId": "id-1"}});
    let renamed = json!({"spec": {"agentName": "b"}, "status": {"agentId": "id-1"}});
    let unset = json!({"spec": {}, "status": {"agentId": "id-1"}});
    assert!(s.validate(&renamed, None).is_empty());
    assert!(
        s.validate(&renamed, Some(&json!({"spec": {"agentName": "a"}})))
            .is_empty()
    );
    assert!(s.validate(&registered, Some(&registered)).is_empty());
    let want = vec![
        r#"<nil>: Invalid value: "object": spec.agentName is immutable once the agent is registered"#,
    ];
    assert_eq!(msgs(&s.validate(&renamed, Some(&registered))), want);
    assert_eq!(msgs(&s.validate(&unset, Some(&registered))), want);
    assert_eq!(msgs(&s.validate(&registered, Some(&unset))), want);
    assert!(s.validate(&unset, Some(&unset)).is_empty());
}

#[test]
fn cel_rule_objects() {
    let field = |rules: Value| {
        with_spec_field(json!({"type": "integer", "x-kubernetes-validations": rules}))
    };
    let run = |rules: Value, v: Value| {
        msgs(&compile(&field(rules)).validate(&json!({"spec": {"f": v}}), None))
    };
    assert_eq!(
        run(json!([{"rule": "self > 1"}]), json!(0)),
        vec![r#"spec.f: Invalid value: "integer": failed rule: self > 1"#]
    );
    assert_eq!(
        run(
            json!([{"rule": "self > 1", "message": " too small "}]),
            json!(0)
        ),
        vec![r#"spec.f: Invalid value: "integer": too small"#]
    );
    assert_eq!(
        run(
            json!([{"rule": "self > 1", "messageExpression": "'got ' + string(self)"}]),
            json!(0)
        ),
        vec![r#"spec.f: Invalid value: "integer": got 0"#]
    );
    assert_eq!(
        run(
            json!([{"rule": "self > 1", "reason": "FieldValueForbidden", "message": "no"}]),
            json!(0)
        ),
        vec!["spec.f: Forbidden: no"]
    );
    assert_eq!(
        run(
            json!([{"rule": "self > 1", "reason": "FieldValueRequired", "message": "no"}]),
            json!(0)
        ),
        vec!["spec.f: Required value: no"]
    );
    assert_eq!(
        run(
            json!([{"rule": "self > 1", "reason": "FieldValueDuplicate", "message": "no"}]),
            json!(0)
        ),
        vec![r#"spec.f: Duplicate value: "integer""#]
    );
    assert_eq!(
        run(json!([{"rule": "10 / self > 1"}]), json!(0)),
        vec![
            r#"spec.f: Invalid value: "integer": division by zero evaluating rule: 10 / self > 1"#
        ]
    );
    // fieldPath
    let s = compile(
        &json!({"type": "object", "properties": {"spec": {"type": "object",
        "x-kubernetes-validations": [{"rule": "self.a != 'x'", "fieldPath": ".a", "message": "not x"}],
        "properties": {"a": {"type": "string"}}}}}),
    );
    assert_eq!(
        msgs(&s.validate(&json!({"spec": {"a": "x"}}), None)),
        vec![r#"spec.a: Invalid value: "object": not x"#]
    );
    // blocking errors skip the rules
    let s = compile(&field(json!([{"rule": "self > 1"}])));
    assert_eq!(
        msgs(&s.validate(&json!({"spec": {"f": "str"}}), None)),
        vec![
            r#"spec.f: Invalid value: "string": spec.f in body must be of type integer: "string""#,
            r#"<nil>: Invalid value: "null": some validation rules were not checked because the object was invalid; correct the existing errors to complete validation"#
        ]
    );
    // missing optional field in a rule
    let s = compile(
        &json!({"type": "object", "properties": {"spec": {"type": "object",
        "x-kubernetes-validations": [{"rule": "self.a == 'x'"}], "properties": {"a": {"type": "string"}}}}}),
    );
    assert_eq!(
        msgs(&s.validate(&json!({"spec": {}}), None)),
        vec![r#"spec: Invalid value: "object": no such key: a evaluating rule: self.a == 'x'"#]
    );
}

#[test]
fn cel_compile_rejections() {
    let errs = |rule: &str| {
        schema_errs(with_spec_field(
            json!({"type": "string", "x-kubernetes-validations": [{"rule": rule}]}),
        ))
    };
    let p = "spec.validation.openAPIV3Schema.properties[spec].properties[f].x-kubernetes-validations[0]";
    // Kubernetes library functions, once refused as outside kube-sim's subset, compile (they
    // run: `cel_library_rules`), with cel-go's overload error when misused (`isURL` is global)
    assert!(errs("quantity(self).isGreaterThan(quantity('1'))").is_empty());
    assert!(errs("isURL(self)").is_empty());
    let e = errs("self.isURL()");
    assert!(e[0].ends_with("compilation failed: ERROR: <input>:1:11: found no matching overload for 'isURL' applied to 'string.()'\n | self.isURL()\n | ..........^"), "{e:?}");
    assert_eq!(
        errs("size(self)"),
        vec![format!(
            r#"{p}.rule: Invalid value: apiextensions.ValidationRule{{Rule:"size(self)", Message:"", MessageExpression:"", Reason:(*apiextensions.FieldValueErrorReason)(nil), FieldPath:"", OptionalOldSelf:(*bool)(nil)}}: cel expression must evaluate to a bool"#
        )]
    );
    let e = errs("self.foo == 'x'");
    assert!(e[0].ends_with("compilation failed: ERROR: <input>:1:5: type 'string' does not support field selection\n | self.foo == 'x'\n | ....^"), "{e:?}");
    let e = schema_errs(
        json!({"type": "object", "x-kubernetes-validations": [{"rule": "self.spec.nope == 1"}],
        "properties": {"spec": {"type": "object", "properties": {"a": {"type": "string"}}}}}),
    );
    assert!(e[0].ends_with("compilation failed: ERROR: <input>:1:10: undefined field 'nope'\n | self.spec.nope == 1\n | .........^"), "{e:?}");
    let e = schema_errs(
        json!({"type": "object", "x-kubernetes-validations": [{"rule": "self.spec == oldSelf.spec", "optionalOldSelf": true}],
        "properties": {"spec": {"type": "object"}}}),
    );
    assert!(
        e[0].contains("optionalOldSelf: Forbidden: kube-sim does not support CEL optionalOldSelf"),
        "{e:?}"
    );
    // oldSelf inside a non-map list is uncorrelatable
    let e = schema_errs(with_spec_field(
        json!({"type": "array", "items": {"type": "string", "x-kubernetes-validations": [{"rule": "self == oldSelf"}]}}),
    ));
    assert_eq!(
        e,
        vec![
            r#"spec.validation.openAPIV3Schema.properties[spec].properties[f].items.x-kubernetes-validations[0].rule: Invalid value: "self == oldSelf": oldSelf cannot be used on the uncorrelatable portion of the schema within spec.validation.openAPIV3Schema.properties[spec].properties[f]"#
        ]
    );
    assert_eq!(
        errs(""),
        vec![format!("{p}.rule: Required value: rule is not specified")]
    );
    assert_eq!(
        schema_errs(with_spec_field(
            json!({"type": "string", "x-kubernetes-validations": [{"rule": "true", "reason": "Bad"}]})
        )),
        vec![format!(
            r#"{p}.reason: Unsupported value: "Bad": supported values: "FieldValueDuplicate", "FieldValueForbidden", "FieldValueInvalid", "FieldValueRequired""#
        )]
    );
    // metadata at the root is limited to name and generateName
    assert!(schema_errs(json!({"type": "object", "x-kubernetes-validations": [{"rule": "self.metadata.name.startsWith('a')"}]})).is_empty());
    let e = schema_errs(
        json!({"type": "object", "x-kubernetes-validations": [{"rule": "has(self.metadata.labels)"}]}),
    );
    assert!(e[0].contains("undefined field 'labels'"), "{e:?}");
}

/// Rules calling the Kubernetes CEL libraries (evaluated by kube-cel) give upstream's field
/// errors like any other rule.
#[test]
fn cel_library_rules() {
    let s = compile(
        &json!({"type": "object", "properties": {"spec": {"type": "object", "properties": {
            "memory": {"type": "string", "x-kubernetes-validations": [
                {"rule": "quantity(self).isLessThan(quantity('1Gi'))", "message": "at most 1Gi"}]},
            "endpoint": {"type": "string", "x-kubernetes-validations": [
                {"rule": "isURL(self) && url(self).getScheme() == 'https'", "messageExpression": "'not https: ' + self"}]},
            "cidr": {"type": "string", "x-kubernetes-validations": [
                {"rule": "cidr(self).containsIP(ip('10.0.0.1'))", "reason": "FieldValueForbidden", "message": "must hold 10.0.0.1"}]},
            "name": {"type": "string", "x-kubernetes-validations": [
                {"rule": "!format.dns1123Label().validate(self).hasValue()"},
                {"rule": "self.split('-').size() <= 3 && sets.intersects(self.split('-'), ['a', 'b'])"}]},
            "since": {"type": "string", "x-kubernetes-validations": [
                {"rule": "timestamp(self) + duration('1h') > timestamp('2024-01-01T00:00:00Z')"}]}
        }}}}),
    );
    let ok = json!({"spec": {"memory": "512Mi", "endpoint": "https://example.com", "cidr": "10.0.0.0/8",
        "name": "a-b", "since": "2024-01-01T00:00:00Z"}});
    assert!(
        s.validate(&ok, None).is_empty(),
        "{:?}",
        msgs(&s.validate(&ok, None))
    );
    let bad = json!({"spec": {"memory": "2Gi", "endpoint": "http://example.com", "cidr": "192.168.0.0/16",
        "name": "Not_A_Label", "since": "2023-12-31T22:00:00Z"}});
    assert_eq!(
        msgs(&s.validate(&bad, None)),
        vec![
            r#"spec.memory: Invalid value: "string": at most 1Gi"#,
            r#"spec.endpoint: Invalid value: "string": not https: http://example.com"#,
            "spec.cidr: Forbidden: must hold 10.0.0.1",
            r#"spec.name: Invalid value: "string": failed rule: !format.dns1123Label().validate(self).hasValue()"#,
            r#"spec.name: Invalid value: "string": failed rule: self.split('-').size() <= 3 && sets.intersects(self.split('-'), ['a', 'b'])"#,
            r#"spec.since: Invalid value: "string": failed rule: timestamp(self) + duration('1h') > timestamp('2024-01-01T00:00:00Z')"#,
        ]
    );
    // a library function's evaluation error is reported like the core's
    let e = msgs(&s.validate(&json!({"spec": {"memory": "lots"}}), None));
    assert!(
        e[0].starts_with(r#"spec.memory: Invalid value: "string": "#)
            && e[0].ends_with(" evaluating rule: at most 1Gi"),
        "{e:?}"
    );
    // library types are checked like the core's: a quantity is no bool, nor a string
    let errs = |rule: &str| {
        schema_errs(with_spec_field(
            json!({"type": "string", "x-kubernetes-validations": [{"rule": rule}]}),
        ))
    };
    assert!(errs("quantity(self)")[0].ends_with("cel expression must evaluate to a bool"));
    assert!(
        errs("quantity(self) + 1 == 2")[0].contains(
            "found no matching overload for '_+_' applied to '(kubernetes.Quantity, int)'"
        ),
        "{:?}",
        errs("quantity(self) + 1 == 2")
    );
    // outside the 1.32 environment: semver arrived in 1.33, the lists extension in 1.34
    assert!(
        errs("isSemver(self)")[0].contains("undeclared reference to 'isSemver' (in container '')")
    );
    assert!(errs("[1, 2].slice(0, 1) == [1]")[0].contains("undeclared reference to 'slice'"));
}

type Mutate = Box<dyn Fn(&mut Value)>;

fn crd(schema: Value) -> Value {
    json!({
        "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
        "metadata": {"name": "widgets.example.com"},
        "spec": {"group": "example.com", "scope": "Namespaced",
            "names": {"plural": "widgets", "kind": "Widget"},
            "versions": [{"name": "v1", "served": true, "storage": true, "schema": {"openAPIV3Schema": schema},
                          "subresources": {"status": {}}}]}
    })
}

fn crd_errs(c: &Value, old: Option<&Value>) -> Vec<String> {
    let mut c = c.clone();
    default_crd(&mut c);
    msgs(&validate_crd(&c, old))
}

#[test]
fn crd_defaults_and_validation() {
    let ok = crd(json!({"type": "object", "properties": {"spec": {"type": "object"}}}));
    let mut d = ok.clone();
    default_crd(&mut d);
    assert_eq!(
        d["spec"]["names"],
        json!({"plural": "widgets", "kind": "Widget", "singular": "widget", "listKind": "WidgetList"})
    );
    assert_eq!(d["spec"]["conversion"], json!({"strategy": "None"}));
    assert_eq!(d["status"]["storedVersions"], json!(["v1"]));
    assert!(crd_errs(&ok, None).is_empty(), "{:?}", crd_errs(&ok, None));

    let with = |f: &dyn Fn(&mut Value)| {
        let mut c = ok.clone();
        f(&mut c);
        crd_errs(&c, None)
    };
    let cases: Vec<(Mutate, &str)> = vec![
        (
            Box::new(|c| c["metadata"]["name"] = json!("foo.example.com")),
            r#"metadata.name: Invalid value: "foo.example.com": must be spec.names.plural+"."+spec.group"#,
        ),
        (
            Box::new(|c| {
                c["spec"]["group"] = json!("example");
                c["metadata"]["name"] = json!("widgets.example");
            }),
            r#"spec.group: Invalid value: "example": should be a domain with at least one dot"#,
        ),
        (
            Box::new(|c| c["spec"]["scope"] = json!("Global")),
            r#"spec.scope: Unsupported value: "Global": supported values: "Cluster", "Namespaced""#,
        ),
        (
            Box::new(|c| c["spec"]["versions"][0]["name"] = json!("V1")),
            r#"spec.versions[0].name: Invalid value: "V1": a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an alphabetic character, and end with an alphanumeric character (e.g. 'my-name',  or 'abc-123', regex used for validation is '[a-z]([-a-z0-9]*[a-z0-9])?')"#,
        ),
        (
            Box::new(|c| c["spec"]["versions"][0]["storage"] = json!(false)),
            "spec.versions: Invalid value: ",
        ),
        (
            Box::new(|c| c["spec"]["names"]["kind"] = json!("")),
            "spec.names.kind: Required value",
        ),
        (
            Box::new(|c| c["spec"]["names"]["plural"] = json!("Widgets")),
            r#"spec.names.plural: Invalid value: "Widgets": a DNS-1035 label"#,
        ),
        (
            Box::new(|c| {
                c["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"] =
                    json!({})
            }),
            "spec.validation.openAPIV3Schema.properties[spec].type: Required value: must not be empty for specified object fields",
        ),
        (
            Box::new(|c| {
                c["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["maxProperties"] = json!(3)
            }),
            "spec.validation.openAPIV3Schema: Invalid value: ",
        ),
        (
            Box::new(
                |c| c["spec"]["versions"][0]["additionalPrinterColumns"] = json!([{"name": "Age", "type": "time", "jsonPath": ".metadata.creationTimestamp"}]),
            ),
            r#"spec.additionalPrinterColumns[0].type: Invalid value: "time": must be one of boolean,date,integer,number,string"#,
        ),
        (
            Box::new(|c| {
                c["spec"]["versions"][0]["subresources"]["scale"] =
                    json!({"specReplicasPath": ".status.r", "statusReplicasPath": ".status.r"})
            }),
            r#"spec.subresources.scale.specReplicasPath: Invalid value: ".status.r": should be a json path under .spec"#,
        ),
        (
            Box::new(|c| c["spec"]["preserveUnknownFields"] = json!(true)),
            "spec.preserveUnknownFields: Invalid value: true: cannot set to true, set x-kubernetes-preserve-unknown-fields to true in spec.versions[*].schema instead",
        ),
        (
            Box::new(|c| {
                let v = c["spec"]["versions"][0].clone();
                let mut v2 = v.clone();
                v2["name"] = json!("v2");
                v2["storage"] = json!(false);
                v2["schema"]["openAPIV3Schema"]["properties"]["spec"] = json!({"type": "bogus"});
                c["spec"]["versions"] = json!([v, v2]);
            }),
            r#"spec.versions[1].schema.openAPIV3Schema.properties[spec].type: Unsupported value: "bogus""#,
        ),
    ];
    for (f, want) in cases {
        let got = with(&*f);
        assert!(
            got.iter().any(|g| g.starts_with(want)),
            "\n got  {got:#?}\n want {want}"
        );
    }
    // a version without schema
    let mut c = ok.clone();
    c["spec"]["versions"][0]
        .as_object_mut()
        .unwrap()
        .remove("schema");
    assert_eq!(
        crd_errs(&c, None),
        vec!["spec.versions[0].schema.openAPIV3Schema: Required value: schemas are required"]
    );
}

#[test]
fn crd_update_rules() {
    let mut old = crd(json!({"type": "object"}));
    default_crd(&mut old);
    old["spec"]["scope"] = json!("Namespaced");
    old["status"]["conditions"] = json!([{"type": "Established", "status": "True"}]);
    old["metadata"]["resourceVersion"] = json!("1");
    let mut new = old.clone();
    new["spec"]["scope"] = json!("Cluster");
    assert_eq!(
        crd_errs(&new, Some(&old)),
        vec![r#"spec.scope: Invalid value: "Cluster": field is immutable"#]
    );
    // replacing the stored version v1 by v2
    let mut new = old.clone();
    new["spec"]["versions"][0]["name"] = json!("v2");
    assert_eq!(
        crd_errs(&new, Some(&old)),
        vec![r#"status.storedVersions[0]: Invalid value: "v1": must appear in spec.versions"#]
    );
    // adding v2 as the new storage version keeps v1 stored
    let mut new = old.clone();
    let mut v2 = new["spec"]["versions"][0].clone();
    v2["name"] = json!("v2");
    new["spec"]["versions"][0]["storage"] = json!(false);
    new["spec"]["versions"] = json!([new["spec"]["versions"][0].clone(), v2]);
    assert!(
        crd_errs(&new, Some(&old)).is_empty(),
        "{:?}",
        crd_errs(&new, Some(&old))
    );
}

#[test]
fn object_meta_rules() {
    let v = |meta: Value| msgs(&validate_object_meta(&meta, NameRule::DnsSubdomain, None));
    assert!(v(json!({"name": "ok-name.x"})).is_empty());
    assert_eq!(
        v(json!({})),
        vec!["metadata.name: Required value: name or generateName is required"]
    );
    assert_eq!(
        v(json!({"name": "Bad_Name"})),
        vec![
            r#"metadata.name: Invalid value: "Bad_Name": a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')"#
        ]
    );
    assert!(v(json!({"name": "x", "generateName": "gen-"})).is_empty());
    assert_eq!(
        v(json!({"name": "x", "labels": {"app": "bad value"}})),
        vec![
            r#"metadata.labels: Invalid value: "bad value": a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyValue',  or 'my_value',  or '12345', regex used for validation is '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')"#
        ]
    );
    assert_eq!(
        v(json!({"name": "x", "annotations": {"a/b/c": ""}})),
        vec![
            r#"metadata.annotations: Invalid value: "a/b/c": a qualified name must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]') with an optional DNS subdomain prefix and '/' (e.g. 'example.com/MyName')"#
        ]
    );
    let big = "x".repeat(262_144);
    assert_eq!(
        v(json!({"name": "x", "annotations": {"a": big}})),
        vec!["metadata.annotations: Too long: may not be more than 262144 bytes"]
    );
    assert_eq!(
        v(json!({"name": "x", "finalizers": ["orphan", "foregroundDeletion"]})),
        vec![
            r#"metadata.finalizers: Invalid value: []string{"orphan", "foregroundDeletion"}: finalizer orphan and foregroundDeletion cannot be both set"#
        ]
    );
    assert_eq!(
        v(
            json!({"name": "x", "ownerReferences": [{"apiVersion": "v1", "kind": "A", "name": "", "uid": "u"}]})
        ),
        vec![r#"metadata.ownerReferences.name: Invalid value: "": name must not be empty"#]
    );
    let two = v(json!({"name": "x", "ownerReferences": [
        {"apiVersion": "v1", "kind": "A", "name": "a", "uid": "1", "controller": true},
        {"apiVersion": "v1", "kind": "B", "name": "b", "uid": "2", "controller": true}]}));
    assert!(
        two[0].starts_with("metadata.ownerReferences: Invalid value: []v1.OwnerReference{"),
        "{two:?}"
    );
    assert!(two[0].ends_with(r#": Only one reference can have Controller set to true. Found "true" in references for A/a and B/b"#));

    // update rules
    let old = json!({"name": "x", "namespace": "ns", "uid": "u1", "resourceVersion": "5", "generation": 3,
        "creationTimestamp": "2024-01-01T00:00:00Z", "deletionTimestamp": "2024-01-02T00:00:00Z", "finalizers": ["a/b"]});
    let u = |new: Value| {
        msgs(&validate_object_meta(
            &new,
            NameRule::DnsSubdomain,
            Some(&old),
        ))
    };
    assert!(u(old.clone()).is_empty());
    let mut n = old.clone();
    n["finalizers"] = json!(["a/b", "c/d"]);
    assert_eq!(
        u(n),
        vec![
            r#"metadata.finalizers: Forbidden: no new finalizers can be added if the object is being deleted, found new finalizers []string{"c/d"}"#
        ]
    );
    let mut n = old.clone();
    n["generation"] = json!(2);
    n["uid"] = json!("u2");
    n["creationTimestamp"] = json!("2025-01-01T00:00:00Z");
    assert_eq!(
        u(n),
        vec![
            "metadata.generation: Invalid value: 2: must not be decremented",
            r#"metadata.uid: Invalid value: "u2": field is immutable"#,
            "metadata.creationTimestamp: Invalid value: 2025-01-01 00:00:00 +0000 UTC: field is immutable",
        ]
    );
}

#[test]
fn status_subresource_and_preceding_errors() {
    let s = compile(&json!({"type": "object",
    "x-kubernetes-validations": [{"rule": "self.spec.a != 'x'"}],
    "properties": {
        "spec": {"type": "object", "properties": {"a": {"type": "string"}}},
        "status": {"type": "object", "required": ["ready"], "properties": {"replicas": {"type": "integer"}, "ready": {"type": "boolean"}}}
    }}));
    let obj = json!({"spec": {"a": "x"}, "status": {"replicas": "two"}});
    assert_eq!(
        msgs(&s.validate_status(&obj, Some(&obj), &[])),
        vec![
            r#"status.replicas: Invalid value: "string": replicas in body must be of type integer: "string""#,
            "status.ready: Required value",
            r#"<nil>: Invalid value: "null": some validation rules were not checked because the object was invalid; correct the existing errors to complete validation"#,
        ]
    );
    let ok = json!({"spec": {"a": "y"}, "status": {"ready": true}});
    assert!(s.validate_status(&ok, Some(&ok), &[]).is_empty());
    // a metadata error found by the caller blocks the CEL rules too
    let meta_err = FieldError::required("metadata.name", "name or generateName is required");
    let bad_rule = json!({"spec": {"a": "x"}});
    assert_eq!(
        msgs(&s.validate_with(&bad_rule, None, &[meta_err])),
        vec![
            r#"<nil>: Invalid value: "null": some validation rules were not checked because the object was invalid; correct the existing errors to complete validation"#
        ]
    );
    assert_eq!(
        msgs(&s.validate(&bad_rule, None)),
        vec![r#"<nil>: Invalid value: "object": failed rule: self.spec.a != 'x'"#]
    );
}
