//! Inputs at the sizes a real farm meets, through the service on real SQLite: 7,000 discovered
//! repositories (and a hash poll and a ref poll of them), a fork sync of 10,000 refs, and 1,000 users in a group, a grant and a filter.
//! The SQLite port checks every statement against D1's limits (`store::limits`) and fails the
//! test on the first breach, so passing means none of these statements would be refused by D1.

use super::*;

const NODE: &str = "/rest/mirrorfarm/latest";

fn node(w: &World) -> String {
    let r = w.as_admin("POST", &format!("{NODE}/nodes"), Some(json!({"name": "limits"})));
    r.body["token"].as_str().expect("token").to_owned()
}

fn lease(w: &World, token: &str) -> Reply {
    w.as_token(token, "POST", &format!("{NODE}/jobs/lease"), Some(json!({"leaseSeconds": 60})))
}

fn report(w: &World, token: &str, job: &Value, mut body: Value) -> Reply {
    body["leaseId"] = job["leaseId"].clone();
    w.as_token(token, "POST", &format!("{NODE}/jobs/{}/result", job["id"]), Some(body))
}

#[test]
fn seven_thousand_discovered_repositories_are_stored_within_d1s_limits() {
    let w = World::new();
    let token = node(&w);
    let up = w.as_admin(
        "POST",
        &format!("{NODE}/upstreamServers"),
        Some(json!({"baseUrl": "https://bb.example", "type": "bitbucket"})),
    );
    assert_eq!(up.status, 201, "{}", up.raw);
    let job = lease(&w, &token);
    assert_eq!(job.body["kind"], "DISCOVER", "{}", job.raw);
    // Short names keep the report under its 2 MB body limit, as a real node's compact listing does.
    let listing: Vec<Value> = (0..7_000)
        .map(|i| {
            let p = i % 70;
            json!({"projectId": p.to_string(), "projectKey": format!("P{p}"), "projectName": format!("P{p}"),
                "repoId": i.to_string(), "slug": format!("r{i}"), "name": format!("r{i}"),
                "cloneUrl": format!("https://bb.example/scm/p{p}/r{i}.git")})
        })
        .collect();
    let body = json!({"outcome": "pushed", "discovered": listing});
    assert!(body.to_string().len() <= crate::api::routes::MAX_REPORT_BYTES, "{} bytes", body.to_string().len());
    let done = report(&w, &token, &job.body, body);
    assert_eq!(done.status, 200, "{}", done.raw);
    assert_eq!(w.db().count("SELECT COUNT(*) FROM farm_repositories"), 7_000);
    assert_eq!(w.as_admin("GET", "/rest/mirroring/latest/progress", None).body["totalRepos"], 7_000);

    // A hash poll of the 7,000 (their first syncs set aside): one listing, every hash new.
    w.db().execute("DELETE FROM jobs");
    let later = Service::new(&w.store, &w.crypto, &w.config, Timestamp(1_578_331_922_823 + 400_000));
    assert_eq!(block_on(later.schedule_polls()).expect("cron"), 1, "one hash poll, no poll per repository");
    let poll = lease(&w, &token);
    assert_eq!(poll.body["kind"], "UPSTREAM_POLL", "{}", poll.raw);
    let hashes: Vec<Value> =
        (0..7_000).map(|i| json!({"repoId": i.to_string(), "contentHash": format!("{i:064x}")})).collect();
    let body = json!({"outcome": "pushed", "contentHashes": hashes});
    assert!(body.to_string().len() <= crate::api::routes::MAX_REPORT_BYTES, "{} bytes", body.to_string().len());
    let done = report(&w, &token, &poll.body, body);
    assert_eq!(done.status, 200, "{}", done.raw);
    assert_eq!(w.db().count("SELECT COUNT(*) FROM jobs WHERE kind = 'PULL_MIRROR' AND state = 'QUEUED'"), 7_000);
    assert_eq!(w.db().count("SELECT COUNT(*) FROM farm_repositories WHERE pending_content_hash IS NOT NULL"), 6_999);

    // Once it publishes no hashes, a ref poll of the 7,000: one lease lists them all, and one
    // report queues the pulls of those whose fingerprint moved (every other one here).
    w.db().execute(
        "DELETE FROM jobs; UPDATE upstream_servers SET publishes_hashes = 0; \
         INSERT INTO repository_triggers (repository_id, upstream_fingerprint) SELECT id, printf('%064x', id) \
         FROM repositories WHERE true ON CONFLICT (repository_id) DO UPDATE SET upstream_fingerprint = excluded.upstream_fingerprint",
    );
    let later = Service::new(&w.store, &w.crypto, &w.config, Timestamp(1_578_331_922_823 + 500_000));
    assert_eq!(block_on(later.schedule_polls()).expect("cron"), 1, "one ref poll, no poll per repository");
    let poll = lease(&w, &token);
    let targets = poll.body["refPoll"].as_array().map_or(0, Vec::len);
    assert_eq!((poll.body["kind"].as_str(), targets), (Some("UPSTREAM_POLL"), 7_000));
    let ids: Vec<i64> =
        poll.body["refPoll"].as_array().into_iter().flatten().filter_map(|t| t["repositoryId"].as_i64()).collect();
    let polled: Vec<Value> = ids
        .iter()
        .map(
            |&id| json!({"repositoryId": id, "fingerprint": format!("{:064x}", if id % 2 == 0 { id } else { id + 1 })}),
        )
        .collect();
    let body = json!({"outcome": "pushed", "polledRefs": polled});
    assert!(body.to_string().len() <= crate::api::routes::MAX_REPORT_BYTES, "{} bytes", body.to_string().len());
    let done = report(&w, &token, &poll.body, body);
    assert_eq!(done.status, 200, "{}", done.raw);
    assert_eq!(w.db().count("SELECT COUNT(*) FROM jobs WHERE kind = 'PULL_MIRROR' AND state = 'QUEUED'"), 3_500);
}

#[test]
fn a_fork_sync_of_ten_thousand_refs_is_stored_within_d1s_limits() {
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
        Some(json!({"name": "Fork", "project": {"key": "MF"}, "url": "https://git.example/fork.git"})),
    );
    assert_eq!(fork.status, 201, "{}", fork.raw);
    w.db().execute("UPDATE fork_syncs SET enabled = 1; DELETE FROM jobs");
    w.db().execute(&format!(
        "INSERT INTO jobs (kind, repository_id, reason, enqueued_at) VALUES ('FORK_SYNC', {}, 'MANUAL', 1)",
        fork.body["id"]
    ));
    let token = node(&w);
    let job = lease(&w, &token);
    assert_eq!(job.body["kind"], "FORK_SYNC", "{}", job.raw);
    let refs: Vec<Value> = (0..10_000)
        .map(|i| json!({"id": format!("refs/heads/feature/branch-{i:05}"), "state": if i % 2 == 0 { "AHEAD" } else { "DIVERGED" }}))
        .collect();
    let done = report(&w, &token, &job.body, json!({"outcome": "pushed", "forkRefs": refs}));
    assert_eq!(done.status, 200, "{}", done.raw);
    assert_eq!(w.db().count("SELECT COUNT(*) FROM fork_ref_states"), 10_000);
    let status = w.as_admin("GET", "/rest/sync/latest/projects/MF/repos/fork", None);
    assert_eq!(status.status, 200);
}

#[test]
fn a_thousand_users_join_a_group_get_a_grant_and_are_filtered_within_d1s_limits() {
    let w = World::new();
    w.seed_repo();
    let values: Vec<String> = (0..1_000).map(|i| format!("('user{i:04}', 'user{i:04}', 'User {i}', 1)")).collect();
    w.db().execute(&format!("INSERT INTO users (name, slug, display_name, created_at) VALUES {}", values.join(", ")));
    assert_eq!(w.db().count("SELECT COUNT(*) FROM projects WHERE owner_id IS NOT NULL"), 1_001, "each has a ~SLUG");
    assert_eq!(w.as_admin("POST", "/rest/api/latest/admin/groups?name=everyone", None).status, 200);
    let names: Vec<String> = (0..1_000).map(|i| format!("user{i:04}")).collect();
    let add = w.as_admin(
        "POST",
        "/rest/api/latest/admin/groups/add-users",
        Some(json!({"group": "everyone", "users": names})),
    );
    assert_eq!(add.status, 200, "{}", add.raw);
    assert_eq!(w.db().count("SELECT COUNT(*) FROM group_members"), 1_000);
    // A grant to all of them by name in one request (1,000 `name` parameters).
    let query: Vec<String> = names.iter().map(|n| format!("name={n}")).collect();
    let grant =
        format!("/rest/api/latest/projects/MF/repos/repo/permissions/users?{}&permission=REPO_READ", query.join("&"));
    assert_eq!(w.as_admin("PUT", &grant, None).status, 204);
    assert_eq!(w.db().count("SELECT COUNT(*) FROM repository_grants"), 1_000);
    // Filters: by group and permission, and a text filter longer than D1's LIKE pattern limit.
    let page = w.as_admin(
        "GET",
        "/rest/api/latest/users?group=everyone&permission.1=REPO_READ&permission.1.projectKey=MF&permission.1.repositorySlug=repo&limit=1000",
        None,
    );
    assert_eq!(page.body["size"], 1_000, "{}", &page.raw[..page.raw.len().min(300)]);
    let long = "x".repeat(60);
    let r = w.as_admin("GET", &format!("/rest/api/latest/users?filter={long}"), None);
    assert_eq!((r.status, r.body["size"].as_u64()), (200, Some(0)), "{}", r.raw);
    let r =
        w.as_admin("GET", &format!("/rest/api/latest/admin/groups/more-members?context=everyone&filter={long}"), None);
    assert_eq!(r.status, 200, "{}", r.raw);
}
