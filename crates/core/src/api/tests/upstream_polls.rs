//! Upstream polls: an upstream that publishes its repositories' content hashes is polled with one
//! listing, and only the farm repositories whose hash moved are pulled; one that publishes none
//! is polled by one job too, whose node lists every repository's refs, and only those whose
//! fingerprint moved are pulled. Through the service, on real SQLite.

use super::*;

const NODE: &str = "/rest/mirrorfarm/latest";
const UP: &str = "/rest/mirroring/latest/upstreamServers";
const T0: i64 = 1_578_331_922_823;

struct Farm {
    w: World,
    node: String,
    upstream: String,
}

fn lease(f: &Farm) -> Reply {
    f.w.as_token(&f.node, "POST", &format!("{NODE}/jobs/lease"), Some(json!({"leaseSeconds": 60})))
}

fn report(f: &Farm, job: &Value, mut body: Value) -> Reply {
    body["leaseId"] = job["leaseId"].clone();
    let r = f.w.as_token(&f.node, "POST", &format!("{NODE}/jobs/{}/result", job["id"]), Some(body));
    assert_eq!(r.status, 200, "{}", r.raw);
    r
}

/// The cron, `seconds` after the world's clock.
fn cron(f: &Farm, seconds: i64) -> u64 {
    let service = Service::new(&f.w.store, &f.w.crypto, &f.w.config, Timestamp(T0 + seconds * 1000));
    block_on(service.schedule_polls()).expect("cron")
}

/// Every job the queue holds, sorted: "KIND REASON target" (a repository's slug, or `upstream`).
fn queued(f: &Farm) -> Vec<String> {
    let all = f.w.db().text(
        "SELECT group_concat(line, ',') FROM (SELECT j.kind || ' ' || j.reason || ' ' || IFNULL(r.slug, 'upstream') \
         AS line FROM jobs j LEFT JOIN repositories r ON r.id = j.repository_id WHERE j.state = 'QUEUED' ORDER BY line)",
    );
    all.split(',').filter(|l| !l.is_empty()).map(str::to_owned).collect()
}

fn hash(c: char) -> String {
    c.to_string().repeat(64)
}

/// A farm repository's upstream hashes: (synced to, a pull is to reach).
fn hashes_of(f: &Farm, external: &str) -> (String, String) {
    let column =
        |c: &str| f.w.db().text(&format!("SELECT {c} FROM farm_repositories WHERE external_repo_id = '{external}'"));
    (column("upstream_content_hash"), column("pending_content_hash"))
}

/// A Bitbucket upstream listed with repositories 10, 11 and 12, each synced once.
fn farm() -> Farm {
    let mut w = World::new();
    w.config.poll_interval_ms = 60_000;
    let node = w.as_admin("POST", &format!("{NODE}/nodes"), Some(json!({"name": "node-1"})));
    let node = node.body["token"].as_str().expect("token").to_owned();
    let added = w.as_admin(
        "POST",
        &format!("{NODE}/upstreamServers"),
        Some(json!({"baseUrl": "https://bb.example", "type": "bitbucket", "token": "up-s3cret-token"})),
    );
    let upstream = added.body["id"].as_str().expect("id").to_owned();
    let f = Farm { w, node, upstream };
    let discovery = lease(&f).body;
    assert_eq!(discovery["kind"], "DISCOVER", "{discovery}");
    let listed: Vec<Value> = (10..13)
        .map(|i| {
            json!({"projectId": "1", "projectKey": "P1", "projectName": "P1", "repoId": i.to_string(),
                "slug": format!("repo-{i}"), "name": format!("Repo {i}"),
                "cloneUrl": format!("https://bb.example/scm/p1/repo-{i}.git")})
        })
        .collect();
    report(&f, &discovery, json!({"outcome": "pushed", "discovered": listed}));
    for _ in 0..3 {
        let pull = lease(&f).body;
        assert_eq!(pull["kind"], "PULL_MIRROR", "{pull}");
        report(&f, &pull, json!({"outcome": "pushed", "contentHash": hash('c'), "fingerprint": hash('f')}));
    }
    assert_eq!(lease(&f).status, 204, "the first syncs are done");
    f
}

#[test]
fn one_listing_polls_the_farm_and_only_moved_hashes_are_pulled() {
    let f = farm();
    // The cron queues one hash poll for the upstream and no poll per repository.
    assert_eq!(cron(&f, 61), 1);
    assert_eq!(queued(&f), ["UPSTREAM_POLL POLL upstream"]);
    let poll = lease(&f).body;
    assert_eq!(poll["kind"], "UPSTREAM_POLL", "{poll}");
    assert_eq!(
        (poll["discovery"]["apiBaseUrl"].as_str(), poll["discovery"]["token"].as_str()),
        (Some("https://bb.example"), Some("up-s3cret-token")),
        "the listing is made with the upstream's token"
    );
    assert_eq!(cron(&f, 62), 0, "no second hash poll while one runs");

    // Nothing recorded yet: every repository is pulled once (its refs compared first: POLL), and
    // entries that name no farm repository or are malformed change nothing.
    let listing = |h10: &str, h11: &str, h12: &str| {
        json!({"outcome": "pushed", "contentHashes": [
            {"repoId": "10", "contentHash": h10}, {"repoId": "11", "contentHash": h11},
            {"repoId": "12", "contentHash": h12}, {"repoId": "99", "contentHash": hash('9')},
            {"repoId": "10", "contentHash": "not hex"}
        ]})
    };
    report(&f, &poll, listing(&hash('1'), &hash('2'), crate::farm::ZERO_HASH));
    let pulls = |slugs: &[&str]| -> Vec<String> { slugs.iter().map(|s| format!("PULL_MIRROR POLL {s}")).collect() };
    assert_eq!(queued(&f), pulls(&["repo-10", "repo-11", "repo-12"]));
    let server = f.w.as_admin("GET", &format!("{UP}/{}", f.upstream), None);
    assert_eq!(
        (server.body["publishesContentHashes"].as_bool(), server.body["hashesListedAt"].as_i64()),
        (Some(true), Some(T0)),
        "{}",
        server.raw
    );
    assert_eq!((hashes_of(&f, "10"), hashes_of(&f, "12")), (("".into(), hash('1')), ("".into(), "".into())));
    // 10 and 12 pull (or find nothing new); 11 fails, and its pull waits for its retry.
    for _ in 0..3 {
        let pull = lease(&f).body;
        assert_eq!(pull["reason"], "POLL");
        let outcome = if pull["repository"]["slug"] == "repo-11" { "error" } else { "unchanged" };
        report(&f, &pull, json!({"outcome": outcome, "message": "upstream unreachable"}));
    }
    assert_eq!(hashes_of(&f, "10"), (hash('1'), String::new()), "a success: synced to the listed hash");
    assert_eq!(hashes_of(&f, "11"), (String::new(), hash('2')), "a failure: still to reach it");
    assert_eq!(hashes_of(&f, "12"), (String::new(), String::new()), "zeros are never recorded");
    assert_eq!(queued(&f), pulls(&["repo-11"]), "the retry");

    // The next listing, with nothing moved: 10 is current; 11 never reached its hash (its
    // waiting retry stands for the pull) and 12's says nothing (zeros), so 12 is pulled again.
    assert_eq!(cron(&f, 122), 1);
    let poll = lease(&f).body;
    report(&f, &poll, listing(&hash('1'), &hash('2'), crate::farm::ZERO_HASH));
    assert_eq!(queued(&f), pulls(&["repo-11", "repo-12"]));
    let pull = lease(&f).body;
    assert_eq!(pull["repository"]["slug"], "repo-12", "11 waits for its backoff");
    report(&f, &pull, json!({"outcome": "pushed", "contentHash": hash('c')}));

    // 10 moves upstream: 10 is pulled, and nothing else is added.
    assert_eq!(cron(&f, 183), 1);
    let poll = lease(&f).body;
    report(&f, &poll, listing(&hash('3'), &hash('2'), crate::farm::ZERO_HASH));
    assert_eq!(queued(&f), pulls(&["repo-10", "repo-11", "repo-12"]));
    assert_eq!(hashes_of(&f, "10"), (hash('1'), hash('3')));
}

#[test]
fn an_upstream_that_publishes_no_hashes_is_polled_by_one_listing_of_refs() {
    let f = farm();
    assert_eq!(cron(&f, 61), 1);
    let poll = lease(&f).body;
    assert_eq!(poll["kind"], "UPSTREAM_POLL");
    assert!(poll.get("refPoll").is_none(), "a hash poll lists no refs: {poll}");
    let body = json!({"outcome": "error", "message": "the upstream answered 404 to /rest/mirroring/latest/repos",
        "hashesUnpublished": true});
    report(&f, &poll, body);
    let server = f.w.as_admin("GET", &format!("{UP}/{}", f.upstream), None);
    assert_eq!(server.body["publishesContentHashes"], false, "{}", server.raw);
    assert!(queued(&f).is_empty(), "a refused listing is not tried again by itself");

    // From the next run on, one job polls every farm repository by its refs, and no pull per
    // repository is queued.
    assert_eq!(cron(&f, 122), 1);
    assert_eq!(queued(&f), ["UPSTREAM_POLL POLL upstream"]);
    // Switched off or archived repositories are not listed.
    f.w.db().execute("UPDATE repositories SET archived = 1 WHERE slug = 'repo-12'");
    let poll = lease(&f).body;
    assert_eq!(poll["kind"], "UPSTREAM_POLL", "{poll}");
    let targets = poll["refPoll"].as_array().expect("the repositories to list");
    let id_of = |slug: &str| f.w.db().count(&format!("SELECT id FROM repositories WHERE slug = '{slug}'"));
    let listed: Vec<(i64, &str)> = targets
        .iter()
        .map(|t| (t["repositoryId"].as_i64().unwrap_or_default(), t["url"].as_str().unwrap_or_default()))
        .collect();
    assert_eq!(
        listed,
        [
            (id_of("repo-10"), "https://x-token-auth:up-s3cret-token@bb.example/scm/p1/repo-10.git"),
            (id_of("repo-11"), "https://x-token-auth:up-s3cret-token@bb.example/scm/p1/repo-11.git")
        ],
        "each with the farm's credentials"
    );
    assert_eq!(cron(&f, 123), 0, "no second poll while one runs");

    // 10 is where its last pull left it; 11 moved; a repository of no farm, or not listed, is
    // ignored; one the node could not list (no fingerprint) is pulled, which records why.
    f.w.db().execute("UPDATE repositories SET archived = 0 WHERE slug = 'repo-12'");
    let body = json!({"outcome": "pushed", "polledRefs": [
        {"repositoryId": id_of("repo-10"), "fingerprint": hash('f')},
        {"repositoryId": id_of("repo-11"), "fingerprint": hash('2')},
        {"repositoryId": 9999, "fingerprint": hash('3')}
    ]});
    report(&f, &poll, body);
    assert_eq!(queued(&f), ["PULL_MIRROR POLL repo-11"]);
    let server = f.w.as_admin("GET", &format!("{UP}/{}", f.upstream), None);
    assert_eq!(server.body["refsListedAt"].as_i64(), Some(T0), "{}", server.raw);
    let pull = lease(&f).body;
    report(&f, &pull, json!({"outcome": "pushed", "fingerprint": hash('2')}));

    assert_eq!(cron(&f, 183), 1);
    let poll = lease(&f).body;
    let body = json!({"outcome": "pushed", "polledRefs": [
        {"repositoryId": id_of("repo-10"), "fingerprint": hash('f')},
        {"repositoryId": id_of("repo-11"), "fingerprint": hash('2')},
        {"repositoryId": id_of("repo-12")}
    ]});
    report(&f, &poll, body);
    assert_eq!(queued(&f), ["PULL_MIRROR POLL repo-12"], "11 is current now; 12 could not be listed");
}

#[test]
fn a_listing_under_a_lost_lease_queues_nothing() {
    let f = farm();
    assert_eq!(cron(&f, 61), 1);
    let poll = lease(&f).body;
    let mut stale = poll.clone();
    stale["leaseId"] = json!("0".repeat(32));
    let body = json!({"leaseId": stale["leaseId"], "outcome": "pushed",
        "contentHashes": [{"repoId": "10", "contentHash": hash('1')}]});
    let refused = f.w.as_token(&f.node, "POST", &format!("{NODE}/jobs/{}/result", poll["id"]), Some(body));
    assert_eq!(refused.status, 409, "{}", refused.raw);
    assert!(queued(&f).is_empty(), "nothing queued under a lease the node does not hold");
}
