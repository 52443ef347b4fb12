//! Farm nodes: the runners that lease jobs, move git data and report back.

use serde::{Deserialize, Serialize};

use crate::mirrors::UpdateOutcome;
use crate::time::Timestamp;

/// Prefix of node tokens (user tokens use `mfp_`), so a leaked one is recognisable.
pub const NODE_TOKEN_PREFIX: &str = "mfn_";

/// A node's contact is written at most this often (ms): it looks for work every few seconds, and
/// status only needs to know it was seen within minutes. Below the daemon's long-poll slice plus
/// this interval, a live node is never shown older than about 25 s.
pub const CONTACT_WRITE_INTERVAL_MS: i64 = 20_000;

/// A node seen within this window (ms) counts as live: its copies keep their repositories' pulls
/// and pushes (see the lease rules in the store). Several contact intervals, so a busy node whose
/// contact is written late is not taken for dead.
pub const LIVE_WINDOW_MS: i64 = 120_000;

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
    /// Where it serves read-only clones of its copies, if it does (`http://host:port`).
    pub clone_url: Option<String>,
    /// Its Mesh state: whether it leases work.
    pub state: crate::mesh::MeshNodeState,
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
#[cfg_attr(feature = "openapi", derive(schemars::JsonSchema))]
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
#[cfg_attr(feature = "openapi", derive(schemars::JsonSchema))]
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
    /// The repository concerned (every kind but discovery).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repository: Option<LeasedRepository>,
    /// The mirror to push, for push jobs.
    pub remote_mirror: Option<LeasedMirror>,
    /// The fork and its origin, for fork syncs (`repository` is then the fork).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fork: Option<LeasedFork>,
    /// The upstream server to list, for discoveries.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub discovery: Option<crate::farm::LeasedDiscovery>,
    /// For pulls: drop the copy and clone it afresh (a repair).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub recreate: bool,
    /// The mail to deliver, for mail jobs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mail: Option<crate::mail::LeasedMail>,
    /// The hook scripts to run around the job's ref updates (see [`crate::hooks`]).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub hooks: Vec<crate::hooks::LeasedHook>,
    /// The copy to fetch from another node, for Mesh moves (`repository` is the one moved).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mesh_move: Option<crate::mesh::migration::LeasedMove>,
    /// The support zip to build, for support-zip jobs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub support_zip: Option<crate::mesh::LeasedSupportZip>,
    /// The export or import to run, for migration jobs (see [`crate::migration::archive`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub migration: Option<crate::migration::archive::LeasedMigration>,
    /// For a poll of an upstream that publishes no content hashes: every farm repository whose
    /// refs the node lists upstream (see [`crate::farm::RefPollTarget`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ref_poll: Option<Vec<crate::farm::RefPollTarget>>,
}

/// The fork part of a leased fork sync: where the fork's refs live, the origin whose copy the
/// node syncs it to, and the manual action, if one was asked for.
#[derive(Clone, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct LeasedFork {
    /// The fork's own git location, with credentials.
    pub url: String,
    /// The origin (its upstream and pull rules refresh the node's copy first).
    pub origin: LeasedRepository,
    /// MERGE or DISCARD of one ref, after the sync.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub action: Option<crate::forks::ForkAction>,
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
#[cfg_attr(feature = "openapi", derive(schemars::JsonSchema))]
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
    /// The branch names and patterns its protected-only mirrors carry (GitLab's protected
    /// branches, or the default branch while none are set).
    #[serde(default)]
    pub protected_branches: Vec<String>,
}

/// How a node refreshes its copy from upstream.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(schemars::JsonSchema))]
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
#[cfg_attr(feature = "openapi", derive(schemars::JsonSchema))]
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
    /// For a mirror that authenticates with an SSH key: the key and the target's known hosts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ssh: Option<LeasedSsh>,
}

/// An SSH-key mirror's key and known hosts, as a node gets them with its push (never logged:
/// no `Debug`).
#[derive(Clone, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct LeasedSsh {
    /// The Ed25519 private key's 32-byte seed, hex.
    pub private_seed: String,
    /// The target's `known_hosts` lines; none yet: the node accepts the key the target offers on
    /// this first push and reports it (`learnedHostKey`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub known_hosts: Option<String>,
}

/// What a sync of one repository involves, as `GET …/repos/{id}/work` tells a node (for a dry
/// run): nothing is leased.
#[derive(Clone, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct RepositoryWork {
    /// The repository, its upstream and pull rules.
    pub repository: LeasedRepository,
    /// Whether its copy follows the upstream (an enabled pull mirror).
    pub pull_enabled: bool,
    /// Its enabled push mirrors.
    pub mirrors: Vec<LeasedMirror>,
}

/// The answer to registering a node: the node and its token, shown this once.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct RegisteredNode {
    /// The node.
    #[serde(flatten)]
    pub node: NodeDto,
    /// Its `mfn_` token.
    pub token: String,
}

/// The answer to a result: the job and its mirror's update status now.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct ResultRecorded {
    /// The job.
    pub job: crate::queue::Job,
    /// The mirror's update status, if the mirror still exists.
    pub update_status: Option<crate::mirrors::UpdateStatus>,
    /// Repositories the edge has just removed (a discovery found them gone or unselected): the
    /// node deletes its copies of them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub removed_repositories: Vec<i64>,
    /// The node's next job, leased at once, when the report asked for one (`next`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next: Option<LeasedJob>,
}

/// What `POST …/nodes` sends to register a node.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(schemars::JsonSchema))]
pub struct NodeParams {
    /// The node's name (required, unique, at most 128 characters).
    pub name: Option<String>,
}

impl crate::api::FromFields for NodeParams {
    fn from_fields(fields: &crate::api::Fields) -> Result<Self, crate::api::FieldError> {
        Ok(Self { name: fields.string("name")? })
    }
}

/// `POST …/jobs/lease`: what a node asks for.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct LeaseRequest {
    /// How long the lease should last (clamped to the queue's bounds); the default if absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lease_seconds: Option<u64>,
    /// Only jobs of this repository (`sync <repo>` on a node).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repository_id: Option<i64>,
    /// Wait up to this long for a job to become due (long poll; capped at 25 s); at once if absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wait_seconds: Option<u64>,
}

/// `POST …/nodes/heartbeat`: a node is alive, and where it serves clones.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct HeartbeatRequest {
    /// The base URL of the node's clone server (`http://host:port`), if it serves clones.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub clone_url: Option<String>,
    /// Where the node serves read-only git over SSH (`ssh://git@host:port`), if it does.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ssh_url: Option<String>,
    /// What the node measured of its links since its last heartbeat: the edge (this heartbeat's
    /// predecessor's round trip) and the peers the last answer named.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub links: Vec<crate::mesh::LinkProbe>,
}

/// The answer to a heartbeat: the node, and the log filter nodes are to use (the levels an
/// administrator set for `mirrorfarm.node[.<module>]` and the root, in `tracing`'s syntax).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct HeartbeatAnswer {
    /// The node.
    #[serde(flatten)]
    pub node: NodeDto,
    /// The log filter (`info,mirrorfarm_runner=debug`).
    pub log_filter: String,
    /// The other nodes that serve clones, for the node to measure its round trip to.
    #[serde(default)]
    pub peers: Vec<crate::mesh::Peer>,
    /// The control plane's Ed25519 public key (hex): what the edge signs (fetch grants,
    /// clone-access answers) verifies against it. None where the edge cannot sign.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub control_plane_key: Option<String>,
}

/// `POST …/nodes/clone-access`: may the caller whose `Authorization` a node forwards clone
/// this repository from it?
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct CloneAccessRequest {
    /// The repository's project key.
    pub project_key: String,
    /// Its slug.
    pub slug: String,
    /// The caller's `Authorization` header, as sent to the node (none: anonymous).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub authorization: Option<String>,
    /// For a clone over SSH: the public key the caller authenticated with (`<type> <base64>`),
    /// instead of an `Authorization` header. The key's owner is the caller.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ssh_key: Option<String>,
}

impl CloneAccessRequest {
    /// What identifies the caller in a signed clone-access answer (hashed, see
    /// [`crate::mesh::grant::clone_access_bytes`]): the `Authorization` header, or `ssh:` and the
    /// key for a clone over SSH.
    pub fn caller_text(&self) -> String {
        match &self.ssh_key {
            Some(key) => format!("ssh:{key}"),
            None => self.authorization.clone().unwrap_or_default(),
        }
    }
}

/// The answer to a clone-access check: the repository whose copy the node serves.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct CloneAccess {
    /// The repository's id (its copy is `repos/<id>.git` on the node).
    pub repository_id: i64,
    /// The control plane's signature (hex) of [`crate::mesh::grant::clone_access_bytes`] for this
    /// node, repository and caller, where the edge can sign.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signature: Option<String>,
}

/// `POST …/nodes/copies`: the repositories a node holds copies of. The answer names those that
/// no longer exist, whose copies the node deletes (a repository removed while the node was away,
/// or by another node's discovery, or with its upstream server).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct HeldCopies {
    /// Repository ids (at most [`HELD_COPIES_PER_CALL`]).
    pub repository_ids: Vec<i64>,
}

/// Most repository ids one [`HeldCopies`] call names: well inside the body limit even with long
/// ids; a node with more copies asks in several calls.
pub const HELD_COPIES_PER_CALL: usize = 5_000;

/// The answer to [`HeldCopies`]: the copies to delete.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct CopiesGone {
    /// Repositories that no longer exist.
    pub removed_repositories: Vec<i64>,
}

/// How long a node may trust a clone-access answer (ms): a revoked grant stops working within it.
pub const CLONE_ACCESS_TTL_MS: u64 = 30_000;

/// `POST …/jobs/{id}/renew`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct RenewRequest {
    /// The lease to extend.
    pub lease_id: String,
    /// The new length from now (clamped); the default if absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lease_seconds: Option<u64>,
}

/// The answer to a renewal.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct LeaseRenewed {
    /// The lease's new deadline (epoch ms).
    pub lease_deadline: i64,
}

/// `POST …/jobs/{id}/release`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct ReleaseRequest {
    /// The lease to give back.
    pub lease_id: String,
}

/// The answer to `POST …/repos/{id}/sync`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct SyncQueued {
    /// The repository.
    pub repository_id: i64,
    /// How many of its jobs now wait.
    pub queued: u64,
}

/// How a try ended, as a node reports it.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(schemars::JsonSchema))]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    /// The target now has what was sent (or the copy was refreshed).
    Pushed,
    /// Refs were held back because they diverged (the message lists them).
    Diverged,
    /// The try failed (the message says why, scrubbed).
    Error,
    /// A poll found the upstream unchanged: nothing was done.
    Unchanged,
    /// A fork's MERGE conflicted (the message names the paths), or the action no longer applies
    /// (the ref moved meanwhile); nothing was pushed for it.
    Conflict,
}

impl Outcome {
    /// The name stored with the job.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pushed => "pushed",
            Self::Diverged => "diverged",
            Self::Error => "error",
            Self::Unchanged => "unchanged",
            Self::Conflict => "conflict",
        }
    }
}

/// One ref a fork sync left out of step, as a node reports it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct ForkRefState {
    /// The full ref name.
    pub id: String,
    /// Why it is out of step.
    pub state: crate::forks::RefSyncState,
}

/// A node's report of one try, as sent to `POST …/jobs/{id}/result`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct JobReport {
    /// The lease the try ran under.
    pub lease_id: String,
    /// How it ended.
    pub outcome: Outcome,
    /// Error or divergence text (scrubbed by the node and again by the edge).
    #[serde(default)]
    pub message: String,
    /// For pulls: SHA-256 of the upstream's ref listing (`sync::ref_listing`) just pulled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fingerprint: Option<String>,
    /// For fork syncs that completed: every ref left out of step with the origin.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fork_refs: Option<Vec<ForkRefState>>,
    /// For pulls: the copy's content hash after the pull (see [`crate::farm::content_listing`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_hash: Option<String>,
    /// For discoveries that listed the upstream completely: every repository found (of the
    /// selected projects).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub discovered: Option<Vec<crate::farm::DiscoveredRepository>>,
    /// For hash polls that listed the upstream completely: every repository's published content
    /// hash.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_hashes: Option<Vec<crate::farm::ListedHash>>,
    /// For hash polls: the upstream does not publish content hashes (its listing answered 404),
    /// so its repositories are polled by their refs from now on.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub hashes_unpublished: bool,
    /// For ref polls that listed every repository leased: each one's refs fingerprint upstream.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub polled_refs: Option<Vec<crate::farm::PolledRefs>>,
    /// For an SSH-key mirror's first push: the target's host key the node accepted, as a
    /// `known_hosts` line, for the edge to keep.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub learned_host_key: Option<String>,
    /// Lease the node's next due job now, as `…/jobs/lease` would without waiting, and answer it
    /// with the result: one request per job instead of two.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next: Option<LeaseRequest>,
}

impl JobReport {
    /// The report of `outcome` under `lease_id` (`message` is the caller's to scrub).
    pub fn new(lease_id: &str, outcome: &UpdateOutcome, fingerprint: Option<String>) -> Self {
        let (outcome, message) = match outcome {
            UpdateOutcome::Pushed => (Outcome::Pushed, String::new()),
            UpdateOutcome::Diverged(m) => (Outcome::Diverged, m.clone()),
            UpdateOutcome::Error(m) => (Outcome::Error, m.clone()),
            UpdateOutcome::Unchanged => (Outcome::Unchanged, String::new()),
        };
        Self {
            lease_id: lease_id.to_owned(),
            outcome,
            message,
            fingerprint,
            fork_refs: None,
            content_hash: None,
            discovered: None,
            content_hashes: None,
            hashes_unpublished: false,
            polled_refs: None,
            learned_host_key: None,
            next: None,
        }
    }

    /// What the report means for the mirror's update state.
    pub fn update_outcome(&self) -> UpdateOutcome {
        match self.outcome {
            Outcome::Pushed => UpdateOutcome::Pushed,
            Outcome::Diverged => UpdateOutcome::Diverged(self.message.clone()),
            Outcome::Error => UpdateOutcome::Error(self.message.clone()),
            // Held back, as diverged refs are: trying again would conflict again.
            Outcome::Conflict => UpdateOutcome::Diverged(self.message.clone()),
            Outcome::Unchanged => UpdateOutcome::Unchanged,
        }
    }
}
