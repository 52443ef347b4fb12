//! Mesh (seed 002): nodes, connectivity, the control plane's key, support zips and Mesh
//! migration, all SYS_ADMIN; and the node side of Mesh moves and support zips.

use super::{ApiError, ApiResponse, Call, Result, Service};
use crate::admin::RateLimiter;
use crate::mesh::grant::{FetchGrant, GRANT_TTL_MS};
use crate::mesh::migration::{self as plan, LeasedMove, MeshMigrationRequest, Move};
use crate::mesh::{self, MeshNode, MeshNodeInput, MeshNodeState, RegisteredMeshNode};
use crate::migration::{MigrationJobDto, MigrationMessageDto, MigrationType};
use crate::nodes::{FarmNode, JobReport, LeasedJob, Outcome, ResultRecorded};
use crate::paging::BitbucketPage;
use crate::queue::{Job, JobState, Signals, Topic};
use crate::registry::RepositoryDto;
use crate::store::port::Database;
use crate::store::{Blobs, Crypto, MoveEnd};

fn no_node(id: &str) -> ApiError {
    ApiError::not_found("MeshNode", format!("Mesh node {id} does not exist."))
}

fn no_migration(id: &str) -> ApiError {
    ApiError::not_found("MigrationJob", format!("Mesh migration job {id} does not exist."))
}

/// The node name rule shared with `POST …/nodes`.
fn node_name(name: Option<&str>) -> Result<Option<String>> {
    match name.map(str::trim) {
        None => Ok(None),
        Some("") => Err(ApiError::Field { field: "name".into(), message: "A node name cannot be blank.".into() }),
        Some(n) if n.len() > 128 => {
            Err(ApiError::Field { field: "name".into(), message: "Node names are at most 128 characters.".into() })
        }
        Some(n) => Ok(Some(n.to_owned())),
    }
}

fn node_state(state: Option<&str>) -> Result<Option<MeshNodeState>> {
    state
        .map(|s| {
            MeshNodeState::parse_request(s).ok_or_else(|| ApiError::Field {
                field: "state".into(),
                message: format!("{s} is not a node state: AVAILABLE, DRAINING, OFFLINE or DISABLED."),
            })
        })
        .transpose()
}

impl<D: Database, C: Crypto, S: Signals, L: RateLimiter, B: Blobs> Service<'_, D, C, S, L, B> {
    /// The node `{nodeId}` names, or 404.
    async fn mesh_node_at(&self, call: &Call<'_>) -> Result<FarmNode> {
        let raw = call.params.raw("nodeId");
        let id: i64 = raw.trim().parse().map_err(|_| no_node(raw))?;
        self.store.node_by_id(id).await?.ok_or_else(|| no_node(raw))
    }

    /// `GET admin/git/mesh/nodes`: every node, as a list.
    pub(super) async fn mesh_nodes(&self, _call: &Call<'_>) -> Result<ApiResponse> {
        let nodes = self.store.all_nodes().await?;
        Ok(ApiResponse::json(200, &nodes.iter().map(|n| MeshNode::of(n, self.now)).collect::<Vec<_>>()))
    }

    /// `GET admin/git/mesh/nodes/{nodeId}`.
    pub(super) async fn mesh_node(&self, call: &Call<'_>) -> Result<ApiResponse> {
        Ok(ApiResponse::json(200, &MeshNode::of(&self.mesh_node_at(call).await?, self.now)))
    }

    /// `POST admin/git/mesh/nodes`: registers a node by name; its token is answered this once.
    pub(super) async fn register_mesh_node(&self, call: &Call<'_>) -> Result<ApiResponse> {
        let input: MeshNodeInput = call.json()?;
        let name = node_name(input.name.as_deref())?
            .ok_or_else(|| ApiError::Field { field: "name".into(), message: "A node name is required.".into() })?;
        let state = node_state(input.state.as_deref())?;
        if state == Some(MeshNodeState::Draining) {
            return Err(ApiError::Field {
                field: "state".into(),
                message: "A new node has no copies to drain.".into(),
            });
        }
        let (node, token) = self.create_node(&name).await?;
        let node = match state.filter(|s| *s != MeshNodeState::Available) {
            Some(s) => self.store.update_node(node.id, None, Some(s)).await?.unwrap_or(node),
            None => node,
        };
        Ok(ApiResponse::json(200, &RegisteredMeshNode { node: MeshNode::of(&node, self.now), token }))
    }

    /// `PUT admin/git/mesh/nodes/{nodeId}`: renames the node and/or sets its state. `DRAINING`
    /// starts a Mesh migration of every copy it holds onto the other available nodes.
    pub(super) async fn update_mesh_node(&self, call: &Call<'_>) -> Result<ApiResponse> {
        let node = self.mesh_node_at(call).await?;
        let input: MeshNodeInput = call.json()?;
        let name = node_name(input.name.as_deref())?;
        let state = node_state(input.state.as_deref())?;
        let drain = state == Some(MeshNodeState::Draining) && node.state != MeshNodeState::Draining;
        let plan = match drain {
            true => Some(self.drain_plan(&node).await?),
            false => None,
        };
        let taken = |e: crate::store::StoreError| match e {
            crate::store::StoreError::Conflict(_) => {
                ApiError::Conflict(format!("A node named {} already exists.", name.as_deref().unwrap_or_default()))
            }
            other => other.into(),
        };
        let updated = self.store.update_node(node.id, name.as_deref(), state).await.map_err(taken)?;
        let updated = updated.ok_or_else(|| no_node(&node.id.to_string()))?;
        if let Some(moves) = plan {
            let request = serde_json::json!({"drainNodeId": node.id}).to_string();
            let who = Self::user_id(call.principal().ok());
            self.store.start_mesh_migration(who, &request, None, &moves, self.now).await?;
            self.signals.notify(Topic::Queue).await;
        }
        Ok(ApiResponse::json(200, &MeshNode::of(&updated, self.now)))
    }

    /// `DELETE admin/git/mesh/nodes/{nodeId}[?force=true]`: removes a node and its token. A node
    /// holding the only current copy of a repository is kept (409: drain it first) unless forced;
    /// its pinned work and its copies' records go with it.
    pub(super) async fn delete_mesh_node(&self, call: &Call<'_>) -> Result<ApiResponse> {
        let node = self.mesh_node_at(call).await?;
        let force = call.query.get("force").is_some_and(|f| f.eq_ignore_ascii_case("true"));
        let only = self.store.delete_node(node.id, force).await?;
        if only > 0 {
            return Err(ApiError::Conflict(format!(
                "Node {} holds the only current copy of {only} repositories: drain it first, or delete with force=true.",
                node.name
            )));
        }
        Ok(ApiResponse::empty(204))
    }

    /// The moves that drain `node`: each copy it holds, to the other available nodes.
    async fn drain_plan(&self, node: &FarmNode) -> Result<Vec<Move>> {
        let world = self.store.mesh_world(self.now).await?;
        if world.active.is_some() {
            return Err(ApiError::Conflict(
                "A Mesh migration is in progress; wait for it to end (or cancel it) before draining a node.".into(),
            ));
        }
        let targets: Vec<i64> = world
            .nodes
            .iter()
            .filter(|n| n.id != node.id && n.state == MeshNodeState::Available && n.clone_url.is_some())
            .filter(|n| mesh::is_live(n, self.now))
            .map(|n| n.id)
            .collect();
        let held: Vec<i64> =
            world.placement.iter().filter(|(_, holders)| holders.contains(&node.id)).map(|(repo, _)| *repo).collect();
        if targets.is_empty() && !held.is_empty() {
            return Err(ApiError::Conflict(format!(
                "No other available node serves clones, so node {} cannot hand over its copies.",
                node.name
            )));
        }
        let only_here: plan::Placement = held.iter().map(|r| (*r, vec![node.id])).collect();
        Ok(plan::plan(&held, &only_here, &targets, &world.held))
    }

    /// `GET admin/git/mesh/diagnostics/connectivity`: what the nodes measured (one round trip).
    pub(super) async fn mesh_connectivity(&self, _call: &Call<'_>) -> Result<ApiResponse> {
        let (nodes, links) = self.store.nodes_and_links().await?;
        Ok(ApiResponse::json(200, &mesh::connectivity(&nodes, &links)))
    }

    /// `GET admin/git/mesh/config/control-plane.pem`: the key nodes verify the edge's signatures with.
    pub(super) async fn control_plane_pem(&self, _call: &Call<'_>) -> Result<ApiResponse> {
        let key = self.crypto.control_plane_key().await?;
        Ok(ApiResponse::text(200, "text/plain", mesh::grant::public_key_pem(&key)))
    }

    /// A support zip of `node`: a fresh one if there is, else one the node builds now (the
    /// request waits, as a test mail does).
    async fn support_zip_of(&self, node: &FarmNode) -> Result<Vec<u8>> {
        let since = self.now.plus_millis(-mesh::SUPPORT_ZIP_FRESH_MS);
        let zip = match self.store.fresh_support_zip(node.id, since).await? {
            Some(zip) => zip,
            None => {
                if matches!(node.state, MeshNodeState::Offline | MeshNodeState::Disabled)
                    || !mesh::is_live(node, self.now)
                {
                    return Err(ApiError::Unavailable(format!(
                        "Node {} is offline and cannot build a support zip.",
                        node.name
                    )));
                }
                let (zip_id, job_id) = self.store.queue_support_zip(node.id, self.now).await?;
                let job = self.wait_for_job(job_id).await?;
                match self.store.support_zip(zip_id).await? {
                    Some(zip) if zip.state == "READY" => zip,
                    // The node failed to build or upload it, or died holding the job.
                    _ => {
                        return Err(ApiError::Unavailable(format!(
                            "Node {} could not build its support zip: {}",
                            node.name,
                            job.message.unwrap_or_else(|| "it stopped answering".into())
                        )));
                    }
                }
            }
        };
        let bytes =
            self.blobs.get(&mesh::support_zip_key(zip.id)).await.map_err(|e| ApiError::Internal(e.to_string()))?;
        bytes.ok_or_else(|| ApiError::Internal(format!("Support zip {} is missing from blob storage.", zip.id)))
    }

    /// `GET admin/git/mesh/support-zips/{nodeId}`.
    pub(super) async fn mesh_support_zip(&self, call: &Call<'_>) -> Result<ApiResponse> {
        let node = self.mesh_node_at(call).await?;
        let bytes = self.support_zip_of(&node).await?;
        Ok(ApiResponse::bytes(200, "application/octet-stream", bytes))
    }

    /// `GET admin/git/mesh/support-zips`: one zip holding each reachable node's, and a
    /// `README.txt` naming the nodes left out (offline or out of reach).
    pub(super) async fn mesh_support_zips(&self, _call: &Call<'_>) -> Result<ApiResponse> {
        let nodes = self.store.all_nodes().await?;
        let (reachable, away): (Vec<&FarmNode>, Vec<&FarmNode>) = nodes.iter().partition(|n| {
            !matches!(n.state, MeshNodeState::Offline | MeshNodeState::Disabled) && mesh::is_live(n, self.now)
        });
        let mut readme = format!("Support zips of {} node(s).\n", reachable.len());
        for node in &away {
            readme.push_str(&format!("Left out: node {} ({}), {}.\n", node.name, node.id, node.state.as_str()));
        }
        let mut entries = vec![("README.txt".to_owned(), readme.into_bytes())];
        for node in reachable {
            let bytes = self.support_zip_of(node).await?;
            entries.push((format!("{}-{}.zip", node.name.replace(['/', '\\'], "_"), node.id), bytes));
        }
        let zip = mesh::zip::write(&entries).map_err(|e| ApiError::Internal(e.to_string()))?;
        Ok(ApiResponse::bytes(200, "application/octet-stream", zip))
    }

    /// `PUT …/nodes/support-zips/{zipId}` (nodes): the zip a node built, stored in blob storage.
    pub(super) async fn upload_support_zip(&self, call: &Call<'_>) -> Result<ApiResponse> {
        let node = Self::node(call)?;
        let raw = call.params.raw("zipId");
        let missing = || ApiError::not_found("SupportZip", format!("Support zip {raw} does not exist."));
        let id: i64 = raw.parse().map_err(|_| missing())?;
        let zip = self.store.support_zip(id).await?.filter(|z| z.node_id == node.id).ok_or_else(missing)?;
        let body = call.req.body.clone();
        if body.len() < 22 || !body.starts_with(b"PK") {
            return Err(ApiError::BadRequest("The body is not a zip archive.".into()));
        }
        let sha = self.crypto.sha256_hex(&body).await?;
        let size = i64::try_from(body.len()).unwrap_or(i64::MAX);
        self.blobs
            .put(&mesh::support_zip_key(zip.id), body, "application/zip")
            .await
            .map_err(|e| ApiError::Internal(e.to_string()))?;
        self.store.support_zip_uploaded(zip.id, node.id, size, &sha, self.now).await?;
        Ok(ApiResponse::empty(204))
    }

    /// The moves a request asks for, checked: its target nodes, and no migration in progress.
    async fn planned_migration(&self, request: &MeshMigrationRequest) -> Result<(Vec<i64>, Vec<Move>, bool)> {
        let world = self.store.mesh_world(self.now).await?;
        let asked = request
            .targets()
            .map_err(|bad| ApiError::Field { field: "nodeIds".into(), message: format!("{bad} is not a node id.") })?;
        let usable =
            |n: &&FarmNode| n.state == MeshNodeState::Available && n.clone_url.is_some() && mesh::is_live(n, self.now);
        let targets: Vec<i64> = if asked.is_empty() {
            world.nodes.iter().filter(usable).map(|n| n.id).collect()
        } else {
            for id in &asked {
                match world.nodes.iter().find(|n| n.id == *id) {
                    Some(n) if usable(&n) => {}
                    Some(n) => {
                        return Err(ApiError::Field {
                            field: "nodeIds".into(),
                            message: format!("Node {} is not available, live and serving clones.", n.name),
                        });
                    }
                    None => {
                        return Err(ApiError::Field {
                            field: "nodeIds".into(),
                            message: format!("Node {id} does not exist."),
                        });
                    }
                }
            }
            asked
        };
        if targets.is_empty() {
            return Err(ApiError::Conflict("No available node serves clones to move copies onto.".into()));
        }
        let selected = plan::select(request, &world.candidates);
        Ok((selected.clone(), plan::plan(&selected, &world.placement, &targets, &world.held), world.active.is_some()))
    }

    /// `POST migration/mesh`: starts a Mesh migration (one at a time: 503 while one runs).
    pub(super) async fn start_mesh_migration(&self, call: &Call<'_>) -> Result<ApiResponse> {
        let request: MeshMigrationRequest = call.json()?;
        let (_, moves, busy) = self.planned_migration(&request).await?;
        if busy {
            return Err(ApiError::Unavailable(
                "A Mesh migration is already in progress; only one runs at a time.".into(),
            ));
        }
        let text = serde_json::to_string(&request).map_err(|e| ApiError::Internal(e.to_string()))?;
        let who = Self::user_id(call.principal().ok());
        let job = self.store.start_mesh_migration(who, &text, request.max_bandwidth(), &moves, self.now).await?;
        self.signals.notify(Topic::Queue).await;
        Ok(ApiResponse::json(200, &MigrationJobDto::from(&job)))
    }

    /// The job shape of Mesh migration `id`.
    async fn mesh_job_answer(&self, id: i64) -> Result<ApiResponse> {
        let job = self
            .store
            .migration_job(id, Some(MigrationType::Mesh))
            .await?
            .ok_or_else(|| no_migration(&id.to_string()))?;
        Ok(ApiResponse::json(200, &MigrationJobDto::from(&job)))
    }

    /// The summary of Mesh migration `id`.
    async fn mesh_summary_answer(&self, id: i64) -> Result<ApiResponse> {
        let summary = self.store.mesh_summary(Some(id)).await?.ok_or_else(|| no_migration(&id.to_string()))?;
        Ok(ApiResponse::json(200, &summary))
    }

    /// `POST migration/mesh/preview`: the repositories a request would move.
    pub(super) async fn preview_mesh_migration(&self, call: &Call<'_>) -> Result<ApiResponse> {
        let request: MeshMigrationRequest = call.json()?;
        let (selected, _, _) = self.planned_migration(&request).await?;
        let mut repositories = Vec::new();
        for chunk in selected.chunks(500) {
            repositories.extend(self.store.repositories_by_ids(chunk).await?);
        }
        let values: Vec<RepositoryDto> = repositories.iter().map(|r| RepositoryDto::new(r, &call.req.origin)).collect();
        Ok(ApiResponse::json(200, &serde_json::json!({ "repositories": values })))
    }

    fn migration_id(call: &Call<'_>) -> Result<i64> {
        let raw = call.params.raw("jobId");
        raw.trim().parse().map_err(|_| no_migration(raw))
    }

    /// `GET migration/mesh/{jobId}`.
    pub(super) async fn mesh_migration(&self, call: &Call<'_>) -> Result<ApiResponse> {
        self.mesh_job_answer(Self::migration_id(call)?).await
    }

    /// `GET migration/mesh/{jobId}/summary`.
    pub(super) async fn mesh_migration_summary(&self, call: &Call<'_>) -> Result<ApiResponse> {
        self.mesh_summary_answer(Self::migration_id(call)?).await
    }

    /// `GET migration/mesh/summary`: the migration in progress, 404 when none is.
    pub(super) async fn active_mesh_migration(&self, _call: &Call<'_>) -> Result<ApiResponse> {
        let summary = self
            .store
            .mesh_summary(None)
            .await?
            .ok_or_else(|| ApiError::not_found("MigrationJob", "No Mesh migration is in progress."))?;
        Ok(ApiResponse::json(200, &summary))
    }

    /// `GET migration/mesh/summaries`: newest first.
    pub(super) async fn mesh_migration_summaries(&self, call: &Call<'_>) -> Result<ApiResponse> {
        let page = BitbucketPage::from_query(&call.query);
        let (values, more) = self.store.mesh_summaries(page.start, page.limit).await?;
        Ok(ApiResponse::json(200, &page.open(values, more)))
    }

    /// `POST migration/mesh/{jobId}/cancel`: 204; 409 once it has ended.
    pub(super) async fn cancel_mesh_migration(&self, call: &Call<'_>) -> Result<ApiResponse> {
        let id = Self::migration_id(call)?;
        match self.store.cancel_mesh_migration(id, self.now).await? {
            None => Err(no_migration(&id.to_string())),
            Some(false) => {
                Err(ApiError::Conflict(format!("Mesh migration {id} has already ended or is being cancelled.")))
            }
            Some(true) => Ok(ApiResponse::empty(204)),
        }
    }

    /// `GET migration/mesh/{jobId}/messages` (`severity` repeatable: INFO, WARN, ERROR).
    pub(super) async fn mesh_migration_messages(&self, call: &Call<'_>) -> Result<ApiResponse> {
        let id = Self::migration_id(call)?;
        let severities = crate::migration::severity_filter(&call.query)
            .map_err(|e| ApiError::Field { field: "severity".into(), message: e.to_string() })?;
        self.store.migration_job(id, Some(MigrationType::Mesh)).await?.ok_or_else(|| no_migration(&id.to_string()))?;
        let page = BitbucketPage::from_query(&call.query);
        let (messages, more) = self.store.migration_messages(id, &severities, page.start, page.limit).await?;
        let values: Vec<MigrationMessageDto> = messages.iter().map(MigrationMessageDto::from).collect();
        Ok(ApiResponse::json(200, &page.open(values, more)))
    }

    /// `GET migration/mesh/repos`: repositories with their place in the migration in progress
    /// (or `migrationId`); with none, every repository and no state (`state` is then ignored).
    pub(super) async fn mesh_migration_repos(&self, call: &Call<'_>) -> Result<ApiResponse> {
        let page = BitbucketPage::from_query(&call.query);
        let job = match call.query.get("migrationId").map(str::trim).filter(|s| !s.is_empty()) {
            Some(raw) => Some(raw.parse().map_err(|_| no_migration(raw))?),
            None => self.store.mesh_summary(None).await?.map(|s| s.job_id),
        };
        let state = match call.query.get("state").filter(|_| job.is_some()) {
            Some(s) => Some(
                plan::QueueState::parse(&s.to_ascii_uppercase())
                    .ok_or_else(|| ApiError::Field {
                        field: "state".into(),
                        message: format!("{s} is not a migration state."),
                    })?
                    .as_str(),
            ),
            None => None,
        };
        let (rows, more) = self.store.mesh_repositories(job, state, page.start, page.limit).await?;
        let values: Vec<serde_json::Value> = rows
            .iter()
            .map(|(repo, state)| {
                let mut v = serde_json::json!({ "repository": RepositoryDto::new(repo, &call.req.origin) });
                if let (Some(s), Some(o)) = (state, v.as_object_mut()) {
                    o.insert("migrationState".into(), s.clone().into());
                }
                v
            })
            .collect();
        Ok(ApiResponse::json(200, &page.open(values, more)))
    }

    /// A Mesh move whose lease ran out (its node died or stalled): tried again while tries are
    /// left, else failed; cancelled if its migration was. The source's copy serves throughout.
    pub(super) async fn expire_move(&self, job: &Job, lease_id: &str) -> Result<()> {
        let migration_id: i64 = job.payload.as_deref().and_then(|p| p.parse().ok()).unwrap_or_default();
        let ctx = self.store.move_context(job.id, migration_id).await?;
        let why = "Its node stopped answering before the move ended; the source's copy still serves.";
        let end = if ctx.cancelling {
            MoveEnd::Canceled
        } else if job.attempt < crate::mirrors::MAX_TRIES {
            let wait = crate::mirrors::backoff_ms(job.attempt, self.config.retry_base_ms);
            MoveEnd::Retry { at: self.now.plus_millis(wait), message: why }
        } else {
            MoveEnd::Failed { message: why }
        };
        self.store.finish_move(job.id, lease_id, migration_id, 0, end, self.now).await?;
        Ok(())
    }

    /// Fails Mesh moves waiting for a node that stopped answering, so migrations end (the
    /// source's copy still serves). Run by the cron. Returns how many.
    pub async fn fail_stranded_moves(&self) -> Result<u64> {
        Ok(self.store.fail_stranded_moves(self.now).await?)
    }

    /// A leased Mesh move as its target node gets it: the source's clone URL, a fetch grant the
    /// source honours, and the hash the copy must have. `None` (closed, failed) if there is
    /// nothing to fetch from.
    pub(super) async fn leased_move_job(
        &self,
        job: &Job,
        lease_id: &str,
        deadline: i64,
        node: &FarmNode,
    ) -> Result<Option<LeasedJob>> {
        let migration_id: i64 = job.payload.as_deref().and_then(|p| p.parse().ok()).unwrap_or_default();
        let ctx = self.store.move_context(job.id, migration_id).await?;
        let fail = |why: &'static str| MoveEnd::Failed { message: why };
        let end = match (&ctx.repository, &ctx.source, &ctx.source_content) {
            _ if ctx.cancelling => Some(MoveEnd::Canceled),
            (Some(repo), Some(source), Some(content)) => match &source.clone_url {
                Some(base) => {
                    let grant = FetchGrant {
                        repository_id: repo.id,
                        source_node_id: source.id,
                        target_node_id: node.id,
                        expires: self.now.millis() + GRANT_TTL_MS,
                    };
                    let signature = self.crypto.control_plane_sign(&grant.signed_bytes()).await?;
                    return Ok(Some(LeasedJob {
                        repository: Some(
                            self.leased_repository(repo, crate::mirrors::PullMirror::implicit(repo.id, self.now), None)
                                .await?,
                        ),
                        mesh_move: Some(LeasedMove {
                            migration_id,
                            source_node_id: source.id,
                            source_url: format!(
                                "{base}/scm/{}/{}.git",
                                repo.project.key.to_ascii_lowercase(),
                                repo.slug
                            ),
                            grant: grant.encode(&signature),
                            expected_content: content.clone(),
                            max_bytes_per_second: ctx.max_bandwidth,
                        }),
                        ..super::nodes::lease_of(job, lease_id, deadline)
                    }));
                }
                None => Some(fail("The source node no longer serves clones.")),
            },
            (None, _, _) => Some(fail("The repository was deleted.")),
            _ => Some(fail("The source node no longer holds the copy.")),
        };
        if let Some(end) = end {
            self.store.finish_move(job.id, lease_id, migration_id, node.id, end, self.now).await?;
        }
        Ok(None)
    }

    /// A Mesh move's report: a copy whose hash equals the source's is switched to; otherwise the
    /// move is tried again (with the mirrors' backoff) and, after the last try, failed.
    pub(super) async fn report_move(&self, call: &Call<'_>, job: Job, report: &JobReport) -> Result<ApiResponse> {
        let node = Self::node(call)?;
        let migration_id: i64 = job.payload.as_deref().and_then(|p| p.parse().ok()).unwrap_or_default();
        let ctx = self.store.move_context(job.id, migration_id).await?;
        let message = crate::urls::scrub_text(&report.message);
        let equal = report.content_hash.is_some() && report.content_hash == ctx.source_content;
        let worked = matches!(report.outcome, Outcome::Pushed | Outcome::Unchanged);
        let from = ctx.source.as_ref().map_or_else(|| "?".to_owned(), |s| s.name.clone());
        let what = ctx.repository.as_ref().map_or_else(String::new, |r| format!("{}/{}", r.project.key, r.slug));
        let moved = format!("Moved {what} from node {from} to node {}; content hashes equal.", node.name);
        let differs = format!(
            "The copy fetched from node {from} hashes to {}, not the source's {}; the source's copy stays.",
            report.content_hash.as_deref().unwrap_or("nothing"),
            ctx.source_content.as_deref().unwrap_or("nothing")
        );
        let why = if worked { differs } else { format!("Fetching {what} from node {from} failed: {message}") };
        let end = if worked && equal {
            MoveEnd::Moved { content: report.content_hash.as_deref().unwrap_or_default(), message: &moved }
        } else if job.attempt < crate::mirrors::MAX_TRIES && !ctx.cancelling {
            let wait = crate::mirrors::backoff_ms(job.attempt, self.config.retry_base_ms);
            MoveEnd::Retry { at: self.now.plus_millis(wait), message: &why }
        } else {
            MoveEnd::Failed { message: &why }
        };
        let retried = matches!(end, MoveEnd::Retry { .. });
        let recorded = self.store.finish_move(job.id, &report.lease_id, migration_id, node.id, end, self.now).await?;
        if !recorded {
            return Err(ApiError::Conflict("The lease was lost: another node may hold this job now.".into()));
        }
        if retried {
            self.mark_queued();
        }
        self.signals.notify(Topic::Results).await;
        let job = self.store.job(job.id).await?.unwrap_or(Job { state: JobState::Done, ..job });
        Ok(ApiResponse::json(
            200,
            &ResultRecorded { job, update_status: None, removed_repositories: Vec::new(), next: None },
        ))
    }
}
