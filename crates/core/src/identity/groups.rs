//! Groups, Bitbucket's: named sets of users. A group's project and repository grants count for
//! every member in every access check (the store reads them with the user's own grants, in the
//! same statement), and Bitbucket's users filters (`group`, numbered `permission.N`) select by them.

use serde::Serialize;

use super::{GlobalRole, Level, Permission};

/// Longest group name accepted.
pub const MAX_GROUP_NAME_LEN: usize = 255;

/// A group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Group {
    /// Numeric id.
    pub id: i64,
    /// Name, unique (case-insensitive).
    pub name: String,
}

/// Bitbucket's `RestDetailedGroup`: a group as administrators list it.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(schemars::JsonSchema))]
pub struct GroupDto {
    /// Name.
    pub name: String,
    /// Whether it may be deleted (always: groups live in the internal directory).
    pub deletable: bool,
}

impl From<&Group> for GroupDto {
    fn from(g: &Group) -> Self {
        Self { name: g.name.clone(), deletable: true }
    }
}

/// `{name}`: a group inside a permission entry.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(schemars::JsonSchema))]
pub struct GroupName {
    /// Name.
    pub name: String,
}

/// Bitbucket's `RestPermittedGroup`: a group and what it may do on a project or repository.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(schemars::JsonSchema))]
pub struct PermittedGroupDto {
    /// The group.
    pub group: GroupName,
    /// `PROJECT_READ` … `REPO_ADMIN`.
    pub permission: Permission,
}

/// Why a group name was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GroupNameError {
    /// Empty or only spaces.
    #[error("A group name is required.")]
    Empty,
    /// Longer than [`MAX_GROUP_NAME_LEN`] characters.
    #[error("Group names must be at most 255 characters.")]
    TooLong,
    /// Holds a control character.
    #[error("Group names may not contain control characters.")]
    Control,
}

/// Checks a new group's name; returns it trimmed.
pub fn validate_group_name(name: &str) -> Result<String, GroupNameError> {
    let name = name.trim();
    if name.is_empty() {
        Err(GroupNameError::Empty)
    } else if name.chars().count() > MAX_GROUP_NAME_LEN {
        Err(GroupNameError::TooLong)
    } else if name.chars().any(char::is_control) {
        Err(GroupNameError::Control)
    } else {
        Ok(name.to_owned())
    }
}

/// One `permission.N` filter of `GET /users`: users who hold at least this permission.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PermissionFilter {
    /// A global role (or above).
    Global(GlobalRole),
    /// A level (or above) on the project with this key.
    Project {
        /// Project key.
        key: String,
        /// Least level.
        level: Level,
    },
    /// A level (or above) on this repository, through any grant.
    Repository {
        /// Project key.
        key: String,
        /// Repository slug.
        slug: String,
        /// Least level.
        level: Level,
    },
}

/// The users filter of `GET /users` and `GET /admin/users`: all conditions must hold.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UserFilter {
    /// A part of the name, display name or e-mail address.
    pub text: Option<String>,
    /// Members of this group only.
    pub group: Option<String>,
    /// Each permission the user must hold.
    pub permissions: Vec<PermissionFilter>,
}

/// Why a users filter was refused; `context` names the query parameter.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct UserFilterError {
    /// The query parameter at fault.
    pub context: String,
    /// What is wrong with it.
    pub message: String,
}

impl UserFilter {
    /// Reads Bitbucket's users filter from query pairs: `filter`, `group`, and `permission` or
    /// numbered `permission.N`, each with `.projectKey` (project and repository permissions) and
    /// `.repositorySlug` (repository permissions).
    pub fn from_query(pairs: &[(String, String)]) -> Result<Self, UserFilterError> {
        let get = |name: &str| pairs.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str());
        let mut filter = Self {
            text: get("filter").filter(|t| !t.is_empty()).map(str::to_owned),
            group: get("group").filter(|g| !g.is_empty()).map(str::to_owned),
            permissions: Vec::new(),
        };
        // The roots: `permission` and `permission.N` (N a number), in the order given.
        let roots = pairs.iter().filter(|(k, _)| {
            k == "permission" || k.strip_prefix("permission.").is_some_and(|n| n.chars().all(|c| c.is_ascii_digit()))
        });
        for (root, value) in roots {
            filter.permissions.push(Self::one_permission(root, value, &get)?);
        }
        // A resource parameter must refer to a root that was given.
        if let Some((orphan, _)) = pairs.iter().find(|(k, _)| {
            (k.ends_with(".projectKey") || k.ends_with(".repositorySlug"))
                && k.starts_with("permission")
                && get(k.rsplit_once('.').map_or("", |(root, _)| root)).is_none()
        }) {
            return Err(error(orphan, "refers to a permission filter that was not given"));
        }
        Ok(filter)
    }

    fn one_permission<'a>(
        root: &str,
        value: &str,
        get: &impl Fn(&str) -> Option<&'a str>,
    ) -> Result<PermissionFilter, UserFilterError> {
        let permission: Permission = value.parse().map_err(|e: super::PermissionParseError| error(root, e))?;
        let key_param = format!("{root}.projectKey");
        let slug_param = format!("{root}.repositorySlug");
        let key = get(&key_param).filter(|k| !k.is_empty());
        let slug = get(&slug_param).filter(|s| !s.is_empty());
        let needs = |param: &str, what: &str| error(param, format!("{permission} filters need {what}"));
        Ok(match permission {
            Permission::Global(role) => {
                if key.is_some() || slug.is_some() {
                    return Err(error(root, format!("{permission} is global: it takes no project or repository")));
                }
                PermissionFilter::Global(role)
            }
            Permission::Project(level) => {
                if slug.is_some() {
                    return Err(error(&slug_param, "project permission filters take no repository"));
                }
                let key = key.ok_or_else(|| needs(&key_param, "a project key"))?;
                PermissionFilter::Project { key: key.to_owned(), level }
            }
            Permission::Repo(level) => PermissionFilter::Repository {
                key: key.ok_or_else(|| needs(&key_param, "a project key"))?.to_owned(),
                slug: slug.ok_or_else(|| needs(&slug_param, "a repository slug"))?.to_ascii_lowercase(),
                level,
            },
            Permission::StatusRead => return Err(error(root, "STATUS_READ is a token permission, not a user's")),
        })
    }
}

fn error(context: &str, message: impl ToString) -> UserFilterError {
    UserFilterError { context: context.to_owned(), message: message.to_string() }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()
    }

    #[test]
    fn numbered_filters_read_with_their_resources_in_order() {
        let filter = UserFilter::from_query(&pairs(&[
            ("filter", "ali"),
            ("permission.1", "REPO_WRITE"),
            ("permission.1.projectKey", "P"),
            ("permission.1.repositorySlug", "App"),
            ("permission.2", "PROJECT_READ"),
            ("permission.2.projectKey", "Q"),
            ("permission", "LICENSED_USER"),
            ("group", "devs"),
        ]))
        .expect("valid");
        assert_eq!(filter.text.as_deref(), Some("ali"));
        assert_eq!(filter.group.as_deref(), Some("devs"));
        assert_eq!(
            filter.permissions,
            [
                PermissionFilter::Repository { key: "P".into(), slug: "app".into(), level: Level::Write },
                PermissionFilter::Project { key: "Q".into(), level: Level::Read },
                PermissionFilter::Global(GlobalRole::User),
            ]
        );
    }

    #[test]
    fn filters_missing_their_resource_or_naming_no_root_are_refused_with_the_parameter() {
        let refused = |list: &[(&str, &str)]| UserFilter::from_query(&pairs(list)).expect_err("refused").context;
        assert_eq!(refused(&[("permission.1", "PROJECT_ADMIN")]), "permission.1.projectKey");
        assert_eq!(
            refused(&[("permission.3", "REPO_READ"), ("permission.3.projectKey", "P")]),
            "permission.3.repositorySlug"
        );
        assert_eq!(refused(&[("permission.2", "ADMIN"), ("permission.2.projectKey", "P")]), "permission.2");
        assert_eq!(refused(&[("permission.1", "REPO_MAYBE")]), "permission.1");
        assert_eq!(refused(&[("permission.4.projectKey", "P")]), "permission.4.projectKey");
        assert_eq!(refused(&[("permission", "STATUS_READ")]), "permission");
    }

    #[test]
    fn group_names_are_trimmed_and_bounded() {
        assert_eq!(validate_group_name("  devs "), Ok("devs".into()));
        assert_eq!(validate_group_name(" "), Err(GroupNameError::Empty));
        assert_eq!(validate_group_name(&"g".repeat(256)), Err(GroupNameError::TooLong));
        assert_eq!(validate_group_name("a\u{7}b"), Err(GroupNameError::Control));
    }
}
