//! Our own read-only view of a repository's work queue.

use super::{ApiError, ApiResponse, Call, Result, Service};
use crate::identity::Level;
use crate::paging::BitbucketPage;
use crate::store::{Crypto, Store};

impl<S: Store, C: Crypto> Service<'_, S, C> {
    pub(super) async fn list_jobs(&self, call: &Call<'_>) -> Result<ApiResponse> {
        let hidden = || ApiError::not_found("Repository", "Repository does not exist.");
        let id: i64 = call.params.raw("repositoryId").parse().map_err(|_| hidden())?;
        let repo = self.store.repository_by_id(id).await?.ok_or_else(hidden)?;
        let level = self.repository_level(call.who.as_ref(), &repo).await?;
        Self::require(call.who.as_ref(), level, Level::Read, hidden)?;
        let jobs = self.store.list_jobs(repo.id).await?;
        Ok(ApiResponse::json(200, &BitbucketPage::from_query(&call.query).slice(&jobs)))
    }
}
