//! Roles and permissions, Bitbucket's model: global roles, then project and repository grants.

use std::fmt;
use std::str::FromStr;

use super::User;
use crate::time::Timestamp;

/// A global role.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum GlobalRole {
    /// An ordinary user (`LICENSED_USER`): sees public and granted resources.
    User,
    /// Administers projects, repositories, users and permissions (`ADMIN`).
    Admin,
    /// Administers everything, including the system (`SYS_ADMIN`).
    SysAdmin,
}

impl GlobalRole {
    /// The Bitbucket name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::User => "LICENSED_USER",
            Self::Admin => "ADMIN",
            Self::SysAdmin => "SYS_ADMIN",
        }
    }

    /// Reads a stored or Bitbucket role name.
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "LICENSED_USER" | "USER" => Some(Self::User),
            "ADMIN" => Some(Self::Admin),
            "SYS_ADMIN" => Some(Self::SysAdmin),
            _ => None,
        }
    }
}

/// Read < write < admin, on a project or a repository.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    /// Read (and clone).
    Read,
    /// Write (push, trigger syncs).
    Write,
    /// Administer (settings, mirrors, permissions).
    Admin,
}

impl Level {
    /// The level's name, as grants store it and permission names end: `READ`, `WRITE`, `ADMIN`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Read => "READ",
            Self::Write => "WRITE",
            Self::Admin => "ADMIN",
        }
    }

    /// Reads a stored name.
    pub fn parse(text: &str) -> Option<Self> {
        [Self::Read, Self::Write, Self::Admin].into_iter().find(|l| l.as_str() == text)
    }
}

/// A permission as Bitbucket names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Permission {
    /// A project-level grant.
    Project(Level),
    /// A repository-level grant.
    Repo(Level),
    /// A global role.
    Global(GlobalRole),
    /// Ours, for tokens embedded in status pages: read repositories' mirroring status and
    /// nothing else (`STATUS_READ`).
    StatusRead,
}

/// An unknown permission name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not a valid permission")]
pub struct PermissionParseError(pub String);

impl FromStr for Permission {
    type Err = PermissionParseError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(match s {
            "PROJECT_READ" => Self::Project(Level::Read),
            "PROJECT_WRITE" => Self::Project(Level::Write),
            "PROJECT_ADMIN" => Self::Project(Level::Admin),
            "REPO_READ" => Self::Repo(Level::Read),
            "REPO_WRITE" => Self::Repo(Level::Write),
            "REPO_ADMIN" => Self::Repo(Level::Admin),
            "STATUS_READ" => Self::StatusRead,
            other => Self::Global(GlobalRole::parse(other).ok_or_else(|| PermissionParseError(s.to_owned()))?),
        })
    }
}

impl fmt::Display for Permission {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Project(l) => write!(f, "PROJECT_{}", l.as_str()),
            Self::Repo(l) => write!(f, "REPO_{}", l.as_str()),
            Self::Global(r) => f.write_str(r.as_str()),
            Self::StatusRead => f.write_str("STATUS_READ"),
        }
    }
}

impl serde::Serialize for Permission {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// Documented as the names Bitbucket uses.
#[cfg(feature = "openapi")]
impl schemars::JsonSchema for Permission {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Permission".into()
    }
    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({ "type": "string", "enum": [
            "PROJECT_READ", "PROJECT_WRITE", "PROJECT_ADMIN", "REPO_READ", "REPO_WRITE", "REPO_ADMIN",
            "LICENSED_USER", "ADMIN", "SYS_ADMIN", "STATUS_READ"
        ] })
    }
}

/// What the token used limits its holder to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TokenScope {
    /// Highest level on projects and repositories; `None` means the user's full rights.
    pub cap: Option<Level>,
    /// The token may read mirroring status and nothing else (it holds only `STATUS_READ`).
    pub status_only: bool,
}

impl TokenScope {
    /// The scope of a token with the given permission list (`None`: unrestricted).
    pub fn from_permissions(perms: Option<&[Permission]>) -> Self {
        let cap = perms.map(|ps| {
            ps.iter()
                .filter_map(|p| match p {
                    Permission::Project(l) | Permission::Repo(l) => Some(*l),
                    Permission::Global(_) | Permission::StatusRead => None,
                })
                .max()
                .unwrap_or(Level::Read)
        });
        let status_only = perms.is_some_and(|ps| !ps.is_empty() && ps.iter().all(|p| *p == Permission::StatusRead));
        Self { cap, status_only }
    }
}

/// An authenticated caller: a user acting through one token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// The user.
    pub user: User,
    /// The token's limits.
    pub scope: TokenScope,
    /// When the token stops working, if it expires.
    pub expires_at: Option<Timestamp>,
    /// The user's own rate-limit settings, if they have any.
    pub rate_limit: Option<crate::admin::UserRateLimit>,
}

impl Principal {
    /// Whether the caller may act as a global administrator (`ADMIN` or above, token not limited below admin).
    pub fn is_admin(&self) -> bool {
        self.user.role >= GlobalRole::Admin && self.scope.cap.is_none_or(|c| c == Level::Admin)
    }

    /// Whether the caller may act as a system administrator.
    pub fn is_sys_admin(&self) -> bool {
        self.user.role == GlobalRole::SysAdmin && self.scope.cap.is_none_or(|c| c == Level::Admin)
    }

    fn cap(&self, level: Level) -> Level {
        self.scope.cap.map_or(level, |c| c.min(level))
    }

    /// The caller's level on a repository, from the grants that apply to it.
    pub fn repo_level(&self, project_grant: Option<Level>, repo_grant: Option<Level>, public: bool) -> Option<Level> {
        let granted =
            if self.user.role >= GlobalRole::Admin { Some(Level::Admin) } else { project_grant.max(repo_grant) };
        let capped = granted.map(|l| self.cap(l));
        if public { capped.max(Some(Level::Read)) } else { capped }
    }

    /// The caller's level on a project itself (not counting repository grants inside it).
    pub fn project_level(&self, project_grant: Option<Level>, public: bool) -> Option<Level> {
        self.repo_level(project_grant, None, public)
    }
}

/// The level an anonymous caller has: read on public resources, nothing else.
pub fn anonymous_level(public: bool) -> Option<Level> {
    public.then_some(Level::Read)
}

#[cfg(test)]
mod tests {
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    use super::*;

    fn principal(role: GlobalRole, perms: Option<&[Permission]>) -> Principal {
        Principal {
            rate_limit: None,
            expires_at: None,
            user: User {
                id: 1,
                name: "u".into(),
                slug: "u".into(),
                display_name: "U".into(),
                email: None,
                role,
                created_at: Timestamp(0),
            },
            scope: TokenScope::from_permissions(perms),
        }
    }

    #[test]
    fn permission_names_round_trip() {
        for name in [
            "PROJECT_READ",
            "PROJECT_WRITE",
            "PROJECT_ADMIN",
            "REPO_READ",
            "REPO_WRITE",
            "REPO_ADMIN",
            "ADMIN",
            "SYS_ADMIN",
            "LICENSED_USER",
            "STATUS_READ",
        ] {
            assert_eq!(name.parse::<Permission>().expect(name).to_string(), name);
        }
        assert!("REPO_OWNER".parse::<Permission>().is_err());
    }

    #[test]
    fn grants_combine_and_public_gives_read() {
        let p = principal(GlobalRole::User, None);
        assert_eq!(p.repo_level(None, None, false), None);
        assert_eq!(p.repo_level(None, None, true), Some(Level::Read));
        assert_eq!(p.repo_level(Some(Level::Write), Some(Level::Read), false), Some(Level::Write));
        assert_eq!(p.repo_level(Some(Level::Read), Some(Level::Admin), true), Some(Level::Admin));
        assert_eq!(principal(GlobalRole::Admin, None).repo_level(None, None, false), Some(Level::Admin));
        assert_eq!(anonymous_level(true), Some(Level::Read));
        assert_eq!(anonymous_level(false), None);
    }

    #[test]
    fn token_scope_caps_rights() {
        let read_only = principal(GlobalRole::SysAdmin, Some(&[Permission::Repo(Level::Read)]));
        assert_eq!(read_only.repo_level(None, None, false), Some(Level::Read));
        assert!(!read_only.is_admin());
        assert!(!read_only.is_sys_admin());
        let full = principal(GlobalRole::SysAdmin, None);
        assert!(full.is_admin() && full.is_sys_admin());
        let admin_token = principal(GlobalRole::Admin, Some(&[Permission::Project(Level::Admin)]));
        assert!(admin_token.is_admin());
        assert!(!admin_token.is_sys_admin());
        assert!(!admin_token.scope.status_only);
        let status = principal(GlobalRole::SysAdmin, Some(&[Permission::StatusRead]));
        assert!(status.scope.status_only && !status.is_admin());
        assert_eq!(status.repo_level(None, None, false), Some(Level::Read));
        let mixed = principal(GlobalRole::User, Some(&[Permission::StatusRead, Permission::Repo(Level::Write)]));
        assert!(!mixed.scope.status_only);
    }
}
