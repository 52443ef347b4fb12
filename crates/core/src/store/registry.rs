//! Projects and repositories, with visibility and paging done in SQL.

use super::identity::{GRANTS, page_limit, page_offset, read_grants};
use super::port::{Database, Statement, Value, row, sql};
use super::{Grants, Store, StoreResult, corrupt, nth, split_page};
use crate::registry::{NewProject, NewRepository, Project, Repository};
use crate::time::Timestamp;
use crate::urls::StoredUrl;

row! {
    struct ProjectRow {
        id: i64,
        key: String,
        name: String,
        description: Option<String>,
        public: i64,
        created_at: i64,
        owner_id: Option<i64>,
    }
}

impl From<ProjectRow> for Project {
    fn from(r: ProjectRow) -> Self {
        Self {
            id: r.id,
            key: r.key,
            name: r.name,
            description: r.description,
            public: r.public != 0,
            owner_id: r.owner_id,
            created_at: Timestamp(r.created_at),
        }
    }
}

/// A repository with its project's columns (`p_…`).
/// A repository's columns with its project's (`p_…`), for [`REPO_SELECT`] and selects that add
/// columns of their own (farm repositories).
macro_rules! repo_columns {
    () => {
        "SELECT r.id, r.slug, r.name, r.description, r.default_branch, r.public, \
     r.forkable, r.archived, r.upstream_url, r.upstream_url_masked, r.upstream_userinfo_sealed, r.hierarchy_id, r.created_at, \
     r.origin_id, (SELECT f.url_masked FROM fork_syncs f WHERE f.repository_id = r.id) AS fork_url_masked, \
     (SELECT n.clone_url FROM node_copies c JOIN farm_nodes n ON n.id = c.node_id \
       JOIN repository_hashes h ON h.repository_id = c.repository_id AND h.content = c.content \
       WHERE c.repository_id = r.id AND n.clone_url IS NOT NULL ORDER BY n.last_seen DESC LIMIT 1) AS clone_base, \
     (SELECT n.ssh_url FROM node_copies c JOIN farm_nodes n ON n.id = c.node_id \
       JOIN repository_hashes h ON h.repository_id = c.repository_id AND h.content = c.content \
       WHERE c.repository_id = r.id AND n.ssh_url IS NOT NULL ORDER BY n.last_seen DESC LIMIT 1) AS ssh_base, \
     p.id AS p_id, p.key AS p_key, p.name AS p_name, p.description AS p_description, p.public AS p_public, \
     p.created_at AS p_created_at, p.owner_id AS p_owner_id"
    };
}
pub(super) use repo_columns;

/// The join every repository read starts from.
pub(super) const REPO_FROM: &str = "FROM repositories r JOIN projects p ON p.id = r.project_id";

/// A repository with its project's columns (`p_…`).
pub(super) const REPO_SELECT: &str =
    concat!(repo_columns!(), " FROM repositories r JOIN projects p ON p.id = r.project_id");

row! {
    pub(super) struct RepoRow {
        id: i64,
        slug: String,
        name: String,
        description: Option<String>,
        default_branch: String,
        public: i64,
        forkable: i64,
        archived: i64,
        upstream_url: Option<String>,
        upstream_url_masked: Option<String>,
        upstream_userinfo_sealed: Option<String>,
        hierarchy_id: String,
        created_at: i64,
        origin_id: Option<i64>,
        fork_url_masked: Option<String>,
        clone_base: Option<String>,
        ssh_base: Option<String>,
        p_id: i64,
        p_key: String,
        p_name: String,
        p_description: Option<String>,
        p_public: i64,
        p_created_at: i64,
        p_owner_id: Option<i64>,
    }
}

impl From<RepoRow> for Repository {
    fn from(r: RepoRow) -> Self {
        let upstream = r.upstream_url.map(|plain| StoredUrl {
            masked: r.upstream_url_masked.unwrap_or_else(|| plain.clone()),
            plain,
            sealed_userinfo: r.upstream_userinfo_sealed,
        });
        Self {
            id: r.id,
            project: Project {
                id: r.p_id,
                key: r.p_key,
                name: r.p_name,
                description: r.p_description,
                public: r.p_public != 0,
                owner_id: r.p_owner_id,
                created_at: Timestamp(r.p_created_at),
            },
            slug: r.slug,
            name: r.name,
            description: r.description,
            default_branch: r.default_branch,
            public: r.public != 0,
            forkable: r.forkable != 0,
            archived: r.archived != 0,
            upstream,
            hierarchy_id: r.hierarchy_id,
            origin_id: r.origin_id,
            fork_url: r.fork_url_masked,
            clone_base: r.clone_base,
            ssh_base: r.ssh_base,
            created_at: Timestamp(r.created_at),
        }
    }
}

/// How a repository is named in a path: by id, or by project key and slug.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RepositoryKey<'a> {
    /// The numeric id.
    Id(i64),
    /// Project key and repository slug (both case-insensitive).
    Slug(&'a str, &'a str),
}

impl RepositoryKey<'_> {
    /// `?1`, `?2`, `?3`: the id, or the project key and slug (the others `NULL`).
    pub(super) fn params(self) -> [Value; 3] {
        match self {
            Self::Id(id) => [Value::Integer(id), Value::Null, Value::Null],
            Self::Slug(key, slug) => [Value::Null, key.into(), slug.to_ascii_lowercase().into()],
        }
    }

    /// SQL for the repository's id, from [`Self::params`] bound as `?1`–`?3`.
    pub(super) fn id_expression(self) -> &'static str {
        "(SELECT r.id FROM repositories r JOIN projects p ON p.id = r.project_id          WHERE r.id = ?1 OR (p.key = ?2 AND r.slug = ?3))"
    }

    /// The statement that reads the repository.
    pub(super) fn select(self) -> Statement {
        Statement::new(format!("{REPO_SELECT} WHERE r.id = ?1 OR (p.key = ?2 AND r.slug = ?3)"), self.params().into())
    }
}

/// Who is listing: decides what is visible, in SQL.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Viewer {
    /// Nobody signed in: public repositories and projects only.
    Anonymous,
    /// A signed-in user without a global admin role: public ones and those they hold a grant on.
    User(i64),
    /// A global ADMIN or SYS_ADMIN: everything.
    Admin,
}

impl Viewer {
    /// `?1` for the visibility clauses below.
    pub(super) fn param(self) -> Value {
        match self {
            Self::Anonymous => Value::Integer(0),
            Self::User(id) => Value::Integer(id),
            Self::Admin => Value::Integer(-1),
        }
    }
}

/// A repository `r` (of project `p`) the viewer `?1` may see (`-1`: an admin; `0`: anonymous).
pub(super) const REPO_VISIBLE: &str = "(?1 = -1 OR r.public = 1 OR p.public = 1 \
     OR EXISTS (SELECT 1 FROM effective_repository_grants g WHERE g.repository_id = r.id AND g.user_id = ?1) \
     OR EXISTS (SELECT 1 FROM effective_project_grants g WHERE g.project_id = p.id AND g.user_id = ?1))";

/// A project `p` the viewer `?1` may see: itself, or any repository in it.
const PROJECT_VISIBLE: &str = "(?1 = -1 OR p.public = 1 \
     OR EXISTS (SELECT 1 FROM effective_project_grants g WHERE g.project_id = p.id AND g.user_id = ?1) \
     OR EXISTS (SELECT 1 FROM repositories r WHERE r.project_id = p.id AND (r.public = 1 \
       OR EXISTS (SELECT 1 FROM effective_repository_grants g WHERE g.repository_id = r.id AND g.user_id = ?1))))";

/// Filters of a repository list.
#[derive(Debug, Clone, Default)]
pub struct RepositoryFilter {
    /// Only this project (by id).
    pub project_id: Option<i64>,
    /// Only projects with this key (case-insensitive).
    pub project_key: Option<String>,
    /// Only names containing this (case-insensitive).
    pub name: Option<String>,
}

impl<D: Database> Store<D> {
    /// Adds a project; `Conflict` if the key or name is taken.
    pub async fn insert_project(&self, p: &NewProject) -> StoreResult<Project> {
        let row = self
            .row::<ProjectRow>(sql!(
                "INSERT INTO projects (key, name, description, public, created_at) VALUES (?1, ?2, ?3, ?4, ?5) RETURNING *",
                &p.key,
                &p.name,
                p.description.as_deref(),
                p.public,
                p.created_at.millis()
            ))
            .await?;
        Ok(row.ok_or_else(|| corrupt("project"))?.into())
    }

    /// The project with this key (case-insensitive), the caller's grants (`user`), and whether
    /// the caller sees a repository in it: what deciding access to a project needs, in one round trip.
    pub async fn project_access(
        &self,
        key: &str,
        viewer: Viewer,
        user: Option<i64>,
    ) -> StoreResult<(Option<Project>, Grants, bool)> {
        let mut out = self
            .batch(vec![
                sql!("SELECT * FROM projects WHERE key = ?1", key),
                sql!(GRANTS, user),
                sql!(
                    format!("SELECT COUNT(*) AS n FROM projects p WHERE p.key = ?2 AND {PROJECT_VISIBLE}"),
                    viewer.param(),
                    key
                ),
            ])
            .await?;
        let project = nth(&mut out, 0)?.first::<ProjectRow>()?.map(Project::from);
        let grants = read_grants(nth(&mut out, 1)?)?;
        let visible = nth(&mut out, 2)?.first::<CountRow>()?.is_some_and(|c| c.n > 0);
        Ok((project, grants, visible))
    }

    /// One page of the projects the viewer may see, by key, and whether more follow.
    pub async fn list_projects(&self, viewer: Viewer, offset: u64, limit: u64) -> StoreResult<(Vec<Project>, bool)> {
        let rows = self
            .rows::<ProjectRow>(sql!(
                format!(
                    "SELECT p.* FROM projects p WHERE p.owner_id IS NULL AND {PROJECT_VISIBLE} \
                     ORDER BY p.key LIMIT ?2 OFFSET ?3"
                ),
                viewer.param(),
                page_limit(limit),
                page_offset(offset)
            ))
            .await?;
        Ok(split_page(rows.into_iter().map(Project::from).collect(), limit))
    }

    /// Removes a project if it holds no repositories; false (and nothing removed) if it does.
    pub async fn delete_empty_project(&self, id: i64) -> StoreResult<bool> {
        let out = self
            .one(sql!(
                "DELETE FROM projects WHERE id = ?1 AND NOT EXISTS (SELECT 1 FROM repositories WHERE project_id = ?1)",
                id
            ))
            .await?;
        Ok(out.changes > 0)
    }

    /// Adds a repository; `Conflict` if the slug is taken in its project.
    pub async fn insert_repository(&self, r: &NewRepository) -> StoreResult<Repository> {
        self.insert_repository_with(r, Vec::new()).await
    }

    /// Adds a repository and runs `then` (which may name it as `last_insert_rowid()`, so it
    /// must not insert before it does) in the same batch, and reads it back.
    pub(super) async fn insert_repository_with(
        &self,
        r: &NewRepository,
        then: Vec<Statement>,
    ) -> StoreResult<Repository> {
        let up = r.upstream.as_ref();
        let mut batch = vec![sql!(
            "INSERT INTO repositories (project_id, slug, name, description, default_branch, public, forkable, \
                     upstream_url, upstream_url_masked, upstream_userinfo_sealed, hierarchy_id, created_at, origin_id) \
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)",
            r.project_id,
            &r.slug,
            &r.name,
            r.description.as_deref(),
            &r.default_branch,
            r.public,
            r.forkable,
            up.map(|u| u.plain.as_str()),
            up.map(|u| u.masked.as_str()),
            up.and_then(|u| u.sealed_userinfo.as_deref()),
            &r.hierarchy_id,
            r.created_at.millis(),
            r.origin_id
        )];
        batch.extend(then);
        // Read back by its key: `then` may have inserted rows of its own.
        batch.push(sql!(format!("{REPO_SELECT} WHERE r.project_id = ?1 AND r.slug = ?2"), r.project_id, &r.slug));
        let last = batch.len() - 1;
        let mut out = self.batch(batch).await?;
        nth(&mut out, last)?.first::<RepoRow>()?.map(Repository::from).ok_or_else(|| corrupt("repository"))
    }

    /// The repository with this id.
    pub async fn repository_by_id(&self, id: i64) -> StoreResult<Option<Repository>> {
        Ok(self.row::<RepoRow>(RepositoryKey::Id(id).select()).await?.map(Repository::from))
    }

    /// The repository so named and the caller's grants (`user`), in one round trip.
    pub async fn repository_access(
        &self,
        key: RepositoryKey<'_>,
        user: Option<i64>,
    ) -> StoreResult<(Option<Repository>, Grants)> {
        let (repo, grants, _) = self.repository_with(key, user, Vec::new()).await?;
        Ok((repo, grants))
    }

    /// The repository so named, the caller's grants and the outcomes of `data`, in one round
    /// trip: what every read that decides access to a repository makes. `data` may name the
    /// repository by [`RepositoryKey::id_expression`] with [`RepositoryKey::params`] bound first.
    pub(super) async fn repository_with(
        &self,
        key: RepositoryKey<'_>,
        user: Option<i64>,
        data: Vec<Statement>,
    ) -> StoreResult<(Option<Repository>, Grants, Vec<super::port::Outcome>)> {
        let mut batch = vec![key.select(), sql!(GRANTS, user)];
        batch.extend(data);
        let mut out = self.batch(batch).await?;
        let repo = nth(&mut out, 0)?.first::<RepoRow>()?.map(Repository::from);
        let grants = read_grants(nth(&mut out, 1)?)?;
        Ok((repo, grants, out.split_off(2)))
    }

    /// One page of the repositories the viewer may see, by project key then slug, and whether
    /// more follow.
    pub async fn list_repositories(
        &self,
        viewer: Viewer,
        filter: &RepositoryFilter,
        offset: u64,
        limit: u64,
    ) -> StoreResult<(Vec<Repository>, bool)> {
        let name = filter.name.as_deref();
        let name_matches = super::limits::contains("r.name", 4);
        let rows = self
            .rows::<RepoRow>(sql!(
                format!(
                    "{REPO_SELECT} WHERE {REPO_VISIBLE} AND (?2 IS NULL OR r.project_id = ?2) \
                     AND (?3 IS NULL OR p.key = ?3) AND (?4 IS NULL OR {name_matches}) \
                     ORDER BY p.key, r.slug LIMIT ?5 OFFSET ?6"
                ),
                viewer.param(),
                filter.project_id,
                filter.project_key.as_deref(),
                name,
                page_limit(limit),
                page_offset(offset)
            ))
            .await?;
        Ok(split_page(rows.into_iter().map(Repository::from).collect(), limit))
    }

    /// Removes a repository with its mirrors, grants and jobs (the schema cascades).
    pub async fn delete_repository(&self, id: i64) -> StoreResult<()> {
        self.one(sql!("DELETE FROM repositories WHERE id = ?1", id)).await.map(drop)
    }
}

row! {
    pub(super) struct CountRow {
        pub(super) n: u64,
    }
}
