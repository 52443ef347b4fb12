//! The OpenAPI 3.1 document of everything served, made from the route table (paths, methods,
//! who may call, bodies) and the schemas derived from the DTOs the handlers send, so it cannot
//! drift from what runs. Built natively with the `openapi` feature (scripts/build runs the
//! `openapi` example) and served by the Worker as a static file at
//! `/rest/mirrorfarm/1.0/openapi.json`; the Worker itself carries none of it.

use schemars::generate::SchemaSettings;
use schemars::{Schema, SchemaGenerator};
use serde_json::{Map, Value, json};

use super::gitlab::{GitLabProject, GitLabUser};
use super::identity::TokenDto;
use super::response::{BitbucketErrors, GitLabError};
use super::routes::{Access, Handler, Input, ROUTES, Route, dialect_of};
use super::{Dialect, Health, Method};
use crate::farm;
use crate::identity::{TokenParams, UserDto, UserParams};
use crate::mirrors::{MirrorParams, PullMirrorDto, PullMirrorParams, RemoteMirrorDto};
use crate::nodes::{
    JobReport, LeaseRenewed, LeaseRequest, LeasedJob, NodeDto, NodeParams, RegisteredNode, ReleaseRequest,
    RenewRequest, RepositoryWork, ResultRecorded, SyncQueued,
};
use crate::paging::PageOf;
use crate::queue::Job;
use crate::registry::{ProjectDto, ProjectParams, RepositoryDto, RepositoryParams};
use crate::status::RepositoryStatus;
use crate::webhooks::{WebhookAnswer, WebhookSecret};

/// A successful answer: its status and, if it has a body, the body's schema.
type Answer = (u16, Option<Schema>);

/// `POST …/migration/imports`.
#[derive(schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
#[allow(dead_code)] // Only its schema is used.
struct ImportParams {
    /// The archive's R2 key: relative to `migration/import/`, or a key under `migration/import/`
    /// or `migration/export/`.
    archive_path: String,
}

/// What each handler answers when it succeeds. An exhaustive match: a new handler does not
/// compile until it says what it sends.
fn answers(handler: Handler, g: &mut SchemaGenerator) -> Vec<Answer> {
    use Handler as H;
    let one = |status: u16, schema: Schema| vec![(status, Some(schema))];
    match handler {
        H::GitLabCurrentUser => one(200, g.subschema_for::<GitLabUser>()),
        H::GitLabProject => one(200, g.subschema_for::<GitLabProject>()),
        H::ListRemoteMirrors => one(200, g.subschema_for::<Vec<RemoteMirrorDto>>()),
        H::CreateRemoteMirror => one(201, g.subschema_for::<RemoteMirrorDto>()),
        H::GetRemoteMirror | H::UpdateRemoteMirror => one(200, g.subschema_for::<RemoteMirrorDto>()),
        H::GetPullMirror | H::UpdatePullMirror | H::StartPullMirror => one(200, g.subschema_for::<PullMirrorDto>()),
        H::ListProjects => one(200, g.subschema_for::<PageOf<ProjectDto>>()),
        H::CreateProject => one(201, g.subschema_for::<ProjectDto>()),
        H::GetProject => one(200, g.subschema_for::<ProjectDto>()),
        H::ListProjectRepositories | H::ListRepositories => one(200, g.subschema_for::<PageOf<RepositoryDto>>()),
        H::CreateRepository => one(201, g.subschema_for::<RepositoryDto>()),
        H::GetRepository => one(200, g.subschema_for::<RepositoryDto>()),
        H::DeleteRepository => vec![(202, None)],
        H::DeleteUser | H::GetUser => one(200, g.subschema_for::<UserDto>()),
        H::ListUsers => one(200, g.subschema_for::<PageOf<UserDto>>()),
        H::CreateToken => one(200, g.subschema_for::<TokenDto>()),
        H::ListSshKeys => one(200, g.subschema_for::<PageOf<crate::ssh::SshKeyDto>>()),
        H::AddSshKey | H::GetSshKey => one(200, g.subschema_for::<crate::ssh::SshKeyDto>()),
        H::GitLabListKeys => one(200, g.subschema_for::<Vec<crate::ssh::GitLabKeyDto>>()),
        H::GitLabAddKey => one(201, g.subschema_for::<crate::ssh::GitLabKeyDto>()),
        H::GitLabGetKey => one(200, g.subschema_for::<crate::ssh::GitLabKeyDto>()),
        H::DeleteSshKey | H::GitLabDeleteKey => vec![(204, None)],
        H::ListTokens => one(200, g.subschema_for::<PageOf<TokenDto>>()),
        H::ListJobs => one(200, g.subschema_for::<PageOf<Job>>()),
        H::RepositoryStatus => one(200, g.subschema_for::<RepositoryStatus>()),
        H::SyncRepository => one(202, g.subschema_for::<SyncQueued>()),
        H::RepositoryWork => one(200, g.subschema_for::<RepositoryWork>()),
        H::Health => one(200, g.subschema_for::<Health>()),
        H::ConfigureWebhook => one(200, g.subschema_for::<WebhookSecret>()),
        H::ReceiveWebhook => {
            let answer = g.subschema_for::<WebhookAnswer>();
            vec![(200, Some(answer.clone())), (202, Some(answer))]
        }
        H::RegisterNode => one(201, g.subschema_for::<RegisteredNode>()),
        H::ListNodes => one(200, g.subschema_for::<PageOf<NodeDto>>()),
        H::Heartbeat => one(200, g.subschema_for::<crate::nodes::HeartbeatAnswer>()),
        H::CloneAccess => one(200, g.subschema_for::<crate::nodes::CloneAccess>()),
        H::HeldCopies => one(200, g.subschema_for::<crate::nodes::CopiesGone>()),
        H::LeaseJob => vec![(200, Some(g.subschema_for::<LeasedJob>())), (204, None)],
        H::RenewJob => one(200, g.subschema_for::<LeaseRenewed>()),
        H::ReportResult => one(200, g.subschema_for::<ResultRecorded>()),
        H::CreateFork => one(201, g.subschema_for::<RepositoryDto>()),
        H::ListForks => one(200, g.subschema_for::<PageOf<RepositoryDto>>()),
        H::ForkSyncStatus => one(200, g.subschema_for::<crate::forks::RefSyncStatus>()),
        H::SetForkSync => vec![(200, Some(g.subschema_for::<crate::forks::RefSyncStatus>())), (204, None)],
        H::SynchronizeRef => vec![(200, Some(g.subschema_for::<crate::forks::RejectedRef>())), (204, None)],
        H::DeleteRemoteMirror
        | H::SyncRemoteMirror
        | H::DeleteProject
        | H::GrantProject
        | H::RevokeProject
        | H::GrantRepository
        | H::RevokeRepository
        | H::GrantGlobal
        | H::RevokeGlobal
        | H::CreateUser
        | H::DeleteToken
        | H::RemoveWebhook
        | H::ReleaseJob => vec![(204, None)],
        // Only mirrors that authenticate with an SSH key have one (404 for the others).
        H::RemoteMirrorPublicKey => one(200, g.subschema_for::<crate::ssh::MirrorPublicKey>()),
        H::CreateUpstream => one(201, g.subschema_for::<farm::UpstreamServerDto>()),
        H::ListUpstreams => one(200, g.subschema_for::<PageOf<farm::UpstreamServerDto>>()),
        H::GetUpstream => one(200, g.subschema_for::<farm::UpstreamServerDto>()),
        H::DeleteUpstream | H::RemoveMirroredProjects => vec![(204, None)],
        H::GetUpstreamSettings | H::PutUpstreamSettings => one(200, g.subschema_for::<farm::UpstreamSettingsDto>()),
        H::GetMirrorMode | H::PutMirrorMode => one(200, g.subschema_for::<farm::MirrorMode>()),
        H::GetMirroredProjects | H::AddMirroredProjects => one(200, g.subschema_for::<Vec<String>>()),
        H::UpstreamProgress => one(200, g.subschema_for::<farm::SyncProgress>()),
        H::FarmNodes => one(200, g.subschema_for::<Vec<farm::ClusterNode>>()),
        H::MirroredRepository => one(200, g.subschema_for::<farm::MirroredRepository>()),
        H::RepairRepository => vec![(202, None)],
        H::RepoSyncStatuses => one(200, g.subschema_for::<PageOf<farm::RepoSyncStatus>>()),
        H::RepoSyncStatus => one(200, g.subschema_for::<farm::RepoSyncStatus>()),
        H::RefChangesQueue => one(200, g.subschema_for::<farm::RefSyncQueue>()),
        H::RefChangesCount => one(200, g.subschema_for::<u64>()),
        H::MirroringRepositories => one(200, g.subschema_for::<PageOf<super::farm::EnrichedRepository>>()),
        H::Metrics => one(200, schemars::json_schema!({ "type": "string" })),
        H::AdminListUsers => one(200, g.subschema_for::<PageOf<super::users::DetailedUserDto>>()),
        H::UpdateCurrentUser => one(200, g.subschema_for::<UserDto>()),
        H::GetUserSettings => one(200, schemars::json_schema!({ "type": "object" })),
        H::UploadAvatar => one(201, g.subschema_for::<super::users::AvatarHref>()),
        H::DeleteAvatar => one(200, g.subschema_for::<super::users::AvatarHref>()),
        H::ServeAvatar => one(200, schemars::json_schema!({ "type": "string", "format": "binary" })),
        H::GetRateLimitSettings | H::PutRateLimitSettings => {
            one(200, g.subschema_for::<crate::admin::RateLimitSettings>())
        }
        H::ListUserRateLimits => one(200, g.subschema_for::<PageOf<super::admin::UserRateLimitDto>>()),
        H::SetUserRateLimits => one(200, g.subschema_for::<Vec<super::admin::UserRateLimitDto>>()),
        H::GetUserRateLimit | H::PutUserRateLimit => one(200, g.subschema_for::<super::admin::UserRateLimitDto>()),
        H::RateLimitHistory => one(200, g.subschema_for::<PageOf<super::admin::RejectionDto>>()),
        H::GetBanner => vec![(200, Some(g.subschema_for::<crate::admin::Banner>())), (204, None)],
        H::GetDefaultBranch => one(200, g.subschema_for::<super::admin::BranchRef>()),
        H::GetArchivePolicy | H::PutArchivePolicy | H::GetDeletePolicy | H::PutDeletePolicy => {
            one(200, g.subschema_for::<crate::admin::Policy>())
        }
        H::UpdateRepository => one(200, g.subschema_for::<RepositoryDto>()),
        H::AddLabel | H::GetLabel => one(200, g.subschema_for::<super::admin::LabelDto>()),
        H::RepositoryLabels | H::ListLabels => one(200, g.subschema_for::<PageOf<super::admin::LabelDto>>()),
        H::Labeled => one(200, g.subschema_for::<PageOf<super::admin::LabeledRepository>>()),
        H::GetLogger | H::GetRootLogger => one(200, g.subschema_for::<super::admin::LoggerDto>()),
        H::GetLicense | H::PostLicense => one(200, g.subschema_for::<crate::admin::license::LicenseDto>()),
        H::ApplicationProperties => one(200, g.subschema_for::<crate::admin::ApplicationProperties>()),
        H::Cluster => one(200, g.subschema_for::<super::admin::ClusterDto>()),
        H::GetMailServer | H::PutMailServer => one(200, g.subschema_for::<crate::mail::MailServerDto>()),
        H::GetSenderAddress | H::PutSenderAddress => one(200, g.subschema_for::<String>()),
        H::TestMail => one(200, g.subschema_for::<crate::mail::MailTestResult>()),
        H::ListMail => one(200, g.subschema_for::<Vec<crate::queue::Job>>()),
        H::CreateHookScript | H::GetHookScript | H::UpdateHookScript => {
            one(200, g.subschema_for::<crate::hooks::HookScript>())
        }
        H::HookScriptContent => one(200, schemars::json_schema!({ "type": "string", "format": "binary" })),
        H::ListHookConfigs => one(200, g.subschema_for::<PageOf<crate::hooks::HookScriptConfig>>()),
        H::AttachHookScript => one(200, g.subschema_for::<crate::hooks::HookScriptConfig>()),
        H::GetNotificationSettings | H::PutNotificationSettings => {
            one(200, g.subschema_for::<crate::mail::notify::NotificationSettings>())
        }
        H::AuditEvents => one(200, g.subschema_for::<super::audit::AuditPage>()),
        H::GetAuditRetention | H::PutAuditRetention => one(200, g.subschema_for::<super::audit::RetentionConfig>()),
        H::DismissRetentionReview => vec![(204, None)],
        H::MeshNodes => one(200, g.subschema_for::<Vec<crate::mesh::MeshNode>>()),
        H::RegisterMeshNode => one(200, g.subschema_for::<crate::mesh::RegisteredMeshNode>()),
        H::MeshNode | H::UpdateMeshNode => one(200, g.subschema_for::<crate::mesh::MeshNode>()),
        H::MeshConnectivity => one(200, g.subschema_for::<crate::mesh::ConnectivityReport>()),
        H::ControlPlanePem => one(200, schemars::json_schema!({ "type": "string" })),
        H::MeshSupportZips | H::MeshSupportZip => {
            one(200, schemars::json_schema!({ "type": "string", "format": "binary" }))
        }
        H::UploadSupportZip | H::CancelMeshMigration | H::DeleteMeshNode => vec![(204, None)],
        H::StartMeshMigration | H::MeshMigration => one(200, g.subschema_for::<crate::migration::MigrationJobDto>()),
        H::MeshMigrationSummary | H::ActiveMeshMigration => {
            one(200, g.subschema_for::<crate::mesh::migration::MeshMigrationSummary>())
        }
        H::PreviewMeshMigration => one(200, schemars::json_schema!({ "type": "object" })),
        H::MeshMigrationRepos => one(200, schemars::json_schema!({ "type": "object" })),
        H::MeshMigrationMessages => one(200, g.subschema_for::<PageOf<crate::migration::MigrationMessageDto>>()),
        H::MeshMigrationSummaries => {
            one(200, g.subschema_for::<PageOf<crate::mesh::migration::MeshMigrationSummary>>())
        }
        H::StartExport | H::StartImport | H::GetMigrationJob => {
            one(200, g.subschema_for::<crate::migration::MigrationJobDto>())
        }
        H::PreviewExport => one(200, g.subschema_for::<crate::migration::archive::Preview>()),
        H::CancelMigrationJob | H::UploadArchive => vec![(204, None)],
        H::MigrationMessages => one(200, g.subschema_for::<PageOf<crate::migration::MigrationMessageDto>>()),
        H::MigrationProgress => one(200, g.subschema_for::<crate::migration::archive::MigrationAck>()),
        H::ImportRepository => one(200, g.subschema_for::<crate::migration::archive::ImportAnswer>()),
        H::DownloadArchive => one(200, schemars::json_schema!({ "type": "string", "format": "binary" })),
        H::ListGroups => one(200, g.subschema_for::<PageOf<crate::identity::groups::GroupDto>>()),
        H::CreateGroup | H::DeleteGroup => one(200, g.subschema_for::<crate::identity::groups::GroupDto>()),
        H::AddUsersToGroup | H::AddGroupsToUser | H::RemoveUserFromGroup | H::RemoveGroupFromUser => {
            vec![(200, None)]
        }
        H::GroupMembers | H::GroupNonMembers => one(200, g.subschema_for::<PageOf<super::users::DetailedUserDto>>()),
        H::ProjectGroupGrants | H::RepositoryGroupGrants => {
            one(200, g.subschema_for::<PageOf<crate::identity::groups::PermittedGroupDto>>())
        }
        H::GrantProjectGroup | H::RevokeProjectGroup | H::GrantRepositoryGroup | H::RevokeRepositoryGroup => {
            vec![(204, None)]
        }
        H::ListProtectedBranches => one(200, g.subschema_for::<Vec<crate::mirrors::protected::ProtectedBranchDto>>()),
        H::GetProtectedBranch => one(200, g.subschema_for::<crate::mirrors::protected::ProtectedBranchDto>()),
        H::ProtectBranch => one(201, g.subschema_for::<crate::mirrors::protected::ProtectedBranchDto>()),
        H::UnprotectBranch => vec![(204, None)],
        H::UpdateGitLabProject => one(200, g.subschema_for::<GitLabProject>()),
        H::ChangePassword
        | H::MergeUserSettings
        | H::DeleteUserRateLimit
        | H::PutBanner
        | H::DeleteBanner
        | H::PutDefaultBranch
        | H::DeleteDefaultBranch
        | H::RemoveLabel
        | H::SetLogger
        | H::SetRootLogger
        | H::DeleteMailServer
        | H::DeleteSenderAddress
        | H::DeleteHookScript
        | H::DetachHookScript => vec![(204, None)],
    }
}

/// The schema of a route's typed input, if it reads one. An exhaustive match: a new input does
/// not compile until it is documented.
fn request(route: &Route, g: &mut SchemaGenerator) -> Option<Schema> {
    Some(match route.input {
        Input::None => return None,
        Input::RemoteMirror => g.subschema_for::<MirrorParams>(),
        Input::PullMirror => g.subschema_for::<PullMirrorParams>(),
        Input::Project => g.subschema_for::<ProjectParams>(),
        Input::Repository => g.subschema_for::<RepositoryParams>(),
        Input::User => g.subschema_for::<UserParams>(),
        Input::Token => g.subschema_for::<TokenParams>(),
        Input::Node => g.subschema_for::<NodeParams>(),
        Input::SshKey => g.subschema_for::<crate::ssh::SshKeyParams>(),
        Input::GitLabKey => g.subschema_for::<crate::ssh::GitLabKeyParams>(),
        Input::Lease => g.subschema_for::<LeaseRequest>(),
        Input::Heartbeat => g.subschema_for::<crate::nodes::HeartbeatRequest>(),
        Input::CloneAccess => g.subschema_for::<crate::nodes::CloneAccessRequest>(),
        Input::HeldCopies => g.subschema_for::<crate::nodes::HeldCopies>(),
        Input::Renew => g.subschema_for::<RenewRequest>(),
        Input::Report => g.subschema_for::<JobReport>(),
        Input::Release => g.subschema_for::<ReleaseRequest>(),
        // A delivery is whatever the upstream host sends; it is judged by its signature.
        Input::Webhook => schemars::json_schema!({ "type": "object" }),
        Input::Fork => g.subschema_for::<crate::api::ForkParams>(),
        Input::SyncToggle => g.subschema_for::<crate::forks::SyncToggle>(),
        Input::Synchronize => g.subschema_for::<crate::forks::SynchronizeRequest>(),
        Input::Upstream => g.subschema_for::<farm::UpstreamServerParams>(),
        Input::UpstreamSettings => g.subschema_for::<farm::UpstreamSettingsParams>(),
        Input::MirrorMode => g.subschema_for::<farm::MirrorMode>(),
        Input::ProjectIds => g.subschema_for::<Vec<String>>(),
        Input::Object => schemars::json_schema!({ "type": "object" }),
        Input::Avatar => return None,
        Input::Address => schemars::json_schema!({ "type": "string", "format": "email" }),
        Input::ProtectedBranch => g.subschema_for::<crate::mirrors::protected::ProtectedBranchParams>(),
        Input::GitLabProject => g.subschema_for::<super::gitlab::GitLabProjectParams>(),
        Input::HookScript => return None,
        Input::Retention => g.subschema_for::<super::audit::RetentionConfig>(),
        Input::MeshNode => g.subschema_for::<crate::mesh::MeshNodeInput>(),
        Input::MeshMigration => g.subschema_for::<crate::mesh::migration::MeshMigrationRequest>(),
        Input::SupportZip => schemars::json_schema!({ "type": "string", "format": "binary" }),
        Input::Export => g.subschema_for::<crate::migration::archive::ExportRequest>(),
        Input::Import => g.subschema_for::<ImportParams>(),
        Input::MigrationProgress => g.subschema_for::<crate::migration::archive::MigrationProgress>(),
        Input::ImportedRepository => g.subschema_for::<crate::migration::archive::ImportedRepository>(),
        Input::Stream => return None,
    })
}

fn error_schema(dialect: Dialect, g: &mut SchemaGenerator) -> Schema {
    match dialect {
        Dialect::GitLab => g.subschema_for::<GitLabError>(),
        Dialect::Bitbucket => g.subschema_for::<BitbucketErrors>(),
    }
}

fn method_name(m: Method) -> &'static str {
    match m {
        Method::Get => "get",
        Method::Post => "post",
        Method::Put => "put",
        Method::Delete => "delete",
        Method::Options => "options",
        Method::Other => "x-other",
    }
}

/// The query parameters a handler reads, where they are part of its contract.
fn query_parameters(handler: Handler) -> Vec<Value> {
    let param = |name: &str, schema: Value, description: &str| json!({ "name": name, "in": "query", "required": false, "schema": schema, "description": description });
    match handler {
        Handler::MigrationMessages => vec![
            param(
                "severity",
                json!({ "type": "string", "enum": ["INFO", "WARN", "ERROR"] }),
                "Only messages of this severity (repeatable)",
            ),
            param("start", json!({ "type": "integer", "minimum": 0 }), "Messages to skip"),
            param("limit", json!({ "type": "integer", "minimum": 1 }), "Page size (default 25, at most 1000)"),
        ],
        Handler::AuditEvents => vec![
            param("from", json!({ "type": "string", "format": "date-time" }), "Events at or after this instant"),
            param("to", json!({ "type": "string", "format": "date-time" }), "Events at or before this instant"),
            param("offset", json!({ "type": "integer", "minimum": 0 }), "Events to skip"),
            param("limit", json!({ "type": "integer", "minimum": 1 }), "Page size (default 200, at most 1000)"),
            param(
                "pageCursor",
                json!({ "type": "string", "pattern": "^[0-9]+,[0-9]+$" }),
                "nextPageCursor of the previous page",
            ),
            param("userIds", json!({ "type": "string" }), "Authors' user ids, comma-separated"),
            param("categories", json!({ "type": "string" }), "Categories, comma-separated"),
            param("actions", json!({ "type": "string" }), "Actions, comma-separated"),
            param("affectedObject", json!({ "type": "string" }), "TYPE,ID pairs separated by ';'"),
            param("search", json!({ "type": "string" }), "Text anywhere in the event"),
        ],
        Handler::MeshMigrationRepos => vec![
            param("migrationId", json!({ "type": "string" }), "The migration (default: the one in progress)"),
            param(
                "state",
                json!({ "type": "string", "enum": ["QUEUED", "STAGING", "STAGED", "MIGRATED", "FAILED", "CANCELED", "SKIPPED"] }),
                "Only repositories in this state (ignored with no migration)",
            ),
        ],
        Handler::ListSshKeys | Handler::AddSshKey => {
            vec![param("user", json!({ "type": "string" }), "Whose keys (administrators only; default: yours)")]
        }
        Handler::DeleteMeshNode => vec![param(
            "force",
            json!({ "type": "boolean" }),
            "Remove it even if it holds the only current copy of some repository",
        )],
        Handler::MeshMigrationMessages => vec![param(
            "severity",
            json!({ "type": "string", "enum": ["INFO", "WARN", "ERROR"] }),
            "Only messages of this severity (repeatable)",
        )],
        _ => Vec::new(),
    }
}

fn operation(route: &Route, g: &mut SchemaGenerator) -> Value {
    let dialect = dialect_of(route.path);
    let mut params: Vec<Value> = route
        .path
        .split('/')
        .filter_map(|s| s.strip_prefix('{').and_then(|s| s.strip_suffix('}')))
        .map(|name| json!({ "name": name, "in": "path", "required": true, "schema": { "type": "string", "minLength": 1 } }))
        .collect();
    params.extend(query_parameters(route.handler));
    if route.input.is_multipart() {
        params.push(json!({
            "name": "X-Atlassian-Token", "in": "header", "required": true,
            "schema": { "type": "string", "enum": ["no-check"] },
            "description": "Bitbucket's XSRF guard for multipart writes: without it the answer is 403"
        }));
    }
    let mut responses = Map::new();
    for (status, schema) in answers(route.handler, g) {
        let mut answer = json!({ "description": "Success" });
        let media = match route.handler {
            Handler::Metrics | Handler::ControlPlanePem => "text/plain",
            Handler::ServeAvatar => "image/*",
            Handler::MeshSupportZips | Handler::MeshSupportZip => "application/octet-stream",
            Handler::DownloadArchive => "application/x-tar",
            _ => "application/json",
        };
        if let Some(schema) = schema {
            answer["content"] = json!({ media: { "schema": schema } });
        }
        responses.insert(status.to_string(), answer);
    }
    if route.method == Method::Get {
        responses.insert("304".into(), json!({ "description": "Not modified (If-None-Match matched the ETag)" }));
    }
    let error = error_schema(dialect, g);
    let mut errors = vec![
        (400, "The request is malformed or a field is wrong"),
        (401, "No or bad credentials, or (Bitbucket) a signed-in caller lacks the permission"),
        (404, "No such resource, or one the caller may not see"),
        (409, "The request clashes with the current state"),
        (413, "The body is too large"),
        (415, "The body's content type is not accepted"),
    ];
    // Signed-in callers spend rate-limit tokens while the limit is on.
    if !matches!(route.access, Access::Anyone | Access::WebhookSigner | Access::Node) {
        errors.push((429, "Rate limited: the caller's bucket is empty (Retry-After says when to try again)"));
    }
    // Work a farm node does while the request waits.
    if matches!(
        route.handler,
        Handler::SetForkSync
            | Handler::SynchronizeRef
            | Handler::TestMail
            | Handler::MeshSupportZip
            | Handler::MeshSupportZips
            | Handler::StartMeshMigration
    ) {
        errors.push((503, "No farm node finished the work in time; it stays queued and still runs"));
    }
    if matches!(route.handler, Handler::StartExport | Handler::StartImport) {
        errors.push((503, "As many exports (2) or imports (1) as may run at once are running"));
    }
    if route.handler == Handler::UpdateHookScript {
        errors.push((422, "Nothing to change"));
    }
    if route.handler == Handler::SynchronizeRef {
        errors.push((501, "REBASE is not implemented"));
    }
    if dialect == Dialect::GitLab {
        errors.push((403, "The caller lacks the permission"));
    } else if route.input.is_multipart() {
        errors.push((403, "X-Atlassian-Token: no-check is missing (XSRF), or a STATUS_READ token was used"));
    } else if route.access != Access::Status {
        errors.push((403, "A STATUS_READ token used outside status"));
    }
    for (status, description) in errors {
        responses.insert(
            status.to_string(),
            json!({ "description": description, "content": { "application/json": { "schema": error } } }),
        );
    }
    let mut op = json!({
        "summary": route.summary,
        "operationId": format!("{:?}", route.handler),
        "tags": [match dialect { Dialect::GitLab => "GitLab", Dialect::Bitbucket => "Bitbucket and mirrorfarm" }],
        "parameters": params,
        "responses": responses,
        "x-mirrorfarm-access": route.access.name(),
    });
    if route.input == Input::Avatar {
        let form = json!({ "type": "object", "properties": { "avatar": { "type": "string", "format": "binary" } } });
        op["requestBody"] = json!({ "required": true, "content": { "multipart/form-data": { "schema": form } } });
    } else if route.input == Input::HookScript {
        let text = json!({ "type": "string" });
        let form = json!({ "type": "object", "properties": {
            "content": { "type": "string", "format": "binary" }, "name": text, "description": text,
            "type": { "type": "string", "enum": ["PRE", "POST"] } } });
        op["requestBody"] = json!({ "required": true, "content": { "multipart/form-data": { "schema": form } } });
    } else if route.input == Input::Stream {
        // The archive's bytes (a tar), sent as they are.
        let bytes = json!({ "type": "string", "format": "binary" });
        op["requestBody"] = json!({ "required": true, "content": { "application/octet-stream": { "schema": bytes } } });
    } else if let Some(schema) = request(route, g) {
        op["requestBody"] = json!({ "required": false, "content": { "application/json": { "schema": schema } } });
    }
    op["security"] = match route.access {
        Access::Anyone | Access::WebhookSigner => {
            json!([{}, { "privateToken": [] }, { "bearer": [] }, { "basic": [] }])
        }
        Access::Node => json!([{ "bearer": [] }]),
        Access::Repository(crate::identity::Level::Read)
        | Access::Project(crate::identity::Level::Read)
        | Access::Status => {
            json!([{}, { "privateToken": [] }, { "bearer": [] }, { "basic": [] }])
        }
        _ => json!([{ "privateToken": [] }, { "bearer": [] }, { "basic": [] }]),
    };
    op
}

/// The whole document.
pub fn document() -> Value {
    let settings = SchemaSettings::draft2020_12().with(|s| s.definitions_path = "#/components/schemas/".into());
    let mut g = settings.for_serialize().into_generator();
    let mut paths = Map::new();
    for route in ROUTES {
        let item = paths.entry(route.path.to_owned()).or_insert_with(|| json!({}));
        item[method_name(route.method)] = operation(route, &mut g);
    }
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "mirrorfarm",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "GitLab's remote and pull mirror APIs, Bitbucket Data Center's project, repository, \
                user, permission and access-token APIs, and mirrorfarm's own status, webhook and farm-node \
                protocol. Every `/rest/<api>/latest/` path also answers as `/rest/<api>/1.0/`. \
                `x-mirrorfarm-access` names who may call each operation.",
        },
        "paths": paths,
        "components": {
            "schemas": g.take_definitions(true),
            "securitySchemes": {
                "privateToken": { "type": "apiKey", "in": "header", "name": "PRIVATE-TOKEN" },
                "bearer": { "type": "http", "scheme": "bearer" },
                "basic": { "type": "http", "scheme": "basic", "description": "user name and token" },
            },
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn documents_every_route_with_its_access_and_resolvable_refs() {
        let doc = document();
        for route in ROUTES {
            let op = &doc["paths"][route.path][method_name(route.method)];
            assert_eq!(op["x-mirrorfarm-access"], route.access.name(), "{} {}", route.path, method_name(route.method));
        }
        let text = doc.to_string();
        let schemas = doc["components"]["schemas"].as_object().expect("schemas");
        for reference in text.split("\"$ref\":\"#/components/schemas/").skip(1) {
            let name = reference.split('"').next().expect("name");
            assert!(schemas.contains_key(name), "{name} is referenced but not defined");
        }
        assert!(schemas.contains_key("RepositoryStatus") && schemas.contains_key("BitbucketErrors"));
        let events = &doc["paths"]["/rest/auditing/latest/events"]["get"];
        let names: Vec<&str> =
            events["parameters"].as_array().expect("parameters").iter().filter_map(|p| p["name"].as_str()).collect();
        assert!(names.contains(&"pageCursor") && names.contains(&"affectedObject"), "{names:?}");
        assert_eq!(events["x-mirrorfarm-access"], "SYS_ADMIN");
    }
}
