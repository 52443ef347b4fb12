//! Farm nodes: the runners that lease jobs, move git data and report back.

use serde::{Deserialize, Serialize};

use crate::time::Timestamp;

/// Prefix of node tokens (user tokens use `mfp_`), so a leaked one is recognisable.
pub const NODE_TOKEN_PREFIX: &str = "mfn_";

/// A node's contact is written at most this often (ms): it polls for work every few seconds,
/// and status only needs to know it was seen within minutes.
pub const CONTACT_WRITE_INTERVAL_MS: i64 = 30_000;

/// A registered farm node. Its token is kept only as a hash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FarmNode {
    /// Id.
    pub id: i64,
    /// Name, unique.
    pub name: String,
    /// Non-secret lookup key (the token's first characters).
    pub lookup: String,
    /// SHA-256 of the token, hex.
    pub hash: String,
    /// Registration time.
    pub created_at: Timestamp,
    /// Last heartbeat or lease.
    pub last_seen: Option<Timestamp>,
}

/// A node to register.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewNode {
    /// Name.
    pub name: String,
    /// Lookup key.
    pub lookup: String,
    /// Token hash.
    pub hash: String,
    /// Registration time.
    pub created_at: Timestamp,
}

/// A node as clients see it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct NodeDto {
    /// Id.
    pub id: i64,
    /// Name.
    pub name: String,
    /// Registration time (epoch ms).
    pub created_date: i64,
    /// Last contact (epoch ms), if any.
    pub last_seen: Option<i64>,
}

impl From<&FarmNode> for NodeDto {
    fn from(n: &FarmNode) -> Self {
        Self {
            id: n.id,
            name: n.name.clone(),
            created_date: n.created_at.millis(),
            last_seen: n.last_seen.map(Timestamp::millis),
        }
    }
}

/// A leased job as the edge hands it to a node: everything the node needs, credentials included
/// (only authenticated nodes ever receive this).
#[derive(Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct LeasedJob {
    /// Job id.
    pub id: i64,
    /// The lease's id: needed to renew, release or report.
    pub lease_id: String,
    /// When the lease runs out unless renewed (epoch ms).
    pub lease_deadline: i64,
    /// Which try this is (1-based).
    pub attempt: u32,
    /// Why it was queued (a poll may skip work if the upstream is unchanged).
    pub reason: crate::queue::JobReason,
    /// What to do.
    pub kind: crate::queue::JobKind,
    /// The repository concerned.
    pub repository: LeasedRepository,
    /// The mirror to push, for push jobs.
    pub remote_mirror: Option<LeasedMirror>,
}

/// Debug shows no URLs (they carry credentials).
impl std::fmt::Debug for LeasedJob {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LeasedJob")
            .field("id", &self.id)
            .field("attempt", &self.attempt)
            .field("kind", &self.kind)
            .finish_non_exhaustive()
    }
}

/// The repository part of a leased job.
#[derive(Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct LeasedRepository {
    /// Id.
    pub id: i64,
    /// Project key.
    pub project_key: String,
    /// Slug.
    pub slug: String,
    /// Default branch.
    pub default_branch: String,
    /// Where the content comes from, with credentials.
    pub upstream_url: Option<String>,
    /// How the copy follows upstream (its pull-mirror settings).
    pub pull: LeasedPull,
    /// The upstream's fingerprint at the last pull, for polls to compare with.
    pub upstream_fingerprint: Option<String>,
}

/// How a node refreshes its copy from upstream.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct LeasedPull {
    /// Overwrite branches upstream rewrote, and follow deletions.
    pub overwrite_diverged_branches: bool,
    /// Protected branches only.
    pub only_protected_branches: bool,
    /// Branch regex.
    pub mirror_branch_regex: Option<String>,
}

/// The mirror part of a leased job.
#[derive(Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct LeasedMirror {
    /// Id.
    pub id: i64,
    /// Where to push, with credentials.
    pub url: String,
    /// Keep diverged refs.
    pub keep_divergent_refs: bool,
    /// Protected branches only.
    pub only_protected_branches: bool,
    /// Branch regex.
    pub mirror_branch_regex: Option<String>,
}

/// What a sync of one repository involves, as `GET …/repos/{id}/work` tells a node (for a dry
/// run): nothing is leased.
#[derive(Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct RepositoryWork {
    /// The repository, its upstream and pull rules.
    pub repository: LeasedRepository,
    /// Whether its copy follows the upstream (an enabled pull mirror).
    pub pull_enabled: bool,
    /// Its enabled push mirrors.
    pub mirrors: Vec<LeasedMirror>,
}

/// A node's report of one try, as sent to `POST …/jobs/{id}/result`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct JobReport {
    /// The lease the try ran under.
    pub lease_id: String,
    /// `pushed`, `diverged`, `error` or `unchanged`.
    pub outcome: String,
    /// Error or divergence text (scrubbed by the node and again by the edge).
    pub message: String,
    /// For pulls: SHA-256 of the upstream's ref listing (`sync::ref_listing`) just pulled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fingerprint: Option<String>,
}
