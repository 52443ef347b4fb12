//! Migration exports and imports (seed 002): the admins' routes, the part of a leased
//! `MIGRATION_EXPORT` / `MIGRATION_IMPORT` job a farm node gets, and the nodes' routes that
//! report progress, create imported repositories and move archives to and from R2.
//!
//! The node does the git work (bundling, unbundling, hashing); every decision — what is
//! selected, what an archive may hold, whether a repository is created or skipped, whether the
//! job goes on — is made here.

use std::collections::HashMap;

use serde_json::Value;

use super::identity::field;
use super::{ApiError, ApiResponse, BlobTransfer, Call, Result, Service};
use crate::admin::RateLimiter;
use crate::migration::archive::{
    self, ArchiveError, ExportItem, ExportRequest, ImportAnswer, ImportOutcome, ImportedRepository, LeasedExport,
    LeasedMigration, Manifest, ManifestFork, ManifestGrant, ManifestProject, ManifestPull, ManifestRepository,
    MigrationAck, MigrationProgress, Preview, PreviewScope,
};
use crate::migration::{
    MigrationError, MigrationJob, MigrationJobDto, MigrationMessageDto, MigrationState, MigrationType, NewMessage,
    NewMigrationJob, Severity, severity_filter,
};
use crate::nodes::LeasedJob;
use crate::paging::BitbucketPage;
use crate::queue::{Job, JobKind, Signals};
use crate::store::port::Database;
use crate::store::{Blobs, Crypto, ExportRow, ImportWrite, MigrationUpdate, ProjectGrantRow};
use crate::urls::StoredUrl;

fn archive_field(e: &ArchiveError) -> ApiError {
    field(e.field(), e)
}

fn no_job(raw: &str) -> ApiError {
    ApiError::not_found("MigrationJob", format!("No migration job with id {raw} exists."))
}

fn migration_error(e: MigrationError, raw: &str) -> ApiError {
    match e {
        MigrationError::NoSuchJob => no_job(raw),
        MigrationError::AlreadyDone => ApiError::Conflict(e.to_string()),
        MigrationError::Severity(_) => field("severity", e),
    }
}

/// The type of job a `/migration/{exports,imports}/…` path is about.
fn path_type(call: &Call<'_>) -> MigrationType {
    if call.route.path.contains("/migration/imports") { MigrationType::Import } else { MigrationType::Export }
}

/// The export request a job was started with.
fn stored_request(job: &MigrationJob) -> Result<ExportRequest> {
    serde_json::from_str(&job.request)
        .map_err(|e| ApiError::Internal(format!("migration job {} request unreadable: {e}", job.id)))
}

/// The migration job id a queue job's payload names.
fn payload_job_id(job: &Job) -> Result<i64> {
    job.payload
        .as_deref()
        .and_then(|p| serde_json::from_str::<Value>(p).ok())
        .and_then(|v| v.get("migrationJobId").and_then(Value::as_i64))
        .ok_or_else(|| ApiError::Internal(format!("job {} names no migration job", job.id)))
}

/// Reads a JSON list column (`[]` when it cannot be read).
fn list<T: serde::de::DeserializeOwned>(text: &str) -> Vec<T> {
    serde_json::from_str(text).unwrap_or_default()
}

/// The manifest entries of `rows` selected by `request`, origins before their forks, with the
/// projects they belong to, the credentials each had (for the WARN messages) and the rows.
struct Selection<'r> {
    projects: Vec<ManifestProject>,
    entries: Vec<(ManifestRepository, &'r ExportRow)>,
}

fn select<'r>(rows: &'r [ExportRow], grants: &[ProjectGrantRow], request: &ExportRequest) -> Selection<'r> {
    let names: HashMap<i64, (&str, &str)> = rows.iter().map(|r| (r.id, (r.p_key.as_str(), r.slug.as_str()))).collect();
    let chosen: Vec<&ExportRow> =
        rows.iter().filter(|r| request.repositories_request.selects(&r.p_key, &r.slug)).collect();
    let index: HashMap<i64, usize> = chosen.iter().enumerate().map(|(i, r)| (r.id, i)).collect();
    let order = archive::origins_first(chosen.len(), |i| chosen[i].origin_id.and_then(|o| index.get(&o).copied()));
    let mut projects: Vec<ManifestProject> = Vec::new();
    let mut entries = Vec::new();
    for i in order {
        let r = chosen[i];
        if !projects.iter().any(|p| p.key == r.p_key) {
            projects.push(ManifestProject {
                key: r.p_key.clone(),
                name: r.p_name.clone(),
                description: r.p_description.clone(),
                public: r.p_public != 0,
                grants: grants
                    .iter()
                    .filter(|g| g.key == r.p_key)
                    .map(|g| ManifestGrant { user: g.user.clone(), level: g.level.clone() })
                    .collect(),
            });
        }
        let fork = r.origin_id.and_then(|o| names.get(&o)).map(|(key, slug)| ManifestFork {
            origin_project_key: (*key).to_owned(),
            origin_slug: (*slug).to_owned(),
            url: r.fork_url.clone(),
            sync_enabled: r.fork_enabled.unwrap_or(0) != 0,
        });
        let entry = ManifestRepository {
            project_key: r.p_key.clone(),
            slug: r.slug.clone(),
            name: r.name.clone(),
            description: r.description.clone(),
            default_branch: r.default_branch.clone(),
            public: r.public != 0,
            forkable: r.forkable != 0,
            upstream_url: r.upstream_url.clone(),
            labels: list(&r.labels),
            grants: list(&r.grants),
            pull_mirror: r.pull.as_deref().and_then(|p| serde_json::from_str::<ManifestPull>(p).ok()),
            fork,
            bundle: None,
            content_hash: None,
        };
        entries.push((entry, r));
    }
    Selection { projects, entries }
}

/// The WARN message for a repository whose credentials an export leaves out, if it had any.
fn credentials_warning(entry: &ManifestRepository, row: &ExportRow) -> Option<NewMessage> {
    let mut what = Vec::new();
    if row.upstream_userinfo_sealed.is_some() {
        what.push("its upstream URL's".to_owned());
    }
    if row.fork_userinfo_sealed.is_some() {
        what.push("its fork location's".to_owned());
    }
    if row.push_credentials > 0 {
        what.push(format!("{} push mirror(s)' (push mirrors are not exported)", row.push_credentials));
    }
    (!what.is_empty()).then(|| {
        NewMessage::new(
            Severity::Warn,
            entry.subject(),
            format!(
                "The credentials of {} were left out of the archive: set them again after importing.",
                what.join(" and ")
            ),
        )
    })
}

impl<D: Database, C: Crypto, S: Signals, L: RateLimiter, B: Blobs> Service<'_, D, C, S, L, B> {
    /// The job `{jobId}` names, of the type its path is about, or 404.
    async fn migration_job_at(&self, call: &Call<'_>, kind: MigrationType) -> Result<MigrationJob> {
        let raw = call.params.raw("jobId");
        let id: i64 = raw.parse().map_err(|_| no_job(raw))?;
        self.store.migration_job(id, Some(kind)).await?.ok_or_else(|| no_job(raw))
    }

    /// `POST …/migration/exports`: 200 with the job; 503 while [`archive::MAX_EXPORTS`] run.
    pub(super) async fn start_export(&self, call: &Call<'_>) -> Result<ApiResponse> {
        let request = ExportRequest::from_json(&call.json_object()?).map_err(|e| archive_field(&e))?;
        let text = serde_json::to_string(&request).map_err(|e| ApiError::Internal(e.to_string()))?;
        let new = NewMigrationJob {
            kind: MigrationType::Export,
            initiator_id: call.who.as_ref().map(|p| p.user.id),
            request: text,
            archive_path: None,
            progress_message: Some("Waiting for a farm node".into()),
            now: self.now,
        };
        let job = self
            .store
            .create_migration_job(&new, Some(JobKind::MigrationExport), Some(archive::MAX_EXPORTS))
            .await?
            .ok_or_else(|| {
                ApiError::Unavailable(format!(
                    "{} exports are already running; try again once one has finished.",
                    archive::MAX_EXPORTS
                ))
            })?;
        self.mark_queued();
        Ok(ApiResponse::json(200, &MigrationJobDto::from(&job)))
    }

    /// `POST …/migration/exports/preview`: every project and repository the request selects.
    pub(super) async fn preview_export(&self, call: &Call<'_>) -> Result<ApiResponse> {
        let request = ExportRequest::from_json(&call.json_object()?).map_err(|e| archive_field(&e))?;
        let (rows, grants) = self.store.export_rows().await?;
        let selection = select(&rows, &grants, &request);
        let mut scopes = Vec::new();
        for project in &selection.projects {
            scopes.push(PreviewScope {
                kind: "PROJECT",
                project_key: project.key.clone(),
                slug: None,
                repository_id: None,
            });
            for (entry, row) in selection.entries.iter().filter(|(e, _)| e.project_key == project.key) {
                scopes.push(PreviewScope {
                    kind: "REPOSITORY",
                    project_key: entry.project_key.clone(),
                    slug: Some(entry.slug.clone()),
                    repository_id: Some(row.id),
                });
            }
        }
        Ok(ApiResponse::json(200, &Preview { scopes }))
    }

    /// `POST …/migration/imports {archivePath}`: 200 with the job; 400 unless the archive is in
    /// R2; 503 while an import runs.
    pub(super) async fn start_import(&self, call: &Call<'_>) -> Result<ApiResponse> {
        let body = call.json_object()?;
        let path = body.get("archivePath").and_then(Value::as_str).unwrap_or_default();
        let key = archive::import_key(path).map_err(|e| archive_field(&e))?;
        let size = self.blobs.size(&key).await.map_err(|e| ApiError::Internal(e.to_string()))?;
        if size.is_none() {
            return Err(field("archivePath", format!("No archive exists at {key}.")));
        }
        let request = serde_json::json!({ "archivePath": key }).to_string();
        let new = NewMigrationJob {
            kind: MigrationType::Import,
            initiator_id: call.who.as_ref().map(|p| p.user.id),
            request,
            archive_path: Some(key),
            progress_message: Some("Waiting for a farm node".into()),
            now: self.now,
        };
        let job = self
            .store
            .create_migration_job(&new, Some(JobKind::MigrationImport), Some(archive::MAX_IMPORTS))
            .await?
            .ok_or_else(|| {
                ApiError::Unavailable("An import is already running; try again once it has finished.".into())
            })?;
        self.mark_queued();
        Ok(ApiResponse::json(200, &MigrationJobDto::from(&job)))
    }

    /// `GET …/migration/{exports,imports}/{jobId}`.
    pub(super) async fn get_migration_job(&self, call: &Call<'_>) -> Result<ApiResponse> {
        let job = self.migration_job_at(call, path_type(call)).await?;
        Ok(ApiResponse::json(200, &MigrationJobDto::from(&job)))
    }

    /// `POST …/migration/{exports,imports}/{jobId}/cancel`: 204; 409 once it ended or was cancelled.
    pub(super) async fn cancel_migration_job(&self, call: &Call<'_>) -> Result<ApiResponse> {
        let raw = call.params.raw("jobId");
        let id: i64 = raw.parse().map_err(|_| no_job(raw))?;
        self.store
            .cancel_migration_job(id, Some(path_type(call)), self.now)
            .await?
            .map_err(|e| migration_error(e, raw))?;
        Ok(ApiResponse::empty(204))
    }

    /// `GET …/migration/{exports,imports}/{jobId}/messages[?severity=…]`: a page, oldest first.
    pub(super) async fn migration_messages(&self, call: &Call<'_>) -> Result<ApiResponse> {
        let severities = severity_filter(&call.query).map_err(|e| migration_error(e, ""))?;
        let job = self.migration_job_at(call, path_type(call)).await?;
        let page = BitbucketPage::from_query(&call.query);
        let (messages, more) = self.store.migration_messages(job.id, &severities, page.start, page.limit).await?;
        let values = messages.iter().map(MigrationMessageDto::from).collect();
        Ok(ApiResponse::json(200, &page.open(values, more)))
    }

    /// The migration part of a leased job: the job is marked RUNNING on this node; an export
    /// gets its manifest (the selection made now) and logs a WARN per repository whose
    /// credentials stay behind. `None` (the queue job is closed) when the job was cancelled or
    /// ended before a node took it.
    pub(super) async fn leased_migration_job(
        &self,
        call: &Call<'_>,
        job: &Job,
        lease: LeasedJob,
    ) -> Result<Option<LeasedJob>> {
        let node = Self::node(call)?;
        let id = payload_job_id(job)?;
        let Some(migration) = self.store.migration_job(id, None).await? else { return Ok(None) };
        if migration.state.is_final() {
            return Ok(None);
        }
        if migration.state == MigrationState::Canceling {
            let update = MigrationUpdate {
                state: Some(MigrationState::Canceled),
                progress_message: Some("Canceled".into()),
                ..MigrationUpdate::default()
            };
            let note = NewMessage::new(Severity::Info, "job", "The job was cancelled before it started.");
            self.store.update_migration_job(id, &update, &[note], self.now).await?;
            return Ok(None);
        }
        let running = |message: String| MigrationUpdate {
            state: Some(MigrationState::Running),
            node_id: Some(node.id),
            progress: Some(0),
            progress_message: Some(message),
            ..MigrationUpdate::default()
        };
        let leased = match migration.kind {
            MigrationType::Export => {
                let request = stored_request(&migration)?;
                let (rows, grants) = self.store.export_rows().await?;
                let selection = select(&rows, &grants, &request);
                let mut messages = vec![NewMessage::new(
                    Severity::Info,
                    "job",
                    format!("Exporting {} repositories on node {}.", selection.entries.len(), node.name),
                )];
                let mut items = Vec::new();
                let mut repositories = Vec::new();
                for (entry, row) in selection.entries {
                    messages.extend(credentials_warning(&entry, row));
                    let fetch_from = match (&row.upstream_url, &row.fork_url) {
                        (Some(plain), _) => Some(StoredUrl {
                            plain: plain.clone(),
                            masked: plain.clone(),
                            sealed_userinfo: row.upstream_userinfo_sealed.clone(),
                        }),
                        (None, Some(plain)) => Some(StoredUrl {
                            plain: plain.clone(),
                            masked: plain.clone(),
                            sealed_userinfo: row.fork_userinfo_sealed.clone(),
                        }),
                        (None, None) => None,
                    };
                    let fetch_url = match &fetch_from {
                        Some(url) => Some(self.unsealed(url).await?),
                        None => None,
                    };
                    items.push(ExportItem {
                        repository_id: row.id,
                        fetch_url,
                        content_hash: row.hash.clone(),
                        entry: entry.clone(),
                    });
                    repositories.push(entry);
                }
                let count = items.len();
                let manifest = Manifest {
                    format: archive::FORMAT.into(),
                    export_job_id: id,
                    exported_at: self.now.millis(),
                    projects: selection.projects,
                    repositories,
                };
                let state = self
                    .store
                    .update_migration_job(id, &running(format!("Exporting {count} repositories")), &messages, self.now)
                    .await?;
                if state.is_none_or(|s| s.state != MigrationState::Running) {
                    return Ok(None);
                }
                LeasedMigration { job_id: id, export: Some(LeasedExport { manifest, items }), import_archive: None }
            }
            MigrationType::Import => {
                let Some(key) = migration.archive_path.clone() else {
                    let update = MigrationUpdate { state: Some(MigrationState::Failed), ..MigrationUpdate::default() };
                    let why = NewMessage::new(Severity::Error, "job", "The import names no archive.");
                    self.store.update_migration_job(id, &update, &[why], self.now).await?;
                    return Ok(None);
                };
                let note = NewMessage::new(Severity::Info, "job", format!("Importing {key} on node {}.", node.name));
                let state =
                    self.store.update_migration_job(id, &running(format!("Reading {key}")), &[note], self.now).await?;
                if state.is_none_or(|s| s.state != MigrationState::Running) {
                    return Ok(None);
                }
                LeasedMigration { job_id: id, export: None, import_archive: Some(key) }
            }
            MigrationType::Mesh => return Ok(None),
        };
        Ok(Some(LeasedJob { migration: Some(leased), ..lease }))
    }

    /// The job `{jobId}` of a node route, which must be running on the calling node.
    async fn nodes_migration_job(&self, call: &Call<'_>) -> Result<MigrationJob> {
        let node = Self::node(call)?;
        let raw = call.params.raw("jobId");
        let id: i64 = raw.parse().map_err(|_| no_job(raw))?;
        let job = self.store.migration_job(id, None).await?.ok_or_else(|| no_job(raw))?;
        if job.node_id != Some(node.id) {
            return Err(ApiError::Conflict(format!("Migration job {id} is not running on this node.")));
        }
        Ok(job)
    }

    /// `POST …/nodes/migration/{jobId}/progress`: the node's progress, messages and, at the
    /// end, the job's final state; answers the state (CANCELING tells the node to stop).
    pub(super) async fn migration_progress(&self, call: &Call<'_>) -> Result<ApiResponse> {
        let report: MigrationProgress = call.json()?;
        let job = self.nodes_migration_job(call).await?;
        if job.state.is_final() {
            return Ok(ApiResponse::json(200, &MigrationAck { state: job.state }));
        }
        if let Some(state) = report.state
            && !matches!(
                state,
                MigrationState::Running
                    | MigrationState::Finalising
                    | MigrationState::Completed
                    | MigrationState::Failed
                    | MigrationState::Canceled
            )
        {
            return Err(field("state", "A node reports RUNNING, FINALISING, COMPLETED, FAILED or CANCELED."));
        }
        let mut messages = report.messages;
        let mut update = MigrationUpdate {
            state: report.state,
            progress: report.percentage,
            progress_message: report.message,
            ..MigrationUpdate::default()
        };
        if report.archive_written {
            if job.kind != MigrationType::Export {
                return Err(field("archiveWritten", "Only an export writes an archive."));
            }
            let key = archive::export_key(job.id, stored_request(&job)?.export_location.as_deref());
            messages.push(NewMessage::new(Severity::Info, "job", format!("The archive was written to {key}.")));
            update.archive_path = Some(key);
        }
        let now = self.store.update_migration_job(job.id, &update, &messages, self.now).await?;
        let state = now.map_or(job.state, |j| j.state);
        Ok(ApiResponse::json(200, &MigrationAck { state }))
    }

    /// `POST …/nodes/migration/{jobId}/repositories`: creates one imported repository whole (see
    /// [`crate::store::Store::import_repository`]), skips one that exists, or answers CANCELLED
    /// once cancel was asked.
    pub(super) async fn import_repository(&self, call: &Call<'_>) -> Result<ApiResponse> {
        let imported: ImportedRepository = call.json()?;
        let node = Self::node(call)?;
        let job = self.nodes_migration_job(call).await?;
        if job.kind != MigrationType::Import {
            return Err(ApiError::Conflict(format!("Migration job {} is not an import.", job.id)));
        }
        if let Some(hash) = &imported.content_hash
            && !(hash.len() == 64 && hash.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)))
        {
            return Err(field("contentHash", "contentHash is a SHA-256 in lower-case hex."));
        }
        let repo = &imported.repository;
        let key_ok = crate::registry::validate_project_key(&imported.project.key).is_ok()
            && imported.project.key.eq_ignore_ascii_case(&repo.project_key);
        if !key_ok || repo.slug.is_empty() || repo.name.is_empty() || repo.default_branch.is_empty() {
            return Err(field(
                "repository",
                "The repository needs a valid project key, slug, name and default branch.",
            ));
        }
        if let Some(bad) = repo.labels.iter().find(|l| crate::admin::label_name(l).ok().as_deref() != Some(l.as_str()))
        {
            return Err(field("labels", format!("{bad:?} is not a label name (lower case, no spaces).")));
        }
        if let Some(bad) = imported
            .project
            .grants
            .iter()
            .chain(&repo.grants)
            .find(|g| crate::identity::Level::parse(&g.level).is_none())
        {
            return Err(field("grants", format!("{:?} is not a permission level (READ, WRITE or ADMIN).", bad.level)));
        }
        let hierarchy = self.random_hex(10)?;
        let answer = match self.store.import_repository(job.id, node.id, &imported, &hierarchy, self.now).await? {
            ImportWrite::Created(id) => ImportAnswer { outcome: ImportOutcome::Created, repository_id: Some(id) },
            ImportWrite::Exists => ImportAnswer { outcome: ImportOutcome::Skipped, repository_id: None },
            ImportWrite::Stopped => ImportAnswer { outcome: ImportOutcome::Cancelled, repository_id: None },
            ImportWrite::NotYours => {
                return Err(ApiError::Conflict(format!("Migration job {} is not running on this node.", job.id)));
            }
        };
        Ok(ApiResponse::json(200, &answer))
    }

    /// `PUT …/nodes/migration/{jobId}/archive`: the shell streams the body to the export's key.
    pub(super) async fn upload_archive(&self, call: &Call<'_>) -> Result<ApiResponse> {
        let job = self.nodes_migration_job(call).await?;
        if job.kind != MigrationType::Export || job.state.is_final() {
            return Err(ApiError::Conflict(format!("Migration job {} takes no archive now.", job.id)));
        }
        let key = archive::export_key(job.id, stored_request(&job)?.export_location.as_deref());
        Ok(ApiResponse::empty(204).with_transfer(BlobTransfer::Store { key }))
    }

    /// `GET …/nodes/migration/{jobId}/archive`: the shell streams the import's archive.
    pub(super) async fn download_archive(&self, call: &Call<'_>) -> Result<ApiResponse> {
        let job = self.nodes_migration_job(call).await?;
        let Some(key) = job.archive_path.clone().filter(|_| job.kind == MigrationType::Import) else {
            return Err(ApiError::Conflict(format!("Migration job {} reads no archive.", job.id)));
        };
        Ok(ApiResponse::empty(200).with_transfer(BlobTransfer::Serve { key }))
    }
}
