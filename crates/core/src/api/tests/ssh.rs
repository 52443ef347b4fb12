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

#[test]
fn an_ssh_key_mirror_has_a_key_pair_leases_its_seed_and_learns_its_host_key() {
    let w = world();
    let id = w.seed_repo();
    let mirrors = format!("/api/v4/projects/{id}/remote_mirrors");
    let plain = w.as_admin("POST", &mirrors, Some(json!({"url": "https://e.example/x.git"})));
    assert_eq!(w.as_admin("GET", &format!("{mirrors}/{}/public_key", plain.body["id"]), None).status, 404);
    let refused =
        w.as_admin("POST", &mirrors, Some(json!({"url": "https://e.example/x.git", "auth_method": "ssh_public_key"})));
    assert_eq!(refused.status, 400);
    assert!(refused.body["message"]["auth_method"].is_array(), "{}", refused.raw);

    let made = w.as_admin(
        "POST",
        &mirrors,
        Some(json!({"url": "ssh://git@e.example:2222/x.git", "auth_method": "ssh_public_key", "enabled": true})),
    );
    assert_eq!(made.status, 201, "{}", made.raw);
    assert_eq!(
        (made.body["auth_method"].as_str(), made.body["host_keys"].clone()),
        (Some("ssh_public_key"), json!([]))
    );
    let mirror = made.body["id"].as_i64().expect("id");
    let public = w.as_admin("GET", &format!("{mirrors}/{mirror}/public_key"), None);
    assert_eq!(public.status, 200, "{}", public.raw);
    let line = public.body["public_key"].as_str().expect("a key").to_owned();
    let key = crate::ssh::PublicKey::parse(&line).expect("an OpenSSH public key");
    assert_eq!(key.algorithm, crate::ssh::KeyAlgorithm::Ed25519);
    assert!(!made.raw.contains("sealed") && !public.raw.contains("sealed"), "no secret in an answer");

    // The node's lease carries the seed whose public half the API shows, and no known hosts yet.
    let node = w.as_admin("POST", "/rest/mirrorfarm/latest/nodes", Some(json!({"name": "n"}))).body["token"]
        .as_str()
        .expect("token")
        .to_owned();
    let job = w.as_token(&node, "POST", "/rest/mirrorfarm/latest/jobs/lease", Some(json!({})));
    assert_eq!(job.status, 200, "{}", job.raw);
    let ssh = &job.body["remoteMirror"]["ssh"];
    let seed = crate::hex::decode(ssh["privateSeed"].as_str().expect("seed")).expect("hex");
    let pair = ring::signature::Ed25519KeyPair::from_seed_unchecked(&seed).expect("seed");
    assert_eq!(ring::signature::KeyPair::public_key(&pair).as_ref(), &key.blob[19..]);
    assert!(ssh["knownHosts"].is_null());
    assert_eq!(job.body["remoteMirror"]["url"], "ssh://git@e.example:2222/x.git");

    // The host key it accepted on this first push is kept and shown by fingerprint.
    let report = json!({"leaseId": job.body["leaseId"], "outcome": "pushed", "learnedHostKey": format!("[e.example]:2222 {}", KEY)});
    let done =
        w.as_token(&node, "POST", &format!("/rest/mirrorfarm/latest/jobs/{}/result", job.body["id"]), Some(report));
    assert_eq!(done.status, 200, "{}", done.raw);
    let shown = w.as_admin("GET", &format!("{mirrors}/{mirror}"), None);
    assert_eq!(shown.body["host_keys"], json!([{"fingerprint_sha256": FINGERPRINT}]));
    assert_eq!(shown.body["update_status"], "finished");

    // An update that sends no known hosts keeps the learned ones.
    let kept = w.as_admin("PUT", &format!("{mirrors}/{mirror}"), Some(json!({"only_protected_branches": true})));
    assert_eq!(kept.body["host_keys"], json!([{"fingerprint_sha256": FINGERPRINT}]), "{}", kept.raw);
    let stored = w.as_admin("GET", &format!("{mirrors}/{mirror}"), None);
    assert_eq!(stored.body["host_keys"], json!([{"fingerprint_sha256": FINGERPRINT}]));

    // Known hosts sent on an update replace them; bad ones are refused naming the field; the key stays.
    let bad = w.as_admin("PUT", &format!("{mirrors}/{mirror}"), Some(json!({"ssh_known_hosts": "host ssh-ed25519 !"})));
    assert_eq!(bad.status, 400);
    assert!(bad.body["message"]["ssh_known_hosts"].is_array(), "{}", bad.raw);
    let carol = format!("[e.example]:2222 {}", carol_key());
    let changed = w.as_admin("PUT", &format!("{mirrors}/{mirror}"), Some(json!({"ssh_known_hosts": carol})));
    assert_eq!(changed.status, 200, "{}", changed.raw);
    assert_ne!(changed.body["host_keys"], shown.body["host_keys"]);
    assert_eq!(w.as_admin("GET", &format!("{mirrors}/{mirror}/public_key"), None).body["public_key"], line.as_str());
}
