//! Our own status view of a repository: `GET /rest/mirrorfarm/latest/repos/{id}/status`, the
//! one read the widget makes. It answers with ETags (see `conditional`) and, for allowed
//! origins, CORS (see `cors`), so pages elsewhere can poll it cheaply.

use super::{ApiError, ApiResponse, Call, Result, Service};
use crate::admin::RateLimiter;
use crate::mirrors::PullMirror;
use crate::queue::Signals;
use crate::status::RepositoryStatus;
use crate::store::Blobs;
use crate::store::Crypto;
use crate::store::port::Database;

impl<D: Database, C: Crypto, S: Signals, L: RateLimiter, B: Blobs> Service<'_, D, C, S, L, B> {
    pub(super) async fn repository_status(&self, call: &Call<'_>) -> Result<ApiResponse> {
        let hidden = || ApiError::not_found("Repository", "Repository does not exist.");
        let id: i64 = call.params.raw("repositoryId").parse().map_err(|_| hidden())?;
        let who = call.who.as_ref();
        let cutoff = self.now.plus_millis(-self.config.stale_after_ms);
        // Everything the status shows, with the caller's grants: one round trip.
        let snap = self.store.status_snapshot(id, Self::user_id(who), cutoff).await?;
        let repo = snap.repository.ok_or_else(hidden)?;
        Self::require(who, Self::level_on_repository(who, &snap.grants, &repo), call.need(), hidden)?;
        let pull = snap.pull.unwrap_or_else(|| PullMirror::implicit(repo.id, self.now));
        let status = RepositoryStatus::new(
            &repo,
            &snap.remote_mirrors,
            &pull,
            snap.live_jobs,
            &snap.nodes,
            self.now,
            self.config.stale_after_ms,
        )
        .with_fork(snap.fork.is_some().then(|| Self::status_of(&repo, snap.fork.as_ref(), snap.fork_refs)))
        .with_farm(snap.farm);
        // Remembered by the isolate: usually no round trip of its own.
        let banner =
            self.settings().await?.banner.as_ref().filter(|b| b.shown_to(who.is_some())).map(|b| b.message.clone());
        Ok(ApiResponse::json(200, &status.with_banner(banner)))
    }
}
