//! The audit log's rules: what an event records about a request (category, action, the objects
//! it touched, the fields it changed with secrets masked, the caller's address), how the
//! auditing REST API's filters and page cursors read, and the retention period.
//!
//! Everything here is pure; the service decides which requests are recorded and the store
//! writes them (see `api::audit` and `store::audit`).

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::api::Query;
use crate::time::Timestamp;

/// Why an auditing request's parameter or a retention period was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuditError {
    /// A query parameter that does not read (`context` names it).
    #[error("{message}")]
    Parameter {
        /// The parameter.
        name: &'static str,
        /// What is wrong with it.
        message: String,
    },
    /// A retention period outside one day to 100 years.
    #[error("The retention period must be between 1 day and 100 years.")]
    Period,
}

impl AuditError {
    /// The parameter or field at fault.
    pub fn context(&self) -> &'static str {
        match self {
            Self::Parameter { name, .. } => name,
            Self::Period => "period",
        }
    }
}

fn bad(name: &'static str, message: impl Into<String>) -> AuditError {
    AuditError::Parameter { name, message: message.into() }
}

/// The page size when `limit` is not given.
pub const DEFAULT_LIMIT: u64 = 200;
/// The largest page served (a larger `limit` is served as this).
pub const MAX_LIMIT: u64 = 1000;
/// The largest offset served as given (a larger one is served as this: past every event). D1
/// binds numbers as doubles, so offsets stay well inside 2^53.
pub const MAX_OFFSET: u64 = 1 << 31;
/// The most events one cron run deletes.
pub const PRUNE_BATCH: u64 = 1000;
/// A value shown instead of a secret.
pub const MASKED: &str = "********";
/// The most changed fields recorded per event.
const MAX_CHANGED: usize = 50;
/// The longest value recorded for a changed field (longer ones are cut, with `…`).
const MAX_VALUE_CHARS: usize = 255;

/// How long events are kept (`{"years","months","days"}`; missing fields are 0). A month is
/// counted as 30 days and a year as 365.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(schemars::JsonSchema))]
pub struct RetentionPeriod {
    /// Years.
    #[serde(default)]
    pub years: u32,
    /// Months (30 days each).
    #[serde(default)]
    pub months: u32,
    /// Days.
    #[serde(default)]
    pub days: u32,
}

impl Default for RetentionPeriod {
    /// Ninety days.
    fn default() -> Self {
        Self { years: 0, months: 0, days: 90 }
    }
}

/// The longest period accepted, in days.
const MAX_RETENTION_DAYS: u64 = 36_500;
const DAY_MS: i64 = 86_400_000;

impl RetentionPeriod {
    /// The period in days.
    pub fn total_days(self) -> u64 {
        u64::from(self.years) * 365 + u64::from(self.months) * 30 + u64::from(self.days)
    }

    /// The period, checked: at least a day, at most 100 years.
    pub fn checked(self) -> Result<Self, AuditError> {
        if (1..=MAX_RETENTION_DAYS).contains(&self.total_days()) { Ok(self) } else { Err(AuditError::Period) }
    }

    /// Events recorded before this instant are past the period at `now`.
    pub fn cutoff(self, now: Timestamp) -> Timestamp {
        let days = i64::try_from(self.total_days().min(MAX_RETENTION_DAYS)).unwrap_or(0);
        now.plus_millis(-days.saturating_mul(DAY_MS))
    }
}

/// Who made a request, as an event records them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Actor {
    /// A signed-in user.
    User {
        /// Their id.
        id: i64,
        /// Their name.
        name: String,
        /// Their slug (for their profile's address).
        slug: String,
    },
    /// Nobody signed in (or a sign-in that failed).
    Anonymous,
    /// A farm node, by its name.
    Node(String),
}

impl Actor {
    /// `user`, `anonymous` or `system` (the author's `type`).
    pub fn kind(&self) -> &'static str {
        match self {
            Self::User { .. } => "user",
            Self::Anonymous => "anonymous",
            Self::Node(_) => "system",
        }
    }

    /// The author's name.
    pub fn name(&self) -> &str {
        match self {
            Self::User { name, .. } | Self::Node(name) => name,
            Self::Anonymous => ANONYMOUS,
        }
    }
}

/// The author name of anonymous requests and failed sign-ins.
pub const ANONYMOUS: &str = "Anonymous";

/// The category of a route, by the first rule its path pattern matches. Ordered: more specific
/// areas first.
const CATEGORIES: &[(&str, &str)] = &[
    ("/rest/auditing/", "Auditing"),
    ("/rest/audit/", "Auditing"),
    ("/permissions/", "Permissions"),
    ("/rest/access-tokens/", "Users"),
    ("/api/v4/", "Mirrors"),
    ("/rest/mirroring/", "Mirrors"),
    ("/rest/mirrorfarm/latest/upstreamServers", "Mirrors"),
    ("/rest/mirrorfarm/latest/nodes", "Mirrors"),
    ("/rest/mirrorfarm/latest/jobs", "Mirrors"),
    ("/rest/mirrorfarm/latest/repos/", "Mirrors"),
    ("/rest/sync/", "Repositories"),
    ("/rest/api/latest/admin/users", "Users"),
    ("/rest/api/latest/users", "Users"),
    ("/rest/api/latest/admin/", "Administration"),
    ("/rest/api/latest/logs/", "Administration"),
    ("/rest/policies/", "Administration"),
    ("{repositorySlug}", "Repositories"),
    ("/rest/api/latest/projects", "Projects"),
];

/// The category of sign-in failures.
pub const AUTHENTICATION: &str = "Authentication";
/// The action of a sign-in failure.
pub const SIGN_IN_FAILED: &str = "AuthenticationFailed";

/// A route's category, from its path pattern (`Administration` when no rule matches).
pub fn category(pattern: &str) -> &'static str {
    CATEGORIES.iter().find(|(part, _)| pattern.contains(part)).map_or("Administration", |(_, c)| c)
}

/// The i18n key of a category or an action (`mirrorfarm.audit.category.projects`).
pub fn i18n_key(kind: &str, name: &str) -> String {
    format!("mirrorfarm.audit.{kind}.{}", name.to_ascii_lowercase())
}

/// An object an event touched: its type and id, as the request names it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Affected {
    /// `PROJECT`, `REPOSITORY`, `USER`, …
    #[serde(rename = "type")]
    pub kind: String,
    /// Its id as the path names it (a project's key, `KEY/slug`, a numeric id, a user's slug).
    pub id: String,
}

/// Path parameters → the type of object they name.
const PARAM_TYPES: &[(&str, &str)] = &[
    ("projectKey", "PROJECT"),
    ("id", "REPOSITORY"),
    ("repositoryId", "REPOSITORY"),
    ("mirror_id", "REMOTE_MIRROR"),
    ("userSlug", "USER"),
    ("tokenId", "ACCESS_TOKEN"),
    ("upstreamId", "UPSTREAM_SERVER"),
    ("projectId", "UPSTREAM_PROJECT"),
    ("upstreamRepoId", "UPSTREAM_REPOSITORY"),
    ("externalRepositoryId", "UPSTREAM_REPOSITORY"),
    ("labelName", "LABEL"),
    ("loggerName", "LOGGER"),
    ("jobId", "JOB"),
];

/// The objects a request touched: each path parameter of a known type (a repository named by
/// project and slug is one `REPOSITORY` `KEY/slug`), and the user a `name=` query names on user
/// and permission routes.
pub fn affected_objects(pattern: &str, params: &[(&str, String)], query: &Query) -> Vec<Affected> {
    let value = |name: &str| params.iter().find(|(k, _)| *k == name).map(|(_, v)| v.clone());
    let mut out = Vec::new();
    for (name, id) in params {
        if *name == "repositorySlug" {
            let key = value("projectKey").unwrap_or_default();
            out.push(Affected { kind: "REPOSITORY".into(), id: format!("{key}/{id}") });
        } else if let Some((_, kind)) = PARAM_TYPES.iter().find(|(p, _)| p == name) {
            out.push(Affected { kind: (*kind).into(), id: id.clone() });
        }
    }
    let names_user = pattern.contains("/permissions/users") || pattern.ends_with("/admin/users");
    if names_user && let Some(name) = query.get("name").filter(|n| !n.is_empty()) {
        out.push(Affected { kind: "USER".into(), id: name.to_owned() });
    }
    out
}

/// The filter key of an object (`|TYPE,ID|`): events keep their objects' keys in one text
/// column, so a filter is a substring test.
pub fn object_key(kind: &str, id: &str) -> String {
    format!("|{},{id}|", kind.to_ascii_uppercase())
}

/// A field the request changed (`to`; `from` is not read, to cost nothing).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Changed {
    /// The field.
    pub key: String,
    /// Its new value: text as sent (URLs' credentials masked), other JSON as JSON text,
    /// secrets as [`MASKED`].
    pub to: String,
}

/// Whether a field's name says it holds a secret.
pub fn is_secret_key(key: &str) -> bool {
    const SECRET: &[&str] = &["password", "passwd", "token", "secret", "credential", "authorization", "license"];
    let key = key.to_ascii_lowercase();
    SECRET.iter().any(|s| key.contains(s))
}

fn shown(key: &str, value: &str) -> String {
    if is_secret_key(key) {
        return MASKED.into();
    }
    let scrubbed = crate::urls::scrub_text(value);
    if scrubbed.chars().count() > MAX_VALUE_CHARS {
        let mut cut: String = scrubbed.chars().take(MAX_VALUE_CHARS).collect();
        cut.push('…');
        cut
    } else {
        scrubbed
    }
}

/// The fields a write sent: the query's parameters and the body's top-level JSON or form
/// fields (the body wins), secrets masked, at most 50. Other bodies (an avatar upload) record none.
pub fn changed_values(content_type: Option<&str>, body: &[u8], query: &Query) -> Vec<Changed> {
    let mut fields: Vec<(String, String)> = query.pairs().to_vec();
    let mime = content_type.unwrap_or("").split(';').next().unwrap_or("").trim().to_ascii_lowercase();
    let text = std::str::from_utf8(body).unwrap_or("");
    let from_body: Vec<(String, String)> = match mime.as_str() {
        _ if text.trim().is_empty() => Vec::new(),
        "application/json" | "" => match serde_json::from_str::<Value>(text) {
            Ok(Value::Object(map)) => map
                .into_iter()
                .map(|(k, v)| {
                    let v = match v {
                        Value::String(s) => s,
                        other => other.to_string(),
                    };
                    (k, v)
                })
                .collect(),
            _ => Vec::new(),
        },
        "application/x-www-form-urlencoded" => Query::parse(text).pairs().to_vec(),
        _ => Vec::new(),
    };
    for (k, v) in from_body {
        fields.retain(|(key, _)| *key != k);
        fields.push((k, v));
    }
    fields.into_iter().take(MAX_CHANGED).map(|(k, v)| Changed { to: shown(&k, &v), key: k }).collect()
}

/// The caller's address: `cf-connecting-ip`, else the first entry of `x-forwarded-for`.
pub fn source_address(header: impl Fn(&str) -> Option<String>) -> Option<String> {
    header("cf-connecting-ip").map(|v| v.trim().to_owned()).filter(|v| !v.is_empty()).or_else(|| {
        header("x-forwarded-for")
            .and_then(|v| v.split(',').next().map(|s| s.trim().to_owned()))
            .filter(|v| !v.is_empty())
    })
}

/// A position in the log, newest first: the last event of a page (`"<epochMillis>,<id>"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cursor {
    /// The event's time.
    pub at: Timestamp,
    /// Its id.
    pub id: i64,
}

impl Cursor {
    /// Reads `"<epochMillis>,<id>"`.
    pub fn parse(text: &str) -> Result<Self, AuditError> {
        let invalid = || bad("pageCursor", "pageCursor must be \"<epochMillis>,<id>\" as a previous page gave it.");
        let (at, id) = text.split_once(',').ok_or_else(invalid)?;
        let at = at.trim().parse::<i64>().map_err(|_| invalid())?;
        let id = id.trim().parse::<i64>().map_err(|_| invalid())?;
        Ok(Self { at: Timestamp(at), id })
    }

    /// `"<epochMillis>,<id>"`.
    pub fn render(self) -> String {
        format!("{},{}", self.at.millis(), self.id)
    }
}

/// What `GET /rest/auditing/1.0/events` asks for.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EventQuery {
    /// Events at or after this instant.
    pub from: Option<Timestamp>,
    /// Events at or before this instant.
    pub to: Option<Timestamp>,
    /// Events skipped (after the cursor, if one is given).
    pub offset: u64,
    /// Events older than this one.
    pub cursor: Option<Cursor>,
    /// The page size.
    pub limit: u64,
    /// Authors' user ids (any of them).
    pub user_ids: Vec<i64>,
    /// Categories (any of them).
    pub categories: Vec<String>,
    /// Actions (any of them).
    pub actions: Vec<String>,
    /// Objects (events that touched any of them), as [`object_key`]s.
    pub objects: Vec<String>,
    /// Free text, found anywhere in the event (any case).
    pub search: Option<String>,
}

fn list(query: &Query, name: &str) -> Vec<String> {
    query
        .get(name)
        .map_or_else(Vec::new, |v| v.split(',').map(str::trim).filter(|s| !s.is_empty()).map(str::to_owned).collect())
}

fn instant(query: &Query, name: &'static str) -> Result<Option<Timestamp>, AuditError> {
    match query.get(name).map(str::trim).filter(|v| !v.is_empty()) {
        None => Ok(None),
        Some(v) => Timestamp::parse_iso8601(v)
            .map(Some)
            .ok_or_else(|| bad(name, format!("{name} must be an ISO-8601 instant, e.g. 2026-12-03T01:00:00.000Z."))),
    }
}

impl EventQuery {
    /// Reads the query string; a value that does not read is an error naming its parameter.
    pub fn parse(query: &Query) -> Result<Self, AuditError> {
        let from = instant(query, "from")?;
        let to = instant(query, "to")?;
        if let (Some(f), Some(t)) = (from, to)
            && f > t
        {
            return Err(bad("from", "from must not be after to."));
        }
        let number = |name: &'static str, default: u64| -> Result<u64, AuditError> {
            match query.get(name).map(str::trim).filter(|v| !v.is_empty()) {
                None => Ok(default),
                Some(v) => v.parse::<u64>().map_err(|_| bad(name, format!("{name} must be a whole number ≥ 0."))),
            }
        };
        let offset = number("offset", 0)?.min(MAX_OFFSET);
        let limit = number("limit", DEFAULT_LIMIT)?;
        if limit == 0 {
            return Err(bad("limit", "limit must be at least 1."));
        }
        let cursor = query.get("pageCursor").filter(|v| !v.trim().is_empty()).map(Cursor::parse).transpose()?;
        let user_ids = list(query, "userIds")
            .iter()
            .map(|v| {
                v.parse::<i64>().map_err(|_| bad("userIds", "userIds must be a comma-separated list of user ids."))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let mut objects = Vec::new();
        for pair in query.get("affectedObject").unwrap_or("").split(';').map(str::trim).filter(|p| !p.is_empty()) {
            let (kind, id) = pair
                .split_once(',')
                .map(|(k, i)| (k.trim(), i.trim()))
                .filter(|(k, i)| !k.is_empty() && !i.is_empty())
                .ok_or_else(|| bad("affectedObject", "affectedObject must be TYPE,ID pairs separated by ';'."))?;
            objects.push(object_key(kind, id));
        }
        Ok(Self {
            from,
            to,
            offset,
            cursor,
            limit: limit.min(MAX_LIMIT),
            user_ids,
            categories: list(query, "categories"),
            actions: list(query, "actions"),
            objects,
            search: query.get("search").map(str::trim).filter(|s| !s.is_empty()).map(str::to_owned),
        })
    }
}

#[cfg(test)]
mod tests {
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    use super::*;

    #[test]
    fn categories_come_from_the_path_area() {
        assert_eq!(category("/rest/api/latest/projects"), "Projects");
        assert_eq!(category("/rest/api/latest/projects/{projectKey}/repos/{repositorySlug}"), "Repositories");
        assert_eq!(category("/rest/api/latest/projects/{projectKey}/permissions/users"), "Permissions");
        assert_eq!(category("/rest/api/latest/admin/permissions/users"), "Permissions");
        assert_eq!(category("/rest/api/latest/admin/users"), "Users");
        assert_eq!(category("/rest/access-tokens/latest/users/{userSlug}"), "Users");
        assert_eq!(category("/api/v4/projects/{id}/remote_mirrors"), "Mirrors");
        assert_eq!(category("/rest/api/latest/admin/banner"), "Administration");
        assert_eq!(category("/rest/auditing/latest/configuration/retention"), "Auditing");
        assert_eq!(category("/somewhere/else"), "Administration");
        assert_eq!(i18n_key("category", "Projects"), "mirrorfarm.audit.category.projects");
    }

    #[test]
    fn affected_objects_are_named_by_the_path_and_the_name_query() {
        let params = vec![("projectKey", "PM".to_owned()), ("repositorySlug", "r".to_owned())];
        let q = Query::parse("name=alice&permission=REPO_READ");
        let objects = affected_objects(
            "/rest/api/latest/projects/{projectKey}/repos/{repositorySlug}/permissions/users",
            &params,
            &q,
        );
        let keys: Vec<String> = objects.iter().map(|o| object_key(&o.kind, &o.id)).collect();
        assert_eq!(keys, ["|PROJECT,PM|", "|REPOSITORY,PM/r|", "|USER,alice|"]);
        let none = affected_objects("/rest/api/latest/projects", &[], &q);
        assert!(none.is_empty(), "a name query names a user only on user and permission routes");
    }

    #[test]
    fn changed_values_mask_secrets_and_credentials() {
        let body =
            br#"{"url":"https://bob:hunter2@example.com/x.git","auth_password":"pw","enabled":true,"token":"t"}"#;
        let changed = changed_values(Some("application/json"), body, &Query::parse("permission=REPO_READ"));
        let get = |k: &str| changed.iter().find(|c| c.key == k).map(|c| c.to.clone());
        assert_eq!(get("permission").as_deref(), Some("REPO_READ"));
        assert_eq!(get("enabled").as_deref(), Some("true"));
        assert_eq!(get("auth_password").as_deref(), Some(MASKED));
        assert_eq!(get("token").as_deref(), Some(MASKED));
        let url = get("url").unwrap_or_default();
        assert!(!url.contains("hunter2") && !url.contains("bob") && url.ends_with("@example.com/x.git"), "{url}");
        let form =
            changed_values(Some("application/x-www-form-urlencoded"), b"password=secret1&name=x", &Query::default());
        assert_eq!(
            form.iter().map(|c| (c.key.as_str(), c.to.as_str())).collect::<Vec<_>>(),
            [("password", MASKED), ("name", "x")]
        );
        assert!(changed_values(Some("multipart/form-data; boundary=x"), b"--x\r\n", &Query::default()).is_empty());
        let long = format!(r#"{{"description":"{}"}}"#, "a".repeat(400));
        let cut = changed_values(None, long.as_bytes(), &Query::default());
        assert_eq!(cut[0].to.chars().count(), MAX_VALUE_CHARS + 1);
    }

    #[test]
    fn source_is_the_connecting_address_else_the_first_forwarded() {
        let headers = |pairs: &'static [(&'static str, &'static str)]| {
            move |name: &str| pairs.iter().find(|(k, _)| *k == name).map(|(_, v)| (*v).to_owned())
        };
        assert_eq!(
            source_address(headers(&[("cf-connecting-ip", "198.51.100.7"), ("x-forwarded-for", "1.1.1.1")])).as_deref(),
            Some("198.51.100.7")
        );
        assert_eq!(
            source_address(headers(&[("x-forwarded-for", " 203.0.113.9, 10.0.0.1")])).as_deref(),
            Some("203.0.113.9")
        );
        assert_eq!(source_address(headers(&[])), None);
    }

    #[test]
    fn cursors_round_trip_and_bad_ones_name_their_parameter() {
        let c = Cursor::parse("1796169600000,42").expect("cursor");
        assert_eq!((c.at, c.id, c.render()), (Timestamp(1_796_169_600_000), 42, "1796169600000,42".to_owned()));
        for text in ["", "12", "a,1", "1,b"] {
            assert_eq!(Cursor::parse(text).map_err(|e| e.context()), Err("pageCursor"), "{text}");
        }
    }

    #[test]
    fn event_queries_read_every_filter_and_refuse_bad_values() {
        let q = EventQuery::parse(&Query::parse(
            "from=2026-12-03T01:00:00.000Z&to=2026-12-04T00:00:00Z&limit=50000&offset=3&userIds=1,2\
             &actions=CreateProject,DeleteProject&categories=Projects&affectedObject=PROJECT,1;repository,PM/r\
             &search=%20hello%20&pageCursor=5,6",
        ))
        .expect("query");
        assert_eq!(q.from, Timestamp::parse_iso8601("2026-12-03T01:00:00.000Z"));
        assert_eq!(q.to.map(Timestamp::to_iso8601).as_deref(), Some("2026-12-04T00:00:00.000Z"));
        assert_eq!((q.limit, q.offset, q.user_ids.clone()), (MAX_LIMIT, 3, vec![1, 2]));
        assert_eq!(q.actions, ["CreateProject", "DeleteProject"]);
        assert_eq!(q.categories, ["Projects"]);
        assert_eq!(q.objects, ["|PROJECT,1|", "|REPOSITORY,PM/r|"]);
        assert_eq!((q.search.as_deref(), q.cursor), (Some("hello"), Some(Cursor { at: Timestamp(5), id: 6 })));
        assert_eq!(EventQuery::parse(&Query::default()).expect("defaults").limit, DEFAULT_LIMIT);
        let far = EventQuery::parse(&Query::parse("offset=18446744073709551615")).expect("far");
        assert_eq!(far.offset, MAX_OFFSET, "bound as a double by D1, so kept exact");
        for (text, context) in [
            ("from=yesterday", "from"),
            ("to=2026-13-01T00:00:00Z", "to"),
            ("from=2026-12-04T00:00:00Z&to=2026-12-03T00:00:00Z", "from"),
            ("limit=0", "limit"),
            ("limit=-1", "limit"),
            ("offset=x", "offset"),
            ("userIds=alice", "userIds"),
            ("affectedObject=PROJECT", "affectedObject"),
            ("pageCursor=x", "pageCursor"),
        ] {
            assert_eq!(EventQuery::parse(&Query::parse(text)).map_err(|e| e.context()), Err(context), "{text}");
        }
    }

    #[test]
    fn retention_periods_are_checked_and_cut_off_in_days() {
        assert_eq!(RetentionPeriod::default().total_days(), 90);
        let p: RetentionPeriod = serde_json::from_str(r#"{"months":1,"days":2}"#).expect("period");
        assert_eq!((p.years, p.total_days()), (0, 32));
        assert_eq!(p.cutoff(Timestamp(40 * DAY_MS)), Timestamp(8 * DAY_MS));
        assert_eq!(RetentionPeriod { years: 0, months: 0, days: 0 }.checked(), Err(AuditError::Period));
        assert_eq!(RetentionPeriod { years: 101, months: 0, days: 0 }.checked(), Err(AuditError::Period));
        assert!(RetentionPeriod { years: 1, months: 0, days: 0 }.checked().is_ok());
    }

    #[test]
    fn secret_keys() {
        for key in ["password", "oldPassword", "auth_password", "token", "webhookSecret", "credentials", "license"] {
            assert!(is_secret_key(key), "{key}");
        }
        for key in ["name", "url", "key", "permission"] {
            assert!(!is_secret_key(key), "{key}");
        }
    }
}
