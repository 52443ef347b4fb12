//! Migration jobs and their messages (see [`crate::migration`]): generic over the job's type, so
//! exports, imports and Mesh migrations share the statements.

use super::identity::{UserRow, page_limit, page_offset};
use super::port::{Database, Statement, Value, row, sql};
use super::{Store, StoreError, StoreResult, corrupt, nth, split_page};
use crate::migration::{
    MigrationError, MigrationJob, MigrationMessage, MigrationState, MigrationType, NewMessage, NewMigrationJob,
    Severity,
};
use crate::queue::{JobKind, JobReason};
use crate::time::Timestamp;

/// The columns a job is read with: its own, and its initiator's as `u_*` (all `NULL` without one).
const JOB_COLUMNS: &str = "j.id AS id, j.type AS kind, j.state AS state, j.progress AS progress, \
     j.progress_message AS progress_message, j.node_id AS node_id, j.request AS request, \
     j.archive_path AS archive_path, j.started_at AS started_at, j.updated_at AS updated_at, j.ended_at AS ended_at, \
     u.id AS u_id, u.name AS u_name, u.slug AS u_slug, u.display_name AS u_display_name, u.email AS u_email, \
     u.role AS u_role, u.created_at AS u_created_at";

/// `FROM` for [`JOB_COLUMNS`].
const JOB_FROM: &str = "migration_jobs j LEFT JOIN users u ON u.id = j.initiator_id";

row! {
    struct JobRow {
        id: i64,
        kind: String,
        state: String,
        progress: i64,
        progress_message: Option<String>,
        node_id: Option<i64>,
        request: String,
        archive_path: Option<String>,
        started_at: i64,
        updated_at: i64,
        ended_at: Option<i64>,
        u_id: Option<i64>,
        u_name: Option<String>,
        u_slug: Option<String>,
        u_display_name: Option<String>,
        u_email: Option<String>,
        u_role: Option<String>,
        u_created_at: Option<i64>,
    }
}

impl JobRow {
    fn into_job(self) -> StoreResult<MigrationJob> {
        let initiator = match (self.u_id, self.u_name, self.u_slug, self.u_display_name, self.u_role, self.u_created_at)
        {
            (Some(id), Some(name), Some(slug), Some(display_name), Some(role), Some(created_at)) => {
                Some(UserRow { id, name, slug, display_name, email: self.u_email, role, created_at }.into_user()?)
            }
            _ => None,
        };
        Ok(MigrationJob {
            id: self.id,
            kind: MigrationType::parse(&self.kind).ok_or_else(|| corrupt("migration job"))?,
            state: MigrationState::parse(&self.state).ok_or_else(|| corrupt("migration job"))?,
            progress: u32::try_from(self.progress.clamp(0, 100)).unwrap_or(0),
            progress_message: self.progress_message,
            node_id: self.node_id,
            initiator,
            request: self.request,
            archive_path: self.archive_path,
            started_at: Timestamp(self.started_at),
            updated_at: Timestamp(self.updated_at),
            ended_at: self.ended_at.map(Timestamp),
        })
    }
}

row! {
    struct MessageRow {
        id: i64,
        job_id: i64,
        severity: String,
        subject: String,
        text: String,
        created_at: i64,
    }
}

impl MessageRow {
    fn into_message(self) -> StoreResult<MigrationMessage> {
        Ok(MigrationMessage {
            id: self.id,
            job_id: self.job_id,
            severity: Severity::parse(&self.severity).ok_or_else(|| corrupt("migration message"))?,
            subject: self.subject,
            text: self.text,
            created_at: Timestamp(self.created_at),
        })
    }
}

/// Reads the first job of a [`JOB_COLUMNS`] outcome.
pub(super) fn read_job(outcome: super::port::Outcome) -> StoreResult<Option<MigrationJob>> {
    outcome.first::<JobRow>()?.map(JobRow::into_job).transpose()
}

/// A change to a running job; `None` fields are left as they are.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MigrationUpdate {
    /// A new state. A job being cancelled stays CANCELING until it reaches a final state, and a
    /// final state never changes again; reaching one stamps the end date.
    pub state: Option<MigrationState>,
    /// Percent done.
    pub progress: Option<u32>,
    /// What it is doing now.
    pub progress_message: Option<String>,
    /// The node working on it.
    pub node_id: Option<i64>,
    /// The archive's R2 key.
    pub archive_path: Option<String>,
}

/// The statement that applies `update` to job `job_id`, only while the job has not ended.
pub(super) fn update_statement(job_id: i64, update: &MigrationUpdate, now: Timestamp) -> Statement {
    let mut sets = vec!["updated_at = ?2".to_owned()];
    let mut params: Vec<Value> = vec![job_id.into(), now.millis().into()];
    let mut bind = |column: &str, value: Value, sets: &mut Vec<String>| {
        params.push(value);
        sets.push(format!("{column} = ?{}", params.len()));
    };
    if let Some(state) = update.state {
        if state.is_final() {
            bind("state", state.as_str().into(), &mut sets);
            sets.push("ended_at = ?2".into());
        } else {
            // A cancel asked for wins over a node's report that it still runs.
            bind("state", state.as_str().into(), &mut sets);
            if let Some(last) = sets.last_mut() {
                let param = last.trim_start_matches("state = ").to_owned();
                *last = format!("state = CASE WHEN state = 'CANCELING' THEN state ELSE {param} END");
            }
        }
    }
    if let Some(progress) = update.progress {
        bind("progress", i64::from(progress.min(100)).into(), &mut sets);
    }
    if let Some(message) = &update.progress_message {
        bind("progress_message", message.into(), &mut sets);
    }
    if let Some(node) = update.node_id {
        bind("node_id", node.into(), &mut sets);
    }
    if let Some(path) = &update.archive_path {
        bind("archive_path", path.into(), &mut sets);
    }
    let finals = MigrationState::ALL
        .iter()
        .filter(|s| s.is_final())
        .map(|s| format!("'{}'", s.as_str()))
        .collect::<Vec<_>>()
        .join(", ");
    Statement::new(
        format!("UPDATE migration_jobs SET {} WHERE id = ?1 AND state NOT IN ({finals})", sets.join(", ")),
        params,
    )
}

/// The statement that logs `message` for job `job_id`.
pub(super) fn message_statement(job_id: i64, message: &NewMessage, now: Timestamp) -> Statement {
    sql!(
        "INSERT INTO migration_messages (job_id, severity, subject, text, created_at) VALUES (?1, ?2, ?3, ?4, ?5)",
        job_id,
        message.severity.as_str(),
        message.subject.as_str(),
        message.text.as_str(),
        now.millis()
    )
}

/// The statement that reads job `job_id` (of `kind`, if given).
/// The statement that reads the newest job of `kind`: the one its own batch just created.
pub(super) fn newest_job_statement(kind: MigrationType) -> Statement {
    sql!(
        format!(
            "SELECT {JOB_COLUMNS} FROM {JOB_FROM} WHERE j.id = (SELECT MAX(id) FROM migration_jobs WHERE type = ?1)"
        ),
        kind.as_str()
    )
}

pub(super) fn job_statement(job_id: i64, kind: Option<MigrationType>) -> Statement {
    sql!(
        format!("SELECT {JOB_COLUMNS} FROM {JOB_FROM} WHERE j.id = ?1 AND (?2 IS NULL OR j.type = ?2)"),
        job_id,
        kind.map(MigrationType::as_str)
    )
}

impl<D: Database> Store<D> {
    /// Starts a migration job, and queues the node job that carries it out (its payload the
    /// migration job's id as `{"migrationJobId": …}`) in the same batch. With `limit`, nothing is
    /// written and `None` answered when that many jobs of the type already run.
    pub async fn create_migration_job(
        &self,
        new: &NewMigrationJob,
        queue: Option<JobKind>,
        limit: Option<u32>,
    ) -> StoreResult<Option<MigrationJob>> {
        let active = MigrationState::active_sql();
        let mut statements = vec![sql!(
            format!(
                "INSERT INTO migration_jobs (type, initiator_id, request, archive_path, progress_message, started_at, updated_at) \
                 SELECT ?1, ?2, ?3, ?4, ?5, ?6, ?6 WHERE ?7 IS NULL OR \
                   (SELECT COUNT(*) FROM migration_jobs WHERE type = ?1 AND state IN ({active})) < ?7"
            ),
            new.kind.as_str(),
            new.initiator_id,
            new.request.as_str(),
            new.archive_path.as_deref(),
            new.progress_message.as_deref(),
            new.now.millis(),
            limit.map(i64::from)
        )];
        // Read before the queue insert moves `last_insert_rowid()`; `changes()` is the insert's.
        statements.push(sql!(format!(
            "SELECT {JOB_COLUMNS} FROM {JOB_FROM} WHERE j.id = last_insert_rowid() AND changes() = 1"
        )));
        if let Some(kind) = queue {
            statements.push(sql!(
                "INSERT INTO jobs (kind, reason, enqueued_at, payload) \
                 SELECT ?1, ?2, ?3, json_object('migrationJobId', last_insert_rowid()) WHERE changes() = 1",
                kind.as_str(),
                JobReason::Manual.as_str(),
                new.now.millis()
            ));
        }
        let mut out = self.batch(statements).await?;
        if nth(&mut out, 0)?.changes == 0 {
            return Ok(None);
        }
        read_job(nth(&mut out, 1)?)?
            .map(Some)
            .ok_or_else(|| StoreError::Backend("the migration job was not stored".into()))
    }

    /// Job `job_id`, if it exists and (when `kind` is given) is of that type.
    pub async fn migration_job(&self, job_id: i64, kind: Option<MigrationType>) -> StoreResult<Option<MigrationJob>> {
        read_job(self.one(job_statement(job_id, kind)).await?)
    }

    /// Asks job `job_id` to stop: a job no node has picked up yet is CANCELED at once, a
    /// running one becomes CANCELING (its node stops at its next checkpoint). One batch.
    pub async fn cancel_migration_job(
        &self,
        job_id: i64,
        kind: Option<MigrationType>,
        now: Timestamp,
    ) -> StoreResult<Result<MigrationJob, MigrationError>> {
        let mut out = self
            .batch(vec![
                sql!(
                    "UPDATE migration_jobs SET \
                       state = CASE WHEN state = 'INITIALISING' AND node_id IS NULL THEN 'CANCELED' ELSE 'CANCELING' END, \
                       ended_at = CASE WHEN state = 'INITIALISING' AND node_id IS NULL THEN ?3 ELSE ended_at END, \
                       progress_message = CASE WHEN state = 'INITIALISING' AND node_id IS NULL THEN 'Canceled' \
                                          ELSE 'Cancel requested' END, \
                       updated_at = ?3 \
                     WHERE id = ?1 AND (?2 IS NULL OR type = ?2) \
                       AND state IN ('INITIALISING', 'READY', 'RUNNING', 'FINALISING')",
                    job_id,
                    kind.map(MigrationType::as_str),
                    now.millis()
                ),
                job_statement(job_id, kind),
            ])
            .await?;
        let changed = nth(&mut out, 0)?.changes > 0;
        match read_job(nth(&mut out, 1)?)? {
            None => Ok(Err(MigrationError::NoSuchJob)),
            Some(_) if !changed => Ok(Err(MigrationError::AlreadyDone)),
            Some(job) => Ok(Ok(job)),
        }
    }

    /// Applies `update` to job `job_id` and logs `messages` with it, in one batch; answers the
    /// job as it then is (a node learns from its state that cancel was asked).
    pub async fn update_migration_job(
        &self,
        job_id: i64,
        update: &MigrationUpdate,
        messages: &[NewMessage],
        now: Timestamp,
    ) -> StoreResult<Option<MigrationJob>> {
        let mut statements = vec![update_statement(job_id, update, now)];
        statements.extend(messages.iter().map(|m| message_statement(job_id, m, now)));
        statements.push(job_statement(job_id, None));
        let last = statements.len() - 1;
        let mut out = self.batch(statements).await?;
        read_job(nth(&mut out, last)?)
    }

    /// Logs `messages` for job `job_id`, in one batch.
    pub async fn add_migration_messages(
        &self,
        job_id: i64,
        messages: &[NewMessage],
        now: Timestamp,
    ) -> StoreResult<()> {
        if messages.is_empty() {
            return Ok(());
        }
        self.batch(messages.iter().map(|m| message_statement(job_id, m, now)).collect()).await.map(drop)
    }

    /// A page of job `job_id`'s messages, oldest first, limited to `severities` (all when
    /// empty), and whether more follow.
    pub async fn migration_messages(
        &self,
        job_id: i64,
        severities: &[Severity],
        offset: u64,
        limit: u64,
    ) -> StoreResult<(Vec<MigrationMessage>, bool)> {
        let names: Vec<&str> = severities.iter().map(|s| s.as_str()).collect();
        let list = serde_json::to_string(&names).map_err(|e| StoreError::Backend(e.to_string()))?;
        let rows = self
            .rows::<MessageRow>(sql!(
                "SELECT id, job_id, severity, subject, text, created_at FROM migration_messages \
                 WHERE job_id = ?1 AND (json_array_length(?2) = 0 OR severity IN (SELECT value FROM json_each(?2))) \
                 ORDER BY id LIMIT ?3 OFFSET ?4",
                job_id,
                list,
                page_limit(limit),
                page_offset(offset)
            ))
            .await?;
        let messages = rows.into_iter().map(MessageRow::into_message).collect::<StoreResult<Vec<_>>>()?;
        Ok(split_page(messages, limit))
    }

    /// How many jobs of `kind` have not ended.
    pub async fn active_migration_jobs(&self, kind: MigrationType) -> StoreResult<u64> {
        row! {
            struct Count {
                n: u64,
            }
        }
        let active = MigrationState::active_sql();
        Ok(self
            .row::<Count>(sql!(
                format!("SELECT COUNT(*) AS n FROM migration_jobs WHERE type = ?1 AND state IN ({active})"),
                kind.as_str()
            ))
            .await?
            .map_or(0, |c| c.n))
    }
}

row! {
    /// A repository as an export reads it (see [`Store::export_rows`]).
    pub(crate) struct ExportRow {
        pub(crate) id: i64,
        pub(crate) p_key: String,
        pub(crate) p_name: String,
        pub(crate) p_description: Option<String>,
        pub(crate) p_public: i64,
        pub(crate) slug: String,
        pub(crate) name: String,
        pub(crate) description: Option<String>,
        pub(crate) default_branch: String,
        pub(crate) public: i64,
        pub(crate) forkable: i64,
        pub(crate) upstream_url: Option<String>,
        pub(crate) upstream_userinfo_sealed: Option<String>,
        pub(crate) origin_id: Option<i64>,
        pub(crate) fork_url: Option<String>,
        pub(crate) fork_userinfo_sealed: Option<String>,
        pub(crate) fork_enabled: Option<i64>,
        pub(crate) labels: String,
        pub(crate) grants: String,
        pub(crate) pull: Option<String>,
        pub(crate) push_credentials: i64,
        pub(crate) hash: Option<String>,
    }
}

row! {
    /// A project's grant as an export reads it.
    pub(crate) struct ProjectGrantRow {
        pub(crate) key: String,
        pub(crate) user: String,
        pub(crate) level: String,
    }
}

row! {
    struct ImportCheck {
        state: Option<String>,
        node_id: Option<i64>,
        existing: Option<i64>,
        project: Option<i64>,
        origin: Option<i64>,
        hierarchy: Option<String>,
        known_users: String,
    }
}

/// What [`Store::import_repository`] found or did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ImportWrite {
    /// The job is no longer running (cancel was asked, or it ended): nothing written.
    Stopped,
    /// This node does not work on the job.
    NotYours,
    /// A repository of that name exists: nothing written but a WARN message.
    Exists,
    /// Created, with this id.
    Created(i64),
}

impl<D: Database> Store<D> {
    /// Every repository with what an export writes of it, and every project grant; one batch.
    pub(crate) async fn export_rows(&self) -> StoreResult<(Vec<ExportRow>, Vec<ProjectGrantRow>)> {
        let mut out = self
            .batch(vec![
                sql!(
                    "SELECT r.id AS id, p.key AS p_key, p.name AS p_name, p.description AS p_description, \
                       p.public AS p_public, r.slug AS slug, r.name AS name, r.description AS description, \
                       r.default_branch AS default_branch, r.public AS public, r.forkable AS forkable, \
                       r.upstream_url AS upstream_url, r.upstream_userinfo_sealed AS upstream_userinfo_sealed, \
                       r.origin_id AS origin_id, f.url AS fork_url, f.userinfo_sealed AS fork_userinfo_sealed, \
                       f.enabled AS fork_enabled, \
                       (SELECT json_group_array(l.name) FROM (SELECT name FROM repository_labels \
                          WHERE repository_id = r.id ORDER BY name) l) AS labels, \
                       (SELECT json_group_array(json_object('user', u.name, 'level', g.level)) \
                          FROM repository_grants g JOIN users u ON u.id = g.user_id WHERE g.repository_id = r.id) AS grants, \
                       (SELECT json_object('enabled', json(IIF(m.enabled, 'true', 'false')), \
                          'onlyProtectedBranches', json(IIF(m.only_mirror_protected_branches, 'true', 'false')), \
                          'overwriteDivergedBranches', json(IIF(m.mirror_overwrites_diverged_branches, 'true', 'false')), \
                          'mirrorBranchRegex', m.mirror_branch_regex) FROM pull_mirrors m WHERE m.repository_id = r.id) AS pull, \
                       (SELECT COUNT(*) FROM remote_mirrors rm WHERE rm.repository_id = r.id \
                          AND rm.userinfo_sealed IS NOT NULL) AS push_credentials, \
                       (SELECT h.content FROM repository_hashes h WHERE h.repository_id = r.id) AS hash \
                     FROM repositories r JOIN projects p ON p.id = r.project_id \
                       LEFT JOIN fork_syncs f ON f.repository_id = r.id \
                     ORDER BY p.key, r.slug"
                ),
                sql!(
                    "SELECT p.key AS key, u.name AS user, g.level AS level FROM project_grants g \
                     JOIN projects p ON p.id = g.project_id JOIN users u ON u.id = g.user_id ORDER BY p.key, u.name"
                ),
            ])
            .await?;
        Ok((nth(&mut out, 0)?.read()?, nth(&mut out, 1)?.read()?))
    }

    /// Creates one imported repository for import job `job_id`, run by node `node_id`: its
    /// project (with the project's grants) if missing, the repository, its labels, grants,
    /// pull-mirror and fork-sync settings, its hash and the node's copy of it, and a message and
    /// the progress — in one batch, so the repository is there whole or not at all. Grants of
    /// users this instance lacks are left out with a WARN message each.
    pub async fn import_repository(
        &self,
        job_id: i64,
        node_id: i64,
        imported: &crate::migration::archive::ImportedRepository,
        new_hierarchy: &str,
        now: Timestamp,
    ) -> StoreResult<ImportWrite> {
        let repo = &imported.repository;
        let project = &imported.project;
        let users: Vec<&str> =
            project.grants.iter().chain(repo.grants.iter()).map(|g| g.user.as_str()).collect::<Vec<_>>();
        let users_json = serde_json::to_string(&users).map_err(|e| StoreError::Backend(e.to_string()))?;
        let (origin_key, origin_slug) = repo
            .fork
            .as_ref()
            .map_or((None, None), |f| (Some(f.origin_project_key.as_str()), Some(f.origin_slug.as_str())));
        let check = self
            .row::<ImportCheck>(sql!(
                "SELECT (SELECT state FROM migration_jobs WHERE id = ?1) AS state, \
                   (SELECT node_id FROM migration_jobs WHERE id = ?1) AS node_id, \
                   (SELECT r.id FROM repositories r JOIN projects p ON p.id = r.project_id \
                     WHERE p.key = ?2 AND r.slug = ?3) AS existing, \
                   (SELECT id FROM projects WHERE key = ?2) AS project, \
                   (SELECT r.id FROM repositories r JOIN projects p ON p.id = r.project_id \
                     WHERE p.key = ?4 AND r.slug = ?5) AS origin, \
                   (SELECT r.hierarchy_id FROM repositories r JOIN projects p ON p.id = r.project_id \
                     WHERE p.key = ?4 AND r.slug = ?5) AS hierarchy, \
                   (SELECT json_group_array(name) FROM users WHERE name IN (SELECT value FROM json_each(?6))) AS known_users",
                job_id,
                repo.project_key.as_str(),
                repo.slug.as_str(),
                origin_key,
                origin_slug,
                users_json
            ))
            .await?
            .ok_or_else(|| StoreError::Backend("no import check row".into()))?;
        if check.state.as_deref() != Some(MigrationState::Running.as_str()) {
            return Ok(ImportWrite::Stopped);
        }
        if check.node_id != Some(node_id) {
            return Ok(ImportWrite::NotYours);
        }
        let subject = repo.subject();
        let progress = MigrationUpdate {
            progress: Some(imported.percentage),
            progress_message: Some(format!("Imported {subject}")),
            ..MigrationUpdate::default()
        };
        if check.existing.is_some() {
            let warn = NewMessage::new(
                Severity::Warn,
                subject.as_str(),
                format!("Repository {subject} already exists; it was skipped."),
            );
            self.batch(vec![update_statement(job_id, &progress, now), message_statement(job_id, &warn, now)]).await?;
            return Ok(ImportWrite::Exists);
        }
        let known: Vec<String> = serde_json::from_str(&check.known_users).unwrap_or_default();
        let valid = |g: &&crate::migration::archive::ManifestGrant| {
            crate::identity::Level::parse(&g.level).is_some() && known.iter().any(|k| k == &g.user)
        };
        let mut messages = Vec::new();
        for g in project.grants.iter().chain(repo.grants.iter()).filter(|g| !known.iter().any(|k| k == &g.user)) {
            messages.push(NewMessage::new(
                Severity::Warn,
                subject.as_str(),
                format!("User {} does not exist here; their {} permission was not imported.", g.user, g.level),
            ));
        }
        let mut batch = Vec::new();
        if check.project.is_none() {
            batch.push(sql!(
                "INSERT INTO projects (key, name, description, public, created_at) VALUES (?1, ?2, ?3, ?4, ?5)",
                project.key.as_str(),
                project.name.as_str(),
                project.description.as_deref(),
                project.public,
                now.millis()
            ));
            let grants: Vec<_> = project.grants.iter().filter(valid).collect();
            batch.push(sql!(
                "INSERT OR IGNORE INTO project_grants (project_id, user_id, level) \
                 SELECT p.id, u.id, json_extract(j.value, '$.level') FROM json_each(?2) j \
                   JOIN users u ON u.name = json_extract(j.value, '$.user') JOIN projects p ON p.key = ?1",
                project.key.as_str(),
                json_text(&grants)
            ));
        }
        let hierarchy = check.hierarchy.as_deref().filter(|_| check.origin.is_some()).unwrap_or(new_hierarchy);
        batch.push(sql!(
            "INSERT INTO repositories (project_id, slug, name, description, default_branch, public, forkable, \
               upstream_url, upstream_url_masked, hierarchy_id, created_at, origin_id) \
             SELECT p.id, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?8, ?9, ?10, ?11 FROM projects p WHERE p.key = ?1",
            repo.project_key.as_str(),
            repo.slug.as_str(),
            repo.name.as_str(),
            repo.description.as_deref(),
            repo.default_branch.as_str(),
            repo.public,
            repo.forkable,
            repo.upstream_url.as_deref(),
            hierarchy,
            now.millis(),
            check.origin
        ));
        // Every later statement names the new repository by its key.
        let this =
            "(SELECT r.id FROM repositories r JOIN projects p ON p.id = r.project_id WHERE p.key = ?1 AND r.slug = ?2)";
        let grants: Vec<_> = repo.grants.iter().filter(valid).collect();
        batch.push(sql!(
            format!(
                "INSERT INTO repository_grants (repository_id, user_id, level) \
                 SELECT {this}, u.id, json_extract(j.value, '$.level') FROM json_each(?3) j \
                   JOIN users u ON u.name = json_extract(j.value, '$.user')"
            ),
            repo.project_key.as_str(),
            repo.slug.as_str(),
            json_text(&grants)
        ));
        batch.push(sql!(
            format!(
                "INSERT OR IGNORE INTO repository_labels (repository_id, name) SELECT {this}, value FROM json_each(?3)"
            ),
            repo.project_key.as_str(),
            repo.slug.as_str(),
            json_text(&repo.labels)
        ));
        if let Some(pull) = &repo.pull_mirror {
            batch.push(sql!(
                format!(
                    "INSERT INTO pull_mirrors (repository_id, enabled, only_mirror_protected_branches, \
                       mirror_overwrites_diverged_branches, mirror_branch_regex, updated_at) \
                     VALUES ({this}, ?3, ?4, ?5, ?6, ?7)"
                ),
                repo.project_key.as_str(),
                repo.slug.as_str(),
                pull.enabled,
                pull.only_protected_branches,
                pull.overwrite_diverged_branches,
                pull.mirror_branch_regex.as_deref(),
                now.millis()
            ));
        }
        if let Some(fork) = &repo.fork
            && let Some(url) = &fork.url
        {
            batch.push(sql!(
                format!(
                    "INSERT INTO fork_syncs (repository_id, origin_name, url, url_masked, enabled, updated_at) \
                     VALUES ({this}, ?3, ?4, ?4, ?5, ?6)"
                ),
                repo.project_key.as_str(),
                repo.slug.as_str(),
                format!("{}/{}", fork.origin_project_key, fork.origin_slug),
                url.as_str(),
                fork.sync_enabled,
                now.millis()
            ));
        }
        if let Some(hash) = &imported.content_hash {
            batch.push(sql!(
                format!("INSERT INTO repository_hashes (repository_id, content, computed_at) VALUES ({this}, ?3, ?4)"),
                repo.project_key.as_str(),
                repo.slug.as_str(),
                hash.as_str(),
                now.millis()
            ));
            batch.push(sql!(
                format!(
                    "INSERT INTO node_copies (node_id, repository_id, content, synced_at) VALUES (?3, {this}, ?4, ?5)"
                ),
                repo.project_key.as_str(),
                repo.slug.as_str(),
                node_id,
                hash.as_str(),
                now.millis()
            ));
        }
        messages.push(NewMessage::new(Severity::Info, subject.as_str(), format!("Imported repository {subject}.")));
        batch.push(update_statement(job_id, &progress, now));
        batch.extend(messages.iter().map(|m| message_statement(job_id, m, now)));
        batch.push(sql!(format!("SELECT {this} AS id"), repo.project_key.as_str(), repo.slug.as_str()));
        let last = batch.len() - 1;
        let mut out = match self.batch(batch).await {
            Ok(out) => out,
            // Created meanwhile by someone else: skipped like one that existed.
            Err(StoreError::Conflict(_)) => return Ok(ImportWrite::Exists),
            Err(e) => return Err(e),
        };
        row! {
            struct Created {
                id: Option<i64>,
            }
        }
        let id = nth(&mut out, last)?
            .first::<Created>()?
            .and_then(|c| c.id)
            .ok_or_else(|| StoreError::Backend("the imported repository was not stored".into()))?;
        Ok(ImportWrite::Created(id))
    }
}

/// A value bound as one JSON text (`[]` if it cannot be written, which our types never are).
fn json_text<T: serde::Serialize + ?Sized>(value: &T) -> String {
    serde_json::to_string(value).unwrap_or_else(|_| "[]".into())
}

#[cfg(all(test, not(target_arch = "wasm32")))]
mod tests {
    use super::super::sqlite::SqliteDatabase;
    use super::*;
    use crate::identity::{GlobalRole, NewUser};
    use crate::test_support::block_on;

    fn store() -> (Store<SqliteDatabase>, i64) {
        let store = Store::new(SqliteDatabase::migrated());
        let user = block_on(store.insert_user(
            &NewUser {
                name: "admin".into(),
                slug: "admin".into(),
                display_name: "Admin".into(),
                email: Some("a@example.com".into()),
                role: GlobalRole::Admin,
                created_at: Timestamp(1),
            },
            None,
            None,
        ))
        .expect("user")
        .expect("inserted");
        (store, user.id)
    }

    fn new_job(kind: MigrationType, initiator: i64, now: i64) -> NewMigrationJob {
        NewMigrationJob {
            kind,
            initiator_id: Some(initiator),
            request: "{}".into(),
            archive_path: None,
            progress_message: Some("Queued".into()),
            now: Timestamp(now),
        }
    }

    #[test]
    fn a_job_is_created_with_its_queue_job_and_read_with_its_initiator() {
        let (store, user) = store();
        let job = block_on(store.create_migration_job(
            &new_job(MigrationType::Export, user, 10),
            Some(JobKind::MigrationExport),
            None,
        ))
        .expect("stored")
        .expect("under the limit");
        assert_eq!(job.state, MigrationState::Initialising);
        assert_eq!(job.kind, MigrationType::Export);
        assert_eq!(job.initiator.as_ref().map(|u| u.name.as_str()), Some("admin"));
        assert_eq!((job.started_at, job.updated_at, job.ended_at), (Timestamp(10), Timestamp(10), None));
        let db = store.database();
        assert_eq!(
            db.count(&format!(
                "SELECT COUNT(*) FROM jobs WHERE kind = 'MIGRATION_EXPORT' AND json_extract(payload, '$.migrationJobId') = {}",
                job.id
            )),
            1
        );
        assert_eq!(
            block_on(store.migration_job(job.id, Some(MigrationType::Export))).expect("read"),
            Some(job.clone())
        );
        // Another type's id space is not this one's.
        assert_eq!(block_on(store.migration_job(job.id, Some(MigrationType::Import))).expect("read"), None);
    }

    #[test]
    fn the_limit_refuses_a_job_and_writes_nothing() {
        let (store, user) = store();
        let make = |now| {
            block_on(store.create_migration_job(
                &new_job(MigrationType::Import, user, now),
                Some(JobKind::MigrationImport),
                Some(1),
            ))
            .expect("stored")
        };
        let first = make(1).expect("first fits");
        assert!(make(2).is_none(), "a second import while one runs is refused");
        let db = store.database();
        assert_eq!(db.count("SELECT COUNT(*) FROM migration_jobs"), 1);
        assert_eq!(db.count("SELECT COUNT(*) FROM jobs"), 1);
        // An export is another type: not counted.
        assert!(
            block_on(store.create_migration_job(&new_job(MigrationType::Export, user, 3), None, Some(1)))
                .expect("stored")
                .is_some()
        );
        // Once the first ends, another import may start.
        let done = MigrationUpdate { state: Some(MigrationState::Completed), ..MigrationUpdate::default() };
        block_on(store.update_migration_job(first.id, &done, &[], Timestamp(4))).expect("updated");
        assert_eq!(block_on(store.active_migration_jobs(MigrationType::Import)).expect("count"), 0);
        assert!(make(5).is_some());
    }

    #[test]
    fn cancel_is_refused_once_done_or_already_cancelled() {
        let (store, user) = store();
        let create = |now| {
            block_on(store.create_migration_job(&new_job(MigrationType::Export, user, now), None, None))
                .expect("stored")
                .expect("created")
        };
        // Not picked up yet: cancelled at once.
        let waiting = create(1);
        let cancelled = block_on(store.cancel_migration_job(waiting.id, None, Timestamp(2))).expect("ran").expect("ok");
        assert_eq!((cancelled.state, cancelled.ended_at), (MigrationState::Canceled, Some(Timestamp(2))));
        assert_eq!(
            block_on(store.cancel_migration_job(waiting.id, None, Timestamp(3))).expect("ran"),
            Err(MigrationError::AlreadyDone)
        );
        // Running on a node: CANCELING, which the node's next report cannot undo.
        let running = create(4);
        let run = MigrationUpdate {
            state: Some(MigrationState::Running),
            node_id: Some(9),
            progress: Some(10),
            ..MigrationUpdate::default()
        };
        block_on(store.update_migration_job(running.id, &run, &[], Timestamp(5))).expect("updated");
        let asked = block_on(store.cancel_migration_job(running.id, Some(MigrationType::Export), Timestamp(6)))
            .expect("ran")
            .expect("ok");
        assert_eq!((asked.state, asked.ended_at), (MigrationState::Canceling, None));
        assert_eq!(
            block_on(store.cancel_migration_job(running.id, None, Timestamp(7))).expect("ran"),
            Err(MigrationError::AlreadyDone),
            "already cancelled"
        );
        let still =
            block_on(store.update_migration_job(running.id, &run, &[], Timestamp(8))).expect("ran").expect("job");
        assert_eq!(still.state, MigrationState::Canceling);
        let end = MigrationUpdate { state: Some(MigrationState::Canceled), ..MigrationUpdate::default() };
        let ended =
            block_on(store.update_migration_job(running.id, &end, &[], Timestamp(9))).expect("ran").expect("job");
        assert_eq!((ended.state, ended.ended_at), (MigrationState::Canceled, Some(Timestamp(9))));
        // A final state is final.
        let late = MigrationUpdate { state: Some(MigrationState::Completed), ..MigrationUpdate::default() };
        let after =
            block_on(store.update_migration_job(running.id, &late, &[], Timestamp(10))).expect("ran").expect("job");
        assert_eq!((after.state, after.ended_at), (MigrationState::Canceled, Some(Timestamp(9))));
        assert_eq!(
            block_on(store.cancel_migration_job(running.id, None, Timestamp(11))).expect("ran"),
            Err(MigrationError::AlreadyDone)
        );
        assert_eq!(
            block_on(store.cancel_migration_job(999, None, Timestamp(11))).expect("ran"),
            Err(MigrationError::NoSuchJob)
        );
        assert_eq!(
            block_on(store.cancel_migration_job(running.id, Some(MigrationType::Import), Timestamp(11))).expect("ran"),
            Err(MigrationError::NoSuchJob),
            "an export is not an import"
        );
    }

    #[test]
    fn progress_and_messages_are_written_together_and_paged_by_severity() {
        let (store, user) = store();
        let job = block_on(store.create_migration_job(&new_job(MigrationType::Mesh, user, 1), None, None))
            .expect("stored")
            .expect("created");
        let update = MigrationUpdate {
            state: Some(MigrationState::Running),
            progress: Some(150),
            progress_message: Some("halfway".into()),
            archive_path: Some("migration/export/1.tar".into()),
            ..MigrationUpdate::default()
        };
        let messages = [
            NewMessage::new(Severity::Info, "job", "started"),
            NewMessage::new(Severity::Warn, "P/a", "credentials were left out"),
            NewMessage::new(Severity::Error, "P/b", "could not read"),
            NewMessage::new(Severity::Warn, "P/c", "credentials were left out"),
        ];
        let now =
            block_on(store.update_migration_job(job.id, &update, &messages, Timestamp(2))).expect("ran").expect("job");
        assert_eq!(now.progress, 100, "clamped");
        assert_eq!(now.progress_message.as_deref(), Some("halfway"));
        assert_eq!(now.archive_path.as_deref(), Some("migration/export/1.tar"));
        assert_eq!(now.updated_at, Timestamp(2));
        block_on(store.add_migration_messages(job.id, &[NewMessage::new(Severity::Info, "job", "done")], Timestamp(3)))
            .expect("logged");

        let (all, more) = block_on(store.migration_messages(job.id, &[], 0, 3)).expect("page");
        assert!(more);
        assert_eq!(
            all.iter().map(|m| m.text.as_str()).collect::<Vec<_>>(),
            ["started", "credentials were left out", "could not read"]
        );
        let (rest, more) = block_on(store.migration_messages(job.id, &[], 3, 3)).expect("page");
        assert!(!more);
        assert_eq!(rest.len(), 2);
        let (warnings, _) = block_on(store.migration_messages(job.id, &[Severity::Warn], 0, 25)).expect("page");
        assert_eq!(warnings.iter().map(|m| m.subject.as_str()).collect::<Vec<_>>(), ["P/a", "P/c"]);
        let (two, _) =
            block_on(store.migration_messages(job.id, &[Severity::Warn, Severity::Error], 0, 25)).expect("page");
        assert_eq!(two.len(), 3);
        let (other, _) = block_on(store.migration_messages(job.id + 1, &[], 0, 25)).expect("page");
        assert!(other.is_empty());
    }

    #[test]
    fn an_export_reads_settings_labels_and_grants_as_the_manifest_takes_them() {
        let (store, user) = store();
        let db = store.database();
        db.execute(&format!(
            "INSERT INTO projects (id, key, name, created_at) VALUES (100, 'P', 'P', 1); \
             INSERT INTO repositories (id, project_id, slug, name, default_branch, hierarchy_id, created_at, \
               upstream_url, upstream_userinfo_sealed) VALUES (5, 100, 'r', 'r', 'main', 'h', 1, 'https://e.com/r.git', 'sealed'); \
             INSERT INTO pull_mirrors (repository_id, enabled, only_mirror_protected_branches, \
               mirror_overwrites_diverged_branches, mirror_branch_regex, updated_at) VALUES (5, 1, 1, 0, '^rel', 1); \
             INSERT INTO repository_labels (repository_id, name) VALUES (5, 'b'), (5, 'a'); \
             INSERT INTO repository_grants (repository_id, user_id, level) VALUES (5, {user}, 'WRITE'); \
             INSERT INTO project_grants (project_id, user_id, level) VALUES (100, {user}, 'READ'); \
             INSERT INTO repository_hashes (repository_id, content, computed_at) VALUES (5, 'abc', 1);"
        ));
        let (rows, grants) = block_on(store.export_rows()).expect("read");
        let row = rows.first().expect("one repository");
        let pull: crate::migration::archive::ManifestPull =
            serde_json::from_str(row.pull.as_deref().expect("pull settings")).expect("reads as the manifest's");
        assert!(pull.enabled && pull.only_protected_branches && !pull.overwrite_diverged_branches);
        assert_eq!(pull.mirror_branch_regex.as_deref(), Some("^rel"));
        assert_eq!(serde_json::from_str::<Vec<String>>(&row.labels).expect("labels"), ["a", "b"]);
        let repo_grants: Vec<crate::migration::archive::ManifestGrant> =
            serde_json::from_str(&row.grants).expect("grants");
        assert_eq!((repo_grants[0].user.as_str(), repo_grants[0].level.as_str()), ("admin", "WRITE"));
        assert_eq!((row.upstream_userinfo_sealed.as_deref(), row.hash.as_deref()), (Some("sealed"), Some("abc")));
        assert_eq!(
            grants.iter().map(|g| (g.key.as_str(), g.user.as_str(), g.level.as_str())).collect::<Vec<_>>(),
            [("P", "admin", "READ")]
        );
    }
}
