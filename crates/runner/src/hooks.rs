//! Runs hook scripts (see the core's `hooks` for what runs when and what a refusal means).
//!
//! Each run gets: git's `<old> <new> <ref>` lines on stdin; an environment emptied of everything
//! but `PATH`, `HOME`, `TMPDIR`, `LANG` and the documented `MIRRORFARM_HOOK_*` variables (so no
//! token or credential the node holds); a scratch directory of its own as its working directory,
//! removed after; a timeout, after which its whole process group is killed; and at most 64 KB of
//! its output read. A node running as root runs scripts as `nobody`, so they cannot read the
//! node's data directory either.

use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use mirrorfarm_core::hooks::{HookExit, HookType, LeasedHook, refusal_message, refused_refs, stdin_lines};
use mirrorfarm_core::nodes::LeasedJob;
use mirrorfarm_core::sync::RefUpdate;
use tracing::{info, warn};

use crate::edge::EdgeClient;

/// Most output read from a script (stdout and stderr together).
pub(crate) const MAX_OUTPUT_BYTES: usize = 64 * 1024;

/// The uid and gid of `nobody`, which scripts run as when the node runs as root.
const NOBODY: u32 = 65_534;

/// Why scripts could not be made ready.
#[derive(Debug, thiserror::Error)]
pub(crate) enum HookError {
    /// The edge did not hand over a script's content.
    #[error("hook script {0} could not be fetched: {1}")]
    Fetch(String, String),
    /// What the edge handed over is not what the lease named.
    #[error("hook script {0}: the content does not match its hash")]
    Hash(String),
    /// The local copy or scratch directory could not be written.
    #[error("hook script {0}: {1}")]
    Io(String, String),
}

/// The scripts of one job, fetched (and cached by content hash under the data directory).
pub(crate) struct JobHooks<'a> {
    job: &'a LeasedJob,
    scripts: Vec<(&'a LeasedHook, PathBuf)>,
    timeout: Duration,
}

/// A script's run.
struct Run {
    exit: HookExit,
    output: String,
}

impl<'a> JobHooks<'a> {
    /// Fetches what `job` needs that is not cached yet.
    pub(crate) fn prepare(
        edge: &EdgeClient,
        data_dir: &Path,
        job: &'a LeasedJob,
        timeout: Duration,
    ) -> Result<Self, HookError> {
        let cache = data_dir.join("hook-scripts");
        let mut scripts = Vec::new();
        for hook in &job.hooks {
            let path = cache.join(&hook.content_hash);
            if !path.exists() {
                let bytes =
                    edge.hook_script(hook.id).map_err(|e| HookError::Fetch(hook.name.clone(), e.to_string()))?;
                if crate::records::hex_sha256(&bytes) != hook.content_hash {
                    return Err(HookError::Hash(hook.name.clone()));
                }
                let io = |e: std::io::Error| HookError::Io(hook.name.clone(), e.to_string());
                std::fs::create_dir_all(&cache).map_err(io)?;
                let partial = cache.join(format!("{}.partial", hook.content_hash));
                std::fs::write(&partial, &bytes).map_err(io)?;
                std::fs::rename(&partial, &path).map_err(io)?;
            }
            scripts.push((hook, path));
        }
        Ok(Self { job, scripts, timeout })
    }

    /// Runs the pre hooks over `updates`: the refs they refuse, and why (the mirror's error).
    pub(crate) fn pre(&self, updates: &[RefUpdate]) -> (Vec<String>, Option<String>) {
        let mut refused: Vec<String> = Vec::new();
        let mut why: Vec<String> = Vec::new();
        for (hook, path) in self.scripts.iter().filter(|(h, _)| h.kind == HookType::Pre) {
            let offered: Vec<&RefUpdate> = updates.iter().filter(|u| !refused.contains(&u.name)).collect();
            if offered.is_empty() {
                break;
            }
            let run = self.run(hook, path, &offered);
            let names: Vec<&str> = offered.iter().map(|u| u.name.as_str()).collect();
            let now_refused = refused_refs(run.exit, &run.output, &names);
            if !now_refused.is_empty() {
                why.push(refusal_message(&hook.name, run.exit, &now_refused, &run.output, self.timeout.as_secs()));
                refused.extend(now_refused);
            }
        }
        (refused, (!why.is_empty()).then(|| why.join("; ")))
    }

    /// Runs the post hooks with the updates that were made.
    pub(crate) fn post(&self, made: &[RefUpdate]) {
        if made.is_empty() {
            return;
        }
        let made: Vec<&RefUpdate> = made.iter().collect();
        for (hook, path) in self.scripts.iter().filter(|(h, _)| h.kind == HookType::Post) {
            let run = self.run(hook, path, &made);
            if run.exit != HookExit::Accepted {
                warn!(job = self.job.id, hook = %hook.name, exit = ?run.exit, output = %run.output.trim(), "post hook failed");
            }
        }
    }

    /// One run of one script.
    fn run(&self, hook: &LeasedHook, script: &Path, updates: &[&RefUpdate]) -> Run {
        let started = Instant::now();
        let run = match self.spawn(hook, script, updates) {
            Ok(run) => run,
            Err(e) => Run { exit: HookExit::Refused, output: format!("could not run: {e}") },
        };
        info!(job = self.job.id, hook = %hook.name, kind = hook.kind.as_str(), exit = ?run.exit,
            refs = updates.len(), ms = started.elapsed().as_millis(), "hook script ran");
        run
    }

    fn spawn(&self, hook: &LeasedHook, script: &Path, updates: &[&RefUpdate]) -> std::io::Result<Run> {
        let scratch = Scratch::new()?;
        // The script is copied into the scratch directory, which is all it may write.
        let program = scratch.path.join("hook");
        std::fs::copy(script, &program)?;
        std::fs::set_permissions(&program, std::fs::Permissions::from_mode(0o500))?;
        let as_nobody = is_root();
        if as_nobody {
            for p in [&scratch.path, &program] {
                std::os::unix::fs::chown(p, Some(NOBODY), Some(NOBODY))?;
            }
        }
        let repository = self.job.repository.as_ref();
        let mut command = Command::new(&program);
        command
            .env_clear()
            .env("PATH", "/usr/local/bin:/usr/bin:/bin")
            .env("HOME", &scratch.path)
            .env("TMPDIR", &scratch.path)
            .env("LANG", "C.UTF-8")
            .env("MIRRORFARM_HOOK_TYPE", hook.kind.as_str())
            .env("MIRRORFARM_HOOK_TRIGGER", &hook.trigger)
            .env("MIRRORFARM_HOOK_SCRIPT", &hook.name)
            .env("MIRRORFARM_JOB_ID", self.job.id.to_string())
            .env(
                "MIRRORFARM_REPOSITORY",
                repository.map(|r| format!("{}/{}", r.project_key, r.slug)).unwrap_or_default(),
            )
            .env("MIRRORFARM_REPOSITORY_ID", repository.map(|r| r.id.to_string()).unwrap_or_default())
            .current_dir(&scratch.path)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            // Its own process group, so a timeout kills whatever it started too.
            .process_group(0);
        if let Some(target) = &self.job.remote_mirror {
            let masked = crate::git::Remote::parse(&target.url).map(|r| r.masked().to_owned()).unwrap_or_default();
            command.env("MIRRORFARM_HOOK_TARGET", masked);
        }
        if as_nobody {
            command.uid(NOBODY).gid(NOBODY);
        }
        let mut child = command.spawn()?;
        let input = stdin_lines(
            updates.iter().map(|u| (u.old.map(|o| o.to_string()), u.new.map(|n| n.to_string()), u.name.as_str())),
        );
        let mut stdin = child.stdin.take();
        let feeder = thread::spawn(move || {
            if let Some(stdin) = stdin.as_mut() {
                // A script that does not read its stdin closes it: that is fine.
                let _ = stdin.write_all(input.as_bytes());
            }
        });
        let readers = [child.stdout.take().map(read_capped), child.stderr.take().map(read_capped)];
        let deadline = Instant::now() + self.timeout;
        let exit = loop {
            if let Some(status) = child.try_wait()? {
                break if status.success() { HookExit::Accepted } else { HookExit::Refused };
            }
            if Instant::now() >= deadline {
                kill_group(child.id());
                let _ = child.kill();
                let _ = child.wait();
                break HookExit::TimedOut;
            }
            thread::sleep(Duration::from_millis(10));
        };
        let _ = feeder.join();
        let mut output = String::new();
        for reader in readers.into_iter().flatten() {
            let bytes = reader.join().unwrap_or_default();
            output.push_str(&String::from_utf8_lossy(&bytes));
        }
        output.truncate(floor_char_boundary(&output, MAX_OUTPUT_BYTES));
        Ok(Run { exit, output })
    }
}

/// Reads at most [`MAX_OUTPUT_BYTES`] of a pipe, then drains (and drops) the rest.
fn read_capped(mut pipe: impl Read + Send + 'static) -> thread::JoinHandle<Vec<u8>> {
    thread::spawn(move || {
        let mut kept = Vec::new();
        let mut buf = [0u8; 8192];
        while let Ok(n) = pipe.read(&mut buf) {
            if n == 0 {
                break;
            }
            let room = MAX_OUTPUT_BYTES.saturating_sub(kept.len());
            kept.extend_from_slice(&buf[..n.min(room)]);
        }
        kept
    })
}

fn floor_char_boundary(s: &str, at: usize) -> usize {
    let mut i = at.min(s.len());
    while !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}

/// Kills a process group with the system's `kill` (no unsafe code for `killpg`).
fn kill_group(pid: u32) {
    let _ = Command::new("kill").args(["-KILL", "--", &format!("-{pid}")]).stderr(Stdio::null()).status();
}

/// Whether the node runs as root (`id -u` is 0).
fn is_root() -> bool {
    std::fs::metadata("/proc/self").is_ok_and(|m| std::os::unix::fs::MetadataExt::uid(&m) == 0)
}

/// A scratch directory under the system's temp directory, removed when dropped.
struct Scratch {
    path: PathBuf,
}

impl Scratch {
    fn new() -> std::io::Result<Self> {
        let base = std::env::temp_dir();
        for n in 0..100u32 {
            let nanos =
                std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.subsec_nanos());
            let path = base.join(format!("mirrorfarm-hook-{}-{nanos}-{n}", std::process::id()));
            match std::fs::create_dir(&path) {
                Ok(()) => {
                    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o700))?;
                    return Ok(Self { path });
                }
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(e),
            }
        }
        Err(std::io::Error::other("no scratch directory could be made"))
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}
