//! Running the instance (seed 002): the settings an administrator changes and what each one does.
//!
//! Every setting here acts somewhere: the banner is shown (the status read carries it to the
//! widget), the default branch is given to new repositories, the policies decide who may archive
//! or delete a repository, the rate limit refuses requests, log levels decide what the edge and
//! the farm nodes log, and the license caps how many users may exist. They are stored as one
//! row per setting that differs from its default ([`InstanceSettings`]), read in one statement.

pub mod avatar;
pub mod license;
pub mod logs;
pub mod passwords;
pub mod rate_limit;

use serde::{Deserialize, Serialize};

use crate::identity::{Level, Principal};
pub use logs::{LogLevel, LogLevels};
pub use rate_limit::{
    Allowances, BucketSettings, LocalLimiter, NoLimiter, RateLimitSettings, RateLimiter, Refused, UserRateLimit,
    allowance_block,
};

/// Why an administrative value was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AdminError {
    /// A banner needs an audience.
    #[error("audience must be AUTHENTICATED or ALL")]
    Audience,
    /// A policy permission that is not one of the four.
    #[error("permission must be one of SYS_ADMIN, ADMIN, PROJECT_ADMIN or REPO_ADMIN")]
    PolicyPermission,
    /// A branch name git would refuse.
    #[error("{0}")]
    Branch(String),
    /// A label name outside the rules.
    #[error("Label names are 3 to 50 characters: lower-case letters, digits, '-', '_' and '.'.")]
    LabelName,
}

/// Who sees the announcement banner.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(schemars::JsonSchema))]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Audience {
    /// Signed-in users only.
    Authenticated,
    /// Everyone, anonymous visitors too.
    All,
}

crate::wire_names!(Audience { Authenticated = "AUTHENTICATED", All = "ALL" });

/// The announcement banner (`RestAnnouncementBanner`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(schemars::JsonSchema))]
pub struct Banner {
    /// The text (Bitbucket renders it as markdown; the widget shows it as text).
    pub message: String,
    /// Whether it is shown at all.
    pub enabled: bool,
    /// Who sees it.
    pub audience: Audience,
}

impl Banner {
    /// Whether a caller (signed in or not) sees the banner.
    pub fn shown_to(&self, signed_in: bool) -> bool {
        self.enabled && (signed_in || self.audience == Audience::All)
    }
}

/// Who may archive (or delete) a repository: the least permission that may.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(schemars::JsonSchema))]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum PolicyPermission {
    /// System administrators only.
    SysAdmin,
    /// Global administrators.
    Admin,
    /// Administrators of the repository's project.
    ProjectAdmin,
    /// Administrators of the repository (Bitbucket's default).
    RepoAdmin,
}

crate::wire_names!(PolicyPermission {
    SysAdmin = "SYS_ADMIN",
    Admin = "ADMIN",
    ProjectAdmin = "PROJECT_ADMIN",
    RepoAdmin = "REPO_ADMIN",
});

impl PolicyPermission {
    /// Whether the caller, with `project` and `repository` levels as their grants give them
    /// (global administrators have ADMIN on both), meets the policy.
    pub fn allows(self, who: &Principal, project: Option<Level>, repository: Option<Level>) -> bool {
        match self {
            Self::SysAdmin => who.is_sys_admin(),
            Self::Admin => who.is_admin(),
            Self::ProjectAdmin => project == Some(Level::Admin),
            Self::RepoAdmin => repository == Some(Level::Admin),
        }
    }
}

/// A repository policy's wire shape (`{permission}`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "openapi", derive(schemars::JsonSchema))]
pub struct Policy {
    /// The least permission that may act.
    pub permission: PolicyPermission,
}

/// The instance's settings, as stored: each absent row is its default.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct InstanceSettings {
    /// The announcement banner, if one is set.
    pub banner: Option<Banner>,
    /// The branch new repositories get when created without one (short name).
    pub default_branch: Option<String>,
    /// Who may archive a repository.
    pub archive_policy: Option<PolicyPermission>,
    /// Who may delete a repository.
    pub delete_policy: Option<PolicyPermission>,
    /// Whether requests are rate limited, and the default bucket.
    pub rate_limit: RateLimitSettings,
    /// Log levels of the edge and the farm nodes.
    pub logs: LogLevels,
    /// The installed license, as it was posted.
    pub license: Option<String>,
    /// The SMTP server notifications are sent through (none: no mail is sent).
    pub mail_server: Option<crate::mail::MailServer>,
    /// The From address of the instance's mail.
    pub mail_sender: Option<String>,
    /// When and how often notifications are mailed.
    pub notifications: crate::mail::notify::NotificationSettings,
    /// How long audit events are kept (90 days unless set).
    pub audit_retention: Option<crate::audit::RetentionPeriod>,
}

/// The stored names of the settings (`instance_settings.name`).
pub mod setting {
    /// [`super::Banner`].
    pub const BANNER: &str = "banner";
    /// The default branch (a JSON string, short name).
    pub const DEFAULT_BRANCH: &str = "defaultBranch";
    /// The archive policy (a JSON string).
    pub const ARCHIVE_POLICY: &str = "policy.archive";
    /// The delete policy (a JSON string).
    pub const DELETE_POLICY: &str = "policy.delete";
    /// [`super::RateLimitSettings`].
    pub const RATE_LIMIT: &str = "rateLimit";
    /// [`super::LogLevels`].
    pub const LOG_LEVELS: &str = "logLevels";
    /// The license text (a JSON string).
    pub const LICENSE: &str = "license";
    /// [`crate::mail::MailServer`].
    pub const MAIL_SERVER: &str = "mail.server";
    /// The sender address (a JSON string).
    pub const MAIL_SENDER: &str = "mail.sender";
    /// [`crate::mail::notify::NotificationSettings`].
    pub const NOTIFICATIONS: &str = "notifications";
    /// [`crate::audit::RetentionPeriod`].
    pub const AUDIT_RETENTION: &str = "audit.retention";
}

impl InstanceSettings {
    /// Reads the stored rows (name, JSON value); a row that does not read is its default (and
    /// is overwritten by the next change), so a bad row never locks administrators out.
    pub fn from_rows(rows: impl IntoIterator<Item = (String, String)>) -> Self {
        let mut s = Self::default();
        for (name, value) in rows {
            match name.as_str() {
                setting::BANNER => s.banner = serde_json::from_str(&value).ok(),
                setting::DEFAULT_BRANCH => s.default_branch = serde_json::from_str(&value).ok(),
                setting::ARCHIVE_POLICY => s.archive_policy = serde_json::from_str(&value).ok(),
                setting::DELETE_POLICY => s.delete_policy = serde_json::from_str(&value).ok(),
                setting::RATE_LIMIT => s.rate_limit = serde_json::from_str(&value).unwrap_or_default(),
                setting::LOG_LEVELS => s.logs = serde_json::from_str(&value).unwrap_or_default(),
                setting::LICENSE => s.license = serde_json::from_str(&value).ok(),
                setting::MAIL_SERVER => s.mail_server = serde_json::from_str(&value).ok(),
                setting::MAIL_SENDER => s.mail_sender = serde_json::from_str(&value).ok(),
                setting::NOTIFICATIONS => s.notifications = serde_json::from_str(&value).unwrap_or_default(),
                setting::AUDIT_RETENTION => s.audit_retention = serde_json::from_str(&value).ok(),
                _ => {}
            }
        }
        s
    }

    /// The archive policy in force (REPO_ADMIN unless set).
    pub fn archive(&self) -> PolicyPermission {
        self.archive_policy.unwrap_or(PolicyPermission::RepoAdmin)
    }

    /// How long audit events are kept (90 days unless set).
    pub fn retention(&self) -> crate::audit::RetentionPeriod {
        self.audit_retention.unwrap_or_default()
    }

    /// The delete policy in force (REPO_ADMIN unless set).
    pub fn delete(&self) -> PolicyPermission {
        self.delete_policy.unwrap_or(PolicyPermission::RepoAdmin)
    }
}

/// A branch given as `main` or `refs/heads/main`: its short name, checked as git would.
pub fn branch_short_name(text: &str) -> Result<String, AdminError> {
    let short = text.strip_prefix("refs/heads/").unwrap_or(text);
    crate::registry::validate_branch_name(short).map_err(|e| AdminError::Branch(e.to_string()))
}

/// A label's name, lower-cased: 3 to 50 of `a-z 0-9 - _ .` (Bitbucket's rules are undocumented;
/// these are the ones its UI enforces in practice).
pub fn label_name(text: &str) -> Result<String, AdminError> {
    let name = text.trim().to_ascii_lowercase();
    let ok = (3..=50).contains(&name.len())
        && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'-' | b'_' | b'.'));
    if ok { Ok(name) } else { Err(AdminError::LabelName) }
}

/// `GET /application-properties`: every value a string, as Bitbucket sends them.
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "openapi", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct ApplicationProperties {
    /// This build's version.
    pub version: String,
    /// The version as a number, as a string (`0.1.0` → `"1000"`).
    pub build_number: String,
    /// When this version was released, epoch ms as a string.
    pub build_date: String,
    /// The product's name.
    pub display_name: String,
}

/// When this version was released (epoch ms): 2026-12-02.
const RELEASE_DATE_MS: i64 = 1_796_169_600_000;

impl ApplicationProperties {
    /// This build's properties.
    pub fn current() -> Self {
        let version = env!("CARGO_PKG_VERSION");
        let number = version.split('.').take(3).fold(0u64, |acc, part| acc * 1000 + part.parse::<u64>().unwrap_or(0));
        Self {
            version: version.to_owned(),
            build_number: number.to_string(),
            build_date: RELEASE_DATE_MS.to_string(),
            display_name: "mirrorfarm".to_owned(),
        }
    }
}

#[cfg(test)]
mod tests {
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    use super::*;

    #[test]
    fn settings_read_their_rows_and_default_the_rest() {
        let s = InstanceSettings::from_rows([
            ("banner".into(), r#"{"message":"hi","enabled":true,"audience":"AUTHENTICATED"}"#.into()),
            ("policy.delete".into(), r#""SYS_ADMIN""#.into()),
            ("defaultBranch".into(), "not json".into()),
        ]);
        let banner = s.banner.as_ref().expect("banner");
        assert!(banner.shown_to(true) && !banner.shown_to(false));
        assert_eq!((s.delete(), s.archive()), (PolicyPermission::SysAdmin, PolicyPermission::RepoAdmin));
        assert_eq!(s.default_branch, None);
        assert!(!s.rate_limit.enabled);
    }

    #[test]
    fn branch_and_label_names() {
        assert_eq!(branch_short_name("refs/heads/main").as_deref(), Ok("main"));
        assert_eq!(branch_short_name("release/1.x").as_deref(), Ok("release/1.x"));
        assert!(branch_short_name("bad..name").is_err());
        assert_eq!(label_name(" Backend ").as_deref(), Ok("backend"));
        assert!(label_name("ab").is_err());
        assert!(label_name("has space").is_err());
    }

    #[test]
    fn application_properties_are_strings() {
        let p = serde_json::to_value(ApplicationProperties::current()).expect("json");
        for key in ["version", "buildNumber", "buildDate", "displayName"] {
            assert!(p[key].is_string(), "{key}");
        }
        assert_eq!(p["buildNumber"], "1000");
    }
}
