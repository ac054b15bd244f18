//! CEL parse, check and evaluation tests.

use serde_json::{Value, json};

use super::*;
use crate::schema::Node;

fn node(schema: Value) -> Node {
    Node::build(&schema)
}

fn show(v: &Val<'_>) -> String {
    match v {
        Val::Null => "null".into(),
        Val::Bool(b) => b.to_string(),
        Val::Int(i) => i.to_string(),
        Val::Uint(u) => format!("{u}u"),
        Val::Double(d) => format!("{d:?}"),
        Val::Str(s) => format!("{s:?}"),
        Val::List(l) => format!("[{}]", l.iter().map(show).collect::<Vec<_>>().join(", ")),
        Val::Map(m) => format!(
            "{{{}}}",
            m.iter()
                .map(|(k, v)| format!("{}: {}", show(k), show(v)))
                .collect::<Vec<_>>()
                .join(", ")
        ),
        Val::Obj(..) => "<object>".into(),
        Val::Arr(..) => "<array>".into(),
        Val::Type(t) => format!("type({t})"),
        Val::Ext(x) => format!("<{}>", super::library::type_name(x)),
    }
}

fn run(src: &str, schema: &Value, this: &Value, old: Option<&Value>) -> Result<String, String> {
    let n = node(schema.clone());
    let p = compile(src, &n, false).map_err(|e| e.render(src))?;
    p.eval(this, &n, old, false).map(|v| show(&v))
}

fn any() -> Value {
    json!({"x-kubernetes-preserve-unknown-fields": true})
}

#[test]
fn literals_and_operators() {
    let cases: &[(&str, &str)] = &[
        ("1 + 2 * 3", "7"),
        ("(1 + 2) * 3", "9"),
        ("7 / 2", "3"),
        ("-7 / 2", "-3"),
        ("-7 % 3", "-1"),
        ("0x1F", "31"),
        ("-9223372036854775808", "-9223372036854775808"),
        ("3u + 4u", "7u"),
        ("1.5 + 2.0", "3.5"),
        ("1e3", "1000.0"),
        ("'a' + \"b\" + '''c''' + r'\\n'", "\"abc\\\\n\""),
        ("'\\x41\\u00e9\\101\\t'", "\"AéA\\t\""),
        ("[1, 2] + [3]", "[1, 2, 3]"),
        ("{'a': 1, 'b': 2}['b']", "2"),
        ("1 == 1.0", "true"),
        ("1 < 2.5", "true"),
        ("2u > 1", "true"),
        ("'abc' < 'abd'", "true"),
        ("false < true", "true"),
        ("null == null", "true"),
        ("[1, 'a'] == [1, 'a']", "true"),
        ("{'a': 1} == {'a': 1.0}", "true"),
        ("1 == 'a'", "false"),
        ("2 in [1, 2, 3]", "true"),
        ("'k' in {'k': 1}", "true"),
        ("true ? 'y' : 'n'", "\"y\""),
        ("!true", "false"),
        ("!!true", "true"),
        ("-(-3)", "3"),
        ("size('héllo')", "5"),
        ("'héllo'.size()", "5"),
        ("size([1, 2])", "2"),
        ("size({'a': 1})", "1"),
        ("int('42') + int(3.9) + int(2u)", "47"),
        ("uint(5)", "5u"),
        ("double(1) / 4.0", "0.25"),
        (
            "string(1) + string(1.5) + string(true) + string(2u)",
            "\"11.5true2\"",
        ),
        ("bool('true')", "true"),
        ("type(1) == int", "true"),
        ("type('a') == string", "true"),
        ("dyn(1) + 1", "2"),
        (
            "'abc'.startsWith('ab') && 'abc'.endsWith('bc') && 'abc'.contains('b')",
            "true",
        ),
        ("'abc'.matches('^a.c$') && matches('xabcx', 'b')", "true"),
        ("'AbC'.lowerAscii() + 'AbC'.upperAscii()", "\"abcABC\""),
        ("'  x '.trim()", "\"x\""),
        ("['a', 'b'].join('-') + ['c'].join()", "\"a-bc\""),
        ("[1, 2, 3].all(x, x > 0)", "true"),
        ("[1, 2, 3].exists(x, x > 2)", "true"),
        ("[1, 2, 3].exists_one(x, x > 1)", "false"),
        ("[1, 2, 3].map(x, x * 2)", "[2, 4, 6]"),
        ("[1, 2, 3].map(x, x > 1, x * 10)", "[20, 30]"),
        ("[1, 2, 3].filter(x, x % 2 == 1)", "[1, 3]"),
        ("{'a': 1, 'b': 2}.all(k, k.size() == 1)", "true"),
        ("{'a': 1, 'b': 2}.map(k, k)", "[\"a\", \"b\"]"),
        ("[[1, 2], [3]].all(l, l.all(x, x > 0))", "true"),
        // commutative error absorption
        ("1 / 0 == 1 || true", "true"),
        ("true || 1 / 0 == 1", "true"),
        ("1 / 0 == 1 && false", "false"),
        ("[0, 1].exists(x, 1 / x == 1)", "true"),
        ("[1, 0].all(x, x > 0 && 1 / x == 1)", "false"),
    ];
    for (src, want) in cases {
        assert_eq!(
            run(src, &any(), &json!({}), None).as_deref(),
            Ok(*want),
            "{src}"
        );
    }
}

#[test]
fn runtime_errors() {
    let cases: &[(&str, &str)] = &[
        ("1 / 0 == 1", "division by zero"),
        ("1 % 0 == 1", "modulus by zero"),
        ("9223372036854775807 + 1 > 0", "integer overflow"),
        ("-(-9223372036854775808) > 0", "integer overflow"),
        ("[1][2] == 1", "index '2' out of range in list size '1'"),
        ("{'a': 1}['b'] == 1", "no such key: b"),
        (
            "{'a': 1, 'a': 2}.size() == 1",
            "Failed with repeated key: a",
        ),
        ("1 / 0 == 1 && true", "division by zero"),
        ("[0].all(x, 1 / x == 1)", "division by zero"),
        ("[0, 1].exists_one(x, 1 / x == 1)", "division by zero"),
        (
            "int('x') == 1",
            "type conversion error from 'string' to 'int'",
        ),
        ("int(1e30) == 1", "integer overflow"),
    ];
    for (src, want) in cases {
        assert_eq!(
            run(src, &any(), &json!({}), None),
            Err(want.to_string()),
            "{src}"
        );
    }
}

#[test]
fn self_typed_by_schema() {
    let schema = json!({"type": "object", "properties": {
        "n": {"type": "number"}, "i": {"type": "integer"}, "s": {"type": "string"},
        "ios": {"x-kubernetes-int-or-string": true},
        "list": {"type": "array", "items": {"type": "object", "properties": {"name": {"type": "string"}}}},
        "m": {"type": "object", "additionalProperties": {"type": "integer"}},
        "opt": {"type": "string"}
    }});
    let this = json!({"n": 2, "i": 3, "s": "x", "ios": "50%", "list": [{"name": "a"}, {"name": "b"}], "m": {"k": 1}});
    let cases: &[(&str, &str)] = &[
        ("self.n", "2.0"),
        ("self.i", "3"),
        ("self.n == 2", "true"),
        ("self.ios", "\"50%\""),
        ("self.list[1].name", "\"b\""),
        ("self.list.map(e, e.name)", "[\"a\", \"b\"]"),
        ("self.m.k + self.m['k']", "2"),
        ("has(self.opt)", "false"),
        ("has(self.s)", "true"),
        ("has(self.m.k) && !has(self.m.zz)", "true"),
        ("'k' in self.m", "true"),
        ("self.list.size() == 2", "true"),
        ("self.list.exists(e, e.name == 'b')", "true"),
    ];
    for (src, want) in cases {
        assert_eq!(
            run(src, &schema, &this, None).as_deref(),
            Ok(*want),
            "{src}"
        );
    }
    assert_eq!(
        run("self.opt == 'a'", &schema, &this, None),
        Err("no such key: opt".into())
    );
    // transition rules see oldSelf
    assert_eq!(
        run("self.i > oldSelf.i", &schema, &this, Some(&json!({"i": 2}))).as_deref(),
        Ok("true")
    );
    let n = node(schema.clone());
    assert!(
        compile("self.i == oldSelf.i", &n, false)
            .unwrap()
            .uses_old_self
    );
    assert!(!compile("self.i == 1", &n, false).unwrap().uses_old_self);
}

#[test]
fn compile_errors() {
    let schema = json!({"type": "object", "properties": {"s": {"type": "string"}, "i": {"type": "integer"}}});
    let err = |src: &str| run(src, &schema, &json!({}), None).unwrap_err();
    assert_eq!(
        err("self.nope == 1"),
        "ERROR: <input>:1:5: undefined field 'nope'\n | self.nope == 1\n | ....^"
    );
    assert_eq!(
        err("foo == 1"),
        "ERROR: <input>:1:1: undeclared reference to 'foo' (in container '')\n | foo == 1\n | ^"
    );
    assert_eq!(
        err("self.i + self.s == 1"),
        "ERROR: <input>:1:8: found no matching overload for '_+_' applied to '(int, string)'\n | self.i + self.s == 1\n | .......^"
    );
    assert!(
        err("self.i ==").starts_with("ERROR: <input>:1:10: Syntax error: mismatched input '<EOF>'"),
        "{}",
        err("self.i ==")
    );
    assert!(err("has(self)").contains("invalid argument to has() macro"));
    assert!(err("[1].all(1, true)").contains("argument must be a simple name"));
    // library functions (formerly refused as outside the subset) are typed and run by kube-cel
    assert_eq!(
        run(
            "self.s.format([self.i])",
            &schema,
            &json!({"s": "n=%d", "i": 7}),
            None
        )
        .as_deref(),
        Ok("\"n=7\"")
    );
    assert_eq!(
        run(
            "quantity('1Gi').isLessThan(quantity('2Gi'))",
            &schema,
            &json!({}),
            None
        )
        .as_deref(),
        Ok("true")
    );
    assert_eq!(
        err("b'abc' == b'abc'"),
        "kube-sim does not support CEL bytes literals (supported subset: see crates/kube-sim/README.md#cel)"
    );
    assert_eq!(
        err("self.?s == 'a'"),
        "kube-sim does not support CEL optional field selection '.?' (supported subset: see crates/kube-sim/README.md#cel)"
    );
    assert_eq!(
        err("[1].all(i, v, v > 0)"),
        "kube-sim does not support CEL two-variable comprehension macro \"all\" (supported subset: see crates/kube-sim/README.md#cel)"
    );
    assert!(err("self.s.matches('(')").contains("invalid regular expression"));
    assert!(err("if == 1").contains("reserved identifier: if"));
    // the result type is reported for the rule wrapper to reject non-bool rules
    let n = node(schema);
    assert_eq!(
        compile("self.i + 1", &n, false).unwrap().result_type,
        Some("int")
    );
    assert_eq!(
        compile("self.i == 1", &n, false).unwrap().result_type,
        Some("bool")
    );
}

#[test]
fn multi_line_positions() {
    let schema = json!({"type": "object", "properties": {"a": {"type": "string"}}});
    let e = run(
        "self.a == 'x' &&\n  self.b == 'y'",
        &schema,
        &json!({}),
        None,
    )
    .unwrap_err();
    assert_eq!(
        e,
        "ERROR: <input>:2:7: undefined field 'b'\n |   self.b == 'y'\n | ......^"
    );
}

#[test]
fn library_functions() {
    let schema = json!({"type": "object", "properties": {
        "s": {"type": "string"}, "l": {"type": "array", "items": {"type": "integer"}},
        "ips": {"type": "array", "items": {"type": "string"}}
    }});
    let this = json!({"s": "a-b-c", "l": [3, 1, 2], "ips": ["10.0.0.1", "192.168.1.1"]});
    let cases: &[(&str, &str)] = &[
        // strings extension, on schema-typed values
        ("self.s.split('-')", "[\"a\", \"b\", \"c\"]"),
        ("self.s.indexOf('b') + self.s.lastIndexOf('-')", "5"),
        (
            "self.s.replace('-', '.', 1) + self.s.substring(4)",
            "\"a.b-cc\"",
        ),
        ("'%s=%d'.format(['n', 2])", "\"n=2\""),
        ("strings.quote('a\"b')", "\"\\\"a\\\\\\\"b\\\"\""),
        // Kubernetes lists library on JSON arrays
        ("self.l.isSorted()", "false"),
        ("self.l.sum() + self.l.min() + self.l.max()", "10"),
        ("self.l.indexOf(1)", "1"),
        (
            "sets.contains(self.l, [1, 2]) && !sets.equivalent(self.l, [1])",
            "true",
        ),
        (
            "self.s.find('[a-z]') + self.s.findAll('[a-z]').join('')",
            "\"aabc\"",
        ),
        // library values: equality, ordering of timestamps/durations, arithmetic, conversions
        (
            "ip('10.0.0.1') == ip('10.0.0.1') && ip('10.0.0.1') != ip('10.0.0.2')",
            "true",
        ),
        (
            "self.ips.all(i, isIP(i)) && self.ips.exists(i, cidr('10.0.0.0/8').containsIP(i))",
            "true",
        ),
        (
            "string(cidr('10.1.0.0/16').ip()) + '/' + string(cidr('10.1.0.0/16').prefixLength())",
            "\"10.1.0.0/16\"",
        ),
        (
            "timestamp('2024-01-02T00:00:00Z') - timestamp('2024-01-01T00:00:00Z') == duration('24h')",
            "true",
        ),
        (
            "duration('90m') > duration('1h') && timestamp('2024-03-01T10:20:30Z').getHours() == 10",
            "true",
        ),
        (
            "quantity('1.5Gi').add(quantity('512Mi')).compareTo(quantity('2Gi'))",
            "0",
        ),
        ("quantity('250m').asApproximateFloat()", "0.25"),
        (
            "url('https://x.io:8443/p?b=2&a=1').getQuery()",
            "{\"a\": [\"1\"], \"b\": [\"2\"]}",
        ),
        (
            "optional.none().orValue('d') + optional.of('v').value()",
            "\"dv\"",
        ),
        // `format.named` answers an optional, as upstream (kube-cel's answer is adapted)
        (
            "format.named('dns1123Label').hasValue() && !format.named('nope').hasValue()",
            "true",
        ),
        (
            "format.named('dns1123Label').value().validate('UPPER').hasValue()",
            "true",
        ),
        // a comprehension variable named like a library namespace is the variable
        ("['1.2.3.4'].all(ip, ip.size() == 7)", "true"),
    ];
    for (src, want) in cases {
        assert_eq!(
            run(src, &schema, &this, None).as_deref(),
            Ok(*want),
            "{src}"
        );
    }
    // library values that reach the core's operators get the core's error texts
    assert_eq!(
        run("quantity('1') < quantity('2')", &schema, &this, None),
        Err("ERROR: <input>:1:15: found no matching overload for '_<_' applied to '(kubernetes.Quantity, kubernetes.Quantity)'\n | quantity('1') < quantity('2')\n | ..............^".into())
    );
    assert_eq!(
        run("'x'.charAt()", &schema, &this, None),
        Err("ERROR: <input>:1:11: found no matching overload for 'charAt' applied to 'string.()'\n | 'x'.charAt()\n | ..........^".into())
    );
    assert_eq!(
        run("self.s.nope()", &schema, &this, None),
        Err("ERROR: <input>:1:12: undeclared reference to 'nope' (in container '')\n | self.s.nope()\n | ...........^".into())
    );
    // evaluation errors of library functions are errors of the rule
    assert!(run("quantity(self.s).sign() == 1", &schema, &this, None).is_err());
    assert_eq!(
        run("self.l.map(x, ip('1.2.3.4')).size()", &schema, &this, None).as_deref(),
        Ok("3")
    );
}
