//! # mirrorfarm-runner
//!
//! Farm nodes move the git data: they lease jobs from the edge, keep a bare copy of each
//! repository fetched from its upstream, push changed refs to its mirrors with the `git` binary,
//! and report back. The core decides every ref update; this binary does the I/O.
//!
//! `run` is the node daemon; `sync <repo>` and `plan <repo>` work on one registered repository
//! now (through the edge, `plan` without changing anything), `sync`/`plan SOURCE TARGET` on a
//! pair directly (no edge); `scrub` and `check-url` expose the node's safety rules.

mod config;
mod daemon;
mod discovery;
mod edge;
mod fork;
mod git;
mod hooks;
mod logging;
mod mail;
mod mesh;
mod migration;
mod oneshot;
mod push;
mod records;
mod serve;
mod ssh;
mod ssh_push;
#[cfg(test)]
mod testing;

use std::io::{self, Read, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use mirrorfarm_core::mirrors::UpdateOutcome;
use mirrorfarm_core::urls::{GitUrl, HostAllowlist, scrub_text};

use crate::git::{Git, Remote};
use crate::push::PushSettings;

/// mirrorfarm farm node.
#[derive(Debug, Parser)]
#[command(version, about, after_help = DEPLOY_HELP)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// How to join a node to a deployed edge, printed under `--help`.
const DEPLOY_HELP: &str = "\
Running a node against a deployed edge:
  1. Register it with an administrator's token (shown once; keep it secret):
       export MIRRORFARM_ADMIN_TOKEN=mfp_...
       export MIRRORFARM_NODE_TOKEN=$(mirrorfarm-runner register --edge-url https://mirrorfarm.example.workers.dev --name node-1)
  2. Run it (every flag of `run --help` is also an environment variable):
       mirrorfarm-runner run --edge-url https://mirrorfarm.example.workers.dev \\
         --data-dir /var/lib/mirrorfarm --serve 0.0.0.0:8080 --clone-url https://node-1.example.com
  The node needs git on PATH and outbound HTTPS to the edge and to the hosts it mirrors.
  deploy/mirrorfarm-runner.service is a hardened systemd unit; deploy/Containerfile builds an image.";

/// `sync` and `plan`: a registered repository through the edge, or a source and a target directly.
#[derive(Debug, Args)]
struct SyncArgs {
    /// A registered repository (its id or `KEY/slug`), synced through the edge with this node's
    /// token; or, when TARGET is given too, the source to mirror from (URL or path).
    repo_or_source: String,
    /// Mirror straight to this target (URL or path), without the edge.
    target: Option<String>,
    /// The edge and the node (as for `run`; only `--data-dir` matters for a direct pair).
    #[command(flatten)]
    node: config::RunArgs,
    /// A direct pair's settings (a registered repository's come from the edge).
    #[command(flatten)]
    pair: PairArgs,
}

/// How a direct pair is mirrored.
#[derive(Debug, Args)]
struct PairArgs {
    /// Directory of the local copy (default: a directory under --data-dir named after the source).
    #[arg(long)]
    local: Option<PathBuf>,
    /// The source's default branch.
    #[arg(long, default_value = "main")]
    default_branch: String,
    /// Never force or delete; skip diverged refs.
    #[arg(long)]
    keep_divergent_refs: bool,
    /// Mirror protected branches (the default branch) only.
    #[arg(long, conflicts_with = "mirror_branch_regex")]
    only_protected_branches: bool,
    /// Mirror only branches matching this regex.
    #[arg(long)]
    mirror_branch_regex: Option<String>,
    /// Trust the target's refs as recorded at its last listing for this many seconds instead of
    /// listing it again (0: always list). Pushes planned from the record are leased, so a target
    /// that moved is noticed when a pushed ref changed there.
    #[arg(long, default_value_t = config::DEFAULT_TARGET_RECHECK_SECS, value_name = "SECS")]
    target_recheck: u64,
}

impl PairArgs {
    fn settings(&self) -> PushSettings {
        PushSettings {
            default_branch: self.default_branch.clone(),
            keep_divergent_refs: self.keep_divergent_refs,
            only_protected_branches: self.only_protected_branches,
            mirror_branch_regex: self.mirror_branch_regex.clone(),
            protected_branches: Vec::new(),
        }
    }

    fn local(&self, source: &str, data_dir: &std::path::Path) -> Git {
        let name: String =
            scrub_text(source).chars().map(|c| if c.is_ascii_alphanumeric() { c } else { '_' }).collect();
        Git::in_dir(self.local.clone().unwrap_or_else(|| data_dir.join("local").join(format!("{name}.git"))))
    }
}

/// A direct pair: the source, the target and the local copy between them.
struct Pair {
    source: Remote,
    target: Remote,
    local: Git,
}

impl SyncArgs {
    /// The direct pair, if a target was given.
    fn pair(&self) -> Result<Option<Pair>, String> {
        let Some(target) = &self.target else { return Ok(None) };
        Ok(Some(Pair {
            source: Remote::parse(&self.repo_or_source).map_err(|e| e.to_string())?,
            target: Remote::parse(target).map_err(|e| e.to_string())?,
            local: self.pair.local(&self.repo_or_source, &self.node.data_dir()),
        }))
    }
}

/// Stops at SIGINT/SIGTERM: the flag the workers watch.
fn shutdown_flag() -> Result<Arc<AtomicBool>, String> {
    let shutdown = Arc::new(AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT] {
        signal_hook::flag::register(signal, shutdown.clone()).map_err(|e| format!("signal handler: {e}"))?;
    }
    Ok(shutdown)
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the farm node: lease jobs from the edge until SIGINT/SIGTERM.
    Run(config::RunArgs),
    /// Sync a registered repository now (its pull, then its push mirrors) through the edge, with
    /// progress on a terminal; or mirror SOURCE to TARGET once, with GitLab's push-mirror rules.
    Sync(SyncArgs),
    /// Show what `sync` would do to each ref, and the rule that decided it; changes nothing.
    Plan(SyncArgs),
    /// Refresh a local copy from SOURCE with GitLab's pull-mirror rules.
    Pull {
        /// Where the content comes from (URL or path).
        source: String,
        /// The local bare copy to refresh (created if missing).
        local: PathBuf,
        /// The default branch.
        #[arg(long, default_value = "main")]
        default_branch: String,
        /// Overwrite branches upstream rewrote, and follow deletions.
        #[arg(long)]
        overwrite_diverged_branches: bool,
        /// Protected branches (the default branch) only.
        #[arg(long, conflicts_with = "mirror_branch_regex")]
        only_protected_branches: bool,
        /// Only branches matching this regex.
        #[arg(long)]
        mirror_branch_regex: Option<String>,
    },
    /// Register a new farm node at the edge and print its token (`mfn_…`, shown once) on stdout.
    Register {
        /// The edge's base URL.
        #[arg(long, env = "MIRRORFARM_EDGE_URL")]
        edge_url: String,
        /// The node's name (unique, at most 128 characters).
        #[arg(long)]
        name: String,
        /// An administrator's token (`mfp_…`), used for this call only.
        #[arg(long, env = "MIRRORFARM_ADMIN_TOKEN", hide_env_values = true)]
        admin_token: String,
    },
    /// Copy standard input to standard output with URL credentials masked.
    Scrub,
    /// Check that a remote URL is one a mirror may use; prints it masked.
    CheckUrl {
        /// The URL.
        url: String,
        /// Internal hosts/CIDRs to allow (as MIRRORFARM_ALLOWED_HOSTS).
        #[arg(long, env = "MIRRORFARM_ALLOWED_HOSTS", default_value = "")]
        allow: String,
    },
}

fn run(cli: Cli) -> Result<(), String> {
    match cli.command {
        Command::Run(args) => {
            let mut settings = args.resolve()?;
            let shutdown = shutdown_flag()?;
            let edge = edge::EdgeClient::new(&settings.edge_url, &settings.token);
            if let Some(addr) = &settings.serve {
                let bound = serve::spawn(addr, edge.clone(), settings.node.data_dir.clone())?;
                settings.node.clone_url = Some(settings.clone_url.clone().unwrap_or_else(|| format!("http://{bound}")));
            }
            if let Some(addr) = &settings.ssh_serve {
                let bound =
                    ssh::spawn(addr, edge.clone(), settings.node.data_dir.clone()).map_err(|e| e.to_string())?;
                settings.node.ssh_url = Some(settings.ssh_url.clone().unwrap_or_else(|| format!("ssh://git@{bound}")));
            }
            tracing::info!(edge = %settings.edge_url, concurrency = settings.node.concurrency, "node starting");
            daemon::run(&edge, &settings.node, &shutdown);
            Ok(())
        }
        Command::Plan(args) => {
            let Some(Pair { source, target, local }) = args.pair()? else {
                let settings = args.node.resolve()?;
                let edge = edge::EdgeClient::new(&settings.edge_url, &settings.token);
                return oneshot::plan(&edge, &settings.node, &args.repo_or_source);
            };
            let pair = &args.pair;
            let pulled = push::pull(&local, &source, &push::exact_pull(), &pair.default_branch, &[])
                .map_err(|e| e.to_string())?;
            let plan = push::plan(&local, &pulled.refs, &target, &pair.settings()).map_err(|e| e.to_string())?;
            oneshot::print_plan(&mut io::stdout().lock(), &plan)
        }
        Command::Pull {
            source,
            local,
            default_branch,
            overwrite_diverged_branches,
            only_protected_branches,
            mirror_branch_regex,
        } => {
            let rules = mirrorfarm_core::nodes::LeasedPull {
                overwrite_diverged_branches,
                only_protected_branches,
                mirror_branch_regex,
            };
            let source = Remote::parse(&source).map_err(|e| e.to_string())?;
            let pulled =
                push::pull(&Git::in_dir(local), &source, &rules, &default_branch, &[]).map_err(|e| e.to_string())?;
            match pulled.plan.pull_divergence_error() {
                None => {
                    println!("{} updated, {} unchanged", pulled.plan.updates.len(), pulled.plan.unchanged);
                    Ok(())
                }
                Some(message) => Err(message),
            }
        }
        Command::Sync(args) => {
            let Some(Pair { source, target, local }) = args.pair()? else {
                let settings = args.node.resolve()?;
                let edge = edge::EdgeClient::new(&settings.edge_url, &settings.token);
                let shutdown = shutdown_flag()?;
                return oneshot::sync(&edge, &settings.node, &args.repo_or_source, &shutdown);
            };
            let pair = &args.pair;
            let pulled = push::pull(&local, &source, &push::exact_pull(), &pair.default_branch, &[])
                .map_err(|e| e.to_string())?;
            let recheck = Duration::from_secs(pair.target_recheck);
            let (plan, outcome) =
                push::push_to(&local, &pulled.refs, &target, &pair.settings(), recheck, &|_| Vec::new(), &|| false)
                    .map_err(|e| e.to_string())?;
            match outcome {
                UpdateOutcome::Pushed | UpdateOutcome::Unchanged => {
                    println!("{} pushed, {} unchanged", plan.updates.len(), plan.unchanged);
                    Ok(())
                }
                UpdateOutcome::Diverged(message) | UpdateOutcome::Error(message) => Err(message),
            }
        }
        Command::Register { edge_url, name, admin_token } => {
            let node = edge::EdgeClient::register_node(&edge_url, &admin_token, &name).map_err(|e| e.to_string())?;
            eprintln!("registered node {} (id {}); its token follows, shown this once", node.node.name, node.node.id);
            println!("{}", node.token);
            Ok(())
        }
        Command::Scrub => {
            let mut text = String::new();
            io::stdin().read_to_string(&mut text).map_err(|e| format!("reading stdin: {e}"))?;
            io::stdout().write_all(scrub_text(&text).as_bytes()).map_err(|e| format!("writing stdout: {e}"))
        }
        Command::CheckUrl { url, allow } => {
            let allow = HostAllowlist::parse(&allow).map_err(|e| e.to_string())?;
            // Error messages describe the URL by its masked form only.
            let parsed = GitUrl::parse(&url).map_err(|e| format!("{}: url {e}", scrub_text(&url)))?;
            parsed.check_outbound(&allow).map_err(|e| format!("{}: url {e}", parsed.masked()))?;
            println!("{}", parsed.masked());
            Ok(())
        }
    }
}

fn main() -> ExitCode {
    // Logs go to stderr; nothing logged ever holds a credential (URLs are masked, git output scrubbed).
    let cli = Cli::parse();
    // The one-shot commands show progress and results; their logs stay quiet unless asked for.
    let quiet = matches!(&cli.command, Command::Sync(a) | Command::Plan(a) if a.target.is_none());
    let default_filter = if quiet { "warn" } else { "info" };
    logging::init(default_filter);
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("mirrorfarm-runner: {message}");
            ExitCode::FAILURE
        }
    }
}
