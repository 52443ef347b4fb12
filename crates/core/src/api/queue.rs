//! Our own read-only view of a repository's work queue.

use super::{ApiResponse, Call, Result, Service};
use crate::admin::RateLimiter;
use crate::paging::BitbucketPage;
use crate::queue::Signals;
use crate::store::Blobs;
use crate::store::Crypto;
use crate::store::port::Database;

impl<D: Database, C: Crypto, S: Signals, L: RateLimiter, B: Blobs> Service<'_, D, C, S, L, B> {
    pub(super) async fn list_jobs(&self, call: &Call<'_>) -> Result<ApiResponse> {
        let repo = self.repository_at(call).await?;
        let page = BitbucketPage::from_query(&call.query);
        let (jobs, more) = self.store.list_jobs(repo.id, page.start, page.limit).await?;
        Ok(ApiResponse::json(200, &page.open(jobs, more)))
    }
}
