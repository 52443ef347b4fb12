//! Groups, personal projects and forks, protected branches, pull mirrors through the Projects
//! API, and the seed's tighter rules: through the service, on real SQLite.

use super::*;

const ALICE: &str = "mfp_alice_token_0123456789";
const BOB: &str = "mfp_bobby_token_0123456789";
const NODE: &str = "/rest/mirrorfarm/latest";
const REPO: &str = "/rest/api/latest/projects/MF/repos/repo";

/// Project MF with `repo`, and users alice and bob with no grants.
fn seed() -> World {
    let w = World::new();
    w.seed_repo();
    w.add_user("alice", GlobalRole::User, ALICE);
    w.add_user("bob", GlobalRole::User, BOB);
    w
}

fn ok(r: &Reply, status: u16) {
    assert_eq!(r.status, status, "{}", r.raw);
}

fn names(r: &Reply) -> Vec<String> {
    r.body["values"]
        .as_array()
        .expect("a page")
        .iter()
        .map(|v| v["name"].as_str().or_else(|| v["group"]["name"].as_str()).expect("name").to_owned())
        .collect()
}

#[test]
fn a_group_grant_gives_its_members_access_and_taking_them_out_takes_it_away() {
    let w = seed();
    // Alice sees nothing yet: Bitbucket hides what one may not read.
    ok(&w.as_token(ALICE, "GET", REPO, None), 404);
    ok(&w.as_admin("POST", "/rest/api/latest/admin/groups?name=devs", None), 200);
    ok(&w.as_admin("POST", "/rest/api/latest/admin/groups?name=DEVS", None), 409);
    let add = json!({"group": "devs", "users": ["alice", "bob"]});
    ok(&w.as_admin("POST", "/rest/api/latest/admin/groups/add-users", Some(add)), 200);
    ok(&w.as_admin("PUT", &format!("{REPO}/permissions/groups?name=devs&permission=REPO_ADMIN"), None), 204);
    // Read and administer through the group, in as many round trips as a direct grant takes: the
    // group's grants are read in the same statement as the user's own.
    w.add_user("carol", GlobalRole::User, "mfp_carol_token_0123456789");
    ok(&w.as_admin("PUT", &format!("{REPO}/permissions/users?name=carol&permission=REPO_WRITE"), None), 204);
    let trips = |token: &str| {
        let before = w.db().round_trips.get();
        ok(&w.as_token(token, "GET", REPO, None), 200);
        w.db().round_trips.get() - before
    };
    assert_eq!(trips(ALICE), trips("mfp_carol_token_0123456789"), "a group grant costs no extra round trip");
    ok(&w.as_token(ALICE, "POST", "/rest/mirrorfarm/latest/repos/MF%2Frepo/sync", None), 202);
    ok(&w.as_token(ALICE, "GET", &format!("{REPO}/permissions/groups"), None), 200);
    // Lowered to WRITE: not admin any more (Bitbucket's 401 to a signed-in caller).
    ok(&w.as_admin("PUT", &format!("{REPO}/permissions/groups?name=devs&permission=REPO_WRITE"), None), 204);
    ok(&w.as_token(ALICE, "GET", &format!("{REPO}/permissions/groups"), None), 401);
    let grants = w.as_admin("GET", &format!("{REPO}/permissions/groups"), None);
    ok(&grants, 200);
    assert_eq!(grants.body["values"][0], json!({"group": {"name": "devs"}, "permission": "REPO_WRITE"}));
    // Out of the group, out of the repository.
    let remove = json!({"context": "devs", "itemName": "alice"});
    ok(&w.as_admin("POST", "/rest/api/latest/admin/groups/remove-user", Some(remove)), 200);
    ok(&w.as_token(ALICE, "GET", REPO, None), 404);
    ok(&w.as_token(BOB, "GET", REPO, None), 200);
    // A project grant to the group reaches every repository in it; deleting the group ends it.
    ok(&w.as_admin("DELETE", &format!("{REPO}/permissions/groups?name=devs"), None), 204);
    ok(&w.as_token(BOB, "GET", REPO, None), 404);
    let grant = "/rest/api/latest/projects/MF/permissions/groups?name=devs&permission=PROJECT_ADMIN";
    ok(&w.as_admin("PUT", grant, None), 204);
    ok(&w.as_token(BOB, "DELETE", &format!("{REPO}/labels/none"), None), 404);
    ok(&w.as_token(BOB, "GET", &format!("{REPO}/permissions/groups"), None), 200);
    let deleted = w.as_admin("DELETE", "/rest/api/latest/admin/groups?name=devs", None);
    assert_eq!(deleted.body, json!({"name": "devs", "deletable": true}));
    ok(&w.as_token(BOB, "GET", REPO, None), 404);
    assert_eq!(w.db().count("SELECT COUNT(*) FROM project_group_grants"), 0, "the grant went with the group");
}

#[test]
fn group_routes_refuse_what_bitbucket_refuses() {
    let w = seed();
    ok(&w.as_admin("POST", "/rest/api/latest/admin/groups?name=%20", None), 400);
    ok(&w.as_token(ALICE, "POST", "/rest/api/latest/admin/groups?name=x", None), 401);
    ok(&w.as_admin("DELETE", "/rest/api/latest/admin/groups?name=ghost", None), 404);
    ok(&w.as_admin("POST", "/rest/api/latest/admin/groups?name=devs", None), 200);
    let unknown_user = json!({"group": "devs", "users": ["alice", "nobody"]});
    let r = w.as_admin("POST", "/rest/api/latest/admin/groups/add-users", Some(unknown_user));
    ok(&r, 404);
    assert_eq!(w.db().count("SELECT COUNT(*) FROM group_members"), 0, "nobody was added: all or nothing");
    ok(&w.as_admin("POST", "/rest/api/latest/admin/groups/add-users", Some(json!({"group": "devs"}))), 400);
    let r = w.as_admin("PUT", &format!("{REPO}/permissions/groups?name=devs&permission=PROJECT_READ"), None);
    assert_eq!((r.status, r.body["errors"][0]["context"].as_str()), (400, Some("permission")));
    ok(&w.as_admin("PUT", &format!("{REPO}/permissions/groups?name=ghost&permission=REPO_READ"), None), 404);
    ok(&w.as_admin("GET", "/rest/api/latest/admin/groups/more-members?context=ghost", None), 404);
}

#[test]
fn users_filter_by_group_and_by_numbered_permissions_through_any_grant() {
    let w = seed();
    w.add_user("carol", GlobalRole::User, "mfp_carol_token_0123456789");
    ok(&w.as_admin("POST", "/rest/api/latest/admin/groups?name=devs", None), 200);
    ok(
        &w.as_admin(
            "POST",
            "/rest/api/latest/admin/users/add-groups",
            Some(json!({"user": "bob", "groups": ["devs"]})),
        ),
        200,
    );
    ok(&w.as_admin("PUT", &format!("{REPO}/permissions/groups?name=devs&permission=REPO_WRITE"), None), 204);
    ok(&w.as_admin("PUT", &format!("{REPO}/permissions/users?name=carol&permission=REPO_READ"), None), 204);
    ok(
        &w.as_admin("PUT", "/rest/api/latest/projects/MF/permissions/users?name=alice&permission=PROJECT_READ", None),
        204,
    );
    let users = |query: &str| {
        let r = w.as_token(ALICE, "GET", &format!("/rest/api/latest/users?{query}"), None);
        ok(&r, 200);
        names(&r)
    };
    assert_eq!(users("group=devs"), ["bob"]);
    // REPO_WRITE on MF/repo: bob through his group, and the admin by role; carol reads only.
    let write = "permission.1=REPO_WRITE&permission.1.projectKey=MF&permission.1.repositorySlug=repo";
    assert_eq!(users(write), ["admin", "bob"]);
    let read = "permission.1=REPO_READ&permission.1.projectKey=MF&permission.1.repositorySlug=repo";
    assert_eq!(users(read), ["admin", "alice", "bob", "carol"], "alice reads through her project grant");
    // Filters are ANDed.
    assert_eq!(users(&format!("{read}&permission.2=PROJECT_READ&permission.2.projectKey=MF")), ["admin", "alice"]);
    assert_eq!(users("permission=ADMIN"), ["admin"]);
    assert_eq!(users("group=devs&filter=ali"), Vec::<String>::new());
    let r = w.as_token(ALICE, "GET", "/rest/api/latest/users?permission.1=REPO_READ&permission.1.projectKey=MF", None);
    assert_eq!((r.status, r.body["errors"][0]["context"].as_str()), (400, Some("permission.1.repositorySlug")));
    // Members and non-members, by group.
    let members = w.as_token(ALICE, "GET", "/rest/api/latest/admin/groups/more-members?context=devs", None);
    assert_eq!(names(&members), ["bob"]);
    let others = w.as_token(ALICE, "GET", "/rest/api/latest/admin/groups/more-non-members?context=devs", None);
    assert_eq!(names(&others), ["admin", "alice", "carol"]);
}

#[test]
fn every_user_has_a_personal_project_they_administer_and_forks_default_to_it() {
    let w = seed();
    let own = w.as_token(ALICE, "GET", "/rest/api/latest/projects/~ALICE", None);
    ok(&own, 200);
    assert_eq!((own.body["type"].as_str(), own.body["owner"]["slug"].as_str()), (Some("PERSONAL"), Some("alice")));
    ok(&w.as_token(BOB, "GET", "/rest/api/latest/projects/~alice", None), 404);
    // Her own repositories and grants there, as its PROJECT_ADMIN.
    ok(&w.as_token(ALICE, "POST", "/rest/api/latest/projects/~ALICE/repos", Some(json!({"name": "notes"}))), 201);
    let grant = "/rest/api/latest/projects/~ALICE/permissions/users?name=bob&permission=PROJECT_READ";
    ok(&w.as_token(ALICE, "PUT", grant, None), 204);
    ok(&w.as_token(BOB, "GET", "/rest/api/latest/projects/~ALICE/repos/notes", None), 200);
    // Not listed with the normal projects, and not deletable on its own.
    let listed = w.as_admin("GET", "/rest/api/latest/projects", None);
    assert_eq!(names(&listed), ["Mirror Farm"]);
    ok(&w.as_admin("DELETE", "/rest/api/latest/projects/~BOB", None), 409);
    // A fork with no project goes to the caller's personal project.
    ok(&w.as_admin("PUT", &format!("{REPO}/permissions/users?name=alice&permission=REPO_READ"), None), 204);
    let fork = w.as_token(ALICE, "POST", REPO, Some(json!({"url": "https://git.example/alice-fork.git"})));
    ok(&fork, 201);
    assert_eq!(fork.body["project"]["key"], "~ALICE");
    // A new user gets one too, and it goes with them.
    ok(&w.as_admin("POST", "/rest/api/latest/admin/users?name=dave&displayName=Dave", None), 204);
    ok(&w.as_admin("GET", "/rest/api/latest/projects/~DAVE", None), 200);
    ok(&w.as_admin("DELETE", "/rest/api/latest/admin/users?name=alice", None), 200);
    assert_eq!(w.db().count("SELECT COUNT(*) FROM projects WHERE key = '~ALICE'"), 0);
    assert_eq!(w.db().count("SELECT COUNT(*) FROM repositories WHERE slug = 'notes'"), 0);
}

#[test]
fn a_personal_fork_syncs_only_while_its_owner_can_read_the_origin() {
    let w = seed();
    let origin = w.as_admin(
        "POST",
        "/rest/api/latest/projects/MF/repos",
        Some(json!({"name": "origin", "upstreamUrl": "https://up.example/o.git"})),
    );
    ok(&origin, 201);
    let origin_path = "/rest/api/latest/projects/MF/repos/origin";
    ok(&w.as_admin("PUT", &format!("{origin_path}/permissions/users?name=alice&permission=REPO_READ"), None), 204);
    ok(&w.as_token(ALICE, "POST", origin_path, Some(json!({"url": "https://git.example/f.git"}))), 201);
    let sync = "/rest/sync/latest/projects/~ALICE/repos/origin";
    let status = w.as_token(ALICE, "GET", sync, None);
    assert_eq!(status.body["available"], true, "{}", status.raw);
    // Enabled, then the owner loses the origin: unavailable, saying why, and nothing runs.
    let node = w.as_admin("POST", &format!("{NODE}/nodes"), Some(json!({"name": "n"})));
    let node = node.body["token"].as_str().expect("token").to_owned();
    ok(&w.as_admin("DELETE", &format!("{origin_path}/permissions/users?name=alice"), None), 204);
    let status = w.as_token(ALICE, "GET", sync, None);
    assert_eq!(status.body["available"], false, "{}", status.raw);
    assert!(status.raw.contains("can no longer read the origin"), "{}", status.raw);
    let r = w.as_token(ALICE, "POST", sync, Some(json!({"enabled": true})));
    ok(&r, 409);
    // A group grant gives it back.
    ok(&w.as_admin("POST", "/rest/api/latest/admin/groups?name=readers", None), 200);
    ok(
        &w.as_admin(
            "POST",
            "/rest/api/latest/admin/groups/add-users",
            Some(json!({"group": "readers", "users": ["alice"]})),
        ),
        200,
    );
    ok(
        &w.as_admin(
            "PUT",
            "/rest/api/latest/projects/MF/permissions/groups?name=readers&permission=PROJECT_READ",
            None,
        ),
        204,
    );
    assert_eq!(w.as_token(ALICE, "GET", sync, None).body["available"], true);
    // While it is unavailable a queued sync is dropped by the lease, not run.
    ok(
        &w.as_admin(
            "POST",
            "/rest/api/latest/admin/groups/remove-user",
            Some(json!({"context": "readers", "itemName": "alice"})),
        ),
        200,
    );
    w.db().execute(
        "INSERT INTO jobs (kind, repository_id, reason, enqueued_at) \
         SELECT 'FORK_SYNC', r.id, 'MANUAL', 1 FROM repositories r JOIN projects p ON p.id = r.project_id WHERE p.key = '~ALICE'",
    );
    w.db().execute("UPDATE fork_syncs SET enabled = 1");
    w.db().execute("DELETE FROM jobs WHERE kind <> 'FORK_SYNC'");
    let lease = w.as_token(&node, "POST", &format!("{NODE}/jobs/lease"), Some(json!({"leaseSeconds": 60})));
    assert_eq!(lease.status, 204, "no fork sync is handed out: {}", lease.raw);
    assert_eq!(w.db().count("SELECT COUNT(*) FROM jobs WHERE kind = 'FORK_SYNC' AND state = 'QUEUED'"), 0);
}

/// A protected-only push mirror on MF/repo, and a node's lease of its push.
fn protected_only_lease(w: &World) -> Reply {
    let mirror = w.as_admin(
        "POST",
        "/api/v4/projects/MF%2Frepo/remote_mirrors",
        Some(json!({"url": "https://example.com/m.git", "enabled": true, "only_protected_branches": true})),
    );
    ok(&mirror, 201);
    let node = w.as_admin("POST", &format!("{NODE}/nodes"), Some(json!({"name": "n"})));
    let node = node.body["token"].as_str().expect("token").to_owned();
    let lease = w.as_token(&node, "POST", &format!("{NODE}/jobs/lease"), Some(json!({"leaseSeconds": 60})));
    ok(&lease, 200);
    lease
}

#[test]
fn protected_branches_are_listed_matched_and_handed_to_mirrors() {
    let w = seed();
    let rules = "/api/v4/projects/MF%2Frepo/protected_branches";
    let r = w.as_admin("POST", rules, Some(json!({"name": "release/*", "push_access_level": 30})));
    ok(&r, 201);
    assert_eq!(r.body["push_access_levels"][0]["access_level"], 30);
    ok(&w.as_admin("POST", rules, Some(json!({"name": "main"}))), 201);
    let dup = w.as_admin("POST", rules, Some(json!({"name": "main"})));
    assert_eq!(
        (dup.status, dup.body["message"].as_str()),
        (409, Some("409 Conflict - Protected branch 'main' already exists"))
    );
    let bad = w.as_admin("POST", rules, Some(json!({"name": "a b"})));
    assert_eq!(bad.status, 400, "{}", bad.raw);
    assert!(bad.body["message"]["name"].is_array(), "{}", bad.raw);
    ok(&w.as_admin("POST", rules, Some(json!({"push_access_level": 40}))), 400);
    let list = w.as_admin("GET", rules, None);
    assert_eq!(list.body.as_array().map(Vec::len), Some(2));
    assert_eq!(list.header("X-Total"), Some("2"));
    ok(&w.as_admin("GET", &format!("{rules}/release%2F*"), None), 200);
    ok(&w.as_admin("GET", &format!("{rules}/nope"), None), 404);
    // Readers may list; only maintainers (REPO_ADMIN) change them (GitLab's 403).
    ok(&w.as_admin("PUT", &format!("{REPO}/permissions/users?name=alice&permission=REPO_WRITE"), None), 204);
    ok(&w.as_token(ALICE, "GET", rules, None), 200);
    ok(&w.as_token(ALICE, "POST", rules, Some(json!({"name": "dev"}))), 403);
    // A protected-only mirror's lease carries the patterns.
    let lease = protected_only_lease(&w);
    assert_eq!(lease.body["repository"]["protectedBranches"], json!(["main", "release/*"]), "{}", lease.raw);
    ok(&w.as_admin("DELETE", &format!("{rules}/release%2F*"), None), 204);
    ok(&w.as_admin("DELETE", &format!("{rules}/release%2F*"), None), 404);
}

#[test]
fn without_protected_branches_the_default_branch_is_the_protected_one() {
    let w = seed();
    let lease = protected_only_lease(&w);
    assert_eq!(lease.body["repository"]["protectedBranches"], json!(["main"]), "{}", lease.raw);
}

#[test]
fn the_projects_api_sets_up_a_pull_mirror_as_python_gitlab_saves_it() {
    let w = seed();
    let project = "/api/v4/projects/MF%2Frepo";
    let body = json!({"import_url": "https://bot:s3cret@up.example/repo.git", "mirror": true,
        "only_mirror_protected_branches": true, "mirror_trigger_builds": true});
    let r = w.as_admin("PUT", project, Some(body));
    ok(&r, 200);
    assert_eq!(r.body["mirror"], true);
    assert_eq!(r.body["import_url"], "https://*****:*****@up.example/repo.git");
    assert_eq!(
        (r.body["only_mirror_protected_branches"].as_bool(), r.body["mirror_trigger_builds"].as_bool()),
        (Some(true), Some(true))
    );
    assert!(!r.raw.contains("s3cret"));
    assert_eq!(w.db().count("SELECT COUNT(*) FROM jobs WHERE kind = 'PULL_MIRROR' AND state = 'QUEUED'"), 1);
    let pull = w.as_admin("GET", &format!("{project}/mirror/pull"), None);
    assert_eq!(pull.body["enabled"], true, "{}", pull.raw);
    let got = w.as_admin("GET", project, None);
    assert_eq!(
        (got.body["mirror"].as_bool(), got.body["import_url"].as_str()),
        (Some(true), Some("https://*****:*****@up.example/repo.git"))
    );
    // Switching it off is a save of `mirror` alone.
    let off = w.as_admin("PUT", project, Some(json!({"mirror": false})));
    assert_eq!(off.body["mirror"], false, "{}", off.raw);
    let bad = w.as_admin("PUT", project, Some(json!({"import_url": "ftp://nowhere"})));
    assert_eq!(bad.status, 400, "{}", bad.raw);
    ok(&w.as_token(ALICE, "PUT", project, Some(json!({"mirror": true}))), 404);
}

#[test]
fn the_seeds_tighter_rules_hold() {
    let w = seed();
    // Cluster: SYS_ADMIN only; an ADMIN gets Bitbucket's 401.
    w.add_user("adm", GlobalRole::Admin, "mfp_adm_token_0123456789");
    ok(&w.as_token("mfp_adm_token_0123456789", "GET", "/rest/api/latest/admin/cluster", None), 401);
    ok(&w.as_admin("GET", "/rest/api/latest/admin/cluster", None), 200);
    // Labels: signed-in callers only.
    ok(&w.send("GET", "/rest/api/latest/labels", &[], None), 401);
    ok(&w.as_token(ALICE, "GET", "/rest/api/latest/labels", None), 200);
    // Multipart writes need Bitbucket's XSRF header.
    let form = "--b\r\nContent-Disposition: form-data; name=\"avatar\"; filename=\"a.png\"\r\nContent-Type: image/png\r\n\r\nx\r\n--b--\r\n";
    let avatar = "/rest/api/latest/users/alice/avatar.png";
    let auth = format!("Bearer {ALICE}");
    let r = w.send("POST", avatar, &[("Authorization", &auth)], Some(("multipart/form-data; boundary=b", form)));
    assert_eq!((r.status, r.body["errors"][0]["message"].as_str()), (403, Some("XSRF check failed")));
    let headers = [("Authorization", auth.as_str()), ("X-Atlassian-Token", "no-check")];
    let r = w.send("POST", avatar, &headers, Some(("multipart/form-data; boundary=b", form)));
    assert_ne!(r.status, 403, "with the header the upload is judged on its content: {}", r.raw);
}
