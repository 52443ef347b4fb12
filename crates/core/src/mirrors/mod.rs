//! GitLab remote (push) mirrors: the stored record, its wire shape, and the rules for creating
//! and changing one.

mod params;
pub mod protected;
mod pull;
mod state;
mod summary;

pub use params::{MirrorChange, MirrorParams, MirrorRequestError};
pub use pull::{PullChange, PullMirror, PullMirrorDto, PullMirrorParams, check_pull_update};
pub use state::{MAX_TRIES, NextStep, UpdateOutcome, backoff_ms};
pub use summary::{StatusSummary, Verdict};

use serde::Serialize;

use crate::time::Timestamp;
use crate::urls::StoredUrl;

/// Where a mirror's last update stands (GitLab's `update_status`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, serde::Deserialize)]
#[cfg_attr(feature = "openapi", derive(schemars::JsonSchema))]
#[serde(rename_all = "snake_case")]
pub enum UpdateStatus {
    /// Never run.
    #[default]
    None,
    /// A node is pushing.
    Started,
    /// The last update succeeded.
    Finished,
    /// The last update failed for good (or skipped diverged refs).
    Failed,
    /// The last update failed and will be retried.
    ToRetry,
}

impl UpdateStatus {
    /// The wire and storage name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::None => "none",
            Self::Started => "started",
            Self::Finished => "finished",
            Self::Failed => "failed",
            Self::ToRetry => "to_retry",
        }
    }

    /// Reads a stored name.
    pub fn parse(text: &str) -> Option<Self> {
        [Self::None, Self::Started, Self::Finished, Self::Failed, Self::ToRetry]
            .into_iter()
            .find(|s| s.as_str() == text)
    }
}

/// How the node authenticates to the mirror.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "openapi", derive(schemars::JsonSchema))]
#[serde(rename_all = "snake_case")]
pub enum AuthMethod {
    /// User name and password or token in the URL.
    Password,
    /// An SSH key pair the edge made for this mirror (`ssh://` URLs): its public half is
    /// `GET …/remote_mirrors/:id/public_key`.
    SshPublicKey,
}

crate::wire_names!(AuthMethod { Password = "password", SshPublicKey = "ssh_public_key" });

/// A mirror's SSH key pair and the target's known hosts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MirrorSsh {
    /// The Ed25519 private seed (hex), sealed like credentials.
    pub sealed_seed: String,
    /// The public half, `ssh-ed25519 AAAA… comment`.
    pub public_key: String,
    /// The target's `known_hosts` lines (given, or learned on the first push), if any yet.
    pub known_hosts: Option<String>,
    /// Their keys' `SHA256:…` fingerprints, in order.
    pub host_fingerprints: Vec<String>,
}

/// The progress of a mirror's updates, as GitLab reports it for push and pull mirrors alike
/// (serialized with GitLab's field names, flattened into both wire shapes). Its transitions live
/// in one place: the `state` module.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "openapi", derive(schemars::JsonSchema))]
pub struct UpdateState {
    /// Status of the last update.
    #[serde(rename = "update_status")]
    pub status: UpdateStatus,
    /// When the last update ended.
    pub last_update_at: Option<Timestamp>,
    /// When the last update started.
    pub last_update_started_at: Option<Timestamp>,
    /// When the last successful update ended.
    pub last_successful_update_at: Option<Timestamp>,
    /// Scrubbed error of the last failed update.
    pub last_error: Option<String>,
}

/// A push mirror of a repository.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteMirror {
    /// Id.
    pub id: i64,
    /// The repository pushed from.
    pub repository_id: i64,
    /// Where it pushes to.
    pub url: StoredUrl,
    /// Whether pushes happen.
    pub enabled: bool,
    /// Only protected branches are pushed.
    pub only_protected_branches: bool,
    /// Diverged target refs are skipped instead of overwritten.
    pub keep_divergent_refs: bool,
    /// Only branches matching this are pushed.
    pub mirror_branch_regex: Option<String>,
    /// Authentication method.
    pub auth_method: AuthMethod,
    /// Its SSH key pair and known hosts, once it has used SSH-key authentication.
    pub ssh: Option<MirrorSsh>,
    /// Progress of its updates.
    pub update: UpdateState,
    /// Creation time.
    pub created_at: Timestamp,
    /// Last change time.
    pub updated_at: Timestamp,
}

/// GitLab's `RemoteMirror` entity, every field as GitLab sends it (nulls included).
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(schemars::JsonSchema))]
pub struct RemoteMirrorDto {
    /// Enabled.
    pub enabled: bool,
    /// Id.
    pub id: i64,
    /// Status, timestamps and scrubbed last error.
    #[serde(flatten)]
    pub update: UpdateState,
    /// Protected only.
    pub only_protected_branches: bool,
    /// Keep divergent refs.
    pub keep_divergent_refs: bool,
    /// URL, credentials masked.
    pub url: String,
    /// Branch regex.
    pub mirror_branch_regex: Option<String>,
    /// Authentication method.
    pub auth_method: AuthMethod,
    /// The target's SSH host keys this mirror trusts (given, or learned on its first push).
    pub host_keys: Vec<crate::ssh::HostKeyDto>,
}

impl From<&RemoteMirror> for RemoteMirrorDto {
    fn from(m: &RemoteMirror) -> Self {
        Self {
            enabled: m.enabled,
            id: m.id,
            update: m.update.clone(),
            only_protected_branches: m.only_protected_branches,
            keep_divergent_refs: m.keep_divergent_refs,
            url: m.url.masked.clone(),
            mirror_branch_regex: m.mirror_branch_regex.clone(),
            auth_method: m.auth_method,
            host_keys: m
                .ssh
                .iter()
                .flat_map(|s| &s.host_fingerprints)
                .map(|f| crate::ssh::HostKeyDto { fingerprint_sha256: f.clone() })
                .collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    use super::*;

    #[test]
    fn wire_shape_matches_gitlab() {
        let m = RemoteMirror {
            id: 101_486,
            repository_id: 1,
            url: StoredUrl {
                plain: "https://example.com/gitlab/example.git".into(),
                masked: "https://*****:*****@example.com/gitlab/example.git".into(),
                sealed_userinfo: Some("sealed".into()),
            },
            enabled: false,
            only_protected_branches: false,
            keep_divergent_refs: false,
            mirror_branch_regex: None,
            auth_method: AuthMethod::Password,
            ssh: None,
            update: UpdateState::default(),
            created_at: Timestamp(0),
            updated_at: Timestamp(0),
        };
        let json = serde_json::to_value(RemoteMirrorDto::from(&m)).expect("serializes");
        assert_eq!(
            json,
            serde_json::json!({
                "enabled": false, "id": 101_486, "last_error": null, "last_successful_update_at": null,
                "last_update_at": null, "last_update_started_at": null, "only_protected_branches": false,
                "keep_divergent_refs": false, "update_status": "none",
                "url": "https://*****:*****@example.com/gitlab/example.git",
                "mirror_branch_regex": null, "auth_method": "password", "host_keys": []
            })
        );
        assert!(!json.to_string().contains("sealed"));
    }

    #[test]
    fn status_names_round_trip() {
        for s in ["none", "started", "finished", "failed", "to_retry"] {
            assert_eq!(UpdateStatus::parse(s).map(UpdateStatus::as_str), Some(s));
        }
        assert_eq!(UpdateStatus::parse("scheduled"), None);
    }
}
