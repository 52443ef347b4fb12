//! Instance administration (seed 002): the banner, the default branch, repository policies and
//! archiving, labels, rate limits, log levels, the license, application properties and the cluster.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::identity::{field, no_user};
use super::{ApiError, ApiResponse, Call, Result, Service};
use crate::admin::license::{self, LicenseDto, LicenseError};
use crate::admin::logs::{self, LogLevel};
use crate::admin::{
    self, ApplicationProperties, Audience, Banner, BucketSettings, Policy, PolicyPermission, RateLimitSettings,
    RateLimiter, UserRateLimit, setting,
};
use crate::farm::{ClusterNode, NodeAddress};
use crate::identity::{User, UserDto};
use crate::paging::BitbucketPage;
use crate::queue::Signals;
use crate::registry::{Repository, RepositoryDto};
use crate::store::port::Database;
use crate::store::{Blobs, Crypto, Grants, HistoryOrder};

fn no_label(name: &str) -> ApiError {
    ApiError::not_found("Label", format!("Label {name} does not exist."))
}

/// `RestMinimalRef`: how Bitbucket answers a branch.
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "openapi", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub(crate) struct BranchRef {
    /// The full ref (`refs/heads/main`).
    id: String,
    /// The short name (`main`).
    display_id: String,
    /// Always `BRANCH`.
    #[serde(rename = "type")]
    kind: &'static str,
}

/// `RestLabel`.
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "openapi", derive(schemars::JsonSchema))]
pub(crate) struct LabelDto {
    /// The label.
    name: String,
}

/// A labelled repository (`RestLabelable`): the repository, with what kind of thing it is.
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "openapi", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub(crate) struct LabeledRepository {
    #[serde(flatten)]
    repository: RepositoryDto,
    /// Always `REPOSITORY`.
    labelable_type: &'static str,
}

/// A user's rate-limit settings (`RestUserRateLimitSettings`).
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "openapi", derive(schemars::JsonSchema))]
pub(crate) struct UserRateLimitDto {
    user: UserDto,
    /// Their bucket (absent while whitelisted without one).
    #[serde(skip_serializing_if = "Option::is_none")]
    settings: Option<BucketSettings>,
    /// Exempt from the limit.
    whitelisted: bool,
}

/// One entry of the rate limit's history (`RestRateLimitHistory`… entries).
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "openapi", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub(crate) struct RejectionDto {
    user: UserDto,
    reject_count: i64,
    last_reject_time: i64,
}

/// `{logLevel}`.
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "openapi", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub(crate) struct LoggerDto {
    log_level: LogLevel,
}

/// `GET admin/cluster`.
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "openapi", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub(crate) struct ClusterDto {
    running: bool,
    local_node: ClusterNode,
    nodes: Vec<ClusterNode>,
}

/// The `{settings: {capacity, fillRate}}` part of a rate-limit body.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
struct BucketBody {
    capacity: Option<u32>,
    fill_rate: Option<u32>,
}

fn bucket_of(map: &serde_json::Map<String, Value>, name: &str) -> Result<Option<BucketSettings>> {
    match map.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => {
            let body: BucketBody = serde_json::from_value(v.clone()).map_err(|e| field(name, e))?;
            let (Some(capacity), Some(fill_rate)) = (body.capacity, body.fill_rate) else {
                return Err(field(name, format!("{name} needs both capacity and fillRate.")));
            };
            BucketSettings { capacity, fill_rate }.validate().map(Some).map_err(|(f, m)| field(f, m))
        }
    }
}

fn boolean_of(map: &serde_json::Map<String, Value>, name: &str) -> Result<Option<bool>> {
    match map.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Bool(b)) => Ok(Some(*b)),
        Some(_) => Err(field(name, format!("{name} must be true or false."))),
    }
}

impl<D: Database, C: Crypto, S: Signals, L: RateLimiter, B: Blobs> Service<'_, D, C, S, L, B> {
    /// Stores one setting and forgets the remembered ones.
    async fn put_setting(&self, name: &str, value: Option<&impl Serialize>) -> Result<()> {
        self.store.put_setting(name, value).await?;
        self.forget_settings();
        Ok(())
    }

    // ---- Banner ----

    pub(super) async fn get_banner(&self, call: &Call<'_>) -> Result<ApiResponse> {
        let settings = self.settings().await?;
        match settings.banner.as_ref().filter(|b| call.who.is_some() || b.audience == Audience::All) {
            Some(banner) => Ok(ApiResponse::json(200, banner)),
            None => Ok(ApiResponse::empty(204)),
        }
    }

    pub(super) async fn put_banner(&self, call: &Call<'_>) -> Result<ApiResponse> {
        let map = call.json_object()?;
        let audience = map
            .get("audience")
            .and_then(Value::as_str)
            .and_then(Audience::parse)
            .ok_or_else(|| field("audience", admin::AdminError::Audience))?;
        let message = match map.get("message") {
            None | Some(Value::Null) => String::new(),
            Some(Value::String(m)) if m.len() <= 16 * 1024 => m.clone(),
            Some(_) => return Err(field("message", "message must be text of at most 16 KB.")),
        };
        let enabled = boolean_of(&map, "enabled")?.unwrap_or(true);
        self.put_setting(setting::BANNER, Some(&Banner { message, enabled, audience })).await?;
        Ok(ApiResponse::empty(204))
    }

    pub(super) async fn delete_banner(&self, _call: &Call<'_>) -> Result<ApiResponse> {
        self.put_setting(setting::BANNER, None::<&Banner>).await?;
        Ok(ApiResponse::empty(204))
    }

    // ---- Default branch ----

    pub(super) async fn get_default_branch(&self, _call: &Call<'_>) -> Result<ApiResponse> {
        let branch = self
            .settings()
            .await?
            .default_branch
            .clone()
            .ok_or_else(|| ApiError::not_found("Default branch", "No global default branch is configured."))?;
        Ok(ApiResponse::json(
            200,
            &BranchRef { id: format!("refs/heads/{branch}"), display_id: branch, kind: "BRANCH" },
        ))
    }

    pub(super) async fn put_default_branch(&self, call: &Call<'_>) -> Result<ApiResponse> {
        let map = call.json_object()?;
        let text = map.get("id").and_then(Value::as_str).ok_or_else(|| field("id", "id names the branch."))?;
        let branch = admin::branch_short_name(text).map_err(|e| field("id", e))?;
        self.put_setting(setting::DEFAULT_BRANCH, Some(&branch)).await?;
        Ok(ApiResponse::empty(204))
    }

    pub(super) async fn delete_default_branch(&self, _call: &Call<'_>) -> Result<ApiResponse> {
        self.put_setting(setting::DEFAULT_BRANCH, None::<&String>).await?;
        Ok(ApiResponse::empty(204))
    }

    // ---- Repository policies ----

    pub(super) async fn get_policy(&self, _call: &Call<'_>, archive: bool) -> Result<ApiResponse> {
        let s = self.settings().await?;
        let permission = if archive { s.archive() } else { s.delete() };
        Ok(ApiResponse::json(200, &Policy { permission }))
    }

    pub(super) async fn put_policy(&self, call: &Call<'_>, archive: bool) -> Result<ApiResponse> {
        let map = call.json_object()?;
        let permission = map
            .get("permission")
            .and_then(Value::as_str)
            .and_then(PolicyPermission::parse)
            .ok_or_else(|| field("permission", admin::AdminError::PolicyPermission))?;
        let name = if archive { setting::ARCHIVE_POLICY } else { setting::DELETE_POLICY };
        self.put_setting(name, Some(&permission)).await?;
        Ok(ApiResponse::json(200, &Policy { permission }))
    }

    /// Whether the caller meets `policy` on `repo`, by the grants read with it.
    fn check_policy(call: &Call<'_>, repo: &Repository, grants: &Grants, policy: PolicyPermission) -> Result<()> {
        let who = call.principal()?;
        let repository = Self::level_on_repository(Some(who), grants, repo);
        let project = Self::level_on_project(Some(who), grants, &repo.project);
        if policy.allows(who, project, repository) { Ok(()) } else { Err(ApiError::Forbidden) }
    }

    /// `DELETE /projects/{key}/repos/{slug}`, under the delete policy. Bitbucket answers 202:
    /// deletion is accepted (here it is also done).
    pub(super) async fn delete_repository(&self, call: &Call<'_>) -> Result<ApiResponse> {
        let (repo, grants) = self.repository_for_with_grants(call).await?;
        Self::check_policy(call, &repo, &grants, self.settings().await?.delete())?;
        self.store.delete_repository(repo.id).await?;
        Ok(ApiResponse::empty(202))
    }

    /// `PUT /projects/{key}/repos/{slug}`: archive or unarchive (under the archive policy), and
    /// change the description, visibility, forking and default branch.
    pub(super) async fn update_repository(&self, call: &Call<'_>) -> Result<ApiResponse> {
        let (mut repo, grants) = self.repository_for_with_grants(call).await?;
        let map = call.json_object()?;
        if let Some(name) = map.get("name").and_then(Value::as_str)
            && name != repo.name
        {
            return Err(field("name", "Renaming repositories is not supported."));
        }
        if let Some(archived) = boolean_of(&map, "archived")?
            && archived != repo.archived
        {
            Self::check_policy(call, &repo, &grants, self.settings().await?.archive())?;
            repo.archived = archived;
        }
        match map.get("description") {
            None => {}
            Some(Value::Null) => repo.description = None,
            Some(Value::String(d)) => repo.description = Some(d.clone()).filter(|d| !d.is_empty()),
            Some(_) => return Err(field("description", "description must be text.")),
        }
        if let Some(public) = boolean_of(&map, "public")? {
            repo.public = public;
        }
        if let Some(forkable) = boolean_of(&map, "forkable")? {
            repo.forkable = forkable;
        }
        if let Some(branch) = map.get("defaultBranch").and_then(Value::as_str) {
            repo.default_branch = admin::branch_short_name(branch).map_err(|e| field("defaultBranch", e))?;
        }
        self.store.update_repository(&repo).await?;
        Ok(ApiResponse::json(200, &RepositoryDto::new(&repo, &call.req.origin)))
    }

    // ---- Labels ----

    pub(super) async fn add_label(&self, call: &Call<'_>) -> Result<ApiResponse> {
        let repo = self.repository_for(call).await?;
        let map = call.json_object()?;
        let text = map.get("name").and_then(Value::as_str).ok_or_else(|| field("name", "name is the label."))?;
        let name = admin::label_name(text).map_err(|e| field("name", e))?;
        self.store.add_label(repo.id, &name).await?;
        Ok(ApiResponse::json(200, &LabelDto { name }))
    }

    pub(super) async fn repository_labels(&self, call: &Call<'_>) -> Result<ApiResponse> {
        let repo = self.repository_for(call).await?;
        let page = BitbucketPage::from_query(&call.query);
        let (names, more) = self.store.labels_of(repo.id, page.start, page.limit).await?;
        Ok(ApiResponse::json(200, &page.open(names.into_iter().map(|name| LabelDto { name }).collect(), more)))
    }

    pub(super) async fn remove_label(&self, call: &Call<'_>) -> Result<ApiResponse> {
        let repo = self.repository_for(call).await?;
        let name = call.param("labelName")?.to_ascii_lowercase();
        if self.store.remove_label(repo.id, &name).await? { Ok(ApiResponse::empty(204)) } else { Err(no_label(&name)) }
    }

    pub(super) async fn list_labels(&self, call: &Call<'_>) -> Result<ApiResponse> {
        let page = BitbucketPage::from_query(&call.query);
        let viewer = Self::viewer(call.who.as_ref());
        let (names, more) = self.store.labels(viewer, call.query.get("prefix"), page.start, page.limit).await?;
        Ok(ApiResponse::json(200, &page.open(names.into_iter().map(|name| LabelDto { name }).collect(), more)))
    }

    /// A label exists while a repository the caller may see carries it.
    pub(super) async fn get_label(&self, call: &Call<'_>) -> Result<ApiResponse> {
        let name = call.param("labelName")?.to_ascii_lowercase();
        let viewer = Self::viewer(call.who.as_ref());
        let (found, _) = self.store.labeled_repositories(viewer, &name, 0, 1).await?;
        if found.is_empty() { Err(no_label(&name)) } else { Ok(ApiResponse::json(200, &LabelDto { name })) }
    }

    pub(super) async fn labeled(&self, call: &Call<'_>) -> Result<ApiResponse> {
        let name = call.param("labelName")?.to_ascii_lowercase();
        if let Some(kind) = call.query.get("type")
            && !kind.eq_ignore_ascii_case("REPOSITORY")
        {
            return Err(field("type", format!("{kind:?} is not a labelable type; only REPOSITORY is.")));
        }
        let page = BitbucketPage::from_query(&call.query);
        let viewer = Self::viewer(call.who.as_ref());
        let (repos, more) = self.store.labeled_repositories(viewer, &name, page.start, page.limit).await?;
        if repos.is_empty() && page.start == 0 {
            return Err(no_label(&name));
        }
        let values = repos
            .iter()
            .map(|r| LabeledRepository {
                repository: RepositoryDto::new(r, &call.req.origin),
                labelable_type: "REPOSITORY",
            })
            .collect();
        Ok(ApiResponse::json(200, &page.open(values, more)))
    }

    // ---- Rate limits ----

    pub(super) async fn get_rate_limit_settings(&self, _call: &Call<'_>) -> Result<ApiResponse> {
        Ok(ApiResponse::json(200, &self.settings().await?.rate_limit))
    }

    pub(super) async fn put_rate_limit_settings(&self, call: &Call<'_>) -> Result<ApiResponse> {
        let map = call.json_object()?;
        let current = self.settings().await?.rate_limit;
        let enabled = boolean_of(&map, "enabled")?.ok_or_else(|| field("enabled", "enabled is required."))?;
        let default_settings = bucket_of(&map, "defaultSettings")?.unwrap_or(current.default_settings);
        let settings = RateLimitSettings { enabled, default_settings };
        self.put_setting(setting::RATE_LIMIT, Some(&settings)).await?;
        Ok(ApiResponse::json(200, &settings))
    }

    /// The user `{userSlug}` names.
    async fn user_at(&self, call: &Call<'_>) -> Result<User> {
        let slug = call.param("userSlug")?;
        self.store.user_by_name(&slug).await?.ok_or_else(|| no_user(&slug))
    }

    /// Nobody but a system administrator sees or changes a system administrator's limits.
    fn guard_sys_admin(call: &Call<'_>, user: &User) -> Result<()> {
        let who = call.principal()?;
        if user.role == crate::identity::GlobalRole::SysAdmin && user.id != who.user.id && !who.is_sys_admin() {
            return Err(ApiError::Forbidden);
        }
        Ok(())
    }

    fn rate_limit_dto(user: &User, limit: UserRateLimit) -> UserRateLimitDto {
        UserRateLimitDto { user: UserDto::from(user), settings: limit.settings, whitelisted: limit.whitelisted }
    }

    pub(super) async fn list_user_rate_limits(&self, call: &Call<'_>) -> Result<ApiResponse> {
        let page = BitbucketPage::from_query(&call.query);
        let (records, more) = self.store.rate_limit_users(call.query.get("filter"), page.start, page.limit).await?;
        let values = records.iter().map(|r| Self::rate_limit_dto(&r.user, r.limit)).collect();
        Ok(ApiResponse::json(200, &page.open(values, more)))
    }

    /// Reads `{settings, whitelisted}`: a bucket of one's own, or exempt (or both).
    fn user_limit_of(map: &serde_json::Map<String, Value>) -> Result<UserRateLimit> {
        let settings = bucket_of(map, "settings")?;
        let whitelisted = boolean_of(map, "whitelisted")?.unwrap_or(false);
        if settings.is_none() && !whitelisted {
            return Err(field("settings", "Give settings ({capacity, fillRate}), or whitelisted: true."));
        }
        Ok(UserRateLimit { settings, whitelisted })
    }

    pub(super) async fn set_user_rate_limits(&self, call: &Call<'_>) -> Result<ApiResponse> {
        let map = call.json_object()?;
        let names: Vec<String> = match map.get("usernames") {
            Some(Value::Array(items)) if !items.is_empty() => items
                .iter()
                .map(|v| v.as_str().map(str::to_owned).ok_or_else(|| field("usernames", "usernames are text.")))
                .collect::<Result<_>>()?,
            _ => return Err(field("usernames", "usernames lists at least one user.")),
        };
        let limit = Self::user_limit_of(&map)?;
        let refs: Vec<&str> = names.iter().map(String::as_str).collect();
        let users = self.store.users_by_names(&refs).await?;
        let found = |n: &str| users.iter().any(|u| u.name.eq_ignore_ascii_case(n) || u.slug.eq_ignore_ascii_case(n));
        if let Some(missing) = names.iter().find(|n| !found(n)) {
            return Err(no_user(missing));
        }
        for user in &users {
            Self::guard_sys_admin(call, user)?;
        }
        self.store.set_rate_limits(&users.iter().map(|u| u.id).collect::<Vec<_>>(), limit).await?;
        self.forget_callers();
        let values: Vec<UserRateLimitDto> = users.iter().map(|u| Self::rate_limit_dto(u, limit)).collect();
        Ok(ApiResponse::json(200, &values))
    }

    pub(super) async fn get_user_rate_limit(&self, call: &Call<'_>) -> Result<ApiResponse> {
        let user = self.user_at(call).await?;
        let who = call.principal()?;
        if user.id != who.user.id && !who.is_admin() {
            return Err(ApiError::Forbidden);
        }
        Self::guard_sys_admin(call, &user)?;
        let limit = self.store.rate_limit_of(user.id).await?.ok_or_else(|| {
            ApiError::not_found("Rate limit", format!("User {} has no rate-limit settings of their own.", user.slug))
        })?;
        Ok(ApiResponse::json(200, &Self::rate_limit_dto(&user, limit)))
    }

    pub(super) async fn put_user_rate_limit(&self, call: &Call<'_>) -> Result<ApiResponse> {
        let user = self.user_at(call).await?;
        Self::guard_sys_admin(call, &user)?;
        let limit = Self::user_limit_of(&call.json_object()?)?;
        self.store.set_rate_limits(&[user.id], limit).await?;
        self.forget_callers();
        Ok(ApiResponse::json(200, &Self::rate_limit_dto(&user, limit)))
    }

    pub(super) async fn delete_user_rate_limit(&self, call: &Call<'_>) -> Result<ApiResponse> {
        let user = self.user_at(call).await?;
        Self::guard_sys_admin(call, &user)?;
        if !self.store.delete_rate_limit(user.id).await? {
            return Err(ApiError::not_found(
                "Rate limit",
                format!("User {} has no rate-limit settings of their own.", user.slug),
            ));
        }
        self.forget_callers();
        Ok(ApiResponse::empty(204))
    }

    pub(super) async fn rate_limit_history(&self, call: &Call<'_>) -> Result<ApiResponse> {
        let order = match call.query.get("order") {
            None => HistoryOrder::Newest,
            Some(o) if o.eq_ignore_ascii_case("NEWEST") => HistoryOrder::Newest,
            Some(o) if o.eq_ignore_ascii_case("FREQUENCY") => HistoryOrder::Frequency,
            Some(o) => return Err(field("order", format!("{o:?} is not an order; use NEWEST or FREQUENCY."))),
        };
        let page = BitbucketPage::from_query(&call.query);
        let (records, more) = self.store.rejections(order, page.start, page.limit).await?;
        let values = records
            .iter()
            .map(|r| RejectionDto {
                user: UserDto::from(&r.user),
                reject_count: r.count,
                last_reject_time: r.last.millis(),
            })
            .collect();
        Ok(ApiResponse::json(200, &page.open(values, more)))
    }

    // ---- Log levels ----

    fn level_param(call: &Call<'_>) -> Result<LogLevel> {
        let text = call.param("levelName")?;
        LogLevel::parse(&text).ok_or_else(|| {
            field("levelName", format!("{text:?} is not a level; use TRACE, DEBUG, INFO, WARN or ERROR."))
        })
    }

    fn logger_param(call: &Call<'_>) -> Result<String> {
        let name = call.param("loggerName")?;
        logs::logger_name(&name).map(str::to_owned).map_err(|e| field("loggerName", e))
    }

    pub(super) async fn get_logger(&self, call: &Call<'_>, root: bool) -> Result<ApiResponse> {
        let levels = &self.settings().await?.logs;
        let log_level = if root { levels.root } else { levels.effective(&Self::logger_param(call)?) };
        Ok(ApiResponse::json(200, &LoggerDto { log_level }))
    }

    pub(super) async fn set_logger(&self, call: &Call<'_>, root: bool) -> Result<ApiResponse> {
        let level = Self::level_param(call)?;
        let mut levels = self.settings().await?.logs.clone();
        if root {
            levels.root = level;
        } else {
            let name = Self::logger_param(call)?;
            if !levels.loggers.contains_key(&name) && levels.loggers.len() >= logs::MAX_LOGGERS {
                return Err(field("loggerName", format!("At most {} loggers may be set.", logs::MAX_LOGGERS)));
            }
            levels.loggers.insert(name, level);
        }
        self.put_setting(setting::LOG_LEVELS, Some(&levels)).await?;
        Ok(ApiResponse::empty(204))
    }

    // ---- License ----

    pub(super) async fn get_license(&self, _call: &Call<'_>) -> Result<ApiResponse> {
        let text = self
            .settings()
            .await?
            .license
            .clone()
            .ok_or_else(|| ApiError::not_found("License", "No license is installed."))?;
        let terms = license::decode(&text).map_err(|e| ApiError::Internal(format!("stored license: {e}")))?;
        let users = self.store.count_users().await?;
        Ok(ApiResponse::json(200, &LicenseDto::new(&terms, &text, users, self.now)))
    }

    pub(super) async fn post_license(&self, call: &Call<'_>) -> Result<ApiResponse> {
        let map = call.json_object()?;
        let text = map
            .get("license")
            .and_then(Value::as_str)
            .filter(|t| !t.trim().is_empty())
            .ok_or_else(|| field("license", "license is the license text."))?;
        let key = self.config.license_public_key.as_deref();
        let terms = license::check(self.crypto, key, text, self.now).await.map_err(|e| match e {
            LicenseError::Crypto(c) => ApiError::Internal(c.to_string()),
            other => ApiError::Conflict(other.to_string()),
        })?;
        // Everything the answer needs is read before the write: a failure after it would answer
        // an error for a license that is installed.
        let users = self.store.count_users().await?;
        self.put_setting(setting::LICENSE, Some(&text.trim().to_owned())).await?;
        Ok(ApiResponse::json(200, &LicenseDto::new(&terms, text, users, self.now)))
    }

    /// The most users the installed license allows (`None`: no license, or unlimited).
    pub(super) async fn licensed_users(&self) -> Result<Option<i64>> {
        let Some(text) = self.settings().await?.license.clone() else { return Ok(None) };
        let terms = license::decode(&text).map_err(|e| ApiError::Internal(format!("stored license: {e}")))?;
        Ok((terms.maximum_number_of_users >= 0).then_some(terms.maximum_number_of_users))
    }

    // ---- Properties and cluster ----

    pub(super) async fn application_properties(&self, _call: &Call<'_>) -> Result<ApiResponse> {
        Ok(ApiResponse::json(200, &ApplicationProperties::current()))
    }

    /// The cluster: the edge that answers (the local node) and the farm nodes.
    pub(super) async fn cluster(&self, call: &Call<'_>) -> Result<ApiResponse> {
        let origin = crate::urls::GitUrl::parse(&call.req.origin).ok();
        let host = origin.as_ref().map_or_else(|| "edge".to_owned(), |u| u.host().to_owned());
        let port = origin.as_ref().map_or(443, |u| u.port().unwrap_or(if u.scheme() == "http" { 80 } else { 443 }));
        let local_node = ClusterNode {
            id: "edge".into(),
            name: "edge".into(),
            address: NodeAddress { address: host.clone(), host_name: host, port },
            local: true,
            build_version: env!("CARGO_PKG_VERSION").into(),
        };
        let mut nodes = vec![local_node.clone()];
        nodes.extend(self.cluster_nodes().await?);
        Ok(ApiResponse::json(200, &ClusterDto { running: true, local_node, nodes }))
    }
}
