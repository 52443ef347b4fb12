//! Conditional GETs: every successful GET carries an ETag, and a request whose `If-None-Match`
//! names it gets `304 Not Modified` with no body — so pollers such as the widget pay for a
//! status only when it changed. GitLab's API does the same (weak ETags, revalidate each time).

use super::{ApiRequest, ApiResponse};

/// Headers a 304 must repeat from the 200 it stands for.
const KEPT_ON_304: &[&str] = &["etag", "cache-control", "vary"];

/// Tags a successful GET's response with its ETag, or turns it into a 304 when the caller
/// already has this version.
pub(super) fn answer(req: &ApiRequest, mut response: ApiResponse) -> ApiResponse {
    let Some(body) = response.body.as_deref().filter(|_| response.status == 200) else { return response };
    let etag = format!("W/\"{:016x}\"", fnv1a64(body));
    response.headers.push(("ETag".into(), etag.clone()));
    response.headers.push(("Cache-Control".into(), "max-age=0, private, must-revalidate".into()));
    if req.header("if-none-match").is_some_and(|tags| matches(&tags, &etag)) {
        let headers =
            response.headers.into_iter().filter(|(k, _)| KEPT_ON_304.contains(&k.to_ascii_lowercase().as_str()));
        return ApiResponse::empty(304).with_headers(headers.collect());
    }
    response
}

/// Whether an `If-None-Match` list names `etag` (weak comparison, as RFC 9110 asks for GETs).
fn matches(list: &str, etag: &str) -> bool {
    let opaque = |t: &str| t.trim().trim_start_matches("W/").to_owned();
    list.split(',').any(|t| t.trim() == "*" || opaque(t) == opaque(etag))
}

/// FNV-1a, 64 bits: a fast, stable fingerprint of a body (not a security boundary: an ETag only
/// saves bandwidth, and a collision costs one stale poll).
fn fnv1a64(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3))
}

#[cfg(test)]
mod tests {
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    use super::*;
    use crate::api::Method;

    fn get(if_none_match: Option<&str>) -> ApiRequest {
        ApiRequest {
            method: Method::Get,
            origin: "http://x".into(),
            path: "/".into(),
            query: String::new(),
            content_type: None,
            authorization: None,
            private_token: None,
            body: Vec::new(),
            declared_length: None,
            headers: if_none_match.map(|v| vec![("if-none-match".into(), v.into())]).unwrap_or_default(),
        }
    }

    fn etag(r: &ApiResponse) -> String {
        r.headers.iter().find(|(k, _)| k == "ETag").map(|(_, v)| v.clone()).expect("an ETag")
    }

    #[test]
    fn same_body_same_tag_and_a_match_is_a_bodyless_304() {
        let first = answer(&get(None), ApiResponse::json(200, &[1, 2]));
        let tag = etag(&first);
        assert_eq!(tag, etag(&answer(&get(None), ApiResponse::json(200, &[1, 2]))));
        assert_ne!(tag, etag(&answer(&get(None), ApiResponse::json(200, &[1, 3]))));
        let again = answer(
            &get(Some(&format!("\"other\", {}", tag.trim_start_matches("W/")))),
            ApiResponse::json(200, &[1, 2]),
        );
        assert_eq!((again.status, again.body.as_deref(), etag(&again)), (304, None, tag.clone()));
        let changed = answer(&get(Some(&tag)), ApiResponse::json(200, &[9]));
        assert_eq!(changed.status, 200);
        assert!(changed.body.is_some());
    }

    #[test]
    fn errors_are_never_tagged() {
        let r = answer(&get(Some("*")), ApiResponse::json(404, &"gone"));
        assert_eq!(r.status, 404);
        assert!(r.headers.is_empty());
    }
}
