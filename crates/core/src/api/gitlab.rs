//! GitLab's API: remote (push) mirrors, plus the project and user look-ups clients make first.

use crate::admin::RateLimiter;
use crate::queue::Signals;
use crate::store::Blobs;
use serde::Serialize;

use super::{ApiError, ApiResponse, Call, FieldError, Fields, FromFields, Result, Service, decode_segment};
use crate::mirrors::{
    AuthMethod, MirrorParams, MirrorRequestError, MirrorSsh, PullMirror, PullMirrorParams, RemoteMirror,
    RemoteMirrorDto,
};
use crate::paging::GitLabPage;
use crate::queue::{JobKind, JobReason, NewJob, job_for_mirror_change};
use crate::registry::Repository;
use crate::ssh::MirrorPublicKey;
use crate::store::port::Database;
use crate::store::{Crypto, RepositoryKey};

fn project_not_found() -> ApiError {
    ApiError::not_found("Project", "Project not found")
}

fn mirror_not_found() -> ApiError {
    ApiError::not_found("Remote Mirror", "Remote mirror not found")
}

/// GitLab's user entity, the fields clients read.
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "openapi", derive(schemars::JsonSchema))]
pub(super) struct GitLabUser {
    id: i64,
    username: String,
    name: String,
    state: String,
    email: Option<String>,
    is_admin: bool,
}

/// GitLab's project entity for a repository, the fields clients read.
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "openapi", derive(schemars::JsonSchema))]
pub(super) struct GitLabProject {
    id: i64,
    description: Option<String>,
    name: String,
    name_with_namespace: String,
    path: String,
    path_with_namespace: String,
    created_at: crate::time::Timestamp,
    default_branch: String,
    visibility: String,
    web_url: String,
    namespace: GitLabNamespace,
    /// Whether the project pulls from its `import_url`.
    mirror: bool,
    /// The upstream it pulls from, credentials masked.
    import_url: Option<String>,
    mirror_trigger_builds: bool,
    only_mirror_protected_branches: bool,
    mirror_overwrites_diverged_branches: bool,
}

/// What `PUT /projects/:id` may send that this service acts on: the pull-mirror settings, as
/// python-gitlab's `project.save()` sends them after `project.import_url = …; project.mirror = True`.
/// Other project attributes are not served here and are ignored, as GitLab ignores unknown ones.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(schemars::JsonSchema))]
pub struct GitLabProjectParams {
    /// `import_url`: the upstream to pull from (credentials in it are sealed).
    pub import_url: Option<String>,
    /// `mirror`: pull from `import_url`.
    pub mirror: Option<bool>,
    /// `mirror_trigger_builds` (stored only).
    pub mirror_trigger_builds: Option<bool>,
    /// `only_mirror_protected_branches`.
    pub only_mirror_protected_branches: Option<bool>,
    /// `mirror_overwrites_diverged_branches`.
    pub mirror_overwrites_diverged_branches: Option<bool>,
    /// `mirror_branch_regex`: `Some(None)` clears it.
    pub mirror_branch_regex: Option<Option<String>>,
}

impl FromFields for GitLabProjectParams {
    fn from_fields(fields: &Fields) -> std::result::Result<Self, FieldError> {
        Ok(Self {
            import_url: fields.string("import_url")?,
            mirror: fields.boolean("mirror")?,
            mirror_trigger_builds: fields.boolean("mirror_trigger_builds")?,
            only_mirror_protected_branches: fields.boolean("only_mirror_protected_branches")?,
            mirror_overwrites_diverged_branches: fields.boolean("mirror_overwrites_diverged_branches")?,
            mirror_branch_regex: fields.nullable_string("mirror_branch_regex")?,
        })
    }
}

impl GitLabProjectParams {
    /// The pull-mirror change it asks for, in the mirror API's terms; `None` if it asks none.
    fn pull_change(self) -> Option<PullMirrorParams> {
        let change = PullMirrorParams {
            url: self.import_url,
            auth_user: None,
            auth_password: None,
            enabled: self.mirror,
            only_mirror_protected_branches: self.only_mirror_protected_branches,
            mirror_overwrites_diverged_branches: self.mirror_overwrites_diverged_branches,
            mirror_branch_regex: self.mirror_branch_regex,
            mirror_trigger_builds: self.mirror_trigger_builds,
        };
        (change != PullMirrorParams::default()).then_some(change)
    }
}

/// A project's namespace (its Bitbucket project, as a GitLab group).
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "openapi", derive(schemars::JsonSchema))]
struct GitLabNamespace {
    id: i64,
    name: String,
    path: String,
    kind: String,
    full_path: String,
}

/// A GitLab `:id`, decoded: a repository id or a project key and slug.
pub(super) enum GitLabKey {
    /// `42`.
    Id(i64),
    /// `KEY%2Fslug`.
    Slug(String, String),
}

impl GitLabKey {
    pub(super) fn as_key(&self) -> RepositoryKey<'_> {
        match self {
            Self::Id(id) => RepositoryKey::Id(*id),
            Self::Slug(key, slug) => RepositoryKey::Slug(key, slug),
        }
    }
}

impl From<MirrorRequestError> for ApiError {
    fn from(e: MirrorRequestError) -> Self {
        match e {
            MirrorRequestError::Param(p) => Self::BadRequest(p.to_string()),
            MirrorRequestError::Url(u) => Self::Field { field: "url".into(), message: u.to_string() },
            MirrorRequestError::Filter(f) => {
                Self::Field { field: "mirror_branch_regex".into(), message: f.to_string() }
            }
            e @ (MirrorRequestError::AuthMethod(_) | MirrorRequestError::SshNeedsSshUrl) => {
                Self::Field { field: e.field().into(), message: e.to_string() }
            }
            MirrorRequestError::KnownHosts(k) => {
                Self::Field { field: "ssh_known_hosts".into(), message: k.to_string() }
            }
        }
    }
}

impl<D: Database, C: Crypto, S: Signals, L: RateLimiter, B: Blobs> Service<'_, D, C, S, L, B> {
    /// The repository a GitLab `:id` names: a numeric id or `KEY/slug` (URL-encoded).
    pub(super) fn gitlab_key(raw: &str) -> Option<GitLabKey> {
        let id = decode_segment(raw)?;
        if let Ok(n) = id.parse::<i64>() {
            return Some(GitLabKey::Id(n));
        }
        let (key, slug) = id.rsplit_once('/')?;
        Some(GitLabKey::Slug(key.to_owned(), slug.to_owned()))
    }

    /// The repository a GitLab `:id` names, if the caller has the route's level on it; else
    /// GitLab's 404 (or 401/403).
    pub(super) async fn gitlab_repository(&self, call: &Call<'_>, raw: &str) -> Result<Repository> {
        let key = Self::gitlab_key(raw).ok_or_else(project_not_found)?;
        self.repository_checked(call, key.as_key(), call.need(), project_not_found).await
    }

    /// The repository of a mirror route, checked for the maintainer-level access GitLab requires.
    pub(super) async fn mirror_repository(&self, call: &Call<'_>) -> Result<Repository> {
        call.principal()?;
        self.gitlab_repository(call, call.params.raw("id")).await
    }

    /// The repository and remote mirror a `…/remote_mirrors/:mirror_id` route names, checked
    /// for maintainer access: one round trip.
    async fn mirror_route(&self, call: &Call<'_>) -> Result<(Repository, RemoteMirror)> {
        let who = Some(call.principal()?);
        let key = Self::gitlab_key(call.params.raw("id")).ok_or_else(project_not_found)?;
        let id: i64 = call.params.raw("mirror_id").parse().map_err(|_| mirror_not_found())?;
        let (repo, grants, mirror) = self.store.remote_mirror_access(key.as_key(), Self::user_id(who), id).await?;
        let repo = repo.ok_or_else(project_not_found)?;
        Self::require(who, Self::level_on_repository(who, &grants, &repo), call.need(), project_not_found)?;
        Ok((repo, mirror.ok_or_else(mirror_not_found)?))
    }

    pub(super) async fn gitlab_current_user(&self, call: &Call<'_>) -> Result<ApiResponse> {
        let p = call.principal()?;
        Ok(ApiResponse::json(
            200,
            &GitLabUser {
                id: p.user.id,
                username: p.user.slug.clone(),
                name: p.user.display_name.clone(),
                state: "active".into(),
                email: p.user.email.clone(),
                is_admin: p.is_admin(),
            },
        ))
    }

    pub(super) async fn gitlab_project(&self, call: &Call<'_>) -> Result<ApiResponse> {
        let who = call.who.as_ref();
        let key = Self::gitlab_key(call.params.raw("id")).ok_or_else(project_not_found)?;
        // The repository, the caller's grants and its pull mirror: one round trip.
        let (repo, grants, pull) = self.store.repository_and_pull(key.as_key(), Self::user_id(who)).await?;
        let repo = repo.ok_or_else(project_not_found)?;
        Self::require(who, Self::level_on_repository(who, &grants, &repo), call.need(), project_not_found)?;
        let pull = pull.unwrap_or_else(|| PullMirror::implicit(repo.id, self.now));
        Ok(ApiResponse::json(200, &Self::gitlab_project_entity(call, &repo, &pull, repo.upstream.as_ref())))
    }

    /// `PUT /projects/:id`: sets up or changes the pull mirror the GitLab way (`import_url`,
    /// `mirror`, …), through the same checks and single write as `PUT …/mirror/pull`.
    pub(super) async fn update_gitlab_project(&self, call: &Call<'_>) -> Result<ApiResponse> {
        let repo = self.mirror_repository(call).await?;
        let params: GitLabProjectParams = call.input()?;
        let (pull, url) = match params.pull_change() {
            Some(change) => {
                Self::refuse_archived(&repo)?;
                let (pull, url) = self.apply_pull_update(&repo, change).await?;
                (pull, Some(url))
            }
            None => (self.pull_mirror_of(&repo).await?.0, repo.upstream.clone()),
        };
        Ok(ApiResponse::json(200, &Self::gitlab_project_entity(call, &repo, &pull, url.as_ref())))
    }

    fn gitlab_project_entity(
        call: &Call<'_>,
        repo: &Repository,
        pull: &PullMirror,
        upstream: Option<&crate::urls::StoredUrl>,
    ) -> GitLabProject {
        GitLabProject {
            id: repo.id,
            description: repo.description.clone(),
            name: repo.name.clone(),
            name_with_namespace: format!("{} / {}", repo.project.name, repo.name),
            path: repo.slug.clone(),
            path_with_namespace: format!("{}/{}", repo.project.key, repo.slug),
            created_at: repo.created_at,
            default_branch: repo.default_branch.clone(),
            visibility: if repo.public || repo.project.public { "public" } else { "private" }.into(),
            web_url: format!("{}/projects/{}/repos/{}", call.req.origin, repo.project.key, repo.slug),
            namespace: GitLabNamespace {
                id: repo.project.id,
                name: repo.project.name.clone(),
                path: repo.project.key.clone(),
                kind: if repo.project.is_personal() { "user" } else { "group" }.into(),
                full_path: repo.project.key.clone(),
            },
            mirror: upstream.is_some() && pull.enabled,
            import_url: upstream.map(|u| u.masked.clone()),
            mirror_trigger_builds: pull.mirror_trigger_builds,
            only_mirror_protected_branches: pull.only_mirror_protected_branches,
            mirror_overwrites_diverged_branches: pull.mirror_overwrites_diverged_branches,
        }
    }

    pub(super) async fn list_remote_mirrors(&self, call: &Call<'_>) -> Result<ApiResponse> {
        let who = Some(call.principal()?);
        let key = Self::gitlab_key(call.params.raw("id")).ok_or_else(project_not_found)?;
        let page = GitLabPage::from_query(&call.query);
        // The repository, the caller's grants and the page: one round trip.
        let (repo, grants, mirrors, total) = self
            .store
            .remote_mirror_page(key.as_key(), Self::user_id(who), page.offset(), u64::from(page.per_page))
            .await?;
        let repo = repo.ok_or_else(project_not_found)?;
        Self::require(who, Self::level_on_repository(who, &grants, &repo), call.need(), project_not_found)?;
        let body: Vec<RemoteMirrorDto> = mirrors.iter().map(RemoteMirrorDto::from).collect();
        Ok(ApiResponse::json(200, &body).with_headers(page.headers(&call.url(), &call.query, total)))
    }

    pub(super) async fn get_remote_mirror(&self, call: &Call<'_>) -> Result<ApiResponse> {
        let (_, mirror) = self.mirror_route(call).await?;
        Ok(ApiResponse::json(200, &RemoteMirrorDto::from(&mirror)))
    }

    pub(super) async fn create_remote_mirror(&self, call: &Call<'_>) -> Result<ApiResponse> {
        let repo = self.mirror_repository(call).await?;
        let change = call.input::<MirrorParams>()?.check_create(&self.config.allowed_hosts)?;
        let url = change.new_url.clone().ok_or(ApiError::Internal("create without url".into()))?;
        let stored = self.stored_url(&url, None).await?;
        let known_hosts = change.known_hosts.clone();
        let mut mirror = change.into_new_mirror(repo.id, stored, self.now);
        self.prepare_ssh(&mut mirror, known_hosts).await?;
        let job = job_for_mirror_change(JobKind::PushMirror, repo.id, None, false, mirror.enabled, true, self.now);
        let created = self.store.insert_remote_mirror(&mirror, job.as_ref()).await?;
        self.mark_queued();
        Ok(ApiResponse::json(201, &RemoteMirrorDto::from(&created)))
    }

    pub(super) async fn update_remote_mirror(&self, call: &Call<'_>) -> Result<ApiResponse> {
        let (repo, current) = self.mirror_route(call).await?;
        let change = call.input::<MirrorParams>()?.check_update(&current, &self.config.allowed_hosts)?;
        let url = match &change.new_url {
            Some(url) => Some(self.stored_url(url, change.keep_credentials.then_some(&current.url)).await?),
            None => None,
        };
        let url_changed = url.is_some();
        let known_hosts = change.known_hosts.clone();
        let hosts_changed = known_hosts.is_some();
        let mut next = change.apply_to(&current, url, self.now);
        self.prepare_ssh(&mut next, known_hosts).await?;
        let job = job_for_mirror_change(
            JobKind::PushMirror,
            repo.id,
            Some(current.id),
            current.enabled,
            next.enabled,
            url_changed,
            self.now,
        );
        self.store.update_remote_mirror(&next, url_changed, hosts_changed, job.as_ref()).await?;
        self.mark_queued();
        Ok(ApiResponse::json(200, &RemoteMirrorDto::from(&next)))
    }

    pub(super) async fn delete_remote_mirror(&self, call: &Call<'_>) -> Result<ApiResponse> {
        let (repo, mirror) = self.mirror_route(call).await?;
        self.store.delete_remote_mirror(repo.id, mirror.id).await?;
        Ok(ApiResponse::empty(204))
    }

    /// Records a sync request; a farm node carries it out. A disabled mirror can't be synced.
    pub(super) async fn sync_remote_mirror(&self, call: &Call<'_>) -> Result<ApiResponse> {
        let (repo, mirror) = self.mirror_route(call).await?;
        Self::refuse_archived(&repo)?;
        if !mirror.enabled {
            return Err(ApiError::BadRequest("Remote mirror is disabled".into()));
        }
        let job = NewJob {
            kind: JobKind::PushMirror,
            repository_id: repo.id,
            remote_mirror_id: Some(mirror.id),
            reason: JobReason::Manual,
            enqueued_at: self.now,
        };
        self.store.enqueue(&job).await?;
        self.mark_queued();
        Ok(ApiResponse::empty(204))
    }

    /// `{"public_key": "ssh-ed25519 …"}` of a mirror that authenticates with an SSH key; 404 for
    /// one that does not, as GitLab answers.
    pub(super) async fn remote_mirror_public_key(&self, call: &Call<'_>) -> Result<ApiResponse> {
        let (_, mirror) = self.mirror_route(call).await?;
        match (mirror.auth_method, &mirror.ssh) {
            (AuthMethod::SshPublicKey, Some(ssh)) => {
                Ok(ApiResponse::json(200, &MirrorPublicKey { public_key: ssh.public_key.clone() }))
            }
            _ => Err(ApiError::not_found("Public key", "This mirror does not use SSH key authentication")),
        }
    }

    /// Gives a mirror that authenticates with an SSH key its key pair (once: an Ed25519 seed from
    /// the random source, sealed; its public half derived through the crypto port) and sets its
    /// known hosts when new ones were sent (`Some(None)`: forget them, to learn the next).
    async fn prepare_ssh(
        &self,
        mirror: &mut RemoteMirror,
        known_hosts: Option<Option<Vec<crate::ssh::KnownHost>>>,
    ) -> Result<()> {
        if mirror.auth_method == AuthMethod::SshPublicKey && mirror.ssh.is_none() {
            let seed = self.crypto.random_bytes(32)?;
            let public: [u8; 32] = self
                .crypto
                .ed25519_public_key(&seed)
                .await?
                .try_into()
                .map_err(|_| ApiError::Internal("an Ed25519 public key is 32 bytes".into()))?;
            let comment = format!("mirrorfarm-mirror@{}", self.now.millis());
            mirror.ssh = Some(MirrorSsh {
                sealed_seed: self.crypto.seal(&crate::hex::encode(&seed)).await?,
                public_key: crate::ssh::PublicKey::ed25519(&public, Some(&comment)).to_openssh(),
                known_hosts: None,
                host_fingerprints: Vec::new(),
            });
        }
        if let (Some(ssh), Some(hosts)) = (mirror.ssh.as_mut(), known_hosts) {
            let hosts = hosts.unwrap_or_default();
            let mut fingerprints = Vec::with_capacity(hosts.len());
            for host in &hosts {
                fingerprints.push(self.ssh_fingerprint(&host.key).await?);
            }
            let lines: Vec<String> = hosts.iter().map(crate::ssh::KnownHost::to_line).collect();
            ssh.known_hosts = Some(lines.join("\n")).filter(|l| !l.is_empty());
            ssh.host_fingerprints = fingerprints;
        }
        Ok(())
    }
}
