//! The mirror farm (Bitbucket Smart Mirroring's farm side): upstream servers whose projects the
//! farm mirrors, which of their projects it holds, what discovery found on them, and the hashes
//! that prove a farm copy equals its upstream.
//!
//! A farm repository is an ordinary repository with a pull from its upstream's clone URL; this
//! module adds where it came from. Discovery runs on farm nodes (they reach the upstream); what
//! the farm then holds is decided here ([`plan_discovery`]), once, for the edge to write.

mod hashes;
mod metrics;
mod wire;

pub use hashes::{Metadata, ZERO_HASH, content_listing, metadata_listing};
pub use metrics::{FarmMetrics, metrics_text};
pub use wire::*;

use crate::time::Timestamp;

/// The kind of server a farm mirrors, by the REST API its projects are listed with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[cfg_attr(feature = "openapi", derive(schemars::JsonSchema))]
#[serde(rename_all = "lowercase")]
pub enum UpstreamType {
    /// Bitbucket Data Center (`/rest/api/latest/projects`, `…/projects/{key}/repos`), and
    /// mirrorfarm itself.
    Bitbucket,
    /// GitLab (`/api/v4/groups`, `…/groups/{id}/projects`).
    Gitlab,
    /// Gitea and Forgejo (`/api/v1/orgs`, `…/orgs/{name}/repos`).
    Gitea,
}

/// Whether the farm could list an upstream server, as Bitbucket's `RestUpstreamServer.state`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[cfg_attr(feature = "openapi", derive(schemars::JsonSchema))]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum UpstreamState {
    /// Added; no node has listed it yet.
    Initializing,
    /// A node listed it with its credentials.
    Installed,
    /// The latest listing failed (`stateReason` says why).
    Unknown,
}

/// Which of an upstream's projects the farm mirrors.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[cfg_attr(feature = "openapi", derive(schemars::JsonSchema))]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum MirrorMode {
    /// Every project, including those created later.
    AllProjects,
    /// Only the projects listed in the settings.
    SelectedProjects,
}

crate::wire_names!(UpstreamType { Bitbucket = "bitbucket", Gitlab = "gitlab", Gitea = "gitea" });
crate::wire_names!(UpstreamState { Initializing = "INITIALIZING", Installed = "INSTALLED", Unknown = "UNKNOWN" });
crate::wire_names!(MirrorMode { AllProjects = "ALL_PROJECTS", SelectedProjects = "SELECTED_PROJECTS" });

/// How often discovery runs again by itself (ms), to see repositories created or deleted upstream.
pub const DISCOVERY_INTERVAL_MS: i64 = 600_000;

/// Most ref-change queue items `…/supportInfo/refChangesQueue` shows (Bitbucket caps its dump
/// by `plugin.mirroring.farm.max.ref.change.queue.dump.size`).
pub const REF_CHANGES_DUMP_LIMIT: i64 = 100;

/// An upstream server the farm mirrors.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpstreamServer {
    /// Its id (a UUID).
    pub id: String,
    /// What kind of server it is.
    pub kind: UpstreamType,
    /// Where people browse it.
    pub base_url: String,
    /// Where its REST API is (usually `base_url`).
    pub api_base_url: String,
    /// Its access token, sealed; never returned.
    pub token_sealed: Option<String>,
    /// Whether a node could list it.
    pub state: UpstreamState,
    /// Why the latest listing failed (scrubbed).
    pub state_reason: Option<String>,
    /// Which projects are mirrored…
    pub settings: MirrorSettings,
    /// The latest completed listing.
    pub last_discovery: Option<Timestamp>,
    /// Whether it publishes its repositories' content hashes (`GET /rest/mirroring/…/repos`):
    /// `None` until a listing of them succeeds or is refused. Polls use them while it may.
    pub publishes_hashes: Option<bool>,
    /// The latest complete listing of its content hashes.
    pub hashes_listed_at: Option<Timestamp>,
    /// The latest complete listing of its farm repositories' refs (when it publishes no hashes).
    pub refs_listed_at: Option<Timestamp>,
    /// When it was added.
    pub created_at: Timestamp,
}

/// Which of an upstream's projects the farm holds: the mode, and the projects selected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MirrorSettings {
    /// All projects or the selected ones.
    pub mode: MirrorMode,
    /// The upstream's ids of the selected projects (strings, sorted, distinct); kept, but not
    /// used, in ALL_PROJECTS mode.
    pub project_ids: Vec<String>,
}

impl MirrorSettings {
    /// Whether the farm holds the repositories of the upstream project `project_id`.
    pub fn selects(&self, project_id: &str) -> bool {
        self.mode == MirrorMode::AllProjects || self.project_ids.iter().any(|p| p == project_id)
    }
}

/// A repository the farm holds for an upstream, as discovery compares it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FarmEntry {
    /// The local repository.
    pub repository_id: i64,
    /// The upstream's id of it.
    pub external_repo_id: String,
}

/// What a completed discovery changes: the repositories to add, those kept (their metadata is
/// refreshed from the listing), and the local repositories to remove.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DiscoveryPlan<'a> {
    /// Listed, selected and not yet held.
    pub add: Vec<&'a DiscoveredRepository>,
    /// Listed, selected and held.
    pub keep: Vec<&'a DiscoveredRepository>,
    /// Held, but no longer listed or no longer selected: removed from the farm.
    pub remove: Vec<i64>,
}

/// Decides what a complete listing of an upstream means for the farm: repositories of selected
/// projects are held (added if new), every other farm repository of that upstream is removed.
/// A repository listed twice counts once.
pub fn plan_discovery<'a>(
    settings: &MirrorSettings,
    held: &[FarmEntry],
    listed: &'a [DiscoveredRepository],
) -> DiscoveryPlan<'a> {
    let mut plan = DiscoveryPlan::default();
    let mut seen = std::collections::BTreeSet::new();
    for repo in listed {
        if !settings.selects(&repo.project_id) || !seen.insert(repo.repo_id.as_str()) {
            continue;
        }
        if held.iter().any(|h| h.external_repo_id == repo.repo_id) {
            plan.keep.push(repo);
        } else {
            plan.add.push(repo);
        }
    }
    plan.remove =
        held.iter().filter(|h| !seen.contains(h.external_repo_id.as_str())).map(|h| h.repository_id).collect();
    plan
}

/// A mirrored repository's status, as `RestMirroredRepository.status` names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[cfg_attr(feature = "openapi", derive(schemars::JsonSchema))]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum MirroredStatus {
    /// Not held here (its project is not selected, or it was removed).
    NotMirrored,
    /// The first sync has not completed yet.
    Initializing,
    /// Synced, and the latest sync succeeded.
    Available,
    /// The first sync failed: nothing to clone.
    ErrorInitializing,
    /// The latest sync failed: stale, but cloneable.
    ErrorAvailable,
}

crate::wire_names!(MirroredStatus {
    NotMirrored = "NOT_MIRRORED",
    Initializing = "INITIALIZING",
    Available = "AVAILABLE",
    ErrorInitializing = "ERROR_INITIALIZING",
    ErrorAvailable = "ERROR_AVAILABLE",
});

impl MirroredStatus {
    /// The status of a farm repository from its sync record.
    pub fn of(initial_sync: Option<Timestamp>, failed_sync_count: u32) -> Self {
        match (initial_sync.is_some(), failed_sync_count > 0) {
            (false, false) => Self::Initializing,
            (false, true) => Self::ErrorInitializing,
            (true, false) => Self::Available,
            (true, true) => Self::ErrorAvailable,
        }
    }

    /// Whether a copy can be cloned.
    pub fn available(self) -> bool {
        matches!(self, Self::Available | Self::ErrorAvailable)
    }
}

/// The git credentials a clone URL of this kind of upstream carries for an access token: the
/// user name each host expects beside a token (Bitbucket's `x-token-auth`, GitLab's and Gitea's
/// `oauth2`).
pub fn token_userinfo(kind: UpstreamType, token: &str) -> String {
    let user = match kind {
        UpstreamType::Bitbucket => "x-token-auth",
        UpstreamType::Gitlab | UpstreamType::Gitea => "oauth2",
    };
    format!("{user}:{}", crate::api::encode(token))
}

#[cfg(test)]
mod tests {
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    use super::*;

    fn listed(project: &str, id: &str) -> DiscoveredRepository {
        DiscoveredRepository {
            project_id: project.into(),
            project_key: format!("P{project}"),
            project_name: format!("Project {project}"),
            repo_id: id.into(),
            slug: format!("r{id}"),
            name: format!("R {id}"),
            description: None,
            public: false,
            default_branch: None,
            clone_url: format!("https://git.example/p{project}/r{id}.git"),
        }
    }

    #[test]
    fn selected_projects_are_held_and_the_rest_removed() {
        let settings = MirrorSettings { mode: MirrorMode::SelectedProjects, project_ids: vec!["1".into()] };
        let listing = [listed("1", "10"), listed("1", "11"), listed("2", "20"), listed("1", "10")];
        let held = [
            FarmEntry { repository_id: 100, external_repo_id: "10".into() },
            FarmEntry { repository_id: 200, external_repo_id: "20".into() },
            FarmEntry { repository_id: 300, external_repo_id: "30".into() },
        ];
        let plan = plan_discovery(&settings, &held, &listing);
        let ids = |v: &[&DiscoveredRepository]| v.iter().map(|r| r.repo_id.clone()).collect::<Vec<_>>();
        assert_eq!(ids(&plan.add), ["11"]);
        assert_eq!(ids(&plan.keep), ["10"], "listed twice, kept once");
        assert_eq!(plan.remove, [200, 300], "unselected project and deleted upstream");
    }

    #[test]
    fn all_projects_holds_every_listed_repository() {
        let settings = MirrorSettings { mode: MirrorMode::AllProjects, project_ids: vec!["1".into()] };
        let listing = [listed("1", "10"), listed("7", "70")];
        let plan = plan_discovery(&settings, &[], &listing);
        assert_eq!(plan.add.len(), 2);
        assert!(plan.remove.is_empty());
    }

    #[test]
    fn status_follows_the_sync_record() {
        assert_eq!(MirroredStatus::of(None, 0), MirroredStatus::Initializing);
        assert_eq!(MirroredStatus::of(None, 2), MirroredStatus::ErrorInitializing);
        assert_eq!(MirroredStatus::of(Some(Timestamp(1)), 0), MirroredStatus::Available);
        assert!(MirroredStatus::of(Some(Timestamp(1)), 1).available());
        assert!(!MirroredStatus::ErrorInitializing.available());
    }

    #[test]
    fn names_read_in_any_case() {
        assert_eq!(MirrorMode::parse("selected_projects"), Some(MirrorMode::SelectedProjects));
        assert_eq!(UpstreamType::parse("GitLab"), Some(UpstreamType::Gitlab));
        assert_eq!(MirrorMode::parse("SOME"), None);
        assert_eq!(token_userinfo(UpstreamType::Bitbucket, "a/b"), "x-token-auth:a%2Fb");
    }
}
