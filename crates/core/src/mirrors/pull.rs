//! GitLab pull mirrors: how a repository's copy follows its upstream URL.
//!
//! The URL is the repository's `upstreamUrl` (one source of truth); the settings and the update
//! state live here. A repository with an upstream but no settings is an exact mirror: it
//! overwrites diverged branches and follows deletions.

use serde::Serialize;

use super::{MirrorRequestError, UpdateState};
use crate::api::{FieldError, Fields, FromFields, encode};
use crate::filters;
use crate::time::Timestamp;
use crate::urls::{GitUrl, HostAllowlist, StoredUrl, UrlError};

/// A repository's pull-mirror settings and state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PullMirror {
    /// The repository (also the mirror's id on the wire).
    pub repository_id: i64,
    /// Whether pulls happen.
    pub enabled: bool,
    /// Only protected branches are pulled.
    pub only_mirror_protected_branches: bool,
    /// Branches upstream rewrote are overwritten (and deletions followed).
    pub mirror_overwrites_diverged_branches: bool,
    /// Only branches matching this are pulled.
    pub mirror_branch_regex: Option<String>,
    /// Stored for GitLab clients; there are no pipelines to trigger here.
    pub mirror_trigger_builds: bool,
    /// Progress of its updates.
    pub update: UpdateState,
    /// Last change.
    pub updated_at: Timestamp,
}

impl PullMirror {
    /// The settings of a repository that has an upstream but was never configured: an exact mirror.
    pub fn implicit(repository_id: i64, now: Timestamp) -> Self {
        Self {
            repository_id,
            enabled: true,
            only_mirror_protected_branches: false,
            mirror_overwrites_diverged_branches: true,
            mirror_branch_regex: None,
            mirror_trigger_builds: false,
            update: UpdateState::default(),
            updated_at: now,
        }
    }
}

/// GitLab's pull-mirror entity.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(schemars::JsonSchema))]
pub struct PullMirrorDto {
    /// Id (the repository's).
    pub id: i64,
    /// Status, timestamps and scrubbed last error.
    #[serde(flatten)]
    pub update: UpdateState,
    /// Upstream URL, credentials masked.
    pub url: String,
    /// Enabled.
    pub enabled: bool,
    /// Trigger builds (stored only).
    pub mirror_trigger_builds: bool,
    /// Protected only.
    pub only_mirror_protected_branches: bool,
    /// Overwrite diverged branches.
    pub mirror_overwrites_diverged_branches: bool,
    /// Branch regex.
    pub mirror_branch_regex: Option<String>,
}

impl PullMirrorDto {
    /// The wire form, with the repository's (masked) upstream URL.
    pub fn new(m: &PullMirror, url: &StoredUrl) -> Self {
        Self {
            id: m.repository_id,
            update: m.update.clone(),
            url: url.masked.clone(),
            enabled: m.enabled,
            mirror_trigger_builds: m.mirror_trigger_builds,
            only_mirror_protected_branches: m.only_mirror_protected_branches,
            mirror_overwrites_diverged_branches: m.mirror_overwrites_diverged_branches,
            mirror_branch_regex: m.mirror_branch_regex.clone(),
        }
    }
}

/// A checked `PUT …/mirror/pull`: the settings after it, and a new URL to store, if any.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PullChange {
    /// The mirror after the change.
    pub mirror: PullMirror,
    /// A new upstream URL (credentials still to be sealed); `keep_credentials` reuses the stored ones.
    pub new_url: Option<GitUrl>,
    /// The new URL reuses the stored credentials.
    pub keep_credentials: bool,
}

/// What `PUT …/mirror/pull` may send; each absent field keeps its value.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(schemars::JsonSchema))]
pub struct PullMirrorParams {
    /// `url`: the upstream (required when the repository has none yet).
    pub url: Option<String>,
    /// `auth_user`: becomes the URL's user.
    pub auth_user: Option<String>,
    /// `auth_password`: becomes the URL's password.
    pub auth_password: Option<String>,
    /// `enabled`.
    pub enabled: Option<bool>,
    /// `only_mirror_protected_branches`.
    pub only_mirror_protected_branches: Option<bool>,
    /// `mirror_overwrites_diverged_branches`.
    pub mirror_overwrites_diverged_branches: Option<bool>,
    /// `mirror_branch_regex`: `Some(None)` clears it (sent empty or null).
    pub mirror_branch_regex: Option<Option<String>>,
    /// `mirror_trigger_builds` (stored only).
    pub mirror_trigger_builds: Option<bool>,
}

impl FromFields for PullMirrorParams {
    fn from_fields(fields: &Fields) -> Result<Self, FieldError> {
        Ok(Self {
            url: fields.string("url")?,
            auth_user: fields.string("auth_user")?,
            auth_password: fields.string("auth_password")?,
            enabled: fields.boolean("enabled")?,
            only_mirror_protected_branches: fields.boolean("only_mirror_protected_branches")?,
            mirror_overwrites_diverged_branches: fields.boolean("mirror_overwrites_diverged_branches")?,
            mirror_branch_regex: fields.nullable_string("mirror_branch_regex")?,
            mirror_trigger_builds: fields.boolean("mirror_trigger_builds")?,
        })
    }
}

/// Checks a `PUT …/mirror/pull` against the current settings and upstream URL. `auth_user` and
/// `auth_password`, when sent, become the URL's credentials.
pub fn check_pull_update(
    params: PullMirrorParams,
    current: &PullMirror,
    upstream: Option<&StoredUrl>,
    allow: &HostAllowlist,
    now: Timestamp,
) -> Result<PullChange, MirrorRequestError> {
    let url_text = params.url;
    let (auth_user, auth_password) = (params.auth_user, params.auth_password);
    let (new_url, keep_credentials) = match (url_text, upstream) {
        (None, None) => return Err(FieldError::Missing("url").into()),
        (None, Some(_)) if auth_user.is_none() && auth_password.is_none() => (None, false),
        (text, current_url) => {
            let text = text.or_else(|| current_url.map(|u| u.plain.clone())).unwrap_or_default();
            let mut url = GitUrl::parse(text.trim())?;
            url.check_outbound(allow)?;
            if auth_user.is_some() || auth_password.is_some() {
                let info = format!(
                    "{}:{}",
                    encode(auth_user.as_deref().unwrap_or("")),
                    encode(auth_password.as_deref().unwrap_or(""))
                );
                url = GitUrl::parse(&url.with_userinfo(Some(&info)))?;
            }
            let keep = url.has_masked_credentials();
            if keep && current_url.and_then(|u| u.sealed_userinfo.as_ref()).is_none() {
                return Err(UrlError::Malformed.into());
            }
            let same = current_url.is_some_and(|u| {
                url.without_credentials() == u.plain
                    && (keep || (!url.has_credentials() && u.sealed_userinfo.is_none()))
            });
            if same { (None, false) } else { (Some(url), keep) }
        }
    };
    let mut mirror = current.clone();
    mirror.enabled = params.enabled.unwrap_or(mirror.enabled);
    mirror.mirror_trigger_builds = params.mirror_trigger_builds.unwrap_or(mirror.mirror_trigger_builds);
    mirror.mirror_overwrites_diverged_branches =
        params.mirror_overwrites_diverged_branches.unwrap_or(mirror.mirror_overwrites_diverged_branches);
    (mirror.only_mirror_protected_branches, mirror.mirror_branch_regex) = filters::update_selection(
        (mirror.only_mirror_protected_branches, mirror.mirror_branch_regex.take()),
        params.only_mirror_protected_branches,
        params.mirror_branch_regex,
    )?;
    if new_url.is_some() {
        mirror.update = UpdateState::default();
    }
    mirror.updated_at = now;
    Ok(PullChange { mirror, new_url, keep_credentials })
}

#[cfg(test)]
mod tests {
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    use super::*;

    fn fields(v: serde_json::Value) -> PullMirrorParams {
        PullMirrorParams::from_fields(&Fields::from_json(v).expect("object")).expect("readable")
    }

    fn upstream() -> StoredUrl {
        StoredUrl {
            plain: "https://e.com/r.git".into(),
            masked: "https://*****:*****@e.com/r.git".into(),
            sealed_userinfo: Some("S".into()),
        }
    }

    #[test]
    fn implicit_mirrors_follow_upstream_exactly() {
        let m = PullMirror::implicit(1, Timestamp(0));
        assert!(m.enabled && m.mirror_overwrites_diverged_branches && !m.only_mirror_protected_branches);
        assert_eq!(m.mirror_branch_regex, None);
    }

    #[test]
    fn update_merges_auth_fields_into_the_url_and_resets_status() {
        let mut current = PullMirror::implicit(1, Timestamp(0));
        current.update.status = crate::mirrors::UpdateStatus::Failed;
        let f = fields(
            serde_json::json!({"auth_user": "bot", "auth_password": "p@ss", "mirror_overwrites_diverged_branches": false}),
        );
        let change = check_pull_update(f.clone(), &current, Some(&upstream()), &HostAllowlist::default(), Timestamp(5))
            .expect("valid");
        let url = change.new_url.expect("new credentials");
        assert_eq!(url.userinfo().as_deref(), Some("bot:p%40ss"));
        assert_eq!(url.masked(), "https://*****:*****@e.com/r.git");
        assert!(!change.mirror.mirror_overwrites_diverged_branches);
        assert_eq!(change.mirror.update, UpdateState::default());
    }

    #[test]
    fn settings_only_keep_the_url_and_refusals_match_push_mirrors() {
        let current = PullMirror::implicit(1, Timestamp(0));
        let f = fields(serde_json::json!({"enabled": false}));
        let change = check_pull_update(f.clone(), &current, Some(&upstream()), &HostAllowlist::default(), Timestamp(5))
            .expect("valid");
        assert_eq!((change.new_url, change.mirror.enabled), (None, false));
        let check = |v| check_pull_update(fields(v), &current, None, &HostAllowlist::default(), Timestamp(5)).err();
        assert_eq!(check(serde_json::json!({})), Some(FieldError::Missing("url").into()));
        assert_eq!(check(serde_json::json!({"url": "http://10.0.0.1/x"})), Some(UrlError::LocalNetwork.into()));
        assert_eq!(
            check(
                serde_json::json!({"url": "https://e.com/x", "only_mirror_protected_branches": true, "mirror_branch_regex": "a"})
            ),
            Some(crate::filters::FilterError::Exclusive.into())
        );
    }
}
