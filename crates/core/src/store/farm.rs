//! The mirror farm's tables: upstream servers and their selected projects, farm repositories and
//! their sync records, and every repository's content hash.

use super::port::{Database, Outcome, Statement, row, sql};
use super::registry::RepoRow;
use super::{Store, StoreResult, corrupt, nth, split_page};
use crate::farm::{
    DiscoveredRepository, DiscoveryPlan, FarmEntry, MirrorMode, MirrorSettings, SyncProgress, UpstreamServer,
    UpstreamState, UpstreamType,
};
use crate::queue::JobReason;
use crate::registry::Repository;
use crate::time::Timestamp;
use crate::urls::StoredUrl;

row! {
    struct UpstreamRow {
        id: String,
        type_: String,
        base_url: String,
        api_base_url: String,
        token_sealed: Option<String>,
        state: String,
        state_reason: Option<String>,
        mode: String,
        project_ids: String,
        last_discovery: Option<i64>,
        publishes_hashes: Option<i64>,
        hashes_listed_at: Option<i64>,
        refs_listed_at: Option<i64>,
        created_at: i64,
    }
}

/// An upstream server's columns, with its selected projects as a JSON array.
pub(super) const UPSTREAM_SELECT: &str = "SELECT u.id, u.type AS type_, u.base_url, u.api_base_url, u.token_sealed, u.state, \
     u.state_reason, u.mode, (SELECT json_group_array(project_id) FROM (SELECT project_id FROM upstream_projects \
       WHERE upstream_id = u.id ORDER BY project_id)) AS project_ids, u.last_discovery, u.publishes_hashes, \
     u.hashes_listed_at, u.refs_listed_at, u.created_at FROM upstream_servers u";

impl UpstreamRow {
    fn into_server(self) -> StoreResult<UpstreamServer> {
        let bad = || corrupt("upstream server");
        let project_ids: Vec<String> = serde_json::from_str(&self.project_ids).map_err(|_| bad())?;
        Ok(UpstreamServer {
            id: self.id,
            kind: UpstreamType::parse(&self.type_).ok_or_else(bad)?,
            base_url: self.base_url,
            api_base_url: self.api_base_url,
            token_sealed: self.token_sealed,
            state: UpstreamState::parse(&self.state).ok_or_else(bad)?,
            state_reason: self.state_reason,
            settings: MirrorSettings { mode: MirrorMode::parse(&self.mode).ok_or_else(bad)?, project_ids },
            last_discovery: self.last_discovery.map(Timestamp),
            publishes_hashes: self.publishes_hashes.map(|p| p != 0),
            hashes_listed_at: self.hashes_listed_at.map(Timestamp),
            refs_listed_at: self.refs_listed_at.map(Timestamp),
            created_at: Timestamp(self.created_at),
        })
    }
}

pub(super) fn read_upstreams(outcome: Outcome) -> StoreResult<Vec<UpstreamServer>> {
    outcome.read::<UpstreamRow>()?.into_iter().map(UpstreamRow::into_server).collect()
}

/// A farm repository: the repository, where it came from and how its syncs went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FarmRepository {
    /// The local repository.
    pub repository: Repository,
    /// The upstream server.
    pub upstream_id: String,
    /// The upstream's id of it.
    pub external_repo_id: String,
    /// The first successful sync.
    pub initial_sync: Option<Timestamp>,
    /// The latest successful sync.
    pub last_sync: Option<Timestamp>,
    /// Consecutive failed syncs.
    pub failed_sync_count: u32,
    /// Why the latest sync failed.
    pub last_error: Option<String>,
    /// The copy's content hash after its latest sync, if a node computed one.
    pub content_hash: Option<String>,
}

/// A farm repository's columns (`f_…`) after a repository's, with its content hash.
fn farm_select(filter: &str) -> String {
    let select = super::registry::repo_columns!();
    let from = super::registry::REPO_FROM;
    format!(
        "{select}, f.upstream_id AS f_upstream_id, f.external_repo_id AS f_external_repo_id, \
         f.initial_sync AS f_initial_sync, f.last_sync AS f_last_sync, f.failed_sync_count AS f_failed_sync_count, \
         f.last_error AS f_last_error, h.content AS f_content_hash {from} \
         JOIN farm_repositories f ON f.repository_id = r.id LEFT JOIN repository_hashes h ON h.repository_id = r.id \
         WHERE {filter}"
    )
}

row! {
    struct FarmColumns {
        f_upstream_id: String,
        f_external_repo_id: String,
        f_initial_sync: Option<i64>,
        f_last_sync: Option<i64>,
        f_failed_sync_count: u32,
        f_last_error: Option<String>,
        f_content_hash: Option<String>,
    }
}

fn read_farm(outcome: Outcome) -> StoreResult<Vec<FarmRepository>> {
    let repos = outcome.clone().read::<RepoRow>()?;
    let farm = outcome.read::<FarmColumns>()?;
    Ok(repos
        .into_iter()
        .zip(farm)
        .map(|(r, f)| FarmRepository {
            repository: r.into(),
            upstream_id: f.f_upstream_id,
            external_repo_id: f.f_external_repo_id,
            initial_sync: f.f_initial_sync.map(Timestamp),
            last_sync: f.f_last_sync.map(Timestamp),
            failed_sync_count: f.f_failed_sync_count,
            last_error: f.f_last_error,
            content_hash: f.f_content_hash,
        })
        .collect())
}

/// The upstream servers (`u`) polled by their published content hashes, with one paged listing:
/// Bitbucket's REST publishes them (and mirrorfarm serves the same); GitLab and Gitea do not,
/// and one whose listing was refused (`publishes_hashes = 0`) is polled by its repositories'
/// refs, listed by the node (see [`ref_listing_statements`]).
pub(super) const POLLED_BY_HASH: &str = "u.type = 'bitbucket' AND IFNULL(u.publishes_hashes, 1) = 1";

/// The repositories (`r`) an upstream's poll may pull (`WHERE …`, continued with `AND`): not
/// archived, with an upstream, and their pull mirror on (or implicit).
const POLLABLE: &str = "LEFT JOIN pull_mirrors p ON p.repository_id = r.id \
     WHERE r.archived = 0 AND r.upstream_url IS NOT NULL AND IFNULL(p.enabled, 1) = 1";

/// Most listed hashes one statement of a hash poll's report binds (one JSON value): 2,000 ids
/// and hashes stay far below D1's 2 MB per value.
const HASHES_PER_STATEMENT: usize = 2_000;

/// Queues a discovery of upstream `?1` (absorbed by one already waiting).
const ENQUEUE_DISCOVERY: &str = "INSERT OR IGNORE INTO jobs (kind, upstream_id, reason, enqueued_at) \
     SELECT 'DISCOVER', id, ?2, ?3 FROM upstream_servers WHERE id = ?1";

/// A waiting or running ref-change item: a farm repository's queued or leased pull.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueuedFarmSync {
    /// The upstream's id of the repository.
    pub external_repo_id: String,
    /// Tries so far.
    pub attempt: u32,
    /// Whether a node holds it.
    pub leased: bool,
    /// When it was queued.
    pub enqueued_at: Timestamp,
}

/// What a discovery report changes, besides the statements: the repositories it removes.
pub struct DiscoveryWrite<'a> {
    /// The upstream server listed.
    pub upstream_id: &'a str,
    /// What the listing means (see [`crate::farm::plan_discovery`]).
    pub plan: &'a DiscoveryPlan<'a>,
    /// The sealed credentials new farm repositories clone with.
    pub sealed_userinfo: Option<&'a str>,
}

/// The statements that record a completed discovery, guarded by the lease `(job, lease)`:
/// projects and repositories added (each new repository's first sync queued), kept ones'
/// metadata refreshed, removed ones deleted (the last statement returns their ids), and the
/// upstream marked INSTALLED.
pub(super) fn discovery_statements(
    w: &DiscoveryWrite<'_>,
    now: Timestamp,
    (job, lease): (i64, &str),
) -> Vec<Statement> {
    let held = super::mirrors::lease_held(2, 3);
    let listed = |repos: &[&DiscoveredRepository]| {
        serde_json::Value::Array(
            repos
                .iter()
                .map(|r| {
                    let url = crate::urls::GitUrl::parse(&r.clone_url);
                    serde_json::json!({
                        "projectKey": r.project_key.to_ascii_uppercase(),
                        "projectName": r.project_name,
                        "repoId": r.repo_id,
                        "projectId": r.project_id,
                        "slug": r.slug.to_ascii_lowercase(),
                        "name": r.name,
                        "description": r.description,
                        "public": r.public,
                        "defaultBranch": r.default_branch.as_deref().unwrap_or("main"),
                        "url": url.as_ref().map(|u| u.without_credentials()).unwrap_or_default(),
                        // Shown masked when the farm's credentials are sealed beside it.
                        "masked": url.as_ref().map(|u| u.with_userinfo(w.sealed_userinfo.map(|_| "*****:*****"))).unwrap_or_default(),
                    })
                })
                .collect(),
        )
        .to_string()
    };
    let added = listed(&w.plan.add);
    let kept = listed(&w.plan.keep);
    let removed = serde_json::Value::from(w.plan.remove.clone()).to_string();
    let field = |name: &str| format!("json_extract(d.value, '$.{name}')");
    let (key, name, url) = (field("projectKey"), field("projectName"), field("url"));
    // Projects named as upstream, or by their key where that name is taken here.
    let projects = [name.as_str(), key.as_str()].map(|project_name| {
        sql!(
            format!(
                "INSERT OR IGNORE INTO projects (key, name, public, created_at) \
                 SELECT DISTINCT {key}, {project_name}, 0, ?4 FROM json_each(?1) d WHERE {held}"
            ),
            added.as_str(),
            job,
            lease,
            now.millis()
        )
    });
    let mut out = Vec::from(projects);
    out.extend([
        // A slug already taken here by a repository of our own is left alone (and not linked).
        sql!(
            format!(
                "INSERT OR IGNORE INTO repositories (project_id, slug, name, description, default_branch, public, \
                   forkable, upstream_url, upstream_url_masked, upstream_userinfo_sealed, hierarchy_id, created_at) \
                 SELECT p.id, {slug}, {rname}, {desc}, {branch}, {public}, 1, {url}, {masked}, ?5, \
                   lower(hex(randomblob(10))), ?4 FROM json_each(?1) d JOIN projects p ON p.key = {key} WHERE {held}",
                slug = field("slug"),
                rname = field("name"),
                desc = field("description"),
                branch = field("defaultBranch"),
                public = field("public"),
                masked = field("masked"),
            ),
            added.as_str(),
            job,
            lease,
            now.millis(),
            w.sealed_userinfo
        ),
        sql!(
            format!(
                "INSERT OR IGNORE INTO farm_repositories (repository_id, upstream_id, external_repo_id, external_project_id) \
                 SELECT r.id, ?4, {repo_id}, {project_id} FROM json_each(?1) d JOIN projects p ON p.key = {key} \
                 JOIN repositories r ON r.project_id = p.id AND r.slug = {slug} \
                 WHERE r.created_at = ?5 AND r.upstream_url = {url} \
                 AND NOT EXISTS (SELECT 1 FROM farm_repositories o WHERE o.repository_id = r.id) AND {held}",
                repo_id = field("repoId"),
                project_id = field("projectId"),
                slug = field("slug"),
            ),
            added.as_str(),
            job,
            lease,
            w.upstream_id,
            now.millis()
        ),
        // Kept repositories follow the upstream's metadata and clone URL.
        sql!(
            format!(
                "UPDATE repositories SET (name, description, public, upstream_url) = \
                   (SELECT {rname}, {desc}, {public}, {url} FROM json_each(?1) d JOIN farm_repositories f \
                    ON f.external_repo_id = {repo_id} WHERE f.repository_id = repositories.id AND f.upstream_id = ?4) \
                 WHERE id IN (SELECT f.repository_id FROM json_each(?1) d JOIN farm_repositories f \
                   ON f.external_repo_id = {repo_id} WHERE f.upstream_id = ?4) AND {held}",
                rname = field("name"),
                desc = field("description"),
                public = field("public"),
                repo_id = field("repoId"),
            ),
            kept.as_str(),
            job,
            lease,
            w.upstream_id
        ),
        // Every farm repository of this upstream never synced gets its first sync.
        sql!(
            format!(
                "INSERT OR IGNORE INTO jobs (kind, repository_id, reason, enqueued_at) \
                 SELECT 'PULL_MIRROR', f.repository_id, 'ENABLED', ?4 FROM farm_repositories f \
                 WHERE f.upstream_id = ?1 AND f.initial_sync IS NULL AND NOT EXISTS (SELECT 1 FROM jobs j \
                   WHERE j.repository_id = f.repository_id AND j.kind = 'PULL_MIRROR' AND j.state = 'LEASED') AND {held}"
            ),
            w.upstream_id,
            job,
            lease,
            now.millis()
        ),
        sql!(
            format!(
                "UPDATE upstream_servers SET state = 'INSTALLED', state_reason = NULL, last_discovery = ?4 \
                 WHERE id = ?1 AND {held}"
            ),
            w.upstream_id,
            job,
            lease,
            now.millis()
        ),
        sql!(
            format!(
                "DELETE FROM repositories WHERE id IN (SELECT f.repository_id FROM farm_repositories f \
                   WHERE f.upstream_id = ?4 AND f.repository_id IN (SELECT value FROM json_each(?1))) AND {held} \
                 RETURNING id"
            ),
            removed.as_str(),
            job,
            lease,
            w.upstream_id
        ),
    ]);
    out
}

/// The statement that records a failed discovery: the upstream's state is UNKNOWN, and why.
pub(super) fn discovery_failed_statement(upstream_id: &str, reason: &str, (job, lease): (i64, &str)) -> Statement {
    let held = super::mirrors::lease_held(2, 3);
    sql!(
        format!("UPDATE upstream_servers SET state = 'UNKNOWN', state_reason = ?4 WHERE id = ?1 AND {held}"),
        upstream_id,
        job,
        lease,
        reason
    )
}

/// The statements that record a pull's outcome on its repository, guarded by the lease: the
/// copy's content hash (any repository), and for a farm repository its sync record; a success
/// also makes the upstream hash a hash poll asked the pull to reach the one the copy is synced to.
pub(super) fn sync_record_statements(
    repository_id: i64,
    succeeded: bool,
    error: Option<&str>,
    content_hash: Option<&str>,
    now: Timestamp,
    (job, lease): (i64, &str),
) -> Vec<Statement> {
    let held = super::mirrors::lease_held(2, 3);
    let mut out = Vec::new();
    if let Some(hash) = content_hash {
        // The node that holds the lease now holds a copy with this content.
        out.push(sql!(
            "INSERT INTO node_copies (node_id, repository_id, content, synced_at) \
             SELECT lease_owner, ?1, ?4, ?5 FROM jobs WHERE id = ?2 AND lease_id = ?3 AND state = 'LEASED' \
             ON CONFLICT (repository_id, node_id) DO UPDATE SET content = excluded.content, synced_at = excluded.synced_at",
            repository_id,
            job,
            lease,
            hash,
            now.millis()
        ));
        out.push(sql!(
            format!(
                "INSERT INTO repository_hashes (repository_id, content, computed_at) SELECT ?1, ?4, ?5 WHERE {held} \
                 ON CONFLICT (repository_id) DO UPDATE SET content = excluded.content, computed_at = excluded.computed_at"
            ),
            repository_id,
            job,
            lease,
            hash,
            now.millis()
        ));
    }
    out.push(if succeeded {
        sql!(
            format!(
                "UPDATE farm_repositories SET initial_sync = IFNULL(initial_sync, ?4), last_sync = ?4, \
                 failed_sync_count = 0, last_error = NULL, \
                 upstream_content_hash = IFNULL(pending_content_hash, upstream_content_hash), pending_content_hash = NULL \
                 WHERE repository_id = ?1 AND {held}"
            ),
            repository_id,
            job,
            lease,
            now.millis()
        )
    } else {
        sql!(
            format!(
                "UPDATE farm_repositories SET failed_sync_count = failed_sync_count + 1, last_error = ?4 \
                 WHERE repository_id = ?1 AND {held}"
            ),
            repository_id,
            job,
            lease,
            error
        )
    });
    out
}

impl<D: Database> Store<D> {
    /// Adds an upstream server and queues its first discovery, in one batch.
    pub async fn insert_upstream(&self, u: &UpstreamServer) -> StoreResult<UpstreamServer> {
        let mut out = self
            .batch(vec![
                sql!(
                    "INSERT INTO upstream_servers (id, type, base_url, api_base_url, token_sealed, state, mode, created_at) \
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                    &u.id,
                    u.kind.as_str(),
                    &u.base_url,
                    &u.api_base_url,
                    u.token_sealed.as_deref(),
                    u.state.as_str(),
                    u.settings.mode.as_str(),
                    u.created_at.millis()
                ),
                sql!(ENQUEUE_DISCOVERY, &u.id, JobReason::Settings.as_str(), u.created_at.millis()),
                sql!(format!("{UPSTREAM_SELECT} WHERE u.id = ?1"), &u.id),
            ])
            .await?;
        read_upstreams(nth(&mut out, 2)?)?.pop().ok_or_else(|| corrupt("upstream server"))
    }

    /// The upstream server with this id; the first one added when `None`.
    pub async fn upstream(&self, id: Option<&str>) -> StoreResult<Option<UpstreamServer>> {
        let out = self
            .one(sql!(
                format!("{UPSTREAM_SELECT} WHERE ?1 IS NULL OR u.id = ?1 ORDER BY u.created_at, u.id LIMIT 1"),
                id
            ))
            .await?;
        Ok(read_upstreams(out)?.pop())
    }

    /// One page of the upstream servers, oldest first, and whether more follow.
    pub async fn list_upstreams(&self, offset: u64, limit: u64) -> StoreResult<(Vec<UpstreamServer>, bool)> {
        let out = self
            .one(sql!(
                format!("{UPSTREAM_SELECT} ORDER BY u.created_at, u.id LIMIT ?1 OFFSET ?2"),
                super::identity::page_limit(limit),
                super::identity::page_offset(offset)
            ))
            .await?;
        Ok(split_page(read_upstreams(out)?, limit))
    }

    /// Removes an upstream server and every farm repository it brought (their mirrors, jobs
    /// and records cascade), in one batch. Returns the removed repositories' ids, or `None`
    /// if there was no such server.
    pub async fn delete_upstream(&self, id: &str) -> StoreResult<Option<Vec<i64>>> {
        let mut out = self
            .batch(vec![
                sql!(
                    "DELETE FROM repositories WHERE id IN (SELECT repository_id FROM farm_repositories \
                     WHERE upstream_id = ?1) RETURNING id",
                    id
                ),
                sql!("DELETE FROM upstream_servers WHERE id = ?1", id),
            ])
            .await?;
        row! {
            struct Id {
                id: i64,
            }
        }
        let removed: Vec<i64> = nth(&mut out, 0)?.read::<Id>()?.into_iter().map(|r| r.id).collect();
        Ok((nth(&mut out, 1)?.changes > 0).then_some(removed))
    }

    /// Saves an upstream's settings and queues a discovery, in one batch; `None` if there is no
    /// such server.
    pub async fn save_settings(
        &self,
        id: &str,
        settings: &MirrorSettings,
        now: Timestamp,
    ) -> StoreResult<Option<UpstreamServer>> {
        let projects = serde_json::Value::from(settings.project_ids.clone()).to_string();
        let mut out = self
            .batch(vec![
                sql!("UPDATE upstream_servers SET mode = ?2 WHERE id = ?1", id, settings.mode.as_str()),
                sql!("DELETE FROM upstream_projects WHERE upstream_id = ?1", id),
                sql!(
                    "INSERT OR IGNORE INTO upstream_projects (upstream_id, project_id) \
                     SELECT u.id, j.value FROM upstream_servers u, json_each(?2) j WHERE u.id = ?1",
                    id,
                    projects.as_str()
                ),
                sql!(ENQUEUE_DISCOVERY, id, JobReason::Settings.as_str(), now.millis()),
                sql!(format!("{UPSTREAM_SELECT} WHERE u.id = ?1"), id),
            ])
            .await?;
        Ok(read_upstreams(nth(&mut out, 4)?)?.pop())
    }

    /// An upstream's progress: whether a discovery waits or runs, and how many of its farm
    /// repositories have synced — one statement.
    pub async fn progress(&self, id: &str) -> StoreResult<SyncProgress> {
        row! {
            struct ProgressRow {
                discovering: i64,
                synced: u64,
                total: u64,
            }
        }
        let row = self
            .row::<ProgressRow>(sql!(
                "SELECT EXISTS (SELECT 1 FROM jobs WHERE upstream_id = ?1 AND kind = 'DISCOVER' \
                   AND state IN ('QUEUED', 'LEASED')) AS discovering, \
                 (SELECT COUNT(*) FROM farm_repositories WHERE upstream_id = ?1 AND initial_sync IS NOT NULL) AS synced, \
                 (SELECT COUNT(*) FROM farm_repositories WHERE upstream_id = ?1) AS total",
                id
            ))
            .await?
            .ok_or_else(|| corrupt("progress"))?;
        Ok(SyncProgress { discovering: row.discovering != 0, synced_repos: row.synced, total_repos: row.total })
    }

    /// One page of farm repositories (of one upstream, or all), by local id, and whether more follow.
    pub async fn list_farm_repositories(
        &self,
        upstream: Option<&str>,
        offset: u64,
        limit: u64,
    ) -> StoreResult<(Vec<FarmRepository>, bool)> {
        let out = self
            .one(sql!(
                format!("{} ORDER BY r.id LIMIT ?2 OFFSET ?3", farm_select("(?1 IS NULL OR f.upstream_id = ?1)")),
                upstream,
                super::identity::page_limit(limit),
                super::identity::page_offset(offset)
            ))
            .await?;
        Ok(split_page(read_farm(out)?, limit))
    }

    /// The farm repository an upstream knows by `external_repo_id`.
    pub async fn farm_repository(&self, upstream: &str, external_repo_id: &str) -> StoreResult<Option<FarmRepository>> {
        let out = self
            .one(sql!(farm_select("f.upstream_id = ?1 AND f.external_repo_id = ?2"), upstream, external_repo_id))
            .await?;
        Ok(read_farm(out)?.pop())
    }

    /// The farm repository with this project key and slug.
    pub async fn farm_repository_by_slug(&self, key: &str, slug: &str) -> StoreResult<Option<FarmRepository>> {
        let out = self.one(sql!(farm_select("p.key = ?1 AND r.slug = ?2"), key, slug.to_ascii_lowercase())).await?;
        Ok(read_farm(out)?.pop())
    }

    /// The farm's queue as Bitbucket shows it (farm repositories' waiting and running syncs,
    /// oldest first, at most `limit`) and its full length, in one round trip.
    pub async fn ref_changes(&self, limit: i64) -> StoreResult<(Vec<QueuedFarmSync>, u64)> {
        let from = "FROM jobs j JOIN farm_repositories f ON f.repository_id = j.repository_id \
                    WHERE j.kind = 'PULL_MIRROR' AND j.state IN ('QUEUED', 'LEASED')";
        let mut out = self
            .batch(vec![
                sql!(
                    format!(
                        "SELECT f.external_repo_id, j.attempt, j.state = 'LEASED' AS leased, j.enqueued_at {from} \
                         ORDER BY j.enqueued_at, j.id LIMIT ?1"
                    ),
                    limit
                ),
                sql!(format!("SELECT COUNT(*) AS n {from}")),
            ])
            .await?;
        row! {
            struct Item {
                external_repo_id: String,
                attempt: u32,
                leased: i64,
                enqueued_at: i64,
            }
        }
        let items = nth(&mut out, 0)?
            .read::<Item>()?
            .into_iter()
            .map(|i| QueuedFarmSync {
                external_repo_id: i.external_repo_id,
                attempt: i.attempt,
                leased: i.leased != 0,
                enqueued_at: Timestamp(i.enqueued_at),
            })
            .collect();
        let count = nth(&mut out, 1)?.first::<super::registry::CountRow>()?.map_or(0, |c| c.n);
        Ok((items, count))
    }

    /// Queues a sync of one repository that goes ahead of routine work; with `recreate` the node
    /// drops its copy and clones again. True if queued (or one waits already).
    pub async fn request_repair(&self, repository_id: i64, recreate: bool, now: Timestamp) -> StoreResult<bool> {
        let payload = recreate.then_some(r#"{"recreate":true}"#);
        let out = self
            .one(sql!(
                "INSERT OR IGNORE INTO jobs (kind, repository_id, reason, enqueued_at, priority, payload) \
                 SELECT 'PULL_MIRROR', id, 'MANUAL', ?2, ?3, ?4 FROM repositories WHERE id = ?1",
                repository_id,
                now.millis(),
                crate::queue::WAITED_FOR_PRIORITY,
                payload
            ))
            .await?;
        Ok(out.changes > 0)
    }

    /// The cron: queues a discovery of every upstream not listed since `before`. Returns how many.
    pub async fn queue_due_discoveries(&self, before: Timestamp, now: Timestamp) -> StoreResult<u64> {
        let out = self
            .one(sql!(
                "INSERT OR IGNORE INTO jobs (kind, upstream_id, reason, enqueued_at) \
                 SELECT 'DISCOVER', id, 'SCHEDULE', ?2 FROM upstream_servers WHERE IFNULL(last_discovery, 0) < ?1",
                before.millis(),
                now.millis()
            ))
            .await?;
        Ok(out.changes)
    }

    /// The cron: queues a poll of every upstream that was listed at least once and was not
    /// polled since `before`, unless one is running: by its published content hashes when it
    /// publishes them (see [`POLLED_BY_HASH`]), else by its farm repositories' refs, each listed
    /// by the node. Either way one job polls all its farm repositories. Returns how many.
    pub async fn queue_due_upstream_polls(&self, before: Timestamp, now: Timestamp) -> StoreResult<u64> {
        let out = self
            .one(sql!(
                format!(
                    "INSERT OR IGNORE INTO jobs (kind, upstream_id, reason, enqueued_at) \
                     SELECT 'UPSTREAM_POLL', u.id, 'POLL', ?2 FROM upstream_servers u \
                     WHERE u.last_discovery IS NOT NULL \
                     AND IFNULL(CASE WHEN {POLLED_BY_HASH} THEN u.hashes_listed_at ELSE u.refs_listed_at END, 0) < ?1 \
                     AND NOT EXISTS (SELECT 1 FROM jobs j WHERE j.upstream_id = u.id AND j.kind = 'UPSTREAM_POLL' \
                       AND j.state = 'LEASED')"
                ),
                before.millis(),
                now.millis()
            ))
            .await?;
        Ok(out.changes)
    }

    /// What a poll of upstream `upstream_id` lists when it publishes no content hashes: its
    /// farm repositories that a poll may pull (not archived, pull mirror on), each with its
    /// stored upstream URL, in one round trip. `None` when it is polled by its hashes (see
    /// [`POLLED_BY_HASH`]), or is gone.
    pub async fn ref_poll_targets(&self, upstream_id: &str) -> StoreResult<Option<Vec<(i64, StoredUrl)>>> {
        row! {
            struct ByHash {
                by_hash: i64,
            }
        }
        row! {
            struct Target {
                id: i64,
                upstream_url: String,
                upstream_url_masked: Option<String>,
                upstream_userinfo_sealed: Option<String>,
            }
        }
        let mut out = self
            .batch(vec![
                sql!(
                    format!("SELECT {POLLED_BY_HASH} AS by_hash FROM upstream_servers u WHERE u.id = ?1"),
                    upstream_id
                ),
                sql!(
                    format!(
                        "SELECT r.id, r.upstream_url, r.upstream_url_masked, r.upstream_userinfo_sealed \
                         FROM farm_repositories f JOIN repositories r ON r.id = f.repository_id {POLLABLE} \
                         AND f.upstream_id = ?1 ORDER BY r.id"
                    ),
                    upstream_id
                ),
            ])
            .await?;
        if nth(&mut out, 0)?.first::<ByHash>()?.is_none_or(|u| u.by_hash != 0) {
            return Ok(None);
        }
        let targets = nth(&mut out, 1)?.read::<Target>()?;
        Ok(Some(
            targets
                .into_iter()
                .map(|t| {
                    let masked = t.upstream_url_masked.unwrap_or_else(|| t.upstream_url.clone());
                    let url = StoredUrl { plain: t.upstream_url, masked, sealed_userinfo: t.upstream_userinfo_sealed };
                    (t.id, url)
                })
                .collect(),
        ))
    }

    /// Every repository's content hash, for `ids` (those without one are absent).
    pub async fn content_hashes(&self, ids: &[i64]) -> StoreResult<Vec<(i64, String)>> {
        row! {
            struct Hash {
                repository_id: i64,
                content: String,
            }
        }
        let list = serde_json::Value::from(ids.to_vec()).to_string();
        let rows = self
            .rows::<Hash>(sql!(
                "SELECT repository_id, content FROM repository_hashes WHERE repository_id IN (SELECT value FROM json_each(?1))",
                list.as_str()
            ))
            .await?;
        Ok(rows.into_iter().map(|h| (h.repository_id, h.content)).collect())
    }
}

/// What a hash poll's complete listing writes, under the lease `guard` (job, lease): a pull
/// (reason POLL, so the node still compares the upstream's refs before fetching) of every farm
/// repository of `upstream_id` whose listed hash differs from the one its copy was last synced
/// to, or says nothing (all zeros: never computed), with the listed hash kept as the one that
/// pull is to reach; and the upstream marked as publishing hashes, listed `now`. Pulls of
/// archived repositories and of switched-off pull mirrors are not queued.
pub(super) fn hash_listing_statements(
    upstream_id: &str,
    listed: &[crate::farm::ListedHash],
    now: Timestamp,
    (job, lease): (i64, &str),
) -> Vec<Statement> {
    let held = super::mirrors::lease_held(2, 3);
    // `l` is the listing (`?4`, `[[id, hash], …]`), materialised once; `f` the farm repository
    // each entry names. The listing drives the join (CROSS JOIN, and the materialised table in
    // the update), so each entry is one look-up in the (upstream_id, external_repo_id) index:
    // left to itself, SQLite scans the listing once per farm repository (22 s for 2,000 entries
    // against 7,000 repositories, measured, instead of 10 ms).
    let listing = "l(id, hash) AS MATERIALIZED (SELECT json_extract(value, '$[0]'), json_extract(value, '$[1]') \
                   FROM json_each(?4))";
    let moved = "f.upstream_id = ?1 AND f.external_repo_id = l.id AND f.upstream_content_hash IS NOT l.hash";
    let mut out = Vec::new();
    for chunk in listed.chunks(HASHES_PER_STATEMENT) {
        let pairs: Vec<[&str; 2]> = chunk.iter().map(|h| [h.repo_id.as_str(), h.content_hash.as_str()]).collect();
        let list = serde_json::to_string(&pairs).unwrap_or_else(|_| "[]".into());
        out.push(sql!(
            format!(
                "WITH {listing} INSERT OR IGNORE INTO jobs (kind, repository_id, reason, enqueued_at) \
                 SELECT 'PULL_MIRROR', r.id, 'POLL', ?5 FROM l CROSS JOIN farm_repositories f ON {moved} \
                 JOIN repositories r ON r.id = f.repository_id {POLLABLE} AND {held}"
            ),
            upstream_id,
            job,
            lease,
            list.as_str(),
            now.millis()
        ));
        out.push(sql!(
            format!(
                "WITH {listing} UPDATE farm_repositories AS f SET pending_content_hash = \
                 CASE WHEN trim(l.hash, '0') = '' THEN NULL ELSE l.hash END FROM l WHERE {moved} AND {held}"
            ),
            upstream_id,
            job,
            lease,
            list.as_str()
        ));
    }
    out.push(sql!(
        format!("UPDATE upstream_servers SET publishes_hashes = 1, hashes_listed_at = ?4 WHERE id = ?1 AND {held}"),
        upstream_id,
        job,
        lease,
        now.millis()
    ));
    out
}

/// What a ref poll's complete listing writes, under the lease `guard` (job, lease): a pull
/// (reason POLL: the node compares the refs again before fetching, as they may have moved back)
/// of every listed farm repository of `upstream_id` whose fingerprint differs from the one its
/// last pull recorded, or that could not be listed (no fingerprint: the pull records why); and
/// the upstream marked as listed `now`. Repositories the poll may not pull are skipped.
pub(super) fn ref_listing_statements(
    upstream_id: &str,
    polled: &[crate::farm::PolledRefs],
    now: Timestamp,
    (job, lease): (i64, &str),
) -> Vec<Statement> {
    let held = super::mirrors::lease_held(2, 3);
    // As in `hash_listing_statements`, the listing drives the join, one index look-up per entry.
    let listing = "l(id, fingerprint) AS MATERIALIZED (SELECT json_extract(value, '$[0]'), \
                   json_extract(value, '$[1]') FROM json_each(?4))";
    let mut out = Vec::new();
    for chunk in polled.chunks(HASHES_PER_STATEMENT) {
        let pairs: Vec<(i64, Option<&str>)> =
            chunk.iter().map(|p| (p.repository_id, p.fingerprint.as_deref())).collect();
        let list = serde_json::to_string(&pairs).unwrap_or_else(|_| "[]".into());
        out.push(sql!(
            format!(
                "WITH {listing} INSERT OR IGNORE INTO jobs (kind, repository_id, reason, enqueued_at) \
                 SELECT 'PULL_MIRROR', r.id, 'POLL', ?5 FROM l CROSS JOIN farm_repositories f \
                 ON f.repository_id = l.id AND f.upstream_id = ?1 JOIN repositories r ON r.id = f.repository_id \
                 LEFT JOIN repository_triggers t ON t.repository_id = r.id {POLLABLE} \
                 AND (l.fingerprint IS NULL OR t.upstream_fingerprint IS NOT l.fingerprint) AND {held}"
            ),
            upstream_id,
            job,
            lease,
            list.as_str(),
            now.millis()
        ));
    }
    out.push(sql!(
        format!("UPDATE upstream_servers SET refs_listed_at = ?4 WHERE id = ?1 AND {held}"),
        upstream_id,
        job,
        lease,
        now.millis()
    ));
    out
}

/// A hash poll's listing was refused (404): the upstream publishes no content hashes, and its
/// repositories are polled by their refs from the next run of the cron on.
pub(super) fn hashes_unpublished_statement(upstream_id: &str, (job, lease): (i64, &str)) -> Statement {
    let held = super::mirrors::lease_held(2, 3);
    sql!(format!("UPDATE upstream_servers SET publishes_hashes = 0 WHERE id = ?1 AND {held}"), upstream_id, job, lease)
}

/// The farm entries of the upstream `upstream` (SQL for its id), for discovery to compare a
/// listing with; `?1` is bound to `param`.
pub(super) fn farm_entries_statement(upstream: &str, param: impl Into<super::port::Value>) -> Statement {
    sql!(
        format!("SELECT repository_id, external_repo_id FROM farm_repositories WHERE upstream_id = {upstream}"),
        param.into()
    )
}

row! {
    pub(super) struct FarmEntryRow {
        repository_id: i64,
        external_repo_id: String,
    }
}

pub(super) fn read_farm_entries(outcome: Outcome) -> StoreResult<Vec<FarmEntry>> {
    Ok(outcome
        .read::<FarmEntryRow>()?
        .into_iter()
        .map(|r| FarmEntry { repository_id: r.repository_id, external_repo_id: r.external_repo_id })
        .collect())
}

impl<D: Database> Store<D> {
    /// The figures `…/metrics` shows, in one round trip.
    pub async fn metrics(&self, now: Timestamp) -> StoreResult<crate::farm::FarmMetrics> {
        row! {
            struct Repos {
                synced: i64,
                failing: i64,
                n: u64,
            }
        }
        row! {
            struct Grouped {
                a: String,
                b: String,
                n: u64,
            }
        }
        row! {
            struct Oldest {
                t: Option<i64>,
            }
        }
        row! {
            struct Upstream {
                id: String,
                base_url: String,
                last_sync: Option<i64>,
                last_discovery: Option<i64>,
            }
        }
        let mut out = self
            .batch(vec![
                sql!(
                    "SELECT initial_sync IS NOT NULL AS synced, failed_sync_count > 0 AS failing, COUNT(*) AS n \
                     FROM farm_repositories GROUP BY 1, 2 ORDER BY 1, 2"
                ),
                sql!(
                    "SELECT 'push' AS a, update_status AS b, COUNT(*) AS n FROM remote_mirrors GROUP BY update_status \
                     UNION ALL SELECT 'pull', update_status, COUNT(*) FROM pull_mirrors GROUP BY update_status \
                     ORDER BY 1, 2"
                ),
                sql!(
                    "SELECT kind AS a, state AS b, COUNT(*) AS n FROM jobs WHERE state IN ('QUEUED', 'LEASED') \
                     GROUP BY kind, state ORDER BY 1, 2"
                ),
                sql!(
                    "SELECT MIN(enqueued_at) AS t FROM jobs WHERE state = 'QUEUED' AND IFNULL(not_before, 0) <= ?1",
                    now.millis()
                ),
                sql!(
                    "SELECT u.id, u.base_url, (SELECT MAX(f.last_sync) FROM farm_repositories f WHERE f.upstream_id = u.id) \
                     AS last_sync, u.last_discovery FROM upstream_servers u ORDER BY u.created_at, u.id"
                ),
            ])
            .await?;
        let repositories = nth(&mut out, 0)?
            .read::<Repos>()?
            .into_iter()
            .map(|r| {
                let status =
                    crate::farm::MirroredStatus::of((r.synced != 0).then_some(Timestamp(0)), u32::from(r.failing != 0));
                (status, r.n)
            })
            .collect();
        let grouped = |o: Outcome| -> StoreResult<Vec<(String, String, u64)>> {
            Ok(o.read::<Grouped>()?.into_iter().map(|g| (g.a, g.b, g.n)).collect())
        };
        Ok(crate::farm::FarmMetrics {
            repositories,
            mirrors: grouped(nth(&mut out, 1)?)?,
            jobs: grouped(nth(&mut out, 2)?)?,
            oldest_due: nth(&mut out, 3)?.first::<Oldest>()?.and_then(|o| o.t).map(Timestamp),
            upstreams: nth(&mut out, 4)?
                .read::<Upstream>()?
                .into_iter()
                .map(|u| (u.id, u.base_url, u.last_sync.map(Timestamp), u.last_discovery.map(Timestamp)))
                .collect(),
        })
    }
}
