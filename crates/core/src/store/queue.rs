//! The job queue: at most one waiting job per target (a partial unique index), exclusive
//! leases per target, pushes after their repository's pull, and bounded history.

use super::mirrors::{save_pull_update, save_push_update};
use super::port::{Database, Outcome, Statement, Value, row, sql};
use super::{SavedMirror, Store, StoreResult, corrupt, nth, split_page};
use crate::queue::{
    Job, JobCompletion, JobKind, JobReason, JobState, KEPT_FINISHED_PER_TARGET, KEPT_HISTORY_MS, NewJob, PRUNE_BATCH,
};
use crate::time::Timestamp;

row! {
    struct JobRow {
        id: i64,
        kind: String,
        repository_id: Option<i64>,
        remote_mirror_id: Option<i64>,
        upstream_id: Option<String>,
        reason: String,
        state: String,
        attempt: u32,
        enqueued_at: i64,
        not_before: Option<i64>,
        lease_owner: Option<i64>,
        lease_deadline: Option<i64>,
        lease_id: Option<String>,
        payload: Option<String>,
        outcome: Option<String>,
        message: Option<String>,
    }
}

impl JobRow {
    fn into_job(self) -> StoreResult<Job> {
        Ok(Job {
            id: self.id,
            kind: JobKind::parse(&self.kind).ok_or_else(|| corrupt("job"))?,
            repository_id: self.repository_id,
            remote_mirror_id: self.remote_mirror_id,
            upstream_id: self.upstream_id,
            reason: JobReason::parse(&self.reason).ok_or_else(|| corrupt("job"))?,
            state: JobState::parse(&self.state).ok_or_else(|| corrupt("job"))?,
            attempt: self.attempt,
            enqueued_at: self.enqueued_at,
            not_before: self.not_before,
            lease_owner: self.lease_owner,
            lease_deadline: self.lease_deadline,
            lease_id: self.lease_id,
            payload: self.payload,
            outcome: self.outcome,
            message: self.message,
        })
    }
}

row! {
    struct IdRow {
        id: i64,
    }
}

pub(super) fn read_jobs(outcome: Outcome) -> StoreResult<Vec<Job>> {
    outcome.read::<JobRow>()?.into_iter().map(JobRow::into_job).collect()
}

pub(super) const JOB_COLUMNS: &str = "id, kind, repository_id, remote_mirror_id, upstream_id, reason, state, attempt, enqueued_at, \
     not_before, lease_owner, lease_deadline, lease_id, payload, outcome, message";

/// Same target as the job `j` (kind, repository, mirror, upstream server, pinned node; for jobs
/// that name neither a repository nor an upstream server, such as mail, the payload too).
const SAME_TARGET: &str = "o.kind = j.kind AND IFNULL(o.repository_id, 0) = IFNULL(j.repository_id, 0) \
     AND IFNULL(o.remote_mirror_id, 0) = IFNULL(j.remote_mirror_id, 0) AND IFNULL(o.upstream_id, '') = IFNULL(j.upstream_id, '') \
     AND IFNULL(o.node_id, 0) = IFNULL(j.node_id, 0) \
     AND (o.repository_id IS NOT NULL OR o.upstream_id IS NOT NULL OR o.payload IS j.payload)";

/// Queues `job` unless one for the same target waits (the partial unique index decides);
/// `mirror` is the SQL for its mirror id (`?3` binds the job's own).
pub(super) fn enqueue_statement(job: &NewJob, mirror: &str) -> Statement {
    sql!(
        format!(
            "INSERT OR IGNORE INTO jobs (kind, repository_id, remote_mirror_id, reason, enqueued_at) \
             VALUES (?1, ?2, {mirror}, ?4, ?5)"
        ),
        job.kind.as_str(),
        job.repository_id,
        job.remote_mirror_id,
        job.reason.as_str(),
        job.enqueued_at.millis()
    )
}

/// A repository's queued and leased jobs, newest first.
pub(super) fn live_jobs(repository_id: i64) -> Statement {
    sql!(
        format!(
            "SELECT {JOB_COLUMNS} FROM jobs WHERE repository_id = ?1 AND state IN ('QUEUED', 'LEASED') ORDER BY id DESC"
        ),
        repository_id
    )
}

/// Queues a pull of repository `?1` if it has an upstream and its pull mirror is enabled
/// (never configured counts as enabled: an exact mirror).
const ENQUEUE_PULL: &str = "INSERT OR IGNORE INTO jobs (kind, repository_id, remote_mirror_id, reason, enqueued_at) \
     SELECT 'PULL_MIRROR', r.id, NULL, ?2, ?3 FROM repositories r \
     LEFT JOIN pull_mirrors p ON p.repository_id = r.id \
     WHERE r.id = ?1 AND r.upstream_url IS NOT NULL AND IFNULL(p.enabled, 1) = 1";

/// Queues a push to every enabled push mirror of repository `?1`.
const ENQUEUE_PUSHES: &str = "INSERT OR IGNORE INTO jobs (kind, repository_id, remote_mirror_id, reason, enqueued_at) \
     SELECT 'PUSH_MIRROR', m.repository_id, m.id, ?2, ?3 FROM remote_mirrors m \
     WHERE m.repository_id = ?1 AND m.enabled = 1";

/// What a node reported, recorded as its lease ends.
#[derive(Debug)]
pub struct Reported<'a> {
    /// How the try ended (the node protocol's outcome name).
    pub outcome: &'a str,
    /// Its message (scrubbed).
    pub message: &'a str,
    /// For fork jobs: the fork and what the sync left.
    pub fork: Option<(i64, super::forks::ForkOutcome<'a>)>,
    /// For pulls: what the repository's sync record and content hash become.
    pub sync_record: Option<SyncRecord<'a>>,
    /// For discoveries: what the listing changes, or why it failed.
    pub discovery: Option<DiscoveryOutcome<'a>>,
    /// For upstream polls: the listed content hashes or refs, or that it publishes no hashes.
    pub upstream_poll: Option<UpstreamPollOutcome<'a>>,
    /// What notifications make of it: the watch saved, and a mail queued if one is due.
    pub notice: Option<super::NoticeWrite<'a>>,
}

impl<'a> Reported<'a> {
    /// A report of how a try ended and nothing else.
    pub fn outcome_only(outcome: &'a str, message: &'a str) -> Self {
        Self { outcome, message, fork: None, sync_record: None, discovery: None, upstream_poll: None, notice: None }
    }
}

/// A pull's outcome on its repository's records.
#[derive(Debug, Clone, Copy)]
pub struct SyncRecord<'a> {
    /// The repository.
    pub repository_id: i64,
    /// Whether the copy now holds the upstream's refs.
    pub succeeded: bool,
    /// Why not (scrubbed).
    pub error: Option<&'a str>,
    /// The copy's content hash, if the node computed it.
    pub content_hash: Option<&'a str>,
}

/// What an upstream's poll found.
#[derive(Debug)]
pub enum UpstreamPollOutcome<'a> {
    /// The node listed every repository's content hash: (upstream id, the listing).
    HashesListed(&'a str, &'a [crate::farm::ListedHash]),
    /// The node listed the refs of every farm repository leased: (upstream id, what it found).
    RefsListed(&'a str, &'a [crate::farm::PolledRefs]),
    /// The upstream publishes none (its listing answered 404): its upstream id.
    HashesUnpublished(&'a str),
}

/// A discovery's outcome.
pub enum DiscoveryOutcome<'a> {
    /// The node listed the upstream completely.
    Listed(super::farm::DiscoveryWrite<'a>),
    /// The listing failed: (upstream id, why).
    Failed(&'a str, &'a str),
}

impl std::fmt::Debug for DiscoveryOutcome<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Listed(w) => write!(f, "Listed({}: +{} -{})", w.upstream_id, w.plan.add.len(), w.plan.remove.len()),
            Self::Failed(id, why) => write!(f, "Failed({id}: {why})"),
        }
    }
}

/// A job and everything about it a node's lease or report needs, read in one round trip.
#[derive(Debug, Clone)]
pub struct JobContext {
    /// The job, if it exists.
    pub job: Option<Job>,
    /// Its repository, if it still exists.
    pub repository: Option<crate::registry::Repository>,
    /// The repository's pull mirror, if configured or ever pulled.
    pub pull: Option<crate::mirrors::PullMirror>,
    /// The job's push mirror, for push jobs, if it still exists.
    pub remote_mirror: Option<crate::mirrors::RemoteMirror>,
    /// The upstream's fingerprint at the last pull.
    pub upstream_fingerprint: Option<String>,
    /// For fork jobs: the fork's sync settings.
    pub fork: Option<super::forks::ForkSync>,
    /// For fork jobs: the origin, if it still exists…
    pub origin: Option<crate::registry::Repository>,
    /// …its pull mirror, if configured…
    pub origin_pull: Option<crate::mirrors::PullMirror>,
    /// …and its upstream's fingerprint at its last pull.
    pub origin_fingerprint: Option<String>,
    /// For discoveries: the upstream server…
    pub upstream: Option<crate::farm::UpstreamServer>,
    /// …and the farm repositories it brought so far.
    pub farm_entries: Vec<crate::farm::FarmEntry>,
    /// For pulls: what the job's payload asks (`{"recreate":true}`: clone the copy afresh).
    pub recreate: bool,
    /// For mirror and fork jobs: what notifications know of the target (see [`super::target`]).
    pub watch: crate::mail::notify::Watch,
    /// For mirror and fork jobs: the hook scripts attached to the repository or its project.
    pub hooks: Vec<crate::hooks::HookScriptConfig>,
    /// For pulls and pushes: the repository's protected branch names and patterns (none: its
    /// default branch counts).
    pub protected_branches: Vec<String>,
}

/// What a node's poll for work found: the job it leased, and leases found expired on the way.
#[derive(Debug, Clone)]
pub struct Poll {
    /// The job now leased to the node, if one was due.
    pub leased: Option<Job>,
    /// Leases past their deadline, for the caller to return to the queue.
    pub expired: Vec<Job>,
    /// When the next job becomes due without anyone queueing it (a retry's `not_before`, or a
    /// lease's deadline), if any: a waiting node looks again then.
    pub next_due: Option<i64>,
    /// The leased job's context (see [`Store::job_context_of`]), read in the same round trip.
    pub context: Option<JobContext>,
}

/// Leases the oldest due queued job (of `repository` only, if given) whose target no other
/// lease holds: it becomes `LEASED` by `node_id` under `lease_id` until `deadline`, its attempt
/// counted. Jobs a request waits for go first (`priority`). A push waits while its repository's
/// pull is leased or due, and a fork sync while its origin's is: the pull decides what the copy
/// holds, and queues the pushes and fork syncs again if the upstream moved, so going first would
/// only send a stale copy twice. One statement, so two nodes can never lease the same row.
///
/// Where the node may work (Mesh): a job pinned to a node is leased by that node only; an
/// `AVAILABLE` node leases anything else, a `DRAINING` one only what is pinned to it, an
/// `OFFLINE` or `DISABLED` one nothing. A pull or push goes to a node that holds the
/// repository's copy while any live `AVAILABLE` node does (see [`crate::nodes::LIVE_WINDOW_MS`]),
/// so copies stay where a Mesh migration put them. A holder one of whose leases expired with no
/// word from it since (`lease_lapsed_at` later than its `last_seen`, see [`lapse_statement`]) does
/// not count: it crashed mid-job, so its copies' work goes to the others at once instead of
/// waiting out the live window; its next contact restores the rule.
///
/// With `after` (a job and the lease a report just ended), nothing is leased unless that report
/// took effect: the node whose report was refused (its lease lost) gets no job it never hears of.
fn lease_statement(
    node_id: i64,
    lease_id: &str,
    now: Timestamp,
    deadline: Timestamp,
    repository: Option<i64>,
    after: Option<(i64, &str)>,
) -> Statement {
    let (after_job, after_lease) = after.map_or((None, None), |(job, lease)| (Some(job), Some(lease)));
    sql!(
        format!(
            "UPDATE jobs SET state = 'LEASED', attempt = attempt + 1, lease_owner = ?1, lease_id = ?2, \
             lease_deadline = ?3 \
             WHERE (?6 IS NULL OR EXISTS (SELECT 1 FROM jobs f WHERE f.id = ?6 AND f.lease_id = ?7 \
               AND f.state != 'LEASED')) \
             AND id = (SELECT j.id FROM jobs j WHERE j.state = 'QUEUED' AND IFNULL(j.not_before, 0) <= ?4 \
               AND (?5 IS NULL OR j.repository_id = ?5) \
               AND (j.node_id IS NULL OR j.node_id = ?1) \
               AND EXISTS (SELECT 1 FROM farm_nodes me WHERE me.id = ?1 \
                 AND (me.state = 'AVAILABLE' OR (me.state = 'DRAINING' AND j.node_id = ?1))) \
               AND (j.kind NOT IN ('PULL_MIRROR', 'PUSH_MIRROR') \
                 OR EXISTS (SELECT 1 FROM node_copies c WHERE c.repository_id = j.repository_id AND c.node_id = ?1) \
                 OR NOT EXISTS (SELECT 1 FROM node_copies c JOIN farm_nodes n ON n.id = c.node_id \
                   WHERE c.repository_id = j.repository_id AND n.state = 'AVAILABLE' AND n.last_seen > ?4 - {live} \
                   AND IFNULL(n.lease_lapsed_at, 0) <= n.last_seen)) \
               AND NOT EXISTS (SELECT 1 FROM repositories a WHERE a.id = j.repository_id AND a.archived = 1) \
               AND (j.kind != 'SEND_MAIL' OR EXISTS (SELECT 1 FROM instance_settings WHERE name = '{mail_server}')) \
               AND NOT EXISTS (SELECT 1 FROM jobs o WHERE o.state = 'LEASED' AND {SAME_TARGET}) \
               AND (j.kind = 'PULL_MIRROR' OR NOT EXISTS (SELECT 1 FROM jobs p WHERE p.kind = 'PULL_MIRROR' \
                 AND p.repository_id = (CASE j.kind WHEN 'FORK_SYNC' THEN \
                   (SELECT r.origin_id FROM repositories r WHERE r.id = j.repository_id) ELSE j.repository_id END) \
                 AND (p.state = 'LEASED' OR (p.state = 'QUEUED' AND IFNULL(p.not_before, 0) <= ?4)))) \
               ORDER BY j.priority DESC, j.enqueued_at, j.id LIMIT 1) \
             RETURNING {JOB_COLUMNS}",
            mail_server = crate::admin::setting::MAIL_SERVER,
            live = crate::nodes::LIVE_WINDOW_MS
        ),
        node_id,
        lease_id,
        deadline.millis(),
        now.millis(),
        repository,
        after_job,
        after_lease
    )
}

/// Records on each node holding a lease past its deadline that deadline (`lease_lapsed_at`, the
/// latest one): a node that has not been heard from since then crashed or was cut off mid-job
/// and loses its copies' affinity (see [`lease_statement`]). Runs before the expired leases are
/// read, for all of them (not only the batch returned), so the mark never waits for the cron.
fn lapse_statement(now: Timestamp) -> Statement {
    sql!(
        "UPDATE farm_nodes SET lease_lapsed_at = MAX(IFNULL(lease_lapsed_at, 0), \
           (SELECT MAX(j.lease_deadline) FROM jobs j WHERE j.state = 'LEASED' AND j.lease_deadline < ?1 \
             AND j.lease_owner = farm_nodes.id)) \
         WHERE id IN (SELECT lease_owner FROM jobs WHERE state = 'LEASED' AND lease_deadline < ?1)",
        now.millis()
    )
}

/// Leased jobs whose deadline has passed, oldest first, at most `limit`.
fn expired_statement(now: Timestamp, limit: i64) -> Statement {
    sql!(
        format!(
            "SELECT {JOB_COLUMNS} FROM jobs WHERE state = 'LEASED' AND lease_deadline < ?1 \
             ORDER BY lease_deadline LIMIT ?2"
        ),
        now.millis(),
        limit
    )
}

/// What a node's poll asks for (see [`Store::poll_for_job`]).
pub struct PollAsked<'a> {
    /// The node polling.
    pub node_id: i64,
    /// The lease id a job leased now gets.
    pub lease_id: &'a str,
    /// The time now.
    pub now: Timestamp,
    /// When the lease ends unless renewed.
    pub deadline: Timestamp,
    /// Only this repository's jobs (`sync <repo>` on a node).
    pub repository: Option<i64>,
    /// The node's contact is recorded unless it was recorded since.
    pub contact_since: Timestamp,
    /// At most this many expired leases are returned.
    pub expired_limit: i64,
}

/// A poll's statements (see [`Store::poll_for_job`]); `after` as in [`lease_statement`].
fn poll_statements(asked: &PollAsked<'_>, after: Option<(i64, &str)>) -> Vec<Statement> {
    let now = asked.now;
    let mut statements = vec![
        super::nodes::touch_statement(asked.node_id, now, asked.contact_since),
        lapse_statement(now),
        expired_statement(now, asked.expired_limit),
        lease_statement(asked.node_id, asked.lease_id, now, asked.deadline, asked.repository, after),
        sql!(
            "SELECT MIN(t) AS t FROM (SELECT MIN(not_before) AS t FROM jobs WHERE state = 'QUEUED' \
             AND not_before > ?1 UNION ALL SELECT MIN(lease_deadline) FROM jobs WHERE state = 'LEASED')",
            now.millis()
        ),
    ];
    // The leased job's context, every part (its kind is not known yet), in the same trip.
    statements.extend(context_statements(LEASED_JOB_SQL, &Value::from(asked.lease_id)));
    statements
}

/// A poll from the outcomes of [`poll_statements`].
fn read_poll(mut out: Vec<Outcome>) -> StoreResult<Poll> {
    row! {
        struct NextDue {
            t: Option<i64>,
        }
    }
    let expired = read_jobs(nth(&mut out, 2)?)?;
    let leased = read_jobs(nth(&mut out, 3)?)?.pop();
    let next_due = nth(&mut out, 4)?.first::<NextDue>()?.and_then(|r| r.t);
    // The parts its kind does not use are dropped, so the context is what `job_context_of` reads.
    let context = match &leased {
        Some(job) => {
            let parts = context_parts(Some(job.kind));
            let read = out.into_iter().skip(5).zip(parts);
            Some(read_context(read.map(|(o, p)| if p { o } else { unread() }).collect())?)
        }
        None => None,
    };
    Ok(Poll { expired, leased, next_due, context })
}

/// The job after a report, and the repositories a discovery removed; `None` if the lease was
/// not held (nothing was written).
fn read_finished(
    mut out: Vec<Outcome>,
    removed_at: Option<usize>,
    first_job_statement: usize,
) -> StoreResult<Option<(Job, Vec<i64>)>> {
    let after = read_jobs(out.pop().unwrap_or_default())?.pop();
    let removed = match removed_at {
        Some(i) => nth(&mut out, i)?.read::<IdRow>()?.into_iter().map(|r| r.id).collect(),
        None => Vec::new(),
    };
    let held = out.get(first_job_statement..).unwrap_or_default().iter().map(|o| o.changes).sum::<u64>() > 0;
    Ok(after.filter(|_| held).map(|job| (job, removed)))
}

/// The id of the job leased under the lease id `?1` (the poll that leases it reads its context
/// in the same batch). Leased jobs are few, and `jobs_by_lease_deadline` finds them.
const LEASED_JOB_SQL: &str = "(SELECT id FROM jobs WHERE state = 'LEASED' AND lease_id = ?1)";

/// Which parts of [`context_statements`] a job of `kind` uses (`None`: all).
fn context_parts(kind: Option<JobKind>) -> [bool; 14] {
    use JobKind as K;
    let wants = |kinds: &[JobKind]| kind.is_none_or(|k| kinds.contains(&k));
    [
        true,
        wants(&[K::PullMirror, K::PushMirror, K::ForkSync]),
        wants(&[K::PullMirror, K::PushMirror, K::ForkSync]),
        wants(&[K::PushMirror]),
        wants(&[K::PullMirror, K::PushMirror, K::ForkSync]),
        wants(&[K::ForkSync]),
        wants(&[K::ForkSync]),
        wants(&[K::ForkSync]),
        wants(&[K::ForkSync]),
        wants(&[K::Discover, K::UpstreamPoll]),
        wants(&[K::Discover]),
        wants(&[K::PullMirror, K::PushMirror, K::ForkSync]),
        wants(&[K::PullMirror, K::PushMirror, K::ForkSync]),
        wants(&[K::PullMirror, K::PushMirror]),
    ]
}

/// The statements that read a job's context, the job named by `job` (SQL for its id, whose `?1`
/// is bound to `param`), in the order [`read_context`] reads them.
fn context_statements(job: &str, param: &Value) -> Vec<Statement> {
    let of_job = |column: &str| format!("(SELECT {column} FROM jobs WHERE id = {job})");
    let origin = format!("(SELECT origin_id FROM repositories WHERE id = {})", of_job("repository_id"));
    let fingerprint_of = |repo: &str| {
        sql!(
            format!("SELECT upstream_fingerprint FROM repository_triggers WHERE repository_id = {repo}"),
            param.clone()
        )
    };
    vec![
        sql!(format!("SELECT {JOB_COLUMNS} FROM jobs WHERE id = {job}"), param.clone()),
        sql!(format!("{} WHERE r.id = {}", super::registry::REPO_SELECT, of_job("repository_id")), param.clone()),
        sql!(format!("SELECT * FROM pull_mirrors WHERE repository_id = {}", of_job("repository_id")), param.clone()),
        sql!(format!("SELECT * FROM remote_mirrors WHERE id = {}", of_job("remote_mirror_id")), param.clone()),
        fingerprint_of(&of_job("repository_id")),
        sql!(
            format!("{} WHERE f.repository_id = {}", super::forks::FORK_SELECT, of_job("repository_id")),
            param.clone()
        ),
        sql!(format!("{} WHERE r.id = {origin}", super::registry::REPO_SELECT), param.clone()),
        sql!(format!("SELECT * FROM pull_mirrors WHERE repository_id = {origin}"), param.clone()),
        fingerprint_of(&origin),
        sql!(format!("{} WHERE u.id = {}", super::farm::UPSTREAM_SELECT, of_job("upstream_id")), param.clone()),
        super::farm::farm_entries_statement(&of_job("upstream_id"), param.clone()),
        sql!(
            format!(
                "SELECT failures, alerted, sent FROM notification_state WHERE target = {}",
                super::mail::job_target_sql(job)
            ),
            param.clone()
        ),
        super::hooks::attached_to(&of_job("repository_id"), param.clone()),
        sql!(
            format!(
                "SELECT name FROM protected_branches WHERE repository_id = {} ORDER BY name",
                of_job("repository_id")
            ),
            param.clone()
        ),
    ]
}

/// What a part of a context that was not read stands as: no rows.
fn unread() -> Outcome {
    Outcome { rows: "[]".into(), changes: 0 }
}

/// A job's context from the outcomes of [`context_statements`] (a part not read: [`unread`]).
fn read_context(mut out: Vec<Outcome>) -> StoreResult<JobContext> {
    row! {
        struct Fingerprint {
            upstream_fingerprint: Option<String>,
        }
    }
    let job = read_jobs(nth(&mut out, 0)?)?.pop();
    let recreate = job
        .as_ref()
        .and_then(|j| j.payload.as_deref())
        .and_then(|p| serde_json::from_str::<serde_json::Value>(p).ok())
        .is_some_and(|p| p.get("recreate") == Some(&serde_json::Value::Bool(true)));
    Ok(JobContext {
        recreate: recreate && job.as_ref().is_some_and(|j| j.kind == JobKind::PullMirror),
        job,
        repository: nth(&mut out, 1)?.first::<super::registry::RepoRow>()?.map(Into::into),
        pull: super::mirrors::read_pull(nth(&mut out, 2)?)?,
        remote_mirror: super::mirrors::read_mirrors(nth(&mut out, 3)?)?.pop(),
        upstream_fingerprint: nth(&mut out, 4)?.first::<Fingerprint>()?.and_then(|f| f.upstream_fingerprint),
        fork: super::forks::read_fork(nth(&mut out, 5)?)?,
        origin: nth(&mut out, 6)?.first::<super::registry::RepoRow>()?.map(Into::into),
        origin_pull: super::mirrors::read_pull(nth(&mut out, 7)?)?,
        origin_fingerprint: nth(&mut out, 8)?.first::<Fingerprint>()?.and_then(|f| f.upstream_fingerprint),
        upstream: super::farm::read_upstreams(nth(&mut out, 9)?)?.pop(),
        farm_entries: super::farm::read_farm_entries(nth(&mut out, 10)?)?,
        watch: super::mail::read_watch(nth(&mut out, 11)?)?,
        hooks: super::hooks::read_configs(nth(&mut out, 12)?)?,
        protected_branches: super::protected::read_names(nth(&mut out, 13)?)?,
    })
}

impl<D: Database> Store<D> {
    /// A job's context (see [`JobContext`]) in one round trip.
    pub async fn job_context(&self, job_id: i64) -> StoreResult<JobContext> {
        self.job_context_of(job_id, None).await
    }

    /// A job's context when its kind is known: only the parts that kind uses are read, in one
    /// round trip (a pull reads 4 statements, not 14).
    pub async fn job_context_of(&self, job_id: i64, kind: Option<JobKind>) -> StoreResult<JobContext> {
        let parts = context_parts(kind);
        let statements = context_statements("?1", &Value::Integer(job_id));
        let wanted: Vec<Statement> = statements.into_iter().zip(parts).filter(|(_, p)| *p).map(|(s, _)| s).collect();
        let mut read = self.batch(wanted).await?.into_iter();
        // Back in place: a part not read is empty.
        let out = parts.iter().map(|p| if *p { read.next().unwrap_or_default() } else { unread() }).collect();
        read_context(out)
    }

    /// A node's poll for work, in one round trip: records its contact (unless recorded since
    /// `contact_since`), marks the nodes of leases past their deadline (see `lapse_statement`),
    /// finds those leases (at most `expired_limit`), leases the next due job (see
    /// `lease_statement`) and reads that job's context (see [`context_statements`]).
    #[allow(clippy::too_many_arguments)] // One batch of statements and their parameters.
    pub async fn poll_for_job(
        &self,
        node_id: i64,
        lease_id: &str,
        now: Timestamp,
        deadline: Timestamp,
        repository: Option<i64>,
        contact_since: Timestamp,
        expired_limit: i64,
    ) -> StoreResult<Poll> {
        let asked = PollAsked { node_id, lease_id, now, deadline, repository, contact_since, expired_limit };
        self.poll_for_job_asked(&asked).await
    }

    /// [`Store::poll_for_job`], asked with a [`PollAsked`].
    pub async fn poll_for_job_asked(&self, asked: &PollAsked<'_>) -> StoreResult<Poll> {
        read_poll(self.batch(poll_statements(asked, None)).await?)
    }

    /// Queues a job unless one for the same target is already waiting (it then absorbs this one).
    pub async fn enqueue(&self, job: &NewJob) -> StoreResult<()> {
        self.one(enqueue_statement(job, "?3")).await.map(drop)
    }

    /// Queues, in one batch, a pull of the repository (if its pull mirror is on) when `pull`,
    /// and a push to each enabled push mirror when `pushes`. Returns how many of those jobs now
    /// wait (queued now or already waiting).
    pub async fn queue_repository_syncs(
        &self,
        repository_id: i64,
        pull: bool,
        pushes: bool,
        reason: JobReason,
        now: Timestamp,
    ) -> StoreResult<u64> {
        let mut batch = Vec::new();
        if pull {
            batch.push(sql!(ENQUEUE_PULL, repository_id, reason.as_str(), now.millis()));
        }
        if pushes {
            batch.push(sql!(ENQUEUE_PUSHES, repository_id, reason.as_str(), now.millis()));
        }
        batch.push(sql!(
            "SELECT COUNT(*) AS n FROM jobs j WHERE j.repository_id = ?1 AND j.state = 'QUEUED' AND \
             ((?2 AND j.kind = 'PULL_MIRROR') OR (?3 AND j.kind = 'PUSH_MIRROR' AND EXISTS \
               (SELECT 1 FROM remote_mirrors m WHERE m.id = j.remote_mirror_id AND m.enabled = 1)))",
            repository_id,
            pull,
            pushes
        ));
        let last = batch.len() - 1;
        let mut out = self.batch(batch).await?;
        Ok(nth(&mut out, last)?.first::<super::registry::CountRow>()?.map_or(0, |c| c.n))
    }

    /// One page of a repository's jobs, newest first, and whether more follow.
    pub async fn list_jobs(&self, repository_id: i64, offset: u64, limit: u64) -> StoreResult<(Vec<Job>, bool)> {
        let out = self
            .one(sql!(
                format!("SELECT {JOB_COLUMNS} FROM jobs WHERE repository_id = ?1 ORDER BY id DESC LIMIT ?2 OFFSET ?3"),
                repository_id,
                super::identity::page_limit(limit),
                super::identity::page_offset(offset)
            ))
            .await?;
        Ok(split_page(read_jobs(out)?, limit))
    }

    /// A job by id.
    pub async fn job(&self, id: i64) -> StoreResult<Option<Job>> {
        Ok(read_jobs(self.one(sql!(format!("SELECT {JOB_COLUMNS} FROM jobs WHERE id = ?1"), id)).await?)?.pop())
    }

    /// Extends the lease `lease_id` of `node_id` if it is still held; false if not.
    pub async fn renew_lease(
        &self,
        job_id: i64,
        node_id: i64,
        lease_id: &str,
        deadline: Timestamp,
    ) -> StoreResult<bool> {
        let out = self
            .one(sql!(
                "UPDATE jobs SET lease_deadline = ?4 WHERE id = ?1 AND lease_owner = ?2 AND lease_id = ?3 \
                 AND state = 'LEASED'",
                job_id,
                node_id,
                lease_id,
                deadline.millis()
            ))
            .await?;
        Ok(out.changes > 0)
    }

    /// Ends the lease `lease_id` as `completion` and records `mirror`'s update state, in one
    /// batch, and answers the job as it now is; `None` (and nothing written) if that lease is not
    /// the job's current one. When the
    /// node `reported` the outcome, the lease id is kept so a repeated report is recognised;
    /// otherwise (expiry, release) it is forgotten and a late report is refused. A job sent back
    /// to the queue while another waits for the same target is closed instead: the waiting one
    /// does the work. A pull that reports the upstream's `fingerprint` has it recorded in the
    /// same batch, and the push mirrors queued if it changed.
    ///
    /// With `next` (a busy node's report that asks for its next job), the node's poll (see
    /// [`Store::poll_for_job`]) goes in the same batch and is answered too; it leases nothing
    /// unless the report took effect.
    #[allow(clippy::too_many_arguments)] // One batch: each argument is one part of it.
    pub async fn finish_job(
        &self,
        job_id: i64,
        lease_id: &str,
        completion: JobCompletion,
        reported: Option<Reported<'_>>,
        now: Timestamp,
        mirror: Option<SavedMirror<'_>>,
        fingerprint: Option<(i64, &str)>,
        next: Option<&PollAsked<'_>>,
    ) -> StoreResult<(Option<(Job, Vec<i64>)>, Option<Poll>)> {
        let held = "id = ?1 AND lease_id = ?2 AND state = 'LEASED'";
        let kept_lease = if reported.is_some() { "lease_id" } else { "NULL" };
        let reported_outcome = reported.as_ref().map(|r| (r.outcome, r.message));
        // The mirror goes first, guarded by the lease, so it is saved exactly when the job
        // statements below (same guard) take effect.
        let mut batch = match mirror {
            Some(SavedMirror::Push(m)) => vec![save_push_update(m, Some((job_id, lease_id)))],
            Some(SavedMirror::Pull(p)) => vec![save_pull_update(p, Some((job_id, lease_id)))],
            None => Vec::new(),
        };
        if let Some((repository_id, fingerprint)) = fingerprint {
            batch.extend(super::triggers::fingerprint_statements(repository_id, fingerprint, now, (job_id, lease_id)));
        }
        let guard = (job_id, lease_id);
        let mut removed_at = None;
        if let Some(r) = &reported {
            if let Some(fork) = r.fork {
                batch.extend(super::forks::fork_outcome_statements(fork.0, fork.1, now, guard));
            }
            if let Some(s) = r.sync_record {
                batch.extend(super::farm::sync_record_statements(
                    s.repository_id,
                    s.succeeded,
                    s.error,
                    s.content_hash,
                    now,
                    guard,
                ));
            }
            match &r.discovery {
                Some(DiscoveryOutcome::Listed(w)) => {
                    batch.extend(super::farm::discovery_statements(w, now, guard));
                    removed_at = Some(batch.len() - 1);
                }
                Some(DiscoveryOutcome::Failed(id, why)) => {
                    batch.push(super::farm::discovery_failed_statement(id, why, guard));
                }
                None => {}
            }
            match r.upstream_poll {
                Some(UpstreamPollOutcome::HashesListed(id, listed)) => {
                    batch.extend(super::farm::hash_listing_statements(id, listed, now, guard));
                }
                Some(UpstreamPollOutcome::RefsListed(id, polled)) => {
                    batch.extend(super::farm::ref_listing_statements(id, polled, now, guard));
                }
                Some(UpstreamPollOutcome::HashesUnpublished(id)) => {
                    batch.push(super::farm::hashes_unpublished_statement(id, guard))
                }
                None => {}
            }
            if let Some(notice) = r.notice {
                let guard = super::mirrors::lease_held(1, 2);
                batch.extend(super::mail::notice_statements(notice, now, &guard, &[job_id.into(), lease_id.into()]));
            }
        }
        if let Some((outcome, message)) = reported_outcome {
            batch.push(sql!(
                format!("UPDATE jobs SET outcome = ?3, message = ?4 WHERE {held}"),
                job_id,
                lease_id,
                outcome,
                message
            ));
        }
        let first_job_stmt = batch.len();
        // Back to the queue only if no other job waits for the same target; otherwise the next
        // statement closes it and the waiting job does the work.
        let requeue = |not_before: i64, attempt_delta: i64| {
            sql!(
                format!(
                    "UPDATE jobs SET state = 'QUEUED', not_before = ?3, attempt = attempt + ?4, lease_deadline = NULL, \
                     lease_id = {kept_lease} WHERE {held} AND NOT EXISTS \
                     (SELECT 1 FROM jobs o, jobs j WHERE j.id = ?1 AND o.id != j.id AND o.state = 'QUEUED' AND {SAME_TARGET})"
                ),
                job_id,
                lease_id,
                not_before,
                attempt_delta
            )
        };
        let close = |state: &str| {
            sql!(
                format!(
                    "UPDATE jobs SET state = '{state}', finished_at = ?3, lease_deadline = NULL, \
                     lease_id = {kept_lease} WHERE {held}"
                ),
                job_id,
                lease_id,
                now.millis()
            )
        };
        match completion {
            JobCompletion::Done => batch.push(close("DONE")),
            JobCompletion::Failed => batch.push(close("FAILED")),
            JobCompletion::RetryAt(at) => batch.extend([requeue(at.millis(), 0), close("DONE")]),
            JobCompletion::Released => batch.extend([requeue(now.millis(), -1), close("DONE")]),
        }
        batch.push(sql!(format!("SELECT {JOB_COLUMNS} FROM jobs WHERE id = ?1"), job_id));
        let finished = batch.len();
        if let Some(next) = next {
            batch.extend(poll_statements(next, Some((job_id, lease_id))));
        }
        let mut out = self.batch(batch).await?;
        let polled = out.split_off(finished.min(out.len()));
        let poll = next.map(|_| read_poll(polled)).transpose()?;
        Ok((read_finished(out, removed_at, first_job_stmt)?, poll))
    }

    /// Leased jobs whose deadline has passed, oldest first, at most `limit`; their nodes are
    /// marked as having let a lease lapse (see [`lapse_statement`]) in the same round trip.
    pub async fn expired_leases(&self, now: Timestamp, limit: i64) -> StoreResult<Vec<Job>> {
        let mut out = self.batch(vec![lapse_statement(now), expired_statement(now, limit)]).await?;
        read_jobs(nth(&mut out, 1)?)
    }

    /// Deletes finished jobs beyond the newest [`KEPT_FINISHED_PER_TARGET`] of each target and
    /// those older than [`KEPT_HISTORY_MS`], at most [`PRUNE_BATCH`] per call. Returns how many.
    pub async fn prune_job_history(&self, now: Timestamp) -> StoreResult<u64> {
        let out = self
            .one(sql!(
                "DELETE FROM jobs WHERE id IN (SELECT id FROM (SELECT id, finished_at, ROW_NUMBER() OVER \
                   (PARTITION BY kind, repository_id, IFNULL(remote_mirror_id, 0), upstream_id ORDER BY id DESC) AS age \
                   FROM jobs WHERE state IN ('DONE', 'FAILED')) WHERE age > ?1 OR finished_at < ?2 LIMIT ?3)",
                KEPT_FINISHED_PER_TARGET,
                now.millis() - KEPT_HISTORY_MS,
                PRUNE_BATCH
            ))
            .await?;
        Ok(out.changes)
    }
}
