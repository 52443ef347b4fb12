//! Exports and imports: which repositories a request selects, where archives live in R2, what
//! an archive's manifest holds, and what a farm node is handed and reports.
//!
//! ## The archive
//!
//! One uncompressed POSIX tar object in R2 (git bundles are already compressed):
//!
//! - `manifest.json` first: a [`Manifest`] — projects (with their grants), repositories (with
//!   labels, grants, pull-mirror settings, fork origin and fork-sync settings), never a
//!   credential;
//! - then `repositories/<n>.bundle`, one `git bundle` (heads and tags) per repository that has
//!   content, `<n>` its index in the manifest.
//!
//! Tar because it streams both ways (written once, read once, no central directory to seek to),
//! every platform reads it, and it is what Bitbucket's own exports are.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{MigrationState, NewMessage};

/// The manifest's `format`: readers refuse others.
pub const FORMAT: &str = "mirrorfarm-migration/1";

/// Where exports are written in R2 (Bitbucket's `shared/data/migration/export`).
pub const EXPORT_PREFIX: &str = "migration/export/";
/// Where imports are read from in R2 (Bitbucket's `shared/data/migration/import`).
pub const IMPORT_PREFIX: &str = "migration/import/";
/// The manifest's name in the archive.
pub const MANIFEST_NAME: &str = "manifest.json";
/// Exports running at once, at most (Bitbucket: 2 per cluster node; we count the cluster).
pub const MAX_EXPORTS: u32 = 2;
/// Imports running at once, at most (Bitbucket: 1 per cluster).
pub const MAX_IMPORTS: u32 = 1;
/// The largest archive a node may upload: R2's limit for one object written in one request.
pub const MAX_ARCHIVE_BYTES: u64 = 5 * 1024 * 1024 * 1024 - 1;

/// Why an export or import request, or a node's report, was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ArchiveError {
    /// `repositoriesRequest` is missing or not an object.
    #[error("repositoriesRequest is required: {{\"includes\": [{{\"projectKey\", \"slug\"}}], \"excludes\": […]}}.")]
    Request,
    /// No selector in `includes`.
    #[error("repositoriesRequest.includes must select at least one repository.")]
    NoIncludes,
    /// A selector that is not `{projectKey, slug}` of non-empty strings.
    #[error("Each selector is {{\"projectKey\": …, \"slug\": …}} (either may be *).")]
    Selector,
    /// A selector with a wildcard project but a named repository (`*/repo`).
    #[error("A selector with projectKey * must have slug * too.")]
    WildcardProject,
    /// `exportLocation` leaves the export directory, or has characters a path should not.
    #[error("exportLocation must be a relative path inside the export directory (letters, digits, . _ - /).")]
    ExportLocation,
    /// `archivePath` is missing, leaves the import directory, or names nothing.
    #[error("archivePath must name an archive inside the import directory.")]
    ArchivePath,
    /// `scopes` of a preview is not an array of strings.
    #[error("scopes must be an array of strings.")]
    Scopes,
    /// The manifest is not one this version reads.
    #[error("The archive's manifest is not a {FORMAT} manifest: {0}")]
    Manifest(String),
}

impl ArchiveError {
    /// The request field the error is about (the error's `context`).
    pub fn field(&self) -> &'static str {
        match self {
            Self::Request | Self::NoIncludes | Self::Selector | Self::WildcardProject => "repositoriesRequest",
            Self::ExportLocation => "exportLocation",
            Self::ArchivePath => "archivePath",
            Self::Scopes => "scopes",
            Self::Manifest(_) => "manifest",
        }
    }
}

/// One selector: a project key and a repository slug, each a name or `*`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct Selector {
    /// A project key, or `*` for every project.
    pub project_key: String,
    /// A repository slug, or `*` for every repository of the project.
    pub slug: String,
}

impl Selector {
    /// Whether the repository `key/slug` is selected (names compare case-insensitively).
    pub fn matches(&self, key: &str, slug: &str) -> bool {
        let part = |pattern: &str, name: &str| pattern == "*" || pattern.eq_ignore_ascii_case(name);
        part(&self.project_key, key) && part(&self.slug, slug)
    }
}

/// `repositoriesRequest`: what is included, minus what is excluded.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(schemars::JsonSchema))]
pub struct RepositoriesRequest {
    /// Selectors of repositories to export.
    pub includes: Vec<Selector>,
    /// Selectors of repositories to leave out of those.
    #[serde(default)]
    pub excludes: Vec<Selector>,
}

impl RepositoriesRequest {
    /// Whether the repository `key/slug` is selected.
    pub fn selects(&self, key: &str, slug: &str) -> bool {
        self.includes.iter().any(|s| s.matches(key, slug)) && !self.excludes.iter().any(|s| s.matches(key, slug))
    }
}

/// `POST …/migration/exports` (and its preview), checked.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct ExportRequest {
    /// A directory under the export directory to write the archive in.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub export_location: Option<String>,
    /// The repositories.
    pub repositories_request: RepositoriesRequest,
}

fn selectors(value: Option<&Value>) -> Result<Vec<Selector>, ArchiveError> {
    let items = match value {
        None | Some(Value::Null) => return Ok(Vec::new()),
        Some(Value::Array(items)) => items,
        Some(_) => return Err(ArchiveError::Selector),
    };
    items
        .iter()
        .map(|item| {
            let text = |name: &str| {
                item.get(name).and_then(Value::as_str).map(str::trim).filter(|s| !s.is_empty()).map(str::to_owned)
            };
            let (Some(project_key), Some(slug)) = (text("projectKey"), text("slug")) else {
                return Err(ArchiveError::Selector);
            };
            if project_key == "*" && slug != "*" {
                return Err(ArchiveError::WildcardProject);
            }
            Ok(Selector { project_key, slug })
        })
        .collect()
}

/// Reads `exportLocation`: a relative path of plain segments (no `..`, no empty segment).
pub fn export_location(text: &str) -> Result<String, ArchiveError> {
    let trimmed = text.trim().trim_end_matches('/');
    let ok = !trimmed.starts_with('/')
        && trimmed.len() <= 200
        && trimmed.split('/').all(|seg| {
            !seg.is_empty()
                && seg != "."
                && seg != ".."
                && seg.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
        });
    if ok { Ok(trimmed.to_owned()) } else { Err(ArchiveError::ExportLocation) }
}

impl ExportRequest {
    /// Reads a request body (a JSON object).
    pub fn from_json(map: &serde_json::Map<String, Value>) -> Result<Self, ArchiveError> {
        let export_location = match map.get("exportLocation") {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) if s.trim().is_empty() => None,
            Some(Value::String(s)) => Some(export_location(s)?),
            Some(_) => return Err(ArchiveError::ExportLocation),
        };
        let Some(Value::Object(request)) = map.get("repositoriesRequest") else {
            return Err(ArchiveError::Request);
        };
        let includes = selectors(request.get("includes"))?;
        if includes.is_empty() {
            return Err(ArchiveError::NoIncludes);
        }
        let excludes = selectors(request.get("excludes"))?;
        Ok(Self { export_location, repositories_request: RepositoriesRequest { includes, excludes } })
    }
}

/// The R2 key export job `job_id` writes its archive to.
pub fn export_key(job_id: i64, location: Option<&str>) -> String {
    match location {
        Some(dir) => format!("{EXPORT_PREFIX}{dir}/Bitbucket_export_{job_id}.tar"),
        None => format!("{EXPORT_PREFIX}Bitbucket_export_{job_id}.tar"),
    }
}

/// The R2 key an import's `archivePath` names: a path relative to the import directory
/// (Bitbucket's rule), or a key already under the import or export directory (an archive this
/// instance exported). Nothing outside those two directories is read.
pub fn import_key(archive_path: &str) -> Result<String, ArchiveError> {
    let path = archive_path.trim();
    let relative = if let Some(rest) = path.strip_prefix(EXPORT_PREFIX) {
        (EXPORT_PREFIX, rest)
    } else if let Some(rest) = path.strip_prefix(IMPORT_PREFIX) {
        (IMPORT_PREFIX, rest)
    } else {
        (IMPORT_PREFIX, path)
    };
    let rest = relative.1;
    let ok = !rest.is_empty()
        && rest.len() <= 400
        && rest.split('/').all(|seg| !seg.is_empty() && seg != "." && seg != ".." && !seg.contains('\\'))
        && !rest.chars().any(char::is_control);
    if ok { Ok(format!("{}{rest}", relative.0)) } else { Err(ArchiveError::ArchivePath) }
}

/// A user's grant as the manifest carries it: by user name (ids differ between instances).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(schemars::JsonSchema))]
pub struct ManifestGrant {
    /// The user's name.
    pub user: String,
    /// READ, WRITE or ADMIN (as [`crate::identity::Level`] names them).
    pub level: String,
}

/// A project in the manifest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct ManifestProject {
    /// Key.
    pub key: String,
    /// Name.
    pub name: String,
    /// Description.
    #[serde(default)]
    pub description: Option<String>,
    /// Whether anyone may read it.
    #[serde(default)]
    pub public: bool,
    /// Users' project permissions.
    #[serde(default)]
    pub grants: Vec<ManifestGrant>,
}

/// A repository's pull-mirror settings in the manifest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct ManifestPull {
    /// Whether pulls run.
    pub enabled: bool,
    /// Only protected branches are mirrored.
    pub only_protected_branches: bool,
    /// Diverged branches are overwritten.
    pub overwrite_diverged_branches: bool,
    /// Only branches matching this are mirrored.
    #[serde(default)]
    pub mirror_branch_regex: Option<String>,
}

/// A fork's origin and sync settings in the manifest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct ManifestFork {
    /// The origin's project key.
    pub origin_project_key: String,
    /// The origin's slug.
    pub origin_slug: String,
    /// The fork's own git location, without credentials.
    #[serde(default)]
    pub url: Option<String>,
    /// Whether fork sync is on.
    #[serde(default)]
    pub sync_enabled: bool,
}

/// A repository in the manifest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct ManifestRepository {
    /// Its project's key.
    pub project_key: String,
    /// Slug.
    pub slug: String,
    /// Name.
    pub name: String,
    /// Description.
    #[serde(default)]
    pub description: Option<String>,
    /// Default branch.
    pub default_branch: String,
    /// Whether anyone may read it.
    #[serde(default)]
    pub public: bool,
    /// Whether it may be forked.
    #[serde(default = "yes")]
    pub forkable: bool,
    /// Where its content is pulled from, without credentials.
    #[serde(default)]
    pub upstream_url: Option<String>,
    /// Labels.
    #[serde(default)]
    pub labels: Vec<String>,
    /// Users' repository permissions.
    #[serde(default)]
    pub grants: Vec<ManifestGrant>,
    /// Pull-mirror settings, when set apart from the defaults.
    #[serde(default)]
    pub pull_mirror: Option<ManifestPull>,
    /// Its origin and fork sync, for a fork.
    #[serde(default)]
    pub fork: Option<ManifestFork>,
    /// Its bundle's name in the archive (none: it had no content).
    #[serde(default)]
    pub bundle: Option<String>,
    /// Its content hash at the export (see [`crate::farm::content_listing`]).
    #[serde(default)]
    pub content_hash: Option<String>,
}

fn yes() -> bool {
    true
}

impl ManifestRepository {
    /// `KEY/slug`, as messages name it.
    pub fn subject(&self) -> String {
        format!("{}/{}", self.project_key, self.slug)
    }
}

/// An archive's `manifest.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct Manifest {
    /// [`FORMAT`].
    pub format: String,
    /// The export job.
    pub export_job_id: i64,
    /// When the export started (epoch ms).
    pub exported_at: i64,
    /// The projects of the repositories.
    pub projects: Vec<ManifestProject>,
    /// The repositories, origins before their forks.
    pub repositories: Vec<ManifestRepository>,
}

impl Manifest {
    /// Reads a manifest, refusing other formats.
    pub fn parse(bytes: &[u8]) -> Result<Self, ArchiveError> {
        let manifest: Self = serde_json::from_slice(bytes).map_err(|e| ArchiveError::Manifest(e.to_string()))?;
        if manifest.format != FORMAT {
            return Err(ArchiveError::Manifest(format!("format {:?}", manifest.format)));
        }
        Ok(manifest)
    }

    /// The project of `repository`.
    pub fn project_of(&self, repository: &ManifestRepository) -> Option<&ManifestProject> {
        self.projects.iter().find(|p| p.key.eq_ignore_ascii_case(&repository.project_key))
    }
}

/// One repository of a leased export: its manifest entry and where its content comes from.
#[derive(Clone, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct ExportItem {
    /// The repository's id here (its copy is `repos/<id>.git` on the node).
    pub repository_id: i64,
    /// Where to fetch it from if the node's copy is missing or behind: its upstream (or, for a
    /// fork, its own location), with credentials. Never written to the archive.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fetch_url: Option<String>,
    /// The repository's content hash here: a copy whose branches and tags hash to it is current
    /// and is bundled without a fetch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_hash: Option<String>,
    /// What the manifest says of it.
    pub entry: ManifestRepository,
}

/// The migration part of a leased `MIGRATION_EXPORT` or `MIGRATION_IMPORT` job.
#[derive(Clone, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct LeasedMigration {
    /// The migration job.
    pub job_id: i64,
    /// For an export: the manifest without its repositories, and the repositories.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub export: Option<LeasedExport>,
    /// For an import: the archive's R2 key (fetched through `nodes/migration/{jobId}/archive`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub import_archive: Option<String>,
}

/// What an export node writes.
#[derive(Clone, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct LeasedExport {
    /// The manifest, its repositories' `bundle` and `contentHash` for the node to fill in.
    pub manifest: Manifest,
    /// Where each repository's content comes from (same order as the manifest's repositories).
    pub items: Vec<ExportItem>,
}

/// Debug shows no URLs (they carry credentials).
impl std::fmt::Debug for LeasedMigration {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LeasedMigration").field("job_id", &self.job_id).finish_non_exhaustive()
    }
}

/// A node's report on a running export or import (`POST …/nodes/migration/{jobId}/progress`).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct MigrationProgress {
    /// RUNNING while it works; COMPLETED, FAILED or CANCELED at the end.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<MigrationState>,
    /// Percent done.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub percentage: Option<u32>,
    /// What it is doing now.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// Messages to log.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub messages: Vec<NewMessage>,
    /// An export's archive was uploaded: the job names it from now on.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub archive_written: bool,
}

/// The edge's answer to a progress report or an imported repository: the job's state (a node
/// stops at its next checkpoint once it reads CANCELING).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct MigrationAck {
    /// The job's state now.
    pub state: MigrationState,
}

/// A repository an import node unbundled, for the edge to create (`POST
/// …/nodes/migration/{jobId}/repositories`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct ImportedRepository {
    /// Its project, created if missing.
    pub project: ManifestProject,
    /// The repository.
    pub repository: ManifestRepository,
    /// The content hash of the node's unbundled copy (none: no content).
    #[serde(default)]
    pub content_hash: Option<String>,
    /// Percent of the import done once this repository is in.
    #[serde(default)]
    pub percentage: u32,
}

/// What became of an imported repository.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(schemars::JsonSchema))]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ImportOutcome {
    /// Created: the node moves its copy into place as `repos/<repositoryId>.git`.
    Created,
    /// A repository of that name exists: left alone (a WARN message says so).
    Skipped,
    /// Cancel was asked: nothing was created, and the node stops.
    Cancelled,
}

/// The edge's answer to an imported repository.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct ImportAnswer {
    /// What became of it.
    pub outcome: ImportOutcome,
    /// Its id, when created.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repository_id: Option<i64>,
}

/// One item of a preview: a project, or a repository of it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "openapi", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct PreviewScope {
    /// `PROJECT` or `REPOSITORY`.
    #[serde(rename = "type")]
    pub kind: &'static str,
    /// The project's key.
    pub project_key: String,
    /// The repository's slug (repositories only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub slug: Option<String>,
    /// The repository's id (repositories only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub repository_id: Option<i64>,
}

/// `POST …/exports/preview`'s answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "openapi", derive(schemars::JsonSchema))]
pub struct Preview {
    /// The projects and repositories selected.
    pub scopes: Vec<PreviewScope>,
}

/// Orders repositories so that every origin comes before its forks (an import creates origins
/// first, so forks find them). `origin_of(i)` is the index of repository `i`'s origin, if selected.
pub fn origins_first(count: usize, origin_of: impl Fn(usize) -> Option<usize>) -> Vec<usize> {
    let depth = |mut i: usize| {
        let mut d = 0;
        while let Some(o) = origin_of(i) {
            d += 1;
            i = o;
            if d > count {
                break;
            }
        }
        d
    };
    let mut order: Vec<usize> = (0..count).collect();
    order.sort_by_key(|&i| (depth(i), i));
    order
}

#[cfg(test)]
mod tests {
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    use super::*;

    fn body(v: Value) -> serde_json::Map<String, Value> {
        match v {
            Value::Object(m) => m,
            _ => panic!("object"),
        }
    }

    #[test]
    fn selectors_take_wildcards_and_excludes_win() {
        let req = ExportRequest::from_json(&body(serde_json::json!({
            "repositoriesRequest": {
                "includes": [{"projectKey": "PRJ", "slug": "*"}, {"projectKey": "OTHER", "slug": "one"}],
                "excludes": [{"projectKey": "prj", "slug": "secret"}]
            }
        })))
        .expect("valid");
        let r = &req.repositories_request;
        assert!(r.selects("PRJ", "a") && r.selects("prj", "b"));
        assert!(!r.selects("PRJ", "secret"), "excluded");
        assert!(r.selects("OTHER", "ONE") && !r.selects("OTHER", "two"));
        let all = ExportRequest::from_json(&body(
            serde_json::json!({"repositoriesRequest": {"includes": [{"projectKey": "*", "slug": "*"}]}}),
        ))
        .expect("valid");
        assert!(all.repositories_request.selects("ANY", "thing"));
    }

    #[test]
    fn bad_requests_are_refused_with_their_field() {
        let refuse = |v: Value| ExportRequest::from_json(&body(v)).expect_err("refused");
        assert_eq!(refuse(serde_json::json!({})), ArchiveError::Request);
        assert_eq!(refuse(serde_json::json!({"repositoriesRequest": {"includes": []}})), ArchiveError::NoIncludes);
        assert_eq!(
            refuse(serde_json::json!({"repositoriesRequest": {"includes": [{"projectKey": "P"}]}})),
            ArchiveError::Selector
        );
        assert_eq!(
            refuse(serde_json::json!({"repositoriesRequest": {"includes": [{"projectKey": "*", "slug": "r"}]}})),
            ArchiveError::WildcardProject
        );
        let e = refuse(serde_json::json!({"exportLocation": "../etc",
            "repositoriesRequest": {"includes": [{"projectKey": "P", "slug": "*"}]}}));
        assert_eq!((e.clone(), e.field()), (ArchiveError::ExportLocation, "exportLocation"));
        assert_eq!(export_location("a/b-1/c.d/"), Ok("a/b-1/c.d".into()));
        assert!(
            export_location("/abs").is_err() && export_location("a//b").is_err() && export_location("a b").is_err()
        );
    }

    #[test]
    fn archive_keys_stay_in_their_directories() {
        assert_eq!(export_key(7, None), "migration/export/Bitbucket_export_7.tar");
        assert_eq!(export_key(7, Some("team/x")), "migration/export/team/x/Bitbucket_export_7.tar");
        assert_eq!(import_key("Bitbucket_export_1.tar"), Ok("migration/import/Bitbucket_export_1.tar".into()));
        assert_eq!(import_key("migration/export/a/b.tar"), Ok("migration/export/a/b.tar".into()));
        assert_eq!(import_key("migration/import/b.tar"), Ok("migration/import/b.tar".into()));
        for bad in ["", "  ", "../x.tar", "a/../../b", "migration/export/", "a//b", "x\\y", "avatars/../x"] {
            assert_eq!(import_key(bad), Err(ArchiveError::ArchivePath), "{bad:?}");
        }
    }

    #[test]
    fn origins_come_before_their_forks() {
        // 0 is a fork of 2, 2 a fork of 1.
        let origin = |i| match i {
            0 => Some(2),
            2 => Some(1),
            _ => None,
        };
        assert_eq!(origins_first(4, origin), vec![1, 3, 2, 0]);
    }

    #[test]
    fn a_manifest_reads_back_and_other_formats_are_refused() {
        let m = Manifest {
            format: FORMAT.into(),
            export_job_id: 1,
            exported_at: 5,
            projects: vec![ManifestProject {
                key: "P".into(),
                name: "P".into(),
                description: None,
                public: false,
                grants: vec![ManifestGrant { user: "u".into(), level: "WRITE".into() }],
            }],
            repositories: vec![],
        };
        let bytes = serde_json::to_vec(&m).expect("serializes");
        assert_eq!(Manifest::parse(&bytes), Ok(m));
        assert!(matches!(Manifest::parse(br#"{"format":"other/9"}"#), Err(ArchiveError::Manifest(_))));
        assert!(matches!(
            Manifest::parse(br#"{"format":"other/9","exportJobId":1,"exportedAt":1,"projects":[],"repositories":[]}"#),
            Err(ArchiveError::Manifest(_))
        ));
    }
}
