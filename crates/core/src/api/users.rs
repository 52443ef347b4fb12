//! Users as administrators and the users themselves manage them (seed 002): listing with filters,
//! the detailed view, one's own details and password, settings, and avatars (kept in blobs).

use serde::Serialize;
use serde_json::Value;

use super::identity::{field, no_user};
use super::{ApiError, ApiResponse, Call, Result, Service};
use crate::admin::RateLimiter;
use crate::admin::avatar;
use crate::admin::passwords::{self, PasswordError};
use crate::identity::groups::UserFilter;
use crate::identity::{GlobalRole, User, UserDto};
use crate::paging::BitbucketPage;
use crate::queue::Signals;
use crate::store::port::Database;
use crate::store::{Blobs, Crypto};

/// The blob key of a user's avatar.
fn avatar_key(user_id: i64) -> String {
    format!("avatars/{user_id}")
}

/// The default avatar: a grey disc with the user's initial (SVG, made here, not stored).
fn default_avatar(user: &User) -> String {
    let initial: String = user.display_name.chars().next().unwrap_or('?').to_uppercase().collect();
    let escaped = match initial.as_str() {
        "<" => "&lt;".to_owned(),
        "&" => "&amp;".to_owned(),
        other => other.to_owned(),
    };
    format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"48\" height=\"48\" viewBox=\"0 0 48 48\">\
         <circle cx=\"24\" cy=\"24\" r=\"24\" fill=\"#8993a4\"/><text x=\"24\" y=\"31\" font-size=\"22\" \
         font-family=\"sans-serif\" fill=\"#fff\" text-anchor=\"middle\">{escaped}</text></svg>"
    )
}

/// The detailed user an administrator sees (`RestDetailedUser`).
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "openapi", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub(crate) struct DetailedUserDto {
    #[serde(flatten)]
    user: UserDto,
    /// Where the account lives.
    directory_name: &'static str,
    /// Whether it may be deleted.
    deletable: bool,
    /// Whether the name, display name and e-mail may be changed.
    mutable_details: bool,
    /// Whether its groups may be changed.
    mutable_groups: bool,
    /// The user's global permission.
    permission: &'static str,
}

/// `{href}`: where an avatar is served.
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "openapi", derive(schemars::JsonSchema))]
pub(crate) struct AvatarHref {
    href: String,
}

impl<D: Database, C: Crypto, S: Signals, L: RateLimiter, B: Blobs> Service<'_, D, C, S, L, B> {
    /// The users filter of `GET /users` and `GET /admin/users`: `filter`, `group`, and
    /// `permission` / numbered `permission.N` with their project and repository (one statement).
    async fn filtered_users(&self, call: &Call<'_>, page: BitbucketPage) -> Result<(Vec<User>, bool)> {
        let filter = UserFilter::from_query(call.query.pairs()).map_err(|e| field(&e.context, e.message))?;
        Ok(self.store.list_users(&filter, page.start, page.limit).await?)
    }

    pub(super) async fn list_users(&self, call: &Call<'_>) -> Result<ApiResponse> {
        call.principal()?;
        let page = BitbucketPage::from_query(&call.query);
        let (users, more) = self.filtered_users(call, page).await?;
        Ok(ApiResponse::json(200, &page.open(users.iter().map(UserDto::from).collect(), more)))
    }

    pub(super) fn detailed(user: &User, who: &crate::identity::Principal) -> DetailedUserDto {
        DetailedUserDto {
            user: UserDto::from(user),
            directory_name: "Bitbucket Internal Directory",
            deletable: user.id != who.user.id && (user.role != GlobalRole::SysAdmin || who.is_sys_admin()),
            mutable_details: true,
            mutable_groups: true,
            permission: user.role.as_str(),
        }
    }

    /// `GET /admin/users`: the detailed view of each user.
    pub(super) async fn admin_list_users(&self, call: &Call<'_>) -> Result<ApiResponse> {
        let who = call.principal()?;
        let page = BitbucketPage::from_query(&call.query);
        let (users, more) = self.filtered_users(call, page).await?;
        Ok(ApiResponse::json(200, &page.open(users.iter().map(|u| Self::detailed(u, who)).collect(), more)))
    }

    /// `GET /users/{slug}`: administrators get the detailed view.
    pub(super) async fn get_user(&self, call: &Call<'_>) -> Result<ApiResponse> {
        let who = call.principal()?;
        let slug = call.param("userSlug")?;
        let user = self.store.user_by_name(&slug).await?.ok_or_else(|| no_user(&slug))?;
        if who.is_admin() {
            Ok(ApiResponse::json(200, &Self::detailed(&user, who)))
        } else {
            Ok(ApiResponse::json(200, &UserDto::from(&user)))
        }
    }

    /// `PUT /users`: the caller changes their own display name and e-mail address.
    pub(super) async fn update_current_user(&self, call: &Call<'_>) -> Result<ApiResponse> {
        let who = call.principal()?;
        let map = call.json_object()?;
        if let Some(name) = map.get("name").and_then(Value::as_str)
            && !name.eq_ignore_ascii_case(&who.user.name)
        {
            return Err(field("name", "You can change only your own details."));
        }
        let text = |k: &str| -> Result<Option<String>> {
            match map.get(k) {
                None | Some(Value::Null) => Ok(None),
                Some(Value::String(s)) if s.len() <= 255 => Ok(Some(s.trim().to_owned())),
                Some(_) => Err(field(k, format!("{k} must be text of at most 255 characters."))),
            }
        };
        let display_name =
            text("displayName")?.filter(|d| !d.is_empty()).unwrap_or_else(|| who.user.display_name.clone());
        let email = match text("email")?.or(text("emailAddress")?) {
            Some(e) if e.is_empty() => None,
            Some(e) if !e.contains('@') => return Err(field("email", "That is not an e-mail address.")),
            Some(e) => Some(e),
            None => who.user.email.clone(),
        };
        self.store.update_user_details(who.user.id, &display_name, email.as_deref()).await?;
        self.forget_callers();
        let user = User { display_name, email, ..who.user.clone() };
        Ok(ApiResponse::json(200, &UserDto::from(&user)))
    }

    /// `PUT /users/credentials`: the caller changes their password; the old one must match when
    /// they have one, and a first one is set only through a token with the user's full rights.
    pub(super) async fn change_password(&self, call: &Call<'_>) -> Result<ApiResponse> {
        let who = call.principal()?;
        let map = call.json_object()?;
        let text = |k: &str| map.get(k).and_then(Value::as_str).map(str::to_owned);
        let password = text("password").ok_or_else(|| field("password", "password is the new password."))?;
        if text("passwordConfirm").as_deref() != Some(password.as_str()) {
            return Err(field("passwordConfirm", PasswordError::Confirmation));
        }
        passwords::validate(&password).map_err(|e| field("password", e))?;
        match self.store.password_of(who.user.id).await? {
            Some(stored) => {
                let old = text("oldPassword").unwrap_or_default();
                if !passwords::verify(self.crypto, &old, &stored).await? {
                    // A wrong guess here costs what a wrong sign-in costs.
                    self.spend_on_failed_sign_in(who).await?;
                    return Err(field("oldPassword", "The current password is not correct."));
                }
            }
            // A password gives its user's full rights: a token limited to less may not set one.
            None if who.scope.cap.is_some() => return Err(ApiError::Forbidden),
            None => {}
        }
        let stored = passwords::hash(self.crypto, &password).await?;
        self.store.set_password(who.user.id, &stored).await?;
        self.forget_callers();
        Ok(ApiResponse::empty(204))
    }

    /// The user `{userSlug}` names, if the caller is them or an administrator (a system
    /// administrator's, only a system administrator).
    async fn own_or_administered(&self, call: &Call<'_>) -> Result<User> {
        let who = call.principal()?;
        let slug = call.param("userSlug")?;
        let user = self.store.user_by_name(&slug).await?.ok_or_else(|| no_user(&slug))?;
        let allowed =
            user.id == who.user.id || (who.is_admin() && (user.role != GlobalRole::SysAdmin || who.is_sys_admin()));
        if allowed { Ok(user) } else { Err(ApiError::Forbidden) }
    }

    pub(super) async fn get_user_settings(&self, call: &Call<'_>) -> Result<ApiResponse> {
        let user = self.own_or_administered(call).await?;
        Ok(ApiResponse::json(200, &self.store.user_settings(user.id).await?))
    }

    /// Merges a flat map of string, boolean and number values (`null` removes a key).
    pub(super) async fn merge_user_settings(&self, call: &Call<'_>) -> Result<ApiResponse> {
        let user = self.own_or_administered(call).await?;
        let map = call.json_object()?;
        if map.len() > 100 {
            return Err(ApiError::BadRequest("at most 100 settings at once".into()));
        }
        for (k, v) in &map {
            if k.is_empty() || k.len() > 255 {
                return Err(field(k, "Setting names are 1 to 255 characters."));
            }
            if !matches!(v, Value::String(_) | Value::Bool(_) | Value::Number(_) | Value::Null) {
                return Err(field(k, "Settings are strings, booleans or numbers."));
            }
        }
        self.store.merge_user_settings(user.id, &map).await?;
        Ok(ApiResponse::empty(204))
    }

    fn avatar_href(call: &Call<'_>, user: &User) -> String {
        format!("{}/users/{}/avatar.png", call.req.origin, user.slug)
    }

    /// `POST /users/{slug}/avatar.png`: multipart field `avatar`, checked by its header, kept in blobs.
    pub(super) async fn upload_avatar(&self, call: &Call<'_>) -> Result<ApiResponse> {
        let user = self.own_or_administered(call).await?;
        let image =
            avatar::from_upload(call.req.content_type.as_deref(), &call.req.body).map_err(|e| field("avatar", e))?;
        let kind = image.format.content_type();
        self.blobs.put(&avatar_key(user.id), image.bytes, kind).await.map_err(|e| ApiError::Internal(e.to_string()))?;
        self.store.set_avatar_type(user.id, Some(kind)).await?;
        let href = Self::avatar_href(call, &user);
        Ok(ApiResponse::json(201, &AvatarHref { href: href.clone() }).with_headers(vec![("Location".into(), href)]))
    }

    /// `DELETE /users/{slug}/avatar.png`: back to the default avatar, whose address it answers.
    pub(super) async fn delete_avatar(&self, call: &Call<'_>) -> Result<ApiResponse> {
        let user = self.own_or_administered(call).await?;
        self.store.set_avatar_type(user.id, None).await?;
        self.blobs.delete(&avatar_key(user.id)).await.map_err(|e| ApiError::Internal(e.to_string()))?;
        Ok(ApiResponse::json(200, &AvatarHref { href: Self::avatar_href(call, &user) }))
    }

    /// `GET /users/{slug}/avatar.png`: the uploaded avatar, or the default one.
    pub(super) async fn serve_avatar(&self, call: &Call<'_>) -> Result<ApiResponse> {
        let slug = call.param("userSlug")?;
        let (user, kind) = self.store.avatar_type(&slug).await?.ok_or_else(|| no_user(&slug))?;
        let stored = match kind {
            Some(kind) => self
                .blobs
                .get(&avatar_key(user.id))
                .await
                .map_err(|e| ApiError::Internal(e.to_string()))?
                .map(|bytes| (kind, bytes)),
            None => None,
        };
        let response = match stored {
            Some((kind, bytes)) => ApiResponse::bytes(200, &kind, bytes),
            None => ApiResponse::bytes(200, "image/svg+xml", default_avatar(&user).into_bytes()),
        };
        Ok(response)
    }
}
