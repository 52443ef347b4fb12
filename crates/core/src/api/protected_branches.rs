//! GitLab's protected branches API: `GET/POST /projects/:id/protected_branches` and
//! `GET/DELETE /projects/:id/protected_branches/:name`. The rules drive what protected-only
//! mirrors carry (see [`crate::mirrors::protected`]).

use super::{ApiError, ApiResponse, Call, Result, Service};
use crate::admin::RateLimiter;
use crate::mirrors::protected::{ProtectedBranchDto, ProtectedBranchError, ProtectedBranchParams};
use crate::paging::GitLabPage;
use crate::queue::Signals;
use crate::store::port::Database;
use crate::store::{Blobs, Crypto};

fn rule_not_found() -> ApiError {
    ApiError::not_found("Protected Branch", "Protected branch does not exist.")
}

impl From<ProtectedBranchError> for ApiError {
    fn from(e: ProtectedBranchError) -> Self {
        let field = match &e {
            ProtectedBranchError::MissingName | ProtectedBranchError::InvalidName(_) => "name",
            ProtectedBranchError::AccessLevel(field) => field,
        };
        ApiError::Field { field: field.into(), message: e.to_string() }
    }
}

impl<D: Database, C: Crypto, S: Signals, L: RateLimiter, B: Blobs> Service<'_, D, C, S, L, B> {
    /// `GET …/protected_branches[?search=]`, paged as GitLab pages.
    pub(super) async fn list_protected_branches(&self, call: &Call<'_>) -> Result<ApiResponse> {
        let repo = self.gitlab_repository(call, call.params.raw("id")).await?;
        let page = GitLabPage::from_query(&call.query);
        let (rules, total) = self
            .store
            .protected_branches(repo.id, call.query.get("search"), page.offset(), u64::from(page.per_page))
            .await?;
        let body: Vec<ProtectedBranchDto> = rules.iter().map(ProtectedBranchDto::from).collect();
        Ok(ApiResponse::json(200, &body).with_headers(page.headers(&call.url(), &call.query, total)))
    }

    /// `GET …/protected_branches/:name`: one rule by its exact name or pattern.
    pub(super) async fn get_protected_branch(&self, call: &Call<'_>) -> Result<ApiResponse> {
        let repo = self.gitlab_repository(call, call.params.raw("id")).await?;
        let name = call.param("name")?;
        let rule = self.store.protected_branch(repo.id, &name).await?.ok_or_else(rule_not_found)?;
        Ok(ApiResponse::json(200, &ProtectedBranchDto::from(&rule)))
    }

    /// `POST …/protected_branches`: 409 if the name or pattern is already protected.
    pub(super) async fn protect_branch(&self, call: &Call<'_>) -> Result<ApiResponse> {
        let repo = self.gitlab_repository(call, call.params.raw("id")).await?;
        let rule = call.input::<ProtectedBranchParams>()?.check()?;
        match self.store.insert_protected_branch(repo.id, &rule, self.now).await? {
            Some(stored) => Ok(ApiResponse::json(201, &ProtectedBranchDto::from(&stored))),
            None => Err(ApiError::Conflict(format!("Protected branch '{}' already exists", rule.name))),
        }
    }

    /// `DELETE …/protected_branches/:name`.
    pub(super) async fn unprotect_branch(&self, call: &Call<'_>) -> Result<ApiResponse> {
        let repo = self.gitlab_repository(call, call.params.raw("id")).await?;
        let name = call.param("name")?;
        if self.store.delete_protected_branch(repo.id, &name).await? {
            Ok(ApiResponse::empty(204))
        } else {
            Err(rule_not_found())
        }
    }
}
