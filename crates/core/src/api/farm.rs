//! The mirror farm's REST API: Bitbucket's mirror side (`/rest/mirroring/…`, seed 000, with the
//! 9.4 names as aliases for the first upstream server), our own upstream-server resource
//! (`/rest/mirrorfarm/…/upstreamServers`), and the hashes a primary publishes for its own
//! repositories (`GET /rest/mirroring/…/repos`).

use crate::admin::RateLimiter;
use crate::store::Blobs;
use serde::Serialize;

use super::{ApiError, ApiResponse, Call, Result, Service};
use crate::farm::{
    ClusterNode, Metadata, MirrorMode, MirrorSettings, MirroredLinks, MirroredRepository, MirroredStatus, NodeAddress,
    REF_CHANGES_DUMP_LIMIT, RefChange, RefSyncQueue, RepoSyncStatus, RepositoryHashes, UpstreamServer,
    UpstreamServerDto, UpstreamServerParams, UpstreamSettingsDto, UpstreamSettingsParams, UpstreamState, UpstreamType,
    ZERO_HASH, metadata_listing,
};
use crate::paging::BitbucketPage;
use crate::queue::Signals;
use crate::registry::{Link, Repository, RepositoryDto};
use crate::store::port::Database;
use crate::store::{Crypto, FarmRepository, RepositoryFilter};
use crate::urls::GitUrl;

fn no_upstream() -> ApiError {
    ApiError::not_found("Upstream server", "No such upstream server.")
}

fn field(name: &str, message: impl Into<String>) -> ApiError {
    ApiError::Field { field: name.into(), message: message.into() }
}

/// A repository as `GET /rest/mirroring/…/repos` shows it: Bitbucket's shape with the hashes a
/// mirror compares its copy with (`EnrichedRepository`).
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "openapi", derive(schemars::JsonSchema))]
pub(crate) struct EnrichedRepository {
    #[serde(flatten)]
    repository: RepositoryDto,
    properties: HashProperties,
}

#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "openapi", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
struct HashProperties {
    content_hash: String,
    metadata_hash: String,
    default_branch_id: String,
}

impl<D: Database, C: Crypto, S: Signals, L: RateLimiter, B: Blobs> Service<'_, D, C, S, L, B> {
    /// The upstream server the path names; the first one added for the 9.4 names without an id.
    async fn upstream_at(&self, call: &Call<'_>) -> Result<UpstreamServer> {
        let raw = call.params.raw("upstreamId");
        let id = if raw.is_empty() { None } else { Some(call.param("upstreamId")?) };
        self.store.upstream(id.as_deref()).await?.ok_or_else(no_upstream)
    }

    /// `POST /rest/mirrorfarm/…/upstreamServers`: adds an upstream server and queues its discovery.
    pub(super) async fn create_upstream(&self, call: &Call<'_>) -> Result<ApiResponse> {
        let params: UpstreamServerParams = call.input()?;
        let kind_text = params.kind.ok_or_else(|| field("type", "type is required: bitbucket, gitlab or gitea."))?;
        let kind = UpstreamType::parse(&kind_text)
            .ok_or_else(|| field("type", format!("{kind_text:?} is not one of bitbucket, gitlab, gitea.")))?;
        let base_url = Self::server_url("baseUrl", params.base_url.as_deref(), &self.config.allowed_hosts)?;
        let api_base_url = match params.api_base_url.as_deref().filter(|u| !u.trim().is_empty()) {
            Some(u) => Self::server_url("apiBaseUrl", Some(u), &self.config.allowed_hosts)?,
            None => base_url.clone(),
        };
        let token_sealed = match params.token.as_deref().map(str::trim).filter(|t| !t.is_empty()) {
            Some(token) => Some(self.crypto.seal(token).await?),
            None => None,
        };
        let hex = self.random_hex(16)?;
        let id = format!("{}-{}-{}-{}-{}", &hex[..8], &hex[8..12], &hex[12..16], &hex[16..20], &hex[20..]);
        let upstream = UpstreamServer {
            id,
            kind,
            base_url,
            api_base_url,
            token_sealed,
            state: UpstreamState::Initializing,
            state_reason: None,
            settings: MirrorSettings { mode: MirrorMode::AllProjects, project_ids: Vec::new() },
            last_discovery: None,
            publishes_hashes: None,
            hashes_listed_at: None,
            refs_listed_at: None,
            created_at: self.now,
        };
        let stored = self.store.insert_upstream(&upstream).await?;
        self.mark_queued();
        Ok(ApiResponse::json(201, &UpstreamServerDto::from(&stored)))
    }

    /// An upstream server's URL: http(s), no credentials, reachable under the host allowlist,
    /// without a trailing slash.
    fn server_url(name: &str, text: Option<&str>, allow: &crate::urls::HostAllowlist) -> Result<String> {
        let text =
            text.map(str::trim).filter(|t| !t.is_empty()).ok_or_else(|| field(name, format!("{name} is required.")))?;
        let url = GitUrl::parse(text).map_err(|e| field(name, e.to_string()))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(field(name, format!("{name} must be an http or https URL.")));
        }
        if url.has_credentials() {
            return Err(field(name, "Give credentials as token, not in the URL."));
        }
        url.check_outbound(allow).map_err(|e| field(name, e.to_string()))?;
        Ok(url.without_credentials().trim_end_matches('/').to_owned())
    }

    /// `DELETE /rest/mirrorfarm/…/upstreamServers/{id}`: the server and its farm repositories go.
    pub(super) async fn delete_upstream(&self, call: &Call<'_>) -> Result<ApiResponse> {
        let id = call.param("upstreamId")?;
        self.store.delete_upstream(&id).await?.ok_or_else(no_upstream)?;
        Ok(ApiResponse::empty(204))
    }

    pub(super) async fn list_upstreams(&self, call: &Call<'_>) -> Result<ApiResponse> {
        let page = BitbucketPage::from_query(&call.query);
        let (servers, more) = self.store.list_upstreams(page.start, page.limit).await?;
        Ok(ApiResponse::json(200, &page.open(servers.iter().map(UpstreamServerDto::from).collect(), more)))
    }

    pub(super) async fn get_upstream(&self, call: &Call<'_>) -> Result<ApiResponse> {
        Ok(ApiResponse::json(200, &UpstreamServerDto::from(&self.upstream_at(call).await?)))
    }

    fn settings_dto(settings: &MirrorSettings) -> UpstreamSettingsDto {
        UpstreamSettingsDto { project_ids: settings.project_ids.clone(), mode: settings.mode }
    }

    /// Saves new settings (queueing a discovery, which adds and removes farm repositories).
    async fn save_settings(&self, upstream: &UpstreamServer, mut settings: MirrorSettings) -> Result<UpstreamServer> {
        settings.project_ids.sort();
        settings.project_ids.dedup();
        let saved = self.store.save_settings(&upstream.id, &settings, self.now).await?.ok_or_else(no_upstream)?;
        self.mark_queued();
        Ok(saved)
    }

    pub(super) async fn get_settings(&self, call: &Call<'_>) -> Result<ApiResponse> {
        Ok(ApiResponse::json(200, &Self::settings_dto(&self.upstream_at(call).await?.settings)))
    }

    pub(super) async fn put_settings(&self, call: &Call<'_>) -> Result<ApiResponse> {
        let upstream = self.upstream_at(call).await?;
        let params: UpstreamSettingsParams = call.input()?;
        let mut settings = upstream.settings.clone();
        if let Some(mode) = params.mode {
            settings.mode = Self::mode(&mode)?;
        }
        if let Some(ids) = params.project_ids {
            settings.project_ids = ids;
        }
        let saved = self.save_settings(&upstream, settings).await?;
        Ok(ApiResponse::json(200, &Self::settings_dto(&saved.settings)))
    }

    fn mode(text: &str) -> Result<MirrorMode> {
        MirrorMode::parse(text.trim())
            .ok_or_else(|| field("mode", format!("{text:?} is not a mirror mode: ALL_PROJECTS or SELECTED_PROJECTS.")))
    }

    /// The request body as JSON (an empty body is `null`).
    fn body_json(call: &Call<'_>) -> Result<serde_json::Value> {
        if call.req.body.iter().all(u8::is_ascii_whitespace) {
            return Ok(serde_json::Value::Null);
        }
        serde_json::from_slice(&call.req.body).map_err(|e| ApiError::BadRequest(format!("malformed request body: {e}")))
    }

    pub(super) async fn get_mode(&self, call: &Call<'_>) -> Result<ApiResponse> {
        Ok(ApiResponse::json(200, &self.upstream_at(call).await?.settings.mode))
    }

    /// `PUT …/settings/mode` with a bare JSON string (a bare word is read too).
    pub(super) async fn put_mode(&self, call: &Call<'_>) -> Result<ApiResponse> {
        let upstream = self.upstream_at(call).await?;
        let text = match Self::body_json(call) {
            Ok(serde_json::Value::String(s)) => s,
            Ok(_) => {
                return Err(field(
                    "mode",
                    "Send the mode as a JSON string: \"ALL_PROJECTS\" or \"SELECTED_PROJECTS\".",
                ));
            }
            Err(_) => String::from_utf8_lossy(&call.req.body).into_owned(),
        };
        let settings = MirrorSettings { mode: Self::mode(&text)?, ..upstream.settings.clone() };
        let saved = self.save_settings(&upstream, settings).await?;
        Ok(ApiResponse::json(200, &saved.settings.mode))
    }

    pub(super) async fn get_projects(&self, call: &Call<'_>) -> Result<ApiResponse> {
        Ok(ApiResponse::json(200, &self.upstream_at(call).await?.settings.project_ids))
    }

    /// The project ids a request names: `{projectId}` in the path, or a JSON array in the body
    /// (strings, or numbers read as their decimal text).
    fn project_ids(call: &Call<'_>) -> Result<Vec<String>> {
        if !call.params.raw("projectId").is_empty() {
            return Ok(vec![call.param("projectId")?]);
        }
        let bad = || field("projectIds", "Send the upstream's project ids as a JSON array of strings.");
        let serde_json::Value::Array(items) = Self::body_json(call)? else { return Err(bad()) };
        items
            .into_iter()
            .map(|v| match v {
                serde_json::Value::String(s) if !s.trim().is_empty() => Ok(s.trim().to_owned()),
                serde_json::Value::Number(n) => Ok(n.to_string()),
                _ => Err(bad()),
            })
            .collect()
    }

    /// `POST …/settings/projects[/{projectId}]`: adds projects; answers the selection.
    pub(super) async fn add_projects(&self, call: &Call<'_>) -> Result<ApiResponse> {
        let upstream = self.upstream_at(call).await?;
        let mut settings = upstream.settings.clone();
        settings.project_ids.extend(Self::project_ids(call)?);
        let saved = self.save_settings(&upstream, settings).await?;
        Ok(ApiResponse::json(200, &saved.settings.project_ids))
    }

    /// `DELETE …/settings/projects[/{projectId}]`: their farm repositories are removed by the
    /// discovery this queues.
    pub(super) async fn remove_projects(&self, call: &Call<'_>) -> Result<ApiResponse> {
        let upstream = self.upstream_at(call).await?;
        let gone = Self::project_ids(call)?;
        let mut settings = upstream.settings.clone();
        settings.project_ids.retain(|p| !gone.contains(p));
        self.save_settings(&upstream, settings).await?;
        Ok(ApiResponse::empty(204))
    }

    pub(super) async fn upstream_progress(&self, call: &Call<'_>) -> Result<ApiResponse> {
        let upstream = self.upstream_at(call).await?;
        Ok(ApiResponse::json(200, &self.store.progress(&upstream.id).await?))
    }

    /// `…/farmNodes`: the farm's nodes as `RestClusterNode`.
    pub(super) async fn farm_nodes(&self, call: &Call<'_>) -> Result<ApiResponse> {
        if !call.params.raw("upstreamId").is_empty() {
            self.upstream_at(call).await?;
        }
        let nodes = self.cluster_nodes().await?;
        Ok(ApiResponse::json(200, &nodes))
    }

    /// The farm's nodes as the cluster resources show them (one round trip).
    pub(super) async fn cluster_nodes(&self) -> Result<Vec<ClusterNode>> {
        let (nodes, _) = self.store.list_nodes(0, 1000).await?;
        Ok(nodes
            .iter()
            .map(|n| {
                // Where it serves clones (its heartbeat says); a node that serves none: its name, port 0.
                let served = n.clone_url.as_deref().and_then(|u| GitUrl::parse(u).ok());
                let host = served.as_ref().map_or_else(|| n.name.clone(), |u| u.host().to_owned());
                let port =
                    served.as_ref().map_or(0, |u| u.port().unwrap_or(if u.scheme() == "https" { 443 } else { 80 }));
                ClusterNode {
                    id: n.id.to_string(),
                    name: n.name.clone(),
                    address: NodeAddress { address: host.clone(), host_name: host, port },
                    local: false,
                    build_version: env!("CARGO_PKG_VERSION").into(),
                }
            })
            .collect())
    }

    /// A farm repository's hashes: its copy's content hash and its metadata's (64 zeros both
    /// until its first sync).
    async fn hashes(&self, repo: &Repository, content: Option<&str>) -> Result<RepositoryHashes> {
        let Some(content) = content else {
            return Ok(RepositoryHashes { content: ZERO_HASH.into(), metadata: ZERO_HASH.into() });
        };
        let listing = metadata_listing(&Metadata {
            project_key: &repo.project.key,
            project_name: &repo.project.name,
            slug: &repo.slug,
            name: &repo.name,
            description: repo.description.as_deref(),
            public: repo.public,
        });
        Ok(RepositoryHashes { content: content.into(), metadata: self.crypto.sha256_hex(listing.as_bytes()).await? })
    }

    async fn sync_status(&self, f: &FarmRepository) -> Result<RepoSyncStatus> {
        let synced = f.initial_sync.and(f.content_hash.as_deref());
        Ok(RepoSyncStatus {
            upstream_id: f.upstream_id.clone(),
            external_repo_id: f.external_repo_id.clone(),
            local_repo_id: f.repository.id,
            local_project_id: f.repository.project.id,
            repo_slug: f.repository.slug.clone(),
            initial_sync_date: f.initial_sync.map(crate::time::Timestamp::millis),
            last_sync_date: f.last_sync.map(crate::time::Timestamp::millis),
            failed_sync_count: f.failed_sync_count,
            hashes: self.hashes(&f.repository, synced).await?,
        })
    }

    /// `…/supportInfo/repoSyncStatus`: a page of every farm repository's sync record.
    pub(super) async fn repo_sync_statuses(&self, call: &Call<'_>) -> Result<ApiResponse> {
        let page = BitbucketPage::from_query(&call.query);
        let (repos, more) = self.store.list_farm_repositories(None, page.start, page.limit).await?;
        let mut values = Vec::with_capacity(repos.len());
        for f in &repos {
            values.push(self.sync_status(f).await?);
        }
        Ok(ApiResponse::json(200, &page.open(values, more)))
    }

    /// `…/supportInfo/projects/{key}/repos/{slug}/repoSyncStatus`: one record.
    pub(super) async fn repo_sync_status(&self, call: &Call<'_>) -> Result<ApiResponse> {
        let (key, slug) = (call.param("projectKey")?, call.param("repositorySlug")?);
        let hidden = || ApiError::not_found("Repository", format!("{key}/{slug} is not a farm repository."));
        let f = self.store.farm_repository_by_slug(&key, &slug).await?.ok_or_else(hidden)?;
        Ok(ApiResponse::json(200, &self.sync_status(&f).await?))
    }

    async fn ref_change_items(&self) -> Result<(Vec<RefChange>, u64)> {
        let (items, count) = self.store.ref_changes(REF_CHANGES_DUMP_LIMIT).await?;
        let values = items
            .into_iter()
            .map(|i| RefChange {
                external_repo_id: i.external_repo_id,
                kind: "snapshot",
                attempt: if i.leased { i.attempt.max(1) } else { i.attempt + 1 },
                created_at: i.enqueued_at.to_iso8601(),
            })
            .collect();
        Ok((values, count))
    }

    pub(super) async fn ref_changes_queue(&self, _call: &Call<'_>) -> Result<ApiResponse> {
        Ok(ApiResponse::json(200, &RefSyncQueue { values: self.ref_change_items().await?.0 }))
    }

    pub(super) async fn ref_changes_count(&self, _call: &Call<'_>) -> Result<ApiResponse> {
        Ok(ApiResponse::json(200, &self.ref_change_items().await?.1))
    }

    /// `…/upstreamServers/{id}/repos/{upstreamRepoId}` (and 9.4's `mirrorRepos/{id}`): where a
    /// farm repository can be cloned. Readers of a held repository need REPO_READ on it.
    pub(super) async fn mirrored_repository(&self, call: &Call<'_>) -> Result<ApiResponse> {
        let upstream = self.upstream_at(call).await?;
        let raw = call.params.raw("upstreamRepoId");
        let external = if raw.is_empty() { call.param("externalRepositoryId")? } else { call.param("upstreamRepoId")? };
        let mirror_name = crate::urls::GitUrl::parse(&call.req.origin)
            .map_or_else(|_| "mirrorfarm".to_owned(), |u| u.host().to_owned());
        let Some(f) = self.store.farm_repository(&upstream.id, &external).await? else {
            return Ok(ApiResponse::json(
                200,
                &Self::mirrored(MirroredStatus::NotMirrored, mirror_name, external, None, None),
            ));
        };
        let hidden = || ApiError::not_found("Repository", "Repository does not exist.");
        let repo = self
            .repository_checked(
                call,
                crate::store::RepositoryKey::Id(f.repository.id),
                crate::identity::Level::Read,
                hidden,
            )
            .await?;
        let status = MirroredStatus::of(f.initial_sync, f.failed_sync_count);
        let push = repo.upstream.as_ref().map(|u| u.plain.clone());
        let mut answer = Self::mirrored(status, mirror_name, external, f.last_sync, push);
        // Clonable where a farm node serves a copy as current as the latest sync.
        answer.links.clone = repo.clone_links();
        answer.clone_urls.clone_from(&answer.links.clone);
        answer.available = status.available() && !answer.clone_urls.is_empty();
        Ok(ApiResponse::json(200, &answer))
    }

    fn mirrored(
        status: MirroredStatus,
        mirror_name: String,
        external: String,
        last_sync: Option<crate::time::Timestamp>,
        push_url: Option<String>,
    ) -> MirroredRepository {
        let push: Vec<Link> = push_url.into_iter().map(|href| Link { href, name: Some("http".into()) }).collect();
        MirroredRepository {
            available: false,
            status,
            mirror_name,
            repository_id: external,
            last_updated: last_sync.map(crate::time::Timestamp::millis),
            clone_urls: Vec::new(),
            push_urls: push.clone(),
            links: MirroredLinks { clone: Vec::new(), push, self_: Vec::new() },
        }
    }

    /// `POST …/repos/{upstreamRepoId}/synchronization[?recreate=true]`: syncs one farm
    /// repository now (ahead of routine work); with `recreate` the node clones it afresh.
    pub(super) async fn repair_repository(&self, call: &Call<'_>) -> Result<ApiResponse> {
        let upstream = self.upstream_at(call).await?;
        let external = call.param("upstreamRepoId")?;
        let hidden = || ApiError::not_found("Repository", format!("Repository {external} is not mirrored here."));
        let f = self.store.farm_repository(&upstream.id, &external).await?.ok_or_else(hidden)?;
        let recreate = call.query.get("recreate").is_some_and(|v| v.eq_ignore_ascii_case("true"));
        self.store.request_repair(f.repository.id, recreate, self.now).await?;
        self.mark_queued();
        Ok(ApiResponse::empty(202))
    }

    /// `GET /rest/mirroring/…/repos`: the repositories the caller may see, each with the hashes
    /// of its copy as a mirror compares them (two round trips).
    pub(super) async fn mirroring_repositories(&self, call: &Call<'_>) -> Result<ApiResponse> {
        let page = BitbucketPage::from_query(&call.query);
        let viewer = Self::viewer(call.who.as_ref());
        let (repos, more) =
            self.store.list_repositories(viewer, &RepositoryFilter::default(), page.start, page.limit).await?;
        let ids: Vec<i64> = repos.iter().map(|r| r.id).collect();
        let hashes = self.store.content_hashes(&ids).await?;
        let base = call.req.origin.clone();
        let mut values = Vec::with_capacity(repos.len());
        for repo in &repos {
            let content = hashes.iter().find(|(id, _)| *id == repo.id).map(|(_, h)| h.as_str());
            let h = self.hashes(repo, content).await?;
            values.push(EnrichedRepository {
                repository: RepositoryDto::new(repo, &base),
                properties: HashProperties {
                    content_hash: h.content,
                    metadata_hash: h.metadata,
                    default_branch_id: format!("refs/heads/{}", repo.default_branch),
                },
            });
        }
        Ok(ApiResponse::json(200, &page.open(values, more)))
    }
}

impl<D: Database, C: Crypto, S: Signals, L: RateLimiter, B: Blobs> Service<'_, D, C, S, L, B> {
    /// `GET /rest/mirrorfarm/…/metrics` (ADMIN): Prometheus text exposition, one round trip.
    pub(super) async fn metrics(&self, _call: &Call<'_>) -> Result<ApiResponse> {
        let m = self.store.metrics(self.now).await?;
        Ok(ApiResponse::text(200, "text/plain; version=0.0.4; charset=utf-8", crate::farm::metrics_text(&m, self.now)))
    }
}
