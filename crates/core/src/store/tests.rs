//! The storage SQL on real SQLite with the real migrations: batches are all or nothing, and
//! writers of different columns never undo each other.

use super::port::{Database, sql};
use super::sqlite::SqliteDatabase;
use super::*;
use crate::mirrors::{AuthMethod, UpdateState, UpdateStatus};
use crate::registry::{NewProject, NewRepository};
use crate::test_support::block_on;
use crate::urls::StoredUrl;

fn store_with_repository() -> (Store<SqliteDatabase>, i64) {
    let store = Store::new(SqliteDatabase::migrated());
    let repo = block_on(async {
        let project = store
            .insert_project(&NewProject {
                key: "ST".into(),
                name: "Store".into(),
                description: None,
                public: false,
                created_at: Timestamp(1),
            })
            .await
            .expect("project");
        store
            .insert_repository(&NewRepository {
                project_id: project.id,
                slug: "r".into(),
                name: "r".into(),
                description: None,
                default_branch: "main".into(),
                public: false,
                forkable: true,
                upstream: None,
                hierarchy_id: "h".into(),
                origin_id: None,
                created_at: Timestamp(1),
            })
            .await
            .expect("repository")
    });
    (store, repo.id)
}

fn mirror(repository_id: i64) -> RemoteMirror {
    RemoteMirror {
        id: 0,
        repository_id,
        url: StoredUrl { plain: "https://e.com/x".into(), masked: "https://e.com/x".into(), sealed_userinfo: None },
        enabled: true,
        only_protected_branches: false,
        keep_divergent_refs: false,
        mirror_branch_regex: None,
        auth_method: AuthMethod::Password,
        ssh: None,
        update: UpdateState::default(),
        created_at: Timestamp(1),
        updated_at: Timestamp(1),
    }
}

#[test]
fn a_batch_whose_later_statement_fails_writes_nothing() {
    let (store, repo) = store_with_repository();
    let db = store.database();
    let result = block_on(db.batch(vec![
        sql!("INSERT INTO repository_triggers (repository_id, webhook_secret_sealed) VALUES (?1, 's')", repo),
        sql!(
            "INSERT INTO jobs (kind, repository_id, reason, enqueued_at) VALUES ('PULL_MIRROR', ?1, 'MANUAL', 1)",
            repo
        ),
        // A third statement that breaks a constraint: the repository's slug is taken.
        sql!(
            "INSERT INTO repositories (project_id, slug, name, default_branch, hierarchy_id, created_at) \
             SELECT project_id, slug, name, default_branch, 'x', 1 FROM repositories WHERE id = ?1",
            repo
        ),
    ]));
    assert!(matches!(result, Err(DatabaseError::Unique(_))), "{result:?}");
    assert_eq!(db.count("SELECT COUNT(*) FROM repository_triggers"), 0);
    assert_eq!(db.count("SELECT COUNT(*) FROM jobs"), 0);
    assert_eq!(
        StoreError::from(result.expect_err("failed")),
        StoreError::Conflict("A repository with that name already exists in this project.".into())
    );
}

#[test]
fn a_settings_change_keeps_a_result_recorded_meanwhile() {
    let (store, repo) = store_with_repository();
    block_on(async {
        let read = store.insert_remote_mirror(&mirror(repo), None).await.expect("insert");
        // A node records a result after the user's request read the mirror…
        let mut done = read.clone();
        done.update.status = UpdateStatus::Finished;
        done.update.last_successful_update_at = Some(Timestamp(5));
        store.record_update(SavedMirror::Push(&done), None).await.expect("record");
        // …then the user's change (same URL: no reset) is saved from what it read.
        let mut changed = read.clone();
        changed.keep_divergent_refs = true;
        store.update_remote_mirror(&changed, false, false, None).await.expect("update");
        let now = store.remote_mirror(repo, read.id).await.expect("read").expect("exists");
        assert!(now.keep_divergent_refs, "the user's change is saved");
        assert_eq!(now.update.status, UpdateStatus::Finished, "and the node's result is kept");
        // A new URL resets the state on purpose.
        store.update_remote_mirror(&changed, true, false, None).await.expect("reset");
        let reset = store.remote_mirror(repo, read.id).await.expect("read").expect("exists");
        assert_eq!(reset.update.status, UpdateStatus::None);
    });
}

/// Leases the repository's queued pull and reports it pulled with `fingerprint`.
async fn pull_reported(store: &Store<SqliteDatabase>, repo: i64, fingerprint: &str, lease_id: &str) {
    let pull = crate::queue::NewJob {
        kind: crate::queue::JobKind::PullMirror,
        repository_id: repo,
        remote_mirror_id: None,
        reason: crate::queue::JobReason::Manual,
        enqueued_at: Timestamp(1),
    };
    store.enqueue(&pull).await.expect("enqueue");
    let db = store.database();
    db.execute("INSERT OR IGNORE INTO farm_nodes (id, name, lookup, hash, created_at) VALUES (1, 'n', 'l', 'h', 0)");
    let (now, deadline) = (Timestamp(10), Timestamp(100_000));
    let poll = store.poll_for_job(1, lease_id, now, deadline, Some(repo), now, 10).await.expect("poll");
    let job = poll.leased.expect("the pull is leased");
    // Its context came in the same round trip, the same as read apart.
    let context = poll.context.expect("read with the lease");
    let apart = store.job_context_of(job.id, Some(job.kind)).await.expect("context");
    assert_eq!(format!("{context:?}"), format!("{apart:?}"));
    assert_eq!(context.repository.map(|r| r.id), Some(repo));
    let done = crate::queue::JobCompletion::Done;
    let after = store
        .finish_job(
            job.id,
            lease_id,
            done,
            Some(crate::store::Reported::outcome_only("pushed", "")),
            now,
            None,
            Some((repo, fingerprint)),
            None,
        )
        .await;
    assert_eq!(after.expect("finish").0.expect("lease held").0.state, crate::queue::JobState::Done);
}

#[test]
fn a_report_and_the_next_lease_share_one_batch_and_a_refused_report_leases_nothing() {
    let (store, repo) = store_with_repository();
    block_on(async {
        store.insert_remote_mirror(&mirror(repo), None).await.expect("mirror");
        let pull = crate::queue::NewJob {
            kind: crate::queue::JobKind::PullMirror,
            repository_id: repo,
            remote_mirror_id: None,
            reason: crate::queue::JobReason::Webhook,
            enqueued_at: Timestamp(1),
        };
        store.enqueue(&pull).await.expect("enqueue");
        store
            .database()
            .execute("INSERT INTO farm_nodes (id, name, lookup, hash, created_at) VALUES (1, 'n', 'l', 'h', 0)");
        let (now, deadline) = (Timestamp(10), Timestamp(100_000));
        let leased = store.poll_for_job(1, "lease-1", now, deadline, None, now, 10).await.expect("poll");
        let job = leased.leased.expect("the pull");
        let next = PollAsked {
            node_id: 1,
            lease_id: "lease-2",
            now,
            deadline,
            repository: None,
            contact_since: now,
            expired_limit: 10,
        };
        // Another repository's pull waits, due: a poll would lease it.
        let project = store.database().count("SELECT project_id FROM repositories WHERE id = 1");
        let other = store
            .insert_repository(&NewRepository {
                project_id: project,
                slug: "other".into(),
                name: "other".into(),
                description: None,
                default_branch: "main".into(),
                public: false,
                forkable: true,
                upstream: None,
                hierarchy_id: "h2".into(),
                origin_id: None,
                created_at: Timestamp(1),
            })
            .await
            .expect("repository");
        store.enqueue(&crate::queue::NewJob { repository_id: other.id, ..pull.clone() }).await.expect("enqueue");
        // A refused report (not this job's lease) writes nothing and leases nothing.
        let reported = || Some(Reported::outcome_only("pushed", ""));
        let done = crate::queue::JobCompletion::Done;
        let (after, poll) = store
            .finish_job(job.id, "lease-x", done, reported(), now, None, Some((repo, "fp1")), Some(&next))
            .await
            .expect("batch");
        assert!(after.is_none() && poll.expect("polled").leased.is_none());
        assert_eq!(store.database().count("SELECT COUNT(*) FROM jobs WHERE state = 'LEASED'"), 1);
        // The pull's report queues the push (a new fingerprint), which the same batch leases.
        let (after, poll) = store
            .finish_job(job.id, "lease-1", done, reported(), now, None, Some((repo, "fp1")), Some(&next))
            .await
            .expect("batch");
        assert_eq!(after.expect("held").0.state, crate::queue::JobState::Done);
        let poll = poll.expect("polled");
        // The oldest due job: the other repository's pull, then (next report) the push it queued.
        let first = poll.leased.expect("the next job");
        assert_eq!((first.kind, first.repository_id), (crate::queue::JobKind::PullMirror, Some(other.id)));
        assert!(poll.context.expect("with its context").repository.is_some_and(|r| r.id == other.id));
        let next = PollAsked { lease_id: "lease-3", ..next };
        let (after, poll) =
            store.finish_job(first.id, "lease-2", done, reported(), now, None, None, Some(&next)).await.expect("batch");
        assert!(after.is_some());
        let poll = poll.expect("polled");
        let push = poll.leased.expect("the push mirror's job, queued by the first report");
        assert_eq!(push.kind, crate::queue::JobKind::PushMirror);
        assert!(poll.context.expect("with its context").remote_mirror.is_some());
        assert_eq!(
            store.database().count("SELECT COUNT(*) FROM jobs WHERE state = 'LEASED' AND lease_id = 'lease-3'"),
            1
        );
    });
}

#[test]
fn webhook_secret_fingerprint_and_polls_are_separate_writes() {
    let (store, repo) = store_with_repository();
    let pushes = "SELECT COUNT(*) FROM jobs WHERE kind = 'PUSH_MIRROR' AND state = 'QUEUED'";
    block_on(async {
        store.insert_remote_mirror(&mirror(repo), None).await.expect("mirror");
        store.set_webhook_secret(repo, Some("sealed")).await.expect("secret");
        pull_reported(&store, repo, "fp1", "lease-1").await;
        assert_eq!(store.database().count(pushes), 1, "a new fingerprint queues the push mirrors");
        store.database().execute("DELETE FROM jobs WHERE kind = 'PUSH_MIRROR'");
        pull_reported(&store, repo, "fp1", "lease-2").await;
        assert_eq!(store.database().count(pushes), 0, "the same fingerprint queues nothing");
        let t = store.triggers(repo).await.expect("triggers");
        assert_eq!(t.webhook_secret_sealed.as_deref(), Some("sealed"));
        assert_eq!(t.upstream_fingerprint.as_deref(), Some("fp1"));
        store.set_webhook_secret(repo, None).await.expect("remove");
        let t = store.triggers(repo).await.expect("triggers");
        assert_eq!((t.webhook_secret_sealed, t.upstream_fingerprint.as_deref()), (None, Some("fp1")));
    });
}

#[test]
fn finished_history_is_pruned_to_the_newest_per_target() {
    let (store, repo) = store_with_repository();
    let db = store.database();
    let now = Timestamp(crate::queue::KEPT_HISTORY_MS * 2);
    db.execute(&format!(
        "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 30) \
         INSERT INTO jobs (kind, repository_id, reason, state, enqueued_at, finished_at) \
         SELECT 'PULL_MIRROR', {repo}, 'POLL', 'DONE', i, {} FROM n",
        now.millis()
    ));
    db.execute(&format!(
        "INSERT INTO jobs (kind, repository_id, reason, state, enqueued_at, finished_at) \
         VALUES ('PULL_MIRROR', {repo}, 'POLL', 'FAILED', 0, 1)"
    ));
    let deleted = block_on(store.prune_job_history(now)).expect("prune");
    // 31 finished: the 11 beyond the newest 20 go, and so does the newest, which finished too
    // long ago.
    assert_eq!(deleted, 12);
    assert_eq!(db.count("SELECT COUNT(*) FROM jobs"), crate::queue::KEPT_FINISHED_PER_TARGET - 1);
    assert_eq!(db.count("SELECT COUNT(*) FROM jobs WHERE state = 'FAILED'"), 0);
    assert_eq!(block_on(store.prune_job_history(now)).expect("again"), 0);
}
