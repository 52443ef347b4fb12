//! GitLab's push-mirror semantics, carried out by the runner between real git repositories the
//! test makes (no mocks): initial and incremental mirror, diverged refs kept or forced, the
//! target-only deletion rule, branch filters, and tags always mirrored.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// A scratch area with a working clone (`work`), its bare upstream (`up.git`) and a target.
struct Fixture {
    root: PathBuf,
}

fn git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(args)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_AUTHOR_NAME", "t")
        .env("GIT_AUTHOR_EMAIL", "t@example.com")
        .env("GIT_COMMITTER_NAME", "t")
        .env("GIT_COMMITTER_EMAIL", "t@example.com")
        .output()
        .expect("git runs");
    assert!(out.status.success(), "git {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

impl Fixture {
    fn new(name: &str) -> Self {
        let root = std::env::temp_dir().join(format!("mf-semantics-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        std::fs::create_dir_all(&root).expect("scratch dir");
        let f = Self { root };
        git(&f.root, &["init", "-q", "-b", "main", "work"]);
        git(&f.root, &["init", "-q", "--bare", "up.git"]);
        git(&f.root, &["init", "-q", "--bare", "target.git"]);
        f.commit("one");
        f
    }

    fn path(&self, name: &str) -> PathBuf {
        self.root.join(name)
    }

    fn commit(&self, msg: &str) -> String {
        git(&self.path("work"), &["commit", "-q", "--allow-empty", "-m", msg]);
        git(&self.path("work"), &["rev-parse", "HEAD"])
    }

    fn publish(&self) {
        git(
            &self.path("work"),
            &[
                "push",
                "-q",
                "--force",
                "--prune",
                self.path("up.git").to_str().expect("utf8"),
                "+refs/heads/*:refs/heads/*",
                "+refs/tags/*:refs/tags/*",
            ],
        );
    }

    fn target_refs(&self) -> String {
        git(&self.path("target.git"), &["for-each-ref", "--format=%(refname) %(objectname:short=7)"])
    }

    fn target_ref(&self, name: &str) -> Option<String> {
        let out = Command::new("git")
            .arg("-C")
            .arg(self.path("target.git"))
            .args(["rev-parse", "--verify", "-q", name])
            .output()
            .expect("git");
        out.status.success().then(|| String::from_utf8_lossy(&out.stdout).trim().to_owned())
    }

    fn runner(&self, cmd: &str, extra: &[&str]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_mirrorfarm-runner"))
            .arg(cmd)
            .arg(self.path("up.git"))
            .arg(self.path("target.git"))
            .arg("--local")
            .arg(self.path("local.git"))
            .args(extra)
            .env("MIRRORFARM_LOG", "warn")
            .output()
            .expect("runner runs")
    }

    fn sync(&self, extra: &[&str]) -> Output {
        self.runner("sync", extra)
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.root);
    }
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

#[test]
fn initial_then_incremental_mirror_pushes_only_changes() {
    let f = Fixture::new("incremental");
    git(&f.path("work"), &["branch", "feature"]);
    git(&f.path("work"), &["tag", "-a", "v1", "-m", "v1"]);
    f.publish();
    let first = f.sync(&[]);
    assert!(first.status.success(), "{first:?}");
    assert_eq!(stdout(&first).trim(), "3 pushed, 0 unchanged");
    assert_eq!(f.target_ref("refs/heads/main"), Some(git(&f.path("work"), &["rev-parse", "HEAD"])));
    let head = f.commit("two");
    f.publish();
    let second = f.sync(&[]);
    assert_eq!(stdout(&second).trim(), "1 pushed, 2 unchanged", "only main moved");
    assert_eq!(f.target_ref("refs/heads/main"), Some(head));
    let plan = stdout(&f.runner("plan", &[]));
    assert!(plan.ends_with("0 to update, 0 held, 3 unchanged\n"), "{plan}");
}

#[test]
fn diverged_target_is_skipped_and_listed_or_forced() {
    let f = Fixture::new("diverged");
    f.publish();
    assert!(f.sync(&[]).status.success());
    // Someone commits straight to the target's main; upstream moves on too.
    let tmp = f.path("other");
    git(&f.root, &["clone", "-q", "-b", "main", f.path("target.git").to_str().expect("utf8"), "other"]);
    git(&tmp, &["commit", "-q", "--allow-empty", "-m", "target only"]);
    git(&tmp, &["push", "-q", "origin", "main"]);
    let diverged_tip = f.target_ref("refs/heads/main");
    let upstream_tip = f.commit("upstream moves");
    f.publish();

    let plan = stdout(&f.runner("plan", &["--keep-divergent-refs"]));
    assert!(plan.contains("skip-diverged") && plan.contains("refs/heads/main"), "{plan}");
    let kept = f.sync(&["--keep-divergent-refs"]);
    assert!(!kept.status.success(), "a skipped diverged ref fails the update");
    let err = String::from_utf8_lossy(&kept.stderr);
    assert!(
        err.contains("Some refs have diverged and have not been updated on the remote:")
            && err.contains("refs/heads/main"),
        "{err}"
    );
    assert_eq!(f.target_ref("refs/heads/main"), diverged_tip, "never forced");

    let forced = f.sync(&[]);
    assert!(forced.status.success(), "{forced:?}");
    assert_eq!(f.target_ref("refs/heads/main"), Some(upstream_tip), "forced to the source");
}

#[test]
fn recorded_target_refs_are_trusted_until_the_recheck_and_never_clobber_a_moved_target() {
    let f = Fixture::new("recorded");
    git(&f.path("work"), &["branch", "feature"]);
    let first = f.commit("two");
    f.publish();
    assert!(f.sync(&[]).status.success());
    // Behind the node's back, the target's main is reset to its parent.
    let parent = git(&f.path("work"), &["rev-parse", "HEAD~1"]);
    git(&f.path("target.git"), &["update-ref", "refs/heads/main", &parent]);
    // Upstream did not move: a sync within the recheck interval trusts its record and talks to
    // the target not at all, so it does not notice...
    let trusted = f.sync(&[]);
    assert_eq!(stdout(&trusted).trim(), "0 pushed, 2 unchanged");
    assert_eq!(f.target_ref("refs/heads/main"), Some(parent.clone()));
    // ...until the record is older than the recheck (here: at once), and the target is listed.
    let rechecked = f.sync(&["--target-recheck", "0"]);
    assert_eq!(stdout(&rechecked).trim(), "1 pushed, 1 unchanged");
    assert_eq!(f.target_ref("refs/heads/main"), Some(first));

    // Someone pushes a commit of their own to the target's `feature`; upstream moves `feature` too.
    let tmp = f.path("other");
    git(&f.root, &["clone", "-q", "-b", "feature", f.path("target.git").to_str().expect("utf8"), "other"]);
    git(&tmp, &["commit", "-q", "--allow-empty", "-m", "target only"]);
    git(&tmp, &["push", "-q", "origin", "feature"]);
    let theirs = f.target_ref("refs/heads/feature");
    git(&f.path("work"), &["checkout", "-q", "feature"]);
    f.commit("upstream feature");
    git(&f.path("work"), &["checkout", "-q", "main"]);
    f.publish();
    // The record says `feature` fast-forwards; git refuses (the target moved), the node lists the
    // target, and keep_divergent_refs keeps their commit.
    let kept = f.sync(&["--keep-divergent-refs"]);
    assert!(!kept.status.success());
    assert!(String::from_utf8_lossy(&kept.stderr).contains("refs/heads/feature"), "{kept:?}");
    assert_eq!(f.target_ref("refs/heads/feature"), theirs, "never clobbered");
}

#[test]
fn target_only_refs_are_deleted_only_when_merged_into_the_default_branch() {
    let f = Fixture::new("deletion");
    git(&f.path("work"), &["branch", "merged"]);
    git(&f.path("work"), &["checkout", "-q", "-b", "unmerged"]);
    f.commit("unmerged work");
    git(&f.path("work"), &["checkout", "-q", "main"]);
    f.publish();
    assert!(f.sync(&[]).status.success());
    // Both branches are deleted upstream; main moves past `merged`.
    f.commit("main moves");
    git(&f.path("work"), &["branch", "-q", "-D", "merged", "unmerged"]);
    f.publish();

    let kept = f.sync(&["--keep-divergent-refs"]);
    assert!(kept.status.success(), "{kept:?}");
    assert!(
        f.target_ref("refs/heads/merged").is_some() && f.target_ref("refs/heads/unmerged").is_some(),
        "keep never deletes"
    );

    assert!(f.sync(&[]).status.success());
    assert_eq!(f.target_ref("refs/heads/merged"), None, "merged into main: deleted");
    assert!(f.target_ref("refs/heads/unmerged").is_some(), "not merged: kept");
}

#[test]
fn branch_filters_select_branches_and_tags_always_go() {
    let f = Fixture::new("filters");
    for b in ["release/1.0", "feature/x"] {
        git(&f.path("work"), &["branch", b]);
    }
    git(&f.path("work"), &["tag", "v1"]);
    f.publish();

    assert!(f.sync(&["--only-protected-branches"]).status.success());
    assert_eq!(
        f.target_refs().lines().map(|l| l.split(' ').next().unwrap_or_default()).collect::<Vec<_>>(),
        ["refs/heads/main", "refs/tags/v1"]
    );

    let g = Fixture::new("regex");
    for b in ["release/1.0", "feature/x"] {
        git(&g.path("work"), &["branch", b]);
    }
    git(&g.path("work"), &["tag", "v1"]);
    g.publish();
    assert!(g.sync(&["--mirror-branch-regex", "^release/"]).status.success());
    assert_eq!(
        g.target_refs().lines().map(|l| l.split(' ').next().unwrap_or_default()).collect::<Vec<_>>(),
        ["refs/heads/release/1.0", "refs/tags/v1"]
    );
    let bad = g.sync(&["--mirror-branch-regex", "(("]);
    assert!(!bad.status.success());
}

#[test]
fn pull_mirror_overwrites_rewritten_upstream_only_when_asked() {
    let f = Fixture::new("pull");
    git(&f.path("work"), &["branch", "doomed"]);
    f.commit("two");
    f.publish();
    let pull = |extra: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_mirrorfarm-runner"))
            .arg("pull")
            .arg(f.path("up.git"))
            .arg(f.path("copy.git"))
            .args(extra)
            .env("MIRRORFARM_LOG", "warn")
            .output()
            .expect("runner runs")
    };
    assert!(pull(&[]).status.success());
    let copy = |r: &str| {
        let out = Command::new("git")
            .arg("-C")
            .arg(f.path("copy.git"))
            .args(["rev-parse", "--verify", "-q", r])
            .output()
            .expect("git");
        out.status.success().then(|| String::from_utf8_lossy(&out.stdout).trim().to_owned())
    };
    let before = copy("refs/heads/main");
    // Upstream rewrites main (drops "two") and deletes a branch.
    git(&f.path("work"), &["reset", "-q", "--hard", "HEAD~1"]);
    let rewritten = f.commit("rewritten");
    git(&f.path("work"), &["branch", "-q", "-D", "doomed"]);
    f.publish();

    let kept = pull(&[]);
    assert!(!kept.status.success(), "a kept rewrite fails the pull");
    let err = String::from_utf8_lossy(&kept.stderr);
    assert!(err.contains("diverged upstream") && err.contains("refs/heads/main"), "{err}");
    assert_eq!(copy("refs/heads/main"), before, "history is not lost without overwrite");
    assert!(copy("refs/heads/doomed").is_some(), "deletions are not followed without overwrite");

    let overwritten = pull(&["--overwrite-diverged-branches"]);
    assert!(overwritten.status.success(), "{overwritten:?}");
    assert_eq!(copy("refs/heads/main"), Some(rewritten));
    assert_eq!(copy("refs/heads/doomed"), None);
}
