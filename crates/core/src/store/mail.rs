//! Notification state and mail jobs: the watches of [`crate::mail::notify`], the `SEND_MAIL`
//! jobs that carry mails, and who may be told.

use super::port::{Database, Statement, Value, row, sql};
use super::queue::{JOB_COLUMNS, read_jobs};
use super::{Store, StoreResult, nth};
use crate::mail::notify::{Candidate, Watch, opt_out};
use crate::queue::{Job, JobReason};
use crate::time::Timestamp;

/// The target a mirror, fork or the license is watched under (`notification_state.target`).
pub mod target {
    /// A push mirror.
    pub fn push(mirror_id: i64) -> String {
        format!("push:{mirror_id}")
    }
    /// A repository's pull mirror (or farm copy).
    pub fn pull(repository_id: i64) -> String {
        format!("pull:{repository_id}")
    }
    /// A fork's sync.
    pub fn fork(repository_id: i64) -> String {
        format!("fork:{repository_id}")
    }
    /// The license's expiry.
    pub const LICENSE_EXPIRY: &str = "license:expiry";
    /// The license's user limit.
    pub const LICENSE_USERS: &str = "license:users";
}

/// The same targets in SQL, for the job whose id is `job` (SQL; see [`target`]).
pub(super) fn job_target_sql(job: &str) -> String {
    format!(
        "(SELECT CASE kind WHEN 'PUSH_MIRROR' THEN 'push:' || remote_mirror_id \
         WHEN 'PULL_MIRROR' THEN 'pull:' || repository_id WHEN 'FORK_SYNC' THEN 'fork:' || repository_id END \
         FROM jobs WHERE id = {job})"
    )
}

row! {
    pub(super) struct WatchRow {
        failures: u32,
        alerted: i64,
        sent: String,
    }
}

impl From<WatchRow> for Watch {
    fn from(r: WatchRow) -> Self {
        Self { failures: r.failures, alerted: r.alerted != 0, sent: serde_json::from_str(&r.sent).unwrap_or_default() }
    }
}

/// A watch as read (none yet: nothing known).
pub(super) fn read_watch(outcome: super::port::Outcome) -> StoreResult<Watch> {
    Ok(outcome.first::<WatchRow>()?.map(Watch::from).unwrap_or_default())
}

/// A notification's part of a batch: the watch as it now is, and the mail it decided, if any.
#[derive(Debug, Clone, Copy)]
pub struct NoticeWrite<'a> {
    /// The target watched.
    pub target: &'a str,
    /// Its watch now.
    pub watch: &'a Watch,
    /// The `SEND_MAIL` job's payload ([`crate::mail::notify::MailJob`] as JSON), if a mail is due.
    pub mail: Option<&'a str>,
}

/// Statements that save a watch and queue its mail, only while `guard` (SQL over the batch's
/// parameters `?1`, `?2`) holds: a report's lease.
pub(super) fn notice_statements(
    w: NoticeWrite<'_>,
    now: Timestamp,
    guard: &str,
    guard_params: &[Value],
) -> Vec<Statement> {
    let sent = serde_json::to_string(&w.watch.sent).unwrap_or_else(|_| "{}".into());
    let mut params = guard_params.to_vec();
    let base = params.len();
    params.extend([w.target.into(), i64::from(w.watch.failures).into(), w.watch.alerted.into(), sent.into()]);
    let mut out = vec![Statement::new(
        format!(
            "INSERT INTO notification_state (target, failures, alerted, sent) SELECT ?{}, ?{}, ?{}, ?{} WHERE {guard} \
             ON CONFLICT (target) DO UPDATE SET failures = excluded.failures, alerted = excluded.alerted, sent = excluded.sent",
            base + 1,
            base + 2,
            base + 3,
            base + 4
        ),
        params,
    )];
    if let Some(payload) = w.mail {
        let mut params = guard_params.to_vec();
        params.extend([JobReason::Notification.as_str().into(), now.millis().into(), payload.into()]);
        out.push(Statement::new(
            format!(
                "INSERT OR IGNORE INTO jobs (kind, reason, enqueued_at, payload) SELECT 'SEND_MAIL', ?{}, ?{}, ?{} WHERE {guard}",
                base + 1,
                base + 2,
                base + 3
            ),
            params,
        ));
    }
    out
}

row! {
    struct CandidateRow {
        email: Option<String>,
        repository_admin: i64,
        instance_admin: i64,
        settings: Option<String>,
    }
}

impl<D: Database> Store<D> {
    /// Queues a mail ahead of routine work (a test mail a request waits for) and answers its job id.
    pub async fn enqueue_mail(
        &self,
        payload: &str,
        reason: JobReason,
        priority: i64,
        now: Timestamp,
    ) -> StoreResult<i64> {
        let mut out = self
            .batch(vec![
                sql!(
                    "INSERT INTO jobs (kind, reason, enqueued_at, priority, payload) VALUES ('SEND_MAIL', ?1, ?2, ?3, ?4)",
                    reason.as_str(),
                    now.millis(),
                    priority,
                    payload
                ),
                sql!("SELECT last_insert_rowid() AS id"),
            ])
            .await?;
        row! {
            struct Inserted {
                id: i64,
            }
        }
        nth(&mut out, 1)?
            .first::<Inserted>()?
            .map(|r| r.id)
            .ok_or_else(|| super::StoreError::Backend("the mail job was not queued".into()))
    }

    /// Everyone who might be told about `repository_id` (or, with none, the instance): its
    /// administrators through a repository or project grant, and the instance's administrators,
    /// each with their notification settings. One statement.
    pub async fn mail_candidates(&self, repository_id: Option<i64>) -> StoreResult<Vec<Candidate>> {
        let keys = serde_json::to_string(&opt_out::KEYS).unwrap_or_default();
        let rows = self
            .rows::<CandidateRow>(sql!(
                "SELECT u.email AS email, \
                   (EXISTS (SELECT 1 FROM effective_repository_grants g WHERE g.repository_id = ?1 AND g.user_id = u.id AND g.level = 'ADMIN') \
                    OR EXISTS (SELECT 1 FROM effective_project_grants g JOIN repositories r ON r.project_id = g.project_id \
                      WHERE r.id = ?1 AND g.user_id = u.id AND g.level = 'ADMIN')) AS repository_admin, \
                   u.role IN ('ADMIN', 'SYS_ADMIN') AS instance_admin, \
                   (SELECT json_group_object(s.name, json(s.value)) FROM user_settings s \
                     WHERE s.user_id = u.id AND s.name IN (SELECT value FROM json_each(?2))) AS settings \
                 FROM users u WHERE u.email IS NOT NULL AND (u.role IN ('ADMIN', 'SYS_ADMIN') \
                   OR EXISTS (SELECT 1 FROM effective_repository_grants g WHERE g.repository_id = ?1 AND g.user_id = u.id AND g.level = 'ADMIN') \
                   OR EXISTS (SELECT 1 FROM effective_project_grants g JOIN repositories r ON r.project_id = g.project_id \
                      WHERE r.id = ?1 AND g.user_id = u.id AND g.level = 'ADMIN'))",
                repository_id,
                keys
            ))
            .await?;
        Ok(rows
            .into_iter()
            .map(|r| Candidate {
                email: r.email,
                repository_admin: r.repository_admin != 0,
                instance_admin: r.instance_admin != 0,
                settings: r.settings.and_then(|s| serde_json::from_str(&s).ok()).unwrap_or_default(),
            })
            .collect())
    }

    /// The watch of `target` (the license's, read by the cron).
    pub async fn watch(&self, target: &str) -> StoreResult<Watch> {
        read_watch(
            self.one(sql!("SELECT failures, alerted, sent FROM notification_state WHERE target = ?1", target)).await?,
        )
    }

    /// Saves a watch and queues its mail, if any, in one batch (the cron's license checks).
    pub async fn save_watch(&self, write: NoticeWrite<'_>, now: Timestamp) -> StoreResult<()> {
        self.batch(notice_statements(write, now, "1", &[])).await.map(drop)
    }

    /// The newest mail jobs, newest first (what the instance sent, and how each ended).
    pub async fn mail_jobs(&self, limit: u64) -> StoreResult<Vec<Job>> {
        read_jobs(
            self.one(sql!(
                format!("SELECT {JOB_COLUMNS} FROM jobs WHERE kind = 'SEND_MAIL' ORDER BY id DESC LIMIT ?1"),
                super::identity::page_limit(limit)
            ))
            .await?,
        )
    }
}
