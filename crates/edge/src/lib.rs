//! # mirrorfarm-edge
//!
//! The Cloudflare Worker that serves mirrorfarm's REST APIs (GitLab remote mirrors, Bitbucket
//! projects, repositories, users and tokens) from the edge. It is deliberately thin: it turns a
//! Workers request into the core's [`ApiRequest`], lends the core D1 ([`d1::D1Store`]) and
//! WebCrypto ([`webcrypto::WebCrypto`]) and the current time, and sends back what the core decided.

mod blobs;
mod d1;
mod rate_limits;
mod signals;
mod webcrypto;

use std::rc::Rc;

use mirrorfarm_core::admin::{LogLevel, LogLevels};
use mirrorfarm_core::api::{
    ApiRequest, ApiResponse, CallerCache, Config, CorsOrigins, Method, Service, split_request_url,
};
use mirrorfarm_core::store::Store;
use mirrorfarm_core::time::Timestamp;
use mirrorfarm_core::urls::HostAllowlist;
use worker::{
    Context, Env, Request, Response, Result, ScheduleContext, ScheduledEvent, console_error, console_log, event,
};

thread_local! {
    /// Callers remembered by this isolate between requests (see the core's `CallerCache`).
    static CALLERS: Rc<CallerCache> = Rc::new(CallerCache::new());
}

/// The `Server-Timing` entry for the D1 round trips a request made.
fn server_timing((trips, millis): (u32, f64)) -> String {
    let plural = if trips == 1 { "" } else { "s" };
    // Tenths of a millisecond, formatted as integers: float formatting would add ~12 KB of wasm.
    let tenths = (millis.max(0.0) * 10.0).round() as u64;
    format!("d1;desc=\"{trips} round trip{plural}\";dur={}.{}", tenths / 10, tenths % 10)
}

/// The logger of the per-request lines (see the core's `admin::logs`).
const REQUEST_LOGGER: &str = "mirrorfarm.edge.requests";
/// The logger of the cron's lines.
const SCHEDULED_LOGGER: &str = "mirrorfarm.edge.scheduled";

/// Name of the D1 binding holding all state.
const DB_BINDING: &str = "DB";

/// Reads a string binding, whether declared as a secret or a plain variable.
fn setting(env: &Env, name: &str) -> Option<String> {
    env.secret(name).ok().map(|s| s.to_string()).or_else(|| env.var(name).ok().map(|v| v.to_string()))
}

/// Converts the Workers request into the core's, reading the body only if its declared size is acceptable.
async fn api_request(req: &mut Request) -> Result<ApiRequest> {
    // The runtime's URL string is already normalised; splitting it avoids bundling a URL parser
    // (and its Unicode tables) into the Worker.
    let url = req.inner().url();
    let (origin, path, query) = split_request_url(&url);
    let header = |name: &str| req.headers().get(name).ok().flatten();
    let declared_length = header("content-length").and_then(|v| v.parse::<u64>().ok());
    let (content_type, authorization, private_token) =
        (header("content-type"), header("authorization"), header("private-token"));
    // The core applies each route's own limit; nothing larger than the largest is ever read, and
    // a body the core has streamed to R2 (a migration archive) is not read at all.
    let too_large = declared_length.is_some_and(|n| n > mirrorfarm_core::api::LARGEST_BODY_BYTES as u64);
    let streamed = mirrorfarm_core::api::streams_request_body(Method::parse(&req.inner().method()), path);
    let body = if too_large || streamed { Vec::new() } else { req.bytes().await.unwrap_or_default() };
    let headers = req.headers().entries().map(|(k, v)| (k.to_ascii_lowercase(), v)).collect();
    Ok(ApiRequest {
        // The raw method: workers-rs reads methods it does not know as GET.
        method: Method::parse(&req.inner().method()),
        origin: origin.to_owned(),
        path: path.to_owned(),
        query: query.to_owned(),
        content_type,
        authorization,
        private_token,
        body,
        declared_length,
        headers,
    })
}

fn into_response(api: ApiResponse) -> Result<Response> {
    let mut response = match api.body {
        Some(body) => {
            let mut r = Response::from_bytes(body)?;
            // JSON unless the answer says otherwise (Prometheus text).
            let kind = api.headers.iter().find(|(name, _)| name.eq_ignore_ascii_case("content-type"));
            r.headers_mut().set("Content-Type", kind.map_or("application/json", |(_, v)| v.as_str()))?;
            r
        }
        None => Response::empty()?,
    }
    .with_status(api.status);
    for (name, value) in api.headers.iter().filter(|(name, _)| !name.eq_ignore_ascii_case("content-type")) {
        response.headers_mut().append(name, value)?;
    }
    Ok(response)
}

/// The deployment's settings, from Worker variables; a malformed one is an error, not a default.
fn config(env: &Env) -> std::result::Result<Config, String> {
    let defaults = Config::default();
    let allowed = setting(env, "MIRRORFARM_ALLOWED_HOSTS").unwrap_or_default();
    let allowed_hosts = HostAllowlist::parse(&allowed).map_err(|e| format!("MIRRORFARM_ALLOWED_HOSTS: {e}"))?;
    let origins = setting(env, "MIRRORFARM_CORS_ORIGINS").unwrap_or_default();
    let cors_origins = CorsOrigins::parse(&origins).map_err(|e| format!("MIRRORFARM_CORS_ORIGINS: {e}"))?;
    let millis = |name: &str, default: i64| match setting(env, name).filter(|v| !v.is_empty()) {
        None => Ok(default),
        Some(v) => v.parse::<i64>().map_err(|_| format!("{name}: {v:?} is not a number of milliseconds")),
    };
    Ok(Config {
        allowed_hosts,
        retry_base_ms: millis("MIRRORFARM_RETRY_BASE_MS", defaults.retry_base_ms)?,
        poll_interval_ms: millis("MIRRORFARM_POLL_INTERVAL_MS", defaults.poll_interval_ms)?,
        stale_after_ms: millis("MIRRORFARM_STALE_AFTER_MS", defaults.stale_after_ms)?,
        cors_origins,
        sync_wait_ms: millis("MIRRORFARM_SYNC_WAIT_MS", defaults.sync_wait_ms)?,
        license_public_key: match setting(env, "MIRRORFARM_LICENSE_PUBLIC_KEY").filter(|k| !k.trim().is_empty()) {
            None => None,
            Some(hex) => Some(
                mirrorfarm_core::hex::decode(hex.trim())
                    .filter(|k| k.len() == 32)
                    .ok_or("MIRRORFARM_LICENSE_PUBLIC_KEY: expected 64 hex digits (a raw Ed25519 public key)")?,
            ),
        },
    })
}

pub(crate) fn now() -> Timestamp {
    Timestamp(js_sys::Date::now() as i64)
}

/// One request's line in the log, written by [`RequestLine::write`] at the levels in force.
struct RequestLine {
    method: String,
    /// Paths never carry secrets (tokens travel in headers); queries are not logged.
    path: String,
    status: u16,
    /// The request's D1 round trips (`Server-Timing`).
    timing: String,
}

impl RequestLine {
    fn write(&self, levels: &LogLevels) {
        let Self { method, path, status, timing } = self;
        if levels.enabled(REQUEST_LOGGER, LogLevel::Info) {
            console_log!("{method} {path} -> {status}");
        }
        if levels.enabled(REQUEST_LOGGER, LogLevel::Debug) {
            console_log!("DEBUG {method} {path}: {timing}");
        }
    }
}

/// The log levels in force, read from D1 through the isolate's memory (the defaults if they
/// cannot be read).
async fn read_log_levels(env: &Env) -> LogLevels {
    let (Ok(config), Ok(db)) = (config(env), env.d1(DB_BINDING)) else { return LogLevels::default() };
    let store = Store::new(d1::D1::new(db));
    let crypto = webcrypto::WebCrypto::new(setting(env, "MIRRORFARM_SEAL_KEY"));
    let callers = CALLERS.with(Rc::clone);
    Service::new(&store, &crypto, &config, now()).with_caller_cache(&callers).log_levels().await
}

#[event(fetch)]
async fn fetch(mut req: Request, env: Env, ctx: Context) -> Result<Response> {
    let api_req = api_request(&mut req).await?;
    let config = match config(&env) {
        Ok(config) => config,
        Err(e) => {
            console_error!("configuration error: {e}");
            return Response::error("server misconfigured", 500);
        }
    };
    let store = Store::new(d1::D1::new(env.d1(DB_BINDING)?));
    let crypto = webcrypto::WebCrypto::new(setting(&env, "MIRRORFARM_SEAL_KEY"));
    let callers = CALLERS.with(Rc::clone);
    let signals = signals::SignalsStub::new(&env);
    let limiter = rate_limits::RateLimitStub::new(&env);
    let blobs = blobs::R2Blobs::new(&env);
    let service = Service::new(&store, &crypto, &config, now())
        .with_caller_cache(&callers)
        .with_signals(&signals)
        .with_limiter(&limiter)
        .with_blobs(&blobs);
    let mut response = service.handle(&api_req).await;
    let transfer = response.transfer.take();
    let spent = store.database().spent();
    response.headers.push(("Server-Timing".into(), server_timing(spent)));
    let line = RequestLine {
        method: req.inner().method().to_string(),
        path: api_req.path.clone(),
        status: response.status,
        timing: server_timing(spent),
    };
    // The levels an administrator set (logs/…), usually remembered by the isolate. When they
    // are not, reading them is a D1 round trip: it is made after the answer has gone, so no
    // request (a new isolate's first above all) waits on its own log line.
    match service.known_log_levels() {
        Some(levels) => line.write(&levels),
        None => ctx.wait_until(async move { line.write(&read_log_levels(&env).await) }),
    }
    // Internal errors are logged at every level (ERROR is the most severe there is).
    if let Some(detail) = &response.diagnostic {
        console_error!("internal error on {}: {detail}", api_req.path);
    }
    let status = response.status;
    let answer = into_response(response)?;
    match transfer {
        None => Ok(answer),
        Some(transfer) => match blobs.transfer(&transfer, &req, answer).await {
            Ok(answer) => Ok(answer),
            Err((code, message)) => {
                console_error!("blob transfer on {} (answered {status}) failed: {message}", api_req.path);
                let body =
                    serde_json::json!({"errors": [{"context": null, "message": message, "exceptionName": null}]});
                Ok(Response::from_json(&body)?.with_status(code))
            }
        },
    }
}

/// The cron: returns the jobs of nodes that stopped answering to the queue (so no mirror stays
/// `started` past a lease deadline even when no node asks for work), queues due polls, and
/// prunes the job history and the audit log (a bounded number of rows each).
#[event(scheduled)]
async fn scheduled(_event: ScheduledEvent, env: Env, _ctx: ScheduleContext) {
    let (config, db) = match (config(&env), env.d1(DB_BINDING)) {
        (Ok(config), Ok(db)) => (config, db),
        (Err(e), _) => return console_error!("configuration error: {e}"),
        (_, Err(e)) => return console_error!("scheduled: no database: {e}"),
    };
    let store = Store::new(d1::D1::new(db));
    let crypto = webcrypto::WebCrypto::new(setting(&env, "MIRRORFARM_SEAL_KEY"));
    let signals = signals::SignalsStub::new(&env);
    let service = Service::new(&store, &crypto, &config, now()).with_signals(&signals);
    match service.expire_leases().await {
        Ok(0) => {}
        Ok(n) => console_log!("scheduled: {n} expired lease(s) returned to the queue"),
        Err(e) => console_error!("scheduled: expiring leases failed: {e}"),
    }
    match service.schedule_polls().await {
        Ok(0) => {}
        Ok(n) => console_log!("scheduled: {n} upstream poll(s) queued"),
        Err(e) => console_error!("scheduled: queueing polls failed: {e}"),
    }
    match service.prune_job_history().await {
        Ok(0) => {}
        Ok(n) => console_log!("scheduled: {n} finished job(s) deleted from the history"),
        Err(e) => console_error!("scheduled: pruning job history failed: {e}"),
    }
    match service.check_license_notices().await {
        Ok(0) => {}
        Ok(n) => console_log!("scheduled: {n} license notification(s) queued"),
        Err(e) => console_error!("scheduled: checking the license failed: {e}"),
    }
    match service.fail_stranded_moves().await {
        Ok(0) => {}
        Ok(n) => console_log!("scheduled: {n} Mesh move(s) whose target node stopped answering failed"),
        Err(e) => console_error!("scheduled: failing stranded Mesh moves failed: {e}"),
    }
    match service.prune_audit_events().await {
        Ok(0) => {}
        Ok(n) => console_log!("scheduled: {n} audit event(s) past the retention period deleted"),
        Err(e) => console_error!("scheduled: pruning the audit log failed: {e}"),
    }
    let (trips, _) = store.database().spent();
    if service.log_levels().await.enabled(SCHEDULED_LOGGER, LogLevel::Debug) {
        console_log!("DEBUG scheduled: {trips} D1 round trip(s)");
    }
}
