//! SSH keys through both APIs, and clone access by SSH key, on real SQLite.

use super::*;

const BOB: &str = "mfp_bob_token_0123456789";
const CAROL: &str = "mfp_carol_token_0123456789";
// Public halves only; the first made by `ssh-keygen -t ed25519 -C me@host`.
const KEY: &str = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIKqP3Cr632C2dNhhgKVcon4ldUSAeKiku2yP9O9/bDtY me@host";
// What `ssh-keygen -lf` prints for KEY.
const FINGERPRINT: &str = "SHA256:w9tZSiFoZ8oXwS4ZSWrJopGxwvnPIewA6Mo4owAHPrI";

fn carol_key() -> String {
    crate::ssh::PublicKey::ed25519(&[7u8; 32], Some("carol")).to_openssh()
}

fn world() -> World {
    let w = World::new();
    w.add_user("bob", GlobalRole::User, BOB);
    w.add_user("carol", GlobalRole::User, CAROL);
    w
}

#[test]
fn keys_are_added_listed_and_removed_through_both_apis() {
    let w = world();
    let r = w.as_token(BOB, "POST", "/rest/ssh/1.0/keys", Some(json!({"text": KEY, "label": "laptop"})));
    assert_eq!(r.status, 200, "{}", r.raw);
    assert_eq!(
        (r.body["label"].as_str(), r.body["algorithmType"].as_str(), r.body["bitLength"].as_u64()),
        (Some("laptop"), Some("ED25519"), Some(256))
    );
    assert_eq!((r.body["fingerprint"].as_str(), r.body["text"].as_str()), (Some(FINGERPRINT), Some(KEY)));
    let id = r.body["id"].as_i64().expect("id");

    // One key belongs to one user: Bitbucket answers 409, GitLab 400 "has already been taken".
    let again = w.as_token(CAROL, "POST", "/rest/ssh/1.0/keys", Some(json!({"text": KEY})));
    assert_eq!(again.status, 409, "{}", again.raw);
    assert!(again.body["errors"][0]["message"].is_string());
    let again = w.as_token(BOB, "POST", "/api/v4/user/keys", Some(json!({"title": "t", "key": KEY})));
    assert_eq!(
        (again.status, again.body.clone()),
        (400, json!({"message": {"fingerprint_sha256": ["has already been taken"]}}))
    );

    // GitLab's view of the same row; a form body works too.
    let listed = w.as_token(BOB, "GET", "/api/v4/user/keys", None);
    assert_eq!(listed.body[0]["title"], "laptop");
    assert_eq!(listed.body[0]["key"], KEY);
    let form = format!("title=ci&key={}", crate::api::encode(&carol_key()));
    let made = w.send(
        "POST",
        "/api/v4/user/keys",
        &[("PRIVATE-TOKEN", CAROL)],
        Some(("application/x-www-form-urlencoded", &form)),
    );
    assert_eq!((made.status, made.body["title"].as_str()), (201, Some("ci")), "{}", made.raw);

    // Only administrators read another user's keys; others' keys are not found.
    assert_eq!(w.as_token(CAROL, "GET", "/rest/ssh/1.0/keys?user=bob", None).status, 401);
    assert_eq!(w.as_token(CAROL, "GET", "/api/v4/user/keys", None).body.as_array().map(Vec::len), Some(1));
    let page = w.as_admin("GET", "/rest/ssh/1.0/keys?user=bob", None);
    assert_eq!((page.body["size"].as_u64(), page.body["isLastPage"].as_bool()), (Some(1), Some(true)));
    assert_eq!(w.as_token(CAROL, "DELETE", &format!("/rest/ssh/1.0/keys/{id}"), None).status, 404);
    assert_eq!(w.as_token(CAROL, "GET", &format!("/api/v4/user/keys/{id}"), None).status, 404);
    assert_eq!(w.as_token(BOB, "DELETE", &format!("/api/v4/user/keys/{id}"), None).status, 204);
    assert_eq!(w.as_token(BOB, "GET", &format!("/rest/ssh/1.0/keys/{id}"), None).status, 404);
}

#[test]
fn keys_that_do_not_read_are_refused_naming_the_field() {
    let w = world();
    for bad in [
        "",
        "ssh-ed25519",
        "ssh-dss AAAAB3NzaC1kc3MAAACBAP",
        "ssh-rsa AAAAC3NzaC1lZDI1NTE5AAAAIKqP3Cr632C2dNhhgKVcon4ldUSAeKiku2yP9O9/bDtY",
    ] {
        let r = w.as_token(BOB, "POST", "/rest/ssh/1.0/keys", Some(json!({"text": bad})));
        assert_eq!((r.status, r.body["errors"][0]["context"].as_str()), (400, Some("text")), "{bad}: {}", r.raw);
        let r = w.as_token(BOB, "POST", "/api/v4/user/keys", Some(json!({"title": "x", "key": bad})));
        assert_eq!(r.status, 400, "{bad}");
        assert!(r.body["message"]["key"].is_array(), "{}", r.raw);
    }
    let r = w.as_token(BOB, "POST", "/api/v4/user/keys", Some(json!({"key": KEY})));
    assert_eq!(r.body, json!({"message": {"title": ["can't be blank"]}}));
}

#[test]
fn a_node_asks_who_an_ssh_key_is_and_gets_that_users_read_decision() {
    let w = world();
    w.seed_repo();
    let grant = w.as_admin(
        "PUT",
        "/rest/api/latest/projects/MF/repos/repo/permissions/users?name=bob&permission=REPO_READ",
        None,
    );
    assert_eq!(grant.status, 204);
    assert_eq!(w.as_token(BOB, "POST", "/rest/ssh/1.0/keys", Some(json!({"text": KEY}))).status, 200);
    assert_eq!(w.as_token(CAROL, "POST", "/rest/ssh/1.0/keys", Some(json!({"text": carol_key()}))).status, 200);
    let node = w.as_admin("POST", "/rest/mirrorfarm/latest/nodes", Some(json!({"name": "n"}))).body["token"]
        .as_str()
        .expect("token")
        .to_owned();
    let ask = |key: &str| {
        w.as_token(
            &node,
            "POST",
            "/rest/mirrorfarm/latest/nodes/clone-access",
            Some(json!({"projectKey": "mf", "slug": "repo", "sshKey": key})),
        )
    };
    let bob = ask("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIKqP3Cr632C2dNhhgKVcon4ldUSAeKiku2yP9O9/bDtY");
    assert_eq!(bob.status, 200, "{}", bob.raw);
    assert!(bob.body["repositoryId"].is_i64());
    assert!(bob.body["signature"].is_string());
    // Carol's key is hers, but she may not read the repository: hidden.
    assert_eq!(ask(&carol_key()).status, 404);
    // A key nobody registered, or no key at all, is nobody.
    assert_eq!(ask(&crate::ssh::PublicKey::ed25519(&[9u8; 32], None).to_openssh()).status, 401);
    assert_eq!(ask("not a key").status, 401);

    // The node says where it serves SSH; the clone links carry it once its copy is current.
    let beat = w.as_token(
        &node,
        "POST",
        "/rest/mirrorfarm/latest/nodes/heartbeat",
        Some(json!({"cloneUrl": "http://127.0.0.1:9000", "sshUrl": "ssh://git@127.0.0.1:2222"})),
    );
    assert_eq!(beat.status, 200, "{}", beat.raw);
    let bad = w.as_token(
        &node,
        "POST",
        "/rest/mirrorfarm/latest/nodes/heartbeat",
        Some(json!({"sshUrl": "ssh://git:secret@127.0.0.1:2222"})),
    );
    assert_eq!((bad.status, bad.body["errors"][0]["context"].as_str()), (400, Some("sshUrl")));
}
