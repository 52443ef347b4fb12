//! The node's settings: a TOML file, then the environment, then flags (later wins).

use std::path::PathBuf;
use std::time::Duration;

use clap::Args;
use serde::Deserialize;

use crate::daemon::NodeSettings;

/// How long a recorded target listing is trusted by default: ten minutes, two poll intervals.
pub(crate) const DEFAULT_TARGET_RECHECK_SECS: u64 = 600;

/// `run`'s flags (each also readable from the environment).
#[derive(Debug, Args)]
pub(crate) struct RunArgs {
    /// A TOML file with `edge_url`, `token`, `data_dir`, `concurrency`, `lease_seconds`, `poll_ms`,
    /// `target_recheck_secs`, `discovery_page`, `serve`, `clone_url`, `ssh_serve`, `ssh_url`, `heartbeat_secs`, `mail_ca_file`, `hook_timeout_secs`.
    #[arg(long, env = "MIRRORFARM_CONFIG")]
    config: Option<PathBuf>,
    /// The edge's base URL.
    #[arg(long, env = "MIRRORFARM_EDGE_URL")]
    edge_url: Option<String>,
    /// This node's token (`mfn_…`).
    #[arg(long, env = "MIRRORFARM_NODE_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// Where local repository copies live.
    #[arg(long, env = "MIRRORFARM_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// Jobs worked on at once (default: twice the number of cores; git waits on the network and
    /// the edge about as much as it computes).
    #[arg(long, env = "MIRRORFARM_CONCURRENCY")]
    concurrency: Option<usize>,
    /// Lease length to ask for, in seconds.
    #[arg(long, env = "MIRRORFARM_LEASE_SECONDS")]
    lease_seconds: Option<u64>,
    /// Wait between polls of an empty queue, in milliseconds.
    #[arg(long, env = "MIRRORFARM_POLL_MS")]
    poll_ms: Option<u64>,
    /// How long a target's refs as recorded at its last listing are trusted by webhook- and
    /// poll-triggered syncs, in seconds (0: list the target every time).
    #[arg(long, env = "MIRRORFARM_TARGET_RECHECK_SECS")]
    target_recheck_secs: Option<u64>,
    /// Items asked per page when listing an upstream server (discovery), 1–100.
    #[arg(long, env = "MIRRORFARM_DISCOVERY_PAGE")]
    discovery_page: Option<u64>,
    /// Serve read-only clones of this node's copies on this address (`host:port`; port 0
    /// picks a free one). Not served when absent.
    #[arg(long, env = "MIRRORFARM_SERVE")]
    serve: Option<String>,
    /// The clone server's base URL as clients reach it (default: `http://` and the bound address).
    #[arg(long, env = "MIRRORFARM_CLONE_URL")]
    clone_url: Option<String>,
    /// Serve read-only git over SSH on this address (`host:port`; port 0 picks a free one). Not
    /// served when absent.
    #[arg(long, env = "MIRRORFARM_SSH_SERVE")]
    ssh_serve: Option<String>,
    /// The SSH server's base URL as clients reach it (default: `ssh://git@` and the bound address).
    #[arg(long, env = "MIRRORFARM_SSH_URL")]
    ssh_url: Option<String>,
    /// Seconds between heartbeats (default 30); log levels set at the edge apply at the next one.
    #[arg(long, env = "MIRRORFARM_HEARTBEAT_SECS")]
    heartbeat_secs: Option<u64>,
    /// PEM root certificates to trust for the mail server besides the web's (a private CA).
    #[arg(long, env = "MIRRORFARM_MAIL_CA_FILE")]
    mail_ca_file: Option<PathBuf>,
    /// Seconds a hook script may run before it is killed (default 60).
    #[arg(long, env = "MIRRORFARM_HOOK_TIMEOUT_SECS")]
    hook_timeout_secs: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    edge_url: Option<String>,
    token: Option<String>,
    data_dir: Option<PathBuf>,
    concurrency: Option<usize>,
    lease_seconds: Option<u64>,
    poll_ms: Option<u64>,
    target_recheck_secs: Option<u64>,
    discovery_page: Option<u64>,
    serve: Option<String>,
    clone_url: Option<String>,
    ssh_serve: Option<String>,
    ssh_url: Option<String>,
    heartbeat_secs: Option<u64>,
    mail_ca_file: Option<PathBuf>,
    hook_timeout_secs: Option<u64>,
}

/// Everything `run` needs.
pub(crate) struct RunSettings {
    /// The edge's base URL.
    pub(crate) edge_url: String,
    /// The node token.
    pub(crate) token: String,
    /// The rest.
    pub(crate) node: NodeSettings,
    /// Where to serve clones, if at all.
    pub(crate) serve: Option<String>,
    /// The clone server's public base URL, if not the bound address.
    pub(crate) clone_url: Option<String>,
    /// Where to serve git over SSH, if at all.
    pub(crate) ssh_serve: Option<String>,
    /// The SSH server's public base URL, if not the bound address.
    pub(crate) ssh_url: Option<String>,
}

impl RunArgs {
    /// The data directory from the flag or environment (default `.mirrorfarm`), for commands
    /// that do not talk to the edge.
    pub(crate) fn data_dir(&self) -> PathBuf {
        self.data_dir.clone().unwrap_or_else(|| PathBuf::from(".mirrorfarm"))
    }

    /// Merges file, environment and flags; names what is missing.
    pub(crate) fn resolve(self) -> Result<RunSettings, String> {
        let file = match &self.config {
            None => FileConfig::default(),
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
                toml::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?
            }
        };
        let edge_url = self.edge_url.or(file.edge_url).ok_or("no edge URL (--edge-url or MIRRORFARM_EDGE_URL)")?;
        let token = self.token.or(file.token).ok_or("no node token (--token or MIRRORFARM_NODE_TOKEN)")?;
        Ok(RunSettings {
            edge_url,
            token,
            serve: self.serve.or(file.serve),
            clone_url: self.clone_url.or(file.clone_url),
            ssh_serve: self.ssh_serve.or(file.ssh_serve),
            ssh_url: self.ssh_url.or(file.ssh_url),
            node: NodeSettings {
                data_dir: self.data_dir.or(file.data_dir).unwrap_or_else(|| PathBuf::from(".mirrorfarm")),
                concurrency: self.concurrency.or(file.concurrency).unwrap_or_else(default_concurrency).max(1),
                lease_seconds: self.lease_seconds.or(file.lease_seconds).unwrap_or(60).clamp(5, 3600),
                poll: Duration::from_millis(self.poll_ms.or(file.poll_ms).unwrap_or(2000)),
                clone_url: None,
                ssh_url: None,
                discovery_page: self.discovery_page.or(file.discovery_page).unwrap_or(50).clamp(1, 100),
                heartbeat: Duration::from_secs(
                    self.heartbeat_secs.or(file.heartbeat_secs).unwrap_or(30).clamp(1, 3600),
                ),
                target_recheck: Duration::from_secs(
                    self.target_recheck_secs.or(file.target_recheck_secs).unwrap_or(DEFAULT_TARGET_RECHECK_SECS),
                ),
                mail_ca_file: self.mail_ca_file.or(file.mail_ca_file),
                hook_timeout: Duration::from_secs(
                    self.hook_timeout_secs.or(file.hook_timeout_secs).unwrap_or(60).clamp(1, 3600),
                ),
            },
        })
    }
}

/// Jobs worked on at once unless set: twice the cores this node may use (git waits on the network
/// and the edge about as much as it computes), 2 if that is unknown.
fn default_concurrency() -> usize {
    std::thread::available_parallelism().map_or(2, |n| n.get() * 2)
}
