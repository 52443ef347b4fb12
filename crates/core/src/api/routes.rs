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
    /// `POST /rest/mirrorfarm/latest/jobs/lease` (node).
    LeaseJob,
    /// `POST /rest/mirrorfarm/latest/jobs/{jobId}/renew` (node).
    RenewJob,
    /// `POST /rest/mirrorfarm/latest/jobs/{jobId}/result` (node).
    ReportResult,
    /// `POST /rest/mirrorfarm/latest/jobs/{jobId}/release` (node).
    ReleaseJob,
}

use Handler as H;
use Method::{Delete, Get, Post, Put};

const GL: &str = "/api/v4/projects/{id}/remote_mirrors";

/// The route table: method, path pattern, handler.
const ROUTES: &[(Method, &str, Handler)] = &[
    (Get, "/api/v4/user", H::GitLabCurrentUser),
    (Get, "/api/v4/projects/{id}", H::GitLabProject),
    (Get, GL, H::ListRemoteMirrors),
    (Post, GL, H::CreateRemoteMirror),
    (Get, "/api/v4/projects/{id}/remote_mirrors/{mirror_id}", H::GetRemoteMirror),
    (Put, "/api/v4/projects/{id}/remote_mirrors/{mirror_id}", H::UpdateRemoteMirror),
    (Delete, "/api/v4/projects/{id}/remote_mirrors/{mirror_id}", H::DeleteRemoteMirror),
    (Post, "/api/v4/projects/{id}/remote_mirrors/{mirror_id}/sync", H::SyncRemoteMirror),
    (Get, "/api/v4/projects/{id}/remote_mirrors/{mirror_id}/public_key", H::RemoteMirrorPublicKey),
    (Get, "/api/v4/projects/{id}/mirror/pull", H::GetPullMirror),
    (Put, "/api/v4/projects/{id}/mirror/pull", H::UpdatePullMirror),
    (Post, "/api/v4/projects/{id}/mirror/pull", H::StartPullMirror),
    (Get, "/rest/api/latest/projects", H::ListProjects),
    (Post, "/rest/api/latest/projects", H::CreateProject),
    (Get, "/rest/api/latest/projects/{projectKey}", H::GetProject),
    (Delete, "/rest/api/latest/projects/{projectKey}", H::DeleteProject),
    (Get, "/rest/api/latest/projects/{projectKey}/repos", H::ListProjectRepositories),
    (Post, "/rest/api/latest/projects/{projectKey}/repos", H::CreateRepository),
    (Get, "/rest/api/latest/projects/{projectKey}/repos/{repositorySlug}", H::GetRepository),
    (Delete, "/rest/api/latest/projects/{projectKey}/repos/{repositorySlug}", H::DeleteRepository),
    (Get, "/rest/api/latest/repos", H::ListRepositories),
    (Put, "/rest/api/latest/projects/{projectKey}/permissions/users", H::GrantProject),
    (Delete, "/rest/api/latest/projects/{projectKey}/permissions/users", H::RevokeProject),
    (Put, "/rest/api/latest/projects/{projectKey}/repos/{repositorySlug}/permissions/users", H::GrantRepository),
    (Delete, "/rest/api/latest/projects/{projectKey}/repos/{repositorySlug}/permissions/users", H::RevokeRepository),
    (Put, "/rest/api/latest/admin/permissions/users", H::GrantGlobal),
    (Delete, "/rest/api/latest/admin/permissions/users", H::RevokeGlobal),
    (Post, "/rest/api/latest/admin/users", H::CreateUser),
    (Delete, "/rest/api/latest/admin/users", H::DeleteUser),
    (Get, "/rest/api/latest/users", H::ListUsers),
    (Get, "/rest/api/latest/users/{userSlug}", H::GetUser),
    (Put, "/rest/access-tokens/latest/users/{userSlug}", H::CreateToken),
    (Get, "/rest/access-tokens/latest/users/{userSlug}", H::ListTokens),
    (Delete, "/rest/access-tokens/latest/users/{userSlug}/{tokenId}", H::DeleteToken),
    (Get, "/rest/mirrorfarm/latest/repos/{repositoryId}/jobs", H::ListJobs),
    (Get, "/rest/mirrorfarm/latest/repos/{repositoryId}/status", H::RepositoryStatus),
    (Post, "/rest/mirrorfarm/latest/repos/{repositoryId}/sync", H::SyncRepository),
    (Get, "/rest/mirrorfarm/latest/repos/{repositoryId}/work", H::RepositoryWork),
    (Get, "/rest/mirrorfarm/latest/health", H::Health),
    (Put, "/rest/mirrorfarm/latest/repos/{repositoryId}/webhook", H::ConfigureWebhook),
    (Delete, "/rest/mirrorfarm/latest/repos/{repositoryId}/webhook", H::RemoveWebhook),
    (Post, "/rest/mirrorfarm/latest/repos/{repositoryId}/webhook", H::ReceiveWebhook),
    (Post, "/rest/mirrorfarm/latest/nodes", H::RegisterNode),
    (Get, "/rest/mirrorfarm/latest/nodes", H::ListNodes),
    (Post, "/rest/mirrorfarm/latest/nodes/heartbeat", H::Heartbeat),
    (Post, "/rest/mirrorfarm/latest/jobs/lease", H::LeaseJob),
    (Post, "/rest/mirrorfarm/latest/jobs/{jobId}/renew", H::RenewJob),
    (Post, "/rest/mirrorfarm/latest/jobs/{jobId}/result", H::ReportResult),
    (Post, "/rest/mirrorfarm/latest/jobs/{jobId}/release", H::ReleaseJob),
];

/// Path parameters captured by a route, still percent-encoded.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Params(Vec<(&'static str, String)>);

impl Params {
    /// The raw (percent-encoded) value of a parameter the route declares.
    pub fn raw(&self, name: &str) -> &str {
        self.0.iter().find(|(k, _)| *k == name).map(|(_, v)| v.as_str()).unwrap_or_default()
    }
}

/// How a request path resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Resolution {
    /// A route matched.
    Found(Handler, Params, Dialect),
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
    for (m, pattern, handler) in ROUTES {
        if let Some(params) = match_pattern(pattern, &path) {
            if *m == method {
                return Resolution::Found(*handler, params, dialect);
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
        let Resolution::Found(h, params, d) = resolve(Method::Get, "/api/v4/projects/MF%2Frepo/remote_mirrors/7/")
        else {
            panic!("expected a match")
        };
        assert_eq!((h, d), (Handler::GetRemoteMirror, Dialect::GitLab));
        assert_eq!((params.raw("id"), params.raw("mirror_id")), ("MF%2Frepo", "7"));
        assert!(matches!(
            resolve(Method::Post, "/rest/api/1.0/projects"),
            Resolution::Found(Handler::CreateProject, _, Dialect::Bitbucket)
        ));
        assert!(matches!(resolve(Method::Get, "/rest/mirrorfarm/1.0/health"), Resolution::Found(Handler::Health, ..)));
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
        for (m, pattern, handler) in ROUTES {
            let path = pattern.replace(['{', '}'], "");
            assert!(matches!(resolve(*m, &path), Resolution::Found(h, ..) if h == *handler), "{pattern}");
        }
    }
}
