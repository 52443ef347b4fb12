//! Users, access tokens and permission grants, in Bitbucket's shapes.

use crate::admin::RateLimiter;
use crate::queue::Signals;
use crate::store::Blobs;
use serde::Serialize;

use super::{ApiError, ApiResponse, Call, Result, Service};
use crate::identity::{
    AccessToken, GlobalRole, Level, NewUser, Permission, TOKEN_PREFIX, TokenParams, User, UserDto, UserParams,
    token_lookup_key,
};
use crate::paging::BitbucketPage;
use crate::store::Crypto;
use crate::store::port::Database;
use crate::time::Timestamp;

const DAY_MS: i64 = 86_400_000;

/// A field's error (Bitbucket names the field as `context`).
pub(super) fn field(name: &str, e: impl std::fmt::Display) -> ApiError {
    ApiError::Field { field: name.into(), message: e.to_string() }
}

/// No user of that name.
pub(super) fn no_user(name: &str) -> ApiError {
    ApiError::not_found("User", format!("User {name} does not exist."))
}

/// Bitbucket's access token shape; `token` is present only in the answer to its creation.
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "openapi", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub(super) struct TokenDto {
    id: String,
    created_date: i64,
    name: String,
    permissions: Vec<Permission>,
    #[serde(skip_serializing_if = "Option::is_none")]
    expiry_date: Option<i64>,
    user: UserDto,
    #[serde(skip_serializing_if = "Option::is_none")]
    token: Option<String>,
}

impl TokenDto {
    fn new(t: &AccessToken, user: &User, token: Option<String>) -> Self {
        Self {
            id: t.id.clone(),
            created_date: t.created_at.millis(),
            name: t.name.clone(),
            permissions: t.permissions.clone().unwrap_or_else(full_permissions),
            expiry_date: t.expires_at.map(Timestamp::millis),
            user: UserDto::from(user),
            token,
        }
    }
}

/// The permissions of a token made without a list: everything its user may do.
fn full_permissions() -> Vec<Permission> {
    vec![Permission::Project(Level::Admin), Permission::Repo(Level::Admin)]
}

/// A user name: 1–255 characters, letters, digits and `._@-`.
fn validate_user_name(name: &str) -> Result<String> {
    let ok = !name.is_empty()
        && name.len() <= 255
        && name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '@' | '-'));
    if ok {
        Ok(name.to_owned())
    } else {
        Err(field("name", "User names must be 1 to 255 characters of letters, numbers, '.', '_', '@' and '-'."))
    }
}

impl<D: Database, C: Crypto, S: Signals, L: RateLimiter, B: Blobs> Service<'_, D, C, S, L, B> {
    /// The users named by the `name` query parameters (at least one).
    async fn named_users(&self, call: &Call<'_>) -> Result<Vec<User>> {
        let names: Vec<&str> =
            call.query.pairs().iter().filter(|(k, _)| k == "name").map(|(_, v)| v.as_str()).collect();
        if names.is_empty() {
            return Err(field("name", "At least one user name is required."));
        }
        // One round trip for all of them; a name that matches nobody is an error.
        let users = self.store.users_by_names(&names).await?;
        let found = |n: &str| users.iter().any(|u| u.name.eq_ignore_ascii_case(n) || u.slug.eq_ignore_ascii_case(n));
        if let Some(missing) = names.iter().find(|n| !found(n)) {
            return Err(no_user(missing));
        }
        Ok(users)
    }

    /// The `permission` query parameter, parsed.
    fn permission_param(call: &Call<'_>) -> Result<Permission> {
        let text = call.query.get("permission").ok_or_else(|| field("permission", "A permission is required."))?;
        text.parse().map_err(|e| field("permission", e))
    }

    pub(super) async fn create_user(&self, call: &Call<'_>) -> Result<ApiResponse> {
        call.principal()?;
        let params: UserParams = call.input()?;
        let password_hash = match params.password.as_deref().filter(|p| !p.is_empty()) {
            Some(p) => {
                crate::admin::passwords::validate(p).map_err(|e| field("password", e))?;
                Some(crate::admin::passwords::hash(self.crypto, p).await?)
            }
            None => None,
        };
        let name = validate_user_name(&params.name.ok_or_else(|| field("name", "A user name is required."))?)?;
        let new = NewUser {
            slug: name.to_ascii_lowercase(),
            display_name: params.display_name.filter(|d| !d.trim().is_empty()).unwrap_or_else(|| name.clone()),
            email: params.email_address.filter(|e| !e.is_empty()),
            name,
            role: GlobalRole::User,
            created_at: self.now,
        };
        let licensed = self.licensed_users().await?;
        if self.store.insert_user(&new, password_hash.as_deref(), licensed).await?.is_none() {
            let max = licensed.unwrap_or_default();
            return Err(ApiError::Conflict(format!(
                "The license allows {max} users and {max} exist: no more users can be created until the license is upgraded."
            )));
        }
        Ok(ApiResponse::empty(204))
    }

    pub(super) async fn delete_user(&self, call: &Call<'_>) -> Result<ApiResponse> {
        let who = call.principal()?;
        let name = call.query.get("name").ok_or_else(|| field("name", "A user name is required."))?;
        let user = self.store.user_by_name(name).await?.ok_or_else(|| no_user(name))?;
        if user.id == who.user.id {
            return Err(field("name", "You cannot delete yourself."));
        }
        if user.role == GlobalRole::SysAdmin && !who.is_sys_admin() {
            return Err(ApiError::Forbidden);
        }
        self.store.delete_user(user.id).await?;
        self.forget_callers();
        Ok(ApiResponse::json(200, &UserDto::from(&user)))
    }

    /// Grants (or, with `grant == false`, takes back) a global role.
    pub(super) async fn set_global_role(&self, call: &Call<'_>, grant: bool) -> Result<ApiResponse> {
        let who = call.principal()?;
        let role = if grant {
            match Self::permission_param(call)? {
                Permission::Global(role) => role,
                other => return Err(field("permission", format!("{other} is not a global permission."))),
            }
        } else {
            GlobalRole::User
        };
        let users = self.named_users(call).await?;
        if (role == GlobalRole::SysAdmin || users.iter().any(|u| u.role == GlobalRole::SysAdmin)) && !who.is_sys_admin()
        {
            return Err(ApiError::Forbidden);
        }
        if !grant && users.iter().any(|u| u.id == who.user.id) {
            return Err(field("name", "You cannot revoke your own global permission."));
        }
        let ids: Vec<i64> = users.iter().map(|u| u.id).collect();
        self.store.set_global_roles(&ids, role).await?;
        self.forget_callers();
        Ok(ApiResponse::empty(204))
    }

    pub(super) async fn set_project_grant(&self, call: &Call<'_>, grant: bool) -> Result<ApiResponse> {
        let project = self.project_for(call).await?;
        let level = if grant {
            match Self::permission_param(call)? {
                Permission::Project(level) => Some(level),
                other => return Err(field("permission", format!("{other} is not a project permission."))),
            }
        } else {
            None
        };
        let ids: Vec<i64> = self.named_users(call).await?.iter().map(|u| u.id).collect();
        self.store.set_project_grants(project.id, &ids, level).await?;
        Ok(ApiResponse::empty(204))
    }

    pub(super) async fn set_repository_grant(&self, call: &Call<'_>, grant: bool) -> Result<ApiResponse> {
        let repo = self.repository_for(call).await?;
        let level = if grant {
            match Self::permission_param(call)? {
                Permission::Repo(level) => Some(level),
                other => return Err(field("permission", format!("{other} is not a repository permission."))),
            }
        } else {
            None
        };
        let ids: Vec<i64> = self.named_users(call).await?.iter().map(|u| u.id).collect();
        self.store.set_repository_grants(repo.id, &ids, level).await?;
        Ok(ApiResponse::empty(204))
    }

    /// The user named by `{userSlug}`, if the caller is that user or an administrator.
    async fn token_owner(&self, call: &Call<'_>) -> Result<User> {
        let who = call.principal()?;
        let slug = call.param("userSlug")?;
        let user = self.store.user_by_name(&slug).await?.ok_or_else(|| no_user(&slug))?;
        if user.id != who.user.id && !who.is_admin() {
            return Err(ApiError::Forbidden);
        }
        Ok(user)
    }

    pub(super) async fn create_token(&self, call: &Call<'_>) -> Result<ApiResponse> {
        let user = self.token_owner(call).await?;
        let params: TokenParams = call.input()?;
        let name =
            params.name.filter(|n| !n.trim().is_empty()).ok_or_else(|| field("name", "A token name is required."))?;
        if name.chars().count() > 255 {
            return Err(field("name", "Token names must be at most 255 characters."));
        }
        let permissions = match params.permissions {
            None => full_permissions(),
            Some(list) if list.is_empty() => return Err(field("permissions", "At least one permission is required.")),
            Some(list) => list
                .iter()
                .map(|p| match p.parse::<Permission>() {
                    Ok(p @ (Permission::Project(_) | Permission::Repo(_) | Permission::StatusRead)) => Ok(p),
                    _ => Err(field(
                        "permissions",
                        format!("{p:?} is not a project, repository or STATUS_READ permission."),
                    )),
                })
                .collect::<Result<Vec<_>>>()?,
        };
        let expires_at = match params.expiry_days {
            None => None,
            Some(days @ 1..=3650) => Some(self.now.plus_millis(i64::try_from(days).unwrap_or(3650) * DAY_MS)),
            Some(_) => return Err(field("expiryDays", "Expiry must be between 1 and 3650 days.")),
        };
        let secret = format!("{TOKEN_PREFIX}{}", self.random_hex(20)?);
        let id_bytes = self.crypto.random_bytes(8)?;
        let id = (u64::from_le_bytes(id_bytes.try_into().map_err(|_| ApiError::Internal("short random".into()))?)
            % 1_000_000_000_000)
            .to_string();
        let token = AccessToken {
            id: format!("{id:0>12}"),
            user_id: user.id,
            name,
            lookup: token_lookup_key(&secret),
            hash: self.crypto.sha256_hex(secret.as_bytes()).await?,
            permissions: Some(permissions),
            created_at: self.now,
            expires_at,
        };
        self.store.insert_token(&token).await?;
        Ok(ApiResponse::json(200, &TokenDto::new(&token, &user, Some(secret))))
    }

    pub(super) async fn list_tokens(&self, call: &Call<'_>) -> Result<ApiResponse> {
        let user = self.token_owner(call).await?;
        let page = BitbucketPage::from_query(&call.query);
        let (tokens, more) = self.store.list_tokens(user.id, page.start, page.limit).await?;
        let values: Vec<TokenDto> = tokens.iter().map(|t| TokenDto::new(t, &user, None)).collect();
        Ok(ApiResponse::json(200, &page.open(values, more)))
    }

    pub(super) async fn delete_token(&self, call: &Call<'_>) -> Result<ApiResponse> {
        let user = self.token_owner(call).await?;
        let id = call.param("tokenId")?;
        if self.store.delete_token(user.id, &id).await? {
            self.forget_callers();
            Ok(ApiResponse::empty(204))
        } else {
            Err(ApiError::not_found("Token", format!("Access token {id} does not exist.")))
        }
    }
}
