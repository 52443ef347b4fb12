//! Mirroring a "lots of refs" repository: the runner's `sync` against plain git doing the same
//! job, measured in the same run on the same machine, printed as ratios.
//!
//! Upstream: 100,000 refs (90% branches, 10% tags) over a 1,000-commit history. Scenarios:
//! initial mirror (vs `git clone --mirror` + `git push --mirror`), no-op sync and 121 changed refs
//! (vs `git fetch --prune` + `git push --mirror` from an up-to-date mirror clone).
//! Targets: initial ≤ 1.1×, no-op ≤ 0.3×, 121 changed ≤ 0.6×.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const REFS: usize = 100_000;
const COMMITS: usize = 1_000;

fn git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(args)
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .output()
        .expect("git runs");
    assert!(out.status.success(), "git {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

fn run(what: &str, cmd: &mut Command) -> Duration {
    let start = Instant::now();
    let out = cmd.env("MIRRORFARM_LOG", "warn").env("GIT_CONFIG_GLOBAL", "/dev/null").output().expect("runs");
    let took = start.elapsed();
    assert!(out.status.success(), "{what}: {}", String::from_utf8_lossy(&out.stderr));
    took
}

/// A bare upstream with a linear history and `REFS` refs spread over it (written as packed-refs).
fn make_upstream(root: &Path) -> (PathBuf, Vec<String>) {
    let up = root.join("up.git");
    git(root, &["init", "-q", "--bare", up.to_str().expect("utf8")]);
    let mut fi = Command::new("git")
        .arg("-C")
        .arg(&up)
        .args(["fast-import", "--quiet"])
        .stdin(Stdio::piped())
        .spawn()
        .expect("fast-import");
    let mut stream = String::new();
    for i in 0..COMMITS {
        stream.push_str(&format!(
            "commit refs/heads/main\nmark :{}\ncommitter t <t@example.com> {} +0000\ndata 8\ncommit {:>1}\nM 644 inline f\ndata {}\n{}\n\n",
            i + 1,
            1_600_000_000 + i,
            i % 10,
            format!("{i}").len() + 1,
            i
        ));
    }
    fi.stdin.take().expect("stdin").write_all(stream.as_bytes()).expect("stream");
    assert!(fi.wait().expect("fast-import").success());
    let commits: Vec<String> = git(&up, &["rev-list", "--reverse", "main"]).lines().map(str::to_owned).collect();
    let mut refs: Vec<(String, String)> = (0..REFS)
        .map(|i| {
            let name = if i.is_multiple_of(10) { format!("refs/tags/t{i:06}") } else { format!("refs/heads/b{i:06}") };
            (name, commits[i % (COMMITS - 1)].clone())
        })
        .collect();
    refs.push(("refs/heads/main".into(), commits[COMMITS - 1].clone()));
    refs.sort();
    let mut packed = String::from("# pack-refs with: peeled fully-peeled sorted \n");
    for (name, oid) in &refs {
        packed.push_str(&format!("{oid} {name}\n"));
    }
    std::fs::write(up.join("packed-refs"), packed).expect("packed-refs");
    let _ = std::fs::remove_file(up.join("refs/heads/main"));
    (up, commits)
}

/// Moves 121 branches one commit forward (fast-forwards), via one update-ref transaction.
fn change_refs(up: &Path, commits: &[String], round: usize) {
    let mut script = String::from("start\n");
    for k in 0..121 {
        let i = 1 + (k * 797 + round * 13) % (REFS - 1);
        let i = if i.is_multiple_of(10) { i + 1 } else { i };
        let at = (i + round + 1) % (COMMITS - 1);
        script.push_str(&format!("update refs/heads/b{i:06} {}\n", commits[at + 1]));
    }
    script.push_str("commit\n");
    let mut child = Command::new("git")
        .arg("-C")
        .arg(up)
        .args(["update-ref", "--stdin"])
        .stdin(Stdio::piped())
        .spawn()
        .expect("update-ref");
    child.stdin.take().expect("stdin").write_all(script.as_bytes()).expect("script");
    assert!(child.wait().expect("update-ref").success());
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn report(label: &str, ours: Duration, baseline: Duration, target: f64) {
    let ratio = ours.as_secs_f64() / baseline.as_secs_f64();
    let verdict = if ratio <= target { "meets" } else { "MISSES" };
    println!(
        "{label:<22} ours {:>9.1} ms  git {:>9.1} ms  ratio {ratio:>5.2}×  ({verdict} ≤ {target}×)  {:>10.0} refs/s",
        ms(ours),
        ms(baseline),
        REFS as f64 / ours.as_secs_f64()
    );
}

fn main() {
    let runner = env!("CARGO_BIN_EXE_mirrorfarm-runner");
    let root = std::env::temp_dir().join(format!("mirrorfarm-bench-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    std::fs::create_dir_all(&root).expect("scratch");
    let t0 = Instant::now();
    let (up, commits) = make_upstream(&root);
    println!("fixture: {REFS} refs over {COMMITS} commits, made in {:.1} s", t0.elapsed().as_secs_f64());
    for name in ["ours-target.git", "git-target.git"] {
        git(&root, &["init", "-q", "--bare", name]);
    }
    let p = |n: &str| root.join(n).to_str().expect("utf8").to_owned();
    let ours = |target: &str| {
        let mut c = Command::new(runner);
        c.args(["sync", &p("up.git"), &p(target), "--local", &p("ours-local.git")]);
        c
    };

    // Initial mirror.
    let ours_initial = run("ours initial", &mut ours("ours-target.git"));
    let git_initial = run(
        "git clone --mirror",
        Command::new("git").args(["clone", "-q", "--mirror", &p("up.git"), &p("git-local.git")]),
    ) + run(
        "git push --mirror",
        Command::new("git").args(["-C", &p("git-local.git"), "push", "-q", "--mirror", &p("git-target.git")]),
    );
    assert_eq!(
        git(&root.join("ours-target.git"), &["for-each-ref"]),
        git(&root.join("git-target.git"), &["for-each-ref"])
    );
    report("initial mirror", ours_initial, git_initial, 1.1);

    let baseline_sync = || {
        run(
            "git fetch --prune",
            Command::new("git").args(["-C", &p("git-local.git"), "fetch", "-q", "--prune", "origin"]),
        ) + run(
            "git push --mirror",
            Command::new("git").args(["-C", &p("git-local.git"), "push", "-q", "--mirror", &p("git-target.git")]),
        )
    };
    // No-op sync: best of three each.
    let ours_noop = (0..3).map(|_| run("ours no-op", &mut ours("ours-target.git"))).min().expect("runs");
    let git_noop = (0..3).map(|_| baseline_sync()).min().expect("runs");
    report("no-op sync", ours_noop, git_noop, 0.3);

    // 121 changed refs: three rounds, a fresh change each, best of three each.
    let (mut ours_changed, mut git_changed) = (Duration::MAX, Duration::MAX);
    for round in 0..3 {
        change_refs(&up, &commits, round);
        ours_changed = ours_changed.min(run("ours 121 changed", &mut ours("ours-target.git")));
        git_changed = git_changed.min(baseline_sync());
        assert_eq!(git(&root.join("ours-target.git"), &["for-each-ref"]), git(&root.join("up.git"), &["for-each-ref"]));
    }
    report("121 changed refs", ours_changed, git_changed, 0.6);
    let _ = std::fs::remove_dir_all(&root);
}
