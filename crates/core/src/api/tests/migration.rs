//! Exports and imports through the service: the admins' routes, a node's lease, progress,
//! archive transfers and imported repositories, on real SQLite.

use super::*;

const EXPORTS: &str = "/rest/api/latest/migration/exports";
const IMPORTS: &str = "/rest/api/latest/migration/imports";
const USER_TOKEN: &str = "mfp_user_token_0123456789";

fn everything() -> Value {
    json!({"repositoriesRequest": {"includes": [{"projectKey": "*", "slug": "*"}]}})
}

fn node(w: &World, name: &str) -> String {
    w.as_admin("POST", "/rest/mirrorfarm/latest/nodes", Some(json!({"name": name}))).body["token"]
        .as_str()
        .expect("token")
        .to_owned()
}

/// Project MF with `repo` (labelled, a user granted WRITE) and `other`, and a second project.
fn seed(w: &World) {
    w.seed_repo();
    w.add_user("dev", GlobalRole::User, USER_TOKEN);
    let r = w.as_admin("POST", "/rest/api/latest/projects/MF/repos", Some(json!({"name": "other"})));
    assert_eq!(r.status, 201, "{}", r.raw);
    assert_eq!(
        w.as_admin("POST", "/rest/api/latest/projects", Some(json!({"key": "XT", "name": "Extra"}))).status,
        201
    );
    assert_eq!(w.as_admin("POST", "/rest/api/latest/projects/XT/repos", Some(json!({"name": "x1"}))).status, 201);
    let label = w.as_admin("POST", "/rest/api/latest/projects/MF/repos/repo/labels", Some(json!({"name": "team-a"})));
    assert_eq!(label.status, 200, "{}", label.raw);
    let grant = w.as_admin(
        "PUT",
        "/rest/api/latest/projects/MF/repos/repo/permissions/users?name=dev&permission=REPO_WRITE",
        None,
    );
    assert_eq!(grant.status, 204, "{}", grant.raw);
}

#[test]
fn exports_are_for_admins_limited_to_two_and_cancelled_once() {
    let w = World::new();
    seed(&w);
    // A signed-in user without ADMIN gets Bitbucket's 401; bad requests name their field.
    assert_eq!(w.as_token(USER_TOKEN, "POST", EXPORTS, Some(everything())).status, 401);
    let bad = w.as_admin("POST", EXPORTS, Some(json!({"repositoriesRequest": {"includes": []}})));
    assert_eq!((bad.status, bad.body["errors"][0]["context"].as_str()), (400, Some("repositoriesRequest")));
    let bad = w.as_admin(
        "POST",
        EXPORTS,
        Some(
            json!({"exportLocation": "../x", "repositoriesRequest": {"includes": [{"projectKey": "MF", "slug": "*"}]}}),
        ),
    );
    assert_eq!((bad.status, bad.body["errors"][0]["context"].as_str()), (400, Some("exportLocation")));
    assert_eq!(w.db().count("SELECT COUNT(*) FROM migration_jobs"), 0, "nothing half-written");

    let first = w.as_admin("POST", EXPORTS, Some(everything()));
    assert_eq!(first.status, 200, "{}", first.raw);
    assert_eq!(first.body["state"], "INITIALISING");
    assert_eq!(first.body["type"], "com.atlassian.bitbucket.migration.export");
    assert_eq!(first.body["initiator"]["name"], "admin");
    assert_eq!(w.as_admin("POST", "/rest/api/1.0/migration/exports", Some(everything())).status, 200);
    let third = w.as_admin("POST", EXPORTS, Some(everything()));
    assert_eq!(third.status, 503, "{}", third.raw);
    assert!(third.body["errors"][0]["message"].is_string());

    let id = first.body["id"].as_i64().expect("id");
    assert_eq!(w.as_admin("GET", &format!("{EXPORTS}/{id}"), None).body["id"], id);
    assert_eq!(w.as_admin("GET", &format!("{IMPORTS}/{id}"), None).status, 404, "an export is not an import");
    assert_eq!(w.as_admin("POST", &format!("{EXPORTS}/{id}/cancel"), None).status, 204);
    assert_eq!(w.as_admin("GET", &format!("{EXPORTS}/{id}"), None).body["state"], "CANCELED");
    assert_eq!(w.as_admin("POST", &format!("{EXPORTS}/{id}/cancel"), None).status, 409);
    assert_eq!(w.as_admin("POST", &format!("{EXPORTS}/999/cancel"), None).status, 404);
    // A cancelled export no longer counts.
    assert_eq!(w.as_admin("POST", EXPORTS, Some(everything())).status, 200);
}

#[test]
fn preview_lists_projects_and_their_selected_repositories() {
    let w = World::new();
    seed(&w);
    let r = w.as_admin(
        "POST",
        &format!("{EXPORTS}/preview"),
        Some(json!({"repositoriesRequest": {"includes": [{"projectKey": "MF", "slug": "*"}, {"projectKey": "XT", "slug": "x1"}],
            "excludes": [{"projectKey": "MF", "slug": "other"}]}})),
    );
    assert_eq!(r.status, 200, "{}", r.raw);
    let scopes: Vec<String> = r.body["scopes"]
        .as_array()
        .expect("scopes")
        .iter()
        .map(|s| {
            format!(
                "{} {}/{}",
                s["type"].as_str().unwrap_or(""),
                s["projectKey"].as_str().unwrap_or(""),
                s["slug"].as_str().unwrap_or("")
            )
        })
        .collect();
    assert_eq!(scopes, ["PROJECT MF/", "REPOSITORY MF/repo", "PROJECT XT/", "REPOSITORY XT/x1"]);
}

#[test]
fn a_node_runs_an_export_and_uploads_one_archive() {
    let w = World::new();
    seed(&w);
    let token = node(&w, "n1");
    let started = w.as_admin(
        "POST",
        EXPORTS,
        Some(
            json!({"exportLocation": "team", "repositoriesRequest": {"includes": [{"projectKey": "MF", "slug": "*"}]}}),
        ),
    );
    let id = started.body["id"].as_i64().expect("id");
    let lease = w.as_token(&token, "POST", "/rest/mirrorfarm/latest/jobs/lease", None);
    assert_eq!(lease.body["kind"], "MIGRATION_EXPORT", "{}", lease.raw);
    let export = &lease.body["migration"]["export"];
    assert_eq!(lease.body["migration"]["jobId"], id);
    let slugs: Vec<&str> = export["manifest"]["repositories"]
        .as_array()
        .expect("repos")
        .iter()
        .filter_map(|r| r["slug"].as_str())
        .collect();
    assert_eq!(slugs, ["other", "repo"]);
    let repo = &export["manifest"]["repositories"][1];
    assert_eq!(repo["labels"], json!(["team-a"]));
    assert_eq!(repo["grants"], json!([{"user": "dev", "level": "WRITE"}]));
    assert_eq!(export["items"].as_array().map(Vec::len), Some(2));
    let job = w.as_admin("GET", &format!("{EXPORTS}/{id}"), None).body;
    assert_eq!(job["state"], "RUNNING");
    assert!(job["nodeId"].is_string());

    let other = node(&w, "n2");
    let archive = format!("/rest/mirrorfarm/latest/nodes/migration/{id}/archive");
    assert_eq!(w.as_token(&other, "PUT", &archive, None).status, 409, "only the node running it");
    assert_eq!(w.as_admin("PUT", &archive, None).status, 401, "nodes only");
    let upload = w.as_token(&token, "PUT", &archive, None);
    assert_eq!(upload.status, 204, "{}", upload.raw);
    let key = "migration/export/team/Bitbucket_export_1.tar".replace('1', &id.to_string());
    assert_eq!(upload.transfer, Some(BlobTransfer::Store { key: key.clone() }));

    let progress = format!("/rest/mirrorfarm/latest/nodes/migration/{id}/progress");
    let r = w.as_token(&token, "POST", &progress, Some(json!({"percentage": 50, "message": "1 of 2"})));
    assert_eq!(r.body, json!({"state": "RUNNING"}));
    assert_eq!(
        w.as_admin("GET", &format!("{EXPORTS}/{id}"), None).body["progress"],
        json!({"message": "1 of 2", "percentage": 50})
    );
    let bad = w.as_token(&token, "POST", &progress, Some(json!({"state": "ABORTED"})));
    assert_eq!(bad.status, 400);
    let done = json!({"state": "COMPLETED", "percentage": 100, "archiveWritten": true,
        "messages": [{"severity": "INFO", "subject": "MF/repo", "text": "bundled"}]});
    assert_eq!(w.as_token(&token, "POST", &progress, Some(done)).body, json!({"state": "COMPLETED"}));
    let job = w.as_admin("GET", &format!("{EXPORTS}/{id}"), None).body;
    assert_eq!((job["state"].as_str(), job["archivePath"].as_str()), (Some("COMPLETED"), Some(key.as_str())));
    assert!(job["endDate"].is_i64());
    let messages = w.as_admin("GET", &format!("{EXPORTS}/{id}/messages"), None).body;
    assert!(
        messages["values"]
            .as_array()
            .expect("values")
            .iter()
            .any(|m| m["text"].as_str().is_some_and(|t| t.contains(&key)))
    );
    let filtered = w.as_admin("GET", &format!("{EXPORTS}/{id}/messages?severity=WARN&severity=ERROR"), None);
    assert_eq!(filtered.body["size"], 0);
    assert_eq!(w.as_admin("GET", &format!("{EXPORTS}/{id}/messages?severity=LOUD"), None).status, 400);
    assert_eq!(w.as_admin("POST", &format!("{EXPORTS}/{id}/cancel"), None).status, 409, "done");
    assert_eq!(w.as_token(&token, "PUT", &archive, None).status, 409, "no archive after the end");
}

#[test]
fn imports_need_an_archive_and_create_each_repository_whole() {
    let w = World::new();
    seed(&w);
    let missing = w.as_admin("POST", IMPORTS, Some(json!({"archivePath": "nothing.tar"})));
    assert_eq!((missing.status, missing.body["errors"][0]["context"].as_str()), (400, Some("archivePath")));
    let outside = w.as_admin("POST", IMPORTS, Some(json!({"archivePath": "../avatars/x"})));
    assert_eq!(outside.status, 400);
    block_on(w.blobs.put("migration/import/a.tar", b"tar".to_vec(), "application/x-tar")).expect("put");
    let started = w.as_admin("POST", IMPORTS, Some(json!({"archivePath": "a.tar"})));
    assert_eq!(started.status, 200, "{}", started.raw);
    assert_eq!(started.body["archivePath"], "migration/import/a.tar");
    assert_eq!(w.as_admin("POST", IMPORTS, Some(json!({"archivePath": "a.tar"}))).status, 503, "one at a time");
    let id = started.body["id"].as_i64().expect("id");

    let token = node(&w, "n1");
    let lease = w.as_token(&token, "POST", "/rest/mirrorfarm/latest/jobs/lease", None);
    assert_eq!(lease.body["migration"]["importArchive"], "migration/import/a.tar", "{}", lease.raw);
    let download = w.as_token(&token, "GET", &format!("/rest/mirrorfarm/latest/nodes/migration/{id}/archive"), None);
    assert_eq!(download.transfer, Some(BlobTransfer::Serve { key: "migration/import/a.tar".into() }));

    let create = format!("/rest/mirrorfarm/latest/nodes/migration/{id}/repositories");
    let hash = "ab".repeat(32);
    let imported = |key: &str, slug: &str| {
        json!({"project": {"key": key, "name": format!("{key} project"), "grants": [{"user": "dev", "level": "READ"}, {"user": "ghost", "level": "ADMIN"}]},
               "repository": {"projectKey": key, "slug": slug, "name": slug, "defaultBranch": "main", "labels": ["lab-one", "lab-two"],
                              "grants": [{"user": "dev", "level": "ADMIN"}], "upstreamUrl": "https://example.com/x.git",
                              "pullMirror": {"enabled": true, "onlyProtectedBranches": false, "overwriteDivergedBranches": true}},
               "contentHash": hash, "percentage": 50})
    };
    let r = w.as_token(&token, "POST", &create, Some(imported("NEW", "fresh")));
    assert_eq!(r.body["outcome"], "CREATED", "{}", r.raw);
    let new_id = r.body["repositoryId"].as_i64().expect("id");
    let repo = w.as_admin("GET", "/rest/api/latest/projects/NEW/repos/fresh", None);
    assert_eq!((repo.status, repo.body["id"].as_i64()), (200, Some(new_id)));
    let db = w.db();
    assert_eq!(db.count(&format!("SELECT COUNT(*) FROM repository_labels WHERE repository_id = {new_id}")), 2);
    assert_eq!(
        db.count(&format!("SELECT COUNT(*) FROM repository_grants WHERE repository_id = {new_id} AND level = 'ADMIN'")),
        1
    );
    assert_eq!(
        db.count("SELECT COUNT(*) FROM project_grants g JOIN projects p ON p.id = g.project_id WHERE p.key = 'NEW'"),
        1
    );
    assert_eq!(db.count(&format!("SELECT COUNT(*) FROM node_copies WHERE repository_id = {new_id}")), 1);
    assert_eq!(db.count(&format!("SELECT COUNT(*) FROM repository_hashes WHERE repository_id = {new_id}")), 1);
    assert_eq!(
        db.count(&format!("SELECT COUNT(*) FROM pull_mirrors WHERE repository_id = {new_id} AND enabled = 1")),
        1
    );

    // One that exists is skipped, named in a WARN message.
    let r = w.as_token(&token, "POST", &create, Some(imported("MF", "repo")));
    assert_eq!(r.body["outcome"], "SKIPPED", "{}", r.raw);
    let warns = w.as_admin("GET", &format!("{IMPORTS}/{id}/messages?severity=WARN"), None).body;
    let texts: Vec<&str> =
        warns["values"].as_array().expect("values").iter().filter_map(|m| m["text"].as_str()).collect();
    assert!(texts.iter().any(|t| t.contains("MF/repo") && t.contains("skipped")), "{texts:?}");
    assert!(texts.iter().any(|t| t.contains("ghost")), "a grant of an unknown user is reported: {texts:?}");

    // Bad input writes nothing.
    let mut bad = imported("NEW", "other");
    bad["contentHash"] = json!("nope");
    assert_eq!(w.as_token(&token, "POST", &create, Some(bad)).status, 400);
    let mut bad = imported("NEW", "other");
    bad["repository"]["labels"] = json!(["Not A Label"]);
    let r = w.as_token(&token, "POST", &create, Some(bad));
    assert_eq!((r.status, r.body["errors"][0]["context"].as_str()), (400, Some("labels")));
    let mut bad = imported("NEW", "other");
    bad["repository"]["grants"] = json!([{"user": "dev", "level": "OWNER"}]);
    assert_eq!(w.as_token(&token, "POST", &create, Some(bad)).status, 400);
    assert_eq!(w.as_admin("GET", "/rest/api/latest/projects/NEW/repos/other", None).status, 404);

    // After cancel, nothing more is created and the node is told.
    assert_eq!(w.as_admin("POST", &format!("{IMPORTS}/{id}/cancel"), None).status, 204);
    assert_eq!(w.as_admin("GET", &format!("{IMPORTS}/{id}"), None).body["state"], "CANCELING");
    let r = w.as_token(&token, "POST", &create, Some(imported("NEW", "late")));
    assert_eq!(r.body["outcome"], "CANCELLED");
    assert_eq!(w.as_admin("GET", "/rest/api/latest/projects/NEW/repos/late", None).status, 404);
    let progress = format!("/rest/mirrorfarm/latest/nodes/migration/{id}/progress");
    let r = w.as_token(&token, "POST", &progress, Some(json!({"state": "CANCELED"})));
    assert_eq!(r.body["state"], "CANCELED");
    assert_eq!(w.as_admin("POST", &format!("{IMPORTS}/{id}/cancel"), None).status, 409);
}
