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
                m.insert(key.into(), Value::String(string(bytes_of(&f)?)?));
            }
            7 => {
                m.insert("generation".into(), json!(varint_of(&f)? as i64));
            }
            8 => {
                m.insert("creationTimestamp".into(), time(bytes_of(&f)?)?);
            }
            9 => {
                m.insert("deletionTimestamp".into(), time(bytes_of(&f)?)?);
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

    #[test]
    fn unknown_kinds_and_garbage_are_refused() {
        assert_eq!(
            decode(&envelope("apps/v1", "Deployment", &[])),
            Err(ProtoError::Unsupported("apps/v1, Kind=Deployment".into()))
        );
        assert!(matches!(decode(b"{}"), Err(ProtoError::Malformed(_))));
        let mut bad = MAGIC.to_vec();
        bad.extend_from_slice(&[0x12, 0x05, 0x01]);
        assert!(matches!(decode(&bad), Err(ProtoError::Malformed(_))));
    }
}
