//! Forks and Bitbucket's ref sync (`/rest/sync/latest/…`): creating and listing forks, the sync
//! status, switching sync on and off, and MERGE / DISCARD of one ref.
//!
//! Work that needs git (the sync run when sync is switched on, MERGE, DISCARD) is queued ahead of
//! routine work, and the request waits for a node's result up to `Config::sync_wait_ms`.

use super::{ApiError, ApiResponse, Call, FieldError, Fields, FromFields, Result, Service};
use crate::admin::RateLimiter;
use crate::forks::{ForkAction, RefSyncStatus, RejectedRef, SyncAction, SyncToggle, SynchronizeRequest};
use crate::identity::Level;
use crate::paging::BitbucketPage;
use crate::queue::{Job, JobState, Signals, Topic};
use crate::registry::{self, NewRepository, Repository, RepositoryDto};
use crate::store::Blobs;
use crate::store::port::Database;
use crate::store::{Crypto, ForkSync, RepositoryKey, StoreError};
use crate::urls::GitUrl;

/// What `POST /rest/api/latest/projects/{key}/repos/{slug}` sends to fork a repository (read
/// leniently, as every input: JSON, form or query).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(schemars::JsonSchema), schemars(rename_all = "camelCase"))]
pub struct ForkParams {
    /// The fork's name (default: the origin's).
    pub name: Option<String>,
    /// Ignored (the slug follows the name), as Bitbucket.
    pub slug: Option<String>,
    /// The project to fork into (default: the origin's).
    pub project: Option<ProjectKey>,
    /// The fork's default branch (default: the origin's).
    pub default_branch: Option<String>,
    /// Refused: a fork has its origin's SCM.
    pub scm_id: Option<String>,
    /// Where the fork's refs live (ours; required): sync reads and writes them there.
    pub url: Option<String>,
}

/// `{key}` of a project.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(schemars::JsonSchema))]
pub struct ProjectKey {
    /// The project key.
    pub key: Option<String>,
}

impl FromFields for ForkParams {
    fn from_fields(fields: &Fields) -> std::result::Result<Self, FieldError> {
        let project = match fields.object("project")? {
            Some(p) => Some(ProjectKey { key: p.string("key")? }),
            None => None,
        };
        Ok(Self {
            name: fields.string("name")?,
            slug: fields.string("slug")?,
            project,
            default_branch: fields.string("defaultBranch")?,
            scm_id: fields.string("scmId")?,
            url: fields.string("url")?,
        })
    }
}

fn field(name: &str, message: impl Into<String>) -> ApiError {
    ApiError::Field { field: name.into(), message: message.into() }
}

fn no_repository(call: &Call<'_>) -> ApiError {
    let (key, slug) = (call.params.raw("projectKey"), call.params.raw("repositorySlug"));
    ApiError::not_found("Repository", format!("Repository {key}/{slug} does not exist."))
}

/// Why a repository's sync cannot run, if it cannot.
fn unavailable_reason(repo: &Repository, fork: Option<&ForkSync>) -> Option<String> {
    match (fork, repo.origin_id) {
        (None, _) => Some(format!("{}/{} is not a fork: only forks are synchronized.", repo.project.key, repo.slug)),
        (Some(f), None) => Some(format!("The origin repository {} was deleted.", f.origin_name)),
        (Some(f), Some(_)) if !f.owner_reads_origin => Some(format!(
            "{}/{} is a personal fork and its owner can no longer read the origin {}.",
            repo.project.key, repo.slug, f.origin_name
        )),
        (Some(_), Some(_)) => None,
    }
}

impl<D: Database, C: Crypto, S: Signals, L: RateLimiter, B: Blobs> Service<'_, D, C, S, L, B> {
    /// A repository's fork view, checked for the route's level: repository, fork settings and
    /// out-of-step refs in one round trip.
    async fn fork_for(&self, call: &Call<'_>) -> Result<(Repository, Option<ForkSync>, RefSyncStatus)> {
        let key = call.param("projectKey")?;
        let slug = call.param("repositorySlug")?.to_ascii_lowercase();
        let who = call.who.as_ref();
        let view = self.store.fork_view(RepositoryKey::Slug(&key, &slug), Self::user_id(who)).await?;
        let repo = view.repository.ok_or_else(|| no_repository(call))?;
        Self::require(who, Self::level_on_repository(who, &view.grants, &repo), call.need(), || no_repository(call))?;
        let status = Self::status_of(&repo, view.fork.as_ref(), view.refs);
        Ok((repo, view.fork, status))
    }

    pub(super) fn status_of(
        repo: &Repository,
        fork: Option<&ForkSync>,
        refs: Vec<(String, crate::forks::RefSyncState)>,
    ) -> RefSyncStatus {
        let reason = unavailable_reason(repo, fork);
        let enabled = fork.is_some_and(|f| f.enabled);
        let last_sync = fork.and_then(|f| f.last_sync).map(crate::time::Timestamp::millis);
        let mut status = RefSyncStatus::new(reason.is_none(), enabled, last_sync, refs);
        status.unavailable_reason = reason;
        status.last_error = fork.and_then(|f| f.last_error.clone());
        status
    }

    /// `POST /rest/api/latest/projects/{key}/repos/{slug}`: forks the repository. REPO_READ on the
    /// origin is the route's; PROJECT_ADMIN on the target project is checked once the body names it.
    pub(super) async fn create_fork(&self, call: &Call<'_>) -> Result<ApiResponse> {
        let who = call.principal()?;
        let origin = self.repository_for(call).await?;
        let params: ForkParams = call.input()?;
        if params.scm_id.is_some() {
            return Err(field("scmId", "A fork has its origin's SCM; scmId may not be given."));
        }
        if !origin.forkable {
            return Err(ApiError::Conflict(format!("{}/{} may not be forked.", origin.project.key, origin.slug)));
        }
        let project_key = match params.project {
            // Bitbucket's default: the caller's personal project.
            None => crate::registry::personal_project_key(&who.user.slug),
            Some(ProjectKey { key: Some(key) }) => key,
            Some(ProjectKey { key: None }) => return Err(field("project", "The project to fork into needs a key.")),
        };
        let text = params.url.filter(|u| !u.trim().is_empty()).ok_or_else(|| {
            field("url", "A fork needs url: the git location of its own refs, which sync reads and writes.")
        })?;
        let url = GitUrl::parse(text.trim()).map_err(|e| field("url", e.to_string()))?;
        url.check_outbound(&self.config.allowed_hosts).map_err(|e| field("url", e.to_string()))?;
        let name = params.name.unwrap_or_else(|| origin.name.clone());
        let slug = registry::repository_slug(&name).map_err(|e| field("name", e.to_string()))?;
        let default_branch = match params.default_branch {
            Some(b) => registry::validate_branch_name(&b).map_err(|e| field("defaultBranch", e.to_string()))?,
            None => origin.default_branch.clone(),
        };
        let (project, grants, sees_inside) =
            self.store.project_access(&project_key, Self::viewer(Some(who)), Self::user_id(Some(who))).await?;
        let hidden = || ApiError::not_found("Project", format!("Project {project_key} does not exist."));
        let project = project.ok_or_else(hidden)?;
        // Who sees a repository inside sees the project: asking more of it is refused, not hidden.
        let level = Self::level_on_project(Some(who), &grants, &project).or(sees_inside.then_some(Level::Read));
        Self::require(Some(who), level, Level::Admin, hidden)?;
        let new = NewRepository {
            project_id: project.id,
            name: registry::validate_name(&name).map_err(|e| field("name", e.to_string()))?,
            slug,
            description: origin.description.clone(),
            default_branch,
            public: false,
            forkable: true,
            upstream: None,
            hierarchy_id: origin.hierarchy_id.clone(),
            origin_id: Some(origin.id),
            created_at: self.now,
        };
        let stored = self.stored_url(&url, None).await?;
        let origin_name = format!("{}/{}", origin.project.key, origin.slug);
        let fork = self.store.insert_fork(&new, &origin_name, &stored).await.map_err(|e| match e {
            StoreError::Conflict(_) => {
                field("name", format!("This repository name is already taken in {project_key}."))
            }
            other => other.into(),
        })?;
        let dto = RepositoryDto::new(&fork, &call.req.origin).with_origin(Some(&origin), &call.req.origin);
        Ok(ApiResponse::json(201, &dto))
    }

    /// `GET …/repos/{slug}/forks`: the direct forks the caller may see.
    pub(super) async fn list_forks(&self, call: &Call<'_>) -> Result<ApiResponse> {
        let origin = self.repository_for(call).await?;
        let page = BitbucketPage::from_query(&call.query);
        let viewer = Self::viewer(call.who.as_ref());
        let (forks, more) = self.store.list_forks(origin.id, viewer, page.start, page.limit).await?;
        let base = &call.req.origin;
        let values: Vec<RepositoryDto> =
            forks.iter().map(|f| RepositoryDto::new(f, base).with_origin(Some(&origin), base)).collect();
        Ok(ApiResponse::json(200, &page.open(values, more)))
    }

    /// `GET /rest/sync/latest/projects/{key}/repos/{slug}[?at=]`: one round trip.
    pub(super) async fn fork_sync_status(&self, call: &Call<'_>) -> Result<ApiResponse> {
        let (_, _, status) = self.fork_for(call).await?;
        let status = match call.query.get("at") {
            Some(at) => status.at(at),
            None => status,
        };
        Ok(ApiResponse::json(200, &status))
    }

    /// `POST /rest/sync/latest/projects/{key}/repos/{slug}` `{enabled}`: switching on syncs before
    /// answering (200 with the status); switching off answers 204.
    pub(super) async fn set_fork_sync(&self, call: &Call<'_>) -> Result<ApiResponse> {
        // Who may switch sync is checked before what they sent.
        let (repo, fork, _) = self.fork_for(call).await?;
        let toggle: SyncToggle = call.input()?;
        let enabled = toggle.enabled.ok_or_else(|| field("enabled", "enabled (true or false) is required."))?;
        if let Some(reason) = unavailable_reason(&repo, fork.as_ref()) {
            return Err(ApiError::Conflict(format!("Synchronization is not available: {reason}")));
        }
        if enabled {
            self.audit_until_the_node_answers();
        }
        let job = self.store.set_fork_sync(repo.id, enabled, self.now, enabled).await?;
        let Some(job) = job else { return Ok(ApiResponse::empty(204)) };
        self.wait_for_job(job).await?;
        let (fork, refs) = self.store.fork_state(repo.id).await?;
        Ok(ApiResponse::json(200, &Self::status_of(&repo, fork.as_ref(), refs)))
    }

    /// `POST …/synchronize` `{refId, action, context}`: MERGE (a DIVERGED ref; 200 with the ref,
    /// now AHEAD) or DISCARD (the origin's value, or deleted; 204), carried out by a node.
    pub(super) async fn synchronize_ref(&self, call: &Call<'_>) -> Result<ApiResponse> {
        let who = call.principal()?;
        // Who may synchronize is checked before what they sent.
        let (repo, fork, status) = self.fork_for(call).await?;
        let asked: SynchronizeRequest = call.input()?;
        let ref_id =
            asked.ref_id.filter(|r| !r.trim().is_empty()).ok_or_else(|| field("refId", "refId is required."))?;
        let action = match asked.action.as_deref().map(str::to_ascii_uppercase).as_deref() {
            Some("MERGE") => SyncAction::Merge,
            Some("DISCARD") => SyncAction::Discard,
            Some("REBASE") => return Err(ApiError::NotImplemented("The REBASE action is not supported.".into())),
            Some(other) => {
                return Err(field("action", format!("{other:?} is not a synchronization action (MERGE or DISCARD).")));
            }
            None => return Err(field("action", "action (MERGE or DISCARD) is required.")),
        };
        if let Some(reason) = unavailable_reason(&repo, fork.as_ref()) {
            return Err(ApiError::Conflict(format!("Synchronization is not available: {reason}")));
        }
        if !fork.as_ref().is_some_and(|f| f.enabled) {
            return Err(ApiError::Conflict("Synchronization is not enabled for this repository.".into()));
        }
        let rejected = status.find(&ref_id).cloned().ok_or_else(|| {
            ApiError::Conflict(format!("{ref_id} is already synchronized with the origin (as of the last sync)."))
        })?;
        if action == SyncAction::Merge && rejected.state != crate::forks::RefSyncState::Diverged {
            return Err(ApiError::Conflict(format!(
                "{} is {}, not DIVERGED: only diverged refs can be merged.",
                rejected.id,
                rejected.state.as_str()
            )));
        }
        let message = asked.context.and_then(|c| c.commit_message).filter(|m| !m.trim().is_empty());
        let payload = ForkAction {
            action,
            ref_name: rejected.id.clone(),
            message: (action == SyncAction::Merge)
                .then(|| message.unwrap_or_else(|| crate::forks::default_merge_message(&rejected.display_id))),
            author_name: Some(who.user.display_name.clone()),
            author_email: Some(
                who.user.email.clone().unwrap_or_else(|| format!("{}@mirrorfarm.invalid", who.user.slug)),
            ),
            nonce: self.random_hex(8)?,
        };
        let text = serde_json::to_string(&payload).map_err(|e| ApiError::Internal(e.to_string()))?;
        self.audit_until_the_node_answers();
        let job = self.store.request_fork_job(repo.id, &text, self.now).await?;
        let job = self.wait_for_job(job).await?;
        match job.outcome.as_deref() {
            Some("conflict") => return Err(ApiError::Conflict(job.message.unwrap_or_default())),
            Some("error") | None => {
                let why = job.message.unwrap_or_else(|| "the farm node gave no reason".into());
                return Err(ApiError::Conflict(format!("{} could not be synchronized: {why}", rejected.id)));
            }
            Some(_) => {}
        }
        let (fork, refs) = self.store.fork_state(repo.id).await?;
        let now = Self::status_of(&repo, fork.as_ref(), refs);
        Ok(match now.find(&rejected.id) {
            Some(still) => ApiResponse::json(200, &RejectedRef::clone(still)),
            None => ApiResponse::empty(204),
        })
    }

    /// Before the write of a request that then waits for a node ([`Service::wait_for_job`]): its
    /// audit event goes in with the write as the FAILURE the request answers if no node finishes
    /// in time, and becomes SUCCESS only once the request has succeeded.
    pub(super) fn audit_until_the_node_answers(&self) {
        self.store.audit_provisionally(503);
    }

    /// Waits for a node to finish job `id`, up to `Config::sync_wait_ms`: the queue is woken
    /// first, then each finished job wakes this request to look. 503 if no node finished it in
    /// time (the job stays queued and still runs).
    pub(super) async fn wait_for_job(&self, id: i64) -> Result<Job> {
        self.signals.notify(Topic::Queue).await;
        let until = self.now.plus_millis(self.config.sync_wait_ms);
        loop {
            let seen = self.signals.generation(Topic::Results).await;
            let job = self.store.job(id).await?.ok_or_else(|| ApiError::Internal(format!("job {id} vanished")))?;
            // Only the results of awaited kinds wake this request.
            debug_assert!(job.kind.is_awaited(), "a request waits for a {:?} job, whose result wakes nobody", job.kind);
            if matches!(job.state, JobState::Done | JobState::Failed) {
                return Ok(job);
            }
            let remaining = until.millis() - self.clock().millis();
            let woken = match seen {
                Some(seen) if remaining > 0 => self.signals.wait(Topic::Results, seen, remaining).await,
                _ => None,
            };
            if woken.is_none() {
                return Err(ApiError::Unavailable(format!(
                    "No farm node took the work within {} s; it stays queued and will still run.",
                    self.config.sync_wait_ms / 1000
                )));
            }
        }
    }
}
