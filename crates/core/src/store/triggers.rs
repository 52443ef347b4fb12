//! What starts a repository's syncs besides the API: its webhook secret, the upstream's last
//! fingerprint and the last poll. Each is written by its own statement touching only its
//! column, so a webhook secret set while polls and results run is never lost.

use super::port::{Database, Statement, row, sql};
use super::{RepositoryTriggers, Store, StoreResult, nth};
use crate::queue::JobReason;
use crate::time::Timestamp;

row! {
    struct TriggersRow {
        repository_id: i64,
        webhook_secret_sealed: Option<String>,
        upstream_fingerprint: Option<String>,
        last_polled_at: Option<i64>,
    }
}

/// Upserts one column of a repository's triggers row (`?1` the repository, `?2` the value).
fn set_column(column: &str, repository_id: i64, value: super::port::Value) -> Statement {
    Statement::new(
        format!(
            "INSERT INTO repository_triggers (repository_id, {column}) VALUES (?1, ?2) \
             ON CONFLICT (repository_id) DO UPDATE SET {column} = excluded.{column}"
        ),
        vec![repository_id.into(), value],
    )
}

/// Records the upstream's fingerprint after a pull and, if it changed, queues a push to every
/// enabled push mirror and a sync of every fork with sync enabled, while the lease `(job, lease id)` is held: statements for the batch that
/// ends that lease (they go before the job's own statements, which release it).
pub(super) fn fingerprint_statements(
    repository_id: i64,
    fingerprint: &str,
    now: Timestamp,
    (job, lease): (i64, &str),
) -> Vec<Statement> {
    let changed = "NOT EXISTS (SELECT 1 FROM repository_triggers WHERE repository_id = ?1 \
         AND upstream_fingerprint IS ?2)";
    let held = super::mirrors::lease_held(3, 4);
    vec![
        // Before the fingerprint is written, in the same transaction: pushes follow only a change.
        sql!(
            format!(
                "INSERT OR IGNORE INTO jobs (kind, repository_id, remote_mirror_id, reason, enqueued_at) \
                 SELECT 'PUSH_MIRROR', m.repository_id, m.id, ?5, ?6 FROM remote_mirrors m \
                 WHERE m.repository_id = ?1 AND m.enabled = 1 AND {changed} AND {held}"
            ),
            repository_id,
            fingerprint,
            job,
            lease,
            JobReason::Upstream.as_str(),
            now.millis()
        ),
        // Every fork with sync enabled follows its origin.
        sql!(
            format!(
                "INSERT OR IGNORE INTO jobs (kind, repository_id, reason, enqueued_at) \
                 SELECT 'FORK_SYNC', r.id, ?5, ?6 FROM repositories r JOIN fork_syncs f ON f.repository_id = r.id \
                 WHERE r.origin_id = ?1 AND f.enabled = 1 AND {changed} AND {held}"
            ),
            repository_id,
            fingerprint,
            job,
            lease,
            JobReason::Upstream.as_str(),
            now.millis()
        ),
        sql!(
            format!(
                "INSERT INTO repository_triggers (repository_id, upstream_fingerprint) SELECT ?1, ?2 WHERE {held} \
                 ON CONFLICT (repository_id) DO UPDATE SET upstream_fingerprint = excluded.upstream_fingerprint"
            ),
            repository_id,
            fingerprint,
            job,
            lease
        ),
    ]
}

fn triggers_statement(repository_id: i64) -> Statement {
    sql!("SELECT * FROM repository_triggers WHERE repository_id = ?1", repository_id)
}

/// A repository's triggers from its row (none: nothing set yet).
fn read_triggers(repository_id: i64, row: Option<TriggersRow>) -> RepositoryTriggers {
    row.map_or(RepositoryTriggers { repository_id, ..RepositoryTriggers::default() }, |r| RepositoryTriggers {
        repository_id: r.repository_id,
        webhook_secret_sealed: r.webhook_secret_sealed,
        upstream_fingerprint: r.upstream_fingerprint,
        last_polled_at: r.last_polled_at.map(Timestamp),
    })
}

impl<D: Database> Store<D> {
    /// A repository's triggers (webhook secret, last upstream fingerprint, last poll).
    pub async fn triggers(&self, repository_id: i64) -> StoreResult<RepositoryTriggers> {
        let row = self.row::<TriggersRow>(triggers_statement(repository_id)).await?;
        Ok(read_triggers(repository_id, row))
    }

    /// A repository (`None`: there is none) and its triggers, in one round trip: what a webhook
    /// delivery checks before it queues anything.
    pub async fn repository_and_triggers(
        &self,
        repository_id: i64,
    ) -> StoreResult<(Option<crate::registry::Repository>, RepositoryTriggers)> {
        let select = super::registry::RepositoryKey::Id(repository_id).select();
        let mut out = self.batch(vec![select, triggers_statement(repository_id)]).await?;
        let repository = nth(&mut out, 0)?.first::<super::registry::RepoRow>()?.map(Into::into);
        Ok((repository, read_triggers(repository_id, nth(&mut out, 1)?.first::<TriggersRow>()?)))
    }

    /// Sets (or, `None`, removes) a repository's sealed webhook secret.
    pub async fn set_webhook_secret(&self, repository_id: i64, sealed: Option<&str>) -> StoreResult<()> {
        self.one(set_column("webhook_secret_sealed", repository_id, sealed.into())).await.map(drop)
    }

    /// Queues a poll of every repository with an upstream and an enabled (or implicit) pull
    /// mirror not polled since `before`, at most `limit`, and marks them polled, in one batch
    /// of a fixed number of statements. Returns how many were due.
    pub async fn queue_due_polls(&self, before: Timestamp, now: Timestamp, limit: i64) -> StoreResult<u64> {
        // Farm repositories are left to their upstream's poll, one job for them all (see
        // `queue_due_upstream_polls`).
        let due = "SELECT r.id FROM repositories r \
             LEFT JOIN pull_mirrors p ON p.repository_id = r.id \
             LEFT JOIN repository_triggers t ON t.repository_id = r.id \
             WHERE r.upstream_url IS NOT NULL AND r.archived = 0 AND IFNULL(p.enabled, 1) = 1 \
             AND (t.last_polled_at IS NULL OR t.last_polled_at < ?1) \
             AND NOT EXISTS (SELECT 1 FROM farm_repositories f WHERE f.repository_id = r.id) ORDER BY r.id LIMIT ?2";
        // The jobs go in first: they do not change which repositories are due, so the second
        // statement marks exactly those polled.
        let mut out = self
            .batch(vec![
                sql!(
                    format!(
                        "INSERT OR IGNORE INTO jobs (kind, repository_id, remote_mirror_id, reason, enqueued_at) \
                         SELECT 'PULL_MIRROR', id, NULL, ?3, ?4 FROM ({due})"
                    ),
                    before.millis(),
                    limit,
                    JobReason::Poll.as_str(),
                    now.millis()
                ),
                sql!(
                    format!(
                        "INSERT INTO repository_triggers (repository_id, last_polled_at) SELECT id, ?3 FROM ({due}) \
                         WHERE true ON CONFLICT (repository_id) DO UPDATE SET last_polled_at = excluded.last_polled_at"
                    ),
                    before.millis(),
                    limit,
                    now.millis()
                ),
            ])
            .await?;
        Ok(nth(&mut out, 1)?.changes)
    }
}
