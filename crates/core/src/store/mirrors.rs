//! Push (remote) and pull mirrors. What a user configures and what the system records about
//! updates are written by different statements that touch only their own columns, so a result
//! reported by a node never undoes a settings change made meanwhile, and the other way round.

use super::port::{Database, Statement, Value, row, sql};
use super::queue::enqueue_statement;
use super::registry::{CountRow, RepositoryKey};
use super::{Grants, Store, StoreResult, corrupt, identity, nth};
use crate::mirrors::{AuthMethod, MirrorSsh, PullMirror, RemoteMirror, UpdateState, UpdateStatus};
use crate::queue::NewJob;
use crate::registry::Repository;
use crate::time::Timestamp;
use crate::urls::StoredUrl;

row! {
    struct MirrorRow {
        id: i64,
        repository_id: i64,
        url: String,
        url_masked: String,
        userinfo_sealed: Option<String>,
        enabled: i64,
        only_protected_branches: i64,
        keep_divergent_refs: i64,
        mirror_branch_regex: Option<String>,
        auth_method: String,
        ssh_seed_sealed: Option<String>,
        ssh_public_key: Option<String>,
        ssh_known_hosts: Option<String>,
        ssh_host_fingerprints: Option<String>,
        update_status: String,
        last_update_at: Option<i64>,
        last_update_started_at: Option<i64>,
        last_successful_update_at: Option<i64>,
        last_error: Option<String>,
        created_at: i64,
        updated_at: i64,
    }
}

impl MirrorRow {
    fn into_mirror(self) -> StoreResult<RemoteMirror> {
        Ok(RemoteMirror {
            id: self.id,
            repository_id: self.repository_id,
            url: StoredUrl { plain: self.url, masked: self.url_masked, sealed_userinfo: self.userinfo_sealed },
            enabled: self.enabled != 0,
            only_protected_branches: self.only_protected_branches != 0,
            keep_divergent_refs: self.keep_divergent_refs != 0,
            mirror_branch_regex: self.mirror_branch_regex,
            auth_method: AuthMethod::parse(&self.auth_method).ok_or_else(|| corrupt("mirror"))?,
            ssh: match (self.ssh_seed_sealed, self.ssh_public_key) {
                (Some(sealed_seed), Some(public_key)) => Some(MirrorSsh {
                    sealed_seed,
                    public_key,
                    known_hosts: self.ssh_known_hosts,
                    host_fingerprints: self
                        .ssh_host_fingerprints
                        .iter()
                        .flat_map(|f| f.lines())
                        .map(str::to_owned)
                        .collect(),
                }),
                _ => None,
            },
            update: UpdateState {
                status: UpdateStatus::parse(&self.update_status).ok_or_else(|| corrupt("mirror"))?,
                last_update_at: self.last_update_at.map(Timestamp),
                last_update_started_at: self.last_update_started_at.map(Timestamp),
                last_successful_update_at: self.last_successful_update_at.map(Timestamp),
                last_error: self.last_error,
            },
            created_at: Timestamp(self.created_at),
            updated_at: Timestamp(self.updated_at),
        })
    }
}

pub(super) fn read_mirrors(outcome: super::port::Outcome) -> StoreResult<Vec<RemoteMirror>> {
    outcome.read::<MirrorRow>()?.into_iter().map(MirrorRow::into_mirror).collect()
}

row! {
    struct PullRow {
        repository_id: i64,
        enabled: i64,
        only_mirror_protected_branches: i64,
        mirror_overwrites_diverged_branches: i64,
        mirror_branch_regex: Option<String>,
        mirror_trigger_builds: i64,
        update_status: String,
        last_update_at: Option<i64>,
        last_update_started_at: Option<i64>,
        last_successful_update_at: Option<i64>,
        last_error: Option<String>,
        updated_at: i64,
    }
}

impl PullRow {
    fn into_pull(self) -> StoreResult<PullMirror> {
        Ok(PullMirror {
            repository_id: self.repository_id,
            enabled: self.enabled != 0,
            only_mirror_protected_branches: self.only_mirror_protected_branches != 0,
            mirror_overwrites_diverged_branches: self.mirror_overwrites_diverged_branches != 0,
            mirror_branch_regex: self.mirror_branch_regex,
            mirror_trigger_builds: self.mirror_trigger_builds != 0,
            update: UpdateState {
                status: UpdateStatus::parse(&self.update_status).ok_or_else(|| corrupt("pull mirror"))?,
                last_update_at: self.last_update_at.map(Timestamp),
                last_update_started_at: self.last_update_started_at.map(Timestamp),
                last_successful_update_at: self.last_successful_update_at.map(Timestamp),
                last_error: self.last_error,
            },
            updated_at: Timestamp(self.updated_at),
        })
    }
}

pub(super) fn read_pull(outcome: super::port::Outcome) -> StoreResult<Option<PullMirror>> {
    outcome.first::<PullRow>()?.map(PullRow::into_pull).transpose()
}

/// A job's lease still held: `?{job}` the job id, `?{lease}` the lease id.
pub(super) fn lease_held(job: usize, lease: usize) -> String {
    format!("EXISTS (SELECT 1 FROM jobs WHERE id = ?{job} AND lease_id = ?{lease} AND state = 'LEASED')")
}

/// Records a push mirror's update state (only those columns), if `guard` (SQL) holds.
/// The parameters `?1` … `?7` both update-state writes bind: the row's key, the state, when.
fn update_params(key: i64, u: &UpdateState, updated_at: Timestamp) -> Vec<Value> {
    vec![
        key.into(),
        u.status.as_str().into(),
        u.last_update_at.map(Timestamp::millis).into(),
        u.last_update_started_at.map(Timestamp::millis).into(),
        u.last_successful_update_at.map(Timestamp::millis).into(),
        u.last_error.as_deref().into(),
        updated_at.millis().into(),
    ]
}

pub(super) fn save_push_update(m: &RemoteMirror, guard: Option<(i64, &str)>) -> Statement {
    let (job, lease) = guard.unzip();
    let mut params = update_params(m.id, &m.update, m.updated_at);
    params.extend([job.into(), lease.into()]);
    Statement::new(
        format!(
            "UPDATE remote_mirrors SET update_status = ?2, last_update_at = ?3, last_update_started_at = ?4, \
             last_successful_update_at = ?5, last_error = ?6, updated_at = ?7 \
             WHERE id = ?1 AND (?8 IS NULL OR {})",
            lease_held(8, 9)
        ),
        params,
    )
}

/// Records a pull mirror's update state (only those columns; a repository never configured
/// gets a row with the implicit settings), if the lease `guard` is held.
pub(super) fn save_pull_update(p: &PullMirror, guard: Option<(i64, &str)>) -> Statement {
    let implicit = PullMirror::implicit(p.repository_id, p.updated_at);
    let (job, lease) = guard.unzip();
    let mut params = update_params(p.repository_id, &p.update, p.updated_at);
    params.extend([
        implicit.enabled.into(),
        implicit.only_mirror_protected_branches.into(),
        implicit.mirror_overwrites_diverged_branches.into(),
        job.into(),
        lease.into(),
    ]);
    Statement::new(
        format!(
            "INSERT INTO pull_mirrors (repository_id, enabled, only_mirror_protected_branches, \
             mirror_overwrites_diverged_branches, mirror_branch_regex, mirror_trigger_builds, update_status, \
             last_update_at, last_update_started_at, last_successful_update_at, last_error, updated_at) \
             SELECT ?1, ?8, ?9, ?10, NULL, 0, ?2, ?3, ?4, ?5, ?6, ?7 WHERE (?11 IS NULL OR {}) \
             ON CONFLICT (repository_id) DO UPDATE SET update_status = excluded.update_status, \
             last_update_at = excluded.last_update_at, last_update_started_at = excluded.last_update_started_at, \
             last_successful_update_at = excluded.last_successful_update_at, last_error = excluded.last_error, \
             updated_at = excluded.updated_at",
            lease_held(11, 12)
        ),
        params,
    )
}

/// Everything a repository's status shows, read in one round trip.
#[derive(Debug, Clone)]
pub struct StatusSnapshot {
    /// The repository, if it exists.
    pub repository: Option<Repository>,
    /// The caller's grants.
    pub grants: Grants,
    /// Its push mirrors (at most [`STATUS_MIRRORS`]).
    pub remote_mirrors: Vec<RemoteMirror>,
    /// Its pull mirror, if configured or ever pulled.
    pub pull: Option<PullMirror>,
    /// Its queued and leased jobs.
    pub live_jobs: Vec<crate::queue::Job>,
    /// Farm nodes seen since the cutoff.
    pub nodes: Vec<crate::nodes::FarmNode>,
    /// Its fork sync settings, if it is a fork.
    pub fork: Option<super::ForkSync>,
    /// The refs its last fork sync left out of step.
    pub fork_refs: Vec<(String, crate::forks::RefSyncState)>,
    /// For a farm repository: its standing (see [`crate::status::FarmStatus`]).
    pub farm: Option<crate::status::FarmStatus>,
}

/// More push mirrors than any repository sensibly has; the status lists at most this many.
pub const STATUS_MIRRORS: i64 = 1000;

row! {
    struct FarmRow {
        base_url: String,
        initial_sync: Option<i64>,
        failed_sync_count: u32,
        last_sync: Option<i64>,
        content: Option<String>,
        upstream_fingerprint: Option<String>,
    }
}

impl<D: Database> Store<D> {
    /// One page of a repository's remote mirrors by id, their total count, the repository
    /// and the caller's grants, in one round trip.
    pub async fn remote_mirror_page(
        &self,
        key: RepositoryKey<'_>,
        user: Option<i64>,
        offset: u64,
        limit: u64,
    ) -> StoreResult<(Option<Repository>, Grants, Vec<RemoteMirror>, u64)> {
        let id = key.id_expression();
        let mut page = key.params().to_vec();
        page.extend([(identity::page_limit(limit) - 1).into(), identity::page_offset(offset).into()]);
        let data = vec![
            Statement::new(
                format!("SELECT * FROM remote_mirrors WHERE repository_id = {id} ORDER BY id LIMIT ?4 OFFSET ?5"),
                page,
            ),
            Statement::new(
                format!("SELECT COUNT(*) AS n FROM remote_mirrors WHERE repository_id = {id}"),
                key.params().to_vec(),
            ),
        ];
        let (repo, grants, mut out) = self.repository_with(key, user, data).await?;
        let mirrors = read_mirrors(nth(&mut out, 0)?)?;
        let total = nth(&mut out, 1)?.first::<CountRow>()?.map_or(0, |c| c.n);
        Ok((repo, grants, mirrors, total))
    }

    /// The repository so named, the caller's grants and its remote mirror `mirror_id`, in one
    /// round trip.
    pub async fn remote_mirror_access(
        &self,
        key: RepositoryKey<'_>,
        user: Option<i64>,
        mirror_id: i64,
    ) -> StoreResult<(Option<Repository>, Grants, Option<RemoteMirror>)> {
        let mut params = key.params().to_vec();
        params.push(mirror_id.into());
        let mirror = Statement::new(
            format!("SELECT * FROM remote_mirrors WHERE repository_id = {} AND id = ?4", key.id_expression()),
            params,
        );
        let (repo, grants, mut out) = self.repository_with(key, user, vec![mirror]).await?;
        Ok((repo, grants, read_mirrors(nth(&mut out, 0)?)?.pop()))
    }

    /// The repository so named, the caller's grants and its pull mirror, in one round trip.
    pub async fn repository_and_pull(
        &self,
        key: RepositoryKey<'_>,
        user: Option<i64>,
    ) -> StoreResult<(Option<Repository>, Grants, Option<PullMirror>)> {
        let pull = Statement::new(
            format!("SELECT * FROM pull_mirrors WHERE repository_id = {}", key.id_expression()),
            key.params().to_vec(),
        );
        let (repo, grants, mut out) = self.repository_with(key, user, vec![pull]).await?;
        Ok((repo, grants, read_pull(nth(&mut out, 0)?)?))
    }

    /// A repository's status inputs and the caller's grants, in one round trip: its mirrors,
    /// pull mirror, live jobs (never the history) and the nodes seen since `nodes_since`.
    pub async fn status_snapshot(
        &self,
        repository_id: i64,
        user: Option<i64>,
        nodes_since: Timestamp,
    ) -> StoreResult<StatusSnapshot> {
        let data = vec![
            sql!(
                "SELECT * FROM remote_mirrors WHERE repository_id = ?1 ORDER BY id LIMIT ?2",
                repository_id,
                STATUS_MIRRORS
            ),
            sql!("SELECT * FROM pull_mirrors WHERE repository_id = ?1", repository_id),
            super::queue::live_jobs(repository_id),
            sql!(format!("{} WHERE last_seen >= ?1 ORDER BY name", super::nodes::NODE_SELECT), nodes_since.millis()),
            sql!(format!("{} WHERE f.repository_id = ?1", super::forks::FORK_SELECT), repository_id),
            sql!(
                "SELECT ref_name, state FROM fork_ref_states WHERE repository_id = ?1 ORDER BY ref_name",
                repository_id
            ),
            sql!(
                "SELECT u.base_url, f.initial_sync, f.failed_sync_count, f.last_sync, h.content, t.upstream_fingerprint \
                 FROM farm_repositories f JOIN upstream_servers u ON u.id = f.upstream_id \
                 LEFT JOIN repository_hashes h ON h.repository_id = f.repository_id \
                 LEFT JOIN repository_triggers t ON t.repository_id = f.repository_id WHERE f.repository_id = ?1",
                repository_id
            ),
        ];
        let (repository, grants, mut out) = self.repository_with(RepositoryKey::Id(repository_id), user, data).await?;
        Ok(StatusSnapshot {
            repository,
            grants,
            remote_mirrors: read_mirrors(nth(&mut out, 0)?)?,
            pull: read_pull(nth(&mut out, 1)?)?,
            live_jobs: super::queue::read_jobs(nth(&mut out, 2)?)?,
            nodes: super::nodes::read_nodes(nth(&mut out, 3)?)?,
            fork: super::forks::read_fork(nth(&mut out, 4)?)?,
            fork_refs: super::forks::read_ref_states(nth(&mut out, 5)?)?,
            farm: nth(&mut out, 6)?.first::<FarmRow>()?.map(|f| crate::status::FarmStatus {
                upstream: f.base_url,
                status: crate::farm::MirroredStatus::of(f.initial_sync.map(Timestamp), f.failed_sync_count)
                    .as_str()
                    .into(),
                content_hash: f.content,
                // A pull's fingerprint is SHA-256 of the upstream's branches and tags, listed as
                // the content hash lists the copy's: the upstream's content hash at that sync.
                upstream_content_hash: f.upstream_fingerprint,
                last_sync: f.last_sync,
            }),
        })
    }

    /// Records a mirror's update state (only that), while the lease `guard` is held if given.
    pub async fn record_update(&self, mirror: super::SavedMirror<'_>, guard: Option<(i64, &str)>) -> StoreResult<()> {
        let statement = match mirror {
            super::SavedMirror::Push(m) => save_push_update(m, guard),
            super::SavedMirror::Pull(p) => save_pull_update(p, guard),
        };
        self.one(statement).await.map(drop)
    }

    /// A repository's remote mirror.
    pub async fn remote_mirror(&self, repository_id: i64, id: i64) -> StoreResult<Option<RemoteMirror>> {
        self.row::<MirrorRow>(sql!(
            "SELECT * FROM remote_mirrors WHERE repository_id = ?1 AND id = ?2",
            repository_id,
            id
        ))
        .await?
        .map(MirrorRow::into_mirror)
        .transpose()
    }

    /// A repository's enabled push mirrors.
    pub async fn enabled_remote_mirrors(&self, repository_id: i64) -> StoreResult<Vec<RemoteMirror>> {
        read_mirrors(
            self.one(sql!(
                "SELECT * FROM remote_mirrors WHERE repository_id = ?1 AND enabled = 1 ORDER BY id",
                repository_id
            ))
            .await?,
        )
    }

    /// Adds a mirror (its `id` is ignored and assigned) and, in the same batch, queues `job`
    /// for it (the job's mirror id is filled in).
    pub async fn insert_remote_mirror(&self, m: &RemoteMirror, job: Option<&NewJob>) -> StoreResult<RemoteMirror> {
        let u = &m.update;
        let mut batch = vec![sql!(
            "INSERT INTO remote_mirrors (repository_id, url, url_masked, userinfo_sealed, enabled, \
             only_protected_branches, keep_divergent_refs, mirror_branch_regex, update_status, last_update_at, \
             last_update_started_at, last_successful_update_at, last_error, created_at, updated_at, auth_method, \
             ssh_seed_sealed, ssh_public_key, ssh_known_hosts, ssh_host_fingerprints) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19, ?20) \
             RETURNING *",
            m.repository_id,
            &m.url.plain,
            &m.url.masked,
            m.url.sealed_userinfo.as_deref(),
            m.enabled,
            m.only_protected_branches,
            m.keep_divergent_refs,
            m.mirror_branch_regex.as_deref(),
            u.status.as_str(),
            u.last_update_at.map(Timestamp::millis),
            u.last_update_started_at.map(Timestamp::millis),
            u.last_successful_update_at.map(Timestamp::millis),
            u.last_error.as_deref(),
            m.created_at.millis(),
            m.updated_at.millis(),
            m.auth_method.as_str(),
            m.ssh.as_ref().map(|s| s.sealed_seed.as_str()),
            m.ssh.as_ref().map(|s| s.public_key.as_str()),
            m.ssh.as_ref().and_then(|s| s.known_hosts.as_deref()),
            m.ssh.as_ref().map(|s| s.host_fingerprints.join("\n")).filter(|f| !f.is_empty())
        )];
        if let Some(job) = job {
            // Same transaction: the mirror just inserted is the last row inserted.
            batch.push(enqueue_statement(job, "last_insert_rowid()"));
        }
        let mut out = self.batch(batch).await?;
        read_mirrors(nth(&mut out, 0)?)?.pop().ok_or_else(|| corrupt("mirror"))
    }

    /// Saves what a user changed about a mirror — its settings, and, when a new URL `reset` it,
    /// its update state — and, in the same batch, queues `job`. Without a reset the update state
    /// is left to the nodes: a result recorded meanwhile is kept.
    /// An SSH key pair is only ever added (a mirror keeps its key), and the known hosts are
    /// written only when `hosts_changed` (the request sent them): a host key a node learned
    /// meanwhile is not undone.
    pub async fn update_remote_mirror(
        &self,
        m: &RemoteMirror,
        reset: bool,
        hosts_changed: bool,
        job: Option<&NewJob>,
    ) -> StoreResult<()> {
        let mut batch = vec![sql!(
            "UPDATE remote_mirrors SET url = ?2, url_masked = ?3, userinfo_sealed = ?4, enabled = ?5, \
                 only_protected_branches = ?6, keep_divergent_refs = ?7, mirror_branch_regex = ?8, auth_method = ?9, \
                 ssh_seed_sealed = COALESCE(ssh_seed_sealed, ?10), ssh_public_key = COALESCE(ssh_public_key, ?11), \
                 ssh_known_hosts = CASE WHEN ?14 THEN ?12 ELSE ssh_known_hosts END, \
                 ssh_host_fingerprints = CASE WHEN ?14 THEN ?13 ELSE ssh_host_fingerprints END \
                 WHERE id = ?1",
            m.id,
            &m.url.plain,
            &m.url.masked,
            m.url.sealed_userinfo.as_deref(),
            m.enabled,
            m.only_protected_branches,
            m.keep_divergent_refs,
            m.mirror_branch_regex.as_deref(),
            m.auth_method.as_str(),
            m.ssh.as_ref().map(|s| s.sealed_seed.as_str()),
            m.ssh.as_ref().map(|s| s.public_key.as_str()),
            m.ssh.as_ref().and_then(|s| s.known_hosts.as_deref()),
            m.ssh.as_ref().map(|s| s.host_fingerprints.join("\n")).filter(|f| !f.is_empty()),
            hosts_changed
        )];
        if reset {
            batch.push(save_push_update(m, None));
        }
        if let Some(job) = job {
            batch.push(enqueue_statement(job, "?3"));
        }
        self.batch(batch).await.map(drop)
    }

    /// Records the host key a node learned on a mirror's first SSH push (a `known_hosts` line and
    /// its fingerprint), unless the mirror has known hosts by now.
    pub async fn learn_host_key(&self, mirror_id: i64, line: &str, fingerprint: &str) -> StoreResult<bool> {
        let learned = self
            .one(sql!(
                "UPDATE remote_mirrors SET ssh_known_hosts = ?2, ssh_host_fingerprints = ?3 \
                 WHERE id = ?1 AND ssh_known_hosts IS NULL AND ssh_seed_sealed IS NOT NULL",
                mirror_id,
                line,
                fingerprint
            ))
            .await?;
        Ok(learned.changes > 0)
    }

    /// Removes a mirror and its jobs (the schema cascades).
    pub async fn delete_remote_mirror(&self, repository_id: i64, id: i64) -> StoreResult<()> {
        self.one(sql!("DELETE FROM remote_mirrors WHERE repository_id = ?1 AND id = ?2", repository_id, id))
            .await
            .map(drop)
    }

    /// A repository's pull-mirror settings and state, if it was ever configured or pulled.
    pub async fn pull_mirror(&self, repository_id: i64) -> StoreResult<Option<PullMirror>> {
        read_pull(self.one(sql!("SELECT * FROM pull_mirrors WHERE repository_id = ?1", repository_id)).await?)
    }

    /// Saves pull-mirror settings and, in the same batch, a new upstream URL for the repository
    /// (which resets the update state) and a job to queue. Without a new URL the update state is
    /// left to the nodes.
    pub async fn save_pull_mirror(
        &self,
        p: &PullMirror,
        upstream: Option<&StoredUrl>,
        job: Option<&NewJob>,
    ) -> StoreResult<()> {
        let mut batch = vec![sql!(
            "INSERT INTO pull_mirrors (repository_id, enabled, only_mirror_protected_branches, \
                 mirror_overwrites_diverged_branches, mirror_branch_regex, mirror_trigger_builds, updated_at) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7) ON CONFLICT (repository_id) DO UPDATE SET \
                 enabled = excluded.enabled, only_mirror_protected_branches = excluded.only_mirror_protected_branches, \
                 mirror_overwrites_diverged_branches = excluded.mirror_overwrites_diverged_branches, \
                 mirror_branch_regex = excluded.mirror_branch_regex, \
                 mirror_trigger_builds = excluded.mirror_trigger_builds, updated_at = excluded.updated_at",
            p.repository_id,
            p.enabled,
            p.only_mirror_protected_branches,
            p.mirror_overwrites_diverged_branches,
            p.mirror_branch_regex.as_deref(),
            p.mirror_trigger_builds,
            p.updated_at.millis()
        )];
        if let Some(url) = upstream {
            batch.push(save_pull_update(p, None));
            batch.push(sql!(
                "UPDATE repositories SET upstream_url = ?2, upstream_url_masked = ?3, upstream_userinfo_sealed = ?4 \
                 WHERE id = ?1",
                p.repository_id,
                &url.plain,
                &url.masked,
                url.sealed_userinfo.as_deref()
            ));
        }
        if let Some(job) = job {
            batch.push(enqueue_statement(job, "?3"));
        }
        self.batch(batch).await.map(drop)
    }
}
