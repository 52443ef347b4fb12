//! The farm's wire types: Bitbucket's mirror-side shapes (seed 000), our own upstream-server
//! input, and what the edge and its nodes exchange about discovery.

use serde::{Deserialize, Serialize};

use super::{MirrorMode, UpstreamServer, UpstreamState, UpstreamType};
use crate::api::{FieldError, Fields, FromFields};
use crate::registry::Link;

/// `RestUpstreamServer`, with our `stateReason` when a listing failed.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct UpstreamServerDto {
    /// Its id (a UUID).
    pub id: String,
    /// Where people browse it.
    pub base_url: String,
    /// Where its REST API is.
    pub api_base_url: String,
    /// Whether a node could list it.
    pub state: UpstreamState,
    /// What kind of server it is.
    #[serde(rename = "type")]
    pub kind: UpstreamType,
    /// Why the latest listing failed (ours).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub state_reason: Option<String>,
    /// Whether it publishes its repositories' content hashes, so that one listing of them polls
    /// every farm repository (ours; absent until known).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub publishes_content_hashes: Option<bool>,
    /// The latest complete listing of its content hashes (ours; epoch ms).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hashes_listed_at: Option<i64>,
    /// The latest complete poll of its farm repositories' refs, one job for them all, when it
    /// publishes no content hashes (ours; epoch ms).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refs_listed_at: Option<i64>,
}

impl From<&UpstreamServer> for UpstreamServerDto {
    fn from(u: &UpstreamServer) -> Self {
        Self {
            id: u.id.clone(),
            base_url: u.base_url.clone(),
            api_base_url: u.api_base_url.clone(),
            state: u.state,
            kind: u.kind,
            state_reason: u.state_reason.clone(),
            publishes_content_hashes: u.publishes_hashes,
            hashes_listed_at: u.hashes_listed_at.map(|t| t.millis()),
            refs_listed_at: u.refs_listed_at.map(|t| t.millis()),
        }
    }
}

/// `POST /rest/mirrorfarm/1.0/upstreamServers`: an upstream server to mirror.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(schemars::JsonSchema), schemars(rename_all = "camelCase"))]
pub struct UpstreamServerParams {
    /// Where people browse it (required; http or https).
    pub base_url: Option<String>,
    /// Where its REST API is (default: `baseUrl`).
    pub api_base_url: Option<String>,
    /// `bitbucket`, `gitlab` or `gitea` (required).
    #[cfg_attr(feature = "openapi", schemars(rename = "type"))]
    pub kind: Option<String>,
    /// An access token the farm lists and clones with (sealed; never returned).
    pub token: Option<String>,
}

impl FromFields for UpstreamServerParams {
    fn from_fields(fields: &Fields) -> Result<Self, FieldError> {
        Ok(Self {
            base_url: fields.string("baseUrl")?,
            api_base_url: fields.string("apiBaseUrl")?,
            kind: fields.string("type")?,
            token: fields.string("token")?,
        })
    }
}

/// `RestUpstreamSettings`.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct UpstreamSettingsDto {
    /// The upstream's ids of the selected projects.
    pub project_ids: Vec<String>,
    /// All projects or the selected ones.
    pub mode: MirrorMode,
}

/// `PUT …/settings`: both fields optional (an absent one is kept).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(schemars::JsonSchema), schemars(rename_all = "camelCase"))]
pub struct UpstreamSettingsParams {
    /// `ALL_PROJECTS` or `SELECTED_PROJECTS`.
    pub mode: Option<String>,
    /// The upstream's project ids, replacing the selection.
    pub project_ids: Option<Vec<String>>,
}

impl FromFields for UpstreamSettingsParams {
    fn from_fields(fields: &Fields) -> Result<Self, FieldError> {
        Ok(Self { mode: fields.string("mode")?, project_ids: fields.string_list("projectIds")? })
    }
}

/// `RestSyncProgress`.
#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct SyncProgress {
    /// A discovery is queued or running: `totalRepos` may still grow.
    pub discovering: bool,
    /// Farm repositories synced at least once.
    pub synced_repos: u64,
    /// Farm repositories of the upstream.
    pub total_repos: u64,
}

/// The two hashes of a repository (see [`super::content_listing`], [`super::metadata_listing`]).
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(schemars::JsonSchema))]
pub struct RepositoryHashes {
    /// SHA-256 of its branches and tags.
    pub content: String,
    /// SHA-256 of its metadata.
    pub metadata: String,
}

/// `RestMirrorRepositorySynchronizationStatus`: one farm repository's sync record.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct RepoSyncStatus {
    /// The upstream server.
    pub upstream_id: String,
    /// The upstream's id of the repository.
    pub external_repo_id: String,
    /// Our id of it.
    pub local_repo_id: i64,
    /// Our id of its project.
    pub local_project_id: i64,
    /// Its slug.
    pub repo_slug: String,
    /// The first successful sync (epoch ms), if any.
    pub initial_sync_date: Option<i64>,
    /// The latest successful sync (epoch ms), if any.
    pub last_sync_date: Option<i64>,
    /// Consecutive failed syncs (a success resets it).
    pub failed_sync_count: u32,
    /// The hashes the copy had after its latest sync (64 zeros: never synced).
    pub hashes: RepositoryHashes,
}

/// `RestFarmSynchronizationRequest`: a waiting or running sync in the farm's queue.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct RefChange {
    /// The upstream's id of the repository.
    pub external_repo_id: String,
    /// Always `snapshot`: every sync compares the full ref state (nothing is replayed).
    #[serde(rename = "type")]
    pub kind: &'static str,
    /// The try it is on (from 1).
    pub attempt: u32,
    /// When it was queued (ISO 8601, as Bitbucket shows it).
    pub created_at: String,
}

/// `RestRefSyncQueue`.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(schemars::JsonSchema))]
pub struct RefSyncQueue {
    /// The queue's items, oldest first, capped.
    pub values: Vec<RefChange>,
}

/// `RestClusterNode`'s `address`.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct NodeAddress {
    /// Host name or address.
    pub address: String,
    /// The same, as the cluster resource's `hostName` spells it.
    pub host_name: String,
    /// Port (0: the node serves nothing).
    pub port: u16,
}

/// `RestClusterNode`: a farm node.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct ClusterNode {
    /// Its id.
    pub id: String,
    /// Its name.
    pub name: String,
    /// Where it serves clones.
    pub address: NodeAddress,
    /// Whether it answered this request (the edge answers, so never).
    pub local: bool,
    /// The node's version.
    pub build_version: String,
}

/// `links` of a mirrored repository, as both Jenkins plugins read them.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(schemars::JsonSchema))]
pub struct MirroredLinks {
    /// Clone URLs.
    pub clone: Vec<Link>,
    /// Push URLs (the upstream's).
    pub push: Vec<Link>,
    /// This resource.
    #[serde(rename = "self")]
    pub self_: Vec<Link>,
}

/// `RestMirroredRepository`: where a farm repository can be cloned, and whether it can.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct MirroredRepository {
    /// Whether it can be cloned here.
    pub available: bool,
    /// Its mirror status.
    pub status: super::MirroredStatus,
    /// The farm's name.
    pub mirror_name: String,
    /// The upstream's id of it.
    pub repository_id: String,
    /// The latest successful sync (epoch ms), if any.
    pub last_updated: Option<i64>,
    /// Clone URLs (the same as `links.clone`).
    pub clone_urls: Vec<Link>,
    /// Push URLs: pushes go to the upstream.
    pub push_urls: Vec<Link>,
    /// The same links, as Jenkins reads them.
    pub links: MirroredLinks,
}

/// One repository a node found on an upstream server.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct DiscoveredRepository {
    /// The upstream's id of its project (a string).
    pub project_id: String,
    /// Its project's key (Bitbucket), path (GitLab group) or name (Gitea organisation).
    pub project_key: String,
    /// Its project's name.
    pub project_name: String,
    /// The upstream's id of it (a string).
    pub repo_id: String,
    /// Its slug (or path).
    pub slug: String,
    /// Its name.
    pub name: String,
    /// Its description.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Whether anyone may read it upstream.
    #[serde(default)]
    pub public: bool,
    /// Its default branch, if the listing says.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_branch: Option<String>,
    /// Its HTTP clone URL upstream (without credentials).
    pub clone_url: String,
}

/// One repository's content hash as an upstream publishes it (`GET /rest/mirroring/…/repos`,
/// `properties.contentHash`), as a node reports a hash poll.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct ListedHash {
    /// The upstream's id of the repository (a string).
    pub repo_id: String,
    /// Its content hash (lower-case hex; all zeros, or absent upstream: never computed).
    pub content_hash: String,
}

impl ListedHash {
    /// Whether the hash can be compared: hex, at most 128 digits, for an id of at most 255
    /// bytes. Others are left out of the comparison (the repository is polled by its refs).
    pub fn is_well_formed(&self) -> bool {
        let hex = |c: u8| c.is_ascii_digit() || (b'a'..=b'f').contains(&c);
        !self.repo_id.is_empty()
            && self.repo_id.len() <= 255
            && !self.content_hash.is_empty()
            && self.content_hash.len() <= 128
            && self.content_hash.bytes().all(hex)
    }
}

/// One farm repository a ref poll lists: an upstream that publishes no content hashes is polled
/// by one job, whose node lists each repository's refs (`git ls-remote`) with its bounded
/// concurrency instead of leasing a pull per repository.
#[derive(Clone, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct RefPollTarget {
    /// The local repository.
    pub repository_id: i64,
    /// Its upstream URL, with credentials (only authenticated nodes receive this).
    pub url: String,
}

/// Debug shows no URL (it carries credentials).
impl std::fmt::Debug for RefPollTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RefPollTarget").field("repository_id", &self.repository_id).finish_non_exhaustive()
    }
}

/// What a node found listing one repository's refs upstream, as it reports a ref poll.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct PolledRefs {
    /// The local repository.
    pub repository_id: i64,
    /// SHA-256 of its upstream's ref listing (`sync::ref_listing`), as a pull reports it; absent
    /// when the listing failed (the repository is then pulled, which records why).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fingerprint: Option<String>,
}

/// The discovery part of a leased job: which server to list, how, and what is selected.
#[derive(Clone, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct LeasedDiscovery {
    /// The upstream server.
    pub upstream_id: String,
    /// What kind of server it is.
    #[serde(rename = "type")]
    pub kind: UpstreamType,
    /// Where its REST API is.
    pub api_base_url: String,
    /// Its access token, if any (only authenticated nodes receive this).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
    /// All projects or the selected ones.
    pub mode: MirrorMode,
    /// The selected projects' upstream ids.
    pub project_ids: Vec<String>,
}

impl LeasedDiscovery {
    /// The settings the listing follows.
    pub fn settings(&self) -> super::MirrorSettings {
        super::MirrorSettings { mode: self.mode, project_ids: self.project_ids.clone() }
    }
}

/// Debug shows no token.
impl std::fmt::Debug for LeasedDiscovery {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LeasedDiscovery")
            .field("upstream_id", &self.upstream_id)
            .field("kind", &self.kind)
            .field("api_base_url", &self.api_base_url)
            .finish_non_exhaustive()
    }
}
