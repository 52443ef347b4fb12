//! The node's clone server: read-only smart HTTP (protocol v0, v1 and v2) over the copies this
//! node holds, so people clone from the farm node near them instead of from the upstream.
//!
//! `GET /scm/<key>/<slug>.git/info/refs?service=git-upload-pack` and
//! `POST /scm/<key>/<slug>.git/git-upload-pack` are handed to `git http-backend`, with
//! receive-pack switched off; everything else is refused. Who may clone is the edge's decision
//! (`POST …/nodes/clone-access` with the caller's `Authorization`), remembered for
//! [`CLONE_ACCESS_TTL_MS`] per caller and repository, so a clone costs the edge one question.

use std::collections::HashMap;
use std::convert::Infallible;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full, StreamBody, combinators::BoxBody};
use hyper::body::{Frame, Incoming};
use hyper::{Request, Response, StatusCode};
use mirrorfarm_core::nodes::CLONE_ACCESS_TTL_MS;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tracing::{info, warn};

use crate::edge::{EdgeClient, EdgeError};

type Body = BoxBody<Bytes, std::io::Error>;

/// Largest request body read (an upload-pack negotiation: wants and haves).
const MAX_REQUEST_BYTES: usize = 64 << 20;

/// How long a client may take to send a request's head: a slow client is dropped after it.
const HEADER_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// How long a client may take to send a request's body (a fetch's negotiation is small).
const BODY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(60);

/// The largest request head read (request line and headers); past it hyper answers 431.
const MAX_HEAD_BYTES: usize = 64 << 10;

/// What the edge said about one caller and repository, and until when it holds.
#[derive(Default)]
struct AccessCache(Mutex<HashMap<(String, String), (i64, Instant)>>);

impl AccessCache {
    fn get(&self, key: &(String, String)) -> Option<i64> {
        let map = self.0.lock().unwrap_or_else(|p| p.into_inner());
        map.get(key).filter(|(_, until)| *until > Instant::now()).map(|(id, _)| *id)
    }

    fn put(&self, key: (String, String), id: i64) {
        let mut map = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        map.retain(|_, (_, until)| *until > now);
        map.insert(key, (id, now + Duration::from_millis(CLONE_ACCESS_TTL_MS)));
    }
}

struct Server {
    edge: EdgeClient,
    repos: PathBuf,
    cache: AccessCache,
}

/// Binds `addr` and serves clones of the copies under `data_dir` on a thread of its own, for as
/// long as the process runs. Returns the bound address.
pub(crate) fn spawn(addr: &str, edge: EdgeClient, data_dir: PathBuf) -> Result<std::net::SocketAddr, String> {
    let listener = std::net::TcpListener::bind(addr).map_err(|e| format!("clone server: cannot bind {addr}: {e}"))?;
    listener.set_nonblocking(true).map_err(|e| format!("clone server: {e}"))?;
    let bound = listener.local_addr().map_err(|e| format!("clone server: {e}"))?;
    let server = Arc::new(Server { edge, repos: data_dir.join("repos"), cache: AccessCache::default() });
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .enable_time()
        .build()
        .map_err(|e| format!("clone server: {e}"))?;
    std::thread::Builder::new()
        .name("clone-server".into())
        .spawn(move || runtime.block_on(accept(listener, server)))
        .map_err(|e| format!("clone server: {e}"))?;
    info!(address = %bound, "serving read-only clones");
    Ok(bound)
}

async fn accept(listener: std::net::TcpListener, server: Arc<Server>) {
    let listener = match tokio::net::TcpListener::from_std(listener) {
        Ok(l) => l,
        Err(e) => return warn!(error = %e, "clone server stopped"),
    };
    loop {
        let Ok((stream, _)) = listener.accept().await else { continue };
        // Answers go out in several small writes (the head, then each chunk of git's output):
        // with Nagle's algorithm on, each write after the first waited for the client's delayed
        // ACK, about 40 ms per request of a clone.
        if let Err(e) = stream.set_nodelay(true) {
            warn!(error = %e, "could not turn Nagle's algorithm off");
        }
        let server = server.clone();
        tokio::task::spawn(async move {
            let service = hyper::service::service_fn(move |req| {
                let server = server.clone();
                async move { Ok::<_, Infallible>(server.answer(req).await) }
            });
            let io = hyper_util::rt::TokioIo::new(stream);
            let mut http = hyper::server::conn::http1::Builder::new();
            // Slow or oversized request heads end the connection; hyper answers 408 or 431.
            http.timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(HEADER_TIMEOUT)
                .max_buf_size(MAX_HEAD_BYTES);
            if let Err(e) = http.serve_connection(io, service).await {
                warn!(error = %e, "clone connection failed");
            }
        });
    }
}

fn text(status: StatusCode, message: &str) -> Response<Body> {
    let mut r = Response::new(Full::new(Bytes::from(format!("{message}\n"))).map_err(|e| match e {}).boxed());
    *r.status_mut() = status;
    r
}

/// What a request asks of a repository: its project key, slug and the git path within it.
fn route(path: &str) -> Option<(String, String, &'static str)> {
    let rest = path.strip_prefix("/scm/")?;
    let (key, rest) = rest.split_once('/')?;
    let (slug, tail) = rest.split_once(".git/")?;
    let service = match tail {
        "info/refs" => "/info/refs",
        "git-upload-pack" => "/git-upload-pack",
        _ => return None,
    };
    // Project keys are letters, digits and `_`; slugs add `-`, `.` and `~`, never leading.
    let key_ok = !key.is_empty() && key.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
    let slug_ok = slug.bytes().next().is_some_and(|b| b.is_ascii_alphanumeric())
        && slug.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.~".contains(&b));
    (key_ok && slug_ok).then(|| (key.to_owned(), slug.to_owned(), service))
}

impl Server {
    async fn answer(&self, req: Request<Incoming>) -> Response<Body> {
        let path = req.uri().path().to_owned();
        let query = req.uri().query().unwrap_or_default().to_owned();
        if path.ends_with("/git-receive-pack") || query.contains("service=git-receive-pack") {
            return text(StatusCode::FORBIDDEN, "This is a read-only mirror: push to the upstream.");
        }
        if path == "/health" {
            // Other nodes measure their round trip to this one here (Mesh connectivity).
            return text(StatusCode::OK, "ok");
        }
        let Some((key, slug, service)) = route(&path) else { return text(StatusCode::NOT_FOUND, "Not found.") };
        if service == "/info/refs" && query != "service=git-upload-pack" {
            return text(StatusCode::FORBIDDEN, "Only smart HTTP clones and fetches are served.");
        }
        let authorization = req.headers().get("authorization").and_then(|v| v.to_str().ok()).map(str::to_owned);
        let id = match self.access(&key, &slug, authorization).await {
            Ok(id) => id,
            Err(response) => return response,
        };
        let dir = format!("{id}.git");
        if !self.repos.join(&dir).join("HEAD").exists() {
            return text(StatusCode::NOT_FOUND, "This node holds no copy of that repository.");
        }
        let declared = req.headers().get("content-length").and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
        if declared.is_some_and(|n| n > MAX_REQUEST_BYTES as u64) {
            return text(StatusCode::PAYLOAD_TOO_LARGE, "The request body is too large.");
        }
        // Plain requests go straight to upload-pack (one process less than through http-backend);
        // gzip-encoded ones, which git sends for large negotiations, go through http-backend.
        let gzip = req.headers().get("content-encoding").is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"gzip"));
        let served = if gzip {
            tracing::debug!(path = %path, "gzip-encoded request: through http-backend");
            self.backend(req, &format!("/{dir}{service}"), &query).await
        } else {
            self.upload_pack(req, &dir, service).await
        };
        match served {
            Ok(r) => r,
            Err(e) if e.kind() == std::io::ErrorKind::FileTooLarge => {
                text(StatusCode::PAYLOAD_TOO_LARGE, "The request body is too large.")
            }
            Err(e) if e.kind() == std::io::ErrorKind::TimedOut => {
                text(StatusCode::REQUEST_TIMEOUT, "The request body did not arrive in time.")
            }
            Err(e) => {
                warn!(error = %e, "git http-backend failed");
                text(StatusCode::INTERNAL_SERVER_ERROR, "The clone could not be served.")
            }
        }
    }

    /// The repository id, if the caller may clone it; otherwise the answer to send.
    async fn access(&self, key: &str, slug: &str, authorization: Option<String>) -> Result<i64, Response<Body>> {
        // Another node fetching a copy for a Mesh move shows a grant the control plane signed:
        // checked here, without asking the edge.
        if let Some(grant) = authorization
            .as_deref()
            .and_then(|a| a.strip_prefix("Bearer "))
            .filter(|g| g.starts_with(mirrorfarm_core::mesh::grant::GRANT_PREFIX))
        {
            return crate::mesh::check_grant(&self.edge, grant).map_err(|why| {
                warn!(reason = %why, "fetch grant refused");
                text(StatusCode::FORBIDDEN, &format!("Fetch grant refused: {why}."))
            });
        }
        // Cached by a hash of the credentials: the cache holds no secret.
        let who = crate::records::hex_sha256(authorization.as_deref().unwrap_or_default().as_bytes());
        let cache_key = (who, format!("{}/{}", key.to_ascii_lowercase(), slug.to_ascii_lowercase()));
        if let Some(id) = self.cache.get(&cache_key) {
            return Ok(id);
        }
        let edge = self.edge.clone();
        let (key, slug) = (key.to_owned(), slug.to_owned());
        let asked = tokio::task::spawn_blocking(move || edge.clone_access(&key, &slug, authorization)).await;
        match asked {
            Ok(Ok(id)) => {
                self.cache.put(cache_key, id);
                Ok(id)
            }
            Ok(Err(EdgeError::Status { status: 401, .. })) => {
                let mut r = text(StatusCode::UNAUTHORIZED, "Authentication required.");
                r.headers_mut()
                    .insert("www-authenticate", hyper::header::HeaderValue::from_static("Basic realm=\"mirrorfarm\""));
                Err(r)
            }
            Ok(Err(EdgeError::Status { status: 404, .. })) => Err(text(StatusCode::NOT_FOUND, "Repository not found.")),
            Ok(Err(e)) => {
                warn!(error = %e, "clone access check failed");
                Err(text(StatusCode::BAD_GATEWAY, "The farm could not check access; try again."))
            }
            Err(_) => Err(text(StatusCode::INTERNAL_SERVER_ERROR, "The access check did not finish.")),
        }
    }

    /// Runs `git upload-pack --stateless-rpc` for one request (its ref advertisement for
    /// `info/refs`) and streams its answer, as smart HTTP frames it.
    async fn upload_pack(&self, req: Request<Incoming>, dir: &str, service: &str) -> std::io::Result<Response<Body>> {
        let protocol = req.headers().get("git-protocol").and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
        let advertise = service == "/info/refs";
        let body = read_body(req).await?;
        let mut command = tokio::process::Command::new("git");
        command.arg("upload-pack").arg("--stateless-rpc");
        if advertise {
            command.arg("--advertise-refs");
        }
        command.arg(self.repos.join(dir)).env("GIT_PROTOCOL", &protocol);
        let (child, stdout) = run_fed(&mut command, body)?;
        // Protocol v0 and v1 advertisements open with the service line; v2 starts with its capabilities.
        let first = if advertise && !protocol.contains("version=2") {
            Bytes::from_static(b"001e# service=git-upload-pack\n0000")
        } else {
            Bytes::new()
        };
        let kind = if advertise { "advertisement" } else { "result" };
        Response::builder()
            .header("content-type", format!("application/x-git-upload-pack-{kind}"))
            .header("cache-control", "no-cache")
            .body(stream(first, stdout, child, vec![0u8; 64 * 1024]))
            .map_err(std::io::Error::other)
    }

    /// Runs `git http-backend` (CGI) for one request and streams its answer.
    async fn backend(&self, req: Request<Incoming>, path_info: &str, query: &str) -> std::io::Result<Response<Body>> {
        let header = |name: &str| req.headers().get(name).and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
        let (content_type, encoding, protocol) =
            (header("content-type"), header("content-encoding"), header("git-protocol"));
        let method = req.method().as_str().to_owned();
        let body = read_body(req).await?;
        let mut command = tokio::process::Command::new("git");
        command
            .arg("http-backend")
            .env("GIT_PROJECT_ROOT", &self.repos)
            .env("GIT_HTTP_EXPORT_ALL", "1")
            // Never receive-pack, whatever the copy's config says.
            .env("GIT_CONFIG_COUNT", "1")
            .env("GIT_CONFIG_KEY_0", "http.receivepack")
            .env("GIT_CONFIG_VALUE_0", "false")
            .env("REQUEST_METHOD", method)
            .env("PATH_INFO", path_info)
            .env("QUERY_STRING", query)
            .env("CONTENT_TYPE", content_type)
            .env("CONTENT_LENGTH", body.len().to_string())
            .env("HTTP_CONTENT_ENCODING", encoding)
            .env("GIT_PROTOCOL", protocol);
        let (child, mut stdout) = run_fed(&mut command, body)?;
        // CGI headers first, then the body as it comes.
        let mut head = Vec::new();
        let mut chunk = vec![0u8; 64 * 1024];
        let end = loop {
            let n = stdout.read(&mut chunk).await?;
            if n == 0 {
                return Err(std::io::Error::other("http-backend ended before its headers"));
            }
            head.extend_from_slice(&chunk[..n]);
            if let Some(i) = head.windows(4).position(|w| w == b"\r\n\r\n") {
                break i;
            }
        };
        let rest = Bytes::copy_from_slice(&head[end + 4..]);
        let mut response = Response::builder();
        for line in String::from_utf8_lossy(&head[..end]).split("\r\n") {
            let Some((name, value)) = line.split_once(':') else { continue };
            if name.eq_ignore_ascii_case("status") {
                let code = value.trim().split(' ').next().and_then(|c| c.parse().ok()).unwrap_or(200);
                response = response.status(code);
            } else {
                response = response.header(name.trim(), value.trim());
            }
        }
        response.body(stream(rest, stdout, child, chunk)).map_err(std::io::Error::other)
    }
}

/// A request's body, up to [`MAX_REQUEST_BYTES`] and within [`BODY_TIMEOUT`]: past either, an
/// error of kind `FileTooLarge` or `TimedOut`, answered 413 or 408.
async fn read_body(req: Request<Incoming>) -> std::io::Result<Bytes> {
    let limited = http_body_util::Limited::new(req.into_body(), MAX_REQUEST_BYTES);
    match tokio::time::timeout(BODY_TIMEOUT, limited.collect()).await {
        Err(_) => Err(std::io::Error::from(std::io::ErrorKind::TimedOut)),
        Ok(Err(e)) if e.is::<http_body_util::LengthLimitError>() => {
            Err(std::io::Error::new(std::io::ErrorKind::FileTooLarge, e.to_string()))
        }
        Ok(Err(e)) => Err(std::io::Error::other(e.to_string())),
        Ok(Ok(collected)) => Ok(collected.to_bytes()),
    }
}

/// Starts `command` with `body` fed to its stdin (from a task of its own, so a large answer
/// cannot block the feeding) and its stdout to read.
fn run_fed(
    command: &mut tokio::process::Command,
    body: Bytes,
) -> std::io::Result<(tokio::process::Child, tokio::process::ChildStdout)> {
    let mut child = command
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()?;
    let mut stdin = child.stdin.take().ok_or_else(|| std::io::Error::other("no stdin"))?;
    let stdout = child.stdout.take().ok_or_else(|| std::io::Error::other("no stdout"))?;
    tokio::spawn(async move {
        let _ = stdin.write_all(&body).await;
    });
    Ok((child, stdout))
}

/// A response body: `first`, then the child's output as it comes (the child lives as long as it).
fn stream(first: Bytes, stdout: tokio::process::ChildStdout, child: tokio::process::Child, buf: Vec<u8>) -> Body {
    let frames = futures_util::stream::unfold(
        (Some(first), stdout, child, buf),
        |(first, mut out, child, mut buf)| async move {
            if let Some(first) = first.filter(|b| !b.is_empty()) {
                return Some((Ok(Frame::data(first)), (None, out, child, buf)));
            }
            match out.read(&mut buf).await {
                Ok(0) => None,
                Ok(n) => Some((Ok(Frame::data(Bytes::copy_from_slice(&buf[..n]))), (None, out, child, buf))),
                Err(e) => Some((Err(e), (None, out, child, buf))),
            }
        },
    );
    BodyExt::boxed(StreamBody::new(frames))
}

#[cfg(test)]
mod tests {
    use super::route;

    #[test]
    fn only_upload_pack_paths_of_one_repository_are_routed() {
        assert_eq!(route("/scm/prj/repo.git/info/refs"), Some(("prj".into(), "repo".into(), "/info/refs")));
        assert_eq!(route("/scm/prj/my-repo.v2.git/git-upload-pack").map(|r| r.2), Some("/git-upload-pack"));
        for bad in [
            "/scm/prj/repo.git/git-receive-pack",
            "/scm/prj/repo.git/objects/info/packs",
            "/scm/../x.git/info/refs",
            "/scm/prj/.hidden.git/info/refs",
            "/other/prj/repo.git/info/refs",
            "/scm/prj/a%2Fb.git/info/refs",
        ] {
            assert_eq!(route(bad), None, "{bad}");
        }
    }
}
