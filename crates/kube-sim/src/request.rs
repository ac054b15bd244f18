//! Request parsing: routes (`requestinfo.go`), query strings, media types and Accept
//! negotiation (`handlers/negotiation`).

use crate::error::StatusError;

/// Query parameters in order; the first value of a key wins, as `url.Values.Get` does.
#[derive(Debug, Clone, Default)]
pub struct Query {
    pairs: Vec<(String, String)>,
}

impl Query {
    pub fn parse(q: &str) -> Self {
        Self {
            pairs: form_urlencoded::parse(q.as_bytes())
                .filter(|(k, _)| !k.is_empty())
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect(),
        }
    }

    pub fn get(&self, key: &str) -> Option<&str> {
        self.pairs
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    pub fn all(&self, key: &str) -> Vec<&str> {
        self.pairs
            .iter()
            .filter(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
            .collect()
    }

    /// Non-empty value.
    pub fn value(&self, key: &str) -> Option<&str> {
        self.get(key).filter(|v| !v.is_empty())
    }

    /// Go's `strconv.ParseBool` as used for `watch`, `allowWatchBookmarks`, `force`.
    pub fn flag(&self, key: &str) -> bool {
        matches!(
            self.get(key),
            Some("1" | "t" | "T" | "true" | "TRUE" | "True")
        )
    }
}

/// A resource request path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResourcePath {
    pub group: String,
    pub version: String,
    pub namespace: Option<String>,
    pub resource: String,
    pub name: Option<String>,
    pub subresource: Option<String>,
    /// Legacy `/watch/` prefix.
    pub watch_prefix: bool,
}

/// What a request path addresses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    Version,
    Health(String),
    /// `/api`
    CoreVersions,
    /// `/apis`
    Groups,
    /// `/apis/<group>`
    Group(String),
    /// `/api/v1`, `/apis/<group>/<version>`
    GroupVersion(String, String),
    OpenApiV3,
    OpenApiV3Gv(String, String),
    OpenApiV2,
    Resource(ResourcePath),
    NotFound,
}

fn decode_segment(s: &str) -> String {
    percent_encoding::percent_decode_str(s)
        .decode_utf8_lossy()
        .into_owned()
}

/// Route a URL path.
pub fn route(path: &str) -> Route {
    let trimmed = path.trim_matches('/');
    let parts: Vec<String> = if trimmed.is_empty() {
        Vec::new()
    } else {
        trimmed.split('/').map(decode_segment).collect()
    };
    let p: Vec<&str> = parts.iter().map(String::as_str).collect();
    match p.as_slice() {
        ["version"] => return Route::Version,
        [h @ ("healthz" | "livez" | "readyz"), ..] => return Route::Health(h.to_string()),
        ["api"] => return Route::CoreVersions,
        ["apis"] => return Route::Groups,
        ["apis", g] => return Route::Group(g.to_string()),
        ["api", v] => return Route::GroupVersion(String::new(), v.to_string()),
        ["apis", g, v] => return Route::GroupVersion(g.to_string(), v.to_string()),
        ["openapi", "v3"] => return Route::OpenApiV3,
        ["openapi", "v3", "api", v] => return Route::OpenApiV3Gv(String::new(), v.to_string()),
        ["openapi", "v3", "apis", g, v] => {
            return Route::OpenApiV3Gv(g.to_string(), v.to_string());
        }
        ["openapi", "v2"] | ["swagger.json"] => return Route::OpenApiV2,
        _ => {}
    }
    let (group, version, rest) = match p.as_slice() {
        ["api", v, rest @ ..] => (String::new(), v.to_string(), rest),
        ["apis", g, v, rest @ ..] => (g.to_string(), v.to_string(), rest),
        _ => return Route::NotFound,
    };
    let mut rest: Vec<&str> = rest.to_vec();
    let mut watch_prefix = false;
    if rest.first() == Some(&"watch") {
        watch_prefix = true;
        rest.remove(0);
    }
    let mut namespace = None;
    if rest.first() == Some(&"namespaces") && rest.len() >= 2 {
        let ns_subresource = rest.len() == 3 && matches!(rest[2], "status" | "finalize");
        if rest.len() > 2 && !ns_subresource {
            namespace = Some(rest[1].to_string());
            rest.drain(0..2);
        }
    }
    if rest.is_empty() || rest.len() > 3 {
        return Route::NotFound;
    }
    Route::Resource(ResourcePath {
        group,
        version,
        namespace,
        resource: rest[0].to_string(),
        name: rest.get(1).map(|s| s.to_string()),
        subresource: rest.get(2).map(|s| s.to_string()),
        watch_prefix,
    })
}

/// One media range of an Accept or Content-Type header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MediaType {
    pub essence: String,
    pub params: Vec<(String, String)>,
}

impl MediaType {
    pub fn parse(s: &str) -> Self {
        let mut it = s.split(';');
        let essence = it.next().unwrap_or("").trim().to_ascii_lowercase();
        let params = it
            .filter_map(|p| {
                let (k, v) = p.split_once('=')?;
                Some((
                    k.trim().to_ascii_lowercase(),
                    v.trim().trim_matches('"').to_string(),
                ))
            })
            .collect();
        Self { essence, params }
    }

    pub fn param(&self, k: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|(x, _)| x == k)
            .map(|(_, v)| v.as_str())
    }
}

pub fn parse_accept(accept: Option<&str>) -> Vec<MediaType> {
    match accept {
        None => vec![],
        Some(a) => a
            .split(',')
            .map(MediaType::parse)
            .filter(|m| !m.essence.is_empty())
            .collect(),
    }
}

/// The representation a resource response is rendered in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Output {
    Json,
    Yaml,
    /// `meta.k8s.io` Table, with row objects per `includeObject`.
    Table {
        v1beta1: bool,
    },
    /// `PartialObjectMetadata` / `PartialObjectMetadataList`.
    Partial,
}

/// The 406 upstream answers when no alternative of Accept can be produced.
pub fn not_acceptable() -> StatusError {
    StatusError::new(
        406,
        "NotAcceptable",
        "only the following media types are accepted: application/json, application/yaml, application/vnd.kubernetes.protobuf",
    )
}

/// Pick the first producible alternative of `Accept` for a resource endpoint.
pub fn negotiate(accept: Option<&str>, allow_table: bool) -> Result<Output, StatusError> {
    let list = parse_accept(accept);
    if list.is_empty() {
        return Ok(Output::Json);
    }
    for m in &list {
        let json_like = matches!(
            m.essence.as_str(),
            "application/json" | "*/*" | "application/*"
        );
        if m.essence == "application/yaml" && m.param("as").is_none() {
            return Ok(Output::Yaml);
        }
        if !json_like {
            continue;
        }
        match m.param("as") {
            None => return Ok(Output::Json),
            Some("Table") => {
                if allow_table && m.param("g") == Some("meta.k8s.io") {
                    match m.param("v") {
                        Some("v1") => return Ok(Output::Table { v1beta1: false }),
                        Some("v1beta1") => return Ok(Output::Table { v1beta1: true }),
                        _ => {}
                    }
                }
            }
            Some("PartialObjectMetadata" | "PartialObjectMetadataList") => {
                if m.param("g") == Some("meta.k8s.io")
                    && matches!(m.param("v"), Some("v1" | "v1beta1"))
                {
                    return Ok(Output::Partial);
                }
            }
            Some(_) => {}
        }
    }
    Err(not_acceptable())
}

/// Whether Accept asks for aggregated discovery (`as=APIGroupDiscoveryList`), and which
/// version of it.
pub fn wants_aggregated(accept: Option<&str>) -> Option<&'static str> {
    for m in parse_accept(accept) {
        if m.essence != "application/json" {
            continue;
        }
        match (m.param("as"), m.param("g"), m.param("v")) {
            (Some("APIGroupDiscoveryList"), Some("apidiscovery.k8s.io"), Some("v2")) => {
                return Some("v2");
            }
            (Some("APIGroupDiscoveryList"), Some("apidiscovery.k8s.io"), Some("v2beta1")) => {
                return Some("v2beta1");
            }
            (None, _, _) => return None,
            _ => {}
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes() {
        assert_eq!(route("/version"), Route::Version);
        assert_eq!(
            route("/api/v1/namespaces/default/configmaps/x"),
            Route::Resource(ResourcePath {
                group: "".into(),
                version: "v1".into(),
                namespace: Some("default".into()),
                resource: "configmaps".into(),
                name: Some("x".into()),
                subresource: None,
                watch_prefix: false,
            })
        );
        match route("/api/v1/namespaces/foo/status") {
            Route::Resource(r) => {
                assert_eq!(r.resource, "namespaces");
                assert_eq!(r.name.as_deref(), Some("foo"));
                assert_eq!(r.subresource.as_deref(), Some("status"));
                assert_eq!(r.namespace, None);
            }
            r => panic!("{r:?}"),
        }
        match route("/apis/example.com/v1/widgets") {
            Route::Resource(r) => assert_eq!(r.namespace, None),
            r => panic!("{r:?}"),
        }
        assert_eq!(
            route("/apis/apps/v1"),
            Route::GroupVersion("apps".into(), "v1".into())
        );
        assert_eq!(route("/nope"), Route::NotFound);
    }

    #[test]
    fn accept() {
        let kubectl = "application/json;as=Table;v=v1;g=meta.k8s.io,application/json;as=Table;v=v1beta1;g=meta.k8s.io,application/json";
        assert_eq!(
            negotiate(Some(kubectl), true).unwrap(),
            Output::Table { v1beta1: false }
        );
        assert_eq!(negotiate(Some(kubectl), false).unwrap(), Output::Json);
        assert_eq!(
            negotiate(
                Some("application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1"),
                true
            )
            .unwrap(),
            Output::Partial
        );
        assert_eq!(
            negotiate(Some("application/vnd.kubernetes.protobuf"), true)
                .unwrap_err()
                .code,
            406
        );
        assert_eq!(
            wants_aggregated(Some(
                "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,application/json"
            )),
            Some("v2")
        );
        assert_eq!(wants_aggregated(Some("application/json")), None);
    }
}
