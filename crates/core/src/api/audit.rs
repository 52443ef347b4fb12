//! The audit log: which requests become events and how each is written (in the batch of the
//! change it records when there is one), the auditing REST API's read (`GET
//! /rest/auditing/1.0/events`, Atlassian's shape), the retention setting, and the audit
//! plugin's retention-config-review notification.

use serde::Serialize;
use serde_json::Value;

use super::identity::field;
use super::routes::{Access, Params, Route};
use super::{ApiError, ApiRequest, ApiResponse, Call, Method, Query, Result, Service};
use crate::admin::setting;
use crate::audit::{
    self, Actor, Affected, AuditError, Changed, Cursor, EventQuery, PRUNE_BATCH, RetentionPeriod, i18n_key,
};
use crate::identity::Credentials;
use crate::store::port::Database;
use crate::store::{AuditCarry, AuditRecord, AuditRow, Blobs, Crypto};
use crate::time::Timestamp;

/// The user setting that says the caller dismissed the retention-config-review notification.
pub const RETENTION_REVIEW_DISMISSED: &str = "audit.retentionConfigReview.dismissed";

/// Whether a request to `route` is recorded: every write (not GET, HEAD or OPTIONS) except the
/// farm-node protocol and signed webhook deliveries, which are machine traffic.
pub(super) fn audited(route: &Route, method: Method) -> bool {
    !matches!(method, Method::Get | Method::Options) && !matches!(route.access, Access::Node | Access::WebhookSigner)
}

fn method_name(m: Method) -> &'static str {
    match m {
        Method::Get => "GET",
        Method::Post => "POST",
        Method::Put => "PUT",
        Method::Delete => "DELETE",
        Method::Options => "OPTIONS",
        Method::Other => "OTHER",
    }
}

/// What an event records about a request to `route` by `actor` (`sign_in_failed`: the
/// credentials sent were wrong, so the event is a failed sign-in).
pub(super) fn record(
    now: Timestamp,
    route: &Route,
    params: &Params,
    req: &ApiRequest,
    query: &Query,
    actor: Actor,
    sign_in_failed: bool,
) -> AuditRecord {
    let mut objects = audit::affected_objects(route.path, &params.decoded(), query);
    let (category, action) = if sign_in_failed {
        // The name a Basic sign-in gave is the object of the attempt (never its password).
        if let Ok(Some(Credentials::UserToken { user, .. })) =
            Credentials::from_headers(req.private_token.as_deref(), req.authorization.as_deref())
            && !user.eq_ignore_ascii_case("x-token-auth")
        {
            objects.push(Affected { kind: "USER".into(), id: user });
        }
        (audit::AUTHENTICATION.to_owned(), audit::SIGN_IN_FAILED.to_owned())
    } else {
        (audit::category(route.path).to_owned(), format!("{:?}", route.handler))
    };
    AuditRecord {
        at: now,
        actor,
        source: audit::source_address(|name| req.header(name)),
        category,
        action,
        method: method_name(req.method).to_owned(),
        path: req.path.clone(),
        objects,
        changed: audit::changed_values(req.content_type.as_deref(), &req.body, query),
    }
}

/// An auditing parameter's error, with the parameter as its context.
fn refused(e: AuditError) -> ApiError {
    field(e.context(), e)
}

/// `author` (`AuditAuthor`).
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "openapi", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub(crate) struct AuditAuthor {
    /// The user's name, a farm node's name, or `Anonymous`.
    name: String,
    /// `user`, `anonymous` or `system` (a farm node).
    #[serde(rename = "type")]
    kind: String,
    /// The user's id (empty for others).
    id: String,
    /// The user's page (empty for others).
    uri: String,
    /// Always empty.
    avatar_uri: String,
}

/// `type` (`AuditType`): what happened.
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "openapi", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub(crate) struct AuditType {
    /// The area (`Projects`, `Repositories`, `Permissions`, `Users`, `Mirrors`, `Administration`,
    /// `Auditing`, `Authentication`).
    category: String,
    /// Its i18n key.
    category_i18n_key: String,
    /// The operation (the route's operationId, or `AuthenticationFailed`).
    action: String,
    /// Its i18n key.
    action_i18n_key: String,
}

/// An object an event touched.
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "openapi", derive(schemars::JsonSchema))]
pub(crate) struct AuditObject {
    /// Its name (as the request named it).
    name: String,
    /// `PROJECT`, `REPOSITORY`, `USER`, …
    #[serde(rename = "type")]
    kind: String,
    /// Always empty.
    uri: String,
    /// Its id as the request named it (a project's key, `KEY/slug`, a numeric id, a slug).
    id: String,
}

/// A field the request changed.
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "openapi", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub(crate) struct AuditChange {
    /// The field.
    key: String,
    /// Its i18n key.
    i18n_key: String,
    /// Always empty (the old value is not read).
    from: String,
    /// The value sent; secrets are `********`.
    to: String,
}

/// A name and value (`outcome`, `status`, `httpMethod`, `path`).
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "openapi", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub(crate) struct AuditAttribute {
    /// The name.
    name: String,
    /// Its i18n key.
    name_i18n_key: String,
    /// The value.
    value: String,
}

/// One event (`AuditEntity`).
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "openapi", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub(crate) struct AuditEntity {
    /// When, ISO-8601 UTC.
    timestamp: String,
    /// Who.
    author: AuditAuthor,
    /// What.
    #[serde(rename = "type")]
    kind: AuditType,
    /// The objects touched.
    affected_objects: Vec<AuditObject>,
    /// The fields sent (secrets masked).
    changed_values: Vec<AuditChange>,
    /// The client's address (`cf-connecting-ip`, else the first `x-forwarded-for`).
    source: Option<String>,
    /// This instance's address.
    system: String,
    /// Always null (no cluster nodes).
    node: Option<String>,
    /// Always `REST`.
    method: String,
    /// `outcome` (`SUCCESS` or `FAILURE`), `status` (the HTTP status, when the event was not
    /// written with its change), `httpMethod` and `path`.
    extra_attributes: Vec<AuditAttribute>,
}

/// A page's position (`pagingInfo`).
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "openapi", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub(crate) struct PagingInfo {
    /// Whether no events follow.
    last_page: bool,
    /// Events on this page.
    size: u64,
    /// The `offset` of the next page (null on the last).
    next_page_offset: Option<u64>,
    /// The `pageCursor` of the next page (`"<epochMillis>,<id>"`; absent on the last).
    #[serde(skip_serializing_if = "Option::is_none")]
    next_page_cursor: Option<String>,
    /// The next page's address (absent on the last).
    #[serde(skip_serializing_if = "Option::is_none")]
    next_page_link: Option<String>,
}

/// `GET /rest/auditing/1.0/events`.
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "openapi", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub(crate) struct AuditPage {
    /// The events, newest first.
    entities: Vec<AuditEntity>,
    /// Where the page is.
    paging_info: PagingInfo,
}

/// The retention setting (`{"period": {years, months, days}}`).
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "openapi", derive(schemars::JsonSchema))]
pub(crate) struct RetentionConfig {
    /// How long events are kept.
    period: RetentionPeriod,
}

fn attribute(name: &str, value: String) -> AuditAttribute {
    AuditAttribute { name: name.to_owned(), name_i18n_key: i18n_key("attribute", name), value }
}

fn entity(row: AuditRow, system: &str) -> AuditEntity {
    let objects: Vec<Affected> = serde_json::from_str(&row.objects).unwrap_or_default();
    let changed: Vec<Changed> = serde_json::from_str(&row.changed).unwrap_or_default();
    let (id, uri) = match (row.author_id, &row.author_slug) {
        (Some(id), Some(slug)) => (id.to_string(), format!("{system}/users/{slug}")),
        _ => (String::new(), String::new()),
    };
    let mut extra = vec![attribute("outcome", row.outcome)];
    if let Some(status) = row.status {
        extra.push(attribute("status", status.to_string()));
    }
    extra.push(attribute("httpMethod", row.method));
    extra.push(attribute("path", row.path));
    AuditEntity {
        timestamp: Timestamp(row.at).to_iso8601(),
        author: AuditAuthor { name: row.author_name, kind: row.author_type, id, uri, avatar_uri: String::new() },
        kind: AuditType {
            category_i18n_key: i18n_key("category", &row.category),
            category: row.category,
            action_i18n_key: i18n_key("action", &row.action),
            action: row.action,
        },
        affected_objects: objects
            .into_iter()
            .map(|o| AuditObject { name: o.id.clone(), kind: o.kind, uri: String::new(), id: o.id })
            .collect(),
        changed_values: changed
            .into_iter()
            .map(|c| AuditChange { i18n_key: i18n_key("field", &c.key), key: c.key, from: String::new(), to: c.to })
            .collect(),
        source: row.source,
        system: system.to_owned(),
        node: None,
        method: "REST".into(),
        extra_attributes: extra,
    }
}

impl<D: Database, C: Crypto, S: crate::queue::Signals, L: crate::admin::RateLimiter, B: Blobs>
    Service<'_, D, C, S, L, B>
{
    /// Writes a request's event after its answer: nothing more if it rode in the change's batch
    /// and the request succeeded; otherwise on its own (a request that wrote nothing, or failed:
    /// `FAILURE` with the status; an event written with a change the request then failed after
    /// is marked `FAILURE`). Says which in `Server-Timing` (`audit;desc="in batch"` or `"own write"`).
    pub(super) async fn finish_audit(&self, record: &AuditRecord, mut response: ApiResponse) -> ApiResponse {
        let succeeded = response.status < 400;
        let outcome = if succeeded { "SUCCESS" } else { "FAILURE" };
        let (how, written) = match (self.store.disarm_audit(), succeeded) {
            (AuditCarry::Carried(_), true) => ("in batch", Ok(())),
            (AuditCarry::Carried(Some(id)) | AuditCarry::Provisional(Some(id)), false) => {
                ("own write", self.store.fail_audit(id, response.status).await)
            }
            (AuditCarry::Provisional(Some(id)), true) => ("own write", self.store.confirm_audit(id).await),
            (_, _) => ("own write", self.store.write_audit(record, outcome, response.status).await),
        };
        let how = match written {
            Ok(()) => how,
            Err(e) => {
                response.diagnostic.get_or_insert_with(|| format!("audit event not written: {e}"));
                "not written"
            }
        };
        response.headers.push(("Server-Timing".into(), format!("audit;desc=\"{how}\"")));
        response
    }

    /// `GET /rest/auditing/1.0/events`: a page of events, newest first.
    pub(super) async fn audit_events(&self, call: &Call<'_>) -> Result<ApiResponse> {
        let query = EventQuery::parse(&call.query).map_err(refused)?;
        let (rows, more) = self.store.audit_events(&query).await?;
        let size = rows.len() as u64;
        let cursor = rows.last().map(|r| Cursor { at: Timestamp(r.at), id: r.id }.render()).filter(|_| more);
        let link = cursor.as_ref().map(|c| {
            let mut pairs = call.query.without(&["pageCursor", "offset"]);
            pairs.push(("pageCursor".into(), c.clone()));
            format!("{}?{}", call.url(), Query::encode_pairs(&pairs))
        });
        let entities = rows.into_iter().map(|r| entity(r, &call.req.origin)).collect();
        let paging_info = PagingInfo {
            last_page: !more,
            size,
            next_page_offset: more.then_some(query.offset + size),
            next_page_cursor: cursor,
            next_page_link: link,
        };
        Ok(ApiResponse::json(200, &AuditPage { entities, paging_info }))
    }

    /// `GET /rest/auditing/1.0/configuration/retention`.
    pub(super) async fn get_audit_retention(&self, _call: &Call<'_>) -> Result<ApiResponse> {
        Ok(ApiResponse::json(200, &RetentionConfig { period: self.settings().await?.retention() }))
    }

    /// `PUT /rest/auditing/1.0/configuration/retention`: `{"period": {years, months, days}}`
    /// (missing fields are 0), from one day to 100 years; answers the setting.
    pub(super) async fn put_audit_retention(&self, call: &Call<'_>) -> Result<ApiResponse> {
        let map = call.json_object()?;
        let period = map.get("period").ok_or_else(|| field("period", "period is required."))?;
        let period: RetentionPeriod = match period {
            Value::Object(_) => serde_json::from_value(period.clone())
                .map_err(|_| field("period", "years, months and days are whole numbers ≥ 0."))?,
            _ => return Err(field("period", "period is an object: {years, months, days}.")),
        };
        let period = period.checked().map_err(refused)?;
        self.store.put_setting(setting::AUDIT_RETENTION, Some(&period)).await?;
        self.forget_settings();
        Ok(ApiResponse::json(200, &RetentionConfig { period }))
    }

    /// `DELETE /rest/audit/1.0/notification-settings/retention-config-review`: the signed-in
    /// user dismisses the audit log's retention-config-review notification (kept as their user
    /// setting [`RETENTION_REVIEW_DISMISSED`]).
    pub(super) async fn dismiss_retention_review(&self, call: &Call<'_>) -> Result<ApiResponse> {
        let who = call.principal()?;
        let mut map = serde_json::Map::new();
        map.insert(RETENTION_REVIEW_DISMISSED.into(), Value::Bool(true));
        self.store.merge_user_settings(who.user.id, &map).await?;
        Ok(ApiResponse::empty(204))
    }

    /// The cron's share: deletes events older than the retention period, at most
    /// [`PRUNE_BATCH`] a run, in one statement; how many.
    pub async fn prune_audit_events(&self) -> Result<u64> {
        let cutoff = self.settings().await?.retention().cutoff(self.now);
        Ok(self.store.prune_audit_events(cutoff, PRUNE_BATCH).await?)
    }
}
