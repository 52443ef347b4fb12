//! Our own read-only view of a repository's work queue.

use super::{ApiResponse, Call, Result, Service};
use crate::identity::Level;
use crate::paging::BitbucketPage;
use crate::store::{Crypto, Store};

impl<S: Store, C: Crypto> Service<'_, S, C> {
    pub(super) async fn list_jobs(&self, call: &Call<'_>) -> Result<ApiResponse> {
        let repo = self.repository_at(call, Level::Read).await?;
        let jobs = self.store.list_jobs(repo.id).await?;
        Ok(ApiResponse::json(200, &BitbucketPage::from_query(&call.query).slice(&jobs)))
    }
}
