//! The core's [`Store`] port over D1. Each method is one statement or one batch (a D1 batch is
//! a transaction), so a failed call writes nothing.

use mirrorfarm_core::identity::{AccessToken, GlobalRole, Level, NewUser, Permission, User};
use mirrorfarm_core::mirrors::{AuthMethod, PullMirror, RemoteMirror, UpdateState, UpdateStatus};
use mirrorfarm_core::nodes::{FarmNode, NewNode};
use mirrorfarm_core::queue::{Job, JobCompletion, JobKind, JobReason, JobState, NewJob};
use mirrorfarm_core::registry::{NewProject, NewRepository, Project, Repository};
use mirrorfarm_core::store::{Grants, RepositoryTriggers, SavedMirror, Store, StoreError, StoreResult};
use mirrorfarm_core::time::Timestamp;
use mirrorfarm_core::urls::StoredUrl;
use serde::Deserialize;
use serde::de::DeserializeOwned;
use wasm_bindgen::JsValue;
use worker::{D1Database, D1PreparedStatement};

/// D1-backed storage.
pub(crate) struct D1Store {
    db: D1Database,
}

fn int(n: i64) -> JsValue {
    // D1 binds JS numbers; ids and epoch-ms times fit in 53 bits.
    JsValue::from_f64(n as f64)
}
fn flag(b: bool) -> JsValue {
    int(i64::from(b))
}
fn text(s: &str) -> JsValue {
    JsValue::from_str(s)
}
fn opt_text(s: Option<&str>) -> JsValue {
    s.map_or(JsValue::NULL, text)
}
fn opt_int(n: Option<i64>) -> JsValue {
    n.map_or(JsValue::NULL, int)
}

/// Maps a D1 failure: uniqueness violations become conflicts the client can act on.
fn failure(e: worker::Error) -> StoreError {
    let detail = e.to_string();
    if !detail.contains("UNIQUE constraint failed") {
        return StoreError::Backend(detail);
    }
    let what = if detail.contains("users.") {
        "A user with that name already exists."
    } else if detail.contains("projects.key") {
        "That project key is already taken."
    } else if detail.contains("projects.name") {
        "That project name is already taken."
    } else if detail.contains("repositories.") {
        "A repository with that name already exists in this project."
    } else {
        "That already exists."
    };
    StoreError::Conflict(what.into())
}

fn level_name(l: Level) -> &'static str {
    match l {
        Level::Read => "READ",
        Level::Write => "WRITE",
        Level::Admin => "ADMIN",
    }
}
fn parse_level(s: &str) -> Option<Level> {
    match s {
        "READ" => Some(Level::Read),
        "WRITE" => Some(Level::Write),
        "ADMIN" => Some(Level::Admin),
        _ => None,
    }
}

fn corrupt(what: &str) -> StoreError {
    StoreError::Backend(format!("unreadable {what} row"))
}

#[derive(Deserialize)]
struct UserRow {
    id: i64,
    name: String,
    slug: String,
    display_name: String,
    email: Option<String>,
    role: String,
    created_at: i64,
}

impl UserRow {
    fn into_user(self) -> StoreResult<User> {
        Ok(User {
            id: self.id,
            name: self.name,
            slug: self.slug,
            display_name: self.display_name,
            email: self.email,
            role: GlobalRole::parse(&self.role).ok_or_else(|| corrupt("user"))?,
            created_at: Timestamp(self.created_at),
        })
    }
}

#[derive(Deserialize)]
struct TokenRow {
    id: String,
    user_id: i64,
    name: String,
    lookup: String,
    hash: String,
    permissions: Option<String>,
    created_at: i64,
    expires_at: Option<i64>,
}

impl TokenRow {
    fn into_token(self) -> StoreResult<AccessToken> {
        let permissions = match self.permissions {
            None => None,
            Some(json) => {
                let names: Vec<String> = serde_json::from_str(&json).map_err(|_| corrupt("token"))?;
                Some(
                    names
                        .iter()
                        .map(|n| n.parse::<Permission>())
                        .collect::<Result<_, _>>()
                        .map_err(|_| corrupt("token"))?,
                )
            }
        };
        Ok(AccessToken {
            id: self.id,
            user_id: self.user_id,
            name: self.name,
            lookup: self.lookup,
            hash: self.hash,
            permissions,
            created_at: Timestamp(self.created_at),
            expires_at: self.expires_at.map(Timestamp),
        })
    }
}

#[derive(Deserialize)]
struct ProjectRow {
    id: i64,
    key: String,
    name: String,
    description: Option<String>,
    public: i64,
    created_at: i64,
}

impl From<ProjectRow> for Project {
    fn from(r: ProjectRow) -> Self {
        Self {
            id: r.id,
            key: r.key,
            name: r.name,
            description: r.description,
            public: r.public != 0,
            created_at: Timestamp(r.created_at),
        }
    }
}

const REPO_SELECT: &str = "SELECT r.id, r.slug, r.name, r.description, r.default_branch, r.public, r.forkable, \
     r.upstream_url, r.upstream_url_masked, r.upstream_userinfo_sealed, r.hierarchy_id, r.created_at, \
     p.id AS p_id, p.key AS p_key, p.name AS p_name, p.description AS p_description, p.public AS p_public, \
     p.created_at AS p_created_at FROM repositories r JOIN projects p ON p.id = r.project_id";

#[derive(Deserialize)]
struct RepoRow {
    id: i64,
    slug: String,
    name: String,
    description: Option<String>,
    default_branch: String,
    public: i64,
    forkable: i64,
    upstream_url: Option<String>,
    upstream_url_masked: Option<String>,
    upstream_userinfo_sealed: Option<String>,
    hierarchy_id: String,
    created_at: i64,
    p_id: i64,
    p_key: String,
    p_name: String,
    p_description: Option<String>,
    p_public: i64,
    p_created_at: i64,
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
                created_at: Timestamp(r.p_created_at),
            },
            slug: r.slug,
            name: r.name,
            description: r.description,
            default_branch: r.default_branch,
            public: r.public != 0,
            forkable: r.forkable != 0,
            upstream,
            hierarchy_id: r.hierarchy_id,
            created_at: Timestamp(r.created_at),
        }
    }
}

#[derive(Deserialize)]
struct MirrorRow {
    id: i64,
    repository_id: i64,
    url: String,
    url_masked: String,
    userinfo_sealed: Option<String>,
    enabled: i64,
    only_protected_branches: i64,
    keep_divergent_refs: i64,
    mirror_branch_regex: Option<String>,
    update_status: String,
    last_update_at: Option<i64>,
    last_update_started_at: Option<i64>,
    last_successful_update_at: Option<i64>,
    last_error: Option<String>,
    created_at: i64,
    updated_at: i64,
}

impl MirrorRow {
    fn into_mirror(self) -> StoreResult<RemoteMirror> {
        Ok(RemoteMirror {
            id: self.id,
            repository_id: self.repository_id,
            url: StoredUrl { plain: self.url, masked: self.url_masked, sealed_userinfo: self.userinfo_sealed },
            enabled: self.enabled != 0,
            only_protected_branches: self.only_protected_branches != 0,
            keep_divergent_refs: self.keep_divergent_refs != 0,
            mirror_branch_regex: self.mirror_branch_regex,
            auth_method: AuthMethod::Password,
            update: UpdateState {
                status: UpdateStatus::parse(&self.update_status).ok_or_else(|| corrupt("mirror"))?,
                last_update_at: self.last_update_at.map(Timestamp),
                last_update_started_at: self.last_update_started_at.map(Timestamp),
                last_successful_update_at: self.last_successful_update_at.map(Timestamp),
                last_error: self.last_error,
            },
            created_at: Timestamp(self.created_at),
            updated_at: Timestamp(self.updated_at),
        })
    }
}

#[derive(Deserialize)]
struct PullRow {
    repository_id: i64,
    enabled: i64,
    only_mirror_protected_branches: i64,
    mirror_overwrites_diverged_branches: i64,
    mirror_branch_regex: Option<String>,
    mirror_trigger_builds: i64,
    update_status: String,
    last_update_at: Option<i64>,
    last_update_started_at: Option<i64>,
    last_successful_update_at: Option<i64>,
    last_error: Option<String>,
    updated_at: i64,
}

impl PullRow {
    fn into_pull(self) -> StoreResult<PullMirror> {
        Ok(PullMirror {
            repository_id: self.repository_id,
            enabled: self.enabled != 0,
            only_mirror_protected_branches: self.only_mirror_protected_branches != 0,
            mirror_overwrites_diverged_branches: self.mirror_overwrites_diverged_branches != 0,
            mirror_branch_regex: self.mirror_branch_regex,
            mirror_trigger_builds: self.mirror_trigger_builds != 0,
            update: UpdateState {
                status: UpdateStatus::parse(&self.update_status).ok_or_else(|| corrupt("pull mirror"))?,
                last_update_at: self.last_update_at.map(Timestamp),
                last_update_started_at: self.last_update_started_at.map(Timestamp),
                last_successful_update_at: self.last_successful_update_at.map(Timestamp),
                last_error: self.last_error,
            },
            updated_at: Timestamp(self.updated_at),
        })
    }
}

/// Inserts or replaces a pull mirror (?1 … ?12).
const PULL_UPSERT: &str = "INSERT INTO pull_mirrors (repository_id, enabled, only_mirror_protected_branches, \
     mirror_overwrites_diverged_branches, mirror_branch_regex, mirror_trigger_builds, update_status, last_update_at, \
     last_update_started_at, last_successful_update_at, last_error, updated_at) \
     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12) \
     ON CONFLICT (repository_id) DO UPDATE SET enabled = excluded.enabled, \
     only_mirror_protected_branches = excluded.only_mirror_protected_branches, \
     mirror_overwrites_diverged_branches = excluded.mirror_overwrites_diverged_branches, \
     mirror_branch_regex = excluded.mirror_branch_regex, mirror_trigger_builds = excluded.mirror_trigger_builds, \
     update_status = excluded.update_status, last_update_at = excluded.last_update_at, \
     last_update_started_at = excluded.last_update_started_at, \
     last_successful_update_at = excluded.last_successful_update_at, last_error = excluded.last_error, \
     updated_at = excluded.updated_at";

fn pull_args(p: &PullMirror) -> Vec<JsValue> {
    vec![
        int(p.repository_id),
        flag(p.enabled),
        flag(p.only_mirror_protected_branches),
        flag(p.mirror_overwrites_diverged_branches),
        opt_text(p.mirror_branch_regex.as_deref()),
        flag(p.mirror_trigger_builds),
        text(p.update.status.as_str()),
        opt_int(p.update.last_update_at.map(Timestamp::millis)),
        opt_int(p.update.last_update_started_at.map(Timestamp::millis)),
        opt_int(p.update.last_successful_update_at.map(Timestamp::millis)),
        opt_text(p.update.last_error.as_deref()),
        int(p.updated_at.millis()),
    ]
}

#[derive(Deserialize)]
struct TriggersRow {
    repository_id: i64,
    webhook_secret_sealed: Option<String>,
    upstream_fingerprint: Option<String>,
    last_polled_at: Option<i64>,
}

#[derive(Deserialize)]
struct IdRow {
    id: i64,
}

#[derive(Deserialize)]
struct JobRow {
    id: i64,
    kind: String,
    repository_id: i64,
    remote_mirror_id: Option<i64>,
    reason: String,
    state: String,
    attempt: u32,
    enqueued_at: i64,
    not_before: Option<i64>,
    lease_owner: Option<i64>,
    lease_deadline: Option<i64>,
    lease_id: Option<String>,
}

impl JobRow {
    fn into_job(self) -> StoreResult<Job> {
        Ok(Job {
            id: self.id,
            kind: JobKind::parse(&self.kind).ok_or_else(|| corrupt("job"))?,
            repository_id: self.repository_id,
            remote_mirror_id: self.remote_mirror_id,
            reason: JobReason::parse(&self.reason).ok_or_else(|| corrupt("job"))?,
            state: JobState::parse(&self.state).ok_or_else(|| corrupt("job"))?,
            attempt: self.attempt,
            enqueued_at: self.enqueued_at,
            not_before: self.not_before,
            lease_owner: self.lease_owner,
            lease_deadline: self.lease_deadline,
            lease_id: self.lease_id,
        })
    }
}

#[derive(Deserialize)]
struct CountRow {
    n: u64,
}

#[derive(Deserialize)]
struct GrantRow {
    target: i64,
    level: String,
    kind: String,
}

const JOB_COLUMNS: &str = "id, kind, repository_id, remote_mirror_id, reason, state, attempt, enqueued_at, not_before, lease_owner, lease_deadline, lease_id";

#[derive(Deserialize)]
struct NodeRow {
    id: i64,
    name: String,
    lookup: String,
    hash: String,
    created_at: i64,
    last_seen: Option<i64>,
}

impl From<NodeRow> for FarmNode {
    fn from(r: NodeRow) -> Self {
        Self {
            id: r.id,
            name: r.name,
            lookup: r.lookup,
            hash: r.hash,
            created_at: Timestamp(r.created_at),
            last_seen: r.last_seen.map(Timestamp),
        }
    }
}

/// Same target as the job `j` (kind, repository, mirror).
const SAME_TARGET: &str = "o.kind = j.kind AND o.repository_id = j.repository_id \
     AND IFNULL(o.remote_mirror_id, 0) = IFNULL(j.remote_mirror_id, 0)";

/// Replaces every field of a mirror (?16 is its id).
const MIRROR_UPDATE: &str = "UPDATE remote_mirrors SET repository_id = ?1, url = ?2, url_masked = ?3, userinfo_sealed = ?4, \
     enabled = ?5, only_protected_branches = ?6, keep_divergent_refs = ?7, mirror_branch_regex = ?8, update_status = ?9, \
     last_update_at = ?10, last_update_started_at = ?11, last_successful_update_at = ?12, last_error = ?13, \
     created_at = ?14, updated_at = ?15 WHERE id = ?16";

/// Inserts a job unless one for the same target waits (the partial unique index decides).
const ENQUEUE: &str = "INSERT OR IGNORE INTO jobs (kind, repository_id, remote_mirror_id, reason, enqueued_at) \
     VALUES (?1, ?2, ?3, ?4, ?5)";

impl D1Store {
    pub(crate) fn new(db: D1Database) -> Self {
        Self { db }
    }

    fn stmt(&self, sql: &str, args: &[JsValue]) -> StoreResult<D1PreparedStatement> {
        self.db.prepare(sql).bind(args).map_err(failure)
    }

    async fn all<T: DeserializeOwned>(&self, sql: &str, args: &[JsValue]) -> StoreResult<Vec<T>> {
        self.stmt(sql, args)?.all().await.map_err(failure)?.results::<T>().map_err(failure)
    }

    async fn first<T: DeserializeOwned>(&self, sql: &str, args: &[JsValue]) -> StoreResult<Option<T>> {
        self.stmt(sql, args)?.first::<T>(None).await.map_err(failure)
    }

    async fn run(&self, sql: &str, args: &[JsValue]) -> StoreResult<()> {
        self.stmt(sql, args)?.run().await.map_err(failure).map(|_| ())
    }

    fn enqueue_stmt(&self, job: &NewJob, mirror_id: JsValue) -> StoreResult<D1PreparedStatement> {
        self.stmt(
            ENQUEUE,
            &[
                text(job.kind.as_str()),
                int(job.repository_id),
                mirror_id,
                text(job.reason.as_str()),
                int(job.enqueued_at.millis()),
            ],
        )
    }

    async fn repo_where(&self, clause: &str, args: &[JsValue]) -> StoreResult<Vec<Repository>> {
        let rows: Vec<RepoRow> = self.all(&format!("{REPO_SELECT} {clause}"), args).await?;
        Ok(rows.into_iter().map(Repository::from).collect())
    }
}

fn mirror_args(m: &RemoteMirror) -> Vec<JsValue> {
    vec![
        int(m.repository_id),
        text(&m.url.plain),
        text(&m.url.masked),
        opt_text(m.url.sealed_userinfo.as_deref()),
        flag(m.enabled),
        flag(m.only_protected_branches),
        flag(m.keep_divergent_refs),
        opt_text(m.mirror_branch_regex.as_deref()),
        text(m.update.status.as_str()),
        opt_int(m.update.last_update_at.map(Timestamp::millis)),
        opt_int(m.update.last_update_started_at.map(Timestamp::millis)),
        opt_int(m.update.last_successful_update_at.map(Timestamp::millis)),
        opt_text(m.update.last_error.as_deref()),
        int(m.created_at.millis()),
        int(m.updated_at.millis()),
    ]
}

impl Store for D1Store {
    async fn user_by_id(&self, id: i64) -> StoreResult<Option<User>> {
        self.first::<UserRow>("SELECT * FROM users WHERE id = ?1", &[int(id)])
            .await?
            .map(UserRow::into_user)
            .transpose()
    }

    async fn user_by_name(&self, name: &str) -> StoreResult<Option<User>> {
        self.first::<UserRow>("SELECT * FROM users WHERE name = ?1 OR slug = ?1", &[text(name)])
            .await?
            .map(UserRow::into_user)
            .transpose()
    }

    async fn list_users(&self) -> StoreResult<Vec<User>> {
        self.all::<UserRow>("SELECT * FROM users ORDER BY name", &[])
            .await?
            .into_iter()
            .map(UserRow::into_user)
            .collect()
    }

    async fn insert_user(&self, u: &NewUser) -> StoreResult<User> {
        let row = self
            .first::<UserRow>(
                "INSERT INTO users (name, slug, display_name, email, role, created_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6) RETURNING *",
                &[text(&u.name), text(&u.slug), text(&u.display_name), opt_text(u.email.as_deref()), text(u.role.as_str()), int(u.created_at.millis())],
            )
            .await?;
        row.ok_or_else(|| corrupt("user"))?.into_user()
    }

    async fn delete_user(&self, id: i64) -> StoreResult<()> {
        self.run("DELETE FROM users WHERE id = ?1", &[int(id)]).await
    }

    async fn set_global_role(&self, user_id: i64, role: GlobalRole) -> StoreResult<()> {
        self.run("UPDATE users SET role = ?2 WHERE id = ?1", &[int(user_id), text(role.as_str())]).await
    }

    async fn tokens_by_lookup(&self, lookup: &str) -> StoreResult<Vec<AccessToken>> {
        self.all::<TokenRow>("SELECT * FROM access_tokens WHERE lookup = ?1", &[text(lookup)])
            .await?
            .into_iter()
            .map(TokenRow::into_token)
            .collect()
    }

    async fn list_tokens(&self, user_id: i64) -> StoreResult<Vec<AccessToken>> {
        self.all::<TokenRow>(
            "SELECT * FROM access_tokens WHERE user_id = ?1 ORDER BY created_at DESC, id",
            &[int(user_id)],
        )
        .await?
        .into_iter()
        .map(TokenRow::into_token)
        .collect()
    }

    async fn insert_token(&self, t: &AccessToken) -> StoreResult<()> {
        let permissions = t.permissions.as_ref().map(|ps| {
            serde_json::to_string(&ps.iter().map(ToString::to_string).collect::<Vec<_>>()).unwrap_or_default()
        });
        self.run(
            "INSERT INTO access_tokens (id, user_id, name, lookup, hash, permissions, created_at, expires_at) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
            &[
                text(&t.id),
                int(t.user_id),
                text(&t.name),
                text(&t.lookup),
                text(&t.hash),
                opt_text(permissions.as_deref()),
                int(t.created_at.millis()),
                opt_int(t.expires_at.map(Timestamp::millis)),
            ],
        )
        .await
    }

    async fn delete_token(&self, user_id: i64, token_id: &str) -> StoreResult<bool> {
        let gone = self
            .first::<CountRow>(
                "DELETE FROM access_tokens WHERE user_id = ?1 AND id = ?2 RETURNING 1 AS n",
                &[int(user_id), text(token_id)],
            )
            .await?;
        Ok(gone.is_some())
    }

    async fn insert_project(&self, p: &NewProject) -> StoreResult<Project> {
        let row = self
            .first::<ProjectRow>(
                "INSERT INTO projects (key, name, description, public, created_at) VALUES (?1, ?2, ?3, ?4, ?5) RETURNING *",
                &[text(&p.key), text(&p.name), opt_text(p.description.as_deref()), flag(p.public), int(p.created_at.millis())],
            )
            .await?;
        Ok(row.ok_or_else(|| corrupt("project"))?.into())
    }

    async fn project_by_key(&self, key: &str) -> StoreResult<Option<Project>> {
        Ok(self.first::<ProjectRow>("SELECT * FROM projects WHERE key = ?1", &[text(key)]).await?.map(Project::from))
    }

    async fn list_projects(&self) -> StoreResult<Vec<Project>> {
        Ok(self
            .all::<ProjectRow>("SELECT * FROM projects ORDER BY key", &[])
            .await?
            .into_iter()
            .map(Project::from)
            .collect())
    }

    async fn delete_project(&self, id: i64) -> StoreResult<()> {
        self.run("DELETE FROM projects WHERE id = ?1", &[int(id)]).await
    }

    async fn insert_repository(&self, r: &NewRepository) -> StoreResult<Repository> {
        let up = r.upstream.as_ref();
        let inserted = self
            .first::<CountRow>(
                "INSERT INTO repositories (project_id, slug, name, description, default_branch, public, forkable, \
                 upstream_url, upstream_url_masked, upstream_userinfo_sealed, hierarchy_id, created_at) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12) RETURNING id AS n",
                &[
                    int(r.project_id),
                    text(&r.slug),
                    text(&r.name),
                    opt_text(r.description.as_deref()),
                    text(&r.default_branch),
                    flag(r.public),
                    flag(r.forkable),
                    opt_text(up.map(|u| u.plain.as_str())),
                    opt_text(up.map(|u| u.masked.as_str())),
                    opt_text(up.and_then(|u| u.sealed_userinfo.as_deref())),
                    text(&r.hierarchy_id),
                    int(r.created_at.millis()),
                ],
            )
            .await?
            .ok_or_else(|| corrupt("repository"))?;
        let id = i64::try_from(inserted.n).map_err(|_| corrupt("repository"))?;
        self.repository_by_id(id).await?.ok_or_else(|| corrupt("repository"))
    }

    async fn repository_by_id(&self, id: i64) -> StoreResult<Option<Repository>> {
        Ok(self.repo_where("WHERE r.id = ?1", &[int(id)]).await?.pop())
    }

    async fn repository_by_slug(&self, project_id: i64, slug: &str) -> StoreResult<Option<Repository>> {
        Ok(self.repo_where("WHERE r.project_id = ?1 AND r.slug = ?2", &[int(project_id), text(slug)]).await?.pop())
    }

    async fn list_repositories(&self, project_id: Option<i64>) -> StoreResult<Vec<Repository>> {
        match project_id {
            Some(p) => self.repo_where("WHERE r.project_id = ?1 ORDER BY r.slug", &[int(p)]).await,
            None => self.repo_where("ORDER BY p.key, r.slug", &[]).await,
        }
    }

    async fn delete_repository(&self, id: i64) -> StoreResult<()> {
        self.run("DELETE FROM repositories WHERE id = ?1", &[int(id)]).await
    }

    async fn grants_for(&self, user_id: i64) -> StoreResult<Grants> {
        let rows: Vec<GrantRow> = self
            .all(
                "SELECT project_id AS target, level, 'P' AS kind FROM project_grants WHERE user_id = ?1 \
                 UNION ALL SELECT repository_id AS target, level, 'R' AS kind FROM repository_grants WHERE user_id = ?1",
                &[int(user_id)],
            )
            .await?;
        let mut grants = Grants::default();
        for row in rows {
            let level = parse_level(&row.level).ok_or_else(|| corrupt("grant"))?;
            let map = if row.kind == "P" { &mut grants.projects } else { &mut grants.repositories };
            map.insert(row.target, level);
        }
        Ok(grants)
    }

    async fn set_project_grant(&self, project_id: i64, user_id: i64, level: Option<Level>) -> StoreResult<()> {
        match level {
            Some(l) => {
                self.run(
                    "INSERT INTO project_grants (project_id, user_id, level) VALUES (?1, ?2, ?3) \
                     ON CONFLICT (project_id, user_id) DO UPDATE SET level = excluded.level",
                    &[int(project_id), int(user_id), text(level_name(l))],
                )
                .await
            }
            None => {
                self.run(
                    "DELETE FROM project_grants WHERE project_id = ?1 AND user_id = ?2",
                    &[int(project_id), int(user_id)],
                )
                .await
            }
        }
    }

    async fn set_repository_grant(&self, repository_id: i64, user_id: i64, level: Option<Level>) -> StoreResult<()> {
        match level {
            Some(l) => {
                self.run(
                    "INSERT INTO repository_grants (repository_id, user_id, level) VALUES (?1, ?2, ?3) \
                     ON CONFLICT (repository_id, user_id) DO UPDATE SET level = excluded.level",
                    &[int(repository_id), int(user_id), text(level_name(l))],
                )
                .await
            }
            None => {
                self.run(
                    "DELETE FROM repository_grants WHERE repository_id = ?1 AND user_id = ?2",
                    &[int(repository_id), int(user_id)],
                )
                .await
            }
        }
    }

    async fn list_remote_mirrors(
        &self,
        repository_id: i64,
        offset: u64,
        limit: u64,
    ) -> StoreResult<(Vec<RemoteMirror>, u64)> {
        let rows: Vec<MirrorRow> = self
            .all(
                "SELECT * FROM remote_mirrors WHERE repository_id = ?1 ORDER BY id LIMIT ?2 OFFSET ?3",
                &[int(repository_id), int(limit as i64), int(offset as i64)],
            )
            .await?;
        let total = self
            .first::<CountRow>(
                "SELECT COUNT(*) AS n FROM remote_mirrors WHERE repository_id = ?1",
                &[int(repository_id)],
            )
            .await?
            .map_or(0, |c| c.n);
        Ok((rows.into_iter().map(MirrorRow::into_mirror).collect::<StoreResult<_>>()?, total))
    }

    async fn remote_mirror(&self, repository_id: i64, id: i64) -> StoreResult<Option<RemoteMirror>> {
        self.first::<MirrorRow>(
            "SELECT * FROM remote_mirrors WHERE repository_id = ?1 AND id = ?2",
            &[int(repository_id), int(id)],
        )
        .await?
        .map(MirrorRow::into_mirror)
        .transpose()
    }

    async fn insert_remote_mirror(&self, m: &RemoteMirror, job: Option<&NewJob>) -> StoreResult<RemoteMirror> {
        let insert = self.stmt(
            "INSERT INTO remote_mirrors (repository_id, url, url_masked, userinfo_sealed, enabled, only_protected_branches, \
             keep_divergent_refs, mirror_branch_regex, update_status, last_update_at, last_update_started_at, \
             last_successful_update_at, last_error, created_at, updated_at) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15) RETURNING *",
            &mirror_args(m),
        )?;
        let mut batch = vec![insert];
        if let Some(job) = job {
            // Same transaction: the mirror just inserted has the highest id.
            batch.push(self.stmt(
                "INSERT OR IGNORE INTO jobs (kind, repository_id, remote_mirror_id, reason, enqueued_at) \
                 VALUES (?1, ?2, (SELECT MAX(id) FROM remote_mirrors), ?3, ?4)",
                &[
                    text(job.kind.as_str()),
                    int(job.repository_id),
                    text(job.reason.as_str()),
                    int(job.enqueued_at.millis()),
                ],
            )?);
        }
        let results = self.db.batch(batch).await.map_err(failure)?;
        let row = results.first().ok_or_else(|| corrupt("mirror"))?.results::<MirrorRow>().map_err(failure)?.pop();
        row.ok_or_else(|| corrupt("mirror"))?.into_mirror()
    }

    async fn update_remote_mirror(&self, m: &RemoteMirror, job: Option<&NewJob>) -> StoreResult<()> {
        let mut args = mirror_args(m);
        args.push(int(m.id));
        let update = self.stmt(MIRROR_UPDATE, &args)?;
        let mut batch = vec![update];
        if let Some(job) = job {
            batch.push(self.enqueue_stmt(job, opt_int(job.remote_mirror_id))?);
        }
        self.db.batch(batch).await.map_err(failure).map(|_| ())
    }

    async fn delete_remote_mirror(&self, repository_id: i64, id: i64) -> StoreResult<()> {
        self.run("DELETE FROM remote_mirrors WHERE repository_id = ?1 AND id = ?2", &[int(repository_id), int(id)])
            .await
    }

    async fn pull_mirror(&self, repository_id: i64) -> StoreResult<Option<PullMirror>> {
        self.first::<PullRow>("SELECT * FROM pull_mirrors WHERE repository_id = ?1", &[int(repository_id)])
            .await?
            .map(PullRow::into_pull)
            .transpose()
    }

    async fn save_pull_mirror(
        &self,
        mirror: &PullMirror,
        upstream: Option<&StoredUrl>,
        job: Option<&NewJob>,
    ) -> StoreResult<()> {
        let mut batch = vec![self.stmt(PULL_UPSERT, &pull_args(mirror))?];
        if let Some(url) = upstream {
            batch.push(self.stmt(
                "UPDATE repositories SET upstream_url = ?2, upstream_url_masked = ?3, upstream_userinfo_sealed = ?4 WHERE id = ?1",
                &[int(mirror.repository_id), text(&url.plain), text(&url.masked), opt_text(url.sealed_userinfo.as_deref())],
            )?);
        }
        if let Some(job) = job {
            batch.push(self.enqueue_stmt(job, opt_int(job.remote_mirror_id))?);
        }
        self.db.batch(batch).await.map_err(failure).map(|_| ())
    }

    async fn triggers(&self, repository_id: i64) -> StoreResult<Option<RepositoryTriggers>> {
        let row = self
            .first::<TriggersRow>("SELECT * FROM repository_triggers WHERE repository_id = ?1", &[int(repository_id)])
            .await?;
        Ok(row.map(|r| RepositoryTriggers {
            repository_id: r.repository_id,
            webhook_secret_sealed: r.webhook_secret_sealed,
            upstream_fingerprint: r.upstream_fingerprint,
            last_polled_at: r.last_polled_at.map(Timestamp),
        }))
    }

    async fn save_triggers(&self, t: &RepositoryTriggers) -> StoreResult<()> {
        self.run(
            "INSERT INTO repository_triggers (repository_id, webhook_secret_sealed, upstream_fingerprint, last_polled_at) \
             VALUES (?1, ?2, ?3, ?4) ON CONFLICT (repository_id) DO UPDATE SET \
             webhook_secret_sealed = excluded.webhook_secret_sealed, upstream_fingerprint = excluded.upstream_fingerprint, \
             last_polled_at = excluded.last_polled_at",
            &[
                int(t.repository_id),
                opt_text(t.webhook_secret_sealed.as_deref()),
                opt_text(t.upstream_fingerprint.as_deref()),
                opt_int(t.last_polled_at.map(Timestamp::millis)),
            ],
        )
        .await
    }

    async fn repositories_due_for_poll(&self, before: Timestamp) -> StoreResult<Vec<i64>> {
        let rows: Vec<IdRow> = self
            .all(
                "SELECT r.id FROM repositories r \
                 LEFT JOIN pull_mirrors p ON p.repository_id = r.id \
                 LEFT JOIN repository_triggers t ON t.repository_id = r.id \
                 WHERE r.upstream_url IS NOT NULL AND IFNULL(p.enabled, 1) = 1 \
                 AND (t.last_polled_at IS NULL OR t.last_polled_at < ?1) ORDER BY r.id LIMIT 500",
                &[int(before.millis())],
            )
            .await?;
        Ok(rows.into_iter().map(|r| r.id).collect())
    }

    async fn enabled_remote_mirror_ids(&self, repository_id: i64) -> StoreResult<Vec<i64>> {
        let rows: Vec<IdRow> = self
            .all(
                "SELECT id FROM remote_mirrors WHERE repository_id = ?1 AND enabled = 1 ORDER BY id",
                &[int(repository_id)],
            )
            .await?;
        Ok(rows.into_iter().map(|r| r.id).collect())
    }

    async fn enqueue(&self, job: &NewJob) -> StoreResult<Job> {
        let find = self.stmt(
            &format!(
                "SELECT {JOB_COLUMNS} FROM jobs WHERE state = 'QUEUED' AND kind = ?1 AND repository_id = ?2 \
                 AND IFNULL(remote_mirror_id, 0) = IFNULL(?3, 0)"
            ),
            &[text(job.kind.as_str()), int(job.repository_id), opt_int(job.remote_mirror_id)],
        )?;
        let results =
            self.db.batch(vec![self.enqueue_stmt(job, opt_int(job.remote_mirror_id))?, find]).await.map_err(failure)?;
        let row = results.get(1).ok_or_else(|| corrupt("job"))?.results::<JobRow>().map_err(failure)?.pop();
        row.ok_or_else(|| corrupt("job"))?.into_job()
    }

    async fn job(&self, id: i64) -> StoreResult<Option<Job>> {
        self.first::<JobRow>(&format!("SELECT {JOB_COLUMNS} FROM jobs WHERE id = ?1"), &[int(id)])
            .await?
            .map(JobRow::into_job)
            .transpose()
    }

    async fn remote_mirror_by_id(&self, id: i64) -> StoreResult<Option<RemoteMirror>> {
        self.first::<MirrorRow>("SELECT * FROM remote_mirrors WHERE id = ?1", &[int(id)])
            .await?
            .map(MirrorRow::into_mirror)
            .transpose()
    }

    async fn insert_node(&self, node: &NewNode) -> StoreResult<FarmNode> {
        let row = self
            .first::<NodeRow>(
                "INSERT INTO farm_nodes (name, lookup, hash, created_at) VALUES (?1, ?2, ?3, ?4) RETURNING *",
                &[text(&node.name), text(&node.lookup), text(&node.hash), int(node.created_at.millis())],
            )
            .await
            .map_err(|e| match e {
                StoreError::Conflict(_) => StoreError::Conflict("A node with that name already exists.".into()),
                other => other,
            })?;
        Ok(row.ok_or_else(|| corrupt("node"))?.into())
    }

    async fn nodes_by_lookup(&self, lookup: &str) -> StoreResult<Vec<FarmNode>> {
        Ok(self
            .all::<NodeRow>("SELECT * FROM farm_nodes WHERE lookup = ?1", &[text(lookup)])
            .await?
            .into_iter()
            .map(FarmNode::from)
            .collect())
    }

    async fn list_nodes(&self) -> StoreResult<Vec<FarmNode>> {
        Ok(self
            .all::<NodeRow>("SELECT * FROM farm_nodes ORDER BY name", &[])
            .await?
            .into_iter()
            .map(FarmNode::from)
            .collect())
    }

    async fn touch_node(&self, id: i64, now: Timestamp) -> StoreResult<()> {
        self.run("UPDATE farm_nodes SET last_seen = ?2 WHERE id = ?1", &[int(id), int(now.millis())]).await
    }

    async fn lease_next_job(
        &self,
        node_id: i64,
        lease_id: &str,
        now: Timestamp,
        deadline: Timestamp,
        repository: Option<i64>,
    ) -> StoreResult<Option<Job>> {
        // One statement, so two nodes can never lease the same row; a target another lease
        // holds is skipped, so one mirror is never pushed by two nodes at once; pushes wait for
        // their repository's leased or due pull (see the trait).
        let sql = format!(
            "UPDATE jobs SET state = 'LEASED', attempt = attempt + 1, lease_owner = ?1, lease_id = ?2, lease_deadline = ?3 \
             WHERE id = (SELECT j.id FROM jobs j WHERE j.state = 'QUEUED' AND IFNULL(j.not_before, 0) <= ?4 \
               AND (?5 IS NULL OR j.repository_id = ?5) \
               AND NOT EXISTS (SELECT 1 FROM jobs o WHERE o.state = 'LEASED' AND {SAME_TARGET}) \
               AND (j.kind = 'PULL_MIRROR' OR NOT EXISTS (SELECT 1 FROM jobs p WHERE p.kind = 'PULL_MIRROR' \
                 AND p.repository_id = j.repository_id \
                 AND (p.state = 'LEASED' OR (p.state = 'QUEUED' AND IFNULL(p.not_before, 0) <= ?4)))) \
               ORDER BY j.enqueued_at, j.id LIMIT 1) \
             RETURNING {JOB_COLUMNS}"
        );
        let params = [int(node_id), text(lease_id), int(deadline.millis()), int(now.millis()), opt_int(repository)];
        self.first::<JobRow>(&sql, &params).await?.map(JobRow::into_job).transpose()
    }

    async fn renew_lease(&self, job_id: i64, lease_id: &str, deadline: Timestamp) -> StoreResult<bool> {
        let row = self
            .first::<CountRow>(
                "UPDATE jobs SET lease_deadline = ?3 WHERE id = ?1 AND lease_id = ?2 AND state = 'LEASED' RETURNING 1 AS n",
                &[int(job_id), text(lease_id), int(deadline.millis())],
            )
            .await?;
        Ok(row.is_some())
    }

    async fn finish_job(
        &self,
        job_id: i64,
        lease_id: &str,
        completion: JobCompletion,
        reported: bool,
        now: Timestamp,
        mirror: Option<SavedMirror<'_>>,
    ) -> StoreResult<bool> {
        let held = "id = ?1 AND lease_id = ?2 AND state = 'LEASED'";
        let kept_lease = if reported { "lease_id" } else { "NULL" };
        let mut batch = Vec::new();
        // A D1 batch is one transaction. The mirror goes first, guarded by the lease, so it is
        // saved exactly when the job statements below (same guard) take effect.
        match mirror {
            Some(SavedMirror::Push(m)) => {
                let mut args = mirror_args(m);
                args.extend([int(m.id), int(job_id), text(lease_id)]);
                batch.push(self.stmt(
                    &format!("{MIRROR_UPDATE} AND EXISTS (SELECT 1 FROM jobs WHERE id = ?17 AND lease_id = ?18 AND state = 'LEASED')"),
                    &args,
                )?);
            }
            Some(SavedMirror::Pull(p)) => {
                let mut args = pull_args(p);
                args.extend([int(job_id), text(lease_id)]);
                // INSERT … SELECT … WHERE: the upsert happens only while the lease is held.
                let upsert = PULL_UPSERT.replacen(
                    "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
                    "SELECT ?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12 WHERE EXISTS \
                     (SELECT 1 FROM jobs WHERE id = ?13 AND lease_id = ?14 AND state = 'LEASED')",
                    1,
                );
                batch.push(self.stmt(&upsert, &args)?);
            }
            None => {}
        }
        let first_job_stmt = batch.len();
        // Back to the queue only if no other job waits for the same target; otherwise the next
        // statement closes it and the waiting job does the work.
        let requeue = |not_before: i64, attempt_delta: i64| {
            self.stmt(
                &format!(
                    "UPDATE jobs SET state = 'QUEUED', not_before = ?3, attempt = attempt + ?4, lease_deadline = NULL, \
                     lease_id = {kept_lease} WHERE {held} AND NOT EXISTS \
                     (SELECT 1 FROM jobs o, jobs j WHERE j.id = ?1 AND o.id != j.id AND o.state = 'QUEUED' AND {SAME_TARGET})"
                ),
                &[int(job_id), text(lease_id), int(not_before), int(attempt_delta)],
            )
        };
        let close = |state: &str| {
            self.stmt(
                &format!("UPDATE jobs SET state = '{state}', finished_at = ?3, lease_deadline = NULL, lease_id = {kept_lease} WHERE {held}"),
                &[int(job_id), text(lease_id), int(now.millis())],
            )
        };
        match completion {
            JobCompletion::Done => batch.push(close("DONE")?),
            JobCompletion::Failed => batch.push(close("FAILED")?),
            JobCompletion::RetryAt(at) => batch.extend([requeue(at.millis(), 0)?, close("DONE")?]),
            JobCompletion::Released => batch.extend([requeue(now.millis(), -1)?, close("DONE")?]),
        }
        let results = self.db.batch(batch).await.map_err(failure)?;
        let mut changed = 0;
        for result in &results[first_job_stmt..] {
            changed += result.meta().map_err(failure)?.and_then(|m| m.changes).unwrap_or(0);
        }
        Ok(changed > 0)
    }

    async fn expired_leases(&self, now: Timestamp) -> StoreResult<Vec<Job>> {
        self.all::<JobRow>(
            &format!("SELECT {JOB_COLUMNS} FROM jobs WHERE state = 'LEASED' AND lease_deadline < ?1 ORDER BY id"),
            &[int(now.millis())],
        )
        .await?
        .into_iter()
        .map(JobRow::into_job)
        .collect()
    }

    async fn list_jobs(&self, repository_id: i64) -> StoreResult<Vec<Job>> {
        self.all::<JobRow>(
            &format!("SELECT {JOB_COLUMNS} FROM jobs WHERE repository_id = ?1 ORDER BY id DESC"),
            &[int(repository_id)],
        )
        .await?
        .into_iter()
        .map(JobRow::into_job)
        .collect()
    }
}
