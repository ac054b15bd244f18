//! Decoding of Kubernetes protobuf request bodies (`application/vnd.kubernetes.protobuf`) for
//! the few kinds client-go's typed clients write through the simulator: Secret and ConfigMap
//! (Helm's release storage, `kubectl create secret/configmap`), Namespace (`kubectl create
//! namespace`) and DeleteOptions (the body of typed deletes). The body is converted to the
//! JSON the rest of the server handles; responses stay JSON (client-go accepts them).
//!
//! Wire format (apimachinery `runtime/serializer/protobuf`): the magic `k8s\0`, then a
//! `runtime.Unknown` message {1: TypeMeta{1: apiVersion, 2: kind}, 2: raw, 3: contentEncoding,
//! 4: contentType} whose `raw` is the object's message (field numbers from the upstream
//! `generated.proto` files of k8s.io/api core/v1 and k8s.io/apimachinery meta/v1).

use serde_json::{Map, Value, json};

/// Why a protobuf body was not converted.
#[derive(Debug, PartialEq, Eq)]
pub enum ProtoError {
    /// Well-formed, but of a kind this decoder does not know.
    Unsupported(String),
    /// Not a valid Kubernetes protobuf envelope or message.
    Malformed(String),
}

const MAGIC: &[u8] = b"k8s\0";

struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

enum Field<'a> {
    Varint(u64),
    Bytes(&'a [u8]),
}

impl<'a> Reader<'a> {
    fn new(buf: &'a [u8]) -> Self {
        Reader { buf, pos: 0 }
    }

    fn varint(&mut self) -> Result<u64, ProtoError> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let b = *self
                .buf
                .get(self.pos)
                .ok_or_else(|| ProtoError::Malformed("truncated varint".into()))?;
            self.pos += 1;
            v |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err(ProtoError::Malformed("varint too long".into()))
    }

    /// The next field: its number and value (fixed-width fields are skipped over).
    fn next(&mut self) -> Result<Option<(u64, Field<'a>)>, ProtoError> {
        loop {
            if self.pos >= self.buf.len() {
                return Ok(None);
            }
            let key = self.varint()?;
            let (num, wire) = (key >> 3, key & 7);
            match wire {
                0 => return Ok(Some((num, Field::Varint(self.varint()?)))),
                2 => {
                    let len = usize::try_from(self.varint()?)
                        .map_err(|_| ProtoError::Malformed("length overflow".into()))?;
                    let end = self
                        .pos
                        .checked_add(len)
                        .filter(|e| *e <= self.buf.len())
                        .ok_or_else(|| ProtoError::Malformed("truncated field".into()))?;
                    let b = &self.buf[self.pos..end];
                    self.pos = end;
                    return Ok(Some((num, Field::Bytes(b))));
                }
                1 => self.skip(8)?,
                5 => self.skip(4)?,
                w => return Err(ProtoError::Malformed(format!("wire type {w}"))),
            }
        }
    }

    fn skip(&mut self, n: usize) -> Result<(), ProtoError> {
        if self.pos + n > self.buf.len() {
            return Err(ProtoError::Malformed("truncated fixed field".into()));
        }
        self.pos += n;
        Ok(())
    }
}

fn string(b: &[u8]) -> Result<String, ProtoError> {
    String::from_utf8(b.to_vec()).map_err(|_| ProtoError::Malformed("invalid UTF-8".into()))
}

fn bytes_of<'a>(f: &Field<'a>) -> Result<&'a [u8], ProtoError> {
    match f {
        Field::Bytes(b) => Ok(b),
        Field::Varint(_) => Err(ProtoError::Malformed(
            "expected a length-delimited field".into(),
        )),
    }
}

fn varint_of(f: &Field<'_>) -> Result<u64, ProtoError> {
    match f {
        Field::Varint(v) => Ok(*v),
        Field::Bytes(_) => Err(ProtoError::Malformed("expected a varint field".into())),
    }
}

/// A `map<string, string>` / `map<string, bytes>` entry {1: key, 2: value}.
fn map_entry(b: &[u8], value_as_base64: bool) -> Result<(String, Value), ProtoError> {
    let mut r = Reader::new(b);
    let (mut k, mut v) = (String::new(), Vec::new());
    while let Some((n, f)) = r.next()? {
        match n {
            1 => k = string(bytes_of(&f)?)?,
            2 => v = bytes_of(&f)?.to_vec(),
            _ => {}
        }
    }
    let v = if value_as_base64 {
        use base64::Engine;
        Value::String(base64::engine::general_purpose::STANDARD.encode(&v))
    } else {
        Value::String(string(&v)?)
    };
    Ok((k, v))
}

fn insert_entry(
    obj: &mut Map<String, Value>,
    field: &str,
    b: &[u8],
    base64: bool,
) -> Result<(), ProtoError> {
    let (k, v) = map_entry(b, base64)?;
    if let Value::Object(m) = obj
        .entry(field.to_string())
        .or_insert_with(|| Value::Object(Map::new()))
    {
        m.insert(k, v);
    }
    Ok(())
}

fn push(obj: &mut Map<String, Value>, field: &str, v: Value) {
    if let Value::Array(a) = obj
        .entry(field.to_string())
        .or_insert_with(|| Value::Array(Vec::new()))
    {
        a.push(v);
    }
}

/// meta/v1 `Time` {1: seconds, 2: nanos} as RFC 3339 seconds.
fn time(b: &[u8]) -> Result<Value, ProtoError> {
    let mut r = Reader::new(b);
    let mut secs = 0i64;
    while let Some((n, f)) = r.next()? {
        if n == 1 {
            secs = varint_of(&f)? as i64;
        }
    }
    let ts = jiff::Timestamp::from_second(secs)
        .map_err(|_| ProtoError::Malformed("time out of range".into()))?;
    Ok(Value::String(ts.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()))
}

fn owner_reference(b: &[u8]) -> Result<Value, ProtoError> {
    let mut r = Reader::new(b);
    let mut o = Map::new();
    while let Some((n, f)) = r.next()? {
        let key = match n {
            1 => "kind",
            3 => "name",
            4 => "uid",
            5 => "apiVersion",
            6 | 7 => {
                let k = if n == 6 {
                    "controller"
                } else {
                    "blockOwnerDeletion"
                };
                o.insert(k.into(), Value::Bool(varint_of(&f)? != 0));
                continue;
            }
            _ => continue,
        };
        o.insert(key.into(), Value::String(string(bytes_of(&f)?)?));
    }
    Ok(Value::Object(o))
}

/// meta/v1 `ObjectMeta` (managedFields are dropped: clients may not set them meaningfully).
fn object_meta(b: &[u8]) -> Result<Value, ProtoError> {
    let mut r = Reader::new(b);
    let mut m = Map::new();
    while let Some((n, f)) = r.next()? {
        match n {
            1..=6 => {
                let key = [
                    "name",
                    "generateName",
                    "namespace",
                    "selfLink",
                    "uid",
                    "resourceVersion",
                ][(n - 1) as usize];
                let v = string(bytes_of(&f)?)?;
                // Go writes every string field; empty ones are JSON's omitted ones.
                if !v.is_empty() {
                    m.insert(key.into(), Value::String(v));
                }
            }
            7 => {
                let g = varint_of(&f)? as i64;
                if g != 0 {
                    m.insert("generation".into(), json!(g));
                }
            }
            // A zero Time (seconds 0) is JSON's null, i.e. unset.
            8 | 9 if !zero_message(bytes_of(&f)?) => {
                let k = if n == 8 {
                    "creationTimestamp"
                } else {
                    "deletionTimestamp"
                };
                m.insert(k.into(), time(bytes_of(&f)?)?);
            }
            10 => {
                m.insert(
                    "deletionGracePeriodSeconds".into(),
                    json!(varint_of(&f)? as i64),
                );
            }
            11 => insert_entry(&mut m, "labels", bytes_of(&f)?, false)?,
            12 => insert_entry(&mut m, "annotations", bytes_of(&f)?, false)?,
            13 => push(&mut m, "ownerReferences", owner_reference(bytes_of(&f)?)?),
            14 => push(&mut m, "finalizers", Value::String(string(bytes_of(&f)?)?)),
            _ => {}
        }
    }
    Ok(Value::Object(m))
}

fn secret(b: &[u8]) -> Result<Map<String, Value>, ProtoError> {
    let mut r = Reader::new(b);
    let mut o = Map::new();
    while let Some((n, f)) = r.next()? {
        match n {
            1 => {
                o.insert("metadata".into(), object_meta(bytes_of(&f)?)?);
            }
            2 => insert_entry(&mut o, "data", bytes_of(&f)?, true)?,
            3 => {
                o.insert("type".into(), Value::String(string(bytes_of(&f)?)?));
            }
            4 => insert_entry(&mut o, "stringData", bytes_of(&f)?, false)?,
            5 => {
                o.insert("immutable".into(), Value::Bool(varint_of(&f)? != 0));
            }
            _ => {}
        }
    }
    Ok(o)
}

fn config_map(b: &[u8]) -> Result<Map<String, Value>, ProtoError> {
    let mut r = Reader::new(b);
    let mut o = Map::new();
    while let Some((n, f)) = r.next()? {
        match n {
            1 => {
                o.insert("metadata".into(), object_meta(bytes_of(&f)?)?);
            }
            2 => insert_entry(&mut o, "data", bytes_of(&f)?, false)?,
            3 => insert_entry(&mut o, "binaryData", bytes_of(&f)?, true)?,
            4 => {
                o.insert("immutable".into(), Value::Bool(varint_of(&f)? != 0));
            }
            _ => {}
        }
    }
    Ok(o)
}

fn namespace(b: &[u8]) -> Result<Map<String, Value>, ProtoError> {
    let mut r = Reader::new(b);
    let mut o = Map::new();
    while let Some((n, f)) = r.next()? {
        match n {
            1 => {
                o.insert("metadata".into(), object_meta(bytes_of(&f)?)?);
            }
            2 => {
                // NamespaceSpec {1: repeated finalizers}
                let mut spec = Map::new();
                let mut s = Reader::new(bytes_of(&f)?);
                while let Some((sn, sf)) = s.next()? {
                    if sn == 1 {
                        push(
                            &mut spec,
                            "finalizers",
                            Value::String(string(bytes_of(&sf)?)?),
                        );
                    }
                }
                o.insert("spec".into(), Value::Object(spec));
            }
            _ => {}
        }
    }
    Ok(o)
}

fn delete_options(b: &[u8]) -> Result<Map<String, Value>, ProtoError> {
    let mut r = Reader::new(b);
    let mut o = Map::new();
    while let Some((n, f)) = r.next()? {
        match n {
            1 => {
                o.insert("gracePeriodSeconds".into(), json!(varint_of(&f)? as i64));
            }
            2 => {
                let mut p = Map::new();
                let mut s = Reader::new(bytes_of(&f)?);
                while let Some((sn, sf)) = s.next()? {
                    let k = match sn {
                        1 => "uid",
                        2 => "resourceVersion",
                        _ => continue,
                    };
                    p.insert(k.into(), Value::String(string(bytes_of(&sf)?)?));
                }
                o.insert("preconditions".into(), Value::Object(p));
            }
            3 => {
                o.insert("orphanDependents".into(), Value::Bool(varint_of(&f)? != 0));
            }
            4 => {
                o.insert(
                    "propagationPolicy".into(),
                    Value::String(string(bytes_of(&f)?)?),
                );
            }
            5 => push(&mut o, "dryRun", Value::String(string(bytes_of(&f)?)?)),
            _ => {}
        }
    }
    Ok(o)
}

// ---------------------------------------------------------------------------------------------
// Descriptor-driven decoding of the other kinds kubectl's typed commands write (`create
// deployment/serviceaccount/role/rolebinding/clusterrole/clusterrolebinding/service`, `run`,
// `create token`, `auth can-i`, `auth whoami`, `scale`). Field numbers and types are those of
// the upstream `generated.proto` files (k8s.io/api v0.32); each entry names the JSON field.
// Go writes every non-pointer field, zero or not: zero scalars, empty strings and empty
// messages are dropped (JSON `omitempty`), except for pointer fields (`K`) whose presence
// means the client set them. A field this table does not know is ignored when it holds a zero
// value and refused otherwise, so a body is never stored with data silently missing.

#[derive(Clone, Copy)]
enum T {
    Str,
    Bool,
    Int,
    Msg(&'static [F]),
    /// An embedded struct whose fields are inlined in JSON.
    Inline(&'static [F]),
    MapStr,
    MapQty,
    Meta,
    IntOrStr,
    Qty,
}

/// (field number, JSON name, type, repeated, keep zero values)
#[derive(Clone, Copy)]
struct F(u64, &'static str, T, bool, bool);

const fn f(n: u64, name: &'static str, t: T) -> F {
    F(n, name, t, false, false)
}
/// A pointer field: present means set, even when zero.
const fn k(n: u64, name: &'static str, t: T) -> F {
    F(n, name, t, false, true)
}
/// A repeated field.
const fn r(n: u64, name: &'static str, t: T) -> F {
    F(n, name, t, true, false)
}

const LOR: &[F] = &[f(1, "name", T::Str)];
const LSR: &[F] = &[
    f(1, "key", T::Str),
    f(2, "operator", T::Str),
    r(3, "values", T::Str),
];
const LABEL_SELECTOR: &[F] = &[
    f(1, "matchLabels", T::MapStr),
    r(2, "matchExpressions", T::Msg(LSR)),
];
const OBJECT_FIELD: &[F] = &[f(1, "apiVersion", T::Str), f(2, "fieldPath", T::Str)];
const RESOURCE_FIELD: &[F] = &[
    f(1, "containerName", T::Str),
    f(2, "resource", T::Str),
    f(3, "divisor", T::Qty),
];
const KEY_SELECTOR: &[F] = &[
    f(1, "", T::Inline(LOR)),
    f(2, "key", T::Str),
    k(3, "optional", T::Bool),
];
const ENV_SOURCE: &[F] = &[
    f(1, "fieldRef", T::Msg(OBJECT_FIELD)),
    f(2, "resourceFieldRef", T::Msg(RESOURCE_FIELD)),
    f(3, "configMapKeyRef", T::Msg(KEY_SELECTOR)),
    f(4, "secretKeyRef", T::Msg(KEY_SELECTOR)),
];
const ENV_VAR: &[F] = &[
    f(1, "name", T::Str),
    f(2, "value", T::Str),
    f(3, "valueFrom", T::Msg(ENV_SOURCE)),
];
const REF_SOURCE: &[F] = &[f(1, "", T::Inline(LOR)), k(2, "optional", T::Bool)];
const ENV_FROM: &[F] = &[
    f(1, "prefix", T::Str),
    f(2, "configMapRef", T::Msg(REF_SOURCE)),
    f(3, "secretRef", T::Msg(REF_SOURCE)),
];
const PORT: &[F] = &[
    f(1, "name", T::Str),
    f(2, "hostPort", T::Int),
    f(3, "containerPort", T::Int),
    f(4, "protocol", T::Str),
    f(5, "hostIP", T::Str),
];
const RESOURCES: &[F] = &[f(1, "limits", T::MapQty), f(2, "requests", T::MapQty)];
const MOUNT: &[F] = &[
    f(1, "name", T::Str),
    f(2, "readOnly", T::Bool),
    f(3, "mountPath", T::Str),
    f(4, "subPath", T::Str),
    f(5, "mountPropagation", T::Str),
    f(6, "subPathExpr", T::Str),
    f(7, "recursiveReadOnly", T::Str),
];
const HEADER: &[F] = &[f(1, "name", T::Str), f(2, "value", T::Str)];
const HANDLER: &[F] = &[
    f(1, "exec", T::Msg(&[r(1, "command", T::Str)])),
    f(
        2,
        "httpGet",
        T::Msg(&[
            f(1, "path", T::Str),
            f(2, "port", T::IntOrStr),
            f(3, "host", T::Str),
            f(4, "scheme", T::Str),
            r(5, "httpHeaders", T::Msg(HEADER)),
        ]),
    ),
    f(
        3,
        "tcpSocket",
        T::Msg(&[f(1, "port", T::IntOrStr), f(2, "host", T::Str)]),
    ),
    f(
        4,
        "grpc",
        T::Msg(&[f(1, "port", T::Int), k(2, "service", T::Str)]),
    ),
];
const PROBE: &[F] = &[
    f(1, "", T::Inline(HANDLER)),
    f(2, "initialDelaySeconds", T::Int),
    f(3, "timeoutSeconds", T::Int),
    f(4, "periodSeconds", T::Int),
    f(5, "successThreshold", T::Int),
    f(6, "failureThreshold", T::Int),
    k(7, "terminationGracePeriodSeconds", T::Int),
];
const SECCOMP: &[F] = &[f(1, "type", T::Str), k(2, "localhostProfile", T::Str)];
const SECURITY: &[F] = &[
    f(
        1,
        "capabilities",
        T::Msg(&[r(1, "add", T::Str), r(2, "drop", T::Str)]),
    ),
    k(2, "privileged", T::Bool),
    k(4, "runAsUser", T::Int),
    k(8, "runAsGroup", T::Int),
    k(5, "runAsNonRoot", T::Bool),
    k(6, "readOnlyRootFilesystem", T::Bool),
    k(7, "allowPrivilegeEscalation", T::Bool),
    f(11, "seccompProfile", T::Msg(SECCOMP)),
];
const CONTAINER: &[F] = &[
    f(1, "name", T::Str),
    f(2, "image", T::Str),
    r(3, "command", T::Str),
    r(4, "args", T::Str),
    f(5, "workingDir", T::Str),
    r(6, "ports", T::Msg(PORT)),
    r(19, "envFrom", T::Msg(ENV_FROM)),
    r(7, "env", T::Msg(ENV_VAR)),
    f(8, "resources", T::Msg(RESOURCES)),
    k(24, "restartPolicy", T::Str),
    r(9, "volumeMounts", T::Msg(MOUNT)),
    f(10, "livenessProbe", T::Msg(PROBE)),
    f(11, "readinessProbe", T::Msg(PROBE)),
    f(22, "startupProbe", T::Msg(PROBE)),
    f(13, "terminationMessagePath", T::Str),
    f(20, "terminationMessagePolicy", T::Str),
    f(14, "imagePullPolicy", T::Str),
    f(15, "securityContext", T::Msg(SECURITY)),
    f(16, "stdin", T::Bool),
    f(17, "stdinOnce", T::Bool),
    f(18, "tty", T::Bool),
];
const KEY_TO_PATH: &[F] = &[
    f(1, "key", T::Str),
    f(2, "path", T::Str),
    k(3, "mode", T::Int),
];
const DOWNWARD_FILE: &[F] = &[
    f(1, "path", T::Str),
    f(2, "fieldRef", T::Msg(OBJECT_FIELD)),
    f(3, "resourceFieldRef", T::Msg(RESOURCE_FIELD)),
    k(4, "mode", T::Int),
];
const PROJECTION_SOURCE: &[F] = &[
    f(1, "", T::Inline(LOR)),
    r(2, "items", T::Msg(KEY_TO_PATH)),
    k(4, "optional", T::Bool),
];
const VOLUME_SOURCE: &[F] = &[
    f(
        1,
        "hostPath",
        T::Msg(&[f(1, "path", T::Str), k(2, "type", T::Str)]),
    ),
    f(
        2,
        "emptyDir",
        T::Msg(&[f(1, "medium", T::Str), k(2, "sizeLimit", T::Qty)]),
    ),
    f(
        6,
        "secret",
        T::Msg(&[
            f(1, "secretName", T::Str),
            r(2, "items", T::Msg(KEY_TO_PATH)),
            k(3, "defaultMode", T::Int),
            k(4, "optional", T::Bool),
        ]),
    ),
    f(
        10,
        "persistentVolumeClaim",
        T::Msg(&[f(1, "claimName", T::Str), f(2, "readOnly", T::Bool)]),
    ),
    f(
        16,
        "downwardAPI",
        T::Msg(&[
            r(1, "items", T::Msg(DOWNWARD_FILE)),
            k(2, "defaultMode", T::Int),
        ]),
    ),
    f(
        19,
        "configMap",
        T::Msg(&[
            f(1, "", T::Inline(LOR)),
            r(2, "items", T::Msg(KEY_TO_PATH)),
            k(3, "defaultMode", T::Int),
            k(4, "optional", T::Bool),
        ]),
    ),
    f(
        26,
        "projected",
        T::Msg(&[
            r(
                1,
                "sources",
                T::Msg(&[
                    f(1, "secret", T::Msg(PROJECTION_SOURCE)),
                    f(
                        2,
                        "downwardAPI",
                        T::Msg(&[r(1, "items", T::Msg(DOWNWARD_FILE))]),
                    ),
                    f(3, "configMap", T::Msg(PROJECTION_SOURCE)),
                    f(
                        4,
                        "serviceAccountToken",
                        T::Msg(&[
                            f(1, "audience", T::Str),
                            k(2, "expirationSeconds", T::Int),
                            f(3, "path", T::Str),
                        ]),
                    ),
                ]),
            ),
            k(2, "defaultMode", T::Int),
        ]),
    ),
];
const VOLUME: &[F] = &[f(1, "name", T::Str), f(2, "", T::Inline(VOLUME_SOURCE))];
const TOLERATION: &[F] = &[
    f(1, "key", T::Str),
    f(2, "operator", T::Str),
    f(3, "value", T::Str),
    f(4, "effect", T::Str),
    k(5, "tolerationSeconds", T::Int),
];
const NSR: &[F] = LSR;
const NODE_TERM: &[F] = &[
    r(1, "matchExpressions", T::Msg(NSR)),
    r(2, "matchFields", T::Msg(NSR)),
];
const AFFINITY: &[F] = &[f(
    1,
    "nodeAffinity",
    T::Msg(&[
        f(
            1,
            "requiredDuringSchedulingIgnoredDuringExecution",
            T::Msg(&[r(1, "nodeSelectorTerms", T::Msg(NODE_TERM))]),
        ),
        r(
            2,
            "preferredDuringSchedulingIgnoredDuringExecution",
            T::Msg(&[
                f(1, "weight", T::Int),
                f(2, "preference", T::Msg(NODE_TERM)),
            ]),
        ),
    ]),
)];
const POD_SECURITY: &[F] = &[
    k(2, "runAsUser", T::Int),
    k(6, "runAsGroup", T::Int),
    k(3, "runAsNonRoot", T::Bool),
    r(4, "supplementalGroups", T::Int),
    k(5, "fsGroup", T::Int),
    f(10, "seccompProfile", T::Msg(SECCOMP)),
];
const POD_SPEC: &[F] = &[
    r(1, "volumes", T::Msg(VOLUME)),
    r(20, "initContainers", T::Msg(CONTAINER)),
    r(2, "containers", T::Msg(CONTAINER)),
    f(3, "restartPolicy", T::Str),
    k(4, "terminationGracePeriodSeconds", T::Int),
    k(5, "activeDeadlineSeconds", T::Int),
    f(6, "dnsPolicy", T::Str),
    f(7, "nodeSelector", T::MapStr),
    f(8, "serviceAccountName", T::Str),
    f(9, "serviceAccount", T::Str),
    k(21, "automountServiceAccountToken", T::Bool),
    f(10, "nodeName", T::Str),
    f(11, "hostNetwork", T::Bool),
    f(12, "hostPID", T::Bool),
    f(13, "hostIPC", T::Bool),
    f(14, "securityContext", T::Msg(POD_SECURITY)),
    r(15, "imagePullSecrets", T::Msg(LOR)),
    f(16, "hostname", T::Str),
    f(17, "subdomain", T::Str),
    f(18, "affinity", T::Msg(AFFINITY)),
    f(19, "schedulerName", T::Str),
    r(22, "tolerations", T::Msg(TOLERATION)),
    f(24, "priorityClassName", T::Str),
    k(25, "priority", T::Int),
    k(29, "runtimeClassName", T::Str),
    k(30, "enableServiceLinks", T::Bool),
    k(31, "preemptionPolicy", T::Str),
];
const POD_TEMPLATE: &[F] = &[f(1, "metadata", T::Meta), f(2, "spec", T::Msg(POD_SPEC))];
const POD: &[F] = &[f(1, "metadata", T::Meta), f(2, "spec", T::Msg(POD_SPEC))];
const DEPLOYMENT: &[F] = &[
    f(1, "metadata", T::Meta),
    f(
        2,
        "spec",
        T::Msg(&[
            k(1, "replicas", T::Int),
            f(2, "selector", T::Msg(LABEL_SELECTOR)),
            f(3, "template", T::Msg(POD_TEMPLATE)),
            f(
                4,
                "strategy",
                T::Msg(&[
                    f(1, "type", T::Str),
                    f(
                        2,
                        "rollingUpdate",
                        T::Msg(&[
                            k(1, "maxUnavailable", T::IntOrStr),
                            k(2, "maxSurge", T::IntOrStr),
                        ]),
                    ),
                ]),
            ),
            f(5, "minReadySeconds", T::Int),
            k(6, "revisionHistoryLimit", T::Int),
            f(7, "paused", T::Bool),
            k(9, "progressDeadlineSeconds", T::Int),
        ]),
    ),
];
const OBJECT_REF: &[F] = &[
    f(1, "kind", T::Str),
    f(2, "namespace", T::Str),
    f(3, "name", T::Str),
    f(4, "uid", T::Str),
    f(5, "apiVersion", T::Str),
    f(6, "resourceVersion", T::Str),
    f(7, "fieldPath", T::Str),
];
const SERVICE_ACCOUNT: &[F] = &[
    f(1, "metadata", T::Meta),
    r(2, "secrets", T::Msg(OBJECT_REF)),
    r(3, "imagePullSecrets", T::Msg(LOR)),
    k(4, "automountServiceAccountToken", T::Bool),
];
const POLICY_RULE: &[F] = &[
    r(1, "verbs", T::Str),
    r(2, "apiGroups", T::Str),
    r(3, "resources", T::Str),
    r(4, "resourceNames", T::Str),
    r(5, "nonResourceURLs", T::Str),
];
const ROLE: &[F] = &[
    f(1, "metadata", T::Meta),
    r(2, "rules", T::Msg(POLICY_RULE)),
];
const CLUSTER_ROLE: &[F] = &[
    f(1, "metadata", T::Meta),
    r(2, "rules", T::Msg(POLICY_RULE)),
    f(
        3,
        "aggregationRule",
        T::Msg(&[r(1, "clusterRoleSelectors", T::Msg(LABEL_SELECTOR))]),
    ),
];
const BINDING: &[F] = &[
    f(1, "metadata", T::Meta),
    r(
        2,
        "subjects",
        T::Msg(&[
            f(1, "kind", T::Str),
            f(2, "apiGroup", T::Str),
            f(3, "name", T::Str),
            f(4, "namespace", T::Str),
        ]),
    ),
    f(
        3,
        "roleRef",
        T::Msg(&[
            f(1, "apiGroup", T::Str),
            f(2, "kind", T::Str),
            f(3, "name", T::Str),
        ]),
    ),
];
const SERVICE: &[F] = &[
    f(1, "metadata", T::Meta),
    f(
        2,
        "spec",
        T::Msg(&[
            r(
                1,
                "ports",
                T::Msg(&[
                    f(1, "name", T::Str),
                    f(2, "protocol", T::Str),
                    k(6, "appProtocol", T::Str),
                    f(3, "port", T::Int),
                    f(4, "targetPort", T::IntOrStr),
                    f(5, "nodePort", T::Int),
                ]),
            ),
            f(2, "selector", T::MapStr),
            f(3, "clusterIP", T::Str),
            r(18, "clusterIPs", T::Str),
            f(4, "type", T::Str),
            r(5, "externalIPs", T::Str),
            f(7, "sessionAffinity", T::Str),
            f(8, "loadBalancerIP", T::Str),
            f(10, "externalName", T::Str),
            f(11, "externalTrafficPolicy", T::Str),
            f(13, "publishNotReadyAddresses", T::Bool),
            r(19, "ipFamilies", T::Str),
            k(17, "ipFamilyPolicy", T::Str),
            k(22, "internalTrafficPolicy", T::Str),
        ]),
    ),
];
const RESOURCE_ATTRIBUTES: &[F] = &[
    f(1, "namespace", T::Str),
    f(2, "verb", T::Str),
    f(3, "group", T::Str),
    f(4, "version", T::Str),
    f(5, "resource", T::Str),
    f(6, "subresource", T::Str),
    f(7, "name", T::Str),
];
const NON_RESOURCE_ATTRIBUTES: &[F] = &[f(1, "path", T::Str), f(2, "verb", T::Str)];
const SELF_SAR: &[F] = &[
    f(1, "metadata", T::Meta),
    f(
        2,
        "spec",
        T::Msg(&[
            f(1, "resourceAttributes", T::Msg(RESOURCE_ATTRIBUTES)),
            f(2, "nonResourceAttributes", T::Msg(NON_RESOURCE_ATTRIBUTES)),
        ]),
    ),
];
const SAR: &[F] = &[
    f(1, "metadata", T::Meta),
    f(
        2,
        "spec",
        T::Msg(&[
            f(1, "resourceAttributes", T::Msg(RESOURCE_ATTRIBUTES)),
            f(2, "nonResourceAttributes", T::Msg(NON_RESOURCE_ATTRIBUTES)),
            f(3, "user", T::Str),
            r(4, "groups", T::Str),
            f(6, "uid", T::Str),
        ]),
    ),
];
const SELF_RULES: &[F] = &[
    f(1, "metadata", T::Meta),
    f(2, "spec", T::Msg(&[f(1, "namespace", T::Str)])),
];
const SELF_REVIEW: &[F] = &[f(1, "metadata", T::Meta)];
const TOKEN_REQUEST: &[F] = &[
    f(1, "metadata", T::Meta),
    f(
        2,
        "spec",
        T::Msg(&[
            r(1, "audiences", T::Str),
            k(4, "expirationSeconds", T::Int),
            f(
                3,
                "boundObjectRef",
                T::Msg(&[
                    f(1, "kind", T::Str),
                    f(2, "apiVersion", T::Str),
                    f(3, "name", T::Str),
                    f(4, "uid", T::Str),
                ]),
            ),
        ]),
    ),
];
const TOKEN_REVIEW: &[F] = &[
    f(1, "metadata", T::Meta),
    f(
        2,
        "spec",
        T::Msg(&[f(1, "token", T::Str), r(2, "audiences", T::Str)]),
    ),
];
const SCALE: &[F] = &[
    f(1, "metadata", T::Meta),
    f(2, "spec", T::Msg(&[f(1, "replicas", T::Int)])),
];

/// Whether a wire value carries data (a non-zero varint or a non-empty field).
/// Go writes empty messages of non-pointer structs (a `status` nobody set) as fields whose
/// fields are all zero: those carry no data either.
fn nonzero(fl: &Field<'_>) -> bool {
    match fl {
        Field::Varint(v) => *v != 0,
        Field::Bytes(b) => !zero_message(b),
    }
}

fn zero_message(b: &[u8]) -> bool {
    let mut rd = Reader::new(b);
    loop {
        match rd.next() {
            Ok(None) => return true,
            Ok(Some((_, fl))) if !nonzero(&fl) => {}
            _ => return false,
        }
    }
}

fn int_or_string(b: &[u8]) -> Result<Value, ProtoError> {
    let mut rd = Reader::new(b);
    let (mut t, mut i, mut s) = (0u64, 0i64, String::new());
    while let Some((n, fl)) = rd.next()? {
        match n {
            1 => t = varint_of(&fl)?,
            2 => i = varint_of(&fl)? as i64,
            3 => s = string(bytes_of(&fl)?)?,
            _ => {}
        }
    }
    Ok(if t == 1 { json!(s) } else { json!(i as i32) })
}

fn quantity(b: &[u8]) -> Result<Value, ProtoError> {
    let mut rd = Reader::new(b);
    let mut s = String::new();
    while let Some((n, fl)) = rd.next()? {
        if n == 1 {
            s = string(bytes_of(&fl)?)?;
        }
    }
    Ok(Value::String(s))
}

fn scalar(t: T, fl: &Field<'_>) -> Result<Value, ProtoError> {
    Ok(match t {
        T::Str => Value::String(string(bytes_of(fl)?)?),
        T::Bool => Value::Bool(varint_of(fl)? != 0),
        // int32 fields are sign-extended varints; int64 plain.
        T::Int => json!(varint_of(fl)? as i64),
        T::Meta => object_meta(bytes_of(fl)?)?,
        T::IntOrStr => int_or_string(bytes_of(fl)?)?,
        T::Qty => quantity(bytes_of(fl)?)?,
        T::Msg(d) => Value::Object(message(bytes_of(fl)?, d)?),
        T::Inline(_) | T::MapStr | T::MapQty => Value::Null,
    })
}

fn is_empty(v: &Value) -> bool {
    match v {
        Value::String(s) => s.is_empty(),
        Value::Bool(b) => !b,
        Value::Number(n) => n.as_i64() == Some(0),
        Value::Object(m) => m.is_empty(),
        Value::Array(a) => a.is_empty(),
        Value::Null => true,
    }
}

/// Decode one message with its descriptor.
fn message(b: &[u8], desc: &[F]) -> Result<Map<String, Value>, ProtoError> {
    let mut rd = Reader::new(b);
    let mut o = Map::new();
    while let Some((n, fl)) = rd.next()? {
        let Some(F(_, name, t, repeated, keep)) = desc.iter().find(|x| x.0 == n).copied() else {
            if nonzero(&fl) {
                return Err(ProtoError::Unsupported(format!(
                    "protobuf field {n} (kube-sim decodes only the fields kubectl's typed commands set; send JSON)"
                )));
            }
            continue;
        };
        match t {
            T::Inline(d) => {
                for (k2, v2) in message(bytes_of(&fl)?, d)? {
                    o.insert(k2, v2);
                }
            }
            T::MapStr => insert_entry(&mut o, name, bytes_of(&fl)?, false)?,
            T::MapQty => {
                let mut e = Reader::new(bytes_of(&fl)?);
                let (mut key, mut val) = (String::new(), Value::Null);
                while let Some((en, ef)) = e.next()? {
                    match en {
                        1 => key = string(bytes_of(&ef)?)?,
                        2 => val = quantity(bytes_of(&ef)?)?,
                        _ => {}
                    }
                }
                if let Value::Object(m) = o
                    .entry(name.to_string())
                    .or_insert_with(|| Value::Object(Map::new()))
                {
                    m.insert(key, val);
                }
            }
            _ => {
                // Packed repeated varints (int64 lists).
                if repeated
                    && matches!(t, T::Int)
                    && let Field::Bytes(bs) = fl
                {
                    let mut pr = Reader::new(bs);
                    while pr.pos < bs.len() {
                        push(&mut o, name, json!(pr.varint()? as i64));
                    }
                    continue;
                }
                let v = scalar(t, &fl)?;
                if repeated {
                    push(&mut o, name, v);
                } else if keep || !is_empty(&v) {
                    o.insert(name.to_string(), v);
                }
            }
        }
    }
    Ok(o)
}

fn descriptor(api_version: &str, kind: &str) -> Option<&'static [F]> {
    Some(match (api_version, kind) {
        ("apps/v1", "Deployment") => DEPLOYMENT,
        ("v1", "Pod") => POD,
        ("v1", "ServiceAccount") => SERVICE_ACCOUNT,
        ("v1", "Service") => SERVICE,
        ("rbac.authorization.k8s.io/v1", "Role") => ROLE,
        ("rbac.authorization.k8s.io/v1", "ClusterRole") => CLUSTER_ROLE,
        ("rbac.authorization.k8s.io/v1", "RoleBinding" | "ClusterRoleBinding") => BINDING,
        ("authorization.k8s.io/v1", "SelfSubjectAccessReview") => SELF_SAR,
        ("authorization.k8s.io/v1", "SubjectAccessReview" | "LocalSubjectAccessReview") => SAR,
        ("authorization.k8s.io/v1", "SelfSubjectRulesReview") => SELF_RULES,
        ("authentication.k8s.io/v1", "SelfSubjectReview") => SELF_REVIEW,
        ("authentication.k8s.io/v1", "TokenRequest") => TOKEN_REQUEST,
        ("authentication.k8s.io/v1", "TokenReview") => TOKEN_REVIEW,
        ("autoscaling/v1", "Scale") => SCALE,
        _ => return None,
    })
}

/// Convert a protobuf request body to its JSON form.
pub fn decode(body: &[u8]) -> Result<Value, ProtoError> {
    let rest = body
        .strip_prefix(MAGIC)
        .ok_or_else(|| ProtoError::Malformed("missing the k8s protobuf prefix".into()))?;
    let mut r = Reader::new(rest);
    let (mut api_version, mut kind, mut raw, mut encoding) =
        (String::new(), String::new(), &[][..], String::new());
    while let Some((n, f)) = r.next()? {
        match n {
            1 => {
                let mut t = Reader::new(bytes_of(&f)?);
                while let Some((tn, tf)) = t.next()? {
                    match tn {
                        1 => api_version = string(bytes_of(&tf)?)?,
                        2 => kind = string(bytes_of(&tf)?)?,
                        _ => {}
                    }
                }
            }
            2 => raw = bytes_of(&f)?,
            3 => encoding = string(bytes_of(&f)?)?,
            _ => {}
        }
    }
    if !encoding.is_empty() {
        return Err(ProtoError::Unsupported(format!(
            "content encoding {encoding}"
        )));
    }
    let mut obj = match (api_version.as_str(), kind.as_str()) {
        ("v1", "Secret") => secret(raw)?,
        ("v1", "ConfigMap") => config_map(raw)?,
        ("v1", "Namespace") => namespace(raw)?,
        (_, "DeleteOptions") => delete_options(raw)?,
        (av, k) if descriptor(av, k).is_some() => {
            let desc = descriptor(av, k).unwrap_or(&[]);
            message(raw, desc).map_err(|e| match e {
                ProtoError::Unsupported(m) => {
                    ProtoError::Unsupported(format!("{av}, Kind={k}: {m}"))
                }
                other => other,
            })?
        }
        _ => {
            return Err(ProtoError::Unsupported(format!(
                "{api_version}, Kind={kind}"
            )));
        }
    };
    obj.insert("apiVersion".into(), Value::String(api_version));
    obj.insert("kind".into(), Value::String(kind));
    Ok(Value::Object(obj))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn varint(mut v: u64, out: &mut Vec<u8>) {
        loop {
            let b = (v & 0x7f) as u8;
            v >>= 7;
            if v == 0 {
                out.push(b);
                return;
            }
            out.push(b | 0x80);
        }
    }

    fn bytes_field(n: u64, b: &[u8], out: &mut Vec<u8>) {
        varint((n << 3) | 2, out);
        varint(b.len() as u64, out);
        out.extend_from_slice(b);
    }

    fn entry(k: &str, v: &[u8]) -> Vec<u8> {
        let mut e = Vec::new();
        bytes_field(1, k.as_bytes(), &mut e);
        bytes_field(2, v, &mut e);
        e
    }

    fn envelope(api_version: &str, kind: &str, raw: &[u8]) -> Vec<u8> {
        let mut tm = Vec::new();
        bytes_field(1, api_version.as_bytes(), &mut tm);
        bytes_field(2, kind.as_bytes(), &mut tm);
        let mut out = MAGIC.to_vec();
        bytes_field(1, &tm, &mut out);
        bytes_field(2, raw, &mut out);
        out
    }

    #[test]
    fn secret_with_labels_data_and_type() {
        let mut meta = Vec::new();
        bytes_field(1, b"sh.helm.release.v1.x.v1", &mut meta);
        bytes_field(11, &entry("owner", b"helm"), &mut meta);
        bytes_field(14, b"example.com/f", &mut meta);
        let mut s = Vec::new();
        bytes_field(1, &meta, &mut s);
        bytes_field(2, &entry("release", &[0, 1, 255]), &mut s);
        bytes_field(3, b"helm.sh/release.v1", &mut s);
        varint(5 << 3, &mut s);
        varint(1, &mut s);
        let v = decode(&envelope("v1", "Secret", &s)).unwrap();
        assert_eq!(
            v,
            json!({"metadata": {"name": "sh.helm.release.v1.x.v1", "labels": {"owner": "helm"},
                                "finalizers": ["example.com/f"]},
                   "data": {"release": "AAH/"}, "type": "helm.sh/release.v1", "immutable": true,
                   "apiVersion": "v1", "kind": "Secret"})
        );
    }

    #[test]
    fn delete_options_and_namespace() {
        let mut pre = Vec::new();
        bytes_field(1, b"u-1", &mut pre);
        let mut d = Vec::new();
        bytes_field(2, &pre, &mut d);
        bytes_field(4, b"Foreground", &mut d);
        let v = decode(&envelope("meta.k8s.io/v1", "DeleteOptions", &d)).unwrap();
        assert_eq!(v["preconditions"], json!({"uid": "u-1"}));
        assert_eq!(v["propagationPolicy"], "Foreground");
        let mut meta = Vec::new();
        bytes_field(1, b"team-a", &mut meta);
        let mut ns = Vec::new();
        bytes_field(1, &meta, &mut ns);
        let v = decode(&envelope("v1", "Namespace", &ns)).unwrap();
        assert_eq!(v["metadata"]["name"], "team-a");
    }

    /// The body `kubectl auth can-i list pods` sent (recorded with `-v=9`).
    #[test]
    fn recorded_self_subject_access_review() {
        let hex = "6b3873000a320a17617574686f72697a6174696f6e2e6b38732e696f2f763112175365\
                   6c665375626a6563744163636573735265766965771 23d0a100a0012001a0022002a0032\
                   0038004200121f0a1d0a0764656661756c7412046c6973741a0022002a04706f64733200\
                   3a001a0808001200 1a0020001a002200";
        let clean: String = hex.chars().filter(|c| c.is_ascii_hexdigit()).collect();
        let bytes: Vec<u8> = (0..clean.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&clean[i..i + 2], 16).unwrap())
            .collect();
        let v = decode(&bytes).unwrap();
        assert_eq!(
            v,
            json!({"spec": {"resourceAttributes": {"namespace": "default", "verb": "list", "resource": "pods"}},
                   "apiVersion": "authorization.k8s.io/v1", "kind": "SelfSubjectAccessReview"})
        );
    }

    #[test]
    fn described_kinds_refuse_data_they_cannot_place() {
        let mut meta = Vec::new();
        bytes_field(1, b"sa1", &mut meta);
        let mut sa = Vec::new();
        bytes_field(1, &meta, &mut sa);
        bytes_field(9, b"surprise", &mut sa);
        assert!(matches!(
            decode(&envelope("v1", "ServiceAccount", &sa)),
            Err(ProtoError::Unsupported(_))
        ));
    }

    #[test]
    fn unknown_kinds_and_garbage_are_refused() {
        assert_eq!(
            decode(&envelope("batch/v1", "Job", &[])),
            Err(ProtoError::Unsupported("batch/v1, Kind=Job".into()))
        );
        assert!(matches!(decode(b"{}"), Err(ProtoError::Malformed(_))));
        let mut bad = MAGIC.to_vec();
        bad.extend_from_slice(&[0x12, 0x05, 0x01]);
        assert!(matches!(decode(&bad), Err(ProtoError::Malformed(_))));
    }
}
