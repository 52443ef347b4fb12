//! The API service: one pure function from a request (plus `now` and the ports) to a response.
//!
//! The shells turn their HTTP requests into [`ApiRequest`] and send back [`ApiResponse`]; every
//! check, decision and wire shape is made here. Handlers are grouped by resource.

mod admin;
mod audit;
mod callers;
mod conditional;
mod cors;
mod farm;
mod forks;
mod gitlab;
mod groups;
mod hooks;
mod identity;
mod mail;
mod mesh;
mod migration;
mod nodes;
#[cfg(feature = "openapi")]
pub mod openapi;
mod protected_branches;
mod pull_mirrors;
mod queue;
mod registry;
mod request;
mod response;
mod routes;
mod ssh;
mod status;
mod triggers;
mod users;

pub use audit::RETENTION_REVIEW_DISMISSED;
pub use callers::{CALLER_TTL_MS, CallerCache};
pub use cors::{CorsError, CorsOrigins};
pub use forks::{ForkParams, ProjectKey};
pub use gitlab::GitLabProjectParams;
pub use mail::MAIL_MAX_TRIES;
pub use request::{
    ApiRequest, BodyError, FieldError, Fields, FromFields, MAX_BODY_BYTES, Method, Query, decode_segment, encode,
    split_request_url,
};
pub use response::{ApiError, ApiResponse, BlobTransfer, Dialect};
pub use routes::{
    Access, Handler, Input, LARGEST_BODY_BYTES, MAX_REPORT_BYTES, Params, ROUTES, Resolution, Route, resolve,
    streams_request_body,
};
pub use triggers::MAX_WEBHOOK_BYTES;

use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;

use crate::admin::{InstanceSettings, LogLevels, NoLimiter, RateLimiter};
use crate::identity::{
    Credentials, Level, Principal, TOKEN_PREFIX, TokenScope, anonymous_level, constant_time_eq, token_lookup_key,
};
use crate::nodes::{FarmNode, NODE_TOKEN_PREFIX};
use crate::queue::{NoSignals, Signals, Topic};
use crate::registry::{Project, Repository};
use crate::status::DEFAULT_STALE_AFTER_MS;
use crate::store::port::Database;
use crate::store::{Blobs, Crypto, Grants, NoBlobs, Store};
use crate::store::{RepositoryKey, Viewer};
use crate::time::Timestamp;
use crate::urls::{GitUrl, HostAllowlist, StoredUrl};

/// Deployment settings the service needs.
#[derive(Debug, Clone)]
pub struct Config {
    /// Internal hosts mirrors may nevertheless reach (`MIRRORFARM_ALLOWED_HOSTS`).
    pub allowed_hosts: HostAllowlist,
    /// Wait before the first retry of a failed update; later ones double (`MIRRORFARM_RETRY_BASE_MS`).
    pub retry_base_ms: i64,
    /// How often each upstream is polled (`MIRRORFARM_POLL_INTERVAL_MS`).
    pub poll_interval_ms: i64,
    /// How long without a live node or with a job left waiting before status is stale
    /// (`MIRRORFARM_STALE_AFTER_MS`).
    pub stale_after_ms: i64,
    /// Origins whose pages may read status across origins (`MIRRORFARM_CORS_ORIGINS`).
    pub cors_origins: CorsOrigins,
    /// How long a request that needs a node's work waits for its result (`MIRRORFARM_SYNC_WAIT_MS`).
    pub sync_wait_ms: i64,
    /// The Ed25519 public key licenses are signed with (`MIRRORFARM_LICENSE_PUBLIC_KEY`, 32 bytes).
    pub license_public_key: Option<Vec<u8>>,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            allowed_hosts: HostAllowlist::default(),
            retry_base_ms: 30_000,
            poll_interval_ms: 300_000,
            stale_after_ms: DEFAULT_STALE_AFTER_MS,
            cors_origins: CorsOrigins::default(),
            sync_wait_ms: crate::queue::DEFAULT_SYNC_WAIT_MS,
            license_public_key: None,
        }
    }
}

/// The API over a store and a crypto provider, at one instant; requests that wait (a node's
/// long poll, a call that needs a node's work) are woken through `signals`, requests spend
/// rate-limit tokens through `limiter`, and avatars are kept in `blobs`.
pub struct Service<'a, D, C, S = NoSignals, L = NoLimiter, B = NoBlobs> {
    store: &'a Store<D>,
    crypto: &'a C,
    config: &'a Config,
    now: Timestamp,
    callers: Option<&'a CallerCache>,
    signals: &'a S,
    limiter: &'a L,
    blobs: &'a B,
    /// Set when this request queued work: nodes waiting for work are woken once it is answered.
    queued: std::cell::Cell<bool>,
    /// The instance's settings, once this request has read them.
    settings: std::cell::RefCell<Option<Rc<InstanceSettings>>>,
}

/// The signals of a service that never waits.
const NO_SIGNALS: NoSignals = NoSignals;
/// The limiter of a service that never limits.
const NO_LIMITER: NoLimiter = NoLimiter;
/// The blobs of a service without blob storage.
const NO_BLOBS: NoBlobs = NoBlobs;

/// What every handler gets: its route, the caller, the decoded query, path parameters and the request.
struct Call<'r> {
    route: &'static Route,
    who: Option<Principal>,
    node: Option<FarmNode>,
    query: Query,
    params: Params,
    req: &'r ApiRequest,
}

impl Call<'_> {
    /// The level the route table asks for on the repository or project the path names.
    fn need(&self) -> Level {
        self.route.access.level().unwrap_or(Level::Read)
    }

    fn principal(&self) -> Result<&Principal, ApiError> {
        self.who.as_ref().ok_or(ApiError::Unauthorized)
    }

    fn param(&self, name: &str) -> Result<String, ApiError> {
        decode_segment(self.params.raw(name)).ok_or_else(|| ApiError::BadRequest(format!("{name} is not valid UTF-8")))
    }

    /// The body as the route's typed input: JSON (an empty body reads as `{}`).
    fn json<T: serde::de::DeserializeOwned>(&self) -> Result<T, ApiError> {
        if let Some(kind) = self.req.content_type.as_deref()
            && !self.req.body.is_empty()
            && !kind.split(';').next().is_some_and(|k| k.trim().eq_ignore_ascii_case("application/json"))
        {
            return Err(ApiError::UnsupportedMediaType(format!("content type {kind:?} is not supported; send JSON")));
        }
        let body: &[u8] = if self.req.body.is_empty() { b"{}" } else { &self.req.body };
        serde_json::from_slice(body).map_err(|e| ApiError::BadRequest(format!("malformed request body: {e}")))
    }

    /// The body as a JSON object, read field by field by its handler (an empty body reads as `{}`).
    fn json_object(&self) -> Result<serde_json::Map<String, serde_json::Value>, ApiError> {
        match self.json::<serde_json::Value>()? {
            serde_json::Value::Object(map) => Ok(map),
            _ => Err(ApiError::BadRequest("expected a JSON object".into())),
        }
    }

    /// The route's typed input, from a JSON or form body (or the query).
    fn input<T: FromFields>(&self) -> Result<T, ApiError> {
        Ok(T::from_fields(&self.fields()?)?)
    }

    fn fields(&self) -> Result<Fields, ApiError> {
        Ok(Fields::parse(self.req.content_type.as_deref(), &self.req.body, &self.query)?)
    }

    /// The request URL without its query, for links.
    fn url(&self) -> String {
        format!("{}{}", self.req.origin, self.req.path)
    }
}

type Result<T, E = ApiError> = std::result::Result<T, E>;

/// `GET …/health`.
#[derive(Debug, Clone, serde::Serialize)]
#[cfg_attr(feature = "openapi", derive(schemars::JsonSchema))]
pub(crate) struct Health {
    /// Always `ok`.
    status: String,
}

/// Who is calling.
#[derive(Debug, Clone)]
enum Caller {
    /// A user, or nobody (anonymous).
    User(Option<Principal>),
    /// A farm node.
    Node(FarmNode),
}

impl<'a, D: Database, C: Crypto> Service<'a, D, C> {
    /// A service for one request made at `now`.
    pub fn new(store: &'a Store<D>, crypto: &'a C, config: &'a Config, now: Timestamp) -> Self {
        Self {
            store,
            crypto,
            config,
            now,
            callers: None,
            signals: &NO_SIGNALS,
            limiter: &NO_LIMITER,
            blobs: &NO_BLOBS,
            queued: std::cell::Cell::new(false),
            settings: std::cell::RefCell::new(None),
        }
    }
}

impl<'a, D: Database, C: Crypto, S: Signals, L: RateLimiter, B: Blobs> Service<'a, D, C, S, L, B> {
    /// The same service, waking and waiting through `signals`.
    pub fn with_signals<T: Signals>(self, signals: &'a T) -> Service<'a, D, C, T, L, B> {
        Service {
            store: self.store,
            crypto: self.crypto,
            config: self.config,
            now: self.now,
            callers: self.callers,
            signals,
            limiter: self.limiter,
            blobs: self.blobs,
            queued: self.queued,
            settings: self.settings,
        }
    }

    /// The same service, spending rate-limit tokens through `limiter`.
    pub fn with_limiter<T: RateLimiter>(self, limiter: &'a T) -> Service<'a, D, C, S, T, B> {
        Service {
            store: self.store,
            crypto: self.crypto,
            config: self.config,
            now: self.now,
            callers: self.callers,
            signals: self.signals,
            limiter,
            blobs: self.blobs,
            queued: self.queued,
            settings: self.settings,
        }
    }

    /// The same service, keeping avatars in `blobs`.
    pub fn with_blobs<T: Blobs>(self, blobs: &'a T) -> Service<'a, D, C, S, L, T> {
        Service {
            store: self.store,
            crypto: self.crypto,
            config: self.config,
            now: self.now,
            callers: self.callers,
            signals: self.signals,
            limiter: self.limiter,
            blobs,
            queued: self.queued,
            settings: self.settings,
        }
    }

    /// The same service at a later instant (a request that waited).
    fn at(&self, now: Timestamp) -> Self {
        Service {
            now,
            queued: std::cell::Cell::new(false),
            settings: std::cell::RefCell::new(self.settings.borrow().clone()),
            ..*self
        }
    }

    /// The instance's settings: remembered by the isolate for [`CALLER_TTL_MS`], read once per
    /// request at most.
    async fn settings(&self) -> Result<Rc<InstanceSettings>> {
        if let Some(s) = self.settings.borrow().as_ref() {
            return Ok(Rc::clone(s));
        }
        let s = match self.callers.and_then(|c| c.settings(self.now)) {
            Some(s) => s,
            None => {
                let s = Rc::new(self.store.instance_settings().await?);
                if let Some(cache) = self.callers {
                    cache.put_settings(Rc::clone(&s), self.now);
                }
                s
            }
        };
        *self.settings.borrow_mut() = Some(Rc::clone(&s));
        Ok(s)
    }

    /// Forgets the instance's settings after a change, so the next read sees it.
    fn forget_settings(&self) {
        *self.settings.borrow_mut() = None;
        if let Some(cache) = self.callers {
            cache.forget_settings();
        }
    }

    /// The log levels in force, for the shell's own logging (the defaults if they cannot be read).
    pub async fn log_levels(&self) -> LogLevels {
        self.settings().await.map(|s| s.logs.clone()).unwrap_or_default()
    }

    /// The log levels in force if this request or the isolate already knows them, without a
    /// round trip; `None` when only storage can tell (the shell then logs after answering).
    pub fn known_log_levels(&self) -> Option<LogLevels> {
        if let Some(s) = self.settings.borrow().as_ref() {
            return Some(s.logs.clone());
        }
        self.callers.and_then(|c| c.settings(self.now)).map(|s| s.logs.clone())
    }

    /// The time now: later than `self.now` once a request has waited.
    fn clock(&self) -> Timestamp {
        self.signals.now().unwrap_or(self.now).max(self.now)
    }

    /// Notes that this request queued work (see [`Service::handle`]).
    fn mark_queued(&self) {
        self.queued.set(true);
    }

    /// Remembers callers by token hash in `cache` (kept by the shell between requests), so an
    /// authenticated request usually costs no storage round trip to authenticate.
    pub fn with_caller_cache(mut self, cache: &'a CallerCache) -> Self {
        self.callers = Some(cache);
        self
    }

    /// Forgets every remembered caller: after a change to who may do what (a token revoked, a
    /// user removed, a role changed), nobody is served from memory.
    fn forget_callers(&self) {
        if let Some(cache) = self.callers {
            cache.clear();
        }
    }

    /// Answers a request.
    pub async fn handle(&self, req: &ApiRequest) -> ApiResponse {
        if req.method == Method::Options
            && let Some(response) = cors::preflight(req, &self.config.cors_origins)
        {
            return response;
        }
        let (route, params, dialect) = match resolve(req.method, &req.path) {
            Resolution::Found(r, p, d) => (r, p, d),
            Resolution::WrongMethod(d) => return ApiError::MethodNotAllowed.into_response(d),
            Resolution::Missing(d) => return ApiError::not_found("", "No such resource").into_response(d),
        };
        let query = Query::parse(&req.query);
        let audited = audit::audited(route, req.method);
        let now = self.now;
        let event = |actor, sign_in_failed| audit::record(now, route, &params, req, &query, actor, sign_in_failed);
        let limit = route.input.limit();
        let too_large = req.declared_length.is_some_and(|n| n > limit as u64) || req.body.len() > limit;
        // Bitbucket's XSRF rule: a multipart write must say `X-Atlassian-Token: no-check`.
        let xsrf = route.input.is_multipart()
            && !req.header("x-atlassian-token").is_some_and(|v| v.trim().eq_ignore_ascii_case("no-check"));
        if too_large || xsrf {
            let refusal = if too_large { ApiError::PayloadTooLarge } else { ApiError::XsrfCheckFailed };
            let response = refusal.into_response(dialect);
            // Refused before anyone signed in: the event's author is anonymous.
            if audited {
                return self.finish_audit(&event(crate::audit::Actor::Anonymous, false), response).await;
            }
            return response;
        }
        let mut record = None;
        let result = match self.authenticate(req.private_token.as_deref(), req.authorization.as_deref()).await {
            Ok(caller) => {
                if audited {
                    record = Some(event(Self::actor(&caller), false));
                }
                match Self::authorize(route.access, &caller) {
                    Ok(()) => {
                        let (who, node) = match caller {
                            Caller::User(who) => (who, None),
                            Caller::Node(node) => (None, Some(node)),
                        };
                        let spender = who.clone();
                        let call = Call { route, who, node, query: query.clone(), params: params.clone(), req };
                        if req.method == Method::Get {
                            // A read changes nothing, so its token is spent while it runs: the
                            // limiter's round trip overlaps the handler's, and a refusal discards
                            // the answer. For a signed-in user, whose tokens are spent, the settings
                            // both need are read first (usually remembered), so the two never read
                            // them twice; other callers spend nothing, and a handler that needs the
                            // settings reads them itself (health does not: its answer costs no trip).
                            if spender.is_some()
                                && let Err(e) = self.settings().await
                            {
                                return e.into_response(dialect);
                            }
                            let (spent, answer) = futures_util::future::join(
                                self.spend_token(spender.as_ref()),
                                self.dispatch(route.handler, call),
                            )
                            .await;
                            spent.and(answer)
                        } else {
                            match self.spend_token(spender.as_ref()).await {
                                // The event rides in the first batch the handler writes.
                                Ok(()) => match record.as_ref().map(|r| self.store.arm_audit(r)) {
                                    Some(Err(e)) => Err(e.into()),
                                    _ => self.dispatch(route.handler, call).await,
                                },
                                Err(e) => Err(e),
                            }
                        }
                    }
                    Err(e) => Err(e),
                }
            }
            Err(e) => {
                // Credentials that were sent and refused are a failed sign-in, on any method.
                let sent = req.private_token.is_some() || req.authorization.is_some();
                let failed_sign_in = sent && matches!(e, ApiError::Unauthorized | ApiError::RateLimited { .. });
                if failed_sign_in || audited {
                    record = Some(event(crate::audit::Actor::Anonymous, failed_sign_in));
                }
                Err(e)
            }
        };
        let mut response = result.unwrap_or_else(|e| e.into_response(dialect));
        if self.queued.get() {
            self.signals.notify(Topic::Queue).await;
        }
        if req.method == Method::Get {
            response = conditional::answer(req, response);
        }
        if route.cors {
            // Read by scripts in web pages: a Basic challenge would make browsers ask for a password.
            response.headers.retain(|(name, _)| !name.eq_ignore_ascii_case("www-authenticate"));
            cors::allow(req, &self.config.cors_origins, &mut response);
        }
        match record {
            Some(record) => self.finish_audit(&record, response).await,
            None => response,
        }
    }

    /// Who a caller is, as an audit event names them.
    fn actor(caller: &Caller) -> crate::audit::Actor {
        match caller {
            Caller::User(Some(p)) => {
                crate::audit::Actor::User { id: p.user.id, name: p.user.name.clone(), slug: p.user.slug.clone() }
            }
            Caller::User(None) => crate::audit::Actor::Anonymous,
            Caller::Node(node) => crate::audit::Actor::Node(node.name.clone()),
        }
    }

    /// What the route table says about the caller, checked before any handler runs: the kind
    /// of caller and global roles. Levels on the repository or project the path names are
    /// checked where that resource is read (see [`Call::need`]).
    fn authorize(access: Access, caller: &Caller) -> Result<()> {
        use Access as A;
        match (access, caller) {
            // Status tokens are pasted into web pages: they read status and nothing else.
            (a, Caller::User(Some(p))) if p.scope.status_only && a != A::Status => Err(ApiError::Forbidden),
            (A::Anyone | A::WebhookSigner, _) => Ok(()),
            (A::Node | A::NodeOrRepository(_), Caller::Node(_)) => Ok(()),
            // Node tokens act for nodes only.
            (_, Caller::Node(_)) | (A::Node, _) => Err(ApiError::Unauthorized),
            (A::User | A::SelfOrAdmin | A::Admin | A::SysAdmin, Caller::User(None)) => Err(ApiError::Unauthorized),
            (A::Admin, Caller::User(Some(p))) if !p.is_admin() => Err(ApiError::Forbidden),
            (A::SysAdmin, Caller::User(Some(p))) if !p.is_sys_admin() => Err(ApiError::Forbidden),
            // Anonymous callers may read what is public, and nothing more.
            (a, Caller::User(None)) if a.level().is_some_and(|l| l > Level::Read) => Err(ApiError::Unauthorized),
            _ => Ok(()),
        }
    }

    async fn dispatch(&self, handler: Handler, call: Call<'_>) -> Result<ApiResponse> {
        use Handler as H;
        // Each handler's future is boxed, and so is a function of its own. Awaited inline, all of
        // them were one state machine of 330 KB of wasm, which the runtime compiles on first use:
        // a new isolate's first answer waited about 30 ms for it, whatever the route.
        let handling: Pin<Box<dyn Future<Output = Result<ApiResponse>> + '_>> = match handler {
            H::GitLabCurrentUser => Box::pin(self.gitlab_current_user(&call)),
            H::GitLabProject => Box::pin(self.gitlab_project(&call)),
            H::ListRemoteMirrors => Box::pin(self.list_remote_mirrors(&call)),
            H::CreateRemoteMirror => Box::pin(self.create_remote_mirror(&call)),
            H::GetRemoteMirror => Box::pin(self.get_remote_mirror(&call)),
            H::UpdateRemoteMirror => Box::pin(self.update_remote_mirror(&call)),
            H::DeleteRemoteMirror => Box::pin(self.delete_remote_mirror(&call)),
            H::SyncRemoteMirror => Box::pin(self.sync_remote_mirror(&call)),
            H::RemoteMirrorPublicKey => Box::pin(self.remote_mirror_public_key(&call)),
            H::GetPullMirror => Box::pin(self.get_pull_mirror(&call)),
            H::UpdatePullMirror => Box::pin(self.update_pull_mirror(&call)),
            H::StartPullMirror => Box::pin(self.start_pull_mirror(&call)),
            H::ListProjects => Box::pin(self.list_projects(&call)),
            H::CreateProject => Box::pin(self.create_project(&call)),
            H::GetProject => Box::pin(self.get_project(&call)),
            H::DeleteProject => Box::pin(self.delete_project(&call)),
            H::ListProjectRepositories => Box::pin(self.list_repositories(&call, true)),
            H::ListRepositories => Box::pin(self.list_repositories(&call, false)),
            H::CreateRepository => Box::pin(self.create_repository(&call)),
            H::GetRepository => Box::pin(self.get_repository(&call)),
            H::DeleteRepository => Box::pin(self.delete_repository(&call)),
            H::GrantProject => Box::pin(self.set_project_grant(&call, true)),
            H::RevokeProject => Box::pin(self.set_project_grant(&call, false)),
            H::GrantRepository => Box::pin(self.set_repository_grant(&call, true)),
            H::RevokeRepository => Box::pin(self.set_repository_grant(&call, false)),
            H::GrantGlobal => Box::pin(self.set_global_role(&call, true)),
            H::RevokeGlobal => Box::pin(self.set_global_role(&call, false)),
            H::CreateUser => Box::pin(self.create_user(&call)),
            H::DeleteUser => Box::pin(self.delete_user(&call)),
            H::ListUsers => Box::pin(self.list_users(&call)),
            H::GetUser => Box::pin(self.get_user(&call)),
            H::CreateToken => Box::pin(self.create_token(&call)),
            H::ListSshKeys => Box::pin(self.list_ssh_keys(&call)),
            H::AddSshKey => Box::pin(self.add_ssh_key(&call)),
            H::GetSshKey => Box::pin(self.get_ssh_key(&call)),
            H::DeleteSshKey => Box::pin(self.delete_ssh_key(&call, "keyId")),
            H::GitLabListKeys => Box::pin(self.gitlab_list_keys(&call)),
            H::GitLabAddKey => Box::pin(self.gitlab_add_key(&call)),
            H::GitLabGetKey => Box::pin(self.gitlab_get_key(&call)),
            H::GitLabDeleteKey => Box::pin(self.delete_ssh_key(&call, "key_id")),
            H::ListTokens => Box::pin(self.list_tokens(&call)),
            H::DeleteToken => Box::pin(self.delete_token(&call)),
            H::ListJobs => Box::pin(self.list_jobs(&call)),
            H::RepositoryStatus => Box::pin(self.repository_status(&call)),
            H::SyncRepository => Box::pin(self.sync_repository(&call)),
            H::RepositoryWork => Box::pin(self.repository_work(&call)),
            H::Health => Box::pin(async { Ok(ApiResponse::json(200, &Health { status: "ok".into() })) }),
            H::ConfigureWebhook => Box::pin(self.configure_webhook(&call)),
            H::RemoveWebhook => Box::pin(self.remove_webhook(&call)),
            H::ReceiveWebhook => Box::pin(self.receive_webhook(&call)),
            H::RegisterNode => Box::pin(self.register_node(&call)),
            H::ListNodes => Box::pin(self.list_nodes(&call)),
            H::Heartbeat => Box::pin(self.heartbeat(&call)),
            H::CloneAccess => Box::pin(self.clone_access(&call)),
            H::HeldCopies => Box::pin(self.held_copies(&call)),
            H::LeaseJob => Box::pin(self.lease_job(&call)),
            H::RenewJob => Box::pin(self.renew_job(&call)),
            H::ReportResult => Box::pin(self.report_result(&call)),
            H::ReleaseJob => Box::pin(self.release_job(&call)),
            H::CreateFork => Box::pin(self.create_fork(&call)),
            H::ListForks => Box::pin(self.list_forks(&call)),
            H::ForkSyncStatus => Box::pin(self.fork_sync_status(&call)),
            H::SetForkSync => Box::pin(self.set_fork_sync(&call)),
            H::SynchronizeRef => Box::pin(self.synchronize_ref(&call)),
            H::CreateUpstream => Box::pin(self.create_upstream(&call)),
            H::DeleteUpstream => Box::pin(self.delete_upstream(&call)),
            H::ListUpstreams => Box::pin(self.list_upstreams(&call)),
            H::GetUpstream => Box::pin(self.get_upstream(&call)),
            H::GetUpstreamSettings => Box::pin(self.get_settings(&call)),
            H::PutUpstreamSettings => Box::pin(self.put_settings(&call)),
            H::GetMirrorMode => Box::pin(self.get_mode(&call)),
            H::PutMirrorMode => Box::pin(self.put_mode(&call)),
            H::GetMirroredProjects => Box::pin(self.get_projects(&call)),
            H::AddMirroredProjects => Box::pin(self.add_projects(&call)),
            H::RemoveMirroredProjects => Box::pin(self.remove_projects(&call)),
            H::UpstreamProgress => Box::pin(self.upstream_progress(&call)),
            H::FarmNodes => Box::pin(self.farm_nodes(&call)),
            H::MirroredRepository => Box::pin(self.mirrored_repository(&call)),
            H::RepairRepository => Box::pin(self.repair_repository(&call)),
            H::RepoSyncStatuses => Box::pin(self.repo_sync_statuses(&call)),
            H::RepoSyncStatus => Box::pin(self.repo_sync_status(&call)),
            H::RefChangesQueue => Box::pin(self.ref_changes_queue(&call)),
            H::RefChangesCount => Box::pin(self.ref_changes_count(&call)),
            H::MirroringRepositories => Box::pin(self.mirroring_repositories(&call)),
            H::Metrics => Box::pin(self.metrics(&call)),
            H::AdminListUsers => Box::pin(self.admin_list_users(&call)),
            H::UpdateCurrentUser => Box::pin(self.update_current_user(&call)),
            H::ChangePassword => Box::pin(self.change_password(&call)),
            H::GetUserSettings => Box::pin(self.get_user_settings(&call)),
            H::MergeUserSettings => Box::pin(self.merge_user_settings(&call)),
            H::UploadAvatar => Box::pin(self.upload_avatar(&call)),
            H::DeleteAvatar => Box::pin(self.delete_avatar(&call)),
            H::ServeAvatar => Box::pin(self.serve_avatar(&call)),
            H::GetRateLimitSettings => Box::pin(self.get_rate_limit_settings(&call)),
            H::PutRateLimitSettings => Box::pin(self.put_rate_limit_settings(&call)),
            H::ListUserRateLimits => Box::pin(self.list_user_rate_limits(&call)),
            H::SetUserRateLimits => Box::pin(self.set_user_rate_limits(&call)),
            H::GetUserRateLimit => Box::pin(self.get_user_rate_limit(&call)),
            H::PutUserRateLimit => Box::pin(self.put_user_rate_limit(&call)),
            H::DeleteUserRateLimit => Box::pin(self.delete_user_rate_limit(&call)),
            H::RateLimitHistory => Box::pin(self.rate_limit_history(&call)),
            H::GetBanner => Box::pin(self.get_banner(&call)),
            H::PutBanner => Box::pin(self.put_banner(&call)),
            H::DeleteBanner => Box::pin(self.delete_banner(&call)),
            H::GetDefaultBranch => Box::pin(self.get_default_branch(&call)),
            H::PutDefaultBranch => Box::pin(self.put_default_branch(&call)),
            H::DeleteDefaultBranch => Box::pin(self.delete_default_branch(&call)),
            H::GetArchivePolicy => Box::pin(self.get_policy(&call, true)),
            H::PutArchivePolicy => Box::pin(self.put_policy(&call, true)),
            H::GetDeletePolicy => Box::pin(self.get_policy(&call, false)),
            H::PutDeletePolicy => Box::pin(self.put_policy(&call, false)),
            H::UpdateRepository => Box::pin(self.update_repository(&call)),
            H::AddLabel => Box::pin(self.add_label(&call)),
            H::RepositoryLabels => Box::pin(self.repository_labels(&call)),
            H::RemoveLabel => Box::pin(self.remove_label(&call)),
            H::ListLabels => Box::pin(self.list_labels(&call)),
            H::GetLabel => Box::pin(self.get_label(&call)),
            H::Labeled => Box::pin(self.labeled(&call)),
            H::GetLogger => Box::pin(self.get_logger(&call, false)),
            H::SetLogger => Box::pin(self.set_logger(&call, false)),
            H::GetRootLogger => Box::pin(self.get_logger(&call, true)),
            H::SetRootLogger => Box::pin(self.set_logger(&call, true)),
            H::GetLicense => Box::pin(self.get_license(&call)),
            H::PostLicense => Box::pin(self.post_license(&call)),
            H::ApplicationProperties => Box::pin(self.application_properties(&call)),
            H::Cluster => Box::pin(self.cluster(&call)),
            H::GetMailServer => Box::pin(self.get_mail_server(&call)),
            H::PutMailServer => Box::pin(self.put_mail_server(&call)),
            H::DeleteMailServer => Box::pin(self.delete_mail_server(&call)),
            H::GetSenderAddress => Box::pin(self.get_sender_address(&call)),
            H::PutSenderAddress => Box::pin(self.put_sender_address(&call)),
            H::DeleteSenderAddress => Box::pin(self.delete_sender_address(&call)),
            H::TestMail => Box::pin(self.test_mail(&call)),
            H::ListMail => Box::pin(self.list_mail(&call)),
            H::GetNotificationSettings => Box::pin(self.get_notification_settings(&call)),
            H::PutNotificationSettings => Box::pin(self.put_notification_settings(&call)),
            H::CreateHookScript => Box::pin(self.create_hook_script(&call)),
            H::GetHookScript => Box::pin(self.get_hook_script(&call)),
            H::UpdateHookScript => Box::pin(self.update_hook_script(&call)),
            H::DeleteHookScript => Box::pin(self.delete_hook_script(&call)),
            H::HookScriptContent => Box::pin(self.hook_script_content(&call)),
            H::ListHookConfigs => Box::pin(self.list_hook_configs(&call)),
            H::AttachHookScript => Box::pin(self.attach_hook_script(&call)),
            H::DetachHookScript => Box::pin(self.detach_hook_script(&call)),
            H::AuditEvents => Box::pin(self.audit_events(&call)),
            H::GetAuditRetention => Box::pin(self.get_audit_retention(&call)),
            H::PutAuditRetention => Box::pin(self.put_audit_retention(&call)),
            H::DismissRetentionReview => Box::pin(self.dismiss_retention_review(&call)),
            H::MeshNodes => Box::pin(self.mesh_nodes(&call)),
            H::RegisterMeshNode => Box::pin(self.register_mesh_node(&call)),
            H::MeshNode => Box::pin(self.mesh_node(&call)),
            H::UpdateMeshNode => Box::pin(self.update_mesh_node(&call)),
            H::DeleteMeshNode => Box::pin(self.delete_mesh_node(&call)),
            H::MeshConnectivity => Box::pin(self.mesh_connectivity(&call)),
            H::ControlPlanePem => Box::pin(self.control_plane_pem(&call)),
            H::MeshSupportZips => Box::pin(self.mesh_support_zips(&call)),
            H::MeshSupportZip => Box::pin(self.mesh_support_zip(&call)),
            H::UploadSupportZip => Box::pin(self.upload_support_zip(&call)),
            H::StartMeshMigration => Box::pin(self.start_mesh_migration(&call)),
            H::PreviewMeshMigration => Box::pin(self.preview_mesh_migration(&call)),
            H::MeshMigrationRepos => Box::pin(self.mesh_migration_repos(&call)),
            H::MeshMigrationSummaries => Box::pin(self.mesh_migration_summaries(&call)),
            H::ActiveMeshMigration => Box::pin(self.active_mesh_migration(&call)),
            H::MeshMigration => Box::pin(self.mesh_migration(&call)),
            H::MeshMigrationSummary => Box::pin(self.mesh_migration_summary(&call)),
            H::CancelMeshMigration => Box::pin(self.cancel_mesh_migration(&call)),
            H::MeshMigrationMessages => Box::pin(self.mesh_migration_messages(&call)),
            H::StartExport => Box::pin(self.start_export(&call)),
            H::PreviewExport => Box::pin(self.preview_export(&call)),
            H::StartImport => Box::pin(self.start_import(&call)),
            H::GetMigrationJob => Box::pin(self.get_migration_job(&call)),
            H::CancelMigrationJob => Box::pin(self.cancel_migration_job(&call)),
            H::MigrationMessages => Box::pin(self.migration_messages(&call)),
            H::MigrationProgress => Box::pin(self.migration_progress(&call)),
            H::ImportRepository => Box::pin(self.import_repository(&call)),
            H::UploadArchive => Box::pin(self.upload_archive(&call)),
            H::DownloadArchive => Box::pin(self.download_archive(&call)),
            H::ListGroups => Box::pin(self.list_groups(&call)),
            H::CreateGroup => Box::pin(self.create_group(&call)),
            H::DeleteGroup => Box::pin(self.delete_group(&call)),
            H::AddUsersToGroup => Box::pin(self.add_users_to_group(&call)),
            H::AddGroupsToUser => Box::pin(self.add_groups_to_user(&call)),
            H::RemoveUserFromGroup => Box::pin(self.remove_membership(&call, false)),
            H::RemoveGroupFromUser => Box::pin(self.remove_membership(&call, true)),
            H::GroupMembers => Box::pin(self.group_member_users(&call, true)),
            H::GroupNonMembers => Box::pin(self.group_member_users(&call, false)),
            H::ProjectGroupGrants => Box::pin(self.list_group_grants(&call, false)),
            H::GrantProjectGroup => Box::pin(self.set_group_grant(&call, false, true)),
            H::RevokeProjectGroup => Box::pin(self.set_group_grant(&call, false, false)),
            H::RepositoryGroupGrants => Box::pin(self.list_group_grants(&call, true)),
            H::GrantRepositoryGroup => Box::pin(self.set_group_grant(&call, true, true)),
            H::RevokeRepositoryGroup => Box::pin(self.set_group_grant(&call, true, false)),
            H::ListProtectedBranches => Box::pin(self.list_protected_branches(&call)),
            H::GetProtectedBranch => Box::pin(self.get_protected_branch(&call)),
            H::ProtectBranch => Box::pin(self.protect_branch(&call)),
            H::UnprotectBranch => Box::pin(self.unprotect_branch(&call)),
            H::UpdateGitLabProject => Box::pin(self.update_gitlab_project(&call)),
        };
        handling.await
    }

    /// Spends one of a signed-in user's rate-limit tokens, while the limit is on and they are not
    /// exempt (anonymous callers and farm nodes are not limited). An empty bucket is a 429,
    /// counted in the history.
    async fn spend_token(&self, who: Option<&Principal>) -> Result<()> {
        let Some(who) = who else { return Ok(()) };
        let settings = self.settings().await?;
        let bucket = crate::admin::rate_limit::bucket_for(&settings.rate_limit, who.rate_limit.as_ref());
        self.spend_from(who, bucket).await
    }

    /// A wrong password spends from the user's sign-in bucket, even while the limit is off.
    async fn spend_on_failed_sign_in(&self, who: &Principal) -> Result<()> {
        let settings = self.settings().await?;
        let bucket = crate::admin::rate_limit::sign_in_bucket_for(&settings.rate_limit, who.rate_limit.as_ref());
        self.spend_from(who, bucket).await
    }

    /// Spends one token of `who`'s from `bucket` (`None`: not limited).
    async fn spend_from(&self, who: &Principal, bucket: Option<crate::admin::BucketSettings>) -> Result<()> {
        let Some(bucket) = bucket else { return Ok(()) };
        match self.limiter.take(who.user.id, bucket, self.now).await {
            Some(Err(refused)) => {
                self.store.record_rejection(who.user.id, self.now).await?;
                Err(ApiError::RateLimited { retry_after_secs: refused.retry_after_secs() })
            }
            _ => Ok(()),
        }
    }

    /// Resolves the caller: a user (or anonymous), or a farm node by its `mfn_` token.
    /// Credentials that are sent but wrong are a 401 even where anonymous access would do, so a
    /// typo is never silently downgraded.
    async fn authenticate(&self, private_token: Option<&str>, authorization: Option<&str>) -> Result<Caller> {
        let credentials =
            Credentials::from_headers(private_token, authorization).map_err(|_| ApiError::Unauthorized)?;
        let Some(credentials) = credentials else { return Ok(Caller::User(None)) };
        if let Credentials::UserToken { user, token } = &credentials
            && !token.starts_with(TOKEN_PREFIX)
            && !token.starts_with(NODE_TOKEN_PREFIX)
        {
            return self.sign_in_with_password(user, token).await.map(|p| Caller::User(Some(p)));
        }
        let token = credentials.token();
        let hash = self.crypto.sha256_hex(token.as_bytes()).await?;
        let caller = match self.callers.and_then(|c| c.get(&hash, self.now)) {
            Some(caller) => caller,
            None => {
                let caller = self.look_up_caller(token, &hash).await?;
                if let Some(cache) = self.callers {
                    cache.put(hash, caller.clone(), self.now);
                }
                caller
            }
        };
        match caller {
            Caller::Node(node) => Ok(Caller::Node(node)),
            Caller::User(None) => Err(ApiError::Unauthorized),
            Caller::User(Some(who)) => {
                if who.expires_at.is_some_and(|at| at <= self.now) {
                    return Err(ApiError::Unauthorized);
                }
                // Basic auth names the token's user, or `x-token-auth` (Bitbucket's name for "the
                // token's own user", which git clients of a farm send).
                if let Credentials::UserToken { user: name, .. } = &credentials
                    && !name.eq_ignore_ascii_case("x-token-auth")
                    && !name.eq_ignore_ascii_case(&who.user.name)
                    && !name.eq_ignore_ascii_case(&who.user.slug)
                {
                    return Err(ApiError::Unauthorized);
                }
                Ok(Caller::User(Some(who)))
            }
        }
    }

    /// Finds whose token this is, in one round trip. `Caller::User(None)`: nobody's.
    async fn look_up_caller(&self, token: &str, hash: &str) -> Result<Caller> {
        let matches = |h: &str| constant_time_eq(h.as_bytes(), hash.as_bytes());
        if token.starts_with(NODE_TOKEN_PREFIX) {
            let candidates = self.store.nodes_by_lookup(&token_lookup_key(token)).await?;
            let node = candidates.into_iter().find(|n| matches(&n.hash));
            return node.map(Caller::Node).ok_or(ApiError::Unauthorized);
        }
        let candidates = self.store.tokens_by_lookup(&token_lookup_key(token)).await?;
        let found = candidates.into_iter().find(|(t, ..)| matches(&t.hash));
        Ok(Caller::User(found.map(|(token, user, rate_limit)| Principal {
            user,
            scope: TokenScope::from_permissions(token.permissions.as_deref()),
            expires_at: token.expires_at,
            rate_limit,
        })))
    }

    /// Basic authentication with a password. A wrong password spends one of the user's
    /// rate-limit tokens, even while the limit is off, so guessing is slowed to a bucket's rate
    /// (429 once it is empty). A success is remembered like a token, by a hash of the name and password.
    async fn sign_in_with_password(&self, name: &str, password: &str) -> Result<Principal> {
        let key =
            self.crypto.sha256_hex(format!("password\0{}\0{password}", name.to_ascii_lowercase()).as_bytes()).await?;
        if let Some(Caller::User(Some(who))) = self.callers.and_then(|c| c.get(&key, self.now)) {
            return Ok(who);
        }
        let sign_in = self.store.user_with_password(name).await?.ok_or(ApiError::Unauthorized)?;
        let stored = sign_in.stored.as_deref().ok_or(ApiError::Unauthorized)?;
        let who = Principal {
            user: sign_in.user,
            scope: TokenScope::from_permissions(None),
            expires_at: None,
            rate_limit: sign_in.rate_limit,
        };
        if !crate::admin::passwords::verify(self.crypto, password, stored).await? {
            self.spend_on_failed_sign_in(&who).await?;
            return Err(ApiError::Unauthorized);
        }
        if let Some(cache) = self.callers {
            cache.put(key, Caller::User(Some(who.clone())), self.now);
        }
        Ok(who)
    }

    /// Who is listing, for visibility decided in SQL.
    fn viewer(who: Option<&Principal>) -> Viewer {
        match who {
            None => Viewer::Anonymous,
            Some(p) if p.user.role >= crate::identity::GlobalRole::Admin => Viewer::Admin,
            Some(p) => Viewer::User(p.user.id),
        }
    }

    /// The caller's user id, for reading their grants alongside the data.
    fn user_id(who: Option<&Principal>) -> Option<i64> {
        who.map(|p| p.user.id)
    }

    /// The caller's level on a repository (public repositories and projects give read).
    fn level_on_repository(who: Option<&Principal>, grants: &Grants, repo: &Repository) -> Option<Level> {
        let public = repo.public || repo.project.public;
        match who {
            None => anonymous_level(public),
            Some(p) => p.repo_level(
                grants.projects.get(&repo.project.id).copied(),
                grants.repositories.get(&repo.id).copied(),
                public,
            ),
        }
    }

    /// The caller's level on a project itself.
    fn level_on_project(who: Option<&Principal>, grants: &Grants, project: &Project) -> Option<Level> {
        match who {
            None => anonymous_level(project.public),
            Some(p) => p.project_level(grants.projects.get(&project.id).copied(), project.public),
        }
    }

    /// The repository `{repositoryId}` (a numeric id) names in our own API, if the caller has
    /// the route's level on it; one they cannot see is a 404, as if it did not exist. One round trip.
    async fn repository_at(&self, call: &Call<'_>) -> Result<Repository> {
        let hidden = || ApiError::not_found("Repository", "Repository does not exist.");
        let id: i64 = call.params.raw("repositoryId").parse().map_err(|_| hidden())?;
        self.repository_checked(call, RepositoryKey::Id(id), call.need(), hidden).await
    }

    /// The repository so named, if the caller has `need` on it (else `hidden`, or 401/403).
    async fn repository_checked(
        &self,
        call: &Call<'_>,
        key: RepositoryKey<'_>,
        need: Level,
        hidden: impl Fn() -> ApiError,
    ) -> Result<Repository> {
        Ok(self.repository_with_grants(call, key, need, hidden).await?.0)
    }

    /// The same, with the caller's grants read alongside (for policies that ask for more).
    async fn repository_with_grants(
        &self,
        call: &Call<'_>,
        key: RepositoryKey<'_>,
        need: Level,
        hidden: impl Fn() -> ApiError,
    ) -> Result<(Repository, Grants)> {
        let who = call.who.as_ref();
        let (repo, grants) = self.store.repository_access(key, Self::user_id(who)).await?;
        let repo = repo.ok_or_else(&hidden)?;
        Self::require(who, Self::level_on_repository(who, &grants, &repo), need, hidden)?;
        Ok((repo, grants))
    }

    /// Syncs and pushes are refused for an archived repository: it is read-only.
    fn refuse_archived(repo: &Repository) -> Result<()> {
        if repo.archived {
            return Err(ApiError::Conflict("The repository is archived: it is not synced.".into()));
        }
        Ok(())
    }

    /// Checks the caller's level: anonymous callers get 401, callers who can't see the
    /// resource get `hidden` (a 404), callers who see it but lack `need` get 403.
    fn require(
        who: Option<&Principal>,
        have: Option<Level>,
        need: Level,
        hidden: impl FnOnce() -> ApiError,
    ) -> Result<()> {
        match (who, have) {
            (_, Some(level)) if level >= need => Ok(()),
            (None, _) => Err(ApiError::Unauthorized),
            (Some(_), None) => Err(hidden()),
            (Some(_), Some(_)) => Err(ApiError::Forbidden),
        }
    }

    /// Seals a URL's credentials for storage, or reuses `kept`'s when asked to.
    async fn stored_url(&self, url: &GitUrl, kept: Option<&StoredUrl>) -> Result<StoredUrl> {
        let sealed_userinfo = match (kept, url.userinfo()) {
            (Some(kept), _) => kept.sealed_userinfo.clone(),
            (None, Some(info)) => Some(self.crypto.seal(&info).await?),
            (None, None) => None,
        };
        Ok(StoredUrl { plain: url.without_credentials(), masked: url.masked(), sealed_userinfo })
    }

    /// Random bytes as lower-case hex.
    fn random_hex(&self, bytes: usize) -> Result<String> {
        Ok(crate::hex::encode(&self.crypto.random_bytes(bytes)?))
    }
}

#[cfg(all(test, not(target_arch = "wasm32")))]
mod tests;
