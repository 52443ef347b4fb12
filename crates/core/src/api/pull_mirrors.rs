//! GitLab's pull-mirror API: `GET/PUT/POST /api/v4/projects/:id/mirror/pull`.

use super::{ApiError, ApiResponse, Call, Result, Service};
use crate::admin::RateLimiter;
use crate::mirrors::{PullMirror, PullMirrorDto, PullMirrorParams, check_pull_update};
use crate::queue::Signals;
use crate::queue::{JobKind, JobReason, NewJob, job_for_mirror_change};
use crate::registry::Repository;
use crate::store::Blobs;
use crate::store::Crypto;
use crate::store::port::Database;
use crate::urls::StoredUrl;

fn not_configured() -> ApiError {
    ApiError::BadRequest("Pull mirror is not configured".into())
}

impl<D: Database, C: Crypto, S: Signals, L: RateLimiter, B: Blobs> Service<'_, D, C, S, L, B> {
    /// The repository, its configured (or implicit) pull mirror, and whether it was configured.
    pub(super) async fn pull_mirror_of(&self, repo: &Repository) -> Result<(PullMirror, bool)> {
        Ok(match self.store.pull_mirror(repo.id).await? {
            Some(m) => (m, true),
            None => (PullMirror::implicit(repo.id, self.now), false),
        })
    }

    pub(super) async fn get_pull_mirror(&self, call: &Call<'_>) -> Result<ApiResponse> {
        let repo = self.mirror_repository(call).await?;
        Self::refuse_archived(&repo)?;
        let upstream = repo.upstream.as_ref().ok_or_else(not_configured)?;
        let (mirror, _) = self.pull_mirror_of(&repo).await?;
        Ok(ApiResponse::json(200, &PullMirrorDto::new(&mirror, upstream)))
    }

    /// Configures the pull mirror (GitLab's `PUT`); queues a pull when it becomes enabled or its URL changes.
    pub(super) async fn update_pull_mirror(&self, call: &Call<'_>) -> Result<ApiResponse> {
        let repo = self.mirror_repository(call).await?;
        let (mirror, url) = self.apply_pull_update(&repo, call.input()?).await?;
        Ok(ApiResponse::json(200, &PullMirrorDto::new(&mirror, &url)))
    }

    /// Checks and saves a pull-mirror change (from `PUT …/mirror/pull` or the Projects API) in
    /// one batch with the pull it queues; returns the settings and the upstream URL now in force.
    pub(super) async fn apply_pull_update(
        &self,
        repo: &Repository,
        params: PullMirrorParams,
    ) -> Result<(PullMirror, StoredUrl)> {
        let (current, configured) = self.pull_mirror_of(repo).await?;
        let change = check_pull_update(params, &current, repo.upstream.as_ref(), &self.config.allowed_hosts, self.now)?;
        let new_url: Option<StoredUrl> = match &change.new_url {
            Some(url) => {
                Some(self.stored_url(url, change.keep_credentials.then_some(repo.upstream.as_ref()).flatten()).await?)
            }
            None => None,
        };
        let was_enabled = configured && current.enabled;
        let job = job_for_mirror_change(
            JobKind::PullMirror,
            repo.id,
            None,
            was_enabled,
            change.mirror.enabled,
            new_url.is_some(),
            self.now,
        );
        self.store.save_pull_mirror(&change.mirror, new_url.as_ref(), job.as_ref()).await?;
        self.mark_queued();
        let url = new_url.or_else(|| repo.upstream.clone()).ok_or_else(not_configured)?;
        Ok((change.mirror, url))
    }

    /// Starts a pull now (GitLab's `POST`): queues one unless one already waits.
    pub(super) async fn start_pull_mirror(&self, call: &Call<'_>) -> Result<ApiResponse> {
        let repo = self.mirror_repository(call).await?;
        Self::refuse_archived(&repo)?;
        let upstream = repo.upstream.as_ref().ok_or_else(not_configured)?;
        let (mirror, _) = self.pull_mirror_of(&repo).await?;
        if !mirror.enabled {
            return Err(ApiError::BadRequest("Pull mirror is disabled".into()));
        }
        let job = NewJob {
            kind: JobKind::PullMirror,
            repository_id: repo.id,
            remote_mirror_id: None,
            reason: JobReason::Manual,
            enqueued_at: self.now,
        };
        self.store.enqueue(&job).await?;
        self.mark_queued();
        Ok(ApiResponse::json(200, &PullMirrorDto::new(&mirror, upstream)))
    }
}
