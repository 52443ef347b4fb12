//! Every write is atomic, route by route: scenarios call the write routes of the route table
//! with valid requests, as the real clients send them, and before each one really runs, run it
//! again and again with the 1st, 2nd, 3rd … of its storage batches failing
//! (`store::faults::Faulty`), until one run meets no fault. Each failed run must answer a clean
//! 5xx in its API's error shape, say nothing of the fault, record no SUCCESS audit event, and
//! leave every table as it was.
//!
//! A request that waits for a farm node after its write (enabling fork sync, MERGE or DISCARD, a
//! test mail) is swept with no node answering (it answers 503 and its work stays queued, as when
//! the nodes are slow) and with a node that answers at once (`World::node_answers`). It is run from
//! the same state each time (the tables restored): a failure before or at its write leaves every
//! table as it was, one after it what the write alone leaves, and one after the node answered
//! what the answered request leaves; in that order, never anything in between, and never a
//! SUCCESS audit event.
//!
//! Last, the write routes of the route table that no scenario reached are listed: they must be
//! exactly [`UNSWEPT`], each with its reason, so a new write route without a sweep fails here.

use std::collections::{BTreeMap, BTreeSet};

use super::*;
use crate::api::routes::{ROUTES, Resolution, resolve};
use crate::store::faults::INJECTED;

const NODE: &str = "/rest/mirrorfarm/latest";
const BB: &str = "/rest/api/latest";
const DEV: &str = "mfp_sweep_dev_token_0123456789";
/// What the service's clock reads (see `World::send`).
const NOW: i64 = 1_578_331_922_823;
const DAY: i64 = 86_400_000;

/// The write routes no scenario runs, each with why.
const UNSWEPT: &[(&str, &str)] = &[(
    "POST /rest/mirrorfarm/latest/jobs/lease",
    "a lease takes several batches by design (the lease, then what the job needs, then the mirror \
     marked started): a failure part-way leaves a lease that expires and returns the job, which is \
     the queue's at-least-once rule (tested with expired leases), not this sweep's all-or-nothing one",
)];

/// Audit events that say SUCCESS.
const SUCCESSES: &str = "SELECT COUNT(*) FROM audit_events WHERE outcome = 'SUCCESS'";

/// Who sends a step.
#[derive(Clone, Copy)]
enum As<'a> {
    Admin,
    Token(&'a str),
    /// No credentials (a webhook delivery proves itself by its signature).
    Nobody,
}

/// A route as the route table names it: `POST /rest/api/latest/projects`.
fn route_key(method: Method, path: &str) -> String {
    format!("{} {path}", format!("{method:?}").to_ascii_uppercase())
}

/// The route a request reaches.
fn route_of(method: &str, target: &str) -> String {
    let (path, _) = target.split_once('?').unwrap_or((target, ""));
    match resolve(Method::parse(method), path) {
        Resolution::Found(r, _, _) => route_key(r.method, r.path),
        _ => panic!("no route for {method} {path}"),
    }
}

/// Route → batches failed in turn, over every scenario.
type Tally = BTreeMap<String, u32>;

struct Sweep<'w> {
    w: &'w World,
    failed: Tally,
}

impl<'w> Sweep<'w> {
    fn new(w: &'w World) -> Self {
        Self { w, failed: Tally::new() }
    }

    /// Adds this scenario's figures to `tally`.
    fn into_tally(self, tally: &mut Tally) {
        for (route, k) in self.failed {
            *tally.entry(route).or_default() += k;
        }
    }

    /// Runs a step once, without faults: set-up, or a route another scenario sweeps.
    fn plain(&self, who: As<'_>, method: &str, target: &str, body: Option<Value>, status: u16) -> Reply {
        let text = body.map(|b| b.to_string());
        let r = send_as(self.w, who, method, target, &[], text.as_deref().map(|b| ("application/json", b)));
        assert_eq!(r.status, status, "{method} {target}: {}", r.raw);
        r
    }

    /// Runs a step of the lease protocol once, without faults (see [`UNSWEPT`]).
    fn unswept(&self, who: As<'_>, method: &str, target: &str, body: Option<Value>, status: u16) -> Reply {
        self.plain(who, method, target, body, status)
    }

    /// Runs one JSON step with each of its batches failing in turn, then for real; returns the
    /// real answer, which must have `status`.
    fn step(&mut self, who: As<'_>, method: &str, target: &str, body: Option<Value>, status: u16) -> Reply {
        let text = body.map(|b| b.to_string());
        self.raw(who, method, target, &[], text.as_deref().map(|b| ("application/json", b)), status)
    }

    /// A step with its own headers and body, swept as [`Sweep::step`].
    fn raw(
        &mut self,
        who: As<'_>,
        method: &str,
        target: &str,
        headers: &[(&str, &str)],
        body: Option<(&str, &str)>,
        status: u16,
    ) -> Reply {
        let w = self.w;
        Self::sweep(w, &mut self.failed, method, target, || send_as(w, who, method, target, headers, body), status)
    }

    /// A multipart step as `who`, with Bitbucket's XSRF header (files in `content` and `avatar`).
    fn multipart(&mut self, who: As<'_>, method: &str, target: &str, fields: &[(&str, &str)], status: u16) -> Reply {
        let mut form = String::new();
        for (name, value) in fields {
            let file = if *name == "content" || *name == "avatar" { "; filename=\"f\"" } else { "" };
            form.push_str(&format!(
                "--sweep\r\nContent-Disposition: form-data; name=\"{name}\"{file}\r\n\r\n{value}\r\n"
            ));
        }
        form.push_str("--sweep--\r\n");
        let headers = [("X-Atlassian-Token", "no-check")];
        self.raw(who, method, target, &headers, Some(("multipart/form-data; boundary=sweep", form.as_str())), status)
    }

    /// Sends `send` with its 1st, 2nd, … batch failing until no fault fires; checks each failure
    /// and counts them for `method target`'s route in `failed`.
    fn sweep(
        w: &World,
        failed: &mut Tally,
        method: &str,
        target: &str,
        send: impl Fn() -> Reply,
        status: u16,
    ) -> Reply {
        let route = route_of(method, target);
        let before = w.db().dump(&["audit_events"]);
        let mut k = 1;
        loop {
            let audited = w.db().count(SUCCESSES);
            w.faults().arm(k);
            let r = send();
            if !w.faults().disarm() {
                expect_status(&route, &r, status);
                *failed.entry(route).or_default() += k - 1;
                return r;
            }
            let at = format!("{route}, batch {k} failed");
            check_failure(w, &at, &r, audited);
            let after = w.db().dump(&["audit_events"]);
            if after != before {
                panic!("{at}: tables changed:\n{}", changes(&before, &after));
            }
            k += 1;
        }
    }

    /// A JSON step whose request waits for a farm node after its write, and no node answers: it
    /// answers 503 and its work stays queued (see [`Sweep::waiting`]).
    fn timed_out(&mut self, who: As<'_>, method: &str, target: &str, body: Option<Value>) -> Reply {
        self.waiting(who, method, target, body, None, 503)
    }

    /// A JSON step whose request waits for a farm node after its write, and the node answers by
    /// doing `work` (the SQL its result amounts to): the request answers `status`.
    fn answered(
        &mut self,
        who: As<'_>,
        method: &str,
        target: &str,
        body: Option<Value>,
        work: &str,
        status: u16,
    ) -> Reply {
        self.waiting(who, method, target, body, Some(work), status)
    }

    /// Sweeps a request that waits for a farm node after its write. Each run starts from the same
    /// state (the tables and the fake crypto's "random" bytes restored), and each failure must
    /// leave the state as it was, or as the write left it when no node answers (the timed-out
    /// answer: the write stands, its work queued), or, once the node answered, as the answered
    /// request leaves it; in that order as the failing batch moves on, and never anything else.
    fn waiting(
        &mut self,
        who: As<'_>,
        method: &str,
        target: &str,
        body: Option<Value>,
        node: Option<&str>,
        status: u16,
    ) -> Reply {
        let w = self.w;
        let route = route_of(method, target);
        let text = body.map(|b| b.to_string());
        let send = || send_as(w, who, method, target, &[], text.as_deref().map(|b| ("application/json", b)));
        let start = w.db().snapshot();
        let drawn = w.crypto.position();
        let from_start = |answers: Option<&str>| {
            w.db().restore(&start);
            w.crypto.rewind(drawn);
            *w.node_answers.borrow_mut() = answers.map(str::to_owned);
        };
        let dump = || w.db().dump(&["audit_events"]);
        // The states a run may leave, in order: as it was; the write alone (no node answers);
        // the write and the node's work (it answered).
        let mut states = vec![dump()];
        from_start(None);
        expect_status(&route, &send(), 503);
        states.push(dump());
        assert_ne!(states[1], states[0], "{route}: the request wrote nothing before it waited");
        if let Some(work) = node {
            from_start(Some(work));
            expect_status(&route, &send(), status);
            states.push(dump());
        }
        let mut reached = 0;
        let mut write = None;
        let mut k = 1;
        loop {
            from_start(node);
            let audited = w.db().count(SUCCESSES);
            w.faults().arm(k);
            let r = send();
            if !w.faults().disarm() {
                *w.node_answers.borrow_mut() = None;
                expect_status(&route, &r, status);
                assert!(states.last() == Some(&dump()), "{route}: run again, it wrote otherwise");
                let write = write.expect("a request that waits reads after its write");
                let how = if node.is_some() { "answered" } else { "timed out" };
                println!("  waits ({how}): {route}: its write is batch {write} of {}", k - 1);
                *self.failed.entry(route).or_default() += k - 1;
                return r;
            }
            let at = format!("{route}, batch {k} failed");
            let after = dump();
            let Some(state) = states.iter().position(|s| *s == after) else {
                panic!("{at}: a half-write:\n{}", changes(&states[0], &after));
            };
            assert!(state >= reached, "{at}: left state {state} after a failure later than one that left {reached}");
            if state > 0 {
                // The first failure that left the write standing came right after it.
                write.get_or_insert(k - 1);
            }
            reached = state;
            check_failure(w, &at, &r, audited);
            k += 1;
        }
    }
}

/// Sends a request as `who`, with `headers` and a body of its content type.
fn send_as(
    w: &World,
    who: As<'_>,
    method: &str,
    target: &str,
    headers: &[(&str, &str)],
    body: Option<(&str, &str)>,
) -> Reply {
    let bearer;
    let mut all: Vec<(&str, &str)> = match who {
        As::Admin => vec![("PRIVATE-TOKEN", ADMIN_TOKEN)],
        As::Token(t) => {
            bearer = format!("Bearer {t}");
            vec![("Authorization", bearer.as_str())]
        }
        As::Nobody => Vec::new(),
    };
    all.extend_from_slice(headers);
    w.send(method, target, &all, body)
}

/// Whether a reply's `Server-Timing` header says `what`.
fn header_says(r: &Reply, what: &str) -> bool {
    r.headers.iter().any(|(k, v)| k == "Server-Timing" && v.contains(what))
}

/// The step's own answer: any success where one is expected (the sweep is about the failures),
/// the exact status otherwise.
fn expect_status(route: &str, r: &Reply, status: u16) {
    let fine = if (200..300).contains(&status) { (200..300).contains(&r.status) } else { r.status == status };
    assert!(fine, "{route} without a fault: expected {status}, got {} {}", r.status, r.raw);
}

/// A failed run's answer: a clean 5xx in the API's error shape, nothing of the fault, no SUCCESS
/// audit event more than the `audited` before it.
fn check_failure(w: &World, at: &str, r: &Reply, audited: i64) {
    // The one batch allowed to fail under a success: the audit event of a call that wrote
    // nothing (a preview), written on its own after the answer was made. The answer stands and
    // says so (`Server-Timing: audit;desc="not written"`); tables are checked by the caller.
    let audit_lost = header_says(r, "audit;desc=\"not written\"");
    if !(audit_lost && r.status < 300) {
        assert!(r.status >= 500, "{at}: answered {} {}", r.status, r.raw);
        let message = r.body["message"].as_str().or_else(|| r.body["errors"][0]["message"].as_str());
        assert!(message.is_some_and(|m| !m.is_empty()), "{at}: not in the API's error shape: {}", r.raw);
    }
    assert!(!r.raw.contains(INJECTED), "{at}: the fault's detail was sent");
    assert_eq!(w.db().count(SUCCESSES), audited, "{at}: a SUCCESS audit event was recorded");
}

/// The first rows of `after` that `before` has not.
fn changes(before: &str, after: &str) -> String {
    let changed: Vec<&str> = after.lines().filter(|l| !before.lines().any(|b| b == *l)).take(5).collect();
    changed.join("\n")
}

fn field<'a>(r: &'a Reply, name: &str) -> &'a Value {
    &r.body[name]
}

/// An id the answer gives as a string or a number, as text.
fn id_text(r: &Reply, name: &str) -> String {
    field(r, name).as_str().map_or_else(|| field(r, name).to_string(), str::to_owned)
}

/// Registers a farm node: its token and id.
fn register_node(s: &Sweep<'_>, name: &str) -> (String, Value) {
    let node = s.plain(As::Admin, "POST", &format!("{NODE}/nodes"), Some(json!({"name": name})), 201);
    (field(&node, "token").as_str().expect("node token").to_owned(), field(&node, "id").clone())
}
/// The instance: projects, repositories, users, keys, grants, mirrors, nodes, upstreams, hook
/// scripts and its administration.
#[allow(clippy::too_many_lines)] // One scenario, read top to bottom.
fn the_instance(tally: &mut Tally) {
    let mut w = World::new();
    w.config.license_public_key = Some(vec![1; 32]);
    let w = w;
    let mut s = Sweep::new(&w);
    let a = As::Admin;
    let bb = BB;

    // Projects, repositories, users, tokens and grants.
    s.step(a, "POST", &format!("{bb}/projects"), Some(json!({"key": "SW", "name": "Sweep"})), 201);
    let repo = s.step(
        a,
        "POST",
        &format!("{bb}/projects/SW/repos"),
        Some(json!({"name": "app", "upstreamUrl": "https://up.example/app.git"})),
        201,
    );
    let id = field(&repo, "id").as_i64().expect("id");
    s.step(a, "POST", &format!("{bb}/projects/SW/repos"), Some(json!({"name": "gone"})), 201);
    s.step(a, "PUT", &format!("{bb}/projects/SW/repos/app"), Some(json!({"description": "swept"})), 200);
    s.step(a, "POST", &format!("{bb}/admin/users?name=dev&displayName=Dev&emailAddress=dev%40example.com"), None, 204);
    s.step(a, "POST", &format!("{bb}/admin/users?name=temp"), None, 204);
    let token = s.step(a, "PUT", "/rest/access-tokens/latest/users/dev", Some(json!({"name": "ci"})), 200);
    let token_id = field(&token, "id").as_str().expect("token id").to_owned();
    let second = s.step(a, "PUT", "/rest/access-tokens/latest/users/dev", Some(json!({"name": "other"})), 200);
    s.step(
        a,
        "DELETE",
        &format!("/rest/access-tokens/latest/users/dev/{}", field(&second, "id").as_str().expect("id")),
        None,
        204,
    );
    w.db().execute(&format!(
        "UPDATE access_tokens SET hash = '{}', lookup = '{}' WHERE id = '{token_id}'",
        block_on(w.crypto.sha256_hex(DEV.as_bytes())).expect("hash"),
        crate::identity::token_lookup_key(DEV)
    ));
    s.step(a, "PUT", &format!("{bb}/projects/SW/permissions/users?name=dev&permission=PROJECT_READ"), None, 204);
    s.step(a, "DELETE", &format!("{bb}/projects/SW/permissions/users?name=dev"), None, 204);
    s.step(
        a,
        "PUT",
        &format!("{bb}/projects/SW/repos/app/permissions/users?name=dev&permission=REPO_WRITE"),
        None,
        204,
    );
    s.step(a, "DELETE", &format!("{bb}/projects/SW/repos/app/permissions/users?name=dev"), None, 204);
    s.step(a, "PUT", &format!("{bb}/admin/permissions/users?name=temp&permission=ADMIN"), None, 204);
    s.step(a, "DELETE", &format!("{bb}/admin/permissions/users?name=temp"), None, 204);
    s.step(
        a,
        "PUT",
        &format!("{bb}/projects/SW/repos/app/permissions/users?name=dev&permission=REPO_ADMIN"),
        None,
        204,
    );
    let dev = As::Token(DEV);
    s.step(dev, "PUT", &format!("{bb}/users"), Some(json!({"displayName": "Developer"})), 200);
    s.step(
        a,
        "PUT",
        &format!("{bb}/users/credentials"),
        Some(json!({"password": "a-new-password", "passwordConfirm": "a-new-password"})),
        204,
    );
    s.step(dev, "POST", &format!("{bb}/users/dev/settings"), Some(json!({"mirrorfarm.notify.failures": false})), 204);

    // SSH keys through both APIs, an avatar (multipart, a GIF) and a license.
    let key = crate::ssh::PublicKey::ed25519(&[9; 32], Some("dev@laptop")).to_openssh();
    let added = s.step(dev, "POST", "/rest/ssh/1.0/keys", Some(json!({"text": key, "label": "laptop"})), 200);
    s.step(dev, "DELETE", &format!("/rest/ssh/1.0/keys/{}", field(&added, "id")), None, 204);
    let added = s.step(dev, "POST", "/api/v4/user/keys", Some(json!({"title": "ci", "key": key})), 201);
    s.step(dev, "DELETE", &format!("/api/v4/user/keys/{}", field(&added, "id")), None, 204);
    let gif = "GIF89a\u{1}\0\u{1}\0\0\0\0;";
    s.multipart(dev, "POST", &format!("{bb}/users/dev/avatar.png"), &[("avatar", gif)], 201);
    s.step(a, "DELETE", &format!("{bb}/users/dev/avatar.png"), None, 200);
    let license = crate::admin::license::tests::license(-1, NOW + 365 * DAY);
    s.step(a, "POST", &format!("{bb}/admin/license"), Some(json!({"license": license})), 200);

    // Groups and their grants.
    s.step(a, "POST", &format!("{bb}/admin/groups?name=devs"), None, 200);
    s.step(a, "POST", &format!("{bb}/admin/groups?name=old"), None, 200);
    s.step(
        a,
        "POST",
        &format!("{bb}/admin/groups/add-users"),
        Some(json!({"group": "devs", "users": ["dev", "temp"]})),
        200,
    );
    s.step(a, "POST", &format!("{bb}/admin/users/add-groups"), Some(json!({"user": "temp", "groups": ["old"]})), 200);
    s.step(
        a,
        "POST",
        &format!("{bb}/admin/groups/remove-user"),
        Some(json!({"context": "devs", "itemName": "temp"})),
        200,
    );
    s.step(
        a,
        "POST",
        &format!("{bb}/admin/users/remove-group"),
        Some(json!({"context": "temp", "itemName": "old"})),
        200,
    );
    s.step(a, "PUT", &format!("{bb}/projects/SW/permissions/groups?name=devs&permission=PROJECT_WRITE"), None, 204);
    s.step(a, "DELETE", &format!("{bb}/projects/SW/permissions/groups?name=devs"), None, 204);
    s.step(
        a,
        "PUT",
        &format!("{bb}/projects/SW/repos/app/permissions/groups?name=devs&permission=REPO_READ"),
        None,
        204,
    );
    s.step(a, "DELETE", &format!("{bb}/projects/SW/repos/app/permissions/groups?name=devs"), None, 204);
    s.step(a, "DELETE", &format!("{bb}/admin/groups?name=old"), None, 200);
    s.step(a, "DELETE", &format!("{bb}/admin/users?name=temp"), None, 200);

    // GitLab: remote and pull mirrors, protected branches, the Projects API.
    let gl = format!("/api/v4/projects/{id}");
    let mirror = s.step(
        a,
        "POST",
        &format!("{gl}/remote_mirrors"),
        Some(json!({"url": "https://bot:pw@mirror.example/a.git", "enabled": true})),
        201,
    );
    let mirror_id = field(&mirror, "id").as_i64().expect("mirror id");
    s.step(a, "PUT", &format!("{gl}/remote_mirrors/{mirror_id}"), Some(json!({"keep_divergent_refs": true})), 200);
    s.step(a, "POST", &format!("{gl}/remote_mirrors/{mirror_id}/sync"), None, 204);
    let doomed =
        s.step(a, "POST", &format!("{gl}/remote_mirrors"), Some(json!({"url": "https://mirror.example/b.git"})), 201);
    s.step(a, "DELETE", &format!("{gl}/remote_mirrors/{}", field(&doomed, "id")), None, 204);
    s.step(
        a,
        "PUT",
        &format!("{gl}/mirror/pull"),
        Some(json!({"enabled": true, "only_mirror_protected_branches": true})),
        200,
    );
    s.step(a, "POST", &format!("{gl}/mirror/pull"), None, 200);
    s.step(a, "POST", &format!("{gl}/protected_branches"), Some(json!({"name": "release/*"})), 201);
    s.step(a, "POST", &format!("{gl}/protected_branches"), Some(json!({"name": "hotfix"})), 201);
    s.step(a, "DELETE", &format!("{gl}/protected_branches/hotfix"), None, 204);
    s.step(a, "PUT", &gl, Some(json!({"mirror_overwrites_diverged_branches": true})), 200);

    // Our own repository routes: sync, webhook (a push delivered, signed as GitHub signs it).
    s.step(a, "POST", &format!("{NODE}/repos/{id}/sync"), None, 202);
    let hook = s.step(a, "PUT", &format!("{NODE}/repos/{id}/webhook"), None, 200);
    let secret = field(&hook, "secret").as_str().expect("secret").to_owned();
    let push = r#"{"ref":"refs/heads/main"}"#;
    let signature = block_on(w.crypto.hmac_sha256_hex(secret.as_bytes(), push.as_bytes())).expect("hmac");
    let signature = format!("sha256={signature}");
    let signed = [("X-GitHub-Event", "push"), ("X-Hub-Signature-256", signature.as_str())];
    let delivery = format!("{NODE}/repos/{id}/webhook");
    s.raw(As::Nobody, "POST", &delivery, &signed, Some(("application/json", push)), 202);
    s.step(a, "DELETE", &format!("{NODE}/repos/{id}/webhook"), None, 204);

    // Labels, forks.
    s.step(a, "POST", &format!("{bb}/projects/SW/repos/app/labels"), Some(json!({"name": "team-a"})), 200);
    s.step(a, "POST", &format!("{bb}/projects/SW/repos/app/labels"), Some(json!({"name": "team-b"})), 200);
    s.step(a, "DELETE", &format!("{bb}/projects/SW/repos/app/labels/team-b"), None, 204);
    s.step(
        a,
        "POST",
        &format!("{bb}/projects/SW/repos/app"),
        Some(json!({"name": "fork", "project": {"key": "SW"}, "url": "https://git.example/fork.git"})),
        201,
    );
    s.step(a, "DELETE", &format!("{bb}/projects/SW/repos/gone"), None, 202);

    // Instance administration.
    s.step(
        a,
        "PUT",
        &format!("{bb}/admin/banner"),
        Some(json!({"message": "maintenance", "enabled": true, "audience": "ALL"})),
        200,
    );
    s.step(a, "DELETE", &format!("{bb}/admin/banner"), None, 204);
    s.step(a, "PUT", &format!("{bb}/admin/default-branch"), Some(json!({"id": "refs/heads/trunk"})), 204);
    s.step(a, "DELETE", &format!("{bb}/admin/default-branch"), None, 204);
    s.step(a, "PUT", "/rest/policies/latest/admin/repos/delete", Some(json!({"permission": "SYS_ADMIN"})), 200);
    s.step(a, "PUT", "/rest/policies/latest/admin/repos/archive", Some(json!({"permission": "REPO_ADMIN"})), 200);
    s.step(a, "PUT", &format!("{bb}/admin/rate-limit/settings"), Some(json!({"enabled": false})), 200);
    s.step(
        a,
        "PUT",
        &format!("{bb}/admin/rate-limit/settings/users/dev"),
        Some(json!({"settings": {"capacity": 100, "fillRate": 10}})),
        200,
    );
    s.step(a, "DELETE", &format!("{bb}/admin/rate-limit/settings/users/dev"), None, 204);
    let bucket = json!({"usernames": ["dev"], "settings": {"capacity": 50, "fillRate": 5}});
    s.step(a, "POST", &format!("{bb}/admin/rate-limit/settings/users"), Some(bucket), 200);
    s.step(dev, "DELETE", "/rest/audit/latest/notification-settings/retention-config-review", None, 204);
    s.step(a, "PUT", &format!("{bb}/logs/logger/mirrorfarm.sweep/debug"), None, 204);
    s.step(a, "PUT", &format!("{bb}/logs/rootLogger/warn"), None, 204);
    s.step(
        a,
        "PUT",
        &format!("{bb}/admin/mail-server"),
        Some(
            json!({"hostname": "smtp.example.com", "port": 25, "protocol": "SMTP", "sender-address": "mf@example.com"}),
        ),
        200,
    );
    s.step(a, "PUT", &format!("{bb}/admin/mail-server/sender-address"), Some(json!("farm@example.com")), 200);
    s.step(a, "DELETE", &format!("{bb}/admin/mail-server/sender-address"), None, 204);
    s.step(a, "PUT", &format!("{NODE}/admin/notifications"), Some(json!({"failureThreshold": 2})), 200);
    s.step(a, "DELETE", &format!("{bb}/admin/mail-server"), None, 204);

    // Farm nodes and the mirror farm's upstreams.
    let node = s.step(a, "POST", &format!("{NODE}/nodes"), Some(json!({"name": "sweep-node"})), 201);
    let node_token = field(&node, "token").as_str().expect("node token").to_owned();
    let n = As::Token(&node_token);
    s.step(n, "POST", &format!("{NODE}/nodes/heartbeat"), Some(json!({"cloneUrl": "http://127.0.0.1:9"})), 200);
    let leased = s.unswept(n, "POST", &format!("{NODE}/jobs/lease"), Some(json!({"leaseSeconds": 60})), 200);
    let (job, lease) = (field(&leased, "id").clone(), field(&leased, "leaseId").clone());
    s.step(n, "POST", &format!("{NODE}/jobs/{job}/renew"), Some(json!({"leaseId": lease, "leaseSeconds": 60})), 200);
    s.step(
        n,
        "POST",
        &format!("{NODE}/jobs/{job}/result"),
        Some(json!({"leaseId": lease, "outcome": "pushed", "message": "", "contentHash": "abc"})),
        200,
    );
    let leased = s.unswept(n, "POST", &format!("{NODE}/jobs/lease"), Some(json!({"leaseSeconds": 60})), 200);
    let (job, lease) = (field(&leased, "id").clone(), field(&leased, "leaseId").clone());
    s.step(n, "POST", &format!("{NODE}/jobs/{job}/release"), Some(json!({"leaseId": lease})), 204);
    s.step(n, "POST", &format!("{NODE}/nodes/copies"), Some(json!({"repositoryIds": [id]})), 200);
    let asked = json!({"projectKey": "SW", "slug": "app", "authorization": format!("Bearer {DEV}")});
    s.step(n, "POST", &format!("{NODE}/nodes/clone-access"), Some(asked), 200);
    let up = s.step(
        a,
        "POST",
        &format!("{NODE}/upstreamServers"),
        Some(json!({"baseUrl": "https://bb.example", "type": "bitbucket"})),
        201,
    );
    let up_id = id_text(&up, "id");
    let ups = format!("/rest/mirroring/latest/upstreamServers/{up_id}");
    s.step(a, "PUT", &format!("{ups}/settings"), Some(json!({"mode": "SELECTED_PROJECTS"})), 200);
    s.step(a, "PUT", &format!("{ups}/settings/mode"), Some(json!("ALL_PROJECTS")), 200);
    s.step(a, "POST", &format!("{ups}/settings/projects"), Some(json!(["7", "8"])), 200);
    s.step(a, "POST", &format!("{ups}/settings/projects/9"), None, 200);
    s.step(a, "DELETE", &format!("{ups}/settings/projects/9"), None, 204);
    s.step(a, "DELETE", &format!("{ups}/settings/projects"), Some(json!(["8"])), 204);
    let sync = "/rest/mirroring/latest/syncSettings";
    s.step(a, "PUT", sync, Some(json!({"mode": "SELECTED_PROJECTS"})), 200);
    s.step(a, "PUT", &format!("{sync}/mode"), Some(json!("SELECTED_PROJECTS")), 200);
    s.step(a, "POST", &format!("{sync}/projects"), Some(json!(["5"])), 200);
    s.step(a, "POST", &format!("{sync}/projects/6"), None, 200);
    s.step(a, "DELETE", &format!("{sync}/projects/6"), None, 204);
    s.step(a, "DELETE", &format!("{NODE}/upstreamServers/{up_id}"), None, 204);

    // Hook scripts: uploaded (multipart), changed, attached to a project and a repository, removed.
    let hook = s.multipart(
        a,
        "POST",
        &format!("{bb}/hook-scripts"),
        &[("content", "#!/bin/sh\nexit 0\n"), ("name", "ok"), ("type", "PRE")],
        200,
    );
    let hook_id = field(&hook, "id").to_string();
    s.multipart(a, "PUT", &format!("{bb}/hook-scripts/{hook_id}"), &[("description", "passes")], 200);
    let attach = json!({"triggerIds": ["repo-push"]});
    s.step(a, "PUT", &format!("{bb}/projects/SW/hook-scripts/{hook_id}"), Some(attach.clone()), 200);
    s.step(a, "PUT", &format!("{bb}/projects/SW/repos/app/hook-scripts/{hook_id}"), Some(attach), 200);
    s.step(a, "DELETE", &format!("{bb}/projects/SW/repos/app/hook-scripts/{hook_id}"), None, 204);
    s.step(a, "DELETE", &format!("{bb}/projects/SW/hook-scripts/{hook_id}"), None, 204);
    s.step(a, "DELETE", &format!("{bb}/hook-scripts/{hook_id}"), None, 204);

    // Audit retention, Mesh nodes.
    s.step(
        a,
        "PUT",
        "/rest/auditing/latest/configuration/retention",
        Some(json!({"period": {"years": 1, "months": 0, "days": 0}})),
        200,
    );
    let mesh = s.step(
        a,
        "POST",
        &format!("{bb}/admin/git/mesh/nodes"),
        Some(json!({"name": "mesh-2", "rpcUrl": "http://127.0.0.1:9"})),
        201,
    );
    let mesh_id = id_text(&mesh, "id");
    s.step(a, "PUT", &format!("{bb}/admin/git/mesh/nodes/{mesh_id}"), Some(json!({"name": "mesh-two"})), 200);
    s.step(a, "DELETE", &format!("{bb}/admin/git/mesh/nodes/{mesh_id}"), None, 204);

    // Migration: an export (its job waits for a node), its preview and its cancel.
    let everything = json!({"repositoriesRequest": {"includes": [{"projectKey": "*", "slug": "*"}]}});
    s.step(a, "POST", &format!("{bb}/migration/exports/preview"), Some(everything.clone()), 200);
    let export = s.step(a, "POST", &format!("{bb}/migration/exports"), Some(everything), 200);
    s.step(a, "POST", &format!("{bb}/migration/exports/{}/cancel", field(&export, "id")), None, 204);

    // Last: an empty project goes.
    s.step(a, "POST", &format!("{bb}/projects"), Some(json!({"key": "EMPTY", "name": "Empty"})), 201);
    s.step(a, "DELETE", &format!("{bb}/projects/EMPTY"), None, 204);
    s.into_tally(tally);
}

/// The mirror farm: one of an upstream's repositories, synchronized now (and afresh).
fn the_farm(tally: &mut Tally) {
    let w = World::new();
    let mut s = Sweep::new(&w);
    let (token, _) = register_node(&s, "farm-node");
    let n = As::Token(&token);
    let up = json!({"baseUrl": "https://bb.example", "type": "bitbucket"});
    let up = s.plain(As::Admin, "POST", &format!("{NODE}/upstreamServers"), Some(up), 201);
    let job = s.unswept(n, "POST", &format!("{NODE}/jobs/lease"), Some(json!({"leaseSeconds": 60})), 200);
    assert_eq!(field(&job, "kind"), "DISCOVER", "{}", job.raw);
    let listed = json!({
        "projectId": "1", "projectKey": "P1", "projectName": "Project 1", "repoId": "10", "slug": "repo-10",
        "name": "Repo 10", "cloneUrl": "https://bb.example/scm/p1/repo-10.git",
    });
    let report = json!({"leaseId": field(&job, "leaseId"), "outcome": "pushed", "discovered": [listed]});
    s.plain(n, "POST", &format!("{NODE}/jobs/{}/result", field(&job, "id")), Some(report), 200);
    let repo = format!("/rest/mirroring/latest/upstreamServers/{}/repos/10/synchronization", id_text(&up, "id"));
    s.step(As::Admin, "POST", &repo, None, 202);
    s.step(As::Admin, "POST", &format!("{repo}?recreate=true"), None, 202);
    // A poll by refs of an upstream that publishes no content hashes: its report queues the pull
    // of the repository whose fingerprint moved.
    w.db().execute("DELETE FROM jobs; UPDATE upstream_servers SET publishes_hashes = 0");
    let later = Service::new(&w.store, &w.crypto, &w.config, Timestamp(1_578_331_922_823 + 400_000));
    assert_eq!(block_on(later.schedule_polls()).expect("cron"), 1);
    let job = s.unswept(n, "POST", &format!("{NODE}/jobs/lease"), Some(json!({"leaseSeconds": 60})), 200);
    let polled = field(&job, "refPoll").as_array().map(|t| t.len());
    assert_eq!((field(&job, "kind").as_str(), polled), (Some("UPSTREAM_POLL"), Some(1)), "{}", job.raw);
    let moved = json!([{"repositoryId": field(&job, "refPoll")[0]["repositoryId"], "fingerprint": "ab".repeat(32)}]);
    let report = json!({"leaseId": field(&job, "leaseId"), "outcome": "pushed", "polledRefs": moved});
    s.step(n, "POST", &format!("{NODE}/jobs/{}/result", field(&job, "id")), Some(report), 200);
    assert_eq!(w.db().count("SELECT COUNT(*) FROM jobs WHERE kind = 'PULL_MIRROR' AND state = 'QUEUED'"), 1);
    s.into_tally(tally);
}

/// An export and an import as a farm node runs them, a support zip it builds, and a Mesh
/// migration of the copy it imported.
fn migrations_and_support_zips(tally: &mut Tally) {
    let w = World::new();
    w.seed_repo();
    let mut s = Sweep::new(&w);
    let a = As::Admin;
    let (token, node_id) = register_node(&s, "n1");
    let n = As::Token(&token);
    let lease = format!("{NODE}/jobs/lease");

    // An export: the node uploads its archive and reports its progress to the end.
    let everything = json!({"repositoriesRequest": {"includes": [{"projectKey": "*", "slug": "*"}]}});
    let export = s.plain(a, "POST", &format!("{BB}/migration/exports"), Some(everything), 200);
    let leased = s.unswept(n, "POST", &lease, None, 200);
    assert_eq!(field(&leased, "kind"), "MIGRATION_EXPORT", "{}", leased.raw);
    let job = format!("{NODE}/nodes/migration/{}", field(&export, "id"));
    s.step(n, "PUT", &format!("{job}/archive"), None, 204);
    s.step(n, "POST", &format!("{job}/progress"), Some(json!({"percentage": 50, "message": "1 of 1"})), 200);
    let done = json!({"state": "COMPLETED", "percentage": 100, "archiveWritten": true,
        "messages": [{"severity": "INFO", "subject": "MF/repo", "text": "bundled"}]});
    s.step(n, "POST", &format!("{job}/progress"), Some(done), 200);

    // An import: one repository created whole, then the import cancelled.
    block_on(w.blobs.put("migration/import/a.tar", b"tar".to_vec(), "application/x-tar")).expect("put");
    let import = s.step(a, "POST", &format!("{BB}/migration/imports"), Some(json!({"archivePath": "a.tar"})), 200);
    let import_id = field(&import, "id").clone();
    let leased = s.unswept(n, "POST", &lease, None, 200);
    assert_eq!(field(&leased, "kind"), "MIGRATION_IMPORT", "{}", leased.raw);
    let job = format!("{NODE}/nodes/migration/{import_id}");
    let imported = json!({
        "project": {"key": "NEW", "name": "New", "grants": []},
        "repository": {"projectKey": "NEW", "slug": "fresh", "name": "fresh", "defaultBranch": "main",
                       "labels": ["imported"], "grants": [], "upstreamUrl": "https://example.com/x.git",
                       "pullMirror": {"enabled": true, "onlyProtectedBranches": false, "overwriteDivergedBranches": true}},
        "contentHash": "ab".repeat(32), "percentage": 50,
    });
    let created = s.step(n, "POST", &format!("{job}/repositories"), Some(imported), 200);
    assert_eq!(field(&created, "outcome"), "CREATED", "{}", created.raw);
    let imported_id = field(&created, "repositoryId").clone();
    s.step(a, "POST", &format!("{BB}/migration/imports/{import_id}/cancel"), None, 204);
    s.step(n, "POST", &format!("{job}/progress"), Some(json!({"state": "CANCELED"})), 200);

    // A support zip: asked for (the request waits for the node: here it answers 503), then built
    // and uploaded by the node.
    s.plain(n, "POST", &format!("{NODE}/nodes/heartbeat"), Some(json!({"cloneUrl": "http://127.0.0.1:9"})), 200);
    s.plain(a, "GET", &format!("{BB}/admin/git/mesh/support-zips/{node_id}"), None, 503);
    let leased = s.unswept(n, "POST", &lease, None, 200);
    let zip_id = leased.body["supportZip"]["id"].as_i64().expect("a support zip to build");
    let zip = format!("PK\u{5}\u{6}{}", "\0".repeat(18));
    let upload = format!("{NODE}/nodes/support-zips/{zip_id}");
    s.raw(n, "PUT", &upload, &[], Some(("application/zip", zip.as_str())), 204);

    // A Mesh migration: the imported repository's copy (on n1, which imported it) moved to n2.
    let (second, second_id) = register_node(&s, "n2");
    let beat = json!({"cloneUrl": "http://127.0.0.1:10"});
    s.plain(As::Token(&second), "POST", &format!("{NODE}/nodes/heartbeat"), Some(beat), 200);
    let moves = json!({"repositoryIds": [imported_id], "nodeIds": [second_id]});
    s.step(a, "POST", &format!("{BB}/migration/mesh/preview"), Some(moves.clone()), 200);
    let moving = s.step(a, "POST", &format!("{BB}/migration/mesh"), Some(moves), 200);
    assert_eq!(field(&moving, "state"), "RUNNING", "a move queued: {}", moving.raw);
    s.step(a, "POST", &format!("{BB}/migration/mesh/{}/cancel", id_text(&moving, "id")), None, 204);
    s.into_tally(tally);
}

/// Requests that wait for a farm node after their write: fork sync switched on, a MERGE, a test
/// mail, each with no node answering and with one that does (see [`Sweep::waiting`]).
fn requests_that_wait_for_a_node(tally: &mut Tally) {
    let w = World::new();
    let mut s = Sweep::new(&w);
    let a = As::Admin;
    s.plain(a, "POST", &format!("{BB}/projects"), Some(json!({"key": "MF", "name": "Mirror Farm"})), 201);
    let origin = json!({"name": "Origin", "upstreamUrl": "https://up.example/origin.git"});
    s.plain(a, "POST", &format!("{BB}/projects/MF/repos"), Some(origin), 201);
    let fork = json!({"name": "Fork", "project": {"key": "MF"}, "url": "https://git.example/fork.git"});
    s.plain(a, "POST", &format!("{BB}/projects/MF/repos/origin"), Some(fork), 201);
    w.add_user("dev", GlobalRole::User, DEV);
    let grant = format!("{BB}/projects/MF/repos/fork/permissions/users?name=dev&permission=REPO_WRITE");
    s.plain(a, "PUT", &grant, None, 204);
    let (token, _) = register_node(&s, "node-1");
    let n = As::Token(&token);
    let sync = "/rest/sync/latest/projects/MF/repos/fork";

    // Fork sync switched on: a sync queued ahead of routine work, and waited for, in vain.
    s.timed_out(a, "POST", sync, Some(json!({"enabled": true})));
    // The node syncs the fork and finds a branch diverged; the developer merges it, and the
    // node does it while the request waits (or not).
    let job = s.unswept(n, "POST", &format!("{NODE}/jobs/lease"), Some(json!({"leaseSeconds": 60})), 200);
    assert_eq!(field(&job, "kind"), "FORK_SYNC", "{}", job.raw);
    let report = json!({"leaseId": field(&job, "leaseId"), "outcome": "pushed",
        "forkRefs": [{"id": "refs/heads/feature", "state": "DIVERGED"}]});
    s.plain(n, "POST", &format!("{NODE}/jobs/{}/result", field(&job, "id")), Some(report), 200);
    let merge = json!({"refId": "refs/heads/feature", "action": "MERGE", "context": {"commitMessage": "Catch up"}});
    let synchronize = format!("{sync}/synchronize");
    s.timed_out(As::Token(DEV), "POST", &synchronize, Some(merge.clone()));
    let synced = "UPDATE jobs SET state = 'DONE', outcome = 'pushed', finished_at = 1 \
                  WHERE kind = 'FORK_SYNC' AND state IN ('QUEUED', 'LEASED')";
    s.answered(As::Token(DEV), "POST", &synchronize, Some(merge), synced, 200);
    // Switched off, and on again with a node that syncs it in time.
    s.plain(a, "POST", sync, Some(json!({"enabled": false})), 204);
    s.answered(a, "POST", sync, Some(json!({"enabled": true})), synced, 200);

    // A test mail through the configured server, sent by a node or not.
    let server =
        json!({"hostname": "smtp.example.com", "port": 25, "protocol": "SMTP", "sender-address": "mf@example.com"});
    s.plain(a, "PUT", &format!("{BB}/admin/mail-server"), Some(server), 200);
    let test = format!("{NODE}/admin/mail-server/test");
    s.timed_out(a, "POST", &test, Some(json!({"to": "ops@example.com"})));
    let sent = "UPDATE jobs SET state = 'DONE', outcome = 'pushed', message = '250 2.0.0 Ok', finished_at = 1 \
                WHERE kind = 'SEND_MAIL' AND state = 'QUEUED'";
    let mail = s.answered(a, "POST", &test, Some(json!({"to": "ops@example.com"})), sent, 200);
    assert_eq!((field(&mail, "sent").as_bool(), field(&mail, "response").as_str()), (Some(true), Some("250 2.0.0 Ok")));
    s.into_tally(tally);
}

#[test]
fn every_write_route_is_atomic_under_a_failure_at_each_of_its_batches() {
    let mut tally = Tally::new();
    the_instance(&mut tally);
    the_farm(&mut tally);
    migrations_and_support_zips(&mut tally);
    requests_that_wait_for_a_node(&mut tally);

    // What was swept, and what not: exactly the routes of UNSWEPT.
    let writes: BTreeSet<String> =
        ROUTES.iter().filter(|r| r.method != Method::Get).map(|r| route_key(r.method, r.path)).collect();
    let reads: Vec<&String> = tally.keys().filter(|r| !writes.contains(*r)).collect();
    assert!(reads.is_empty(), "swept as writes, but not write routes: {reads:?}");
    let idle: Vec<&String> = tally.iter().filter(|(_, k)| **k == 0).map(|(r, _)| r).collect();
    assert!(idle.is_empty(), "swept without a batch to fail: {idle:?}");
    let batches: u32 = tally.values().sum();
    println!(
        "fault sweep: {} write routes in the route table, {} swept, {batches} batches failed in turn, every one clean and atomic",
        writes.len(),
        tally.len()
    );
    for (route, k) in &tally {
        println!("  {k:>2} failed batches  {route}");
    }
    let unswept: BTreeSet<&str> = writes.iter().filter(|r| !tally.contains_key(*r)).map(String::as_str).collect();
    println!("not swept ({}):", unswept.len());
    for route in &unswept {
        let why = UNSWEPT.iter().find(|(r, _)| r == route).map_or("NO REASON GIVEN", |(_, why)| why);
        println!("  {route}: {why}");
    }
    let allowed: BTreeSet<&str> = UNSWEPT.iter().map(|(r, _)| *r).collect();
    assert_eq!(
        unswept, allowed,
        "the write routes left unswept must be exactly UNSWEPT: sweep a new one, or say why not"
    );
    // A floor, so a route the scenarios stop reaching is noticed even if UNSWEPT grows with it.
    assert!(tally.len() >= 116, "the sweep covers {} write routes", tally.len());
}
