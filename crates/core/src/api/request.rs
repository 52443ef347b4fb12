//! An HTTP request as the core sees it, with query and body decoding (JSON and form).

use std::collections::BTreeMap;

use serde_json::Value;

/// Largest request body accepted, in bytes.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// HTTP methods the API serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    /// GET (and HEAD).
    Get,
    /// POST.
    Post,
    /// PUT.
    Put,
    /// DELETE.
    Delete,
    /// OPTIONS (CORS preflight).
    Options,
    /// Anything else.
    Other,
}

impl Method {
    /// Reads a method name.
    pub fn parse(name: &str) -> Self {
        match name.to_ascii_uppercase().as_str() {
            "GET" | "HEAD" => Self::Get,
            "POST" => Self::Post,
            "PUT" => Self::Put,
            "DELETE" => Self::Delete,
            "OPTIONS" => Self::Options,
            _ => Self::Other,
        }
    }
}

/// A request handed in by the shell.
#[derive(Debug, Clone)]
pub struct ApiRequest {
    /// Method.
    pub method: Method,
    /// `scheme://host[:port]` the request was made to, for links.
    pub origin: String,
    /// Path, still percent-encoded.
    pub path: String,
    /// Query string without `?`.
    pub query: String,
    /// `Content-Type`.
    pub content_type: Option<String>,
    /// `Authorization`.
    pub authorization: Option<String>,
    /// `PRIVATE-TOKEN`.
    pub private_token: Option<String>,
    /// The body (left empty by the shell when `declared_length` is already too large).
    pub body: Vec<u8>,
    /// `Content-Length`, if sent, so oversized bodies are refused before they are read.
    pub declared_length: Option<u64>,
    /// Every header, names lower-cased (webhook signatures and events are read from here).
    pub headers: Vec<(String, String)>,
}

impl ApiRequest {
    /// A header's value, by case-insensitive name.
    pub fn header(&self, name: &str) -> Option<String> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.clone())
    }
}

/// Splits an absolute request URL, as the runtime hands it over (already normalised), into
/// origin (`scheme://host[:port]`), path (still percent-encoded) and query (without `?`).
/// The fragment, never sent by clients, is dropped.
pub fn split_request_url(url: &str) -> (&str, &str, &str) {
    let url = url.split('#').next().unwrap_or_default();
    let after_scheme = url.find("://").map_or(0, |i| i + 3);
    let path_start = url[after_scheme..].find(['/', '?']).map_or(url.len(), |i| after_scheme + i);
    let (origin, rest) = url.split_at(path_start);
    let (path, query) = rest.split_once('?').unwrap_or((rest, ""));
    (origin, if path.is_empty() { "/" } else { path }, query)
}

/// Decoded query parameters, in order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Query(Vec<(String, String)>);

impl Query {
    /// Decodes `a=1&b=x+y`.
    pub fn parse(text: &str) -> Self {
        Self(decode_form(text).unwrap_or_default())
    }

    /// The first value of `key`.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.0.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
    }

    /// The pairs, except those named.
    pub fn without(&self, keys: &[&str]) -> Vec<(String, String)> {
        self.0.iter().filter(|(k, _)| !keys.contains(&k.as_str())).cloned().collect()
    }

    /// Encodes pairs as a query string.
    pub fn encode_pairs(pairs: &[(String, String)]) -> String {
        pairs.iter().map(|(k, v)| format!("{}={}", encode(k), encode(v))).collect::<Vec<_>>().join("&")
    }

    /// The pairs.
    pub fn pairs(&self) -> &[(String, String)] {
        &self.0
    }
}

/// Percent-encodes everything but unreserved characters.
pub fn encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Percent-decodes a path segment (`+` stays `+`); `None` if the result is not UTF-8.
pub fn decode_segment(text: &str) -> Option<String> {
    percent_decode(text, false)
}

fn percent_decode(text: &str, plus_is_space: bool) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).ok();
                match hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                    Some(b) => {
                        out.push(b);
                        i += 3;
                        continue;
                    }
                    None => out.push(b'%'),
                }
            }
            b'+' if plus_is_space => out.push(b' '),
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8(out).ok()
}

fn decode_form(text: &str) -> Option<Vec<(String, String)>> {
    text.split('&')
        .filter(|p| !p.is_empty())
        .map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            Some((percent_decode(k, true)?, percent_decode(v, true)?))
        })
        .collect()
}

/// A parameter that is missing or of the wrong type (Grape's wording).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FieldError {
    /// A required parameter was not sent.
    #[error("{0} is missing")]
    Missing(&'static str),
    /// A parameter could not be read as its type.
    #[error("{0} is invalid")]
    Invalid(&'static str),
}

impl FieldError {
    /// The parameter concerned.
    pub fn field(&self) -> &'static str {
        match self {
            Self::Missing(f) | Self::Invalid(f) => f,
        }
    }
}

/// Why a body could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BodyError {
    /// Larger than [`MAX_BODY_BYTES`].
    #[error("request body too large")]
    TooLarge,
    /// Not valid JSON, not a JSON object, or a malformed form.
    #[error("malformed request body: {0}")]
    Malformed(String),
    /// A content type other than JSON or form.
    #[error("unsupported content type {0:?}")]
    UnsupportedType(String),
}

#[derive(Debug, Clone, PartialEq)]
enum FieldValue {
    Json(Value),
    Text(String),
}

/// A route's typed input, read from a JSON object, a form or the query string (the body wins),
/// as leniently as Bitbucket's and GitLab's clients send it (booleans and numbers as text). The
/// route table names each route's input ([`super::Input`]).
pub trait FromFields: Sized {
    /// Reads the input.
    fn from_fields(fields: &Fields) -> Result<Self, FieldError>;
}

/// Named parameters from a JSON object, a form body and the query string (body wins).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Fields(BTreeMap<String, FieldValue>);

impl Fields {
    /// Decodes the body by content type; query parameters fill in what the body lacks.
    pub fn parse(content_type: Option<&str>, body: &[u8], query: &Query) -> Result<Self, BodyError> {
        if body.len() > MAX_BODY_BYTES {
            return Err(BodyError::TooLarge);
        }
        let mut fields = Self::default();
        for (k, v) in query.pairs() {
            fields.0.insert(k.clone(), FieldValue::Text(v.clone()));
        }
        let mime = content_type.unwrap_or("").split(';').next().unwrap_or("").trim().to_ascii_lowercase();
        let text = std::str::from_utf8(body).map_err(|_| BodyError::Malformed("body is not UTF-8".into()))?;
        if text.trim().is_empty() {
            return Ok(fields);
        }
        match mime.as_str() {
            "application/json" | "" => {
                let value: Value = serde_json::from_str(text).map_err(|e| BodyError::Malformed(e.to_string()))?;
                let Value::Object(map) = value else {
                    return Err(BodyError::Malformed("expected a JSON object".into()));
                };
                fields.0.extend(map.into_iter().map(|(k, v)| (k, FieldValue::Json(v))));
            }
            "application/x-www-form-urlencoded" => {
                let pairs = decode_form(text).ok_or_else(|| BodyError::Malformed("form is not UTF-8".into()))?;
                fields.0.extend(pairs.into_iter().map(|(k, v)| (k, FieldValue::Text(v))));
            }
            other => return Err(BodyError::UnsupportedType(other.to_owned())),
        }
        Ok(fields)
    }

    /// Fields from a JSON object (tests and internal callers).
    pub fn from_json(value: Value) -> Option<Self> {
        match value {
            Value::Object(map) => Some(Self(map.into_iter().map(|(k, v)| (k, FieldValue::Json(v))).collect())),
            _ => None,
        }
    }

    /// A nested JSON object's fields (`project: {key}`); JSON `null` counts as absent.
    pub fn object(&self, name: &'static str) -> Result<Option<Fields>, FieldError> {
        match self.0.get(name) {
            None | Some(FieldValue::Json(Value::Null)) => Ok(None),
            Some(FieldValue::Json(v @ Value::Object(_))) => Ok(Self::from_json(v.clone())),
            Some(_) => Err(FieldError::Invalid(name)),
        }
    }

    /// A string parameter; JSON `null` counts as absent.
    pub fn string(&self, name: &'static str) -> Result<Option<String>, FieldError> {
        match self.0.get(name) {
            None | Some(FieldValue::Json(Value::Null)) => Ok(None),
            Some(FieldValue::Json(Value::String(s)) | FieldValue::Text(s)) => Ok(Some(s.clone())),
            Some(FieldValue::Json(_)) => Err(FieldError::Invalid(name)),
        }
    }

    /// A string parameter that may be cleared: `Some(None)` when sent as `null` or empty.
    pub fn nullable_string(&self, name: &'static str) -> Result<Option<Option<String>>, FieldError> {
        match self.0.get(name) {
            None => Ok(None),
            Some(FieldValue::Json(Value::Null)) => Ok(Some(None)),
            Some(_) => Ok(Some(self.string(name)?.filter(|s| !s.is_empty()))),
        }
    }

    /// A boolean parameter: JSON booleans, or `true`/`false`/`1`/`0`/`yes`/`no`/`t`/`f` as text.
    pub fn boolean(&self, name: &'static str) -> Result<Option<bool>, FieldError> {
        let text = match self.0.get(name) {
            None | Some(FieldValue::Json(Value::Null)) => return Ok(None),
            Some(FieldValue::Json(Value::Bool(b))) => return Ok(Some(*b)),
            Some(FieldValue::Json(Value::String(s)) | FieldValue::Text(s)) => s.to_ascii_lowercase(),
            Some(FieldValue::Json(Value::Number(n))) => n.to_string(),
            Some(FieldValue::Json(_)) => return Err(FieldError::Invalid(name)),
        };
        match text.as_str() {
            "true" | "1" | "yes" | "t" => Ok(Some(true)),
            "false" | "0" | "no" | "f" => Ok(Some(false)),
            _ => Err(FieldError::Invalid(name)),
        }
    }

    /// A list of strings (JSON array only).
    pub fn string_list(&self, name: &'static str) -> Result<Option<Vec<String>>, FieldError> {
        match self.0.get(name) {
            None | Some(FieldValue::Json(Value::Null)) => Ok(None),
            Some(FieldValue::Json(Value::Array(items))) => items
                .iter()
                .map(|v| v.as_str().map(str::to_owned).ok_or(FieldError::Invalid(name)))
                .collect::<Result<_, _>>()
                .map(Some),
            Some(_) => Err(FieldError::Invalid(name)),
        }
    }

    /// A non-negative integer parameter.
    pub fn unsigned(&self, name: &'static str) -> Result<Option<u64>, FieldError> {
        match self.0.get(name) {
            None | Some(FieldValue::Json(Value::Null)) => Ok(None),
            Some(FieldValue::Json(Value::Number(n))) => n.as_u64().map(Some).ok_or(FieldError::Invalid(name)),
            Some(FieldValue::Json(Value::String(s)) | FieldValue::Text(s)) => {
                s.parse().map(Some).map_err(|_| FieldError::Invalid(name))
            }
            Some(FieldValue::Json(_)) => Err(FieldError::Invalid(name)),
        }
    }
}

#[cfg(test)]
mod tests {
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    use super::*;

    #[test]
    fn splits_request_urls() {
        assert_eq!(
            split_request_url("http://127.0.0.1:8787/api/v4/projects/MF%2Fr/remote_mirrors?page=2&per_page=1"),
            ("http://127.0.0.1:8787", "/api/v4/projects/MF%2Fr/remote_mirrors", "page=2&per_page=1")
        );
        assert_eq!(split_request_url("https://h.example/"), ("https://h.example", "/", ""));
        assert_eq!(split_request_url("https://h.example?x=1#frag"), ("https://h.example", "/", "x=1"));
        assert_eq!(split_request_url("https://h.example/a?b?c"), ("https://h.example", "/a", "b?c"));
    }

    #[test]
    fn decodes_queries_and_segments() {
        let q = Query::parse("a=1&b=x+y%21&c&d=%zz");
        assert_eq!(q.get("b"), Some("x y!"));
        assert_eq!(q.get("c"), Some(""));
        assert_eq!(q.get("d"), Some("%zz"));
        assert_eq!(decode_segment("KEY%2Frepo+1").as_deref(), Some("KEY/repo+1"));
        assert_eq!(decode_segment("%").as_deref(), Some("%"));
        assert_eq!(decode_segment("%ff"), None);
        assert_eq!(encode("a b/é"), "a%20b%2F%C3%A9");
    }

    #[test]
    fn reads_json_and_form_alike() {
        let json =
            Fields::parse(Some("application/json; charset=utf-8"), br#"{"url":"u","enabled":true}"#, &Query::default())
                .expect("json");
        let form = Fields::parse(Some("application/x-www-form-urlencoded"), b"url=u&enabled=true", &Query::default())
            .expect("form");
        for f in [json, form] {
            assert_eq!(f.string("url"), Ok(Some("u".into())));
            assert_eq!(f.boolean("enabled"), Ok(Some(true)));
            assert_eq!(f.boolean("absent"), Ok(None));
        }
    }

    #[test]
    fn query_fills_in_and_body_wins() {
        let f = Fields::parse(
            Some("application/json"),
            br#"{"enabled":false}"#,
            &Query::parse("enabled=true&keep_divergent_refs=1"),
        )
        .expect("ok");
        assert_eq!(f.boolean("enabled"), Ok(Some(false)));
        assert_eq!(f.boolean("keep_divergent_refs"), Ok(Some(true)));
    }

    #[test]
    fn refuses_bad_bodies_and_types() {
        assert!(matches!(
            Fields::parse(Some("application/json"), b"{nope", &Query::default()),
            Err(BodyError::Malformed(_))
        ));
        assert!(matches!(
            Fields::parse(Some("application/json"), b"[1]", &Query::default()),
            Err(BodyError::Malformed(_))
        ));
        assert!(matches!(
            Fields::parse(Some("text/xml"), b"<a/>", &Query::default()),
            Err(BodyError::UnsupportedType(_))
        ));
        assert_eq!(Fields::parse(None, &vec![b' '; MAX_BODY_BYTES + 1], &Query::default()), Err(BodyError::TooLarge));
        assert_eq!(Fields::parse(Some("application/json"), b"", &Query::default()), Ok(Fields::default()));
        let f =
            Fields::from_json(serde_json::json!({"enabled": "maybe", "url": [1], "r": null, "n": -1})).expect("object");
        assert_eq!(f.boolean("enabled"), Err(FieldError::Invalid("enabled")));
        assert_eq!(f.string("url"), Err(FieldError::Invalid("url")));
        assert_eq!(f.nullable_string("r"), Ok(Some(None)));
        assert_eq!(f.unsigned("n"), Err(FieldError::Invalid("n")));
    }
}
