//! The work queue: a requested sync becomes a job row that farm nodes lease.
//!
//! At most one job per target waits in the queue at a time; asking again while one waits
//! changes nothing (the waiting job will pick up everything).

use serde::Serialize;

use crate::time::Timestamp;

/// What a job does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
#[cfg_attr(feature = "openapi", derive(schemars::JsonSchema))]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum JobKind {
    /// Push a repository to one of its remote mirrors.
    PushMirror,
    /// Refresh a repository's copy from its upstream (its pull mirror).
    PullMirror,
    /// Bring a fork in step with its origin (and carry out a MERGE or DISCARD, if the job says so).
    ForkSync,
    /// List an upstream server's projects and repositories, so the farm holds what it should.
    Discover,
    /// Poll an upstream server that publishes its repositories' content hashes with one paged
    /// listing of them; the edge queues a pull of each farm repository whose hash moved.
    UpstreamPoll,
    /// Deliver one e-mail through the instance's mail server (see [`crate::mail`]).
    SendMail,
    /// Write a migration archive of selected repositories to R2 (see [`crate::migration`]).
    MigrationExport,
    /// Recreate the repositories of a migration archive read from R2.
    MigrationImport,
    /// Move one repository's copy from one farm node to another (a Mesh migration or a drain);
    /// pinned to the target node.
    MeshMove,
    /// Build a support zip of one node and upload it; pinned to that node.
    SupportZip,
}

impl JobKind {
    /// Whether requests wait for jobs of this kind to end (`wait_for_job`: a fork sync or a
    /// MERGE asked for, a test mail, a support zip): their results wake the waiting requests, which
    /// otherwise answer only when their wait runs out.
    pub fn is_awaited(self) -> bool {
        matches!(self, Self::ForkSync | Self::SendMail | Self::SupportZip)
    }
}

/// Why a job was queued.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
#[cfg_attr(feature = "openapi", derive(schemars::JsonSchema))]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum JobReason {
    /// `POST …/sync`.
    Manual,
    /// The mirror was created or became enabled.
    Enabled,
    /// The mirror's URL changed.
    UrlChanged,
    /// A push webhook from upstream.
    Webhook,
    /// The periodic poll of the upstream.
    Poll,
    /// The upstream changed (found by a pull): the push mirrors and forks follow.
    Upstream,
    /// A request waits for it (enabling fork sync, MERGE, DISCARD).
    Requested,
    /// An upstream server was added or its mirror settings changed (discovery).
    Settings,
    /// The schedule: discovery runs again now and then, to see new and deleted repositories.
    Schedule,
    /// A notification rule decided to tell someone (see [`crate::mail::notify`]).
    Notification,
}

/// Where a job stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
#[cfg_attr(feature = "openapi", derive(schemars::JsonSchema))]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum JobState {
    /// Waiting for a node.
    Queued,
    /// A node holds it until its lease deadline.
    Leased,
    /// Completed.
    Done,
    /// Given up on.
    Failed,
}

crate::wire_names!(JobKind { PushMirror = "PUSH_MIRROR", PullMirror = "PULL_MIRROR", ForkSync = "FORK_SYNC", Discover = "DISCOVER", UpstreamPoll = "UPSTREAM_POLL", SendMail = "SEND_MAIL", MigrationExport = "MIGRATION_EXPORT", MigrationImport = "MIGRATION_IMPORT", MeshMove = "MESH_MOVE", SupportZip = "SUPPORT_ZIP" });
crate::wire_names!(JobReason { Manual = "MANUAL", Enabled = "ENABLED", UrlChanged = "URL_CHANGED", Webhook = "WEBHOOK", Poll = "POLL", Upstream = "UPSTREAM", Requested = "REQUESTED", Settings = "SETTINGS", Schedule = "SCHEDULE", Notification = "NOTIFICATION" });
crate::wire_names!(JobState { Queued = "QUEUED", Leased = "LEASED", Done = "DONE", Failed = "FAILED" });

/// A job to queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewJob {
    /// What it does.
    pub kind: JobKind,
    /// The repository concerned.
    pub repository_id: i64,
    /// The remote mirror concerned, for push jobs.
    pub remote_mirror_id: Option<i64>,
    /// Why.
    pub reason: JobReason,
    /// When.
    pub enqueued_at: Timestamp,
}

/// A queued (or finished) job.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
#[cfg_attr(feature = "openapi", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct Job {
    /// Id.
    pub id: i64,
    /// What it does.
    pub kind: JobKind,
    /// The repository concerned (every kind but discovery).
    pub repository_id: Option<i64>,
    /// The remote mirror concerned.
    pub remote_mirror_id: Option<i64>,
    /// The upstream server concerned (discovery).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upstream_id: Option<String>,
    /// Why it was queued.
    pub reason: JobReason,
    /// Where it stands.
    pub state: JobState,
    /// Tries so far.
    pub attempt: u32,
    /// When it was queued (epoch ms).
    pub enqueued_at: i64,
    /// Not to be leased before this time (epoch ms), after a failed try.
    pub not_before: Option<i64>,
    /// The node holding (or that last held) the lease.
    pub lease_owner: Option<i64>,
    /// When the current lease runs out (epoch ms).
    pub lease_deadline: Option<i64>,
    /// The last lease's id: a node's capability to renew and report. Never sent to clients.
    #[serde(skip)]
    pub lease_id: Option<String>,
    /// What the job is to do beyond its kind (a fork action, JSON). Never sent to clients.
    #[serde(skip)]
    pub payload: Option<String>,
    /// How the node said its last try ended (`pushed`, `diverged`, `error`, `unchanged`, `conflict`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outcome: Option<String>,
    /// The node's message for that try (scrubbed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

impl Job {
    /// The try a job is on (leased: leasing counted it) or will be on next (queued), from 1.
    pub fn current_try(&self) -> u32 {
        match self.state {
            JobState::Queued => self.attempt + 1,
            _ => self.attempt.max(1),
        }
    }
}

/// How a leased job ends its lease.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobCompletion {
    /// The work is done.
    Done,
    /// The work failed for good.
    Failed,
    /// Back to the queue, not before the given time (another try).
    RetryAt(Timestamp),
    /// Back to the queue at once, the try not counted (a node shutting down).
    Released,
}

/// Default lease length, and the bounds a node may ask for.
pub const DEFAULT_LEASE_MS: i64 = 120_000;
/// Shortest lease a node may ask for.
pub const MIN_LEASE_MS: i64 = 5_000;
/// Longest lease a node may ask for.
pub const MAX_LEASE_MS: i64 = 3_600_000;

/// How much finished history is kept: at most this many finished jobs per target…
pub const KEPT_FINISHED_PER_TARGET: i64 = 20;
/// …and none older than this (ms); the cron deletes the rest.
pub const KEPT_HISTORY_MS: i64 = 30 * 86_400_000;
/// Most finished jobs the cron deletes in one run, so each run's work is bounded.
pub const PRUNE_BATCH: i64 = 500;
/// Most expired leases one run of the cron (or one lease request) returns to the queue: each costs
/// about three round trips, and D1 caps the statements of one invocation (50 on the free plan).
pub const EXPIRE_BATCH: i64 = 10;

/// Most polls one run of the cron queues; the rest wait for the next run.
pub const POLL_BATCH: i64 = 500;

/// Priority of jobs a request waits for: leased before routine work (priority 0).
pub const WAITED_FOR_PRIORITY: i64 = 10;

/// Longest a node's lease request waits for a job to become due (ms): under the 30 s that
/// proxies and the node's own client allow a request.
pub const MAX_LEASE_WAIT_MS: i64 = 25_000;

/// How long a request that needs a node's work waits for it by default (ms;
/// `MIRRORFARM_SYNC_WAIT_MS`).
pub const DEFAULT_SYNC_WAIT_MS: i64 = 20_000;

/// What waiting requests wait for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Topic {
    /// A job became due: nodes waiting for work try to lease again.
    Queue,
    /// A job finished: requests waiting for a node's result read it.
    Results,
}

impl Topic {
    /// The topic's name on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Queue => "queue",
            Self::Results => "results",
        }
    }
}

/// Wakes requests that wait: nodes long-polling for work, and API calls waiting for a node's
/// result. Each topic has a generation that every notification advances; a waiter names the
/// generation it last saw, so a notification between its last look and its wait is never missed.
/// The edge implements it with a Durable Object; without one, nothing waits.
#[allow(async_fn_in_trait)] // Single-threaded shells: futures need not be Send.
pub trait Signals {
    /// The topic's current generation; `None` if waiting is not possible here.
    async fn generation(&self, topic: Topic) -> Option<u64>;
    /// Waits until the topic's generation differs from `seen` or `timeout_ms` passes; returns
    /// the generation then (`None`: waiting failed, the caller stops waiting).
    async fn wait(&self, topic: Topic, seen: u64, timeout_ms: i64) -> Option<u64>;
    /// Advances the topic's generation, waking its waiters.
    async fn notify(&self, topic: Topic);
    /// The time now, for a request that outlives the instant it started at (`None`: that instant).
    fn now(&self) -> Option<Timestamp>;
}

/// No waiting (tests, and an edge without the Durable Object): lease requests answer at once and
/// requests that need a node's result answer 503 at once.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoSignals;

impl Signals for NoSignals {
    async fn generation(&self, _topic: Topic) -> Option<u64> {
        None
    }
    async fn wait(&self, _topic: Topic, _seen: u64, _timeout_ms: i64) -> Option<u64> {
        None
    }
    async fn notify(&self, _topic: Topic) {}
    fn now(&self) -> Option<Timestamp> {
        None
    }
}

/// What a change to a mirror asks of the queue: the job to add, if any. Push mirrors name their
/// mirror; a pull mirror is the repository's own.
pub fn job_for_mirror_change(
    kind: JobKind,
    repository_id: i64,
    mirror_id: Option<i64>,
    was_enabled: bool,
    now_enabled: bool,
    url_changed: bool,
    now: Timestamp,
) -> Option<NewJob> {
    let reason = match (was_enabled, now_enabled, url_changed) {
        (_, false, _) => return None,
        (false, true, _) => JobReason::Enabled,
        (true, true, true) => JobReason::UrlChanged,
        (true, true, false) => return None,
    };
    Some(NewJob { kind, repository_id, remote_mirror_id: mirror_id, reason, enqueued_at: now })
}

#[cfg(test)]
mod tests {
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    use super::*;

    #[test]
    fn mirror_changes_queue_only_when_enabled() {
        let t = Timestamp(1);
        let push = |was, now, url| job_for_mirror_change(JobKind::PushMirror, 1, Some(2), was, now, url, t);
        assert_eq!(push(false, false, true), None);
        assert_eq!(push(true, false, false), None);
        assert_eq!(push(true, true, false), None);
        assert_eq!(push(false, true, false).map(|j| j.reason), Some(JobReason::Enabled));
        assert_eq!(push(true, true, true).map(|j| j.reason), Some(JobReason::UrlChanged));
        let pull = job_for_mirror_change(JobKind::PullMirror, 1, None, false, true, false, t).expect("queued");
        assert_eq!((pull.kind, pull.remote_mirror_id), (JobKind::PullMirror, None));
    }

    #[test]
    fn a_lease_counts_its_try_a_queued_job_names_its_next() {
        let job = |state, attempt| Job {
            id: 1,
            kind: JobKind::PushMirror,
            repository_id: Some(1),
            remote_mirror_id: Some(1),
            upstream_id: None,
            reason: JobReason::Manual,
            state,
            attempt,
            enqueued_at: 0,
            not_before: None,
            lease_owner: None,
            lease_deadline: None,
            lease_id: None,
            payload: None,
            outcome: None,
            message: None,
        };
        assert_eq!(job(JobState::Queued, 0).current_try(), 1);
        assert_eq!(job(JobState::Leased, 1).current_try(), 1, "leasing counted the first try");
        assert_eq!(job(JobState::Queued, 1).current_try(), 2, "waiting to retry");
        assert_eq!(job(JobState::Leased, 2).current_try(), 2);
    }

    #[test]
    fn names_round_trip() {
        assert_eq!(JobState::parse(JobState::Leased.as_str()), Some(JobState::Leased));
        assert_eq!(JobReason::parse("URL_CHANGED"), Some(JobReason::UrlChanged));
        assert_eq!(JobKind::parse("nope"), None);
    }
}
