//! Reading and checking the parameters of a create or update request.

use super::{AuthMethod, RemoteMirror, UpdateState};
use crate::api::{FieldError, Fields, FromFields};
use crate::filters::{self, FilterError};
use crate::time::Timestamp;
use crate::urls::{GitUrl, HostAllowlist, StoredUrl, UrlError};

/// Why a push- or pull-mirror request was refused (all are 400s).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MirrorRequestError {
    /// A parameter has the wrong type, or a required one is missing.
    #[error(transparent)]
    Param(#[from] FieldError),
    /// The URL is malformed or points somewhere mirrors may not go.
    #[error("url {0}")]
    Url(#[from] UrlError),
    /// The branch regex is too long, invalid, or combined with protected-only.
    #[error("mirror_branch_regex {0}")]
    Filter(#[from] FilterError),
    /// An authentication method this service does not offer.
    #[error("auth_method {0:?} is not supported (\"password\" or \"ssh_public_key\")")]
    AuthMethod(String),
    /// SSH-key authentication with a URL that is not `ssh://`.
    #[error("auth_method ssh_public_key needs an ssh:// url")]
    SshNeedsSshUrl,
    /// `ssh_known_hosts` does not read.
    #[error("ssh_known_hosts {0}")]
    KnownHosts(crate::ssh::SshError),
}

impl MirrorRequestError {
    /// The field GitLab would name in its `{"message": {field: [...]}}` error.
    pub fn field(&self) -> &str {
        match self {
            Self::Param(e) => e.field(),
            Self::Url(_) => "url",
            Self::Filter(_) => "mirror_branch_regex",
            Self::AuthMethod(_) | Self::SshNeedsSshUrl => "auth_method",
            Self::KnownHosts(_) => "ssh_known_hosts",
        }
    }
}

/// The parameters of `POST`/`PUT …/remote_mirrors`, each optional as sent.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(schemars::JsonSchema))]
pub struct MirrorParams {
    /// `url`.
    pub url: Option<String>,
    /// `enabled`.
    pub enabled: Option<bool>,
    /// `only_protected_branches`.
    pub only_protected_branches: Option<bool>,
    /// `keep_divergent_refs`.
    pub keep_divergent_refs: Option<bool>,
    /// `mirror_branch_regex`: `Some(None)` clears it (sent empty or null).
    pub mirror_branch_regex: Option<Option<String>>,
    /// `auth_method`: `password` or `ssh_public_key`.
    pub auth_method: Option<String>,
    /// `ssh_known_hosts`: the target's host keys as `known_hosts` lines; `Some(None)` (sent empty
    /// or null) forgets them, so the next push learns the key the target offers.
    pub ssh_known_hosts: Option<Option<String>>,
}

/// A checked request: what the mirror becomes, before credentials are sealed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MirrorChange {
    /// A new URL to store, if one was sent and it differs (credentials still to be sealed).
    pub new_url: Option<GitUrl>,
    /// The new URL reuses the stored credentials (the client sent back the mask).
    pub keep_credentials: bool,
    /// Enabled after the change.
    pub enabled: bool,
    /// Protected only after the change.
    pub only_protected_branches: bool,
    /// Keep divergent refs after the change.
    pub keep_divergent_refs: bool,
    /// Branch regex after the change.
    pub mirror_branch_regex: Option<String>,
    /// Authentication method after the change.
    pub auth_method: AuthMethod,
    /// New known hosts: `None` unchanged, `Some(None)` forgotten.
    pub known_hosts: Option<Option<Vec<crate::ssh::KnownHost>>>,
}

impl FromFields for MirrorParams {
    fn from_fields(fields: &Fields) -> Result<Self, FieldError> {
        Ok(Self {
            url: fields.string("url")?,
            enabled: fields.boolean("enabled")?,
            only_protected_branches: fields.boolean("only_protected_branches")?,
            keep_divergent_refs: fields.boolean("keep_divergent_refs")?,
            mirror_branch_regex: fields.nullable_string("mirror_branch_regex")?,
            auth_method: fields.string("auth_method")?,
            ssh_known_hosts: fields.nullable_string("ssh_known_hosts")?,
        })
    }
}

impl MirrorParams {
    /// Checks a create request: `url` is required; the mirror starts disabled unless `enabled`.
    pub fn check_create(self, allow: &HostAllowlist) -> Result<MirrorChange, MirrorRequestError> {
        let url = self.url.clone().ok_or(FieldError::Missing("url"))?;
        let url = check_url(&url, allow)?;
        if url.has_masked_credentials() {
            return Err(UrlError::Malformed.into());
        }
        let ssh = url.scheme() == "ssh";
        self.finish(Some(url), false, (false, false, false, None), AuthMethod::Password, ssh)
    }

    /// Checks an update of `current`; unspecified parameters keep their values.
    pub fn check_update(
        self,
        current: &RemoteMirror,
        allow: &HostAllowlist,
    ) -> Result<MirrorChange, MirrorRequestError> {
        let (new_url, keep_credentials) = match &self.url {
            None => (None, false),
            Some(text) => {
                let url = check_url(text, allow)?;
                let keep = url.has_masked_credentials();
                if keep && current.url.sealed_userinfo.is_none() {
                    return Err(UrlError::Malformed.into());
                }
                let same = url.without_credentials() == current.url.plain
                    && (keep || !url.has_credentials() && current.url.sealed_userinfo.is_none());
                if same { (None, false) } else { (Some(url), keep) }
            }
        };
        let ssh = new_url.as_ref().map_or(current.url.plain.starts_with("ssh://"), |u| u.scheme() == "ssh");
        let kept = (
            current.enabled,
            current.only_protected_branches,
            current.keep_divergent_refs,
            current.mirror_branch_regex.clone(),
        );
        self.finish(new_url, keep_credentials, kept, current.auth_method, ssh)
    }

    /// The change, from the settings `kept` (enabled, protected only, keep divergent, regex) and
    /// authentication method `auth` the mirror has, and whether its URL after the change is `ssh://`.
    fn finish(
        self,
        new_url: Option<GitUrl>,
        keep_credentials: bool,
        kept: (bool, bool, bool, Option<String>),
        auth: AuthMethod,
        ssh_url: bool,
    ) -> Result<MirrorChange, MirrorRequestError> {
        let (enabled, only_protected, keep_divergent, regex) = kept;
        let auth_method = match self.auth_method.as_deref().map(str::trim).filter(|m| !m.is_empty()) {
            None => auth,
            Some(name) => AuthMethod::parse(name).ok_or_else(|| MirrorRequestError::AuthMethod(name.to_owned()))?,
        };
        if auth_method == AuthMethod::SshPublicKey && !ssh_url {
            return Err(MirrorRequestError::SshNeedsSshUrl);
        }
        let known_hosts = match self.ssh_known_hosts {
            None => None,
            Some(None) => Some(None),
            Some(Some(text)) => {
                let hosts = crate::ssh::parse_known_hosts(&text).map_err(MirrorRequestError::KnownHosts)?;
                Some(Some(hosts).filter(|h| !h.is_empty()))
            }
        };
        let (only_protected_branches, mirror_branch_regex) =
            filters::update_selection((only_protected, regex), self.only_protected_branches, self.mirror_branch_regex)?;
        Ok(MirrorChange {
            new_url,
            keep_credentials,
            enabled: self.enabled.unwrap_or(enabled),
            only_protected_branches,
            keep_divergent_refs: self.keep_divergent_refs.unwrap_or(keep_divergent),
            mirror_branch_regex,
            auth_method,
            known_hosts,
        })
    }
}

fn check_url(text: &str, allow: &HostAllowlist) -> Result<GitUrl, UrlError> {
    let url = GitUrl::parse(text.trim())?;
    url.check_outbound(allow)?;
    Ok(url)
}

impl MirrorChange {
    /// The mirror a create request makes; the store assigns its id.
    pub fn into_new_mirror(self, repository_id: i64, url: StoredUrl, now: Timestamp) -> RemoteMirror {
        RemoteMirror {
            id: 0,
            repository_id,
            url,
            enabled: self.enabled,
            only_protected_branches: self.only_protected_branches,
            keep_divergent_refs: self.keep_divergent_refs,
            mirror_branch_regex: self.mirror_branch_regex,
            auth_method: self.auth_method,
            ssh: None,
            update: UpdateState::default(),
            created_at: now,
            updated_at: now,
        }
    }

    /// Applies an update to `current`. A new URL resets the status, its timestamps and the last error.
    pub fn apply_to(self, current: &RemoteMirror, url: Option<StoredUrl>, now: Timestamp) -> RemoteMirror {
        let mut next = current.clone();
        if let Some(url) = url {
            next.url = url;
            next.update = UpdateState::default();
        }
        next.enabled = self.enabled;
        next.only_protected_branches = self.only_protected_branches;
        next.keep_divergent_refs = self.keep_divergent_refs;
        next.mirror_branch_regex = self.mirror_branch_regex;
        next.auth_method = self.auth_method;
        next.updated_at = now;
        next
    }
}

#[cfg(test)]
mod tests {
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    use super::*;
    use crate::mirrors::UpdateStatus;

    fn params(json: serde_json::Value) -> Result<MirrorParams, MirrorRequestError> {
        Ok(MirrorParams::from_fields(&Fields::from_json(json).expect("object"))?)
    }

    fn open() -> HostAllowlist {
        HostAllowlist::default()
    }

    fn stored(masked: &str, plain: &str, sealed: Option<&str>) -> StoredUrl {
        StoredUrl { plain: plain.into(), masked: masked.into(), sealed_userinfo: sealed.map(Into::into) }
    }

    #[test]
    fn create_defaults_to_disabled() {
        let change = params(serde_json::json!({"url": "https://u:p@example.com/r.git"}))
            .and_then(|p| p.check_create(&open()))
            .expect("valid");
        assert!(!change.enabled && !change.only_protected_branches && !change.keep_divergent_refs);
        assert_eq!(change.new_url.expect("url").masked(), "https://*****:*****@example.com/r.git");
    }

    #[test]
    fn create_refusals() {
        let check = |json| params(json).and_then(|p| p.check_create(&open()));
        assert_eq!(check(serde_json::json!({})).err(), Some(FieldError::Missing("url").into()));
        assert_eq!(check(serde_json::json!({"url": 5})).err(), Some(FieldError::Invalid("url").into()));
        assert_eq!(check(serde_json::json!({"url": "http://127.0.0.1/x"})).err(), Some(UrlError::LocalNetwork.into()));
        assert_eq!(
            check(serde_json::json!({"url": "https://e.com/x", "only_protected_branches": true, "mirror_branch_regex": "x"})).err(),
            Some(FilterError::Exclusive.into())
        );
        assert_eq!(
            check(serde_json::json!({"url": "https://e.com/x", "mirror_branch_regex": "a".repeat(256)})).err(),
            Some(FilterError::TooLong.into())
        );
        assert!(matches!(
            check(serde_json::json!({"url": "https://e.com/x", "mirror_branch_regex": "("})),
            Err(MirrorRequestError::Filter(FilterError::Invalid(_)))
        ));
        assert_eq!(
            check(serde_json::json!({"url": "https://e.com/x", "auth_method": "ssh_public_key"}))
                .err()
                .map(|e| e.field().to_owned()),
            Some("auth_method".to_owned())
        );
        assert_eq!(
            check(serde_json::json!({"url": "https://*****:*****@e.com/x"})).err(),
            Some(UrlError::Malformed.into())
        );
    }

    #[test]
    fn ssh_key_mirrors_take_ssh_urls_and_known_hosts() {
        let check = |v| params(v).and_then(|p| p.check_create(&HostAllowlist::default()));
        let host = "e.com ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIKqP3Cr632C2dNhhgKVcon4ldUSAeKiku2yP9O9/bDtY";
        let made = check(serde_json::json!({
            "url": "ssh://git@e.com/x.git", "auth_method": "ssh_public_key", "ssh_known_hosts": host
        }))
        .expect("accepted");
        assert_eq!(made.auth_method, AuthMethod::SshPublicKey);
        assert_eq!(made.known_hosts.flatten().map(|h| h.len()), Some(1));
        let bad = check(serde_json::json!({
            "url": "ssh://git@e.com/x.git", "auth_method": "ssh_public_key", "ssh_known_hosts": "e.com ssh-ed25519 !"
        }));
        assert_eq!(bad.err().map(|e| e.field().to_owned()), Some("ssh_known_hosts".into()));
        assert_eq!(
            check(serde_json::json!({"url": "https://e.com/x", "auth_method": "kerberos"})).err(),
            Some(MirrorRequestError::AuthMethod("kerberos".into()))
        );
    }

    fn mirror() -> RemoteMirror {
        let change = MirrorChange {
            new_url: None,
            keep_credentials: false,
            enabled: true,
            only_protected_branches: false,
            keep_divergent_refs: true,
            mirror_branch_regex: Some("^main$".into()),
            auth_method: AuthMethod::Password,
            known_hosts: None,
        };
        let mut m = change.into_new_mirror(
            1,
            stored("https://*****:*****@e.com/r", "https://e.com/r", Some("S")),
            Timestamp(5),
        );
        m.update.status = UpdateStatus::Failed;
        m.update.last_error = Some("boom".into());
        m.update.last_update_at = Some(Timestamp(6));
        m
    }

    #[test]
    fn update_keeps_unsent_fields_and_clears_regex() {
        let current = mirror();
        let change = params(serde_json::json!({"enabled": false, "mirror_branch_regex": ""}))
            .and_then(|p| p.check_update(&current, &open()))
            .expect("valid");
        let next = change.apply_to(&current, None, Timestamp(9));
        assert!(!next.enabled && next.keep_divergent_refs);
        assert_eq!(next.mirror_branch_regex, None);
        assert_eq!(next.update.status, UpdateStatus::Failed, "status is kept when the URL is not changed");
        assert_eq!(next.updated_at, Timestamp(9));
    }

    #[test]
    fn protected_only_replaces_a_kept_regex_and_both_at_once_are_refused() {
        let current = mirror();
        let change = params(serde_json::json!({"only_protected_branches": true}))
            .and_then(|p| p.check_update(&current, &open()))
            .expect("GitLab clears the regex");
        assert!(change.only_protected_branches);
        assert_eq!(change.mirror_branch_regex, None);
        let err = params(serde_json::json!({"only_protected_branches": true, "mirror_branch_regex": "x"}))
            .and_then(|p| p.check_update(&current, &open()));
        assert_eq!(err.err(), Some(FilterError::Exclusive.into()));
    }

    #[test]
    fn url_change_resets_status_but_mask_keeps_credentials() {
        let current = mirror();
        let same = params(serde_json::json!({"url": "https://*****:*****@e.com/r"}))
            .and_then(|p| p.check_update(&current, &open()))
            .expect("valid");
        assert_eq!(same.new_url, None, "sending back the masked URL changes nothing");
        let moved = params(serde_json::json!({"url": "https://*****:*****@e.com/other"}))
            .and_then(|p| p.check_update(&current, &open()))
            .expect("valid");
        assert!(moved.keep_credentials);
        let new_url = stored("https://*****:*****@e.com/other", "https://e.com/other", Some("S"));
        let next = moved.apply_to(&current, Some(new_url), Timestamp(9));
        assert_eq!(next.update, UpdateState::default());
    }
}
