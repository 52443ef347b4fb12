//! Projects and repositories, in Bitbucket's shapes; a repository's numeric id is also its
//! GitLab project id.

use serde::Serialize;

use crate::api::{FieldError, Fields, FromFields};

use crate::time::Timestamp;
use crate::urls::StoredUrl;

/// A project: a namespace of repositories with a short upper-case key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Project {
    /// Numeric id.
    pub id: i64,
    /// Key, upper case, unique.
    pub key: String,
    /// Name, unique.
    pub name: String,
    /// Description, if any.
    pub description: Option<String>,
    /// Whether anyone may read it.
    pub public: bool,
    /// The user whose personal project (`~SLUG`) it is; `None` for a normal project.
    pub owner_id: Option<i64>,
    /// Creation time.
    pub created_at: Timestamp,
}

impl Project {
    /// Whether this is a user's personal project (`~SLUG`).
    pub fn is_personal(&self) -> bool {
        self.owner_id.is_some()
    }
}

/// The key of a user's personal project: `~` and their slug in upper case, as Bitbucket.
pub fn personal_project_key(user_slug: &str) -> String {
    format!("~{}", user_slug.to_ascii_uppercase())
}

/// A repository registered under a project.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Repository {
    /// Numeric id (also the GitLab project id).
    pub id: i64,
    /// The project it belongs to.
    pub project: Project,
    /// URL-safe name, unique in the project.
    pub slug: String,
    /// Name.
    pub name: String,
    /// Description, if any.
    pub description: Option<String>,
    /// Default branch (short name).
    pub default_branch: String,
    /// Whether anyone may read it.
    pub public: bool,
    /// Whether it may be forked.
    pub forkable: bool,
    /// Archived: read-only, not synced, its mirrors not pushed.
    pub archived: bool,
    /// Where its content is pulled from, if it is mirrored.
    pub upstream: Option<StoredUrl>,
    /// Stable opaque id shared by a repository and its forks.
    pub hierarchy_id: String,
    /// The repository it is a fork of, while that exists.
    pub origin_id: Option<i64>,
    /// For a fork: its own git location, credentials masked.
    pub fork_url: Option<String>,
    /// Where a farm node serves clones of a current copy of it (`http://host:port`), if one does.
    pub clone_base: Option<String>,
    /// Where a farm node serves git over SSH for a current copy of it (`ssh://git@host:port`), if one does.
    pub ssh_base: Option<String>,
    /// Creation time.
    pub created_at: Timestamp,
}

impl Repository {
    /// Its read-only clone URL on the farm node that serves a current copy, if one does.
    pub fn clone_url(&self) -> Option<String> {
        let base = self.clone_base.as_deref()?;
        Some(format!("{}/scm/{}/{}.git", base.trim_end_matches('/'), self.project.key.to_ascii_lowercase(), self.slug))
    }

    /// Its read-only SSH clone URL on a farm node that serves a current copy over SSH, if one does.
    pub fn ssh_clone_url(&self) -> Option<String> {
        let base = self.ssh_base.as_deref()?;
        Some(format!("{}/{}/{}.git", base.trim_end_matches('/'), self.project.key.to_ascii_lowercase(), self.slug))
    }

    /// Its clone links: `http` and, where a node serves SSH, `ssh`.
    pub fn clone_links(&self) -> Vec<Link> {
        let http = self.clone_url().map(|href| Link { href, name: Some("http".into()) });
        let ssh = self.ssh_clone_url().map(|href| Link { href, name: Some("ssh".into()) });
        http.into_iter().chain(ssh).collect()
    }
}

/// A validated project to create.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewProject {
    /// Key, upper case.
    pub key: String,
    /// Name.
    pub name: String,
    /// Description.
    pub description: Option<String>,
    /// Public or not.
    pub public: bool,
    /// Creation time.
    pub created_at: Timestamp,
}

/// A validated repository to create.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewRepository {
    /// Owning project id.
    pub project_id: i64,
    /// Slug derived from the name.
    pub slug: String,
    /// Name.
    pub name: String,
    /// Description.
    pub description: Option<String>,
    /// Default branch.
    pub default_branch: String,
    /// Public or not.
    pub public: bool,
    /// Forkable or not.
    pub forkable: bool,
    /// Upstream URL (credentials sealed).
    pub upstream: Option<StoredUrl>,
    /// Hierarchy id (a fork shares its origin's).
    pub hierarchy_id: String,
    /// The origin, for a fork.
    pub origin_id: Option<i64>,
    /// Creation time.
    pub created_at: Timestamp,
}

/// What `POST /rest/api/latest/projects` sends.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(schemars::JsonSchema), schemars(rename_all = "camelCase"))]
pub struct ProjectParams {
    /// The key (required; upper-cased).
    pub key: Option<String>,
    /// The name (required).
    pub name: Option<String>,
    /// A description.
    pub description: Option<String>,
    /// Readable by anyone.
    pub public: Option<bool>,
}

impl FromFields for ProjectParams {
    fn from_fields(fields: &Fields) -> Result<Self, FieldError> {
        Ok(Self {
            key: fields.string("key")?,
            name: fields.string("name")?,
            description: fields.string("description")?,
            public: fields.boolean("public")?,
        })
    }
}

/// What `POST /rest/api/latest/projects/{key}/repos` sends.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(schemars::JsonSchema), schemars(rename_all = "camelCase"))]
pub struct RepositoryParams {
    /// The name (required; the slug follows it).
    pub name: Option<String>,
    /// Only `git`.
    pub scm_id: Option<String>,
    /// The default branch (`main` if absent).
    pub default_branch: Option<String>,
    /// A description.
    pub description: Option<String>,
    /// Readable by anyone.
    pub public: Option<bool>,
    /// May be forked (default true).
    pub forkable: Option<bool>,
    /// Where its content comes from (ours: it is then a pull mirror).
    pub upstream_url: Option<String>,
}

impl FromFields for RepositoryParams {
    fn from_fields(fields: &Fields) -> Result<Self, FieldError> {
        Ok(Self {
            name: fields.string("name")?,
            scm_id: fields.string("scmId")?,
            default_branch: fields.string("defaultBranch")?,
            description: fields.string("description")?,
            public: fields.boolean("public")?,
            forkable: fields.boolean("forkable")?,
            upstream_url: fields.string("upstreamUrl")?,
        })
    }
}

/// Why a project or repository field was refused; the field is named by the caller.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RegistryError {
    /// A project key that is not a letter followed by letters, digits or underscores (≤ 128).
    #[error(
        "Project keys must start with a letter and may only consist of ASCII letters, numbers and underscores (A-Z, a-z, 0-9, _), and be at most 128 characters."
    )]
    ProjectKey,
    /// A required name is missing or too long.
    #[error("Names must be between 1 and 128 characters.")]
    NameLength,
    /// A repository name with characters a slug can't carry.
    #[error(
        "Repository names must start with a letter or number and may only contain letters, numbers, spaces, '-', '_' and '.'."
    )]
    RepositoryName,
    /// A branch name git would refuse.
    #[error("{0:?} is not a valid branch name.")]
    BranchName(String),
}

/// Checks and normalises (upper-cases) a project key.
pub fn validate_project_key(key: &str) -> Result<String, RegistryError> {
    let mut chars = key.chars();
    let ok = key.len() <= 128
        && chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_');
    if ok { Ok(key.to_ascii_uppercase()) } else { Err(RegistryError::ProjectKey) }
}

/// Checks a display name's length.
pub fn validate_name(name: &str) -> Result<String, RegistryError> {
    let name = name.trim();
    if name.is_empty() || name.chars().count() > 128 {
        return Err(RegistryError::NameLength);
    }
    Ok(name.to_owned())
}

/// Checks a repository name and derives its slug: lower case, spaces become dashes.
pub fn repository_slug(name: &str) -> Result<String, RegistryError> {
    let name = validate_name(name)?;
    let ok = name.chars().next().is_some_and(|c| c.is_ascii_alphanumeric())
        && name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, ' ' | '-' | '_' | '.'));
    if !ok {
        return Err(RegistryError::RepositoryName);
    }
    Ok(name.to_ascii_lowercase().split(' ').filter(|s| !s.is_empty()).collect::<Vec<_>>().join("-"))
}

/// Checks a branch name with git's `check-ref-format` rules (the ones a user can break).
pub fn validate_branch_name(name: &str) -> Result<String, RegistryError> {
    let name = name.strip_prefix("refs/heads/").unwrap_or(name);
    let bad = name.is_empty()
        || name.len() > 255
        || name.starts_with('/')
        || name.ends_with('/')
        || name.ends_with('.')
        || name.ends_with(".lock")
        || name.starts_with('-')
        || name.contains("..")
        || name.contains("//")
        || name.contains("@{")
        || name == "@"
        || name.split('/').any(|part| part.starts_with('.'))
        || name.chars().any(|c| c.is_ascii_control() || matches!(c, ' ' | '~' | '^' | ':' | '?' | '*' | '[' | '\\'));
    if bad { Err(RegistryError::BranchName(name.to_owned())) } else { Ok(name.to_owned()) }
}

/// A Bitbucket link (`{"href": …}`).
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(schemars::JsonSchema))]
pub struct Link {
    /// Target.
    pub href: String,
    /// Name, for clone links (`http`, `ssh`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

/// Bitbucket's `links` object.
#[derive(Debug, Clone, Serialize, PartialEq, Eq, Default)]
#[cfg_attr(feature = "openapi", derive(schemars::JsonSchema))]
pub struct Links {
    /// Clone URLs (repositories only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub clone: Option<Vec<Link>>,
    /// The resource in the UI/API.
    #[serde(rename = "self")]
    pub self_: Vec<Link>,
}

/// Bitbucket's project shape.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct ProjectDto {
    /// Key.
    pub key: String,
    /// Id.
    pub id: i64,
    /// Name.
    pub name: String,
    /// Description (omitted when empty, as Bitbucket).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Public.
    pub public: bool,
    /// `NORMAL`, or `PERSONAL` for a user's own project (`~SLUG`).
    #[serde(rename = "type")]
    pub kind: &'static str,
    /// A personal project's owner.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub owner: Option<ProjectOwner>,
    /// Links.
    pub links: Links,
}

/// The owner of a personal project, as its key names them.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(schemars::JsonSchema))]
pub struct ProjectOwner {
    /// User id.
    pub id: i64,
    /// User slug.
    pub slug: String,
}

impl ProjectDto {
    /// The wire form of a project, with links under `base` (scheme://host).
    pub fn new(p: &Project, base: &str) -> Self {
        Self {
            key: p.key.clone(),
            id: p.id,
            name: p.name.clone(),
            description: p.description.clone(),
            public: p.public,
            kind: if p.is_personal() { "PERSONAL" } else { "NORMAL" },
            owner: p.owner_id.map(|id| ProjectOwner { id, slug: p.key.trim_start_matches('~').to_ascii_lowercase() }),
            links: Links { clone: None, self_: vec![Link { href: format!("{base}/projects/{}", p.key), name: None }] },
        }
    }
}

/// Bitbucket's repository shape, plus `upstreamUrl` and `defaultBranch`.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct RepositoryDto {
    /// Slug.
    pub slug: String,
    /// Id.
    pub id: i64,
    /// Name.
    pub name: String,
    /// Description.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Hierarchy id.
    pub hierarchy_id: String,
    /// Always `git`.
    pub scm_id: &'static str,
    /// Always `AVAILABLE`.
    pub state: &'static str,
    /// Always `Available`.
    pub status_message: &'static str,
    /// Forkable.
    pub forkable: bool,
    /// Default branch.
    pub default_branch: String,
    /// Upstream URL, credentials masked; `null` when the repository is not mirrored.
    pub upstream_url: Option<String>,
    /// The project.
    pub project: ProjectDto,
    /// Public.
    pub public: bool,
    /// Archived: read-only, not synced, its mirrors not pushed.
    pub archived: bool,
    /// For a fork: the repository it was forked from, in full.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub origin: Option<Box<RepositoryDto>>,
    /// For a fork: its own git location, credentials masked (ours).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// Links.
    pub links: Links,
}

impl RepositoryDto {
    /// The wire form of a repository, with links under `base`.
    pub fn new(r: &Repository, base: &str) -> Self {
        Self {
            slug: r.slug.clone(),
            id: r.id,
            name: r.name.clone(),
            description: r.description.clone(),
            hierarchy_id: r.hierarchy_id.clone(),
            scm_id: "git",
            state: "AVAILABLE",
            status_message: "Available",
            forkable: r.forkable,
            default_branch: r.default_branch.clone(),
            upstream_url: r.upstream.as_ref().map(|u| u.masked.clone()),
            project: ProjectDto::new(&r.project, base),
            public: r.public,
            archived: r.archived,
            origin: None,
            url: r.fork_url.clone(),
            links: Links {
                clone: Some(r.clone_links()),
                self_: vec![Link {
                    href: format!("{base}/projects/{}/repos/{}/browse", r.project.key, r.slug),
                    name: None,
                }],
            },
        }
    }

    /// The same, carrying its origin (a fork).
    #[must_use]
    pub fn with_origin(mut self, origin: Option<&Repository>, base: &str) -> Self {
        self.origin = origin.map(|o| Box::new(Self::new(o, base)));
        self
    }
}

#[cfg(test)]
mod tests {
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    use super::*;

    #[test]
    fn keys_are_checked_and_upper_cased() {
        assert_eq!(validate_project_key("ab_1"), Ok("AB_1".into()));
        for bad in ["", "1AB", "A-B", "~USER", &"A".repeat(129)] {
            assert_eq!(validate_project_key(bad), Err(RegistryError::ProjectKey), "{bad}");
        }
    }

    #[test]
    fn slugs_follow_names() {
        assert_eq!(repository_slug("My Cool  Repo.v2"), Ok("my-cool-repo.v2".into()));
        assert_eq!(repository_slug("  "), Err(RegistryError::NameLength));
        assert_eq!(repository_slug("-dash"), Err(RegistryError::RepositoryName));
        assert_eq!(repository_slug("a/b"), Err(RegistryError::RepositoryName));
    }

    #[test]
    fn branch_names_follow_git() {
        assert_eq!(validate_branch_name("refs/heads/release/1.0"), Ok("release/1.0".into()));
        for bad in ["", "a..b", "a b", "x.lock", "/a", "a/", ".hidden", "a/.b", "-x", "a~1", "@", "a@{1}"] {
            assert!(validate_branch_name(bad).is_err(), "{bad}");
        }
    }
}
