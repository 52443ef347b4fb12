//! The node's part in Mesh: measuring its links to other nodes, checking the fetch grants other
//! nodes show its clone server, fetching a copy from another node for a Mesh move, and building
//! its support zip.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use mirrorfarm_core::mesh::grant::{FetchGrant, GrantError};
use mirrorfarm_core::mesh::migration::LeasedMove;
use mirrorfarm_core::mesh::{LinkProbe, Peer};
use mirrorfarm_core::nodes::LeasedJob;
use mirrorfarm_core::urls::scrub_text;
use tracing::{info, warn};

use crate::daemon::{NodeSettings, content_hash, copy_of};
use crate::edge::EdgeClient;
use crate::git::Git;

/// Why a Mesh task failed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum MeshError {
    /// The leased job names no repository.
    #[error("the move names no repository")]
    NoRepository,
    /// The fetch from the source node failed.
    #[error("fetching from the source node failed: {0}")]
    Fetch(String),
    /// Local files could not be written or read.
    #[error("{0}")]
    Io(#[from] std::io::Error),
    /// Git could not read the fetched copy.
    #[error("{0}")]
    Git(#[from] crate::git::GitError),
    /// The edge refused or did not take the upload.
    #[error("{0}")]
    Edge(#[from] crate::edge::EdgeError),
    /// The zip could not be written.
    #[error("{0}")]
    Zip(#[from] mirrorfarm_core::mesh::zip::ZipError),
}

/// How long a peer has to answer a probe.
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

/// Measures the round trip to each peer's clone server (`GET /health`).
pub(crate) fn probe_peers(peers: &[Peer]) -> Vec<LinkProbe> {
    let agent = ureq::AgentBuilder::new().timeout(PROBE_TIMEOUT).build();
    peers
        .iter()
        .take(mirrorfarm_core::mesh::MAX_LINKS - 1)
        .map(|peer| {
            let started = Instant::now();
            match agent.get(&format!("{}/health", peer.clone_url.trim_end_matches('/'))).call() {
                Ok(_) => LinkProbe {
                    peer_id: Some(peer.id),
                    reachable: true,
                    round_trip_ms: Some(i64::try_from(started.elapsed().as_millis()).unwrap_or(i64::MAX)),
                    error: None,
                },
                Err(e) => LinkProbe {
                    peer_id: Some(peer.id),
                    reachable: false,
                    round_trip_ms: None,
                    error: Some(scrub_text(&e.to_string())),
                },
            }
        })
        .collect()
}

/// Checks a fetch grant another node shows: signed by the control plane, unexpired, for this
/// node. Answers the repository it grants.
pub(crate) fn check_grant(edge: &EdgeClient, text: &str) -> Result<i64, GrantError> {
    let trust = edge.trust().ok_or(GrantError::BadSignature)?;
    let (grant, signature) = FetchGrant::decode(text)?;
    // Grants are only honoured where the key is known: an unsigned world has no grants.
    if trust.key.is_none() || !trust.verifies(&grant.signed_bytes(), Some(&signature)) {
        return Err(GrantError::BadSignature);
    }
    let now = i64::try_from(
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis()).unwrap_or_default(),
    )
    .unwrap_or(i64::MAX);
    grant.allows(trust.node_id, grant.repository_id, now)?;
    Ok(grant.repository_id)
}

/// Fetches a repository's copy from the source node of a Mesh move, with its grant, into a
/// staging directory; if its content hash is the one the edge expects, it replaces this node's
/// copy. Answers the hash either way: the edge decides.
pub(crate) fn fetch_copy(settings: &NodeSettings, job: &LeasedJob, mv: &LeasedMove) -> Result<String, MeshError> {
    let repo = job.repository.as_ref().ok_or(MeshError::NoRepository)?;
    let repos = settings.data_dir.join("repos");
    std::fs::create_dir_all(&repos)?;
    let staging = repos.join(format!("{}.git.incoming-{}", repo.id, job.id));
    remove_dir(&staging);
    // The grant goes in the environment (not the command line, which others can read).
    let out = Command::new("git")
        .args(["clone", "--mirror", "--quiet"])
        .arg(&mv.source_url)
        .arg(&staging)
        .env("GIT_TERMINAL_PROMPT", "0")
        .env("GIT_CONFIG_COUNT", "1")
        .env("GIT_CONFIG_KEY_0", "http.extraHeader")
        .env("GIT_CONFIG_VALUE_0", format!("Authorization: Bearer {}", mv.grant))
        .output()?;
    if !out.status.success() {
        remove_dir(&staging);
        return Err(MeshError::Fetch(scrub_text(String::from_utf8_lossy(&out.stderr).trim())));
    }
    // The copy follows the repository's upstream from now on, not the node it came from.
    let _ = Command::new("git").arg("--git-dir").arg(&staging).args(["remote", "remove", "origin"]).output();
    let fetched = Git::in_dir(&staging);
    let hash = content_hash(&fetched.local_refs()?);
    if hash != mv.expected_content {
        warn!(job = job.id, got = %hash, expected = %mv.expected_content, "the fetched copy differs from the source's");
        remove_dir(&staging);
        return Ok(hash);
    }
    let target = repos.join(format!("{}.git", repo.id));
    remove_dir(&target);
    std::fs::rename(&staging, &target)?;
    if let Err(e) = copy_of(settings, repo.id).ensure_bitmap() {
        warn!(job = job.id, error = %e, "could not write a bitmap");
    }
    info!(job = job.id, repository = repo.id, source = mv.source_node_id, "copy fetched from another node");
    Ok(hash)
}

fn remove_dir(dir: &Path) {
    match std::fs::remove_dir_all(dir) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            warn!(dir = %dir.display(), error = %e, "could not remove a directory");
        }
        _ => {}
    }
}

/// The output of a command, or why it did not run.
fn command_output(program: &str, args: &[&str]) -> String {
    match Command::new(program).args(args).output() {
        Ok(out) => format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)),
        Err(e) => format!("{program} did not run: {e}\n"),
    }
}

/// The size of everything under `dir` (bytes).
fn disk_use(dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else { return 0 };
    entries
        .filter_map(Result::ok)
        .map(|e| match e.file_type() {
            Ok(t) if t.is_dir() => disk_use(&e.path()),
            Ok(_) => e.metadata().map(|m| m.len()).unwrap_or(0),
            Err(_) => 0,
        })
        .sum()
}

/// Builds this node's support zip — its recent log, its settings (the node holds no secret
/// in them: its token stays in the edge client), versions and disk use — and uploads it as
/// zip `id`. Answers its size.
pub(crate) fn support_zip(settings: &NodeSettings, edge: &EdgeClient, id: i64) -> Result<usize, MeshError> {
    let trust = edge.trust();
    let versions = format!(
        "mirrorfarm-runner {}\nos: {} {}\n{}{}",
        env!("CARGO_PKG_VERSION"),
        std::env::consts::OS,
        std::env::consts::ARCH,
        command_output("git", &["--version"]),
        command_output("uname", &["-a"]),
    );
    let node = format!(
        "node id: {}\ncontrol plane key known: {}\n\n{settings:#?}\n",
        trust.as_ref().map_or_else(|| "unknown".to_owned(), |t| t.node_id.to_string()),
        trust.as_ref().is_some_and(|t| t.key.is_some()),
    );
    let repos = settings.data_dir.join("repos");
    let mut copies: Vec<(String, u64)> = std::fs::read_dir(&repos)
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .map(|e| (e.file_name().to_string_lossy().into_owned(), disk_use(&e.path())))
                .collect()
        })
        .unwrap_or_default();
    copies.sort();
    let total: u64 = copies.iter().map(|(_, n)| n).sum();
    let mut disk = format!("copies: {}\nbytes under {}: {total}\n\n", copies.len(), repos.display());
    for (name, bytes) in &copies {
        disk.push_str(&format!("{bytes}\t{name}\n"));
    }
    disk.push('\n');
    disk.push_str(&command_output("df", &["-k", &settings.data_dir.to_string_lossy()]));
    let log: String = crate::logging::recent().lines().map(|l| scrub_text(l) + "\n").collect();
    let entries = vec![
        (
            "README.txt".to_owned(),
            b"mirrorfarm farm node support zip: node.txt (settings, no secrets), versions.txt, disk.txt, logs/node.log\n"
                .to_vec(),
        ),
        ("node.txt".to_owned(), node.into_bytes()),
        ("versions.txt".to_owned(), versions.into_bytes()),
        ("disk.txt".to_owned(), disk.into_bytes()),
        ("logs/node.log".to_owned(), log.into_bytes()),
    ];
    let zip = mirrorfarm_core::mesh::zip::write(&entries)?;
    edge.upload_support_zip(id, &zip)?;
    Ok(zip.len())
}
