//! Service-level tests over the real storage SQL on real SQLite with the real migrations:
//! every route, its errors, atomicity and round trips.

use serde_json::{Value, json};

use super::*;
use crate::identity::{AccessToken, GlobalRole, NewUser, token_lookup_key};
use crate::store::faults::Faulty;
use crate::store::sqlite::SqliteDatabase;
use crate::test_support::{FakeCrypto, block_on};

mod access;
mod faults;
mod limits;
mod migration;
mod ssh;
mod upstream_polls;

const ADMIN_TOKEN: &str = "mfp_admin_token_0123456789";

struct World {
    store: Store<Faulty<SqliteDatabase>>,
    crypto: FakeCrypto,
    config: Config,
    limiter: crate::admin::LocalLimiter,
    blobs: crate::store::MemoryBlobs,
    /// What a farm node does, straight in the database, when a request waits for it (`None`: no
    /// node answers, so the request times out at once, as with `NoSignals`).
    node_answers: std::cell::RefCell<Option<String>>,
}

/// Signals whose wait a farm node answers at once: it runs `work` (the SQL its result amounts
/// to) and the request is woken.
struct NodeAnswers<'a> {
    db: &'a SqliteDatabase,
    work: &'a str,
}

impl crate::queue::Signals for NodeAnswers<'_> {
    async fn generation(&self, _topic: crate::queue::Topic) -> Option<u64> {
        Some(0)
    }
    async fn wait(&self, _topic: crate::queue::Topic, seen: u64, _timeout_ms: i64) -> Option<u64> {
        self.db.execute(self.work);
        Some(seen + 1)
    }
    async fn notify(&self, _topic: crate::queue::Topic) {}
    fn now(&self) -> Option<Timestamp> {
        None
    }
}

struct Reply {
    status: u16,
    headers: Vec<(String, String)>,
    body: Value,
    raw: String,
    transfer: Option<BlobTransfer>,
}

impl Reply {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }
}

impl World {
    fn new() -> Self {
        let world = Self {
            store: Store::new(Faulty::new(SqliteDatabase::migrated())),
            crypto: FakeCrypto::default(),
            config: Config::default(),
            limiter: crate::admin::LocalLimiter::default(),
            blobs: crate::store::MemoryBlobs::default(),
            node_answers: std::cell::RefCell::default(),
        };
        world.add_user("admin", GlobalRole::SysAdmin, ADMIN_TOKEN);
        world
    }

    fn add_user(&self, name: &str, role: GlobalRole, token: &str) {
        block_on(async {
            let user = self
                .store
                .insert_user(
                    &NewUser {
                        name: name.into(),
                        slug: name.into(),
                        display_name: name.into(),
                        email: None,
                        role,
                        created_at: Timestamp(0),
                    },
                    None,
                    None,
                )
                .await
                .expect("insert user")
                .expect("not refused by a license");
            let hash = self.crypto.sha256_hex(token.as_bytes()).await.expect("hash");
            self.store
                .insert_token(&AccessToken {
                    id: format!("{}", user.id),
                    user_id: user.id,
                    name: "t".into(),
                    lookup: token_lookup_key(token),
                    hash,
                    permissions: None,
                    created_at: Timestamp(0),
                    expires_at: None,
                })
                .await
                .expect("insert token");
        });
    }

    fn db(&self) -> &SqliteDatabase {
        self.store.database().inner()
    }

    /// The fault injector around the database.
    fn faults(&self) -> &Faulty<SqliteDatabase> {
        self.store.database()
    }

    fn send(&self, method: &str, target: &str, headers: &[(&str, &str)], body: Option<(&str, &str)>) -> Reply {
        let (path, query) = target.split_once('?').unwrap_or((target, ""));
        let header =
            |name: &str| headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| (*v).to_owned());
        let req = ApiRequest {
            method: Method::parse(method),
            origin: "http://mf.test".into(),
            path: path.into(),
            query: query.into(),
            content_type: body.map(|(t, _)| t.to_owned()),
            authorization: header("authorization"),
            private_token: header("private-token"),
            body: body.map(|(_, b)| b.as_bytes().to_vec()).unwrap_or_default(),
            declared_length: header("content-length").and_then(|v| v.parse().ok()),
            headers: headers.iter().map(|(k, v)| (k.to_ascii_lowercase(), (*v).to_owned())).collect(),
        };
        let service = Service::new(&self.store, &self.crypto, &self.config, Timestamp(1_578_331_922_823))
            .with_limiter(&self.limiter)
            .with_blobs(&self.blobs);
        let answers = self.node_answers.borrow().clone();
        let r = match answers.as_deref() {
            Some(work) => block_on(service.with_signals(&NodeAnswers { db: self.db(), work }).handle(&req)),
            None => block_on(service.handle(&req)),
        };
        if let Some(diagnostic) = &r.diagnostic {
            eprintln!("diagnostic: {diagnostic}");
        }
        let raw = String::from_utf8_lossy(&r.body.clone().unwrap_or_default()).into_owned();
        let body = serde_json::from_str(&raw).unwrap_or(Value::Null);
        Reply { status: r.status, headers: r.headers, body, raw, transfer: r.transfer }
    }

    fn as_admin(&self, method: &str, target: &str, json_body: Option<Value>) -> Reply {
        let body = json_body.map(|b| b.to_string());
        self.send(method, target, &[("PRIVATE-TOKEN", ADMIN_TOKEN)], body.as_deref().map(|b| ("application/json", b)))
    }

    fn as_token(&self, token: &str, method: &str, target: &str, json_body: Option<Value>) -> Reply {
        let body = json_body.map(|b| b.to_string());
        self.send(
            method,
            target,
            &[("Authorization", &format!("Bearer {token}"))],
            body.as_deref().map(|b| ("application/json", b)),
        )
    }

    /// Project MF with repository `repo` (id returned).
    fn seed_repo(&self) -> i64 {
        assert_eq!(
            self.as_admin("POST", "/rest/api/latest/projects", Some(json!({"key": "mf", "name": "Mirror Farm"})))
                .status,
            201
        );
        let r = self.as_admin(
            "POST",
            "/rest/api/latest/projects/MF/repos",
            Some(json!({"name": "Repo", "defaultBranch": "main"})),
        );
        assert_eq!(r.status, 201, "{}", r.raw);
        r.body["id"].as_i64().expect("id")
    }
}

#[test]
fn health_needs_no_token_and_unknown_paths_are_404_in_each_dialect() {
    let w = World::new();
    assert_eq!(w.send("GET", "/rest/mirrorfarm/1.0/health", &[], None).status, 200);
    let r = w.send("GET", "/api/v4/nothing", &[], None);
    assert_eq!((r.status, r.body.clone()), (404, json!({"message": "404 Not Found"})));
    let r = w.send("GET", "/rest/api/latest/nothing", &[], None);
    assert_eq!(r.status, 404);
    assert!(r.body["errors"][0]["message"].is_string());
    assert_eq!(w.send("PATCH", "/rest/api/latest/projects", &[], None).status, 405);
}

#[test]
fn all_three_credential_forms_authenticate() {
    let w = World::new();
    let basic = "Basic YWRtaW46bWZwX2FkbWluX3Rva2VuXzAxMjM0NTY3ODk="; // admin:mfp_admin_token_0123456789
    for headers in [
        vec![("PRIVATE-TOKEN", ADMIN_TOKEN)],
        vec![("Authorization", "Bearer mfp_admin_token_0123456789")],
        vec![("Authorization", basic)],
    ] {
        let r = w.send("GET", "/api/v4/user", &headers, None);
        assert_eq!((r.status, r.body["username"].as_str()), (200, Some("admin")), "{headers:?}");
    }
    // The right token under another user's name is refused.
    let wrong_user = "Basic Ym9iOm1mcF9hZG1pbl90b2tlbl8wMTIzNDU2Nzg5"; // bob:mfp_admin_token_0123456789
    assert_eq!(w.send("GET", "/api/v4/user", &[("Authorization", wrong_user)], None).status, 401);
    assert_eq!(w.send("GET", "/api/v4/user", &[("PRIVATE-TOKEN", "mfp_admin_token_0123456788")], None).status, 401);
    assert_eq!(w.send("GET", "/api/v4/user", &[("Authorization", "Digest x")], None).status, 401);
    assert_eq!(w.send("GET", "/api/v4/user", &[], None).status, 401);
}

#[test]
fn projects_and_repositories_in_bitbucket_shapes() {
    let w = World::new();
    let id = w.seed_repo();
    let r = w.as_admin("GET", "/rest/api/1.0/projects/mf/repos/repo/", None);
    assert_eq!(r.status, 200);
    assert_eq!(r.body["id"].as_i64(), Some(id));
    assert_eq!(r.body["project"]["key"], "MF");
    assert_eq!(r.body["defaultBranch"], "main");
    assert_eq!(r.body["upstreamUrl"], Value::Null);
    let r = w.as_admin("GET", "/rest/api/latest/projects?limit=1", None);
    assert_eq!((r.body["size"].as_u64(), r.body["isLastPage"].as_bool()), (Some(1), Some(true)));
    let r = w.as_admin("GET", "/rest/api/latest/repos?projectkey=mf", None);
    assert_eq!(r.body["values"][0]["slug"], "repo");
    // Duplicates conflict, bad keys and names are 400 naming the field.
    assert_eq!(
        w.as_admin("POST", "/rest/api/latest/projects", Some(json!({"key": "MF", "name": "Again"}))).status,
        409
    );
    let r = w.as_admin("POST", "/rest/api/latest/projects", Some(json!({"key": "1bad", "name": "x"})));
    assert_eq!((r.status, r.body["errors"][0]["context"].as_str()), (400, Some("key")));
    let r = w.as_admin("POST", "/rest/api/latest/projects/MF/repos", Some(json!({"name": "Repo"})));
    assert_eq!(r.status, 409);
    let r = w.as_admin(
        "POST",
        "/rest/api/latest/projects/MF/repos",
        Some(json!({"name": "x", "upstreamUrl": "http://10.0.0.1/x"})),
    );
    assert_eq!((r.status, r.body["errors"][0]["context"].as_str()), (400, Some("upstreamUrl")));
    // A project with repositories can't be deleted; an empty one can.
    assert_eq!(w.as_admin("DELETE", "/rest/api/latest/projects/MF", None).status, 409);
    assert_eq!(w.as_admin("DELETE", "/rest/api/latest/projects/MF/repos/repo", None).status, 202);
    assert_eq!(w.as_admin("GET", "/rest/api/latest/projects/MF/repos/repo", None).status, 404);
    assert_eq!(w.as_admin("DELETE", "/rest/api/latest/projects/MF", None).status, 204);
}

#[test]
fn upstream_credentials_are_sealed_and_masked() {
    let w = World::new();
    w.seed_repo();
    let r = w.as_admin(
        "POST",
        "/rest/api/latest/projects/MF/repos",
        Some(json!({"name": "up", "upstreamUrl": "https://bob:hunter2@example.com/up.git"})),
    );
    assert_eq!(r.status, 201);
    assert_eq!(r.body["upstreamUrl"], "https://*****:*****@example.com/up.git");
    assert!(!r.raw.contains("hunter2"));
}

fn mirrors_path(id: i64) -> String {
    format!("/api/v4/projects/{id}/remote_mirrors")
}

#[test]
fn remote_mirror_lifecycle() {
    let w = World::new();
    let id = w.seed_repo();
    let list = mirrors_path(id);
    // Create with JSON: disabled by default, URL masked, secret not stored in the clear.
    let r = w.as_admin("POST", &list, Some(json!({"url": "https://user:s3cret@example.com/m.git"})));
    assert_eq!(r.status, 201, "{}", r.raw);
    assert_eq!(r.body["url"], "https://*****:*****@example.com/m.git");
    assert_eq!((r.body["enabled"].as_bool(), r.body["update_status"].as_str()), (Some(false), Some("none")));
    assert_eq!(r.body["last_error"], Value::Null);
    assert!(
        !r.raw.contains("s3cret")
            && !w
                .db()
                .text("SELECT group_concat(url || url_masked || IFNULL(userinfo_sealed, '')) FROM remote_mirrors")
                .contains("s3cret")
    );
    let first = r.body["id"].as_i64().expect("id");
    assert_eq!(w.db().count("SELECT COUNT(*) FROM jobs"), 0, "a disabled mirror queues nothing");
    // Create with a form body, enabled: a job is queued.
    let r = w.send(
        "POST",
        "/api/v4/projects/MF%2Frepo/remote_mirrors",
        &[("PRIVATE-TOKEN", ADMIN_TOKEN)],
        Some((
            "application/x-www-form-urlencoded",
            "url=https%3A%2F%2Fexample.org%2Fx.git&enabled=true&keep_divergent_refs=true",
        )),
    );
    assert_eq!(r.status, 201, "{}", r.raw);
    assert_eq!((r.body["enabled"].as_bool(), r.body["keep_divergent_refs"].as_bool()), (Some(true), Some(true)));
    assert_eq!(w.db().count("SELECT COUNT(*) FROM jobs"), 1);
    // List with GitLab paging.
    let r = w.as_admin("GET", &format!("{list}?per_page=1"), None);
    assert_eq!((r.status, r.body.as_array().map(Vec::len)), (200, Some(1)));
    assert_eq!(
        (r.header("X-Total"), r.header("X-Next-Page"), r.header("X-Per-Page")),
        (Some("2"), Some("2"), Some("1"))
    );
    assert!(r.header("Link").is_some_and(|l| l.contains("rel=\"next\"")));
    // Get, update, sync, delete.
    let one = format!("{list}/{first}");
    assert_eq!(w.as_admin("GET", &one, None).body["id"].as_i64(), Some(first));
    assert_eq!(w.as_admin("POST", &format!("{one}/sync"), None).status, 400, "disabled mirrors can't sync");
    let r = w.as_admin("PUT", &one, Some(json!({"enabled": true, "mirror_branch_regex": "^release/"})));
    assert_eq!((r.status, r.body["mirror_branch_regex"].as_str()), (200, Some("^release/")));
    assert_eq!(w.db().count("SELECT COUNT(*) FROM jobs"), 2, "enabling queues a sync");
    assert_eq!(w.as_admin("POST", &format!("{one}/sync"), None).status, 204);
    assert_eq!(w.db().count("SELECT COUNT(*) FROM jobs"), 2, "a waiting job absorbs the manual sync");
    assert_eq!(w.as_admin("GET", &format!("/rest/mirrorfarm/latest/repos/{id}/jobs"), None).body["size"], 2);
    assert_eq!(w.as_admin("GET", &format!("{one}/public_key"), None).status, 404);
    assert_eq!(w.as_admin("DELETE", &one, None).status, 204);
    assert_eq!(w.as_admin("GET", &one, None).body, json!({"message": "404 Remote Mirror Not Found"}));
}

#[test]
fn remote_mirror_bad_input_is_refused_and_writes_nothing() {
    let w = World::new();
    let id = w.seed_repo();
    let list = mirrors_path(id);
    let cases = [
        (json!({}), 400),
        (json!({"url": "https://e.com/x", "only_protected_branches": true, "mirror_branch_regex": "x"}), 400),
        (json!({"url": "https://e.com/x", "mirror_branch_regex": "a".repeat(256)}), 400),
        (json!({"url": "https://e.com/x", "mirror_branch_regex": "(("}), 400),
        (json!({"url": "file:///etc/passwd"}), 400),
        (json!({"url": "http://127.0.0.1/x"}), 400),
        (json!({"url": "http://169.254.169.254/x"}), 400),
        (json!({"url": "https://e.com/x", "enabled": "perhaps"}), 400),
    ];
    for (body, status) in cases {
        let r = w.as_admin("POST", &list, Some(body.clone()));
        assert_eq!(r.status, status, "{body}: {}", r.raw);
        assert!(r.body["message"].is_string() || r.body["message"].is_object(), "{}", r.raw);
    }
    let r = w.send("POST", &list, &[("PRIVATE-TOKEN", ADMIN_TOKEN)], Some(("application/json", "{not json")));
    assert_eq!(r.status, 400);
    let big = format!("{{\"url\":\"https://e.com/{}\"}}", "a".repeat(MAX_BODY_BYTES));
    assert_eq!(w.send("POST", &list, &[("PRIVATE-TOKEN", ADMIN_TOKEN)], Some(("application/json", &big))).status, 413);
    assert_eq!(w.send("POST", &list, &[("PRIVATE-TOKEN", ADMIN_TOKEN)], Some(("text/plain", "url=x"))).status, 415);
    let declared = [("PRIVATE-TOKEN", ADMIN_TOKEN), ("Content-Length", "10000000")];
    assert_eq!(w.send("POST", &list, &declared, None).status, 413, "a declared oversize body is refused unread");
    assert_eq!(w.as_admin("GET", &list, None).header("X-Total"), Some("0"), "nothing was written");
    // Unknown project and mirror, no token.
    assert_eq!(
        w.as_admin("GET", "/api/v4/projects/999/remote_mirrors", None).body,
        json!({"message": "404 Project Not Found"})
    );
    assert_eq!(w.as_admin("GET", "/api/v4/projects/NOPE%2Fx/remote_mirrors", None).status, 404);
    assert_eq!(w.as_admin("GET", &format!("{list}/12345"), None).status, 404);
    assert_eq!(w.as_admin("PUT", &format!("{list}/abc"), Some(json!({}))).status, 404);
    assert_eq!(w.send("GET", &list, &[], None).body, json!({"message": "401 Unauthorized"}));
}

#[test]
fn allowlisted_internal_hosts_are_accepted() {
    let mut w = World::new();
    w.config.allowed_hosts = crate::urls::HostAllowlist::parse("127.0.0.1").expect("valid");
    let id = w.seed_repo();
    assert_eq!(w.as_admin("POST", &mirrors_path(id), Some(json!({"url": "git://127.0.0.1/x.git"}))).status, 201);
    assert_eq!(w.as_admin("POST", &mirrors_path(id), Some(json!({"url": "git://127.0.0.2/x.git"}))).status, 400);
}

#[test]
fn a_failed_store_write_leaves_nothing_behind() {
    let w = World::new();
    let id = w.seed_repo();
    // The mirror's insert succeeds; the job queued in the same batch, a later statement, fails.
    w.db().execute("CREATE TRIGGER fail_jobs BEFORE INSERT ON jobs BEGIN SELECT RAISE(ABORT, 'injected'); END;");
    let r = w.as_admin("POST", &mirrors_path(id), Some(json!({"url": "https://e.com/x", "enabled": true})));
    assert_eq!(r.status, 500);
    assert!(!r.raw.contains("injected"), "internal detail is not sent");
    w.db().execute("DROP TRIGGER fail_jobs");
    assert_eq!(w.as_admin("GET", &mirrors_path(id), None).header("X-Total"), Some("0"));
    assert_eq!(w.db().count("SELECT COUNT(*) FROM jobs"), 0);
}

#[test]
fn users_tokens_and_permissions() {
    let w = World::new();
    let id = w.seed_repo();
    // Admin creates alice (query parameters, as Bitbucket) and a token for her.
    let r =
        w.as_admin("POST", "/rest/api/latest/admin/users?name=alice&displayName=Alice&emailAddress=a%40x.org", None);
    assert_eq!(r.status, 204, "{}", r.raw);
    assert_eq!(w.as_admin("POST", "/rest/api/latest/admin/users?name=alice", None).status, 409);
    assert_eq!(w.as_admin("POST", "/rest/api/latest/admin/users?name=bob&password=x", None).status, 400);
    let r = w.as_admin("PUT", "/rest/access-tokens/latest/users/alice", Some(json!({"name": "ci"})));
    assert_eq!(r.status, 200, "{}", r.raw);
    let alice = r.body["token"].as_str().expect("token shown once").to_owned();
    assert!(alice.starts_with("mfp_"));
    let listed = w.as_admin("GET", "/rest/access-tokens/latest/users/alice", None);
    assert!(!listed.raw.contains(&alice) && listed.body["size"] == 1);
    // Alice can't see the private repository, then reads it, then administers it.
    let mirrors = mirrors_path(id);
    assert_eq!(w.as_token(&alice, "GET", &mirrors, None).status, 404);
    assert_eq!(
        w.as_admin(
            "PUT",
            "/rest/api/latest/projects/MF/repos/repo/permissions/users?name=alice&permission=REPO_READ",
            None
        )
        .status,
        204
    );
    assert_eq!(w.as_token(&alice, "GET", &mirrors, None).body, json!({"message": "403 Forbidden"}));
    assert_eq!(w.as_token(&alice, "GET", "/api/v4/projects/MF%2Frepo", None).status, 200);
    assert_eq!(
        w.as_admin("PUT", "/rest/api/latest/projects/MF/permissions/users?name=alice&permission=PROJECT_ADMIN", None)
            .status,
        204
    );
    assert_eq!(w.as_token(&alice, "GET", &mirrors, None).status, 200);
    // A read-only token of the same user stays read-only.
    let r = w.as_token(
        &alice,
        "PUT",
        "/rest/access-tokens/latest/users/alice",
        Some(json!({"name": "ro", "permissions": ["REPO_READ"]})),
    );
    let read_only = r.body["token"].as_str().expect("token").to_owned();
    assert_eq!(w.as_token(&read_only, "GET", &mirrors, None).status, 403);
    assert_eq!(w.as_token(&read_only, "GET", "/rest/api/latest/projects/MF/repos/repo", None).status, 200);
    // Alice can't make herself admin or create users (Bitbucket answers a signed-in caller who
    // lacks the permission 401, with its AuthorisationException, and no password challenge);
    // wrong permission names are 400.
    let refused =
        w.as_token(&alice, "PUT", "/rest/api/latest/admin/permissions/users?name=alice&permission=ADMIN", None);
    assert_eq!(refused.status, 401);
    assert_eq!(refused.body["errors"][0]["exceptionName"], "com.atlassian.bitbucket.AuthorisationException");
    assert_eq!(refused.header("WWW-Authenticate"), None);
    assert_eq!(w.as_token(&alice, "POST", "/rest/api/latest/admin/users?name=eve", None).status, 401);
    assert_eq!(
        w.as_admin("PUT", "/rest/api/latest/projects/MF/permissions/users?name=alice&permission=REPO_READ", None)
            .status,
        400
    );
    assert_eq!(
        w.as_admin("PUT", "/rest/api/latest/admin/permissions/users?name=alice&permission=ADMIN", None).status,
        204
    );
    assert_eq!(w.as_token(&alice, "POST", "/rest/api/latest/admin/users?name=eve", None).status, 204);
    // Revoking and deleting.
    let token_id = listed.body["values"][0]["id"].as_str().expect("id").to_owned();
    assert_eq!(w.as_admin("DELETE", &format!("/rest/access-tokens/latest/users/alice/{token_id}"), None).status, 204);
    assert_eq!(w.as_token(&alice, "GET", "/api/v4/user", None).status, 401);
    assert_eq!(w.as_admin("DELETE", "/rest/api/latest/admin/users?name=admin", None).status, 400);
    assert_eq!(w.as_admin("DELETE", "/rest/api/latest/admin/users?name=alice", None).status, 200);
    assert_eq!(w.as_token(&read_only, "GET", "/api/v4/user", None).status, 401);
}

#[test]
fn status_reads_with_etags_status_tokens_and_cors() {
    let mut w = World::new();
    w.config.cors_origins = CorsOrigins::parse("https://docs.example").expect("origins");
    let id = w.seed_repo();
    let status = format!("/rest/mirrorfarm/1.0/repos/{id}/status");
    let created = w.as_admin(
        "POST",
        &mirrors_path(id),
        Some(json!({"url": "https://bob:hunter2@gitlab.example/x.git", "enabled": true})),
    );
    assert_eq!(created.status, 201, "{}", created.raw);
    let mirror = format!("{}/{}", mirrors_path(id), created.body["id"]);
    let r = w.as_admin("GET", &status, None);
    assert_eq!(r.status, 200, "{}", r.raw);
    assert!(!r.raw.contains("hunter2") && r.raw.contains("*****"), "{}", r.raw);
    let parsed: crate::status::RepositoryStatus = serde_json::from_str(&r.raw).expect("the status wire type");
    assert_eq!(parsed.remote_mirrors.len(), 1);
    assert_eq!(parsed.jobs.len(), 1, "the new mirror's first push waits");
    // No node has ever reported: nobody will do that push.
    assert_eq!(parsed.summary.verdict(), crate::mirrors::Verdict::Stale);

    // Unchanged status: 304 with the same tag and no body; a changed one is a fresh 200.
    let etag = r.header("ETag").expect("ETag").to_owned();
    let again = w.send("GET", &status, &[("PRIVATE-TOKEN", ADMIN_TOKEN), ("If-None-Match", &etag)], None);
    assert_eq!((again.status, again.raw.as_str(), again.header("ETag")), (304, "", Some(etag.as_str())));
    assert_eq!(w.as_admin("POST", &format!("{mirror}/sync"), None).status, 204);
    assert_eq!(w.as_admin("PUT", &mirror, Some(json!({"enabled": false}))).status, 200);
    let changed = w.send("GET", &status, &[("PRIVATE-TOKEN", ADMIN_TOKEN), ("If-None-Match", &etag)], None);
    assert_eq!(changed.status, 200);

    // A status token reads status and is refused everywhere else, even for its admin owner.
    let r = w.as_admin(
        "PUT",
        "/rest/access-tokens/latest/users/admin",
        Some(json!({"name": "widget", "permissions": ["STATUS_READ"]})),
    );
    assert_eq!(r.status, 200, "{}", r.raw);
    let widget = r.body["token"].as_str().expect("token").to_owned();
    assert_eq!(w.as_token(&widget, "GET", &status, None).status, 200);
    for (method, path) in [
        ("GET", mirrors_path(id)),
        ("GET", "/rest/api/latest/projects/MF/repos/repo".to_owned()),
        ("GET", format!("/rest/mirrorfarm/latest/repos/{id}/jobs")),
        ("POST", format!("{mirror}/sync")),
        ("DELETE", "/rest/api/latest/projects/MF/repos/repo".to_owned()),
    ] {
        // GitLab paths answer 403, Bitbucket-style ones 401.
        let expected = if path.starts_with("/api/") { 403 } else { 401 };
        assert_eq!(w.as_token(&widget, method, &path, None).status, expected, "{method} {path}");
    }
    let anonymous = w.send("GET", &status, &[], None);
    assert_eq!((anonymous.status, anonymous.header("WWW-Authenticate")), (401, None), "no password prompt in pages");
    assert_eq!(w.as_admin("GET", "/rest/mirrorfarm/latest/repos/999/status", None).status, 404);

    // CORS: allowed origins may read (errors included); others get no allowance; preflight.
    let cross = w.send(
        "GET",
        &status,
        &[("Authorization", &format!("Bearer {widget}")), ("Origin", "https://docs.example")],
        None,
    );
    assert_eq!(cross.header("Access-Control-Allow-Origin"), Some("https://docs.example"));
    assert_eq!(cross.header("Access-Control-Expose-Headers"), Some("ETag"));
    let denied = w.send("GET", &status, &[("Origin", "https://docs.example")], None);
    assert_eq!((denied.status, denied.header("Access-Control-Allow-Origin")), (401, Some("https://docs.example")));
    let evil = w.send("GET", &status, &[("Origin", "https://evil.example")], None);
    assert_eq!(evil.header("Access-Control-Allow-Origin"), None);
    let other =
        w.send("GET", &mirrors_path(id), &[("PRIVATE-TOKEN", ADMIN_TOKEN), ("Origin", "https://docs.example")], None);
    assert_eq!(other.header("Access-Control-Allow-Origin"), None, "only status is readable cross-origin");
    let pre = w.send("OPTIONS", &status, &[("Origin", "https://docs.example")], None);
    assert_eq!(pre.status, 204);
    assert!(pre.header("Access-Control-Allow-Headers").is_some_and(|h| h.contains("If-None-Match")));
    assert_eq!(w.send("OPTIONS", &status, &[("Origin", "https://evil.example")], None).status, 403);
    assert_eq!(w.send("OPTIONS", &mirrors_path(id), &[("Origin", "https://docs.example")], None).status, 405);
}

#[test]
fn public_repositories_are_readable_anonymously_but_mirrors_are_not() {
    let w = World::new();
    w.seed_repo();
    let r = w.as_admin("POST", "/rest/api/latest/projects/MF/repos", Some(json!({"name": "open", "public": true})));
    let id = r.body["id"].as_i64().expect("id");
    assert_eq!(w.send("GET", "/rest/api/latest/projects/MF/repos/open", &[], None).status, 200);
    assert_eq!(w.send("GET", "/rest/api/latest/projects/MF/repos/repo", &[], None).status, 401);
    assert_eq!(w.send("GET", &mirrors_path(id), &[], None).status, 401);
    let listed = w.send("GET", "/rest/api/latest/repos", &[], None);
    assert_eq!(listed.body["size"], 1);
}

mod node_protocol {
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    use super::*;

    const NODE: &str = "/rest/mirrorfarm/latest";

    /// A world with one enabled mirror (a queued job) and a registered node; returns its token.
    fn setup() -> (World, String, i64) {
        let w = World::new();
        let id = w.seed_repo();
        let r = w.as_admin(
            "POST",
            &mirrors_path(id),
            Some(json!({"url": "https://bot:n0de-secret@example.com/m.git", "enabled": true})),
        );
        assert_eq!(r.status, 201);
        let node = w.as_admin("POST", &format!("{NODE}/nodes"), Some(json!({"name": "node-1"})));
        assert_eq!(node.status, 201, "{}", node.raw);
        let token = node.body["token"].as_str().expect("node token").to_owned();
        assert!(token.starts_with("mfn_"));
        (w, token, id)
    }

    fn lease(w: &World, token: &str) -> Reply {
        w.as_token(token, "POST", &format!("{NODE}/jobs/lease"), Some(json!({"leaseSeconds": 60})))
    }

    fn report(w: &World, token: &str, job: &Value, outcome: &str, message: &str) -> Reply {
        let body = json!({"leaseId": job["leaseId"], "outcome": outcome, "message": message});
        w.as_token(token, "POST", &format!("{NODE}/jobs/{}/result", job["id"]), Some(body))
    }

    fn mirror(w: &World, repo: i64) -> Value {
        w.as_admin("GET", &mirrors_path(repo), None).body[0].clone()
    }

    #[test]
    fn lease_hands_over_credentials_and_starts_the_mirror() {
        let (w, token, repo) = setup();
        let job = lease(&w, &token);
        assert_eq!(job.status, 200, "{}", job.raw);
        assert_eq!(job.body["remoteMirror"]["url"], "https://bot:n0de-secret@example.com/m.git");
        assert_eq!(job.body["repository"]["defaultBranch"], "main");
        assert_eq!(job.body["attempt"], 1);
        assert_eq!(mirror(&w, repo)["update_status"], "started");
        assert_eq!(lease(&w, &token).status, 204, "one job, already leased");
        // Node tokens are not user tokens and the reverse.
        assert_eq!(w.as_token(&token, "GET", "/api/v4/user", None).status, 401);
        assert_eq!(w.as_admin("POST", &format!("{NODE}/jobs/lease"), None).status, 401);
        let listed = w.as_admin("GET", &format!("{NODE}/nodes"), None);
        assert!(listed.body["values"][0]["lastSeen"].is_i64() && !listed.raw.contains(&token));
    }

    #[test]
    fn one_repository_is_synced_on_request_and_described_without_a_lease() {
        let (w, token, repo) = setup();
        // A second repository with its own waiting job, queued first.
        let other = w.as_admin("POST", "/rest/api/latest/projects/MF/repos", Some(json!({"name": "Other"})));
        let other_id = other.body["id"].as_i64().expect("id");
        let r = w.as_admin(
            "POST",
            &mirrors_path(other_id),
            Some(json!({"url": "https://example.com/o.git", "enabled": true})),
        );
        assert_eq!(r.status, 201, "{}", r.raw);
        // The first job of `repo` is done; asking for a sync of `repo` by KEY/slug queues it again.
        let first = w.as_token(&token, "POST", &format!("{NODE}/jobs/lease"), Some(json!({"repositoryId": repo}))).body;
        assert_eq!(first["repository"]["id"], repo);
        assert_eq!(report(&w, &token, &first, "pushed", "").status, 200);
        let queued = w.as_token(&token, "POST", &format!("{NODE}/repos/MF%2Frepo/sync"), None);
        assert_eq!((queued.status, queued.body["queued"].as_i64()), (202, Some(1)), "{}", queued.raw);
        let leased = w.as_token(&token, "POST", &format!("{NODE}/jobs/lease"), Some(json!({"repositoryId": repo})));
        assert_eq!((leased.status, leased.body["repository"]["id"].as_i64()), (200, Some(repo)), "{}", leased.raw);
        assert_eq!(leased.body["reason"], "MANUAL");
        let none_left = w.as_token(&token, "POST", &format!("{NODE}/jobs/lease"), Some(json!({"repositoryId": repo})));
        assert_eq!(none_left.status, 204, "the other repository's job is not handed out");
        // The dry run's description: credentials for nodes only, nothing leased.
        let work = w.as_token(&token, "GET", &format!("{NODE}/repos/{repo}/work"), None);
        assert_eq!(work.status, 200, "{}", work.raw);
        assert_eq!(work.body["mirrors"][0]["url"], "https://bot:n0de-secret@example.com/m.git");
        assert_eq!(work.body["pullEnabled"], false, "no upstream");
        assert_eq!(w.as_admin("GET", &format!("{NODE}/repos/{repo}/work"), None).status, 401);
        assert_eq!(w.as_admin("POST", &format!("{NODE}/repos/{repo}/sync"), None).status, 202, "admins may ask too");
        assert_eq!(w.send("POST", &format!("{NODE}/repos/{repo}/sync"), &[], None).status, 401);
        assert_eq!(w.as_token(&token, "POST", &format!("{NODE}/repos/999/sync"), None).status, 404);
        assert_eq!(lease(&w, &token).body["repository"]["id"].as_i64(), Some(other_id), "unfiltered leases see all");
    }

    #[test]
    fn success_finishes_and_reporting_twice_changes_nothing() {
        let (w, token, repo) = setup();
        let job = lease(&w, &token).body;
        let r = report(&w, &token, &job, "pushed", "");
        assert_eq!(
            (r.status, r.body["updateStatus"].as_str(), r.body["job"]["state"].as_str()),
            (200, Some("finished"), Some("DONE"))
        );
        let before = mirror(&w, repo);
        assert_eq!(before["last_successful_update_at"], "2020-01-06T17:32:02.823Z");
        let again = report(&w, &token, &job, "error", "late duplicate");
        assert_eq!(again.status, 200);
        assert_eq!(mirror(&w, repo), before, "a repeated result is a no-op");
        let stale = json!({"id": job["id"], "leaseId": "not-the-lease"});
        assert_eq!(report(&w, &token, &stale, "pushed", "").status, 409);
    }

    #[test]
    fn errors_retry_three_tries_then_fail_with_scrubbed_error() {
        let (mut w, token, repo) = setup();
        w.config.retry_base_ms = 0;
        for attempt in 1..=3 {
            let job = lease(&w, &token);
            assert_eq!((job.status, job.body["attempt"].as_u64()), (200, Some(attempt)), "{}", job.raw);
            let r = report(
                &w,
                &token,
                &job.body,
                "error",
                "fatal: unable to access 'https://bot:n0de-secret@example.com/m.git/': 503",
            );
            let expected = if attempt < 3 { "to_retry" } else { "failed" };
            assert_eq!(r.body["updateStatus"], expected, "{}", r.raw);
        }
        assert_eq!(lease(&w, &token).status, 204, "given up");
        let m = mirror(&w, repo);
        assert_eq!(m["last_error"], "fatal: unable to access 'https://*****:*****@example.com/m.git/': 503");
        // A manual sync starts again.
        assert_eq!(w.as_admin("POST", &format!("{}/{}/sync", mirrors_path(repo), m["id"]), None).status, 204);
        assert_eq!(lease(&w, &token).body["attempt"], 1);
    }

    #[test]
    fn retries_wait_for_their_backoff() {
        let (w, token, _) = setup();
        let job = lease(&w, &token).body;
        report(&w, &token, &job, "error", "boom");
        assert_eq!(lease(&w, &token).status, 204, "the retry is not due for 30 s");
    }

    #[test]
    fn an_expired_lease_returns_the_job_and_the_mirror_leaves_started() {
        let (w, token, repo) = setup();
        let job = lease(&w, &token).body;
        let id = job["id"].as_i64().expect("id");
        w.db().execute(&format!("UPDATE jobs SET lease_deadline = 0 WHERE id = {id}"));
        let second = lease(&w, &token);
        assert_eq!(second.status, 204, "expired now, but the retry waits out its backoff");
        let m = mirror(&w, repo);
        assert_eq!(m["update_status"], "to_retry");
        assert!(m["last_error"].as_str().is_some_and(|e| e.contains("lease expired")));
        assert_eq!(report(&w, &token, &job, "pushed", "").status, 409, "the old lease is gone");
    }

    #[test]
    fn release_gives_the_job_back_uncounted_and_renew_extends() {
        let (w, token, repo) = setup();
        let job = lease(&w, &token).body;
        let renew = w.as_token(
            &token,
            "POST",
            &format!("{NODE}/jobs/{}/renew", job["id"]),
            Some(json!({"leaseId": job["leaseId"], "leaseSeconds": 300})),
        );
        assert_eq!((renew.status, renew.body["leaseDeadline"].as_i64()), (200, Some(1_578_331_922_823 + 300_000)));
        let rel = w.as_token(
            &token,
            "POST",
            &format!("{NODE}/jobs/{}/release", job["id"]),
            Some(json!({"leaseId": job["leaseId"]})),
        );
        assert_eq!(rel.status, 204);
        assert_eq!(mirror(&w, repo)["update_status"], "to_retry");
        let again = lease(&w, &token);
        assert_eq!((again.status, again.body["attempt"].as_u64()), (200, Some(1)), "a release does not use up a try");
    }

    #[test]
    fn deleted_or_disabled_mirrors_are_skipped() {
        let (w, token, repo) = setup();
        let id = mirror(&w, repo)["id"].clone();
        assert_eq!(
            w.as_admin("PUT", &format!("{}/{id}", mirrors_path(repo)), Some(json!({"enabled": false}))).status,
            200
        );
        assert_eq!(lease(&w, &token).status, 204);
    }
}

mod pull_mirrors {
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    use super::*;

    fn pull_path(id: i64) -> String {
        format!("/api/v4/projects/{id}/mirror/pull")
    }

    #[test]
    fn configure_start_and_lease_a_pull_mirror() {
        let w = World::new();
        let id = w.seed_repo();
        let r = w.as_admin("GET", &pull_path(id), None);
        assert_eq!(
            (r.status, r.body["message"].as_str()),
            (400, Some("400 Bad request - Pull mirror is not configured"))
        );
        assert_eq!(w.as_admin("PUT", &pull_path(id), Some(json!({"enabled": true}))).status, 400, "url is missing");
        let put = w.as_admin(
            "PUT",
            &pull_path(id),
            Some(json!({"url": "https://example.com/up.git", "auth_user": "bot", "auth_password": "pu11-secret", "mirror_overwrites_diverged_branches": false})),
        );
        assert_eq!(put.status, 200, "{}", put.raw);
        assert_eq!(put.body["url"], "https://*****:*****@example.com/up.git");
        assert_eq!(
            (put.body["enabled"].as_bool(), put.body["mirror_overwrites_diverged_branches"].as_bool()),
            (Some(true), Some(false))
        );
        assert!(!put.raw.contains("pu11-secret"));
        assert_eq!(
            w.as_admin("GET", "/rest/api/latest/projects/MF/repos/repo", None).body["upstreamUrl"],
            "https://*****:*****@example.com/up.git"
        );
        assert_eq!(w.as_admin("POST", &pull_path(id), None).status, 200);
        assert_eq!(w.db().count("SELECT COUNT(*) FROM jobs"), 1, "configuring queued a pull; starting joined it");

        let node = w.as_admin("POST", "/rest/mirrorfarm/latest/nodes", Some(json!({"name": "n"}))).body["token"]
            .as_str()
            .expect("token")
            .to_owned();
        let job = w.as_token(&node, "POST", "/rest/mirrorfarm/latest/jobs/lease", None);
        assert_eq!(job.body["kind"], "PULL_MIRROR", "{}", job.raw);
        assert_eq!(job.body["repository"]["upstreamUrl"], "https://bot:pu11-secret@example.com/up.git");
        assert_eq!(job.body["repository"]["pull"]["overwriteDivergedBranches"], false);
        assert_eq!(job.body["remoteMirror"], Value::Null);
        assert_eq!(w.as_admin("GET", &pull_path(id), None).body["update_status"], "started");
        let report = json!({"leaseId": job.body["leaseId"], "outcome": "diverged", "message": "Some refs have diverged upstream and have not been updated in the mirror:\n\nrefs/heads/main"});
        let r =
            w.as_token(&node, "POST", &format!("/rest/mirrorfarm/latest/jobs/{}/result", job.body["id"]), Some(report));
        assert_eq!(r.body["updateStatus"], "failed", "{}", r.raw);
        let after = w.as_admin("GET", &pull_path(id), None).body;
        assert!(after["last_error"].as_str().is_some_and(|e| e.ends_with("refs/heads/main")));
        // Disabled pull mirrors can't be started.
        assert_eq!(w.as_admin("PUT", &pull_path(id), Some(json!({"enabled": false}))).status, 200);
        assert_eq!(w.as_admin("POST", &pull_path(id), None).status, 400);
    }

    #[test]
    fn push_jobs_carry_the_implicit_exact_pull_rules() {
        let w = World::new();
        w.seed_repo();
        let r = w.as_admin(
            "POST",
            "/rest/api/latest/projects/MF/repos",
            Some(json!({"name": "up", "upstreamUrl": "https://example.com/u.git"})),
        );
        let id = r.body["id"].as_i64().expect("id");
        assert_eq!(w.as_admin("GET", &pull_path(id), None).body["mirror_overwrites_diverged_branches"], true);
        assert_eq!(
            w.as_admin("POST", &mirrors_path(id), Some(json!({"url": "https://example.com/t.git", "enabled": true})))
                .status,
            201
        );
        let node = w.as_admin("POST", "/rest/mirrorfarm/latest/nodes", Some(json!({"name": "n"}))).body["token"]
            .as_str()
            .expect("token")
            .to_owned();
        let job = w.as_token(&node, "POST", "/rest/mirrorfarm/latest/jobs/lease", None).body;
        assert_eq!(
            (job["kind"].as_str(), job["repository"]["pull"]["overwriteDivergedBranches"].as_bool()),
            (Some("PUSH_MIRROR"), Some(true))
        );
    }
}

mod triggers {
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    use super::*;

    const HOOK: &str = "/rest/mirrorfarm/latest/repos";

    /// A repository with an upstream and one enabled push mirror; returns (world, repo id, secret).
    fn setup() -> (World, i64, String) {
        let w = World::new();
        w.seed_repo();
        let id = w
            .as_admin(
                "POST",
                "/rest/api/latest/projects/MF/repos",
                Some(json!({"name": "up", "upstreamUrl": "https://example.com/u.git"})),
            )
            .body["id"]
            .as_i64()
            .expect("id");
        assert_eq!(
            w.as_admin("POST", &mirrors_path(id), Some(json!({"url": "https://example.com/t.git"}))).status,
            201
        );
        let mid = w.as_admin("GET", &mirrors_path(id), None).body[0]["id"].clone();
        assert_eq!(
            w.as_admin("PUT", &format!("{}/{mid}", mirrors_path(id)), Some(json!({"enabled": true}))).status,
            200
        );
        let hook = w.as_admin("PUT", &format!("{HOOK}/{id}/webhook"), None);
        assert_eq!(hook.status, 200, "{}", hook.raw);
        assert!(hook.body["url"].as_str().is_some_and(|u| u.ends_with(&format!("/repos/{id}/webhook"))));
        (w, id, hook.body["secret"].as_str().expect("secret").to_owned())
    }

    fn hex(b: &[u8]) -> String {
        b.iter().map(|x| format!("{x:02x}")).collect()
    }

    /// What the fake crypto computes for an HMAC.
    fn fake_hmac(secret: &str, body: &str) -> String {
        format!("hmac:{}:{}", hex(secret.as_bytes()), hex(body.as_bytes()))
    }

    fn jobs(w: &World, id: i64) -> Vec<(String, String)> {
        let list = w.as_admin("GET", &format!("{HOOK}/{id}/jobs"), None).body;
        list["values"]
            .as_array()
            .expect("jobs")
            .iter()
            .map(|j| {
                (j["kind"].as_str().unwrap_or_default().to_owned(), j["reason"].as_str().unwrap_or_default().to_owned())
            })
            .collect()
    }

    #[test]
    fn signed_github_and_gitlab_pushes_queue_syncs_and_bad_ones_are_refused() {
        let (w, id, secret) = setup();
        let body = r#"{"ref":"refs/heads/main"}"#;
        let url = format!("{HOOK}/{id}/webhook");
        let sig = format!("sha256={}", fake_hmac(&secret, body));
        let r = w.send(
            "POST",
            &url,
            &[("X-GitHub-Event", "push"), ("X-Hub-Signature-256", &sig)],
            Some(("application/json", body)),
        );
        assert_eq!(
            (r.status, r.body["queued"].as_u64(), r.body["host"].as_str()),
            (202, Some(2), Some("github")),
            "{}",
            r.raw
        );
        assert!(jobs(&w, id).contains(&("PULL_MIRROR".into(), "WEBHOOK".into())));
        let bad = w.send(
            "POST",
            &url,
            &[("X-GitHub-Event", "push"), ("X-Hub-Signature-256", "sha256=00")],
            Some(("application/json", body)),
        );
        assert_eq!(bad.status, 401);
        let tampered = w.send(
            "POST",
            &url,
            &[("X-GitHub-Event", "push"), ("X-Hub-Signature-256", &sig)],
            Some(("application/json", "{}")),
        );
        assert_eq!(tampered.status, 401, "the signature covers the body");
        let gl = w.send(
            "POST",
            &url,
            &[("X-Gitlab-Event", "Push Hook"), ("X-Gitlab-Token", &secret)],
            Some(("application/json", body)),
        );
        assert_eq!((gl.status, gl.body["host"].as_str()), (202, Some("gitlab")));
        assert_eq!(
            w.send(
                "POST",
                &url,
                &[("X-Gitlab-Event", "Push Hook"), ("X-Gitlab-Token", "nope")],
                Some(("application/json", body))
            )
            .status,
            401
        );
        assert_eq!(
            w.send("POST", &url, &[("X-GitHub-Event", "push")], Some(("application/json", body))).status,
            401,
            "unsigned"
        );
        let ping = w.send(
            "POST",
            &url,
            &[("X-GitHub-Event", "ping"), ("X-Hub-Signature-256", &format!("sha256={}", fake_hmac(&secret, "{}")))],
            Some(("application/json", "{}")),
        );
        assert_eq!(ping.status, 200);
        assert_eq!(w.as_admin("DELETE", &url, None).status, 204);
        assert_eq!(
            w.send(
                "POST",
                &url,
                &[("X-Gitlab-Event", "Push Hook"), ("X-Gitlab-Token", &secret)],
                Some(("application/json", body))
            )
            .status,
            404
        );
    }

    #[test]
    fn pushes_wait_for_their_repositorys_pull_and_are_not_queued_twice() {
        let (w, id, _) = setup();
        let node = w.as_admin("POST", "/rest/mirrorfarm/latest/nodes", Some(json!({"name": "n"}))).body["token"]
            .as_str()
            .expect("token")
            .to_owned();
        let lease = || w.as_token(&node, "POST", "/rest/mirrorfarm/latest/jobs/lease", None);
        // Enabling the mirror queued a push; a sync request adds the pull and joins the push.
        let sync = w.as_token(&node, "POST", &format!("{HOOK}/{id}/sync"), None);
        assert_eq!(sync.body["queued"], 2, "{}", sync.raw);
        assert_eq!(jobs(&w, id).len(), 2, "the waiting push was not queued again");
        let pull = lease().body;
        assert_eq!(pull["kind"], "PULL_MIRROR", "the pull goes first although the push is older");
        assert_eq!(lease().status, 204, "the push waits while the pull is leased");
        let body = json!({"leaseId": pull["leaseId"], "outcome": "pushed", "fingerprint": "fp-1"});
        let r = w.as_token(&node, "POST", &format!("/rest/mirrorfarm/latest/jobs/{}/result", pull["id"]), Some(body));
        assert_eq!(r.status, 200, "{}", r.raw);
        let push = lease().body;
        assert_eq!(push["kind"], "PUSH_MIRROR", "then the push runs, once");
        assert_eq!(jobs(&w, id).len(), 2, "the upstream's move joined the waiting push");
        assert_eq!(lease().status, 204);
    }

    #[test]
    fn polls_skip_unchanged_upstreams_and_a_new_fingerprint_moves_the_mirrors() {
        let (mut w, id, _) = setup();
        w.config.poll_interval_ms = 60_000;
        let node = w.as_admin("POST", "/rest/mirrorfarm/latest/nodes", Some(json!({"name": "n"}))).body["token"]
            .as_str()
            .expect("token")
            .to_owned();
        // Drain the push job queued when the mirror was enabled.
        let first = w.as_token(&node, "POST", "/rest/mirrorfarm/latest/jobs/lease", None).body;
        w.as_token(
            &node,
            "POST",
            &format!("/rest/mirrorfarm/latest/jobs/{}/result", first["id"]),
            Some(json!({"leaseId": first["leaseId"], "outcome": "pushed"})),
        );
        let service = Service::new(&w.store, &w.crypto, &w.config, Timestamp(1_578_331_922_823));
        assert_eq!(block_on(service.schedule_polls()).expect("polls"), 1);
        assert_eq!(block_on(service.schedule_polls()).expect("polls"), 0, "polled within the interval");
        let report = |job: &Value, outcome: &str, fingerprint: Option<&str>| {
            let body = json!({"leaseId": job["leaseId"], "outcome": outcome, "fingerprint": fingerprint});
            w.as_token(&node, "POST", &format!("/rest/mirrorfarm/latest/jobs/{}/result", job["id"]), Some(body))
        };
        let poll = w.as_token(&node, "POST", "/rest/mirrorfarm/latest/jobs/lease", None).body;
        assert_eq!((poll["kind"].as_str(), poll["reason"].as_str()), (Some("PULL_MIRROR"), Some("POLL")));
        assert_eq!(poll["repository"]["upstreamFingerprint"], Value::Null);
        assert_eq!(
            w.as_admin("GET", &format!("/api/v4/projects/{id}/mirror/pull"), None).body["update_status"],
            "none",
            "a poll does not start the mirror"
        );
        assert_eq!(report(&poll, "pushed", Some("fp-1")).status, 200);
        let after = w.as_token(&node, "POST", "/rest/mirrorfarm/latest/jobs/lease", None).body;
        assert_eq!(
            (after["kind"].as_str(), after["reason"].as_str()),
            (Some("PUSH_MIRROR"), Some("UPSTREAM")),
            "the mirror follows the new upstream"
        );
        report(&after, "pushed", None);

        let later = Service::new(&w.store, &w.crypto, &w.config, Timestamp(1_578_331_922_823 + 61_000));
        assert_eq!(block_on(later.schedule_polls()).expect("polls"), 1);
        let again = w.as_token(&node, "POST", "/rest/mirrorfarm/latest/jobs/lease", None).body;
        assert_eq!(again["repository"]["upstreamFingerprint"], "fp-1");
        assert_eq!(report(&again, "unchanged", None).status, 200);
        assert_eq!(
            w.as_token(&node, "POST", "/rest/mirrorfarm/latest/jobs/lease", None).status,
            204,
            "nothing follows an unchanged poll"
        );
        assert_eq!(
            w.as_admin("GET", &format!("/api/v4/projects/{id}/mirror/pull"), None).body["update_status"],
            "finished"
        );
    }
}

mod forks {
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    use super::*;

    const NODE: &str = "/rest/mirrorfarm/latest";
    const SYNC: &str = "/rest/sync/latest/projects/MF/repos/fork";
    const DEV_TOKEN: &str = "mfp_dev_token_0123456789";

    /// An origin with an upstream, a fork of it, a node, and a developer with WRITE on the fork.
    fn setup() -> (World, String, i64) {
        let w = World::new();
        w.as_admin("POST", "/rest/api/latest/projects", Some(json!({"key": "mf", "name": "Mirror Farm"})));
        let origin = w.as_admin(
            "POST",
            "/rest/api/latest/projects/MF/repos",
            Some(json!({"name": "Origin", "upstreamUrl": "https://up.example/origin.git"})),
        );
        assert_eq!(origin.status, 201, "{}", origin.raw);
        let fork = w.as_admin(
            "POST",
            "/rest/api/latest/projects/MF/repos/origin",
            Some(json!({"name": "Fork", "project": {"key": "MF"}, "url": "https://bot:f0rk-secret@git.example/fork.git"})),
        );
        assert_eq!(fork.status, 201, "{}", fork.raw);
        assert_eq!(fork.body["origin"]["slug"], "origin");
        assert_eq!(fork.body["url"], "https://*****:*****@git.example/fork.git");
        assert!(!fork.raw.contains("f0rk-secret"));
        let id = fork.body["id"].as_i64().expect("id");
        w.add_user("dev", GlobalRole::User, DEV_TOKEN);
        let grant = w.as_admin(
            "PUT",
            "/rest/api/latest/projects/MF/repos/fork/permissions/users?name=dev&permission=REPO_WRITE",
            None,
        );
        assert_eq!(grant.status, 204, "{}", grant.raw);
        let node = w.as_admin("POST", &format!("{NODE}/nodes"), Some(json!({"name": "node-1"})));
        (w, node.body["token"].as_str().expect("token").to_owned(), id)
    }

    fn lease(w: &World, token: &str) -> Reply {
        w.as_token(token, "POST", &format!("{NODE}/jobs/lease"), Some(json!({"leaseSeconds": 60})))
    }

    #[test]
    fn forks_are_created_listed_and_refused_with_bitbucket_errors() {
        let (w, _, id) = setup();
        let forks = w.as_admin("GET", "/rest/api/latest/projects/MF/repos/origin/forks", None);
        assert_eq!(forks.body["values"][0]["id"], id);
        let got = w.as_admin("GET", "/rest/api/latest/projects/MF/repos/fork", None);
        assert_eq!(got.body["url"], "https://*****:*****@git.example/fork.git");
        assert_eq!(got.body["origin"]["slug"], "origin", "a fork's own read carries its origin");
        let origin = w.as_admin("GET", "/rest/api/latest/projects/MF/repos/origin", None);
        assert!(origin.body.get("origin").is_none(), "a non-fork has none");
        // No url, a taken name, an scmId, a project without key, a missing origin.
        let fork = |body: Value| w.as_admin("POST", "/rest/api/latest/projects/MF/repos/origin", Some(body));
        let r = fork(json!({"name": "Other"}));
        assert_eq!((r.status, r.body["errors"][0]["context"].as_str()), (400, Some("url")), "{}", r.raw);
        let r = fork(json!({"name": "Fork", "project": {"key": "MF"}, "url": "https://git.example/x.git"}));
        assert_eq!(r.status, 400, "{}", r.raw);
        assert_eq!(fork(json!({"scmId": "git", "url": "https://git.example/x.git"})).status, 400);
        assert_eq!(fork(json!({"project": {}, "url": "https://git.example/x.git"})).status, 400);
        let missing = w.as_admin("POST", "/rest/api/latest/projects/MF/repos/nope", Some(json!({})));
        assert_eq!(missing.status, 404);
        // A developer without PROJECT_ADMIN on the target project: Bitbucket's 401.
        let r = w.as_token(
            DEV_TOKEN,
            "POST",
            "/rest/api/latest/projects/MF/repos/fork",
            Some(json!({"name": "Mine", "project": {"key": "MF"}, "url": "https://git.example/m.git"})),
        );
        assert_eq!(r.status, 401, "{}", r.raw);
    }

    #[test]
    fn status_toggle_and_synchronize_follow_bitbucket() {
        let (w, token, _) = setup();
        let status = w.as_admin("GET", &format!("{SYNC}/"), None);
        assert_eq!(status.status, 200, "{}", status.raw);
        assert_eq!((status.body["available"].as_bool(), status.body["enabled"].as_bool()), (Some(true), Some(false)));
        assert_eq!(status.body["aheadRefs"], json!([]));
        // Not a fork: 409 on enable, unavailable in the status.
        let origin = "/rest/sync/1.0/projects/MF/repos/origin";
        assert_eq!(w.as_admin("GET", origin, None).body["available"], false);
        assert_eq!(w.as_admin("POST", origin, Some(json!({"enabled": true}))).status, 409);
        // Bad bodies.
        assert_eq!(w.as_admin("POST", SYNC, Some(json!({}))).status, 400);
        assert_eq!(w.as_admin("POST", SYNC, Some(json!({"enabled": "maybe"}))).status, 400);
        // The developer may read and synchronize, not switch sync: 401.
        assert_eq!(w.as_token(DEV_TOKEN, "POST", SYNC, Some(json!({"enabled": "true"}))).status, 401);
        // Enabling queues a sync ahead of routine work and waits for it; with no node to do it: 503.
        let enabled = w.as_admin("POST", SYNC, Some(json!({"enabled": "true"})));
        assert_eq!(enabled.status, 503, "{}", enabled.raw);
        assert!(enabled.body["errors"][0]["message"].as_str().is_some_and(|m| m.contains("farm node")));
        // The toggle was written, its audit event with it, before the wait gave up: that one event
        // now says FAILURE with the status (no second event, no SUCCESS left behind).
        let events = "SELECT COUNT(*) FROM audit_events WHERE action = 'SetForkSync'";
        assert_eq!(w.db().count(&format!("{events} AND outcome = 'SUCCESS'")), 0);
        assert_eq!(w.db().count(events), 5, "409, 400, 400, 401 and this 503: one event each");
        assert_eq!(
            w.db().text("SELECT outcome || ' ' || status FROM audit_events ORDER BY id DESC LIMIT 1"),
            "FAILURE 503"
        );
        assert_eq!(w.as_admin("GET", SYNC, None).body["enabled"], true, "stays enabled; the job still runs");
        // The node gets the fork job with both sides' URLs.
        let job = lease(&w, &token);
        assert_eq!(job.status, 200, "{}", job.raw);
        assert_eq!(job.body["kind"], "FORK_SYNC");
        assert_eq!(job.body["fork"]["url"], "https://bot:f0rk-secret@git.example/fork.git");
        assert_eq!(job.body["fork"]["origin"]["upstreamUrl"], "https://up.example/origin.git");
        let report = json!({
            "leaseId": job.body["leaseId"], "outcome": "pushed",
            "forkRefs": [{"id": "refs/heads/feature", "state": "DIVERGED"}, {"id": "refs/tags/v1", "state": "AHEAD"}],
        });
        let r = w.as_token(&token, "POST", &format!("{NODE}/jobs/{}/result", job.body["id"]), Some(report));
        assert_eq!(r.status, 200, "{}", r.raw);
        let status = w.as_admin("GET", SYNC, None);
        assert_eq!(status.body["divergedRefs"][0]["displayId"], "feature");
        assert_eq!(status.body["aheadRefs"][0]["tag"], true);
        assert_eq!(status.body["lastSync"], 1_578_331_922_823_i64);
        let at = w.as_admin("GET", &format!("{SYNC}?at=feature"), None);
        assert_eq!(
            (at.body["divergedRefs"].as_array().map(Vec::len), at.body["aheadRefs"].as_array().map(Vec::len)),
            (Some(1), Some(0))
        );
        // synchronize: every error case of BITBUCKET.md §B.
        let sync = |body: Option<Value>| w.as_token(DEV_TOKEN, "POST", &format!("{SYNC}/synchronize"), body);
        assert_eq!(sync(None).status, 400, "an empty body");
        assert_eq!(sync(Some(json!({"refId": "feature"}))).status, 400, "no action");
        assert_eq!(sync(Some(json!({"refId": "feature", "action": "SQUASH"}))).status, 400);
        assert_eq!(sync(Some(json!({"refId": "feature", "action": "REBASE"}))).status, 501);
        assert_eq!(sync(Some(json!({"refId": "main", "action": "DISCARD"}))).status, 409, "in step");
        assert_eq!(sync(Some(json!({"refId": "v1", "action": "MERGE"}))).status, 409, "AHEAD is not DIVERGED");
        let missing = w.as_token(
            DEV_TOKEN,
            "POST",
            "/rest/sync/latest/projects/MF/repos/nope/synchronize",
            Some(json!({"refId": "a", "action": "MERGE"})),
        );
        assert_eq!(missing.status, 404);
        assert_eq!(w.send("POST", &format!("{SYNC}/synchronize"), &[], None).status, 401, "never anonymous");
        // A MERGE is queued for a node with the caller as author.
        let merge = sync(Some(
            json!({"refId": "refs/heads/feature", "action": "MERGE", "context": {"commitMessage": "Catch up"}}),
        ));
        assert_eq!(merge.status, 503, "{}", merge.raw);
        let job = lease(&w, &token);
        assert_eq!(job.body["fork"]["action"]["action"], "MERGE");
        assert_eq!(job.body["fork"]["action"]["refName"], "refs/heads/feature");
        assert_eq!(job.body["fork"]["action"]["message"], "Catch up");
        assert_eq!(job.body["fork"]["action"]["authorName"], "dev");
        // Switching off answers 204; synchronize is then refused.
        assert_eq!(w.as_admin("POST", SYNC, Some(json!({"enabled": false}))).status, 204);
        assert_eq!(sync(Some(json!({"refId": "feature", "action": "DISCARD"}))).status, 409);
    }

    #[test]
    fn an_origins_new_content_syncs_its_enabled_forks_and_deleting_it_makes_sync_unavailable() {
        let (w, token, fork) = setup();
        w.as_admin("POST", SYNC, Some(json!({"enabled": true})));
        let job = lease(&w, &token);
        w.as_token(
            &token,
            "POST",
            &format!("{NODE}/jobs/{}/result", job.body["id"]),
            Some(json!({"leaseId": job.body["leaseId"], "outcome": "pushed", "forkRefs": []})),
        );
        // The origin is pulled (its pull job comes first: fork syncs wait for it) and its new
        // fingerprint queues the fork's sync.
        let pull = w.as_token(&token, "POST", "/rest/mirrorfarm/latest/repos/1/sync", None);
        assert_eq!(pull.status, 202, "{}", pull.raw);
        let job = lease(&w, &token);
        assert_eq!(job.body["kind"], "PULL_MIRROR", "{}", job.raw);
        let r = w.as_token(
            &token,
            "POST",
            &format!("{NODE}/jobs/{}/result", job.body["id"]),
            Some(json!({"leaseId": job.body["leaseId"], "outcome": "pushed", "fingerprint": "f1"})),
        );
        assert_eq!(r.status, 200, "{}", r.raw);
        let job = lease(&w, &token);
        assert_eq!(
            (job.body["kind"].as_str(), job.body["reason"].as_str()),
            (Some("FORK_SYNC"), Some("UPSTREAM")),
            "{}",
            job.raw
        );
        assert_eq!(job.body["repository"]["id"], fork);
        // The origin deleted: the fork stays, its sync unavailable with the reason.
        assert_eq!(w.as_admin("DELETE", "/rest/api/latest/projects/MF/repos/origin", None).status, 202);
        let status = w.as_admin("GET", SYNC, None);
        assert_eq!(status.body["available"], false);
        assert!(status.body["unavailableReason"].as_str().is_some_and(|r| r.contains("MF/origin")), "{}", status.raw);
        assert_eq!(w.as_admin("POST", SYNC, Some(json!({"enabled": true}))).status, 409);
    }
}

mod farm {
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    use super::*;

    const NODE: &str = "/rest/mirrorfarm/latest";
    const UP: &str = "/rest/mirroring/latest/upstreamServers";

    fn listed(project: u32, repo: u32) -> Value {
        json!({
            "projectId": project.to_string(), "projectKey": format!("p{project}"), "projectName": format!("Project {project}"),
            "repoId": repo.to_string(), "slug": format!("repo-{repo}"), "name": format!("Repo {repo}"),
            "cloneUrl": format!("https://bb.example/scm/p{project}/repo-{repo}.git"),
        })
    }

    fn lease(w: &World, token: &str) -> Reply {
        w.as_token(token, "POST", &format!("{NODE}/jobs/lease"), Some(json!({"leaseSeconds": 60})))
    }

    fn report(w: &World, token: &str, job: &Reply, body: Value) -> Reply {
        report_job(w, token, &job.body, body)
    }

    fn report_job(w: &World, token: &str, job: &Value, body: Value) -> Reply {
        let mut body = body;
        body["leaseId"] = job["leaseId"].clone();
        w.as_token(token, "POST", &format!("{NODE}/jobs/{}/result", job["id"]), Some(body))
    }

    #[test]
    fn upstream_settings_discovery_sync_records_and_removal() {
        let w = World::new();
        let node = w.as_admin("POST", &format!("{NODE}/nodes"), Some(json!({"name": "node-1"})));
        let node = node.body["token"].as_str().expect("token").to_owned();

        // Adding an upstream: bad input is refused in Bitbucket's shape, the token never returned.
        let missing =
            w.as_admin("POST", &format!("{NODE}/upstreamServers"), Some(json!({"baseUrl": "https://bb.example"})));
        assert_eq!((missing.status, missing.body["errors"][0]["context"].as_str()), (400, Some("type")));
        let internal = w.as_admin(
            "POST",
            &format!("{NODE}/upstreamServers"),
            Some(json!({"baseUrl": "http://127.0.0.1:7990", "type": "bitbucket"})),
        );
        assert_eq!((internal.status, internal.body["errors"][0]["context"].as_str()), (400, Some("baseUrl")));
        let added = w.as_admin(
            "POST",
            &format!("{NODE}/upstreamServers"),
            Some(json!({"baseUrl": "https://bb.example/", "type": "bitbucket", "token": "up-s3cret-token"})),
        );
        assert_eq!(added.status, 201, "{}", added.raw);
        assert_eq!(
            (added.body["state"].as_str(), added.body["baseUrl"].as_str()),
            (Some("INITIALIZING"), Some("https://bb.example"))
        );
        assert!(!added.raw.contains("up-s3cret-token"));
        let id = added.body["id"].as_str().expect("id").to_owned();
        assert_eq!(id.len(), 36, "a UUID");
        let listed_servers = w.as_admin("GET", UP, None);
        assert_eq!(
            (listed_servers.body["size"].as_u64(), listed_servers.body["isLastPage"].as_bool()),
            (Some(1), Some(true))
        );

        // Settings, exactly as the seed shows them.
        let settings = w.as_admin("GET", &format!("{UP}/{id}/settings"), None);
        assert_eq!(settings.body, json!({"projectIds": [], "mode": "ALL_PROJECTS"}));
        let mode = w.send(
            "PUT",
            &format!("{UP}/{id}/settings/mode"),
            &[("PRIVATE-TOKEN", ADMIN_TOKEN)],
            Some(("application/json", "\"SELECTED_PROJECTS\"")),
        );
        assert_eq!((mode.status, mode.body.as_str()), (200, Some("SELECTED_PROJECTS")));
        let bad = w.send(
            "PUT",
            &format!("{UP}/{id}/settings/mode"),
            &[("PRIVATE-TOKEN", ADMIN_TOKEN)],
            Some(("application/json", "\"SOME\"")),
        );
        assert_eq!(bad.status, 400);
        let added_projects = w.as_admin("POST", &format!("{UP}/{id}/settings/projects"), Some(json!(["1", 3])));
        assert_eq!(added_projects.body, json!(["1", "3"]));
        assert_eq!(w.as_admin("DELETE", &format!("{UP}/{id}/settings/projects/3"), None).status, 204);
        assert_eq!(
            w.as_admin("GET", "/rest/mirroring/latest/syncSettings/projects", None).body,
            json!(["1"]),
            "9.4 name"
        );
        let progress = w.as_admin("GET", &format!("{UP}/{id}/progress"), None);
        assert_eq!(progress.body, json!({"discovering": true, "syncedRepos": 0, "totalRepos": 0}));

        // A node lists the upstream; only the selected project's repositories join the farm.
        let job = lease(&w, &node);
        assert_eq!(job.body["kind"], "DISCOVER", "{}", job.raw);
        assert_eq!(job.body["discovery"]["token"], "up-s3cret-token");
        assert_eq!(job.body["discovery"]["projectIds"], json!(["1"]));
        let done = report(
            &w,
            &node,
            &job,
            json!({"outcome": "pushed", "discovered": [listed(1, 10), listed(1, 11), listed(2, 20)]}),
        );
        assert_eq!(done.status, 200, "{}", done.raw);
        assert_eq!(w.as_admin("GET", &format!("{UP}/{id}"), None).body["state"], "INSTALLED");
        let progress = w.as_admin("GET", "/rest/mirroring/latest/progress", None);
        assert_eq!(progress.body, json!({"discovering": false, "syncedRepos": 0, "totalRepos": 2}));
        let status = w.as_admin("GET", "/rest/mirroring/latest/supportInfo/repoSyncStatus", None);
        assert_eq!(status.body["size"], 2, "{}", status.raw);
        assert_eq!(status.body["values"][0]["externalRepoId"], "10");
        assert_eq!(status.body["values"][0]["hashes"]["content"], crate::farm::ZERO_HASH);
        let queue = w.as_admin("GET", "/rest/mirroring/latest/supportInfo/refChangesQueue", None);
        assert_eq!(queue.body["values"].as_array().map(Vec::len), Some(2), "first syncs queued");
        assert_eq!(queue.body["values"][0]["type"], "snapshot");
        assert_eq!(w.as_admin("GET", "/rest/mirroring/latest/supportInfo/refChangesQueue/count", None).body, json!(2));

        // Its first sync clones with the upstream's token and records the copy's hash.
        let pull = lease(&w, &node);
        assert_eq!(pull.body["kind"], "PULL_MIRROR");
        assert_eq!(
            pull.body["repository"]["upstreamUrl"],
            "https://x-token-auth:up-s3cret-token@bb.example/scm/p1/repo-10.git"
        );
        let hash = "ab".repeat(32);
        // The result asks for the next job and gets it in the same answer.
        let reported = json!({"outcome": "pushed", "contentHash": hash, "fingerprint": "f".repeat(64), "next": {}});
        let synced = report(&w, &node, &pull, reported);
        assert_eq!(synced.status, 200, "{}", synced.raw);
        let next = synced.body["next"].clone();
        assert_eq!(
            (next["kind"].as_str(), next["repository"]["slug"].as_str()),
            (Some("PULL_MIRROR"), Some("repo-11"))
        );
        let one =
            w.as_admin("GET", "/rest/mirroring/latest/supportInfo/projects/P1/repos/repo-10/repoSyncStatus", None);
        assert_eq!(one.body["hashes"]["content"], hash.as_str(), "{}", one.raw);
        assert_ne!(one.body["hashes"]["metadata"], crate::farm::ZERO_HASH);
        assert_eq!((one.body["failedSyncCount"].as_u64(), one.body["initialSyncDate"].is_i64()), (Some(0), true));
        let mirrored = w.as_admin("GET", &format!("{UP}/{id}/repos/10"), None);
        assert_eq!(mirrored.body["status"], "AVAILABLE", "{}", mirrored.raw);
        assert_eq!(mirrored.body["pushUrls"][0]["href"], "https://bb.example/scm/p1/repo-10.git");
        assert!(!mirrored.raw.contains("s3cret"));
        assert_eq!(w.as_admin("GET", &format!("{UP}/{id}/repos/20"), None).body["status"], "NOT_MIRRORED");
        let failed =
            report_job(&w, &node, &next, json!({"outcome": "error", "message": "upstream unreachable", "next": {}}));
        assert_eq!(failed.body["next"], Value::Null, "{}", failed.raw);
        let other =
            w.as_admin("GET", "/rest/mirroring/latest/supportInfo/projects/P1/repos/repo-11/repoSyncStatus", None);
        assert_eq!(other.body["failedSyncCount"], 1);
        assert_eq!(w.as_admin("GET", &format!("{UP}/{id}/repos/11"), None).body["status"], "ERROR_INITIALIZING");

        // Metrics and the status read show the farm too.
        let metrics = w.as_admin("GET", "/rest/mirrorfarm/latest/metrics", None);
        assert_eq!(metrics.header("Content-Type"), Some("text/plain; version=0.0.4; charset=utf-8"));
        assert!(metrics.raw.contains("mirrorfarm_farm_repositories{status=\"AVAILABLE\"} 1\n"), "{}", metrics.raw);
        assert!(metrics.raw.contains("mirrorfarm_farm_repositories{status=\"ERROR_INITIALIZING\"} 1\n"));
        assert!(metrics.raw.contains(&format!(
            "mirrorfarm_upstream_last_sync_age_seconds{{upstream=\"{id}\",base_url=\"https://bb.example\"}} 0.000"
        )));
        let local = one.body["localRepoId"].as_i64().expect("id");
        let status = w.as_admin("GET", &format!("{NODE}/repos/{local}/status"), None);
        assert_eq!(status.body["farm"]["upstream"], "https://bb.example", "{}", status.raw);
        assert_eq!(status.body["farm"]["status"], "AVAILABLE");
        assert_eq!(status.body["farm"]["contentHash"], hash.as_str());
        assert_eq!(status.body["farm"]["upstreamContentHash"], "f".repeat(64));

        // A primary publishes the same hashes for its own repositories.
        let published = w.as_admin("GET", "/rest/mirroring/latest/repos", None);
        let repo10 =
            published.body["values"].as_array().and_then(|v| v.iter().find(|r| r["slug"] == "repo-10").cloned());
        let repo10 = repo10.expect("listed");
        assert_eq!(repo10["properties"]["contentHash"], hash.as_str());
        assert_eq!(repo10["properties"]["metadataHash"], one.body["hashes"]["metadata"]);

        // Unselecting the project removes its repositories once the next listing is recorded.
        assert_eq!(w.as_admin("DELETE", &format!("{UP}/{id}/settings/projects"), Some(json!(["1"]))).status, 204);
        let job = lease(&w, &node);
        assert_eq!(job.body["kind"], "DISCOVER", "{}", job.raw);
        let done = report(&w, &node, &job, json!({"outcome": "pushed", "discovered": []}));
        assert_eq!(done.body["removedRepositories"].as_array().map(Vec::len), Some(2), "{}", done.raw);
        assert_eq!(w.as_admin("GET", "/rest/mirroring/latest/progress", None).body["totalRepos"], 0);
        assert_eq!(w.as_admin("DELETE", &format!("{NODE}/upstreamServers/{id}"), None).status, 204);
        assert_eq!(w.as_admin("GET", &format!("{UP}/{id}"), None).status, 404);
    }

    #[test]
    fn a_discovery_report_may_list_more_than_an_ordinary_body_holds() {
        let w = World::new();
        let node = w.as_admin("POST", &format!("{NODE}/nodes"), Some(json!({"name": "node-1"})));
        let node = node.body["token"].as_str().expect("token").to_owned();
        w.as_admin(
            "POST",
            &format!("{NODE}/upstreamServers"),
            Some(json!({"baseUrl": "https://bb.example", "type": "bitbucket"})),
        );
        let job = lease(&w, &node);
        let listing: Vec<Value> = (0..400).map(|i| listed(1, 1000 + i)).collect();
        let body = json!({"outcome": "pushed", "discovered": listing});
        assert!(body.to_string().len() > MAX_BODY_BYTES, "larger than any other body may be");
        let done = report(&w, &node, &job, body);
        assert_eq!(done.status, 200, "{}", done.raw);
        assert_eq!(w.as_admin("GET", "/rest/mirroring/latest/progress", None).body["totalRepos"], 400);
    }

    #[test]
    fn a_failed_listing_marks_the_upstream_unknown_and_removes_nothing() {
        let w = World::new();
        let node = w.as_admin("POST", &format!("{NODE}/nodes"), Some(json!({"name": "node-1"})));
        let node = node.body["token"].as_str().expect("token").to_owned();
        let added = w.as_admin(
            "POST",
            &format!("{NODE}/upstreamServers"),
            Some(json!({"baseUrl": "https://gl.example", "type": "gitlab"})),
        );
        let id = added.body["id"].as_str().expect("id").to_owned();
        let job = lease(&w, &node);
        report(&w, &node, &job, json!({"outcome": "pushed", "discovered": [listed(1, 10)]}));
        let job = lease(&w, &node);
        assert_eq!(job.body["kind"], "PULL_MIRROR");
        assert_eq!(
            job.body["repository"]["upstreamUrl"], "https://bb.example/scm/p1/repo-10.git",
            "no token, no credentials"
        );
        w.as_admin("PUT", &format!("{UP}/{id}/settings"), Some(json!({"mode": "ALL_PROJECTS"})));
        let job = lease(&w, &node);
        assert_eq!(job.body["kind"], "DISCOVER", "{}", job.raw);
        report(&w, &node, &job, json!({"outcome": "error", "message": "the upstream answered 401 to /api/v4/groups"}));
        let server = w.as_admin("GET", &format!("{UP}/{id}"), None);
        assert_eq!(
            (server.body["state"].as_str(), server.body["stateReason"].as_str()),
            (Some("UNKNOWN"), Some("the upstream answered 401 to /api/v4/groups"))
        );
        assert_eq!(w.as_admin("GET", "/rest/mirroring/latest/progress", None).body["totalRepos"], 1);
    }
}

mod admin {
    use super::*;

    pub(super) fn basic(user: &str, secret: &str) -> String {
        const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        let bytes = format!("{user}:{secret}").into_bytes();
        let mut out = String::new();
        for chunk in bytes.chunks(3) {
            let n = chunk.iter().enumerate().fold(0u32, |acc, (i, b)| acc | u32::from(*b) << (16 - 8 * i));
            for i in 0..4 {
                out.push(if i <= chunk.len() { A[((n >> (18 - 6 * i)) & 63) as usize] as char } else { '=' });
            }
        }
        format!("Basic {out}")
    }

    fn as_basic(w: &World, user: &str, secret: &str, method: &str, target: &str) -> Reply {
        w.send(method, target, &[("Authorization", &basic(user, secret))], None)
    }

    #[test]
    fn the_rate_limit_spends_one_token_per_request_and_refuses_with_429() {
        let w = World::new();
        w.add_user("burst", GlobalRole::User, "mfp_burst_token_000000");
        w.add_user("free", GlobalRole::User, "mfp_free_token_0000000");
        let r = w.as_admin(
            "POST",
            "/rest/api/latest/admin/rate-limit/settings/users",
            Some(json!({"usernames": ["burst"], "settings": {"capacity": 3, "fillRate": 1}})),
        );
        assert_eq!(r.status, 200, "{}", r.raw);
        let r = w.as_admin(
            "PUT",
            "/rest/api/latest/admin/rate-limit/settings/users/free",
            Some(json!({"whitelisted": true})),
        );
        assert_eq!(r.status, 200, "{}", r.raw);
        // Off: nobody is limited.
        for _ in 0..5 {
            assert_eq!(w.as_token("mfp_burst_token_000000", "GET", "/rest/api/latest/projects", None).status, 200);
        }
        let r = w.as_admin("PUT", "/rest/api/latest/admin/rate-limit/settings", Some(json!({"enabled": true})));
        assert_eq!(r.status, 200, "{}", r.raw);
        // The clock stands still in these tests: exactly the capacity passes.
        let statuses: Vec<u16> = (0..5)
            .map(|_| w.as_token("mfp_burst_token_000000", "GET", "/rest/api/latest/projects", None).status)
            .collect();
        assert_eq!(statuses, [200, 200, 200, 429, 429]);
        let refused = w.as_token("mfp_burst_token_000000", "GET", "/rest/api/latest/projects", None);
        assert_eq!(refused.header("Retry-After"), Some("1"));
        assert!(refused.body["errors"][0]["message"].as_str().is_some_and(|m| m.contains("too many requests")));
        // Whitelisted users and anonymous callers are not limited.
        for _ in 0..5 {
            assert_eq!(w.as_token("mfp_free_token_0000000", "GET", "/rest/api/latest/projects", None).status, 200);
            assert_eq!(w.send("GET", "/rest/api/latest/projects", &[], None).status, 200);
        }
        let history = w.as_admin("GET", "/rest/api/latest/admin/rate-limit/history?order=frequency", None);
        assert_eq!(history.body["values"][0]["user"]["slug"], "burst");
        assert_eq!(history.body["values"][0]["rejectCount"], 3);
        assert_eq!(w.as_admin("GET", "/rest/api/latest/admin/rate-limit/history?order=sideways", None).status, 400);
    }

    #[test]
    fn passwords_sign_in_and_wrong_ones_spend_the_bucket() {
        let w = World::new();
        let r = w.as_admin("POST", "/rest/api/latest/admin/users?name=pat&password=sesame-open", None);
        assert_eq!(r.status, 204, "{}", r.raw);
        assert_eq!(as_basic(&w, "pat", "sesame-open", "GET", "/rest/api/latest/users/pat").status, 200);
        assert_eq!(as_basic(&w, "pat", "sesame-shut", "GET", "/rest/api/latest/users/pat").status, 401);
        let stored = w.db().text("SELECT password_hash FROM users WHERE name = 'pat'");
        assert!(stored.starts_with("pbkdf2-sha256$100000$") && !stored.contains("sesame"), "{stored}");
        w.as_admin(
            "PUT",
            "/rest/api/latest/admin/rate-limit/settings/users/pat",
            Some(json!({"settings": {"capacity": 2, "fillRate": 1}})),
        );
        // The limit is off: failed sign-ins are held to the bucket all the same.
        let guesses: Vec<u16> = (0..4)
            .map(|i| as_basic(&w, "pat", &format!("guess-{i}"), "GET", "/rest/api/latest/users/pat").status)
            .collect();
        assert_eq!(guesses, [401, 401, 429, 429]);
        // The right password still works meanwhile: only failures spend while the limit is off.
        assert_eq!(as_basic(&w, "pat", "sesame-open", "GET", "/rest/api/latest/users/pat").status, 200);
    }

    #[test]
    fn a_token_limited_below_its_users_rights_cannot_set_a_first_password() {
        let w = World::new();
        w.add_user("tok", GlobalRole::User, "mfp_tok_full_token_000");
        let scoped = w.as_admin(
            "PUT",
            "/rest/access-tokens/latest/users/tok",
            Some(json!({"name": "ci", "permissions": ["REPO_READ"]})),
        );
        let scoped = scoped.body["token"].as_str().expect("token").to_owned();
        let body = json!({"password": "a-new-password", "passwordConfirm": "a-new-password"});
        assert_eq!(w.as_token(&scoped, "PUT", "/rest/api/latest/users/credentials", Some(body.clone())).status, 401);
        assert_eq!(
            w.as_token("mfp_tok_full_token_000", "PUT", "/rest/api/latest/users/credentials", Some(body)).status,
            204
        );
        assert_eq!(as_basic(&w, "tok", "a-new-password", "GET", "/rest/api/latest/users/tok").status, 200);
    }

    #[test]
    fn policies_decide_who_deletes_and_archives_and_archived_repositories_are_not_synced() {
        let w = World::new();
        w.add_user("ga", GlobalRole::Admin, "mfp_global_admin_00000");
        let id = w.seed_repo();
        let r = w.as_admin("PUT", "/rest/policies/latest/admin/repos/delete", Some(json!({"permission": "SYS_ADMIN"})));
        assert_eq!(r.status, 200, "{}", r.raw);
        assert_eq!(
            w.as_token(
                "mfp_global_admin_00000",
                "PUT",
                "/rest/policies/latest/admin/repos/delete",
                Some(json!({"permission": "ADMIN"}))
            )
            .status,
            401
        );
        assert_eq!(
            w.as_token("mfp_global_admin_00000", "DELETE", "/rest/api/latest/projects/MF/repos/repo", None).status,
            401
        );
        let r = w.as_admin("PUT", "/rest/api/latest/projects/MF/repos/repo", Some(json!({"archived": true})));
        assert_eq!((r.status, r.body["archived"].as_bool()), (200, Some(true)), "{}", r.raw);
        let sync = w.as_admin("POST", &format!("/rest/mirrorfarm/latest/repos/{id}/sync"), None);
        assert_eq!(sync.status, 409);
        let mirror = w.as_admin(
            "POST",
            &format!("/api/v4/projects/{id}/remote_mirrors"),
            Some(json!({"url": "https://example.com/m.git", "enabled": true})),
        );
        assert_eq!(mirror.status, 201, "{}", mirror.raw);
        let push =
            w.as_admin("POST", &format!("/api/v4/projects/{id}/remote_mirrors/{}/sync", mirror.body["id"]), None);
        assert_eq!(
            (push.status, push.body["message"].as_str()),
            (409, Some("409 Conflict - The repository is archived: it is not synced."))
        );
        assert_eq!(w.as_admin("DELETE", "/rest/api/latest/projects/MF/repos/repo", None).status, 202);
    }

    #[test]
    fn a_license_caps_the_users_and_heartbeats_carry_log_levels() {
        let mut w = World::new();
        w.config.license_public_key = Some(vec![1; 32]);
        let text = crate::admin::license::tests::license(2, 2_000_000_000_000);
        assert_eq!(w.as_admin("POST", "/rest/api/latest/admin/license", Some(json!({"license": "x.y"}))).status, 409);
        let r = w.as_admin("POST", "/rest/api/latest/admin/license", Some(json!({"license": text})));
        assert_eq!(r.status, 200, "{}", r.raw);
        assert_eq!(r.body["status"]["currentNumberOfUsers"], 1);
        assert_eq!(w.as_admin("POST", "/rest/api/latest/admin/users?name=second", None).status, 204);
        let refused = w.as_admin("POST", "/rest/api/latest/admin/users?name=third", None);
        assert_eq!(refused.status, 409);
        assert!(refused.raw.contains("The license allows 2 users"));

        let node = w.as_admin("POST", "/rest/mirrorfarm/latest/nodes", Some(json!({"name": "n1"})));
        let token = node.body["token"].as_str().expect("token").to_owned();
        assert_eq!(w.as_admin("PUT", "/rest/api/latest/logs/logger/mirrorfarm.node.serve/debug", None).status, 204);
        let beat = w.as_token(&token, "POST", "/rest/mirrorfarm/latest/nodes/heartbeat", Some(json!({})));
        assert_eq!(beat.body["logFilter"], "info,mirrorfarm_runner::serve=debug");
        assert_eq!(beat.body["name"], "n1");
    }

    #[test]
    fn log_levels_are_known_without_a_round_trip_once_read_and_while_the_isolate_remembers_them() {
        let w = World::new();
        assert_eq!(w.as_admin("PUT", "/rest/api/latest/logs/logger/mirrorfarm.edge.requests/debug", None).status, 204);
        let isolate = CallerCache::new();
        let at = Timestamp(1_000_000);
        let service = |now| Service::new(&w.store, &w.crypto, &w.config, now).with_caller_cache(&isolate);
        let first = service(at);
        assert_eq!(first.known_log_levels(), None, "a new isolate knows no levels");
        let read = block_on(first.log_levels());
        assert_eq!(read.loggers.get("mirrorfarm.edge.requests"), Some(&crate::admin::LogLevel::Debug));
        assert_eq!(first.known_log_levels().as_ref(), Some(&read));
        // The isolate's next request knows them from its memory, until that is too old.
        assert_eq!(service(at.plus_millis(callers::CALLER_TTL_MS - 1)).known_log_levels(), Some(read));
        assert_eq!(service(at.plus_millis(callers::CALLER_TTL_MS)).known_log_levels(), None);
    }
}

mod mail {
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    use super::*;

    const NODE: &str = "/rest/mirrorfarm/latest";
    const MAIL: &str = "/rest/api/latest/admin/mail-server";

    /// A repository with one enabled push mirror, its admin `ops` (with an address), a node, and
    /// (when `server`) a mail server with a password.
    fn setup(server: bool) -> (World, String, i64) {
        let mut w = World::new();
        w.config.retry_base_ms = 0;
        let repo = w.seed_repo();
        w.add_user("ops", GlobalRole::User, "mfp_ops_token_0123456789");
        w.db().execute("UPDATE users SET email = 'ops@example.com' WHERE name = 'ops'");
        let grant = w.as_admin(
            "PUT",
            "/rest/api/latest/projects/MF/repos/repo/permissions/users?name=ops&permission=REPO_ADMIN",
            None,
        );
        assert_eq!(grant.status, 204, "{}", grant.raw);
        let r =
            w.as_admin("POST", &mirrors_path(repo), Some(json!({"url": "https://example.com/m.git", "enabled": true})));
        assert_eq!(r.status, 201, "{}", r.raw);
        if server {
            let put = w.as_admin(
                "PUT",
                MAIL,
                Some(json!({"hostname": "smtp.example.com", "port": 587, "useStartTls": true, "username": "u", "password": "smtp-s3cret", "senderAddress": "mf@example.com"})),
            );
            assert_eq!(put.status, 200, "{}", put.raw);
            assert!(!put.raw.contains("smtp-s3cret"));
        }
        let node = w.as_admin("POST", &format!("{NODE}/nodes"), Some(json!({"name": "n"})));
        (w, node.body["token"].as_str().expect("token").to_owned(), repo)
    }

    fn lease(w: &World, token: &str) -> Reply {
        w.as_token(token, "POST", &format!("{NODE}/jobs/lease"), Some(json!({"leaseSeconds": 60})))
    }

    fn report(w: &World, token: &str, job: &Value, outcome: &str, message: &str) -> Reply {
        let body = json!({"leaseId": job["leaseId"], "outcome": outcome, "message": message});
        w.as_token(token, "POST", &format!("{NODE}/jobs/{}/result", job["id"]), Some(body))
    }

    fn mails(w: &World) -> i64 {
        w.db().count("SELECT COUNT(*) FROM jobs WHERE kind = 'SEND_MAIL'")
    }

    #[test]
    fn three_failed_tries_queue_one_mail_that_a_node_leases_with_everything_it_needs() {
        let (w, token, _) = setup(true);
        for attempt in 1..=3 {
            let job = lease(&w, &token).body;
            assert_eq!(job["kind"], "PUSH_MIRROR");
            let before = w.db().round_trips.get();
            assert_eq!(report(&w, &token, &job, "error", "fatal: unreachable").status, 200);
            // The watch and the mail ride in the report's own batch. Here nothing is remembered
            // between requests: the node's token (1), the job's context (1), the instance's
            // settings (1; an isolate remembers both for 10 s) and the batch (1).
            assert_eq!(w.db().round_trips.get() - before, 4, "try {attempt}");
            assert_eq!(mails(&w), i64::from(attempt == 3), "try {attempt}");
        }
        let mail = lease(&w, &token);
        assert_eq!((mail.status, mail.body["kind"].as_str()), (200, Some("SEND_MAIL")), "{}", mail.raw);
        let m = &mail.body["mail"];
        assert_eq!(m["to"], json!(["ops@example.com"]));
        assert_eq!(m["from"], "mf@example.com");
        assert_eq!(m["server"]["password"], "smtp-s3cret", "unsealed for the node only");
        assert_eq!((m["server"]["port"].as_u64(), m["server"]["useStartTls"].as_bool()), (Some(587), Some(true)));
        assert!(m["subject"].as_str().is_some_and(|s| s.contains("MF/repo is failing")), "{}", m["subject"]);
        assert!(m["text"].as_str().is_some_and(|t| t.contains("3 times") && t.contains("fatal: unreachable")));
        assert!(m["html"].as_str().is_some_and(|h| h.contains("http://mf.test/rest/mirrorfarm/1.0/repos/")));
        // A failed delivery is tried again; a sent one records the server's reply.
        assert_eq!(report(&w, &token, &mail.body, "error", "connection refused").body["job"]["state"], "QUEUED");
        let again = lease(&w, &token).body;
        assert_eq!((again["kind"].as_str(), again["attempt"].as_u64()), (Some("SEND_MAIL"), Some(2)));
        let before = w.db().round_trips.get();
        let done = report(&w, &token, &again, "pushed", "250 OK queued");
        assert_eq!(w.db().round_trips.get() - before, 3, "a report with nothing to tell reads no settings");
        assert_eq!(done.body["job"]["state"], "DONE", "{}", done.raw);
        let listed = w.as_admin("GET", &format!("{NODE}/admin/mail"), None);
        assert_eq!(listed.body[0]["message"], "250 OK queued");
        assert!(!listed.raw.contains("smtp-s3cret"));
        // No password in storage in the clear.
        assert!(!w.db().text("SELECT value FROM instance_settings WHERE name = 'mail.server'").contains("smtp-s3cret"));
    }

    #[test]
    fn queued_mail_waits_while_no_mail_server_is_configured() {
        let (w, token, _) = setup(true);
        for _ in 1..=3 {
            let job = lease(&w, &token).body;
            report(&w, &token, &job, "error", "boom");
        }
        assert_eq!(mails(&w), 1);
        assert_eq!(w.as_admin("DELETE", MAIL, None).status, 204);
        assert_eq!(lease(&w, &token).status, 204, "no server: the mail waits");
        assert_eq!(w.db().text("SELECT state FROM jobs WHERE kind = 'SEND_MAIL'"), "QUEUED");
        let put = w.as_admin("PUT", MAIL, Some(json!({"hostname": "smtp2.example.com"})));
        assert_eq!(put.status, 200, "{}", put.raw);
        let mail = lease(&w, &token);
        assert_eq!(
            (mail.body["kind"].as_str(), mail.body["mail"]["server"]["hostname"].as_str()),
            (Some("SEND_MAIL"), Some("smtp2.example.com"))
        );
    }

    #[test]
    fn without_a_mail_server_nothing_is_queued_but_the_watch_moves() {
        let (w, token, _) = setup(false);
        for _ in 1..=3 {
            let job = lease(&w, &token).body;
            report(&w, &token, &job, "error", "boom");
        }
        assert_eq!(mails(&w), 0);
        assert_eq!(w.db().count("SELECT failures FROM notification_state WHERE target LIKE 'push:%'"), 3);
        assert_eq!(w.db().count("SELECT alerted FROM notification_state WHERE target LIKE 'push:%'"), 1);
        // Test mails need a server.
        assert_eq!(
            w.as_admin("POST", &format!("{NODE}/admin/mail-server/test"), Some(json!({"to": "a@b.example"}))).status,
            409
        );
    }

    #[test]
    fn an_opted_out_admin_is_not_mailed_and_nobody_left_means_no_delivery() {
        let (w, token, _) = setup(true);
        let s = w.as_token(
            "mfp_ops_token_0123456789",
            "POST",
            "/rest/api/latest/users/ops/settings",
            Some(json!({"mirrorfarm.notifications.email": false})),
        );
        assert_eq!(s.status, 204, "{}", s.raw);
        for _ in 1..=3 {
            let job = lease(&w, &token).body;
            report(&w, &token, &job, "error", "boom");
        }
        assert_eq!(mails(&w), 1, "decided when it failed");
        // Recipients are read when it is leased: nobody left, so it is closed, saying why.
        assert_eq!(lease(&w, &token).status, 204);
        let job = &w.as_admin("GET", &format!("{NODE}/admin/mail"), None).body[0];
        assert_eq!((job["state"].as_str(), job["outcome"].as_str()), (Some("FAILED"), Some("error")));
        assert!(job["message"].as_str().is_some_and(|m| m.contains("Nobody to tell")));
    }

    #[test]
    fn a_fork_that_diverges_is_told_once_and_a_conflict_each_time() {
        let (w, token, _) = setup(true);
        w.add_user("forker", GlobalRole::User, "mfp_forker_token_0123456789");
        w.db().execute("UPDATE users SET email = 'forker@example.com' WHERE name = 'forker'");
        w.as_admin(
            "POST",
            "/rest/api/latest/projects/MF/repos/repo",
            Some(json!({"name": "Fork", "project": {"key": "MF"}, "url": "https://git.example/fork.git"})),
        );
        let grant = w.as_admin(
            "PUT",
            "/rest/api/latest/projects/MF/repos/fork/permissions/users?name=forker&permission=REPO_ADMIN",
            None,
        );
        assert_eq!(grant.status, 204, "{}", grant.raw);
        // The push mirror's job is out of the way first.
        let push = lease(&w, &token).body;
        report(&w, &token, &push, "pushed", "");
        w.as_admin("POST", "/rest/sync/latest/projects/MF/repos/fork", Some(json!({"enabled": true})));
        let fork_id = w.db().count("SELECT id FROM repositories WHERE slug = 'fork'");
        let fork_report = |refs: Value, outcome: &str| {
            let job = lease(&w, &token).body;
            assert_eq!(job["kind"], "FORK_SYNC", "{job}");
            let body = json!({"leaseId": job["leaseId"], "outcome": outcome, "message": "CONFLICT (content): a.txt", "forkRefs": refs});
            let r = w.as_token(&token, "POST", &format!("{NODE}/jobs/{}/result", job["id"]), Some(body));
            assert_eq!(r.status, 200, "{}", r.raw);
            // The next sync of the fork, ahead of the mail just queued.
            w.db().execute(&format!(
                "INSERT INTO jobs (kind, repository_id, reason, enqueued_at, priority) VALUES ('FORK_SYNC', {fork_id}, 'MANUAL', 0, 20)"
            ));
        };
        let diverged = json!([{"id": "refs/heads/feature", "state": "DIVERGED"}]);
        fork_report(diverged.clone(), "pushed");
        assert_eq!(mails(&w), 1);
        let payload = w.db().text("SELECT payload FROM jobs WHERE kind = 'SEND_MAIL' ORDER BY id DESC LIMIT 1");
        assert!(payload.contains("FORK_DIVERGED") && payload.contains("refs/heads/feature"), "{payload}");
        fork_report(diverged, "pushed");
        assert_eq!(mails(&w), 1, "still diverged: told once");
        fork_report(json!([]), "conflict");
        assert_eq!(mails(&w), 2, "a conflict is told");
        let payload = w.db().text("SELECT payload FROM jobs WHERE kind = 'SEND_MAIL' ORDER BY id DESC LIMIT 1");
        assert!(payload.contains("FORK_CONFLICT") && payload.contains("a.txt"), "{payload}");
        // The fork's admin is told, not the origin's.
        w.db().execute("DELETE FROM jobs WHERE kind = 'FORK_SYNC' AND state = 'QUEUED'");
        let mail = lease(&w, &token);
        assert_eq!(mail.body["mail"]["to"], json!(["forker@example.com"]), "{}", mail.raw);
    }

    #[test]
    fn the_license_is_told_once_when_it_nears_its_end() {
        let (mut w, _, _) = setup(true);
        w.config.license_public_key = Some(vec![1; 32]);
        w.db().execute("UPDATE users SET email = 'root@example.com' WHERE name = 'admin'");
        // Expires ten days after the service's clock.
        let text = crate::admin::license::tests::license(-1, 1_578_331_922_823 + 10 * 86_400_000);
        assert_eq!(w.as_admin("POST", "/rest/api/latest/admin/license", Some(json!({"license": text}))).status, 200);
        let service = Service::new(&w.store, &w.crypto, &w.config, Timestamp(1_578_331_922_823));
        assert_eq!(block_on(service.check_license_notices()).expect("checked"), 1);
        assert_eq!(block_on(service.check_license_notices()).expect("checked"), 0, "told once");
        let payload = w.db().text("SELECT payload FROM jobs WHERE kind = 'SEND_MAIL'");
        assert!(payload.contains("LICENSE_EXPIRING"), "{payload}");
    }
}

/// The audit log: every write and failed sign-in is an event, written in the change's batch.
mod audit {
    use super::*;

    const EVENTS: &str = "/rest/auditing/latest/events";
    const RETENTION: &str = "/rest/auditing/latest/configuration/retention";

    fn events(w: &World, query: &str) -> Value {
        let r = w.as_admin("GET", &format!("{EVENTS}?{query}"), None);
        assert_eq!(r.status, 200, "{}", r.raw);
        r.body
    }

    /// An anonymous `POST /x` event of `category` and `action`, with nothing else in it.
    fn bare_record(category: &str, action: &str) -> crate::store::AuditRecord {
        crate::store::AuditRecord {
            at: Timestamp(5),
            actor: crate::audit::Actor::Anonymous,
            source: None,
            category: category.into(),
            action: action.into(),
            method: "POST".into(),
            path: "/x".into(),
            objects: Vec::new(),
            changed: Vec::new(),
        }
    }

    fn attribute(event: &Value, name: &str) -> Option<String> {
        event["extraAttributes"]
            .as_array()?
            .iter()
            .find(|a| a["name"] == name)
            .and_then(|a| a["value"].as_str().map(str::to_owned))
    }

    #[test]
    fn a_write_carries_its_event_in_its_own_batch() {
        let w = World::new();
        let before = w.db().round_trips.get();
        let r = w.as_admin("POST", "/rest/api/latest/projects", Some(json!({"key": "AU", "name": "Audit"})));
        assert_eq!(r.status, 201);
        let trips = w.db().round_trips.get() - before;
        assert_eq!(r.header("Server-Timing"), Some("audit;desc=\"in batch\""));
        // The caller (no cache here), the settings (for the rate limit), then the project with its
        // event: no batch of its own for the event.
        assert_eq!(trips, 3, "no round trip for the event");
        assert_eq!(w.db().count("SELECT COUNT(*) FROM audit_events"), 1);
        assert_eq!(w.db().text("SELECT outcome FROM audit_events"), "SUCCESS");
        let page = events(&w, "");
        let e = &page["entities"][0];
        assert_eq!(e["author"]["name"], "admin");
        assert_eq!(e["author"]["type"], "user");
        assert_eq!(e["type"]["category"], "Projects");
        assert_eq!(e["type"]["action"], "CreateProject");
        assert_eq!(attribute(e, "outcome").as_deref(), Some("SUCCESS"));
        assert_eq!(attribute(e, "httpMethod").as_deref(), Some("POST"));
        let changed: Vec<(String, String)> = e["changedValues"]
            .as_array()
            .expect("changes")
            .iter()
            .map(|c| (c["key"].as_str().unwrap_or("").to_owned(), c["to"].as_str().unwrap_or("").to_owned()))
            .collect();
        assert!(changed.contains(&("key".into(), "AU".into())), "{changed:?}");
        assert_eq!(e["method"], "REST");
        assert_eq!(e["system"], "http://mf.test");
    }

    #[test]
    fn an_armed_event_rides_in_the_first_writing_batch_only() {
        let w = World::new();
        let record = bare_record("Projects", "Test");
        w.store.arm_audit(&record).expect("arm");
        let before = w.db().round_trips.get();
        block_on(w.store.instance_settings()).expect("a read");
        assert_eq!(w.db().count("SELECT COUNT(*) FROM audit_events"), 0, "a read does not carry it");
        block_on(w.store.put_setting("banner", None::<&String>)).expect("a write");
        assert_eq!(w.db().round_trips.get() - before, 2, "one batch each, none more");
        assert_eq!(w.db().count("SELECT COUNT(*) FROM audit_events"), 1);
        let id = w.db().count("SELECT id FROM audit_events");
        assert_eq!(w.store.disarm_audit(), crate::store::AuditCarry::Carried(Some(id)));
        block_on(w.store.put_setting("banner", None::<&String>)).expect("another write");
        assert_eq!(w.db().count("SELECT COUNT(*) FROM audit_events"), 1, "carried once");
        assert_eq!(w.store.disarm_audit(), crate::store::AuditCarry::NotArmed);
    }

    #[test]
    fn a_provisional_event_goes_in_as_a_failure_until_confirmed() {
        let w = World::new();
        let record = bare_record("Forks", "SetForkSync");
        let event = "SELECT outcome || ' ' || IFNULL(status, '-') FROM audit_events";
        // Made provisional before the write it rides in; a read does not carry it.
        w.store.arm_audit(&record).expect("arm");
        w.store.audit_provisionally(503);
        block_on(w.store.instance_settings()).expect("a read");
        block_on(w.store.put_setting("banner", None::<&String>)).expect("a write");
        assert_eq!(w.db().text(event), "FAILURE 503", "what the request answers if the wait fails");
        let id = w.db().count("SELECT id FROM audit_events");
        assert_eq!(w.store.disarm_audit(), crate::store::AuditCarry::Provisional(Some(id)));
        block_on(w.store.confirm_audit(id)).expect("confirmed");
        assert_eq!(w.db().text(event), "SUCCESS -", "as an event written with its change");
        // Nothing armed: nothing to make provisional.
        w.store.audit_provisionally(503);
        assert_eq!(w.store.disarm_audit(), crate::store::AuditCarry::NotArmed);
    }

    #[test]
    fn a_failed_batch_leaves_neither_change_nor_success_but_a_failure() {
        let w = World::new();
        let id = w.seed_repo();
        let seeded = w.db().count("SELECT COUNT(*) FROM audit_events");
        w.db().execute("CREATE TRIGGER fail_jobs BEFORE INSERT ON jobs BEGIN SELECT RAISE(ABORT, 'injected'); END;");
        let r =
            w.as_admin("POST", &mirrors_path(id), Some(json!({"url": "https://bob:hunter2@e.com/x", "enabled": true})));
        assert_eq!(r.status, 500);
        assert_eq!(r.header("Server-Timing"), Some("audit;desc=\"own write\""));
        w.db().execute("DROP TRIGGER fail_jobs");
        assert_eq!(w.db().count("SELECT COUNT(*) FROM remote_mirrors"), 0);
        assert_eq!(w.db().count("SELECT COUNT(*) FROM audit_events") - seeded, 1, "one event");
        let last = "SELECT {} FROM audit_events ORDER BY id DESC LIMIT 1";
        assert_eq!(w.db().text(&last.replace("{}", "outcome")), "FAILURE");
        assert_eq!(w.db().count(&last.replace("{}", "status")), 500);
        let changed = w.db().text(&last.replace("{}", "changed"));
        assert!(changed.contains("e.com/x") && !changed.contains("hunter2") && !changed.contains("bob"), "{changed}");
    }

    #[test]
    fn refusals_anonymous_writes_and_failed_sign_ins_are_failures() {
        let w = World::new();
        w.add_user("nobody", GlobalRole::User, "mfp_nobody_token_0123456789");
        w.seed_repo();
        let r = w.as_token("mfp_nobody_token_0123456789", "DELETE", "/rest/api/latest/projects/MF", None);
        assert_eq!(r.status, 404, "nobody cannot see the project");
        let r = w.send("POST", "/rest/api/latest/projects", &[("x-forwarded-for", "203.0.113.9, 10.0.0.1")], None);
        assert_eq!(r.status, 401);
        // A wrong token on a read, and a wrong password for a user who has one.
        let r = w.as_admin("POST", "/rest/api/latest/admin/users?name=pw&password=correct-horse", None);
        assert_eq!(r.status, 204, "{}", r.raw);
        assert_eq!(w.send("GET", "/api/v4/user", &[("PRIVATE-TOKEN", "mfp_wrong_token_000000000")], None).status, 401);
        let basic = super::admin::basic("pw", "wrong-password");
        assert_eq!(w.send("GET", "/rest/api/latest/users", &[("Authorization", &basic)], None).status, 401);
        let page = events(&w, "limit=5");
        let e = &page["entities"];
        assert_eq!(e[0]["type"]["action"], "AuthenticationFailed");
        assert_eq!(e[0]["type"]["category"], "Authentication");
        assert_eq!(e[0]["author"]["type"], "anonymous");
        assert_eq!(e[0]["affectedObjects"][0]["id"], "pw");
        assert_eq!(attribute(&e[0], "status").as_deref(), Some("401"));
        assert!(!page.to_string().contains("wrong-password"));
        assert_eq!(e[1]["type"]["action"], "AuthenticationFailed");
        assert_eq!(e[2]["type"]["action"], "CreateUser");
        assert!(!page.to_string().contains("correct-horse"), "passwords are masked");
        assert_eq!(e[3]["author"]["name"], "Anonymous");
        assert_eq!(e[3]["source"], "203.0.113.9");
        assert_eq!(attribute(&e[3], "outcome").as_deref(), Some("FAILURE"));
        assert_eq!(e[4]["author"]["name"], "nobody");
        assert_eq!(attribute(&e[4], "status").as_deref(), Some("404"));
        assert_eq!(e[4]["affectedObjects"][0]["type"], "PROJECT");
    }

    #[test]
    fn node_protocol_and_reads_are_not_recorded() {
        let w = World::new();
        let node = w.as_admin("POST", "/rest/mirrorfarm/latest/nodes", Some(json!({"name": "n1"})));
        let token = node.body["token"].as_str().expect("token").to_owned();
        let before = w.db().count("SELECT COUNT(*) FROM audit_events");
        let beat = w.as_token(&token, "POST", "/rest/mirrorfarm/latest/nodes/heartbeat", Some(json!({})));
        assert_eq!(beat.status, 200);
        assert_eq!(beat.header("Server-Timing"), None);
        assert_eq!(w.as_admin("GET", "/rest/api/latest/projects", None).status, 200);
        assert_eq!(w.db().count("SELECT COUNT(*) FROM audit_events"), before);
    }

    #[test]
    fn filters_paging_and_bad_parameters() {
        let w = World::new();
        w.add_user("reader", GlobalRole::Admin, "mfp_reader_token_0123456789");
        for key in ["PA", "PB", "PC"] {
            assert_eq!(
                w.as_admin("POST", "/rest/api/latest/projects", Some(json!({"key": key, "name": key}))).status,
                201
            );
        }
        assert_eq!(w.as_admin("DELETE", "/rest/api/latest/projects/PB", None).status, 204);
        let all = events(&w, "");
        assert_eq!(all["entities"].as_array().map(Vec::len), Some(4));
        assert_eq!(all["pagingInfo"]["lastPage"], true);
        assert_eq!(all["pagingInfo"]["nextPageOffset"], Value::Null);
        let deleted = events(&w, "actions=DeleteProject");
        assert_eq!(deleted["entities"].as_array().map(Vec::len), Some(1));
        let pb = events(&w, "affectedObject=PROJECT,PB");
        assert_eq!(pb["entities"].as_array().map(Vec::len), Some(1), "creating PB names it in the body only");
        let search = events(&w, "search=pc");
        assert_eq!(search["entities"].as_array().map(Vec::len), Some(1));
        assert_eq!(events(&w, "userIds=1&categories=Projects")["entities"].as_array().map(Vec::len), Some(4));
        assert_eq!(events(&w, "userIds=99")["entities"].as_array().map(Vec::len), Some(0));
        assert_eq!(events(&w, "to=2000-01-01T00:00:00Z")["entities"].as_array().map(Vec::len), Some(0));
        // Paging: by cursor and by offset give the same events, newest first.
        let first = events(&w, "limit=3");
        assert_eq!(first["pagingInfo"]["lastPage"], false);
        assert_eq!(first["pagingInfo"]["nextPageOffset"], 3);
        let cursor = first["pagingInfo"]["nextPageCursor"].as_str().expect("cursor").to_owned();
        assert!(first["pagingInfo"]["nextPageLink"].as_str().is_some_and(|l| l.contains("pageCursor=")));
        let by_cursor = events(&w, &format!("limit=3&pageCursor={}", encode(&cursor)));
        let by_offset = events(&w, "limit=3&offset=3");
        assert_eq!(by_cursor["entities"], by_offset["entities"]);
        assert_eq!(by_cursor["entities"][0]["type"]["action"], "CreateProject");
        assert_eq!(by_cursor["entities"][0]["changedValues"][0]["to"], "PA");
        for (query, context) in [("from=soon", "from"), ("limit=0", "limit"), ("pageCursor=x", "pageCursor")] {
            let r = w.as_admin("GET", &format!("{EVENTS}?{query}"), None);
            assert_eq!(r.status, 400, "{query}");
            assert_eq!(r.body["errors"][0]["context"], context);
        }
        let r = w.as_token("mfp_reader_token_0123456789", "GET", EVENTS, None);
        assert_eq!(r.status, 401, "an ADMIN is not a SYS_ADMIN");
    }

    #[test]
    fn retention_is_a_setting_the_cron_enforces_in_bounded_deletes() {
        let w = World::new();
        let r = w.as_admin("GET", RETENTION, None);
        assert_eq!(r.body, json!({"period": {"years": 0, "months": 0, "days": 90}}));
        let now = 1_578_331_922_823_i64;
        let day = 86_400_000_i64;
        for age in [1, 10, 100, 200] {
            w.db().execute(&format!(
                "INSERT INTO audit_events (at, author_name, author_type, category, action, method, path, outcome, \
                 objects, object_keys, changed) VALUES ({}, 'x', 'user', 'Projects', 'Old', 'POST', '/', 'SUCCESS', \
                 '[]', '', '[]')",
                now - age * day
            ));
        }
        let service = Service::new(&w.store, &w.crypto, &w.config, Timestamp(now));
        assert_eq!(block_on(service.prune_audit_events()).expect("prune"), 2, "older than 90 days");
        let r = w.as_admin("PUT", RETENTION, Some(json!({"period": {"days": 5}})));
        assert_eq!(r.status, 200, "{}", r.raw);
        assert_eq!(r.body, json!({"period": {"years": 0, "months": 0, "days": 5}}));
        let service = Service::new(&w.store, &w.crypto, &w.config, Timestamp(now));
        assert_eq!(block_on(service.prune_audit_events()).expect("prune"), 1, "older than 5 days");
        assert_eq!(w.db().count("SELECT COUNT(*) FROM audit_events WHERE action = 'Old'"), 1);
        block_on(w.store.prune_audit_events(Timestamp(now + day), 1)).expect("bounded");
        assert_eq!(w.db().count("SELECT COUNT(*) FROM audit_events"), 1, "one at most per call here");
        for bad in [json!({}), json!({"period": {"days": 0}}), json!({"period": {"days": -1}}), json!({"period": 3})] {
            let r = w.as_admin("PUT", RETENTION, Some(bad.clone()));
            assert_eq!(r.status, 400, "{bad}");
            assert_eq!(r.body["errors"][0]["context"], "period");
        }
    }

    #[test]
    fn the_retention_review_notification_is_dismissed_per_user() {
        let w = World::new();
        w.add_user("someone", GlobalRole::User, "mfp_someone_token_0123456789");
        let path = "/rest/audit/latest/notification-settings/retention-config-review";
        assert_eq!(w.as_token("mfp_someone_token_0123456789", "DELETE", path, None).status, 204);
        assert_eq!(w.send("DELETE", path, &[], None).status, 401);
        let mine = w.as_token("mfp_someone_token_0123456789", "GET", "/rest/api/latest/users/someone/settings", None);
        assert_eq!(mine.body[RETENTION_REVIEW_DISMISSED], true);
        let admins = w.as_admin("GET", "/rest/api/latest/users/admin/settings", None);
        assert_eq!(admins.body.get(RETENTION_REVIEW_DISMISSED), None);
    }
}
