//! Who is calling and what they may do: users, access tokens, roles and permissions.
//!
//! The shells only parse headers into [`Credentials`]; every decision (is this token valid, may
//! this user administer that repository) is made here.

mod credentials;
pub mod groups;
mod permissions;

pub use credentials::{Credentials, CredentialsError, TOKEN_PREFIX, constant_time_eq, token_lookup_key};
pub(crate) use credentials::{base64_encode, decode_base64};
pub use permissions::{GlobalRole, Level, Permission, PermissionParseError, Principal, TokenScope, anonymous_level};

use serde::Serialize;

use crate::api::{FieldError, Fields, FromFields};
use crate::time::Timestamp;

/// A user account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    /// Numeric id.
    pub id: i64,
    /// Login name, unique (case-insensitive).
    pub name: String,
    /// URL-safe form of the name.
    pub slug: String,
    /// Name shown to people.
    pub display_name: String,
    /// E-mail address, if given.
    pub email: Option<String>,
    /// Global role.
    pub role: GlobalRole,
    /// When the account was created.
    pub created_at: Timestamp,
}

/// A new user, validated, ready to store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewUser {
    /// Login name.
    pub name: String,
    /// URL-safe form of the name.
    pub slug: String,
    /// Name shown to people.
    pub display_name: String,
    /// E-mail address.
    pub email: Option<String>,
    /// Global role.
    pub role: GlobalRole,
    /// Creation time.
    pub created_at: Timestamp,
}

/// A stored access token: only its hash is kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessToken {
    /// Public id (Bitbucket's token ids are numeric strings).
    pub id: String,
    /// Owner.
    pub user_id: i64,
    /// Label chosen by the owner.
    pub name: String,
    /// Non-secret lookup key: the token's first characters.
    pub lookup: String,
    /// SHA-256 of the whole token, hex.
    pub hash: String,
    /// Permissions the token is limited to; `None` means the owner's full rights.
    pub permissions: Option<Vec<Permission>>,
    /// Creation time.
    pub created_at: Timestamp,
    /// Expiry, if any.
    pub expires_at: Option<Timestamp>,
}

/// Bitbucket's user shape (`RestApplicationUser`).
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct UserDto {
    /// Login name.
    pub name: String,
    /// E-mail address.
    pub email_address: Option<String>,
    /// Always true: deactivated users are deleted.
    pub active: bool,
    /// Name shown to people.
    pub display_name: String,
    /// Numeric id.
    pub id: i64,
    /// URL-safe name.
    pub slug: String,
    /// `NORMAL` for people.
    #[serde(rename = "type")]
    pub kind: &'static str,
}

impl From<&User> for UserDto {
    fn from(u: &User) -> Self {
        Self {
            name: u.name.clone(),
            email_address: u.email.clone(),
            active: true,
            display_name: u.display_name.clone(),
            id: u.id,
            slug: u.slug.clone(),
            kind: "NORMAL",
        }
    }
}

/// What `POST /rest/api/latest/admin/users` sends (Bitbucket's clients send them as query
/// parameters; a JSON or form body works too).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(schemars::JsonSchema), schemars(rename_all = "camelCase"))]
pub struct UserParams {
    /// The user name (required).
    pub name: Option<String>,
    /// A password (8 to 1024 characters); without one the user signs in with access tokens only.
    pub password: Option<String>,
    /// The display name (the name if absent).
    pub display_name: Option<String>,
    /// The e-mail address.
    pub email_address: Option<String>,
}

impl FromFields for UserParams {
    fn from_fields(fields: &Fields) -> Result<Self, FieldError> {
        Ok(Self {
            name: fields.string("name")?,
            password: fields.string("password")?,
            display_name: fields.string("displayName")?,
            email_address: fields.string("emailAddress")?,
        })
    }
}

/// What `PUT /rest/access-tokens/latest/users/{slug}` sends.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(schemars::JsonSchema), schemars(rename_all = "camelCase"))]
pub struct TokenParams {
    /// The token's name (required).
    pub name: Option<String>,
    /// What it may do (`PROJECT_*`, `REPO_*`, `STATUS_READ`); the user's full rights if absent.
    pub permissions: Option<Vec<String>>,
    /// Days until it expires (1 to 3650); never if absent.
    pub expiry_days: Option<u64>,
}

impl FromFields for TokenParams {
    fn from_fields(fields: &Fields) -> Result<Self, FieldError> {
        Ok(Self {
            name: fields.string("name")?,
            permissions: fields.string_list("permissions")?,
            expiry_days: fields.unsigned("expiryDays")?,
        })
    }
}
