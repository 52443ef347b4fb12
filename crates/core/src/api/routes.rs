//! Every route the API serves, in one table.
//!
//! Paths are matched on their percent-encoded form, so a GitLab id like `KEY%2Fslug` is one
//! segment. `/rest/<api>/1.0/` is an alias of `/rest/<api>/latest/`, and a trailing slash is ignored.

use super::request::Method;
use super::response::Dialect;

/// What a matched route does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Handler {
    /// `GET /api/v4/user`.
    GitLabCurrentUser,
    /// `GET /api/v4/projects/:id`.
    GitLabProject,
    /// `GET …/remote_mirrors`.
    ListRemoteMirrors,
    /// `POST …/remote_mirrors`.
    CreateRemoteMirror,
    /// `GET …/remote_mirrors/:mirror_id`.
    GetRemoteMirror,
    /// `PUT …/remote_mirrors/:mirror_id`.
    UpdateRemoteMirror,
    /// `DELETE …/remote_mirrors/:mirror_id`.
    DeleteRemoteMirror,
    /// `POST …/remote_mirrors/:mirror_id/sync`.
    SyncRemoteMirror,
    /// `GET …/remote_mirrors/:mirror_id/public_key`.
    RemoteMirrorPublicKey,
    /// `GET /rest/ssh/latest/keys`.
    ListSshKeys,
    /// `POST /rest/ssh/latest/keys`.
    AddSshKey,
    /// `GET /rest/ssh/latest/keys/{keyId}`.
    GetSshKey,
    /// `DELETE /rest/ssh/latest/keys/{keyId}`.
    DeleteSshKey,
    /// `GET /api/v4/user/keys`.
    GitLabListKeys,
    /// `POST /api/v4/user/keys`.
    GitLabAddKey,
    /// `GET /api/v4/user/keys/:key_id`.
    GitLabGetKey,
    /// `DELETE /api/v4/user/keys/:key_id`.
    GitLabDeleteKey,
    /// `GET /api/v4/projects/:id/mirror/pull`.
    GetPullMirror,
    /// `PUT /api/v4/projects/:id/mirror/pull`.
    UpdatePullMirror,
    /// `POST /api/v4/projects/:id/mirror/pull`.
    StartPullMirror,
    /// `GET /rest/api/latest/projects`.
    ListProjects,
    /// `POST /rest/api/latest/projects`.
    CreateProject,
    /// `GET /rest/api/latest/projects/{key}`.
    GetProject,
    /// `DELETE /rest/api/latest/projects/{key}`.
    DeleteProject,
    /// `GET /rest/api/latest/projects/{key}/repos`.
    ListProjectRepositories,
    /// `POST /rest/api/latest/projects/{key}/repos`.
    CreateRepository,
    /// `GET /rest/api/latest/projects/{key}/repos/{slug}`.
    GetRepository,
    /// `DELETE /rest/api/latest/projects/{key}/repos/{slug}`.
    DeleteRepository,
    /// `GET /rest/api/latest/repos`.
    ListRepositories,
    /// `PUT /rest/api/latest/projects/{key}/permissions/users`.
    GrantProject,
    /// `DELETE /rest/api/latest/projects/{key}/permissions/users`.
    RevokeProject,
    /// `PUT /rest/api/latest/projects/{key}/repos/{slug}/permissions/users`.
    GrantRepository,
    /// `DELETE /rest/api/latest/projects/{key}/repos/{slug}/permissions/users`.
    RevokeRepository,
    /// `PUT /rest/api/latest/admin/permissions/users`.
    GrantGlobal,
    /// `DELETE /rest/api/latest/admin/permissions/users`.
    RevokeGlobal,
    /// `POST /rest/api/latest/admin/users`.
    CreateUser,
    /// `DELETE /rest/api/latest/admin/users`.
    DeleteUser,
    /// `GET /rest/api/latest/users`.
    ListUsers,
    /// `GET /rest/api/latest/users/{userSlug}`.
    GetUser,
    /// `PUT /rest/access-tokens/latest/users/{userSlug}`.
    CreateToken,
    /// `GET /rest/access-tokens/latest/users/{userSlug}`.
    ListTokens,
    /// `DELETE /rest/access-tokens/latest/users/{userSlug}/{tokenId}`.
    DeleteToken,
    /// `GET /rest/mirrorfarm/latest/repos/{repositoryId}/jobs`.
    ListJobs,
    /// `POST /rest/mirrorfarm/latest/repos/{repositoryId}/sync` (node or REPO_ADMIN).
    SyncRepository,
    /// `GET /rest/mirrorfarm/latest/repos/{repositoryId}/work` (node).
    RepositoryWork,
    /// `GET /rest/mirrorfarm/latest/repos/{repositoryId}/status` (the widget's one read; CORS).
    RepositoryStatus,
    /// `GET /rest/mirrorfarm/latest/health`.
    Health,
    /// `PUT /rest/mirrorfarm/latest/repos/{repositoryId}/webhook`.
    ConfigureWebhook,
    /// `DELETE /rest/mirrorfarm/latest/repos/{repositoryId}/webhook`.
    RemoveWebhook,
    /// `POST /rest/mirrorfarm/latest/repos/{repositoryId}/webhook` (signed by the upstream host).
    ReceiveWebhook,
    /// `POST /rest/mirrorfarm/latest/nodes` (admin).
    RegisterNode,
    /// `GET /rest/mirrorfarm/latest/nodes`.
    ListNodes,
    /// `POST /rest/mirrorfarm/latest/nodes/heartbeat` (node).
    Heartbeat,
    /// `POST /rest/mirrorfarm/latest/nodes/clone-access` (node).
    CloneAccess,
    /// `POST /rest/mirrorfarm/latest/nodes/copies` (node).
    HeldCopies,
    /// `POST /rest/mirrorfarm/latest/jobs/lease` (node).
    LeaseJob,
    /// `POST /rest/mirrorfarm/latest/jobs/{jobId}/renew` (node).
    RenewJob,
    /// `POST /rest/mirrorfarm/latest/jobs/{jobId}/result` (node).
    ReportResult,
    /// `POST /rest/mirrorfarm/latest/jobs/{jobId}/release` (node).
    ReleaseJob,
    /// `POST /rest/api/latest/projects/{key}/repos/{slug}`: fork it.
    CreateFork,
    /// `GET /rest/api/latest/projects/{key}/repos/{slug}/forks`.
    ListForks,
    /// `GET /rest/sync/latest/projects/{key}/repos/{slug}`.
    ForkSyncStatus,
    /// `POST /rest/sync/latest/projects/{key}/repos/{slug}`.
    SetForkSync,
    /// `POST /rest/sync/latest/projects/{key}/repos/{slug}/synchronize`.
    SynchronizeRef,
    /// `POST /rest/mirrorfarm/latest/upstreamServers`.
    CreateUpstream,
    /// `DELETE /rest/mirrorfarm/latest/upstreamServers/{upstreamId}`.
    DeleteUpstream,
    /// `GET /rest/mirroring/latest/upstreamServers`.
    ListUpstreams,
    /// `GET /rest/mirroring/latest/upstreamServers/{upstreamId}` (9.4: `…/upstreamServer`).
    GetUpstream,
    /// `GET …/upstreamServers/{upstreamId}/settings` (9.4: `…/syncSettings`).
    GetUpstreamSettings,
    /// `PUT …/upstreamServers/{upstreamId}/settings`.
    PutUpstreamSettings,
    /// `GET …/settings/mode`.
    GetMirrorMode,
    /// `PUT …/settings/mode`.
    PutMirrorMode,
    /// `GET …/settings/projects`.
    GetMirroredProjects,
    /// `POST …/settings/projects[/{projectId}]`.
    AddMirroredProjects,
    /// `DELETE …/settings/projects[/{projectId}]`.
    RemoveMirroredProjects,
    /// `GET …/upstreamServers/{upstreamId}/progress`.
    UpstreamProgress,
    /// `GET …/upstreamServers/{upstreamId}/farmNodes`.
    FarmNodes,
    /// `GET …/upstreamServers/{upstreamId}/repos/{upstreamRepoId}` (9.4: `…/mirrorRepos/{id}`).
    MirroredRepository,
    /// `POST …/upstreamServers/{upstreamId}/repos/{upstreamRepoId}/synchronization`.
    RepairRepository,
    /// `GET /rest/mirroring/latest/supportInfo/repoSyncStatus`.
    RepoSyncStatuses,
    /// `GET /rest/mirroring/latest/supportInfo/projects/{key}/repos/{slug}/repoSyncStatus`.
    RepoSyncStatus,
    /// `GET /rest/mirroring/latest/supportInfo/refChangesQueue`.
    RefChangesQueue,
    /// `GET /rest/mirroring/latest/supportInfo/refChangesQueue/count`.
    RefChangesCount,
    /// `GET /rest/mirroring/latest/repos`: our repositories with their hashes (the primary side).
    MirroringRepositories,
    /// `GET /rest/mirrorfarm/latest/metrics`: Prometheus text.
    Metrics,
    /// `GET /rest/api/latest/admin/users`: users in the detailed view.
    AdminListUsers,
    /// `PUT /rest/api/latest/users`: the caller's own details.
    UpdateCurrentUser,
    /// `PUT /rest/api/latest/users/credentials`: the caller's password.
    ChangePassword,
    /// `GET /rest/api/latest/users/{userSlug}/settings`.
    GetUserSettings,
    /// `POST /rest/api/latest/users/{userSlug}/settings` (merged).
    MergeUserSettings,
    /// `POST /rest/api/latest/users/{userSlug}/avatar.png`.
    UploadAvatar,
    /// `DELETE /rest/api/latest/users/{userSlug}/avatar.png`.
    DeleteAvatar,
    /// `GET /users/{userSlug}/avatar.png`: where avatars are served.
    ServeAvatar,
    /// `GET /rest/api/latest/admin/rate-limit/settings`.
    GetRateLimitSettings,
    /// `PUT /rest/api/latest/admin/rate-limit/settings`.
    PutRateLimitSettings,
    /// `GET /rest/api/latest/admin/rate-limit/settings/users`.
    ListUserRateLimits,
    /// `POST /rest/api/latest/admin/rate-limit/settings/users`.
    SetUserRateLimits,
    /// `GET /rest/api/latest/admin/rate-limit/settings/users/{userSlug}`.
    GetUserRateLimit,
    /// `PUT /rest/api/latest/admin/rate-limit/settings/users/{userSlug}`.
    PutUserRateLimit,
    /// `DELETE /rest/api/latest/admin/rate-limit/settings/users/{userSlug}`.
    DeleteUserRateLimit,
    /// `GET /rest/api/latest/admin/rate-limit/history`.
    RateLimitHistory,
    /// `GET /rest/api/latest/admin/banner`.
    GetBanner,
    /// `PUT /rest/api/latest/admin/banner`.
    PutBanner,
    /// `DELETE /rest/api/latest/admin/banner`.
    DeleteBanner,
    /// `GET /rest/api/latest/admin/default-branch`.
    GetDefaultBranch,
    /// `PUT /rest/api/latest/admin/default-branch`.
    PutDefaultBranch,
    /// `DELETE /rest/api/latest/admin/default-branch`.
    DeleteDefaultBranch,
    /// `GET /rest/policies/latest/admin/repos/archive`.
    GetArchivePolicy,
    /// `PUT /rest/policies/latest/admin/repos/archive`.
    PutArchivePolicy,
    /// `GET /rest/policies/latest/admin/repos/delete`.
    GetDeletePolicy,
    /// `PUT /rest/policies/latest/admin/repos/delete`.
    PutDeletePolicy,
    /// `PUT /rest/api/latest/projects/{key}/repos/{slug}`: archive, describe, …
    UpdateRepository,
    /// `POST …/repos/{slug}/labels`.
    AddLabel,
    /// `GET …/repos/{slug}/labels`.
    RepositoryLabels,
    /// `DELETE …/repos/{slug}/labels/{labelName}`.
    RemoveLabel,
    /// `GET /rest/api/latest/labels`.
    ListLabels,
    /// `GET /rest/api/latest/labels/{labelName}`.
    GetLabel,
    /// `GET /rest/api/latest/labels/{labelName}/labeled`.
    Labeled,
    /// `GET /rest/api/latest/logs/logger/{loggerName}`.
    GetLogger,
    /// `PUT /rest/api/latest/logs/logger/{loggerName}/{levelName}`.
    SetLogger,
    /// `GET /rest/api/latest/logs/rootLogger`.
    GetRootLogger,
    /// `PUT /rest/api/latest/logs/rootLogger/{levelName}`.
    SetRootLogger,
    /// `GET /rest/api/latest/admin/license`.
    GetLicense,
    /// `POST /rest/api/latest/admin/license`.
    PostLicense,
    /// `GET /rest/api/latest/application-properties`.
    ApplicationProperties,
    /// `GET /rest/api/latest/admin/cluster`.
    Cluster,
    /// `GET /rest/api/latest/admin/mail-server`.
    GetMailServer,
    /// `PUT /rest/api/latest/admin/mail-server`.
    PutMailServer,
    /// `DELETE /rest/api/latest/admin/mail-server`.
    DeleteMailServer,
    /// `GET /rest/api/latest/admin/mail-server/sender-address`.
    GetSenderAddress,
    /// `PUT /rest/api/latest/admin/mail-server/sender-address`.
    PutSenderAddress,
    /// `DELETE /rest/api/latest/admin/mail-server/sender-address`.
    DeleteSenderAddress,
    /// `POST /rest/mirrorfarm/latest/admin/mail-server/test`.
    TestMail,
    /// `GET /rest/mirrorfarm/latest/admin/mail`: recent mail jobs.
    ListMail,
    /// `GET /rest/mirrorfarm/latest/admin/notifications`.
    GetNotificationSettings,
    /// `PUT /rest/mirrorfarm/latest/admin/notifications`.
    PutNotificationSettings,
    /// `POST /rest/api/latest/hook-scripts`.
    CreateHookScript,
    /// `GET /rest/api/latest/hook-scripts/{scriptId}`.
    GetHookScript,
    /// `PUT /rest/api/latest/hook-scripts/{scriptId}`.
    UpdateHookScript,
    /// `DELETE /rest/api/latest/hook-scripts/{scriptId}`.
    DeleteHookScript,
    /// `GET /rest/api/latest/hook-scripts/{scriptId}/content` (and the nodes' twin).
    HookScriptContent,
    /// `GET /rest/api/latest/projects/{key}[/repos/{slug}]/hook-scripts`.
    ListHookConfigs,
    /// `PUT /rest/api/latest/projects/{key}[/repos/{slug}]/hook-scripts/{scriptId}`.
    AttachHookScript,
    /// `DELETE /rest/api/latest/projects/{key}[/repos/{slug}]/hook-scripts/{scriptId}`.
    DetachHookScript,
    /// `GET /rest/auditing/latest/events`: the audit log.
    AuditEvents,
    /// `GET /rest/auditing/latest/configuration/retention`.
    GetAuditRetention,
    /// `PUT /rest/auditing/latest/configuration/retention`.
    PutAuditRetention,
    /// `DELETE /rest/audit/latest/notification-settings/retention-config-review`.
    DismissRetentionReview,
    /// `GET /rest/api/latest/admin/git/mesh/nodes`.
    MeshNodes,
    /// `POST /rest/api/latest/admin/git/mesh/nodes`.
    RegisterMeshNode,
    /// `GET /rest/api/latest/admin/git/mesh/nodes/{nodeId}`.
    MeshNode,
    /// `PUT /rest/api/latest/admin/git/mesh/nodes/{nodeId}`.
    UpdateMeshNode,
    /// `DELETE /rest/api/latest/admin/git/mesh/nodes/{nodeId}`.
    DeleteMeshNode,
    /// `GET /rest/api/latest/admin/git/mesh/diagnostics/connectivity`.
    MeshConnectivity,
    /// `GET /rest/api/latest/admin/git/mesh/config/control-plane.pem`.
    ControlPlanePem,
    /// `GET /rest/api/latest/admin/git/mesh/support-zips`.
    MeshSupportZips,
    /// `GET /rest/api/latest/admin/git/mesh/support-zips/{nodeId}`.
    MeshSupportZip,
    /// `PUT /rest/mirrorfarm/latest/nodes/support-zips/{zipId}` (nodes).
    UploadSupportZip,
    /// `POST /rest/api/latest/migration/mesh`.
    StartMeshMigration,
    /// `POST /rest/api/latest/migration/mesh/preview`.
    PreviewMeshMigration,
    /// `GET /rest/api/latest/migration/mesh/repos`.
    MeshMigrationRepos,
    /// `GET /rest/api/latest/migration/mesh/summaries`.
    MeshMigrationSummaries,
    /// `GET /rest/api/latest/migration/mesh/summary`.
    ActiveMeshMigration,
    /// `GET /rest/api/latest/migration/mesh/{jobId}`.
    MeshMigration,
    /// `GET /rest/api/latest/migration/mesh/{jobId}/summary`.
    MeshMigrationSummary,
    /// `POST /rest/api/latest/migration/mesh/{jobId}/cancel`.
    CancelMeshMigration,
    /// `GET /rest/api/latest/migration/mesh/{jobId}/messages`.
    MeshMigrationMessages,
    /// `POST /rest/api/latest/migration/exports`.
    StartExport,
    /// `POST /rest/api/latest/migration/exports/preview`.
    PreviewExport,
    /// `POST /rest/api/latest/migration/imports`.
    StartImport,
    /// `GET …/migration/{exports,imports}/{jobId}`.
    GetMigrationJob,
    /// `POST …/migration/{exports,imports}/{jobId}/cancel`.
    CancelMigrationJob,
    /// `GET …/migration/{exports,imports}/{jobId}/messages`.
    MigrationMessages,
    /// `POST /rest/mirrorfarm/latest/nodes/migration/{jobId}/progress` (node).
    MigrationProgress,
    /// `POST /rest/mirrorfarm/latest/nodes/migration/{jobId}/repositories` (node): one imported repository.
    ImportRepository,
    /// `PUT /rest/mirrorfarm/latest/nodes/migration/{jobId}/archive` (node): an export's archive, streamed to R2.
    UploadArchive,
    /// `GET /rest/mirrorfarm/latest/nodes/migration/{jobId}/archive` (node): an import's archive, streamed from R2.
    DownloadArchive,
    /// `GET /rest/api/latest/admin/groups`.
    ListGroups,
    /// `POST /rest/api/latest/admin/groups?name=`.
    CreateGroup,
    /// `DELETE /rest/api/latest/admin/groups?name=`.
    DeleteGroup,
    /// `POST /rest/api/latest/admin/groups/add-users`.
    AddUsersToGroup,
    /// `POST /rest/api/latest/admin/users/add-groups`.
    AddGroupsToUser,
    /// `POST /rest/api/latest/admin/groups/remove-user`.
    RemoveUserFromGroup,
    /// `POST /rest/api/latest/admin/users/remove-group`.
    RemoveGroupFromUser,
    /// `GET /rest/api/latest/admin/groups/more-members`.
    GroupMembers,
    /// `GET /rest/api/latest/admin/groups/more-non-members`.
    GroupNonMembers,
    /// `GET /rest/api/latest/projects/{key}/permissions/groups`.
    ProjectGroupGrants,
    /// `PUT /rest/api/latest/projects/{key}/permissions/groups`.
    GrantProjectGroup,
    /// `DELETE /rest/api/latest/projects/{key}/permissions/groups`.
    RevokeProjectGroup,
    /// `GET …/repos/{slug}/permissions/groups`.
    RepositoryGroupGrants,
    /// `PUT …/repos/{slug}/permissions/groups`.
    GrantRepositoryGroup,
    /// `DELETE …/repos/{slug}/permissions/groups`.
    RevokeRepositoryGroup,
    /// `GET /api/v4/projects/:id/protected_branches`.
    ListProtectedBranches,
    /// `GET /api/v4/projects/:id/protected_branches/:name`.
    GetProtectedBranch,
    /// `POST /api/v4/projects/:id/protected_branches`.
    ProtectBranch,
    /// `DELETE /api/v4/projects/:id/protected_branches/:name`.
    UnprotectBranch,
    /// `PUT /api/v4/projects/:id`: pull-mirror settings through the Projects API.
    UpdateGitLabProject,
}

use Handler as H;
use Method::{Delete, Get, Post, Put};

use crate::identity::Level::{Admin as ADMIN, Read as READ, Write as WRITE};

/// Who may call a route. The dispatcher checks the caller's kind and global role before the
/// handler runs; a level on a repository or project is checked by the one loader of the
/// resource the path names, in the same round trip as the data, with the level declared here.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Anyone, signed in or not.
    Anyone,
    /// Whoever holds the repository's webhook secret: the request is signed with it.
    WebhookSigner,
    /// Any signed-in user.
    User,
    /// A farm node.
    Node,
    /// At least this level on the repository the path names (public ones give anonymous read).
    Repository(crate::identity::Level),
    /// At least this level on the project the path names (public ones give anonymous read).
    Project(crate::identity::Level),
    /// A farm node, or a user with this level on the repository the path names.
    NodeOrRepository(crate::identity::Level),
    /// The user the path names, or a global administrator.
    SelfOrAdmin,
    /// A global ADMIN or SYS_ADMIN.
    Admin,
    /// A SYS_ADMIN.
    SysAdmin,
    /// Status: REPO_READ on the repository, also through a `STATUS_READ` token.
    Status,
}

impl Access {
    /// The level needed on the resource the path names, if the route names one.
    pub fn level(self) -> Option<crate::identity::Level> {
        match self {
            Self::Repository(l) | Self::Project(l) | Self::NodeOrRepository(l) => Some(l),
            Self::Status => Some(READ),
            _ => None,
        }
    }

    /// The route's access as one word, as the OpenAPI document and the permission matrix name it.
    pub fn name(self) -> String {
        match self {
            Self::Anyone => "ANYONE".into(),
            Self::WebhookSigner => "WEBHOOK_SIGNER".into(),
            Self::User => "USER".into(),
            Self::Node => "NODE".into(),
            Self::Repository(l) => format!("REPO_{}", l.as_str()),
            Self::Project(l) => format!("PROJECT_{}", l.as_str()),
            Self::NodeOrRepository(l) => format!("NODE_OR_REPO_{}", l.as_str()),
            Self::SelfOrAdmin => "SELF_OR_ADMIN".into(),
            Self::Admin => "ADMIN".into(),
            Self::SysAdmin => "SYS_ADMIN".into(),
            Self::Status => "STATUS".into(),
        }
    }
}

/// A route's typed input: what it reads from the request body (JSON, or for inputs read as
/// fields also a form or the query), by the type it is read into.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Input {
    /// Nothing (parameters, if any, come in the query).
    None,
    /// [`crate::mirrors::MirrorParams`].
    RemoteMirror,
    /// [`crate::mirrors::PullMirrorParams`].
    PullMirror,
    /// [`crate::registry::ProjectParams`].
    Project,
    /// [`crate::registry::RepositoryParams`].
    Repository,
    /// [`crate::identity::UserParams`].
    User,
    /// [`crate::identity::TokenParams`].
    Token,
    /// [`crate::nodes::NodeParams`].
    Node,
    /// [`crate::ssh::SshKeyParams`].
    SshKey,
    /// [`crate::ssh::GitLabKeyParams`].
    GitLabKey,
    /// [`crate::nodes::HeartbeatRequest`] (JSON).
    Heartbeat,
    /// [`crate::nodes::CloneAccessRequest`] (JSON).
    CloneAccess,
    /// [`crate::nodes::HeldCopies`] (JSON).
    HeldCopies,
    /// [`crate::nodes::LeaseRequest`] (JSON).
    Lease,
    /// [`crate::nodes::RenewRequest`] (JSON).
    Renew,
    /// [`crate::nodes::JobReport`] (JSON).
    Report,
    /// [`crate::nodes::ReleaseRequest`] (JSON).
    Release,
    /// A webhook delivery: raw bytes, signed by the upstream host.
    Webhook,
    /// [`crate::api::ForkParams`] (JSON).
    Fork,
    /// [`crate::forks::SyncToggle`].
    SyncToggle,
    /// [`crate::forks::SynchronizeRequest`] (JSON).
    Synchronize,
    /// [`crate::farm::UpstreamServerParams`].
    Upstream,
    /// [`crate::farm::UpstreamSettingsParams`].
    UpstreamSettings,
    /// A bare JSON string: a mirror mode.
    MirrorMode,
    /// A JSON array of upstream project ids (or none, with `{projectId}` in the path).
    ProjectIds,
    /// A JSON object, read field by field by its handler.
    Object,
    /// A `multipart/form-data` upload with an `avatar` part.
    Avatar,
    /// A bare JSON string (or plain text): an e-mail address.
    Address,
    /// [`crate::mirrors::protected::ProtectedBranchParams`].
    ProtectedBranch,
    /// [`crate::api::GitLabProjectParams`].
    GitLabProject,
    /// A `multipart/form-data` upload of a hook script (`content`, `name`, `description`, `type`).
    HookScript,
    /// The audit log's retention setting (`{"period": {years, months, days}}`, JSON).
    Retention,
    /// [`crate::mesh::MeshNodeInput`] (JSON).
    MeshNode,
    /// [`crate::mesh::migration::MeshMigrationRequest`] (JSON).
    MeshMigration,
    /// A support zip's bytes (`application/zip`), from the node that built it.
    SupportZip,
    /// [`crate::migration::archive::ExportRequest`] (JSON).
    Export,
    /// `{"archivePath": …}` (JSON).
    Import,
    /// [`crate::migration::archive::MigrationProgress`] (JSON).
    MigrationProgress,
    /// [`crate::migration::archive::ImportedRepository`] (JSON).
    ImportedRepository,
    /// Raw bytes the shell streams to blob storage without reading them (a migration archive).
    Stream,
}

impl Input {
    /// Whether the body is a `multipart/form-data` upload (these need Bitbucket's XSRF header).
    pub fn is_multipart(self) -> bool {
        matches!(self, Self::Avatar | Self::HookScript)
    }

    /// The largest body accepted: webhook deliveries list commits, and a node's report of a
    /// discovery lists every repository it found, so both may be larger.
    pub fn limit(self) -> usize {
        match self {
            Self::Webhook => super::MAX_WEBHOOK_BYTES,
            Self::Report => MAX_REPORT_BYTES,
            Self::Avatar => crate::admin::avatar::MAX_UPLOAD_BYTES,
            Self::HookScript => MAX_HOOK_UPLOAD_BYTES,
            Self::SupportZip => crate::mesh::MAX_SUPPORT_ZIP_BYTES,
            Self::Stream => usize::try_from(crate::migration::archive::MAX_ARCHIVE_BYTES).unwrap_or(usize::MAX),
            _ => super::MAX_BODY_BYTES,
        }
    }
}

/// The largest node report: a discovery of about 7,000 repositories (some 300 bytes each), under
/// the 2 MB D1 allows one bound value (the listing is bound as one JSON text).
pub const MAX_REPORT_BYTES: usize = 2 * 1024 * 1024;

/// The largest hook-script upload: the script and the form's other fields.
const MAX_HOOK_UPLOAD_BYTES: usize = crate::hooks::MAX_SCRIPT_BYTES + 16 * 1024;

/// The largest body any route accepts whose body the shell reads (a streamed body is never
/// read: see [`streams_request_body`]): a shell need read no more.
pub const LARGEST_BODY_BYTES: usize = max(
    max(max(MAX_REPORT_BYTES, super::MAX_WEBHOOK_BYTES), crate::admin::avatar::MAX_UPLOAD_BYTES),
    max(MAX_HOOK_UPLOAD_BYTES, crate::mesh::MAX_SUPPORT_ZIP_BYTES),
);

const fn max(a: usize, b: usize) -> usize {
    if a > b { a } else { b }
}

/// One route: what it matches, who may call it, what it reads, and what it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Route {
    /// The method.
    pub method: Method,
    /// The path pattern (`{name}` captures one segment; `latest` also answers as `1.0`).
    pub path: &'static str,
    /// What it does.
    pub handler: Handler,
    /// Who may call it.
    pub access: Access,
    /// Its typed input.
    pub input: Input,
    /// Whether pages on allowed origins may call it (CORS).
    pub cors: bool,
    /// One line for the OpenAPI document.
    pub summary: &'static str,
}

const fn route(
    method: Method,
    path: &'static str,
    handler: Handler,
    access: Access,
    input: Input,
    summary: &'static str,
) -> Route {
    Route { method, path, handler, access, input, cors: false, summary }
}

use Access::{
    Admin as AdminOnly, Anyone, Node, NodeOrRepository, Project, Repository, SelfOrAdmin, SysAdmin, User, WebhookSigner,
};
use Input::None as NoBody;

const GL: &str = "/api/v4/projects/{id}/remote_mirrors";
const GL_ONE: &str = "/api/v4/projects/{id}/remote_mirrors/{mirror_id}";
const GL_PULL: &str = "/api/v4/projects/{id}/mirror/pull";
const BB_PROJECT: &str = "/rest/api/latest/projects/{projectKey}";
const BB_REPO: &str = "/rest/api/latest/projects/{projectKey}/repos/{repositorySlug}";
const BB_SYNC: &str = "/rest/sync/latest/projects/{projectKey}/repos/{repositorySlug}";
const MF_UP: &str = "/rest/mirrorfarm/latest/upstreamServers";
const BB_UP: &str = "/rest/mirroring/latest/upstreamServers";
const UP: &str = "/rest/mirroring/latest/upstreamServers/{upstreamId}";

const UP_SETTINGS: &str = "/rest/mirroring/latest/upstreamServers/{upstreamId}/settings";
const UP_MODE: &str = "/rest/mirroring/latest/upstreamServers/{upstreamId}/settings/mode";
const UP_PROJECTS: &str = "/rest/mirroring/latest/upstreamServers/{upstreamId}/settings/projects";
const UP_PROJECT: &str = "/rest/mirroring/latest/upstreamServers/{upstreamId}/settings/projects/{projectId}";
const UP_REPO: &str = "/rest/mirroring/latest/upstreamServers/{upstreamId}/repos/{upstreamRepoId}";
const RL_USERS: &str = "/rest/api/latest/admin/rate-limit/settings/users";
const RL_USER: &str = "/rest/api/latest/admin/rate-limit/settings/users/{userSlug}";
const LABELS: &str = "/rest/api/latest/projects/{projectKey}/repos/{repositorySlug}/labels";
const AVATAR: &str = "/rest/api/latest/users/{userSlug}/avatar.png";
const SETTINGS: &str = "/rest/api/latest/users/{userSlug}/settings";
const SYNC_SETTINGS: &str = "/rest/mirroring/latest/syncSettings";
const SYNC_MODE: &str = "/rest/mirroring/latest/syncSettings/mode";
const SYNC_PROJECTS: &str = "/rest/mirroring/latest/syncSettings/projects";
const RETENTION: &str = "/rest/auditing/latest/configuration/retention";
const SYNC_PROJECT: &str = "/rest/mirroring/latest/syncSettings/projects/{projectId}";
const MAIL: &str = "/rest/api/latest/admin/mail-server";
const SENDER: &str = "/rest/api/latest/admin/mail-server/sender-address";
const NOTIFY: &str = "/rest/mirrorfarm/latest/admin/notifications";
const HOOK: &str = "/rest/api/latest/hook-scripts/{scriptId}";
const PROJECT_HOOKS: &str = "/rest/api/latest/projects/{projectKey}/hook-scripts";
const PROJECT_HOOK: &str = "/rest/api/latest/projects/{projectKey}/hook-scripts/{scriptId}";
const REPO_HOOKS: &str = "/rest/api/latest/projects/{projectKey}/repos/{repositorySlug}/hook-scripts";
const REPO_HOOK: &str = "/rest/api/latest/projects/{projectKey}/repos/{repositorySlug}/hook-scripts/{scriptId}";
const EXPORT: &str = "/rest/api/latest/migration/exports/{jobId}";
const IMPORT: &str = "/rest/api/latest/migration/imports/{jobId}";
const NODE_ARCHIVE: &str = "/rest/mirrorfarm/latest/nodes/migration/{jobId}/archive";
const PROJECT_GROUPS: &str = "/rest/api/latest/projects/{projectKey}/permissions/groups";
const REPO_GROUPS: &str = "/rest/api/latest/projects/{projectKey}/repos/{repositorySlug}/permissions/groups";
const GL_PROTECTED: &str = "/api/v4/projects/{id}/protected_branches";
const GL_PROTECTED_ONE: &str = "/api/v4/projects/{id}/protected_branches/{name}";

/// Every route served: one row each.
#[rustfmt::skip]
pub const ROUTES: &[Route] = &[
    route(Get, "/api/v4/user", H::GitLabCurrentUser, User, NoBody, "The caller, as a GitLab user"),
    route(Get, "/api/v4/projects/{id}", H::GitLabProject, Repository(READ), NoBody, "A repository, as a GitLab project"),
    route(Get, GL, H::ListRemoteMirrors, Repository(ADMIN), NoBody, "List a project's remote (push) mirrors"),
    route(Post, GL, H::CreateRemoteMirror, Repository(ADMIN), Input::RemoteMirror, "Create a remote mirror"),
    route(Get, GL_ONE, H::GetRemoteMirror, Repository(ADMIN), NoBody, "Get one remote mirror"),
    route(Put, GL_ONE, H::UpdateRemoteMirror, Repository(ADMIN), Input::RemoteMirror, "Update a remote mirror"),
    route(Delete, GL_ONE, H::DeleteRemoteMirror, Repository(ADMIN), NoBody, "Delete a remote mirror"),
    route(Post, "/api/v4/projects/{id}/remote_mirrors/{mirror_id}/sync", H::SyncRemoteMirror, Repository(ADMIN), NoBody, "Queue a push to a remote mirror"),
    route(Get, "/api/v4/projects/{id}/remote_mirrors/{mirror_id}/public_key", H::RemoteMirrorPublicKey, Repository(ADMIN), NoBody, "A remote mirror's SSH public key (auth_method ssh_public_key; 404 for password mirrors)"),
    route(Get, GL_PULL, H::GetPullMirror, Repository(ADMIN), NoBody, "The project's pull mirror"),
    route(Put, GL_PULL, H::UpdatePullMirror, Repository(ADMIN), Input::PullMirror, "Configure the pull mirror"),
    route(Post, GL_PULL, H::StartPullMirror, Repository(ADMIN), NoBody, "Start a pull now"),
    route(Get, "/rest/api/latest/projects", H::ListProjects, Anyone, NoBody, "Projects the caller may see"),
    route(Post, "/rest/api/latest/projects", H::CreateProject, AdminOnly, Input::Project, "Create a project"),
    route(Get, BB_PROJECT, H::GetProject, Project(READ), NoBody, "A project"),
    route(Delete, BB_PROJECT, H::DeleteProject, Project(ADMIN), NoBody, "Delete an empty project"),
    route(Get, "/rest/api/latest/projects/{projectKey}/repos", H::ListProjectRepositories, Project(READ), NoBody, "A project's repositories the caller may see"),
    route(Post, "/rest/api/latest/projects/{projectKey}/repos", H::CreateRepository, Project(ADMIN), Input::Repository, "Create a repository"),
    route(Get, BB_REPO, H::GetRepository, Repository(READ), NoBody, "A repository"),
    route(Delete, BB_REPO, H::DeleteRepository, Repository(ADMIN), NoBody, "Delete a repository"),
    route(Post, BB_REPO, H::CreateFork, Repository(READ), Input::Fork, "Fork a repository (PROJECT_ADMIN on the target project too)"),
    route(Get, "/rest/api/latest/projects/{projectKey}/repos/{repositorySlug}/forks", H::ListForks, Repository(READ), NoBody, "A repository's direct forks the caller may see"),
    route(Get, BB_SYNC, H::ForkSyncStatus, Repository(READ), NoBody, "A fork's sync status (?at= narrows to one ref)"),
    route(Post, BB_SYNC, H::SetForkSync, Repository(ADMIN), Input::SyncToggle, "Switch a fork's sync on (syncs before answering) or off"),
    route(Post, "/rest/sync/latest/projects/{projectKey}/repos/{repositorySlug}/synchronize", H::SynchronizeRef, Repository(WRITE), Input::Synchronize, "MERGE or DISCARD one out-of-step ref (done by a farm node before answering)"),
    route(Get, "/rest/api/latest/repos", H::ListRepositories, Anyone, NoBody, "Repositories the caller may see"),
    route(Put, "/rest/api/latest/projects/{projectKey}/permissions/users", H::GrantProject, Project(ADMIN), NoBody, "Grant users a project permission"),
    route(Delete, "/rest/api/latest/projects/{projectKey}/permissions/users", H::RevokeProject, Project(ADMIN), NoBody, "Revoke users' project permissions"),
    route(Put, "/rest/api/latest/projects/{projectKey}/repos/{repositorySlug}/permissions/users", H::GrantRepository, Repository(ADMIN), NoBody, "Grant users a repository permission"),
    route(Delete, "/rest/api/latest/projects/{projectKey}/repos/{repositorySlug}/permissions/users", H::RevokeRepository, Repository(ADMIN), NoBody, "Revoke users' repository permissions"),
    route(Put, "/rest/api/latest/admin/permissions/users", H::GrantGlobal, AdminOnly, NoBody, "Grant users a global permission"),
    route(Delete, "/rest/api/latest/admin/permissions/users", H::RevokeGlobal, AdminOnly, NoBody, "Revoke users' global permissions"),
    route(Post, "/rest/api/latest/admin/users", H::CreateUser, AdminOnly, Input::User, "Create a user"),
    route(Delete, "/rest/api/latest/admin/users", H::DeleteUser, AdminOnly, NoBody, "Delete a user"),
    route(Get, "/rest/api/latest/users", H::ListUsers, User, NoBody, "Users"),
    route(Get, "/rest/api/latest/users/{userSlug}", H::GetUser, User, NoBody, "A user"),
    route(Put, "/rest/access-tokens/latest/users/{userSlug}", H::CreateToken, SelfOrAdmin, Input::Token, "Create an access token (shown once)"),
    route(Get, "/rest/access-tokens/latest/users/{userSlug}", H::ListTokens, SelfOrAdmin, NoBody, "A user's access tokens"),
    route(Delete, "/rest/access-tokens/latest/users/{userSlug}/{tokenId}", H::DeleteToken, SelfOrAdmin, NoBody, "Revoke an access token"),
    route(Get, "/rest/ssh/latest/keys", H::ListSshKeys, User, NoBody, "Your SSH keys (an administrator: ?user='s)"),
    route(Post, "/rest/ssh/latest/keys", H::AddSshKey, User, Input::SshKey, "Add an SSH key for git over SSH from farm nodes (an administrator: ?user=)"),
    route(Get, "/rest/ssh/latest/keys/{keyId}", H::GetSshKey, User, NoBody, "One of your SSH keys"),
    route(Delete, "/rest/ssh/latest/keys/{keyId}", H::DeleteSshKey, User, NoBody, "Remove one of your SSH keys"),
    route(Get, "/api/v4/user/keys", H::GitLabListKeys, User, NoBody, "Your SSH keys"),
    route(Post, "/api/v4/user/keys", H::GitLabAddKey, User, Input::GitLabKey, "Add an SSH key (title, key, expires_at)"),
    route(Get, "/api/v4/user/keys/{key_id}", H::GitLabGetKey, User, NoBody, "One of your SSH keys"),
    route(Delete, "/api/v4/user/keys/{key_id}", H::GitLabDeleteKey, User, NoBody, "Remove one of your SSH keys"),
    route(Get, "/rest/mirrorfarm/latest/repos/{repositoryId}/jobs", H::ListJobs, Repository(READ), NoBody, "A repository's jobs, newest first"),
    Route { cors: true, ..route(Get, "/rest/mirrorfarm/latest/repos/{repositoryId}/status", H::RepositoryStatus, Access::Status, NoBody, "A repository's mirroring status at a glance") },
    route(Post, "/rest/mirrorfarm/latest/repos/{repositoryId}/sync", H::SyncRepository, NodeOrRepository(ADMIN), NoBody, "Queue a repository's pull and pushes"),
    route(Get, "/rest/mirrorfarm/latest/repos/{repositoryId}/work", H::RepositoryWork, Node, NoBody, "What a sync of a repository involves (nodes)"),
    route(Get, "/rest/mirrorfarm/latest/health", H::Health, Anyone, NoBody, "Liveness"),
    route(Put, "/rest/mirrorfarm/latest/repos/{repositoryId}/webhook", H::ConfigureWebhook, Repository(ADMIN), NoBody, "Make a new webhook secret (shown once)"),
    route(Delete, "/rest/mirrorfarm/latest/repos/{repositoryId}/webhook", H::RemoveWebhook, Repository(ADMIN), NoBody, "Remove the webhook secret"),
    route(Post, "/rest/mirrorfarm/latest/repos/{repositoryId}/webhook", H::ReceiveWebhook, WebhookSigner, Input::Webhook, "A push webhook delivery (GitHub, GitLab, Gitea, Bitbucket)"),
    route(Post, "/rest/mirrorfarm/latest/nodes", H::RegisterNode, AdminOnly, Input::Node, "Register a farm node (its token is shown once)"),
    route(Get, "/rest/mirrorfarm/latest/nodes", H::ListNodes, AdminOnly, NoBody, "Farm nodes"),
    route(Post, "/rest/mirrorfarm/latest/nodes/heartbeat", H::Heartbeat, Node, Input::Heartbeat, "A node is alive (and where it serves clones)"),
    route(Post, "/rest/mirrorfarm/latest/nodes/copies", H::HeldCopies, Node, Input::HeldCopies, "Which of a node's copies belong to repositories that are gone"),
    route(Post, "/rest/mirrorfarm/latest/nodes/clone-access", H::CloneAccess, Node, Input::CloneAccess, "May the caller a node forwards clone this repository from it"),
    route(Post, "/rest/mirrorfarm/latest/jobs/lease", H::LeaseJob, Node, Input::Lease, "Lease the next due job"),
    route(Post, "/rest/mirrorfarm/latest/jobs/{jobId}/renew", H::RenewJob, Node, Input::Renew, "Extend a lease"),
    route(Post, "/rest/mirrorfarm/latest/jobs/{jobId}/result", H::ReportResult, Node, Input::Report, "Report a leased job's outcome"),
    route(Post, "/rest/mirrorfarm/latest/jobs/{jobId}/release", H::ReleaseJob, Node, Input::Release, "Give a leased job back unfinished"),
    route(Post, MF_UP, H::CreateUpstream, AdminOnly, Input::Upstream, "Add an upstream server to mirror (its token is sealed, never returned)"),
    route(Get, MF_UP, H::ListUpstreams, AdminOnly, NoBody, "Upstream servers"),
    route(Delete, "/rest/mirrorfarm/latest/upstreamServers/{upstreamId}", H::DeleteUpstream, AdminOnly, NoBody, "Remove an upstream server and its farm repositories"),
    route(Get, BB_UP, H::ListUpstreams, AdminOnly, NoBody, "Upstream servers"),
    route(Get, UP, H::GetUpstream, AdminOnly, NoBody, "An upstream server"),
    route(Get, UP_SETTINGS, H::GetUpstreamSettings, AdminOnly, NoBody, "Which of an upstream's projects are mirrored"),
    route(Put, UP_SETTINGS, H::PutUpstreamSettings, AdminOnly, Input::UpstreamSettings, "Set which projects are mirrored (runs discovery)"),
    route(Get, UP_MODE, H::GetMirrorMode, AdminOnly, NoBody, "The mirror mode"),
    route(Put, UP_MODE, H::PutMirrorMode, AdminOnly, Input::MirrorMode, "Set the mirror mode (runs discovery)"),
    route(Get, UP_PROJECTS, H::GetMirroredProjects, AdminOnly, NoBody, "The selected projects' upstream ids"),
    route(Post, UP_PROJECTS, H::AddMirroredProjects, AdminOnly, Input::ProjectIds, "Mirror these projects too"),
    route(Delete, UP_PROJECTS, H::RemoveMirroredProjects, AdminOnly, Input::ProjectIds, "Stop mirroring these projects (their farm repositories are removed)"),
    route(Post, UP_PROJECT, H::AddMirroredProjects, AdminOnly, NoBody, "Mirror this project too"),
    route(Delete, UP_PROJECT, H::RemoveMirroredProjects, AdminOnly, NoBody, "Stop mirroring this project"),
    route(Get, "/rest/mirroring/latest/upstreamServers/{upstreamId}/progress", H::UpstreamProgress, AdminOnly, NoBody, "How far the farm is with an upstream"),
    route(Get, "/rest/mirroring/latest/upstreamServers/{upstreamId}/farmNodes", H::FarmNodes, AdminOnly, NoBody, "The farm's nodes"),
    route(Get, UP_REPO, H::MirroredRepository, Anyone, NoBody, "Where a mirrored repository can be cloned (REPO_READ on it)"),
    route(Post, "/rest/mirroring/latest/upstreamServers/{upstreamId}/repos/{upstreamRepoId}/synchronization", H::RepairRepository, AdminOnly, NoBody, "Sync one farm repository now (?recreate=true clones it afresh)"),
    route(Get, "/rest/mirroring/latest/upstreamServer", H::GetUpstream, AdminOnly, NoBody, "The (first) upstream server (9.4 name)"),
    route(Get, SYNC_SETTINGS, H::GetUpstreamSettings, AdminOnly, NoBody, "Mirror settings of the first upstream (9.4 name)"),
    route(Put, SYNC_SETTINGS, H::PutUpstreamSettings, AdminOnly, Input::UpstreamSettings, "Set the first upstream's mirror settings (9.4 name)"),
    route(Get, SYNC_MODE, H::GetMirrorMode, AdminOnly, NoBody, "The first upstream's mirror mode (9.4 name)"),
    route(Put, SYNC_MODE, H::PutMirrorMode, AdminOnly, Input::MirrorMode, "Set the first upstream's mirror mode (9.4 name)"),
    route(Get, SYNC_PROJECTS, H::GetMirroredProjects, AdminOnly, NoBody, "The first upstream's selected projects (9.4 name)"),
    route(Post, SYNC_PROJECTS, H::AddMirroredProjects, AdminOnly, Input::ProjectIds, "Mirror these projects of the first upstream too (9.4 name)"),
    route(Post, SYNC_PROJECT, H::AddMirroredProjects, AdminOnly, NoBody, "Mirror this project of the first upstream too (9.4 name)"),
    route(Delete, SYNC_PROJECT, H::RemoveMirroredProjects, AdminOnly, NoBody, "Stop mirroring this project of the first upstream (9.4 name)"),
    route(Get, "/rest/mirroring/latest/progress", H::UpstreamProgress, AdminOnly, NoBody, "The first upstream's progress (9.4 name)"),
    route(Get, "/rest/mirroring/latest/farmNodes", H::FarmNodes, AdminOnly, NoBody, "The farm's nodes (9.4 name)"),
    route(Get, "/rest/mirroring/latest/mirrorRepos/{externalRepositoryId}", H::MirroredRepository, Anyone, NoBody, "Where a repository of the first upstream can be cloned (9.4 name)"),
    route(Get, "/rest/mirroring/latest/supportInfo/repoSyncStatus", H::RepoSyncStatuses, AdminOnly, NoBody, "Every farm repository's sync record and hashes"),
    route(Get, "/rest/mirroring/latest/supportInfo/projects/{projectKey}/repos/{repositorySlug}/repoSyncStatus", H::RepoSyncStatus, AdminOnly, NoBody, "One farm repository's sync record and hashes"),
    route(Get, "/rest/mirroring/latest/supportInfo/refChangesQueue", H::RefChangesQueue, AdminOnly, NoBody, "The farm's waiting and running syncs (capped)"),
    route(Get, "/rest/mirroring/latest/supportInfo/refChangesQueue/count", H::RefChangesCount, AdminOnly, NoBody, "How many syncs wait or run"),
    route(Get, "/rest/mirrorfarm/latest/metrics", H::Metrics, AdminOnly, NoBody, "Prometheus metrics: repositories by status, the queue, each upstream's last sync"),
    route(Get, "/rest/mirroring/latest/repos", H::MirroringRepositories, Anyone, NoBody, "Repositories the caller may see, with their content and metadata hashes"),
    route(Get, "/rest/api/latest/admin/users", H::AdminListUsers, AdminOnly, NoBody, "Users in the detailed view (filter, permission, group)"),
    route(Put, "/rest/api/latest/users", H::UpdateCurrentUser, User, Input::Object, "Change your own display name and e-mail address"),
    route(Put, "/rest/api/latest/users/credentials", H::ChangePassword, User, Input::Object, "Change your own password (oldPassword, password, passwordConfirm)"),
    route(Get, SETTINGS, H::GetUserSettings, SelfOrAdmin, NoBody, "A user's settings (a flat map)"),
    route(Post, SETTINGS, H::MergeUserSettings, SelfOrAdmin, Input::Object, "Merge settings into a user's"),
    route(Post, AVATAR, H::UploadAvatar, SelfOrAdmin, Input::Avatar, "Upload a user's avatar (multipart field avatar; PNG, JPEG or GIF, 1 MB, 1024×1024)"),
    route(Delete, AVATAR, H::DeleteAvatar, SelfOrAdmin, NoBody, "Go back to the default avatar"),
    route(Get, "/users/{userSlug}/avatar.png", H::ServeAvatar, Anyone, NoBody, "A user's avatar image"),
    route(Get, "/rest/api/latest/admin/rate-limit/settings", H::GetRateLimitSettings, User, NoBody, "The rate limit: whether it is on, and the default bucket"),
    route(Put, "/rest/api/latest/admin/rate-limit/settings", H::PutRateLimitSettings, AdminOnly, Input::Object, "Turn the rate limit on or off; set the default bucket"),
    route(Get, RL_USERS, H::ListUserRateLimits, AdminOnly, NoBody, "Users with rate-limit settings of their own (filter)"),
    route(Post, RL_USERS, H::SetUserRateLimits, AdminOnly, Input::Object, "Give users a bucket of their own, or exempt them"),
    route(Get, RL_USER, H::GetUserRateLimit, SelfOrAdmin, NoBody, "A user's own rate-limit settings"),
    route(Put, RL_USER, H::PutUserRateLimit, AdminOnly, Input::Object, "Set a user's own rate-limit settings"),
    route(Delete, RL_USER, H::DeleteUserRateLimit, AdminOnly, NoBody, "Remove a user's own rate-limit settings"),
    route(Get, "/rest/api/latest/admin/rate-limit/history", H::RateLimitHistory, AdminOnly, NoBody, "Who was rate limited, how often and when last (order=NEWEST|FREQUENCY)"),
    route(Get, "/rest/api/latest/admin/banner", H::GetBanner, Anyone, NoBody, "The announcement banner, if one is shown to the caller (204 if none)"),
    route(Put, "/rest/api/latest/admin/banner", H::PutBanner, AdminOnly, Input::Object, "Set the announcement banner (audience AUTHENTICATED or ALL)"),
    route(Delete, "/rest/api/latest/admin/banner", H::DeleteBanner, AdminOnly, NoBody, "Remove the announcement banner"),
    route(Get, "/rest/api/latest/admin/default-branch", H::GetDefaultBranch, User, NoBody, "The default branch of new repositories (404 if unset)"),
    route(Put, "/rest/api/latest/admin/default-branch", H::PutDefaultBranch, AdminOnly, Input::Object, "Set the default branch of new repositories"),
    route(Delete, "/rest/api/latest/admin/default-branch", H::DeleteDefaultBranch, AdminOnly, NoBody, "Unset the default branch of new repositories"),
    route(Get, "/rest/policies/latest/admin/repos/archive", H::GetArchivePolicy, User, NoBody, "Who may archive a repository"),
    route(Put, "/rest/policies/latest/admin/repos/archive", H::PutArchivePolicy, SysAdmin, Input::Object, "Set who may archive a repository"),
    route(Get, "/rest/policies/latest/admin/repos/delete", H::GetDeletePolicy, User, NoBody, "Who may delete a repository"),
    route(Put, "/rest/policies/latest/admin/repos/delete", H::PutDeletePolicy, SysAdmin, Input::Object, "Set who may delete a repository"),
    route(Put, BB_REPO, H::UpdateRepository, Repository(ADMIN), Input::Object, "Archive or unarchive a repository (archive policy); change its description, visibility, forking, default branch"),
    route(Post, LABELS, H::AddLabel, Repository(ADMIN), Input::Object, "Label a repository"),
    route(Get, LABELS, H::RepositoryLabels, Repository(READ), NoBody, "A repository's labels"),
    route(Delete, "/rest/api/latest/projects/{projectKey}/repos/{repositorySlug}/labels/{labelName}", H::RemoveLabel, Repository(ADMIN), NoBody, "Take a label off a repository"),
    route(Get, "/rest/api/latest/labels", H::ListLabels, User, NoBody, "Labels on repositories the caller may see (prefix)"),
    route(Get, "/rest/api/latest/labels/{labelName}", H::GetLabel, User, NoBody, "A label"),
    route(Get, "/rest/api/latest/labels/{labelName}/labeled", H::Labeled, User, NoBody, "Repositories with a label (type=REPOSITORY)"),
    route(Get, "/rest/api/latest/logs/logger/{loggerName}", H::GetLogger, AdminOnly, NoBody, "A logger's effective level"),
    route(Put, "/rest/api/latest/logs/logger/{loggerName}/{levelName}", H::SetLogger, AdminOnly, NoBody, "Set a logger's level (the edge at once, farm nodes at their next heartbeat)"),
    route(Get, "/rest/api/latest/logs/rootLogger", H::GetRootLogger, AdminOnly, NoBody, "The root logger's level"),
    route(Put, "/rest/api/latest/logs/rootLogger/{levelName}", H::SetRootLogger, AdminOnly, NoBody, "Set the root logger's level"),
    route(Get, "/rest/api/latest/admin/license", H::GetLicense, AdminOnly, NoBody, "The installed license and the user count (404 if none)"),
    route(Post, "/rest/api/latest/admin/license", H::PostLicense, SysAdmin, Input::Object, "Install a license (Ed25519-signed; 409 if undecodable or badly signed)"),
    route(Get, "/rest/api/latest/application-properties", H::ApplicationProperties, Anyone, NoBody, "Version and build (every value a string)"),
    route(Get, "/rest/api/latest/admin/cluster", H::Cluster, SysAdmin, NoBody, "The edge and the farm nodes"),
    route(Get, MAIL, H::GetMailServer, AdminOnly, NoBody, "The mail server (404 if none; never the password)"),
    route(Put, MAIL, H::PutMailServer, SysAdmin, Input::Object, "Configure the mail server (the password is sealed; one not sent is kept)"),
    route(Delete, MAIL, H::DeleteMailServer, SysAdmin, NoBody, "Remove the mail server (queued mail waits for a new one)"),
    route(Get, SENDER, H::GetSenderAddress, AdminOnly, NoBody, "The From address of the instance's mail (404 if unset)"),
    route(Put, SENDER, H::PutSenderAddress, AdminOnly, Input::Address, "Set the From address (a JSON string)"),
    route(Delete, SENDER, H::DeleteSenderAddress, AdminOnly, NoBody, "Clear the From address"),
    route(Post, "/rest/mirrorfarm/latest/admin/mail-server/test", H::TestMail, SysAdmin, Input::Object, "Send a test mail (to, or you) through a farm node and answer the SMTP server's reply"),
    route(Get, "/rest/mirrorfarm/latest/admin/mail", H::ListMail, AdminOnly, NoBody, "Recent mail jobs and how each ended (limit)"),
    route(Get, NOTIFY, H::GetNotificationSettings, AdminOnly, NoBody, "When mirrors count as failing, and the mail throttle"),
    route(Put, NOTIFY, H::PutNotificationSettings, AdminOnly, Input::Object, "Set failureThreshold and throttleMinutes"),
    route(Post, "/rest/api/latest/hook-scripts", H::CreateHookScript, SysAdmin, Input::HookScript, "Upload a hook script (multipart content, name, description, type PRE|POST)"),
    route(Get, HOOK, H::GetHookScript, AdminOnly, NoBody, "A hook script"),
    route(Put, HOOK, H::UpdateHookScript, SysAdmin, Input::HookScript, "Change a hook script (multipart; 409 name taken, 422 nothing to change)"),
    route(Delete, HOOK, H::DeleteHookScript, SysAdmin, NoBody, "Delete a hook script (detached everywhere)"),
    route(Get, "/rest/api/latest/hook-scripts/{scriptId}/content", H::HookScriptContent, SysAdmin, NoBody, "A hook script's content"),
    route(Get, "/rest/mirrorfarm/latest/nodes/hook-scripts/{scriptId}", H::HookScriptContent, Node, NoBody, "A hook script's content, for the nodes that run it"),
    route(Get, PROJECT_HOOKS, H::ListHookConfigs, Project(ADMIN), NoBody, "Hook scripts attached to a project"),
    route(Put, PROJECT_HOOK, H::AttachHookScript, Project(ADMIN), Input::Object, "Attach a hook script to a project ({triggerIds})"),
    route(Delete, PROJECT_HOOK, H::DetachHookScript, Project(ADMIN), NoBody, "Detach a hook script from a project"),
    route(Get, REPO_HOOKS, H::ListHookConfigs, Repository(ADMIN), NoBody, "Hook scripts attached to a repository"),
    route(Put, REPO_HOOK, H::AttachHookScript, Repository(ADMIN), Input::Object, "Attach a hook script to a repository ({triggerIds})"),
    route(Delete, REPO_HOOK, H::DetachHookScript, Repository(ADMIN), NoBody, "Detach a hook script from a repository"),
    route(Get, "/rest/auditing/latest/events", H::AuditEvents, SysAdmin, NoBody, "Audit events, newest first (from, to, offset, pageCursor, limit, userIds, categories, actions, affectedObject, search)"),
    route(Get, RETENTION, H::GetAuditRetention, SysAdmin, NoBody, "How long audit events are kept"),
    route(Put, RETENTION, H::PutAuditRetention, SysAdmin, Input::Retention, "Set how long audit events are kept (1 day to 100 years)"),
    route(Delete, "/rest/audit/latest/notification-settings/retention-config-review", H::DismissRetentionReview, User, NoBody, "Dismiss the audit log's retention-config-review notification (for the caller)"),
    route(Get, MESH_NODES, H::MeshNodes, SysAdmin, NoBody, "Farm nodes as Mesh nodes"),
    route(Post, MESH_NODES, H::RegisterMeshNode, SysAdmin, Input::MeshNode, "Register a node (its token is shown once)"),
    route(Get, MESH_NODE, H::MeshNode, SysAdmin, NoBody, "One Mesh node"),
    route(Delete, MESH_NODE, H::DeleteMeshNode, SysAdmin, NoBody, "Remove a node (409 while it holds the only current copy of a repository, unless force=true)"),
    route(Put, MESH_NODE, H::UpdateMeshNode, SysAdmin, Input::MeshNode, "Rename a node or set its state (DRAINING moves its copies to the other nodes)"),
    route(Get, "/rest/api/latest/admin/git/mesh/diagnostics/connectivity", H::MeshConnectivity, SysAdmin, NoBody, "Round trips each node measured to the edge and to the other nodes"),
    route(Get, "/rest/api/latest/admin/git/mesh/config/control-plane.pem", H::ControlPlanePem, SysAdmin, NoBody, "The public key nodes verify the edge's signatures with (PEM)"),
    route(Get, "/rest/api/latest/admin/git/mesh/support-zips", H::MeshSupportZips, SysAdmin, NoBody, "A zip of every reachable node's support zip (built now unless one is fresh)"),
    route(Get, "/rest/api/latest/admin/git/mesh/support-zips/{nodeId}", H::MeshSupportZip, SysAdmin, NoBody, "One node's support zip: logs, configuration without secrets, versions, disk use"),
    route(Put, "/rest/mirrorfarm/latest/nodes/support-zips/{zipId}", H::UploadSupportZip, Node, Input::SupportZip, "A support zip the node built (nodes)"),
    route(Post, "/rest/api/latest/migration/mesh", H::StartMeshMigration, SysAdmin, Input::MeshMigration, "Move repositories' copies onto chosen nodes (repositoryIds, projectIds, all, nodeIds)"),
    route(Post, "/rest/api/latest/migration/mesh/preview", H::PreviewMeshMigration, SysAdmin, Input::MeshMigration, "The repositories a Mesh migration would move"),
    route(Get, "/rest/api/latest/migration/mesh/repos", H::MeshMigrationRepos, SysAdmin, NoBody, "Repositories with their Mesh migration state (migrationId, state)"),
    route(Get, "/rest/api/latest/migration/mesh/summaries", H::MeshMigrationSummaries, SysAdmin, NoBody, "Mesh migrations, newest first"),
    route(Get, "/rest/api/latest/migration/mesh/summary", H::ActiveMeshMigration, SysAdmin, NoBody, "The Mesh migration in progress"),
    route(Get, "/rest/api/latest/migration/mesh/{jobId}", H::MeshMigration, SysAdmin, NoBody, "One Mesh migration"),
    route(Get, "/rest/api/latest/migration/mesh/{jobId}/summary", H::MeshMigrationSummary, SysAdmin, NoBody, "One Mesh migration's summary"),
    route(Post, "/rest/api/latest/migration/mesh/{jobId}/cancel", H::CancelMeshMigration, SysAdmin, NoBody, "Cancel a Mesh migration (moves under way finish whole)"),
    route(Get, "/rest/api/latest/migration/mesh/{jobId}/messages", H::MeshMigrationMessages, SysAdmin, NoBody, "A Mesh migration's messages (severity)"),
    route(Post, "/rest/api/latest/migration/exports", H::StartExport, AdminOnly, Input::Export, "Start exporting the selected repositories to an archive in R2 (at most 2 at once, else 503)"),
    route(Post, "/rest/api/latest/migration/exports/preview", H::PreviewExport, AdminOnly, Input::Export, "The projects and repositories an export request selects"),
    route(Get, EXPORT, H::GetMigrationJob, AdminOnly, NoBody, "An export job: state, progress, archive"),
    route(Post, "/rest/api/latest/migration/exports/{jobId}/cancel", H::CancelMigrationJob, AdminOnly, NoBody, "Cancel an export (409 once it ended or was cancelled)"),
    route(Get, "/rest/api/latest/migration/exports/{jobId}/messages", H::MigrationMessages, AdminOnly, NoBody, "An export's messages (severity, repeatable)"),
    route(Post, "/rest/api/latest/migration/imports", H::StartImport, AdminOnly, Input::Import, "Start importing an archive from R2 (one at a time, else 503)"),
    route(Get, IMPORT, H::GetMigrationJob, AdminOnly, NoBody, "An import job: state, progress"),
    route(Post, "/rest/api/latest/migration/imports/{jobId}/cancel", H::CancelMigrationJob, AdminOnly, NoBody, "Cancel an import; it stops between repositories (409 once it ended or was cancelled)"),
    route(Get, "/rest/api/latest/migration/imports/{jobId}/messages", H::MigrationMessages, AdminOnly, NoBody, "An import's messages (severity, repeatable)"),
    route(Post, "/rest/mirrorfarm/latest/nodes/migration/{jobId}/progress", H::MigrationProgress, Node, Input::MigrationProgress, "A node's progress on an export or import it runs (answers the job's state)"),
    route(Post, "/rest/mirrorfarm/latest/nodes/migration/{jobId}/repositories", H::ImportRepository, Node, Input::ImportedRepository, "Create one imported repository whole, in one batch (CREATED, SKIPPED or CANCELLED)"),
    route(Put, NODE_ARCHIVE, H::UploadArchive, Node, Input::Stream, "An export's archive (tar), streamed into R2"),
    route(Get, NODE_ARCHIVE, H::DownloadArchive, Node, NoBody, "An import's archive, streamed from R2"),
    route(Get, "/rest/api/latest/admin/groups", H::ListGroups, User, NoBody, "Groups (filter)"),
    route(Post, "/rest/api/latest/admin/groups", H::CreateGroup, AdminOnly, NoBody, "Create a group (?name=; 409 if taken)"),
    route(Delete, "/rest/api/latest/admin/groups", H::DeleteGroup, AdminOnly, NoBody, "Delete a group with its memberships and grants (?name=)"),
    route(Post, "/rest/api/latest/admin/groups/add-users", H::AddUsersToGroup, AdminOnly, Input::Object, "Add users to a group ({group, users})"),
    route(Post, "/rest/api/latest/admin/users/add-groups", H::AddGroupsToUser, AdminOnly, Input::Object, "Add a user to groups ({user, groups})"),
    route(Post, "/rest/api/latest/admin/groups/remove-user", H::RemoveUserFromGroup, AdminOnly, Input::Object, "Take a user out of a group ({context: group, itemName: user})"),
    route(Post, "/rest/api/latest/admin/users/remove-group", H::RemoveGroupFromUser, AdminOnly, Input::Object, "Take a user out of a group ({context: user, itemName: group})"),
    route(Get, "/rest/api/latest/admin/groups/more-members", H::GroupMembers, User, NoBody, "A group's members (context=group, filter)"),
    route(Get, "/rest/api/latest/admin/groups/more-non-members", H::GroupNonMembers, User, NoBody, "Users outside a group (context=group, filter)"),
    route(Get, PROJECT_GROUPS, H::ProjectGroupGrants, Project(ADMIN), NoBody, "Groups granted a project permission (filter)"),
    route(Put, PROJECT_GROUPS, H::GrantProjectGroup, Project(ADMIN), NoBody, "Grant groups a project permission (?name=…&permission=)"),
    route(Delete, PROJECT_GROUPS, H::RevokeProjectGroup, Project(ADMIN), NoBody, "Revoke groups' project permissions (?name=…)"),
    route(Get, REPO_GROUPS, H::RepositoryGroupGrants, Repository(ADMIN), NoBody, "Groups granted a repository permission (filter)"),
    route(Put, REPO_GROUPS, H::GrantRepositoryGroup, Repository(ADMIN), NoBody, "Grant groups a repository permission (?name=…&permission=)"),
    route(Delete, REPO_GROUPS, H::RevokeRepositoryGroup, Repository(ADMIN), NoBody, "Revoke groups' repository permissions (?name=…)"),
    route(Get, GL_PROTECTED, H::ListProtectedBranches, Repository(READ), NoBody, "A project's protected branches (search)"),
    route(Post, GL_PROTECTED, H::ProtectBranch, Repository(ADMIN), Input::ProtectedBranch, "Protect a branch name or wildcard pattern (409 if already protected)"),
    route(Get, GL_PROTECTED_ONE, H::GetProtectedBranch, Repository(READ), NoBody, "One protected branch rule"),
    route(Delete, GL_PROTECTED_ONE, H::UnprotectBranch, Repository(ADMIN), NoBody, "Unprotect a branch name or pattern"),
    route(Put, "/api/v4/projects/{id}", H::UpdateGitLabProject, Repository(ADMIN), Input::GitLabProject, "Set up or change the pull mirror through the Projects API (import_url, mirror, …)"),
];

const MESH_NODES: &str = "/rest/api/latest/admin/git/mesh/nodes";
const MESH_NODE: &str = "/rest/api/latest/admin/git/mesh/nodes/{nodeId}";

/// Whether the shell must leave the body of `method path` unread, for the service to have it
/// streamed to blob storage (see [`super::BlobTransfer::Store`]).
pub fn streams_request_body(method: Method, path: &str) -> bool {
    matches!(resolve(method, path), Resolution::Found(route, ..) if route.input == Input::Stream)
}

/// Path parameters captured by a route, still percent-encoded.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Params(Vec<(&'static str, String)>);

impl Params {
    /// The raw (percent-encoded) value of a parameter the route declares.
    pub fn raw(&self, name: &str) -> &str {
        self.0.iter().find(|(k, _)| *k == name).map(|(_, v)| v.as_str()).unwrap_or_default()
    }

    /// Every parameter, percent-decoded (a value that is not UTF-8 is kept as sent).
    pub fn decoded(&self) -> Vec<(&'static str, String)> {
        self.0.iter().map(|(k, v)| (*k, super::decode_segment(v).unwrap_or_else(|| v.clone()))).collect()
    }
}

/// How a request path resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Resolution {
    /// A route matched.
    Found(&'static Route, Params, Dialect),
    /// The path exists, but not for this method.
    WrongMethod(Dialect),
    /// No such path.
    Missing(Dialect),
}

/// The dialect of a path, by its prefix.
pub(super) fn dialect_of(path: &str) -> Dialect {
    if path.starts_with("/api/") { Dialect::GitLab } else { Dialect::Bitbucket }
}

/// Canonical form of a request path: `1.0` → `latest`, no trailing slash.
pub(super) fn normalize(path: &str) -> String {
    let trimmed = if path.len() > 1 { path.trim_end_matches('/') } else { path };
    let mut segments: Vec<&str> = trimmed.split('/').collect();
    if segments.get(1) == Some(&"rest") && segments.get(3) == Some(&"1.0") {
        segments[3] = "latest";
    }
    segments.join("/")
}

/// Finds the route for a method and path.
pub fn resolve(method: Method, path: &str) -> Resolution {
    let path = normalize(path);
    let dialect = dialect_of(&path);
    let mut path_matched = false;
    for route in ROUTES {
        if let Some(params) = match_pattern(route.path, &path) {
            if route.method == method {
                return Resolution::Found(route, params, dialect);
            }
            path_matched = true;
        }
    }
    if path_matched { Resolution::WrongMethod(dialect) } else { Resolution::Missing(dialect) }
}

fn match_pattern(pattern: &'static str, path: &str) -> Option<Params> {
    let mut pat = pattern.split('/');
    let mut segs = path.split('/');
    let mut params = Vec::new();
    loop {
        match (pat.next(), segs.next()) {
            (None, None) => return Some(Params(params)),
            (Some(p), Some(s)) if p.starts_with('{') => {
                if s.is_empty() {
                    return None;
                }
                params.push((p.trim_start_matches('{').trim_end_matches('}'), s.to_owned()));
            }
            (Some(p), Some(s)) if p == s => {}
            _ => return None,
        }
    }
}

#[cfg(test)]
mod tests {
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    use super::*;

    #[test]
    fn resolves_with_aliases_and_encoded_ids() {
        let Resolution::Found(r, params, d) = resolve(Method::Get, "/api/v4/projects/MF%2Frepo/remote_mirrors/7/")
        else {
            panic!("expected a match")
        };
        assert_eq!((r.handler, d), (Handler::GetRemoteMirror, Dialect::GitLab));
        assert_eq!((params.raw("id"), params.raw("mirror_id")), ("MF%2Frepo", "7"));
        assert!(matches!(
            resolve(Method::Post, "/rest/api/1.0/projects"),
            Resolution::Found(Route { handler: Handler::CreateProject, .. }, _, Dialect::Bitbucket)
        ));
        assert!(matches!(
            resolve(Method::Get, "/rest/mirrorfarm/1.0/health"),
            Resolution::Found(Route { handler: Handler::Health, .. }, ..)
        ));
    }

    #[test]
    fn distinguishes_wrong_method_from_missing() {
        assert_eq!(
            resolve(Method::Post, "/api/v4/projects/1/remote_mirrors/2"),
            Resolution::WrongMethod(Dialect::GitLab)
        );
        assert_eq!(resolve(Method::Get, "/api/v4/nope"), Resolution::Missing(Dialect::GitLab));
        assert_eq!(resolve(Method::Get, "/rest/api/latest/projects//repos"), Resolution::Missing(Dialect::Bitbucket));
    }

    #[test]
    fn every_route_is_reachable() {
        for route in ROUTES {
            let path = route.path.replace(['{', '}'], "");
            assert!(matches!(resolve(route.method, &path), Resolution::Found(r, ..) if r == route), "{}", route.path);
        }
    }
}
