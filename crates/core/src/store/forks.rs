//! Forks: the fork's own git location and sync settings (`fork_syncs`), the refs its last sync
//! left out of step (`fork_ref_states`), and the jobs a request waits for.

use super::port::{Database, Outcome, Statement, Value, row, sql};
use super::registry::{REPO_SELECT, REPO_VISIBLE, RepoRow, RepositoryKey, Viewer};
use super::{Grants, Store, StoreResult, corrupt, nth, split_page};
use crate::forks::RefSyncState;
use crate::queue::{JobReason, WAITED_FOR_PRIORITY};
use crate::registry::{NewRepository, Repository};
use crate::time::Timestamp;
use crate::urls::StoredUrl;

/// A fork's sync settings and last outcome.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ForkSync {
    /// The fork.
    pub repository_id: i64,
    /// `KEY/slug` of the origin when it was forked.
    pub origin_name: String,
    /// The fork's own git location (credentials sealed).
    pub url: StoredUrl,
    /// Whether sync is switched on.
    pub enabled: bool,
    /// The last completed sync.
    pub last_sync: Option<Timestamp>,
    /// Why the last sync failed.
    pub last_error: Option<String>,
    /// For a fork in a personal project: whether its owner can still read the origin (seed
    /// 001: sync is available only while they can). Always true for other forks.
    pub owner_reads_origin: bool,
}

/// A fork's settings row (`f`) with whether the owner of its personal project, if it is in one,
/// can still read the origin: public, an administrator, or a grant through any source. Followed
/// by a `WHERE` on `f.repository_id`.
pub(super) const FORK_SELECT: &str = "SELECT f.*, (SELECT p.owner_id IS NULL OR EXISTS (SELECT 1 FROM repositories o \
       JOIN projects op ON op.id = o.project_id WHERE o.id = r.origin_id AND (o.public = 1 OR op.public = 1 \
       OR EXISTS (SELECT 1 FROM users u WHERE u.id = p.owner_id AND u.role IN ('ADMIN', 'SYS_ADMIN')) \
       OR EXISTS (SELECT 1 FROM effective_repository_grants g WHERE g.repository_id = o.id AND g.user_id = p.owner_id) \
       OR EXISTS (SELECT 1 FROM effective_project_grants g WHERE g.project_id = op.id AND g.user_id = p.owner_id))) \
     FROM repositories r JOIN projects p ON p.id = r.project_id WHERE r.id = f.repository_id) AS owner_reads_origin \
     FROM fork_syncs f";

row! {
    struct ForkRow {
        repository_id: i64,
        origin_name: String,
        url: String,
        url_masked: String,
        userinfo_sealed: Option<String>,
        enabled: i64,
        last_sync: Option<i64>,
        last_error: Option<String>,
        owner_reads_origin: Option<i64>,
    }
}

impl From<ForkRow> for ForkSync {
    fn from(r: ForkRow) -> Self {
        Self {
            repository_id: r.repository_id,
            origin_name: r.origin_name,
            url: StoredUrl { plain: r.url, masked: r.url_masked, sealed_userinfo: r.userinfo_sealed },
            enabled: r.enabled != 0,
            last_sync: r.last_sync.map(Timestamp),
            last_error: r.last_error,
            owner_reads_origin: r.owner_reads_origin != Some(0),
        }
    }
}

row! {
    struct RefStateRow {
        ref_name: String,
        state: String,
    }
}

pub(super) fn read_fork(outcome: Outcome) -> StoreResult<Option<ForkSync>> {
    Ok(outcome.first::<ForkRow>()?.map(ForkSync::from))
}

pub(super) fn read_ref_states(outcome: Outcome) -> StoreResult<Vec<(String, RefSyncState)>> {
    outcome
        .read::<RefStateRow>()?
        .into_iter()
        .map(|r| Ok((r.ref_name, RefSyncState::parse(&r.state).ok_or_else(|| corrupt("fork ref state"))?)))
        .collect()
}

/// A fork and what its status shows, read with the caller's grants.
#[derive(Debug, Clone)]
pub struct ForkView {
    /// The repository.
    pub repository: Option<Repository>,
    /// The caller's grants.
    pub grants: Grants,
    /// Its sync settings, if it is a fork.
    pub fork: Option<ForkSync>,
    /// The refs its last sync left out of step.
    pub refs: Vec<(String, RefSyncState)>,
}

/// How a fork job ended, as the report that ends its lease records it.
#[derive(Debug, Clone, Copy)]
pub struct ForkOutcome<'a> {
    /// The sync completed (the refs below are the fork's state now).
    pub synced: bool,
    /// The refs left out of step (when `synced`).
    pub refs: &'a [(String, RefSyncState)],
    /// Why it failed, if it did.
    pub error: Option<&'a str>,
}

/// Records a fork job's outcome while the lease `(job, lease id)` is held: the refs replaced
/// and the time of the sync, or the error.
pub(super) fn fork_outcome_statements(
    repository_id: i64,
    outcome: ForkOutcome<'_>,
    now: Timestamp,
    (job, lease): (i64, &str),
) -> Vec<Statement> {
    let held = super::mirrors::lease_held(2, 3);
    if !outcome.synced {
        return vec![sql!(
            format!("UPDATE fork_syncs SET last_error = ?4, updated_at = ?5 WHERE repository_id = ?1 AND {held}"),
            repository_id,
            job,
            lease,
            outcome.error,
            now.millis()
        )];
    }
    let refs: Vec<serde_json::Value> =
        outcome.refs.iter().map(|(name, state)| serde_json::json!([name, state.as_str()])).collect();
    vec![
        sql!(format!("DELETE FROM fork_ref_states WHERE repository_id = ?1 AND {held}"), repository_id, job, lease),
        sql!(
            format!(
                "INSERT INTO fork_ref_states (repository_id, ref_name, state) \
                 SELECT ?1, json_extract(value, '$[0]'), json_extract(value, '$[1]') FROM json_each(?4) WHERE {held}"
            ),
            repository_id,
            job,
            lease,
            serde_json::Value::Array(refs).to_string()
        ),
        sql!(
            format!(
                "UPDATE fork_syncs SET last_sync = ?4, last_error = NULL, updated_at = ?4 \
                 WHERE repository_id = ?1 AND {held}"
            ),
            repository_id,
            job,
            lease,
            now.millis()
        ),
    ]
}

/// Queues a fork sync of `?1` ahead of routine work, or raises the priority of the one that waits
/// (same payload), and reads back the id of the job that will do it: the request waits for it.
fn request_statements(repository_id: i64, payload: Option<&str>, now: Timestamp) -> Vec<Statement> {
    let params = || -> Vec<Value> { vec![repository_id.into(), payload.into()] };
    let waiting = "kind = 'FORK_SYNC' AND repository_id = ?1 AND payload IS ?2 AND state = 'QUEUED'";
    let mut insert = params();
    insert.push(now.millis().into());
    vec![
        Statement::new(format!("UPDATE jobs SET priority = {WAITED_FOR_PRIORITY} WHERE {waiting}"), params()),
        Statement::new(
            format!(
                "INSERT OR IGNORE INTO jobs (kind, repository_id, reason, enqueued_at, priority, payload) \
                 VALUES ('FORK_SYNC', ?1, '{}', ?3, {WAITED_FOR_PRIORITY}, ?2)",
                JobReason::Requested.as_str()
            ),
            insert,
        ),
        Statement::new(format!("SELECT id AS n FROM jobs WHERE {waiting} ORDER BY id DESC LIMIT 1"), params()),
    ]
}

impl<D: Database> Store<D> {
    /// Adds a fork of `origin` (named `origin_name`) with its own git location `url`, in one batch.
    pub async fn insert_fork(&self, r: &NewRepository, origin_name: &str, url: &StoredUrl) -> StoreResult<Repository> {
        let fork = sql!(
            "INSERT INTO fork_syncs (repository_id, origin_name, url, url_masked, userinfo_sealed, updated_at) \
             VALUES (last_insert_rowid(), ?1, ?2, ?3, ?4, ?5)",
            origin_name,
            &url.plain,
            &url.masked,
            url.sealed_userinfo.as_deref(),
            r.created_at.millis()
        );
        self.insert_repository_with(r, vec![fork]).await
    }

    /// The repository so named, the caller's grants, its fork settings and out-of-step refs: one round trip.
    pub async fn fork_view(&self, key: RepositoryKey<'_>, user: Option<i64>) -> StoreResult<ForkView> {
        let id = key.id_expression();
        let data = vec![
            Statement::new(format!("{FORK_SELECT} WHERE f.repository_id = {id}"), key.params().into()),
            Statement::new(
                format!("SELECT ref_name, state FROM fork_ref_states WHERE repository_id = {id} ORDER BY ref_name"),
                key.params().into(),
            ),
        ];
        let (repository, grants, mut out) = self.repository_with(key, user, data).await?;
        Ok(ForkView {
            repository,
            grants,
            fork: read_fork(nth(&mut out, 0)?)?,
            refs: read_ref_states(nth(&mut out, 1)?)?,
        })
    }

    /// A repository's origin, if it has one that still exists.
    pub async fn origin_of(&self, repository: &Repository) -> StoreResult<Option<Repository>> {
        match repository.origin_id {
            Some(id) => self.repository_by_id(id).await,
            None => Ok(None),
        }
    }

    /// One page of the direct forks of `origin_id` the viewer may see, by project key and slug,
    /// and whether more follow.
    pub async fn list_forks(
        &self,
        origin_id: i64,
        viewer: Viewer,
        offset: u64,
        limit: u64,
    ) -> StoreResult<(Vec<Repository>, bool)> {
        let rows = self
            .rows::<RepoRow>(sql!(
                format!(
                    "{REPO_SELECT} WHERE {REPO_VISIBLE} AND r.origin_id = ?2 ORDER BY p.key, r.slug LIMIT ?3 OFFSET ?4"
                ),
                viewer.param(),
                origin_id,
                super::identity::page_limit(limit),
                super::identity::page_offset(offset)
            ))
            .await?;
        Ok(split_page(rows.into_iter().map(Repository::from).collect(), limit))
    }

    /// Switches a fork's sync on or off; when `request` (switching on), queues a sync ahead of
    /// routine work in the same batch and answers its job's id.
    pub async fn set_fork_sync(
        &self,
        repository_id: i64,
        enabled: bool,
        now: Timestamp,
        request: bool,
    ) -> StoreResult<Option<i64>> {
        let mut batch = vec![sql!(
            "UPDATE fork_syncs SET enabled = ?2, updated_at = ?3 WHERE repository_id = ?1",
            repository_id,
            enabled,
            now.millis()
        )];
        if request {
            batch.extend(request_statements(repository_id, None, now));
        }
        let last = batch.len() - 1;
        let mut out = self.batch(batch).await?;
        if !request {
            return Ok(None);
        }
        Ok(nth(&mut out, last)?.first::<super::registry::CountRow>()?.map(|c| c.n as i64))
    }

    /// Queues a fork job carrying `payload` (a fork action) ahead of routine work; its id.
    pub async fn request_fork_job(&self, repository_id: i64, payload: &str, now: Timestamp) -> StoreResult<i64> {
        let mut out = self.batch(request_statements(repository_id, Some(payload), now)).await?;
        nth(&mut out, 2)?.first::<super::registry::CountRow>()?.map(|c| c.n as i64).ok_or_else(|| corrupt("job"))
    }

    /// A fork's settings and out-of-step refs, by id: one round trip (what a waiting request reads).
    pub async fn fork_state(&self, repository_id: i64) -> StoreResult<(Option<ForkSync>, Vec<(String, RefSyncState)>)> {
        let mut out = self
            .batch(vec![
                sql!(format!("{FORK_SELECT} WHERE f.repository_id = ?1"), repository_id),
                sql!(
                    "SELECT ref_name, state FROM fork_ref_states WHERE repository_id = ?1 ORDER BY ref_name",
                    repository_id
                ),
            ])
            .await?;
        Ok((read_fork(nth(&mut out, 0)?)?, read_ref_states(nth(&mut out, 1)?)?))
    }
}
