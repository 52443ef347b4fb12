//! The `git` binary as transport, and local ref reading and ancestry.
//!
//! Credentials never appear in a command line or a remote URL: the URL git sees has none, and a
//! one-line credential helper reads them from the child's environment. Git runs with system and
//! global configuration disabled, so the node behaves the same on every machine.

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};

use gix_hash::ObjectId;
use mirrorfarm_core::api::decode_segment;
use mirrorfarm_core::sync::{Ancestry, RefUpdate, Refs};
use mirrorfarm_core::urls::{GitUrl, scrub_text};

/// Why a git operation failed. Messages are scrubbed of credentials.
#[derive(Debug, thiserror::Error)]
pub(crate) enum GitError {
    /// git could not be started.
    #[error("could not run git: {0}")]
    Spawn(#[from] std::io::Error),
    /// git ran and failed; the text is its (scrubbed) standard error.
    #[error("git {command} failed: {stderr}")]
    Failed {
        /// The subcommand.
        command: String,
        /// What git said.
        stderr: String,
    },
    /// A URL the node was given is not usable.
    #[error("bad remote url: {0}")]
    Url(String),
    /// git printed something that is not a ref listing.
    #[error("unreadable ref listing line {0:?}")]
    Listing(String),
}

/// A remote as git should see it: a URL without credentials, plus the credentials apart.
pub(crate) struct Remote {
    url: String,
    masked: String,
    username: Option<String>,
    password: Option<String>,
    /// `GIT_SSH_COMMAND` for an `ssh://` remote reached with a key of its own.
    ssh_command: Option<String>,
}

impl Remote {
    /// The same remote, reached over SSH with `command` (see [`crate::ssh_push`]).
    pub(crate) fn with_ssh_command(mut self, command: String) -> Self {
        self.ssh_command = Some(command);
        self
    }

    /// Splits a URL (possibly with `user:password@`) or a local path.
    pub(crate) fn parse(text: &str) -> Result<Self, GitError> {
        if !text.contains("://") {
            // A local path (tests, `sync` between directories): no credentials possible.
            return Ok(Self {
                url: text.to_owned(),
                masked: text.to_owned(),
                username: None,
                password: None,
                ssh_command: None,
            });
        }
        let parsed = GitUrl::parse(text).map_err(|e| GitError::Url(format!("{}: {e}", scrub_text(text))))?;
        let (username, password) = match parsed.userinfo() {
            None => (None, None),
            Some(info) => {
                let (u, p) = info.split_once(':').map_or((info.as_str(), None), |(u, p)| (u, Some(p)));
                (decode_segment(u), p.and_then(decode_segment))
            }
        };
        // ssh carries the user in the URL (it is not a secret there); http(s) gets it from the helper.
        let url = match (parsed.scheme(), &username) {
            ("ssh", Some(user)) => parsed.with_userinfo(Some(user)),
            _ => parsed.without_credentials(),
        };
        Ok(Self { url, masked: parsed.masked(), username, password, ssh_command: None })
    }

    /// The URL git is given (never with credentials).
    pub(crate) fn url(&self) -> &str {
        &self.url
    }

    /// The URL with credentials masked, for logs.
    pub(crate) fn masked(&self) -> &str {
        &self.masked
    }
}

/// Where fetched upstream refs wait until the plan has decided what the copy takes.
pub(crate) const STAGING: &str = "refs/mirrorfarm/upstream";

/// Runs git for one local repository (or none).
#[derive(Debug, Clone)]
pub(crate) struct Git {
    dir: Option<PathBuf>,
}

impl Git {
    /// Git in `dir` (a bare repository).
    pub(crate) fn in_dir(dir: impl Into<PathBuf>) -> Self {
        Self { dir: Some(dir.into()) }
    }

    /// Git outside any repository (for `ls-remote`).
    pub(crate) fn detached() -> Self {
        Self { dir: None }
    }

    fn command(&self, remote: Option<&Remote>) -> Command {
        let mut cmd = Command::new("git");
        if let Some(dir) = &self.dir {
            cmd.arg("--git-dir").arg(dir);
        }
        cmd.env("GIT_CONFIG_NOSYSTEM", "1")
            .env("GIT_CONFIG_GLOBAL", "/dev/null")
            .env("GIT_TERMINAL_PROMPT", "0")
            .env("GIT_ASKPASS", "true")
            .env("LC_ALL", "C");
        if let Some(command) = remote.and_then(|r| r.ssh_command.as_deref()) {
            cmd.env("GIT_SSH_COMMAND", command);
        }
        if let Some(remote) = remote.filter(|r| r.username.is_some() || r.password.is_some()) {
            cmd.env("GIT_CONFIG_COUNT", "2")
                .env("GIT_CONFIG_KEY_0", "credential.helper")
                .env(
                    "GIT_CONFIG_VALUE_0",
                    "!f() { test \"$1\" = get && printf 'username=%s\\npassword=%s\\n' \"$MF_GIT_USERNAME\" \"$MF_GIT_PASSWORD\"; }; f",
                )
                // Send them with the first request (git ≥ 2.46; older git ignores the key):
                // otherwise every git command spends a round trip on a 401 first, about 15 ms
                // of each fetch and push on a local network, more across one.
                .env("GIT_CONFIG_KEY_1", "http.proactiveAuth")
                .env("GIT_CONFIG_VALUE_1", "basic")
                .env("MF_GIT_USERNAME", remote.username.as_deref().unwrap_or_default())
                .env("MF_GIT_PASSWORD", remote.password.as_deref().unwrap_or_default());
        }
        cmd
    }

    fn run(&self, remote: Option<&Remote>, args: &[&str]) -> Result<Output, GitError> {
        let output = self.command(remote).args(args).output()?;
        if output.status.success() {
            Ok(output)
        } else {
            Err(GitError::Failed {
                command: args.first().copied().unwrap_or_default().to_owned(),
                stderr: scrub_text(String::from_utf8_lossy(&output.stderr).trim()),
            })
        }
    }

    /// Creates the bare repository if it does not exist.
    pub(crate) fn ensure_bare(&self) -> Result<(), GitError> {
        let dir = self.dir.as_deref().ok_or_else(|| GitError::Url("no repository directory".into()))?;
        if dir.join("HEAD").exists() {
            return Ok(());
        }
        std::fs::create_dir_all(dir)?;
        // reftable (git ≥ 2.45) keeps 100k-ref copies fast: one table per transaction instead of
        // a loose file per ref. Older git falls back to the files backend.
        let reftable =
            Command::new("git").args(["init", "--bare", "--quiet", "--ref-format=reftable"]).arg(dir).output()?;
        if !reftable.status.success() {
            Command::new("git").args(["init", "--bare", "--quiet"]).arg(dir).output()?;
        }
        Ok(())
    }

    /// Whether the repository exists yet.
    pub(crate) fn exists(&self) -> bool {
        self.dir.as_deref().is_some_and(|d| d.join("HEAD").exists())
    }

    /// The repository's own directory (where the node keeps its records too).
    pub(crate) fn dir(&self) -> Option<&std::path::Path> {
        self.dir.as_deref()
    }

    /// Makes the copy by cloning every branch and tag of `upstream` — the fastest way to a new
    /// exact copy. It clones beside the destination and renames, so an interrupted clone never
    /// looks like a copy.
    pub(crate) fn clone_from(&self, upstream: &Remote) -> Result<(), GitError> {
        let dir = self.dir.as_deref().ok_or_else(|| GitError::Url("no repository directory".into()))?;
        let partial = dir.with_extension("partial");
        if partial.exists() {
            std::fs::remove_dir_all(&partial)?;
        }
        if let Some(parent) = dir.parent() {
            std::fs::create_dir_all(parent)?;
        }
        let partial_text = partial.to_string_lossy().into_owned();
        let clone = |format: &[&str]| {
            // A bare clone maps branches straight across and brings every tag.
            let mut args = vec!["clone", "--bare", "--quiet"];
            args.extend(format);
            args.extend([upstream.url.as_str(), partial_text.as_str()]);
            Git::detached().run(Some(upstream), &args)
        };
        // See `ensure_bare` for why reftable; git before 2.45 does not know the option.
        match clone(&["--ref-format=reftable"]) {
            Err(GitError::Failed { stderr, .. }) if stderr.contains("ref-format") => clone(&[])?,
            other => other?,
        };
        std::fs::rename(&partial, dir)?;
        Ok(())
    }

    /// Fetches every branch and tag of `upstream` into a staging namespace
    /// (`refs/mirrorfarm/upstream/…`), leaving the copy's own refs alone. `--atomic` makes it
    /// all-or-nothing (and, with reftable, one table instead of one per ref).
    pub(crate) fn fetch_staged(&self, upstream: &Remote) -> Result<(), GitError> {
        self.fetch_into_staging(
            upstream,
            &["+refs/heads/*:refs/mirrorfarm/upstream/heads/*", "+refs/tags/*:refs/mirrorfarm/upstream/tags/*"],
        )
    }

    /// Fetches just the named branches and tags into the staging namespace: for a few changed
    /// refs, upstream then advertises only those.
    pub(crate) fn fetch_staged_names(&self, upstream: &Remote, names: &[&str]) -> Result<(), GitError> {
        let specs: Vec<String> =
            names.iter().filter_map(|n| n.strip_prefix("refs/").map(|rest| format!("+{n}:{STAGING}/{rest}"))).collect();
        self.fetch_into_staging(upstream, &specs.iter().map(String::as_str).collect::<Vec<_>>())
    }

    /// Fetches refs (names or wildcards like `refs/heads/*`) from `upstream` straight into the
    /// same names here, forced, in one transaction; returns the refs it changed, as git reports them.
    pub(crate) fn fetch_into_place(&self, upstream: &Remote, names: &[&str]) -> Result<Refs, GitError> {
        let changed = self.fetch_porcelain(upstream, names, false)?;
        Ok(changed.into_iter().filter_map(|(name, new)| Some((name, new?))).collect())
    }

    /// Makes this copy's branches and tags exactly upstream's in one `git fetch` (forced,
    /// pruning, one transaction), without listing upstream first; returns each ref that changed
    /// with its new tip, `None` where it was deleted.
    pub(crate) fn fetch_all_into_place(&self, upstream: &Remote) -> Result<Vec<(String, Option<ObjectId>)>, GitError> {
        self.fetch_porcelain(upstream, &["refs/heads/*", "refs/tags/*"], true)
    }

    fn fetch_porcelain(
        &self,
        upstream: &Remote,
        names: &[&str],
        prune: bool,
    ) -> Result<Vec<(String, Option<ObjectId>)>, GitError> {
        let specs: Vec<String> = names.iter().map(|n| format!("+{n}:{n}")).collect();
        let mut args = vec![
            "fetch",
            "--atomic",
            "--porcelain",
            "--force",
            "--no-tags",
            "--no-write-fetch-head",
            // Not --quiet: it silences --porcelain too.
            "--no-progress",
        ];
        if prune {
            args.push("--prune");
        }
        args.push(upstream.url.as_str());
        args.extend(specs.iter().map(String::as_str));
        let out = self.run(Some(upstream), &args)?;
        // `<flag> <old> <new> <ref>` per ref (new all zeros: pruned); `!` would be a rejection,
        // and --atomic fails then.
        let text = String::from_utf8_lossy(&out.stdout);
        let mut changed = Vec::new();
        for line in text.lines().filter(|l| !l.is_empty()) {
            let mut fields = line[1..].split_whitespace();
            let (Some(_old), Some(new), Some(name)) = (fields.next(), fields.next(), fields.next()) else {
                return Err(GitError::Listing(line.to_owned()));
            };
            let oid = ObjectId::from_hex(new.as_bytes()).map_err(|_| GitError::Listing(line.to_owned()))?;
            changed.push((name.to_owned(), (!oid.is_null()).then_some(oid)));
        }
        Ok(changed)
    }

    fn fetch_into_staging(&self, upstream: &Remote, refspecs: &[&str]) -> Result<(), GitError> {
        let mut args = vec![
            "fetch",
            "--atomic",
            "--force",
            "--no-tags",
            "--no-write-fetch-head",
            "--quiet",
            upstream.url.as_str(),
        ];
        args.extend(refspecs);
        self.run(Some(upstream), &args).map(|_| ())
    }

    /// The staged upstream refs, named as upstream names them (`refs/heads/…`, `refs/tags/…`).
    pub(crate) fn staged_refs(&self) -> Result<Refs, GitError> {
        let staged = self.refs_under(STAGING)?;
        Ok(staged.into_iter().map(|(name, oid)| (name.replacen(STAGING, "refs", 1), oid)).collect())
    }

    /// Applies ref updates to the local copy in one transaction, each checked against the old
    /// value the plan saw (a concurrent change aborts the whole transaction).
    pub(crate) fn apply(&self, updates: &[RefUpdate]) -> Result<(), GitError> {
        if updates.is_empty() {
            return Ok(());
        }
        let zero = ObjectId::null(gix_hash::Kind::Sha1).to_string();
        let mut script = String::from("start\n");
        for u in updates {
            let old = u.old.map_or(zero.clone(), |o| o.to_string());
            match u.new {
                Some(new) => script.push_str(&format!("update {} {new} {old}\n", u.name)),
                None => script.push_str(&format!("delete {} {old}\n", u.name)),
            }
        }
        script.push_str("commit\n");
        let mut child = self
            .command(None)
            .args(["update-ref", "--stdin"])
            .stdin(Stdio::piped())
            .stderr(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()?;
        child.stdin.take().ok_or_else(|| GitError::Url("no stdin".into()))?.write_all(script.as_bytes())?;
        let out = child.wait_with_output()?;
        if out.status.success() {
            Ok(())
        } else {
            Err(GitError::Failed {
                command: "update-ref".into(),
                stderr: scrub_text(String::from_utf8_lossy(&out.stderr).trim()),
            })
        }
    }

    /// The local branches and tags.
    pub(crate) fn local_refs(&self) -> Result<Refs, GitError> {
        let out = self.run(None, &["for-each-ref", "--format=%(objectname) %(refname)", "refs/heads", "refs/tags"])?;
        parse_listing(&out.stdout, ' ')
    }

    /// The remote's branches and tags (`ls-remote`), peeled entries left out.
    pub(crate) fn remote_refs(&self, remote: &Remote) -> Result<Refs, GitError> {
        let out = self.run(Some(remote), &["ls-remote", "--heads", "--tags", &remote.url])?;
        parse_listing(&out.stdout, '\t')
    }

    /// Writes a bundle of every branch and tag to `out` (a migration export).
    pub(crate) fn create_bundle(&self, out: &std::path::Path) -> Result<(), GitError> {
        let out = out.to_string_lossy();
        self.run(None, &["bundle", "create", "--quiet", &out, "--branches", "--tags"]).map(drop)
    }

    /// Fetches every branch and tag of the bundle at `bundle` into this (bare) repository, as
    /// they are there (a migration import).
    pub(crate) fn fetch_bundle(&self, bundle: &std::path::Path) -> Result<(), GitError> {
        let bundle = bundle.to_string_lossy();
        self.run(None, &["fetch", "--quiet", &bundle, "+refs/heads/*:refs/heads/*", "+refs/tags/*:refs/tags/*"])
            .map(drop)
    }

    /// Refs under a namespace prefix (for clearing scratch namespaces).
    pub(crate) fn refs_under(&self, prefix: &str) -> Result<Refs, GitError> {
        let out = self.run(None, &["for-each-ref", "--format=%(objectname) %(refname)", prefix])?;
        parse_listing(&out.stdout, ' ')
    }

    /// Pushes refspecs to the remote, atomically where the remote allows it. Each lease
    /// (`<ref>:<expected oid or empty>`) makes git refuse the push unless the remote ref still has
    /// the value the plan assumed.
    pub(crate) fn push(&self, remote: &Remote, refspecs: &[String], leases: &[String]) -> Result<(), GitError> {
        let leases: Vec<String> = leases.iter().map(|l| format!("--force-with-lease={l}")).collect();
        let mut args = vec!["push", "--porcelain", "--quiet", "--atomic"];
        args.extend(leases.iter().map(String::as_str));
        args.push(remote.url.as_str());
        args.extend(refspecs.iter().map(String::as_str));
        match self.run(Some(remote), &args) {
            Err(GitError::Failed { stderr, .. }) if stderr.contains("atomic") && stderr.contains("support") => {
                args.retain(|a| *a != "--atomic");
                self.run(Some(remote), &args).map(|_| ())
            }
            other => other.map(|_| ()),
        }
    }
}

/// A copy whose packs index more objects than this is worth a reachability bitmap: clones served
/// from it then skip walking its history (a 10,000-commit clone took 1.7× git daemon's time
/// without one). Small copies are served fast without, and are not repacked.
const BITMAP_OBJECTS: u64 = 5_000;

impl Git {
    /// Writes a reachability bitmap (`git repack -a -d -b`) if the copy's packs hold more than
    /// [`BITMAP_OBJECTS`] objects and none of them has one yet; counted from the `.idx` sizes,
    /// so a copy that needs nothing costs one directory listing. Returns whether it repacked.
    pub(crate) fn ensure_bitmap(&self) -> Result<bool, GitError> {
        let Some(pack_dir) = self.dir().map(|d| d.join("objects").join("pack")) else { return Ok(false) };
        let Ok(entries) = std::fs::read_dir(&pack_dir) else { return Ok(false) };
        let mut objects = 0;
        for entry in entries.flatten() {
            let name = entry.file_name();
            let name = name.to_string_lossy();
            if name.ends_with(".bitmap") {
                return Ok(false);
            }
            if name.ends_with(".idx") {
                // A v2 index: 8 header and 1,024 fanout bytes, 28 per object, 40 of checksums.
                let size = entry.metadata().map_or(0, |m| m.len());
                objects += size.saturating_sub(1072) / 28;
            }
        }
        if objects <= BITMAP_OBJECTS {
            return Ok(false);
        }
        self.run(None, &["repack", "-a", "-d", "-b", "-q"])?;
        Ok(true)
    }

    /// Which of `oids` this repository lacks (`cat-file --batch-check`).
    pub(crate) fn missing(&self, oids: &[ObjectId]) -> Result<Vec<ObjectId>, GitError> {
        if oids.is_empty() {
            return Ok(Vec::new());
        }
        let mut child = self
            .command(None)
            .args(["cat-file", "--batch-check=%(objectname)"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()?;
        let input: String = oids.iter().map(|o| format!("{o}\n")).collect();
        let mut stdin = child.stdin.take().ok_or_else(|| GitError::Url("no stdin".into()))?;
        // Written from a thread: git answers while it reads, and a full pipe would block both.
        let writer = std::thread::spawn(move || stdin.write_all(input.as_bytes()));
        let out = child.wait_with_output()?;
        writer.join().map_err(|_| GitError::Url("cat-file writer panicked".into()))??;
        let text = String::from_utf8_lossy(&out.stdout);
        // A missing object prints `<oid> missing`.
        Ok(text
            .lines()
            .filter_map(|l| l.strip_suffix(" missing"))
            .filter_map(|oid| ObjectId::from_hex(oid.as_bytes()).ok())
            .collect())
    }

    /// Fetches every branch and tag of `remote` into `namespace` (`<namespace>/heads/…`,
    /// `<namespace>/tags/…`), forced, so their objects are here for ancestry and merges.
    pub(crate) fn fetch_namespace(&self, remote: &Remote, namespace: &str) -> Result<(), GitError> {
        let heads = format!("+refs/heads/*:{namespace}/heads/*");
        let tags = format!("+refs/tags/*:{namespace}/tags/*");
        self.fetch_into_staging(remote, &[&heads, &tags])
    }

    /// Merges `theirs` into `ours` without a work tree (`merge-tree --write-tree`): the merged
    /// tree, or the paths that conflict.
    pub(crate) fn merge_tree(
        &self,
        ours: &ObjectId,
        theirs: &ObjectId,
    ) -> Result<Result<ObjectId, Vec<String>>, GitError> {
        let out = self
            .command(None)
            .args([
                "merge-tree",
                "--write-tree",
                "--name-only",
                "--no-messages",
                &ours.to_string(),
                &theirs.to_string(),
            ])
            .output()?;
        let text = String::from_utf8_lossy(&out.stdout);
        let mut lines = text.lines();
        let tree = lines.next().and_then(|l| ObjectId::from_hex(l.trim().as_bytes()).ok());
        match (out.status.code(), tree) {
            (Some(0), Some(tree)) => Ok(Ok(tree)),
            (Some(1), _) => {
                let mut paths: Vec<String> = lines.filter(|l| !l.is_empty()).map(str::to_owned).collect();
                paths.dedup();
                Ok(Err(paths))
            }
            _ => Err(GitError::Failed {
                command: "merge-tree".into(),
                stderr: scrub_text(String::from_utf8_lossy(&out.stderr).trim()),
            }),
        }
    }

    /// Writes a merge commit of `tree` with `parents`, by `author` (name, e-mail) as author and committer.
    pub(crate) fn commit_tree(
        &self,
        tree: &ObjectId,
        parents: &[ObjectId],
        message: &str,
        (name, email): (&str, &str),
    ) -> Result<ObjectId, GitError> {
        let mut cmd = self.command(None);
        cmd.arg("commit-tree").arg(tree.to_string());
        for p in parents {
            cmd.arg("-p").arg(p.to_string());
        }
        let out = cmd
            .arg("-m")
            .arg(message)
            .env("GIT_AUTHOR_NAME", name)
            .env("GIT_AUTHOR_EMAIL", email)
            .env("GIT_COMMITTER_NAME", name)
            .env("GIT_COMMITTER_EMAIL", email)
            .output()?;
        if !out.status.success() {
            return Err(GitError::Failed {
                command: "commit-tree".into(),
                stderr: scrub_text(String::from_utf8_lossy(&out.stderr).trim()),
            });
        }
        let text = String::from_utf8_lossy(&out.stdout);
        ObjectId::from_hex(text.trim().as_bytes()).map_err(|_| GitError::Listing(text.trim().to_owned()))
    }
}

/// Parses `<oid><separator><name>` lines (`ls-remote`, `for-each-ref`, records), peeled entries left out.
pub(crate) fn parse_listing(stdout: &[u8], separator: char) -> Result<Refs, GitError> {
    let text = String::from_utf8_lossy(stdout);
    let mut refs = Refs::new();
    for line in text.lines().filter(|l| !l.is_empty()) {
        let (oid, name) = line.split_once(separator).ok_or_else(|| GitError::Listing(line.to_owned()))?;
        if name.ends_with("^{}") {
            continue;
        }
        let oid = ObjectId::from_hex(oid.as_bytes()).map_err(|_| GitError::Listing(line.to_owned()))?;
        refs.insert(name.to_owned(), oid);
    }
    Ok(refs)
}

impl Ancestry for Git {
    type Error = GitError;

    fn is_ancestor(&mut self, ancestor: &ObjectId, descendant: &ObjectId) -> Result<bool, GitError> {
        let status = self
            .command(None)
            .args(["merge-base", "--is-ancestor", &ancestor.to_string(), &descendant.to_string()])
            .output()?;
        // 0: yes; 1: no; 128: an object this repository lacks (a target-only commit): no.
        Ok(status.status.code() == Some(0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remote_keeps_credentials_out_of_the_url() {
        let r = Remote::parse("https://bot:p%40ss@example.com/r.git").expect("valid");
        assert_eq!(r.url, "https://example.com/r.git");
        assert_eq!((r.username.as_deref(), r.password.as_deref()), (Some("bot"), Some("p@ss")));
        assert_eq!(r.masked(), "https://*****:*****@example.com/r.git");
        let ssh = Remote::parse("ssh://git@example.com/r.git").expect("valid");
        assert_eq!(ssh.url, "ssh://git@example.com/r.git");
        let path = Remote::parse("/tmp/x.git").expect("valid");
        assert_eq!(path.url, "/tmp/x.git");
    }

    #[test]
    fn listings_parse_and_skip_peeled_tags() {
        let oid = "a".repeat(40);
        let text = format!("{oid}\trefs/heads/main\n{oid}\trefs/tags/v1\n{oid}\trefs/tags/v1^{{}}\n");
        let refs = parse_listing(text.as_bytes(), '\t').expect("parses");
        assert_eq!(refs.keys().collect::<Vec<_>>(), ["refs/heads/main", "refs/tags/v1"]);
        assert!(parse_listing(b"garbage\n", '\t').is_err());
    }
}
