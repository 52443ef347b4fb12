//! Our own status view of a repository: `GET /rest/mirrorfarm/latest/repos/{id}/status`, the
//! one read the widget makes. It answers with ETags (see `conditional`) and, for allowed
//! origins, CORS (see `cors`), so pages elsewhere can poll it cheaply.

use super::{ApiResponse, Call, Result, Service};
use crate::identity::Level;
use crate::status::RepositoryStatus;
use crate::store::{Crypto, Store};

/// More push mirrors than any repository sensibly has; the status lists at most this many.
const MAX_MIRRORS: u64 = 1000;

impl<S: Store, C: Crypto> Service<'_, S, C> {
    pub(super) async fn repository_status(&self, call: &Call<'_>) -> Result<ApiResponse> {
        let repo = self.repository_at(call, Level::Read).await?;
        // Every mirror, not a page: the verdict is over all of them.
        let (remote, _) = self.store.list_remote_mirrors(repo.id, 0, MAX_MIRRORS).await?;
        let (pull, _) = self.pull_mirror_of(&repo).await?;
        let jobs = self.store.list_jobs(repo.id).await?;
        let nodes = self.store.list_nodes().await?;
        let status = RepositoryStatus::new(&repo, &remote, &pull, jobs, &nodes, self.now, self.config.stale_after_ms);
        Ok(ApiResponse::json(200, &status))
    }
}
