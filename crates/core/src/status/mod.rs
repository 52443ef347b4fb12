//! A repository's mirroring status at a glance: the wire type behind
//! `GET /rest/mirrorfarm/latest/repos/{id}/status`, read by the browser widget.
//!
//! It gathers what a person needs to judge health — each push mirror, the pull mirror, waiting
//! jobs and the farm nodes at work — and the one-line [`StatusSummary`] verdict over them. The
//! edge builds it with [`RepositoryStatus::new`]; the widget reads the same type back. It holds
//! no "as of" time, so an unchanged status is byte-for-byte the same and its ETag holds; readers
//! show times relative to their own clock.

mod read;

pub use read::{JsonValue, ReadError};

use serde::{Deserialize, Serialize};

use crate::mirrors::{PullMirror, RemoteMirror, StatusSummary, UpdateState, UpdateStatus};
use crate::nodes::{FarmNode, NodeDto};
use crate::queue::{Job, JobState};
use crate::registry::Repository;
use crate::time::Timestamp;

/// How long without a node's heartbeat (or with a job left waiting) before status counts as
/// stale (`MIRRORFARM_STALE_AFTER_MS`): two lease lengths, so one slow job does not trip it.
pub const DEFAULT_STALE_AFTER_MS: i64 = 10 * 60 * 1000;

/// Everything the status view shows for one repository.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct RepositoryStatus {
    /// The repository.
    pub repository: RepositoryName,
    /// The verdict over its enabled mirrors.
    pub summary: StatusSummary,
    /// Its push mirrors, URLs masked.
    pub remote_mirrors: Vec<MirrorStatus>,
    /// Its pull mirror, if it has an upstream.
    pub pull_mirror: Option<MirrorStatus>,
    /// Jobs queued or running for it.
    pub jobs: Vec<Job>,
    /// Farm nodes seen within the stale window: the ones that can serve it.
    pub nodes: Vec<NodeDto>,
    /// For a fork: its sync with the origin, as Bitbucket's sync status shows it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fork: Option<crate::forks::RefSyncStatus>,
    /// For a farm repository: its upstream server, its mirror status and its hashes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub farm: Option<FarmStatus>,
    /// The instance's announcement banner, when its audience includes the caller.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub banner: Option<String>,
}

/// A farm repository's standing: where it is mirrored from, its status as Bitbucket's mirror
/// shows it, and whether its copy's content hash equals the upstream's at its latest sync.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct FarmStatus {
    /// The upstream server's base URL.
    pub upstream: String,
    /// NOT_MIRRORED, INITIALIZING, AVAILABLE, ERROR_INITIALIZING or ERROR_AVAILABLE.
    pub status: String,
    /// The copy's content hash after its latest sync (none before the first).
    pub content_hash: Option<String>,
    /// The upstream's content hash as that sync listed it.
    pub upstream_content_hash: Option<String>,
    /// The latest successful sync (epoch ms).
    pub last_sync: Option<i64>,
}

impl FarmStatus {
    /// Whether the copy's hash equals the upstream's (`None`: not compared yet).
    pub fn in_sync(&self) -> Option<bool> {
        Some(self.content_hash.as_ref()? == self.upstream_content_hash.as_ref()?)
    }
}

/// Which repository a status is about.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct RepositoryName {
    /// Id.
    pub id: i64,
    /// Project key.
    pub project_key: String,
    /// Slug.
    pub slug: String,
    /// Display name.
    pub name: String,
}

/// One mirror's state, push or pull. Times are epoch ms, as in the rest of our own API.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct MirrorStatus {
    /// The remote mirror's id (the repository's id for the pull mirror).
    pub id: i64,
    /// URL with credentials masked.
    pub url: String,
    /// Whether updates happen.
    pub enabled: bool,
    /// GitLab's `update_status`.
    pub update_status: UpdateStatus,
    /// When the last update ended.
    pub last_update_at: Option<i64>,
    /// When the last update started.
    pub last_update_started_at: Option<i64>,
    /// When the last successful update ended.
    pub last_successful_update_at: Option<i64>,
    /// The scrubbed error of the last failed update.
    pub last_error: Option<String>,
}

impl MirrorStatus {
    fn new(id: i64, url: &str, enabled: bool, update: &UpdateState) -> Self {
        Self {
            id,
            url: url.to_owned(),
            enabled,
            update_status: update.status,
            last_update_at: update.last_update_at.map(Timestamp::millis),
            last_update_started_at: update.last_update_started_at.map(Timestamp::millis),
            last_successful_update_at: update.last_successful_update_at.map(Timestamp::millis),
            last_error: update.last_error.clone(),
        }
    }
}

impl RepositoryStatus {
    /// Builds the status from what the store holds, at `now`. `pull` is the repository's pull
    /// mirror settings (configured or implicit); it is shown only if the repository has an
    /// upstream. Finished jobs and nodes silent for longer than `stale_after_ms` are left out.
    /// The verdict is stale when enabled mirrors have no live node to serve them, or a job has
    /// waited for longer than `stale_after_ms`.
    pub fn new(
        repo: &Repository,
        remote: &[RemoteMirror],
        pull: &PullMirror,
        jobs: Vec<Job>,
        nodes: &[FarmNode],
        now: Timestamp,
        stale_after_ms: i64,
    ) -> Self {
        let cutoff = now.plus_millis(-stale_after_ms);
        let remote_mirrors: Vec<MirrorStatus> =
            remote.iter().map(|m| MirrorStatus::new(m.id, &m.url.masked, m.enabled, &m.update)).collect();
        let pull_mirror =
            repo.upstream.as_ref().map(|u| MirrorStatus::new(repo.id, &u.masked, pull.enabled, &pull.update));
        let jobs: Vec<Job> =
            jobs.into_iter().filter(|j| matches!(j.state, JobState::Queued | JobState::Leased)).collect();
        let nodes: Vec<NodeDto> =
            nodes.iter().filter(|n| n.last_seen.is_some_and(|seen| seen >= cutoff)).map(NodeDto::from).collect();
        let enabled = || remote_mirrors.iter().chain(&pull_mirror).filter(|m| m.enabled);
        let waited_too_long = jobs.iter().any(|j| {
            j.state == JobState::Queued && j.not_before.unwrap_or(j.enqueued_at).max(j.enqueued_at) < cutoff.millis()
        });
        let stale = enabled().next().is_some() && (nodes.is_empty() || waited_too_long);
        let summary = StatusSummary::of(enabled().map(|m| m.update_status)).with_stale(stale);
        Self {
            repository: RepositoryName {
                id: repo.id,
                project_key: repo.project.key.clone(),
                slug: repo.slug.clone(),
                name: repo.name.clone(),
            },
            summary,
            remote_mirrors,
            pull_mirror,
            jobs,
            nodes,
            fork: None,
            farm: None,
            banner: None,
        }
    }

    /// The same status, showing a fork's sync.
    #[must_use]
    pub fn with_fork(self, fork: Option<crate::forks::RefSyncStatus>) -> Self {
        Self { fork, ..self }
    }

    /// The same status, showing a farm repository's standing.
    #[must_use]
    pub fn with_farm(self, farm: Option<FarmStatus>) -> Self {
        Self { farm, ..self }
    }

    /// The same status with the banner the caller sees, if any.
    pub fn with_banner(self, banner: Option<String>) -> Self {
        Self { banner, ..self }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    use super::*;
    use crate::mirrors::{AuthMethod, Verdict};
    use crate::queue::{JobKind, JobReason};
    use crate::registry::Project;
    use crate::urls::StoredUrl;

    const MIN: i64 = 60_000;

    fn url(masked: &str) -> StoredUrl {
        StoredUrl { plain: masked.replace("*****:*****@", ""), masked: masked.into(), sealed_userinfo: None }
    }

    fn repo(upstream: bool) -> Repository {
        Repository {
            archived: false,
            id: 7,
            slug: "app".into(),
            name: "App".into(),
            project: Project {
                id: 1,
                key: "MF".into(),
                name: "Farm".into(),
                description: None,
                public: false,
                owner_id: None,
                created_at: Timestamp(0),
            },
            description: None,
            default_branch: "main".into(),
            public: false,
            forkable: true,
            upstream: upstream.then(|| url("https://*****:*****@up.example/app.git")),
            hierarchy_id: "h".into(),
            origin_id: None,
            fork_url: None,
            clone_base: None,
            ssh_base: None,
            created_at: Timestamp(0),
        }
    }

    fn mirror(id: i64, status: UpdateStatus, enabled: bool) -> RemoteMirror {
        RemoteMirror {
            id,
            repository_id: 7,
            url: url("https://*****:*****@target.example/app.git"),
            enabled,
            only_protected_branches: false,
            keep_divergent_refs: false,
            mirror_branch_regex: None,
            auth_method: AuthMethod::Password,
            ssh: None,
            update: UpdateState {
                status,
                last_error: (status == UpdateStatus::Failed).then(|| "push rejected".into()),
                last_update_at: Some(Timestamp(5 * MIN)),
                ..UpdateState::default()
            },
            created_at: Timestamp(0),
            updated_at: Timestamp(0),
        }
    }

    fn node(last_seen: i64) -> FarmNode {
        FarmNode {
            clone_url: None,
            id: 3,
            name: "node-a".into(),
            lookup: "x".into(),
            hash: "h".into(),
            created_at: Timestamp(0),
            last_seen: Some(Timestamp(last_seen)),
            state: crate::mesh::MeshNodeState::Available,
        }
    }

    fn job(id: i64, state: JobState, enqueued_at: i64) -> Job {
        Job {
            id,
            kind: JobKind::PushMirror,
            repository_id: Some(7),
            upstream_id: None,
            remote_mirror_id: Some(1),
            reason: JobReason::Manual,
            state,
            attempt: 0,
            enqueued_at,
            not_before: None,
            lease_owner: None,
            lease_deadline: None,
            lease_id: Some("secret-lease".into()),
            payload: None,
            outcome: None,
            message: None,
        }
    }

    /// Statuses covering every field's shapes (set and unset), for the reader's round trip.
    pub(crate) fn sample() -> Vec<RepositoryStatus> {
        let now = Timestamp(20 * MIN);
        let mirrors = [mirror(1, UpdateStatus::Finished, true), mirror(2, UpdateStatus::Failed, false)];
        let mut leased = job(3, JobState::Leased, 18 * MIN);
        (leased.lease_owner, leased.lease_deadline, leased.not_before, leased.attempt) =
            (Some(3), Some(25 * MIN), Some(17 * MIN), 2);
        let jobs = vec![job(2, JobState::Queued, 19 * MIN), leased];
        let pull = PullMirror::implicit(7, now);
        vec![
            RepositoryStatus::new(
                &repo(true),
                &mirrors,
                &pull,
                jobs.into_iter().map(|j| Job { lease_id: None, ..j }).collect(),
                &[node(19 * MIN)],
                now,
                10 * MIN,
            ),
            RepositoryStatus::new(&repo(false), &[], &pull, vec![], &[], now, 10 * MIN),
        ]
    }

    #[test]
    fn gathers_mirrors_live_nodes_and_waiting_jobs() {
        let now = Timestamp(20 * MIN);
        let mirrors = [mirror(1, UpdateStatus::Finished, true), mirror(2, UpdateStatus::Failed, true)];
        let jobs = vec![job(1, JobState::Done, 0), job(2, JobState::Queued, 19 * MIN)];
        let nodes = [node(19 * MIN), FarmNode { id: 4, name: "gone".into(), ..node(0) }];
        let pull = PullMirror::implicit(7, now);
        let s = RepositoryStatus::new(&repo(true), &mirrors, &pull, jobs, &nodes, now, 10 * MIN);
        assert_eq!(s.summary.verdict(), Verdict::Failing);
        assert_eq!((s.summary.total, s.summary.failing, s.summary.never_run), (3, 1, 1));
        assert_eq!(s.jobs.iter().map(|j| j.id).collect::<Vec<_>>(), [2]);
        assert_eq!(s.nodes.iter().map(|n| n.name.as_str()).collect::<Vec<_>>(), ["node-a"]);
        assert_eq!(s.pull_mirror.as_ref().map(|p| p.url.as_str()), Some("https://*****:*****@up.example/app.git"));
        assert_eq!(s.remote_mirrors[1].last_error.as_deref(), Some("push rejected"));
        let json = serde_json::to_string(&s).expect("serializes");
        assert!(!json.contains("secret-lease"), "lease ids are capabilities: {json}");
        let back: RepositoryStatus = serde_json::from_str(&json).expect("the widget can read it back");
        assert_eq!(back.jobs[0].lease_id, None);
        assert_eq!(back.summary, s.summary);
        assert_eq!(back.remote_mirrors, s.remote_mirrors);
    }

    #[test]
    fn stale_without_a_live_node_or_with_a_job_left_waiting() {
        let now = Timestamp(60 * MIN);
        let ok = [mirror(1, UpdateStatus::Finished, true)];
        let pull = PullMirror::implicit(7, now);
        let live = [node(59 * MIN)];
        let fresh = RepositoryStatus::new(&repo(false), &ok, &pull, vec![], &live, now, 10 * MIN);
        assert_eq!(fresh.summary.verdict(), Verdict::InSync);
        let silent = RepositoryStatus::new(&repo(false), &ok, &pull, vec![], &[node(40 * MIN)], now, 10 * MIN);
        assert_eq!(silent.summary.verdict(), Verdict::Stale);
        assert!(silent.pull_mirror.is_none() && silent.nodes.is_empty());
        let waiting = vec![job(1, JobState::Queued, 30 * MIN)];
        let stuck = RepositoryStatus::new(&repo(false), &ok, &pull, waiting, &live, now, 10 * MIN);
        assert_eq!(stuck.summary.verdict(), Verdict::Stale);
        // Disabled mirrors need no node and are not counted.
        let off = [mirror(1, UpdateStatus::Failed, false)];
        let idle = RepositoryStatus::new(&repo(false), &off, &pull, vec![], &[], now, 10 * MIN);
        assert_eq!(idle.summary.verdict(), Verdict::Empty);
    }
}
