//! Mesh: node states and links, support zips, and Mesh migrations' moves (see [`crate::mesh`]).

use std::collections::BTreeMap;

use super::migration::{newest_job_statement, read_job};
use super::port::{Database, Statement, row, sql};
use super::registry::{REPO_SELECT, RepoRow};
use super::{Store, StoreResult, nth};
use crate::mesh::migration::{Candidate, MeshMigrationSummary, Move, Placement};
use crate::mesh::{Link, MeshNodeState, Peer};
use crate::migration::{MigrationJob, MigrationType};
use crate::nodes::{FarmNode, LIVE_WINDOW_MS};
use crate::registry::Repository;
use crate::time::Timestamp;

/// SQL for "node `n` is live at `?now`" where `now` is the given parameter.
fn live(node: &str, now_param: usize) -> String {
    format!("{node}.last_seen > ?{now_param} - {LIVE_WINDOW_MS}")
}

/// The statement that brings Mesh migration `job` (SQL) up to date with its repositories: its
/// progress, and once none is pending, how it ended (`?{now}` binds the time).
fn refresh_statement(job: &str, now: usize, params: Vec<super::port::Value>) -> Statement {
    let pending = "EXISTS (SELECT 1 FROM mesh_migration_repos r WHERE r.job_id = migration_jobs.id \
                   AND r.state IN ('QUEUED', 'STAGING', 'STAGED'))";
    Statement::new(
        format!(
            "UPDATE migration_jobs SET \
               progress = (SELECT CASE WHEN COUNT(*) = 0 THEN 100 ELSE \
                 100 * SUM(state IN ('MIGRATED', 'FAILED', 'CANCELED', 'SKIPPED')) / COUNT(*) END \
                 FROM mesh_migration_repos r WHERE r.job_id = migration_jobs.id), \
               state = CASE WHEN {pending} THEN state WHEN state = 'CANCELING' THEN 'CANCELED' \
                 WHEN EXISTS (SELECT 1 FROM mesh_migration_repos r WHERE r.job_id = migration_jobs.id \
                   AND r.state = 'FAILED') THEN 'FAILED' ELSE 'COMPLETED' END, \
               ended_at = CASE WHEN {pending} THEN NULL ELSE ?{now} END, \
               updated_at = ?{now} \
             WHERE id = {job} AND type = 'MESH' AND ended_at IS NULL"
        ),
        params,
    )
}

row! {
    struct LinkRow {
        node_id: i64,
        peer_id: i64,
        reachable: i64,
        rtt_ms: Option<i64>,
        error: Option<String>,
    }
}

row! {
    struct PeerRow {
        id: i64,
        clone_url: String,
    }
}

row! {
    struct CandidateRow {
        id: i64,
        project_id: i64,
        hierarchy_id: String,
    }
}

row! {
    struct HolderRow {
        repository_id: i64,
        node_id: i64,
    }
}

row! {
    struct CountRow {
        node_id: i64,
        n: i64,
    }
}

row! {
    struct CountRow2 {
        n: i64,
    }
}

row! {
    struct IdRow {
        id: i64,
    }
}

row! {
    struct SummaryRow {
        id: i64,
        state: String,
        progress: i64,
        started_at: i64,
        ended_at: Option<i64>,
        max_bandwidth: Option<i64>,
        queue: Option<String>,
    }
}

impl From<SummaryRow> for MeshMigrationSummary {
    fn from(r: SummaryRow) -> Self {
        let queue = r.queue.as_deref().and_then(|q| serde_json::from_str(q).ok()).unwrap_or_default();
        Self {
            job_id: r.id,
            state: r.state,
            progress: r.progress,
            start_time: r.started_at,
            end_time: r.ended_at,
            max_bandwidth: r.max_bandwidth,
            queue,
        }
    }
}

const SUMMARY_SELECT: &str = "SELECT m.id, m.state, m.progress, m.started_at, m.ended_at, m.max_bandwidth, \
     (SELECT json_group_object(state, n) FROM (SELECT state, COUNT(*) AS n FROM mesh_migration_repos \
       WHERE job_id = m.id GROUP BY state)) AS queue FROM migration_jobs m WHERE m.type = 'MESH'";

/// Everything a Mesh migration is planned from, read in one round trip.
#[derive(Debug, Clone, Default)]
pub struct MeshWorld {
    /// Every node.
    pub nodes: Vec<FarmNode>,
    /// Every repository, with its project and fork hierarchy.
    pub candidates: Vec<Candidate>,
    /// Where each repository's current copies are, on live nodes that can serve them.
    pub placement: Placement,
    /// How many copies each node holds.
    pub held: BTreeMap<i64, usize>,
    /// The Mesh migration in progress, if one is.
    pub active: Option<i64>,
}

/// What a leased Mesh move needs, read in the lease's round trip.
#[derive(Debug, Clone)]
pub struct MoveContext {
    /// The migration.
    pub migration_id: i64,
    /// Whether the migration is being cancelled.
    pub cancelling: bool,
    /// The repository moved.
    pub repository: Option<Repository>,
    /// The source node.
    pub source: Option<FarmNode>,
    /// The content hash of the source's copy.
    pub source_content: Option<String>,
    /// The bandwidth cap.
    pub max_bandwidth: Option<i64>,
}

/// How a Mesh move ended, as the edge records it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MoveEnd<'a> {
    /// The target holds a copy equal to the source's: switch to it.
    Moved {
        /// Its content hash.
        content: &'a str,
        /// Text for the migration's messages.
        message: &'a str,
    },
    /// Try again at this time (the job goes back to the queue).
    Retry {
        /// When.
        at: Timestamp,
        /// Why it did not work this time.
        message: &'a str,
    },
    /// Give up: the source keeps serving.
    Failed {
        /// Why.
        message: &'a str,
    },
    /// The migration was cancelled before this move could end: nothing moved.
    Canceled,
}

/// A support zip's row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SupportZip {
    /// Id.
    pub id: i64,
    /// The node it describes.
    pub node_id: i64,
    /// `QUEUED`, `READY` or `FAILED`.
    pub state: String,
    /// Its size once uploaded.
    pub size: Option<i64>,
    /// When it was asked for.
    pub created_at: i64,
}

row! {
    struct ZipRow {
        id: i64,
        node_id: i64,
        state: String,
        size: Option<i64>,
        created_at: i64,
    }
}

impl From<ZipRow> for SupportZip {
    fn from(r: ZipRow) -> Self {
        Self { id: r.id, node_id: r.node_id, state: r.state, size: r.size, created_at: r.created_at }
    }
}

impl<D: Database> Store<D> {
    /// A heartbeat: the node's contact, where it serves clones, and the links it measured, in
    /// one batch that also reads the peers it is to measure next (other live nodes that serve).
    pub async fn heartbeat(
        &self,
        id: i64,
        now: Timestamp,
        clone_url: Option<&str>,
        ssh_url: Option<&str>,
        links: &[Link],
    ) -> StoreResult<Vec<Peer>> {
        let mut batch = vec![sql!(
            "UPDATE farm_nodes SET last_seen = ?2, clone_url = ?3, ssh_url = ?4 WHERE id = ?1",
            id,
            now.millis(),
            clone_url,
            ssh_url
        )];
        if !links.is_empty() {
            let listed: Vec<serde_json::Value> = links
                .iter()
                .map(|l| serde_json::json!({"p": l.peer_id, "r": l.reachable, "t": l.round_trip_ms, "e": l.error}))
                .collect();
            batch.push(sql!(
                "INSERT OR REPLACE INTO node_links (node_id, peer_id, reachable, rtt_ms, error, measured_at) \
                 SELECT ?1, json_extract(value, '$.p'), json_extract(value, '$.r'), json_extract(value, '$.t'), \
                   json_extract(value, '$.e'), ?2 FROM json_each(?3)",
                id,
                now.millis(),
                serde_json::Value::from(listed).to_string()
            ));
        }
        batch.push(sql!(
            format!(
                "SELECT n.id, n.clone_url FROM farm_nodes n WHERE n.id != ?1 AND n.clone_url IS NOT NULL \
                 AND n.state != 'DISABLED' AND {} ORDER BY n.id",
                live("n", 2)
            ),
            id,
            now.millis()
        ));
        let mut out = self.batch(batch).await?;
        let peers = out.pop().unwrap_or_default().read::<PeerRow>()?;
        Ok(peers.into_iter().map(|p| Peer { id: p.id, clone_url: p.clone_url }).collect())
    }

    /// Every node, by id.
    pub async fn all_nodes(&self) -> StoreResult<Vec<FarmNode>> {
        super::nodes::read_nodes(self.one(sql!(format!("{} ORDER BY id", super::nodes::NODE_SELECT))).await?)
    }

    /// One node.
    pub async fn node_by_id(&self, id: i64) -> StoreResult<Option<FarmNode>> {
        Ok(super::nodes::read_nodes(self.one(sql!(format!("{} WHERE id = ?1", super::nodes::NODE_SELECT), id)).await?)?
            .pop())
    }

    /// Every node and every link measured, in one round trip.
    pub async fn nodes_and_links(&self) -> StoreResult<(Vec<FarmNode>, Vec<Link>)> {
        let mut out = self
            .batch(vec![
                sql!(format!("{} ORDER BY id", super::nodes::NODE_SELECT)),
                sql!("SELECT node_id, peer_id, reachable, rtt_ms, error FROM node_links"),
            ])
            .await?;
        let links = out.pop().unwrap_or_default().read::<LinkRow>()?;
        let nodes = super::nodes::read_nodes(out.pop().unwrap_or_default())?;
        let links = links
            .into_iter()
            .map(|l| Link {
                node_id: l.node_id,
                peer_id: l.peer_id,
                reachable: l.reachable != 0,
                round_trip_ms: l.rtt_ms,
                error: l.error,
            })
            .collect();
        Ok((nodes, links))
    }

    /// Renames a node and/or sets its state; `None` if there is no such node, `Conflict` if the
    /// name is taken.
    pub async fn update_node(
        &self,
        id: i64,
        name: Option<&str>,
        state: Option<MeshNodeState>,
    ) -> StoreResult<Option<FarmNode>> {
        let out = self
            .one(sql!(
                "UPDATE farm_nodes SET name = IFNULL(?2, name), state = IFNULL(?3, state) WHERE id = ?1 \
                 RETURNING id, name, lookup, hash, created_at, last_seen, clone_url, state",
                id,
                name,
                state.map(MeshNodeState::as_str)
            ))
            .await?;
        Ok(super::nodes::read_nodes(out)?.pop())
    }

    /// Deletes node `id` (its copies' records and pinned jobs cascade) unless, without `force`,
    /// it holds the only current copy of some repository: then nothing is deleted and their
    /// number is answered.
    pub async fn delete_node(&self, id: i64, force: bool) -> StoreResult<i64> {
        let sole = "SELECT COUNT(*) AS n FROM node_copies c JOIN repository_hashes h \
             ON h.repository_id = c.repository_id AND h.content = c.content WHERE c.node_id = ?1 \
             AND NOT EXISTS (SELECT 1 FROM node_copies o WHERE o.repository_id = c.repository_id \
               AND o.node_id != ?1 AND o.content = h.content)";
        let mut out = self
            .batch(vec![
                Statement::new(sole, vec![id.into()]),
                sql!(format!("DELETE FROM farm_nodes WHERE id = ?1 AND (?2 OR ({sole}) = 0)"), id, force),
            ])
            .await?;
        let n = nth(&mut out, 0)?.read::<CountRow2>()?.pop().map_or(0, |r| r.n);
        Ok(if force { 0 } else { n })
    }

    /// Which of the repositories a node says it holds it should delete: those that are gone,
    /// and those whose copies moved to another node (forgotten once told).
    pub async fn copies_to_drop(&self, node_id: i64, ids: &[i64]) -> StoreResult<Vec<i64>> {
        let list = serde_json::Value::from(ids.to_vec()).to_string();
        let mut out = self
            .batch(vec![
                sql!(
                    "SELECT DISTINCT j.value AS id FROM json_each(?1) j \
                     WHERE NOT EXISTS (SELECT 1 FROM repositories r WHERE r.id = j.value) \
                     OR EXISTS (SELECT 1 FROM moved_copies m WHERE m.node_id = ?2 AND m.repository_id = j.value \
                       AND NOT EXISTS (SELECT 1 FROM node_copies c WHERE c.node_id = ?2 AND c.repository_id = j.value)) \
                     ORDER BY 1",
                    list.as_str(),
                    node_id
                ),
                sql!(
                    "DELETE FROM moved_copies WHERE node_id = ?2 AND repository_id IN (SELECT value FROM json_each(?1))",
                    list.as_str(),
                    node_id
                ),
            ])
            .await?;
        Ok(nth(&mut out, 0)?.read::<IdRow>()?.into_iter().map(|r| r.id).collect())
    }

    /// What a Mesh migration is planned from (one round trip).
    pub async fn mesh_world(&self, now: Timestamp) -> StoreResult<MeshWorld> {
        let mut out = self
            .batch(vec![
                sql!(format!("{} ORDER BY id", super::nodes::NODE_SELECT)),
                sql!("SELECT id, project_id, hierarchy_id FROM repositories ORDER BY id"),
                sql!(
                    format!(
                        "SELECT c.repository_id, c.node_id FROM node_copies c \
                         JOIN repository_hashes h ON h.repository_id = c.repository_id AND h.content = c.content \
                         JOIN farm_nodes n ON n.id = c.node_id \
                         WHERE n.state IN ('AVAILABLE', 'DRAINING') AND n.clone_url IS NOT NULL AND {} \
                         ORDER BY c.repository_id, n.last_seen DESC",
                        live("n", 1)
                    ),
                    now.millis()
                ),
                sql!("SELECT node_id, COUNT(*) AS n FROM node_copies GROUP BY node_id"),
                sql!("SELECT id FROM migration_jobs WHERE type = 'MESH' AND ended_at IS NULL ORDER BY id DESC LIMIT 1"),
            ])
            .await?;
        let active = out.pop().unwrap_or_default().read::<IdRow>()?.pop().map(|r| r.id);
        let held = out.pop().unwrap_or_default().read::<CountRow>()?;
        let holders = out.pop().unwrap_or_default().read::<HolderRow>()?;
        let candidates = out.pop().unwrap_or_default().read::<CandidateRow>()?;
        let nodes = super::nodes::read_nodes(out.pop().unwrap_or_default())?;
        let mut placement = Placement::new();
        for h in holders {
            placement.entry(h.repository_id).or_default().push(h.node_id);
        }
        Ok(MeshWorld {
            nodes,
            candidates: candidates
                .into_iter()
                .map(|c| Candidate { id: c.id, project_id: c.project_id, hierarchy: c.hierarchy_id })
                .collect(),
            placement,
            held: held.into_iter().map(|c| (c.node_id, usize::try_from(c.n).unwrap_or(0))).collect(),
            active,
        })
    }

    /// Starts a Mesh migration of `moves` (one batch): the job, a row per repository, a move job
    /// pinned to each target, and a message per skipped repository. Returns the job as the batch
    /// left it (read in the batch: nothing is read after the write).
    pub async fn start_mesh_migration(
        &self,
        initiator: Option<i64>,
        request: &str,
        max_bandwidth: Option<i64>,
        moves: &[Move],
        now: Timestamp,
    ) -> StoreResult<MigrationJob> {
        let job = "(SELECT MAX(id) FROM migration_jobs WHERE type = 'MESH')";
        let rows: Vec<serde_json::Value> = moves
            .iter()
            .map(|m| match m {
                Move::Queued { repository_id, source, target } => {
                    serde_json::json!({"r": repository_id, "s": "QUEUED", "from": source, "to": target})
                }
                Move::Skipped { repository_id, why } => {
                    serde_json::json!({"r": repository_id, "s": "SKIPPED", "why": why})
                }
            })
            .collect();
        let rows = serde_json::Value::from(rows).to_string();
        let mut out = self
            .batch(vec![
                sql!(
                    "INSERT INTO migration_jobs (type, state, initiator_id, request, max_bandwidth, started_at, updated_at) \
                     VALUES ('MESH', 'RUNNING', ?1, ?2, ?3, ?4, ?4)",
                    initiator,
                    request,
                    max_bandwidth,
                    now.millis()
                ),
                sql!(
                    format!(
                        "INSERT INTO mesh_migration_repos (job_id, repository_id, state, source_node_id, target_node_id) \
                         SELECT {job}, json_extract(value, '$.r'), json_extract(value, '$.s'), \
                           json_extract(value, '$.from'), json_extract(value, '$.to') FROM json_each(?1)"
                    ),
                    rows.as_str()
                ),
                sql!(
                    format!(
                        "INSERT INTO migration_messages (job_id, severity, subject, text, created_at) \
                         SELECT {job}, 'INFO', 'repository ' || json_extract(value, '$.r'), \
                           'Skipped: ' || json_extract(value, '$.why'), ?2 \
                         FROM json_each(?1) WHERE json_extract(value, '$.s') = 'SKIPPED'"
                    ),
                    rows.as_str(),
                    now.millis()
                ),
                sql!(
                    format!(
                        "INSERT OR IGNORE INTO jobs (kind, repository_id, reason, enqueued_at, node_id, payload) \
                         SELECT 'MESH_MOVE', json_extract(value, '$.r'), 'MANUAL', ?2, json_extract(value, '$.to'), \
                           CAST({job} AS TEXT) FROM json_each(?1) WHERE json_extract(value, '$.s') = 'QUEUED'"
                    ),
                    rows.as_str(),
                    now.millis()
                ),
                refresh_statement(job, 1, vec![now.millis().into()]),
                newest_job_statement(MigrationType::Mesh),
            ])
            .await?;
        read_job(out.pop().unwrap_or_default())?
            .ok_or_else(|| super::StoreError::Backend("the migration job was not created".into()))
    }

    /// What a leased Mesh move needs (one round trip); its repository is marked `STAGING`.
    pub async fn move_context(&self, job_id: i64, migration_id: i64) -> StoreResult<MoveContext> {
        row! {
            struct MoveRow {
                state: String,
                max_bandwidth: Option<i64>,
                source_node_id: Option<i64>,
                source_content: Option<String>,
            }
        }
        let repo = "(SELECT repository_id FROM jobs WHERE id = ?1)";
        let mut out = self
            .batch(vec![
                sql!(
                    format!(
                        "UPDATE mesh_migration_repos SET state = 'STAGING' WHERE job_id = ?2 AND repository_id = {repo} \
                         AND state = 'QUEUED'"
                    ),
                    job_id,
                    migration_id
                ),
                sql!(
                    format!(
                        "SELECT m.state, m.max_bandwidth, r.source_node_id, \
                           (SELECT c.content FROM node_copies c WHERE c.node_id = r.source_node_id \
                             AND c.repository_id = r.repository_id) AS source_content \
                         FROM migration_jobs m JOIN mesh_migration_repos r ON r.job_id = m.id \
                         WHERE m.id = ?2 AND r.repository_id = {repo}"
                    ),
                    job_id,
                    migration_id
                ),
                sql!(
                    format!(
                        "{} WHERE id = (SELECT source_node_id FROM mesh_migration_repos WHERE job_id = ?2 \
                         AND repository_id = {repo})",
                        super::nodes::NODE_SELECT
                    ),
                    job_id,
                    migration_id
                ),
                sql!(format!("{REPO_SELECT} WHERE r.id = {repo}"), job_id),
            ])
            .await?;
        let repository = out.pop().unwrap_or_default().read::<RepoRow>()?.pop().map(Repository::from);
        let source = super::nodes::read_nodes(out.pop().unwrap_or_default())?.pop();
        let row = out.pop().unwrap_or_default().read::<MoveRow>()?.pop();
        Ok(MoveContext {
            migration_id,
            cancelling: row.as_ref().is_none_or(|r| r.state != "RUNNING"),
            repository,
            source: source.filter(|s| row.as_ref().and_then(|r| r.source_node_id) == Some(s.id)),
            source_content: row.as_ref().and_then(|r| r.source_content.clone()),
            max_bandwidth: row.and_then(|r| r.max_bandwidth),
        })
    }

    /// Records how a Mesh move leased under `lease_id` ended (one batch, every write guarded by
    /// the lease still being held). A move that worked switches the repository's copy from the
    /// source to the target — the source is told to drop its copy — and closes the job.
    #[allow(clippy::too_many_arguments)]
    pub async fn finish_move(
        &self,
        job_id: i64,
        lease_id: &str,
        migration_id: i64,
        target: i64,
        end: MoveEnd<'_>,
        now: Timestamp,
    ) -> StoreResult<bool> {
        let held = super::mirrors::lease_held(1, 2);
        let this = "id = ?1 AND lease_id = ?2 AND state = 'LEASED'";
        let repo = "(SELECT repository_id FROM jobs WHERE id = ?1)";
        let source =
            format!("(SELECT source_node_id FROM mesh_migration_repos WHERE job_id = ?3 AND repository_id = {repo})");
        // The first `n` of ?1 job, ?2 lease, ?3 migration, ?4 target, ?5 now, then `extra`
        // (SQLite wants exactly the parameters a statement names).
        let p = |n: usize, extra: Vec<super::port::Value>| {
            let mut v: Vec<super::port::Value> =
                vec![job_id.into(), lease_id.into(), migration_id.into(), target.into(), now.millis().into()];
            v.truncate(n);
            v.extend(extra);
            v
        };
        let set_repo = |state: &str| {
            Statement::new(
                format!(
                    "UPDATE mesh_migration_repos SET state = '{state}' WHERE job_id = ?3 AND repository_id = {repo} \
                     AND {held}"
                ),
                p(3, vec![]),
            )
        };
        let message = |severity: &str, text: &str| {
            Statement::new(
                format!(
                    "INSERT INTO migration_messages (job_id, severity, subject, text, created_at) \
                     SELECT ?3, '{severity}', 'repository ' || {repo}, ?6, ?5 WHERE {held}"
                ),
                p(5, vec![text.into()]),
            )
        };
        let mut batch = Vec::new();
        match end {
            MoveEnd::Moved { content, message: text } => {
                batch.extend([
                    Statement::new(
                        format!(
                            "INSERT OR REPLACE INTO node_copies (node_id, repository_id, content, synced_at) \
                             SELECT ?4, {repo}, ?6, ?5 WHERE {held}"
                        ),
                        p(5, vec![content.into()]),
                    ),
                    Statement::new(
                        format!(
                            "INSERT OR IGNORE INTO moved_copies (node_id, repository_id) \
                             SELECT {source}, {repo} WHERE {held} AND {source} IS NOT NULL AND {source} != ?4"
                        ),
                        p(4, vec![]),
                    ),
                    Statement::new(
                        format!(
                            "DELETE FROM node_copies WHERE node_id = {source} AND node_id != ?4 \
                             AND repository_id = {repo} AND {held}"
                        ),
                        p(4, vec![]),
                    ),
                    set_repo("MIGRATED"),
                    message("INFO", text),
                    Statement::new(
                        format!(
                            "UPDATE jobs SET state = 'DONE', finished_at = ?5, lease_deadline = NULL, outcome = 'PUSHED', \
                             message = NULL WHERE {this}"
                        ),
                        p(5, vec![]),
                    ),
                ]);
            }
            MoveEnd::Retry { at, message: text } => batch.extend([
                set_repo("QUEUED"),
                message("WARN", text),
                Statement::new(
                    format!(
                        "UPDATE jobs SET state = 'QUEUED', not_before = ?6, lease_deadline = NULL, message = ?7 \
                         WHERE {this}"
                    ),
                    p(5, vec![at.millis().into(), text.into()]),
                ),
            ]),
            MoveEnd::Canceled => batch.extend([
                set_repo("CANCELED"),
                Statement::new(
                    format!(
                        "UPDATE jobs SET state = 'FAILED', finished_at = ?5, lease_deadline = NULL, outcome = 'ERROR', \
                         message = 'The migration was cancelled.' WHERE {this}"
                    ),
                    p(5, vec![]),
                ),
            ]),
            MoveEnd::Failed { message: text } => batch.extend([
                set_repo("FAILED"),
                message("ERROR", text),
                Statement::new(
                    format!(
                        "UPDATE jobs SET state = 'FAILED', finished_at = ?5, lease_deadline = NULL, outcome = 'ERROR', \
                         message = ?6 WHERE {this}"
                    ),
                    p(5, vec![text.into()]),
                ),
            ]),
        }
        let job_write = batch.len() - 1;
        batch.push(refresh_statement("?1", 2, vec![migration_id.into(), now.millis().into()]));
        let out = self.batch(batch).await?;
        Ok(out.get(job_write).is_some_and(|o| o.changes > 0))
    }

    /// Moves whose target node stopped being live while they waited: failed, so the migration
    /// can end (the source's copy still serves). Returns how many. Run by the cron.
    pub async fn fail_stranded_moves(&self, now: Timestamp) -> StoreResult<u64> {
        let stranded = format!(
            "SELECT j.id FROM jobs j JOIN farm_nodes n ON n.id = j.node_id WHERE j.kind = 'MESH_MOVE' \
             AND j.state = 'QUEUED' AND NOT ({})",
            live("n", 1)
        );
        let why = "Its target node stopped answering before it took the move; the source's copy still serves.";
        let out = self
            .batch(vec![
                sql!(
                    format!(
                        "INSERT INTO migration_messages (job_id, severity, subject, text, created_at) \
                         SELECT CAST(payload AS INTEGER), 'ERROR', 'repository ' || repository_id, ?2, ?1 \
                         FROM jobs WHERE id IN ({stranded})"
                    ),
                    now.millis(),
                    why
                ),
                sql!(
                    format!(
                        "UPDATE mesh_migration_repos SET state = 'FAILED' WHERE state IN ('QUEUED', 'STAGING') \
                         AND EXISTS (SELECT 1 FROM jobs j WHERE j.id IN ({stranded}) \
                           AND CAST(j.payload AS INTEGER) = mesh_migration_repos.job_id \
                           AND j.repository_id = mesh_migration_repos.repository_id)"
                    ),
                    now.millis()
                ),
                sql!(
                    format!(
                        "UPDATE jobs SET state = 'FAILED', finished_at = ?1, outcome = 'ERROR', message = ?2 \
                         WHERE id IN ({stranded})"
                    ),
                    now.millis(),
                    why
                ),
                refresh_statement("migration_jobs.id", 1, vec![now.millis().into()]),
            ])
            .await?;
        Ok(out.get(2).map_or(0, |o| o.changes))
    }

    /// Asks to cancel Mesh migration `id`: `None` if there is none, `Some(false)` if it already
    /// ended. Queued moves are withdrawn at once; one a node is working on finishes whole.
    pub async fn cancel_mesh_migration(&self, id: i64, now: Timestamp) -> StoreResult<Option<bool>> {
        let cancelling = "EXISTS (SELECT 1 FROM migration_jobs WHERE id = ?1 AND state = 'CANCELING')";
        let mut out = self
            .batch(vec![
                sql!("SELECT id FROM migration_jobs WHERE id = ?1 AND type = 'MESH'", id),
                sql!(
                    "UPDATE migration_jobs SET state = 'CANCELING', updated_at = ?2 WHERE id = ?1 AND type = 'MESH' \
                     AND ended_at IS NULL AND state NOT IN ('CANCELING', 'CANCELED')",
                    id,
                    now.millis()
                ),
                sql!(
                    format!(
                        "DELETE FROM jobs WHERE kind = 'MESH_MOVE' AND state = 'QUEUED' AND payload = CAST(?1 AS TEXT) \
                         AND {cancelling}"
                    ),
                    id
                ),
                sql!(
                    format!("UPDATE mesh_migration_repos SET state = 'CANCELED' WHERE job_id = ?1 AND state = 'QUEUED' AND {cancelling}"),
                    id
                ),
                sql!(
                    format!(
                        "INSERT INTO migration_messages (job_id, severity, subject, text, created_at) \
                         SELECT ?1, 'INFO', 'job', 'Cancellation requested.', ?2 WHERE {cancelling}"
                    ),
                    id,
                    now.millis()
                ),
                refresh_statement("?1", 2, vec![id.into(), now.millis().into()]),
            ])
            .await?;
        let changed = nth(&mut out, 1)?.changes > 0;
        let exists = !nth(&mut out, 0)?.read::<IdRow>()?.is_empty();
        Ok(exists.then_some(changed))
    }

    /// Mesh migration summaries, newest first, and whether more follow.
    pub async fn mesh_summaries(&self, offset: u64, limit: u64) -> StoreResult<(Vec<MeshMigrationSummary>, bool)> {
        let rows = self
            .rows::<SummaryRow>(sql!(
                format!("{SUMMARY_SELECT} ORDER BY m.id DESC LIMIT ?1 OFFSET ?2"),
                i64::try_from(limit + 1).unwrap_or(i64::MAX),
                i64::try_from(offset).unwrap_or(i64::MAX)
            ))
            .await?;
        let (rows, more) = super::split_page(rows, limit);
        Ok((rows.into_iter().map(MeshMigrationSummary::from).collect(), more))
    }

    /// One Mesh migration's summary (the active one when `id` is `None`).
    pub async fn mesh_summary(&self, id: Option<i64>) -> StoreResult<Option<MeshMigrationSummary>> {
        let row = match id {
            Some(id) => self.row::<SummaryRow>(sql!(format!("{SUMMARY_SELECT} AND m.id = ?1"), id)).await?,
            None => {
                self.row::<SummaryRow>(sql!(format!(
                    "{SUMMARY_SELECT} AND m.ended_at IS NULL ORDER BY m.id DESC LIMIT 1"
                )))
                .await?
            }
        };
        Ok(row.map(MeshMigrationSummary::from))
    }

    /// Repositories with their place in migration `job` (all repositories, stateless, when
    /// `job` is `None`), filtered by state when given, paged.
    pub async fn mesh_repositories(
        &self,
        job: Option<i64>,
        state: Option<&str>,
        offset: u64,
        limit: u64,
    ) -> StoreResult<(Vec<(Repository, Option<String>)>, bool)> {
        row! {
            struct StateRow {
                repository_id: i64,
                state: String,
            }
        }
        let (limit_p, offset_p) =
            (i64::try_from(limit + 1).unwrap_or(i64::MAX), i64::try_from(offset).unwrap_or(i64::MAX));
        let (repos, states) = match job {
            Some(job) => {
                let mut out = self
                    .batch(vec![
                        sql!(
                            format!(
                                "{REPO_SELECT} JOIN mesh_migration_repos m ON m.repository_id = r.id AND m.job_id = ?1 \
                                 WHERE (?2 IS NULL OR m.state = ?2) ORDER BY r.id LIMIT ?3 OFFSET ?4"
                            ),
                            job,
                            state,
                            limit_p,
                            offset_p
                        ),
                        sql!("SELECT repository_id, state FROM mesh_migration_repos WHERE job_id = ?1", job),
                    ])
                    .await?;
                let states = out.pop().unwrap_or_default().read::<StateRow>()?;
                (out.pop().unwrap_or_default().read::<RepoRow>()?, states)
            }
            None => (
                self.rows::<RepoRow>(sql!(
                    format!("{REPO_SELECT} ORDER BY r.id LIMIT ?1 OFFSET ?2"),
                    limit_p,
                    offset_p
                ))
                .await?,
                Vec::new(),
            ),
        };
        let states: BTreeMap<i64, String> = states.into_iter().map(|s| (s.repository_id, s.state)).collect();
        let (repos, more) = super::split_page(repos, limit);
        let repos = repos
            .into_iter()
            .map(|r| {
                let repo = Repository::from(r);
                let state = states.get(&repo.id).cloned();
                (repo, state)
            })
            .collect();
        Ok((repos, more))
    }

    /// The repositories with these ids (at most a few hundred per call), by id.
    pub async fn repositories_by_ids(&self, ids: &[i64]) -> StoreResult<Vec<Repository>> {
        let list = serde_json::Value::from(ids.to_vec()).to_string();
        let rows = self
            .rows::<RepoRow>(sql!(
                format!("{REPO_SELECT} WHERE r.id IN (SELECT value FROM json_each(?1)) ORDER BY r.id"),
                list.as_str()
            ))
            .await?;
        Ok(rows.into_iter().map(Repository::from).collect())
    }

    /// Queues a support zip of `node_id` (its row and a job pinned to the node, one batch).
    /// Returns (zip id, job id).
    pub async fn queue_support_zip(&self, node_id: i64, now: Timestamp) -> StoreResult<(i64, i64)> {
        row! {
            struct Ids {
                zip: i64,
                job: i64,
            }
        }
        let mut out = self
            .batch(vec![
                sql!("INSERT INTO support_zips (node_id, created_at) VALUES (?1, ?2)", node_id, now.millis()),
                sql!(
                    "INSERT INTO jobs (kind, reason, enqueued_at, node_id, payload, priority) \
                     SELECT 'SUPPORT_ZIP', 'REQUESTED', ?2, ?1, CAST(MAX(id) AS TEXT), 1 FROM support_zips",
                    node_id,
                    now.millis()
                ),
                sql!(
                    "SELECT (SELECT MAX(id) FROM support_zips) AS zip, (SELECT MAX(id) FROM jobs WHERE kind = 'SUPPORT_ZIP') AS job"
                ),
            ])
            .await?;
        let ids = out
            .pop()
            .unwrap_or_default()
            .read::<Ids>()?
            .pop()
            .ok_or_else(|| super::StoreError::Backend("the support zip was not queued".into()))?;
        Ok((ids.zip, ids.job))
    }

    /// The newest ready support zip of `node_id` asked for at or after `since`.
    pub async fn fresh_support_zip(&self, node_id: i64, since: Timestamp) -> StoreResult<Option<SupportZip>> {
        Ok(self
            .row::<ZipRow>(sql!(
                "SELECT id, node_id, state, size, created_at FROM support_zips WHERE node_id = ?1 AND state = 'READY' \
                 AND created_at >= ?2 ORDER BY id DESC LIMIT 1",
                node_id,
                since.millis()
            ))
            .await?
            .map(SupportZip::from))
    }

    /// One support zip.
    pub async fn support_zip(&self, id: i64) -> StoreResult<Option<SupportZip>> {
        Ok(self
            .row::<ZipRow>(sql!("SELECT id, node_id, state, size, created_at FROM support_zips WHERE id = ?1", id))
            .await?
            .map(SupportZip::from))
    }

    /// Marks support zip `id` of `node_id` uploaded; false if it is not that node's.
    pub async fn support_zip_uploaded(
        &self,
        id: i64,
        node_id: i64,
        size: i64,
        sha256: &str,
        now: Timestamp,
    ) -> StoreResult<bool> {
        let out = self
            .one(sql!(
                "UPDATE support_zips SET state = 'READY', size = ?3, sha256 = ?4, ready_at = ?5 WHERE id = ?1 AND node_id = ?2",
                id,
                node_id,
                size,
                sha256,
                now.millis()
            ))
            .await?;
        Ok(out.changes > 0)
    }
}

#[cfg(all(test, not(target_arch = "wasm32")))]
mod tests {
    use super::*;
    use crate::mesh::migration::plan;
    use crate::nodes::NewNode;
    use crate::registry::{NewProject, NewRepository};
    use crate::store::sqlite::SqliteDatabase;
    use crate::test_support::block_on;

    const NOW: Timestamp = Timestamp(10_000_000);

    struct World {
        store: Store<SqliteDatabase>,
        nodes: [i64; 3],
        repos: Vec<i64>,
    }

    /// Three live nodes that serve clones; four repositories whose current copies are on node 1.
    fn world() -> World {
        let store = Store::new(SqliteDatabase::migrated());
        block_on(async {
            let project = store
                .insert_project(&NewProject {
                    key: "MS".into(),
                    name: "Mesh".into(),
                    description: None,
                    public: false,
                    created_at: Timestamp(1),
                })
                .await
                .expect("project");
            let mut repos = Vec::new();
            for i in 0..4 {
                let repo = store
                    .insert_repository(&NewRepository {
                        project_id: project.id,
                        slug: format!("r{i}"),
                        name: format!("r{i}"),
                        description: None,
                        default_branch: "main".into(),
                        public: false,
                        forkable: true,
                        upstream: None,
                        hierarchy_id: format!("h{i}"),
                        origin_id: None,
                        created_at: Timestamp(1),
                    })
                    .await
                    .expect("repository");
                repos.push(repo.id);
            }
            let mut nodes = [0; 3];
            for (i, slot) in nodes.iter_mut().enumerate() {
                let node = store
                    .insert_node(&NewNode {
                        name: format!("n{i}"),
                        lookup: format!("l{i}"),
                        hash: format!("h{i}"),
                        created_at: Timestamp(1),
                    })
                    .await
                    .expect("node");
                store
                    .heartbeat(node.id, NOW, Some(&format!("http://127.0.0.1:{}", 9000 + i)), None, &[])
                    .await
                    .expect("beat");
                *slot = node.id;
            }
            let db = store.database();
            for repo in &repos {
                db.execute(&format!("INSERT INTO repository_hashes VALUES ({repo}, 'c{repo}', 1)"));
                db.execute(&format!("INSERT INTO node_copies VALUES ({}, {repo}, 'c{repo}', 1)", nodes[0]));
            }
            World { store, nodes, repos }
        })
    }

    fn lease(store: &Store<SqliteDatabase>, node: i64, lease_id: &str) -> Option<crate::queue::Job> {
        block_on(store.poll_for_job(node, lease_id, NOW, NOW.plus_millis(60_000), None, NOW, 10)).expect("poll").leased
    }

    #[test]
    fn a_move_is_leased_by_its_target_only_and_switches_the_copy_when_it_reports() {
        let w = world();
        let [one, two, three] = w.nodes;
        let mesh = block_on(w.store.mesh_world(NOW)).expect("world");
        assert_eq!(mesh.placement.get(&w.repos[0]), Some(&vec![one]));
        assert_eq!(mesh.held.get(&one), Some(&4));
        let moves = plan(&w.repos[..2], &mesh.placement, &[two], &mesh.held);
        let id = block_on(w.store.start_mesh_migration(None, "{}", Some(5), &moves, NOW)).expect("start").id;
        let summary = block_on(w.store.mesh_summary(None)).expect("read").expect("active");
        assert_eq!((summary.job_id, summary.state.as_str(), summary.progress), (id, "RUNNING", 0));
        assert_eq!(summary.queue.get("QUEUED"), Some(&2));
        // Pinned to node 2: nodes 1 and 3 lease nothing.
        assert!(lease(&w.store, one, "a").is_none());
        assert!(lease(&w.store, three, "b").is_none());
        let job = lease(&w.store, two, "c").expect("node 2 leases a move");
        assert_eq!(job.kind, crate::queue::JobKind::MeshMove);
        let ctx = block_on(w.store.move_context(job.id, id)).expect("context");
        assert_eq!(ctx.source.as_ref().map(|s| s.id), Some(one));
        let repo = ctx.repository.as_ref().expect("repository").id;
        assert_eq!(ctx.source_content.as_deref(), Some(format!("c{repo}").as_str()));
        assert_eq!((ctx.cancelling, ctx.max_bandwidth), (false, Some(5)));
        let content = format!("c{repo}");
        let end = MoveEnd::Moved { content: &content, message: "moved" };
        assert!(block_on(w.store.finish_move(job.id, "c", id, two, end.clone(), NOW)).expect("finish"));
        // Reported again under the same lease: nothing more happens.
        assert!(!block_on(w.store.finish_move(job.id, "c", id, two, end, NOW)).expect("again"));
        let db = w.store.database();
        assert_eq!(db.count(&format!("SELECT node_id FROM node_copies WHERE repository_id = {repo}")), two);
        // Node 1 is told to drop its copy once, and keeps the others.
        let drop = block_on(w.store.copies_to_drop(one, &w.repos)).expect("drop");
        assert_eq!(drop, vec![repo]);
        assert!(block_on(w.store.copies_to_drop(one, &w.repos)).expect("again").is_empty());
        // The second move fails for good: the migration ends FAILED, its copy untouched.
        assert_eq!(db.count("SELECT COUNT(*) FROM jobs WHERE state = 'QUEUED'"), 1, "only the reported job closed");
        let job = lease(&w.store, two, "d").expect("the second move");
        let end = MoveEnd::Failed { message: "hash differs" };
        assert!(block_on(w.store.finish_move(job.id, "d", id, two, end, NOW)).expect("fail"));
        let summary = block_on(w.store.mesh_summary(Some(id))).expect("read").expect("job");
        assert_eq!((summary.state.as_str(), summary.progress), ("FAILED", 100));
        assert_eq!(summary.queue.get("MIGRATED"), Some(&1));
        assert_eq!(db.count(&format!("SELECT node_id FROM node_copies WHERE repository_id = {}", w.repos[1])), one);
        assert!(block_on(w.store.mesh_summary(None)).expect("read").is_none());
        assert_eq!(db.count(&format!("SELECT COUNT(*) FROM migration_messages WHERE job_id = {id}")), 2);
    }

    #[test]
    fn pulls_stay_on_the_node_holding_the_copy_and_node_states_limit_leases() {
        let w = world();
        let [one, two, _] = w.nodes;
        let db = w.store.database();
        db.execute(&format!(
            "INSERT INTO jobs (kind, repository_id, reason, enqueued_at) VALUES ('PULL_MIRROR', {}, 'MANUAL', 1)",
            w.repos[0]
        ));
        // Node 1 holds the copy and is live: node 2 may not take its pull.
        assert!(lease(&w.store, two, "a").is_none());
        // Draining, node 1 leases only what is pinned to it; offline, nothing at all.
        block_on(w.store.update_node(one, None, Some(MeshNodeState::Draining))).expect("drain");
        assert!(lease(&w.store, one, "b").is_none());
        // Node 1 is no longer an AVAILABLE holder, so node 2 may pull.
        let job = lease(&w.store, two, "c").expect("node 2 pulls");
        assert_eq!(job.repository_id, Some(w.repos[0]));
        block_on(w.store.update_node(two, Some("renamed"), Some(MeshNodeState::Offline))).expect("offline");
        db.execute(&format!(
            "INSERT INTO jobs (kind, repository_id, reason, enqueued_at) VALUES ('PULL_MIRROR', {}, 'MANUAL', 1)",
            w.repos[1]
        ));
        assert!(lease(&w.store, two, "d").is_none());
        let node = block_on(w.store.node_by_id(two)).expect("read").expect("node");
        assert_eq!((node.name.as_str(), node.state), ("renamed", MeshNodeState::Offline));
        // A taken name is a conflict.
        let clash = block_on(w.store.update_node(one, Some("renamed"), None));
        assert!(matches!(clash, Err(crate::store::StoreError::Conflict(_))), "{clash:?}");
        // Node 1 holds the only current copies: kept unless forced, then gone with its copies.
        assert_eq!(block_on(w.store.delete_node(one, false)).expect("refused"), 4);
        assert!(block_on(w.store.node_by_id(one)).expect("read").is_some());
        assert_eq!(block_on(w.store.delete_node(two, false)).expect("holds nothing"), 0);
        assert!(block_on(w.store.node_by_id(two)).expect("read").is_none());
        assert_eq!(block_on(w.store.delete_node(one, true)).expect("forced"), 0);
        assert_eq!(db.count("SELECT COUNT(*) FROM node_copies"), 0);
    }

    #[test]
    fn a_holder_whose_lease_lapsed_unheard_loses_the_affinity_until_it_is_heard_from() {
        let w = world();
        let [one, two, _] = w.nodes;
        let db = w.store.database();
        let pull = |repo: i64| {
            db.execute(&format!(
                "INSERT INTO jobs (kind, repository_id, reason, enqueued_at) VALUES ('PULL_MIRROR', {repo}, 'MANUAL', 1)"
            ))
        };
        // A 10 s lease; contact written unless written in the last 20 s (as the API does).
        let poll = |node: i64, lease_id: &str, at: Timestamp| {
            let (deadline, contact_since) = (at.plus_millis(10_000), at.plus_millis(-20_000));
            block_on(w.store.poll_for_job(node, lease_id, at, deadline, None, contact_since, 10)).expect("poll")
        };
        // Node 1 (seen at NOW, holding every copy) leases a pull for 10 s, then dies.
        pull(w.repos[0]);
        let crashed = poll(one, "a", NOW).leased.expect("node 1 pulls its copy");
        pull(w.repos[1]);
        // Before the deadline node 1 keeps the affinity: node 2 gets nothing.
        let early = poll(two, "b", NOW.plus_millis(5_000));
        assert!(early.leased.is_none() && early.expired.is_empty());
        // Past it (node 1 still within the live window, but unheard since): node 2 takes node 1's
        // other repository at once, and the lapsed lease is handed back to be returned.
        let late = poll(two, "c", NOW.plus_millis(11_000));
        assert_eq!(late.expired.iter().map(|j| j.id).collect::<Vec<_>>(), vec![crashed.id]);
        assert_eq!(late.leased.map(|j| j.repository_id), Some(Some(w.repos[1])));
        assert_eq!(
            db.count(&format!("SELECT lease_lapsed_at FROM farm_nodes WHERE id = {one}")),
            NOW.millis() + 10_000
        );
        // The cron's own look marks nothing new and keeps the mark.
        let expired = block_on(w.store.expired_leases(NOW.plus_millis(12_000), 10)).expect("expired");
        assert_eq!(expired.len(), 1);
        assert_eq!(
            db.count(&format!("SELECT lease_lapsed_at FROM farm_nodes WHERE id = {one}")),
            NOW.millis() + 10_000
        );
        db.execute(&format!("UPDATE jobs SET state = 'DONE' WHERE id = {}", crashed.id));
        // Node 1 restarts and is heard from: its copies are its own again.
        block_on(w.store.heartbeat(one, NOW.plus_millis(30_000), None, None, &[])).expect("beat");
        pull(w.repos[2]);
        assert!(poll(two, "d", NOW.plus_millis(31_000)).leased.is_none());
        let resumed = poll(one, "e", NOW.plus_millis(32_000)).leased.expect("node 1 pulls again");
        assert_eq!(resumed.repository_id, Some(w.repos[2]));
    }

    #[test]
    fn cancel_withdraws_queued_moves_and_a_dead_target_strands_nothing() {
        let w = world();
        let [one, two, three] = w.nodes;
        let mesh = block_on(w.store.mesh_world(NOW)).expect("world");
        let moves = plan(&w.repos, &mesh.placement, &[two, three], &mesh.held);
        let id = block_on(w.store.start_mesh_migration(None, "{}", None, &moves, NOW)).expect("start").id;
        let taken = lease(&w.store, two, "a").expect("node 2 takes one");
        assert_eq!(block_on(w.store.cancel_mesh_migration(id, NOW)).expect("cancel"), Some(true));
        assert_eq!(block_on(w.store.cancel_mesh_migration(id, NOW)).expect("again"), Some(false));
        assert_eq!(block_on(w.store.cancel_mesh_migration(id + 1, NOW)).expect("none"), None);
        let db = w.store.database();
        assert_eq!(db.count("SELECT COUNT(*) FROM jobs WHERE kind = 'MESH_MOVE' AND state = 'QUEUED'"), 0);
        // The move under way ends whole; then the migration is CANCELED.
        let content = format!("c{}", taken.repository_id.expect("repo"));
        let end = MoveEnd::Moved { content: &content, message: "moved" };
        assert!(block_on(w.store.finish_move(taken.id, "a", id, two, end, NOW)).expect("finish"));
        let summary = block_on(w.store.mesh_summary(Some(id))).expect("read").expect("job");
        assert_eq!(summary.state, "CANCELED");
        assert_eq!(summary.queue.get("CANCELED"), Some(&3));

        // Cancelled with nothing under way, a migration ends at once.
        let mesh = block_on(w.store.mesh_world(NOW)).expect("world");
        let moves = plan(&w.repos[1..2], &mesh.placement, &[three], &mesh.held);
        let quick = block_on(w.store.start_mesh_migration(None, "{}", None, &moves, NOW)).expect("start").id;
        assert_eq!(block_on(w.store.cancel_mesh_migration(quick, NOW)).expect("cancel"), Some(true));
        let summary = block_on(w.store.mesh_summary(Some(quick))).expect("read").expect("job");
        assert_eq!((summary.state.as_str(), summary.end_time), ("CANCELED", Some(NOW.millis())));

        // A second migration whose target stops answering: its moves fail, its copies stay.
        let mesh = block_on(w.store.mesh_world(NOW)).expect("world");
        let rest: Vec<i64> = w.repos.iter().copied().filter(|r| mesh.placement.get(r) == Some(&vec![one])).collect();
        let moves = plan(&rest, &mesh.placement, &[three], &mesh.held);
        let id = block_on(w.store.start_mesh_migration(None, "{}", None, &moves, NOW)).expect("start").id;
        let later = NOW.plus_millis(LIVE_WINDOW_MS + 1);
        assert_eq!(block_on(w.store.fail_stranded_moves(later)).expect("strand"), 3);
        let summary = block_on(w.store.mesh_summary(Some(id))).expect("read").expect("job");
        assert_eq!((summary.state.as_str(), summary.queue.get("FAILED")), ("FAILED", Some(&3)));
        assert_eq!(db.count(&format!("SELECT COUNT(*) FROM node_copies WHERE node_id = {one}")), 3);
    }

    #[test]
    fn heartbeats_keep_links_and_name_live_peers() {
        let w = world();
        let [one, two, three] = w.nodes;
        let links = [
            Link { node_id: one, peer_id: 0, reachable: true, round_trip_ms: Some(3), error: None },
            Link { node_id: one, peer_id: two, reachable: false, round_trip_ms: None, error: Some("refused".into()) },
        ];
        let peers = block_on(w.store.heartbeat(one, NOW, Some("http://127.0.0.1:9000"), None, &links)).expect("beat");
        assert_eq!(peers.iter().map(|p| p.id).collect::<Vec<_>>(), vec![two, three]);
        let (_, stored) = block_on(w.store.nodes_and_links()).expect("links");
        assert_eq!(stored, links.to_vec());
        // A node unseen for the live window is no longer a peer.
        let later = NOW.plus_millis(LIVE_WINDOW_MS + 1);
        let peers = block_on(w.store.heartbeat(two, later, None, None, &[])).expect("beat");
        assert!(peers.is_empty());
    }

    #[test]
    fn support_zips_are_pinned_to_their_node_and_only_it_may_upload() {
        let w = world();
        let [one, two, _] = w.nodes;
        let (zip, job) = block_on(w.store.queue_support_zip(two, NOW)).expect("queue");
        assert!(lease(&w.store, one, "a").is_none());
        let leased = lease(&w.store, two, "b").expect("node 2 builds it");
        assert_eq!((leased.id, leased.payload.as_deref()), (job, Some(zip.to_string().as_str())));
        assert!(!block_on(w.store.support_zip_uploaded(zip, one, 10, "x", NOW)).expect("not node 1's"));
        assert!(block_on(w.store.support_zip_uploaded(zip, two, 10, "x", NOW)).expect("node 2's"));
        let fresh = block_on(w.store.fresh_support_zip(two, NOW)).expect("read").expect("ready");
        assert_eq!((fresh.id, fresh.state.as_str(), fresh.size), (zip, "READY", Some(10)));
    }
}
