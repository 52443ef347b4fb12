//! Bitbucket's project and repository resources.

use super::{ApiError, ApiResponse, Call, Result, Service};
use crate::admin::RateLimiter;
use crate::identity::Level;
use crate::paging::BitbucketPage;
use crate::queue::Signals;
use crate::registry::{
    self, NewProject, NewRepository, Project, ProjectDto, ProjectParams, RegistryError, Repository, RepositoryDto,
    RepositoryParams,
};
use crate::store::Blobs;
use crate::store::port::Database;
use crate::store::{Crypto, Grants, RepositoryFilter, RepositoryKey};
use crate::urls::GitUrl;

fn field(name: &str, e: impl std::fmt::Display) -> ApiError {
    ApiError::Field { field: name.into(), message: e.to_string() }
}

fn no_project(key: &str) -> ApiError {
    ApiError::not_found("Project", format!("Project {key} does not exist."))
}

fn no_repository(key: &str, slug: &str) -> ApiError {
    ApiError::not_found("Project", format!("Repository {key}/{slug} does not exist."))
}

impl<D: Database, C: Crypto, S: Signals, L: RateLimiter, B: Blobs> Service<'_, D, C, S, L, B> {
    /// The project named by `{projectKey}`, if the caller has the route's level on it. A caller who
    /// can read any repository of a project may read the project. One round trip.
    pub(super) async fn project_for(&self, call: &Call<'_>) -> Result<Project> {
        let need = call.need();
        let key = call.param("projectKey")?;
        let who = call.who.as_ref();
        let (project, grants, sees_inside) =
            self.store.project_access(&key, Self::viewer(who), Self::user_id(who)).await?;
        let project = project.ok_or_else(|| no_project(&key))?;
        let mut level = Self::level_on_project(who, &grants, &project);
        // Who sees a repository inside sees the project: asking more of it is refused, not hidden.
        if level.is_none() && sees_inside {
            level = Some(Level::Read);
        }
        Self::require(who, level, need, || no_project(&key))?;
        Ok(project)
    }

    /// The repository named by `{projectKey}/{repositorySlug}`, checked for the route's level.
    pub(super) async fn repository_for(&self, call: &Call<'_>) -> Result<Repository> {
        Ok(self.repository_for_with_grants(call).await?.0)
    }

    /// The same, with the caller's grants (read in the same round trip).
    pub(super) async fn repository_for_with_grants(&self, call: &Call<'_>) -> Result<(Repository, Grants)> {
        let key = call.param("projectKey")?;
        let slug = call.param("repositorySlug")?.to_ascii_lowercase();
        self.repository_with_grants(call, RepositoryKey::Slug(&key, &slug), call.need(), || no_repository(&key, &slug))
            .await
    }

    pub(super) async fn list_projects(&self, call: &Call<'_>) -> Result<ApiResponse> {
        let page = BitbucketPage::from_query(&call.query);
        let (projects, more) =
            self.store.list_projects(Self::viewer(call.who.as_ref()), page.start, page.limit).await?;
        let values: Vec<ProjectDto> = projects.iter().map(|p| ProjectDto::new(p, &call.req.origin)).collect();
        Ok(ApiResponse::json(200, &page.open(values, more)))
    }

    pub(super) async fn create_project(&self, call: &Call<'_>) -> Result<ApiResponse> {
        call.principal()?;
        let params: ProjectParams = call.input()?;
        let key = params.key.ok_or_else(|| field("key", "A project key is required."))?;
        let key = registry::validate_project_key(&key).map_err(|e| field("key", e))?;
        let name = params.name.ok_or_else(|| field("name", "A project name is required."))?;
        let name = registry::validate_name(&name).map_err(|e| field("name", e))?;
        let new = NewProject {
            key,
            name,
            description: params.description.filter(|d| !d.is_empty()),
            public: params.public.unwrap_or(false),
            created_at: self.now,
        };
        let project = self.store.insert_project(&new).await?;
        Ok(ApiResponse::json(201, &ProjectDto::new(&project, &call.req.origin)))
    }

    pub(super) async fn get_project(&self, call: &Call<'_>) -> Result<ApiResponse> {
        let project = self.project_for(call).await?;
        Ok(ApiResponse::json(200, &ProjectDto::new(&project, &call.req.origin)))
    }

    pub(super) async fn delete_project(&self, call: &Call<'_>) -> Result<ApiResponse> {
        let project = self.project_for(call).await?;
        if project.is_personal() {
            return Err(ApiError::Conflict(format!(
                "{} is a personal project: it is removed with its user, not on its own.",
                project.key
            )));
        }
        // One statement: a repository created meanwhile keeps its project.
        if !self.store.delete_empty_project(project.id).await? {
            return Err(ApiError::Conflict(format!(
                "The project \"{}\" cannot be deleted because it has repositories.",
                project.key
            )));
        }
        Ok(ApiResponse::empty(204))
    }

    pub(super) async fn list_repositories(&self, call: &Call<'_>, in_project: bool) -> Result<ApiResponse> {
        let project_id = if in_project { Some(self.project_for(call).await?.id) } else { None };
        let filter = RepositoryFilter {
            project_id,
            project_key: call.query.get("projectkey").map(str::to_owned),
            name: call.query.get("name").map(str::to_owned),
        };
        let page = BitbucketPage::from_query(&call.query);
        let viewer = Self::viewer(call.who.as_ref());
        let (repos, more) = self.store.list_repositories(viewer, &filter, page.start, page.limit).await?;
        let values: Vec<RepositoryDto> = repos.iter().map(|r| RepositoryDto::new(r, &call.req.origin)).collect();
        Ok(ApiResponse::json(200, &page.open(values, more)))
    }

    pub(super) async fn create_repository(&self, call: &Call<'_>) -> Result<ApiResponse> {
        let project = self.project_for(call).await?;
        let params: RepositoryParams = call.input()?;
        let name = params.name.ok_or_else(|| field("name", RegistryError::NameLength))?;
        let slug = registry::repository_slug(&name).map_err(|e| field("name", e))?;
        if let Some(scm) = params.scm_id
            && scm != "git"
        {
            return Err(field("scmId", format!("{scm:?} is not a supported SCM; only \"git\" is.")));
        }
        let default_branch = match params.default_branch {
            Some(b) => registry::validate_branch_name(&b).map_err(|e| field("defaultBranch", e))?,
            // The instance's default branch, if an administrator set one.
            None => self.settings().await?.default_branch.clone().unwrap_or_else(|| "main".to_owned()),
        };
        let upstream = match params.upstream_url.filter(|u| !u.trim().is_empty()) {
            None => None,
            Some(text) => {
                let url = GitUrl::parse(text.trim()).map_err(|e| field("upstreamUrl", e))?;
                url.check_outbound(&self.config.allowed_hosts).map_err(|e| field("upstreamUrl", e))?;
                Some(self.stored_url(&url, None).await?)
            }
        };
        let new = NewRepository {
            project_id: project.id,
            name: registry::validate_name(&name).map_err(|e| field("name", e))?,
            slug,
            description: params.description.filter(|d| !d.is_empty()),
            default_branch,
            public: params.public.unwrap_or(false),
            forkable: params.forkable.unwrap_or(true),
            upstream,
            hierarchy_id: self.random_hex(10)?,
            origin_id: None,
            created_at: self.now,
        };
        let repo = self.store.insert_repository(&new).await?;
        Ok(ApiResponse::json(201, &RepositoryDto::new(&repo, &call.req.origin)))
    }

    pub(super) async fn get_repository(&self, call: &Call<'_>) -> Result<ApiResponse> {
        let repo = self.repository_for(call).await?;
        // A fork carries its full origin, as Bitbucket's does: one more round trip, for forks only.
        let origin = self.store.origin_of(&repo).await?;
        let base = &call.req.origin;
        Ok(ApiResponse::json(200, &RepositoryDto::new(&repo, base).with_origin(origin.as_ref(), base)))
    }
}
