//! `run`: the farm node's lease loop — N workers lease jobs, keep their leases alive while git
//! works, report results, and on shutdown give unfinished jobs back.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

use mirrorfarm_core::mirrors::UpdateOutcome;
use mirrorfarm_core::nodes::{JobReport, LeaseRequest, LeasedJob, Outcome};
use mirrorfarm_core::queue::{JobKind, JobReason};
use mirrorfarm_core::urls::scrub_text;
use tracing::{debug, error, info, warn};

use mirrorfarm_core::farm::{DiscoveredRepository, ListedHash, content_listing};

use crate::discovery::{self, DiscoveryError};
use crate::edge::{EdgeClient, EdgeError};
use crate::fork::{self, ForkFinished};
use crate::git::{Git, Remote};
use crate::hooks::JobHooks;
use crate::push::{self, PushError, PushSettings};
use crate::records::fingerprint;

/// How a node runs.
#[derive(Debug, Clone)]
pub(crate) struct NodeSettings {
    /// Where local repository copies live.
    pub(crate) data_dir: PathBuf,
    /// Jobs worked on at once.
    pub(crate) concurrency: usize,
    /// Lease length asked for; renewed at a third of it.
    pub(crate) lease_seconds: u64,
    /// Wait between lease attempts when the queue is empty (each attempt already waits up to
    /// [`LONG_POLL_SECS`] at the edge for a job to be queued).
    pub(crate) poll: Duration,
    /// How long automatic syncs trust a target's recorded refs (see [`crate::records`]).
    pub(crate) target_recheck: Duration,
    /// Where this node serves clones, as its heartbeat tells the edge (none: it does not).
    pub(crate) clone_url: Option<String>,
    /// Where this node serves read-only git over SSH (`ssh://git@host:port`), if it does.
    pub(crate) ssh_url: Option<String>,
    /// Items asked per page when listing an upstream server.
    pub(crate) discovery_page: u64,
    /// How often the node tells the edge it is alive (and where it serves clones) besides
    /// leasing, and takes up the log levels the edge answers.
    pub(crate) heartbeat: Duration,
    /// Extra root certificates for the mail server's TLS (PEM).
    pub(crate) mail_ca_file: Option<PathBuf>,
    /// How long a hook script may run before it is killed.
    pub(crate) hook_timeout: Duration,
}

/// Sends a heartbeat with what was measured of the links since the last one, applies the log
/// levels it answers, and measures the links again for the next (the edge: this heartbeat's
/// round trip; each peer the answer names: a request to its clone server).
fn send_heartbeat(edge: &EdgeClient, settings: &NodeSettings, links: &mut Vec<mirrorfarm_core::mesh::LinkProbe>) {
    let started = std::time::Instant::now();
    match edge.heartbeat(settings.clone_url.as_deref(), settings.ssh_url.as_deref(), std::mem::take(links)) {
        Ok(answer) => {
            let trip = i64::try_from(started.elapsed().as_millis()).unwrap_or(i64::MAX);
            debug!(log_filter = %answer.log_filter, "heartbeat answered");
            crate::logging::apply_edge_filter(&answer.log_filter);
            links.push(mirrorfarm_core::mesh::LinkProbe {
                peer_id: None,
                reachable: true,
                round_trip_ms: Some(trip),
                error: None,
            });
            links.extend(crate::mesh::probe_peers(&answer.peers));
        }
        Err(e) => warn!(error = %e, "heartbeat failed; will keep trying"),
    }
}

/// How long a lease request waits at the edge for a job to become due: the edge answers the
/// moment one is queued, so jobs start at once instead of at the next poll. The edge allows up to
/// 25 s; the node asks for slices of 5 s, because a worker blocked in a lease request cannot stop,
/// and a node asked to stop must stop within seconds (and without abandoning a lease the edge
/// may be handing it). An idle worker costs the edge one look per slice.
pub(crate) const LONG_POLL_SECS: u64 = 5;

/// Serialises work on one local repository copy across this node's workers.
#[derive(Default)]
pub(crate) struct RepoLocks(Mutex<HashMap<i64, Arc<Mutex<()>>>>);

impl RepoLocks {
    fn for_repo(&self, id: i64) -> Arc<Mutex<()>> {
        let mut map = self.0.lock().unwrap_or_else(|p| p.into_inner());
        map.entry(id).or_default().clone()
    }
}

/// Runs until `shutdown` is set, then returns once every worker has stopped.
pub(crate) fn run(edge: &EdgeClient, settings: &NodeSettings, shutdown: &Arc<AtomicBool>) {
    let mut links = Vec::new();
    send_heartbeat(edge, settings, &mut links);
    let locks = Arc::new(RepoLocks::default());
    thread::scope(|scope| {
        scope.spawn(|| {
            // Copies of repositories removed while this node was away (or by another node's
            // discovery) go at start and every ten heartbeats after; a check that failed is
            // tried again at the next heartbeat.
            let mut checked = false;
            for beat in 0u64.. {
                if beat % 10 == 0 || !checked {
                    checked = prune_copies(edge, settings, &locks);
                }
                sleep_unless(shutdown, settings.heartbeat);
                if shutdown.load(Ordering::SeqCst) {
                    break;
                }
                send_heartbeat(edge, settings, &mut links);
            }
        });
        for worker in 0..settings.concurrency.max(1) {
            let (edge, settings, shutdown, locks) = (edge.clone(), settings.clone(), shutdown.clone(), locks.clone());
            scope.spawn(move || work(worker, &edge, &settings, &shutdown, &locks));
        }
    });
    info!("node stopped");
}

fn work(worker: usize, edge: &EdgeClient, settings: &NodeSettings, shutdown: &AtomicBool, locks: &RepoLocks) {
    let mut idle = settings.poll;
    // Each result asks for the next job, so a busy worker makes one request per job.
    let ask = LeaseRequest { lease_seconds: Some(settings.lease_seconds), repository_id: None, wait_seconds: None };
    let mut next: Option<LeasedJob> = None;
    while !shutdown.load(Ordering::SeqCst) {
        if let Some(job) = next.take() {
            next = handle(worker, edge, settings, shutdown, locks, &job, Some(&ask)).1;
            continue;
        }
        let asked = std::time::Instant::now();
        match edge.lease(settings.lease_seconds, None, LONG_POLL_SECS) {
            Ok(Some(job)) => {
                idle = settings.poll;
                next = handle(worker, edge, settings, shutdown, locks, &job, Some(&ask)).1;
            }
            // An edge that waited the slice out is asked again at once (a pause would be a window
            // in which a queued job waits); one that answered at once (no long polls) is polled.
            Ok(None) if asked.elapsed() >= Duration::from_secs(LONG_POLL_SECS) - Duration::from_millis(500) => {}
            Ok(None) => sleep_unless(shutdown, idle),
            Err(e) => {
                warn!(worker, error = %e, "lease failed");
                idle = (idle * 2).min(Duration::from_secs(30));
                sleep_unless(shutdown, idle);
            }
        }
    }
    // Stopping with a job leased along with the last result: it goes back unstarted.
    if let Some(job) = next {
        match edge.release(&job) {
            Ok(()) => info!(job = job.id, "released on shutdown"),
            Err(e) => warn!(job = job.id, error = %e, "release failed; the lease will expire"),
        }
    }
}

fn sleep_unless(shutdown: &AtomicBool, total: Duration) {
    let step = Duration::from_millis(100);
    let mut slept = Duration::ZERO;
    while slept < total && !shutdown.load(Ordering::SeqCst) {
        thread::sleep(step);
        slept += step;
    }
}

/// Works one leased job to its end: keeps the lease alive, runs it, reports the outcome (or
/// gives the job back on shutdown). Returns the reported outcome (`None` if the job was given
/// back or its lease lost) and, when the report asked for it with `next`, the next job.
pub(crate) fn handle(
    worker: usize,
    edge: &EdgeClient,
    settings: &NodeSettings,
    shutdown: &AtomicBool,
    locks: &RepoLocks,
    job: &LeasedJob,
    next: Option<&LeaseRequest>,
) -> (Option<UpdateOutcome>, Option<LeasedJob>) {
    let target = match (&job.repository, &job.discovery, &job.mail) {
        _ if job.migration.is_some() => format!("migration job {}", job.migration.as_ref().map_or(0, |m| m.job_id)),
        (Some(r), _, _) => format!("{}/{}", r.project_key, r.slug),
        (None, Some(d), _) => format!("upstream {}", d.upstream_id),
        (None, None, Some(m)) => format!("mail to {} recipient(s)", m.to.len()),
        (None, None, None) if job.support_zip.is_some() => "support zip".into(),
        (None, None, None) => "nothing".into(),
    };
    info!(worker, job = job.id, attempt = job.attempt, target = %target, "leased");
    let lost = AtomicBool::new(false);
    // Dropped when the job's work ends, which wakes the renewing thread at once: the job's
    // report waits for that thread, so a coarser wake would add to every job.
    let (working, finished) = std::sync::mpsc::channel::<()>();
    let outcome = thread::scope(|scope| {
        // Keep the lease alive at a third of its length while git works.
        let lost = &lost;
        scope.spawn(move || {
            let every = Duration::from_secs((settings.lease_seconds / 3).max(1));
            loop {
                if finished.recv_timeout(every) != Err(std::sync::mpsc::RecvTimeoutError::Timeout) {
                    return;
                }
                match edge.renew(job, settings.lease_seconds) {
                    Err(e) if e.lease_lost() => {
                        warn!(job = job.id, "lease lost; abandoning the job");
                        lost.store(true, Ordering::SeqCst);
                        return;
                    }
                    Err(e) => warn!(job = job.id, error = %e, "renew failed; will retry"),
                    Ok(()) => {}
                }
            }
        });
        // A fork sync works in its origin's copy; a discovery in none.
        let copy = job.fork.as_ref().map(|f| f.origin.id).or(job.repository.as_ref().map(|r| r.id));
        let lock = copy.map(|id| locks.for_repo(id));
        let _guard = lock.as_ref().map(|l| l.lock().unwrap_or_else(|p| p.into_inner()));
        let cancelled = || shutdown.load(Ordering::SeqCst) || lost.load(Ordering::SeqCst);
        let outcome = match &job.migration {
            Some(migration) => Ok(migrated(crate::migration::run(edge, settings, migration, &cancelled))),
            None => match JobHooks::prepare(edge, &settings.data_dir, job, settings.hook_timeout) {
                Ok(hooks) => execute(settings, edge, job, &hooks, &cancelled),
                Err(e) => Ok(Finished::error(e.to_string())),
            },
        };
        drop(working);
        outcome
    });
    match outcome {
        Err(PushError::Cancelled) if lost.load(Ordering::SeqCst) => (None, None),
        Err(PushError::Cancelled) => {
            match edge.release(job) {
                Ok(()) => info!(job = job.id, "released on shutdown"),
                Err(e) => warn!(job = job.id, error = %e, "release failed; the lease will expire"),
            }
            (None, None)
        }
        result => {
            let finished = result.unwrap_or_else(|e| Finished::error(e.to_string()));
            let next = next.filter(|_| !shutdown.load(Ordering::SeqCst));
            let leased = report(edge, settings, job, &finished, next);
            (Some(finished.outcome), leased)
        }
    }
}

/// How an export or import ended, as its queue job reports it (the migration job already says
/// the rest).
fn migrated(result: Result<crate::migration::Ended, crate::migration::MigrationError>) -> Finished {
    match result {
        Ok(ended) if ended.state == mirrorfarm_core::migration::MigrationState::Failed => {
            Finished::error(ended.summary)
        }
        Ok(ended) => {
            info!(summary = %ended.summary, "migration job ended");
            Finished::of(UpdateOutcome::Pushed, None)
        }
        Err(e) => Finished::error(e.to_string()),
    }
}

/// The node's copy of a repository.
pub(crate) fn copy_of(settings: &NodeSettings, repository_id: i64) -> Git {
    Git::in_dir(settings.data_dir.join("repos").join(format!("{repository_id}.git")))
}

/// What a job does, in words (URLs masked).
pub(crate) fn describe(job: &LeasedJob) -> String {
    let masked = |url: &str| Remote::parse(url).map_or_else(|_| scrub_text(url), |r| r.masked().to_owned());
    match &job.remote_mirror {
        Some(m) => format!("push to {}", masked(&m.url)),
        None => match (&job.repository, &job.discovery, &job.mail) {
            (Some(r), _, _) => {
                format!("pull from {}", r.upstream_url.as_deref().map_or("(no upstream)".into(), masked))
            }
            (None, Some(d), _) => format!("list the projects of {}", masked(&d.api_base_url)),
            (None, None, Some(m)) => format!("send {:?} through {}", m.subject, m.server.hostname),
            (None, None, None) => "nothing".into(),
        },
    }
}

/// How a job ended, as the node reports it.
pub(crate) struct Finished {
    /// The outcome.
    pub(crate) outcome: UpdateOutcome,
    /// For pulls: the upstream's fingerprint.
    fingerprint: Option<String>,
    /// For fork syncs: what the sync left.
    fork: Option<ForkFinished>,
    /// For pulls: the copy's content hash afterwards.
    content_hash: Option<String>,
    /// For discoveries: what the upstream lists.
    discovered: Option<Vec<DiscoveredRepository>>,
    /// For hash polls: every repository's published content hash…
    content_hashes: Option<Vec<ListedHash>>,
    /// …or that the upstream publishes none.
    hashes_unpublished: bool,
    /// For ref polls: each repository's fingerprint upstream.
    polled_refs: Option<Vec<mirrorfarm_core::farm::PolledRefs>>,
    /// For mails: the SMTP server's reply.
    reply: Option<String>,
    /// For an SSH-key mirror's first push: the host key accepted (a `known_hosts` line).
    learned_host_key: Option<String>,
}

impl Finished {
    fn of(outcome: UpdateOutcome, fingerprint: Option<String>) -> Self {
        Self {
            outcome,
            fingerprint,
            fork: None,
            content_hash: None,
            discovered: None,
            content_hashes: None,
            hashes_unpublished: false,
            polled_refs: None,
            reply: None,
            learned_host_key: None,
        }
    }

    fn error(message: String) -> Self {
        Self::of(UpdateOutcome::Error(message), None)
    }
}

/// Runs a job; pulls also return the upstream's fingerprint, fork syncs what they left.
fn execute(
    settings: &NodeSettings,
    edge: &EdgeClient,
    job: &LeasedJob,
    hooks: &JobHooks<'_>,
    cancelled: &dyn Fn() -> bool,
) -> Result<Finished, PushError> {
    if let Some(leased_fork) = &job.fork {
        let finished = fork::sync(settings, job, leased_fork, hooks, cancelled)?;
        let outcome = match finished.conflict.as_ref().or(finished.refused.as_ref()).or(finished.hook_refusal.as_ref())
        {
            Some(why) => UpdateOutcome::Error(why.clone()),
            None => UpdateOutcome::Pushed,
        };
        return Ok(Finished { fork: Some(finished), ..Finished::of(outcome, None) });
    }
    if let Some(mv) = &job.mesh_move {
        return Ok(match crate::mesh::fetch_copy(settings, job, mv) {
            Ok(content) => Finished { content_hash: Some(content), ..Finished::of(UpdateOutcome::Pushed, None) },
            Err(e) => Finished::error(e.to_string()),
        });
    }
    if let Some(zip) = &job.support_zip {
        return Ok(match crate::mesh::support_zip(settings, edge, zip.id) {
            Ok(size) => {
                info!(job = job.id, bytes = size, "support zip uploaded");
                Finished::of(UpdateOutcome::Pushed, None)
            }
            Err(e) => Finished::error(e.to_string()),
        });
    }
    if let Some(mail) = &job.mail {
        return Ok(match crate::mail::send(mail, settings.mail_ca_file.as_deref()) {
            Ok(reply) => {
                info!(job = job.id, recipients = mail.to.len(), reply = %reply, "mail sent");
                Finished { reply: Some(reply), ..Finished::of(UpdateOutcome::Pushed, None) }
            }
            Err(e) => Finished::error(e.to_string()),
        });
    }
    if let (Some(targets), JobKind::UpstreamPoll) = (&job.ref_poll, job.kind) {
        return match discovery::poll_refs(targets, settings.concurrency, cancelled) {
            Ok(polled) => {
                let listed = polled.iter().filter(|p| p.fingerprint.is_some()).count();
                info!(job = job.id, repositories = polled.len(), listed, "listed the upstream's refs");
                Ok(Finished { polled_refs: Some(polled), ..Finished::of(UpdateOutcome::Pushed, None) })
            }
            Err(_) => Err(PushError::Cancelled),
        };
    }
    if let (Some(leased), JobKind::UpstreamPoll) = (&job.discovery, job.kind) {
        return match discovery::list_content_hashes(leased, cancelled) {
            Ok(listed) => {
                info!(job = job.id, repositories = listed.len(), "listed the upstream's content hashes");
                Ok(Finished { content_hashes: Some(listed), ..Finished::of(UpdateOutcome::Pushed, None) })
            }
            Err(DiscoveryError::Cancelled) => Err(PushError::Cancelled),
            Err(e) => {
                let unpublished = matches!(e, DiscoveryError::Status { status: 404, .. });
                Ok(Finished { hashes_unpublished: unpublished, ..Finished::error(e.to_string()) })
            }
        };
    }
    if let Some(leased) = &job.discovery {
        return match discovery::discover(leased, settings.discovery_page, cancelled) {
            Ok(found) => {
                info!(job = job.id, repositories = found.len(), "listed the upstream");
                Ok(Finished { discovered: Some(found), ..Finished::of(UpdateOutcome::Pushed, None) })
            }
            Err(DiscoveryError::Cancelled) => Err(PushError::Cancelled),
            Err(e) => Ok(Finished::error(e.to_string())),
        };
    }
    let Some(repository) = &job.repository else {
        return Ok(Finished::error("The job names no repository.".into()));
    };
    let Some(upstream) = repository.upstream_url.as_deref().map(Remote::parse).transpose()? else {
        return Ok(Finished::error("The repository has no upstream URL to mirror from.".into()));
    };
    let local = copy_of(settings, repository.id);
    if job.recreate {
        remove_copy(settings, repository.id);
        info!(job = job.id, "copy dropped; cloning afresh");
    }
    let pull_rules = &repository.pull;
    let Some(mirror) = job.remote_mirror.as_ref() else {
        // A pull job. A poll first compares the upstream's fingerprint and stops if it is unchanged.
        if job.reason == JobReason::Poll && repository.upstream_fingerprint.is_some() && !job.recreate {
            let current = fingerprint(&Git::detached().remote_refs(&upstream)?);
            if repository.upstream_fingerprint.as_deref() == Some(current.as_str()) {
                info!(job = job.id, "upstream unchanged; nothing to pull");
                return Ok(Finished::of(UpdateOutcome::Unchanged, None));
            }
        }
        // Refs upstream rewrote that the rules keep fail the update.
        let pull = if job.reason == JobReason::Webhook { push::pull_announced } else { push::pull };
        let pulled = pull(&local, &upstream, pull_rules, &repository.default_branch, &repository.protected_branches)?;
        let outcome = pulled.plan.pull_divergence_error().map_or(UpdateOutcome::Pushed, UpdateOutcome::Diverged);
        hooks.post(&pulled.plan.updates);
        let content_hash = Some(content_hash(&pulled.refs));
        // This copy may serve clones: a large one gets a bitmap once.
        if !pulled.plan.updates.is_empty() {
            match local.ensure_bitmap() {
                Ok(true) => info!(job = job.id, "bitmap written"),
                Ok(false) => {}
                Err(e) => warn!(job = job.id, error = %e, "could not write a bitmap"),
            }
        }
        return Ok(Finished { content_hash, ..Finished::of(outcome, Some(pulled.fingerprint)) });
    };
    // An SSH-key mirror's key and known hosts, on disk for this job only.
    let ssh = match &mirror.ssh {
        Some(leased) => match crate::ssh_push::SshSession::open(job.id, leased) {
            Ok(session) => Some(session),
            Err(e) => return Ok(Finished::error(e.to_string())),
        },
        None => None,
    };
    let target = match &ssh {
        Some(session) => Remote::parse(&mirror.url)?.with_ssh_command(session.command()),
        None => Remote::parse(&mirror.url)?,
    };
    let push_settings = PushSettings::of(mirror, repository);
    let pulled = match follows_a_pull(job).and_then(|recorded| push::trusted_copy(&local, recorded)) {
        Some(p) => p,
        None => push::pull(&local, &upstream, pull_rules, &repository.default_branch, &repository.protected_branches)?,
    };
    if let Some(kept) = pulled.plan.pull_divergence_error() {
        warn!(job = job.id, "{kept}");
    }
    // Automatic syncs may trust the target's recorded refs; one someone asked for, or a mirror
    // just enabled or re-pointed, lists the target first.
    let recheck = match job.reason {
        JobReason::Webhook | JobReason::Poll | JobReason::Upstream => settings.target_recheck,
        _ => Duration::ZERO,
    };
    // Pre hooks may refuse refs: those are not pushed, and the mirror says why.
    let refusal = std::cell::RefCell::new(None);
    let gate = |plan: &mirrorfarm_core::sync::RefUpdatePlan| {
        let (refused, why) = hooks.pre(&plan.updates);
        *refusal.borrow_mut() = why;
        refused
    };
    let pushed = push::push_to(&local, &pulled.refs, &target, &push_settings, recheck, &gate, cancelled);
    let (plan, outcome) = match pushed {
        // A target whose host key is not the known one: say so, naming the key it offered. Held
        // back like a hook's refusal (failed at once, not retried): trying again meets the same key.
        Err(e) if ssh.is_some() => match mirrorfarm_core::ssh::host_key_failure(&e.to_string()) {
            Some(why) => return Ok(Finished::of(UpdateOutcome::Diverged(why), None)),
            None => return Err(e),
        },
        pushed => pushed?,
    };
    hooks.post(&plan.updates);
    let outcome = match (refusal.into_inner(), outcome) {
        (Some(why), UpdateOutcome::Pushed | UpdateOutcome::Unchanged) => UpdateOutcome::Diverged(why),
        (Some(why), UpdateOutcome::Diverged(held)) => UpdateOutcome::Diverged(format!("{why}; {held}")),
        (_, outcome) => outcome,
    };
    info!(
        job = job.id,
        target = target.masked(),
        updates = plan.updates.len(),
        held = plan.held.len(),
        unchanged = plan.unchanged,
        "pushed"
    );
    Ok(Finished {
        learned_host_key: ssh.as_ref().and_then(crate::ssh_push::SshSession::learned),
        ..Finished::of(outcome, None)
    })
}

/// For a job that follows a pull (queued by it, or with it by a webhook, and leased after it):
/// the fingerprint of that pull, which a copy still matching it may be trusted to hold.
pub(crate) fn follows_a_pull(job: &LeasedJob) -> Option<&str> {
    let recorded = match &job.fork {
        Some(fork) => fork.origin.upstream_fingerprint.as_deref(),
        None => job.repository.as_ref().and_then(|r| r.upstream_fingerprint.as_deref()),
    };
    matches!(job.reason, JobReason::Upstream | JobReason::Webhook).then_some(recorded).flatten()
}

/// The content hash of a copy's branches and tags (see `mirrorfarm_core::farm::content_listing`).
pub(crate) fn content_hash(refs: &mirrorfarm_core::sync::Refs) -> String {
    crate::records::hex_sha256(content_listing(refs).as_bytes())
}

/// Deletes this node's copy of a repository (the edge removed it, or a repair asked for a
/// fresh clone). A copy that is not there is fine.
pub(crate) fn remove_copy(settings: &NodeSettings, repository_id: i64) {
    let dir = settings.data_dir.join("repos").join(format!("{repository_id}.git"));
    match std::fs::remove_dir_all(&dir) {
        Ok(()) => info!(repository = repository_id, "copy deleted"),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => warn!(repository = repository_id, error = %e, "could not delete the copy"),
    }
}

/// Deletes this node's copies of repositories the edge no longer has. False if the edge could
/// not be asked.
fn prune_copies(edge: &EdgeClient, settings: &NodeSettings, locks: &RepoLocks) -> bool {
    let Ok(entries) = std::fs::read_dir(settings.data_dir.join("repos")) else { return true };
    let held: Vec<i64> =
        entries.filter_map(|e| e.ok()?.file_name().to_str()?.strip_suffix(".git")?.parse().ok()).collect();
    if held.is_empty() {
        return true;
    }
    for chunk in held.chunks(mirrorfarm_core::nodes::HELD_COPIES_PER_CALL) {
        match edge.gone_repositories(chunk.to_vec()) {
            Ok(gone) => {
                for id in gone {
                    let lock = locks.for_repo(id);
                    let _guard = lock.lock().unwrap_or_else(|p| p.into_inner());
                    remove_copy(settings, id);
                }
            }
            Err(e) => {
                warn!(error = %e, "could not check which copies are still wanted; will try again");
                return false;
            }
        }
    }
    true
}

/// Reports an outcome, retrying while the edge is unreachable (results are idempotent), then
/// deletes the copies of repositories the edge says it removed.
fn report(
    edge: &EdgeClient,
    settings: &NodeSettings,
    job: &LeasedJob,
    finished: &Finished,
    next: Option<&LeaseRequest>,
) -> Option<LeasedJob> {
    let mut report = JobReport::new(&job.lease_id, &finished.outcome, finished.fingerprint.clone());
    report.next = next.cloned();
    report.content_hash.clone_from(&finished.content_hash);
    report.discovered.clone_from(&finished.discovered);
    report.content_hashes.clone_from(&finished.content_hashes);
    report.hashes_unpublished = finished.hashes_unpublished;
    report.polled_refs.clone_from(&finished.polled_refs);
    report.learned_host_key.clone_from(&finished.learned_host_key);
    if let Some(reply) = &finished.reply {
        report.message.clone_from(reply);
    }
    if let Some(fork) = &finished.fork {
        report.fork_refs = Some(fork.refs.clone());
        if fork.conflict.is_some() || fork.refused.is_some() {
            report.outcome = Outcome::Conflict;
        }
    }
    report.message = scrub_text(&report.message);
    let kind = format!("{:?}", report.outcome).to_ascii_lowercase();
    for attempt in 1..=5u32 {
        match edge.report(job, &report) {
            Ok(recorded) => {
                // A mail's reply is news only when it failed.
                if report.message.is_empty() || (job.mail.is_some() && report.outcome == Outcome::Pushed) {
                    info!(job = job.id, outcome = kind, "reported");
                } else {
                    warn!(job = job.id, outcome = kind, message = %report.message, "reported");
                }
                let (removed, next) = recorded.map_or((Vec::new(), None), |r| (r.removed_repositories, r.next));
                // Recorded at the edge first: a copy is deleted only once the farm no longer holds it.
                for id in removed {
                    remove_copy(settings, id);
                }
                return next;
            }
            Err(e @ EdgeError::Status { .. }) => {
                error!(job = job.id, error = %e, "result refused");
                return None;
            }
            Err(e) => {
                warn!(job = job.id, attempt, error = %e, "report failed; retrying");
                thread::sleep(Duration::from_secs(u64::from(attempt)));
            }
        }
    }
    error!(job = job.id, "could not report; the lease will expire and the job run again");
    None
}
