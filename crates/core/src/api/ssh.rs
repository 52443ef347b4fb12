//! Users' SSH keys: Bitbucket's `/rest/ssh/1.0/keys` and GitLab's `/api/v4/user/keys`, two views
//! of one table; and who an SSH key signs in as, for clones over SSH from farm nodes.

use super::identity::{field, no_user};
use super::{ApiError, ApiResponse, Call, Result, Service};
use crate::admin::RateLimiter;
use crate::identity::{Principal, TokenScope, User};
use crate::paging::BitbucketPage;
use crate::queue::Signals;
use crate::ssh::{GitLabKeyDto, GitLabKeyParams, PublicKey, SshKey, SshKeyDto, SshKeyParams, fingerprint_sha256};
use crate::store::port::Database;
use crate::store::{Blobs, Crypto};
use crate::time::Timestamp;

const DAY_MS: i64 = 86_400_000;

/// Most keys one GitLab list answers (GitLab pages them; nobody has this many).
const GITLAB_KEYS_LISTED: u64 = 1000;

/// Most characters of a key's label or title.
const MAX_LABEL: usize = 255;

impl<D: Database, C: Crypto, S: Signals, L: RateLimiter, B: Blobs> Service<'_, D, C, S, L, B> {
    /// `SHA256:…` of a key, as `ssh-keygen -l` prints it.
    pub(super) async fn ssh_fingerprint(&self, key: &PublicKey) -> Result<String> {
        let digest = crate::hex::decode(&self.crypto.sha256_hex(&key.blob).await?)
            .ok_or_else(|| ApiError::Internal("SHA-256 answered no hex".into()))?;
        Ok(fingerprint_sha256(&digest))
    }

    /// The user a public key (`<type> <base64>`) signs in as: its registered, unexpired owner,
    /// with their full rights; anyone else is a 401.
    pub(super) async fn ssh_key_principal(&self, key: &str) -> Result<Principal> {
        let key = PublicKey::parse(key).map_err(|_| ApiError::Unauthorized)?;
        let fingerprint = self.ssh_fingerprint(&key).await?;
        let (user, rate_limit, expires_at) =
            self.store.ssh_key_owner(&fingerprint).await?.ok_or(ApiError::Unauthorized)?;
        if expires_at.is_some_and(|at| at <= self.now) {
            return Err(ApiError::Unauthorized);
        }
        Ok(Principal { user, scope: TokenScope::from_permissions(None), expires_at: None, rate_limit })
    }

    /// The user whose keys a Bitbucket call is about: the caller, or `?user=` for an administrator.
    async fn key_owner(&self, call: &Call<'_>) -> Result<User> {
        let who = call.principal()?;
        match call.query.get("user").map(str::trim).filter(|u| !u.is_empty()) {
            None => Ok(who.user.clone()),
            Some(name) if name.eq_ignore_ascii_case(&who.user.name) || name.eq_ignore_ascii_case(&who.user.slug) => {
                Ok(who.user.clone())
            }
            Some(_) if !who.is_admin() => Err(ApiError::Forbidden),
            Some(name) => self.store.user_by_name(name).await?.ok_or_else(|| no_user(name)),
        }
    }

    /// Checks and stores a new key for `owner`; a key registered already (to anyone) is `taken`.
    async fn add_key(
        &self,
        owner: &User,
        text: Option<String>,
        label: Option<String>,
        expires_at: Option<Timestamp>,
        text_field: &str,
        taken: impl FnOnce() -> ApiError,
    ) -> Result<SshKey> {
        let text =
            text.filter(|t| !t.trim().is_empty()).ok_or_else(|| field(text_field, "A public key is required."))?;
        let key = PublicKey::parse(&text).map_err(|e| field(text_field, e))?;
        let label = label
            .map(|l| l.trim().to_owned())
            .filter(|l| !l.is_empty())
            .or_else(|| key.comment.clone())
            .unwrap_or_default();
        if label.chars().count() > MAX_LABEL {
            return Err(field("label", format!("Labels are at most {MAX_LABEL} characters.")));
        }
        let new = SshKey {
            id: 0,
            user_id: owner.id,
            label,
            text: key.to_openssh(),
            algorithm: key.algorithm,
            bits: key.bits,
            fingerprint: self.ssh_fingerprint(&key).await?,
            created_at: self.now,
            expires_at,
        };
        let stored = self.store.insert_ssh_key(&new).await?.ok_or_else(taken)?;
        // A key now signs someone in: nobody is served from a stale memory of keys.
        self.forget_callers();
        Ok(stored)
    }

    /// `GET /rest/ssh/latest/keys[?user=]`: a page of the user's keys.
    pub(super) async fn list_ssh_keys(&self, call: &Call<'_>) -> Result<ApiResponse> {
        let owner = self.key_owner(call).await?;
        let page = BitbucketPage::from_query(&call.query);
        let (keys, more) = self.store.list_ssh_keys(owner.id, page.start, page.limit).await?;
        Ok(ApiResponse::json(200, &page.open(keys.iter().map(SshKeyDto::from).collect(), more)))
    }

    /// `POST /rest/ssh/latest/keys[?user=]` `{text, label}`: 409 if the key is registered already.
    pub(super) async fn add_ssh_key(&self, call: &Call<'_>) -> Result<ApiResponse> {
        let owner = self.key_owner(call).await?;
        let params: SshKeyParams = call.input()?;
        let expires_at = match params.expiry_days {
            None => None,
            Some(days @ 1..=3650) => Some(self.now.plus_millis(i64::try_from(days).unwrap_or(3650) * DAY_MS)),
            Some(_) => return Err(field("expiryDays", "Expiry must be between 1 and 3650 days.")),
        };
        let taken = || ApiError::Conflict("This SSH key is already registered.".into());
        let key = self.add_key(&owner, params.text, params.label, expires_at, "text", taken).await?;
        Ok(ApiResponse::json(200, &SshKeyDto::from(&key)))
    }

    /// A key by the id in `param`, if it is the caller's (or the caller is an administrator).
    async fn own_key(&self, call: &Call<'_>, param: &str, what: &'static str) -> Result<SshKey> {
        let who = call.principal()?;
        let missing = || ApiError::not_found(what, "The SSH key does not exist.");
        let id: i64 = call.params.raw(param).parse().map_err(|_| missing())?;
        let key = self.store.ssh_key(id).await?.ok_or_else(missing)?;
        if key.user_id != who.user.id && !who.is_admin() {
            return Err(missing());
        }
        Ok(key)
    }

    /// `GET /rest/ssh/latest/keys/{keyId}`.
    pub(super) async fn get_ssh_key(&self, call: &Call<'_>) -> Result<ApiResponse> {
        let key = self.own_key(call, "keyId", "Key").await?;
        Ok(ApiResponse::json(200, &SshKeyDto::from(&key)))
    }

    /// `DELETE /rest/ssh/latest/keys/{keyId}` (Bitbucket) and `/api/v4/user/keys/:key_id`
    /// (GitLab): 204.
    pub(super) async fn delete_ssh_key(&self, call: &Call<'_>, param: &str) -> Result<ApiResponse> {
        let key = self.own_key(call, param, "Key").await?;
        self.store.delete_ssh_key(key.id).await?;
        self.forget_callers();
        Ok(ApiResponse::empty(204))
    }

    /// `GET /api/v4/user/keys`: the caller's keys.
    pub(super) async fn gitlab_list_keys(&self, call: &Call<'_>) -> Result<ApiResponse> {
        let who = call.principal()?;
        let (keys, _) = self.store.list_ssh_keys(who.user.id, 0, GITLAB_KEYS_LISTED).await?;
        Ok(ApiResponse::json(200, &keys.iter().map(GitLabKeyDto::from).collect::<Vec<_>>()))
    }

    /// `POST /api/v4/user/keys` `{title, key, expires_at?}`: 201; a key registered already is a
    /// 400 whose message says the fingerprint "has already been taken", as GitLab's.
    pub(super) async fn gitlab_add_key(&self, call: &Call<'_>) -> Result<ApiResponse> {
        let who = call.principal()?;
        let params: GitLabKeyParams = call.input()?;
        if params.title.as_deref().is_none_or(|t| t.trim().is_empty()) {
            return Err(field("title", "can't be blank"));
        }
        let expires_at = match params.expires_at.as_deref().map(str::trim).filter(|t| !t.is_empty()) {
            None => None,
            Some(text) => {
                let at = Timestamp::parse_iso8601(text)
                    .or_else(|| Timestamp::parse_iso8601(&format!("{text}T00:00:00Z")))
                    .ok_or_else(|| field("expires_at", "is not a date"))?;
                if at <= self.now {
                    return Err(field("expires_at", "must be in the future"));
                }
                Some(at)
            }
        };
        let taken = || field("fingerprint_sha256", "has already been taken");
        let key = self.add_key(&who.user, params.key, params.title, expires_at, "key", taken).await?;
        Ok(ApiResponse::json(201, &GitLabKeyDto::from(&key)))
    }

    /// `GET /api/v4/user/keys/:key_id`.
    pub(super) async fn gitlab_get_key(&self, call: &Call<'_>) -> Result<ApiResponse> {
        let key = self.own_key(call, "key_id", "Key").await?;
        Ok(ApiResponse::json(200, &GitLabKeyDto::from(&key)))
    }
}
