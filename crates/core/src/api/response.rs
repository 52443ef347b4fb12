//! Responses, and the one mapping from [`ApiError`] to HTTP status and each API's error shape.

use serde::Serialize;
use serde_json::json;

use super::request::BodyError;
use crate::store::{CryptoError, StoreError};

/// A response for the shell to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiResponse {
    /// Status code.
    pub status: u16,
    /// Headers besides `Content-Type`.
    pub headers: Vec<(String, String)>,
    /// The body, if any: JSON unless a `Content-Type` header says otherwise.
    pub body: Option<Vec<u8>>,
    /// A server-side diagnostic for the shell to log (already free of secrets); never sent.
    pub diagnostic: Option<String>,
    /// A blob the shell streams between the HTTP body and blob storage itself (migration
    /// archives, too large to pass through the core).
    pub transfer: Option<BlobTransfer>,
}

/// What the shell streams for a response (see [`ApiResponse::transfer`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BlobTransfer {
    /// Stream the request's body (not read by the shell: its route's input is
    /// [`super::Input::Stream`]) into blob storage under `key`, then answer the response; a
    /// failed write answers 500 instead.
    Store {
        /// The blob's key.
        key: String,
    },
    /// Answer with the blob under `key` as the body (`application/octet-stream`), streamed;
    /// 404 if there is none.
    Serve {
        /// The blob's key.
        key: String,
    },
}

impl ApiResponse {
    /// A JSON response.
    pub fn json<T: Serialize>(status: u16, value: &T) -> Self {
        // Serializing our own DTOs cannot fail: they hold no maps with non-string keys.
        let body = serde_json::to_vec(value).expect("DTOs serialize to JSON");
        Self { status, headers: Vec::new(), body: Some(body), diagnostic: None, transfer: None }
    }

    /// A text response (Prometheus metrics) of `content_type`.
    pub fn text(status: u16, content_type: &str, body: String) -> Self {
        Self::bytes(status, content_type, body.into_bytes())
    }

    /// A response of `content_type` (an avatar image).
    pub fn bytes(status: u16, content_type: &str, body: Vec<u8>) -> Self {
        let headers = vec![("Content-Type".to_owned(), content_type.to_owned())];
        Self { status, headers, body: Some(body), diagnostic: None, transfer: None }
    }

    /// A response with no body.
    pub fn empty(status: u16) -> Self {
        Self { status, headers: Vec::new(), body: None, diagnostic: None, transfer: None }
    }

    /// The same response, with a blob for the shell to stream.
    pub fn with_transfer(mut self, transfer: BlobTransfer) -> Self {
        self.transfer = Some(transfer);
        self
    }

    /// Adds headers.
    pub fn with_headers(mut self, headers: Vec<(String, String)>) -> Self {
        self.headers.extend(headers);
        self
    }
}

/// Which API's conventions a route follows (error shape, not-found wording).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    /// GitLab: `{"message": …}`.
    GitLab,
    /// Bitbucket (and our own API): `{"errors": [{"context", "message", "exceptionName"}]}`.
    Bitbucket,
}

/// Every way a request can fail. [`ApiError::status`] is the one mapping to HTTP status.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ApiError {
    /// The request is malformed.
    #[error("{0}")]
    BadRequest(String),
    /// One field is wrong.
    #[error("{field} {message}")]
    Field {
        /// The field.
        field: String,
        /// What is wrong with it.
        message: String,
    },
    /// No or bad credentials.
    #[error("Authentication failed. Please check your credentials and try again.")]
    Unauthorized,
    /// Authenticated, but not allowed.
    #[error("You are not permitted to access this resource")]
    Forbidden,
    /// A multipart write without `X-Atlassian-Token: no-check`: Bitbucket's XSRF protection
    /// (a browser form on another site cannot set that header).
    #[error("XSRF check failed")]
    XsrfCheckFailed,
    /// A cross-origin request from an origin not on the allowlist (CORS preflight).
    #[error("This origin may not call this resource")]
    OriginNotAllowed,
    /// The resource does not exist or is hidden from the caller.
    #[error("{message}")]
    NotFound {
        /// GitLab's noun ("Project", "Remote Mirror").
        what: &'static str,
        /// Bitbucket's sentence.
        message: String,
    },
    /// No such route for this method.
    #[error("Method not allowed")]
    MethodNotAllowed,
    /// The request clashes with current state.
    #[error("{0}")]
    Conflict(String),
    /// The body is too large.
    #[error("Request body too large")]
    PayloadTooLarge,
    /// The request is well formed but asks nothing (a hook-script update with no field).
    #[error("{0}")]
    Unprocessable(String),
    /// The body's content type is not JSON or form.
    #[error("{0}")]
    UnsupportedMediaType(String),
    /// A fault of ours; the detail is logged, not sent.
    #[error("An internal error occurred")]
    Internal(String),
    /// A documented operation this server does not carry out (Bitbucket's `REBASE`).
    #[error("{0}")]
    NotImplemented(String),
    /// The work needs a farm node and none finished it in time (it stays queued).
    #[error("{0}")]
    Unavailable(String),
    /// The caller's rate-limit bucket is empty.
    #[error("You have made too many requests. Try again in {retry_after_secs} seconds.")]
    RateLimited {
        /// Seconds until a token is back (`Retry-After`).
        retry_after_secs: i64,
    },
}

impl ApiError {
    /// The HTTP status of each error in a dialect. Bitbucket answers 401, not 403, to a
    /// signed-in caller who lacks a permission; GitLab answers 403.
    pub fn status(&self, dialect: Dialect) -> u16 {
        match self {
            Self::BadRequest(_) | Self::Field { .. } => 400,
            Self::Unauthorized => 401,
            Self::Forbidden if dialect == Dialect::Bitbucket => 401,
            Self::Forbidden | Self::OriginNotAllowed | Self::XsrfCheckFailed => 403,
            Self::NotFound { .. } => 404,
            Self::MethodNotAllowed => 405,
            Self::Conflict(_) => 409,
            Self::PayloadTooLarge => 413,
            Self::Unprocessable(_) => 422,
            Self::UnsupportedMediaType(_) => 415,
            Self::Internal(_) => 500,
            Self::NotImplemented(_) => 501,
            Self::Unavailable(_) => 503,
            Self::RateLimited { .. } => 429,
        }
    }

    /// A not-found error naming the resource.
    pub fn not_found(what: &'static str, message: impl Into<String>) -> Self {
        Self::NotFound { what, message: message.into() }
    }

    /// Renders the error in the dialect's shape.
    pub fn into_response(self, dialect: Dialect) -> ApiResponse {
        let status = self.status(dialect);
        let diagnostic = match &self {
            Self::Internal(detail) => Some(detail.clone()),
            _ => None,
        };
        let body = match dialect {
            Dialect::GitLab => json!(GitLabError {
                message: match &self {
                    Self::Field { field, message } => json!({ field: [message] }),
                    Self::BadRequest(m) => json!(format!("400 Bad request - {m}")),
                    Self::NotFound { what: "", .. } => json!("404 Not Found"),
                    Self::NotFound { what, .. } => json!(format!("404 {what} Not Found")),
                    Self::Unauthorized => json!("401 Unauthorized"),
                    Self::Forbidden | Self::OriginNotAllowed => json!("403 Forbidden"),
                    Self::XsrfCheckFailed => json!("403 Forbidden - XSRF check failed"),
                    Self::MethodNotAllowed => json!("405 Method Not Allowed"),
                    Self::Conflict(m) => json!(format!("409 Conflict - {m}")),
                    Self::PayloadTooLarge => json!("413 Request Entity Too Large"),
                    Self::Unprocessable(m) => json!(format!("422 Unprocessable Entity - {m}")),
                    Self::UnsupportedMediaType(m) => json!(format!("415 Unsupported Media Type - {m}")),
                    Self::Internal(_) => json!("500 Internal Server Error"),
                    Self::NotImplemented(m) => json!(format!("501 Not Implemented - {m}")),
                    Self::Unavailable(m) => json!(format!("503 Service Unavailable - {m}")),
                    Self::RateLimited { .. } => json!("429 Too Many Requests"),
                }
            }),
            Dialect::Bitbucket => {
                let (context, message) = match &self {
                    Self::Field { field, message } => (Some(field.clone()), message.clone()),
                    other => (None, other.to_string()),
                };
                let exception_name = exception_name(&self).map(str::to_owned);
                json!(BitbucketErrors { errors: vec![BitbucketError { context, message, exception_name }] })
            }
        };
        let mut response = ApiResponse::json(status, &body);
        response.diagnostic = diagnostic;
        if let Self::RateLimited { retry_after_secs } = self {
            response.headers.push(("Retry-After".into(), retry_after_secs.to_string()));
        }
        if self == ApiError::Unauthorized && dialect == Dialect::Bitbucket {
            response.headers.push(("WWW-Authenticate".into(), "Basic realm=\"mirrorfarm\"".into()));
        }
        response
    }
}

/// GitLab's error body: a sentence, or field → messages.
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "openapi", derive(schemars::JsonSchema))]
pub(crate) struct GitLabError {
    /// `"404 Project Not Found"`, or `{"field": ["message"]}` for a bad field.
    message: serde_json::Value,
}

/// Bitbucket's error body.
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "openapi", derive(schemars::JsonSchema))]
pub(crate) struct BitbucketErrors {
    /// One entry per problem (always one here).
    errors: Vec<BitbucketError>,
}

/// One Bitbucket error.
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "openapi", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub(crate) struct BitbucketError {
    /// The field at fault, if one is.
    context: Option<String>,
    /// What is wrong, for people.
    message: String,
    /// Bitbucket's exception class (clients sometimes branch on it).
    exception_name: Option<String>,
}

/// Bitbucket's exception class for an error (clients sometimes branch on it).
fn exception_name(e: &ApiError) -> Option<&'static str> {
    Some(match e {
        ApiError::Field { .. } | ApiError::BadRequest(_) => {
            "com.atlassian.bitbucket.validation.ArgumentValidationException"
        }
        ApiError::Unauthorized => "com.atlassian.bitbucket.auth.IncorrectPasswordAuthenticationException",
        ApiError::Forbidden => "com.atlassian.bitbucket.AuthorisationException",
        ApiError::XsrfCheckFailed => "com.atlassian.plugins.rest.common.security.XsrfCheckFailedException",
        ApiError::NotFound { .. } => "com.atlassian.bitbucket.NoSuchEntityException",
        ApiError::Conflict(_) => "com.atlassian.bitbucket.IntegrityException",
        _ => return None,
    })
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Conflict(m) => Self::Conflict(m),
            StoreError::Backend(m) => Self::Internal(m),
        }
    }
}

impl From<CryptoError> for ApiError {
    fn from(e: CryptoError) -> Self {
        Self::Internal(e.to_string())
    }
}

/// A parameter of the wrong type: Bitbucket names it as context, GitLab says "x is invalid".
impl From<super::request::FieldError> for ApiError {
    fn from(e: super::request::FieldError) -> Self {
        Self::Field { field: e.field().to_owned(), message: e.to_string() }
    }
}

impl From<BodyError> for ApiError {
    fn from(e: BodyError) -> Self {
        match e {
            BodyError::TooLarge => Self::PayloadTooLarge,
            BodyError::Malformed(m) => Self::BadRequest(format!("malformed request body: {m}")),
            BodyError::UnsupportedType(t) => Self::UnsupportedMediaType(format!("content type {t:?} is not supported")),
        }
    }
}

#[cfg(test)]
mod tests {
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    use super::*;

    fn body(r: &ApiResponse) -> serde_json::Value {
        serde_json::from_slice(r.body.as_deref().expect("body")).expect("json")
    }

    #[test]
    fn gitlab_shapes() {
        let r = ApiError::not_found("Project", "x").into_response(Dialect::GitLab);
        assert_eq!((r.status, body(&r)), (404, json!({"message": "404 Project Not Found"})));
        let r = ApiError::Field { field: "url".into(), message: "is blocked".into() }.into_response(Dialect::GitLab);
        assert_eq!((r.status, body(&r)), (400, json!({"message": {"url": ["is blocked"]}})));
    }

    #[test]
    fn bitbucket_shapes_and_internal_detail_stays_inside() {
        let r = ApiError::Field { field: "key".into(), message: "bad".into() }.into_response(Dialect::Bitbucket);
        assert_eq!(body(&r)["errors"][0]["context"], "key");
        let r = ApiError::Internal("D1 said: table x".into()).into_response(Dialect::Bitbucket);
        assert_eq!(r.status, 500);
        assert!(!String::from_utf8_lossy(r.body.as_deref().expect("body")).contains("D1 said"));
        assert_eq!(r.diagnostic.as_deref(), Some("D1 said: table x"));
        let r = ApiError::Unauthorized.into_response(Dialect::Bitbucket);
        assert_eq!(body(&r)["errors"][0]["context"], serde_json::Value::Null);
    }
}
