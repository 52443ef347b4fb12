//! Cross-origin reads of status, for pages that embed the widget: only origins on the
//! deployment's allowlist (`MIRRORFARM_CORS_ORIGINS`) may read, and only the routes that opt in
//! (`cors` in the route table). Everything else stays same-origin.

use super::{ApiError, ApiRequest, ApiResponse, Dialect, Method, Resolution, resolve};

/// The origins allowed to read status cross-origin: exact `scheme://host[:port]` values, or `*`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CorsOrigins(Vec<String>);

/// A malformed `MIRRORFARM_CORS_ORIGINS` entry.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CorsError {
    /// Not `*` and not an `http(s)://host[:port]` origin (no path, no trailing slash).
    #[error("{0:?} is not an origin (expected * or scheme://host[:port])")]
    NotAnOrigin(String),
}

impl CorsOrigins {
    /// Reads a comma- or space-separated list; empty means no cross-origin reads.
    pub fn parse(list: &str) -> Result<Self, CorsError> {
        let origins = list.split([',', ' ']).map(str::trim).filter(|o| !o.is_empty());
        let checked = origins.map(|o| {
            let rest = o.strip_prefix("https://").or_else(|| o.strip_prefix("http://"));
            match rest {
                _ if o == "*" => Ok(o.to_owned()),
                Some(host) if !host.is_empty() && !host.contains(['/', '?', '#', '@']) => Ok(o.to_ascii_lowercase()),
                _ => Err(CorsError::NotAnOrigin(o.to_owned())),
            }
        });
        checked.collect::<Result<_, _>>().map(Self)
    }

    fn allows(&self, origin: &str) -> bool {
        self.0.iter().any(|o| o == "*" || o.eq_ignore_ascii_case(origin))
    }
}

/// Adds the CORS headers to a response of a cross-origin route when the caller's origin is
/// allowed — errors included, so the widget can tell "unauthorized" from a network failure.
pub(super) fn allow(req: &ApiRequest, origins: &CorsOrigins, response: &mut ApiResponse) {
    response.headers.push(("Vary".into(), "Origin".into()));
    let Some(origin) = req.header("origin").filter(|o| origins.allows(o)) else { return };
    response.headers.push(("Access-Control-Allow-Origin".into(), origin));
    response.headers.push(("Access-Control-Expose-Headers".into(), "ETag".into()));
}

/// Answers a CORS preflight (`OPTIONS`): `None` if the path has no cross-origin GET, so the
/// request is handled (and refused) like any other.
pub(super) fn preflight(req: &ApiRequest, origins: &CorsOrigins) -> Option<ApiResponse> {
    let Resolution::Found(route, ..) = resolve(Method::Get, &req.path) else { return None };
    if !route.cors {
        return None;
    }
    let Some(origin) = req.header("origin").filter(|o| origins.allows(o)) else {
        return Some(ApiError::OriginNotAllowed.into_response(Dialect::Bitbucket));
    };
    Some(ApiResponse::empty(204).with_headers(vec![
        ("Access-Control-Allow-Origin".into(), origin),
        ("Access-Control-Allow-Methods".into(), "GET".into()),
        ("Access-Control-Allow-Headers".into(), "Authorization, If-None-Match".into()),
        ("Access-Control-Max-Age".into(), "600".into()),
        ("Vary".into(), "Origin".into()),
    ]))
}

#[cfg(test)]
mod tests {
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    use super::*;

    #[test]
    fn parses_origins_and_refuses_urls() {
        let o = CorsOrigins::parse("https://docs.example, http://localhost:8080").expect("valid");
        assert!(o.allows("https://docs.example") && o.allows("http://localhost:8080"));
        assert!(!o.allows("https://evil.example"));
        assert!(CorsOrigins::parse("*").expect("valid").allows("https://anyone.example"));
        assert!(CorsOrigins::default().0.is_empty());
        for bad in ["docs.example", "https://docs.example/", "https://docs.example/page", "ftp://x"] {
            assert!(CorsOrigins::parse(bad).is_err(), "{bad}");
        }
    }
}
